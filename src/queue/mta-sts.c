/* mta-sts.c - SMTP MTA Strict Transport Security (RFC 8461): the TXT lookup, the HTTPS fetch
 * and the policy cache; see mta-sts.h. */
/* Error texts are clipped to fixed-size fields on purpose (bounded memory). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include "mta-sts.h"
#include "queue-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idn.h"
#include "log.h"
#include "tls.h"

#define STS_NAME_MAX 253             /* RFC 1035 2.3.4: a name as text */
#define STS_HEAD_MAX 8192            /* HTTP status line + headers we read */
#define STS_ADDRS 4                  /* addresses of mta-sts.DOMAIN tried */
#define STS_PATH "/.well-known/mta-sts.txt"

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ---- the cache: <queue>/mta-sts/<domain> = "id ID\nfetched T\n\n" + the policy ---- */

/* Read the cached policy of domain. 1 found and still in force, 0 none. */
static int cache_read(const char *path, struct sts_policy *p)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char *b = malloc(STS_POLICY_MAX + 128);
	ssize_t n = b ? read(fd, b, STS_POLICY_MAX + 127) : -1;
	close(fd);
	if (n <= 0) {
		free(b);
		return 0;
	}
	b[n] = '\0';
	char id[STS_ID_MAX + 1];
	long long fetched;
	int used = 0;
	char why[128];
	int ok = sscanf(b, "id %32[A-Za-z0-9]\nfetched %lld\n\n%n", id, &fetched, &used) == 2 &&
		 used > 0 && sts_policy_parse(b + used, (size_t)n - (size_t)used, p, why,
						sizeof(why)) == 0;
	free(b);
	if (!ok || (time_t)fetched + p->max_age <= time(NULL))
		return 0;
	snprintf(p->id, sizeof(p->id), "%s", id);
	p->fetched = (time_t)fetched;
	return 1;
}

/* Store a fetched policy (temp file + rename: readers see the old or the new one). */
static void cache_write(const char *dir, const char *path, const char *id, const char *body,
			size_t len)
{
	static atomic_uint seq;
	char tmp[CONFIG_PATH_MAX + 400];
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%u", path, (int)getpid(), atomic_fetch_add(&seq, 1));
	FILE *f = fopen(tmp, "we");
	if (f == NULL)
		return;
	fprintf(f, "id %s\nfetched %lld\n\n", id, (long long)time(NULL));
	fwrite(body, 1, len, f);
	if (fclose(f) != 0 || rename(tmp, path) < 0)
		unlink(tmp);
}

/* ---- HTTPS ---- */

/* The Content-Length of a response whose headers are complete in b, or -1. */
static long content_length(const char *b)
{
	const char *end = strstr(b, "\r\n\r\n");
	for (const char *l = strstr(b, "\r\n"); end && l && l < end; l = strstr(l + 2, "\r\n"))
		if (strncasecmp(l + 2, "Content-Length:", 15) == 0) {
			char *e;
			long v = strtol(l + 17, &e, 10);
			return v >= 0 && v <= STS_POLICY_MAX && e > l + 17 ? v : STS_POLICY_MAX + 1;
		}
	return -1;
}

/* GET the policy of domain from one address. 0 body in *b (malloc'd, *len), -1 (why). */
static int fetch_from(const char *host, const char *ip, struct tls_ctx *tls, unsigned port,
		      unsigned timeout_ms, char **b_r, size_t *len_r, char *why, size_t whylen)
{
	struct smtpc c;
	memset(&c, 0, sizeof(c));
	c.fd = -1;
	c.reply_timeout_ms = timeout_ms;
	snprintf(c.host, sizeof(c.host), "%s", host);
	if (smtpc_connect(&c, ip, port, timeout_ms) < 0) {
		snprintf(why, whylen, "%s[%s]: %s", host, ip, c.err);
		return -1;
	}
	if (smtpc_tls_start(&c, tls, TLS_VERIFY_FAIL) < 0 ||
	    smtpc_sendf(&c, "GET " STS_PATH " HTTP/1.0\r\nHost: %s\r\nUser-Agent: postino\r\n"
			"Connection: close\r\n\r\n", host) < 0) {
		snprintf(why, whylen, "%s[%s]: %s", host, ip, c.err);
		smtpc_close(&c);
		return -1;
	}
	size_t cap = STS_HEAD_MAX + STS_POLICY_MAX, n = 0;
	char *b = malloc(cap + 1);
	if (b == NULL) {
		smtpc_close(&c);
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (;;) {
		if (n == cap) {
			snprintf(why, whylen, "%s: the policy is larger than 64 KB", host);
			goto fail;
		}
		ssize_t r = smtpc_read_raw(&c, b + n, cap - n);
		if (r < 0) {
			snprintf(why, whylen, "%s[%s]: %s", host, ip, c.err);
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		b[n] = '\0';
		long cl = content_length(b);
		const char *hend = strstr(b, "\r\n\r\n");
		if (cl >= 0 && hend != NULL && n - (size_t)(hend + 4 - b) >= (size_t)cl)
			break;   /* all of it: no need to wait for the close */
	}
	smtpc_close(&c);
	b[n] = '\0';
	char *end = strstr(b, "\r\n\r\n");
	size_t hl = end ? (size_t)(end - b) + 4 : 0;
	long clen = end ? content_length(b) : -1;
	if (clen >= 0 && n - hl != (size_t)clen) {
		snprintf(why, whylen, "%s: the policy arrived incomplete", host);
		free(b);
		return -1;
	}
	if (end == NULL || hl > STS_HEAD_MAX) {
		snprintf(why, whylen, "%s: not an HTTP answer", host);
		free(b);
		return -1;
	}
	int status = 0;
	if (sscanf(b, "HTTP/1.%*1[01] %3d", &status) != 1 || status != 200) {
		/* redirects are not followed (RFC 8461 3.3) */
		snprintf(why, whylen, "%s answered HTTP %d instead of 200 for " STS_PATH, host,
			 status);
		free(b);
		return -1;
	}
	int text_plain = 0;
	for (char *l = strstr(b, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
		if (strncasecmp(l + 2, "Content-Type:", 13) == 0) {
			const char *v = l + 15;
			while (is_wsp(*v))
				v++;
			text_plain = strncasecmp(v, "text/plain", 10) == 0;
		}
	if (!text_plain) {
		snprintf(why, whylen, "%s: the policy is not served as text/plain", host);
		free(b);
		return -1;
	}
	if (n - hl > STS_POLICY_MAX) {
		snprintf(why, whylen, "%s: the policy is larger than 64 KB", host);
		free(b);
		return -1;
	}
	memmove(b, b + hl, n - hl);
	*len_r = n - hl;
	b[*len_r] = '\0';
	*b_r = b;
	return 0;
fail:
	smtpc_close(&c);
	free(b);
	return -1;
}

/* Fetch and parse the policy of domain. 0 ok, -1 (why). */
static int fetch(const char *domain, struct tls_ctx *tls, unsigned port, unsigned timeout_ms,
		 struct sts_policy *p, char **body_r, size_t *len_r, char *why, size_t whylen)
{
	char host[STS_NAME_MAX + 16];
	struct qdns_target t[STS_ADDRS];
	snprintf(host, sizeof(host), "mta-sts.%s", domain);
	char derr[256];
	int n = qdns_route(host, 1, t, STS_ADDRS, derr, sizeof(derr));
	if (n <= 0) {
		snprintf(why, whylen, "%s", derr);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char *b = NULL;
		size_t len = 0;
		if (fetch_from(host, t[i].ip, tls, port, timeout_ms, &b, &len, why, whylen) < 0)
			continue;
		int r = sts_policy_parse(b, len, p, why, whylen);
		if (r == 0) {
			*body_r = b;
			*len_r = len;
			return 0;
		}
		free(b);
		return -1;
	}
	return -1;
}

/* ---- lookup ---- */

int sts_lookup(const char *domain, const char *cache_dir, struct tls_ctx *tls,
	       unsigned https_port, unsigned timeout_ms, struct sts_policy *p)
{
	char d[STS_NAME_MAX + 1];
	size_t n = strlen(domain);
	if (idn_has_nonascii(domain, n)) {
		if (idn_to_ascii(domain, n, d, sizeof(d)) < 0)
			return 0;
	} else if (n < sizeof(d)) {
		memcpy(d, domain, n + 1);
	} else {
		return 0;
	}
	/* the domain names a cache file: DNS name characters only, never a path */
	for (char *c = d; *c; c++) {
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
		if (!is_alnum(*c) && *c != '-' && *c != '.' && *c != '_')
			return 0;
	}
	if (d[0] == '.' || d[0] == '\0' || strstr(d, "..") != NULL)
		return 0;
	char path[CONFIG_PATH_MAX + 300], txtname[STS_NAME_MAX + 16], txt[512], id[STS_ID_MAX + 1];
	snprintf(path, sizeof(path), "%s/%s", cache_dir, d);
	struct sts_policy cached;
	int have = cache_read(path, &cached);
	snprintf(txtname, sizeof(txtname), "_mta-sts.%s", d);
	int r = qdns_txt(txtname, "v=STSv1", txt, sizeof(txt));
	if (r == 1 && sts_txt_parse(txt, id)) {
		if (have && strcmp(cached.id, id) == 0) {
			*p = cached;
			return p->mode != STS_NONE;
		}
		char *body = NULL, why[512];
		size_t len = 0;
		if (fetch(d, tls, https_port, timeout_ms, p, &body, &len, why, sizeof(why)) == 0) {
			snprintf(p->id, sizeof(p->id), "%s", id);
			p->fetched = time(NULL);
			cache_write(cache_dir, path, id, body, len);
			free(body);
			log_info("event=mta-sts-policy domain=%s id=%s mode=%s max_age=%ld", d, id,
				 p->mode == STS_ENFORCE ? "enforce" : p->mode == STS_TESTING ?
				 "testing" : "none", p->max_age);
			return p->mode != STS_NONE;
		}
		log_warn("event=mta-sts-fetch-failed domain=%s result=sts-policy-fetch-error "
			 "error=\"%s\"%s", d, why, have ? " action=\"the cached policy stays in force\"" :
			 "");
	}
	/* no (valid) record, a DNS failure or a failed fetch: a cached policy stays in force until
	 * its max_age (RFC 8461 5.1), or there is none */
	if (have) {
		*p = cached;
		return p->mode != STS_NONE;
	}
	return 0;
}
