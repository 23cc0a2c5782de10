/* urlauth.h - URLAUTH-authorized IMAP URLs (RFC 4467) resolved in this process: IMAP's
 * URLFETCH and SMTP's BURL (RFC 4468) use the same checks and the same fetch, so a URL the
 * submission server takes is exactly one the IMAP server would hand out.
 *
 * Mechanism INTERNAL: the token is the HMAC-SHA256 of the rump URL (the URL up to and
 * including the access identifier) keyed with the mailbox access key, a random 32-octet key
 * per user and mailbox in the owner's index.db (store_urlauth_key), written in hex. RESETKEY
 * forgets the key, so every URL made with it stops verifying.
 *
 * Everything here runs on the worker's loop thread (reads of system.db and index.db, like
 * FETCH), except imap_urlauth_token, which is safe on any thread.
 */
#ifndef POSTINO_URLAUTH_H
#define POSTINO_URLAUTH_H

#include <stddef.h>

#include "imap-url.h"
#include "store.h"

struct acctdb;
struct buf;
struct config;

#define IMAP_URLAUTH_TOKEN_HEX 64   /* HMAC-SHA256 in hex */

/* What imap_urlauth_fetch and imap_url_part append. */
#define IMAP_URLPART_BINARY 1u   /* the content transfer encoding undone (RFC 5524 BINARY) */
#define IMAP_URLPART_BPS 2u      /* BODYPARTSTRUCTURE into bps */
#define IMAP_URLPART_TRUSTED 4u  /* imap_urlauth_fetch: a URL without URLAUTH naming the
				  * requester's own mailbox is taken too (BURL: the submission
				  * server's trust relationship with this IMAP server, RFC 4468 3) */

enum imap_urlauth_result {
	IMAP_URLAUTH_OK = 0,
	IMAP_URLAUTH_DENIED = -1,      /* no or bad token, expired, access not for the requester */
	IMAP_URLAUTH_NOTFOUND = -2,    /* verified, but the message or part is not there */
	IMAP_URLAUTH_TOOBIG = -3,      /* more than data's limit */
	IMAP_URLAUTH_UNAVAILABLE = -4, /* the owner's mailbox cannot be read now */
	IMAP_URLAUTH_CTE = -5,         /* BINARY of a part in an unknown transfer encoding */
};

/* The INTERNAL token of rump[0..len) under key, as hex into hex (NUL-terminated). 0 or -1. */
int imap_urlauth_token(const unsigned char key[STORE_URLAUTH_KEY_LEN], const char *rump,
		       size_t len, char hex[IMAP_URLAUTH_TOKEN_HEX + 1]);

/* The account an absolute URL names on this server: user "name@domain" (%40 or a raw "@"),
 * or "name" at a hosted domain given as the host; the host must be this server's host name,
 * a domain_host name or a hosted domain. 1 (owner filled, lower case), 0 not ours or no
 * such account (*why_r). */
int imap_urlauth_owner(const struct config *cfg, struct acctdb *db, const struct imap_url *u,
		       char *owner, size_t len, const char **why_r);

/* Fetch what a URLAUTH URL names for requester ("" for nobody; as_submit: a submission
 * server sending for requester), after checking it (RFC 4467 7): this server, the owner's
 * mailbox and UIDVALIDITY, the token, EXPIRE, the access identifier. own: the requester's
 * open account handle or NULL. what: IMAP_URLPART_*; the octets are appended to data (at
 * most its limit), the BODYPARTSTRUCTURE to bps. Returns an enum imap_urlauth_result, *why_r
 * a sentence saying what went wrong. *nul_r (may be NULL): the octets hold a NUL. */
int imap_urlauth_fetch(const struct config *cfg, struct acctdb *db, const char *url,
		       const char *requester, int as_submit, struct store_account *own,
		       unsigned what, struct buf *data, struct buf *bps, int *nul_r,
		       const char **why_r);

/* What URL u names in the message open on fd (section, partial, what as above), appended to
 * data (and bps). 0, -1 no such section (*why_r), -2 data is full, -3 unknown transfer
 * encoding (binary). */
int imap_url_part(int fd, const struct imap_url *u, unsigned what, struct buf *data,
		  struct buf *bps, const char **why_r);

#endif
