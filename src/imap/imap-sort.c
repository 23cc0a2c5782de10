/* imap-sort.c - SORT (RFC 5256): ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, DISPLAY and REVERSE,
 * over the messages a search selects; ties are broken by sequence number. Sort keys are read
 * from each message's header once, before sorting. */
#include "imap-private.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "casefold.h"
#include "mime.h"

#define SORT_KEYS_MAX IMAP_SORT_KEYS_MAX
#define SORT_TEXT_MAX 256

enum sort_crit { S_ARRIVAL, S_CC, S_DATE, S_FROM, S_SIZE, S_SUBJECT, S_TO, S_DISPLAYFROM,
		 S_DISPLAYTO };

struct sort_key {
	enum sort_crit c;
	int reverse;
};

struct sort_item {
	size_t idx;                      /* into s->msgs */
	char text[SORT_KEYS_MAX][SORT_TEXT_MAX];
	int64_t num[SORT_KEYS_MAX];
};

static struct sort_key sort_keys[SORT_KEYS_MAX];
static size_t nsort_keys;

/* End of the subj-blob at p ("[" *BLOBCHAR "]" *WSP, RFC 5256 5), or NULL if there is none. */
static char *subj_blob_end(char *p)
{
	if (*p != '[')
		return NULL;
	for (p++; *p != '\0' && *p != '[' && *p != ']'; p++)
		;
	if (*p != ']')
		return NULL;
	for (p++; *p == ' '; p++)
		;
	return p;
}

/* End of the subj-leader's subj-refwd at p (("re" / "fw" ["d"]) *WSP [subj-blob] ":"), after
 * any subj-blobs before it; NULL if p does not start a subj-leader. p is upper case. */
static char *subj_refwd_end(char *p)
{
	char *q;
	while (*p == '[' && (q = subj_blob_end(p)) != NULL)
		p = q;
	if (strncmp(p, "RE", 2) == 0) {
		p += 2;
	} else if (strncmp(p, "FW", 2) == 0) {
		p += 2;
		if (*p == 'D')
			p++;
	} else {
		return NULL;
	}
	while (*p == ' ')
		p++;
	if (*p == '[' && (q = subj_blob_end(p)) != NULL)
		p = q;
	return *p == ':' ? p + 1 : NULL;
}

/* RFC 5256 2.1 base subject of an (RFC 2047-decoded) subject: white space folded to one space,
 * trailing "(fwd)" and leading "Re:", "Fw:", "Fwd:" (with [blob]s) and "[blob]"s removed, a
 * "[fwd: ...]" wrapper unwrapped, all repeated until nothing changes. ASCII letters are
 * upper-cased, so that SORT and ORDEREDSUBJECT order as Dovecot does ("[x]" < "_" < "a"
 * would hold only in lower case; i;ascii-casemap compares upper-cased). *is_reply_r (may be
 * NULL) tells whether a Re/Fwd leader or a [fwd:] wrapper was removed (RFC 5256 4.2.C). */
void imap_base_subject_ex(const char *in, char *out, size_t outlen, int *is_reply_r)
{
	char tmp[1024];
	size_t o = 0;
	int reply = 0;
	for (const char *p = in; *p && o + 1 < sizeof(tmp); p++) {   /* step 1: fold */
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			if (o > 0 && tmp[o - 1] != ' ')
				tmp[o++] = ' ';
		} else {
			tmp[o++] = (char)toupper((unsigned char)*p);
		}
	}
	tmp[o] = '\0';
	char *s = tmp;
	for (;;) {
		size_t l = strlen(s);
		for (;;) {                                     /* step 2: subj-trailer */
			while (l > 0 && s[l - 1] == ' ')
				s[--l] = '\0';
			if (l >= 5 && strcmp(s + l - 5, "(FWD)") == 0) {
				s[l -= 5] = '\0';
				reply = 1;
				continue;
			}
			break;
		}
		for (int changed = 1; changed;) {              /* steps 3 to 5 */
			char *q;
			changed = 0;
			if (*s == ' ') {
				s++;
				changed = 1;
			} else if ((q = subj_refwd_end(s)) != NULL) {
				s = q;
				reply = 1;
				changed = 1;
			} else if ((q = subj_blob_end(s)) != NULL && *q != '\0') {
				s = q;
				changed = 1;
			}
		}
		l = strlen(s);                                 /* step 6: "[fwd:" ... "]" */
		if (l > 5 && strncmp(s, "[FWD:", 5) == 0 && s[l - 1] == ']') {
			s[l - 1] = '\0';
			s += 5;
			reply = 1;
			continue;
		}
		break;
	}
	snprintf(out, outlen, "%s", s);
	if (is_reply_r != NULL)
		*is_reply_r = reply;
}

/* RFC 5256 2.1 base subject (see imap_base_subject_ex). */
void imap_base_subject(const char *in, char *out, size_t outlen)
{
	imap_base_subject_ex(in, out, outlen, NULL);
}

/* The sent date of a header section (its Date: field) in seconds since the epoch, UTC (the
 * zone offset applied, RFC 5256 2.2); `fallback` (the INTERNALDATE) when there is none or it
 * cannot be read. */
int64_t imap_sent_date(const char *hdr, size_t hl, int64_t fallback)
{
	struct buf v;
	int64_t when = fallback;
	buf_init(&v, 4096);
	if (mime_header_get(hdr, hl, "Date", &v) == 1 && v.data) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		const char *p = strchr(v.data, ',');
		p = p ? p + 1 : v.data;
		const char *e = strptime(p, " %d %b %Y %H:%M", &tm);
		if (e != NULL) {
			long off = 0;
			int zh, zm;
			char sign;
			if (*e == ':') {                  /* seconds are optional (RFC 5322 3.3) */
				const char *e2 = strptime(e, ":%S", &tm);
				e = e2 ? e2 : e + 1;
			}
			if (sscanf(e, " %c%2d%2d", &sign, &zh, &zm) == 3 &&
			    (sign == '+' || sign == '-'))
				off = (sign == '+' ? 1 : -1) * (zh * 3600L + zm * 60L);
			when = (int64_t)timegm(&tm) - off;
		}
	}
	buf_free(&v);
	return when;
}

/* First address of an address header: its mailbox part (or display name), lower-cased. */
static void first_address(const char *hdr, size_t hl, const char *name, int display, char *out,
			  size_t outlen)
{
	struct buf v, d;
	buf_init(&v, 65536);
	buf_init(&d, 65536);
	out[0] = '\0';
	if (mime_header_get(hdr, hl, name, &v) == 1 && v.data) {
		const char *p = v.data;
		const char *lt = strchr(p, '<');
		if (display && lt && lt > p) {
			mime_decode_words(p, (size_t)(lt - p), &d);
			const char *q = d.data ? d.data : "";
			while (*q == ' ' || *q == '"')
				q++;
			snprintf(out, outlen, "%s", q);
			size_t l = strlen(out);
			while (l > 0 && (out[l - 1] == ' ' || out[l - 1] == '"'))
				out[--l] = '\0';
		} else {
			const char *start = lt ? lt + 1 : p;
			while (*start == ' ')
				start++;
			/* the mailbox of the first address; a group's display name stands for it
			 * ("undisclosed: a@b;" sorts as "undisclosed", as Dovecot does) */
			size_t l = strcspn(start, "@>,;: ");
			if (l >= outlen)
				l = outlen - 1;
			memcpy(out, start, l);
			out[l] = '\0';
		}
		for (char *c = out; *c; c++)
			*c = (char)tolower((unsigned char)*c);
	}
	buf_free(&v);
	buf_free(&d);
}

/* Compare two items by the sort program; ties by sequence number. */
static int sort_cmp(const void *a, const void *b)
{
	const struct sort_item *x = a, *y = b;
	for (size_t k = 0; k < nsort_keys; k++) {
		int r;
		switch (sort_keys[k].c) {
		case S_ARRIVAL:
		case S_DATE:
		case S_SIZE:
			r = x->num[k] < y->num[k] ? -1 : x->num[k] > y->num[k];
			break;
		default:
			r = strcmp(x->text[k], y->text[k]);
			break;
		}
		if (r)
			return sort_keys[k].reverse ? -r : r;
	}
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Fill the sort keys of one message. */
static void sort_fill(struct imap_session *s, struct sort_item *it, struct store_header_cursor *hc)
{
	struct imap_msg *m = &s->msgs[it->idx];
	char *hdr = NULL;
	const char *msg = "";
	size_t hl = 0;
	int need_hdr = 0;
	for (size_t k = 0; k < nsort_keys; k++)
		need_hdr |= sort_keys[k].c != S_ARRIVAL && sort_keys[k].c != S_SIZE;
	if (need_hdr && imap_msg_header(s, it->idx, hc, &hdr, &hl) == 0)
		msg = hdr;
	for (size_t k = 0; k < nsort_keys; k++) {
		it->text[k][0] = '\0';
		it->num[k] = 0;
		switch (sort_keys[k].c) {
		case S_ARRIVAL:
			it->num[k] = m->internaldate;
			break;
		case S_SIZE:
			it->num[k] = (int64_t)m->size;
			break;
		case S_DATE:
			it->num[k] = imap_sent_date(msg, hl, m->internaldate);
			break;
		case S_SUBJECT: {
			struct buf v, d;
			buf_init(&v, 65536);
			buf_init(&d, 65536);
			if (mime_header_get(msg, hl, "Subject", &v) == 1 && v.data) {
				mime_decode_words(v.data, v.len, &d);
				imap_base_subject(d.data ? d.data : v.data, it->text[k], SORT_TEXT_MAX);
			}
			buf_free(&v);
			buf_free(&d);
			break;
		}
		case S_FROM:
		case S_DISPLAYFROM:
			first_address(msg, hl, "From", sort_keys[k].c == S_DISPLAYFROM, it->text[k],
				      SORT_TEXT_MAX);
			break;
		case S_TO:
		case S_DISPLAYTO:
			first_address(msg, hl, "To", sort_keys[k].c == S_DISPLAYTO, it->text[k],
				      SORT_TEXT_MAX);
			break;
		case S_CC:
			first_address(msg, hl, "Cc", 0, it->text[k], SORT_TEXT_MAX);
			break;
		}
		if (it->text[k][0] != '\0')   /* text keys compare by their folded forms */
			casefold_sort_key(it->text[k], SORT_TEXT_MAX);
	}
	free(hdr);
}

/* See imap-private.h. */
int imap_sort_parse(const struct imap_arg *list, struct imap_sort_prog *p, const char **why_r)
{
	static const struct { const char *n; enum sort_crit c; } crits[] = {
		{ "ARRIVAL", S_ARRIVAL }, { "CC", S_CC }, { "DATE", S_DATE }, { "FROM", S_FROM },
		{ "SIZE", S_SIZE }, { "SUBJECT", S_SUBJECT }, { "TO", S_TO },
		{ "DISPLAYFROM", S_DISPLAYFROM }, { "DISPLAYTO", S_DISPLAYTO } };
	int rev = 0;
	p->n = 0;
	if (list->type != IMAP_ARG_LIST || list->nlist == 0) {
		*why_r = "Use SORT (criteria) charset search-keys";
		return -1;
	}
	for (size_t i = 0; i < list->nlist; i++) {
		const char *c = list->list[i].str;
		if (strcasecmp(c, "REVERSE") == 0) {
			rev = 1;
			continue;
		}
		size_t k;
		for (k = 0; k < sizeof(crits) / sizeof(crits[0]); k++)
			if (strcasecmp(c, crits[k].n) == 0)
				break;
		if (k == sizeof(crits) / sizeof(crits[0]) || p->n == SORT_KEYS_MAX) {
			*why_r = "Unknown or too many sort criteria";
			return -1;
		}
		p->crit[p->n] = (int)crits[k].c;
		p->reverse[p->n] = rev;
		p->n++;
		rev = 0;
	}
	if (rev || p->n == 0) {
		*why_r = "REVERSE must precede a criterion";
		return -1;
	}
	return 0;
}

/* See imap-private.h. */
int imap_sort_match(struct imap_session *s, const struct imap_sort_prog *p,
		    const struct imap_arg *args, size_t n, size_t **idx_r, size_t *n_r,
		    const char **why_r)
{
	size_t *match, nm;
	if (imap_search_match(s, args, n, &match, &nm, why_r) < 0)
		return -1;
	struct sort_item *items = calloc(nm + 1, sizeof(*items));
	if (items == NULL) {
		free(match);
		*why_r = "Out of memory";
		return -1;
	}
	nsort_keys = p->n;
	for (size_t k = 0; k < p->n; k++) {
		sort_keys[k].c = (enum sort_crit)p->crit[k];
		sort_keys[k].reverse = p->reverse[k];
	}
	struct store_header_cursor *hc = NULL;
	store_header_open(s->acct, s->box, &hc);
	int began = store_read_begin(s->acct);
	for (size_t i = 0; i < nm; i++) {
		items[i].idx = match[i];
		sort_fill(s, &items[i], hc);
	}
	store_header_close(&hc);
	store_read_end(s->acct, began);
	qsort(items, nm, sizeof(*items), sort_cmp);
	for (size_t i = 0; i < nm; i++)
		match[i] = items[i].idx;
	free(items);
	*idx_r = match;
	*n_r = nm;
	return 0;
}

/* SORT [RETURN (options)] (criteria) charset keys; with RETURN the answer is an ESEARCH
 * (RFC 5267 ESORT) whose MIN and MAX are the first and last in sort order. */
void imap_cmd_sort(struct imap_session *s, const struct imap_arg *args, size_t n, int uid)
{
	struct imap_search_ret r;
	struct imap_sort_prog prog;
	const char *why;
	memset(&r, 0, sizeof(r));
	if (n > 1 && args[0].type == IMAP_ARG_ATOM && strcasecmp(args[0].str, "RETURN") == 0) {
		if (args[1].type != IMAP_ARG_LIST) {
			imap_bad(s, "Use SORT RETURN (options) (criteria) charset search-keys");
			return;
		}
		if (imap_search_ret_parse(&args[1], 1, &r, &why) < 0) {
			imap_bad(s, "%s", why);
			return;
		}
		args += 2;
		n -= 2;
	}
	if (n < 3 || imap_sort_parse(&args[0], &prog, &why) < 0) {
		imap_bad(s, "%s", n < 3 ? "Use SORT (criteria) charset search-keys" : why);
		return;
	}
	const char *cs = args[1].str;
	if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
		imap_tagged(s, "NO", "[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
		return;
	}
	imap_sync_mailbox(s, 0);
	size_t *idx, nm;
	if (imap_sort_match(s, &prog, args + 2, n - 2, &idx, &nm, &why) < 0) {
		imap_bad(s, "%s", why);
		return;
	}
	int noupdate = r.update && imap_context_add(s, uid, &prog, args + 2, n - 2, idx, nm) < 0;
	uint32_t *hits = calloc(nm + 1, sizeof(*hits));
	uint64_t maxmodseq = 0;
	if (hits == NULL) {
		free(idx);
		imap_tagged(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	for (size_t i = 0; i < nm; i++) {
		hits[i] = uid ? s->msgs[idx[i]].uid : (uint32_t)(idx[i] + 1);
		if (s->msgs[idx[i]].modseq > maxmodseq)
			maxmodseq = s->msgs[idx[i]].modseq;
	}
	free(idx);
	imap_search_answer(s, "SORT", uid, &r, hits, nm, r.esearch ? maxmodseq : 0);
	free(hits);
	imap_search_done(s, "SORT", uid, noupdate);
}
