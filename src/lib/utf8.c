/* utf8.c - UTF-8 validation, decoding and encoding (see utf8.h for the rules). */
#include "utf8.h"

/* Length of the well-formed prefix (casefolding for SEARCH runs it over whole bodies, hence
 * the short way for two-octet characters, which are most non-ASCII text in Latin, Greek and
 * Cyrillic scripts). */
size_t utf8_valid_prefix(const unsigned char *p, size_t len, unsigned flags)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		if (c != 0 && c < 0x80)
			n = 1;
		else if (c >= 0xc2 && c <= 0xdf && !(flags & UTF8_NO_C1))
			n = i + 1 < len && utf8_is_continuation(p[i + 1]) ? 2 : 0;
		else
			n = utf8_decode(p + i, len - i, flags, NULL);
		if (n == 0)
			break;
		i += n;
	}
	return i;
}

/* Characters, as octets that do not continue one. */
size_t utf8_chars(const unsigned char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += !utf8_is_continuation(s[i]);
	return n;
}

/* Encode cp as one to four octets. */
size_t utf8_encode(uint32_t cp, unsigned char out[UTF8_SEQ_MAX])
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | (cp >> 6));
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | (cp >> 12));
		out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | (cp >> 18));
	out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Append cp as one to four octets. */
int utf8_append(struct buf *out, uint32_t cp)
{
	unsigned char b[UTF8_SEQ_MAX];
	size_t n = utf8_encode(cp, b);
	return buf_append(out, b, n);
}
