/* originator.h - may this header section go out under an authenticated user's name?
 *
 * The submission check of the originator fields (RFC 5322 3.6.2, 3.6.6): From, Sender,
 * Resent-From and Resent-Sender, every instance, found by the shared header reader (header.h),
 * so a name written "From :" or "fROM\t:" is the From field here exactly as it is for ENVELOPE
 * and for mail programs. The policy:
 * - the header section must read unambiguously: every line is a field with a valid name
 *   (ftext before the colon, blanks before the colon allowed), no NUL and no bare CR anywhere
 *   (readers disagree on those, and a disagreement is where a forged From hides);
 * - at most one From (RFC 5322 3.6 allows exactly one; ENVELOPE shows the first);
 * - every originator field is a valid address list (addr_parse_list) with at least one address;
 * - every address in them is one the caller's allowed() callback accepts.
 * Pure function: no allocation, no global state, safe on any thread.
 */
#ifndef POSTINO_ORIGINATOR_H
#define POSTINO_ORIGINATOR_H

#include <stddef.h>

/* Longest address reported back in a verdict (local@domain, RFC 5321 limits plus quoting). */
#define ORIG_ADDR_MAX 600

enum orig_result {
	ORIG_OK = 0,
	ORIG_NOT_YOURS,        /* field, address: an address allowed() refused */
	ORIG_BAD_ADDRESS,      /* field: not a valid address list, or one without an address */
	ORIG_MULTIPLE_FROM,    /* more than one From field */
	ORIG_MALFORMED,        /* line: a header line that is not a well-formed field */
	ORIG_LOOKUP_FAILED,    /* allowed() returned -1 (temporary failure) */
};

struct orig_verdict {
	enum orig_result result;
	const char *field;           /* canonical name: "From", "Sender", "Resent-From", ... */
	char address[ORIG_ADDR_MAX]; /* ORIG_NOT_YOURS: the refused address */
	size_t line;                 /* ORIG_MALFORMED: 1-based line number in the section */
	const char *why;             /* ORIG_MALFORMED: what is wrong with that line */
};

/* Check the header section hdr[0..len) (it may run on into the body: reading stops at the
 * empty line). allowed(ctx, "local@domain") returns 1 allowed, 0 not, -1 lookup failure.
 * Fills *v and returns v->result. */
enum orig_result originator_check(const char *hdr, size_t len,
				  int (*allowed)(void *ctx, const char *address), void *ctx,
				  struct orig_verdict *v);

#endif
