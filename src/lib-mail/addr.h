/* addr.h - RFC 5321 paths and RFC 5322 address lists.
 *
 * Pure functions on caller memory: no allocation, no global state, safe on any thread.
 */
#ifndef POSTINO_ADDR_H
#define POSTINO_ADDR_H

#include <stddef.h>

#define ADDR_LOCAL_MAX 64     /* RFC 5321 4.5.3.1.1 */
#define ADDR_DOMAIN_MAX 255   /* RFC 5321 4.5.3.1.2 */
#define ADDR_PATH_MAX 256     /* RFC 5321 4.5.3.1.3, including the angle brackets */

enum addr_flag {
	ADDR_F_NULL = 1 << 0,      /* "<>" */
	ADDR_F_ROUTE = 1 << 1,     /* a source route "@a,@b:" was present (and dropped) */
	ADDR_F_QUOTED = 1 << 2,    /* the local part was a quoted string */
	ADDR_F_IPLITERAL = 1 << 3, /* domain is an address literal "[...]" */
	ADDR_F_UTF8 = 1 << 4,      /* non-ASCII octets in local part or domain (needs SMTPUTF8) */
	ADDR_F_RELAYCHARS = 1 << 5,/* local part holds '%', '!' or '@' (only possible when quoted) */
};

struct addr {
	char local[ADDR_LOCAL_MAX * 4 + 1];  /* decoded local part (quotes and backslashes removed) */
	char domain[ADDR_DOMAIN_MAX + 1];    /* lower-cased (ASCII letters only), "[...]" kept as is */
	unsigned flags;                      /* enum addr_flag */
};

/* Parse an RFC 5321 Reverse-path / Forward-path starting at s[0] == '<' (s of length len):
 * "<>" (sets ADDR_F_NULL), or "<" [A-d-l ":"] Mailbox ">". Dot-string or quoted-string local part,
 * domain of dot-separated labels (letters, digits, hyphens; UTF-8 octets allowed only with
 * allow_utf8) or an address literal. Enforces the length limits above. On success returns 0 and sets
 * *end_r to the octet after '>'; on a syntax error returns -1.
 * Note "u@remote@ours" is a syntax error, "u%remote@ours" parses with ADDR_F_RELAYCHARS set. */
int addr_parse_path(const char *s, size_t len, int allow_utf8, struct addr *a, const char **end_r);

/* Write "local@domain" into out (quoting the local part if it needs it). Returns the length, or -1
 * if it does not fit. For ADDR_F_NULL writes "". */
int addr_format(const struct addr *a, char *out, size_t outlen);

/* Extract the addr-specs of an RFC 5322 address list (a From: or To: header body, unfolded or
 * folded): handles display names, quoted strings, comments (nested), angle addresses, groups
 * "name: a@b, c@d;", obsolete forms tolerated where harmless. Calls cb for each address as
 * "local@domain" with the domain lower-cased. Returns the number of addresses, or -1 if the list
 * is malformed (the caller treats that as "From: not acceptable"). */
int addr_parse_list(const char *s, size_t len, void (*cb)(void *ctx, const char *address),
		    void *ctx);

/* addr_parse_list, but cb is also given the display name of each name-addr as written:
 * display[0..display_len) is the raw phrase from its first word to its last (quoted strings
 * with their quotes, encoded-words undecoded, folds kept; it points into s), empty for a bare
 * addr-spec. Same return value. */
int addr_parse_list_named(const char *s, size_t len,
			  void (*cb)(void *ctx, const char *display, size_t display_len,
				     const char *address), void *ctx);

#endif
