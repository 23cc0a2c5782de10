/* mime-ctype.c - Content-Type / Content-Disposition values (RFC 2045 5.1, RFC 2183, RFC 2231).
 *
 * The grammar is "token [/ token] *(; attribute = value)" with comments allowed between the
 * pieces. Real mail breaks it in many ways, so parameters are taken leniently: an unquoted
 * value runs to the next ';' (comments removed, blanks trimmed), an unterminated quoted string
 * runs to the end, a parameter without '=' is dropped, junk between parameters is skipped.
 * Only the leading type (and subtype) must be proper tokens; otherwise the caller treats the
 * whole field as absent (RFC 2045 5.2: fall back to text/plain; charset=us-ascii).
 *
 * RFC 2231 parameters (name*=charset'lang'%XX, name*0=, name*1*=, ...) are merged per name and
 * decoded to UTF-8 when written for IMAP, so a client sees plain "FILENAME" "résumé.pdf".
 * When the charset is unknown the merged value is kept in RFC 2231 form under "NAME*".
 */
#include "mime-private.h"

#include <string.h>

#include "buf.h"

/* RFC 2045 5.1 tspecials. */
static int is_tspecial(unsigned char c)
{
	return c != '\0' && strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* RFC 2045 token character: visible US-ASCII except tspecials. */
static int is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !is_tspecial(c);
}

/* Skip blanks, line ends and (nested) comments from p on; returns the new position. */
static size_t skip_cfws(const char *v, size_t len, size_t p)
{
	size_t depth = 0;
	while (p < len) {
		unsigned char c = (unsigned char)v[p];
		if (depth > 0) {
			if (c == '\\')
				p++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(') {
			depth = 1;
		} else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			break;
		}
		p++;
	}
	return p < len ? p : len;
}

/* Position of the next ';' at or after p outside quotes and comments, or len. */
static size_t skip_to_semicolon(const char *v, size_t len, size_t p)
{
	size_t depth = 0;
	int quoted = 0;
	for (; p < len; p++) {
		unsigned char c = (unsigned char)v[p];
		if (c == '\\' && (quoted || depth > 0)) {
			p++;
		} else if (quoted) {
			if (c == '"')
				quoted = 0;
		} else if (depth > 0) {
			if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '"') {
			quoted = 1;
		} else if (c == '(') {
			depth = 1;
		} else if (c == ';') {
			return p;
		}
	}
	return len;
}

/* Length of the token at v[p]. */
static size_t token_len(const char *v, size_t len, size_t p)
{
	size_t n = 0;
	while (p + n < len && is_token_char((unsigned char)v[p + n]))
		n++;
	return n;
}

/* Split an attribute into its base name and RFC 2231 section / extended marker. */
static void param_name_split(struct mime_param *pm)
{
	const char *star = memchr(pm->name, '*', pm->name_len);
	pm->base_len = pm->name_len;
	pm->ext = 0;
	pm->section = -1;
	if (star == NULL || star == pm->name)
		return;
	size_t b = (size_t)(star - pm->name), i = b + 1, n = pm->name_len;
	if (i == n) {
		pm->base_len = b;
		pm->ext = 1;
		return;
	}
	int sec = 0;
	size_t digits = 0;
	while (i < n && pm->name[i] >= '0' && pm->name[i] <= '9') {
		sec = sec * 10 + (pm->name[i] - '0');
		i++;
		if (++digits > 3)
			return;	/* beyond MIME_PARAM_SECTION_MAX: an ordinary name */
	}
	if (digits == 0 || sec > MIME_PARAM_SECTION_MAX)
		return;
	if (i + 1 == n && pm->name[i] == '*')
		pm->ext = 1;
	else if (i != n)
		return;
	pm->base_len = b;
	pm->section = sec;
}

/* Parse the parameter list of v from p on into ct. */
static void params_parse(const char *v, size_t len, size_t p, struct mime_ctype *ct)
{
	for (;;) {
		p = skip_cfws(v, len, p);
		if (p >= len)
			return;
		if (v[p] == ';') {
			p++;
			continue;
		}
		size_t ns = p, nl = token_len(v, len, p);
		p = skip_cfws(v, len, p + nl);
		if (nl == 0 || p >= len || v[p] != '=') {
			p = skip_to_semicolon(v, len, p + (nl == 0 && p < len));
			continue;
		}
		p = skip_cfws(v, len, p + 1);
		struct mime_param pm;
		memset(&pm, 0, sizeof(pm));
		pm.name = v + ns;
		pm.name_len = nl;
		if (p < len && v[p] == '"') {
			size_t vs = ++p;
			while (p < len && v[p] != '"') {
				if (v[p] == '\\' && p + 1 < len)
					p++;
				p++;
			}
			pm.value = v + vs;
			pm.value_len = (p < len ? p : len) - vs;
			pm.quoted = 1;
			if (p < len)
				p++;
			p = skip_to_semicolon(v, len, p);
		} else {
			size_t vs = p;
			p = skip_to_semicolon(v, len, p);
			pm.value = v + vs;
			pm.value_len = p - vs;
		}
		param_name_split(&pm);
		if (ct->nparams < MIME_PARAMS_MAX)
			ct->params[ct->nparams++] = pm;
	}
}

/* Parse a Content-Type (want_subtype) or Content-Disposition value. 0 ok, -1 invalid. */
int mime_ctype_parse(const char *v, size_t len, int want_subtype, struct mime_ctype *ct)
{
	ct->type = ct->subtype = NULL;
	ct->type_len = ct->subtype_len = 0;
	ct->nparams = 0;
	size_t p = skip_cfws(v, len, 0);
	size_t n = token_len(v, len, p);
	if (n == 0)
		return -1;
	ct->type = v + p;
	ct->type_len = n;
	p += n;
	if (want_subtype) {
		p = skip_cfws(v, len, p);
		if (p >= len || v[p] != '/')
			return -1;
		p = skip_cfws(v, len, p + 1);
		n = token_len(v, len, p);
		if (n == 0)
			return -1;
		ct->subtype = v + p;
		ct->subtype_len = n;
		p += n;
	}
	params_parse(v, len, p, ct);
	return 0;
}

/* Append the plain value of a parameter: quoted-pairs undone, comments (unquoted values
 * only) removed, CR and LF dropped, an unquoted value trimmed. 0 ok, -1 out full. */
int mime_param_value(const struct mime_param *p, struct buf *out)
{
	const char *v = p->value;
	size_t n = p->value_len, start = out->len, depth = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '\r' || c == '\n')
			continue;
		if (!p->quoted) {
			if (depth > 0) {
				if (c == '\\')
					i++;
				else if (c == '(')
					depth++;
				else if (c == ')')
					depth--;
				continue;
			}
			if (c == '(') {
				depth = 1;
				continue;
			}
			if ((c == ' ' || c == '\t') && out->len == start)
				continue;	/* leading blanks */
		} else if (c == '\\' && i + 1 < n) {
			c = (unsigned char)v[++i];
		}
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	if (!p->quoted) {
		while (out->len > start &&
		       (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
			out->len--;
		if (out->data != NULL)
			out->data[out->len] = '\0';
	}
	return 0;
}

/* First plain (non-RFC 2231) parameter called name, or NULL. */
const struct mime_param *mime_ctype_param(const struct mime_ctype *ct, const char *name)
{
	for (size_t i = 0; i < ct->nparams; i++) {
		const struct mime_param *p = &ct->params[i];
		if (p->section < 0 && !p->ext && hdr_eq_ci(p->name, p->name_len, name))
			return p;
	}
	return NULL;
}

/* Token of a Content-Transfer-Encoding value; 1 found, 0 none (so the default applies). */
int mime_cte_token(const char *v, size_t len, const char **tok_r, size_t *len_r)
{
	size_t p = skip_cfws(v, len, 0);
	size_t n = token_len(v, len, p);
	if (n == 0)
		return 0;
	*tok_r = v + p;
	*len_r = n;
	return 1;
}

/* Is this parameter part of an RFC 2231 group? */
static int is_2231(const struct mime_param *p)
{
	return p->ext || p->section >= 0;
}

/* Do a and b have the same base name? */
static int same_base(const struct mime_param *a, const struct mime_param *b)
{
	if (a->base_len != b->base_len)
		return 0;
	for (size_t i = 0; i < a->base_len; i++) {
		unsigned char x = (unsigned char)a->name[i], y = (unsigned char)b->name[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return 1;
}

/* Append s[0..n) with RFC 2231 %XX escapes decoded. */
static int pct_decode(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%' && i + 2 < n && mime_hexval((unsigned char)s[i + 1]) >= 0 &&
		    mime_hexval((unsigned char)s[i + 2]) >= 0) {
			c = (unsigned char)(mime_hexval((unsigned char)s[i + 1]) * 16 +
					    mime_hexval((unsigned char)s[i + 2]));
			i += 2;
		}
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* Append bytes in RFC 2231 extended form (attribute-char kept, the rest as %XX). */
static int pct_encode(const unsigned char *s, size_t n, struct buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') ||
			   (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
		int r = keep ? buf_append(out, &c, 1) :
			       buf_appendf(out, "%%%c%c", hex[c >> 4], hex[c & 15]);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* Writer state shared by the parameter emitters. */
struct pw {
	struct buf *out;
	int first;
	int have_charset;
};

/* Write one attribute/value pair (name upper-cased, ext adds '*'). 0 ok, -1 out full. */
static int pw_pair(struct pw *w, const char *name, size_t name_len, int star,
		   const char *val, size_t val_len)
{
	if (buf_appendstr(w->out, w->first ? "(" : " ") < 0)
		return -1;
	w->first = 0;
	if (!star) {
		if (mime_imap_string_flags(w->out, name, name_len, MIME_STR_UPPER) < 0)
			return -1;
	} else {
		struct buf nb;
		buf_init(&nb, name_len + 1);
		int r = buf_append(&nb, name, name_len) < 0 || buf_append(&nb, "*", 1) < 0 ||
			mime_imap_string_flags(w->out, nb.data, nb.len, MIME_STR_UPPER) < 0;
		buf_free(&nb);
		if (r)
			return -1;
	}
	if (hdr_eq_ci(name, name_len, "charset"))
		w->have_charset = 1;
	if (buf_append(w->out, " ", 1) < 0)
		return -1;
	return mime_imap_string(w->out, val, val_len);
}

/* Write a plain parameter. */
static int pw_plain(struct pw *w, const struct mime_param *p)
{
	struct buf v;
	buf_init(&v, p->value_len + 1);
	int r = mime_param_value(p, &v);
	if (r == 0)
		r = pw_pair(w, p->name, p->name_len, 0, v.data != NULL ? v.data : "", v.len);
	buf_free(&v);
	return r;
}

/* Write the RFC 2231 group whose first member is ct->params[first], merged and decoded. */
static int pw_2231(struct pw *w, const struct mime_ctype *ct, size_t first)
{
	const struct mime_param *base = &ct->params[first];
	const struct mime_param *seg[MIME_PARAMS_MAX];
	size_t nseg = 0, total = 0;
	/* members in section order (insertion sort; "name*" counts as section 0) */
	for (size_t i = first; i < ct->nparams; i++) {
		const struct mime_param *p = &ct->params[i];
		if (!is_2231(p) || !same_base(p, base))
			continue;
		int sp = p->section < 0 ? 0 : p->section;
		size_t j = nseg;
		while (j > 0 && (seg[j - 1]->section < 0 ? 0 : seg[j - 1]->section) > sp)
			j--;
		if (j > 0 && (seg[j - 1]->section < 0 ? 0 : seg[j - 1]->section) == sp)
			continue;	/* duplicate section: the first one wins */
		memmove(&seg[j + 1], &seg[j], (nseg - j) * sizeof(seg[0]));
		seg[j] = p;
		nseg++;
		total += p->value_len;
	}

	struct buf raw, dec, tmp;
	buf_init(&raw, total + 1);
	buf_init(&dec, total * 4 + 64);
	buf_init(&tmp, total * 3 + 64);	/* a segment, or the %-encoded fallback */
	const char *cs = NULL;
	size_t cslen = 0, lang_end = 0;
	int r = -1, have_cs = 0;
	for (size_t i = 0; i < nseg; i++) {
		buf_reset(&tmp);
		if (mime_param_value(seg[i], &tmp) < 0)
			goto out;
		const char *t = tmp.data != NULL ? tmp.data : "";
		size_t tl = tmp.len, skip = 0;
		if (i == 0 && seg[i]->ext && (seg[i]->section <= 0)) {
			/* charset'language'value */
			const char *q1 = memchr(t, '\'', tl), *q2 = NULL;
			if (q1 != NULL)
				q2 = memchr(q1 + 1, '\'', tl - (size_t)(q1 - t) - 1);
			if (q2 != NULL) {
				have_cs = 1;
				cslen = (size_t)(q1 - t);
				lang_end = (size_t)(q2 - t) + 1;
				skip = lang_end;
				/* keep the charset'lang' prefix at the front of raw for fallback */
				if (buf_append(&raw, t, lang_end) < 0)
					goto out;
			}
		}
		if (seg[i]->ext ? pct_decode(t + skip, tl - skip, &raw) < 0
				: buf_append(&raw, t + skip, tl - skip) < 0)
			goto out;
	}
	const unsigned char *data = (const unsigned char *)(raw.data != NULL ? raw.data : "");
	if (!have_cs) {
		r = pw_pair(w, base->name, base->base_len, 0, (const char *)data, raw.len);
		goto out;
	}
	cs = raw.data;
	if (cslen == 0) {
		/* no charset named: take the octets as UTF-8 (US-ASCII is a subset) */
		cs = "utf-8";
		cslen = 5;
	}
	int cr = mime_charset_to_utf8(cs, cslen, data + lang_end, raw.len - lang_end, &dec);
	if (cr == 0) {
		r = pw_pair(w, base->name, base->base_len, 0, dec.data != NULL ? dec.data : "",
			    dec.len);
	} else {
		/* unknown charset: keep it as one RFC 2231 extended value */
		buf_reset(&tmp);
		if (buf_append(&tmp, raw.data, lang_end) < 0 ||
		    pct_encode(data + lang_end, raw.len - lang_end, &tmp) < 0)
			goto out;
		r = pw_pair(w, base->name, base->base_len, 1, tmp.data, tmp.len);
	}
out:
	buf_free(&raw);
	buf_free(&dec);
	buf_free(&tmp);
	return r;
}

/* Append the parameter list for IMAP (body-fld-param). 0 ok, -1 out full. */
int mime_params_write(const struct mime_ctype *ct, int default_charset, struct buf *out)
{
	struct pw w = { out, 1, 0 };
	for (size_t i = 0; i < ct->nparams; i++) {
		const struct mime_param *p = &ct->params[i];
		int grouped = 0, seen = 0;
		for (size_t j = 0; j < ct->nparams; j++) {
			if (!same_base(&ct->params[j], p))
				continue;
			if (is_2231(&ct->params[j]))
				grouped = 1;
			if (j < i)
				seen = 1;
		}
		if (grouped && seen)
			continue;	/* the group was written at its first member */
		if (grouped) {
			/* start the group at its first RFC 2231 member */
			size_t f = i;
			while (!is_2231(&ct->params[f]) || !same_base(&ct->params[f], p))
				f++;
			if (pw_2231(&w, ct, f) < 0)
				return -1;
		} else if (pw_plain(&w, p) < 0) {
			return -1;
		}
	}
	if (default_charset && !w.have_charset) {
		/* RFC 2046 4.1.2: text without a charset is US-ASCII */
		if (buf_appendstr(out, w.first ? "(" : " ") < 0 ||
		    buf_appendstr(out, "\"CHARSET\" \"US-ASCII\"") < 0)
			return -1;
		w.first = 0;
	}
	return buf_appendstr(out, w.first ? "NIL" : ")");
}
