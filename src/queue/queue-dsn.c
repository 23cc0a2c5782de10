/* queue-dsn.c - delivery status notifications (RFC 3464 multipart/report) to the envelope
 * sender: failures, delays, and "relayed" reports for NOTIFY=SUCCESS when the next server cannot
 * report itself (RFC 3461 5.2.2). A report to one of our own accounts is stored straight into
 * its INBOX; any other goes through the queue with the null sender, so it can never cause
 * another report. */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "queue-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "buf.h"
#include "log.h"
#include "store-path.h"
#include "store.h"

#define DSN_FULL_MAX (2 * 1024 * 1024)   /* RET=FULL returns messages up to this size */
#define DSN_HEADERS_MAX (256 * 1024)     /* header section returned otherwise */
#define DSN_MAX (DSN_FULL_MAX + 512 * 1024)

/* RFC 5322 date. */
static void rfc_date(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(out, outlen, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

/* Decode xtext (RFC 3461 4): "+XX" is an octet. */
static void xtext_decode(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; in[i] && o + 1 < outlen; i++) {
		unsigned v;
		if (in[i] == '+' && in[i + 1] && in[i + 2] && sscanf(in + i + 1, "%2x", &v) == 1) {
			out[o++] = v < 0x20 || v == 0x7f ? ' ' : (char)v;
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
}

/* The enhanced status code in an error text ("... 5.1.1 ..."), or a default. */
static void status_of(const char *err, char kind, char *out, size_t outlen)
{
	for (const char *p = err; *p; p++) {
		if ((p == err || p[-1] == ' ') && (p[0] == '2' || p[0] == '4' || p[0] == '5') &&
		    p[1] == '.') {
			unsigned a, b, c;
			int n = 0;
			if (sscanf(p, "%1u.%3u.%3u%n", &a, &b, &c, &n) == 3 && (p[n] == ' ' ||
			    p[n] == '\0')) {
				if (kind == 'F' && a == 4)
					a = 5;   /* a final failure after temporary errors */
				snprintf(out, outlen, "%u.%u.%u", a, b, c);
				return;
			}
		}
	}
	snprintf(out, outlen, kind == 'F' ? "5.0.0" : kind == 'D' ? "4.0.0" : "2.0.0");
}

/* The remote reply inside an error text ("host[ip] said after X: 550 ..."), or NULL. */
static const char *remote_reply(const char *err)
{
	const char *p = strstr(err, " said after ");
	if (p == NULL)
		return NULL;
	p = strstr(p, ": ");
	return p ? p + 2 : NULL;
}

/* Plain-language explanation of one recipient's problem, and what the user can do. */
static void explain(struct buf *b, const struct qrcpt *r, char kind)
{
	char st[16];
	status_of(r->err, kind, st, sizeof(st));
	buf_appendf(b, "<%s>\r\n", r->addr);
	if (kind == 'R') {
		buf_appendf(b, "    Delivered to the recipient's mail server %s, which does not send "
			    "delivery confirmations;\r\n    this is the last report you will get for "
			    "it.\r\n\r\n", r->remote[0] ? r->remote : "(unknown)");
		return;
	}
	const char *why;
	if (kind == 'D')
		why = "Not delivered yet; the problem so far:";
	else if (strncmp(st, "5.1.10", 6) == 0 || strncmp(st, "5.1.2", 5) == 0)
		why = "The recipient's domain does not receive mail. Check the part after the @ for "
		      "a typing mistake.";
	else if (strncmp(st, "5.1.", 4) == 0)
		why = "The recipient's mail server says this address does not exist. Check it for a "
		      "typing mistake.";
	else if (strncmp(st, "5.2.2", 5) == 0)
		why = "The recipient's mailbox is full. Try again later or reach them another way.";
	else if (strncmp(st, "5.3.4", 5) == 0)
		why = "The message is too large for the recipient's server. Send it smaller, for "
		      "example with attachments as links.";
	else if (strncmp(st, "5.4.7", 5) == 0 || strncmp(st, "4.4.7", 5) == 0 ||
		 strstr(r->err, "was tried for") != NULL)
		why = "The recipient's mail server could not be reached for too long, so we gave up. "
		      "Try again later or reach the recipient another way.";
	else if (strncmp(st, "5.7.", 4) == 0)
		why = "The recipient's mail server refused the message for policy reasons (for "
		      "example spam filtering). Reach the recipient another way and mention the "
		      "reply below.";
	else
		why = "The recipient's mail server refused the message.";
	buf_appendf(b, "    %s\r\n", why);
	if (r->err[0]) {
		char e[QUEUE_ERR_MAX];
		queue_strlcpy(e, sizeof(e), r->err);
		for (char *p = e; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		buf_appendf(b, "    Details: %s\r\n", e);
	}
	buf_appendstr(b, "\r\n");
}

/* Append the original message (or its header section), without our Return-Path line. */
static int append_original(struct buf *b, const char *dir, const struct qenv *env, int full)
{
	char path[CONFIG_PATH_MAX + 100];
	snprintf(path, sizeof(path), "%s/%s.msg", dir, env->id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t max = full ? DSN_FULL_MAX : DSN_HEADERS_MAX;
	char *m = malloc(max + 1);
	ssize_t got = 0;
	if (m == NULL) {
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, m + got, max - (size_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
		if ((size_t)got == max)
			break;
	}
	close(fd);
	size_t start = 0, end = (size_t)got;
	if (end >= 12 && strncasecmp(m, "Return-Path:", 12) == 0) {
		char *lf = memchr(m, '\n', end);
		start = lf ? (size_t)(lf - m) + 1 : end;
	}
	if (!full) {
		for (size_t i = start; i < end; i++) {
			if (m[i] == '\n' && (i + 1 >= end || m[i + 1] == '\n' ||
			    (m[i + 1] == '\r' && i + 2 < end && m[i + 2] == '\n'))) {
				end = i + 1;
				break;
			}
		}
	}
	int rc = buf_append(b, m + start, end - start);
	if (end > start && m[end - 1] != '\n')
		buf_appendstr(b, "\r\n");
	free(m);
	return rc;
}

/* Build the report. */
static int build(struct queue *q, const struct qenv *env, char kind, const unsigned *idx,
		 unsigned n, const char *boundary, struct buf *b)
{
	const struct config *cfg = q->cfg;
	char date[64], arr[64], until[64], id[17];
	time_t now = time(NULL);
	rfc_date(now, date, sizeof(date));
	rfc_date(env->arrived, arr, sizeof(arr));
	rfc_date(env->arrived + (time_t)cfg->queue_lifetime, until, sizeof(until));
	queue_new_id(id);
	const char *subject = kind == 'F' ? "Undelivered Mail Returned to Sender" :
			      kind == 'D' ? "Delayed Mail (still being retried)" :
			      "Successful Mail Delivery Report";
	buf_appendf(b, "Return-Path: <>\r\n");
	buf_appendf(b, "Date: %s\r\nFrom: Mail Delivery System <MAILER-DAEMON@%s>\r\n", date,
		    cfg->hostname);
	buf_appendf(b, "To: <%s>\r\nSubject: %s\r\n", env->from, subject);
	buf_appendf(b, "Message-ID: <%s.%c@%s>\r\nAuto-Submitted: auto-replied\r\n", id, kind,
		    cfg->hostname);
	buf_appendf(b, "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
		    "report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary);
	buf_appendstr(b, "This is a MIME-encapsulated message.\r\n\r\n");
	buf_appendf(b, "--%s\r\nContent-Description: Notification\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n\r\n", boundary);
	buf_appendf(b, "This is the mail system at %s.\r\n\r\n", cfg->hostname);
	if (kind == 'F')
		buf_appendstr(b, "Your message could not be delivered to the recipients below; "
			      "nothing more will be tried\r\nfor them. Your message is attached.\r\n\r\n");
	else if (kind == 'D')
		buf_appendf(b, "Your message has not been delivered yet to the recipients below. "
			    "We will keep trying\r\nuntil %s; you do not need to send it again. "
			    "You will get another report\r\nonly if it finally fails.\r\n\r\n", until);
	else
		buf_appendstr(b, "Your message was delivered as you asked to be told.\r\n\r\n");
	for (unsigned i = 0; i < n; i++)
		explain(b, &env->rcpts[idx[i]], kind);
	if (kind == 'F')
		buf_appendstr(b, "What you can do: check the addresses for typing mistakes and send "
			      "the message again,\r\nor reach the recipient another way. If you "
			      "think this is our fault, forward\r\nthis report to your mail "
			      "administrator.\r\n");
	/* the machine-readable part */
	buf_appendf(b, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
		    "Content-Type: message/delivery-status\r\n\r\n", boundary);
	buf_appendf(b, "Reporting-MTA: dns; %s\r\n", cfg->hostname);
	if (env->envid[0]) {
		char e[256];
		xtext_decode(env->envid, e, sizeof(e));
		buf_appendf(b, "Original-Envelope-Id: %s\r\n", e);
	}
	buf_appendf(b, "X-Postino-Queue-ID: %s\r\nArrival-Date: %s\r\n", env->id, arr);
	for (unsigned i = 0; i < n; i++) {
		const struct qrcpt *r = &env->rcpts[idx[i]];
		char st[16];
		status_of(r->err, kind, st, sizeof(st));
		buf_appendf(b, "\r\nFinal-Recipient: rfc822; %s\r\n", r->addr);
		if (r->orcpt[0]) {
			char o[QUEUE_ADDR_MAX];
			xtext_decode(r->orcpt, o, sizeof(o));
			char *semi = strchr(o, ';');
			if (semi)
				buf_appendf(b, "Original-Recipient: %.*s; %s\r\n", (int)(semi - o), o,
					    semi + 1);
		}
		buf_appendf(b, "Action: %s\r\nStatus: %s\r\n", kind == 'F' ? "failed" :
			    kind == 'D' ? "delayed" : "relayed", st);
		if (r->remote[0])
			buf_appendf(b, "Remote-MTA: dns; %s\r\n", r->remote);
		const char *rr = remote_reply(r->err);
		if (rr) {
			char e[QUEUE_ERR_MAX];
			queue_strlcpy(e, sizeof(e), rr);
			for (char *p = e; *p; p++)
				if (*p == '\n' || *p == '\r')
					*p = ' ';
			buf_appendf(b, "Diagnostic-Code: smtp; %s\r\n", e);
		}
		buf_appendf(b, "Last-Attempt-Date: %s\r\n", date);
		if (kind == 'D')
			buf_appendf(b, "Will-Retry-Until: %s\r\n", until);
	}
	/* the original */
	int full = kind == 'F' && strcasecmp(env->ret, "FULL") == 0 && env->size <= DSN_FULL_MAX;
	buf_appendf(b, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n\r\n", boundary,
		    full ? "Undelivered Message" : "Message Headers",
		    full ? "message/rfc822" : "text/rfc822-headers");
	if (append_original(b, q->dir, env, full) < 0)
		buf_appendstr(b, "(the original message could not be read)\r\n");
	return buf_appendf(b, "\r\n--%s--\r\n", boundary);
}

struct targets {
	char (*t)[QUEUE_ADDR_MAX];
	unsigned n;
};

static void add_target(void *ctx, const char *target)
{
	struct targets *t = ctx;
	if (t->n < 16)
		queue_strlcpy(t->t[t->n++], QUEUE_ADDR_MAX, target);
}

/* Into the sender's own mailbox(es). 1 delivered, 0 not ours, -1 error. */
static int deliver_local(struct queue *q, const struct qenv *env, int fd, uint64_t size)
{
	const char *err = NULL;
	char dom[256];
	const char *at = strrchr(env->from, '@');
	if (q->db == NULL || at == NULL)
		return 0;
	queue_strlcpy(dom, sizeof(dom), at + 1);
	pthread_mutex_lock(&q->db_lock);
	int r = acctdb_domain_exists(q->db, dom, &err);
	char tt[16][QUEUE_ADDR_MAX];
	struct targets t = { tt, 0 };
	if (r == 1) {
		char norm[QUEUE_ADDR_MAX];
		if (acctdb_normalize_address(env->from, norm, sizeof(norm)) < 0)
			r = 0;
		else if (acctdb_resolve(q->db, norm, add_target, &t, &err) < 0)
			r = -1;
	}
	int rc = r;
	for (unsigned i = 0; r == 1 && i < t.n; i++) {
		char root[CONFIG_PATH_MAX + 700];
		struct store_account *acct = NULL;
		if (store_account_path(q->cfg->data_dir, tt[i], root, sizeof(root)) < 0 ||
		    (store_account_create(root, &err) < 0) ||
		    store_account_open(root, &acct, &err) <= 0) {
			rc = -1;
			break;
		}
		if (store_deliver(acct, NULL, fd, size, 1, time(NULL), 0, NULL, &err) < 0)
			rc = -1;
		store_account_close(&acct);
		if (rc < 0)
			break;
	}
	pthread_mutex_unlock(&q->db_lock);
	if (r == 1 && t.n == 0) {
		log_warn("event=dsn-dropped id=%s to=<%s> reason=\"no such local account\"", env->id,
			 env->from);
		return 1;
	}
	if (rc < 0)
		log_error("event=dsn-store-failed id=%s to=<%s> error=\"%s\"", env->id, env->from,
			  err ? err : "?");
	return rc;
}

int queue_dsn_send(struct queue *q, const struct qenv *env, char kind, const unsigned *idx,
		   unsigned n)
{
	if (env->from[0] == '\0' || n == 0)
		return 0;   /* never a report to the null sender */
	char boundary[64], bid[17];
	queue_new_id(bid);
	snprintf(boundary, sizeof(boundary), "%s/%s", bid, q->cfg->hostname);
	struct buf b;
	buf_init(&b, DSN_MAX);
	if (build(q, env, kind, idx, n, boundary, &b) < 0) {
		buf_free(&b);
		log_error("event=dsn-failed id=%s error=\"report too large\"", env->id);
		return -1;
	}
	char tmpdir[CONFIG_PATH_MAX + 8], tmp[CONFIG_PATH_MAX + 64];
	snprintf(tmpdir, sizeof(tmpdir), "%s/tmp", q->cfg->data_dir);
	int fd = queue_spool_temp(tmpdir, "dsn", b.data, b.len, tmp, sizeof(tmp));
	if (fd < 0) {
		log_error("event=dsn-failed id=%s error=\"%s\"", env->id, strerror(errno));
		buf_free(&b);
		return -1;
	}
	int rc = deliver_local(q, env, fd, b.len);
	if (rc == 0) {
		/* through the queue, from the null sender */
		if (queue_spool_null(q->dir, tmp, b.data, b.len, env->from, env->body_8bit,
				     env->smtputf8) < 0) {
			log_error("event=dsn-failed id=%s error=\"spool: %s\"", env->id, strerror(errno));
			rc = -1;
		} else {
			rc = 1;
		}
	}
	if (rc > 0)
		log_info("event=dsn id=%s kind=%s to=<%s> recipients=%u", env->id,
			 kind == 'F' ? "failure" : kind == 'D' ? "delay" : "relayed", env->from, n);
	close(fd);
	unlink(tmp);
	buf_free(&b);
	return rc < 0 ? -1 : 0;
}
