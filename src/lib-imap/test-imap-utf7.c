/* test-imap-utf7.c - unit tests for imap-utf7.c (RFC 3501 5.1.3 examples, strictness). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap-utf7.h"

struct pair {
	const char *utf8;
	const char *mutf7;
};

/* Both directions: UTF-8 <-> canonical modified UTF-7. */
static const struct pair pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" }, /* RFC 3501 section 5.1.3 */
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
	{ "\xf0\x9f\x93\xac", "&2D3c7A-" },             /* U+1F4EC: a surrogate pair */
	{ "a\tb", "a&AAk-b" },                          /* controls are encoded */
	{ "\x7f", "&AH8-" },
	{ "\xc3\xa9&\xc3\xbc", "&AOk-&-&APw-" },        /* "&-" may follow a shift */
	{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x93\xacx", "&ZeVnLIqe2D3c7A-x" },
	{ "\xc7\x84", "&AcQ-" },
	{ "\xf4\x8f\xbf\xbf", "&2,,f,w-" },             /* U+10FFFF */
	{ "\xef\xbf\xbd", "&,,0-" },                    /* U+FFFD */
	{ " -~+,", " -~+,"},
};

/* Modified UTF-7 the decoder must refuse. */
static const char *const bad_mutf7[] = {
	"&",              /* unterminated */
	"&U,BTFw",        /* unterminated */
	"a&",
	"&AGE-",          /* 'a' encoded */
	"&ACY-",          /* '&' encoded instead of "&-" */
	"&ACA-",          /* space encoded */
	"&AH4-",          /* '~' encoded */
	"&AOk-&APw-",     /* two shifts in a row */
	"&U,BTFx-",       /* nonzero padding bits */
	"&U,BTFwA-",      /* a whole extra sextet */
	"&AOkA-",         /* 36 bits: 2 units expected, 1 unit + 20 bits given */
	"&A-",            /* no whole unit */
	"&AA-",
	"&AAA-",          /* U+0000 */
	"&2D0-",          /* lone high surrogate */
	"&2D3YPQ-",       /* high surrogate followed by a high surrogate */
	"&3Ow-",          /* lone low surrogate */
	"&AOnc7A-",       /* low surrogate after a BMP char */
	"&U/BTFw-",       /* '/' is not in the modified alphabet */
	"&U,BTFw=-",      /* padding */
	"&*-",
	"&&-",
	"caf\xc3\xa9",    /* 8-bit */
	"a\tb",           /* raw control */
	"a\x7f",
	"\xff",
};

/* UTF-8 the encoder must refuse. */
static const char *const bad_utf8[] = {
	"\x80", "\xc3\x28", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",
	"\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", "\xe5\x8f",
	"abc\xe5\x8f", "\xe5\x8f!", "\xf0\x9f\x93",
};

/* Pairs convert both ways, after existing content, and validate. */
static void test_pairs(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 1024);
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		buf_reset(&b);
		assert_int_equal(buf_appendstr(&b, "x:"), 0);
		assert_int_equal(imap_utf8_to_mutf7(pairs[i].utf8, &b), 0);
		assert_string_equal(b.data + 2, pairs[i].mutf7);
		buf_reset(&b);
		assert_int_equal(buf_appendstr(&b, "y:"), 0);
		assert_int_equal(imap_mutf7_to_utf8(pairs[i].mutf7, &b), 0);
		assert_string_equal(b.data + 2, pairs[i].utf8);
		assert_true(imap_mutf7_is_valid(pairs[i].mutf7));
	}
	buf_free(&b);
}

/* Bad inputs fail and leave the output as it was. */
static void test_bad(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(buf_appendstr(&b, "keep"), 0);
	for (size_t i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
		if (imap_mutf7_to_utf8(bad_mutf7[i], &b) != -1) {
			print_error("mutf7 case %zu '%s' accepted\n", i, bad_mutf7[i]);
			fail();
		}
		assert_false(imap_mutf7_is_valid(bad_mutf7[i]));
		assert_string_equal(b.data, "keep");
		assert_int_equal(b.len, 4);
	}
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		if (imap_utf8_to_mutf7(bad_utf8[i], &b) != -1) {
			print_error("utf8 case %zu accepted\n", i);
			fail();
		}
		assert_string_equal(b.data, "keep");
	}
	buf_free(&b);
}

/* A full output buffer fails cleanly in both directions. */
static void test_full(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_appendstr(&b, "ab"), 0);
	assert_int_equal(imap_utf8_to_mutf7("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", &b), -1);
	assert_string_equal(b.data, "ab");
	assert_int_equal(imap_mutf7_to_utf8("&ZeVnLIqe-&ZeVnLIqe-", &b), -1);
	assert_string_equal(b.data, "ab");
	assert_int_equal(imap_utf8_to_mutf7("12345678", &b), 0);
	assert_string_equal(b.data, "ab12345678");
	buf_free(&b);
}

/* Every scalar value round-trips through a name, alone and between ASCII. */
static void test_roundtrip_all(void **state)
{
	struct buf u, m, back;
	(void)state;
	buf_init(&u, 64);
	buf_init(&m, 64);
	buf_init(&back, 64);
	for (uint32_t cp = 1; cp <= 0x10ffff; cp += (cp < 0x3000 ? 1 : 37)) {
		unsigned char s[8];
		size_t n;
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		if (cp < 0x80) {
			s[0] = (unsigned char)cp;
			n = 1;
		} else if (cp < 0x800) {
			s[0] = (unsigned char)(0xc0 | (cp >> 6));
			s[1] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			s[0] = (unsigned char)(0xe0 | (cp >> 12));
			s[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
			s[2] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			s[0] = (unsigned char)(0xf0 | (cp >> 18));
			s[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
			s[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
			s[3] = (unsigned char)(0x80 | (cp & 0x3f));
			n = 4;
		}
		for (int form = 0; form < 3; form++) {
			buf_reset(&u);
			buf_reset(&m);
			buf_reset(&back);
			if (form > 0)
				buf_appendstr(&u, "a");
			buf_append(&u, s, n);
			if (form > 1)
				buf_append(&u, s, n);
			assert_int_equal(imap_utf8_to_mutf7(u.data, &m), 0);
			for (size_t i = 0; i < m.len; i++)
				assert_true(m.data[i] >= 0x20 && m.data[i] <= 0x7e);
			assert_int_equal(imap_mutf7_to_utf8(m.data, &back), 0);
			assert_int_equal(back.len, u.len);
			assert_memory_equal(back.data, u.data, u.len);
		}
	}
	buf_free(&u);
	buf_free(&m);
	buf_free(&back);
}

/* Run the tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_roundtrip_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
