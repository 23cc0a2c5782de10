/* test-header.c - unit tests for the shared header reader (header.c) and the originator check
 * (originator.c), and for their agreement with ENVELOPE (mime-envelope.c).
 *
 * Every input is copied to an allocation of exactly its size so ASan catches any overread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "header.h"
#include "mime.h"
#include "originator.h"
#include "test-envelope.h"

/* A copy of s[0..n) in an allocation of exactly n octets (at least 1). */
static char *exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

struct field_want {
	const char *name;     /* as hdr_next reports it */
	const char *value;    /* raw value, folds kept */
	unsigned int flags;
};

struct reader_case {
	const char *in;
	size_t in_len;        /* 0: strlen(in) */
	struct field_want f[4];
	size_t nf;
	size_t section_len;   /* hdr_section_len of in */
};

#define S(x) x, sizeof(x) - 1

static const struct reader_case reader_cases[] = {
	{ S("From: a@b\r\nTo: c@d\r\n\r\nbody"),
	  { { "From", " a@b", 0 }, { "To", " c@d", 0 } }, 2, 22 },
	/* obs-syntax: blanks before the colon belong to no name */
	{ S("From : a@b\r\nFROM\t: x\r\n"),
	  { { "From", " a@b", HDR_F_OBS_WSP }, { "FROM", " x", HDR_F_OBS_WSP } }, 2, 22 },
	/* folding, CRLF and bare LF */
	{ S("Subject: a\r\n b\n\tc\nX: y"),
	  { { "Subject", " a\r\n b\n\tc", 0 }, { "X", " y", 0 } }, 2, 22 },
	/* a name cannot be folded: "From" alone is a line without a colon */
	{ S("From\r\n : bob@x\r\nFrom: a@b\r\n"),
	  { { "From", "", HDR_F_NO_COLON }, { "From", " a@b", 0 } }, 2, 27 },
	/* NUL and bare CR are flagged, a name with a blank or NUL is bad */
	{ S("X: a\0b\r\nY: a\rFrom: bob\r\nFr om: x\r\n"),
	  { { "X", " a\0b", HDR_F_NUL }, { "Y", " a\rFrom: bob", HDR_F_BARE_CR },
	    { "Fr om", " x", HDR_F_BAD_NAME } }, 3, 34 },
	/* a leading continuation line is a field whose name starts with a blank */
	{ S(" From: bob\r\n\r\n"), { { " From", " bob", HDR_F_BAD_NAME } }, 1, 14 },
	/* after the empty line it is body */
	{ S("A: 1\n\nFrom: bob\n"), { { "A", " 1", 0 } }, 1, 6 },
	{ S("\r\nFrom: bob\r\n"), { { NULL, NULL, 0 } }, 0, 2 },
	{ S(": empty name\r\n"), { { "", " empty name", HDR_F_BAD_NAME } }, 1, 14 },
	{ S(""), { { NULL, NULL, 0 } }, 0, 0 },
	/* no line end at all */
	{ S("From:x"), { { "From", "x", 0 } }, 1, 6 },
};

/* hdr_next splits the hostile forms the way the header.h rules say. */
static void test_reader(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(reader_cases) / sizeof(reader_cases[0]); i++) {
		const struct reader_case *c = &reader_cases[i];
		char *in = exact(c->in, c->in_len);
		struct hdr_field f;
		size_t pos = 0, n = 0;
		while (hdr_next(in, c->in_len, &pos, &f)) {
			assert_true(n < c->nf);
			const struct field_want *w = &c->f[n++];
			size_t wl = strlen(w->name);
			if (f.name_len != wl || memcmp(f.name, w->name, wl) != 0)
				fail_msg("case %zu field %zu: name %.*s, want %s", i, n,
					 (int)f.name_len, f.name, w->name);
			size_t vl = (w->flags & HDR_F_NUL) ? 4 : strlen(w->value);   /* " a\0b" */
			assert_int_equal(f.value_len, vl);
			assert_memory_equal(f.value, w->value, vl);
			if (f.flags != w->flags)
				fail_msg("case %zu field %zu: flags %#x, want %#x", i, n, f.flags,
					 w->flags);
			assert_true(f.raw >= in && f.raw + f.raw_len <= in + c->in_len);
		}
		assert_int_equal(n, c->nf);
		assert_int_equal(hdr_section_len(in, c->in_len), c->section_len);
		free(in);
	}
}

/* hdr_find, hdr_is and hdr_value_unfold. */
static void test_find(void **state)
{
	(void)state;
	const char msg[] = "X: 1\r\nfrom \t: Alice\r\n  <a@b> \r\nFrom: second\r\n\r\nFrom: body";
	char *in = exact(msg, sizeof(msg) - 1);
	struct hdr_field f;
	struct buf out;
	buf_init(&out, 100);
	assert_int_equal(hdr_find(in, sizeof(msg) - 1, "FROM", &f), 1);
	assert_true(hdr_is(&f, "from"));
	assert_false(hdr_is(&f, "fro"));
	assert_int_equal(hdr_value_unfold(&f, &out), 0);
	assert_string_equal(out.data, "Alice  <a@b>");
	assert_int_equal(hdr_find(in, sizeof(msg) - 1, "To", &f), 0);
	buf_free(&out);
	buf_init(&out, 3);
	assert_int_equal(hdr_value_unfold(&f, &out), -1);
	buf_free(&out);
	free(in);
}

/* The test policy: alice and her alias, local part exact, domain any case. */
static int allowed(void *ctx, const char *address)
{
	(void)ctx;
	return strcmp(address, "alice@example.test") == 0 ||
	       strcmp(address, "alice.alias@example.test") == 0;
}

/* allowed() that fails its lookup. */
static int lookup_fails(void *ctx, const char *address)
{
	(void)ctx;
	(void)address;
	return -1;
}

struct orig_case {
	const char *in;
	size_t in_len;
	enum orig_result want;
	const char *field;    /* ORIG_NOT_YOURS / ORIG_BAD_ADDRESS: the field named */
	const char *address;  /* ORIG_NOT_YOURS: the address named; ORIG_MALFORMED: NULL */
	size_t line;          /* ORIG_MALFORMED */
};

#define A "alice@example.test"
#define B "bob@example.test"

static const struct orig_case orig_cases[] = {
	{ S("From: " A "\r\nTo: " B "\r\n\r\n"), ORIG_OK, NULL, NULL, 0 },
	{ S("From: Alice <alice.alias@EXAMPLE.test>\r\n"), ORIG_OK, NULL, NULL, 0 },
	{ S("To: " B "\r\n"), ORIG_OK, NULL, NULL, 0 },   /* no From: nothing to forge */
	{ S("From : " A "\r\n"), ORIG_OK, NULL, NULL, 0 },
	{ S("From: " A "\r\n\r\nFrom: " B "\r\nSender: " B "\r\n"), ORIG_OK, NULL, NULL, 0 },
	{ S("From: =?utf-8?q?B=C3=B6b?= <alice (c)@ (d) example.test>\r\n"), ORIG_OK, 0, 0, 0 },
	{ S("From: \"alice\"@example.test\r\nSender: " A "\r\nResent-From: " A "\r\n"), ORIG_OK,
	  NULL, NULL, 0 },
	{ S("From: Alice\r\n <" A ">\r\n"), ORIG_OK, NULL, NULL, 0 },
	{ S("From: " A ", undisclosed:;\r\n"), ORIG_OK, NULL, NULL, 0 },
	/* blanks before the colon, any case */
	{ S("From : " B "\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("fROM\t: " B "\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From \t \t: " B "\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	/* repeats */
	{ S("From : " B "\r\nFrom: " A "\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: " A "\r\nFrom : " B "\r\n"), ORIG_MULTIPLE_FROM, "From", NULL, 0 },
	{ S("From: " A "\r\nfrom: " A "\r\n"), ORIG_MULTIPLE_FROM, "From", NULL, 0 },
	/* the other originator fields */
	{ S("From: " A "\r\nSender: " B "\r\n"), ORIG_NOT_YOURS, "Sender", B, 0 },
	{ S("From: " A "\r\nresent-from : " B "\r\n"), ORIG_NOT_YOURS, "Resent-From", B, 0 },
	{ S("From: " A "\r\nRESENT-SENDER\t: " B "\r\n"), ORIG_NOT_YOURS, "Resent-Sender", B,
	  0 },
	{ S("From: " A "\r\nResent-From: " A ",\r\n " B "\r\n"), ORIG_NOT_YOURS, "Resent-From",
	  B, 0 },
	/* a name split over lines, NUL, bare CR, junk lines */
	{ S("From\r\n : " B "\r\nFrom: " A "\r\n"), ORIG_MALFORMED, NULL, NULL, 1 },
	{ S("From: " A "\r\nX: a\0\r\n"), ORIG_MALFORMED, NULL, NULL, 2 },
	{ S("From: " A "\r\nFr\0om: " B "\r\n"), ORIG_MALFORMED, NULL, NULL, 2 },
	{ S("From: " A "\r\nX: a\rFrom: " B "\r\n"), ORIG_MALFORMED, NULL, NULL, 2 },
	{ S("From: " A "\r\nX: 1\r\n folded\r\nFrom " B "\r\n"), ORIG_MALFORMED, NULL, NULL, 4 },
	{ S(" From: " B "\r\nFrom: " A "\r\n"), ORIG_MALFORMED, NULL, NULL, 1 },
	{ S("From: " A "\r\nFr\xc3\xb6m: " B "\r\n"), ORIG_MALFORMED, NULL, NULL, 2 },
	/* addresses a mail program shows as bob */
	{ S("From: <bob (x)@ (y) example.test>\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: \"bob\"@example.test\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: \"" A "\" <" B ">\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: =?utf-8?q?alice?= <" B ">\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: friends: " A ", " B ";\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	{ S("From: <@example.test:" B ">\r\n"), ORIG_NOT_YOURS, "From", B, 0 },
	/* not addresses at all */
	{ S("From: undisclosed-recipients:;\r\n"), ORIG_BAD_ADDRESS, "From", NULL, 0 },
	{ S("From: \r\n"), ORIG_BAD_ADDRESS, "From", NULL, 0 },
	{ S("From: " A "\r\nSender: alice\r\n"), ORIG_BAD_ADDRESS, "Sender", NULL, 0 },
	{ S("From: " A " (x) " B "\r\n"), ORIG_BAD_ADDRESS, "From", NULL, 0 },
	{ S("From: " A " <" B ">\r\n"), ORIG_BAD_ADDRESS, "From", NULL, 0 },
};

/* Is every address with a host in l one allowed() accepts? */
static int tenv_all_allowed(const struct tenv_list *l)
{
	char addr[2 * TENV_STR_MAX + 2];
	for (size_t i = 0; i < l->n && i < TENV_ADDRS_MAX; i++) {
		if (!l->a[i].has_host)
			continue;
		snprintf(addr, sizeof(addr), "%s@%s", l->a[i].mailbox, l->a[i].host);
		for (char *p = strchr(addr, '@'); *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		if (!allowed(NULL, addr))
			return 0;
	}
	return 1;
}

/* The ENVELOPE of hdr[0..len) as stored (behind our trace headers): from and sender. */
static void envelope_lists(const char *hdr, size_t len, struct tenv_list *from,
			   struct tenv_list *sender)
{
	static const char trace[] = "Return-Path: <" A ">\r\nReceived: from x ([127.0.0.1])\r\n"
				    "\tby mail.example.test (postino) with ESMTPSA id 1; now\r\n";
	size_t n = sizeof(trace) - 1 + len;
	char *msg = malloc(n);
	struct buf env;
	assert_non_null(msg);
	memcpy(msg, trace, sizeof(trace) - 1);
	memcpy(msg + sizeof(trace) - 1, hdr, len);
	buf_init(&env, 1u << 20);
	assert_int_equal(mime_envelope(msg, mime_header_len(msg, n), &env), 0);
	if (tenv_read(env.data, env.len, from, sender) < 0)
		fail_msg("unreadable ENVELOPE: %s", env.data);
	buf_free(&env);
	free(msg);
}

/* The originator check on the hostile forms; accepted ones show only alice in ENVELOPE. */
static void test_originator(void **state)
{
	(void)state;
	static struct tenv_list from, sender;
	for (size_t i = 0; i < sizeof(orig_cases) / sizeof(orig_cases[0]); i++) {
		const struct orig_case *c = &orig_cases[i];
		char *in = exact(c->in, c->in_len);
		struct orig_verdict v;
		enum orig_result r = originator_check(in, c->in_len, allowed, NULL, &v);
		if (r != c->want || v.result != r)
			fail_msg("case %zu (%s): result %d, want %d", i, c->in, r, c->want);
		if (c->field != NULL)
			assert_string_equal(v.field, c->field);
		if (r == ORIG_NOT_YOURS)
			assert_string_equal(v.address, c->address);
		if (r == ORIG_MALFORMED) {
			assert_int_equal(v.line, c->line);
			assert_non_null(v.why);
		}
		if (r == ORIG_OK) {
			envelope_lists(in, c->in_len, &from, &sender);
			if (!tenv_all_allowed(&from) || !tenv_all_allowed(&sender))
				fail_msg("case %zu (%s): accepted, but ENVELOPE shows someone else",
					 i, c->in);
			int has_from = strncasecmp(c->in, "To:", 3) != 0;
			assert_true(!has_from || from.n > 0);
		}
		free(in);
	}
	const char one[] = "From: " A "\r\n";
	struct orig_verdict v;
	assert_int_equal(originator_check(one, sizeof(one) - 1, lookup_fails, NULL, &v),
			 ORIG_LOOKUP_FAILED);
}

/* A long header section: every field is read, in linear time. */
static void test_long_section(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 1u << 24);
	assert_int_equal(buf_appendstr(&b, "From: " A "\r\n"), 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(buf_appendf(&b, "X-%d: %0100d\r\n", i, 0), 0);
	assert_int_equal(buf_appendstr(&b, "Sender : " B "\r\n\r\n"), 0);
	char *in = exact(b.data, b.len);
	struct orig_verdict v;
	assert_int_equal(originator_check(in, b.len, allowed, NULL, &v), ORIG_NOT_YOURS);
	assert_string_equal(v.address, B);
	free(in);
	buf_free(&b);
}

/* Test runner. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_originator),
		cmocka_unit_test(test_long_section),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
