/* linereader.h - find protocol lines in an input buffer, bounded, with resync on overflow.
 *
 * The reader does not own the bytes: the caller passes its input buffer and consumes
 * *consumed_r bytes after each call. Three outcomes:
 *   RL_LINE     a complete line; *line_r / *len_r exclude the terminator (LF, and one CR before it).
 *               The view is valid until the caller consumes the bytes.
 *   RL_MORE     no complete line yet; consume *consumed_r (non-zero only while skipping).
 *   RL_TOOLONG  the line exceeds max; reported once per overlong line. The caller replies with a
 *               protocol error; the reader then drops bytes up to and including the next LF, so the
 *               session stays in step.
 */
#ifndef POSTINO_LINEREADER_H
#define POSTINO_LINEREADER_H

#include <stddef.h>

enum rl { RL_LINE, RL_MORE, RL_TOOLONG };

struct linereader {
	size_t max;       /* longest accepted line, terminator excluded */
	int skipping;     /* dropping the rest of an overlong line */
	int bare_lf;      /* set on RL_LINE when the line ended in LF without CR */
};

void linereader_init(struct linereader *r, size_t max);
enum rl linereader_next(struct linereader *r, const char *data, size_t len, const char **line_r,
			size_t *len_r, size_t *consumed_r);

#endif
