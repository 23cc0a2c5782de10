/*
 * pop3load - POP3 download load generator for the postino pop3 benchmark.
 *
 * C clients (threads) download whole mailboxes over POP3S (implicit TLS, or STLS on a plain
 * port with -T). Accounts are handed out from a shared counter; each one is one session:
 * connect, TLS handshake, USER/PASS (or AUTH PLAIN with -A), STAT, UIDL, LIST, RETR of every
 * message in lock-step (no PIPELINING, like common mail clients), QUIT. Nothing is deleted, so
 * a run can be repeated on the same mailboxes.
 *
 * The clock starts when all threads are up (before the first connect), so logins and TLS
 * handshakes are part of the measured time. For every RETR the time from writing the command
 * to reading the terminating "." is recorded. At the end one key=value line starting with
 * "RESULT" gives the totals, the rate, latency percentiles and the client's own CPU time.
 *
 * Each RETR response is un-dot-stuffed as it streams in (no copy of the message is kept). The
 * message's identity is the "X-Bench-Id: N" header the benchmark puts in every message; what
 * comes before that line (a server's trace headers) is counted as "prefix". With -x the rest
 * (from the X-Bench-Id line to the end) is hashed with SHA-256, to compare with what was stored.
 *
 * With -o every session and message is written as one line to FILE:
 *   S <account> <stat_count> <stat_octets> <uidl_count> <list_count> <list_octets> <retr_ok>
 *   M <account> <msgno> <uidl> <list_size> <wire_octets> <size> <prefix> <bench_id> <sha256|->
 *     <retr_ms>
 * wire_octets = octets between the +OK line and the final ".CRLF" as sent (dot-stuffed);
 * size = octets after removing the dot-stuffing (the message as stored).
 *
 * Build: gcc -O2 -pthread -o pop3load pop3load.c -lssl -lcrypto
 * Usage: pop3load -p PORT -a ACCOUNTS_FILE [-H 127.0.0.1] [-c CLIENTS] [-T] [-A] [-x]
 *                 [-o ROWS_FILE] [-L LATENCY_FILE] [-l LABEL] [-S SNI_NAME] [-t TIMEOUT_S]
 * ACCOUNTS_FILE: one "address password" per line.
 * Exit status: 0 when every session and every RETR succeeded, 1 otherwise, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)
#define TRANSCRIPT 24       /* dialogue lines kept per session, printed when something fails */

static const char *host = "127.0.0.1";
static int port = 0;
static int nclients = 10;
static int use_stls = 0;
static int use_sasl = 0;
static int do_hash = 0;
static const char *label = "run";
static const char *sni = NULL;
static const char *rowsfile = NULL;
static const char *latfile = NULL;
static int timeout_s = 120;

struct account {
	char *user, *pass;
};
static struct account *accts;
static int naccts;

static SSL_CTX *ctx;
static atomic_int next_acct;
static atomic_long n_msgs, n_fail_msgs, n_fail_sessions;
static atomic_ullong n_octets, n_size;
static atomic_int first_err_printed;
static pthread_barrier_t start_barrier;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *rows_fp;
static char tls_desc[128];

/* latencies of all RETRs, ms; appended under out_lock at the end of each session */
static double *lat_all;
static size_t lat_n, lat_cap;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct conn {
	int fd;
	SSL *ssl;
	char *buf;
	size_t start, end;
	char last[512];                       /* last status line */
	char tr[TRANSCRIPT][200];             /* ring of the last dialogue lines */
	int trn;
	const char *acct;
};

static void trace(struct conn *c, const char *dir, const char *s, size_t n)
{
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	if (n > 150)
		n = 150;
	snprintf(c->tr[c->trn % TRANSCRIPT], sizeof c->tr[0], "%s %.*s", dir, (int)n, s);
	c->trn++;
}

static void report_err(struct conn *c, const char *fmt, ...)
{
	/* print only the first few errors (with the session's dialogue) to keep output readable */
	if (atomic_fetch_add(&first_err_printed, 1) >= 3)
		return;
	pthread_mutex_lock(&out_lock);
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "pop3load[%s]: %s: ", label, c->acct ? c->acct : "?");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	int from = c->trn > TRANSCRIPT ? c->trn - TRANSCRIPT : 0;
	fprintf(stderr, "pop3load[%s]: last POP3 dialogue of this session (C: client, S: server):\n",
		label);
	for (int i = from; i < c->trn; i++)
		fprintf(stderr, "    %s\n", c->tr[i % TRANSCRIPT]);
	pthread_mutex_unlock(&out_lock);
}

static int io_write(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		int w;
		if (c->ssl) {
			w = SSL_write(c->ssl, p, (int)n);
			if (w <= 0)
				return -1;
		} else {
			ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -1;
			w = (int)r;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read more into the buffer (compacting it first). Returns bytes read, or -1. */
static int io_fill(struct conn *c)
{
	if (c->start == c->end) {
		c->start = c->end = 0;
	} else if (c->start > 0 && c->end > BUFSZ / 2) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == BUFSZ) {
		snprintf(c->last, sizeof c->last, "(line longer than %d octets)", BUFSZ);
		return -1;
	}
	for (;;) {
		ssize_t r;
		if (c->ssl) {
			int k = SSL_read(c->ssl, c->buf + c->end, (int)(BUFSZ - c->end));
			if (k <= 0) {
				int e = SSL_get_error(c->ssl, k);
				snprintf(c->last, sizeof c->last, "(TLS read failed: %s)",
					 e == SSL_ERROR_ZERO_RETURN ? "closed by server" :
					 e == SSL_ERROR_SYSCALL ? (errno ? strerror(errno) : "eof") :
					 ERR_reason_error_string(ERR_peek_last_error()) ?
					 ERR_reason_error_string(ERR_peek_last_error()) : "error");
				return -1;
			}
			r = k;
		} else {
			r = recv(c->fd, c->buf + c->end, BUFSZ - c->end, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				snprintf(c->last, sizeof c->last, "(connection closed or timed out: %s)",
					 r == 0 ? "eof" : strerror(errno));
				return -1;
			}
		}
		c->end += (size_t)r;
		return (int)r;
	}
}

/* One raw line including its LF; valid until the next read. Returns its length or -1. */
static ssize_t raw_line(struct conn *c, char **out)
{
	size_t scanned = 0;
	for (;;) {
		char *nl = memchr(c->buf + c->start + scanned, '\n', c->end - c->start - scanned);
		if (nl) {
			*out = c->buf + c->start;
			size_t n = (size_t)(nl + 1 - *out);
			c->start += n;
			return (ssize_t)n;
		}
		scanned = c->end - c->start;
		if (io_fill(c) < 0)
			return -1;
	}
}

/* Read a status line; 1 for +OK, 0 for -ERR or anything else, -1 on I/O error. */
static int status(struct conn *c)
{
	char *l;
	ssize_t n = raw_line(c, &l);
	if (n < 0) {
		trace(c, "S:", c->last, strlen(c->last));
		return -1;
	}
	size_t k = (size_t)n;
	while (k > 0 && (l[k - 1] == '\n' || l[k - 1] == '\r'))
		k--;
	snprintf(c->last, sizeof c->last, "%.*s", (int)k, l);
	trace(c, "S:", l, k);
	return k >= 3 && memcmp(l, "+OK", 3) == 0;
}

static int cmd(struct conn *c, const char *line, int show)
{
	if (show) {
		trace(c, "C:", line, strlen(line));
	} else {   /* "PASS ***", "AUTH PLAIN ***": the verb, not the secret */
		char hid[64];
		const char *sp = strrchr(line, ' ');
		int k = sp ? (int)(sp - line) : 0;
		snprintf(hid, sizeof hid, "%.*s ***", k > 40 ? 40 : k, line);
		trace(c, "C:", hid, strlen(hid));
	}
	if (io_write(c, line, strlen(line)) < 0) {
		snprintf(c->last, sizeof c->last, "(write failed: %s)", strerror(errno));
		return -1;
	}
	return status(c);
}

/* Body of a multi-line UIDL/LIST answer: "n value" lines up to ".". Values stored per msgno. */
static long read_listing(struct conn *c, long nmax, char (*uidl)[72], uint64_t *sizes,
			 uint64_t *sum)
{
	long count = 0;
	*sum = 0;
	for (;;) {
		char *l;
		ssize_t n = raw_line(c, &l);
		if (n < 0)
			return -1;
		size_t k = (size_t)n;
		while (k > 0 && (l[k - 1] == '\n' || l[k - 1] == '\r'))
			k--;
		if (k == 1 && l[0] == '.')
			return count;
		char tmp[200];
		snprintf(tmp, sizeof tmp, "%.*s", (int)k, l);
		char *sp = strchr(tmp, ' ');
		long no = atol(tmp);
		if (!sp || no < 1 || no > nmax) {
			trace(c, "S:", l, k);
			snprintf(c->last, sizeof c->last, "(bad listing line '%s')", tmp);
			return -1;
		}
		if (uidl)
			snprintf(uidl[no - 1], 72, "%s", sp + 1);
		else {
			sizes[no - 1] = strtoull(sp + 1, NULL, 10);
			*sum += sizes[no - 1];
		}
		count++;
	}
}

struct msgres {
	uint64_t octets, size, prefix;
	long id;
	double ms;
	unsigned char md[32];
};

/* The data of a RETR response (after +OK) up to the final ".CRLF". 0 ok, -1 I/O error. */
static int read_message(struct conn *c, struct msgres *r, EVP_MD_CTX *md)
{
	int header_mode = 1, hashing = 0, lines = 0, at_ls = 1;
	r->octets = r->size = r->prefix = 0;
	r->id = -1;
	if (md)
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (;;) {
		if (header_mode) {
			/* line by line until the X-Bench-Id header (the first lines are short) */
			char *l;
			ssize_t n = raw_line(c, &l);
			if (n < 0)
				return -1;
			size_t k = (size_t)n;
			if (k == 3 && memcmp(l, ".\r\n", 3) == 0)
				goto done;
			r->octets += k;
			char *d = l;
			if (d[0] == '.') {
				d++;
				k--;
			}
			if (k >= 12 && memcmp(d, "X-Bench-Id: ", 12) == 0) {
				r->id = strtol(d + 12, NULL, 10);
				r->prefix = r->size;
				header_mode = 0;
				hashing = 1;
			} else if (++lines > 200 || (k <= 2)) {
				/* end of the header without an X-Bench-Id: hash all that follows */
				header_mode = 0;
				hashing = 1;
			}
			if (hashing && md)
				EVP_DigestUpdate(md, d, k);
			r->size += k;
			continue;
		}
		/* fast path over the buffer: only a '.' at a line start needs attention */
		if (c->start == c->end && io_fill(c) < 0)
			return -1;
		char *p = c->buf + c->start, *e = c->buf + c->end, *rs = p;
		int need_more = 0, finished = 0;
		while (p < e) {
			if (at_ls) {
				if (*p == '.') {
					if (e - p < 3) {
						need_more = 1;
						break;
					}
					if (p[1] == '\r' && p[2] == '\n') {
						finished = 1;
						break;
					}
					/* a stuffed dot: skip it */
					if (md && p > rs)
						EVP_DigestUpdate(md, rs, (size_t)(p - rs));
					r->size += (size_t)(p - rs);
					r->octets += (size_t)(p - rs) + 1;
					p++;
					rs = p;
				}
				at_ls = 0;
			}
			char *nl = memchr(p, '\n', (size_t)(e - p));
			if (!nl) {
				p = e;
				break;
			}
			p = nl + 1;
			at_ls = 1;
		}
		if (md && p > rs)
			EVP_DigestUpdate(md, rs, (size_t)(p - rs));
		r->size += (size_t)(p - rs);
		r->octets += (size_t)(p - rs);
		if (finished) {
			c->start = (size_t)(p + 3 - c->buf);
			goto done;
		}
		c->start = (size_t)(p - c->buf);
		if (need_more || c->start == c->end) {
			if (io_fill(c) < 0)
				return -1;
		}
	}
done:
	if (md)
		EVP_DigestFinal_ex(md, r->md, NULL);
	return 0;
}

static int conn_open(struct conn *c)
{
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "pop3load: bad host %s (IPv4 literal only)\n", host);
		exit(2);
	}
	c->start = c->end = 0;
	c->ssl = NULL;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		return -1;
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		snprintf(c->last, sizeof c->last, "(connect to %s:%d: %s)", host, port, strerror(errno));
		trace(c, "--", c->last, strlen(c->last));
		return -1;
	}
	if (use_stls) {
		if (status(c) != 1)
			return -1;
		if (cmd(c, "STLS\r\n", 1) != 1)
			return -1;
	}
	c->ssl = SSL_new(ctx);
	if (!c->ssl)
		return -1;
	SSL_set_fd(c->ssl, c->fd);
	if (sni)
		SSL_set_tlsext_host_name(c->ssl, sni);
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();
		snprintf(c->last, sizeof c->last, "(TLS handshake failed: %s)",
			 e ? ERR_error_string(e, NULL) : strerror(errno));
		trace(c, "--", c->last, strlen(c->last));
		return -1;
	}
	if (!tls_desc[0]) {
		pthread_mutex_lock(&out_lock);
		if (!tls_desc[0])
			snprintf(tls_desc, sizeof tls_desc, "%s/%s", SSL_get_version(c->ssl),
				 SSL_get_cipher_name(c->ssl));
		pthread_mutex_unlock(&out_lock);
	}
	if (!use_stls && status(c) != 1)
		return -1;
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static void base64(const unsigned char *in, size_t n, char *out)
{
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		*out++ = b64[in[i] >> 2];
		*out++ = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		*out++ = b64[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		*out++ = b64[in[i + 2] & 63];
	}
	if (i < n) {
		*out++ = b64[in[i] >> 2];
		if (i + 1 < n) {
			*out++ = b64[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
			*out++ = b64[(in[i + 1] & 15) << 2];
		} else {
			*out++ = b64[(in[i] & 3) << 4];
			*out++ = '=';
		}
		*out++ = '=';
	}
	*out = 0;
}

static void add_latencies(const double *v, size_t n)
{
	pthread_mutex_lock(&out_lock);
	if (lat_n + n > lat_cap) {
		lat_cap = (lat_n + n) * 2;
		lat_all = realloc(lat_all, lat_cap * sizeof *lat_all);
		if (!lat_all) {
			perror("realloc");
			exit(1);
		}
	}
	memcpy(lat_all + lat_n, v, n * sizeof *v);
	lat_n += n;
	pthread_mutex_unlock(&out_lock);
}

/* One whole download session for account a. 0 ok, -1 failed (counted). */
static int session(struct conn *c, const struct account *a, EVP_MD_CTX *md)
{
	char line[1200];
	long stat_n = -1, uidl_n = -1, list_n = -1, ok = 0;
	uint64_t stat_oct = 0, list_sum = 0, dummy;
	char (*uidl)[72] = NULL;
	uint64_t *sizes = NULL;
	struct msgres *res = NULL;
	double *lat = NULL;
	int rc = -1;

	c->acct = a->user;
	c->trn = 0;
	if (conn_open(c) < 0) {
		report_err(c, "connect/TLS/greeting failed: %s", c->last);
		goto out;
	}
	if (use_sasl) {
		unsigned char raw[800];
		size_t ul = strlen(a->user), pl = strlen(a->pass);
		if (ul + pl + 2 > sizeof raw)
			goto out;
		raw[0] = 0;
		memcpy(raw + 1, a->user, ul);
		raw[1 + ul] = 0;
		memcpy(raw + 2 + ul, a->pass, pl);
		char enc[1100];
		base64(raw, ul + pl + 2, enc);
		snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", enc);
		if (cmd(c, line, 0) != 1) {
			report_err(c, "AUTH PLAIN failed: %s", c->last);
			goto out;
		}
	} else {
		snprintf(line, sizeof line, "USER %s\r\n", a->user);
		if (cmd(c, line, 1) != 1) {
			report_err(c, "USER failed: %s", c->last);
			goto out;
		}
		snprintf(line, sizeof line, "PASS %s\r\n", a->pass);
		if (cmd(c, line, 0) != 1) {
			report_err(c, "PASS failed: %s", c->last);
			goto out;
		}
	}
	if (cmd(c, "STAT\r\n", 1) != 1 || sscanf(c->last, "+OK %ld %lu", &stat_n,
						     (unsigned long *)&stat_oct) != 2) {
		report_err(c, "STAT failed: %s", c->last);
		goto out;
	}
	uidl = calloc((size_t)stat_n + 1, sizeof *uidl);
	sizes = calloc((size_t)stat_n + 1, sizeof *sizes);
	res = calloc((size_t)stat_n + 1, sizeof *res);
	lat = calloc((size_t)stat_n + 1, sizeof *lat);
	if (!uidl || !sizes || !res || !lat) {
		perror("calloc");
		exit(1);
	}
	if (cmd(c, "UIDL\r\n", 1) != 1 || (uidl_n = read_listing(c, stat_n, uidl, NULL, &dummy)) < 0) {
		report_err(c, "UIDL failed: %s", c->last);
		goto out;
	}
	if (cmd(c, "LIST\r\n", 1) != 1 || (list_n = read_listing(c, stat_n, NULL, sizes, &list_sum)) < 0) {
		report_err(c, "LIST failed: %s", c->last);
		goto out;
	}
	for (long i = 1; i <= stat_n; i++) {
		snprintf(line, sizeof line, "RETR %ld\r\n", i);
		double t0 = now_s();
		int s = cmd(c, line, 1);
		if (s != 1 || read_message(c, &res[i - 1], md) < 0) {
			report_err(c, "RETR %ld failed: %s", i, c->last);
			if (s == 0) {
				atomic_fetch_add(&n_fail_msgs, 1);
				continue;   /* -ERR: go on with the next message */
			}
			atomic_fetch_add(&n_fail_msgs, stat_n - i + 1);
			goto out;
		}
		res[i - 1].ms = (now_s() - t0) * 1000.0;
		lat[ok++] = res[i - 1].ms;
		atomic_fetch_add(&n_octets, res[i - 1].octets);
		atomic_fetch_add(&n_size, res[i - 1].size);
		atomic_fetch_add(&n_msgs, 1);
	}
	if (cmd(c, "QUIT\r\n", 1) != 1) {
		report_err(c, "QUIT failed: %s", c->last);
		goto out;
	}
	rc = ok == stat_n ? 0 : -1;
out:
	conn_close(c);
	if (lat && ok)
		add_latencies(lat, (size_t)ok);
	if (rows_fp) {
		pthread_mutex_lock(&out_lock);
		fprintf(rows_fp, "S %s %ld %llu %ld %ld %llu %ld\n", a->user, stat_n,
			(unsigned long long)stat_oct, uidl_n, list_n, (unsigned long long)list_sum, ok);
		for (long i = 0; res && i < stat_n; i++) {
			char hex[65] = "-";
			if (md)
				for (int k = 0; k < 32; k++)
					sprintf(hex + 2 * k, "%02x", res[i].md[k]);
			fprintf(rows_fp, "M %s %ld %s %llu %llu %llu %llu %ld %s %.3f\n", a->user, i + 1,
				uidl[i][0] ? uidl[i] : "-", (unsigned long long)sizes[i],
				(unsigned long long)res[i].octets, (unsigned long long)res[i].size,
				(unsigned long long)res[i].prefix, res[i].id, hex, res[i].ms);
		}
		pthread_mutex_unlock(&out_lock);
	}
	free(uidl);
	free(sizes);
	free(res);
	free(lat);
	if (rc < 0)
		atomic_fetch_add(&n_fail_sessions, 1);
	return rc;
}

static void *worker(void *arg)
{
	(void)arg;
	struct conn *c = calloc(1, sizeof *c);
	if (!c || !(c->buf = malloc(BUFSZ))) {
		perror("malloc");
		exit(1);
	}
	c->fd = -1;
	EVP_MD_CTX *md = do_hash ? EVP_MD_CTX_new() : NULL;
	pthread_barrier_wait(&start_barrier);
	for (;;) {
		int i = atomic_fetch_add(&next_acct, 1);
		if (i >= naccts)
			break;
		session(c, &accts[i], md);
	}
	if (md)
		EVP_MD_CTX_free(md);
	free(c->buf);
	free(c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p / 100.0 * (double)n + 0.999999) - 1; /* nearest-rank */
	if (i < 0)
		i = 0;
	if (i >= (long)n)
		i = (long)n - 1;
	return v[i];
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pop3load -p PORT -a ACCOUNTS_FILE [-H 127.0.0.1] [-c CLIENTS] [-T (STLS)]\n"
		"                [-A (AUTH PLAIN)] [-x (SHA-256 of each message)] [-o ROWS_FILE]\n"
		"                [-L LATENCY_FILE] [-l LABEL] [-S SNI_NAME] [-t TIMEOUT_S]\n");
	exit(2);
}

static void load_accounts(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		exit(2);
	}
	char line[1024];
	while (fgets(line, sizeof line, f)) {
		char u[512], p[512];
		if (sscanf(line, "%511s %511s", u, p) != 2)
			continue;
		accts = realloc(accts, sizeof *accts * (size_t)(naccts + 1));
		accts[naccts].user = strdup(u);
		accts[naccts].pass = strdup(p);
		naccts++;
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	int opt;
	const char *acctfile = NULL;
	while ((opt = getopt(argc, argv, "H:p:a:c:TAxo:L:l:S:t:h")) != -1) {
		switch (opt) {
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'a': acctfile = optarg; break;
		case 'c': nclients = atoi(optarg); break;
		case 'T': use_stls = 1; break;
		case 'A': use_sasl = 1; break;
		case 'x': do_hash = 1; break;
		case 'o': rowsfile = optarg; break;
		case 'L': latfile = optarg; break;
		case 'l': label = optarg; break;
		case 'S': sni = optarg; break;
		case 't': timeout_s = atoi(optarg); break;
		default: usage();
		}
	}
	if (port <= 0 || nclients <= 0 || !acctfile)
		usage();
	load_accounts(acctfile);
	if (naccts == 0) {
		fprintf(stderr, "pop3load: no accounts in %s\n", acctfile);
		return 2;
	}
	if (nclients > naccts)
		nclients = naccts;
	if (rowsfile && !(rows_fp = fopen(rowsfile, "w"))) {
		perror(rowsfile);
		return 1;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fprintf(stderr, "pop3load: SSL_CTX_new failed\n");
		return 1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* self-signed test certificates */

	pthread_barrier_init(&start_barrier, NULL, (unsigned)nclients + 1);
	pthread_t *th = calloc((size_t)nclients, sizeof *th);
	for (int i = 0; i < nclients; i++)
		if (pthread_create(&th[i], NULL, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	pthread_barrier_wait(&start_barrier);
	double t0 = now_s();
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	double secs = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru1);
	double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		     (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		     (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	if (rows_fp)
		fclose(rows_fp);

	qsort(lat_all, lat_n, sizeof *lat_all, cmp_double);
	double sum = 0;
	for (size_t i = 0; i < lat_n; i++)
		sum += lat_all[i];
	if (latfile) {
		FILE *lf = fopen(latfile, "a");
		if (!lf) {
			perror(latfile);
			return 1;
		}
		for (size_t i = 0; i < lat_n; i++)
			fprintf(lf, "%.3f\n", lat_all[i]);
		fclose(lf);
	}
	long msgs = atomic_load(&n_msgs);
	unsigned long long oct = atomic_load(&n_octets);
	printf("RESULT label=%s clients=%d sessions=%d msgs=%ld fail_msgs=%ld fail_sessions=%ld "
	       "octets=%llu size=%llu secs=%.3f rate=%.1f mbps=%.2f cpu_s=%.3f avg_ms=%.2f "
	       "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f tls=%s\n",
	       label, nclients, naccts, msgs, atomic_load(&n_fail_msgs),
	       atomic_load(&n_fail_sessions), oct, (unsigned long long)atomic_load(&n_size), secs,
	       secs > 0 ? msgs / secs : 0.0, secs > 0 ? oct / secs / 1e6 : 0.0, cpu,
	       lat_n ? sum / (double)lat_n : 0.0, pct(lat_all, lat_n, 50), pct(lat_all, lat_n, 90),
	       pct(lat_all, lat_n, 99), lat_n ? lat_all[lat_n - 1] : 0.0,
	       tls_desc[0] ? tls_desc : "-");
	fflush(stdout);
	return (atomic_load(&n_fail_msgs) == 0 && atomic_load(&n_fail_sessions) == 0) ? 0 : 1;
}
