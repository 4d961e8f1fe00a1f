/* redis_cache: a worker's copy of the sessions it read from Redis, kept only while Redis
 * promises to say when one changes (client-side caching, CLIENT TRACKING over RESP2).
 *
 * The cache owns a second connection, subscribed to __redis__:invalidate; the store's
 * connection turns tracking on with REDIRECT to that connection's client id. Redis then
 * remembers every key the store's connection reads and, when one changes (written by any
 * client of any instance, expired, evicted, flushed), sends its name to the subscriber.
 *
 * Never stale beyond a bound: a hit is served only while all of these hold:
 *   - tracking is confirmed (+OK) on the store's connection as it is now, redirected to
 *     the subscriber as it is now: a reconnect of either empties the cache and waits for
 *     a new +OK, since invalidations may have been lost meanwhile;
 *   - the subscriber answered a PING sent at most REDIS_CACHE_BOUND seconds ago. Redis
 *     writes the invalidation of a key into the subscriber's stream when the key changes,
 *     so every change made before Redis ran that PING came before its answer: a change
 *     acknowledged at time w is refused by every worker of every instance from
 *     w + REDIS_CACHE_BOUND on, whatever the network or the loop did meanwhile.
 * A read's answer fills the cache only if its key was announced (redis_cache_expect)
 * before the read went out and no invalidation of it came since: an invalidation that
 * overtakes the answer of an older read (the two come on different sockets) cannot be
 * lost that way. Writes of this worker drop the key at once (read-your-writes here). */
#ifndef SESSIOND_REDIS_CACHE_H
#define SESSIOND_REDIS_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "redis_url.h"

/* A hit needs an answer to a PING sent this recently (seconds); PINGs go four times
 * as often. Documented in sessiond.conf(5) (redis_cache_sessions) and the README. */
#define REDIS_CACHE_BOUND 0.1

struct ev_loop;
struct redis_cache;
struct redis_conn;
struct session;

/* An empty cache of at most max sessions, with its subscriber connecting in the
 * background to u; keys are prefix "s:" id. NULL with err when out of memory. */
struct redis_cache *redis_cache_open(struct ev_loop *loop, const struct redis_url *u,
                                     double timeout, size_t max, const char *prefix, char *err,
                                     size_t errlen);
void redis_cache_close(struct redis_cache *c);

/* The store's connection; after each of its handshakes (its on_ready), call
 * redis_cache_store_ready: the cache empties and asks for tracking anew. */
void redis_cache_attach(struct redis_cache *c, struct redis_conn *store);
void redis_cache_store_ready(struct redis_cache *c);

/* The session cached under id, valid now, or NULL; points into the cache until the next
 * call that may change it (any of these, or the loop running). */
const struct session *redis_cache_find(struct redis_cache *c, const char *id);

/* Before a read of id goes out on the store's connection: announce it, so that its
 * answer may fill the cache. */
void redis_cache_expect(struct redis_cache *c, const char *id);
/* A read's answer, s (its id included): kept if the announcement still stands. */
void redis_cache_fill(struct redis_cache *c, const struct session *s);
/* This worker changes id, or every session (id NULL): forget it now. */
void redis_cache_drop(struct redis_cache *c, const char *id);

/* Sessions held (pending announcements excluded), for tests. */
size_t redis_cache_size(const struct redis_cache *c);

#endif
