/* dkim-keys.h - the DKIM keys of the hosted domains, kept under the data directory:
 *
 *   <data>/dkim/<domain>/<selector>.key   private key, PEM (PKCS#8), mode 0600, owned by the
 *                                         run_user (the CLI writes as run_user; workers read)
 *   <data>/dkim/<domain>/signing          the selectors mail is signed with now, one a line
 *                                         (one RSA, one Ed25519); written atomically
 *
 * Every key file present is published ("postino dns"); a key is retired by removing its file.
 * Selectors are YYYYMM + "r" (RSA) or "e" (Ed25519), plus a number when the month has one.
 */
#ifndef POSTINO_DKIM_KEYS_H
#define POSTINO_DKIM_KEYS_H

#include <stddef.h>
#include <time.h>

#include "dkim.h"
#include "tls-crypto.h"

#define DKIM_KEYS_MAX 32          /* keys kept per domain (new, signing and not yet retired) */
#define DKIM_PUB_MAX 1024         /* base64 of an RSA-4096 SubjectPublicKeyInfo is ~736 */

struct dkim_keyinfo {
	char selector[DKIM_SELECTOR_MAX + 1];
	int readable;                  /* 0: the key file could not be loaded (err says why) */
	enum tls_key_alg alg;
	unsigned bits;
	int signing;                   /* listed in the signing file */
	time_t created;                /* the key file's mtime */
	long created_ns;               /* (ordering keys made within one second) */
	char pub[DKIM_PUB_MAX];        /* p= value */
	const char *err;
};

/* Is domain usable as a directory name (lower-case letters, digits, '-', '.' between labels)? */
int dkim_keys_domain_ok(const char *domain);
/* Is selector a valid selector of ours (letters, digits, '-'; one label)? */
int dkim_keys_selector_ok(const char *selector);
/* Order of creation: <0, 0, >0 as a was made before, with, after b. */
int dkim_keyinfo_cmp_time(const struct dkim_keyinfo *a, const struct dkim_keyinfo *b);
/* Every key of domain, oldest first (by creation time, then selector). Returns the count (0:
 * no keys or no directory), -1 on error (*err_r). */
int dkim_keys_list(const char *data_dir, const char *domain, struct dkim_keyinfo *out, size_t max,
		   const char **err_r);
/* Create a new key pair (RSA-2048 and Ed25519) with fresh selectors, not signing yet. Creates
 * the directories (0700) as needed. 0 ok, -1 error (*err_r). */
int dkim_keys_new_pair(const char *data_dir, const char *domain, time_t now,
		       char rsa_sel_r[DKIM_SELECTOR_MAX + 1], char ed_sel_r[DKIM_SELECTOR_MAX + 1],
		       const char **err_r);
/* Make sels[0..n) the signing selectors (n may be 0: stop signing). Durable (temp file,
 * fsync, rename, fsync dir). 0 ok, -1 error. */
int dkim_keys_set_signing(const char *data_dir, const char *domain,
			  char sels[][DKIM_SELECTOR_MAX + 1], size_t n, const char **err_r);
/* The signing selectors of domain into sels (at most 2). Returns the count (0: none, or no
 * directory), -1 if the file cannot be read. */
int dkim_keys_signing(const char *data_dir, const char *domain,
		      char sels[2][DKIM_SELECTOR_MAX + 1], const char **err_r);
/* Path of a selector's key file. -1 if it does not fit. */
int dkim_keys_path(const char *data_dir, const char *domain, const char *selector, char *out,
		   size_t outlen);
/* Remove a selector's key file (fsync dir). 1 removed, 0 no such key, -1 error. */
int dkim_keys_remove(const char *data_dir, const char *domain, const char *selector,
		     const char **err_r);
/* A domain gets its first pair, signing at once (postino domain add, quickstart); a domain that
 * has signing keys already keeps them. 1 created, 0 kept, -1 error (*err_r). */
int dkim_keys_init_domain(const char *data_dir, const char *domain, time_t now,
			  const char **err_r);

#endif
