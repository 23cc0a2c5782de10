/* test-imap-seqset.c - unit tests for imap-seqset.c (parse, contains, iterate, format). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap-seqset.h"

struct good_case {
	const char *in;
	uint32_t max_star;
	const char *want; /* normalized ranges, as imap_seqset_format_set prints them */
};

static const struct good_case good_cases[] = {
	{ "1", 10, "1" },
	{ "*", 10, "10" },
	{ "1:*", 10, "1:10" },
	{ "*:1", 10, "1:10" },
	{ "5:3", 10, "3:5" },
	{ "1,3:5,7:*", 10, "1,3:5,7:10" },
	{ "12:*", 10, "10:12" },       /* RFC 9051: "*" below n still includes the last message */
	{ "3,2,1", 10, "1:3" },
	{ "1,2,4,5,7", 10, "1:2,4:5,7" },
	{ "7:9,1:3,2:8", 10, "1:9" },
	{ "1:3,4:6", 10, "1:6" },
	{ "1:3,5:6", 10, "1:3,5:6" },
	{ "5,5,5", 10, "5" },
	{ "4294967295", 10, "4294967295" },
	{ "1:4294967295", 10, "1:4294967295" },
	{ "4294967294:4294967295,1", 10, "1,4294967294:4294967295" },
	{ "*", 4294967295u, "4294967295" },
	{ "1:*", 0, "1" },             /* empty mailbox: "*" is 0 */
	{ "5:*", 0, "1:5" },
	{ "*", 0, "" },
	{ "*:*", 0, "" },
	{ "*,3", 0, "3" },
};

static const char *const bad_cases[] = {
	"", ",", "1,", ",1", "1,,2", ":", "1:", ":1", "1:2:3", "0", "0:5", "5:0", "01", "1:02",
	"4294967296", "99999999999999999999", "1 ", " 1", "1;2", "a", "1a", "-1", "+1", "**",
	"*1", "1*", "$,1", "1,$", "$$", "1:$", "1.5", "1\t", "\xef\xbc\x91",
};

/* Good rows parse to the wanted normalized ranges and agree with contains/iter/count. */
static void test_good(void **state)
{
	struct buf b;
	(void)state;
	buf_init(&b, 4096);
	for (size_t i = 0; i < sizeof(good_cases) / sizeof(good_cases[0]); i++) {
		const struct good_case *c = &good_cases[i];
		struct imap_seqset set;
		assert_int_equal(imap_seqset_parse(c->in, c->max_star, &set), 0);
		assert_int_equal(set.searchres, 0);
		buf_reset(&b);
		assert_int_equal(imap_seqset_format_set(&set, &b), 0);
		if (strcmp(b.len ? b.data : "", c->want) != 0) {
			print_error("case %zu '%s': got '%s' want '%s'\n", i, c->in,
				    b.len ? b.data : "", c->want);
			fail();
		}
		/* ranges sorted, disjoint, non-adjacent, never 0 */
		for (size_t k = 0; k < set.n; k++) {
			assert_true(set.ranges[k].lo >= 1);
			assert_true(set.ranges[k].lo <= set.ranges[k].hi);
			if (k > 0)
				assert_true((uint64_t)set.ranges[k - 1].hi + 1 < set.ranges[k].lo);
		}
		assert_false(imap_seqset_contains(&set, 0));
		imap_seqset_free(&set);
		imap_seqset_free(&set);
	}
	buf_free(&b);
}

/* Bad rows are refused and leave an empty set. */
static void test_bad(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct imap_seqset set;
		if (imap_seqset_parse(bad_cases[i], 10, &set) != -1) {
			print_error("case %zu '%s' accepted\n", i, bad_cases[i]);
			fail();
		}
		assert_null(set.ranges);
		assert_int_equal(set.n, 0);
		imap_seqset_free(&set);
	}
}

/* "$" is the SEARCHRES marker. */
static void test_searchres(void **state)
{
	struct imap_seqset set;
	(void)state;
	assert_int_equal(imap_seqset_parse("$", 10, &set), IMAP_SEQSET_SEARCHRES);
	assert_int_equal(set.searchres, 1);
	assert_int_equal(set.n, 0);
	assert_false(imap_seqset_contains(&set, 1));
	imap_seqset_free(&set);
}

/* contains, count and iteration agree with a brute-force check. */
static void test_contains_iter(void **state)
{
	struct imap_seqset set;
	struct imap_seqset_iter it;
	uint32_t v, prev = 0;
	uint64_t n = 0;
	(void)state;
	assert_int_equal(imap_seqset_parse("2,4:6,9:*,20,15", 12, &set), 0);
	for (uint32_t x = 0; x <= 25; x++) {
		int want = x == 2 || (x >= 4 && x <= 6) || (x >= 9 && x <= 12) || x == 15 ||
			   x == 20;
		assert_int_equal(imap_seqset_contains(&set, x), want);
	}
	assert_int_equal(imap_seqset_count(&set), 1 + 3 + 4 + 1 + 1);
	imap_seqset_iter_init(&it, &set);
	while (imap_seqset_iter_next(&it, &v)) {
		assert_true(v > prev);
		assert_true(imap_seqset_contains(&set, v));
		prev = v;
		n++;
	}
	assert_int_equal(n, imap_seqset_count(&set));
	assert_int_equal(imap_seqset_iter_next(&it, &v), 0);
	imap_seqset_free(&set);

	/* the top of the number space does not wrap */
	assert_int_equal(imap_seqset_parse("4294967293:*", 4294967295u, &set), 0);
	assert_int_equal(imap_seqset_count(&set), 3);
	assert_true(imap_seqset_contains(&set, 4294967295u));
	imap_seqset_iter_init(&it, &set);
	n = 0;
	while (imap_seqset_iter_next(&it, &v))
		n++;
	assert_int_equal(n, 3);
	imap_seqset_free(&set);

	/* the whole space: count without overflow */
	assert_int_equal(imap_seqset_parse("1:4294967295", 1, &set), 0);
	assert_int_equal(imap_seqset_count(&set), 4294967295u);
	imap_seqset_free(&set);

	/* empty set */
	assert_int_equal(imap_seqset_parse("*", 0, &set), 0);
	imap_seqset_iter_init(&it, &set);
	assert_int_equal(imap_seqset_iter_next(&it, &v), 0);
	assert_int_equal(imap_seqset_count(&set), 0);
	imap_seqset_free(&set);
}

/* The item bound: IMAP_SEQSET_MAX_ITEMS parse, one more (and 10,000) do not. */
static void test_item_limit(void **state)
{
	struct imap_seqset set;
	struct buf b;
	(void)state;
	buf_init(&b, 1 << 20);
	for (unsigned i = 1; i <= IMAP_SEQSET_MAX_ITEMS; i++)
		assert_int_equal(buf_appendf(&b, "%s%u", i > 1 ? "," : "", 2 * i), 0);
	assert_int_equal(imap_seqset_parse(b.data, 100, &set), 0);
	assert_int_equal(set.n, IMAP_SEQSET_MAX_ITEMS);
	imap_seqset_free(&set);
	assert_int_equal(buf_appendstr(&b, ",1"), 0);
	assert_int_equal(imap_seqset_parse(b.data, 100, &set), -1);
	buf_reset(&b);
	for (unsigned i = 1; i <= 10000; i++)
		assert_int_equal(buf_appendf(&b, "%s%u:%u", i > 1 ? "," : "", 3 * i, 3 * i + 1), 0);
	assert_int_equal(imap_seqset_parse(b.data, 100, &set), -1);
	assert_null(set.ranges);
	buf_free(&b);
}

/* The formatter's compact output, and its refusals. */
static void test_format(void **state)
{
	static const uint32_t v1[] = { 1, 2, 3, 5 };
	static const uint32_t v2[] = { 7 };
	static const uint32_t v3[] = { 1, 1, 2, 2, 4, 6, 7, 8, 10 };
	static const uint32_t v4[] = { 4294967294u, 4294967295u };
	static const uint32_t v5[] = { 1, 4294967295u };
	static const uint32_t bad1[] = { 3, 2 };
	static const uint32_t bad2[] = { 0, 1 };
	struct buf b;
	(void)state;
	buf_init(&b, 64);
	assert_int_equal(imap_seqset_format(v1, 4, &b), 0);
	assert_string_equal(b.data, "1:3,5");
	buf_reset(&b);
	assert_int_equal(imap_seqset_format(v2, 1, &b), 0);
	assert_string_equal(b.data, "7");
	buf_reset(&b);
	assert_int_equal(imap_seqset_format(v3, 9, &b), 0);
	assert_string_equal(b.data, "1:2,4,6:8,10");
	buf_reset(&b);
	assert_int_equal(imap_seqset_format(v4, 2, &b), 0);
	assert_string_equal(b.data, "4294967294:4294967295");
	buf_reset(&b);
	assert_int_equal(imap_seqset_format(v5, 2, &b), 0);
	assert_string_equal(b.data, "1,4294967295");
	buf_reset(&b);
	assert_int_equal(imap_seqset_format(v1, 0, &b), 0);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_appendstr(&b, "x "), 0);
	assert_int_equal(imap_seqset_format(bad1, 2, &b), -1);
	assert_int_equal(imap_seqset_format(bad2, 2, &b), -1);
	assert_string_equal(b.data, "x ");
	buf_free(&b);

	/* a full buffer leaves the earlier content untouched */
	buf_init(&b, 8);
	assert_int_equal(buf_appendstr(&b, "[C "), 0);
	assert_int_equal(imap_seqset_format(v3, 9, &b), -1);
	assert_string_equal(b.data, "[C ");
	buf_free(&b);

	/* parse -> format -> parse round trip */
	struct imap_seqset set, again;
	buf_init(&b, 256);
	assert_int_equal(imap_seqset_parse("9,1:3,5,4,20:*,17", 25, &set), 0);
	assert_int_equal(imap_seqset_format_set(&set, &b), 0);
	assert_string_equal(b.data, "1:5,9,17,20:25");
	assert_int_equal(imap_seqset_parse(b.data, 25, &again), 0);
	assert_int_equal(again.n, set.n);
	assert_memory_equal(again.ranges, set.ranges, set.n * sizeof(set.ranges[0]));
	imap_seqset_free(&set);
	imap_seqset_free(&again);
	buf_free(&b);
}

/* Run the tests. */
int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_searchres),
		cmocka_unit_test(test_contains_iter),
		cmocka_unit_test(test_item_limit),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
