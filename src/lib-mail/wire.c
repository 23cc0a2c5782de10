/* wire.c - CRLF and dot-stuffing for POP3 output, and the size LIST reports. */
#include "wire.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* Start at the beginning of a message. */
void wire_init(struct wire_state *w)
{
	memset(w, 0, sizeof(*w));
	w->at_line_start = 1;
}

/* Transform one chunk; see the header. */
int wire_transform(struct wire_state *w, const char *in, size_t n, struct buf *out)
{
	if (n > SIZE_MAX / 2 || buf_reserve(out, n * 2) < 0)   /* at most one added octet each */
		return -1;
	char *o = out->data + out->len;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (w->at_line_start && c == '.')
			*o++ = '.';
		if (c == '\n' && !w->prev_cr)
			*o++ = '\r';
		*o++ = c;
		w->prev_cr = c == '\r';
		w->at_line_start = c == '\n';
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return 0;
}

/* End the last line if it had no LF. */
int wire_finish(struct wire_state *w, struct buf *out)
{
	if (w->at_line_start)
		return 0;
	w->at_line_start = 1;
	return buf_append(out, w->prev_cr ? "\n" : "\r\n", w->prev_cr ? 1 : 2);
}

/* Add n octets to a running POP3 size (wire_size_fd, wire_size_mem): each octet, plus one for
 * every LF without a CR before it. Goes from LF to LF with memchr (mail is CRLF: the common case
 * costs one memchr per line). */
static void wire_count(const char *p, size_t n, int64_t *size, int *at_start, int *prev_cr)
{
	if (n == 0)
		return;
	*size += (int64_t)n;
	for (const char *lf = memchr(p, '\n', n); lf != NULL;
	     lf = memchr(lf + 1, '\n', n - (size_t)(lf + 1 - p)))
		*size += lf == p ? !*prev_cr : lf[-1] != '\r';
	*prev_cr = p[n - 1] == '\r';
	*at_start = p[n - 1] == '\n';
}

/* Count the POP3 size of a file: CRLF line ends, no dot-stuffing. */
int64_t wire_size_fd(int fd)
{
	char buf[65536];
	off_t off = 0;
	int64_t size = 0;
	int at_start = 1, prev_cr = 0;   /* at_start: only for the missing last LF */
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		wire_count(buf, (size_t)n, &size, &at_start, &prev_cr);
		off += n;
	}
	if (!at_start)
		size += prev_cr ? 1 : 2;
	return size;
}

/* The same count of a message in memory. */
int64_t wire_size_mem(const char *p, size_t n)
{
	int64_t size = 0;
	int at_start = 1, prev_cr = 0;
	wire_count(p, n, &size, &at_start, &prev_cr);
	if (!at_start)
		size += prev_cr ? 1 : 2;
	return size;
}
