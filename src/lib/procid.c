/* procid.c - see procid.h. */
#include "procid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int cached_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char host[65];

/* fork() child: the pid is a new one. */
static void pid_forget(void)
{
	atomic_store(&cached_pid, 0);
}

/* Once per process image: forget the pid in every child. */
static void pid_init(void)
{
	pthread_atfork(NULL, NULL, pid_forget);
}

/* See procid.h. */
pid_t proc_pid(void)
{
	pthread_once(&pid_once, pid_init);
	int p = atomic_load(&cached_pid);
	if (p == 0) {
		p = (int)getpid();
		atomic_store(&cached_pid, p);
	}
	return (pid_t)p;
}

/* Read the host name once. */
static void host_init(void)
{
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
}

/* See procid.h. */
const char *proc_hostname(void)
{
	pthread_once(&host_once, host_init);
	return host;
}
