/* iptable.h - concurrent connections per client IP, shared by all worker processes.
 *
 * The master creates the table (shared anonymous memory) before forking. Each worker counts in
 * its own column, so when a worker dies the master clears that column and no count is left stuck.
 * Addresses hash into a fixed number of slots; two addresses sharing a slot share a count, which
 * errs on the strict side and bounds the memory.
 */
#ifndef POSTINO_IPTABLE_H
#define POSTINO_IPTABLE_H

#include <sys/socket.h>

#define IPTABLE_SLOTS 4096
#define IPTABLE_WORKERS 64

struct iptable;

struct iptable *iptable_new_shared(void);
/* Count a new connection for worker `w` from `sa`: 1 accepted (counted), 0 over `limit` (not
 * counted). */
int iptable_acquire(struct iptable *t, unsigned w, const struct sockaddr *sa, unsigned limit);
void iptable_release(struct iptable *t, unsigned w, const struct sockaddr *sa);
/* Forget every count of worker w (it died). */
void iptable_clear_worker(struct iptable *t, unsigned w);

#endif
