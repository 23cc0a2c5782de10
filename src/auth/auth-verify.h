/* auth-verify.h - check a login (address + password) off the event loop.
 *
 * The lookup and the password hash run on the worker's thread pool; cb runs on the loop thread
 * with the outcome. The login name is the full address, matched without regard to case. An
 * unknown user costs the same time as a wrong password, so names cannot be probed by timing.
 *
 * Login cache: a correct login is remembered for cache_ttl seconds as a keyed BLAKE2b of
 * (address, stored hash, password) under a random key, in a table the workers share (mapped by
 * the master before it forks them: a client's next connection usually lands on another
 * worker) or, without it, in each process with a key of its own; the next login
 * of that address with the same password and the same stored hash is accepted without running
 * the password hash (yescrypt costs milliseconds and megabytes; clients that log in every few
 * minutes, and IMAP clients that open several connections, pay it once). The account is still
 * looked up every time: a removed account, a changed password (its stored hash changes) or a
 * wrong password misses the cache and is checked in full. Failures are never cached, so the
 * brute-force brake sees every attempt at full cost.
 */
#ifndef POSTINO_AUTH_VERIFY_H
#define POSTINO_AUTH_VERIFY_H

#include <stddef.h>

#include "sasl.h"   /* sessions that check passwords decode SASL responses */

struct pool;
struct ev_loop;
struct authfail;

/* Where a check runs and what it is charged to. */
struct auth_env {
	struct pool *pool;
	struct ev_loop *loop;
	struct authfail *af;      /* brute-force brake, or NULL */
	const char *data_dir;
	const char *ip;           /* the client's address */
	unsigned delay_max_ms;    /* cap of the brute-force delay (0: no growing delay) */
	unsigned delay_min_ms;    /* every failure waits at least this (login_failure_delay) */
	unsigned cache_ttl;       /* seconds a correct login is remembered (login_cache_ttl; 0 off) */
	/* for the login diagnostics (diag.h): every outcome is recorded */
	const char *proto;        /* listener name, or NULL: nothing recorded */
	unsigned port;
	const char *client;       /* EHLO name, IMAP ID, ... or "" */
	int tls;
	unsigned diag_keep;
};

struct auth_result {
	int result;              /* 1 ok, 0 bad credentials, -1 temporary failure */
	char user[321];          /* the normalized (lower-case) login name */
	const char *reason;      /* "ok", "unknown user", "wrong password", ... (static) */
};

typedef void auth_verify_cb(void *ctx, const struct auth_result *r);

/* Queue a check. The password is copied (and wiped after use). A failure is reported after the
 * brute-force delay (authfail.h), and never sooner than delay_min_ms (a timer on the loop, never
 * a sleep); a success at once. 0 queued, -1 out of memory. */
int auth_verify_submit(const struct auth_env *env, const char *user, const char *password,
		       auth_verify_cb *cb, void *ctx);
/* Close the calling pool thread's system.db handle (the thread goes idle); the next check
 * reopens it. */
void auth_verify_thread_release(void);
/* Map the login cache's table in memory shared with the processes forked after (the master,
 * before its workers). 0, or -1 (errno set; each process then keeps its own table). */
int auth_login_cache_share(void);

#endif
