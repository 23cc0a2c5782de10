/* store-path.c - map addresses to account directories without letting them become paths. */
#include "store-path.h"

#include <string.h>

/* Append s[0..n) to out at *o, escaping everything but [a-z0-9._+-] and a leading dot. */
static int path_escape(const char *s, size_t n, char *out, size_t outlen, size_t *o)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int plain = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			    c == '+' || c == '-' || (c == '.' && i > 0);
		if (*o + 4 >= outlen)
			return -1;
		if (plain) {
			out[(*o)++] = (char)c;
		} else {
			out[(*o)++] = '%';
			out[(*o)++] = hex[c >> 4];
			out[(*o)++] = hex[c & 15];
		}
	}
	out[*o] = '\0';
	return 0;
}

/* <data>/mail/<domain>/<local>. */
int store_account_path(const char *data_dir, const char *address, char *out, size_t outlen)
{
	const char *at = strrchr(address, '@');
	size_t o;
	if (at == NULL || at == address || at[1] == '\0')
		return -1;
	size_t dl = strlen(data_dir);
	if (dl + 7 >= outlen)
		return -1;
	memcpy(out, data_dir, dl);
	memcpy(out + dl, "/mail/", 6);
	o = dl + 6;
	if (path_escape(at + 1, strlen(at + 1), out, outlen, &o) < 0)
		return -1;
	if (o + 2 >= outlen)
		return -1;
	out[o++] = '/';
	return path_escape(address, (size_t)(at - address), out, outlen, &o);
}
