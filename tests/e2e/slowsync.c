/* slowsync.c - an LD_PRELOAD shim for the end-to-end tests (never part of postino): it makes a
 * slow disk sync observable without timings.
 *
 * The test steers it through files in the directory $SLOWSYNC_GATE. While "armed" exists and
 * holds "MIN MATCH", an fsync() or fdatasync() of a file whose path contains MATCH (a regular
 * file of at least MIN octets, or a directory) creates "waiting" and then waits until
 * "release" exists or "armed" is gone (at most SLOWSYNC_HOLD_MAX_S), then syncs. With "fail"
 * present it fails with EIO instead. With "armed" holding "0 busy", a usleep() (SQLite's busy
 * handler waiting for another connection's write lock) creates "waiting" and sleeps as asked.
 * Without SLOWSYNC_GATE the shim only passes the calls on.
 *
 * Build: cc -shared -fPIC -O2 -o slowsync.so slowsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SLOWSYNC_HOLD_MAX_S 120      /* a test that never releases does not hang the server */
#define SLOWSYNC_POLL_NS 10000000L   /* 10 ms between looks at the gate */

typedef int sync_fn(int fd);
typedef int usleep_fn(useconds_t us);

/* 1 if name exists in the gate directory. */
static int gate_has(const char *gate, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", gate, name);
	return access(p, F_OK) == 0;
}

/* Create name in the gate directory. */
static void gate_touch(const char *gate, const char *name)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", gate, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (fd >= 0)
		close(fd);
}

/* 0 pass on now, -1 fail with EIO; holds while the gate is shut. */
static int gate(int fd)
{
	const char *g = getenv("SLOWSYNC_GATE");
	char link[64], path[PATH_MAX], armed[PATH_MAX], match[PATH_MAX];
	long long min;
	struct stat st;
	if (g == NULL || fstat(fd, &st) < 0)
		return 0;
	snprintf(armed, sizeof(armed), "%s/armed", g);
	FILE *f = fopen(armed, "re");
	if (f == NULL)
		return 0;
	int n_read = fscanf(f, "%lld %4095s", &min, match);
	fclose(f);
	if (n_read != 2 || strcmp(match, "busy") == 0)
		return 0;
	if (S_ISREG(st.st_mode) && st.st_size < min)
		return 0;
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0)
		return 0;
	path[n] = '\0';
	if (strstr(path, match) == NULL)
		return 0;
	if (gate_has(g, "fail"))
		return -1;
	gate_touch(g, "waiting");
	struct timespec ts = { 0, SLOWSYNC_POLL_NS };
	for (long i = 0; i < SLOWSYNC_HOLD_MAX_S * (1000000000L / SLOWSYNC_POLL_NS); i++) {
		if (gate_has(g, "release") || !gate_has(g, "armed"))
			break;
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* usleep(3): signals a wait for an SQLite lock when the gate says "busy". */
int usleep(useconds_t us)
{
	static usleep_fn *real;
	const char *g = getenv("SLOWSYNC_GATE");
	if (real == NULL)
		real = (usleep_fn *)dlsym(RTLD_NEXT, "usleep");
	if (g != NULL) {
		char armed[PATH_MAX], word[16] = "";
		long long min;
		snprintf(armed, sizeof(armed), "%s/armed", g);
		FILE *f = fopen(armed, "re");
		if (f != NULL) {
			if (fscanf(f, "%lld %15s", &min, word) == 2 && strcmp(word, "busy") == 0)
				gate_touch(g, "waiting");
			fclose(f);
		}
	}
	return real(us);
}

/* fsync(2), held or failed by the gate. */
int fsync(int fd)
{
	static sync_fn *real;
	if (real == NULL)
		real = (sync_fn *)dlsym(RTLD_NEXT, "fsync");
	if (gate(fd) < 0) {
		errno = EIO;
		return -1;
	}
	return real(fd);
}

/* fdatasync(2), held or failed by the gate. */
int fdatasync(int fd)
{
	static sync_fn *real;
	if (real == NULL)
		real = (sync_fn *)dlsym(RTLD_NEXT, "fdatasync");
	if (gate(fd) < 0) {
		errno = EIO;
		return -1;
	}
	return real(fd);
}
