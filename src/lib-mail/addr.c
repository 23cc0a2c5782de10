/* addr.c - RFC 5321 paths and RFC 5322 address lists, with RFC 6531/6532 UTF-8.
 *
 * Two parsers share the checks for domains and the canonical writer, so an address taken from a
 * From: header is held to the same rules as an envelope address and compares equal to it once
 * formatted. Nothing here allocates or keeps state. Every loop tests its index against len before
 * it reads, so input that is not NUL-terminated is fine.
 */
#include "addr.h"
#include "idn.h"
#include "utf8.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

/* RFC 1035 2.3.4: a DNS label is at most 63 octets (checked for ASCII labels; a U-label's limit
 * applies to its A-label form, which we do not compute). */
#define ADDR_LABEL_MAX 63
/* Nesting depth of RFC 5322 comments "(a (b))"; mailers use one or two levels. */
#define ADDR_COMMENT_DEPTH_MAX 16
/* Longest text of an IPv6 address (RFC 4291 2.2, including an embedded IPv4 tail). */
#define ADDR_IPV6_TEXT_MAX 45
/* Room for a formatted address: a quoted local part in which every octet may need a backslash,
 * the quotes, '@', the domain and the NUL. */
#define ADDR_FORMAT_MAX (2 * sizeof(((struct addr *)0)->local) + 3 + ADDR_DOMAIN_MAX + 1)

/* ASCII letter or digit (RFC 5321 Let-dig). */
static int is_letdig(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 5322 3.2.3 atext, ASCII part (RFC 5321 uses the same set). */
static int is_atext(unsigned char c)
{
	return is_letdig(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* ASCII case-insensitive comparison of s[0..n) with the lower-case literal lc. */
static int ascii_prefix_ci(const char *s, size_t len, const char *lc)
{
	size_t n = strlen(lc);
	if (len < n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)lc[i])
			return 0;
	}
	return 1;
}

/* Number of octets at the start of s[0..len) that may belong to a domain name. */
static size_t domain_span(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (!is_letdig(c) && c != '-' && c != '.' && c < 0x80)
			break;
		i++;
	}
	return i;
}

/* Check s[0..len) as an RFC 5321 Domain (RFC 6531 U-labels too when allow_utf8) and store it
 * lower-cased in out (ADDR_DOMAIN_MAX + 1 octets), setting ADDR_F_UTF8 in *flags if it has
 * non-ASCII octets. 0 ok, -1 not a domain name. */
static int domain_check(const char *s, size_t len, int allow_utf8, char *out, unsigned *flags)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t label = 0;        /* octets in the current label so far */
	int ascii = 1;           /* the current label is all ASCII */
	unsigned char prev = '.';
	if (len == 0 || len > ADDR_DOMAIN_MAX)
		return -1;
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		if (c == '.') {
			if (label == 0 || prev == '-' || (ascii && label > ADDR_LABEL_MAX))
				return -1;
			label = 0;
			ascii = 1;
			prev = c;
			out[i++] = '.';
		} else if (c >= 0x80) {
			size_t n = allow_utf8 ? utf8_decode(u + i, len - i, 0, NULL) : 0;
			if (n == 0)
				return -1;
			memcpy(out + i, s + i, n);
			i += n;
			label += n;
			ascii = 0;
			prev = 'x';
			*flags |= ADDR_F_UTF8;
		} else if (is_letdig(c) || (c == '-' && label > 0)) {
			out[i++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
			label++;
			prev = c;
		} else {
			return -1;
		}
	}
	if (label == 0 || prev == '-' || (ascii && label > ADDR_LABEL_MAX))
		return -1;
	out[len] = '\0';
	return 0;
}

/* Check s[0..len) as four dot-separated decimal numbers 0..255 (RFC 5321 IPv4-address-literal). */
static int ipv4_check(const char *s, size_t len)
{
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t digits = 0;
		if (part > 0) {
			if (i >= len || s[i] != '.')
				return -1;
			i++;
		}
		while (i < len && digits < 3 && s[i] >= '0' && s[i] <= '9') {
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || v > 255)
			return -1;
	}
	return i == len ? 0 : -1;
}

/* Check s[0..len) as an RFC 5321 address-literal "[...]": IPv4 or "IPv6:" forms. 0 ok, -1 not.
 * General-address-literal ("[tag:...]") is refused: IANA has registered no tag besides IPv6. */
static int literal_check(const char *s, size_t len)
{
	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return -1;
	s++;
	len -= 2;
	if (ascii_prefix_ci(s, len, "ipv6:")) {
		char text[ADDR_IPV6_TEXT_MAX + 1];
		struct in6_addr in6;
		size_t n = len - 5;
		if (n == 0 || n > ADDR_IPV6_TEXT_MAX || memchr(s + 5, '\0', n) != NULL)
			return -1;
		memcpy(text, s + 5, n);
		text[n] = '\0';
		return inet_pton(AF_INET6, text, &in6) == 1 ? 0 : -1;
	}
	return ipv4_check(s, len);
}

/* Set ADDR_F_RELAYCHARS if the decoded local part holds '%', '!' or '@'. */
static void local_relay_flag(struct addr *a)
{
	if (strpbrk(a->local, "%!@") != NULL)
		a->flags |= ADDR_F_RELAYCHARS;
}

/* Parse an RFC 5321 Local-part at s[*pos] (Dot-string or Quoted-string, RFC 6531 UTF-8 when
 * allow_utf8) into a->local, decoded. The limit is on the octets as written. 0 ok with *pos just
 * past it, -1 syntax error. */
static int path_local(const char *s, size_t len, size_t *pos, int allow_utf8, struct addr *a)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t start = *pos, i = *pos, o = 0;
	if (i < len && s[i] == '"') {
		a->flags |= ADDR_F_QUOTED;
		i++;
		for (;;) {
			if (i >= len)
				return -1;
			unsigned char c = u[i];
			if (c == '"') {
				i++;
				break;
			}
			if (c == '\\') {
				/* quoted-pairSMTP = "\" %d32-126 */
				if (i + 1 >= len || u[i + 1] < 32 || u[i + 1] > 126)
					return -1;
				a->local[o++] = s[i + 1];
				i += 2;
			} else if (c >= 0x80) {
				size_t n = allow_utf8 ? utf8_decode(u + i, len - i, 0, NULL) : 0;
				if (n == 0)
					return -1;
				memcpy(a->local + o, s + i, n);
				o += n;
				i += n;
				a->flags |= ADDR_F_UTF8;
			} else if (c >= 32 && c <= 126) {
				a->local[o++] = s[i++];
			} else {
				return -1;
			}
			/* checked each step, so o never passes ADDR_LOCAL_MAX + 4 */
			if (i - start > ADDR_LOCAL_MAX)
				return -1;
		}
	} else {
		int need_atom = 1;   /* empty, or just after a dot */
		while (i < len) {
			unsigned char c = u[i];
			if (c == '.') {
				if (need_atom)
					return -1;
				need_atom = 1;
				a->local[o++] = s[i++];
			} else if (is_atext(c)) {
				need_atom = 0;
				a->local[o++] = s[i++];
			} else if (c >= 0x80) {
				size_t n = allow_utf8 ? utf8_decode(u + i, len - i, 0, NULL) : 0;
				if (n == 0)
					return -1;
				memcpy(a->local + o, s + i, n);
				o += n;
				i += n;
				need_atom = 0;
				a->flags |= ADDR_F_UTF8;
			} else {
				break;
			}
			if (i - start > ADDR_LOCAL_MAX)
				return -1;
		}
		if (need_atom)
			return -1;
	}
	if (i - start > ADDR_LOCAL_MAX)
		return -1;
	a->local[o] = '\0';
	local_relay_flag(a);
	*pos = i;
	return 0;
}

/* The body of addr_parse_path: fills a and sets *end_r to the index after '>'. 0 ok, -1 error. */
static int path_parse(const char *s, size_t len, int allow_utf8, struct addr *a, size_t *end_r)
{
	size_t i = 1;
	/* the whole path, brackets and route included, must fit ADDR_PATH_MAX: a '>' later than
	 * that is not looked for */
	if (len > ADDR_PATH_MAX)
		len = ADDR_PATH_MAX;
	if (len < 2 || s[0] != '<')
		return -1;
	if (s[1] == '>') {
		a->flags = ADDR_F_NULL;
		*end_r = 2;
		return 0;
	}
	if (s[i] == '@') {
		/* A-d-l = At-domain *( "," At-domain ) ":" */
		char scratch[ADDR_DOMAIN_MAX + 1];
		unsigned scratch_flags = 0;
		for (;;) {
			if (i >= len || s[i] != '@')
				return -1;
			i++;
			size_t n = domain_span(s + i, len - i);
			if (domain_check(s + i, n, allow_utf8, scratch, &scratch_flags) < 0)
				return -1;
			i += n;
			if (i < len && s[i] == ',') {
				i++;
			} else if (i < len && s[i] == ':') {
				i++;
				break;
			} else {
				return -1;
			}
		}
		a->flags |= ADDR_F_ROUTE;
	}
	if (path_local(s, len, &i, allow_utf8, a) < 0)
		return -1;
	if (i >= len || s[i] != '@')
		return -1;
	i++;
	if (i < len && s[i] == '[') {
		size_t n = 1;
		while (i + n < len && s[i + n] != ']')
			n++;
		if (i + n >= len)
			return -1;
		n++;   /* the ']' */
		if (n > ADDR_DOMAIN_MAX || literal_check(s + i, n) < 0)
			return -1;
		memcpy(a->domain, s + i, n);
		a->domain[n] = '\0';
		a->flags |= ADDR_F_IPLITERAL;
		i += n;
	} else {
		size_t n = domain_span(s + i, len - i);
		if (domain_check(s + i, n, allow_utf8, a->domain, &a->flags) < 0)
			return -1;
		i += n;
	}
	if (i >= len || s[i] != '>')
		return -1;
	*end_r = i + 1;
	return 0;
}

/* Parse a Reverse-path or Forward-path (see addr.h). On error *a is left empty. */
int addr_parse_path(const char *s, size_t len, int allow_utf8, struct addr *a, const char **end_r)
{
	size_t end;
	a->local[0] = '\0';
	a->domain[0] = '\0';
	a->flags = 0;
	if (s == NULL || path_parse(s, len, allow_utf8, a, &end) < 0) {
		a->local[0] = '\0';
		a->domain[0] = '\0';
		a->flags = 0;
		return -1;
	}
	*end_r = s + end;
	return 0;
}

/* Whether a decoded local part of n octets can be written as a Dot-string, without quotes. */
static int local_is_dotstring(const char *l, size_t n)
{
	int need_atom = 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)l[i];
		if (c == '.') {
			if (need_atom)
				return 0;
			need_atom = 1;
		} else if (is_atext(c) || c >= 0x80) {
			need_atom = 0;
		} else {
			return 0;
		}
	}
	return !need_atom;
}

/* Length of the NUL-terminated string in a field of cap octets (cap if unterminated). */
static size_t field_len(const char *f, size_t cap)
{
	const char *nul = memchr(f, '\0', cap);
	return nul != NULL ? (size_t)(nul - f) : cap;
}

/* Append c to out at *o, keeping room for the NUL. 0 ok, -1 full. */
static int fmt_put(char *out, size_t outlen, size_t *o, char c)
{
	if (outlen == 0 || *o >= outlen - 1)
		return -1;
	out[(*o)++] = c;
	return 0;
}

/* Write "local@domain", quoting the local part only where a Dot-string cannot hold it. */
int addr_format(const struct addr *a, char *out, size_t outlen)
{
	size_t o = 0;
	size_t ln = field_len(a->local, sizeof(a->local));
	size_t dn = field_len(a->domain, sizeof(a->domain));
	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (a->flags & ADDR_F_NULL)
		return 0;
	int quote = !local_is_dotstring(a->local, ln);
	if (quote && fmt_put(out, outlen, &o, '"') < 0)
		return -1;
	for (size_t i = 0; i < ln; i++) {
		if (quote && (a->local[i] == '"' || a->local[i] == '\\') &&
		    fmt_put(out, outlen, &o, '\\') < 0)
			return -1;
		if (fmt_put(out, outlen, &o, a->local[i]) < 0)
			return -1;
	}
	if (quote && fmt_put(out, outlen, &o, '"') < 0)
		return -1;
	if (fmt_put(out, outlen, &o, '@') < 0)
		return -1;
	for (size_t i = 0; i < dn; i++)
		if (fmt_put(out, outlen, &o, a->domain[i]) < 0)
			return -1;
	if (o > INT_MAX)
		return -1;
	out[o] = '\0';
	return (int)o;
}

/* ---- RFC 5322 address lists ---- */

enum lex_tok {
	TOK_END,      /* end of input */
	TOK_ATOM,     /* 1*atext (octets >= 0x80 included, RFC 6532) */
	TOK_QUOTED,   /* quoted-string, quotes included in the span */
	TOK_LITERAL,  /* domain-literal "[...]" */
	TOK_SPECIAL,  /* one of < > @ , ; : . */
	TOK_ERROR,    /* anything malformed */
};

struct lex {
	const char *s;
	size_t len, pos;
};

struct token {
	enum lex_tok type;
	size_t start, end;   /* s[start..end) as written */
	char ch;             /* TOK_SPECIAL: which */
};

struct list_ctx {
	struct lex lx;
	void (*cb)(void *ctx, const char *address);   /* NULL on the checking pass */
	void *ctx;
	int count;
	/* addr_parse_list_named: also told the raw display name (NULL on the checking pass) */
	void (*named_cb)(void *ctx, const char *display, size_t display_len, const char *address);
};

/* Octets of a folding line break at s[i] (one followed by SP or HTAB): 2 for CRLF, 1 for a bare
 * LF (tolerated), 0 if s[i] starts no fold. */
static size_t fold_len(const char *s, size_t len, size_t i)
{
	size_t n;
	if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
		n = 2;
	else if (s[i] == '\n')
		n = 1;
	else
		return 0;
	if (i + n < len && (s[i + n] == ' ' || s[i + n] == '\t'))
		return n;
	return 0;
}

/* Whether c may follow a backslash in a quoted-pair (RFC 5322 3.2.1 VCHAR / WSP, RFC 6532). */
static int is_qp_char(unsigned char c)
{
	return c == ' ' || c == '\t' || (c > 32 && c != 127);
}

/* Whether c is a control octet that may not appear in a header outside of folding. */
static int is_ctl(unsigned char c)
{
	return (c < 32 && c != '\t') || c == 127;
}

/* Whether c may appear in an RFC 5322 atom (atext, or any octet >= 0x80 per RFC 6532; UTF-8
 * validity is checked only where it matters, in addresses). */
static int is_atom_octet(unsigned char c)
{
	return is_atext(c) || c >= 0x80;
}

/* Skip the comment at lx->pos (which is '('), nested ones included. 0 ok, -1 unterminated, too
 * deep or holding a control octet. Iterative, so depth costs no stack. */
static int lex_skip_comment(struct lex *lx)
{
	const char *s = lx->s;
	size_t i = lx->pos, depth = 0;
	while (i < lx->len) {
		unsigned char c = (unsigned char)s[i];
		if (c == '(') {
			if (++depth > ADDR_COMMENT_DEPTH_MAX)
				return -1;
			i++;
		} else if (c == ')') {
			i++;
			if (--depth == 0) {
				lx->pos = i;
				return 0;
			}
		} else if (c == '\\') {
			if (i + 1 >= lx->len || !is_qp_char((unsigned char)s[i + 1]))
				return -1;
			i += 2;
		} else if (c == '\r' || c == '\n') {
			size_t n = fold_len(s, lx->len, i);
			if (n == 0)
				return -1;
			i += n;
		} else if (is_ctl(c)) {
			return -1;
		} else {
			i++;
		}
	}
	return -1;
}

/* Skip CFWS: blanks, folds, comments, and one line end that closes the input. 0 ok, -1 error. */
static int lex_skip_cfws(struct lex *lx)
{
	const char *s = lx->s;
	while (lx->pos < lx->len) {
		char c = s[lx->pos];
		size_t rest = lx->len - lx->pos;
		if (c == ' ' || c == '\t') {
			lx->pos++;
		} else if (c == '\r' || c == '\n') {
			size_t n = fold_len(s, lx->len, lx->pos);
			/* the header line's own end: "\r", "\n" or "\r\n" closing the input */
			if (n == 0 && (rest == 1 || (rest == 2 && c == '\r' &&
							 s[lx->pos + 1] == '\n')))
				n = rest;
			if (n == 0)
				return -1;
			lx->pos += n;
		} else if (c == '(') {
			if (lex_skip_comment(lx) < 0)
				return -1;
		} else {
			break;
		}
	}
	return 0;
}

/* Read the next token after CFWS. */
static void lex_next(struct lex *lx, struct token *t)
{
	const char *s = lx->s;
	size_t i;
	t->ch = '\0';
	if (lex_skip_cfws(lx) < 0) {
		t->type = TOK_ERROR;
		t->start = t->end = lx->pos;
		return;
	}
	i = lx->pos;
	t->start = i;
	if (i >= lx->len) {
		t->type = TOK_END;
	} else if (s[i] == '"') {
		t->type = TOK_ERROR;
		for (i++; i < lx->len;) {
			unsigned char c = (unsigned char)s[i];
			if (c == '"') {
				i++;
				t->type = TOK_QUOTED;
				break;
			}
			if (c == '\\') {
				if (i + 1 >= lx->len || !is_qp_char((unsigned char)s[i + 1]))
					break;
				i += 2;
			} else if (c == '\r' || c == '\n') {
				size_t n = fold_len(s, lx->len, i);
				if (n == 0)
					break;
				i += n;
			} else if (is_ctl(c)) {
				break;
			} else {
				i++;
			}
		}
	} else if (s[i] == '[') {
		/* strict dtext, no FWS inside: the contents must pass literal_check anyway */
		t->type = TOK_ERROR;
		for (i++; i < lx->len; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == ']') {
				i++;
				t->type = TOK_LITERAL;
				break;
			}
			if (c < 33 || c > 126 || c == '[' || c == '\\')
				break;
		}
	} else if (is_atom_octet((unsigned char)s[i])) {
		while (i < lx->len && is_atom_octet((unsigned char)s[i]))
			i++;
		t->type = TOK_ATOM;
	} else if (strchr("<>@,;:.", s[i]) != NULL && s[i] != '\0') {
		t->type = TOK_SPECIAL;
		t->ch = s[i++];
	} else {
		t->type = TOK_ERROR;
	}
	t->end = i;
	lx->pos = i;
}

/* Look at the next token without consuming it. */
static void lex_peek(const struct lex *lx, struct token *t)
{
	struct lex tmp = *lx;
	lex_next(&tmp, t);
}

/* Whether t is the special character ch. */
static int tok_is(const struct token *t, char ch)
{
	return t->type == TOK_SPECIAL && t->ch == ch;
}

/* Parse an RFC 5322 domain: dot-atom, obs-domain (CFWS around the dots) or domain-literal, held
 * to the RFC 5321 rules (UTF-8 allowed) and stored lower-cased in out. 0 ok, -1 malformed. */
static int list_domain(struct list_ctx *c, char *out, unsigned *flags)
{
	char raw[ADDR_DOMAIN_MAX + 1];
	size_t o = 0;
	struct token t;
	lex_next(&c->lx, &t);
	if (t.type == TOK_LITERAL) {
		size_t n = t.end - t.start;
		if (n > ADDR_DOMAIN_MAX || literal_check(c->lx.s + t.start, n) < 0)
			return -1;
		memcpy(out, c->lx.s + t.start, n);
		out[n] = '\0';
		*flags |= ADDR_F_IPLITERAL;
		return 0;
	}
	for (;;) {
		size_t n = t.end - t.start;
		if (t.type != TOK_ATOM || n > ADDR_DOMAIN_MAX - o)
			return -1;
		memcpy(raw + o, c->lx.s + t.start, n);
		o += n;
		lex_peek(&c->lx, &t);
		if (!tok_is(&t, '.'))
			break;
		lex_next(&c->lx, &t);
		if (o >= ADDR_DOMAIN_MAX)
			return -1;
		raw[o++] = '.';
		lex_next(&c->lx, &t);
	}
	return domain_check(raw, o, 1, out, flags);
}

/* Append the decoded form of word token t to a->local at *o, at most ADDR_LOCAL_MAX octets. */
static int list_local_word(struct list_ctx *c, const struct token *t, struct addr *a, size_t *o)
{
	const char *s = c->lx.s;
	size_t i = t->start, end = t->end;
	if (t->type == TOK_QUOTED) {
		a->flags |= ADDR_F_QUOTED;
		i++;
		end--;
	}
	while (i < end) {
		if (s[i] == '\r' || s[i] == '\n') {   /* the line break of a fold */
			i++;
			continue;
		}
		if (s[i] == '\\' && t->type == TOK_QUOTED)
			i++;   /* the lexer checked that a character follows */
		if (*o >= ADDR_LOCAL_MAX)
			return -1;
		a->local[(*o)++] = s[i++];
	}
	return 0;
}

/* Check a decoded header local part: printable ASCII (no tab) or well-formed UTF-8. */
static int list_local_check(struct addr *a, size_t n)
{
	const unsigned char *u = (const unsigned char *)a->local;
	for (size_t i = 0; i < n;) {
		if (u[i] >= 0x80) {
			size_t k = utf8_decode(u + i, n - i, 0, NULL);
			if (k == 0)
				return -1;
			a->flags |= ADDR_F_UTF8;
			i += k;
		} else if (u[i] < 32 || u[i] == 127) {
			return -1;
		} else {
			i++;
		}
	}
	return 0;
}

/* Parse addr-spec = local-part "@" domain (RFC 5322 3.4.1, with the obsolete word/dot forms of 4.4)
 * into a. 0 ok, -1 malformed. */
static int list_addrspec(struct list_ctx *c, struct addr *a)
{
	struct token t;
	size_t o = 0;
	int need_word = 1;
	a->flags = 0;
	for (;;) {
		lex_peek(&c->lx, &t);
		if (need_word) {
			if (t.type != TOK_ATOM && t.type != TOK_QUOTED)
				return -1;
			if (list_local_word(c, &t, a, &o) < 0)
				return -1;
			need_word = 0;
		} else if (tok_is(&t, '.')) {
			if (o >= ADDR_LOCAL_MAX)
				return -1;
			a->local[o++] = '.';
			need_word = 1;
		} else {
			break;
		}
		lex_next(&c->lx, &t);
	}
	a->local[o] = '\0';
	if (list_local_check(a, o) < 0)
		return -1;
	local_relay_flag(a);
	lex_next(&c->lx, &t);
	if (!tok_is(&t, '@'))
		return -1;
	return list_domain(c, a->domain, &a->flags);
}

/* Count one parsed address and hand its canonical form (and the raw display name
 * c->lx.s[dstart..dend), empty when there is none) to the callback (if any). */
static int list_report(struct list_ctx *c, const struct addr *a, size_t dstart, size_t dend)
{
	char buf[ADDR_FORMAT_MAX];
	int n = addr_format(a, buf, sizeof(buf));
	if (n < 0)
		return -1;
	/* the local part as it would be written must fit RFC 5321's limit */
	if ((size_t)n - strlen(a->domain) - 1 > ADDR_LOCAL_MAX)
		return -1;
	if (c->count == INT_MAX)
		return -1;
	c->count++;
	if (c->cb != NULL)
		c->cb(c->ctx, buf);
	if (c->named_cb != NULL)
		c->named_cb(c->ctx, c->lx.s + dstart, dend - dstart, buf);
	return 0;
}

/* After '<': [obs-route] addr-spec '>'; the display name was c->lx.s[dstart..dend). 0 ok,
 * -1 malformed. */
static int list_angle(struct list_ctx *c, size_t dstart, size_t dend)
{
	struct addr a;
	struct token t;
	lex_peek(&c->lx, &t);
	if (tok_is(&t, '@')) {
		/* obs-route = "@" domain *("," ["@" domain]) ":" (RFC 5322 4.4); dropped */
		char scratch[ADDR_DOMAIN_MAX + 1];
		unsigned scratch_flags = 0;
		lex_next(&c->lx, &t);
		if (list_domain(c, scratch, &scratch_flags) < 0)
			return -1;
		for (;;) {
			lex_next(&c->lx, &t);
			if (tok_is(&t, ':'))
				break;
			if (!tok_is(&t, ','))
				return -1;
			lex_peek(&c->lx, &t);
			if (tok_is(&t, '@')) {
				lex_next(&c->lx, &t);
				if (list_domain(c, scratch, &scratch_flags) < 0)
					return -1;
			}
		}
	}
	if (list_addrspec(c, &a) < 0)
		return -1;
	lex_next(&c->lx, &t);
	if (!tok_is(&t, '>'))
		return -1;
	return list_report(c, &a, dstart, dend);
}

static int list_address(struct list_ctx *c, int in_group);

/* After "display-name :", the group's mailboxes through ';'. A ';' missing at the very end of the
 * input is tolerated (a common mailer slip, and harmless). 0 ok, -1 malformed. */
static int list_group(struct list_ctx *c)
{
	struct token t;
	for (;;) {
		lex_peek(&c->lx, &t);
		if (t.type == TOK_END)
			return 0;
		lex_next(&c->lx, &t);
		if (tok_is(&t, ';'))
			return 0;
		if (tok_is(&t, ','))
			continue;
		c->lx.pos = t.start;   /* give the token back */
		if (list_address(c, 1) < 0)
			return -1;
		lex_peek(&c->lx, &t);
		if (!tok_is(&t, ',') && !tok_is(&t, ';') && t.type != TOK_END)
			return -1;
	}
}

/* One address: name-addr, addr-spec or (outside a group) a group. The words seen before the first
 * '<', ':' or '@' decide which. Recursion is at most two deep: a group holds no group. */
static int list_address(struct list_ctx *c, int in_group)
{
	struct lex start = c->lx;
	struct token t;
	size_t words = 0, dstart = 0, dend = 0;
	for (;;) {
		lex_next(&c->lx, &t);
		if (t.type != TOK_ATOM && t.type != TOK_QUOTED && !tok_is(&t, '.'))
			break;
		if (words++ == 0)
			dstart = t.start;
		dend = t.end;
	}
	if (tok_is(&t, '<'))
		return list_angle(c, dstart, dend);
	if (tok_is(&t, ':') && !in_group && words > 0)
		return list_group(c);
	if (tok_is(&t, '@') && words > 0) {
		struct addr a;
		c->lx = start;
		if (list_addrspec(c, &a) < 0)
			return -1;
		return list_report(c, &a, 0, 0);
	}
	return -1;
}

/* One pass over the whole list; cb NULL checks only. Count or -1. */
static int list_pass(const char *s, size_t len, void (*cb)(void *ctx, const char *address),
		     void *ctx, void (*named_cb)(void *ctx, const char *display, size_t display_len,
						 const char *address))
{
	struct list_ctx c = { { s, len, 0 }, cb, ctx, 0, named_cb };
	struct token t;
	for (;;) {
		lex_peek(&c.lx, &t);
		if (t.type == TOK_END)
			return c.count;
		if (tok_is(&t, ',')) {   /* empty list members: obs-addr-list */
			lex_next(&c.lx, &t);
			continue;
		}
		if (list_address(&c, 0) < 0)
			return -1;
		lex_peek(&c.lx, &t);
		if (!tok_is(&t, ',') && t.type != TOK_END)
			return -1;
	}
}

/* Extract the addresses of an RFC 5322 address list (see addr.h). The list is checked whole
 * before cb is called, so cb never sees part of a list that is then rejected. */
int addr_parse_list(const char *s, size_t len, void (*cb)(void *ctx, const char *address),
		    void *ctx)
{
	if (s == NULL)
		return -1;
	int n = list_pass(s, len, NULL, NULL, NULL);
	if (n <= 0 || cb == NULL)
		return n;
	return list_pass(s, len, cb, ctx, NULL);
}

/* addr_parse_list, with each address's raw display name (see addr.h). */
int addr_parse_list_named(const char *s, size_t len,
			  void (*cb)(void *ctx, const char *display, size_t display_len,
				     const char *address), void *ctx)
{
	if (s == NULL)
		return -1;
	int n = list_pass(s, len, NULL, NULL, NULL);
	if (n <= 0 || cb == NULL)
		return n;
	return list_pass(s, len, NULL, ctx, cb);
}
