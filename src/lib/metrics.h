/* metrics.h - server counters shared by every process of "postino serve".
 *
 * The master maps one shared anonymous segment before it forks: a slot per worker index and one
 * for the queue process. Each process adds only to its own slot (atomically: its pool threads
 * add too), so no lock is shared between processes, a dying worker cannot leave a half-written
 * count, and a restarted worker continues its slot's counts (Prometheus counters never go
 * back). The reader (the /metrics page of the admin listener, which "postino status" fetches)
 * sums the slots.
 */
#ifndef POSTINO_METRICS_H
#define POSTINO_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;

#define METRICS_WORKERS 64             /* = IPTABLE_WORKERS: one slot per worker index */
#define METRICS_QUEUE_SLOT METRICS_WORKERS
#define METRICS_LISTENERS 16           /* listener ids (config.h LST_COUNT) fit */
#define METRICS_BUCKETS 12             /* latency histogram buckets, +Inf included */

enum metrics_proto { MP_SMTP, MP_IMAP, MP_POP3, MP_COUNT };
enum metrics_counter {
	MC_RECEIVED,          /* messages accepted with a 250 (SMTP) */
	MC_DELIVERED_LOCAL,   /* mailbox deliveries (per recipient) */
	MC_DELIVERED_REMOTE,  /* recipients another server accepted (queue) */
	MC_BOUNCED,           /* recipients that failed for good (queue) */
	MC_DEFERRED,          /* recipients left for a retry (queue) */
	MC_TLS_FAILED,        /* TLS handshakes that failed */
	MC_LOGIN_CACHED,      /* logins accepted from the login cache (auth-verify.h) */
	MC_COUNT
};
enum metrics_hist { MH_DELIVERY, MH_COMMAND, MH_COUNT };

/* Create the segment (master, before forking). -1 on error (errno). */
int metrics_init_shared(void);
/* This process adds to slot i (a worker index, or METRICS_QUEUE_SLOT). */
void metrics_set_slot(unsigned i);
/* The master records which pid owns a worker slot (0: none), for the memory gauge. */
void metrics_slot_pid(unsigned i, int pid);

/* The hooks: each is one call, cheap, and does nothing without a segment. */
void metrics_count(enum metrics_counter c);
void metrics_connection(unsigned listener);
void metrics_login(enum metrics_proto p, int ok);
/* Observe a latency from *start_ns (metrics_now_ns) to now and clear *start_ns; 0 observes
 * nothing (so only the first reply to a command counts). */
void metrics_observe(enum metrics_hist h, enum metrics_proto p, uint64_t *start_ns);
/* Add n to a counter. */
void metrics_add(enum metrics_counter c, uint64_t n);
uint64_t metrics_now_ns(void);
/* This worker's open sessions now; METRICS_NOT_ACCEPTING once it takes no more (stopping). */
#define METRICS_NOT_ACCEPTING UINT32_MAX
void metrics_sessions(uint32_t n);
/* The fewest open sessions of any other live worker that accepts, or METRICS_NOT_ACCEPTING when
 * there is none (the workers balance new connections by it). */
uint32_t metrics_sessions_fewest_other(void);
/* Refresh this worker's resident memory (at most once a second; from /proc/self/statm). */
void metrics_sample_memory(void);

/* Append the Prometheus text exposition (version 0.0.4) of the summed slots to b, with the
 * listener names given (index = listener id) and the queue's length and oldest age as the
 * caller counted them. 0, or -1 when b is full. */
int metrics_render(struct buf *b, const char *const *listeners, size_t nlisteners,
		   uint64_t queue_len, uint64_t queue_oldest_s);

#endif
