/* http-dns.c - "postino dns DOMAIN": every record a hosted domain should publish, in zone-file
 * syntax with one comment per record: MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, the RFC 6186/8314
 * SRV records and the names mail clients use to configure themselves.
 */
#include "http-dns.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "acctdb.h"
#include "buf.h"
#include "dkim-keys.h"
#include "http-private.h"

static const char usage_dns[] =
	"usage: postino dns DOMAIN [--ipv4 ADDRESS] [--ipv6 ADDRESS] [--config FILE | --data DIR]\n"
	"\n"
	"Print, in zone-file syntax, every DNS record DOMAIN should publish for mail: MX, SPF, DKIM,\n"
	"DMARC, MTA-STS, TLS-RPT, the SRV records of RFC 6186/8314 and the autoconfig/autodiscover\n"
	"names. --ipv4/--ipv6 give the server's addresses (its A/AAAA records when its hostname lies\n"
	"inside DOMAIN, and the sending addresses in SPF; default: the 'listen' address when it is a\n"
	"literal address). The DKIM records need read access to DATA/dkim (root or the run_user).\n";

#define DNS_TXT_STRING_MAX 255   /* RFC 1035 3.3: a character-string is at most 255 octets */

/* Is a an address of the machine itself (127/8, ::1), useless in SPF? */
static int loopback(const char *a)
{
	return strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0;
}

/* A TXT record whose text is split into strings of at most 255 octets (RFC 6376 3.6.2.2: the
 * strings of one record are joined). */
static void txt_split(FILE *out, const char *name, const char *text)
{
	size_t n = strlen(text);
	fprintf(out, "%s\t3600\tIN\tTXT\t", name);
	for (size_t off = 0; off < n; off += DNS_TXT_STRING_MAX) {
		size_t take = n - off < DNS_TXT_STRING_MAX ? n - off : DNS_TXT_STRING_MAX;
		fprintf(out, "%s\"%.*s\"", off ? " " : "", (int)take, text + off);
	}
	fputc('\n', out);
}

/* The DKIM key records of domain d, one per key in DATA/dkim/d (signing, next and old ones). */
static void dkim_records(FILE *out, const struct config *cfg, const char *d)
{
	struct dkim_keyinfo *k = calloc(DKIM_KEYS_MAX, sizeof(*k));
	const char *err = "out of memory";
	int n = k ? dkim_keys_list(cfg->data_dir, d, k, DKIM_KEYS_MAX, &err) : -1;
	if (n < 0) {
		fprintf(out, "; DKIM: cannot read the keys of %s (%s): run 'postino dns' as root or as\n"
			     "; the run_user to print their records.\n", d, err);
	} else if (n == 0) {
		fprintf(out, "; DKIM: %s has no keys, so its mail goes out unsigned: create them with\n"
			     "; 'postino dkim new %s', publish them, then 'postino dkim rotate %s'.\n",
			d, d, d);
	}
	for (int i = 0; i < n; i++) {
		char name[DKIM_SELECTOR_MAX + DKIM_DOMAIN_MAX + 16], text[DKIM_PUB_MAX + 64];
		int ed = k[i].alg == TLS_KEY_ED25519;
		if (!k[i].readable) {
			fprintf(out, "; DKIM key %s of %s cannot be read (%s): run 'postino dns' as\n"
				     "; root or as the run_user.\n", k[i].selector, d, k[i].err);
			continue;
		}
		if (ed)
			fprintf(out, "; DKIM (RFC 8463): Ed25519 key %s", k[i].selector);
		else
			fprintf(out, "; DKIM (RFC 6376): RSA-%u key %s", k[i].bits, k[i].selector);
		fprintf(out, "%s\n", k[i].signing ? ", signing the mail of this domain now." :
			", not signing: new (publish it before 'postino dkim rotate') or old (remove it\n"
			"; after 'postino dkim retire').");
		snprintf(name, sizeof(name), "%s._domainkey.%s.", k[i].selector, d);
		snprintf(text, sizeof(text), "v=DKIM1; k=%s; p=%s", ed ? "ed25519" : "rsa", k[i].pub);
		txt_split(out, name, text);
	}
	free(k);
}

/* Is name equal to domain or below it? */
static int in_zone(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	if (n == d)
		return strcasecmp(name, domain) == 0;
	return n > d && name[n - d - 1] == '.' && strcasecmp(name + n - d, domain) == 0;
}

/* An SRV record: the real service, or "." when the port is off or the service is not wanted. */
static void srv(FILE *out, const char *service, const char *domain, unsigned port,
		const char *host, const char *comment)
{
	fprintf(out, "; %s\n", comment);
	if (port == 0 || host == NULL)
		fprintf(out, "%s._tcp.%s.\t3600\tIN\tSRV\t0 0 0 .\n", service, domain);
	else
		fprintf(out, "%s._tcp.%s.\t3600\tIN\tSRV\t0 1 %u %s.\n", service, domain, port, host);
}

void http_dns_print(FILE *out, const struct config *cfg, const char *d, const char *ipv4,
		    const char *ipv6)
{
	struct mail_settings ms;
	http_mail_settings(cfg, d, "", &ms);
	const char *h = cfg->hostname;
	struct buf pol;
	buf_init(&pol, 131072);
	http_mta_sts_policy(&pol, cfg);
	uint64_t fnv = 0xcbf29ce484222325ULL;   /* the policy id changes with the policy */
	for (size_t i = 0; i < pol.len; i++)
		fnv = (fnv ^ (unsigned char)pol.data[i]) * 0x100000001b3ULL;
	buf_free(&pol);
	unsigned https = cfg->l[LST_HTTPS].port;

	fprintf(out, "; DNS records for %s, printed by \"postino dns\" for the server %s.\n", d, h);
	fprintf(out, "; Names are absolute; add them to the zone of %s. The certificate of %s\n", d, h);
	fprintf(out, "; must also name autoconfig.%s, autodiscover.%s and mta-sts.%s (tls_host).\n", d,
		d, d);
	fprintf(out, "\n; Incoming mail for %s is delivered to %s.\n", d, h);
	fprintf(out, "%s.\t3600\tIN\tMX\t10 %s.\n", d, h);
	if (in_zone(h, d)) {
		if (ipv4 == NULL && ipv6 == NULL)
			fprintf(out, "; %s needs A/AAAA records here (run again with --ipv4/--ipv6).\n", h);
		if (ipv4)
			fprintf(out, "; The server's IPv4 address (an MX target must not be a CNAME).\n"
				     "%s.\t3600\tIN\tA\t%s\n", h, ipv4);
		if (ipv6)
			fprintf(out, "; The server's IPv6 address.\n%s.\t3600\tIN\tAAAA\t%s\n", h, ipv6);
	}
	char spf[256] = "v=spf1";
	if (ipv4 && !loopback(ipv4))
		snprintf(spf + strlen(spf), sizeof(spf) - strlen(spf), " ip4:%s", ipv4);
	if (ipv6 && !loopback(ipv6))
		snprintf(spf + strlen(spf), sizeof(spf) - strlen(spf), " ip6:%s", ipv6);
	fprintf(out, "\n; SPF (RFC 7208): mail from %s leaves from this server (%s) only; anything\n"
		     "; else fails.%s\n", d, strlen(spf) > 6 ? "the addresses listed, and the MX hosts" :
		"its MX hosts; give --ipv4/--ipv6 to list its addresses", cfg->relayhost[0] ?
		" With relayhost, add the relay's own SPF (include:...) before -all." : "");
	fprintf(out, "%s.\t3600\tIN\tTXT\t\"%s mx -all\"\n", d, spf);
	fprintf(out, "\n");
	dkim_records(out, cfg, d);
	fprintf(out, "\n; DMARC (RFC 7489), monitoring first (p=none): receivers deliver as before\n"
		     "; and send daily aggregate reports to postmaster@%s (an account or alias of\n"
		     "; it must exist). When two to four weeks of reports show all legitimate mail\n"
		     "; from %s passing DKIM or SPF for %s, change p=none to p=quarantine, and\n"
		     "; later to p=reject.\n", d, d, d);
	fprintf(out, "_dmarc.%s.\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:postmaster@%s\"\n",
		d, d);
	fprintf(out, "; MTA-STS (RFC 8461): senders must use verified TLS to the MX; id changes with the policy.\n");
	fprintf(out, "_mta-sts.%s.\t3600\tIN\tTXT\t\"v=STSv1; id=%016llx\"\n", d, (unsigned long long)fnv);
	fprintf(out, "; The host serving https://mta-sts.%s/.well-known/mta-sts.txt (postino%s).\n", d,
		https == 443 ? "" : ", needs HTTPS on port 443");
	fprintf(out, "mta-sts.%s.\t3600\tIN\tCNAME\t%s.\n", d, h);
	fprintf(out, "; TLS-RPT (RFC 8460): where senders report failed TLS connections to the MX.\n");
	fprintf(out, "_smtp._tls.%s.\t3600\tIN\tTXT\t\"v=TLSRPTv1; rua=mailto:postmaster@%s\"\n", d, d);

	fprintf(out, "\n; Client services (RFC 6186, RFC 8314). Implicit TLS is offered and preferred;\n"
		     "; the plaintext-first services (STARTTLS) are published with target \".\" (RFC 2782:\n"
		     "; \"not available here\"), so clients that use SRV records pick the TLS ports. The\n"
		     "; STARTTLS ports stay open for programs set up by hand.\n");
	srv(out, "_submissions", d, ms.submissions, ms.smtp_host,
	    "Sending mail: SMTP submission with TLS from the first byte.");
	srv(out, "_imaps", d, ms.imaps, ms.imap_host, "Reading mail: IMAP with TLS from the first byte.");
	srv(out, "_pop3s", d, ms.pop3s, ms.pop3_host, "Downloading mail: POP3 with TLS from the first byte.");
	srv(out, "_submission", d, 0, NULL, "SMTP submission with STARTTLS: not advertised, use _submissions.");
	srv(out, "_imap", d, 0, NULL, "IMAP with STARTTLS: not advertised, use _imaps.");
	srv(out, "_pop3", d, 0, NULL, "POP3 with STARTTLS: not advertised, use _pop3s.");

	fprintf(out, "\n; Thunderbird and others fetch http(s)://autoconfig.%s/mail/config-v1.1.xml.\n", d);
	fprintf(out, "autoconfig.%s.\t3600\tIN\tCNAME\t%s.\n", d, h);
	fprintf(out, "; Outlook posts to https://autodiscover.%s/autodiscover/autodiscover.xml.\n", d);
	fprintf(out, "autodiscover.%s.\t3600\tIN\tCNAME\t%s.\n", d, h);
	fprintf(out, "; Outlook's fallback when autodiscover.%s cannot be reached (RFC 2782 SRV).\n", d);
	if (https)
		fprintf(out, "_autodiscover._tcp.%s.\t3600\tIN\tSRV\t0 1 %u %s.\n", d, https, h);
	else
		fprintf(out, "_autodiscover._tcp.%s.\t3600\tIN\tSRV\t0 0 0 .\n", d);
}

int http_dns_main(const struct config *cfg, int argc, char **argv)
{
	const char *domain = NULL, *ipv4 = NULL, *ipv6 = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage_dns, stdout);
			return 0;
		} else if ((strcmp(argv[i], "--ipv4") == 0 || strcmp(argv[i], "--ipv6") == 0) &&
			   i + 1 < argc) {
			unsigned char a[16];
			int v6 = argv[i][5] == '6';
			if (inet_pton(v6 ? AF_INET6 : AF_INET, argv[i + 1], a) != 1) {
				fprintf(stderr, "postino: '%s' is not an IPv%c address\n", argv[i + 1],
					v6 ? '6' : '4');
				return 2;
			}
			*(v6 ? &ipv6 : &ipv4) = argv[++i];
		} else if (argv[i][0] != '-' && domain == NULL) {
			domain = argv[i];
		} else {
			fprintf(stderr, "postino: unexpected argument '%s'\n%s", argv[i], usage_dns);
			return 2;
		}
	}
	if (domain == NULL) {
		fputs(usage_dns, stderr);
		return 2;
	}
	if (cfg == NULL)
		return 1;
	char d[256], path[CONFIG_PATH_MAX + 16];
	if (acctdb_normalize_domain(domain, d, sizeof(d)) < 0) {
		fprintf(stderr, "postino: '%s' is not a valid domain name\n", domain);
		return 1;
	}
	struct acctdb *db;
	const char *err;
	snprintf(path, sizeof(path), "%s/system.db", cfg->data_dir);
	if (acctdb_open(path, ACCTDB_RO, &db, &err) < 0) {
		fprintf(stderr, "postino: cannot open %s: %s\n", path, err);
		return 1;
	}
	int known = acctdb_domain_exists(db, d, &err);
	acctdb_close(&db);
	if (known != 1) {
		fprintf(stderr, "postino: %s is not a hosted domain: add it first with "
				"'postino domain add %s'\n", d, d);
		return 1;
	}
	if (ipv4 == NULL && ipv6 == NULL) {   /* the listen address, when it is a literal one */
		unsigned char a[16];
		if (inet_pton(AF_INET, cfg->l[LST_SMTP].listen, a) == 1)
			ipv4 = cfg->l[LST_SMTP].listen;
		else if (inet_pton(AF_INET6, cfg->l[LST_SMTP].listen, a) == 1)
			ipv6 = cfg->l[LST_SMTP].listen;
	}
	http_dns_print(stdout, cfg, d, ipv4, ipv6);
	return 0;
}
