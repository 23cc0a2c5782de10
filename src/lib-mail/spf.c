/* spf.c - SPF check_host() (RFC 7208 4-7): record selection, term syntax, mechanisms, the
 * DNS lookup limits and macro expansion.
 */
#include "spf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SPF_LOCAL_MAX 64          /* RFC 5321 4.5.3.1.1 */
#define SPF_MACRO_OUT 1024        /* an expanded domain-spec before truncation to 253 */
#define SPF_MACRO_PARTS 128       /* parts a macro value is split into */

enum term_kind { T_ALL, T_INCLUDE, T_A, T_MX, T_PTR, T_IP4, T_IP6, T_EXISTS, T_REDIRECT, T_EXP,
		 T_OTHER_MOD };

struct term {
	enum term_kind kind;
	char qual;                    /* '+', '-', '~', '?' */
	const char *arg;              /* domain-spec or address text, NULL if none */
	size_t arg_len;
	int cidr4, cidr6;
	unsigned char ip[16];
};

struct spf_ctx {
	const struct authdns *dns;
	const struct spf_ip *ip;
	char sender[SPF_LOCAL_MAX + AUTHDNS_NAME_MAX + 2];
	char local[SPF_LOCAL_MAX + 1];
	char odomain[AUTHDNS_NAME_MAX + 1];
	char helo[AUTHDNS_NAME_MAX + 1];
	unsigned dns_mechs, voids;
	const char *why;
};

/* RFC 8601 result names. */
const char *spf_result_name(enum spf_result r)
{
	static const char *const n[] = { "none", "neutral", "pass", "fail", "softfail", "temperror",
					  "permerror" };
	return (unsigned)r < sizeof(n) / sizeof(n[0]) ? n[r] : "permerror";
}

/* Is c an ALPHA? */
static int is_alpha(char c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* Is c one of the macro delimiters (RFC 7208 7.1)? */
static int is_delim(char c)
{
	return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/* Syntax of a macro-string (RFC 7208 7.1); exp 1 allows c, r, t. 0 ok, -1 not. */
static int macro_syntax(const char *p, size_t n, int exp)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x21 || c > 0x7e)
			return -1;
		if (c != '%')
			continue;
		if (++i >= n)
			return -1;
		if (p[i] == '%' || p[i] == '_' || p[i] == '-')
			continue;
		if (p[i] != '{' || ++i >= n)
			return -1;
		char l = (char)(p[i] | 0x20);
		if (!strchr("slodiphv", l) && !(exp && strchr("crt", l)))
			return -1;
		i++;
		while (i < n && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i < n && (p[i] | 0x20) == 'r')
			i++;
		while (i < n && is_delim(p[i]))
			i++;
		if (i >= n || p[i] != '}')
			return -1;
	}
	return 0;
}

/* A CIDR length "/n" of at most max; -1 if not one. */
static int cidr_num(const char *p, size_t n, int max)
{
	if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
		return -1;
	int x = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		x = x * 10 + (p[i] - '0');
	}
	return x <= max ? x : -1;
}

/* Split off "/cidr4" and "//cidr6" from the end of a term argument. 0 ok, -1 bad. */
static int dual_cidr(struct term *t, const char *p, size_t n, size_t *arg_end_r)
{
	t->cidr4 = 32;
	t->cidr6 = 128;
	const char *slash = memchr(p, '/', n);
	*arg_end_r = slash ? (size_t)(slash - p) : n;
	if (slash == NULL)
		return 0;
	const char *rest = slash;
	const char *end = p + n;
	if (rest + 1 < end && rest[1] != '/') {   /* /cidr4 */
		const char *e = memchr(rest + 1, '/', (size_t)(end - rest - 1));
		const char *stop = e ? e : end;
		t->cidr4 = cidr_num(rest + 1, (size_t)(stop - rest - 1), 32);
		if (t->cidr4 < 0)
			return -1;
		rest = stop;
	}
	if (rest < end) {   /* //cidr6 */
		if (end - rest < 3 || rest[0] != '/' || rest[1] != '/')
			return -1;
		t->cidr6 = cidr_num(rest + 2, (size_t)(end - rest - 2), 128);
		if (t->cidr6 < 0)
			return -1;
	}
	return 0;
}

/* Parse one term. 0 ok, -1 syntax error (*err_r). */
static int term_parse(const char *p, size_t n, struct term *t, const char **err_r)
{
	memset(t, 0, sizeof(*t));
	t->qual = '+';
	/* modifier: name "=" macro-string */
	size_t k = 0;
	if (n > 0 && is_alpha(p[0])) {
		k = 1;
		while (k < n && (is_alpha(p[k]) || (p[k] >= '0' && p[k] <= '9') || p[k] == '-' ||
				 p[k] == '_' || p[k] == '.'))
			k++;
		if (k < n && p[k] == '=') {
			t->arg = p + k + 1;
			t->arg_len = n - k - 1;
			if (k == 8 && strncasecmp(p, "redirect", 8) == 0)
				t->kind = T_REDIRECT;
			else if (k == 3 && strncasecmp(p, "exp", 3) == 0)
				t->kind = T_EXP;
			else
				t->kind = T_OTHER_MOD;
			if (macro_syntax(t->arg, t->arg_len, t->kind != T_REDIRECT) < 0 ||
			    (t->kind != T_OTHER_MOD && t->arg_len == 0)) {
				*err_r = "a modifier has a malformed value";
				return -1;
			}
			return 0;
		}
	}
	size_t i = 0;
	if (n > 0 && strchr("+-~?", p[0])) {
		t->qual = p[0];
		i = 1;
	}
	size_t ns = i;
	while (i < n && is_alpha(p[i]))
		i++;
	size_t nl = i - ns;
	const char *name = p + ns;
	const char *arg = p + i;
	size_t alen = n - i;
	static const struct { const char *name; enum term_kind kind; } mechs[] = {
		{ "all", T_ALL }, { "include", T_INCLUDE }, { "a", T_A }, { "mx", T_MX },
		{ "ptr", T_PTR }, { "ip4", T_IP4 }, { "ip6", T_IP6 }, { "exists", T_EXISTS },
	};
	size_t m;
	for (m = 0; m < sizeof(mechs) / sizeof(mechs[0]); m++)
		if (strlen(mechs[m].name) == nl && strncasecmp(mechs[m].name, name, nl) == 0)
			break;
	/* "ip4"/"ip6" have digits in the name: the alpha scan stopped at "ip" */
	if (m == sizeof(mechs) / sizeof(mechs[0]) && nl == 2 && strncasecmp(name, "ip", 2) == 0 &&
	    alen > 0 && (arg[0] == '4' || arg[0] == '6')) {
		m = arg[0] == '4' ? 5 : 6;
		arg++;
		alen--;
	}
	if (m == sizeof(mechs) / sizeof(mechs[0])) {
		*err_r = "unknown mechanism";
		return -1;
	}
	t->kind = mechs[m].kind;
	switch (t->kind) {
	case T_ALL:
		if (alen != 0) {
			*err_r = "all takes no argument";
			return -1;
		}
		return 0;
	case T_INCLUDE:
	case T_EXISTS:
		if (alen < 2 || arg[0] != ':' || macro_syntax(arg + 1, alen - 1, 0) < 0) {
			*err_r = "include/exists needs a valid domain";
			return -1;
		}
		t->arg = arg + 1;
		t->arg_len = alen - 1;
		return 0;
	case T_PTR:
		if (alen > 0 && (arg[0] != ':' || alen < 2 || macro_syntax(arg + 1, alen - 1, 0) < 0)) {
			*err_r = "ptr has a malformed domain";
			return -1;
		}
		if (alen > 0) {
			t->arg = arg + 1;
			t->arg_len = alen - 1;
		}
		return 0;
	case T_A:
	case T_MX: {
		size_t end;
		if (alen > 0 && arg[0] != ':' && arg[0] != '/') {
			*err_r = "unknown mechanism";
			return -1;
		}
		int colon = alen > 0 && arg[0] == ':';
		const char *a = colon ? arg + 1 : arg;
		size_t al = colon ? alen - 1 : alen;
		if (colon && al == 0) {
			*err_r = "a/mx has an empty domain";
			return -1;
		}
		if (dual_cidr(t, a, al, &end) < 0 || (colon && end == 0) ||
		    macro_syntax(a, end, 0) < 0) {
			*err_r = "a/mx has a malformed domain or prefix length";
			return -1;
		}
		if (end > 0) {
			t->arg = a;
			t->arg_len = end;
		}
		return 0;
	}
	case T_IP4:
	case T_IP6: {
		char txt[64];
		if (alen < 2 || arg[0] != ':') {
			*err_r = "ip4/ip6 needs an address";
			return -1;
		}
		const char *a = arg + 1;
		size_t al = alen - 1;
		const char *slash = memchr(a, '/', al);
		size_t addr_len = slash ? (size_t)(slash - a) : al;
		int max = t->kind == T_IP4 ? 32 : 128;
		int cidr = slash ? cidr_num(slash + 1, al - addr_len - 1, max) : max;
		if (addr_len == 0 || addr_len >= sizeof(txt) || cidr < 0) {
			*err_r = "ip4/ip6 has a malformed address or prefix length";
			return -1;
		}
		memcpy(txt, a, addr_len);
		txt[addr_len] = '\0';
		if (inet_pton(t->kind == T_IP4 ? AF_INET : AF_INET6, txt, t->ip) != 1) {
			*err_r = "ip4/ip6 has a malformed address";
			return -1;
		}
		t->cidr4 = t->cidr6 = cidr;
		return 0;
	}
	default:
		break;
	}
	*err_r = "unknown mechanism";
	return -1;
}

/* Split a record into terms. Count of terms or -1 (*err_r). */
static int record_parse(const char *rec, size_t n, struct term *terms, const char **err_r)
{
	if (n < 6 || strncasecmp(rec, "v=spf1", 6) != 0 || (n > 6 && rec[6] != ' ')) {
		*err_r = "not an SPF record";
		return -1;
	}
	int nt = 0, redirects = 0, exps = 0;
	size_t i = 6;
	while (i < n) {
		while (i < n && rec[i] == ' ')
			i++;
		if (i >= n)
			break;
		size_t s = i;
		while (i < n && rec[i] != ' ')
			i++;
		if (nt == SPF_TERMS_MAX) {
			*err_r = "the record has too many terms";
			return -1;
		}
		if (term_parse(rec + s, i - s, &terms[nt], err_r) < 0)
			return -1;
		redirects += terms[nt].kind == T_REDIRECT;
		exps += terms[nt].kind == T_EXP;
		nt++;
	}
	if (redirects > 1 || exps > 1) {
		*err_r = "redirect= or exp= appears twice";
		return -1;
	}
	return nt;
}

/* Syntax check of a record. */
int spf_record_check(const char *rec, size_t n, const char **err_r)
{
	struct term *terms = malloc(SPF_TERMS_MAX * sizeof(*terms));
	if (terms == NULL) {
		*err_r = "out of memory";
		return -1;
	}
	int r = record_parse(rec, n, terms, err_r);
	free(terms);
	return r < 0 ? -1 : 0;
}

/* Append c to out if there is room. */
static int put(char *out, size_t outlen, size_t *o, char c)
{
	if (*o + 1 >= outlen)
		return -1;
	out[(*o)++] = c;
	return 0;
}

/* The value of macro letter l (lower-case) into v. */
static void macro_value(const struct spf_ctx *c, char l, const char *domain, char *v, size_t vl)
{
	const unsigned char *a = c->ip->a;
	switch (l) {
	case 's':
		snprintf(v, vl, "%s", c->sender);
		break;
	case 'l':
		snprintf(v, vl, "%s", c->local);
		break;
	case 'o':
		snprintf(v, vl, "%s", c->odomain);
		break;
	case 'd':
		snprintf(v, vl, "%s", domain);
		break;
	case 'h':
		snprintf(v, vl, "%s", c->helo);
		break;
	case 'v':
		snprintf(v, vl, "%s", c->ip->family == 4 ? "in-addr" : "ip6");
		break;
	case 'i':
		if (c->ip->family == 4) {
			snprintf(v, vl, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
		} else {   /* dot-format nibbles (7.3) */
			size_t o = 0;
			for (int k = 0; k < 16 && o + 4 < vl; k++)
				o += (size_t)snprintf(v + o, vl - o, "%s%x.%x", k ? "." : "", a[k] >> 4,
						      a[k] & 15);
		}
		break;
	default:   /* p: no validated name (7.3 allows "unknown") */
		snprintf(v, vl, "unknown");
		break;
	}
}

/* Expand a domain-spec (RFC 7208 7.3, 7.4) for domain into out. 0 ok, -1 permerror. */
static int macro_expand(const struct spf_ctx *c, const char *p, size_t n, const char *domain,
			char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%') {
			if (put(out, outlen, &o, p[i]) < 0)
				return -1;
			continue;
		}
		i++;
		if (p[i] == '%' || p[i] == '_' || p[i] == '-') {
			const char *rep = p[i] == '%' ? "%" : p[i] == '_' ? " " : "%20";
			for (; *rep; rep++)
				if (put(out, outlen, &o, *rep) < 0)
					return -1;
			continue;
		}
		i++;   /* past '{' */
		char letter = p[i];
		int upper = letter >= 'A' && letter <= 'Z';
		i++;
		unsigned keep = 0;
		while (p[i] >= '0' && p[i] <= '9') {
			keep = keep * 10 + (unsigned)(p[i] - '0');
			if (keep > 1000)
				keep = 1000;
			i++;
		}
		int rev = 0;
		if ((p[i] | 0x20) == 'r') {
			rev = 1;
			i++;
		}
		char delims[8] = "";
		size_t nd = 0;
		while (is_delim(p[i]) && nd + 1 < sizeof(delims))
			delims[nd++] = p[i++];
		while (is_delim(p[i]))
			i++;
		delims[nd] = '\0';
		if (nd == 0)
			delims[0] = '.', delims[1] = '\0';
		/* i is at '}' */
		char val[SPF_MACRO_OUT];
		macro_value(c, (char)(letter | 0x20), domain, val, sizeof(val));
		const char *parts[SPF_MACRO_PARTS];
		size_t plen[SPF_MACRO_PARTS], np = 0;
		for (char *s = val;;) {
			size_t l = strcspn(s, delims);
			if (np < SPF_MACRO_PARTS) {
				parts[np] = s;
				plen[np++] = l;
			}
			if (s[l] == '\0')
				break;
			s += l + 1;
		}
		size_t first = 0;
		if (rev) {
			for (size_t a = 0, b = np - 1; a < b; a++, b--) {
				const char *tp = parts[a];
				parts[a] = parts[b];
				parts[b] = tp;
				size_t tl = plen[a];
				plen[a] = plen[b];
				plen[b] = tl;
			}
		}
		if (keep > 0 && keep < np)
			first = np - keep;
		for (size_t k = first; k < np; k++) {
			if (k > first && put(out, outlen, &o, '.') < 0)
				return -1;
			for (size_t x = 0; x < plen[k]; x++) {
				unsigned char ch = (unsigned char)parts[k][x];
				int unreserved = is_alpha((char)ch) || (ch >= '0' && ch <= '9') ||
						 strchr("-._~", ch);
				if (upper && !unreserved) {
					char hex[4];
					snprintf(hex, sizeof(hex), "%%%02X", ch);
					for (int h = 0; h < 3; h++)
						if (put(out, outlen, &o, hex[h]) < 0)
							return -1;
				} else if (put(out, outlen, &o, (char)ch) < 0) {
					return -1;
				}
			}
		}
	}
	out[o] = '\0';
	/* longer than a domain name: drop labels from the left (7.3) */
	char *s = out;
	while (strlen(s) > AUTHDNS_NAME_MAX) {
		char *dot = strchr(s, '.');
		if (dot == NULL)
			return -1;
		s = dot + 1;
	}
	if (s != out)
		memmove(out, s, strlen(s) + 1);
	for (size_t l = strlen(out); l > 0 && out[l - 1] == '.'; l--)   /* a trailing dot */
		out[l - 1] = '\0';
	return 0;
}

/* Does ip fall in the prefix addr/bits? */
static int ip_in(const unsigned char *ip, const unsigned char *net, int bits)
{
	int full = bits / 8, rest = bits % 8;
	if (memcmp(ip, net, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (ip[full] & mask) == (net[full] & mask);
}

/* Do any of the addresses match the client within the prefix lengths? */
static int addrs_match(const struct spf_ctx *c, const struct authdns_addrs *a, int cidr4,
		       int cidr6)
{
	for (unsigned i = 0; i < a->n; i++)
		if (a->family[i] == c->ip->family &&
		    ip_in(c->ip->a, a->addr[i], c->ip->family == 4 ? cidr4 : cidr6))
			return 1;
	return 0;
}

/* Count a DNS-querying term; -1 over the limit. */
static int count_mech(struct spf_ctx *c)
{
	if (++c->dns_mechs > SPF_DNS_MECH_MAX) {
		c->why = "more than 10 DNS-querying terms (RFC 7208 4.6.4)";
		return -1;
	}
	return 0;
}

/* Count a lookup that found nothing; -1 over the limit. */
static int count_void(struct spf_ctx *c)
{
	if (++c->voids > SPF_VOID_MAX) {
		c->why = "more than 2 lookups found nothing (RFC 7208 4.6.4)";
		return -1;
	}
	return 0;
}

static enum spf_result check_host(struct spf_ctx *c, const char *domain, int depth);

/* Is the mechanism a match? 1 yes, 0 no, or -(SPF result) to end the evaluation with. */
static int mech_match(struct spf_ctx *c, const struct term *t, const char *domain, int depth)
{
	char target[SPF_MACRO_OUT];
	if (t->arg != NULL && macro_expand(c, t->arg, t->arg_len, domain, target, sizeof(target)) < 0) {
		c->why = "a macro expands to an invalid name";
		return -SPF_PERMERROR;
	}
	const char *name = t->arg ? target : domain;
	switch (t->kind) {
	case T_ALL:
		return 1;
	case T_IP4:
		return c->ip->family == 4 && ip_in(c->ip->a, t->ip, t->cidr4);
	case T_IP6:
		return c->ip->family == 6 && ip_in(c->ip->a, t->ip, t->cidr6);
	case T_PTR:
		return count_mech(c) < 0 ? -SPF_PERMERROR : 0;
	case T_INCLUDE: {
		if (count_mech(c) < 0)
			return -SPF_PERMERROR;
		enum spf_result r = check_host(c, name, depth + 1);
		if (r == SPF_PASS)
			return 1;
		if (r == SPF_TEMPERROR)
			return -SPF_TEMPERROR;
		if (r == SPF_PERMERROR || r == SPF_NONE) {
			if (r == SPF_NONE)
				c->why = "an included domain has no SPF record";
			return -SPF_PERMERROR;
		}
		return 0;
	}
	case T_A:
	case T_EXISTS: {
		if (count_mech(c) < 0)
			return -SPF_PERMERROR;
		struct authdns_addrs a;
		int fam = t->kind == T_EXISTS ? 4 : c->ip->family;
		int r = c->dns->addrs(c->dns->ctx, name, fam, &a);
		if (r == AUTHDNS_TEMP) {
			c->why = "a DNS lookup failed temporarily";
			return -SPF_TEMPERROR;
		}
		if (r == AUTHDNS_NONE || a.n == 0)
			return count_void(c) < 0 ? -SPF_PERMERROR : 0;
		return t->kind == T_EXISTS ? 1 : addrs_match(c, &a, t->cidr4, t->cidr6);
	}
	case T_MX: {
		if (count_mech(c) < 0)
			return -SPF_PERMERROR;
		struct authdns_mx *mx = malloc(sizeof(*mx));
		if (mx == NULL) {
			c->why = "out of memory";
			return -SPF_TEMPERROR;
		}
		int r = c->dns->mx(c->dns->ctx, name, mx), res = 0;
		if (r == AUTHDNS_TEMP) {
			c->why = "a DNS lookup failed temporarily";
			res = -SPF_TEMPERROR;
		} else if (r == AUTHDNS_NONE || mx->n == 0) {
			res = count_void(c) < 0 ? -SPF_PERMERROR : 0;
		} else if (mx->n > AUTHDNS_MX_MAX) {
			c->why = "more than 10 MX names (RFC 7208 4.6.4)";
			res = -SPF_PERMERROR;
		}
		for (unsigned i = 0; res == 0 && r == AUTHDNS_OK && i < mx->n; i++) {
			struct authdns_addrs a;
			int ar = c->dns->addrs(c->dns->ctx, mx->name[i], c->ip->family, &a);
			if (ar == AUTHDNS_TEMP) {
				c->why = "a DNS lookup failed temporarily";
				res = -SPF_TEMPERROR;
			} else if (ar == AUTHDNS_OK && addrs_match(c, &a, t->cidr4, t->cidr6)) {
				res = 1;
			}
		}
		free(mx);
		return res;
	}
	default:
		return 0;
	}
}

/* The result a qualifier gives. */
static enum spf_result qual_result(char q)
{
	return q == '-' ? SPF_FAIL : q == '~' ? SPF_SOFTFAIL : q == '?' ? SPF_NEUTRAL : SPF_PASS;
}

/* Is domain usable as an SPF domain (4.3)? */
static int domain_ok(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > AUTHDNS_NAME_MAX || strchr(d, '.') == NULL)
		return 0;
	for (const char *p = d; *p;) {
		size_t l = strcspn(p, ".");
		if (l == 0 || l > 63)
			return 0;
		p += l + (p[l] == '.');
	}
	return 1;
}

/* check_host() of RFC 7208 4. */
static enum spf_result check_host(struct spf_ctx *c, const char *domain, int depth)
{
	if (depth > SPF_DEPTH_MAX) {
		c->why = "include/redirect nested too deep";
		return SPF_PERMERROR;
	}
	if (!domain_ok(domain)) {
		c->why = "the domain is not a valid name";
		return SPF_NONE;
	}
	struct authdns_txt *txt = malloc(sizeof(*txt));
	struct term *terms = malloc(SPF_TERMS_MAX * sizeof(*terms));
	char dom[AUTHDNS_NAME_MAX + 1];
	snprintf(dom, sizeof(dom), "%s", domain);
	enum spf_result res = SPF_NEUTRAL;
	if (txt == NULL || terms == NULL) {
		c->why = "out of memory";
		res = SPF_TEMPERROR;
		goto out;
	}
	int r = c->dns->txt(c->dns->ctx, dom, txt);
	if (r == AUTHDNS_TEMP) {
		c->why = "the SPF record lookup failed temporarily";
		res = SPF_TEMPERROR;
		goto out;
	}
	int found = -1;
	for (unsigned i = 0; r == AUTHDNS_OK && i < txt->n; i++) {
		const char *t = txt->rec[i];
		if (txt->len[i] >= 6 && strncasecmp(t, "v=spf1", 6) == 0 &&
		    (txt->len[i] == 6 || t[6] == ' ')) {
			if (found >= 0) {
				c->why = "the domain publishes several SPF records";
				res = SPF_PERMERROR;
				goto out;
			}
			found = (int)i;
		}
	}
	if (found < 0) {
		c->why = "no SPF record";
		res = SPF_NONE;
		goto out;
	}
	if (memchr(txt->rec[found], '\0', txt->len[found]) != NULL) {
		c->why = "the SPF record contains a NUL";
		res = SPF_PERMERROR;
		goto out;
	}
	int nt = record_parse(txt->rec[found], txt->len[found], terms, &c->why);
	if (nt < 0) {
		res = SPF_PERMERROR;
		goto out;
	}
	const struct term *redirect = NULL;
	int has_all = 0;
	for (int i = 0; i < nt; i++) {
		if (terms[i].kind == T_REDIRECT)
			redirect = &terms[i];
		has_all |= terms[i].kind == T_ALL;
	}
	for (int i = 0; i < nt; i++) {
		const struct term *t = &terms[i];
		if (t->kind == T_REDIRECT || t->kind == T_EXP || t->kind == T_OTHER_MOD)
			continue;
		int m = mech_match(c, t, dom, depth);
		if (m < 0) {
			res = (enum spf_result)-m;
			goto out;
		}
		if (m == 1) {
			res = qual_result(t->qual);
			goto out;
		}
	}
	if (redirect != NULL && !has_all) {
		char target[SPF_MACRO_OUT];
		if (count_mech(c) < 0) {
			res = SPF_PERMERROR;
			goto out;
		}
		if (macro_expand(c, redirect->arg, redirect->arg_len, dom, target,
				 sizeof(target)) < 0) {
			c->why = "redirect= expands to an invalid name";
			res = SPF_PERMERROR;
			goto out;
		}
		res = check_host(c, target, depth + 1);
		if (res == SPF_NONE) {
			c->why = "the redirect= domain has no SPF record";
			res = SPF_PERMERROR;
		}
		goto out;
	}
	c->why = "no mechanism matched";
	res = SPF_NEUTRAL;
out:
	free(txt);
	free(terms);
	return res;
}

/* Check the client against the sender's SPF policy. */
enum spf_result spf_check(const struct authdns *dns, const struct spf_ip *ip, const char *sender,
			  const char *helo, const char **why_r)
{
	struct spf_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*why_r = "out of memory";
		return SPF_TEMPERROR;
	}
	c->dns = dns;
	c->ip = ip;
	c->why = "";
	snprintf(c->helo, sizeof(c->helo), "%s", helo ? helo : "");
	const char *at = sender ? strrchr(sender, '@') : NULL;
	if (at == NULL || at == sender || strlen(at + 1) > AUTHDNS_NAME_MAX ||
	    (size_t)(at - sender) > SPF_LOCAL_MAX) {
		/* the null sender (or a local part we cannot use): postmaster@helo (2.4, 4.3) */
		snprintf(c->local, sizeof(c->local), "postmaster");
		snprintf(c->odomain, sizeof(c->odomain), "%s", c->helo);
	} else {
		memcpy(c->local, sender, (size_t)(at - sender));
		c->local[at - sender] = '\0';
		snprintf(c->odomain, sizeof(c->odomain), "%s", at + 1);
	}
	snprintf(c->sender, sizeof(c->sender), "%s@%s", c->local, c->odomain);
	enum spf_result r = check_host(c, c->odomain, 0);
	*why_r = c->why;
	free(c);
	return r;
}
