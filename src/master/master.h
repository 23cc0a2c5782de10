/* master.h - "postino serve": open listeners, fork and supervise workers. */
#ifndef POSTINO_MASTER_H
#define POSTINO_MASTER_H

/* Run the master in the foreground until SIGTERM/SIGINT. Returns the exit code. */
int master_main(const char *config_path);

#endif
