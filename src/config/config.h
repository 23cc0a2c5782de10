/* config.h - postino.conf: "key = value" lines in the style of Postfix's main.cf.
 *
 * "#" starts a comment line; a later line overrides an earlier one; "LISTENER.key = value"
 * overrides a listener setting for one listener only (LISTENER: smtp, submission, submissions,
 * imap, imaps, pop3, pop3s, http, https). Relative paths are relative to the config file's
 * directory. Errors name file:line and what was expected.
 */
#ifndef POSTINO_CONFIG_H
#define POSTINO_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum listener_id {
	LST_SMTP,
	LST_SUBMISSION,
	LST_SUBMISSIONS,
	LST_IMAP,
	LST_IMAPS,
	LST_POP3,
	LST_POP3S,
	LST_HTTP,
	LST_HTTPS,
	LST_ADMIN,                 /* /metrics (Prometheus), loopback by default, off by default */
	LST_COUNT
};

enum proto { PROTO_SMTP, PROTO_IMAP, PROTO_POP3, PROTO_HTTP };

#define CONFIG_PATH_MAX 1024
#define CONFIG_MAX_TLS_HOSTS 256
/* password_min_length above this could never be met: the CLI reads at most 1023 octets */
#define CONFIG_PASSWORD_MIN_MAX 1000
/* Wait for a ClientHello on 587/143/110 beyond 3 round trips: covers the client's own delay
 * between connect() and the ClientHello; 3 ms keeps loopback greetings under 5 ms (issue 13) */
#define CONFIG_TLS_HELLO_MARGIN_MS 3
#define CONFIG_TLS_HELLO_MARGIN_MAX 3000   /* the plaintext detection time of 465/993/995 */

/* milters of one listener: up to 8 addresses of up to ~300 octets (milter.h) */
#define CONFIG_MILTERS_MAX 1024

struct listener_conf {
	const char *name;          /* "smtp", "submission", ... (static) */
	enum proto proto;
	int implicit_tls;          /* 465, 993, 995, 443 */
	int submission;            /* 587/465: AUTH required, TLS required */
	unsigned port;             /* 0 = disabled */
	char listen[256];          /* address, "*" = all */
	uint64_t message_size_limit;
	unsigned max_recipients;
	size_t line_length_limit;
	unsigned max_errors;
	unsigned command_timeout;  /* seconds */
	unsigned data_timeout;     /* seconds */
	unsigned max_conn_per_ip;
	unsigned max_connections;  /* per worker */
	int bare_lf_reject;        /* 1 reject messages with bare LF/CR line ends, 0 normalize */
	char milters[CONFIG_MILTERS_MAX]; /* content filters: "inet:host:port unix:/path ..." */
};

struct tls_host_conf {
	char name[256];
	char cert[CONFIG_PATH_MAX];
	char key[CONFIG_PATH_MAX];
};

/* domain_host = DOMAIN imap=HOST pop3=HOST smtp=HOST: the server names clients of one hosted
 * domain are told to use (autoconfig, autodiscover, setup page, postino dns); "" = hostname. */
#define CONFIG_MAX_DOMAIN_HOSTS 256
struct domain_host_conf {
	char domain[254];
	char imap[254], pop3[254], smtp[254];
};

/* phishing_mark: how a suspected phishing message is shown (the header field always). */
enum config_phish_mark { CONFIG_PHISH_MARK_HEADER, CONFIG_PHISH_MARK_SUBJECT,
			 CONFIG_PHISH_MARK_BODY, CONFIG_PHISH_MARK_BOTH };

struct config {
	char path[CONFIG_PATH_MAX];        /* the file read */
	char hostname[256];
	char data_dir[CONFIG_PATH_MAX];
	char run_user[64];                 /* "" = stay the invoking user */
	unsigned workers;
	int log_debug;
	char log_format[8];                /* "text" or "json" */
	char pop3_expire[32];              /* "" not announced, "never", or days (RFC 2449 EXPIRE) */
	unsigned pop3_login_delay;
	unsigned login_delay_max;          /* brute-force brake: longest delay of a failed login,
					    * seconds (0 = off) */         /* seconds between POP3 logins, 0 = none (LOGIN-DELAY) */
	unsigned login_failure_delay;      /* least delay of every failed login, seconds (0 = none;
					    * login_delay_max is 0 or at least this) */
	unsigned login_cache_ttl;          /* seconds a worker remembers a correct login (auth-verify.c;
					    * 0 = off) */
	unsigned imap_rest_after;          /* seconds before an inactive IMAP session lets go of
					    * its index handle (0 = never) */
	/* sending limits of authenticated accounts (issue 5; 0 = no limit), see sendlimit.h */
	unsigned send_messages_per_hour;
	unsigned send_messages_per_day;
	unsigned send_recipients_per_day;
	unsigned send_new_recipients_per_day;
	unsigned send_suspend_threshold;   /* refusals over a limit in 24 h that suspend (0 never) */
	unsigned diag_keep;                /* login events kept per account and per IP (diag.h) */
	/* port 25 (issue 11): pregreet test and directory-harvest brake, see smtp-session.c */
	unsigned smtp_greet_pause;         /* seconds between "220-" and "220 " (0: greet at once) */
	unsigned smtp_unknown_rcpt_delay_after; /* unknown recipients answered without delay */
	unsigned smtp_unknown_rcpt_delay;  /* seconds each further 550 5.1.1 waits */
	unsigned smtp_unknown_rcpt_limit;  /* unknown recipients that end the session (0: none) */
	unsigned password_min_length;      /* characters of a new password (CLI; --hash exempt) */
	unsigned tls_hello_margin_ms;      /* 587/143/110: ClientHello wait beyond 3 RTTs (conn.h) */
	char tls_cert[CONFIG_PATH_MAX];
	char tls_key[CONFIG_PATH_MAX];
	struct tls_host_conf tls_hosts[CONFIG_MAX_TLS_HOSTS];
	size_t ntls_hosts;
	struct domain_host_conf domain_hosts[CONFIG_MAX_DOMAIN_HOSTS];
	size_t ndomain_hosts;
	struct listener_conf l[LST_COUNT];
	/* outbound queue (src/queue) */
	char dns_servers[512];             /* "IP[:PORT] ..." resolvers, "" = /etc/resolv.conf */
	unsigned remote_smtp_port;         /* port dialled on remote MX hosts (25) */
	unsigned queue_retry_min;          /* seconds: first retry delay */
	unsigned queue_retry_max;          /* seconds: longest retry delay */
	unsigned queue_lifetime;           /* seconds a message may stay queued */
	unsigned queue_delay_notice;       /* seconds before a delay DSN (0 = never) */
	unsigned queue_concurrency;        /* outbound connections in all */
	unsigned queue_concurrency_per_domain;
	char relayhost[256];               /* host[:port]: send everything through it */
	char relayhost_user[256];
	char relayhost_password[256];
	int relayhost_tls_verify;          /* check the relay host's certificate */
	unsigned smtp_connect_timeout;     /* seconds */
	unsigned smtp_reply_timeout;       /* seconds */
	char tls_ca_file[CONFIG_PATH_MAX]; /* CAs outbound TLS trusts ("" = the system's) */
	char dns_trust_anchor_file[CONFIG_PATH_MAX];  /* DNSSEC trust anchors ("" = no DNSSEC) */
	int mta_sts;                       /* honour MTA-STS policies (RFC 8461) */
	unsigned mta_sts_port;             /* HTTPS port of policy servers (443; tests change it) */
	/* inbound authentication of port 25 mail (src/smtp/smtp-authin.c) */
	int inbound_auth;                  /* SPF, DKIM, DMARC, Authentication-Results */
	unsigned inbound_auth_dns_timeout; /* seconds per DNS lookup */
	/* phishing signs in port 25 mail to local recipients (issue 12), see smtp-phish.h */
	int phishing_checks;
	char phishing_brand_names[512];    /* provider names, comma separated */
	int phishing_mark;                 /* enum config_phish_mark */
	char phishing_subject_tag[64];
	char phishing_warning[241];        /* PHISH_TEXT_MAX + 1 */
	unsigned phishing_lookalike_distance;
	/* content filters (milter.h): smtpd_milters for port 25, submission_milters for 587 and
	 * 465, each a default for the listeners' own "milters" */
	char smtpd_milters[CONFIG_MILTERS_MAX];
	char submission_milters[CONFIG_MILTERS_MAX];
	unsigned milter_connect_timeout;   /* seconds */
	unsigned milter_command_timeout;   /* seconds */
	unsigned milter_content_timeout;   /* seconds */
	char milter_default_action[16];    /* tempfail, accept or reject */
	/* which keys were set in the file, for "config show" (indexes into the key table) */
	unsigned char set_global[128];
	unsigned char set_listener[LST_COUNT][32];
};

/* Fill with built-in defaults. */
void config_defaults(struct config *cfg);
/* Read a file over the defaults. 0 ok; -1 with a message "file:line: ..." in err (errlen). */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* Print the effective configuration, marking values that are defaults. */
void config_show(const struct config *cfg, FILE *out);
/* Listener id by name, or -1. */
int config_listener_id(const char *name);
/* The server names for clients of `domain` (domain_host, else hostname). */
void config_domain_hosts(const struct config *cfg, const char *domain, const char **imap,
			 const char **pop3, const char **smtp);
/* Build <data_dir>/<rel> into out. -1 if it does not fit. */
int config_data_path(const struct config *cfg, const char *rel, char *out, size_t outlen);

#endif
