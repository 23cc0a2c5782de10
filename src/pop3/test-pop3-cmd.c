/* test-pop3-cmd.c - POP3 command splitting, numbers and TOP's cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pop3-cmd.h"

/* Keyword and arguments, runs of spaces, too many arguments, empty lines, PASS. */
static void test_parse(void **state)
{
	(void)state;
	struct pop3_cmd c;
	char l1[] = "TOP 1 10";
	assert_int_equal(pop3_cmd_parse(l1, &c), POP3_CMD_OK);
	assert_string_equal(c.verb, "TOP");
	assert_string_equal(c.arg[0], "1");
	assert_string_equal(c.arg[1], "10");
	char l2[] = "  stat  ";
	assert_int_equal(pop3_cmd_parse(l2, &c), POP3_CMD_OK);
	assert_string_equal(c.verb, "stat");
	assert_null(c.arg[0]);
	char l3[] = "LIST 1 2 3";
	assert_int_equal(pop3_cmd_parse(l3, &c), POP3_CMD_TOO_MANY);
	assert_string_equal(c.arg[1], "2");
	char l4[] = "   ";
	assert_int_equal(pop3_cmd_parse(l4, &c), POP3_CMD_EMPTY);
	assert_string_equal(pop3_cmd_pass_arg("pass my secret "), "my secret ");
	assert_null(pop3_cmd_pass_arg("PASSX y"));
	assert_null(pop3_cmd_pass_arg("PASS"));
}

/* Numbers: digits only, within the maximum. */
static void test_number(void **state)
{
	(void)state;
	uint64_t n;
	assert_int_equal(pop3_cmd_number("42", UINT32_MAX, &n), 0);
	assert_int_equal(n, 42);
	assert_int_equal(pop3_cmd_number("4294967296", UINT32_MAX, &n), -1);
	assert_int_equal(pop3_cmd_number("-1", UINT32_MAX, &n), -1);
	assert_int_equal(pop3_cmd_number("1x", UINT32_MAX, &n), -1);
	assert_int_equal(pop3_cmd_number("", UINT32_MAX, &n), -1);
	assert_int_equal(pop3_cmd_number(NULL, UINT32_MAX, &n), -1);
}

/* TOP: the header, the blank line, then n body lines, whatever the chunking. */
static void test_top(void **state)
{
	(void)state;
	const char *m = "A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n";
	size_t n = strlen(m);
	const size_t want[] = { 14, 18, 22, 26, 26 };   /* 0..4 body lines */
	for (uint64_t lines = 0; lines <= 4; lines++) {
		for (size_t step = 1; step <= 5; step++) {
			struct pop3_top t;
			pop3_top_init(&t, lines);
			size_t got = 0;
			for (size_t o = 0; o < n && !t.done; o += step)
				got += pop3_top_take(&t, m + o, n - o < step ? n - o : step);
			assert_int_equal(got, want[lines]);
			assert_int_equal(t.done, lines < 4);
			if (t.done)   /* nothing passes after the cut */
				assert_int_equal(pop3_top_take(&t, m, n), 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_number),
		cmocka_unit_test(test_top),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
