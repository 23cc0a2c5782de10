/* test-imap-quote.c - unit tests for imap-quote.c (form choice, escaping, all-or-nothing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "imap-quote.h"

enum kind { ASTRING, NSTRING, QUOTED, LITERAL8 };

struct qcase {
	enum kind kind;
	const char *in; /* NULL: nstring NIL */
	size_t len;
	const char *want;
	size_t want_len; /* 0: strlen(want) */
};

#define S(s) s, sizeof(s) - 1

static const struct qcase cases[] = {
	{ ASTRING, S("INBOX"), "INBOX", 0 },
	{ ASTRING, S("a]b[c"), "a]b[c", 0 },
	{ ASTRING, S("&U,BTFw-"), "&U,BTFw-", 0 },
	{ ASTRING, S(""), "\"\"", 0 },
	{ ASTRING, S("NIL"), "\"NIL\"", 0 },
	{ ASTRING, S("nil"), "\"nil\"", 0 },
	{ ASTRING, S("NILS"), "NILS", 0 },
	{ ASTRING, S("a b"), "\"a b\"", 0 },
	{ ASTRING, S("a%"), "\"a%\"", 0 },
	{ ASTRING, S("*"), "\"*\"", 0 },
	{ ASTRING, S("(x)"), "\"(x)\"", 0 },
	{ ASTRING, S("{3}"), "\"{3}\"", 0 },
	{ ASTRING, S("say \"hi\" \\o/"), "\"say \\\"hi\\\" \\\\o/\"", 0 },
	{ ASTRING, S("\t"), "\"\t\"", 0 },
	{ ASTRING, S("caf\xc3\xa9"), "{5}\r\ncaf\xc3\xa9", 0 },
	{ ASTRING, S("a\r\nb"), "{4}\r\na\r\nb", 0 },
	{ ASTRING, S("a\0b"), S("{3}\r\na\0b") },
	{ NSTRING, NULL, 0, "NIL", 0 },
	{ NSTRING, S(""), "\"\"", 0 },
	{ NSTRING, S("NIL"), "\"NIL\"", 0 },
	{ NSTRING, S("atom"), "\"atom\"", 0 },
	{ NSTRING, S("x\ny"), "{3}\r\nx\ny", 0 },
	{ QUOTED, S("\\"), "\"\\\\\"", 0 },
	{ QUOTED, S("\xff"), "{1}\r\n\xff", 0 },
	{ QUOTED, S("\r"), "{1}\r\n\r", 0 },
	{ LITERAL8, S("\0\0"), S("~{2}\r\n\0\0") },
	{ LITERAL8, S(""), "~{0}\r\n", 0 },
};

/* Each row appends the wanted bytes after existing content. */
static void test_cases(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 256);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct qcase *c = &cases[i];
		size_t wl = c->want_len ? c->want_len : strlen(c->want);
		int r = -1;
		buf_reset(&b);
		assert_int_equal(buf_appendstr(&b, "* "), 0);
		switch (c->kind) {
		case ASTRING:
			r = imap_append_astring(&b, c->in, c->len);
			break;
		case NSTRING:
			r = imap_append_nstring(&b, c->in, c->len);
			break;
		case QUOTED:
			r = imap_append_quoted(&b, c->in, c->len);
			break;
		case LITERAL8:
			r = imap_append_literal(&b, c->in, c->len, 1);
			break;
		}
		assert_int_equal(r, 0);
		if (b.len != wl + 2 || memcmp(b.data + 2, c->want, wl) != 0) {
			print_error("case %zu: got '%s' want '%s'\n", i, b.data + 2, c->want);
			fail();
		}
		assert_int_equal(b.data[b.len], '\0');
	}
	buf_free(&b);
}

/* When out is full nothing is appended. */
static void test_full(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_appendstr(&b, "ab"), 0);
	assert_int_equal(imap_append_astring(&b, "1234567", 7), -1);
	assert_int_equal(imap_append_quoted(&b, "12345", 5), -1);  /* 7 with quotes */
	assert_int_equal(imap_append_quoted(&b, "\"\"\"", 3), -1); /* 8 with escapes */
	assert_int_equal(imap_append_literal(&b, "12", 2, 0), -1);  /* "{2}\r\n12" */
	assert_int_equal(imap_append_literal(&b, "1", 1, 0), 0);
	assert_string_equal(b.data, "ab{1}\r\n1");
	buf_free(&b);
	buf_init(&b, 8);
	assert_int_equal(imap_append_quoted(&b, "\"\"\"", 3), 0);
	assert_string_equal(b.data, "\"\\\"\\\"\\\"\"");
	buf_free(&b);
}

/* Run the tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_full),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
