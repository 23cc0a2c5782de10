/* worker.c - a protocol worker process: one epoll loop serving many sessions.
 *
 * SECURITY: a worker talks to untrusted peers on the listening sockets it inherits from the master.
 * It runs as run_user (when the master started as root), reads system.db, writes the mail store,
 * the outbound spool and <data>/tmp. It holds the TLS keys in memory (inherited), which the
 * planned auth/login split will take away from it.
 */
#include "worker.h"
#include "smtp.h"
#include "imap.h"
#include "pop3.h"
#include "http.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "acctdb.h"
#include "conn.h"
#include "auth-verify.h"
#include "crossproto.h"
#include "diag.h"
#include "ev.h"
#include "iptable.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "store.h"
#include "tls.h"

#define WORKER_STOP_GRACE_MS 30000   /* in-flight messages get this long after SIGTERM */
#define WORKER_POOL_THREADS 8   /* at most; deliveries wait on the disk, not the CPU */
/* A pool thread idle this long ends, or closes the SQLite handles it keeps when it is the last
 * (a burst of logins leaves each thread some 2 MB of account handles and ~600 KB of malloc
 * cache); under a steady load no thread waits this long. */
#define WORKER_POOL_IDLE_MS 5000
/* New connections go to the least busy worker. Every worker waits on the same listening sockets;
 * one that took a whole burst (clients that connect together and stay, as a mail client with
 * several connections or imaptest with logout=0 does) served all of them on one core while the
 * others idled. So a worker accepts one connection per wake-up, and one with more than
 * WORKER_BALANCE_SLACK sessions over the least busy other worker (metrics.h's shared counts)
 * leaves the listener to it for WORKER_BALANCE_WAIT_MS; if the connection is still waiting
 * then (the other worker is busy), it takes it. */
#define WORKER_ACCEPT_BATCH 1
#define WORKER_BALANCE_SLACK 1
#define WORKER_BALANCE_WAIT_MS 5

struct listener {
	struct ev_io io;
	enum listener_id id;
	struct worker *w;
	int paused;                 /* at the session cap or out of fds: resumed by a close */
	int balancing;              /* left to a less busy worker: balance_timer resumes it */
	int balance_waited;         /* the wait is over: take the next connection regardless */
	struct ev_timer balance_timer;
};

static struct listener listeners[LST_COUNT];
static int ready_fd = -1;   /* the master's ready pipe (worker_set_ready_fd) */
static struct ev_timer stop_timer;
static struct ev_io sig_io;

/* A pool thread with no work for WORKER_POOL_IDLE_MS, the last one of the pool: the worker's kept
 * account handles, the thread's system.db, diag.db, limits.db and senders.db handles and the
 * memory the jobs freed go back
 * (they would otherwise stay with the thread until the worker stops). The next job reopens what
 * it needs. */
static void worker_pool_idle(void *arg)
{
	(void)arg;
	store_account_borrow_release();
	auth_verify_thread_release();
	diag_thread_release();
	smtp_thread_release(0);
	malloc_trim(0);
}

/* A pool thread that ends (idle while others are left, or the pool is freed): everything it
 * keeps, caches and the inbound checks' resolver too (the account handles are the worker's, not
 * the thread's: they stay for the threads left). Its malloc cache goes back as it ends
 * and the pool trims then. */
static void worker_pool_leave(void *arg)
{
	(void)arg;
	auth_verify_thread_release();
	diag_thread_release();
	smtp_thread_release(1);
}

/* Resume listeners paused at the session cap or on fd exhaustion. */
static void worker_resume_listeners(struct worker *w)
{
	for (int i = 0; i < LST_COUNT; i++) {
		struct listener *l = &listeners[i];
		if (l->paused && l->io.fd >= 0 && !w->stopping) {
			l->paused = 0;
			if (!l->balancing)   /* else balance_timer resumes it */
				ev_io_mod(w->loop, &l->io, EV_READ);
		}
	}
}

/* The balancing wait of a listener is over. */
static void worker_balance_resume(struct ev_timer *t)
{
	struct listener *l = t->arg;
	l->balancing = 0;
	l->balance_waited = 1;
	if (!l->paused && !l->w->stopping && l->io.fd >= 0)
		ev_io_mod(l->w->loop, &l->io, EV_READ);
}

/* Should this worker leave new connections to a less busy one for a moment? */
static int worker_leave_to_others(struct worker *w, struct listener *l)
{
	if (l->balance_waited) {
		l->balance_waited = 0;
		return 0;
	}
	uint32_t fewest = metrics_sessions_fewest_other();
	if (fewest == METRICS_NOT_ACCEPTING || w->nsessions <= fewest + WORKER_BALANCE_SLACK)
		return 0;
	l->balancing = 1;
	ev_io_mod(w->loop, &l->io, 0);
	ev_timer_set(w->loop, &l->balance_timer, WORKER_BALANCE_WAIT_MS, worker_balance_resume, l);
	return 1;
}

/* Accept a connection on a listener (WORKER_ACCEPT_BATCH), unless a less busy worker should. */
static void worker_on_accept(struct ev_io *io, unsigned events)
{
	struct listener *l = io->arg;
	struct worker *w = l->w;
	const struct listener_conf *lc = &w->cfg->l[l->id];
	(void)events;
	if (worker_leave_to_others(w, l))
		return;
	for (int i = 0; i < WORKER_ACCEPT_BATCH && !w->stopping; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(io->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* pause and resume on the next close; never spin, never exit */
				log_warn("event=accept-paused listener=%s error=\"%s\"", lc->name,
					 strerror(errno));
				l->paused = 1;
				ev_io_mod(w->loop, io, 0);
			}
			return;
		}
		/* replies and the last TLS record of a response must not wait for the peer's
		 * delayed ACK (Nagle): that cost 40 ms per POP3 RETR */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		if (w->nsessions >= lc->max_connections) {
			static const char busy[] = "421 4.3.2 Server busy; please try again later\r\n";
			ssize_t wr = write(fd, busy, sizeof(busy) - 1);
			(void)wr;
			close(fd);
			l->paused = 1;
			ev_io_mod(w->loop, io, 0);
			return;
		}
		if (!iptable_acquire(w->ipt, w->index, (struct sockaddr *)&peer, lc->max_conn_per_ip)) {
			char msg[200];
			int n = snprintf(msg, sizeof(msg), "421 4.7.0 %s Too many connections from your "
				 "IP address (limit %u); close some and try again\r\n",
				 w->cfg->hostname, lc->max_conn_per_ip);
			if (lc->proto == PROTO_POP3)
				n = snprintf(msg, sizeof(msg), "-ERR [SYS/TEMP] Too many connections from "
					     "your IP address (limit %u); close some and try again\r\n",
					     lc->max_conn_per_ip);
			if (lc->proto == PROTO_IMAP)
				n = snprintf(msg, sizeof(msg), "* BYE [UNAVAILABLE] Too many connections "
					     "from your IP address (limit %u); close some and try "
					     "again\r\n", lc->max_conn_per_ip);
			if (lc->proto != PROTO_HTTP && !lc->implicit_tls) {
				ssize_t wr = write(fd, msg, (size_t)n);
				(void)wr;
			}
			log_info("event=conn-refused listener=%s reason=per-ip-limit", lc->name);
			close(fd);
			continue;
		}
		switch (lc->proto) {
		case PROTO_SMTP:
			smtp_session_start(w, fd, l->id, &peer);
			break;
		case PROTO_POP3:
			pop3_session_start(w, fd, l->id, &peer);
			break;
		case PROTO_IMAP:
			imap_session_start(w, fd, l->id, &peer);
			break;
		case PROTO_HTTP:
			http_session_start(w, fd, l->id, &peer);
			break;
		default:
			iptable_release(w->ipt, w->index, (struct sockaddr *)&peer);
			close(fd);
			break;
		}
	}
}

/* The grace period after SIGTERM is over. */
static void worker_stop_now(struct ev_timer *t)
{
	struct worker *w = t->arg;
	log_warn("event=stop-timeout sessions=%u", w->nsessions);
	ev_stop(w->loop);
}

/* SIGTERM: stop accepting, ask sessions to finish, exit when they are gone. */
static void worker_begin_stop(struct worker *w)
{
	if (w->stopping)
		return;
	w->stopping = 1;
	metrics_sessions(METRICS_NOT_ACCEPTING);   /* the others stop leaving connections to it */
	for (int i = 0; i < LST_COUNT; i++) {
		ev_timer_cancel(w->loop, &listeners[i].balance_timer);
		if (listeners[i].io.fd >= 0) {
			int fd = listeners[i].io.fd;
			ev_io_del(w->loop, &listeners[i].io);
			close(fd);
		}
	}
	for (struct session *s = w->sessions, *next; s; s = next) {
		next = s->next;
		s->ops->shutdown(s);
	}
	if (w->nsessions == 0)
		ev_stop(w->loop);
	else
		ev_timer_set(w->loop, &stop_timer, WORKER_STOP_GRACE_MS, worker_stop_now, w);
}

/* Signals arrive through a signalfd, so handlers never run in the middle of loop code. */
static void worker_on_signal(struct ev_io *io, unsigned events)
{
	struct worker *w = io->arg;
	struct signalfd_siginfo si;
	(void)events;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			worker_begin_stop(w);
	}
}

/* Become run_user for good. Returns 0, or -1 (logged). */
static int worker_drop_privileges(const char *user)
{
	if (geteuid() != 0 || user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		log_error("event=drop-privileges-failed user=%s error=\"no such user\"", user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		log_error("event=drop-privileges-failed user=%s error=\"%s\"", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		log_error("event=drop-privileges-failed user=%s error=\"root could be regained\"", user);
		return -1;
	}
	return 0;
}

/* Where to say "accepting" once the loop runs (before worker_main). */
void worker_set_ready_fd(int fd)
{
	ready_fd = fd;
}

/* The worker's main: set up, loop, exit. */
void worker_main(unsigned index, const struct config *cfg, struct tls_ctx *tls, const int *lfds,
		 struct iptable *ipt, struct authfail *af)
{
	static struct worker w;
	const char *err;
	log_set_ident("postino/worker");
	pid_t master = getppid();
	prctl(PR_SET_PDEATHSIG, SIGTERM);      /* a killed master takes its workers along */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (getppid() == 1)
		_exit(0);
	if (worker_drop_privileges(cfg->run_user) < 0)
		_exit(3);
	/* the change of user cleared the parent-death signal (prctl(2)): set it again, and leave
	 * if the master died in between */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master)
		_exit(0);
	/* No fastbins: a chunk freed past the thread's cache (tcache) coalesces at once. With them, a
	 * pool thread that ends left its freed chunks in fastbins, which trimming consolidates
	 * into the top of the thread's arena but never gives back (only the main arena's top is
	 * trimmed): ~300 KB resident per arena that had a thread, 1,000 IDLE sessions 34 -> 31 KB
	 * PSS each. The cache in front serves the small frees fastbins were for. */
	mallopt(M_MXFAST, 0);
	w.index = index;
	w.cfg = cfg;
	w.tls = tls;
	w.ipt = ipt;
	w.af = af;
	w.session_gone = worker_resume_listeners;
	w.loop = ev_loop_new();
	if (w.loop == NULL)
		_exit(3);
	char path[CONFIG_PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
	if (acctdb_open(path, ACCTDB_RO, &w.db, &err) < 0) {
		log_error("event=startup-failed error=\"cannot open %s: %s\"", path, err);
		_exit(3);
	}
	w.pool = pool_new(w.loop, WORKER_POOL_THREADS);
	pool_set_idle(w.pool, WORKER_POOL_IDLE_MS, worker_pool_idle, worker_pool_leave, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || ev_io_add(w.loop, &sig_io, sfd, EV_READ, worker_on_signal, &w) < 0)
		_exit(3);
	for (int i = 0; i < LST_COUNT; i++) {
		listeners[i].io.fd = -1;
		listeners[i].id = (enum listener_id)i;
		listeners[i].w = &w;
		if (lfds[i] < 0)
			continue;
		if (ev_io_add(w.loop, &listeners[i].io, lfds[i], EV_READ, worker_on_accept,
			      &listeners[i]) < 0)
			_exit(3);
	}
	metrics_set_slot(index);
	metrics_sample_memory();
	log_info("event=worker-started index=%u", index);
	unsigned char me = (unsigned char)index;
	if (ready_fd >= 0 && write(ready_fd, &me, 1) != 1)
		log_warn("event=ready-pipe-failed error=\"%s\"", strerror(errno));
	if (ready_fd >= 0)
		close(ready_fd);
	ev_run(w.loop);
	pool_free(&w.pool);
	store_account_borrow_release();
	acctdb_close(&w.db);
	log_info("event=worker-stopped index=%u", index);
	_exit(0);
}
