/* phish.c - phishing signs in From/Reply-To and the visible mark (see phish.h). */
#include "phish.h"

#include <idn2.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uspoof.h>

#include "addr.h"
#include "base64.h"
#include "buf.h"
#include "casefold.h"
#include "header.h"
#include "idn.h"
#include "mime-private.h"

/* Display names longer than this are looked at only up to here: a name is read at a glance,
 * and a phisher gains nothing from a brand 4 KB into it. */
#define PHISH_DISPLAY_MAX 1024
/* Skeletons grow: one character may become up to 4 (UTS 39 confusables.txt), each up to
 * 4 UTF-8 octets. */
#define PHISH_SKEL_MAX (PHISH_DISPLAY_MAX * 4)
/* Addresses looked at per message (From and Reply-To together): each costs skeletons and a
 * comparison with every hosted domain, and real mail has one or two. */
#define PHISH_ADDRS_MAX 16
/* Labels shorter than this are not display-name terms ("co" in "example.co.uk", "it"). */
#define PHISH_LABEL_MIN 3
/* Quoted-printable lines stay under RFC 2045 6.7's 76 characters. */
#define QP_LINE_MAX 72
/* How much of a Subject value is compared with the tag (to avoid tagging twice). */
#define PHISH_DOMAIN_SKEL_MAX (PHISH_DOMAIN_MAX * 4)

struct phish_term {
	char skel[PHISH_DOMAIN_SKEL_MAX];   /* skeleton of the folded name */
	char name[PHISH_DOMAIN_MAX];        /* what the reason names (ASCII) */
};

struct phish_domain {
	char ascii[PHISH_DOMAIN_MAX];
	char skel[PHISH_DOMAIN_SKEL_MAX];
	size_t skel_len;
};

struct phish_policy {
	struct phish_term *terms;
	size_t nterms;
	struct phish_domain *domains;
	size_t ndomains;
	unsigned max_distance;
};

static pthread_once_t phish_once = PTHREAD_ONCE_INIT;
static USpoofChecker *phish_spoof;   /* read-only after phish_init: its checks are thread-safe */
static const psl_ctx_t *phish_psl;

/* Set up the shared ICU spoof checker and the Public Suffix List once. */
static void phish_init(void)
{
	UErrorCode st = U_ZERO_ERROR;
	USpoofChecker *sc = uspoof_open(&st);
	if (U_SUCCESS(st))
		uspoof_setChecks(sc, USPOOF_RESTRICTION_LEVEL | USPOOF_INVISIBLE |
				 USPOOF_MIXED_NUMBERS, &st);
	if (U_SUCCESS(st)) {
		uspoof_setRestrictionLevel(sc, USPOOF_MODERATELY_RESTRICTIVE);
		phish_spoof = sc;
	} else if (sc != NULL) {
		uspoof_close(sc);
	}
	phish_psl = psl_latest(NULL);
	if (phish_psl == NULL)
		phish_psl = psl_builtin();
}

/* Skeleton of the case folded text; see phish.h. */
int phish_skeleton(const char *in, size_t len, char *out, size_t outlen)
{
	pthread_once(&phish_once, phish_init);
	if (phish_spoof == NULL || outlen == 0 || len > PHISH_SKEL_MAX)
		return -1;
	char *fold;
	size_t flen;
	if (casefold_dup(in, len, &fold, &flen) < 0)
		return -1;
	UErrorCode st = U_ZERO_ERROR;
	int32_t n = flen > INT32_MAX ? -1 :
		    uspoof_getSkeletonUTF8(phish_spoof, 0, fold, (int32_t)flen, out,
					   outlen > INT32_MAX ? INT32_MAX : (int32_t)outlen, &st);
	free(fold);
	if (n < 0 || U_FAILURE(st) || (size_t)n >= outlen)
		return -1;
	out[n] = '\0';
	return 0;
}

/* Damerau-Levenshtein (optimal string alignment) distance, capped; see phish.h. */
unsigned phish_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned limit)
{
	enum { N = PHISH_DOMAIN_MAX * 4 };
	static __thread unsigned rows[3][N + 1];
	if (alen > N || blen > N)
		return limit + 1;
	if ((alen > blen ? alen - blen : blen - alen) > limit)
		return limit + 1;
	unsigned *pp = rows[0], *p = rows[1], *c = rows[2];
	for (size_t j = 0; j <= blen; j++)
		p[j] = (unsigned)j;
	for (size_t i = 1; i <= alen; i++) {
		unsigned best = c[0] = (unsigned)i;
		for (size_t j = 1; j <= blen; j++) {
			unsigned cost = a[i - 1] != b[j - 1];
			unsigned v = p[j - 1] + cost;
			if (p[j] + 1 < v)
				v = p[j] + 1;
			if (c[j - 1] + 1 < v)
				v = c[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			c[j] = v;
			if (v < best)
				best = v;
		}
		if (best > limit)
			return limit + 1;
		unsigned *t = pp;
		pp = p;
		p = c;
		c = t;
	}
	return p[blen] > limit ? limit + 1 : p[blen];
}

/* Append a term (skeleton of name, named as shown) to the policy. 0 ok, -1 out of memory. */
static int policy_term(struct phish_policy *p, size_t *cap, const char *name, size_t len,
		       const char *shown)
{
	while (len > 0 && (*name == ' ' || *name == '\t')) {
		name++;
		len--;
	}
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= PHISH_DOMAIN_MAX)
		return 0;
	if (p->nterms == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct phish_term *t = realloc(p->terms, ncap * sizeof(*t));
		if (t == NULL)
			return -1;
		p->terms = t;
		*cap = ncap;
	}
	struct phish_term *t = &p->terms[p->nterms];
	if (phish_skeleton(name, len, t->skel, sizeof(t->skel)) < 0 || t->skel[0] == '\0')
		return 0;
	if (shown != NULL) {
		snprintf(t->name, sizeof(t->name), "%s", shown);
	} else {
		size_t o = 0;   /* the name as configured, ASCII only (a header carries it) */
		for (size_t i = 0; i < len && o + 1 < sizeof(t->name); i++)
			t->name[o++] = (unsigned char)name[i] >= 0x20 && (unsigned char)name[i] < 0x7f &&
				       name[i] != ';' ? name[i] : '?';
		t->name[o] = '\0';
	}
	p->nterms++;
	return 0;
}

/* Is label d[0..n) one that names nothing (too short, or a service host name)? */
static int generic_label(const char *d, size_t n)
{
	static const char *const generic[] = { "www", "mail", "smtp", "imap", "pop", "pop3", "mx",
					       "webmail", "com", "net", "org" };
	if (n < PHISH_LABEL_MIN)
		return 1;
	for (size_t i = 0; i < sizeof(generic) / sizeof(generic[0]); i++)
		if (hdr_eq_ci(d, n, generic[i]))
			return 1;
	return 0;
}

/* Build a policy; see phish.h. */
struct phish_policy *phish_policy_new(const char *brands, const char *const *hosted,
				      size_t nhosted, unsigned max_distance)
{
	struct phish_policy *p = calloc(1, sizeof(*p));
	size_t tcap = 0, nb = 0;
	if (p == NULL)
		return NULL;
	p->max_distance = max_distance;
	for (const char *s = brands ? brands : ""; *s && nb < PHISH_BRANDS_MAX; nb++) {
		const char *e = strchr(s, ',');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (policy_term(p, &tcap, s, n, NULL) < 0)
			goto fail;
		s += n + (e != NULL);
	}
	if (nhosted > PHISH_DOMAINS_MAX)
		nhosted = PHISH_DOMAINS_MAX;
	p->domains = calloc(nhosted ? nhosted : 1, sizeof(*p->domains));
	if (p->domains == NULL)
		goto fail;
	for (size_t i = 0; i < nhosted; i++) {
		const char *d = hosted[i];
		size_t n = strlen(d);
		struct phish_domain *pd = &p->domains[p->ndomains];
		char uni[PHISH_DOMAIN_MAX * 4];
		char *u = NULL;
		if (n == 0 || n >= sizeof(pd->ascii))
			continue;
		memcpy(pd->ascii, d, n + 1);
		/* the skeleton of the Unicode form: "xn--bcher-kva.example" is "bücher.example" */
		if (idn2_to_unicode_8z8z(d, &u, 0) == IDN2_OK && strlen(u) < sizeof(uni))
			snprintf(uni, sizeof(uni), "%s", u);
		else
			snprintf(uni, sizeof(uni), "%s", d);
		idn2_free(u);
		if (phish_skeleton(uni, strlen(uni), pd->skel, sizeof(pd->skel)) < 0)
			continue;
		pd->skel_len = strlen(pd->skel);
		p->ndomains++;
		/* display-name terms: the domain, and each label but the last */
		if (policy_term(p, &tcap, uni, strlen(uni), d) < 0)
			goto fail;
		const char *lab = uni;
		for (const char *dot; (dot = strchr(lab, '.')) != NULL; lab = dot + 1) {
			if (generic_label(lab, (size_t)(dot - lab)))
				continue;
			char shown[PHISH_DOMAIN_MAX];
			snprintf(shown, sizeof(shown), "%s", d);
			if (policy_term(p, &tcap, lab, (size_t)(dot - lab), shown) < 0)
				goto fail;
		}
	}
	return p;
fail:
	phish_policy_free(&p);
	return NULL;
}

/* Free a policy. */
void phish_policy_free(struct phish_policy **pp)
{
	if (pp == NULL || *pp == NULL)
		return;
	free((*pp)->terms);
	free((*pp)->domains);
	free(*pp);
	*pp = NULL;
}

/* Is d equal to hosted domain h or below it? */
static int domain_under(const char *d, const char *h)
{
	size_t dl = strlen(d), hl = strlen(h);
	if (dl == hl)
		return strcmp(d, h) == 0;
	return dl > hl && d[dl - hl - 1] == '.' && strcmp(d + dl - hl, h) == 0;
}

/* Is d a hosted domain or below one? */
static int is_hosted(const struct phish_policy *p, const char *d)
{
	for (size_t i = 0; i < p->ndomains; i++)
		if (domain_under(d, p->domains[i].ascii))
			return 1;
	return 0;
}

/* A word character for the display-name match: ASCII letter or digit, or part of a non-ASCII
 * character. */
static int word_octet(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c >= 0x80;
}

/* Does hay hold needle as a whole word (or words)? */
static int has_word(const char *hay, const char *needle)
{
	size_t nl = strlen(needle);
	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++) {
		if ((s == hay || !word_octet((unsigned char)s[-1])) &&
		    !word_octet((unsigned char)s[nl]))
			return 1;
	}
	return 0;
}

struct check_ctx {
	const struct phish_policy *p;
	struct phish_verdict *v;
	int in_reply_to;
	char from_org[PHISH_DOMAIN_MAX];   /* registrable domain of the From address */
	unsigned naddrs;
};

/* The domain of a "local@domain" address. */
static const char *addr_domain(const char *address)
{
	const char *at = strrchr(address, '@');
	return at ? at + 1 : "";
}

/* Does the display name raw[0..n) name the provider or a hosted domain? Sets v. */
static void check_display(struct check_ctx *c, const char *raw, size_t n)
{
	char plain[PHISH_DISPLAY_MAX];
	size_t o = 0;
	if (n > PHISH_DISPLAY_MAX)
		n = PHISH_DISPLAY_MAX;
	/* unquote: encoded-words inside quotes are decoded by many mail programs, so here too */
	for (size_t i = 0; i < n && o < sizeof(plain); i++) {
		if (raw[i] == '"')
			continue;
		if (raw[i] == '\\' && i + 1 < n)
			i++;
		plain[o++] = raw[i];
	}
	struct buf dec;
	buf_init(&dec, PHISH_DISPLAY_MAX * 2);
	char *skel = malloc(PHISH_SKEL_MAX * 4);
	if (skel != NULL && mime_decode_words(plain, o, &dec) == 0 && dec.len > 0 &&
	    phish_skeleton(dec.data, dec.len, skel, PHISH_SKEL_MAX * 4) == 0) {
		for (size_t i = 0; i < c->p->nterms; i++) {
			if (has_word(skel, c->p->terms[i].skel)) {
				c->v->reasons |= PHISH_DISPLAY_NAME;
				snprintf(c->v->display_hit, sizeof(c->v->display_hit), "%s",
					 c->p->terms[i].name);
				break;
			}
		}
	}
	free(skel);
	buf_free(&dec);
}

/* Is every octet of s ASCII? */
static int all_ascii(const char *s)
{
	return !idn_has_nonascii(s, strlen(s));
}

/* Mixed-script and lookalike checks of a domain that is not hosted here. */
static void check_domain(struct check_ctx *c, const char *d)
{
	const struct phish_policy *p = c->p;
	struct phish_verdict *v = c->v;
	char uni[PHISH_DOMAIN_MAX * 4];
	char skel[PHISH_DOMAIN_SKEL_MAX];
	char *u = NULL;
	if (d[0] == '[' || d[0] == '\0' || is_hosted(p, d))
		return;
	if (idn2_to_unicode_8z8z(d, &u, 0) == IDN2_OK && strlen(u) < sizeof(uni))
		snprintf(uni, sizeof(uni), "%s", u);
	else
		snprintf(uni, sizeof(uni), "%s", d);
	idn2_free(u);
	int any_ascii_label = 0, confusable_label = 0;
	const char *lab = uni;
	for (;;) {
		const char *dot = strchr(lab, '.');
		size_t n = dot ? (size_t)(dot - lab) : strlen(lab);
		char l[PHISH_DOMAIN_MAX * 4], ls[PHISH_DOMAIN_SKEL_MAX];
		memcpy(l, lab, n);
		l[n] = '\0';
		if (all_ascii(l)) {
			any_ascii_label = 1;
		} else {
			UErrorCode st = U_ZERO_ERROR;
			int32_t r = uspoof_checkUTF8(phish_spoof, l, (int32_t)n, NULL, &st);
			if (U_SUCCESS(st) && r != 0 && !(v->reasons & PHISH_MIXED_SCRIPT)) {
				v->reasons |= PHISH_MIXED_SCRIPT;
				snprintf(v->mixed, sizeof(v->mixed), "%s", d);
			}
			/* "аррӏе": a non-ASCII label that reads as ASCII */
			if (phish_skeleton(l, n, ls, sizeof(ls)) == 0 && all_ascii(ls))
				confusable_label = 1;
		}
		if (dot == NULL)
			break;
		lab = dot + 1;
	}
	if (confusable_label && any_ascii_label && !(v->reasons & PHISH_LOOKALIKE)) {
		v->reasons |= PHISH_LOOKALIKE;
		snprintf(v->lookalike, sizeof(v->lookalike), "%s", d);
		v->lookalike_of[0] = '\0';
	}
	if (phish_skeleton(uni, strlen(uni), skel, sizeof(skel)) < 0)
		return;
	size_t sl = strlen(skel);
	for (size_t i = 0; i < p->ndomains; i++) {
		const struct phish_domain *h = &p->domains[i];
		size_t al = strlen(h->ascii);
		unsigned lim = al >= 10 ? 2 : 1;
		if (lim > p->max_distance)
			lim = p->max_distance;
		int hit = strcmp(skel, h->skel) == 0 ||
			  (strncmp(d, h->ascii, al) == 0 && d[al] == '.') ||
			  (lim > 0 && phish_distance(skel, sl, h->skel, h->skel_len, lim) <= lim);
		if (hit) {
			v->reasons |= PHISH_LOOKALIKE;
			snprintf(v->lookalike, sizeof(v->lookalike), "%s", d);
			snprintf(v->lookalike_of, sizeof(v->lookalike_of), "%s", h->ascii);
			return;
		}
	}
}

/* Registrable domain of d (d itself when the PSL does not know). */
static const char *org_domain(const char *d)
{
	const char *r = phish_psl ? psl_registrable_domain(phish_psl, d) : NULL;
	return r ? r : d;
}

/* addr_parse_list_named callback for From and Reply-To. */
static void check_addr(void *ctx, const char *display, size_t display_len, const char *address)
{
	struct check_ctx *c = ctx;
	struct phish_verdict *v = c->v;
	const char *d = addr_domain(address);
	char ascii[PHISH_DOMAIN_MAX];
	/* a UTF-8 domain (SMTPUTF8) is compared in its A-label form, as hosted domains are */
	if (idn_has_nonascii(d, strlen(d)) && idn_to_ascii(d, strlen(d), ascii, sizeof(ascii)) == 0)
		d = ascii;
	if (++c->naddrs > PHISH_ADDRS_MAX)
		return;
	if (!c->in_reply_to) {
		if (v->from[0] == '\0') {
			snprintf(v->from, sizeof(v->from), "%s", address);
			snprintf(v->from_domain, sizeof(v->from_domain), "%s", d);
			v->from_hosted = is_hosted(c->p, d);
		}
		if (!is_hosted(c->p, d) && display_len > 0 && !(v->reasons & PHISH_DISPLAY_NAME))
			check_display(c, display, display_len);
	} else if (v->from_domain[0] && !v->reply_to_elsewhere && d[0] != '\0' &&
		   strcmp(org_domain(d), c->from_org) != 0) {
		v->reply_to_elsewhere = 1;   /* replies leave the sender's organisation */
		snprintf(v->reply_domain, sizeof(v->reply_domain), "%s", d);
	}
	check_domain(c, d);
}

/* Look at From and Reply-To; see phish.h. */
unsigned phish_check(const struct phish_policy *p, const char *hdr, size_t len,
		     struct phish_verdict *v)
{
	struct check_ctx c = { p, v, 0, "", 0 };
	struct hdr_field f;
	size_t pos = 0;
	pthread_once(&phish_once, phish_init);
	memset(v, 0, sizeof(*v));
	if (phish_spoof == NULL)
		return 0;
	/* every From first (the first address is the sender), then every Reply-To */
	for (int pass = 0; pass < 2; pass++) {
		c.in_reply_to = pass;
		if (pass == 1 && v->from_domain[0])
			snprintf(c.from_org, sizeof(c.from_org), "%s", org_domain(v->from_domain));
		pos = 0;
		while (hdr_next(hdr, len, &pos, &f)) {
			if (hdr_is(&f, pass ? "Reply-To" : "From"))
				(void)addr_parse_list_named(f.value, f.value_len, check_addr, &c);
		}
	}
	return v->reasons;
}

/* Append s to out[*o..outlen) as printable ASCII ('?' for anything else). */
static void put_safe(char *out, size_t outlen, size_t *o, const char *s)
{
	for (; *s && *o + 1 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;
		out[(*o)++] = ch >= 0x20 && ch < 0x7f && ch != ';' ? (char)ch : '?';
	}
	out[*o] = '\0';
}

/* The X-Postino-Phishing value; see phish.h. */
void phish_describe(const struct phish_verdict *v, char *out, size_t outlen)
{
	size_t o = 0;
	int n = 0;
	if (outlen == 0)
		return;
	out[0] = '\0';
	struct { unsigned bit; const char *what, *a, *mid, *b; } items[] = {
		{ PHISH_DISPLAY_NAME, "display-name (the sender's name imitates ", v->display_hit,
		  "", "" },
		{ PHISH_LOOKALIKE, "lookalike-domain (", v->lookalike,
		  v->lookalike_of[0] ? " looks like " : " imitates an ASCII name", v->lookalike_of },
		{ PHISH_MIXED_SCRIPT, "mixed-script-domain (", v->mixed, "", "" },
		{ PHISH_REPLY_TO, "reply-to-elsewhere (first message from ", v->from,
		  ", replies go to ", v->reply_domain },
	};
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		if (!(v->reasons & items[i].bit))
			continue;
		if (n++ > 0 && o + 4 < outlen) {
			memcpy(out + o, ";\r\n\t", 4);
			o += 4;
			out[o] = '\0';
		}
		put_safe(out, outlen, &o, items[i].what);
		put_safe(out, outlen, &o, items[i].a);
		put_safe(out, outlen, &o, items[i].mid);
		put_safe(out, outlen, &o, items[i].b);
		put_safe(out, outlen, &o, ")");
	}
}

/* Whether the header section holds an X-Postino-Phishing field. */
int phish_has_field(const char *hdr, size_t len)
{
	struct hdr_field f;
	return hdr_find(hdr, len, PHISH_FIELD, &f);
}

/* --- the mark --- */

struct place {
	size_t off;          /* where the warning goes (relative to the message after prefix) */
	int found, safe, qp, alternatives;
};

/* Lower-cased copy of the charset parameter of ct into out ("" when there is none). */
static void ctype_charset(const struct mime_ctype *ct, char *out, size_t outlen)
{
	const struct mime_param *pr = mime_ctype_param(ct, "charset");
	struct buf b;
	out[0] = '\0';
	if (pr == NULL)
		return;
	buf_init(&b, 128);
	if (mime_param_value(pr, &b) == 0 && b.len < outlen) {
		for (size_t i = 0; i < b.len; i++)
			out[i] = (char)((b.data[i] >= 'A' && b.data[i] <= 'Z') ? b.data[i] + 32 :
					b.data[i]);
		out[b.len] = '\0';
	}
	buf_free(&b);
}

/* Does the header block of part end in an empty line (so its body really starts there)? */
static int header_closed(const struct mime_part *pt, const char *m)
{
	size_t e = pt->hdr_off + pt->hdr_len;
	if (pt->hdr_len == 0 || m[e - 1] != '\n')
		return 0;
	if (pt->hdr_len == 1 || (pt->hdr_len == 2 && m[e - 2] == '\r'))
		return 1;
	return m[e - 2] == '\n' || (pt->hdr_len >= 3 && m[e - 2] == '\r' && m[e - 3] == '\n');
}

/* Depth-first: the first inline text/plain leaf under pt. 1 found (pl set), -1 stop (a
 * signed or encrypted container comes first), 0 none here. */
static int find_text(const struct mime_part *pt, const char *m, int ascii_warning,
		     int in_alt, struct place *pl)
{
	struct hdr_field f;
	struct mime_ctype ct;
	const char *h = m + pt->hdr_off;
	int have_ct = hdr_find(h, pt->hdr_len, "Content-Type", &f) &&
		      mime_ctype_parse(f.value, f.value_len, 1, &ct) == 0;
	if (pt->flags & MIME_PART_RFC822)
		return 0;   /* a forwarded message's text is not this message's top */
	if (pt->flags & MIME_PART_MULTIPART) {
		if (have_ct && (hdr_eq_ci(ct.subtype, ct.subtype_len, "signed") ||
				hdr_eq_ci(ct.subtype, ct.subtype_len, "encrypted")))
			return -1;
		int alt = in_alt || (have_ct && hdr_eq_ci(ct.subtype, ct.subtype_len, "alternative") &&
				     pt->nchildren > 1);
		for (const struct mime_part *ch = pt->children; ch != NULL; ch = ch->next) {
			int r = find_text(ch, m, ascii_warning, alt, pl);
			if (r != 0)
				return r;
		}
		return 0;
	}
	if (pt->flags & MIME_PART_FORCED_TEXT)
		return 0;
	if (have_ct && !(hdr_eq_ci(ct.type, ct.type_len, "text") &&
			 hdr_eq_ci(ct.subtype, ct.subtype_len, "plain")))
		return 0;
	if (!have_ct && hdr_find(h, pt->hdr_len, "Content-Type", &f))
		return 0;   /* an unreadable Content-Type: not known to be text */
	if (hdr_find(h, pt->hdr_len, "Content-Disposition", &f)) {
		struct mime_ctype cd;
		if (mime_ctype_parse(f.value, f.value_len, 0, &cd) == 0 &&
		    hdr_eq_ci(cd.type, cd.type_len, "attachment"))
			return 0;
	}
	pl->found = 1;
	pl->alternatives = in_alt;
	pl->off = pt->body_off;
	if (!header_closed(pt, m))
		return 1;
	char cs[64];
	const char *tok = "7bit";
	size_t toklen = 4;
	if (have_ct)
		ctype_charset(&ct, cs, sizeof(cs));
	else
		cs[0] = '\0';
	if (hdr_find(h, pt->hdr_len, "Content-Transfer-Encoding", &f) &&
	    !mime_cte_token(f.value, f.value_len, &tok, &toklen))
		return 1;   /* present but unreadable */
	int is7 = hdr_eq_ci(tok, toklen, "7bit"), is8 = hdr_eq_ci(tok, toklen, "8bit") ||
		  hdr_eq_ci(tok, toklen, "binary");
	pl->qp = hdr_eq_ci(tok, toklen, "quoted-printable");
	if (!is7 && !is8 && !pl->qp)
		return 1;
	if (!ascii_warning && (is7 || (strcmp(cs, "utf-8") != 0 && strcmp(cs, "utf8") != 0)))
		return 1;
	/* charsets in which ASCII octets are not ASCII characters */
	static const char *const wide[] = { "utf-16", "utf-32", "ucs-2", "ucs-4", "utf-7",
					    "utf16", "utf32", "ucs2", "ucs4", "utf7" };
	for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++)
		if (strncmp(cs, wide[i], strlen(wide[i])) == 0)
			return 1;
	pl->safe = 1;
	return 1;
}

/* The warning as body octets (quoted-printable when qp), followed by an empty line. */
static int warning_text(const char *w, int qp, struct buf *out)
{
	if (!qp) {
		if (buf_append(out, w, strlen(w)) < 0)
			return -1;
	} else {
		size_t col = 0;
		for (const unsigned char *s = (const unsigned char *)w; *s; s++) {
			char enc[4];
			size_t n;
			if ((*s >= 33 && *s <= 126 && *s != '=') || (*s == ' ' && s[1] != '\0')) {
				enc[0] = (char)*s;
				n = 1;
			} else {
				snprintf(enc, sizeof(enc), "=%02X", *s);
				n = 3;
			}
			if (col + n > QP_LINE_MAX) {
				if (buf_append(out, "=\r\n", 3) < 0)
					return -1;
				col = 0;
			}
			if (buf_append(out, enc, n) < 0)
				return -1;
			col += n;
		}
	}
	return buf_append(out, "\r\n\r\n", 4);
}

/* The subject tag as header text: as is when ASCII, else one RFC 2047 "B" encoded-word. */
static int tag_text(const char *tag, struct buf *out)
{
	if (all_ascii(tag))
		return buf_append(out, tag, strlen(tag));
	char enc[PHISH_TEXT_MAX * 2 + 8];
	size_t n = base64_encode((const unsigned char *)tag, strlen(tag), enc, sizeof(enc));
	if (n == 0)
		return -1;
	return buf_appendf(out, "=?utf-8?b?%.*s?=", (int)n, enc);
}

/* Rewrite the message; see phish.h. */
int phish_rewrite(const char *msg, size_t len, size_t prefix_len, const struct phish_mark *m,
		  int (*emit)(void *ctx, const char *p, size_t n), void *ctx, unsigned *applied_r)
{
	const char *body = msg + prefix_len;
	size_t blen = len - prefix_len, hlen = hdr_section_len(body, blen);
	struct place pl = { 0, 0, 0, 0, 0 };
	int want_subject = 0, want_body = 0, r = -1;
	struct buf ins, tag;
	*applied_r = 0;
	buf_init(&ins, PHISH_TEXT_MAX * 4 + 64);
	buf_init(&tag, PHISH_TEXT_MAX * 2 + 64);
	if (m->reason != NULL) {
		want_subject = m->mode == PHISH_MARK_SUBJECT || m->mode == PHISH_MARK_BOTH;
		want_body = m->mode == PHISH_MARK_BODY || m->mode == PHISH_MARK_BOTH;
	}
	if (want_body) {
		struct mime_part *root = mime_parse(body, blen);
		if (root == NULL)
			goto out;
		(void)find_text(root, body, all_ascii(m->warning), 0, &pl);
		mime_free(&root);
		if (!pl.found || !pl.safe || pl.off < hlen || pl.off > blen ||
		    warning_text(m->warning, pl.qp, &ins) < 0) {
			want_body = 0;
			want_subject = 1;   /* the fallback: the mark must be seen somewhere */
		} else if (pl.alternatives) {
			want_subject = 1;   /* the program may show the other alternative */
		}
	}
	if (want_subject && (tag_text(m->tag, &tag) < 0 || tag.len == 0))
		want_subject = 0;
	if (emit(ctx, msg, prefix_len) < 0)
		goto out;
	if (m->reason != NULL && (emit(ctx, PHISH_FIELD ": ", sizeof(PHISH_FIELD ": ") - 1) < 0 ||
				  emit(ctx, m->reason, strlen(m->reason)) < 0 ||
				  emit(ctx, "\r\n", 2) < 0))
		goto out;
	struct hdr_field f;
	size_t pos = 0;
	int subject_seen = 0;
	while (hdr_next(body, hlen, &pos, &f)) {
		if (hdr_is(&f, PHISH_FIELD))
			continue;   /* the sender's own: never trusted, never shown */
		if (want_subject && hdr_is(&f, "Subject")) {
			const char *v = f.value;
			size_t vl = f.value_len, lead = 0;
			while (lead < vl && (v[lead] == ' ' || v[lead] == '\t'))
				lead++;
			subject_seen = 1;
			size_t pre = (size_t)(f.value - f.raw);
			if (vl - lead >= tag.len && memcmp(v + lead, tag.data, tag.len) == 0) {
				if (emit(ctx, f.raw, f.raw_len) < 0)
					goto out;
				continue;
			}
			if (emit(ctx, f.raw, pre) < 0 || emit(ctx, " ", 1) < 0 ||
			    emit(ctx, tag.data, tag.len) < 0 || emit(ctx, " ", 1) < 0 ||
			    emit(ctx, v + lead, f.raw_len - pre - lead) < 0)
				goto out;
			*applied_r |= PHISH_APPLIED_SUBJECT;
			continue;
		}
		if (emit(ctx, f.raw, f.raw_len) < 0)
			goto out;
	}
	if (want_subject && !subject_seen) {
		if (emit(ctx, "Subject: ", 9) < 0 || emit(ctx, tag.data, tag.len) < 0 ||
		    emit(ctx, "\r\n", 2) < 0)
			goto out;
		*applied_r |= PHISH_APPLIED_SUBJECT;
	}
	if (want_body) {
		if (emit(ctx, body + pos, pl.off - pos) < 0 || emit(ctx, ins.data, ins.len) < 0 ||
		    emit(ctx, body + pl.off, blen - pl.off) < 0)
			goto out;
		*applied_r |= PHISH_APPLIED_BODY;
	} else if (emit(ctx, body + pos, blen - pos) < 0) {
		goto out;
	}
	r = 0;
out:
	buf_free(&ins);
	buf_free(&tag);
	return r;
}
