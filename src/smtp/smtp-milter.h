/* smtp-milter.h - content filters (milters) at the end of DATA (see milter.h). */
#ifndef POSTINO_SMTP_MILTER_H
#define POSTINO_SMTP_MILTER_H

#include <stddef.h>

#include "milter.h"
#include "smtp-private.h"

/* Pool thread, before the message is made durable: run the listener's milters over the temp
 * file. MILTER_ACCEPT: deliver (the temp file may have been replaced by one carrying the
 * milters' header changes; *quarantine_r 1 = deliver to Junk / hold); MILTER_REJECT and
 * MILTER_TEMPFAIL: answer `reply`; MILTER_DISCARD: answer 250 and store nothing. */
enum milter_verdict smtp_milter_check(struct smtp_session *s, struct smtp_tx *tx,
				      const struct config *cfg, char *reply, size_t replylen,
				      int *quarantine_r);

#endif
