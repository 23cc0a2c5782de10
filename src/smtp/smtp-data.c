/* smtp-data.c - receiving a message (DATA and BDAT) and delivering it before the final reply.
 *
 * The message goes to a temp file under <data>/tmp with our trace headers in front. At the end
 * it joins the group commit: the messages for one mailbox that finish together form a batch, one
 * thread-pool job that syncs their files, links them into the Maildir (store_deliver_batch:
 * a link into new/, one fsync of new/, one index transaction) and each into its other targets
 * and the outbound spool; only then does each session answer 250. Any failure is a 4xx and
 * leaves no partial message visible; a failed shared sync is a 4xx for the whole batch.
 *
 * SMTP smuggling: only <CRLF>.<CRLF> ends DATA. A line ending in a bare LF never ends the message,
 * and neither does a "." after such a line; bare CR is never a line end at all.
 */
#include "fsutil.h"
#include "smtp-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "acctdb.h"
#include "addr.h"
#include "urlauth.h"
#include "log.h"
#include "metrics.h"
#include "originator.h"
#include "pool.h"
#include "procid.h"
#include "store-path.h"
#include "queue-spool.h"
#include "smtp-authin.h"
#include "smtp-dkim.h"
#include "smtp-milter.h"
#include "smtp-phish.h"
#include "store.h"

#define SMTP_WBUF_FLUSH 65536        /* write the temp file in chunks of this size */
#define SMTP_PARTIAL_LINE 4096       /* pass on a line without LF once this much is buffered */


/* RFC 5322 date-time for the Received header. */
static void smtp_date(char *out, size_t outlen)
{
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(out, outlen, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* Write buffered message bytes to the temp file. */
static void tx_flush(struct smtp_tx *tx)
{
	if (tx->wbuf.len > 0)
		tx->crc = crc32_z(tx->crc, (const unsigned char *)tx->wbuf.data, tx->wbuf.len);
	if (!tx->write_failed && fs_write_all(tx->fd, tx->wbuf.data, tx->wbuf.len) < 0)
		tx->write_failed = 1;
	buf_reset(&tx->wbuf);
}

/* Append raw bytes to the file (trace headers and body). */
static void tx_write(struct smtp_tx *tx, const char *p, size_t n)
{
	if (tx->write_failed)
		return;
	if (tx->wbuf.len + n > SMTP_WBUF_FLUSH)
		tx_flush(tx);
	if (n > SMTP_WBUF_FLUSH) {
		buf_append(&tx->wbuf, p, n);   /* wbuf's max allows it; flushed right away */
		tx_flush(tx);
		return;
	}
	if (buf_append(&tx->wbuf, p, n) < 0)
		tx->write_failed = 1;
}

/* Body bytes: count against the size limit, capture the header section, write. */
static void tx_body(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = s->tx;
	if (tx->too_big)
		return;
	if (n > s->base.lc->message_size_limit - tx->size) {
		tx->too_big = 1;
		return;
	}
	tx->size += n;
	/* the header section is kept only for the From: check of an authenticated user: a port 25
	 * client must not make each session hold up to SMTP_HEADER_CAPTURE_MAX */
	if (!tx->headers_done && s->auth_user[0]) {
		size_t old = tx->headers.len;
		if (buf_append(&tx->headers, p, n) < 0) {
			tx->headers_done = 2;   /* header section too large to check */
		} else {
			size_t from = old >= 3 ? old - 3 : 0;
			const char *h = tx->headers.data;
			for (size_t i = from; i + 1 < tx->headers.len; i++) {
				if (i == 0 && (h[0] == '\n' || (h[0] == '\r' && h[1] == '\n'))) {
					tx->headers.len = 0;
					tx->headers_done = 1;
					break;
				}
				if (h[i] == '\n' && (h[i + 1] == '\n' ||
				    (h[i + 1] == '\r' && i + 2 < tx->headers.len && h[i + 2] == '\n'))) {
					tx->headers.len = i + 1;
					tx->headers_done = 1;
					break;
				}
			}
		}
	}
	tx_write(tx, p, n);
}

/* See smtp-private.h. */
uint64_t smtp_file_seq(void)
{
	static atomic_uint_fast64_t seq;
	return atomic_fetch_add(&seq, 1) + 1;
}

/* Open the temp file and write Return-Path and Received. 0 ok, -1 replied 451. */
int smtp_data_begin(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	const struct config *cfg = s->base.w->cfg;
	/* a file without a name: the deliveries link it where it goes (the mailbox's new/, the
	 * queue), nothing is unlinked afterwards, and a worker that dies leaves nothing behind.
	 * Where the file system has no O_TMPFILE (or there is no /proc to link it through), a
	 * named file; the pid in the name lets the master clean up after a worker that died. */
	static int proc_links = -1;   /* /proc/self/fd/N is how an unnamed file gets linked */
	if (proc_links < 0)
		proc_links = access("/proc/self/fd", X_OK) == 0;
	snprintf(tx->tmppath, sizeof(tx->tmppath), "%s/tmp", cfg->data_dir);
	tx->fd = proc_links ? open(tx->tmppath, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
	if (tx->fd >= 0) {
		tx->tmppath[0] = '\0';
	} else if (!proc_links || errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
		snprintf(tx->tmppath, sizeof(tx->tmppath), "%s/tmp/in.%d.XXXXXX", cfg->data_dir,
			 (int)proc_pid());
		tx->fd = mkostemp(tx->tmppath, O_CLOEXEC);
	}
	tx->fseq = smtp_file_seq();
	if (tx->fd < 0) {
		log_warn("sess=%016llx proto=smtp event=tmpfile-failed path=%s error=\"%s\"",
			 (unsigned long long)s->base.id, tx->tmppath, strerror(errno));
		tx->tmppath[0] = '\0';
		smtp_reply(s, "451 4.3.0 Temporary storage failure; please try again later");
		return -1;
	}
	buf_init(&tx->wbuf, SIZE_MAX / 2);
	buf_init(&tx->headers, SMTP_HEADER_CAPTURE_MAX);
	tx->at_line_start = 1;
	tx->prev_crlf = 1;
	char date[64];
	if (tx->id[0] == '\0')
		queue_new_id(tx->id);   /* the queue's id format: names the spool files */
	smtp_date(date, sizeof(date));
	const char *proto = !s->esmtp ? "SMTP" : s->base.tls && s->auth_user[0] ? "ESMTPSA" :
			    s->base.tls ? "ESMTPS" : s->auth_user[0] ? "ESMTPA" : "ESMTP";
	if (tx->smtputf8)
		proto = s->base.tls && s->auth_user[0] ? "UTF8SMTPSA" : s->base.tls ? "UTF8SMTPS" :
			s->auth_user[0] ? "UTF8SMTPA" : "UTF8SMTP";
	struct buf h;
	buf_init(&h, 8192);
	buf_appendf(&h, "Return-Path: <%s>\r\n", tx->null_sender ? "" : tx->from);
	buf_appendf(&h, "Received: from %s ([%s])\r\n\tby %s (postino) with %s id %s", s->helo,
		    s->base.peer_ip, cfg->hostname, proto, tx->id);
	if (s->base.tls)
		buf_appendf(&h, "\r\n\t(%s)", s->tls_info);
	if (s->auth_user[0])
		buf_appendf(&h, "\r\n\t(authenticated as %s)", s->auth_user);
	if (tx->nrcpts == 1)
		buf_appendf(&h, "\r\n\tfor <%s>", tx->rcpts[0].addr);
	buf_appendf(&h, "; %s\r\n", date);
	tx->header_len = h.len;
	tx_write(tx, h.data, h.len);
	buf_free(&h);
	return 0;
}

/* Handle one DATA line of n octets including its LF. Returns 1 at the end-of-data line. */
static int data_line(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = s->tx;
	int crlf = n >= 2 && p[n - 2] == '\r';
	size_t clen = n - (crlf ? 2 : 1);
	if (crlf && clen == 1 && p[0] == '.' && tx->at_line_start && tx->prev_crlf)
		return 1;
	const char *q = p;
	if (tx->at_line_start && clen > 0 && q[0] == '.') {   /* dot-unstuffing, RFC 5321 4.5.2 */
		q++;
		clen--;
	}
	/* a bare LF line end, or a bare CR inside the line: never ends DATA; the message is
	 * refused or stored with CRLF, as configured */
	if (!crlf || memchr(q, '\r', clen) != NULL)
		tx->bare_lf = 1;
	tx_body(s, q, clen);
	tx_body(s, "\r\n", 2);
	tx->at_line_start = 1;
	tx->prev_crlf = crlf;
	return 0;
}

/* Consume DATA input. */
size_t smtp_data_feed(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = s->tx;
	size_t used = 0;
	while (used < n) {
		const char *lf = memchr(p + used, '\n', n - used);
		if (lf == NULL) {
			size_t rest = n - used;
			if (rest < SMTP_PARTIAL_LINE)
				break;
			/* a long line: pass on what we have, keeping a trailing CR for the LF check */
			if (p[n - 1] == '\r')
				rest--;
			if (tx->at_line_start && p[used] == '.') {
				used++;
				rest--;
			}
			if (memchr(p + used, '\r', rest) != NULL)
				tx->bare_lf = 1;
			tx_body(s, p + used, rest);
			used += rest;
			tx->at_line_start = 0;
			break;
		}
		size_t len = (size_t)(lf - (p + used)) + 1;   /* including LF */
		int end = data_line(s, p + used, len);
		used += len;
		if (end) {
			smtp_data_finish(s);
			break;
		}
	}
	return used;
}

/* Consume BDAT chunk bytes (binary, no dot-stuffing). */
size_t smtp_bdat_feed(struct smtp_session *s, const char *p, size_t n)
{
	struct smtp_tx *tx = s->tx;
	size_t take = n < s->bdat_remaining ? n : (size_t)s->bdat_remaining;
	if (!tx->bdat_failed && take > 0)
		tx_body(s, p, take);
	s->bdat_remaining -= take;
	if (s->bdat_remaining > 0)
		return take;
	char sz[32];
	if (tx->bdat_failed) {
		smtp_reply(s, "503 5.5.1 BDAT refused: send MAIL FROM and a valid RCPT TO first");
		smtp_count_error(s);
		if (s->bdat_last || tx->nrcpts == 0) {
			smtp_tx_free(&s->tx);
			smtp_set_state(s, s->helo[0] ? SMTP_ST_READY : SMTP_ST_GREET);
		} else {
			smtp_set_state(s, SMTP_ST_RCPT);
		}
		return take;
	}
	if (tx->too_big) {
		smtp_reply(s, "552 5.3.4 Message too big: the limit is %s; make it smaller",
			   smtp_size_text(s->base.lc->message_size_limit, sz, sizeof(sz)));
		tx->bdat_failed = 1;
		if (s->bdat_last) {
			smtp_tx_free(&s->tx);
			smtp_set_state(s, SMTP_ST_READY);
		} else {
			smtp_set_state(s, SMTP_ST_RCPT);
		}
		return take;
	}
	if (s->bdat_last) {
		smtp_data_finish(s);
		return take;
	}
	smtp_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)tx->size);
	smtp_set_state(s, SMTP_ST_RCPT);
	return take;
}

/* See smtp-private.h. */
void smtp_burl(struct smtp_session *s, const char *url, int last)
{
	struct smtp_tx *tx = s->tx;
	const struct listener_conf *lc = s->base.lc;
	char sz[32], esc[160];
	struct buf data;
	const char *why = "?";
	/* one octet over what the message may still grow by tells "too big" apart */
	buf_init(&data, (size_t)(lc->message_size_limit - tx->size) + 1);
	int r = imap_urlauth_fetch(s->base.w->cfg, s->base.w->db, url, s->auth_user, 1, NULL,
				   IMAP_URLPART_TRUSTED, &data, NULL, NULL, &why);
	/* in slices as the network would bring them: tx_body looks for the end of the header
	 * section within what it has captured, at most SMTP_HEADER_CAPTURE_MAX */
	for (size_t off = 0; r == IMAP_URLAUTH_OK && off < data.len; off += SMTP_WBUF_FLUSH)
		tx_body(s, data.data + off,
			data.len - off < SMTP_WBUF_FLUSH ? data.len - off : SMTP_WBUF_FLUSH);
	if (r == IMAP_URLAUTH_OK && tx->too_big)
		r = IMAP_URLAUTH_TOOBIG;
	buf_free(&data);
	if (r != IMAP_URLAUTH_OK) {
		log_info("sess=%016llx proto=smtp event=burl-refused user=%s url=\"%s\" reason=\"%s\"",
			 (unsigned long long)s->base.id, s->auth_user,
			 log_escape(url, strlen(url), esc, sizeof(esc)), why);
		if (r == IMAP_URLAUTH_DENIED)
			smtp_reply(s, "554 5.7.0 BURL refused: %s; make a new URL with IMAP GENURLAUTH "
				      "(access submit+%s) and send the message again", why,
				   s->auth_user);
		else if (r == IMAP_URLAUTH_TOOBIG)
			smtp_reply(s, "552 5.3.4 Message too big: the limit is %s; make it smaller",
				   smtp_size_text(lc->message_size_limit, sz, sizeof(sz)));
		else if (r == IMAP_URLAUTH_UNAVAILABLE)
			smtp_reply(s, "451 4.6.6 BURL failed: %s; please try again later", why);
		else
			smtp_reply(s, "554 5.6.6 BURL: the URL does not resolve: %s; check the "
				      "mailbox, UID and section it names", why);
		smtp_count_error(s);
		tx->bdat_failed = 1;   /* the message lacks a part: nothing more of it is taken */
		if (last) {
			smtp_tx_free(&s->tx);
			smtp_set_state(s, SMTP_ST_READY);
		}
		return;
	}
	if (last) {
		smtp_data_finish(s);
		return;
	}
	smtp_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)tx->size);
}

/* originator_check callback: may the session's user send as address? */
static int may_send_as(void *ctx, const char *address)
{
	struct smtp_session *s = ctx;
	const char *err;
	return acctdb_may_send_as(s->base.w->db, s->auth_user, address, &err);
}

/* Check the originator fields (From, Sender, Resent-From, Resent-Sender) of an authenticated
 * user's message with the shared header reader, so what is checked is what IMAP and mail
 * programs show. 1 ok, 0 replied. */
static int smtp_check_from_header(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	struct orig_verdict v;
	char what[64];
	if (tx->headers_done == 2) {
		smtp_reply(s, "552 5.3.4 Message header section too large (limit %u KB)",
			   SMTP_HEADER_CAPTURE_MAX / 1024);
		return 0;
	}
	const char *h = tx->headers.data ? tx->headers.data : "";
	switch (originator_check(h, tx->headers.len, may_send_as, s, &v)) {
	case ORIG_OK:
		return 1;
	case ORIG_LOOKUP_FAILED:
		smtp_reply(s, "451 4.3.0 Temporary lookup failure; please try again later");
		return 0;
	case ORIG_NOT_YOURS:
		snprintf(what, sizeof(what), "%s: header", v.field);
		smtp_reply_not_yours(s, what, v.address);
		return 0;
	case ORIG_BAD_ADDRESS:
		smtp_reply(s, "553 5.7.1 The %s: header is not a valid address; as %s use %s: %s",
			   v.field, s->auth_user, v.field, s->auth_user);
		return 0;
	case ORIG_MULTIPLE_FROM:
		smtp_reply(s, "553 5.7.1 The message has more than one From: header; a message has "
			      "exactly one, as %s use From: %s", s->auth_user, s->auth_user);
		return 0;
	case ORIG_MALFORMED:
		smtp_reply(s, "553 5.7.1 Header line %zu is not a valid header field: %s; fix the "
			      "message header (every line is Name: value or a continuation)",
			   v.line, v.why);
		return 0;
	}
	return 0;
}

struct deliver_job {
	struct smtp_session *s;
	const struct config *cfg;
	struct smtp_tx *tx;
	char id[17];
	int result;                /* 0 ok, -1 temporary failure */
	char why[1024];
	unsigned delivered, spooled;
	char *dkim;                /* DKIM-Signature fields for the queue, or NULL */
	struct smtp_phish ph;      /* the phishing mark of port 25 mail (zeroed: inactive) */
	/* group commit: the mailbox of the first local target (its account root; "" when the
	 * message has no local target) is the key that batches are formed by */
	char key[CONFIG_PATH_MAX + 700];
	int key_target;            /* index of that target in tx->targets, or -1 */
	struct deliver_job *next;  /* waiting list, then the batch (the first job leads it) */
	unsigned batch_len;        /* in the leading job: messages in the batch */
	unsigned batch_size;       /* in every job: messages of its batch (for the log) */
	/* port 25 authentication (smtp-authin.c), before the group commit */
	int junk;                  /* deliver the local copies into Junk (DMARC quarantine) */
	char reply[512];           /* a refusal (5xx) or temporary failure (4xx) to answer */
	/* milters (smtp-milter.c), after the authentication checks: reject and tempfail use
	 * `reply`, quarantine `junk` */
	int discard;               /* a milter discarded the message: 250, stored nowhere */
	int hold;                  /* a milter quarantined it: the queued copy is held too */
	struct pool_job aj;        /* the authentication checks (a job of authin_lane) */
	struct pool_job mj;        /* the milters' message stage (smtp_milter_submit) */
};

/* Write the envelope of the remote recipients next to a link of the body in <data>/queue. */
static int spool_remote(struct deliver_job *j)
{
	struct smtp_tx *tx = j->tx;
	char qdir[CONFIG_PATH_MAX + 8], body[CONFIG_PATH_MAX + 64], env[CONFIG_PATH_MAX + 64],
		envtmp[CONFIG_PATH_MAX + 64];
	snprintf(qdir, sizeof(qdir), "%s/queue", j->cfg->data_dir);
	snprintf(body, sizeof(body), "%s/%s.msg", qdir, j->id);
	snprintf(env, sizeof(env), "%s/%s.env", qdir, j->id);
	snprintf(envtmp, sizeof(envtmp), "%s/%s.env.tmp", qdir, j->id);
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", tx->fd);
	if (tx->tmppath[0] ? link(tx->tmppath, body) < 0 :
	    linkat(AT_FDCWD, proc, AT_FDCWD, body, AT_SYMLINK_FOLLOW) < 0) {
		snprintf(j->why, sizeof(j->why), "link into queue: %s", strerror(errno));
		return -1;
	}
	FILE *f = fopen(envtmp, "w");
	if (f == NULL) {
		snprintf(j->why, sizeof(j->why), "create envelope: %s", strerror(errno));
		unlink(body);
		return -1;
	}
	fprintf(f, "version 1\nid %s\narrived %lld\nfrom <%s>\n", j->id, (long long)time(NULL),
		tx->null_sender ? "" : tx->from);
	fprintf(f, "body %s\nsmtputf8 %d\nret %s\nenvid %s\nauth %s\nsize %llu\n",
		tx->body_8bit ? "8BITMIME" : "7BIT", tx->smtputf8, tx->ret[0] ? tx->ret : "-",
		tx->envid[0] ? tx->envid : "-", j->s->auth_user[0] ? j->s->auth_user : "-",
		(unsigned long long)(tx->size + tx->header_len));
	fprintf(f, "crc32 %08lx\n", tx->crc & 0xffffffffUL);
	int bad = j->dkim != NULL && queue_env_put_dkim(f, j->dkim) < 0;
	for (unsigned i = 0; i < tx->ntargets; i++) {
		if (tx->targets[i].local)
			continue;
		const struct smtp_rcpt *r = &tx->rcpts[tx->targets[i].rcpt];
		fprintf(f, "rcpt <%s> notify=%s orcpt=%s\n", tx->targets[i].addr,
			r->notify[0] ? r->notify : "-", r->orcpt[0] ? r->orcpt : "-");
	}
	bad |= fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
	bad |= fclose(f) != 0;
	if (bad || rename(envtmp, env) < 0 || fs_fsync_dir(qdir) < 0) {
		snprintf(j->why, sizeof(j->why), "write envelope: %s", strerror(errno));
		unlink(envtmp);
		unlink(env);
		unlink(body);
		return -1;
	}
	return 0;
}

/* An open account for root (created if missing), lent to the calling thread until
 * store_account_return (store_account_borrow: opening index.db costs several syncs). NULL on
 * error. */
static struct store_account *deliver_account(const char *root, const char **err_r)
{
	struct store_account *a;
	int r = store_account_borrow(root, &a, err_r);
	if (r == 0 && store_account_create(root, err_r) == 0)
		r = store_account_borrow(root, &a, err_r);
	return r == 1 ? a : NULL;
}

/* Pool thread: the parts of one message's delivery that are not shared with its batch: the
 * local targets other than the batch's mailbox, the outbound spool and the sending limits. */
static void deliver_rest(struct deliver_job *j)
{
	struct smtp_tx *tx = j->tx;
	const char *err = NULL;
	uint64_t total = tx->size + tx->header_len;
	int remote = 0;
	for (unsigned i = 0; i < tx->ntargets; i++) {
		if (!tx->targets[i].local) {
			remote = 1;
			continue;
		}
		if ((int)i == j->key_target)
			continue;
		char root[CONFIG_PATH_MAX + 700];
		if (store_account_path(j->cfg->data_dir, tx->targets[i].addr, root, sizeof(root)) < 0) {
			snprintf(j->why, sizeof(j->why), "bad mailbox path");
			j->result = -1;
			return;
		}
		struct store_account *acct = deliver_account(root, &err);
		if (acct == NULL) {
			snprintf(j->why, sizeof(j->why), "open mailbox of %s: %s",
				 tx->targets[i].addr, err ? err : "missing");
			j->result = -1;
			return;
		}
		uint32_t uid;
		int fd;
		uint64_t size;
		if (smtp_phish_file(&j->ph, tx->targets[i].addr, tx->fd, total, &fd, &size, j->why,
				    sizeof(j->why)) < 0) {
			store_account_return(&acct);
			j->result = -1;
			return;
		}
		/* DMARC quarantine: into Junk (INBOX if the user removed Junk) */
		if (j->junk &&
		    store_deliver(acct, "Junk", fd, size, 1, time(NULL), 0, &uid, &err) == 0) {
			store_account_return(&acct);
			j->delivered++;
			continue;
		}
		if (store_deliver(acct, NULL, fd, size, 1, time(NULL), 0, &uid, &err) < 0) {
			snprintf(j->why, sizeof(j->why), "deliver to %s: %s", tx->targets[i].addr, err);
			store_account_return(&acct);
			j->result = -1;
			return;
		}
		store_account_return(&acct);
		j->delivered++;
	}
	if (remote) {
		if (spool_remote(j) < 0) {
			j->result = -1;
			return;
		}
		j->spooled = 1;
		char qdir[CONFIG_PATH_MAX + 8];
		snprintf(qdir, sizeof(qdir), "%s/queue", j->cfg->data_dir);
		if (j->hold && queue_hold_msg(qdir, j->id, 1) < 0)
			log_warn("proto=smtp event=milter-hold-failed id=%s error=\"%s\"", j->id,
				 strerror(errno));
	}
	if (j->s->auth_user[0] && tx->nrcpts > 0)   /* counts for the sending limits */
		sendlimit_record(j->cfg->data_dir, j->s->auth_user, tx->rcpts[0].addr,
				 &tx->rcpts[0].is_new, tx->nrcpts, sizeof(tx->rcpts[0]));
}

/* Refuse every message of a batch with the same reason. */
static void batch_fail(struct deliver_job *lead, const char *why)
{
	for (struct deliver_job *j = lead; j; j = j->next) {
		j->result = -1;
		snprintf(j->why, sizeof(j->why), "%s", why);
	}
}

/* Pool thread, group commit: the received files of the batch are made durable with one sync
 * (a lone file: its fsync; either starts the writes itself); a failed sync refuses the whole
 * batch. Batches of different mailboxes sync on their own: the block layer merges the cache
 * flushes of concurrent syncs anyway, and one syncfs shared by the batches syncing at the same
 * time, tried, was slower (each waited for the others). Then the batch's mailbox gets all of
 * them with one fsync of new/ and one index transaction (store_deliver_batch), and each message
 * goes on to its other targets. */
static void batch_run(struct deliver_job *lead)
{
	struct deliver_job *j;
	char why[1024];
	const char *err = NULL;
	for (j = lead; j; j = j->next)
		j->result = 0;
	if (lead->batch_len > 1) {
		/* one syncfs for the batch: every file written so far is durable after it (data
		 * and inode, as after an fsync of each), with one cache flush of the disk instead of
		 * one per file. It reports the file system's write errors since the descriptor it
		 * is given was opened (errseq), so it gets the batch's oldest file: any error since
		 * the first of them was made fails the batch. */
		struct deliver_job *oldest = lead;
		for (j = lead->next; j; j = j->next)
			if (j->tx->fseq < oldest->tx->fseq)
				oldest = j;
		if (syncfs(oldest->tx->fd) != 0) {
			snprintf(why, sizeof(why), "sync of the received files (a batch of %u): %s",
				 lead->batch_len, strerror(errno));
			batch_fail(lead, why);
			return;
		}
	} else if (fsync(lead->tx->fd) != 0) {
		snprintf(why, sizeof(why), "fsync of message %s: %s", lead->id, strerror(errno));
		batch_fail(lead, why);
		return;
	}
	/* what our users send to other servers is DKIM-signed here, once (smtp-dkim.c); port 25
	 * mail to our users is looked at for phishing signs (smtp-phish.h) */
	for (j = lead; j; j = j->next) {
		struct smtp_tx *tx = j->tx;
		int remote = 0, local = 0;
		for (unsigned i = 0; i < tx->ntargets; i++) {
			remote |= !tx->targets[i].local;
			local |= tx->targets[i].local;
		}
		if (remote && j->s->auth_user[0] && smtp_dkim_sign(j->cfg->data_dir, j->id, tx->fd,
				tx->header_len, tx->size + tx->header_len, &j->dkim, j->why,
				sizeof(j->why)) < 0)
			j->result = -1;
		/* port 25 mail forwarded elsewhere (an alias): an ARC seal of the domain whose
		 * address forwarded it, so the next hop can trust our verdict (RFC 8617) */
		for (unsigned i = 0; remote && !j->s->auth_user[0] && tx->ar_value &&
		     i < tx->ntargets; i++) {
			if (tx->targets[i].local)
				continue;
			const char *at = strrchr(tx->rcpts[tx->targets[i].rcpt].addr, '@');
			if (at != NULL)
				smtp_arc_seal(j->cfg->data_dir, j->id, tx->fd, tx->header_len,
					      tx->size + tx->header_len, at + 1, tx->arc_prior,
					      tx->arc_prior_pass, tx->ar_value, &j->dkim);
			break;
		}
		if (j->result == 0 && smtp_phish_begin(&j->ph, j->cfg, tx->fd, local &&
				!j->s->auth_user[0] ? tx->size + tx->header_len : 0, tx->header_len,
				j->why, sizeof(j->why)) < 0)
			j->result = -1;
	}
	if (lead->key[0]) {
		struct store_account *acct = deliver_account(lead->key, &err);
		struct store_batch_item *items = calloc(lead->batch_len, sizeof(*items));
		if (acct == NULL || items == NULL) {
			snprintf(why, sizeof(why), "open mailbox of %s: %s",
				 lead->tx->targets[lead->key_target].addr,
				 items == NULL ? "out of memory" : err ? err : "missing");
			free(items);
			store_account_return(&acct);
			batch_fail(lead, why);
			return;
		}
		size_t n = 0;
		time_t now = time(NULL);
		for (j = lead; j; j = j->next) {
			int fd;
			uint64_t size;
			if (j->result < 0)
				continue;
			if (smtp_phish_file(&j->ph, j->tx->targets[j->key_target].addr, j->tx->fd,
					    j->tx->size + j->tx->header_len, &fd, &size, j->why,
					    sizeof(j->why)) < 0) {
				j->result = -1;
				continue;
			}
			items[n] = (struct store_batch_item){
				.src_fd = fd, .size = size,
				.src_already_synced = 1, .internaldate = now,
			};
			n++;
		}
		store_deliver_batch(acct, NULL, items, n);
		store_account_return(&acct);
		n = 0;
		for (j = lead; j; j = j->next) {
			if (j->result < 0)
				continue;
			const struct store_batch_item *it = &items[n++];
			if (it->result < 0) {
				snprintf(j->why, sizeof(j->why), "deliver to %s: %s",
					 j->tx->targets[j->key_target].addr, it->err);
				j->result = -1;
				continue;
			}
			j->delivered++;
		}
		free(items);
	}
	for (j = lead; j; j = j->next)
		if (j->result == 0)
			deliver_rest(j);
}

/* Pool thread: one batch; then each message's phishing state is released (its sender
 * remembered when it was delivered everywhere). */
static void batch_work(void *arg)
{
	struct deliver_job *lead = arg;
	batch_run(lead);
	for (struct deliver_job *j = lead; j; j = j->next)
		smtp_phish_end(&j->ph, j->result == 0);
}

/* Loop thread: the final reply of one message. */
static void deliver_done(struct deliver_job *j)
{
	struct smtp_session *s = j->s;
	s->base.job_running = 0;
	if (j->result == 0) {
		log_info("sess=%016llx proto=smtp event=accepted id=%s from=<%s> rcpts=%u local=%u "
			 "queued=%u size=%llu batch=%u", (unsigned long long)s->base.id, j->id,
			 j->tx->null_sender ? "" : j->tx->from, j->tx->nrcpts, j->delivered,
			 j->spooled, (unsigned long long)j->tx->size, j->batch_size);
		s->ntx++;
		metrics_count(MC_RECEIVED);
		metrics_add(MC_DELIVERED_LOCAL, j->delivered);
		metrics_observe(MH_DELIVERY, MP_SMTP, &s->base.deliver_ns);
		if (!s->base.closing)
			smtp_reply(s, "250 2.0.0 Ok: message %s accepted", j->id);
	} else if (j->discard) {
		/* RFC 5321 has no way to say "dropped": the sender sees success, the log says */
		log_info("sess=%016llx proto=smtp event=discarded id=%s from=<%s> rcpts=%u",
			 (unsigned long long)s->base.id, j->id, j->tx->null_sender ? "" : j->tx->from,
			 j->tx->nrcpts);
		if (!s->base.closing)
			smtp_reply(s, "250 2.0.0 Ok: message %s accepted", j->id);
	} else if (j->reply[0]) {   /* refused or deferred by the authentication checks/milters */
		log_info("sess=%016llx proto=smtp event=%s id=%s from=<%s> reply=\"%s\"",
			 (unsigned long long)s->base.id, j->reply[0] == '5' ? "refused" :
			 "deferred", j->id, j->tx->null_sender ? "" : j->tx->from, j->reply);
		if (!s->base.closing)
			smtp_reply(s, "%s", j->reply);
	} else {
		log_warn("sess=%016llx proto=smtp event=delivery-failed id=%s error=\"%s\"",
			 (unsigned long long)s->base.id, j->id, j->why);
		if (!s->base.closing)
			smtp_reply(s, "451 4.3.0 Temporary storage failure; the message was not "
				      "accepted, please try again later");
	}
	smtp_tx_free(&j->tx);
	free(j->dkim);
	free(j);
	if (s->base.closing) {
		session_reap_later(&s->base);
		return;
	}
	smtp_set_state(s, SMTP_ST_READY);
	/* the reply first: the socket takes it now, so epoll never watches for room to send it
	 * (resuming with output queued would add the interest, the send remove it again) */
	conn_flush(&s->conn);
	conn_pause_read(&s->conn, 0);
	if (s->base.w->stopping)
		s->base.ops->shutdown(&s->base);
}

/* Group commit on the loop thread. Finished messages wait in one list per worker process (one
 * loop each); a batch is every waiting message for one mailbox, up to SMTP_COMMIT_BATCH_MAX, run
 * as one pool job. A mailbox has at most one batch in flight, so the messages that finish while
 * its syncs run form the next batch; a message for an idle mailbox starts at once, so a lone
 * message never waits for company. */
#define SMTP_COMMIT_BATCH_MAX 64     /* messages per batch: bounds one job's memory and time */
#define SMTP_COMMIT_RUNNING_MAX 6    /* batches in flight: 2 of the 8 pool threads stay free for
				      * logins and IMAP/POP3 work */
static struct {
	struct deliver_job *head, *tail;      /* waiting for a batch, in finishing order */
	struct deliver_job *running[SMTP_COMMIT_RUNNING_MAX];   /* leaders of batches in flight */
	unsigned nrunning;
} commitq;

static void commit_kick(struct worker *w);

/* Is a batch for this mailbox in flight? */
static int commit_key_running(const char *key)
{
	for (unsigned i = 0; i < commitq.nrunning; i++)
		if (strcmp(commitq.running[i]->key, key) == 0)
			return 1;
	return 0;
}

/* Loop thread: a batch is done; answer each of its messages, then start what waits. */
static void batch_done(void *arg)
{
	struct deliver_job *lead = arg;
	struct worker *w = lead->s->base.w;
	for (unsigned i = 0; i < commitq.nrunning; i++) {
		if (commitq.running[i] == lead) {
			commitq.running[i] = commitq.running[--commitq.nrunning];
			break;
		}
	}
	for (struct deliver_job *j = lead, *next; j; j = next) {
		next = j->next;
		deliver_done(j);
	}
	commit_kick(w);
}

/* Start a batch for every mailbox that has messages waiting and none in flight, as far as
 * SMTP_COMMIT_RUNNING_MAX allows. */
static void commit_kick(struct worker *w)
{
	struct deliver_job **pp = &commitq.head;
	while (*pp != NULL && commitq.nrunning < SMTP_COMMIT_RUNNING_MAX) {
		struct deliver_job *lead = *pp;
		if (lead->key[0] && commit_key_running(lead->key)) {
			pp = &lead->next;
			continue;
		}
		*pp = lead->next;
		lead->next = NULL;
		lead->batch_len = 1;
		struct deliver_job *last = lead;
		/* the later messages for the same mailbox join it (none for a keyless message) */
		for (struct deliver_job **qq = pp; *qq != NULL && lead->key[0] &&
		     lead->batch_len < SMTP_COMMIT_BATCH_MAX;) {
			struct deliver_job *j = *qq;
			if (strcmp(j->key, lead->key) != 0) {
				qq = &j->next;
				continue;
			}
			*qq = j->next;
			j->next = NULL;
			last->next = j;
			last = j;
			lead->batch_len++;
		}
		for (struct deliver_job *j = lead; j; j = j->next)
			j->batch_size = lead->batch_len;
		if (pool_submit(w->pool, batch_work, batch_done, lead) < 0) {
			/* out of memory (or the worker is past its stop timeout): put the batch
			 * back; the next finish or batch retries */
			log_warn("proto=smtp event=batch-deferred error=\"cannot queue the pool job\" "
				 "messages=%u", lead->batch_len);
			last->next = *pp;
			*pp = lead;
			break;
		}
		commitq.running[commitq.nrunning++] = lead;
	}
	commitq.tail = NULL;
	for (struct deliver_job *j = commitq.head; j; j = j->next)
		commitq.tail = j;
}

/* Loop thread: a finished message joins the waiting list and starts if its mailbox is idle. */
static void commit_enqueue(struct worker *w, struct deliver_job *j)
{
	j->next = NULL;
	if (commitq.tail)
		commitq.tail->next = j;
	else
		commitq.head = j;
	commitq.tail = j;
	commit_kick(w);
}

/* Content filters (smtp-milter.c) judge a message on the pool before it joins the group
 * commit: a milter may take up to its timeouts, and a batch must not wait for it. The job goes
 * through the milter queue, which bounds the pool threads that milters can hold. */

/* Pool thread: run the listener's milters over the message. */
static void milter_work(void *arg)
{
	struct deliver_job *j = arg;
	int quarantine = 0;
	enum milter_verdict v = smtp_milter_check(j->s, j->tx, j->cfg, j->reply, sizeof(j->reply),
						  &quarantine);
	j->result = v == MILTER_ACCEPT ? 0 : -1;
	j->discard = v == MILTER_DISCARD;
	if (quarantine)
		j->junk = j->hold = 1;
}

/* Loop thread: refused or discarded messages are answered; the others go on to delivery
 * (a quarantined one alone, so that it reaches Junk: see deliver_rest). */
static void milter_done(void *arg)
{
	struct deliver_job *j = arg;
	struct worker *w = j->s->base.w;
	if (j->mj.failed) {
		j->result = -1;
		snprintf(j->why, sizeof(j->why), "out of memory for the milter job");
	}
	if (j->result != 0) {
		deliver_done(j);
	} else {
		if (j->junk) {
			j->key[0] = '\0';
			j->key_target = -1;
		}
		commit_enqueue(w, j);
	}
}

/* Loop thread: a message that passed the checks before: to the session's milters if it has
 * any, else to the group commit. A transaction a milter discarded at MAIL or RCPT gets its
 * 250 and is stored nowhere. */
static void deliver_next(struct deliver_job *j)
{
	struct worker *w = j->s->base.w;
	if (j->tx->milter_discard) {
		j->result = -1;
		j->discard = 1;
		deliver_done(j);
		return;
	}
	if (j->s->milter == NULL) {
		commit_enqueue(w, j);
		return;
	}
	j->mj.work = milter_work;
	j->mj.done = milter_done;
	j->mj.arg = j;
	smtp_milter_submit(w, &j->mj);
}

/* The authentication checks of port 25 mail (smtp-authin.c) wait for DNS (up to
 * inbound_auth_dns_timeout per lookup): at most SMTP_AUTHIN_RUNNING_MAX such jobs run at once
 * per worker, so a slow or dead resolver cannot take every pool thread from logins, IMAP and
 * deliveries; the others wait in a list, in order. */
#define SMTP_AUTHIN_RUNNING_MAX 4
static struct pool_lane authin_lane = { .max = SMTP_AUTHIN_RUNNING_MAX };

/* Pool thread: SPF, DKIM, DMARC and the Authentication-Results field of a port 25 message
 * (smtp-authin.c), before it joins a group commit: its DNS lookups hold up no other message. */
static void authin_work(void *arg)
{
	struct deliver_job *j = arg;
	enum authin_action a = smtp_authin_check(j->s, j->tx, j->cfg, j->reply, sizeof(j->reply),
						 j->why, sizeof(j->why));
	j->result = a < 0 ? (int)a : 0;
	j->junk = a == AUTHIN_JUNK;
}

/* Loop thread: refused or deferred messages are answered, the others are committed (a Junk
 * delivery alone, not in its INBOX batch). */
static void authin_done(void *arg)
{
	struct deliver_job *j = arg;
	if (j->aj.failed) {
		j->result = -1;
		snprintf(j->why, sizeof(j->why), "out of memory for the authentication job");
	}
	if (j->result < 0) {
		deliver_done(j);
	} else {
		if (j->junk) {
			j->key[0] = '\0';
			j->key_target = -1;
		}
		deliver_next(j);
	}
}

/* End of message: check it, then deliver on the pool. */
void smtp_data_finish(struct smtp_session *s)
{
	struct smtp_tx *tx = s->tx;
	char sz[32];
	tx_flush(tx);
	if (tx->too_big) {
		smtp_reply(s, "552 5.3.4 Message too big: the limit is %s; make it smaller, for example "
			      "by sending large attachments as links",
			   smtp_size_text(s->base.lc->message_size_limit, sz, sizeof(sz)));
		goto refuse;
	}
	if (tx->bare_lf && s->base.lc->bare_lf_reject && !tx->chunking) {
		smtp_reply(s, "550 5.6.0 Message refused: it has lines ending in a bare LF or CR; "
			      "lines must end in CRLF (a bug in the sending program)");
		goto refuse;
	}
	if (tx->write_failed) {
		smtp_reply(s, "451 4.3.0 Temporary storage failure; please try again later");
		goto refuse;
	}
	if (s->auth_user[0] && !smtp_check_from_header(s))
		goto refuse;
	s->base.deliver_ns = metrics_now_ns();
	struct deliver_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		smtp_reply(s, "451 4.3.0 Out of memory; please try again later");
		goto refuse;
	}
	j->s = s;
	j->cfg = s->base.w->cfg;
	j->tx = tx;
	memcpy(j->id, tx->id, sizeof(j->id));
	j->key_target = -1;
	for (unsigned i = 0; i < tx->ntargets && j->key_target < 0; i++) {
		if (tx->targets[i].local && store_account_path(j->cfg->data_dir, tx->targets[i].addr,
							       j->key, sizeof(j->key)) == 0)
			j->key_target = (int)i;
	}
	if (j->key_target < 0)
		j->key[0] = '\0';
	s->tx = NULL;
	s->base.job_running = 1;
	smtp_set_state(s, SMTP_ST_BUSY);
	conn_pause_read(&s->conn, 1);
	if (!s->base.lc->submission && !s->auth_user[0] && j->cfg->inbound_auth &&
	    !tx->milter_discard) {
		j->aj.work = authin_work;
		j->aj.done = authin_done;
		j->aj.arg = j;
		pool_lane_submit(&authin_lane, s->base.w->pool, &j->aj);
		return;
	}
	deliver_next(j);
	return;
refuse:
	smtp_tx_free(&s->tx);
	smtp_set_state(s, SMTP_ST_READY);
}

/* See smtp.h. */
void smtp_thread_release(int all)
{
	sendlimit_thread_release();
	smtp_phish_thread_release(all);
	smtp_authin_thread_release(all);
}
