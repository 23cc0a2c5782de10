/* pop3-session.c - the POP3 server (RFC 1939, 2449 CAPA, 2595 STLS, 5034 SASL, 3206 codes).
 *
 * Serves INBOX from the same store as SMTP delivers into and IMAP reads. After login a pool job
 * takes the account's POP3 lock (flock on <account>/pop3.lock, so a second session in any worker
 * gets [IN-USE]) and loads the message list once. UIDL is "%08x%08x" of UID and UIDVALIDITY, so
 * it is stable across sessions, restarts and index rebuilds and agrees with IMAP's UIDs. LIST
 * sizes are the message's own size, CRLF without dot-stuffing (computed at delivery, see
 * wire.h). RETR, TOP, LIST and
 * UIDL stream: they write while the socket takes it and resume when it drains. DELE only marks;
 * QUIT expunges the marked messages in one index transaction; a dropped connection changes
 * nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth-verify.h"
#include "base64.h"
#include "conn.h"
#include "ev.h"
#include "linereader.h"
#include "diag.h"
#include "log.h"
#include "metrics.h"
#include "num.h"
#include "pool.h"
#include "pop3-cmd.h"
#include "store-path.h"
#include "store.h"
#include "tls.h"
#include "wire.h"
#include "pop3.h"

/* Command lines: the listener's line_length_limit (at least RFC 2449 4's 255 octets with CRLF,
 * which config.c guarantees with its 512 minimum). */
#define POP3_SASL_LINE_MAX 4096      /* SASL responses are longer than commands */
#define POP3_LINE_LIMIT_MAX (1024 * 1024)   /* config.c's ceiling of line_length_limit */
/* Bad commands before login that end the session, like Dovecot's login process
 * (CLIENT_MAX_BAD_COMMANDS 3); max_errors still applies when it is lower. */
#define POP3_PREAUTH_ERRORS_MAX 3
#define POP3_OUT_HIWAT 65536         /* stop producing output above this, resume on drain */
#define POP3_OUT_MAX (1024 * 1024)   /* hard cap of queued output */
#define POP3_ADDR_MAX 321
/* A login that finds the mailbox locked retries this long: a session whose client vanished
 * (a phone that lost its signal sends no FIN) is found dead by the keepalive probe below. */
#define POP3_LOCK_WAIT_MS 6000
#define POP3_LOCK_RETRY_MS 200
/* Logged-in sessions probe an idle peer after 2 s, every 1 s, and give up after 2 unanswered
 * probes: a vanished client holds the lock for about 4 s, not until the 10-minute timeout. */
#define POP3_PROBE_IDLE_S 2
#define POP3_PROBE_INTVL_S 1
#define POP3_PROBE_COUNT 2

enum pop3_state { P_AUTH, P_SASL, P_TRANS, P_BUSY };
enum pop3_stream { S_NONE, S_LIST, S_UIDL, S_RETR, S_TOP };

struct pop3_msg {
	uint32_t uid;
	uint8_t deleted;
	uint8_t retrieved;
	uint8_t in_new;
	unsigned flags;
	uint64_t keywords;
	uint64_t wire_size;
	char *fname;
};

struct pop3_session {
	struct session base;
	struct conn conn;
	struct linereader lr;
	struct ev_timer timer;
	enum pop3_state st;
	unsigned errors;
	unsigned bad_preauth;            /* invalid commands before login */
	int policy_error;                /* the next error is not a bad command */
	uint64_t lock_wait_until;        /* ev_now_ms() deadline for [IN-USE] retries, 0 = none */
	uint64_t stream_progress;        /* ev_now_ms() when the response in progress last moved */
	char user_cmd[POP3_ADDR_MAX];    /* from USER, waiting for PASS */
	char user[POP3_ADDR_MAX];        /* logged in */
	int sasl_mech;                   /* 1 PLAIN, 2 LOGIN */
	int sasl_step;
	char sasl_user[POP3_ADDR_MAX];
	/* transaction state */
	struct store_account *acct;
	int lock_fd;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t nmsgs;
	/* a multi-line response in progress */
	enum pop3_stream stream;
	size_t pos;
	int fd;
	struct wire_state ws;
	struct pop3_top top;
	struct buf chunk;
};

/* One line for a plaintext client on an implicit-TLS port (%u: the STARTTLS port). */
static const char pop3_tls_hint[] =
	"-ERR [SYS/PERM] This port needs SSL/TLS from the start: "
	"turn on SSL/TLS in your mail program, or use port %u with STARTTLS\r\n";

static void pop3_process(struct pop3_session *s);

/* The longest command line accepted (line_length_limit). */
static size_t pop3_line_max(const struct pop3_session *s)
{
	size_t n = s->base.lc->line_length_limit;
	return n > POP3_LINE_LIMIT_MAX ? POP3_LINE_LIMIT_MAX : n;
}

/* The longest line accepted: a SASL response may be longer than a command. */
static size_t pop3_sasl_max(const struct pop3_session *s)
{
	size_t n = s->base.lc->line_length_limit;
	if (n > POP3_LINE_LIMIT_MAX)
		n = POP3_LINE_LIMIT_MAX;
	return n > POP3_SASL_LINE_MAX ? n : POP3_SASL_LINE_MAX;
}

/* Queue one reply line (CRLF added). */
static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void pop3_reply(struct pop3_session *s, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	metrics_observe(MH_COMMAND, MP_POP3, &s->base.cmd_ns);
	if (n < 0)
		return;
	size_t len = (size_t)n > sizeof(line) - 3 ? sizeof(line) - 3 : (size_t)n;
	if (line[0] == '-')
		log_info("sess=%016llx proto=pop3 event=reply result=\"%.*s\"",
			 (unsigned long long)s->base.id, (int)len, line);
	line[len++] = '\r';
	line[len++] = '\n';
	if (conn_write(&s->conn, line, len) < 0)
		s->conn.failed = 1;
}

/* Release everything the transaction state holds. */
static void pop3_drop_mailbox(struct pop3_session *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
	for (size_t i = 0; i < s->nmsgs; i++)
		free(s->msgs[i].fname);
	free(s->msgs);
	s->msgs = NULL;
	s->nmsgs = 0;
	store_account_close(&s->acct);
	if (s->lock_fd >= 0) {
		close(s->lock_fd);   /* releases the flock */
		s->lock_fd = -1;
	}
}

/* Free the session once nothing points at it. */
static void pop3_release(struct session *b)
{
	struct pop3_session *s = (struct pop3_session *)b;
	ev_timer_cancel(s->base.w->loop, &s->timer);
	pop3_drop_mailbox(s);
	buf_free(&s->chunk);
	explicit_bzero(s->sasl_user, sizeof(s->sasl_user));
}

/* Close at the next safe point. */
static void pop3_close(struct pop3_session *s, const char *reason)
{
	session_close(&s->base, reason);
}

/* A protocol error by the client; too many end the session. */
static void pop3_error(struct pop3_session *s)
{
	int preauth = s->st != P_TRANS && !s->policy_error;
	s->policy_error = 0;
	if (preauth)
		s->bad_preauth++;
	if (++s->errors >= s->base.lc->max_errors) {
		pop3_reply(s, "-ERR Too many errors in this session; closing the connection");
		pop3_close(s, "too many errors");
	} else if (preauth && s->bad_preauth >= POP3_PREAUTH_ERRORS_MAX) {
		pop3_reply(s, "-ERR Too many invalid commands before login; closing the connection");
		pop3_close(s, "too many errors before login");
	}
}

/* Autologout. */
static void pop3_on_timeout(struct ev_timer *t)
{
	struct pop3_session *s = t->arg;
	uint64_t idle_ms = (uint64_t)s->base.lc->command_timeout * 1000;
	if (idle_ms < 600000)
		idle_ms = 600000;
	if (s->st == P_BUSY || (s->stream != S_NONE &&
				ev_now_ms() - s->stream_progress < idle_ms)) {
		ev_timer_set(s->base.w->loop, &s->timer, 1000, pop3_on_timeout, s);
		return;
	}
	if (s->stream != S_NONE) {   /* the client stopped reading the response */
		pop3_close(s, "timeout while sending");
		return;
	}
	pop3_reply(s, "-ERR Autologout: idle for too long; nothing was deleted");
	pop3_close(s, "timeout");
}

/* (Re)arm the idle timer: RFC 1939 asks for at least 10 minutes once logged in. */
static void pop3_arm_timer(struct pop3_session *s)
{
	uint64_t secs = s->base.lc->command_timeout;
	if (s->st == P_AUTH || s->st == P_SASL)
		secs = secs < 60 ? secs : 60;   /* shorter before login */
	else if (secs < 600)
		secs = 600;
	ev_timer_set(s->base.w->loop, &s->timer, secs * 1000, pop3_on_timeout, s);
}

/* Worker shutdown: idle sessions end now, without committing deletions. */
static void pop3_on_shutdown(struct session *b)
{
	struct pop3_session *s = (struct pop3_session *)b;
	if (s->st == P_BUSY)
		return;
	pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down; nothing was deleted, please reconnect");
	pop3_close(s, "shutdown");
}

/* ---- login ---- */

struct open_job {
	struct pop3_session *s;
	char root[4096];
	unsigned login_delay;       /* seconds, 0 = none */
	unsigned expire_days;       /* 0 = no expiry */
	long wait_left;             /* LOGIN-DELAY: seconds until the next login is allowed */
	int result;                 /* 1 ok, 0 in use, 2 too soon, -1 failure */
	char why[300];
	struct store_account *acct;
	int lock_fd;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	size_t nmsgs;
};

/* EXPIRE: remove messages downloaded (\Seen) more than `days` days ago. */
static void pop3_expire_old(struct store_account *acct, unsigned days)
{
	const char *err;
	struct store_msg_info *m;
	int n = store_message_list(acct, "INBOX", &m, &err);
	if (n <= 0) {
		if (n == 0)
			free(m);
		return;
	}
	time_t cutoff = time(NULL) - (time_t)days * 86400;
	uint32_t *uids = calloc((size_t)n, sizeof(*uids));
	size_t k = 0;
	for (int i = 0; uids && i < n; i++)
		if ((m[i].flags & STORE_F_SEEN) && (m[i].savedate ? m[i].savedate : m[i].internaldate) <
		    cutoff)
			uids[k++] = m[i].uid;
	if (k > 0 && store_expunge(acct, "INBOX", uids, k, &err) > 0)
		log_info("event=pop3-expire removed=%zu days=%u", k, days);
	free(uids);
	free(m);
}

/* Pool thread: count the POP3 sizes an index made before level 5 lacks (once: they are kept).
 * A message that cannot be read gets its file size; RETR will say it cannot be read. */
static void pop3_count_sizes(struct store_account *acct, const struct store_msg_info *m,
			     struct pop3_msg *msgs, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += msgs[i].wire_size == STORE_WIRE_UNKNOWN;
	if (k == 0)
		return;
	uint32_t *uids = calloc(k, sizeof(*uids));
	uint64_t *sizes = calloc(k, sizeof(*sizes));
	size_t done = 0;
	const char *err;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].wire_size != STORE_WIRE_UNKNOWN)
			continue;
		msgs[i].wire_size = m[i].size;
		int fd = store_message_fd(acct, "INBOX", &m[i], &err);
		int64_t w = fd >= 0 ? wire_size_fd(fd) : -1;
		if (fd >= 0)
			close(fd);
		if (w < 0)
			continue;
		msgs[i].wire_size = (uint64_t)w;
		if (uids && sizes) {
			uids[done] = msgs[i].uid;
			sizes[done++] = (uint64_t)w;
		}
	}
	if (done > 0 && store_set_wire_sizes(acct, "INBOX", uids, sizes, done, &err) < 0)
		log_warn("event=pop3-size-update-failed error=\"%s\"", err);
	free(uids);
	free(sizes);
}

/* Pool thread: lock the account's POP3 access and load INBOX. */
static void open_work(void *arg)
{
	struct open_job *j = arg;
	const char *err;
	char lock[4200];
	j->lock_fd = -1;
	int r = store_account_open(j->root, &j->acct, &err);
	if (r == 0 && store_account_create(j->root, &err) == 0)
		r = store_account_open(j->root, &j->acct, &err);
	if (r <= 0) {
		snprintf(j->why, sizeof(j->why), "open mailbox: %s", r == 0 ? "missing" : err);
		j->result = -1;
		return;
	}
	snprintf(lock, sizeof(lock), "%s/pop3.lock", j->root);
	j->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (j->lock_fd < 0) {
		snprintf(j->why, sizeof(j->why), "lock file: %s", strerror(errno));
		j->result = -1;
		return;
	}
	if (flock(j->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		j->result = errno == EWOULDBLOCK ? 0 : -1;
		snprintf(j->why, sizeof(j->why), "lock: %s", strerror(errno));
		return;
	}
	/* LOGIN-DELAY: the lock file holds the time of the last login */
	char last[32] = "";
	time_t now = time(NULL);
	ssize_t got = pread(j->lock_fd, last, sizeof(last) - 1, 0);
	if (got > 0)
		last[got] = '\0';
	long prev = got > 0 ? atol(last) : 0;
	if (j->login_delay && prev > 0 && now - prev < (long)j->login_delay && now >= prev) {
		j->wait_left = (long)j->login_delay - (now - prev);
		j->result = 2;
		return;
	}
	int len = snprintf(last, sizeof(last), "%lld\n", (long long)now);
	if (ftruncate(j->lock_fd, 0) == 0 && pwrite(j->lock_fd, last, (size_t)len, 0) != len)
		log_warn("event=pop3-lock-write-failed root=\"%s\"", j->root);
	struct store_mailbox_info mb;
	store_mailbox_sync(j->acct, "INBOX", &err);   /* adopt what a crash left unindexed */
	if (j->expire_days)
		pop3_expire_old(j->acct, j->expire_days);
	if (store_mailbox_get(j->acct, "INBOX", &mb, &err) != 1) {
		snprintf(j->why, sizeof(j->why), "INBOX: %s", err);
		j->result = -1;
		return;
	}
	j->uidvalidity = mb.uidvalidity;
	struct store_msg_info *m;
	int n = store_message_list(j->acct, "INBOX", &m, &err);
	if (n < 0) {
		snprintf(j->why, sizeof(j->why), "list: %s", err);
		j->result = -1;
		return;
	}
	j->msgs = calloc((size_t)n + 1, sizeof(*j->msgs));
	if (j->msgs == NULL) {
		free(m);
		j->result = -1;
		return;
	}
	for (int i = 0; i < n; i++) {
		j->msgs[i].uid = m[i].uid;
		j->msgs[i].in_new = (uint8_t)m[i].in_new;
		j->msgs[i].flags = m[i].flags;
		j->msgs[i].keywords = m[i].keywords;
		j->msgs[i].wire_size = m[i].wire_size;
		j->msgs[i].fname = strdup(m[i].filename);
		if (j->msgs[i].fname == NULL) {
			j->result = -1;
			j->nmsgs = (size_t)i;
			free(m);
			return;
		}
	}
	j->nmsgs = (size_t)n;
	pop3_count_sizes(j->acct, m, j->msgs, j->nmsgs);
	free(m);
	j->result = 1;
}

static void pop3_open_mailbox(struct pop3_session *s);

/* The mailbox was locked: try again (the holder may be a dead connection on its way out). */
static void pop3_lock_retry(struct ev_timer *t)
{
	struct pop3_session *s = t->arg;
	if (s->base.closing)
		return;
	if (s->base.w->stopping) {   /* no more waiting: the worker is shutting down */
		pop3_reply(s, "-ERR [SYS/TEMP] Server shutting down; nothing was deleted, please "
			      "reconnect");
		pop3_close(s, "shutdown");
		conn_flush(&s->conn);
		return;
	}
	pop3_open_mailbox(s);
	if (s->st != P_BUSY) {   /* could not even try: replied */
		s->lock_wait_until = 0;
		pop3_arm_timer(s);
		conn_pause_read(&s->conn, 0);
		conn_flush(&s->conn);
	}
}

/* Ask the kernel to probe an idle logged-in client, so a vanished one (no FIN, no RST) ends its
 * session, and releases the mailbox lock, within seconds (tcp(7) keepalive). */
static void pop3_probe_peer(struct pop3_session *s)
{
	int on = 1, idle = POP3_PROBE_IDLE_S, intvl = POP3_PROBE_INTVL_S, cnt = POP3_PROBE_COUNT;
	int fd = s->conn.fd;
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0)
		log_debug("sess=%016llx proto=pop3 event=keepalive-failed error=\"%s\"",
			  (unsigned long long)s->base.id, strerror(errno));
}

/* Loop thread: enter the transaction state, or say why not. */
static void open_done(void *arg)
{
	struct open_job *j = arg;
	struct pop3_session *s = j->s;
	s->base.job_running = 0;
	if (s->base.closing || j->result != 1) {
		store_account_close(&j->acct);
		if (j->lock_fd >= 0)
			close(j->lock_fd);
		for (size_t i = 0; i < j->nmsgs; i++)
			free(j->msgs[i].fname);
		free(j->msgs);
		if (s->base.closing) {
			free(j);
			session_reap_later(&s->base);
			return;
		}
		if (j->result == 0 && ev_now_ms() < s->lock_wait_until) {
			free(j);
			ev_timer_set(s->base.w->loop, &s->timer, POP3_LOCK_RETRY_MS, pop3_lock_retry, s);
			return;
		}
		if (j->result == 2) {
			pop3_reply(s, "-ERR [LOGIN-DELAY] This account may check mail once every %u "
				      "seconds: try again in %ld seconds", s->base.w->cfg->pop3_login_delay,
				   j->wait_left);
		} else if (j->result == 0) {
			log_info("sess=%016llx proto=pop3 event=in-use user=%s",
				 (unsigned long long)s->base.id, s->user);
			pop3_reply(s, "-ERR [IN-USE] Another POP3 session is using this mailbox: close "
				      "your other mail program or wait for it to finish");
		} else {
			log_warn("sess=%016llx proto=pop3 event=open-failed user=%s error=\"%s\"",
				 (unsigned long long)s->base.id, s->user, j->why);
			pop3_reply(s, "-ERR [SYS/TEMP] Cannot open your mailbox now; please try again "
				      "later");
		}
		s->user[0] = '\0';
		s->st = P_AUTH;
	} else {
		pop3_probe_peer(s);
		s->acct = j->acct;
		s->lock_fd = j->lock_fd;
		s->msgs = j->msgs;
		s->nmsgs = j->nmsgs;
		s->uidvalidity = j->uidvalidity;
		s->st = P_TRANS;
		uint64_t total = 0;
		for (size_t i = 0; i < s->nmsgs; i++)
			total += s->msgs[i].wire_size;
		metrics_login(MP_POP3, 1);
		log_info("sess=%016llx proto=pop3 event=login result=ok user=%s ip=%s messages=%zu",
			 (unsigned long long)s->base.id, s->user, s->base.peer_ip, s->nmsgs);
		pop3_reply(s, "+OK Logged in: %zu messages (%llu octets)", s->nmsgs,
			   (unsigned long long)total);
	}
	free(j);
	s->lock_wait_until = 0;
	pop3_arm_timer(s);
	conn_pause_read(&s->conn, 0);
	conn_flush(&s->conn);
}

/* The login succeeded: open the mailbox on the pool. */
static void pop3_open_mailbox(struct pop3_session *s)
{
	struct open_job *j = calloc(1, sizeof(*j));
	if (j == NULL || store_account_path(s->base.w->cfg->data_dir, s->user, j->root,
					    sizeof(j->root)) < 0) {
		free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot open your mailbox now; please try again later");
		s->user[0] = '\0';
		s->st = P_AUTH;
		return;
	}
	j->s = s;
	j->login_delay = s->base.w->cfg->pop3_login_delay;
	j->expire_days = (unsigned)atoi(s->base.w->cfg->pop3_expire);   /* "never" gives 0 */
	if (pool_submit(s->base.w->pool, open_work, open_done, j) < 0) {
		free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Cannot open your mailbox now; please try again later");
		s->user[0] = '\0';
		s->st = P_AUTH;
		return;
	}
	s->base.job_running = 1;
	s->st = P_BUSY;
	if (s->lock_wait_until == 0)
		s->lock_wait_until = ev_now_ms() + POP3_LOCK_WAIT_MS;
	conn_pause_read(&s->conn, 1);
}

/* Loop thread: the password check finished. */
static void pop3_auth_done(void *ctx, const struct auth_result *r)
{
	struct pop3_session *s = ctx;
	s->base.job_running = 0;
	if (s->base.closing) {
		session_reap_later(&s->base);
		return;
	}
	s->st = P_AUTH;
	if (r->result == 1) {
		snprintf(s->user, sizeof(s->user), "%s", r->user);
		pop3_open_mailbox(s);
	} else if (r->result == 0) {
		char esc[128];
		metrics_login(MP_POP3, 0);
		log_info("sess=%016llx proto=pop3 event=login result=failed reason=\"%s\" user=\"%s\" "
			 "ip=%s", (unsigned long long)s->base.id, r->reason,
			 log_escape(r->user, strlen(r->user), esc, sizeof(esc)), s->base.peer_ip);
		if (session_login_failed(&s->base)) {
			pop3_reply(s, "-ERR [AUTH] Authentication failed: wrong address or password; "
				      "too many failed logins, closing the connection");
			pop3_close(s, "too many failed logins");
		} else {
			pop3_reply(s, "-ERR [AUTH] Authentication failed: wrong address or password "
				      "(the user name is your full email address)");
			s->policy_error = 1;   /* failed logins have their own limit */
			pop3_error(s);
		}
	} else {
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure; please try again "
			      "later");
	}
	if (s->st != P_BUSY) {
		if (!s->base.closing)
			conn_pause_read(&s->conn, 0);
		conn_flush(&s->conn);
	}
}

/* Check credentials on the pool. */
static void pop3_login(struct pop3_session *s, const char *user, const char *pass)
{
	struct auth_env env;
	session_auth_env(&s->base, &env);
	if (auth_verify_submit(&env, user, pass, pop3_auth_done, s) < 0) {
		pop3_reply(s, "-ERR [SYS/TEMP] Temporary authentication failure; please try again "
			      "later");
		return;
	}
	s->base.job_running = 1;
	s->st = P_BUSY;
	conn_pause_read(&s->conn, 1);
}

/* Refuse credentials over plaintext (user: the login name when known). 1 refused. */
static int pop3_need_tls(struct pop3_session *s, const char *user)
{
	if (s->base.tls)
		return 0;
	session_diag(&s->base, DIAG_PLAINTEXT, user, 0, "login before STLS");
	pop3_reply(s, "-ERR [AUTH] Plaintext login is not allowed: turn on encryption (SSL/TLS or "
		      "STARTTLS) in your mail program");
	s->policy_error = 1;   /* a valid command refused before STLS: counts toward max_errors */
	pop3_error(s);
	return 1;
}

/* Decode a base64 SASL line into out (NUL-terminated). -1 if invalid or too long. */
static int pop3_b64(const char *in, char *out, size_t outlen)
{
	ssize_t n = base64_decode(in, strlen(in), (unsigned char *)out, outlen - 1);
	if (n < 0 || memchr(out, '\0', (size_t)n) != NULL)
		return -1;
	out[n] = '\0';
	return 0;
}

/* A SASL response line. */
static void pop3_sasl_line(struct pop3_session *s, const char *line)
{
	char user[POP3_ADDR_MAX], pw[1024];
	if (strcmp(line, "*") == 0) {
		s->st = P_AUTH;
		pop3_reply(s, "-ERR Authentication cancelled");
		return;
	}
	if (s->sasl_mech == 1) {
		s->st = P_AUTH;
		int r = sasl_plain_decode(line, user, sizeof(user), pw, sizeof(pw));
		if (r == 0)
			pop3_login(s, user, pw);
		else {
			pop3_reply(s, "-ERR [AUTH] %s", r == -2 ? "Logging in on behalf of another user "
				   "is not allowed" : "Malformed AUTH PLAIN response");
			pop3_error(s);
		}
		explicit_bzero(pw, sizeof(pw));
		return;
	}
	if (s->sasl_step == 0) {
		if (pop3_b64(line, s->sasl_user, sizeof(s->sasl_user)) < 0) {
			s->st = P_AUTH;
			pop3_reply(s, "-ERR Malformed AUTH LOGIN response (invalid base64)");
			pop3_error(s);
			return;
		}
		s->sasl_step = 1;
		pop3_reply(s, "+ UGFzc3dvcmQ6");
		return;
	}
	s->st = P_AUTH;
	if (pop3_b64(line, pw, sizeof(pw)) < 0) {
		pop3_reply(s, "-ERR Malformed AUTH LOGIN response (invalid base64)");
		pop3_error(s);
		return;
	}
	pop3_login(s, s->sasl_user, pw);
	explicit_bzero(pw, sizeof(pw));
}

/* ---- commands ---- */

/* Parse a message number argument: 1..nmsgs and not deleted. Returns the index or -1 (replied). */
static ssize_t pop3_msgno(struct pop3_session *s, const char *arg, int allow_deleted)
{
	uint64_t n;
	if (pop3_cmd_number(arg, UINT32_MAX, &n) < 0) {
		pop3_reply(s, "-ERR Invalid message number: give a number from the LIST output");
		pop3_error(s);
		return -1;
	}
	if (n == 0 || n > s->nmsgs) {
		pop3_reply(s, "-ERR There is no message %llu", (unsigned long long)n);
		return -1;
	}
	if (s->msgs[n - 1].deleted && !allow_deleted) {
		pop3_reply(s, "-ERR Message %llu is already deleted", (unsigned long long)n);
		return -1;
	}
	return (ssize_t)(n - 1);
}

/* CAPA. */
static void cmd_capa(struct pop3_session *s)
{
	pop3_reply(s, "+OK Capability list follows");
	pop3_reply(s, "TOP");
	pop3_reply(s, "UIDL");
	pop3_reply(s, "RESP-CODES");
	pop3_reply(s, "AUTH-RESP-CODE");
	pop3_reply(s, "PIPELINING");
	if (s->st == P_AUTH && s->base.tls) {
		pop3_reply(s, "USER");
		pop3_reply(s, "SASL PLAIN LOGIN");
	}
	if (s->st == P_AUTH && !s->base.tls && s->base.w->tls)
		pop3_reply(s, "STLS");
	const struct config *cfg = s->base.w->cfg;
	if (strcmp(cfg->pop3_expire, "never") == 0)
		pop3_reply(s, "EXPIRE NEVER");
	else if (cfg->pop3_expire[0])
		pop3_reply(s, "EXPIRE %s", cfg->pop3_expire);
	if (cfg->pop3_login_delay)
		pop3_reply(s, "LOGIN-DELAY %u", cfg->pop3_login_delay);
	pop3_reply(s, "IMPLEMENTATION postino");
	pop3_reply(s, ".");
}

/* Open message i for RETR/TOP. 0 ok, -1 replied. */
static int pop3_open_msg(struct pop3_session *s, size_t i)
{
	struct store_msg_info m;
	const char *err;
	memset(&m, 0, sizeof(m));
	m.uid = s->msgs[i].uid;
	m.in_new = s->msgs[i].in_new;
	m.flags = s->msgs[i].flags;
	snprintf(m.filename, sizeof(m.filename), "%s", s->msgs[i].fname);
	s->fd = store_message_fd(s->acct, "INBOX", &m, &err);
	if (s->fd < 0) {
		log_warn("sess=%016llx proto=pop3 event=open-message-failed error=\"%s\"",
			 (unsigned long long)s->base.id, err);
		pop3_reply(s, "-ERR [SYS/TEMP] This message cannot be read now (it may have been "
			      "deleted by another program)");
		return -1;
	}
	wire_init(&s->ws);
	return 0;
}

/* Commands of the TRANSACTION state. */
static void pop3_trans_cmd(struct pop3_session *s, const char *verb, char *a1, char *a2)
{
	if (strcasecmp(verb, "STAT") == 0 && !a1) {
		uint64_t total = 0;
		size_t n = 0;
		for (size_t i = 0; i < s->nmsgs; i++)
			if (!s->msgs[i].deleted) {
				n++;
				total += s->msgs[i].wire_size;
			}
		pop3_reply(s, "+OK %zu %llu", n, (unsigned long long)total);
	} else if ((strcasecmp(verb, "LIST") == 0 || strcasecmp(verb, "UIDL") == 0) && !a2) {
		int uidl = verb[0] == 'U' || verb[0] == 'u';
		if (a1) {
			ssize_t i = pop3_msgno(s, a1, 0);
			if (i < 0)
				return;
			if (uidl)
				pop3_reply(s, "+OK %zd %08x%08x", i + 1, s->msgs[i].uid, s->uidvalidity);
			else
				pop3_reply(s, "+OK %zd %llu", i + 1,
					   (unsigned long long)s->msgs[i].wire_size);
			return;
		}
		pop3_reply(s, "+OK %s follows", uidl ? "unique-id listing" : "scan listing");
		s->stream = uidl ? S_UIDL : S_LIST;
		s->pos = 0;
	} else if (strcasecmp(verb, "RETR") == 0 && a1 && !a2) {
		ssize_t i = pop3_msgno(s, a1, 0);
		if (i < 0 || pop3_open_msg(s, (size_t)i) < 0)
			return;
		pop3_reply(s, "+OK %llu octets", (unsigned long long)s->msgs[i].wire_size);
		s->msgs[i].retrieved = 1;
		s->stream = S_RETR;
	} else if (strcasecmp(verb, "TOP") == 0 && a1 && a2) {
		uint64_t lines;
		if (pop3_cmd_number(a2, UINT64_MAX, &lines) < 0) {
			pop3_reply(s, "-ERR Invalid line count: use TOP <message> <lines>, lines >= 0");
			pop3_error(s);
			return;
		}
		ssize_t i = pop3_msgno(s, a1, 0);
		if (i < 0 || pop3_open_msg(s, (size_t)i) < 0)
			return;
		pop3_reply(s, "+OK top of message follows");
		s->stream = S_TOP;
		pop3_top_init(&s->top, lines);
	} else if (strcasecmp(verb, "DELE") == 0 && a1 && !a2) {
		ssize_t i = pop3_msgno(s, a1, 0);
		if (i < 0)
			return;
		s->msgs[i].deleted = 1;
		pop3_reply(s, "+OK Message %zd deleted", i + 1);
	} else if (strcasecmp(verb, "RSET") == 0 && !a1) {
		size_t n = 0;
		for (size_t i = 0; i < s->nmsgs; i++) {
			n += s->msgs[i].deleted;
			s->msgs[i].deleted = 0;
		}
		pop3_reply(s, "+OK %zu messages undeleted", n);
	} else if (strcasecmp(verb, "NOOP") == 0 && !a1) {
		pop3_reply(s, "+OK");
	} else {
		pop3_reply(s, "-ERR Unknown command or wrong arguments in this state");
		pop3_error(s);
	}
}

struct update_job {
	struct pop3_session *s;
	uint32_t *uids;
	size_t n;
	struct store_flag_change *seen;   /* EXPIRE: downloaded messages get \Seen */
	size_t nseen;
	int result;
	char why[300];
};

/* Pool thread: expunge what was marked, in one transaction. */
static void update_work(void *arg)
{
	struct update_job *j = arg;
	const char *err;
	uint64_t modseq;
	if (j->nseen > 0)
		store_set_flags(j->s->acct, "INBOX", j->seen, j->nseen, &modseq, &err);
	int r = j->n ? store_expunge(j->s->acct, "INBOX", j->uids, j->n, &err) : 0;
	j->result = r;
	if (r < 0)
		snprintf(j->why, sizeof(j->why), "%s", err);
}

/* Loop thread: report the UPDATE state's outcome and close. */
static void update_done(void *arg)
{
	struct update_job *j = arg;
	struct pop3_session *s = j->s;
	s->base.job_running = 0;
	if (j->result < 0) {
		log_warn("sess=%016llx proto=pop3 event=update-failed user=%s error=\"%s\"",
			 (unsigned long long)s->base.id, s->user, j->why);
		pop3_reply(s, "-ERR [SYS/TEMP] Could not delete the messages; nothing was deleted, "
			      "please try again");
	} else {
		log_info("sess=%016llx proto=pop3 event=update user=%s deleted=%d",
			 (unsigned long long)s->base.id, s->user, j->result);
		pop3_reply(s, "+OK Goodbye (%d messages deleted)", j->result);
	}
	free(j->uids);
	free(j->seen);
	free(j);
	pop3_close(s, "quit");
}

/* QUIT: sign off, committing deletions when logged in. */
static void cmd_quit(struct pop3_session *s)
{
	size_t n = 0, nseen = 0;
	const char *ex = s->base.w->cfg->pop3_expire;
	int expire = atoi(ex) > 0;
	if (strcmp(ex, "0") == 0)   /* EXPIRE 0: downloaded messages are not kept */
		for (size_t i = 0; i < s->nmsgs; i++)
			if (s->msgs[i].retrieved)
				s->msgs[i].deleted = 1;
	for (size_t i = 0; i < s->nmsgs; i++) {
		n += s->msgs[i].deleted;
		nseen += expire && s->msgs[i].retrieved && !s->msgs[i].deleted &&
			 !(s->msgs[i].flags & STORE_F_SEEN);
	}
	if (s->st != P_TRANS || (n == 0 && nseen == 0)) {
		pop3_reply(s, "+OK Goodbye");
		pop3_close(s, "quit");
		return;
	}
	struct update_job *j = calloc(1, sizeof(*j));
	if (j == NULL || (j->uids = calloc(n + 1, sizeof(*j->uids))) == NULL ||
	    (j->seen = calloc(nseen + 1, sizeof(*j->seen))) == NULL) {
		if (j)
			free(j->uids);
		free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory; nothing was deleted");
		pop3_close(s, "quit");
		return;
	}
	for (size_t i = 0; i < s->nmsgs; i++) {
		struct pop3_msg *m = &s->msgs[i];
		if (m->deleted)
			j->uids[j->n++] = m->uid;
		else if (expire && m->retrieved && !(m->flags & STORE_F_SEEN)) {
			j->seen[j->nseen].uid = m->uid;
			j->seen[j->nseen].flags = STORE_F_SEEN;
			j->seen[j->nseen].mode = STORE_FLAGS_ADD;
			j->nseen++;
		}
	}
	j->s = s;
	if (pool_submit(s->base.w->pool, update_work, update_done, j) < 0) {
		free(j->uids);
		free(j);
		pop3_reply(s, "-ERR [SYS/TEMP] Out of memory; nothing was deleted");
		pop3_close(s, "quit");
		return;
	}
	s->base.job_running = 1;
	s->st = P_BUSY;
	conn_pause_read(&s->conn, 1);
}

/* Run one command line. */
static void pop3_dispatch(struct pop3_session *s, char *line)
{
	const char *pass = pop3_cmd_pass_arg(line);
	if (pass != NULL && s->st == P_AUTH) {
		if (pop3_need_tls(s, s->user_cmd))
			return;
		if (s->user_cmd[0] == '\0') {
			pop3_reply(s, "-ERR Send USER first");
			pop3_error(s);
			return;
		}
		char user[POP3_ADDR_MAX];
		snprintf(user, sizeof(user), "%s", s->user_cmd);
		s->user_cmd[0] = '\0';
		pop3_login(s, user, pass);
		return;
	}
	struct pop3_cmd pc;
	enum pop3_cmd_result pr = pop3_cmd_parse(line, &pc);
	char *verb = pc.verb, *a1 = pc.arg[0], *a2 = pc.arg[1];
	if (pr == POP3_CMD_EMPTY) {
		pop3_reply(s, "-ERR Empty command");
		pop3_error(s);
		return;
	}
	s->base.cmd_ns = metrics_now_ns();
	if (log_debug_enabled())
		log_debug("sess=%016llx proto=pop3 cmd=%.8s", (unsigned long long)s->base.id, verb);
	if (strcasecmp(verb, "QUIT") == 0) {
		cmd_quit(s);
		return;
	}
	if (strcasecmp(verb, "CAPA") == 0) {
		cmd_capa(s);
		return;
	}
	if (pr == POP3_CMD_TOO_MANY) {
		pop3_reply(s, "-ERR Too many arguments");
		pop3_error(s);
		return;
	}
	if (s->st == P_TRANS) {
		pop3_trans_cmd(s, verb, a1, a2);
		return;
	}
	/* AUTHORIZATION state */
	if (strcasecmp(verb, "STLS") == 0 && !a1) {
		if (s->base.tls || s->base.w->tls == NULL) {
			pop3_reply(s, "-ERR %s", s->base.tls ? "TLS is already active" :
				   "TLS is not available on this server");
			pop3_error(s);
			return;
		}
		pop3_reply(s, "+OK Begin TLS negotiation");
		s->user_cmd[0] = '\0';
		if (conn_start_tls(&s->conn, s->base.w->tls) < 0)
			pop3_close(s, "TLS setup failed");
		return;
	}
	if (strcasecmp(verb, "USER") == 0 && a1 && !a2) {
		if (pop3_need_tls(s, a1))
			return;
		if (strlen(a1) >= sizeof(s->user_cmd)) {
			pop3_reply(s, "-ERR [AUTH] That user name is too long");
			pop3_error(s);
			return;
		}
		snprintf(s->user_cmd, sizeof(s->user_cmd), "%s", a1);
		pop3_reply(s, "+OK Now send your password with PASS");
		return;
	}
	if (strcasecmp(verb, "AUTH") == 0) {
		if (a1 == NULL) {
			pop3_reply(s, "+OK Mechanisms follow");
			if (s->base.tls) {
				pop3_reply(s, "PLAIN");
				pop3_reply(s, "LOGIN");
			}
			pop3_reply(s, ".");
			return;
		}
		if (pop3_need_tls(s, NULL))
			return;
		if (strcasecmp(a1, "PLAIN") == 0) {
			s->sasl_mech = 1;
			s->st = P_SASL;
			if (a2 && strcmp(a2, "=") != 0)
				pop3_sasl_line(s, a2);
			else if (a2)
				pop3_sasl_line(s, "");
			else
				pop3_reply(s, "+ ");
			return;
		}
		if (strcasecmp(a1, "LOGIN") == 0) {
			s->sasl_mech = 2;
			s->sasl_step = 0;
			s->st = P_SASL;
			if (a2)
				pop3_sasl_line(s, a2);
			else
				pop3_reply(s, "+ VXNlcm5hbWU6");
			return;
		}
		char m[64];
		snprintf(m, sizeof(m), "mechanism %.30s", a1);
		session_diag(&s->base, DIAG_BAD_MECH, NULL, s->base.tls, m);
		pop3_reply(s, "-ERR Unsupported authentication mechanism; use PLAIN or LOGIN");
		pop3_error(s);
		return;
	}
	if (strcasecmp(verb, "APOP") == 0) {
		pop3_reply(s, "-ERR APOP is not supported; use USER/PASS or AUTH over TLS");
		pop3_error(s);
		return;
	}
	pop3_reply(s, "-ERR Unknown command, or not allowed before login");
	pop3_error(s);
}

/* ---- multi-line responses that stream ---- */

/* Produce output for the response in progress until the socket is full. 1 when finished. */
static int pop3_stream(struct pop3_session *s)
{
	struct conn *c = &s->conn;
	if (conn_out_pending(c) < POP3_OUT_HIWAT)
		s->stream_progress = ev_now_ms();
	while (conn_out_pending(c) < POP3_OUT_HIWAT) {
		if (s->stream == S_LIST || s->stream == S_UIDL) {
			if (s->pos >= s->nmsgs) {
				pop3_reply(s, ".");
				return 1;
			}
			size_t i = s->pos++;
			if (s->msgs[i].deleted)
				continue;
			if (s->stream == S_UIDL)
				pop3_reply(s, "%zu %08x%08x", i + 1, s->msgs[i].uid, s->uidvalidity);
			else
				pop3_reply(s, "%zu %llu", i + 1,
					   (unsigned long long)s->msgs[i].wire_size);
			continue;
		}
		/* RETR / TOP */
		char in[16384];
		ssize_t n = s->stream == S_TOP && s->top.done ? 0 : read(s->fd, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* the +OK is out: all we can do is end the connection */
			log_warn("sess=%016llx proto=pop3 event=read-failed error=\"%s\"",
				 (unsigned long long)s->base.id, strerror(errno));
			pop3_close(s, "message read error");
			return 1;
		}
		size_t take = (size_t)n;
		if (s->stream == S_TOP && n > 0)
			take = pop3_top_take(&s->top, in, (size_t)n);
		buf_reset(&s->chunk);
		if ((take > 0 && wire_transform(&s->ws, in, take, &s->chunk) < 0) ||
		    conn_write(c, s->chunk.data, s->chunk.len) < 0) {
			pop3_close(s, "output buffer full");
			return 1;
		}
		if (n == 0 || (s->stream == S_TOP && s->top.done)) {
			buf_reset(&s->chunk);
			wire_finish(&s->ws, &s->chunk);
			buf_append(&s->chunk, ".\r\n", 3);
			conn_write(c, s->chunk.data, s->chunk.len);
			close(s->fd);
			s->fd = -1;
			return 1;
		}
	}
	return 0;
}

/* Work through buffered input and any response in progress. */
static void pop3_process(struct pop3_session *s)
{
	struct conn *c = &s->conn;
	static char line[POP3_LINE_LIMIT_MAX + 1];   /* pages are touched only as long lines come */
	while (!s->base.closing && c->fd >= 0) {
		if (s->stream != S_NONE) {
			if (!pop3_stream(s)) {
				c->want_write = 1;   /* resumes when the output drains */
				break;
			}
			s->stream = S_NONE;
			continue;
		}
		if (s->st == P_BUSY || c->tls_state == CONN_TLS_HANDSHAKE || c->want_tls_after_flush)
			break;
		if (conn_out_pending(c) >= POP3_OUT_HIWAT) {
			/* a client pipelining commands without reading the replies: take no more
			 * input until the output drains (the input buffer then fills and reading
			 * stops), so what it makes us hold stays bounded */
			c->want_write = 1;
			break;
		}
		const char *l;
		size_t len, consumed;
		s->lr.max = s->st == P_SASL ? pop3_sasl_max(s) : pop3_line_max(s);
		enum rl r = linereader_next(&s->lr, c->in.data, c->in.len, &l, &len, &consumed);
		if (r == RL_MORE) {
			buf_consume(&c->in, consumed);
			if (consumed == 0)
				break;
			continue;
		}
		if (r == RL_TOOLONG) {
			buf_consume(&c->in, consumed);
			pop3_reply(s, "-ERR Line too long: commands are limited to %zu octets",
				   s->lr.max);
			if (s->st == P_SASL)
				s->st = P_AUTH;
			pop3_error(s);
			continue;
		}
		int has_nul = memchr(l, '\0', len) != NULL;
		memcpy(line, l, len);
		line[len] = '\0';
		buf_consume(&c->in, consumed);
		pop3_arm_timer(s);
		if (has_nul) {
			pop3_reply(s, "-ERR NUL characters are not allowed in commands");
			pop3_error(s);
		} else if (s->st == P_SASL) {
			pop3_sasl_line(s, line);
		} else if (session_http_line(&s->base, c, line, len)) {
			pop3_close(s, "HTTP request on a mail port");
		} else {
			pop3_dispatch(s, line);
		}
		explicit_bzero(line, len);
	}
}

/* The session core's view of POP3 (session.h). */
static void pop3_op_greet(struct session *b)
{
	pop3_reply((struct pop3_session *)b, "+OK postino POP3 ready");
}

static void pop3_op_process(struct session *b)
{
	pop3_process((struct pop3_session *)b);
}

static int pop3_op_busy(const struct session *b)
{
	return ((const struct pop3_session *)b)->st == P_BUSY;
}

static void pop3_op_close_detail(const struct session *b, char *out, size_t outlen)
{
	const struct pop3_session *s = (const struct pop3_session *)b;
	snprintf(out, outlen, "user=%s", s->user[0] ? s->user : "-");
}

static const struct session_ops pop3_ops = {
	.proto = "pop3",
	.alpn = "pop3",
	.tls_hint = pop3_tls_hint,
	.hint_listener = LST_POP3,
	.tls_failure_diag = 1,
	.greet = pop3_op_greet,
	.process = pop3_op_process,
	.busy = pop3_op_busy,
	.close_detail = pop3_op_close_detail,
	.release = pop3_release,
	.shutdown = pop3_on_shutdown,
};

/* Take over an accepted connection. */
void pop3_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer)
{
	struct pop3_session *s = session_new(w, fd, lst, peer, &pop3_ops, sizeof(*s));
	if (s == NULL)
		return;
	s->fd = -1;
	s->lock_fd = -1;
	buf_init(&s->chunk, 65536);
	linereader_init(&s->lr, pop3_line_max(s));
	if (session_connect(&s->base, &s->conn, fd, pop3_sasl_max(s) + 2, POP3_OUT_MAX) < 0) {
		free(s);
		return;
	}
	pop3_arm_timer(s);
	session_begin(&s->base);
}
