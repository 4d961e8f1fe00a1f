/* listener: the listening sockets, bound by the master before any fork and inherited by
 * every worker, so that all workers share one accept queue per address. */
#ifndef SESSIOND_LISTENER_H
#define SESSIOND_LISTENER_H

#include <stddef.h>

#include "conf.h"

struct listener {
    int fd;
    struct conf_listen addr;
};

struct listener_set {
    struct listener l[CONF_MAX_LISTEN];
    int n;
};

/* Bind and listen on one address (non-blocking, close-on-exec, SO_REUSEADDR; IPv6 sockets
 * are v6-only so that "[::]:80" and "0.0.0.0:80" can both be listed). A stale Unix socket
 * file is replaced. Returns the fd, or -1 with a message in err. */
int listener_open(const struct conf_listen *addr, int backlog, char *err, size_t errlen);

/* Make set hold exactly the listeners of conf: sockets whose address is unchanged are kept
 * (so no queued connection is lost across a reload), new ones are bound, the rest closed.
 * All or nothing: on failure set is unchanged and err says which address failed. */
int listener_sync(struct listener_set *set, const struct conf *conf, char *err, size_t errlen);

void listener_close_all(struct listener_set *set);

/* The first descriptor systemd passes (sd_listen_fds(3)). */
#define LISTEN_FDS_START 3

/* Sockets handed to this process (systemd's socket activation, or the master an upgrade
 * replaces) go into a pool: listener_open takes the one bound to the address it is asked
 * for, if any, instead of binding, so that no connection waiting in its queue is lost.
 * listener_inherit adds fd (-1 when the pool is full). */
int listener_inherit(int fd);

/* Add the sockets of LISTEN_FDS when LISTEN_PID is this process, and remove the three
 * variables from the environment. The count taken, or -1 with err for a LISTEN_FDS that
 * is not a count. */
int listener_from_systemd(char *err, size_t errlen);

/* Close the inherited sockets that no listener took; returns how many. */
int listener_close_inherited(void);

#endif
