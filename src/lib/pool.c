/* pool.c - worker threads hand finished jobs back to the loop through an eventfd. */
#include "pool.h"
#include "ev.h"
#include "log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct job {
	pool_fn *work, *done;
	void *arg;
	struct job *next;
};

struct pool {
	struct ev_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *todo_head, *todo_tail;   /* waiting for a thread */
	struct job *done_head, *done_tail;   /* waiting for the loop */
	int quit;
	int efd;
	struct ev_io io;
	unsigned nthreads;
	size_t pending;
	pthread_t *threads;
	pool_fn *idle_fn;                    /* pool_set_idle */
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

/* A pool thread: take jobs, run them, hand them back. */
static void *pool_thread(void *arg)
{
	struct pool *p = arg;
	int idled = 1;   /* nothing to let go of before the first job */
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->todo_head == NULL && !p->quit) {
			if (idled || p->idle_fn == NULL) {
				pthread_cond_wait(&p->cv, &p->mu);
				continue;
			}
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += p->idle_ms / 1000;
			until.tv_nsec += (long)(p->idle_ms % 1000) * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			while (p->todo_head == NULL && !p->quit &&
			       pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0)
				;
			if (p->todo_head == NULL && !p->quit) {
				idled = 1;
				pthread_mutex_unlock(&p->mu);
				p->idle_fn(p->idle_arg);
				pthread_mutex_lock(&p->mu);
			}
		}
		if (p->todo_head == NULL && p->quit)
			break;
		idled = 0;
		struct job *j = p->todo_head;
		p->todo_head = j->next;
		if (p->todo_head == NULL)
			p->todo_tail = NULL;
		pthread_mutex_unlock(&p->mu);
		j->work(j->arg);
		pthread_mutex_lock(&p->mu);
		jobq_push(&p->done_head, &p->done_tail, j);
		uint64_t one = 1;
		ssize_t w = write(p->efd, &one, sizeof(one));
		(void)w;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Loop side: run done() of every finished job. */
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
	pthread_mutex_unlock(&p->mu);
	while (j) {
		struct job *next = j->next;
		p->pending--;
		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
}

/* Start nthreads threads bound to loop. */
struct pool *pool_new(struct ev_loop *loop, unsigned nthreads)
{
	struct pool *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->loop = loop;
	p->nthreads = nthreads ? nthreads : 1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;   /* idle waits measure time that a clock change cannot move */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	p->threads = calloc(p->nthreads, sizeof(*p->threads));
	if (p->efd < 0 || p->threads == NULL ||
	    ev_io_add(loop, &p->io, p->efd, EV_READ, pool_on_event, p) < 0)
		PANIC("cannot set up the thread pool");
	for (unsigned i = 0; i < p->nthreads; i++)
		if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0)
			PANIC("pthread_create failed");
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
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pool_on_event(&p->io, EV_READ);
	ev_io_del(p->loop, &p->io);
	close(p->efd);
	free(p->threads);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	*pp = NULL;
}

/* See pool.h. */
void pool_set_idle(struct pool *p, unsigned ms, pool_fn *fn, void *arg)
{
	pthread_mutex_lock(&p->mu);
	p->idle_fn = fn;
	p->idle_arg = arg;
	p->idle_ms = ms;
	pthread_mutex_unlock(&p->mu);
}

/* Queue a job. */
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
	jobq_push(&p->todo_head, &p->todo_tail, j);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	p->pending++;
	return 0;
}

/* Jobs not yet completed on the loop side. */
size_t pool_pending(const struct pool *p)
{
	return p->pending;
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
