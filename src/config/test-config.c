/* test-config.c - the postino.conf parser: values, overrides, defaults and error messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "num.h"

/* Write text to a fresh temp file and load it; returns the rc, err holds the message. */
static int load_text(struct config *cfg, const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/postino-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	config_defaults(cfg);
	err[0] = '\0';
	int rc = config_load(cfg, path, err, errlen);
	/* error messages name the file: make them comparable */
	char *p = strstr(err, path);
	if (p) {
		memmove(p + 4, p + strlen(path), strlen(p + strlen(path)) + 1);
		memcpy(p, "FILE", 4);
	}
	unlink(path);
	return rc;
}

/* Defaults apply when nothing is set. */
static void test_defaults(void **state)
{
	(void)state;
	static struct config c;
	char err[512];
	assert_int_equal(load_text(&c, "# only a comment\n\n", err, sizeof(err)), 0);
	assert_int_equal(c.l[LST_SMTP].port, 25);
	assert_int_equal(c.l[LST_SUBMISSION].port, 587);
	assert_int_equal(c.l[LST_SUBMISSIONS].port, 465);
	assert_int_equal(c.tls_hello_margin_ms, 3);
	assert_int_equal(c.l[LST_IMAPS].port, 993);
	assert_int_equal(c.l[LST_POP3S].port, 995);
	assert_true(c.l[LST_SUBMISSIONS].implicit_tls);
	assert_true(c.l[LST_SUBMISSION].submission);
	assert_false(c.l[LST_SMTP].submission);
	assert_int_equal(c.l[LST_SMTP].message_size_limit, 25 * 1024 * 1024);
	assert_int_equal(c.l[LST_SMTP].bare_lf_reject, 0);
	assert_int_equal(c.l[LST_SUBMISSION].bare_lf_reject, 1);
	assert_int_equal(c.workers, 2);
}

/* Values, units, overrides and "later line wins". */
static void test_values(void **state)
{
	(void)state;
	static struct config c;
	char err[512];
	const char *text =
		"hostname = mail.example.test\n"
		"  workers=3   \n"
		"submission.message_size_limit = 50M\n"   /* before the global one: still wins */
		"message_size_limit = 10M\n"
		"smtp_port = 2525\n"
		"max_recipients = 5\n"
		"max_recipients = 7\n"
		"command_timeout = 5m\n"
		"smtp.bare_lf = reject\n"
		"tls_host = mx.other.test certs/o.pem /abs/o.key\n"
		"imap.port = 0\n";
	assert_int_equal(load_text(&c, text, err, sizeof(err)), 0);
	assert_string_equal(c.hostname, "mail.example.test");
	assert_int_equal(c.workers, 3);
	assert_int_equal(c.l[LST_SUBMISSION].message_size_limit, 50 * 1024 * 1024);
	assert_int_equal(c.l[LST_SMTP].message_size_limit, 10 * 1024 * 1024);
	assert_int_equal(c.l[LST_SUBMISSIONS].message_size_limit, 10 * 1024 * 1024);
	assert_int_equal(c.l[LST_SMTP].port, 2525);
	assert_int_equal(c.l[LST_SMTP].max_recipients, 7);
	assert_int_equal(c.l[LST_POP3].command_timeout, 300);
	assert_int_equal(c.l[LST_SMTP].bare_lf_reject, 1);
	assert_int_equal(c.l[LST_IMAP].port, 0);
	assert_int_equal(c.ntls_hosts, 1);
	assert_string_equal(c.tls_hosts[0].name, "mx.other.test");
	assert_string_equal(c.tls_hosts[0].cert, "/tmp/certs/o.pem");
	assert_string_equal(c.tls_hosts[0].key, "/abs/o.key");
	assert_string_equal(c.data_dir, "/tmp/.");
	/* a global listener key leaves the listeners that do not honour it alone */
	assert_int_equal(load_text(&c, "max_recipients = 3\nhttp.command_timeout = 2s\n", err,
				   sizeof(err)), 0);
	assert_int_equal(c.l[LST_SUBMISSIONS].max_recipients, 3);
	assert_int_equal(c.l[LST_HTTP].command_timeout, 2);
	assert_int_equal(c.l[LST_HTTPS].command_timeout, 300);
	/* one port on two different addresses is no clash */
	assert_int_equal(load_text(&c, "imap.listen = 127.0.0.2\nimap.port = 25\n", err,
				   sizeof(err)), 0);
}

/* Bad lines are reported with file:line and what was expected. */
static void test_errors(void **state)
{
	(void)state;
	static struct config c;
	char err[512];
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "hostname = a\nbogus = 1\n", "FILE:2: unknown setting 'bogus'" },
		{ "max_recipients = lots\n", "FILE:1: 'max_recipients' expects a whole number, got 'lots'" },
		{ "\n\nno equals sign here\n", "FILE:3: expected 'key = value'" },
		{ "smtp_port = 70000\n", "FILE:1: 'smtp_port' expects a port number 0-65535" },
		{ "message_size_limit = 10Q\n", "FILE:1: 'message_size_limit' expects a size" },
		{ "ftp.port = 21\n", "FILE:1: unknown listener 'ftp'" },
		{ "smtp.hostname = x\n", "FILE:1: 'hostname' cannot be set per listener" },
		{ "bare_lf = maybe\n", "FILE:1: 'bare_lf' expects reject or normalize" },
		{ "tls_host = onlyname\n", "FILE:1: 'tls_host' expects NAME CERTFILE KEYFILE" },
		{ "workers = 0\n", "'workers' must be at least 1" },
		{ "max_recipients = 99999999999999999999999\n", "expects a whole number" },
		/* a per-listener value gets the checks of the global key (issue 11) */
		{ "hostname = a\nsmtp.port = 70000\n", "FILE:2: 'smtp.port' expects a port number 0-65535" },
		{ "imaps.port = 99999999999\n", "FILE:1: 'imaps.port' expects a whole number" },
		{ "imap.line_length_limit = 10\n", "'imap.line_length_limit' expects a value from 512" },
		{ "line_length_limit = 10\n", "'line_length_limit' expects a value from 512" },
		{ "pop3.max_errors = 0\n", "'pop3.max_errors' expects a value of at least 1" },
		{ "submission.message_size_limit = 5G\n", "expects a value from 1 to 4294967295" },
		{ "password_min_length = 2000\n", "'password_min_length' expects at most 1000" },
		{ "tls_hello_margin_ms = 3001\n", "'tls_hello_margin_ms' expects at most 3000" },
		{ "imap_port = 2525\nsmtp_port = 2525\n", "listeners smtp and imap both use port 2525" },
		{ "listen = *\nimaps.listen = 127.0.0.1\nimaps.port = 995\n",
		  "listeners imaps and pop3s both use port 995 (on 127.0.0.1 and *)" },
		/* a key a listener does not honour is refused there */
		{ "imap.max_recipients = 3\n", "FILE:1: 'max_recipients' does not apply to the imap "
						"listener (it applies to: smtp, submission, submissions)" },
		{ "http.bare_lf = reject\n", "'bare_lf' does not apply to the http listener" },
		{ "pop3s.data_timeout = 5\n", "'data_timeout' does not apply to the pop3s listener" },
		{ "login_delay_max = 1s\n", "'login_delay_max' (1s) is shorter than "
					    "'login_failure_delay' (2s)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load_text(&c, cases[i].text, err, sizeof(err)), -1);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
	}	/* the floor may go, and the growing delay may be off while the floor stays */
	assert_int_equal(load_text(&c, "login_delay_max = 1s\nlogin_failure_delay = 0\n", err,
				   sizeof(err)), 0);
	assert_int_equal(load_text(&c, "login_delay_max = 0\n", err, sizeof(err)), 0);
	assert_int_equal(c.login_failure_delay, 2);
}

/* Checked number helpers. */
/* domain_host: per-domain server names for client setup, hostname by default. */
static void test_domain_host(void **state)
{
	(void)state;
	static struct config c;
	char err[512];
	const char *imap, *pop3, *smtp;
	assert_int_equal(load_text(&c, "hostname = mail.example.test\n"
				       "domain_host = Other.Test imap=imap.other.test smtp=smtp.other.test\n"
				       "domain_host = third.test pop3=pop.third.test\n"
				       "domain_host = third.test imap=i.third.test\n", err, sizeof(err)), 0);
	config_domain_hosts(&c, "other.test", &imap, &pop3, &smtp);
	assert_string_equal(imap, "imap.other.test");
	assert_string_equal(pop3, "mail.example.test");
	assert_string_equal(smtp, "smtp.other.test");
	config_domain_hosts(&c, "third.test", &imap, &pop3, &smtp);   /* the later line wins */
	assert_string_equal(imap, "i.third.test");
	assert_string_equal(pop3, "mail.example.test");
	config_domain_hosts(&c, "unknown.test", &imap, &pop3, &smtp);
	assert_string_equal(imap, "mail.example.test");
	assert_int_equal(load_text(&c, "domain_host = a.test\n", err, sizeof(err)), -1);
	assert_int_equal(load_text(&c, "domain_host = a.test web=x.test\n", err, sizeof(err)), -1);
	assert_int_equal(load_text(&c, "domain_host = a.test imap=bad/host\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "DOMAIN imap=HOST pop3=HOST smtp=HOST"));
}

static void test_numbers(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(num_parse_size("25M", &v), 0);
	assert_int_equal(v, 25 * 1048576ull);
	assert_int_equal(num_parse_size("512KB", &v), 0);
	assert_int_equal(v, 512 * 1024ull);
	assert_int_equal(num_parse_size("1G", &v), 0);
	assert_int_equal(v, 1073741824ull);
	assert_int_equal(num_parse_size("", &v), -1);
	assert_int_equal(num_parse_size("M", &v), -1);
	assert_int_equal(num_parse_size("-1", &v), -1);
	assert_int_equal(num_parse_size("17179869184G", &v), -1);   /* overflows 64 bits */
	assert_int_equal(num_parse_duration("90", &v), 0);
	assert_int_equal(v, 90);
	assert_int_equal(num_parse_duration("2h", &v), 0);
	assert_int_equal(v, 7200);
	assert_int_equal(num_parse_duration("2x", &v), -1);
	assert_int_equal(num_parse_u64("18446744073709551615", 20, UINT64_MAX, &v), 0);
	assert_int_equal(num_parse_u64("18446744073709551616", 20, UINT64_MAX, &v), -1);
	assert_int_equal(num_parse_u64("12a", 3, UINT64_MAX, &v), -1);
	assert_int_equal(num_parse_u64("11", 2, 10, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_domain_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
