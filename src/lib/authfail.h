/* authfail.h - brute-force brake shared by all workers: failed logins per client IP and per
 * account, kept in shared memory. A failed login is answered after a delay that doubles with
 * each recent failure of that IP or that account (250 ms, 500 ms, ... up to login_delay_max;
 * auth-verify raises it to login_failure_delay); a correct login is never delayed, so a second
 * IP that knows the password is not locked out. Failures older than 15 minutes are forgotten.
 * Hash collisions share a counter (errs on the strict side).
 */
#ifndef POSTINO_AUTHFAIL_H
#define POSTINO_AUTHFAIL_H

#include <stdint.h>

#define AUTHFAIL_SLOTS 16384
#define AUTHFAIL_FORGET_S 900        /* failures older than this do not count */
#define AUTHFAIL_BASE_MS 250

struct authfail;

struct authfail *authfail_new_shared(void);
/* Record a failure by ip and user; returns the delay in ms before answering it, at most max_ms. */
unsigned authfail_failed(struct authfail *t, const char *ip, const char *user, unsigned max_ms);
/* A successful login clears the account's record (not the IP's). */
void authfail_succeeded(struct authfail *t, const char *ip, const char *user);
/* Current failure count of an IP or account (for diagnostics and tests). */
unsigned authfail_count(struct authfail *t, const char *kind, const char *key);

#endif
