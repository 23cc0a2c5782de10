/* queue-dns.c - where mail for a domain goes: MX records in preference order, the domain's own
 * A/AAAA records when it has no MX (RFC 5321 5.1), and null MX (RFC 7505), through libunbound.
 * The context is shared by the delivery threads (libunbound locks it). */
/* Error and reply texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "queue-private.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "dns.h"
#include "idn.h"
#include "log.h"
#include "tls.h"

#define RR_A 1
#define RR_MX 15
#define RR_TXT 16
#define RR_TLSA 52
#define RR_AAAA 28
#define MAX_MX 16
#define QDNS_NAME_MAX 253   /* RFC 1035 2.3.4: a name as text, without the final dot */

static struct ub_ctx *ub;
static int validating;

int qdns_validating(void)
{
	return validating;
}

int qdns_init(const char *servers, const char *ta_file, char *err, size_t errlen)
{
	ub = dns_ctx_new(servers, ta_file, err, errlen);
	validating = ub != NULL && ta_file[0] != '\0';
	return ub == NULL ? -1 : 0;
}

/* Append the addresses of host (A, then AAAA). Returns how many were added; *temp set on a
 * temporary failure. */
static size_t host_addrs(const char *host, struct qdns_target *out, size_t have, size_t max,
			 int *temp, int *any_answer, int secure_name)
{
	size_t added = 0;
	static const int types[] = { RR_A, RR_AAAA };
	for (int t = 0; t < 2; t++) {
		struct ub_result *res = NULL;
		if (ub_resolve(ub, host, types[t], 1, &res) != 0 || res == NULL) {
			*temp = 1;
			continue;
		}
		if ((res->rcode != 0 && !res->nxdomain) || res->bogus)
			*temp = 1;   /* a bogus answer is a forgery or a broken zone: never used */
		if (!res->bogus && (res->havedata || (!res->nxdomain && res->rcode == 0)))
			*any_answer = 1;
		for (int i = 0; !res->bogus && res->havedata && res->data[i] && have + added < max;
		     i++) {
			struct qdns_target *d = &out[have + added];
			if (types[t] == RR_A && res->len[i] == 4)
				inet_ntop(AF_INET, res->data[i], d->ip, sizeof(d->ip));
			else if (types[t] == RR_AAAA && res->len[i] == 16)
				inet_ntop(AF_INET6, res->data[i], d->ip, sizeof(d->ip));
			else
				continue;
			queue_strlcpy(d->host, sizeof(d->host), host);
			d->secure = secure_name && res->secure;
			added++;
		}
		ub_resolve_free(res);
	}
	return added;
}

struct mx {
	unsigned pref;
	char name[256];
};

static int mx_cmp(const void *a, const void *b)
{
	const struct mx *x = a, *y = b;
	return x->pref < y->pref ? -1 : x->pref > y->pref;
}

int qdns_route(const char *domain, int no_mx, struct qdns_target *out, size_t max, char *err,
	       size_t errlen)
{
	struct mx mx[MAX_MX];
	size_t nmx = 0;
	int temp = 0, any = 0, mx_secure = 1;
	unsigned char a[16];
	char ace[QDNS_NAME_MAX + 1];
	if (inet_pton(AF_INET, domain, a) == 1 || inet_pton(AF_INET6, domain, a) == 1) {
		queue_strlcpy(out[0].ip, sizeof(out[0].ip), domain);
		queue_strlcpy(out[0].host, sizeof(out[0].host), domain);
		out[0].secure = 0;
		return 1;
	}
	/* DNS knows U-labels only as A-labels (RFC 5891): "bücher.example" is looked up as
	 * "xn--bcher-kva.example" */
	if (idn_has_nonascii(domain, strlen(domain))) {
		if (idn_to_ascii(domain, strlen(domain), ace, sizeof(ace)) < 0) {
			snprintf(err, errlen, "the domain %s is not a valid internationalised domain "
				 "name (IDNA2008)", domain);
			return 0;
		}
		domain = ace;
	}
	if (!no_mx) {
		struct ub_result *res = NULL;
		int r = ub_resolve(ub, domain, RR_MX, 1, &res);
		if (r != 0 || res == NULL) {
			snprintf(err, errlen, "DNS lookup of %s failed: %s", domain, ub_strerror(r));
			return -1;
		}
		if (res->bogus) {
			snprintf(err, errlen, "the MX records of %s fail DNSSEC validation (%s)", domain,
				 res->why_bogus ? res->why_bogus : "bogus");
			ub_resolve_free(res);
			return -1;
		}
		mx_secure = res->secure;
		if (res->nxdomain) {
			snprintf(err, errlen, "the domain %s does not exist (DNS says NXDOMAIN)", domain);
			ub_resolve_free(res);
			return 0;
		}
		if (res->rcode != 0) {
			snprintf(err, errlen, "DNS lookup of MX records for %s failed (rcode %d)",
				 domain, res->rcode);
			ub_resolve_free(res);
			return -1;
		}
		for (int i = 0; res->havedata && res->data[i] && nmx < MAX_MX; i++) {
			const unsigned char *d = (const unsigned char *)res->data[i];
			size_t l = (size_t)res->len[i];
			if (l < 3)
				continue;
			mx[nmx].pref = (unsigned)(d[0] << 8 | d[1]);
			if (dns_wire_name(d + 2, l - 2, mx[nmx].name, sizeof(mx[nmx].name)) < 0)
				continue;
			nmx++;
		}
		ub_resolve_free(res);
		if (nmx == 1 && mx[0].name[0] == '\0') {
			snprintf(err, errlen, "the domain %s does not accept mail (it publishes a "
				 "null MX record, RFC 7505)", domain);
			return -2;
		}
		qsort(mx, nmx, sizeof(mx[0]), mx_cmp);
	}
	size_t n = 0;
	if (nmx == 0) {
		n = host_addrs(domain, out, 0, max, &temp, &any, mx_secure);
	} else {
		for (size_t i = 0; i < nmx && n < max; i++)
			if (mx[i].name[0])
				n += host_addrs(mx[i].name, out, n, max, &temp, &any, mx_secure);
	}
	if (n > 0)
		return (int)n;
	if (temp) {
		snprintf(err, errlen, "DNS lookup of the mail servers of %s failed temporarily",
			 domain);
		return -1;
	}
	snprintf(err, errlen, "no mail server address found for %s (no MX, A or AAAA record)",
		 domain);
	return 0;
}

int qdns_txt(const char *name, const char *prefix, char *out, size_t outlen)
{
	struct ub_result *res = NULL;
	int r = ub_resolve(ub, name, RR_TXT, 1, &res);
	if (r != 0 || res == NULL)
		return -1;
	if (res->rcode != 0 && !res->nxdomain) {
		ub_resolve_free(res);
		return -1;
	}
	int found = 0;
	size_t plen = strlen(prefix);
	for (int i = 0; res->havedata && res->data[i]; i++) {
		/* a TXT record is one or more <length><octets> strings, joined (RFC 7208 3.3) */
		char text[1024];
		size_t o = 0, at = 0, len = (size_t)res->len[i];
		const unsigned char *d = (const unsigned char *)res->data[i];
		int ok = 1;
		while (at < len) {
			size_t l = d[at++];
			if (at + l > len || o + l >= sizeof(text)) {
				ok = 0;
				break;
			}
			memcpy(text + o, d + at, l);
			o += l;
			at += l;
		}
		text[o] = '\0';
		if (!ok || memchr(text, '\0', o) != NULL || o < plen || memcmp(text, prefix, plen) != 0)
			continue;
		if (++found == 1)
			queue_strlcpy(out, outlen, text);
	}
	ub_resolve_free(res);
	return found == 1;   /* several records claiming the prefix count as none */
}

int qdns_tlsa(const char *host, unsigned port, struct tls_tlsa *out, size_t max)
{
	char name[QDNS_NAME_MAX + 32];
	snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);
	struct ub_result *res = NULL;
	int r = ub_resolve(ub, name, RR_TLSA, 1, &res);
	if (r != 0 || res == NULL)
		return -1;
	if (res->bogus || (res->rcode != 0 && !res->nxdomain)) {
		ub_resolve_free(res);
		return -1;
	}
	size_t n = 0;
	for (int i = 0; res->secure && res->havedata && res->data[i] && n < max; i++) {
		const unsigned char *d = (const unsigned char *)res->data[i];
		size_t l = (size_t)res->len[i];
		if (l < 4 || l - 3 > sizeof(out[n].data))
			continue;   /* a full certificate (matching type 0) is not supported */
		out[n].usage = d[0];
		out[n].selector = d[1];
		out[n].mtype = d[2];
		out[n].len = l - 3;
		memcpy(out[n].data, d + 3, l - 3);
		n++;
	}
	ub_resolve_free(res);
	return (int)n;
}
