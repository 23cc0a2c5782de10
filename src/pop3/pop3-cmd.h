/* pop3-cmd.h - POP3 command lines and TOP's cut, as pure functions (no session, no I/O), so
 * the fuzz target (fuzz-pop3.c) and the unit test reach exactly what the server runs.
 */
#ifndef POSTINO_POP3_CMD_H
#define POSTINO_POP3_CMD_H

#include <stddef.h>
#include <stdint.h>

/* RFC 1939 3: a keyword and at most two arguments (TOP msg n), separated by single spaces;
 * we also accept runs of spaces. */
#define POP3_CMD_ARGS_MAX 2

enum pop3_cmd_result {
	POP3_CMD_OK,
	POP3_CMD_EMPTY,      /* no keyword */
	POP3_CMD_TOO_MANY,   /* a third argument: verb and the first two are still filled in */
};

struct pop3_cmd {
	char *verb;                           /* NUL-terminated inside the line */
	char *arg[POP3_CMD_ARGS_MAX];         /* NULL when absent */
};

/* Split line (modified in place: spaces become NULs) into a keyword and arguments. */
enum pop3_cmd_result pop3_cmd_parse(char *line, struct pop3_cmd *c);

/* The argument of "PASS <password>": everything after "PASS " (the password may hold spaces),
 * or NULL if the line is not a PASS command with an argument. */
const char *pop3_cmd_pass_arg(const char *line);

/* A message number or line count: decimal digits only, at most max. 0 ok, -1 invalid. */
int pop3_cmd_number(const char *arg, uint64_t max, uint64_t *n_r);

/* TOP's cut of a message: the header, the blank line, then `lines` body lines (RFC 1939 7). */
struct pop3_top {
	uint64_t lines;      /* body lines wanted */
	uint64_t seen;       /* body lines passed */
	int in_body;
	int line_empty;      /* nothing but CR so far on the current line */
	int done;            /* the cut is reached: pass nothing more */
};

void pop3_top_init(struct pop3_top *t, uint64_t lines);
/* How many of the n octets at p belong to the cut (all until it ends; then t->done is set). */
size_t pop3_top_take(struct pop3_top *t, const char *p, size_t n);

#endif
