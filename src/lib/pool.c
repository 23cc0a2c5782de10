/* pool.c - worker threads hand finished jobs back to the loop through an eventfd.
 *
 * Threads start on demand: a job queued while no thread waits starts one, up to the pool's
 * maximum. A waiting thread sits on its own condition variable in a stack of idle threads, and
 * a new job goes to the one that went idle last, so a light load keeps reusing the same thread
 * (its handles and malloc cache stay warm) and the others stay idle long enough to end. A
 * thread idle for idle_ms after a job calls the idle hook; then, unless it is the last, the
 * leave hook, and ends: its malloc cache and stack go back (~600 KB a thread after a burst of
 * logins). The loop joins ended threads when it next runs the done() callbacks and trims. */
#include "pool.h"
#include "ev.h"
#include "log.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct job {
	pool_fn *work, *done;
	void *arg;
	struct job *next;
};

/* One pool thread. */
struct pthr {
	struct pool *p;
	pthread_t id;
	pthread_cond_t cv;          /* signalled when a job is handed to it, or to stop */
	struct pthr *prev, *next;   /* on the idle stack, or on the list of ended threads */
	int idle;                   /* on the idle stack */
};

struct pool {
	struct ev_loop *loop;
	pthread_mutex_t mu;
	struct job *todo_head, *todo_tail;   /* waiting for a thread */
	struct job *done_head, *done_tail;   /* waiting for the loop */
	int quit;
	int efd;
	int signaled;        /* efd was written since the loop last took the done list */
	struct ev_io io;
	unsigned max;                        /* threads at most */
	unsigned nlive;                      /* started, still taking jobs */
	unsigned nthreads;                   /* started, not yet on the ended list */
	unsigned nstarted, nended;           /* counters over the pool's life (pool_stats) */
	size_t pending;
	struct pthr *idle;                   /* waiting threads, the last to go idle first */
	struct pthr *ended;                  /* ended, not yet joined */
	pthread_cond_t all_ended;            /* pool_free: nthreads reached 0 */
	pool_fn *idle_fn, *leave_fn;         /* pool_set_idle */
	void *idle_arg;
	unsigned idle_ms;
};

/* Append a job to a singly linked FIFO. */
static void jobq_push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* Take t off the idle stack (mu held). */
static void idle_remove(struct pool *p, struct pthr *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		p->idle = t->next;
	if (t->next)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->idle = 0;
}

/* The deadline ms from now on the pool's clock. */
static struct timespec deadline_in(unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	return until;
}

/* With p->mu held: wake the loop, unless it was woken and has not looked yet (jobs that end
 * together cost it one wake-up and one eventfd write, not one each). */
static void pool_signal(struct pool *p)
{
	if (p->signaled)
		return;
	p->signaled = 1;
	uint64_t one = 1;
	ssize_t w = write(p->efd, &one, sizeof(one));
	(void)w;
}

/* A pool thread: take jobs, run them, hand them back; after idle_ms without a job, give back
 * what it keeps and, unless it is the last thread, end. */
static void *pool_thread(void *arg)
{
	struct pthr *t = arg;
	struct pool *p = t->p;
	int idled = 0;   /* the idle hook ran since the last job */
	pthread_mutex_lock(&p->mu);
	for (;;) {
		if (p->todo_head != NULL) {
			struct job *j = p->todo_head;
			p->todo_head = j->next;
			if (p->todo_head == NULL)
				p->todo_tail = NULL;
			pthread_mutex_unlock(&p->mu);
			j->work(j->arg);
			pthread_mutex_lock(&p->mu);
			jobq_push(&p->done_head, &p->done_tail, j);
			pool_signal(p);
			idled = 0;
			continue;
		}
		if (p->quit)
			break;
		/* wait on the top of the idle stack until a job is handed over or idle_ms pass */
		t->idle = 1;
		t->prev = NULL;
		t->next = p->idle;
		if (p->idle)
			p->idle->prev = t;
		p->idle = t;
		int timed_out = 0;
		if (idled || (p->idle_fn == NULL && p->leave_fn == NULL)) {
			while (t->idle && !p->quit)
				pthread_cond_wait(&t->cv, &p->mu);
		} else {
			struct timespec until = deadline_in(p->idle_ms);
			while (t->idle && !p->quit && !timed_out)
				timed_out = pthread_cond_timedwait(&t->cv, &p->mu, &until) == ETIMEDOUT;
		}
		if (t->idle)   /* not handed a job: still on the stack */
			idle_remove(p, t);
		if (!timed_out || p->todo_head != NULL || p->quit)
			continue;
		idled = 1;
		if (p->nlive > 1 && p->leave_fn != NULL)
			break;     /* not the last: end (leave_fn gives back what idle_fn would) */
		if (p->idle_fn != NULL) {
			pthread_mutex_unlock(&p->mu);
			p->idle_fn(p->idle_arg);
			pthread_mutex_lock(&p->mu);
		}
	}
	int quitting = p->quit;
	p->nlive--;   /* from here on no job is handed to this thread */
	pthread_mutex_unlock(&p->mu);
	if (p->leave_fn != NULL)
		p->leave_fn(p->idle_arg);
	pthread_mutex_lock(&p->mu);
	t->next = p->ended;
	p->ended = t;
	p->nended++;
	if (--p->nthreads == 0)
		pthread_cond_signal(&p->all_ended);
	if (!quitting)   /* the loop joins it; pool_free joins the ones that end for it */
		pool_signal(p);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Join the threads that ended; 1 when there were any. */
static int pool_join_ended(struct pool *p)
{
	pthread_mutex_lock(&p->mu);
	struct pthr *t = p->ended;
	p->ended = NULL;
	pthread_mutex_unlock(&p->mu);
	int any = t != NULL;
	while (t) {
		struct pthr *next = t->next;
		pthread_join(t->id, NULL);
		pthread_cond_destroy(&t->cv);
		free(t);
		t = next;
	}
	return any;
}

/* Start one more thread (mu held). -1 when it cannot. */
static int pool_start_thread(struct pool *p)
{
	struct pthr *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -1;
	t->p = p;
	pthread_condattr_t ca;   /* idle waits measure time that a clock change cannot move */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	int e = pthread_create(&t->id, NULL, pool_thread, t);
	if (e != 0) {
		pthread_cond_destroy(&t->cv);
		free(t);
		log_warn("event=pool-thread-failed threads=%u error=\"%s\"", p->nlive, strerror(e));
		return -1;
	}
	p->nlive++;
	p->nthreads++;
	p->nstarted++;
	return 0;
}

/* Loop side: run done() of every finished job, join ended threads. */
static void pool_on_event(struct ev_io *io, unsigned events)
{
	struct pool *p = io->arg;
	uint64_t v;
	(void)events;
	ssize_t r = read(p->efd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&p->mu);
	struct job *j = p->done_head;
	p->done_head = p->done_tail = NULL;
	p->signaled = 0;   /* what ends from now on writes efd again */
	pthread_mutex_unlock(&p->mu);
	while (j) {
		struct job *next = j->next;
		p->pending--;
		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
	/* an ended thread's malloc cache went back to its arena as it ended: return the pages */
	if (pool_join_ended(p))
		malloc_trim(0);
}

/* A pool bound to loop, of up to nthreads threads started as jobs come. */
struct pool *pool_new(struct ev_loop *loop, unsigned nthreads)
{
	struct pool *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->loop = loop;
	p->max = nthreads ? nthreads : 1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->all_ended, NULL);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0 || ev_io_add(loop, &p->io, p->efd, EV_READ, pool_on_event, p) < 0)
		PANIC("cannot set up the thread pool");
	return p;
}

/* Stop the threads after the queued jobs; done() callbacks still pending are run. */
void pool_free(struct pool **pp)
{
	struct pool *p = *pp;
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	for (struct pthr *t = p->idle; t; t = t->next)
		pthread_cond_signal(&t->cv);
	while (p->nthreads > 0)
		pthread_cond_wait(&p->all_ended, &p->mu);
	pthread_mutex_unlock(&p->mu);
	pool_join_ended(p);
	pool_on_event(&p->io, EV_READ);
	ev_io_del(p->loop, &p->io);
	close(p->efd);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->all_ended);
	free(p);
	*pp = NULL;
}

/* See pool.h. */
void pool_set_idle(struct pool *p, unsigned ms, pool_fn *idle, pool_fn *leave, void *arg)
{
	pthread_mutex_lock(&p->mu);
	p->idle_fn = idle;
	p->leave_fn = leave;
	p->idle_arg = arg;
	p->idle_ms = ms;
	pthread_mutex_unlock(&p->mu);
}

/* Queue a job: hand it to the thread that went idle last, else start a thread. */
int pool_submit(struct pool *p, pool_fn *work, pool_fn *done, void *arg)
{
	struct job *j = malloc(sizeof(*j));
	if (j == NULL)
		return -1;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	if (p->quit) {   /* a done() run by pool_free: no thread would take it any more */
		pthread_mutex_unlock(&p->mu);
		free(j);
		return -1;
	}
	struct pthr *wake = NULL;
	if (p->idle != NULL) {
		wake = p->idle;
		idle_remove(p, wake);
	} else if (p->nlive < p->max && pool_start_thread(p) < 0 && p->nlive == 0) {
		pthread_mutex_unlock(&p->mu);   /* no thread would ever take it */
		free(j);
		return -1;
	}
	jobq_push(&p->todo_head, &p->todo_tail, j);
	pthread_mutex_unlock(&p->mu);
	/* signalled after the unlock, so the thread does not wake only to wait for the mutex;
	 * its struct stays until the loop (this thread) joins it */
	if (wake != NULL)
		pthread_cond_signal(&wake->cv);
	p->pending++;
	return 0;
}

/* Jobs not yet completed on the loop side. */
size_t pool_pending(const struct pool *p)
{
	return p->pending;
}

/* See pool.h. */
void pool_stats(struct pool *p, struct pool_stats *st)
{
	pthread_mutex_lock(&p->mu);
	st->live = p->nlive;
	st->started = p->nstarted;
	st->ended = p->nended;
	pthread_mutex_unlock(&p->mu);
}
/* ---- lanes ---- */

static void lane_kick(struct pool_lane *l);

/* Pool thread. */
static void lane_work(void *arg)
{
	struct pool_job *j = arg;
	j->work(j->arg);
}

/* Loop thread: one of the lane's jobs is done; start what waits. */
static void lane_done(void *arg)
{
	struct pool_job *j = arg;
	struct pool_lane *l = j->lane;
	l->nrunning--;
	j->done(j->arg);      /* may free or requeue j */
	lane_kick(l);
}

/* Start waiting jobs up to the lane's limit. */
static void lane_kick(struct pool_lane *l)
{
	while (l->head != NULL && l->nrunning < l->max) {
		struct pool_job *j = l->head;
		int failed = pool_submit(l->pool, lane_work, lane_done, j) < 0;
		if (failed && l->nrunning > 0)
			break;      /* out of memory: the next finish retries */
		l->head = j->next;
		if (l->head == NULL)
			l->tail = NULL;
		j->next = NULL;
		if (failed) {       /* and nothing would retry */
			j->failed = 1;
			j->done(j->arg);
			continue;
		}
		l->nrunning++;
	}
}

/* Queue a job in a lane. */
void pool_lane_submit(struct pool_lane *l, struct pool *p, struct pool_job *j)
{
	l->pool = p;
	j->lane = l;
	j->failed = 0;
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	lane_kick(l);
}
