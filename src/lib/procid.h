/* procid.h - this process's pid and host name, asked of the kernel once. */
#ifndef POSTINO_PROCID_H
#define POSTINO_PROCID_H

#include <sys/types.h>

/* getpid() without a system call each time (glibc asks the kernel on every call); right in a
 * child after fork(), whose pthread_atfork handler forgets the parent's. Thread-safe. */
pid_t proc_pid(void);

/* The host name (gethostname, "localhost" if it has none), read once per process: Maildir file
 * names carry it. Thread-safe; the string stays valid. */
const char *proc_hostname(void);

#endif
