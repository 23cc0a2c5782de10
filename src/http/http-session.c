/* http-session.c - the HTTP/1.1 listener (80, and 443 with implicit TLS): client autoconfiguration
 * (Thunderbird autoconfig, Microsoft Autodiscover POX and v2, Apple profiles), the /setup page
 * and the MTA-STS policy. Requests are parsed with hard limits (http-parser.h), answered in order
 * (pipelining), and connections are kept alive between requests.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "conn.h"
#include "ev.h"
#include "http-parser.h"
#include "http-private.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "http.h"

#define HTTP_IN_MAX 16384
#define HTTP_OUT_MAX (1024 * 1024)
#define HTTP_OUT_HIGH 262144          /* stop answering pipelined requests above this */
#define HTTP_IDLE_MS 15000            /* keep-alive: idle time between requests */
#define HTTP_REQUEST_MS 30000         /* time to send one whole request */
/* (both shortened by a smaller command_timeout of the listener) */
#define HTTP_LINGER_MS 2000           /* after an error reply: drain input this long, then close */
#define HTTP_MAX_REQUESTS 1000        /* per connection */
#define HTTP_METRICS_MAX (256 * 1024) /* a /metrics page: ~10 KB with 64 workers */

struct http_session {
	struct session base;          /* first: the worker lists sessions by this */
	struct conn conn;
	struct http_parser *p;        /* allocated while a request is under way */
	struct ev_timer timer;
	unsigned nrequests;
	int close_after;              /* close once the output has been sent */
	int lingering;                /* output sent, write side shut: discard input until EOF */
	int partial;                  /* a request has begun */
	int last_status;
	int sent_continue;            /* "100 Continue" sent for the request under way */
};

static void http_process(struct http_session *s);

static void http_release(struct session *b)
{
	struct http_session *s = (struct http_session *)b;
	ev_timer_cancel(s->base.w->loop, &s->timer);
	if (s->p) {
		http_parser_free(s->p);
		free(s->p);
	}
}

static void http_close(struct http_session *s, const char *reason)
{
	session_close(&s->base, reason);
}

static void http_on_timeout(struct ev_timer *t)
{
	struct http_session *s = t->arg;
	if (s->lingering || !s->partial) {
		http_close(s, s->lingering ? "closed after reply" : "idle");
		return;
	}
	/* RFC 9110 15.5.9 */
	static const char r408[] = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n"
		"Content-Length: 47\r\nConnection: close\r\n\r\n"
		"408 Request Timeout: the request took too long\n";
	conn_write(&s->conn, r408, sizeof(r408) - 1);
	conn_flush(&s->conn);
	http_close(s, "request timeout");
}

static void http_arm_timer(struct http_session *s)
{
	uint64_t ms = s->lingering ? HTTP_LINGER_MS : s->partial ? HTTP_REQUEST_MS : HTTP_IDLE_MS;
	uint64_t cap = (uint64_t)s->base.lc->command_timeout * 1000;   /* http.command_timeout */
	if (!s->lingering && cap > 0 && cap < ms)
		ms = cap;
	ev_timer_set(s->base.w->loop, &s->timer, ms, http_on_timeout, s);
}

static void http_on_shutdown(struct session *b)
{
	struct http_session *s = (struct http_session *)b;
	if (conn_out_pending(&s->conn) > 0 && !s->conn.failed) {
		s->close_after = 1;   /* finish sending the reply under way */
		return;
	}
	http_close(s, "shutdown");
}

static const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 301: return "Moved Permanently";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";   /* RFC 9110 15.6.2 reason phrase */
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}

/* Queue one whole response. extra: more header lines, each ending in CRLF, or NULL. */
static void http_send(struct http_session *s, int head_only, int status, const char *ctype,
		      const void *body, size_t len, const char *extra)
{
	char date[64], hdr[2048];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	s->last_status = status;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: postino\r\n"
			 "Content-Type: %s\r\nContent-Length: %zu\r\n"
			 "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
			 status, http_reason(status), date, ctype, len, extra ? extra : "",
			 s->close_after ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr) || conn_write(&s->conn, hdr, (size_t)n) < 0 ||
	    (!head_only && len > 0 && conn_write(&s->conn, body, len) < 0)) {
		s->conn.failed = 1;
		return;
	}
}

/* 405 with the methods the resource allows. */
static void http_not_allowed(struct http_session *s, const char *allow)
{
	char msg[128], hdr[64];
	int n = snprintf(msg, sizeof(msg), "405 Method Not Allowed: use %s\n", allow);
	snprintf(hdr, sizeof(hdr), "Allow: %s\r\n", allow);
	http_send(s, 0, 405, "text/plain; charset=utf-8", msg, (size_t)n, hdr);
}

/* A short plain-text explanation for an error status. */
static void http_error(struct http_session *s, int head_only, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void http_error(struct http_session *s, int head_only, int status, const char *fmt, ...)
{
	char msg[1024];
	int n = snprintf(msg, sizeof(msg), "%d %s: ", status, http_reason(status));
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(msg + n, sizeof(msg) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof(msg) - 2)
		len = sizeof(msg) - 2;
	msg[len++] = '\n';
	http_send(s, head_only, status, "text/plain; charset=utf-8", msg, len, NULL);
}

/* Decode %XX and '+' (in queries) into out. 0 ok, -1 bad encoding, NUL, or too long. */
static int http_unescape(const char *in, size_t n, int plus, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			if (!isxdigit((unsigned char)in[i + 1]) || !isxdigit((unsigned char)in[i + 2]))
				return -1;
			char hex[3] = { in[i + 1], in[i + 2], 0 };
			c = (int)strtol(hex, NULL, 16);
			i += 2;
			if (c == 0)
				return -1;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* Query parameter `name` (case-insensitive). 1 found, 0 absent, -1 badly encoded or too long. */
static int http_query(const char *query, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	for (const char *q = query; q && *q;) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		size_t kl = eq ? (size_t)(eq - q) : len;
		if (kl == nl && strncasecmp(q, name, nl) == 0) {
			const char *v = eq ? eq + 1 : q + len;
			return http_unescape(v, (size_t)(q + len - v), 1, out, outlen) < 0 ? -1 : 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}

/* The Host header's name without port, lower-cased, or "" when unusable. */
static void http_host_name(const struct http_request *r, char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = '\0';
	if (r->host[0] == '[')
		return;
	for (const char *h = r->host; *h && *h != ':' && n + 1 < outlen; h++)
		out[n++] = (char)tolower((unsigned char)*h);
	out[n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[n - 1] = '\0';
}

/* Check an address from a request and that we host its domain. 0 ok (ms filled), else the
 * status already answered. */
static int http_address(struct http_session *s, int head_only, const char *raw,
			struct mail_settings *ms)
{
	char addr[ACCTDB_ADDRESS_MAX + 1];
	const char *err = NULL;
	if (acctdb_normalize_address(raw, addr, sizeof(addr)) < 0) {
		http_error(s, head_only, 400, "not a valid e-mail address; write it as name@domain");
		return 400;
	}
	const char *dom = strchr(addr, '@') + 1;
	int known = acctdb_domain_exists(s->base.w->db, dom, &err);
	if (known < 0) {
		log_error("sess=%016llx proto=http event=db-error error=\"%s\"",
			  (unsigned long long)s->base.id, err);
		http_error(s, head_only, 503, "the account database is unavailable; try again later");
		return 503;
	}
	if (!known) {
		http_error(s, head_only, 404, "this server does not host mail for that domain");
		return 404;
	}
	http_mail_settings(s->base.w->cfg, dom, addr, ms);
	return 0;
}

/* Is domain hosted? 1 yes, 0 no (a 404 was sent), -1 (503 sent). */
static int http_hosted(struct http_session *s, int head_only, const char *domain)
{
	const char *err = NULL;
	char d[256];
	if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0) {
		http_error(s, head_only, 404, "this server does not host mail for that domain");
		return 0;
	}
	int known = acctdb_domain_exists(s->base.w->db, d, &err);
	if (known < 0) {
		http_error(s, head_only, 503, "the account database is unavailable; try again later");
		return -1;
	}
	if (!known)
		http_error(s, head_only, 404, "this server does not host mail for that domain");
	return known;
}

/* Send a generated body, or 500 if it did not fit. */
static void http_send_buf(struct http_session *s, int head_only, int rc, struct buf *b,
			  int status, const char *ctype, const char *extra)
{
	if (rc < 0) {
		http_error(s, head_only, 500, "the reply did not fit in memory");
		return;
	}
	http_send(s, head_only, status, ctype, b->data, b->len, extra);
}

/* GET /mail/config-v1.1.xml[?emailaddress=ADDR] */
static void route_autoconfig(struct http_session *s, int head, const char *query)
{
	struct http_request *r = &s->p->req;
	struct mail_settings ms;
	char raw[512];
	int q = http_query(query, "emailaddress", raw, sizeof(raw));
	if (q < 0) {
		http_error(s, head, 400, "emailaddress is badly encoded or too long");
		return;
	}
	if (q == 1) {
		if (http_address(s, head, raw, &ms) != 0)
			return;
	} else {
		/* no address: the domain is the one in autoconfig.<domain> */
		char host[256];
		http_host_name(r, host, sizeof(host));
		const char *dom = strncmp(host, "autoconfig.", 11) == 0 ? host + 11 : host;
		if (http_hosted(s, head, dom) != 1)
			return;
		http_mail_settings(s->base.w->cfg, dom, "", &ms);
	}
	struct buf b;
	buf_init(&b, 131072);
	int rc = http_autoconfig(&b, &ms);
	http_send_buf(s, head, rc, &b, 200, "application/xml; charset=utf-8", NULL);
	buf_free(&b);
}

/* POST /autodiscover/autodiscover.xml (Outlook's POX request) */
static void route_autodiscover(struct http_session *s)
{
	struct http_request *r = &s->p->req;
	struct mail_settings ms;
	char addr[320];
	struct buf b;
	buf_init(&b, 131072);
	if (r->body == NULL || http_pox_address(r->body, addr, sizeof(addr)) < 0) {
		int rc = http_autodiscover_error(&b, "600", "Invalid Request: no EMailAddress");
		http_send_buf(s, 0, rc, &b, 400, "application/xml; charset=utf-8", NULL);
		buf_free(&b);
		return;
	}
	if (strstr(r->body, "/mobilesync/") != NULL) {
		/* an Exchange ActiveSync client: nothing here it could use */
		int rc = http_autodiscover_error(&b, "600", "ActiveSync is not offered; set the account "
						 "up as IMAP");
		http_send_buf(s, 0, rc, &b, 404, "application/xml; charset=utf-8", NULL);
	} else if (http_address(s, 0, addr, &ms) == 0) {
		int rc = http_autodiscover(&b, &ms);
		http_send_buf(s, 0, rc, &b, 200, "application/xml; charset=utf-8", NULL);
	}
	buf_free(&b);
}

/* Autodiscover v2: GET /autodiscover/autodiscover.json?Email=A&Protocol=P and
 * /autodiscover/autodiscover.json/v1.0/A?Protocol=P */
static void route_autodiscover_json(struct http_session *s, int head, const char *rest,
				    const char *query)
{
	char raw[512], proto[64];
	struct buf b;
	buf_init(&b, 8192);
	int have = 0;
	if (strncasecmp(rest, "/v1.0/", 6) == 0)   /* the path is already percent-decoded */
		have = strlen(rest + 6) < sizeof(raw) ? (strcpy(raw, rest + 6), 1) : -1;
	else if (rest[0] == '\0')
		have = http_query(query, "Email", raw, sizeof(raw));
	else
		have = -2;
	int pq = http_query(query, "Protocol", proto, sizeof(proto));
	const char *code = NULL, *msg = NULL;
	int status = 200;
	struct mail_settings ms;
	if (have == -2) {
		status = 404, code = "NotFound", msg = "Use /autodiscover/autodiscover.json/v1.0/ADDRESS";
	} else if (have != 1) {
		status = 400, code = "InvalidUser", msg = "An Email parameter with an address is required";
	} else if (pq != 1) {
		status = 400, code = "InvalidProtocol",
		msg = "A Protocol parameter is required; this server supports AutodiscoverV1";
	} else if (strcasecmp(proto, "AutodiscoverV1") != 0) {
		static const char *const known[] = { "ActiveSync", "Ews", "Rest", "Substrate",
			"SubstrateSearchService", "SubstrateNotificationService", "OutlookMeetingScheduler",
			"OutlookPay", "Actions", "Connectors", "ConnectorsProcessors", "ConnectorsWebhook",
			"NotesClient", "OwaPoweredExperience", "ToDo", "Weve", "OutlookLocationsService",
			"OutlookCloudSettingsService", "OutlookTailoredExperiences", "OwaPoweredExperienceV2",
			"Speedway", "SpeechService", "XrmApi", "OutlookPayService" };
		int is_known = 0;
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			is_known |= strcasecmp(proto, known[i]) == 0;
		status = is_known ? 404 : 400;
		code = is_known ? "ProtocolNotSupported" : "InvalidProtocol";
		msg = is_known ? "This server offers only IMAP, POP3 and SMTP; use AutodiscoverV1"
			       : "Unknown protocol; this server supports AutodiscoverV1";
	} else {
		int rc = http_address(s, head, raw, &ms);
		if (rc != 0) {
			buf_free(&b);
			return;
		}
	}
	int rc;
	if (code) {
		rc = buf_appendstr(&b, "{\"ErrorCode\":\"");
		http_esc_json(&b, code);
		rc |= buf_appendstr(&b, "\",\"ErrorMessage\":\"");
		http_esc_json(&b, msg);
		rc |= buf_appendstr(&b, "\"}");
	} else {
		unsigned port = s->base.w->cfg->l[LST_HTTPS].port;
		rc = buf_appendstr(&b, "{\"Protocol\":\"AutodiscoverV1\",\"Url\":\"https://autodiscover.");
		http_esc_json(&b, ms.domain);
		if (port != 443)
			rc |= buf_appendf(&b, ":%u", port);
		rc |= buf_appendstr(&b, "/autodiscover/autodiscover.xml\"}");
	}
	http_send_buf(s, head, rc, &b, status, "application/json; charset=utf-8", NULL);
	buf_free(&b);
}

/* GET /mail.mobileconfig?email=ADDR: a signed Apple configuration profile. */
static void route_mobileconfig(struct http_session *s, int head, const char *query)
{
	char raw[512], host[256];
	struct mail_settings ms;
	int q = http_query(query, "email", raw, sizeof(raw));
	if (q != 1) {
		http_error(s, head, 400, "add ?email=you@yourdomain to the address of this page");
		return;
	}
	if (http_address(s, head, raw, &ms) != 0)
		return;
	struct buf b;
	buf_init(&b, 131072);
	if (http_mobileconfig(&b, &ms) < 0) {
		http_error(s, head, 500, "the profile did not fit in memory");
		buf_free(&b);
		return;
	}
	http_host_name(&s->p->req, host, sizeof(host));
	unsigned char *der = NULL;
	size_t dlen = 0;
	const char *err = NULL;
	if (s->base.w->tls == NULL ||
	    tls_cms_sign(s->base.w->tls, host[0] ? host : NULL, b.data, b.len, &der, &dlen,
			 &err) < 0) {
		log_error("sess=%016llx proto=http event=profile-sign-failed error=\"%s\"",
			  (unsigned long long)s->base.id, err ? err : "no TLS certificate configured");
		http_error(s, head, 503, "the profile cannot be signed: no certificate configured");
		buf_free(&b);
		return;
	}
	http_send(s, head, 200, "application/x-apple-aspen-config", der, dlen,
		  "Content-Disposition: attachment; filename=\"mail.mobileconfig\"\r\n");
	free(der);
	buf_free(&b);
}

/* GET /.well-known/mta-sts.txt on mta-sts.<domain>, HTTPS only (RFC 8461 3.3). */
static void route_mta_sts(struct http_session *s, int head)
{
	char host[256];
	if (!s->base.lc->implicit_tls) {
		http_error(s, head, 404, "the MTA-STS policy is served over HTTPS only");
		return;
	}
	http_host_name(&s->p->req, host, sizeof(host));
	if (strncmp(host, "mta-sts.", 8) != 0) {
		http_error(s, head, 404, "ask for the policy at https://mta-sts.<domain>/");
		return;
	}
	if (http_hosted(s, head, host + 8) != 1)
		return;
	struct buf b;
	buf_init(&b, 131072);
	int rc = http_mta_sts_policy(&b, s->base.w->cfg);
	http_send_buf(s, head, rc, &b, 200, "text/plain; charset=utf-8", NULL);
	buf_free(&b);
}

/* GET /setup[?email=ADDR] */
static void route_setup(struct http_session *s, int head, const char *query)
{
	struct http_request *r = &s->p->req;
	char raw[512];
	struct mail_settings ms;
	const struct mail_settings *msp = NULL;
	const char *err = NULL;
	enum http_lang lang = http_pick_lang(r->accept_language);
	int q = http_query(query, "email", raw, sizeof(raw));
	struct buf url;
	buf_init(&url, 2048);
	if (q < 0) {
		raw[0] = '\0';
		err = lang == LANG_IT ? "Indirizzo troppo lungo o codificato male." :
					"That address is too long or badly encoded.";
	} else if (q == 1 && raw[0]) {
		char addr[ACCTDB_ADDRESS_MAX + 1];
		const char *dberr;
		int known = -2;
		if (acctdb_normalize_address(raw, addr, sizeof(addr)) == 0)
			known = acctdb_domain_exists(s->base.w->db, strchr(addr, '@') + 1, &dberr);
		if (known == -2)
			err = lang == LANG_IT ? "Non è un indirizzo e-mail valido: scrivilo come nome@dominio." :
						"That is not a valid e-mail address: write it as name@domain.";
		else if (known < 0)
			err = lang == LANG_IT ? "Servizio momentaneamente non disponibile, riprova." :
						"The service is unavailable right now; please try again.";
		else if (known == 0)
			err = lang == LANG_IT ? "Questo server non gestisce la posta di quel dominio." :
						"This server does not host mail for that domain.";
		else {
			http_mail_settings(s->base.w->cfg, strchr(addr, '@') + 1, addr, &ms);
			msp = &ms;
			unsigned port = s->base.w->cfg->l[LST_HTTPS].port;
			buf_appendf(&url, "https://%s", s->base.w->cfg->hostname);
			if (port != 443)
				buf_appendf(&url, ":%u", port);
			buf_appendstr(&url, "/mail.mobileconfig?email=");
			http_esc_url(&url, addr);
		}
	} else {
		raw[0] = '\0';
	}
	struct buf b;
	buf_init(&b, 512 * 1024);
	int rc = http_setup_page(&b, msp, raw, err, lang, http_pick_device(r->user_agent),
				 url.data ? url.data : "");
	http_send_buf(s, head, rc, &b, q < 0 ? 400 : 200,
		      "text/html; charset=utf-8",
		      lang == LANG_IT ? "Content-Language: it\r\nVary: Accept-Language, User-Agent\r\n" :
					"Content-Language: en\r\nVary: Accept-Language, User-Agent\r\n");
	buf_free(&b);
	buf_free(&url);
}

/* The outbound queue as the metrics show it: entries (<id>.env; held ones live in hold/)
 * and the age of the oldest, counted at each scrape. */
static void queue_census(const struct config *cfg, uint64_t *len_r, uint64_t *oldest_r)
{
	char dir[CONFIG_PATH_MAX + 8];
	*len_r = *oldest_r = 0;
	snprintf(dir, sizeof(dir), "%s/queue", cfg->data_dir);
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	time_t now = time(NULL), oldest = now;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		struct stat st;
		if (n < 5 || strcmp(e->d_name + n - 4, ".env") != 0)
			continue;
		(*len_r)++;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && st.st_mtime < oldest)
			oldest = st.st_mtime;
	}
	closedir(d);
	*oldest_r = *len_r ? (uint64_t)(now - oldest) : 0;
}

/* GET /metrics on the admin listener: the Prometheus text format (metrics.h). */
static void route_metrics(struct http_session *s, int head)
{
	const struct config *cfg = s->base.w->cfg;
	const char *names[LST_COUNT];
	for (int i = 0; i < LST_COUNT; i++)
		names[i] = cfg->l[i].name;
	uint64_t qlen, qold;
	queue_census(cfg, &qlen, &qold);
	struct buf b;
	buf_init(&b, HTTP_METRICS_MAX);
	int rc = metrics_render(&b, names, LST_COUNT, qlen, qold);
	http_send_buf(s, head, rc, &b, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
	buf_free(&b);
}

/* One request: route it and queue the answer. */
static void http_handle(struct http_session *s)
{
	struct http_request *r = &s->p->req;
	char path[HTTP_TARGET_MAX + 1];
	const char *target = r->target;
	s->nrequests++;
	if ((r->minor == 0 && !r->conn_keep_alive) || r->conn_close ||
	    s->nrequests >= HTTP_MAX_REQUESTS || s->base.w->stopping)
		s->close_after = 1;
	/* absolute-form (RFC 9112 3.2.2): drop scheme and authority */
	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		target = strchr(target, ':') + 3;
		target += strcspn(target, "/?");
	}
	const char *qm = strchr(target, '?');
	const char *query = qm ? qm + 1 : "";
	size_t plen = qm ? (size_t)(qm - target) : strlen(target);
	int head = strcmp(r->method, "HEAD") == 0;
	int get = head || strcmp(r->method, "GET") == 0;
	int post = strcmp(r->method, "POST") == 0;
	if (r->target[0] == '*' || http_unescape(target, plen, 0, path, sizeof(path)) < 0 ||
	    (path[0] != '/' && path[0] != '\0')) {
		http_error(s, head, 400, "the request target is not a valid path");
		goto done;
	}
	if (path[0] == '\0')
		strcpy(path, "/");
	if (s->base.lst == LST_ADMIN) {   /* the admin listener serves /metrics and nothing else */
		if (strcmp(path, "/metrics") != 0)
			http_error(s, head, 404, "the admin listener serves /metrics only");
		else if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_metrics(s, head);
		goto done;
	}
	if (strcmp(path, "/mail/config-v1.1.xml") == 0 ||
	    strcmp(path, "/.well-known/autoconfig/mail/config-v1.1.xml") == 0) {
		if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_autoconfig(s, head, query);
	} else if (strcasecmp(path, "/autodiscover/autodiscover.xml") == 0) {
		if (!post)
			http_not_allowed(s, "POST");
		else
			route_autodiscover(s);
	} else if (strncasecmp(path, "/autodiscover/autodiscover.json", 31) == 0) {
		if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_autodiscover_json(s, head, path + 31, query);
	} else if (strcmp(path, "/mail.mobileconfig") == 0) {
		if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_mobileconfig(s, head, query);
	} else if (strcmp(path, "/.well-known/mta-sts.txt") == 0) {
		if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_mta_sts(s, head);
	} else if (strcmp(path, "/setup") == 0 || strcmp(path, "/setup/") == 0) {
		if (!get)
			http_not_allowed(s, "GET, HEAD");
		else
			route_setup(s, head, query);
	} else if (strcmp(path, "/") == 0 && get) {
		http_send(s, head, 301, "text/plain", "See /setup\n", strlen("See /setup\n"),
			  "Location: /setup\r\n");
	} else {
		http_error(s, head, 404, "no such page; mail settings are at /setup");
	}
done:;
	char logpath[201];
	size_t ln = plen < sizeof(logpath) - 1 ? plen : sizeof(logpath) - 1;
	for (size_t i = 0; i < ln; i++)   /* keep log lines parseable */
		logpath[i] = target[i] == '"' || target[i] == '\\' ? '_' : target[i];
	logpath[ln] = '\0';
	log_info("sess=%016llx proto=http event=request method=%s path=\"%s\" status=%d",
		 (unsigned long long)s->base.id, r->method, logpath, s->last_status);
}

/* Parse and answer what has arrived, in order. */
static void http_process(struct http_session *s)
{
	struct conn *c = &s->conn;
	if (s->lingering) {
		buf_reset(&c->in);
		return;
	}
	int was_partial = s->partial;
	while (!s->base.closing && !s->close_after && c->in.len > 0 &&
	       conn_out_pending(c) < HTTP_OUT_HIGH && !c->failed) {
		size_t used = 0;
		if (s->p == NULL) {
			s->p = malloc(sizeof(*s->p));
			if (s->p == NULL) {
				c->failed = 1;
				break;
			}
			http_parser_init(s->p);
		}
		int r = http_parse(s->p, c->in.data, c->in.len, &used);
		buf_consume(&c->in, used);
		s->partial = 1;
		if (r == HTTP_MORE) {
			/* RFC 9110 10.1.1: a client that asked may wait for this before the body */
			if (s->p->awaiting_body && s->p->req.expect_continue && !s->p->req.body_len &&
			    !s->sent_continue && s->p->req.minor >= 1) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				s->sent_continue = 1;
				if (conn_write(c, cont, sizeof(cont) - 1) < 0)
					c->failed = 1;
			}
			break;
		}
		if (r == HTTP_DONE) {
			http_handle(s);
		} else {
			s->close_after = 1;
			s->nrequests++;
			const char *why = r == 414 ? "the request target (URL) is too long" :
					  r == 431 ? "the request header fields are too large" :
					  r == 413 ? "the request body is too large" :
					  r == 505 ? "only HTTP/1.0 and HTTP/1.1 are served" :
					  r == 501 ? "unsupported Transfer-Encoding" :
					  r == 417 ? "only Expect: 100-continue is understood" :
						     "the request is malformed";
			http_error(s, 0, r, "%s", why);
			log_info("sess=%016llx proto=http event=bad-request status=%d",
				 (unsigned long long)s->base.id, r);
		}
		http_parser_reset(s->p);
		if (c->in.len == 0) {   /* between requests a connection holds no parser */
			free(s->p);
			s->p = NULL;
		}
		s->partial = 0;
		s->sent_continue = 0;
	}
	if (s->p == NULL || (s->p->state == 0 && s->p->line_len == 0 && c->in.len == 0))
		s->partial = 0;
	/* the request timer runs from a request's first byte: a slow sender cannot renew it */
	if (s->partial != was_partial || !s->partial)
		http_arm_timer(s);
	conn_pause_read(c, conn_out_pending(c) >= HTTP_OUT_HIGH || s->close_after);
}

/* The session core's view of HTTP (session.h): the client speaks first; EOF and the lingering
 * close are after()'s. */
static const char *http_op_plaintext(struct session *b)
{
	struct conn *c = b->conn;
	/* plain HTTP sent to the HTTPS port: say so in plain HTTP, as a browser shows it */
	static const char r400[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
		"Content-Length: 60\r\nConnection: close\r\n\r\n"
		"400 Bad Request: this port speaks HTTPS; use https:// here.\n";
	conn_write_plain(c, r400);
	shutdown(c->fd, SHUT_WR);
	/* read what the client sent, so closing does not reset the connection and lose the
	 * answer (bounded: the rest, if any, is the client's problem) */
	char sink[4096];
	for (int i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
		;
	return "plain HTTP on the HTTPS port";
}

/* between requests a vanished peer is a normal end (TLS clients often skip close_notify) */
static const char *http_op_failed(const struct session *b)
{
	return ((const struct http_session *)b)->partial ? "I/O error" : "client disconnected";
}

static void http_op_process(struct session *b)
{
	http_process((struct http_session *)b);
}

static int http_op_busy(const struct session *b)
{
	(void)b;
	return 1;   /* http_op_after decides what EOF means */
}

static void http_op_close_detail(const struct session *b, char *out, size_t outlen)
{
	snprintf(out, outlen, "requests=%u", ((const struct http_session *)b)->nrequests);
}

static void http_op_after(struct session *b)
{
	struct http_session *s = (struct http_session *)b;
	struct conn *c = &s->conn;
	if (s->lingering) {
		buf_reset(&c->in);
		if (c->eof)
			http_close(s, "closed after reply");
		return;
	}
	if (s->close_after && conn_out_pending(c) == 0) {
		/* lingering close: the peer reads our reply before any reset for unread input */
		s->lingering = 1;
		if (c->tls_state == CONN_PLAIN)
			shutdown(c->fd, SHUT_WR);
		conn_pause_read(c, 0);
		http_arm_timer(s);
		return;
	}
	if (c->eof)
		http_close(s, "client disconnected");
}

static const struct session_ops http_ops = {
	.proto = "http",
	.process = http_op_process,
	.busy = http_op_busy,
	.close_detail = http_op_close_detail,
	.release = http_release,
	.shutdown = http_on_shutdown,
	.plaintext = http_op_plaintext,
	.failed = http_op_failed,
	.after = http_op_after,
};

void http_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer)
{
	struct http_session *s = session_new(w, fd, lst, peer, &http_ops, sizeof(*s));
	if (s == NULL)
		return;
	if (session_connect(&s->base, &s->conn, fd, HTTP_IN_MAX, HTTP_OUT_MAX) < 0) {
		free(s);
		return;
	}
	http_arm_timer(s);
	session_begin(&s->base);
}
