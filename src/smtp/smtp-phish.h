/* smtp-phish.h - the phishing mark of port 25 mail to local recipients (issue 12).
 *
 * Runs on the delivery pool thread, after the temp file is fsynced and before store_deliver:
 * phish.c looks at From and Reply-To; for each local recipient the signs found plus, when a
 * Reply-To leaves the From address's organisation and the recipient has never had mail from
 * that From address, "reply-to-elsewhere" decide the copy that recipient gets. A copy with a
 * sign carries X-Postino-Phishing and the configured mark; every copy loses the
 * X-Postino-Phishing fields the sender wrote. A copy is written only when it differs from the
 * received file (a temp file beside it, in.<pid>.* so the master's cleanup covers a crash), at
 * most one per distinct set of signs.
 *
 * First-time senders: <data>/senders.db (SQLite, WAL), table `seen` (account, sender, t): the
 * From addresses each account has had mail from over port 25, at most SMTP_PHISH_SEEN_MAX per
 * account (the oldest forgotten first). Recorded once the message is delivered everywhere,
 * so a retried message after a 451 is judged the same way. A lookup failure counts as a first
 * time (a warning too many rather than one missed). Authenticated submission is never marked
 * and records nothing.
 */
#ifndef POSTINO_SMTP_PHISH_H
#define POSTINO_SMTP_PHISH_H

#include <stddef.h>
#include <stdint.h>

#include "fsutil.h"
#include "phish.h"

struct config;

/* From addresses remembered per account: a few years of an ordinary inbox's correspondents,
 * a bounded cost per account (about 100 bytes a row). */
#define SMTP_PHISH_SEEN_MAX 5000
/* Header octets looked at (as the submission From: check, SMTP_HEADER_CAPTURE_MAX). */
#define SMTP_PHISH_HEADER_MAX 262144
/* Distinct copies per message: the signs common to all recipients, with and without
 * reply-to-elsewhere. */
#define SMTP_PHISH_VARIANTS 2
#define SMTP_PHISH_ACCOUNTS_MAX 1000   /* as SMTP_TARGETS_MAX */

struct smtp_phish_variant {
	unsigned reasons;
	int fd;
	char path[1100];
	uint64_t size;
};

struct smtp_phish {
	const struct config *cfg;
	int active;                    /* 0: deliver the received file unchanged */
	struct fs_view view;           /* the received file */
	const char *msg;               /* its octets (view.data) */
	size_t len, prefix_len;
	int forged;                    /* the sender wrote an X-Postino-Phishing field */
	struct phish_verdict v;
	struct smtp_phish_variant var[SMTP_PHISH_VARIANTS];
	unsigned nvar;
	char (*accounts)[328];         /* recipients to record the sender for */
	unsigned naccounts, cap;
};

/* Read the received file fd (size octets, prefix_len of them our trace fields) and look at it.
 * 0 ok (ph->active tells whether anything may change), -1 error (why set). */
int smtp_phish_begin(struct smtp_phish *ph, const struct config *cfg, int fd, uint64_t size,
		     uint64_t prefix_len, char *why, size_t whylen);

/* The file to deliver to account (and its size): the received one, or a marked copy.
 * 0 ok, -1 error (why set). */
int smtp_phish_file(struct smtp_phish *ph, const char *account, int fd, uint64_t size,
		    int *fd_r, uint64_t *size_r, char *why, size_t whylen);

/* The message went everywhere (delivered != 0): remember its sender for the accounts; in any
 * case unmap and remove the copies. */
void smtp_phish_end(struct smtp_phish *ph, int delivered);

/* Close this thread's system.db and senders.db handles; all: also free its policy, for a pool
 * thread that ends. The next message reopens and rebuilds what it needs. */
void smtp_phish_thread_release(int all);

#endif
