/* casefold.c - RFC 5051 i;unicode-casemap folding and substring matching over libunistring's
 * tables (u8_casefold: full case folding, then NFKD), with an ASCII fast path. */
#include "casefold.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

/* Folding may grow text (U+FB03 "ﬃ" is 3 octets and folds to "ffi"; NFKD of U+FDFA is 18
 * characters), so the output is bounded on its own: a message body we search is at most a few
 * tens of MB, and a folded form beyond this is refused (the caller falls back to ASCII). */
#define CASEFOLD_OUT_MAX ((size_t)256 << 20)

/* Whether s[0..len) has only ASCII octets. */
static int is_ascii(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len; i++)
		if (p[i] & 0x80)
			return 0;
	return 1;
}

/* Lower-case ASCII letter of c (other octets unchanged). */
static unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

struct fold_out {
	char *data;
	size_t len, cap;
};

/* Append n octets to o, growing it; 0 ok, -1 memory or over CASEFOLD_OUT_MAX. */
static int out_append(struct fold_out *o, const void *p, size_t n)
{
	if (n > CASEFOLD_OUT_MAX - o->len)
		return -1;
	if (o->len + n + 1 > o->cap) {
		size_t ncap = o->cap ? o->cap : 64;
		while (ncap < o->len + n + 1)
			ncap *= 2;
		char *d = realloc(o->data, ncap);
		if (d == NULL)
			return -1;
		o->data = d;
		o->cap = ncap;
	}
	memcpy(o->data + o->len, p, n);
	o->len += n;
	o->data[o->len] = '\0';
	return 0;
}

/* Fold one valid UTF-8 run and append it to o; 0 ok, -1 error. */
static int fold_run(struct fold_out *o, const uint8_t *s, size_t n)
{
	if (n == 0)
		return 0;
	size_t rl = 0;
	uint8_t *r = u8_casefold(s, n, NULL, UNINORM_NFKD, NULL, &rl);
	if (r == NULL)
		return -1;
	int ret = out_append(o, r, rl);
	free(r);
	return ret;
}

/* Fold s[0..len) into a new string (see casefold.h). */
int casefold_dup(const char *s, size_t len, char **out_r, size_t *len_r)
{
	struct fold_out o = { NULL, 0, 0 };
	*out_r = NULL;
	*len_r = 0;
	if (is_ascii(s, len)) {
		if (out_append(&o, s, len) < 0)
			return -1;
		for (size_t i = 0; i < len; i++)
			o.data[i] = (char)ascii_lower((unsigned char)o.data[i]);
	} else {
		const uint8_t *p = (const uint8_t *)s, *end = p + len;
		while (p < end) {
			const uint8_t *bad = u8_check(p, (size_t)(end - p));
			size_t run = bad ? (size_t)(bad - p) : (size_t)(end - p);
			if (fold_run(&o, p, run) < 0)
				goto fail;
			p += run;
			if (bad != NULL) {        /* an invalid octet: kept as it is */
				if (out_append(&o, p, 1) < 0)
					goto fail;
				p++;
			}
		}
	}
	if (o.data == NULL && out_append(&o, "", 0) < 0)
		return -1;
	*out_r = o.data;
	*len_r = o.len;
	return 0;
fail:
	free(o.data);
	return -1;
}

/* ASCII case-insensitive search for needle[0..nl) in hay[0..hl) (NUL octets compared too). */
static int ascii_contains(const char *hay, size_t hl, const char *needle, size_t nl)
{
	const unsigned char *h = (const unsigned char *)hay, *n = (const unsigned char *)needle;
	if (nl == 0)
		return 1;
	for (size_t i = 0; nl <= hl && i <= hl - nl; i++) {
		size_t j = 0;
		while (j < nl && ascii_lower(h[i + j]) == ascii_lower(n[j]))
			j++;
		if (j == nl)
			return 1;
	}
	return 0;
}

/* Folded substring test (see casefold.h). */
int casefold_contains(const char *hay, size_t hl, const char *needle, size_t nl)
{
	if (nl == 0)
		return 1;
	/* An ASCII hit in the raw text is a hit in the folded text: ASCII folds to itself, and
	 * decomposition never rewrites an ASCII character. */
	if (is_ascii(needle, nl) && ascii_contains(hay, hl, needle, nl))
		return 1;
	if (is_ascii(hay, hl))   /* its folded form is itself lower-cased: no hit above, none */
		return 0;
	char *f;
	size_t fl;
	if (casefold_dup(hay, hl, &f, &fl) < 0)
		return ascii_contains(hay, hl, needle, nl);
	int r = memmem(f, fl, needle, nl) != NULL;
	free(f);
	return r;
}

/* Fold a sort key in place, ASCII letters upper-cased (see casefold.h). */
void casefold_sort_key(char *buf, size_t cap)
{
	if (cap == 0)
		return;
	size_t len = strnlen(buf, cap - 1);
	char *f = NULL;
	size_t fl = 0;
	if (!is_ascii(buf, len) && casefold_dup(buf, len, &f, &fl) == 0) {
		if (fl >= cap) {         /* cut before a UTF-8 continuation octet */
			fl = cap - 1;
			while (fl > 0 && ((unsigned char)f[fl] & 0xc0) == 0x80)
				fl--;
		}
		memcpy(buf, f, fl);
		buf[fl] = '\0';
		len = fl;
	}
	free(f);
	for (size_t i = 0; i < len; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - ('a' - 'A'));
}
