/* store: where sessions live. One interface, two engines (store.c picks one by the
 * config's "store"): the embedded one (LMDB, shared by every worker of a machine through
 * one memory-mapped file, store_lmdb.c) and Redis (shared by many instances,
 * store_redis.c).
 *
 * Every operation answers through its callback exactly once. The embedded engine calls
 * back before it returns, except that, opened with a loop, its creates, updates and
 * deletes wait for the group commit: one transaction for the writes of a loop iteration,
 * in the order they came, each answered (with its own status) once it is committed,
 * before the loop waits again. The Redis engine calls back later, from the worker's event loop,
 * and never before the call has returned (even a refusal known at once waits for the next
 * loop iteration), within redis_timeout at the latest. What a call is given (an id, a
 * session and its data, a patch) is copied: it need not outlive the call. A callback's
 * session pointer (and what it points to) is valid only during the call. Nothing is ever
 * half-written: each operation, with its limit checks, is atomic. */
#ifndef SESSIOND_STORE_H
#define SESSIOND_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

#define SESSION_ID_LEN 22      /* base64url of the token hash's first 16 bytes (token.h) */
#define SESSION_TOKEN_LEN 43   /* base64url of 32 random bytes, no padding */
#define SESSION_HASH_LEN 32    /* SHA-256 of the token: all the store keeps of it */
#define SESSION_USER_MAX 128

struct session {
    char id[SESSION_ID_LEN + 1];
    char user[SESSION_USER_MAX + 1];
    uint8_t token_hash[SESSION_HASH_LEN];
    int64_t created_at;        /* Unix seconds */
    int64_t expires_at;        /* Unix seconds */
    int64_t ttl;               /* seconds; touch and rolling expiry extend by this */
    uint64_t version;          /* 1 at creation, +1 on every change of data or ttl */
    const char *data;          /* the data object, serialized JSON (not NUL-terminated) */
    size_t data_len;
    /* Grants ("channels") and server-side subscriptions ("subscribe"): each a compact
     * JSON array of strings, as the API validated it (namespace.h's patterns and channel
     * names), or length 0 for none. Kept by both engines, not NUL-terminated. */
    const char *channels;
    size_t channels_len;
    const char *subscribe;
    size_t subscribe_len;
};

enum store_status {
    STORE_OK = 0,
    STORE_NOT_FOUND,      /* absent or expired */
    STORE_VERSION,        /* If-Match did not match the current version */
    STORE_USER_LIMIT,     /* the user already has max_sessions_per_user live sessions */
    STORE_FULL,           /* max_sessions live sessions in the store */
    STORE_TOO_BIG,        /* the data would exceed session_max_bytes */
    STORE_BAD_DATA,       /* a patch that cannot be applied (not an object) */
    STORE_UNAVAILABLE,    /* the backend cannot be reached (circuit open, timeout) */
    STORE_NO_SPACE,       /* the embedded store's disk is full: writes wait for room */
    STORE_ERROR,          /* anything else; store_last_error() says what */
};

/* One session (or none, on error). */
typedef void (*store_cb)(void *arg, enum store_status st, const struct session *s);
/* Several sessions: a user's list. */
typedef void (*store_list_cb)(void *arg, enum store_status st, const struct session *list,
                              size_t n);
/* A count: sessions deleted, or live sessions. */
typedef void (*store_count_cb)(void *arg, enum store_status st, uint64_t n);

struct store;

/* Whether s's id is the one its token hash gives (see token.h). */
bool store_id_fits(const struct session *s);

/* What the engine reports for health and metrics. */
struct store_info {
    const char *backend;  /* "lmdb" or "redis" */
    bool healthy;         /* Redis: connected and the circuit closed */
    const char *circuit;  /* "closed", "open" or "half_open" (LMDB: always "closed") */
};

/* Called once by the master before it forks: create or check the store (size, path,
 * permissions) so that a problem is a clear start-up error. Returns 0 or -1 with err.
 * For Redis only the URL is checked: Redis may be down while sessiond starts. */
int store_prepare(const struct conf *c, char *err, size_t errlen);

/* Open in a worker, after fork; loop is the worker's struct ev_loop (for engines that
 * need one). NULL with err on failure. The Redis engine does not fail because Redis is
 * down: it connects (and reconnects) in the background, and until then calls answer
 * STORE_UNAVAILABLE. */
struct store *store_open(const struct conf *c, void *loop, char *err, size_t errlen);

/* Close, before the loop is destroyed. Operations still pending (Redis) are dropped: their
 * callbacks are not called. Not to be called from inside a store callback. */
void store_close(struct store *st);

/* Create s (id, token_hash, user, data, created_at, expires_at and ttl filled in by the
 * caller, version ignored and set to 1), checking max_sessions and max_sessions_per_user
 * in the same transaction. The id must be token_id_of_hash(token_hash) (store_id_fits),
 * which is how the engines find a session by its token without an index of tokens. The
 * callback gets the stored session. */
void store_create(struct store *st, const struct session *s, store_cb cb, void *arg);

/* The session with this id, unless it expired before now. */
void store_get(struct store *st, const char *id, int64_t now, store_cb cb, void *arg);

/* The session whose token hashes to hash, unless expired: the session with the id of
 * hash, if the whole of its stored hash is hash (compared in constant time). */
void store_get_by_token(struct store *st, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                        store_cb cb, void *arg);

/* store_get and store_get_by_token, answered from the engine's cache when it has one
 * (Redis with redis_cache_sessions): a change made through another worker or instance is
 * then seen within REDIS_CACHE_BOUND (redis_cache.h), not at once. For answering reads;
 * not for a decision taken because a session changed (a live socket's grants), which
 * must see that change. */
void store_get_cached(struct store *st, const char *id, int64_t now, store_cb cb, void *arg);
void store_get_by_token_cached(struct store *st, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                               store_cb cb, void *arg);

/* Change a session atomically: patch (a JSON merge patch, RFC 7396, or NULL) is applied
 * to its data; ttl > 0 sets a new ttl; touch extends expires_at to now + ttl. With
 * if_version > 0, the change happens only if the version is still if_version. The version
 * increments when data, ttl, channels or subscribe changed. */
struct store_change {
    const char *patch;
    size_t patch_len;
    int64_t ttl;          /* 0: keep */
    bool touch;           /* expires_at = touch_from + ttl */
    int64_t touch_from;   /* the time a touch runs from, rounded up to the second (a
                             session then lives its whole ttl); 0: now */
    uint64_t if_version;  /* 0: unconditional */
    /* With set_channels (set_subscribe), the session's channels (subscribe) are replaced
     * whole by these (length 0: none). */
    bool set_channels, set_subscribe;
    const char *channels;
    size_t channels_len;
    const char *subscribe;
    size_t subscribe_len;
};
void store_update(struct store *st, const char *id, int64_t now, const struct store_change *ch,
                  store_cb cb, void *arg);

/* Delete one session, answering it as it was (so that the caller learns its user). With
 * if_version > 0, only if its version is still if_version (STORE_VERSION otherwise). */
void store_delete(struct store *st, const char *id, uint64_t if_version, store_cb cb,
                  void *arg);

/* A page of a user's list: the live sessions after the one created at after_created
 * with id after_id (after_id "" for the first page), at most limit of them, in the
 * list's order (created_at, then id). The session named need not exist any more. */
struct store_page {
    int64_t after_created;
    char after_id[SESSION_ID_LEN + 1];
    size_t limit;
};

void store_list_user(struct store *st, const char *user, int64_t now,
                     const struct store_page *page, store_list_cb cb,
                     void *arg);

/* Delete every session of user; the count callback gets how many. */
void store_delete_user(struct store *st, const char *user, store_count_cb cb, void *arg);

/* Live sessions in the whole store (LMDB: approximate while expired ones await the
 * sweep; Redis: its index is trimmed to the current time first). */
void store_count(struct store *st, store_count_cb cb, void *arg);

/* Delete up to max expired sessions (the worker calls this on a timer, in small batches so
 * that no loop stalls). Returns how many were deleted, or -1. Redis expires sessions by
 * itself: its sweep only trims the count's index, does not wait for the answer, and
 * returns 0. */
int store_sweep(struct store *st, int64_t now, int max);

void store_info(const struct store *st, struct store_info *out);

/* What the last STORE_ERROR (or, for Redis, STORE_UNAVAILABLE) was about, for the
 * caller's log line ("" if nothing failed). The store logs nothing itself. */
const char *store_last_error(const struct store *st);

#endif
