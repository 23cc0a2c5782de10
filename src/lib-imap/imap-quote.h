/* imap-quote.h - writing IMAP strings in responses (RFC 3501 / RFC 9051 "astring", "nstring",
 * "string", "literal", RFC 3516 "literal8").
 *
 * Each function appends to a bounded buf and either succeeds completely or returns -1 leaving
 * out exactly as it was (out full or out of memory). The form chosen is the simplest that can
 * carry the bytes: an atom where allowed, else a quoted string, else a literal "{n}\r\n...".
 * Quoted strings are 7-bit only (IMAP4rev1 clients without UTF8=ACCEPT); 8-bit text goes as a
 * literal, which every client accepts.
 */
#ifndef POSTINO_IMAP_QUOTE_H
#define POSTINO_IMAP_QUOTE_H

#include <stddef.h>

#include "buf.h"

/* s[0..len) as an astring: atom if it is one (and not "NIL", which a client could read as
 * nil), else quoted, else literal. */
int imap_append_astring(struct buf *out, const char *s, size_t len);
/* NIL when s is NULL, else s[0..len) as a string (quoted or literal, never an atom). */
int imap_append_nstring(struct buf *out, const char *s, size_t len);
/* s[0..len) quoted with '"' and '\' escaped; a literal when it holds CR, LF, NUL or 8-bit
 * bytes (which a quoted string cannot carry). */
int imap_append_quoted(struct buf *out, const char *s, size_t len);
/* s[0..len) as a literal "{n}\r\n..." or, with literal8, "~{n}\r\n..." (RFC 3516; the only form
 * that may carry NUL bytes, and only where the client asked for BINARY). */
int imap_append_literal(struct buf *out, const char *s, size_t len, int literal8);

#endif
