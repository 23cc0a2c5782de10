/* test-crossproto.c - HTTP request lines and headers are told apart from mail commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "crossproto.h"

/* crossproto_http_request on a C string. */
static int req(const char *s)
{
	return crossproto_http_request(s, strlen(s));
}

/* crossproto_http_header on a C string. */
static int hdr(const char *s)
{
	return crossproto_http_header(s, strlen(s));
}

static void test_request_lines(void **state)
{
	(void)state;
	assert_true(req("GET / HTTP/1.1"));
	assert_true(req("GET / HTTP/1.1\r"));
	assert_true(req("post /form?a=b HTTP/1.0"));
	assert_true(req("HEAD * HTTP/1.1"));
	assert_true(req("OPTIONS * HTTP/1.1"));
	assert_true(req("PUT /x HTTP/2"));
	assert_true(req("GET http://mail.example.test/ HTTP/1.1"));
	assert_true(req("CONNECT mail.example.test:443 HTTP/1.1"));
	assert_false(req("GET mail.example.test:443 HTTP/1.1"));   /* authority form: CONNECT only */
	assert_false(req("GET / HTTP"));
	assert_false(req("GET /"));
	assert_false(req("GET"));
	assert_false(req(""));
	assert_false(req("EHLO mail.example.test"));
	assert_false(req("MAIL FROM:<a@b> SIZE=1"));
	assert_false(req("a1 LOGIN user pass"));
	assert_false(req("PUT SELECT HTTP/1"));      /* an IMAP tag PUT selecting "HTTP/1" */
	assert_false(req("GET SELECT HTTP/1.1"));
	assert_false(req("USER get"));
	assert_false(req("FETCH / HTTP/1.1"));       /* not a method */
}

static void test_headers(void **state)
{
	(void)state;
	assert_true(hdr("Host: x"));
	assert_true(hdr("host:x"));
	assert_true(hdr("User-Agent: Mozilla/5.0"));
	assert_true(hdr("Content-Length: 12"));
	assert_true(hdr("Sec-Fetch-Mode: navigate"));
	assert_false(hdr("Sec-: x"));
	assert_false(hdr("Hostname: x"));
	assert_false(hdr("Host x"));
	assert_false(hdr("Host LOGIN a b:c"));
	assert_false(hdr("Sec-1 LOGIN a b:c"));
	assert_false(hdr("MAIL FROM:<a@b>"));
	assert_false(hdr("RCPT TO:<a@b>"));
	assert_false(hdr("Subject: hello"));
	assert_false(hdr(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_lines),
		cmocka_unit_test(test_headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
