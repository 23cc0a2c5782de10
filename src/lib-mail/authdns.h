/* authdns.h - the DNS questions the message authentication checks (DKIM keys, SPF, DMARC) ask,
 * as callbacks: lib-mail parses and decides, the caller (src/smtp/smtp-authdns.c, on
 * libunbound) resolves with its own time limit. Every answer is bounded here.
 *
 * Each lookup returns AUTHDNS_OK (records in *out), AUTHDNS_NONE (NXDOMAIN or no record of
 * that type: RFC 7208 4.6.4 calls that a "void lookup") or AUTHDNS_TEMP (timeout, SERVFAIL).
 */
#ifndef POSTINO_AUTHDNS_H
#define POSTINO_AUTHDNS_H

#include <stddef.h>

#define AUTHDNS_TXT_MAX 8          /* TXT records kept per name */
#define AUTHDNS_TXT_LEN 4096       /* octets of one TXT record (its strings joined) */
#define AUTHDNS_ADDR_MAX 32        /* A/AAAA records kept per name */
#define AUTHDNS_MX_MAX 10          /* RFC 7208 4.6.4: more than 10 MX names is a permerror */
#define AUTHDNS_NAME_MAX 253       /* RFC 1035 2.3.4 */

enum authdns_rc { AUTHDNS_TEMP = -1, AUTHDNS_NONE = 0, AUTHDNS_OK = 1 };

struct authdns_txt {
	unsigned n;
	size_t len[AUTHDNS_TXT_MAX];
	char rec[AUTHDNS_TXT_MAX][AUTHDNS_TXT_LEN + 1];   /* NUL-terminated; NULs inside: len */
};

struct authdns_addrs {
	unsigned n;
	int family[AUTHDNS_ADDR_MAX];                       /* 4 or 6 */
	unsigned char addr[AUTHDNS_ADDR_MAX][16];
};

struct authdns_mx {
	unsigned n;                                         /* more than AUTHDNS_MX_MAX: n is 11 */
	char name[AUTHDNS_MX_MAX + 1][AUTHDNS_NAME_MAX + 1];
};

struct authdns {
	void *ctx;
	int (*txt)(void *ctx, const char *name, struct authdns_txt *out);
	/* family 4 asks for A, 6 for AAAA */
	int (*addrs)(void *ctx, const char *name, int family, struct authdns_addrs *out);
	int (*mx)(void *ctx, const char *name, struct authdns_mx *out);
};

#endif
