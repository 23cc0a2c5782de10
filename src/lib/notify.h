/* notify.h - the service manager's readiness protocol (sd_notify(3)), without libsystemd.
 *
 * When $NOTIFY_SOCKET names a unix datagram socket (a path, or "@name" for the abstract
 * namespace), each call sends one datagram of "KEY=VALUE" lines to it: READY=1 once the ports
 * accept, RELOADING=1 / READY=1 around a reload, STOPPING=1 at shutdown. Without the variable
 * nothing is sent. Only the master calls these; it unsets the variable for its children.
 */
#ifndef POSTINO_NOTIFY_H
#define POSTINO_NOTIFY_H

/* Read and unset $NOTIFY_SOCKET (call once at start). 1 if there is one to notify. */
int notify_init(void);
/* Send one state datagram ("READY=1", "STOPPING=1\nSTATUS=..."). 0 sent or nothing to notify,
 * -1 the socket refused it (errno set; the caller logs it, the service keeps running). */
int notify_send(const char *state);

#endif
