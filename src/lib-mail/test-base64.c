/* test-base64.c - unit tests for base64.c (RFC 4648 vectors, strictness, buffer limits). */
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

/* Run all base64 tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
