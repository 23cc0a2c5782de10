/* test-pool.c - the thread pool's lanes: a lane never runs more than its limit at once and
 * runs every job once; a thread idle after a job calls the idle hook once, on itself; threads
 * start as jobs need them, all but the last end when idle (calling the leave hook), and jobs
 * submitted after that still run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "ev.h"
#include "pool.h"

#define JOBS 9
#define LANE_MAX 2

static atomic_int running, most;
static int ndone;
static int order[JOBS];
static struct ev_loop *loop;

struct tjob {
	struct pool_job pj;
	int id;
};

/* Pool thread: count how many of the lane's jobs run at once. */
static void tjob_work(void *arg)
{
	(void)arg;
	int now = atomic_fetch_add(&running, 1) + 1;
	int m = atomic_load(&most);
	while (now > m && !atomic_compare_exchange_weak(&most, &m, now))
		;
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	atomic_fetch_sub(&running, 1);
}

/* Loop thread. */
static void tjob_done(void *arg)
{
	struct tjob *j = arg;
	assert_int_equal(j->pj.failed, 0);
	order[ndone++] = j->id;
	if (ndone == JOBS)
		ev_stop(loop);
}

/* Nine jobs in a lane of two on a pool of eight threads. */
static void test_lane_limit(void **state)
{
	(void)state;
	loop = ev_loop_new();
	assert_non_null(loop);
	struct pool *p = pool_new(loop, 8);
	assert_non_null(p);
	static struct pool_lane lane = { .max = LANE_MAX };
	static struct tjob jobs[JOBS];
	for (int i = 0; i < JOBS; i++) {
		jobs[i] = (struct tjob){ .pj = { .work = tjob_work, .done = tjob_done,
						 .arg = &jobs[i] }, .id = i };
		pool_lane_submit(&lane, p, &jobs[i].pj);
		assert_true(lane.nrunning <= LANE_MAX);
	}
	assert_int_equal(lane.nrunning, LANE_MAX);
	ev_run(loop);
	assert_int_equal(ndone, JOBS);
	assert_int_equal(lane.nrunning, 0);
	assert_null(lane.head);
	assert_true(atomic_load(&most) <= LANE_MAX);
	assert_int_equal(atomic_load(&most), LANE_MAX);
	int seen[JOBS] = { 0 };
	for (int i = 0; i < JOBS; i++)
		seen[order[i]]++;
	for (int i = 0; i < JOBS; i++)
		assert_int_equal(seen[i], 1);
	pool_free(&p);
	ev_loop_free(&loop);
}

static atomic_int nidle;
static _Thread_local int did_job;
static atomic_int idle_after_job;   /* the hook ran on a thread that had run a job */

/* Pool thread. */
static void mark_work(void *arg)
{
	(void)arg;
	did_job = 1;
}

/* Loop thread. */
static void mark_done(void *arg)
{
	(void)arg;
	ev_stop(loop);
}

/* Pool thread, idle. */
static void on_idle(void *arg)
{
	assert_ptr_equal(arg, &nidle);
	atomic_fetch_add(&nidle, 1);
	if (did_job)
		atomic_fetch_add(&idle_after_job, 1);
}

/* The idle hook: once per thread that ran a job and then waited, never for threads that
 * ran none; again only after another job. */
static void test_idle_hook(void **state)
{
	(void)state;
	loop = ev_loop_new();
	assert_non_null(loop);
	struct pool *p = pool_new(loop, 3);
	assert_non_null(p);
	pool_set_idle(p, 50, on_idle, NULL, &nidle);
	assert_int_equal(pool_submit(p, mark_work, mark_done, NULL), 0);
	ev_run(loop);
	struct timespec ts = { 0, 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	assert_int_equal(atomic_load(&nidle), 1);
	assert_int_equal(atomic_load(&idle_after_job), 1);
	assert_int_equal(pool_submit(p, mark_work, mark_done, NULL), 0);
	ev_run(loop);
	nanosleep(&ts, NULL);
	assert_int_equal(atomic_load(&nidle), 2);
	assert_int_equal(atomic_load(&idle_after_job), 2);
	pool_free(&p);
	ev_loop_free(&loop);
}

/* ---- threads that start on demand and end when idle ---- */

#define GROW 4

static pthread_mutex_t gmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gcv = PTHREAD_COND_INITIALIZER;
static int gwaiting, gndone, gwant;
static atomic_int nleave, nidle2;
static pthread_t last_thread;

/* Pool thread: wait until gwant jobs run at once (so each needs its own thread). */
static void together_work(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gmu);
	gwaiting++;
	pthread_cond_broadcast(&gcv);
	while (gwaiting < gwant)
		pthread_cond_wait(&gcv, &gmu);
	pthread_mutex_unlock(&gmu);
}

/* Pool thread: note which thread ran it. */
static void which_work(void *arg)
{
	*(pthread_t *)arg = pthread_self();
}

/* Loop thread: stop after gwant jobs. */
static void count_done(void *arg)
{
	(void)arg;
	if (++gndone == gwant)
		ev_stop(loop);
}

static void on_leave(void *arg)
{
	assert_ptr_equal(arg, &nleave);
	atomic_fetch_add(&nleave, 1);
}

static void on_idle2(void *arg)
{
	assert_ptr_equal(arg, &nleave);
	atomic_fetch_add(&nidle2, 1);
}

/* Run n jobs of work at once on p and wait for their done(). */
static void run_jobs(struct pool *p, pool_fn *work, void **args, int n)
{
	gwaiting = 0;
	gndone = 0;
	gwant = n;
	for (int i = 0; i < n; i++)
		assert_int_equal(pool_submit(p, work, count_done, args ? args[i] : NULL), 0);
	ev_run(loop);
	assert_int_equal(gndone, n);
}

static void stop_timer(struct ev_timer *t)
{
	(void)t;
	ev_stop(loop);
}

/* Let the loop run for ms (joins the threads that ended). */
static void spin_loop(unsigned ms)
{
	static struct ev_timer t;
	ev_timer_set(loop, &t, ms, stop_timer, NULL);
	ev_run(loop);
}

static void test_threads_end(void **state)
{
	(void)state;
	loop = ev_loop_new();
	assert_non_null(loop);
	struct pool *p = pool_new(loop, GROW + 2);
	assert_non_null(p);
	pool_set_idle(p, 100, on_idle2, on_leave, &nleave);
	struct pool_stats st;
	pool_stats(p, &st);
	assert_int_equal(st.live, 0);        /* none before the first job */
	run_jobs(p, together_work, NULL, GROW);
	pool_stats(p, &st);
	assert_int_equal(st.started, GROW);  /* one per job that had to run at once */
	spin_loop(300);
	for (int i = 0; i < 50; i++) {       /* a loaded machine may be slower: up to 5 s more */
		pool_stats(p, &st);
		if (st.ended >= GROW - 1)
			break;
		spin_loop(100);
	}
	spin_loop(300);                      /* none more ends */
	pool_stats(p, &st);
	assert_int_equal(st.live, 1);        /* the last stays */
	assert_int_equal(st.ended, GROW - 1);
	assert_int_equal(atomic_load(&nleave), GROW - 1);
	assert_int_equal(atomic_load(&nidle2), 1);
	/* jobs one after the other go to the thread left, none is started */
	pthread_t a = 0, b = 0;
	void *args[1] = { &a };
	run_jobs(p, which_work, args, 1);
	args[0] = &b;
	run_jobs(p, which_work, args, 1);
	assert_true(pthread_equal(a, b));
	last_thread = a;
	pool_stats(p, &st);
	assert_int_equal(st.started, GROW);
	/* a burst again starts what it needs */
	run_jobs(p, together_work, NULL, GROW);
	pool_stats(p, &st);
	assert_int_equal(st.started, GROW + GROW - 1);
	pool_free(&p);                      /* the leave hook runs on every thread left */
	assert_int_equal(atomic_load(&nleave), (GROW - 1) + GROW);
	ev_loop_free(&loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lane_limit),
		cmocka_unit_test(test_idle_hook),
		cmocka_unit_test(test_threads_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
