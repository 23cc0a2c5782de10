/* conn.h - a non-blocking connection with bounded input/output buffers and optional TLS.
 *
 * The owner gets one callback, conn->on_event, whenever something may have changed: new input in
 * conn->in, output drained, TLS handshake finished, peer closed (conn->eof) or error (conn->failed).
 * The owner consumes conn->in, appends replies with conn_write, and calls conn_flush.
 * Input is read only while conn->in has room and the owner has not paused reading.
 */
#ifndef POSTINO_CONN_H
#define POSTINO_CONN_H

#include <stddef.h>

#include "buf.h"
#include "ev.h"

struct tls_ctx;
struct tls_session;
struct conn;
struct conn_z;

typedef void conn_cb(struct conn *c);

enum conn_tls { CONN_PLAIN, CONN_TLS_HANDSHAKE, CONN_TLS };
enum conn_hello { CONN_HELLO_NONE, CONN_HELLO_WAIT, CONN_HELLO_TLS, CONN_HELLO_PLAIN };

struct conn {
	int fd;
	struct ev_loop *loop;
	struct ev_io io;
	struct buf in, out;
	struct tls_session *tls;
	enum conn_tls tls_state;
	int eof;             /* peer closed its side */
	int failed;          /* I/O or TLS error; the owner should close */
	int read_paused;     /* owner does not want input now */
	int paused_ready;    /* input arrived while paused: stop watching for it until resumed */
	int resume_nofill;   /* the resume after a pause that saw no input skips the read */
	int tls_just_done;   /* set when the handshake completes, cleared by the owner */
	int want_tls_after_flush;
	int deferred;        /* deferred calls that still point at this conn: free only at 0 */
	int want_write;      /* the owner paused output at its high-water mark: call it again
			      * once the socket is writable, even if the buffer drained meanwhile */
	struct tls_ctx *tls_ctx;
	const char *alpn;    /* ALPN protocol TLS must agree on (tls_session_set_alpn), or NULL */
	struct conn_z *z;    /* DEFLATE both ways (IMAP COMPRESS), or NULL */
	int plaintext_peer;  /* implicit TLS expected, but the peer spoke (or waited) in plaintext */
	int tls_seen_byte;   /* the handshake has received its first byte */
	int hello;           /* enum conn_hello: what the client's first byte said */
	struct ev_timer hs_timer;
	conn_cb *on_event;
	void *owner;
};

/* Take over a connected, non-blocking socket. in_max/out_max bound the buffers. 0 ok, -1 error. */
int conn_init(struct conn *c, struct ev_loop *loop, int fd, size_t in_max, size_t out_max,
	      conn_cb *on_event, void *owner);
/* Stop watching, shut TLS down, close the socket, free buffers. */
void conn_close(struct conn *c);
/* Queue bytes for output. -1 if the output buffer is full (the owner closes the session). */
int conn_write(struct conn *c, const void *p, size_t n);
/* Try to send queued output now; keeps EV_WRITE interest while some remains. */
void conn_flush(struct conn *c);
/* Start TLS now (implicit TLS) or once queued output has been sent (STARTTLS). Any input already
 * buffered is discarded, so commands pipelined behind STARTTLS are never executed. 0 / -1. */
int conn_start_tls(struct conn *c, struct tls_ctx *ctx);
/* On an implicit-TLS port: if the peer's first byte is not a TLS handshake, or it sends nothing
 * for wait_ms (a plaintext client waiting for a greeting), set plaintext_peer and call the owner,
 * which can then say in one plaintext line which setting to change (conn_write_plain). */
void conn_detect_plaintext(struct conn *c, unsigned wait_ms);
/* On a STARTTLS port: wait for the client's first byte before greeting, for 3 round trips of the
 * connection (TCP_INFO) + margin_ms, at most max_ms (also the wait when the RTT is unknown). A
 * byte already waiting is seen at once (the first epoll round). A TLS ClientHello sets hello = CONN_HELLO_TLS (the owner
 * starts TLS at once, as on an implicit-TLS port); anything else, or silence, sets
 * CONN_HELLO_PLAIN (the owner greets). */
void conn_wait_hello(struct conn *c, unsigned margin_ms, unsigned max_ms);
/* Write a line straight to the socket, bypassing TLS (only for conn_detect_plaintext). */
void conn_write_plain(struct conn *c, const char *line);

/* Pause or resume reading; resuming also processes input already buffered in TLS or conn->in. */
void conn_pause_read(struct conn *c, int paused);
/* Compress everything written from now on and decompress everything read (raw DEFLATE, RFC
 * 4978); bytes already in conn->in are compressed input. Small windows keep a compressed session
 * at about 60 KB. 0 ok, -1 out of memory. */
int conn_start_deflate(struct conn *c);

/* Bytes queued for output. */
size_t conn_out_pending(const struct conn *c);

#endif
