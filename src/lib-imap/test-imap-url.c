/* test-imap-url.c - unit tests for imap-url.c: the URL forms, URLAUTH parts, EXPIRE dates and
 * access identifiers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "imap-url.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_absolute(void **state)
{
	(void)state;
	struct imap_url u;
	const char *why;
	const char *url = "IMAP://joe%40example.test;AUTH=*@Mail.Example.TEST:993/Drafts%20Box"
			  ";UIDVALIDITY=7/;UID=20/;SECTION=1.2/;PARTIAL=5.10"
			  ";EXPIRE=2026-12-06T10:00:00+01:00;URLAUTH=submit+joe%40example.test"
			  ":INTERNAL:" TOKEN;
	assert_int_equal(imap_url_parse(url, &u, &why), 0);
	assert_int_equal(u.form, IMAP_URL_ABSOLUTE);
	assert_string_equal(u.user, "joe@example.test");
	assert_string_equal(u.host, "mail.example.test");
	assert_string_equal(u.box, "Drafts Box");
	assert_true(u.have_uidvalidity);
	assert_int_equal(u.uidvalidity, 7);
	assert_int_equal(u.uid, 20);
	assert_string_equal(u.section, "1.2");
	assert_true(u.have_partial);
	assert_int_equal(u.poff, 5);
	assert_int_equal(u.plen, 10);
	assert_true(u.have_expire);
	assert_int_equal((long long)u.expire, 1796547600LL);   /* 09:00:00Z */
	assert_true(u.have_urlauth && u.have_token);
	assert_string_equal(u.access, "submit+joe@example.test");
	assert_string_equal(u.mech, "INTERNAL");
	assert_string_equal(u.token, TOKEN);
	assert_int_equal(u.rump_len, strstr(url, ":INTERNAL") - url);
}

static void test_imaptest_forms(void **state)
{
	(void)state;
	struct imap_url u;
	const char *why;
	/* lower-case keywords, a raw "@" in the access identifier, no slash before ;urlauth */
	assert_int_equal(imap_url_parse("imap://a@example.test/INBOX/;uid=1/;section=1.1;"
					"urlauth=user+a@example.test", &u, &why), 0);
	assert_string_equal(u.user, "a");
	assert_string_equal(u.host, "example.test");
	assert_string_equal(u.box, "INBOX");
	assert_string_equal(u.section, "1.1");
	assert_true(u.have_urlauth);
	assert_false(u.have_token);
	assert_string_equal(u.access, "user+a@example.test");
	assert_int_equal(u.rump_len, strlen("imap://a@example.test/INBOX/;uid=1/;section=1.1;"
					     "urlauth=user+a@example.test"));
	assert_int_equal(imap_url_parse("/inbox/;UID=3", &u, &why), 0);
	assert_int_equal(u.form, IMAP_URL_PATH);
	assert_string_equal(u.box, "INBOX");
	assert_int_equal(imap_url_parse(";UID=3/;SECTION=TEXT", &u, &why), 0);
	assert_int_equal(u.form, IMAP_URL_RELATIVE);
	assert_string_equal(u.section, "TEXT");
}

static void test_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "http://example.test/", "imap://host", "/INBOX", "/INBOX/;UID=0",
		"/INBOX/;UID=4294967296", "/../x/;UID=1", "/a%2/;UID=1", "/a%00b/;UID=1",
		"/INBOX/;UID=1;URLAUTH=", "/INBOX/;UID=1;URLAUTH=nobody",
		"/INBOX/;UID=1;URLAUTH=user+", "/INBOX/;UID=1;URLAUTH=anonymous:INTERNAL:abc",
		"/INBOX/;UID=1;URLAUTH=anonymous:INTERNAL", "/INBOX/;UID=1;EXPIRE=tomorrow",
		"/INBOX/;UID=1;EXPIRE=2026-13-01T00:00:00Z", "/INBOX/;UID=1;EXPIRE=2026-12-01T00:00:00",
		"/INBOX/;UID=1/;SECTION=", "/INBOX/;UID=1 trailing",
		"/INBOX/;UID=1;URLAUTH=anonymous:INTERNAL:" TOKEN "x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct imap_url u;
		const char *why = NULL;
		if (imap_url_parse(bad[i], &u, &why) != -1)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(why);
	}
}

static void test_access(void **state)
{
	(void)state;
	assert_true(imap_url_access_allows("anonymous", "", 0));
	assert_false(imap_url_access_allows("authuser", "", 0));
	assert_true(imap_url_access_allows("AUTHUSER", "b@x", 0));
	assert_true(imap_url_access_allows("user+a@x", "A@X", 0));
	assert_false(imap_url_access_allows("user+a@x", "b@x", 0));
	assert_false(imap_url_access_allows("user+a@x", "a@x", 1));
	assert_true(imap_url_access_allows("submit+a@x", "a@x", 1));
	assert_false(imap_url_access_allows("submit+a@x", "a@x", 0));
	assert_false(imap_url_access_allows("submit+a@x", "b@x", 1));
	assert_false(imap_url_access_valid("submit+"));
	assert_false(imap_url_access_valid("everyone"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_absolute),
		cmocka_unit_test(test_imaptest_forms),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_access),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
