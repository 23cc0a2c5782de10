/* num.h - checked number parsing: no sign surprises, no trailing junk, no overflow. */
#ifndef POSTINO_NUM_H
#define POSTINO_NUM_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits only (1..20 of them), value <= max. 0 ok, -1 otherwise. */
int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
/* A size with optional unit K, M, G (powers of 1024; "25M", "1048576"). */
int num_parse_size(const char *s, uint64_t *out);
/* A duration with optional unit s, m, h, d ("300", "5m"); result in seconds. */
int num_parse_duration(const char *s, uint64_t *out);

#endif
