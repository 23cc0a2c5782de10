/* queue.c - the queue process: owns <data>/queue, schedules each message per destination and
 * hands the work to the delivery threads (queue-deliver.c).
 *
 * SECURITY: forked by the master, it drops to run_user at once like the workers. It reads and
 * writes the spool, writes DSNs into local mailboxes (store API), reads system.db, and talks
 * SMTP to other servers and DNS to the configured resolvers. It never listens.
 *
 * Crash safety: an envelope is rewritten (tmp, fsync, rename, fsync dir) only after the remote
 * server's final reply, and a finished entry's .env is unlinked (fsync dir) before its .msg, so
 * kill -9 at any moment can repeat a delivery but never lose one. Startup never waits for the
 * spool: the directory is read a slice at a time while delivery already runs, and new entries
 * are seen through inotify.
 */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "queue-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "ev.h"
#include "fsutil.h"
#include "log.h"
#include "metrics.h"
#include "num.h"
#include "tls.h"
#include "tlsrpt.h"

#define Q_TICK_MS 200             /* scheduler wake-up */
#define Q_SCAN_SLICE 2000         /* directory entries read per tick */
#define Q_RESCAN_S 300            /* full directory rescan (missed inotify events) */
#define Q_RESCAN_SOON_S 5         /* after a pass that found new entries */
#define Q_ORPHAN_AGE_S 3600       /* a body without envelope this old is a crash leftover */
#define Q_MAX_INFLIGHT 20000      /* messages loaded at once: bounds memory */
#define Q_HELD_RECHECK_S 60       /* a held message is looked at again after this */
#define Q_STOP_GRACE_S 10

static size_t hash_id(const char *id, size_t size)
{
	size_t h = 5381;
	for (; *id; id++)
		h = h * 33 + (unsigned char)*id;
	return h % size;
}

/* Find or add a message entry (with the lock). A new one is due at once. */
static struct qmsg *msg_add(struct queue *q, const char *id)
{
	size_t h = hash_id(id, q->tabsize);
	for (struct qmsg *m = q->tab[h]; m; m = m->hnext)
		if (strcmp(m->id, id) == 0)
			return m;
	struct qmsg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	queue_strlcpy(m->id, sizeof(m->id), id);
	m->hnext = q->tab[h];
	q->tab[h] = m;
	q->nmsgs++;
	q->earliest = 0;
	q->added++;
	return m;
}

static void msg_remove(struct queue *q, struct qmsg *m)
{
	size_t h = hash_id(m->id, q->tabsize);
	for (struct qmsg **pp = &q->tab[h]; *pp; pp = &(*pp)->hnext) {
		if (*pp == m) {
			*pp = m->hnext;
			q->nmsgs--;
			queue_env_free(&m->env);
			free(m);
			return;
		}
	}
}

/* A file name "<id>.env" -> id, else NULL. */
static int env_name(const char *name, char *id, size_t idlen)
{
	size_t n = strlen(name);
	if (n <= 4 || strcmp(name + n - 4, ".env") != 0 || n - 4 >= idlen)
		return 0;
	memcpy(id, name, n - 4);
	id[n - 4] = '\0';
	return queue_id_valid(id);
}

/* Remove a finished entry: the envelope first (the commit point), then the body. */
static void entry_remove(struct queue *q, const char *id)
{
	char p[CONFIG_PATH_MAX + 100];
	snprintf(p, sizeof(p), "%s/%s.env", q->dir, id);
	unlink(p);
	fs_fsync_dir(q->dir);
	snprintf(p, sizeof(p), "%s/%s.msg", q->dir, id);
	unlink(p);
}

/* Retry delay after `attempts` failed attempts: retry_min doubling up to retry_max. */
static time_t backoff(const struct config *cfg, unsigned attempts)
{
	uint64_t d = cfg->queue_retry_min;
	for (unsigned i = 1; i < attempts && d < cfg->queue_retry_max; i++)
		d *= 2;
	if (d > cfg->queue_retry_max && cfg->queue_retry_max >= cfg->queue_retry_min)
		d = cfg->queue_retry_max;
	return (time_t)d;
}

/* Days/hours in words for DSN and log texts. */
static void span_text(unsigned s, char *out, size_t outlen)
{
	if (s >= 86400 && s % 86400 == 0)
		snprintf(out, outlen, "%u day%s", s / 86400, s == 86400 ? "" : "s");
	else if (s >= 3600 && s % 3600 == 0)
		snprintf(out, outlen, "%u hour%s", s / 3600, s == 3600 ? "" : "s");
	else if (s >= 60 && s % 60 == 0)
		snprintf(out, outlen, "%u minute%s", s / 60, s == 60 ? "" : "s");
	else
		snprintf(out, outlen, "%u second%s", s, s == 1 ? "" : "s");
}

/* Recipients of one attempt, by what their DSN says (indexes into env->rcpts). */
struct finalize_lists {
	unsigned *failed, *delayed, *relayed;
	unsigned nfail, ndelay, nrel;
	unsigned pending, sent;
};

/* Apply one recipient's attempt result (2 sent, 5 failed, 4 or 0 still pending) and its expiry
 * and delay notice; record it in the lists. */
static void finalize_rcpt(const struct config *cfg, struct qenv *env, unsigned i, time_t now,
			  const char *life, struct finalize_lists *l)
{
	struct qrcpt *r = &env->rcpts[i];
	int res = r->result;
	r->result = 0;
	if (res == 2) {
		r->state = QR_SENT;
		l->sent++;
		metrics_count(MC_DELIVERED_REMOTE);
		log_info("event=sent id=%s to=<%s> remote=%s reply=\"%.200s\"", env->id, r->addr,
			 r->remote, r->err);
		if (r->relayed_nodsn)
			l->relayed[l->nrel++] = i;
		return;
	}
	if (res == 5) {
		r->state = QR_FAILED;
		l->failed[l->nfail++] = i;
		metrics_count(MC_BOUNCED);
		log_info("event=bounced id=%s to=<%s> error=\"%.300s\"", env->id, r->addr, r->err);
		return;
	}
	if (res == 4) {
		metrics_count(MC_DEFERRED);
		log_info("event=deferred id=%s to=<%s> error=\"%.300s\"", env->id, r->addr, r->err);
	}
	if (now - env->arrived >= (time_t)cfg->queue_lifetime) {
		char e[QUEUE_ERR_MAX];
		snprintf(e, sizeof(e), "4.4.7 Delivery was tried for %s without success; the last "
			 "problem was: %s", life, r->err[0] ? r->err : "unknown");
		queue_strlcpy(r->err, sizeof(r->err), e);
		r->state = QR_FAILED;
		l->failed[l->nfail++] = i;
		log_info("event=expired id=%s to=<%s>", env->id, r->addr);
		return;
	}
	l->pending++;
	if (cfg->queue_delay_notice && now - env->arrived >= (time_t)cfg->queue_delay_notice &&
	    !r->delay_notified && (r->notify & QN_DELAY)) {
		r->delay_notified = 1;
		l->delayed[l->ndelay++] = i;
	}
}

/* The DSNs of an attempt, before the envelope forgets why: failures (NOTIFY=FAILURE), delay
 * notices, relayed-without-DSN notices. One that cannot be stored puts its recipients back. */
static void finalize_dsns(struct queue *q, struct qenv *env, struct finalize_lists *l)
{
	if (env->from[0] == '\0')
		return;   /* never a DSN to the null sender */
	unsigned nf = 0;
	for (unsigned i = 0; i < l->nfail; i++)
		if (env->rcpts[l->failed[i]].notify & QN_FAILURE)
			l->failed[nf++] = l->failed[i];
	if (nf > 0 && queue_dsn_send(q, env, 'F', l->failed, nf) < 0) {
		/* could not store the bounce: keep those recipients to try again */
		for (unsigned i = 0; i < nf; i++)
			env->rcpts[l->failed[i]].state = QR_PENDING;
		l->pending += nf;
	}
	if (l->ndelay > 0 && queue_dsn_send(q, env, 'D', l->delayed, l->ndelay) < 0)
		for (unsigned i = 0; i < l->ndelay; i++)
			env->rcpts[l->delayed[i]].delay_notified = 0;
	if (l->nrel > 0)
		queue_dsn_send(q, env, 'R', l->relayed, l->nrel);
}

/* When to try a message with pending recipients again: the backoff, but in time for a due delay
 * notice and for the expiry. */
static time_t finalize_next(const struct config *cfg, const struct qenv *env, time_t now)
{
	time_t next = now + backoff(cfg, env->attempts);
	time_t notice = env->arrived + (time_t)cfg->queue_delay_notice;
	int want_notice = 0;
	for (unsigned i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == QR_PENDING && !env->rcpts[i].delay_notified &&
		    (env->rcpts[i].notify & QN_DELAY))
			want_notice = 1;
	if (cfg->queue_delay_notice && want_notice && notice > now && notice < next)
		next = notice;
	time_t expiry = env->arrived + (time_t)cfg->queue_lifetime;
	if (expiry < next)
		next = expiry > now ? expiry : now + 1;
	return next;
}

/* Hand the message back to the scheduler: gone (the scheduler frees it) or idle until next. */
static void finalize_release(struct queue *q, struct qmsg *m, int gone, time_t next)
{
	pthread_mutex_lock(&q->lock);
	q->inflight--;
	queue_env_free(&m->env);
	if (gone) {
		m->state = QM_DEAD;   /* the scheduler frees it: it may hold a pointer to it */
	} else {
		m->next = next;
		m->state = QM_IDLE;
		if (m->next < q->earliest)
			q->earliest = m->next;
	}
	pthread_mutex_unlock(&q->lock);
}

/* Apply the results of a message's attempt: DSNs, envelope rewrite or removal, next time. */
void queue_finalize(struct queue *q, struct qmsg *m)
{
	const struct config *cfg = q->cfg;
	struct qenv *env = &m->env;
	time_t now = time(NULL);
	unsigned nr = env->nrcpts;
	struct finalize_lists l = { calloc(nr, sizeof(unsigned)), calloc(nr, sizeof(unsigned)),
				    calloc(nr, sizeof(unsigned)), 0, 0, 0, 0, 0 };
	if (l.failed == NULL || l.delayed == NULL || l.relayed == NULL) {
		/* try again later, nothing changed on disk */
		free(l.failed);
		free(l.delayed);
		free(l.relayed);
		finalize_release(q, m, 0, now + (time_t)cfg->queue_retry_min);
		return;
	}
	char life[64];
	span_text(cfg->queue_lifetime, life, sizeof(life));
	for (unsigned i = 0; i < nr; i++)
		if (env->rcpts[i].state == QR_PENDING)
			finalize_rcpt(cfg, env, i, now, life, &l);
	finalize_dsns(q, env, &l);
	free(l.failed);
	free(l.delayed);
	free(l.relayed);
	char p[CONFIG_PATH_MAX + 100];
	snprintf(p, sizeof(p), "%s/%s.env", q->dir, env->id);
	int gone = 0;
	if (l.pending == 0) {
		entry_remove(q, env->id);
		log_info("event=removed id=%s", env->id);
		gone = 1;
	} else if (access(p, F_OK) < 0) {
		gone = 1;   /* deleted by "postino queue delete" meanwhile */
	} else {
		env->attempts++;
		env->next = finalize_next(cfg, env, now);
		if (queue_env_write(q->dir, env) < 0)
			log_error("event=envelope-write-failed id=%s error=\"%s\" result=\"the attempt "
				  "will be repeated\"", env->id, strerror(errno));
	}
	log_debug("event=attempt-done id=%s sent=%u pending=%u", env->id, l.sent, l.pending);
	finalize_release(q, m, gone, env->next);
}

/* Queue one job for dest (with the lock). */
static int add_job(struct queue *q, const char *dest, struct qjob *j)
{
	struct qdest *d;
	for (d = q->dests; d; d = d->next)
		if (strcasecmp(d->name, dest) == 0)
			break;
	if (d == NULL) {
		d = calloc(1, sizeof(*d));
		if (d == NULL)
			return -1;
		queue_strlcpy(d->name, sizeof(d->name), dest);
		d->next = q->dests;
		q->dests = d;
	}
	j->next = NULL;
	if (d->tail)
		d->tail->next = j;
	else
		d->head = j;
	d->tail = j;
	d->njobs++;
	return 0;
}

/* The domain of an address (after the last '@'), lower-cased into out. */
static void addr_domain(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	queue_strlcpy(out, outlen, at ? at + 1 : addr);
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	/* an address literal [1.2.3.4] is dialled as such */
	size_t n = strlen(out);
	if (n > 2 && out[0] == '[' && out[n - 1] == ']') {
		memmove(out, out + 1, n - 2);
		out[n - 2] = '\0';
		if (strncasecmp(out, "IPv6:", 5) == 0)
			memmove(out, out + 5, strlen(out + 5) + 1);
	}
}

/* Load a due message and split it into jobs per destination. Called without the lock, for an
 * IDLE message the caller marked BUSY. Returns 1 queued, 0 not now (next set), -1 gone. */
static int msg_load(struct queue *q, struct qmsg *m, time_t now)
{
	char err[512];
	struct qenv *env = &m->env;
	int force = m->force;
	m->force = 0;
	int r = queue_env_read(q->dir, m->id, env, err, sizeof(err));
	if (r == 0)
		return -1;
	if (r < 0) {
		log_error("event=quarantined id=%s error=\"%s\" action=\"moved to queue/quarantine; "
			  "inspect it, fix or delete it\"", m->id, err);
		queue_quarantine(q->dir, m->id);
		return -1;
	}
	if (env->next > now && !force) {
		m->next = env->next;
		queue_env_free(env);
		return 0;
	}
	if (queue_msg_held(q->dir, m->id) || (env->from[0] && queue_sender_held(q->dir, env->from))) {
		/* debug only: a held queue would repeat it for every message each recheck */
		log_debug("event=held id=%s next-look=%ds", m->id, Q_HELD_RECHECK_S);
		m->next = now + Q_HELD_RECHECK_S;
		queue_env_free(env);
		return 0;
	}
	char path[CONFIG_PATH_MAX + 100];
	snprintf(path, sizeof(path), "%s/%s.msg", q->dir, m->id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ok = fd >= 0 ? queue_body_check(fd, env, err, sizeof(err)) : 0;
	if (fd < 0)
		snprintf(err, sizeof(err), "message file: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (ok <= 0) {
		if (ok < 0 && fd >= 0) {   /* a read error: try later */
			log_warn("event=read-failed id=%s error=\"%s\"", m->id, err);
			m->next = now + (time_t)q->cfg->queue_retry_min;
			queue_env_free(env);
			return 0;
		}
		log_error("event=quarantined id=%s error=\"%s\" action=\"moved to queue/quarantine, "
			  "not sent; inspect it, fix or delete it\"", m->id, err);
		queue_quarantine(q->dir, m->id);
		queue_env_free(env);
		return -1;
	}
	/* group the pending recipients by destination */
	unsigned pending = 0;
	for (unsigned i = 0; i < env->nrcpts; i++)
		pending += env->rcpts[i].state == QR_PENDING;
	if (pending == 0) {
		entry_remove(q, m->id);   /* finished before a crash removed it */
		queue_env_free(env);
		return -1;
	}
	unsigned *dom_of = calloc(env->nrcpts, sizeof(unsigned));
	char (*doms)[256] = calloc(env->nrcpts, 256);
	struct qjob **jobs = calloc(env->nrcpts, sizeof(*jobs));
	unsigned ndoms = 0;
	int fail = dom_of == NULL || doms == NULL || jobs == NULL;
	for (unsigned i = 0; !fail && i < env->nrcpts; i++) {
		if (env->rcpts[i].state != QR_PENDING)
			continue;
		env->rcpts[i].result = 0;
		char d[256];
		if (q->relay_host[0])
			snprintf(d, sizeof(d), "[%s]:%u", q->relay_host, q->relay_port);
		else
			addr_domain(env->rcpts[i].addr, d, sizeof(d));
		unsigned k;
		for (k = 0; k < ndoms; k++)
			if (strcmp(doms[k], d) == 0)
				break;
		if (k == ndoms) {
			memcpy(doms[ndoms], d, sizeof(d));
			jobs[ndoms] = calloc(1, sizeof(struct qjob));
			if (jobs[ndoms] == NULL ||
			    (jobs[ndoms]->idx = calloc(env->nrcpts, sizeof(unsigned))) == NULL) {
				fail = 1;
				break;
			}
			jobs[ndoms]->m = m;
			ndoms++;
		}
		jobs[k]->idx[jobs[k]->n++] = i;
	}
	if (!fail) {
		pthread_mutex_lock(&q->lock);
		m->outstanding = ndoms;
		for (unsigned k = 0; k < ndoms; k++)
			add_job(q, doms[k], jobs[k]);   /* XXX: allocation failure here loses a job */
		pthread_cond_broadcast(&q->cond);
		pthread_mutex_unlock(&q->lock);
	} else {
		for (unsigned k = 0; k < ndoms; k++) {
			if (jobs[k])
				free(jobs[k]->idx);
			free(jobs[k]);
		}
		m->next = now + 10;
		queue_env_free(env);
	}
	free(dom_of);
	free(doms);
	free(jobs);
	return fail ? 0 : 1;
}

/* Walk the table (with the lock) and load what is due; q->earliest becomes the earliest future
 * `next` seen (finished attempts lower it meanwhile). */
static void schedule(struct queue *q, time_t now)
{
	q->earliest = now + 3600;
	for (size_t h = 0; h < q->tabsize; h++) {
		struct qmsg *m = q->tab[h];
		while (m) {
			struct qmsg *nextm = m->hnext;
			if (m->state == QM_DEAD) {
				msg_remove(q, m);
				m = nextm;
				continue;
			}
			if (m->state != QM_IDLE) {
				m = nextm;
				continue;
			}
			if (m->next > now) {
				if (m->next < q->earliest)
					q->earliest = m->next;
				m = nextm;
				continue;
			}
			if (q->inflight >= Q_MAX_INFLIGHT) {
				q->earliest = now;
				return;
			}
			m->state = QM_BUSY;
			q->inflight++;
			pthread_mutex_unlock(&q->lock);
			int r = msg_load(q, m, now);
			pthread_mutex_lock(&q->lock);
			if (r <= 0) {
				q->inflight--;
				m->state = QM_IDLE;
				if (r < 0)
					msg_remove(q, m);
				else if (m->next < q->earliest)
					q->earliest = m->next;
			}
			m = nextm;
		}
	}
}

/* Become run_user for good. 0 / -1. */
static int drop_privileges(const char *user)
{
	if (geteuid() != 0 || user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL || setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0 || setuid(0) == 0) {
		log_error("event=drop-privileges-failed user=%s", user);
		return -1;
	}
	return 0;
}

/* Parse relayhost "host[:port]" or "[host]:port". */
static int parse_relayhost(struct queue *q, const char *v)
{
	char h[256];
	unsigned port = 25;
	queue_strlcpy(h, sizeof(h), v);
	char *colon = NULL;
	if (h[0] == '[') {
		char *end = strchr(h, ']');
		if (end == NULL)
			return -1;
		*end = '\0';
		if (end[1] == ':')
			colon = end + 1;
		memmove(h, h + 1, strlen(h + 1) + 1);
	} else {
		colon = strrchr(h, ':');
		if (colon && strchr(h, ':') != colon)
			colon = NULL;   /* a bare IPv6 address */
	}
	if (colon) {
		uint64_t p;
		if (num_parse_u64(colon + 1, strlen(colon + 1), 65535, &p) < 0 || p == 0)
			return -1;
		port = (unsigned)p;
		*colon = '\0';
	}
	if (h[0] == '\0')
		return -1;
	queue_strlcpy(q->relay_host, sizeof(q->relay_host), h);
	q->relay_port = port;
	return 0;
}

/* Start an incremental scan of the directory. */
struct scan {
	DIR *d;
	time_t next_full;
	unsigned long added_before;   /* q->added when this pass started */
};

/* Remove what a crash left behind: a body whose envelope never appeared (or was removed first,
 * as a finished entry's is) and unrenamed envelope temp files, once they are an hour old. */
static void orphan_check(DIR *d, const char *name, time_t now)
{
	size_t n = strlen(name);
	int body = n > 4 && strcmp(name + n - 4, ".msg") == 0;
	int tmp = (n > 6 && strcmp(name + n - 6, ".env.q") == 0) ||
		  (n > 8 && strcmp(name + n - 8, ".env.tmp") == 0);
	if (!body && !tmp)
		return;
	struct stat st;
	/* ctime, not mtime: link() into the queue sets it, however old the received file is */
	if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    now - st.st_ctime < Q_ORPHAN_AGE_S)
		return;
	if (body) {
		char env[300];
		if (n - 4 + 5 >= sizeof(env))
			return;
		memcpy(env, name, n - 4);
		memcpy(env + n - 4, ".env", 5);
		if (faccessat(dirfd(d), env, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
			return;
	}
	log_info("event=orphan-removed file=%s", name);
	unlinkat(dirfd(d), name, 0);
}

static void scan_slice(struct queue *q, struct scan *s, time_t now)
{
	if (s->d == NULL) {
		if (now < s->next_full)
			return;
		s->d = opendir(q->dir);
		if (s->d == NULL)
			return;
		s->added_before = q->added;
	}
	struct dirent *e;
	char id[64];
	for (int i = 0; i < Q_SCAN_SLICE; i++) {
		e = readdir(s->d);
		if (e == NULL) {
			closedir(s->d);
			s->d = NULL;
			/* readdir may miss entries while others are unlinked: a pass that found new
			 * entries is followed by another one soon */
			s->next_full = now + (q->added != s->added_before ? Q_RESCAN_SOON_S : Q_RESCAN_S);
			return;
		}
		if (env_name(e->d_name, id, sizeof(id))) {
			pthread_mutex_lock(&q->lock);
			msg_add(q, id);
			pthread_mutex_unlock(&q->lock);
		} else {
			orphan_check(s->d, e->d_name, now);
		}
	}
}

/* Become the queue process: close the descriptors inherited from the master (close_fds), block
 * the signals that set (later read through a signalfd) holds, become run_user. Exits when the
 * master is gone, or with 3 when privileges cannot be dropped. */
static void queue_become(const struct config *cfg, const int *close_fds, int nclose,
			 sigset_t *set)
{
	pid_t master = getppid();
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	for (int i = 0; i < nclose; i++)
		if (close_fds[i] >= 0)
			close(close_fds[i]);
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	sigprocmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (getppid() == 1)
		_exit(0);
	if (drop_privileges(cfg->run_user) < 0)
		_exit(3);
	prctl(PR_SET_PDEATHSIG, SIGTERM);   /* cleared by the change of user (prctl(2)) */
	if (getppid() != master)
		_exit(0);
}

/* Take the queue lock (one queue process at a time, even across a reload: the one of a
 * previous configuration may still be finishing), then write queue.pid. The lock is held by
 * a descriptor kept open until the process exits. */
static void queue_lock(struct queue *q)
{
	char path[CONFIG_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/queue.lock", q->dir);
	int lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (lfd < 0) {
		log_error("event=startup-failed error=\"cannot open %s: %s\"", path, strerror(errno));
		_exit(3);
	}
	for (int i = 0; flock(lfd, LOCK_EX | LOCK_NB) < 0; i++) {
		if (i == 0)
			log_info("event=waiting-for-lock path=%s", path);
		if (getppid() == 1)
			_exit(0);
		usleep(100000);
	}
	snprintf(path, sizeof(path), "%s/queue.pid", q->dir);
	FILE *pf = fopen(path, "w");
	if (pf) {
		fprintf(pf, "%d\n", (int)getpid());
		fclose(pf);
	}
}

/* Remove the reports (DSN, TLS report) that were being written in the data dir's tmp when a
 * previous queue process died: they were never acknowledged, and are made again. */
static void queue_clean_tmp(const struct config *cfg)
{
	char path[CONFIG_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/tmp", cfg->data_dir);
	DIR *td = opendir(path);
	if (td == NULL)
		return;
	struct dirent *e;
	while ((e = readdir(td)) != NULL)
		if (strncmp(e->d_name, "dsn.", 4) == 0 || strncmp(e->d_name, "tlsrpt.", 7) == 0)
			unlinkat(dirfd(td), e->d_name, 0);
	closedir(td);
}

/* Set up what delivery needs: the relayhost, the resolver, the TLS client context, the account
 * database (for local DSNs; optional), the locks and the message table. Exits with 3 when one
 * that is required fails. */
static void queue_setup(struct queue *q, const struct config *cfg)
{
	char err[512];
	if (cfg->relayhost[0] && parse_relayhost(q, cfg->relayhost) < 0) {
		log_error("event=startup-failed error=\"relayhost '%s' is not host[:port]\"",
			  cfg->relayhost);
		_exit(3);
	}
	if (qdns_init(cfg->dns_servers, cfg->dns_trust_anchor_file, err, sizeof(err)) < 0) {
		log_error("event=startup-failed error=\"%s\"", err);
		_exit(3);
	}
	const char *terr;
	q->tls = tls_client_ctx_new_ca(cfg->tls_ca_file, &terr);
	if (q->tls == NULL) {
		log_error("event=startup-failed error=\"%s\"", terr);
		_exit(3);
	}
	char path[CONFIG_PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
	const char *aerr;
	if (acctdb_open(path, ACCTDB_RO, &q->db, &aerr) < 0)
		log_warn("event=acctdb-unavailable error=\"%s\" result=\"DSNs go through the queue\"",
			 aerr);
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->db_lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->tabsize = 65521;
	q->tab = calloc(q->tabsize, sizeof(*q->tab));
	if (q->tab == NULL)
		_exit(3);
}

/* Start the delivery threads (queue_concurrency of them, fewer if creating one fails). */
static void queue_start_threads(struct queue *q)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	for (unsigned i = 0; i < q->cfg->queue_concurrency; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, queue_deliver_thread, q) != 0)
			break;
		pthread_detach(t);
		q->threads_alive++;
	}
}

/* Read the pending signals: TERM, INT and HUP start the stop (*stop_at: when the grace time
 * ends). 1 if USR1 (queue_poke: `postino queue flush`, hold, release) asked to look again. */
static int queue_signals(int sfd, time_t now, int *stopping, time_t *stop_at)
{
	int poke = 0;
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP) {
			if (!*stopping)
				log_info("event=queue-stopping");
			*stopping = 1;
			*stop_at = now + Q_STOP_GRACE_S;
		} else if (si.ssi_signo == SIGUSR1) {
			poke = 1;
		}
	}
	return poke;
}

/* While stopping: tell the threads to stop. 1 when they all have, or the grace time is over. */
static int queue_stopped(struct queue *q, time_t now, time_t stop_at)
{
	pthread_mutex_lock(&q->lock);
	q->stopping = 1;
	pthread_cond_broadcast(&q->cond);
	unsigned alive = q->threads_alive;
	pthread_mutex_unlock(&q->lock);
	return alive == 0 || now >= stop_at;
}

/* Messages inotify saw arrive in the queue directory become due now; on an overflow of its
 * events, the next scan is a full one. */
static void queue_inotify(struct queue *q, int ifd, struct scan *sc)
{
	char b[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	while ((n = read(ifd, b, sizeof(b))) > 0) {
		for (char *e = b; e < b + n;) {
			struct inotify_event *ie = (struct inotify_event *)e;
			char id[64];
			if (ie->mask & IN_Q_OVERFLOW)
				sc->next_full = 0;
			if (ie->len > 0 && env_name(ie->name, id, sizeof(id))) {
				pthread_mutex_lock(&q->lock);
				struct qmsg *m = msg_add(q, id);
				if (m && m->state == QM_IDLE)
					m->next = 0;
				q->earliest = 0;
				pthread_mutex_unlock(&q->lock);
			}
			e += sizeof(*ie) + ie->len;
		}
	}
}

/* After queue_poke: every waiting message is due now, retry times ignored (q->lock is held). */
static void queue_flush(struct queue *q, struct scan *sc)
{
	log_info("event=flush");
	for (size_t h = 0; h < q->tabsize; h++)
		for (struct qmsg *m = q->tab[h]; m; m = m->hnext)
			if (m->state == QM_IDLE) {
				m->next = 0;
				m->force = 1;
			}
	q->earliest = 0;
	sc->next_full = 0;   /* also pick up anything inotify missed */
}

/* The queue process: set up, then schedule until told to stop. Never returns. */
void queue_main(const struct config *cfg, const int *close_fds, int nclose)
{
	static struct queue q;
	sigset_t set;
	log_set_ident("postino/queue");
	metrics_set_slot(METRICS_QUEUE_SLOT);
	queue_become(cfg, close_fds, nclose, &set);
	q.cfg = cfg;
	snprintf(q.dir, sizeof(q.dir), "%s/queue", cfg->data_dir);
	mkdir(q.dir, 0750);
	queue_lock(&q);
	queue_clean_tmp(cfg);
	queue_setup(&q, cfg);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ifd >= 0 && inotify_add_watch(ifd, q.dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		close(ifd);
		ifd = -1;
	}
	queue_start_threads(&q);
	log_info("event=queue-started dir=%s threads=%u relayhost=%s", q.dir, q.threads_alive,
		 q.relay_host[0] ? q.relay_host : "-");
	struct scan sc = { NULL, 0, 0 };
	int stopping = 0;
	time_t stop_at = 0;
	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = ifd, .events = POLLIN } };
		poll(p, ifd >= 0 ? 2 : 1, sc.d ? 0 : Q_TICK_MS);
		time_t now = time(NULL);
		int poke = queue_signals(sfd, now, &stopping, &stop_at);
		if (stopping) {
			if (queue_stopped(&q, now, stop_at))
				break;
			usleep(100000);
			continue;
		}
		if (ifd >= 0 && (p[1].revents & POLLIN))
			queue_inotify(&q, ifd, &sc);
		scan_slice(&q, &sc, now);
		tlsrpt_run(&q, now);
		pthread_mutex_lock(&q.lock);
		if (poke)
			queue_flush(&q, &sc);
		if (sc.d != NULL || now >= q.earliest)
			schedule(&q, now);
		pthread_mutex_unlock(&q.lock);
	}
	log_info("event=queue-stopped");
	_exit(0);
}
