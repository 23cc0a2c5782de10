/* metrics.c - counters in shared memory, one slot per process, Prometheus text output. */
#include "metrics.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

#define SLOTS (METRICS_WORKERS + 1)
#define MEMORY_SAMPLE_NS 1000000000ull   /* /proc/self/statm at most once a second */

/* Upper bounds of the latency buckets in milliseconds (the last is +Inf). */
static const unsigned bucket_ms[METRICS_BUCKETS - 1] = { 1, 5, 10, 25, 50, 100, 250, 500, 1000,
							  5000, 30000 };

struct hist {
	uint64_t bucket[METRICS_BUCKETS];   /* not cumulative; summed at render */
	uint64_t count, sum_us;
};

struct slot {
	int pid;                            /* worker slots: set by the master, 0 = none */
	uint32_t sessions;                  /* open now (METRICS_NOT_ACCEPTING: stopping) */
	uint64_t rss_bytes, rss_at_ns;
	uint64_t counter[MC_COUNT];
	uint64_t conn[METRICS_LISTENERS];
	uint64_t login[MP_COUNT][2];        /* [proto][ok] */
	struct hist hist[MH_COUNT][MP_COUNT];
};

static struct slot *seg;                    /* NULL: not counting (CLI, unit tests) */
static struct slot *mine;

/* Map the shared segment. */
int metrics_init_shared(void)
{
	void *p = mmap(NULL, sizeof(struct slot) * SLOTS, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	seg = p;
	return 0;
}

/* Count into slot i from now on. */
void metrics_set_slot(unsigned i)
{
	mine = seg != NULL && i < SLOTS ? &seg[i] : NULL;
}

/* Record the pid of a worker slot. */
void metrics_slot_pid(unsigned i, int pid)
{
	if (seg != NULL && i < METRICS_WORKERS) {
		__atomic_store_n(&seg[i].pid, pid, __ATOMIC_RELAXED);
		if (pid == 0) {
			__atomic_store_n(&seg[i].rss_bytes, 0, __ATOMIC_RELAXED);
			__atomic_store_n(&seg[i].sessions, 0, __ATOMIC_RELAXED);
		}
	}
}

/* Add one to a counter of this process's slot. */
static void add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Publish this worker's session count. */
void metrics_sessions(uint32_t n)
{
	if (mine != NULL)
		__atomic_store_n(&mine->sessions, n, __ATOMIC_RELAXED);
}

/* The least busy other worker. */
uint32_t metrics_sessions_fewest_other(void)
{
	uint32_t fewest = METRICS_NOT_ACCEPTING;
	if (seg == NULL || mine == NULL)
		return fewest;
	for (size_t i = 0; i < METRICS_WORKERS; i++) {
		if (&seg[i] == mine || __atomic_load_n(&seg[i].pid, __ATOMIC_RELAXED) == 0)
			continue;
		uint32_t n = __atomic_load_n(&seg[i].sessions, __ATOMIC_RELAXED);
		if (n < fewest)
			fewest = n;
	}
	return fewest;
}

/* Count an event. */
void metrics_count(enum metrics_counter c)
{
	if (mine != NULL && c < MC_COUNT)
		add(&mine->counter[c], 1);
}

/* Add n to a counter. */
void metrics_add(enum metrics_counter c, uint64_t n)
{
	if (mine != NULL && c < MC_COUNT)
		add(&mine->counter[c], n);
}

/* Count an accepted connection. */
void metrics_connection(unsigned listener)
{
	if (mine != NULL && listener < METRICS_LISTENERS)
		add(&mine->conn[listener], 1);
}

/* Count a login. */
void metrics_login(enum metrics_proto p, int ok)
{
	if (mine != NULL && p < MP_COUNT)
		add(&mine->login[p][ok != 0], 1);
}

/* Monotonic time in ns. */
uint64_t metrics_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Observe a latency into a histogram. */
void metrics_observe(enum metrics_hist h, enum metrics_proto p, uint64_t *start)
{
	uint64_t start_ns = *start;
	*start = 0;
	if (mine == NULL || start_ns == 0 || h >= MH_COUNT || p >= MP_COUNT)
		return;
	uint64_t now = metrics_now_ns(), us = now > start_ns ? (now - start_ns) / 1000 : 0;
	size_t b = 0;
	while (b < METRICS_BUCKETS - 1 && us > (uint64_t)bucket_ms[b] * 1000)
		b++;
	struct hist *hi = &mine->hist[h][p];
	add(&hi->bucket[b], 1);
	add(&hi->sum_us, us);
	add(&hi->count, 1);
}

/* Refresh this process's resident set size. */
void metrics_sample_memory(void)
{
	if (mine == NULL)
		return;
	uint64_t now = metrics_now_ns();
	if (mine->rss_at_ns != 0 && now - mine->rss_at_ns < MEMORY_SAMPLE_NS)
		return;
	mine->rss_at_ns = now;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char t[128];
	ssize_t n = read(fd, t, sizeof(t) - 1);
	close(fd);
	unsigned long long size, rss;
	if (n <= 0)
		return;
	t[n] = '\0';
	if (sscanf(t, "%llu %llu", &size, &rss) == 2)
		__atomic_store_n(&mine->rss_bytes, rss * (uint64_t)sysconf(_SC_PAGESIZE),
				 __ATOMIC_RELAXED);
}

/* Sum one counter over every slot. */
#define SUM(expr)                                                                  \
	({                                                                         \
		uint64_t sum_ = 0;                                                 \
		for (size_t i_ = 0; i_ < SLOTS; i_++) {                            \
			const struct slot *sl = &seg[i_];                          \
			sum_ += __atomic_load_n(&(expr), __ATOMIC_RELAXED);        \
		}                                                                  \
		sum_;                                                              \
	})

static const char *const proto_names[MP_COUNT] = { "smtp", "imap", "pop3" };

/* Append one histogram family. */
static int render_hist(struct buf *b, const char *name, const char *help, enum metrics_hist h,
		       size_t nprotos)
{
	int r = buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t p = 0; p < nprotos; p++) {
		uint64_t cum = 0;
		for (size_t k = 0; k < METRICS_BUCKETS; k++) {
			cum += SUM(sl->hist[h][p].bucket[k]);
			if (k < METRICS_BUCKETS - 1)
				r |= buf_appendf(b, "%s_bucket{proto=\"%s\",le=\"%g\"} %llu\n",
						 name, proto_names[p], bucket_ms[k] / 1000.0,
						 (unsigned long long)cum);
			else
				r |= buf_appendf(b, "%s_bucket{proto=\"%s\",le=\"+Inf\"} %llu\n",
						 name, proto_names[p], (unsigned long long)cum);
		}
		r |= buf_appendf(b, "%s_sum{proto=\"%s\"} %.6f\n%s_count{proto=\"%s\"} %llu\n",
				 name, proto_names[p], SUM(sl->hist[h][p].sum_us) / 1e6, name,
				 proto_names[p], (unsigned long long)SUM(sl->hist[h][p].count));
	}
	return r;
}

/* The Prometheus text exposition. */
int metrics_render(struct buf *b, const char *const *listeners, size_t nlisteners,
		   uint64_t queue_len, uint64_t queue_oldest_s)
{
	if (seg == NULL)
		return -1;
	metrics_sample_memory();
	int r = buf_appendstr(b, "# HELP postino_connections_total Connections accepted.\n"
			      "# TYPE postino_connections_total counter\n");
	for (size_t l = 0; l < nlisteners && l < METRICS_LISTENERS; l++)
		r |= buf_appendf(b, "postino_connections_total{listener=\"%s\"} %llu\n",
				 listeners[l], (unsigned long long)SUM(sl->conn[l]));
	r |= buf_appendstr(b, "# HELP postino_logins_total Logins by protocol and result.\n"
			   "# TYPE postino_logins_total counter\n");
	for (size_t p = 0; p < MP_COUNT; p++)
		r |= buf_appendf(b, "postino_logins_total{proto=\"%s\",result=\"ok\"} %llu\n"
				 "postino_logins_total{proto=\"%s\",result=\"failed\"} %llu\n",
				 proto_names[p], (unsigned long long)SUM(sl->login[p][1]),
				 proto_names[p], (unsigned long long)SUM(sl->login[p][0]));
	r |= buf_appendf(b, "# HELP postino_messages_received_total Messages accepted (250).\n"
			 "# TYPE postino_messages_received_total counter\n"
			 "postino_messages_received_total %llu\n"
			 "# HELP postino_messages_delivered_total Recipients delivered, to a local "
			 "mailbox or to another server.\n"
			 "# TYPE postino_messages_delivered_total counter\n"
			 "postino_messages_delivered_total{where=\"local\"} %llu\n"
			 "postino_messages_delivered_total{where=\"remote\"} %llu\n"
			 "# HELP postino_messages_bounced_total Recipients that failed for good.\n"
			 "# TYPE postino_messages_bounced_total counter\n"
			 "postino_messages_bounced_total %llu\n"
			 "# HELP postino_messages_deferred_total Delivery attempts left for a "
			 "retry.\n"
			 "# TYPE postino_messages_deferred_total counter\n"
			 "postino_messages_deferred_total %llu\n"
			 "# HELP postino_tls_handshake_failures_total TLS handshakes that failed.\n"
			 "# TYPE postino_tls_handshake_failures_total counter\n"
			 "postino_tls_handshake_failures_total %llu\n"
			 "# HELP postino_login_cache_hits_total Correct logins accepted without "
			 "running the password hash (login_cache_ttl).\n"
			 "# TYPE postino_login_cache_hits_total counter\n"
			 "postino_login_cache_hits_total %llu\n"
			 "# HELP postino_queue_messages Messages in the outbound queue.\n"
			 "# TYPE postino_queue_messages gauge\n"
			 "postino_queue_messages %llu\n"
			 "# HELP postino_queue_oldest_seconds Age of the oldest queued message.\n"
			 "# TYPE postino_queue_oldest_seconds gauge\n"
			 "postino_queue_oldest_seconds %llu\n",
			 (unsigned long long)SUM(sl->counter[MC_RECEIVED]),
			 (unsigned long long)SUM(sl->counter[MC_DELIVERED_LOCAL]),
			 (unsigned long long)SUM(sl->counter[MC_DELIVERED_REMOTE]),
			 (unsigned long long)SUM(sl->counter[MC_BOUNCED]),
			 (unsigned long long)SUM(sl->counter[MC_DEFERRED]),
			 (unsigned long long)SUM(sl->counter[MC_TLS_FAILED]),
			 (unsigned long long)SUM(sl->counter[MC_LOGIN_CACHED]),
			 (unsigned long long)queue_len, (unsigned long long)queue_oldest_s);
	r |= render_hist(b, "postino_delivery_seconds",
			 "Time from the end of a message to its 250 (fsync, delivery).",
			 MH_DELIVERY, 1);
	r |= render_hist(b, "postino_command_seconds",
			 "Time from a command line to its first reply line.", MH_COMMAND, MP_COUNT);
	r |= buf_appendstr(b, "# HELP postino_worker_resident_bytes Resident memory of each "
			   "worker (sampled at most once a second while it works).\n"
			   "# TYPE postino_worker_resident_bytes gauge\n");
	for (size_t i = 0; i < METRICS_WORKERS; i++) {
		int pid = __atomic_load_n(&seg[i].pid, __ATOMIC_RELAXED);
		if (pid != 0)
			r |= buf_appendf(b, "postino_worker_resident_bytes{worker=\"%zu\","
					 "pid=\"%d\"} %llu\n", i, pid, (unsigned long long)
					 __atomic_load_n(&seg[i].rss_bytes, __ATOMIC_RELAXED));
	}
	r |= buf_appendstr(b, "# HELP postino_worker_sessions Open sessions of each worker (new "
			   "connections go to the least busy)\n"
			   "# TYPE postino_worker_sessions gauge\n");
	for (size_t i = 0; i < METRICS_WORKERS; i++) {
		int pid = __atomic_load_n(&seg[i].pid, __ATOMIC_RELAXED);
		uint32_t n = __atomic_load_n(&seg[i].sessions, __ATOMIC_RELAXED);
		if (pid != 0 && n != METRICS_NOT_ACCEPTING)
			r |= buf_appendf(b, "postino_worker_sessions{worker=\"%zu\",pid=\"%d\"} %u\n",
					 i, pid, n);
	}
	return r < 0 ? -1 : 0;
}
