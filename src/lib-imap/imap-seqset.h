/* imap-seqset.h - IMAP sequence sets (RFC 3501 / RFC 9051 "sequence-set", RFC 5182 "$").
 *
 * A parsed set is a sorted array of disjoint, non-adjacent ranges, with "*" already replaced by
 * the caller's largest number. The formatter writes the compact form ("1:3,5") used in UIDPLUS
 * COPYUID/APPENDUID (RFC 4315) and ESEARCH (RFC 4731) responses.
 */
#ifndef POSTINO_IMAP_SEQSET_H
#define POSTINO_IMAP_SEQSET_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Items ("n" or "n:m") one set may list before merging. Real clients send a few hundred at most;
 * the bound keeps sorting and memory per command small. */
#define IMAP_SEQSET_MAX_ITEMS 8192

/* imap_seqset_parse() result for "$": the set is the saved SEARCHRES result (RFC 5182). */
#define IMAP_SEQSET_SEARCHRES 1

struct imap_seq_range {
	uint32_t lo, hi; /* 1 <= lo <= hi */
};

struct imap_seqset {
	struct imap_seq_range *ranges; /* sorted by lo, disjoint and non-adjacent */
	size_t n;
	int searchres; /* 1 when the input was "$" (then n == 0) */
};

struct imap_seqset_iter {
	const struct imap_seqset *set;
	size_t idx;
	uint64_t next;
};

/* Parse s into out. "*" stands for max_star (the number of messages, or the highest UID); with
 * max_star 0 (empty mailbox) "*" alone matches nothing and "n:*" means 1:n. Returns 0 for a
 * set, IMAP_SEQSET_SEARCHRES for "$", -1 for bad syntax (empty item, 0, leading zero, a number
 * above 4294967295, junk, more than IMAP_SEQSET_MAX_ITEMS items) or out of memory. out is always
 * initialized; free it with imap_seqset_free(). */
int imap_seqset_parse(const char *s, uint32_t max_star, struct imap_seqset *out);
/* 1 if v is in the set, else 0 (binary search). */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t v);
/* Number of values in the set. */
uint64_t imap_seqset_count(const struct imap_seqset *set);
/* Release the ranges; the set is then empty. Accepts an already freed set. */
void imap_seqset_free(struct imap_seqset *set);

/* Start iterating over the values of set in ascending order. set must outlive the iterator. */
void imap_seqset_iter_init(struct imap_seqset_iter *it, const struct imap_seqset *set);
/* Next value into *v_r: 1, or 0 when done. */
int imap_seqset_iter_next(struct imap_seqset_iter *it, uint32_t *v_r);

/* Append the compact form of the ascending values v[0..n) ("1:3,5"; duplicates are merged).
 * Nothing is appended for n == 0. -1 (out unchanged) if v holds 0 or is not sorted, or when
 * out is full. */
int imap_seqset_format(const uint32_t *v, size_t n, struct buf *out);
/* Append the compact form of a parsed set ("$" sets and empty sets append nothing). -1 (out
 * unchanged) when out is full. */
int imap_seqset_format_set(const struct imap_seqset *set, struct buf *out);

#endif
