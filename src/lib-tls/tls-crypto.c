/* tls-crypto.c - SHA-256 and signing keys for DKIM, on OpenSSL 3's EVP interface. */
#include "tls-crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "base64.h"
#include "fsutil.h"

#define KEY_FILE_MAX 16384   /* a PEM RSA-4096 key is ~3.3 KB; refuse anything absurd */
#define PUBKEY_CACHE 16      /* parsed DKIM public keys kept per thread (see pubkey_get) */

struct tls_sha256 {
	EVP_MD_CTX *md;
};

struct tls_key {
	EVP_PKEY *pkey;
	enum tls_key_alg alg;
};

/* A new SHA-256 context. */
struct tls_sha256 *tls_sha256_new(void)
{
	struct tls_sha256 *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return NULL;
	h->md = EVP_MD_CTX_new();
	if (h->md == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(h->md);
		free(h);
		return NULL;
	}
	return h;
}

/* Hash n more octets. */
void tls_sha256_update(struct tls_sha256 *h, const void *p, size_t n)
{
	if (n > 0)
		EVP_DigestUpdate(h->md, p, n);
}

/* Finish the digest. */
void tls_sha256_final(struct tls_sha256 *h, unsigned char out[TLS_SHA256_LEN])
{
	unsigned int len = TLS_SHA256_LEN;
	EVP_DigestFinal_ex(h->md, out, &len);
}

/* Start a new digest in the same context. */
void tls_sha256_reset(struct tls_sha256 *h)
{
	EVP_DigestInit_ex(h->md, EVP_sha256(), NULL);
}

/* Free a context (NULL allowed). */
void tls_sha256_free(struct tls_sha256 **h)
{
	if (*h == NULL)
		return;
	EVP_MD_CTX_free((*h)->md);
	free(*h);
	*h = NULL;
}

/* fsync the directory holding path. */
static int fsync_parent(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 1;
	if (n == 0)
		n = 1;
	if (n >= sizeof(dir))
		return -1;
	memcpy(dir, slash ? path : ".", n);
	dir[n] = '\0';
	return fs_fsync_dir(dir);
}

/* Create a key and store it as PEM, mode 0600, never replacing a file. */
int tls_key_generate(enum tls_key_alg alg, const char *path, const char **err_r)
{
	EVP_PKEY *pkey = alg == TLS_KEY_RSA ? EVP_RSA_gen(TLS_DKIM_RSA_BITS)
					    : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (pkey == NULL) {
		*err_r = "key generation failed";
		return -1;
	}
	BIO *mem = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long pemlen = 0;
	if (mem == NULL || PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
	    (pemlen = BIO_get_mem_data(mem, &pem)) <= 0) {
		BIO_free(mem);
		EVP_PKEY_free(pkey);
		*err_r = "cannot encode the key as PEM";
		return -1;
	}
	char tmp[4200];
	int rc = -1;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		*err_r = "key path too long";
		goto out;
	}
	unlink(tmp);   /* a leftover of an interrupted run */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		*err_r = "cannot create the key file";
		goto out;
	}
	int bad = fs_write_all(fd, pem, (size_t)pemlen) < 0 || fchmod(fd, 0600) != 0 ||
		  fsync(fd) != 0;
	bad |= close(fd) != 0;
	if (bad) {
		*err_r = "cannot write the key file";
		unlink(tmp);
		goto out;
	}
	if (link(tmp, path) < 0) {   /* link: fails rather than replace an existing key */
		*err_r = errno == EEXIST ? "a key file of that name exists" : "cannot store the key";
		unlink(tmp);
		goto out;
	}
	unlink(tmp);
	if (fsync_parent(path) < 0) {
		*err_r = "cannot sync the key directory";
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(pem, (size_t)pemlen);
	BIO_free(mem);
	EVP_PKEY_free(pkey);
	return rc;
}

/* Load a PEM private key. */
int tls_key_load(const char *path, struct tls_key **key_r, const char **err_r)
{
	*key_r = NULL;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		*err_r = errno == ENOENT ? "key file missing" : errno == EACCES ?
			 "key file not readable (owner and mode 0600 for the run_user?)" :
			 "cannot open the key file";
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) < 0 || st.st_size <= 0 || st.st_size > KEY_FILE_MAX) {
		fclose(f);
		*err_r = "key file empty or too large";
		return -1;
	}
	EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pkey == NULL) {
		*err_r = "key file is not a PEM private key";
		return -1;
	}
	enum tls_key_alg alg;
	if (EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= 1024)
		alg = TLS_KEY_RSA;
	else if (EVP_PKEY_is_a(pkey, "ED25519"))
		alg = TLS_KEY_ED25519;
	else {
		EVP_PKEY_free(pkey);
		*err_r = "key is neither RSA (1024 bits or more) nor Ed25519";
		return -1;
	}
	struct tls_key *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		EVP_PKEY_free(pkey);
		*err_r = "out of memory";
		return -1;
	}
	k->pkey = pkey;
	k->alg = alg;
	*key_r = k;
	return 0;
}

/* Free a key (NULL allowed). */
void tls_key_free(struct tls_key **key)
{
	if (*key == NULL)
		return;
	EVP_PKEY_free((*key)->pkey);
	free(*key);
	*key = NULL;
}

/* The key's algorithm. */
enum tls_key_alg tls_key_alg(const struct tls_key *key)
{
	return key->alg;
}

/* The key's size in bits. */
unsigned tls_key_bits(const struct tls_key *key)
{
	return (unsigned)EVP_PKEY_get_bits(key->pkey);
}

/* The DKIM p= value of the key. */
int tls_key_public_b64(const struct tls_key *key, char *out, size_t outlen)
{
	unsigned char raw[2048], *der = NULL;
	size_t n = 0;
	if (key->alg == TLS_KEY_ED25519) {
		n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(key->pkey, raw, &n) != 1)
			return -1;
		der = raw;
	} else {
		int l = i2d_PUBKEY(key->pkey, &der);
		if (l <= 0)
			return -1;
		n = (size_t)l;
	}
	int rc = -1;
	if (BASE64_ENCODED_LEN(n) + 1 <= outlen) {
		base64_encode(der, n, out, outlen);
		rc = 0;
	}
	if (der != raw)
		OPENSSL_free(der);
	return rc;
}

/* Sign a SHA-256 digest with the key. */
int tls_key_sign_sha256(const struct tls_key *key, const unsigned char digest[TLS_SHA256_LEN],
			unsigned char sig[TLS_SIG_MAX], size_t *siglen_r)
{
	size_t len = TLS_SIG_MAX;
	int ok = 0;
	if (key->alg == TLS_KEY_RSA) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key->pkey, NULL);
		ok = c != NULL && EVP_PKEY_sign_init(c) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
		     EVP_PKEY_sign(c, NULL, &len, digest, TLS_SHA256_LEN) == 1 &&
		     len <= TLS_SIG_MAX &&
		     EVP_PKEY_sign(c, sig, &len, digest, TLS_SHA256_LEN) == 1;
		EVP_PKEY_CTX_free(c);
	} else {
		/* RFC 8463 3: the signing input of ed25519-sha256 is the SHA-256 hash of the
		 * canonicalised header data, signed with PureEdDSA (no prehash) */
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		ok = m != NULL && EVP_DigestSignInit_ex(m, NULL, NULL, NULL, NULL, key->pkey,
							NULL) == 1 &&
		     EVP_DigestSign(m, sig, &len, digest, TLS_SHA256_LEN) == 1;
		EVP_MD_CTX_free(m);
	}
	if (!ok)
		return -1;
	*siglen_r = len;
	return 0;
}

/* Parsed DKIM public keys, per thread: OpenSSL 3's d2i_PUBKEY costs about 175 us (its
 * decoder framework), seven times the RSA-2048 verification itself, and the same few keys
 * sign most mail. An entry is the published octets and their EVP_PKEY: a memo of the parse,
 * so freshness stays with the DNS answer (the caller looks the key up for every message).
 * Per thread, so no lock; freed by the thread-exit destructor. */
struct pubkey_entry {
	unsigned char *key;
	size_t len;
	int ed25519;
	EVP_PKEY *pk;
};

struct pubkey_cache {
	struct pubkey_entry e[PUBKEY_CACHE];
	unsigned next;                  /* the entry replaced next (round robin) */
};

static pthread_key_t pubkey_tkey;
static pthread_once_t pubkey_once = PTHREAD_ONCE_INIT;
static int pubkey_tkey_ok;
static _Atomic unsigned long pubkey_parses;

/* Thread exit: free the thread's parsed keys. */
static void pubkey_cache_free(void *arg)
{
	struct pubkey_cache *c = arg;
	for (unsigned i = 0; i < PUBKEY_CACHE; i++) {
		EVP_PKEY_free(c->e[i].pk);
		free(c->e[i].key);
	}
	free(c);
}

static void pubkey_tkey_init(void)
{
	pubkey_tkey_ok = pthread_key_create(&pubkey_tkey, pubkey_cache_free) == 0;
}

/* Parse published key octets (see tls_pubkey_verify_sha256). NULL: they do not parse. */
static EVP_PKEY *pubkey_parse(const unsigned char *key, size_t keylen, int ed25519)
{
	pubkey_parses++;
	if (ed25519)
		return keylen == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, keylen) :
				      NULL;
	const unsigned char *p = key;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)keylen);
	if (pk == NULL) {   /* some publish the bare PKCS#1 RSAPublicKey */
		p = key;
		pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)keylen);
	}
	return pk;
}

/* The parsed key for these octets: the thread's cached one, or parsed now and kept. *owned_r
 * is 1 when the caller must free it (no cache: out of memory). NULL: they do not parse (not
 * kept, so such octets are parsed each time, as before). */
static EVP_PKEY *pubkey_get(const unsigned char *key, size_t keylen, int ed25519, int *owned_r)
{
	*owned_r = 1;
	pthread_once(&pubkey_once, pubkey_tkey_init);
	struct pubkey_cache *c = pubkey_tkey_ok ? pthread_getspecific(pubkey_tkey) : NULL;
	if (c == NULL && pubkey_tkey_ok && (c = calloc(1, sizeof(*c))) != NULL &&
	    pthread_setspecific(pubkey_tkey, c) != 0) {
		free(c);
		c = NULL;
	}
	if (c != NULL) {
		for (unsigned i = 0; i < PUBKEY_CACHE; i++) {
			struct pubkey_entry *e = &c->e[i];
			if (e->pk != NULL && e->len == keylen && e->ed25519 == ed25519 &&
			    memcmp(e->key, key, keylen) == 0) {
				*owned_r = 0;
				return e->pk;
			}
		}
	}
	EVP_PKEY *pk = pubkey_parse(key, keylen, ed25519);
	unsigned char *copy = pk != NULL && c != NULL ? malloc(keylen ? keylen : 1) : NULL;
	if (copy == NULL)
		return pk;
	struct pubkey_entry *e = &c->e[c->next];
	c->next = (c->next + 1) % PUBKEY_CACHE;
	EVP_PKEY_free(e->pk);
	free(e->key);
	memcpy(copy, key, keylen);
	*e = (struct pubkey_entry){ copy, keylen, ed25519, pk };
	*owned_r = 0;
	return pk;
}

/* How many public keys were parsed (not found in a cache), for the unit test. */
unsigned long tls_pubkey_parses(void)
{
	return pubkey_parses;
}

/* Verify a DKIM signature with a published public key. */
int tls_pubkey_verify_sha256(const unsigned char *key, size_t keylen, int ed25519,
			     unsigned min_bits, unsigned max_bits,
			     const unsigned char digest[TLS_SHA256_LEN], const unsigned char *sig,
			     size_t siglen, unsigned *bits_r, const char **err_r)
{
	*bits_r = 0;
	if (ed25519 && keylen != 32) {
		*err_r = "an Ed25519 key is 32 octets";
		return -1;
	}
	int owned;
	EVP_PKEY *pk = pubkey_get(key, keylen, ed25519, &owned);
	if (pk == NULL) {
		*err_r = "the public key does not parse";
		return -1;
	}
	int rc = -1;
	*bits_r = (unsigned)EVP_PKEY_get_bits(pk);
	if (!ed25519 && EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
		*err_r = "the key is not an RSA key";
		goto out;
	}
	if (!ed25519 && (*bits_r < min_bits || *bits_r > max_bits)) {
		*err_r = *bits_r < min_bits ? "the RSA key is too short" : "the RSA key is too long";
		goto out;
	}
	if (!ed25519) {
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pk, NULL);
		int ok = c != NULL && EVP_PKEY_verify_init(c) == 1 &&
			 EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
			 EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1;
		if (!ok) {
			*err_r = "the key cannot verify";
			EVP_PKEY_CTX_free(c);
			goto out;
		}
		rc = EVP_PKEY_verify(c, sig, siglen, digest, TLS_SHA256_LEN) == 1;
		EVP_PKEY_CTX_free(c);
	} else {
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		if (m == NULL || EVP_DigestVerifyInit_ex(m, NULL, NULL, NULL, NULL, pk, NULL) != 1) {
			*err_r = "the key cannot verify";
			EVP_MD_CTX_free(m);
			goto out;
		}
		rc = EVP_DigestVerify(m, sig, siglen, digest, TLS_SHA256_LEN) == 1;
		EVP_MD_CTX_free(m);
	}
	ERR_clear_error();
out:
	if (owned)
		EVP_PKEY_free(pk);
	return rc;
}

/* See tls-crypto.h. */
int tls_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[TLS_SHA256_LEN])
{
	unsigned int n = 0;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &n) == NULL ||
	    n != TLS_SHA256_LEN)
		return -1;
	return 0;
}

/* See tls-crypto.h. */
int tls_random(void *out, size_t n)
{
	return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}
