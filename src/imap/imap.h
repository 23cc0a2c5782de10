/* imap.h - the IMAP protocol's entry point for the worker process. */
#ifndef POSTINO_IMAP_H
#define POSTINO_IMAP_H

#include "session.h"

/* Take over an accepted socket on listener lst. */
void imap_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer);

#endif
