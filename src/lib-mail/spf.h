/* spf.h - Sender Policy Framework (RFC 7208): check_host() of a client address against the
 * SPF record of the MAIL FROM domain (or the HELO name when MAIL FROM is <>).
 *
 * Mechanisms all, include, a, mx, ptr (never matches: RFC 7208 5.5 says not to use it; it still
 * counts as a lookup), ip4, ip6, exists; modifiers redirect and exp (exp is parsed, not
 * fetched); macros of RFC 7208 7. Limits of RFC 7208 4.6.4: at most SPF_DNS_MECH_MAX
 * mechanisms and modifiers that ask DNS, at most SPF_VOID_MAX lookups that find nothing, at most
 * AUTHDNS_MX_MAX MX names per mx mechanism. DNS through the caller's callbacks (authdns.h).
 */
#ifndef POSTINO_SPF_H
#define POSTINO_SPF_H

#include <stddef.h>

#include "authdns.h"

#define SPF_DNS_MECH_MAX 10       /* RFC 7208 4.6.4 */
#define SPF_VOID_MAX 2            /* RFC 7208 4.6.4 */
#define SPF_TERMS_MAX 128         /* terms parsed per record */
#define SPF_DEPTH_MAX 12          /* include/redirect nesting (the lookup limit stops earlier) */

enum spf_result {
	SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR, SPF_PERMERROR,
};

struct spf_ip {
	int family;                   /* 4 or 6 */
	unsigned char a[16];
};

/* The RFC 8601 / RFC 7208 name of a result ("pass", "softfail", ...). */
const char *spf_result_name(enum spf_result r);

/* Check ip against the SPF policy of sender's domain. sender is "local@domain" (MAIL FROM), or
 * NULL/"" for the null sender: then the identity is postmaster@helo (RFC 7208 2.4). helo is the
 * HELO/EHLO name. *why_r (static text) explains permerror/temperror and what matched. */
enum spf_result spf_check(const struct authdns *dns, const struct spf_ip *ip, const char *sender,
			  const char *helo, const char **why_r);

/* Syntax check of one SPF record ("v=spf1 ..."): 0 valid, -1 a permerror (*err_r). For the
 * fuzzer and tests; spf_check does the same on every record it fetches. */
int spf_record_check(const char *rec, size_t n, const char **err_r);

#endif
