/* The session cache of store redis (common/redis_cache.c) against a real redis-server:
 * what Redis's invalidations do to it, an invalidation that overtakes an older read's
 * answer, and a lost invalidation connection. */
#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"
#include "redis_cache.h"
#include "redis_server.h"
#include "store.h"
#include "suites.h"

#define ID "AAAAAAAAAAAAAAAAAAAAAA" /* SESSION_ID_LEN characters */
#define KEY "t:s:" ID

struct cfx {
    struct test_redis redis;
    struct ev_loop *loop;
    struct redis_conn *store;
    struct redis_cache *cache;
    redisContext *admin;
    bool answered, fill_now;
};

static void
cfx_on_ready(void *arg)
{
    struct cfx *f = arg;
    if (f->cache != NULL) redis_cache_store_ready(f->cache);
}

static void
cfx_run(struct cfx *f, double seconds)
{
    ev_tstamp end = ev_time() + seconds;
    while (ev_time() < end) {
        ev_now_update(f->loop);
        ev_run(f->loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static void
cfx_fill(struct cfx *f)
{
    struct session s = {.id = ID, .data = "{}", .data_len = 2, .expires_at = 1};
    redis_cache_fill(f->cache, &s);
}

static void
cfx_on_read(void *arg, const struct redisReply *r)
{
    struct cfx *f = arg;
    ck_assert_ptr_nonnull(r);
    f->answered = true;
    if (f->fill_now) cfx_fill(f);
}

/* A read of the key on the store's connection (so that Redis tracks it), announced first;
 * its answer fills the cache at once when fill_now. */
static void
cfx_read(struct cfx *f, bool fill_now)
{
    const char *argv[] = {"HMGET", KEY, "d"};
    const size_t len[] = {5, sizeof KEY - 1, 1};
    f->answered = false;
    f->fill_now = fill_now;
    redis_cache_expect(f->cache, ID);
    ck_assert_int_eq(redis_command(f->store, cfx_on_read, f, 3, argv, len), 0);
    for (int i = 0; i < 2000 && !f->answered; i++)
        cfx_run(f, 0.001);
    ck_assert(f->answered);
}

static void
cfx_write(struct cfx *f, const char *value)
{
    freeReplyObject(redisCommand(f->admin, "HSET %s d %s", KEY, value));
}

static void
cfx_start(struct cfx *f)
{
    char url[64], err[256];
    struct redis_url u;
    test_redis_start(&f->redis, NULL);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", f->redis.port);
    ck_assert_int_eq(redis_url_parse(url, &u, err, sizeof err), 0);
    struct redis_opts o = {.timeout = 2.0, .on_ready = cfx_on_ready, .arg = f};
    f->store = redis_open(f->loop, &u, &o, err, sizeof err);
    f->cache = redis_cache_open(f->loop, &u, 2.0, 100, "t:", err, sizeof err);
    ck_assert(f->store != NULL && f->cache != NULL);
    redis_cache_attach(f->cache, f->store);
    struct timeval tv = {.tv_sec = 1};
    f->admin = redisConnectWithTimeout("127.0.0.1", f->redis.port, tv);
    ck_assert(f->admin != NULL && f->admin->err == 0);
    cfx_write(f, "v1");
}

/* Read until the cache holds the session: tracking is then confirmed. */
static void
cfx_cached(struct cfx *f)
{
    for (int i = 0; i < 100 && redis_cache_find(f->cache, ID) == NULL; i++) {
        cfx_read(f, true);
        cfx_run(f, 0.05);
    }
    ck_assert_ptr_nonnull(redis_cache_find(f->cache, ID));
}

static void
cfx_stop(struct cfx *f)
{
    redis_close(f->store);
    redis_cache_close(f->cache);
    redisFree(f->admin);
    test_redis_stop(&f->redis);
    ev_loop_destroy(f->loop);
}

START_TEST(a_write_elsewhere_drops_the_session)
{
    struct cfx f = {0};
    cfx_start(&f);
    cfx_cached(&f);
    cfx_write(&f, "v2");
    cfx_run(&f, 0.1);
    ck_assert_ptr_null(redis_cache_find(f.cache, ID));
    ck_assert_uint_eq(redis_cache_size(f.cache), 0);
    cfx_stop(&f);
}
END_TEST

/* The read is answered, then the key changes and its invalidation comes before the answer
 * is handed to the cache (as when the two sockets are read in that order): the answer is
 * older than the change and must not be kept. */
START_TEST(an_answer_older_than_an_invalidation_is_not_kept)
{
    struct cfx f = {0};
    cfx_start(&f);
    cfx_cached(&f);
    cfx_write(&f, "v2");
    cfx_run(&f, 0.1);
    cfx_read(&f, false);
    cfx_write(&f, "v3");
    cfx_run(&f, 0.1);
    cfx_fill(&f);
    ck_assert_ptr_null(redis_cache_find(f.cache, ID));
    cfx_stop(&f);
}
END_TEST

/* Killed, the subscriber may have missed invalidations: its reconnect empties the cache,
 * though nothing changed. */
START_TEST(a_lost_subscriber_empties_the_cache)
{
    struct cfx f = {0};
    cfx_start(&f);
    cfx_cached(&f);
    freeReplyObject(redisCommand(f.admin, "CLIENT KILL TYPE pubsub"));
    cfx_run(&f, 0.5);
    ck_assert_ptr_null(redis_cache_find(f.cache, ID));
    ck_assert_uint_eq(redis_cache_size(f.cache), 0);
    cfx_cached(&f); /* and it caches again once tracking is confirmed anew */
    cfx_stop(&f);
}
END_TEST

Suite *
redis_cache_suite(void)
{
    Suite *s = suite_create("redis_cache");
    TCase *tc = tcase_create("tracking");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_write_elsewhere_drops_the_session);
    tcase_add_test(tc, an_answer_older_than_an_invalidation_is_not_kept);
    tcase_add_test(tc, a_lost_subscriber_empties_the_cache);
    suite_add_tcase(s, tc);
    return s;
}
