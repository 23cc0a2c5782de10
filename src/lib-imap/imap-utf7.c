/* imap-utf7.c - modified UTF-7 mailbox names (RFC 3501 section 5.1.3); see imap-utf7.h.
 *
 * Modified UTF-7 differs from RFC 2152 UTF-7: '&' starts a shift (written "&-" for itself), ','
 * replaces '/' in the base64 alphabet, there is no padding, every shift ends with '-', and
 * printable ASCII (0x20..0x7e) must always represent itself.
 */
#include "imap-utf7.h"
#include "base64.h"
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/* Printable US-ASCII: the characters that represent themselves. */
static int is_printable(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* Append the modified base64 character for the low 6 bits of v. */
static int put_b64(struct buf *out, unsigned v)
{
	char c = base64_char(v, BASE64_MUTF7);
	return buf_append(out, &c, 1);
}

/* Undo a partial append. */
static void truncate_to(struct buf *out, size_t len)
{
	if (out == NULL)
		return;
	out->len = len;
	if (out->data != NULL)
		out->data[len] = '\0';
}

/* Append the base64 digits for one UTF-16 code unit, keeping the leftover bits in *bits. */
static int put_unit(struct buf *out, uint32_t unit, uint32_t *bits, unsigned *nbits)
{
	*bits = (*bits << 16) | unit;
	*nbits += 16;
	while (*nbits >= 6) {
		*nbits -= 6;
		if (put_b64(out, *bits >> *nbits) < 0)
			return -1;
	}
	*bits &= (1u << *nbits) - 1;
	return 0;
}

/* UTF-8 to modified UTF-7. */
int imap_utf8_to_mutf7(const char *in, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in, *end = s + strlen(in);
	size_t start = out->len;
	while (*s != '\0') {
		if (is_printable(*s)) {
			int amp = *s == '&';
			if (buf_append(out, amp ? "&-" : (const char *)s, amp ? 2 : 1) < 0)
				goto fail;
			s++;
			continue;
		}
		/* one shift for the whole run of characters that are not printable ASCII */
		uint32_t bits = 0;
		unsigned nbits = 0;
		if (buf_append(out, "&", 1) < 0)
			goto fail;
		while (*s != '\0' && !is_printable(*s)) {
			uint32_t cp;
			size_t n = utf8_decode(s, (size_t)(end - s), UTF8_NO_NUL, &cp);
			if (n == 0)
				goto fail;
			s += n;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				if (put_unit(out, 0xd800 | (cp >> 10), &bits, &nbits) < 0 ||
				    put_unit(out, 0xdc00 | (cp & 0x3ff), &bits, &nbits) < 0)
					goto fail;
			} else if (put_unit(out, cp, &bits, &nbits) < 0) {
				goto fail;
			}
		}
		if (nbits > 0 && put_b64(out, bits << (6 - nbits)) < 0)
			goto fail;
		if (buf_append(out, "-", 1) < 0)
			goto fail;
	}
	return 0;
fail:
	truncate_to(out, start);
	return -1;
}

/* Decode into out (or only validate when out is NULL). */
static int mutf7_decode(const char *in, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t start = out != NULL ? out->len : 0;
	int after_shift = 0;
	while (*s != '\0') {
		if (!is_printable(*s))
			goto fail;
		if (*s != '&') {
			if (out != NULL && buf_append(out, s, 1) < 0)
				goto fail;
			s++;
			after_shift = 0;
			continue;
		}
		s++;
		if (*s == '-') {
			if (out != NULL && buf_append(out, "&", 1) < 0)
				goto fail;
			s++;
			after_shift = 0;
			continue;
		}
		/* two shifts in a row should have been one */
		if (after_shift)
			goto fail;
		uint32_t bits = 0, high = 0;
		unsigned nbits = 0;
		size_t units = 0;
		while (*s != '-') {
			int v = base64_value(*s, BASE64_MUTF7); /* the NUL of an unterminated shift fails here */
			if (v < 0)
				goto fail;
			s++;
			bits = (bits << 6) | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t u = (bits >> nbits) & 0xffff;
			bits &= (1u << nbits) - 1;
			units++;
			if (high != 0) {
				if (u < 0xdc00 || u > 0xdfff)
					goto fail;
				u = 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00);
				high = 0;
			} else if (u >= 0xd800 && u <= 0xdbff) {
				high = u;
				continue;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				goto fail;
			} else if (u == 0 || is_printable(u)) {
				goto fail;
			}
			if (out != NULL && utf8_append(out, u) < 0)
				goto fail;
		}
		s++; /* '-' */
		/* a full sextet left over, or nonzero padding bits, is not canonical */
		if (units == 0 || high != 0 || nbits >= 6 || bits != 0)
			goto fail;
		after_shift = 1;
	}
	return 0;
fail:
	truncate_to(out, start);
	return -1;
}

/* Modified UTF-7 to UTF-8. */
int imap_mutf7_to_utf8(const char *in, struct buf *out)
{
	return mutf7_decode(in, out);
}

/* Validate a modified UTF-7 name. */
int imap_mutf7_is_valid(const char *in)
{
	return mutf7_decode(in, NULL) == 0;
}
