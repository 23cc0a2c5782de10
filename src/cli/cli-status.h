/* cli-status.h - "postino status": the running server's metrics at a glance. */
#ifndef POSTINO_CLI_STATUS_H
#define POSTINO_CLI_STATUS_H

#include "config.h"

/* Fetch /metrics from the admin listener of cfg and print a summary. Exit code. */
int cli_status_main(const struct config *cfg);

#endif
