/* imap-url.c - IMAP URLs (RFC 5092) with RFC 4467's ;EXPIRE and ;URLAUTH. See imap-url.h. */
#include "imap-url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "imap-mboxname.h"

/* Decode %XX escapes of in[0..n) into out (NUL-terminated). 0, or -1 (bad escape, NUL, too
 * long). */
static int pct_decode(const char *in, size_t n, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '%') {
			unsigned v = 0;
			for (int k = 1; k <= 2; k++) {
				char h = i + (size_t)k < n ? in[i + (size_t)k] : '\0';
				v <<= 4;
				if (h >= '0' && h <= '9')
					v |= (unsigned)(h - '0');
				else if (h >= 'a' && h <= 'f')
					v |= (unsigned)(h - 'a' + 10);
				else if (h >= 'A' && h <= 'F')
					v |= (unsigned)(h - 'A' + 10);
				else
					return -1;
			}
			c = (unsigned char)v;
			i += 2;
		}
		if (c == '\0' || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* Parse a decimal number of at most max; *p advanced. 0, or -1. */
static int url_num(const char **p, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	const char *q = *p;
	if (*q < '0' || *q > '9')
		return -1;
	for (; *q >= '0' && *q <= '9'; q++) {
		v = v * 10 + (uint64_t)(*q - '0');
		if (v > max)
			return -1;
	}
	*p = q;
	*v_r = v;
	return 0;
}

/* Exactly n digits as a number; *p advanced. -1 if they are not there. */
static int digits(const char **p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	return v;
}

/* Skip a literal prefix, ASCII case ignored. 1 skipped, 0 not there. */
static int url_skip(const char **p, const char *word)
{
	size_t n = strlen(word);
	if (strncasecmp(*p, word, n) != 0)
		return 0;
	*p += n;
	return 1;
}

/* RFC 3339 date-time ("2026-12-06T10:00:00Z", "...:00.5+01:00"); *p advanced. 0 or -1. */
static int parse_datetime(const char **p, time_t *t_r)
{
	const char *q = *p;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	int y = digits(&q, 4), mo, d, h, mi, s;
	if (y < 0 || *q++ != '-' || (mo = digits(&q, 2)) < 1 || mo > 12 || *q++ != '-' ||
	    (d = digits(&q, 2)) < 1 || d > 31 || (*q != 'T' && *q != 't') || !++q ||
	    (h = digits(&q, 2)) < 0 || h > 23 || *q++ != ':' || (mi = digits(&q, 2)) < 0 ||
	    mi > 59 || *q++ != ':' || (s = digits(&q, 2)) < 0 || s > 60)
		return -1;
	if (*q == '.') {
		q++;
		if (*q < '0' || *q > '9')
			return -1;
		while (*q >= '0' && *q <= '9')
			q++;
	}
	long off = 0;
	if (*q == 'Z' || *q == 'z') {
		q++;
	} else if (*q == '+' || *q == '-') {
		int sign = *q++ == '-' ? -1 : 1, oh, om;
		if ((oh = digits(&q, 2)) < 0 || oh > 23 || *q++ != ':' || (om = digits(&q, 2)) < 0 ||
		    om > 59)
			return -1;
		off = sign * (oh * 3600L + om * 60L);
	} else {
		return -1;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s == 60 ? 59 : s;
	*t_r = timegm(&tm) - off;
	*p = q;
	return 0;
}

/* The authority of an absolute URL, auth[0..n): [user[;AUTH=..]@]host[:port]. 0 or -1. */
static int parse_server(const char *auth, size_t n, struct imap_url *u)
{
	const char *at = NULL;
	for (size_t i = 0; i < n; i++)
		if (auth[i] == '@')
			at = auth + i;   /* the last one: a raw "@" in the user name is seen */
	const char *host = auth;
	if (at != NULL) {
		const char *semi = memchr(auth, ';', (size_t)(at - auth));
		size_t ul = (size_t)((semi ? semi : at) - auth);
		if (ul > 0 && pct_decode(auth, ul, u->user, sizeof(u->user)) < 0)
			return -1;
		host = at + 1;
	}
	size_t hl = (size_t)(auth + n - host);
	if (hl > 0 && host[0] == '[') {
		const char *rb = memchr(host, ']', hl);
		if (rb == NULL)
			return -1;
		hl = (size_t)(rb - host) + 1;
	} else {
		const char *colon = memchr(host, ':', hl);
		if (colon)
			hl = (size_t)(colon - host);
	}
	if (hl == 0 || pct_decode(host, hl, u->host, sizeof(u->host)) < 0)
		return -1;
	for (char *c = u->host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	return 0;
}

/* See imap-url.h. */
int imap_url_parse(const char *url, struct imap_url *u, const char **why_r)
{
	const char *p = url;
	uint64_t v;
	memset(u, 0, sizeof(*u));
	*why_r = "not an IMAP URL of a message";
	if (url_skip(&p, "imap://")) {
		const char *slash = strchr(p, '/');
		if (slash == NULL || parse_server(p, (size_t)(slash - p), u) < 0)
			return -1;
		u->form = IMAP_URL_ABSOLUTE;
		p = slash;
	} else {
		u->form = *p == '/' ? IMAP_URL_PATH : IMAP_URL_RELATIVE;
	}
	if (*p == '/') {
		p++;
		const char *end = strchr(p, ';');
		if (end == NULL)
			return -1;
		size_t n = (size_t)(end - p);
		if (n > 0 && p[n - 1] == '/')
			n--;   /* "/INBOX/;UID=": the slash belongs to "/;UID=" */
		char name[sizeof(u->box)];
		if (n == 0 || pct_decode(p, n, name, sizeof(name)) < 0)
			return -1;
		if (strcasecmp(name, "INBOX") == 0)
			snprintf(u->box, sizeof(u->box), "INBOX");
		else if (strncasecmp(name, "INBOX/", 6) == 0)
			snprintf(u->box, sizeof(u->box), "INBOX/%s", name + 6);
		else
			snprintf(u->box, sizeof(u->box), "%s", name);
		if (strcmp(u->box, "INBOX") != 0 && !imap_mboxname_valid(u->box)) {
			*why_r = "invalid mailbox name in the URL";
			return -1;
		}
		p += n;
		if (url_skip(&p, ";UIDVALIDITY=")) {
			if (url_num(&p, UINT32_MAX, &v) < 0 || v == 0)
				return -1;
			u->have_uidvalidity = 1;
			u->uidvalidity = (uint32_t)v;
		}
		if (!url_skip(&p, "/;UID="))
			return -1;
	} else if (!url_skip(&p, ";UID=")) {
		return -1;
	}
	if (url_num(&p, UINT32_MAX, &v) < 0 || v == 0)
		return -1;
	u->uid = (uint32_t)v;
	if (url_skip(&p, "/;SECTION=")) {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (end && n > 0 && p[n - 1] == '/')
			n--;   /* "/;PARTIAL=" follows */
		if (n == 0 || pct_decode(p, n, u->section, sizeof(u->section)) < 0) {
			*why_r = "invalid section in the URL";
			return -1;
		}
		p += n;
	}
	if (url_skip(&p, "/;PARTIAL=")) {
		if (url_num(&p, UINT64_MAX / 2, &u->poff) < 0)
			return -1;
		if (*p == '.') {
			p++;
			if (url_num(&p, UINT64_MAX / 2, &u->plen) < 0 || u->plen == 0)
				return -1;
		}
		u->have_partial = 1;
	}
	if (url_skip(&p, ";EXPIRE=")) {
		if (parse_datetime(&p, &u->expire) < 0) {
			*why_r = "the URL's EXPIRE is not an RFC 3339 date-time";
			return -1;
		}
		u->have_expire = 1;
	}
	if (url_skip(&p, ";URLAUTH=")) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		if (n == 0 || pct_decode(p, n, u->access, sizeof(u->access)) < 0 ||
		    !imap_url_access_valid(u->access)) {
			*why_r = "the URL's URLAUTH access identifier is not anonymous, authuser, "
				 "user+NAME or submit+NAME";
			return -1;
		}
		u->have_urlauth = 1;
		p += n;
		u->rump_len = (size_t)(p - url);
		if (*p == ':') {
			p++;
			const char *c2 = strchr(p, ':');
			size_t ml = c2 ? (size_t)(c2 - p) : 0;
			if (ml == 0 || ml >= sizeof(u->mech)) {
				*why_r = "the URL's URLAUTH has no mechanism and token";
				return -1;
			}
			memcpy(u->mech, p, ml);
			u->mech[ml] = '\0';
			p = c2 + 1;
			size_t tl = 0;
			while ((p[tl] >= '0' && p[tl] <= '9') || (p[tl] >= 'a' && p[tl] <= 'f') ||
			       (p[tl] >= 'A' && p[tl] <= 'F'))
				tl++;
			if (tl < IMAP_URL_TOKEN_MIN || tl > IMAP_URL_TOKEN_MAX) {
				*why_r = "the URL's URLAUTH token is not 32 to 128 hex digits";
				return -1;
			}
			memcpy(u->token, p, tl);
			u->token[tl] = '\0';
			u->have_token = 1;
			p += tl;
		}
	}
	if (*p != '\0') {
		*why_r = "unexpected text in the URL";
		return -1;
	}
	return 0;
}

/* The name after "user+" or "submit+", or NULL. */
static const char *access_name(const char *access, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncasecmp(access, prefix, n) == 0 ? access + n : NULL;
}

/* See imap-url.h. */
int imap_url_access_valid(const char *access)
{
	const char *n;
	if (strcasecmp(access, "anonymous") == 0 || strcasecmp(access, "authuser") == 0)
		return 1;
	return ((n = access_name(access, "user+")) != NULL ||
		(n = access_name(access, "submit+")) != NULL) && n[0] != '\0';
}

/* See imap-url.h. */
int imap_url_access_allows(const char *access, const char *requester, int as_submit)
{
	const char *n;
	if (strcasecmp(access, "anonymous") == 0)
		return 1;
	if (requester == NULL || requester[0] == '\0')
		return 0;
	if (strcasecmp(access, "authuser") == 0)
		return 1;
	if ((n = access_name(access, "user+")) != NULL)
		return !as_submit && strcasecmp(n, requester) == 0;
	if ((n = access_name(access, "submit+")) != NULL)
		return as_submit && strcasecmp(n, requester) == 0;
	return 0;
}
