/* dmarc.c - DMARC policy discovery, alignment and policy selection (RFC 7489 3, 6). */
#include "dmarc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpsl.h>

static const psl_ctx_t *psl;
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

/* Load the Public Suffix List once: the system's copy (Debian publicsuffix), else libpsl's. */
static void psl_load(void)
{
	psl = psl_latest(NULL);
	if (psl == NULL)
		psl = psl_builtin();
}

/* Result names. */
const char *dmarc_result_name(enum dmarc_result r)
{
	static const char *const n[] = { "none", "pass", "fail", "temperror", "permerror" };
	return (unsigned)r < sizeof(n) / sizeof(n[0]) ? n[r] : "permerror";
}

/* Policy names. */
const char *dmarc_policy_name(enum dmarc_policy p)
{
	return p == DMARC_P_REJECT ? "reject" : p == DMARC_P_QUARANTINE ? "quarantine" : "none";
}

/* A policy value; -1 if unknown. */
static int policy_value(const char *v, size_t n)
{
	if (n == 4 && strncasecmp(v, "none", 4) == 0)
		return DMARC_P_NONE;
	if (n == 10 && strncasecmp(v, "quarantine", 10) == 0)
		return DMARC_P_QUARANTINE;
	if (n == 6 && strncasecmp(v, "reject", 6) == 0)
		return DMARC_P_REJECT;
	return -1;
}

/* Parse a DMARC record. */
int dmarc_record_parse(const char *txt, size_t n, struct dmarc_record *out, const char **err_r)
{
	memset(out, 0, sizeof(*out));
	out->pct = 100;
	int first = 1, have_p = 0, have_rua = 0;
	size_t i = 0;
	while (i < n) {
		size_t s = i;
		while (i < n && txt[i] != ';')
			i++;
		size_t e = i++;
		while (s < e && (txt[s] == ' ' || txt[s] == '\t'))
			s++;
		while (e > s && (txt[e - 1] == ' ' || txt[e - 1] == '\t'))
			e--;
		if (s == e)
			continue;
		const char *eq = memchr(txt + s, '=', e - s);
		if (eq == NULL) {
			*err_r = "a DMARC tag has no value";
			return -1;
		}
		size_t nl = (size_t)(eq - (txt + s));
		while (nl > 0 && (txt[s + nl - 1] == ' ' || txt[s + nl - 1] == '\t'))
			nl--;
		const char *v = eq + 1;
		while (v < txt + e && (*v == ' ' || *v == '\t'))
			v++;
		size_t vl = (size_t)(txt + e - v);
		const char *name = txt + s;
		if (first) {
			if (!(nl == 1 && name[0] == 'v' && vl == 6 && memcmp(v, "DMARC1", 6) == 0)) {
				*err_r = "not a DMARC record (v=DMARC1 first)";
				return -1;
			}
			first = 0;
			continue;
		}
		int pv;
		if (nl == 1 && name[0] == 'p') {
			if ((pv = policy_value(v, vl)) >= 0) {
				out->p = (enum dmarc_policy)pv;
				have_p = 1;
			}
		} else if (nl == 2 && strncmp(name, "sp", 2) == 0) {
			if ((pv = policy_value(v, vl)) >= 0) {
				out->sp = (enum dmarc_policy)pv;
				out->has_sp = 1;
			}
		} else if (nl == 3 && strncmp(name, "pct", 3) == 0) {
			unsigned x = 0;
			size_t k;
			for (k = 0; k < vl && k < 4 && v[k] >= '0' && v[k] <= '9'; k++)
				x = x * 10 + (unsigned)(v[k] - '0');
			if (k == vl && vl > 0 && x <= 100)
				out->pct = x;
		} else if (nl == 5 && strncmp(name, "adkim", 5) == 0) {
			out->adkim_strict = vl == 1 && v[0] == 's';
		} else if (nl == 4 && strncmp(name, "aspf", 4) == 0) {
			out->aspf_strict = vl == 1 && v[0] == 's';
		} else if (nl == 3 && strncmp(name, "rua", 3) == 0) {
			have_rua = 1;
		}
	}
	if (first) {
		*err_r = "not a DMARC record (v=DMARC1 first)";
		return -1;
	}
	if (!have_p && !have_rua) {   /* RFC 7489 6.6.3: a record with rua= but no valid p= is p=none */
		*err_r = "the DMARC record has no valid p=";
		return -1;
	}
	if (!out->has_sp)
		out->sp = out->p;
	return 0;
}

/* The organisational domain. */
int dmarc_org_domain(const char *domain, char *out, size_t outlen)
{
	pthread_once(&psl_once, psl_load);
	char low[AUTHDNS_NAME_MAX + 1];
	size_t n = strlen(domain);
	if (n == 0 || n >= sizeof(low))
		return -1;
	for (size_t i = 0; i <= n; i++)
		low[i] = domain[i] >= 'A' && domain[i] <= 'Z' ? (char)(domain[i] + 32) : domain[i];
	if (low[n - 1] == '.')
		low[n - 1] = '\0';
	const char *org = psl ? psl_registrable_domain(psl, low) : NULL;
	if (org == NULL)
		org = low;   /* a public suffix itself, or no list: the domain stands for itself */
	if (strlen(org) >= outlen)
		return -1;
	snprintf(out, outlen, "%s", org);
	return 0;
}

/* Alignment of two domains. */
int dmarc_aligned(const char *a, const char *b, int strict)
{
	if (a == NULL || b == NULL || !a[0] || !b[0])
		return 0;
	if (strcasecmp(a, b) == 0)
		return 1;
	if (strict)
		return 0;
	char oa[AUTHDNS_NAME_MAX + 1], ob[AUTHDNS_NAME_MAX + 1];
	return dmarc_org_domain(a, oa, sizeof(oa)) == 0 && dmarc_org_domain(b, ob, sizeof(ob)) == 0 &&
	       strcmp(oa, ob) == 0;
}

/* Look up the record at _dmarc.domain. 1 found, 0 none, -1 temporary failure. */
static int fetch(const struct authdns *dns, const char *domain, struct authdns_txt *txt,
		 struct dmarc_record *rec)
{
	char name[AUTHDNS_NAME_MAX + 16];
	if ((size_t)snprintf(name, sizeof(name), "_dmarc.%s", domain) > AUTHDNS_NAME_MAX)
		return 0;
	int r = dns->txt(dns->ctx, name, txt);
	if (r == AUTHDNS_TEMP)
		return -1;
	int found = 0;
	const char *err;
	struct dmarc_record tmp;
	for (unsigned i = 0; r == AUTHDNS_OK && i < txt->n; i++) {
		if (txt->len[i] < 8 || strncmp(txt->rec[i], "v=DMARC1", 8) != 0)
			continue;
		if (dmarc_record_parse(txt->rec[i], txt->len[i], &tmp, &err) < 0)
			continue;
		if (found++ == 0)
			*rec = tmp;
	}
	return found == 1;   /* several records: no policy (RFC 7489 6.6.3) */
}

/* Evaluate DMARC for the From domain. */
void dmarc_check(const struct authdns *dns, const char *from_domain, const struct dmarc_ident *spf,
		 const struct dmarc_ident *dkim, size_t ndkim, unsigned sample,
		 struct dmarc_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->why = "";
	char org[AUTHDNS_NAME_MAX + 1];
	if (dmarc_org_domain(from_domain, org, sizeof(org)) < 0) {
		v->result = DMARC_R_NONE;
		v->why = "the From: domain is not a valid name";
		return;
	}
	struct authdns_txt *txt = malloc(sizeof(*txt));
	if (txt == NULL) {
		v->result = DMARC_R_TEMPERROR;
		v->why = "out of memory";
		return;
	}
	struct dmarc_record rec;
	int sub = 0;
	int r = fetch(dns, from_domain, txt, &rec);
	snprintf(v->policy_domain, sizeof(v->policy_domain), "%s", from_domain);
	if (r == 0 && strcasecmp(org, from_domain) != 0) {
		r = fetch(dns, org, txt, &rec);
		sub = 1;
		snprintf(v->policy_domain, sizeof(v->policy_domain), "%s", org);
	}
	free(txt);
	if (r < 0) {
		v->result = DMARC_R_TEMPERROR;
		v->why = "the DMARC record lookup failed temporarily";
		return;
	}
	if (r == 0) {
		v->result = DMARC_R_NONE;
		v->why = "no DMARC record";
		return;
	}
	v->policy = sub ? rec.sp : rec.p;
	v->spf_aligned = spf && spf->pass && dmarc_aligned(spf->domain, from_domain, rec.aspf_strict);
	for (size_t i = 0; i < ndkim; i++)
		v->dkim_aligned |= dkim[i].pass &&
				   dmarc_aligned(dkim[i].domain, from_domain, rec.adkim_strict);
	v->result = v->spf_aligned || v->dkim_aligned ? DMARC_R_PASS : DMARC_R_FAIL;
	v->apply = v->policy;
	if (sample >= rec.pct && v->apply > DMARC_P_NONE)   /* not sampled: one step milder (6.6.4) */
		v->apply = (enum dmarc_policy)(v->apply - 1);
	if (v->result == DMARC_R_FAIL)
		v->why = "neither SPF nor DKIM passed aligned with the From: domain";
}
