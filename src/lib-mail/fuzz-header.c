/* fuzz-header.c - libFuzzer target for the shared header reader and the originator check.
 *
 * Build: see scripts/fuzz.sh (header.c, originator.c, addr.c, mime-*.c, buf.c, utf8.c,
 * base64.c). The input is a header section (it may run on into a body), used as is.
 * Besides memory errors it checks:
 * - hdr_next walks the input in order, each field's raw bytes lie inside it, name and value
 *   inside raw, and the fields end exactly where hdr_section_len says the body starts;
 * - originator_check is deterministic and its verdict is complete (field, address, line);
 * - the property the SMTP check exists for: when it accepts a header, ENVELOPE of that header
 *   as stored (behind our trace headers) shows in from and sender only addresses the check
 *   saw and approved, and at least one from when there is a From field.
 * The fuzzing policy approves realistic addresses whose local part starts with 'a', so both
 * accepted and refused headers are reached easily.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "header.h"
#include "mime.h"
#include "originator.h"
#include "test-envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SEEN_MAX 256   /* approved addresses remembered per input */

struct seen {
	char addr[FUZZ_SEEN_MAX][ORIG_ADDR_MAX];
	size_t n;
	int overflow;
};

/* The fuzzing policy: local part 'a' then [a-z0-9.], domain [a-z0-9.-]; remember approvals. */
static int fuzz_allowed(void *ctx, const char *address)
{
	struct seen *s = ctx;
	const char *at = strchr(address, '@');
	if (at == NULL || address[0] != 'a' || strlen(address) >= ORIG_ADDR_MAX)
		return 0;
	for (const char *p = address; *p; p++) {
		int ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
			 (p > at && *p == '-') || p == at;
		if (!ok)
			return 0;
	}
	if (s->n < FUZZ_SEEN_MAX)
		memcpy(s->addr[s->n++], address, strlen(address) + 1);
	else
		s->overflow = 1;
	return 1;
}

/* Was mailbox@host (host compared case-insensitively) approved by the check? */
static int was_approved(const struct seen *s, const struct tenv_addr *a)
{
	size_t ml = strlen(a->mailbox), hl = strlen(a->host);
	for (size_t i = 0; i < s->n; i++) {
		const char *x = s->addr[i];
		if (strlen(x) != ml + 1 + hl || memcmp(x, a->mailbox, ml) != 0 || x[ml] != '@')
			continue;
		size_t k;
		for (k = 0; k < hl; k++) {
			char c = a->host[k];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (x[ml + 1 + k] != c)
				break;
		}
		if (k == hl)
			return 1;
	}
	return 0;
}

/* Every address (with a host) of l was approved. */
static void check_list(const struct seen *s, const struct tenv_list *l)
{
	for (size_t i = 0; i < l->n && i < TENV_ADDRS_MAX; i++) {
		if (l->a[i].has_host && !was_approved(s, &l->a[i]))
			abort();   /* ENVELOPE shows an address the check never approved */
	}
}

/* The reader's contracts over the whole input. */
static void check_reader(const char *in, size_t size)
{
	struct hdr_field f;
	size_t pos = 0, prev_end = 0;
	while (hdr_next(in, size, &pos, &f)) {
		if (f.raw != in + prev_end || f.raw_len == 0 || pos != prev_end + f.raw_len ||
		    pos > size)
			abort();
		if (f.name < f.raw || f.name + f.name_len > f.raw + f.raw_len)
			abort();
		if (f.value_len > 0 &&
		    (f.value < f.raw || f.value + f.value_len > f.raw + f.raw_len))
			abort();
		if (f.has_colon != !(f.flags & HDR_F_NO_COLON))
			abort();
		prev_end = pos;
	}
	size_t hl = hdr_section_len(in, size);
	if (hl < prev_end || hl > size)
		abort();
	/* after the fields only the empty line (or nothing) is left of the section */
	if (hl - prev_end > 2)
		abort();
}

static const char trace[] = "Return-Path: <a@example.test>\r\nReceived: from x ([127.0.0.1])\r\n"
			    "\tby mail.example.test (postino) with ESMTPSA id 1; now\r\n";

/* One input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	static struct seen seen, again;
	static struct tenv_list from, sender;
	struct orig_verdict v, v2;

	check_reader(in, size);

	seen.n = 0;
	seen.overflow = 0;
	enum orig_result r = originator_check(in, size, fuzz_allowed, &seen, &v);
	again.n = 0;
	again.overflow = 0;
	if (originator_check(in, size, fuzz_allowed, &again, &v2) != r || v2.line != v.line ||
	    strcmp(v.address, v2.address) != 0)
		abort();
	if ((r == ORIG_NOT_YOURS && (v.field == NULL || v.address[0] == '\0')) ||
	    (r == ORIG_BAD_ADDRESS && v.field == NULL) ||
	    (r == ORIG_MALFORMED && (v.line == 0 || v.why == NULL)))
		abort();
	if (r != ORIG_OK || seen.overflow)
		return 0;

	/* accepted: ENVELOPE of the stored form must agree */
	size_t n = sizeof(trace) - 1 + size;
	char *msg = malloc(n);
	if (msg == NULL)
		return 0;
	memcpy(msg, trace, sizeof(trace) - 1);
	memcpy(msg + sizeof(trace) - 1, in, size);
	struct buf env;
	buf_init(&env, 1u << 24);
	if (mime_envelope(msg, mime_header_len(msg, n), &env) == 0) {
		if (tenv_read(env.data, env.len, &from, &sender) < 0)
			abort();   /* ENVELOPE output that is not RFC 3501 syntax */
		check_list(&seen, &from);
		check_list(&seen, &sender);
		struct hdr_field f;
		if (hdr_find(in, size, "From", &f) && from.n == 0)
			abort();   /* the check saw an address in From, ENVELOPE shows none */
	}
	buf_free(&env);
	free(msg);
	return 0;
}
