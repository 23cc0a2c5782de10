/* header.h - the fields of an RFC 5322 header section, read one way for all of postino.
 *
 * The SMTP From: check, the MIME parser, ENVELOPE, SEARCH and SORT all find fields through
 * hdr_next(), so the address the submission check approved is the one IMAP shows: they can
 * never disagree on where a field starts, what its name is or where the header ends.
 *
 * How a field is read (RFC 5322 2.2, 3.6.8 and the obsolete syntax of 4.5):
 * - A line ends at LF; a CR before it belongs to the line end. A bare CR is not a line end
 *   (flagged: some readers treat it as one, so the SMTP check refuses it).
 * - A field is its first line plus every following line that starts with SP or HTAB (folding).
 * - The name is what comes before the first colon of the first line, with blanks before the
 *   colon removed ("From : x" is a From field, obs-optional). A name can never be folded:
 *   "From\r\n : x" is a line without a colon followed by a continuation, not a From field.
 * - The header ends at the first empty line ("\n" or "\r\n"), or at the end of the input.
 * Pure functions on caller memory: no allocation, no global state, safe on any thread. Every
 * call is linear in the bytes it reads.
 */
#ifndef POSTINO_HEADER_H
#define POSTINO_HEADER_H

#include <stddef.h>

struct buf;

enum hdr_flag {
	HDR_F_NO_COLON = 1 << 0,  /* the first line has no colon: not a field at all */
	HDR_F_BAD_NAME = 1 << 1,  /* name empty or not 1*ftext (printable ASCII but ':',
				   * RFC 5322 3.6.8), e.g. a first line starting with a blank */
	HDR_F_NUL = 1 << 2,       /* a NUL octet somewhere in the field */
	HDR_F_BARE_CR = 1 << 3,   /* a CR that is not followed by LF */
	HDR_F_OBS_WSP = 1 << 4,   /* blanks between name and colon (obsolete, RFC 5322 4.5) */
};

/* One header field. All pointers point into the header block given to hdr_next. */
struct hdr_field {
	const char *name;	/* name without blanks before the colon; whole line if no colon */
	size_t name_len;
	const char *value;	/* after the colon to the field's last line end, folds kept */
	size_t value_len;
	const char *raw;	/* the whole field: continuation lines and final line end too */
	size_t raw_len;
	int has_colon;
	unsigned int flags;	/* enum hdr_flag */
};

/* Next field of hdr[0..len) from *pos on (start with *pos = 0); stops at the empty line that
 * ends the header or at len. 1 a field (*f set, *pos moved past it), 0 the end. */
int hdr_next(const char *hdr, size_t len, size_t *pos, struct hdr_field *f);

/* First field called name (ASCII case-insensitive) in hdr[0..len); 1 found (*f set), 0 not. */
int hdr_find(const char *hdr, size_t len, const char *name, struct hdr_field *f);

/* Whether f is a field (it has a colon) called name, ASCII case-insensitive. */
int hdr_is(const struct hdr_field *f, const char *name);

/* ASCII case-insensitive equality of s[0..n) and the NUL-terminated lit. */
int hdr_eq_ci(const char *s, size_t n, const char *lit);

/* Length of the header section of msg[0..len) up to and including the empty line that ends
 * it; len when there is no empty line. */
size_t hdr_section_len(const char *msg, size_t len);

/* Append f's value to out unfolded (CR and LF removed) with leading and trailing blanks
 * removed, otherwise raw. 0 ok, -1 out is full. */
int hdr_value_unfold(const struct hdr_field *f, struct buf *out);

#endif
