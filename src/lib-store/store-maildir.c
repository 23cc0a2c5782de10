/* store-maildir.c - the Maildir++ backend of the mailbox store, with index.db (SQLite).
 *
 * Durability contract of store_deliver and store_deliver_batch: a message is in <box>/new/ (file
 * data synced, the directory synced) under a name that ends in ",U=<its UID>", and its index row
 * committed, before it counts as delivered. A failure at any step removes what that call made
 * visible; a group delivery shares one fsync of new/ and one index transaction, so a failed sync
 * or commit refuses the whole group. The transaction commits with synchronous=NORMAL under the
 * lock and the WAL is not synced for it (only for a message given flags, which its name does not
 * hold): should a power cut take the commit back, store_mailbox_sync adopts the file under the
 * UID its name carries, which is not below UIDNEXT then. The fsync of new/ follows after the
 * lock (held for no disk flush), and a failed one takes the group back (files removed,
 * store_mailbox_sync records their rows as expunged).
 *
 * Locking: SQLite's write lock (BEGIN IMMEDIATE, WAL, busy timeout) serialises writers across
 * processes. store_deliver takes it before the link or rename into new/ and keeps it until the
 * rows are committed, and store_mailbox_sync takes it before it reads the directories, so a sync
 * never sees a delivered file without its row and never adopts a message a delivery is
 * committing.
 * The slow part of a delivery (copy and file fsync) happens before the lock, its directory and
 * index syncs after it.
 */
#include "fsutil.h"
#include "imap-mboxname.h"
#include "procid.h"
#include "sqldb.h"
#include "sqlvfs.h"
#include "store.h"
#include "store-private.h"
#include "wire.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define STORE_COMPONENT_MAX 255        /* NAME_MAX: ".<escaped name>" must fit one component */
#define STORE_BUSY_MS 5000             /* SQLite busy timeout per attempt */
#define STORE_WAL_CHECKPOINT_PAGES 1000 /* SQLite's default auto-checkpoint size */
#define STORE_BEGIN_TRIES 3            /* BEGIN IMMEDIATE attempts before giving up */
#define STORE_TMP_STALE (36 * 3600)    /* Maildir: tmp/ files this old are litter */
#define STORE_COPY_CHUNK (1u << 20)    /* octets per copy_file_range call */
#define STORE_BORROW_MAX 32            /* account handles a worker keeps open for its pool threads
					* (deliveries, IMAP writes): opening index.db costs several
					* syncs (WAL creation, checkpoint and removal on close) */

static const struct {
	const char *name, *special;
} default_boxes[] = {
	{ "INBOX", NULL }, { "Sent", "\\Sent" }, { "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" }, { "Junk", "\\Junk" }, { "Archive", "\\Archive" },
};
#define N_DEFAULT_BOXES (sizeof(default_boxes) / sizeof(default_boxes[0]))

/* The static SPECIAL-USE string for a stored value. */
const char *store_special_static(const char *v)
{
	for (size_t i = 1; v && i < N_DEFAULT_BOXES; i++)
		if (strcmp(default_boxes[i].special, v) == 0)
			return default_boxes[i].special;
	return NULL;
}

/* Directory of a mailbox: INBOX is the root, others ".<escaped>" with '/' written as '.' and
 * every octet outside [A-Za-z0-9 _-] (dots included) as "%XX". The escaping is reversible and
 * cannot yield "..", "/", a second leading dot, or cur/new/tmp/index.db (all start with "."). */
int store_box_dir(const struct store_account *a, const char *box, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	if (box == NULL || strcasecmp(box, "INBOX") == 0) {
		int n = snprintf(out, outlen, "%s", a->root);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (!imap_mboxname_valid(box))
		return -1;
	int n = snprintf(out, outlen, "%s/.", a->root);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	size_t o = (size_t)n, first = o - 1;
	for (const char *p = box; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (o + 4 >= outlen)
			return -1;
		if (c == '/') {
			out[o++] = '.';
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			   c == ' ' || c == '_' || c == '-') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o - first > STORE_COMPONENT_MAX ? -1 : 0;
}

/* snprintf into a path buffer: 0 ok, -1 it does not fit. */
__attribute__((format(printf, 3, 4))) static int path_fmt(char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= outlen) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* mkdir that accepts an existing directory. */
static int mkdir_ok(const char *p)
{
	struct stat st;
	if (mkdir(p, 0750) == 0)
		return 0;
	if (errno != EEXIST)
		return -1;
	if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	errno = ENOTDIR;
	return -1;
}

/* mkdir -p. */
int store_mkdir_p(const char *path)
{
	char tmp[STORE_PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, n + 1);
	for (size_t i = 1; i < n; i++) {
		if (tmp[i] == '/' && tmp[i - 1] != '/') {
			tmp[i] = '\0';
			if (mkdir_ok(tmp) < 0)
				return -1;
			tmp[i] = '/';
		}
	}
	return mkdir_ok(tmp);
}

/* Create cur/ new/ tmp/ under dir. */
int store_maildir_make(const char *dir)
{
	static const char *const sub[] = { "cur", "new", "tmp" };
	char p[STORE_PATH_MAX];
	if (store_mkdir_p(dir) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++)
		if (path_fmt(p, sizeof(p), "%s/%s", dir, sub[i]) < 0 || mkdir_ok(p) < 0)
			return -1;
	return 0;
}

/* Record "<message>: <strerror(e)>" (just the message when e is 0) on the account; -1. */
__attribute__((format(printf, 4, 5))) static int store_errf(struct store_account *a,
							    const char **err_r, int e,
							    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(a->err, sizeof(a->err), fmt, ap);
	va_end(ap);
	if (e != 0 && n >= 0 && (size_t)n < sizeof(a->err))
		snprintf(a->err + n, sizeof(a->err) - (size_t)n, ": %s", strerror(e));
	*err_r = a->err;
	return -1;
}

/* Record an error on the account, with errno's text when errno is set. */
int store_fail(struct store_account *a, const char **err_r, const char *what)
{
	return store_errf(a, err_r, errno, "%s", what);
}

/* Record an SQLite error on the account. */
int store_dbfail(struct store_account *a, const char **err_r, const char *what)
{
	return store_errf(a, err_r, 0, "%s: %s", what, sqlite3_errmsg(a->db));
}

/* One of the fixed statements that begin and end transactions, through the statement cache:
 * parsed again by sqlite3_exec on every transaction they were a few per cent of the CPU under
 * IMAP load. Not for PRAGMAs, which act when they are prepared. An SQLite code. */
static int store_db_exec(struct store_account *a, const char *sql)
{
	sqlite3_stmt *st;
	int r = store_prepare(a, sql, -1, &st, NULL);
	if (r != SQLITE_OK)
		return r;
	r = sqlite3_step(st);
	store_finalize(a, st);
	return r == SQLITE_DONE || r == SQLITE_ROW ? SQLITE_OK : r;
}

/* BEGIN IMMEDIATE (the write lock), trying again while another process holds it. */
int store_db_begin(struct store_account *a)
{
	int r = SQLITE_BUSY;
	for (int i = 0; i < STORE_BEGIN_TRIES && (r == SQLITE_BUSY || r == SQLITE_LOCKED); i++)
		r = store_db_exec(a, "BEGIN IMMEDIATE");
	return r;
}

/* See store-private.h. */
int store_db_commit(struct store_account *a)
{
	return store_db_exec(a, "COMMIT");
}

static int store_busy(void *arg, int n);

/* See store-private.h. */
void store_read_leave(struct store_account *a)
{
	if (!sqlite3_get_autocommit(a->db) && sqlite3_txn_state(a->db, NULL) != SQLITE_TXN_WRITE)
		store_db_commit(a);
}

/* See store-private.h. */
void store_db_commits(struct store_account *a, enum store_commits how)
{
	int unsynced = how == STORE_COMMITS_UNSYNCED;
	store_read_leave(a);
	if (a->unsynced == unsynced || !sqlite3_get_autocommit(a->db))
		return;
	if (sqlite3_exec(a->db, unsynced ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL",
			 NULL, NULL, NULL) == SQLITE_OK)
		a->unsynced = unsynced;
}

/* See store-private.h. */
int store_db_try_begin(struct store_account *a)
{
	store_read_leave(a);
	if (!sqlite3_get_autocommit(a->db))
		return SQLITE_MISUSE;
	sqlite3_busy_handler(a->db, NULL, NULL);
	int r = store_db_exec(a, "BEGIN IMMEDIATE");
	sqlite3_busy_handler(a->db, store_busy, a);
	return r;
}

/* See store-private.h. Once the WAL was big at a commit of this handle the answer is no once
 * (the write goes to a pool handle, whose commit checkpoints), then yes again. */
int store_db_quick_write(struct store_account *a)
{
	if (!a->wal_big)
		return 1;
	a->wal_big = 0;
	return 0;
}

/* The shared handles' WAL hook, in place of SQLite's auto-checkpoint: the event loop never
 * checkpoints (it syncs index.db); the pool's handles and deliveries, which commit with
 * synchronous=FULL anyway, keep SQLite's default. Only remembers that the WAL is big. */
static int store_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct store_account *a = arg;
	(void)db;
	(void)name;
	a->wal_big = pages >= STORE_WAL_CHECKPOINT_PAGES;
	return SQLITE_OK;
}

/* Roll back the open transaction, if there is one. */
static void db_rollback(struct store_account *a)
{
	if (!sqlite3_get_autocommit(a->db))
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
}

/* index.db's schema, one migration step per PRAGMA user_version level (sqldb.h). Level 0 is
 * also an index made before user_version was used (the first versions kept a schema_version
 * table): step 1 leaves its tables as they are and step 2 adds only the columns it lacks.
 * Level 2: the columns added after the first schema; 3: the modseq indexes; 4: the
 * uidvalidity_last table; 5: wire_size counts no dot-stuffing (-1 = not counted yet, POP3
 * counts it at its next login); 6: mailboxes.recent_from (\Recent); 7: the subscriptions
 * table (filled from mailboxes.subscribed, which only seeds it from then on); 8: the
 * urlauth_keys table; 9: the schema_version table goes (user_version is the version). Never
 * edit a step: append one. */
static const char index_v1[] =
	"CREATE TABLE IF NOT EXISTS mailboxes(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1, special_use TEXT,"
	" subscribed INTEGER DEFAULT 1);"
	"CREATE TABLE IF NOT EXISTS messages(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" filename TEXT NOT NULL, flags INTEGER NOT NULL DEFAULT 0, modseq INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL, size INTEGER NOT NULL, savedate INTEGER,"
	" in_new INTEGER NOT NULL DEFAULT 1, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, filename TEXT NOT NULL, PRIMARY KEY(mailbox_id, uid));"
	"CREATE TABLE IF NOT EXISTS keywords(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);"
	"CREATE TABLE IF NOT EXISTS structure(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" bodystructure TEXT, body TEXT, envelope TEXT, PRIMARY KEY(mailbox_id, uid));";

/* Level 2: columns an index of the first versions may or may not have. */
static int index_v2(sqlite3 *db)
{
	int rc = sqldb_add_column(db, "messages", "wire_size", "INTEGER NOT NULL DEFAULT 0");
	if (rc == SQLITE_OK)
		rc = sqldb_add_column(db, "messages", "keywords", "INTEGER NOT NULL DEFAULT 0");
	if (rc == SQLITE_OK)
		rc = sqldb_add_column(db, "structure", "header", "BLOB");
	return rc;
}

/* Level 6 (an index of a development build may have the column already). */
static int index_v6(sqlite3 *db)
{
	return sqldb_add_column(db, "mailboxes", "recent_from", "INTEGER NOT NULL DEFAULT 1");
}

static const struct sqldb_step index_steps[] = {
	{ "tables", index_v1, NULL },
	{ "wire_size, keywords, header columns", NULL, index_v2 },
	{ "modseq indexes",
	  "CREATE INDEX IF NOT EXISTS messages_modseq ON messages(mailbox_id, modseq);"
	  "CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);", NULL },
	/* the highest UIDVALIDITY ever given out: a mailbox deleted and created again (even in
	 * the same second) gets a new one (RFC 3501 2.3.1.1) */
	{ "uidvalidity_last",
	  "CREATE TABLE IF NOT EXISTS uidvalidity_last(id INTEGER PRIMARY KEY CHECK (id = 1),"
	  " value INTEGER NOT NULL);"
	  "CREATE TRIGGER IF NOT EXISTS mailboxes_uidvalidity_last AFTER INSERT ON mailboxes BEGIN"
	  " INSERT INTO uidvalidity_last(id, value) VALUES (1, NEW.uidvalidity)"
	  " ON CONFLICT(id) DO UPDATE SET value = max(value, excluded.value); END;", NULL },
	/* sizes counted with the stuffing, or not at all */
	{ "wire_size recount", "UPDATE messages SET wire_size = -1", NULL },
	{ "recent_from column", NULL, index_v6 },
	/* subscriptions outlive their mailbox (RFC 3501 6.3.4 DELETE, 6.3.6 SUBSCRIBE); rows made
	 * with subscribed = 1 (the default mailboxes) start subscribed, RENAME takes them along */
	{ "subscriptions",
	  "CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY);"
	  "CREATE TRIGGER IF NOT EXISTS mailboxes_subscribed AFTER INSERT ON mailboxes"
	  " WHEN NEW.subscribed = 1 BEGIN"
	  " INSERT OR IGNORE INTO subscriptions(name) VALUES (NEW.name); END;"
	  "CREATE TRIGGER IF NOT EXISTS mailboxes_renamed AFTER UPDATE OF name ON mailboxes BEGIN"
	  " UPDATE OR IGNORE subscriptions SET name = NEW.name WHERE name = OLD.name; END;"
	  "INSERT OR IGNORE INTO subscriptions(name) SELECT name FROM mailboxes"
	  " WHERE subscribed = 1;", NULL },
	/* URLAUTH mailbox access keys (RFC 4467 3): a key counts only while its mailbox has the
	 * UIDVALIDITY it was made for, so a mailbox deleted (or renamed away) and made again
	 * never honours the old URLs; RESETKEY deletes rows */
	{ "urlauth_keys",
	  "CREATE TABLE IF NOT EXISTS urlauth_keys(name TEXT PRIMARY KEY,"
	  " uidvalidity INTEGER NOT NULL, key BLOB NOT NULL);", NULL },
	{ "drop schema_version", "DROP TABLE IF EXISTS schema_version", NULL },
};

/* SQLite's busy handler: another connection (a pool thread of this worker, another worker, the
 * SMTP delivery) holds the write lock. SQLite's own handler sleeps 1, 2, 5, 10, 15, 20, 25 ms
 * ...: a flag change holds the lock well under a millisecond, so with many sessions on one
 * mailbox those sleeps left the CPU idle while every writer waited. Wait 50 us, doubling up to
 * 2 ms, for STORE_BUSY_MS in all. */
static int store_busy(void *arg, int n)
{
	struct store_account *a = arg;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	if (n == 0)
		a->busy_since_us = now;
	else if (now - a->busy_since_us >= (uint64_t)STORE_BUSY_MS * 1000u)
		return 0;
	usleep(n < 6 ? 50u << n : 2000u);   /* usleep, as SQLite's own handler (test shims see it) */
	return 1;
}

/* Open index.db with our settings, bringing its schema up to date. */
static int store_db_open(struct store_account *a, int create, const char **err_r)
{
	char p[STORE_PATH_MAX];
	if (path_fmt(p, sizeof(p), "%s/index.db", a->root) < 0)
		return store_errf(a, err_r, errno, "index.db path");
	const struct sqldb_opts o = {
		.flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0),
		.journal_mode = "wal",
		.synchronous = "full",
		.busy = store_busy,
		.busy_arg = a,
		.steps = index_steps,
		.nsteps = sizeof(index_steps) / sizeof(index_steps[0]),
		.migrate = 1,
	};
	char err[sizeof(a->err)];
	if (sqldb_open(p, &o, &a->db, err, sizeof(err)) < 0)
		return store_errf(a, err_r, 0, "open index.db: %s", err);
	sqldb_cache_init(&a->stc, a->db);
	return 0;
}

/* SQLite's page cache starts with a bulk allocation of 20 pages (~90 KB) per connection; with
 * one connection per logged-in session that would be most of a session's memory. Its memory
 * statistics (which nothing here reads) take one process-wide mutex around every allocation
 * and free: the loop and the pool threads waited on each other for it (futex calls). Every
 * database is opened through sqlvfs, which writes a commit's WAL frames with one system call. */
void store_global_init(void)
{
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	/* after the configs: registering a VFS initialises SQLite */
	if (sqlite3_vfs_find("postino-wal") == NULL)
		sqlvfs_register(NULL, "postino-wal", 1);
}

/* See store.h. */
void store_account_signature(const char *root, uint64_t sig[4])
{
	char p[STORE_PATH_MAX];
	struct stat st;
	memset(sig, 0, 4 * sizeof(*sig));
	/* an empty or missing WAL is the same state (a handle opening creates it, the last one
	 * closing may delete it): only a WAL with frames counts */
	if (path_fmt(p, sizeof(p), "%s/index.db-wal", root) == 0 && stat(p, &st) == 0 &&
	    st.st_size > 0) {
		sig[0] = (uint64_t)st.st_ino;
		sig[1] = (uint64_t)st.st_size;
		sig[2] = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
	}
	if (path_fmt(p, sizeof(p), "%s/index.db", root) == 0 && stat(p, &st) == 0)
		sig[3] = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
}

int store_read_begin(struct store_account *a)
{
	if (a == NULL || !sqlite3_get_autocommit(a->db))
		return 0;
	return store_db_exec(a, "BEGIN") == SQLITE_OK;
}

void store_read_end(struct store_account *a, int began)
{
	if (began && !sqlite3_get_autocommit(a->db))
		store_db_commit(a);
}

/* This thread's shared handles (store_account_open_shared). */
static _Thread_local struct store_account *shared_accounts;

/* See store-private.h. */
int store_prepare(struct store_account *a, const char *sql, int len, sqlite3_stmt **st_r,
		  const char **tail)
{
	(void)len;
	(void)tail;
	return sqldb_prepare(&a->stc, sql, st_r);
}

/* See store-private.h. */
void store_finalize(struct store_account *a, sqlite3_stmt *st)
{
	sqldb_release(&a->stc, st);
}

/* Free an account handle. */
void store_account_close(struct store_account **ap)
{
	struct store_account *a = *ap;
	if (a == NULL)
		return;
	if (a->shared_refs > 0) {   /* a shared handle: the last session closes it */
		*ap = NULL;
		if (--a->shared_refs > 0)
			return;
		struct store_account **pp = &shared_accounts;
		while (*pp && *pp != a)
			pp = &(*pp)->shared_next;
		if (*pp)
			*pp = a->shared_next;
	}
	sqldb_cache_clear(&a->stc);
	sqlite3_close(a->db);
	free(a);
	*ap = NULL;
}

/* A new handle for root (not opened). NULL if out of memory or root is too long. */
static struct store_account *account_new(const char *root, const char **err_r)
{
	struct store_account *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		*err_r = "out of memory";
		return NULL;
	}
	if (path_fmt(a->root, sizeof(a->root), "%s", root) < 0) {
		free(a);
		*err_r = "account path too long";
		return NULL;
	}
	return a;
}

/* Copy the account's error into a per-thread buffer that outlives the account. */
static void keep_err(const char **err_r)
{
	static _Thread_local char err[512];
	snprintf(err, sizeof(err), "%s", *err_r);
	*err_r = err;
}

/* Insert every default mailbox that is missing, in the caller's transaction. */
static int create_default_boxes(struct store_account *a, const char **err_r)
{
	sqlite3_stmt *st;
	int rc = 0;
	if (store_prepare(a, "INSERT OR IGNORE INTO mailboxes(name, uidvalidity, "
			       "special_use) VALUES (?1, max(?2, (SELECT coalesce(max(uidvalidity), 0)"
			       " + 1 FROM mailboxes), (SELECT coalesce(max(value), 0) + 1 FROM"
			       " uidvalidity_last)), ?3)", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "prepare mailbox row");
	int64_t uv = (int64_t)time(NULL);
	for (size_t i = 0; i < N_DEFAULT_BOXES && rc == 0; i++) {
		char dir[STORE_PATH_MAX];
		errno = 0;
		if (store_box_dir(a, default_boxes[i].name, dir, sizeof(dir)) < 0 ||
		    store_maildir_make(dir) < 0) {
			rc = store_errf(a, err_r, errno, "create mailbox directory %s",
					default_boxes[i].name);
			break;
		}
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, default_boxes[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, uv + (int64_t)i);   /* unique per mailbox in the account */
		if (default_boxes[i].special)
			sqlite3_bind_text(st, 3, default_boxes[i].special, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 3);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = store_dbfail(a, err_r, "create mailbox row");
	}
	store_finalize(a, st);
	return rc;
}

/* Create the account tree and index. */
int store_account_create(const char *root, const char **err_r)
{
	struct store_account *a = account_new(root, err_r);
	int rc = -1;
	if (a == NULL)
		return -1;
	errno = 0;
	if (store_maildir_make(root) < 0) {
		store_fail(a, err_r, "create mail directory");
		goto out;
	}
	if (store_db_open(a, 1, err_r) < 0)
		goto out;
	if (store_db_begin(a) != SQLITE_OK) {
		store_dbfail(a, err_r, "begin index transaction");
		goto out;
	}
	if (create_default_boxes(a, err_r) < 0)
		goto out;
	if (store_db_commit(a) != SQLITE_OK) {
		store_dbfail(a, err_r, "commit index");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		if (a->db)
			db_rollback(a);
		keep_err(err_r);
	}
	store_account_close(&a);
	return rc;
}

/* Open an existing account. */
int store_account_open(const char *root, struct store_account **acct_r, const char **err_r)
{
	char p[STORE_PATH_MAX];
	struct stat st;
	if (path_fmt(p, sizeof(p), "%s/index.db", root) < 0) {
		*err_r = "account path too long";
		return -1;
	}
	if (stat(p, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		*err_r = "cannot stat index.db";
		return -1;
	}
	struct store_account *a = account_new(root, err_r);
	if (a == NULL)
		return -1;
	if (store_db_open(a, 0, err_r) < 0) {
		keep_err(err_r);
		store_account_close(&a);
		return -1;
	}
	struct statx sx;
	if (statx(AT_FDCWD, p, 0, STATX_INO | STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME)) {
		a->db_id[0] = ((uint64_t)sx.stx_dev_major << 32) | sx.stx_dev_minor;
		a->db_id[1] = sx.stx_ino;
		a->db_id[2] = (uint64_t)sx.stx_btime.tv_sec * 1000000000u + sx.stx_btime.tv_nsec;
	}
	*acct_r = a;
	return 1;
}

/* Like store_account_open, but sessions of this thread that open the same account share one
 * handle (one SQLite connection: ~20 KB and its page cache) until the last closes it. Only for
 * callers that never use the handle from another thread and never hold a transaction across
 * calls (IMAP's event loop). */
int store_account_open_shared(const char *root, struct store_account **acct_r,
			      const char **err_r)
{
	for (struct store_account *a = shared_accounts; a; a = a->shared_next) {
		if (strcmp(a->root, root) == 0) {
			a->shared_refs++;
			*acct_r = a;
			return 1;
		}
	}
	int r = store_account_open(root, acct_r, err_r);
	if (r == 1) {
		sqlite3_wal_hook((*acct_r)->db, store_wal_hook, *acct_r);
		(*acct_r)->shared_refs = 1;
		(*acct_r)->shared_next = shared_accounts;
		shared_accounts = *acct_r;
	}
	return r;
}

/* The pool threads' kept handles (store_account_borrow): one set per process, each handle lent
 * to one thread at a time. A mailbox's deliveries and IMAP writes thus reuse the connection that
 * made the last change, whose page cache is still valid (SQLite empties a connection's cache
 * when another connection committed since its last transaction: with a handle per thread, every
 * change re-read its pages from the file). */
static struct {
	pthread_mutex_t mu;
	struct {
		struct store_account *a;
		dev_t dev;
		ino_t ino;
		uint64_t used;
		int out;           /* lent to a thread now */
	} e[STORE_BORROW_MAX];
	uint64_t clock;
} lender = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* See store.h. */
void store_account_borrow_release(void)
{
	struct store_account *idle[STORE_BORROW_MAX];
	size_t n = 0;
	pthread_mutex_lock(&lender.mu);
	for (size_t i = 0; i < STORE_BORROW_MAX; i++) {
		if (lender.e[i].a != NULL && !lender.e[i].out) {
			idle[n++] = lender.e[i].a;
			lender.e[i].a = NULL;
		}
	}
	pthread_mutex_unlock(&lender.mu);
	for (size_t i = 0; i < n; i++)
		store_account_close(&idle[i]);
}

/* See store.h. */
int store_account_borrow(const char *root, struct store_account **acct_r, const char **err_r)
{
	char p[STORE_PATH_MAX];
	struct stat st;
	struct store_account *stale = NULL, *a = NULL;
	if (path_fmt(p, sizeof(p), "%s/index.db", root) < 0) {
		*err_r = "account path too long";
		return -1;
	}
	if (stat(p, &st) < 0) {
		*err_r = errno == ENOENT ? "the account has no index" : "cannot stat index.db";
		return errno == ENOENT ? 0 : -1;
	}
	pthread_mutex_lock(&lender.mu);
	for (size_t i = 0; i < STORE_BORROW_MAX && a == NULL; i++) {
		if (lender.e[i].a == NULL || lender.e[i].out || strcmp(lender.e[i].a->root, root) != 0)
			continue;
		/* the same file still: an account removed and made again gets a new one */
		if (lender.e[i].dev == st.st_dev && lender.e[i].ino == st.st_ino) {
			lender.e[i].out = 1;
			a = lender.e[i].a;
		} else if (stale == NULL) {
			stale = lender.e[i].a;
			lender.e[i].a = NULL;
		}
	}
	pthread_mutex_unlock(&lender.mu);
	store_account_close(&stale);
	if (a != NULL) {
		*acct_r = a;
		return 1;
	}
	/* none idle: a new handle, opened outside the lock (opening costs syncs); it joins the
	 * set when it comes back (store_account_return) */
	int r = store_account_open(root, &a, err_r);
	if (r != 1) {
		if (r == 0)
			*err_r = "the account has no index";
		return r;
	}
	a->lent_dev = st.st_dev;
	a->lent_ino = st.st_ino;
	*acct_r = a;
	return 1;
}

/* See store.h. */
void store_account_return(struct store_account **acct)
{
	struct store_account *a = *acct, *evict = NULL;
	*acct = NULL;
	if (a == NULL)
		return;
	pthread_mutex_lock(&lender.mu);
	size_t slot = STORE_BORROW_MAX;
	for (size_t i = 0; i < STORE_BORROW_MAX && slot == STORE_BORROW_MAX; i++)
		if (lender.e[i].a == a)
			slot = i;
	if (slot == STORE_BORROW_MAX) {
		/* a new handle: into a free slot, else in place of the least recently used idle one */
		for (size_t i = 0; i < STORE_BORROW_MAX; i++) {
			if (lender.e[i].a == NULL) {
				slot = i;
				break;
			}
			if (!lender.e[i].out && (slot == STORE_BORROW_MAX ||
						 lender.e[i].used < lender.e[slot].used))
				slot = i;
		}
		if (slot != STORE_BORROW_MAX) {
			evict = lender.e[slot].a;
			lender.e[slot].a = a;
			lender.e[slot].dev = a->lent_dev;
			lender.e[slot].ino = a->lent_ino;
		}
	}
	if (slot != STORE_BORROW_MAX) {
		lender.e[slot].out = 0;
		lender.e[slot].used = ++lender.clock;
	} else {
		evict = a;   /* every slot lent out: this one is not kept */
	}
	pthread_mutex_unlock(&lender.mu);
	store_account_close(&evict);
}

/* The columns box_row() reads, for a query on mailboxes. */
#define BOX_COLS \
	"SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use, " \
	"name IN (SELECT name FROM subscriptions), " \
	"(SELECT count(*) FROM messages WHERE mailbox_id = id), " \
	"(SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = id), " \
	"(SELECT count(*) FROM messages WHERE mailbox_id = id AND flags & 1 = 0) FROM mailboxes "

/* Fill info from a BOX_COLS row. */
static void box_row(sqlite3_stmt *st, struct store_mailbox_info *info)
{
	memset(info, 0, sizeof(*info));
	info->id = sqlite3_column_int64(st, 0);
	snprintf(info->name, sizeof(info->name), "%s", sqlite3_column_text(st, 1));
	info->uidvalidity = (uint32_t)sqlite3_column_int64(st, 2);
	info->uidnext = (uint32_t)sqlite3_column_int64(st, 3);
	info->highestmodseq = (uint64_t)sqlite3_column_int64(st, 4);
	info->special_use = store_special_static((const char *)sqlite3_column_text(st, 5));
	info->subscribed = sqlite3_column_int(st, 6);
	info->messages = (uint32_t)sqlite3_column_int64(st, 7);
	info->size = (uint64_t)sqlite3_column_int64(st, 8);
	info->unseen = (uint32_t)sqlite3_column_int64(st, 9);
}

/* The counters IMAP polls after every command (no aggregate over the messages). 1 found, 0 not,
 * -1 error. */
int store_mailbox_state(struct store_account *a, const char *box, uint32_t *uidvalidity_r,
			uint32_t *uidnext_r, uint64_t *highestmodseq_r, const char **err_r)
{
	sqlite3_stmt *st;
	if (box == NULL || strcasecmp(box, "INBOX") == 0)
		box = "INBOX";
	if (store_prepare(a, "SELECT uidvalidity, uidnext, highestmodseq FROM mailboxes "
			       "WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "query mailbox");
	sqlite3_bind_text(st, 1, box, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		*uidvalidity_r = (uint32_t)sqlite3_column_int64(st, 0);
		*uidnext_r = (uint32_t)sqlite3_column_int64(st, 1);
		*highestmodseq_r = (uint64_t)sqlite3_column_int64(st, 2);
	}
	store_finalize(a, st);
	if (r == SQLITE_ROW)
		return 1;
	return r == SQLITE_DONE ? 0 : store_dbfail(a, err_r, "query mailbox");
}

/* One mailbox row by name with `sql` (box_row's columns, one parameter). 1, 0, -1. */
static int mailbox_row_by_name(struct store_account *a, const char *sql, const char *box,
			       struct store_mailbox_info *info, const char **err_r)
{
	sqlite3_stmt *st;
	if (box == NULL || strcasecmp(box, "INBOX") == 0)
		box = "INBOX";
	if (store_prepare(a, sql, -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "query mailbox");
	sqlite3_bind_text(st, 1, box, -1, SQLITE_STATIC);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		box_row(st, info);
	else if (r != SQLITE_DONE)
		store_dbfail(a, err_r, "query mailbox");
	store_finalize(a, st);
	return r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : -1;
}

/* Look up a mailbox row. 1 found, 0 not, -1 error. */
int store_mailbox_get(struct store_account *a, const char *box, struct store_mailbox_info *info,
		      const char **err_r)
{
	return mailbox_row_by_name(a, BOX_COLS "WHERE name = ?", box, info, err_r);
}

/* store_mailbox_get without the counts (messages, size, unseen stay 0): for the store's own
 * lookups, which need only the row. */
int store_mailbox_lookup(struct store_account *a, const char *box, struct store_mailbox_info *info,
			 const char **err_r)
{
	return mailbox_row_by_name(a, "SELECT id, name, uidvalidity, uidnext, highestmodseq, "
				      "special_use, name IN (SELECT name FROM subscriptions), 0, 0, 0"
				      " FROM mailboxes WHERE name = ?",
				   box, info, err_r);
}

/* Look up a mailbox that must exist: 0 ok, -1 error or missing (*err_r says which). */
static int mailbox_need(struct store_account *a, const char *box, struct store_mailbox_info *mb,
			const char **err_r)
{
	int r = store_mailbox_lookup(a, box, mb, err_r);
	if (r == 0)
		return store_errf(a, err_r, 0, "no such mailbox");
	return r < 0 ? -1 : 0;
}

/* All mailboxes. */
int store_mailbox_list(struct store_account *a, struct store_mailbox_info **boxes_r,
		       const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, BOX_COLS "ORDER BY name", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "list mailboxes");
	struct store_mailbox_info *v = NULL;
	size_t n = 0;
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		void *nv = realloc(v, (n + 1) * sizeof(*v));
		if (nv == NULL)
			break;
		v = nv;
		box_row(st, &v[n++]);
	}
	if (r != SQLITE_DONE) {
		if (r == SQLITE_ROW)
			store_errf(a, err_r, ENOMEM, "list mailboxes");
		else
			store_dbfail(a, err_r, "list mailboxes");
		n = 0;
		free(v);
		v = NULL;
	}
	store_finalize(a, st);
	*boxes_r = v;
	return r == SQLITE_DONE ? (int)n : -1;
}

/* Messages of a mailbox, in UID order. */
int store_message_list(struct store_account *a, const char *box, struct store_msg_info **msgs_r,
		       const char **err_r)
{
	struct store_mailbox_info mb;
	sqlite3_stmt *st;
	if (mailbox_need(a, box, &mb, err_r) < 0)
		return -1;
	if (store_prepare(a, "SELECT uid, flags, modseq, internaldate, size, filename, "
			       "in_new, wire_size, keywords, savedate FROM messages WHERE "
			       "mailbox_id = ? ORDER BY uid", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "list messages");
	sqlite3_bind_int64(st, 1, mb.id);
	struct store_msg_info *v = NULL;
	size_t n = 0;
	int r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		void *nv = realloc(v, (n + 1) * sizeof(*v));
		if (nv == NULL)
			break;
		v = nv;
		struct store_msg_info *m = &v[n++];
		memset(m, 0, sizeof(*m));
		m->uid = (uint32_t)sqlite3_column_int64(st, 0);
		m->flags = (unsigned)sqlite3_column_int(st, 1);
		m->modseq = (uint64_t)sqlite3_column_int64(st, 2);
		m->internaldate = (time_t)sqlite3_column_int64(st, 3);
		m->size = (uint64_t)sqlite3_column_int64(st, 4);
		snprintf(m->filename, sizeof(m->filename), "%s", sqlite3_column_text(st, 5));
		m->in_new = sqlite3_column_int(st, 6);
		m->wire_size = (uint64_t)sqlite3_column_int64(st, 7);
		m->keywords = (uint64_t)sqlite3_column_int64(st, 8);
		m->savedate = (time_t)sqlite3_column_int64(st, 9);
	}
	if (r != SQLITE_DONE) {
		if (r == SQLITE_ROW)
			store_errf(a, err_r, ENOMEM, "list messages");
		else
			store_dbfail(a, err_r, "list messages");
		store_finalize(a, st);
		free(v);
		return -1;
	}
	store_finalize(a, st);
	*msgs_r = v;
	return (int)n;
}

/* Open a message file by UID. */
int store_message_open(struct store_account *a, const char *box, uint32_t uid, const char **err_r)
{
	struct store_msg_info *v;
	int n = store_message_list(a, box, &v, err_r);
	if (n < 0)
		return -1;
	int fd = -2;
	for (int i = 0; i < n && fd == -2; i++)
		if (v[i].uid == uid)
			fd = store_message_fd(a, box, &v[i], err_r);
	free(v);
	if (fd == -2)
		return store_errf(a, err_r, 0, "message %u not found", uid);
	return fd;
}

/* Copy size octets of src_fd (from offset 0) into the new file path and fsync it: in-kernel
 * with copy_file_range where the filesystems allow, else read/write. On failure path is gone. */
static int copy_file(struct store_account *a, int src_fd, uint64_t size, const char *path,
		     const char **err_r)
{
	char buf[65536];
	const char *what = NULL;
	int use_cfr = 1, e = 0;
	loff_t off = 0;
	int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (out < 0)
		return store_errf(a, err_r, errno, "deliver: create file in tmp/");
	while ((uint64_t)off < size && what == NULL) {
		uint64_t left = size - (uint64_t)off;
		ssize_t n;
		if (use_cfr) {
			n = copy_file_range(src_fd, &off, out, NULL,
					    left > STORE_COPY_CHUNK ? STORE_COPY_CHUNK : left, 0);
			if (n > 0 || (n < 0 && errno == EINTR))
				continue;
			use_cfr = 0;   /* EXDEV, ENOSYS, EINVAL, ...: the portable path decides */
			continue;
		}
		n = pread(src_fd, buf, left > sizeof(buf) ? sizeof(buf) : (size_t)left, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			e = n < 0 ? errno : 0;
			what = n < 0 ? "deliver: read source" : "deliver: source shorter than its size";
		} else if (fs_write_all(out, buf, (size_t)n) < 0) {
			e = errno;
			what = "deliver: write file in tmp/";
		} else {
			off += n;
		}
	}
	if (what == NULL && fsync(out) != 0) {
		e = errno;
		what = "deliver: fsync file in tmp/";
	}
	if (close(out) != 0 && what == NULL) {
		e = errno;
		what = "deliver: close file in tmp/";
	}
	if (what == NULL)
		return 0;
	unlink(path);
	return store_errf(a, err_r, e, "%s", what);
}

/* A unique Maildir file name: <time>.M<usec>P<pid>Q<counter>.<host>,S=<size>. */
void store_maildir_name(char *out, size_t outlen, uint64_t size)
{
	static atomic_uint counter;
	char host[65];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	snprintf(host, sizeof(host), "%s", proc_hostname());
	for (char *p = host; *p; p++)   /* '/' ':' ',' are special in Maildir names */
		if (*p == '/' || *p == ':' || *p == ',' || (unsigned char)*p <= ' ' || *p == 0x7f)
			*p = '_';
	unsigned q = atomic_fetch_add(&counter, 1) + 1;
	snprintf(out, outlen, "%lld.M%ldP%ldQ%u.%s,S=%llu", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)proc_pid(), q, host, (unsigned long long)size);
}

/* See store-private.h. */
int store_name_with_uid(char *out, size_t outlen, const char *base, uint32_t uid)
{
	int len = snprintf(out, outlen, "%s,U=%u", base, uid);
	return len < 0 || (size_t)len >= outlen ? -1 : 0;
}

/* See store-private.h. Strict: digits only, no leading zero, below 2^32 - 1, ended by ',', ':'
 * or the end of the name; anything else is "no UID". */
uint32_t store_uid_from_name(const char *name)
{
	const char *p = name, *colon = strchr(name, ':');
	for (;;) {
		p = strstr(p, ",U=");
		if (p == NULL || (colon != NULL && p > colon))
			return 0;
		p += 3;
		uint64_t v = 0;
		const char *d = p;
		while (*d >= '0' && *d <= '9' && d - p < 10)
			v = v * 10 + (uint64_t)(*d++ - '0');
		if (d > p && *p != '0' && (*d == '\0' || *d == ',' || *d == ':') &&
		    v < UINT32_MAX)
			return (uint32_t)v;
	}
}

/* See store-private.h. */
int store_uidnext(struct store_account *a, int64_t box_id, uint32_t *uidnext_r,
		  const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT uidnext FROM mailboxes WHERE id = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return store_dbfail(a, err_r, "read UIDNEXT");
	sqlite3_bind_int64(st, 1, box_id);
	int r = sqlite3_step(st);
	int64_t v = r == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	store_finalize(a, st);
	if (r != SQLITE_ROW)
		return r == SQLITE_DONE ? store_errf(a, err_r, 0, "no such mailbox")
					: store_dbfail(a, err_r, "read UIDNEXT");
	if (v < 1 || v > (int64_t)UINT32_MAX - 1)
		return store_errf(a, err_r, 0, "the mailbox's UIDs are exhausted");
	*uidnext_r = (uint32_t)v;
	return 0;
}

/* Add an index row for a file already in new/ or cur/: UID = UIDNEXT, MODSEQ bumped.
 * Runs inside the caller's transaction. */
int store_index_insert(struct store_account *a, int64_t box_id, const char *fname, int in_new,
		       unsigned flags, time_t internaldate, uint64_t size, uint64_t wire_size,
		       uint32_t *uid_r, const char **err_r)
{
	return store_index_insert_at(a, box_id, fname, in_new, flags, internaldate, size,
				     wire_size, 0, uid_r, err_r);
}

/* See store-private.h. */
int store_index_insert_at(struct store_account *a, int64_t box_id, const char *fname, int in_new,
			  unsigned flags, time_t internaldate, uint64_t size, uint64_t wire_size,
			  uint32_t want, uint32_t *uid_r, const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "UPDATE mailboxes SET uidnext = max(uidnext, ?2) + 1, highestmodseq = "
			       "highestmodseq + 1 WHERE id = ?1 RETURNING uidnext - 1, highestmodseq",
			       -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "update UIDNEXT");
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_int64(st, 2, (int64_t)want);
	int64_t uid = 0, modseq = 0;
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		uid = sqlite3_column_int64(st, 0);
		modseq = sqlite3_column_int64(st, 1);
		r = sqlite3_step(st);
	}
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "update UIDNEXT");
	if (uid < 1 || uid > (int64_t)UINT32_MAX - 1)   /* also: mailbox deleted meanwhile */
		return store_errf(a, err_r, 0, "no such mailbox or its UIDs are exhausted");
	if (want != 0 && uid != want)   /* want below UIDNEXT: the name would lie */
		return store_errf(a, err_r, 0, "UID %u asked for, below UIDNEXT %lld", want,
				  (long long)uid);
	if (store_prepare(a, "INSERT INTO messages(mailbox_id, uid, filename, flags, "
			       "modseq, internaldate, size, savedate, in_new, wire_size) VALUES "
			       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "insert message row");
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, fname, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 4, (int)flags);
	sqlite3_bind_int64(st, 5, modseq);
	sqlite3_bind_int64(st, 6, (int64_t)internaldate);
	sqlite3_bind_int64(st, 7, (int64_t)size);
	sqlite3_bind_int64(st, 8, (int64_t)time(NULL));
	sqlite3_bind_int(st, 9, in_new);
	sqlite3_bind_int64(st, 10, (int64_t)wire_size);
	r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "insert message row");
	if (uid_r)
		*uid_r = (uint32_t)uid;
	return 0;
}

/* rename(2) that refuses to replace an existing file where the filesystem can say so. */
static int rename_noreplace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	return rename(from, to);
}

/* The mailboxes this process has reconciled, by index.db file and mailbox: a slot per hash, a
 * collision forgets the older one (which then costs one more sync, nothing else). */
#define STORE_SYNCED_SLOTS 1024
static struct synced_slot {
	uint64_t db[3];
	int64_t box;
	uint32_t uidvalidity;
} synced_slots[STORE_SYNCED_SLOTS];
static pthread_mutex_t synced_mu = PTHREAD_MUTEX_INITIALIZER;

/* Reconcile a mailbox the first time this process delivers into it, so a message a crash left in
 * new/ without its row (kill -9 between rename and commit) is indexed by the next delivery. Once
 * per process, not per handle: the pool threads open their handles again after each idle spell,
 * and a sync reads the whole of new/, cur/ and the mailbox's index rows (for a busy mailbox, tens
 * of milliseconds per thread at the start of every burst of mail). A worker that crashed is
 * replaced by a new process, which reconciles again. Best effort: a failed sync does not stop
 * the delivery. */
static void sync_once(struct store_account *a, const char *box, const struct store_mailbox_info *mb)
{
	const char *ignored;
	size_t n = a->nsynced < 8 ? a->nsynced : 8;
	for (size_t i = 0; i < n; i++)
		if (a->synced[i] == mb->id)
			return;
	struct synced_slot key = {
		.db = { a->db_id[0], a->db_id[1], a->db_id[2] },
		.box = mb->id, .uidvalidity = mb->uidvalidity,
	};
	uint64_t h = key.db[0] * 0x9e3779b97f4a7c15u ^ key.db[1] * 0xbf58476d1ce4e5b9u ^
		     key.db[2] * 0x94d049bb133111ebu ^ (uint64_t)key.box * 31u ^ key.uidvalidity;
	struct synced_slot *sl = &synced_slots[(h ^ h >> 31) % STORE_SYNCED_SLOTS];
	int known = 0;
	if (key.db[2] != 0) {
		pthread_mutex_lock(&synced_mu);
		known = memcmp(sl->db, key.db, sizeof(key.db)) == 0 && sl->box == key.box &&
			sl->uidvalidity == key.uidvalidity;
		pthread_mutex_unlock(&synced_mu);
	}
	if (!known && store_mailbox_sync(a, box, &ignored) < 0)
		return;
	a->synced[a->nsynced++ % 8] = mb->id;
	if (!known && key.db[2] != 0) {
		pthread_mutex_lock(&synced_mu);
		*sl = key;
		pthread_mutex_unlock(&synced_mu);
	}
}

/* Where one message of a group delivery stands (store_deliver_batch). */
enum batch_stage {
	BATCH_FAILED = 0,          /* refused; nothing of it is visible */
	BATCH_TO_LINK,             /* a synced source on the mailbox's file system: linked
				    * straight into new/ under the lock */
	BATCH_IN_TMP,              /* copied into tmp/ */
	BATCH_IN_NEW,              /* in new/, not yet committed */
};

/* Per-message state of a group delivery that callers never see. */
struct batch_prep {
	enum batch_stage stage;
	char fname[256];   /* the base name made for it, its name in tmp/ */
	char name[280];    /* its name in new/ and in the index: fname,U=<uid> */
	uint32_t uid;
	int64_t wire;
	struct store_structure sc;
};

/* Copy the account's last error into a message's own error text. */
static void batch_item_err(struct store_batch_item *it, const char *err)
{
	snprintf(it->err, sizeof(it->err), "%s", err ? err : "delivery failed");
}

/* Step 1 of a group delivery for one message, before any lock: check the source, compute what
 * the index caches, and decide how it gets into new/: a synced source on the mailbox's file
 * system (dir_dev) is hard-linked there under the lock (no copy, no fsync, no name in tmp/ to
 * rename and no rename), anything else is copied into tmp/ and synced now. Sets p->stage.
 * 0 ok, -1 with the error on the account. */
static int batch_prepare(struct store_account *a, const char *dir, dev_t dir_dev,
			 const struct store_batch_item *it, struct batch_prep *p, const char **err_r)
{
	struct stat st;
	char tmp[STORE_PATH_MAX];
	if (fstat(it->src_fd, &st) < 0)
		return store_errf(a, err_r, errno, "deliver: fstat source");
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != it->size)
		return store_errf(a, err_r, 0, "deliver: source is not a regular file of %llu octets",
				  (unsigned long long)it->size);
	/* POP3's LIST size and IMAP's cache (best effort), computed once from one read */
	struct fs_view view = { 0 };
	if (it->size > 0 && it->size <= SIZE_MAX && fs_view_open(&view, it->src_fd, it->size) < 0)
		return store_errf(a, err_r, errno, "deliver: read source");
	p->wire = wire_size_mem(view.data, view.len);
	store_structure_compute_mem(view.data, view.len, &p->sc);
	fs_view_close(&view);
	store_maildir_name(p->fname, sizeof(p->fname), it->size);
	if (it->src_already_synced && st.st_dev == dir_dev) {
		p->stage = BATCH_TO_LINK;
	} else {
		if (path_fmt(tmp, sizeof(tmp), "%s/tmp/%s", dir, p->fname) < 0)
			return store_errf(a, err_r, ENAMETOOLONG, "deliver");
		if (copy_file(a, it->src_fd, it->size, tmp, err_r) < 0)
			return -1;
		p->stage = BATCH_IN_TMP;
	}
	return 0;
}

/* Step 2 for one message, under the write lock: into new/ as <fname>,U=<uid> (a link of the
 * source, or the rename of its copy in tmp/; a link that fails, e.g. without /proc, falls back
 * to a copy). 0 ok, -1 with the error on the account (nothing of it left in tmp/ or new/). */
static int batch_into_new(struct store_account *a, const char *dir,
			  const struct store_batch_item *it, struct batch_prep *p, uint32_t uid,
			  const char **err_r)
{
	char tmp[STORE_PATH_MAX], dst[STORE_PATH_MAX];
	if (store_name_with_uid(p->name, sizeof(p->name), p->fname, uid) < 0 ||
	    path_fmt(tmp, sizeof(tmp), "%s/tmp/%s", dir, p->fname) < 0 ||
	    path_fmt(dst, sizeof(dst), "%s/new/%s", dir, p->name) < 0)
		return store_errf(a, err_r, ENAMETOOLONG, "deliver");
	if (p->stage == BATCH_TO_LINK) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", it->src_fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		if (errno == EEXIST)
			return store_errf(a, err_r, errno, "deliver: link into new/");
		if (copy_file(a, it->src_fd, it->size, tmp, err_r) < 0)
			return -1;
		p->stage = BATCH_IN_TMP;
	}
	if (rename_noreplace(tmp, dst) < 0) {
		store_errf(a, err_r, errno, "deliver: rename tmp/ into new/");
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* See store-private.h. What this handle committed with synchronous=NORMAL is durable after it
 * (a checkpoint since has synced it into index.db anyway). Through SQLite's own file handle, so
 * the sync is of the WAL it wrote. */
int store_wal_sync(struct store_account *a)
{
	sqlite3_file *f = NULL;
	if (sqlite3_file_control(a->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK ||
	    f == NULL || f->pMethods == NULL) {
		errno = EIO;
		return -1;
	}
	errno = 0;
	if (f->pMethods->xSync(f, SQLITE_SYNC_NORMAL) != SQLITE_OK) {
		if (errno == 0)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* Remove a prepared message's file from tmp/ or new/ (dir is the mailbox directory). */
static void batch_unlink(const char *dir, const struct batch_prep *p)
{
	char path[STORE_PATH_MAX];
	if (path_fmt(path, sizeof(path), "%s/%s/%s", dir, p->stage == BATCH_IN_NEW ? "new" : "tmp",
		     p->stage == BATCH_IN_NEW ? p->name : p->fname) == 0)
		unlink(path);
}

/* The durable group delivery; see store.h and the top of this file. */
size_t store_deliver_batch(struct store_account *a, const char *box, struct store_batch_item *items,
			   size_t n)
{
	struct store_mailbox_info mb;
	char dir[STORE_PATH_MAX], newdir[STORE_PATH_MAX];
	const char *err = NULL;
	size_t innew = 0, ok = 0;
	for (size_t i = 0; i < n; i++) {
		items[i].result = -1;
		items[i].uid = 0;
		items[i].err[0] = '\0';
	}
	if (n == 0)
		return 0;
	struct batch_prep *p = calloc(n, sizeof(*p));
	if (p == NULL) {
		store_errf(a, &err, ENOMEM, "deliver");
		goto fail_all;
	}
	if (mailbox_need(a, box, &mb, &err) < 0)
		goto fail_all;
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0) {
		store_errf(a, &err, 0, "deliver: mailbox name has no directory");
		goto fail_all;
	}
	if (path_fmt(newdir, sizeof(newdir), "%s/new", dir) < 0) {
		store_errf(a, &err, ENAMETOOLONG, "deliver");
		goto fail_all;
	}
	sync_once(a, box, &mb);
	/* 1. every message prepared (into tmp/ unless it is linked later), each on its own: one
	 * that fails is refused alone */
	struct stat nst;
	dev_t dir_dev = stat(newdir, &nst) == 0 ? nst.st_dev : (dev_t)-1;
	size_t ready = 0;
	for (size_t i = 0; i < n; i++) {
		if (batch_prepare(a, dir, dir_dev, &items[i], &p[i], &err) < 0) {
			batch_item_err(&items[i], err);
			store_structure_free(&p[i].sc);
			p[i].stage = BATCH_FAILED;
			continue;
		}
		ready++;
	}
	if (ready == 0)
		goto out;
	/* 2. the write lock, then new/ and the rows of all in one transaction, committed without
	 * waiting for the disk (synchronous=NORMAL): the lock is held for no sync, so the next
	 * group (another worker's, into the same mailbox) goes on meanwhile */
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	if (store_db_begin(a) != SQLITE_OK) {
		store_dbfail(a, &err, "deliver: lock index");
		db_rollback(a);
		goto undo;
	}
	/* each name carries the UID its row gets (UIDNEXT on, in this order, under the lock) */
	uint32_t uid = 0;
	if (store_uidnext(a, mb.id, &uid, &err) < 0)
		goto undo;
	int flagged = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i].stage == BATCH_FAILED)
			continue;
		if (batch_into_new(a, dir, &items[i], &p[i], uid, &err) < 0) {
			batch_item_err(&items[i], err);
			p[i].stage = BATCH_FAILED;
			continue;
		}
		p[i].stage = BATCH_IN_NEW;
		p[i].uid = uid++;
		flagged |= items[i].flags != 0;
		innew++;
	}
	if (innew == 0) {
		db_rollback(a);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i].stage != BATCH_IN_NEW)
			continue;
		if (store_index_insert_at(a, mb.id, p[i].name, 1, items[i].flags,
					  items[i].internaldate, items[i].size, (uint64_t)p[i].wire,
					  p[i].uid, &items[i].uid, &err) < 0)
			goto undo;
		store_structure_save(a, mb.id, items[i].uid, &p[i].sc);
	}
	if (store_db_commit(a) != SQLITE_OK) {
		store_dbfail(a, &err, "deliver: commit index rows");
		goto undo;
	}
	/* 3. after the lock, what makes them count as delivered: new/ synced (the files' data
	 * were synced before). Their names carry their UIDs, so the rows need no sync of the WAL:
	 * should a power cut take the commit away, the mailbox's reconciling gives each file its
	 * UID back, and the internal date from its mtime (the time it was received). Flags given
	 * at delivery are in the row only, so such a batch syncs the WAL. A failure takes them
	 * back: the files are removed and the sync of the mailbox records their rows as
	 * expunged */
	if (fs_fsync_dir(newdir) < 0) {
		store_errf(a, &err, errno, "deliver: fsync new/");
		goto take_back;
	}
	if (flagged && store_wal_sync(a) < 0) {
		store_errf(a, &err, errno, "deliver: sync index WAL");
		goto take_back;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i].stage == BATCH_IN_NEW) {
			items[i].result = 0;
			ok++;
		}
	}
	goto out;
take_back:
	for (size_t i = 0; i < n; i++) {
		if (p[i].stage != BATCH_IN_NEW)
			continue;
		batch_unlink(dir, &p[i]);
		batch_item_err(&items[i], err);
		items[i].uid = 0;
	}
	fs_fsync_dir(newdir);
	store_db_commits(a, STORE_COMMITS_SYNCED);
	{
		const char *ignored;
		(void)store_mailbox_sync(a, box, &ignored);
	}
	goto out;
undo:
	/* a failed lock or commit refuses every message of the group: none is visible */
	db_rollback(a);
	for (size_t i = 0; i < n; i++) {
		if (p[i].stage == BATCH_FAILED)
			continue;
		batch_unlink(dir, &p[i]);
		batch_item_err(&items[i], err);
		items[i].uid = 0;
	}
	if (innew > 0)
		fs_fsync_dir(newdir);
out:
	store_db_commits(a, STORE_COMMITS_SYNCED);
	for (size_t i = 0; i < n; i++)
		store_structure_free(&p[i].sc);
	free(p);
	return ok;
fail_all:
	free(p);
	for (size_t i = 0; i < n; i++)
		batch_item_err(&items[i], err);
	return 0;
}

/* One message: a group delivery of one. */
int store_deliver(struct store_account *a, const char *box, int src_fd, uint64_t size,
		  int src_already_synced, time_t internaldate, unsigned flags, uint32_t *uid_r,
		  const char **err_r)
{
	struct store_batch_item it = {
		.src_fd = src_fd, .size = size, .src_already_synced = src_already_synced,
		.internaldate = internaldate, .flags = flags,
	};
	if (store_deliver_batch(a, box, &it, 1) != 1) {
		snprintf(a->err, sizeof(a->err), "%s", it.err);
		*err_r = a->err;
		return -1;
	}
	if (uid_r)
		*uid_r = it.uid;
	return 0;
}

/* Was this file name expunged from the mailbox? */
static int store_was_expunged(struct store_account *a, int64_t box_id, const char *fname)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT 1 FROM expunged WHERE mailbox_id = ? AND filename = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_text(st, 2, fname, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st) == SQLITE_ROW;
	store_finalize(a, st);
	return r;
}

/* Path of a listed message. */
int store_message_path(struct store_account *a, const char *box, const struct store_msg_info *m,
		       char *out, size_t outlen)
{
	char dir[STORE_PATH_MAX];
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0)
		return -1;
	return store_msg_path(dir, m->filename, m->in_new, m->flags, out, outlen);
}

/* The account directory. */
const char *store_account_root(const struct store_account *a)
{
	return a->root;
}

/* Record one UID as expunged at modseq and delete its row (caller's transaction). */
static int expunge_row(struct store_account *a, int64_t box_id, uint32_t uid, uint64_t modseq,
		       const char *fname, const char **err_r)
{
	sqlite3_stmt *rec = NULL, *del = NULL;
	int rc = 0;
	if (store_prepare(a, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq, "
			       "filename) VALUES (?, ?, ?, ?)", -1, &rec, NULL) != SQLITE_OK ||
	    store_prepare(a, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", -1,
			       &del, NULL) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "prepare expunge");
		goto out;
	}
	sqlite3_bind_int64(rec, 1, box_id);
	sqlite3_bind_int64(rec, 2, uid);
	sqlite3_bind_int64(rec, 3, (int64_t)modseq);
	sqlite3_bind_text(rec, 4, fname, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(del, 1, box_id);
	sqlite3_bind_int64(del, 2, uid);
	if (sqlite3_step(rec) != SQLITE_DONE || sqlite3_step(del) != SQLITE_DONE)
		rc = store_dbfail(a, err_r, "expunge row");
out:
	store_finalize(a, rec);
	store_finalize(a, del);
	return rc;
}

/* Set HIGHESTMODSEQ of a mailbox (caller's transaction). */
static int set_highestmodseq(struct store_account *a, int64_t box_id, uint64_t modseq,
			     const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", -1, &st,
			  NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "update HIGHESTMODSEQ");
	sqlite3_bind_int64(st, 1, (int64_t)modseq);
	sqlite3_bind_int64(st, 2, box_id);
	int r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "update HIGHESTMODSEQ");
	return 0;
}

static int expunge_txn(struct store_account *a, const char *box, const uint32_t *uids, size_t n,
		       char ***files_r, const char **err_r);

/* Expunge by UID: commit the index change first, then remove the files. */
int store_expunge(struct store_account *a, const char *box, const uint32_t *uids, size_t n,
		  const char **err_r)
{
	return expunge_txn(a, box, uids, n, NULL, err_r);
}

/* See store.h. Like a flag change, the commit does not wait for the disk. */
int store_expunge_nowait(struct store_account *a, const char *box, const uint32_t *uids,
			 size_t n, char ***files_r, const char **err_r)
{
	*files_r = NULL;
	if (!store_db_quick_write(a))
		return STORE_WOULD_WAIT;
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	int r = expunge_txn(a, box, uids, n, files_r, err_r);
	store_db_commits(a, STORE_COMMITS_SYNCED);
	return r;
}

/* See store.h. */
void store_unlink_files(char **files)
{
	for (size_t i = 0; files != NULL && files[i] != NULL; i++) {
		unlink(files[i]);
		free(files[i]);
	}
	free(files);
}

/* The transaction of store_expunge and store_expunge_nowait (files_r set: the write lock only
 * if it is free at once, else STORE_WOULD_WAIT and nothing done; the files' paths go to
 * *files_r instead of being removed). */
static int expunge_txn(struct store_account *a, const char *box, const uint32_t *uids, size_t n,
		       char ***files_r, const char **err_r)
{
	int nowait = files_r != NULL;
	struct store_mailbox_info mb;
	char dir[STORE_PATH_MAX];
	if (mailbox_need(a, box, &mb, err_r) < 0)
		return -1;
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0)
		return store_errf(a, err_r, 0, "expunge: mailbox name has no directory");
	char **paths = calloc(n + 1, sizeof(*paths));
	if (paths == NULL)
		return store_errf(a, err_r, ENOMEM, "expunge");
	size_t np = 0;
	int rc = 0;
	sqlite3_stmt *sel = NULL;
	int b = nowait ? store_db_try_begin(a) : store_db_begin(a);
	if (b != SQLITE_OK) {
		if (nowait && (b & 0xff) == SQLITE_BUSY) {
			free(paths);
			return STORE_WOULD_WAIT;
		}
		rc = store_dbfail(a, err_r, "begin expunge");
		goto out;
	}
	if (store_prepare(a, "SELECT filename, in_new, flags, highestmodseq FROM messages,"
			       " mailboxes WHERE mailbox_id = ? AND uid = ? AND id = mailbox_id", -1,
			       &sel, NULL) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "prepare expunge");
		goto out;
	}
	uint64_t modseq = 0;
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, mb.id);
		sqlite3_bind_int64(sel, 2, uids[i]);
		if (sqlite3_step(sel) != SQLITE_ROW)
			continue;
		char p[STORE_PATH_MAX];
		const char *base = (const char *)sqlite3_column_text(sel, 0);
		if (modseq == 0)   /* read inside the lock: another process may have bumped it */
			modseq = (uint64_t)sqlite3_column_int64(sel, 3) + 1;
		if (store_msg_path(dir, base, sqlite3_column_int(sel, 1),
				   (unsigned)sqlite3_column_int(sel, 2), p, sizeof(p)) < 0 ||
		    access(p, F_OK) != 0)
			store_msg_find(dir, base, p, sizeof(p));
		if (expunge_row(a, mb.id, uids[i], modseq, base, err_r) < 0) {
			rc = -1;
			goto out;
		}
		if ((paths[np] = strdup(p)) == NULL) {
			rc = store_errf(a, err_r, ENOMEM, "expunge");
			goto out;
		}
		np++;
	}
	if (np > 0 && set_highestmodseq(a, mb.id, modseq, err_r) < 0) {
		rc = -1;
		goto out;
	}
	if (store_db_commit(a) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "commit expunge");
		goto out;
	}
	rc = (int)np;
	if (files_r != NULL && np > 0) {
		*files_r = paths;   /* NULL-terminated: calloc'd with room for one more */
		paths = NULL;
		np = 0;
	}
	for (size_t i = 0; i < np; i++)
		unlink(paths[i]);
out:
	store_finalize(a, sel);
	if (rc < 0)
		db_rollback(a);
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

/* Maildir info suffix ":2,FRST" to store flags. */
unsigned store_flags_from_name(const char *name)
{
	static const char letters[] = "SRFTD";   /* bit i of enum store_flag */
	const char *info = strstr(name, ":2,");
	unsigned f = 0;
	for (const char *p = info ? info + 3 : ""; *p; p++) {
		const char *l = strchr(letters, *p);
		if (l != NULL)
			f |= 1u << (l - letters);
	}
	return f;
}

/* Order messages by file name. */
static int msg_name_cmp(const void *x, const void *y)
{
	return strcmp(((const struct store_msg_info *)x)->filename,
		      ((const struct store_msg_info *)y)->filename);
}

/* A file of new/ or cur/ the index does not know, waiting to be adopted. */
struct sync_orphan {
	char *name;     /* its name in new/ or cur/ */
	uint32_t uid;   /* the UID its name carries, or 0 */
	int in_new;
	int left;       /* not adopted under its name's UID: adopted under a fresh one */
};

/* How far above UIDNEXT a name's UID is believed (a crash takes back at most the commits since
 * the WAL's last sync): a ",U=" written by another program (mbsync's, in a Maildir copied in)
 * cannot push UIDNEXT toward the end of the 32-bit range. */
#define STORE_ADOPT_UID_AHEAD (1u << 20)

/* Adopt one unknown file of new/ or cur/ (dir is the mailbox directory), or finish its
 * interrupted expunge. by_name: only under the UID its name carries, and only when that is not
 * below UIDNEXT (else 1: left for the second pass); otherwise under a fresh UID. 0 done (or
 * nothing to do), 1 left, -1 error. */
static int sync_adopt(struct store_account *a, int64_t box_id, const char *dir,
		      const struct sync_orphan *o, int by_name, const char **err_r)
{
	char path[STORE_PATH_MAX], base[STORE_PATH_MAX];
	struct stat st;
	uint32_t want = 0, next;
	if (by_name) {
		if (o->uid == 0 || store_uidnext(a, box_id, &next, err_r) < 0)
			return o->uid == 0 ? 1 : -1;
		if (o->uid < next || o->uid - next >= STORE_ADOPT_UID_AHEAD)
			return 1;
		want = o->uid;
	}
	if (path_fmt(path, sizeof(path), "%s/%s/%s", dir, o->in_new ? "new" : "cur", o->name) < 0)
		return 0;
	snprintf(base, sizeof(base), "%s", o->name);
	char *colon = o->in_new ? NULL : strchr(base, ':');
	if (colon)
		*colon = '\0';
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;   /* gone meanwhile, or not a message */
	if (store_was_expunged(a, box_id, base)) {
		unlink(path);   /* expunged, the unlink was cut short by a crash */
		return 0;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return store_errf(a, err_r, errno, "sync: open %s", o->name);
	int64_t wire = wire_size_fd(fd);
	int e = errno;
	close(fd);
	if (wire < 0)
		return store_errf(a, err_r, e, "sync: read %s", o->name);
	return store_index_insert_at(a, box_id, base, o->in_new,
				     o->in_new ? 0 : store_flags_from_name(o->name), st.st_mtime,
				     (uint64_t)st.st_size, (uint64_t)wire, want, NULL, err_r);
}

/* Orphans with a UID in their names first, by that UID (so each gets it back while it is not
 * below UIDNEXT), then the others by name: the order of the two passes of adoption. */
static int orphan_cmp(const void *x, const void *y)
{
	const struct sync_orphan *a = x, *b = y;
	if ((a->uid == 0) != (b->uid == 0))
		return a->uid == 0 ? 1 : -1;
	if (a->uid != b->uid)
		return a->uid < b->uid ? -1 : 1;
	return strcmp(a->name, b->name);
}

/* Walk new/ or cur/: mark (seen[i]) files the index knows, give stale cur/ suffixes the
 * index's flags, list the rest in *orph (adopted after both directories were read). rows is
 * sorted by file name. 0 ok, -1 error. */
static int sync_dir(struct store_account *a, const char *dir, int in_new,
		    struct store_msg_info *rows, size_t n, char *seen, struct sync_orphan **orph,
		    size_t *norph, size_t *cap, const char **err_r)
{
	char sub[STORE_PATH_MAX];
	if (path_fmt(sub, sizeof(sub), "%s/%s", dir, in_new ? "new" : "cur") < 0)
		return store_errf(a, err_r, errno, "sync");
	DIR *d = opendir(sub);
	if (d == NULL)   /* never treat an unreadable directory as empty: that drops rows */
		return store_errf(a, err_r, errno, "sync: open %s/", in_new ? "new" : "cur");
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		struct store_msg_info key;
		if (e->d_name[0] == '.')
			continue;
		snprintf(key.filename, sizeof(key.filename), "%s", e->d_name);
		char *colon = in_new ? NULL : strchr(key.filename, ':');
		if (colon)
			*colon = '\0';
		struct store_msg_info *k = n ? bsearch(&key, rows, n, sizeof(*rows), msg_name_cmp)
					     : NULL;
		if (k == NULL) {
			if (*norph == *cap) {
				size_t nc = *cap ? *cap * 2 : 16;
				struct sync_orphan *no = realloc(*orph, nc * sizeof(*no));
				if (no == NULL) {
					rc = store_errf(a, err_r, ENOMEM, "sync");
					break;
				}
				*orph = no;
				*cap = nc;
			}
			struct sync_orphan *o = &(*orph)[*norph];
			if ((o->name = strdup(e->d_name)) == NULL) {
				rc = store_errf(a, err_r, ENOMEM, "sync");
				break;
			}
			o->uid = store_uid_from_name(key.filename);
			o->in_new = in_new;
			(*norph)++;
			continue;
		}
		seen[k - rows] = 1;
		char want[STORE_PATH_MAX], have[STORE_PATH_MAX];
		if (!in_new && !k->in_new &&
		    store_msg_path(dir, k->filename, 0, k->flags, want, sizeof(want)) == 0 &&
		    path_fmt(have, sizeof(have), "%s/%s", sub, e->d_name) == 0 &&
		    strcmp(want, have) != 0)
			(void)rename_noreplace(have, want);   /* best effort; the index wins */
	}
	closedir(d);
	return rc;
}

/* Remove tmp/ files older than STORE_TMP_STALE (a crash mid-delivery). Best effort. */
static void sync_clean_tmp(const char *dir)
{
	char sub[STORE_PATH_MAX];
	struct stat st;
	if (path_fmt(sub, sizeof(sub), "%s/tmp", dir) < 0)
		return;
	DIR *d = opendir(sub);
	if (d == NULL)
		return;
	time_t now = time(NULL);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' &&
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && now - st.st_mtime > STORE_TMP_STALE)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* Reconcile the index with the files: adopt unknown files (a crash between rename and commit),
 * drop rows whose file is gone (recorded as expunged, so IMAP clients hear of it). */
int store_mailbox_sync(struct store_account *a, const char *box, const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[STORE_PATH_MAX], *seen = NULL;
	struct store_msg_info *rows = NULL;
	if (mailbox_need(a, box, &mb, err_r) < 0)
		return -1;
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0)
		return store_errf(a, err_r, 0, "sync: mailbox name has no directory");
	if (store_db_begin(a) != SQLITE_OK) {
		store_dbfail(a, err_r, "sync: lock index");
		db_rollback(a);
		return -1;
	}
	int n = store_message_list(a, box, &rows, err_r);   /* under the lock */
	int rc = n < 0 ? -1 : 0;
	if (rc == 0 && (seen = calloc((size_t)n + 1, 1)) == NULL)
		rc = store_errf(a, err_r, ENOMEM, "sync");
	if (rc == 0 && n > 1)
		qsort(rows, (size_t)n, sizeof(*rows), msg_name_cmp);
	/* new/ before cur/: a file moving new/ -> cur/ meanwhile is met at least once */
	struct sync_orphan *orph = NULL;
	size_t norph = 0, cap = 0;
	if (rc == 0)
		rc = sync_dir(a, dir, 1, rows, (size_t)n, seen, &orph, &norph, &cap, err_r);
	if (rc == 0)
		rc = sync_dir(a, dir, 0, rows, (size_t)n, seen, &orph, &norph, &cap, err_r);
	if (rc == 0 && norph > 1)
		qsort(orph, norph, sizeof(*orph), orphan_cmp);
	/* first each file whose name carries a UID not yet given (the rows of an APPEND or a
	 * delivery a power cut took back: the files were synced before the answer, the WAL was
	 * not), in UID order; then the rest under fresh UIDs */
	for (size_t i = 0; rc == 0 && i < norph; i++) {
		rc = sync_adopt(a, mb.id, dir, &orph[i], 1, err_r);
		orph[i].left = rc == 1;
		rc = rc < 0 ? -1 : 0;
	}
	for (size_t i = 0; rc == 0 && i < norph; i++)
		if (orph[i].left)
			rc = sync_adopt(a, mb.id, dir, &orph[i], 0, err_r);
	for (size_t i = 0; i < norph; i++)
		free(orph[i].name);
	free(orph);
	uint64_t modseq = 0;
	for (int i = 0; rc == 0 && i < n; i++) {
		if (seen[i])
			continue;
		if (modseq == 0) {
			struct store_mailbox_info now;
			if ((rc = mailbox_need(a, box, &now, err_r)) < 0)
				break;
			modseq = now.highestmodseq + 1;
		}
		rc = expunge_row(a, mb.id, rows[i].uid, modseq, rows[i].filename, err_r);
	}
	if (rc == 0 && modseq != 0)
		rc = set_highestmodseq(a, mb.id, modseq, err_r);
	free(rows);
	free(seen);
	if (rc == 0 && store_db_commit(a) != SQLITE_OK)
		rc = store_dbfail(a, err_r, "sync: commit");
	if (rc < 0) {
		db_rollback(a);
		return -1;
	}
	sync_clean_tmp(dir);
	return 0;
}
