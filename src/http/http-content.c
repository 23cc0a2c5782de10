/* http-content.c - the documents mail clients read to configure themselves: Thunderbird autoconfig
 * (config-v1.1.xml), Microsoft Autodiscover (POX "outlook" response schema 2006a), the Apple
 * configuration profile (com.apple.mail.managed) and the MTA-STS policy.
 *
 * Implicit TLS comes first everywhere (RFC 8314: 993, 995, 465), STARTTLS second (143, 110, 587);
 * the user name is always the full address.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "http-private.h"

void http_mail_settings(const struct config *cfg, const char *domain, const char *address,
			struct mail_settings *ms)
{
	memset(ms, 0, sizeof(*ms));
	snprintf(ms->domain, sizeof(ms->domain), "%s", domain);
	snprintf(ms->address, sizeof(ms->address), "%s", address);
	config_domain_hosts(cfg, domain, &ms->imap_host, &ms->pop3_host, &ms->smtp_host);
	int tls = cfg->tls_cert[0] != '\0';
	ms->imaps = tls ? cfg->l[LST_IMAPS].port : 0;
	ms->imap = cfg->l[LST_IMAP].port;
	ms->pop3s = tls ? cfg->l[LST_POP3S].port : 0;
	ms->pop3 = cfg->l[LST_POP3].port;
	ms->submissions = tls ? cfg->l[LST_SUBMISSIONS].port : 0;
	ms->submission = cfg->l[LST_SUBMISSION].port;
}

void http_esc_xml(struct buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': buf_appendstr(b, "&amp;"); break;
		case '<': buf_appendstr(b, "&lt;"); break;
		case '>': buf_appendstr(b, "&gt;"); break;
		case '"': buf_appendstr(b, "&quot;"); break;
		case '\'': buf_appendstr(b, "&#39;"); break;
		default:
			if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
				buf_appendstr(b, "\xef\xbf\xbd");   /* not allowed in XML 1.0 */
			else
				buf_append(b, s, 1);
		}
	}
}

void http_esc_json(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			buf_appendf(b, "\\%c", c);
		else if (c < 0x20 || c == '<' || c == '>' || c == '&')
			buf_appendf(b, "\\u%04x", c);
		else
			buf_append(b, s, 1);
	}
}

void http_esc_url(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("-._~@", c))
			buf_append(b, s, 1);
		else
			buf_appendf(b, "%%%02X", c);
	}
}

/* Every document here is bounded by construction (at most a few dozen fields of at most 254
 * octets, escaped to at most 6 octets each): reserving HTTP_DOC_MAX up front means no append
 * below can be refused. */
#define HTTP_DOC_MAX 65536
static int http_doc_start(struct buf *b)
{
	return buf_reserve(b, HTTP_DOC_MAX);
}

static int http_buf_ok(const struct buf *b)
{
	return b->len < HTTP_DOC_MAX ? 0 : -1;
}

/* One <incomingServer>/<outgoingServer> of the autoconfig file. */
static void ac_server(struct buf *b, const char *el, const char *type, const char *host,
		      unsigned port, const char *socket_type, const char *user)
{
	if (port == 0)
		return;
	buf_appendf(b, "    <%s type=\"%s\">\n      <hostname>", el, type);
	http_esc_xml(b, host);
	buf_appendf(b, "</hostname>\n      <port>%u</port>\n      <socketType>%s</socketType>\n"
		       "      <authentication>password-cleartext</authentication>\n      <username>",
		    port, socket_type);
	http_esc_xml(b, user);
	buf_appendf(b, "</username>\n    </%s>\n", el);
}

int http_autoconfig(struct buf *b, const struct mail_settings *ms)
{
	if (http_doc_start(b) < 0)
		return -1;
	const char *user = ms->address[0] ? ms->address : "%EMAILADDRESS%";
	buf_appendstr(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n"
			 "  <emailProvider id=\"");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, "\">\n    <domain>");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, "</domain>\n    <displayName>");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, " mail</displayName>\n    <displayShortName>");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, "</displayShortName>\n");
	ac_server(b, "incomingServer", "imap", ms->imap_host, ms->imaps, "SSL", user);
	ac_server(b, "incomingServer", "imap", ms->imap_host, ms->imap, "STARTTLS", user);
	ac_server(b, "incomingServer", "pop3", ms->pop3_host, ms->pop3s, "SSL", user);
	ac_server(b, "incomingServer", "pop3", ms->pop3_host, ms->pop3, "STARTTLS", user);
	ac_server(b, "outgoingServer", "smtp", ms->smtp_host, ms->submissions, "SSL", user);
	ac_server(b, "outgoingServer", "smtp", ms->smtp_host, ms->submission, "STARTTLS", user);
	buf_appendstr(b, "  </emailProvider>\n</clientConfig>\n");
	return http_buf_ok(b);
}

/* One <Protocol> of the Autodiscover answer. Encryption: SSL = TLS from the first byte,
 * TLS = STARTTLS. */
static void ad_protocol(struct buf *b, const char *type, const char *host, unsigned port,
			int implicit, const char *user)
{
	if (port == 0)
		return;
	buf_appendf(b, "      <Protocol>\n        <Type>%s</Type>\n        <Server>", type);
	http_esc_xml(b, host);
	buf_appendf(b, "</Server>\n        <Port>%u</Port>\n        <DomainRequired>off</DomainRequired>\n"
		       "        <LoginName>", port);
	http_esc_xml(b, user);
	buf_appendf(b, "</LoginName>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n"
		       "        <Encryption>%s</Encryption>\n        <AuthRequired>on</AuthRequired>\n",
		    implicit ? "SSL" : "TLS");
	if (strcmp(type, "SMTP") == 0)
		buf_appendstr(b, "        <UsePOPAuth>on</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n");
	buf_appendstr(b, "      </Protocol>\n");
}

int http_autodiscover(struct buf *b, const struct mail_settings *ms)
{
	if (http_doc_start(b) < 0)
		return -1;
	buf_appendstr(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
		"<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n"
		"  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n"
		"    <User>\n      <DisplayName>");
	http_esc_xml(b, ms->address);
	buf_appendstr(b, "</DisplayName>\n    </User>\n    <Account>\n      <AccountType>email</AccountType>\n"
			 "      <Action>settings</Action>\n");
	ad_protocol(b, "IMAP", ms->imap_host, ms->imaps, 1, ms->address);
	ad_protocol(b, "POP3", ms->pop3_host, ms->pop3s, 1, ms->address);
	ad_protocol(b, "SMTP", ms->smtp_host, ms->submissions, 1, ms->address);
	ad_protocol(b, "IMAP", ms->imap_host, ms->imap, 0, ms->address);
	ad_protocol(b, "POP3", ms->pop3_host, ms->pop3, 0, ms->address);
	ad_protocol(b, "SMTP", ms->smtp_host, ms->submission, 0, ms->address);
	buf_appendstr(b, "    </Account>\n  </Response>\n</Autodiscover>\n");
	return http_buf_ok(b);
}

int http_autodiscover_error(struct buf *b, const char *code, const char *msg)
{
	if (http_doc_start(b) < 0)
		return -1;
	buf_appendstr(b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
		"<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n"
		"  <Response>\n    <Error>\n      <ErrorCode>");
	http_esc_xml(b, code);
	buf_appendstr(b, "</ErrorCode>\n      <Message>");
	http_esc_xml(b, msg);
	buf_appendstr(b, "</Message>\n      <DebugData />\n    </Error>\n  </Response>\n</Autodiscover>\n");
	return http_buf_ok(b);
}

/* The text of <EMailAddress> (any namespace prefix) in a POX request. */
int http_pox_address(const char *body, char *out, size_t outlen)
{
	for (const char *p = strchr(body, '<'); p; p = strchr(p + 1, '<')) {
		const char *name = p + 1;
		const char *end = name + strcspn(name, " \t\r\n/>");
		const char *colon = memchr(name, ':', (size_t)(end - name));
		if (colon)
			name = colon + 1;
		if ((size_t)(end - name) != 12 || strncasecmp(name, "EMailAddress", 12) != 0 ||
		    *end != '>')
			continue;
		const char *v = end + 1, *ve = strchr(v, '<');
		if (ve == NULL)
			return -1;
		while (v < ve && isspace((unsigned char)*v))
			v++;
		while (ve > v && isspace((unsigned char)ve[-1]))
			ve--;
		if ((size_t)(ve - v) >= outlen || ve == v)
			return -1;
		memcpy(out, v, (size_t)(ve - v));
		out[ve - v] = '\0';
		return 0;
	}
	return -1;
}

/* A random (version 4) UUID in upper case, as profiles carry them. */
static void http_uuid(char out[37])
{
	unsigned char r[16];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		memset(r, 0x5a, sizeof(r));   /* never happens on Linux >= 3.17 */
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
		 r[13], r[14], r[15]);
}

static void pl_str(struct buf *b, const char *key, const char *val)
{
	buf_appendf(b, "\t\t\t<key>%s</key>\n\t\t\t<string>", key);
	http_esc_xml(b, val);
	buf_appendstr(b, "</string>\n");
}

int http_mobileconfig(struct buf *b, const struct mail_settings *ms)
{
	char u1[37], u2[37], ident[600];
	http_uuid(u1);
	http_uuid(u2);
	/* stable identifier: installing again replaces the earlier profile of the same address */
	size_t n = 0;
	const char *pre = "postino.mail.";
	n = (size_t)snprintf(ident, sizeof(ident), "%s", pre);
	for (const char *p = ms->address; *p && n + 4 < sizeof(ident); p++)
		ident[n++] = isalnum((unsigned char)*p) || *p == '-' || *p == '.' ? *p : '_';
	ident[n] = '\0';
	int in_ssl = ms->imaps != 0, out_ssl = ms->submissions != 0;
	if (http_doc_start(b) < 0)
		return -1;
	buf_appendstr(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "
		"\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n"
		"\t<key>PayloadContent</key>\n\t<array>\n\t\t<dict>\n");
	pl_str(b, "EmailAccountDescription", ms->address);
	pl_str(b, "EmailAccountType", "EmailTypeIMAP");
	pl_str(b, "EmailAddress", ms->address);
	pl_str(b, "IncomingMailServerAuthentication", "EmailAuthPassword");
	pl_str(b, "IncomingMailServerHostName", ms->imap_host);
	buf_appendf(b, "\t\t\t<key>IncomingMailServerPortNumber</key>\n\t\t\t<integer>%u</integer>\n"
		       "\t\t\t<key>IncomingMailServerUseSSL</key>\n\t\t\t<%s/>\n",
		    in_ssl ? ms->imaps : ms->imap, in_ssl ? "true" : "false");
	pl_str(b, "IncomingMailServerUsername", ms->address);
	pl_str(b, "OutgoingMailServerAuthentication", "EmailAuthPassword");
	pl_str(b, "OutgoingMailServerHostName", ms->smtp_host);
	buf_appendf(b, "\t\t\t<key>OutgoingMailServerPortNumber</key>\n\t\t\t<integer>%u</integer>\n"
		       "\t\t\t<key>OutgoingMailServerUseSSL</key>\n\t\t\t<%s/>\n",
		    out_ssl ? ms->submissions : ms->submission, out_ssl ? "true" : "false");
	pl_str(b, "OutgoingMailServerUsername", ms->address);
	buf_appendstr(b, "\t\t\t<key>OutgoingPasswordSameAsIncomingPassword</key>\n\t\t\t<true/>\n");
	pl_str(b, "PayloadDescription", "E-mail account (IMAP and SMTP)");
	pl_str(b, "PayloadDisplayName", ms->address);
	buf_appendf(b, "\t\t\t<key>PayloadIdentifier</key>\n\t\t\t<string>%s.account</string>\n", ident);
	pl_str(b, "PayloadType", "com.apple.mail.managed");
	pl_str(b, "PayloadUUID", u1);
	buf_appendstr(b, "\t\t\t<key>PayloadVersion</key>\n\t\t\t<integer>1</integer>\n"
			 "\t\t\t<key>PreventAppSheet</key>\n\t\t\t<false/>\n"
			 "\t\t\t<key>PreventMove</key>\n\t\t\t<false/>\n"
			 "\t\t\t<key>SMIMEEnabled</key>\n\t\t\t<false/>\n"
			 "\t\t</dict>\n\t</array>\n");
	buf_appendstr(b, "\t<key>PayloadDescription</key>\n\t<string>Sets up the mail account ");
	http_esc_xml(b, ms->address);
	buf_appendstr(b, " (the password is asked for on the device).</string>\n"
			 "\t<key>PayloadDisplayName</key>\n\t<string>");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, " mail</string>\n");
	buf_appendf(b, "\t<key>PayloadIdentifier</key>\n\t<string>%s</string>\n", ident);
	buf_appendstr(b, "\t<key>PayloadOrganization</key>\n\t<string>");
	http_esc_xml(b, ms->domain);
	buf_appendstr(b, "</string>\n\t<key>PayloadRemovalDisallowed</key>\n\t<false/>\n"
			 "\t<key>PayloadType</key>\n\t<string>Configuration</string>\n");
	buf_appendf(b, "\t<key>PayloadUUID</key>\n\t<string>%s</string>\n"
		       "\t<key>PayloadVersion</key>\n\t<integer>1</integer>\n</dict>\n</plist>\n", u2);
	return http_buf_ok(b);
}

int http_mta_sts_policy(struct buf *b, const struct config *cfg)
{
	if (http_doc_start(b) < 0)
		return -1;
	/* "enforce": senders that support MTA-STS deliver only over verified TLS to our MX */
	buf_appendf(b, "version: STSv1\r\nmode: enforce\r\nmx: %s\r\nmax_age: 604800\r\n",
		    cfg->hostname);
	return http_buf_ok(b);
}
