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

/* A read-only view of the first len octets of a file: read into memory up to FS_VIEW_READ_MAX,
 * mapped above that. In a process with threads on several CPUs every munmap makes each CPU
 * drop its TLB entries (an interrupt to each), which cost more than reading a small message:
 * deliveries and IMAP reads of ordinary mail read, only big files are mapped. */
#define FS_VIEW_READ_MAX (256 * 1024)
struct fs_view {
	const char *data;   /* len octets (NULL when len is 0) */
	size_t len;
	int mapped;
};

/* Open a view of fd's first len octets. 0 ok, -1 with errno (a file shorter than len is EIO). */
int fs_view_open(struct fs_view *v, int fd, size_t len);
/* Release it (a zeroed or closed view is fine). */
void fs_view_close(struct fs_view *v);

#endif
