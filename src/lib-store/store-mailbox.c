/* store-mailbox.c - mailboxes beyond delivery: mailbox management, flags and keywords with
 * MODSEQ, copy, append and change tracking.
 *
 * File names: the index keeps a message's base name; the file is new/<base> until its flags are
 * first set, then cur/<base>:2,<FLAGS> with the flag letters in ASCII order, as Maildir wants.
 * The index is committed first and the file renamed after; a crash in between leaves a file whose
 * suffix is stale, which store_message_fd() still finds.
 */
#include "fsutil.h"
#include "imap-mboxname.h"
#include "store-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire.h"

#define STORE_KEYWORDS_MAX 64        /* one bit each in messages.keywords */

/* The Maildir info suffix letters for flags, in ASCII order. */
static void flag_letters(unsigned flags, char out[8])
{
	size_t o = 0;
	if (flags & STORE_F_DRAFT)
		out[o++] = 'D';
	if (flags & STORE_F_FLAGGED)
		out[o++] = 'F';
	if (flags & STORE_F_ANSWERED)
		out[o++] = 'R';
	if (flags & STORE_F_SEEN)
		out[o++] = 'S';
	if (flags & STORE_F_DELETED)
		out[o++] = 'T';
	out[o] = '\0';
}

/* Path of a message file as the index says it should be. */
int store_msg_path(const char *dir, const char *base, int in_new, unsigned flags, char *out,
		    size_t outlen)
{
	char fl[8];
	int n;
	if (in_new) {
		n = snprintf(out, outlen, "%s/new/%s", dir, base);
	} else {
		flag_letters(flags, fl);
		n = snprintf(out, outlen, "%s/cur/%s:2,%s", dir, base, fl);
	}
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Find a message file wherever it is (new/, or cur/ with any suffix). 0 found, -1 not. */
int store_msg_find(const char *dir, const char *base, char *out, size_t outlen)
{
	struct stat st;
	snprintf(out, outlen, "%s/new/%s", dir, base);
	if (stat(out, &st) == 0)
		return 0;
	char cur[4400];
	snprintf(cur, sizeof(cur), "%s/cur", dir);
	DIR *d = opendir(cur);
	if (d == NULL)
		return -1;
	size_t bl = strlen(base);
	struct dirent *e;
	int rc = -1;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, bl) == 0 && (e->d_name[bl] == ':' || e->d_name[bl] == 0)) {
			snprintf(out, outlen, "%s/%s", cur, e->d_name);
			rc = 0;
			break;
		}
	}
	closedir(d);
	return rc;
}

/* Open a listed message. */
int store_message_fd(struct store_account *a, const char *box, const struct store_msg_info *m,
		     const char **err_r)
{
	char dir[4300], p[4700];
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0 ||
	    store_msg_path(dir, m->filename, m->in_new, m->flags, p, sizeof(p)) < 0) {
		*err_r = "bad mailbox name";
		return -1;
	}
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && store_msg_find(dir, m->filename, p, sizeof(p)) == 0)
		fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(a->err, sizeof(a->err), "message file %s: %s", m->filename, strerror(errno));
		*err_r = a->err;
	}
	return fd;
}

/* Keyword id for a name, creating it if `create`. Returns the id, -1 none/full, -2 error. */
int store_keyword_id(struct store_account *a, const char *name, int create, const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT id FROM keywords WHERE name = ? COLLATE NOCASE", -1,
			       &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "keywords") - 1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	int id = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		id = sqlite3_column_int(st, 0);
	store_finalize(a, st);
	if (id >= 0 || !create)
		return id;
	if (store_prepare(a, "INSERT INTO keywords(id, name) SELECT coalesce(max(id) + 1, 0), ?"
			       " FROM keywords HAVING coalesce(max(id) + 1, 0) < 64", -1, &st,
			       NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "keywords") - 1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "add keyword") - 1;
	if (sqlite3_changes(a->db) == 0)
		return -1;   /* all 64 in use */
	return store_keyword_id(a, name, 0, err_r);
}

/* Names of all keywords: cb(ctx, id, name). Returns count or -1. */
int store_keyword_list(struct store_account *a, void (*cb)(void *ctx, int id, const char *name),
		       void *ctx, const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT id, name FROM keywords ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return store_dbfail(a, err_r, "keywords");
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		cb(ctx, sqlite3_column_int(st, 0), (const char *)sqlite3_column_text(st, 1));
		n++;
	}
	store_finalize(a, st);
	return n;
}

/* Set flags and keywords of several messages in one transaction with one new MODSEQ; then
 * rename their files to carry the flags. changes[i].uid selects; unknown UIDs are skipped.
 * On success *modseq_r is the MODSEQ given to the changed messages. */
static int set_flags_txn(struct store_account *a, const char *box,
			 struct store_flag_change *ch, size_t n, uint64_t *modseq_r, int nowait,
			 const char **err_r);

/* See store.h. A cache of what the files hold: synchronous=NORMAL like flag changes. */
int store_set_wire_sizes(struct store_account *a, const char *box, const uint32_t *uids,
			 const uint64_t *sizes, size_t n, const char **err_r)
{
	struct store_mailbox_info mb;
	sqlite3_stmt *upd = NULL;
	int r = store_mailbox_lookup(a, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0)
			*err_r = "no such mailbox";
		return -1;
	}
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	if (store_db_begin(a) != SQLITE_OK) {
		r = store_dbfail(a, err_r, "begin");
		goto out;
	}
	r = 0;
	if (store_prepare(a, "UPDATE messages SET wire_size = ? WHERE mailbox_id = ? AND uid = ?",
			  -1, &upd, NULL) != SQLITE_OK)
		r = store_dbfail(a, err_r, "prepare wire size");
	for (size_t i = 0; r == 0 && i < n; i++) {
		sqlite3_reset(upd);
		sqlite3_bind_int64(upd, 1, (int64_t)sizes[i]);
		sqlite3_bind_int64(upd, 2, mb.id);
		sqlite3_bind_int64(upd, 3, uids[i]);
		if (sqlite3_step(upd) != SQLITE_DONE)
			r = store_dbfail(a, err_r, "update wire size");
	}
	store_finalize(a, upd);
	if (r == 0 && store_db_commit(a) != SQLITE_OK)
		r = store_dbfail(a, err_r, "commit wire size");
	if (r < 0)
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
out:
	store_db_commits(a, STORE_COMMITS_SYNCED);
	return r < 0 ? -1 : 0;
}

/* Flag changes are not covered by "250 means durable": their commit does not wait for the
 * disk (WAL with synchronous=NORMAL survives a crash of the process, may lose the last flag
 * changes on power loss); deliveries keep synchronous=FULL. */
int store_set_flags(struct store_account *a, const char *box, struct store_flag_change *ch,
		    size_t n, uint64_t *modseq_r, const char **err_r)
{
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	int r = set_flags_txn(a, box, ch, n, modseq_r, 0, err_r);
	store_db_commits(a, STORE_COMMITS_SYNCED);
	return r;
}

/* See store.h. */
int store_set_flags_nowait(struct store_account *a, const char *box,
			   struct store_flag_change *ch, size_t n, uint64_t *modseq_r,
			   const char **err_r)
{
	if (!store_db_quick_write(a))
		return STORE_WOULD_WAIT;
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	int r = set_flags_txn(a, box, ch, n, modseq_r, 1, err_r);
	store_db_commits(a, STORE_COMMITS_SYNCED);
	return r;
}

/* The transaction of store_set_flags. The new MODSEQ and every message's flags are read under
 * the write lock: read before it, a concurrent STORE could commit in between, and this one
 * would then give a message a MODSEQ below the one it already had, or write back flags the
 * other had just changed. */
static int set_flags_txn(struct store_account *a, const char *box,
			 struct store_flag_change *ch, size_t n, uint64_t *modseq_r, int nowait,
			 const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300];
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0) {
		*err_r = "no such mailbox";
		return -1;
	}
	/* renames to do after the commit; paths are strdup'd, so a STORE on many messages costs
	 * a few hundred bytes each, not two path buffers */
	struct ren {
		char *from, *to;
	} *rens = calloc(n + 1, sizeof(*rens));
	if (rens == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	size_t nren = 0;
	sqlite3_stmt *sel = NULL, *upd = NULL;
	int b = nowait ? store_db_try_begin(a) : store_db_begin(a);
	if (b != SQLITE_OK) {
		free(rens);
		if (nowait && (b & 0xff) == SQLITE_BUSY)
			return STORE_WOULD_WAIT;
		return store_dbfail(a, err_r, "begin");
	}
	int rc = 0;
	int r = store_mailbox_lookup(a, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0)
			*err_r = "no such mailbox";
		rc = -1;
		goto out;
	}
	uint64_t modseq = mb.highestmodseq + 1;
	if (store_prepare(a, "SELECT filename, in_new, flags, keywords, modseq FROM messages "
			       "WHERE mailbox_id = ? AND uid = ?", -1, &sel, NULL) != SQLITE_OK ||
	    store_prepare(a, "UPDATE messages SET flags = ?, keywords = ?, modseq = ?, "
			       "in_new = 0 WHERE mailbox_id = ? AND uid = ?", -1, &upd, NULL) !=
		    SQLITE_OK) {
		rc = store_dbfail(a, err_r, "prepare");
		goto out;
	}
	size_t changed = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_flag_change *c = &ch[i];
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, mb.id);
		sqlite3_bind_int64(sel, 2, c->uid);
		if (sqlite3_step(sel) != SQLITE_ROW) {
			c->result = -1;
			continue;
		}
		const char *base = (const char *)sqlite3_column_text(sel, 0);
		int in_new = sqlite3_column_int(sel, 1);
		unsigned oflags = (unsigned)sqlite3_column_int(sel, 2);
		uint64_t okw = (uint64_t)sqlite3_column_int64(sel, 3);
		uint64_t omodseq = (uint64_t)sqlite3_column_int64(sel, 4);
		unsigned nflags = c->mode == STORE_FLAGS_ADD	? oflags | c->flags
				  : c->mode == STORE_FLAGS_REMOVE ? oflags & ~c->flags
								  : c->flags;
		uint64_t nkw = c->mode == STORE_FLAGS_ADD      ? okw | c->keywords
			       : c->mode == STORE_FLAGS_REMOVE ? okw & ~c->keywords
							       : c->keywords;
		c->flags = oflags;
		c->keywords = okw;
		c->modseq = omodseq;
		c->result = 0;
		if (c->unchangedsince && omodseq > c->unchangedsince) {
			c->result = -2;
			continue;
		}
		if (oflags == nflags && okw == nkw && !in_new)
			continue;
		char from[4700], to[4700];
		store_msg_path(dir, base, in_new, oflags, from, sizeof(from));
		store_msg_path(dir, base, 0, nflags, to, sizeof(to));
		if (strcmp(from, to) != 0) {
			rens[nren].from = strdup(from);
			rens[nren].to = strdup(to);
			if (rens[nren].from == NULL || rens[nren].to == NULL) {
				nren++;
				rc = -1;
				*err_r = "out of memory";
				goto out;
			}
			nren++;
		}
		sqlite3_reset(upd);
		sqlite3_bind_int(upd, 1, (int)nflags);
		sqlite3_bind_int64(upd, 2, (int64_t)nkw);
		sqlite3_bind_int64(upd, 3, (int64_t)modseq);
		sqlite3_bind_int64(upd, 4, mb.id);
		sqlite3_bind_int64(upd, 5, c->uid);
		if (sqlite3_step(upd) != SQLITE_DONE) {
			rc = store_dbfail(a, err_r, "update flags");
			goto out;
		}
		c->flags = nflags;
		c->keywords = nkw;
		c->modseq = modseq;
		c->result = 1;
		changed++;
	}
	if (changed) {
		sqlite3_stmt *hm;
		int hr = store_prepare(a, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", -1,
				       &hm, NULL);
		if (hr == SQLITE_OK) {
			sqlite3_bind_int64(hm, 1, (int64_t)modseq);
			sqlite3_bind_int64(hm, 2, mb.id);
			hr = sqlite3_step(hm) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			store_finalize(a, hm);
		}
		if (hr != SQLITE_OK) {
			rc = store_dbfail(a, err_r, "update modseq");
			goto out;
		}
	}
	if (store_db_commit(a) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "commit flags");
		goto out;
	}
	for (size_t i = 0; i < nren; i++)
		rename(rens[i].from, rens[i].to);   /* best effort: store_message_fd finds stale names */
	*modseq_r = changed ? modseq : mb.highestmodseq;
out:
	if (rc < 0)
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	store_finalize(a, sel);
	store_finalize(a, upd);
	for (size_t i = 0; i < nren; i++) {
		free(rens[i].from);
		free(rens[i].to);
	}
	free(rens);
	return rc;
}

/* Insert a file already in place (inside a transaction) with flags set, under the UID want (0:
 * a fresh one; else the UID its name carries, which must then be UIDNEXT). */
static int insert_with_flags(struct store_account *a, int64_t box_id, const char *base,
			     unsigned flags, uint64_t keywords, time_t date, uint64_t size,
			     uint64_t wire, uint32_t want, uint32_t *uid_r, const char **err_r)
{
	uint32_t uid;
	if (store_index_insert_at(a, box_id, base, flags == 0 && keywords == 0, flags, date, size,
				  wire, want, &uid, err_r) < 0)
		return -1;
	if (keywords) {
		sqlite3_stmt *st;
		store_prepare(a, "UPDATE messages SET keywords = ? WHERE mailbox_id = ? AND "
				   "uid = ?", -1, &st, NULL);
		sqlite3_bind_int64(st, 1, (int64_t)keywords);
		sqlite3_bind_int64(st, 2, box_id);
		sqlite3_bind_int64(st, 3, uid);
		int r = sqlite3_step(st);
		store_finalize(a, st);
		if (r != SQLITE_DONE)
			return store_dbfail(a, err_r, "set keywords");
	}
	*uid_r = uid;
	return 0;
}

/* One message of a MULTIAPPEND on its way in: written to a file without a name in tmp/ (or,
 * where there is no O_TMPFILE, tmp/<base>), then linked (renamed) into place and indexed. */
struct append_stage {
	char base[256];   /* the base name made for it (its name in tmp/ without O_TMPFILE) */
	char name[280];   /* its name in new/ or cur/ and in the index: base,U=<uid> */
	struct store_structure sc;
	uint64_t wire;
	int fd;        /* the unnamed file until it is linked, or -1 */
	int written, placed;
};

/* 1 if a file without a name can be linked through /proc/self/fd (checked once). */
static int append_proc_links(void)
{
	static int links = -1;
	if (links < 0)
		links = access("/proc/self/fd", X_OK) == 0;
	return links;
}

/* Write one message to a file without a name in dir/tmp/ (O_TMPFILE: one inode and, under the
 * lock, one link into new/ or cur/ instead of a name in tmp/ and a rename; imaptest's APPENDs
 * spent 3 % of the workers' CPU creating and renaming those names) or, where the file system
 * has no O_TMPFILE, to dir/tmp/<base>; fsynced, with its structure computed. 0 ok, -1 error. */
static int append_write_tmp(struct store_account *a, const char *dir,
			    const struct store_append_msg *m, struct append_stage *st,
			    const char **err_r)
{
	char tmp[4700];
	store_maildir_name(st->base, sizeof(st->base), m->len);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	errno = 0;
	int fd = append_proc_links() ? open(tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0640) : -1;
	if (fd < 0 && (!append_proc_links() || errno == EOPNOTSUPP || errno == EISDIR ||
		       errno == EINVAL)) {
		snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, st->base);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		st->written = fd >= 0;
	} else if (fd >= 0) {
		st->fd = fd;
	}
	if (fd < 0)
		return store_fail(a, err_r, "create message file");
	/* the internal date as the file's mtime: what the mailbox's reconciling gives a file whose
	 * row a power cut took away (the APPEND's rows are committed without a sync of the WAL) */
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = m->date } };
	if (fs_write_all(fd, m->data, m->len) < 0 || (m->date > 0 && futimens(fd, times) != 0) ||
	    fsync(fd) != 0) {
		int e = errno;
		if (st->fd < 0)
			close(fd);   /* else append_undo closes it */
		errno = e;
		return store_fail(a, err_r, "write message file");
	}
	if (st->fd < 0)
		close(fd);
	/* the POP3 size and the IMAP structure from the message in memory, not read back */
	st->wire = (uint64_t)wire_size_mem(m->data, m->len);
	store_structure_compute_mem(m->data, m->len, &st->sc);
	return 0;
}

/* Remove every file of a failed MULTIAPPEND (tmp/ or moved into place) and free the stages. */
static void append_undo(const char *dir, const struct store_append_msg *m,
			struct append_stage *st, size_t n)
{
	char path[4700], sub[4400];
	int synced_new = 0, synced_cur = 0;
	for (size_t i = 0; i < n; i++) {
		int in_new = m[i].flags == 0 && m[i].keywords == 0;
		if (st[i].placed) {
			if (store_msg_path(dir, st[i].name, in_new, m[i].flags, path,
					   sizeof(path)) == 0)
				unlink(path);
			synced_new |= in_new;
			synced_cur |= !in_new;
		} else if (st[i].written) {
			snprintf(path, sizeof(path), "%s/tmp/%s", dir, st[i].base);
			unlink(path);
		}
		if (st[i].fd >= 0)
			close(st[i].fd);
		store_structure_free(&st[i].sc);
	}
	/* the removals are made durable so a crash cannot bring half a MULTIAPPEND back */
	if (synced_new) {
		snprintf(sub, sizeof(sub), "%s/new", dir);
		fs_fsync_dir(sub);
	}
	if (synced_cur) {
		snprintf(sub, sizeof(sub), "%s/cur", dir);
		fs_fsync_dir(sub);
	}
	free(st);
}

/* In an APPEND's write transaction: \Recent of every message below upto goes to the caller,
 * who learns from where (*from_r). 0 ok, -1 error. */
static int append_claim_recent(struct store_account *a, int64_t box_id, uint32_t upto,
			       uint32_t *from_r, const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT recent_from FROM mailboxes WHERE id = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return store_dbfail(a, err_r, "recent");
	sqlite3_bind_int64(st, 1, box_id);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		*from_r = (uint32_t)sqlite3_column_int64(st, 0);
	store_finalize(a, st);
	if (r != SQLITE_ROW)
		return store_dbfail(a, err_r, "recent");
	if (*from_r >= upto)
		return 0;
	if (store_prepare(a, "UPDATE mailboxes SET recent_from = max(recent_from, ?) WHERE id = ?",
			  -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "claim recent");
	sqlite3_bind_int64(st, 1, upto);
	sqlite3_bind_int64(st, 2, box_id);
	r = sqlite3_step(st);
	store_finalize(a, st);
	return r == SQLITE_DONE ? 0 : store_dbfail(a, err_r, "claim recent");
}

/* MULTIAPPEND, all or nothing; see store.h. */
int store_append_multi(struct store_account *a, const char *box, const struct store_append_msg *m,
		       size_t n, uint32_t *uids_r, uint32_t *uidvalidity_r, const char **err_r)
{
	return store_append_multi_claim(a, box, m, n, uids_r, uidvalidity_r, NULL, err_r);
}

/* See store.h. */
int store_append_multi_claim(struct store_account *a, const char *box,
			     const struct store_append_msg *m, size_t n, uint32_t *uids_r,
			     uint32_t *uidvalidity_r, uint32_t *recent_from_r, const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300], tmp[4700], dst[4700], sub[4400];
	*err_r = NULL;
	if (n == 0) {
		*err_r = "nothing to append";
		return -1;
	}
	int r = store_mailbox_lookup(a, box, &mb, err_r);
	if (r <= 0 || store_box_dir(a, box, dir, sizeof(dir)) < 0) {
		if (r == 0)
			*err_r = "no such mailbox";
		return -1;
	}
	struct append_stage *st = calloc(n, sizeof(*st));
	if (st == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		st[i].fd = -1;
	/* 1: every message durable in tmp/, invisible to everyone */
	for (size_t i = 0; i < n; i++) {
		if (append_write_tmp(a, dir, &m[i], &st[i], err_r) < 0) {
			append_undo(dir, m, st, n);
			return -1;
		}
	}
	/* 2: under the index lock (so a concurrent sync cannot adopt them), into new/ or cur/,
	 * and the rows committed without waiting for the disk (synchronous=NORMAL): the lock is
	 * held for no sync, so other writers of the account (the loop's flag changes and
	 * expunges, deliveries) go on meanwhile */
	store_db_commits(a, STORE_COMMITS_UNSYNCED);
	if (store_db_begin(a) != SQLITE_OK) {
		store_dbfail(a, err_r, "begin append");
		store_db_commits(a, STORE_COMMITS_SYNCED);
		append_undo(dir, m, st, n);
		return -1;
	}
	/* each name carries the UID its row gets: UIDNEXT on, in order, under the lock */
	uint32_t next;
	if (store_uidnext(a, mb.id, &next, err_r) < 0)
		goto fail_db;
	int need_new = 0, need_cur = 0, keyworded = 0;
	for (size_t i = 0; i < n; i++) {
		int in_new = m[i].flags == 0 && m[i].keywords == 0;
		keyworded |= m[i].keywords != 0;
		if (next + i > UINT32_MAX - 1) {
			*err_r = "the mailbox's UIDs are exhausted";
			goto fail_db;
		}
		if (store_name_with_uid(st[i].name, sizeof(st[i].name), st[i].base,
					next + (uint32_t)i) < 0 ||
		    store_msg_path(dir, st[i].name, in_new, m[i].flags, dst, sizeof(dst)) < 0)
			goto fail_move;
		if (st[i].fd >= 0) {
			snprintf(tmp, sizeof(tmp), "/proc/self/fd/%d", st[i].fd);
			if (linkat(AT_FDCWD, tmp, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) < 0)
				goto fail_move;
			close(st[i].fd);
			st[i].fd = -1;
		} else {
			snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, st[i].base);
			if (rename(tmp, dst) < 0)
				goto fail_move;
		}
		st[i].placed = 1;
		need_new |= in_new;
		need_cur |= !in_new;
	}
	/* 3: the index rows in one transaction: UIDs are consecutive and appear together */
	for (size_t i = 0; i < n; i++) {
		if (insert_with_flags(a, mb.id, st[i].name, m[i].flags, m[i].keywords, m[i].date,
				      m[i].len, st[i].wire, next + (uint32_t)i, &uids_r[i],
				      err_r) < 0)
			goto fail_db;
		store_structure_save(a, mb.id, uids_r[i], &st[i].sc);
	}
	if (recent_from_r &&
	    append_claim_recent(a, mb.id, uids_r[n - 1] + 1, recent_from_r, err_r) < 0)
		goto fail_db;
	if (store_db_commit(a) != SQLITE_OK)
		goto fail_db;
	store_db_commits(a, STORE_COMMITS_SYNCED);
	/* 4: after the lock, what makes them count as stored: the directories their names went
	 * into. The rows need no sync of the WAL: each name carries its UID, its flags (cur/'s
	 * ":2," letters) and its internal date (mtime), so should a power cut take the commit
	 * away, the mailbox's reconciling gives the files back their UIDs (store_mailbox_sync).
	 * Keywords are in the rows only: an APPEND with keywords syncs the WAL. A failure takes
	 * them back: the files removed, and the mailbox's reconciling records their rows as
	 * expunged */
	snprintf(sub, sizeof(sub), "%s/new", dir);
	if (need_new && fs_fsync_dir(sub) < 0)
		goto fail_sync;
	snprintf(sub, sizeof(sub), "%s/cur", dir);
	if (need_cur && fs_fsync_dir(sub) < 0)
		goto fail_sync;
	if (keyworded && store_wal_sync(a) < 0)
		goto fail_sync;
	for (size_t i = 0; i < n; i++)
		store_structure_free(&st[i].sc);
	free(st);
	if (uidvalidity_r)
		*uidvalidity_r = mb.uidvalidity;
	return 0;

fail_sync: {
		int e = errno;
		const char *ignored;
		append_undo(dir, m, st, n);
		(void)store_mailbox_sync(a, box, &ignored);
		errno = e;
		return store_fail(a, err_r, "sync the stored message");
	}
fail_move: {
		int e = errno;
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		store_db_commits(a, STORE_COMMITS_SYNCED);
		append_undo(dir, m, st, n);
		errno = e;
		return store_fail(a, err_r, "move message into place");
	}
fail_db:
	if (*err_r == NULL)
		store_dbfail(a, err_r, "commit");
	sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	store_db_commits(a, STORE_COMMITS_SYNCED);
	append_undo(dir, m, st, n);
	return -1;
}

/* APPEND of one message: a MULTIAPPEND of one. */
int store_append(struct store_account *a, const char *box, const char *data, size_t len,
		 unsigned flags, uint64_t keywords, time_t date, uint32_t *uid_r,
		 uint32_t *uidvalidity_r, const char **err_r)
{
	struct store_append_msg m = { .data = data, .len = len, .flags = flags,
				      .keywords = keywords, .date = date };
	return store_append_multi(a, box, &m, 1, uid_r, uidvalidity_r, err_r);
}

/* COPY: hard-link messages into another mailbox under new UIDs, in one transaction.
 * new_uids[i] is 0 for a source UID that did not exist. Returns the number copied or -1. */
int store_copy(struct store_account *a, const char *src, const uint32_t *uids, size_t n,
	       const char *dst, uint32_t *new_uids, uint32_t *dst_uidvalidity_r, const char **err_r)
{
	struct store_mailbox_info smb, dmb;
	char sdir[4300], ddir[4300];
	int r1 = store_mailbox_lookup(a, src, &smb, err_r);
	int r2 = r1 > 0 ? store_mailbox_lookup(a, dst, &dmb, err_r) : 0;
	if (r1 <= 0 || r2 <= 0 || store_box_dir(a, src, sdir, sizeof(sdir)) < 0 ||
	    store_box_dir(a, dst, ddir, sizeof(ddir)) < 0) {
		if (r1 == 0 || r2 == 0)
			*err_r = "no such mailbox";
		return -1;
	}
	char **made = calloc(n + 1, sizeof(*made));   /* links made, for the rollback */
	if (made == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	size_t nmade = 0;
	int rc = 0;
	*err_r = NULL;
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		free(made);
		return store_dbfail(a, err_r, "begin copy");
	}
	sqlite3_stmt *sel = NULL;
	store_prepare(a, "SELECT filename, in_new, flags, keywords, internaldate, size, "
			   "wire_size FROM messages WHERE mailbox_id = ? AND uid = ?", -1, &sel, NULL);
	for (size_t i = 0; i < n; i++) {
		new_uids[i] = 0;
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, smb.id);
		sqlite3_bind_int64(sel, 2, uids[i]);
		if (sqlite3_step(sel) != SQLITE_ROW)
			continue;
		char from[4700], base[256];
		const char *obase = (const char *)sqlite3_column_text(sel, 0);
		int in_new = sqlite3_column_int(sel, 1);
		unsigned flags = (unsigned)sqlite3_column_int(sel, 2);
		uint64_t kw = (uint64_t)sqlite3_column_int64(sel, 3);
		time_t date = (time_t)sqlite3_column_int64(sel, 4);
		uint64_t size = (uint64_t)sqlite3_column_int64(sel, 5);
		uint64_t wire = (uint64_t)sqlite3_column_int64(sel, 6);
		store_msg_path(sdir, obase, in_new, flags, from, sizeof(from));
		if (access(from, F_OK) != 0 && store_msg_find(sdir, obase, from, sizeof(from)) < 0)
			continue;
		store_maildir_name(base, sizeof(base), size);
		char to[4700];
		store_msg_path(ddir, base, flags == 0 && kw == 0, flags, to, sizeof(to));
		if (link(from, to) < 0) {
			rc = store_fail(a, err_r, "link message");
			goto out;
		}
		made[nmade] = strdup(to);
		if (made[nmade] == NULL) {
			unlink(to);
			rc = -1;
			*err_r = "out of memory";
			goto out;
		}
		nmade++;
		if (insert_with_flags(a, dmb.id, base, flags, kw, date, size, wire, 0, &new_uids[i],
				      err_r) < 0) {
			rc = -1;
			goto out;
		}
		sqlite3_stmt *cs;
		if (store_prepare(a, "INSERT OR REPLACE INTO structure(mailbox_id, uid, "
				       "bodystructure, body, envelope, header) SELECT ?, ?, "
				       "bodystructure, body, envelope, header FROM structure WHERE "
				       "mailbox_id = ? AND uid = ?", -1, &cs, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(cs, 1, dmb.id);
			sqlite3_bind_int64(cs, 2, new_uids[i]);
			sqlite3_bind_int64(cs, 3, smb.id);
			sqlite3_bind_int64(cs, 4, uids[i]);
			sqlite3_step(cs);
			store_finalize(a, cs);
		}
		rc++;
	}
	char d1[4400], d2[4400];
	snprintf(d1, sizeof(d1), "%s/new", ddir);
	snprintf(d2, sizeof(d2), "%s/cur", ddir);
	if (fs_fsync_dir(d1) < 0 || fs_fsync_dir(d2) < 0) {
		rc = store_fail(a, err_r, "fsync");
		goto out;
	}
	if (store_db_commit(a) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "commit copy");
		goto out;
	}
	if (dst_uidvalidity_r)
		*dst_uidvalidity_r = dmb.uidvalidity;
out:
	store_finalize(a, sel);
	if (rc < 0) {
		if (*err_r == NULL)
			store_dbfail(a, err_r, "copy");
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		for (size_t i = 0; i < nmade; i++)
			unlink(made[i]);
	}
	for (size_t i = 0; i < nmade; i++)
		free(made[i]);
	free(made);
	return rc;
}

/* CREATE. 1 created, 0 exists, -1 error. */
int store_mailbox_create(struct store_account *a, const char *name, const char *special_use,
			 const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300];
	if (!imap_mboxname_valid(name) || strcasecmp(name, "INBOX") == 0 ||
	    store_box_dir(a, name, dir, sizeof(dir)) < 0) {
		*err_r = "invalid mailbox name";
		return strcasecmp(name, "INBOX") == 0 ? 0 : -1;
	}
	int r = store_mailbox_lookup(a, name, &mb, err_r);
	if (r != 0)
		return r < 0 ? -1 : 0;
	errno = 0;
	if (store_maildir_make(dir) < 0)
		return store_fail(a, err_r, "create mailbox directory");
	sqlite3_stmt *st;
	/* UIDVALIDITY: now, but above every value the account ever gave out (RFC 3501 2.3.1.1);
	 * the CAST matters: SQLite's max() ranks any text above every integer */
	if (store_prepare(a, "INSERT INTO mailboxes(name, subscribed, uidvalidity, special_use) "
			       "VALUES (?, 0, max(CAST(strftime('%s','now') AS INTEGER),"
			       " (SELECT coalesce(max(uidvalidity), 0) + 1 FROM mailboxes),"
			       " (SELECT coalesce(max(value), 0) + 1 FROM uidvalidity_last)), ?)",
			  -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "create mailbox");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	if (special_use)
		sqlite3_bind_text(st, 2, special_use, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 2);
	r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "create mailbox");
	return 1;
}

/* rm -r of a Maildir's cur/ new/ tmp/ and the directory itself (nothing else is ours). */
static void maildir_remove(const char *dir)
{
	static const char *sub[] = { "cur", "new", "tmp" };
	char p[4400];
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, sub[i]);
		DIR *d = opendir(p);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
		rmdir(p);
	}
	rmdir(dir);
}

/* DELETE. 1 deleted, 0 no such mailbox, -1 error (INBOX cannot be deleted). */
int store_mailbox_delete(struct store_account *a, const char *name, const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300];
	if (strcasecmp(name, "INBOX") == 0) {
		*err_r = "INBOX cannot be deleted";
		return -1;
	}
	int r = store_mailbox_lookup(a, name, &mb, err_r);
	if (r <= 0)
		return r;
	if (store_box_dir(a, name, dir, sizeof(dir)) < 0) {
		*err_r = "invalid mailbox name";
		return -1;
	}
	char sql[200];
	snprintf(sql, sizeof(sql), "BEGIN IMMEDIATE; DELETE FROM messages WHERE mailbox_id = %lld; "
		 "DELETE FROM expunged WHERE mailbox_id = %lld; DELETE FROM mailboxes WHERE id = %lld;"
		 " COMMIT;", (long long)mb.id, (long long)mb.id, (long long)mb.id);
	if (sqlite3_exec(a->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "delete mailbox");
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	maildir_remove(dir);
	return 1;
}

/* RENAME a mailbox and its children. 1 ok, 0 source missing, -2 target exists, -1 error.
 * Renaming INBOX moves its messages into the new mailbox and leaves INBOX empty (RFC 3501). */
int store_mailbox_rename(struct store_account *a, const char *from, const char *to,
			 const char **err_r)
{
	struct store_mailbox_info mb, tmb;
	if (!imap_mboxname_valid(to) || strcasecmp(to, "INBOX") == 0) {
		*err_r = "invalid target name";
		return -1;
	}
	int r = store_mailbox_lookup(a, from, &mb, err_r);
	if (r <= 0)
		return r;
	if (store_mailbox_lookup(a, to, &tmb, err_r) != 0)
		return -2;
	if (strcasecmp(from, "INBOX") == 0) {
		if (store_mailbox_create(a, to, NULL, err_r) < 0)
			return -1;
		struct store_msg_info *m;
		int n = store_message_list(a, "INBOX", &m, err_r);
		if (n < 0)
			return -1;
		uint32_t *uids = calloc((size_t)n + 1, sizeof(*uids) * 2);
		if (uids == NULL) {
			free(m);
			return -1;
		}
		for (int i = 0; i < n; i++)
			uids[i] = m[i].uid;
		free(m);
		int c = store_copy(a, "INBOX", uids, (size_t)n, to, uids + n, NULL, err_r);
		if (c >= 0 && store_expunge(a, "INBOX", uids, (size_t)n, err_r) < 0)
			c = -1;
		free(uids);
		return c < 0 ? -1 : 1;
	}
	/* every mailbox named `from` or under `from/` */
	struct store_mailbox_info *boxes;
	int n = store_mailbox_list(a, &boxes, err_r);
	if (n < 0)
		return -1;
	size_t fl = strlen(from);
	int rc = 1;
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		free(boxes);
		return store_dbfail(a, err_r, "begin rename");
	}
	struct pair {
		char from[4300], to[4300];
	} *moves = calloc((size_t)n + 1, sizeof(*moves));
	size_t nm = 0;
	for (int i = 0; i < n && moves; i++) {
		const char *name = boxes[i].name;
		if (strncmp(name, from, fl) != 0 || (name[fl] != '\0' && name[fl] != '/'))
			continue;
		char newname[600];
		snprintf(newname, sizeof(newname), "%s%s", to, name + fl);
		if (!imap_mboxname_valid(newname) ||
		    store_box_dir(a, name, moves[nm].from, sizeof(moves[nm].from)) < 0 ||
		    store_box_dir(a, newname, moves[nm].to, sizeof(moves[nm].to)) < 0) {
			*err_r = "resulting name too long or invalid";
			rc = -1;
			break;
		}
		sqlite3_stmt *st;
		store_prepare(a, "UPDATE mailboxes SET name = ? WHERE id = ?", -1, &st, NULL);
		sqlite3_bind_text(st, 1, newname, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, boxes[i].id);
		int s = sqlite3_step(st);
		store_finalize(a, st);
		if (s != SQLITE_DONE) {
			rc = store_dbfail(a, err_r, "rename mailbox");
			break;
		}
		nm++;
	}
	free(boxes);
	if (moves == NULL)
		rc = -1;
	/* directories first (a failure rolls everything back), then the commit */
	size_t done = 0;
	for (; rc == 1 && done < nm; done++) {
		if (rename(moves[done].from, moves[done].to) < 0) {
			rc = store_fail(a, err_r, "rename mailbox directory");
			break;
		}
	}
	if (rc == 1 && store_db_commit(a) != SQLITE_OK)
		rc = store_dbfail(a, err_r, "commit rename");
	if (rc != 1) {
		while (done-- > 0)
			rename(moves[done].to, moves[done].from);
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	}
	free(moves);
	return rc;
}

/* SUBSCRIBE / UNSUBSCRIBE. 1 ok, 0 no such mailbox. */
int store_mailbox_subscribe(struct store_account *a, const char *name, int on, const char **err_r)
{
	sqlite3_stmt *st;
	const char *n = strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
	if (on) {
		struct store_mailbox_info mb;
		int r = store_mailbox_lookup(a, n, &mb, err_r);
		if (r <= 0)
			return r;
	}
	if (store_prepare(a, on ? "INSERT OR IGNORE INTO subscriptions(name) VALUES (?)"
			       : "DELETE FROM subscriptions WHERE name = ?", -1, &st,
			  NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "subscribe");
	sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "subscribe");
	return 1;
}

/* See store.h. */
int store_subscriptions_orphaned(struct store_account *a, char ***names_r, const char **err_r)
{
	sqlite3_stmt *st;
	*names_r = NULL;
	if (store_prepare(a, "SELECT name FROM subscriptions WHERE name NOT IN"
			       " (SELECT name FROM mailboxes) ORDER BY name", -1, &st,
			  NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "list subscriptions");
	char **v = NULL;
	int n = 0, r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		char **nv = realloc(v, (size_t)(n + 2) * sizeof(*v));
		if (nv == NULL)
			break;
		v = nv;
		v[n] = strdup((const char *)sqlite3_column_text(st, 0));
		if (v[n] == NULL)
			break;
		v[++n] = NULL;
	}
	store_finalize(a, st);
	if (r != SQLITE_DONE) {
		for (int i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return store_dbfail(a, err_r, "list subscriptions");
	}
	*names_r = v;
	return n;
}

/* See store.h. */
int store_recent(struct store_account *a, const char *box, uint32_t claim_upto,
		 uint32_t *from_r, uint32_t *count_r, const char **err_r)
{
	sqlite3_stmt *st;
	const char *name = strcasecmp(box, "INBOX") == 0 ? "INBOX" : box;
	int began = 0;
	int rc = -1;
again:
	if (store_prepare(a, "SELECT b.recent_from, (SELECT count(*) FROM messages m WHERE"
			       " m.mailbox_id = b.id AND m.uid >= b.recent_from) FROM mailboxes b"
			       " WHERE b.name = ?", -1, &st, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "recent");
		goto out;
	}
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		*from_r = (uint32_t)sqlite3_column_int64(st, 0);
		if (count_r)
			*count_r = (uint32_t)sqlite3_column_int64(st, 1);
	}
	store_finalize(a, st);
	if (r != SQLITE_ROW) {
		if (r == SQLITE_DONE)
			*err_r = "no such mailbox";
		else
			store_dbfail(a, err_r, "recent");
		goto out;
	}
	rc = 0;
	/* the write lock only when there is something to claim (a write of another session may
	 * hold it while it syncs), then the look again under it. A read transaction of the
	 * caller's (store_read_begin) ends first: its snapshot may be older than the last commit,
	 * and SQLite cannot make such a snapshot a write transaction. */
	if (claim_upto > *from_r && !began)
		store_read_leave(a);
	if (claim_upto > *from_r && !began && sqlite3_get_autocommit(a->db)) {
		/* \Recent is a hint to one session (RFC 3501 2.3.2): its claim does not wait for
		 * the disk, as flag changes do not (store_set_flags) */
		store_db_commits(a, STORE_COMMITS_UNSYNCED);
		if (store_db_begin(a) != SQLITE_OK) {
			rc = store_dbfail(a, err_r, "begin recent");
			store_db_commits(a, STORE_COMMITS_SYNCED);
			return rc;
		}
		began = 1;
		rc = -1;
		goto again;
	}
	if (claim_upto > *from_r) {
		if (store_prepare(a, "UPDATE mailboxes SET recent_from = max(recent_from, ?)"
				       " WHERE name = ?", -1, &st, NULL) != SQLITE_OK) {
			rc = store_dbfail(a, err_r, "claim recent");
			goto out;
		}
		sqlite3_bind_int64(st, 1, claim_upto);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = store_dbfail(a, err_r, "claim recent");
		store_finalize(a, st);
	}
out:
	if (began) {
		if (rc == 0 && store_db_commit(a) != SQLITE_OK)
			rc = store_dbfail(a, err_r, "commit recent");
		if (!sqlite3_get_autocommit(a->db))
			sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		store_db_commits(a, STORE_COMMITS_SYNCED);
	}
	return rc;
}

/* Changes since a MODSEQ: messages changed or added (cb_msg) and UIDs expunged (cb_expunged).
 * Returns 0 or -1. */
int store_changes_since(struct store_account *a, const char *box, uint64_t modseq,
			void (*cb_msg)(void *ctx, const struct store_msg_info *m),
			void (*cb_expunged)(void *ctx, uint32_t uid), void *ctx, const char **err_r)
{
	struct store_mailbox_info mb;
	int r = store_mailbox_lookup(a, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0)
			*err_r = "no such mailbox";
		return -1;
	}
	sqlite3_stmt *st;
	if (cb_expunged) {
		if (store_prepare(a, "SELECT uid FROM expunged WHERE mailbox_id = ? AND "
				       "modseq > ? ORDER BY uid", -1, &st, NULL) != SQLITE_OK)
			return store_dbfail(a, err_r, "changes");
		sqlite3_bind_int64(st, 1, mb.id);
		sqlite3_bind_int64(st, 2, (int64_t)modseq);
		while (sqlite3_step(st) == SQLITE_ROW)
			cb_expunged(ctx, (uint32_t)sqlite3_column_int64(st, 0));
		store_finalize(a, st);
	}
	if (cb_msg == NULL)
		return 0;
	if (store_prepare(a, "SELECT uid, flags, modseq, internaldate, size, filename, "
			       "in_new, wire_size, keywords, savedate FROM messages WHERE mailbox_id = ? AND "
			       "modseq > ? ORDER BY uid", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "changes");
	sqlite3_bind_int64(st, 1, mb.id);
	sqlite3_bind_int64(st, 2, (int64_t)modseq);
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct store_msg_info m;
		memset(&m, 0, sizeof(m));
		m.uid = (uint32_t)sqlite3_column_int64(st, 0);
		m.flags = (unsigned)sqlite3_column_int(st, 1);
		m.modseq = (uint64_t)sqlite3_column_int64(st, 2);
		m.internaldate = (time_t)sqlite3_column_int64(st, 3);
		m.size = (uint64_t)sqlite3_column_int64(st, 4);
		snprintf(m.filename, sizeof(m.filename), "%s", sqlite3_column_text(st, 5));
		m.in_new = sqlite3_column_int(st, 6);
		m.wire_size = (uint64_t)sqlite3_column_int64(st, 7);
		m.keywords = (uint64_t)sqlite3_column_int64(st, 8);
		m.savedate = (time_t)sqlite3_column_int64(st, 9);
		cb_msg(ctx, &m);
	}
	store_finalize(a, st);
	return 0;
}

/* Octets of all messages of the account (QUOTA usage). -1 on error. */
int64_t store_account_usage(struct store_account *a, const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT coalesce(sum(size), 0) FROM messages", -1, &st,
			       NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "usage");
	int64_t v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	store_finalize(a, st);
	return v;
}

/* The key row of box if it belongs to the mailbox's current UIDVALIDITY: 1 (key filled), 0
 * none, -1 error. */
static int urlauth_key_read(struct store_account *a, const char *box, uint32_t uidvalidity,
			    unsigned char key[STORE_URLAUTH_KEY_LEN], const char **err_r)
{
	sqlite3_stmt *st;
	if (store_prepare(a, "SELECT key FROM urlauth_keys WHERE name = ? AND uidvalidity = ?",
			  -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "read urlauth key");
	sqlite3_bind_text(st, 1, box, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, uidvalidity);
	int r = sqlite3_step(st), found = 0;
	if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == STORE_URLAUTH_KEY_LEN) {
		memcpy(key, sqlite3_column_blob(st, 0), STORE_URLAUTH_KEY_LEN);
		found = 1;
	}
	store_finalize(a, st);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return store_dbfail(a, err_r, "read urlauth key");
	return found;
}

/* See store.h. */
int store_urlauth_key(struct store_account *a, const char *box, int create,
		      unsigned char key[STORE_URLAUTH_KEY_LEN], const char **err_r)
{
	struct store_mailbox_info mb;
	const char *n = strcasecmp(box, "INBOX") == 0 ? "INBOX" : box;
	int r = store_mailbox_lookup(a, n, &mb, err_r);
	if (r <= 0)
		return r == 0 ? 0 : -1;
	r = urlauth_key_read(a, n, mb.uidvalidity, key, err_r);
	if (r != 0 || !create)
		return r;
	/* under the write lock: another session may have made it meanwhile */
	if (store_db_begin(a) != SQLITE_OK)
		return store_dbfail(a, err_r, "lock index for urlauth key");
	r = store_mailbox_lookup(a, n, &mb, err_r);
	if (r > 0)
		r = urlauth_key_read(a, n, mb.uidvalidity, key, err_r);
	if (r == 0) {
		sqlite3_stmt *st;
		if (getrandom(key, STORE_URLAUTH_KEY_LEN, 0) != STORE_URLAUTH_KEY_LEN) {
			r = store_fail(a, err_r, "random urlauth key");
		} else if (store_prepare(a, "INSERT OR REPLACE INTO urlauth_keys(name, uidvalidity,"
					    " key) VALUES (?, ?, ?)", -1, &st, NULL) != SQLITE_OK) {
			r = store_dbfail(a, err_r, "store urlauth key");
		} else {
			sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, mb.uidvalidity);
			sqlite3_bind_blob(st, 3, key, STORE_URLAUTH_KEY_LEN, SQLITE_TRANSIENT);
			int s2 = sqlite3_step(st);
			store_finalize(a, st);
			r = s2 == SQLITE_DONE ? 1 : store_dbfail(a, err_r, "store urlauth key");
		}
	}
	if (r == 1 && store_db_commit(a) != SQLITE_OK)
		r = store_dbfail(a, err_r, "commit urlauth key");
	if (r != 1) {
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		explicit_bzero(key, STORE_URLAUTH_KEY_LEN);
		return r < 0 ? -1 : 0;
	}
	return 1;
}

/* See store.h. */
int store_urlauth_reset(struct store_account *a, const char *box, const char **err_r)
{
	sqlite3_stmt *st;
	const char *n = box == NULL ? NULL : strcasecmp(box, "INBOX") == 0 ? "INBOX" : box;
	if (n != NULL) {
		struct store_mailbox_info mb;
		int r = store_mailbox_lookup(a, n, &mb, err_r);
		if (r <= 0)
			return r;
	}
	if (store_prepare(a, n ? "DELETE FROM urlauth_keys WHERE name = ?"
			       : "DELETE FROM urlauth_keys", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "reset urlauth keys");
	if (n)
		sqlite3_bind_text(st, 1, n, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	store_finalize(a, st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "reset urlauth keys");
	return 1;
}
