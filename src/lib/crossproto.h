/* crossproto.h - recognize a web browser talking to a mail port (cross-protocol attacks such as
 * ALPACA, https://alpaca-attack.com). A mail session that sees one of these lines answers with one
 * error line and closes at once, so nothing after it (an HTTP body made to look like commands) is
 * ever executed. No legitimate SMTP, IMAP or POP3 command line matches either test.
 */
#ifndef POSTINO_CROSSPROTO_H
#define POSTINO_CROSSPROTO_H

#include <stddef.h>

/* 1 if line[0..len) (CRLF stripped or not) is an HTTP request line: a method (GET, POST, HEAD,
 * PUT, DELETE, OPTIONS, CONNECT, TRACE, PATCH; any case), one space, a request target ("/...",
 * "*", "scheme://...", or host:port for CONNECT), one space, "HTTP/". */
int crossproto_http_request(const char *line, size_t len);
/* 1 if the line begins with a header field that only HTTP requests carry ("Host:", "User-Agent:",
 * "Accept:", "Connection:", "Origin:", "Referer:", "Cookie:", "Upgrade:", "Content-Length:",
 * "Sec-Fetch-...:" and a few more; any case). */
int crossproto_http_header(const char *line, size_t len);

#endif
