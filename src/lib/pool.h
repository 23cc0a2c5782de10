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

/* A pool of up to nthreads threads, started as jobs come (none before the first job). */
struct pool *pool_new(struct ev_loop *loop, unsigned nthreads);
/* Finish queued jobs, join the threads, free. */
void pool_free(struct pool **p);
/* 0 queued, -1 out of memory, no thread could be started, or the pool is being freed. */
int pool_submit(struct pool *p, pool_fn *work, pool_fn *done, void *arg);
/* A thread that has had no job for ms after running one gives back what it keeps for its next
 * jobs (open handles, freed memory its malloc cache holds): the last thread of the pool calls
 * idle(arg) on itself and waits on; any other calls leave(arg) on itself and ends (leave must
 * free every per-thread thing idle does and the rest; the loop then trims the heap). Without a
 * leave hook no thread ends before pool_free. leave also runs on each thread in pool_free. A
 * new job goes to the thread that went idle last, so a light load does not keep them all. */
void pool_set_idle(struct pool *p, unsigned ms, pool_fn *idle, pool_fn *leave, void *arg);
/* Jobs queued or running whose done() has not run yet. */
size_t pool_pending(const struct pool *p);

struct pool_stats {
	unsigned live;      /* threads running or waiting for a job */
	unsigned started;   /* threads started since pool_new */
	unsigned ended;     /* threads that ended (idle, or pool_free) */
};
void pool_stats(struct pool *p, struct pool_stats *st);

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
