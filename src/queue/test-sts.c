/* test-sts.c - MTA-STS TXT records, policies and MX patterns (RFC 8461). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mta-sts.h"

/* RFC 8461 3.1: v=STSv1 first, an id of 1-32 letters and digits, extensions ignored. */
static void test_txt(void **state)
{
	(void)state;
	char id[STS_ID_MAX + 1];
	assert_int_equal(sts_txt_parse("v=STSv1; id=20160831085700Z;", id), 1);
	assert_string_equal(id, "20160831085700Z");
	assert_int_equal(sts_txt_parse("v = STSv1 ;id=abc ; ext=x", id), 1);
	assert_string_equal(id, "abc");
	assert_int_equal(sts_txt_parse("v=STSv1", id), 0);                 /* no id */
	assert_int_equal(sts_txt_parse("v=STSv2; id=1", id), 0);
	assert_int_equal(sts_txt_parse("id=1; v=STSv1", id), 0);           /* version not first */
	assert_int_equal(sts_txt_parse("v=STSv1; id=a-b", id), 0);         /* not alnum */
	assert_int_equal(sts_txt_parse("v=STSv1; id=123456789012345678901234567890123", id), 0);
	assert_int_equal(sts_txt_parse("v=STSv1; id=", id), 0);
	assert_int_equal(sts_txt_parse("v=STSv1 id=1", id), 0);            /* no separator */
}

/* RFC 8461 3.2: the example policy, line ends LF or CRLF, unknown keys ignored. */
static void test_policy(void **state)
{
	(void)state;
	struct sts_policy p;
	char why[200];
	const char *ex = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
			 "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
	assert_int_equal(sts_policy_parse(ex, strlen(ex), &p, why, sizeof(why)), 0);
	assert_int_equal(p.mode, STS_ENFORCE);
	assert_int_equal(p.nmx, 3);
	assert_int_equal(p.max_age, 604800);
	assert_string_equal(p.mx[1], "*.example.net");
	const char *lf = "version: STSv1\nmode: testing\nmx: MX.Example.COM.\nfuture: yes\n"
			 "max_age: 99999999999\n";
	assert_int_equal(sts_policy_parse(lf, strlen(lf), &p, why, sizeof(why)), -1);  /* 11 digits */
	lf = "version: STSv1\nmode: testing\nmx: MX.Example.COM.\nfuture: yes\nmax_age: 999999999";
	assert_int_equal(sts_policy_parse(lf, strlen(lf), &p, why, sizeof(why)), 0);
	assert_int_equal(p.mode, STS_TESTING);
	assert_string_equal(p.mx[0], "mx.example.com");
	assert_int_equal(p.max_age, STS_MAX_AGE_MAX);   /* capped at a year */
	const char *none = "version: STSv1\nmode: none\nmax_age: 0\n";
	assert_int_equal(sts_policy_parse(none, strlen(none), &p, why, sizeof(why)), 0);
	assert_int_equal(p.mode, STS_NONE);
	static const char *const bad[] = {
		"mode: enforce\nmx: a.example\nmax_age: 1\n",                     /* no version */
		"version: STSv1\nmx: a.example\nmax_age: 1\n",                    /* no mode */
		"version: STSv1\nmode: enforce\nmx: a.example\n",                 /* no max_age */
		"version: STSv1\nmode: enforce\nmax_age: 1\n",                    /* no mx */
		"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",      /* unknown mode */
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
		"version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n",      /* no colon */
		"version: STSv1\nmode: enforce\nmx: a.exa\x01mple\nmax_age: 1\n", /* control char */
		"version: STSv1\nmode: enforce\nmx: a.*.example\nmx: ..\nmax_age: 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sts_policy_parse(bad[i], strlen(bad[i]), &p, why, sizeof(why)), -1);
}

/* RFC 8461 4.1: "*.example.com" matches one more label only; case and a final dot ignored. */
static void test_mx_match(void **state)
{
	(void)state;
	struct sts_policy p;
	char why[200], list[100];
	const char *pol = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
			  "max_age: 86400\n";
	assert_int_equal(sts_policy_parse(pol, strlen(pol), &p, why, sizeof(why)), 0);
	assert_int_equal(sts_mx_match(&p, "mail.example.com"), 1);
	assert_int_equal(sts_mx_match(&p, "MAIL.Example.com."), 1);
	assert_int_equal(sts_mx_match(&p, "mx1.example.net"), 1);
	assert_int_equal(sts_mx_match(&p, "example.net"), 0);
	assert_int_equal(sts_mx_match(&p, "a.b.example.net"), 0);
	assert_int_equal(sts_mx_match(&p, "evil-example.net"), 0);
	assert_int_equal(sts_mx_match(&p, "mail.example.com.evil"), 0);
	assert_int_equal(sts_mx_match(&p, ".example.net"), 0);
	sts_mx_list(&p, list, sizeof(list));
	assert_string_equal(list, "mail.example.com, *.example.net");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_mx_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
