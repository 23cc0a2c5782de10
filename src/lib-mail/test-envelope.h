/* test-envelope.h - read back the from and sender lists of an ENVELOPE mime_envelope wrote.
 *
 * For test-header.c and fuzz-header.c only: they check that what the SMTP originator check
 * allowed is exactly what ENVELOPE shows. A strict reader of the RFC 3501 envelope syntax, so
 * it also catches malformed output. Static functions: include it in one file per program.
 */
#ifndef POSTINO_TEST_ENVELOPE_H
#define POSTINO_TEST_ENVELOPE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define TENV_ADDRS_MAX 64     /* addresses kept per list; later ones are only counted */
#define TENV_STR_MAX 1024     /* longest mailbox or host kept */

struct tenv_addr {
	char mailbox[TENV_STR_MAX], host[TENV_STR_MAX];
	int has_host;             /* 0: a group marker (host NIL) */
};

struct tenv_list {
	struct tenv_addr a[TENV_ADDRS_MAX];
	size_t n;                 /* addresses seen (may exceed TENV_ADDRS_MAX) */
};

struct tenv_rd {
	const char *s;
	size_t len, p;
};

/* Consume the literal text lit; 0 ok, -1 not there. */
static int tenv_lit(struct tenv_rd *r, const char *lit)
{
	size_t n = strlen(lit);
	if (r->len - r->p < n || memcmp(r->s + r->p, lit, n) != 0)
		return -1;
	r->p += n;
	return 0;
}

/* Read an nstring into out (NUL-terminated, cut at cap); *nil_r set for NIL. 0 ok, -1 bad. */
static int tenv_nstring(struct tenv_rd *r, char *out, size_t cap, int *nil_r)
{
	size_t o = 0;
	*nil_r = 0;
	if (tenv_lit(r, "NIL") == 0) {
		*nil_r = 1;
		if (cap > 0)
			out[0] = '\0';
		return 0;
	}
	if (r->p < r->len && r->s[r->p] == '"') {
		for (r->p++; r->p < r->len && r->s[r->p] != '"'; r->p++) {
			char c = r->s[r->p];
			if (c == '\r' || c == '\n')
				return -1;
			if (c == '\\') {
				if (++r->p >= r->len)
					return -1;
				c = r->s[r->p];
				if (c != '\\' && c != '"')
					return -1;
			}
			if (o + 1 < cap)
				out[o++] = c;
		}
		if (r->p >= r->len)
			return -1;
		r->p++;
		out[o] = '\0';
		return 0;
	}
	if (r->p < r->len && r->s[r->p] == '{') {
		size_t n = 0;
		for (r->p++; r->p < r->len && r->s[r->p] >= '0' && r->s[r->p] <= '9'; r->p++) {
			if (n > r->len)
				return -1;
			n = n * 10 + (size_t)(r->s[r->p] - '0');
		}
		if (tenv_lit(r, "}\r\n") < 0 || r->len - r->p < n)
			return -1;
		for (size_t i = 0; i < n; i++) {
			if (o + 1 < cap)
				out[o++] = r->s[r->p + i];
		}
		r->p += n;
		out[o] = '\0';
		return 0;
	}
	return -1;
}

/* Read an address list (NIL or "(" 1*address ")") into l. 0 ok, -1 bad syntax. */
static int tenv_list(struct tenv_rd *r, struct tenv_list *l)
{
	char scratch[TENV_STR_MAX];
	int nil;
	l->n = 0;
	if (tenv_lit(r, "NIL") == 0)
		return 0;
	if (tenv_lit(r, "(") < 0)
		return -1;
	do {
		struct tenv_addr tmp, *a = l->n < TENV_ADDRS_MAX ? &l->a[l->n] : &tmp;
		if (tenv_lit(r, "(") < 0 || tenv_nstring(r, scratch, sizeof(scratch), &nil) < 0 ||
		    tenv_lit(r, " ") < 0 || tenv_nstring(r, scratch, sizeof(scratch), &nil) < 0 ||
		    tenv_lit(r, " ") < 0 ||
		    tenv_nstring(r, a->mailbox, sizeof(a->mailbox), &nil) < 0 ||
		    tenv_lit(r, " ") < 0 || tenv_nstring(r, a->host, sizeof(a->host), &nil) < 0 ||
		    tenv_lit(r, ")") < 0)
			return -1;
		a->has_host = !nil;
		l->n++;
	} while (r->p < r->len && r->s[r->p] == '(');
	return tenv_lit(r, ")");
}

/* Parse env[0..len) as a whole ENVELOPE and return its from and sender lists. 0 ok, -1 bad. */
static int tenv_read(const char *env, size_t len, struct tenv_list *from, struct tenv_list *sender)
{
	struct tenv_rd r = { env, len, 0 };
	char *scratch = malloc(len + 1);
	struct tenv_list *other = malloc(sizeof(*other));
	int nil, rc = -1;
	if (scratch == NULL || other == NULL)
		goto out;
	if (tenv_lit(&r, "(") < 0 || tenv_nstring(&r, scratch, len + 1, &nil) < 0 ||
	    tenv_lit(&r, " ") < 0 || tenv_nstring(&r, scratch, len + 1, &nil) < 0 ||
	    tenv_lit(&r, " ") < 0 || tenv_list(&r, from) < 0 || tenv_lit(&r, " ") < 0 ||
	    tenv_list(&r, sender) < 0)
		goto out;
	for (int i = 0; i < 4; i++) {   /* reply-to to cc bcc */
		if (tenv_lit(&r, " ") < 0 || tenv_list(&r, other) < 0)
			goto out;
	}
	if (tenv_lit(&r, " ") < 0 || tenv_nstring(&r, scratch, len + 1, &nil) < 0 ||
	    tenv_lit(&r, " ") < 0 || tenv_nstring(&r, scratch, len + 1, &nil) < 0 ||
	    tenv_lit(&r, ")") < 0 || r.p != r.len)
		goto out;
	rc = 0;
out:
	free(scratch);
	free(other);
	return rc;
}

#endif
