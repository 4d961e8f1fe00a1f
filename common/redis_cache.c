#include "redis_cache.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "redis.h"
#include "redis_wire.h"
#include "store.h"
#include "util.h"

#define RCACHE_CHANNEL "__redis__:invalidate"
#define RCACHE_PING_EVERY (REDIS_CACHE_BOUND / 4)

/* A session read from Redis (valid), or a read announced and not answered yet. */
struct rcache_entry {
    struct rcache_entry *next; /* in its bucket */
    char id[SESSION_ID_LEN + 1];
    bool valid;
    bool stale;       /* announced, then invalidated: its answer is too old to keep */
    struct session s; /* valid: data, channels and subscribe point into bytes */
    char bytes[];
};

struct redis_cache {
    struct ev_loop *loop;
    struct redis_conn *sub;   /* ours: subscribed to RCACHE_CHANNEL */
    struct redis_conn *store; /* the store's, tracking redirected to sub */
    char prefix[80];          /* redis_prefix "s:": the start of a session's key */
    size_t prefix_len;
    struct rcache_entry **buckets;
    size_t mask;  /* buckets - 1, a power of two less one */
    size_t count; /* entries, pending ones included */
    size_t valid; /* entries holding a session */
    size_t max;

    long long sub_id; /* CLIENT ID of sub, once known */
    bool have_id, subscribed;
    int track_inflight; /* CLIENT TRACKING commands not answered yet */
    bool tracking;      /* confirmed for the connections as they are now */
    bool warned;
    double pong_sent; /* when the newest answered PING was sent (rcache_clock) */
    ev_timer ping_timer;
};

/* ---- the table ---- */

/* FNV-1a: ids are random already; this only spreads them over the buckets. */
static size_t
rcache_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)h;
}

static struct rcache_entry **
rcache_slot(struct redis_cache *c, const char *id)
{
    struct rcache_entry **pp = &c->buckets[rcache_hash(id) & c->mask];
    while (*pp != NULL && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void
rcache_unlink(struct redis_cache *c, struct rcache_entry **pp)
{
    struct rcache_entry *e = *pp;
    *pp = e->next;
    c->count--;
    if (e->valid) c->valid--;
    free(e);
}

static void
rcache_link(struct redis_cache *c, struct rcache_entry **pp, struct rcache_entry *e)
{
    e->next = *pp;
    *pp = e;
    c->count++;
    if (e->valid) c->valid++;
}

/* Every entry goes, pending ones too: their answers then find nothing to fill. */
static void
rcache_empty(struct redis_cache *c)
{
    for (size_t i = 0; i <= c->mask; i++)
        while (c->buckets[i] != NULL)
            rcache_unlink(c, &c->buckets[i]);
}

/* What tracking promised is void: nothing more is served or kept until a new +OK. */
static void
rcache_reset(struct redis_cache *c)
{
    c->tracking = false;
    rcache_empty(c);
}

/* id changed (or may have): a session goes, an announced read's answer will not count. */
static void
rcache_invalidate(struct redis_cache *c, const char *id)
{
    struct rcache_entry **pp = rcache_slot(c, id);
    if (*pp == NULL) return;
    if ((*pp)->valid)
        rcache_unlink(c, pp);
    else
        (*pp)->stale = true;
}

/* ---- what Redis promises ---- */

/* Seconds on the monotonic clock: the bound must not stretch when the wall clock is set
 * back (ev_time and ev_now are wall-clock time). */
static double
rcache_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
rcache_live(const struct redis_cache *c)
{
    return c->tracking && redis_ready(c->store) && redis_ready(c->sub) &&
           rcache_clock() - c->pong_sent <= REDIS_CACHE_BOUND;
}

static void
rcache_on_tracking(void *arg, const redisReply *r)
{
    struct redis_cache *c = arg;
    c->track_inflight--;
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    if (r != NULL && r->type == REDIS_REPLY_ERROR && !c->warned) {
        c->warned = true; /* Redis before 6, or an ACL: no cache, as without the directive */
        log_warnx("redis_cache_sessions: CLIENT TRACKING refused (%.*s): sessions are not "
                  "cached",
                  (int)r->len, r->str);
    }
    /* Only the answer to the newest request counts: an older one may name a subscriber
     * that is gone. */
    if (ok && c->track_inflight == 0 && c->have_id && c->subscribed && redis_ready(c->sub))
        c->tracking = true;
}

/* Ask for tracking once both connections are up and the subscriber is listening. */
static void
rcache_track(struct redis_cache *c)
{
    if (c->store == NULL || !c->have_id || !c->subscribed || !redis_ready(c->store)) return;
    char id[24];
    int n = snprintf(id, sizeof id, "%lld", c->sub_id);
    const char *argv[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id};
    const size_t len[] = {6, 8, 2, 8, (size_t)n};
    if (redis_command(c->store, rcache_on_tracking, c, 5, argv, len) == 0) c->track_inflight++;
}

void
redis_cache_store_ready(struct redis_cache *c)
{
    rcache_reset(c); /* Redis forgot what the old connection read */
    rcache_track(c);
}

/* ---- the subscriber ---- */

static void
rcache_on_client_id(void *arg, const redisReply *r)
{
    struct redis_cache *c = arg;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER)
        return; /* lost: the next handshake asks again */
    c->sub_id = r->integer;
    c->have_id = true;
    rcache_track(c);
}

/* Every (re)connect: invalidations may have been missed, so all goes, and tracking is
 * asked for again, redirected to this connection's new client id. */
static void
rcache_on_sub_ready(void *arg)
{
    struct redis_cache *c = arg;
    static const char *const id_argv[] = {"CLIENT", "ID"};
    static const size_t id_len[] = {6, 2};
    static const char *const sub_argv[] = {"SUBSCRIBE", RCACHE_CHANNEL};
    static const size_t sub_len[] = {9, sizeof RCACHE_CHANNEL - 1};
    rcache_reset(c);
    c->have_id = c->subscribed = false;
    c->pong_sent = 0; /* long ago: no hit before the first PING is answered */
    redis_command(c->sub, rcache_on_client_id, c, 2, (const char **)id_argv, id_len);
    redis_subscribe_command(c->sub, 2, (const char **)sub_argv, sub_len);
}

/* The keys of one invalidation message; nil (FLUSHDB, FLUSHALL) means every key. */
static void
rcache_on_invalidate(struct redis_cache *c, const redisReply *keys)
{
    if (keys->type != REDIS_REPLY_ARRAY) {
        rcache_empty(c);
        return;
    }
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        size_t n = c->prefix_len;
        if (k->type != REDIS_REPLY_STRING || k->len != n + SESSION_ID_LEN ||
            memcmp(k->str, c->prefix, n) != 0)
            continue; /* not a session's key (tracked by a script's read) */
        char id[SESSION_ID_LEN + 1];
        memcpy(id, k->str + n, SESSION_ID_LEN);
        id[SESSION_ID_LEN] = '\0';
        rcache_invalidate(c, id);
    }
}

static void
rcache_on_push(void *arg, const redisReply *r)
{
    struct redis_cache *c = arg;
    if (r->elements == 3 && redis_reply_is(r->element[0], "subscribe")) {
        c->subscribed = true;
        rcache_track(c);
    } else if (r->elements == 3 && redis_reply_is(r->element[0], "message") &&
               redis_reply_is(r->element[1], RCACHE_CHANNEL)) {
        rcache_on_invalidate(c, r->element[2]);
    }
}

/* ["pong", the time the PING was sent]: every invalidation before it has come. */
static void
rcache_on_pong(void *arg, const redisReply *r)
{
    struct redis_cache *c = arg;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return;
    double sent = strtod(r->element[1]->str, NULL);
    if (sent > c->pong_sent) c->pong_sent = sent;
}

/* A PING on the subscriber carries its send time; redis.c's deadline drops a subscriber
 * that stops answering, which empties the cache at its reconnect. */
static void
rcache_on_ping_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_cache *c = container_of(t, struct redis_cache, ping_timer);
    if (!c->subscribed || !redis_ready(c->sub)) return;
    char now[32];
    int n = snprintf(now, sizeof now, "%.6f", rcache_clock());
    const char *argv[] = {"PING", now};
    const size_t len[] = {4, (size_t)n};
    redis_command(c->sub, rcache_on_pong, c, 2, argv, len);
}

/* ---- the store's side ---- */

const struct session *
redis_cache_find(struct redis_cache *c, const char *id)
{
    if (!rcache_live(c)) return NULL;
    const struct rcache_entry *e = *rcache_slot(c, id);
    return e != NULL && e->valid ? &e->s : NULL;
}

void
redis_cache_expect(struct redis_cache *c, const char *id)
{
    if (!c->tracking) return; /* this read may not be tracked */
    struct rcache_entry **pp = rcache_slot(c, id);
    if (*pp != NULL || c->count >= c->max)
        return; /* announced or held already (an answer then refreshes it); or full */
    struct rcache_entry *e = calloc(1, sizeof *e);
    if (e == NULL) return;
    snprintf(e->id, sizeof e->id, "%s", id);
    rcache_link(c, pp, e);
}

void
redis_cache_fill(struct redis_cache *c, const struct session *s)
{
    struct rcache_entry **pp = rcache_slot(c, s->id);
    if (*pp == NULL) return; /* not announced, or invalidated since it was held */
    if ((*pp)->stale) {
        rcache_unlink(c, pp);
        return;
    }
    size_t n = s->data_len + s->channels_len + s->subscribe_len;
    struct rcache_entry *e = malloc(sizeof *e + n + 1);
    if (e == NULL) {
        rcache_unlink(c, pp);
        return;
    }
    *e = (struct rcache_entry){.valid = true, .s = *s};
    memcpy(e->id, (*pp)->id, sizeof e->id);
    char *p = e->bytes;
    memcpy(p, s->data, s->data_len);
    e->s.data = p;
    p += s->data_len;
    if (s->channels_len > 0) memcpy(p, s->channels, s->channels_len);
    e->s.channels = p;
    p += s->channels_len;
    if (s->subscribe_len > 0) memcpy(p, s->subscribe, s->subscribe_len);
    e->s.subscribe = p;
    rcache_unlink(c, pp);
    rcache_link(c, rcache_slot(c, e->id), e);
}

void
redis_cache_drop(struct redis_cache *c, const char *id)
{
    if (id == NULL)
        rcache_empty(c);
    else
        rcache_invalidate(c, id);
}

size_t
redis_cache_size(const struct redis_cache *c)
{
    return c->valid;
}

void
redis_cache_attach(struct redis_cache *c, struct redis_conn *store)
{
    c->store = store;
}

/* ---- lifetime ---- */

struct redis_cache *
redis_cache_open(struct ev_loop *loop, const struct redis_url *u, double timeout, size_t max,
                 const char *prefix, char *err, size_t errlen)
{
    struct redis_cache *c = calloc(1, sizeof *c);
    size_t nb = 64;
    while (nb < max)
        nb *= 2;
    if (c == NULL || (c->buckets = calloc(nb, sizeof(struct rcache_entry *))) == NULL) {
        free(c);
        errf(err, errlen, "redis_cache_sessions: out of memory");
        return NULL;
    }
    c->loop = loop;
    c->mask = nb - 1;
    c->max = max;
    c->prefix_len = (size_t)snprintf(c->prefix, sizeof c->prefix, "%ss:", prefix);
    struct redis_opts opts = {
        .timeout = timeout, .on_ready = rcache_on_sub_ready, .on_push = rcache_on_push, .arg = c};
    if ((c->sub = redis_open(loop, u, &opts, err, errlen)) == NULL) {
        free(c->buckets);
        free(c);
        return NULL;
    }
    ev_timer_init(&c->ping_timer, rcache_on_ping_timer, RCACHE_PING_EVERY, RCACHE_PING_EVERY);
    ev_timer_start(loop, &c->ping_timer);
    return c;
}

/* After the store's connection is closed: no callback of ours runs after this. */
void
redis_cache_close(struct redis_cache *c)
{
    if (c == NULL) return;
    ev_timer_stop(c->loop, &c->ping_timer);
    redis_close(c->sub);
    rcache_empty(c);
    free(c->buckets);
    free(c);
}
