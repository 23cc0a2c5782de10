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
	const struct session_ops *ops;     /* the protocol */
	struct conn *conn;                 /* the protocol's connection (in its own struct) */
	int tls;                           /* the handshake is done */
	int closing;                       /* closed: events are ignored until it is reaped */
	int job_running;                   /* a pool job holds a pointer to this session: its
					    * completion reaps a closed session */
};

/* What a protocol tells the session core (session_start, the connection's events). Every
 * protocol session embeds struct session first, so a struct session * is also its own. The
 * core runs the steps every protocol shares, in this order, on each event of the connection:
 * the hello step of a new connection (a ClientHello on a STARTTLS port is served as implicit
 * TLS; a plaintext client on an implicit-TLS port is told so and closed), a failed connection,
 * the end of a handshake (log line, the greeting of an implicit-TLS session), then process,
 * EOF, the flush of the output, after. */
struct session_ops {
	const char *proto;    /* "smtp", "imap", "pop3", "http": log lines */
	const char *alpn;     /* the ALPN protocol TLS insists on (ALPACA), NULL: any */
	/* one line of the protocol telling a plaintext client on an implicit-TLS port to turn on
	 * SSL/TLS, with %u the STARTTLS port of listener hint_listener; NULL: plaintext() */
	const char *tls_hint;
	enum listener_id hint_listener;
	int tls_failure_diag; /* a failed handshake is a login diagnostic of the client's IP */
	/* the greeting (NULL: the client speaks first) */
	void (*greet)(struct session *s);
	/* read and answer what the client sent */
	void (*process)(struct session *s);
	/* 1 while EOF must not close the session yet (a command still running, or after() takes
	 * care of EOF); NULL: while a job runs */
	int (*busy)(const struct session *s);
	/* optional: what the close line adds ("messages=3", "user=..."), into out */
	void (*close_detail)(const struct session *s, char *out, size_t outlen);
	/* free what the protocol holds, once the connection is closed (session_reap) */
	void (*release)(struct session *s);
	/* asked to finish: idle sessions close now (421 / BYE), busy ones after their command */
	void (*shutdown)(struct session *s);
	/* optional: the handshake is done (before the greeting) */
	void (*tls_done)(struct session *s);
	/* optional, instead of tls_hint: answer a plaintext client on an implicit-TLS port; returns
	 * the reason the session is closed for */
	const char *(*plaintext)(struct session *s);
	/* optional: why a connection that failed outside a handshake is closed ("I/O error") */
	const char *(*failed)(const struct session *s);
	/* optional: after the output was flushed on an event */
	void (*after)(struct session *s);
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

/* A new session of a protocol: size zeroed octets (the protocol's struct, which embeds struct
 * session first) with the common fields set, so that the protocol can size its own parts from
 * s->lc. NULL when out of memory (fd closed). */
void *session_new(struct worker *w, int fd, enum listener_id lst,
		  const struct sockaddr_storage *peer, const struct session_ops *ops, size_t size);
/* Give the session its connection c on fd (buffers of in_max and out_max octets, events to the
 * core) and register it with its worker (and the per-IP table); logs the connect. -1: nothing
 * registered and fd closed (the caller frees what it allocated, and s). */
int session_connect(struct session *s, struct conn *c, int fd, size_t in_max, size_t out_max);
/* Start talking, once the protocol has armed its timers: the handshake of an implicit-TLS
 * port, a short wait for a ClientHello on a STARTTLS port, or else the greeting. */
void session_begin(struct session *s);
/* Close a session: one event=close line (reason, the protocol's close_detail), no more input,
 * and the reap deferred (never a free inside the event that closed it). Again: nothing. */
void session_close(struct session *s, const char *reason);
/* Reap a closed session once nothing points at it: not while a pool job runs (its completion
 * calls this again) nor before the connection's deferred calls ran; then the output's last
 * flush, the connection closed, the protocol's release, the worker's list, free. Deferred. */
void session_reap_later(struct session *s);
/* Much memory was just freed on the loop thread (a session at rest closed its index handle):
 * give its pages back to the system a little later, once for the whole wave. */
void session_trim_soon(struct worker *w);

#endif
