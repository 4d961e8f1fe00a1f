/* store_engine: what an engine gives the store's dispatcher (store.c). Internal to the
 * store: only common/store*.c include it.
 *
 * Each engine keeps its own state behind a void pointer and answers every operation of
 * store.h through the same callbacks; the dispatcher only picks the engine (by the
 * config's "store") and forwards. */
#ifndef SESSIOND_STORE_ENGINE_H
#define SESSIOND_STORE_ENGINE_H

#include "store.h"
#include "util.h" /* errf */

/* The most bytes of a session's channels, and of its subscribe, that an engine keeps. The
 * API's arrays (at most 64 names of at most 128 bytes, which need no escaping, quoted and
 * separated by commas) take at most 64 x 131 + 2 = 8386; anything longer is refused as a
 * caller's mistake, so that a record's lengths fit their fields. Neither counts against
 * session_max_bytes, which bounds the data. */
#define STORE_GRANTS_MAX 16384

struct store_ops {
    const char *name; /* as in the config's "store" and store_info's backend */
    int (*prepare)(const struct conf *c, char *err, size_t errlen);
    void *(*open)(const struct conf *c, void *loop, char *err, size_t errlen);
    void (*close)(void *engine);
    void (*create)(void *engine, const struct session *s, store_cb cb, void *arg);
    void (*get)(void *engine, const char *id, int64_t now, store_cb cb, void *arg);
    void (*get_by_token)(void *engine, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                         store_cb cb, void *arg);
    /* Optional (NULL: get and get_by_token): reads an engine may answer from a cache. */
    void (*get_cached)(void *engine, const char *id, int64_t now, store_cb cb, void *arg);
    void (*get_by_token_cached)(void *engine, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                                store_cb cb, void *arg);
    void (*update)(void *engine, const char *id, int64_t now, const struct store_change *ch,
                   store_cb cb, void *arg);
    void (*delete_one)(void *engine, const char *id, uint64_t if_version, store_cb cb,
                       void *arg);
    void (*list_user)(void *engine, const char *user, int64_t now, const struct store_page *page,
                      store_list_cb cb, void *arg);
    void (*delete_user)(void *engine, const char *user, store_count_cb cb, void *arg);
    void (*count)(void *engine, store_count_cb cb, void *arg);
    int (*sweep)(void *engine, int64_t now, int max);
    void (*info)(const void *engine, struct store_info *out);
    const char *(*last_error)(const void *engine);
};

extern const struct store_ops store_lmdb_ops;
extern const struct store_ops store_redis_ops;


#endif
