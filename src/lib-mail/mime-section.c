/* mime-section.c - BODY[section] and BINARY[section] (RFC 3501 6.4.5, RFC 9051, RFC 3516).
 *
 * section-spec    = section-msgtext / (section-part ["." section-text])
 * section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
 * section-part    = nz-number *("." nz-number)
 * section-text    = section-msgtext / "MIME"
 *
 * Part numbers: the parts of a multipart are 1..n; a message that is not multipart has only
 * part 1, its body; below a message/rfc822 part the numbers continue into the encapsulated
 * message the same way. HEADER, TEXT and HEADER.FIELDS after part numbers are only meaningful
 * for a message/rfc822 part (they then address the encapsulated message); for other parts
 * the section does not exist. The header sections always include the blank line; one is
 * added for HEADER.FIELDS (which is built in the caller's buffer).
 */
#include "mime-private.h"
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Each part number descends at least one level, so more than this cannot name a part. */
#define SEC_NUMS_MAX (MIME_DEPTH_MAX + 2)
/* A part number above this cannot exist (MIME_PARTS_MAX); keeps the parse overflow-free. */
#define SEC_NUM_MAX 1000000

enum sec_kind { SK_BODY, SK_HEADER, SK_TEXT, SK_MIME, SK_FIELDS, SK_FIELDS_NOT };

struct sec {
	size_t nums[SEC_NUMS_MAX];
	size_t nnums;
	int missing;		/* syntactically fine but cannot exist */
	enum sec_kind kind;
	const char *list;	/* header-list contents, without the parentheses */
	size_t list_len;
};

/* Value of one hex digit, or -1. */
int mime_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Does s start with the keyword kw (case-insensitive)? Returns its length or 0. */
static size_t kw(const char *s, const char *word)
{
	size_t n = strlen(word);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != word[i])
			return 0;
	}
	return n;
}

/* RFC 3501 ASTRING-CHAR: CHAR except atom-specials, but ']' is allowed. */
static int is_astring_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\", c) == NULL;
}

/* Next name of a header-list at *p; 1 found, 0 end, -1 syntax error. */
static int list_next(const char *l, size_t n, size_t *p, const char **s_r, size_t *len_r,
		     int *quoted_r)
{
	size_t i = *p;
	while (i < n && l[i] == ' ')
		i++;
	if (i >= n)
		return 0;
	if (*p != 0 && i == *p)
		return -1;	/* names must be separated by SP */
	if (l[i] == '"') {
		size_t s = ++i;
		while (i < n && l[i] != '"') {
			if (l[i] == '\r' || l[i] == '\n')
				return -1;
			if (l[i] == '\\') {
				if (i + 1 >= n || (l[i + 1] != '"' && l[i + 1] != '\\'))
					return -1;
				i++;
			}
			i++;
		}
		if (i >= n)
			return -1;
		*s_r = l + s;
		*len_r = i - s;
		*quoted_r = 1;
		*p = i + 1;
		return 1;
	}
	size_t s = i;
	while (i < n && is_astring_char((unsigned char)l[i]))
		i++;
	if (i == s)
		return -1;
	*s_r = l + s;
	*len_r = i - s;
	*quoted_r = 0;
	*p = i;
	return 1;
}

/* Parse a section-spec. 0 ok, -1 syntax error. */
static int sec_parse(const char *s, struct sec *sp)
{
	size_t p = 0;
	memset(sp, 0, sizeof(*sp));
	sp->kind = SK_BODY;
	if (s[0] == '\0')
		return 0;
	while (s[p] >= '0' && s[p] <= '9') {
		if (s[p] == '0')
			return -1;	/* nz-number */
		size_t v = 0;
		while (s[p] >= '0' && s[p] <= '9') {
			if (v <= SEC_NUM_MAX)
				v = v * 10 + (size_t)(s[p] - '0');
			p++;
		}
		if (v > SEC_NUM_MAX || sp->nnums >= SEC_NUMS_MAX)
			sp->missing = 1;
		else
			sp->nums[sp->nnums++] = v;
		if (s[p] == '\0')
			return 0;
		if (s[p] != '.')
			return -1;
		p++;
		if (s[p] < '0' || s[p] > '9')
			break;
	}
	size_t n;
	int nums = p > 0;
	if ((n = kw(s + p, "HEADER.FIELDS.NOT")) != 0) {
		sp->kind = SK_FIELDS_NOT;
	} else if ((n = kw(s + p, "HEADER.FIELDS")) != 0) {
		sp->kind = SK_FIELDS;
	} else if ((n = kw(s + p, "HEADER")) != 0) {
		sp->kind = SK_HEADER;
	} else if ((n = kw(s + p, "TEXT")) != 0) {
		sp->kind = SK_TEXT;
	} else if (nums && (n = kw(s + p, "MIME")) != 0) {
		sp->kind = SK_MIME;
	} else {
		return -1;
	}
	p += n;
	if (sp->kind != SK_FIELDS && sp->kind != SK_FIELDS_NOT)
		return s[p] == '\0' ? 0 : -1;
	if (s[p] != ' ')
		return -1;
	while (s[p] == ' ')
		p++;
	if (s[p] != '(')
		return -1;
	size_t ls = ++p;
	int quoted = 0;
	while (s[p] != '\0' && (s[p] != ')' || quoted)) {
		if (quoted && s[p] == '\\' && s[p + 1] != '\0')
			p++;
		else if (s[p] == '"')
			quoted = !quoted;
		p++;
	}
	if (s[p] != ')' || s[p + 1] != '\0')
		return -1;
	sp->list = s + ls;
	sp->list_len = p - ls;
	/* validate: one or more names */
	size_t lp = 0, count = 0, nl;
	const char *nm;
	int q, r;
	while ((r = list_next(sp->list, sp->list_len, &lp, &nm, &nl, &q)) == 1)
		count++;
	return r < 0 || count == 0 ? -1 : 0;
}

/* The parts one number picks below a message-level part m. */
static const struct mime_part *msg_child(const struct mime_part *m, size_t k)
{
	if ((m->flags & MIME_PART_MULTIPART) == 0)
		return k == 1 ? m : NULL;
	const struct mime_part *c = m->children;
	for (size_t i = 1; c != NULL && i < k; i++)
		c = c->next;
	return c;
}

/* The part named by the numbers, or NULL. */
static const struct mime_part *sec_resolve(const struct mime_part *root, const struct sec *sp)
{
	const struct mime_part *p = msg_child(root, sp->nums[0]);
	for (size_t i = 1; p != NULL && i < sp->nnums; i++) {
		if ((p->flags & MIME_PART_MULTIPART) != 0) {
			const struct mime_part *c = p->children;
			for (size_t j = 1; c != NULL && j < sp->nums[i]; j++)
				c = c->next;
			p = c;
		} else if ((p->flags & MIME_PART_RFC822) != 0 && p->children != NULL) {
			p = msg_child(p->children, sp->nums[i]);
		} else {
			p = NULL;
		}
	}
	return p;
}

/* Is the field name f[0..n) in the header-list? */
static int list_has(const struct sec *sp, const char *f, size_t n)
{
	size_t lp = 0, nl;
	const char *nm;
	int q;
	while (list_next(sp->list, sp->list_len, &lp, &nm, &nl, &q) == 1) {
		size_t i = 0, j = 0;
		for (; i < nl && j < n; i++, j++) {
			unsigned char a = (unsigned char)nm[i], b = (unsigned char)f[j];
			if (q && a == '\\' && i + 1 < nl)
				a = (unsigned char)nm[++i];
			if (a >= 'A' && a <= 'Z')
				a = (unsigned char)(a - 'A' + 'a');
			if (b >= 'A' && b <= 'Z')
				b = (unsigned char)(b - 'A' + 'a');
			if (a != b)
				break;
		}
		if (i == nl && j == n)
			return 1;
	}
	return 0;
}

/* Build HEADER.FIELDS[.NOT] of the header hdr[0..len) into tmp. 0 ok, -1 tmp full. */
static int fields_build(const struct sec *sp, const char *hdr, size_t len, struct buf *tmp)
{
	struct hdr_field f;
	size_t pos = 0;
	buf_reset(tmp);
	while (hdr_next(hdr, len, &pos, &f)) {
		int match = f.has_colon && list_has(sp, f.name, f.name_len);
		if (match == (sp->kind == SK_FIELDS) && buf_append(tmp, f.raw, f.raw_len) < 0)
			return -1;
	}
	if (tmp->len > 0 && tmp->data[tmp->len - 1] != '\n' && buf_append(tmp, "\r\n", 2) < 0)
		return -1;
	return buf_append(tmp, "\r\n", 2);
}

/* Resolve a BODY[section] spec to the octets to send. */
int mime_section(const struct mime_part *root, const char *msg, size_t len, const char *section,
		 struct buf *tmp, const char **data_r, size_t *len_r)
{
	struct sec sp;
	*data_r = msg;
	*len_r = 0;
	if (sec_parse(section, &sp) < 0)
		return -1;
	if (sp.missing)
		return 1;
	const struct mime_part *p = root, *m = root;
	if (sp.nnums > 0) {
		p = sec_resolve(root, &sp);
		if (p == NULL)
			return 1;
		if (sp.kind == SK_BODY) {
			*data_r = msg + p->body_off;
			*len_r = p->body_len;
			return 0;
		}
		if (sp.kind == SK_MIME) {
			*data_r = msg + p->hdr_off;
			*len_r = p->hdr_len;
			return 0;
		}
		if ((p->flags & MIME_PART_RFC822) == 0 || p->children == NULL)
			return 1;
		m = p->children;
	} else if (sp.kind == SK_BODY) {
		*len_r = len;
		return 0;
	}
	switch (sp.kind) {
	case SK_HEADER:
		*data_r = msg + m->hdr_off;
		*len_r = m->hdr_len;
		return 0;
	case SK_TEXT:
		*data_r = msg + m->body_off;
		*len_r = m->body_len;
		return 0;
	case SK_FIELDS:
	case SK_FIELDS_NOT:
		if (fields_build(&sp, msg + m->hdr_off, m->hdr_len, tmp) < 0)
			return -2;
		*data_r = tmp->data;
		*len_r = tmp->len;
		return 0;
	default:
		return -1;
	}
}

/* Quoted-printable (RFC 2045 6.7): "=XX" (either case), soft line breaks "=" at the end of a
 * line, trailing blanks of each line removed; a malformed '=' stays as it is. Line ends are
 * kept as they are in the input. 0 ok, -1 out full. */
int mime_qp_decode(const char *in, size_t len, struct buf *out)
{
	size_t p = 0;
	while (p < len) {
		const char *nl = memchr(in + p, '\n', len - p);
		size_t le = nl != NULL ? (size_t)(nl - in) + 1 : len;
		size_t ce = le, eol_start;
		if (ce > p && in[ce - 1] == '\n')
			ce--;
		if (ce > p && in[ce - 1] == '\r' && ce < le)
			ce--;
		eol_start = ce;
		while (ce > p && (in[ce - 1] == ' ' || in[ce - 1] == '\t'))
			ce--;
		int soft = ce > p && in[ce - 1] == '=';
		if (soft)
			ce--;
		size_t run = p;
		for (size_t i = p; i < ce; i++) {
			if (in[i] != '=' || i + 2 >= ce ||
			    mime_hexval((unsigned char)in[i + 1]) < 0 ||
			    mime_hexval((unsigned char)in[i + 2]) < 0)
				continue;
			int hi = mime_hexval((unsigned char)in[i + 1]);
			int lo = mime_hexval((unsigned char)in[i + 2]);
			unsigned char c = (unsigned char)(hi * 16 + lo);
			if (buf_append(out, in + run, i - run) < 0 || buf_append(out, &c, 1) < 0)
				return -1;
			i += 2;
			run = i + 1;
		}
		if (buf_append(out, in + run, ce - run) < 0)
			return -1;
		if (!soft && buf_append(out, in + eol_start, le - eol_start) < 0)
			return -1;
		p = le;
	}
	return 0;
}

/* A part whose body holds other parts (a multipart, an opened message/rfc822). */
static int is_container(const struct mime_part *p)
{
	return (p->flags & MIME_PART_MULTIPART) != 0 ||
	       ((p->flags & MIME_PART_RFC822) != 0 && p->children != NULL);
}

/* The transfer encoding of a leaf: 0 none to undo (absent, 7bit, 8bit, binary), 1 base64,
 * 2 quoted-printable, -1 unknown. *f_r gets the field when there is one. */
static int leaf_cte(const struct mime_part *p, const char *msg, struct hdr_field *f_r)
{
	const char *tok;
	size_t tl;
	if (!hdr_find(msg + p->hdr_off, p->hdr_len, "Content-Transfer-Encoding", f_r) ||
	    !mime_cte_token(f_r->value, f_r->value_len, &tok, &tl) || hdr_eq_ci(tok, tl, "7bit") ||
	    hdr_eq_ci(tok, tl, "8bit") || hdr_eq_ci(tok, tl, "binary"))
		return 0;
	if (hdr_eq_ci(tok, tl, "base64"))
		return 1;
	if (hdr_eq_ci(tok, tl, "quoted-printable"))
		return 2;
	return -1;
}

static int binary_body(const struct mime_part *p, const char *msg, struct buf *out);

/* A part's header in the binary form: a decoded leaf says "Content-Transfer-Encoding:
 * binary" where its encoding was named. 0, -1 unknown encoding, -3 out is full. */
static int binary_header(const struct mime_part *p, const char *msg, struct buf *out)
{
	const char *h = msg + p->hdr_off;
	struct hdr_field f;
	int enc = is_container(p) ? 0 : leaf_cte(p, msg, &f);
	if (enc < 0)
		return -1;
	if (enc == 0)
		return buf_append(out, h, p->hdr_len) < 0 ? -3 : 0;
	size_t before = (size_t)(f.raw - h), after = before + f.raw_len;
	if (buf_append(out, h, before) < 0 ||
	    buf_appendstr(out, "Content-Transfer-Encoding: binary\r\n") < 0 ||
	    buf_append(out, h + after, p->hdr_len - after) < 0)
		return -3;
	return 0;
}

/* A part's body in the binary form (RFC 3516): a leaf's encoding undone; a container as it
 * is, except that each part inside gets the binary form. 0, -1 unknown encoding, -3 full. */
static int binary_body(const struct mime_part *p, const char *msg, struct buf *out)
{
	const char *body = msg + p->body_off;
	if (!is_container(p)) {
		struct hdr_field f;
		switch (leaf_cte(p, msg, &f)) {
		case 0:
			return buf_append(out, body, p->body_len) < 0 ? -3 : 0;
		case 1:
			return base64_decode_lenient(body, p->body_len, out) < 0 ? -3 : 0;
		case 2:
			return mime_qp_decode(body, p->body_len, out) < 0 ? -3 : 0;
		default:
			return -1;
		}
	}
	size_t pos = p->body_off, end = p->body_off + p->body_len;
	for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
		if (c->hdr_off < pos || c->body_off + c->body_len > end)
			break;   /* cannot happen: parts lie in order inside their parent */
		int r;
		if (buf_append(out, msg + pos, c->hdr_off - pos) < 0)
			return -3;
		if ((r = binary_header(c, msg, out)) != 0 || (r = binary_body(c, msg, out)) != 0)
			return r;
		pos = c->body_off + c->body_len;
	}
	return buf_append(out, msg + pos, end - pos) < 0 ? -3 : 0;
}

/* BINARY[section]: the part's body with its transfer encoding removed; a multipart or
 * message/rfc822 part with the encodings of the parts inside it removed (Dovecot does the
 * same; their headers then say "binary"). */
int mime_binary(const struct mime_part *root, const char *msg, size_t len, const char *section,
		struct buf *out)
{
	struct sec sp;
	if (sec_parse(section, &sp) < 0 || sp.kind != SK_BODY)
		return -2;
	if (sp.missing)
		return 1;
	if (sp.nnums == 0)
		return buf_append(out, msg, len) < 0 ? -3 : 0;
	const struct mime_part *p = sec_resolve(root, &sp);
	if (p == NULL)
		return 1;
	return binary_body(p, msg, out);
}

/* LF octets in p[0..n). */
static size_t count_lf(const char *p, size_t n)
{
	size_t c = 0;
	for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
		c++;
	return c;
}

/* Binary sizes of p's body and of every part below it into v[*i...], in pre-order (the order
 * mime_write_part visits them). Bottom-up, so each leaf is decoded once whatever its depth:
 * a container's binary body is its own octets with each part's octets replaced by that part's
 * binary header and body. 0, -1 unknown encoding, -3 out of memory. */
static int binary_sizes(const struct mime_part *p, const char *msg, struct mime_bsize *v,
			size_t nv, size_t *i)
{
	if (*i >= nv)
		return -3;
	struct mime_bsize *me = &v[(*i)++];
	if (!is_container(p)) {
		struct buf b;
		buf_init(&b, p->body_len + 1);   /* decoding never makes a body longer */
		int r = binary_body(p, msg, &b);
		me->len = b.len;
		me->lines = count_lf(b.data ? b.data : "", b.len);
		buf_free(&b);
		return r;
	}
	me->len = p->body_len;
	me->lines = p->lines;
	for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
		struct mime_bsize *cs = *i < nv ? &v[*i] : NULL;
		int r = binary_sizes(c, msg, v, nv, i);
		if (r != 0)
			return r;
		size_t hlines = count_lf(msg + c->hdr_off, c->hdr_len), hlen = c->hdr_len;
		struct hdr_field f;
		if (!is_container(c) && leaf_cte(c, msg, &f) > 0) {
			hlen = hlen - f.raw_len + strlen("Content-Transfer-Encoding: binary\r\n");
			hlines = hlines - count_lf(f.raw, f.raw_len) + 1;
		}
		me->len = me->len - (c->hdr_len + c->body_len) + hlen + cs->len;
		me->lines = me->lines - (count_lf(msg + c->hdr_off, c->hdr_len) + c->lines) +
			    hlines + cs->lines;
	}
	return 0;
}

/* Parts in the subtree of p. */
static size_t subtree_count(const struct mime_part *p)
{
	size_t n = 1;
	for (const struct mime_part *c = p->children; c != NULL; c = c->next)
		n += subtree_count(c);
	return n;
}

/* See mime.h. */
int mime_bodypartstructure(const struct mime_part *root, const char *msg, size_t len,
			   const char *section, int binary, struct buf *out)
{
	struct sec sp;
	if (sec_parse(section, &sp) < 0 || sp.kind != SK_BODY)
		return -2;
	if (sp.missing)
		return 1;
	const struct mime_part *p = sp.nnums == 0 ? root : sec_resolve(root, &sp);
	if (p == NULL)
		return 1;
	if (!binary)
		return mime_write_part(p, msg, 1, NULL, out) < 0 ? -3 : 0;
	size_t n = subtree_count(p), i = 0;
	struct mime_bsize *v = calloc(n, sizeof(*v));
	if (v == NULL)
		return -3;
	(void)len;
	int r = binary_sizes(p, msg, v, n, &i);
	if (r == 0)
		r = mime_write_part(p, msg, 1, v, out) < 0 ? -3 : 0;
	free(v);
	return r;
}

/* mime_binary, then a "text" leaf whose charset is neither UTF-8 nor US-ASCII converted to
 * UTF-8 (see mime.h). */
int mime_text_utf8(const struct mime_part *root, const char *msg, size_t len, const char *section,
		   struct buf *out)
{
	size_t start = out->len;
	int r = mime_binary(root, msg, len, section, out);
	struct sec sp;
	if (r != 0 || out->len == start || sec_parse(section, &sp) < 0 || sp.nnums == 0)
		return r;
	const struct mime_part *p = sec_resolve(root, &sp);
	struct hdr_field f;
	if (p == NULL || (p->flags & (MIME_PART_MULTIPART | MIME_PART_RFC822)) != 0 ||
	    !hdr_find(msg + p->hdr_off, p->hdr_len, "Content-Type", &f))
		return 0;
	struct mime_ctype *ct = malloc(sizeof(*ct));
	if (ct == NULL)
		return 0;
	struct buf cs, conv;
	buf_init(&cs, MIME_CHARSET_NAME_MAX);
	buf_init(&conv, out->max);
	const struct mime_param *cp;
	if (mime_ctype_parse(f.value, f.value_len, 1, ct) == 0 &&
	    hdr_eq_ci(ct->type, ct->type_len, "text") &&
	    (cp = mime_ctype_param(ct, "charset")) != NULL && mime_param_value(cp, &cs) == 0 &&
	    cs.len > 0 && !hdr_eq_ci(cs.data, cs.len, "utf-8") &&
	    !hdr_eq_ci(cs.data, cs.len, "us-ascii") &&
	    mime_charset_to_utf8(cs.data, cs.len, (const unsigned char *)out->data + start,
				 out->len - start, &conv) == 0) {
		out->len = start;   /* replace the part's octets by their UTF-8 form */
		if (buf_append(out, conv.data ? conv.data : "", conv.len) < 0)
			r = -3;
	}
	buf_free(&cs);
	buf_free(&conv);
	free(ct);
	return r;
}
