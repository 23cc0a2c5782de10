/* fuzz-addr.c - libFuzzer target for addr_parse_path, addr_format and addr_parse_list.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/lib-mail src/lib-mail/addr.c \
 *        src/lib-mail/fuzz-addr.c -o fuzz-addr
 * The input is used as is (no NUL), so any read past its end is caught by ASan. Besides memory
 * errors it checks the contracts: the path end lies inside the input right after a '>', parts
 * are NUL-terminated within their limits, and reported addresses are bounded and well-formed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* addr_parse_list callback: each address is short, has an '@', and parses back as a path. */
static void fuzz_list_cb(void *ctx, const char *address)
{
	size_t n = strlen(address);
	char path[1024];
	struct addr a;
	const char *end;
	(void)ctx;
	if (n == 0 || n > 2 * sizeof(a.local) + 3 + ADDR_DOMAIN_MAX || strchr(address, '@') == NULL)
		abort();
	/* a reported address that fits a path must parse back to the same canonical form */
	if (n + 2 <= ADDR_PATH_MAX) {
		char again[1024];
		path[0] = '<';
		memcpy(path + 1, address, n);
		path[n + 1] = '>';
		if (addr_parse_path(path, n + 2, 1, &a, &end) != 0 || end != path + n + 2)
			abort();
		if (addr_format(&a, again, sizeof(again)) < 0 || strcmp(again, address) != 0)
			abort();
	}
}

/* One path parse with the given UTF-8 setting, checking the result's invariants. */
static void fuzz_path(const char *s, size_t size, int utf8)
{
	struct addr a;
	const char *end = NULL;
	char out[1024];
	if (addr_parse_path(s, size, utf8, &a, &end) != 0)
		return;
	if (end < s + 2 || end > s + size || end - s > ADDR_PATH_MAX || end[-1] != '>')
		abort();
	if (memchr(a.local, '\0', ADDR_LOCAL_MAX + 1) == NULL ||
	    memchr(a.domain, '\0', sizeof(a.domain)) == NULL)
		abort();
	if (!utf8 && (a.flags & ADDR_F_UTF8))
		abort();
	if (addr_format(&a, out, sizeof(out)) < 0)
		abort();
}

/* Fuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	fuzz_path(s, size, 0);
	fuzz_path(s, size, 1);
	(void)addr_parse_list(s, size, fuzz_list_cb, NULL);
	return 0;
}
