/* pop3.h - the POP3 protocol's entry point for the worker process. */
#ifndef POSTINO_POP3_H
#define POSTINO_POP3_H

#include "session.h"

/* Take over an accepted socket on listener lst. */
void pop3_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer);

#endif
