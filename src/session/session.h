/* session.h - what every session of a protocol worker shares: the common fields, the worker
 * it runs in, the hello step of forgiving ports, login accounting and diagnostics.
 *
 * The protocols (smtp, imap, pop3, http) build on this; the worker process (master/worker.c)
 * accepts connections and hands them to a protocol's *_session_start.
 */
#ifndef POSTINO_SESSION_H
#define POSTINO_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

struct ev_loop;
struct pool;
struct tls_ctx;
struct acctdb;
struct iptable;
struct authfail;
struct session;
struct conn;

/* The part of every protocol session the worker manages: listing, shutdown and accounting. */
struct session {
	struct worker *w;
	const struct listener_conf *lc;
	enum listener_id lst;
	uint64_t id;                       /* random, for log lines */
	struct sockaddr_storage peer;
	char peer_ip[64];
	int greet_after_tls;               /* TLS from the first byte: greet after the handshake */
	char client[128];                  /* what the client calls itself (EHLO name, IMAP ID), for
					    * the login diagnostics; "" = unknown */
	unsigned login_failures;           /* failed logins on this connection */
	uint64_t cmd_ns, deliver_ns;       /* metrics: when the command / the delivery began */
	struct session *prev, *next;
	/* asked to finish: idle sessions close now (421 / BYE), busy ones after their command */
	void (*shutdown)(struct session *s);
};

struct worker {
	unsigned index;
	struct ev_loop *loop;
	struct pool *pool;
	const struct config *cfg;
	struct tls_ctx *tls;
	struct acctdb *db;                 /* loop-thread handle: lookups only */
	struct iptable *ipt;
	struct authfail *af;               /* shared brute-force brake */
	int stopping;
	unsigned nsessions;
	struct session *sessions;
	/* called when a session has gone (the worker resumes paused listeners) */
	void (*session_gone)(struct worker *w);
};

/* What the session should do about the client's first byte (forgiving ports): 0 carry on,
 * 1 greet now, 2 TLS was started (greet after the handshake), 3 wait, -1 TLS setup failed,
 * -2 a plaintext client on an implicit-TLS port was told (hint_fmt with hint_port, one line of
 * the protocol) to turn on SSL/TLS: close the session. */
int session_hello(struct session *s, struct conn *c, const char *hint_fmt,
			 unsigned hint_port) __attribute__((format(printf, 3, 0)));
/* Should a new plaintext session wait for a possible ClientHello before greeting? */
int session_wait_hello(struct session *s, struct conn *c);

/* A line from the client in command state: if it is an HTTP request line or header (a browser
 * sent to a mail port, cross-protocol attacks such as ALPACA; crossproto.h), queue one error line
 * of the session's protocol and return 1: the caller closes the session at once, reading nothing
 * more. 0 otherwise. */
int session_http_line(struct session *s, struct conn *c, const char *line, size_t len);

/* Failed logins allowed on one connection: the one after which it is closed (as Postfix's
 * smtpd_hard_error_limit for AUTH, scaled down to what a person mistyping needs). */
#define SESSION_LOGIN_FAILURES_MAX 3
/* Count a failed login (wrong credentials) on this session. 1: it was the last allowed; the
 * caller sends its failure reply and a closing line, then closes the session. */
int session_login_failed(struct session *s);

/* The login-check environment of a session (see auth-verify.h). */
struct auth_env;
void session_auth_env(const struct session *s, struct auth_env *env);

/* Record a login diagnostic (diag.h) for this session: kind, the user if known, whether TLS
 * is on, a detail or NULL. Written on the pool. */
void session_diag(const struct session *s, int kind, const char *user, int tls, const char *detail);
/* A TLS handshake failed on this session's connection: log it and record it by IP (with SNI). */
void session_tls_failed(const struct session *s, struct conn *c, const char *proto);

/* Fill the common fields of a new session. */
void session_init(struct session *s, struct worker *w, enum listener_id lst,
			 const struct sockaddr_storage *peer, void (*shutdown)(struct session *s));
/* Register/unregister a session with its worker (and the per-IP table); logs the connect. */
void session_add(struct worker *w, struct session *s, const char *proto);
void session_remove(struct worker *w, struct session *s);

#endif
