/* sqlvfs.h - an SQLite VFS over another (the platform's "unix") that writes each transaction's
 * WAL frames with one system call instead of two per page.
 *
 * SQLite appends a WAL frame as two writes: its 24-octet header, then the page. A commit of
 * four pages is eight pwrite(2) calls, and under IMAP load the index's commits made a fifth of
 * a worker's system calls (on a virtual machine each one costs a trip through the hypervisor).
 * This VFS collects the contiguous writes of a WAL file in memory and writes them at once when
 * the commit frame's page arrives (a frame header whose "database size" field is not zero), so
 * that write, and its error, happens inside the xWrite SQLite makes for the commit: a failed
 * write fails the commit as before, and the commit is published in the -shm only after its
 * frames are in the file. Any other call on the file (read, size, sync, truncate, lock, close,
 * file control) and any write that is not contiguous first write what is pending; so does a
 * write that would take the buffer past SQLVFS_WRITE_MAX (a transaction that spills pages
 * before its commit, or a big commit, goes out in writes of up to that size).
 * A commit frame's page may come in two writes with a sync between them (the padding SQLite
 * adds after a synchronous=FULL commit on a device without powersafe overwrite): what is
 * pending goes out at the sync, and the write that completes the page, whose size the first
 * commit on the handle showed, writes the rest. Files other than WALs pass straight through.
 * Frames of a transaction that spilled pages and then rolled back are written when the
 * database file's -shm locks next change (the release of the write lock), so they can never
 * land later on another connection's commit; a WAL whose database file is not opened through
 * this VFS (sqlite3_database_file_object) is not buffered at all.
 * The buffer is freed after each write-out: an idle handle holds none. If it cannot grow, the
 * file's writes pass straight through from then on. */
#ifndef POSTINO_SQLVFS_H
#define POSTINO_SQLVFS_H

#include <sqlite3.h>

/* The most octets written at once: SQLite's unix VFS cuts each write to 17 bits of length. */
#define SQLVFS_WRITE_MAX 0x1ffff

/* Register a VFS named name over base (NULL: SQLite's default at the time of the call), as the
 * default when make_default. SQLITE_OK or an SQLite error code. Call once per name, after any
 * sqlite3_config. */
int sqlvfs_register(sqlite3_vfs *base, const char *name, int make_default);

#endif
