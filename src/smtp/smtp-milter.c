/* smtp-milter.c - the listener's milters judge the session at each stage (CONNECT, HELO, MAIL,
 * RCPT) and the received message before it is stored. Every conversation runs on the pool. */
#include "smtp-milter.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "log.h"
#include "milter.h"
#include "pool.h"

/* The client's port, from the socket (the session keeps only the address). */
static unsigned peer_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

/* The milter settings of the configuration. */
void smtp_milter_settings(const struct config *cfg, struct milter_settings *set)
{
	set->connect_timeout = cfg->milter_connect_timeout;
	set->command_timeout = cfg->milter_command_timeout;
	set->content_timeout = cfg->milter_content_timeout;
	set->default_action = strcmp(cfg->milter_default_action, "accept") == 0 ?
		MILTER_DEFAULT_ACCEPT : strcmp(cfg->milter_default_action, "reject") == 0 ?
		MILTER_DEFAULT_REJECT : MILTER_DEFAULT_TEMPFAIL;
}

/* What the milters are told about the session and its transaction (tx may be NULL). */
static void milter_env_of(const struct smtp_session *s, const struct smtp_tx *tx,
			  const char *helo, struct milter_env *env)
{
	*env = (struct milter_env){
		.client_ip = s->base.peer_ip,
		.client_port = peer_port(s->conn.fd),
		.helo = helo,
		.from = tx == NULL || tx->null_sender ? "" : tx->from,
		.rcpts = tx != NULL && tx->rcpts != NULL ? tx->rcpts[0].addr : "",
		.nrcpts = tx != NULL ? tx->nrcpts : 0,
		.rcpt_stride = sizeof(tx->rcpts[0]),
		.auth_user = s->auth_user,
		.queue_id = tx != NULL ? tx->id : "",
		.hostname = s->base.w->cfg->hostname,
		.daemon = s->base.lc->name,
		.fd = -1,
	};
}

#define SMTP_MILTER_RUNNING_MAX 4
static struct pool_lane milter_lane = { .max = SMTP_MILTER_RUNNING_MAX };

/* Queue a job in the milter lane. */
void smtp_milter_submit(struct worker *w, struct pool_job *j)
{
	pool_lane_submit(&milter_lane, w->pool, j);
}

/* ---- the stages before the message ---- */

struct stage_job {
	struct pool_job mj;
	struct smtp_session *s;
	enum milter_stage st;
	enum smtp_state prev;         /* the session's state before it waited */
	char arg[SMTP_ADDR_MAX];
	struct milter_result res;
	smtp_milter_cont *cont;
};

/* Pool thread: the stage. The session is parked, so its fields hold still. */
static void stage_work(void *arg)
{
	struct stage_job *j = arg;
	struct smtp_session *s = j->s;
	struct milter_env env;
	milter_env_of(s, s->tx, j->st == MILTER_STAGE_HELO ? j->arg : s->helo, &env);
	milter_stage(s->milter, j->st, &env, j->arg, &j->res);
}

/* Loop thread: the verdict goes to the command that waited; the session reads again. */
static void stage_done(void *arg)
{
	static const char *const names[] = { "connect", "helo", "mail", "rcpt", "message" };
	struct stage_job *j = arg;
	struct smtp_session *s = j->s;
	s->base.job_running = 0;
	if (j->mj.failed) {
		j->res.verdict = MILTER_TEMPFAIL;
		snprintf(j->res.reply, sizeof(j->res.reply), "451 4.3.0 Out of memory; please try "
			 "again later");
	}
	if (s->base.closing) {
		milter_result_free(&j->res);
		free(j);
		session_reap_later(&s->base);
		return;
	}
	smtp_set_state(s, j->prev);
	if (j->res.verdict != MILTER_ACCEPT)
		log_info("sess=%016llx proto=smtp event=milter-%s stage=%s arg=\"%.100s\" "
			 "by=\"%s\" reply=\"%s\"", (unsigned long long)s->base.id,
			 j->res.verdict == MILTER_REJECT ? "reject" :
			 j->res.verdict == MILTER_TEMPFAIL ? "tempfail" : "discard", names[j->st],
			 j->arg, j->res.why, j->res.reply);
	j->cont(s, &j->res);
	milter_result_free(&j->res);
	free(j);
	if (s->base.closing)
		return;
	if (s->st != SMTP_ST_BUSY)
		conn_pause_read(&s->conn, 0);   /* runs smtp_process over what was pipelined */
	conn_flush(&s->conn);
	if (s->st != SMTP_ST_BUSY && s->base.w->stopping)
		s->base.ops->shutdown(&s->base);
}

/* Run a stage on the pool; the session waits. */
void smtp_milter_stage(struct smtp_session *s, enum milter_stage st, const char *arg,
		       smtp_milter_cont *cont)
{
	struct stage_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		struct milter_result res = { .verdict = MILTER_TEMPFAIL };
		snprintf(res.reply, sizeof(res.reply), "451 4.3.0 Out of memory; please try again "
			 "later");
		cont(s, &res);
		return;
	}
	j->s = s;
	j->st = st;
	j->prev = s->st;
	j->cont = cont;
	snprintf(j->arg, sizeof(j->arg), "%s", arg ? arg : "");
	j->mj.work = stage_work;
	j->mj.done = stage_done;
	j->mj.arg = j;
	s->base.job_running = 1;
	smtp_set_state(s, SMTP_ST_BUSY);
	conn_pause_read(&s->conn, 1);
	smtp_milter_submit(s->base.w, &j->mj);
}

/* Replace the temp file by a copy carrying the header changes. 0 ok, -1 (logged). */
static int rewrite(struct smtp_session *s, struct smtp_tx *tx, const struct config *cfg,
		   const struct milter_result *res)
{
	char path[sizeof(tx->tmppath)];
	snprintf(path, sizeof(path), "%s/tmp/in.%d.XXXXXX", cfg->data_dir, (int)getpid());
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		goto fail;
	/* our trace fields stay on top, unchanged; the edits apply to the message below them */
	char trace[8192];
	unsigned long crc = crc32_z(0, NULL, 0);
	uint64_t len = 0;
	if (tx->header_len > sizeof(trace) ||
	    pread(tx->fd, trace, tx->header_len, 0) != (ssize_t)tx->header_len)
		goto fail;
	crc = crc32_z(crc, (const unsigned char *)trace, tx->header_len);
	if (write(fd, trace, tx->header_len) != (ssize_t)tx->header_len ||
	    milter_apply_edits(tx->fd, tx->header_len, tx->header_len + tx->size, res->edits,
			       res->nedits, fd, &len, &crc) < 0)
		goto fail;
	close(tx->fd);
	if (tx->tmppath[0])
		unlink(tx->tmppath);
	tx->fd = fd;
	tx->fseq = smtp_file_seq();
	memcpy(tx->tmppath, path, sizeof(path));
	tx->size = len;
	tx->crc = crc;
	return 0;
fail:
	log_warn("sess=%016llx proto=smtp event=milter-rewrite-failed id=%s error=\"%s\"",
		 (unsigned long long)s->base.id, tx->id, strerror(errno));
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	return -1;
}

/* Pool thread: run the milters over the message. */
enum milter_verdict smtp_milter_check(struct smtp_session *s, struct smtp_tx *tx,
				      const struct config *cfg, char *reply, size_t replylen,
				      int *quarantine_r)
{
	struct milter_env env;
	milter_env_of(s, tx, s->helo, &env);
	env.fd = tx->fd;
	env.off = tx->header_len;
	env.total = tx->header_len + tx->size;
	struct milter_result res;
	milter_stage(s->milter, MILTER_STAGE_MESSAGE, &env, NULL, &res);
	*quarantine_r = 0;
	if (res.verdict == MILTER_ACCEPT && res.nedits > 0 && rewrite(s, tx, cfg, &res) < 0) {
		res.verdict = MILTER_TEMPFAIL;
		snprintf(res.reply, sizeof(res.reply), "451 4.3.0 Temporary storage failure; the "
			 "message was not accepted, please try again later");
	}
	if (res.verdict == MILTER_ACCEPT && res.quarantine) {
		*quarantine_r = 1;
		log_info("sess=%016llx proto=smtp event=milter-quarantine id=%s reason=\"%s\"",
			 (unsigned long long)s->base.id, tx->id, res.quarantine_reason);
	}
	if (res.verdict != MILTER_ACCEPT)
		log_info("sess=%016llx proto=smtp event=milter-%s id=%s by=\"%s\" reply=\"%s\"",
			 (unsigned long long)s->base.id,
			 res.verdict == MILTER_REJECT ? "reject" :
			 res.verdict == MILTER_TEMPFAIL ? "tempfail" : "discard", tx->id, res.why,
			 res.reply);
	else if (res.nedits > 0)
		log_info("sess=%016llx proto=smtp event=milter-headers id=%s changes=%zu",
			 (unsigned long long)s->base.id, tx->id, res.nedits);
	snprintf(reply, replylen, "%s", res.reply);
	enum milter_verdict v = res.verdict;
	milter_result_free(&res);
	return v;
}
