/* smtp.h - the SMTP protocol's entry point for the worker process. */
#ifndef POSTINO_SMTP_H
#define POSTINO_SMTP_H

#include "session.h"

/* Take over an accepted socket on listener lst. */
void smtp_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer);

/* Pool thread: give back this thread's SMTP handles (limits.db, senders.db, system.db); all:
 * also its caches and resolver (the thread ends). The next job reopens what it needs. */
void smtp_thread_release(int all);

#endif
