/* test-http-parser.c - the HTTP request parser, fed whole, in odd pieces and one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http-parser.h"

/* Feed `in` in pieces of `step` octets (0: all at once) until the parser finishes. Returns the
 * result and leaves the unused remainder count in *left. */
static int feed(struct http_parser *p, const char *in, size_t len, size_t step, size_t *left)
{
	size_t off = 0;
	int r = HTTP_MORE;
	while (off < len) {
		size_t n = step == 0 || len - off < step ? len - off : step;
		size_t used = 0;
		r = http_parse(p, in + off, n, &used);
		assert_true(used <= n);
		off += used;
		if (r != HTTP_MORE)
			break;
		assert_int_equal(used, n);   /* MORE means everything was taken */
	}
	*left = len - off;
	return r;
}

static const size_t steps[] = { 0, 1, 2, 3, 7, 64 };

static void test_simple_get(void **state)
{
	(void)state;
	const char *req = "GET /mail/config-v1.1.xml?emailaddress=a%40b.test HTTP/1.1\r\n"
			  "Host: autoconfig.b.test\r\nUser-Agent: Thunderbird/115\r\n"
			  "Accept-Language: it-IT,it;q=0.9\r\n\r\n";
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct http_parser p;
		size_t left;
		http_parser_init(&p);
		assert_int_equal(feed(&p, req, strlen(req), steps[s], &left), HTTP_DONE);
		assert_int_equal(left, 0);
		assert_string_equal(p.req.method, "GET");
		assert_string_equal(p.req.target, "/mail/config-v1.1.xml?emailaddress=a%40b.test");
		assert_string_equal(p.req.host, "autoconfig.b.test");
		assert_string_equal(p.req.user_agent, "Thunderbird/115");
		assert_string_equal(p.req.accept_language, "it-IT,it;q=0.9");
		assert_int_equal(p.req.minor, 1);
		assert_null(p.req.body);
		http_parser_free(&p);
	}
}

static void test_post_body_and_pipelining(void **state)
{
	(void)state;
	const char *req = "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
			  "Content-Length: 11\r\nConnection: keep-alive\r\n\r\nhello world"
			  "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct http_parser p;
		size_t left;
		http_parser_init(&p);
		assert_int_equal(feed(&p, req, strlen(req), steps[s], &left), HTTP_DONE);
		assert_int_equal(p.req.body_len, 11);
		assert_string_equal(p.req.body, "hello world");
		assert_int_equal(left, strlen("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
		http_parser_reset(&p);
		const char *next = req + strlen(req) - left;
		assert_int_equal(feed(&p, next, left, steps[s], &left), HTTP_DONE);
		assert_string_equal(p.req.target, "/");
		http_parser_free(&p);
	}
}

static void test_chunked(void **state)
{
	(void)state;
	const char *req = "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: 1\r\n\r\n";
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct http_parser p;
		size_t left;
		http_parser_init(&p);
		assert_int_equal(feed(&p, req, strlen(req), steps[s], &left), HTTP_DONE);
		assert_int_equal(left, 0);
		assert_string_equal(p.req.body, "hello world");
		http_parser_free(&p);
	}
}

/* A request that must be refused with `status`, whatever the piece size. */
static void expect_status(const char *req, size_t len, int status)
{
	if (len == 0)
		len = strlen(req);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		struct http_parser p;
		size_t left;
		http_parser_init(&p);
		int r = feed(&p, req, len, steps[s], &left);
		if (r != status)
			fail_msg("step %zu: got %d, want %d for %.60s", steps[s], r, status, req);
		http_parser_free(&p);
	}
}

static void test_errors(void **state)
{
	(void)state;
	expect_status("GET / HTTP/1.1\r\n\r\n", 0, 400);                   /* no Host */
	expect_status("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505);
	expect_status("GET / FTP/1.1\r\nHost: x\r\n\r\n", 0, 400);
	expect_status("GET /\rX HTTP/1.1\r\n", 0, 400);                     /* bare CR */
	expect_status("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 0, 400);
	expect_status("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, 400);
	expect_status("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 0, 400);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, 400);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 400);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 0, 501);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n", 0, 413);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 0, 400);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\n", 0, 413);
	expect_status("G\x01T / HTTP/1.1\r\n", 0, 400);
	expect_status("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 0, 417);
}

static void test_limits(void **state)
{
	(void)state;
	/* a long target: 414 as soon as the limit is passed, without waiting for the line end */
	size_t n = HTTP_TARGET_MAX + 100;
	char *req = malloc(n + 1);
	memcpy(req, "GET /", 5);
	memset(req + 5, 'a', n - 5);
	req[n] = '\0';
	expect_status(req, n, 414);
	/* a target just within the limit is fine */
	char *ok = malloc(n + 64);
	snprintf(ok, n + 64, "GET /%.*s HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_TARGET_MAX - 1,
		 req + 5);
	expect_status(ok, strlen(ok), HTTP_DONE);
	free(ok);
	free(req);
	/* one huge header line */
	n = HTTP_FIELD_LINE_MAX + 200;
	req = malloc(n + 64);
	int k = snprintf(req, 64, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(req + k, 'b', n);
	expect_status(req, (size_t)k + n, 431);
	free(req);
	/* many small header lines: the section limit or the count limit */
	struct http_parser p;
	size_t used;
	http_parser_init(&p);
	const char *start = "GET / HTTP/1.1\r\nHost: x\r\n";
	assert_int_equal(http_parse(&p, start, strlen(start), &used), HTTP_MORE);
	int r = HTTP_MORE;
	for (int i = 0; i < 1000 && r == HTTP_MORE; i++) {
		char line[64];
		int len = snprintf(line, sizeof(line), "X-H%d: v\r\n", i);
		r = http_parse(&p, line, (size_t)len, &used);
	}
	assert_int_equal(r, 431);
	/* the parser stays failed */
	assert_int_equal(http_parse(&p, "\r\n", 2, &used), 431);
	assert_int_equal(used, 0);
	http_parser_free(&p);
}

static void test_expect_continue(void **state)
{
	(void)state;
	struct http_parser p;
	size_t used;
	const char *h = "POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
	http_parser_init(&p);
	assert_int_equal(http_parse(&p, h, strlen(h), &used), HTTP_MORE);
	assert_true(p.awaiting_body);
	assert_true(p.req.expect_continue);
	assert_int_equal(http_parse(&p, "abc", 3, &used), HTTP_DONE);
	assert_string_equal(p.req.body, "abc");
	http_parser_free(&p);
}

static void test_connection_and_10(void **state)
{
	(void)state;
	struct http_parser p;
	size_t left;
	const char *r1 = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	http_parser_init(&p);
	assert_int_equal(feed(&p, r1, strlen(r1), 1, &left), HTTP_DONE);
	assert_int_equal(p.req.minor, 0);
	assert_true(p.req.conn_keep_alive);
	assert_false(p.req.conn_close);
	http_parser_reset(&p);
	const char *r2 = "\r\nGET / HTTP/1.1\nHost: x\nConnection: foo, close\n\n";
	assert_int_equal(feed(&p, r2, strlen(r2), 1, &left), HTTP_DONE);
	assert_true(p.req.conn_close);
	http_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_post_body_and_pipelining),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_connection_and_10),
		cmocka_unit_test(test_expect_continue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
