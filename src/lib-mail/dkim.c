/* dkim.c - DKIM signatures (RFC 6376 relaxed/relaxed, SHA-256; RSA per RFC 8301, Ed25519 per
 * RFC 8463). The crypto itself is in lib-tls (tls-crypto.c); this file canonicalises, selects
 * the signed header fields and assembles the DKIM-Signature field.
 */
#include "dkim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "addr.h"
#include "base64.h"
#include "header.h"
#include "idn.h"
#include "tls-crypto.h"

#define DKIM_B64_LINE 72        /* octets of b= per folded line, keeping lines under 78 */
#define DKIM_HFIELDS_MAX 1000   /* header fields looked at; a longer header is unsigned */

/* The fields we sign, in h= order (RFC 6376 5.4.1 lists these as the ones that matter). */
static const char *const signed_fields[] = {
	"from", "reply-to", "to", "cc", "subject", "date", "message-id", "in-reply-to",
	"references", "mime-version", "content-type", "content-transfer-encoding",
};
#define NSIGNED (sizeof(signed_fields) / sizeof(signed_fields[0]))

struct hfield {
	size_t off, len;        /* in s->hdr, the CRLF included */
	size_t name, namelen;   /* the name (blanks before the colon excluded) */
};

struct dkim_signer {
	struct buf hdr;         /* the header section, line ends made CRLF */
	size_t line_start;      /* where the current header line began in hdr */
	int prev_cr;
	int in_body;
	int too_big;
	struct dkim_body_canon body;
	struct tls_sha256 *bh;
	int ended;
	unsigned char bhash[TLS_SHA256_LEN];
	struct hfield *fields;
	size_t nfields;
};

/* ---- relaxed body ---- */

/* Pass the held output on. */
static void body_flush(struct dkim_body_canon *c)
{
	if (c->olen > 0)
		c->out(c->ctx, c->obuf, c->olen);
	c->olen = 0;
}

/* Queue output octets. */
static void body_put(struct dkim_body_canon *c, const char *p, size_t n)
{
	while (n > 0) {
		size_t room = sizeof(c->obuf) - c->olen;
		size_t k = n < room ? n : room;
		memcpy(c->obuf + c->olen, p, k);
		c->olen += k;
		p += k;
		n -= k;
		if (c->olen == sizeof(c->obuf))
			body_flush(c);
	}
}

/* Set up a relaxed body canonicaliser writing to out. */
void dkim_body_canon_init(struct dkim_body_canon *c,
			  void (*out)(void *ctx, const char *p, size_t n), void *ctx)
{
	memset(c, 0, sizeof(*c));
	c->out = out;
	c->ctx = ctx;
}

/* Canonicalise n more body octets. */
void dkim_body_canon_feed(struct dkim_body_canon *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch == '\r' || (ch == '\n' && !c->prev_cr)) {
			c->ws = 0;            /* whitespace at the end of a line goes */
			c->empty++;
			c->prev_cr = ch == '\r';
			continue;
		}
		if (ch == '\n') {             /* the LF of a CRLF */
			c->prev_cr = 0;
			continue;
		}
		c->prev_cr = 0;
		if (ch == ' ' || ch == '\t') {
			c->ws = 1;
			continue;
		}
		for (; c->empty > 0; c->empty--)
			body_put(c, "\r\n", 2);
		if (c->ws)
			body_put(c, " ", 1);
		c->ws = 0;
		c->any = 1;
		size_t j = i;   /* the rest of the run of plain octets in one go */
		while (j < n && p[j] != '\r' && p[j] != '\n' && p[j] != ' ' && p[j] != '\t')
			j++;
		body_put(c, p + i, j - i);
		i = j - 1;
	}
}

/* End of the body. */
void dkim_body_canon_end(struct dkim_body_canon *c)
{
	if (c->any)
		body_put(c, "\r\n", 2);
	body_flush(c);
}

/* ---- relaxed header ---- */

/* Canonicalise one header field (relaxed). */
int dkim_canon_header(const char *field, size_t n, struct buf *out)
{
	const char *colon = memchr(field, ':', n);
	if (colon == NULL)
		return -1;
	size_t nl = (size_t)(colon - field);
	while (nl > 0 && (field[nl - 1] == ' ' || field[nl - 1] == '\t'))
		nl--;
	if (buf_reserve(out, nl + (n - (size_t)(colon - field)) + 3) < 0)
		return -1;
	char *o = out->data + out->len;
	for (size_t i = 0; i < nl; i++) {
		char ch = field[i];
		*o++ = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
	}
	*o++ = ':';
	int ws = 0, started = 0;
	for (const char *p = colon + 1; p < field + n; p++) {
		char ch = *p;
		if (ch == '\r' || ch == '\n')   /* unfold */
			continue;
		if (ch == ' ' || ch == '\t') {
			ws = 1;
			continue;
		}
		if (ws && started)
			*o++ = ' ';
		ws = 0;
		started = 1;
		*o++ = ch;
	}
	*o++ = '\r';
	*o++ = '\n';
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* ---- the signer ---- */

/* Body canonicaliser output: into the body hash. */
static void body_to_hash(void *ctx, const char *p, size_t n)
{
	tls_sha256_update(ctx, p, n);
}

/* A new signer. */
struct dkim_signer *dkim_signer_new(void)
{
	struct dkim_signer *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->bh = tls_sha256_new();
	if (s->bh == NULL) {
		free(s);
		return NULL;
	}
	buf_init(&s->hdr, DKIM_HEADER_MAX + 2);
	dkim_body_canon_init(&s->body, body_to_hash, s->bh);
	return s;
}

/* Free a signer (NULL allowed). */
void dkim_signer_free(struct dkim_signer **s)
{
	if (*s == NULL)
		return;
	buf_free(&(*s)->hdr);
	tls_sha256_free(&(*s)->bh);
	free((*s)->fields);
	free(*s);
	*s = NULL;
}

/* End of one header line: the empty line starts the body. */
static void header_line_end(struct dkim_signer *s)
{
	if (s->hdr.len == s->line_start) {
		s->in_body = 1;
		return;
	}
	if (buf_append(&s->hdr, "\r\n", 2) < 0)
		s->too_big = 1;
	s->line_start = s->hdr.len;
}

/* Feed message octets. */
void dkim_signer_feed(struct dkim_signer *s, const char *p, size_t n)
{
	size_t i = 0;
	while (!s->in_body && i < n) {
		char ch = p[i++];
		if (ch == '\r' || (ch == '\n' && !s->prev_cr)) {
			s->prev_cr = ch == '\r';
			header_line_end(s);
			if (s->in_body)   /* a CR ending the header section may have its LF next */
				s->body.prev_cr = s->prev_cr;
			continue;
		}
		if (ch == '\n') {
			s->prev_cr = 0;
			continue;
		}
		s->prev_cr = 0;
		size_t j = i;   /* the rest of the line in one go */
		while (j < n && p[j] != '\r' && p[j] != '\n')
			j++;
		if (!s->too_big && buf_append(&s->hdr, p + i - 1, j - i + 1) < 0)
			s->too_big = 1;
		i = j;
	}
	if (s->in_body && i < n)
		dkim_body_canon_feed(&s->body, p + i, n - i);
}

/* After the last octet: split the header fields and finish the body hash (once). */
static int signer_end(struct dkim_signer *s)
{
	if (s->ended)
		return s->too_big ? -1 : 0;
	s->ended = 1;
	if (!s->in_body && s->hdr.len > s->line_start && buf_append(&s->hdr, "\r\n", 2) < 0)
		s->too_big = 1;   /* a message of header lines only */
	dkim_body_canon_end(&s->body);
	tls_sha256_final(s->bh, s->bhash);
	if (s->too_big)
		return -1;
	s->fields = calloc(DKIM_HFIELDS_MAX, sizeof(*s->fields));
	if (s->fields == NULL) {
		s->too_big = 1;
		return -1;
	}
	/* the fields as the shared reader sees them, so the From: the submission check approved
	 * is the From: that gives d= */
	const char *h = s->hdr.data ? s->hdr.data : "";
	struct hdr_field f;
	for (size_t pos = 0; hdr_next(h, s->hdr.len, &pos, &f) == 1;) {
		if (!f.has_colon)
			continue;
		if (s->nfields == DKIM_HFIELDS_MAX) {
			s->too_big = 1;
			return -1;
		}
		struct hfield *hf = &s->fields[s->nfields++];
		hf->off = (size_t)(f.raw - h);
		hf->len = f.raw_len;
		hf->name = (size_t)(f.name - h);
		hf->namelen = f.name_len;
	}
	return 0;
}

/* Is field f named name (case-insensitive)? */
static int field_is(const struct dkim_signer *s, const struct hfield *f, const char *name)
{
	size_t n = strlen(name);
	return f->namelen == n && strncasecmp(s->hdr.data + f->name, name, n) == 0;
}

struct from_domain {
	char domain[DKIM_DOMAIN_MAX + 1];
	int mixed;
	int n;
};

/* addr_parse_list callback: every From: address must be in one domain. */
static void from_cb(void *ctx, const char *address)
{
	struct from_domain *d = ctx;
	const char *at = strrchr(address, '@');
	char ascii[DKIM_DOMAIN_MAX + 1];   /* d= and the key directory use A-labels */
	const char *dom = at ? at + 1 : "";
	if (idn_to_ascii(dom, strlen(dom), ascii, sizeof(ascii)) < 0) {
		d->mixed = 1;
		return;
	}
	dom = ascii;
	if (d->n++ == 0) {
		if (strlen(dom) >= sizeof(d->domain))
			d->mixed = 1;
		else
			snprintf(d->domain, sizeof(d->domain), "%s", dom);
	} else if (strcmp(dom, d->domain) != 0) {
		d->mixed = 1;
	}
}

/* The From: domain of the message, if it can be signed. */
int dkim_signer_from_domain(struct dkim_signer *s, char *out, size_t outlen, const char **why_r)
{
	if (signer_end(s) < 0) {
		*why_r = "header section too large to sign";
		return 0;
	}
	const struct hfield *from = NULL;
	for (size_t i = 0; i < s->nfields; i++) {
		if (!field_is(s, &s->fields[i], "from"))
			continue;
		if (from != NULL) {
			*why_r = "several From: fields";
			return 0;
		}
		from = &s->fields[i];
	}
	if (from == NULL) {
		*why_r = "no From: field";
		return 0;
	}
	const char *v = memchr(s->hdr.data + from->off, ':', from->len) + 1;
	size_t vl = from->len - (size_t)(v - (s->hdr.data + from->off));
	struct from_domain d = { "", 0, 0 };
	if (addr_parse_list(v, vl, from_cb, &d) <= 0 || d.domain[0] == '\0') {
		*why_r = "the From: field holds no valid address";
		return 0;
	}
	if (d.mixed) {
		*why_r = "the From: addresses are in different domains";
		return 0;
	}
	if (strlen(d.domain) >= outlen) {
		*why_r = "From: domain too long";
		return 0;
	}
	snprintf(out, outlen, "%s", d.domain);
	return 1;
}

/* Append base64 of p[0..n) to out, folded after `first` octets and then every DKIM_B64_LINE. */
static int append_b64_folded(struct buf *out, const unsigned char *p, size_t n, size_t first)
{
	char b64[BASE64_ENCODED_LEN(TLS_SIG_MAX) + 1];
	size_t len = base64_encode(p, n, b64, sizeof(b64));
	if (len == 0)
		return -1;
	size_t off = 0, take = first;
	while (off < len) {
		if (take > len - off)
			take = len - off;
		if (off > 0 && buf_append(out, "\r\n\t", 3) < 0)
			return -1;
		if (buf_append(out, b64 + off, take) < 0)
			return -1;
		off += take;
		take = DKIM_B64_LINE;
	}
	return 0;
}

/* Sign for one key: a DKIM-Signature (instance 0) or an ARC-Message-Signature i=instance. */
static int signer_sign(struct dkim_signer *s, unsigned instance, const char *domain,
		       const char *selector, const struct tls_key *key, time_t now,
		       struct buf *out, const char **err_r)
{
	if (signer_end(s) < 0) {
		*err_r = "header section too large to sign";
		return -1;
	}
	int rsa = tls_key_alg(key) == TLS_KEY_RSA;
	struct buf f, hashed;
	buf_init(&f, DKIM_FIELD_MAX);
	buf_init(&hashed, DKIM_HEADER_MAX + 2 * DKIM_FIELD_MAX);
	char bh[BASE64_ENCODED_LEN(TLS_SHA256_LEN) + 1];
	base64_encode(s->bhash, TLS_SHA256_LEN, bh, sizeof(bh));
	if (instance > 0)
		buf_appendf(&f, "ARC-Message-Signature: i=%u; ", instance);
	else
		buf_appendf(&f, "DKIM-Signature: v=1; ");
	buf_appendf(&f, "a=%s; c=relaxed/relaxed; d=%s;\r\n\ts=%s; t=%lld;\r\n"
		    "\th=", rsa ? "rsa-sha256" : "ed25519-sha256", domain, selector, (long long)now);
	/* h=: each field as often as it occurs (RFC 6376 5.4.2), From once more (oversigned), and
	 * the header hash input: the instances taken from the bottom up */
	int first = 1, bad = 0;
	unsigned char *used = calloc(s->nfields + 1, 1);
	if (used == NULL) {
		*err_r = "out of memory";
		buf_free(&f);
		buf_free(&hashed);
		return -1;
	}
	for (size_t k = 0; k < NSIGNED; k++) {
		size_t count = 0;
		for (size_t i = 0; i < s->nfields; i++)
			count += field_is(s, &s->fields[i], signed_fields[k]);
		if (k == 0)
			count++;   /* oversign From */
		for (size_t c = 0; c < count; c++) {
			buf_appendf(&f, "%s%s", first ? "" : ":", signed_fields[k]);
			first = 0;
			for (size_t i = s->nfields; i-- > 0;) {
				const struct hfield *hf = &s->fields[i];
				if (used[i] || !field_is(s, hf, signed_fields[k]))
					continue;
				used[i] = 1;
				bad |= dkim_canon_header(s->hdr.data + hf->off, hf->len, &hashed);
				break;
			}
		}
	}
	free(used);
	buf_appendf(&f, ";\r\n\tbh=%s;\r\n\tb=", bh);
	/* the signature field itself, b= empty, without its final CRLF (RFC 6376 3.7) */
	bad |= dkim_canon_header(f.data, f.len, &hashed);
	unsigned char digest[TLS_SHA256_LEN], sig[TLS_SIG_MAX];
	size_t siglen = 0;
	if (bad || f.len + 2 >= DKIM_FIELD_MAX) {
		*err_r = "signature field too large";
		goto fail;
	}
	hashed.len -= 2;
	struct tls_sha256 *hh = tls_sha256_new();
	if (hh == NULL) {
		*err_r = "out of memory";
		goto fail;
	}
	tls_sha256_update(hh, hashed.data, hashed.len);
	tls_sha256_final(hh, digest);
	tls_sha256_free(&hh);
	if (tls_key_sign_sha256(key, digest, sig, &siglen) < 0) {
		*err_r = "the signing operation failed";
		goto fail;
	}
	if (append_b64_folded(&f, sig, siglen, DKIM_B64_LINE - 3) < 0 ||
	    buf_append(&f, "\r\n", 2) < 0 || buf_append(out, f.data, f.len) < 0) {
		*err_r = "signature field too large";
		goto fail;
	}
	buf_free(&f);
	buf_free(&hashed);
	return 0;
fail:
	buf_free(&f);
	buf_free(&hashed);
	return -1;
}

/* Sign for one key (DKIM-Signature). */
int dkim_signer_sign(struct dkim_signer *s, const char *domain, const char *selector,
		     const struct tls_key *key, time_t now, struct buf *out, const char **err_r)
{
	return signer_sign(s, 0, domain, selector, key, now, out, err_r);
}

/* The i= of an ARC field value ("i=N; ..."), or 0. */
static unsigned arc_field_instance(const char *v, size_t n)
{
	size_t i = 0;
	while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
		i++;
	if (i + 2 >= n || v[i] != 'i' || v[i + 1] != '=')
		return 0;
	unsigned x = 0;
	for (i += 2; i < n && v[i] >= '0' && v[i] <= '9' && x <= 50; i++)
		x = x * 10 + (unsigned)(v[i] - '0');
	return x;
}

/* Add an ARC set (RFC 8617 5.1). */
int dkim_signer_arc_seal(struct dkim_signer *s, unsigned instance, const char *cv,
			 const char *domain, const char *selector, const struct tls_key *key,
			 time_t now, const char *results, struct buf *out, const char **err_r)
{
	if (instance < 1 || instance > DKIM_ARC_INSTANCES_MAX) {
		*err_r = "ARC instance out of range";
		return -1;
	}
	if (signer_end(s) < 0) {
		*err_r = "header section too large to seal";
		return -1;
	}
	struct buf aar, ams, as, hashed;
	buf_init(&aar, DKIM_FIELD_MAX * 2);
	buf_init(&ams, DKIM_FIELD_MAX);
	buf_init(&as, DKIM_FIELD_MAX);
	buf_init(&hashed, DKIM_HEADER_MAX + 4 * DKIM_FIELD_MAX);
	int rc = -1;
	if (buf_appendf(&aar, "ARC-Authentication-Results: i=%u; %s\r\n", instance, results) < 0) {
		*err_r = "authentication results too long";
		goto out;
	}
	if (signer_sign(s, instance, domain, selector, key, now, &ams, err_r) < 0)
		goto out;
	/* the earlier sets from the message, in instance order: AAR, AMS, AS (5.1.1) */
	static const char *const kinds[] = { "arc-authentication-results", "arc-message-signature",
					     "arc-seal" };
	int bad = 0;
	for (unsigned i = 1; i < instance; i++) {
		for (size_t k = 0; k < 3; k++) {
			const struct hfield *hit = NULL;
			for (size_t f = 0; f < s->nfields && hit == NULL; f++) {
				const struct hfield *hf = &s->fields[f];
				if (!field_is(s, hf, kinds[k]))
					continue;
				const char *v = memchr(s->hdr.data + hf->off, ':', hf->len) + 1;
				size_t vl = hf->len - (size_t)(v - (s->hdr.data + hf->off));
				if (arc_field_instance(v, vl) == i)
					hit = hf;
			}
			if (hit == NULL) {
				*err_r = "the message's ARC sets are incomplete";
				goto out;
			}
			bad |= dkim_canon_header(s->hdr.data + hit->off, hit->len, &hashed);
		}
	}
	bad |= dkim_canon_header(aar.data, aar.len, &hashed);
	bad |= dkim_canon_header(ams.data, ams.len, &hashed);
	int rsa = tls_key_alg(key) == TLS_KEY_RSA;
	buf_appendf(&as, "ARC-Seal: i=%u; a=%s; t=%lld; cv=%s;\r\n\td=%s; s=%s;\r\n\tb=", instance,
		    rsa ? "rsa-sha256" : "ed25519-sha256", (long long)now, cv, domain, selector);
	bad |= dkim_canon_header(as.data, as.len, &hashed);
	if (bad) {
		*err_r = "ARC set too large";
		goto out;
	}
	hashed.len -= 2;   /* the seal's own field without its final CRLF */
	unsigned char digest[TLS_SHA256_LEN], sig[TLS_SIG_MAX];
	size_t siglen = 0;
	struct tls_sha256 *hh = tls_sha256_new();
	if (hh == NULL) {
		*err_r = "out of memory";
		goto out;
	}
	tls_sha256_update(hh, hashed.data, hashed.len);
	tls_sha256_final(hh, digest);
	tls_sha256_free(&hh);
	if (tls_key_sign_sha256(key, digest, sig, &siglen) < 0) {
		*err_r = "the signing operation failed";
		goto out;
	}
	if (append_b64_folded(&as, sig, siglen, DKIM_B64_LINE - 3) < 0 ||
	    buf_append(&as, "\r\n", 2) < 0 || buf_append(out, as.data, as.len) < 0 ||
	    buf_append(out, ams.data, ams.len) < 0 || buf_append(out, aar.data, aar.len) < 0) {
		*err_r = "ARC set too large";
		goto out;
	}
	rc = 0;
out:
	buf_free(&aar);
	buf_free(&ams);
	buf_free(&as);
	buf_free(&hashed);
	return rc;
}
