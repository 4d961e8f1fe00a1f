/* history: offsets, trimming, expiry, recovery reads, epochs, several processes on one
 * file, and the bound, each in a fresh directory under /tmp. Times are passed in (Unix
 * milliseconds): nothing sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "suites.h"

#define MIB ((size_t)1 << 20)
#define DAY ((int64_t)86400000)

struct fx {
    char dir[64];
    char path[128];
    struct history *h;
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static struct history *
fx_open(const struct fx *f, size_t max_bytes)
{
    char err[512] = "";
    ck_assert_msg(history_prepare(f->path, max_bytes, err, sizeof err) == 0, "prepare: %s", err);
    struct history *h = history_open(f->path, max_bytes, err, sizeof err);
    ck_assert_msg(h != NULL, "open: %s", err);
    return h;
}

static void
fx_setup(struct fx *f, size_t max_bytes)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-history-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/sessions.db-history", f->dir);
    f->h = fx_open(f, max_bytes);
}

static void
fx_teardown(struct fx *f)
{
    history_close(f->h);
    f->h = NULL;
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Append data (from "" unless from) to ch; returns the status, the offset in *off. */
static int
add(struct history *h, const char *ch, const char *from, const char *data, int keep, int64_t ttl,
    int64_t now, uint64_t *off)
{
    struct history_msg m = {.ts = now, .from = from != NULL ? from : "",
                            .from_len = from != NULL ? strlen(from) : 0, .data = data,
                            .data_len = strlen(data)};
    return history_append(h, ch, strlen(ch), &m, keep, ttl, now, off);
}

/* Append and expect offset want. */
static void
add_ok(struct history *h, const char *ch, const char *data, int keep, int64_t ttl, int64_t now,
       uint64_t want)
{
    uint64_t off = 0;
    int rc = add(h, ch, NULL, data, keep, ttl, now, &off);
    ck_assert_msg(rc == 0, "append %s: %d %s", ch, rc, history_last_error(h));
    ck_assert_uint_eq(off, want);
}

static uint64_t
top_of(struct history *h, const char *ch)
{
    uint64_t top = 99;
    ck_assert_int_eq(history_top(h, ch, strlen(ch), &top), 0);
    return top;
}

/* What history_since gave. */
struct got {
    size_t n;
    uint64_t off[2048];
    int64_t ts[2048];
    char from[2048][16];
    char data[2048][64];
    size_t data_len[2048];
    bool complete;
    uint64_t top;
};

static void
on_msg(void *arg, const struct history_msg *m)
{
    struct got *g = arg;
    ck_assert_uint_lt(g->n, 2048);
    g->off[g->n] = m->offset;
    g->ts[g->n] = m->ts;
    ck_assert_uint_lt(m->from_len, sizeof g->from[0]);
    memcpy(g->from[g->n], m->from, m->from_len);
    g->from[g->n][m->from_len] = '\0';
    size_t n = m->data_len < sizeof g->data[0] ? m->data_len : sizeof g->data[0];
    memcpy(g->data[g->n], m->data, n);
    g->data_len[g->n] = m->data_len;
    g->n++;
}

static struct got *
since(struct history *h, const char *ch, uint64_t from, size_t limit, int64_t now)
{
    static struct got g;
    memset(&g, 0, sizeof g);
    int rc = history_since(h, ch, strlen(ch), from, limit, now, on_msg, &g, &g.complete, &g.top);
    ck_assert_msg(rc == 0, "since: %s", history_last_error(h));
    return &g;
}

/* g holds exactly the offsets first..last. */
static void
expect_range(const struct got *g, uint64_t first, uint64_t last)
{
    ck_assert_uint_eq(g->n, last + 1 - first);
    for (size_t i = 0; i < g->n; i++)
        ck_assert_uint_eq(g->off[i], first + i);
}

/* ---- offsets ---- */

START_TEST(offsets_per_channel)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    ck_assert_uint_eq(top_of(f.h, "a"), 0);
    add_ok(f.h, "a", "1", 10, DAY, 1000, 1);
    add_ok(f.h, "a", "2", 10, DAY, 1001, 2);
    add_ok(f.h, "b", "1", 10, DAY, 1002, 1);
    add_ok(f.h, "a", "3", 10, DAY, 1003, 3);
    add_ok(f.h, "ab", "1", 10, DAY, 1004, 1); /* "a" is a prefix of "ab": still apart */
    ck_assert_uint_eq(top_of(f.h, "a"), 3);
    ck_assert_uint_eq(top_of(f.h, "b"), 1);
    ck_assert_uint_eq(top_of(f.h, "ab"), 1);
    ck_assert_uint_eq(top_of(f.h, "c"), 0);
    struct got *g = since(f.h, "a", 0, 100, 2000);
    expect_range(g, 1, 3);
    ck_assert(g->complete);
    ck_assert_uint_eq(g->top, 3);
    ck_assert_str_eq(g->data[2], "3");
    fx_teardown(&f);
}
END_TEST

START_TEST(trim_to_keep)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    for (uint64_t i = 1; i <= 5; i++)
        add_ok(f.h, "c", "x", 3, DAY, 1000, i);
    struct got *g = since(f.h, "c", 0, 100, 1000);
    expect_range(g, 3, 5);
    ck_assert(!g->complete); /* 1 and 2 were trimmed */
    g = since(f.h, "c", 2, 100, 1000);
    expect_range(g, 3, 5);
    ck_assert(g->complete);
    /* A smaller keep trims at the next append. */
    add_ok(f.h, "c", "x", 1, DAY, 1000, 6);
    expect_range(since(f.h, "c", 0, 100, 1000), 6, 6);
    fx_teardown(&f);
}
END_TEST

START_TEST(expiry_by_ttl)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    add_ok(f.h, "e", "1", 100, 100, 1000, 1); /* until 1100 */
    add_ok(f.h, "e", "2", 100, 100, 1050, 2); /* until 1150 */
    struct got *g = since(f.h, "e", 0, 100, 1099);
    expect_range(g, 1, 2);
    ck_assert(g->complete);
    /* Expired but not yet dropped: not given, and the recovery is incomplete. */
    g = since(f.h, "e", 0, 100, 1100);
    expect_range(g, 2, 2);
    ck_assert(!g->complete);
    ck_assert(since(f.h, "e", 1, 100, 1100)->complete);
    /* An append drops what has expired. */
    add_ok(f.h, "e", "3", 100, 100, 1160, 3);
    g = since(f.h, "e", 0, 100, 1000); /* even asked as of earlier: 1 and 2 are gone */
    expect_range(g, 3, 3);
    ck_assert(!g->complete);
    ck_assert_int_eq(history_sweep(f.h, 1160, 100), 0); /* nothing left to sweep */
    fx_teardown(&f);
}
END_TEST

START_TEST(sweep_idle_channels)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    add_ok(f.h, "x", "1", 100, 100, 1000, 1);
    add_ok(f.h, "y", "1", 100, 100, 1000, 1);
    add_ok(f.h, "x", "2", 100, 200, 1000, 2); /* until 1200 */
    ck_assert_int_eq(history_sweep(f.h, 1099, 100), 0);
    ck_assert_int_eq(history_sweep(f.h, 1100, 1), 1); /* in batches */
    ck_assert_int_eq(history_sweep(f.h, 1100, 100), 1);
    ck_assert_int_eq(history_sweep(f.h, 1100, 100), 0);
    struct got *g = since(f.h, "x", 0, 100, 1000);
    expect_range(g, 2, 2);
    ck_assert(!g->complete);
    ck_assert_uint_eq(since(f.h, "y", 0, 100, 1000)->n, 0);
    ck_assert_int_eq(history_sweep(f.h, 5000, 100), 1);
    /* Everything gone: the counters stay, and offsets go on. */
    g = since(f.h, "y", 0, 100, 5000);
    ck_assert_uint_eq(g->n, 0);
    ck_assert(!g->complete);
    ck_assert_uint_eq(g->top, 1);
    ck_assert(since(f.h, "y", 1, 100, 5000)->complete);
    ck_assert_uint_eq(top_of(f.h, "x"), 2);
    add_ok(f.h, "x", "3", 100, 100, 5000, 3);
    add_ok(f.h, "y", "2", 100, 100, 5000, 2);
    /* And after a trim of everything but the newest, too. */
    for (uint64_t i = 4; i <= 10; i++)
        add_ok(f.h, "x", "t", 1, 100, 5000, i);
    expect_range(since(f.h, "x", 0, 100, 5000), 10, 10);
    fx_teardown(&f);
}
END_TEST

START_TEST(since_complete_and_limit)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    for (uint64_t i = 1; i <= 10; i++)
        add_ok(f.h, "s", "m", 100, DAY, 1000, i);
    struct got *g = since(f.h, "s", 3, 4, 1000);
    expect_range(g, 4, 7);
    ck_assert(g->complete);
    ck_assert_uint_eq(g->top, 10);
    g = since(f.h, "s", 7, 4, 1000);
    expect_range(g, 8, 10);
    ck_assert(g->complete);
    g = since(f.h, "s", 10, 4, 1000); /* since = top: nothing, complete */
    ck_assert_uint_eq(g->n, 0);
    ck_assert(g->complete);
    g = since(f.h, "s", 11, 4, 1000); /* past top: an offset this epoch never gave */
    ck_assert_uint_eq(g->n, 0);
    ck_assert(!g->complete);
    g = since(f.h, "s", 0, 0, 1000);
    ck_assert_uint_eq(g->n, 0);
    ck_assert(g->complete);
    g = since(f.h, "none", 0, 10, 1000); /* a channel never published */
    ck_assert_uint_eq(g->n, 0);
    ck_assert(g->complete);
    ck_assert_uint_eq(g->top, 0);
    /* Trim the front: the oldest held is 6 > since + 1. */
    add_ok(f.h, "s", "m", 6, DAY, 1000, 11);
    g = since(f.h, "s", 3, 100, 1000);
    expect_range(g, 6, 11);
    ck_assert(!g->complete);
    ck_assert(since(f.h, "s", 5, 100, 1000)->complete);
    fx_teardown(&f);
}
END_TEST

/* A callback that reads again, as a worker's may (the read transaction is busy). */
static void
on_msg_nested(void *arg, const struct history_msg *m)
{
    struct history *h = arg;
    uint64_t top = 0;
    ck_assert_int_eq(history_top(h, "n", 1, &top), 0);
    ck_assert_uint_ge(top, m->offset);
}

START_TEST(callback_may_read_again)
{
    struct fx f;
    bool complete;
    uint64_t top;
    fx_setup(&f, 8 * MIB);
    add_ok(f.h, "n", "1", 10, DAY, 1000, 1);
    add_ok(f.h, "n", "2", 10, DAY, 1000, 2);
    ck_assert_int_eq(history_since(f.h, "n", 1, 0, 10, 1000, on_msg_nested, f.h, &complete, &top), 0);
    ck_assert(complete);
    ck_assert_uint_eq(top, 2);
    fx_teardown(&f);
}
END_TEST

START_TEST(messages_kept_exactly)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    static const char bin[] = "{\"k\":\"\xc3\xa9\\u0000\"}\0tail"; /* bytes after a NUL too */
    struct history_msg m = {.ts = 1234567, .from = "alice", .from_len = 5, .data = bin,
                            .data_len = sizeof bin - 1};
    uint64_t off = 0;
    ck_assert_int_eq(history_append(f.h, "user:alice", 10, &m, 10, DAY, 1000, &off), 0);
    ck_assert_uint_eq(off, 1);
    m = (struct history_msg){.ts = 1000, .from = "", .data = "7", .data_len = 1};
    ck_assert_int_eq(history_append(f.h, "user:alice", 10, &m, 10, DAY, 1000, &off), 0);
    struct got *g = since(f.h, "user:alice", 0, 10, 1000);
    ck_assert_uint_eq(g->n, 2);
    ck_assert_str_eq(g->from[0], "alice");
    ck_assert_int_eq(g->ts[0], 1234567);
    ck_assert_uint_eq(g->data_len[0], sizeof bin - 1);
    ck_assert_int_eq(memcmp(g->data[0], bin, sizeof bin - 1), 0);
    ck_assert_str_eq(g->from[1], "");
    ck_assert_str_eq(g->data[1], "7");
    ck_assert_uint_eq(g->data_len[1], 1);
    fx_teardown(&f);
}
END_TEST

START_TEST(bad_arguments)
{
    struct fx f;
    uint64_t off = 9;
    fx_setup(&f, 8 * MIB);
    ck_assert_int_eq(add(f.h, "bad name", NULL, "1", 10, DAY, 1000, &off), HISTORY_ERROR);
    ck_assert_uint_eq(off, 0);
    ck_assert_ptr_nonnull(strstr(history_last_error(f.h), "channel"));
    ck_assert_int_eq(add(f.h, "", NULL, "1", 10, DAY, 1000, &off), HISTORY_ERROR);
    ck_assert_int_eq(add(f.h, "k", NULL, "1", 0, DAY, 1000, &off), HISTORY_ERROR);
    ck_assert_int_eq(add(f.h, "k", NULL, "1", 100001, DAY, 1000, &off), HISTORY_ERROR);
    ck_assert_int_eq(add(f.h, "k", NULL, "1", 10, 0, 1000, &off), HISTORY_ERROR);
    char name[130];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ck_assert_int_eq(add(f.h, name, NULL, "1", 10, DAY, 1000, &off), HISTORY_ERROR);
    name[128] = '\0';
    add_ok(f.h, name, "1", 10, DAY, 1000, 1); /* 128 bytes: the longest */
    uint64_t top;
    ck_assert_int_eq(history_top(f.h, "a b", 3, &top), -1);
    ck_assert_uint_eq(top_of(f.h, "k"), 0); /* nothing was counted */

    /* Too big: refused, yet counted, so the offsets keep no gap for live delivery. */
    char *big = malloc(HISTORY_DATA_MAX + 2);
    memset(big, 'x', HISTORY_DATA_MAX + 1);
    big[HISTORY_DATA_MAX + 1] = '\0';
    add_ok(f.h, "k", "1", 10, DAY, 1000, 1);
    ck_assert_int_eq(add(f.h, "k", NULL, big, 10, DAY, 1000, &off), HISTORY_TOO_BIG);
    ck_assert_uint_eq(off, 2);
    ck_assert_ptr_nonnull(strstr(history_last_error(f.h), "at most"));
    big[HISTORY_FROM_MAX + 1] = '\0';
    ck_assert_int_eq(add(f.h, "k", big, "1", 10, DAY, 1000, &off), HISTORY_TOO_BIG);
    ck_assert_uint_eq(off, 3);
    free(big);
    add_ok(f.h, "k", "4", 10, DAY, 1000, 4);
    struct got *g = since(f.h, "k", 0, 10, 1000);
    ck_assert_uint_eq(g->n, 2);
    ck_assert_uint_eq(g->off[1], 4);
    ck_assert(!g->complete);
    ck_assert(since(f.h, "k", 3, 10, 1000)->complete);
    fx_teardown(&f);
}
END_TEST

/* ---- epochs and files ---- */

static bool
hex16(const char *s)
{
    if (strlen(s) != HISTORY_EPOCH_LEN)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

START_TEST(epoch_stable_then_new)
{
    struct fx f, g;
    char e[HISTORY_EPOCH_LEN + 1];
    fx_setup(&f, 8 * MIB);
    snprintf(e, sizeof e, "%s", history_epoch(f.h));
    ck_assert(hex16(e));
    add_ok(f.h, "c", "1", 10, DAY, 1000, 1);
    history_close(f.h);
    f.h = fx_open(&f, 8 * MIB); /* prepare and open again, as at a restart */
    ck_assert_str_eq(history_epoch(f.h), e);
    ck_assert_uint_eq(top_of(f.h, "c"), 1);
    add_ok(f.h, "c", "2", 10, DAY, 1000, 2);

    fx_setup(&g, 8 * MIB); /* another file */
    ck_assert(hex16(history_epoch(g.h)));
    ck_assert_str_ne(history_epoch(g.h), e);
    fx_teardown(&g);

    /* A file last written before the machine booted: replaced, with a new epoch. */
    history_close(f.h);
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    ck_assert_int_eq(utimensat(AT_FDCWD, f.path, old, 0), 0);
    f.h = fx_open(&f, 8 * MIB);
    ck_assert(hex16(history_epoch(f.h)));
    ck_assert_str_ne(history_epoch(f.h), e);
    ck_assert_uint_eq(top_of(f.h, "c"), 0);
    fx_teardown(&f);
}
END_TEST

START_TEST(unreadable_file_replaced)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    history_close(f.h);
    f.h = NULL;
    unlink(f.path);
    char lock[160];
    snprintf(lock, sizeof lock, "%s-lock", f.path);
    unlink(lock);
    FILE *junk = fopen(f.path, "w");
    ck_assert_ptr_nonnull(junk);
    for (int i = 0; i < 4096; i++)
        fputc('j', junk);
    ck_assert_int_eq(fclose(junk), 0);
    char err[512] = "";
    ck_assert_ptr_null(history_open(f.path, 8 * MIB, err, sizeof err)); /* open never replaces */
    ck_assert_ptr_nonnull(strstr(err, f.path));
    f.h = fx_open(&f, 8 * MIB); /* prepare does */
    ck_assert(hex16(history_epoch(f.h)));
    add_ok(f.h, "c", "1", 10, DAY, 1000, 1);
    fx_teardown(&f);
}
END_TEST

START_TEST(prepare_errors)
{
    struct fx f;
    char err[512] = "", path[200];
    fx_setup(&f, 8 * MIB);
    ck_assert_int_eq(history_prepare(f.path, MIB - 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "max_bytes: at least"));
    ck_assert_ptr_null(history_open(f.path, 4096, err, sizeof err));
    snprintf(path, sizeof path, "%s/no/such/dir-history", f.dir);
    ck_assert_int_eq(history_prepare(path, 8 * MIB, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "No such file or directory"));
    ck_assert_int_eq(history_prepare(f.path, (size_t)1 << 44, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "MiB free"));
    fx_teardown(&f);
}
END_TEST

/* ---- several processes ---- */

START_TEST(two_handles_take_turns)
{
    struct fx f;
    char err[512];
    fx_setup(&f, 8 * MIB);
    struct history *h2 = history_open(f.path, 8 * MIB, err, sizeof err);
    ck_assert_ptr_nonnull(h2);
    ck_assert_str_eq(history_epoch(h2), history_epoch(f.h));
    for (uint64_t i = 1; i <= 20; i++)
        add_ok(i % 2 ? f.h : h2, "t", i % 2 ? "one" : "two", 100, DAY, 1000, i);
    struct got *g = since(h2, "t", 0, 100, 1000);
    expect_range(g, 1, 20);
    ck_assert(g->complete);
    ck_assert_str_eq(g->data[0], "one");
    ck_assert_str_eq(g->data[1], "two");
    ck_assert_uint_eq(top_of(f.h, "t"), 20);
    history_close(h2);
    fx_teardown(&f);
}
END_TEST

enum { RACE_N = 400 };

START_TEST(forked_writers_race)
{
    struct fx f;
    int status;
    fx_setup(&f, 8 * MIB);
    add_ok(f.h, "r", "parent", 2 * RACE_N + 10, DAY, 1000, 1); /* the parent's handle in use */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* No Check asserts in the child; it leaves the inherited handle alone. */
        char err[512];
        struct history *h = history_open(f.path, 8 * MIB, err, sizeof err);
        uint64_t off, last = 0;
        if (h == NULL)
            _exit(2);
        for (int i = 0; i < RACE_N; i++) {
            if (add(h, "r", NULL, "child", 2 * RACE_N + 10, DAY, 1000, &off) != 0 || off <= last)
                _exit(1);
            last = off;
        }
        history_close(h);
        _exit(0);
    }
    uint64_t off, last = 1;
    for (int i = 0; i < RACE_N; i++) {
        ck_assert_int_eq(add(f.h, "r", NULL, "parent", 2 * RACE_N + 10, DAY, 1000, &off), 0);
        ck_assert_uint_gt(off, last);
        last = off;
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct got *g = since(f.h, "r", 0, 2048, 1000);
    expect_range(g, 1, 2 * RACE_N + 1);
    ck_assert(g->complete);
    size_t child = 0;
    for (size_t i = 0; i < g->n; i++)
        child += strcmp(g->data[i], "child") == 0;
    ck_assert_uint_eq(child, RACE_N);
    fx_teardown(&f);
}
END_TEST

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A child appending as fast as it can is killed mid-stream: the file opens again, holds
 * every offset the child was told of with no gap, and takes appends. */
START_TEST(kill_9_while_appending)
{
    struct fx f;
    int p[2], status;
    fx_setup(&f, 64 * MIB);
    history_close(f.h);
    f.h = NULL;
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        char err[512];
        struct history *h = history_open(f.path, 64 * MIB, err, sizeof err);
        uint64_t off;
        if (h == NULL)
            _exit(2);
        for (;;) {
            if (add(h, "k9", "u", "{\"n\":1}", 100000, DAY, 1000, &off) != 0)
                _exit(1);
            if (write(p[1], &off, sizeof off) != sizeof off)
                _exit(3);
        }
    }
    close(p[1]);
    uint64_t off, told = 0;
    int64_t end = 0;
    while (read(p[0], &off, sizeof off) == sizeof off) {
        told = off;
        if (end == 0)
            end = now_ms() + 50;
        if (now_ms() >= end && kill(pid, SIGKILL) == 0)
            end = INT64_MAX;
    }
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_uint_gt(told, 0);
    f.h = fx_open(&f, 64 * MIB);
    uint64_t top = top_of(f.h, "k9");
    ck_assert_uint_ge(top, told);
    ck_assert_uint_le(top, told + 1); /* at most the append being reported */
    struct got *g = since(f.h, "k9", top > 2000 ? top - 2000 : 0, 2048, 1000);
    ck_assert(g->complete);
    add_ok(f.h, "k9", "after", 100000, DAY, 1000, top + 1);
    fx_teardown(&f);
}
END_TEST

/* ---- the bound ---- */

/* With a channel trimmed to its keep, the file never fills: what a trim frees is
 * counted back. */
START_TEST(trim_keeps_the_file_in_bounds)
{
    struct fx f;
    char data[4001];
    memset(data, 'd', sizeof data - 1);
    data[sizeof data - 1] = '\0';
    fx_setup(&f, MIB);
    for (uint64_t i = 1; i <= 2000; i++)
        add_ok(f.h, i % 2 ? "p" : "q", data, 40, DAY, 1000, (i + 1) / 2);
    expect_range(since(f.h, "p", 0, 100, 1000), 961, 1000);
    fx_teardown(&f);
}
END_TEST

START_TEST(full_then_room_again)
{
    struct fx f;
    char data[4001], name[16];
    uint64_t off = 0, last = 0;
    memset(data, 'd', sizeof data - 1);
    data[sizeof data - 1] = '\0';
    fx_setup(&f, MIB);
    int rc = 0;
    while (rc == 0 && last < 1000) {
        rc = add(f.h, "big", NULL, data, 100000, 1000, 1000, &off);
        ck_assert_uint_eq(off, last + 1);
        last = off;
    }
    ck_assert_int_eq(rc, HISTORY_FULL);
    ck_assert_ptr_nonnull(strstr(history_last_error(f.h), "full"));
    ck_assert_uint_gt(last, 50); /* most of the file was used */
    /* The refused message still took its offset: a recovery across it is incomplete,
     * one from it on is whole. Everything before it is intact. */
    struct got *g = since(f.h, "big", 0, 2048, 1000);
    expect_range(g, 1, last - 1);
    ck_assert(!g->complete);
    ck_assert_uint_eq(g->top, last);
    ck_assert_uint_eq(g->data_len[0], 4000);
    ck_assert(since(f.h, "big", last, 10, 1000)->complete);
    /* Other channels are refused too, small messages included, until there is room. */
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "small%d", i);
        ck_assert_int_eq(add(f.h, name, NULL, data, 10, 1000, 1000, &off), HISTORY_FULL);
        ck_assert_uint_eq(off, 1);
    }
    /* Reopening keeps all of it. */
    history_close(f.h);
    f.h = fx_open(&f, MIB);
    ck_assert_int_eq(add(f.h, "big", NULL, data, 100000, 1000, 1000, &off), HISTORY_FULL);
    ck_assert_uint_eq(off, last + 1);
    /* The sweep empties it: appends work again, the offsets go on. */
    ck_assert_int_eq(history_sweep(f.h, 2000, 100000), (int)last - 1);
    add_ok(f.h, "big", data, 100000, 1000, 2000, last + 2);
    add_ok(f.h, "small0", data, 10, 1000, 2000, 2);
    /* What the sweep freed was counted back: about as many fit again (the counters of
     * the small channels stay). */
    uint64_t first = last + 2;
    for (rc = 0, last = first; rc == 0; last = off) {
        rc = add(f.h, "big", NULL, data, 100000, 1000, 2000, &off);
        ck_assert_uint_eq(off, last + 1);
    }
    ck_assert_int_eq(rc, HISTORY_FULL);
    ck_assert_uint_ge(last - first, first - 4);
    fx_teardown(&f);
}
END_TEST

/* While a read holds its snapshot, LMDB cannot reuse the pages that later commits free,
 * so the file fills although the account says there is room: MDB_MAP_FULL itself. */
struct flood {
    struct history *h;
    int rc, calls;
    uint64_t last;
};

static void
on_msg_flood(void *arg, const struct history_msg *m)
{
    struct flood *fl = arg;
    static char data[4001];
    uint64_t off = 0;
    (void)m;
    if (fl->calls++ > 0)
        return;
    memset(data, 'f', sizeof data - 1);
    for (int i = 0; i < 1000 && fl->rc == 0; i++) {
        fl->rc = add(fl->h, "flood", NULL, data, 2, DAY, 1000, &off);
        if (fl->rc == 0 || off > 0) {
            ck_assert_uint_eq(off, fl->last + 1);
            fl->last = off;
        }
    }
}

/* A message for history_append_many. */
static struct history_append
msg_for(const char *ch, const char *data, size_t data_len)
{
    return (struct history_append){
        .ch = ch,
        .len = strlen(ch),
        .keep = 10,
        .ttl = DAY,
        .m = {.ts = 1000, .from = "u1", .from_len = 2, .data = data, .data_len = data_len}};
}

/* A batch that LMDB cannot hold (a read pins the freed pages) falls back to one append
 * at a time: each as far as it goes, the offsets with no gap, nothing half-written. */
static void
on_msg_flood_many(void *arg, const struct history_msg *m)
{
    struct flood *fl = arg;
    static char data[4001];
    (void)m;
    if (fl->calls++ > 0)
        return;
    memset(data, 'f', sizeof data - 1);
    for (int round = 0; round < 100 && fl->rc == 0; round++) {
        struct history_append v[16];
        for (size_t i = 0; i < 16; i++) {
            v[i] = msg_for("flood", data, sizeof data - 1);
            v[i].keep = 2;
        }
        history_append_many(fl->h, v, 16, 1000);
        for (size_t i = 0; i < 16; i++) {
            if (v[i].status != 0)
                fl->rc = v[i].status;
            if (v[i].offset > 0) {
                ck_assert_uint_eq(v[i].offset, fl->last + 1);
                fl->last = v[i].offset;
            }
        }
    }
}

START_TEST(map_full_from_lmdb)
{
    struct fx f;
    bool complete;
    uint64_t top;
    fx_setup(&f, MIB);
    add_ok(f.h, "pin", "1", 10, DAY, 1000, 1);
    struct flood fl = {.h = f.h};
    /* Appended one by one (_i 0), or in batches (_i 1) that fall back to one by one. */
    ck_assert_int_eq(history_since(f.h, "pin", 3, 0, 10, 1000,
                                   _i == 0 ? on_msg_flood : on_msg_flood_many, &fl, &complete,
                                   &top),
                     0);
    ck_assert_int_eq(fl.rc, HISTORY_FULL);
    ck_assert_ptr_nonnull(strstr(history_last_error(f.h), "MDB_MAP_FULL"));
    ck_assert_uint_gt(fl.last, 20);
    /* Nothing half-written: the channel holds its newest two, and the offsets go on
     * once the read is over. */
    ck_assert_uint_eq(top_of(f.h, "flood"), fl.last);
    struct got *g = since(f.h, "flood", fl.last - 2, 10, 1000);
    ck_assert_uint_ge(g->n, 1);
    for (uint64_t i = fl.last + 1; i <= fl.last + 300; i++)
        add_ok(f.h, "flood", "after", 2, DAY, 1000, i);
    expect_range(since(f.h, "flood", 0, 10, 1000), fl.last + 299, fl.last + 300);
    fx_teardown(&f);
}
END_TEST

/* ---- the group commit ---- */


START_TEST(append_many_in_one_transaction)
{
    struct fx f;
    fx_setup(&f, 8 * MIB);
    static char big[HISTORY_DATA_MAX + 1];
    struct history_append v[] = {
        msg_for("a", "1", 1),          msg_for("b", "1", 1),
        msg_for("a", "2", 1),          msg_for("c", big, sizeof big), /* numbered, not kept */
        msg_for("bad channel", "x", 1), /* refused alone */
        msg_for("a", "3", 1),
    };
    history_append_many(f.h, v, sizeof v / sizeof v[0], 1000);
    const uint64_t off[] = {1, 1, 2, 1, 0, 3};
    const int status[] = {0, 0, 0, HISTORY_TOO_BIG, HISTORY_ERROR, 0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        ck_assert_uint_eq(v[i].offset, off[i]);
        ck_assert_int_eq(v[i].status, status[i]);
    }
    struct got *g = since(f.h, "a", 0, 10, 1000);
    expect_range(g, 1, 3);
    ck_assert_str_eq(g->data[1], "2");
    ck_assert_str_eq(g->from[2], "u1");
    ck_assert(!since(f.h, "c", 0, 10, 1000)->complete);
    ck_assert_uint_eq(top_of(f.h, "b"), 1);
    /* A second batch goes on from there. */
    struct history_append w[] = {msg_for("b", "2", 1), msg_for("a", "4", 1)};
    history_append_many(f.h, w, 2, 1001);
    ck_assert_uint_eq(w[0].offset, 2);
    ck_assert_uint_eq(w[1].offset, 4);
    fx_teardown(&f);
}
END_TEST



Suite *
history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("lmdb");
    tcase_add_test(tc, offsets_per_channel);
    tcase_add_test(tc, trim_to_keep);
    tcase_add_test(tc, expiry_by_ttl);
    tcase_add_test(tc, sweep_idle_channels);
    tcase_add_test(tc, since_complete_and_limit);
    tcase_add_test(tc, callback_may_read_again);
    tcase_add_test(tc, messages_kept_exactly);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, epoch_stable_then_new);
    tcase_add_test(tc, unreadable_file_replaced);
    tcase_add_test(tc, prepare_errors);
    tcase_add_test(tc, two_handles_take_turns);
    tcase_add_test(tc, forked_writers_race);
    tcase_add_test(tc, kill_9_while_appending);
    tcase_add_test(tc, trim_keeps_the_file_in_bounds);
    tcase_add_test(tc, full_then_room_again);
    tcase_add_loop_test(tc, map_full_from_lmdb, 0, 2);
    tcase_add_test(tc, append_many_in_one_transaction);
    suite_add_tcase(s, tc);
    return s;
}
