/* config.c - the postino.conf parser. */
#include "config.h"
#include "milter.h"
#include "num.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ktype { K_STR, K_PATH, K_UINT, K_SIZE, K_DURATION, K_BOOL, K_BARELF, K_TLSHOST,
	     K_DOMAINHOST, K_PHISHMARK, K_MILTERS };

/* phishing_mark values, in the order of enum config_phish_mark */
static const char *const phish_marks[] = { "header", "subject", "body", "both" };

/* Settings of the whole server. */
struct gkey {
	const char *name;
	enum ktype type;
	size_t off;
	size_t len;          /* for strings: buffer size */
	const char *help;
};

#define G(name, type, field, help) { name, type, offsetof(struct config, field), \
				     sizeof(((struct config *)0)->field), help }
static const struct gkey gkeys[] = {
	G("hostname", K_STR, hostname, "this server's host name (EHLO, Received:, certificates)"),
	G("data_dir", K_PATH, data_dir, "directory holding system.db, mail/, queue/"),
	G("run_user", K_STR, run_user, "unprivileged user the workers run as when started as root"),
	G("workers", K_UINT, workers, "protocol worker processes"),
	G("log_debug", K_BOOL, log_debug, "log every command"),
	G("log_format", K_STR, log_format, "text (key=value lines) or json (one object a line)"),
	G("pop3_expire", K_STR, pop3_expire,
	  "POP3 EXPIRE: days a downloaded message is kept, or never (empty: not announced)"),
	G("login_delay_max", K_DURATION, login_delay_max,
	  "failed logins are answered after a delay doubling up to this (0 turns it off)"),
	G("login_failure_delay", K_DURATION, login_failure_delay,
	  "every failed login is answered after at least this long (0: at once)"),
	G("login_cache_ttl", K_DURATION, login_cache_ttl,
	  "a worker remembers a correct login this long, so the same password skips the hash (0: off)"),
	G("pop3_login_delay", K_DURATION, pop3_login_delay,
	  "POP3 LOGIN-DELAY: least time between two logins of one account (0: none)"),
	G("imap_rest_after", K_DURATION, imap_rest_after,
	  "an inactive IMAP session closes its index handle after this (0: never)"),
	G("send_messages_per_hour", K_UINT, send_messages_per_hour,
	  "messages an authenticated account may send per hour (0: no limit)"),
	G("send_messages_per_day", K_UINT, send_messages_per_day,
	  "messages an authenticated account may send per 24 hours (0: no limit)"),
	G("send_recipients_per_day", K_UINT, send_recipients_per_day,
	  "recipients an account may send to per 24 hours (0: no limit)"),
	G("send_new_recipients_per_day", K_UINT, send_new_recipients_per_day,
	  "never-before-written recipients an account may send to per 24 hours (0: no limit)"),
	G("send_suspend_threshold", K_UINT, send_suspend_threshold,
	  "attempts over a sending limit within 24 hours that suspend the account (0: never)"),
	G("password_min_length", K_UINT, password_min_length,
	  "least number of characters of a password set with user add / user passwd"),
	G("diag_keep", K_UINT, diag_keep,
	  "login diagnostics: events kept per account and per client IP"),
	G("smtp_greet_pause", K_DURATION, smtp_greet_pause,
	  "port 25: time between the first 220- line and the last; a client talking before is "
	  "refused (0: greet at once)"),
	G("tls_hello_margin_ms", K_UINT, tls_hello_margin_ms,
	  "587/143/110: ms a possible TLS ClientHello is awaited beyond 3 round trips (at most 3000)"),
	G("smtp_unknown_rcpt_delay_after", K_UINT, smtp_unknown_rcpt_delay_after,
	  "unknown recipients in one session answered at once before the brake starts"),
	G("smtp_unknown_rcpt_delay", K_DURATION, smtp_unknown_rcpt_delay,
	  "delay of each further unknown-recipient reply (0: none)"),
	G("smtp_unknown_rcpt_limit", K_UINT, smtp_unknown_rcpt_limit,
	  "unknown recipients that close the session with 421 (0: no limit)"),
	G("tls_cert", K_PATH, tls_cert, "default certificate chain (PEM)"),
	G("tls_key", K_PATH, tls_key, "key of the default certificate (PEM)"),
	{ "tls_host", K_TLSHOST, 0, 0, "NAME CERTFILE KEYFILE: certificate chosen by SNI (repeatable)" },
	{ "domain_host", K_DOMAINHOST, 0, 0,
	  "DOMAIN imap=HOST pop3=HOST smtp=HOST: servers a domain's clients use (repeatable)" },
	G("dns_servers", K_STR, dns_servers,
	  "IP[:PORT] ... resolvers for outbound mail (empty: those of /etc/resolv.conf)"),
	G("remote_smtp_port", K_UINT, remote_smtp_port, "port dialled on other mail servers"),
	G("queue_retry_min", K_DURATION, queue_retry_min, "first retry of a deferred message"),
	G("queue_retry_max", K_DURATION, queue_retry_max, "longest time between two retries"),
	G("queue_lifetime", K_DURATION, queue_lifetime, "a message undeliverable this long bounces"),
	G("queue_delay_notice", K_DURATION, queue_delay_notice,
	  "the sender is told of a delay after this long (0: never)"),
	G("queue_concurrency", K_UINT, queue_concurrency, "outbound SMTP connections in all"),
	G("queue_concurrency_per_domain", K_UINT, queue_concurrency_per_domain,
	  "outbound SMTP connections to one destination"),
	G("relayhost", K_STR, relayhost, "host[:port]: send all outbound mail through this relay"),
	G("relayhost_user", K_STR, relayhost_user, "login at the relay host (AUTH PLAIN)"),
	G("relayhost_password", K_STR, relayhost_password, "password at the relay host"),
	G("relayhost_tls_verify", K_BOOL, relayhost_tls_verify,
	  "check the relay host's certificate (TLS is always required to it)"),
	G("smtp_connect_timeout", K_DURATION, smtp_connect_timeout,
	  "outbound: time allowed to connect and get the greeting"),
	G("smtp_reply_timeout", K_DURATION, smtp_reply_timeout, "outbound: time allowed per reply"),
	G("tls_ca_file", K_PATH, tls_ca_file,
	  "CA certificates outbound TLS trusts (MTA-STS, relayhost_tls_verify); empty: the system's"),
	G("dns_trust_anchor_file", K_PATH, dns_trust_anchor_file,
	  "outbound: DNSSEC trust anchors (e.g. /usr/share/dns/root.key); enables DANE; empty: off"),
	G("mta_sts", K_BOOL, mta_sts,
	  "outbound: honour the domains' MTA-STS policies (RFC 8461: verified TLS to listed MX)"),
	G("mta_sts_port", K_UINT, mta_sts_port,
	  "outbound: HTTPS port of MTA-STS policy servers (443; for tests)"),
	G("inbound_auth", K_BOOL, inbound_auth,
	  "port 25: check SPF, DKIM and DMARC, add Authentication-Results, apply DMARC policies"),
	G("inbound_auth_dns_timeout", K_DURATION, inbound_auth_dns_timeout,
	  "port 25: time allowed for one DNS lookup of those checks (a timeout is a 451)"),
	G("phishing_checks", K_BOOL, phishing_checks,
	  "port 25: look for phishing signs in mail to local recipients and mark it"),
	G("phishing_brand_names", K_STR, phishing_brand_names,
	  "names of the provider a display name must not imitate, comma separated (hosted "
	  "domains and their labels always count)"),
	G("phishing_mark", K_PHISHMARK, phishing_mark,
	  "how suspected phishing is shown: header (X-Postino-Phishing only), subject, body or both"),
	G("phishing_subject_tag", K_STR, phishing_subject_tag, "tag put before the subject"),
	G("phishing_warning", K_STR, phishing_warning,
	  "warning line put at the top of the message text"),
	G("phishing_lookalike_distance", K_UINT, phishing_lookalike_distance,
	  "most edits between a lookalike and a hosted domain (1, 2 from 10 characters; 0: off)"),
	G("smtpd_milters", K_MILTERS, smtpd_milters,
	  "content filters (milters) of port 25: inet:host:port or unix:/path, in order"),
	G("submission_milters", K_MILTERS, submission_milters,
	  "content filters (milters) of ports 587 and 465"),
	G("milter_connect_timeout", K_DURATION, milter_connect_timeout,
	  "time allowed to connect to a milter and negotiate with it"),
	G("milter_command_timeout", K_DURATION, milter_command_timeout,
	  "time allowed for a milter's reply to a command"),
	G("milter_content_timeout", K_DURATION, milter_content_timeout,
	  "time allowed for a milter's reply to a body chunk and to the end of the message"),
	G("milter_default_action", K_STR, milter_default_action,
	  "tempfail, accept or reject: a milter that is down, slow or broken means this"),
};
#define NGKEYS (sizeof(gkeys) / sizeof(gkeys[0]))

/* Settings that a listener may override. Each applies to the listener kinds in `protos` only
 * (a bit per enum proto): elsewhere "LISTENER.key" is refused with file:line and the global key
 * leaves that listener alone, so "config show" lists only what a listener honours. Numbers are
 * checked against [min, max] in every form (global key, LISTENER.key, <listener>_port). */
struct lkey {
	const char *name;
	enum ktype type;
	size_t off;
	size_t len;
	unsigned protos;
	uint64_t min, max;   /* K_UINT, K_SIZE, K_DURATION; max 0 = the type's own limit */
	const char *help;
};
#define P_SMTP (1u << PROTO_SMTP)
#define P_IMAP (1u << PROTO_IMAP)
#define P_POP3 (1u << PROTO_POP3)
#define P_HTTP (1u << PROTO_HTTP)
#define P_ALL (P_SMTP | P_IMAP | P_POP3 | P_HTTP)
/* A command line shorter than RFC 5321 4.5.3.1.4's 512 octets breaks ordinary clients; one
 * longer than 1 MiB is a memory cost per session, not a line. */
#define LINE_LENGTH_MIN 512
#define LINE_LENGTH_MAX (1024 * 1024)
/* A message of 4 GiB or more cannot be announced to IMAP4rev1 clients (RFC 3501 section 9:
 * "number" is an unsigned 32-bit integer). */
#define MESSAGE_SIZE_MAX (4ull * 1024 * 1024 * 1024 - 1)
#define PORT_MAX 65535
#define L(name, type, field, protos, min, max, help) { name, type, \
	offsetof(struct listener_conf, field), sizeof(((struct listener_conf *)0)->field), \
	protos, min, max, help }
static const struct lkey lkeys[] = {
	L("port", K_UINT, port, P_ALL, 0, PORT_MAX, "TCP port (0 disables the listener)"),
	L("listen", K_STR, listen, P_ALL, 0, 0, "address to listen on (\"*\" for all)"),
	L("message_size_limit", K_SIZE, message_size_limit, P_SMTP | P_IMAP, 1,   /* POP3 takes none */
	  MESSAGE_SIZE_MAX, "largest message accepted (K, M, G)"),
	L("max_recipients", K_UINT, max_recipients, P_SMTP, 1, 0, "recipients per message"),
	L("line_length_limit", K_SIZE, line_length_limit, P_SMTP | P_IMAP | P_POP3,
	  LINE_LENGTH_MIN, LINE_LENGTH_MAX, "longest command line in octets"),
	L("max_errors", K_UINT, max_errors, P_SMTP | P_IMAP | P_POP3, 1, 0,
	  "protocol errors before the session is closed"),
	L("command_timeout", K_DURATION, command_timeout, P_ALL, 1, 0,
	  "idle time allowed between commands"),
	L("data_timeout", K_DURATION, data_timeout, P_SMTP, 1, 0,
	  "idle time allowed while receiving a message"),
	L("max_conn_per_ip", K_UINT, max_conn_per_ip, P_ALL, 1, 0,
	  "concurrent connections from one IP address"),
	L("max_connections", K_UINT, max_connections, P_ALL, 1, 0,
	  "concurrent connections per worker"),
	L("bare_lf", K_BARELF, bare_lf_reject, P_SMTP, 0, 0,
	  "reject or normalize bare LF / CR line ends in DATA"),
	L("milters", K_MILTERS, milters, P_SMTP, 0, 0,
	  "content filters (milters) of this listener, in order (default: smtpd_milters on "
	  "smtp, submission_milters on submission and submissions)"),
};
#define NLKEYS (sizeof(lkeys) / sizeof(lkeys[0]))
_Static_assert(NGKEYS + NLKEYS <= sizeof(((struct config *)0)->set_global),
	       "config.set_global has a flag per global and per listener key");
_Static_assert(NLKEYS <= sizeof(((struct config *)0)->set_listener[0]),
	       "config.set_listener has a flag per listener key");

static const struct {
	const char *name;
	enum proto proto;
	unsigned port;
	int implicit_tls, submission;
} listener_defs[LST_COUNT] = {
	[LST_SMTP] = { "smtp", PROTO_SMTP, 25, 0, 0 },
	[LST_SUBMISSION] = { "submission", PROTO_SMTP, 587, 0, 1 },
	[LST_SUBMISSIONS] = { "submissions", PROTO_SMTP, 465, 1, 1 },
	[LST_IMAP] = { "imap", PROTO_IMAP, 143, 0, 0 },
	[LST_IMAPS] = { "imaps", PROTO_IMAP, 993, 1, 0 },
	[LST_POP3] = { "pop3", PROTO_POP3, 110, 0, 0 },
	[LST_POP3S] = { "pop3s", PROTO_POP3, 995, 1, 0 },
	[LST_HTTP] = { "http", PROTO_HTTP, 80, 0, 0 },
	[LST_HTTPS] = { "https", PROTO_HTTP, 443, 1, 0 },
	[LST_ADMIN] = { "admin", PROTO_HTTP, 0, 0, 0 },
};

/* Listener id by name. */
int config_listener_id(const char *name)
{
	for (int i = 0; i < LST_COUNT; i++)
		if (strcmp(listener_defs[i].name, name) == 0)
			return i;
	return -1;
}

/* Built-in defaults. */
void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->hostname, sizeof(cfg->hostname), "localhost");
	cfg->workers = 2;
	snprintf(cfg->log_format, sizeof(cfg->log_format), "text");
	cfg->login_delay_max = 15;
	cfg->login_failure_delay = 2;
	cfg->login_cache_ttl = 600;
	cfg->imap_rest_after = 15;
	cfg->send_messages_per_hour = 200;
	cfg->send_messages_per_day = 1000;
	cfg->send_recipients_per_day = 2000;
	cfg->send_new_recipients_per_day = 1000;
	cfg->send_suspend_threshold = 100;
	cfg->diag_keep = 100;
	cfg->password_min_length = 8;
	cfg->smtp_greet_pause = 1;
	cfg->tls_hello_margin_ms = CONFIG_TLS_HELLO_MARGIN_MS;
	cfg->smtp_unknown_rcpt_delay_after = 3;
	cfg->smtp_unknown_rcpt_delay = 1;
	cfg->smtp_unknown_rcpt_limit = 10;
	cfg->remote_smtp_port = 25;
	cfg->queue_retry_min = 300;
	cfg->queue_retry_max = 4 * 3600;
	cfg->queue_lifetime = 5 * 86400;
	cfg->queue_delay_notice = 4 * 3600;
	cfg->queue_concurrency = 100;
	cfg->queue_concurrency_per_domain = 20;
	cfg->relayhost_tls_verify = 1;
	cfg->mta_sts = 1;
	cfg->mta_sts_port = 443;
	cfg->smtp_connect_timeout = 30;
	cfg->smtp_reply_timeout = 300;
	cfg->inbound_auth = 1;
	cfg->inbound_auth_dns_timeout = 5;
	cfg->phishing_checks = 1;
	cfg->phishing_mark = CONFIG_PHISH_MARK_BOTH;
	snprintf(cfg->phishing_subject_tag, sizeof(cfg->phishing_subject_tag), "[Suspicious]");
	snprintf(cfg->phishing_warning, sizeof(cfg->phishing_warning),
		 "WARNING from your mail provider: this message shows signs of phishing. Do not "
		 "reply with passwords or payment details and do not open its links.");
	cfg->phishing_lookalike_distance = 2;
	cfg->milter_connect_timeout = 30;     /* Postfix's defaults */
	cfg->milter_command_timeout = 30;
	cfg->milter_content_timeout = 300;
	snprintf(cfg->milter_default_action, sizeof(cfg->milter_default_action), "tempfail");
	for (int i = 0; i < LST_COUNT; i++) {
		struct listener_conf *l = &cfg->l[i];
		l->name = listener_defs[i].name;
		l->proto = listener_defs[i].proto;
		l->port = listener_defs[i].port;
		l->implicit_tls = listener_defs[i].implicit_tls;
		l->submission = listener_defs[i].submission;
		snprintf(l->listen, sizeof(l->listen), "127.0.0.1");
		l->message_size_limit = 25 * 1024 * 1024;
		l->max_recipients = 100;
		/* IMAP: UID sets from clients that hold large mailboxes run long (Dovecot's
		 * default is also 64 KB) */
		l->line_length_limit = l->proto == PROTO_IMAP ? 65536 : 2048;
		l->max_errors = 10;
		l->command_timeout = 300;
		l->data_timeout = 600;
		l->max_conn_per_ip = 20;
		l->max_connections = 5000;
		l->bare_lf_reject = l->submission;   /* submission clients have no excuse */
	}
}

/* Format an error message "file:line: ...". */
static int cfg_err(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int cfg_err(char *err, size_t errlen, const char *file, unsigned line, const char *fmt, ...)
{
	int n = snprintf(err, errlen, "%s:%u: ", file, line);
	if (n >= 0 && (size_t)n < errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Resolve a path value relative to the config file's directory. */
static int cfg_path(const char *cfgpath, const char *val, char *out, size_t outlen)
{
	int n;
	if (val[0] == '/') {
		n = snprintf(out, outlen, "%s", val);
	} else {
		const char *slash = strrchr(cfgpath, '/');
		if (slash == NULL)
			n = snprintf(out, outlen, "%s", val);
		else
			n = snprintf(out, outlen, "%.*s/%s", (int)(slash - cfgpath), cfgpath, val);
	}
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

/* Store one typed value into a field. Returns NULL or the text of what was expected. */
static const char *cfg_set(const char *cfgpath, enum ktype type, void *field, size_t len,
			   const char *val)
{
	uint64_t v;
	switch (type) {
	case K_STR:
		if (strlen(val) >= len)
			return "a shorter value";
		memcpy(field, val, strlen(val) + 1);
		return NULL;
	case K_PATH:
		if (cfg_path(cfgpath, val, field, len) < 0)
			return "a shorter path";
		return NULL;
	case K_UINT:
		if (num_parse_u64(val, strlen(val), UINT_MAX, &v) < 0)
			return "a whole number";
		*(unsigned *)field = (unsigned)v;
		return NULL;
	case K_DURATION:
		if (num_parse_duration(val, &v) < 0 || v > UINT_MAX)
			return "a duration such as 300, 300s, 5m, 1h or 1d";
		*(unsigned *)field = (unsigned)v;
		return NULL;
	case K_SIZE:
		if (num_parse_size(val, &v) < 0)
			return "a size such as 1048576, 512K, 25M or 1G";
		if (len == sizeof(size_t))
			*(size_t *)field = (size_t)v;
		else
			*(uint64_t *)field = v;
		return NULL;
	case K_BOOL:
		if (strcmp(val, "yes") == 0 || strcmp(val, "1") == 0 || strcmp(val, "true") == 0)
			*(int *)field = 1;
		else if (strcmp(val, "no") == 0 || strcmp(val, "0") == 0 || strcmp(val, "false") == 0)
			*(int *)field = 0;
		else
			return "yes or no";
		return NULL;
	case K_BARELF:
		if (strcmp(val, "reject") == 0)
			*(int *)field = 1;
		else if (strcmp(val, "normalize") == 0)
			*(int *)field = 0;
		else
			return "reject or normalize";
		return NULL;
	case K_PHISHMARK:
		for (size_t i = 0; i < sizeof(phish_marks) / sizeof(phish_marks[0]); i++) {
			if (strcmp(val, phish_marks[i]) == 0) {
				*(int *)field = (int)i;
				return NULL;
			}
		}
		return "header, subject, body or both";
	case K_MILTERS: {
		char specs[MILTER_LIST_MAX][MILTER_SPEC_MAX];
		const char *why;
		if (strlen(val) >= len)
			return "a shorter list of milters";
		if (milter_parse_list(val, specs, MILTER_LIST_MAX, &why) < 0)
			return why;
		memcpy(field, val, strlen(val) + 1);
		return NULL;
	}
	case K_TLSHOST:
		return "NAME CERTFILE KEYFILE";
	case K_DOMAINHOST:
		return "DOMAIN imap=HOST pop3=HOST smtp=HOST";
	}
	return "a valid value";
}

/* Parse "tls_host = NAME CERT KEY". */
static const char *cfg_tls_host(struct config *cfg, const char *val)
{
	char name[256], cert[CONFIG_PATH_MAX], key[CONFIG_PATH_MAX], extra[2];
	if (cfg->ntls_hosts >= CONFIG_MAX_TLS_HOSTS)
		return "fewer tls_host lines (at most 256)";
	if (strlen(val) >= sizeof(cert) ||
	    sscanf(val, "%255s %1023s %1023s %1s", name, cert, key, extra) != 3)
		return "NAME CERTFILE KEYFILE";
	struct tls_host_conf *h = &cfg->tls_hosts[cfg->ntls_hosts];
	snprintf(h->name, sizeof(h->name), "%s", name);
	if (cfg_path(cfg->path, cert, h->cert, sizeof(h->cert)) < 0 ||
	    cfg_path(cfg->path, key, h->key, sizeof(h->key)) < 0)
		return "shorter paths";
	cfg->ntls_hosts++;
	return NULL;
}

/* Is s a plausible host name (letters, digits, '-', '.'; 1..253)? */
static int cfg_hostname_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '-' && c != '.')
			return 0;
	}
	return 1;
}

/* Parse "domain_host = DOMAIN imap=HOST pop3=HOST smtp=HOST" (any subset of the three). */
static const char *cfg_domain_host(struct config *cfg, const char *val)
{
	char dom[256], kv[3][300], extra[2];
	memset(kv, 0, sizeof(kv));
	if (cfg->ndomain_hosts >= CONFIG_MAX_DOMAIN_HOSTS)
		return "fewer domain_host lines (at most 256)";
	int n = sscanf(val, "%255s %299s %299s %299s %1s", dom, kv[0], kv[1], kv[2], extra);
	if (n < 2 || n > 4 || !cfg_hostname_ok(dom) || strlen(dom) > 253)
		return "DOMAIN imap=HOST pop3=HOST smtp=HOST";
	struct domain_host_conf h;
	memset(&h, 0, sizeof(h));
	for (size_t i = 0; dom[i]; i++)
		h.domain[i] = (char)tolower((unsigned char)dom[i]);
	for (int i = 0; i < n - 1; i++) {
		char *eq = strchr(kv[i], '=');
		if (eq == NULL || !cfg_hostname_ok(eq + 1))
			return "DOMAIN imap=HOST pop3=HOST smtp=HOST";
		*eq = '\0';
		char *dst = strcmp(kv[i], "imap") == 0 ? h.imap : strcmp(kv[i], "pop3") == 0 ? h.pop3 :
			    strcmp(kv[i], "smtp") == 0 ? h.smtp : NULL;
		if (dst == NULL)
			return "DOMAIN imap=HOST pop3=HOST smtp=HOST";
		snprintf(dst, sizeof(h.imap), "%s", eq + 1);
	}
	/* a later line for the same domain replaces the earlier one */
	size_t i = 0;
	while (i < cfg->ndomain_hosts && strcmp(cfg->domain_hosts[i].domain, h.domain) != 0)
		i++;
	cfg->domain_hosts[i] = h;
	if (i == cfg->ndomain_hosts)
		cfg->ndomain_hosts++;
	return NULL;
}

/* The server names for clients of a domain. */
void config_domain_hosts(const struct config *cfg, const char *domain, const char **imap,
			 const char **pop3, const char **smtp)
{
	*imap = *pop3 = *smtp = cfg->hostname;
	for (size_t i = 0; i < cfg->ndomain_hosts; i++) {
		const struct domain_host_conf *h = &cfg->domain_hosts[i];
		if (strcasecmp(h->domain, domain) != 0)
			continue;
		if (h->imap[0])
			*imap = h->imap;
		if (h->pop3[0])
			*pop3 = h->pop3;
		if (h->smtp[0])
			*smtp = h->smtp;
	}
}

/* Trim ASCII white space at both ends in place. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* The listener names of the kinds in `protos`, comma separated, into out. */
static void lkey_listeners(unsigned protos, char *out, size_t outlen)
{
	size_t n = 0;
	out[0] = '\0';
	for (int id = 0; id < LST_COUNT; id++) {
		if (!(protos & (1u << listener_defs[id].proto)))
			continue;
		int w = snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", listener_defs[id].name);
		if (w < 0 || (size_t)w >= outlen - n)
			return;
		n += (size_t)w;
	}
}

/* Store listener key k of listener id, checking its range. NULL, or what was expected (in
 * the static text or in buf). */
static const char *lkey_set(struct config *cfg, size_t k, int id, const char *val, char *buf,
			    size_t buflen)
{
	const struct lkey *lk = &lkeys[k];
	char *field = (char *)&cfg->l[id] + lk->off;
	const char *want = cfg_set(cfg->path, lk->type, field, lk->len, val);
	if (want != NULL || (lk->type != K_UINT && lk->type != K_SIZE && lk->type != K_DURATION))
		return want;
	uint64_t v;
	if (lk->type == K_SIZE)
		v = lk->len == sizeof(size_t) ? (uint64_t)*(size_t *)field : *(uint64_t *)field;
	else
		v = *(unsigned *)field;
	if (v >= lk->min && (lk->max == 0 || v <= lk->max))
		return NULL;
	if (k == 0)
		snprintf(buf, buflen, "a port number 0-%u", PORT_MAX);
	else if (lk->max == 0)
		snprintf(buf, buflen, "a value of at least %llu", (unsigned long long)lk->min);
	else
		snprintf(buf, buflen, "a value from %llu to %llu", (unsigned long long)lk->min,
			 (unsigned long long)lk->max);
	return buf;
}

/* Apply one "key = value" pair. */
static int cfg_apply(struct config *cfg, const char *key, const char *val, const char *file,
		     unsigned lineno, char *err, size_t errlen, int *port_keys_set)
{
	const char *want;
	char wbuf[256];
	/* LISTENER.key */
	const char *dot = strchr(key, '.');
	if (dot != NULL) {
		char lname[32];
		size_t ln = (size_t)(dot - key);
		if (ln >= sizeof(lname))
			return cfg_err(err, errlen, file, lineno, "unknown listener in '%s'", key);
		memcpy(lname, key, ln);
		lname[ln] = '\0';
		int id = config_listener_id(lname);
		if (id < 0)
			return cfg_err(err, errlen, file, lineno,
				       "unknown listener '%s' (expected smtp, submission, submissions, "
				       "imap, imaps, pop3, pop3s, http or https)", lname);
		for (size_t k = 0; k < NLKEYS; k++) {
			if (strcmp(lkeys[k].name, dot + 1) != 0)
				continue;
			if (!(lkeys[k].protos & (1u << listener_defs[id].proto))) {
				lkey_listeners(lkeys[k].protos, wbuf, sizeof(wbuf));
				return cfg_err(err, errlen, file, lineno,
					       "'%s' does not apply to the %s listener (it applies "
					       "to: %s)", dot + 1, lname, wbuf);
			}
			want = lkey_set(cfg, k, id, val, wbuf, sizeof(wbuf));
			if (want)
				return cfg_err(err, errlen, file, lineno, "'%s' expects %s, got '%s'",
					       key, want, val);
			cfg->set_listener[id][k] = 1;
			return 0;
		}
		size_t n = 0;
		wbuf[0] = '\0';
		for (size_t k = 0; k < NLKEYS; k++) {
			if (!(lkeys[k].protos & (1u << listener_defs[id].proto)))
				continue;
			int w = snprintf(wbuf + n, sizeof(wbuf) - n, "%s%s", n ? ", " : "",
					 lkeys[k].name);
			if (w < 0 || (size_t)w >= sizeof(wbuf) - n)
				break;
			n += (size_t)w;
		}
		return cfg_err(err, errlen, file, lineno,
			       "'%s' cannot be set per listener (%s takes: %s)", dot + 1, lname, wbuf);
	}
	/* <listener>_port */
	size_t kl = strlen(key);
	if (kl > 5 && strcmp(key + kl - 5, "_port") == 0) {
		char lname[32];
		if (kl - 5 < sizeof(lname)) {
			memcpy(lname, key, kl - 5);
			lname[kl - 5] = '\0';
			int id = config_listener_id(lname);
			if (id >= 0) {
				want = lkey_set(cfg, 0, id, val, wbuf, sizeof(wbuf));
				if (want)
					return cfg_err(err, errlen, file, lineno,
						       "'%s' expects %s, got '%s'", key, want, val);
				cfg->set_listener[id][0] = 1;
				port_keys_set[id] = 1;
				return 0;
			}
		}
	}
	for (size_t k = 0; k < NGKEYS; k++) {
		if (strcmp(gkeys[k].name, key) != 0)
			continue;
		if (gkeys[k].type == K_TLSHOST)
			want = cfg_tls_host(cfg, val);
		else if (gkeys[k].type == K_DOMAINHOST)
			want = cfg_domain_host(cfg, val);
		else
			want = cfg_set(cfg->path, gkeys[k].type, (char *)cfg + gkeys[k].off,
				       gkeys[k].len, val);
		if (want)
			return cfg_err(err, errlen, file, lineno, "'%s' expects %s, got '%s'", key,
				       want, val);
		cfg->set_global[k] = 1;
		/* Postfix's names: defaults of the listeners' own "milters" (LISTENER.milters
		 * lines are re-applied after the file, so they win) */
		if (gkeys[k].type == K_MILTERS)
			for (int id = 0; id < LST_COUNT; id++)
				if (cfg->l[id].proto == PROTO_SMTP &&
				    (id == LST_SMTP) == (strcmp(key, "smtpd_milters") == 0))
					snprintf(cfg->l[id].milters, sizeof(cfg->l[id].milters),
						 "%s", val);
		return 0;
	}
	/* a listener key given globally applies to every listener not overriding it */
	for (size_t k = 0; k < NLKEYS; k++) {
		if (strcmp(lkeys[k].name, key) != 0 || k == 0)
			continue;
		for (int id = 0; id < LST_COUNT; id++) {
			if (!(lkeys[k].protos & (1u << listener_defs[id].proto)))
				continue;
			if (id == LST_ADMIN && strcmp(key, "listen") == 0)
				continue;   /* metrics stay on loopback unless admin.listen says */
			want = lkey_set(cfg, k, id, val, wbuf, sizeof(wbuf));
			if (want)
				return cfg_err(err, errlen, file, lineno, "'%s' expects %s, got '%s'",
					       key, want, val);
		}
		cfg->set_global[NGKEYS + k] = 1;
		return 0;
	}
	return cfg_err(err, errlen, file, lineno,
		       "unknown setting '%s' (see 'postino config show' for every setting)", key);
}

/* Is addr a wildcard address ("*", 0.0.0.0, ::)? */
static int cfg_any_addr(const char *addr)
{
	return strcmp(addr, "*") == 0 || strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
}

/* Two enabled listeners on one port and overlapping addresses: serve could not bind the second.
 * NULL, or the first clash written into buf. */
static const char *cfg_port_clash(const struct config *cfg, char *buf, size_t buflen)
{
	for (int i = 0; i < LST_COUNT; i++) {
		const struct listener_conf *a = &cfg->l[i];
		for (int j = i + 1; a->port != 0 && j < LST_COUNT; j++) {
			const struct listener_conf *b = &cfg->l[j];
			if (b->port != a->port || (strcmp(a->listen, b->listen) != 0 &&
						   !cfg_any_addr(a->listen) && !cfg_any_addr(b->listen)))
				continue;
			snprintf(buf, buflen, "listeners %s and %s both use port %u (on %s and %s): give "
				 "each its own port, or 0 to turn one off", a->name, b->name, a->port,
				 a->listen, b->listen);
			return buf;
		}
	}
	return NULL;
}

/* Read a config file. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	if (cfg->data_dir[0] == '\0')
		cfg_path(path, ".", cfg->data_dir, sizeof(cfg->data_dir));
	char line[4096];
	unsigned lineno = 0;
	int port_keys_set[LST_COUNT] = { 0 };
	int rc = 0;
	/* Two passes: global listener keys first would lose to LISTENER.key lines given earlier,
	 * so LISTENER.key overrides are recorded (set_listener == 1) and re-applied at the end. */
	struct {
		char key[128], val[4096];
		unsigned lineno;
	} *over = NULL;
	size_t nover = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			rc = cfg_err(err, errlen, path, lineno, "line too long (at most 4095 octets)");
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			rc = cfg_err(err, errlen, path, lineno, "expected 'key = value', got '%.60s'", s);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		if (*key == '\0' || strlen(key) >= 128) {
			rc = cfg_err(err, errlen, path, lineno, "expected a setting name before '='");
			break;
		}
		if (strchr(key, '.') != NULL) {
			void *n = realloc(over, (nover + 1) * sizeof(*over));
			if (n == NULL) {
				rc = cfg_err(err, errlen, path, lineno, "out of memory");
				break;
			}
			over = n;
			snprintf(over[nover].key, sizeof(over[nover].key), "%s", key);
			snprintf(over[nover].val, sizeof(over[nover].val), "%s", val);
			over[nover].lineno = lineno;
			nover++;
		}
		rc = cfg_apply(cfg, key, val, path, lineno, err, errlen, port_keys_set);
		if (rc < 0)
			break;
	}
	for (size_t i = 0; rc == 0 && i < nover; i++)
		rc = cfg_apply(cfg, over[i].key, over[i].val, path, over[i].lineno, err, errlen,
			       port_keys_set);
	free(over);
	fclose(f);
	if (rc == 0 && cfg->workers == 0)
		rc = cfg_err(err, errlen, path, lineno, "'workers' must be at least 1");
	if (rc == 0 && strcmp(cfg->log_format, "text") != 0 && strcmp(cfg->log_format, "json") != 0)
		rc = cfg_err(err, errlen, path, lineno, "'log_format' expects text or json, got '%s'",
			     cfg->log_format);
	if (rc == 0 && cfg->pop3_expire[0] && strcmp(cfg->pop3_expire, "never") != 0 &&
	    strspn(cfg->pop3_expire, "0123456789") != strlen(cfg->pop3_expire))
		rc = cfg_err(err, errlen, path, lineno,
			     "'pop3_expire' expects a number of days or never, got '%s'",
			     cfg->pop3_expire);
	if (rc == 0 && (cfg->mta_sts_port == 0 || cfg->mta_sts_port > 65535))
		rc = cfg_err(err, errlen, path, lineno, "'mta_sts_port' expects a port 1-65535");
	if (rc == 0 && (cfg->remote_smtp_port == 0 || cfg->remote_smtp_port > 65535))
		rc = cfg_err(err, errlen, path, lineno, "'remote_smtp_port' expects a port 1-65535");
	if (rc == 0 && (cfg->queue_concurrency == 0 || cfg->queue_concurrency_per_domain == 0))
		rc = cfg_err(err, errlen, path, lineno,
			     "'queue_concurrency' and 'queue_concurrency_per_domain' must be at least 1");
	char clash[300];
	if (rc == 0 && cfg_port_clash(cfg, clash, sizeof(clash)) != NULL)
		rc = cfg_err(err, errlen, path, lineno, "%s", clash);
	if (rc == 0 && cfg->tls_hello_margin_ms > CONFIG_TLS_HELLO_MARGIN_MAX)
		rc = cfg_err(err, errlen, path, lineno,
			     "'tls_hello_margin_ms' expects at most %u (milliseconds)",
			     CONFIG_TLS_HELLO_MARGIN_MAX);
	if (rc == 0 && cfg->password_min_length > CONFIG_PASSWORD_MIN_MAX)
		rc = cfg_err(err, errlen, path, lineno,
			     "'password_min_length' expects at most %u characters", CONFIG_PASSWORD_MIN_MAX);
	if (rc == 0 && cfg->login_delay_max != 0 && cfg->login_delay_max < cfg->login_failure_delay)
		rc = cfg_err(err, errlen, path, lineno,
			     "'login_delay_max' (%us) is shorter than 'login_failure_delay' (%us): "
			     "raise login_delay_max, or set it to 0 to turn the growing delay off",
			     cfg->login_delay_max, cfg->login_failure_delay);
	if (rc == 0 && strcmp(cfg->milter_default_action, "tempfail") != 0 &&
	    strcmp(cfg->milter_default_action, "accept") != 0 &&
	    strcmp(cfg->milter_default_action, "reject") != 0)
		rc = cfg_err(err, errlen, path, lineno,
			     "'milter_default_action' expects tempfail, accept or reject, got '%s'",
			     cfg->milter_default_action);
	if (rc == 0 && (cfg->milter_connect_timeout == 0 || cfg->milter_command_timeout == 0 ||
			cfg->milter_content_timeout == 0))
		rc = cfg_err(err, errlen, path, lineno,
			     "milter timeouts must be at least 1s");
	if (rc == 0 && cfg->queue_retry_min == 0)
		cfg->queue_retry_min = 1;
	return rc;
}

/* Print one typed value. */
static void show_val(FILE *out, enum ktype type, const void *field, size_t len)
{
	switch (type) {
	case K_STR:
	case K_PATH:
	case K_MILTERS:
		fprintf(out, "%s", (const char *)field);
		break;
	case K_UINT:
	case K_DURATION:
		fprintf(out, "%u", *(const unsigned *)field);
		if (type == K_DURATION)
			fputc('s', out);
		break;
	case K_SIZE:
		fprintf(out, "%llu", len == sizeof(size_t) ? (unsigned long long)*(const size_t *)field
							   : (unsigned long long)*(const uint64_t *)field);
		break;
	case K_BOOL:
		fprintf(out, "%s", *(const int *)field ? "yes" : "no");
		break;
	case K_BARELF:
		fprintf(out, "%s", *(const int *)field ? "reject" : "normalize");
		break;
	case K_PHISHMARK:
		fprintf(out, "%s", phish_marks[*(const int *)field & 3]);
		break;
	case K_TLSHOST:
	case K_DOMAINHOST:
		break;
	}
}

/* Print the effective configuration. */
void config_show(const struct config *cfg, FILE *out)
{
	fprintf(out, "# effective configuration from %s\n", cfg->path[0] ? cfg->path : "(defaults)");
	fprintf(out, "# lines ending in '# default' were not set in the file\n");
	for (size_t k = 0; k < NGKEYS; k++) {
		if (gkeys[k].type == K_TLSHOST) {
			for (size_t i = 0; i < cfg->ntls_hosts; i++)
				fprintf(out, "tls_host = %s %s %s\n", cfg->tls_hosts[i].name,
					cfg->tls_hosts[i].cert, cfg->tls_hosts[i].key);
			continue;
		}
		if (gkeys[k].type == K_DOMAINHOST) {
			for (size_t i = 0; i < cfg->ndomain_hosts; i++) {
				const struct domain_host_conf *h = &cfg->domain_hosts[i];
				fprintf(out, "domain_host = %s imap=%s pop3=%s smtp=%s\n", h->domain,
					h->imap[0] ? h->imap : cfg->hostname,
					h->pop3[0] ? h->pop3 : cfg->hostname,
					h->smtp[0] ? h->smtp : cfg->hostname);
			}
			continue;
		}
		fprintf(out, "%s = ", gkeys[k].name);
		if (strcmp(gkeys[k].name, "relayhost_password") == 0 && cfg->relayhost_password[0])
			fputs("********", out);   /* never print a secret */
		else
			show_val(out, gkeys[k].type, (const char *)cfg + gkeys[k].off, gkeys[k].len);
		fprintf(out, "%s\n", cfg->set_global[k] ? "" : "    # default");
	}
	for (int id = 0; id < LST_COUNT; id++) {
		const struct listener_conf *l = &cfg->l[id];
		fprintf(out, "\n# listener %s (%s%s)\n", l->name, l->implicit_tls ? "implicit TLS" :
			l->proto == PROTO_HTTP ? "plain" : "STARTTLS",
			l->submission ? ", authentication required" : "");
		for (size_t k = 0; k < NLKEYS; k++) {
			if (!(lkeys[k].protos & (1u << l->proto)))
				continue;   /* not honoured there, so not shown */
			fprintf(out, "%s.%s = ", l->name, lkeys[k].name);
			show_val(out, lkeys[k].type, (const char *)l + lkeys[k].off, lkeys[k].len);
			int set = cfg->set_listener[id][k] || (k > 0 && cfg->set_global[NGKEYS + k]);
			fprintf(out, "%s\n", set ? "" : "    # default");
		}
	}
}

/* <data_dir>/<rel>. */
int config_data_path(const struct config *cfg, const char *rel, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s/%s", cfg->data_dir, rel);
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}
