/* dns.c - libunbound contexts as postino configures them: the resolvers of dns_servers, trust
 * anchors, answers from a resolver thread; and domain names from wire format. Used by the queue
 * (MX, TLSA, MTA-STS) and by the inbound checks (SPF, DKIM, DMARC). */
/* Names and error texts are clipped to the caller's buffers on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "dns.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unbound.h>

#include "log.h"

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
			snprintf(ip, sizeof(ip), "%s", tok);
		}
	}
	unsigned char a[16];
	if (inet_pton(AF_INET, ip, a) != 1 && inet_pton(AF_INET6, ip, a) != 1)
		goto bad;
	if (port)
		snprintf(spec, sizeof(spec), "%s@%s", ip, port);
	else
		snprintf(spec, sizeof(spec), "%s", ip);
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

/* dns_ctx_new's work, under its lock. */
static struct ub_ctx *dns_ctx_make(const char *servers, const char *ta_file, char *err,
				   size_t errlen)
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
		snprintf(copy, sizeof(copy), "%s", servers);
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

/* libunbound's contexts are made one at a time in a process: ub_ctx_create and
 * ub_ctx_debugout set up its global log state (a mutex initialised on first use, checked and set
 * without a lock), so two pool threads making their first resolver at once (the first messages
 * after a worker starts, each thread with its own context) could initialise that mutex while the
 * other held it; glibc then aborted the worker ("pthread_mutex_lock: Assertion
 * 'mutex->__data.__owner == 0' failed", seen once in test_group_commit's first messages). */
static pthread_mutex_t dns_ctx_mu = PTHREAD_MUTEX_INITIALIZER;

/* A resolver context for the dns_servers setting (see dns.h). */
struct ub_ctx *dns_ctx_new(const char *servers, const char *ta_file, char *err, size_t errlen)
{
	pthread_mutex_lock(&dns_ctx_mu);
	struct ub_ctx *u = dns_ctx_make(servers, ta_file, err, errlen);
	pthread_mutex_unlock(&dns_ctx_mu);
	return u;
}

/* A domain name in uncompressed wire format to text (see dns.h). */
int dns_wire_name(const unsigned char *p, size_t n, char *out, size_t outlen)
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
