/* casefold.h - Unicode case-insensitive matching for SEARCH and SORT: RFC 5051
 * i;unicode-casemap through libunistring (full case folding, then NFKD). ASCII-only text takes
 * a fast path; invalid UTF-8 bytes are kept as they are (ASCII folding) instead of failing. */
#ifndef POSTINO_CASEFOLD_H
#define POSTINO_CASEFOLD_H

#include <stddef.h>

/* Fold s[0..len) (full Unicode case folding and compatibility decomposition, RFC 5051) into a
 * new NUL-terminated string in *out_r (free() it) of *len_r bytes. Invalid UTF-8 octets are
 * copied unchanged, ASCII letters become lower case. 0 ok, -1 out of memory or the folded
 * form would exceed CASEFOLD_OUT_MAX. */
int casefold_dup(const char *s, size_t len, char **out_r, size_t *len_r);

/* Does hay[0..hl) contain the already folded needle[0..nl) (from casefold_dup) once hay is
 * folded too? nl == 0 always matches. When hay cannot be folded (memory), ASCII folding is
 * used for it. */
int casefold_contains(const char *hay, size_t hl, const char *needle, size_t nl);

/* Replace the NUL-terminated sort key in buf[0..cap) by its folded form with ASCII letters in
 * upper case (so ASCII-only keys order exactly as i;ascii-casemap), cut at a character boundary
 * to fit cap. Left as it is when it cannot be folded. */
void casefold_sort_key(char *buf, size_t cap);

#endif
