/* smtp-milter.h - the listener's milters (see milter.h) at every stage of an SMTP session. */
#ifndef POSTINO_SMTP_MILTER_H
#define POSTINO_SMTP_MILTER_H

#include <stddef.h>

#include "milter.h"
#include "pool.h"
#include "smtp-private.h"

/* Loop thread: run j->work on the pool in the milter lane (at most SMTP_MILTER_RUNNING_MAX
 * of its jobs at once per worker, so hung milters cannot take every pool thread from logins
 * and deliveries), then j->done on the loop. */
void smtp_milter_submit(struct worker *w, struct pool_job *j);

/* Loop thread: what a stage's verdict means to the command that waited for it. */
typedef void smtp_milter_cont(struct smtp_session *s, const struct milter_result *res);

/* Loop thread: run stage st of the session's milters (s->milter) on the pool. The session
 * waits meanwhile (state BUSY, not reading: pipelined commands stay in the buffer); then cont
 * runs with the state the session had, and reading resumes. arg: the HELO name
 * (MILTER_STAGE_HELO) or the recipient (MILTER_STAGE_RCPT). */
void smtp_milter_stage(struct smtp_session *s, enum milter_stage st, const char *arg,
		       smtp_milter_cont *cont);

/* Pool thread, before the message is made durable: the message stage over the temp file.
 * MILTER_ACCEPT: deliver (the temp file may have been replaced by one carrying the milters'
 * header changes; *quarantine_r 1 = deliver to Junk / hold); MILTER_REJECT and
 * MILTER_TEMPFAIL: answer `reply`; MILTER_DISCARD: answer 250 and store nothing. */
enum milter_verdict smtp_milter_check(struct smtp_session *s, struct smtp_tx *tx,
				      const struct config *cfg, char *reply, size_t replylen,
				      int *quarantine_r);

/* The milter settings of the configuration. */
void smtp_milter_settings(const struct config *cfg, struct milter_settings *set);

#endif
