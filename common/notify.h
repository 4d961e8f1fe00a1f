/* notify: the sd_notify protocol, spoken by the master to systemd (Type=notify) or to
 * anything else that sets NOTIFY_SOCKET: READY=1 once the workers serve, RELOADING=1
 * and READY=1 around a reload, STOPPING=1 at a drain, STATUS= with the worker count.
 * No libsystemd: one datagram to the Unix socket named by the variable (a path, or an
 * abstract name after '@'). */
#ifndef SESSIOND_NOTIFY_H
#define SESSIOND_NOTIFY_H

/* Read NOTIFY_SOCKET and remove it from the environment, so that no child speaks for
 * the master. Returns 0, also when it is not set, or -1 when it cannot be used (the
 * reason is logged, and the messages are dropped). */
int notify_init(void);

/* The NOTIFY_SOCKET notify_init took (and removed from the environment), for a process
 * that takes over from this one (an upgrade's new master); NULL when not notifying. */
const char *notify_socket(void);

/* Send one message of "VAR=value" lines; nothing when NOTIFY_SOCKET was not set. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
