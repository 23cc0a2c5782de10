/* fuzz-authrec.c - libFuzzer target for the parsers of the inbound authentication checks: the
 * DKIM-Signature tag list and key record (dkim-verify.c), SPF records with their macros and
 * lookup limits (spf.c, with a fake DNS that answers every TXT question with the input itself,
 * so include: and redirect= loop back into it), DMARC records (dmarc.c), and whole messages
 * through the DKIM verifier.
 *
 * Build: see scripts/fuzz.sh. The first input octet chooses the parser. Besides memory errors
 * it checks that an SPF evaluation never asks DNS more often than the RFC 7208 limits allow.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim-verify.h"
#include "dmarc.h"
#include "spf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fake {
	const char *rec;
	size_t len;
	unsigned queries;
};

/* Every TXT question: the input as one record. */
static int fake_txt(void *ctx, const char *name, struct authdns_txt *out)
{
	struct fake *f = ctx;
	(void)name;
	f->queries++;
	out->n = 0;
	if (f->len > AUTHDNS_TXT_LEN)
		return AUTHDNS_NONE;
	memcpy(out->rec[0], f->rec, f->len);
	out->rec[0][f->len] = '\0';
	out->len[0] = f->len;
	out->n = 1;
	return AUTHDNS_OK;
}

/* Every address question: 127.0.0.1 for names with an even length, nothing otherwise. */
static int fake_addrs(void *ctx, const char *name, int family, struct authdns_addrs *out)
{
	struct fake *f = ctx;
	f->queries++;
	out->n = 0;
	if (strlen(name) % 2)
		return AUTHDNS_NONE;
	out->family[0] = family;
	memset(out->addr[0], 0, 16);
	out->addr[0][0] = 127;
	out->addr[0][3] = 1;
	out->n = 1;
	return AUTHDNS_OK;
}

/* Every MX question: eleven names (over the limit) or one. */
static int fake_mx(void *ctx, const char *name, struct authdns_mx *out)
{
	struct fake *f = ctx;
	f->queries++;
	out->n = strlen(name) % 3 == 0 ? AUTHDNS_MX_MAX + 1 : 1;
	for (unsigned i = 0; i < out->n; i++)
		memcpy(out->name[i], "mx.example", 11);
	return AUTHDNS_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	const char *err;
	struct fake f = { p, n, 0 };
	struct authdns dns = { &f, fake_txt, fake_addrs, fake_mx };
	switch (data[0] % 5) {
	case 0: {
		struct dkim_sig *sig = malloc(sizeof(*sig));
		if (sig && dkim_sig_parse(p, n, sig, &err) == 0 && (!sig->d[0] || !sig->s[0]))
			abort();   /* a parsed signature always names its key */
		free(sig);
		break;
	}
	case 1: {
		struct dkim_pubkey *k = malloc(sizeof(*k));
		if (k && dkim_key_parse(p, n, k, &err) == 0 && k->plen == 0)
			abort();
		free(k);
		break;
	}
	case 2: {
		spf_record_check(p, n, &err);
		struct spf_ip ip = { 4, { 127, 0, 0, 1 } };
		spf_check(&dns, &ip, "user@example.org", "helo.example.org", &err);
		/* 10 terms + 1 record each, MX: 11 per mx term; far below this in any case */
		if (f.queries > 1 + SPF_DNS_MECH_MAX * (2 + AUTHDNS_MX_MAX))
			abort();
		break;
	}
	case 3: {
		struct dmarc_record r;
		dmarc_record_parse(p, n, &r, &err);
		break;
	}
	default: {
		struct dkim_verifier *v = dkim_verifier_new();
		if (v == NULL)
			return 0;
		size_t cut = n / 2;
		dkim_verifier_feed(v, p, cut);
		dkim_verifier_feed(v, p + cut, n - cut);
		struct dkim_sig_result res[DKIM_VERIFY_SIGS_MAX + 1];
		size_t got = dkim_verifier_finish(v, &dns, 0, res, DKIM_VERIFY_SIGS_MAX + 1);
		if (got > DKIM_VERIFY_SIGS_MAX + 1)
			abort();
		dkim_verifier_free(&v);
		break;
	}
	}
	return 0;
}
