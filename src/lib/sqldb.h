/* sqldb.h - every SQLite database of postino is opened here: the same connection settings
 * (journal mode, synchronous, busy handling), migrations by PRAGMA user_version only, and one
 * small prepared-statement cache.
 *
 * A database's schema is a list of steps; step i (steps[i - 1]) brings user_version i - 1 to
 * i inside its own write transaction. An open runs the steps the file has not had yet; when one
 * fails, it is rolled back (user_version stays at i - 1), the failure is logged with the path
 * and the step, and the open fails. A file whose user_version is above the number of steps was
 * made by a newer postino: the open fails too. */
#ifndef POSTINO_SQLDB_H
#define POSTINO_SQLDB_H

#include <sqlite3.h>
#include <stddef.h>

/* One migration step: sql (may hold several statements) or fn (returns an SQLite code, the
 * message on db when not SQLITE_OK). what names it in the log. */
struct sqldb_step {
	const char *what;
	const char *sql;
	int (*fn)(sqlite3 *db);
};

struct sqldb_opts {
	int flags;                    /* SQLITE_OPEN_READONLY / READWRITE [| CREATE] (NOMUTEX is
				       * added) */
	const char *journal_mode;     /* "wal", "delete", ...; NULL: as the file is. The open fails
				       * if the file cannot take it. */
	const char *synchronous;      /* "full", "normal"; NULL: SQLite's default */
	int busy_timeout_ms;          /* sqlite3_busy_timeout, unless busy is set */
	int (*busy)(void *arg, int n);   /* a busy handler of the caller's own (index.db) */
	void *busy_arg;
	const struct sqldb_step *steps;
	size_t nsteps;
	int migrate;                  /* 1: run the missing steps; 0: only refuse a newer file */
};

/* Open path with o's settings and schema. 0 ok (*db_r set), -1 error (message in err, logged
 * when a migration step failed; *db_r NULL). */
int sqldb_open(const char *path, const struct sqldb_opts *o, sqlite3 **db_r, char *err,
	       size_t errlen);

/* PRAGMA user_version of db; -1 on error. */
int sqldb_version(sqlite3 *db);

/* 1 if table has the column, 0 not (or no such table), -1 error. For steps that must
 * recognise a schema made by an earlier version of the code. */
int sqldb_has_column(sqlite3 *db, const char *table, const char *column);

/* ALTER TABLE table ADD COLUMN column def, unless the column is there: an SQLite code. */
int sqldb_add_column(sqlite3 *db, const char *table, const char *column, const char *def);

#define SQLDB_CACHE_SLOTS 32

/* Prepared statements kept for reuse on one connection, found by the SQL text's address (then
 * checked by text: a caller's buffer may hold other SQL later). Embedded in its owner. */
struct sqldb_cache {
	sqlite3 *db;
	struct {
		const char *sql;
		sqlite3_stmt *st;
	} e[SQLDB_CACHE_SLOTS];
};

void sqldb_cache_init(struct sqldb_cache *c, sqlite3 *db);
/* The statement for sql (one statement; the text must stay alive while the cache holds it):
 * the cached one, reset and unbound, or a new one (kept if a slot is free). A cached
 * statement still in use further up the stack is not handed out twice: that caller gets a
 * fresh statement instead. An SQLite code. */
int sqldb_prepare(struct sqldb_cache *c, const char *sql, sqlite3_stmt **st_r);
/* Give a statement back: a cached one is reset and unbound, another finalized. NULL is fine. */
void sqldb_release(struct sqldb_cache *c, sqlite3_stmt *st);
/* Finalize every cached statement (before closing the connection). */
void sqldb_cache_clear(struct sqldb_cache *c);

/* A database a thread keeps open (per-thread handles of diag.db, limits.db, senders.db): the
 * connection, its statement cache and the path it was opened on. Zero-initialised = closed.
 * The path is allocated: handles live in thread-local storage, which every thread has resident
 * from its start, so they hold no path-sized array. */
struct sqldb_handle {
	sqlite3 *db;
	struct sqldb_cache stc;
	char *path;
};

/* The handle's connection to path: the open one if it is on that path, else (the old one
 * closed) path opened with o. NULL on error (err set, the handle closed). */
sqlite3 *sqldb_handle_get(struct sqldb_handle *h, const char *path, const struct sqldb_opts *o,
			  char *err, size_t errlen);
/* Close the handle's statements and connection (nothing if closed). */
void sqldb_handle_close(struct sqldb_handle *h);

#endif
