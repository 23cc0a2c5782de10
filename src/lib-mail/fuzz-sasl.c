/* fuzz-sasl.c - libFuzzer target for base64 and SASL PLAIN / LOGIN response decoding.
 *
 * Build: see scripts/fuzz.sh (base64.c, sasl.c). The first input octet picks the mode and the
 * output buffer sizes; the rest is the client's line. Besides memory errors it checks:
 * - base64: a string that decodes is canonical (encoding the result gives it back) and any
 *   octets survive encode + decode;
 * - PLAIN: a success has a non-empty authcid and password without NUL that fit their buffers,
 *   and encoding "authzid NUL authcid NUL passwd" again decodes to the same two strings;
 * - LOGIN: the result is NUL-terminated, NUL-free, within the buffer, and equals what strict
 *   base64 decoding gives whenever that fits and holds no NUL.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINE_MAX 12288   /* longer lines are cut: the sessions' line limits are smaller */

/* base64 strictness and round trips. */
static void fuzz_base64(const char *in, size_t n)
{
	static unsigned char out[FUZZ_LINE_MAX];
	static char again[FUZZ_LINE_MAX * 2];
	ssize_t k = base64_decode(in, n, out, sizeof(out));
	if (k >= 0) {
		if ((size_t)k > BASE64_DECODED_MAX(n) ||
		    base64_encode(out, (size_t)k, again, sizeof(again)) != n ||
		    memcmp(again, in, n) != 0)
			abort();
	}
	/* the input as octets: encode, decode, compare */
	size_t e = base64_encode((const unsigned char *)in, n, again, sizeof(again));
	if (n > 0 && e != BASE64_ENCODED_LEN(n))
		abort();
	k = base64_decode(again, e, out, sizeof(out));
	if (k < 0 || (size_t)k != n || memcmp(out, in, n) != 0)
		abort();
}

/* SASL PLAIN with buffers of the sizes the mode octet picks. */
static void fuzz_plain(const char *line, unsigned sel)
{
	char authc[321], pass[1024];
	size_t ac = 1 + sel % sizeof(authc), pc = 1 + (sel * 7) % sizeof(pass);
	memset(authc, 'x', sizeof(authc));
	memset(pass, 'x', sizeof(pass));
	int r = sasl_plain_decode(line, authc, ac, pass, pc);
	if (r != 0 && r != -1 && r != -2)
		abort();
	if (r != 0)
		return;
	size_t al = strnlen(authc, ac), pl = strnlen(pass, pc);
	if (al == 0 || al >= ac || pl == 0 || pl >= pc)
		abort();
	/* encode NUL authc NUL pass and decode it again: the same strings */
	unsigned char msg[2 + sizeof(authc) + sizeof(pass)];
	char b64[BASE64_ENCODED_LEN(sizeof(msg)) + 1], a2[sizeof(authc)], p2[sizeof(pass)];
	msg[0] = '\0';
	memcpy(msg + 1, authc, al + 1);
	memcpy(msg + 2 + al, pass, pl);
	if (base64_encode(msg, 2 + al + pl, b64, sizeof(b64)) == 0)
		abort();
	if (sasl_plain_decode(b64, a2, sizeof(a2), p2, sizeof(p2)) != 0 || strcmp(a2, authc) != 0 ||
	    strcmp(p2, pass) != 0)
		abort();
}

/* SASL LOGIN with an output buffer of the size the mode octet picks. */
static void fuzz_login(const char *line, unsigned sel)
{
	static char out[FUZZ_LINE_MAX];
	static unsigned char ref[FUZZ_LINE_MAX];
	size_t cap = 1 + sel % 400;
	ssize_t n = sasl_login_decode(line, out, cap);
	ssize_t k = strcmp(line, "=") == 0 ? 0
					   : base64_decode(line, strlen(line), ref, sizeof(ref));
	if (n < 0) {
		/* refused although strict decoding fits and holds no NUL? */
		if (k >= 0 && (size_t)k < cap && memchr(ref, '\0', (size_t)k) == NULL)
			abort();
		return;
	}
	if ((size_t)n >= cap || out[n] != '\0' || memchr(out, '\0', (size_t)n) != NULL)
		abort();
	if (k != n || memcmp(out, ref, (size_t)n) != 0)
		abort();
}

/* One input: mode octet, then the line. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[FUZZ_LINE_MAX + 1];
	if (size == 0)
		return 0;
	unsigned sel = data[0];
	size_t n = size - 1 > FUZZ_LINE_MAX ? FUZZ_LINE_MAX : size - 1;
	memcpy(line, data + 1, n);
	line[n] = '\0';
	switch (sel % 3) {
	case 0:
		fuzz_base64(line, n);
		break;
	case 1:
		fuzz_plain(line, sel / 3);
		break;
	default:
		fuzz_login(line, sel / 3);
		break;
	}
	return 0;
}
