/* queue-deliver.c - delivery threads: one SMTP connection per destination at a time, reused for
 * every message queued to that destination (up to QD_MSGS_PER_CONN), within the overall and
 * per-destination concurrency limits. */
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
#include <unistd.h>

#include "base64.h"
#include "ev.h"
#include "log.h"
#include "mta-sts.h"
#include "tlsrpt.h"

#define DANE_TLSA_MAX 8   /* TLSA records of one MX host used */
#include "tls.h"

#define QD_MSGS_PER_CONN 200     /* then QUIT and reconnect: bounds one session's life */
#define QD_MAX_TARGETS 16        /* addresses tried per destination */
#define QD_CHUNK 65536           /* body read size */

/* A destination with work and room for one more connection, or NULL. Called with the lock. */
static struct qdest *pick_dest(struct queue *q)
{
	for (struct qdest *d = q->dests; d; d = d->next)
		if (d->njobs > 0 && d->active < q->cfg->queue_concurrency_per_domain &&
		    (d->active == 0 || d->njobs > d->active))
			return d;
	return NULL;
}

static struct qjob *pop_job(struct qdest *d)
{
	struct qjob *j = d->head;
	if (j) {
		d->head = j->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->njobs--;
	}
	return j;
}

/* Set the result of every recipient of a job. */
static void job_result(struct qjob *j, int result, const char *remote, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void job_result(struct qjob *j, int result, const char *remote, const char *fmt, ...)
{
	char text[QUEUE_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	for (unsigned i = 0; i < j->n; i++) {
		struct qrcpt *r = &j->m->env.rcpts[j->idx[i]];
		r->result = result;
		queue_strlcpy(r->err, sizeof(r->err), text);
		queue_strlcpy(r->remote, sizeof(r->remote), remote ? remote : "");
	}
}

/* A job is finished: the last one of its message finalizes it. */
static void job_done(struct queue *q, struct qjob *j)
{
	struct qmsg *m = j->m;
	pthread_mutex_lock(&q->lock);
	int last = --m->outstanding == 0;
	pthread_mutex_unlock(&q->lock);
	free(j->idx);
	free(j);
	if (last)
		queue_finalize(q, m);
}

/* MTA-STS after EHLO (and STARTTLS where offered): TLS with a certificate valid for the MX name.
 * 0 go on (verified, or testing mode: the failure is logged), -1 enforce refuses this host. */
static int sts_check_tls(struct queue *q, const struct sts_policy *p, struct smtpc *c,
			 const char *dest, int enforce, char *why, size_t whylen)
{
	char err[256];
	const char *result = NULL;
	if (c->tls == NULL) {
		result = "starttls-not-supported";
		snprintf(err, sizeof(err), "no STARTTLS");
	} else if (!tls_peer_verified(c->tls, err, sizeof(err))) {
		result = strstr(err, "hostname") != NULL ? "certificate-host-mismatch" :
			 strstr(err, "expired") != NULL ? "certificate-expired" :
			 "certificate-not-trusted";
	}
	tlsrpt_record(q, dest, p, c->host, c->ip, result ? result : "success");
	if (result == NULL)
		return 0;
	log_warn("event=mta-sts-failure dest=%s host=%s ip=%s result=%s mode=%s error=\"%s\"",
		 dest, c->host, c->ip, result, enforce ? "enforce" : "testing", err);
	if (!enforce)
		return 0;
	snprintf(why, whylen, "4.7.5 the MTA-STS policy of %s requires TLS with a valid "
		 "certificate, and %s[%s] %s (%s); delivery waits until it does", dest, c->host,
		 c->ip, c->tls == NULL ? "does not offer STARTTLS" : "failed the certificate check",
		 err);
	return -1;
}

/* TLSA records SMTP can use (RFC 7672 3.1.3): DANE-TA(2) and DANE-EE(3), selector 0 or 1,
 * matching type 1 or 2 (digests; full certificates are not kept). */
static int dane_usable_count(const struct tls_tlsa *r, int n)
{
	int u = 0;
	for (int i = 0; i < n; i++)
		u += (r[i].usage == 2 || r[i].usage == 3) && r[i].selector <= 1 &&
		     (r[i].mtype == 1 || r[i].mtype == 2);
	return u;
}

/* DANE after EHLO: TLS is mandatory; with usable records the certificate must match one. 0 go
 * on, -1 this host is refused (why filled). */
static int dane_check_tls(struct smtpc *c, const char *dest, int usable, char *why,
			  size_t whylen)
{
	char err[256];
	if (c->tls == NULL) {
		snprintf(err, sizeof(err), "does not offer STARTTLS");
	} else if (usable && !tls_peer_verified(c->tls, err, sizeof(err))) {
		char e2[300];
		snprintf(e2, sizeof(e2), "presents a certificate that matches none of its TLSA "
			 "records (%s)", err);
		snprintf(err, sizeof(err), "%s", e2);
	} else {
		log_info("event=dane-verified dest=%s host=%s ip=%s%s", dest, c->host, c->ip,
			 usable ? "" : " authenticated=no reason=\"no usable TLSA record: TLS "
			 "without authentication\"");
		return 0;
	}
	log_warn("event=dane-failure dest=%s host=%s ip=%s error=\"%s\"", dest, c->host, c->ip,
		 err);
	snprintf(why, whylen, "4.7.5 %s[%s] publishes DNSSEC-signed TLSA records (DANE, RFC 7672) "
		 "but %s; delivery waits until it is fixed", c->host, c->ip, err);
	return -1;
}

/* What MTA-STS (RFC 8461) asks of the hosts of one destination. */
struct dest_sts {
	struct sts_policy policy;
	int on;                      /* a policy applies (never to the relay host) */
	int enforce;                 /* mode enforce: a failing host is not used */
	char mx[512];                /* its MX patterns, for messages */
};

/* AUTH PLAIN to the relay host with relayhost_user. 0 logged in, 1 refused (why set, QUIT
 * sent), -1 connection error. */
static int relay_auth(const struct config *cfg, struct smtpc *c, const char *host,
		      struct smtpc_reply *r, char *why, size_t whylen)
{
	char plain[600], b64[900];
	size_t ul = strlen(cfg->relayhost_user), pl = strlen(cfg->relayhost_password);
	plain[0] = '\0';
	memcpy(plain + 1, cfg->relayhost_user, ul);
	plain[ul + 1] = '\0';
	memcpy(plain + ul + 2, cfg->relayhost_password, pl);
	base64_encode((const unsigned char *)plain, ul + pl + 2, b64, sizeof(b64));
	explicit_bzero(plain, sizeof(plain));
	int rc = 0;
	if (smtpc_sendf(c, "AUTH PLAIN %s\r\n", b64) < 0 || smtpc_read_reply(c, r) < 0) {
		rc = -1;
	} else if (r->code != 235) {
		snprintf(why, whylen, "4.7.8 the relay host %s refused our login as %s: %s (check "
			 "relayhost_user and relayhost_password)", host, cfg->relayhost_user, r->text);
		smtpc_quit(c);
		rc = 1;
	}
	explicit_bzero(b64, sizeof(b64));
	return rc;
}

/* One address of the destination: the policies for this host (DANE, MTA-STS), connect, the
 * greeting, EHLO, STARTTLS, the TLS checks, the relay login. 0 connected (c open), -1 try the
 * next address (why says what went wrong here). */
static int dest_try(struct queue *q, const char *dest, const struct qdns_target *t,
		    unsigned port, const struct dest_sts *sts, struct smtpc *c, char *why,
		    size_t whylen)
{
	const struct config *cfg = q->cfg;
	int relay = q->relay_host[0] != '\0';
	struct smtpc_reply r;
	/* DANE (RFC 7672): DNSSEC-secure TLSA records of a securely found MX host make TLS
	 * mandatory and authenticate it; they take precedence over MTA-STS (RFC 8461 2) */
	struct tls_tlsa tlsa[DANE_TLSA_MAX];
	int ntlsa = 0;
	if (!relay && qdns_validating() && t->secure) {
		ntlsa = qdns_tlsa(t->host, port, tlsa, DANE_TLSA_MAX);
		if (ntlsa < 0) {
			snprintf(why, whylen, "4.7.5 the TLSA records of %s cannot be looked up or "
				 "fail DNSSEC validation; delivery waits (DANE, RFC 7672)", t->host);
			log_warn("event=dane-failure dest=%s host=%s error=\"TLSA lookup failed or "
				 "bogus\"", dest, t->host);
			return -1;
		}
	}
	int dane = ntlsa > 0, dane_usable = dane_usable_count(tlsa, ntlsa);
	int host_sts = sts->on && !dane;
	if (host_sts && !sts_mx_match(&sts->policy, t->host)) {
		tlsrpt_record(q, dest, &sts->policy, t->host, t->ip, "validation-failure");
		log_warn("event=mta-sts-failure dest=%s host=%s result=validation-failure "
			 "mode=%s error=\"not an mx of the policy (%s)\"", dest, t->host,
			 sts->enforce ? "enforce" : "testing", sts->mx);
		if (sts->enforce) {
			snprintf(why, whylen, "4.7.5 the MTA-STS policy of %s does not list its "
				 "MX host %s (it lists %s); delivery waits for a listed one",
				 dest, t->host, sts->mx);
			return -1;
		}
	}
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->reply_timeout_ms = cfg->smtp_reply_timeout * 1000;
	queue_strlcpy(c->host, sizeof(c->host), t->host);
	if (smtpc_connect(c, t->ip, port, cfg->smtp_connect_timeout * 1000) < 0) {
		snprintf(why, whylen, "4.4.1 %s[%s]: %s", t->host, t->ip, c->err);
		log_info("event=connect-failed dest=%s host=%s ip=%s error=\"%s\"", dest,
			 t->host, t->ip, c->err);
		return -1;
	}
	unsigned saved = c->reply_timeout_ms;
	c->reply_timeout_ms = cfg->smtp_connect_timeout * 1000;   /* the greeting */
	int rr = smtpc_read_reply(c, &r);
	c->reply_timeout_ms = saved;
	if (rr < 0 || r.code != 220) {
		snprintf(why, whylen, "4.4.2 %s[%s]: %s", t->host, t->ip, rr < 0 ? c->err : r.text);
		smtpc_close(c);
		return -1;
	}
	int e = smtpc_ehlo(c, cfg->hostname, &r);
	if (e == 0 && c->starttls) {
		int verify = relay ? (cfg->relayhost_tls_verify ? TLS_VERIFY_FAIL : TLS_VERIFY_OFF) :
			     host_sts || dane_usable ? TLS_VERIFY_CHECK : TLS_VERIFY_OFF;
		if (dane_usable) {
			c->dane = tlsa;
			c->ndane = (size_t)ntlsa;
		}
		e = smtpc_starttls(c, q->tls, verify, &r);
		if (e == 0)
			e = smtpc_ehlo(c, cfg->hostname, &r);
		else if (e > 0 && !relay && !(host_sts && sts->enforce) && !dane)
			e = 0;   /* refused STARTTLS: carry on in plaintext (opportunistic TLS) */
	}
	if (e == 0 && dane && dane_check_tls(c, dest, dane_usable, why, whylen) < 0) {
		smtpc_quit(c);
		return -1;
	}
	if (e == 0 && host_sts &&
	    sts_check_tls(q, &sts->policy, c, dest, sts->enforce, why, whylen) < 0) {
		smtpc_quit(c);
		return -1;
	}
	if (e == 0 && relay && c->tls == NULL) {
		snprintf(why, whylen, "4.7.5 the relay host %s does not offer STARTTLS, which is "
			 "required to it", t->host);
		smtpc_quit(c);
		return -1;
	}
	if (e == 0 && relay && cfg->relayhost_user[0]) {
		int a = relay_auth(cfg, c, t->host, &r, why, whylen);
		if (a > 0)
			return -1;
		e = a;
	}
	/* the TLSA records live on this stack: nothing may keep pointing at them */
	c->dane = NULL;
	c->ndane = 0;
	if (e != 0) {
		snprintf(why, whylen, "4.4.2 %s[%s]: %s", t->host, t->ip, e < 0 ? c->err : r.text);
		if (e < 0)
			smtpc_close(c);
		else
			smtpc_quit(c);
		return -1;
	}
	return 0;
}

/* Connect to the destination: resolve, then try each address until one greets and takes EHLO
 * (and STARTTLS where offered; required and authenticated for the relay host).
 * 0 connected; otherwise the result class (4 or 5) with why filled. */
static int dest_connect(struct queue *q, const char *dest, struct smtpc *c, char *why,
			size_t whylen)
{
	const struct config *cfg = q->cfg;
	struct qdns_target t[QD_MAX_TARGETS];
	int relay = q->relay_host[0] != '\0';
	unsigned port = relay ? q->relay_port : cfg->remote_smtp_port;
	char derr[512];
	int n = qdns_route(relay ? q->relay_host : dest, relay, t, QD_MAX_TARGETS, derr, sizeof(derr));
	if (n == -2) {
		snprintf(why, whylen, "5.1.10 %s", derr);
		return 5;
	}
	if (n == 0) {
		snprintf(why, whylen, "%s %s", relay ? "4.4.3" : "5.1.2", derr);
		return relay ? 4 : 5;
	}
	if (n < 0) {
		snprintf(why, whylen, "4.4.3 %s", derr);
		return 4;
	}
	snprintf(why, whylen, "4.4.1 no mail server for %s could be reached", dest);
	/* MTA-STS (RFC 8461): only the policy's MX hosts, over TLS verified for their names */
	struct dest_sts sts = { .on = 0 };
	char stsdir[CONFIG_PATH_MAX + 32];
	snprintf(stsdir, sizeof(stsdir), "%s/mta-sts", q->dir);
	sts.on = !relay && cfg->mta_sts &&
		 sts_lookup(dest, stsdir, q->tls, cfg->mta_sts_port,
			    cfg->smtp_connect_timeout * 1000, &sts.policy);
	sts.enforce = sts.on && sts.policy.mode == STS_ENFORCE;
	if (sts.on)
		sts_mx_list(&sts.policy, sts.mx, sizeof(sts.mx));
	for (int i = 0; i < n; i++)
		if (dest_try(q, dest, &t[i], port, &sts, c, why, whylen) == 0)
			return 0;
	return 4;
}

/* Enhanced status code from a reply ("550 5.1.1 ..."), or a default. */
static void reply_err(char *out, size_t outlen, const struct smtpc *c, const char *what,
		      const struct smtpc_reply *r)
{
	snprintf(out, outlen, "%s[%s] said after %s: %s", c->host, c->ip, what, r->text);
}

/* Set one recipient's result. */
static void rcpt_set(struct qrcpt *rc, int result, const struct smtpc *c, const char *text)
{
	rc->result = result;
	queue_strlcpy(rc->err, sizeof(rc->err), text);
	queue_strlcpy(rc->remote, sizeof(rc->remote), c->host);
}

/* Refuse the job before MAIL when the server lacks what the message needs (SMTPUTF8) or
 * announced a SIZE below the message's. 1 if refused (every recipient got a 5xx), else 0. */
static int deliver_refused(const struct smtpc *c, struct qjob *j)
{
	const struct qenv *env = &j->m->env;
	if (env->smtputf8 && !c->smtputf8) {
		job_result(j, 5, c->host, "5.6.7 The message needs SMTPUTF8 (it has internationalized "
			   "addresses or headers), but the receiving server %s does not support it; "
			   "ask the recipient for an address in plain ASCII", c->host);
		return 1;
	}
	if (c->size_ext && c->size_max > 0 && env->size > c->size_max) {
		job_result(j, 5, c->host, "5.3.4 The message is %llu octets, larger than the %llu the "
			   "receiving server %s accepts; send it smaller (attachments as links)",
			   (unsigned long long)env->size, (unsigned long long)c->size_max, c->host);
		return 1;
	}
	return 0;
}

/* The envelope commands of job j into cmd: MAIL FROM, one RCPT TO per recipient of the job,
 * DATA, each a CRLF line, with the parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT)
 * that the server announced. Returns the length of the MAIL line. */
static size_t deliver_commands(const struct smtpc *c, const struct qjob *j, struct buf *cmd)
{
	const struct qenv *env = &j->m->env;
	buf_appendf(cmd, "MAIL FROM:<%s>", env->from);
	if (c->size_ext)
		buf_appendf(cmd, " SIZE=%llu", (unsigned long long)(env->size +
			    (env->dkim ? strlen(env->dkim) : 0)));
	if (env->body_8bit && c->eightbit)
		buf_appendstr(cmd, " BODY=8BITMIME");
	if (env->smtputf8)
		buf_appendstr(cmd, " SMTPUTF8");
	if (c->dsn) {
		if (env->ret[0])
			buf_appendf(cmd, " RET=%s", env->ret);
		if (env->envid[0])
			buf_appendf(cmd, " ENVID=%s", env->envid);
	}
	buf_appendstr(cmd, "\r\n");
	size_t mail_len = cmd->len;
	for (unsigned i = 0; i < j->n; i++) {
		const struct qrcpt *r = &env->rcpts[j->idx[i]];
		buf_appendf(cmd, "RCPT TO:<%s>", r->addr);
		if (c->dsn) {
			if (r->notify != QN_DEFAULT) {
				buf_appendf(cmd, " NOTIFY=%s%s%s%s",
					    r->notify & QN_NEVER ? "NEVER" : "",
					    r->notify & QN_SUCCESS ? "SUCCESS" : "",
					    (r->notify & QN_SUCCESS) && (r->notify & (QN_FAILURE | QN_DELAY))
					    ? "," : "",
					    (r->notify & QN_FAILURE) && (r->notify & QN_DELAY) ? "FAILURE,DELAY"
					    : r->notify & QN_FAILURE ? "FAILURE" :
					    r->notify & QN_DELAY ? "DELAY" : "");
			}
			if (r->orcpt[0])
				buf_appendf(cmd, " ORCPT=%s", r->orcpt);
		}
		buf_appendstr(cmd, "\r\n");
	}
	buf_appendstr(cmd, "DATA\r\n");
	return mail_len;
}

/* Send the message after the server's 354: the DKIM signatures made when it was accepted, then
 * the spooled file fd dot-stuffed, then the final dot. 0, or -1 (the connection is lost: a
 * half-sent message never continues on it). */
static int deliver_body(struct smtpc *c, const struct qenv *env, int fd)
{
	struct smtpc_wire w;
	struct buf out;
	char *chunk = malloc(QD_CHUNK);
	buf_init(&out, 2 * QD_CHUNK + 16);
	smtpc_wire_init(&w, 1);
	off_t pos = 0;
	int failed = chunk == NULL;
	/* the DKIM signatures made when the message was accepted (smtp-dkim.c): CRLF lines
	 * starting with "DKIM-Signature:" or a tab, so nothing to dot-stuff */
	if (!failed && env->dkim && smtpc_send(c, env->dkim, strlen(env->dkim)) < 0)
		failed = 1;
	while (!failed) {
		ssize_t got = pread(fd, chunk, QD_CHUNK, pos);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			failed = got < 0;
			break;
		}
		pos += got;
		buf_reset(&out);
		if (smtpc_wire_feed(&w, chunk, (size_t)got, &out) < 0 ||
		    smtpc_send(c, out.data, out.len) < 0)
			failed = 1;
	}
	buf_reset(&out);
	if (!failed && (smtpc_wire_end(&w, &out) < 0 || smtpc_send(c, out.data, out.len) < 0))
		failed = 1;
	buf_free(&out);
	free(chunk);
	return failed ? -1 : 0;
}

/* How one transaction ended: delivered (the connection is ready for the next), to be reset
 * with RSET, or with the connection lost. */
enum tx_end { TX_DONE, TX_RSET, TX_LOST };

/* One SMTP transaction for job j on c: MAIL, RCPT, DATA from cmd (pipelined when the server
 * allows it; mail_len: the MAIL line's length), then the message from fd. Recipients get their
 * results as the replies come; acc[i] is set for each recipient the server accepted. */
static enum tx_end deliver_tx(struct smtpc *c, struct qjob *j, const struct buf *cmd,
			      size_t mail_len, int fd, int *acc)
{
	struct qenv *env = &j->m->env;
	char text[QUEUE_ERR_MAX];
	struct smtpc_reply r;
	unsigned accepted = 0;
	/* MAIL */
	if (smtpc_send(c, cmd->data, c->pipelining ? cmd->len : mail_len) < 0)
		return TX_LOST;
	if (smtpc_read_reply(c, &r) < 0)
		return TX_LOST;
	int mail_ok = r.code / 100 == 2;
	if (!mail_ok) {
		reply_err(text, sizeof(text), c, "MAIL FROM", &r);
		job_result(j, r.code / 100 == 5 ? 5 : 4, c->host, "%s", text);
		if (!c->pipelining)
			return TX_RSET;
	}
	/* RCPT: one line of cmd each (already sent when pipelining) */
	size_t off = mail_len;
	for (unsigned i = 0; i < j->n; i++) {
		size_t end = off;
		while (end < cmd->len && cmd->data[end] != '\n')
			end++;
		end++;
		if (!c->pipelining && smtpc_send(c, cmd->data + off, end - off) < 0)
			return TX_LOST;
		off = end;
		if (smtpc_read_reply(c, &r) < 0)
			return TX_LOST;
		if (!mail_ok)
			continue;
		if (r.code / 100 == 2) {
			acc[i] = 1;
			accepted++;
		} else {
			reply_err(text, sizeof(text), c, "RCPT TO", &r);
			rcpt_set(&env->rcpts[j->idx[i]], r.code / 100 == 5 ? 5 : 4, c, text);
		}
	}
	/* DATA */
	if (!c->pipelining) {
		if (accepted == 0)
			return TX_RSET;
		if (smtpc_send(c, "DATA\r\n", 6) < 0)
			return TX_LOST;
	}
	if (smtpc_read_reply(c, &r) < 0)
		return TX_LOST;
	if (r.code != 354) {
		if (accepted > 0) {
			reply_err(text, sizeof(text), c, "DATA", &r);
			for (unsigned i = 0; i < j->n; i++)
				if (acc[i])
					rcpt_set(&env->rcpts[j->idx[i]], r.code / 100 == 5 ? 5 : 4, c,
						 text);
		}
		return TX_RSET;
	}
	if (accepted == 0) {
		/* a server that said 354 with no recipient: end the empty message, ignore it */
		if (smtpc_send(c, ".\r\n", 3) < 0 || smtpc_read_reply(c, &r) < 0)
			return TX_LOST;
		return TX_RSET;
	}
	/* the message, and the reply that decides for every accepted recipient */
	if (deliver_body(c, env, fd) < 0 || smtpc_read_reply(c, &r) < 0)
		return TX_LOST;
	reply_err(text, sizeof(text), c, "end of data", &r);
	for (unsigned i = 0; i < j->n; i++) {
		if (!acc[i])
			continue;
		struct qrcpt *rc = &env->rcpts[j->idx[i]];
		rcpt_set(rc, r.code / 100 == 2 ? 2 : r.code / 100 == 5 ? 5 : 4, c, text);
		rc->relayed_nodsn = r.code / 100 == 2 && !c->dsn && (rc->notify & QN_SUCCESS);
	}
	return r.code / 100 == 2 ? TX_DONE : TX_RSET;
}

/* The connection was lost during job j: recipients without a definite answer are deferred,
 * with the connection's error when they have no text of their own. */
static void deliver_lost(const struct smtpc *c, struct qjob *j, const int *acc)
{
	struct qenv *env = &j->m->env;
	for (unsigned i = 0; i < j->n; i++) {
		struct qrcpt *rc = &env->rcpts[j->idx[i]];
		if (rc->result == 0 || (acc[i] && rc->result != 5 && rc->result != 2))
			rcpt_set(rc, 4, c, "");
		if (rc->result == 4 && rc->err[0] == '\0')
			snprintf(rc->err, sizeof(rc->err), "4.4.2 %s[%s]: %s", c->host, c->ip, c->err);
	}
}

/* Send one message over an established connection. Returns 0 if the connection can be reused,
 * -1 if it is broken. Every recipient of the job gets a result. */
static int deliver_job(struct queue *q, struct smtpc *c, struct qjob *j)
{
	struct qenv *env = &j->m->env;
	if (deliver_refused(c, j))
		return 0;
	char path[CONFIG_PATH_MAX + 100];
	snprintf(path, sizeof(path), "%s/%s.msg", q->dir, env->id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		job_result(j, 4, NULL, "4.3.0 cannot read the queued message: %s", strerror(errno));
		return 0;
	}
	int *acc = calloc(j->n, sizeof(int));
	if (acc == NULL) {
		close(fd);
		job_result(j, 4, NULL, "4.3.0 out of memory");
		return 0;
	}
	struct buf cmd;
	buf_init(&cmd, 1024 * 1024);
	size_t mail_len = deliver_commands(c, j, &cmd);
	enum tx_end end = deliver_tx(c, j, &cmd, mail_len, fd, acc);
	int broken = 0;
	if (end == TX_RSET) {
		struct smtpc_reply r;
		if (smtpc_sendf(c, "RSET\r\n") < 0 || smtpc_read_reply(c, &r) < 0 ||
		    r.code / 100 != 2)
			broken = 1;
	} else if (end == TX_LOST) {
		broken = 1;
		deliver_lost(c, j, acc);
	}
	for (unsigned i = 0; i < j->n; i++) {   /* anything left unanswered is deferred */
		struct qrcpt *rc = &env->rcpts[j->idx[i]];
		if (rc->result == 0)
			rcpt_set(rc, 4, c, "4.4.2 no answer for this recipient");
	}
	free(acc);
	close(fd);
	buf_free(&cmd);
	return broken ? -1 : 0;
}

/* Work on one destination until its queue is empty (or the connection has served enough). */
static void run_dest(struct queue *q, struct qdest *d)
{
	struct smtpc c;
	int connected = 0;
	unsigned sent = 0;
	memset(&c, 0, sizeof(c));
	c.fd = -1;
	for (;;) {
		pthread_mutex_lock(&q->lock);
		struct qjob *j = q->stopping ? NULL : pop_job(d);
		pthread_mutex_unlock(&q->lock);
		if (j == NULL)
			break;
		if (!connected) {
			char why[QUEUE_ERR_MAX];
			int cls = dest_connect(q, d->name, &c, why, sizeof(why));
			if (cls != 0) {
				log_info("event=dest-failed dest=%s result=%s error=\"%s\"", d->name,
					 cls == 5 ? "bounce" : "defer", why);
				/* every message waiting for this destination shares the fate */
				for (;;) {
					job_result(j, cls, NULL, "%s", why);
					job_done(q, j);
					pthread_mutex_lock(&q->lock);
					j = pop_job(d);
					pthread_mutex_unlock(&q->lock);
					if (j == NULL)
						break;
				}
				return;
			}
			connected = 1;
			log_debug("event=connected dest=%s host=%s ip=%s tls=%s", d->name, c.host, c.ip,
				  c.tls ? "yes" : "no");
		}
		int rc = deliver_job(q, &c, j);
		job_done(q, j);
		if (rc < 0) {
			smtpc_close(&c);
			connected = 0;
		}
		if (++sent >= QD_MSGS_PER_CONN)
			break;
	}
	if (connected)
		smtpc_quit(&c);
}

void *queue_deliver_thread(void *arg)
{
	struct queue *q = arg;
	pthread_mutex_lock(&q->lock);
	while (!q->stopping) {
		struct qdest *d = pick_dest(q);
		if (d == NULL) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		d->active++;
		pthread_mutex_unlock(&q->lock);
		run_dest(q, d);
		pthread_mutex_lock(&q->lock);
		d->active--;
		/* jobs queued while this connection was closing: let a waiting thread take them */
		if (d->njobs > 0)
			pthread_cond_broadcast(&q->cond);
		/* an idle destination with nothing queued is freed */
		if (d->active == 0 && d->njobs == 0) {
			struct qdest **pp = &q->dests;
			while (*pp && *pp != d)
				pp = &(*pp)->next;
			if (*pp)
				*pp = d->next;
			free(d);
		}
	}
	q->threads_alive--;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return NULL;
}
