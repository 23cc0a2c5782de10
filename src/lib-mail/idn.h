/* idn.h - internationalised domain names (RFC 5890, UTS 46). UTF-8 checks are utf8.h's.
 *
 * Domains are kept and compared in their ASCII form: U-labels ("bücher") become A-labels
 * ("xn--bcher-kva") through libidn2 with UTS 46 non-transitional mapping, so a domain typed
 * either way names the same hosted domain. Thread-safe; no state.
 */
#ifndef POSTINO_IDN_H
#define POSTINO_IDN_H

#include <stddef.h>

#define IDN_INPUT_MAX 1024   /* longest domain text looked at (253 A-label octets, 4 per char) */

/* Write the ASCII form of the domain in[0..len) into out: ASCII input is lower-cased and copied
 * unchanged otherwise (its "xn--" labels must be valid A-labels); input with non-ASCII octets is
 * mapped (UTS 46: case folding, NFC) and encoded as A-labels. The result is not checked further (callers apply their LDH rules).
 * 0 ok; -1 malformed UTF-8, a label IDNA2008 refuses, or the result does not fit outlen. */
int idn_to_ascii(const char *in, size_t len, char *out, size_t outlen);

/* Does in[0..len) hold any octet >= 0x80? */
int idn_has_nonascii(const char *in, size_t len);

#endif
