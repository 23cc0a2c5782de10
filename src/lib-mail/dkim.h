/* dkim.h - DKIM signing (RFC 6376, RFC 8301, RFC 8463): relaxed/relaxed canonicalisation,
 * SHA-256 body hash, rsa-sha256 and ed25519-sha256 signatures.
 *
 * A signer is fed the message as it will go out (header section, empty line, body) in pieces
 * of any size. Line ends are taken the way the outbound DATA writer sends them (a bare LF or a
 * bare CR is a line end, as is CRLF), so what is signed is what the receiver gets. Nothing is
 * kept but the header section (at most DKIM_HEADER_MAX octets) and a running body hash.
 */
#ifndef POSTINO_DKIM_H
#define POSTINO_DKIM_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

struct tls_key;

#define DKIM_HEADER_MAX (256 * 1024)   /* header section kept for signing; larger: unsigned */
#define DKIM_SELECTOR_MAX 63           /* a selector is one DNS label here (RFC 1035 2.3.4) */
#define DKIM_DOMAIN_MAX 253            /* RFC 1035 2.3.4 */
#define DKIM_FIELD_MAX 4096            /* one DKIM-Signature field we write (RSA-4096: ~1.2 KB) */

struct dkim_signer;

/* Relaxed body canonicalisation (RFC 6376 3.4.4), incremental: whitespace runs become one SP,
 * whitespace at line ends and empty lines at the end go, a non-empty body ends in CRLF. The
 * output goes to out() in pieces. */
struct dkim_body_canon {
	void (*out)(void *ctx, const char *p, size_t n);
	void *ctx;
	int prev_cr;            /* the last octet was CR (a following LF belongs to it) */
	int ws;                 /* whitespace seen since the last other octet of this line */
	int any;                /* some content was written */
	size_t empty;           /* line ends held back (they may be trailing empty lines) */
	size_t olen;
	char obuf[4096];
};

void dkim_body_canon_init(struct dkim_body_canon *c,
			  void (*out)(void *ctx, const char *p, size_t n), void *ctx);
void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n);
/* End of body: the final CRLF if any content was written, and flush. */
void dkim_body_canon_end(struct dkim_body_canon *c);

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one header field (name, colon, value,
 * folded lines, with or without the final CRLF): appends "name:value\r\n" to out. -1 if out is
 * full. */
int dkim_canon_header(const char *field, size_t n, struct buf *out);

/* A new signer; NULL when out of memory. */
struct dkim_signer *dkim_signer_new(void);
void dkim_signer_free(struct dkim_signer **s);
/* Feed message octets (without our own Return-Path/Received trace). */
void dkim_signer_feed(struct dkim_signer *s, const char *p, size_t n);
/* After the last octet: the domain of the From: address (lower-case) if the message can be
 * signed for one domain. 1 found, 0 not signable (*why_r says why: no From:, several From:
 * fields, addresses in different domains, a header section over DKIM_HEADER_MAX). */
int dkim_signer_from_domain(struct dkim_signer *s, char *out, size_t outlen, const char **why_r);
/* Append one DKIM-Signature field (folded, ending in CRLF) for domain d= and selector s=,
 * signed with key (a= follows its type), with t=now. Signs From (oversigned: a From added
 * later breaks the signature), Reply-To, To, Cc, Subject, Date, Message-ID, In-Reply-To,
 * References and the MIME fields. Can be called once per key. 0 ok, -1 (*err_r). */
int dkim_signer_sign(struct dkim_signer *s, const char *domain, const char *selector,
		     const struct tls_key *key, time_t now, struct buf *out, const char **err_r);

#define DKIM_ARC_INSTANCES_MAX 50      /* RFC 8617 4.2.1 */

/* Append an ARC set (RFC 8617 5.1) for this hop, fields in the order they go on top of the
 * message: ARC-Seal, ARC-Message-Signature (signed like the DKIM signature, i=instance), and
 * ARC-Authentication-Results "i=instance; " + results (an Authentication-Results value without
 * its field name and final CRLF, no bare CR/LF but folding). cv is "none" (instance 1), "pass"
 * or "fail"; the earlier sets 1..instance-1 are taken from the message. 0 ok, -1 (*err_r). */
int dkim_signer_arc_seal(struct dkim_signer *s, unsigned instance, const char *cv,
			 const char *domain, const char *selector, const struct tls_key *key,
			 time_t now, const char *results, struct buf *out, const char **err_r);

#endif
