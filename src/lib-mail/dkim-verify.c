/* dkim-verify.c - DKIM verification (RFC 6376 6, RFC 8301, RFC 8463): tag-list parsing of the
 * signature and key records, simple/relaxed canonicalisation, body hashes with l=, header
 * hashes, and the signature check (lib-tls).
 */
#include "dkim-verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "header.h"

#define DKIM_L_MAX 1000000000000LL   /* l= beyond any message we accept: refused as malformed */
#define DKIM_B64_MAX 2048            /* base64 characters of b=/bh=/p= after FWS removal */
#define DKIM_HFIELDS_MAX 1000        /* header fields looked at (as the signer) */

struct body_hash {
	struct tls_sha256 *h;
	int relaxed;
	int64_t limit;                  /* -1: whole body */
	uint64_t count;                 /* canonical octets produced (all, not only hashed) */
	struct dkim_body_canon rc;      /* relaxed */
	/* simple (RFC 6376 3.4.3): only empty lines at the end go */
	int prev_cr;
	size_t line_len;
	size_t empty;
	int any;
	unsigned char hash[TLS_SHA256_LEN];
};

struct dkim_verifier {
	struct buf hdr;                 /* the header section as received */
	int in_body;
	int too_big;
	size_t cur_len;                 /* octets of the current header line so far */
	char cur_first;
	size_t nsigs;                   /* DKIM-Signature fields in the header */
	struct dkim_sig sig[DKIM_VERIFY_SIGS_MAX];
	int sig_ok[DKIM_VERIFY_SIGS_MAX];
	const char *sig_err[DKIM_VERIFY_SIGS_MAX];
	size_t sig_field[DKIM_VERIFY_SIGS_MAX];   /* index of its field in the header */
	struct body_hash body[DKIM_VERIFY_SIGS_MAX];
};

/* ---- tag lists (RFC 6376 3.2) ---- */

struct tag {
	const char *name, *val;
	size_t name_len, val_len;
};

/* Folding white space: SP, HTAB, CR, LF. */
static int is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The next tag of p[*pos..n). 1 a tag, 0 the end, -1 malformed. */
static int tag_next(const char *p, size_t n, size_t *pos, struct tag *t)
{
	size_t i = *pos;
	while (i < n && is_fws(p[i]))
		i++;
	if (i >= n)
		return 0;
	t->name = p + i;
	while (i < n && (p[i] == '_' || (p[i] >= '0' && p[i] <= '9') ||
			 ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'z')))
		i++;
	t->name_len = (size_t)(p + i - t->name);
	if (t->name_len == 0 || t->name[0] == '_' || (t->name[0] >= '0' && t->name[0] <= '9'))
		return -1;
	while (i < n && is_fws(p[i]))
		i++;
	if (i >= n || p[i] != '=')
		return -1;
	i++;
	while (i < n && is_fws(p[i]))
		i++;
	t->val = p + i;
	while (i < n && p[i] != ';')
		i++;
	size_t e = i;
	while (e > (size_t)(t->val - p) && is_fws(p[e - 1]))
		e--;
	t->val_len = e - (size_t)(t->val - p);
	for (size_t k = 0; k < t->val_len; k++) {   /* tval is printable ASCII but ';' and FWS */
		unsigned char c = (unsigned char)t->val[k];
		if (c < 0x20 && !is_fws((char)c))
			return -1;
		if (c >= 0x7f)
			return -1;
	}
	*pos = i < n ? i + 1 : i;
	return 1;
}

/* Is tag t called name? */
static int tag_is(const struct tag *t, const char *name)
{
	return t->name_len == strlen(name) && memcmp(t->name, name, t->name_len) == 0;
}

/* Copy a value without FWS into out (NUL-terminated). -1 if it does not fit. */
static int copy_nofws(const char *v, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_fws(v[i]))
			continue;
		if (o + 1 >= outlen)
			return -1;
		out[o++] = v[i];
	}
	out[o] = '\0';
	return 0;
}

/* Base64 value with FWS inside (RFC 6376 3.5 b=, bh=, p=) into out. Octets or -1. */
static ssize_t b64_nofws(const char *v, size_t n, unsigned char *out, size_t outcap)
{
	char tmp[DKIM_B64_MAX + 1];
	if (copy_nofws(v, n, tmp, sizeof(tmp)) < 0)
		return -1;
	return base64_decode(tmp, strlen(tmp), out, outcap);
}

/* Lower-case a domain value into out; only LDH, '.' and '_' allowed. -1 otherwise. */
static int copy_domain(const char *v, size_t n, char *out, size_t outlen)
{
	if (n == 0 || n >= outlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return out[0] == '.' || out[n - 1] == '.' || strstr(out, "..") ? -1 : 0;
}

/* A decimal number of at most 15 digits. -1 if not one. */
static int64_t tag_num(const char *v, size_t n)
{
	if (n == 0 || n > 15)
		return -1;
	int64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (v[i] - '0');
	}
	return x;
}

/* Parse the value of a DKIM-Signature field. */
int dkim_sig_parse(const char *value, size_t n, struct dkim_sig *out, const char **err_r)
{
	memset(out, 0, sizeof(*out));
	out->l = out->t = out->x = -1;
	unsigned seen = 0;   /* one bit per known tag: a repeated tag is an error (3.2) */
	static const char *const known[] = { "v", "a", "b", "bh", "c", "d", "h", "i", "l", "q",
					     "s", "t", "x", "z" };
	int have_a = 0, have_b = 0, have_bh = 0;
	struct tag t;
	size_t pos = 0;
	int r;
	while ((r = tag_next(value, n, &pos, &t)) == 1) {
		size_t k;
		for (k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (tag_is(&t, known[k]))
				break;
		if (k == sizeof(known) / sizeof(known[0]))
			continue;   /* unknown tags are ignored (3.2) */
		if (seen & (1u << k)) {
			*err_r = "a tag appears twice in the signature";
			return -1;
		}
		seen |= 1u << k;
		if (tag_is(&t, "v")) {
			if (t.val_len != 1 || t.val[0] != '1') {
				*err_r = "unknown signature version (v= is not 1)";
				return -1;
			}
		} else if (tag_is(&t, "a")) {
			have_a = 1;
			if (t.val_len == 10 && strncasecmp(t.val, "rsa-sha256", 10) == 0) {
				out->ed25519 = 0;
			} else if (t.val_len == 14 && strncasecmp(t.val, "ed25519-sha256", 14) == 0) {
				out->ed25519 = 1;
			} else {
				*err_r = "unsupported algorithm (rsa-sha1 is no longer valid, RFC 8301)";
				return -1;
			}
		} else if (tag_is(&t, "b")) {
			ssize_t got = b64_nofws(t.val, t.val_len, out->b, sizeof(out->b));
			if (got <= 0) {
				*err_r = "b= is not valid base64";
				return -1;
			}
			out->blen = (size_t)got;
			size_t o = 0;
			for (size_t i = 0; i < t.val_len && o < 8; i++)
				if (!is_fws(t.val[i]))
					out->b_prefix[o++] = t.val[i];
			out->b_prefix[o] = '\0';
			have_b = 1;
		} else if (tag_is(&t, "bh")) {
			if (b64_nofws(t.val, t.val_len, out->bh, sizeof(out->bh)) != TLS_SHA256_LEN) {
				*err_r = "bh= is not a base64 SHA-256 hash";
				return -1;
			}
			have_bh = 1;
		} else if (tag_is(&t, "c")) {
			char c[32];
			if (copy_nofws(t.val, t.val_len, c, sizeof(c)) < 0) {
				*err_r = "unknown canonicalization";
				return -1;
			}
			char *slash = strchr(c, '/');
			if (slash)
				*slash++ = '\0';
			int hr = strcasecmp(c, "relaxed") == 0, hs = strcasecmp(c, "simple") == 0;
			int br = slash && strcasecmp(slash, "relaxed") == 0;
			int bs = !slash || strcasecmp(slash, "simple") == 0;
			if (!(hr || hs) || !(br || bs)) {
				*err_r = "unknown canonicalization";
				return -1;
			}
			out->hdr_relaxed = hr;
			out->body_relaxed = br;
		} else if (tag_is(&t, "d")) {
			if (copy_domain(t.val, t.val_len, out->d, sizeof(out->d)) < 0) {
				*err_r = "d= is not a domain";
				return -1;
			}
		} else if (tag_is(&t, "s")) {
			if (copy_domain(t.val, t.val_len, out->s, sizeof(out->s)) < 0) {
				*err_r = "s= is not a selector";
				return -1;
			}
		} else if (tag_is(&t, "h")) {
			if (copy_nofws(t.val, t.val_len, out->h, sizeof(out->h)) < 0) {
				*err_r = "h= is too long";
				return -1;
			}
			unsigned names = 1;
			for (const char *c = out->h; *c; c++)
				names += *c == ':';
			if (names > DKIM_H_MAX || out->h[0] == '\0') {
				*err_r = "h= lists too many header fields";
				return -1;
			}
		} else if (tag_is(&t, "i")) {
			if (copy_nofws(t.val, t.val_len, out->i, sizeof(out->i)) < 0 ||
			    strchr(out->i, '@') == NULL) {
				*err_r = "i= is not an identity";
				return -1;
			}
		} else if (tag_is(&t, "l")) {
			out->l = tag_num(t.val, t.val_len);
			if (out->l < 0 || out->l > DKIM_L_MAX) {
				*err_r = "l= is not a number";
				return -1;
			}
		} else if (tag_is(&t, "q")) {
			if (!(t.val_len >= 7 && strncasecmp(t.val, "dns/txt", 7) == 0)) {
				*err_r = "unknown key query method (q= is not dns/txt)";
				return -1;
			}
		} else if (tag_is(&t, "t")) {
			out->t = tag_num(t.val, t.val_len);
			if (out->t < 0) {
				*err_r = "t= is not a number";
				return -1;
			}
		} else if (tag_is(&t, "x")) {
			out->x = tag_num(t.val, t.val_len);
			if (out->x < 0) {
				*err_r = "x= is not a number";
				return -1;
			}
		}
	}
	if (r < 0) {
		*err_r = "the signature is not a valid tag list";
		return -1;
	}
	if (!(seen & 1u) || !have_a || !have_b || !have_bh || !out->d[0] || !out->s[0] ||
	    !out->h[0]) {
		*err_r = "a required tag (v, a, b, bh, d, h, s) is missing";
		return -1;
	}
	/* h= must include From (5.4) */
	int from = 0;
	for (const char *c = out->h; *c;) {
		const char *e = strchr(c, ':');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		from |= len == 4 && strncasecmp(c, "from", 4) == 0;
		c += len + (e != NULL);
	}
	if (!from) {
		*err_r = "h= does not include From";
		return -1;
	}
	if (out->i[0]) {   /* i= must be in d= or one of its subdomains (3.5) */
		const char *dom = strrchr(out->i, '@') + 1;
		size_t dl = strlen(dom), ddl = strlen(out->d);
		if (!(strcasecmp(dom, out->d) == 0 ||
		      (dl > ddl && dom[dl - ddl - 1] == '.' && strcasecmp(dom + dl - ddl, out->d) == 0))) {
			*err_r = "i= is not within d=";
			return -1;
		}
	}
	if (out->t >= 0 && out->x >= 0 && out->x < out->t) {
		*err_r = "x= is before t=";
		return -1;
	}
	return 0;
}

/* Parse a key record. */
int dkim_key_parse(const char *txt, size_t n, struct dkim_pubkey *out, const char **err_r)
{
	memset(out, 0, sizeof(*out));
	struct tag t;
	size_t pos = 0;
	int r, first = 1, have_p = 0;
	while ((r = tag_next(txt, n, &pos, &t)) == 1) {
		if (tag_is(&t, "v")) {
			if (!first || !(t.val_len == 5 && memcmp(t.val, "DKIM1", 5) == 0)) {
				*err_r = "the key record's v= is not DKIM1";
				return -1;
			}
		} else if (tag_is(&t, "k")) {
			if (t.val_len == 3 && strncasecmp(t.val, "rsa", 3) == 0) {
				out->ed25519 = 0;
			} else if (t.val_len == 7 && strncasecmp(t.val, "ed25519", 7) == 0) {
				out->ed25519 = 1;
			} else {
				*err_r = "unknown key type (k=)";
				return -1;
			}
		} else if (tag_is(&t, "h")) {
			char h[128];
			if (copy_nofws(t.val, t.val_len, h, sizeof(h)) < 0 ||
			    strstr(h, "sha256") == NULL) {
				*err_r = "the key does not allow sha256 (h=)";
				return -1;
			}
		} else if (tag_is(&t, "s")) {
			char s[128];
			if (copy_nofws(t.val, t.val_len, s, sizeof(s)) < 0 ||
			    (strstr(s, "*") == NULL && strstr(s, "email") == NULL)) {
				*err_r = "the key is not for email (s=)";
				return -1;
			}
		} else if (tag_is(&t, "t")) {
			char f[128];
			if (copy_nofws(t.val, t.val_len, f, sizeof(f)) == 0) {
				for (char *c = strtok(f, ":"); c; c = strtok(NULL, ":")) {
					out->testing |= strcmp(c, "y") == 0;
					out->strict |= strcmp(c, "s") == 0;
				}
			}
		} else if (tag_is(&t, "p")) {
			if (have_p) {
				*err_r = "p= appears twice in the key record";
				return -1;
			}
			have_p = 1;
			if (t.val_len == 0) {
				*err_r = "the key was revoked (empty p=)";
				return -1;
			}
			size_t chars = 0;
			for (size_t i = 0; i < t.val_len; i++)
				chars += !is_fws(t.val[i]);
			if (BASE64_DECODED_MAX(chars) > sizeof(out->p) + 2) {
				*err_r = "the key is too long (RSA keys over 4096 bits are refused)";
				return -1;
			}
			ssize_t got = b64_nofws(t.val, t.val_len, out->p, sizeof(out->p));
			if (got <= 0) {
				*err_r = "the key's p= is not valid base64";
				return -1;
			}
			out->plen = (size_t)got;
		}
		first = 0;
	}
	if (r < 0) {
		*err_r = "the key record is not a valid tag list";
		return -1;
	}
	if (!have_p) {
		*err_r = "the key record has no p=";
		return -1;
	}
	return 0;
}

/* ---- body hashes ---- */

/* Hash canonical body octets up to the l= limit. */
static void body_out(void *ctx, const char *p, size_t n)
{
	struct body_hash *b = ctx;
	size_t take = n;
	if (b->limit >= 0) {
		uint64_t lim = (uint64_t)b->limit;
		take = b->count >= lim ? 0 : lim - b->count < n ? (size_t)(lim - b->count) : n;
	}
	if (take > 0)
		tls_sha256_update(b->h, p, take);
	b->count += n;
}

/* Simple body canonicalisation of n more octets. */
static void simple_feed(struct body_hash *b, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch == '\n' || (b->prev_cr && ch != '\n')) {
			/* a line ended (CRLF or bare LF; a bare CR is kept as content) */
			if (b->prev_cr && ch != '\n') {
				/* the CR held back was content */
				for (; b->empty > 0; b->empty--)
					body_out(b, "\r\n", 2);
				body_out(b, "\r", 1);
				b->line_len++;
				b->prev_cr = 0;
				i--;
				continue;
			}
			b->prev_cr = 0;
			if (b->line_len == 0) {
				b->empty++;
			} else {
				body_out(b, "\r\n", 2);
				b->any = 1;
			}
			b->line_len = 0;
			continue;
		}
		if (ch == '\r') {
			b->prev_cr = 1;
			continue;
		}
		for (; b->empty > 0; b->empty--)
			body_out(b, "\r\n", 2);
		size_t j = i;
		while (j < n && p[j] != '\r' && p[j] != '\n')
			j++;
		body_out(b, p + i, j - i);
		b->line_len += j - i;
		b->any = 1;
		i = j - 1;
	}
}

/* End of a simple body: a last line without line end gets one; an empty body is CRLF. */
static void simple_end(struct body_hash *b)
{
	if (b->prev_cr) {
		for (; b->empty > 0; b->empty--)
			body_out(b, "\r\n", 2);
		body_out(b, "\r", 1);
		b->line_len++;
	}
	if (b->line_len > 0 || !b->any)
		body_out(b, "\r\n", 2);
}

/* Relaxed canonicaliser output. */
static void relaxed_out(void *ctx, const char *p, size_t n)
{
	body_out(ctx, p, n);
}

/* ---- the verifier ---- */

/* A new verifier. */
struct dkim_verifier *dkim_verifier_new(void)
{
	struct dkim_verifier *v = calloc(1, sizeof(*v));
	if (v == NULL)
		return NULL;
	buf_init(&v->hdr, DKIM_HEADER_MAX + 2);
	return v;
}

/* Free a verifier (NULL allowed). */
void dkim_verifier_free(struct dkim_verifier **v)
{
	if (*v == NULL)
		return;
	buf_free(&(*v)->hdr);
	for (size_t i = 0; i < DKIM_VERIFY_SIGS_MAX; i++)
		tls_sha256_free(&(*v)->body[i].h);
	free(*v);
	*v = NULL;
}

/* End of the header section: parse the signatures and set up their body hashes. */
static void header_end(struct dkim_verifier *v)
{
	v->in_body = 1;
	if (v->too_big)
		return;
	struct hdr_field f;
	size_t idx = 0;
	for (size_t pos = 0; hdr_next(v->hdr.data ? v->hdr.data : "", v->hdr.len, &pos, &f) == 1;
	     idx++) {
		if (!hdr_is(&f, "dkim-signature"))
			continue;
		size_t k = v->nsigs++;
		if (k >= DKIM_VERIFY_SIGS_MAX)
			continue;
		v->sig_field[k] = idx;
		v->sig_ok[k] = dkim_sig_parse(f.value, f.value_len, &v->sig[k], &v->sig_err[k]) == 0;
		if (!v->sig_ok[k])
			continue;
		struct body_hash *b = &v->body[k];
		b->h = tls_sha256_new();
		if (b->h == NULL) {
			v->sig_ok[k] = 0;
			v->sig_err[k] = "out of memory";
			continue;
		}
		b->relaxed = v->sig[k].body_relaxed;
		b->limit = v->sig[k].l;
		dkim_body_canon_init(&b->rc, relaxed_out, b);
	}
}

/* Feed body octets to every hash. */
static void body_feed(struct dkim_verifier *v, const char *p, size_t n)
{
	for (size_t k = 0; k < v->nsigs && k < DKIM_VERIFY_SIGS_MAX; k++) {
		struct body_hash *b = &v->body[k];
		if (!v->sig_ok[k])
			continue;
		if (b->limit >= 0 && b->count > (uint64_t)b->limit)
			continue;   /* past l=: only "more follows" matters, and that is known */
		if (b->relaxed)
			dkim_body_canon_feed(&b->rc, p, n);
		else
			simple_feed(b, p, n);
	}
}

/* Feed message octets. */
void dkim_verifier_feed(struct dkim_verifier *v, const char *p, size_t n)
{
	size_t i = 0;
	while (!v->in_body && i < n) {
		const char *lf = memchr(p + i, '\n', n - i);
		size_t take = lf ? (size_t)(lf - (p + i)) + 1 : n - i;
		if (!v->too_big && buf_append(&v->hdr, p + i, take) < 0)
			v->too_big = 1;
		if (v->cur_len == 0)
			v->cur_first = p[i];
		v->cur_len += take;
		i += take;
		if (lf == NULL)
			break;
		size_t ll = v->cur_len;
		v->cur_len = 0;
		if (ll == 1 || (ll == 2 && v->cur_first == '\r')) {
			if (!v->too_big) {   /* the empty line is not part of a field */
				v->hdr.len -= ll;
				v->hdr.data[v->hdr.len] = '\0';
			}
			header_end(v);
		}
	}
	if (v->in_body && i < n)
		body_feed(v, p + i, n - i);
}

/* The header section. */
const char *dkim_verifier_header(const struct dkim_verifier *v, size_t *len_r)
{
	*len_r = v->hdr.len;
	return v->too_big ? NULL : v->hdr.data ? v->hdr.data : "";
}

/* Canonicalise one field for the header hash. */
static int canon_field(const struct dkim_sig *sg, const char *raw, size_t n, struct buf *out)
{
	if (sg->hdr_relaxed)
		return dkim_canon_header(raw, n, out);
	return buf_append(out, raw, n);
}

/* The signature field with the value of b= removed (RFC 6376 3.7), line end kept. */
static int strip_b(const char *raw, size_t n, struct buf *out)
{
	size_t end = n;
	if (end > 0 && raw[end - 1] == '\n')
		end--;
	if (end > 0 && raw[end - 1] == '\r')
		end--;
	const char *colon = memchr(raw, ':', end);
	if (colon == NULL)
		return -1;
	size_t i = (size_t)(colon - raw) + 1;
	if (buf_append(out, raw, i) < 0)
		return -1;
	while (i < end) {
		size_t seg = i;
		while (seg < end && raw[seg] != ';')
			seg++;
		size_t k = i;
		while (k < seg && is_fws(raw[k]))
			k++;
		int is_b = k < seg && raw[k] == 'b';
		size_t eq = k + 1;
		while (eq < seg && is_fws(raw[eq]))
			eq++;
		is_b = is_b && eq < seg && raw[eq] == '=';
		size_t keep = is_b ? eq + 1 : seg;
		if (buf_append(out, raw + i, keep - i) < 0)
			return -1;
		if (seg < end && buf_append(out, ";", 1) < 0)
			return -1;
		i = seg + 1;
	}
	return buf_append(out, raw + end, n - end);
}

/* Check one parsed signature whose body hash is final. */
static enum dkim_result verify_one(struct dkim_verifier *v, size_t k, const struct hdr_field *fields,
				   size_t nfields, const struct authdns *dns, time_t now,
				   const char **why_r)
{
	const struct dkim_sig *sg = &v->sig[k];
	struct body_hash *b = &v->body[k];
	if (sg->x >= 0 && (int64_t)now > sg->x) {
		*why_r = "the signature has expired (x=)";
		return DKIM_R_PERMERROR;
	}
	if (v->too_big) {
		*why_r = "header section too large to verify";
		return DKIM_R_PERMERROR;
	}
	/* the key */
	char name[DKIM_SELECTOR_MAX + DKIM_DOMAIN_MAX + 16];
	if ((size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", sg->s, sg->d) >= sizeof(name) ||
	    strlen(name) > AUTHDNS_NAME_MAX) {
		*why_r = "the key's name is too long";
		return DKIM_R_PERMERROR;
	}
	struct authdns_txt *txt = malloc(sizeof(*txt));
	struct dkim_pubkey *key = malloc(sizeof(*key));
	enum dkim_result res = DKIM_R_PERMERROR;
	struct buf in;
	buf_init(&in, DKIM_HEADER_MAX + 2 * DKIM_FIELD_MAX);
	if (txt == NULL || key == NULL) {
		*why_r = "out of memory";
		res = DKIM_R_TEMPERROR;
		goto out;
	}
	int r = dns->txt(dns->ctx, name, txt);
	if (r == AUTHDNS_TEMP) {
		*why_r = "the key lookup failed temporarily";
		res = DKIM_R_TEMPERROR;
		goto out;
	}
	const char *kerr = "no key published for the selector";
	int found = 0;
	for (unsigned i = 0; r == AUTHDNS_OK && i < txt->n && !found; i++)
		found = dkim_key_parse(txt->rec[i], txt->len[i], key, &kerr) == 0;
	if (!found) {
		*why_r = kerr;
		goto out;
	}
	if (key->ed25519 != sg->ed25519) {
		*why_r = "the key type does not match a=";
		goto out;
	}
	if (key->strict && sg->i[0] && strcasecmp(strrchr(sg->i, '@') + 1, sg->d) != 0) {
		*why_r = "the key forbids subdomains in i= (t=s)";
		goto out;
	}
	/* the body */
	if (b->relaxed)
		dkim_body_canon_end(&b->rc);
	else
		simple_end(b);
	tls_sha256_final(b->h, b->hash);
	if (sg->l >= 0 && b->count < (uint64_t)sg->l) {
		*why_r = "l= is longer than the body";
		res = DKIM_R_FAIL;
		goto out;
	}
	if (memcmp(b->hash, sg->bh, TLS_SHA256_LEN) != 0) {
		*why_r = "body hash did not verify";
		res = DKIM_R_FAIL;
		goto out;
	}
	/* the header hash input: each h= name takes its last unused instance (5.4.2) */
	unsigned char used[DKIM_HFIELDS_MAX];
	memset(used, 0, nfields);
	int bad = 0;
	for (const char *c = sg->h; *c;) {
		const char *e = strchr(c, ':');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		for (size_t i = nfields; len > 0 && i-- > 0;) {
			if (used[i] || fields[i].name_len != len ||
			    strncasecmp(fields[i].name, c, len) != 0)
				continue;
			used[i] = 1;
			bad |= canon_field(sg, fields[i].raw, fields[i].raw_len, &in);
			break;
		}
		c += len + (e != NULL);
	}
	const struct hdr_field *self = &fields[v->sig_field[k]];
	struct buf stripped;
	buf_init(&stripped, DKIM_HEADER_MAX);
	bad |= strip_b(self->raw, self->raw_len, &stripped);
	bad |= canon_field(sg, stripped.data ? stripped.data : "", stripped.len, &in);
	buf_free(&stripped);
	if (bad) {
		*why_r = "header section too large to verify";
		goto out;
	}
	while (in.len > 0 && (in.data[in.len - 1] == '\n' || in.data[in.len - 1] == '\r'))
		in.len--;   /* without the final CRLF of the signature field */
	unsigned char digest[TLS_SHA256_LEN];
	struct tls_sha256 *hh = tls_sha256_new();
	if (hh == NULL) {
		*why_r = "out of memory";
		res = DKIM_R_TEMPERROR;
		goto out;
	}
	tls_sha256_update(hh, in.data ? in.data : "", in.len);
	tls_sha256_final(hh, digest);
	tls_sha256_free(&hh);
	unsigned bits;
	const char *cerr = "";
	int ok = tls_pubkey_verify_sha256(key->p, key->plen, key->ed25519, DKIM_KEY_BITS_MIN,
					  DKIM_KEY_BITS_MAX, digest, sg->b, sg->blen, &bits, &cerr);
	if (ok < 0) {
		*why_r = cerr;
		goto out;
	}
	if (ok == 0) {
		*why_r = "signature did not verify";
		res = DKIM_R_FAIL;
		goto out;
	}
	if (sg->l >= 0 && b->count > (uint64_t)sg->l) {
		*why_r = "l= leaves part of the body unsigned";
		res = DKIM_R_POLICY;
		goto out;
	}
	*why_r = key->testing ? "the domain is testing DKIM (t=y)" : "";
	res = DKIM_R_PASS;
out:
	buf_free(&in);
	free(txt);
	free(key);
	return res;
}

/* Verify every signature. */
size_t dkim_verifier_finish(struct dkim_verifier *v, const struct authdns *dns, time_t now,
			    struct dkim_sig_result *out, size_t max)
{
	if (!v->in_body)
		header_end(v);   /* a message of header lines only */
	struct hdr_field *fields = NULL;
	size_t nfields = 0;
	if (!v->too_big && v->nsigs > 0) {
		fields = calloc(DKIM_HFIELDS_MAX, sizeof(*fields));
		struct hdr_field f;
		const char *h = v->hdr.data ? v->hdr.data : "";
		for (size_t pos = 0; fields && hdr_next(h, v->hdr.len, &pos, &f) == 1;) {
			if (nfields == DKIM_HFIELDS_MAX) {
				v->too_big = 1;
				break;
			}
			fields[nfields++] = f;
		}
		if (fields == NULL)
			v->too_big = 1;
	}
	size_t n = 0;
	for (size_t k = 0; k < v->nsigs && n < max; k++, n++) {
		struct dkim_sig_result *r = &out[n];
		memset(r, 0, sizeof(*r));
		if (k >= DKIM_VERIFY_SIGS_MAX) {
			r->result = DKIM_R_NEUTRAL;
			r->why = "not checked: too many signatures";
			continue;
		}
		const struct dkim_sig *sg = &v->sig[k];
		snprintf(r->d, sizeof(r->d), "%s", sg->d);
		snprintf(r->s, sizeof(r->s), "%s", sg->s);
		snprintf(r->b_prefix, sizeof(r->b_prefix), "%s", sg->b_prefix);
		r->ed25519 = sg->ed25519;
		if (!v->sig_ok[k]) {
			r->result = DKIM_R_PERMERROR;
			r->why = v->too_big ? "header section too large to verify" : v->sig_err[k];
			continue;
		}
		if (v->too_big || fields == NULL) {
			r->result = DKIM_R_PERMERROR;
			r->why = "header section too large to verify";
			continue;
		}
		r->result = verify_one(v, k, fields, nfields, dns, now, &r->why);
	}
	free(fields);
	return n;
}
