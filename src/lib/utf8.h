/* utf8.h - the one UTF-8 validator and decoder, and UTF-8 output.
 *
 * Well-formed means RFC 3629 (The Unicode Standard 3.9, table 3-7): every Unicode scalar value in its shortest
 * form, so no overlong forms (C0 AF, E0 80 AF, F0 80 80 AF), no surrogates (ED A0 80..ED BF BF),
 * nothing above U+10FFFF (F4 90 80 80 and up, F5..FF), no lone continuation octets and no
 * sequence cut short. U+0000 and the C1 controls are well-formed; a caller that must refuse them
 * says so with a flag. Pure functions: no allocation except in utf8_append, no global state.
 */
#ifndef POSTINO_UTF8_H
#define POSTINO_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Extra refusals for utf8_decode and utf8_valid_prefix (bitwise or). */
enum utf8_flags {
	/* U+0000: a C string would end there (modified UTF-7 mailbox names, RFC 3501 5.1.3) */
	UTF8_NO_NUL = 1 << 0,
	/* U+0080..U+009F, the C1 controls: a terminal obeys some of them (CSI moves the cursor),
	 * so text for log lines and displays escapes them like C0 controls */
	UTF8_NO_C1 = 1 << 1,
};

/* Longest sequence, in octets. */
#define UTF8_SEQ_MAX 4

/* The length (2-4) of a multi-octet sequence led by octet c, with the range [*lo_r, *hi_r] its
 * second octet must fall in (the later ones are 0x80..0xBF); 0 if c cannot lead one (ASCII, a
 * continuation octet, C0, C1, F5..FF). For parsers that see one octet at a time; the ranges are
 * the whole of the overlong, surrogate and U+10FFFF checks. */
static inline size_t utf8_lead(unsigned char c, unsigned char *lo_r, unsigned char *hi_r);

/* Decode the sequence at p[0..avail): its length (1-4), and its code point in *cp_r (cp_r may be
 * NULL); 0 if it is malformed, cut short by avail, or refused by flags (enum utf8_flags), and
 * when avail is 0. Reads octets in order and stops at the first one out of range. */
static inline size_t utf8_decode(const unsigned char *p, size_t avail, unsigned flags,
				 uint32_t *cp_r);

/* Octets in the longest well-formed prefix of p[0..len) (len itself if all of it is). */
size_t utf8_valid_prefix(const unsigned char *p, size_t len, unsigned flags);

/* Characters in s[0..len), counted as octets that are not continuation octets: exact for
 * well-formed text; in malformed text each stray lead or ASCII octet counts as one. */
size_t utf8_chars(const unsigned char *s, size_t len);

/* Is c a continuation octet (10xxxxxx), one that cannot start a character? */
static inline int utf8_is_continuation(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

/* Write code point cp (< 0x110000; a surrogate is written as it is) as UTF-8 into out;
 * returns its length (1-4). */
size_t utf8_encode(uint32_t cp, unsigned char out[UTF8_SEQ_MAX]);

/* Append code point cp (a Unicode scalar value) as UTF-8. 0 ok, -1 out is full. */
int utf8_append(struct buf *out, uint32_t cp);

/* Inline, and straight-line per length: casefolding and the parsers call these once per
 * character, and SEARCH folds whole message bodies. */

/* Length of the sequence led by c and the range of its second octet (RFC 3629 section 4). */
static inline size_t utf8_lead(unsigned char c, unsigned char *lo_r, unsigned char *hi_r)
{
	*lo_r = 0x80;
	*hi_r = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef) {
		if (c == 0xe0)
			*lo_r = 0xa0;   /* below is an overlong form of U+0000..U+07FF */
		else if (c == 0xed)
			*hi_r = 0x9f;   /* above are the surrogates U+D800..U+DFFF */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (c == 0xf0)
			*lo_r = 0x90;   /* below is an overlong form of U+0000..U+FFFF */
		else if (c == 0xf4)
			*hi_r = 0x8f;   /* above is beyond U+10FFFF */
		return 4;
	}
	return 0;   /* 0x80..0xc1 (continuation, overlong 2-octet lead) or 0xf5..0xff */
}

/* Decode one sequence (see above). */
static inline size_t utf8_decode(const unsigned char *p, size_t avail, unsigned flags,
				 uint32_t *cp_r)
{
	unsigned char lo, hi;
	uint32_t cp;
	size_t n;
	if (avail == 0)
		return 0;
	if (p[0] < 0x80) {
		if (p[0] == 0 && (flags & UTF8_NO_NUL))
			return 0;
		if (cp_r != NULL)
			*cp_r = p[0];
		return 1;
	}
	n = utf8_lead(p[0], &lo, &hi);
	if (n == 0 || avail < n || p[1] < lo || p[1] > hi)
		return 0;
	cp = ((p[0] & (0x7fu >> n)) << 6) | (p[1] & 0x3fu);   /* the lead has 5, 4 or 3 bits */
	if (n > 2) {
		if (!utf8_is_continuation(p[2]))
			return 0;
		cp = (cp << 6) | (p[2] & 0x3fu);
		if (n > 3) {
			if (!utf8_is_continuation(p[3]))
				return 0;
			cp = (cp << 6) | (p[3] & 0x3fu);
		}
	}
	if ((flags & UTF8_NO_C1) && cp <= 0x9f)
		return 0;
	if (cp_r != NULL)
		*cp_r = cp;
	return n;
}

#endif
