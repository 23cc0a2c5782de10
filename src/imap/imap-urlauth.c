/* imap-urlauth.c - URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524): GENURLAUTH, RESETKEY and
 * URLFETCH, on the resolver SMTP's BURL shares
 * (auth/urlauth.c).
 *
 * Keys live in the owner's index.db (store_urlauth_key): GENURLAUTH and RESETKEY write it on the
 * pool (imap-write.c); URLFETCH only reads, on the loop, as FETCH does. A URL of another
 * user's mailbox opens that account's shared handle for the lookup and closes it again.
 */
#include "imap-private.h"

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
#include "urlauth.h"

#define URLAUTH_URLS_MAX 100        /* URLs in one GENURLAUTH or URLFETCH (RFC 4467 sets no
				     * number; each URLFETCH URL reads a message on the loop) */
#define URLFETCH_SLICE 262144       /* octets written per turn */

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
		else if (!imap_urlauth_owner(s->base.w->cfg, s->base.w->db, &u, owner,
					     sizeof(owner), &why))
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
	int r = imap_urlauth_fetch(s->base.w->cfg, s->base.w->db, c->urls[i], s->user, 0, s->acct,
				   c->what[i], &data, &bps, &nul, &why);
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
		if (c->pos >= c->n || s->base.closing)
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
