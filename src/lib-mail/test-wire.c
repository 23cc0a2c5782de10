/* test-wire.c - POP3 wire form: CRLF, dot-stuffing, and the size LIST reports (the same without
 * the stuffing) agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "wire.h"

static const struct {
	const char *in, *want;
} cases[] = {
	{ "a\r\nb\r\n", "a\r\nb\r\n" },
	{ "a\nb\n", "a\r\nb\r\n" },
	{ ".x\r\n..y\r\n", "..x\r\n...y\r\n" },
	{ "end without newline", "end without newline\r\n" },
	{ "cr at end\r", "cr at end\r\n" },
	{ "mid\rcr\r\n.\r\n", "mid\rcr\r\n..\r\n" },
	{ "", "" },
	{ "\n.\n", "\r\n..\r\n" },
};

/* Octets of a wire form without its dot-stuffing: what a client keeps (RFC 1939 3). */
static size_t unstuffed_len(const char *w)
{
	size_t n = strlen(w), dots = 0;
	for (size_t i = 0; i < n; i++)
		dots += w[i] == '.' && (i == 0 || w[i - 1] == '\n');
	return n - dots;
}

/* Each case, transformed in chunks of 1..4 octets, gives the wanted bytes, and wire_size_fd
 * of a file with the input (and wire_size_mem of the input) counts them without the stuffing
 * (the size LIST reports). */
static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *in = cases[i].in;
		size_t n = strlen(in);
		for (size_t step = 1; step <= 4; step++) {
			struct wire_state w;
			struct buf out;
			buf_init(&out, 1 << 20);
			wire_init(&w);
			for (size_t o = 0; o < n; o += step)
				assert_int_equal(wire_transform(&w, in + o, n - o < step ? n - o : step,
								&out), 0);
			assert_int_equal(wire_finish(&w, &out), 0);
			assert_int_equal(out.len, strlen(cases[i].want));
			if (out.len)
				assert_memory_equal(out.data, cases[i].want, out.len);
			buf_free(&out);
		}
		char path[] = "/tmp/postino-test-wire-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, in, n), (ssize_t)n);
		assert_int_equal(wire_size_fd(fd), (int64_t)unstuffed_len(cases[i].want));
		assert_int_equal(wire_size_mem(in, n), (int64_t)unstuffed_len(cases[i].want));
		close(fd);
	}
}

/* wire_size_fd reads 64 KB at a time: a CRLF or a bare LF split across two reads counts as in
 * one piece (the count carries the previous octet over). */
static void test_read_boundary(void **state)
{
	(void)state;
	static char msg[65536 + 64];
	for (int k = 0; k < 4; k++) {
		memset(msg, 'x', sizeof(msg));
		msg[65534] = k & 1 ? '\r' : 'x';          /* CR just before the boundary, or not */
		msg[65535] = k & 2 ? '\n' : '\r';
		msg[65536] = k & 2 ? 'x' : '\n';          /* LF last in the first read, or first in
						 * the second */
		msg[sizeof(msg) - 1] = '\n';
		char path[] = "/tmp/postino-test-wire-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(write(fd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
		int64_t want = (int64_t)sizeof(msg) + 1;   /* the bare LF at the end */
		if (k & 2)
			want += !(k & 1);                        /* LF at 65535 after x, not CR */
		assert_int_equal(wire_size_mem(msg, sizeof(msg)), want);
		assert_int_equal(wire_size_fd(fd), want);
		close(fd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_read_boundary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
