/* imap-quote.c - writing IMAP atoms, quoted strings and literals (see imap-quote.h). */
#include "imap-quote.h"

#include <stdint.h>
#include <string.h>

/* ASTRING-CHAR (RFC 3501 section 9): ATOM-CHAR or ']'. */
static int is_astring_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\", c) == NULL;
}

/* 1 if s[0..len) may be sent as a quoted string (TEXT-CHARs, 7-bit, no NUL). */
static int can_quote(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			return 0;
	}
	return 1;
}

/* Undo a partial append. */
static void truncate_to(struct buf *out, size_t len)
{
	out->len = len;
	if (out->data != NULL)
		out->data[len] = '\0';
}

/* Append a literal. */
int imap_append_literal(struct buf *out, const char *s, size_t len, int literal8)
{
	size_t start = out->len;
	if (buf_appendf(out, "%s{%zu}\r\n", literal8 ? "~" : "", len) < 0 ||
	    buf_append(out, s, len) < 0) {
		truncate_to(out, start);
		return -1;
	}
	return 0;
}

/* Append a quoted string (or a literal when quoting cannot carry the bytes). */
int imap_append_quoted(struct buf *out, const char *s, size_t len)
{
	size_t extra = 2;
	if (!can_quote(s, len))
		return imap_append_literal(out, s, len, 0);
	for (size_t i = 0; i < len; i++)
		extra += s[i] == '"' || s[i] == '\\';
	if (len > SIZE_MAX - extra || buf_reserve(out, len + extra) < 0)
		return -1;
	out->data[out->len++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out->data[out->len++] = '\\';
		out->data[out->len++] = s[i];
	}
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
	return 0;
}

/* Append an astring. */
int imap_append_astring(struct buf *out, const char *s, size_t len)
{
	int atom = len > 0 && !(len == 3 && (s[0] | 0x20) == 'n' && (s[1] | 0x20) == 'i' &&
				(s[2] | 0x20) == 'l');
	for (size_t i = 0; atom && i < len; i++)
		atom = is_astring_char((unsigned char)s[i]);
	if (atom)
		return buf_append(out, s, len);
	return imap_append_quoted(out, s, len);
}

/* Append an nstring. */
int imap_append_nstring(struct buf *out, const char *s, size_t len)
{
	if (s == NULL)
		return buf_append(out, "NIL", 3);
	return imap_append_quoted(out, s, len);
}
