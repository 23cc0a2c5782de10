/* test-imap-parser.c - unit tests for imap-parser.c.
 *
 * Every table row is fed three ways: whole, one byte at a time, and in random chunk sizes (several
 * seeds). Each run produces a transcript of the parser's results; all runs must give the same
 * transcript, and it must match the row's expectation. Transcript lines:
 *   C <tag> <NAME> <args>    a command; args: atoms raw, "quoted", {n}"literal",
 *                            ~{n}"literal8", NIL, (list)
 *   + <n>                    continuation requested for an n-byte literal
 *   E <tag|*> <message>      an error (after which the parser is back in step)
 *   X <tag|*> <message>      a fatal error (imap_parser_fatal(): the input is out of step)
 *   MORE                     the input ended inside a command
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap-parser.h"

/* Limits used by most rows: small, so that every limit is easy to hit. */
static const struct imap_parser_limits small_limits = {
	.max_line = 200, .max_literal = 20, .max_depth = 5, .max_args = 30,
};
/* LITERAL- style limits: big synchronizing literals, small non-synchronizing ones. */
static const struct imap_parser_limits minus_limits = {
	.max_line = 200, .max_literal = 20, .max_depth = 5, .max_args = 30,
	.max_literal_nonsync = 4,
};
/* Skipping and discarding bounded (as a session before login sets them). */
static const struct imap_parser_limits skip_limits = {
	.max_line = 200, .max_literal = 20, .max_depth = 5, .max_args = 30, .max_skip = 50,
	.max_discard = 30,
};
/* Limits for the literal-total rows. */
static const struct imap_parser_limits total_limits = {
	.max_line = 200, .max_literal = 20, .max_depth = 5, .max_args = 30, .max_literal_total = 30,
};

struct pcase {
	const char *in;
	size_t in_len; /* 0: strlen(in) */
	const char *want;
	const struct imap_parser_limits *lim; /* NULL: small_limits */
};

#define L(s) s, sizeof(s) - 1

static const struct pcase cases[] = {
	/* basics */
	{ "a1 NOOP\r\n", 0, "C a1 NOOP\n", NULL },
	{ "a1 noop\n", 0, "C a1 NOOP\n", NULL },
	{ "a1 NOOP\r\nb2 CAPABILITY\r\n", 0, "C a1 NOOP\nC b2 CAPABILITY\n", NULL },
	{ "a1 NOOP", 0, "MORE\n", NULL },
	{ "a1 NOOP\r", 0, "MORE\n", NULL },
	{ "a] NOOP\r\n", 0, "C a] NOOP\n", NULL },
	{ "A.1-x_[y] NOOP\r\n", 0, "C A.1-x_[y] NOOP\n", NULL },
	{ "a LOGIN user \"pa ss\\\"\\\\\"\r\n", 0, "C a LOGIN user \"pa ss\\\"\\\\\"\n", NULL },
	{ "a LOGIN \"\" \"\"\r\n", 0, "C a LOGIN \"\" \"\"\n", NULL },
	{ "a SELECT ~peter/mail/&U,BTFw-\r\n", 0, "C a SELECT ~peter/mail/&U,BTFw-\n", NULL },
	{ "a SELECT \"\xe5\x8f\xb0\xe5\x8c\x97\"\r\n", 0,
	  "C a SELECT \"\\xe5\\x8f\\xb0\\xe5\\x8c\\x97\"\n", NULL },
	{ "a SELECT \"\xf0\x9f\x93\xac\"\r\n", 0, "C a SELECT \"\\xf0\\x9f\\x93\\xac\"\n", NULL },
	{ "a LIST \"\" %/*\r\n", 0, "C a LIST \"\" %/*\n", NULL },
	{ "a SELECT [Gmail]/Sent\r\n", 0, "C a SELECT [Gmail]/Sent\n", NULL },
	{ "a SELECT foo[bar\r\n", 0, "C a SELECT foo[bar\n", NULL },
	{ "a STORE 1:3 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n", 0,
	  "C a STORE 1:3 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\n", NULL },
	{ "a X NIL nil (NIL Nil)\r\n", 0, "C a X NIL NIL (NIL NIL)\n", NULL },
	{ "a X NILS \"NIL\"\r\n", 0, "C a X NILS \"NIL\"\n", NULL },
	{ "a X () (()) (a (b c) ())\r\n", 0, "C a X () (()) (a (b c) ())\n", NULL },
	{ "a X ((((()))))\r\n", 0, "C a X ((((()))))\n", NULL },
	{ "a X \x01\r\n", 0, "E a Invalid character in argument\n", NULL },
	{ "a X \"\x01\t\x7f\"\r\n", 0, "C a X \"\\x01\\x09\\x7f\"\n", NULL },
	/* fetch attributes with sections arrive as one atom */
	{ "a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\r\n", 0,
	  "C a3 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\n", NULL },
	{ "a FETCH 1 body[]\r\n", 0, "C a FETCH 1 body[]\n", NULL },
	{ "a FETCH 1 BODY[HEADER.FIELDS.NOT (A B)]\r\n", 0,
	  "C a FETCH 1 BODY[HEADER.FIELDS.NOT (A B)]\n", NULL },
	{ "a FETCH 1 (BODY[1.2.MIME] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] BINARY[])\r\n", 0,
	  "C a FETCH 1 (BODY[1.2.MIME] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] BINARY[])\n", NULL },
	{ "a FETCH 1 BODY[HEADER.FIELDS (\"a]b\" \"c\\\"]\")]\r\n", 0,
	  "C a FETCH 1 BODY[HEADER.FIELDS (\"a]b\" \"c\\\"]\")]\n", NULL },
	{ "a FETCH 1 BODY[HEADER\r\nb NOOP\r\n", 0,
	  "E a Unterminated '[' section\nC b NOOP\n", NULL },
	{ "a FETCH 1 BODY[\x01]\r\n", 0, "E a Invalid character in section\n", NULL },
	{ "a FETCH 1 BODY[1] BODY[2]x\r\n", 0, "C a FETCH 1 BODY[1] BODY[2]x\n", NULL },
	{ "a FETCH 1 BODY[1][2 3]\r\n", 0, "C a FETCH 1 BODY[1][2 3]\n", NULL },
	/* literals */
	{ "a LOGIN {4}\r\nuser {4}\r\npass\r\n", 0, "+ 4\n+ 4\nC a LOGIN {4}\"user\" {4}\"pass\"\n",
	  NULL },
	{ "a LOGIN {4+}\r\nuser {4+}\r\npass\r\nb NOOP\r\n", 0,
	  "C a LOGIN {4}\"user\" {4}\"pass\"\nC b NOOP\n", NULL },
	{ "a X {0}\r\n\r\n", 0, "+ 0\nC a X {0}\"\"\n", NULL },
	{ "a X {0+}\r\n ({2+}\r\n\r\n)\r\n", 0, "C a X {0}\"\" ({2}\"\\x0d\\x0a\")\n", NULL },
	{ "a X {007}\r\n(a\"\\\r\n)\r\n", 0, "+ 7\nC a X {7}\"(a\\\"\\\\\\x0d\\x0a)\"\n", NULL },
	{ "a X {20}\r\n01234567890123456789\r\n", 0,
	  "+ 20\nC a X {20}\"01234567890123456789\"\n", NULL },
	{ L("a APPEND box (\\Seen) \"17-Jul-1996 02:44:25 -0700\" ~{3}\r\na\0b\r\n"),
	  "+ 3\nC a APPEND box (\\Seen) \"17-Jul-1996 02:44:25 -0700\" ~{3}\"a\\x00b\"\n", NULL },
	{ L("a APPEND box ~{3+}\r\n\0\0\0\r\n"), "C a APPEND box ~{3}\"\\x00\\x00\\x00\"\n", NULL },
	{ "a X ~ b\r\n", 0, "C a X ~ b\n", NULL },
	{ "a X ~a{3}\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X ~~{3}\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X {3}\r\n\xff\xfe\x80\r\n", 0, "+ 3\nC a X {3}\"\\xff\\xfe\\x80\"\n", NULL },
	/* literal errors; the session must stay in step */
	{ "a LOGIN {21}\r\nb NOOP\r\n", 0, "E a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	{ "a LOGIN ~{21}\r\nb NOOP\r\n", 0, "E a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	{ "a LOGIN {25+}\r\n0123456789\r\nc NOOP\r\n123 x\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	{ "a X {25+}\r\n0123456789\r\nc NOOP\r\n12345 {3+}\r\nabc\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	{ "a X ) {8+}\r\nc NOOP\r\n\r\nb NOOP\r\n", 0, "E a Unexpected ')'\nC b NOOP\n", NULL },
	{ "a X ) ~{8+}\r\nc NOOP\r\n {2+}\r\n\r\n\r\nb NOOP\r\n", 0,
	  "E a Unexpected ')'\nC b NOOP\n", NULL },
	{ "a X ) {8}\r\nb NOOP\r\n", 0, "E a Unexpected ')'\nC b NOOP\n", NULL },
	{ L("a X {3+}\r\na\0b\r\nb NOOP\r\n"),
	  "E a NUL byte in literal (only literal8 may hold NULs)\nC b NOOP\n", NULL },
	{ L("a X {3}\r\na\0b {2+}\r\n\r\n\r\nb NOOP\r\n"),
	  "+ 3\nE a NUL byte in literal (only literal8 may hold NULs)\nC b NOOP\n", NULL },
	{ "a X {}\r\nb NOOP\r\n", 0, "E a Invalid literal size\nC b NOOP\n", NULL },
	{ "a X {+}\r\n", 0, "E a Invalid literal size\n", NULL },
	{ "a X {1x}\r\n", 0, "E a Invalid literal size\n", NULL },
	{ "a X {1+x}\r\n", 0, "E a Invalid literal size\n", NULL },
	{ "a X {-1}\r\n", 0, "E a Invalid literal size\n", NULL },
	{ "a X {1}x\r\n", 0, "E a Missing CRLF after literal size\n", NULL },
	{ "a X {1} \r\n", 0, "E a Missing CRLF after literal size\n", NULL },
	{ "a X {1}\rx\r\n", 0, "E a CR not followed by LF\n", NULL },
	{ "a X {99999999999999999999999}\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	{ "a X {99999999999999999999999+}\r\nb NOOP\r\n", 0,
	  "X a [TOOBIG] Literal too large\nC b NOOP\n", NULL },
	/* max_discard: a bigger {n+} is fatal at once, a smaller one is skipped */
	{ "a X {31+}\r\nb NOOP\r\n", 0, "X a [TOOBIG] Literal too large\nC b NOOP\n",
	  &skip_limits },
	{ "a X {30+}\r\n012345678901234567890123456789\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", &skip_limits },
	{ "a X {31}\r\nb NOOP\r\n", 0, "E a [TOOBIG] Literal too large\nC b NOOP\n",
	  &skip_limits },
	{ "a X ) {31+}\r\nb NOOP\r\n", 0, "X a Unexpected ')'\nC b NOOP\n", &skip_limits },
	{ "a X ) {30+}\r\n012345678901234567890123456789 z\r\nb NOOP\r\n", 0,
	  "E a Unexpected ')'\nC b NOOP\n", &skip_limits },
	{ "a X ) {99999999999999999999999+}\r\nb NOOP\r\n", 0,
	  "X a Unexpected ')'\nC b NOOP\n", NULL },
	/* max_skip: a failed line may go on for 50 more bytes */
	{ "a X ) 45678901234567890123456789012345678901234567890\r\nb NOOP\r\n", 0,
	  "E a Unexpected ')'\nC b NOOP\n", &skip_limits },
	{ "a X ) 456789012345678901234567890123456789012345678901 NOOP\r\n", 0,
	  "X a Command line too long\nE NOOP Missing command name\n", &skip_limits },
	{ "a X {18446744073709551615+}\r\nb NOOP\r\n", 0, "MORE\n", NULL }, /* still discarding */
	{ "a X {20+}\r\n01234567890123456789 {11+}\r\n0123456789\n\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", &total_limits },
	{ "a X {20+}\r\n01234567890123456789 {10}\r\nb NOOP\r\nxy\r\n", 0,
	  "+ 10\nC a X {20}\"01234567890123456789\" {10}\"b NOOP\\x0d\\x0axy\"\n", &total_limits },
	{ "a X {4+}\r\nabcd {5}\r\nabcde\r\n", 0, "+ 5\nC a X {4}\"abcd\" {5}\"abcde\"\n",
	  &minus_limits },
	{ "a X {5+}\r\nabcde {5}\r\nb NOOP\r\n", 0,
	  "E a [TOOBIG] Literal too large\nC b NOOP\n", &minus_limits },
	/* tags and names */
	{ "\r\nb NOOP\r\n", 0, "E * Empty command line\nC b NOOP\n", NULL },
	{ "\n", 0, "E * Empty command line\n", NULL },
	{ " NOOP\r\n", 0, "E * Missing tag\n", NULL },
	{ "a\r\n", 0, "E a Missing command name\n", NULL },
	{ "a \r\n", 0, "E a Missing command name\n", NULL },
	{ "a  NOOP\r\n", 0, "E a Missing command name\n", NULL },
	{ "a+ NOOP\r\nb NOOP\r\n", 0, "E * Invalid character in tag\nC b NOOP\n", NULL },
	{ "a* NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a% NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a( NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a) NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a{ NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a\" NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a\\ NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "\xc3\xa9 NOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a\tNOOP\r\n", 0, "E * Invalid character in tag\n", NULL },
	{ "a{5+} NOOP\r\n12345\r\nb NOOP\r\n", 0,
	  "E * Invalid character in tag\nE 12345 Missing command name\nC b NOOP\n", NULL },
	{ "a NO\"OP\r\n", 0, "E a Invalid character in command name\n", NULL },
	{ "a NO]OP\r\n", 0, "E a Invalid character in command name\n", NULL },
	{ "a NO(OP\r\n", 0, "E a Invalid character in command name\n", NULL },
	/* NULs and CRs in lines */
	{ L("a1 NO\0OP\r\nb NOOP\r\n"), "E a1 NUL byte in command line\nC b NOOP\n", NULL },
	{ L("\0a NOOP\r\nb NOOP\r\n"), "E * NUL byte in command line\nC b NOOP\n", NULL },
	{ L("a X \"a\0\"\r\n"), "E a NUL byte in command line\n", NULL },
	{ L("a X \"a\"\0\r\n"), "E a NUL byte in command line\n", NULL },
	{ L("a NOOP\0\r\n"), "E a NUL byte in command line\n", NULL },
	{ L("a NOOP\r\0\n"), "E a NUL byte in command line\n", NULL },
	{ "a NO\rOP\r\nb NOOP\r\n", 0, "E a CR not followed by LF\nC b NOOP\n", NULL },
	{ "a NOOP\r\r\n", 0, "E a CR not followed by LF\n", NULL },
	/* quoted strings */
	{ "a LOGIN \"abc\r\nb NOOP\r\n", 0, "E a Unterminated quoted string\nC b NOOP\n", NULL },
	{ "a LOGIN \"abc\\\"\r\n", 0, "E a Unterminated quoted string\n", NULL },
	{ "a LOGIN \"abc\\\r\n", 0, "E a Invalid escape in quoted string\n", NULL },
	{ "a LOGIN \"a\\nb\"\r\n", 0, "E a Invalid escape in quoted string\n", NULL },
	{ "a X \"\xc3\x28\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xc0\xaf\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xe0\x80\xaf\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xed\xa0\x80\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xf4\x90\x80\x80\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xf8\x88\x80\x80\x80\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\x80\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xe5\x8f\"\r\n", 0, "E a Invalid UTF-8 in quoted string\n", NULL },
	{ "a X \"\xe5\x8f\r\nb NOOP\r\n", 0, "E a Invalid UTF-8 in quoted string\nC b NOOP\n",
	  NULL },
	{ "a X \"a\"b\r\n", 0, "E a Missing space between arguments\n", NULL },
	{ "a X \"a\"\"b\"\r\n", 0, "E a Missing space between arguments\n", NULL },
	/* atoms and lists */
	{ "a X caf\xc3\xa9\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X a\\b\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X a{3}\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X a\"b\"\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X a(b)\r\n", 0, "E a Invalid character in atom\n", NULL },
	{ "a X (a\r\nb NOOP\r\n", 0, "E a Missing ')'\nC b NOOP\n", NULL },
	{ "a X a)\r\n", 0, "E a Unexpected ')'\n", NULL },
	{ "a X )\r\n", 0, "E a Unexpected ')'\n", NULL },
	{ "a X (a )\r\n", 0, "E a Unexpected ')'\n", NULL },
	{ "a X ( a)\r\n", 0, "E a Invalid character in argument\n", NULL },
	{ "a X (a)(b)\r\n", 0, "E a Missing space between arguments\n", NULL },
	{ "a X  a\r\n", 0, "E a Invalid character in argument\n", NULL },
	{ "a NOOP \r\n", 0, "E a Missing argument\n", NULL },
	{ "a X a \r\n", 0, "E a Missing argument\n", NULL },
	{ "a X ((((((a))))))\r\nb NOOP\r\n", 0, "E a Too deeply nested lists\nC b NOOP\n", NULL },
	{ "a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 "
	  "30\r\n", 0,
	  "C a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 "
	  "30\n", NULL },
	{ "a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 "
	  "31\r\nb NOOP\r\n", 0, "E a Too many arguments\nC b NOOP\n", NULL },
	{ "a X (1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29)\r\n",
	  0, "C a X (1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 "
	     "29)\n", NULL },
	{ "a X (1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30)"
	  "\r\n", 0, "E a Too many arguments\n", NULL },
	{ "a X 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 "
	  "{5+}\r\n12345\r\nb NOOP\r\n", 0, "E a Too many arguments\nC b NOOP\n", NULL },
};

/* Append s to the transcript with non-printable bytes, quotes and backslashes escaped. */
static void put_escaped(struct buf *t, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			assert_int_equal(buf_appendf(t, "\\%c", c), 0);
		else if (c < 0x20 || c >= 0x7f)
			assert_int_equal(buf_appendf(t, "\\x%02x", c), 0);
		else
			assert_int_equal(buf_append(t, &c, 1), 0);
	}
}

/* Append one argument; lists recurse (test inputs nest at most a few levels). */
static void put_arg(struct buf *t, const struct imap_arg *a)
{
	assert_non_null(a->str);
	assert_int_equal(a->str[a->len], '\0');
	if (a->type != IMAP_ARG_LITERAL || a->literal8 == 0)
		assert_int_equal(strlen(a->str), a->len);
	switch (a->type) {
	case IMAP_ARG_ATOM:
		assert_int_equal(a->literal8, 0);
		assert_true(a->len > 0);
		buf_append(t, a->str, a->len); /* raw: printable ASCII only */
		break;
	case IMAP_ARG_NIL:
		assert_int_equal(a->len, 3);
		buf_appendstr(t, "NIL");
		break;
	case IMAP_ARG_QUOTED:
		buf_appendstr(t, "\"");
		put_escaped(t, a->str, a->len);
		buf_appendstr(t, "\"");
		break;
	case IMAP_ARG_LITERAL:
		buf_appendf(t, "%s{%zu}\"", a->literal8 ? "~" : "", a->len);
		put_escaped(t, a->str, a->len);
		buf_appendstr(t, "\"");
		break;
	case IMAP_ARG_LIST:
		assert_int_equal(a->len, 0);
		assert_true(a->nlist == 0 || a->list != NULL);
		buf_appendstr(t, "(");
		for (size_t i = 0; i < a->nlist; i++) {
			if (i > 0)
				buf_appendstr(t, " ");
			put_arg(t, &a->list[i]);
		}
		buf_appendstr(t, ")");
		break;
	}
}

/* Record one parser result in the transcript. */
static void put_result(struct buf *t, struct imap_parser *p, enum imap_parse_result r)
{
	const struct imap_arg *args;
	size_t n;
	switch (r) {
	case IMAP_PARSE_MORE:
		break;
	case IMAP_PARSE_CONTINUE:
		buf_appendf(t, "+ %zu\n", imap_parser_literal_size(p));
		break;
	case IMAP_PARSE_COMMAND:
		assert_non_null(imap_parser_tag(p));
		assert_non_null(imap_parser_name(p));
		assert_null(imap_parser_error(p));
		buf_appendf(t, "C %s %s", imap_parser_tag(p), imap_parser_name(p));
		args = imap_parser_args(p, &n);
		assert_true(n == 0 || args != NULL);
		for (size_t i = 0; i < n; i++) {
			buf_appendstr(t, " ");
			put_arg(t, &args[i]);
		}
		buf_appendstr(t, "\n");
		break;
	case IMAP_PARSE_ERROR:
		assert_non_null(imap_parser_error(p));
		args = imap_parser_args(p, &n);
		assert_int_equal(n, 0);
		buf_appendf(t, "%s %s %s\n", imap_parser_fatal(p) ? "X" : "E",
			    imap_parser_tag(p) ? imap_parser_tag(p) : "*",
			    imap_parser_error(p));
		break;
	}
}

/* Small deterministic generator for chunk sizes. */
static uint32_t rng_next(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 16) & 0x7fff;
}

/* Feed in[0..len) in chunks (chunk 0: all at once, else 1 byte, or random when seed != 0) and
 * return the transcript in t. */
static void run_feed(struct buf *t, const struct imap_parser_limits *lim, const char *in,
		     size_t len, size_t chunk, uint32_t seed)
{
	struct imap_parser *p = imap_parser_new(lim);
	enum imap_parse_result r = IMAP_PARSE_MORE;
	size_t pos = 0;
	assert_non_null(p);
	buf_reset(t);
	while (pos < len) {
		size_t n = len - pos;
		if (seed != 0)
			chunk = 1 + rng_next(&seed) % 17;
		if (chunk != 0 && n > chunk)
			n = chunk;
		/* feed this chunk until it is used up, as a session would */
		size_t off = 0;
		do {
			size_t used = 12345;
			r = imap_parser_feed(p, in + pos + off, n - off, &used);
			assert_true(used <= n - off);
			if (r == IMAP_PARSE_MORE)
				assert_int_equal(used, n - off);
			else
				assert_true(used > 0);
			off += used;
			put_result(t, p, r);
		} while (off < n);
		pos += n;
	}
	if (r == IMAP_PARSE_MORE)
		buf_appendstr(t, "MORE\n");
	imap_parser_free(&p);
	assert_null(p);
}

/* Every row gives the same, expected transcript whole, bytewise and in random chunks. */
static void test_table(void **state)
{
	struct buf t;
	(void)state;
	buf_init(&t, 1 << 20);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];
		size_t len = c->in_len ? c->in_len : strlen(c->in);
		const struct imap_parser_limits *lim = c->lim ? c->lim : &small_limits;
		for (uint32_t mode = 0; mode < 8; mode++) {
			uint32_t seed = mode >= 2 ? mode * 7919 : 0;
			run_feed(&t, lim, c->in, len, mode == 1 ? 1 : 0, seed);
			if (strcmp(t.data, c->want) != 0) {
				print_error("case %zu mode %u\n in:   %s\n got:  %s want: %s", i,
					    (unsigned)mode, c->in, t.data, c->want);
				fail();
			}
		}
	}
	buf_free(&t);
}

/* Feed a whole string, expecting one result that consumed it all. */
static enum imap_parse_result feed_str(struct imap_parser *p, const char *s)
{
	size_t used = 0;
	enum imap_parse_result r = imap_parser_feed(p, s, strlen(s), &used);
	assert_int_equal(used, strlen(s));
	return r;
}

/* A command's args survive while the next command is read, until that one completes. */
static void test_args_lifetime(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	const struct imap_arg *args;
	size_t n;
	(void)state;
	assert_int_equal(feed_str(p, "a1 LOGIN {4+}\r\nuser \"secret\"\r\n"), IMAP_PARSE_COMMAND);
	args = imap_parser_args(p, &n);
	assert_int_equal(n, 2);
	assert_int_equal(feed_str(p, "a2 SELECT {5}\r\n"), IMAP_PARSE_CONTINUE);
	assert_int_equal(feed_str(p, "INB"), IMAP_PARSE_MORE);
	/* still the first command */
	assert_string_equal(imap_parser_tag(p), "a1");
	assert_string_equal(imap_parser_name(p), "LOGIN");
	assert_string_equal(args[0].str, "user");
	assert_string_equal(args[1].str, "secret");
	assert_int_equal(feed_str(p, "OX\r\n"), IMAP_PARSE_COMMAND);
	args = imap_parser_args(p, &n);
	assert_int_equal(n, 1);
	assert_string_equal(args[0].str, "INBOX");
	assert_int_equal(args[0].type, IMAP_ARG_LITERAL);
	assert_true(imap_arg_is_astring(&args[0]));
	assert_true(imap_arg_is_string(&args[0]));
	assert_false(imap_arg_atom_equals(&args[0], "INBOX"));
	assert_string_equal(imap_parser_tag(p), "a2");
	assert_int_equal(feed_str(p, "a3 x\r\n"), IMAP_PARSE_COMMAND);
	assert_string_equal(imap_parser_name(p), "X");
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL is fine */
}

/* The literal continuation flow step by step, and reset in the middle of a command. */
static void test_continue_and_reset(void **state)
{
	struct imap_parser *p = imap_parser_new(&small_limits);
	size_t used;
	(void)state;
	/* bytes after the LF are not consumed by CONTINUE */
	const char *s = "a LOGIN {3}\r\nbob {2}\r\npw\r\n";
	assert_int_equal(imap_parser_feed(p, s, strlen(s), &used), IMAP_PARSE_CONTINUE);
	assert_int_equal(used, 13);
	assert_int_equal(imap_parser_literal_size(p), 3);
	s += used;
	assert_int_equal(imap_parser_feed(p, s, strlen(s), &used), IMAP_PARSE_CONTINUE);
	assert_int_equal(used, 9);
	assert_int_equal(imap_parser_literal_size(p), 2);
	s += used;
	assert_int_equal(imap_parser_feed(p, s, strlen(s), &used), IMAP_PARSE_COMMAND);
	assert_int_equal(used, 4);
	/* a zero-length feed changes nothing */
	assert_int_equal(imap_parser_feed(p, "", 0, &used), IMAP_PARSE_MORE);
	assert_int_equal(used, 0);
	assert_string_equal(imap_parser_tag(p), "a");

	/* reset forgets a half-read command and the last result */
	assert_int_equal(feed_str(p, "b APPEND x {10}\r\n"), IMAP_PARSE_CONTINUE);
	assert_int_equal(feed_str(p, "abc"), IMAP_PARSE_MORE);
	imap_parser_reset(p);
	assert_null(imap_parser_tag(p));
	assert_null(imap_parser_error(p));
	assert_int_equal(feed_str(p, "c NOOP\r\n"), IMAP_PARSE_COMMAND);
	assert_string_equal(imap_parser_tag(p), "c");
	assert_int_equal(feed_str(p, "d LOGIN {5+}\r\nab"), IMAP_PARSE_MORE);
	imap_parser_reset(p);
	assert_int_equal(feed_str(p, "e NOOP\r\n"), IMAP_PARSE_COMMAND);
	assert_string_equal(imap_parser_tag(p), "e");
	imap_parser_free(&p);
}

/* Build "a X " + n '(' [+ n ')'] + CRLF + "b NOOP\r\n" in a fresh buffer. */
static char *deep_input(size_t n, int closed, size_t *len_r)
{
	char *s = malloc(2 * n + 32);
	size_t k = 0;
	assert_non_null(s);
	memcpy(s, "a X ", 4);
	k = 4;
	memset(s + k, '(', n);
	k += n;
	if (closed) {
		memset(s + k, ')', n);
		k += n;
	}
	memcpy(s + k, "\r\nb NOOP\r\n", 10);
	k += 10;
	*len_r = k;
	return s;
}

/* 10,000 nested '(' fail on the depth limit; with generous limits they parse without recursion. */
static void test_deep_nesting(void **state)
{
	struct buf t;
	size_t len;
	char *s = deep_input(10000, 0, &len);
	(void)state;
	buf_init(&t, 1 << 20);
	run_feed(&t, &small_limits, s, len, 0, 0);
	assert_string_equal(t.data, "E a Too deeply nested lists\nC b NOOP\n");
	struct imap_parser_limits big = { .max_line = 100000, .max_depth = 64, .max_args = 100000 };
	run_feed(&t, &big, s, len, 0, 0);
	assert_string_equal(t.data, "E a Too deeply nested lists\nC b NOOP\n");
	run_feed(&t, &big, s, len, 1, 0);
	assert_string_equal(t.data, "E a Too deeply nested lists\nC b NOOP\n");
	free(s);

	/* depth 10,000 allowed: parse it and walk it iteratively */
	s = deep_input(10000, 1, &len);
	big.max_depth = 20000;
	struct imap_parser *p = imap_parser_new(&big);
	size_t used, n;
	assert_int_equal(imap_parser_feed(p, s, len, &used), IMAP_PARSE_COMMAND);
	const struct imap_arg *a = imap_parser_args(p, &n);
	assert_int_equal(n, 1);
	size_t depth = 0;
	while (a->type == IMAP_ARG_LIST && a->nlist == 1) {
		a = &a->list[0];
		depth++;
	}
	assert_int_equal(a->type, IMAP_ARG_LIST);
	assert_int_equal(a->nlist, 0);
	assert_int_equal(depth, 9999);
	assert_int_equal(imap_parser_feed(p, s + used, len - used, &used), IMAP_PARSE_COMMAND);
	imap_parser_free(&p);
	free(s);
	buf_free(&t);
}

/* A huge line is refused once, without buffering it, and the next command parses. */
static void test_huge_line(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	char chunk[4096];
	size_t used;
	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	assert_int_equal(feed_str(p, "a1 APPEND "), IMAP_PARSE_MORE);
	for (int i = 0; i < 1000; i++) { /* 4 MB */
		assert_int_equal(imap_parser_feed(p, chunk, sizeof(chunk), &used), IMAP_PARSE_MORE);
		assert_int_equal(used, sizeof(chunk));
	}
	const char *rest = "\r\na2 NOOP\r\n";
	assert_int_equal(imap_parser_feed(p, rest, strlen(rest), &used), IMAP_PARSE_ERROR);
	assert_int_equal(used, 2);
	assert_string_equal(imap_parser_tag(p), "a1");
	assert_string_equal(imap_parser_error(p), "Command line too long");
	assert_int_equal(feed_str(p, rest + used), IMAP_PARSE_COMMAND);
	assert_string_equal(imap_parser_tag(p), "a2");
	imap_parser_free(&p);
}

/* A big LITERAL+ over the limit is discarded in bulk and the session resyncs. */
static void test_big_literal_plus(void **state)
{
	struct imap_parser_limits lim = { .max_literal = 1000 };
	struct imap_parser *p = imap_parser_new(&lim);
	char chunk[4096];
	size_t used;
	(void)state;
	/* the discarded data looks like commands: none of it may be parsed */
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = "z NOOP\r\n"[i % 8];
	assert_int_equal(feed_str(p, "a1 APPEND INBOX {409600+}\r\n"), IMAP_PARSE_MORE);
	for (int i = 0; i < 100; i++)
		assert_int_equal(imap_parser_feed(p, chunk, sizeof(chunk), &used), IMAP_PARSE_MORE);
	const char *rest = "\r\na2 NOOP\r\n";
	assert_int_equal(imap_parser_feed(p, rest, strlen(rest), &used), IMAP_PARSE_ERROR);
	assert_int_equal(used, 2);
	assert_string_equal(imap_parser_tag(p), "a1");
	assert_string_equal(imap_parser_error(p), "[TOOBIG] Literal too large");
	assert_int_equal(feed_str(p, rest + used), IMAP_PARSE_COMMAND);
	assert_string_equal(imap_parser_tag(p), "a2");

	/* a literal at the limit is accepted, a large literal8 with NULs too */
	char *big = calloc(1, 1000);
	assert_non_null(big);
	assert_int_equal(feed_str(p, "a3 APPEND INBOX ~{1000+}\r\n"), IMAP_PARSE_MORE);
	assert_int_equal(imap_parser_feed(p, big, 1000, &used), IMAP_PARSE_MORE);
	assert_int_equal(feed_str(p, "\r\n"), IMAP_PARSE_COMMAND);
	const struct imap_arg *a = imap_parser_args(p, &used);
	assert_int_equal(used, 2);
	assert_int_equal(a[1].type, IMAP_ARG_LITERAL);
	assert_int_equal(a[1].literal8, 1);
	assert_int_equal(a[1].len, 1000);
	assert_memory_equal(a[1].str, big, 1000);
	free(big);
	imap_parser_free(&p);
}

/* With max_skip, a line without LF that exceeds the line limit ends in a fatal error after
 * max_line + max_skip bytes, however much more follows (nothing is swallowed for ever). */
static void test_overlong_fatal(void **state)
{
	struct imap_parser_limits lim = { .max_line = 1000, .max_skip = 1000 };
	struct imap_parser *p = imap_parser_new(&lim);
	char chunk[100];
	size_t used, fed = 0;
	enum imap_parse_result r = IMAP_PARSE_MORE;
	(void)state;
	memset(chunk, 'x', sizeof(chunk));
	assert_int_equal(feed_str(p, "a1 X "), IMAP_PARSE_MORE);
	fed = 5;
	for (int i = 0; i < 100 && r == IMAP_PARSE_MORE; i++) {
		r = imap_parser_feed(p, chunk, sizeof(chunk), &used);
		fed += used;
	}
	assert_int_equal(r, IMAP_PARSE_ERROR);
	assert_int_equal(imap_parser_fatal(p), 1);
	assert_int_equal(fed, 2001);
	assert_string_equal(imap_parser_tag(p), "a1");
	assert_string_equal(imap_parser_error(p), "Command line too long");
	/* the next command is not fatal */
	imap_parser_reset(p);
	assert_int_equal(imap_parser_fatal(p), 0);
	assert_int_equal(feed_str(p, "a2 NOOP\r\n"), IMAP_PARSE_COMMAND);
	assert_int_equal(imap_parser_fatal(p), 0);
	imap_parser_free(&p);
}

/* imap_parser_set_limits() between commands: small literals before login, big ones after. */
static void test_set_limits(void **state)
{
	struct imap_parser_limits pre = { .max_line = 100, .max_literal = 100,
					  .max_literal_nonsync = 10, .max_discard = 100,
					  .max_skip = 100 };
	struct imap_parser_limits post = { .max_line = 300, .max_literal = 1000,
					   .max_literal_total = 2000 };
	struct imap_parser *p = imap_parser_new(&pre);
	size_t used;
	(void)state;
	assert_int_equal(feed_str(p, "a LOGIN {101}\r\n"), IMAP_PARSE_ERROR);
	assert_int_equal(imap_parser_fatal(p), 0);
	assert_int_equal(feed_str(p, "a LOGIN {11+}\r\n"), IMAP_PARSE_MORE);
	assert_int_equal(feed_str(p, "01234567890\r\n"), IMAP_PARSE_ERROR);
	assert_string_equal(imap_parser_error(p), "[TOOBIG] Literal too large");
	assert_int_equal(feed_str(p, "a LOGIN {1000+}\r\n"), IMAP_PARSE_ERROR);
	assert_int_equal(imap_parser_fatal(p), 1);
	assert_int_equal(feed_str(p, "a LOGIN {10+}\r\n0123456789 x\r\n"), IMAP_PARSE_COMMAND);
	imap_parser_set_limits(p, &post);
	char *big = malloc(1500);
	assert_non_null(big);
	memset(big, 'm', 1000);
	assert_int_equal(feed_str(p, "b APPEND INBOX {1000+}\r\n"), IMAP_PARSE_MORE);
	assert_int_equal(imap_parser_feed(p, big, 1000, &used), IMAP_PARSE_MORE);
	assert_int_equal(feed_str(p, "\r\n"), IMAP_PARSE_COMMAND);
	/* longer lines now, and no limit on skipping */
	memset(big, 'y', 1500);
	memcpy(big, "c X ", 4);
	memcpy(big + 250, "\r\n", 2);
	assert_int_equal(imap_parser_feed(p, big, 252, &used), IMAP_PARSE_COMMAND);
	memset(big + 250, 'y', 2);
	assert_int_equal(imap_parser_feed(p, big, 1500, &used), IMAP_PARSE_MORE);
	assert_int_equal(feed_str(p, "\r\n"), IMAP_PARSE_ERROR);
	assert_int_equal(imap_parser_fatal(p), 0);
	free(big);
	imap_parser_free(&p);
}

/* NULL limits select the defaults. */
static void test_defaults(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL);
	size_t used;
	char spec[64];
	(void)state;
	snprintf(spec, sizeof(spec), "a X {%d}\r\n", IMAP_PARSER_DEFAULT_MAX_LITERAL);
	assert_int_equal(imap_parser_feed(p, spec, strlen(spec), &used), IMAP_PARSE_CONTINUE);
	imap_parser_reset(p);
	snprintf(spec, sizeof(spec), "a X {%d}\r\n", IMAP_PARSER_DEFAULT_MAX_LITERAL + 1);
	assert_int_equal(imap_parser_feed(p, spec, strlen(spec), &used), IMAP_PARSE_ERROR);
	imap_parser_free(&p);
}

/* Run in[0..len) in all feed modes and compare with want. */
static void check_all_modes(const struct imap_parser_limits *lim, const char *in, size_t len,
			    const char *want)
{
	struct buf t;
	buf_init(&t, 1 << 20);
	for (uint32_t mode = 0; mode < 8; mode++) {
		run_feed(&t, lim, in, len, mode == 1 ? 1 : 0, mode >= 2 ? mode * 104729 : 0);
		assert_string_equal(t.data, want);
	}
	buf_free(&t);
}

/* max_line counts every non-literal byte of a command, CRLFs included, and nothing else. */
static void test_line_limit(void **state)
{
	char in[1024], want[1024];
	(void)state;
	for (size_t total = 195; total <= 205; total++) {
		/* "a X " + atom + CRLF == total bytes, then a good command */
		size_t k = total - 6;
		memcpy(in, "a X ", 4);
		memset(in + 4, 'x', k);
		memcpy(in + 4 + k, "\r\nb NOOP\r\n", 11);
		if (total <= 200)
			snprintf(want, sizeof(want), "C a X %.*s\nC b NOOP\n", (int)k, in + 4);
		else
			snprintf(want, sizeof(want), "E a Command line too long\nC b NOOP\n");
		check_all_modes(&small_limits, in, strlen(in), want);

		/* the same with a bare LF: one byte less */
		memcpy(in + 4 + k, "\nb NOOP\r\n", 10);
		if (total - 1 <= 200)
			snprintf(want, sizeof(want), "C a X %.*s\nC b NOOP\n", (int)k, in + 4);
		else
			snprintf(want, sizeof(want), "E a Command line too long\nC b NOOP\n");
		check_all_modes(&small_limits, in, strlen(in), want);

		/* "a X {20+}CRLF" (11) + 20 literal bytes + " " + atom + CRLF: the literal does
		 * not count */
		k = total - 11 - 1 - 2;
		size_t n = (size_t)snprintf(in, sizeof(in), "a X {20+}\r\n%s ",
					    "ABCDEFGHIJKLMNOPQRST");
		memset(in + n, 'y', k);
		memcpy(in + n + k, "\r\nb NOOP\r\n", 11);
		if (total <= 200)
			snprintf(want, sizeof(want),
				 "C a X {20}\"ABCDEFGHIJKLMNOPQRST\" %.*s\nC b NOOP\n", (int)k,
				 in + n);
		else
			snprintf(want, sizeof(want), "E a Command line too long\nC b NOOP\n");
		check_all_modes(&small_limits, in, strlen(in), want);

		/* too long, and the rest of the line announces a LITERAL+ that must be skipped */
		if (total > 200) {
			n = (size_t)snprintf(in, sizeof(in), "a X ");
			memset(in + n, 'z', total);
			n += total;
			snprintf(in + n, sizeof(in) - n, " {8+}\r\nc NOOP\r\n\r\nb NOOP\r\n");
			check_all_modes(&small_limits, in, strlen(in),
					"E a Command line too long\nC b NOOP\n");
		}
	}
	/* a tag longer than the line: untagged */
	memset(in, 't', 300);
	snprintf(in + 300, sizeof(in) - 300, " NOOP\r\nb NOOP\r\n");
	check_all_modes(&small_limits, in, strlen(in), "E * Command line too long\nC b NOOP\n");
}

/* Run the tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_args_lifetime),
		cmocka_unit_test(test_continue_and_reset),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_huge_line),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_big_literal_plus),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_overlong_fatal),
		cmocka_unit_test(test_set_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
