/* The shared Redis connection (common/redis.c) against a real redis-server, started by
 * each test on a free loopback port with nothing saved, and killed by pid at its end. */
#include <ev.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"
#include "redis_server.h"
#include "suites.h"

struct rfx {
    struct test_redis redis;
    struct ev_loop *loop;
    int replies;
    bool got_null;
    char last[64];
};

/* A blocking connection for the test's own look at the server. */
static redisContext *
rfx_admin(const struct rfx *f)
{
    struct timeval tv = {.tv_sec = 1};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", f->redis.port, tv);
    ck_assert(c != NULL && c->err == 0);
    return c;
}

static long long
rfx_int(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void
rfx_start(struct rfx *f)
{
    test_redis_start(&f->redis, NULL);
    f->loop = ev_loop_new(EVFLAG_AUTO);
}

static void
rfx_stop(struct rfx *f)
{
    test_redis_stop(&f->redis);
    ev_loop_destroy(f->loop);
}

static void
rfx_on_reply(void *arg, const struct redisReply *r)
{
    struct rfx *f = arg;
    f->replies++;
    f->got_null = r == NULL;
    if (r != NULL && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING ||
                      r->type == REDIS_REPLY_ERROR))
        snprintf(f->last, sizeof f->last, "%.*s", (int)r->len, r->str);
    else if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        snprintf(f->last, sizeof f->last, "%lld", r->integer);
}

/* Run the loop until done() or seconds pass; whether done() came true. */
static bool
rfx_run(struct rfx *f, struct redis_conn *rc, bool (*done)(struct rfx *, struct redis_conn *),
        double seconds)
{
    ev_tstamp end = ev_time() + seconds;
    while (!done(f, rc) && ev_time() < end) {
        ev_now_update(f->loop);
        ev_run(f->loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    return done(f, rc);
}

static bool
rfx_ready(struct rfx *f, struct redis_conn *rc)
{
    (void)f;
    return redis_ready(rc);
}

static bool
rfx_answered(struct rfx *f, struct redis_conn *rc)
{
    (void)rc;
    return f->replies > 0;
}

static struct redis_conn *
rfx_open(struct rfx *f, int db, double timeout, bool circuit)
{
    char url[64], err[256];
    struct redis_url u;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/%d", f->redis.port, db);
    ck_assert_int_eq(redis_url_parse(url, &u, err, sizeof err), 0);
    struct redis_opts o = {.timeout = timeout, .circuit = circuit};
    struct redis_conn *rc = redis_open(f->loop, &u, &o, err, sizeof err);
    ck_assert_ptr_nonnull(rc);
    ck_assert(rfx_run(f, rc, rfx_ready, 5.0));
    return rc;
}

START_TEST(script_sha_is_sha1_of_body)
{
    struct redis_script s;
    char err[128];
    ck_assert_int_eq(redis_script_init(&s, "return 1", err, sizeof err), 0);
    ck_assert_str_eq(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}
END_TEST

/* Nothing loaded the script: EVALSHA meets NOSCRIPT, EVAL follows, and the caller sees
 * only the script's answer; again after SCRIPT FLUSH. The key lands in the URL's db. */
START_TEST(noscript_falls_back_to_eval_in_the_urls_db)
{
    struct rfx f = {0};
    struct redis_script s;
    char err[128];
    rfx_start(&f);
    ck_assert_int_eq(redis_script_init(&s, "return redis.call('INCR', KEYS[1])", err, sizeof err),
                     0);
    struct redis_conn *rc = rfx_open(&f, 3, 2.0, false);
    const char *argv[] = {"k"};
    size_t len[] = {1};
    for (int round = 1; round <= 2; round++) {
        f.replies = 0;
        ck_assert_int_eq(redis_eval(rc, &s, rfx_on_reply, &f, 1, 1, argv, len), 0);
        ck_assert(rfx_run(&f, rc, rfx_answered, 5.0));
        ck_assert_int_eq(f.replies, 1);
        ck_assert_str_eq(f.last, round == 1 ? "1" : "2");
        redisContext *c = rfx_admin(&f);
        freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
        ck_assert_int_eq(rfx_int(c, "DBSIZE"), 0);
        freeReplyObject(redisCommand(c, "SELECT 3"));
        ck_assert_int_eq(rfx_int(c, "DBSIZE"), 1);
        redisFree(c);
    }
    redis_close(rc);
    rfx_stop(&f);
}
END_TEST

/* A replicated write on a Redis without replicas: the script runs, WAIT counts 0 of 1,
 * and the caller gets NULL once, with the count in the cause, before the deadline and
 * with the connection kept. Also when EVALSHA meets NOSCRIPT first (every round here,
 * since nothing loads the script): WAIT follows the EVAL, not the refused EVALSHA. */
START_TEST(replicated_eval_waits_and_says_how_many)
{
    struct rfx f = {0};
    struct redis_script s;
    char err[128];
    rfx_start(&f);
    ck_assert_int_eq(redis_script_init(&s, "return redis.call('INCR', KEYS[1])", err, sizeof err),
                     0);
    struct redis_conn *rc = rfx_open(&f, 0, 0.5, true);
    const char *argv[] = {"k"};
    size_t len[] = {1};
    for (int round = 1; round <= 2; round++) {
        f.replies = 0;
        ev_tstamp t0 = ev_time();
        ck_assert_int_eq(redis_eval_replicated(rc, &s, 1, rfx_on_reply, &f, 1, 1, argv, len), 0);
        ck_assert(rfx_run(&f, rc, rfx_answered, 5.0));
        ev_tstamp took = ev_time() - t0;
        ck_assert_msg(took > 0.25 && took < 0.5, "answered after %.3f s", took);
        rfx_run(&f, rc, rfx_answered, 0.2); /* a second callback would come meanwhile */
        ck_assert_int_eq(f.replies, 1);
        ck_assert(f.got_null);
        ck_assert_ptr_nonnull(strstr(redis_cause(rc), "WAIT: 0 of 1 replicas had the write"));
        ck_assert(redis_ready(rc));
        ck_assert_int_eq(redis_circuit(rc), REDIS_CLOSED);
        redisContext *c = rfx_admin(&f);
        ck_assert_int_eq(rfx_int(c, "INCRBY k 0"), round); /* the write itself was made */
        freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
        redisFree(c);
    }
    /* Without replicas asked for, the same script answers at once. */
    f.replies = 0;
    ck_assert_int_eq(redis_eval_replicated(rc, &s, 0, rfx_on_reply, &f, 1, 1, argv, len), 0);
    ck_assert(rfx_run(&f, rc, rfx_answered, 5.0));
    ck_assert(!f.got_null);
    ck_assert_str_eq(f.last, "3");
    redis_close(rc);
    rfx_stop(&f);
}
END_TEST

/* A stalled Redis (SIGSTOP) answers nothing: at the deadline the callback gets NULL at
 * once, the circuit opens, and after SIGCONT the connection and the circuit come back. */
START_TEST(deadline_ends_in_a_hard_disconnect)
{
    struct rfx f = {0};
    rfx_start(&f);
    struct redis_conn *rc = rfx_open(&f, 0, 0.3, true);
    ck_assert_int_eq(kill(f.redis.pid, SIGSTOP), 0);
    const char *argv[] = {"PING"};
    size_t len[] = {4};
    ck_assert_int_eq(redis_command(rc, rfx_on_reply, &f, 1, argv, len), 0);
    ck_assert(rfx_run(&f, rc, rfx_answered, 3.0));
    ck_assert(f.got_null);
    ck_assert(!redis_ready(rc));
    ck_assert_int_eq(redis_circuit(rc), REDIS_OPEN);
    ck_assert_ptr_nonnull(strstr(redis_cause(rc), "no reply within 300 ms"));
    ck_assert_int_eq(kill(f.redis.pid, SIGCONT), 0);
    ck_assert(rfx_run(&f, rc, rfx_ready, 10.0));
    redis_close(rc);
    rfx_stop(&f);
}
END_TEST

Suite *
redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("conn");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, script_sha_is_sha1_of_body);
    tcase_add_test(tc, noscript_falls_back_to_eval_in_the_urls_db);
    tcase_add_test(tc, replicated_eval_waits_and_says_how_many);
    tcase_add_test(tc, deadline_ends_in_a_hard_disconnect);
    suite_add_tcase(s, tc);
    return s;
}
