/* mime-private.h - what the mime*.c files share; nothing outside them includes it. */
#ifndef POSTINO_MIME_PRIVATE_H
#define POSTINO_MIME_PRIVATE_H

#include <stddef.h>

#include "header.h"
#include "mime.h"

struct buf;

/* RFC 2046 5.1.1 limits a boundary to 70 characters; longer ones are seen in the wild, so
 * allow some slack, but not unbounded (every body line starting "--" is compared to each open
 * boundary). A longer boundary is ignored: the multipart then has no children. */
#define MIME_BOUNDARY_MAX 256
/* Parameters kept per Content-Type / Content-Disposition; later ones are ignored. Real mail
 * uses a handful; RFC 2231 continuations of one long filename rarely reach 20. */
#define MIME_PARAMS_MAX 64
/* Highest RFC 2231 continuation number honoured (section "*999"). */
#define MIME_PARAM_SECTION_MAX 999
/* Longest charset name passed to iconv_open(); real names are under 20. */
#define MIME_CHARSET_NAME_MAX 40

enum mime_part_flag {
	MIME_PART_MULTIPART = 1 << 0,	/* written as body-type-mpart; children are its parts */
	MIME_PART_RFC822 = 1 << 1,	/* message/rfc822: exactly one child, the inner message */
	MIME_PART_DIGEST = 1 << 2,	/* multipart/digest: children default to message/rfc822 */
	MIME_PART_FORCED_TEXT = 1 << 3,	/* container not opened (limits): shown as text/plain */
};

struct mime_part {
	struct mime_part *parent, *children, *last_child, *next;
	size_t nchildren;
	size_t hdr_off, hdr_len;	/* header, blank line included when there is one */
	size_t body_off, body_len;	/* body per RFC 2046: excludes the CRLF before a boundary */
	size_t lines;			/* LF octets in the body */
	unsigned int flags;		/* enum mime_part_flag */
	unsigned int depth;		/* 0 for the root */
	/* parser state, meaningless once mime_parse returns */
	unsigned int state;
	size_t lf_start;
	char *boundary;
	size_t boundary_len;
};

/* One parameter of Content-Type or Content-Disposition, pointing into the header. */
struct mime_param {
	const char *name;	/* attribute as written, RFC 2231 suffix included */
	size_t name_len;
	size_t base_len;	/* attribute without an RFC 2231 "*", "*N" or "*N*" suffix */
	const char *value;	/* inside the quotes when quoted, else the raw text up to ';' */
	size_t value_len;
	int quoted;
	int ext;		/* RFC 2231 extended: name ended in '*' (value is %-encoded) */
	int section;		/* RFC 2231 continuation number, -1 when there is none */
};

struct mime_ctype {
	const char *type, *subtype;	/* tokens; subtype NULL for Content-Disposition */
	size_t type_len, subtype_len;
	struct mime_param params[MIME_PARAMS_MAX];
	size_t nparams;
};

/* --- mime-ctype.c --- */

/* Parse "type/subtype *(; param)" (want_subtype) or "token *(; param)" into ct. 0 ok, -1 the
 * leading token(s) are not valid RFC 2045 tokens (parameters are then not parsed). */
int mime_ctype_parse(const char *v, size_t len, int want_subtype, struct mime_ctype *ct);
/* Append the plain value of p (quoted-pairs and comments removed, unfolded, trimmed). */
int mime_param_value(const struct mime_param *p, struct buf *out);
/* First plain (non-RFC 2231) parameter called name, or NULL. */
const struct mime_param *mime_ctype_param(const struct mime_ctype *ct, const char *name);
/* Append the parameters as an IMAP body-fld-param list, RFC 2231 groups merged and decoded,
 * with ("CHARSET" "US-ASCII") added when default_charset and no charset is present; NIL when
 * the list would be empty. 0 ok, -1 out full. */
int mime_params_write(const struct mime_ctype *ct, int default_charset, struct buf *out);
/* Parse the token of a Content-Transfer-Encoding value; 1 found (*tok_r, *len_r), 0 none. */
int mime_cte_token(const char *v, size_t len, const char **tok_r, size_t *len_r);

/* --- mime-imap.c --- */

#define MIME_STR_UPPER (1u << 0)	/* upper-case ASCII letters */
#define MIME_STR_UNFOLD (1u << 1)	/* drop CR and LF */
#define MIME_STR_TRIM (1u << 2)		/* drop leading and trailing SP / HTAB (after unfolding) */
/* mime_imap_string with the transformations above. */
int mime_imap_string_flags(struct buf *out, const char *s, size_t len, unsigned int flags);

/* The binary form's body size and LF count of one part (BODYPARTSTRUCTURE with BINARY). */
struct mime_bsize {
	size_t len, lines;
};
/* Append the BODYSTRUCTURE (extended) or BODY of part p and everything below it. bs: NULL, or
 * the binary sizes of p's subtree in pre-order (mime_bodypartstructure), which then replace
 * the body sizes and line counts. 0 ok, -1 out is full. */
int mime_write_part(const struct mime_part *p, const char *msg, int extended,
		    const struct mime_bsize *bs, struct buf *out);

/* --- mime-charset.c --- */

/* Convert in[0..len) from charset cs[0..cslen) to UTF-8, appending to out. Malformed input
 * becomes U+FFFD. 0 ok, -1 out full, -2 unknown charset (out unchanged). */
int mime_charset_to_utf8(const char *cs, size_t cslen, const unsigned char *in, size_t len,
			 struct buf *out);

/* --- mime-section.c --- */

/* Decode quoted-printable (RFC 2045 6.7), keeping malformed '=' sequences as they are. */
int mime_qp_decode(const char *in, size_t len, struct buf *out);
/* Value of one hex digit, or -1. */
int mime_hexval(unsigned char c);

#endif
