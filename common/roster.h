/* roster: who is connected and subscribed where, over every worker of the instance.
 *
 * A worker knows its own WebSockets; presence, per-user connection limits and a
 * publish's recipient count are about all of them. They are kept in a small LMDB file
 * beside the store (store_path with "-roster" appended), shared by the workers the way the
 * store is, so that a limit is checked and taken in one transaction and no worker ever
 * has to ask the others. It describes the running instance only: the master empties it
 * at start, and purges a worker's entries when that worker dies, so nobody stays
 * present after their worker is gone.
 *
 * Every entry belongs to a connection, named by its id (up to ROSTER_CONN_MAX bytes, which
 * starts with the worker's slot so that a slot's entries are found together). */
#ifndef SESSIOND_ROSTER_H
#define SESSIOND_ROSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

#define ROSTER_CONN_MAX 32
#define ROSTER_USER_MAX 128
#define ROSTER_CHANNEL_MAX 128
#define ROSTER_SESSION_MAX 32

struct roster;

/* One member of a channel. */
struct roster_member {
    char conn[ROSTER_CONN_MAX + 1];
    char user[ROSTER_USER_MAX + 1];
    char session[ROSTER_SESSION_MAX + 1];
};

/* The master, before any worker: create the file, emptied when fresh is true (at start;
 * not on a reload, whose old workers are still connected). 0, or -1 with err. */
int roster_prepare(const struct conf *c, bool fresh, char *err, size_t errlen);

/* Open in a worker or the master. NULL with err. */
struct roster *roster_open(const struct conf *c, char *err, size_t errlen);
void roster_close(struct roster *l);

/* A connection of user arrives: recorded unless the user already has max connections.
 * Returns 1 when recorded, 0 when over the limit, -1 on error. */
int roster_connect(struct roster *l, int slot, const char *conn, const char *user, int max);
/* The connection is gone: its user entry and every channel it was in. */
void roster_disconnect(struct roster *l, int slot, const char *conn);

/* Join or leave a channel; *count is the channel's members afterwards. 0 or -1. */
int roster_join(struct roster *l, int slot, const char *channel, size_t len,
              const struct roster_member *m, size_t *count);
int roster_leave(struct roster *l, int slot, const char *channel, size_t len,
               const struct roster_member *m, size_t *count);

/* Members of a channel over the instance (0 for none or on error). */
size_t roster_count(struct roster *l, const char *channel, size_t len);
/* Call each for every member (at most max); returns how many, or -1 on error. */
int roster_members(struct roster *l, const char *channel, size_t len, size_t max,
                 void (*each)(void *arg, const struct roster_member *m), void *arg);

/* Forget everything of a worker slot (its process died). Returns the entries removed,
 * or -1. */
int roster_purge_slot(struct roster *l, int slot);

/* What the last failure was. */
const char *roster_last_error(const struct roster *l);

#endif
