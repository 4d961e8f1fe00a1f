/* hub: channel names and the bookkeeping of who listens where. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "suites.h"

static size_t
count(const struct hub *h, const char *name)
{
    size_t n;
    hub_members(h, name, strlen(name), &n);
    return n;
}

/* Whether sub is among the members of name; hub_subs, what a fan-out walks, must say
 * the same as the memberships, in the same order. */
static bool
has(const struct hub *h, const char *name, void *sub)
{
    size_t n, ns;
    struct hub_member *const *m = hub_members(h, name, strlen(name), &n);
    void *const *subs = hub_subs(h, name, strlen(name), &ns);
    ck_assert_uint_eq(ns, n);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        ck_assert_ptr_eq(subs[i], hub_member_sub(m[i]));
        found = found || subs[i] == sub;
    }
    return found;
}

START_TEST(join_and_leave)
{
    struct hub *h = hub_new();
    int a, b, c;
    struct hub_member *ma = hub_join(h, "r", 1, &a);
    struct hub_member *mb = hub_join(h, "r", 1, &b);
    struct hub_member *mc = hub_join(h, "s", 1, &c);
    ck_assert_ptr_nonnull(ma);
    ck_assert_uint_eq(count(h, "r"), 2);
    ck_assert_uint_eq(count(h, "s"), 1);
    ck_assert_uint_eq(count(h, "t"), 0);
    ck_assert_uint_eq(hub_nchannels(h), 2);
    size_t len;
    ck_assert_int_eq(memcmp(hub_member_channel(mc, &len), "s", 1), 0);
    ck_assert_uint_eq(len, 1);

    hub_leave(h, ma); /* the last member moves into the hole */
    ck_assert_uint_eq(count(h, "r"), 1);
    ck_assert(has(h, "r", &b) && !has(h, "r", &a));
    hub_leave(h, mb); /* an empty channel goes */
    ck_assert_uint_eq(hub_nchannels(h), 1);
    ck_assert_uint_eq(count(h, "r"), 0);
    hub_leave(h, mc);
    ck_assert_uint_eq(hub_nchannels(h), 0);
    hub_free(h);
}
END_TEST

/* Many channels (the table grows) and many members per channel, left in an order other
 * than the one they joined in: every index stays right. */
START_TEST(many)
{
    enum { NCHAN = 1000, NSUB = 50 };
    struct hub *h = hub_new();
    static struct hub_member *m[NCHAN][NSUB];
    static int subs[NSUB];
    char name[16];
    for (int c = 0; c < NCHAN; c++) {
        snprintf(name, sizeof name, "ch%d", c);
        for (int s = 0; s < NSUB; s++)
            ck_assert_ptr_nonnull(m[c][s] = hub_join(h, name, strlen(name), &subs[s]));
    }
    ck_assert_uint_eq(hub_nchannels(h), NCHAN);
    for (int c = 0; c < NCHAN; c++)
        for (int s = 0; s < NSUB; s += 2) /* the even ones leave, from the front */
            hub_leave(h, m[c][s]);
    for (int c = 0; c < NCHAN; c++) {
        snprintf(name, sizeof name, "ch%d", c);
        ck_assert_uint_eq(count(h, name), NSUB / 2);
        for (int s = 0; s < NSUB; s++)
            ck_assert(has(h, name, &subs[s]) == (s % 2 == 1));
    }
    for (int c = 0; c < NCHAN; c++)
        for (int s = NSUB - 1; s >= 1; s -= 2) /* the odd ones, from the back */
            hub_leave(h, m[c][s]);
    ck_assert_uint_eq(hub_nchannels(h), 0);
    hub_free(h);
}
END_TEST

static void
count_channel(void *arg, const char *name, size_t len)
{
    (void)name;
    ck_assert_uint_gt(len, 0);
    (*(size_t *)arg)++;
}

START_TEST(each_channel)
{
    struct hub *h = hub_new();
    int a;
    char name[16];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "c%d", i);
        ck_assert_ptr_nonnull(hub_join(h, name, strlen(name), &a));
    }
    size_t n = 0;
    hub_each_channel(h, count_channel, &n);
    ck_assert_uint_eq(n, 300);
    hub_free(h);
}
END_TEST

/* hub_free takes whatever memberships are left. (Under ASan this is a leak check.) */
START_TEST(free_with_members)
{
    struct hub *h = hub_new();
    int a;
    ck_assert_ptr_nonnull(hub_join(h, "x", 1, &a));
    ck_assert_ptr_nonnull(hub_join(h, "y", 1, &a));
    hub_free(h);
}
END_TEST

Suite *
hub_suite(void)
{
    Suite *s = suite_create("hub");
    TCase *tc = tcase_create("hub");
    tcase_add_test(tc, join_and_leave);
    tcase_add_test(tc, many);
    tcase_add_test(tc, free_with_members);
    tcase_add_test(tc, each_channel);
    suite_add_tcase(s, tc);
    return s;
}
