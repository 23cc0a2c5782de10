/* iptable.c - shared per-IP connection counts. */
#include "iptable.h"

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

struct iptable {
	unsigned count[IPTABLE_SLOTS][IPTABLE_WORKERS];
};

/* Map shared memory for the table. */
struct iptable *iptable_new_shared(void)
{
	void *p = mmap(NULL, sizeof(struct iptable), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* FNV-1a over the address bytes (IPv6 /64 would be kinder to privacy addresses; XXX later). */
static unsigned iptable_slot(const struct sockaddr *sa)
{
	const unsigned char *p;
	size_t n;
	if (sa->sa_family == AF_INET6) {
		p = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		n = 16;
	} else {
		p = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = 4;
	}
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % IPTABLE_SLOTS;
}

/* Count a connection if the IP is under its limit. */
int iptable_acquire(struct iptable *t, unsigned w, const struct sockaddr *sa, unsigned limit)
{
	unsigned s = iptable_slot(sa), total = 0;
	if (w >= IPTABLE_WORKERS)
		w = IPTABLE_WORKERS - 1;
	for (unsigned i = 0; i < IPTABLE_WORKERS; i++)
		total += __atomic_load_n(&t->count[s][i], __ATOMIC_RELAXED);
	if (limit > 0 && total >= limit)
		return 0;
	__atomic_add_fetch(&t->count[s][w], 1, __ATOMIC_RELAXED);
	return 1;
}

/* Uncount a connection. */
void iptable_release(struct iptable *t, unsigned w, const struct sockaddr *sa)
{
	unsigned s = iptable_slot(sa);
	if (w >= IPTABLE_WORKERS)
		w = IPTABLE_WORKERS - 1;
	if (__atomic_load_n(&t->count[s][w], __ATOMIC_RELAXED) > 0)
		__atomic_sub_fetch(&t->count[s][w], 1, __ATOMIC_RELAXED);
}

/* Clear a dead worker's column. */
void iptable_clear_worker(struct iptable *t, unsigned w)
{
	if (w >= IPTABLE_WORKERS)
		return;
	for (unsigned s = 0; s < IPTABLE_SLOTS; s++)
		__atomic_store_n(&t->count[s][w], 0, __ATOMIC_RELAXED);
}
