/* peer_limits: the shared counters and token buckets, in one process and across two. */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "peer_limits.h"
#include "suites.h"

static struct limit_table *
table(void)
{
    struct limit_table *t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(t, MAP_FAILED);
    limit_init(t);
    return t;
}

static void
drop(struct limit_table *t)
{
    munmap(t, sizeof *t);
}

START_TEST(keys)
{
    struct limit_table *t = table();
    uint64_t a = limit_key(t, LIMIT_IP, "\x7f\0\0\x01", 4);
    ck_assert_uint_ne(a, 0);
    ck_assert_uint_eq(a, limit_key(t, LIMIT_IP, "\x7f\0\0\x01", 4));
    ck_assert_uint_ne(a, limit_key(t, LIMIT_USER, "\x7f\0\0\x01", 4));
    ck_assert_uint_ne(a, limit_key(t, LIMIT_IP, "\x7f\0\0\x02", 4));
    ck_assert_uint_ne(limit_key(t, LIMIT_USER, "alice", 5), limit_key(t, LIMIT_USER, "alicf", 5));
    ck_assert_uint_lt(a, UINT64_C(1) << 40);
    /* Another start draws another seed: keys cannot be aimed from outside. */
    struct limit_table *u = table();
    ck_assert_uint_ne(a, limit_key(u, LIMIT_IP, "\x7f\0\0\x01", 4));
    drop(u);
    drop(t);
}
END_TEST

START_TEST(counts_up_to_max)
{
    struct limit_table *t = table();
    uint64_t k = limit_key(t, LIMIT_USER, "bob", 3);
    for (int i = 0; i < 5; i++)
        ck_assert(limit_acquire(t, k, 5));
    ck_assert(!limit_acquire(t, k, 5));
    ck_assert_uint_eq(limit_count(t, k), 5);
    limit_release(t, k);
    ck_assert_uint_eq(limit_count(t, k), 4);
    ck_assert(limit_acquire(t, k, 5));
    ck_assert(!limit_acquire(t, k, 5));
    /* max 0 counts without a limit */
    ck_assert(limit_acquire(t, k, 0));
    ck_assert_uint_eq(limit_count(t, k), 6);
    for (int i = 0; i < 6; i++)
        limit_release(t, k);
    ck_assert_uint_eq(limit_count(t, k), 0);
    limit_release(t, k); /* one too many does not go below zero */
    ck_assert_uint_eq(limit_count(t, k), 0);
    ck_assert(limit_acquire(t, k, 1));
    drop(t);
}
END_TEST

/* Keys that share a home entry: raw keys home + n * LIMIT_ENTRIES. */
START_TEST(full_neighbourhood_fails_open_then_reuses)
{
    struct limit_table *t = table();
    uint64_t home = 77;
    for (uint64_t i = 0; i <= LIMIT_PROBE; i++)
        ck_assert(limit_acquire(t, home + i * LIMIT_ENTRIES, 1));
    uint64_t late = home + (LIMIT_PROBE + 1) * LIMIT_ENTRIES;
    ck_assert(limit_acquire(t, late, 1)); /* no room: allowed, and counted */
    ck_assert(limit_acquire(t, late, 1));
    ck_assert_uint_eq(t->misses, 2);
    ck_assert_uint_eq(limit_count(t, late), 0);
    /* Once one holder lets go, its entry (never rate-limited) is taken over. */
    limit_release(t, home + 3 * LIMIT_ENTRIES);
    ck_assert(limit_acquire(t, late, 1));
    ck_assert(!limit_acquire(t, late, 1));
    ck_assert_uint_eq(limit_count(t, late), 1);
    ck_assert_uint_eq(limit_count(t, home + 3 * LIMIT_ENTRIES), 0);
    drop(t);
}
END_TEST

START_TEST(token_bucket)
{
    struct limit_table *t = table();
    uint64_t k = limit_key(t, LIMIT_IP, "10.0.0.1", 8), now = 5000000;
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(limit_take(t, k, 5, now), 0);
    ck_assert_uint_eq(limit_take(t, k, 5, now), 1); /* Retry-After: 1 */
    ck_assert_uint_eq(limit_take(t, k, 5, now + 100), 1);
    ck_assert_uint_eq(limit_take(t, k, 5, now + 200), 0); /* 5/s: one every 200 ms */
    ck_assert_uint_eq(limit_take(t, k, 5, now + 200), 1);
    now += 10000; /* refilled, but never above the burst */
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(limit_take(t, k, 5, now), 0);
    ck_assert_uint_ne(limit_take(t, k, 5, now), 0);
    /* A slow rate: the wait is whole seconds, rounded up. */
    uint64_t s = limit_key(t, LIMIT_IP, "10.0.0.2", 8);
    ck_assert_uint_eq(limit_take(t, s, 1, now), 0);
    ck_assert_uint_eq(limit_take(t, s, 1, now), 1);
    ck_assert_uint_eq(limit_take(t, s, 1, now + 999), 1);
    ck_assert_uint_eq(limit_take(t, s, 1, now + 1000), 0);
    /* Rate 0 is no limit. */
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(limit_take(t, s, 0, now), 0);
    /* The clock's 32 bits wrap: elapsed time is still right across the wrap. */
    uint64_t w = limit_key(t, LIMIT_IP, "10.0.0.3", 8), edge = UINT64_C(0xffffffff) - 50;
    ck_assert_uint_eq(limit_take(t, w, 1, edge), 0);
    ck_assert_uint_eq(limit_take(t, w, 1, edge + 500), 1);
    ck_assert_uint_eq(limit_take(t, w, 1, edge + 1000), 0);
    drop(t);
}
END_TEST

/* Two processes hammer one key: no count is lost and the limit is never exceeded. */
START_TEST(shared_between_processes)
{
    struct limit_table *t = table();
    uint64_t k = limit_key(t, LIMIT_USER, "shared", 6);
    pid_t kids[2];
    for (int p = 0; p < 2; p++) {
        kids[p] = fork();
        ck_assert_int_ge(kids[p], 0);
        if (kids[p] == 0) {
            int over = 0;
            for (int i = 0; i < 200000; i++) {
                if (limit_acquire(t, k, 3)) {
                    over += limit_count(t, k) > 3;
                    limit_release(t, k);
                }
            }
            _exit(over == 0 ? 0 : 1);
        }
    }
    for (int p = 0; p < 2; p++) {
        int st;
        ck_assert_int_eq(waitpid(kids[p], &st, 0), kids[p]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    ck_assert_uint_eq(limit_count(t, k), 0);
    drop(t);
}
END_TEST

Suite *
limits_suite(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, keys);
    tcase_add_test(tc, counts_up_to_max);
    tcase_add_test(tc, full_neighbourhood_fails_open_then_reuses);
    tcase_add_test(tc, token_bucket);
    tcase_add_test(tc, shared_between_processes);
    suite_add_tcase(s, tc);
    return s;
}
