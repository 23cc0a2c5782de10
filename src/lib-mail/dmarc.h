/* dmarc.h - DMARC (RFC 7489): the policy record at _dmarc.<From domain> (or its organisational
 * domain, found with the Public Suffix List through libpsl), identifier alignment of the SPF
 * and DKIM results, and the policy to apply (p=, sp=, pct=).
 */
#ifndef POSTINO_DMARC_H
#define POSTINO_DMARC_H

#include <stddef.h>

#include "authdns.h"

enum dmarc_policy { DMARC_P_NONE, DMARC_P_QUARANTINE, DMARC_P_REJECT };
enum dmarc_result { DMARC_R_NONE, DMARC_R_PASS, DMARC_R_FAIL, DMARC_R_TEMPERROR,
		    DMARC_R_PERMERROR };

struct dmarc_record {
	enum dmarc_policy p, sp;
	int has_sp;
	unsigned pct;                 /* 0..100 */
	int adkim_strict, aspf_strict;
};

/* One authenticated identifier: an SPF pass for a MAIL FROM/HELO domain, or a DKIM pass for d=. */
struct dmarc_ident {
	const char *domain;
	int pass;
};

struct dmarc_verdict {
	enum dmarc_result result;
	enum dmarc_policy policy;     /* the policy the domain asks for (p= or sp=) */
	enum dmarc_policy apply;      /* after pct= sampling: what to do with a failure */
	int spf_aligned, dkim_aligned;
	char policy_domain[AUTHDNS_NAME_MAX + 1];   /* where the record was found */
	const char *why;
};

/* The RFC 8601 name of a result, and a policy's name. */
const char *dmarc_result_name(enum dmarc_result r);
const char *dmarc_policy_name(enum dmarc_policy p);

/* Parse a TXT record. 0 ok, -1 not a valid DMARC record (*err_r). */
int dmarc_record_parse(const char *txt, size_t n, struct dmarc_record *out, const char **err_r);

/* The organisational domain of domain (lower-case, RFC 7489 3.2) into out. 0 ok, -1 none. */
int dmarc_org_domain(const char *domain, char *out, size_t outlen);

/* Are a and b aligned (strict: equal; relaxed: same organisational domain)? */
int dmarc_aligned(const char *a, const char *b, int strict);

/* Evaluate the From domain: spf is the SPF identity (its domain and whether it passed), dkim the
 * d= of each DKIM signature and whether it passed. sample is a number 0..99 drawn by the
 * caller for pct=. Fills *v. */
void dmarc_check(const struct authdns *dns, const char *from_domain, const struct dmarc_ident *spf,
		 const struct dmarc_ident *dkim, size_t ndkim, unsigned sample,
		 struct dmarc_verdict *v);

#endif
