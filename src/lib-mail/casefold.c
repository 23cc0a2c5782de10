/* casefold.c - RFC 5051 i;unicode-casemap folding and substring matching over libunistring's
 * tables (u8_casefold: full case folding, then NFKD), with an ASCII fast path. */
#include "casefold.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>

#include "utf8.h"

/* Folding may grow text (U+FB03 "ﬃ" is 3 octets and folds to "ffi"; NFKD of U+FDFA is 18
 * characters), so the output is bounded on its own: a message body we search is at most a few
 * tens of MB, and a folded form beyond this is refused (the caller falls back to ASCII). */
#define CASEFOLD_OUT_MAX ((size_t)256 << 20)
/* Folded non-ASCII runs up to this size need no malloc (a run is usually one word or less). */
#define CASEFOLD_RUN_BUF 256

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

/* The folded forms of U+0080..U+07FF (two-octet UTF-8: Latin, Greek, Cyrillic, Hebrew, Arabic),
 * computed once by libunistring, so that text in those scripts is folded by table lookup.
 * Folding one character at a time gives the whole run's result when no combining mark can be
 * reordered across characters (UAX 15 canonical ordering): so a character is cached only when
 * it is not itself a combining mark and its folded form starts with a starter. */
#define CASEFOLD_CACHE_FIRST 0x80
#define CASEFOLD_CACHE_END 0x800
#define CASEFOLD_CACHE_OUT 14          /* longest cached form; "DŽ" -> "dz" U+030C is 4 */

struct fold_cached {
	uint8_t ok;                    /* 1: use s[0..len) */
	uint8_t len;
	uint8_t s[CASEFOLD_CACHE_OUT];
};

static struct fold_cached fold_cache[CASEFOLD_CACHE_END - CASEFOLD_CACHE_FIRST];
static pthread_once_t fold_cache_once = PTHREAD_ONCE_INIT;

/* Fill fold_cache (once per process). */
static void fold_cache_init(void)
{
	for (ucs4_t c = CASEFOLD_CACHE_FIRST; c < CASEFOLD_CACHE_END; c++) {
		struct fold_cached *e = &fold_cache[c - CASEFOLD_CACHE_FIRST];
		uint8_t in[UTF8_SEQ_MAX];
		size_t il = utf8_encode(c, in);
		uint8_t out[64];
		size_t ol = sizeof(out);
		uint32_t first;
		if (uc_combining_class(c) != UC_CCC_NR)
			continue;
		uint8_t *r = u8_casefold(in, il, NULL, UNINORM_NFKD, out, &ol);
		if (r == NULL)
			continue;
		if (ol > 0 && ol <= CASEFOLD_CACHE_OUT && utf8_decode(r, ol, 0, &first) > 0 &&
		    uc_combining_class(first) == UC_CCC_NR) {
			memcpy(e->s, r, ol);
			e->len = (uint8_t)ol;
			e->ok = 1;
		}
		if (r != out)
			free(r);
	}
}

/* Fold valid UTF-8 s[0..n) through fold_cache when every character is in it; 1 done, 0 not
 * (nothing appended), -1 error. */
static int fold_cached_run(struct fold_out *o, const uint8_t *s, size_t n)
{
	size_t start = o->len;
	uint32_t c;
	pthread_once(&fold_cache_once, fold_cache_init);
	for (size_t i = 0; i < n; i += 2) {   /* two-octet sequences only: U+0080..U+07FF */
		if (utf8_decode(s + i, n - i, 0, &c) != 2 || !fold_cache[c - CASEFOLD_CACHE_FIRST].ok) {
			o->len = start;       /* take back what this run appended */
			if (o->data != NULL)
				o->data[start] = '\0';
			return 0;
		}
		const struct fold_cached *e = &fold_cache[c - CASEFOLD_CACHE_FIRST];
		if (out_append(o, e->s, e->len) < 0)
			return -1;
	}
	return 1;
}

/* Fold one valid UTF-8 run and append it to o; 0 ok, -1 error. */
static int fold_run(struct fold_out *o, const uint8_t *s, size_t n)
{
	if (n == 0)
		return 0;
	int c = fold_cached_run(o, s, n);
	if (c != 0)
		return c < 0 ? -1 : 0;
	uint8_t small[CASEFOLD_RUN_BUF];
	size_t rl = sizeof(small);
	uint8_t *r = u8_casefold(s, n, NULL, UNINORM_NFKD, small, &rl);
	if (r == NULL)
		return -1;
	int ret = out_append(o, r, rl);
	if (r != small)
		free(r);
	return ret;
}

/* Fold a run of non-ASCII octets: its valid UTF-8 stretches folded, invalid octets kept as they
 * are. 0 ok, -1 error. */
static int fold_nonascii(struct fold_out *o, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;
	while (p < end) {
		size_t run = utf8_valid_prefix(p, (size_t)(end - p), 0);
		if (fold_run(o, p, run) < 0)
			return -1;
		p += run;
		if (p < end) {            /* an invalid octet: kept as it is */
			if (out_append(o, p, 1) < 0)
				return -1;
			p++;
		}
	}
	return 0;
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
		/* ASCII characters are starters that neither fold to nor decompose into anything
		 * else, so text can be folded run by run: ASCII runs lower-cased here, only the
		 * non-ASCII runs between them through libunistring (about 100 times slower) */
		const uint8_t *p = (const uint8_t *)s, *end = p + len;
		while (p < end) {
			const uint8_t *q = p;
			while (q < end && *q < 0x80)
				q++;
			if (q > p) {
				size_t at = o.len;
				if (out_append(&o, p, (size_t)(q - p)) < 0)
					goto fail;
				for (size_t i = at; i < o.len; i++)
					o.data[i] = (char)ascii_lower((unsigned char)o.data[i]);
				p = q;
			}
			while (q < end && *q >= 0x80)
				q++;
			if (fold_nonascii(&o, p, (size_t)(q - p)) < 0)
				goto fail;
			p = q;
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
			while (fl > 0 && utf8_is_continuation((unsigned char)f[fl]))
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
