/* imap-url.h - IMAP URLs of a message or part of one (RFC 5092), with the URLAUTH parts of
 * RFC 4467, as CATENATE, GENURLAUTH, URLFETCH and SMTP's BURL take them:
 *
 *   imap://user@host/Box;UIDVALIDITY=5/;UID=20/;SECTION=1.2/;PARTIAL=0.100
 *       ;EXPIRE=2026-12-06T10:00:00Z;URLAUTH=submit+user:INTERNAL:<hex token>
 *
 * also "/Box;UIDVALIDITY=5/;UID=20..." (this server, the logged-in user) and ";UID=20..."
 * (relative to the selected mailbox). Keywords are ASCII case-insensitive; %XX escapes are
 * decoded. Pure parsing: no allocation, no state, safe on any thread.
 */
#ifndef POSTINO_IMAP_URL_H
#define POSTINO_IMAP_URL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define IMAP_URL_SECTION_MAX 256   /* a section-spec ("1.2.HEADER.FIELDS (From To)") */
#define IMAP_URL_TOKEN_MIN 32      /* RFC 4467 7: enc-urlauth = 32*HEXDIG */
#define IMAP_URL_TOKEN_MAX 128     /* ours is 64 (HMAC-SHA256); longer ones are not ours */

enum imap_url_form { IMAP_URL_ABSOLUTE, IMAP_URL_PATH, IMAP_URL_RELATIVE };

struct imap_url {
	enum imap_url_form form;
	char user[321];                /* decoded userid of imap://user@host, or "" */
	char host[256];                /* lower case, without a port; "" unless absolute */
	char box[1024];                /* UTF-8 storage name ("INBOX" canonical); "" if relative */
	int have_uidvalidity;
	uint32_t uidvalidity;
	uint32_t uid;
	char section[IMAP_URL_SECTION_MAX];   /* decoded, "" for the whole message */
	int have_partial;
	uint64_t poff, plen;           /* plen 0: to the end */
	int have_expire;
	time_t expire;
	int have_urlauth;              /* ";URLAUTH=access" */
	char access[400];              /* decoded access identifier */
	size_t rump_len;               /* octets of the rump URL (RFC 4467 3: through access) */
	int have_token;                /* ":mechanism:token" follows the rump */
	char mech[32];
	char token[IMAP_URL_TOKEN_MAX + 1];   /* hex digits as written */
};

/* Parse url. 0, or -1 with *why_r (a static sentence for the client). */
int imap_url_parse(const char *url, struct imap_url *u, const char **why_r);

/* Whether an access identifier (RFC 4467 3) lets requester (a logged-in user, or "" for
 * nobody) fetch the URL: "anonymous" anyone, "authuser" any logged-in user, "user+NAME" only
 * that user, "submit+NAME" only a submission server sending for that user (as_submit). */
int imap_url_access_allows(const char *access, const char *requester, int as_submit);

/* Whether an access identifier is one RFC 4467 defines (the name after "+" not empty). */
int imap_url_access_valid(const char *access);

#endif
