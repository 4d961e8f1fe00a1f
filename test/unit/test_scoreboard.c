/* scoreboard: slots, status and histogram counting, and totals that survive a worker. */
#include <sys/wait.h>
#include <unistd.h>

#include "scoreboard.h"
#include "suites.h"

START_TEST(claim_and_release)
{
    struct scoreboard *sb = sb_create();
    ck_assert_ptr_nonnull(sb);
    int a = sb_claim(sb, 0, 1), b = sb_claim(sb, 1, 1);
    ck_assert_int_ne(a, b);
    ck_assert_uint_eq(sb_get(&sb->slot[a].state), SB_STARTING);
    ck_assert_uint_eq(sb_get(&sb->slot[b].id), 1);
    ck_assert_uint_eq(sb_get(&sb->slot[b].generation), 1);
    sb_release(sb, a);
    ck_assert_uint_eq(sb_get(&sb->slot[a].state), SB_FREE);
    ck_assert_int_eq(sb_claim(sb, 2, 1), a); /* the freed slot is reused */
    sb_destroy(sb);
}
END_TEST

START_TEST(slots_run_out)
{
    struct scoreboard *sb = sb_create();
    for (int i = 0; i < SB_SLOTS; i++)
        ck_assert_int_eq(sb_claim(sb, i, 0), i);
    ck_assert_int_eq(sb_claim(sb, 0, 0), -1);
    sb_destroy(sb);
}
END_TEST

START_TEST(status_buckets)
{
    ck_assert_int_eq(sb_status_code(sb_status_index(200)), 200);
    ck_assert_int_eq(sb_status_code(sb_status_index(431)), 431);
    ck_assert_int_eq(sb_status_index(418), SB_STATUS_OTHER);
    ck_assert_int_eq(sb_status_code(SB_STATUS_OTHER), 0);
}
END_TEST

START_TEST(histogram_buckets)
{
    struct scoreboard *sb = sb_create();
    int s = sb_claim(sb, 0, 0);
    struct sb_slot *slot = &sb->slot[s];
    sb_count_request(slot, 200, 50);      /* <= 100 us: bucket 0 */
    sb_count_request(slot, 200, 100);     /* exactly the bound: still bucket 0 */
    sb_count_request(slot, 404, 101);     /* bucket 1 (<= 250 us) */
    sb_count_request(slot, 500, 9000000); /* beyond 2.5 s: +Inf */
    ck_assert_uint_eq(slot->c.hist[0], 2);
    ck_assert_uint_eq(slot->c.hist[1], 1);
    ck_assert_uint_eq(slot->c.hist[SB_NHIST], 1);
    ck_assert_uint_eq(slot->c.requests, 4);
    ck_assert_uint_eq(slot->c.status[sb_status_index(200)], 2);
    ck_assert_uint_eq(slot->c.duration_us_sum, 50 + 100 + 101 + 9000000);
    sb_destroy(sb);
}
END_TEST

START_TEST(totals_survive_a_released_worker)
{
    struct scoreboard *sb = sb_create();
    int a = sb_claim(sb, 0, 0), b = sb_claim(sb, 1, 0);
    for (int i = 0; i < 5; i++)
        sb_count_request(&sb->slot[a], 200, 10);
    for (int i = 0; i < 3; i++)
        sb_count_request(&sb->slot[b], 404, 10);
    struct sb_counters t;
    sb_sum_counters(sb, &t);
    ck_assert_uint_eq(t.requests, 8);
    sb_release(sb, a); /* the worker died: its counts move to retired */
    sb_sum_counters(sb, &t);
    ck_assert_uint_eq(t.requests, 8);
    ck_assert_uint_eq(t.status[sb_status_index(200)], 5);
    int c = sb_claim(sb, 0, 0); /* its replacement starts from zero */
    ck_assert_uint_eq(sb->slot[c].c.requests, 0);
    sb_count_request(&sb->slot[c], 200, 10);
    sb_sum_counters(sb, &t);
    ck_assert_uint_eq(t.requests, 9);
    sb_destroy(sb);
}
END_TEST

/* The dead are noted, oldest overwritten past SB_DEAD_RING, for workers to clean up after. */
START_TEST(dead_workers_are_noted)
{
    struct scoreboard *sb = sb_create();
    ck_assert_ptr_nonnull(sb);
    ck_assert_uint_ne(sb->instance_nonce, 0);
    for (uint64_t i = 0; i < SB_DEAD_RING + 3; i++) {
        int slot = sb_claim(sb, 0, 0);
        sb_set(&sb->slot[slot].pid, 1000 + i);
        sb_release(sb, slot);
    }
    ck_assert_uint_eq(sb->dead_count, SB_DEAD_RING + 3);
    uint64_t last = SB_DEAD_RING + 2;
    ck_assert_uint_eq(sb->dead_pid[last % SB_DEAD_RING], 1000 + last);
    ck_assert_uint_eq(sb->dead_pid[3 % SB_DEAD_RING], 1000 + 3);
    ck_assert_uint_eq(sb->dead_slot[last % SB_DEAD_RING], 0);
    ck_assert_uint_eq(sb->slot[0].pid, 0);
    sb_destroy(sb);
}
END_TEST

START_TEST(shared_across_fork)
{
    struct scoreboard *sb = sb_create();
    int s = sb_claim(sb, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        sb_set(&sb->slot[s].conns_http, 42);
        _exit(0);
    }
    ck_assert_int_gt(pid, 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_uint_eq(sb_get(&sb->slot[s].conns_http), 42);
    sb_destroy(sb);
}
END_TEST

Suite *
scoreboard_suite(void)
{
    Suite *s = suite_create("scoreboard");
    TCase *tc = tcase_create("slots");
    tcase_add_test(tc, claim_and_release);
    tcase_add_test(tc, slots_run_out);
    tcase_add_test(tc, status_buckets);
    tcase_add_test(tc, histogram_buckets);
    tcase_add_test(tc, dead_workers_are_noted);
    tcase_add_test(tc, totals_survive_a_released_worker);
    tcase_add_test(tc, shared_across_fork);
    suite_add_tcase(s, tc);
    return s;
}
