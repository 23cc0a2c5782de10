/* num.c - checked number parsing. */
#include "num.h"

#include <string.h>

/* Parse plain decimal digits into *out, refusing overflow and values above max. */
int num_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)   /* test before multiplying */
			return -1;
		v = v * 10 + d;
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

/* Parse a number followed by one optional unit letter with the given multipliers. */
static int num_parse_unit(const char *s, const char *units, const uint64_t *mult, uint64_t *out)
{
	size_t len = strlen(s);
	uint64_t m = 1, v;
	if (len > 0) {
		const char *u = strchr(units, s[len - 1]);
		if (u != NULL && *u != '\0') {
			m = mult[u - units];
			len--;
		}
	}
	if (num_parse_u64(s, len, UINT64_MAX, &v) < 0)
		return -1;
	if (v != 0 && m > UINT64_MAX / v)
		return -1;
	*out = v * m;
	return 0;
}

/* Sizes: K, M, G with or without a following B are accepted as powers of 1024. */
int num_parse_size(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = { 1024, 1024, 1048576, 1048576, 1073741824, 1073741824 };
	char tmp[32];
	size_t len = strlen(s);
	if (len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len + 1);
	if (len > 1 && (tmp[len - 1] == 'B' || tmp[len - 1] == 'b') &&
	    strchr("KkMmGg", tmp[len - 2]) != NULL)
		tmp[len - 1] = '\0';
	return num_parse_unit(tmp, "KkMmGg", mult, out);
}

/* Durations in seconds: s, m, h, d. */
int num_parse_duration(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = { 1, 60, 3600, 86400 };
	return num_parse_unit(s, "smhd", mult, out);
}
