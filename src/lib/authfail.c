/* authfail.c - failed-login counters in shared memory. */
#include "authfail.h"

#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct slot {
	uint64_t key;        /* 0 = free */
	uint32_t count;
	uint32_t last;       /* unix time of the last failure */
};

struct authfail {
	struct slot slots[AUTHFAIL_SLOTS];
};

/* Map shared memory for the table (before fork). */
struct authfail *authfail_new_shared(void)
{
	void *p = mmap(NULL, sizeof(struct authfail), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* 64-bit FNV-1a of kind ":" key, never 0. */
static uint64_t af_hash(const char *kind, const char *key)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = kind; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ ':') * 1099511628211ull;
	for (const char *p = key; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 1099511628211ull;
	}
	return h ? h : 1;
}

/* The slot for a key (one probe position: a collision shares the counter). */
static struct slot *af_slot(struct authfail *t, uint64_t h)
{
	return &t->slots[h % AUTHFAIL_SLOTS];
}

/* Count one failure for a key; returns the count now in force. */
static uint32_t af_bump(struct authfail *t, const char *kind, const char *key, uint32_t now)
{
	uint64_t h = af_hash(kind, key);
	struct slot *s = af_slot(t, h);
	uint32_t last = __atomic_load_n(&s->last, __ATOMIC_RELAXED);
	if (__atomic_load_n(&s->key, __ATOMIC_RELAXED) != h || now - last > AUTHFAIL_FORGET_S) {
		__atomic_store_n(&s->key, h, __ATOMIC_RELAXED);
		__atomic_store_n(&s->count, 0, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&s->last, now, __ATOMIC_RELAXED);
	return __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
}

/* Record a failure and compute the delay. */
unsigned authfail_failed(struct authfail *t, const char *ip, const char *user, unsigned max_ms)
{
	if (t == NULL)
		return 0;
	uint32_t now = (uint32_t)time(NULL);
	uint32_t a = af_bump(t, "ip", ip, now);
	uint32_t b = user && *user ? af_bump(t, "user", user, now) : 0;
	uint32_t n = a > b ? a : b;
	if (n <= 1)
		return 0;     /* a first typo is answered at once */
	uint64_t ms = (uint64_t)AUTHFAIL_BASE_MS << (n - 2 > 16 ? 16 : n - 2);
	return ms > max_ms ? max_ms : (unsigned)ms;
}

/* Forget a key's failures. */
static void af_clear(struct authfail *t, const char *kind, const char *key)
{
	uint64_t h = af_hash(kind, key);
	struct slot *s = af_slot(t, h);
	if (__atomic_load_n(&s->key, __ATOMIC_RELAXED) == h)
		__atomic_store_n(&s->count, 0, __ATOMIC_RELAXED);
}

/* A successful login clears the account's record; the IP's stays (an attacker with an account
 * of their own must not be able to wash their guesses with it). */
void authfail_succeeded(struct authfail *t, const char *ip, const char *user)
{
	(void)ip;
	if (t == NULL)
		return;
	af_clear(t, "user", user);
}

/* Failure count of a key. */
unsigned authfail_count(struct authfail *t, const char *kind, const char *key)
{
	if (t == NULL)
		return 0;
	uint64_t h = af_hash(kind, key);
	struct slot *s = af_slot(t, h);
	if (__atomic_load_n(&s->key, __ATOMIC_RELAXED) != h ||
	    (uint32_t)time(NULL) - __atomic_load_n(&s->last, __ATOMIC_RELAXED) > AUTHFAIL_FORGET_S)
		return 0;
	return __atomic_load_n(&s->count, __ATOMIC_RELAXED);
}
