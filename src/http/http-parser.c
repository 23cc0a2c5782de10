/* http-parser.c - incremental HTTP/1.1 request parsing with hard limits (RFC 9112). */
#include "http-parser.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
	S_START, S_REQLINE, S_HEADER, S_BODY, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END, S_TRAILER,
	S_DONE, S_ERROR
};

#define REQLINE_MAX (HTTP_METHOD_MAX + 1 + HTTP_TARGET_MAX + 1 + 8)
#define CHUNK_LINE_MAX 256

void http_parser_init(struct http_parser *p)
{
	memset(p, 0, sizeof(*p));
	p->state = S_START;
}

void http_parser_free(struct http_parser *p)
{
	free(p->req.body);
	p->req.body = NULL;
}

void http_parser_reset(struct http_parser *p)
{
	http_parser_free(p);
	http_parser_init(p);
}

/* RFC 9110 5.6.2 token characters. */
static int is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int fail(struct http_parser *p, int status)
{
	p->state = S_ERROR;
	p->status = status;
	return status;
}

/* "METHOD SP target SP HTTP/1.x" */
static int parse_request_line(struct http_parser *p)
{
	char *l = p->line;
	char *sp1 = strchr(l, ' ');
	if (sp1 == NULL || sp1 == l || (size_t)(sp1 - l) > HTTP_METHOD_MAX)
		return fail(p, 400);
	for (char *q = l; q < sp1; q++)
		if (!is_tchar((unsigned char)*q))
			return fail(p, 400);
	char *tgt = sp1 + 1;
	char *sp2 = strchr(tgt, ' ');
	if (sp2 == NULL || sp2 == tgt)
		return fail(p, 400);
	if ((size_t)(sp2 - tgt) > HTTP_TARGET_MAX)
		return fail(p, 414);
	for (char *q = tgt; q < sp2; q++)
		if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
			return fail(p, 400);
	const char *ver = sp2 + 1;
	if (strncmp(ver, "HTTP/", 5) != 0 || !isdigit((unsigned char)ver[5]) || ver[6] != '.' ||
	    !isdigit((unsigned char)ver[7]) || ver[8] != '\0')
		return fail(p, 400);
	if (ver[5] != '1')
		return fail(p, 505);
	memcpy(p->req.method, l, (size_t)(sp1 - l));
	p->req.method[sp1 - l] = '\0';
	memcpy(p->req.target, tgt, (size_t)(sp2 - tgt));
	p->req.target[sp2 - tgt] = '\0';
	p->req.minor = ver[7] - '0';
	p->state = S_HEADER;
	return HTTP_MORE;
}

/* Copy a header value, cut to the destination's size. */
static void copy_value(char *dst, size_t size, const char *v)
{
	size_t n = strlen(v);
	if (n >= size)
		n = size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

/* Does the comma-separated list contain token tok? */
static int list_has(const char *v, const char *tok)
{
	size_t tl = strlen(tok);
	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		const char *e = v;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - v) == tl && strncasecmp(v, tok, tl) == 0)
			return 1;
		v = e;
	}
	return 0;
}

/* All header fields are in: decide how the body is framed. */
static int end_of_headers(struct http_parser *p)
{
	struct http_request *r = &p->req;
	if (r->minor >= 1 && !r->has_host)
		return fail(p, 400);
	if (p->has_te) {
		if (p->has_cl)
			return fail(p, 400);   /* both framings: a smuggling attempt */
		if (!p->chunked)
			return fail(p, 501);
		p->state = S_CHUNK_SIZE;
		p->awaiting_body = 1;
		return HTTP_MORE;
	}
	if (p->has_cl && p->content_length > 0) {
		if (p->content_length > HTTP_BODY_MAX)
			return fail(p, 413);
		r->body = malloc((size_t)p->content_length + 1);
		if (r->body == NULL)
			return fail(p, 503);
		p->state = S_BODY;
		p->awaiting_body = 1;
		return HTTP_MORE;
	}
	p->state = S_DONE;
	return HTTP_DONE;
}

/* One header field line (without its line end). */
static int parse_field(struct http_parser *p)
{
	char *l = p->line;
	struct http_request *r = &p->req;
	if (l[0] == '\0')
		return end_of_headers(p);
	if (++p->nheaders > HTTP_HEADER_COUNT_MAX)
		return fail(p, 431);
	if (l[0] == ' ' || l[0] == '\t')
		return fail(p, 400);   /* obsolete line folding */
	char *colon = l;
	while (is_tchar((unsigned char)*colon))
		colon++;
	if (*colon != ':' || colon == l)
		return fail(p, 400);   /* includes white space before the colon */
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	size_t vl = strlen(v);
	while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		v[--vl] = '\0';
	if (strcasecmp(l, "Host") == 0) {
		if (r->has_host || vl >= sizeof(r->host))
			return fail(p, 400);
		for (size_t i = 0; i < vl; i++)
			if (!isalnum((unsigned char)v[i]) && !strchr("-.:[]_", v[i]))
				return fail(p, 400);
		r->has_host = 1;
		copy_value(r->host, sizeof(r->host), v);
	} else if (strcasecmp(l, "Content-Length") == 0) {
		uint64_t n = 0;
		if (vl == 0 || vl > 15)
			return fail(p, vl > 15 ? 413 : 400);
		for (size_t i = 0; i < vl; i++) {
			if (!isdigit((unsigned char)v[i]))
				return fail(p, 400);
			n = n * 10 + (uint64_t)(v[i] - '0');
		}
		if (p->has_cl && n != p->content_length)
			return fail(p, 400);
		p->has_cl = 1;
		p->content_length = n;
	} else if (strcasecmp(l, "Transfer-Encoding") == 0) {
		p->has_te = 1;
		p->chunked = strcasecmp(v, "chunked") == 0 && !p->chunked;
	} else if (strcasecmp(l, "Connection") == 0) {
		if (list_has(v, "close"))
			r->conn_close = 1;
		if (list_has(v, "keep-alive"))
			r->conn_keep_alive = 1;
	} else if (strcasecmp(l, "Expect") == 0) {
		if (strcasecmp(v, "100-continue") != 0)
			return fail(p, 417);
		r->expect_continue = 1;
	} else if (strcasecmp(l, "User-Agent") == 0) {
		copy_value(r->user_agent, sizeof(r->user_agent), v);
	} else if (strcasecmp(l, "Accept-Language") == 0) {
		copy_value(r->accept_language, sizeof(r->accept_language), v);
	} else if (strcasecmp(l, "Content-Type") == 0) {
		copy_value(r->content_type, sizeof(r->content_type), v);
	}
	return HTTP_MORE;
}

/* "HEX[;ext]" */
static int parse_chunk_size(struct http_parser *p)
{
	const char *l = p->line;
	uint64_t n = 0;
	size_t i = 0;
	for (; isxdigit((unsigned char)l[i]); i++) {
		if (i >= 8)
			return fail(p, 413);
		int d = isdigit((unsigned char)l[i]) ? l[i] - '0' : (tolower((unsigned char)l[i]) - 'a' + 10);
		n = n * 16 + (uint64_t)d;
	}
	if (i == 0 || (l[i] != '\0' && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
		return fail(p, 400);
	if (n == 0) {
		p->state = S_TRAILER;
		return HTTP_MORE;
	}
	if (n > HTTP_BODY_MAX - p->req.body_len)
		return fail(p, 413);
	char *nb = realloc(p->req.body, p->req.body_len + (size_t)n + 1);
	if (nb == NULL)
		return fail(p, 503);
	p->req.body = nb;
	p->chunk_left = n;
	p->state = S_CHUNK_DATA;
	return HTTP_MORE;
}

/* A complete line in p->line: act on it according to the state. */
static int line_done(struct http_parser *p)
{
	switch (p->state) {
	case S_START:
		if (p->line_len == 0) {
			if (++p->nheaders > 4)   /* a few empty lines before a request are allowed */
				return fail(p, 400);
			return HTTP_MORE;
		}
		p->nheaders = 0;
		return parse_request_line(p);
	case S_HEADER:
		return parse_field(p);
	case S_CHUNK_SIZE:
		return parse_chunk_size(p);
	case S_CHUNK_END:
		if (p->line_len != 0)
			return fail(p, 400);
		p->state = S_CHUNK_SIZE;
		return HTTP_MORE;
	case S_TRAILER:
		if (p->line_len == 0) {
			if (p->req.body == NULL)
				return (p->state = S_DONE, HTTP_DONE);
			p->req.body[p->req.body_len] = '\0';
			p->state = S_DONE;
			return HTTP_DONE;
		}
		if (++p->nheaders > HTTP_HEADER_COUNT_MAX)
			return fail(p, 431);
		return HTTP_MORE;
	}
	return fail(p, 400);
}

/* Line length limit in the current state, and the status for going over it. */
static size_t line_limit(const struct http_parser *p, int *status)
{
	switch (p->state) {
	case S_START:
	case S_REQLINE:
		*status = 414;
		return REQLINE_MAX;
	case S_CHUNK_SIZE:
	case S_CHUNK_END:
		*status = 400;
		return CHUNK_LINE_MAX;
	default:
		*status = 431;
		return HTTP_FIELD_LINE_MAX;
	}
}

int http_parse(struct http_parser *p, const char *data, size_t n, size_t *used)
{
	size_t i = 0;
	int r = HTTP_MORE;
	if (p->state == S_ERROR) {
		*used = 0;
		return p->status;
	}
	if (p->state == S_DONE) {
		*used = 0;
		return HTTP_DONE;
	}
	while (i < n && r == HTTP_MORE) {
		if (p->state == S_BODY || p->state == S_CHUNK_DATA) {
			size_t left = p->state == S_BODY ? (size_t)p->content_length - p->req.body_len
							 : (size_t)p->chunk_left;
			size_t take = n - i < left ? n - i : left;
			memcpy(p->req.body + p->req.body_len, data + i, take);
			p->req.body_len += take;
			i += take;
			if (p->state == S_CHUNK_DATA) {
				p->chunk_left -= take;
				if (p->chunk_left == 0)
					p->state = S_CHUNK_END;
			} else if (p->req.body_len == p->content_length) {
				p->req.body[p->req.body_len] = '\0';
				p->state = S_DONE;
				r = HTTP_DONE;
			}
			continue;
		}
		unsigned char c = (unsigned char)data[i++];
		if (p->state == S_HEADER || p->state == S_TRAILER) {
			if (++p->header_bytes > HTTP_HEADERS_MAX) {
				r = fail(p, 431);
				break;
			}
		}
		if (p->line_cr && c != '\n') {
			r = fail(p, 400);   /* a bare CR */
			break;
		}
		if (c == '\n') {
			p->line[p->line_len] = '\0';
			r = line_done(p);
			p->line_len = 0;
			p->line_cr = 0;
			continue;
		}
		if (c == '\r') {
			p->line_cr = 1;
			continue;
		}
		if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f) {
			r = fail(p, 400);
			break;
		}
		int status;
		if (p->line_len >= line_limit(p, &status)) {
			if (status == 414) {
				/* only a target still under way is "URI too long"; else garbage */
				const char *sp = memchr(p->line, ' ', p->line_len);
				size_t rest = sp ? p->line_len - (size_t)(sp + 1 - p->line) : 0;
				if (sp == NULL || memchr(sp + 1, ' ', rest) != NULL)
					status = 400;
			}
			r = fail(p, status);
			break;
		}
		p->line[p->line_len++] = (char)c;
	}
	*used = i;
	return r;
}
