/* smtp-private.h - the SMTP server's session and transaction, shared by its files. */
#ifndef POSTINO_SMTP_PRIVATE_H
#define POSTINO_SMTP_PRIVATE_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "conn.h"
#include "ev.h"
#include "linereader.h"
#include "sendlimit.h"
#include "smtp.h"

#define SMTP_ADDR_MAX 321            /* local 64 + '@' + domain 255 + NUL */
#define SMTP_HEADER_CAPTURE_MAX 262144 /* header section kept for the From: check */
#define SMTP_TARGETS_MAX 1000        /* delivery targets after alias expansion */
#define SMTP_AUTH_LINE_MAX 12288     /* RFC 4954 section 4: SASL lines up to 12288 octets */
#define SMTP_OUT_MAX (1024 * 1024)   /* replies queued for a slow reader */
#define SMTP_OUT_HIWAT 65536         /* above this, pipelined commands wait for the output */

enum smtp_state {
	SMTP_ST_GREET,      /* before HELO/EHLO */
	SMTP_ST_READY,      /* no transaction */
	SMTP_ST_MAIL,       /* MAIL accepted, no recipient yet */
	SMTP_ST_RCPT,       /* at least one recipient */
	SMTP_ST_DATA,       /* reading DATA */
	SMTP_ST_BDAT,       /* reading a BDAT chunk */
	SMTP_ST_AUTH,       /* waiting for a SASL response line */
	SMTP_ST_BUSY,       /* waiting for the thread pool */
};

struct milter_session;

struct smtp_rcpt {
	char addr[SMTP_ADDR_MAX];     /* as given (decoded), for the envelope and DSN */
	char notify[40];              /* DSN NOTIFY= or "" */
	char orcpt[SMTP_ADDR_MAX + 16];
	int is_new;                   /* never written to by the sender before (sendlimit.h) */
};

struct smtp_target {
	char addr[SMTP_ADDR_MAX];     /* final address after alias expansion */
	int local;                    /* 1: mailbox here, 0: outbound spool */
	unsigned rcpt;                /* index of the recipient it came from */
};

struct smtp_tx {
	char id[17];                  /* in Received:, the 250 reply, logs and the queue file name */
	char from[SMTP_ADDR_MAX];
	int null_sender;
	int smtputf8;
	int body_8bit;
	uint64_t declared_size;       /* MAIL SIZE= */
	char ret[8];                  /* DSN RET= */
	char envid[101];              /* DSN ENVID= (xtext, as given) */
	struct smtp_rcpt *rcpts;
	unsigned nrcpts;
	struct sendlimit_tx lim;      /* sending limits of the authenticated user */
	struct smtp_target *targets;
	unsigned ntargets;
	/* message being received */
	int fd;
	uint64_t fseq;                /* the file's place in the order this process made them */
	char tmppath[1100];
	uint64_t size;                /* octets of the body received (after unstuffing) */
	uint64_t header_len;          /* trace header octets written before the body */
	int too_big;
	int bare_lf;                  /* a bare LF or CR line end was seen */
	int write_failed;
	int chunking;                 /* BDAT used */
	int bdat_failed;              /* an earlier BDAT in this transaction was refused */
	int milter_discard;           /* a milter discarded the transaction at MAIL or RCPT: the
				       * message gets 250 and is stored nowhere */
	struct buf wbuf;              /* pending writes to fd */
	unsigned long crc;            /* CRC-32 of the file, for the queue's integrity check */
	struct buf headers;           /* captured header section */
	int headers_done;
	/* DATA line state */
	int at_line_start;
	int prev_crlf;                /* the previous line ended with CRLF */
	/* port 25 authentication results (smtp-authin.c), for an ARC seal when forwarded */
	char *ar_value;               /* our Authentication-Results value (malloc'd) or NULL */
	unsigned arc_prior;           /* ARC sets on the message as received */
	int arc_prior_pass;           /* and whether that chain verified */
	/* delivery result from the pool */
	int result;                   /* 0 ok, -1 temporary failure */
	char result_msg[256];
};

struct smtp_session {
	struct session base;
	struct conn conn;
	enum smtp_state st;
	struct linereader lr;
	struct ev_timer timer;
	char helo[256];
	int esmtp;
	int reaped;
	unsigned errors;
	char auth_user[SMTP_ADDR_MAX];/* "" = not authenticated */
	unsigned auth_failures;
	/* SASL exchange in progress */
	int auth_mech;                /* 1 PLAIN, 2 LOGIN */
	int auth_step;
	char auth_login_user[SMTP_ADDR_MAX];
	char *auth_secret;            /* zeroed before free */
	int auth_ok;
	uint64_t bdat_remaining;
	int bdat_last;
	struct smtp_tx *tx;
	unsigned ntx;
	char tls_info[160];
	/* port 25 defences (issue 11) */
	struct ev_timer pause_timer;  /* greet pause, or a delayed reply */
	int greet_pending;            /* "220-" sent, the last greeting line not yet */
	unsigned unknown_rcpts;       /* 550 5.1.1 replies in this session */
	char *delayed_reply;          /* a reply held back by the harvest brake (malloc'd) */
	/* milters (smtp-milter.c): one connection per milter for the whole session */
	struct milter_session *milter;/* NULL: the listener has none */
	char pending_helo[256];       /* HELO/EHLO waiting for the milters' verdict */
	int pending_esmtp;
	unsigned pending_targets;     /* delivery targets the waiting RCPT added */
	int pending_is_new;
};

/* smtp-session.c */
void smtp_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void smtp_session_close(struct smtp_session *s, const char *reason);
/* Free a closing session once no job or deferred call points at it (an ev_defer callback). */
void smtp_reply_not_yours(struct smtp_session *s, const char *what, const char *addr);
void smtp_set_state(struct smtp_session *s, enum smtp_state st);
void smtp_tx_free(struct smtp_tx **txp);
void smtp_count_error(struct smtp_session *s);
const char *smtp_size_text(uint64_t bytes, char *out, size_t outlen);

/* smtp-data.c */
/* A number for each received file this process makes, in the order they are made. */
uint64_t smtp_file_seq(void);
int smtp_data_begin(struct smtp_session *s);
/* Consume DATA bytes from the input; returns octets consumed. Sets the state to BUSY when the
 * end of data was seen (and the delivery job is queued). */
size_t smtp_data_feed(struct smtp_session *s, const char *p, size_t n);
size_t smtp_bdat_feed(struct smtp_session *s, const char *p, size_t n);
void smtp_data_finish(struct smtp_session *s);
/* BURL url [LAST] (RFC 4468) in a transaction whose chunking has begun: append what the IMAP
 * URL names (resolved in this process, urlauth.h, as the authenticated user's submission
 * server: access submit+USER, or a URL of the user's own mailbox without URLAUTH), then
 * answer as a BDAT chunk would; LAST finishes the message as DATA does. */
void smtp_burl(struct smtp_session *s, const char *url, int last);

#endif
