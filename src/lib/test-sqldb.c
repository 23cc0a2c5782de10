/* test-sqldb.c - opening with pragmas, migrations by user_version, the statement cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqldb.h"

struct fixture {
	char dir[64];
	char path[96];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-sqldb.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[128];
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, sfx[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* One integer from a query. */
static int64_t q_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* One text value from a query, into out. */
static const char *q_text(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st;
	out[0] = '\0';
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

static int step3_runs;

/* Step 3 as a function: adds a column unless an older schema already has it. */
static int step3(sqlite3 *db)
{
	step3_runs++;
	return sqldb_add_column(db, "t", "c", "INTEGER NOT NULL DEFAULT 7");
}

static const struct sqldb_step steps[] = {
	{ "table t", "CREATE TABLE t(a INTEGER)", NULL },
	{ "column b", "ALTER TABLE t ADD COLUMN b TEXT; UPDATE t SET b = 'x'", NULL },
	{ "column c", NULL, step3 },
};

static struct sqldb_opts opts(size_t nsteps)
{
	struct sqldb_opts o = {
		.flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
		.journal_mode = "wal",
		.synchronous = "normal",
		.busy_timeout_ms = 1000,
		.steps = steps,
		.nsteps = nsteps,
		.migrate = 1,
	};
	return o;
}

/* A new file gets every step in order; an open of an up-to-date file runs none. */
static void test_migrate_from_zero(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(3);
	sqlite3 *db;
	char err[256], t[32];
	step3_runs = 0;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 3);
	assert_int_equal(step3_runs, 1);
	assert_int_equal(sqldb_has_column(db, "t", "b"), 1);
	assert_int_equal(sqldb_has_column(db, "t", "c"), 1);
	assert_int_equal(sqldb_has_column(db, "t", "d"), 0);
	assert_int_equal(sqldb_has_column(db, "nosuch", "a"), 0);
	/* the pragmas are set */
	assert_string_equal(q_text(db, "PRAGMA journal_mode", t, sizeof(t)), "wal");
	assert_int_equal(q_int(db, "PRAGMA synchronous"), 1);   /* NORMAL */
	sqlite3_close(db);
	o.synchronous = "full";
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(step3_runs, 1);
	assert_int_equal(q_int(db, "PRAGMA synchronous"), 2);   /* FULL */
	sqlite3_close(db);
}

/* A file at version 1 (with a row) runs steps 2 and 3 only and keeps its data. */
static void test_migrate_from_middle(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(1);
	sqlite3 *db;
	char err[256], t[32];
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 1);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO t(a) VALUES (42)", NULL, NULL, NULL),
			 SQLITE_OK);
	/* an older schema that already had column c (step 3 must recognise it) */
	assert_int_equal(sqlite3_exec(db, "ALTER TABLE t ADD COLUMN c INTEGER", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	o = opts(3);
	step3_runs = 0;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 3);
	assert_int_equal(step3_runs, 1);
	assert_int_equal(q_int(db, "SELECT a FROM t"), 42);
	assert_string_equal(q_text(db, "SELECT b FROM t", t, sizeof(t)), "x");
	sqlite3_close(db);
}

static const struct sqldb_step bad_steps[] = {
	{ "table t", "CREATE TABLE t(a INTEGER)", NULL },
	{ "column b", "ALTER TABLE t ADD COLUMN b TEXT", NULL },
	/* the first statement works, the second fails: both are undone */
	{ "broken", "INSERT INTO t(a) VALUES (1); INSERT INTO nosuch VALUES (1)", NULL },
};

/* A failing step is rolled back, user_version stays, the open fails naming path and step. */
static void test_failed_step(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(2);
	sqlite3 *db;
	char err[256];
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	sqlite3_close(db);
	o.steps = bad_steps;
	o.nsteps = 3;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), -1);
	assert_null(db);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "step 3 (broken)"));
	assert_non_null(strstr(err, "nosuch"));
	/* what is on disk: version 2, no row from the failed step */
	struct sqldb_opts plain = { .flags = SQLITE_OPEN_READWRITE };
	assert_int_equal(sqldb_open(f->path, &plain, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 2);
	assert_int_equal(q_int(db, "SELECT count(*) FROM t"), 0);
	sqlite3_close(db);
	/* a failing first step on a new file leaves it at 0 */
	unlink(f->path);
	o.steps = bad_steps + 2;
	o.nsteps = 1;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "step 1 (broken)"));
	assert_int_equal(sqldb_open(f->path, &plain, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 0);
	sqlite3_close(db);
}

/* A file made by a newer version is refused, migrating or not; without migrate, an older
 * file opens as it is. */
static void test_newer_and_no_migrate(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(3);
	sqlite3 *db;
	char err[256];
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	sqlite3_close(db);
	o.nsteps = 2;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "newer"));
	o.migrate = 0;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), -1);
	unlink(f->path);
	o = opts(1);
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	sqlite3_close(db);
	o = opts(3);
	o.migrate = 0;
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(sqldb_version(db), 1);
	sqlite3_close(db);
}

/* journal_mode=delete turns a WAL file back; a missing file without CREATE fails. */
static void test_journal_and_missing(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(1);
	sqlite3 *db;
	char err[256], t[32];
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	sqlite3_close(db);
	o.journal_mode = "delete";
	o.synchronous = "full";
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_string_equal(q_text(db, "PRAGMA journal_mode", t, sizeof(t)), "delete");
	sqlite3_close(db);
	char p[128];
	snprintf(p, sizeof(p), "%s/missing.db", f->dir);
	o.flags = SQLITE_OPEN_READWRITE;
	assert_int_equal(sqldb_open(p, &o, &db, err, sizeof(err)), -1);
	assert_null(db);
	assert_non_null(strstr(err, "missing.db"));
}

static int busy_calls;

/* A busy handler that gives up at once, counting its calls. */
static int busy_count(void *arg, int n)
{
	(void)n;
	(*(int *)arg)++;
	return 0;
}

/* The caller's busy handler is the one SQLite calls when the write lock is held. */
static void test_busy_handler(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(1);
	sqlite3 *a, *b;
	char err[256];
	assert_int_equal(sqldb_open(f->path, &o, &a, err, sizeof(err)), 0);
	o.busy = busy_count;
	o.busy_arg = &busy_calls;
	assert_int_equal(sqldb_open(f->path, &o, &b, err, sizeof(err)), 0);
	assert_int_equal(sqlite3_exec(a, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	busy_calls = 0;
	assert_int_equal(sqlite3_exec(b, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_BUSY);
	assert_true(busy_calls >= 1);
	sqlite3_exec(a, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(b);
	sqlite3_close(a);
}

/* The cache hands out the same statement for the same SQL, reset and unbound, and a fresh
 * one while the cached one is still being stepped. */
static void test_stmt_cache(void **state)
{
	struct fixture *f = *state;
	struct sqldb_opts o = opts(1);
	sqlite3 *db;
	char err[256];
	assert_int_equal(sqldb_open(f->path, &o, &db, err, sizeof(err)), 0);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)",
				      NULL, NULL, NULL), SQLITE_OK);
	struct sqldb_cache c;
	sqldb_cache_init(&c, db);
	static const char sel[] = "SELECT a FROM t WHERE a >= ?1 ORDER BY a";
	sqlite3_stmt *s1, *s2, *s3;
	assert_int_equal(sqldb_prepare(&c, sel, &s1), SQLITE_OK);
	sqlite3_bind_int(s1, 1, 2);
	assert_int_equal(sqlite3_step(s1), SQLITE_ROW);
	/* in use: a second caller gets another statement, finalized on release */
	assert_int_equal(sqldb_prepare(&c, sel, &s2), SQLITE_OK);
	assert_ptr_not_equal(s1, s2);
	sqldb_release(&c, s2);
	sqldb_release(&c, s1);
	assert_int_equal(sqldb_prepare(&c, sel, &s3), SQLITE_OK);
	assert_ptr_equal(s3, s1);
	sqlite3_stmt *cached = s3;
	/* released: reset and the binding cleared (NULL matches no row) */
	assert_int_equal(sqlite3_step(s3), SQLITE_DONE);
	sqldb_release(&c, s3);
	/* the same text in another buffer is another entry; a buffer reused for other SQL is
	 * not mistaken for the statement prepared from it before */
	char buf[64];
	snprintf(buf, sizeof(buf), "SELECT count(*) FROM t");
	assert_int_equal(sqldb_prepare(&c, buf, &s1), SQLITE_OK);
	sqldb_release(&c, s1);
	snprintf(buf, sizeof(buf), "SELECT max(a) FROM t");
	assert_int_equal(sqldb_prepare(&c, buf, &s2), SQLITE_OK);
	assert_ptr_not_equal(s1, s2);
	assert_int_equal(sqlite3_step(s2), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(s2, 0), 2);
	sqldb_release(&c, s2);
	/* more SQL than slots: the rest still works, prepared each time */
	char many[SQLDB_CACHE_SLOTS + 4][48];
	for (int i = 0; i < SQLDB_CACHE_SLOTS + 4; i++) {
		snprintf(many[i], sizeof(many[i]), "SELECT %d", i);
		assert_int_equal(sqldb_prepare(&c, many[i], &s1), SQLITE_OK);
		assert_int_equal(sqlite3_step(s1), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(s1, 0), i);
		sqldb_release(&c, s1);
	}
	assert_int_equal(sqldb_prepare(&c, sel, &s3), SQLITE_OK);
	assert_ptr_equal(s3, cached);   /* still cached */
	sqldb_release(&c, s3);
	sqldb_release(&c, NULL);
	sqldb_cache_clear(&c);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);   /* nothing left unfinalized */
}

/* A thread's handle: the same connection while the path stays, a new one for another path (the
 * old one closed), nothing left open after close; a failed open leaves it closed. */
static void test_handle(void **state)
{
	struct fixture *f = *state;
	struct sqldb_handle h;
	memset(&h, 0, sizeof(h));
	struct sqldb_opts o = opts(3);
	char err[256], other[128];
	sqlite3 *a = sqldb_handle_get(&h, f->path, &o, err, sizeof(err));
	assert_non_null(a);
	assert_ptr_equal(sqldb_handle_get(&h, f->path, &o, err, sizeof(err)), a);
	sqlite3_stmt *st;
	assert_int_equal(sqldb_prepare(&h.stc, "SELECT count(*) FROM t", &st), SQLITE_OK);
	sqldb_release(&h.stc, st);
	snprintf(other, sizeof(other), "%s/u.db", f->dir);
	sqlite3 *b = sqldb_handle_get(&h, other, &o, err, sizeof(err));
	assert_non_null(b);
	assert_string_equal(h.path, other);
	assert_int_equal(q_int(b, "PRAGMA user_version"), 3);
	sqldb_handle_close(&h);
	assert_null(h.db);
	sqldb_handle_close(&h);   /* twice is fine */
	unlink(other);
	snprintf(other, sizeof(other), "%s/u.db-wal", f->dir);
	unlink(other);
	snprintf(other, sizeof(other), "%s/u.db-shm", f->dir);
	unlink(other);
	snprintf(other, sizeof(other), "%s/missing/x.db", f->dir);
	assert_null(sqldb_handle_get(&h, other, &o, err, sizeof(err)));
	assert_null(h.db);
	assert_true(err[0] != '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate_from_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_middle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_step, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_and_no_migrate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_and_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_handler, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stmt_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handle, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
