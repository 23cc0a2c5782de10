/* fuzz-imap-url.c - libFuzzer target for imap-url.c.
 *
 * Build: scripts/fuzz.sh (fuzz-imap-url). The input (up to its first NUL) is parsed as an IMAP
 * URL. Contracts checked: a parsed URL has a UID; its rump is a prefix of the input ending in
 * the access identifier; strings are NUL-terminated within their arrays; a token is hex.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap-url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct imap_url u;
	const char *why = NULL;
	if (imap_url_parse(s, &u, &why) == 0) {
		if (u.uid == 0 || memchr(u.box, '\0', sizeof(u.box)) == NULL ||
		    memchr(u.section, '\0', sizeof(u.section)) == NULL ||
		    memchr(u.access, '\0', sizeof(u.access)) == NULL)
			abort();
		if (u.have_urlauth && (u.rump_len > strlen(s) || u.rump_len == 0))
			abort();
		if (u.have_token && strspn(u.token, "0123456789abcdefABCDEF") != strlen(u.token))
			abort();
		if (u.have_urlauth)
			(void)imap_url_access_allows(u.access, "a@b", 1);
	} else if (why == NULL) {
		abort();
	}
	free(s);
	return 0;
}
