/* chan_order: the hold-back that keeps a channel's messages heard from Redis in offset
 * order, once each. A fake stands for Redis: its list holds offsets 1..have of one epoch,
 * and a read, once answered, sends what the subscribers missed up to there, as
 * chan_history_redis.c does, then drains what was held back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan_order.h"
#include "suites.h"

#define E1 "aaaaaaaaaaaaaaaa"
#define E2 "bbbbbbbbbbbbbbbb"

struct fake {
    struct chan_order o;
    uint64_t sent[64];
    bool told[64]; /* whether that message named a new epoch */
    size_t nsent;
    int reads;
    const char *epoch; /* Redis's */
    uint64_t have;     /* Redis's list: 1..have */
};

static void
f_send(void *arg, const char *text, size_t len)
{
    struct fake *f = arg;
    char num[24];
    ck_assert_uint_lt(len, sizeof num);
    memcpy(num, text, len);
    num[len] = '\0';
    ck_assert_uint_lt(f->nsent, 64);
    f->told[f->nsent] = f->o.tell_epoch;
    f->o.tell_epoch = false;
    f->sent[f->nsent++] = strtoull(num, NULL, 10);
}

static void
f_read(void *arg)
{
    struct fake *f = arg;
    ck_assert(!f->o.reading); /* one read at a time */
    f->reads++;
    f->o.reading = true;
}

static void
f_setup(struct fake *f, const char *epoch, uint64_t at)
{
    memset(f, 0, sizeof *f);
    f->o = (struct chan_order){.at = at, .send = f_send, .read = f_read, .arg = f};
    memcpy(f->o.epoch, epoch, HISTORY_EPOCH_LEN + 1);
    f->epoch = epoch;
}

static void
heard(struct fake *f, const char *epoch, uint64_t offset, bool blind)
{
    char text[24];
    int n = snprintf(text, sizeof text, "%llu", (unsigned long long)offset);
    chan_order_heard(&f->o, epoch, offset, text, (size_t)n, blind);
}

/* Redis answers the read in flight. */
static void
answer(struct fake *f)
{
    ck_assert(f->o.reading);
    f->o.reading = false;
    if (strcmp(f->o.epoch, f->epoch) != 0) { /* the history was lost: count again */
        memcpy(f->o.epoch, f->epoch, HISTORY_EPOCH_LEN + 1);
        f->o.at = 0;
        f->o.tell_epoch = true;
    }
    for (uint64_t i = f->o.at + 1; i <= f->have; i++) {
        char text[24];
        int n = snprintf(text, sizeof text, "%llu", (unsigned long long)i);
        f->o.at = i;
        f->o.send(f, text, (size_t)n);
    }
    if (f->o.again) {
        f->o.again = false;
        f_read(f);
    }
    chan_order_drain(&f->o, false);
}

static void
expect_sent(const struct fake *f, uint64_t first, uint64_t last)
{
    ck_assert_uint_eq(f->nsent, last + 1 - first);
    for (size_t i = 0; i < f->nsent; i++)
        ck_assert_uint_eq(f->sent[i], first + i);
}

START_TEST(in_order_goes_straight_out)
{
    struct fake f;
    f_setup(&f, E1, 0);
    for (uint64_t i = 1; i <= 3; i++)
        heard(&f, E1, i, false);
    expect_sent(&f, 1, 3);
    ck_assert_int_eq(f.reads, 0);
    ck_assert(!f.told[0]);
}
END_TEST

START_TEST(duplicates_dropped)
{
    struct fake f;
    f_setup(&f, E1, 0);
    heard(&f, E1, 1, false);
    heard(&f, E1, 1, false);
    heard(&f, E1, 2, false);
    heard(&f, E1, 1, false);
    expect_sent(&f, 1, 2);
    ck_assert_int_eq(f.reads, 0);
}
END_TEST

/* 3 before 2: 3 waits while 2 is read; what comes during the read waits behind it. */
START_TEST(a_gap_is_read_before_what_follows)
{
    struct fake f;
    f_setup(&f, E1, 0);
    heard(&f, E1, 1, false);
    f.have = 3;
    heard(&f, E1, 3, false);
    ck_assert_int_eq(f.reads, 1);
    expect_sent(&f, 1, 1);
    heard(&f, E1, 4, false); /* published after the read was answered by Redis */
    heard(&f, E1, 2, false); /* late, and read anyway */
    expect_sent(&f, 1, 1);
    answer(&f);
    expect_sent(&f, 1, 4);
    ck_assert_int_eq(f.reads, 1);
    heard(&f, E1, 5, false);
    expect_sent(&f, 1, 5);
}
END_TEST

/* Held back 4 and 6 while a read up to 3 was in flight: 4 goes out, 6 waits for a
 * second read, which brings 5. */
START_TEST(a_gap_among_the_held_reads_again)
{
    struct fake f;
    f_setup(&f, E1, 1);
    f.have = 3;
    heard(&f, E1, 3, false);
    heard(&f, E1, 4, false);
    heard(&f, E1, 6, false);
    answer(&f);
    ck_assert_int_eq(f.reads, 2);
    ck_assert(f.o.reading);
    ck_assert_uint_eq(f.o.at, 4);
    f.have = 6;
    heard(&f, E1, 7, false);
    answer(&f);
    expect_sent(&f, 2, 7);
    ck_assert(!f.o.reading);
    ck_assert_uint_eq(buf_used(&f.o.held), 0);
}
END_TEST

/* Redis lost the channel: offset 1 of a new epoch is read, not taken for a duplicate,
 * and the first message out names the epoch. */
START_TEST(a_new_epoch_is_read_and_told)
{
    struct fake f;
    f_setup(&f, E1, 5);
    f.epoch = E2;
    f.have = 2;
    heard(&f, E2, 2, false);
    ck_assert_int_eq(f.reads, 1);
    ck_assert_uint_eq(f.nsent, 0);
    answer(&f);
    expect_sent(&f, 1, 2);
    ck_assert(f.told[0] && !f.told[1]);
    ck_assert_str_eq(f.o.epoch, E2);
    /* A straggler of the old epoch, heard after the read that found the new one: a read
     * says which is current, and the straggler is dropped, not read for again and again. */
    heard(&f, E1, 6, false);
    answer(&f);
    expect_sent(&f, 1, 2);
    ck_assert_int_eq(f.reads, 2);
    ck_assert(!f.o.reading);
}
END_TEST

/* Redis cannot be read: a gap and a new epoch are taken as they come. */
START_TEST(blind_takes_what_comes)
{
    struct fake f;
    f_setup(&f, E1, 2);
    heard(&f, E1, 5, true);
    heard(&f, E1, 4, true);
    heard(&f, E2, 1, true);
    ck_assert_int_eq(f.reads, 0);
    ck_assert_uint_eq(f.nsent, 2);
    ck_assert_uint_eq(f.sent[0], 5);
    ck_assert_uint_eq(f.sent[1], 1);
    ck_assert(!f.told[0] && f.told[1]);
    ck_assert_str_eq(f.o.epoch, E2);
}
END_TEST

/* Beyond CHAN_HELD_MAX held, a message is not kept but read again after this read. */
START_TEST(overflow_reads_again)
{
    struct fake f;
    f_setup(&f, E1, 0);
    f.have = 2;
    heard(&f, E1, 2, false);
    char *big = malloc(CHAN_HELD_MAX + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, '3', CHAN_HELD_MAX + 1);
    chan_order_heard(&f.o, E1, 3, big, CHAN_HELD_MAX + 1, false);
    free(big);
    ck_assert(f.o.again);
    answer(&f); /* up to 2, and a read again for what overflowed */
    expect_sent(&f, 1, 2);
    ck_assert_int_eq(f.reads, 2);
    f.have = 3;
    answer(&f);
    expect_sent(&f, 1, 3);
}
END_TEST

Suite *
chan_order_suite(void)
{
    Suite *s = suite_create("chan_order");
    TCase *tc = tcase_create("hold-back");
    tcase_add_test(tc, in_order_goes_straight_out);
    tcase_add_test(tc, duplicates_dropped);
    tcase_add_test(tc, a_gap_is_read_before_what_follows);
    tcase_add_test(tc, a_gap_among_the_held_reads_again);
    tcase_add_test(tc, a_new_epoch_is_read_and_told);
    tcase_add_test(tc, blind_takes_what_comes);
    tcase_add_test(tc, overflow_reads_again);
    suite_add_tcase(s, tc);
    return s;
}
