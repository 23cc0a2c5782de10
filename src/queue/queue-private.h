/* queue-private.h - shared between the parts of the queue process. */
#ifndef POSTINO_QUEUE_PRIVATE_H
#define POSTINO_QUEUE_PRIVATE_H

#include <pthread.h>

#include "config.h"
#include "queue.h"
#include "smtpc.h"

struct acctdb;
struct tls_ctx;
struct tls_tlsa;

/* ---- DNS (queue-dns.c) ---- */
struct qdns_target {
	char host[256];
	char ip[64];
	int secure;              /* the MX and address records were DNSSEC-validated */
};
/* servers as the dns_servers setting; ta_file: trust anchors for DNSSEC validation ("": none,
 * then nothing is ever secure and DANE never applies). */
int qdns_init(const char *servers, const char *ta_file, char *err, size_t errlen);
/* DNSSEC validation is on (a trust anchor was loaded). */
int qdns_validating(void);
/* The TLSA records of _PORT._tcp.host: >=0 count (only when the answer is DNSSEC-secure; an
 * insecure answer counts as none), -1 temporary failure or a bogus (forged) answer. */
int qdns_tlsa(const char *host, unsigned port, struct tls_tlsa *out, size_t max);
/* Addresses to try for a domain, best first. >0 count; 0 permanent failure (no such domain, no
 * address); -1 temporary failure; -2 null MX. err says what happened. no_mx: the name is a
 * host (relayhost), look up A/AAAA only. */
int qdns_route(const char *domain, int no_mx, struct qdns_target *out, size_t max, char *err,
	       size_t errlen);

/* The one TXT record of name starting with prefix (strings joined): 1 found (copied to out), 0
 * none or several, -1 temporary DNS failure. */
int qdns_txt(const char *name, const char *prefix, char *out, size_t outlen);

/* ---- the scheduler's objects (queue.c) ---- */
enum qm_state { QM_IDLE, QM_BUSY, QM_DEAD };

struct qmsg {
	char id[64];
	time_t next;               /* not before this */
	enum qm_state state;
	unsigned outstanding;      /* jobs not finished */
	int force;                 /* flushed: ignore the envelope's next attempt time */
	struct qenv env;           /* loaded while BUSY */
	struct qmsg *hnext;
};

struct qjob {
	struct qmsg *m;
	unsigned *idx;             /* recipient indexes into m->env.rcpts */
	unsigned n;
	struct qjob *next;
};

struct qdest {
	char name[256];            /* domain, or the relay host */
	struct qjob *head, *tail;
	unsigned njobs, active;
	struct qdest *next;
};

struct queue {
	const struct config *cfg;
	char dir[CONFIG_PATH_MAX + 16];
	pthread_mutex_t lock;      /* the table, the destinations, the counters */
	pthread_cond_t cond;       /* jobs appeared / stopping */
	struct qmsg **tab;
	size_t tabsize, nmsgs;
	struct qdest *dests;
	unsigned inflight;         /* BUSY messages */
	time_t earliest;           /* the scheduler walks the table again at this time */
	unsigned long added;       /* entries ever added to the table */
	unsigned threads_alive;
	int stopping;
	struct tls_ctx *tls;
	pthread_mutex_t db_lock;   /* acctdb and local DSN delivery */
	struct acctdb *db;
	char relay_host[256];      /* parsed relayhost */
	unsigned relay_port;
};

/* Delivery threads (queue-deliver.c). */
void *queue_deliver_thread(void *arg);
/* Apply the results of a finished message (queue.c); called without the lock by the thread
 * that finished its last job. */
void queue_finalize(struct queue *q, struct qmsg *m);

/* DSNs (queue-dsn.c). kind: 'F' failed, 'D' delayed, 'R' relayed/delivered. Sends one report
 * about the listed recipients to env->from (never to the null sender): into the sender's INBOX
 * when the sender is one of our accounts, else through the queue. 0 ok or nothing to do, -1
 * could not be stored (logged). */
int queue_dsn_send(struct queue *q, const struct qenv *env, char kind, const unsigned *idx,
		   unsigned n);

/* A new random queue id (16 hex digits). */

#endif
