/* store-private.h - internals shared by the Maildir backend's files. */
#ifndef POSTINO_STORE_PRIVATE_H
#define POSTINO_STORE_PRIVATE_H

#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "sqldb.h"
#include "store.h"

#define STORE_PATH_MAX 4096    /* PATH_MAX: longer paths fail in the kernel anyway */

struct store_account {
	char root[4096];
	sqlite3 *db;
	char err[512];
	int64_t synced[8];     /* mailbox ids this handle has reconciled (store_deliver) */
	size_t nsynced;
	uint64_t db_id[3];     /* index.db's file (device, inode, birth time in ns; 0s unknown):
				* names the account in the process-wide record of reconciled
				* mailboxes (sync_once), so a file made again is a new account */
	struct sqldb_cache stc;  /* prepared statements kept for reuse (store_prepare) */
	uint64_t busy_since_us;   /* when the current wait for the write lock began (store_busy) */
	unsigned shared_refs;  /* > 0: shared by that many sessions (store_account_open_shared) */
	int wal_big;           /* shared handle: the WAL had grown to a checkpoint's size at its
				* last commit (store_db_quick_write) */
	struct store_account *shared_next;
	dev_t lent_dev;        /* a lent handle (store_account_borrow): index.db's file when opened */
	ino_t lent_ino;
	int unsynced;          /* commits do not sync the WAL (store_db_commits) */
};

/* sqlite3_prepare_v2 on the account's index through its statement cache (sqldb_prepare); give
 * it back with store_finalize (reset and kept, or finalized). */
int store_prepare(struct store_account *a, const char *sql, int len, sqlite3_stmt **st_r,
		  const char **tail);
void store_finalize(struct store_account *a, sqlite3_stmt *st);
const char *store_special_static(const char *v);
int store_mailbox_lookup(struct store_account *a, const char *box, struct store_mailbox_info *info,
			 const char **err_r);
int store_box_dir(const struct store_account *a, const char *box, char *out, size_t outlen);
int store_mkdir_p(const char *path);
int store_maildir_make(const char *dir);
int store_fail(struct store_account *a, const char **err_r, const char *what);
int store_dbfail(struct store_account *a, const char **err_r, const char *what);
/* BEGIN IMMEDIATE, trying again while another process holds the write lock: an SQLite code. */
int store_db_begin(struct store_account *a);
/* COMMIT (a cached statement): an SQLite code. */
int store_db_commit(struct store_account *a);
/* End a read transaction the caller has open (store_read_begin; none in a write transaction):
 * before a write on the same handle, whose snapshot must be the newest, and before a PRAGMA
 * synchronous, which SQLite refuses inside a transaction. */
void store_read_leave(struct store_account *a);
/* Whether this handle's commits sync the WAL: STORE_COMMITS_SYNCED (SQLite's sync at each
 * commit; the default every write relies on unless it says otherwise) or
 * STORE_COMMITS_UNSYNCED (no sync: the caller syncs with store_wal_sync before it answers, or
 * the change may be lost to a power cut, as flags, \Recent and wire sizes may). A read
 * transaction the caller has open is ended first, since SQLite refuses the change inside a
 * transaction; nothing is done when the handle is in that mode already or inside a write. */
enum store_commits { STORE_COMMITS_SYNCED, STORE_COMMITS_UNSYNCED };
void store_db_commits(struct store_account *a, enum store_commits how);
/* BEGIN IMMEDIATE without waiting for the lock (SQLITE_BUSY when another holds it); a read
 * transaction the caller has open (store_read_begin) is ended first. An SQLite code. */
int store_db_try_begin(struct store_account *a);
/* Sync the index's WAL, making what this handle committed with synchronous=NORMAL durable.
 * 0 ok, -1 (errno set). */
int store_wal_sync(struct store_account *a);
/* 1 if a commit on this handle would not checkpoint (see store_set_flags_nowait). */
int store_db_quick_write(struct store_account *a);
void store_maildir_name(char *out, size_t outlen, uint64_t size);
int store_index_insert(struct store_account *a, int64_t box_id, const char *fname, int in_new,
		       unsigned flags, time_t internaldate, uint64_t size, uint64_t wire_size,
		       uint32_t *uid_r, const char **err_r);
/* store_index_insert under the UID want, which must not be below UIDNEXT (UIDNEXT then becomes
 * want + 1; below it is an error: the file's name would carry a UID its row does not have);
 * want 0 is UIDNEXT. */
int store_index_insert_at(struct store_account *a, int64_t box_id, const char *fname, int in_new,
			  unsigned flags, time_t internaldate, uint64_t size, uint64_t wire_size,
			  uint32_t want, uint32_t *uid_r, const char **err_r);
/* A mailbox's UIDNEXT, read inside the caller's write transaction. 0 ok, -1 error. */
int store_uidnext(struct store_account *a, int64_t box_id, uint32_t *uidnext_r,
		  const char **err_r);
/* The final name of a message the index commits without syncing its WAL: "<base>,U=<uid>".
 * The UID in the name is what lets the mailbox's reconciling give the file back the UID the
 * client was told, should a power cut take the unsynced commit away (store_mailbox_sync).
 * 0 ok, -1 too long. */
int store_name_with_uid(char *out, size_t outlen, const char *base, uint32_t uid);
/* The UID a file name carries (",U=<n>" before any ":2," info), or 0 when it has none. */
uint32_t store_uid_from_name(const char *name);
unsigned store_flags_from_name(const char *name);
/* Where a message file should be: new/<base>, or cur/<base>:2,<flag letters>. */
int store_msg_path(const char *dir, const char *base, int in_new, unsigned flags, char *out,
		   size_t outlen);
/* Find a message file by base name wherever it is. 0 found (path in out), -1 not. */
int store_msg_find(const char *dir, const char *base, char *out, size_t outlen);

void store_structure_save(struct store_account *a, int64_t box_id, uint32_t uid,
			  const struct store_structure *sc);

#endif
