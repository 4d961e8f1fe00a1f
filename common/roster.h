/* roster: who is connected and subscribed where, over every worker of the instance, and
 * with Redis over every instance.
 *
 * A worker knows its own WebSockets; presence, per-user connection limits and a
 * publish's recipient count are about all of them. Two engines answer through the same
 * callbacks:
 *   - lmdb: a small LMDB file beside the store (store_path with "-roster" appended),
 *     shared by the workers the way the store is, so that a limit is checked and taken in
 *     one transaction and no worker ever has to ask the others. It answers at once, before
 *     the call returns. It describes the running instance only: the master empties it at
 *     start, and purges a worker's entries when that worker dies.
 *   - redis (given a pubsub connection): the instance's file as above, mirrored into
 *     Redis for every instance, where a worker's entries live under its lease, which it
 *     renews (roster_tick) and which ends when it dies. Its answers come later, once Redis
 *     has answered; when Redis cannot be reached they fall back to the instance's file.
 *
 * Every entry belongs to a connection, named by its id (up to ROSTER_CONN_MAX bytes,
 * opaque: the engines file a worker's entries under its slot and lease themselves). */
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
struct pubsub;
struct scoreboard;

/* One member of a channel. */
struct roster_member {
    char conn[ROSTER_CONN_MAX + 1];
    char user[ROSTER_USER_MAX + 1];
    char session[ROSTER_SESSION_MAX + 1];
};

/* Where a roster is opened. The master passes only conf (and any slot): it purges. */
struct roster_params {
    const struct conf *conf;
    int slot;              /* the worker's scoreboard slot */
    int base;              /* added to slot in the instance file's keys (roster_base) */
    unsigned pid;          /* the worker's process */
    struct pubsub *ps;     /* with Redis: the connection to send commands on */
    struct scoreboard *sb; /* with Redis: the instance nonce, the dead workers, and the
                            * worker's lease epoch (written there) */
};

/* A connection's admission: 1 recorded, 0 over the user's limit, -1 on error. */
typedef void (*roster_admit_cb)(void *arg, int rc);
/* A join or leave: rc 0 (and the channel's members on the instance afterwards) or -1. */
typedef void (*roster_count_cb)(void *arg, int rc, size_t count);
/* Presence: each member in turn, then done with 0 or -1. */
typedef void (*roster_member_cb)(void *arg, const struct roster_member *m);
typedef void (*roster_done_cb)(void *arg, int rc);

/* The master, before any worker: create the file, emptied when fresh is true (at start;
 * not on a reload, whose old workers are still connected). 0, or -1 with err. */
int roster_prepare(const struct conf *c, bool fresh, char *err, size_t errlen);

/* Open in a worker or the master: the redis engine when p->ps is set, else lmdb. NULL
 * with err. */
struct roster *roster_open(const struct roster_params *p, char *err, size_t errlen);
/* With Redis, close the pubsub connection first: answers still in flight are dropped
 * with it, so none can reach a closed roster. */
void roster_close(struct roster *l);
/* "lmdb" or "redis". */
const char *roster_engine(const struct roster *l);

/* A connection of user arrives: recorded unless the user already has max connections
 * (over every instance, with Redis; when Redis cannot say, over this one). cb gets the
 * answer exactly once. */
void roster_connect(struct roster *l, const char *conn, const char *user, int max,
                    roster_admit_cb cb, void *arg);
/* The connection is gone: its user entry and every channel it was in. */
void roster_disconnect(struct roster *l, const char *conn, const char *user);

/* Join or leave a channel. A join's answer comes once every instance can see it; a lost
 * Redis degrades presence but not the membership (the answer is then 0 all the same). */
void roster_join(struct roster *l, const char *channel, size_t len, const struct roster_member *m,
                 roster_count_cb cb, void *arg);
void roster_leave(struct roster *l, const char *channel, size_t len, const struct roster_member *m,
                  roster_count_cb cb, void *arg);

/* Members of a channel on this instance, at once (0 for none or on error). */
size_t roster_count(struct roster *l, const char *channel, size_t len);
/* Every member (at most max) over the instance, or over every instance with Redis: each
 * for each, then done. */
void roster_members(struct roster *l, const char *channel, size_t len, size_t max,
                    roster_member_cb each, roster_done_cb done, void *arg);

/* Once a second in a worker: with Redis, renew this worker's lease and end the leases of
 * the instance's workers that died, so that their entries drop at the next look. */
void roster_tick(struct roster *l);

/* Forget everything of a worker slot in the instance's file (its process died): the
 * master's job. Returns the entries removed, or -1. */
int roster_purge_slot(struct roster *l, int slot);

/* What the last failure was. */
const char *roster_last_error(const struct roster *l);

#endif
