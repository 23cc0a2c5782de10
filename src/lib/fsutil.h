/* fsutil.h - small file-system helpers shared by every process. */
#ifndef POSTINO_FSUTIL_H
#define POSTINO_FSUTIL_H

/* fsync the directory at path, so that the entries created, renamed or removed in it are
 * durable. 0 ok, -1 with errno (from open or fsync) kept. */
int fs_fsync_dir(const char *path);

#endif
