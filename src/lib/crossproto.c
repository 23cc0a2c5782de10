/* crossproto.c - recognize HTTP request lines and headers sent to a mail port. */
#include "crossproto.h"

#include <string.h>
#include <strings.h>

/* Request methods of RFC 9110 section 9 and RFC 5789 (PATCH). */
static const char *const http_methods[] = { "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
					    "CONNECT", "TRACE", "PATCH" };

/* Header fields a browser or HTTP library sends and no mail command begins with. Prefixes ending
 * in '-' match a family ("Sec-Fetch-Mode", "Sec-Ch-Ua"). */
static const char *const http_headers[] = { "Host", "User-Agent", "Accept", "Accept-Encoding",
					    "Accept-Language", "Accept-Charset", "Connection",
					    "Cookie", "Origin", "Referer", "Upgrade",
					    "Upgrade-Insecure-Requests", "Cache-Control", "Pragma",
					    "Content-Length", "Transfer-Encoding", "Keep-Alive",
					    "Proxy-Connection", "DNT", "Sec-" };

/* Does the request target t[0..n) look like one of RFC 9112 section 3.2's four forms? */
static int http_target(const char *t, size_t n, int connect)
{
	if (n == 0)
		return 0;
	if (t[0] == '/' || (n == 1 && t[0] == '*'))
		return 1;                                  /* origin-form, asterisk-form */
	for (size_t i = 0; i + 2 < n; i++) {               /* absolute-form: scheme "://" */
		if (t[i] == ':') {
			if (i > 0 && t[i + 1] == '/' && t[i + 2] == '/')
				return 1;
			break;
		}
		if (t[i] == '/')
			return 0;
	}
	return connect && memchr(t, ':', n) != NULL;       /* authority-form host:port */
}

/* Is line an HTTP request line? */
int crossproto_http_request(const char *line, size_t len)
{
	const char *sp = memchr(line, ' ', len);
	if (sp == NULL)
		return 0;
	size_t mlen = (size_t)(sp - line);
	int known = 0, connect = 0;
	for (size_t i = 0; i < sizeof(http_methods) / sizeof(http_methods[0]); i++) {
		if (strlen(http_methods[i]) == mlen && strncasecmp(http_methods[i], line, mlen) == 0) {
			known = 1;
			connect = i == 6;
		}
	}
	if (!known)
		return 0;
	const char *t = sp + 1, *end = line + len;
	const char *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (sp2 == NULL || !http_target(t, (size_t)(sp2 - t), connect))
		return 0;
	return (size_t)(end - sp2 - 1) >= 5 && strncasecmp(sp2 + 1, "HTTP/", 5) == 0;
}

/* Is line an HTTP request header field? */
int crossproto_http_header(const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (colon == NULL)
		return 0;
	size_t nlen = (size_t)(colon - line);
	if (memchr(line, ' ', nlen) != NULL || memchr(line, '\t', nlen) != NULL)
		return 0;                                  /* field names have no blanks */
	for (size_t i = 0; i < sizeof(http_headers) / sizeof(http_headers[0]); i++) {
		const char *h = http_headers[i];
		size_t hl = strlen(h);
		if (h[hl - 1] == '-' ? nlen > hl && strncasecmp(h, line, hl) == 0 :
				       nlen == hl && strncasecmp(h, line, hl) == 0)
			return 1;
	}
	return 0;
}
