/* fsyncshim.c - a test-only LD_PRELOAD library that watches and breaks fsync(2)/fdatasync(2)
 * and syncfs(2).
 *
 * Never linked into postino; tests/e2e/test_group_commit.py builds it with cc and starts a server
 * with LD_PRELOAD=fsyncshim.so POSTINO_FSYNC_SHIM=<dir>. In <dir>:
 *   log    every synced path is appended, one line each (what was synced and how often); a
 *          syncfs is "syncfs <path of the descriptor it was given>"
 *   delay  "<ms> <pattern>": sleep before each sync of a path containing pattern
 *   fail   "<skip> <count> <pattern>": of the syncs of paths containing pattern, let <skip> pass,
 *          then fail <count> (-1: all) with EIO; the file is rewritten under flock
 *   notmpfile  present: open(2) with O_TMPFILE fails with EOPNOTSUPP, as on a file system
 *          without it
 *   unlinkdelay  "<ms> <pattern>": sleep before each unlink(2) of a path containing pattern (a
 *          file system that discards freed blocks makes an unlink wait for the disk)
 *   timeline  every sync that succeeded, "<begin> <end> sync <path>" (syncfs: "syncfs <path>"),
 *          and every linkat(2) or link(2) that succeeded, "<when> <when> link <new path>", in
 *          CLOCK_MONOTONIC nanoseconds: which 250 came after which sync
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define SHIM_PATH_MAX 4096   /* PATH_MAX */
#define SHIM_PATTERN_MAX 256 /* bytes of a pattern in the control files */

typedef int sync_fn(int fd);

/* Read a small control file into out (NUL-terminated); -1 when absent. */
static int shim_read(int fd, char *out, size_t outlen)
{
	ssize_t n = pread(fd, out, outlen - 1, 0);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* Sleep as the control file <name> ("<ms> <pattern>") says when path contains the pattern. */
static void shim_delay(const char *name, const char *path)
{
	const char *dir = getenv("POSTINO_FSYNC_SHIM");
	char p[SHIM_PATH_MAX + 16], text[SHIM_PATTERN_MAX + 64], pat[SHIM_PATTERN_MAX];
	if (dir == NULL)
		return;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	long ms;
	if (shim_read(fd, text, sizeof(text)) == 0 &&
	    sscanf(text, "%ld %255s", &ms, pat) == 2 && strstr(path, pat) != NULL) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
	close(fd);
}

/* Decide about one sync of path: 0 let it run, -1 fail it. Logs and delays as configured. */
static int shim_before(const char *path)
{
	const char *dir = getenv("POSTINO_FSYNC_SHIM");
	char p[SHIM_PATH_MAX + 16], line[SHIM_PATH_MAX + 2], text[SHIM_PATTERN_MAX + 64];
	char pat[SHIM_PATTERN_MAX];
	if (dir == NULL)
		return 0;
	snprintf(p, sizeof(p), "%s/log", dir);
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0) {
		int n = snprintf(line, sizeof(line), "%s\n", path);
		ssize_t w = write(fd, line, (size_t)n);   /* one write: lines never interleave */
		(void)w;
		close(fd);
	}
	shim_delay("delay", path);
	snprintf(p, sizeof(p), "%s/fail", dir);
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int verdict = 0;
	long skip, count;
	flock(fd, LOCK_EX);
	if (shim_read(fd, text, sizeof(text)) == 0 &&
	    sscanf(text, "%ld %ld %255s", &skip, &count, pat) == 3 && strstr(path, pat) != NULL) {
		if (skip > 0)
			skip--;
		else if (count != 0) {
			verdict = -1;
			if (count > 0)
				count--;
		}
		int n = snprintf(text, sizeof(text), "%ld %ld %s\n", skip, count, pat);
		if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n)
			fprintf(stderr, "fsyncshim: cannot rewrite %s\n", p);
	}
	flock(fd, LOCK_UN);
	close(fd);
	return verdict;
}

/* Nanoseconds of CLOCK_MONOTONIC. */
static unsigned long long shim_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* One line of the timeline. */
static void shim_timeline(unsigned long long begin, const char *what, const char *path)
{
	const char *dir = getenv("POSTINO_FSYNC_SHIM");
	char p[SHIM_PATH_MAX + 16], line[SHIM_PATH_MAX + 80];
	if (dir == NULL)
		return;
	snprintf(p, sizeof(p), "%s/timeline", dir);
	int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	int n = snprintf(line, sizeof(line), "%llu %llu %s %s\n", begin, shim_now(), what, path);
	ssize_t w = write(fd, line, (size_t)n);   /* one write: lines never interleave */
	(void)w;
	close(fd);
}

/* The path behind fd, or "?" */
static void shim_path(int fd, char *out, size_t outlen)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, out, outlen - 1);
	if (n < 0)
		n = snprintf(out, outlen, "?");
	out[n] = '\0';
}

/* Common body of the wrappers. */
static int shim_sync(int fd, const char *name)
{
	char path[SHIM_PATH_MAX];
	sync_fn *real = (sync_fn *)dlsym(RTLD_NEXT, name);
	if (strcmp(name, "syncfs") == 0) {
		memcpy(path, "syncfs ", 7);
		shim_path(fd, path + 7, sizeof(path) - 7);
	} else {
		shim_path(fd, path, sizeof(path));
	}
	if (shim_before(path) < 0) {
		errno = EIO;
		return -1;
	}
	unsigned long long begin = shim_now();
	int rc = real(fd);
	if (rc == 0)
		shim_timeline(begin, "sync", path);
	return rc;
}

/* linkat(2), watched: the timeline notes where a file was linked. */
int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
	typedef int linkat_fn(int, const char *, int, const char *, int);
	linkat_fn *real = (linkat_fn *)dlsym(RTLD_NEXT, "linkat");
	int rc = real(olddirfd, oldpath, newdirfd, newpath, flags);
	if (rc == 0)
		shim_timeline(shim_now(), "link", newpath);
	return rc;
}

/* link(2), watched as linkat (COPY hard-links with it). */
int link(const char *oldpath, const char *newpath)
{
	typedef int link_fn(const char *, const char *);
	link_fn *real = (link_fn *)dlsym(RTLD_NEXT, "link");
	int rc = real(oldpath, newpath);
	if (rc == 0)
		shim_timeline(shim_now(), "link", newpath);
	return rc;
}

/* unlink(2), delayed as "unlinkdelay" says. */
int unlink(const char *path)
{
	typedef int unlink_fn(const char *);
	unlink_fn *real = (unlink_fn *)dlsym(RTLD_NEXT, "unlink");
	shim_delay("unlinkdelay", path);
	return real(path);
}

/* fsync(2), watched. */
int fsync(int fd)
{
	return shim_sync(fd, "fsync");
}

/* fdatasync(2), watched. */
int fdatasync(int fd)
{
	return shim_sync(fd, "fdatasync");
}

/* syncfs(2), watched. */
int syncfs(int fd)
{
	return shim_sync(fd, "syncfs");
}

/* open(2): O_TMPFILE refused while "notmpfile" exists; everything else passed on. */
int open(const char *path, int flags, ...)
{
	typedef int open_fn(const char *, int, ...);
	open_fn *real = (open_fn *)dlsym(RTLD_NEXT, "open");
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	const char *dir = getenv("POSTINO_FSYNC_SHIM");
	if (dir != NULL && (flags & O_TMPFILE) == O_TMPFILE) {
		char p[SHIM_PATH_MAX + 16];
		snprintf(p, sizeof(p), "%s/notmpfile", dir);
		if (access(p, F_OK) == 0) {
			errno = EOPNOTSUPP;
			return -1;
		}
	}
	return real(path, flags, mode);
}

/* open64(2) is the same function on 64-bit systems. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));
