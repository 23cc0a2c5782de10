/* fuzz-imap-utf7.c - libFuzzer target for imap-utf7.c and imap-seqset.c.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/lib -Isrc/lib-imap \
 *        src/lib/buf.c src/lib-imap/imap-utf7.c src/lib-imap/imap-seqset.c \
 *        src/lib-imap/fuzz-imap-utf7.c -o fuzz-imap-utf7
 * The input (up to its first NUL) is tried as modified UTF-7, as UTF-8 and as a sequence set.
 * Contracts checked: decoding is canonical (a decoded name encodes back to exactly the input);
 * encoding is reversible and printable; failures leave the output untouched; a parsed set is
 * sorted, merged, free of 0 and formats back to a set that parses to the same ranges.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap-seqset.h"
#include "imap-utf7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Modified UTF-7 checks. */
static void fuzz_utf7(const char *s)
{
	struct buf a, b;
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	if (imap_mutf7_to_utf8(s, &a) == 0) {
		if (!imap_mutf7_is_valid(s) || imap_utf8_to_mutf7(a.len ? a.data : "", &b) != 0 ||
		    strcmp(b.len ? b.data : "", s) != 0)
			abort();
	} else if (a.len != 0 || imap_mutf7_is_valid(s)) {
		abort();
	}
	buf_reset(&a);
	buf_reset(&b);
	if (imap_utf8_to_mutf7(s, &a) == 0) {
		for (size_t i = 0; i < a.len; i++) {
			if (a.data[i] < 0x20 || a.data[i] > 0x7e)
				abort();
		}
		if (imap_mutf7_to_utf8(a.len ? a.data : "", &b) != 0 ||
		    strcmp(b.len ? b.data : "", s) != 0)
			abort();
	} else if (a.len != 0) {
		abort();
	}
	buf_free(&a);
	buf_free(&b);
}

/* Sequence set checks. */
static void fuzz_seqset(const char *s, uint32_t max_star)
{
	struct imap_seqset set, again;
	struct buf b;
	int r = imap_seqset_parse(s, max_star, &set);
	if (r < 0) {
		if (set.ranges != NULL || set.n != 0)
			abort();
		return;
	}
	if (r == IMAP_SEQSET_SEARCHRES) {
		if (!set.searchres || set.n != 0)
			abort();
		return;
	}
	for (size_t i = 0; i < set.n; i++) {
		if (set.ranges[i].lo == 0 || set.ranges[i].lo > set.ranges[i].hi)
			abort();
		if (i > 0 && (uint64_t)set.ranges[i - 1].hi + 1 >= set.ranges[i].lo)
			abort();
		if (!imap_seqset_contains(&set, set.ranges[i].lo) ||
		    !imap_seqset_contains(&set, set.ranges[i].hi) ||
		    (set.ranges[i].lo > 1 && imap_seqset_contains(&set, set.ranges[i].lo - 1)))
			abort();
	}
	buf_init(&b, 1 << 20);
	if (imap_seqset_format_set(&set, &b) != 0)
		abort();
	if (set.n > 0) {
		if (imap_seqset_parse(b.data, max_star, &again) != 0 || again.n != set.n ||
		    memcmp(again.ranges, set.ranges, set.n * sizeof(set.ranges[0])) != 0)
			abort();
		imap_seqset_free(&again);
	}
	buf_free(&b);
	imap_seqset_free(&set);
}

/* Fuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_utf7(s);
	fuzz_seqset(s, size > 0 ? (uint32_t)data[0] * 97u : 0);
	fuzz_seqset(s, 0);
	free(s);
	return 0;
}
