/* test-base64.c - unit tests for base64.c (RFC 4648 vectors, strictness, buffer limits, the
 * standard and the modified UTF-7 alphabet). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base64.h"

struct b64_case {
	const char *plain;
	size_t plain_len;
	const char *encoded;
};

/* RFC 4648 section 10, plus binary and SASL PLAIN forms. */
static const struct b64_case good_cases[] = {
	{ "", 0, "" },
	{ "f", 1, "Zg==" },
	{ "fo", 2, "Zm8=" },
	{ "foo", 3, "Zm9v" },
	{ "foob", 4, "Zm9vYg==" },
	{ "fooba", 5, "Zm9vYmE=" },
	{ "foobar", 6, "Zm9vYmFy" },
	{ "\0user\0pass", 10, "AHVzZXIAcGFzcw==" },
	{ "\xff\xfe\xfd", 3, "//79" },
	{ "\xfb\xef\xbe", 3, "++++" },
	{ "\0", 1, "AA==" },
	{ "\0\0", 2, "AAA=" },
};

/* Inputs a strict decoder must refuse. */
static const char *const bad_cases[] = {
	"Z", "Zg", "Zg=", "Zm9vY", "Zm9v=",          /* length not a multiple of 4 */
	"====", "Z===", "=g==", "Z=g=", "Zm=v", "=m9v", "Zg==Zg==",   /* misplaced padding */
	"Zh==", "Zm9=", "AB==", "AAB=",                /* nonzero bits under the padding */
	"Zm 9", "Zm9v\n", " Zm9", "Zm9v\r\n",          /* whitespace */
	"Zm-v", "Zm_v", "Zm.v", "Zm\x80v", "Zm9\x7f",  /* outside the alphabet */
};

/* Good rows decode to the plain text and encode back; output limits are exact. */
static void test_good(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct b64_case *c = &good_cases[i];
		size_t elen = strlen(c->encoded);
		unsigned char dec[64];
		char enc[64];
		char *in = malloc(elen + 1);   /* exact size, so ASan sees any overread */
		assert_non_null(in);
		memcpy(in, c->encoded, elen);

		assert_int_equal(base64_decode(in, elen, dec, sizeof(dec)), (ssize_t)c->plain_len);
		assert_memory_equal(dec, c->plain, c->plain_len);
		assert_int_equal(base64_decode(in, elen, dec, c->plain_len), (ssize_t)c->plain_len);
		if (c->plain_len > 0)
			assert_int_equal(base64_decode(in, elen, dec, c->plain_len - 1), -1);
		assert_true(c->plain_len <= BASE64_DECODED_MAX(elen));
		free(in);

		assert_int_equal(BASE64_ENCODED_LEN(c->plain_len), elen);
		memset(enc, 'x', sizeof(enc));
		assert_int_equal(base64_encode((const unsigned char *)c->plain, c->plain_len, enc,
					       sizeof(enc)), elen);
		assert_string_equal(enc, c->encoded);
		memset(enc, 'x', sizeof(enc));
		assert_int_equal(base64_encode((const unsigned char *)c->plain, c->plain_len, enc,
					       elen + 1), elen);
		assert_string_equal(enc, c->encoded);
		/* one short: 0 and an empty string */
		memset(enc, 'x', sizeof(enc));
		assert_int_equal(base64_encode((const unsigned char *)c->plain, c->plain_len, enc,
					       elen), 0);
		if (elen > 0)
			assert_int_equal(enc[0], '\0');
	}
}

/* Bad rows are all refused. */
static void test_bad(void **state)
{
	(void)state;
	unsigned char out[64];
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		size_t n = strlen(bad_cases[i]);
		char *in = malloc(n + 1);
		assert_non_null(in);
		memcpy(in, bad_cases[i], n);
		if (base64_decode(in, n, out, sizeof(out)) != -1)
			fail_msg("row %zu \"%s\" accepted", i, bad_cases[i]);
		free(in);
	}
	/* an embedded NUL is just another invalid character */
	assert_int_equal(base64_decode("Zm\0v", 4, out, sizeof(out)), -1);
	assert_int_equal(base64_decode("Zg\0=", 4, out, sizeof(out)), -1);
}

/* Size macros. */
static void test_macros(void **state)
{
	(void)state;
	assert_int_equal(BASE64_DECODED_MAX(0), 0);
	assert_int_equal(BASE64_DECODED_MAX(4), 3);
	assert_int_equal(BASE64_DECODED_MAX(5), 6);
	assert_int_equal(BASE64_DECODED_MAX(8), 6);
	assert_int_equal(BASE64_ENCODED_LEN(0), 0);
	assert_int_equal(BASE64_ENCODED_LEN(1), 4);
	assert_int_equal(BASE64_ENCODED_LEN(3), 4);
	assert_int_equal(BASE64_ENCODED_LEN(4), 8);
	assert_true(BASE64_ENCODED_LEN(BASE64_ENCODE_INPUT_MAX) < (size_t)-1);
	assert_true(BASE64_DECODED_MAX((size_t)-1) > 0);
}

/* Every length 0..300 of mixed bytes round-trips; encode refuses huge or zero-capacity output. */
static void test_roundtrip(void **state)
{
	(void)state;
	unsigned char plain[300], dec[300];
	char enc[BASE64_ENCODED_LEN(300) + 1];
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)(i * 151 + 7);
	for (size_t n = 0; n <= sizeof(plain); n++) {
		size_t e = base64_encode(plain, n, enc, sizeof(enc));
		assert_int_equal(e, BASE64_ENCODED_LEN(n));
		assert_int_equal(strlen(enc), e);
		assert_int_equal(base64_decode(enc, e, dec, sizeof(dec)), (ssize_t)n);
		assert_memory_equal(dec, plain, n);
	}
	assert_int_equal(base64_encode(plain, 1, enc, 0), 0);
	assert_int_equal(base64_encode(plain, BASE64_ENCODE_INPUT_MAX + 1, enc, sizeof(enc)), 0);
	assert_int_equal(enc[0], '\0');
}

/* Both alphabets, every octet: base64_value is the index in the table or -1, base64_char its
 * inverse on the low 6 bits. IMAP names rely on ',' being 63 and '/', '=', '-', '&' and NUL
 * being no digit there (the NUL of an unterminated shift, the '-' that ends one). */
static void test_alphabets(void **state)
{
	(void)state;
	static const char *const table[] = {
		[BASE64_STD] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
		[BASE64_MUTF7] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,",
	};
	for (int a = BASE64_STD; a <= BASE64_MUTF7; a++) {
		for (unsigned c = 0; c < 256; c++) {
			const char *at = c != 0 ? strchr(table[a], (int)c) : NULL;
			int want = at != NULL ? (int)(at - table[a]) : -1;
			if (base64_value((unsigned char)c, (enum base64_alphabet)a) != want)
				fail_msg("alphabet %d octet %#x: %d, want %d", a, c,
					 base64_value((unsigned char)c, (enum base64_alphabet)a), want);
		}
		for (unsigned v = 0; v < 256; v++)
			assert_int_equal(base64_char(v, (enum base64_alphabet)a), table[a][v & 63]);
	}
	assert_int_equal(base64_value(',', BASE64_MUTF7), 63);
	assert_int_equal(base64_value('/', BASE64_MUTF7), -1);
	assert_int_equal(base64_value(',', BASE64_STD), -1);
	assert_int_equal(base64_value('/', BASE64_STD), 63);
	assert_int_equal(base64_value('+', BASE64_MUTF7), 62);
	assert_int_equal(base64_value('=', BASE64_STD), -1);
	assert_int_equal(base64_value('-', BASE64_MUTF7), -1);
	assert_int_equal(base64_value('&', BASE64_MUTF7), -1);
	assert_int_equal(base64_value('\0', BASE64_MUTF7), -1);
	/* the strict decoder is the standard alphabet's */
	unsigned char out[3];
	assert_int_equal(base64_decode("//79", 4, out, sizeof(out)), 3);
	assert_int_equal(base64_decode(",,79", 4, out, sizeof(out)), -1);
}

/* Lenient decoding for MIME bodies and RFC 2047 "B" words: what mime-section.c and
 * mime-charset.c rely on. */
static void test_lenient(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
		size_t want_len;
	} cases[] = {
		{ "", "", 0 },
		{ "Zm9vYmFy", "foobar", 6 },
		{ "Zm9v\r\nYmFy\r\n", "foobar", 6 },      /* line breaks skipped */
		{ " Zm 9v!Ym\tFy", "foobar", 6 },          /* any stray character */
		{ "Zm9v,,,,", "foo", 3 },                   /* ',' is not standard base64 */
		{ "Zm9vYg==Zm9v", "foobfoo", 7 },           /* '=' ends a group: concatenations */
		{ "Zg==Zg==", "ff", 2 },
		{ "Zg", "f", 1 },                           /* unpadded: the whole octets */
		{ "Zm9vY", "foo", 3 },                      /* 6 bits left over: dropped */
		{ "w6k=", "\xc3\xa9", 2 },                  /* =?utf-8?b?w6k=?= */
		{ "AHVzZXIAcGFzcw==", "\0user\0pass", 10 },
		{ "====", "", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf b;
		buf_init(&b, 1024);
		assert_int_equal(base64_decode_lenient(cases[i].in, strlen(cases[i].in), &b), 0);
		if (b.len != cases[i].want_len || memcmp(b.data ? b.data : "", cases[i].want,
							 b.len) != 0)
			fail_msg("case %zu \"%s\": %zu octets", i, cases[i].in, b.len);
		buf_free(&b);
	}
	/* more than one 4096-octet chunk, in 76-character lines */
	static unsigned char plain[10000];
	static char enc[BASE64_ENCODED_LEN(sizeof(plain)) + 1];
	struct buf lines, b;
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)(i * 131 + 3);
	size_t e = base64_encode(plain, sizeof(plain), enc, sizeof(enc));
	buf_init(&lines, 1 << 20);
	for (size_t i = 0; i < e; i += 76) {
		assert_int_equal(buf_append(&lines, enc + i, e - i < 76 ? e - i : 76), 0);
		assert_int_equal(buf_append(&lines, "\r\n", 2), 0);
	}
	buf_init(&b, 1 << 20);
	assert_int_equal(base64_decode_lenient(lines.data, lines.len, &b), 0);
	assert_int_equal(b.len, sizeof(plain));
	assert_memory_equal(b.data, plain, sizeof(plain));
	buf_free(&b);
	/* a full buffer is -1, at the end and at a chunk */
	buf_init(&b, 2);
	assert_int_equal(base64_decode_lenient("Zm9v", 4, &b), -1);
	buf_free(&b);
	buf_init(&b, 5000);
	assert_int_equal(base64_decode_lenient(lines.data, lines.len, &b), -1);
	buf_free(&b);
	buf_free(&lines);
}

/* Run all base64 tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_alphabets),
		cmocka_unit_test(test_lenient),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
