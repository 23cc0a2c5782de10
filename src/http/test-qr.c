/* test-qr.c - the QR encoder against published vectors (ISO/IEC 18004 tables and the worked
 * "HELLO WORLD" 1-M example); the e2e suite decodes whole symbols with zbarimg. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "qr.h"

static void test_rs(void **state)
{
	(void)state;
	static const unsigned char data[16] = { 32, 91, 11, 120, 209, 114, 220, 77, 67, 64, 236, 17,
						 236, 17, 236, 17 };
	static const unsigned char want[10] = { 196, 35, 39, 119, 235, 215, 231, 226, 93, 23 };
	unsigned char ecc[10];
	qr_rs_ecc(data, sizeof(data), 10, ecc);
	assert_memory_equal(ecc, want, sizeof(want));
}

static void test_format_and_version_bits(void **state)
{
	(void)state;
	/* level M, masks 0..7 */
	static const unsigned want[8] = { 0x5412, 0x5125, 0x5e7c, 0x5b4b, 0x45f9, 0x40ce, 0x4f97,
					  0x4aa0 };
	for (int m = 0; m < 8; m++)
		assert_int_equal(qr_format_bits(m), want[m]);
	assert_int_equal(qr_version_bits(7), 0x07c94);
	assert_int_equal(qr_version_bits(40), 0x28c69);
}

static void test_versions(void **state)
{
	(void)state;
	/* byte-mode capacities of level M */
	static const struct { size_t len; int v; } t[] = {
		{ 1, 1 }, { 14, 1 }, { 15, 2 }, { 26, 2 }, { 27, 3 }, { 42, 3 }, { 43, 4 }, { 62, 4 },
		{ 84, 5 }, { 85, 6 }, { 213, 10 }, { 214, 11 }, { 2331, 40 },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(qr_version_for(t[i].len), t[i].v);
	assert_int_equal(qr_version_for(2332), -1);
}

/* The finder pattern with its top-left corner at (x, y). */
static void check_finder(const struct qr *q, int x, int y)
{
	for (int dy = 0; dy < 7; dy++)
		for (int dx = 0; dx < 7; dx++) {
			int ring = dx == 0 || dy == 0 || dx == 6 || dy == 6;
			int core = dx >= 2 && dx <= 4 && dy >= 2 && dy <= 4;
			assert_int_equal(q->dark[y + dy][x + dx], ring || core);
		}
}

static void test_symbol(void **state)
{
	(void)state;
	static struct qr q;
	const char *url = "https://mail.example.test/mail.mobileconfig?email=alice@example.test";
	assert_int_equal(qr_encode(url, strlen(url), &q), 0);
	assert_int_equal(q.version, 5);
	assert_int_equal(q.size, 37);
	check_finder(&q, 0, 0);
	check_finder(&q, q.size - 7, 0);
	check_finder(&q, 0, q.size - 7);
	for (int i = 8; i < q.size - 8; i++) {
		assert_int_equal(q.dark[6][i], i % 2 == 0);   /* timing patterns */
		assert_int_equal(q.dark[i][6], i % 2 == 0);
	}
	assert_int_equal(q.dark[q.size - 8][8], 1);      /* the dark module */
	/* both copies of the format information carry the chosen mask */
	unsigned f = qr_format_bits(q.mask), a = 0, b = 0;
	for (int i = 0; i <= 5; i++)
		a |= (unsigned)q.dark[i][8] << i;
	a |= (unsigned)q.dark[7][8] << 6 | (unsigned)q.dark[8][8] << 7 | (unsigned)q.dark[8][7] << 8;
	for (int i = 9; i < 15; i++)
		a |= (unsigned)q.dark[8][14 - i] << i;
	for (int i = 0; i < 8; i++)
		b |= (unsigned)q.dark[8][q.size - 1 - i] << i;
	for (int i = 8; i < 15; i++)
		b |= (unsigned)q.dark[q.size - 15 + i][8] << i;
	assert_int_equal(a, f);
	assert_int_equal(b, f);
	/* the alignment pattern of version 5 is centred at (30, 30) */
	assert_int_equal(q.dark[30][30], 1);
	assert_int_equal(q.dark[29][30], 0);
	assert_int_equal(q.dark[28][30], 1);
	/* a long input needs a large version with version information */
	char *big = malloc(1000);
	memset(big, 'x', 1000);
	assert_int_equal(qr_encode(big, 1000, &q), 0);
	assert_int_equal(q.version, qr_version_for(1000));
	unsigned vb = 0;
	for (int i = 0; i < 18; i++)
		vb |= (unsigned)q.dark[i / 3][q.size - 11 + i % 3] << i;
	assert_int_equal(vb, qr_version_bits(q.version));
	assert_int_equal(qr_encode(big, 1000, &q), 0);
	free(big);
	char *huge = calloc(1, QR_BYTES_MAX + 1);
	assert_int_equal(qr_encode(huge, QR_BYTES_MAX + 1, &q), -1);
	assert_int_equal(qr_encode(huge, QR_BYTES_MAX, &q), 0);
	assert_int_equal(q.version, 40);
	free(huge);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rs),
		cmocka_unit_test(test_format_and_version_bits),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_symbol),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
