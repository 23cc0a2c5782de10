/* sasl.h - decoding the client's side of SASL PLAIN (RFC 4616) and LOGIN.
 *
 * Shared by the SMTP, IMAP and POP3 sessions. Pure functions on caller memory: no allocation,
 * no global state, safe on any thread. Decoded secrets live only in caller buffers and in a
 * stack buffer that is wiped before return.
 */
#ifndef POSTINO_SASL_H
#define POSTINO_SASL_H

#include <stddef.h>
#include <sys/types.h>

/* Longest decoded PLAIN message accepted (authzid NUL authcid NUL passwd). RFC 4616 allows 255
 * octets per part; this leaves room for long passwords without being unbounded. */
#define SASL_PLAIN_MAX 4095

/* Decode a SASL PLAIN response (NUL-terminated base64 of authzid NUL authcid NUL passwd) into
 * authc and pass, both NUL-terminated. The authcid and the password must be non-empty and hold
 * no NUL (RFC 4616: 1*SAFE); an authzid, when present, must name the authcid (case-insensitive).
 * Returns 0, -1 malformed (bad base64, layout, empty part, too long for the buffers), -2 the
 * authzid names another user. */
int sasl_plain_decode(const char *b64, char *authc, size_t authclen, char *pass, size_t passlen);

/* Decode one SASL LOGIN response line (NUL-terminated base64; "=" stands for an empty
 * response) into out, NUL-terminated. Returns the decoded length, or -1 if the base64 is
 * invalid, the result holds a NUL octet, or it does not fit outcap - 1 octets. */
ssize_t sasl_login_decode(const char *b64, char *out, size_t outcap);

#endif
