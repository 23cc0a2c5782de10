/* master.h - "postino serve": open listeners, fork and supervise workers. */
#ifndef POSTINO_MASTER_H
#define POSTINO_MASTER_H

/* Run the master in the foreground until SIGTERM/SIGINT. Returns the exit code. */
int master_main(const char *config_path);

#include <stddef.h>

struct config;

/* Exit status of a worker or the queue process that cannot start (cannot become run_user,
 * cannot open system.db, ...): restarting it would fail the same way. */
#define MASTER_EXIT_STARTUP 3

/* Would the workers run as root (the master is root and run_user is empty or root)? */
int master_runs_as_root(const struct config *cfg);
/* Can run_user reach what the workers open in data_dir (system.db, mail/, queue/, tmp/, the
 * .db files)? Checked in a child that becomes run_user. 1 yes (or nothing to check), 0 no with
 * the reason in why, -1 the check itself failed (reason in why). */
int master_check_run_user(const struct config *cfg, char *why, size_t whylen);

#endif
