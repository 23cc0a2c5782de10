/* fsutil.c - small file-system helpers shared by every process. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* fsync a directory by path; errno survives the close. */
int fs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

/* The write loop every file writer needs: write() (off < 0) or pwrite() may write less than
 * asked. 0 ok, -1 with errno set (EIO for a write of nothing). */
static int write_loop(int fd, const void *p, size_t n, off_t off)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		c += w;
		n -= (size_t)w;
		if (off >= 0)
			off += w;
	}
	return 0;
}

int fs_write_all(int fd, const void *p, size_t n)
{
	return write_loop(fd, p, n, -1);
}

/* Write all n octets of p to fd at off. 0 ok, -1 with errno set. */
int fs_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
	return write_loop(fd, p, n, off);
}

/* See fsutil.h. */
int fs_view_open(struct fs_view *v, int fd, size_t len)
{
	*v = (struct fs_view){ .len = len };
	if (len == 0)
		return 0;
	if (len > FS_VIEW_READ_MAX) {
		void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED)
			return -1;
		v->data = m;
		v->mapped = 1;
		return 0;
	}
	char *p = malloc(len);
	if (p == NULL)
		return -1;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n == 0 ? EIO : errno;
			free(p);
			errno = e;
			return -1;
		}
		got += (size_t)n;
	}
	v->data = p;
	return 0;
}

/* See fsutil.h. */
void fs_view_close(struct fs_view *v)
{
	if (v->data != NULL) {
		if (v->mapped)
			munmap((void *)v->data, v->len);
		else
			free((void *)v->data);
	}
	*v = (struct fs_view){ 0 };
}
