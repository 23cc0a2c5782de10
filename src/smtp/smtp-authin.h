/* smtp-authin.h - authenticating mail that arrives on port 25 (see smtp-authin.c). */
#ifndef POSTINO_SMTP_AUTHIN_H
#define POSTINO_SMTP_AUTHIN_H

#include <stddef.h>

struct smtp_session;
struct smtp_tx;
struct config;

enum authin_action {
	AUTHIN_DELIVER = 0,    /* deliver (the Authentication-Results field is in the file now) */
	AUTHIN_JUNK = 1,       /* deliver local copies into Junk (DMARC p=quarantine failure) */
	AUTHIN_REFUSE = -2,    /* answer `reply` (550 5.7.1 ...) and drop the message */
	AUTHIN_TEMP = -1,      /* answer `reply` (451 ...) or, when it is empty, the storage 451 */
};

/* Pool thread, before the message is made durable: SPF (once per transaction), DKIM and DMARC
 * for the message in tx->fd; then the file is rewritten with one Authentication-Results field
 * in front and every incoming one that claims our authserv-id removed (tx->fd, tmppath, size,
 * header_len and crc are updated). reply gets the SMTP reply for REFUSE/TEMP; why a log text. */
enum authin_action smtp_authin_check(struct smtp_session *s, struct smtp_tx *tx,
				     const struct config *cfg, char *reply, size_t replylen,
				     char *why, size_t whylen);

/* Close this thread's system.db handle; all: also its resolver (and the resolver's thread), for
 * a pool thread that ends. The next check reopens what it needs. */
void smtp_authin_thread_release(int all);

#endif
