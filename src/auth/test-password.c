/* test-password.c - unit tests for password.c: fresh yescrypt hashes, known-answer hashes made by
 * other tools, malformed and unsupported forms, and concurrent use.
 *
 * Where the known answers come from (password "secret" throughout):
 *   $6$, $5$    openssl passwd -6 -salt abc secret / openssl passwd -5 -salt abc secret
 *               (the $6$ one also matches Python's crypt.crypt('secret', '$6$abc$'))
 *   $2y$        htpasswd -bnBC 5 x secret (Apache APR's own bcrypt)
 *   $2b$        Python crypt.crypt('secret', '$2b$04$abcdefghijklmnopqrstuu')
 *   $y$         Python crypt.crypt('secret', '$y$j9T$F5Jx5fExrKuPp53xLKQ..1$')
 *   $argon2id$  echo -n secret | argon2 salt1234 -id -e  (Debian package argon2, reference code)
 *               echo -n secret | argon2 somesalt16bytes! -id -e -t 2 -m 12 -p 2
 *   $argon2i$   echo -n secret | argon2 salt1234 -i -e
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "password.h"

#define SHA512_KAT "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvU" \
		   "HYRLr/TsVArtr91iR1"
#define SHA256_KAT "$5$abc$qsg6EHbUzHQzF1POlD7zUwBINSELQxypPaeDcZe6vH0"
#define BLF_KAT "$2y$05$YcvYRhVPBAp1ErCwIiAmMeWA3vwEIbtMykb.g3BFIumndBxXepCu2"
#define BLF2B_KAT "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW"
#define YESCRYPT_KAT "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0"
#define ARGON2ID_KAT "$argon2id$v=19$m=4096,t=3,p=1$c2FsdDEyMzQ$jgu26YbOnKT/folvFqaNiklsgT9WrVVK" \
		     "WTdH9KtY3Jw"
/* salt and hash of ARGON2ID_KAT, for the malformed variants below */
#define A2_TAIL "$c2FsdDEyMzQ$jgu26YbOnKT/folvFqaNiklsgT9WrVVKWTdH9KtY3Jw"
#define ARGON2ID_P2_KAT "$argon2id$v=19$m=4096,t=2,p=2$c29tZXNhbHQxNmJ5dGVzIQ$7M/J25OqZ/0SnOv0N" \
			"GXbtYDFBHfoY242Qy+KYDzpmGo"
#define ARGON2I_KAT "$argon2i$v=19$m=4096,t=3,p=1$c2FsdDEyMzQ$3fFnREi8iaIlxQjUprSFtd3qw5agfp6pz" \
		    "P43e2nhbx0"

struct verify_case {
	const char *hash;
	const char *password;
	int want;   /* password_verify: 1, 0 or -1 */
};

static const struct verify_case verify_cases[] = {
	/* Dovecot-prefixed known answers */
	{ "{SHA512-CRYPT}" SHA512_KAT, "secret", 1 },
	{ "{SHA512-CRYPT}" SHA512_KAT, "Secret", 0 },
	{ "{SHA512-CRYPT}" SHA512_KAT, "", 0 },
	{ "{sha512-crypt}" SHA512_KAT, "secret", 1 },
	{ "{SHA256-CRYPT}" SHA256_KAT, "secret", 1 },
	{ "{SHA256-CRYPT}" SHA256_KAT, "secre", 0 },
	{ "{BLF-CRYPT}" BLF_KAT, "secret", 1 },
	{ "{BLF-CRYPT}" BLF_KAT, "secret ", 0 },
	{ "{BLF-CRYPT}" BLF2B_KAT, "secret", 1 },
	{ "{CRYPT}" SHA512_KAT, "secret", 1 },
	{ "{CRYPT}" YESCRYPT_KAT, "secret", 1 },
	{ "{ARGON2ID}" ARGON2ID_KAT, "secret", 1 },
	{ "{ARGON2ID}" ARGON2ID_KAT, "wrong", 0 },
	{ "{ARGON2ID}" ARGON2ID_P2_KAT, "secret", 1 },
	{ "{ARGON2I}" ARGON2I_KAT, "secret", 1 },
	{ "{ARGON2I}" ARGON2I_KAT, "secreT", 0 },
	/* bare forms */
	{ SHA512_KAT, "secret", 1 },
	{ SHA512_KAT, "nope", 0 },
	{ BLF_KAT, "secret", 1 },
	{ YESCRYPT_KAT, "secret", 1 },
	{ YESCRYPT_KAT, "secret\n", 0 },
	{ ARGON2ID_KAT, "secret", 1 },
	{ ARGON2ID_KAT, "", 0 },
	{ ARGON2I_KAT, "secret", 1 },
	/* unknown or mismatched schemes */
	{ "{PLAIN}secret", "secret", -1 },
	{ "{MD5-CRYPT}$1$abc$gRP6kcQYj1fd0QWxodlt00", "secret", -1 },
	{ "{SSHA512}abcd", "secret", -1 },
	{ "{SHA512-CRYPT}" BLF_KAT, "secret", -1 },
	{ "{BLF-CRYPT}" SHA512_KAT, "secret", -1 },
	{ "{SHA256-CRYPT}" SHA512_KAT, "secret", -1 },
	{ "{ARGON2ID}" ARGON2I_KAT, "secret", -1 },
	{ "{ARGON2I}" ARGON2ID_KAT, "secret", -1 },
	{ "{ARGON2ID}" SHA512_KAT, "secret", -1 },
	{ "{CRYPT}" ARGON2ID_KAT, "secret", -1 },
	{ "{SHA512-CRYPT" SHA512_KAT, "secret", -1 },
	{ "{}" SHA512_KAT, "secret", -1 },
	{ "{SHA512-CRYPT}{SHA512-CRYPT}" SHA512_KAT, "secret", -1 },
	/* malformed */
	{ "", "secret", -1 },
	{ "secret", "secret", -1 },
	{ "{SHA512-CRYPT}", "secret", -1 },
	{ "$1$abc$gRP6kcQYj1fd0QWxodlt00", "secret", -1 },   /* MD5-crypt: refused */
	{ "abJnggxhB/yWI", "secret", -1 },                   /* DES: refused */
	{ "$6$abc$", "secret", -1 },
	{ "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp", "secret", -1 },  /* truncated */
	{ SHA512_KAT "x", "secret", -1 },
	{ " " SHA512_KAT, "secret", -1 },
	{ "$2y$05$YcvYRhVPBAp1ErCwIiAmMeWA3vwEIbtMykb.g3BFIumndBxXepCu", "secret", -1 },
	{ "$2y$99$YcvYRhVPBAp1ErCwIiAmMeWA3vwEIbtMykb.g3BFIumndBxXepCu2", "secret", -1 },
	{ "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$", "secret", -1 },
	{ "$y$", "secret", -1 },
	{ "$argon2id$", "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=1$c2FsdDEyMzQ$", "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=1$c2FsdDEyMzQ$!!!!", "secret", -1 },
	{ "$argon2id$v=16$m=4096,t=3,p=1" A2_TAIL, "secret", -1 },
	{ "$argon2id$m=4096,t=3,p=1" A2_TAIL, "secret", -1 },
	{ "$argon2id$v=19$m=99999999,t=3,p=1" A2_TAIL, "secret", -1 },   /* over our ceiling */
	{ "$argon2id$v=19$m=4096,t=99999999999,p=1" A2_TAIL, "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=0" A2_TAIL, "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=1,x=1" A2_TAIL, "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=+1" A2_TAIL, "secret", -1 },
	{ "$argon2d$v=19$m=4096,t=3,p=1" A2_TAIL, "secret", -1 },
	{ "$argon2id$v=19$m=4096,t=3,p=1$c2FsdA$jgu26YbOnKT/folvFqaNiklsgT9WrVVKWTdH9KtY3Jw",
	  "secret", -1 },   /* 4-octet salt: below Argon2's minimum */
};

/* Each row gives the documented result, and password_hash_supported agrees on usability. */
static void test_verify_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(verify_cases) / sizeof(verify_cases[0]); i++) {
		const struct verify_case *c = &verify_cases[i];
		int got = password_verify(c->hash, c->password);
		if (got != c->want)
			fail_msg("row %zu \"%s\": verify %d, want %d", i, c->hash, got, c->want);
		got = password_hash_supported(c->hash);
		if (got != (c->want < 0 ? -1 : 0))
			fail_msg("row %zu \"%s\": supported %d", i, c->hash, got);
	}
}

/* A fresh yescrypt hash verifies, a wrong password does not, and salts differ. */
static void test_hash_fresh(void **state)
{
	(void)state;
	char *h1 = password_hash("correct horse");
	char *h2 = password_hash("correct horse");
	char prefixed[300];
	assert_non_null(h1);
	assert_non_null(h2);
	assert_memory_equal(h1, "$y$", 3);
	assert_string_not_equal(h1, h2);
	assert_int_equal(password_verify(h1, "correct horse"), 1);
	assert_int_equal(password_verify(h1, "correct horsE"), 0);
	assert_int_equal(password_verify(h1, ""), 0);
	assert_int_equal(password_verify(h2, "correct horse"), 1);
	assert_int_equal(password_hash_supported(h1), 0);
	strcpy(prefixed, "{CRYPT}");
	strcat(prefixed, h1);
	assert_int_equal(password_verify(prefixed, "correct horse"), 1);
	free(h1);
	free(h2);

	h1 = password_hash("");
	assert_non_null(h1);
	assert_int_equal(password_verify(h1, ""), 1);
	assert_int_equal(password_verify(h1, " "), 0);
	free(h1);

	/* long and non-ASCII passwords: PASSWORD_MAX octets work, one more cannot be hashed and
	 * never matches a crypt(3) hash (but is no reason to call the hash malformed) */
	char longpw[PASSWORD_MAX + 2];
	memset(longpw, 'p', PASSWORD_MAX);
	longpw[PASSWORD_MAX] = '\0';
	h1 = password_hash(longpw);
	assert_non_null(h1);
	assert_int_equal(password_verify(h1, longpw), 1);
	longpw[PASSWORD_MAX - 1] = 'q';
	assert_int_equal(password_verify(h1, longpw), 0);
	longpw[PASSWORD_MAX] = 'p';
	longpw[PASSWORD_MAX + 1] = '\0';
	assert_null(password_hash(longpw));
	assert_int_equal(password_verify(h1, longpw), 0);
	assert_int_equal(password_verify("{SHA512-CRYPT}" SHA512_KAT, longpw), 0);
	assert_int_equal(password_verify("$6$abc$", longpw), -1);
	free(h1);
	h1 = password_hash("pässwörd");
	assert_non_null(h1);
	assert_int_equal(password_verify(h1, "pässwörd"), 1);
	assert_int_equal(password_verify(h1, "passwort"), 0);
	free(h1);
}

/* NULL arguments are refused, not dereferenced. */
static void test_null(void **state)
{
	(void)state;
	assert_null(password_hash(NULL));
	assert_int_equal(password_verify(NULL, "x"), -1);
	assert_int_equal(password_verify(SHA512_KAT, NULL), -1);
	assert_int_equal(password_hash_supported(NULL), -1);
}

/* A hash longer than any we store is refused without being parsed. */
static void test_overlong(void **state)
{
	(void)state;
	char big[600];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "{SHA512-CRYPT}$6$", 17);
	assert_int_equal(password_verify(big, "secret"), -1);
	memcpy(big, "$argon2id$v=19$m=4096,t=3,p=1$", 30);
	assert_int_equal(password_verify(big, "secret"), -1);
}

struct thread_arg {
	const char *hash;
	const char *good;
	int ok;
};

/* Thread body: verify the right and a wrong password a few times. */
static void *verify_thread(void *p)
{
	struct thread_arg *a = p;
	a->ok = 1;
	for (int i = 0; i < 3; i++) {
		if (password_verify(a->hash, a->good) != 1 || password_verify(a->hash, "bad") != 0)
			a->ok = 0;
	}
	return NULL;
}

/* Verification from several threads at once gives the same answers (crypt_rn, pthread_once). */
static void test_threads(void **state)
{
	(void)state;
	static const char *const hashes[] = {
		"{SHA512-CRYPT}" SHA512_KAT, "{ARGON2ID}" ARGON2ID_KAT, "{BLF-CRYPT}" BLF_KAT,
		YESCRYPT_KAT, ARGON2I_KAT, "{SHA256-CRYPT}" SHA256_KAT,
	};
	enum { N = sizeof(hashes) / sizeof(hashes[0]) };
	pthread_t th[N];
	struct thread_arg args[N];
	for (size_t i = 0; i < N; i++) {
		args[i].hash = hashes[i];
		args[i].good = "secret";
		assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &args[i]), 0);
	}
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (!args[i].ok)
			fail_msg("thread %zu (%s) got a wrong answer", i, hashes[i]);
	}
}

/* Run all password tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_table),
		cmocka_unit_test(test_hash_fresh),
		cmocka_unit_test(test_null),
		cmocka_unit_test(test_overlong),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
