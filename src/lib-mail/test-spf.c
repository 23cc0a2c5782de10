/* test-spf.c - SPF macro expansion (the RFC 7208 7.4 examples), record syntax, and DMARC
 * record parsing and alignment, with a fake DNS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "dkim-verify.h"
#include "dmarc.h"
#include "spf.h"

struct fake {
	char record[512];
	char asked[1024];    /* the last address question */
};

/* TXT: the record for any name. */
static int fake_txt(void *ctx, const char *name, struct authdns_txt *out)
{
	struct fake *f = ctx;
	(void)name;
	snprintf(out->rec[0], sizeof(out->rec[0]), "%s", f->record);
	out->len[0] = strlen(f->record);
	out->n = 1;
	return AUTHDNS_OK;
}

/* A/AAAA: remember the question, answer nothing. */
static int fake_addrs(void *ctx, const char *name, int family, struct authdns_addrs *out)
{
	struct fake *f = ctx;
	(void)family;
	snprintf(f->asked, sizeof(f->asked), "%s", name);
	out->n = 0;
	return AUTHDNS_NONE;
}

/* MX: none. */
static int fake_mx(void *ctx, const char *name, struct authdns_mx *out)
{
	(void)ctx;
	(void)name;
	out->n = 0;
	return AUTHDNS_NONE;
}

/* Expand spec (through exists:) for the RFC's example sender and client. */
static const char *expand(struct fake *f, const char *spec, const char *ip)
{
	struct authdns dns = { f, fake_txt, fake_addrs, fake_mx };
	struct spf_ip a;
	memset(&a, 0, sizeof(a));
	a.family = strchr(ip, ':') ? 6 : 4;
	assert_int_equal(inet_pton(a.family == 4 ? AF_INET : AF_INET6, ip, a.a), 1);
	snprintf(f->record, sizeof(f->record), "v=spf1 exists:%s -all", spec);
	f->asked[0] = '\0';
	const char *why;
	enum spf_result r = spf_check(&dns, &a, "strong-bad@email.example.com", "helo.example",
				      &why);
	assert_int_equal(r, SPF_FAIL);
	return f->asked;
}

/* RFC 7208 7.4. */
static void test_macros(void **state)
{
	(void)state;
	struct fake f;
	static const char *const cases[][2] = {
		{ "%{s}", "strong-bad@email.example.com" },
		{ "%{o}", "email.example.com" },
		{ "%{d}", "email.example.com" },
		{ "%{d4}", "email.example.com" },
		{ "%{d3}", "email.example.com" },
		{ "%{d2}", "example.com" },
		{ "%{d1}", "com" },
		{ "%{dr}", "com.example.email" },
		{ "%{d2r}", "example.email" },
		{ "%{l}", "strong-bad" },
		{ "%{l-}", "strong.bad" },
		{ "%{lr}", "strong-bad" },
		{ "%{lr-}", "bad.strong" },
		{ "%{l1r-}", "strong" },
		{ "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com" },
		{ "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com" },
		{ "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
		  "bad.strong.lp.3.2.0.192.in-addr._spf.example.com" },
		{ "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(expand(&f, cases[i][0], "192.0.2.3"), cases[i][1]);
	assert_string_equal(expand(&f, "%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01"),
			    "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6."
			    "_spf.example.com");
}

/* Record syntax: what is a permerror. */
static void test_syntax(void **state)
{
	(void)state;
	const char *err;
	static const char *const good[] = {
		"v=spf1", "v=spf1 -all", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 a mx a:x.example/24//64 mx//64 include:_spf.example ?all",
		"v=spf1 redirect=_spf.example", "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 unknown-mod=foo -all", "V=SPF1 IP4:192.0.2.1 -ALL",
	};
	static const char *const bad[] = {
		"v=spf1 ip4:300.1.1.1", "v=spf1 ip4:1.2.3.4/33", "v=spf1 foo", "v=spf1 all:x",
		"v=spf1 include", "v=spf1 a:", "v=spf1 exists:%{z}", "v=spf1 redirect=a redirect=b",
		"v=spf1 a/", "v=spf1 mx//129", "v=spf1 include:%", "v=spf10", "spf1 -all",
		"v=spf1 exists:%{c}",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(spf_record_check(good[i], strlen(good[i]), &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(spf_record_check(bad[i], strlen(bad[i]), &err), -1);
}

/* A record that includes itself ends in a permerror at the lookup limit. */
static void test_include_loop(void **state)
{
	(void)state;
	struct fake f;
	struct authdns dns = { &f, fake_txt, fake_addrs, fake_mx };
	snprintf(f.record, sizeof(f.record), "v=spf1 include:%%{d} -all");
	struct spf_ip a = { 4, { 192, 0, 2, 3 } };
	const char *why;
	assert_int_equal(spf_check(&dns, &a, "x@loop.example", "h", &why), SPF_PERMERROR);
	/* three lookups that find nothing: the void limit */
	snprintf(f.record, sizeof(f.record), "v=spf1 a:a.example a:b.example a:c.example +all");
	assert_int_equal(spf_check(&dns, &a, "x@void.example", "h", &why), SPF_PERMERROR);
	snprintf(f.record, sizeof(f.record), "v=spf1 a:a.example a:b.example +all");
	assert_int_equal(spf_check(&dns, &a, "x@void.example", "h", &why), SPF_PASS);
}

/* DMARC records and alignment. */
static void test_dmarc(void **state)
{
	(void)state;
	struct dmarc_record r;
	const char *err;
	const char *rec = "v=DMARC1; p=reject; sp=quarantine; pct=20; adkim=s; aspf=r";
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), 0);
	assert_int_equal(r.p, DMARC_P_REJECT);
	assert_int_equal(r.sp, DMARC_P_QUARANTINE);
	assert_int_equal(r.pct, 20);
	assert_true(r.adkim_strict);
	assert_false(r.aspf_strict);
	rec = "p=reject; v=DMARC1";
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), -1);
	rec = "v=DMARC1; rua=mailto:x@y";   /* no p= but rua=: p=none (RFC 7489 6.6.3) */
	assert_int_equal(dmarc_record_parse(rec, strlen(rec), &r, &err), 0);
	assert_int_equal(r.p, DMARC_P_NONE);
	char org[256];
	assert_int_equal(dmarc_org_domain("a.b.example.co.uk", org, sizeof(org)), 0);
	assert_string_equal(org, "example.co.uk");
	assert_true(dmarc_aligned("mail.example.com", "example.com", 0));
	assert_false(dmarc_aligned("mail.example.com", "example.com", 1));
	assert_false(dmarc_aligned("example.co.uk", "other.co.uk", 0));
}

/* DKIM-Signature tag lists. */
static void test_dkim_sig(void **state)
{
	(void)state;
	struct dkim_sig s;
	const char *err;
	const char *ok = "v=1; a=rsa-sha256; c=relaxed/simple; d=Example.COM; s=sel;\r\n\t"
			 "h=From : To; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\t"
			 "b=dGVz\r\n\t dA==; l=10";
	assert_int_equal(dkim_sig_parse(ok, strlen(ok), &s, &err), 0);
	assert_string_equal(s.d, "example.com");
	assert_string_equal(s.h, "From:To");
	assert_int_equal(s.blen, 4);
	assert_int_equal(s.l, 10);
	assert_true(s.hdr_relaxed);
	assert_false(s.body_relaxed);
	static const char *const bad[] = {
		"v=1; a=rsa-sha1; d=x; s=y; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AA==",
		"v=1; a=rsa-sha256; d=x; s=y; h=to; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AA==",
		"v=1; a=rsa-sha256; d=x; s=y; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=!!",
		"v=1; a=rsa-sha256; d=x; d=z; s=y; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AA==",
		"v=1; a=rsa-sha256; d=x; s=y; h=from; bh=AA==; b=AA==",
		"v=1; a=rsa-sha256; d=x.example; s=y; i=@evil.example; h=from; "
		"bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AA==",
		"a=rsa-sha256; d=x; s=y; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AA==",
		"v=1; a=rsa-sha256; d=x; s=y; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; "
		"b=AA==; l=99999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dkim_sig_parse(bad[i], strlen(bad[i]), &s, &err), -1);
}

/* Run all tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_macros),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_include_loop),
		cmocka_unit_test(test_dmarc),
		cmocka_unit_test(test_dkim_sig),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
