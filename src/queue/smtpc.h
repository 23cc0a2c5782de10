/* smtpc.h - the outbound SMTP client: reply parser, wire writer, one connection.
 *
 * A connection is driven by one delivery thread with blocking semantics over a non-blocking
 * socket: every wait is a poll() with a deadline, so a peer can never hold a thread longer than
 * the configured timeouts. Everything a peer sends is bounded: a reply line at most
 * SMTPC_LINE_MAX octets, a reply at most SMTPC_REPLY_LINES lines, the kept text at most
 * SMTPC_TEXT_MAX octets.
 */
#ifndef POSTINO_SMTPC_H
#define POSTINO_SMTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

struct tls_ctx;
struct tls_session;
struct tls_tlsa;

#define SMTPC_LINE_MAX 2048      /* RFC 5321 4.5.3.1.5 says 512; be lenient, stay bounded */
#define SMTPC_REPLY_LINES 100    /* an EHLO reply has ~20 lines; more is an attack */
#define SMTPC_TEXT_MAX 1024      /* reply text kept for logs and DSNs */

/* ---- reply parser (pure; unit-tested) ---- */
struct smtpc_reply {
	int code;                /* 0 until the first line */
	unsigned nlines;
	int done;
	char text[SMTPC_TEXT_MAX];   /* lines joined by "\n", code prefixes kept on the first */
	size_t tlen;
};

void smtpc_reply_init(struct smtpc_reply *r);
/* Feed one line (terminator removed). 1 the reply is complete, 0 more lines follow, -1 bad
 * reply (no 3-digit code, a code that changes between lines, too many lines). */
int smtpc_reply_line(struct smtpc_reply *r, const char *line, size_t len);

/* ---- wire writer (pure; unit-tested) ---- */
struct smtpc_wire {
	int at_line_start;
	int prev_cr;
	int skip_header;         /* dropping a leading "Return-Path:" line (our own trace) */
	int first;               /* still deciding whether the first line is Return-Path */
	char pfx[12];            /* the first octets, held until then */
	size_t pfxlen;
};

/* skip_return_path: drop a first line starting "Return-Path:" (RFC 5321 4.4: relays do not
 * add it, the final delivery does). */
void smtpc_wire_init(struct smtpc_wire *w, int skip_return_path);
/* Append n message octets to out as DATA bytes: every line end becomes CRLF (bare LF and bare
 * CR alike), a line starting with '.' gets another '.'. -1 if out is full. */
int smtpc_wire_feed(struct smtpc_wire *w, const char *in, size_t n, struct buf *out);
/* End of DATA: CRLF if the last line was unterminated, then ".CRLF". */
int smtpc_wire_end(struct smtpc_wire *w, struct buf *out);

/* ---- connection ---- */
struct smtpc {
	int fd;
	struct tls_session *tls;
	char in[SMTPC_LINE_MAX + 2];
	size_t inlen;
	unsigned reply_timeout_ms;
	char host[256];          /* peer name for logs and DSNs */
	char ip[64];
	/* EHLO keywords */
	int esmtp, pipelining, size_ext, eightbit, smtputf8, dsn, starttls, auth_plain, auth_login;
	uint64_t size_max;
	char err[SMTPC_TEXT_MAX + 64];   /* the last local error ("connection timed out") */
	const struct tls_tlsa *dane;     /* DANE records for the next TLS start (NULL: none) */
	size_t ndane;
};

/* TLS on the connected socket (implicit TLS, or after a 220 to STARTTLS), verify as
 * tls_client_session_new takes it. 0 ok, -1 (c->err set). */
int smtpc_tls_start(struct smtpc *c, struct tls_ctx *ctx, int verify);
/* Read what arrives (within the reply timeout): >0 octets, 0 closed, -1 error (c->err). */
ssize_t smtpc_read_raw(struct smtpc *c, char *p, size_t n);
/* Connect to ip:port within timeout_ms. 0 ok, -1 (c->err set). */
int smtpc_connect(struct smtpc *c, const char *ip, unsigned port, unsigned timeout_ms);
/* Read one complete reply. 0 ok (r filled), -1 timeout/closed/garbage (c->err set). */
int smtpc_read_reply(struct smtpc *c, struct smtpc_reply *r);
/* Send bytes (all of them, within the reply timeout). 0 / -1. */
int smtpc_send(struct smtpc *c, const void *p, size_t n);
int smtpc_sendf(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* EHLO (HELO if refused), recording extensions. 0 ok, -1 connection failure, else the reply
 * code of a refusal (r holds it). */
int smtpc_ehlo(struct smtpc *c, const char *helo, struct smtpc_reply *r);
/* STARTTLS and the handshake. 0 ok, -1 failed (connection unusable), or the refusal's code.
 * Bytes the server pushed behind its 220 are an attack (CVE-2011-0411 style): refused. */
int smtpc_starttls(struct smtpc *c, struct tls_ctx *ctx, int verify, struct smtpc_reply *r);
/* Polite QUIT (no wait beyond a short timeout), then close. */
void smtpc_quit(struct smtpc *c);
void smtpc_close(struct smtpc *c);

#endif
