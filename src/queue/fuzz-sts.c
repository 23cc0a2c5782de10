/* fuzz-sts.c - libFuzzer target: MTA-STS TXT records and policies from a hostile domain. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mta-sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	char id[STS_ID_MAX + 1], why[200], list[600];
	if (sts_txt_parse(s, id) == 1 && (strlen(id) == 0 || strlen(id) > STS_ID_MAX))
		abort();
	struct sts_policy p;
	if (sts_policy_parse(s, size, &p, why, sizeof(why)) == 0) {
		if (p.mode != STS_NONE && p.nmx == 0)
			abort();
		if (p.max_age < 0 || p.max_age > STS_MAX_AGE_MAX)
			abort();
		for (unsigned i = 0; i < p.nmx; i++)
			if (p.mx[i][0] != '*' && !sts_mx_match(&p, p.mx[i]))
				abort();   /* a listed host matches itself */
		sts_mx_list(&p, list, sizeof(list));
		sts_mx_match(&p, s);
	}
	free(s);
	return 0;
}
