/* queue.h - the queue process and "postino queue": retries, delivery, bounces.
 *
 * The spool it works on (envelope files, holds, queue_poke) is lib-store/queue-spool.h, which
 * the SMTP workers write into; this header is for the master (queue_main) and the CLI.
 */
#ifndef POSTINO_QUEUE_H
#define POSTINO_QUEUE_H

#include "queue-spool.h"

struct config;

/* The queue process (forked by the master). Never returns. */
void queue_main(const struct config *cfg, const int *close_fds, int nclose)
	__attribute__((__noreturn__));

/* "postino queue ..." (data_dir NULL: only --help works). Returns the exit code. */
int queue_cli_main(const struct config *cfg, int argc, char **argv);

#endif
