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
/* A thread that has had no job for ms after running one calls fn(arg) once, on itself, before it
 * waits on: the place to give back what the thread keeps for its next jobs (open handles, freed
 * memory its malloc arena still holds). Jobs queued meanwhile go to the other threads. */
void pool_set_idle(struct pool *p, unsigned ms, pool_fn *fn, void *arg);
/* Jobs queued or running whose done() has not run yet. */
size_t pool_pending(const struct pool *p);

/* A lane into a pool: at most `max` of its jobs run at once, the others wait in order, so
 * jobs that may wait long (on milters, on DNS) cannot take every thread from the others.
 * Loop thread only. A lane is zeroed storage with `max` set; the job's storage is the
 * caller's and must live until its done() runs. */
struct pool_job {
	pool_fn *work;                /* pool thread */
	pool_fn *done;                /* loop thread; `failed` set: work never ran (no memory) */
	void *arg;
	int failed;
	struct pool_lane *lane;
	struct pool_job *next;
};

struct pool_lane {
	unsigned max, nrunning;
	struct pool *pool;
	struct pool_job *head, *tail;
};

/* Queue j in the lane, on pool p; it starts when fewer than max of the lane's run. When the
 * pool cannot take it and none of the lane's jobs runs (so none would retry), done() runs at
 * once with `failed` set. */
void pool_lane_submit(struct pool_lane *l, struct pool *p, struct pool_job *j);

#endif
