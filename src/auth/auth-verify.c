/* auth-verify.c - login checks on the thread pool. */
#include "auth-verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acctdb.h"
#include "authfail.h"
#include "ev.h"
#include "config.h"
#include "diag.h"
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
	int v = password_verify(u.hash, j->password);
	j->r.result = v == 1 ? 1 : 0;
	j->r.reason = v == 1 ? "ok" : v == 0 ? "wrong password" : "unusable password hash";
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
