/* header.c - the one reader of RFC 5322 header fields (see header.h for the rules). */
#include "header.h"

#include <string.h>

#include "buf.h"

/* ASCII lower-casing of one octet. */
static unsigned char lc(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* ASCII case-insensitive equality of s[0..n) and the NUL-terminated lit. */
int hdr_eq_ci(const char *s, size_t n, const char *lit)
{
	size_t i;
	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' || lc((unsigned char)s[i]) != lc((unsigned char)lit[i]))
			return 0;
	}
	return lit[i] == '\0';
}

/* Length of the empty line at s[p] ("\n" or "\r\n"), or 0 if the line is not empty. */
static size_t empty_line_len(const char *s, size_t len, size_t p)
{
	if (p < len && s[p] == '\n')
		return 1;
	if (p + 1 < len && s[p] == '\r' && s[p + 1] == '\n')
		return 2;
	return 0;
}

/* Whether c is ftext: printable US-ASCII except ':' (RFC 5322 3.6.8). */
static int is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/* Flags for the octets of raw[0..n): NUL anywhere, CR not followed by LF. */
static unsigned int scan_octets(const char *raw, size_t n)
{
	unsigned int flags = 0;
	if (memchr(raw, '\0', n) != NULL)
		flags |= HDR_F_NUL;
	for (const char *cr = memchr(raw, '\r', n); cr != NULL;) {
		size_t i = (size_t)(cr - raw);
		if (i + 1 >= n || raw[i + 1] != '\n') {
			flags |= HDR_F_BARE_CR;
			break;
		}
		cr = memchr(raw + i + 1, '\r', n - i - 1);
	}
	return flags;
}

/* Next field of hdr[0..len) from *pos on; stops at the empty line or at len. 1 field, 0 end. */
int hdr_next(const char *hdr, size_t len, size_t *pos, struct hdr_field *f)
{
	size_t start = *pos, p = start, le, first_end;
	if (start >= len || empty_line_len(hdr, len, start) != 0)
		return 0;
	/* the first line, then every following line that starts with a blank (RFC 5322 2.2.3) */
	const char *nl = memchr(hdr + p, '\n', len - p);
	first_end = nl != NULL ? (size_t)(nl - hdr) : len;
	le = nl != NULL ? first_end + 1 : len;
	while (le < len && (hdr[le] == ' ' || hdr[le] == '\t')) {
		p = le;
		nl = memchr(hdr + p, '\n', len - p);
		le = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
	}
	f->raw = hdr + start;
	f->raw_len = le - start;
	f->flags = scan_octets(f->raw, f->raw_len);

	const char *colon = memchr(hdr + start, ':', first_end - start);
	size_t vstart, vend = le;
	if (colon != NULL) {
		size_t ne = (size_t)(colon - hdr);
		while (ne > start && (hdr[ne - 1] == ' ' || hdr[ne - 1] == '\t')) {
			ne--;
			f->flags |= HDR_F_OBS_WSP;
		}
		f->name = hdr + start;
		f->name_len = ne - start;
		f->has_colon = 1;
		vstart = (size_t)(colon - hdr) + 1;
	} else {
		size_t ne = first_end;
		if (ne > start && hdr[ne - 1] == '\r')
			ne--;
		f->name = hdr + start;
		f->name_len = ne - start;
		f->has_colon = 0;
		f->flags |= HDR_F_NO_COLON;
		vstart = le;
	}
	if (f->name_len == 0)
		f->flags |= HDR_F_BAD_NAME;
	for (size_t i = 0; i < f->name_len; i++) {
		if (!is_ftext((unsigned char)f->name[i])) {
			f->flags |= HDR_F_BAD_NAME;
			break;
		}
	}
	if (vend > vstart && hdr[vend - 1] == '\n')
		vend--;
	if (vend > vstart && hdr[vend - 1] == '\r')
		vend--;
	f->value = hdr + vstart;
	f->value_len = vend > vstart ? vend - vstart : 0;
	*pos = le;
	return 1;
}

/* Whether f is a field called name. */
int hdr_is(const struct hdr_field *f, const char *name)
{
	return f->has_colon && hdr_eq_ci(f->name, f->name_len, name);
}

/* First field called name in hdr[0..len); 1 found (*f set), 0 not. */
int hdr_find(const char *hdr, size_t len, const char *name, struct hdr_field *f)
{
	size_t pos = 0;
	while (hdr_next(hdr, len, &pos, f)) {
		if (hdr_is(f, name))
			return 1;
	}
	return 0;
}

/* Length of the header section of msg[0..len), empty line included; len without one. */
size_t hdr_section_len(const char *msg, size_t len)
{
	size_t p = 0;
	while (p < len) {
		size_t b = empty_line_len(msg, len, p);
		if (b != 0)
			return p + b;
		const char *nl = memchr(msg + p, '\n', len - p);
		if (nl == NULL)
			return len;
		p = (size_t)(nl - msg) + 1;
	}
	return len;
}

/* Whether c is blank or a line-end octet (trimmed from both ends of a value). */
static int is_trim(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* f's value unfolded and trimmed into out. 0 ok, -1 full. */
int hdr_value_unfold(const struct hdr_field *f, struct buf *out)
{
	size_t s = 0, e = f->value_len;
	while (s < e && is_trim(f->value[s]))
		s++;
	while (e > s && is_trim(f->value[e - 1]))
		e--;
	size_t run = s;
	for (size_t i = s; i < e; i++) {
		if (f->value[i] != '\r' && f->value[i] != '\n')
			continue;
		if (buf_append(out, f->value + run, i - run) < 0)
			return -1;
		run = i + 1;
	}
	if (buf_append(out, f->value + run, e - run) < 0)
		return -1;
	return 0;
}
