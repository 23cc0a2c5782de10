/* session.c - the parts of a session every protocol shares (session.h). */
#include "session.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "auth-verify.h"
#include "conn.h"
#include "crossproto.h"
#include "diag.h"
#include "ev.h"
#include "iptable.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

/* Longest wait for a ClientHello on a STARTTLS port (slow links, or no RTT measured) */
#define SESSION_HELLO_WAIT_MAX_MS 250
/* Memory freed on the loop (sessions at rest close their index handles) is trimmed once this
 * long after the first free, so that a wave of sessions going to rest costs one trim. */
#define SESSION_TRIM_DELAY_MS 2000

static struct ev_timer trim_timer;   /* session_trim_soon; one worker per process */

/* What the hello step of a connection says (session_hello). */
enum session_hello {
	SESSION_HELLO_NONE,       /* nothing pending: carry on */
	SESSION_HELLO_GREET,      /* the client is not starting TLS: greet now */
	SESSION_HELLO_TLS,        /* a ClientHello came: TLS started, greet after the handshake */
	SESSION_HELLO_WAIT,       /* still waiting for the client's first bytes */
	SESSION_HELLO_FAILED,     /* TLS could not be set up */
	SESSION_HELLO_PLAINTEXT,  /* a plaintext client on an implicit-TLS port, answered: close */
};

/* A TLS ClientHello on a STARTTLS port is served as implicit TLS (clients set to "SSL" on 587,
 * 143 or 110 just work); anything else gets the plaintext greeting. A plaintext client on an
 * implicit-TLS port is told, in one line of its protocol, to turn on SSL/TLS. */
static enum session_hello session_hello(struct session *s, struct conn *c, const char **why_r)
{
	const struct session_ops *op = s->ops;
	if (c->plaintext_peer) {
		if (op->plaintext != NULL) {
			*why_r = op->plaintext(s);
			return SESSION_HELLO_PLAINTEXT;
		}
		char line[400];
		snprintf(line, sizeof(line), op->tls_hint, s->w->cfg->l[op->hint_listener].port);
		conn_write_plain(c, line);
		session_diag(s, DIAG_PLAINTEXT, NULL, 0, "plaintext client on an SSL/TLS port");
		*why_r = "plaintext client on an implicit-TLS port";
		return SESSION_HELLO_PLAINTEXT;
	}
	switch (c->hello) {
	case CONN_HELLO_WAIT:
		return SESSION_HELLO_WAIT;
	case CONN_HELLO_TLS:
		c->hello = CONN_HELLO_NONE;
		s->greet_after_tls = 1;
		log_info("sess=%016llx event=tls-on-starttls-port listener=%s",
			 (unsigned long long)s->id, s->lc->name);
		return conn_start_tls(c, s->w->tls) < 0 ? SESSION_HELLO_FAILED : SESSION_HELLO_TLS;
	case CONN_HELLO_PLAIN:
		c->hello = CONN_HELLO_NONE;
		return SESSION_HELLO_GREET;
	default:
		return SESSION_HELLO_NONE;
	}
}

/* Wait for a ClientHello on client ports that offer STARTTLS (not on the MX port 25), for a few
 * round trips of the connection (conn_wait_hello), so plaintext clients are greeted at once. */
static int session_wait_hello(struct session *s, struct conn *c)
{
	if (s->w->tls == NULL || s->lc->implicit_tls || s->lst == LST_SMTP || s->ops->greet == NULL)
		return 0;
	unsigned margin = s->w->cfg->tls_hello_margin_ms;
	conn_wait_hello(c, margin, margin > SESSION_HELLO_WAIT_MAX_MS ? margin :
			SESSION_HELLO_WAIT_MAX_MS);
	return 1;
}

/* Remove a session from the list and the per-IP table. */
static void session_remove(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nsessions--;
	if (!w->stopping)
		metrics_sessions(w->nsessions);
	iptable_release(w->ipt, w->index, (struct sockaddr *)&s->peer);
	if (w->session_gone)
		w->session_gone(w);
	if (w->stopping && w->nsessions == 0)
		ev_stop(w->loop);
}

static void session_reap(void *arg)
{
	struct session *s = arg;
	struct worker *w = s->w;
	if (s->job_running)
		return;   /* the job's completion reaps the session */
	if (s->conn->deferred > 0) {
		/* those calls were queued before this one, so they run first */
		ev_defer(w->loop, session_reap, s);
		return;
	}
	conn_flush(s->conn);
	conn_close(s->conn);
	s->ops->release(s);
	session_remove(w, s);
	free(s);
}

void session_reap_later(struct session *s)
{
	ev_defer(s->w->loop, session_reap, s);
}

void session_close(struct session *s, const char *reason)
{
	if (s->closing)
		return;
	s->closing = 1;
	char detail[400] = "";
	if (s->ops->close_detail)
		s->ops->close_detail(s, detail, sizeof(detail));
	log_info("sess=%016llx proto=%s event=close reason=\"%s\"%s%s", (unsigned long long)s->id,
		 s->ops->proto, reason, detail[0] ? " " : "", detail);
	conn_pause_read(s->conn, 1);
	session_reap_later(s);
}

/* A TLS handshake failed: log it and record it by IP (with SNI). */
static void session_tls_failed(const struct session *s, struct conn *c, const char *proto)
{
	char detail[256];
	const char *sni = c->tls ? tls_sni(c->tls) : NULL;
	snprintf(detail, sizeof(detail), "%s%s%s", tls_last_error(), sni ? "; SNI " : "",
		 sni ? sni : "");
	metrics_count(MC_TLS_FAILED);
	log_info("sess=%016llx proto=%s event=tls-failed ip=%s reason=\"%s\"",
		 (unsigned long long)s->id, proto, s->peer_ip, detail);
	session_diag(s, DIAG_TLS_FAILED, NULL, 0, detail);
}

/* The connection's callback, for every protocol: handshake results, input, EOF. */
static void session_on_event(struct conn *c)
{
	struct session *s = c->owner;
	const struct session_ops *op = s->ops;
	if (s->closing)
		return;
	const char *why = NULL;
	switch (session_hello(s, c, &why)) {
	case SESSION_HELLO_PLAINTEXT:
		session_close(s, why);
		return;
	case SESSION_HELLO_FAILED:
		session_close(s, "TLS setup failed");
		return;
	case SESSION_HELLO_WAIT:
	case SESSION_HELLO_TLS:
		return;   /* TLS from the first byte: the greeting follows the handshake */
	case SESSION_HELLO_GREET:
		op->greet(s);
		break;
	case SESSION_HELLO_NONE:
		break;
	}
	if (c->failed) {
		int handshake = c->tls_state == CONN_TLS_HANDSHAKE;
		if (handshake && op->tls_failure_diag)
			session_tls_failed(s, c, op->proto);
		session_close(s, handshake ? "TLS handshake failed" :
			  op->failed ? op->failed(s) : "I/O error");
		return;
	}
	if (c->tls_just_done) {
		c->tls_just_done = 0;
		s->tls = 1;
		log_info("sess=%016llx proto=%s event=tls version=%s cipher=%s sni=%s",
			 (unsigned long long)s->id, op->proto, tls_version(c->tls),
			 tls_cipher(c->tls), tls_sni(c->tls) ? tls_sni(c->tls) : "-");
		if (op->tls_done)
			op->tls_done(s);
		if (op->greet && (s->lc->implicit_tls || s->greet_after_tls))
			op->greet(s);
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE)
		return;
	op->process(s);
	if (!s->closing && c->eof && (op->busy ? op->busy(s) : s->job_running) == 0)
		session_close(s, "client disconnected");
	conn_flush(c);   /* a closing session's last lines too */
	if (s->closing)
		return;
	if (c->failed)
		session_close(s, "I/O error");
	else if (op->after)
		op->after(s);
}

/* Answer an HTTP request on a mail port with one line of the session's protocol. */
int session_http_line(struct session *s, struct conn *c, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (!crossproto_http_request(line, len) && !crossproto_http_header(line, len))
		return 0;
	char msg[512];
	const char *what = "This is a mail server, not a web server: HTTP requests are not accepted "
			   "here; closing the connection";
	switch (s->lc->proto) {
	case PROTO_SMTP:
		snprintf(msg, sizeof(msg), "554 5.7.0 %.255s %s\r\n", s->w->cfg->hostname, what);
		break;
	case PROTO_IMAP:
		snprintf(msg, sizeof(msg), "* BYE %s\r\n", what);
		break;
	default:
		snprintf(msg, sizeof(msg), "-ERR %s\r\n", what);
		break;
	}
	conn_write(c, msg, strlen(msg));
	char esc[100];
	log_info("sess=%016llx event=http-on-mail-port listener=%s ip=%s line=\"%s\"",
		 (unsigned long long)s->id, s->lc->name, s->peer_ip,
		 log_escape(line, len > 60 ? 60 : len, esc, sizeof(esc)));
	return 1;
}

/* Count a failed login on the connection. */
int session_login_failed(struct session *s)
{
	return ++s->login_failures >= SESSION_LOGIN_FAILURES_MAX;
}

/* The login-check environment of a session. */
void session_auth_env(const struct session *s, struct auth_env *env)
{
	env->pool = s->w->pool;
	env->loop = s->w->loop;
	env->af = s->w->af;
	env->data_dir = s->w->cfg->data_dir;
	env->ip = s->peer_ip;
	env->delay_max_ms = s->w->cfg->login_delay_max * 1000;
	env->delay_min_ms = s->w->cfg->login_failure_delay * 1000;
	env->cache_ttl = s->w->cfg->login_cache_ttl;
	env->proto = s->lc->name;
	env->port = s->lc->port;
	env->client = s->client;
	env->tls = 1;   /* every protocol refuses credentials before TLS */
	env->diag_keep = s->w->cfg->diag_keep;
}

/* Record a login diagnostic. */
void session_diag(const struct session *s, int kind, const char *user, int tls, const char *detail)
{
	struct diag_event e;
	memset(&e, 0, sizeof(e));
	e.kind = kind;
	snprintf(e.user, sizeof(e.user), "%s", user ? user : "");
	for (char *p = e.user; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	snprintf(e.ip, sizeof(e.ip), "%s", s->peer_ip);
	snprintf(e.proto, sizeof(e.proto), "%s", s->lc->name);
	e.port = s->lc->port;
	snprintf(e.client, sizeof(e.client), "%s", s->client);
	e.tls = tls;
	snprintf(e.detail, sizeof(e.detail), "%s", detail ? detail : "");
	diag_submit(s->w->pool, s->w->cfg->data_dir, s->w->cfg->diag_keep, &e);
}


/* A zeroed session with the common fields. */
void *session_new(struct worker *w, int fd, enum listener_id lst,
		  const struct sockaddr_storage *peer, const struct session_ops *ops, size_t size)
{
	struct session *s = calloc(1, size);
	if (s == NULL) {
		close(fd);
		return NULL;
	}
	s->w = w;
	s->lst = lst;
	s->lc = &w->cfg->l[lst];
	s->peer = *peer;
	s->ops = ops;
	return s;
}

/* Add a session to the worker's list. */
static void session_add(struct worker *w, struct session *s)
{
	unsigned char r[8];
	if (getrandom(r, sizeof(r), 0) == (ssize_t)sizeof(r))
		memcpy(&s->id, r, sizeof(s->id));
	const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->peer_ip,
			  sizeof(s->peer_ip));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->peer_ip,
			  sizeof(s->peer_ip));
	s->next = w->sessions;
	s->prev = NULL;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
	if (!w->stopping)
		metrics_sessions(w->nsessions);   /* the workers balance new connections by it */
	metrics_connection(s->lst);
	metrics_sample_memory();
	log_info("sess=%016llx proto=%s event=connect listener=%s ip=%s", (unsigned long long)s->id,
		 s->ops->proto, s->lc->name, s->peer_ip);
}

/* Give the session its connection and register it. */
int session_connect(struct session *s, struct conn *c, int fd, size_t in_max, size_t out_max)
{
	if (conn_init(c, s->w->loop, fd, in_max, out_max, session_on_event, s) < 0) {
		close(fd);
		return -1;
	}
	c->alpn = s->ops->alpn;   /* TLS refuses clients that ask for another protocol (ALPACA) */
	s->conn = c;
	session_add(s->w, s);
	return 0;
}

/* Start talking: TLS, the hello wait, or the greeting. */
void session_begin(struct session *s)
{
	struct conn *c = s->conn;
	if (s->closing)
		return;
	if (s->lc->implicit_tls) {
		if (s->w->tls == NULL || conn_start_tls(c, s->w->tls) < 0)
			session_close(s, "TLS setup failed");
		else
			conn_detect_plaintext(c, 3000);   /* a client that forgot SSL */
		return;   /* the greeting follows the handshake */
	}
	if (s->ops->greet == NULL || session_wait_hello(s, c))
		return;   /* the client speaks first, or the greeting once it is not starting TLS */
	s->ops->greet(s);
	conn_flush(c);
}

/* Give the pages of freed memory back to the system. glibc keeps free chunks in its arenas, and
 * what many sessions free at once lies in holes between the data of the sessions that stay:
 * malloc_trim returns the whole pages inside those holes, of every arena. */
static void session_trim(struct ev_timer *t)
{
	(void)t;
	malloc_trim(0);
}

/* See session.h. */
void session_trim_soon(struct worker *w)
{
	if (trim_timer.heap_idx == 0)
		ev_timer_set(w->loop, &trim_timer, SESSION_TRIM_DELAY_MS, session_trim, w);
}
