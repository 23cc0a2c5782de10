/* buf.h - bounded byte buffers.
 *
 * A buf grows on demand up to a hard maximum; a write that would exceed it is refused (-1) rather
 * than aborting, so one greedy peer cannot take a daemon down. data[len] is always NUL once the
 * buffer has storage. Callers never keep a pointer into a buf across a call that may grow it.
 */
#ifndef POSTINO_BUF_H
#define POSTINO_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len, cap, max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* 0 ok, -1 would exceed max or out of memory. */
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_appendstr(struct buf *b, const char *s);
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);

#endif
