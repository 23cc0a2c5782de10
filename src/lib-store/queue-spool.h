/* queue-spool.h - the outbound spool on disk: envelope files, holds, new entries.
 *
 * <data>/queue/<id>.msg is the message (as stored by smtp-data.c, Return-Path first) and
 * <id>.env its envelope, a text file whose appearance (rename) commits the entry. The SMTP
 * workers write new entries; afterwards only the queue process rewrites an envelope (atomic
 * rename, fsync'd) to record per-recipient results. Other processes (the CLI, the sending-limit
 * code) never edit envelopes: they set flag files that the queue process honours:
 *   <data>/queue/hold/<id>              message held
 *   <data>/queue/hold-sender/<sender>   everything from this sender held (escaped name)
 *   <data>/queue/queue.pid              the queue process, told with SIGUSR1 to rescan holds
 *                                       and retry everything now (flush)
 * A damaged entry is moved to <data>/queue/quarantine/.
 */
#ifndef POSTINO_QUEUE_SPOOL_H
#define POSTINO_QUEUE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define QUEUE_ADDR_MAX 512        /* an envelope address with its angle brackets dropped */
#define QUEUE_MAX_RCPTS 1000      /* recipients per envelope (max_recipients is far lower) */
#define QUEUE_ERR_MAX 512         /* the last error text kept per recipient */
#define QUEUE_DKIM_MAX 16384      /* DKIM-Signature fields sent before the message */

enum qrcpt_state { QR_PENDING, QR_SENT, QR_FAILED };

enum {
	QN_NEVER = 1, QN_SUCCESS = 2, QN_FAILURE = 4, QN_DELAY = 8,
	QN_DEFAULT = QN_FAILURE | QN_DELAY,   /* RFC 3461 4.1: no NOTIFY given */
};

struct qrcpt {
	char addr[QUEUE_ADDR_MAX];
	char orcpt[QUEUE_ADDR_MAX];        /* "" none; as given (addr-type;xtext) */
	unsigned notify;                   /* QN_* bits */
	enum qrcpt_state state;
	int delay_notified;
	char remote[256];                  /* host that gave the last answer */
	char err[QUEUE_ERR_MAX];           /* last reply or local reason ("" none) */
	/* filled by a delivery attempt, applied by the scheduler */
	int result;                        /* 0 untried, 2 sent, 4 deferred, 5 failed */
	int relayed_nodsn;                 /* sent to a server without DSN and NOTIFY=SUCCESS */
};

struct qenv {
	char id[64];
	time_t arrived;
	char from[QUEUE_ADDR_MAX];         /* "" = null sender */
	int body_8bit;
	int smtputf8;
	char ret[8];                       /* "FULL", "HDRS" or "" */
	char envid[128];                   /* "" none */
	char auth[QUEUE_ADDR_MAX];         /* submitting user or "" */
	uint64_t size;                     /* octets of the .msg file */
	int have_crc;
	uint32_t crc;
	unsigned attempts;
	time_t next;                       /* next attempt (0 = now) */
	char *dkim;                        /* NULL, or the DKIM-Signature fields (CRLF-terminated)
					    * made when the message was accepted: sent before the
					    * message on every attempt (malloc'd; queue_env_free) */
	struct qrcpt *rcpts;
	unsigned nrcpts;
};

/* Parse envelope text. 0 ok; -1 damaged (why in err). Allocates env->rcpts (and env->dkim). */
int queue_env_parse(const char *text, size_t len, struct qenv *env, char *err, size_t errlen);
/* Read <dir>/<id>.env. 1 ok, 0 missing, -1 damaged/unreadable (why in err). */
int queue_env_read(const char *dir, const char *id, struct qenv *env, char *err, size_t errlen);
/* Write env to <dir>/<id>.env atomically (tmp file, fsync, rename, fsync dir). 0 / -1. */
int queue_env_write(const char *dir, const struct qenv *env);
void queue_env_free(struct qenv *env);
/* Write the envelope line carrying DKIM-Signature fields ("dkim BASE64\n"). 0 / -1 (too long). */
int queue_env_put_dkim(FILE *f, const char *fields);
/* Check the body file against the envelope's size and CRC-32. 1 intact, 0 damaged (why in
 * err), -1 cannot read. */
int queue_body_check(int fd, const struct qenv *env, char *err, size_t errlen);
/* Move <id>.env and <id>.msg into <dir>/quarantine/. 0 / -1. */
int queue_quarantine(const char *dir, const char *id);
/* Parse a NOTIFY value ("-", "NEVER", "SUCCESS,FAILURE,DELAY") into QN_* bits. */
unsigned queue_notify_parse(const char *v);
/* Copy a string, truncating to fit outlen (always NUL-terminated). */
void queue_strlcpy(char *out, size_t outlen, const char *in);
/* Is id a plausible queue id (hex/alnum, 1..63 chars)? */
int queue_id_valid(const char *id);

/* A random 16-hex-digit id for a spool entry (SMTP names its files with it). */
void queue_new_id(char out[17]);

/* Messages the queue writes itself (DSNs, TLS reports), in two steps so that a DSN can be
 * delivered locally from the same file instead. First p[0..n) in a new file
 * <tmpdir>/<what>.<pid>.XXXXXX, fsynced: its fd (at offset 0) and path_r, which the caller
 * closes and removes once done; or -1 with errno and no file left. */
int queue_spool_temp(const char *tmpdir, const char *what, const void *p, size_t n, char *path_r,
		     size_t pathlen);
/* Then queue that file (holding p[0..n), for the envelope's size and CRC) in dir from the null
 * sender to rcpt with NOTIFY=NEVER: hard-linked as <dir>/<id>.msg under a new id, then
 * queue_env_write (the commit point). 0, or -1 with errno and the link removed. tmp must be on
 * the file system of dir. */
int queue_spool_null(const char *dir, const char *tmp, const void *p, size_t n, const char *rcpt,
		     int body_8bit, int smtputf8);

/* Hold (hold=1) or release (hold=0) every queued message from sender, now and later, until
 * released; works from any process (a flag file under <queue_dir>/hold-sender/). The queue
 * process, if running, is told at once. 0 ok, -1 error (errno set). */
int queue_hold_sender(const char *queue_dir, const char *sender, int hold);
/* Is sender held? 1 yes, 0 no. */
int queue_sender_held(const char *queue_dir, const char *sender);
/* Hold or release one message. 0 ok, -1 error. */
int queue_hold_msg(const char *queue_dir, const char *id, int hold);
int queue_msg_held(const char *queue_dir, const char *id);
/* Tell the running queue process to rescan holds and retry now (SIGUSR1). 0 told, -1 none. */
int queue_poke(const char *queue_dir);

#endif
