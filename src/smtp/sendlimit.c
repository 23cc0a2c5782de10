/* sendlimit.c - per-account sending limits (see sendlimit.h). */
#include "sendlimit.h"
#include "queue-spool.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pool.h"
#include "sqldb.h"
#include "store-path.h"
#include "store.h"
#include "session.h"

#define HOUR 3600
#define DAY 86400
#define SMTP_ADDR_MAX_SL 321          /* as SMTP_ADDR_MAX */
#define KNOWN_FORGET_S (400 * DAY)   /* a correspondent not written to for this long is new */

/* Statements of the hot path, prepared once per thread. */
enum { SL_WINDOW, SL_KNOWN, SL_INS_LOG, SL_INS_KNOWN, SL_SUSPENDED, SL_NSTMT };
static const char *const sl_sql[SL_NSTMT] = {
	[SL_WINDOW] = "SELECT count(*), total(rcpts), total(new_rcpts), total(t > ?1) FROM sendlog "
		      "WHERE user = ?2 AND t > ?3",
	[SL_KNOWN] = "SELECT 1 FROM known WHERE user = ?1 AND rcpt = ?2 AND t > ?3",
	[SL_INS_LOG] = "INSERT INTO sendlog(user, t, rcpts, new_rcpts) VALUES (?1, ?2, ?3, ?4)",
	[SL_INS_KNOWN] = "INSERT OR REPLACE INTO known(user, rcpt, t) VALUES (?1, ?2, ?3)",
	[SL_SUSPENDED] = "SELECT 1 FROM suspended WHERE user = ?1",
};

/* One open limits.db per thread (the loop and each pool thread). */
static __thread struct sqldb_handle tdb;
static __thread unsigned tdb_writes;

/* A cached statement of this thread's handle, reset and unbound; NULL on error. The caller
 * gives it back with sl_release after use (an unreset statement keeps a read transaction open). */
static sqlite3_stmt *sl_stmt(int id)
{
	sqlite3_stmt *st;
	return sqldb_prepare(&tdb.stc, sl_sql[id], &st) == SQLITE_OK ? st : NULL;
}

/* Give back a statement of this thread's handle (cached: reset; otherwise finalized). */
static void sl_release(sqlite3_stmt *st)
{
	sqldb_release(&tdb.stc, st);
}

/* limits.db's schema by user_version (sqldb.h); step 1 is the schema the file had before
 * user_version was used, made with IF NOT EXISTS, so such a file passes it unchanged. */
static const struct sqldb_step sl_steps[] = { { "tables",
	"CREATE TABLE IF NOT EXISTS sendlog (user TEXT NOT NULL, t INTEGER NOT NULL,"
	" rcpts INTEGER NOT NULL, new_rcpts INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS sendlog_user_t ON sendlog(user, t);"
	"CREATE TABLE IF NOT EXISTS known (user TEXT NOT NULL, rcpt TEXT NOT NULL,"
	" t INTEGER NOT NULL, PRIMARY KEY (user, rcpt)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS refusals (user TEXT NOT NULL, t INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS refusals_user_t ON refusals(user, t);"
	/* suspensions live here, not in system.db: the workers may not write system.db */
	"CREATE TABLE IF NOT EXISTS suspended (user TEXT PRIMARY KEY, t INTEGER NOT NULL,"
	" reason TEXT NOT NULL) WITHOUT ROWID;", NULL } };

/* This thread's handle on <dir>/limits.db, created on first use. NULL on error. */
static sqlite3 *sl_open(const char *dir, const char **err_r)
{
	char path[CONFIG_PATH_MAX + 16], err[CONFIG_PATH_MAX + 200];
	snprintf(path, sizeof(path), "%s/limits.db", dir);
	/* counters, not mail: losing the last second of them in a power cut is acceptable */
	const struct sqldb_opts o = {
		.flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
		.journal_mode = "wal",
		.synchronous = "normal",
		.busy_timeout_ms = 5000,
		.steps = sl_steps,
		.nsteps = sizeof(sl_steps) / sizeof(sl_steps[0]),
		.migrate = 1,
	};
	sqlite3 *db = sqldb_handle_get(&tdb, path, &o, err, sizeof(err));
	if (db == NULL) {
		log_warn("event=sendlimit-db error=\"%s\"", err);
		*err_r = "cannot set up limits.db";
	}
	return db;
}

/* Lower-case copy of an address. */
static void lower(const char *in, char *out, size_t outlen)
{
	size_t i = 0;
	for (; in[i] && i + 1 < outlen; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	out[i] = '\0';
}

/* "13:05 UTC" (or "2026-11-29 13:05 UTC" when not today). */
static const char *when_text(time_t t, char *out, size_t outlen)
{
	struct tm tm, now;
	time_t n = time(NULL);
	gmtime_r(&t, &tm);
	gmtime_r(&n, &now);
	strftime(out, outlen, tm.tm_yday == now.tm_yday && tm.tm_year == now.tm_year ?
			      "%H:%M UTC" : "%Y-%m-%d %H:%M UTC", &tm);
	return out;
}

/* The limits in force. */
int sendlimit_effective(const struct config *cfg, struct acctdb *db, const char *user,
			uint64_t lim[ACCT_LIM_COUNT], const char **err_r)
{
	struct acct_limits own;
	if (acctdb_limits_get(db, user, &own, err_r) < 0)
		return -1;
	const unsigned def[ACCT_LIM_COUNT] = {
		cfg->send_messages_per_hour, cfg->send_messages_per_day, cfg->send_recipients_per_day,
		cfg->send_new_recipients_per_day, cfg->send_suspend_threshold,
	};
	for (int i = 0; i < ACCT_LIM_COUNT; i++)
		lim[i] = own.v[i] >= 0 ? (uint64_t)own.v[i] : def[i];
	return 0;
}

/* Counts of user since `since` (messages, recipients, new recipients) and within the last hour. */
static int sl_window(sqlite3 *db, const char *user, time_t now, uint64_t *msgs_hour,
		     uint64_t *msgs_day, uint64_t *rcpts_day, uint64_t *new_day)
{
	(void)db;
	sqlite3_stmt *st = sl_stmt(SL_WINDOW);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, (int64_t)now - HOUR);
	sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)now - DAY);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*msgs_day = (uint64_t)sqlite3_column_int64(st, 0);
		*rcpts_day = (uint64_t)sqlite3_column_double(st, 1);
		*new_day = (uint64_t)sqlite3_column_double(st, 2);
		*msgs_hour = (uint64_t)sqlite3_column_double(st, 3);
	}
	sl_release(st);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* When will `need` more units fit under `limit`? col: 0 messages, 1 recipients, 2 new
 * recipients; window in seconds. Walks the log oldest first until enough has left. */
static time_t sl_reset(sqlite3 *db, const char *user, time_t now, int window, int col,
		       uint64_t used, uint64_t limit, uint64_t need)
{
	static const char *const q[] = {
		"SELECT t, 1 FROM sendlog WHERE user = ?1 AND t > ?2 ORDER BY t",
		"SELECT t, rcpts FROM sendlog WHERE user = ?1 AND t > ?2 ORDER BY t",
		"SELECT t, new_rcpts FROM sendlog WHERE user = ?1 AND t > ?2 ORDER BY t",
	};
	sqlite3_stmt *st;
	time_t when = now + window;
	(void)db;
	if (sqldb_prepare(&tdb.stc, q[col], &st) != SQLITE_OK)
		return when;
	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)now - window);
	while (sqlite3_step(st) == SQLITE_ROW) {
		uint64_t n = (uint64_t)sqlite3_column_int64(st, 1);
		used = used > n ? used - n : 0;
		if (used + need <= limit) {
			when = (time_t)sqlite3_column_int64(st, 0) + window;
			break;
		}
	}
	sl_release(st);
	return (when + 59) / 60 * 60;   /* "after 13:05" must not be early */
}

/* MAIL FROM. */
int sendlimit_mail(struct worker *w, const char *user, struct sendlimit_tx *t, char *msg,
		   size_t msglen)
{
	const char *err = NULL;
	struct acct_user u;
	memset(t, 0, sizeof(*t));
	int r = acctdb_user_get(w->db, user, &u, &err);
	int suspended = r == 1 && u.suspended;   /* set by an older postino in system.db */
	explicit_bzero(&u, sizeof(u));
	if (r < 0)
		goto tempfail;
	if (!suspended) {
		int s = sendlimit_suspended(w->cfg->data_dir, user, &err);
		if (s < 0)
			goto tempfail;
		suspended = s;
	}
	if (suspended) {
		snprintf(msg, msglen, "550 5.7.1 Sending from %s is suspended because it tried to "
			 "send more mail than allowed (a sign the password may be stolen); "
			 "contact your provider's support", user);
		return 2;
	}
	if (sendlimit_effective(w->cfg, w->db, user, t->lim, &err) < 0)
		goto tempfail;
	if (!t->lim[ACCT_LIM_MSG_HOUR] && !t->lim[ACCT_LIM_MSG_DAY] && !t->lim[ACCT_LIM_RCPT_DAY] &&
	    !t->lim[ACCT_LIM_NEW_RCPT_DAY])
		return 0;   /* nothing to count against */
	sqlite3 *db = sl_open(w->cfg->data_dir, &err);
	time_t now = time(NULL);
	uint64_t mh = 0, md = 0;
	if (db == NULL || sl_window(db, user, now, &mh, &md, &t->rcpts_day, &t->new_day) < 0)
		goto tempfail;
	t->active = 1;
	char when[40];
	uint64_t lh = t->lim[ACCT_LIM_MSG_HOUR], ld = t->lim[ACCT_LIM_MSG_DAY];
	if (lh && mh >= lh) {
		snprintf(msg, msglen, "451 4.7.1 Sending limit reached: %llu messages per hour; "
			 "try again after %s", (unsigned long long)lh,
			 when_text(sl_reset(db, user, now, HOUR, 0, mh, lh, 1), when, sizeof(when)));
		return 1;
	}
	if (ld && md >= ld) {
		snprintf(msg, msglen, "451 4.7.1 Sending limit reached: %llu messages per day; "
			 "try again after %s", (unsigned long long)ld,
			 when_text(sl_reset(db, user, now, DAY, 0, md, ld, 1), when, sizeof(when)));
		return 1;
	}
	return 0;
tempfail:
	log_warn("event=sendlimit-lookup user=%s error=\"%s\"", user, err ? err : "limits.db");
	snprintf(msg, msglen, "451 4.3.0 Temporary lookup failure; please try again later");
	return -1;
}

/* RCPT TO. */
int sendlimit_rcpt(struct worker *w, const char *user, struct sendlimit_tx *t, const char *rcpt,
		   int dup, int *is_new_r, char *msg, size_t msglen)
{
	*is_new_r = 0;
	if (!t->active || dup)
		return 0;
	const char *err = NULL;
	sqlite3 *db = sl_open(w->cfg->data_dir, &err);
	if (db == NULL)
		goto tempfail;
	time_t now = time(NULL);
	char when[40];
	uint64_t lr = t->lim[ACCT_LIM_RCPT_DAY], ln = t->lim[ACCT_LIM_NEW_RCPT_DAY];
	if (lr && t->rcpts_day + t->tx_rcpts + 1 > lr) {
		snprintf(msg, msglen, "451 4.7.1 Sending limit reached: %llu recipients per day; "
			 "try again after %s", (unsigned long long)lr,
			 when_text(sl_reset(db, user, now, DAY, 1, t->rcpts_day, lr,
					    t->tx_rcpts + 1), when, sizeof(when)));
		return 1;
	}
	if (ln) {
		char lc[SMTP_ADDR_MAX_SL];
		lower(rcpt, lc, sizeof(lc));
		sqlite3_stmt *st = sl_stmt(SL_KNOWN);
		if (st == NULL)
			goto tempfail;
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, lc, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)now - KNOWN_FORGET_S);
		int rc = sqlite3_step(st);
		sl_release(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			goto tempfail;
		if (rc == SQLITE_DONE) {
			if (t->new_day + t->tx_new + 1 > ln) {
				snprintf(msg, msglen, "451 4.7.1 Sending limit reached: %llu new "
					 "recipients (never written to before) per day; try again "
					 "after %s", (unsigned long long)ln,
					 when_text(sl_reset(db, user, now, DAY, 2, t->new_day, ln,
							    t->tx_new + 1), when, sizeof(when)));
				return 1;
			}
			*is_new_r = 1;
			t->tx_new++;
		}
	}
	t->tx_rcpts++;
	return 0;
tempfail:
	log_warn("event=sendlimit-lookup user=%s error=\"%s\"", user,
		 err ? err : db ? sqlite3_errmsg(db) : "limits.db");
	snprintf(msg, msglen, "451 4.3.0 Temporary lookup failure; please try again later");
	return -1;
}

/* Pool thread: record an accepted message. */
int sendlimit_record(const char *data_dir, const char *user, const char *rcpts,
		     const int *is_new, unsigned nrcpts, size_t stride)
{
	const char *err = NULL;
	sqlite3 *db = sl_open(data_dir, &err);
	if (db == NULL)
		return -1;
	time_t now = time(NULL);
	unsigned nnew = 0;
	for (unsigned i = 0; is_new && i < nrcpts; i++)
		nnew += *(const int *)((const char *)is_new + i * stride) != 0;
	sqlite3_stmt *ins = NULL, *known = NULL;
	int ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	if (ok)
		ok = (ins = sl_stmt(SL_INS_LOG)) != NULL && (known = sl_stmt(SL_INS_KNOWN)) != NULL;
	if (ok) {
		sqlite3_bind_text(ins, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins, 2, now);
		sqlite3_bind_int64(ins, 3, nrcpts);
		sqlite3_bind_int64(ins, 4, nnew);
		ok = sqlite3_step(ins) == SQLITE_DONE;
	}
	for (unsigned i = 0; ok && i < nrcpts; i++) {
		char lc[SMTP_ADDR_MAX_SL];
		lower(rcpts + i * stride, lc, sizeof(lc));
		sqlite3_reset(known);
		sqlite3_bind_text(known, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_text(known, 2, lc, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(known, 3, now);
		ok = sqlite3_step(known) == SQLITE_DONE;
	}
	/* now and then, forget what no window looks at any more */
	if (ok && ++tdb_writes % 256 == 1) {
		static const char *const forget[] = { "DELETE FROM sendlog WHERE t < ?1",
						      "DELETE FROM known WHERE t < ?1",
						      "DELETE FROM refusals WHERE t < ?1" };
		const int64_t before[] = { now - 2 * DAY, now - KNOWN_FORGET_S, now - 2 * DAY };
		for (size_t i = 0; ok && i < sizeof(forget) / sizeof(forget[0]); i++) {
			sqlite3_stmt *p;
			if (sqldb_prepare(&tdb.stc, forget[i], &p) == SQLITE_OK) {
				sqlite3_bind_int64(p, 1, before[i]);
				ok = sqlite3_step(p) == SQLITE_DONE;
				sl_release(p);
			}
		}
	}
	sl_release(ins);
	sl_release(known);
	if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	log_warn("event=sendlimit-record user=%s error=\"%s\"", user, sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* ---- refusals and suspension ---- */

struct refusal_job {
	const struct config *cfg;
	char user[SMTP_ADDR_MAX_SL];
	char why[300];
	uint64_t threshold;
	int suspended;             /* this job suspended the account */
	uint64_t count;
};

static __thread struct acctdb *pool_acct;

/* See sendlimit.h. */
void sendlimit_thread_release(void)
{
	sqldb_handle_close(&tdb);
	tdb_writes = 0;
	acctdb_close(&pool_acct);
}

/* Write a notice to the postmaster of domain (or of the server) into their mailboxes. */
struct pm_ctx {
	char targets[16][SMTP_ADDR_MAX_SL];
	unsigned n;
};

static void pm_target(void *ctx, const char *target)
{
	struct pm_ctx *c = ctx;
	if (c->n < 16)
		snprintf(c->targets[c->n++], sizeof(c->targets[0]), "%s", target);
}

static int notify_postmaster(const struct config *cfg, struct acctdb *db, const char *user,
			     const char *text)
{
	const char *err;
	struct pm_ctx c = { .n = 0 };
	char pm[SMTP_ADDR_MAX_SL];
	const char *at = strrchr(user, '@');
	/* the account's domain first, then the server's: its host name minus the first label
	 * (quickstart's default domain), then the host name itself */
	const char *doms[3] = { at ? at + 1 : NULL, strchr(cfg->hostname, '.'), cfg->hostname };
	if (doms[1])
		doms[1]++;
	for (int i = 0; i < 3 && c.n == 0; i++) {
		if (doms[i] == NULL || acctdb_domain_exists(db, doms[i], &err) != 1)
			continue;
		snprintf(pm, sizeof(pm), "postmaster@%s", doms[i]);
		acctdb_resolve(db, pm, pm_target, &c, &err);
	}
	if (c.n == 0)
		return 0;
	char tmpl[CONFIG_PATH_MAX + 32];
	snprintf(tmpl, sizeof(tmpl), "%s/tmp/notice.XXXXXX", cfg->data_dir);
	int fd = mkstemp(tmpl);
	if (fd < 0)
		return -1;
	char date[64], id[20];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	unsigned char rnd[8] = { 0 };
	if (getrandom(rnd, sizeof(rnd), 0) < 0)
		memset(rnd, 0, sizeof(rnd));
	for (int i = 0; i < 8; i++)
		snprintf(id + 2 * i, 3, "%02x", rnd[i]);
	FILE *f = fdopen(fd, "w+");
	if (f == NULL) {
		close(fd);
		unlink(tmpl);
		return -1;
	}
	fprintf(f, "Return-Path: <>\r\nFrom: Mail system <MAILER-DAEMON@%s>\r\nTo: %s\r\n"
		"Subject: Sending suspended for %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n"
		"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		cfg->hostname, pm, user, date, id, cfg->hostname, text);
	int bad = fflush(f) != 0 || fsync(fd) != 0;
	long size = ftell(f);
	int r = -1;
	for (unsigned i = 0; !bad && size > 0 && i < c.n; i++) {
		const char *tat = strrchr(c.targets[i], '@');
		if (tat == NULL || acctdb_domain_exists(db, tat + 1, &err) != 1)
			continue;   /* a remote postmaster alias: the log line has to do */
		char root[CONFIG_PATH_MAX + 700];
		struct store_account *a = NULL;
		if (store_account_path(cfg->data_dir, c.targets[i], root, sizeof(root)) < 0 ||
		    store_account_create(root, &err) < 0 || store_account_open(root, &a, &err) != 1)
			continue;
		if (store_deliver(a, NULL, fd, (uint64_t)size, 1, now, 0, NULL, &err) == 0)
			r = 0;
		store_account_close(&a);
	}
	fclose(f);
	unlink(tmpl);
	return r;
}

/* Pool thread: count the refusal; suspend at the threshold. */
static void refusal_work(void *arg)
{
	struct refusal_job *j = arg;
	const char *err = NULL;
	sqlite3 *db = sl_open(j->cfg->data_dir, &err);
	if (db == NULL)
		return;
	time_t now = time(NULL);
	sqlite3_stmt *st;
	if (sqldb_prepare(&tdb.stc, "INSERT INTO refusals(user, t) VALUES (?, ?)", &st) !=
	    SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, j->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	int rc = sqlite3_step(st);
	sl_release(st);
	if (rc != SQLITE_DONE || j->threshold == 0)
		return;
	if (sqldb_prepare(&tdb.stc, "SELECT count(*) FROM refusals WHERE user = ? AND t > ?",
			  &st) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, j->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now - DAY);
	if (sqlite3_step(st) == SQLITE_ROW)
		j->count = (uint64_t)sqlite3_column_int64(st, 0);
	sl_release(st);
	if (j->count < j->threshold)
		return;
	/* one row per suspended account: the worker that inserts it is the one that suspended */
	if (sqldb_prepare(&tdb.stc, "INSERT OR IGNORE INTO suspended(user, t, reason) VALUES "
			  "(?, ?, ?)", &st) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, j->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_text(st, 3, j->why, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sl_release(st);
	if (rc != SQLITE_DONE) {
		log_warn("event=send-suspend-failed user=%s error=\"%s\"", j->user,
			 sqlite3_errmsg(db));
		return;
	}
	if (sqlite3_changes(db) == 0)
		return;   /* another worker got there first */
	if (pool_acct == NULL) {
		char path[CONFIG_PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/system.db", j->cfg->data_dir);
		if (acctdb_open(path, ACCTDB_RO, &pool_acct, &err) < 0)
			pool_acct = NULL;   /* the postmaster notice needs it; the suspension holds */
	}
	j->suspended = 1;
	sendlimit_on_suspend(j->cfg->data_dir, j->user);
	char when[40], text[4096];
	snprintf(text, sizeof(text),
		 "postino suspended sending from %s at %s: it made %llu attempts over its sending "
		 "limits in 24 hours (the threshold is %llu).\r\nThe last one was refused with:\r\n"
		 "  %s\r\n\r\nA burst like this usually means the password was stolen and the "
		 "account is sending spam.\r\nThe account can still log in and read its mail; its "
		 "queued outgoing mail is held.\r\n\r\nWhat to do:\r\n"
		 "  1. check with the owner, and change the password:  postino user passwd %s\r\n"
		 "  2. lift the suspension:                            postino user unsuspend %s\r\n"
		 "  3. if the limits are too tight for this account:    postino user limits %s "
		 "messages_per_hour=N ...\r\n",
		 j->user, when_text(now, when, sizeof(when)), (unsigned long long)j->count,
		 (unsigned long long)j->threshold, j->why, j->user, j->user, j->user);
	if (pool_acct == NULL || notify_postmaster(j->cfg, pool_acct, j->user, text) < 0)
		log_warn("event=send-suspend-notice-failed user=%s", j->user);
}

/* Loop thread: log what the job did and free it. */
static void refusal_done(void *arg)
{
	struct refusal_job *j = arg;
	if (j->suspended)
		log_warn("event=send-suspended user=%s refusals=%llu threshold=%llu reason=\"%s\" "
			 "action=\"sending suspended, postmaster notified; lift with: postino user "
			 "unsuspend %s\"", j->user, (unsigned long long)j->count,
			 (unsigned long long)j->threshold, j->why, j->user);
	free(j);
}

void sendlimit_refused(struct worker *w, const char *user, const struct sendlimit_tx *t,
		       const char *why)
{
	struct refusal_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return;
	j->cfg = w->cfg;
	snprintf(j->user, sizeof(j->user), "%s", user);
	snprintf(j->why, sizeof(j->why), "%s", why);
	j->threshold = t->lim[ACCT_LIM_SUSPEND];
	if (pool_submit(w->pool, refusal_work, refusal_done, j) < 0)
		free(j);
}

/* ---- admin ---- */

int sendlimit_counts(const char *data_dir, const char *user, struct sendlimit_counts *c,
		     const char **err_r)
{
	memset(c, 0, sizeof(*c));
	sqlite3 *db = sl_open(data_dir, err_r);
	time_t now = time(NULL);
	if (db == NULL ||
	    sl_window(db, user, now, &c->msgs_hour, &c->msgs_day, &c->rcpts_day, &c->new_day) < 0) {
		*err_r = "cannot read limits.db";
		return -1;
	}
	sqlite3_stmt *st;
	if (sqldb_prepare(&tdb.stc, "SELECT (SELECT count(*) FROM refusals WHERE user = ?1 AND "
			  "t > ?2), (SELECT count(*) FROM known WHERE user = ?1)", &st) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)now - DAY);
		if (sqlite3_step(st) == SQLITE_ROW) {
			c->refusals_day = (uint64_t)sqlite3_column_int64(st, 0);
			c->known = (uint64_t)sqlite3_column_int64(st, 1);
		}
		sl_release(st);
	}
	return 0;
}

int sendlimit_unsuspend(const char *data_dir, struct acctdb *db, const char *user,
			const char **err_r)
{
	struct acct_user u;
	int r = acctdb_user_get(db, user, &u, err_r);
	int legacy = r == 1 && u.suspended;
	explicit_bzero(&u, sizeof(u));
	if (r <= 0)
		return r;
	if (legacy && acctdb_user_set_suspended(db, user, 0, err_r) < 0)
		return -1;
	sqlite3 *l = sl_open(data_dir, err_r);
	if (l == NULL) {
		*err_r = "cannot open limits.db";
		return -1;
	}
	static const char *const clear[] = { "DELETE FROM refusals WHERE user = ?",
					     "DELETE FROM suspended WHERE user = ?" };
	int was = legacy;
	for (size_t i = 0; i < sizeof(clear) / sizeof(clear[0]); i++) {
		sqlite3_stmt *st;
		if (sqldb_prepare(&tdb.stc, clear[i], &st) != SQLITE_OK) {
			*err_r = "cannot clear the suspension in limits.db";
			return -1;
		}
		sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		sl_release(st);
		if (rc != SQLITE_DONE) {
			*err_r = "cannot clear the suspension in limits.db";
			return -1;
		}
		if (i == 1 && sqlite3_changes(l) > 0)
			was = 1;
	}
	sendlimit_on_unsuspend(data_dir, user);
	return was ? 1 : 2;
}

int sendlimit_suspended(const char *data_dir, const char *user, const char **err_r)
{
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/limits.db", data_dir);
	if (access(path, F_OK) < 0 && errno == ENOENT)
		return 0;   /* nothing was ever counted: nothing suspended (and no file to create) */
	if (sl_open(data_dir, err_r) == NULL)
		return -1;
	sqlite3_stmt *st = sl_stmt(SL_SUSPENDED);
	if (st == NULL) {
		*err_r = "cannot read limits.db";
		return -1;
	}
	sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sl_release(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		*err_r = "cannot read limits.db";
		return -1;
	}
	return rc == SQLITE_ROW;
}

/* The single place a suspension holds the account's queued mail. */
void sendlimit_on_suspend(const char *data_dir, const char *user)
{
	char qdir[4200];
	snprintf(qdir, sizeof(qdir), "%s/queue", data_dir);
	if (queue_hold_sender(qdir, user, 1) < 0)
		log_error("event=send-suspended-hold-failed user=%s error=\"cannot hold the queued "
			  "mail\"", user);
}

/* The single place lifting a suspension releases the account's queued mail. */
void sendlimit_on_unsuspend(const char *data_dir, const char *user)
{
	char qdir[4200];
	snprintf(qdir, sizeof(qdir), "%s/queue", data_dir);
	if (queue_hold_sender(qdir, user, 0) < 0)
		log_error("event=send-unsuspended-release-failed user=%s error=\"cannot release the "
			  "queued mail\"", user);
}
