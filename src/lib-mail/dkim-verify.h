/* dkim-verify.h - checking the DKIM-Signature fields of arriving mail (RFC 6376, RFC 8301,
 * RFC 8463): rsa-sha256 and ed25519-sha256, simple and relaxed canonicalisation, l=.
 *
 * A verifier is fed the message (header section, empty line, body) in pieces of any size. At
 * the end of the header section the first DKIM_VERIFY_SIGS_MAX signatures are parsed and each
 * gets its own body hash; nothing else of the body is kept. dkim_verifier_finish() looks the
 * keys up through the caller's DNS callbacks and checks the header hashes.
 *
 * Limits, so hostile mail costs bounded work: DKIM_VERIFY_SIGS_MAX signatures checked (more are
 * reported as not checked), RSA keys DKIM_KEY_BITS_MIN..DKIM_KEY_BITS_MAX bits, a header section
 * of at most DKIM_HEADER_MAX octets, h= of at most DKIM_H_MAX names.
 */
#ifndef POSTINO_DKIM_VERIFY_H
#define POSTINO_DKIM_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "authdns.h"
#include "dkim.h"
#include "tls-crypto.h"

#define DKIM_VERIFY_SIGS_MAX 5     /* signatures checked per message; a sixth costs nothing */
#define DKIM_KEY_BITS_MIN 1024     /* RFC 8301 3.2: shorter RSA keys MUST NOT be accepted */
#define DKIM_KEY_BITS_MAX 4096     /* longer keys: refused (CPU cost of a hostile key) */
#define DKIM_H_MAX 64              /* names in h= (oversigning included) */
#define DKIM_H_LEN 1024            /* octets of h= kept */
#define DKIM_AUID_MAX 320          /* i= (local part 64 + '@' + domain) */
#define ARC_INSTANCES_MAX 50       /* RFC 8617 4.2.1 */
#define ARC_VERIFY_MAX 10          /* ARC sets verified; a longer chain is reported as fail */

enum arc_result { ARC_R_NONE, ARC_R_PASS, ARC_R_FAIL };

enum dkim_result {
	DKIM_R_NONE,        /* no signature */
	DKIM_R_PASS,
	DKIM_R_FAIL,        /* the hashes or the signature do not verify */
	DKIM_R_POLICY,      /* valid, but l= leaves part of the body unsigned */
	DKIM_R_NEUTRAL,     /* not checked (over DKIM_VERIFY_SIGS_MAX) */
	DKIM_R_TEMPERROR,   /* the key could not be looked up now */
	DKIM_R_PERMERROR,   /* the signature or its key is malformed, missing or unusable */
};

/* A parsed DKIM-Signature (RFC 6376 3.5). */
struct dkim_sig {
	int ed25519;
	int hdr_relaxed, body_relaxed;
	char d[DKIM_DOMAIN_MAX + 1];
	char s[DKIM_SELECTOR_MAX + 1];
	char i[DKIM_AUID_MAX + 1];
	char h[DKIM_H_LEN + 1];          /* the names, ':'-separated, FWS removed */
	unsigned char bh[TLS_SHA256_LEN];
	unsigned char b[TLS_SIG_MAX];
	size_t blen;
	char b_prefix[9];                /* first 8 characters of b=, for header.b (RFC 6008) */
	int64_t l;                       /* -1: no l= */
	int64_t t, x;                    /* -1: absent */
	int inst;                        /* ARC-Message-Signature: its instance i= */
};

/* A parsed key record (RFC 6376 3.6.1). */
struct dkim_pubkey {
	int ed25519;
	int testing;                     /* t=y */
	int strict;                      /* t=s: i= must be in d= itself */
	unsigned char p[DKIM_KEY_BITS_MAX / 8 + 64];   /* SubjectPublicKeyInfo DER or raw */
	size_t plen;
};

struct dkim_sig_result {
	enum dkim_result result;
	char d[DKIM_DOMAIN_MAX + 1];     /* "" when the signature did not parse that far */
	char s[DKIM_SELECTOR_MAX + 1];
	char b_prefix[9];
	int ed25519;
	const char *why;                 /* static text for Authentication-Results comments */
};

struct dkim_verifier;

/* Parse the value of one DKIM-Signature field (after the colon, folds kept). 0 ok, -1
 * malformed (*err_r says why; d= and s= are filled when they were read). */
int dkim_sig_parse(const char *value, size_t n, struct dkim_sig *out, const char **err_r);
/* Parse one key TXT record. 0 ok, -1 unusable (*err_r). */
int dkim_key_parse(const char *txt, size_t n, struct dkim_pubkey *out, const char **err_r);

/* A new verifier; NULL when out of memory. */
struct dkim_verifier *dkim_verifier_new(void);
void dkim_verifier_free(struct dkim_verifier **v);
/* Feed message octets (the message as received, without our trace fields). */
void dkim_verifier_feed(struct dkim_verifier *v, const char *p, size_t n);
/* After the last octet: look up the keys and verify. Fills out[0..max) with one result per
 * DKIM-Signature field in header order (at most max) and returns how many; 0 when the message
 * has none. */
size_t dkim_verifier_finish(struct dkim_verifier *v, const struct authdns *dns, time_t now,
			    struct dkim_sig_result *out, size_t max);
/* After dkim_verifier_finish: the ARC chain's verdict (RFC 8617 5.2), the number of ARC sets
 * (*instances_r) and why it failed (*why_r, static text). */
enum arc_result dkim_verifier_arc(const struct dkim_verifier *v, unsigned *instances_r,
				  const char **why_r);
/* The header section fed so far (for callers that need it after the end; NULL if too large). */
const char *dkim_verifier_header(const struct dkim_verifier *v, size_t *len_r);

#endif
