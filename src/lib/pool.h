/* pool.h - a small thread pool for blocking work (password checks, fsync, SQLite writes).
 *
 * work(arg) runs on a pool thread; done(arg) then runs on the loop thread. A job's arg must stay
 * alive until done() runs; a session that goes away meanwhile marks itself and lets done() free it.
 */
#ifndef POSTINO_POOL_H
#define POSTINO_POOL_H

#include <stddef.h>

struct ev_loop;
struct pool;

typedef void pool_fn(void *arg);

struct pool *pool_new(struct ev_loop *loop, unsigned nthreads);
/* Finish queued jobs, join the threads, free. */
void pool_free(struct pool **p);
/* 0 queued, -1 out of memory or the pool is being freed. */
int pool_submit(struct pool *p, pool_fn *work, pool_fn *done, void *arg);
/* Jobs queued or running whose done() has not run yet. */
size_t pool_pending(const struct pool *p);

#endif
