/* sqldb.c - opening SQLite databases, migrating them, caching statements (see sqldb.h). */
#include "sqldb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* Set a pragma that answers with its new value (journal_mode) and check that it took. */
static int pragma_checked(sqlite3 *db, const char *name, const char *value, char *got,
			  size_t gotlen)
{
	char sql[96];
	sqlite3_stmt *st;
	snprintf(sql, sizeof(sql), "PRAGMA %s=%s", name, value);
	got[0] = '\0';
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);
		snprintf(got, gotlen, "%s", t ? (const char *)t : "");
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* See sqldb.h. */
int sqldb_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* See sqldb.h. */
int sqldb_has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* See sqldb.h. */
int sqldb_add_column(sqlite3 *db, const char *table, const char *column, const char *def)
{
	int r = sqldb_has_column(db, table, column);
	if (r < 0)
		return sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errcode(db) : SQLITE_ERROR;
	if (r == 1)
		return SQLITE_OK;
	char sql[512];
	if ((size_t)snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", table, column,
			     def) >= sizeof(sql))
		return SQLITE_TOOBIG;
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Run step i (1-based) in its own write transaction, unless another connection has got the
 * file there meanwhile. 0 ok, -1 error (message in err). */
static int migrate_step(sqlite3 *db, const char *path, const struct sqldb_opts *o, size_t i,
			char *err, size_t errlen)
{
	const struct sqldb_step *s = &o->steps[i - 1];
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		int v = sqldb_version(db);
		if (v < 0) {
			rc = SQLITE_ERROR;
		} else if ((size_t)v >= i) {
			return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
		} else {
			rc = s->sql ? sqlite3_exec(db, s->sql, NULL, NULL, NULL) : s->fn(db);
			if (rc == SQLITE_OK) {
				char sql[48];
				snprintf(sql, sizeof(sql), "PRAGMA user_version = %zu", i);
				rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
			}
			if (rc == SQLITE_OK)
				rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		}
	}
	if (rc == SQLITE_OK)
		return 0;
	char msg[256], esc[128];
	snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	snprintf(err, errlen, "%s: migration step %zu (%s) failed: %s", path, i,
		 s->what ? s->what : "", msg);
	log_error("event=db-migrate-failed db=\"%s\" step=%zu what=\"%s\" error=\"%s\"", path, i,
		  s->what ? s->what : "", log_escape(msg, strlen(msg), esc, sizeof(esc)));
	return -1;
}

/* Connection settings and migrations on an open handle. 0 ok, -1 error (message in err). */
static int db_setup(sqlite3 *db, const char *path, const struct sqldb_opts *o, char *err,
		    size_t errlen)
{
	char got[32];
	sqlite3_extended_result_codes(db, 1);
	if (o->busy)
		sqlite3_busy_handler(db, o->busy, o->busy_arg);
	else if (o->busy_timeout_ms > 0)
		sqlite3_busy_timeout(db, o->busy_timeout_ms);
	if (o->journal_mode) {
		if (pragma_checked(db, "journal_mode", o->journal_mode, got, sizeof(got)) !=
		    SQLITE_OK) {
			snprintf(err, errlen, "%s: setting journal_mode=%s: %s", path,
				 o->journal_mode, sqlite3_errmsg(db));
			return -1;
		}
		if (strcasecmp(got, o->journal_mode) != 0) {
			snprintf(err, errlen, "%s: cannot set journal_mode=%s, it stays %s (is "
				 "another process using it?)", path, o->journal_mode, got);
			return -1;
		}
	}
	if (o->synchronous) {
		char sql[48];
		snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", o->synchronous);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: setting synchronous=%s: %s", path,
				 o->synchronous, sqlite3_errmsg(db));
			return -1;
		}
	}
	if (o->nsteps == 0)
		return 0;
	int v = sqldb_version(db);
	if (v < 0) {
		snprintf(err, errlen, "%s: reading user_version: %s", path, sqlite3_errmsg(db));
		return -1;
	}
	if ((size_t)v > o->nsteps) {
		snprintf(err, errlen, "%s has schema version %d, newer than this postino "
			 "understands (%zu)", path, v, o->nsteps);
		return -1;
	}
	for (size_t i = (size_t)v + 1; o->migrate && i <= o->nsteps; i++)
		if (migrate_step(db, path, o, i, err, errlen) < 0)
			return -1;
	return 0;
}

/* See sqldb.h. */
int sqldb_open(const char *path, const struct sqldb_opts *o, sqlite3 **db_r, char *err,
	       size_t errlen)
{
	sqlite3 *db = NULL;
	*db_r = NULL;
	if (sqlite3_open_v2(path, &db, o->flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return -1;
	}
	if (db_setup(db, path, o, err, errlen) < 0) {
		sqlite3_close(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

/* See sqldb.h. */
void sqldb_cache_init(struct sqldb_cache *c, sqlite3 *db)
{
	memset(c, 0, sizeof(*c));
	c->db = db;
}

/* See sqldb.h. */
int sqldb_prepare(struct sqldb_cache *c, const char *sql, sqlite3_stmt **st_r)
{
	int free_slot = -1;
	for (int i = 0; i < SQLDB_CACHE_SLOTS; i++) {
		if (c->e[i].st == NULL) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (c->e[i].sql == sql && strcmp(sqlite3_sql(c->e[i].st), sql) == 0) {
			if (sqlite3_stmt_busy(c->e[i].st)) {
				free_slot = -1;   /* in use further up: a fresh one, not kept */
				break;
			}
			*st_r = c->e[i].st;
			return SQLITE_OK;
		}
	}
	int r = sqlite3_prepare_v3(c->db, sql, -1, free_slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0,
				   st_r, NULL);
	if (r == SQLITE_OK && free_slot >= 0 && *st_r != NULL) {
		c->e[free_slot].sql = sql;
		c->e[free_slot].st = *st_r;
	}
	return r;
}

/* See sqldb.h. */
void sqldb_release(struct sqldb_cache *c, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < SQLDB_CACHE_SLOTS; i++) {
		if (c->e[i].st == st) {
			sqlite3_reset(st);
			sqlite3_clear_bindings(st);
			return;
		}
	}
	sqlite3_finalize(st);
}

/* See sqldb.h. */
void sqldb_cache_clear(struct sqldb_cache *c)
{
	for (int i = 0; i < SQLDB_CACHE_SLOTS; i++) {
		sqlite3_finalize(c->e[i].st);
		c->e[i].st = NULL;
		c->e[i].sql = NULL;
	}
}

/* See sqldb.h. */
sqlite3 *sqldb_handle_get(struct sqldb_handle *h, const char *path, const struct sqldb_opts *o,
			  char *err, size_t errlen)
{
	if (h->db && strcmp(h->path, path) == 0)
		return h->db;
	sqldb_handle_close(h);
	char *copy = strdup(path);
	if (copy == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	sqlite3 *db;
	if (sqldb_open(path, o, &db, err, errlen) < 0) {
		free(copy);
		return NULL;
	}
	h->db = db;
	h->path = copy;
	sqldb_cache_init(&h->stc, db);
	return db;
}

/* See sqldb.h. */
void sqldb_handle_close(struct sqldb_handle *h)
{
	if (h->db == NULL)
		return;
	sqldb_cache_clear(&h->stc);
	sqlite3_close(h->db);
	h->db = NULL;
	free(h->path);
	h->path = NULL;
}
