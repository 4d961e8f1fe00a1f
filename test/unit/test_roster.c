/* roster: the registry of connections and channel members, through roster.h, against
 * each engine: lmdb (answers at once) and redis (a redis-server of the test's own on a
 * free loopback port, a libev loop driven until the answers come). Two rosters stand for
 * two workers of one instance: slots 0 and 1. */
#include <ev.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "pubsub.h"
#include "redis_server.h"
#include "roster.h"
#include "scoreboard.h"
#include "suites.h"

enum { LMDB, REDIS };

struct rfx {
    int engine;
    char dir[64];
    struct conf c;
    struct ev_loop *loop;
    struct scoreboard *sb;
    struct test_redis redis;
    struct pubsub *ps[2];
    struct roster *l[2];
};

/* ---- driving the loop ---- */

struct answer {
    bool done;
    int rc;
    size_t count;
};

static void
on_admit(void *arg, int rc)
{
    struct answer *a = arg;
    *a = (struct answer){.done = true, .rc = rc};
}

static void
on_count(void *arg, int rc, size_t count)
{
    struct answer *a = arg;
    *a = (struct answer){.done = true, .rc = rc, .count = count};
}

static void
on_pong(void *arg, const struct redisReply *reply)
{
    struct answer *a = arg;
    *a = (struct answer){.done = true, .rc = reply != NULL ? 0 : -1};
}

/* Run the loop until a is answered; the lmdb engine must have answered already. */
static void
await(struct rfx *f, struct answer *a)
{
    if (f->engine == LMDB)
        ck_assert_msg(a->done, "the lmdb engine answers at once");
    for (time_t end = time(NULL) + 5; !a->done; ev_run(f->loop, EVRUN_ONCE))
        ck_assert_msg(time(NULL) <= end, "no answer within 5 s");
}

static void
ignore_msg(void *arg, const char *name, size_t len, const char *msg, size_t msg_len)
{
    (void)arg, (void)name, (void)len, (void)msg, (void)msg_len;
}

static void
ignore_ready(void *arg)
{
    (void)arg;
}

/* A pubsub connection that has answered a PING. */
static struct pubsub *
connected(struct rfx *f)
{
    char url[64], err[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", f->redis.port);
    struct pubsub *ps = pubsub_open(f->loop, url, "test:", 2.0, ignore_msg, ignore_ready, NULL,
                                    err, sizeof err);
    ck_assert_msg(ps != NULL, "%s", err);
    const char *argv[] = {"PING"};
    size_t argvlen[] = {4};
    struct answer a = {0};
    for (time_t end = time(NULL) + 5; pubsub_command(ps, on_pong, &a, 1, argv, argvlen) < 0;
         ev_run(f->loop, EVRUN_NOWAIT))
        ck_assert_msg(time(NULL) <= end, "pubsub did not connect within 5 s");
    f->engine = REDIS;
    await(f, &a);
    ck_assert_int_eq(a.rc, 0);
    return ps;
}

/* Wait until Redis has done what worker w sent so far (a PING behind it). */
static void
settle(struct rfx *f, int w)
{
    if (f->engine == LMDB)
        return;
    const char *argv[] = {"PING"};
    size_t argvlen[] = {4};
    struct answer a = {0};
    ck_assert_int_eq(pubsub_command(f->ps[w], on_pong, &a, 1, argv, argvlen), 0);
    await(f, &a);
}

/* ---- the fixture ---- */

static void
rfx_setup(struct rfx *f, int engine)
{
    char err[256];
    memset(f, 0, sizeof *f);
    f->engine = engine;
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-roster-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    conf_defaults(&f->c);
    snprintf(f->c.store_path, sizeof f->c.store_path, "%s/s.db", f->dir);
    ck_assert_int_eq(roster_prepare(&f->c, true, err, sizeof err), 0);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->sb = calloc(1, sizeof *f->sb);
    ck_assert(f->loop != NULL && f->sb != NULL);
    f->sb->instance_nonce = 0x1234abcd;
    if (engine == REDIS) {
        test_redis_start(&f->redis, f->dir);
    }
    for (int i = 0; i < 2; i++) {
        f->ps[i] = engine == REDIS ? connected(f) : NULL;
        struct roster_params p = {.conf = &f->c, .slot = i, .pid = 100u + (unsigned)i,
                                  .ps = f->ps[i], .sb = f->sb};
        f->l[i] = roster_open(&p, err, sizeof err);
        ck_assert_msg(f->l[i] != NULL, "%s", err);
        ck_assert_str_eq(roster_engine(f->l[i]), engine == REDIS ? "redis" : "lmdb");
        roster_tick(f->l[i]); /* as a worker does when Redis is ready: its lease */
        settle(f, i);
    }
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void
rfx_teardown(struct rfx *f)
{
    for (int i = 0; i < 2; i++) {
        pubsub_close(f->ps[i]);
        roster_close(f->l[i]);
    }
    test_redis_stop(&f->redis);
    ev_loop_destroy(f->loop);
    free(f->sb);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- the calls, each awaited ---- */

static int
connect_as(struct rfx *f, int w, const char *conn, const char *user, int max)
{
    struct answer a = {0};
    roster_connect(f->l[w], conn, user, max, on_admit, &a);
    await(f, &a);
    return a.rc;
}

static size_t
member_op(struct rfx *f, int w, bool join, const char *ch, const char *conn, const char *user)
{
    struct roster_member m;
    snprintf(m.conn, sizeof m.conn, "%s", conn);
    snprintf(m.user, sizeof m.user, "%s", user);
    snprintf(m.session, sizeof m.session, "sess-%s", conn);
    struct answer a = {0};
    if (join)
        roster_join(f->l[w], ch, strlen(ch), &m, on_count, &a);
    else
        roster_leave(f->l[w], ch, strlen(ch), &m, on_count, &a);
    await(f, &a);
    ck_assert_int_eq(a.rc, 0);
    return a.count;
}

struct seen {
    struct answer a;
    int n;
    char conns[64][ROSTER_CONN_MAX + 1];
};

static void
collect(void *arg, const struct roster_member *m)
{
    struct seen *s = arg;
    ck_assert_str_eq(m->session + 5, m->conn);
    ck_assert_int_lt(s->n, 64);
    snprintf(s->conns[s->n++], ROSTER_CONN_MAX + 1, "%s", m->conn);
}

static void
collected(void *arg, int rc)
{
    struct seen *s = arg;
    s->a.done = true;
    s->a.rc = rc;
}

static bool
listed(struct rfx *f, const char *ch, const char *conn)
{
    struct seen s = {0};
    roster_members(f->l[0], ch, strlen(ch), 64, collect, collected, &s);
    await(f, &s.a);
    ck_assert_int_eq(s.a.rc, 0);
    for (int i = 0; i < s.n; i++)
        if (strcmp(s.conns[i], conn) == 0)
            return true;
    return false;
}

/* ---- the tests, for each engine (_i) ---- */

START_TEST(per_user_limit)
{
    struct rfx f;
    rfx_setup(&f, _i);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.1", "u", 2), 1);
    ck_assert_int_eq(connect_as(&f, 1, "1.65.1", "u", 2), 1);
    ck_assert_int_eq(connect_as(&f, 1, "1.65.2", "u", 2), 0); /* a third: refused */
    ck_assert_int_eq(connect_as(&f, 1, "1.65.3", "v", 2), 1); /* someone else */
    roster_disconnect(f.l[0], "0.64.1", "u");
    settle(&f, 0);
    ck_assert_int_eq(connect_as(&f, 1, "1.65.2", "u", 2), 1); /* room again */
    rfx_teardown(&f);
}
END_TEST

START_TEST(members_and_counts)
{
    struct rfx f;
    rfx_setup(&f, _i);
    ck_assert_uint_eq(member_op(&f, 0, true, "room", "0.64.1", "alice"), 1);
    ck_assert_uint_eq(member_op(&f, 0, true, "room", "0.64.1", "alice"), 1); /* twice: once */
    ck_assert_uint_eq(member_op(&f, 1, true, "room", "1.65.1", "bob"), 2);
    member_op(&f, 1, true, "hall", "1.65.1", "bob");
    ck_assert_uint_eq(roster_count(f.l[0], "room", 4), 2);
    ck_assert(listed(&f, "room", "0.64.1") && listed(&f, "room", "1.65.1"));
    ck_assert_uint_eq(member_op(&f, 0, false, "room", "0.64.1", "alice"), 1);
    ck_assert(!listed(&f, "room", "0.64.1"));
    ck_assert_uint_eq(roster_count(f.l[0], "nowhere", 7), 0);
    ck_assert(!listed(&f, "nowhere", "0.64.1"));
    rfx_teardown(&f);
}
END_TEST

/* A disconnect takes the connection's memberships with it, and only its own: an id that
 * another id starts with is not confused with it. */
START_TEST(disconnect_takes_memberships)
{
    struct rfx f;
    rfx_setup(&f, _i);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.1", "u", 5), 1);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.12", "u", 5), 1);
    member_op(&f, 0, true, "x", "0.64.1", "u");
    member_op(&f, 0, true, "y", "0.64.1", "u");
    member_op(&f, 0, true, "x", "0.64.12", "u");
    roster_disconnect(f.l[0], "0.64.1", "u");
    ck_assert_uint_eq(roster_count(f.l[0], "x", 1), 1);
    ck_assert(listed(&f, "x", "0.64.12"));
    ck_assert_uint_eq(roster_count(f.l[0], "y", 1), 0);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.13", "u", 2), 1); /* u holds one now */
    rfx_teardown(&f);
}
END_TEST

/* A dead worker's entries go, all of them, and nobody else's: the master purges its
 * slot of the instance's file; with Redis, every worker also ends its lease. */
START_TEST(dead_worker_purged)
{
    struct rfx f;
    rfx_setup(&f, _i);
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "%d.%x.%d", i % 2, 100 + i % 2, i);
        ck_assert_int_eq(connect_as(&f, i % 2, id, i % 2 ? "odd" : "even", 100), 1);
        member_op(&f, i % 2, true, "all", id, i % 2 ? "odd" : "even");
    }
    ck_assert_uint_eq(roster_count(f.l[0], "all", 3), 20);
    ck_assert(listed(&f, "all", "1.65.1"));
    ck_assert_int_eq(roster_purge_slot(f.l[0], 1), 20); /* 10 connections, 10 memberships */
    f.sb->dead_slot[0] = 1;
    f.sb->dead_pid[0] = 101;
    f.sb->dead_count = 1;
    roster_tick(f.l[0]);
    ck_assert_uint_eq(roster_count(f.l[0], "all", 3), 10);
    ck_assert(!listed(&f, "all", "1.65.1"));
    ck_assert(listed(&f, "all", "0.64.0"));
    ck_assert_int_eq(connect_as(&f, 0, "0.64.99", "odd", 1), 1);  /* odd holds none now */
    ck_assert_int_eq(connect_as(&f, 0, "0.64.98", "even", 10), 0); /* even still 10 */
    ck_assert_int_eq(roster_purge_slot(f.l[0], 7), 0);
    rfx_teardown(&f);
}
END_TEST

/* The master empties the registry at start, not on a reload. */
START_TEST(prepare_fresh)
{
    struct rfx f;
    char err[256];
    rfx_setup(&f, LMDB);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.1", "u", 1), 1);
    ck_assert_int_eq(roster_prepare(&f.c, false, err, sizeof err), 0);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.2", "u", 1), 0);
    ck_assert_int_eq(roster_prepare(&f.c, true, err, sizeof err), 0);
    ck_assert_int_eq(connect_as(&f, 0, "0.64.2", "u", 1), 1);
    rfx_teardown(&f);
}
END_TEST

Suite *
roster_suite(void)
{
    Suite *s = suite_create("roster");
    TCase *tc = tcase_create("roster");
    tcase_add_test(tc, prepare_fresh);
    tcase_add_loop_test(tc, per_user_limit, LMDB, REDIS + 1);
    tcase_add_loop_test(tc, members_and_counts, LMDB, REDIS + 1);
    tcase_add_loop_test(tc, disconnect_takes_memberships, LMDB, REDIS + 1);
    tcase_add_loop_test(tc, dead_worker_purged, LMDB, REDIS + 1);
    suite_add_tcase(s, tc);
    return s;
}
