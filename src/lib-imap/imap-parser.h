/* imap-parser.h - incremental IMAP command parser.
 *
 * Reads "tag SP name [SP args] CRLF" commands as they arrive (RFC 3501 section 9, RFC 9051),
 * with synchronizing literals {n}, non-synchronizing literals {n+} (RFC 7888 LITERAL+ and
 * LITERAL-) and literal8 ~{n} / ~{n+} (RFC 3516). The parser keeps its own copy of everything
 * it has consumed, so the caller may drop consumed bytes from its input buffer at once.
 *
 * Every peer-controlled quantity is bounded by struct imap_parser_limits. On any syntax error or
 * exceeded limit the parser skips to the end of the offending command line (discarding the data
 * of any non-synchronizing literal the line announces, so the session stays in step) and only
 * then reports IMAP_PARSE_ERROR; max_skip and max_discard bound how much it reads that way, past
 * them the error is fatal (the caller closes). Nothing recurses: nesting depth costs heap, not
 * stack.
 */
#ifndef POSTINO_IMAP_PARSER_H
#define POSTINO_IMAP_PARSER_H

#include <stddef.h>

/* Defaults used for a NULL limits pointer or a zero field. */
#define IMAP_PARSER_DEFAULT_MAX_LINE	 65536	       /* RFC 7162 section 4: at least 8192 */
#define IMAP_PARSER_DEFAULT_MAX_LITERAL	 (1024 * 1024) /* daemons raise this for APPEND */
#define IMAP_PARSER_DEFAULT_MAX_DEPTH	 32	       /* real commands nest a handful deep */
#define IMAP_PARSER_DEFAULT_MAX_ARGS	 4096	       /* FETCH/SEARCH/STORE never need more */

enum imap_arg_type {
	IMAP_ARG_ATOM,
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,
	IMAP_ARG_LIST,
	IMAP_ARG_NIL,
};

/* One parsed argument. str is a NUL-terminated copy of the bytes (only a literal8 may hold NULs
 * before str[len], so trust len). For an atom str is as sent (case kept); for NIL it is the atom
 * as sent ("nil", "NIL", ...); for a list it is "" and the elements are list[0..nlist) (list is
 * NULL for the empty list "()"). literal8 is 1 for ~{n} literals only. */
struct imap_arg {
	enum imap_arg_type type;
	const char *str;
	size_t len;
	struct imap_arg *list;
	size_t nlist;
	int literal8;
};

/* Limits on one command. A zero field selects its IMAP_PARSER_DEFAULT_* value. */
struct imap_parser_limits {
	size_t max_line;	  /* non-literal bytes of one command: all line parts, CRLFs */
	size_t max_literal;	  /* bytes of any one literal */
	unsigned max_depth;	  /* nesting of parenthesized lists */
	size_t max_args;	  /* arguments of one command; lists and their elements all count */
	size_t max_literal_total; /* all literal bytes of one command; 0 means max_literal */
	size_t max_literal_nonsync; /* one {n+} literal; 0 means max_literal (LITERAL+), set 4096
				       when advertising LITERAL- (RFC 7888 section 4) */
	size_t max_skip;	  /* bytes of a failed (e.g. overlong) line the parser reads and drops
				     looking for its end; past that the error is reported at once
				     and is fatal. 0 means no limit */
	size_t max_discard;	  /* largest too-big {n+} literal read and dropped to stay in step;
				     a bigger one is a fatal error at once (RFC 7888 section 4 lets
				     the server close). 0 means no limit */
};

enum imap_parse_result {
	/* Consumed everything it was given and needs more bytes. */
	IMAP_PARSE_MORE,
	/* A complete command: see imap_parser_tag(), _name() (upper-cased) and _args(). */
	IMAP_PARSE_COMMAND,
	/* A synchronizing literal {n} / ~{n} was announced and is within limits: the caller must
	 * send "+ OK\r\n" (or similar) and then feed more. Reported once per literal. */
	IMAP_PARSE_CONTINUE,
	/* Syntax error or limit exceeded. imap_parser_error() gives a message for the BAD reply,
	 * imap_parser_tag() the tag if one was read (NULL: reply with an untagged BAD). The parser
	 * has already skipped the rest of the offending line, and for a non-synchronizing literal
	 * on that line (also one that was too big) its data as well. A too-big synchronizing
	 * literal is refused at once without asking for continuation (RFC 7888 section 4: the
	 * client then sends nothing more of this command).
	 * Exception: when max_skip or max_discard would be exceeded, or a {n+} size overflows,
	 * the error is reported at once and imap_parser_fatal() is 1: the input is out of step
	 * and the caller must close the connection. */
	IMAP_PARSE_ERROR,
};

struct imap_parser;

/* New parser; lim may be NULL for the defaults. NULL only when out of memory. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim);
/* Free the parser and everything it returned; accepts NULL and sets *p to NULL. */
void imap_parser_free(struct imap_parser **p);

/* Feed data[0..len). *consumed_r is how many bytes were used: all of them for MORE, up to and
 * including the terminating LF for COMMAND, CONTINUE and ERROR (the caller drops them and feeds
 * the rest, e.g. the next pipelined command, in a later call). The tag, name, args and error of
 * the last COMMAND or ERROR stay valid until the next feed call that returns COMMAND or ERROR,
 * or until imap_parser_reset() / imap_parser_free(). */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
					size_t *consumed_r);

/* 1 if nothing of the next command has been fed yet (the caller's next input byte begins a
 * command line, so it may look at that line before feeding it). */
int imap_parser_at_start(const struct imap_parser *p);
/* Tag of the last COMMAND, or of the last ERROR if its tag was read completely (else NULL). */
const char *imap_parser_tag(const struct imap_parser *p);
/* Between commands: free what the last command's arguments held (the caller is done with
 * them); the parser works on as before. */
void imap_parser_release(struct imap_parser *p);
/* Upper-cased command name of the last COMMAND, e.g. "UID" (args then continue with "FETCH");
 * after an ERROR it is the name if one was read, else NULL. */
const char *imap_parser_name(const struct imap_parser *p);
/* Top-level arguments of the last COMMAND (NULL with *n_r = 0 when none, and after an ERROR). */
const struct imap_arg *imap_parser_args(const struct imap_parser *p, size_t *n_r);
/* Human-readable reason for the last ERROR (static text; may begin with a response code such as
 * "[TOOBIG]"). NULL if there was none. */
const char *imap_parser_error(const struct imap_parser *p);
/* 1 if the last ERROR left the input out of step (see IMAP_PARSE_ERROR): close the connection. */
int imap_parser_fatal(const struct imap_parser *p);
/* Replace the limits (e.g. larger ones after login). Call only between commands (after a
 * COMMAND or ERROR was handled, before feeding more); zero fields select defaults as in
 * imap_parser_new(). */
void imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *lim);
/* Size of the literal announced by the last CONTINUE. */
size_t imap_parser_literal_size(const struct imap_parser *p);
/* Forget all input and results (e.g. after STARTTLS, where buffered plaintext must not leak
 * into the TLS session). Limits are kept. */
void imap_parser_reset(struct imap_parser *p);

/* 1 if a is an astring: atom, NIL atom, quoted string or literal (RFC 3501 "astring"). */
int imap_arg_is_astring(const struct imap_arg *a);
/* 1 if a is a string proper: quoted string or literal (RFC 3501 "string"). */
int imap_arg_is_string(const struct imap_arg *a);
/* 1 if a is an atom (not NIL) equal to word, ignoring ASCII case. */
int imap_arg_atom_equals(const struct imap_arg *a, const char *word);

#endif
