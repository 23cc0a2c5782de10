/* linereader.c - bounded line splitting with resync on overflow. */
#include "linereader.h"

#include <string.h>

/* Start a reader accepting lines of at most max octets. */
void linereader_init(struct linereader *r, size_t max)
{
	r->max = max;
	r->skipping = 0;
	r->bare_lf = 0;
}

/* Find the next line in data[0..len); see the header for the three outcomes. */
enum rl linereader_next(struct linereader *r, const char *data, size_t len, const char **line_r,
			size_t *len_r, size_t *consumed_r)
{
	*consumed_r = 0;
	if (len == 0)
		return RL_MORE;   /* an idle connection may have no buffer at all (data NULL) */
	const char *lf = memchr(data, '\n', len);
	if (r->skipping) {
		if (lf == NULL) {
			*consumed_r = len;
			return RL_MORE;
		}
		r->skipping = 0;
		*consumed_r = (size_t)(lf - data) + 1;
		return RL_MORE;
	}
	if (lf == NULL) {
		/* CR is not part of the line body, so max+1 octets may still be a line + CR */
		if (len > r->max + 1) {
			r->skipping = 1;
			*consumed_r = len;
			return RL_TOOLONG;
		}
		return RL_MORE;
	}
	size_t n = (size_t)(lf - data);
	*consumed_r = n + 1;
	r->bare_lf = 1;
	if (n > 0 && data[n - 1] == '\r') {
		n--;
		r->bare_lf = 0;
	}
	if (n > r->max)
		return RL_TOOLONG;
	*line_r = data;
	*len_r = n;
	return RL_LINE;
}
