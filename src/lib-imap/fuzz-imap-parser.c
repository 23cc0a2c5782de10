/* fuzz-imap-parser.c - libFuzzer target for imap-parser.c (and imap-quote.c through it).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/lib -Isrc/lib-imap \
 *        src/lib/buf.c src/lib-imap/imap-parser.c src/lib-imap/imap-quote.c \
 *        src/lib-imap/fuzz-imap-parser.c -o fuzz-imap-parser
 * Input: byte 0 picks a set of limits, byte 1 the chunking, the rest is the client stream.
 * Besides memory errors it checks the contracts: the stream gives the same results fed whole
 * and in chunks; consumed counts are in range; every argument is NUL-terminated at its length
 * and within the limits; and every string argument, written back with imap_append_astring(),
 * parses again to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap-parser.h"
#include "imap-quote.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The deepest nesting any limit set below allows. */
#define FUZZ_MAX_DEPTH 64

static const struct imap_parser_limits fuzz_limits[] = {
	{ .max_line = 64, .max_literal = 16, .max_depth = 3, .max_args = 8 },
	{ .max_line = 200, .max_literal = 100, .max_depth = 8, .max_args = 50,
	  .max_literal_total = 150 },
	{ .max_line = 8192, .max_literal = 8192, .max_depth = FUZZ_MAX_DEPTH, .max_args = 2000 },
	{ .max_line = 8, .max_literal = 1, .max_depth = 1, .max_args = 1 },
	{ .max_line = 100, .max_literal = 30, .max_depth = 4, .max_args = 20,
	  .max_literal_nonsync = 8, .max_skip = 40, .max_discard = 50 },
};

/* One level of the iterative argument walk. */
struct walk {
	const struct imap_arg *args;
	size_t n, i;
};

/* An argument written back as an astring must parse to the same bytes. */
static void check_requote(const struct imap_arg *a)
{
	static const struct imap_parser_limits lim = { .max_line = 65536, .max_literal = 65536 };
	struct buf b;
	size_t used, n, off = 0;
	enum imap_parse_result r;
	if (a->len > 4096 || memchr(a->str, '\0', a->len) != NULL)
		return; /* NULs only travel in literal8 */
	buf_init(&b, 1 << 16);
	if (buf_appendstr(&b, "t X ") < 0 || imap_append_astring(&b, a->str, a->len) < 0 ||
	    buf_appendstr(&b, "\r\n") < 0)
		abort();
	struct imap_parser *p = imap_parser_new(&lim);
	if (p == NULL)
		abort();
	while ((r = imap_parser_feed(p, b.data + off, b.len - off, &used)) == IMAP_PARSE_CONTINUE)
		off += used;
	off += used;
	const struct imap_arg *args = imap_parser_args(p, &n);
	if (r != IMAP_PARSE_COMMAND || off != b.len || n != 1 || !imap_arg_is_astring(&args[0]) ||
	    args[0].len != a->len || memcmp(args[0].str, a->str, a->len) != 0)
		abort();
	imap_parser_free(&p);
	buf_free(&b);
}

/* Append a description of the args to t, checking their invariants along the way. */
static void walk_args(struct buf *t, const struct imap_arg *args, size_t n,
		      const struct imap_parser_limits *lim, int requote)
{
	struct walk st[FUZZ_MAX_DEPTH + 2];
	size_t depth = 0, total = 0;
	st[0].args = args;
	st[0].n = n;
	st[0].i = 0;
	for (;;) {
		struct walk *w = &st[depth];
		if (w->i == w->n) {
			if (buf_append(t, ")", 1) < 0)
				abort();
			if (depth == 0)
				break;
			depth--;
			continue;
		}
		const struct imap_arg *a = &w->args[w->i++];
		total++;
		if (a->str == NULL || a->str[a->len] != '\0' || total > lim->max_args)
			abort();
		if (buf_appendf(t, " %d:%zu:", (int)a->type, a->len) < 0 ||
		    buf_append(t, a->str, a->len) < 0)
			abort();
		switch (a->type) {
		case IMAP_ARG_LIST:
			if (a->len != 0 || (a->nlist > 0 && a->list == NULL))
				abort();
			if (++depth > lim->max_depth || depth > FUZZ_MAX_DEPTH)
				abort();
			st[depth].args = a->list;
			st[depth].n = a->nlist;
			st[depth].i = 0;
			if (buf_append(t, "(", 1) < 0)
				abort();
			break;
		case IMAP_ARG_LITERAL:
			if (a->len > lim->max_literal ||
			    (!a->literal8 && memchr(a->str, 0, a->len) != NULL))
				abort();
			if (requote)
				check_requote(a);
			break;
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
		case IMAP_ARG_QUOTED:
			if (a->literal8 || (a->len == 0 && a->type != IMAP_ARG_QUOTED))
				abort();
			if (strlen(a->str) != a->len || a->len > lim->max_line)
				abort();
			if (requote)
				check_requote(a);
			break;
		}
	}
}

/* Feed the stream in chunks of at most `chunk` bytes (0: whole) and describe the results in t. */
static void run(struct buf *t, const struct imap_parser_limits *lim, const char *s, size_t len,
		uint32_t chunk_seed, int requote)
{
	struct imap_parser *p = imap_parser_new(lim);
	size_t pos = 0;
	uint32_t rng = chunk_seed;
	if (p == NULL)
		abort();
	while (pos < len) {
		size_t n = len - pos;
		if (chunk_seed != 0) {
			rng = rng * 1103515245u + 12345u;
			size_t c = 1 + ((rng >> 16) % (chunk_seed % 64 + 1));
			if (n > c)
				n = c;
		}
		size_t off = 0;
		while (off < n) {
			size_t used = (size_t)-1, nargs;
			enum imap_parse_result r;
			r = imap_parser_feed(p, s + pos + off, n - off, &used);
			if (used > n - off || (r == IMAP_PARSE_MORE && used != n - off) ||
			    (r != IMAP_PARSE_MORE && used == 0))
				abort();
			off += used;
			const struct imap_arg *args = imap_parser_args(p, &nargs);
			switch (r) {
			case IMAP_PARSE_MORE:
				break;
			case IMAP_PARSE_CONTINUE:
				if (imap_parser_literal_size(p) > lim->max_literal ||
				    buf_appendf(t, "+%zu\n", imap_parser_literal_size(p)) < 0)
					abort();
				break;
			case IMAP_PARSE_COMMAND:
				if (imap_parser_tag(p) == NULL || imap_parser_name(p) == NULL ||
				    imap_parser_error(p) != NULL || (nargs > 0 && args == NULL))
					abort();
				if (buf_appendf(t, "C %s %s (", imap_parser_tag(p),
						imap_parser_name(p)) < 0)
					abort();
				walk_args(t, args, nargs, lim, requote);
				if (buf_append(t, "\n", 1) < 0)
					abort();
				break;
			case IMAP_PARSE_ERROR:
				if (imap_parser_error(p) == NULL || nargs != 0 ||
				    buf_appendf(t, "E %s %s\n", imap_parser_tag(p) ?
						imap_parser_tag(p) : "*", imap_parser_error(p)) < 0)
					abort();
				break;
			}
		}
		pos += n;
	}
	imap_parser_free(&p);
}

/* Fuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole, chunked;
	if (size < 2)
		return 0;
	const struct imap_parser_limits *lim =
		&fuzz_limits[data[0] % (sizeof(fuzz_limits) / sizeof(fuzz_limits[0]))];
	uint32_t seed = data[1] | 1u;
	const char *s = (const char *)data + 2;
	size_t len = size - 2;
	buf_init(&whole, 1 << 26);
	buf_init(&chunked, 1 << 26);
	run(&whole, lim, s, len, 0, 1);
	run(&chunked, lim, s, len, seed, 0);
	if (whole.len != chunked.len || (whole.len && memcmp(whole.data, chunked.data, whole.len)))
		abort();
	buf_free(&whole);
	buf_free(&chunked);
	return 0;
}
