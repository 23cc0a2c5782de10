/* password.c - password hashing and verification (yescrypt and crypt(3) forms through libxcrypt,
 * Argon2 through libsodium, Dovecot "{SCHEME}" prefixes).
 *
 * Thread safety: crypt_rn() with a per-call struct crypt_data, libsodium initialised once through
 * pthread_once(). Every buffer that held a hash or derived secret is wiped with sodium_memzero()
 * before it is freed or goes out of scope. Link with -lcrypt -lsodium -pthread.
 */
#include "password.h"

#include <crypt.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Longest hash we take: yescrypt and SHA-512 crypt are about 100 octets, Argon2 strings must fit
 * libsodium's crypto_pwhash_STRBYTES (128, NUL included); acct_user.hash is 256. */
#define PASSWORD_HASH_MAX 255

_Static_assert(PASSWORD_MAX == CRYPT_MAX_PASSPHRASE_SIZE - 1, "PASSWORD_MAX follows libxcrypt");
/* Argon2 cost ceilings for hashes we accept: an imported hash with a huge memory or time cost
 * would let one login attempt stall or exhaust the auth process. 1 GiB is far above any sane
 * setting (libsodium's "sensitive" preset); t and p likewise. */
#define PASSWORD_ARGON2_M_MAX (1024u * 1024u)   /* KiB */
#define PASSWORD_ARGON2_T_MAX 64u
#define PASSWORD_ARGON2_P_MAX 64u

enum pw_kind {
	PW_CRYPT,    /* handled by libxcrypt */
	PW_ARGON2,   /* handled by libsodium */
};

/* A Dovecot scheme prefix and the hash forms it may carry. */
struct pw_scheme {
	const char *name;          /* inside the braces, compared without regard to case */
	enum pw_kind kind;
	const char *const *prefixes;
};

/* crypt(3) prefixes we verify (password.h): yescrypt, gost-yescrypt, scrypt, SHA-512/256 crypt,
 * bcrypt. DES, MD5 and the other legacy methods are refused. */
static const char *const crypt_prefixes[] = { "$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$",
					      "$2a$", NULL };
static const char *const sha512_prefixes[] = { "$6$", NULL };
static const char *const sha256_prefixes[] = { "$5$", NULL };
static const char *const blf_prefixes[] = { "$2y$", "$2b$", "$2a$", NULL };
static const char *const argon2id_prefixes[] = { "$argon2id$", NULL };
static const char *const argon2i_prefixes[] = { "$argon2i$", NULL };
static const char *const argon2_prefixes[] = { "$argon2id$", "$argon2i$", NULL };

static const struct pw_scheme pw_schemes[] = {
	{ "SHA512-CRYPT", PW_CRYPT, sha512_prefixes },
	{ "SHA256-CRYPT", PW_CRYPT, sha256_prefixes },
	{ "BLF-CRYPT", PW_CRYPT, blf_prefixes },
	{ "CRYPT", PW_CRYPT, crypt_prefixes },
	{ "ARGON2ID", PW_ARGON2, argon2id_prefixes },
	{ "ARGON2I", PW_ARGON2, argon2i_prefixes },
};

static pthread_once_t pw_sodium_once = PTHREAD_ONCE_INIT;
static int pw_sodium_ok;

/* pthread_once body: initialise libsodium and remember whether that worked. */
static void pw_sodium_init(void)
{
	pw_sodium_ok = sodium_init() >= 0;
}

/* 0 once libsodium is usable, -1 if it could not be initialised. */
static int pw_sodium_ready(void)
{
	if (pthread_once(&pw_sodium_once, pw_sodium_init) != 0)
		return -1;
	return pw_sodium_ok ? 0 : -1;
}

/* Whether s starts with prefix. */
static int pw_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Whether s[0..n) equals the upper-case scheme name without regard to ASCII case. */
static int pw_name_eq(const char *s, size_t n, const char *name)
{
	if (strlen(name) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != name[i])
			return 0;
	}
	return 1;
}

/* The index of the first of prefixes that s starts with, or -1. */
static int pw_match_prefix(const char *s, const char *const *prefixes)
{
	for (int i = 0; prefixes[i] != NULL; i++)
		if (pw_has_prefix(s, prefixes[i]))
			return i;
	return -1;
}

/* Split hash into its kind and the bare hash after any "{SCHEME}" prefix, checking that the
 * scheme and the hash form agree. 0 ok, -1 unknown scheme or a form we do not take. */
static int pw_classify(const char *hash, enum pw_kind *kind_r, const char **body_r)
{
	size_t len = strlen(hash);
	if (len == 0 || len > PASSWORD_HASH_MAX)
		return -1;
	for (size_t i = 0; i < len; i++)   /* printable ASCII, no blanks */
		if (hash[i] <= ' ' || hash[i] > '~')
			return -1;
	if (hash[0] == '{') {
		const char *close = strchr(hash, '}');
		if (close == NULL)
			return -1;
		size_t n = (size_t)(close - hash - 1);
		for (size_t i = 0; i < sizeof(pw_schemes) / sizeof(pw_schemes[0]); i++) {
			const struct pw_scheme *sc = &pw_schemes[i];
			if (!pw_name_eq(hash + 1, n, sc->name))
				continue;
			if (pw_match_prefix(close + 1, sc->prefixes) < 0)
				return -1;
			*kind_r = sc->kind;
			*body_r = close + 1;
			return 0;
		}
		return -1;
	}
	if (pw_match_prefix(hash, argon2_prefixes) >= 0) {
		*kind_r = PW_ARGON2;
		*body_r = hash;
		return 0;
	}
	if (pw_match_prefix(hash, crypt_prefixes) >= 0) {
		*kind_r = PW_CRYPT;
		*body_r = hash;
		return 0;
	}
	return -1;
}

/* Parse decimal digits at *p up to a character in stop (checked: no overflow, value <= max).
 * 0 ok with *p on the stop character, -1 otherwise. */
static int pw_parse_uint(const char **p, const char *stop, uint32_t max, uint32_t *out)
{
	const char *s = *p;
	uint32_t v = 0;
	size_t digits = 0;
	while (*s >= '0' && *s <= '9') {
		uint32_t d = (uint32_t)(*s - '0');
		if (v > (UINT32_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
		s++;
		digits++;
	}
	if (digits == 0 || v > max || *s == '\0' || strchr(stop, *s) == NULL)
		return -1;
	*p = s;
	*out = v;
	return 0;
}

/* Check the parameter section "$v=19$m=M,t=T,p=P$" of an Argon2 string against our cost
 * ceilings; libsodium checks the rest. 0 ok, -1 not acceptable. */
static int pw_argon2_params(const char *body)
{
	const char *p = strchr(body + 1, '$');   /* after "$argon2id" */
	uint32_t v, m, t, par;
	if (p == NULL || strncmp(p, "$v=", 3) != 0)
		return -1;
	p += 3;
	if (pw_parse_uint(&p, "$", UINT32_MAX, &v) < 0 || v != 19)
		return -1;
	if (strncmp(p, "$m=", 3) != 0)
		return -1;
	p += 3;
	if (pw_parse_uint(&p, ",", PASSWORD_ARGON2_M_MAX, &m) < 0 || strncmp(p, ",t=", 3) != 0)
		return -1;
	p += 3;
	if (pw_parse_uint(&p, ",", PASSWORD_ARGON2_T_MAX, &t) < 0 || strncmp(p, ",p=", 3) != 0)
		return -1;
	p += 3;
	if (pw_parse_uint(&p, "$", PASSWORD_ARGON2_P_MAX, &par) < 0)
		return -1;
	return 0;
}

/* Copy an Argon2 string into the fixed-size buffer libsodium's API takes. 0 ok, -1 too long. */
static int pw_argon2_copy(const char *body, char buf[crypto_pwhash_STRBYTES])
{
	size_t n = strlen(body);
	if (n >= crypto_pwhash_STRBYTES)
		return -1;
	memset(buf, 0, crypto_pwhash_STRBYTES);
	memcpy(buf, body, n);
	return 0;
}

/* Whether an Argon2 string is well formed and within our cost ceilings. 0 yes, -1 no. */
static int pw_argon2_check(const char *body)
{
	char buf[crypto_pwhash_STRBYTES];
	int r = -1;
	if (pw_sodium_ready() < 0 || pw_argon2_params(body) < 0 || pw_argon2_copy(body, buf) < 0)
		return -1;
	/* needs_rehash decodes the whole string (salt and hash lengths, base64) without hashing:
	 * -1 means libsodium cannot use it */
	if (crypto_pwhash_str_needs_rehash(buf, crypto_pwhash_OPSLIMIT_INTERACTIVE,
					   crypto_pwhash_MEMLIMIT_INTERACTIVE) >= 0)
		r = 0;
	sodium_memzero(buf, sizeof(buf));
	return r;
}

/* Verify password against an Argon2 string. 1 match, 0 no match, -1 unusable. */
static int pw_argon2_verify(const char *body, const char *password)
{
	char buf[crypto_pwhash_STRBYTES];
	int r;
	if (pw_argon2_check(body) < 0 || pw_argon2_copy(body, buf) < 0)
		return -1;
	r = crypto_pwhash_str_verify(buf, password, strlen(password)) == 0 ? 1 : 0;
	sodium_memzero(buf, sizeof(buf));
	return r;
}

/* Run crypt_rn(password, setting). With compare, compare the result with setting (the stored hash)
 * in constant time: 1 match, 0 no match. Without, only check that setting is a complete hash that
 * libxcrypt reproduces in the same shape (same length): 1 yes. -1 unusable or out of memory. */
static int pw_crypt_run(const char *setting, const char *password, int compare)
{
	struct crypt_data *cd;
	const char *out;
	size_t n = strlen(setting);
	int r = -1;
	switch (crypt_checksalt(setting)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_TOO_CHEAP:
		break;
	default:
		return -1;
	}
	/* about 32 KiB: too big for a worker thread's stack, so on the heap, zeroed as the
	 * libxcrypt manual asks before first use */
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return -1;
	out = crypt_rn(password, setting, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] != '*' && strlen(out) == n) {
		if (!compare)
			r = 1;
		else
			r = sodium_memcmp(out, setting, n) == 0 ? 1 : 0;
	}
	sodium_memzero(cd, sizeof(*cd));
	free(cd);
	return r;
}

/* Hash a new password with yescrypt at libxcrypt's default cost. */
char *password_hash(const char *password)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *out;
	char *copy = NULL;
	if (password == NULL || strlen(password) > PASSWORD_MAX)
		return NULL;
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, salt, (int)sizeof(salt)) == NULL)
		return NULL;
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		return NULL;
	out = crypt_rn(password, salt, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] != '*') {
		size_t n = strlen(out);
		copy = malloc(n + 1);
		if (copy != NULL)
			memcpy(copy, out, n + 1);
	}
	sodium_memzero(cd, sizeof(*cd));
	sodium_memzero(salt, sizeof(salt));
	free(cd);
	return copy;
}

/* Verify password against a stored hash in any accepted form (see password.h). */
int password_verify(const char *hash, const char *password)
{
	enum pw_kind kind;
	const char *body;
	if (hash == NULL || password == NULL || pw_classify(hash, &kind, &body) < 0)
		return -1;
	if (kind == PW_ARGON2)
		return pw_argon2_verify(body, password);
	/* libxcrypt refuses longer input outright; that is a mismatch, not a bad hash */
	if (strlen(password) > PASSWORD_MAX)
		return pw_crypt_run(body, "", 0) == 1 ? 0 : -1;
	return pw_crypt_run(body, password, 1);
}

/* Check an imported hash: a supported scheme, and well formed (libxcrypt reproduces a hash of the
 * same shape from it, or libsodium decodes it). Costs one hash computation for crypt forms. */
int password_hash_supported(const char *hash)
{
	enum pw_kind kind;
	const char *body;
	if (hash == NULL || pw_classify(hash, &kind, &body) < 0)
		return -1;
	if (kind == PW_ARGON2)
		return pw_argon2_check(body);
	return pw_crypt_run(body, "", 0) == 1 ? 0 : -1;
}
