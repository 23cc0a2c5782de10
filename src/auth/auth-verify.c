/* auth-verify.c - login checks on the thread pool. */
#include "auth-verify.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "acctdb.h"
#include "authfail.h"
#include "ev.h"
#include "config.h"
#include "diag.h"
#include "metrics.h"
#include "password.h"
#include "pool.h"

struct auth_job {
	char data_dir[CONFIG_PATH_MAX];
	char ip[64];
	struct ev_loop *loop;
	struct authfail *af;
	struct pool *pool;
	unsigned delay_max_ms;
	unsigned delay_min_ms;
	unsigned cache_ttl;
	int record;               /* write a diag event */
	unsigned diag_keep;
	struct diag_event ev;
	struct ev_timer timer;
	char *password;
	auth_verify_cb *cb;
	void *ctx;
	struct auth_result r;
};

static __thread struct acctdb *pool_db;   /* one handle per pool thread */

/* See auth-verify.h. */
void auth_verify_thread_release(void)
{
	acctdb_close(&pool_db);
}

/* ---- the login cache (see the header) ---- */

#define LCACHE_SLOTS 8192         /* 8192 x 48 bytes, shared by the workers */

struct lcache_slot {
	unsigned char tag[crypto_generichash_BYTES];   /* keyed hash of address, hash, password */
	uint64_t expires;                              /* CLOCK_MONOTONIC seconds; 0 empty */
	uint32_t addr;                                 /* keyed hash of the address alone */
};

struct lcache {
	pthread_mutex_t lock;     /* process-shared and robust in the shared table */
	unsigned char key[crypto_generichash_KEYBYTES];
	struct lcache_slot slot[LCACHE_SLOTS];
};

/* The workers' table, mapped by the master before it forks them (auth_login_cache_share), or
 * NULL: then each process has its own, with a key it draws at its first login. */
static struct lcache *lcache_shared;
static struct lcache lcache_own = { .lock = PTHREAD_MUTEX_INITIALIZER };
static pid_t lcache_pid;          /* the process that drew lcache_own's key */

/* See auth-verify.h. */
int auth_login_cache_share(void)
{
	struct lcache *c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				-1, 0);
	if (c == MAP_FAILED)
		return -1;
	pthread_mutexattr_t at;
	int r = pthread_mutexattr_init(&at);
	if (r == 0) {
		pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
		r = pthread_mutex_init(&c->lock, &at);
		pthread_mutexattr_destroy(&at);
	}
	if (r != 0 || sodium_init() < 0) {
		munmap(c, sizeof(*c));
		errno = r ? r : EIO;
		return -1;
	}
	randombytes_buf(c->key, sizeof(c->key));
	lcache_shared = c;
	return 0;
}

/* The table, locked. A worker that died holding the shared lock may have left its slot half
 * written: such a slot can only miss (its tag is checked whole). */
static struct lcache *lcache_lock(void)
{
	struct lcache *c = lcache_shared ? lcache_shared : &lcache_own;
	if (pthread_mutex_lock(&c->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&c->lock);
	if (c == &lcache_own && lcache_pid != getpid()) {
		/* first use in this process (zero pages until then); a fork draws its own key */
		randombytes_buf(c->key, sizeof(c->key));
		if (lcache_pid != 0)
			memset(c->slot, 0, sizeof(c->slot));
		lcache_pid = getpid();
	}
	return c;
}

static uint64_t lcache_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

/* Under the lock: the slot of user, and the tag of (user, hash, password). */
static struct lcache_slot *lcache_tag(struct lcache *c, const char *user, const char *hash,
				      const char *password,
				      unsigned char tag[crypto_generichash_BYTES], uint32_t *addr)
{
	unsigned char a[8];
	crypto_generichash(a, sizeof(a), (const unsigned char *)user, strlen(user), c->key,
			   sizeof(c->key));
	crypto_generichash_state st;
	crypto_generichash_init(&st, c->key, sizeof(c->key), crypto_generichash_BYTES);
	crypto_generichash_update(&st, (const unsigned char *)user, strlen(user) + 1);
	crypto_generichash_update(&st, (const unsigned char *)hash, strlen(hash) + 1);
	crypto_generichash_update(&st, (const unsigned char *)password, strlen(password));
	crypto_generichash_final(&st, tag, crypto_generichash_BYTES);
	memcpy(addr, a, sizeof(*addr));
	return &c->slot[(a[4] | (unsigned)a[5] << 8) % LCACHE_SLOTS];
}

/* Was this password accepted for this stored hash within the TTL? */
static int lcache_hit(const char *user, const char *hash, const char *password)
{
	unsigned char tag[crypto_generichash_BYTES];
	uint32_t addr;
	struct lcache *c = lcache_lock();
	struct lcache_slot *e = lcache_tag(c, user, hash, password, tag, &addr);
	int hit = e->expires > lcache_now() && e->addr == addr &&
		  sodium_memcmp(e->tag, tag, sizeof(tag)) == 0;
	pthread_mutex_unlock(&c->lock);
	sodium_memzero(tag, sizeof(tag));
	return hit;
}

/* Remember a correct login (a wrong one forgets the address's entry). */
static void lcache_put(const char *user, const char *hash, const char *password, unsigned ttl,
		       int ok)
{
	unsigned char tag[crypto_generichash_BYTES];
	uint32_t addr;
	struct lcache *c = lcache_lock();
	struct lcache_slot *e = lcache_tag(c, user, hash, password, tag, &addr);
	if (ok) {
		memcpy(e->tag, tag, sizeof(tag));
		e->addr = addr;
		e->expires = lcache_now() + ttl;
	} else if (e->addr == addr) {
		memset(e, 0, sizeof(*e));
	}
	pthread_mutex_unlock(&c->lock);
	sodium_memzero(tag, sizeof(tag));
}

/* A hash of a random password, verified when the user does not exist. */
#define AUTH_DUMMY_HASH "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"

/* Pool thread: look the account up and check the password. */
static void auth_work(void *arg)
{
	struct auth_job *j = arg;
	const char *err;
	struct acct_user u;
	if (pool_db == NULL) {
		char path[CONFIG_PATH_MAX + 16];
		snprintf(path, sizeof(path), "%s/system.db", j->data_dir);
		if (acctdb_open(path, ACCTDB_RO, &pool_db, &err) < 0) {
			pool_db = NULL;
			j->r.result = -1;
			j->r.reason = "account database unavailable";
			return;
		}
	}
	int r = acctdb_user_get(pool_db, j->r.user, &u, &err);
	if (r < 0) {
		j->r.result = -1;
		j->r.reason = "account database error";
		return;
	}
	if (r == 0) {
		password_verify(AUTH_DUMMY_HASH, j->password);
		j->r.result = 0;
		j->r.reason = "unknown user";
		return;
	}
	if (j->cache_ttl && lcache_hit(j->r.user, u.hash, j->password)) {
		metrics_count(MC_LOGIN_CACHED);
		j->r.result = 1;
		j->r.reason = "ok";
		explicit_bzero(&u, sizeof(u));
		return;
	}
	int v = password_verify(u.hash, j->password);
	j->r.result = v == 1 ? 1 : 0;
	j->r.reason = v == 1 ? "ok" : v == 0 ? "wrong password" : "unusable password hash";
	if (j->cache_ttl)
		lcache_put(j->r.user, u.hash, j->password, j->cache_ttl, v == 1);
	explicit_bzero(&u, sizeof(u));
}

/* Loop thread, after the brute-force delay: hand the failure to the session. */
static void auth_delayed(struct ev_timer *t)
{
	struct auth_job *j = t->arg;
	j->cb(j->ctx, &j->r);
	free(j);
}

/* Loop thread: hand the outcome to the session (failures after the brake's delay). */
static void auth_done(void *arg)
{
	struct auth_job *j = arg;
	explicit_bzero(j->password, strlen(j->password));
	free(j->password);
	j->password = NULL;
	unsigned delay = 0;
	if (j->r.result == 1)
		authfail_succeeded(j->af, j->ip, j->r.user);
	else if (j->r.result == 0) {
		delay = authfail_failed(j->af, j->ip, j->r.user, j->delay_max_ms);
		if (delay < j->delay_min_ms)
			delay = j->delay_min_ms;
	}
	if (j->record) {
		struct diag_event *e = &j->ev;
		snprintf(e->user, sizeof(e->user), "%s", j->r.user);
		snprintf(e->ip, sizeof(e->ip), "%s", j->ip);
		e->delay_ms = delay;
		if (j->r.result == 1)
			e->kind = DIAG_OK;
		else if (j->r.result < 0)
			e->kind = DIAG_TEMPFAIL;
		else if (strcmp(j->r.reason, "unknown user") == 0)
			e->kind = DIAG_UNKNOWN_USER;
		else
			e->kind = DIAG_WRONG_PASSWORD;
		if (j->r.result != 1 && strcmp(j->r.reason, "wrong password") != 0 &&
		    strcmp(j->r.reason, "unknown user") != 0)
			snprintf(e->detail, sizeof(e->detail), "%s", j->r.reason);
		diag_submit(j->pool, j->data_dir, j->diag_keep, e);
	}
	if (delay > 0 && j->loop) {
		memset(&j->timer, 0, sizeof(j->timer));
		ev_timer_set(j->loop, &j->timer, delay, auth_delayed, j);
		return;
	}
	j->cb(j->ctx, &j->r);
	free(j);
}

/* Queue a check. */
int auth_verify_submit(const struct auth_env *env, const char *user, const char *password,
		       auth_verify_cb *cb, void *ctx)
{
	struct auth_job *j = calloc(1, sizeof(*j));
	if (j == NULL || (j->password = strdup(password)) == NULL) {
		free(j);
		return -1;
	}
	snprintf(j->data_dir, sizeof(j->data_dir), "%s", env->data_dir);
	snprintf(j->ip, sizeof(j->ip), "%s", env->ip ? env->ip : "");
	j->loop = env->loop;
	j->af = env->af;
	j->delay_max_ms = env->delay_max_ms;
	j->delay_min_ms = env->delay_min_ms;
	j->cache_ttl = env->cache_ttl;
	j->pool = env->pool;
	if (env->proto) {
		j->record = 1;
		j->diag_keep = env->diag_keep;
		snprintf(j->ev.proto, sizeof(j->ev.proto), "%s", env->proto);
		snprintf(j->ev.client, sizeof(j->ev.client), "%s", env->client ? env->client : "");
		j->ev.port = env->port;
		j->ev.tls = env->tls;
	}
	size_t i = 0;
	for (; user[i] && i < sizeof(j->r.user) - 1; i++)
		j->r.user[i] = (user[i] >= 'A' && user[i] <= 'Z') ? (char)(user[i] - 'A' + 'a') :
								   user[i];
	j->r.user[i] = '\0';
	j->cb = cb;
	j->ctx = ctx;
	if (pool_submit(env->pool, auth_work, auth_done, j) < 0) {
		explicit_bzero(j->password, strlen(j->password));
		free(j->password);
		free(j);
		return -1;
	}
	return 0;
}
