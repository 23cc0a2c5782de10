/* mime.h - MIME structure of a stored message, for IMAP FETCH and SEARCH.
 *
 * The message lives in memory (usually an mmap of the stored file, CRLF line ends, bare LF
 * tolerated). mime_parse() builds a tree of offsets into it; every other call takes the same
 * msg pointer again and reads the bytes from there, so the tree never copies message data.
 * Nothing here keeps global state; the functions are safe on any thread.
 *
 * Malformed input never fails: the parser follows RFC 2045/2046 and falls back the way Dovecot
 * does (missing or unterminated boundaries, headers without a blank line, unparsable
 * Content-Type treated as text/plain, and so on).
 *
 * Case in BODYSTRUCTURE output: every token that MIME defines as case-insensitive (type,
 * subtype, parameter attribute names, transfer encoding, disposition type) is written in upper
 * case, as in the RFC 3501 and RFC 9051 examples ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") ...
 * "7BIT"). Values (parameter values, Content-ID, description, language, location) are written
 * as they appear in the message, unfolded.
 */
#ifndef POSTINO_MIME_H
#define POSTINO_MIME_H

#include <stddef.h>

struct buf;
struct mime_part;

/* Parts nested deeper than this are not opened: a multipart or message/rfc822 part at this
 * depth is shown as a text/plain leaf. Bounds recursion in every walker of the tree. */
#define MIME_DEPTH_MAX 100
/* Most parts one message may have (the root included); later parts stay inside their
 * parent's body without a node of their own. */
#define MIME_PARTS_MAX 10000

/* Parse msg[0..len). Never fails on malformed input; returns NULL only when out of memory.
 * The tree holds offsets only: msg must stay mapped, unchanged, for as long as the tree is
 * used with it. */
struct mime_part *mime_parse(const char *msg, size_t len);
/* Free the tree and set *root to NULL. Accepts NULL and *root == NULL. */
void mime_free(struct mime_part **root);

/* Append BODYSTRUCTURE (extended != 0) or BODY (extended == 0) of the whole message to out,
 * starting with its opening parenthesis (RFC 3501 7.4.2, RFC 9051 7.5.2). msg is the buffer
 * given to mime_parse. 0 ok, -1 out is full (out then holds a truncated prefix). */
int mime_bodystructure(const struct mime_part *root, const char *msg, int extended,
		       struct buf *out);

/* Append the ENVELOPE of a header block hdr[0..hdrlen) to out, parentheses included:
 * (date subject from sender reply-to to cc bcc in-reply-to message-id). Values are raw
 * (encoded-words kept), unfolded; an absent field is NIL; an absent or empty Sender or
 * Reply-To repeats From (RFC 3501 7.4.2). 0 ok, -1 out is full. */
int mime_envelope(const char *hdr, size_t hdrlen, struct buf *out);

/* Resolve an IMAP section-spec (the text between the brackets of BODY[...]: "", "1", "1.2",
 * "HEADER", "TEXT", "1.MIME", "2.HEADER", "HEADER.FIELDS (From To)", "HEADER.FIELDS.NOT (X)";
 * keywords case-insensitive) to the octets to send.
 * For HEADER.FIELDS[.NOT] tmp is reset, the selected header lines and a closing CRLF are built
 * in it, and *data_r points into tmp (valid until tmp is next changed); otherwise *data_r
 * points into msg. Returns 0 ok, -1 the section is not valid syntax, 1 the section does not
 * exist in this message (*len_r = 0; the caller sends an empty string per RFC 3501 6.4.5),
 * -2 tmp is too small. */
int mime_section(const struct mime_part *root, const char *msg, size_t len, const char *section,
		 struct buf *tmp, const char **data_r, size_t *len_r);

/* BINARY[section] (RFC 3516): append the body of the part named by section ("" or part
 * numbers only) to out with its Content-Transfer-Encoding removed (base64, quoted-printable;
 * 7bit/8bit/binary and multipart bodies as is; "" is the whole message as is).
 * Returns 0 ok, -1 unknown encoding (NO [UNKNOWN-CTE]), -2 invalid section, 1 the part does
 * not exist (out unchanged), -3 out is full. */
int mime_binary(const struct mime_part *root, const char *msg, size_t len, const char *section,
		struct buf *out);

/* The BODYSTRUCTURE of the part named by section ("" the whole message, or part numbers) as
 * RFC 5524's BODYPARTSTRUCTURE gives it: the extended form, written as the part appears inside
 * the message's BODYSTRUCTURE. binary: the sizes and line counts are those of the binary form
 * mime_binary returns (the rest, encodings included, describes the part as stored, as Dovecot
 * answers). 0 ok, 1 no such part, -2 not a part's section, -1 unknown encoding (binary),
 * -3 out is full. */
int mime_bodypartstructure(const struct mime_part *root, const char *msg, size_t len,
			   const char *section, int binary, struct buf *out);

/* mime_binary, then, for a text part (type "text") with a charset parameter other than UTF-8 or US-ASCII
 * (ISO-8859-1, windows-1252, ... through mime-charset.c), the appended octets converted to
 * UTF-8 (malformed input becomes U+FFFD; an unknown charset is left as it is). For SEARCH,
 * which matches bodies in UTF-8. Same return values as mime_binary. */
int mime_text_utf8(const struct mime_part *root, const char *msg, size_t len, const char *section,
		   struct buf *out);

/* Find the first field called name (case-insensitive) in the header block hdr[0..hdrlen) and
 * append its value to out: unfolded (CR and LF removed), leading and trailing blanks removed,
 * otherwise raw. 1 found, 0 not found, -1 out is full. */
int mime_header_get(const char *hdr, size_t hdrlen, const char *name, struct buf *out);

/* Append in[0..len) to out as UTF-8 with RFC 2047 encoded-words decoded (utf-8, us-ascii,
 * iso-8859-1, iso-8859-15, windows-1252 built in; other charsets through iconv(3)). White
 * space between adjacent encoded-words is dropped, CR and LF are dropped, invalid UTF-8 in
 * plain text becomes U+FFFD, and a word whose charset is unknown is kept as written.
 * 0 ok, -1 out is full. */
int mime_decode_words(const char *in, size_t len, struct buf *out);

/* Length of the header section of msg[0..len) up to and including the blank line that ends
 * it; len when there is no blank line. */
size_t mime_header_len(const char *msg, size_t len);

/* Shared IMAP string writer: append s[0..len) as a quoted string when every octet is in
 * 0x01-0x7f and none is CR or LF, else as a literal {n}\r\n... (NUL octets, which no IMAP
 * string can carry, are left out). 0 ok, -1 out is full. */
int mime_imap_string(struct buf *out, const char *s, size_t len);
/* As mime_imap_string, or NIL when s is NULL. */
int mime_imap_nstring(struct buf *out, const char *s, size_t len);

#endif
