/* fuzz-mime.c - libFuzzer target for the mime*.c parser and its IMAP writers.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/lib -Isrc/lib-mail \
 *        src/lib/buf.c src/lib-mail/mime*.c src/lib-mail/fuzz-mime.c -o fuzz-mime
 * Seeds: src/lib-mail/mime-corpus/ *.eml (copy them to a scratch directory first, libFuzzer
 * writes new inputs into the first directory it is given).
 * The input is the message, used as is (no NUL), so a read past its end is caught by ASan.
 * Besides memory errors it checks the contracts: every part range lies inside the message and
 * inside its parent, body-fld-lines equals the LF count, BODY / BODYSTRUCTURE / ENVELOPE are
 * well-formed IMAP (balanced lists of NIL, numbers, quoted strings and exact literals), and
 * section and BINARY results point inside the message or the caller's buffer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mime-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Check IMAP syntax of s[0..n): one parenthesised list of NIL / numbers / strings / lists. */
static void check_imap(const char *s, size_t n)
{
	size_t i = 0, depth = 0;
	int need_sep = 0;
	if (n == 0 || s[0] != '(')
		abort();
	while (i < n) {
		char c = s[i];
		if (c == ')') {
			if (depth == 0)
				abort();
			depth--;
			i++;
			need_sep = 1;
			if (depth == 0 && i != n)
				abort();
			continue;
		}
		if (need_sep && c != '(') {
			if (c != ' ')
				abort();
			i++;
			c = s[i];
			if (i >= n || c == ' ' || c == ')')
				abort();
		}
		need_sep = 1;
		if (c == '(') {
			depth++;
			i++;
			need_sep = 0;
		} else if (c == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				unsigned char q = (unsigned char)s[i];
				if (q == '\\') {
					if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\'))
						abort();
					i++;
				} else if (q == '\r' || q == '\n' || q == 0 || q >= 0x80) {
					abort();
				}
			}
			if (i >= n)
				abort();
			i++;
		} else if (c == '{') {
			size_t len = 0, start;
			for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
				len = len * 10 + (size_t)(s[i] - '0');
			if (i + 2 >= n || s[i] != '}' || s[i + 1] != '\r' || s[i + 2] != '\n')
				abort();
			start = i + 3;
			if (len > n - start || memchr(s + start, '\0', len) != NULL)
				abort();
			i = start + len;
		} else if (c >= '0' && c <= '9') {
			while (i < n && s[i] >= '0' && s[i] <= '9')
				i++;
		} else if (n - i >= 3 && memcmp(s + i, "NIL", 3) == 0) {
			i += 3;
		} else {
			abort();
		}
	}
	if (depth != 0)
		abort();
}

/* Check the ranges of p and its subtree; returns the number of parts. */
static size_t check_part(const struct mime_part *p, const char *msg, size_t len)
{
	size_t count = 1, lf = 0;
	if (p->hdr_off > len || p->hdr_len > len - p->hdr_off ||
	    p->body_off != p->hdr_off + p->hdr_len || p->body_len > len - p->body_off)
		abort();
	for (size_t i = 0; i < p->body_len; i++)
		lf += msg[p->body_off + i] == '\n';
	if (lf != p->lines || p->depth > MIME_DEPTH_MAX)
		abort();
	if ((p->flags & MIME_PART_RFC822) != 0 &&
	    (p->children == NULL || p->children->next != NULL))
		abort();
	size_t end = p->body_off + p->body_len, prev = p->body_off;
	for (const struct mime_part *c = p->children; c != NULL; c = c->next) {
		size_t cend = c->body_off + c->body_len;
		/* a header's blank line may also be the CRLF of the boundary that follows it
		 * (RFC 2046 gives that CRLF to the boundary; Dovecot, like us, to the header):
		 * only an empty body may end up to 2 octets past the parent's body */
		if (c->hdr_off < prev || (cend > end && c->body_len != 0) || cend > end + 2)
			abort();
		if (c->parent != p || c->depth != p->depth + 1)
			abort();
		prev = c->hdr_off;
		count += check_part(c, msg, len);
	}
	return count;
}

static const char *const sections[] = {
	"", "1", "2", "1.1", "1.2", "2.1", "1.1.1", "2.2.1", "3", "HEADER", "TEXT", "1.MIME",
	"2.MIME", "1.HEADER", "1.TEXT", "2.HEADER", "2.TEXT", "1.1.MIME", "1.1.HEADER",
	"HEADER.FIELDS (From To Subject)", "HEADER.FIELDS.NOT (Received Content-Type)",
	"1.HEADER.FIELDS (Subject \"Content-Type\")", "2.HEADER.FIELDS.NOT (X)", "bogus", "0",
};

/* Fuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *msg = (const char *)data;
	struct mime_part *root = mime_parse(msg, size);
	if (root == NULL)
		return 0;
	if (check_part(root, msg, size) > MIME_PARTS_MAX)
		abort();

	struct buf out, tmp;
	buf_init(&out, 1u << 26);
	buf_init(&tmp, 1u << 24);
	for (int ext = 0; ext < 2; ext++) {
		buf_reset(&out);
		if (mime_bodystructure(root, msg, ext, &out) != 0)
			abort();
		check_imap(out.data, out.len);
	}
	buf_reset(&out);
	size_t hl = mime_header_len(msg, size);
	if (hl > size || mime_envelope(msg, hl, &out) != 0)
		abort();
	check_imap(out.data, out.len);

	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		const char *d;
		size_t l;
		int r = mime_section(root, msg, size, sections[i], &tmp, &d, &l);
		if (r == 0) {
			int in_msg = d >= msg && l <= size && (size_t)(d - msg) <= size - l;
			int in_tmp = tmp.data != NULL && d == tmp.data && l == tmp.len;
			if (!in_msg && !in_tmp)
				abort();
		} else if (r != 1 && r != -1) {
			abort();
		}
		buf_reset(&out);
		r = mime_binary(root, msg, size, sections[i], &out);
		if (r < -2 || r > 1)
			abort();
	}

	buf_reset(&out);
	if (mime_header_get(msg, hl, "Subject", &out) < 0)
		abort();
	buf_reset(&out);
	if (mime_decode_words(msg, hl < 65536 ? hl : 65536, &out) != 0)
		abort();
	buf_free(&out);
	buf_free(&tmp);
	mime_free(&root);
	return 0;
}
