/* smtpc.c - the outbound SMTP client: reply parser, DATA writer, one connection. */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "smtpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ev.h"
#include "num.h"
#include "queue.h"
#include "tls.h"

/* ---- reply parser ---- */

void smtpc_reply_init(struct smtpc_reply *r)
{
	memset(r, 0, sizeof(*r));
}

/* One reply line: "NNN-text" continues, "NNN text" or "NNN" ends (RFC 5321 4.2.1). */
int smtpc_reply_line(struct smtpc_reply *r, const char *line, size_t len)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->code != 0 && r->code != code)
		return -1;
	r->code = code;
	if (++r->nlines > SMTPC_REPLY_LINES)
		return -1;
	/* keep "NNN text" of the first line and the text of the others, joined by newlines */
	const char *t = r->nlines == 1 ? line : line + (len > 4 ? 4 : len);
	size_t tl = r->nlines == 1 ? len : len > 4 ? len - 4 : 0;
	if (r->nlines > 1 && r->tlen + 1 < sizeof(r->text))
		r->text[r->tlen++] = '\n';
	if (tl > sizeof(r->text) - 1 - r->tlen)
		tl = sizeof(r->text) - 1 - r->tlen;
	for (size_t i = 0; i < tl; i++) {
		unsigned char ch = (unsigned char)t[i];
		r->text[r->tlen++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
	}
	r->text[r->tlen] = '\0';
	if (len > 3 && line[3] == '-')
		return 0;
	r->done = 1;
	return 1;
}

/* ---- DATA writer ---- */

void smtpc_wire_init(struct smtpc_wire *w, int skip_return_path)
{
	memset(w, 0, sizeof(*w));
	w->at_line_start = 1;
	w->first = skip_return_path ? 1 : 0;
}

/* Transform body octets (after the Return-Path decision). */
static int wire_body(struct smtpc_wire *w, const char *in, size_t n, struct buf *out)
{
	if (n > (SIZE_MAX - 2) / 2 || buf_reserve(out, 2 * n + 2) < 0)
		return -1;
	size_t i = 0;
	if (w->skip_header) {
		const char *lf = memchr(in, '\n', n);
		if (lf == NULL)
			return 0;
		i = (size_t)(lf - in) + 1;
		w->skip_header = 0;
	}
	char *o = out->data + out->len;
	for (; i < n; i++) {
		char c = in[i];
		if (c == '\r') {
			*o++ = '\r';
			*o++ = '\n';
			w->prev_cr = 1;
			w->at_line_start = 1;
			continue;
		}
		if (c == '\n') {
			if (!w->prev_cr) {
				*o++ = '\r';
				*o++ = '\n';
			}
			w->prev_cr = 0;
			w->at_line_start = 1;
			continue;
		}
		w->prev_cr = 0;
		if (w->at_line_start && c == '.')
			*o++ = '.';   /* RFC 5321 4.5.2 */
		w->at_line_start = 0;
		/* copy the rest of the line in one go */
		size_t j = i;
		while (j < n && in[j] != '\r' && in[j] != '\n')
			j++;
		memcpy(o, in + i, j - i);
		o += j - i;
		i = j - 1;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* Decide about the held first octets. */
static int wire_decide(struct smtpc_wire *w, struct buf *out)
{
	w->first = 0;
	if (w->pfxlen == 12 && strncasecmp(w->pfx, "Return-Path:", 12) == 0)
		w->skip_header = 1;
	return wire_body(w, w->pfx, w->pfxlen, out);
}

int smtpc_wire_feed(struct smtpc_wire *w, const char *in, size_t n, struct buf *out)
{
	if (n == 0)
		return 0;
	if (w->first) {
		while (n > 0 && w->pfxlen < sizeof(w->pfx)) {
			char c = *in++;
			n--;
			w->pfx[w->pfxlen++] = c;
			if (c == '\n' || c == '\r')
				break;
		}
		char last = w->pfx[w->pfxlen - 1];
		if (w->pfxlen < sizeof(w->pfx) && last != '\n' && last != '\r')
			return 0;   /* need more to decide */
		if (wire_decide(w, out) < 0)
			return -1;
	}
	return n ? wire_body(w, in, n, out) : 0;
}

int smtpc_wire_end(struct smtpc_wire *w, struct buf *out)
{
	if (w->first && w->pfxlen > 0 && wire_decide(w, out) < 0)
		return -1;
	if (!w->at_line_start && buf_append(out, "\r\n", 2) < 0)
		return -1;
	w->at_line_start = 1;
	return buf_append(out, ".\r\n", 3);
}

/* ---- connection ---- */

static void cerr(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cerr(struct smtpc *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

int smtpc_connect(struct smtpc *c, const char *ip, unsigned port, unsigned timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	c->fd = -1;
	c->tls = NULL;
	c->inlen = 0;
	queue_strlcpy(c->ip, sizeof(c->ip), ip);
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof(*s4);
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*s6);
	} else {
		cerr(c, "bad address %s", ip);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		cerr(c, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
		cerr(c, "connect to %s port %u: %s", ip, port, strerror(errno));
		close(fd);
		return -1;
	}
	int w = ev_wait_fd(fd, POLLOUT, ev_now_ms() + timeout_ms);
	int soerr = 0;
	socklen_t el = sizeof(soerr);
	if (w <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0 || soerr != 0) {
		cerr(c, "connect to %s port %u: %s", ip, port,
		     w == 0 ? "timed out" : strerror(soerr ? soerr : errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	return 0;
}

/* Read some bytes into p. >0 bytes, 0 closed, -1 error or deadline. */
static ssize_t io_read(struct smtpc *c, char *p, size_t n, uint64_t deadline)
{
	for (;;) {
		short ev = POLLIN;
		if (c->tls) {
			ssize_t r = tls_read(c->tls, p, n);
			if (r > 0)
				return r;
			if (r == 0)
				return 0;
			if (r == -1) {
				cerr(c, "TLS read failed: %s", tls_last_error());
				return -1;
			}
			if (r == TLS_WANT_WRITE)
				ev = POLLOUT;
		} else {
			ssize_t r = read(c->fd, p, n);
			if (r >= 0)
				return r;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN) {
				cerr(c, "read: %s", strerror(errno));
				return -1;
			}
		}
		int w = ev_wait_fd(c->fd, ev, deadline);
		if (w <= 0) {
			cerr(c, w == 0 ? "timed out waiting for the server's reply" : "poll failed");
			return -1;
		}
	}
}

int smtpc_send(struct smtpc *c, const void *p, size_t n)
{
	uint64_t deadline = ev_now_ms() + c->reply_timeout_ms;
	const char *q = p;
	while (n > 0) {
		short ev = POLLOUT;
		ssize_t r;
		if (c->tls) {
			r = tls_write(c->tls, q, n);
			if (r == TLS_WANT_READ)
				ev = POLLIN;
			if (r == -1) {
				cerr(c, "TLS write failed: %s", tls_last_error());
				return -1;
			}
		} else {
			r = write(c->fd, q, n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && errno != EAGAIN) {
				cerr(c, "write: %s", strerror(errno));
				return -1;
			}
		}
		if (r > 0) {
			q += r;
			n -= (size_t)r;
			continue;
		}
		int w = ev_wait_fd(c->fd, ev, deadline);
		if (w <= 0) {
			cerr(c, "timed out sending to the server");
			return -1;
		}
	}
	return 0;
}

int smtpc_sendf(struct smtpc *c, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		cerr(c, "command too long");
		return -1;
	}
	return smtpc_send(c, line, (size_t)n);
}

typedef void line_cb(struct smtpc *c, const char *line, size_t len);

/* Read a reply, calling cb for every line. */
static int read_reply_cb(struct smtpc *c, struct smtpc_reply *r, line_cb *cb)
{
	uint64_t deadline = ev_now_ms() + c->reply_timeout_ms;
	smtpc_reply_init(r);
	for (;;) {
		char *lf = memchr(c->in, '\n', c->inlen);
		if (lf != NULL) {
			size_t len = (size_t)(lf - c->in);
			size_t used = len + 1;
			if (len > 0 && c->in[len - 1] == '\r')
				len--;
			if (cb)
				cb(c, c->in, len);
			int pr = smtpc_reply_line(r, c->in, len);
			memmove(c->in, c->in + used, c->inlen - used);
			c->inlen -= used;
			if (pr < 0) {
				cerr(c, r->nlines > SMTPC_REPLY_LINES ?
				     "the server sent a reply of more than %d lines" :
				     "the server sent a malformed reply", SMTPC_REPLY_LINES);
				return -1;
			}
			if (pr == 1)
				return 0;
			continue;
		}
		if (c->inlen >= SMTPC_LINE_MAX) {
			cerr(c, "the server sent a reply line longer than %d octets", SMTPC_LINE_MAX);
			return -1;
		}
		ssize_t n = io_read(c, c->in + c->inlen, SMTPC_LINE_MAX - c->inlen, deadline);
		if (n == 0) {
			cerr(c, "the server closed the connection");
			return -1;
		}
		if (n < 0)
			return -1;
		c->inlen += (size_t)n;
	}
}

int smtpc_read_reply(struct smtpc *c, struct smtpc_reply *r)
{
	return read_reply_cb(c, r, NULL);
}

/* Record one EHLO keyword line ("250-SIZE 1000"). */
static void ehlo_line(struct smtpc *c, const char *line, size_t len)
{
	if (len < 5)
		return;
	char kw[64];
	size_t n = len - 4 < sizeof(kw) - 1 ? len - 4 : sizeof(kw) - 1;
	memcpy(kw, line + 4, n);
	kw[n] = '\0';
	char *arg = strchr(kw, ' ');
	if (arg)
		*arg++ = '\0';
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = 1;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		c->eightbit = 1;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->smtputf8 = 1;
	else if (strcasecmp(kw, "DSN") == 0)
		c->dsn = 1;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = 1;
	else if (strcasecmp(kw, "SIZE") == 0) {
		c->size_ext = 1;
		uint64_t v;
		if (arg && num_parse_u64(arg, strlen(arg), UINT64_MAX, &v) == 0)
			c->size_max = v;
	} else if (strcasecmp(kw, "AUTH") == 0 && arg) {
		/* the line may have been clipped: look in the original */
		for (size_t i = 4; i + 5 <= len; i++) {
			if (strncasecmp(line + i, "PLAIN", 5) == 0)
				c->auth_plain = 1;
			if (strncasecmp(line + i, "LOGIN", 5) == 0)
				c->auth_login = 1;
		}
	}
}

int smtpc_ehlo(struct smtpc *c, const char *helo, struct smtpc_reply *r)
{
	c->esmtp = c->pipelining = c->size_ext = c->eightbit = c->smtputf8 = c->dsn = 0;
	c->starttls = c->auth_plain = c->auth_login = 0;
	c->size_max = 0;
	if (smtpc_sendf(c, "EHLO %s\r\n", helo) < 0 || read_reply_cb(c, r, ehlo_line) < 0)
		return -1;
	if (r->code / 100 == 2) {
		c->esmtp = 1;
		return 0;
	}
	c->pipelining = c->size_ext = c->eightbit = c->smtputf8 = c->dsn = c->starttls = 0;
	if (r->code / 100 == 4 || r->code == 554)
		return r->code;
	if (smtpc_sendf(c, "HELO %s\r\n", helo) < 0 || smtpc_read_reply(c, r) < 0)
		return -1;
	return r->code / 100 == 2 ? 0 : r->code;
}

int smtpc_starttls(struct smtpc *c, struct tls_ctx *ctx, int verify, struct smtpc_reply *r)
{
	if (smtpc_sendf(c, "STARTTLS\r\n") < 0 || smtpc_read_reply(c, r) < 0)
		return -1;
	if (r->code != 220)
		return r->code;
	if (c->inlen > 0) {
		cerr(c, "the server sent data after its STARTTLS reply (refused: it could be "
			"injected commands)");
		return -1;
	}
	return smtpc_tls_start(c, ctx, verify);
}

int smtpc_tls_start(struct smtpc *c, struct tls_ctx *ctx, int verify)
{
	c->tls = tls_client_session_new(ctx, c->fd, c->host, verify);
	if (c->tls == NULL) {
		cerr(c, "TLS setup failed: %s", tls_last_error());
		return -1;
	}
	if (c->dane != NULL && tls_session_dane(c->tls, c->host, c->dane, c->ndane) < 0) {
		cerr(c, "DANE setup failed: %s", tls_last_error());
		return -1;
	}
	uint64_t deadline = ev_now_ms() + c->reply_timeout_ms;
	for (;;) {
		int h = tls_handshake(c->tls);
		if (h == 1)
			return 0;
		if (h == -1) {
			cerr(c, "TLS handshake failed: %s", tls_last_error());
			return -1;
		}
		if (ev_wait_fd(c->fd, h == TLS_WANT_READ ? POLLIN : POLLOUT, deadline) <= 0) {
			cerr(c, "TLS handshake timed out");
			return -1;
		}
	}
}

ssize_t smtpc_read_raw(struct smtpc *c, char *p, size_t n)
{
	return io_read(c, p, n, ev_now_ms() + c->reply_timeout_ms);
}

void smtpc_quit(struct smtpc *c)
{
	if (c->fd < 0)
		return;
	unsigned saved = c->reply_timeout_ms;
	c->reply_timeout_ms = saved < 2000 ? saved : 2000;
	struct smtpc_reply r;
	if (smtpc_sendf(c, "QUIT\r\n") == 0)
		smtpc_read_reply(c, &r);
	c->reply_timeout_ms = saved;
	smtpc_close(c);
}

void smtpc_close(struct smtpc *c)
{
	if (c->tls) {
		tls_shutdown(c->tls);
		tls_session_free(&c->tls);
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->inlen = 0;
}
