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
	/* the DKIM signatures checked, and in the last slot the newest ARC-Message-Signature */
	struct dkim_sig sig[DKIM_VERIFY_SIGS_MAX + 1];
	int sig_ok[DKIM_VERIFY_SIGS_MAX + 1];
	const char *sig_err[DKIM_VERIFY_SIGS_MAX + 1];
	size_t sig_field[DKIM_VERIFY_SIGS_MAX + 1];   /* index of its field in the header */
	struct body_hash body[DKIM_VERIFY_SIGS_MAX + 1];
	int has_arc;                    /* some ARC field is present */
	int ams_ok;                     /* the newest AMS parsed (slot DKIM_VERIFY_SIGS_MAX) */
	enum arc_result arc;
	const char *arc_why;
	unsigned arc_n;
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

/* Parse a DKIM-Signature (arc 0) or ARC-Message-Signature (arc 1: no v=, i= an instance). */
static int sig_parse(const char *value, size_t n, struct dkim_sig *out, const char **err_r,
		     int arc)
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
		} else if (tag_is(&t, "i") && arc) {
			int64_t x = tag_num(t.val, t.val_len);
			if (x < 1 || x > ARC_INSTANCES_MAX) {
				*err_r = "the ARC instance i= is not 1-50";
				return -1;
			}
			out->inst = (int)x;
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
	if ((!(seen & 1u) && !arc) || !have_a || !have_b || !have_bh || !out->d[0] || !out->s[0] ||
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

/* Parse the value of a DKIM-Signature field. */
int dkim_sig_parse(const char *value, size_t n, struct dkim_sig *out, const char **err_r)
{
	return sig_parse(value, n, out, err_r, 0);
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

static int arc_instance(const char *v, size_t n);

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
	for (size_t i = 0; i <= DKIM_VERIFY_SIGS_MAX; i++)
		tls_sha256_free(&(*v)->body[i].h);
	free(*v);
	*v = NULL;
}

/* Set up the body hash of slot k. 0 ok, -1 out of memory. */
static int body_setup(struct dkim_verifier *v, size_t k)
{
	struct body_hash *b = &v->body[k];
	b->h = tls_sha256_new();
	if (b->h == NULL) {
		v->sig_ok[k] = 0;
		v->sig_err[k] = "out of memory";
		return -1;
	}
	b->relaxed = v->sig[k].body_relaxed;
	b->limit = v->sig[k].l;
	dkim_body_canon_init(&b->rc, relaxed_out, b);
	return 0;
}

/* End of the header section: parse the signatures and set up their body hashes. */
static void header_end(struct dkim_verifier *v)
{
	v->in_body = 1;
	if (v->too_big)
		return;
	struct hdr_field f;
	size_t idx = 0;
	int newest = 0;
	const size_t arc_slot = DKIM_VERIFY_SIGS_MAX;
	for (size_t pos = 0; hdr_next(v->hdr.data ? v->hdr.data : "", v->hdr.len, &pos, &f) == 1;
	     idx++) {
		if (hdr_is(&f, "arc-seal") || hdr_is(&f, "arc-authentication-results"))
			v->has_arc = 1;
		if (hdr_is(&f, "arc-message-signature")) {
			/* only the newest one is verified (RFC 8617 5.2 step 3) */
			v->has_arc = 1;
			struct dkim_sig tmp;
			const char *err = "the newest ARC-Message-Signature is malformed";
			int ok = sig_parse(f.value, f.value_len, &tmp, &err, 1) == 0;
			int inst = ok ? tmp.inst : arc_instance(f.value, f.value_len);
			if (inst > newest) {
				newest = inst;
				v->sig[arc_slot] = tmp;
				v->sig_field[arc_slot] = idx;
				v->ams_ok = v->sig_ok[arc_slot] = ok;
				v->sig_err[arc_slot] = err;
			}
			continue;
		}
		if (!hdr_is(&f, "dkim-signature"))
			continue;
		size_t k = v->nsigs++;
		if (k >= DKIM_VERIFY_SIGS_MAX)
			continue;
		v->sig_field[k] = idx;
		v->sig_ok[k] = dkim_sig_parse(f.value, f.value_len, &v->sig[k], &v->sig_err[k]) == 0;
		if (v->sig_ok[k])
			body_setup(v, k);
	}
	if (v->ams_ok && body_setup(v, arc_slot) < 0)
		v->ams_ok = 0;
}

/* Feed body octets to every hash. */
static void body_feed(struct dkim_verifier *v, const char *p, size_t n)
{
	for (size_t k = 0; k <= DKIM_VERIFY_SIGS_MAX; k++) {
		struct body_hash *b = &v->body[k];
		if (!v->sig_ok[k] || b->h == NULL)
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

/* Look up the key s._domainkey.d and check sig over digest with it. auid: i= (for t=s) or
 * NULL. DKIM_R_PASS, _FAIL (the signature does not verify), _PERMERROR, _TEMPERROR. */
static enum dkim_result key_check(const struct authdns *dns, const char *d, const char *sel,
				  int ed25519, const char *auid, const unsigned char *digest,
				  const unsigned char *sig, size_t siglen, int *testing_r,
				  const char **why_r)
{
	char name[DKIM_SELECTOR_MAX + DKIM_DOMAIN_MAX + 16];
	if ((size_t)snprintf(name, sizeof(name), "%s._domainkey.%s", sel, d) >= sizeof(name) ||
	    strlen(name) > AUTHDNS_NAME_MAX) {
		*why_r = "the key's name is too long";
		return DKIM_R_PERMERROR;
	}
	struct authdns_txt *txt = malloc(sizeof(*txt));
	struct dkim_pubkey *key = malloc(sizeof(*key));
	enum dkim_result res = DKIM_R_PERMERROR;
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
	if (key->ed25519 != ed25519) {
		*why_r = "the key type does not match a=";
		goto out;
	}
	if (key->strict && auid && auid[0] && strcasecmp(strrchr(auid, '@') + 1, d) != 0) {
		*why_r = "the key forbids subdomains in i= (t=s)";
		goto out;
	}
	unsigned bits;
	const char *cerr = "";
	int ok = tls_pubkey_verify_sha256(key->p, key->plen, key->ed25519, DKIM_KEY_BITS_MIN,
					  DKIM_KEY_BITS_MAX, digest, sig, siglen, &bits, &cerr);
	if (ok < 0) {
		*why_r = cerr;
		goto out;
	}
	if (ok == 0) {
		*why_r = "signature did not verify";
		res = DKIM_R_FAIL;
		goto out;
	}
	*testing_r = key->testing;
	res = DKIM_R_PASS;
out:
	free(txt);
	free(key);
	return res;
}

/* SHA-256 of in, without the CRLF that ends it (the signature field's own line end). */
static void header_digest(struct buf *in, unsigned char digest[TLS_SHA256_LEN])
{
	while (in->len > 0 && (in->data[in->len - 1] == '\n' || in->data[in->len - 1] == '\r'))
		in->len--;
	struct tls_sha256 *hh = tls_sha256_new();
	if (hh == NULL) {
		memset(digest, 0, TLS_SHA256_LEN);   /* verifies nothing */
		return;
	}
	tls_sha256_update(hh, in->data ? in->data : "", in->len);
	tls_sha256_final(hh, digest);
	tls_sha256_free(&hh);
}

/* Check one parsed signature (a DKIM-Signature, or the newest ARC-Message-Signature, which is
 * checked the same way) whose body hash is final. */
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
	/* the body */
	if (b->relaxed)
		dkim_body_canon_end(&b->rc);
	else
		simple_end(b);
	tls_sha256_final(b->h, b->hash);
	if (sg->l >= 0 && b->count < (uint64_t)sg->l) {
		*why_r = "l= is longer than the body";
		return DKIM_R_FAIL;
	}
	if (memcmp(b->hash, sg->bh, TLS_SHA256_LEN) != 0) {
		*why_r = "body hash did not verify";
		return DKIM_R_FAIL;
	}
	/* the header hash input: each h= name takes its last unused instance (5.4.2) */
	struct buf in;
	buf_init(&in, DKIM_HEADER_MAX + 2 * DKIM_FIELD_MAX);
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
		buf_free(&in);
		*why_r = "header section too large to verify";
		return DKIM_R_PERMERROR;
	}
	unsigned char digest[TLS_SHA256_LEN];
	header_digest(&in, digest);
	buf_free(&in);
	int testing = 0;
	enum dkim_result res = key_check(dns, sg->d, sg->s, sg->ed25519, sg->i, digest, sg->b,
					 sg->blen, &testing, why_r);
	if (res != DKIM_R_PASS)
		return res;
	if (sg->l >= 0 && b->count > (uint64_t)sg->l) {
		*why_r = "l= leaves part of the body unsigned";
		return DKIM_R_POLICY;
	}
	*why_r = testing ? "the domain is testing DKIM (t=y)" : "";
	return DKIM_R_PASS;
}

/* ---- ARC (RFC 8617) ---- */

/* The i= instance of an ARC field value (ARC-Authentication-Results starts with it, the
 * other two have it among their tags): 1..ARC_INSTANCES_MAX, or -1. */
static int arc_instance(const char *v, size_t n)
{
	struct tag t;
	size_t pos = 0;
	int r;
	while ((r = tag_next(v, n, &pos, &t)) == 1) {
		if (tag_is(&t, "i")) {
			int64_t x = tag_num(t.val, t.val_len);
			return x >= 1 && x <= ARC_INSTANCES_MAX ? (int)x : -1;
		}
		/* an AAR has "i=N; authserv-id; ...": the authserv-id is no tag, stop there */
		if (r < 0)
			break;
	}
	/* AAR: tag_next fails on the authserv-id; look for i= at the start directly */
	size_t i = 0;
	while (i < n && is_fws(v[i]))
		i++;
	if (i + 2 < n && v[i] == 'i') {
		i++;
		while (i < n && is_fws(v[i]))
			i++;
		if (i < n && v[i] == '=') {
			i++;
			while (i < n && is_fws(v[i]))
				i++;
			size_t s = i;
			while (i < n && v[i] >= '0' && v[i] <= '9')
				i++;
			int64_t x = tag_num(v + s, i - s);
			return x >= 1 && x <= ARC_INSTANCES_MAX ? (int)x : -1;
		}
	}
	return -1;
}

struct arc_seal {
	int ed25519;
	int cv;                          /* 0 none, 1 pass, 2 fail */
	char d[DKIM_DOMAIN_MAX + 1];
	char s[DKIM_SELECTOR_MAX + 1];
	unsigned char b[TLS_SIG_MAX];
	size_t blen;
};

/* Parse an ARC-Seal value. 0 ok, -1 malformed. */
static int arc_seal_parse(const char *v, size_t n, struct arc_seal *out)
{
	memset(out, 0, sizeof(*out));
	out->cv = -1;
	struct tag t;
	size_t pos = 0;
	int r, have_a = 0;
	while ((r = tag_next(v, n, &pos, &t)) == 1) {
		if (tag_is(&t, "a")) {
			have_a = 1;
			if (t.val_len == 10 && strncasecmp(t.val, "rsa-sha256", 10) == 0)
				out->ed25519 = 0;
			else if (t.val_len == 14 && strncasecmp(t.val, "ed25519-sha256", 14) == 0)
				out->ed25519 = 1;
			else
				return -1;
		} else if (tag_is(&t, "cv")) {
			out->cv = t.val_len == 4 && strncasecmp(t.val, "none", 4) == 0 ? 0 :
				  t.val_len == 4 && strncasecmp(t.val, "pass", 4) == 0 ? 1 :
				  t.val_len == 4 && strncasecmp(t.val, "fail", 4) == 0 ? 2 : -1;
		} else if (tag_is(&t, "d")) {
			if (copy_domain(t.val, t.val_len, out->d, sizeof(out->d)) < 0)
				return -1;
		} else if (tag_is(&t, "s")) {
			if (copy_domain(t.val, t.val_len, out->s, sizeof(out->s)) < 0)
				return -1;
		} else if (tag_is(&t, "b")) {
			ssize_t got = b64_nofws(t.val, t.val_len, out->b, sizeof(out->b));
			if (got <= 0)
				return -1;
			out->blen = (size_t)got;
		} else if (tag_is(&t, "h")) {
			return -1;   /* RFC 8617 4.1.3: an ARC-Seal has no h= */
		}
	}
	return r < 0 || !have_a || out->cv < 0 || !out->d[0] || !out->s[0] || out->blen == 0 ?
	       -1 : 0;
}

/* Verify the ARC chain (RFC 8617 5.2): structure, the newest AMS, every AS. */
static void arc_check(struct dkim_verifier *v, const struct hdr_field *fields, size_t nfields,
		      const struct authdns *dns, time_t now)
{
	int aar[ARC_INSTANCES_MAX + 1], ams[ARC_INSTANCES_MAX + 1], as[ARC_INSTANCES_MAX + 1];
	for (int i = 0; i <= ARC_INSTANCES_MAX; i++)
		aar[i] = ams[i] = as[i] = -1;
	int n = 0, any = 0;
	v->arc = ARC_R_FAIL;
	for (size_t f = 0; f < nfields; f++) {
		int *slot = hdr_is(&fields[f], "arc-authentication-results") ? aar :
			    hdr_is(&fields[f], "arc-message-signature") ? ams :
			    hdr_is(&fields[f], "arc-seal") ? as : NULL;
		if (slot == NULL)
			continue;
		any = 1;
		int i = arc_instance(fields[f].value, fields[f].value_len);
		if (i < 0) {
			v->arc_why = "an ARC field has no valid i=";
			return;
		}
		if (slot[i] >= 0) {
			v->arc_why = "two ARC fields of one kind share an instance";
			return;
		}
		slot[i] = (int)f;
		if (i > n)
			n = i;
	}
	if (!any) {
		v->arc = ARC_R_NONE;
		v->arc_why = "";
		return;
	}
	v->arc_n = (unsigned)n;
	for (int i = 1; i <= n; i++) {
		if (aar[i] < 0 || ams[i] < 0 || as[i] < 0) {
			v->arc_why = "the ARC sets are incomplete or have a gap";
			return;
		}
	}
	if (n > ARC_VERIFY_MAX) {
		v->arc_why = "the ARC chain is too long to verify here";
		return;
	}
	struct arc_seal *seal = malloc(sizeof(*seal) * (size_t)(n + 1));
	if (seal == NULL) {
		v->arc_why = "out of memory";
		return;
	}
	for (int i = 1; i <= n; i++) {
		const struct hdr_field *f = &fields[as[i]];
		if (arc_seal_parse(f->value, f->value_len, &seal[i]) < 0) {
			v->arc_why = "an ARC-Seal is malformed";
			goto out;
		}
		if (seal[i].cv != (i == 1 ? 0 : 1)) {
			v->arc_why = seal[i].cv == 2 ? "an earlier hop saw the chain fail (cv=fail)" :
				     "an ARC-Seal has the wrong cv=";
			goto out;
		}
	}
	/* the newest ARC-Message-Signature, set up (with its body hash) in header_end */
	if (!v->ams_ok || v->sig_field[DKIM_VERIFY_SIGS_MAX] != (size_t)ams[n]) {
		v->arc_why = v->ams_ok ? "the newest ARC-Message-Signature was not found" :
			     v->sig_err[DKIM_VERIFY_SIGS_MAX];
		goto out;
	}
	const char *why = "";
	if (verify_one(v, DKIM_VERIFY_SIGS_MAX, fields, nfields, dns, now, &why) != DKIM_R_PASS) {
		v->arc_why = why[0] ? why : "the newest ARC-Message-Signature did not verify";
		goto out;
	}
	/* every seal, newest first: the sets 1..k (AAR, AMS, AS), relaxed, AS(k) without b= */
	struct dkim_sig relaxed;
	memset(&relaxed, 0, sizeof(relaxed));
	relaxed.hdr_relaxed = 1;
	for (int k = n; k >= 1; k--) {
		struct buf in;
		buf_init(&in, DKIM_HEADER_MAX + 2 * DKIM_FIELD_MAX);
		int bad = 0;
		for (int i = 1; i <= k; i++) {
			const struct hdr_field *a = &fields[aar[i]], *m = &fields[ams[i]],
					       *s = &fields[as[i]];
			bad |= canon_field(&relaxed, a->raw, a->raw_len, &in);
			bad |= canon_field(&relaxed, m->raw, m->raw_len, &in);
			if (i < k) {
				bad |= canon_field(&relaxed, s->raw, s->raw_len, &in);
				continue;
			}
			struct buf stripped;
			buf_init(&stripped, DKIM_HEADER_MAX);
			bad |= strip_b(s->raw, s->raw_len, &stripped);
			bad |= canon_field(&relaxed, stripped.data ? stripped.data : "", stripped.len,
					   &in);
			buf_free(&stripped);
		}
		unsigned char digest[TLS_SHA256_LEN];
		header_digest(&in, digest);
		buf_free(&in);
		if (bad) {
			v->arc_why = "header section too large to verify";
			goto out;
		}
		int testing = 0;
		if (key_check(dns, seal[k].d, seal[k].s, seal[k].ed25519, NULL, digest, seal[k].b,
			      seal[k].blen, &testing, &why) != DKIM_R_PASS) {
			v->arc_why = why[0] ? why : "an ARC-Seal did not verify";
			goto out;
		}
	}
	v->arc = ARC_R_PASS;
	v->arc_why = "";
out:
	free(seal);
}

/* The ARC verdict. */
enum arc_result dkim_verifier_arc(const struct dkim_verifier *v, unsigned *instances_r,
				  const char **why_r)
{
	*instances_r = v->arc_n;
	*why_r = v->arc_why ? v->arc_why : "";
	return v->arc;
}

/* Verify every signature. */
size_t dkim_verifier_finish(struct dkim_verifier *v, const struct authdns *dns, time_t now,
			    struct dkim_sig_result *out, size_t max)
{
	if (!v->in_body)
		header_end(v);   /* a message of header lines only */
	struct hdr_field *fields = NULL;
	size_t nfields = 0;
	if (!v->too_big && (v->nsigs > 0 || v->has_arc)) {
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
	if (v->has_arc && !v->too_big && fields != NULL) {
		arc_check(v, fields, nfields, dns, now);
	} else if (v->has_arc) {
		v->arc = ARC_R_FAIL;
		v->arc_why = "header section too large to verify";
	}
	free(fields);
	return n;
}
