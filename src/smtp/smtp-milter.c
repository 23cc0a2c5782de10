/* smtp-milter.c - the listener's milters judge a received message before it is stored. */
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
	unlink(tx->tmppath);
	tx->fd = fd;
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
	const struct milter_settings set = {
		.connect_timeout = cfg->milter_connect_timeout,
		.command_timeout = cfg->milter_command_timeout,
		.content_timeout = cfg->milter_content_timeout,
		.default_action = strcmp(cfg->milter_default_action, "accept") == 0 ?
			MILTER_DEFAULT_ACCEPT : strcmp(cfg->milter_default_action, "reject") == 0 ?
			MILTER_DEFAULT_REJECT : MILTER_DEFAULT_TEMPFAIL,
	};
	const struct milter_env env = {
		.client_ip = s->base.peer_ip,
		.client_port = peer_port(s->conn.fd),
		.helo = s->helo,
		.from = tx->null_sender ? "" : tx->from,
		.rcpts = tx->rcpts[0].addr,
		.nrcpts = tx->nrcpts,
		.rcpt_stride = sizeof(tx->rcpts[0]),
		.auth_user = s->auth_user,
		.queue_id = tx->id,
		.hostname = cfg->hostname,
		.daemon = s->base.lc->name,
		.fd = tx->fd,
		.off = tx->header_len,
		.total = tx->header_len + tx->size,
	};
	struct milter_result res;
	milter_run(s->base.lc->milters, &set, &env, &res);
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
