/* ev.h - a single-threaded event loop over epoll, with timers and deferred calls.
 *
 * Callbacks run on the loop thread only. An object registered with the loop must stay alive until
 * it is removed; to free an object from inside a callback chain, remove it and free it from an
 * ev_defer() callback, which runs after the current batch of events has been dispatched.
 */
#ifndef POSTINO_EV_H
#define POSTINO_EV_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;

enum { EV_READ = 1, EV_WRITE = 2, EV_ERROR = 4 };

struct ev_io;
typedef void ev_io_cb(struct ev_io *io, unsigned events);
struct ev_io {
	int fd;
	unsigned events;
	ev_io_cb *cb;
	void *arg;
};

struct ev_timer;
typedef void ev_timer_cb(struct ev_timer *t);
struct ev_timer {
	uint64_t when;      /* monotonic ms */
	size_t heap_idx;    /* 0 = not armed, else 1-based index in the heap */
	ev_timer_cb *cb;
	void *arg;
};

typedef void ev_defer_cb(void *arg);

struct ev_loop *ev_loop_new(void);
void ev_loop_free(struct ev_loop **loop);
uint64_t ev_now_ms(void);
/* Off the loop only (pool and queue threads): wait in poll() for events (POLLIN/POLLOUT) on fd
 * until deadline (ev_now_ms() time). 1 ready, 0 timed out, -1 error (errno set). */
int ev_wait_fd(int fd, short events, uint64_t deadline);

/* Register fd for events (EV_READ|EV_WRITE). 0 ok, -1 error (errno set). */
int ev_io_add(struct ev_loop *loop, struct ev_io *io, int fd, unsigned events, ev_io_cb *cb,
	      void *arg);
int ev_io_mod(struct ev_loop *loop, struct ev_io *io, unsigned events);
void ev_io_del(struct ev_loop *loop, struct ev_io *io);

/* Arm (or re-arm) a one-shot timer ms from now. */
void ev_timer_set(struct ev_loop *loop, struct ev_timer *t, uint64_t ms, ev_timer_cb *cb, void *arg);
void ev_timer_cancel(struct ev_loop *loop, struct ev_timer *t);

/* Run cb(arg) after the current dispatch round. 0 ok, -1 out of memory. */
int ev_defer(struct ev_loop *loop, ev_defer_cb *cb, void *arg);

/* Run until ev_stop(). Returns 0, or -1 on an epoll failure. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);

#endif
