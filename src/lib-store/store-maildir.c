/* store-maildir.c - the Maildir++ backend of the mailbox store, with index.db (SQLite).
 *
 * Durability contract of store_deliver: the message is in <box>/new/ (file data synced, the
 * directory synced) and its index row committed before it returns 0. A failure at any step
 * removes what that call made visible.
 */
#include "store.h"
#include "store-private.h"
#include "wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define STORE_SCHEMA_VERSION 1
#define STORE_NAME_MAX 255        /* octets of a mailbox name */
#define STORE_DEPTH_MAX 16        /* hierarchy levels of a mailbox name */



static const struct {
	const char *name, *special;
} default_boxes[] = {
	{ "INBOX", NULL }, { "Sent", "\\Sent" }, { "Drafts", "\\Drafts" },
	{ "Trash", "\\Trash" }, { "Junk", "\\Junk" }, { "Archive", "\\Archive" },
};

/* The static SPECIAL-USE string for a stored value. */
const char *store_special_static(const char *v)
{
	for (size_t i = 1; v && i < sizeof(default_boxes) / sizeof(default_boxes[0]); i++)
		if (strcmp(default_boxes[i].special, v) == 0)
			return default_boxes[i].special;
	return NULL;
}

/* Is this a mailbox name we accept? No empty components, "." or "..", control characters. */
int store_mailbox_name_valid(const char *name)
{
	size_t n = strlen(name);
	unsigned depth = 1;
	if (n == 0 || n > STORE_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f)
			return 0;
		if (c == '/') {
			if (name[i + 1] == '/')
				return 0;
			if (++depth > STORE_DEPTH_MAX)
				return 0;
		}
	}
	/* no component may be "." or ".." */
	for (const char *p = name; p;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p = slash ? slash + 1 : NULL;
	}
	return 1;
}

/* Directory of a mailbox: INBOX is the root, others ".<escaped>" with '/' written as '.' and
 * every octet outside [A-Za-z0-9 _-] (dots included) as "%XX". */
int store_box_dir(const struct store_account *a, const char *box, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	if (box == NULL || strcasecmp(box, "INBOX") == 0) {
		int n = snprintf(out, outlen, "%s", a->root);
		return n < 0 || (size_t)n >= outlen ? -1 : 0;
	}
	if (!store_mailbox_name_valid(box))
		return -1;
	int n = snprintf(out, outlen, "%s/.", a->root);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	size_t o = (size_t)n;
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
	return 0;
}

/* mkdir that accepts an existing directory. */
static int mkdir_ok(const char *p)
{
	return mkdir(p, 0750) == 0 || errno == EEXIST ? 0 : -1;
}

/* mkdir -p. */
int store_mkdir_p(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, path, n + 1);
	for (size_t i = 1; i < n; i++) {
		if (tmp[i] == '/') {
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
	char p[4200];
	if (store_mkdir_p(dir) < 0)
		return -1;
	static const char *sub[] = { "cur", "new", "tmp" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, sub[i]);
		if (mkdir_ok(p) < 0)
			return -1;
	}
	return 0;
}

/* Record an error on the account. */
int store_fail(struct store_account *a, const char **err_r, const char *what)
{
	snprintf(a->err, sizeof(a->err), "%s%s%s", what, errno ? ": " : "",
		 errno ? strerror(errno) : "");
	*err_r = a->err;
	return -1;
}

/* Record an SQLite error on the account. */
int store_dbfail(struct store_account *a, const char **err_r, const char *what)
{
	snprintf(a->err, sizeof(a->err), "%s: %s", what, sqlite3_errmsg(a->db));
	*err_r = a->err;
	return -1;
}

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS mailboxes(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL DEFAULT 1,"
	" highestmodseq INTEGER NOT NULL DEFAULT 1, special_use TEXT, subscribed INTEGER DEFAULT 1);"
	"CREATE TABLE IF NOT EXISTS messages(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" filename TEXT NOT NULL, flags INTEGER NOT NULL DEFAULT 0, modseq INTEGER NOT NULL,"
	" internaldate INTEGER NOT NULL, size INTEGER NOT NULL, savedate INTEGER,"
	" in_new INTEGER NOT NULL DEFAULT 1, wire_size INTEGER NOT NULL DEFAULT 0,"
	" keywords INTEGER NOT NULL DEFAULT 0,"
	" PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, filename TEXT NOT NULL, PRIMARY KEY(mailbox_id, uid));"
	"CREATE TABLE IF NOT EXISTS keywords(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);";

/* Open index.db with our pragmas. */
static int store_db_open(struct store_account *a, int create, const char **err_r)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/index.db", a->root);
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	if (sqlite3_open_v2(p, &a->db, flags, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "open index.db");
	sqlite3_busy_timeout(a->db, 5000);
	if (sqlite3_exec(a->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
			 NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "configure index.db");
	if (!create) {
		/* indexes made by earlier versions: add what they lack (errors mean "exists") */
		sqlite3_exec(a->db, schema, NULL, NULL, NULL);
		sqlite3_exec(a->db, "ALTER TABLE messages ADD COLUMN wire_size INTEGER NOT NULL "
				    "DEFAULT 0", NULL, NULL, NULL);
		sqlite3_exec(a->db, "ALTER TABLE messages ADD COLUMN keywords INTEGER NOT NULL "
				    "DEFAULT 0", NULL, NULL, NULL);
	}
	return 0;
}

/* Free an account handle. */
void store_account_close(struct store_account **ap)
{
	struct store_account *a = *ap;
	if (a == NULL)
		return;
	sqlite3_close(a->db);
	free(a);
	*ap = NULL;
}

/* Create the account tree and index. */
int store_account_create(const char *root, const char **err_r)
{
	static __thread char err[512];
	struct store_account *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	snprintf(a->root, sizeof(a->root), "%s", root);
	int rc = -1;
	errno = 0;
	if (store_maildir_make(root) < 0) {
		store_fail(a, err_r, "create mail directory");
		goto out;
	}
	if (store_db_open(a, 1, err_r) < 0)
		goto out;
	if (sqlite3_exec(a->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "create index schema");
		goto out;
	}
	sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	sqlite3_exec(a->db, "INSERT INTO schema_version SELECT 1 WHERE NOT EXISTS "
			    "(SELECT 1 FROM schema_version)", NULL, NULL, NULL);
	uint32_t uv = (uint32_t)time(NULL);
	for (size_t i = 0; i < sizeof(default_boxes) / sizeof(default_boxes[0]); i++) {
		char dir[4300];
		errno = 0;
		if (store_box_dir(a, default_boxes[i].name, dir, sizeof(dir)) < 0 ||
		    store_maildir_make(dir) < 0) {
			sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
			store_fail(a, err_r, "create mailbox directory");
			goto out;
		}
		sqlite3_stmt *st;
		sqlite3_prepare_v2(a->db, "INSERT OR IGNORE INTO mailboxes(name, uidvalidity, "
				   "special_use) VALUES (?, ?, ?)", -1, &st, NULL);
		sqlite3_bind_text(st, 1, default_boxes[i].name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, uv + i);   /* unique per mailbox in the account */
		if (default_boxes[i].special)
			sqlite3_bind_text(st, 3, default_boxes[i].special, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 3);
		int r = sqlite3_step(st);
		sqlite3_finalize(st);
		if (r != SQLITE_DONE) {
			store_dbfail(a, err_r, "create mailbox row");
			sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
			goto out;
		}
	}
	if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "commit index");
		goto out;
	}
	rc = 0;
out:
	if (rc < 0) {
		snprintf(err, sizeof(err), "%s", *err_r);
		*err_r = err;
	}
	store_account_close(&a);
	return rc;
}

/* Open an existing account. */
int store_account_open(const char *root, struct store_account **acct_r, const char **err_r)
{
	static __thread char err[512];
	char p[4200];
	struct stat st;
	snprintf(p, sizeof(p), "%s/index.db", root);
	if (stat(p, &st) < 0)
		return 0;
	struct store_account *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	snprintf(a->root, sizeof(a->root), "%s", root);
	if (store_db_open(a, 0, err_r) < 0) {
		snprintf(err, sizeof(err), "%s", *err_r);
		*err_r = err;
		store_account_close(&a);
		return -1;
	}
	*acct_r = a;
	return 1;
}

/* Look up a mailbox row. 1 found, 0 not, -1 error. */
int store_mailbox_get(struct store_account *a, const char *box, struct store_mailbox_info *info,
		      const char **err_r)
{
	sqlite3_stmt *st;
	if (box == NULL || strcasecmp(box, "INBOX") == 0)
		box = "INBOX";
	if (sqlite3_prepare_v2(a->db, "SELECT id, name, uidvalidity, uidnext, highestmodseq, "
			       "special_use, (SELECT count(*) FROM messages WHERE mailbox_id = id), subscribed, "
			       "(SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = id), "
			       "(SELECT count(*) FROM messages WHERE mailbox_id = id AND flags & 1 = 0) "
			       "FROM mailboxes WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "query mailbox");
	sqlite3_bind_text(st, 1, box, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		memset(info, 0, sizeof(*info));
		info->id = sqlite3_column_int64(st, 0);
		snprintf(info->name, sizeof(info->name), "%s", sqlite3_column_text(st, 1));
		info->uidvalidity = (uint32_t)sqlite3_column_int64(st, 2);
		info->uidnext = (uint32_t)sqlite3_column_int64(st, 3);
		info->highestmodseq = (uint64_t)sqlite3_column_int64(st, 4);
		info->special_use = store_special_static((const char *)sqlite3_column_text(st, 5));
		info->messages = (uint32_t)sqlite3_column_int64(st, 6);
		info->subscribed = sqlite3_column_int(st, 7);
		info->size = (uint64_t)sqlite3_column_int64(st, 8);
		info->unseen = (uint32_t)sqlite3_column_int64(st, 9);
	}
	sqlite3_finalize(st);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	return store_dbfail(a, err_r, "query mailbox");
}

/* All mailboxes. */
int store_mailbox_list(struct store_account *a, struct store_mailbox_info **boxes_r,
		       const char **err_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT name FROM mailboxes ORDER BY name", -1, &st, NULL) !=
	    SQLITE_OK)
		return store_dbfail(a, err_r, "list mailboxes");
	struct store_mailbox_info *v = NULL;
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		char name[256];
		snprintf(name, sizeof(name), "%s", sqlite3_column_text(st, 0));
		void *nv = realloc(v, (size_t)(n + 1) * sizeof(*v));
		if (nv == NULL)
			break;
		v = nv;
		if (store_mailbox_get(a, name, &v[n], err_r) == 1)
			n++;
	}
	sqlite3_finalize(st);
	*boxes_r = v;
	return n;
}

/* Messages of a mailbox, in UID order. */
int store_message_list(struct store_account *a, const char *box, struct store_msg_info **msgs_r,
		       const char **err_r)
{
	struct store_mailbox_info mb;
	int r = store_mailbox_get(a, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0) {
			snprintf(a->err, sizeof(a->err), "no such mailbox");
			*err_r = a->err;
		}
		return -1;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT uid, flags, modseq, internaldate, size, filename, "
			       "in_new, wire_size, keywords, savedate FROM messages WHERE mailbox_id = ? ORDER BY uid", -1, &st,
			       NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "list messages");
	sqlite3_bind_int64(st, 1, mb.id);
	struct store_msg_info *v = NULL;
	int n = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		void *nv = realloc(v, (size_t)(n + 1) * sizeof(*v));
		if (nv == NULL) {
			free(v);
			sqlite3_finalize(st);
			*err_r = "out of memory";
			return -1;
		}
		v = nv;
		struct store_msg_info *m = &v[n++];
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
	sqlite3_finalize(st);
	*msgs_r = v;
	return n;
}

/* Open a message file by UID. */
int store_message_open(struct store_account *a, const char *box, uint32_t uid, const char **err_r)
{
	struct store_msg_info *v;
	int n = store_message_list(a, box, &v, err_r);
	if (n < 0)
		return -1;
	int fd = -1;
	for (int i = 0; i < n; i++)
		if (v[i].uid == uid)
			fd = store_message_fd(a, box, &v[i], err_r);
	free(v);
	if (fd < 0 && n >= 0) {
		snprintf(a->err, sizeof(a->err), "message %u not found", uid);
		*err_r = a->err;
	}
	return fd;
}

/* fsync a directory. */
int store_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	close(fd);
	return r;
}

/* Copy src_fd (from offset 0) into a new file at path and fsync it. */
static int copy_file(int src_fd, const char *path)
{
	int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (out < 0)
		return -1;
	char buf[65536];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(src_fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		for (ssize_t w = 0; w < n;) {
			ssize_t k = write(out, buf + w, (size_t)(n - w));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				goto fail;
			w += k;
		}
		off += n;
	}
	if (fsync(out) != 0)
		goto fail;
	return close(out) == 0 ? 0 : -1;
fail:
	close(out);
	unlink(path);
	return -1;
}

/* A unique Maildir file name. */
void store_maildir_name(char *out, size_t outlen, uint64_t size)
{
	static __thread unsigned counter;
	static char host[64];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (host[0] == '\0') {
		char h[64];
		if (gethostname(h, sizeof(h)) != 0)
			snprintf(h, sizeof(h), "localhost");
		h[sizeof(h) - 1] = '\0';
		for (char *p = h; *p; p++)   /* '/' and ':' are special in Maildir names */
			if (*p == '/' || *p == ':')
				*p = '_';
		memcpy(host, h, sizeof(host));
	}
	snprintf(out, outlen, "%lld.M%ldP%dQ%uT%lx.%s,S=%llu", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (int)getpid(), ++counter, (unsigned long)gettid(), host,
		 (unsigned long long)size);
}

/* Add an index row for a file already in new/ or cur/: UID = UIDNEXT, MODSEQ bumped.
 * Runs inside the caller's transaction. */
int store_index_insert(struct store_account *a, int64_t box_id, const char *fname, int in_new,
			unsigned flags, time_t internaldate, uint64_t size, uint64_t wire_size,
			uint32_t *uid_r, const char **err_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "read UIDNEXT");
	sqlite3_bind_int64(st, 1, box_id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return store_dbfail(a, err_r, "read UIDNEXT");
	}
	int64_t uid = sqlite3_column_int64(st, 0);
	int64_t modseq = sqlite3_column_int64(st, 1) + 1;
	sqlite3_finalize(st);
	if (uid > (int64_t)UINT32_MAX - 1) {
		snprintf(a->err, sizeof(a->err), "mailbox UIDs exhausted");
		*err_r = a->err;
		return -1;
	}
	if (sqlite3_prepare_v2(a->db, "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? "
			       "WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		return store_dbfail(a, err_r, "update UIDNEXT");
	sqlite3_bind_int64(st, 1, uid + 1);
	sqlite3_bind_int64(st, 2, modseq);
	sqlite3_bind_int64(st, 3, box_id);
	int r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "update UIDNEXT");
	if (sqlite3_prepare_v2(a->db, "INSERT INTO messages(mailbox_id, uid, filename, flags, "
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
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return store_dbfail(a, err_r, "insert message row");
	if (uid_r)
		*uid_r = (uint32_t)uid;
	return 0;
}

/* The durable delivery path; see store.h. */
int store_deliver(struct store_account *a, const char *box, int src_fd, uint64_t size,
		  int src_already_synced, time_t internaldate, unsigned flags, uint32_t *uid_r,
		  const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300], fname[256], tmp[4600], dst[4600], newdir[4400];
	int r = store_mailbox_get(a, box, &mb, err_r);
	if (r <= 0) {
		if (r == 0) {
			snprintf(a->err, sizeof(a->err), "no such mailbox");
			*err_r = a->err;
		}
		return -1;
	}
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0) {
		snprintf(a->err, sizeof(a->err), "invalid mailbox name");
		*err_r = a->err;
		return -1;
	}
	int64_t wire = wire_size_fd(src_fd);   /* POP3's LIST size, computed once */
	if (wire < 0)
		return store_fail(a, err_r, "read message");
	store_maildir_name(fname, sizeof(fname), size);
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", dir, fname);
	snprintf(dst, sizeof(dst), "%s/new/%s", dir, fname);
	snprintf(newdir, sizeof(newdir), "%s/new", dir);
	/* 1. into tmp/: a hard link of an already synced source costs no copy and no fsync */
	int linked = 0;
	if (src_already_synced) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", src_fd);
		linked = linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) == 0;
	}
	errno = 0;
	if (!linked && copy_file(src_fd, tmp) < 0)
		return store_fail(a, err_r, "write message file");
	/* 2. into new/, and make the rename durable */
	if (rename(tmp, dst) < 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return store_fail(a, err_r, "rename into new/");
	}
	if (store_fsync_dir(newdir) < 0) {
		int e = errno;
		unlink(dst);
		errno = e;
		return store_fail(a, err_r, "fsync new/");
	}
	/* 3. the index row */
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "begin index transaction");
		goto undo;
	}
	if (store_index_insert(a, mb.id, fname, 1, flags, internaldate, size, (uint64_t)wire, uid_r,
			 err_r) < 0) {
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		goto undo;
	}
	if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		store_dbfail(a, err_r, "commit index row");
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
		goto undo;
	}
	return 0;
undo:
	unlink(dst);
	store_fsync_dir(newdir);
	return -1;
}

/* Was this file name expunged from the mailbox? */
static int store_was_expunged(struct store_account *a, int64_t box_id, const char *fname)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT 1 FROM expunged WHERE mailbox_id = ? AND filename = ?",
			       -1, &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(st, 1, box_id);
	sqlite3_bind_text(st, 2, fname, -1, SQLITE_TRANSIENT);
	int r = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return r;
}

/* Path of a listed message. */
int store_message_path(struct store_account *a, const char *box, const struct store_msg_info *m,
		       char *out, size_t outlen)
{
	char dir[4300];
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0)
		return -1;
	return store_msg_path(dir, m->filename, m->in_new, m->flags, out, outlen);
}

/* The account directory. */
const char *store_account_root(const struct store_account *a)
{
	return a->root;
}

/* Expunge by UID: commit the index change first, then remove the files. */
int store_expunge(struct store_account *a, const char *box, const uint32_t *uids, size_t n,
		  const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300];
	int r = store_mailbox_get(a, box, &mb, err_r);
	if (r <= 0 || store_box_dir(a, box, dir, sizeof(dir)) < 0) {
		if (r == 0) {
			snprintf(a->err, sizeof(a->err), "no such mailbox");
			*err_r = a->err;
		}
		return -1;
	}
	char **paths = calloc(n + 1, sizeof(*paths));
	if (paths == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	size_t np = 0;
	int rc = 0;
	sqlite3_stmt *sel = NULL, *del = NULL, *rec = NULL, *upd = NULL;
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		free(paths);
		return store_dbfail(a, err_r, "begin expunge");
	}
	if (sqlite3_prepare_v2(a->db, "SELECT filename, in_new, flags FROM messages WHERE "
			       "mailbox_id = ? AND uid = ?", -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(a->db, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", -1,
			       &del, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(a->db, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq, "
			       "filename) VALUES (?, ?, ?, ?)", -1, &rec, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(a->db, "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", -1,
			       &upd, NULL) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "prepare expunge");
		goto out;
	}
	uint64_t modseq = mb.highestmodseq + 1;
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(sel);
		sqlite3_bind_int64(sel, 1, mb.id);
		sqlite3_bind_int64(sel, 2, uids[i]);
		if (sqlite3_step(sel) != SQLITE_ROW)
			continue;
		char p[4700];
		const char *base = (const char *)sqlite3_column_text(sel, 0);
		store_msg_path(dir, base, sqlite3_column_int(sel, 1),
			       (unsigned)sqlite3_column_int(sel, 2), p, sizeof(p));
		if (access(p, F_OK) != 0)
			store_msg_find(dir, base, p, sizeof(p));
		sqlite3_reset(rec);
		sqlite3_bind_int64(rec, 1, mb.id);
		sqlite3_bind_int64(rec, 2, uids[i]);
		sqlite3_bind_int64(rec, 3, (int64_t)modseq);
		sqlite3_bind_text(rec, 4, (const char *)sqlite3_column_text(sel, 0), -1,
				  SQLITE_TRANSIENT);
		sqlite3_reset(del);
		sqlite3_bind_int64(del, 1, mb.id);
		sqlite3_bind_int64(del, 2, uids[i]);
		if (sqlite3_step(rec) != SQLITE_DONE || sqlite3_step(del) != SQLITE_DONE) {
			rc = store_dbfail(a, err_r, "expunge row");
			goto out;
		}
		paths[np] = strdup(p);
		if (paths[np] == NULL) {
			rc = -1;
			*err_r = "out of memory";
			goto out;
		}
		np++;
	}
	sqlite3_bind_int64(upd, 1, (int64_t)modseq);
	sqlite3_bind_int64(upd, 2, mb.id);
	if (np > 0 && sqlite3_step(upd) != SQLITE_DONE) {
		rc = store_dbfail(a, err_r, "update HIGHESTMODSEQ");
		goto out;
	}
	if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rc = store_dbfail(a, err_r, "commit expunge");
		goto out;
	}
	for (size_t i = 0; i < np; i++)
		unlink(paths[i]);
	rc = (int)np;
out:
	if (rc < 0)
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_finalize(sel);
	sqlite3_finalize(del);
	sqlite3_finalize(rec);
	sqlite3_finalize(upd);
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

/* Maildir info suffix ":2,FRST" to store flags. */
unsigned store_flags_from_name(const char *name)
{
	const char *info = strstr(name, ":2,");
	unsigned f = 0;
	if (info == NULL)
		return 0;
	for (const char *p = info + 3; *p; p++) {
		switch (*p) {
		case 'S': f |= STORE_F_SEEN; break;
		case 'R': f |= STORE_F_ANSWERED; break;
		case 'F': f |= STORE_F_FLAGGED; break;
		case 'T': f |= STORE_F_DELETED; break;
		case 'D': f |= STORE_F_DRAFT; break;
		default: break;
		}
	}
	return f;
}

/* Reconcile the index with the files: adopt unknown files (a crash between rename and commit),
 * drop rows whose file is gone. */
int store_mailbox_sync(struct store_account *a, const char *box, const char **err_r)
{
	struct store_mailbox_info mb;
	char dir[4300], sub[4400];
	int r = store_mailbox_get(a, box, &mb, err_r);
	if (r <= 0)
		return r == 0 ? -1 : -1;
	if (store_box_dir(a, box, dir, sizeof(dir)) < 0)
		return -1;
	struct store_msg_info *known;
	int n = store_message_list(a, box, &known, err_r);
	if (n < 0)
		return -1;
	char *seen = calloc((size_t)n + 1, 1);
	if (seen == NULL) {
		free(known);
		*err_r = "out of memory";
		return -1;
	}
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		free(known);
		free(seen);
		return store_dbfail(a, err_r, "begin sync");
	}
	int rc = 0;
	for (int in_new = 1; in_new >= 0 && rc == 0; in_new--) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, in_new ? "new" : "cur");
		DIR *d = opendir(sub);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL && rc == 0) {
			if (e->d_name[0] == '.')
				continue;
			int found = 0;
			char base[256];
			snprintf(base, sizeof(base), "%s", e->d_name);
			char *colon = strchr(base, ':');
			if (colon)
				*colon = '\0';
			for (int i = 0; i < n; i++) {
				if (strcmp(known[i].filename, base) == 0) {
					seen[i] = 1;
					found = 1;
					break;
				}
			}
			if (found)
				continue;
			char p[4700];
			struct stat st;
			snprintf(p, sizeof(p), "%s/%s", sub, e->d_name);
			if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			int fd = open(p, O_RDONLY | O_CLOEXEC);
			int64_t wire = fd >= 0 ? wire_size_fd(fd) : -1;
			if (fd >= 0)
				close(fd);
			if (wire < 0)
				continue;
			if (store_was_expunged(a, mb.id, base)) {
				unlink(p);   /* expunged, the unlink was cut short by a crash */
				continue;
			}
			rc = store_index_insert(a, mb.id, base, in_new, store_flags_from_name(e->d_name),
					  st.st_mtime, (uint64_t)st.st_size, (uint64_t)wire, NULL,
					  err_r);
		}
		closedir(d);
	}
	for (int i = 0; i < n && rc == 0; i++) {
		if (seen[i])
			continue;
		sqlite3_stmt *st;
		sqlite3_prepare_v2(a->db, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", -1,
				   &st, NULL);
		sqlite3_bind_int64(st, 1, mb.id);
		sqlite3_bind_int64(st, 2, known[i].uid);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = store_dbfail(a, err_r, "drop stale row");
		sqlite3_finalize(st);
	}
	free(known);
	free(seen);
	if (rc == 0 && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = store_dbfail(a, err_r, "commit sync");
	if (rc < 0)
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}
