/* sts-policy.c - MTA-STS records and policies (RFC 8461): parsing and MX matching, pure (no DNS,
 * no network), unit-tested and fuzzed; see mta-sts.h. */
#include "mta-sts.h"

#include <stdio.h>
#include <string.h>

#define STS_NAME_MAX 253   /* RFC 1035 2.3.4: a name as text */

static int is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static int is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ---- the TXT record (RFC 8461 3.1) ---- */

int sts_txt_parse(const char *txt, char id[STS_ID_MAX + 1])
{
	const char *p = txt;
	id[0] = '\0';
	if (*p++ != 'v')
		return 0;
	while (is_wsp(*p))
		p++;
	if (*p++ != '=')
		return 0;
	while (is_wsp(*p))
		p++;
	if (strncmp(p, "STSv1", 5) != 0)
		return 0;
	p += 5;
	int have_id = 0;
	for (;;) {
		while (is_wsp(*p))
			p++;
		if (*p == '\0')
			break;
		if (*p++ != ';')
			return 0;
		while (is_wsp(*p))
			p++;
		if (*p == '\0')
			break;   /* a trailing separator is allowed */
		const char *name = p;
		while (is_alnum(*p) || *p == '_' || *p == '-' || *p == '.')
			p++;
		size_t nlen = (size_t)(p - name);
		if (nlen == 0 || nlen > 32 || *p++ != '=')
			return 0;
		const char *val = p;
		while (*p > 0x20 && *p < 0x7f && *p != ';' && *p != '=')
			p++;
		size_t vlen = (size_t)(p - val);
		if (vlen == 0)
			return 0;
		if (nlen == 2 && strncmp(name, "id", 2) == 0 && !have_id) {
			if (vlen > STS_ID_MAX)
				return 0;
			for (size_t i = 0; i < vlen; i++)
				if (!is_alnum(val[i]))
					return 0;
			memcpy(id, val, vlen);
			id[vlen] = '\0';
			have_id = 1;
		}
	}
	return have_id;
}

/* ---- the policy (RFC 8461 3.2) ---- */

/* A domain name (or "*." + name) as a policy may give it: lower-cased, trailing dot removed. */
static int mx_pattern(const char *v, size_t n, char *out, size_t outlen)
{
	if (n > 0 && v[n - 1] == '.')
		n--;
	if (n == 0 || n >= outlen || n > STS_NAME_MAX + 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (c == '*' && !(i == 0 && n > 2 && v[1] == '.'))
			return -1;
		if (!is_alnum(c) && c != '-' && c != '.' && c != '*' && c != '_')
			return -1;
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	if (strstr(out, "..") != NULL || out[0] == '.')
		return -1;
	return 0;
}

int sts_policy_parse(const char *body, size_t len, struct sts_policy *p, char *why,
		     size_t whylen)
{
	int have_version = 0, have_mode = 0, have_age = 0;
	p->mode = STS_NONE;
	p->nmx = 0;
	p->max_age = 0;
	size_t i = 0;
	while (i < len) {
		size_t s = i;
		while (i < len && body[i] != '\n')
			i++;
		size_t e = i;
		if (i < len)
			i++;   /* the LF */
		if (e > s && body[e - 1] == '\r')
			e--;
		if (e == s)
			continue;   /* an empty line (a trailing one is common) */
		const char *k = body + s;
		size_t klen = 0;
		while (s + klen < e && (is_alnum(k[klen]) || k[klen] == '_' || k[klen] == '-' ||
					k[klen] == '.'))
			klen++;
		if (klen == 0 || klen > 32 || s + klen >= e || k[klen] != ':') {
			snprintf(why, whylen, "the policy has a line that is not \"key: value\"");
			return -1;
		}
		size_t v = s + klen + 1;
		while (v < e && is_wsp(body[v]))
			v++;
		size_t ve = e;
		while (ve > v && is_wsp(body[ve - 1]))
			ve--;
		const char *val = body + v;
		size_t vlen = ve - v;
		for (size_t j = 0; j < vlen; j++)
			if ((unsigned char)val[j] < 0x20 || val[j] == 0x7f) {
				snprintf(why, whylen, "the policy has control characters");
				return -1;
			}
		if (klen == 7 && strncmp(k, "version", 7) == 0 && !have_version) {
			if (vlen != 5 || strncmp(val, "STSv1", 5) != 0) {
				snprintf(why, whylen, "the policy's version is not STSv1");
				return -1;
			}
			have_version = 1;
		} else if (klen == 4 && strncmp(k, "mode", 4) == 0 && !have_mode) {
			if (vlen == 7 && strncmp(val, "enforce", 7) == 0)
				p->mode = STS_ENFORCE;
			else if (vlen == 7 && strncmp(val, "testing", 7) == 0)
				p->mode = STS_TESTING;
			else if (vlen == 4 && strncmp(val, "none", 4) == 0)
				p->mode = STS_NONE;
			else {
				snprintf(why, whylen, "the policy's mode is not enforce, testing or none");
				return -1;
			}
			have_mode = 1;
		} else if (klen == 7 && strncmp(k, "max_age", 7) == 0 && !have_age) {
			long a = 0;
			if (vlen == 0 || vlen > 10) {
				snprintf(why, whylen, "the policy's max_age is not a number of seconds");
				return -1;
			}
			for (size_t j = 0; j < vlen; j++) {
				if (val[j] < '0' || val[j] > '9') {
					snprintf(why, whylen, "the policy's max_age is not a number of "
						 "seconds");
					return -1;
				}
				a = a * 10 + (val[j] - '0');
			}
			p->max_age = a > STS_MAX_AGE_MAX ? STS_MAX_AGE_MAX : a;
			have_age = 1;
		} else if (klen == 2 && strncmp(k, "mx", 2) == 0) {
			if (p->nmx < STS_MX_MAX &&
			    mx_pattern(val, vlen, p->mx[p->nmx], sizeof(p->mx[0])) == 0)
				p->nmx++;
		}
		/* other keys are extensions: ignored (RFC 8461 3.2) */
	}
	if (!have_version || !have_mode || !have_age) {
		snprintf(why, whylen, "the policy lacks its %s", !have_version ? "version" :
			 !have_mode ? "mode" : "max_age");
		return -1;
	}
	if (p->mode != STS_NONE && p->nmx == 0) {
		snprintf(why, whylen, "the policy names no mx");
		return -1;
	}
	return 0;
}

int sts_mx_match(const struct sts_policy *p, const char *host)
{
	char h[STS_NAME_MAX + 2];
	size_t n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(h))
		return 0;
	for (size_t i = 0; i < n; i++)
		h[i] = (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] - 'A' + 'a') : host[i];
	h[n] = '\0';
	for (unsigned i = 0; i < p->nmx; i++) {
		const char *m = p->mx[i];
		if (m[0] == '*' && m[1] == '.') {
			/* "*.example.com" covers exactly one more label: a.example.com */
			const char *dot = strchr(h, '.');
			if (dot != NULL && dot != h && strcmp(dot + 1, m + 2) == 0)
				return 1;
		} else if (strcmp(h, m) == 0) {
			return 1;
		}
	}
	return 0;
}

void sts_mx_list(const struct sts_policy *p, char *out, size_t outlen)
{
	size_t o = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < p->nmx && o + 1 < outlen; i++) {
		int w = snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", p->mx[i]);
		if (w < 0 || (size_t)w >= outlen - o)
			break;
		o += (size_t)w;
	}
}
