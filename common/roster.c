/* roster: the dispatcher. It picks the engine when the roster is opened and forwards
 * every call to it. */
#include "roster.h"

#include <stdlib.h>

#include "roster_engine.h"
#include "util.h"

struct roster {
    const struct roster_ops *ops;
    void *engine;
};

struct roster *
roster_open(const struct roster_params *p, char *err, size_t errlen)
{
    struct roster *l = calloc(1, sizeof *l);
    if (l == NULL) {
        errf(err, errlen, "roster: out of memory");
        return NULL;
    }
    l->ops = p->ps != NULL ? &roster_redis_ops : &roster_lmdb_ops;
    if ((l->engine = l->ops->open(p, err, errlen)) == NULL) {
        free(l);
        return NULL;
    }
    return l;
}

void
roster_close(struct roster *l)
{
    if (l == NULL)
        return;
    l->ops->close(l->engine);
    free(l);
}

const char *
roster_engine(const struct roster *l)
{
    return l->ops->name;
}

void
roster_connect(struct roster *l, const char *conn, const char *user, int max,
               roster_admit_cb cb, void *arg)
{
    l->ops->connect(l->engine, conn, user, max, cb, arg);
}

void
roster_disconnect(struct roster *l, const char *conn, const char *user)
{
    l->ops->disconnect(l->engine, conn, user);
}

void
roster_join(struct roster *l, const char *channel, size_t len, const struct roster_member *m,
            roster_count_cb cb, void *arg)
{
    l->ops->join(l->engine, channel, len, m, cb, arg);
}

void
roster_leave(struct roster *l, const char *channel, size_t len, const struct roster_member *m,
             roster_count_cb cb, void *arg)
{
    l->ops->leave(l->engine, channel, len, m, cb, arg);
}

size_t
roster_count(struct roster *l, const char *channel, size_t len)
{
    return l->ops->count(l->engine, channel, len);
}

void
roster_members(struct roster *l, const char *channel, size_t len, size_t max,
               roster_member_cb each, roster_done_cb done, void *arg)
{
    l->ops->members(l->engine, channel, len, max, each, done, arg);
}

void
roster_tick(struct roster *l)
{
    l->ops->tick(l->engine);
}

int
roster_purge_slot(struct roster *l, int slot)
{
    return l->ops->purge_slot(l->engine, slot);
}

const char *
roster_last_error(const struct roster *l)
{
    return l->ops->last_error(l->engine);
}
