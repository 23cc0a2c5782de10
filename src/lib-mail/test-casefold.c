/* test-casefold.c - unit tests for casefold.c: RFC 5051 i;unicode-casemap substring matching
 * (accents, full folding of ß, Greek sigma, Turkish i, invalid UTF-8) and SORT keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

#include "casefold.h"
#include "utf8.h"

/* Whether hay contains needle under i;unicode-casemap (needle folded as SEARCH does). */
static int match(const char *hay, const char *needle)
{
	char *f;
	size_t fl;
	assert_int_equal(casefold_dup(needle, strlen(needle), &f, &fl), 0);
	int r = casefold_contains(hay, strlen(hay), f, fl);
	free(f);
	return r;
}

/* Upper-case accented needles find lower-case text, and the other way round. */
static void test_accents(void **state)
{
	(void)state;
	assert_true(match("Città di Perù", "CITTÀ"));
	assert_true(match("Città di Perù", "perù"));
	assert_true(match("CITTÀ DI PERÙ", "città di perù"));
	assert_true(match("Ma perché no?", "PERCHÉ"));
	assert_true(match("Ma PERCHÉ no?", "perché"));
	/* precomposed and decomposed forms (NFD "e" + U+0301) are the same text */
	assert_true(match("perche\xcc\x81", "PERCHÉ"));
	assert_true(match("Perché", "PERCHE\xcc\x81"));
	/* an accent is not optional in the needle: "È" is not "E" */
	assert_false(match("perche", "PERCHÉ"));
	assert_false(match("Città", "CITTÁ"));      /* acute is not grave */
	assert_false(match("Città di Perù", "CITTÀ DI PARIGI"));
	/* RFC 5051 matches decomposed strings: a needle ending in a base letter finds that
	 * letter even when an accent follows it in the text */
	assert_true(match("café", "CAFE"));
	/* compatibility forms (NFKD): the "ﬁ" ligature is "fi", fullwidth letters are ASCII */
	assert_true(match("\xef\xac\x81nance", "FINANCE"));
	assert_true(match("\xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3", "abc"));
}

/* Full case folding: "ß" is "ss", so STRASSE finds straße and STRAßE finds strasse. */
static void test_sharp_s(void **state)
{
	(void)state;
	assert_true(match("Hauptstraße 5", "STRASSE"));
	assert_true(match("HAUPTSTRASSE 5", "straße"));
	assert_true(match("Hauptstraße 5", "STRAẞE"));     /* capital sharp s U+1E9E */
	assert_false(match("Hauptstrase 5", "straße"));
}

/* Greek: final sigma ς, medial σ and capital Σ fold alike. */
static void test_greek_sigma(void **state)
{
	(void)state;
	assert_true(match("οδος", "ΟΔΟΣ"));
	assert_true(match("ΟΔΟΣ", "οδος"));
	assert_true(match("Σίσυφος", "ΣΊΣΥΦΟΣ"));
	assert_true(match("Σίσυφος", "σίσυφοσ"));
	assert_false(match("οδος", "ΟΔΟΙ"));
}

/* Turkish i is folded without a language (Unicode's default, not the Turkic tailoring):
 * "I" is "i"; dotted "İ" (U+0130) is "i" + U+0307, so it finds only a dotted i; dotless "ı"
 * (U+0131) folds to itself, so it finds only itself and "I" does not find it. */
static void test_turkish_i(void **state)
{
	(void)state;
	assert_true(match("istanbul", "ISTANBUL"));
	assert_true(match("İSTANBUL", "i\xcc\x87stanbul"));
	assert_true(match("İstanbul", "İSTANBUL"));
	assert_false(match("istanbul", "İSTANBUL"));
	assert_false(match("ıstanbul", "ISTANBUL"));
	assert_true(match("ıstanbul", "ıSTANBUL"));
	assert_true(match("ISTANBUL", "İ") == 0);
}

/* Invalid UTF-8 in the text does not stop folding of the valid parts around it. */
static void test_invalid_utf8(void **state)
{
	(void)state;
	assert_true(match("\xff Città \xc3", "CITTÀ"));
	assert_true(match("caf\xe9 Perché", "PERCHÉ"));       /* Latin-1 é, then UTF-8 */
	assert_true(match("caf\xe9 Perché", "CAF"));
	assert_true(match("\xc3\x28 STRASSE", "straße"));
	assert_false(match("\xc3\x28", "é"));
	/* the invalid octet itself is kept and can be matched by the same octet */
	assert_true(match("x\xe9y", "X\xe9Y"));
	/* a truncated sequence at the end */
	assert_false(match("Citt\xc3", "CITTÀ"));
	/* surrogates, overlong forms and values past U+10FFFF are octets kept as they are */
	assert_true(match("\xed\xa0\x80 Citt\xc3\xa0", "CITTÀ"));
	assert_true(match("\xc0\xaf\xe0\x80\xaf\xf4\x90\x80\x80\xc3\x89T\xc3\x89", "été"));
	assert_true(match("\xed\xa0\x80", "\xed\xa0\x80"));
}

/* ASCII-only text takes the fast path with the same answers. */
static void test_ascii(void **state)
{
	(void)state;
	assert_true(match("Hello World", "WORLD"));
	assert_true(match("Hello World", ""));
	assert_false(match("Hello World", "WORLDS"));
	assert_false(match("", "a"));
	assert_false(match("Hello World", "WÖRLD"));
	assert_true(match("Kelvin", "\xe2\x84\xaa" "ELVIN"));   /* U+212A KELVIN SIGN is "k" */
	/* NUL octets in the text are compared, not taken as an end */
	char hay[] = "ab\0cd";
	char *f;
	size_t fl;
	assert_int_equal(casefold_dup("CD", 2, &f, &fl), 0);
	assert_true(casefold_contains(hay, 5, f, fl));
	assert_false(casefold_contains(hay, 2, f, fl));
	free(f);
}

/* casefold_dup output: lower case, NFKD, NUL-terminated. */
static void test_dup(void **state)
{
	(void)state;
	char *f;
	size_t fl;
	assert_int_equal(casefold_dup("ÉTÉ", strlen("ÉTÉ"), &f, &fl), 0);
	assert_string_equal(f, "e\xcc\x81te\xcc\x81");
	assert_int_equal(fl, strlen(f));
	free(f);
	assert_int_equal(casefold_dup("", 0, &f, &fl), 0);
	assert_string_equal(f, "");
	assert_int_equal(fl, 0);
	free(f);
}

/* SORT keys: ASCII keys keep i;ascii-casemap order (upper case); accented letters sort with
 * their base letters: "élan" < "ÉTÉ" < "Zebra" (bytes alone would put both after "Zebra"). */
static void test_sort_key(void **state)
{
	(void)state;
	char a[256] = "élan", b[256] = "ÉTÉ", c[256] = "Zebra", d[256] = "[x]_y";
	casefold_sort_key(a, sizeof(a));
	casefold_sort_key(b, sizeof(b));
	casefold_sort_key(c, sizeof(c));
	casefold_sort_key(d, sizeof(d));
	assert_string_equal(c, "ZEBRA");
	assert_string_equal(d, "[X]_Y");
	assert_string_equal(a, "E\xcc\x81LAN");
	assert_true(strcmp(a, b) < 0);
	assert_true(strcmp(b, c) < 0);
	char e[256] = "straße", g[256] = "STRASSE";
	casefold_sort_key(e, sizeof(e));
	casefold_sort_key(g, sizeof(g));
	assert_string_equal(e, g);
	/* cut to the buffer at a character boundary: "é" is 3 octets folded, 2 fit */
	char h[4] = "aé";
	casefold_sort_key(h, sizeof(h));
	assert_string_equal(h, "AE");
}

/* casefold_dup (ASCII runs apart, two-octet characters from its cache) equals libunistring's
 * u8_casefold of the whole string. */
static void expect_as_libunistring(const uint8_t *in, size_t n)
{
	char *f;
	size_t fl, rl = 0;
	assert_int_equal(casefold_dup((const char *)in, n, &f, &fl), 0);
	uint8_t *r = u8_casefold(in, n, NULL, UNINORM_NFKD, NULL, &rl);
	assert_non_null(r);
	assert_int_equal(fl, rl);
	assert_memory_equal(f, r, rl);
	free(f);
	free(r);
}

/* casefold.c finds its valid runs with utf8_valid_prefix, where it used libunistring's u8_check:
 * both end a run at the same octet for every string of up to four octets from a set that holds
 * each boundary of RFC 3629 (leads, continuation ranges, overlong, surrogate and U+10FFFF
 * edges). */
static void test_prefix_as_u8_check(void **state)
{
	(void)state;
	static const uint8_t oct[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
				       0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf3, 0xf4,
				       0xf5, 0xff };
	const size_t k = sizeof(oct);
	uint8_t p[4];
	for (size_t len = 1; len <= 4; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= k;
		for (size_t v = 0; v < total; v++) {
			size_t x = v;
			for (size_t i = 0; i < len; i++, x /= k)
				p[i] = oct[x % k];
			const uint8_t *bad = u8_check(p, len);
			size_t want = bad ? (size_t)(bad - p) : len;
			if (utf8_valid_prefix(p, len, 0) != want)
				fail_msg("%zu octets %02x %02x %02x %02x: %zu, u8_check %zu", len, p[0],
					 p[1], p[2], p[3], utf8_valid_prefix(p, len, 0), want);
		}
	}
}

/* Put code point c (< U+0800) as UTF-8 at p; returns its length. */
static size_t put_cp(uint8_t *p, unsigned c)
{
	if (c < 0x80) {
		p[0] = (uint8_t)c;
		return 1;
	}
	p[0] = (uint8_t)(0xc0 | (c >> 6));
	p[1] = (uint8_t)(0x80 | (c & 0x3f));
	return 2;
}

/* Every two-octet character, alone, between ASCII, and next to others and combining marks
 * (U+0300 grave, U+0323 dot below, U+0345 ypogegrammeni: canonical reordering across
 * characters), folds as libunistring folds the whole string. */
static void test_same_as_libunistring(void **state)
{
	(void)state;
	static const unsigned marks[] = { 0x300, 0x301, 0x323, 0x345, 0x3a3, 0xdf, 0x130 };
	for (unsigned c = 0x80; c < 0x800; c++) {
		uint8_t b[16];
		size_t n = 0;
		n += put_cp(b + n, 'A');
		n += put_cp(b + n, c);
		n += put_cp(b + n, 'z');
		n += put_cp(b + n, c);
		expect_as_libunistring(b, n);
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
			n = put_cp(b, c);
			n += put_cp(b + n, marks[m]);
			expect_as_libunistring(b, n);
			n = put_cp(b, marks[m]);
			n += put_cp(b + n, c);
			n += put_cp(b + n, marks[m]);
			expect_as_libunistring(b, n);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accents),
		cmocka_unit_test(test_sharp_s),
		cmocka_unit_test(test_greek_sigma),
		cmocka_unit_test(test_turkish_i),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_dup),
		cmocka_unit_test(test_sort_key),
		cmocka_unit_test(test_same_as_libunistring),
		cmocka_unit_test(test_prefix_as_u8_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
