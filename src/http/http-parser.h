/* http-parser.h - an incremental, bounded HTTP/1.1 request parser (RFC 9112).
 *
 * Bytes are fed in pieces of any size (one at a time works); the parser keeps only what it needs
 * and refuses anything over its limits with the status code to answer: 414 request line too long,
 * 431 header line or header section too large, 413 body too large, 400 malformed, 501 unknown
 * transfer coding, 505 other HTTP versions. Bodies come with Content-Length or chunked coding.
 */
#ifndef POSTINO_HTTP_PARSER_H
#define POSTINO_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_METHOD_MAX 16
#define HTTP_TARGET_MAX 4096        /* request target; longer: 414 */
#define HTTP_FIELD_LINE_MAX 8192    /* one header line; longer: 431 */
#define HTTP_HEADERS_MAX 32768      /* whole header section; larger: 431 */
#define HTTP_HEADER_COUNT_MAX 100   /* more header lines: 431 */
#define HTTP_BODY_MAX 65536         /* request body; larger: 413 */

enum http_parse_result { HTTP_MORE = 0, HTTP_DONE = 1 };   /* else: the status code (>= 400) */

struct http_request {
	char method[HTTP_METHOD_MAX + 1];
	char target[HTTP_TARGET_MAX + 1];
	int minor;                  /* HTTP/1.<minor> */
	char host[256];
	char user_agent[512];
	char accept_language[256];
	char content_type[128];
	int has_host;
	int conn_close;             /* Connection: close */
	int conn_keep_alive;        /* Connection: keep-alive (HTTP/1.0) */
	int expect_continue;        /* Expect: 100-continue */
	char *body;                 /* NUL-terminated, body_len octets; NULL when there is none */
	size_t body_len;
};

struct http_parser {
	int state;
	int status;                 /* sticky error status, 0 if none */
	char line[HTTP_FIELD_LINE_MAX + 1];
	size_t line_len;
	int line_cr;                /* the previous byte was CR */
	size_t header_bytes;
	unsigned nheaders;
	int has_cl, chunked, has_te;
	uint64_t content_length;
	uint64_t chunk_left;
	int awaiting_body;          /* headers are complete, the body is still to come */
	struct http_request req;
};

void http_parser_init(struct http_parser *p);
/* Release the body; ready for the next request on the connection. */
void http_parser_reset(struct http_parser *p);
void http_parser_free(struct http_parser *p);
/* Feed n bytes; *used is set to the bytes taken (input after a complete request is left for the
 * next one, so pipelined requests stay queued). HTTP_MORE, HTTP_DONE, or an error status. After
 * HTTP_DONE or an error, call http_parser_reset before feeding again. */
int http_parse(struct http_parser *p, const char *data, size_t n, size_t *used);

#endif
