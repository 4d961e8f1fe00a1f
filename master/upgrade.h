/* upgrade: a new binary without a refused connection (SIGUSR2, sessiond -s upgrade).
 *
 * The running master forks, and the child executes the file at the path this binary was
 * started from (the one a deploy replaced) with the same arguments. It inherits the
 * listening sockets, the instance lock and the write end of a pipe, all named in
 * SESSIOND_UPGRADE. The new master checks its config and starts its workers as at any
 * start, except that it takes the listeners and the lock from there and keeps the
 * roster; once all its workers serve, it writes the pidfile and one byte on the pipe,
 * and the old master drains as on TERM. The pipe closing without that byte (the new
 * master exited) or no byte within upgrade_timeout is a failed upgrade: the old master
 * keeps serving. */
#ifndef SESSIOND_UPGRADE_H
#define SESSIOND_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "listener.h"

#define UPGRADE_ENV "SESSIOND_UPGRADE"

/* What the master being replaced handed over. */
struct upgrade_from {
    pid_t pid;      /* the old master; 0 when this start is not an upgrade */
    int lock;       /* its instance lock, shared from now on (-1: none) */
    int ready;      /* the pipe to say "serving" on (-1: said, or none) */
    int base;       /* its workers' first roster slot, which ours must not overlap */
    char store[16]; /* its store engine, which ours must be */
};

/* First thing in main: remember this binary's path and arguments for an upgrade. */
void upgrade_remember(char **argv);

/* In a starting master: read SESSIOND_UPGRADE into u and remove it from the environment;
 * its sockets go to listener_inherit. 0 (u->pid 0 when there is none), or -1 with err
 * for a value that is not ours. */
int upgrade_take(struct upgrade_from *u, char *err, size_t errlen);

/* In the old master: start the new one, handing it ls, lock and base. Its pid, with
 * *ready the pipe's read end (non-blocking, close-on-exec), or -1 with err. */
pid_t upgrade_start(const struct listener_set *ls, int lock, int base, const char *store,
                    int *ready, char *err, size_t errlen);

/* In the new master, once it serves: tell the old one to drain. */
void upgrade_done(struct upgrade_from *u);

#endif
