/* pop3-cmd.c - POP3 command line splitting, numbers, and TOP's cut. */
#include "pop3-cmd.h"

#include <string.h>
#include <strings.h>

#include "num.h"

/* Split line into a keyword and arguments; see the header. */
enum pop3_cmd_result pop3_cmd_parse(char *line, struct pop3_cmd *c)
{
	char *save = NULL;
	memset(c, 0, sizeof(*c));
	c->verb = strtok_r(line, " ", &save);
	if (c->verb == NULL)
		return POP3_CMD_EMPTY;
	for (int i = 0; i < POP3_CMD_ARGS_MAX; i++)
		c->arg[i] = strtok_r(NULL, " ", &save);
	return strtok_r(NULL, " ", &save) != NULL ? POP3_CMD_TOO_MANY : POP3_CMD_OK;
}

/* The password of a PASS line; see the header. */
const char *pop3_cmd_pass_arg(const char *line)
{
	return strncasecmp(line, "PASS ", 5) == 0 ? line + 5 : NULL;
}

/* Parse a message number or line count; see the header. */
int pop3_cmd_number(const char *arg, uint64_t max, uint64_t *n_r)
{
	if (arg == NULL)
		return -1;
	return num_parse_u64(arg, strlen(arg), max, n_r) < 0 ? -1 : 0;
}

/* Start a cut of `lines` body lines. */
void pop3_top_init(struct pop3_top *t, uint64_t lines)
{
	memset(t, 0, sizeof(*t));
	t->lines = lines;
	t->line_empty = 1;
}

/* Count what belongs to the cut; see the header. */
size_t pop3_top_take(struct pop3_top *t, const char *p, size_t n)
{
	if (t->done)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n') {
			if (p[i] != '\r')
				t->line_empty = 0;
			continue;
		}
		/* end of a line */
		if (!t->in_body) {
			if (t->line_empty) {
				t->in_body = 1;
				if (t->lines == 0) {
					t->done = 1;
					return i + 1;
				}
			}
		} else if (++t->seen >= t->lines) {
			t->done = 1;
			return i + 1;
		}
		t->line_empty = 1;
	}
	return n;
}
