/* buf.c - bounded byte buffers. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Start an empty buffer that may hold at most max bytes. */
void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

/* Release the storage; the buf may be reused after buf_init. */
void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Make room for `more` bytes plus the terminating NUL. */
int buf_reserve(struct buf *b, size_t more)
{
	if (b->len > b->max || more > b->max - b->len)
		return -1;
	size_t want = b->len + more + 1;
	if (want <= b->cap)
		return 0;
	size_t ncap = b->cap > want / 2 ? b->cap * 2 : want;
	if (ncap < 256)
		ncap = 256;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	if (ncap < want)
		return -1;
	char *p = realloc(b->data, ncap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = ncap;
	b->data[b->len] = '\0';
	return 0;
}

/* Append n bytes. */
int buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* Append a NUL-terminated string. */
int buf_appendstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

/* Append printf-formatted text. */
int buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Drop the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->data, b->data + n, b->len - n);
		b->len -= n;
	}
	if (b->data)
		b->data[b->len] = '\0';
}

/* Empty the buffer, keeping its storage. */
void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}
