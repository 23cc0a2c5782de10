/* http-private.h - what the HTTP session and the page generators share. */
#ifndef POSTINO_HTTP_PRIVATE_H
#define POSTINO_HTTP_PRIVATE_H

#include <stddef.h>

#include "buf.h"
#include "config.h"

/* The settings a mail client of one hosted domain needs. A port of 0: that service is off. */
struct mail_settings {
	char domain[256];
	char address[256];          /* "" when the request named no address */
	const char *imap_host, *pop3_host, *smtp_host;
	unsigned imaps, imap, pop3s, pop3, submissions, submission;
};

void http_mail_settings(const struct config *cfg, const char *domain, const char *address,
			struct mail_settings *ms);

/* Escaping: XML/HTML text and attribute values (& < > " '), JSON strings, URL components. */
void http_esc_xml(struct buf *b, const char *s);
void http_esc_json(struct buf *b, const char *s);
void http_esc_url(struct buf *b, const char *s);

/* Bodies; each returns 0, or -1 when the output buffer is full. */
int http_autoconfig(struct buf *b, const struct mail_settings *ms);
int http_autodiscover(struct buf *b, const struct mail_settings *ms);
int http_autodiscover_error(struct buf *b, const char *code, const char *msg);
/* The Apple configuration profile (unsigned plist). */
int http_mobileconfig(struct buf *b, const struct mail_settings *ms);
/* The MTA-STS policy (RFC 8461) of a domain whose MX is cfg->hostname. */
int http_mta_sts_policy(struct buf *b, const struct config *cfg);

/* The /setup page. ms NULL: only the form (with error text err, if any). */
enum http_lang { LANG_EN, LANG_IT };
enum http_device { DEV_OTHER, DEV_IPHONE, DEV_MAC, DEV_ANDROID, DEV_WINDOWS };
enum http_lang http_pick_lang(const char *accept_language);
enum http_device http_pick_device(const char *user_agent);
int http_setup_page(struct buf *b, const struct mail_settings *ms, const char *typed,
		    const char *err, enum http_lang lang, enum http_device dev,
		    const char *profile_url);

/* Find the e-mail address in an Autodiscover POX request body. 0 found, -1 not. */
int http_pox_address(const char *body, char *out, size_t outlen);

#endif
