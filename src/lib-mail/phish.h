/* phish.h - phishing signs in a message arriving from the Internet, and the visible mark.
 *
 * Three signs (issue 12), looked for in every From and Reply-To field found by the shared
 * header reader (header.h) and parsed by addr.c (obsolete syntax, folding, groups):
 * - PHISH_DISPLAY_NAME: the display name of a From mailbox, RFC 2047 encoded-words decoded
 *   and quoted strings unquoted, names the provider ("TIM Assistenza <x@elsewhere.example>")
 *   or a hosted domain or one of its labels ("support@tim.it" <x@evil.example>), while the
 *   address is not in a hosted domain. Names are compared as UTS 39 skeletons of their case
 *   folded forms (ICU uspoof), whole words only, so "TІM" with a Cyrillic I matches "tim".
 * - PHISH_LOOKALIKE: a From or Reply-To domain that is not hosted here but whose skeleton
 *   equals a hosted domain's, is within a Damerau-Levenshtein distance of it (1, or 2 for
 *   hosted domains of 10 octets or more, never more than the policy's max_distance), starts
 *   with a hosted domain followed by a dot ("tim.it.evil.example"), or has a non-ASCII label
 *   made only of characters confusable with ASCII under an ASCII label ("аррӏе.com").
 * - PHISH_MIXED_SCRIPT: a label of such a domain fails ICU's restriction level
 *   MODERATELY_RESTRICTIVE (UTS 39 5.2: e.g. Latin mixed with Cyrillic or Greek), mixes
 *   digits of different systems or holds invisible characters. A genuine IDN in one script
 *   ("bücher.example", "пример.рф") passes.
 * - PHISH_REPLY_TO is decided by the caller: phish_check only reports that a Reply-To address
 *   is in another organisation (registrable domain, Public Suffix List via libpsl) than the
 *   From address; whether the sender is new to the recipient is the caller's knowledge.
 *
 * phish_rewrite writes the message with the X-Postino-Phishing field, and the subject tag
 * and/or the warning line, and without any X-Postino-Phishing field the sender put there.
 * Thread-safe: the ICU checker and the PSL are shared read-only after a pthread_once.
 */
#ifndef POSTINO_PHISH_H
#define POSTINO_PHISH_H

#include <stddef.h>

struct buf;
struct phish_policy;

#define PHISH_FIELD "X-Postino-Phishing"
/* Longest brand name, subject tag and warning line taken from the configuration: a warning
 * line must stay far below RFC 5322 2.1.1's 998 octets once quoted-printable encoded. */
#define PHISH_TEXT_MAX 240
/* Most brand names, and most hosted domains compared (a larger provider's list is cut, the
 * first ones kept: the comparison is linear in this per message). */
#define PHISH_BRANDS_MAX 32
#define PHISH_DOMAINS_MAX 4096
/* Reason text of the header field (a few items of bounded size). */
#define PHISH_REASON_MAX 900
#define PHISH_DOMAIN_MAX 256
#define PHISH_ADDR_MAX 600

enum phish_reason {
	PHISH_DISPLAY_NAME = 1 << 0,
	PHISH_LOOKALIKE = 1 << 1,
	PHISH_MIXED_SCRIPT = 1 << 2,
	PHISH_REPLY_TO = 1 << 3,
};

struct phish_verdict {
	unsigned reasons;                     /* enum phish_reason (PHISH_REPLY_TO: caller) */
	char from[PHISH_ADDR_MAX];            /* first From address, "" when there is none */
	char from_domain[PHISH_DOMAIN_MAX];
	int from_hosted;                      /* the From address is in a hosted domain */
	char display_hit[PHISH_DOMAIN_MAX];   /* what the display name imitates (ASCII) */
	char lookalike[PHISH_DOMAIN_MAX];     /* the lookalike domain (ASCII form) */
	char lookalike_of[PHISH_DOMAIN_MAX];  /* the hosted domain it imitates, or "" */
	char mixed[PHISH_DOMAIN_MAX];         /* the mixed-script domain (ASCII form) */
	int reply_to_elsewhere;               /* a Reply-To address in another organisation */
	char reply_domain[PHISH_DOMAIN_MAX];
};

enum phish_mark_mode { PHISH_MARK_HEADER, PHISH_MARK_SUBJECT, PHISH_MARK_BODY, PHISH_MARK_BOTH };
enum phish_applied { PHISH_APPLIED_SUBJECT = 1 << 0, PHISH_APPLIED_BODY = 1 << 1 };

struct phish_mark {
	enum phish_mark_mode mode;
	const char *tag;       /* subject tag, UTF-8 (RFC 2047 encoded when not ASCII) */
	const char *warning;   /* warning line, UTF-8 */
	const char *reason;    /* X-Postino-Phishing value from phish_describe; NULL: no finding */
};

/* A policy from the provider's names (comma-separated, UTF-8) and the hosted domains
 * (ASCII form, lower case); max_distance 0 turns the edit-distance rule off. NULL when out
 * of memory. Free with phish_policy_free. */
struct phish_policy *phish_policy_new(const char *brands, const char *const *hosted,
				      size_t nhosted, unsigned max_distance);
void phish_policy_free(struct phish_policy **p);

/* Look at the header section hdr[0..len) (reading stops at the empty line). Fills *v;
 * returns v->reasons. */
unsigned phish_check(const struct phish_policy *p, const char *hdr, size_t len,
		     struct phish_verdict *v);

/* The X-Postino-Phishing value for the reasons of v (ASCII, items folded onto lines of their
 * own, no final CRLF) into out[0..outlen). */
void phish_describe(const struct phish_verdict *v, char *out, size_t outlen);

/* Whether the header section hdr[0..len) holds an X-Postino-Phishing field. */
int phish_has_field(const char *hdr, size_t len);

/* Write msg[0..len) through emit(ctx, octets, n) (returns 0 ok, -1 failed): the first
 * prefix_len octets (our trace fields) as they are, then "X-Postino-Phishing: reason" when
 * m->reason is set, then the message's header without its X-Postino-Phishing fields and, as
 * m->mode asks, with the subject tag (a Subject field added when there is none), then the body
 * with the warning line at the top of the first inline text/plain part. The warning goes only
 * into a part where that is safe: 7bit, 8bit or quoted-printable (encoded to match), an
 * ASCII-compatible charset (UTF-8 when the warning is not ASCII), not under multipart/signed
 * or multipart/encrypted; otherwise, or when that part has alternatives (text/html beside it),
 * the subject is tagged as well. *applied_r: enum phish_applied. 0 ok, -1 emit failed or out
 * of memory. */
int phish_rewrite(const char *msg, size_t len, size_t prefix_len, const struct phish_mark *m,
		  int (*emit)(void *ctx, const char *p, size_t n), void *ctx, unsigned *applied_r);

/* Damerau-Levenshtein distance (optimal string alignment) of a and b, counted up to limit:
 * any larger distance is returned as limit + 1. Strings longer than PHISH_DOMAIN_MAX * 4
 * octets return limit + 1. */
unsigned phish_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned limit);

/* The UTS 39 skeleton of the case-folded UTF-8 text in[0..len) into out (NUL-terminated).
 * 0 ok, -1 malformed or too long. */
int phish_skeleton(const char *in, size_t len, char *out, size_t outlen);

#endif
