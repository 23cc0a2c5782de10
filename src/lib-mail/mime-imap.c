/* mime-imap.c - IMAP strings and BODY / BODYSTRUCTURE (RFC 3501 7.4.2, RFC 9051 7.5.2).
 *
 * body            = "(" (body-type-1part / body-type-mpart) ")"
 * body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
 * body-type-1part = (body-type-basic / body-type-msg / body-type-text) [SP body-ext-1part]
 * body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP octets
 *
 * Choices where the RFCs leave room (Dovecot's behaviour unless noted):
 * - no or invalid Content-Type: "TEXT" "PLAIN" ("CHARSET" "US-ASCII") (RFC 2045 5.2);
 *   text/ * without a charset parameter gets ("CHARSET" "US-ASCII") appended (RFC 2046 4.1.2);
 * - no Content-Transfer-Encoding, or one that is not a token: "7BIT";
 * - a multipart without children (no boundary, or none found) gets one empty text/plain child,
 *   since the grammar needs at least one body;
 * - body-fld-md5 is always NIL; body-fld-lang is always a parenthesised list;
 * - body-fld-lines counts the LF octets of the body (a last line without LF is not counted).
 * The writer recurses once per nesting level (<= MIME_DEPTH_MAX + 1 levels); the large
 * parameter arrays live in noinline helpers so that they are not on the stack while it does.
 */
#include "mime-private.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"

#define NOINLINE __attribute__((noinline))

/* Append s[0..len) as an IMAP quoted string or literal, transformed per flags. */
int mime_imap_string_flags(struct buf *out, const char *s, size_t len, unsigned int flags)
{
	size_t b = 0, e = len;
	if (flags & MIME_STR_TRIM) {
		for (; b < e; b++) {
			char c = s[b];
			if (!(c == ' ' || c == '\t' ||
			      ((flags & MIME_STR_UNFOLD) && (c == '\r' || c == '\n'))))
				break;
		}
		for (; e > b; e--) {
			char c = s[e - 1];
			if (!(c == ' ' || c == '\t' ||
			      ((flags & MIME_STR_UNFOLD) && (c == '\r' || c == '\n'))))
				break;
		}
	}
	size_t n = 0, specials = 0;
	int quotable = 1;
	for (size_t i = b; i < e; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0' || ((flags & MIME_STR_UNFOLD) && (c == '\r' || c == '\n')))
			continue;
		n++;
		if (c == '\r' || c == '\n' || c >= 0x80)
			quotable = 0;
		else if (c == '"' || c == '\\')
			specials++;
	}
	char head[32];
	size_t hlen = 1, total;
	if (quotable) {
		head[0] = '"';
		total = n + specials + 2;
	} else {
		int r = snprintf(head, sizeof(head), "{%zu}\r\n", n);
		hlen = (size_t)r;
		total = hlen + n;
	}
	if (total < n || buf_reserve(out, total) < 0)
		return -1;
	char *d = out->data + out->len;
	memcpy(d, head, hlen);
	d += hlen;
	for (size_t i = b; i < e; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0' || ((flags & MIME_STR_UNFOLD) && (c == '\r' || c == '\n')))
			continue;
		if ((flags & MIME_STR_UPPER) && c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		if (quotable && (c == '"' || c == '\\'))
			*d++ = '\\';
		*d++ = (char)c;
	}
	if (quotable)
		*d++ = '"';
	out->len = (size_t)(d - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* Append s[0..len) as an IMAP string (quoted when possible, else a literal). */
int mime_imap_string(struct buf *out, const char *s, size_t len)
{
	return mime_imap_string_flags(out, s, len, 0);
}

/* Append s[0..len) as an IMAP string, or NIL for NULL. */
int mime_imap_nstring(struct buf *out, const char *s, size_t len)
{
	if (s == NULL)
		return buf_appendstr(out, "NIL");
	return mime_imap_string_flags(out, s, len, 0);
}

/* The Content-* fields of one part header (first occurrence of each). */
struct part_fields {
	struct hdr_field ctype, cte, id, desc, dsp, lang, loc;
	int has_ctype, has_cte, has_id, has_desc, has_dsp, has_lang, has_loc;
};

/* Collect the Content-* fields of hdr[0..len). */
static void fields_collect(const char *hdr, size_t len, struct part_fields *pf)
{
	struct hdr_field f;
	size_t pos = 0;
	memset(pf, 0, sizeof(*pf));
	while (hdr_next(hdr, len, &pos, &f)) {
		if (!f.has_colon || f.name_len < 8 || !hdr_eq_ci(f.name, 8, "content-"))
			continue;
		const char *n = f.name + 8;
		size_t nl = f.name_len - 8;
		struct hdr_field *dst = NULL;
		int *has = NULL;
		if (hdr_eq_ci(n, nl, "type")) {
			dst = &pf->ctype;
			has = &pf->has_ctype;
		} else if (hdr_eq_ci(n, nl, "transfer-encoding")) {
			dst = &pf->cte;
			has = &pf->has_cte;
		} else if (hdr_eq_ci(n, nl, "id")) {
			dst = &pf->id;
			has = &pf->has_id;
		} else if (hdr_eq_ci(n, nl, "description")) {
			dst = &pf->desc;
			has = &pf->has_desc;
		} else if (hdr_eq_ci(n, nl, "disposition")) {
			dst = &pf->dsp;
			has = &pf->has_dsp;
		} else if (hdr_eq_ci(n, nl, "language")) {
			dst = &pf->lang;
			has = &pf->has_lang;
		} else if (hdr_eq_ci(n, nl, "location")) {
			dst = &pf->loc;
			has = &pf->has_loc;
		}
		if (dst != NULL && !*has) {
			*dst = f;
			*has = 1;
		}
	}
}

/* Append a field's value as an nstring (unfolded, trimmed), NIL when absent. */
static int write_nfield(struct buf *out, int has, const struct hdr_field *f)
{
	if (!has)
		return buf_appendstr(out, "NIL");
	return mime_imap_string_flags(out, f->value, f->value_len,
				      MIME_STR_UNFOLD | MIME_STR_TRIM);
}

/* body-fld-dsp: ("TYPE" params) or NIL. */
static NOINLINE int write_dsp(struct buf *out, const struct part_fields *pf)
{
	struct mime_ctype ct;
	if (!pf->has_dsp || mime_ctype_parse(pf->dsp.value, pf->dsp.value_len, 0, &ct) < 0)
		return buf_appendstr(out, "NIL");
	if (buf_append(out, "(", 1) < 0 ||
	    mime_imap_string_flags(out, ct.type, ct.type_len, MIME_STR_UPPER) < 0 ||
	    buf_append(out, " ", 1) < 0 || mime_params_write(&ct, 0, out) < 0)
		return -1;
	return buf_append(out, ")", 1);
}

/* body-fld-lang: ("tag" ...) from the comma-separated Content-Language, or NIL. */
static int write_lang(struct buf *out, const struct part_fields *pf)
{
	if (!pf->has_lang)
		return buf_appendstr(out, "NIL");
	const char *v = pf->lang.value;
	size_t n = pf->lang.value_len, p = 0, count = 0, depth = 0;
	while (p < n) {
		unsigned char c = (unsigned char)v[p];
		if (depth > 0 || c == '(') {
			/* comment */
			if (c == '\\' && depth > 0)
				p++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			p++;
			continue;
		}
		if (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' ||
		    c == '"' || c == ')') {
			p++;
			continue;
		}
		size_t s = p;
		while (p < n && v[p] != ',' && v[p] != ' ' && v[p] != '\t' && v[p] != '\r' &&
		       v[p] != '\n' && v[p] != '(' && v[p] != ';' && v[p] != '"' && v[p] != ')')
			p++;
		if (buf_appendstr(out, count == 0 ? "(" : " ") < 0 ||
		    mime_imap_string(out, v + s, p - s) < 0)
			return -1;
		count++;
	}
	return buf_appendstr(out, count == 0 ? "NIL" : ")");
}

/* " dsp lang loc": the extension data after md5 (1part) or params (mpart). */
static int write_ext_tail(struct buf *out, const struct part_fields *pf)
{
	if (buf_append(out, " ", 1) < 0 || write_dsp(out, pf) < 0 ||
	    buf_append(out, " ", 1) < 0 || write_lang(out, pf) < 0 ||
	    buf_append(out, " ", 1) < 0)
		return -1;
	return write_nfield(out, pf->has_loc, &pf->loc);
}

/* The empty text/plain body written for a multipart that has no parts. */
static int write_empty(struct buf *out, int extended)
{
	if (buf_appendstr(out, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL "
			       "\"7BIT\" 0 0") < 0)
		return -1;
	if (extended && buf_appendstr(out, " NIL NIL NIL NIL") < 0)
		return -1;
	return buf_append(out, ")", 1);
}

/* " SUBTYPE [params dsp lang loc]" of a multipart, after its children. */
static NOINLINE int write_mpart_tail(struct buf *out, const struct part_fields *pf,
				     int extended)
{
	struct mime_ctype ct;
	if (!pf->has_ctype || mime_ctype_parse(pf->ctype.value, pf->ctype.value_len, 1, &ct) < 0) {
		/* cannot happen: the parser only marks parsable multiparts; stay valid anyway */
		ct.subtype = "MIXED";
		ct.subtype_len = 5;
		ct.nparams = 0;
	}
	if (buf_append(out, " ", 1) < 0 ||
	    mime_imap_string_flags(out, ct.subtype, ct.subtype_len, MIME_STR_UPPER) < 0)
		return -1;
	if (!extended)
		return 0;
	if (buf_append(out, " ", 1) < 0 || mime_params_write(&ct, 0, out) < 0)
		return -1;
	return write_ext_tail(out, pf);
}

/* "TYPE" "SUBTYPE" params id desc enc octets of a leaf; *text_r says it is text/ *. */
static NOINLINE int write_leaf_head(struct buf *out, const struct mime_part *p,
				    const struct part_fields *pf, size_t body_len, int *text_r)
{
	struct mime_ctype ct;
	int ct_ok = pf->has_ctype && (p->flags & MIME_PART_FORCED_TEXT) == 0 &&
		    mime_ctype_parse(pf->ctype.value, pf->ctype.value_len, 1, &ct) == 0;
	int r;
	*text_r = 0;
	if ((p->flags & MIME_PART_RFC822) != 0 && !ct_ok) {
		/* message/rfc822 by default, inside multipart/digest */
		r = buf_appendstr(out, "\"MESSAGE\" \"RFC822\" NIL");
	} else if (ct_ok) {
		*text_r = (p->flags & MIME_PART_RFC822) == 0 &&
			  hdr_eq_ci(ct.type, ct.type_len, "text");
		r = 0;
		if (mime_imap_string_flags(out, ct.type, ct.type_len, MIME_STR_UPPER) < 0 ||
		    buf_append(out, " ", 1) < 0 ||
		    mime_imap_string_flags(out, ct.subtype, ct.subtype_len, MIME_STR_UPPER) < 0 ||
		    buf_append(out, " ", 1) < 0 || mime_params_write(&ct, *text_r, out) < 0)
			r = -1;
	} else {
		*text_r = 1;
		r = buf_appendstr(out, "\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")");
	}
	if (r < 0 || buf_append(out, " ", 1) < 0 || write_nfield(out, pf->has_id, &pf->id) < 0 ||
	    buf_append(out, " ", 1) < 0 || write_nfield(out, pf->has_desc, &pf->desc) < 0 ||
	    buf_append(out, " ", 1) < 0)
		return -1;
	const char *tok;
	size_t tl;
	if (pf->has_cte && mime_cte_token(pf->cte.value, pf->cte.value_len, &tok, &tl))
		r = mime_imap_string_flags(out, tok, tl, MIME_STR_UPPER);
	else
		r = buf_appendstr(out, "\"7BIT\"");
	if (r < 0)
		return -1;
	return buf_appendf(out, " %zu", body_len);
}

/* Append body (one parenthesised part with everything below it); bs as mime_write_part's,
 * *k the index of p in it. */
static int write_part(const struct mime_part *p, const char *msg, int extended,
		      const struct mime_bsize *bs, size_t *k, struct buf *out)
{
	struct part_fields pf;
	size_t me = (*k)++;
	size_t body_len = bs ? bs[me].len : p->body_len, lines = bs ? bs[me].lines : p->lines;
	fields_collect(msg + p->hdr_off, p->hdr_len, &pf);
	if (buf_append(out, "(", 1) < 0)
		return -1;
	if ((p->flags & MIME_PART_MULTIPART) != 0) {
		if (p->children == NULL && write_empty(out, extended) < 0)
			return -1;
		for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
			if (write_part(c, msg, extended, bs, k, out) < 0)
				return -1;
		}
		if (write_mpart_tail(out, &pf, extended) < 0)
			return -1;
		return buf_append(out, ")", 1);
	}
	int text;
	if (write_leaf_head(out, p, &pf, body_len, &text) < 0)
		return -1;
	if ((p->flags & MIME_PART_RFC822) != 0 && p->children != NULL) {
		const struct mime_part *m = p->children;
		if (buf_append(out, " ", 1) < 0 ||
		    mime_envelope(msg + m->hdr_off, m->hdr_len, out) < 0 ||
		    buf_append(out, " ", 1) < 0 || write_part(m, msg, extended, bs, k, out) < 0 ||
		    buf_appendf(out, " %zu", lines) < 0)
			return -1;
	} else if (text && buf_appendf(out, " %zu", lines) < 0) {
		return -1;
	}
	if (extended && (buf_appendstr(out, " NIL") < 0 || write_ext_tail(out, &pf) < 0))
		return -1;
	return buf_append(out, ")", 1);
}

/* See mime-private.h. */
int mime_write_part(const struct mime_part *p, const char *msg, int extended,
		    const struct mime_bsize *bs, struct buf *out)
{
	size_t k = 0;
	return write_part(p, msg, extended, bs, &k, out);
}

/* Append BODYSTRUCTURE / BODY of the whole message. */
int mime_bodystructure(const struct mime_part *root, const char *msg, int extended,
		       struct buf *out)
{
	return mime_write_part(root, msg, extended, NULL, out);
}
