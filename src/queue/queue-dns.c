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

/* Add one resolver "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 address. */
static int add_server(struct ub_ctx *u, const char *tok, char *err, size_t errlen)
{
	char ip[128], spec[160];
	const char *port = NULL;
	if (tok[0] == '[') {
		const char *end = strchr(tok, ']');
		if (end == NULL || (size_t)(end - tok - 1) >= sizeof(ip))
			goto bad;
		memcpy(ip, tok + 1, (size_t)(end - tok - 1));
		ip[end - tok - 1] = '\0';
		if (end[1] == ':')
			port = end + 2;
	} else {
		const char *colon = strchr(tok, ':');
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {   /* IPv4:PORT */
			if ((size_t)(colon - tok) >= sizeof(ip))
				goto bad;
			memcpy(ip, tok, (size_t)(colon - tok));
			ip[colon - tok] = '\0';
			port = colon + 1;
		} else {
			queue_strlcpy(ip, sizeof(ip), tok);
		}
	}
	unsigned char a[16];
	if (inet_pton(AF_INET, ip, a) != 1 && inet_pton(AF_INET6, ip, a) != 1)
		goto bad;
	if (port)
		snprintf(spec, sizeof(spec), "%s@%s", ip, port);
	else
		queue_strlcpy(spec, sizeof(spec), ip);
	int r = ub_ctx_set_fwd(u, spec);
	if (r != 0) {
		snprintf(err, errlen, "dns_servers: %s: %s", tok, ub_strerror(r));
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "dns_servers: '%s' is not IP[:PORT]", tok);
	return -1;
}

int qdns_validating(void)
{
	return validating;
}

/* A resolver context for the dns_servers setting (see queue.h). */
struct ub_ctx *qdns_ctx_new(const char *servers, const char *ta_file, char *err, size_t errlen)
{
	struct ub_ctx *u = ub_ctx_create();
	if (u == NULL) {
		snprintf(err, errlen, "cannot create the DNS resolver");
		return NULL;
	}
	/* answers come from a resolver thread, never a forked process: the context is finalized
	 * below (ub_ctx_zone_remove), after which ub_ctx_async can no longer choose, and a forked
	 * resolver outlives its worker in the master's process group */
	ub_ctx_async(u, 1);
	ub_ctx_debugout(u, log_foreign("libunbound"));   /* its lines in our format */
	if (ta_file[0]) {
		/* before anything that finalizes the context (zone changes) */
		int r = ub_ctx_add_ta_file(u, ta_file);
		if (r != 0) {
			snprintf(err, errlen, "dns_trust_anchor_file %s: %s", ta_file, ub_strerror(r));
			ub_ctx_delete(u);
			return NULL;
		}
	}
	ub_ctx_set_option(u, "do-not-query-localhost:", "no");
	if (servers[0]) {
		char copy[512];
		queue_strlcpy(copy, sizeof(copy), servers);
		char *save = NULL;
		for (char *t = strtok_r(copy, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
			if (add_server(u, t, err, errlen) < 0) {
				ub_ctx_delete(u);
				return NULL;
			}
		}
		/* libunbound answers the RFC 6761 special-use names (test., invalid., ...) itself
		 * with NXDOMAIN; resolvers the operator chose may serve them (test setups do) */
		static const char *const special[] = { "test.", "invalid.", "home.arpa." };
		for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
			ub_ctx_zone_remove(u, special[i]);
	} else {
		int r = ub_ctx_resolvconf(u, NULL);
		if (r != 0) {
			snprintf(err, errlen, "reading /etc/resolv.conf: %s", ub_strerror(r));
			ub_ctx_delete(u);
			return NULL;
		}
	}
	return u;
}

int qdns_init(const char *servers, const char *ta_file, char *err, size_t errlen)
{
	ub = qdns_ctx_new(servers, ta_file, err, errlen);
	validating = ub != NULL && ta_file[0] != '\0';
	return ub == NULL ? -1 : 0;
}

/* A domain name in uncompressed wire format to text (see queue.h). */
int qdns_wire_name(const unsigned char *p, size_t n, char *out, size_t outlen)
{
	size_t i = 0, o = 0;
	while (i < n) {
		unsigned l = p[i++];
		if (l == 0) {
			out[o] = '\0';
			return 0;
		}
		if (l > 63 || i + l > n || o + l + 2 > outlen)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (unsigned k = 0; k < l; k++) {
			unsigned char c = p[i + k];
			/* a host name is LDH; anything else cannot be dialled anyway */
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return -1;
			out[o++] = (char)c;
		}
		i += l;
	}
	return -1;
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
			if (qdns_wire_name(d + 2, l - 2, mx[nmx].name, sizeof(mx[nmx].name)) < 0)
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
