/* worker.h - a protocol worker process: its listeners, accepting, stopping. */
#ifndef POSTINO_WORKER_H
#define POSTINO_WORKER_H

#include "session.h"

/* The master's ready pipe: the worker writes its index there once its listeners accept
 * (the master then tells the service manager READY=1). Call in the child before worker_main. */
void worker_set_ready_fd(int fd);
/* Run a worker process until told to stop. Never returns. */
struct authfail;
void worker_main(unsigned index, const struct config *cfg, struct tls_ctx *tls, const int *lfds,
		 struct iptable *ipt, struct authfail *af) __attribute__((__noreturn__));

#endif
