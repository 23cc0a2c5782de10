/* fuzz-http-parser.c - libFuzzer target for the HTTP request parser.
 *
 * Build: see scripts/fuzz.sh. The input is parsed whole and again in pieces whose sizes come
 * from the input itself; both runs must agree on the outcome, the bytes taken and the request
 * (so no request boundary depends on how TCP cut the stream). Results are HTTP_MORE, HTTP_DONE or
 * an error status; strings stay terminated and bodies within their limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http-parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parse everything; returns the result, *taken: bytes consumed until a result other than MORE. */
static int run(struct http_parser *p, const uint8_t *data, size_t size, size_t step,
	       size_t *taken)
{
	size_t off = 0;
	int r = HTTP_MORE;
	while (off < size) {
		size_t n = step == 0 || size - off < step ? size - off : step;
		size_t used = 0;
		r = http_parse(p, (const char *)data + off, n, &used);
		if (used > n || (r == HTTP_MORE && used != n))
			abort();
		off += used;
		if (r != HTTP_MORE)
			break;
	}
	*taken = off;
	return r;
}

static void check(const struct http_parser *p, int r)
{
	if (r != HTTP_MORE && r != HTTP_DONE && (r < 400 || r > 505))
		abort();
	if (r != HTTP_DONE)
		return;
	const struct http_request *q = &p->req;
	if (strlen(q->method) == 0 || strlen(q->method) > HTTP_METHOD_MAX ||
	    strlen(q->target) > HTTP_TARGET_MAX || q->body_len > HTTP_BODY_MAX ||
	    strlen(q->host) >= sizeof(q->host))
		abort();
	if (q->body != NULL && q->body[q->body_len] != '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_parser a, b;
	size_t ta, tb;
	size_t step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
	http_parser_init(&a);
	http_parser_init(&b);
	int ra = run(&a, data, size, 0, &ta);
	int rb = run(&b, data, size, step, &tb);
	check(&a, ra);
	check(&b, rb);
	if (ra != rb || ta != tb)
		abort();
	if (ra == HTTP_DONE &&
	    (strcmp(a.req.method, b.req.method) != 0 || strcmp(a.req.target, b.req.target) != 0 ||
	     a.req.body_len != b.req.body_len ||
	     (a.req.body_len && memcmp(a.req.body, b.req.body, a.req.body_len) != 0)))
		abort();
	http_parser_free(&a);
	http_parser_free(&b);
	return 0;
}
