/* imap-utf7.h - mailbox names in modified UTF-7 (RFC 3501 section 5.1.3).
 *
 * Both directions are strict, so every mailbox has exactly one encoded name: the encoder emits
 * the canonical form, and the decoder refuses anything else (bytes outside printable ASCII,
 * base64 runs that encode printable ASCII, adjacent runs that should have been one, "&" not
 * written as "&-", leftover or nonzero padding bits, unterminated runs, broken surrogate pairs,
 * U+0000). The UTF-8 side must be well-formed (RFC 3629: no overlongs, surrogates or values
 * above U+10FFFF).
 */
#ifndef POSTINO_IMAP_UTF7_H
#define POSTINO_IMAP_UTF7_H

#include "buf.h"

/* Append the modified UTF-7 form of the UTF-8 string in. 0 ok; -1 (out unchanged) for invalid
 * UTF-8 or when out is full. */
int imap_utf8_to_mutf7(const char *in, struct buf *out);
/* Append the UTF-8 form of the modified UTF-7 string in. 0 ok; -1 (out unchanged) for an
 * invalid or non-canonical encoding or when out is full. */
int imap_mutf7_to_utf8(const char *in, struct buf *out);
/* 1 if in is a valid, canonical modified UTF-7 name, else 0. */
int imap_mutf7_is_valid(const char *in);

#endif
