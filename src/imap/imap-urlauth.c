/* imap-urlauth.c - URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, RESETKEY and
 * URLFETCH, and the resolver SMTP's BURL shares (imap-urlauth.h).
 *
 * Keys live in the owner's index.db (store_urlauth_key): GENURLAUTH and RESETKEY write it on the
 * pool (imap-write.c); URLFETCH only reads, on the loop, as FETCH does. A URL of another
 * user's mailbox opens that account's shared handle for the lookup and closes it again.
 */
#include "imap-private.h"
#include "imap-urlauth.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "acctdb.h"
#include "imap-quote.h"
#include "log.h"
#include "mime.h"
#include "store-path.h"
#include "tls-crypto.h"

#define URLAUTH_URLS_MAX 100        /* URLs in one GENURLAUTH or URLFETCH (RFC 4467 sets no
				     * number; each URLFETCH URL reads a message on the loop) */
#define URLFETCH_SLICE 262144       /* octets written per turn */

/* ---- shared with BURL ---- */

/* See imap-urlauth.h. */
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
static int host_is_ours(struct worker *w, const char *host)
{
	const struct config *cfg = w->cfg;
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
	       acctdb_domain_exists(w->db, dom, &err) == 1;
}

/* See imap-urlauth.h. */
int imap_urlauth_owner(struct worker *w, const struct imap_url *u, char *owner, size_t len,
		       const char **why_r)
{
	char addr[sizeof(u->user) + sizeof(u->host) + 1];
	struct acct_user au;
	const char *err;
	if (u->form != IMAP_URL_ABSOLUTE || u->user[0] == '\0') {
		*why_r = "a URLAUTH URL is absolute and names its user (imap://user@host/...)";
		return 0;
	}
	if (!host_is_ours(w, u->host)) {
		*why_r = "the URL names another server";
		return 0;
	}
	if (strchr(u->user, '@') != NULL)
		snprintf(addr, sizeof(addr), "%s", u->user);
	else
		snprintf(addr, sizeof(addr), "%s@%s", u->user, u->host);
	int r = acctdb_normalize_address(addr, owner, len) == 0 ?
			acctdb_user_get(w->db, owner, &au, &err) : 0;
	explicit_bzero(&au, sizeof(au));
	if (r != 1) {
		*why_r = "the URL names no account of this server";
		return 0;
	}
	return 1;
}

/* See imap-urlauth.h. */
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

/* See imap-urlauth.h. */
int imap_urlauth_fetch(struct worker *w, const char *url, const char *requester, int as_submit,
		       struct store_account *own, unsigned what, struct buf *data,
		       struct buf *bps, int *nul_r, const char **why_r)
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
	if (!imap_urlauth_owner(w, &u, owner, sizeof(owner), why_r))
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
		if (store_account_path(w->cfg->data_dir, owner, root, sizeof(root)) < 0 ||
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

/* ---- GENURLAUTH ---- */

struct gen_job {
	struct imap_wjob job;
	size_t n;
	char **urls;                /* rumps; the job appends ":INTERNAL:token" */
	char (*boxes)[1024];
	int missing;                /* a URL's mailbox does not exist */
};

static void gen_free(struct gen_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		free(j->urls[i]);
	free(j->urls);
	free(j->boxes);
}

/* Pool: each mailbox's key (made when there is none), then the tokens. */
static void gen_work(struct imap_wjob *w)
{
	struct gen_job *j = (struct gen_job *)w;
	const char *err;
	for (size_t i = 0; i < j->n; i++) {
		unsigned char key[STORE_URLAUTH_KEY_LEN];
		char hex[IMAP_URLAUTH_TOKEN_HEX + 1];
		int r = store_urlauth_key(w->acct, j->boxes[i], 1, key, &err);
		if (r == 0) {
			j->missing = 1;
			return;
		}
		if (r < 0 || imap_urlauth_token(key, j->urls[i], strlen(j->urls[i]), hex) < 0) {
			explicit_bzero(key, sizeof(key));
			imap_wjob_error(w, r < 0 ? err : "HMAC failed");
			return;
		}
		explicit_bzero(key, sizeof(key));
		size_t l = strlen(j->urls[i]);
		char *full = malloc(l + sizeof(":INTERNAL:") + IMAP_URLAUTH_TOKEN_HEX);
		if (full == NULL) {
			imap_wjob_error(w, "out of memory");
			return;
		}
		sprintf(full, "%s:INTERNAL:%s", j->urls[i], hex);
		free(j->urls[i]);
		j->urls[i] = full;
	}
}

/* Loop: the URLs, or what went wrong. */
static void gen_done(struct imap_wjob *w)
{
	struct gen_job *j = (struct gen_job *)w;
	struct imap_session *s = w->s;
	if (imap_wjob_failed(w, "GENURLAUTH")) {
	} else if (j->missing) {
		imap_tagged(s, "NO", "GENURLAUTH failed: a URL names a mailbox that does not exist");
	} else if (w->err) {
		log_warn("sess=%016llx proto=imap event=genurlauth-failed error=\"%s\"",
			 (unsigned long long)s->base.id, w->err);
		imap_tagged(s, "NO", "[UNAVAILABLE] GENURLAUTH failed: your mailbox cannot be "
				     "written now; please try again later");
	} else {
		struct buf out;
		buf_init(&out, IMAP_OUT_MAX);
		buf_appendstr(&out, "* GENURLAUTH");
		for (size_t i = 0; i < j->n; i++) {
			buf_appendstr(&out, " ");
			imap_append_astring(&out, j->urls[i], strlen(j->urls[i]));
		}
		buf_appendstr(&out, "\r\n");
		imap_write(s, out.data, out.len);
		buf_free(&out);
		imap_tagged(s, "OK", "GENURLAUTH completed");
	}
	gen_free(j);
}

/* GENURLAUTH url INTERNAL [url INTERNAL ...] (RFC 4467 6.2). */
void imap_cmd_genurlauth(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n == 0 || n % 2 != 0 || n / 2 > URLAUTH_URLS_MAX) {
		imap_bad(s, "Use GENURLAUTH \"imap://user@host/box/;UID=n;URLAUTH=access\" INTERNAL "
			    "(at most %d URLs)", URLAUTH_URLS_MAX);
		return;
	}
	struct gen_job *j = calloc(1, sizeof(*j));
	if (j == NULL || (j->urls = calloc(n / 2, sizeof(*j->urls))) == NULL ||
	    (j->boxes = calloc(n / 2, sizeof(*j->boxes))) == NULL) {
		if (j)
			free(j->urls);
		free(j);
		imap_tagged(s, "NO", "[UNAVAILABLE] Out of memory; please try again later");
		return;
	}
	for (size_t i = 0; i < n; i += 2) {
		const struct imap_arg *a = &args[i], *m = &args[i + 1];
		struct imap_url u;
		char owner[321];
		const char *why = NULL;
		if (!imap_arg_is_astring(a) || a->type == IMAP_ARG_NIL ||
		    m->type != IMAP_ARG_ATOM) {
			imap_bad(s, "Use GENURLAUTH \"url\" INTERNAL ...");
			goto fail;
		}
		if (strcasecmp(m->str, "INTERNAL") != 0) {
			imap_tagged(s, "NO", "GENURLAUTH: the only URLAUTH mechanism here is "
					     "INTERNAL; nothing was made");
			goto fail;
		}
		const char *perr = "the URL contains NUL";
		if (memchr(a->str, '\0', a->len) != NULL || imap_url_parse(a->str, &u, &perr) < 0)
			why = perr;
		else if (!u.have_urlauth || u.have_token)
			why = "the URL must end in ;URLAUTH=access (anonymous, authuser, user+NAME "
			      "or submit+NAME) without a mechanism or token";
		else if (!imap_urlauth_owner(s->base.w, &u, owner, sizeof(owner), &why))
			;
		else if (strcasecmp(owner, s->user) != 0)
			why = "you can authorize URLs of your own mailboxes only";
		if (why != NULL) {
			/* url-resp-text (RFC 4469 6): no "]", CR or LF; no controls here */
			char echo[201];
			size_t e = 0;
			for (; e < a->len && e < sizeof(echo) - 1; e++) {
				unsigned char ch = (unsigned char)a->str[e];
				echo[e] = ch < 0x20 || ch == ']' || ch == 0x7f ? '?' : (char)ch;
			}
			echo[e] = '\0';
			imap_tagged(s, "NO", "[BADURL %s] GENURLAUTH: %s; nothing was made",
				    e ? echo : "?", why);
			goto fail;
		}
		j->urls[j->n] = strdup(a->str);
		if (j->urls[j->n] == NULL) {
			imap_tagged(s, "NO", "[UNAVAILABLE] Out of memory; please try again later");
			goto fail;
		}
		snprintf(j->boxes[j->n], sizeof(j->boxes[j->n]), "%s", u.box);
		j->n++;
	}
	imap_write_job(s, &j->job, gen_work, gen_done);
	return;
fail:
	gen_free(j);
	free(j);
}

/* ---- RESETKEY ---- */

struct reset_job {
	struct imap_wjob job;
	char box[1024];
	int all, rc;
};

static void reset_work(struct imap_wjob *w)
{
	struct reset_job *j = (struct reset_job *)w;
	const char *err;
	j->rc = store_urlauth_reset(w->acct, j->all ? NULL : j->box, &err);
	if (j->rc < 0)
		imap_wjob_error(w, err);
}

static void reset_done(struct imap_wjob *w)
{
	struct reset_job *j = (struct reset_job *)w;
	struct imap_session *s = w->s;
	if (imap_wjob_failed(w, "RESETKEY"))
		return;
	if (j->rc == 0)
		imap_tagged(s, "NO", "[NONEXISTENT] RESETKEY: no such mailbox");
	else if (j->rc < 0)
		imap_tagged(s, "NO", "[UNAVAILABLE] RESETKEY failed: your mailbox cannot be "
				     "written now; please try again later");
	else
		imap_tagged(s, "OK", "RESETKEY completed: URLs made before no longer work");
}

/* RESETKEY [mailbox [INTERNAL ...]] (RFC 4467 6.1). */
void imap_cmd_resetkey(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	struct reset_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		imap_tagged(s, "NO", "[UNAVAILABLE] Out of memory; please try again later");
		return;
	}
	j->all = n == 0;
	if (n > 0 && imap_mailbox_arg(s, &args[0], j->box, sizeof(j->box)) < 0) {
		free(j);
		imap_bad(s, "RESETKEY: invalid mailbox name");
		return;
	}
	for (size_t i = 1; i < n; i++) {
		if (args[i].type != IMAP_ARG_ATOM || strcasecmp(args[i].str, "INTERNAL") != 0) {
			free(j);
			imap_tagged(s, "NO", "RESETKEY: the only URLAUTH mechanism here is INTERNAL");
			return;
		}
	}
	imap_write_job(s, &j->job, reset_work, reset_done);
}

/* ---- URLFETCH ---- */

struct urlfetch_ctx {
	size_t n, pos;
	char **urls;
	unsigned *what;             /* IMAP_URLPART_* */
	int *ext;                   /* the (url params) form; 2: BODY, 1: BINARY or neither */
	struct buf out;
	size_t off;
};

static void urlfetch_free(void *p)
{
	struct urlfetch_ctx *c = p;
	for (size_t i = 0; i < c->n; i++)
		free(c->urls[i]);
	free(c->urls);
	free(c->what);
	free(c->ext);
	buf_free(&c->out);
	free(c);
}

/* d[0..n) as a literal into out: a literal8 when literal8 (BINARY data holding NUL); a plain
 * literal never carries NUL (RFC 3501 4.3), so each goes out as 0x80, as FETCH sends it. */
static void put_data(struct buf *out, const char *d, size_t n, int literal8)
{
	buf_appendf(out, "%s{%zu}\r\n", literal8 ? "~" : "", n);
	size_t start = out->len;
	if (buf_append(out, d, n) < 0 || literal8)
		return;
	for (size_t i = start; i < out->len; i++)
		if (out->data[i] == '\0')
			out->data[i] = (char)0x80;
}

/* One URL's answer into c->out. */
static void urlfetch_one(struct imap_session *s, struct urlfetch_ctx *c, size_t i)
{
	struct buf data, bps;
	const char *why = NULL;
	int nul = 0;
	buf_init(&data, s->base.lc->message_size_limit);
	buf_init(&bps, 1u << 20);
	int r = imap_urlauth_fetch(s->base.w, c->urls[i], s->user, 0, s->acct, c->what[i], &data,
				   &bps, &nul, &why);
	buf_appendstr(&c->out, "* URLFETCH ");
	imap_append_astring(&c->out, c->urls[i], strlen(c->urls[i]));
	if (r != IMAP_URLAUTH_OK && r != IMAP_URLAUTH_CTE) {
		buf_appendstr(&c->out, " NIL\r\n");
		log_info("sess=%016llx proto=imap event=urlfetch-refused reason=\"%s\"",
			 (unsigned long long)s->base.id, why ? why : "?");
	} else if (!c->ext[i]) {
		buf_appendstr(&c->out, " ");
		put_data(&c->out, data.data ? data.data : "", data.len, 0);
		buf_appendstr(&c->out, "\r\n");
	} else {
		int sp = 0;
		buf_appendstr(&c->out, " (");
		if (c->what[i] & IMAP_URLPART_BPS) {
			buf_appendstr(&c->out, "BODYPARTSTRUCTURE ");
			buf_append(&c->out, bps.data ? bps.data : "NIL", bps.data ? bps.len : 3);
			sp = 1;
		}
		if ((c->what[i] & IMAP_URLPART_BINARY) || c->ext[i] == 2) {
			buf_appendstr(&c->out, sp ? " " : "");
			buf_appendstr(&c->out, c->ext[i] == 2 ? "BODY " : "BINARY ");
			if (r == IMAP_URLAUTH_CTE)
				buf_appendstr(&c->out, "NIL");
			else
				put_data(&c->out, data.data ? data.data : "", data.len,
					 nul && c->ext[i] != 2);
		}
		buf_appendstr(&c->out, ")\r\n");
	}
	buf_free(&data);
	buf_free(&bps);
}

/* Write the answers while the socket takes them. 1 done, 0 call again. */
static int urlfetch_resume(struct imap_session *s)
{
	struct urlfetch_ctx *c = s->cmd_ctx;
	for (;;) {
		while (c->off < c->out.len) {
			if (conn_out_pending(&s->conn) > IMAP_OUT_HIWAT)
				return 0;
			size_t take = c->out.len - c->off;
			if (take > URLFETCH_SLICE)
				take = URLFETCH_SLICE;
			imap_write(s, c->out.data + c->off, take);
			c->off += take;
		}
		if (c->pos >= c->n || s->closing)
			break;
		if (conn_out_pending(&s->conn) > IMAP_OUT_HIWAT)
			return 0;
		buf_reset(&c->out);
		c->off = 0;
		urlfetch_one(s, c, c->pos++);
	}
	imap_tagged(s, "OK", "URLFETCH completed");
	return 1;
}

/* URLFETCH url ... (RFC 4467 6.3), each url or (url [BODYPARTSTRUCTURE] [BINARY|BODY])
 * (RFC 5524). Every URL gets an answer; one that does not verify or resolve gets NIL. */
void imap_cmd_urlfetch(struct imap_session *s, const struct imap_arg *args, size_t n)
{
	if (n == 0 || n > URLAUTH_URLS_MAX) {
		imap_bad(s, "Use URLFETCH url ... (at most %d URLs)", URLAUTH_URLS_MAX);
		return;
	}
	struct urlfetch_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->urls = calloc(n, sizeof(*c->urls))) == NULL ||
	    (c->what = calloc(n, sizeof(*c->what))) == NULL ||
	    (c->ext = calloc(n, sizeof(*c->ext))) == NULL) {
		if (c) {
			free(c->urls);
			free(c->what);
		}
		free(c);
		imap_tagged(s, "NO", "[UNAVAILABLE] Out of memory; please try again later");
		return;
	}
	buf_init(&c->out, (size_t)s->base.lc->message_size_limit * 2 + 65536);
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &args[i];
		if (a->type == IMAP_ARG_LIST) {
			if (a->nlist == 0 || !imap_arg_is_astring(&a->list[0]) ||
			    a->list[0].type == IMAP_ARG_NIL)
				goto bad;
			c->ext[c->n] = 1;
			for (size_t k = 1; k < a->nlist; k++) {
				const struct imap_arg *p = &a->list[k];
				if (p->type != IMAP_ARG_ATOM)
					goto bad;
				if (strcasecmp(p->str, "BODYPARTSTRUCTURE") == 0)
					c->what[c->n] |= IMAP_URLPART_BPS;
				else if (strcasecmp(p->str, "BINARY") == 0 && c->ext[c->n] != 2)
					c->what[c->n] |= IMAP_URLPART_BINARY;
				else if (strcasecmp(p->str, "BODY") == 0 &&
					 !(c->what[c->n] & IMAP_URLPART_BINARY))
					c->ext[c->n] = 2;
				else
					goto bad;
			}
			if (a->nlist == 1)
				c->ext[c->n] = 0;   /* (url) alone: the plain answer */
			a = &a->list[0];
		} else if (!imap_arg_is_astring(a) || a->type == IMAP_ARG_NIL) {
			goto bad;
		}
		if (memchr(a->str, '\0', a->len) != NULL || (c->urls[c->n] = strdup(a->str)) == NULL)
			goto bad;
		c->n++;
	}
	s->cmd_ctx = c;
	s->cmd_free = urlfetch_free;
	s->resume = urlfetch_resume;
	return;
bad:
	urlfetch_free(c);
	imap_bad(s, "Use URLFETCH url ... or (url [BODYPARTSTRUCTURE] [BINARY or BODY]) ...; "
		    "BINARY and BODY do not go together");
}
