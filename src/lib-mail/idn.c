/* idn.c - domain names to their ASCII form with libidn2. */
#include "idn.h"
#include "utf8.h"

#include <idn2.h>
#include <string.h>

/* Any octet >= 0x80 in in[0..len)? */
int idn_has_nonascii(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)in[i] >= 0x80)
			return 1;
	return 0;
}

/* Does in[0..len) have a label starting "xn--" (an A-label, to be checked as one)? */
static int has_alabel(const char *in, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++)
		if ((i == 0 || in[i - 1] == '.') && (in[i] | 0x20) == 'x' && (in[i + 1] | 0x20) == 'n' &&
		    in[i + 2] == '-' && in[i + 3] == '-')
			return 1;
	return 0;
}

/* The ASCII form of a domain; see idn.h. */
int idn_to_ascii(const char *in, size_t len, char *out, size_t outlen)
{
	if (outlen == 0 || memchr(in, '\0', len) != NULL)
		return -1;
	if (!idn_has_nonascii(in, len) && !has_alabel(in, len)) {
		if (len >= outlen)
			return -1;
		for (size_t i = 0; i < len; i++) {
			char c = in[i];
			out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		out[len] = '\0';
		return 0;
	}
	char src[IDN_INPUT_MAX + 1];
	if (len > IDN_INPUT_MAX)
		return -1;
	/* libidn2 is told the input is UTF-8: make sure */
	if (utf8_valid_prefix((const unsigned char *)in, len, 0) != len)
		return -1;
	memcpy(src, in, len);
	src[len] = '\0';
	char *ace = NULL;
	if (idn2_to_ascii_8z(src, &ace, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK) {
		idn2_free(ace);
		return -1;
	}
	size_t n = strlen(ace);
	int r = -1;
	if (n < outlen) {
		memcpy(out, ace, n + 1);
		r = 0;
	}
	idn2_free(ace);
	return r;
}
