/* store: the dispatcher. A struct store is an engine's operations and its state; every
 * public function forwards to the engine the config chose ("store lmdb" or "store redis").
 * The engines live in store_lmdb.c and store_redis.c. */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_engine.h"
#include "token.h"

struct store {
    const struct store_ops *ops;
    void *engine;
};

/* The engine named by c->store; NULL (with err) for a name we do not know. The config
 * refuses such names already, but a struct conf can be built by hand (tests). */
static const struct store_ops *
store_ops_for(const struct conf *c, char *err, size_t errlen)
{
    if (strcmp(c->store, store_lmdb_ops.name) == 0)
        return &store_lmdb_ops;
    if (strcmp(c->store, store_redis_ops.name) == 0)
        return &store_redis_ops;
    errf(err, errlen, "store \"%s\": must be lmdb or redis", c->store);
    return NULL;
}

bool
store_id_fits(const struct session *s)
{
    char id[ID_CHARS + 1];
    token_id_of_hash(s->token_hash, id);
    return strncmp(id, s->id, sizeof s->id) == 0;
}

int
store_prepare(const struct conf *c, char *err, size_t errlen)
{
    const struct store_ops *ops = store_ops_for(c, err, errlen);
    return ops != NULL ? ops->prepare(c, err, errlen) : -1;
}

struct store *
store_open(const struct conf *c, void *loop, char *err, size_t errlen)
{
    const struct store_ops *ops = store_ops_for(c, err, errlen);
    if (ops == NULL)
        return NULL;
    struct store *st = malloc(sizeof *st);
    if (st == NULL) {
        errf(err, errlen, "store: out of memory");
        return NULL;
    }
    st->ops = ops;
    st->engine = ops->open(c, loop, err, errlen);
    if (st->engine == NULL) {
        free(st);
        return NULL;
    }
    return st;
}

void
store_close(struct store *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->engine);
    free(st);
}

void
store_create(struct store *st, const struct session *s, store_cb cb, void *arg)
{
    st->ops->create(st->engine, s, cb, arg);
}

void
store_get(struct store *st, const char *id, int64_t now, store_cb cb, void *arg)
{
    st->ops->get(st->engine, id, now, cb, arg);
}

void
store_get_by_token(struct store *st, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                   store_cb cb, void *arg)
{
    st->ops->get_by_token(st->engine, hash, now, cb, arg);
}

void
store_get_cached(struct store *st, const char *id, int64_t now, store_cb cb, void *arg)
{
    if (st->ops->get_cached != NULL)
        st->ops->get_cached(st->engine, id, now, cb, arg);
    else
        st->ops->get(st->engine, id, now, cb, arg);
}

void
store_get_by_token_cached(struct store *st, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                          store_cb cb, void *arg)
{
    if (st->ops->get_by_token_cached != NULL)
        st->ops->get_by_token_cached(st->engine, hash, now, cb, arg);
    else
        st->ops->get_by_token(st->engine, hash, now, cb, arg);
}

void
store_update(struct store *st, const char *id, int64_t now, const struct store_change *ch,
             store_cb cb, void *arg)
{
    st->ops->update(st->engine, id, now, ch, cb, arg);
}

void
store_delete(struct store *st, const char *id, uint64_t if_version, store_cb cb, void *arg)
{
    st->ops->delete_one(st->engine, id, if_version, cb, arg);
}

void
store_list_user(struct store *st, const char *user, int64_t now, const struct store_page *page,
                store_list_cb cb, void *arg)
{
    st->ops->list_user(st->engine, user, now, page, cb, arg);
}

void
store_delete_user(struct store *st, const char *user, store_count_cb cb, void *arg)
{
    st->ops->delete_user(st->engine, user, cb, arg);
}

void
store_count(struct store *st, store_count_cb cb, void *arg)
{
    st->ops->count(st->engine, cb, arg);
}

int
store_sweep(struct store *st, int64_t now, int max)
{
    return st->ops->sweep(st->engine, now, max);
}

void
store_info(const struct store *st, struct store_info *out)
{
    st->ops->info(st->engine, out);
}

const char *
store_last_error(const struct store *st)
{
    return st->ops->last_error(st->engine);
}
