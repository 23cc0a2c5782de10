/* wire.h - a stored message as POP3 sends it: CRLF line ends and dot-stuffing (RFC 1939 3).
 *
 * RETR/TOP send wire_transform's output: a bare LF becomes CRLF, a line starting with '.' gets
 * one more '.', and a last line without LF is ended with CRLF. The size LIST, STAT and RETR's +OK
 * report (wire_size_fd) is the same message without the stuffing, the octets a client keeps
 * after undoing it ("exact size", RFC 1939 5), as Dovecot reports it. The final ".CRLF" is in
 * neither.
 */
#ifndef POSTINO_WIRE_H
#define POSTINO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct wire_state {
	int at_line_start;   /* the next octet starts a line */
	int prev_cr;         /* the previous octet was CR */
	uint64_t lines_after_header;   /* body lines passed (for TOP) */
	int in_body;
};

void wire_init(struct wire_state *w);
/* Transform n octets into out. Returns 0, -1 if out is full (nothing partial is written). */
int wire_transform(struct wire_state *w, const char *in, size_t n, struct buf *out);
/* The end of the message: CRLF if the last line had no LF. */
int wire_finish(struct wire_state *w, struct buf *out);
/* Octets of the whole file with CRLF line ends and a CRLF after a last line without one, not
 * counting dot-stuffing (read with pread from offset 0), or -1 on a read error. */
int64_t wire_size_fd(int fd);
/* wire_size_fd of the n octets at p. */
int64_t wire_size_mem(const char *p, size_t n);

#endif
