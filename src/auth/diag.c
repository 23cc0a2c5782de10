/* diag.c - login diagnostics in <data>/diag.db (see diag.h). */
#include "diag.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "pool.h"
#include "sqldb.h"

#define DIAG_MAX_AGE_S (30 * 86400)
#define DIAG_MAX_ROWS 200000

const char *const diag_kind_names[DIAG_KIND_COUNT] = {
	"ok", "unknown-user", "wrong-password", "plaintext-refused", "suspended", "tls-failed",
	"unsupported-mechanism", "temporary-failure", "wrong-port",
};

/* diag.db's schema by user_version (sqldb.h); step 1 is the schema the file had before
 * user_version was used, made with IF NOT EXISTS, so such a file passes it unchanged. */
static const struct sqldb_step diag_steps[] = { { "tables",
	"CREATE TABLE IF NOT EXISTS auth_events (id INTEGER PRIMARY KEY, t INTEGER NOT NULL,"
	" user TEXT NOT NULL, ip TEXT NOT NULL, proto TEXT NOT NULL, port INTEGER NOT NULL,"
	" client TEXT NOT NULL, tls INTEGER NOT NULL, kind TEXT NOT NULL,"
	" delay_ms INTEGER NOT NULL, detail TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS auth_events_user ON auth_events(user, id);"
	"CREATE INDEX IF NOT EXISTS auth_events_ip ON auth_events(ip, id);"
	"CREATE TABLE IF NOT EXISTS last_ok (user TEXT NOT NULL, proto TEXT NOT NULL,"
	" t INTEGER NOT NULL, ip TEXT NOT NULL, port INTEGER NOT NULL, client TEXT NOT NULL,"
	" PRIMARY KEY (user, proto)) WITHOUT ROWID;", NULL } };

static __thread struct sqldb_handle tdb;
static __thread unsigned tdb_writes;

/* This thread's handle on <dir>/diag.db. NULL on error. */
static sqlite3 *diag_open(const char *dir, int create)
{
	char path[CONFIG_PATH_MAX + 16], err[CONFIG_PATH_MAX + 200];
	snprintf(path, sizeof(path), "%s/diag.db", dir);
	const struct sqldb_opts o = {
		.flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0),
		.journal_mode = "wal",
		.synchronous = "normal",
		.busy_timeout_ms = 5000,
		.steps = diag_steps,
		.nsteps = sizeof(diag_steps) / sizeof(diag_steps[0]),
		.migrate = 1,
	};
	sqlite3 *db = sqldb_handle_get(&tdb, path, &o, err, sizeof(err));
	if (db == NULL)
		log_warn("event=diag-db error=\"%s\"", err);
	return db;
}

/* See diag.h. */
void diag_thread_release(void)
{
	sqldb_handle_close(&tdb);
}

/* Run one statement with up to two text and one integer parameter. */
static int diag_exec(const char *sql, const char *a, const char *b, int64_t n)
{
	sqlite3_stmt *st;
	if (sqldb_prepare(&tdb.stc, sql, &st) != SQLITE_OK)
		return -1;
	int i = 1;
	if (a)
		sqlite3_bind_text(st, i++, a, -1, SQLITE_STATIC);
	if (b)
		sqlite3_bind_text(st, i++, b, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, i, n);
	int rc = sqlite3_step(st);
	sqldb_release(&tdb.stc, st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int diag_write(const char *data_dir, unsigned keep, const struct diag_event *e)
{
	sqlite3 *db = diag_open(data_dir, 1);
	if (db == NULL)
		return -1;
	int64_t now = e->t ? e->t : (int64_t)time(NULL);
	if (keep == 0)
		keep = 100;
	sqlite3_stmt *st;
	int ok = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	if (ok && e->kind == DIAG_OK) {
		ok = sqldb_prepare(&tdb.stc, "INSERT OR REPLACE INTO last_ok(user, proto, t, ip, "
				   "port, client) VALUES (?,?,?,?,?,?)", &st) == SQLITE_OK;
		if (ok) {
			sqlite3_bind_text(st, 1, e->user, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, e->proto, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, now);
			sqlite3_bind_text(st, 4, e->ip, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 5, (int)e->port);
			sqlite3_bind_text(st, 6, e->client, -1, SQLITE_STATIC);
			ok = sqlite3_step(st) == SQLITE_DONE;
			sqldb_release(&tdb.stc, st);
		}
	} else if (ok) {
		ok = sqldb_prepare(&tdb.stc, "INSERT INTO auth_events(t, user, ip, proto, port, "
				   "client, tls, kind, delay_ms, detail) VALUES "
				   "(?,?,?,?,?,?,?,?,?,?)", &st) == SQLITE_OK;
		if (ok) {
			sqlite3_bind_int64(st, 1, now);
			sqlite3_bind_text(st, 2, e->user, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, e->ip, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 4, e->proto, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 5, (int)e->port);
			sqlite3_bind_text(st, 6, e->client, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 7, e->tls ? 1 : 0);
			sqlite3_bind_text(st, 8, diag_kind_names[e->kind], -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 9, (int)e->delay_ms);
			sqlite3_bind_text(st, 10, e->detail, -1, SQLITE_STATIC);
			ok = sqlite3_step(st) == SQLITE_DONE;
			sqldb_release(&tdb.stc, st);
		}
		/* keep the newest `keep` per account and per IP (both indexed by (key, id)) */
		if (ok && e->user[0])
			ok = diag_exec("DELETE FROM auth_events WHERE user = ?1 AND id <= "
				       "(SELECT id FROM auth_events WHERE user = ?1 ORDER BY id DESC "
				       "LIMIT 1 OFFSET ?2)", e->user, NULL, keep) == 0;
		if (ok)
			ok = diag_exec("DELETE FROM auth_events WHERE ip = ?1 AND id <= "
				       "(SELECT id FROM auth_events WHERE ip = ?1 ORDER BY id DESC "
				       "LIMIT 1 OFFSET ?2)", e->ip, NULL, keep) == 0;
		if (ok && ++tdb_writes % 1024 == 1) {
			ok = diag_exec("DELETE FROM auth_events WHERE t < ?", NULL, NULL,
				       now - DIAG_MAX_AGE_S) == 0 &&
			     diag_exec("DELETE FROM auth_events WHERE id <= (SELECT max(id) FROM "
				       "auth_events) - ?", NULL, NULL, DIAG_MAX_ROWS) == 0;
		}
	}
	if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	log_warn("event=diag-write error=\"%s\"", sqlite3_errmsg(db));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

struct diag_job {
	char data_dir[CONFIG_PATH_MAX];
	unsigned keep;
	struct diag_event e;
};

static void diag_work(void *arg)
{
	struct diag_job *j = arg;
	diag_write(j->data_dir, j->keep, &j->e);
}

static void diag_done(void *arg)
{
	free(arg);
}

void diag_submit(struct pool *pool, const char *data_dir, unsigned keep, const struct diag_event *e)
{
	struct diag_job *j = malloc(sizeof(*j));
	if (j == NULL)
		return;
	snprintf(j->data_dir, sizeof(j->data_dir), "%s", data_dir);
	j->keep = keep;
	j->e = *e;
	if (j->e.t == 0)
		j->e.t = (int64_t)time(NULL);
	if (pool == NULL) {
		diag_write(j->data_dir, keep, &j->e);
		free(j);
		return;
	}
	if (pool_submit(pool, diag_work, diag_done, j) < 0)
		free(j);
}

/* Copy a text column, escaped for display: a login name or client name sent before login is
 * the peer's text, and a CR/LF or ESC in it must not forge a line of the admin's listing. */
static void col(sqlite3_stmt *st, int i, char *out, size_t outlen)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	log_escape_text(v ? (const char *)v : "", out, outlen);
}

int diag_list(const char *data_dir, const char *by, const char *key, unsigned max,
	      void (*cb)(void *ctx, const struct diag_event *e), void *ctx, const char **err_r)
{
	sqlite3 *db = diag_open(data_dir, 1);
	if (db == NULL) {
		*err_r = "cannot open diag.db";
		return -1;
	}
	const char *sql;
	if (strcmp(by, "ok") == 0)
		sql = "SELECT t, user, ip, proto, port, client, 1, 'ok', 0, '' FROM last_ok "
		      "WHERE user = ?1 ORDER BY t DESC LIMIT ?2";
	else if (strcmp(by, "ip") == 0)
		sql = "SELECT t, user, ip, proto, port, client, tls, kind, delay_ms, detail FROM "
		      "auth_events WHERE ip = ?1 ORDER BY id DESC LIMIT ?2";
	else
		sql = "SELECT t, user, ip, proto, port, client, tls, kind, delay_ms, detail FROM "
		      "auth_events WHERE user = ?1 ORDER BY id DESC LIMIT ?2";
	sqlite3_stmt *st;
	if (sqldb_prepare(&tdb.stc, sql, &st) != SQLITE_OK) {
		*err_r = sqlite3_errmsg(db);
		return -1;
	}
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, (int)max);
	int n = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct diag_event e;
		memset(&e, 0, sizeof(e));
		e.t = sqlite3_column_int64(st, 0);
		col(st, 1, e.user, sizeof(e.user));
		col(st, 2, e.ip, sizeof(e.ip));
		col(st, 3, e.proto, sizeof(e.proto));
		e.port = (unsigned)sqlite3_column_int(st, 4);
		col(st, 5, e.client, sizeof(e.client));
		e.tls = sqlite3_column_int(st, 6);
		char kind[32];
		col(st, 7, kind, sizeof(kind));
		e.kind = DIAG_TEMPFAIL;
		for (int k = 0; k < DIAG_KIND_COUNT; k++)
			if (strcmp(kind, diag_kind_names[k]) == 0)
				e.kind = k;
		e.delay_ms = (unsigned)sqlite3_column_int(st, 8);
		col(st, 9, e.detail, sizeof(e.detail));
		cb(ctx, &e);
		n++;
	}
	sqldb_release(&tdb.stc, st);
	if (rc != SQLITE_DONE) {
		*err_r = sqlite3_errmsg(db);
		return -1;
	}
	return n;
}
