/*
 * imapbench - load generator and helpers for the postino IMAP benchmark (bench/imap).
 *
 * One binary, five modes:
 *
 *   fill   deliver U accounts x N deterministic messages of mixed sizes and shapes over plain
 *          SMTP (the server's MX port) with C parallel sessions.
 *   prime  log in to every account over IMAPS, SELECT INBOX, check EXISTS == N, FETCH 1:*
 *          (UID RFC822.SIZE) and SEARCH FROM; prints the total size, to compare two servers.
 *   load   C client threads, each holding one IMAPS session (account = client % U + 1), run the
 *          operation cycle below for D seconds and print one RESULT line per operation type.
 *   idle   open C logged-in IMAPS sessions (T threads doing the handshakes), print READY, then
 *          on "check" from stdin send NOOP on every session and print CHECK; EOF closes all.
 *   mem    sum Pss and Rss (from /proc/PID/smaps_rollup) over a process and its descendants.
 *
 * The load cycle of one client (the mix of a mail client that opens a folder, lists it, reads
 * and flags some messages, searches, files a message and deletes it):
 *   SELECT INBOX                                             select
 *   FETCH 1:* (FLAGS UID RFC822.SIZE)                        fetch-list
 *   5 x UID FETCH u BODY.PEEK[]          (random message)    fetch-body
 *   5 x UID FETCH u BODY.PEEK[HEADER]    (random message)    fetch-header
 *   2 x UID STORE u +FLAGS (\Seen), 2 x UID STORE u -FLAGS (\Seen)        store
 *   SEARCH UNSEEN, SEARCH FROM "senderX@", SEARCH SUBJECT "topicY"        search
 *   APPEND INBOX (\Seen) {5120} (synchronizing literal)      append
 *   UID STORE u +FLAGS.SILENT (\Deleted)                     store
 *   UID EXPUNGE u                                            expunge
 * = 22 commands per cycle. Every answer is checked: tagged OK; FETCH 1:* returns EXISTS
 * messages; a BODY[] literal is exactly the RFC822.SIZE listed for it; a HEADER literal ends
 * with an empty line; STORE echoes the flag change; SEARCH FROM/SUBJECT return the number of
 * messages the generator put there; APPEND returns APPENDUID; UID EXPUNGE expunges one message.
 * On a failed check the command and the server's answer (the dialogue) are printed to stderr.
 *
 * Build: gcc -O2 -pthread -I../common -o imapbench imapbench.c ../common/proctree.c -lssl -lcrypto
 * Usage:
 *   imapbench fill  -p SMTP_PORT [-c 8] [-u 20] [-n 500] [-d bench.test]
 *   imapbench prime -p IMAPS_PORT [-u 20] [-n 500] [-d bench.test] [-P pass-fmt]
 *   imapbench load  -p IMAPS_PORT [-c 20] [-u 20] [-n 500] [-D 60] [-l label] [-L latfile]
 *                   (latfile: one line per command: op ms start_s client)
 *   imapbench idle  -p IMAPS_PORT [-c 5000] [-u 20] [-T 50] [-S | -N]
 *                   (-S: also SELECT INBOX + IDLE; -N: no LOGIN, TLS and greeting only)
 *   imapbench mem   PID
 * Passwords: printf(pass-fmt, account number), default "bench-pass-%d".
 * Exit status: 0 ok, 1 some operation failed, 2 usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
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

#include "proctree.h"

static const char *host = "127.0.0.1";
static int port = 0;
static int nclients = -1;
static int nusers = 20;
static int nmsgs = 500;
static const char *domain = "bench.test";
static const char *passfmt = "bench-pass-%d";
static const char *label = "run";
static const char *latfile = NULL;
static double duration = 60;
static int timeout_s = 120;
static int idle_threads = 50;
static int idle_select = 0;
static int no_login = 0;   /* idle -N: TLS handshake and greeting only (to see what LOGIN adds) */

static SSL_CTX *ctx;
static atomic_int errors_printed;
#define MAX_PRINTED_ERRORS 5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		perror("malloc");
		exit(1);
	}
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		perror("realloc");
		exit(1);
	}
	return p;
}

/* ------------------------------------------------------------------ growable buffer */

struct buf {
	char *p;
	size_t len, cap;
};

static void bput(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void bputs(struct buf *b, const char *s) { bput(b, s, strlen(s)); }

static void bprintf(struct buf *b, const char *fmt, ...)
{
	char tmp[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof tmp)
		n = sizeof tmp - 1;
	bput(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------ deterministic messages */

static uint32_t mix32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352dU;
	x ^= x >> 15;
	x *= 0x846ca68bU;
	x ^= x >> 16;
	return x;
}

static uint32_t h2(uint32_t a, uint32_t b) { return mix32(a * 0x9e3779b9U ^ mix32(b + 0x632be5abU)); }

#define NSENDERS 25
#define NTOPICS 10
static int msg_sender(int k) { return k % NSENDERS; }
static int msg_topic(int k) { return k % NTOPICS; }

/* Size classes: 50 % 2-6 KB, 30 % 8-24 KB, 15 % 40-120 KB, 4 % 200-400 KB, 1 % 1-1.5 MB. */
static long msg_target_size(int u, int k)
{
	uint32_t r = h2((uint32_t)u, (uint32_t)k);
	uint32_t c = r % 100, v = (r >> 8) % 1000;
	if (c < 50)
		return 2048 + v * 4;
	if (c < 80)
		return 8192 + v * 16;
	if (c < 95)
		return 40960 + v * 80;
	if (c < 99)
		return 204800 + v * 200;
	return 1048576 + v * 512;
}

static const char *words[] = {
	"the", "report", "meeting", "budget", "project", "review", "schedule", "team", "quarter",
	"invoice", "delivery", "customer", "server", "mailbox", "update", "please", "thanks",
	"regards", "attached", "draft", "final", "version", "numbers", "figures", "agenda",
	"tomorrow", "monday", "friday", "office", "travel", "plan", "contract", "signed", "sales",
	"support", "ticket", "release", "notes", "question", "answer", "follow", "up", "about",
	"with", "from", "for", "and", "our", "your", "this", "that", "week", "month", "call",
	"list", "minutes", "action", "items", "status", "green", "late", "early", "soon",
};
#define NWORDS (sizeof words / sizeof words[0])

static void gen_text(struct buf *b, uint32_t *seed, size_t bytes, int html)
{
	size_t start = b->len, col = 0;
	if (html)
		bputs(b, "<html><body><p>\r\n");
	while (b->len - start < bytes) {
		*seed = *seed * 1103515245U + 12345U;
		const char *w = words[(*seed >> 16) % NWORDS];
		size_t wl = strlen(w);
		if (col + wl + 1 > 72) {
			bputs(b, html && ((*seed >> 8) % 4 == 0) ? "\r\n</p><p>\r\n" : "\r\n");
			col = 0;
		} else if (col > 0) {
			bputs(b, " ");
			col++;
		}
		bput(b, w, wl);
		col += wl;
	}
	bputs(b, html ? "\r\n</p></body></html>\r\n" : "\r\n");
}

static void gen_base64(struct buf *b, uint32_t *seed, size_t bytes)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char line[80];
	size_t done = 0;
	while (done < bytes) {
		for (int i = 0; i < 76; i++) {
			*seed = *seed * 1103515245U + 12345U;
			line[i] = tbl[(*seed >> 16) & 63];
		}
		line[76] = '\r';
		line[77] = '\n';
		bput(b, line, 78);
		done += 78;
	}
}

static void b64enc(const unsigned char *in, size_t n, char *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = 0;
}

/*
 * Message k (0-based) of account u (1-based). From "senderS@exampleE.test" with S = k % 25,
 * Subject containing "topicT," with T = k % 10; every fifth block of ten subjects is an RFC 2047
 * encoded word (UTF-8, base64), so SEARCH SUBJECT must decode to find it.
 * Shapes: < 8 KB text/plain; < 40 KB multipart/alternative (text + html); larger
 * multipart/mixed with a text part and a base64 attachment.
 */
static void gen_message(struct buf *b, int u, int k)
{
	uint32_t seed = h2((uint32_t)u * 7919U, (uint32_t)k);
	long target = msg_target_size(u, k);
	int s = msg_sender(k), t = msg_topic(k);
	time_t date = 1735689600 - (time_t)k * 4271 - (time_t)u * 97;
	struct tm tm;
	char datestr[64], subj[256];
	gmtime_r(&date, &tm);
	strftime(datestr, sizeof datestr, "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if ((k / NTOPICS) % 5 == 0) {
		char plain[120], enc[200];
		snprintf(plain, sizeof plain, "Gr\xc3\xbc\xc3\x9f" "e: Bericht topic%d, Nr. %d", t, k);
		b64enc((const unsigned char *)plain, strlen(plain), enc);
		snprintf(subj, sizeof subj, "=?UTF-8?B?%s?=", enc);
	} else {
		snprintf(subj, sizeof subj, "%s[proj-%d] Quarterly report topic%d, item %d",
			 (k % 3 == 0) ? "Re: " : "", (int)(seed % 40), t, k);
	}
	b->len = 0;
	bprintf(b, "From: \"Sender %d\" <sender%d@example%d.test>\r\n", s, s, k % 7);
	bprintf(b, "To: \"User %d\" <user%d@%s>\r\n", u, u, domain);
	if (k % 4 == 1)
		bprintf(b, "Cc: \"Team list\" <team%d@example%d.test>\r\n", k % 5, k % 7);
	bprintf(b, "Subject: %s\r\n", subj);
	bprintf(b, "Date: %s\r\n", datestr);
	bprintf(b, "Message-ID: <bench.%d.%d.%08x@example%d.test>\r\n", u, k, seed, k % 7);
	if (k % 3 == 0 && k > 0)
		bprintf(b, "In-Reply-To: <bench.%d.%d.prev@example%d.test>\r\n", u, k - 1, k % 7);
	bprintf(b, "X-Bench-Id: %d.%d\r\n", u, k);
	bputs(b, "MIME-Version: 1.0\r\n");
	size_t hlen = b->len;
	size_t rest = target > (long)hlen + 200 ? (size_t)target - hlen - 200 : 256;
	if (target < 8192) {
		bputs(b, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
		gen_text(b, &seed, rest, 0);
	} else if (target < 40960) {
		char bd[64];
		snprintf(bd, sizeof bd, "=_alt_%08x", seed);
		bprintf(b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", bd);
		bprintf(b, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n", bd);
		bputs(b, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
		gen_text(b, &seed, rest * 2 / 5, 0);
		bprintf(b, "\r\n--%s\r\n", bd);
		bputs(b, "Content-Type: text/html; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
		gen_text(b, &seed, rest * 3 / 5, 1);
		bprintf(b, "\r\n--%s--\r\n", bd);
	} else {
		char bd[64];
		snprintf(bd, sizeof bd, "=_mixed_%08x", seed);
		bprintf(b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", bd);
		bprintf(b, "--%s\r\n", bd);
		bputs(b, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n");
		gen_text(b, &seed, 1500, 0);
		bprintf(b, "\r\n--%s\r\n", bd);
		bprintf(b, "Content-Type: application/pdf; name=\"report-%d.pdf\"\r\n"
			   "Content-Disposition: attachment; filename=\"report-%d.pdf\"\r\n"
			   "Content-Transfer-Encoding: base64\r\n\r\n", k, k);
		gen_base64(b, &seed, rest > 1800 ? rest - 1800 : 78);
		bprintf(b, "\r\n--%s--\r\n", bd);
	}
}

static long expected_from(int sender) /* messages whose From contains "sender<S>@" */
{
	long c = 0;
	for (int k = 0; k < nmsgs; k++)
		c += msg_sender(k) == sender;
	return c;
}

static long expected_subject(int topic)
{
	long c = 0;
	for (int k = 0; k < nmsgs; k++)
		c += msg_topic(k) == topic;
	return c;
}

/* ------------------------------------------------------------------ sockets */

static int tcp_connect(char *err, size_t errsz)
{
	struct sockaddr_in sa = {0};
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		snprintf(err, errsz, "bad host %s", host);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errsz, "socket: %s", strerror(errno));
		return -1;
	}
	struct timeval tv = {.tv_sec = timeout_s};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		snprintf(err, errsz, "connect 127.0.0.1:%d: %s", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
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

/* ------------------------------------------------------------------ fill (SMTP) */

struct smtpc {
	int fd;
	char buf[8192];
	size_t have, pos;
	char last[512];
};

static int smtp_reply(struct smtpc *c)
{
	char line[1024];
	for (;;) {
		size_t o = 0;
		for (;;) {
			if (c->pos == c->have) {
				ssize_t r = recv(c->fd, c->buf, sizeof c->buf, 0);
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					snprintf(c->last, sizeof c->last, "(connection closed: %s)",
						 r < 0 ? strerror(errno) : "eof");
					return -1;
				}
				c->have = (size_t)r;
				c->pos = 0;
			}
			char ch = c->buf[c->pos++];
			if (ch == '\n')
				break;
			if (o + 1 < sizeof line)
				line[o++] = ch;
		}
		if (o > 0 && line[o - 1] == '\r')
			o--;
		line[o] = 0;
		if (o < 3)
			return -1;
		if (o == 3 || line[3] == ' ') {
			snprintf(c->last, sizeof c->last, "%.500s", line);
			return atoi(line);
		}
	}
}

static int smtp_cmd(struct smtpc *c, const char *line, int want)
{
	if (write_all(c->fd, line, strlen(line)) < 0)
		return -1;
	return smtp_reply(c) == want ? 0 : -1;
}

static atomic_long fill_next, fill_ok, fill_fail;

static void *fill_worker(void *arg)
{
	(void)arg;
	struct smtpc c = {.fd = -1};
	struct buf m = {0}, out = {0};
	char line[512];
	for (;;) {
		long idx = atomic_fetch_add(&fill_next, 1);
		if (idx >= (long)nusers * nmsgs)
			break;
		int u = (int)(idx % nusers) + 1, k = (int)(idx / nusers);
		for (int tries = 0; c.fd < 0 && tries < 3; tries++) {
			c.have = c.pos = 0;
			c.fd = tcp_connect(c.last, sizeof c.last);
			if (c.fd >= 0 && (smtp_reply(&c) != 220 ||
					  smtp_cmd(&c, "EHLO fill.bench.invalid\r\n", 250) < 0)) {
				close(c.fd);
				c.fd = -1;
			}
			if (c.fd < 0)
				usleep(200000);
		}
		if (c.fd < 0) {
			fprintf(stderr, "imapbench fill: cannot connect: %s\n", c.last);
			atomic_fetch_add(&fill_fail, 1);
			continue;
		}
		gen_message(&m, u, k);
		/* dot-stuff */
		out.len = 0;
		int bol = 1;
		for (size_t i = 0; i < m.len; i++) {
			if (bol && m.p[i] == '.')
				bput(&out, ".", 1);
			bput(&out, m.p + i, 1);
			bol = m.p[i] == '\n';
		}
		bput(&out, ".\r\n", 3);
		int ok = 0;
		snprintf(line, sizeof line, "MAIL FROM:<sender%d@example%d.test>\r\n", msg_sender(k), k % 7);
		if (smtp_cmd(&c, line, 250) == 0) {
			snprintf(line, sizeof line, "RCPT TO:<user%d@%s>\r\n", u, domain);
			if (smtp_cmd(&c, line, 250) == 0 && smtp_cmd(&c, "DATA\r\n", 354) == 0 &&
			    write_all(c.fd, out.p, out.len) == 0 && smtp_reply(&c) == 250)
				ok = 1;
		}
		if (ok) {
			atomic_fetch_add(&fill_ok, 1);
		} else {
			atomic_fetch_add(&fill_fail, 1);
			if (atomic_fetch_add(&errors_printed, 1) < MAX_PRINTED_ERRORS)
				fprintf(stderr, "imapbench fill: user%d message %d failed: %s\n", u, k, c.last);
			close(c.fd);
			c.fd = -1;
		}
	}
	if (c.fd >= 0) {
		smtp_cmd(&c, "QUIT\r\n", 221);
		close(c.fd);
	}
	free(m.p);
	free(out.p);
	return NULL;
}

static int do_fill(void)
{
	if (nclients < 0)
		nclients = 8;
	double t0 = now_s();
	pthread_t *th = xmalloc(sizeof *th * (size_t)nclients);
	for (int i = 0; i < nclients; i++)
		pthread_create(&th[i], NULL, fill_worker, NULL);
	for (int i = 0; i < nclients; i++)
		pthread_join(th[i], NULL);
	double secs = now_s() - t0;
	/* total size of what was generated */
	struct buf m = {0};
	long long bytes = 0;
	for (int u = 1; u <= nusers; u++)
		for (int k = 0; k < nmsgs; k++) {
			gen_message(&m, u, k);
			bytes += (long long)m.len;
		}
	free(m.p);
	printf("FILL ok=%ld fail=%ld secs=%.1f rate=%.0f generated_bytes=%lld\n", atomic_load(&fill_ok),
	       atomic_load(&fill_fail), secs, atomic_load(&fill_ok) / secs, bytes);
	return atomic_load(&fill_fail) ? 1 : 0;
}

/* ------------------------------------------------------------------ IMAP connection */

#define TR_LINES 30
#define TR_WIDTH 220

struct ic {
	int fd;
	SSL *ssl;
	char *rb;
	size_t rcap, rpos, rlen;
	unsigned tag;
	char user[128];
	char lastcmd[TR_WIDTH];
	char tr[TR_LINES][TR_WIDTH];
	int ntr, trmore;
	char err[512];
};

struct resp {
	char status[8];        /* OK NO BAD, or "" */
	char tagged[512];      /* tagged line after the tag */
	long exists;           /* last * N EXISTS, -1 if none */
	int nexpunge;
	long nsearch;
	int have_search;
	long nfetch;
	long lit_last;         /* size of the last literal, -1 if none */
	long nlit;
	unsigned char lit_tail[4];
	int cont;              /* got a "+" continuation */
	int bye;
};

typedef void (*untagged_cb)(void *arg, const char *line);

static void tr_add(struct ic *c, const char *prefix, const char *s, size_t n)
{
	if (c->ntr >= TR_LINES) {
		c->trmore++;
		return;
	}
	size_t pl = strlen(prefix);
	if (n > TR_WIDTH - pl - 4)
		n = TR_WIDTH - pl - 4;
	memcpy(c->tr[c->ntr], prefix, pl);
	memcpy(c->tr[c->ntr] + pl, s, n);
	c->tr[c->ntr][pl + n] = 0;
	if (n == TR_WIDTH - pl - 4)
		strcat(c->tr[c->ntr], "...");
	c->ntr++;
}

static void ic_report(struct ic *c, const char *what)
{
	if (atomic_fetch_add(&errors_printed, 1) >= MAX_PRINTED_ERRORS)
		return;
	flockfile(stderr);
	fprintf(stderr, "imapbench[%s] %s: %s\n", label, c->user, what);
	if (c->err[0])
		fprintf(stderr, "  (%s)\n", c->err);
	fprintf(stderr, "  C: %s\n", c->lastcmd);
	for (int i = 0; i < c->ntr; i++)
		fprintf(stderr, "  %s\n", c->tr[i]);
	if (c->trmore)
		fprintf(stderr, "  S: ... (%d more lines)\n", c->trmore);
	funlockfile(stderr);
}

static int ic_fill(struct ic *c)
{
	for (;;) {
		int r = SSL_read(c->ssl, c->rb, (int)c->rcap);
		if (r > 0) {
			c->rpos = 0;
			c->rlen = (size_t)r;
			return 0;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_SYSCALL && errno == EINTR)
			continue;
		snprintf(c->err, sizeof c->err, "read failed: %s",
			 e == SSL_ERROR_ZERO_RETURN ? "TLS close_notify"
			 : e == SSL_ERROR_SYSCALL ? (errno == EAGAIN ? "timeout" : errno ? strerror(errno) : "connection closed")
			 : "TLS error");
		return -1;
	}
}

/* Read one physical line; out gets it without CRLF (truncated to cap-1). Returns length or -1. */
static long ic_line(struct ic *c, char *out, size_t cap)
{
	size_t o = 0;
	long total = 0;
	for (;;) {
		if (c->rpos == c->rlen && ic_fill(c) < 0)
			return -1;
		char *start = c->rb + c->rpos;
		char *nl = memchr(start, '\n', c->rlen - c->rpos);
		size_t n = nl ? (size_t)(nl - start) : c->rlen - c->rpos;
		size_t cp = n;
		if (o + cp > cap - 1)
			cp = cap - 1 - o;
		memcpy(out + o, start, cp);
		o += cp;
		total += (long)n;
		c->rpos += n + (nl ? 1 : 0);
		if (nl)
			break;
	}
	if (o > 0 && out[o - 1] == '\r')
		o--;
	out[o] = 0;
	return (long)o;
}

static int ic_skip(struct ic *c, long n, unsigned char tail[4])
{
	while (n > 0) {
		if (c->rpos == c->rlen && ic_fill(c) < 0)
			return -1;
		size_t avail = c->rlen - c->rpos;
		size_t take = (size_t)n < avail ? (size_t)n : avail;
		for (size_t i = take > 4 ? take - 4 : 0; i < take; i++) {
			memmove(tail, tail + 1, 3);
			tail[3] = (unsigned char)c->rb[c->rpos + i];
		}
		c->rpos += take;
		n -= (long)take;
	}
	return 0;
}

static int ic_send(struct ic *c, const char *p, size_t n)
{
	while (n > 0) {
		int w = SSL_write(c->ssl, p, (int)n);
		if (w <= 0) {
			snprintf(c->err, sizeof c->err, "write failed (SSL error %d)", SSL_get_error(c->ssl, w));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* literal at the end of a line: "{123}" or "{123+}"; returns size or -1 */
static long trailing_literal(const char *l, size_t n)
{
	if (n < 3 || l[n - 1] != '}')
		return -1;
	size_t i = n - 1;
	if (i > 0 && l[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && isdigit((unsigned char)l[i - 1]))
		i--;
	if (i == end || i == 0 || l[i - 1] != '{')
		return -1;
	return atol(l + i);
}

/*
 * Read responses until the tagged one for `tag` (or a "+" continuation when stop_on_cont).
 * Returns 0 when a tagged line (or continuation) was read, -1 on a broken connection.
 */
static int ic_read(struct ic *c, const char *tag, struct resp *r, untagged_cb cb, void *arg, int stop_on_cont)
{
	static __thread char *lg;     /* logical line (literals replaced by their {n}) */
	static __thread size_t lgcap;
	char line[8192];
	size_t taglen = strlen(tag);
	if (!lg) {
		lgcap = 65536;
		lg = xmalloc(lgcap);
	}
	for (;;) {
		long n = ic_line(c, line, sizeof line);
		if (n < 0)
			return -1;
		tr_add(c, "S: ", line, (size_t)n);
		if (line[0] == '+' && stop_on_cont) {
			r->cont = 1;
			return 0;
		}
		if (strncmp(line, tag, taglen) == 0 && line[taglen] == ' ') {
			const char *st = line + taglen + 1;
			size_t sl = strcspn(st, " ");
			snprintf(r->status, sizeof r->status, "%.*s", (int)(sl < 7 ? sl : 7), st);
			snprintf(r->tagged, sizeof r->tagged, "%s", st);
			return 0;
		}
		if (line[0] != '*')
			continue; /* stray continuation etc. */
		/* assemble the logical line across literals */
		size_t ll = 0;
		for (;;) {
			size_t pn = strlen(line);
			if (ll + pn + 1 > lgcap) {
				lgcap = (ll + pn + 1) * 2;
				lg = xrealloc(lg, lgcap);
			}
			memcpy(lg + ll, line, pn);
			ll += pn;
			lg[ll] = 0;
			long lit = trailing_literal(line, pn);
			if (lit < 0)
				break;
			memset(r->lit_tail, 0, 4);
			if (ic_skip(c, lit, r->lit_tail) < 0)
				return -1;
			r->lit_last = lit;
			r->nlit++;
			char note[64];
			snprintf(note, sizeof note, "<literal of %ld octets>", lit);
			tr_add(c, "S: ", note, strlen(note));
			n = ic_line(c, line, sizeof line);
			if (n < 0)
				return -1;
			tr_add(c, "S: ", line, (size_t)n);
		}
		/* interpret */
		char *p = lg + 2;
		if (isdigit((unsigned char)*p)) {
			long num = strtol(p, &p, 10);
			if (strncmp(p, " EXISTS", 7) == 0)
				r->exists = num;
			else if (strncmp(p, " EXPUNGE", 8) == 0)
				r->nexpunge++;
			else if (strncmp(p, " FETCH", 6) == 0)
				r->nfetch++;
		} else if (strncmp(p, "SEARCH", 6) == 0 && (p[6] == 0 || p[6] == ' ')) {
			r->have_search = 1;
			for (char *q = p + 6; *q;) {
				while (*q == ' ')
					q++;
				if (isdigit((unsigned char)*q)) {
					r->nsearch++;
					while (isdigit((unsigned char)*q))
						q++;
				} else if (*q) {
					q++;
				}
			}
		} else if (strncmp(p, "BYE", 3) == 0) {
			r->bye = 1;
		}
		if (cb)
			cb(arg, lg);
	}
}

static void resp_init(struct resp *r)
{
	memset(r, 0, sizeof *r);
	r->exists = -1;
	r->lit_last = -1;
}

/* Send one command line (without CRLF) and read up to its tagged answer (or "+"). */
static int ic_cmd_start(struct ic *c, struct resp *r, char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	int n = snprintf(line, sizeof line, "A%u ", ++c->tag);
	snprintf(tag, 16, "A%u", c->tag);
	n += vsnprintf(line + n, sizeof line - (size_t)n - 2, fmt, ap);
	snprintf(c->lastcmd, sizeof c->lastcmd, "%.200s", line);
	line[n++] = '\r';
	line[n++] = '\n';
	c->ntr = c->trmore = 0;
	c->err[0] = 0;
	resp_init(r);
	return ic_send(c, line, (size_t)n);
}

static int ic_cmd_startf(struct ic *c, struct resp *r, char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = ic_cmd_start(c, r, tag, fmt, ap);
	va_end(ap);
	return rc;
}

static int ic_cmd(struct ic *c, struct resp *r, untagged_cb cb, void *arg, const char *fmt, ...)
{
	char tag[16];
	va_list ap;
	va_start(ap, fmt);
	int rc = ic_cmd_start(c, r, tag, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -1;
	return ic_read(c, tag, r, cb, arg, 0);
}

static void ic_close(struct ic *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rb);
	c->rb = NULL;
}

/* Connect, TLS, greeting, LOGIN. Returns 0 or -1 (c->err / transcript set). */
static int ic_open(struct ic *c, int user, size_t rbufsz)
{
	c->fd = -1;
	c->ssl = NULL;
	c->rb = xmalloc(rbufsz);
	c->rcap = rbufsz;
	c->rpos = c->rlen = 0;
	c->ntr = c->trmore = 0;
	c->err[0] = 0;
	snprintf(c->user, sizeof c->user, "user%d@%s", user, domain);
	snprintf(c->lastcmd, sizeof c->lastcmd, "(connect + TLS handshake)");
	c->fd = tcp_connect(c->err, sizeof c->err);
	if (c->fd < 0)
		goto fail;
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_tlsext_host_name(c->ssl, "mail.bench.test");
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();
		snprintf(c->err, sizeof c->err, "TLS handshake failed: %s (%s)",
			 e ? ERR_reason_error_string(e) : "no TLS error", errno ? strerror(errno) : "");
		goto fail;
	}
	char line[2048];
	snprintf(c->lastcmd, sizeof c->lastcmd, "(greeting)");
	long n = ic_line(c, line, sizeof line);
	if (n < 0)
		goto fail;
	tr_add(c, "S: ", line, (size_t)n);
	if (strncmp(line, "* OK", 4) != 0) {
		snprintf(c->err, sizeof c->err, "bad greeting");
		goto fail;
	}
	if (no_login)
		return 0;
	char pass[128];
	snprintf(pass, sizeof pass, passfmt, user);
	struct resp r;
	if (ic_cmd(c, &r, NULL, NULL, "LOGIN \"%s\" \"%s\"", c->user, pass) < 0)
		goto fail;
	if (strcmp(r.status, "OK") != 0) {
		snprintf(c->err, sizeof c->err, "LOGIN not OK");
		goto fail;
	}
	return 0;
fail:
	return -1;
}

/* ------------------------------------------------------------------ load */

enum { OP_SELECT, OP_FETCHLIST, OP_BODY, OP_HEADER, OP_STORE, OP_SEARCH, OP_APPEND, OP_EXPUNGE, NOPS };
static const char *opname[NOPS] = {"select", "fetch-list", "fetch-body", "fetch-header",
				   "store", "search", "append", "expunge"};

struct lat {
	float *v;       /* ms */
	float *at;      /* start, s after the clock started */
	size_t n, cap;
};

struct lthread {
	int id, user;
	pthread_t th;
	long n[NOPS], err[NOPS];
	struct lat lat[NOPS];
	long cycles, reconnects, append_no_exists, nlisted;
	/* mailbox state */
	long exists;
	long *uids, *sizes;
	size_t mcap;
	uint64_t rng;
	int dead;
};

static pthread_barrier_t load_barrier;
static int shared;  /* more clients than accounts: some sessions share a mailbox */
static double load_t0, load_tend;
static char append_msg[5121];

static uint64_t rnd(struct lthread *t)
{
	t->rng ^= t->rng << 13;
	t->rng ^= t->rng >> 7;
	t->rng ^= t->rng << 17;
	return t->rng;
}

static void lat_add(struct lat *l, double ms, double at)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
		l->at = xrealloc(l->at, l->cap * sizeof *l->at);
	}
	l->at[l->n] = (float)at;
	l->v[l->n++] = (float)ms;
}

static void ensure_cap(struct lthread *t, long n)
{
	if ((size_t)n <= t->mcap)
		return;
	size_t nc = (size_t)n * 2 + 16;
	t->uids = xrealloc(t->uids, nc * sizeof *t->uids);
	t->sizes = xrealloc(t->sizes, nc * sizeof *t->sizes);
	memset(t->uids + t->mcap, 0, (nc - t->mcap) * sizeof *t->uids);
	memset(t->sizes + t->mcap, 0, (nc - t->mcap) * sizeof *t->sizes);
	t->mcap = nc;
}

/* "* 12 FETCH (UID 34 RFC822.SIZE 5678 FLAGS (\Seen))" -> uids[11] = 34, sizes[11] = 5678 */
static void cb_fetchlist(void *arg, const char *l)
{
	struct lthread *t = arg;
	char *p;
	long seq = strtol(l + 2, &p, 10);
	if (seq <= 0 || strncmp(p, " FETCH", 6) != 0)
		return;
	ensure_cap(t, seq);
	const char *u = strstr(p, "UID ");
	const char *s = strstr(p, "RFC822.SIZE ");
	if (!s)
		return; /* another session's flag change */
	t->nlisted++;
	if (u)
		t->uids[seq - 1] = atol(u + 4);
	t->sizes[seq - 1] = atol(s + 12);
}

/* UID of a FETCH response line, or -1 */
static long fetch_uid(const char *l)
{
	for (const char *p = strstr(l, "UID "); p; p = strstr(p + 4, "UID "))
		if (p > l && (p[-1] == '(' || p[-1] == ' '))
			return atol(p + 4);
	return -1;
}

/* Checks on the FETCH responses for one UID; other sessions' flag changes may come along. */
struct fcheck {
	long uid;
	int n;          /* FETCH responses for uid with a BODY[...] item */
	int nflags;     /* ... of which with FLAGS */
	int has_seen;
};

static void cb_fcheck(void *arg, const char *l)
{
	struct fcheck *f = arg;
	if (!strstr(l, " FETCH (") || fetch_uid(l) != f->uid)
		return;
	if (strstr(l, "BODY["))
		f->n++;
	const char *fl = strstr(l, "FLAGS (");
	if (fl) {
		f->nflags++;
		const char *end = strchr(fl, ')');
		const char *s = strstr(fl, "\\Seen");
		f->has_seen = s && (!end || s < end);
	}
}

static int parse_appenduid(const char *tagged, long *uid)
{
	const char *p = strstr(tagged, "[APPENDUID ");
	if (!p)
		return -1;
	char *q;
	strtoul(p + 11, &q, 10);
	*uid = strtol(q, NULL, 10);
	return *uid > 0 ? 0 : -1;
}

/* Run one op; returns 0 ok, 1 failed check (session usable), -1 connection broken. */
#define FAILED(...) do { snprintf(why, sizeof why, __VA_ARGS__); goto bad; } while (0)

static int run_cycle(struct lthread *t, struct ic *c)
{
	struct resp r;
	char why[256];
	int op = OP_SELECT;
	double t0;
	int step = 0;
	/* the cycle as a list of steps */
	static const int steps[] = {OP_SELECT, OP_FETCHLIST, OP_BODY, OP_HEADER, OP_BODY, OP_HEADER,
				    OP_STORE, OP_BODY, OP_HEADER, OP_STORE, OP_BODY, OP_HEADER,
				    OP_STORE, OP_BODY, OP_HEADER, OP_STORE, OP_SEARCH, OP_SEARCH,
				    OP_SEARCH, OP_APPEND, OP_STORE, OP_EXPUNGE};
	int nstore = 0, nsearch = 0;
	long appended_uid = 0;
	for (step = 0; step < (int)(sizeof steps / sizeof steps[0]); step++) {
		/* stop at the deadline, but never leave an appended message behind */
		if (now_s() >= load_tend && appended_uid <= 0)
			return 0;
		op = steps[step];
		resp_init(&r);
		struct fcheck fc = {0};
		t0 = now_s();
		/* a random one of the delivered messages (appended ones come after them and go away) */
		long pick = t->exists < nmsgs ? t->exists : nmsgs;
		long seq = pick > 0 ? (long)(rnd(t) % (uint64_t)pick) + 1 : 1;
		long uid = (t->uids && (size_t)seq <= t->mcap) ? t->uids[seq - 1] : 0;
		int rc = 0;
		switch (op) {
		case OP_SELECT:
			rc = ic_cmd(c, &r, NULL, NULL, "SELECT INBOX");
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("SELECT not OK");
			if (r.exists < 0)
				FAILED("SELECT without EXISTS");
			t->exists = r.exists;
			if (r.exists < nmsgs)
				FAILED("SELECT: %ld messages, expected at least %d", r.exists, nmsgs);
			break;
		case OP_FETCHLIST:
			ensure_cap(t, t->exists);
			memset(t->uids, 0, t->mcap * sizeof *t->uids);
			t->nlisted = 0;
			rc = ic_cmd(c, &r, cb_fetchlist, t, "FETCH 1:* (FLAGS UID RFC822.SIZE)");
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("FETCH not OK");
			if (r.exists >= 0)
				t->exists = r.exists;
			t->exists -= r.nexpunge;
			/* with sessions sharing an account, their appends and expunges interleave */
			if (shared ? t->nlisted < nmsgs : t->nlisted != t->exists)
				FAILED("FETCH 1:* returned %ld FETCH responses with RFC822.SIZE for %ld messages", t->nlisted, t->exists);
			for (long i = 0; i < (shared ? nmsgs : t->exists); i++)
				if (t->uids[i] <= 0 || t->sizes[i] <= 0 || (i > 0 && t->uids[i] <= t->uids[i - 1]))
					FAILED("FETCH 1:*: message %ld has UID %ld RFC822.SIZE %ld", i + 1, t->uids[i], t->sizes[i]);
			break;
		case OP_BODY:
			if (uid <= 0)
				FAILED("no UID known for message %ld", seq);
			fc.uid = uid;
			rc = ic_cmd(c, &r, cb_fcheck, &fc, "UID FETCH %ld BODY.PEEK[]", uid);
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("UID FETCH BODY.PEEK[] not OK");
			if (fc.n != 1 || r.nlit != 1)
				FAILED("UID FETCH BODY.PEEK[]: %d FETCH responses for UID %ld, %ld literals", fc.n, uid, r.nlit);
			if (r.lit_last != t->sizes[seq - 1])
				FAILED("BODY[] of UID %ld is %ld octets, RFC822.SIZE said %ld", uid, r.lit_last, t->sizes[seq - 1]);
			break;
		case OP_HEADER:
			if (uid <= 0)
				FAILED("no UID known for message %ld", seq);
			fc.uid = uid;
			rc = ic_cmd(c, &r, cb_fcheck, &fc, "UID FETCH %ld BODY.PEEK[HEADER]", uid);
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("UID FETCH BODY.PEEK[HEADER] not OK");
			if (fc.n != 1 || r.nlit != 1)
				FAILED("UID FETCH BODY.PEEK[HEADER]: %d FETCH responses for UID %ld, %ld literals", fc.n, uid, r.nlit);
			if (r.lit_last < 100 || memcmp(r.lit_tail, "\r\n\r\n", 4) != 0)
				FAILED("BODY[HEADER] of UID %ld: %ld octets, not ending in an empty line", uid, r.lit_last);
			break;
		case OP_STORE:
			if (nstore < 4) {
				int add = nstore % 2 == 0;
				nstore++;
				if (uid <= 0)
					FAILED("no UID known for message %ld", seq);
				fc.uid = uid;
				rc = ic_cmd(c, &r, cb_fcheck, &fc, "UID STORE %ld %cFLAGS (\\Seen)", uid, add ? '+' : '-');
				if (rc < 0)
					goto broken;
				if (strcmp(r.status, "OK") != 0)
					FAILED("UID STORE not OK");
				/* a server may leave out the FETCH when the flag was already so */
				if (!shared && fc.nflags > 0 && fc.has_seen != add)
					FAILED("UID STORE %cFLAGS (\\Seen): the FETCH FLAGS for UID %ld has \\Seen %s",
					       add ? '+' : '-', uid, fc.has_seen ? "set" : "not set");
			} else {
				if (appended_uid <= 0)
					continue; /* append failed: nothing to delete */
				rc = ic_cmd(c, &r, NULL, NULL, "UID STORE %ld +FLAGS.SILENT (\\Deleted)", appended_uid);
				if (rc < 0)
					goto broken;
				if (strcmp(r.status, "OK") != 0)
					FAILED("UID STORE +FLAGS.SILENT (\\Deleted) not OK");
			}
			break;
		case OP_SEARCH: {
			long want = -1;
			int which = nsearch++;
			if (which == 0) {
				rc = ic_cmd(c, &r, NULL, NULL, "SEARCH UNSEEN");
			} else if (which == 1) {
				int s = (int)(rnd(t) % NSENDERS);
				want = expected_from(s);
				rc = ic_cmd(c, &r, NULL, NULL, "SEARCH FROM \"sender%d@\"", s);
			} else {
				int tp = (int)(rnd(t) % NTOPICS);
				want = expected_subject(tp);
				rc = ic_cmd(c, &r, NULL, NULL, "SEARCH SUBJECT \"topic%d\"", tp);
			}
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("SEARCH not OK");
			if (!r.have_search)
				FAILED("SEARCH without an untagged SEARCH response");
			if (want >= 0 && r.nsearch != want)
				FAILED("SEARCH found %ld messages, expected %ld", r.nsearch, want);
			break;
		}
		case OP_APPEND: {
			char tag[16];
			if (ic_cmd_startf(c, &r, tag, "APPEND INBOX (\\Seen) {%zu}", strlen(append_msg)) < 0 ||
			    ic_read(c, tag, &r, NULL, NULL, 1) < 0)
				goto broken;
			if (!r.cont)
				FAILED("APPEND: no continuation request for the literal");
			r.cont = 0;
			tr_add(c, "C: ", "<literal of 5120 octets>", 24);
			if (ic_send(c, append_msg, strlen(append_msg)) < 0 || ic_send(c, "\r\n", 2) < 0 ||
			    ic_read(c, tag, &r, NULL, NULL, 0) < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("APPEND not OK");
			if (parse_appenduid(r.tagged, &appended_uid) < 0)
				FAILED("APPEND: no [APPENDUID] in the tagged OK");
			if (r.exists < 0) {
				t->append_no_exists++;
				t->exists++;
			}
			break;
		}
		case OP_EXPUNGE:
			if (appended_uid <= 0)
				continue;
			rc = ic_cmd(c, &r, NULL, NULL, "UID EXPUNGE %ld", appended_uid);
			if (rc < 0)
				goto broken;
			if (strcmp(r.status, "OK") != 0)
				FAILED("UID EXPUNGE not OK");
			if (r.nexpunge < 1)
				FAILED("UID EXPUNGE %ld: no EXPUNGE response", appended_uid);
			t->exists -= r.nexpunge;
			if (r.exists >= 0)
				t->exists = r.exists;
			appended_uid = 0;
			break;
		}
		if (op != OP_SELECT && op != OP_EXPUNGE) {
			t->exists -= r.nexpunge;  /* other sessions' expunges */
			if (r.exists >= 0)
				t->exists = r.exists;
		}
		t->n[op]++;
		lat_add(&t->lat[op], (now_s() - t0) * 1000.0, t0 - load_t0);
		continue;
bad:
		t->err[op]++;
		ic_report(c, why);
		if (r.bye)
			return -1;
		if (op == OP_SELECT || op == OP_FETCHLIST)
			return 1; /* start the cycle again */
		continue;
broken:
		t->err[op]++;
		ic_report(c, "connection broken");
		return -1;
	}
	t->cycles++;
	return 0;
}

static void *load_worker(void *arg)
{
	struct lthread *t = arg;
	struct ic c = {0};
	t->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)(t->id + 1) * 0xbf58476d1ce4e5b9ULL) ^ (uint64_t)getpid();
	if (ic_open(&c, t->user, 65536) < 0) {
		ic_report(&c, "connect/LOGIN failed");
		ic_close(&c);
	}
	pthread_barrier_wait(&load_barrier);
	while (now_s() < load_tend) {
		if (c.fd < 0) {
			t->reconnects++;
			if (ic_open(&c, t->user, 65536) < 0) {
				ic_report(&c, "reconnect/LOGIN failed");
				ic_close(&c);
				usleep(200000);
				continue;
			}
		}
		if (run_cycle(t, &c) < 0)
			ic_close(&c);
	}
	if (c.fd >= 0) {
		struct resp r;
		ic_cmd(&c, &r, NULL, NULL, "LOGOUT");
		ic_close(&c);
	}
	return NULL;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static double pct(const float *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p / 100.0 * (double)n + 0.999999) - 1;
	if (i < 0)
		i = 0;
	if ((size_t)i >= n)
		i = (long)n - 1;
	return v[i];
}

static double cpu_secs_self(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int do_load(void)
{
	if (nclients < 0)
		nclients = 20;
	/* the 5 KB message every APPEND stores */
	{
		struct buf b = {0};
		bputs(&b, "From: \"Load Generator\" <loadgen@client.bench.invalid>\r\n");
		bprintf(&b, "To: <user@%s>\r\n", domain);
		bputs(&b, "Subject: imap-bench appended draft\r\nDate: Mon, 06 Jan 2025 10:00:00 +0000\r\n"
			  "Message-ID: <append@client.bench.invalid>\r\nMIME-Version: 1.0\r\n"
			  "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
		uint32_t seed = 4242;
		gen_text(&b, &seed, 5400 - b.len, 0);
		/* cut to 5120 octets at a line end, pad the last line */
		size_t cut = 5120 - 2;
		memcpy(append_msg, b.p, cut);
		for (size_t i = cut; i > 0 && append_msg[i - 1] != '\n'; i--)
			append_msg[i - 1] = 'x';
		/* the line cut short is now x-padded up to `cut`; end it */
		append_msg[cut] = '\r';
		append_msg[cut + 1] = '\n';
		append_msg[5120] = 0;
		/* no bare CR/LF from the padding */
		for (size_t i = 0; i + 1 < cut; i++)
			if (append_msg[i] == '\r' && append_msg[i + 1] != '\n')
				append_msg[i] = 'x';
		free(b.p);
	}
	shared = nclients > nusers;
	struct lthread *ts = calloc((size_t)nclients, sizeof *ts);
	pthread_barrier_init(&load_barrier, NULL, (unsigned)nclients + 1);
	load_tend = now_s() + 1e9;
	for (int i = 0; i < nclients; i++) {
		ts[i].id = i;
		ts[i].user = i % nusers + 1;
		pthread_create(&ts[i].th, NULL, load_worker, &ts[i]);
	}
	/* all sessions are logged in: start the clock */
	load_t0 = now_s();
	load_tend = load_t0 + duration;
	double cpu0 = cpu_secs_self();
	pthread_barrier_wait(&load_barrier);
	for (int i = 0; i < nclients; i++)
		pthread_join(ts[i].th, NULL);
	double secs = now_s() - load_t0;
	double cpu = cpu_secs_self() - cpu0;
	long tot = 0, toterr = 0, cycles = 0, reconn = 0, noexists = 0;
	FILE *lf = latfile ? fopen(latfile, "a") : NULL;
	for (int op = 0; op < NOPS; op++) {
		size_t n = 0;
		long cnt = 0, err = 0;
		for (int i = 0; i < nclients; i++) {
			n += ts[i].lat[op].n;
			cnt += ts[i].n[op];
			err += ts[i].err[op];
		}
		float *v = xmalloc(sizeof(float) * (n ? n : 1));
		size_t k = 0;
		for (int i = 0; i < nclients; i++) {
			memcpy(v + k, ts[i].lat[op].v, ts[i].lat[op].n * sizeof(float));
			k += ts[i].lat[op].n;
		}
		if (lf)
			for (int i = 0; i < nclients; i++)
				for (size_t j = 0; j < ts[i].lat[op].n; j++)
					fprintf(lf, "%s %.3f %.3f %d\n", opname[op], ts[i].lat[op].v[j],
						ts[i].lat[op].at[j], i);
		qsort(v, n, sizeof *v, cmp_float);
		printf("RESULT label=%s op=%s n=%ld err=%ld secs=%.3f rate=%.1f p50=%.2f p99=%.2f max=%.2f\n",
		       label, opname[op], cnt, err, secs, cnt / secs, pct(v, n, 50), pct(v, n, 99), pct(v, n, 100));
		free(v);
		tot += cnt;
		toterr += err;
	}
	if (lf)
		fclose(lf);
	for (int i = 0; i < nclients; i++) {
		cycles += ts[i].cycles;
		reconn += ts[i].reconnects;
		noexists += ts[i].append_no_exists;
	}
	printf("RESULT label=%s op=total n=%ld err=%ld secs=%.3f rate=%.1f cycles=%ld reconnects=%ld "
	       "append_without_exists=%ld client_cpu_s=%.2f clients=%d\n",
	       label, tot, toterr, secs, tot / secs, cycles, reconn, noexists, cpu, nclients);
	fflush(stdout);
	return toterr ? 1 : 0;
}

/* ------------------------------------------------------------------ prime */

static void cb_sizes(void *arg, const char *l)
{
	long long *sum = arg;
	const char *s = strstr(l, "RFC822.SIZE ");
	if (s)
		*sum += atoll(s + 12);
}

static int do_prime(void)
{
	long long total = 0;
	int errs = 0;
	for (int u = 1; u <= nusers; u++) {
		struct ic c = {0};
		struct resp r;
		long long sum = 0;
		if (ic_open(&c, u, 65536) < 0) {
			ic_report(&c, "connect/LOGIN failed");
			errs++;
			ic_close(&c);
			continue;
		}
		if (ic_cmd(&c, &r, NULL, NULL, "SELECT INBOX") < 0 || strcmp(r.status, "OK") != 0 || r.exists != nmsgs) {
			ic_report(&c, "SELECT failed or wrong number of messages");
			errs++;
		} else if (ic_cmd(&c, &r, cb_sizes, &sum, "FETCH 1:* (FLAGS UID RFC822.SIZE)") < 0 ||
			   strcmp(r.status, "OK") != 0 || r.nfetch != nmsgs) {
			ic_report(&c, "FETCH 1:* failed");
			errs++;
		} else if (ic_cmd(&c, &r, NULL, NULL, "SEARCH FROM \"sender3@\"") < 0 || strcmp(r.status, "OK") != 0 ||
			   r.nsearch != expected_from(3)) {
			ic_report(&c, "SEARCH FROM failed or found the wrong number");
			errs++;
		} else if (ic_cmd(&c, &r, NULL, NULL, "SEARCH SUBJECT \"topic3\"") < 0 || strcmp(r.status, "OK") != 0 ||
			   r.nsearch != expected_subject(3)) {
			ic_report(&c, "SEARCH SUBJECT failed or found the wrong number");
			errs++;
		}
		total += sum;
		if (c.fd >= 0)
			ic_cmd(&c, &r, NULL, NULL, "LOGOUT");
		ic_close(&c);
	}
	printf("PRIME users=%d msgs=%d bytes=%lld errors=%d\n", nusers, nmsgs, total, errs);
	return errs ? 1 : 0;
}

/* ------------------------------------------------------------------ idle */

static struct ic *idle_conns;
static atomic_int idle_next, idle_ok, idle_fail;

static void *idle_open_worker(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&idle_next, 1);
		if (i >= nclients)
			break;
		struct ic *c = &idle_conns[i];
		int ok = ic_open(c, i % nusers + 1, 4096) == 0;
		if (ok && idle_select) {
			struct resp r;
			char tag[16];
			if (ic_cmd(c, &r, NULL, NULL, "SELECT INBOX") < 0 || strcmp(r.status, "OK") != 0)
				ok = 0;
			else if (ic_cmd_startf(c, &r, tag, "IDLE") < 0 || ic_read(c, tag, &r, NULL, NULL, 1) < 0 || !r.cont)
				ok = 0;
		}
		if (ok) {
			atomic_fetch_add(&idle_ok, 1);
		} else {
			ic_report(c, "idle session setup failed");
			ic_close(c);
			atomic_fetch_add(&idle_fail, 1);
		}
	}
	return NULL;
}

static atomic_int check_next, check_ok, check_fail;

static void *idle_check_worker(void *arg)
{
	(void)arg;
	for (;;) {
		int i = atomic_fetch_add(&check_next, 1);
		if (i >= nclients)
			break;
		struct ic *c = &idle_conns[i];
		if (c->fd < 0)
			continue;
		struct resp r;
		int ok = 1;
		if (idle_select) {
			char tag[16];
			snprintf(tag, sizeof tag, "A%u", c->tag);
			snprintf(c->lastcmd, sizeof c->lastcmd, "DONE");
			c->ntr = c->trmore = 0;
			resp_init(&r);
			if (ic_send(c, "DONE\r\n", 6) < 0 || ic_read(c, tag, &r, NULL, NULL, 0) < 0 || strcmp(r.status, "OK") != 0)
				ok = 0;
		}
		if (ok && (ic_cmd(c, &r, NULL, NULL, "NOOP") < 0 || strcmp(r.status, "OK") != 0))
			ok = 0;
		if (ok) {
			atomic_fetch_add(&check_ok, 1);
		} else {
			ic_report(c, "idle session check (NOOP) failed");
			atomic_fetch_add(&check_fail, 1);
		}
	}
	return NULL;
}

static int run_threads(void *(*fn)(void *), int n)
{
	pthread_t *th = xmalloc(sizeof *th * (size_t)n);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 256 * 1024);
	for (int i = 0; i < n; i++)
		if (pthread_create(&th[i], &at, fn, NULL) != 0) {
			perror("pthread_create");
			exit(1);
		}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	free(th);
	return 0;
}

static int do_idle(void)
{
	if (nclients < 0)
		nclients = 5000;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < (rlim_t)nclients + 100) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nclients + 100) {
			fprintf(stderr, "imapbench idle: open-file limit %lu too low for %d connections (ulimit -n)\n",
				(unsigned long)rl.rlim_cur, nclients);
			return 2;
		}
	}
	idle_conns = calloc((size_t)nclients, sizeof *idle_conns);
	for (int i = 0; i < nclients; i++)
		idle_conns[i].fd = -1;
	double t0 = now_s();
	run_threads(idle_open_worker, idle_threads);
	/* the connections are idle from here on: drop the per-session read buffers' pages? no, keep */
	printf("READY ok=%d fail=%d secs=%.1f\n", atomic_load(&idle_ok), atomic_load(&idle_fail), now_s() - t0);
	fflush(stdout);
	char cmd[64];
	int rc = atomic_load(&idle_fail) ? 1 : 0;
	while (fgets(cmd, sizeof cmd, stdin)) {
		if (strncmp(cmd, "check", 5) == 0) {
			atomic_store(&check_next, 0);
			atomic_store(&check_ok, 0);
			atomic_store(&check_fail, 0);
			double c0 = now_s();
			run_threads(idle_check_worker, idle_threads);
			printf("CHECK ok=%d fail=%d secs=%.1f\n", atomic_load(&check_ok), atomic_load(&check_fail), now_s() - c0);
			fflush(stdout);
			if (atomic_load(&check_fail))
				rc = 1;
		}
	}
	for (int i = 0; i < nclients; i++)
		if (idle_conns[i].fd >= 0)
			ic_close(&idle_conns[i]);
	return rc;
}

/* ------------------------------------------------------------------ mem */

static int do_mem(int root)
{
	struct proc_info *ps;
	size_t n = proc_tree(root, &ps);
	long procs = 0, pss = 0, rss = 0;
	struct {
		char comm[32];
		long procs, pss, rss;
	} by[32];
	int nby = 0;
	for (size_t i = 0; i < n; i++) {
		long p, r;
		if (proc_mem_kb(ps[i].pid, &p, &r) < 0)
			continue;
		procs++;
		pss += p;
		rss += r;
		int k;
		for (k = 0; k < nby; k++)
			if (strcmp(by[k].comm, ps[i].comm) == 0)
				break;
		if (k == nby && nby < 32) {
			snprintf(by[nby].comm, sizeof by[nby].comm, "%s", ps[i].comm);
			by[nby].procs = by[nby].pss = by[nby].rss = 0;
			nby++;
		}
		if (k < nby) {
			by[k].procs++;
			by[k].pss += p;
			by[k].rss += r;
		}
	}
	printf("MEM procs=%ld pss_kb=%ld rss_kb=%ld\n", procs, pss, rss);
	for (int k = 0; k < nby; k++)
		printf("MEMBY comm=%s procs=%ld pss_kb=%ld rss_kb=%ld\n", by[k].comm, by[k].procs, by[k].pss, by[k].rss);
	free(ps);
	return procs ? 0 : 1;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: imapbench fill  -p SMTP_PORT [-c 8] [-u 20] [-n 500] [-d DOMAIN]\n"
		"       imapbench prime -p IMAPS_PORT [-u 20] [-n 500] [-d DOMAIN] [-P PASSFMT]\n"
		"       imapbench load  -p IMAPS_PORT [-c 20] [-u 20] [-n 500] [-D SECONDS] [-l LABEL] [-L LATFILE]\n"
		"       imapbench idle  -p IMAPS_PORT [-c 5000] [-u 20] [-T THREADS] [-S | -N]\n"
		"       imapbench mem   PID\n"
		"common: [-H 127.0.0.1] [-t TIMEOUT_S] [-P PASSFMT (default bench-pass-%%d)]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	if (strcmp(mode, "mem") == 0) {
		if (argc != 3)
			usage();
		return do_mem(atoi(argv[2]));
	}
	int opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "H:p:c:u:n:d:P:l:L:D:t:T:SNh")) != -1) {
		switch (opt) {
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'c': nclients = atoi(optarg); break;
		case 'u': nusers = atoi(optarg); break;
		case 'n': nmsgs = atoi(optarg); break;
		case 'd': domain = optarg; break;
		case 'P': passfmt = optarg; break;
		case 'l': label = optarg; break;
		case 'L': latfile = optarg; break;
		case 'D': duration = atof(optarg); break;
		case 't': timeout_s = atoi(optarg); break;
		case 'T': idle_threads = atoi(optarg); break;
		case 'S': idle_select = 1; break;
		case 'N': no_login = 1; break;
		default: usage();
		}
	}
	if (port <= 0 || nusers <= 0 || nmsgs <= 0 || nclients == 0 || duration <= 0 || idle_threads <= 0)
		usage();
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(mode, "fill") == 0)
		return do_fill();
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		fprintf(stderr, "SSL_CTX_new failed\n");
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (strcmp(mode, "prime") == 0)
		return do_prime();
	if (strcmp(mode, "load") == 0)
		return do_load();
	if (strcmp(mode, "idle") == 0)
		return do_idle();
	usage();
	return 2;
}
