/* store-path.h - where an account's mail lives: <data>/mail/<domain>/<local>.
 *
 * The local part and domain are data, never paths: every octet outside [a-z0-9._+-] (and a
 * leading '.') is written as %XX, so no address can name "..", "/" or a hidden directory.
 */
#ifndef POSTINO_STORE_PATH_H
#define POSTINO_STORE_PATH_H

#include <stddef.h>

/* Build the account directory for "local@domain" (already lower-cased). 0 ok, -1 bad address or
 * does not fit. */
int store_account_path(const char *data_dir, const char *address, char *out, size_t outlen);

#endif
