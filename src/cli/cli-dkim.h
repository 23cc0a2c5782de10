/* cli-dkim.h - "postino dkim list|new|rotate|retire": the DKIM keys of the hosted domains. */
#ifndef POSTINO_CLI_DKIM_H
#define POSTINO_CLI_DKIM_H

/* Run "postino dkim ..." (argv[0] is "dkim"; --config/--data already removed). data_dir may be
 * NULL when only --help is asked for. Returns the exit code: 0 ok, 1 error, 2 usage. */
int cli_dkim_main(const char *data_dir, int argc, char **argv);
/* A domain was just added (postino domain add, quickstart): give it its first key pair, signing
 * at once, unless it has signing keys already; prints what it did. 0 ok, 1 error (printed). */
int cli_dkim_domain_added(const char *data_dir, const char *domain);

#endif
