/* fuzz-dkim.c - libFuzzer target for the DKIM signer (dkim.c): the message octets a submitting
 * user controls.
 *
 * Build: see scripts/fuzz.sh (dkim.c, header.c, addr.c, idn.c, base64.c, buf.c, tls-crypto.c;
 * OpenSSL, libidn2). Besides memory errors it checks:
 * - the result does not depend on how the input is split (whole, or cut at the first byte);
 * - the relaxed body canonicaliser gives the same output fed whole or one octet at a time;
 * - a signature field is well formed: "DKIM-Signature: " first, CRLF line ends only, every
 *   continuation line folded with a tab, no line over 998 octets (RFC 5322 2.1.1).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "dkim.h"
#include "tls-crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The RFC 8463 A.2 Ed25519 key (deterministic signatures). */
static const char key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";

/* Load the key once. */
static struct tls_key *fuzz_key(void)
{
	static struct tls_key *key;
	if (key != NULL)
		return key;
	char path[] = "/tmp/fuzz-dkim-XXXXXX";
	int fd = mkstemp(path);
	const char *err;
	if (fd < 0 || write(fd, key_pem, sizeof(key_pem) - 1) != (ssize_t)(sizeof(key_pem) - 1))
		abort();
	close(fd);
	if (tls_key_load(path, &key, &err) < 0)
		abort();
	unlink(path);
	return key;
}

/* Sign data fed in two pieces cut at `cut`; the field (or "-" plus the reason) into out. */
static void sign(const uint8_t *data, size_t size, size_t cut, struct buf *out)
{
	struct dkim_signer *s = dkim_signer_new();
	if (s == NULL)
		abort();
	dkim_signer_feed(s, (const char *)data, cut);
	dkim_signer_feed(s, (const char *)data + cut, size - cut);
	char dom[DKIM_DOMAIN_MAX + 1];
	const char *why;
	if (dkim_signer_from_domain(s, dom, sizeof(dom), &why) != 1) {
		buf_appendf(out, "-%s", why);
	} else if (dkim_signer_sign(s, dom, "fuzz", fuzz_key(), 1528637909, out, &why) < 0) {
		buf_reset(out);
		buf_appendf(out, "!%s", why);
	}
	dkim_signer_free(&s);
}

/* Canonicaliser output into a buf. */
static void collect(void *ctx, const char *p, size_t n)
{
	buf_append(ctx, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a, b;
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	sign(data, size, size, &a);
	sign(data, size, size > 0 ? 1 : 0, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		abort();
	if (a.len > 0 && a.data[0] == 'D') {
		if (strncmp(a.data, "DKIM-Signature: ", 16) != 0 || a.len < 2 ||
		    memcmp(a.data + a.len - 2, "\r\n", 2) != 0)
			abort();
		size_t line = 0;
		for (size_t i = 0; i < a.len; i++) {
			if (a.data[i] == '\r' || a.data[i] == '\n') {
				if (a.data[i] != '\r' || a.data[i + 1] != '\n' ||
				    (i + 2 < a.len && a.data[i + 2] != '\t'))
					abort();
				i++;
				line = 0;
			} else if (++line > 998) {
				abort();
			}
		}
	}
	buf_reset(&a);
	buf_reset(&b);
	struct dkim_body_canon c;
	dkim_body_canon_init(&c, collect, &a);
	dkim_body_canon_feed(&c, (const char *)data, size);
	dkim_body_canon_end(&c);
	dkim_body_canon_init(&c, collect, &b);
	for (size_t i = 0; i < size; i++)
		dkim_body_canon_feed(&c, (const char *)data + i, 1);
	dkim_body_canon_end(&c);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len) != 0))
		abort();
	buf_free(&a);
	buf_free(&b);
	return 0;
}
