/* test-log.c - escaping of peer text for logs and admin listings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* log_escape_text: controls and non-UTF-8 become \xNN, UTF-8 passes, overflow ends in "...". */
static void test_escape_text(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "alice@example.com", "alice@example.com" },
		{ "evil\r\nFAKE", "evil\\x0d\\x0aFAKE" },
		{ "a\x1b[2Jb\x07\x7f", "a\\x1b[2Jb\\x07\\x7f" },
		{ "back\\slash", "back\\\\slash" },
		{ "j\xc3\xbcrgen@b\xc3\xbcro.example", "j\xc3\xbcrgen@b\xc3\xbcro.example" },
		{ "c1 \xc2\x9b csi", "c1 \\xc2\\x9b csi" },           /* U+009B, an 8-bit CSI */
		{ "bad \xff\xc3", "bad \\xff\\xc3" },                 /* not UTF-8, cut sequence */
		{ "long \xe0\x80\xaf", "long \\xe0\\x80\\xaf" },      /* overlong form */
		{ "sur \xed\xa0\x80", "sur \\xed\\xa0\\x80" },        /* a surrogate */
		{ "\xf0\x9f\x93\xa7 mail", "\xf0\x9f\x93\xa7 mail" },
	};
	char out[128];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(log_escape_text(cases[i].in, out, sizeof(out)), cases[i].want);
	char small[12];
	assert_string_equal(log_escape_text("\r\n\r\n\r\n", small, sizeof(small)), "\\x0d\\x0a...");
	assert_string_equal(log_escape_text("abcdefghijklmnop", small, sizeof(small)), "abcdefgh...");
}

/* Log one line with log_format = json and return what was written to stderr. */
static const char *json_line(const char *fmt, const char *arg)
{
	static char got[4096];
	int fds[2], saved = dup(STDERR_FILENO);
	assert_int_equal(pipe(fds), 0);
	dup2(fds[1], STDERR_FILENO);
	log_set_json(1);
	log_info(fmt, arg);
	log_set_json(0);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	ssize_t n = read(fds[0], got, sizeof(got) - 1);
	close(fds[0]);
	assert_true(n > 0);
	got[n] = '\0';
	return strchr(got, '"') ? strstr(got, ",\"pid\":") : got;
}

/* log_format = json: key=value text becomes string members; quoted values are unescaped,
 * \xNN becomes \u00NN, UTF-8 passes, other octets are escaped, the rest goes to "msg". */
static void test_json(void **state)
{
	(void)state;
	char esc[128], want[512];
	static const char cmd[] = "RCPT TO:<a\"b\\c\x07>";
	log_escape(cmd, strlen(cmd), esc, sizeof(esc));
	snprintf(want, sizeof(want), ",\"pid\":%d,\"sess\":\"00ab\",\"event\":\"cmd\","
		 "\"cmd\":\"RCPT TO:<a\\\"b\\\\c\\u0007>\"}\n", (int)getpid());
	assert_string_equal(json_line("sess=00ab event=cmd cmd=\"%s\"", esc), want);
	snprintf(want, sizeof(want), ",\"pid\":%d,\"user\":\"j\xc3\xbcrgen\",\"bad\":\"\\u00ff\","
		 "\"msg\":\"not key value \\u0001\"}\n", (int)getpid());
	assert_string_equal(json_line("user=%s bad=\xff not key value \x01", "j\xc3\xbcrgen"),
			    want);
	snprintf(want, sizeof(want), ",\"pid\":%d,\"empty\":\"\",\"open\":\"unterminated\"}\n",
		 (int)getpid());
	assert_string_equal(json_line("empty=\"\" open=\"%s", "unterminated"), want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_text),
		cmocka_unit_test(test_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
