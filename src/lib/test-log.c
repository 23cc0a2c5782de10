/* test-log.c - escaping of peer text for logs and admin listings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
