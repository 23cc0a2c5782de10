/* tls-crypto.h - the signing primitives DKIM needs, kept in lib-tls so that this directory stays
 * the only code calling OpenSSL: SHA-256, private keys (RSA, Ed25519) created, stored as PEM,
 * loaded, and used to sign a SHA-256 digest.
 *
 * Keys and hash contexts are owned by their caller; everything here is safe on any thread as
 * long as one object is not used by two threads at once.
 */
#ifndef POSTINO_TLS_CRYPTO_H
#define POSTINO_TLS_CRYPTO_H

#include <stddef.h>

#define TLS_SHA256_LEN 32
#define TLS_SIG_MAX 512            /* RSA-4096 signature; Ed25519 needs 64 */
#define TLS_DKIM_RSA_BITS 2048     /* RFC 8301 3.2: at least 1024, 2048 recommended */

enum tls_key_alg { TLS_KEY_RSA, TLS_KEY_ED25519 };

struct tls_sha256;
struct tls_key;

/* A new SHA-256 context; NULL when out of memory. */
struct tls_sha256 *tls_sha256_new(void);
void tls_sha256_update(struct tls_sha256 *h, const void *p, size_t n);
/* Finish into out (32 octets); the context can be reused only after tls_sha256_reset. */
void tls_sha256_final(struct tls_sha256 *h, unsigned char out[TLS_SHA256_LEN]);
void tls_sha256_reset(struct tls_sha256 *h);
void tls_sha256_free(struct tls_sha256 **h);

/* Create a new private key of kind alg (RSA: TLS_DKIM_RSA_BITS) and store it as PKCS#8 PEM at
 * path, mode 0600, durably (temp file, fsync, rename, fsync of the directory); an existing file
 * is never replaced. 0 ok, -1 error (*err_r: a static text). */
int tls_key_generate(enum tls_key_alg alg, const char *path, const char **err_r);
/* Load a PEM private key (RSA or Ed25519). 0 ok, -1 error (*err_r: a static text). */
int tls_key_load(const char *path, struct tls_key **key_r, const char **err_r);
void tls_key_free(struct tls_key **key);
enum tls_key_alg tls_key_alg(const struct tls_key *key);
/* Key size in bits (RSA modulus; 256 for Ed25519). */
unsigned tls_key_bits(const struct tls_key *key);
/* The public key as DKIM publishes it in p= (RFC 6376 3.6.1, RFC 8463 4): base64 of the
 * SubjectPublicKeyInfo DER for RSA, of the 32 raw octets for Ed25519. -1 if out is too small. */
int tls_key_public_b64(const struct tls_key *key, char *out, size_t outlen);
/* Sign a SHA-256 digest: RSASSA-PKCS1-v1_5 with SHA-256 for RSA (RFC 6376 3.3.1); PureEdDSA over
 * the 32 digest octets for Ed25519 (RFC 8463 3). 0 ok (*siglen_r set), -1 error. */
int tls_key_sign_sha256(const struct tls_key *key, const unsigned char digest[TLS_SHA256_LEN],
			unsigned char sig[TLS_SIG_MAX], size_t *siglen_r);

/* HMAC-SHA256 (RFC 2104) of data[0..len) with key[0..keylen) (keylen at most INT_MAX) into
 * out. 0, or -1 (OpenSSL failed). */
int tls_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
		    unsigned char out[TLS_SHA256_LEN]);
/* n octets from OpenSSL's CSPRNG. 0, or -1 (it could not be seeded). */
int tls_random(void *out, size_t n);

/* Verify a DKIM signature over a SHA-256 digest with a public key as DKIM publishes it (p=):
 * ed25519 0 a DER SubjectPublicKeyInfo (or a bare PKCS#1 RSAPublicKey) for RSA, checked with
 * RSASSA-PKCS1-v1_5; ed25519 1 the 32 raw octets, PureEdDSA over the digest (RFC 8463 3). RSA
 * keys under min_bits or over max_bits are refused. 1 valid, 0 the signature does not verify,
 * -1 the key is unusable (*err_r: a static text). *bits_r gets the key size when it parses. */
int tls_pubkey_verify_sha256(const unsigned char *key, size_t keylen, int ed25519,
			     unsigned min_bits, unsigned max_bits,
			     const unsigned char digest[TLS_SHA256_LEN], const unsigned char *sig,
			     size_t siglen, unsigned *bits_r, const char **err_r);

/* How many public keys tls_pubkey_verify_sha256 has parsed in this process: each thread keeps
 * the last 16 it parsed (by their exact octets), so a key seen again is not parsed again. */
unsigned long tls_pubkey_parses(void);

#endif
