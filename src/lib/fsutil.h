/* fsutil.h - small file-system helpers shared by every process. */
#ifndef POSTINO_FSUTIL_H
#define POSTINO_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* fsync the directory at path, so that the entries created, renamed or removed in it are
 * durable. 0 ok, -1 with errno (from open or fsync) kept. */
int fs_fsync_dir(const char *path);

/* Write all n octets of p to fd, retrying short writes and EINTR. For files and blocking
 * descriptors (EAGAIN is an error). 0 ok, -1 with errno set (EIO if write wrote nothing). */
int fs_write_all(int fd, const void *p, size_t n);

/* The same at offset off, with pwrite (the file offset does not move). */
int fs_pwrite_all(int fd, const void *p, size_t n, off_t off);

#endif
