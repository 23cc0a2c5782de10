/* cli-admin.h - "postino domain|user|alias ...": account administration from the command line.
 *
 * Works directly on <data_dir>/system.db and the mail store; the server need not run. Output is
 * plain lines on stdout; errors go to stderr as "postino: <what happened>: <what to do>".
 * Passwords are read from stdin only (typed twice at a terminal, one line from a pipe).
 */
#ifndef POSTINO_CLI_ADMIN_H
#define POSTINO_CLI_ADMIN_H

/* Run one admin command. argv[0] is "domain", "user" or "alias"; the rest are its arguments with
 * --config/--data already removed by the caller. data_dir may be NULL when only --help is asked
 * for. Returns the exit code: 0 ok, 1 error, 2 usage. */
int cli_admin_main(const char *data_dir, int argc, char **argv);
/* The loaded configuration, for the server-wide sending limits (NULL: built-in defaults). */
struct config;
void cli_admin_set_config(const struct config *cfg);
/* How to give up root before touching the data directory (NULL: stay as is). Commands that write
 * system.db open it first, as root, so that it can stay root's (see acctdb_give_to_root). */
void cli_admin_set_privdrop(int (*drop)(const struct config *cfg));

#endif
