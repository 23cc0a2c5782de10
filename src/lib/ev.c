/* ev.c - epoll event loop with a binary-heap timer queue and deferred calls. */
#include "ev.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct ev_deferred {
	ev_defer_cb *cb;
	void *arg;
};

struct ev_loop {
	int epfd;
	int stop;
	struct ev_timer **heap;    /* heap[1..nheap] */
	size_t nheap, capheap;
	struct ev_deferred *defer;
	size_t ndefer, capdefer;
};

/* Monotonic milliseconds. */
uint64_t ev_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Blocking wait for fd events until deadline (threads off the loop). */
int ev_wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = ev_now_ms();
		if (now >= deadline)
			return 0;
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r > 0)
			return 1;
	}
}

/* Create a loop. NULL on failure. */
struct ev_loop *ev_loop_new(void)
{
	struct ev_loop *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		free(l);
		return NULL;
	}
	return l;
}

/* Free a loop; registered objects are not touched. */
void ev_loop_free(struct ev_loop **lp)
{
	struct ev_loop *l = *lp;
	if (l == NULL)
		return;
	close(l->epfd);
	free(l->heap);
	free(l->defer);
	free(l);
	*lp = NULL;
}

/* Translate our event bits to epoll's. */
static uint32_t ev_to_epoll(unsigned ev)
{
	uint32_t e = 0;
	if (ev & EV_READ)
		e |= EPOLLIN | EPOLLRDHUP;
	if (ev & EV_WRITE)
		e |= EPOLLOUT;
	return e;
}

/* Register an fd. */
int ev_io_add(struct ev_loop *l, struct ev_io *io, int fd, unsigned events, ev_io_cb *cb, void *arg)
{
	struct epoll_event ee = { .events = ev_to_epoll(events), .data.ptr = io };
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->arg = arg;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ee);
}

/* Change the events an fd is watched for; a no-op when unchanged. */
int ev_io_mod(struct ev_loop *l, struct ev_io *io, unsigned events)
{
	if (io->events == events)
		return 0;
	struct epoll_event ee = { .events = ev_to_epoll(events), .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ee);
}

/* Stop watching an fd (before closing it). */
void ev_io_del(struct ev_loop *l, struct ev_io *io)
{
	if (io->fd >= 0)
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fd = -1;
}

/* Swap two heap slots and keep their back-indices right. */
static void heap_swap(struct ev_loop *l, size_t a, size_t b)
{
	struct ev_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

/* Restore heap order around slot i. */
static void heap_fix(struct ev_loop *l, size_t i)
{
	while (i > 1 && l->heap[i]->when < l->heap[i / 2]->when) {
		heap_swap(l, i, i / 2);
		i /= 2;
	}
	for (;;) {
		size_t c = i * 2, m = i;
		if (c <= l->nheap && l->heap[c]->when < l->heap[m]->when)
			m = c;
		if (c + 1 <= l->nheap && l->heap[c + 1]->when < l->heap[m]->when)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

/* Disarm a timer; harmless if it is not armed. */
void ev_timer_cancel(struct ev_loop *l, struct ev_timer *t)
{
	size_t i = t->heap_idx;
	if (i == 0)
		return;
	heap_swap(l, i, l->nheap);
	l->nheap--;
	t->heap_idx = 0;
	if (i <= l->nheap)
		heap_fix(l, i);
}

/* Arm a one-shot timer. Out of memory here is fatal: a session without a timeout is unbounded. */
void ev_timer_set(struct ev_loop *l, struct ev_timer *t, uint64_t ms, ev_timer_cb *cb, void *arg)
{
	ev_timer_cancel(l, t);
	t->when = ev_now_ms() + ms;
	t->cb = cb;
	t->arg = arg;
	if (l->nheap + 1 >= l->capheap) {
		size_t ncap = l->capheap ? l->capheap * 2 : 64;
		struct ev_timer **h = realloc(l->heap, ncap * sizeof(*h));
		if (h == NULL)
			abort();
		l->heap = h;
		l->capheap = ncap;
	}
	l->heap[++l->nheap] = t;
	t->heap_idx = l->nheap;
	heap_fix(l, l->nheap);
}

/* Queue a call for after this dispatch round. */
int ev_defer(struct ev_loop *l, ev_defer_cb *cb, void *arg)
{
	if (l->ndefer == l->capdefer) {
		size_t ncap = l->capdefer ? l->capdefer * 2 : 32;
		struct ev_deferred *d = realloc(l->defer, ncap * sizeof(*d));
		if (d == NULL)
			return -1;
		l->defer = d;
		l->capdefer = ncap;
	}
	l->defer[l->ndefer].cb = cb;
	l->defer[l->ndefer].arg = arg;
	l->ndefer++;
	return 0;
}

/* Run deferred calls, including ones queued while running them. */
static void run_deferred(struct ev_loop *l)
{
	for (size_t i = 0; i < l->ndefer; i++) {
		struct ev_deferred d = l->defer[i];
		d.cb(d.arg);
	}
	l->ndefer = 0;
}

/* Fire every timer that is due. */
static void run_timers(struct ev_loop *l)
{
	uint64_t now = ev_now_ms();
	while (l->nheap > 0 && l->heap[1]->when <= now) {
		struct ev_timer *t = l->heap[1];
		ev_timer_cancel(l, t);
		t->cb(t);
	}
}

/* The loop. */
int ev_run(struct ev_loop *l)
{
	struct epoll_event evs[64];
	l->stop = 0;
	while (!l->stop) {
		int timeout = -1;
		if (l->ndefer > 0) {
			timeout = 0;
		} else if (l->nheap > 0) {
			uint64_t now = ev_now_ms();
			timeout = l->heap[1]->when <= now ? 0 : (int)(l->heap[1]->when - now);
		}
		int n = epoll_wait(l->epfd, evs, 64, timeout);
		if (n < 0) {
			if (errno == EINTR) {
				run_deferred(l);
				continue;
			}
			return -1;
		}
		for (int i = 0; i < n; i++) {
			struct ev_io *io = evs[i].data.ptr;
			unsigned e = 0;
			if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
				e |= EV_READ;
			if (evs[i].events & EPOLLOUT)
				e |= EV_WRITE;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				e |= EV_ERROR | EV_READ;
			if (io->fd >= 0)
				io->cb(io, e);
		}
		run_timers(l);
		run_deferred(l);
	}
	return 0;
}

/* Make ev_run return after the current round. */
void ev_stop(struct ev_loop *l)
{
	l->stop = 1;
}
