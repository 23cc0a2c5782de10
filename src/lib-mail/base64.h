/* base64.h - RFC 4648 section 4 base64 (standard alphabet, '=' padding), strict.
 *
 * Pure functions on caller memory: no allocation, no global state, safe on any thread.
 */
#ifndef POSTINO_BASE64_H
#define POSTINO_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Most octets base64_decode can produce from n input characters (exact for valid unpadded
 * lengths, an upper bound otherwise). No intermediate overflow. */
#define BASE64_DECODED_MAX(n) ((n) / 4 * 3 + ((n) % 4 != 0 ? 3 : 0))

/* Characters base64_encode writes for n octets, not counting the NUL; the buffer needs one more.
 * Valid for n <= BASE64_ENCODE_INPUT_MAX (larger n would overflow size_t). */
#define BASE64_ENCODED_LEN(n) ((n) / 3 * 4 + ((n) % 3 != 0 ? 4 : 0))
#define BASE64_ENCODE_INPUT_MAX (((size_t)-1 - 1) / 4 * 3)

/* Decode in[0..inlen) into out. Strict: inlen must be a multiple of 4; only A-Z a-z 0-9 + / are
 * data; '=' may only pad the final group (one or two of them); the unused bits before the padding
 * must be zero; no whitespace, no line breaks. "" decodes to 0 octets. Returns the number of
 * octets written, or -1 if the input is invalid or the result would not fit outcap (out's
 * contents are then unspecified). Does not NUL-terminate. */
ssize_t base64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap);

/* Encode in[0..inlen) into out as one line (no line breaks) and NUL-terminate it. Returns the
 * number of characters written before the NUL, i.e. BASE64_ENCODED_LEN(inlen). If outcap is less
 * than BASE64_ENCODED_LEN(inlen) + 1 (or inlen exceeds BASE64_ENCODE_INPUT_MAX) nothing is encoded,
 * out[0] is set to NUL when outcap > 0, and 0 is returned; inlen == 0 also returns 0 (writing ""),
 * so a caller with inlen > 0 treats 0 as "does not fit". */
size_t base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outcap);

/* The 6-bit value of a standard-alphabet base64 character, or -1 ('=' included). */
int base64_value(unsigned char c);

#endif
