/* sqlvfs.c - WAL frames written once per transaction (see sqlvfs.h). */
#include "sqlvfs.h"

#include <stdlib.h>
#include <string.h>

#define WAL_FRAME_HDR 24   /* SQLite's WAL frame header; octets 4..7: database size at a commit */

struct wb_file {
	sqlite3_file base;        /* pMethods: wb_methods */
	sqlite3_file *real;       /* the base VFS's file, allocated right after this struct */
	int wal;                  /* opened as a WAL: its writes are collected */
	int page;                 /* the WAL's page size, once a commit frame showed it */
	sqlite3_int64 commit_at;  /* where the page of a commit frame being written starts; -1 */
	sqlite3_int64 read_at;    /* where the last read was, if no write came after it; -1 */
	struct wb_file *peer;     /* a WAL's database file and the database's WAL, while both
				   * are open */
	unsigned char *buf;       /* pending writes, contiguous from off */
	size_t len, cap;
	sqlite3_int64 off;
};

/* Room for the base file after ours, aligned for any type. */
#define WB_HEAD ((sizeof(struct wb_file) + 15) & ~(size_t)15)

static sqlite3_vfs *base_of(sqlite3_vfs *vfs)
{
	return vfs->pAppData;
}

static void pending_drop(struct wb_file *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

/* Write what is pending with one call of the base file's xWrite. */
static int pending_flush(struct wb_file *w)
{
	if (w->len == 0)
		return SQLITE_OK;
	int rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->off);
	pending_drop(w);
	return rc;
}

/* Append n octets to the pending buffer; 0, or -1 when it cannot grow (nothing appended). */
static int pending_add(struct wb_file *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap : 8192;
		while (cap < w->len + n)
			cap *= 2;
		unsigned char *nb = realloc(w->buf, cap);
		if (nb == NULL)
			return -1;
		w->buf = nb;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return 0;
}

static int is_commit_header(const void *p, int n)
{
	const unsigned char *h = p;
	return n == WAL_FRAME_HDR && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int wb_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	struct wb_file *w = (struct wb_file *)f;
	if (!w->wal || n <= 0)
		return w->real->pMethods->xWrite(w->real, p, n, off);
	int rc;
	/* a write where the last read was is a frame header rewritten with new checksums (at the
	 * commit of a transaction that changed a page it had already spilled to the WAL): the
	 * last of them may be the commit frame's, with no page after it, so none is held */
	int rewrite = off == w->read_at;
	w->read_at = -1;
	if (w->len > 0 && (rewrite || off != w->off + (sqlite3_int64)w->len) &&
	    (rc = pending_flush(w)) != SQLITE_OK)
		return rc;
	if (rewrite)
		return w->real->pMethods->xWrite(w->real, p, n, off);
	/* SQLite's unix VFS writes at most SQLVFS_WRITE_MAX octets per call (it masks the length
	 * with 0x1ffff): a longer write would come out short, as a "disk full" */
	if (w->len > 0 && w->len + (size_t)n > SQLVFS_WRITE_MAX &&
	    (rc = pending_flush(w)) != SQLITE_OK)
		return rc;
	if (w->len == 0)
		w->off = off;
	if ((size_t)n > SQLVFS_WRITE_MAX || pending_add(w, p, (size_t)n) < 0) {
		/* no memory (or a write no page needs): from now on this file's writes go straight
		 * through */
		w->wal = 0;
		if ((rc = pending_flush(w)) != SQLITE_OK)
			return rc;
		return w->real->pMethods->xWrite(w->real, p, n, off);
	}
	if (w->commit_at >= 0) {
		/* (part of) the commit frame's page; the first whole one tells the page size */
		if (w->page == 0)
			w->page = n;
		if (off + n >= w->commit_at + w->page) {
			w->commit_at = -1;
			return pending_flush(w);
		}
		return SQLITE_OK;
	}
	if (is_commit_header(p, n)) {
		w->commit_at = off + WAL_FRAME_HDR;
		return SQLITE_OK;
	}
	return SQLITE_OK;
}

/* Every call that could look at or depend on the file's content writes what is pending
 * first. */
#define FLUSH_OR_RETURN(w)                                 \
	do {                                               \
		int rc_ = pending_flush(w);                \
		if (rc_ != SQLITE_OK)                      \
			return rc_;                        \
	} while (0)

static int wb_close(sqlite3_file *f)
{
	struct wb_file *w = (struct wb_file *)f;
	if (w->peer != NULL)
		w->peer->peer = NULL;
	int rc = pending_flush(w);
	int rc2 = w->real->pMethods->xClose(w->real);
	return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	w->read_at = off;
	return w->real->pMethods->xRead(w->real, p, n, off);
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xTruncate(w->real, size);
}

static int wb_sync(sqlite3_file *f, int flags)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xSync(w->real, flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xFileSize(w->real, size);
}

static int wb_lock(sqlite3_file *f, int lock)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xLock(w->real, lock);
}

static int wb_unlock(sqlite3_file *f, int lock)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xUnlock(w->real, lock);
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xCheckReservedLock(w->real, out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
	struct wb_file *w = (struct wb_file *)f;
	FLUSH_OR_RETURN(w);
	return w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wb_sector_size(sqlite3_file *f)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xSectorSize(w->real);
}

static int wb_device_characteristics(sqlite3_file *f)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xDeviceCharacteristics(w->real);
}

/* The -shm and memory-mapping methods belong to the database file, whose writes are never
 * held; they pass through. */
static int wb_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xShmMap(w->real, pg, pgsz, extend, pp);
}

/* A lock of the -shm taken or released while the WAL holds writes: the frames of a transaction
 * that spilled pages and is now rolled back (a commit writes all before its page's xWrite
 * returns). They go out while the write lock is still held; later they could land on the
 * frames of another connection's commit at the same offsets. A failure refuses a lock being
 * taken; a lock being released is released anyway (what was held was not committed). */
static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	struct wb_file *w = (struct wb_file *)f;
	if (w->peer != NULL && w->peer->len > 0) {
		int rc = pending_flush(w->peer);
		if (rc != SQLITE_OK && (flags & SQLITE_SHM_LOCK))
			return rc;
	}
	return w->real->pMethods->xShmLock(w->real, offset, n, flags);
}

static void wb_shm_barrier(sqlite3_file *f)
{
	struct wb_file *w = (struct wb_file *)f;
	if (w->peer != NULL && w->peer->len > 0)
		pending_flush(w->peer);
	w->real->pMethods->xShmBarrier(w->real);
}

static int wb_shm_unmap(sqlite3_file *f, int del)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xShmUnmap(w->real, del);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xFetch(w->real, off, n, pp);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	struct wb_file *w = (struct wb_file *)f;
	return w->real->pMethods->xUnfetch(w->real, off, p);
}

static const sqlite3_io_methods wb_methods = {
	.iVersion = 3,
	.xClose = wb_close,
	.xRead = wb_read,
	.xWrite = wb_write,
	.xTruncate = wb_truncate,
	.xSync = wb_sync,
	.xFileSize = wb_file_size,
	.xLock = wb_lock,
	.xUnlock = wb_unlock,
	.xCheckReservedLock = wb_check_reserved,
	.xFileControl = wb_file_control,
	.xSectorSize = wb_sector_size,
	.xDeviceCharacteristics = wb_device_characteristics,
	.xShmMap = wb_shm_map,
	.xShmLock = wb_shm_lock,
	.xShmBarrier = wb_shm_barrier,
	.xShmUnmap = wb_shm_unmap,
	.xFetch = wb_fetch,
	.xUnfetch = wb_unfetch,
};

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	struct wb_file *w = (struct wb_file *)f;
	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)((char *)f + WB_HEAD);
	sqlite3_vfs *b = base_of(vfs);
	int rc = b->xOpen(b, name, w->real, flags, out);
	/* SQLite calls xClose exactly when pMethods is set, even after a failed open */
	if (w->real->pMethods == NULL) {
		f->pMethods = NULL;
		return rc;
	}
	/* a base without the version 3 methods (WAL, mmap) cannot be wrapped by this table */
	if (w->real->pMethods->iVersion < 3) {
		w->real->pMethods->xClose(w->real);
		f->pMethods = NULL;
		return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
	}
	w->commit_at = -1;
	/* a WAL's writes are held only when its database file is one of ours, whose -shm locks
	 * then write them out (wb_shm_lock) */
	if (flags & SQLITE_OPEN_WAL) {
		sqlite3_file *db = sqlite3_database_file_object(name);
		if (db != NULL && db->pMethods == &wb_methods) {
			w->peer = (struct wb_file *)db;
			w->peer->peer = w;
			w->wal = 1;
		}
	}
	w->read_at = -1;
	f->pMethods = &wb_methods;
	return rc;
}

static int wb_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xDelete(b, name, sync_dir);
}

static int wb_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xAccess(b, name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xFullPathname(b, name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *vfs, const char *name)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xDlOpen(b, name);
}

static void wb_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	sqlite3_vfs *b = base_of(vfs);
	b->xDlError(b, n, msg);
}

static void (*wb_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xDlSym(b, h, sym);
}

static void wb_dlclose(sqlite3_vfs *vfs, void *h)
{
	sqlite3_vfs *b = base_of(vfs);
	b->xDlClose(b, h);
}

static int wb_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xRandomness(b, n, out);
}

static int wb_sleep(sqlite3_vfs *vfs, int us)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xSleep(b, us);
}

static int wb_current_time(sqlite3_vfs *vfs, double *t)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xCurrentTime(b, t);
}

static int wb_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
	sqlite3_vfs *b = base_of(vfs);
	return b->xGetLastError ? b->xGetLastError(b, n, msg) : 0;
}

static int wb_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
	sqlite3_vfs *b = base_of(vfs);
	if (b->iVersion >= 2 && b->xCurrentTimeInt64 != NULL)
		return b->xCurrentTimeInt64(b, t);
	double d;
	int rc = b->xCurrentTime(b, &d);
	*t = (sqlite3_int64)(d * 86400000.0);
	return rc;
}

/* See sqlvfs.h. */
int sqlvfs_register(sqlite3_vfs *base, const char *name, int make_default)
{
	if (base == NULL)
		base = sqlite3_vfs_find(NULL);
	if (base == NULL)
		return SQLITE_ERROR;
	sqlite3_vfs *v = calloc(1, sizeof(*v));   /* registered for the life of the process */
	if (v == NULL)
		return SQLITE_NOMEM;
	v->iVersion = 2;
	v->szOsFile = (int)(WB_HEAD + (size_t)base->szOsFile);
	v->mxPathname = base->mxPathname;
	v->zName = name;
	v->pAppData = base;
	v->xOpen = wb_open;
	v->xDelete = wb_delete;
	v->xAccess = wb_access;
	v->xFullPathname = wb_full_pathname;
	v->xDlOpen = wb_dlopen;
	v->xDlError = wb_dlerror;
	v->xDlSym = wb_dlsym;
	v->xDlClose = wb_dlclose;
	v->xRandomness = wb_randomness;
	v->xSleep = wb_sleep;
	v->xCurrentTime = wb_current_time;
	v->xGetLastError = wb_last_error;
	v->xCurrentTimeInt64 = wb_current_time64;
	int rc = sqlite3_vfs_register(v, make_default);
	if (rc != SQLITE_OK)
		free(v);
	return rc;
}
