/* test-utf8.c - the one UTF-8 validator: RFC 3629 boundaries, the flags its callers need (NUL
 * for mailbox names, C1 for logs), the one-octet-at-a-time lead ranges of the IMAP parser, the
 * prefix check of casefolding, character counts for password lengths, and encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

#define S(x) (const unsigned char *)(x), sizeof(x) - 1

/* Reference encoder, written apart from utf8_encode: the shortest form of cp. */
static size_t ref_encode(uint32_t cp, unsigned char *o)
{
	if (cp <= 0x7f) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	size_t n = cp <= 0x7ff ? 2 : cp <= 0xffff ? 3 : 4;
	for (size_t i = n - 1; i > 0; i--) {
		o[i] = (unsigned char)(0x80 + cp % 64);
		cp /= 64;
	}
	o[0] = (unsigned char)((n == 2 ? 0xc0 : n == 3 ? 0xe0 : 0xf0) + cp);
	return n;
}

/* A Unicode scalar value: not a surrogate, not above U+10FFFF. */
static int is_scalar(uint32_t cp)
{
	return cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
}

/* Table of single sequences: length and code point, with and without the flags. */
static void test_decode_table(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		size_t avail;       /* octets the decoder may look at */
		unsigned flags;
		size_t n;           /* want: length, 0 refused */
		uint32_t cp;
	} cases[] = {
		{ "", 0, 0, 0, 0 },
		{ "A", 1, 0, 1, 'A' },
		{ "\x1b", 1, UTF8_NO_C1 | UTF8_NO_NUL, 1, 0x1b },   /* C0 is the caller's matter */
		{ "\0", 1, 0, 1, 0 },                               /* U+0000 is well-formed */
		{ "\0", 1, UTF8_NO_NUL, 0, 0 },                     /* mUTF-7 names refuse it */
		{ "\xc2\x80", 2, 0, 2, 0x80 },                      /* first two-octet */
		{ "\xc2\x80", 2, UTF8_NO_C1, 0, 0 },                /* C1 for logs */
		{ "\xc2\x9b", 2, UTF8_NO_C1, 0, 0 },                /* 8-bit CSI */
		{ "\xc2\x9f", 2, UTF8_NO_C1, 0, 0 },
		{ "\xc2\xa0", 2, UTF8_NO_C1, 2, 0xa0 },             /* just past C1 */
		{ "\xdf\xbf", 2, 0, 2, 0x7ff },
		{ "\xc0\xaf", 2, 0, 0, 0 },                         /* overlong '/' */
		{ "\xc1\xbf", 2, 0, 0, 0 },                         /* overlong U+007F */
		{ "\xe0\x80\xaf", 3, 0, 0, 0 },                     /* overlong '/' */
		{ "\xe0\x9f\xbf", 3, 0, 0, 0 },                     /* overlong U+07FF */
		{ "\xe0\xa0\x80", 3, 0, 3, 0x800 },
		{ "\xe2\x82\xac", 3, 0, 3, 0x20ac },
		{ "\xed\x9f\xbf", 3, 0, 3, 0xd7ff },                /* last before surrogates */
		{ "\xed\xa0\x80", 3, 0, 0, 0 },                     /* U+D800 */
		{ "\xed\xbf\xbf", 3, 0, 0, 0 },                     /* U+DFFF */
		{ "\xee\x80\x80", 3, 0, 3, 0xe000 },
		{ "\xef\xbf\xbf", 3, 0, 3, 0xffff },
		{ "\xf0\x8f\xbf\xbf", 4, 0, 0, 0 },                 /* overlong U+FFFF */
		{ "\xf0\x90\x80\x80", 4, 0, 4, 0x10000 },
		{ "\xf0\x9f\x93\xa7", 4, UTF8_NO_C1 | UTF8_NO_NUL, 4, 0x1f4e7 },
		{ "\xf4\x8f\xbf\xbf", 4, 0, 4, 0x10ffff },
		{ "\xf4\x90\x80\x80", 4, 0, 0, 0 },                 /* U+110000 */
		{ "\xf5\x80\x80\x80", 4, 0, 0, 0 },
		{ "\xf8\x88\x80\x80\x80", 5, 0, 0, 0 },             /* old five-octet form */
		{ "\xff", 1, 0, 0, 0 },
		{ "\xfe", 1, 0, 0, 0 },
		{ "\x80", 1, 0, 0, 0 },                             /* lone continuation */
		{ "\xbf\xbf", 2, 0, 0, 0 },
		{ "\xc3\x28", 2, 0, 0, 0 },                         /* bad continuation */
		{ "\xe2\x82\x41", 3, 0, 0, 0 },
		{ "\xe5\x8f", 2, 0, 0, 0 },                         /* cut at the end */
		{ "\xe5\x8f\xb0", 2, 0, 0, 0 },                     /* cut by avail, not by memory */
		{ "\xf0\x9f\x93\xa7", 3, 0, 0, 0 },
		{ "\xc3\xa9", 1, 0, 0, 0 },
		{ "\xc3\xa9z", 3, 0, 2, 0xe9 },                     /* one sequence only */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t cp = 0xdeadbeef;
		size_t n = utf8_decode((const unsigned char *)cases[i].in, cases[i].avail,
				       cases[i].flags, &cp);
		if (n != cases[i].n || (n > 0 && cp != cases[i].cp))
			fail_msg("case %zu: length %zu cp %#x, want %zu %#x", i, n, (unsigned)cp,
				 cases[i].n, (unsigned)cases[i].cp);
		if (n == 0 && cp != 0xdeadbeef)
			fail_msg("case %zu: refused but wrote a code point", i);
		assert_int_equal(utf8_decode((const unsigned char *)cases[i].in, cases[i].avail,
					     cases[i].flags, NULL), n);
	}
}

/* Every scalar value round-trips; its cut forms are refused; the flags refuse exactly theirs. */
static void test_every_scalar(void **state)
{
	(void)state;
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		if (!is_scalar(cp))
			continue;
		unsigned char ref[4], enc[UTF8_SEQ_MAX];
		size_t rn = ref_encode(cp, ref);
		uint32_t got = 0;
		assert_int_equal(utf8_encode(cp, enc), rn);
		assert_memory_equal(enc, ref, rn);
		if (utf8_decode(ref, rn, 0, &got) != rn || got != cp)
			fail_msg("U+%04X not decoded", (unsigned)cp);
		if (rn > 1 && utf8_decode(ref, rn - 1, 0, NULL) != 0)
			fail_msg("U+%04X cut short accepted", (unsigned)cp);
		assert_int_equal(utf8_decode(ref, rn, UTF8_NO_NUL, NULL), cp == 0 ? 0 : rn);
		assert_int_equal(utf8_decode(ref, rn, UTF8_NO_C1, NULL),
				 cp >= 0x80 && cp <= 0x9f ? 0 : rn);
		assert_int_equal(utf8_valid_prefix(ref, rn, 0), rn);
		assert_int_equal(utf8_chars(ref, rn), 1);
	}
}

/* utf8_valid_prefix as a loop of utf8_decode (it has a short way of its own for two octets). */
static size_t prefix_by_decode(const unsigned char *p, size_t len, unsigned flags)
{
	size_t i = 0, n;
	while (i < len && (n = utf8_decode(p + i, len - i, flags, NULL)) > 0)
		i += n;
	return i;
}

/* Nothing else is accepted: whatever utf8_decode takes from any two- or three-octet string, and
 * from four-octet strings over the F0-F4 leads, is the shortest form of a scalar value; and
 * utf8_valid_prefix agrees with utf8_decode on all of them, with each flag. */
static void test_nothing_else(void **state)
{
	(void)state;
	static const unsigned char tails[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
					       0xbf, 0xc0, 0xc2, 0xf4, 0xff };
	unsigned long accepted[5] = { 0 };
	unsigned char p[4];
	for (unsigned a = 0; a < 256; a++) {
		for (unsigned b = 0; b < 256; b++) {
			unsigned cmax = a >= 0xe0 && a <= 0xf4 ? 256 : 1;
			for (unsigned c = 0; c < cmax; c++) {
				size_t dmax = a >= 0xf0 && a <= 0xf4 ? sizeof(tails) : 1;
				for (size_t d = 0; d < dmax; d++) {
					p[0] = (unsigned char)a;
					p[1] = (unsigned char)b;
					p[2] = (unsigned char)c;
					p[3] = tails[d];
					size_t avail = cmax == 1 ? 2 : dmax == 1 ? 3 : 4;
					uint32_t cp;
					size_t n = utf8_decode(p, avail, 0, &cp);
					unsigned char ref[4];
					if (n > 0 && (!is_scalar(cp) || ref_encode(cp, ref) != n ||
						      memcmp(ref, p, n) != 0))
						fail_msg("%02x %02x %02x %02x: took %zu as U+%04X", a,
							 b, c, p[3], n, (unsigned)cp);
					accepted[n]++;
					static const unsigned fl[] = { 0, UTF8_NO_NUL, UTF8_NO_C1 };
					for (size_t f = 0; f < 3; f++)
						if (utf8_valid_prefix(p, avail, fl[f]) !=
						    prefix_by_decode(p, avail, fl[f]))
							fail_msg("%02x %02x %02x %02x: prefix "
								 "differs, flags %u", a, b, c,
								 p[3], fl[f]);
				}
			}
		}
	}
	/* each length was reached, so the loops did look at what they claim to */
	for (size_t n = 1; n <= 4; n++)
		assert_true(accepted[n] > 0);
}

/* The lead table an octet-at-a-time parser uses (imap-parser.c quoted strings). */
static void test_lead(void **state)
{
	(void)state;
	for (unsigned c = 0; c < 256; c++) {
		unsigned char lo = 0, hi = 0;
		size_t n = utf8_lead((unsigned char)c, &lo, &hi);
		size_t want = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
			      c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		unsigned wlo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
		unsigned whi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
		assert_int_equal(n, want);
		if (n > 0) {
			assert_int_equal(lo, wlo);
			assert_int_equal(hi, whi);
		}
	}
}

/* Longest well-formed prefix (casefold.c folds that much, then keeps one octet as it is). */
static void test_valid_prefix(void **state)
{
	(void)state;
	assert_int_equal(utf8_valid_prefix(S(""), 0), 0);
	assert_int_equal(utf8_valid_prefix(S("plain"), 0), 5);
	assert_int_equal(utf8_valid_prefix(S("caf\xc3\xa9"), 0), 5);
	assert_int_equal(utf8_valid_prefix(S("ab\xc3\xa9\xff" "cd"), 0), 4);
	assert_int_equal(utf8_valid_prefix(S("caf\xe9 Perch\xc3\xa9"), 0), 3);   /* Latin-1 */
	assert_int_equal(utf8_valid_prefix(S("x\xe2\x82"), 0), 1);               /* cut */
	assert_int_equal(utf8_valid_prefix(S("\xed\xa0\x80z"), 0), 0);           /* surrogate */
	assert_int_equal(utf8_valid_prefix(S("\x80"), 0), 0);
	assert_int_equal(utf8_valid_prefix(S("a\0b"), 0), 3);
	assert_int_equal(utf8_valid_prefix(S("a\0b"), UTF8_NO_NUL), 1);
	assert_int_equal(utf8_valid_prefix(S("a\xc2\x85z"), 0), 4);
	assert_int_equal(utf8_valid_prefix(S("a\xc2\x85z"), UTF8_NO_C1), 1);
	assert_int_equal(utf8_valid_prefix(S("\xf0\x9f\x93\xa7\xf0\x9f\x93"), 0), 4);
	assert_int_equal(utf8_valid_prefix(S("\xd0\x9c\xd0\xb8\xd1\x80"), 0), 6);   /* two-octet way */
	assert_int_equal(utf8_valid_prefix(S("\xd0\x9c\xd0" "A"), 0), 2);
	assert_int_equal(utf8_valid_prefix(S("\xdf\xbf\xc2"), 0), 2);
	assert_int_equal(utf8_valid_prefix(S("\xc2\xa0\xc2\x9f"), UTF8_NO_C1), 2);
}

/* Character counts (password_min_length counts characters, not octets). */
static void test_chars(void **state)
{
	(void)state;
	assert_int_equal(utf8_chars(S("")), 0);
	assert_int_equal(utf8_chars(S("secret")), 6);
	assert_int_equal(utf8_chars(S("\xc3\xa9\xc3\xa9\xc3\xa9")), 3);
	assert_int_equal(utf8_chars(S("\xf0\x9f\x93\xa7!")), 2);
	assert_int_equal(utf8_chars(S("\xff\xfe")), 2);          /* stray leads count */
	assert_int_equal(utf8_chars(S("\x80\xbf")), 0);          /* continuations do not */
	for (unsigned c = 0; c < 256; c++)
		assert_int_equal(utf8_is_continuation((unsigned char)c), c >= 0x80 && c <= 0xbf);
}

/* utf8_append: the octets of utf8_encode, and -1 when the buffer is full. */
static void test_append(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 6);
	assert_int_equal(utf8_append(&b, 'a'), 0);
	assert_int_equal(utf8_append(&b, 0xe9), 0);
	assert_int_equal(utf8_append(&b, 0x1f4e7), -1);   /* 4 more would pass 6 */
	assert_int_equal(utf8_append(&b, 0x20ac), 0);
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "a\xc3\xa9\xe2\x82\xac", 6);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_every_scalar),
		cmocka_unit_test(test_nothing_else),
		cmocka_unit_test(test_lead),
		cmocka_unit_test(test_valid_prefix),
		cmocka_unit_test(test_chars),
		cmocka_unit_test(test_append),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
