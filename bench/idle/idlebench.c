/*
 * idlebench - load generator for bench/idle: many IMAPS sessions in IDLE, one thread, epoll and
 * non-blocking OpenSSL, so 10,000 TLS sessions cost the client little.
 *
 *   idle   open C IMAPS sessions (session i logs in as user(i mod U + 1)): LOGIN, SELECT INBOX,
 *          IDLE; print "READY ok= fail= secs=". Then commands on stdin, one a line:
 *            wake K GAP_MS   K deliveries to user1, GAP_MS (+ up to 50 % random) apart; after
 *                            each, wait until every IDLE session of user1 has seen a higher
 *                            "* N EXISTS"; prints "WAKE i= ms= first_ms= missing=" per delivery
 *                            and "WAKES n= median_ms= max_ms= missing= stray=".
 *            check           DONE on every session (each must answer its tagged OK, proving it
 *                            was still in IDLE), prints "CHECK ok= fail=".
 *          EOF closes everything.
 *          A delivery is SMTP (-s PORT: plain SMTP to 127.0.0.1, acknowledged by the 250 after
 *          DATA) or a command (-x "CMD": run by /bin/sh with the message on stdin, acknowledged
 *          by its exit status 0, e.g. Dovecot's dovecot-lda). The latency of one delivery is the
 *          time from the acknowledgement to the "* N EXISTS" of the last of user1's sessions
 *          (0 if all had it before the acknowledgement was read).
 *          -w PID: the server's master; idlebench stops with an error as soon as it is gone.
 *   mem    PID: sum Pss and Rss (/proc/PID/smaps_rollup) over PID and its descendants.
 *   cpu    PID: sum utime+stime (clock ticks, /proc/PID/stat) over PID and its descendants.
 *
 * Build: gcc -O2 -I../common -o idlebench idlebench.c ../common/proctree.c -lssl -lcrypto
 * Exit status: 0 ok, 1 something failed, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proctree.h"

static int port, smtp_port, nsess = 10000, nusers = 100, inflight_max = 64, timeout_s = 60;
static int watch_pid;
static const char *domain = "bench.test", *passfmt = "bench-pass-%d", *deliver_cmd;
static SSL_CTX *ctx;
static int ep;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "idlebench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* the watched server's master still runs (not gone, not a zombie) */
static int server_alive(void)
{
	if (watch_pid <= 0)
		return 1;
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", watch_pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static void check_server(void)
{
	if (!server_alive())
		die("the server (pid %d) is not running any more", watch_pid);
}

/* ------------------------------------------------------------------ sessions */

enum st { S_CONNECT, S_TLS, S_GREET, S_LOGIN, S_SELECT, S_IDLE_SENT, S_IDLING, S_DONE_SENT, S_CLOSED };

struct sess {
	int fd;
	int user;
	enum st st;
	SSL *ssl;
	long exists;       /* last "* N EXISTS" seen */
	double seen_at;    /* when exists last grew */
	char out[160];     /* pending command bytes */
	int outlen;
	char in[1024];
	int inlen;
	char why[200];
};

static struct sess *ss;
static int n_ok, n_fail, n_setup_done, n_stray;
static int cur_ev_waiting;

static void sess_fail(struct sess *s, const char *fmt, ...)
{
	if (s->st == S_CLOSED)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->why, sizeof s->why, fmt, ap);
	va_end(ap);
	if (n_fail < 10)
		fprintf(stderr, "idlebench: session %ld (user%d): %s\n", (long)(s - ss), s->user, s->why);
	int was_setup = s->st < S_IDLING;
	if (s->ssl)
		SSL_free(s->ssl);
	s->ssl = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->st = S_CLOSED;
	n_fail++;
	if (was_setup)
		n_setup_done++;
}

static void set_events(struct sess *s, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = s};
	epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
}

static void sess_send(struct sess *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	s->outlen = vsnprintf(s->out, sizeof s->out, fmt, ap);
	va_end(ap);
}

/* write what is pending; 0 done or waiting, -1 failed */
static int sess_flush(struct sess *s)
{
	while (s->outlen > 0) {
		int w = SSL_write(s->ssl, s->out, s->outlen);
		if (w <= 0) {
			int e = SSL_get_error(s->ssl, w);
			if (e == SSL_ERROR_WANT_WRITE) {
				set_events(s, EPOLLIN | EPOLLOUT);
				return 0;
			}
			if (e == SSL_ERROR_WANT_READ)
				return 0;
			sess_fail(s, "write failed (SSL error %d)", e);
			return -1;
		}
		memmove(s->out, s->out + w, (size_t)(s->outlen - w));
		s->outlen -= w;
	}
	set_events(s, EPOLLIN);
	return 0;
}

static void sess_start(struct sess *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		sess_fail(s, "socket: %s", strerror(errno));
		return;
	}
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	s->st = S_CONNECT;
	if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		sess_fail(s, "connect 127.0.0.1:%d: %s", port, strerror(errno));
		return;
	}
	struct epoll_event e = {.events = EPOLLOUT, .data.ptr = s};
	epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e);
}

static void on_line(struct sess *s, char *l)
{
	long n;
	char tag;
	if (sscanf(l, "* %ld EXISTS", &n) == 1) {
		if (n > s->exists) {
			s->exists = n;
			s->seen_at = now_s();
			if (s->st == S_IDLING && s->user != 1)
				n_stray++;
		}
		return;
	}
	if (strncmp(l, "* BYE", 5) == 0 && s->st >= S_IDLING) {
		sess_fail(s, "server said: %s", l);
		return;
	}
	switch (s->st) {
	case S_GREET:
		if (strncmp(l, "* OK", 4) != 0) {
			sess_fail(s, "greeting: %s", l);
			return;
		}
		char pass[64];
		snprintf(pass, sizeof pass, passfmt, s->user);
		sess_send(s, "a LOGIN user%d@%s %s\r\n", s->user, domain, pass);
		s->st = S_LOGIN;
		sess_flush(s);
		return;
	case S_LOGIN:
	case S_SELECT:
		if (l[0] == '*')
			return;
		tag = s->st == S_LOGIN ? 'a' : 'b';
		if (l[0] != tag || strncmp(l + 1, " OK", 3) != 0) {
			sess_fail(s, "%s: %s", s->st == S_LOGIN ? "LOGIN" : "SELECT INBOX", l);
			return;
		}
		if (s->st == S_LOGIN) {
			sess_send(s, "b SELECT INBOX\r\n");
			s->st = S_SELECT;
		} else {
			sess_send(s, "c IDLE\r\n");
			s->st = S_IDLE_SENT;
		}
		sess_flush(s);
		return;
	case S_IDLE_SENT:
		if (l[0] == '+') {
			s->st = S_IDLING;
			n_ok++;
			n_setup_done++;
		} else if (l[0] != '*') {
			sess_fail(s, "IDLE: %s", l);
		}
		return;
	case S_DONE_SENT:
		if (l[0] == 'c') {
			if (strncmp(l, "c OK", 4) == 0) {
				SSL_free(s->ssl);
				s->ssl = NULL;
				close(s->fd);
				s->fd = -1;
				s->st = S_CLOSED;
				cur_ev_waiting--;
			} else {
				cur_ev_waiting--;
				sess_fail(s, "DONE: %s", l);
			}
		}
		return;
	default:
		return;
	}
}

static void on_readable(struct sess *s)
{
	for (;;) {
		if (s->st == S_CLOSED)
			return;
		int r = SSL_read(s->ssl, s->in + s->inlen, (int)sizeof s->in - 1 - s->inlen);
		if (r <= 0) {
			int e = SSL_get_error(s->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return;
			if (s->st == S_DONE_SENT)
				cur_ev_waiting--;
			sess_fail(s, "connection closed by the server (SSL error %d)", e);
			return;
		}
		s->inlen += r;
		s->in[s->inlen] = 0;
		char *p = s->in, *nl;
		while (s->st != S_CLOSED && (nl = memchr(p, '\n', (size_t)(s->in + s->inlen - p)))) {
			*nl = 0;
			if (nl > p && nl[-1] == '\r')
				nl[-1] = 0;
			on_line(s, p);
			p = nl + 1;
		}
		if (s->st == S_CLOSED)
			return;
		s->inlen -= (int)(p - s->in);
		memmove(s->in, p, (size_t)s->inlen);
		if (s->inlen == (int)sizeof s->in - 1)
			s->inlen = 0; /* an overlong line we do not care about */
	}
}

static void on_event(struct sess *s, uint32_t ev)
{
	if (s->st == S_CLOSED)
		return;
	if (s->st == S_CONNECT) {
		int err = 0;
		socklen_t l = sizeof err;
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			sess_fail(s, "connect: %s", strerror(err));
			return;
		}
		s->ssl = SSL_new(ctx);
		SSL_set_fd(s->ssl, s->fd);
		SSL_set_tlsext_host_name(s->ssl, "mail.bench.test");
		s->st = S_TLS;
	}
	if (s->st == S_TLS) {
		int r = SSL_connect(s->ssl);
		if (r == 1) {
			s->st = S_GREET;
			set_events(s, EPOLLIN);
		} else {
			int e = SSL_get_error(s->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				set_events(s, EPOLLIN);
			else if (e == SSL_ERROR_WANT_WRITE)
				set_events(s, EPOLLIN | EPOLLOUT);
			else {
				unsigned long oe = ERR_get_error();
				sess_fail(s, "TLS handshake failed: %s", oe ? ERR_error_string(oe, NULL) : "closed");
			}
			return;
		}
	}
	if ((ev & EPOLLOUT) && s->outlen > 0 && sess_flush(s) < 0)
		return;
	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))
		on_readable(s);
}

/* one turn of the loop, waiting at most ms */
static void loop_once(int ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(ep, evs, 256, ms);
	for (int i = 0; i < n; i++)
		if (evs[i].data.ptr)
			on_event(evs[i].data.ptr, evs[i].events);
}

/* ------------------------------------------------------------------ deliveries */

static int tcp_open(int p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)p)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* read one SMTP reply (multi-line aware); its code or -1 */
static int smtp_reply(int fd, char *buf, size_t cap, size_t *have)
{
	for (;;) {
		char *start = buf;
		char *nl;
		while ((nl = memchr(start, '\n', (size_t)(buf + *have - start)))) {
			int last = nl - start >= 4 && start[3] == ' ';
			int code = atoi(start);
			start = nl + 1;
			if (last) {
				*have -= (size_t)(start - buf);
				memmove(buf, start, *have);
				return code;
			}
		}
		*have -= (size_t)(start - buf);
		memmove(buf, start, *have);
		if (*have >= cap - 1)
			return -1;
		ssize_t r = read(fd, buf + *have, cap - 1 - *have);
		if (r <= 0)
			return -1;
		*have += (size_t)r;
	}
}

static void build_message(char *m, size_t cap, int k)
{
	snprintf(m, cap,
		"From: sender@example.org\r\nTo: user1@%s\r\nSubject: wake-up %d\r\n"
		"Message-ID: <idle-%d-%ld@bench.test>\r\nDate: Sun, 6 Dec 2026 04:00:00 +0000\r\n\r\n"
		"Delivery %d for the IDLE sessions of user1.\r\n",
		domain, k, k, (long)getpid(), k);
}

/* deliver message k to user1; returns the acknowledgement time or -1 */
static double deliver(int k)
{
	char msg[1024];
	build_message(msg, sizeof msg, k);
	if (smtp_port) {
		int fd = tcp_open(smtp_port);
		if (fd < 0)
			return -1;
		char buf[4096], cmd[1400];
		size_t have = 0;
		int ok = smtp_reply(fd, buf, sizeof buf, &have) == 220;
		const char *steps[] = {"EHLO bench.test\r\n", "MAIL FROM:<sender@example.org>\r\n", NULL, "DATA\r\n", NULL};
		int want[] = {250, 250, 250, 354, 250};
		for (int i = 0; ok && i < 5; i++) {
			if (i == 2)
				snprintf(cmd, sizeof cmd, "RCPT TO:<user1@%s>\r\n", domain);
			else if (i == 4)
				snprintf(cmd, sizeof cmd, "%s.\r\n", msg);
			else
				snprintf(cmd, sizeof cmd, "%s", steps[i]);
			ok = write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd) &&
			     smtp_reply(fd, buf, sizeof buf, &have) == want[i];
		}
		double t = now_s();
		if (write(fd, "QUIT\r\n", 6) < 0)
			ok = ok;
		close(fd);
		return ok ? t : -1;
	}
	int pfd[2];
	if (pipe(pfd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[0], 0);
		close(pfd[0]);
		close(pfd[1]);
		execl("/bin/sh", "sh", "-c", deliver_cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[0]);
	ssize_t w = write(pfd[1], msg, strlen(msg));
	close(pfd[1]);
	int status;
	waitpid(pid, &status, 0);
	double t = now_s();
	if (w < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "idlebench: delivery command exited with status %d\n",
			WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -1;
	}
	return t;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int do_wake(int k, int gap_ms)
{
	double *lat = calloc((size_t)k, sizeof *lat);
	int nl = 0, missing_total = 0, rc = 0;
	for (int d = 1; d <= k; d++) {
		/* the gap: the sessions stay idle in between (and a poller would be caught off beat) */
		double until = now_s() + (gap_ms + rand() % (gap_ms / 2 + 1)) / 1000.0;
		while (now_s() < until)
			loop_once(10);
		check_server();
		long before[nsess];
		for (int i = 0; i < nsess; i++)
			before[i] = ss[i].exists;
		double t_ack = deliver(d);
		if (t_ack < 0) {
			fprintf(stderr, "idlebench: delivery %d failed\n", d);
			rc = 1;
			continue;
		}
		double deadline = t_ack + 10;
		int missing;
		for (;;) {
			missing = 0;
			for (int i = 0; i < nsess; i++)
				if (ss[i].user == 1 && ss[i].st == S_IDLING && ss[i].exists <= before[i])
					missing++;
			if (missing == 0 || now_s() > deadline)
				break;
			loop_once(1);
			check_server();
		}
		/* drain what is already there, so that seen_at is as early as we can tell */
		loop_once(0);
		double last = t_ack, first = 1e18;
		for (int i = 0; i < nsess; i++)
			if (ss[i].user == 1 && ss[i].st == S_IDLING && ss[i].exists > before[i]) {
				if (ss[i].seen_at > last)
					last = ss[i].seen_at;
				if (ss[i].seen_at < first)
					first = ss[i].seen_at;
			}
		double ms = (last - t_ack) * 1000, fms = first < 1e17 ? (first - t_ack) * 1000 : -1;
		if (fms < 0 && first < 1e17)
			fms = 0;
		printf("WAKE i=%d ms=%.1f first_ms=%.1f missing=%d\n", d, ms, fms, missing);
		fflush(stdout);
		if (missing) {
			missing_total += missing;
			rc = 1;
		} else {
			lat[nl++] = ms;
		}
	}
	qsort(lat, (size_t)nl, sizeof *lat, cmp_d);
	double med = nl ? (nl % 2 ? lat[nl / 2] : (lat[nl / 2 - 1] + lat[nl / 2]) / 2) : -1;
	printf("WAKES n=%d median_ms=%.1f max_ms=%.1f missing=%d stray=%d\n", nl, med,
	       nl ? lat[nl - 1] : -1.0, missing_total, n_stray);
	fflush(stdout);
	free(lat);
	return rc;
}

static int do_check(void)
{
	int ok = 0, fail = 0;
	cur_ev_waiting = 0;
	for (int i = 0; i < nsess; i++) {
		struct sess *s = &ss[i];
		if (s->st != S_IDLING)
			continue;
		sess_send(s, "DONE\r\n");
		s->st = S_DONE_SENT;
		cur_ev_waiting++;
		sess_flush(s);
		if (i % 500 == 499)
			loop_once(0);
	}
	double deadline = now_s() + timeout_s;
	while (cur_ev_waiting > 0 && now_s() < deadline) {
		loop_once(100);
		check_server();
	}
	for (int i = 0; i < nsess; i++) {
		if (ss[i].st == S_CLOSED && ss[i].why[0] == 0)
			ok++;
		else
			fail++;
	}
	printf("CHECK ok=%d fail=%d\n", ok, fail);
	fflush(stdout);
	return fail ? 1 : 0;
}

static int do_idle(void)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)nsess + 64)
		die("open-file limit %lu too low for %d sessions (ulimit -n)", (unsigned long)rl.rlim_cur, nsess);
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ss = calloc((size_t)nsess, sizeof *ss);
	for (int i = 0; i < nsess; i++) {
		ss[i].fd = -1;
		ss[i].user = i % nusers + 1;
		ss[i].st = S_CLOSED; /* not started yet */
	}
	double t0 = now_s(), last_progress = t0;
	int started = 0, prev_done = 0;
	while (n_setup_done < nsess) {
		while (started < nsess && started - n_setup_done < inflight_max) {
			ss[started].st = S_CONNECT;
			sess_start(&ss[started]);
			started++;
		}
		loop_once(100);
		if (n_setup_done != prev_done) {
			prev_done = n_setup_done;
			last_progress = now_s();
		} else if (now_s() - last_progress > timeout_s) {
			for (int i = 0; i < started; i++)
				if (ss[i].st < S_IDLING)
					sess_fail(&ss[i], "no progress for %d s (state %d)", timeout_s, ss[i].st);
		}
		check_server();
	}
	printf("READY ok=%d fail=%d secs=%.1f\n", n_ok, n_fail, now_s() - t0);
	fflush(stdout);
	int rc = n_fail ? 1 : 0;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e);
	char line[256];
	size_t llen = 0;
	for (;;) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 1000);
		int got_cmd = 0;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr)
				on_event(evs[i].data.ptr, evs[i].events);
			else
				got_cmd = 1;
		}
		check_server();
		if (!got_cmd)
			continue;
		ssize_t r = read(0, line + llen, sizeof line - 1 - llen);
		if (r <= 0)
			break;
		llen += (size_t)r;
		line[llen] = 0;
		char *nl;
		while ((nl = strchr(line, '\n'))) {
			*nl = 0;
			int k, g;
			if (sscanf(line, "wake %d %d", &k, &g) == 2)
				rc |= do_wake(k, g);
			else if (strcmp(line, "check") == 0)
				rc |= do_check();
			else
				fprintf(stderr, "idlebench: unknown command '%s'\n", line);
			llen -= (size_t)(nl + 1 - line);
			memmove(line, nl + 1, llen + 1);
		}
	}
	for (int i = 0; i < nsess; i++)
		if (ss[i].fd >= 0) {
			if (ss[i].ssl)
				SSL_free(ss[i].ssl);
			close(ss[i].fd);
		}
	return rc;
}

/* ------------------------------------------------------------------ mem / cpu of a tree */

static int do_mem(int root)
{
	struct proc_info *ps;
	size_t n = proc_tree(root, &ps);
	long procs = 0, pss = 0, rss = 0, anon = 0;
	for (size_t i = 0; i < n; i++) {
		long p, r, a;
		if (proc_mem_kb(ps[i].pid, &p, &r) < 0)
			continue;
		procs++;
		pss += p;
		rss += r;
		if (proc_anon_kb(ps[i].pid, &a) == 0)
			anon += a;
	}
	printf("MEM procs=%ld pss_kb=%ld rss_kb=%ld anon_kb=%ld\n", procs, pss, rss, anon);
	free(ps);
	return procs ? 0 : 1;
}

static int do_cpu(int root)
{
	struct proc_info *ps;
	size_t n = proc_tree(root, &ps);
	long ticks = 0;
	for (size_t i = 0; i < n; i++)
		ticks += ps[i].ticks;
	printf("CPU procs=%zu secs=%.2f\n", n, (double)ticks / (double)sysconf(_SC_CLK_TCK));
	free(ps);
	return n ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: idlebench idle -p IMAPS_PORT [-c 10000] [-u 100] [-d DOMAIN] [-P PASSFMT]\n"
		"                      (-s SMTP_PORT | -x DELIVERY_CMD) [-w SERVER_PID] [-t TIMEOUT_S] [-i INFLIGHT]\n"
		"       idlebench mem PID\n"
		"       idlebench cpu PID\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	if (strcmp(mode, "mem") == 0 && argc == 3)
		return do_mem(atoi(argv[2]));
	if (strcmp(mode, "cpu") == 0 && argc == 3)
		return do_cpu(atoi(argv[2]));
	if (strcmp(mode, "idle") != 0)
		usage();
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "p:c:u:d:P:s:x:w:t:i:")) != -1) {
		switch (opt) {
		case 'p': port = atoi(optarg); break;
		case 'c': nsess = atoi(optarg); break;
		case 'u': nusers = atoi(optarg); break;
		case 'd': domain = optarg; break;
		case 'P': passfmt = optarg; break;
		case 's': smtp_port = atoi(optarg); break;
		case 'x': deliver_cmd = optarg; break;
		case 'w': watch_pid = atoi(optarg); break;
		case 't': timeout_s = atoi(optarg); break;
		case 'i': inflight_max = atoi(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || nsess <= 0 || nusers <= 0 || inflight_max <= 0 || (!smtp_port && !deliver_cmd))
		usage();
	srand((unsigned)getpid());
	return do_idle();
}
