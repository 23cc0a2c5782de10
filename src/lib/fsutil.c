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
