/* imap-seqset.c - IMAP sequence sets: parse, query, iterate, format (see imap-seqset.h). */
#include "imap-seqset.h"

#include <stdlib.h>
#include <string.h>

/* Parse one seq-number at *sp: nz-number (no leading zero, <= 4294967295) or "*". Advances *sp;
 * -1 on bad syntax. */
static int parse_seq_number(const char **sp, uint32_t max_star, uint32_t *v_r)
{
	const char *s = *sp;
	uint64_t v = 0;
	if (*s == '*') {
		*v_r = max_star;
		*sp = s + 1;
		return 0;
	}
	if (*s < '1' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
		s++;
	}
	*v_r = (uint32_t)v;
	*sp = s;
	return 0;
}

/* qsort order: by lo, then hi. */
static int range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return 0;
}

/* Sort the ranges and merge overlapping or adjacent ones in place. */
static void normalize(struct imap_seqset *set)
{
	size_t w = 0;
	if (set->n == 0)
		return;
	qsort(set->ranges, set->n, sizeof(set->ranges[0]), range_cmp);
	for (size_t i = 1; i < set->n; i++) {
		struct imap_seq_range *cur = &set->ranges[w];
		const struct imap_seq_range *r = &set->ranges[i];
		if ((uint64_t)r->lo <= (uint64_t)cur->hi + 1) {
			if (r->hi > cur->hi)
				cur->hi = r->hi;
		} else {
			set->ranges[++w] = *r;
		}
	}
	set->n = w + 1;
}

/* Parse a sequence set; see the header. */
int imap_seqset_parse(const char *s, uint32_t max_star, struct imap_seqset *out)
{
	size_t cap = 0, items = 0;
	memset(out, 0, sizeof(*out));
	if (s[0] == '$' && s[1] == '\0') {
		out->searchres = 1;
		return IMAP_SEQSET_SEARCHRES;
	}
	for (;;) {
		uint32_t a, b;
		if (parse_seq_number(&s, max_star, &a) < 0)
			goto fail;
		b = a;
		if (*s == ':') {
			s++;
			if (parse_seq_number(&s, max_star, &b) < 0)
				goto fail;
		}
		if (*s != ',' && *s != '\0')
			goto fail;
		if (++items > IMAP_SEQSET_MAX_ITEMS)
			goto fail;
		if (a > b) {
			uint32_t t = a;
			a = b;
			b = t;
		}
		/* "*" in an empty mailbox is 0: it widens nothing and alone matches nothing */
		if (a == 0)
			a = 1;
		if (b != 0) {
			if (out->n == cap) {
				size_t ncap = cap ? cap * 2 : 8;
				struct imap_seq_range *nr;
				nr = realloc(out->ranges, ncap * sizeof(*nr));
				if (nr == NULL)
					goto fail;
				out->ranges = nr;
				cap = ncap;
			}
			out->ranges[out->n].lo = a;
			out->ranges[out->n].hi = b;
			out->n++;
		}
		if (*s == '\0')
			break;
		s++; /* ',' : an item must follow */
	}
	normalize(out);
	return 0;
fail:
	imap_seqset_free(out);
	return -1;
}

/* Membership by binary search over the sorted ranges. */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t v)
{
	size_t lo = 0, hi = set->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct imap_seq_range *r = &set->ranges[mid];
		if (v < r->lo)
			hi = mid;
		else if (v > r->hi)
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

/* Total number of values. */
uint64_t imap_seqset_count(const struct imap_seqset *set)
{
	uint64_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		n += (uint64_t)set->ranges[i].hi - set->ranges[i].lo + 1;
	return n;
}

/* Release a set. */
void imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	set->ranges = NULL;
	set->n = 0;
	set->searchres = 0;
}

/* Start an iteration. */
void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *set)
{
	it->set = set;
	it->idx = 0;
	it->next = set->n > 0 ? set->ranges[0].lo : 0;
}

/* Produce the next value. */
int imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *v_r)
{
	const struct imap_seqset *set = it->set;
	if (it->idx >= set->n)
		return 0;
	*v_r = (uint32_t)it->next;
	if (it->next >= set->ranges[it->idx].hi) {
		it->idx++;
		if (it->idx < set->n)
			it->next = set->ranges[it->idx].lo;
	} else {
		it->next++;
	}
	return 1;
}

/* Append "lo" or "lo:hi", preceded by a comma unless first. */
static int put_range(struct buf *out, int first, uint32_t lo, uint32_t hi)
{
	if (lo == hi)
		return buf_appendf(out, "%s%u", first ? "" : ",", (unsigned)lo);
	return buf_appendf(out, "%s%u:%u", first ? "" : ",", (unsigned)lo, (unsigned)hi);
}

/* Undo a partial append. */
static void truncate_to(struct buf *out, size_t len)
{
	out->len = len;
	if (out->data != NULL)
		out->data[len] = '\0';
}

/* Compact form of sorted values. */
int imap_seqset_format(const uint32_t *v, size_t n, struct buf *out)
{
	size_t start = out->len;
	size_t i = 0;
	int first = 1;
	for (size_t k = 0; k < n; k++) {
		if (v[k] == 0 || (k > 0 && v[k] < v[k - 1]))
			return -1;
	}
	while (i < n) {
		uint32_t lo = v[i], hi = v[i];
		i++;
		while (i < n && (v[i] == hi || (hi != UINT32_MAX && v[i] == hi + 1)))
			hi = v[i++];
		if (put_range(out, first, lo, hi) < 0) {
			truncate_to(out, start);
			return -1;
		}
		first = 0;
	}
	return 0;
}

/* Compact form of a parsed set. */
int imap_seqset_format_set(const struct imap_seqset *set, struct buf *out)
{
	size_t start = out->len;
	for (size_t i = 0; i < set->n; i++) {
		if (put_range(out, i == 0, set->ranges[i].lo, set->ranges[i].hi) < 0) {
			truncate_to(out, start);
			return -1;
		}
	}
	return 0;
}
