/* fsutil.c - small file-system helpers shared by every process. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
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
