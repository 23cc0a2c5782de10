/* mime-envelope.c - IMAP ENVELOPE (RFC 3501 7.4.2, RFC 9051 7.5.2) from an RFC 5322 header.
 *
 * envelope = "(" env-date SP env-subject SP env-from SP env-sender SP env-reply-to SP env-to
 *            SP env-cc SP env-bcc SP env-in-reply-to SP env-message-id ")"
 * address  = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"
 *
 * Address lists are parsed leniently (RFC 5322 3.4 plus the obsolete forms of 4.4):
 * phrases may contain '.', routes "<@a,@b:user@host>" become addr-adl "@a,@b", and an
 * addr-spec followed by a comment takes the comment as its name ("user@host (Real Name)").
 * Groups become (NIL NIL "name" NIL) ... (NIL NIL NIL NIL) as RFC 3501 prescribes; a group
 * that is never closed is closed at the end of the field. An address without '@' or without
 * a local part gets the placeholders "MISSING_DOMAIN" / "MISSING_MAILBOX" (Dovecot's), since
 * a NIL host would turn it into a group marker. Encoded-words stay as they are.
 * Fields are found by the shared reader (header.h), the one the SMTP From: check uses; the
 * first occurrence of each field is used (submission refuses a second From:).
 */
#include "mime-private.h"

#include <string.h>

#include "buf.h"

enum tok_type { T_END, T_ATOM, T_QSTR, T_DLIT, T_SPECIAL };

struct tok {
	enum tok_type type;
	const char *s;	/* ATOM/DLIT raw; QSTR inside the quotes; SPECIAL the character */
	size_t n;
};

/* Lexer over one field value; comments are skipped but the last one is remembered. */
struct lexer {
	const char *v;
	size_t n, p;
	const char *comment;
	size_t comment_len;
	int have_back;
	struct tok back;
};

/* Is c one of the RFC 5322 specials that structure an address list? */
static int is_addr_special(char c)
{
	return c == '<' || c == '>' || c == '@' || c == ',' || c == ';' || c == ':';
}

/* Next token (or the one pushed back). */
static void lex_next(struct lexer *lx, struct tok *t)
{
	if (lx->have_back) {
		*t = lx->back;
		lx->have_back = 0;
		return;
	}
	for (;;) {
		while (lx->p < lx->n && (lx->v[lx->p] == ' ' || lx->v[lx->p] == '\t' ||
					 lx->v[lx->p] == '\r' || lx->v[lx->p] == '\n'))
			lx->p++;
		if (lx->p >= lx->n) {
			t->type = T_END;
			t->s = lx->v + lx->n;
			t->n = 0;
			return;
		}
		char c = lx->v[lx->p];
		if (c != '(')
			break;
		/* comment, possibly nested, quoted-pairs inside */
		size_t depth = 1, s = ++lx->p;
		while (lx->p < lx->n && depth > 0) {
			char d = lx->v[lx->p];
			if (d == '\\')
				lx->p++;
			else if (d == '(')
				depth++;
			else if (d == ')')
				depth--;
			lx->p++;
		}
		size_t e = lx->p > lx->n ? lx->n : lx->p;
		if (depth == 0)
			e--;	/* the closing ')' */
		lx->comment = lx->v + s;
		lx->comment_len = e > s ? e - s : 0;
		if (lx->p > lx->n)
			lx->p = lx->n;
	}
	char c = lx->v[lx->p];
	if (c == '"') {
		size_t s = ++lx->p;
		while (lx->p < lx->n && lx->v[lx->p] != '"') {
			if (lx->v[lx->p] == '\\' && lx->p + 1 < lx->n)
				lx->p++;
			lx->p++;
		}
		t->type = T_QSTR;
		t->s = lx->v + s;
		t->n = lx->p - s;
		if (lx->p < lx->n)
			lx->p++;
		return;
	}
	if (c == '[') {
		size_t s = lx->p++;
		while (lx->p < lx->n && lx->v[lx->p] != ']') {
			if (lx->v[lx->p] == '\\' && lx->p + 1 < lx->n)
				lx->p++;
			lx->p++;
		}
		if (lx->p < lx->n)
			lx->p++;
		t->type = T_DLIT;
		t->s = lx->v + s;
		t->n = lx->p - s;
		return;
	}
	if (is_addr_special(c)) {
		t->type = T_SPECIAL;
		t->s = lx->v + lx->p++;
		t->n = 1;
		return;
	}
	size_t s = lx->p;
	while (lx->p < lx->n) {
		char d = lx->v[lx->p];
		if (d == ' ' || d == '\t' || d == '\r' || d == '\n' || d == '(' || d == '"' ||
		    d == '[' || is_addr_special(d))
			break;
		lx->p++;
	}
	t->type = T_ATOM;
	t->s = lx->v + s;
	t->n = lx->p - s;
}

/* Push one token back. */
static void lex_back(struct lexer *lx, const struct tok *t)
{
	lx->back = *t;
	lx->have_back = 1;
}

/* Is t the special character c? */
static int is_sp(const struct tok *t, char c)
{
	return t->type == T_SPECIAL && t->s[0] == c;
}

/* Append a token's text: quoted-pairs undone for quoted strings, CR/LF dropped. */
static int append_word(struct buf *b, const struct tok *t)
{
	for (size_t i = 0; i < t->n; i++) {
		char c = t->s[i];
		if (c == '\r' || c == '\n')
			continue;
		if (c == '\\' && t->type == T_QSTR && i + 1 < t->n)
			c = t->s[++i];
		if (buf_append(b, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* Address list writer state. */
struct aw {
	struct buf *out;
	size_t count;	/* address structures written */
	int err;
	struct buf name, adl, local, domain;
};

/* Write s as an nstring (NIL when NULL), unfolded and trimmed. */
static void aw_str(struct aw *w, const char *s, size_t n)
{
	int r = s == NULL ? buf_appendstr(w->out, "NIL")
			  : mime_imap_string_flags(w->out, s, n, MIME_STR_UNFOLD | MIME_STR_TRIM);
	if (r < 0)
		w->err = 1;
}

/* Write one address structure; NULL fields are NIL. */
static void aw_addr(struct aw *w, const char *name, size_t nl, const char *adl, size_t al,
		    const char *mbox, size_t ml, const char *host, size_t hl)
{
	if (buf_appendstr(w->out, w->count == 0 ? "((" : "(") < 0) {
		w->err = 1;
		return;
	}
	w->count++;
	aw_str(w, name, nl);
	if (buf_append(w->out, " ", 1) < 0)
		w->err = 1;
	aw_str(w, adl, al);
	if (buf_append(w->out, " ", 1) < 0)
		w->err = 1;
	aw_str(w, mbox, ml);
	if (buf_append(w->out, " ", 1) < 0)
		w->err = 1;
	aw_str(w, host, hl);
	if (buf_append(w->out, ")", 1) < 0)
		w->err = 1;
}

/* Write a mailbox from the collected name / adl / local / domain buffers. */
static void aw_mailbox(struct aw *w, const char *comment, size_t comment_len)
{
	const char *name = NULL;
	size_t nl = 0;
	if (w->name.len > 0) {
		name = w->name.data;
		nl = w->name.len;
	} else if (comment != NULL && comment_len > 0) {
		name = comment;	/* "user@host (Real Name)" */
		nl = comment_len;
	}
	aw_addr(w, name, nl, w->adl.len > 0 ? w->adl.data : NULL, w->adl.len,
		w->local.len > 0 ? w->local.data : "MISSING_MAILBOX",
		w->local.len > 0 ? w->local.len : 15,
		w->domain.len > 0 ? w->domain.data : "MISSING_DOMAIN",
		w->domain.len > 0 ? w->domain.len : 14);
}

/* Collect a domain (atoms, dots, literals) into w->domain; returns the token after it. */
static void read_domain(struct lexer *lx, struct aw *w, struct tok *t)
{
	lex_next(lx, t);
	while (t->type == T_ATOM || t->type == T_DLIT) {
		if (append_word(&w->domain, t) < 0)
			w->err = 1;
		lex_next(lx, t);
	}
}

/* After '<': [route ':'] local ['@' domain] ['>']. Leaves the token after it pushed back. */
static void read_angle(struct lexer *lx, struct aw *w)
{
	struct tok t;
	lex_next(lx, &t);
	if (is_sp(&t, '@')) {
		/* obs-route: "@a,@b:" becomes "@a,@b" */
		while (is_sp(&t, '@')) {
			if (buf_appendstr(&w->adl, w->adl.len > 0 ? ",@" : "@") < 0)
				w->err = 1;
			lex_next(lx, &t);
			while (t.type == T_ATOM || t.type == T_DLIT) {
				if (append_word(&w->adl, &t) < 0)
					w->err = 1;
				lex_next(lx, &t);
			}
			while (is_sp(&t, ','))
				lex_next(lx, &t);
		}
		if (is_sp(&t, ':'))
			lex_next(lx, &t);
	}
	while (t.type == T_ATOM || t.type == T_QSTR) {
		if (append_word(&w->local, &t) < 0)
			w->err = 1;
		lex_next(lx, &t);
	}
	if (is_sp(&t, '@')) {
		read_domain(lx, w, &t);
	}
	if (!is_sp(&t, '>'))
		lex_back(lx, &t);
}

/* Skip junk up to (not including) the next ',' or ';' or the end. */
static void skip_junk(struct lexer *lx)
{
	struct tok t;
	for (;;) {
		lex_next(lx, &t);
		if (t.type == T_END || is_sp(&t, ',') || is_sp(&t, ';')) {
			lex_back(lx, &t);
			return;
		}
	}
}

/* Write the address list in v[0..n) as "((...)(...))" or NIL. 0 ok, -1 out full. */
static int write_addr_list(struct buf *out, const char *v, size_t n, size_t *count_r)
{
	struct lexer lx;
	struct aw w;
	struct tok t;
	int in_group = 0;
	memset(&lx, 0, sizeof(lx));
	lx.v = v;
	lx.n = n;
	memset(&w, 0, sizeof(w));
	w.out = out;
	/* scratch: each is built from the value's own octets plus separators, so twice its
	 * length always fits; the caller's out is the only limit that can be reached */
	buf_init(&w.name, 2 * n + 16);
	buf_init(&w.adl, 2 * n + 16);
	buf_init(&w.local, 2 * n + 16);
	buf_init(&w.domain, 2 * n + 16);

	while (!w.err) {
		lex_next(&lx, &t);
		if (t.type == T_END)
			break;
		if (is_sp(&t, ','))
			continue;
		if (is_sp(&t, ';')) {
			if (in_group)
				aw_addr(&w, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
			in_group = 0;
			continue;
		}
		buf_reset(&w.name);
		buf_reset(&w.adl);
		buf_reset(&w.local);
		buf_reset(&w.domain);
		lx.comment = NULL;
		lx.comment_len = 0;
		/* phrase, or the local part of an addr-spec */
		while (t.type == T_ATOM || t.type == T_QSTR) {
			if ((w.name.len > 0 && buf_append(&w.name, " ", 1) < 0) ||
			    append_word(&w.name, &t) < 0 || append_word(&w.local, &t) < 0)
				w.err = 1;
			lex_next(&lx, &t);
		}
		if (is_sp(&t, '<')) {
			buf_reset(&w.local);
			read_angle(&lx, &w);
			aw_mailbox(&w, lx.comment, lx.comment_len);
			skip_junk(&lx);
		} else if (is_sp(&t, ':')) {
			if (!in_group) {
				const char *g = w.name.data != NULL ? w.name.data : "";
				aw_addr(&w, NULL, 0, NULL, 0, g, w.name.len, NULL, 0);
				in_group = 1;
			}
		} else if (is_sp(&t, '@')) {
			buf_reset(&w.name);
			read_domain(&lx, &w, &t);
			lex_back(&lx, &t);
			aw_mailbox(&w, lx.comment, lx.comment_len);
			skip_junk(&lx);
		} else {
			/* a bare word ("undisclosed-recipients") or stray token */
			if (w.local.len > 0) {
				buf_reset(&w.name);
				aw_mailbox(&w, lx.comment, lx.comment_len);
			}
			if (t.type != T_DLIT && !is_sp(&t, '>'))
				lex_back(&lx, &t);
		}
	}
	if (in_group && !w.err)
		aw_addr(&w, NULL, 0, NULL, 0, NULL, 0, NULL, 0);
	buf_free(&w.name);
	buf_free(&w.adl);
	buf_free(&w.local);
	buf_free(&w.domain);
	if (w.err)
		return -1;
	*count_r = w.count;
	return buf_appendstr(out, w.count > 0 ? ")" : "NIL");
}

/* Envelope field order (RFC 3501 7.4.2). */
enum env_field {
	E_DATE, E_SUBJECT, E_FROM, E_SENDER, E_REPLY_TO, E_TO, E_CC, E_BCC, E_IN_REPLY_TO,
	E_MESSAGE_ID, E_COUNT
};

static const char *const env_names[E_COUNT] = {
	"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To",
	"Message-ID",
};

/* Append the ENVELOPE of hdr[0..hdrlen). 0 ok, -1 out full. */
int mime_envelope(const char *hdr, size_t hdrlen, struct buf *out)
{
	struct hdr_field fields[E_COUNT], f;
	int have[E_COUNT] = { 0 };
	size_t pos = 0;
	while (hdr_next(hdr, hdrlen, &pos, &f)) {
		if (!f.has_colon)
			continue;
		for (size_t i = 0; i < E_COUNT; i++) {
			if (!have[i] && hdr_eq_ci(f.name, f.name_len, env_names[i])) {
				fields[i] = f;
				have[i] = 1;
				break;
			}
		}
	}
	if (buf_append(out, "(", 1) < 0)
		return -1;
	for (size_t i = 0; i < E_COUNT; i++) {
		if (i > 0 && buf_append(out, " ", 1) < 0)
			return -1;
		if (i == E_DATE || i == E_SUBJECT || i == E_IN_REPLY_TO || i == E_MESSAGE_ID) {
			int r = have[i] ? mime_imap_string_flags(out, fields[i].value,
								 fields[i].value_len,
								 MIME_STR_UNFOLD | MIME_STR_TRIM)
					: buf_appendstr(out, "NIL");
			if (r < 0)
				return -1;
			continue;
		}
		size_t count = 0, mark = out->len;
		if (have[i] && write_addr_list(out, fields[i].value, fields[i].value_len,
					       &count) < 0)
			return -1;
		if ((i == E_SENDER || i == E_REPLY_TO) && count == 0) {
			/* RFC 3501: absent or empty Sender / Reply-To repeat From */
			out->len = mark;
			if (out->data != NULL)
				out->data[mark] = '\0';
			if (have[E_FROM] && write_addr_list(out, fields[E_FROM].value,
							   fields[E_FROM].value_len, &count) < 0)
				return -1;
		}
		if (count == 0 && out->len == mark && buf_appendstr(out, "NIL") < 0)
			return -1;
	}
	return buf_append(out, ")", 1);
}
