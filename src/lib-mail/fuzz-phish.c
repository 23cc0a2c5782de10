/* fuzz-phish.c - libFuzzer target for phish_check and phish_rewrite.
 *
 * The input is a message (header section and body); the first octet picks the mark mode and
 * whether there is a finding, the rest is used as is (no NUL), so any read past its end is
 * caught by ASan. Besides memory errors it checks the contracts: the verdict's strings are
 * NUL-terminated within their arrays, the reason text is printable ASCII with folds only, and
 * the rewritten message never carries an X-Postino-Phishing field but ours, keeps the prefix
 * and is never shorter than the input minus the fields removed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "header.h"
#include "phish.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct phish_policy *policy;

/* emit into a buffer */
static int emit(void *ctx, const char *p, size_t n)
{
	return buf_append(ctx, p, n);
}

/* Fuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosted[] = { "example.test", "tim.it", "xn--bcher-kva.example" };
	if (policy == NULL)
		policy = phish_policy_new("TIM, Example Provider", hosted, 3, 2);
	if (policy == NULL || size < 1)
		return 0;
	unsigned sel = data[0];
	const char *msg = (const char *)data + 1;
	size_t len = size - 1;
	struct phish_verdict v;
	(void)phish_check(policy, msg, len, &v);
	if (!memchr(v.from, 0, sizeof(v.from)) || !memchr(v.lookalike, 0, sizeof(v.lookalike)) ||
	    !memchr(v.reply_domain, 0, sizeof(v.reply_domain)))
		abort();
	char reason[PHISH_REASON_MAX];
	v.reasons |= (sel & 4) ? PHISH_REPLY_TO : 0;
	phish_describe(&v, reason, sizeof(reason));
	for (const char *s = reason; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\r' && c != '\n' && c != '\t') || c >= 0x7f)
			abort();
		if (c == '\n' && s[1] != '\t')
			abort();
	}
	/* a prefix of up to 7 octets stands for our trace fields */
	size_t prefix = (sel >> 5) < len ? (sel >> 5) : 0;
	struct phish_mark m = { (enum phish_mark_mode)(sel & 3), "[Suspicious]",
				"WARNING: = phishing \xc3\xa8", (sel & 8) ? "r (x)" : NULL };
	struct buf out;
	unsigned applied;
	buf_init(&out, 4 * len + 4096);
	if (phish_rewrite(msg, len, prefix, &m, emit, &out, &applied) == 0) {
		if (out.len < prefix || (prefix && memcmp(out.data, msg, prefix) != 0))
			abort();
		if (m.reason == NULL && applied != 0)
			abort();
		/* only ours (the first field after the prefix) may be an X-Postino-Phishing */
		const char *h = out.data + prefix;
		size_t hl = out.len - prefix, pos = 0;
		struct hdr_field f;
		int first = 1;
		while (hdr_next(h, hl, &pos, &f)) {
			if (hdr_is(&f, PHISH_FIELD) && !(first && m.reason != NULL))
				abort();
			first = 0;
		}
	}
	buf_free(&out);
	return 0;
}
