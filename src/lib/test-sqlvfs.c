/* test-sqlvfs.c - a commit's WAL frames in one write, and what must not change with it: a failed
 * write fails the commit, a transaction bigger than the buffer, reads of spilled pages within
 * the transaction, synchronous=FULL with padding frames, and a WAL that another process would
 * recover from the file alone (each frame's checksum checked). Writes are counted by replacing
 * the unix VFS's pwrite (xSetSystemCall), so the count is the system calls SQLite made. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlvfs.h"

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
static pwrite_fn real_pwrite;
static const char *hooked;       /* the system call name replaced */
static int wal_writes;           /* writes to a file whose name ends in -wal */
static int fail_wal_writes;      /* 1: those fail with ENOSPC */

static int is_wal_fd(int fd)
{
	char link[64], path[512];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0;
}

static ssize_t counting_pwrite(int fd, const void *p, size_t n, off_t off)
{
	if (is_wal_fd(fd)) {
		wal_writes++;
		if (fail_wal_writes) {
			errno = ENOSPC;
			return -1;
		}
	}
	return real_pwrite(fd, p, n, off);
}

struct fixture {
	char dir[64];
	char path[96];
	sqlite3 *db;          /* through postino-wal */
};

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

static sqlite3 *open_db(const char *path, const char *vfs, const char *sync)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_URI, vfs);
	assert_int_equal(rc, SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode=WAL");
	exec_ok(db, "PRAGMA wal_autocheckpoint=0");
	char sql[64];
	snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", sync);
	exec_ok(db, sql);
	return db;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-sqlvfs.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	wal_writes = 0;
	fail_wal_writes = 0;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (f->db != NULL)
		sqlite3_close(f->db);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static sqlite3_int64 one_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	sqlite3_int64 v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* What a process that finds only the files would see: the database and its WAL copied while
 * the writer still holds them (no checkpoint), opened afresh, so SQLite rebuilds the WAL index
 * from the WAL and keeps only frames whose checksums chain correctly. Returns count(*) and
 * sum(length(v)) of t, and checks integrity. */
static void recovered(const struct fixture *f, sqlite3_int64 *count, sqlite3_int64 *bytes)
{
	char cmd[1024], copy[128];
	snprintf(copy, sizeof(copy), "%s/copy.db", f->dir);
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp '%s-wal' '%s-wal' && rm -f '%s-shm'", f->path,
		 copy, f->path, copy, copy);
	assert_int_equal(system(cmd), 0);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(copy, &db, SQLITE_OPEN_READWRITE, "unix"), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
	*count = one_int(db, "SELECT count(*) FROM t");
	*bytes = one_int(db, "SELECT coalesce(sum(length(v)), 0) FROM t");
	sqlite3_close(db);
	snprintf(cmd, sizeof(cmd), "rm -f '%s' '%s-wal' '%s-shm'", copy, copy, copy);
	assert_int_equal(system(cmd), 0);
}

/* rows of 1000 octets from first to first + n - 1 */
static void insert_rows(sqlite3 *db, int first, int n)
{
	char sql[160];
	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE c(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM c WHERE i < %d) "
		 "INSERT INTO t SELECT i, randomblob(1000) FROM c", first, first + n - 1);
	exec_ok(db, sql);
}

/* A commit of several pages is one write; through the plain unix VFS it is two per page. */
static void test_commit_is_one_write(void **state)
{
	struct fixture *f = *state;
	f->db = open_db(f->path, "postino-wal", "NORMAL");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	for (int round = 0; round < 3; round++) {
		wal_writes = 0;
		insert_rows(f->db, round * 10 + 1, 10);   /* ~3 pages of rows, plus the tree's */
		assert_int_equal(wal_writes, 1);
	}
	wal_writes = 0;
	exec_ok(f->db, "UPDATE t SET v = x'00' WHERE id = 5");   /* one page */
	assert_int_equal(wal_writes, 1);

	/* a reader in another connection (plain VFS) sees every commit */
	sqlite3 *r = open_db(f->path, "unix", "NORMAL");
	assert_int_equal(one_int(r, "SELECT count(*) FROM t"), 30);
	assert_int_equal(one_int(r, "SELECT length(v) FROM t WHERE id = 5"), 1);

	/* the same commit through the plain unix VFS: header and page written apart */
	wal_writes = 0;
	insert_rows(r, 31, 10);
	assert_true(wal_writes >= 6);
	sqlite3_close(r);
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM t"), 40);

	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 40);
	assert_int_equal(bytes, 39 * 1000 + 1);
}

/* A write that fails is the commit's failure: nothing of it becomes visible, the handle works
 * on, and the WAL on disk holds only what was committed. */
static void test_failed_write_fails_the_commit(void **state)
{
	struct fixture *f = *state;
	f->db = open_db(f->path, "postino-wal", "NORMAL");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	insert_rows(f->db, 1, 10);
	fail_wal_writes = 1;
	wal_writes = 0;
	exec_ok(f->db, "BEGIN");
	insert_rows(f->db, 11, 10);    /* collected: nothing written yet */
	assert_int_equal(wal_writes, 0);
	int rc = sqlite3_exec(f->db, "COMMIT", NULL, NULL, NULL);
	assert_int_not_equal(rc, SQLITE_OK);
	assert_int_equal(wal_writes, 1);
	if (!sqlite3_get_autocommit(f->db))
		exec_ok(f->db, "ROLLBACK");
	fail_wal_writes = 0;

	sqlite3 *r = open_db(f->path, "unix", "NORMAL");
	assert_int_equal(one_int(r, "SELECT count(*) FROM t"), 10);
	sqlite3_close(r);
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM t"), 10);

	insert_rows(f->db, 11, 5);
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM t"), 15);
	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 15);
	assert_int_equal(bytes, 15 * 1000);
}

/* A transaction far bigger than the buffer and than the page cache: pages spill to the WAL
 * before the commit and are read back from it within the transaction. The UPDATE then changes
 * pages already spilled: SQLite overwrites their frames and, at the commit, reads and rewrites
 * the header of every frame from the first one overwritten, the commit frame's last, with no
 * page after it (held back, the published commit would have a stale header on disk: the
 * recovery below found none of it before the VFS wrote such rewrites at once). */
static void test_big_transaction_spills(void **state)
{
	struct fixture *f = *state;
	f->db = open_db(f->path, "postino-wal", "NORMAL");
	exec_ok(f->db, "PRAGMA cache_size=20");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	wal_writes = 0;
	exec_ok(f->db, "BEGIN");
	insert_rows(f->db, 1, 3000);    /* ~3 MB */
	assert_true(wal_writes >= 3000 / (SQLVFS_WRITE_MAX / 1000));   /* it spilled */
	assert_int_equal(one_int(f->db, "SELECT sum(length(v)) FROM t"), 3000 * 1000);
	exec_ok(f->db, "UPDATE t SET v = randomblob(10) WHERE id % 7 = 0");
	exec_ok(f->db, "COMMIT");
	/* far fewer writes than two per page */
	assert_true(wal_writes < 2 * 800);

	sqlite3 *r = open_db(f->path, "unix", "NORMAL");
	sqlite3_int64 want = 3000 * 1000 - (3000 / 7) * 990;
	assert_int_equal(one_int(r, "SELECT sum(length(v)) FROM t"), want);
	sqlite3_close(r);
	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 3000);
	assert_int_equal(bytes, want);
}

/* A transaction that spilled a few frames (less than one write's worth, so they were still
 * held) and rolled back releases the WAL's write lock; another connection then commits frames
 * at the same offsets. The spilled frames must be written before the lock goes, never later
 * over the other connection's commit (before the -shm lock hook, the reads below found
 * "not a database"). */
static void test_spill_rolled_back(void **state)
{
	struct fixture *f = *state;
	f->db = open_db(f->path, "postino-wal", "NORMAL");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	insert_rows(f->db, 1, 5);
	/* every page in the database file: the rollback reads none back from the WAL (a read
	 * there would have written what was held, still under the write lock) */
	exec_ok(f->db, "PRAGMA wal_checkpoint(TRUNCATE)");
	exec_ok(f->db, "PRAGMA cache_size=5");
	wal_writes = 0;
	exec_ok(f->db, "BEGIN");
	insert_rows(f->db, 6, 40);   /* ~10 pages through a cache of 5: a few spill */
	exec_ok(f->db, "ROLLBACK");
	assert_true(wal_writes >= 1);   /* written before the write lock went */

	sqlite3 *r = open_db(f->path, "unix", "NORMAL");
	exec_ok(r, "UPDATE t SET v = zeroblob(1000)");
	insert_rows(r, 6, 10);
	sqlite3_close(r);

	/* the first handle reads again (a read transaction, pages from the WAL) and writes */
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM t"), 15);
	assert_int_equal(one_int(f->db, "SELECT count(*) FROM t WHERE v = zeroblob(1000)"), 5);
	insert_rows(f->db, 16, 2);
	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 17);
	assert_int_equal(bytes, 17 * 1000);
	r = open_db(f->path, "unix", "NORMAL");
	assert_int_equal(one_int(r, "SELECT count(*) FROM t WHERE v = zeroblob(1000)"), 5);
	sqlite3_close(r);
}

/* synchronous=FULL on a device without powersafe overwrite (psow=0): SQLite pads each commit
 * to a sector boundary, repeating the commit frame, and splits the write that crosses the
 * boundary with a sync between its halves. Every commit must be recoverable from the files. */
static void test_full_sync_with_padding(void **state)
{
	struct fixture *f = *state;
	char uri[160];
	snprintf(uri, sizeof(uri), "file:%s?psow=0", f->path);
	f->db = open_db(uri, "postino-wal", "FULL");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	for (int i = 0; i < 12; i++)
		insert_rows(f->db, i * 3 + 1, 3);
	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 36);
	assert_int_equal(bytes, 36 * 1000);
	sqlite3 *r = open_db(f->path, "unix", "NORMAL");
	assert_int_equal(one_int(r, "SELECT count(*) FROM t"), 36);
	sqlite3_close(r);
}

/* Checkpoints and a WAL that starts again from its header (after a full checkpoint) keep
 * working: the header is collected with the first frames. */
static void test_wal_restart(void **state)
{
	struct fixture *f = *state;
	f->db = open_db(f->path, "postino-wal", "NORMAL");
	exec_ok(f->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
	for (int i = 0; i < 5; i++) {
		insert_rows(f->db, i * 4 + 1, 4);
		exec_ok(f->db, "PRAGMA wal_checkpoint(RESTART)");
	}
	/* the first commit after a restart writes the WAL header, which SQLite syncs before any
	 * frame: the header, then the frames */
	wal_writes = 0;
	insert_rows(f->db, 21, 4);
	assert_int_equal(wal_writes, 2);
	wal_writes = 0;
	insert_rows(f->db, 25, 4);
	assert_int_equal(wal_writes, 1);
	sqlite3_int64 count, bytes;
	recovered(f, &count, &bytes);
	assert_int_equal(count, 28);
	assert_int_equal(bytes, 28 * 1000);
}

int main(void)
{
	sqlite3_vfs *unix_vfs = sqlite3_vfs_find("unix");
	if (unix_vfs == NULL || unix_vfs->iVersion < 3)
		return 1;
	static const char *const names[] = { "pwrite64", "pwrite" };
	for (size_t i = 0; i < 2 && hooked == NULL; i++) {
		sqlite3_syscall_ptr p = unix_vfs->xGetSystemCall(unix_vfs, names[i]);
		if (p != NULL && unix_vfs->xSetSystemCall(unix_vfs, names[i],
							  (sqlite3_syscall_ptr)counting_pwrite) ==
				 SQLITE_OK) {
			real_pwrite = (pwrite_fn)p;
			hooked = names[i];
		}
	}
	if (hooked == NULL) {
		fprintf(stderr, "this SQLite's unix VFS has no pwrite to count\n");
		return 1;
	}
	if (sqlvfs_register(unix_vfs, "postino-wal", 0) != SQLITE_OK)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_is_one_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_write_fails_the_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_transaction_spills, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spill_rolled_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_sync_with_padding, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_restart, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
