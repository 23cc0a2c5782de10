/* conn.c - non-blocking socket I/O with a TLS hook. */
#include "conn.h"
#include "log.h"
#include "tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONN_Z_RAW_MAX 65536     /* compressed input waiting to be inflated */
/* A TLS client sends its ClientHello right behind the ACK that completes the TCP handshake, so it
 * reaches us about when the connection does; the wait for it covers network jitter (a few round
 * trips) plus the client's own delay between connect() and the ClientHello (the margin). */
#define CONN_HELLO_RTTS 3

struct conn_z {
	z_stream in, out;
	struct buf raw;          /* compressed bytes read, not yet inflated */
	int out_dirty;           /* deflated without a sync flush since */
};

static void conn_update_events(struct conn *c);
static void conn_after_event(struct conn *c);
static void conn_resume(void *arg);

/* Inflate buffered compressed input into c->in while it has room. 1 if data came. */
static int conn_inflate(struct conn *c)
{
	struct conn_z *z = c->z;
	int got = 0;
	while (z->raw.len > 0 && c->in.len < c->in.max && !c->failed) {
		size_t room = c->in.max - c->in.len;
		if (buf_reserve(&c->in, room) < 0) {
			c->failed = 1;
			break;
		}
		z->in.next_in = (unsigned char *)z->raw.data;
		z->in.avail_in = (unsigned)z->raw.len;
		z->in.next_out = (unsigned char *)c->in.data + c->in.len;
		z->in.avail_out = (unsigned)room;
		int r = inflate(&z->in, Z_SYNC_FLUSH);
		size_t produced = room - z->in.avail_out;
		buf_consume(&z->raw, z->raw.len - z->in.avail_in);
		c->in.len += produced;
		c->in.data[c->in.len] = '\0';
		got |= produced > 0;
		if (r != Z_OK && r != Z_BUF_ERROR) {
			c->failed = 1;   /* not a DEFLATE stream: the session cannot continue */
			break;
		}
		if (produced == 0)
			break;
	}
	return got;
}

/* Read what the socket (or TLS layer) has, up to the room left in c->in. Returns 1 if data came. */
static int conn_fill(struct conn *c)
{
	int got = 0;
	if (c->z)
		got |= conn_inflate(c);
	while (!c->read_paused && !c->eof && !c->failed) {
		struct buf *dst = c->z ? &c->z->raw : &c->in;
		size_t room = dst->max - dst->len;
		if (room == 0 || (c->z && c->in.len >= c->in.max))
			break;
		if (room > 16384)
			room = 16384;
		if (buf_reserve(dst, room) < 0) {
			c->failed = 1;
			break;
		}
		ssize_t n;
		int drained = 0;
		if (c->tls) {
			n = tls_read(c->tls, dst->data + dst->len, room);
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
				break;
			/* the same once OpenSSL, which reads ahead, holds nothing more: what the
			 * socket may still have, epoll reports */
			drained = n > 0 && tls_pending(c->tls) == 0;
		} else {
			n = read(c->fd, dst->data + dst->len, room);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0 && errno == EINTR)
				continue;
			/* less than asked for: the socket is empty for now, and epoll (level-
			 * triggered) reports what comes next; no read just to see EAGAIN */
			drained = n > 0 && (size_t)n < room;
		}
		if (n == 0) {
			c->eof = 1;
			break;
		}
		if (n < 0) {
			c->failed = 1;
			break;
		}
		dst->len += (size_t)n;
		dst->data[dst->len] = '\0';
		if (c->z)
			got |= conn_inflate(c);
		else
			got = 1;
		if (drained)
			break;
	}
	return got;
}

/* Deflate n bytes (or, with flush, end the block) onto c->out. -1 if out is full. */
static int conn_deflate(struct conn *c, const void *p, size_t n, int flush)
{
	struct conn_z *z = c->z;
	z->out.next_in = (unsigned char *)(uintptr_t)p;
	z->out.avail_in = (unsigned)n;
	do {
		if (buf_reserve(&c->out, 16384) < 0)
			return -1;
		z->out.next_out = (unsigned char *)c->out.data + c->out.len;
		z->out.avail_out = 16384;
		int r = deflate(&z->out, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		c->out.len += 16384 - z->out.avail_out;
		c->out.data[c->out.len] = '\0';
		if (r == Z_STREAM_ERROR)
			return -1;
	} while (z->out.avail_in > 0 || z->out.avail_out == 0);
	z->out_dirty = !flush;
	return 0;
}

/* Turn DEFLATE on; see the header. */
int conn_start_deflate(struct conn *c)
{
	struct conn_z *z = calloc(1, sizeof(*z));
	if (z == NULL)
		return -1;
	/* raw DEFLATE (RFC 4978); our side uses a 2 KB window and little memory, the peer's
	 * stream may use any window up to 32 KB */
	if (deflateInit2(&z->out, 6, Z_DEFLATED, -11, 3, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(z);
		return -1;
	}
	if (inflateInit2(&z->in, -15) != Z_OK) {
		deflateEnd(&z->out);
		free(z);
		return -1;
	}
	buf_init(&z->raw, CONN_Z_RAW_MAX);
	/* what the peer pipelined after the command is already compressed */
	if (c->in.len > 0 && buf_append(&z->raw, c->in.data, c->in.len) < 0) {
		buf_free(&z->raw);
		inflateEnd(&z->in);
		deflateEnd(&z->out);
		free(z);
		return -1;
	}
	buf_reset(&c->in);
	c->z = z;
	return 0;
}

/* A server TLS session on the socket, agreeing only on the owner's ALPN protocol if it set one. */
static struct tls_session *conn_tls_new(struct conn *c)
{
	struct tls_session *t = tls_session_new(c->tls_ctx, c->fd);
	if (t != NULL && c->alpn != NULL)
		tls_session_set_alpn(t, c->alpn);
	return t;
}

/* Release compression state. */
static void conn_z_free(struct conn *c)
{
	if (c->z == NULL)
		return;
	inflateEnd(&c->z->in);
	deflateEnd(&c->z->out);
	buf_free(&c->z->raw);
	free(c->z);
	c->z = NULL;
}

/* Send as much queued output as the socket takes. */
void conn_flush(struct conn *c)
{
	if (c->z && c->z->out_dirty && conn_deflate(c, NULL, 0, 1) < 0)
		c->failed = 1;
	while (c->out.len > 0 && !c->failed && c->tls_state != CONN_TLS_HANDSHAKE) {
		ssize_t n;
		if (c->tls) {
			n = tls_write(c->tls, c->out.data, c->out.len);
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE)
				break;
		} else {
			n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0) {
			c->failed = 1;
			break;
		}
		buf_consume(&c->out, (size_t)n);
	}
	if (c->out.len == 0 && c->want_tls_after_flush && !c->failed) {
		c->want_tls_after_flush = 0;
		c->tls = conn_tls_new(c);
		if (c->tls == NULL)
			c->failed = 1;
		else
			c->tls_state = CONN_TLS_HANDSHAKE;
	}
	conn_update_events(c);
}

/* Keep epoll interest in line with what we are waiting for. */
static void conn_update_events(struct conn *c)
{
	if (c->fd < 0)
		return;
	unsigned ev = 0;
	if (c->tls_state == CONN_TLS_HANDSHAKE)
		ev = EV_READ;   /* the handshake step below adds EV_WRITE when it must */
	else if (c->in.len < c->in.max && !c->eof && (!c->read_paused ||
		 ((c->io.events & EV_READ) && !c->paused_ready)))
		ev |= EV_READ;   /* a pause keeps the interest until input comes: most pauses
				  * (a delivery, a pool job) end before the client says more, and
				  * dropping and restoring it cost two epoll_ctl calls each time */
	if (c->out.len > 0 || c->want_write)
		ev |= EV_WRITE;
	ev_io_mod(c->loop, &c->io, ev);
}

/* Advance the TLS handshake; returns 1 when it completed now. */
static int conn_handshake(struct conn *c)
{
	int r = tls_handshake(c->tls);
	if (r == 1) {
		c->tls_state = CONN_TLS;
		c->tls_just_done = 1;
		return 1;
	}
	if (r == TLS_WANT_WRITE) {
		ev_io_mod(c->loop, &c->io, EV_READ | EV_WRITE);
		return 0;
	}
	if (r == TLS_WANT_READ) {
		ev_io_mod(c->loop, &c->io, EV_READ);
		return 0;
	}
	c->failed = 1;
	return 0;
}

/* The epoll callback: do I/O, then tell the owner. */
static void conn_on_io(struct ev_io *io, unsigned events)
{
	struct conn *c = io->arg;
	if ((events & EV_ERROR) && c->read_paused && !c->failed) {
		/* a reset or hang-up while the owner waits for a job: epoll reports it until the fd
		 * is closed, so stop watching and let the owner end the session now */
		c->failed = 1;
		ev_io_del(c->loop, &c->io);
		c->on_event(c);
		return;
	}
	if (c->read_paused && events == EV_READ && c->tls_state != CONN_TLS_HANDSHAKE &&
	    c->hello != CONN_HELLO_WAIT) {
		c->paused_ready = 1;   /* the owner is busy: now stop watching for input */
		conn_update_events(c);
		return;
	}
	if (c->hello == CONN_HELLO_WAIT) {
		unsigned char b;
		ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		ev_timer_cancel(c->loop, &c->hs_timer);
		c->hello = n == 1 && b == 0x16 ? CONN_HELLO_TLS : CONN_HELLO_PLAIN;
		c->on_event(c);
		if (c->fd >= 0)
			conn_update_events(c);
		return;
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE && !c->tls_seen_byte && c->hs_timer.heap_idx) {
		unsigned char b;
		ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
		if (n == 1) {
			c->tls_seen_byte = 1;
			ev_timer_cancel(c->loop, &c->hs_timer);
			if (b != 0x16) {   /* not a TLS handshake record: a plaintext client */
				c->plaintext_peer = 1;
				c->on_event(c);
				return;
			}
		}
	}
	if (c->tls_state == CONN_TLS_HANDSHAKE) {
		if (!conn_handshake(c)) {
			if (c->failed)
				c->on_event(c);
			return;
		}
	}
	if (c->out.len > 0)
		conn_flush(c);
	conn_fill(c);
	c->want_write = 0;   /* the owner sets it again if it is still waiting */
	c->on_event(c);
	conn_after_event(c);
}

/* Take over fd. */
int conn_init(struct conn *c, struct ev_loop *loop, int fd, size_t in_max, size_t out_max,
	      conn_cb *on_event, void *owner)
{
	c->fd = fd;
	c->loop = loop;
	buf_init(&c->in, in_max);
	buf_init(&c->out, out_max);
	c->tls = NULL;
	c->tls_state = CONN_PLAIN;
	c->deferred = 0;
	c->want_write = 0;
	c->eof = c->failed = c->read_paused = c->paused_ready = c->resume_nofill = 0;
	c->tls_just_done = c->want_tls_after_flush = 0;
	c->tls_ctx = NULL;
	c->alpn = NULL;
	c->z = NULL;
	c->plaintext_peer = c->tls_seen_byte = 0;
	c->hello = CONN_HELLO_NONE;
	memset(&c->hs_timer, 0, sizeof(c->hs_timer));
	c->on_event = on_event;
	c->owner = owner;
	return ev_io_add(loop, &c->io, fd, EV_READ, conn_on_io, c);
}

/* Nothing arrived on an implicit-TLS port: the client waits for a plaintext greeting. */
static void conn_hs_timeout(struct ev_timer *t)
{
	struct conn *c = t->arg;
	if (c->tls_seen_byte || c->fd < 0 || c->tls_state != CONN_TLS_HANDSHAKE)
		return;
	c->plaintext_peer = 1;
	c->on_event(c);
}

/* No first byte in time on a STARTTLS port: a plaintext client waiting for the greeting. */
static void conn_hello_timeout(struct ev_timer *t)
{
	struct conn *c = t->arg;
	if (c->fd < 0 || c->hello != CONN_HELLO_WAIT)
		return;
	c->hello = CONN_HELLO_PLAIN;
	c->on_event(c);
	if (c->fd >= 0)
		conn_update_events(c);
}

/* How long to wait for a ClientHello: a few of the connection's round trips (the smoothed RTT the
 * kernel measured on the handshake) plus a margin, at most max_ms; max_ms without a measurement. */
static unsigned conn_hello_wait_ms(int fd, unsigned margin_ms, unsigned max_ms)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_rtt == 0)
		return max_ms;   /* not TCP, or no sample (a retransmitted SYN-ACK, SYN cookies) */
	uint64_t ms = ((uint64_t)ti.tcpi_rtt * CONN_HELLO_RTTS + 999) / 1000 + margin_ms;
	return ms < max_ms ? (unsigned)ms : max_ms;
}

/* Wait for the client's first byte before greeting, as long as its round-trip time calls for. */
void conn_wait_hello(struct conn *c, unsigned margin_ms, unsigned max_ms)
{
	c->hello = CONN_HELLO_WAIT;
	ev_timer_set(c->loop, &c->hs_timer, conn_hello_wait_ms(c->fd, margin_ms, max_ms),
		     conn_hello_timeout, c);
}

/* Watch the start of an implicit-TLS connection for plaintext clients. */
void conn_detect_plaintext(struct conn *c, unsigned wait_ms)
{
	ev_timer_set(c->loop, &c->hs_timer, wait_ms, conn_hs_timeout, c);
}

/* One line in clear text, best effort, for a client that does not speak TLS. */
void conn_write_plain(struct conn *c, const char *line)
{
	ssize_t n = send(c->fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
}

/* Tear down. */
void conn_close(struct conn *c)
{
	ev_timer_cancel(c->loop, &c->hs_timer);
	if (c->fd >= 0) {
		ev_io_del(c->loop, &c->io);
		if (c->tls && c->tls_state == CONN_TLS && !c->failed)
			tls_shutdown(c->tls);
		close(c->fd);
		c->fd = -1;
	}
	tls_session_free(&c->tls);
	conn_z_free(c);
	buf_free(&c->in);
	buf_free(&c->out);
}

/* Queue output. */
int conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->z)
		return conn_deflate(c, p, n, 0);
	return buf_append(&c->out, p, n);
}

/* Begin TLS; see the header. */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx)
{
	buf_reset(&c->in);          /* plaintext pipelined behind STARTTLS is discarded */
	c->tls_ctx = ctx;
	if (c->out.len > 0) {
		c->want_tls_after_flush = 1;
		conn_flush(c);
		return c->failed ? -1 : 0;
	}
	c->tls = conn_tls_new(c);
	if (c->tls == NULL)
		return -1;
	c->tls_state = CONN_TLS_HANDSHAKE;
	conn_update_events(c);
	return 0;
}

/* Resume processing from a deferred call. */
static void conn_resume(void *arg)
{
	struct conn *c = arg;
	c->deferred--;
	if (c->fd < 0 || c->read_paused)
		return;
	if (!c->resume_nofill)
		conn_fill(c);
	c->resume_nofill = 0;
	c->on_event(c);
	conn_after_event(c);
}

/* After the owner ran: re-arm events, and come back for input TLS has buffered but epoll cannot
 * see. */
static void conn_after_event(struct conn *c)
{
	if (c->fd < 0)
		return;
	/* an idle connection keeps no buffers: thousands of idle IMAP clients cost little */
	if (c->in.len == 0 && c->in.cap > 4096)
		buf_free(&c->in);
	if (c->out.len == 0 && c->out.cap > 4096)
		buf_free(&c->out);
	conn_update_events(c);
	int pending = (c->tls && c->tls_state == CONN_TLS && tls_pending(c->tls) > 0) ||
		      (c->z && c->z->raw.len > 0);
	if (pending && !c->read_paused && !c->eof && !c->failed && c->in.len < c->in.max &&
	    ev_defer(c->loop, conn_resume, c) == 0)
		c->deferred++;
}

/* Pause/resume input. */
void conn_pause_read(struct conn *c, int paused)
{
	if (c->read_paused == paused)
		return;
	/* epoll watched for input all through a pause that ends without any: the socket is empty
	 * (what comes now epoll reports), so the resume reads nothing, it only runs the owner over
	 * what it had buffered already */
	c->resume_nofill = !paused && !c->paused_ready && (c->io.events & EV_READ);
	c->read_paused = paused;
	c->paused_ready = 0;
	if (paused)
		return;   /* the interest stays as it is (above); the flush after the owner's
			   * turn sets it, and changing it here first only cost epoll_ctl calls */
	if (ev_defer(c->loop, conn_resume, c) == 0)
		c->deferred++;
	conn_update_events(c);
}

/* Queued output bytes. */
size_t conn_out_pending(const struct conn *c)
{
	return c->out.len;
}
