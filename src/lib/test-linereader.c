/* test-linereader.c - the line reader, fed whole and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "linereader.h"

#define MAXOUT 16

/* What a stream of input turns into: lines and too-long markers, in order. */
struct outcome {
	char items[MAXOUT][64];
	size_t n;
};

/* Feed `in` in chunks of `step` octets (0 = all at once) through a buffer, as a session does. */
static void run(const char *in, size_t inlen, size_t max, size_t step, struct outcome *o)
{
	struct linereader r;
	struct buf b;
	linereader_init(&r, max);
	buf_init(&b, 1 << 20);
	memset(o, 0, sizeof(*o));
	size_t fed = 0;
	while (fed < inlen || b.len > 0) {
		size_t take = step == 0 ? inlen - fed : (inlen - fed < step ? inlen - fed : step);
		if (take > 0) {
			assert_int_equal(buf_append(&b, in + fed, take), 0);
			fed += take;
		}
		for (;;) {
			const char *line;
			size_t len, consumed;
			enum rl res = linereader_next(&r, b.data, b.len, &line, &len, &consumed);
			if (res == RL_LINE) {
				assert_true(o->n < MAXOUT);
				snprintf(o->items[o->n++], 64, "L:%.*s%s", (int)len, line,
					 r.bare_lf ? "|lf" : "");
			} else if (res == RL_TOOLONG) {
				assert_true(o->n < MAXOUT);
				snprintf(o->items[o->n++], 64, "TOOLONG");
			}
			buf_consume(&b, consumed);
			if (res == RL_MORE && consumed == 0)
				break;
		}
		if (take == 0)
			break;
	}
	buf_free(&b);
}

static const struct {
	const char *in;
	size_t max;
	const char *want[6];
} cases[] = {
	{ "EHLO x\r\n", 100, { "L:EHLO x" } },
	{ "a\r\nb\r\nc", 100, { "L:a", "L:b" } },
	{ "bare\nnext\r\n", 100, { "L:bare|lf", "L:next" } },
	{ "\r\n", 100, { "L:" } },
	{ "cr\rinside\r\n", 100, { "L:cr\rinside" } },
	{ "0123456789\r\n", 10, { "L:0123456789" } },
	{ "01234567890\r\nok\r\n", 10, { "TOOLONG", "L:ok" } },
	{ "0123456789012345678901234567890\r\nNOOP\r\n", 10, { "TOOLONG", "L:NOOP" } },
	{ "0123456789012345678901234567890\nafter\n", 10, { "TOOLONG", "L:after|lf" } },
};

/* Every case gives the same result whole and trickled one byte at a time. */
static void test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 0; step <= 3; step++) {
			struct outcome o;
			run(cases[i].in, strlen(cases[i].in), cases[i].max, step, &o);
			size_t nwant = 0;
			while (nwant < 6 && cases[i].want[nwant])
				nwant++;
			if (o.n != nwant)
				fail_msg("case %zu step %zu: got %zu items, want %zu", i, step, o.n,
					 nwant);
			for (size_t k = 0; k < nwant; k++)
				assert_string_equal(o.items[k], cases[i].want[k]);
		}
	}
}

/* A huge line is reported once and the reader does not hold it in memory. */
static void test_huge_line_once(void **state)
{
	(void)state;
	static char big[100000];
	memset(big, 'x', sizeof(big));
	memcpy(big + sizeof(big) - 8, "\r\nQUIT\r\n", 8);
	struct outcome o;
	run(big, sizeof(big), 512, 1000, &o);
	assert_int_equal(o.n, 2);
	assert_string_equal(o.items[0], "TOOLONG");
	assert_string_equal(o.items[1], "L:QUIT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_huge_line_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
