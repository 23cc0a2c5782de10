/* test-addr.c - unit tests for addr.c: RFC 5321 paths, formatting, RFC 5322 address lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define F_NULL ADDR_F_NULL
#define F_ROUTE ADDR_F_ROUTE
#define F_QUOTED ADDR_F_QUOTED
#define F_IPLIT ADDR_F_IPLITERAL
#define F_UTF8 ADDR_F_UTF8
#define F_RELAY ADDR_F_RELAYCHARS

struct path_case {
	const char *in;
	int utf8;             /* allow_utf8 */
	int rc;               /* 0 or -1 */
	const char *local;    /* want, when rc == 0 */
	const char *domain;
	unsigned flags;
	size_t consumed;      /* octets up to and including '>' */
};

static const struct path_case path_cases[] = {
	/* the null path */
	{ "<>", 0, 0, "", "", F_NULL, 2 },
	{ "<> SIZE=100", 0, 0, "", "", F_NULL, 2 },
	/* plain */
	{ "<user@example.test>", 0, 0, "user", "example.test", 0, 19 },
	{ "<User.Name@EXAMPLE.Test>", 0, 0, "User.Name", "example.test", 0, 24 },
	{ "<u@x> SIZE=1", 0, 0, "u", "x", 0, 5 },
	{ "<a+tag@x-y.test>", 0, 0, "a+tag", "x-y.test", 0, 16 },
	{ "<xn--a--b@xn--bcher-kva.test>", 0, 0, "xn--a--b", "xn--bcher-kva.test", 0, 29 },
	/* relay tricks (issue 2) */
	{ "<u%remote.test@ours>", 0, 0, "u%remote.test", "ours", F_RELAY, 20 },
	{ "<u!remote.test@ours>", 0, 0, "u!remote.test", "ours", F_RELAY, 20 },
	{ "<@ours:u@remote.test>", 0, 0, "u", "remote.test", F_ROUTE, 21 },
	{ "<@a.test,@b.test:u@c.test>", 0, 0, "u", "c.test", F_ROUTE, 26 },
	{ "<u@remote.test@ours>", 0, -1, NULL, NULL, 0, 0 },
	{ "<\"u@remote\"@ours>", 0, 0, "u@remote", "ours", F_QUOTED | F_RELAY, 17 },
	{ "<u@[1.2.3.4]>", 0, 0, "u", "[1.2.3.4]", F_IPLIT, 13 },
	{ "<u@[IPv6:2001:db8::1]>", 0, 0, "u", "[IPv6:2001:db8::1]", F_IPLIT, 22 },
	{ "<u@[ipv6:::ffff:1.2.3.4]>", 0, 0, "u", "[ipv6:::ffff:1.2.3.4]", F_IPLIT, 25 },
	{ "<@ours,:u@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<@ours u@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<@:u@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<@[1.2.3.4]:u@x>", 0, -1, NULL, NULL, 0, 0 },
	/* address literals */
	{ "<u@[1.2.3.256]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[1.2.3]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[1.2.3.4.5]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[1234.1.1.1]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[IPv6:zz::1]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[IPv6:]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[x-tag:foo]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[]>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[1.2.3.4>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@[1.2.3.4]x>", 0, -1, NULL, NULL, 0, 0 },
	/* quoted local parts */
	{ "<\"john doe\"@x.test>", 0, 0, "john doe", "x.test", F_QUOTED, 19 },
	{ "<\"john\"@x.test>", 0, 0, "john", "x.test", F_QUOTED, 15 },
	{ "<\"a\\\"b\"@x>", 0, 0, "a\"b", "x", F_QUOTED, 10 },
	{ "<\"a\\\\b\"@x>", 0, 0, "a\\b", "x", F_QUOTED, 10 },
	{ "<\"\"@x>", 0, 0, "", "x", F_QUOTED, 6 },
	{ "<\"a\x01\"@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<\"a\\\x01\"@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<\"a\tb\"@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<\"abc@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<\"a\"b@x>", 0, -1, NULL, NULL, 0, 0 },
	/* dot-strings */
	{ "<.john@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<john.@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<jo..hn@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<jo(hn@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u @x>", 0, -1, NULL, NULL, 0, 0 },
	{ "< u@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x >", 0, -1, NULL, NULL, 0, 0 },
	/* domains */
	{ "<u@-x.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x-.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x..test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x.test.>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@.x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x_y.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@>", 0, -1, NULL, NULL, 0, 0 },
	/* incomplete */
	{ "", 0, -1, NULL, NULL, 0, 0 },
	{ "<", 0, -1, NULL, NULL, 0, 0 },
	{ "<@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@x", 0, -1, NULL, NULL, 0, 0 },
	{ "u@x", 0, -1, NULL, NULL, 0, 0 },
	{ "<<u@x>>", 0, -1, NULL, NULL, 0, 0 },
	/* UTF-8 (RFC 6531) */
	{ "<jörg@bücher.test>", 1, 0, "jörg", "bücher.test", F_UTF8, 20 },
	{ "<jörg@bücher.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<jorg@bücher.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<jörg@x.test>", 0, -1, NULL, NULL, 0, 0 },
	{ "<u@BÜCHER.Test>", 1, 0, "u", "bÜcher.test", F_UTF8, 16 },
	{ "<\"jö rg\"@x>", 1, 0, "jö rg", "x", F_QUOTED | F_UTF8, 12 },
	{ "<\"jö rg\"@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<@bücher.test:u@x>", 0, -1, NULL, NULL, 0, 0 },
	{ "<@bücher.test:u@x>", 1, 0, "u", "x", F_ROUTE, 19 },
	{ "<ü%x@y>", 1, 0, "ü%x", "y", F_UTF8 | F_RELAY, 8 },
	{ "<j\xc3(@x>", 1, -1, NULL, NULL, 0, 0 },       /* truncated sequence */
	{ "<j\xc0\xaf@x>", 1, -1, NULL, NULL, 0, 0 },    /* overlong '/' */
	{ "<j\xed\xa0\x80@x>", 1, -1, NULL, NULL, 0, 0 },/* surrogate */
	{ "<j\xf4\x90\x80\x80@x>", 1, -1, NULL, NULL, 0, 0 },/* above U+10FFFF */
	{ "<j\xff@x>", 1, -1, NULL, NULL, 0, 0 },
	{ "<u@\xc3>", 1, -1, NULL, NULL, 0, 0 },
	{ "<\"\xc3\"@x>", 1, -1, NULL, NULL, 0, 0 },
};

/* Copy s[0..n) into a heap block of exactly n octets so ASan catches any read past n. */
static char *exact_copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

/* Each row: the result, the decoded parts, the flags and where the path ends. */
static void test_path_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		size_t n = strlen(c->in);
		char *in = exact_copy(c->in, n);
		struct addr a;
		const char *end = NULL;
		int rc = addr_parse_path(in, n, c->utf8, &a, &end);
		if (rc != c->rc)
			fail_msg("row %zu \"%s\" utf8=%d: rc %d, want %d", i, c->in, c->utf8, rc,
				 c->rc);
		if (rc == 0) {
			assert_string_equal(a.local, c->local);
			assert_string_equal(a.domain, c->domain);
			if (a.flags != c->flags)
				fail_msg("row %zu \"%s\": flags %#x, want %#x", i, c->in, a.flags,
					 c->flags);
			assert_ptr_equal(end, in + c->consumed);
		} else {
			assert_string_equal(a.local, "");
			assert_int_equal(a.flags, 0);
		}
		free(in);
	}
}

/* Every strict prefix of a valid path is rejected, reading only inside the prefix. */
static void test_path_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		if (c->rc != 0)
			continue;
		for (size_t k = 0; k < c->consumed; k++) {
			char *in = exact_copy(c->in, k);
			struct addr a;
			const char *end;
			if (addr_parse_path(in, k, c->utf8, &a, &end) != -1)
				fail_msg("row %zu prefix %zu accepted", i, k);
			free(in);
		}
	}
}

/* An embedded NUL is just an invalid octet. */
static void test_path_nul(void **state)
{
	(void)state;
	struct addr a;
	const char *end;
	assert_int_equal(addr_parse_path("<u\0@x>", 6, 1, &a, &end), -1);
	assert_int_equal(addr_parse_path("<\"u\0\"@x>", 8, 1, &a, &end), -1);
	assert_int_equal(addr_parse_path("<u@x\0>", 6, 1, &a, &end), -1);
	assert_int_equal(addr_parse_path("<u@[1.2.3.4\0]>", 14, 1, &a, &end), -1);
	assert_int_equal(addr_parse_path("<u@[IPv6:::1\0]>", 15, 1, &a, &end), -1);
	assert_int_equal(addr_parse_path(NULL, 0, 1, &a, &end), -1);
}

/* Fill buf with a domain of exactly n octets, labels of at most 63 ("aaa.bbb..."). */
static void make_domain(char *buf, size_t n)
{
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		if (label == 63 && i + 1 < n) {
			buf[i] = '.';
			label = 0;
		} else {
			buf[i] = (char)('a' + (i % 26));
			label++;
		}
	}
	buf[n] = '\0';
}

/* Parse "<" local "@" domain ">" built from the parts; returns the result. */
static int parse_built(const char *local, const char *domain, struct addr *a)
{
	char buf[1024];
	const char *end;
	int n = snprintf(buf, sizeof(buf), "<%s@%s>", local, domain);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	char *in = exact_copy(buf, (size_t)n);
	int rc = addr_parse_path(in, (size_t)n, 0, a, &end);
	if (rc == 0)
		assert_ptr_equal(end, in + n);
	free(in);
	return rc;
}

/* RFC 5321 4.5.3.1: local part 64, path 256 (brackets included), labels 63. */
static void test_path_limits(void **state)
{
	(void)state;
	struct addr a;
	char local[128], dom[300];
	memset(local, 'l', 64);
	local[64] = '\0';
	assert_int_equal(parse_built(local, "x.test", &a), 0);
	assert_int_equal(strlen(a.local), 64);
	local[64] = 'l';
	local[65] = '\0';
	assert_int_equal(parse_built(local, "x.test", &a), -1);

	/* quoted: the 64 counts the quotes as written */
	local[0] = '"';
	memset(local + 1, 'q', 62);
	local[63] = '"';
	local[64] = '\0';
	assert_int_equal(parse_built(local, "x", &a), 0);
	assert_int_equal(strlen(a.local), 62);
	local[63] = 'q';
	local[64] = '"';
	local[65] = '\0';
	assert_int_equal(parse_built(local, "x", &a), -1);

	/* path: "<a@" + domain + ">" is 4 + domain octets */
	make_domain(dom, 252);
	assert_int_equal(parse_built("a", dom, &a), 0);   /* 256 */
	assert_string_equal(a.domain, dom);
	make_domain(dom, 253);
	assert_int_equal(parse_built("a", dom, &a), -1);  /* 257 */
	/* a 255-octet domain is legal on its own but can never fit a path */
	make_domain(dom, 255);
	assert_int_equal(parse_built("a", dom, &a), -1);
	/* the route counts toward the path limit */
	{
		char buf[600];
		const char *end;
		make_domain(dom, 240);
		int n = snprintf(buf, sizeof(buf), "<@%s:u@%s>", "r.test", dom);
		assert_int_equal(n, 252);
		assert_int_equal(addr_parse_path(buf, (size_t)n, 0, &a, &end), 0);
		n = snprintf(buf, sizeof(buf), "<@%s:u@%s>", "rrrrr.test", dom);
		assert_int_equal(n, 256);
		assert_int_equal(addr_parse_path(buf, (size_t)n, 0, &a, &end), 0);
		n = snprintf(buf, sizeof(buf), "<@%s:u@%s>", "rrrrrr.test", dom);
		assert_int_equal(n, 257);
		assert_int_equal(addr_parse_path(buf, (size_t)n, 0, &a, &end), -1);
	}

	/* labels: 63 ok, 64 not */
	memset(dom, 'd', 63);
	strcpy(dom + 63, ".test");
	assert_int_equal(parse_built("a", dom, &a), 0);
	memset(dom, 'd', 64);
	strcpy(dom + 64, ".test");
	assert_int_equal(parse_built("a", dom, &a), -1);
}

struct format_case {
	const char *path;
	const char *want;
};

static const struct format_case format_cases[] = {
	{ "<>", "" },
	{ "<john@x.test>", "john@x.test" },
	{ "<\"john\"@X.test>", "john@x.test" },
	{ "<\"john doe\"@x>", "\"john doe\"@x" },
	{ "<\"a\\\"b\"@x>", "\"a\\\"b\"@x" },
	{ "<\"a\\\\b\"@x>", "\"a\\\\b\"@x" },
	{ "<\"u@remote\"@ours>", "\"u@remote\"@ours" },
	{ "<\".a\"@x>", "\".a\"@x" },
	{ "<\"a..b\"@x>", "\"a..b\"@x" },
	{ "<\"\"@x>", "\"\"@x" },
	{ "<@r:u%v@[1.2.3.4]>", "u%v@[1.2.3.4]" },
	{ "<jörg@bücher.test>", "jörg@bücher.test" },
};

/* addr_format writes the canonical form, and refuses a buffer one octet short. */
static void test_format(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];
		struct addr a;
		const char *end;
		char out[600];
		size_t want = strlen(c->want);
		assert_int_equal(addr_parse_path(c->path, strlen(c->path), 1, &a, &end), 0);
		assert_int_equal(addr_format(&a, out, sizeof(out)), (int)want);
		assert_string_equal(out, c->want);
		assert_int_equal(addr_format(&a, out, want + 1), (int)want);
		assert_string_equal(out, c->want);
		assert_int_equal(addr_format(&a, out, want), -1);
		assert_int_equal(addr_format(&a, out, 0), -1);
	}
}

struct list_case {
	const char *in;
	int rc;
	const char *want;   /* the addresses reported, joined with '|' */
};

/* Deeply nested comments built at run time. */
static char comment16[64], comment17[64];

static const struct list_case list_cases[] = {
	{ "john@x.test", 1, "john@x.test" },
	{ " john@X.Test ", 1, "john@x.test" },
	{ "\"Doe, John\" <john@x.test>", 1, "john@x.test" },
	{ "john@x.test (John)", 1, "john@x.test" },
	{ "(John) john@x.test", 1, "john@x.test" },
	{ "john(c)@(c)x.test", 1, "john@x.test" },
	{ "=?utf-8?q?J=C3=B6rg?= <j@x.test>", 1, "j@x.test" },
	{ "=?utf-8?b?SsO2cmc=?= <j@x.test>", 1, "j@x.test" },
	{ "\"=?utf-8?q?J=C3=B6rg?=\" <j@x.test>", 1, "j@x.test" },
	{ "John Q. Public <jqp@x.test>", 1, "jqp@x.test" },
	{ "<john@x.test>", 1, "john@x.test" },
	{ "a@x.test, b@y.test", 2, "a@x.test|b@y.test" },
	{ "A <a@x.test>, \"B\" <b@y.test>, c@z.test", 3, "a@x.test|b@y.test|c@z.test" },
	{ ",a@x.test,, b@y.test,", 2, "a@x.test|b@y.test" },
	/* groups */
	{ "undisclosed-recipients:;", 0, "" },
	{ "undisclosed-recipients: ;", 0, "" },
	{ "undisclosed-recipients:", 0, "" },
	{ "friends: a@x.test, B <b@y.test>;", 2, "a@x.test|b@y.test" },
	{ "friends: a@x.test, b@y.test;, c@z.test", 3, "a@x.test|b@y.test|c@z.test" },
	{ "friends: a@x.test", 1, "a@x.test" },
	{ "g1: g2: a@x.test;;", -1, "" },
	{ ": a@x.test;", -1, "" },
	{ "a@x.test;", -1, "" },
	{ "g: a@x.test; b@y.test", -1, "" },
	/* folding and line ends */
	{ "John\r\n <john@x.test>", 1, "john@x.test" },
	{ "John\r\n\t<john@x.test>\r\n", 1, "john@x.test" },
	{ " john@x.test\r", 1, "john@x.test" },
	{ "John\n <john@x.test>", 1, "john@x.test" },
	{ "\"Doe,\r\n John\" <john@x.test>", 1, "john@x.test" },
	{ "john@x.test (a\r\n b)", 1, "john@x.test" },
	{ "John\r\n<john@x.test>", -1, "" },
	{ "John\r<john@x.test>", -1, "" },
	{ "john@x.test\r\n\r\n", -1, "" },
	{ "john@x.test\r\nX-Evil: 1", -1, "" },
	/* comments */
	{ "a@x.test (c (nested (deep)))", 1, "a@x.test" },
	{ "a@x.test (c \\) still)", 1, "a@x.test" },
	{ "(a@ours) b@evil.test", 1, "b@evil.test" },
	{ "(unterminated a@x.test", -1, "" },
	{ "a@x.test (x))", -1, "" },
	{ comment16, 1, "a@x.test" },
	{ comment17, -1, "" },
	/* malformed lists */
	{ "Doe, John <john@x.test>", -1, "" },
	{ "John <john@x.test", -1, "" },
	{ "john@x.test <b@y.test>", -1, "" },
	{ "John", -1, "" },
	{ "a@b@c.test", -1, "" },
	{ "a@", -1, "" },
	{ "@x.test", -1, "" },
	{ "a@x_y.test", -1, "" },
	{ "a@x..test", -1, "" },
	{ "<>", -1, "" },
	{ "a@x.test\x01", -1, "" },
	{ "a@x.test \\", -1, "" },
	{ "\"open <a@x.test>", -1, "" },
	{ "a@[1.2.3.4", -1, "" },
	{ "a@[x]", -1, "" },
	/* local parts */
	{ "\"a b\"@x.test", 1, "\"a b\"@x.test" },
	{ "\"john\"@x.test", 1, "john@x.test" },
	{ "\"u@remote\"@ours", 1, "\"u@remote\"@ours" },
	{ "u%remote@ours", 1, "u%remote@ours" },
	{ "a . b @ x . test", 1, "a.b@x.test" },
	{ "\"a\".b@x.test", 1, "a.b@x.test" },
	{ "a..b@x.test", -1, "" },
	{ ".a@x.test", -1, "" },
	{ "\"a\tb\"@x.test", -1, "" },
	{ "<@route.test,@r2.test:a@x.test>", 1, "a@x.test" },
	{ "<@route.test:a@x.test>", 1, "a@x.test" },
	{ "<@route.test a@x.test>", -1, "" },
	{ "a@[1.2.3.4]", 1, "a@[1.2.3.4]" },
	{ "a@[IPv6:::1]", 1, "a@[IPv6:::1]" },
	/* UTF-8 (RFC 6532) */
	{ "Jörg <jörg@bücher.test>", 1, "jörg@bücher.test" },
	{ "\xe9t\xe9 <a@x.test>", 1, "a@x.test" },   /* Latin-1 display name: tolerated */
	{ "j\xc3@x.test", -1, "" },
	{ "a@b\xc3.test", -1, "" },
	/* empty */
	{ "", 0, "" },
	{ "   ", 0, "" },
	{ "\r\n", 0, "" },
};

struct collect {
	char buf[4096];
	int calls;
};

/* addr_parse_list callback: append the address to the '|'-joined list. */
static void collect_cb(void *ctx, const char *address)
{
	struct collect *c = ctx;
	size_t n = strlen(c->buf);
	snprintf(c->buf + n, sizeof(c->buf) - n, "%s%s", c->calls ? "|" : "", address);
	c->calls++;
}

/* Set up the nested comment rows. */
static int list_setup(void **state)
{
	(void)state;
	char *p = comment16;
	p += sprintf(p, "a@x.test ");
	for (int i = 0; i < 16; i++)
		*p++ = '(';
	for (int i = 0; i < 16; i++)
		*p++ = ')';
	*p = '\0';
	p = comment17;
	p += sprintf(p, "a@x.test ");
	for (int i = 0; i < 17; i++)
		*p++ = '(';
	for (int i = 0; i < 17; i++)
		*p++ = ')';
	*p = '\0';
	return 0;
}

/* Each row: count and the addresses reported; nothing reported for a malformed list. */
static void test_list_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		const struct list_case *c = &list_cases[i];
		size_t n = strlen(c->in);
		char *in = exact_copy(c->in, n);
		struct collect col = { "", 0 };
		int rc = addr_parse_list(in, n, collect_cb, &col);
		if (rc != c->rc)
			fail_msg("row %zu \"%s\": rc %d, want %d", i, c->in, rc, c->rc);
		assert_int_equal(col.calls, rc < 0 ? 0 : rc);
		assert_string_equal(col.buf, c->want);
		free(in);
		/* no callback: just the count */
		in = exact_copy(c->in, n);
		assert_int_equal(addr_parse_list(in, n, NULL, NULL), c->rc);
		free(in);
	}
}

/* Every prefix of every row parses without reading past its end (ASan watches). */
static void test_list_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(list_cases) / sizeof(list_cases[0]); i++) {
		const char *s = list_cases[i].in;
		for (size_t k = 0; k < strlen(s); k++) {
			char *in = exact_copy(s, k);
			struct collect col = { "", 0 };
			int rc = addr_parse_list(in, k, collect_cb, &col);
			assert_true(rc >= -1);
			free(in);
		}
	}
}

/* Local part 64/65 (as written, canonical) and domain 255/256 in a header. */
static void test_list_limits(void **state)
{
	(void)state;
	char buf[700], dom[300], local[100];
	struct collect col = { "", 0 };
	memset(local, 'l', 64);
	local[64] = '\0';
	snprintf(buf, sizeof(buf), "%s@x.test", local);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), 1);
	snprintf(buf, sizeof(buf), "l%s@x.test", local);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), -1);
	/* quoted: 62 octets need the quotes, so 64 written; 63 would be 65 */
	memset(local, ' ', 62);
	local[62] = '\0';
	snprintf(buf, sizeof(buf), "\"%s\"@x.test", local);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), 1);
	snprintf(buf, sizeof(buf), "\" %s\"@x.test", local);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), -1);
	/* needless quotes do not count: "l...l" (64 l) is l...l */
	memset(local, 'l', 64);
	local[64] = '\0';
	snprintf(buf, sizeof(buf), "\"%s\"@x.test", local);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), 1);

	make_domain(dom, 255);
	snprintf(buf, sizeof(buf), "Big <a@%s>", dom);
	assert_int_equal(addr_parse_list(buf, strlen(buf), collect_cb, &col), 1);
	assert_string_equal(col.buf + 2, dom);
	make_domain(dom, 256);
	snprintf(buf, sizeof(buf), "Big <a@%s>", dom);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), -1);
	/* the limit holds for the obsolete spaced form as well */
	make_domain(dom, 250);
	snprintf(buf, sizeof(buf), "a@%s . abcdef", dom);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), -1);
	snprintf(buf, sizeof(buf), "a@%s . abcd", dom);
	assert_int_equal(addr_parse_list(buf, strlen(buf), NULL, NULL), 1);
}

/* A long list of addresses and a NUL inside the input. */
static void test_list_misc(void **state)
{
	(void)state;
	static char big[100000];
	size_t n = 0;
	for (int i = 0; i < 5000; i++)
		n += (size_t)sprintf(big + n, "u%d@x.test, ", i);
	assert_int_equal(addr_parse_list(big, n, NULL, NULL), 5000);
	assert_int_equal(addr_parse_list("a@x\0.test", 9, NULL, NULL), -1);
	assert_int_equal(addr_parse_list("\"a\0\"@x.test", 11, NULL, NULL), -1);
	assert_int_equal(addr_parse_list("a@x.test (\0)", 12, NULL, NULL), -1);
	assert_int_equal(addr_parse_list(NULL, 0, NULL, NULL), -1);
}

/* Run all addr tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_path_table),
		cmocka_unit_test(test_path_prefixes),
		cmocka_unit_test(test_path_nul),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_list_table),
		cmocka_unit_test(test_list_prefixes),
		cmocka_unit_test(test_list_limits),
		cmocka_unit_test(test_list_misc),
	};
	return cmocka_run_group_tests(tests, list_setup, NULL);
}
