/* roster: the instance-wide registry of connections and channel members. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "roster.h"
#include "suites.h"

struct lfx {
    char dir[64];
    struct conf c;
    struct roster *l;
};

static void
lfx_setup(struct lfx *f)
{
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-roster-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    conf_defaults(&f->c);
    snprintf(f->c.store_path, sizeof f->c.store_path, "%s/s.db", f->dir);
    ck_assert_int_eq(roster_prepare(&f->c, true, err, sizeof err), 0);
    f->l = roster_open(&f->c, err, sizeof err);
    ck_assert_msg(f->l != NULL, "%s", err);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
lfx_teardown(struct lfx *f)
{
    roster_close(f->l);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static struct roster_member
member(const char *conn, const char *user)
{
    struct roster_member m;
    snprintf(m.conn, sizeof m.conn, "%s", conn);
    snprintf(m.user, sizeof m.user, "%s", user);
    snprintf(m.session, sizeof m.session, "sess-%s", conn);
    return m;
}

struct seen {
    int n;
    char conns[16][ROSTER_CONN_MAX + 1];
};

static void
collect(void *arg, const struct roster_member *m)
{
    struct seen *s = arg;
    ck_assert_str_eq(m->session + 5, m->conn);
    snprintf(s->conns[s->n++], ROSTER_CONN_MAX + 1, "%s", m->conn);
}

static bool
listed(struct roster *l, const char *ch, const char *conn)
{
    struct seen s = {0};
    ck_assert_int_ge(roster_members(l, ch, strlen(ch), 16, collect, &s), 0);
    for (int i = 0; i < s.n; i++)
        if (strcmp(s.conns[i], conn) == 0)
            return true;
    return false;
}

START_TEST(per_user_limit)
{
    struct lfx f;
    lfx_setup(&f);
    ck_assert_int_eq(roster_connect(f.l, 0, "0.a.1", "u", 2), 1);
    ck_assert_int_eq(roster_connect(f.l, 1, "1.b.1", "u", 2), 1);
    ck_assert_int_eq(roster_connect(f.l, 1, "1.b.2", "u", 2), 0); /* a third: refused */
    ck_assert_int_eq(roster_connect(f.l, 1, "1.b.3", "v", 2), 1); /* someone else */
    roster_disconnect(f.l, 0, "0.a.1");
    ck_assert_int_eq(roster_connect(f.l, 1, "1.b.2", "u", 2), 1); /* room again */
    lfx_teardown(&f);
}
END_TEST

START_TEST(members_and_counts)
{
    struct lfx f;
    lfx_setup(&f);
    struct roster_member a = member("0.a.1", "alice"), b = member("1.b.1", "bob");
    size_t n;
    ck_assert_int_eq(roster_join(f.l, 0, "room", 4, &a, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(roster_join(f.l, 0, "room", 4, &a, &n), 0); /* twice is once */
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(roster_join(f.l, 1, "room", 4, &b, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(roster_join(f.l, 1, "hall", 4, &b, &n), 0);
    ck_assert_uint_eq(roster_count(f.l, "room", 4), 2);
    ck_assert(listed(f.l, "room", "0.a.1") && listed(f.l, "room", "1.b.1"));
    ck_assert_int_eq(roster_leave(f.l, 0, "room", 4, &a, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert(!listed(f.l, "room", "0.a.1"));
    ck_assert_uint_eq(roster_count(f.l, "nowhere", 7), 0);
    lfx_teardown(&f);
}
END_TEST

/* A disconnect takes the connection's memberships with it, and only its own: an id that
 * another id starts with is not confused with it. */
START_TEST(disconnect_takes_memberships)
{
    struct lfx f;
    lfx_setup(&f);
    struct roster_member a = member("0.a.1", "u"), a12 = member("0.a.12", "u");
    size_t n;
    ck_assert_int_eq(roster_connect(f.l, 0, a.conn, "u", 5), 1);
    ck_assert_int_eq(roster_connect(f.l, 0, a12.conn, "u", 5), 1);
    ck_assert_int_eq(roster_join(f.l, 0, "x", 1, &a, &n), 0);
    ck_assert_int_eq(roster_join(f.l, 0, "y", 1, &a, &n), 0);
    ck_assert_int_eq(roster_join(f.l, 0, "x", 1, &a12, &n), 0);
    roster_disconnect(f.l, 0, a.conn);
    ck_assert_uint_eq(roster_count(f.l, "x", 1), 1);
    ck_assert(listed(f.l, "x", "0.a.12"));
    ck_assert_uint_eq(roster_count(f.l, "y", 1), 0);
    ck_assert_int_eq(roster_connect(f.l, 0, "0.a.13", "u", 2), 1); /* u holds one now */
    lfx_teardown(&f);
}
END_TEST

/* A dead worker's entries go, all of them, and nobody else's. */
START_TEST(purge_slot)
{
    struct lfx f;
    lfx_setup(&f);
    size_t n;
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof id, "%d.p.%d", i % 2, i);
        struct roster_member m = member(id, i % 2 ? "odd" : "even");
        ck_assert_int_eq(roster_connect(f.l, i % 2, id, m.user, 100), 1);
        ck_assert_int_eq(roster_join(f.l, i % 2, "all", 3, &m, &n), 0);
    }
    ck_assert_uint_eq(roster_count(f.l, "all", 3), 50);
    ck_assert_int_eq(roster_purge_slot(f.l, 1), 50); /* 25 connections, 25 memberships */
    ck_assert_uint_eq(roster_count(f.l, "all", 3), 25);
    ck_assert_int_eq(roster_connect(f.l, 1, "1.q.1", "odd", 1), 1);  /* odd holds none now */
    ck_assert_int_eq(roster_connect(f.l, 0, "0.q.1", "even", 25), 0); /* even still 25 */
    ck_assert_int_eq(roster_purge_slot(f.l, 7), 0);
    lfx_teardown(&f);
}
END_TEST

/* The master empties the registry at start, not on a reload. */
START_TEST(prepare_fresh)
{
    struct lfx f;
    char err[256];
    lfx_setup(&f);
    ck_assert_int_eq(roster_connect(f.l, 0, "0.a.1", "u", 1), 1);
    ck_assert_int_eq(roster_prepare(&f.c, false, err, sizeof err), 0);
    ck_assert_int_eq(roster_connect(f.l, 0, "0.a.2", "u", 1), 0);
    ck_assert_int_eq(roster_prepare(&f.c, true, err, sizeof err), 0);
    ck_assert_int_eq(roster_connect(f.l, 0, "0.a.2", "u", 1), 1);
    lfx_teardown(&f);
}
END_TEST

Suite *
roster_suite(void)
{
    Suite *s = suite_create("roster");
    TCase *tc = tcase_create("roster");
    tcase_add_test(tc, per_user_limit);
    tcase_add_test(tc, members_and_counts);
    tcase_add_test(tc, disconnect_takes_memberships);
    tcase_add_test(tc, purge_slot);
    tcase_add_test(tc, prepare_fresh);
    suite_add_tcase(s, tc);
    return s;
}
