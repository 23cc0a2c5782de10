/* http.h - the HTTP protocol's entry point for the worker process. */
#ifndef POSTINO_HTTP_H
#define POSTINO_HTTP_H

#include "session.h"

/* Take over an accepted socket on listener lst. */
void http_session_start(struct worker *w, int fd, enum listener_id lst,
			const struct sockaddr_storage *peer);

#endif
