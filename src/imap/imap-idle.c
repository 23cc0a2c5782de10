/* imap-idle.c - IDLE woken by change notification instead of polling.
 *
 * Every writer of an account's index (delivery by the queue process, IMAP and POP3 sessions in
 * any worker, the CLI) commits through SQLite's WAL, so a write shows as IN_MODIFY on the
 * account directory's index.db-wal. Each worker process has one inotify descriptor in its loop
 * and one watch per account directory that has IDLE sessions in this worker (refcounted by them).
 * Only writes to the WAL count: readers touch only the -shm (through mmap, which inotify does not
 * see), and a checkpoint writes index.db and may delete the WAL, neither of which is watched, so
 * a session checking for changes, or closing its handle, cannot wake anyone.
 *
 * A burst of writes gives one check per session (IDLE_SETTLE_MS after the last event). A writer
 * makes its commit visible in the -shm only after the WAL write and its fsync, so the sessions
 * look again a few times (idle_passes_ms, up to a second after the last event) in case the first
 * look came too early; each look is a few index reads, and only writes start them. A slow safety poll stays (IMAP_IDLE_SAFETY_MS, e.g. for a data directory on a file
 * system whose writes by other hosts inotify does not see); a session whose watch cannot be
 * added (inotify_add_watch: ENOSPC at fs.inotify.max_user_watches) polls as before
 * (IMAP_IDLE_POLL_MS), with one warning per worker.
 */
#include "imap-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"

#define IDLE_SETTLE_MS 5         /* coalesce a burst of WAL writes into one check */
#define IDLE_WAL_NAME "index.db-wal"
#define IDLE_EVBUF 8192          /* inotify read buffer: many events per read(2) */

/* One watched account directory and the IDLE sessions of this worker on it. */
struct idle_watch {
	int wd;                        /* -1 once the kernel dropped it (directory removed) */
	unsigned pass;                 /* the check pass the timer runs (idle_passes_ms) */
	struct ev_timer timer;
	struct imap_session *sessions; /* through idle_next/idle_prev */
	struct idle_watch *next;
};

/* This worker process's inotify state (one loop per worker process). */
static struct {
	struct ev_loop *loop;
	int fd;                        /* -1 none yet; -2 inotify_init failed (poll only) */
	struct ev_io io;
	struct idle_watch *watches;
	int warned;
} idle = { NULL, -1, { 0, 0, NULL, NULL }, NULL, 0 };

/* When the sessions of a watch look, in ms after the last write seen: soon, then again while a
 * writer's fsync may still hide its commit (measured here: up to ~100 ms). */
static const uint64_t idle_passes_ms[] = { IDLE_SETTLE_MS, 30, 100, 300, 1000 };
#define IDLE_PASSES (sizeof(idle_passes_ms) / sizeof(idle_passes_ms[0]))

/* A check pass of a watch: its sessions look for changes; the next pass is armed. */
static void idle_watch_timer(struct ev_timer *t)
{
	struct idle_watch *w = t->arg;
	unsigned pass = w->pass;
	if (pass + 1 < IDLE_PASSES) {
		w->pass = pass + 1;
		ev_timer_set(idle.loop, &w->timer, idle_passes_ms[pass + 1] - idle_passes_ms[pass],
			     idle_watch_timer, w);
	}
	/* a check may close a session, but closing is deferred: the list stays as it is */
	for (struct imap_session *s = w->sessions; s; s = s->idle_next)
		imap_idle_check(s);
}

/* A write on a watch: its sessions look soon (coalesced), then again (idle_passes_ms). */
static void idle_watch_changed(struct idle_watch *w)
{
	w->pass = 0;
	ev_timer_set(idle.loop, &w->timer, IDLE_SETTLE_MS, idle_watch_timer, w);
}

/* The watch with descriptor wd, or NULL. */
static struct idle_watch *idle_watch_find(int wd)
{
	for (struct idle_watch *w = idle.watches; w; w = w->next)
		if (w->wd == wd)
			return w;
	return NULL;
}

/* inotify events: a write to an index WAL wakes that account's IDLE sessions. */
static void idle_on_events(struct ev_io *io, unsigned events)
{
	(void)events;
	char buf[IDLE_EVBUF] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(io->fd, buf, sizeof(buf));
		if (n <= 0)
			return;   /* EAGAIN: drained */
		for (char *p = buf; p + sizeof(struct inotify_event) <= buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)(void *)p;
			p += sizeof(*e) + e->len;
			if (e->mask & IN_Q_OVERFLOW) {   /* events lost: everyone looks */
				for (struct idle_watch *w = idle.watches; w; w = w->next)
					idle_watch_changed(w);
				continue;
			}
			struct idle_watch *w = idle_watch_find(e->wd);
			if (w == NULL)
				continue;   /* removed while the event was queued */
			if (e->mask & IN_IGNORED) {   /* the directory is gone */
				w->wd = -1;
				idle_watch_changed(w);
				continue;
			}
			if ((e->mask & IN_MODIFY) && e->len > 0 && strcmp(e->name, IDLE_WAL_NAME) == 0)
				idle_watch_changed(w);
		}
	}
}

/* This worker's inotify descriptor, created on first use. 0, or -1 (then sessions poll). */
static int idle_init(struct ev_loop *loop)
{
	if (idle.fd >= 0)
		return 0;
	if (idle.fd == -2)
		return -1;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || ev_io_add(loop, &idle.io, fd, EV_READ, idle_on_events, NULL) < 0) {
		log_warn("event=imap-idle-notify result=fail error=\"%s\" hint=\"IDLE sessions poll "
			 "the index every %u ms instead; raise fs.inotify.max_user_instances\"",
			 strerror(errno), IMAP_IDLE_POLL_MS);
		if (fd >= 0)
			close(fd);
		idle.fd = -2;
		return -1;
	}
	idle.fd = fd;
	idle.loop = loop;
	return 0;
}

/* See imap-private.h. */
int imap_idle_watch(struct imap_session *s)
{
	if (s->idle_watch || s->acct_root == NULL || idle_init(s->base.w->loop) < 0)
		return s->idle_watch ? 0 : -1;
	int wd = inotify_add_watch(idle.fd, s->acct_root, IN_MODIFY | IN_ONLYDIR);
	if (wd < 0) {
		if (!idle.warned) {
			idle.warned = 1;
			log_warn("event=imap-idle-watch result=fail dir=%s error=\"%s\" hint=\"this "
				 "session polls the index every %u ms instead; raise "
				 "fs.inotify.max_user_watches\"", s->acct_root, strerror(errno),
				 IMAP_IDLE_POLL_MS);
		}
		return -1;
	}
	struct idle_watch *w = idle_watch_find(wd);
	if (w == NULL) {
		w = calloc(1, sizeof(*w));
		if (w == NULL) {
			inotify_rm_watch(idle.fd, wd);
			return -1;
		}
		w->wd = wd;
		w->next = idle.watches;
		idle.watches = w;
	}
	s->idle_watch = w;
	s->idle_prev = NULL;
	s->idle_next = w->sessions;
	if (w->sessions)
		w->sessions->idle_prev = s;
	w->sessions = s;
	return 0;
}

/* See imap-private.h. */
void imap_idle_unwatch(struct imap_session *s)
{
	struct idle_watch *w = s->idle_watch;
	if (w == NULL)
		return;
	if (s->idle_prev)
		s->idle_prev->idle_next = s->idle_next;
	else
		w->sessions = s->idle_next;
	if (s->idle_next)
		s->idle_next->idle_prev = s->idle_prev;
	s->idle_watch = NULL;
	s->idle_next = s->idle_prev = NULL;
	if (w->sessions)
		return;
	ev_timer_cancel(idle.loop, &w->timer);
	if (w->wd >= 0)
		inotify_rm_watch(idle.fd, w->wd);
	for (struct idle_watch **pp = &idle.watches; *pp; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	free(w);
}
