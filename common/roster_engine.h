/* roster_engine: what an engine gives the roster's dispatcher (roster.c). Internal to the
 * roster: only common/roster*.c include it.
 *
 * Each engine keeps its own state behind a void pointer and answers every operation of
 * roster.h through the same callbacks. The redis engine keeps the instance's LMDB file
 * too, through the lmdb engine's synchronous calls below. */
#ifndef SESSIOND_ROSTER_ENGINE_H
#define SESSIOND_ROSTER_ENGINE_H

#include "roster.h"

struct roster_ops {
    const char *name;
    void *(*open)(const struct roster_params *p, char *err, size_t errlen);
    void (*close)(void *engine);
    void (*connect)(void *engine, const char *conn, const char *user, int max, roster_admit_cb cb,
                    void *arg);
    void (*disconnect)(void *engine, const char *conn, const char *user);
    void (*join)(void *engine, const char *channel, size_t len, const struct roster_member *m,
                 roster_count_cb cb, void *arg);
    void (*leave)(void *engine, const char *channel, size_t len, const struct roster_member *m,
                  roster_count_cb cb, void *arg);
    size_t (*count)(void *engine, const char *channel, size_t len);
    void (*members)(void *engine, const char *channel, size_t len, size_t max,
                    roster_member_cb each, roster_done_cb done, void *arg);
    void (*tick)(void *engine);
    int (*purge_slot)(void *engine, int slot);
    const char *(*last_error)(const void *engine);
};

extern const struct roster_ops roster_lmdb_ops;
extern const struct roster_ops roster_redis_ops;

/* The lmdb engine's answers, given at once. */
struct roster_lmdb;
struct roster_lmdb *roster_lmdb_open(const struct conf *c, int slot, char *err, size_t errlen);
void roster_lmdb_close(struct roster_lmdb *l);
int roster_lmdb_connect(struct roster_lmdb *l, const char *conn, const char *user, int max);
void roster_lmdb_disconnect(struct roster_lmdb *l, const char *conn);
int roster_lmdb_membership(struct roster_lmdb *l, bool join, const char *channel, size_t len,
                           const struct roster_member *m, size_t *count);
size_t roster_lmdb_count(struct roster_lmdb *l, const char *channel, size_t len);
int roster_lmdb_members(struct roster_lmdb *l, const char *channel, size_t len, size_t max,
                        roster_member_cb each, void *arg);
int roster_lmdb_purge_slot(struct roster_lmdb *l, int slot);
/* Everything this worker's slot holds, in one read: each connection to conn, each
 * membership to member. 0, or -1 (some may have been given). */
typedef void (*roster_conn_fn)(void *arg, const char *conn, const char *user);
typedef void (*roster_membership_fn)(void *arg, const char *channel, size_t len,
                                     const struct roster_member *m);
int roster_lmdb_each_own(struct roster_lmdb *l, roster_conn_fn conn, roster_membership_fn member,
                         void *arg);
const char *roster_lmdb_last_error(const struct roster_lmdb *l);

#endif
