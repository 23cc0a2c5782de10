/*
 * smtpload - tiny SMTP load generator for the postino smtp-ingest benchmark.
 *
 * C clients (threads), each holding one persistent SMTP session, send a total
 * of N messages of S bytes between them (messages are handed out from a shared
 * counter, so a slow connection does not hold up the run). For every message
 * the time from writing MAIL FROM to reading the final 250 after the DATA dot
 * is recorded; at the end the rate and latency percentiles are printed on one
 * key=value line starting with "RESULT".
 *
 * No PIPELINING, no TLS: plain lock-step SMTP as a typical MTA-to-MX hop does.
 * Recipients rotate over user1..userU@DOMAIN.
 *
 * Build: gcc -O2 -pthread -o smtpload smtpload.c
 * Usage: smtpload -p PORT [-H 127.0.0.1] [-c 20] [-n 5000] [-s 4096]
 *                 [-d bench.test] [-u 20] [-l label] [-f from@addr] [-o latency-file]
 * Exit status: 0 when every message got 250, 1 otherwise, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 0;
static int nclients = 20;
static long nmsgs = 5000;
static long msgsize = 4096;
static const char *domain = "bench.test";
static int nusers = 20;
static const char *label = "run";
static const char *from = "loadgen@client.bench.invalid";
static int timeout_s = 120;
static const char *latfile = NULL; /* -o: append each latency (ms) to this file */

static atomic_long next_msg;
static atomic_long n_ok, n_fail, n_reconnect;
static double *lat_ms;          /* per message, -1 = failed */
static char *body;              /* shared body (after per-message headers), CRLF, no final dot */
static size_t body_len;
static pthread_barrier_t start_barrier;
static atomic_int first_err_printed;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct conn {
	int fd;
	char buf[8192];
	size_t have, pos;
	char last[512];         /* last reply line, for error messages */
};

static void report_err(const char *fmt, ...)
{
	/* print only the first few errors to keep the output readable */
	if (atomic_fetch_add(&first_err_printed, 1) >= 5)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "smtpload[%s]: ", label);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one line (without CRLF) into out. Returns length or -1. */
static int read_line(struct conn *c, char *out, size_t outsz)
{
	size_t o = 0;
	for (;;) {
		if (c->pos == c->have) {
			ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1;
			c->have = (size_t)r;
			c->pos = 0;
		}
		char ch = c->buf[c->pos++];
		if (ch == '\n') {
			if (o > 0 && out[o - 1] == '\r')
				o--;
			out[o] = 0;
			return (int)o;
		}
		if (o + 1 < outsz)
			out[o++] = ch;
	}
}

/* Read a (possibly multi-line) reply; return the 3-digit code or -1. */
static int read_reply(struct conn *c)
{
	char line[1024];
	for (;;) {
		int n = read_line(c, line, sizeof line);
		if (n < 0) {
			snprintf(c->last, sizeof c->last, "(connection closed or timed out: %s)",
				 errno ? strerror(errno) : "eof");
			return -1;
		}
		if (n < 3) {
			snprintf(c->last, sizeof c->last, "(short reply '%s')", line);
			return -1;
		}
		if (n == 3 || line[3] == ' ') {
			snprintf(c->last, sizeof c->last, "%s", line);
			return atoi(line);
		}
		/* line[3] == '-' : continuation */
	}
}

static int cmd(struct conn *c, const char *line, int expect)
{
	if (write_all(c->fd, line, strlen(line)) < 0) {
		snprintf(c->last, sizeof c->last, "(write failed: %s)", strerror(errno));
		return -1;
	}
	int code = read_reply(c);
	if (code != expect)
		return code < 0 ? -1 : -2;
	return 0;
}

static int conn_open(struct conn *c)
{
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "smtpload: bad host %s (IPv4 literal only)\n", host);
		exit(2);
	}
	c->have = c->pos = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		snprintf(c->last, sizeof c->last, "(connect: %s)", strerror(errno));
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	if (read_reply(c) != 220)
		goto fail;
	if (cmd(c, "EHLO client.bench.invalid\r\n", 250) != 0)
		goto fail;
	return 0;
fail:
	close(c->fd);
	c->fd = -1;
	return -1;
}

static void conn_close(struct conn *c, int polite)
{
	if (c->fd < 0)
		return;
	if (polite)
		cmd(c, "QUIT\r\n", 221);
	close(c->fd);
	c->fd = -1;
}

/* Send one message; returns 0 on 250, -1 connection broken, -2 rejected. */
static int send_one(struct conn *c, long idx, int tid)
{
	char line[512], hdr[1024];
	int user = (int)(idx % nusers) + 1;
	int r;

	snprintf(line, sizeof line, "MAIL FROM:<%s>\r\n", from);
	if ((r = cmd(c, line, 250)) != 0)
		return r;
	snprintf(line, sizeof line, "RCPT TO:<user%d@%s>\r\n", user, domain);
	if ((r = cmd(c, line, 250)) != 0)
		return r;
	if ((r = cmd(c, "DATA\r\n", 354)) != 0)
		return r;

	char date[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	int hl = snprintf(hdr, sizeof hdr,
			  "From: Load Generator <%s>\r\n"
			  "To: <user%d@%s>\r\n"
			  "Subject: smtp-ingest %s message %ld\r\n"
			  "Date: %s\r\n"
			  "Message-ID: <%s.%ld.%d.%ld@client.bench.invalid>\r\n"
			  "MIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=us-ascii\r\n"
			  "\r\n",
			  from, user, domain, label, idx, date, label, (long)getpid(), tid, idx);
	/* total message size ~= msgsize: trim the shared body to fit */
	size_t want = (size_t)msgsize > (size_t)hl ? (size_t)msgsize - (size_t)hl : 0;
	if (want > body_len)
		want = body_len;
	/* cut at a line end so the message stays well-formed */
	while (want > 0 && body[want - 1] != '\n')
		want--;
	if (write_all(c->fd, hdr, (size_t)hl) < 0 || write_all(c->fd, body, want) < 0 ||
	    write_all(c->fd, ".\r\n", 3) < 0) {
		snprintf(c->last, sizeof c->last, "(write failed: %s)", strerror(errno));
		return -1;
	}
	int code = read_reply(c);
	if (code == 250)
		return 0;
	return code < 0 ? -1 : -2;
}

static void *worker(void *arg)
{
	int tid = (int)(long)arg;
	struct conn c = {.fd = -1};
	if (conn_open(&c) < 0)
		report_err("client %d: initial connect/EHLO failed: %s", tid, c.last);
	pthread_barrier_wait(&start_barrier);
	for (;;) {
		long idx = atomic_fetch_add(&next_msg, 1);
		if (idx >= nmsgs)
			break;
		int tries = 0;
		while (c.fd < 0 && tries++ < 3) {
			atomic_fetch_add(&n_reconnect, 1);
			if (conn_open(&c) < 0) {
				report_err("client %d: reconnect failed: %s", tid, c.last);
				usleep(100000);
			}
		}
		if (c.fd < 0) {
			lat_ms[idx] = -1;
			atomic_fetch_add(&n_fail, 1);
			continue;
		}
		double t0 = now_s();
		int r = send_one(&c, idx, tid);
		double t1 = now_s();
		if (r == 0) {
			lat_ms[idx] = (t1 - t0) * 1000.0;
			atomic_fetch_add(&n_ok, 1);
		} else {
			lat_ms[idx] = -1;
			atomic_fetch_add(&n_fail, 1);
			report_err("client %d: message %ld failed: %s", tid, idx, c.last);
			if (r == -1) {
				conn_close(&c, 0);
			} else if (cmd(&c, "RSET\r\n", 250) != 0) {
				conn_close(&c, 0);
			}
		}
	}
	conn_close(&c, 1);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, long n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p / 100.0 * (double)n + 0.999999) - 1; /* nearest-rank */
	if (i < 0)
		i = 0;
	if (i >= n)
		i = n - 1;
	return v[i];
}

static void usage(void)
{
	fprintf(stderr,
		"usage: smtpload -p PORT [-H 127.0.0.1] [-c CLIENTS] [-n MESSAGES] [-s BYTES]\n"
		"                [-d DOMAIN] [-u USERS] [-l LABEL] [-f FROM] [-t TIMEOUT_S]\n"
		"                [-o FILE (append one latency in ms per accepted message)]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, "H:p:c:n:s:d:u:l:f:t:o:h")) != -1) {
		switch (opt) {
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': nclients = atoi(optarg); break;
		case 'n': nmsgs = atol(optarg); break;
		case 's': msgsize = atol(optarg); break;
		case 'd': domain = optarg; break;
		case 'u': nusers = atoi(optarg); break;
		case 'l': label = optarg; break;
		case 'f': from = optarg; break;
		case 't': timeout_s = atoi(optarg); break;
		case 'o': latfile = optarg; break;
		default: usage();
		}
	}
	if (port <= 0 || nclients <= 0 || nmsgs <= 0 || msgsize < 0 || nusers <= 0)
		usage();

	/* body: 76-char lines of printable text, never starting with '.' */
	body_len = (size_t)msgsize + 100;
	body = malloc(body_len + 1);
	lat_ms = calloc((size_t)nmsgs, sizeof *lat_ms);
	if (!body || !lat_ms) {
		perror("malloc");
		return 1;
	}
	static const char alpha[] = "abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	size_t p = 0, col = 0;
	unsigned seed = 12345;
	while (p < body_len) {
		if (col == 76) {
			body[p++] = '\r';
			if (p < body_len)
				body[p++] = '\n';
			col = 0;
			continue;
		}
		seed = seed * 1103515245u + 12345u;
		body[p++] = alpha[(seed >> 16) % (sizeof alpha - 1)];
		col++;
	}
	body[body_len] = 0;

	pthread_barrier_init(&start_barrier, NULL, (unsigned)nclients + 1);
	pthread_t *th = calloc((size_t)nclients, sizeof *th);
	for (int i = 0; i < nclients; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)(long)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	pthread_barrier_wait(&start_barrier); /* all sessions connected + EHLO done */
	double t0 = now_s();
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	double secs = now_s() - t0;

	long ok = atomic_load(&n_ok), fail = atomic_load(&n_fail);
	double *v = malloc(sizeof(double) * (size_t)(ok ? ok : 1));
	long k = 0;
	double sum = 0;
	for (long i = 0; i < nmsgs; i++)
		if (lat_ms[i] >= 0) {
			v[k++] = lat_ms[i];
			sum += lat_ms[i];
		}
	qsort(v, (size_t)k, sizeof *v, cmp_double);
	if (latfile) {
		FILE *lf = fopen(latfile, "a");
		if (!lf) {
			perror(latfile);
			return 1;
		}
		for (long i = 0; i < k; i++)
			fprintf(lf, "%.3f\n", v[i]);
		fclose(lf);
	}
	printf("RESULT label=%s clients=%d size=%ld sent=%ld ok=%ld fail=%ld reconnects=%ld "
	       "secs=%.3f rate=%.1f avg_ms=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
	       label, nclients, msgsize, nmsgs, ok, fail,
	       atomic_load(&n_reconnect), secs, secs > 0 ? ok / secs : 0.0,
	       k ? sum / k : 0.0, pct(v, k, 50), pct(v, k, 90), pct(v, k, 99), k ? v[k - 1] : 0.0);
	fflush(stdout);
	return fail == 0 ? 0 : 1;
}
