/* sasl.c - SASL PLAIN and LOGIN response decoding (see sasl.h). */
#include "sasl.h"

#include <string.h>
#include <strings.h>

#include "base64.h"

/* Decode SASL PLAIN: authzid NUL authcid NUL passwd. */
int sasl_plain_decode(const char *b64, char *authc, size_t authclen, char *pass, size_t passlen)
{
	unsigned char buf[SASL_PLAIN_MAX + 1];
	ssize_t n = base64_decode(b64, strlen(b64), buf, sizeof(buf) - 1);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	const unsigned char *nul1 = memchr(buf, '\0', (size_t)n);
	const unsigned char *nul2 =
		nul1 ? memchr(nul1 + 1, '\0', (size_t)(buf + n - nul1 - 1)) : NULL;
	int rc = 0;
	if (nul1 == NULL || nul2 == NULL) {
		rc = -1;
	} else {
		const char *az = (const char *)buf, *ac = (const char *)nul1 + 1,
			   *pw = (const char *)nul2 + 1;
		size_t al = (size_t)(nul2 - nul1 - 1), pl = (size_t)(buf + n - nul2 - 1);
		/* a third NUL would hide the rest of the password from every strlen() after us */
		if (al == 0 || pl == 0 || memchr(pw, '\0', pl) != NULL)
			rc = -1;
		else if (*az && strcasecmp(az, ac) != 0)
			rc = -2;
		else if (al >= authclen || pl >= passlen)
			rc = -1;
		else {
			memcpy(authc, ac, al + 1);
			memcpy(pass, pw, pl);
			pass[pl] = '\0';
		}
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}

/* Decode one SASL LOGIN line. */
ssize_t sasl_login_decode(const char *b64, char *out, size_t outcap)
{
	if (outcap == 0)
		return -1;
	if (strcmp(b64, "=") == 0) {
		out[0] = '\0';
		return 0;
	}
	ssize_t n = base64_decode(b64, strlen(b64), (unsigned char *)out, outcap - 1);
	if (n < 0 || memchr(out, '\0', (size_t)n) != NULL) {
		explicit_bzero(out, outcap);
		return -1;
	}
	out[n] = '\0';
	return n;
}
