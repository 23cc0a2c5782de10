/* notify.c - sd_notify over $NOTIFY_SOCKET: one unix datagram per state change. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un notify_addr;
static socklen_t notify_addrlen;   /* 0 = nothing to notify */

/* Remember $NOTIFY_SOCKET and drop it from the environment. */
int notify_init(void)
{
	const char *e = getenv("NOTIFY_SOCKET");
	notify_addrlen = 0;
	if (e == NULL || (e[0] != '/' && e[0] != '@') ||
	    strlen(e) >= sizeof(notify_addr.sun_path)) {
		unsetenv("NOTIFY_SOCKET");
		return 0;
	}
	size_t len = strlen(e);
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, e, len);
	if (e[0] == '@')
		notify_addr.sun_path[0] = '\0';   /* abstract namespace: no terminating NUL */
	else
		len++;
	notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	unsetenv("NOTIFY_SOCKET");
	return 1;
}

/* Send one datagram with the given state lines. */
int notify_send(const char *state)
{
	if (notify_addrlen == 0)
		return 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			   (const struct sockaddr *)&notify_addr, notify_addrlen);
	int saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)strlen(state) ? 0 : -1;
}
