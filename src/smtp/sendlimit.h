/* sendlimit.h - per-account sending limits on the submission ports (issue 5).
 *
 * A hijacked account must not become a spam cannon. Every message an authenticated user gets
 * accepted is written to <data>/limits.db (SQLite, WAL, shared by all workers, kept across
 * restarts): table `sendlog` (user, time, recipients, new recipients), table `known` (the
 * recipients each user has ever written to) and table `refusals` (attempts over a limit).
 *
 * Limits (0 = none): messages per hour and per 24 hours, recipients per 24 hours and new
 * (never before written to) recipients per 24 hours; from the config (`send_*` keys) unless the
 * account has its own (`postino user limits`, table send_limits in system.db). Windows slide:
 * the reply says when the oldest counted message leaves the window.
 *
 * MAIL FROM is refused (451 4.7.1) when a message limit is reached, RCPT TO when a recipient
 * limit would be passed. Each refusal is recorded; at `send_suspend_threshold` refusals in 24
 * hours the account is suspended (table suspended in limits.db), the postmaster is told (log
 * line + a message to postmaster@ of the account's domain) and MAIL FROM gets 550 5.7.1 until
 * `postino user unsuspend`.
 *
 * Counting happens when a message is accepted, checking at MAIL/RCPT: sessions of several
 * workers running in parallel can overshoot a limit by the messages they have in flight.
 */
#ifndef POSTINO_SENDLIMIT_H
#define POSTINO_SENDLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "acctdb.h"

struct config;
struct smtp_tx;
struct worker;

/* What MAIL FROM found, kept by the transaction for its RCPTs. */
struct sendlimit_tx {
	int active;                       /* limits apply to this transaction */
	uint64_t lim[ACCT_LIM_COUNT];     /* effective limits, 0 = none */
	uint64_t rcpts_day, new_day;      /* counted in the last 24 hours */
	unsigned tx_rcpts, tx_new;        /* accepted so far in this transaction */
};

/* Today's picture of an account, for `postino user show`. */
struct sendlimit_counts {
	uint64_t msgs_hour, msgs_day, rcpts_day, new_day, refusals_day, known;
};

/* The limits in force for user (account's own, else the config's). */
int sendlimit_effective(const struct config *cfg, struct acctdb *db, const char *user,
			uint64_t lim[ACCT_LIM_COUNT], const char **err_r);

/* Loop thread, MAIL FROM by an authenticated user. 0 allowed (t filled); 1 refused: reply
 * (with code, no CRLF) in msg; the caller sends it and calls sendlimit_refused() when the reply
 * is a 451 over a limit (return value 1) -- a suspended account returns 2. -1 lookup failure
 * (reply in msg). */
int sendlimit_mail(struct worker *w, const char *user, struct sendlimit_tx *t, char *msg,
		   size_t msglen);

/* Loop thread, RCPT TO. rcpt: the recipient (any case); dup: already a recipient of this
 * transaction. 0 allowed (*is_new_r set), 1 refused (reply in msg), -1 lookup failure. */
int sendlimit_rcpt(struct worker *w, const char *user, struct sendlimit_tx *t, const char *rcpt,
		   int dup, int *is_new_r, char *msg, size_t msglen);

/* Loop thread: record a refusal over a limit (on the pool); suspends the account at the
 * threshold. why: the refusal's text. */
void sendlimit_refused(struct worker *w, const char *user, const struct sendlimit_tx *t,
		       const char *why);

/* Pool thread: a message of user was accepted. rcpts: nrcpts addresses, stride bytes apart;
 * is_new: flags at the same stride (int), or NULL. 0 ok, -1 error (logged). */
int sendlimit_record(const char *data_dir, const char *user, const char *rcpts,
		     const int *is_new, unsigned nrcpts, size_t stride);

/* Close this thread's limits.db and system.db handles (a pool thread gone idle or ending); the
 * next use reopens them. */
void sendlimit_thread_release(void);

/* Admin side (CLI). */
int sendlimit_counts(const char *data_dir, const char *user, struct sendlimit_counts *c,
		     const char **err_r);
/* Lift a suspension: clear it and the recorded refusals. 1 lifted, 2 was not suspended (the
 * refusals are cleared), 0 no such user. */
int sendlimit_unsuspend(const char *data_dir, struct acctdb *db, const char *user,
			const char **err_r);
/* Is sending from user suspended (limits.db)? 1 yes, 0 no, -1 error. An account suspended by an
 * older postino has users.suspended set in system.db instead: callers check both. */
int sendlimit_suspended(const char *data_dir, const char *user, const char **err_r);

/* Called once when an account gets suspended / unsuspended (holds / releases its queue). */
void sendlimit_on_suspend(const char *data_dir, const char *user);
void sendlimit_on_unsuspend(const char *data_dir, const char *user);

#endif
