/* imap-parser.c - incremental IMAP command parser (see imap-parser.h for the contract).
 *
 * A byte-at-a-time state machine; literal and discarded data are moved in bulk. Arguments are
 * collected in a stack of frames (one per open parenthesized list, frame 0 is the top level), so
 * nesting uses heap bounded by max_depth and never the C stack. Strings are copied into a
 * per-command store: small ones packed into chunks, large ones and literals in blocks of their
 * own. Two stores exist: the one being built and the one of the last reported result, so the
 * caller's view of a command survives while the next pipelined command is read.
 *
 * Resync: a small tracker watches every line byte for a trailing "{n+}" (or "~{n+}"). When a
 * line is being skipped after an error and ends that way, the client is about to send n literal
 * bytes without waiting, so the parser discards them and keeps skipping the command's next line
 * part. A synchronizing literal at the end of a bad line needs nothing: the client waits for a
 * continuation that never comes and reads the BAD instead.
 */
#include "imap-parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "utf8.h"

/* Strings up to this size are packed into shared chunks of PCMD_CHUNK bytes. */
#define PCMD_SMALL 256
#define PCMD_CHUNK 4096
/* First allocation for literal data; it then doubles up to the announced size. */
#define LITERAL_FIRST_ALLOC 4096

enum pstate {
	PS_TAG,
	PS_NAME,
	PS_ARG_START,
	PS_AFTER_ARG,
	PS_ATOM,
	PS_QUOTED,
	PS_QUOTED_ESC,
	PS_LIT_NUM,
	PS_LIT_PLUS,
	PS_LIT_END,
	PS_LITERAL,
	PS_DISCARD,
	PS_SKIP,
};

/* Outcome of processing one line byte. */
enum step {
	STEP_NEXT,	/* consumed, keep going */
	STEP_AGAIN,	/* state changed, process the same byte again */
	STEP_COMMAND,	/* consumed the final LF of a command */
	STEP_CONTINUE,	/* consumed the LF after a synchronizing literal's size */
	STEP_ERROR,	/* consumed the LF that ends a failed command */
};

/* Tail tracker states: where the line stands relative to a trailing "{digits[+]}". */
enum tail {
	TAIL_IDLE,
	TAIL_DIGITS,
	TAIL_PLUS,
	TAIL_SYNC,
	TAIL_NONSYNC,
};

/* The storage of one command: its tag, name, argument tree and every allocation behind them. */
struct pcmd {
	char *tag, *name;
	struct imap_arg *args;
	size_t nargs;
	void **allocs;
	size_t nallocs, allocs_cap;
	char *chunk;
	size_t chunk_used, chunk_cap;
};

/* One open parenthesized list (frame 0: the top-level arguments). */
struct frame {
	struct imap_arg *items;
	size_t n, cap;
	size_t parent_idx; /* index of our LIST arg in the enclosing frame */
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum pstate st;
	struct pcmd build, result;
	const char *error;	/* error of the command being read (reported at its end) */
	const char *result_error;
	int fatal, result_fatal; /* the error leaves the input out of step */
	size_t skip_bytes;	/* bytes dropped so far while skipping a failed line */
	struct buf tok;		/* tag, name, atom or quoted string being read */

	struct frame *frames;
	size_t frames_cap, depth;
	int just_opened;	/* ARG_START right after '(' (so ')' may close an empty list) */

	int cr;			/* the previous line byte was CR */
	size_t line_bytes;	/* non-literal bytes of this command so far */
	size_t nargs;		/* arguments of this command so far */
	uint64_t lit_total;	/* literal bytes of this command so far */

	/* literal size being read, then the literal's data */
	uint64_t lit_num;
	size_t lit_digits;
	int lit_ovf, lit_nonsync, lit8;
	size_t lit_size, lit_left, lit_len, lit_cap;
	char *lit_buf;
	const char *lit_err;
	size_t continue_size;
	uint64_t discard_left;

	/* quoted string: UTF-8 bytes still expected and the allowed range of the next one */
	unsigned u8_need;
	unsigned char u8_lo, u8_hi;

	/* atom: inside a fetch section "[...]" and its quoting */
	int bracket, bracket_used, br_quoted, br_esc;

	enum tail tail;
	uint64_t tail_num;
	size_t tail_digits;
	int tail_ovf;
};

/* Free every allocation of a command store and empty it. */
static void pcmd_free(struct pcmd *c)
{
	for (size_t i = 0; i < c->nallocs; i++)
		free(c->allocs[i]);
	free(c->allocs);
	memset(c, 0, sizeof(*c));
}

/* Make the store own ptr. On failure ptr is freed and -1 returned. */
static int pcmd_adopt(struct pcmd *c, void *ptr)
{
	if (c->nallocs == c->allocs_cap) {
		size_t ncap = c->allocs_cap ? c->allocs_cap * 2 : 16;
		void **na;
		if (ncap > SIZE_MAX / sizeof(*na) ||
		    (na = realloc(c->allocs, ncap * sizeof(*na))) == NULL) {
			free(ptr);
			return -1;
		}
		c->allocs = na;
		c->allocs_cap = ncap;
	}
	c->allocs[c->nallocs++] = ptr;
	return 0;
}

/* NUL-terminated copy of s[0..len) owned by the store; NULL when out of memory. */
static char *pcmd_strdup(struct pcmd *c, const char *s, size_t len)
{
	char *d;
	if (len >= SIZE_MAX - 1)
		return NULL;
	if (len + 1 > PCMD_SMALL) {
		if ((d = malloc(len + 1)) == NULL || pcmd_adopt(c, d) < 0)
			return NULL;
	} else {
		if (c->chunk == NULL || c->chunk_cap - c->chunk_used < len + 1) {
			char *nc = malloc(PCMD_CHUNK);
			if (nc == NULL || pcmd_adopt(c, nc) < 0)
				return NULL;
			c->chunk = nc;
			c->chunk_used = 0;
			c->chunk_cap = PCMD_CHUNK;
		}
		d = c->chunk + c->chunk_used;
		c->chunk_used += len + 1;
	}
	if (len)
		memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* Tag characters: ASTRING-CHAR except '+' (RFC 3501 "tag"). */
static int is_tag_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){%*\"\\+", c) == NULL;
}

/* Characters accepted inside atoms: ATOM-CHAR plus ']' (astring) and the list wildcards '%' and
 * '*' (LIST patterns and sequence sets arrive as atoms). */
static int is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return strchr("(){\"\\", c) == NULL;
}

/* Upper-case one ASCII letter. */
static unsigned char ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* Compare s[0..len) to an upper-case word ignoring ASCII case. */
static int ascii_ieq(const char *s, size_t len, const char *word)
{
	size_t i;
	for (i = 0; i < len && word[i] != '\0'; i++) {
		if (ascii_upper((unsigned char)s[i]) != (unsigned char)word[i])
			return 0;
	}
	return i == len && word[i] == '\0';
}

/* Append one byte to the token being read. */
static int tok_push(struct imap_parser *p, unsigned char c)
{
	struct buf *b = &p->tok;
	if (b->len + 1 < b->cap) {
		b->data[b->len++] = (char)c;
		b->data[b->len] = '\0';
		return 0;
	}
	return buf_append(b, &c, 1);
}

/* Record an error and switch to skipping the rest of the line (which re-reads this byte). */
static enum step fail(struct imap_parser *p, const char *msg)
{
	p->error = msg;
	p->st = PS_SKIP;
	return STEP_AGAIN;
}

/* Append a finished argument to the innermost open frame. */
static int frame_append(struct imap_parser *p, const struct imap_arg *a)
{
	struct frame *f = &p->frames[p->depth];
	if (f->n == f->cap) {
		size_t ncap = f->cap ? f->cap * 2 : 8;
		struct imap_arg *ni;
		if (ncap > SIZE_MAX / sizeof(*ni))
			return -1;
		ni = realloc(f->items, ncap * sizeof(*ni));
		if (ni == NULL)
			return -1;
		f->items = ni;
		f->cap = ncap;
	}
	f->items[f->n++] = *a;
	return 0;
}

/* Store the token as a string argument of the given type. */
static enum step finish_token(struct imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg a = { .type = type };
	char *s = pcmd_strdup(&p->build, p->tok.len ? p->tok.data : "", p->tok.len);
	if (s == NULL)
		return fail(p, "Out of memory");
	a.str = s;
	a.len = p->tok.len;
	buf_reset(&p->tok);
	if (frame_append(p, &a) < 0)
		return fail(p, "Out of memory");
	return STEP_NEXT;
}

/* '(' : add a LIST argument and make it the innermost frame. */
static enum step open_list(struct imap_parser *p)
{
	struct imap_arg a = { .type = IMAP_ARG_LIST, .str = "" };
	if (p->depth >= p->lim.max_depth)
		return fail(p, "Too deeply nested lists");
	if (p->depth + 1 >= p->frames_cap) {
		size_t ncap = p->frames_cap * 2;
		struct frame *nf;
		if (ncap > SIZE_MAX / sizeof(*nf) ||
		    (nf = realloc(p->frames, ncap * sizeof(*nf))) == NULL)
			return fail(p, "Out of memory");
		memset(nf + p->frames_cap, 0, (ncap - p->frames_cap) * sizeof(*nf));
		p->frames = nf;
		p->frames_cap = ncap;
	}
	if (frame_append(p, &a) < 0)
		return fail(p, "Out of memory");
	struct frame *child = &p->frames[p->depth + 1];
	child->items = NULL;
	child->n = child->cap = 0;
	child->parent_idx = p->frames[p->depth].n - 1;
	p->depth++;
	p->just_opened = 1;
	return STEP_NEXT;
}

/* ')' : hand the innermost frame's elements to its LIST argument and pop it. */
static enum step close_list(struct imap_parser *p)
{
	struct frame *f = &p->frames[p->depth];
	struct imap_arg *items = f->items;
	size_t n = f->n;
	f->items = NULL;
	f->n = f->cap = 0;
	p->depth--;
	if (items != NULL && pcmd_adopt(&p->build, items) < 0)
		return fail(p, "Out of memory");
	struct imap_arg *parent = &p->frames[p->depth].items[f->parent_idx];
	parent->list = items;
	parent->nlist = n;
	p->just_opened = 0;
	p->st = PS_AFTER_ARG;
	return STEP_NEXT;
}

/* Begin reading a literal size after '{' (or "~{"). */
static void literal_size_begin(struct imap_parser *p, int literal8)
{
	p->lit_num = 0;
	p->lit_digits = 0;
	p->lit_ovf = 0;
	p->lit_nonsync = 0;
	p->lit8 = literal8;
	p->st = PS_LIT_NUM;
}

/* The LF after "{n}" / "{n+}": check the limits, then either ask for continuation or start
 * reading the data (non-synchronizing). */
static enum step literal_begin(struct imap_parser *p)
{
	uint64_t n = p->lit_num;
	uint64_t room = p->lim.max_literal_total - (p->lit_total < p->lim.max_literal_total ?
						    p->lit_total : p->lim.max_literal_total);
	size_t max = p->lit_nonsync ? p->lim.max_literal_nonsync : p->lim.max_literal;
	if (p->lit_ovf || n > max || n > room) {
		p->error = "[TOOBIG] Literal too large";
		/* a synchronizing literal is refused before the client sends it; an overflowing
		 * size cannot be skipped reliably, nor one above max_discard */
		if (!p->lit_nonsync)
			return STEP_ERROR;
		if (p->lit_ovf || (p->lim.max_discard > 0 && n > p->lim.max_discard)) {
			p->fatal = 1;
			return STEP_ERROR;
		}
		p->discard_left = n;
		p->st = PS_DISCARD;
		return STEP_NEXT;
	}
	p->lit_total += n;
	p->lit_size = p->lit_left = (size_t)n;
	p->lit_len = 0;
	p->lit_err = NULL;
	p->st = PS_LITERAL;
	if (!p->lit_nonsync) {
		p->continue_size = (size_t)n;
		return STEP_CONTINUE;
	}
	return STEP_NEXT;
}

/* All literal bytes are in: store the argument (or fall into skipping if it was bad). */
static void literal_end(struct imap_parser *p)
{
	struct imap_arg a = { .type = IMAP_ARG_LITERAL, .literal8 = p->lit8 };
	char *s;
	if (p->lit_err != NULL) {
		free(p->lit_buf);
		p->lit_buf = NULL;
		p->lit_cap = 0;
		p->error = p->lit_err;
		p->st = PS_SKIP;
		return;
	}
	if (p->lit_buf == NULL) {
		s = pcmd_strdup(&p->build, "", 0);
	} else {
		s = p->lit_buf;
		s[p->lit_len] = '\0';
		p->lit_buf = NULL;
		p->lit_cap = 0;
		if (pcmd_adopt(&p->build, s) < 0)
			s = NULL;
	}
	a.str = s;
	a.len = p->lit_len;
	if (s == NULL || frame_append(p, &a) < 0) {
		p->error = "Out of memory";
		p->st = PS_SKIP;
		return;
	}
	p->st = PS_AFTER_ARG;
}

/* Take literal bytes from data[0..len); returns how many were used. */
static size_t literal_data(struct imap_parser *p, const char *data, size_t len)
{
	size_t take = p->lit_left < len ? p->lit_left : len;
	if (take > 0 && p->lit_err == NULL) {
		if (!p->lit8 && memchr(data, '\0', take) != NULL)
			p->lit_err = "NUL byte in literal (only literal8 may hold NULs)";
	}
	if (take > 0 && p->lit_err == NULL) {
		size_t want = p->lit_len + take + 1; /* <= lit_size + 1 */
		if (want > p->lit_cap) {
			size_t ncap = p->lit_cap ? p->lit_cap : LITERAL_FIRST_ALLOC;
			while (ncap < want && ncap <= SIZE_MAX / 2)
				ncap *= 2;
			if (ncap < want || ncap > p->lit_size + 1)
				ncap = p->lit_size + 1;
			char *nb = realloc(p->lit_buf, ncap);
			if (nb == NULL) {
				p->lit_err = "Out of memory";
			} else {
				p->lit_buf = nb;
				p->lit_cap = ncap;
			}
		}
		if (p->lit_err == NULL) {
			memcpy(p->lit_buf + p->lit_len, data, take);
			p->lit_len += take;
		}
	}
	p->lit_left -= take;
	if (p->lit_left == 0)
		literal_end(p);
	return take;
}

/* Feed one consumed line byte to the tail tracker (which spots a trailing "{n+}"). */
static void tail_update(struct imap_parser *p, unsigned char c)
{
	if (c >= '0' && c <= '9' && p->tail == TAIL_DIGITS) {
		unsigned d = (unsigned)(c - '0');
		if (p->tail_num > (UINT64_MAX - d) / 10)
			p->tail_ovf = 1;
		else
			p->tail_num = p->tail_num * 10 + d;
		p->tail_digits++;
		return;
	}
	switch (c) {
	case '{':
		p->tail = TAIL_DIGITS;
		p->tail_num = 0;
		p->tail_digits = 0;
		p->tail_ovf = 0;
		break;
	case '+':
		p->tail = p->tail == TAIL_DIGITS && p->tail_digits > 0 ? TAIL_PLUS : TAIL_IDLE;
		break;
	case '}':
		if (p->tail == TAIL_DIGITS && p->tail_digits > 0)
			p->tail = TAIL_SYNC;
		else
			p->tail = p->tail == TAIL_PLUS ? TAIL_NONSYNC : TAIL_IDLE;
		break;
	case '\r':
		break; /* the CR of CRLF keeps the state for the LF */
	default:
		p->tail = TAIL_IDLE;
		break;
	}
}

/* A byte while skipping a failed command's line. */
static enum step skip_byte(struct imap_parser *p, unsigned char c)
{
	if (c != '\n') {
		if (p->lim.max_skip > 0 && ++p->skip_bytes > p->lim.max_skip) {
			p->error = "Command line too long";
			p->fatal = 1;
			return STEP_ERROR;
		}
		return STEP_NEXT;
	}
	if (p->tail == TAIL_NONSYNC && (p->tail_ovf || (p->lim.max_discard > 0 &&
							 p->tail_num > p->lim.max_discard))) {
		p->fatal = 1;   /* the literal that follows cannot be skipped: out of step */
		return STEP_ERROR;
	}
	if (p->tail == TAIL_NONSYNC) {
		p->skip_bytes = 0;   /* the next line part of the same command */
		p->discard_left = p->tail_num;
		p->st = PS_DISCARD;
		return STEP_NEXT;
	}
	return STEP_ERROR;
}

/* The LF that completes a command: publish the top-level frame. */
static enum step command_end(struct imap_parser *p)
{
	struct frame *f = &p->frames[0];
	struct imap_arg *items = f->items;
	size_t n = f->n;
	f->items = NULL;
	f->n = f->cap = 0;
	if (items != NULL && pcmd_adopt(&p->build, items) < 0) {
		p->error = "Out of memory";
		return STEP_ERROR;
	}
	p->build.args = items;
	p->build.nargs = n;
	return STEP_COMMAND;
}

/* Start a new argument at c in ARG_START. */
static enum step arg_start(struct imap_parser *p, unsigned char c)
{
	if (c == ')' && p->just_opened)
		return close_list(p);
	if (c == '\n')
		return fail(p, "Missing argument");
	if (c != '(' && c != '"' && c != '{' && c != '\\' && !is_atom_char(c))
		return fail(p, c == ')' ? "Unexpected ')'" : "Invalid character in argument");
	if (p->nargs >= p->lim.max_args)
		return fail(p, "Too many arguments");
	p->nargs++;
	p->just_opened = 0;
	switch (c) {
	case '(':
		return open_list(p);
	case '"':
		buf_reset(&p->tok);
		p->u8_need = 0;
		p->st = PS_QUOTED;
		return STEP_NEXT;
	case '{':
		literal_size_begin(p, 0);
		return STEP_NEXT;
	default:
		buf_reset(&p->tok);
		p->bracket = p->bracket_used = 0;
		p->st = PS_ATOM;
		if (tok_push(p, c) < 0)
			return fail(p, "Out of memory");
		return STEP_NEXT;
	}
}

/* Atoms whose "[...]" section may hold spaces, parens and quotes (RFC 3501 fetch-att,
 * RFC 3516 BINARY). */
static int is_section_prefix(const struct buf *t)
{
	static const char *const words[] = {
		"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE",
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (ascii_ieq(t->data, t->len, words[i]))
			return 1;
	}
	return 0;
}

/* A byte inside an atom. */
static enum step atom_byte(struct imap_parser *p, unsigned char c)
{
	if (p->bracket) {
		if (c == '\n')
			return fail(p, "Unterminated '[' section");
		if (c < 0x20 || c >= 0x7f)
			return fail(p, "Invalid character in section");
		if (p->br_esc)
			p->br_esc = 0;
		else if (p->br_quoted && c == '\\')
			p->br_esc = 1;
		else if (p->br_quoted)
			p->br_quoted = c != '"';
		else if (c == '"')
			p->br_quoted = 1;
		else if (c == ']')
			p->bracket = 0;
		return tok_push(p, c) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
	}
	if (c == ' ' || c == ')' || c == '\n') {
		int nil = ascii_ieq(p->tok.data, p->tok.len, "NIL");
		enum step s = finish_token(p, nil ? IMAP_ARG_NIL : IMAP_ARG_ATOM);
		if (s != STEP_NEXT)
			return s;
		p->st = PS_AFTER_ARG;
		return STEP_AGAIN;
	}
	if (c == '{' && p->tok.len == 1 && p->tok.data[0] == '~') {
		literal_size_begin(p, 1);
		return STEP_NEXT;
	}
	if (c == '[' && !p->bracket_used && is_section_prefix(&p->tok)) {
		p->bracket = p->bracket_used = 1;
		p->br_quoted = p->br_esc = 0;
	} else if (!is_atom_char(c)) {
		return fail(p, "Invalid character in atom");
	}
	return tok_push(p, c) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
}

/* A byte inside a quoted string (RFC 9051: UTF-8 allowed, well-formed only). */
static enum step quoted_byte(struct imap_parser *p, unsigned char c)
{
	if (p->u8_need > 0) {
		if (c < p->u8_lo || c > p->u8_hi)
			return fail(p, "Invalid UTF-8 in quoted string");
		p->u8_need--;
		p->u8_lo = 0x80;
		p->u8_hi = 0xbf;
	} else if (c == '"') {
		enum step s = finish_token(p, IMAP_ARG_QUOTED);
		if (s == STEP_NEXT)
			p->st = PS_AFTER_ARG;
		return s;
	} else if (c == '\\') {
		p->st = PS_QUOTED_ESC;
		return STEP_NEXT;
	} else if (c == '\n') {
		return fail(p, "Unterminated quoted string");
	} else if (c >= 0x80) {
		size_t n = utf8_lead(c, &p->u8_lo, &p->u8_hi);   /* the next octet's range */
		if (n == 0)
			return fail(p, "Invalid UTF-8 in quoted string");
		p->u8_need = (unsigned)(n - 1);
	}
	return tok_push(p, c) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
}

/* One line byte (never CR or NUL here) in the current state. */
static enum step dispatch(struct imap_parser *p, unsigned char c)
{
	switch (p->st) {
	case PS_TAG:
		if (c == ' ' || c == '\n') {
			if (p->tok.len == 0)
				return fail(p, c == ' ' ? "Missing tag" : "Empty command line");
			p->build.tag = pcmd_strdup(&p->build, p->tok.data, p->tok.len);
			if (p->build.tag == NULL)
				return fail(p, "Out of memory");
			buf_reset(&p->tok);
			if (c == '\n')
				return fail(p, "Missing command name");
			p->st = PS_NAME;
			return STEP_NEXT;
		}
		if (!is_tag_char(c))
			return fail(p, "Invalid character in tag");
		return tok_push(p, c) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
	case PS_NAME:
		if (c == ' ' || c == '\n') {
			if (p->tok.len == 0)
				return fail(p, "Missing command name");
			p->build.name = pcmd_strdup(&p->build, p->tok.data, p->tok.len);
			if (p->build.name == NULL)
				return fail(p, "Out of memory");
			buf_reset(&p->tok);
			if (c == '\n')
				return command_end(p);
			p->st = PS_ARG_START;
			p->just_opened = 0;
			return STEP_NEXT;
		}
		if (!is_atom_char(c) || c == ']')
			return fail(p, "Invalid character in command name");
		return tok_push(p, ascii_upper(c)) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
	case PS_ARG_START:
		return arg_start(p, c);
	case PS_AFTER_ARG:
		if (c == ' ') {
			p->st = PS_ARG_START;
			p->just_opened = 0;
			return STEP_NEXT;
		}
		if (c == ')')
			return p->depth > 0 ? close_list(p) : fail(p, "Unexpected ')'");
		if (c == '\n')
			return p->depth > 0 ? fail(p, "Missing ')'") : command_end(p);
		return fail(p, "Missing space between arguments");
	case PS_ATOM:
		return atom_byte(p, c);
	case PS_QUOTED:
		return quoted_byte(p, c);
	case PS_QUOTED_ESC:
		if (c != '"' && c != '\\')
			return fail(p, "Invalid escape in quoted string");
		p->st = PS_QUOTED;
		return tok_push(p, c) < 0 ? fail(p, "Out of memory") : STEP_NEXT;
	case PS_LIT_NUM:
		if (c >= '0' && c <= '9') {
			unsigned d = (unsigned)(c - '0');
			if (p->lit_num > (UINT64_MAX - d) / 10)
				p->lit_ovf = 1;
			else
				p->lit_num = p->lit_num * 10 + d;
			p->lit_digits++;
			return STEP_NEXT;
		}
		if (p->lit_digits > 0 && c == '+') {
			p->lit_nonsync = 1;
			p->st = PS_LIT_PLUS;
			return STEP_NEXT;
		}
		if (p->lit_digits > 0 && c == '}') {
			p->st = PS_LIT_END;
			return STEP_NEXT;
		}
		return fail(p, "Invalid literal size");
	case PS_LIT_PLUS:
		if (c != '}')
			return fail(p, "Invalid literal size");
		p->st = PS_LIT_END;
		return STEP_NEXT;
	case PS_LIT_END:
		if (c != '\n')
			return fail(p, "Missing CRLF after literal size");
		return literal_begin(p);
	case PS_LITERAL:
	case PS_DISCARD:
	case PS_SKIP:
		break;
	}
	return skip_byte(p, c);
}

/* One byte of a command line (or of a line being skipped). Never returns STEP_AGAIN. */
static enum step line_byte(struct imap_parser *p, unsigned char c)
{
	enum step s;
	if (p->st == PS_SKIP)
		return skip_byte(p, c);
	if (p->line_bytes >= p->lim.max_line) {
		fail(p, "Command line too long");
		return skip_byte(p, c);
	}
	p->line_bytes++;
	if (c == '\0') {
		fail(p, "NUL byte in command line");
		return skip_byte(p, c);
	}
	if (p->cr) {
		p->cr = 0;
		if (c != '\n') {
			fail(p, "CR not followed by LF");
			return skip_byte(p, c);
		}
	} else if (c == '\r') {
		p->cr = 1;
		return STEP_NEXT;
	}
	while ((s = dispatch(p, c)) == STEP_AGAIN) {
		if (p->st == PS_SKIP)
			return skip_byte(p, c);
	}
	return s;
}

/* Drop the state of the command being read (not its store) and get ready for the next. */
static void command_state_reset(struct imap_parser *p)
{
	/* only frames 0..depth can hold items: a closed list hands them to the command store */
	for (size_t i = 0; i <= p->depth && i < p->frames_cap; i++) {
		free(p->frames[i].items);
		p->frames[i].items = NULL;
		p->frames[i].n = p->frames[i].cap = 0;
	}
	free(p->lit_buf);
	p->lit_buf = NULL;
	p->lit_cap = p->lit_len = p->lit_left = 0;
	buf_reset(&p->tok);
	p->st = PS_TAG;
	p->depth = 0;
	p->just_opened = 0;
	p->cr = 0;
	p->line_bytes = 0;
	p->nargs = 0;
	p->lit_total = 0;
	p->discard_left = 0;
	p->tail = TAIL_IDLE;
	p->error = NULL;
	p->fatal = 0;
	p->skip_bytes = 0;
}

/* A command ended (ok or failed): its store becomes the visible result. */
static void command_publish(struct imap_parser *p, int ok)
{
	pcmd_free(&p->result);
	p->result = p->build;
	memset(&p->build, 0, sizeof(p->build));
	if (!ok) {
		p->result.args = NULL;
		p->result.nargs = 0;
	}
	p->result_error = ok ? NULL : p->error != NULL ? p->error : "Syntax error";
	p->result_fatal = !ok && p->fatal;
	command_state_reset(p);
}

/* Feed bytes; see the header. */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
					size_t *consumed_r)
{
	size_t i = 0;
	while (i < len) {
		if (p->st == PS_LITERAL) {
			i += literal_data(p, data + i, len - i);
			continue;
		}
		if (p->st == PS_DISCARD) {
			size_t take = len - i;
			if (p->discard_left < take)
				take = (size_t)p->discard_left;
			i += take;
			p->discard_left -= take;
			if (p->discard_left == 0)
				p->st = PS_SKIP;
			continue;
		}
		unsigned char c = (unsigned char)data[i];
		enum step s = line_byte(p, c);
		tail_update(p, c);
		i++;
		switch (s) {
		case STEP_NEXT:
		case STEP_AGAIN:
			break;
		case STEP_COMMAND:
			command_publish(p, 1);
			*consumed_r = i;
			return IMAP_PARSE_COMMAND;
		case STEP_ERROR:
			command_publish(p, 0);
			*consumed_r = i;
			return IMAP_PARSE_ERROR;
		case STEP_CONTINUE:
			*consumed_r = i;
			return IMAP_PARSE_CONTINUE;
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_MORE;
}

/* Take lim (or the defaults) as p's limits, zero fields replaced by their defaults. */
static void limits_set(struct imap_parser *p, const struct imap_parser_limits *lim)
{
	if (lim != NULL)
		p->lim = *lim;
	else
		memset(&p->lim, 0, sizeof(p->lim));
	if (p->lim.max_line == 0)
		p->lim.max_line = IMAP_PARSER_DEFAULT_MAX_LINE;
	if (p->lim.max_literal == 0)
		p->lim.max_literal = IMAP_PARSER_DEFAULT_MAX_LITERAL;
	if (p->lim.max_literal > SIZE_MAX - 1)
		p->lim.max_literal = SIZE_MAX - 1; /* room for the NUL */
	if (p->lim.max_depth == 0)
		p->lim.max_depth = IMAP_PARSER_DEFAULT_MAX_DEPTH;
	if (p->lim.max_args == 0)
		p->lim.max_args = IMAP_PARSER_DEFAULT_MAX_ARGS;
	if (p->lim.max_literal_total == 0)
		p->lim.max_literal_total = p->lim.max_literal;
	if (p->lim.max_literal_nonsync == 0 || p->lim.max_literal_nonsync > p->lim.max_literal)
		p->lim.max_literal_nonsync = p->lim.max_literal;
}

/* New parser with the given (or default) limits. */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *lim)
{
	struct imap_parser *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	limits_set(p, lim);
	buf_init(&p->tok, p->lim.max_line);
	p->frames_cap = 8;
	p->frames = calloc(p->frames_cap, sizeof(*p->frames));
	if (p->frames == NULL) {
		free(p);
		return NULL;
	}
	p->st = PS_TAG;
	return p;
}

/* New limits between commands; see imap-parser.h. */
void imap_parser_set_limits(struct imap_parser *p, const struct imap_parser_limits *lim)
{
	limits_set(p, lim);
	p->tok.max = p->lim.max_line;   /* tok is empty between commands */
}

/* See imap-parser.h. */
void imap_parser_release(struct imap_parser *p)
{
	if (p->st != PS_TAG || p->tok.len > 0 || p->line_bytes > 0)
		return;   /* in the middle of a command */
	pcmd_free(&p->result);
	p->result_error = NULL;
	buf_free(&p->tok);
}

/* Free the parser and all it holds. */
void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (p == NULL)
		return;
	command_state_reset(p);
	pcmd_free(&p->build);
	pcmd_free(&p->result);
	free(p->frames);
	buf_free(&p->tok);
	free(p);
	*pp = NULL;
}

/* Forget all buffered input and results. */
void imap_parser_reset(struct imap_parser *p)
{
	command_state_reset(p);
	pcmd_free(&p->build);
	pcmd_free(&p->result);
	p->result_error = NULL;
	p->result_fatal = 0;
	p->continue_size = 0;
}

/* Is the parser between commands? */
int imap_parser_at_start(const struct imap_parser *p)
{
	return p->st == PS_TAG && p->line_bytes == 0 && p->tok.len == 0;
}

/* Tag of the last result. */
const char *imap_parser_tag(const struct imap_parser *p)
{
	return p->result.tag;
}

/* Command name of the last result. */
const char *imap_parser_name(const struct imap_parser *p)
{
	return p->result.name;
}

/* Top-level arguments of the last COMMAND. */
const struct imap_arg *imap_parser_args(const struct imap_parser *p, size_t *n_r)
{
	*n_r = p->result.nargs;
	return p->result.args;
}

/* Message of the last ERROR. */
const char *imap_parser_error(const struct imap_parser *p)
{
	return p->result_error;
}

/* Whether the last ERROR left the input out of step. */
int imap_parser_fatal(const struct imap_parser *p)
{
	return p->result_fatal;
}

/* Size of the literal announced with the last CONTINUE. */
size_t imap_parser_literal_size(const struct imap_parser *p)
{
	return p->continue_size;
}

/* Whether a is an astring. */
int imap_arg_is_astring(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL || imap_arg_is_string(a);
}

/* Whether a is a quoted string or literal. */
int imap_arg_is_string(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL;
}

/* Whether a is the atom word (ASCII case ignored). */
int imap_arg_atom_equals(const struct imap_arg *a, const char *word)
{
	size_t i;
	if (a->type != IMAP_ARG_ATOM)
		return 0;
	for (i = 0; i < a->len && word[i] != '\0'; i++) {
		if (ascii_upper((unsigned char)a->str[i]) != ascii_upper((unsigned char)word[i]))
			return 0;
	}
	return i == a->len && word[i] == '\0';
}
