/* urlauth.c - URLAUTH-authorized IMAP URLs (RFC 4467, 5524) resolved for IMAP's URLFETCH and
 * SMTP's BURL (RFC 4468): the INTERNAL token, the owner check and the fetch (urlauth.h). */
#include "urlauth.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acctdb.h"
#include "buf.h"
#include "config.h"
#include "mime.h"
#include "store-path.h"
#include "tls-crypto.h"

/* See urlauth.h. */
int imap_urlauth_token(const unsigned char key[STORE_URLAUTH_KEY_LEN], const char *rump,
		       size_t len, char hex[IMAP_URLAUTH_TOKEN_HEX + 1])
{
	unsigned char mac[TLS_SHA256_LEN];
	if (tls_hmac_sha256(key, STORE_URLAUTH_KEY_LEN, rump, len, mac) < 0)
		return -1;
	for (size_t i = 0; i < TLS_SHA256_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	explicit_bzero(mac, sizeof(mac));
	return 0;
}

/* Whether host names this server. */
static int host_is_ours(const struct config *cfg, struct acctdb *db, const char *host)
{
		const char *err;
	if (strcasecmp(host, cfg->hostname) == 0)
		return 1;
	for (size_t i = 0; i < cfg->ndomain_hosts; i++) {
		const struct domain_host_conf *d = &cfg->domain_hosts[i];
		if (strcasecmp(host, d->imap) == 0 || strcasecmp(host, d->smtp) == 0)
			return 1;
	}
	char dom[256];
	return acctdb_normalize_domain(host, dom, sizeof(dom)) == 0 &&
	       acctdb_domain_exists(db, dom, &err) == 1;
}

/* See urlauth.h. */
int imap_urlauth_owner(const struct config *cfg, struct acctdb *db, const struct imap_url *u,
		       char *owner, size_t len, const char **why_r)
{
	char addr[sizeof(u->user) + sizeof(u->host) + 1];
	struct acct_user au;
	const char *err;
	if (u->form != IMAP_URL_ABSOLUTE || u->user[0] == '\0') {
		*why_r = "a URLAUTH URL is absolute and names its user (imap://user@host/...)";
		return 0;
	}
	if (!host_is_ours(cfg, db, u->host)) {
		*why_r = "the URL names another server";
		return 0;
	}
	if (strchr(u->user, '@') != NULL)
		snprintf(addr, sizeof(addr), "%s", u->user);
	else
		snprintf(addr, sizeof(addr), "%s@%s", u->user, u->host);
	int r = acctdb_normalize_address(addr, owner, len) == 0 ?
			acctdb_user_get(db, owner, &au, &err) : 0;
	explicit_bzero(&au, sizeof(au));
	if (r != 1) {
		*why_r = "the URL names no account of this server";
		return 0;
	}
	return 1;
}

/* See urlauth.h. */
int imap_url_part(int fd, const struct imap_url *u, unsigned what, struct buf *data,
		  struct buf *bps, const char **why_r)
{
	struct stat st;
	if (fstat(fd, &st) < 0) {
		*why_r = "the message cannot be read";
		return -1;
	}
	size_t len = (size_t)st.st_size;
	char *msg = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (msg == MAP_FAILED) {
		*why_r = "the message cannot be read";
		return -1;
	}
	const char *base = msg ? msg : "";
	const char *d = base;
	size_t dlen = len;
	struct buf tmp;
	struct mime_part *root = NULL;
	int r = 0;
	buf_init(&tmp, data->max);
	if (u->section[0] != '\0' || what != 0) {
		root = mime_parse(base, len);
		if (root == NULL) {
			*why_r = "out of memory";
			r = -1;
		}
	}
	if (r == 0 && (what & IMAP_URLPART_BPS)) {
		int b = mime_bodypartstructure(root, base, len, u->section,
					       (what & IMAP_URLPART_BINARY) != 0, bps);
		if (b == -1)
			r = -3;
		else if (b != 0) {
			*why_r = b == 1 ? "the message has no such part" :
				 "BODYPARTSTRUCTURE needs a URL of the message or of a part";
			r = -1;
		}
	}
	if (r == 0 && (what & IMAP_URLPART_BINARY)) {
		int b = mime_binary(root, base, len, u->section, &tmp);
		if (b == -1)
			r = -3;
		else if (b == -3)
			r = -2;
		else if (b != 0) {
			*why_r = b == 1 ? "the message has no such part" :
				 "BINARY needs a URL of the message or of a part";
			r = -1;
		}
		d = tmp.data ? tmp.data : "";
		dlen = tmp.len;
	} else if (r == 0 && u->section[0] != '\0') {
		int b = mime_section(root, base, len, u->section, &tmp, &d, &dlen);
		if (b == -2)
			r = -2;
		else if (b != 0) {
			*why_r = b == 1 ? "the message has no such section" :
				 "invalid section in the URL";
			r = -1;
		}
	}
	if (r == 0 && u->have_partial) {
		uint64_t off = u->poff > dlen ? dlen : u->poff;
		uint64_t n = dlen - off;
		if (u->plen && u->plen < n)
			n = u->plen;
		d += off;
		dlen = (size_t)n;
	}
	if (r == 0 && dlen > 0 && buf_append(data, d, dlen) < 0)
		r = -2;
	if (root)
		mime_free(&root);
	buf_free(&tmp);
	if (msg)
		munmap(msg, len);
	return r;
}

/* Lower-case hex digits equal, in time independent of where they differ. */
static int token_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned diff = la != lb;
	for (size_t i = 0; i < la && i < lb; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'F')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'F')
			y = (unsigned char)(y - 'A' + 'a');
		diff |= (unsigned)(x ^ y);
	}
	return diff == 0;
}

/* See urlauth.h. */
int imap_urlauth_fetch(const struct config *cfg, struct acctdb *db, const char *url,
		       const char *requester, int as_submit, struct store_account *own,
		       unsigned what, struct buf *data, struct buf *bps, int *nul_r,
		       const char **why_r)
{
	struct imap_url u;
	char owner[321], root[4096];
	struct store_account *acct = NULL;
	int opened = 0, r;
	if (nul_r)
		*nul_r = 0;
	if (imap_url_parse(url, &u, why_r) < 0)
		return IMAP_URLAUTH_NOTFOUND;
	int trusted = !u.have_urlauth && (what & IMAP_URLPART_TRUSTED);
	what &= ~IMAP_URLPART_TRUSTED;
	if ((!u.have_urlauth || !u.have_token) && !trusted) {
		*why_r = "the URL carries no URLAUTH (get one with IMAP GENURLAUTH)";
		return IMAP_URLAUTH_DENIED;
	}
	if (!trusted && strcasecmp(u.mech, "INTERNAL") != 0) {
		*why_r = "the URL's URLAUTH mechanism is not INTERNAL";
		return IMAP_URLAUTH_DENIED;
	}
	if (!imap_urlauth_owner(cfg, db, &u, owner, sizeof(owner), why_r))
		return IMAP_URLAUTH_DENIED;
	int mine = requester != NULL && strcasecmp(owner, requester) == 0;
	if (trusted && !mine) {
		*why_r = "a URL without URLAUTH may name only your own mailboxes";
		return IMAP_URLAUTH_DENIED;
	}
	if (mine && own != NULL) {
		acct = own;
	} else {
		const char *err;
		if (store_account_path(cfg->data_dir, owner, root, sizeof(root)) < 0 ||
		    (r = store_account_open_shared(root, &acct, &err)) < 0) {
			*why_r = "the mailbox cannot be read now";
			return IMAP_URLAUTH_UNAVAILABLE;
		}
		if (r == 0) {
			*why_r = "the URL names no mailbox of this server";
			return IMAP_URLAUTH_DENIED;
		}
		opened = 1;
	}
	unsigned char key[STORE_URLAUTH_KEY_LEN];
	char want[IMAP_URLAUTH_TOKEN_HEX + 1];
	const char *err;
	struct store_mailbox_info mb;
	int k = trusted ? 1 : store_urlauth_key(acct, u.box, 0, key, &err);
	r = IMAP_URLAUTH_OK;
	if (trusted) {
		if (store_mailbox_get(acct, u.box, &mb, &err) != 1 ||
		    (u.have_uidvalidity && mb.uidvalidity != u.uidvalidity)) {
			*why_r = "no such mailbox (or its UIDVALIDITY changed)";
			r = IMAP_URLAUTH_NOTFOUND;
		}
	} else if (k < 0) {
		*why_r = "the mailbox cannot be read now";
		r = IMAP_URLAUTH_UNAVAILABLE;
	} else if (k == 0) {
		*why_r = "the URL's access key was reset (RESETKEY) or never made";
		r = IMAP_URLAUTH_DENIED;
	} else if (imap_urlauth_token(key, url, u.rump_len, want) < 0 ||
		   !token_equal(want, u.token)) {
		*why_r = "the URL's URLAUTH token does not verify";
		r = IMAP_URLAUTH_DENIED;
	} else if (u.have_expire && time(NULL) >= u.expire) {
		*why_r = "the URL has expired (its EXPIRE is past)";
		r = IMAP_URLAUTH_DENIED;
	} else if (!imap_url_access_allows(u.access, requester, as_submit)) {
		*why_r = "the URL's access identifier does not allow you to fetch it";
		r = IMAP_URLAUTH_DENIED;
	} else if (store_mailbox_get(acct, u.box, &mb, &err) != 1 ||
		   (u.have_uidvalidity && mb.uidvalidity != u.uidvalidity)) {
		*why_r = "the URL's mailbox is not there any more";
		r = IMAP_URLAUTH_NOTFOUND;
	}
	explicit_bzero(key, sizeof(key));
	if (r == IMAP_URLAUTH_OK) {
		int fd = store_message_open(acct, u.box, u.uid, &err);
		if (fd < 0) {
			*why_r = "no message with the URL's UID";
			r = IMAP_URLAUTH_NOTFOUND;
		} else {
			size_t start = data->len;
			int p = imap_url_part(fd, &u, what, data, bps, why_r);
			close(fd);
			if (p == -1)
				r = IMAP_URLAUTH_NOTFOUND;
			else if (p == -2) {
				*why_r = "what the URL names is too big";
				r = IMAP_URLAUTH_TOOBIG;
			} else if (p == -3) {
				*why_r = "the part has an unknown content transfer encoding";
				r = IMAP_URLAUTH_CTE;
			} else if (nul_r)
				*nul_r = memchr(data->data + start, '\0', data->len - start) != NULL;
		}
	}
	if (opened)
		store_account_close(&acct);
	return r;
}
