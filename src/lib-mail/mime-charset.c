/* mime-charset.c - charsets to UTF-8, and RFC 2047 encoded-words (for SEARCH and SORT).
 *
 * UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and Windows-1252 are converted here (they cover
 * most mail and need no locale data); every other charset goes through iconv(3). Charset
 * names are checked before they reach iconv_open: only letters, digits and "-_.:+()" and at
 * most MIME_CHARSET_NAME_MAX of them, so no "//TRANSLIT"-style suffixes get through.
 * Malformed input never fails: it becomes U+FFFD.
 */
#include "mime-private.h"
#include "base64.h"
#include "utf8.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

enum charset_kind { CS_UTF8, CS_ASCII, CS_LATIN1, CS_LATIN9, CS_CP1252, CS_OTHER };

/* Windows-1252 0x80-0x9f; the five unassigned bytes map to the C1 controls (WHATWG). */
static const uint16_t cp1252_c1[32] = {
	0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
	0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
};

/* Append s[0..n) keeping well-formed UTF-8, malformed octets as U+FFFD; drop_crlf drops CR
 * and LF (unfolding). */
static int utf8_clean(struct buf *out, const unsigned char *s, size_t n, int drop_crlf)
{
	size_t run = 0, i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80 && !(drop_crlf && (c == '\r' || c == '\n'))) {
			i++;
			continue;
		}
		if (buf_append(out, s + run, i - run) < 0)
			return -1;
		if (c < 0x80) {
			i++;
		} else {
			size_t l = utf8_decode(s + i, n - i, 0, NULL);
			if (l == 0) {
				if (utf8_append(out, 0xfffd) < 0)
					return -1;
				i++;
			} else {
				if (buf_append(out, s + i, l) < 0)
					return -1;
				i += l;
			}
		}
		run = i;
	}
	return buf_append(out, s + run, n - run);
}

/* Which converter handles the charset name cs[0..n)? */
static enum charset_kind charset_kind(const char *cs, size_t n)
{
	static const struct {
		const char *name;
		enum charset_kind kind;
	} names[] = {
		{ "utf-8", CS_UTF8 }, { "utf8", CS_UTF8 },
		{ "us-ascii", CS_ASCII }, { "ascii", CS_ASCII }, { "us", CS_ASCII },
		{ "ansi_x3.4-1968", CS_ASCII },
		{ "iso-8859-1", CS_LATIN1 }, { "iso8859-1", CS_LATIN1 },
		{ "iso_8859-1", CS_LATIN1 },
		{ "latin1", CS_LATIN1 }, { "latin-1", CS_LATIN1 }, { "l1", CS_LATIN1 },
		{ "iso-8859-15", CS_LATIN9 }, { "iso8859-15", CS_LATIN9 },
		{ "iso_8859-15", CS_LATIN9 }, { "latin9", CS_LATIN9 }, { "latin-9", CS_LATIN9 },
		{ "windows-1252", CS_CP1252 }, { "cp1252", CS_CP1252 },
		{ "x-cp1252", CS_CP1252 },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (hdr_eq_ci(cs, n, names[i].name))
			return names[i].kind;
	}
	return CS_OTHER;
}

/* Map one ISO-8859-15 octet >= 0xa0 to its code point. */
static uint32_t latin9_cp(unsigned char c)
{
	switch (c) {
	case 0xa4: return 0x20ac;
	case 0xa6: return 0x0160;
	case 0xa8: return 0x0161;
	case 0xb4: return 0x017d;
	case 0xb8: return 0x017e;
	case 0xbc: return 0x0152;
	case 0xbd: return 0x0153;
	case 0xbe: return 0x0178;
	default: return c;
	}
}

/* Convert through iconv(3). 0 ok, -1 out full, -2 charset unknown to iconv or unsafe name. */
static int via_iconv(const char *cs, size_t n, const unsigned char *in, size_t len,
		     struct buf *out)
{
	char name[MIME_CHARSET_NAME_MAX + 1];
	if (n == 0 || n > MIME_CHARSET_NAME_MAX)
		return -2;
	for (size_t i = 0; i < n; i++) {
		char c = cs[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("-_.:+()", c) != NULL) || c == '\0')
			return -2;
		name[i] = c;
	}
	name[n] = '\0';
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return -2;
	char *ip = (char *)(uintptr_t)in;
	size_t ileft = len;
	char obuf[1024];
	int ret = 0;
	while (ileft > 0 && ret == 0) {
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
		int e = errno;
		if (buf_append(out, obuf, (size_t)(op - obuf)) < 0) {
			ret = -1;
			break;
		}
		if (r != (size_t)-1 || e == E2BIG)
			continue;
		/* EILSEQ: skip one octet; EINVAL (truncated at the end) or other: stop */
		if (utf8_append(out, 0xfffd) < 0)
			ret = -1;
		if (e != EILSEQ)
			break;
		ip++;
		ileft--;
	}
	if (ret == 0) {
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		if (iconv(cd, NULL, NULL, &op, &oleft) != (size_t)-1 &&
		    buf_append(out, obuf, (size_t)(op - obuf)) < 0)
			ret = -1;
	}
	iconv_close(cd);
	return ret;
}

/* Convert in[0..len) from charset cs[0..cslen) to UTF-8. 0 ok, -1 full, -2 unknown. */
int mime_charset_to_utf8(const char *cs, size_t cslen, const unsigned char *in, size_t len,
			 struct buf *out)
{
	enum charset_kind k = charset_kind(cs, cslen);
	if (k == CS_UTF8)
		return utf8_clean(out, in, len, 0);
	if (k == CS_OTHER)
		return via_iconv(cs, cslen, in, len, out);
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = in[i];
		if (c < 0x80)
			continue;
		if (buf_append(out, in + run, i - run) < 0)
			return -1;
		run = i + 1;
		uint32_t cp = c;
		if (k == CS_ASCII)
			cp = 0xfffd;
		else if (k == CS_LATIN9 && c >= 0xa0)
			cp = latin9_cp(c);
		else if (k == CS_CP1252 && c < 0xa0)
			cp = cp1252_c1[c - 0x80];
		if (utf8_append(out, cp) < 0)
			return -1;
	}
	return buf_append(out, in + run, len - run);
}

/* An RFC 2047 encoded-word: =?charset?E?text?= */
struct ew {
	const char *cs;
	size_t cslen;	/* without an RFC 2231 "*language" suffix */
	char enc;	/* 'B' or 'Q' */
	const char *text;
	size_t tlen;
	size_t end;	/* offset just after "?=" */
};

/* Parse an encoded-word at in[p] ("=?"). 1 found, 0 not an encoded-word. */
static int ew_parse(const char *in, size_t len, size_t p, struct ew *w)
{
	size_t q = p + 2, s = q;
	if (p + 1 >= len || in[p] != '=' || in[p + 1] != '?')
		return 0;
	while (q < len && in[q] != '?') {
		unsigned char c = (unsigned char)in[q];
		if (c <= 0x20 || c >= 0x7f || q - s > MIME_CHARSET_NAME_MAX + 20)
			return 0;
		q++;
	}
	if (q == s || q + 2 >= len || in[q + 2] != '?')
		return 0;
	w->cs = in + s;
	w->cslen = q - s;
	const char *star = memchr(w->cs, '*', w->cslen);
	if (star != NULL)
		w->cslen = (size_t)(star - w->cs);
	char e = in[q + 1];
	if (e == 'b' || e == 'B')
		w->enc = 'B';
	else if (e == 'q' || e == 'Q')
		w->enc = 'Q';
	else
		return 0;
	q += 3;
	s = q;
	while (q < len && in[q] != '?') {
		unsigned char c = (unsigned char)in[q];
		if (c <= 0x20 || c >= 0x7f)
			return 0;	/* encoded-text has no white space (RFC 2047 5) */
		q++;
	}
	if (q + 1 >= len || in[q + 1] != '=' || w->cslen == 0)
		return 0;
	w->text = in + s;
	w->tlen = q - s;
	w->end = q + 2;
	return 1;
}

/* Append the octets of an encoded-word's text (B or Q decoded). */
static int ew_decode(const struct ew *w, struct buf *out)
{
	if (w->enc == 'B')
		return base64_decode_lenient(w->text, w->tlen, out);
	for (size_t i = 0; i < w->tlen; i++) {
		unsigned char c = (unsigned char)w->text[i];
		if (c == '_') {
			c = ' ';
		} else if (c == '=' && i + 2 < w->tlen &&
			   mime_hexval((unsigned char)w->text[i + 1]) >= 0 &&
			   mime_hexval((unsigned char)w->text[i + 2]) >= 0) {
			c = (unsigned char)(mime_hexval((unsigned char)w->text[i + 1]) * 16 +
					    mime_hexval((unsigned char)w->text[i + 2]));
			i += 2;
		}
		if (buf_append(out, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* Is c linear white space as it may separate encoded-words? */
static int is_lwsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Emit a run of adjacent same-charset words; unknown charset keeps raw[0..rawlen). */
static int run_flush(struct buf *out, const struct ew *w, struct buf *pend, const char *raw,
		     size_t rawlen)
{
	const unsigned char *d = (const unsigned char *)(pend->data != NULL ? pend->data : "");
	int r = mime_charset_to_utf8(w->cs, w->cslen, d, pend->len, out);
	buf_reset(pend);
	if (r == -2)
		return utf8_clean(out, (const unsigned char *)raw, rawlen, 1);
	return r;
}

/* Decode RFC 2047 encoded-words in in[0..len) to UTF-8. 0 ok, -1 out full. */
int mime_decode_words(const char *in, size_t len, struct buf *out)
{
	struct buf pend;
	struct ew w, nw;
	size_t p = 0, plain = 0;
	int r = 0;
	buf_init(&pend, len + 1);
	while (p < len && r == 0) {
		if (in[p] != '=' || !ew_parse(in, len, p, &w)) {
			p++;
			continue;
		}
		if (utf8_clean(out, (const unsigned char *)in + plain, p - plain, 1) < 0) {
			r = -1;
			break;
		}
		/* a run of encoded-words with the same charset, white space between dropped */
		size_t run_start = p;
		if (ew_decode(&w, &pend) < 0) {
			r = -1;
			break;
		}
		p = w.end;
		for (;;) {
			size_t q = p;
			while (q < len && is_lwsp(in[q]))
				q++;
			if (q >= len || in[q] != '=' || !ew_parse(in, len, q, &nw))
				break;
			if (nw.cslen != w.cslen || strncasecmp(nw.cs, w.cs, w.cslen) != 0) {
				/* different charset: flush, still drop the white space between */
				if (run_flush(out, &w, &pend, in + run_start, p - run_start) < 0) {
					r = -1;
					break;
				}
				w = nw;
				run_start = q;
			}
			if (ew_decode(&nw, &pend) < 0) {
				r = -1;
				break;
			}
			p = nw.end;
		}
		if (r == 0 && run_flush(out, &w, &pend, in + run_start, p - run_start) < 0)
			r = -1;
		plain = p;
	}
	if (r == 0 && utf8_clean(out, (const unsigned char *)in + plain, len - plain, 1) < 0)
		r = -1;
	buf_free(&pend);
	return r;
}
