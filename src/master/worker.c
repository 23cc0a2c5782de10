/* worker.c - a protocol worker process: one epoll loop serving many sessions.
 *
 * SECURITY: a worker talks to untrusted peers on the listening sockets it inherits from the master.
 * It runs as run_user (when the master started as root), reads system.db, writes the mail store,
 * the outbound spool and <data>/tmp. It holds the TLS keys in memory (inherited), which the
 * planned auth/login split will take away from it.
 */
#include "worker.h"

#include <errno.h>
#include <grp.h>
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
#include "tls.h"

#define WORKER_STOP_GRACE_MS 30000   /* in-flight messages get this long after SIGTERM */
#define WORKER_POOL_THREADS 8   /* deliveries wait on the disk, not the CPU */
/* Longest wait for a ClientHello on a STARTTLS port (slow links, or no RTT measured) */
#define WORKER_HELLO_WAIT_MAX_MS 250

struct listener {
	struct ev_io io;
	enum listener_id id;
	struct worker *w;
	int paused;
};

static struct listener listeners[LST_COUNT];
static int ready_fd = -1;   /* the master's ready pipe (worker_set_ready_fd) */
static struct ev_timer stop_timer;
static struct ev_io sig_io;

/* A TLS ClientHello on a STARTTLS port is served as implicit TLS (clients set to "SSL" on 587,
 * 143 or 110 just work); anything else gets the plaintext greeting. */
int worker_session_hello(struct session *s, struct conn *c, const char *hint_fmt,
			 unsigned hint_port)
{
	if (c->plaintext_peer) {
		char line[400];
		snprintf(line, sizeof(line), hint_fmt, hint_port);
		conn_write_plain(c, line);
		worker_diag(s, DIAG_PLAINTEXT, NULL, 0, "plaintext client on an SSL/TLS port");
		return -2;
	}
	switch (c->hello) {
	case CONN_HELLO_WAIT:
		return 3;
	case CONN_HELLO_TLS:
		c->hello = CONN_HELLO_NONE;
		s->greet_after_tls = 1;
		log_info("sess=%016llx event=tls-on-starttls-port listener=%s",
			 (unsigned long long)s->id, s->lc->name);
		return conn_start_tls(c, s->w->tls) < 0 ? -1 : 2;
	case CONN_HELLO_PLAIN:
		c->hello = CONN_HELLO_NONE;
		return 1;
	default:
		return 0;
	}
}

/* Wait for a ClientHello on client ports that offer STARTTLS (not on the MX port 25), for a few
 * round trips of the connection (conn_wait_hello), so plaintext clients are greeted at once. */
int worker_session_wait_hello(struct session *s, struct conn *c)
{
	if (s->w->tls == NULL || s->lc->implicit_tls || s->lst == LST_SMTP)
		return 0;
	unsigned margin = s->w->cfg->tls_hello_margin_ms;
	conn_wait_hello(c, margin, margin > WORKER_HELLO_WAIT_MAX_MS ? margin :
			WORKER_HELLO_WAIT_MAX_MS);
	return 1;
}

/* Answer an HTTP request on a mail port with one line of the session's protocol. */
int worker_http_line(struct session *s, struct conn *c, const char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (!crossproto_http_request(line, len) && !crossproto_http_header(line, len))
		return 0;
	char msg[512];
	const char *what = "This is a mail server, not a web server: HTTP requests are not accepted "
			   "here; closing the connection";
	switch (s->lc->proto) {
	case PROTO_SMTP:
		snprintf(msg, sizeof(msg), "554 5.7.0 %.255s %s\r\n", s->w->cfg->hostname, what);
		break;
	case PROTO_IMAP:
		snprintf(msg, sizeof(msg), "* BYE %s\r\n", what);
		break;
	default:
		snprintf(msg, sizeof(msg), "-ERR %s\r\n", what);
		break;
	}
	conn_write(c, msg, strlen(msg));
	char esc[100];
	log_info("sess=%016llx event=http-on-mail-port listener=%s ip=%s line=\"%s\"",
		 (unsigned long long)s->id, s->lc->name, s->peer_ip,
		 log_escape(line, len > 60 ? 60 : len, esc, sizeof(esc)));
	return 1;
}

/* Count a failed login on the connection. */
int worker_login_failed(struct session *s)
{
	return ++s->login_failures >= WORKER_LOGIN_FAILURES_MAX;
}

/* The login-check environment of a session. */
void worker_auth_env(const struct session *s, struct auth_env *env)
{
	env->pool = s->w->pool;
	env->loop = s->w->loop;
	env->af = s->w->af;
	env->data_dir = s->w->cfg->data_dir;
	env->ip = s->peer_ip;
	env->delay_max_ms = s->w->cfg->login_delay_max * 1000;
	env->delay_min_ms = s->w->cfg->login_failure_delay * 1000;
	env->cache_ttl = s->w->cfg->login_cache_ttl;
	env->proto = s->lc->name;
	env->port = s->lc->port;
	env->client = s->client;
	env->tls = 1;   /* every protocol refuses credentials before TLS */
	env->diag_keep = s->w->cfg->diag_keep;
}

/* Record a login diagnostic. */
void worker_diag(const struct session *s, int kind, const char *user, int tls, const char *detail)
{
	struct diag_event e;
	memset(&e, 0, sizeof(e));
	e.kind = kind;
	snprintf(e.user, sizeof(e.user), "%s", user ? user : "");
	for (char *p = e.user; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	snprintf(e.ip, sizeof(e.ip), "%s", s->peer_ip);
	snprintf(e.proto, sizeof(e.proto), "%s", s->lc->name);
	e.port = s->lc->port;
	snprintf(e.client, sizeof(e.client), "%s", s->client);
	e.tls = tls;
	snprintf(e.detail, sizeof(e.detail), "%s", detail ? detail : "");
	diag_submit(s->w->pool, s->w->cfg->data_dir, s->w->cfg->diag_keep, &e);
}

/* A TLS handshake failed. */
void worker_tls_failed(const struct session *s, struct conn *c, const char *proto)
{
	char detail[256];
	const char *sni = c->tls ? tls_sni(c->tls) : NULL;
	snprintf(detail, sizeof(detail), "%s%s%s", tls_last_error(), sni ? "; SNI " : "",
		 sni ? sni : "");
	metrics_count(MC_TLS_FAILED);
	log_info("sess=%016llx proto=%s event=tls-failed ip=%s reason=\"%s\"",
		 (unsigned long long)s->id, proto, s->peer_ip, detail);
	worker_diag(s, DIAG_TLS_FAILED, NULL, 0, detail);
}

/* Fill the common fields of a new session. */
void worker_session_init(struct session *s, struct worker *w, enum listener_id lst,
			 const struct sockaddr_storage *peer, void (*shutdown)(struct session *s))
{
	s->w = w;
	s->lst = lst;
	s->lc = &w->cfg->l[lst];
	s->peer = *peer;
	s->shutdown = shutdown;
}

/* Add a session to the worker's list. */
void worker_session_add(struct worker *w, struct session *s, const char *proto)
{
	unsigned char r[8];
	if (getrandom(r, sizeof(r), 0) == (ssize_t)sizeof(r))
		memcpy(&s->id, r, sizeof(s->id));
	const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, s->peer_ip,
			  sizeof(s->peer_ip));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, s->peer_ip,
			  sizeof(s->peer_ip));
	s->next = w->sessions;
	s->prev = NULL;
	if (w->sessions)
		w->sessions->prev = s;
	w->sessions = s;
	w->nsessions++;
	metrics_connection(s->lst);
	metrics_sample_memory();
	log_info("sess=%016llx proto=%s event=connect listener=%s ip=%s", (unsigned long long)s->id,
		 proto, s->lc->name, s->peer_ip);
}

/* Resume listeners paused at the session cap or on fd exhaustion. */
static void worker_resume_listeners(struct worker *w)
{
	for (int i = 0; i < LST_COUNT; i++) {
		struct listener *l = &listeners[i];
		if (l->paused && l->io.fd >= 0 && !w->stopping) {
			l->paused = 0;
			ev_io_mod(w->loop, &l->io, EV_READ);
		}
	}
}

/* Remove a session from the list and the per-IP table. */
void worker_session_remove(struct worker *w, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nsessions--;
	iptable_release(w->ipt, w->index, (struct sockaddr *)&s->peer);
	worker_resume_listeners(w);
	if (w->stopping && w->nsessions == 0)
		ev_stop(w->loop);
}

/* Accept every pending connection on a listener. */
static void worker_on_accept(struct ev_io *io, unsigned events)
{
	struct listener *l = io->arg;
	struct worker *w = l->w;
	const struct listener_conf *lc = &w->cfg->l[l->id];
	(void)events;
	for (int i = 0; i < 64 && !w->stopping; i++) {
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
	for (int i = 0; i < LST_COUNT; i++) {
		if (listeners[i].io.fd >= 0) {
			int fd = listeners[i].io.fd;
			ev_io_del(w->loop, &listeners[i].io);
			close(fd);
		}
	}
	for (struct session *s = w->sessions, *next; s; s = next) {
		next = s->next;
		s->shutdown(s);
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
	w.index = index;
	w.cfg = cfg;
	w.tls = tls;
	w.ipt = ipt;
	w.af = af;
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
	acctdb_close(&w.db);
	log_info("event=worker-stopped index=%u", index);
	_exit(0);
}
