/* base64.c - strict RFC 4648 base64 (standard alphabet, padded), and the modified alphabet. */
#include "base64.h"

#include <stdint.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of character c in alphabet a, or -1 if c is not in it ('=' included). */
int base64_value(unsigned char c, enum base64_alphabet a)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == (a == BASE64_MUTF7 ? ',' : '/'))
		return 63;
	return -1;
}

/* The character for value v & 63 in alphabet a. */
char base64_char(unsigned v, enum base64_alphabet a)
{
	v &= 63;
	return v == 63 && a == BASE64_MUTF7 ? ',' : b64_alphabet[v];
}

/* Decode strictly (see base64.h). */
ssize_t base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap)
{
	const unsigned char *u = (const unsigned char *)in;
	size_t pad = 0, outlen, o = 0;
	if (inlen % 4 != 0)
		return -1;
	if (inlen == 0)
		return 0;
	if (u[inlen - 1] == '=') {
		pad = 1;
		if (u[inlen - 2] == '=')
			pad = 2;
	}
	outlen = inlen / 4 * 3 - pad;
	/* SIZE_MAX / 2 is the largest ssize_t where ssize_t is size_t's signed twin */
	if (outlen > outcap || outlen > SIZE_MAX / 2)
		return -1;
	for (size_t i = 0; i < inlen; i += 4) {
		int last = i + 4 == inlen;
		size_t data = last ? 4 - pad : 4;   /* characters of this group that carry bits */
		uint32_t v = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = 0;
			if (k < data) {
				d = base64_value(u[i + k], BASE64_STD);
				if (d < 0)   /* also catches '=' before the final padding */
					return -1;
			}
			v = (v << 6) | (uint32_t)d;
		}
		/* the padding characters themselves were checked when pad was counted */
		if (pad == 2 && last && (v & 0xffff) != 0)
			return -1;   /* nonzero bits under "==" */
		if (pad == 1 && last && (v & 0xff) != 0)
			return -1;   /* nonzero bits under "=" */
		out[o++] = (unsigned char)(v >> 16);
		if (data > 2)
			out[o++] = (unsigned char)(v >> 8);
		if (data > 3)
			out[o++] = (unsigned char)v;
	}
	return (ssize_t)o;
}

/* Encode as one NUL-terminated line (see base64.h for the "does not fit" convention). */
size_t base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outcap)
{
	size_t o = 0, i = 0;
	if (inlen > BASE64_ENCODE_INPUT_MAX || outcap < BASE64_ENCODED_LEN(inlen) + 1) {
		if (outcap > 0)
			out[0] = '\0';
		return 0;
	}
	for (; inlen - i >= 3; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (inlen - i > 0) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (inlen - i == 2)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = inlen - i == 2 ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/* Lenient base64 (RFC 2045 6.8): line breaks and other stray characters are skipped; '='
 * ends a group, so concatenated encodings decode too. 0 ok, -1 out full. */
int base64_decode_lenient(const char *in, size_t len, struct buf *out)
{
	unsigned char chunk[4096];
	size_t cn = 0;
	uint_least32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v = base64_value(c, BASE64_STD);
		if (v < 0) {
			if (c == '=') {
				acc = 0;
				bits = 0;
			}
			continue;
		}
		acc = ((acc << 6) | (uint_least32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			chunk[cn++] = (unsigned char)(acc >> bits);
			if (cn == sizeof(chunk)) {
				if (buf_append(out, chunk, cn) < 0)
					return -1;
				cn = 0;
			}
		}
	}
	return buf_append(out, chunk, cn);
}
