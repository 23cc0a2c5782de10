/* base64.h - RFC 4648 section 4 base64 (standard alphabet, '=' padding), strict; the one base64
 * table, also for the modified alphabet of IMAP mailbox names.
 *
 * Pure functions on caller memory (base64_decode_lenient appends to a buf): no global state, safe
 * on any thread.
 */
#ifndef POSTINO_BASE64_H
#define POSTINO_BASE64_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"

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

/* Decode in[0..len) leniently, the way MIME bodies and RFC 2047 "B" words need it (RFC 2045
 * 6.8): characters outside the standard alphabet, line breaks included, are skipped; '=' ends a
 * group (its leftover bits are dropped), so concatenated encodings decode too; a final partial
 * group gives the whole octets it holds. Appends to out. 0 ok, -1 out is full. */
int base64_decode_lenient(const char *in, size_t len, struct buf *out);

/* Encode in[0..inlen) into out as one line (no line breaks) and NUL-terminate it. Returns the
 * number of characters written before the NUL, i.e. BASE64_ENCODED_LEN(inlen). If outcap is less
 * than BASE64_ENCODED_LEN(inlen) + 1 (or inlen exceeds BASE64_ENCODE_INPUT_MAX) nothing is encoded,
 * out[0] is set to NUL when outcap > 0, and 0 is returned; inlen == 0 also returns 0 (writing ""),
 * so a caller with inlen > 0 treats 0 as "does not fit". */
size_t base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outcap);

/* The two alphabets: they differ only in the character for 63. */
enum base64_alphabet {
	BASE64_STD,     /* RFC 4648 table 1: A-Z a-z 0-9 + / */
	BASE64_MUTF7,   /* ',' for '/': modified UTF-7 mailbox names (RFC 3501 5.1.3) */
};

/* The 6-bit value of character c in alphabet a, or -1 ('=' included). */
int base64_value(unsigned char c, enum base64_alphabet a);

/* The character for the low 6 bits of v in alphabet a. */
char base64_char(unsigned v, enum base64_alphabet a);

#endif
