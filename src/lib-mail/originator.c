/* originator.c - the submission check of From, Sender, Resent-From, Resent-Sender. */
#include "originator.h"

#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "header.h"

/* The originator fields a mail program may show as "who sent this" (RFC 5322 3.6.2, 3.6.6). */
static const char *const orig_fields[] = { "From", "Sender", "Resent-From", "Resent-Sender" };

struct orig_ctx {
	int (*allowed)(void *ctx, const char *address);
	void *ctx;
	struct orig_verdict *v;
};

/* addr_parse_list callback: ask allowed() about one address; remember the first refusal. */
static void orig_address(void *ctx, const char *address)
{
	struct orig_ctx *c = ctx;
	if (c->v->result != ORIG_OK)
		return;
	int r = c->allowed(c->ctx, address);
	if (r < 0) {
		c->v->result = ORIG_LOOKUP_FAILED;
	} else if (r == 0) {
		c->v->result = ORIG_NOT_YOURS;
		snprintf(c->v->address, sizeof(c->v->address), "%s", address);
	}
}

/* Why field f cannot be read unambiguously, or NULL when it is well formed. */
static const char *malformed_why(const struct hdr_field *f)
{
	if (f->flags & HDR_F_NUL)
		return "it contains a NUL octet";
	if (f->flags & HDR_F_BARE_CR)
		return "it contains a CR that does not end the line";
	if (f->flags & HDR_F_NO_COLON)
		return "it has no colon (a header line is Name: value)";
	if (f->flags & HDR_F_BAD_NAME)
		return "its name is empty or holds a blank or a character not allowed in names";
	return NULL;
}

/* 1-based number of the line starting at hdr + off. */
static size_t line_number(const char *hdr, size_t off)
{
	size_t n = 1;
	for (const char *p = hdr; (p = memchr(p, '\n', off - (size_t)(p - hdr))) != NULL; p++)
		n++;
	return n;
}

/* Check every originator field of hdr[0..len) (see originator.h). */
enum orig_result originator_check(const char *hdr, size_t len,
				  int (*allowed)(void *ctx, const char *address), void *ctx,
				  struct orig_verdict *v)
{
	struct orig_ctx c = { allowed, ctx, v };
	struct hdr_field f;
	size_t pos = 0, nfrom = 0;
	memset(v, 0, sizeof(*v));
	v->result = ORIG_OK;
	while (hdr_next(hdr, len, &pos, &f)) {
		const char *why = malformed_why(&f);
		if (why != NULL) {
			v->result = ORIG_MALFORMED;
			v->line = line_number(hdr, (size_t)(f.raw - hdr));
			v->why = why;
			return v->result;
		}
		const char *name = NULL;
		for (size_t i = 0; i < sizeof(orig_fields) / sizeof(orig_fields[0]); i++) {
			if (hdr_is(&f, orig_fields[i]))
				name = orig_fields[i];
		}
		if (name == NULL)
			continue;
		v->field = name;
		if (name == orig_fields[0] && ++nfrom > 1) {
			v->result = ORIG_MULTIPLE_FROM;
			return v->result;
		}
		if (addr_parse_list(f.value, f.value_len, orig_address, &c) <= 0) {
			v->result = ORIG_BAD_ADDRESS;
			return v->result;
		}
		if (v->result != ORIG_OK)
			return v->result;
	}
	v->field = NULL;
	return v->result;
}
