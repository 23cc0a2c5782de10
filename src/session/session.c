/* session.c - the parts of a session every protocol shares (session.h). */
#include "session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "auth-verify.h"
#include "conn.h"
#include "crossproto.h"
#include "diag.h"
#include "iptable.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"

/* Longest wait for a ClientHello on a STARTTLS port (slow links, or no RTT measured) */
#define SESSION_HELLO_WAIT_MAX_MS 250

/* A TLS ClientHello on a STARTTLS port is served as implicit TLS (clients set to "SSL" on 587,
 * 143 or 110 just work); anything else gets the plaintext greeting. */
int session_hello(struct session *s, struct conn *c, const char *hint_fmt,
			 unsigned hint_port)
{
	if (c->plaintext_peer) {
		char line[400];
		snprintf(line, sizeof(line), hint_fmt, hint_port);
		conn_write_plain(c, line);
		session_diag(s, DIAG_PLAINTEXT, NULL, 0, "plaintext client on an SSL/TLS port");
		return -2;
	}
	switch (c->hello) {
	case CONN_HELLO_WAIT:
		return 3;
	case CONN_HELLO_TLS:
		c->hello = CONN_HELLO_NONE;
		s->greet_after_tls = 1;
		log_info("sess=%016llx event=tls-on-starttls-port listener=%s",
			 (unsigned long long)s->id, s->lc->name);
		return conn_start_tls(c, s->w->tls) < 0 ? -1 : 2;
	case CONN_HELLO_PLAIN:
		c->hello = CONN_HELLO_NONE;
		return 1;
	default:
		return 0;
	}
}

/* Wait for a ClientHello on client ports that offer STARTTLS (not on the MX port 25), for a few
 * round trips of the connection (conn_wait_hello), so plaintext clients are greeted at once. */
int session_wait_hello(struct session *s, struct conn *c)
{
	if (s->w->tls == NULL || s->lc->implicit_tls || s->lst == LST_SMTP)
		return 0;
	unsigned margin = s->w->cfg->tls_hello_margin_ms;
	conn_wait_hello(c, margin, margin > SESSION_HELLO_WAIT_MAX_MS ? margin :
			SESSION_HELLO_WAIT_MAX_MS);
	return 1;
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

/* A TLS handshake failed. */
void session_tls_failed(const struct session *s, struct conn *c, const char *proto)
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

/* Fill the common fields of a new session. */
void session_init(struct session *s, struct worker *w, enum listener_id lst,
			 const struct sockaddr_storage *peer, void (*shutdown)(struct session *s))
{
	s->w = w;
	s->lst = lst;
	s->lc = &w->cfg->l[lst];
	s->peer = *peer;
	s->shutdown = shutdown;
}

/* Add a session to the worker's list. */
void session_add(struct worker *w, struct session *s, const char *proto)
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
	metrics_connection(s->lst);
	metrics_sample_memory();
	log_info("sess=%016llx proto=%s event=connect listener=%s ip=%s", (unsigned long long)s->id,
		 proto, s->lc->name, s->peer_ip);
}

/* Remove a session from the list and the per-IP table. */
void session_remove(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nsessions--;
	iptable_release(w->ipt, w->index, (struct sockaddr *)&s->peer);
	if (w->session_gone)
		w->session_gone(w);
	if (w->stopping && w->nsessions == 0)
		ev_stop(w->loop);
}
