/* diag.h - login diagnostics (issue 6): why logins fail, for the helpdesk.
 *
 * Every failed login (and the last successful one per account and protocol) is recorded in
 * <data>/diag.db (SQLite, WAL, synchronous=NORMAL, shared by all workers) with the protocol
 * (listener name: submission, imap, pop3s, ...), port, client name (EHLO name, IMAP ID
 * name/version), client address, time, and whether TLS was on. Unknown user and wrong password
 * are told apart here -- never to the client. TLS handshake failures have no user: they are kept
 * by IP, with the SNI name when the client sent one.
 *
 * Bounded: at most `keep` (diag_keep) events per account and per IP; events older than 30 days
 * and anything past 200000 rows are pruned now and then. Writes run on the worker's thread pool,
 * never on the event loop.
 */
#ifndef POSTINO_DIAG_H
#define POSTINO_DIAG_H

#include <stdint.h>

struct pool;

enum diag_kind {
	DIAG_OK,               /* successful login (kept as "last login" per protocol) */
	DIAG_UNKNOWN_USER,
	DIAG_WRONG_PASSWORD,
	DIAG_PLAINTEXT,        /* credentials refused before TLS */
	DIAG_SUSPENDED,        /* account suspended (sending) */
	DIAG_TLS_FAILED,       /* TLS handshake failed */
	DIAG_BAD_MECH,         /* unsupported SASL mechanism */
	DIAG_TEMPFAIL,         /* our fault: database unavailable ... */
	DIAG_WRONG_PORT,       /* AUTH on the MX port 25 */
	DIAG_KIND_COUNT
};

/* "ok", "unknown-user", "wrong-password", ... (the `kind` column). */
extern const char *const diag_kind_names[DIAG_KIND_COUNT];

struct diag_event {
	int64_t t;                 /* unix time (0: now) */
	int kind;                  /* enum diag_kind */
	char user[321];            /* "" when not known */
	char ip[64];
	char proto[16];            /* listener name */
	unsigned port;
	char client[128];          /* "" when the client did not say */
	int tls;
	unsigned delay_ms;         /* the brute-force brake held the answer this long */
	char detail[256];          /* TLS error, SNI name, mechanism, ... */
};

/* Loop thread: record e on the pool (copied). keep: events kept per account and per IP. */
void diag_submit(struct pool *pool, const char *data_dir, unsigned keep, const struct diag_event *e);
/* Any thread (each has its own handle): write e now. 0 ok, -1 error. */
int diag_write(const char *data_dir, unsigned keep, const struct diag_event *e);
/* Close the calling thread's handle (a pool thread going idle); the next write reopens it. */
void diag_thread_release(void);

/* Events of an account (by = "user") or an IP (by = "ip"), newest first, at most max. The last
 * successful login per protocol comes with by = "ok" (key: the account). The text fields of
 * the events come escaped for display (log_escape_text: no control characters). Count or -1. */
int diag_list(const char *data_dir, const char *by, const char *key, unsigned max,
	      void (*cb)(void *ctx, const struct diag_event *e), void *ctx, const char **err_r);

#endif
