/* password.h - password hashing and verification.
 *
 * New hashes are yescrypt ("$y$...") through libxcrypt. Verification accepts every crypt(3) form
 * libxcrypt knows ($y$, $6$, $5$, $2b$/$2y$, $7$, $gy$), Dovecot-style prefixed forms
 * "{SHA512-CRYPT}$6$...", "{BLF-CRYPT}$2y$...", "{SHA256-CRYPT}", "{CRYPT}", and Argon2 through
 * libsodium: "{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash" and bare "$argon2id$..."/
 * "$argon2i$...". Comparison is constant-time. These functions are slow on purpose: never call
 * them on an event-loop thread.
 */
#ifndef POSTINO_PASSWORD_H
#define POSTINO_PASSWORD_H

/* Longest password the crypt(3) forms take (libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE - 1): longer
 * ones cannot be hashed (password_hash gives NULL) and never match a crypt(3) hash (0). */
#define PASSWORD_MAX 511

/* Hash a new password with yescrypt. Returns a malloc'd string, or NULL on failure. */
char *password_hash(const char *password);

/* 1 the password matches, 0 it does not, -1 the hash is malformed or of an unsupported scheme. */
int password_verify(const char *hash, const char *password);

/* Check a hash given on import (user add --hash): 0 acceptable (a scheme password_verify supports
 * and well-formed), -1 not. */
int password_hash_supported(const char *hash);

#endif
