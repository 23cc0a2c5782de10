/* test-sasl.c - unit tests for sasl.c: SASL PLAIN (RFC 4616) and LOGIN response decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sasl.h"

struct plain_case {
	const char *b64;
	int rc;
	const char *user, *pass;
};

static const struct plain_case plain_cases[] = {
	{ "AGFsaWNlAHNlY3JldA==", 0, "alice", "secret" },          /* \0alice\0secret */
	{ "YWxpY2UAYWxpY2UAcHc=", 0, "alice", "pw" },              /* alice\0alice\0pw */
	{ "QUxJQ0UAYWxpY2UAcHc=", 0, "alice", "pw" },              /* ALICE\0alice\0pw */
	{ "Ym9iAGFsaWNlAHB3", -2, NULL, NULL },                    /* bob\0alice\0pw */
	{ "AGFsaWNlAA==", -1, NULL, NULL },                        /* \0alice\0 (no password) */
	{ "AABwdw==", -1, NULL, NULL },                            /* \0\0pw (no user) */
	{ "AGFsaWNlAHB3AGV4dHJh", -1, NULL, NULL },                /* \0alice\0pw\0extra */
	{ "YWxpY2Vwdw==", -1, NULL, NULL },                        /* no NUL at all */
	{ "AGFsaWNlAHNlY3JldA", -1, NULL, NULL },                  /* unpadded */
	{ "AGFsaWNl AHNlY3JldA==", -1, NULL, NULL },               /* blank inside */
	{ "", -1, NULL, NULL },
	{ "=", -1, NULL, NULL },
};

/* PLAIN: layout, empty parts, a NUL inside the password, authzid of another user. */
static void test_plain(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
		const struct plain_case *c = &plain_cases[i];
		char user[64], pass[64];
		int rc = sasl_plain_decode(c->b64, user, sizeof(user), pass, sizeof(pass));
		if (rc != c->rc)
			fail_msg("case %zu (%s): %d, want %d", i, c->b64, rc, c->rc);
		if (rc == 0) {
			assert_string_equal(user, c->user);
			assert_string_equal(pass, c->pass);
		}
	}
	/* buffers too small for the parts */
	char u[7], p[64];
	assert_int_equal(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", u, 5, p, sizeof(p)), -1);
	assert_int_equal(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", p, sizeof(p), u, 6), -1);
	assert_int_equal(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", p, sizeof(p), u, 7), 0);
}

/* LOGIN: "=" is empty, NUL and bad base64 refused, output bounded. */
static void test_login(void **state)
{
	(void)state;
	char out[8];
	assert_int_equal(sasl_login_decode("YWxpY2U=", out, sizeof(out)), 5);
	assert_string_equal(out, "alice");
	assert_int_equal(sasl_login_decode("=", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(sasl_login_decode("", out, sizeof(out)), 0);
	assert_int_equal(sasl_login_decode("YQBi", out, sizeof(out)), -1);      /* a\0b */
	assert_int_equal(sasl_login_decode("YWxpY2U", out, sizeof(out)), -1);   /* unpadded */
	assert_int_equal(sasl_login_decode("YWxpY2VhbGljZQ==", out, sizeof(out)), -1); /* 10 > 7 */
	assert_int_equal(sasl_login_decode("YWxpY2Vh", out, 6), -1);            /* 6 > 5 */
	assert_int_equal(sasl_login_decode("YWxpY2Vh", out, sizeof(out)), 6);
	assert_int_equal(sasl_login_decode("YQ==", out, 0), -1);
}

/* Test runner. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_login),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
