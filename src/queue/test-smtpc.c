/* test-smtpc.c - the outbound client's reply parser and DATA writer, fed whole and trickled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "smtpc.h"

static const struct {
	const char *in, *want;
	int skip_rp;
} wire_cases[] = {
	{ "a\r\nb\r\n", "a\r\nb\r\n.\r\n", 0 },
	{ "a\nb\n", "a\r\nb\r\n.\r\n", 0 },                       /* bare LF */
	{ "a\rb\r\n", "a\r\nb\r\n.\r\n", 0 },                     /* bare CR */
	{ ".x\r\n..y\r\n.\r\n", "..x\r\n...y\r\n..\r\n.\r\n", 0 }, /* dot-stuffing */
	{ "no newline", "no newline\r\n.\r\n", 0 },
	{ "", ".\r\n", 0 },
	{ "x.\r\n.", "x.\r\n..\r\n.\r\n", 0 },
	{ "Return-Path: <a@b>\r\nSubject: s\r\n\r\n.body\r\n", "Subject: s\r\n\r\n..body\r\n.\r\n", 1 },
	{ "Return-Path: <a@b>\r\nX: y\r\n", "Return-Path: <a@b>\r\nX: y\r\n.\r\n", 0 },
	{ "Received: x\r\n", "Received: x\r\n.\r\n", 1 },          /* not a Return-Path line */
	{ "short", "short\r\n.\r\n", 1 },
	{ "\r\n.\r\n", "\r\n..\r\n.\r\n", 1 },
};

/* Every case gives the same bytes whether fed at once or 1..5 octets at a time. */
static void test_wire(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(wire_cases) / sizeof(wire_cases[0]); i++) {
		const char *in = wire_cases[i].in;
		size_t n = strlen(in);
		size_t steps[] = { 1, 2, 3, 4, 5, n + 1 };
		for (size_t si = 0; si < 6; si++) {
			size_t step = steps[si];
			struct smtpc_wire w;
			struct buf out;
			buf_init(&out, 1 << 20);
			smtpc_wire_init(&w, wire_cases[i].skip_rp);
			for (size_t o = 0; o < n; o += step)
				assert_int_equal(smtpc_wire_feed(&w, in + o, n - o < step ? n - o : step,
								 &out), 0);
			assert_int_equal(smtpc_wire_end(&w, &out), 0);
			if (out.len != strlen(wire_cases[i].want) ||
			    memcmp(out.data, wire_cases[i].want, out.len) != 0)
				fail_msg("case %zu step %zu: got '%s'", i, step, out.data);
			buf_free(&out);
		}
	}
}

/* The output buffer's limit is respected, not overrun. */
static void test_wire_full(void **state)
{
	(void)state;
	struct smtpc_wire w;
	struct buf out;
	buf_init(&out, 8);
	smtpc_wire_init(&w, 0);
	assert_int_equal(smtpc_wire_feed(&w, "0123456789", 10, &out), -1);
	buf_free(&out);
}

/* Feed reply lines; return the parser's last result. */
static int feed(struct smtpc_reply *r, const char *const *lines, size_t n)
{
	int res = -2;
	smtpc_reply_init(r);
	for (size_t i = 0; i < n; i++) {
		res = smtpc_reply_line(r, lines[i], strlen(lines[i]));
		if (res != 0)
			break;
	}
	return res;
}

static void test_reply(void **state)
{
	(void)state;
	struct smtpc_reply r;
	const char *one[] = { "250 ok" };
	assert_int_equal(feed(&r, one, 1), 1);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.text, "250 ok");
	const char *multi[] = { "250-mx.example", "250-PIPELINING", "250 SIZE 100" };
	assert_int_equal(feed(&r, multi, 3), 1);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 3);
	assert_string_equal(r.text, "250-mx.example\nPIPELINING\nSIZE 100");
	const char *bare[] = { "354" };
	assert_int_equal(feed(&r, bare, 1), 1);
	assert_int_equal(r.code, 354);
	const char *more[] = { "250-a" };
	assert_int_equal(feed(&r, more, 1), 0);
	const char *mixed[] = { "250-a", "550 b" };
	assert_int_equal(feed(&r, mixed, 2), -1);    /* the code changed */
	const char *junk[] = { "hello" };
	assert_int_equal(feed(&r, junk, 1), -1);
	const char *badsep[] = { "250x" };
	assert_int_equal(feed(&r, badsep, 1), -1);
	const char *badcode[] = { "650 what" };
	assert_int_equal(feed(&r, badcode, 1), -1);
	const char *ctl[] = { "550 a\001b" };
	assert_int_equal(feed(&r, ctl, 1), 1);
	assert_string_equal(r.text, "550 a b");       /* control characters never reach logs */
}

/* An endless multi-line reply is cut off; a huge one keeps a bounded text. */
static void test_reply_bounds(void **state)
{
	(void)state;
	struct smtpc_reply r;
	smtpc_reply_init(&r);
	char line[600];
	memset(line, 'x', sizeof(line));
	memcpy(line, "250-", 4);
	int res = 0;
	unsigned i;
	for (i = 0; i < 10000 && res == 0; i++)
		res = smtpc_reply_line(&r, line, sizeof(line));
	assert_int_equal(res, -1);
	assert_int_equal(i, SMTPC_REPLY_LINES + 1);
	assert_true(r.tlen < sizeof(r.text));
	assert_int_equal(strlen(r.text), r.tlen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire),
		cmocka_unit_test(test_wire_full),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_reply_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
