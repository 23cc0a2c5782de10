/* milter.h - a client of the Sendmail milter protocol (version 6, as Postfix speaks it), so that
 * rspamd's proxy worker or any other milter can judge a session and its messages (issue 12).
 *
 * A session (milter_session_new) keeps one connection per milter for the whole SMTP session,
 * as Postfix does, and each SMTP stage is one call of milter_stage on a pool thread: CONNECT
 * (connect, OPTNEG, CONNECT with its macros), HELO, MAIL, each RCPT, and the message (DATA,
 * the header fields, EOH, the body in chunks of at most 64 KB, EOB). Each socket operation
 * waits with poll() up to its deadline (milter_connect_timeout, milter_command_timeout,
 * milter_content_timeout) and each packet read is bounded, so a milter can slow down only the
 * session it judges, never the event loop nor another session.
 *
 * Replies honoured: continue, accept (this milter is done with the connection when said at
 * CONNECT or HELO, else with the transaction), reject, tempfail, discard (MAIL, RCPT, message;
 * ignored before MAIL as there is no message yet), replycode (validated: 4xx/5xx, printable, cut
 * to a line), skip (rest of the body), and at the end of the message add-header, insert-header,
 * change-header and quarantine. A refusal at CONNECT or HELO stands for the session: every
 * later MAIL gets it. A milter that cannot be reached, times out or breaks the protocol is
 * closed and gets milter_default_action, at that stage and for the rest of the session.
 */
#ifndef POSTINO_MILTER_H
#define POSTINO_MILTER_H

#include <stddef.h>
#include <stdint.h>

#define MILTER_LIST_MAX 8            /* milters per listener */
#define MILTER_SPEC_MAX 300          /* "inet:host:port" or "unix:/path" */
#define MILTER_REPLY_MAX 512         /* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets */

enum milter_verdict { MILTER_ACCEPT, MILTER_REJECT, MILTER_TEMPFAIL, MILTER_DISCARD };

/* milter_default_action: what a milter that is down, slow or broken means for the message. */
enum milter_default { MILTER_DEFAULT_TEMPFAIL, MILTER_DEFAULT_ACCEPT, MILTER_DEFAULT_REJECT };

struct milter_settings {
	unsigned connect_timeout;    /* seconds */
	unsigned command_timeout;    /* seconds, per reply to a command */
	unsigned content_timeout;    /* seconds, per body chunk and for the end of message */
	enum milter_default default_action;
};

/* What the milters are told about the message. */
struct milter_env {
	const char *client_ip;       /* "" when unknown */
	unsigned client_port;
	const char *helo;
	const char *from;            /* "" = null sender */
	const char *rcpts;           /* nrcpts addresses, rcpt_stride octets apart */
	size_t nrcpts, rcpt_stride;
	const char *auth_user;       /* "" = not authenticated */
	const char *queue_id;
	const char *hostname;        /* our host name (macro j) */
	const char *daemon;          /* listener name (macro {daemon_name}) */
	int fd;                      /* the message: octets [off, total) of fd */
	uint64_t off, total;
};

/* A header change asked for at the end of the message. */
struct milter_edit {
	char op;                     /* 'h' add at the end, 'i' insert at index, 'm' change */
	uint32_t index;              /* 'i': position (0 = top); 'm': 1-based occurrence */
	char *name;
	char *value;                 /* CRLF-folded value; 'm' with "" deletes the field */
};

struct milter_result {
	enum milter_verdict verdict;
	char reply[MILTER_REPLY_MAX];        /* the SMTP reply for reject/tempfail (no CRLF) */
	int quarantine;
	char quarantine_reason[256];
	struct milter_edit *edits;
	size_t nedits;
	char why[300];                       /* for the log: which milter decided what */
};

/* The SMTP stages, in their order. */
enum milter_stage {
	MILTER_STAGE_CONNECT,
	MILTER_STAGE_HELO,
	MILTER_STAGE_MAIL,
	MILTER_STAGE_RCPT,
	MILTER_STAGE_MESSAGE,
};

struct milter_session;

/* Loop thread, no I/O: the milters of `list` for one SMTP session (connected by the CONNECT
 * stage). NULL when the list is empty or memory is short. */
struct milter_session *milter_session_new(const char *list, const struct milter_settings *set);
/* Loop thread: QUIT (only if the socket takes it at once) and close every milter; *msp = NULL.
 * Never while a milter_stage call runs. */
void milter_session_free(struct milter_session **msp);
/* Loop thread: the reply that refuses every transaction of this session (a refusal at
 * CONNECT or HELO, or a milter down with milter_default_action reject or tempfail), or NULL.
 * Valid until the next milter_stage or milter_session_free. */
const char *milter_session_refusal(const struct milter_session *ms,
				   enum milter_verdict *verdict_r);
/* Pool thread: one stage with every milter that still takes part, in order; the first
 * reject, tempfail or discard ends it. `rcpt`: the recipient (MILTER_STAGE_RCPT). env->fd, off
 * and total: the message (MILTER_STAGE_MESSAGE only). Fills *res (free it with
 * milter_result_free); edits and quarantine come only from MILTER_STAGE_MESSAGE. Never fails:
 * trouble becomes the default action. One call at a time per session. */
void milter_stage(struct milter_session *ms, enum milter_stage st, const struct milter_env *env,
		  const char *rcpt, struct milter_result *res);

/* Split a milters setting ("inet:127.0.0.1:11332, unix:/run/x.sock") into specs. Returns the
 * count (0..MILTER_LIST_MAX), or -1 with *err_r saying what is wrong. */
int milter_parse_list(const char *list, char specs[][MILTER_SPEC_MAX], size_t max,
		      const char **err_r);

/* Pool thread: every stage, for one message with all its recipients, on a session of its
 * own (unit tests). Fills *res (free it with milter_result_free). */
void milter_run(const char *list, const struct milter_settings *set, const struct milter_env *env,
		struct milter_result *res);
void milter_result_free(struct milter_result *res);

/* Validate a milter's SMTP reply (SMFIR_REPLYCODE) and build ours from it into out: the code
 * and enhanced code kept (class checked), text printable ASCII only, lines joined. 0 ok (*class_r
 * 4 or 5), -1 not a usable reply. */
int milter_reply_check(const char *in, size_t inlen, char *out, size_t outlen, int *class_r);

/* Copy octets [off, total) of in_fd to out_fd with the header edits applied. *len_r: octets
 * written; *crc_r: CRC-32 (zlib) continued over them. 0 ok, -1 I/O error or header section too
 * large (errno set). */
int milter_apply_edits(int in_fd, uint64_t off, uint64_t total, const struct milter_edit *edits,
		       size_t nedits, int out_fd, uint64_t *len_r, unsigned long *crc_r);

#endif
