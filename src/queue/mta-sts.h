/* mta-sts.h - SMTP MTA Strict Transport Security (RFC 8461) for outbound mail.
 *
 * A domain that publishes `_mta-sts.DOMAIN TXT "v=STSv1; id=..."` and a policy at
 * https://mta-sts.DOMAIN/.well-known/mta-sts.txt tells senders which MX hosts are genuine and
 * that they must be reached over TLS with a certificate valid for their name. In `enforce` mode
 * the queue uses only the listed MX hosts and defers (4.7.5) rather than deliver without verified
 * TLS; in `testing` mode it delivers anyway and logs the failure (what a TLS-RPT report would
 * carry). Policies are cached under <queue>/mta-sts/ and refreshed when the TXT id changes; a
 * cached policy stays in force until its max_age even when the DNS or the web server fails, so
 * an attacker who blocks those cannot downgrade delivery.
 */
#ifndef POSTINO_MTA_STS_H
#define POSTINO_MTA_STS_H

#include <stddef.h>
#include <time.h>

#define STS_POLICY_MAX 65536       /* RFC 8461 3.3: a policy body is at most 64 KB */
#define STS_MX_MAX 16              /* mx: lines kept; more are ignored */
#define STS_ID_MAX 32              /* RFC 8461 3.1: id is 1*32(ALPHA / DIGIT) */
#define STS_MAX_AGE_MAX 31557600   /* RFC 8461 3.2: at most one year */

enum sts_mode { STS_NONE, STS_TESTING, STS_ENFORCE };

struct sts_policy {
	enum sts_mode mode;
	unsigned nmx;
	char mx[STS_MX_MAX][256];   /* patterns, lower case: "mail.example.com", "*.example.net" */
	long max_age;               /* seconds */
	char id[STS_ID_MAX + 1];    /* the TXT id this policy was fetched under */
	time_t fetched;
};

/* ---- pure parts (unit-tested, fuzzed) ---- */
/* Parse the TXT record text. 1 valid STSv1 record (id copied), 0 not one. */
int sts_txt_parse(const char *txt, char id[STS_ID_MAX + 1]);
/* Parse a policy body. 0 ok (p filled, id/fetched untouched), -1 invalid (why says). */
int sts_policy_parse(const char *body, size_t len, struct sts_policy *p, char *why,
		     size_t whylen);
/* Does MX host name match one of the policy's mx patterns (RFC 8461 4.1)? 1/0. */
int sts_mx_match(const struct sts_policy *p, const char *host);
/* The mx patterns as "a, *.b" for messages. */
void sts_mx_list(const struct sts_policy *p, char *out, size_t outlen);

/* ---- the queue's view (DNS, HTTPS, cache) ---- */
struct tls_ctx;
/* The policy in force for domain: 1 p filled (mode testing or enforce), 0 none (deliver as
 * before: opportunistic TLS). cache_dir is <queue>/mta-sts; https_port is 443 outside tests. */
int sts_lookup(const char *domain, const char *cache_dir, struct tls_ctx *tls,
	       unsigned https_port, unsigned timeout_ms, struct sts_policy *p);

#endif
