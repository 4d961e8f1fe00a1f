/* bus: messages between buses of one process, on real libev loops and real sockets.
 *
 * Each test takes namespaces of its own (the test process's pid and a counter), so that no
 * two tests, nor two runs at once, meet in the abstract namespace. The loops run without
 * blocking (EVRUN_NOWAIT) until what a test waits for has happened; the deadline is only
 * there to turn a hang into a failure. A receiver that must not read lives on a loop of
 * its own, which the test simply does not run.
 *
 * Every message starts with a 32-bit sequence number, and every byte after it follows
 * from that number and its offset, so the receiving callback checks each message whole
 * and records the numbers in the order they came. */
#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "scoreboard.h"
#include "suites.h"

#define INBOX_MAX 1024
#define DEADLINE_MS 3000

struct inbox {
    int n;                      /* messages received */
    int bad;                    /* of those, with a body that does not follow its number */
    uint32_t seq[INBOX_MAX];
    size_t len[INBOX_MAX];
    struct bus *close_on_first; /* if set, the callback closes this bus on its first call */
};

static int ns_counter;

static void
new_ns(char *ns, size_t len)
{
    snprintf(ns, len, "sessiond-test/%d/%d", (int)getpid(), ns_counter++);
}

static uint8_t
body_byte(uint32_t seq, size_t i)
{
    return (uint8_t)(seq * 7u + i * 13u + (i >> 8));
}

/* A message of len bytes (at least 4) with sequence number seq; the caller frees it. */
static uint8_t *
make_msg(uint32_t seq, size_t len)
{
    uint8_t *m = malloc(len);
    ck_assert_ptr_nonnull(m);
    memcpy(m, &seq, sizeof seq);
    for (size_t i = sizeof seq; i < len; i++)
        m[i] = body_byte(seq, i);
    return m;
}

static void
on_msg(void *arg, const void *msg, size_t len)
{
    struct inbox *in = arg;
    const uint8_t *p = msg;
    uint32_t seq = UINT32_MAX;
    bool ok = len >= sizeof seq;
    if (ok)
        memcpy(&seq, p, sizeof seq);
    for (size_t i = sizeof seq; ok && i < len; i++)
        ok = p[i] == body_byte(seq, i);
    if (!ok)
        in->bad++;
    if (in->n < INBOX_MAX) {
        in->seq[in->n] = seq;
        in->len[in->n] = len;
    }
    in->n++;
    if (in->close_on_first != NULL) {
        bus_close(in->close_on_first);
        in->close_on_first = NULL;
    }
}

static struct bus *
open_bus(struct ev_loop *loop, const char *ns, int slot, struct inbox *in)
{
    char err[256] = "";
    struct bus *b = bus_open(loop, ns, slot, on_msg, in, err, sizeof err);
    ck_assert_msg(b != NULL, "bus_open(%s, %d): %s", ns, slot, err);
    return b;
}

static int
send_seq(struct bus *b, int slot, uint64_t pid, uint32_t seq, size_t len)
{
    uint8_t *m = make_msg(seq, len);
    int r = bus_send(b, slot, pid, m, len);
    free(m);
    return r;
}

static struct bus_stats
stats(const struct bus *b)
{
    struct bus_stats s;
    bus_stats(b, &s);
    return s;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
spin(struct ev_loop *l1, struct ev_loop *l2)
{
    ev_run(l1, EVRUN_NOWAIT);
    if (l2 != NULL)
        ev_run(l2, EVRUN_NOWAIT);
}

/* Run loops l1 and l2 (which may be NULL) until cond holds; fail if it does not within
 * DEADLINE_MS. */
#define RUN_UNTIL(l1, l2, cond)                                                              \
    do {                                                                                     \
        for (int64_t end_ = now_ms() + DEADLINE_MS; !(cond) && now_ms() < end_;)             \
            spin((l1), (l2));                                                                \
        ck_assert_msg((cond), "still not true after %d ms: %s", DEADLINE_MS, #cond);         \
    } while (0)

/* The abstract address of a slot, built here as the bus documents it: "\0<ns>/bus/<slot>". */
static socklen_t
slot_addr(struct sockaddr_un *a, const char *ns, int slot)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "%s/bus/%d", ns, slot);
    ck_assert(n > 0 && (size_t)n < sizeof a->sun_path - 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* A datagram sent to a slot from a plain socket, not through a bus. */
static void
raw_send(const char *ns, int slot, const void *msg, size_t len)
{
    struct sockaddr_un a;
    socklen_t alen = slot_addr(&a, ns, slot);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0), size = 4 * 1024 * 1024;
    ck_assert_int_ge(fd, 0);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    ck_assert_int_eq(sendto(fd, msg, len, 0, (struct sockaddr *)&a, alen), (ssize_t)len);
    close(fd);
}

/* ---- tests ---- */

START_TEST(exchange_in_order)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia), *b = open_bus(loop, ns, 1, &ib);

    /* The normal case is one send, straight to the kernel, with nothing queued. */
    ck_assert_int_eq(send_seq(a, 1, 101, 0, 100), 0);
    ck_assert_uint_eq(stats(a).sent, 1);
    ck_assert_uint_eq(stats(a).pending, 0);

    /* More than the receiver's queue holds, both ways, before either reads. */
    const int n = 300;
    for (int i = 1; i < n; i++)
        ck_assert_int_eq(send_seq(a, 1, 101, (uint32_t)i, 4 + (size_t)i * 997 % 5000), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(send_seq(b, 0, 100, (uint32_t)i, 4 + (size_t)i * 31 % 300), 0);
    RUN_UNTIL(loop, NULL, ia.n == n && ib.n == n);
    for (int i = 0; i < n; i++) {
        ck_assert_uint_eq(ib.seq[i], (uint32_t)i);
        ck_assert_uint_eq(ia.seq[i], (uint32_t)i);
        ck_assert_uint_eq(ia.len[i], 4 + (size_t)i * 31 % 300);
        ck_assert_uint_eq(ib.len[i], i == 0 ? 100 : 4 + (size_t)i * 997 % 5000);
    }
    ck_assert_int_eq(ia.bad + ib.bad, 0);
    struct bus_stats sa = stats(a), sb = stats(b);
    ck_assert_uint_eq(sa.sent, (uint64_t)n);
    ck_assert_uint_eq(sa.received, (uint64_t)n);
    ck_assert_uint_eq(sb.sent, (uint64_t)n);
    ck_assert_uint_eq(sb.received, (uint64_t)n);
    ck_assert_uint_eq(sa.dropped + sb.dropped + sa.pending + sb.pending, 0);
    bus_close(a);
    bus_close(b);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(largest_message_intact)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia), *b = open_bus(loop, ns, 1, &ib);

    ck_assert_int_eq(send_seq(a, 1, 101, 42, BUS_MAX_MSG), 0);
    ck_assert_int_eq(send_seq(a, 1, 101, 43, BUS_MAX_MSG + 1), -1); /* too big: dropped */
    ck_assert_uint_eq(stats(a).dropped, 1);
    ck_assert_int_eq(send_seq(a, 1, 101, 44, 4), 0);
    RUN_UNTIL(loop, NULL, ib.n == 2);
    ck_assert_uint_eq(ib.seq[0], 42);
    ck_assert_uint_eq(ib.len[0], BUS_MAX_MSG);
    ck_assert_uint_eq(ib.seq[1], 44);
    ck_assert_int_eq(ib.bad, 0);
    bus_close(a);
    bus_close(b);
    ev_loop_destroy(loop);
}
END_TEST

/* A datagram longer than BUS_MAX_MSG (from outside the bus, which never sends one) is
 * truncated by recvmsg: it must be dropped and counted, not delivered cut short. */
START_TEST(truncated_datagram_dropped)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ib = {0};
    struct bus *b = open_bus(loop, ns, 1, &ib);

    uint8_t *big = make_msg(1, BUS_MAX_MSG + 1);
    raw_send(ns, 1, big, BUS_MAX_MSG + 1);
    free(big);
    uint8_t *small = make_msg(2, 64);
    raw_send(ns, 1, small, 64);
    free(small);
    RUN_UNTIL(loop, NULL, ib.n >= 1);
    ck_assert_int_eq(ib.n, 1);
    ck_assert_uint_eq(ib.seq[0], 2);
    ck_assert_int_eq(ib.bad, 0);
    ck_assert_uint_eq(stats(b).dropped, 1);
    ck_assert_uint_eq(stats(b).received, 1);
    bus_close(b);
    ev_loop_destroy(loop);
}
END_TEST

/* Send 64 KiB messages to a receiver that does not read until one is refused; returns how
 * many were accepted (sent or queued). */
static int
fill(struct bus *a, int slot, uint64_t pid, size_t len)
{
    int accepted = 0;
    while (accepted < INBOX_MAX && send_seq(a, slot, pid, (uint32_t)accepted, len) == 0)
        accepted++;
    ck_assert_int_lt(accepted, INBOX_MAX);
    return accepted;
}

START_TEST(full_receiver_queues_then_drops)
{
    struct ev_loop *la = ev_loop_new(EVFLAG_AUTO), *lb = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(la, ns, 0, &ia), *b = open_bus(lb, ns, 1, &ib);
    const size_t len = 64 * 1024;

    int accepted = fill(a, 1, 101, len);
    struct bus_stats s = stats(a);
    ck_assert_uint_eq(s.dropped, 1);
    ck_assert_uint_eq(s.sent + s.pending, (uint64_t)accepted);
    ck_assert_uint_gt(s.sent, 0);  /* the kernel took some ... */
    ck_assert_uint_le(s.pending * len, BUS_MAX_PENDING); /* ... and we queued up to the bound */
    ck_assert_uint_gt((s.pending + 2) * len, BUS_MAX_PENDING);
    for (int i = 0; i < 3; i++) /* still full: every further message is dropped */
        ck_assert_int_eq(send_seq(a, 1, 101, 9999, len), -1);
    ck_assert_uint_eq(stats(a).dropped, 4);
    ck_assert_uint_eq(stats(a).pending, s.pending);

    /* The sender alone makes no progress, and loses nothing, while the receiver sleeps. */
    for (int i = 0; i < 100; i++)
        spin(la, NULL);
    ck_assert_uint_eq(stats(a).pending, s.pending);
    ck_assert_uint_eq(stats(a).dropped, 4);

    /* The receiver reads once, which makes room in its kernel queue; a message sent before
     * the sender's loop has flushed must still wait behind the queued ones. */
    spin(lb, NULL);
    ck_assert_int_gt(ib.n, 0);
    ck_assert_int_eq(send_seq(a, 1, 101, (uint32_t)accepted, 16), 0);
    ck_assert_uint_eq(stats(a).pending, s.pending + 1);
    accepted++;

    RUN_UNTIL(la, lb, ib.n == accepted);
    for (int i = 0; i < accepted; i++)
        ck_assert_uint_eq(ib.seq[i], (uint32_t)i);
    ck_assert_int_eq(ib.bad, 0);
    s = stats(a);
    ck_assert_uint_eq(s.pending, 0);
    ck_assert_uint_eq(s.sent, (uint64_t)accepted);
    ck_assert_uint_eq(s.dropped, 4);

    ck_assert_int_eq(send_seq(a, 1, 101, 5000, 16), 0); /* straight through again */
    ck_assert_uint_eq(stats(a).pending, 0);
    ck_assert_uint_eq(stats(a).sent, (uint64_t)accepted + 1);
    RUN_UNTIL(la, lb, ib.n == accepted + 1);
    ck_assert_uint_eq(ib.seq[accepted], 5000);
    bus_close(a);
    bus_close(b);
    ev_loop_destroy(la);
    ev_loop_destroy(lb);
}
END_TEST

/* When the receiver goes away, what waited for it is dropped and counted, without a send
 * to notice: the kernel wakes the sender's EV_WRITE watcher. */
START_TEST(gone_receiver_drops_its_queue)
{
    struct ev_loop *la = ev_loop_new(EVFLAG_AUTO), *lb = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(la, ns, 0, &ia), *b = open_bus(lb, ns, 1, &ib);

    fill(a, 1, 101, 64 * 1024);
    uint64_t pending = stats(a).pending;
    ck_assert_uint_gt(pending, 0);
    bus_close(b);
    RUN_UNTIL(la, NULL, stats(a).pending == 0);
    ck_assert_uint_eq(stats(a).dropped, 1 + pending);
    ck_assert_int_eq(send_seq(a, 1, 101, 1, 16), -1); /* nobody there to connect to */
    ck_assert_uint_eq(stats(a).dropped, 2 + pending);
    ck_assert_int_eq(ib.n, 0);
    bus_close(a);
    ev_loop_destroy(la);
    ev_loop_destroy(lb);
}
END_TEST

START_TEST(unbound_slot_dropped_then_reached)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia);

    ck_assert_int_eq(send_seq(a, 5, 105, 1, 16), -1);
    ck_assert_int_eq(send_seq(a, 5, 105, 2, 16), -1);
    ck_assert_uint_eq(stats(a).dropped, 2);
    ck_assert_uint_eq(stats(a).sent, 0);
    struct bus *b = open_bus(loop, ns, 5, &ib);
    ck_assert_int_eq(send_seq(a, 5, 105, 3, 16), 0);
    RUN_UNTIL(loop, NULL, ib.n == 1);
    ck_assert_uint_eq(ib.seq[0], 3);
    ck_assert_uint_eq(stats(a).dropped, 2);
    ck_assert_uint_eq(stats(a).sent, 1);
    bus_close(a);
    bus_close(b);
    ev_loop_destroy(loop);
}
END_TEST

/* Slots: 0 us (running), 1 running, 2 draining, 3 starting, 4 running without a pid,
 * 5 running with nobody bound (at first), 6 released (free). */
START_TEST(broadcast_reaches_running_slots)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct scoreboard *sb = sb_create();
    ck_assert_ptr_nonnull(sb);
    static const uint64_t states[] = {SB_RUNNING,  SB_RUNNING, SB_DRAINING, SB_STARTING,
                                      SB_RUNNING,  SB_RUNNING, SB_RUNNING};
    enum { N = 7 };
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(sb_claim(sb, i, 1), i);
        sb_set(&sb->slot[i].state, states[i]);
        sb_set(&sb->slot[i].pid, i == 4 ? 0 : 100 + (uint64_t)i);
    }
    sb_release(sb, 6);
    char ns[64];
    new_ns(ns, sizeof ns);
    static struct inbox in[N];
    memset(in, 0, sizeof in);
    struct bus *bus[N] = {0};
    for (int i = 0; i < N; i++)
        if (i != 5)
            bus[i] = open_bus(loop, ns, i, &in[i]);

    uint8_t *m = make_msg(7, 32);
    ck_assert_int_eq(bus_broadcast(bus[0], sb, m, 32), 1); /* slot 5: nobody bound */
    ck_assert_uint_eq(stats(bus[0]).dropped, 1);
    /* A marker to each slot that must not get the broadcast: it would have gone through the
     * same socket before the marker, so once the marker is in, the broadcast is not. */
    static const int skipped[] = {0, 3, 4, 6};
    for (size_t k = 0; k < sizeof skipped / sizeof *skipped; k++) {
        int i = skipped[k];
        ck_assert_int_eq(send_seq(bus[0], i, sb_get(&sb->slot[i].pid), 99, 8), 0);
    }
    RUN_UNTIL(loop, NULL,
              in[0].n >= 1 && in[1].n >= 1 && in[2].n >= 1 && in[3].n >= 1 && in[4].n >= 1 &&
                  in[6].n >= 1);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(in[i].n, (i == 5 ? 0 : 1));
    ck_assert_uint_eq(in[1].seq[0], 7);
    ck_assert_uint_eq(in[2].seq[0], 7);
    for (size_t k = 0; k < sizeof skipped / sizeof *skipped; k++)
        ck_assert_uint_eq(in[skipped[k]].seq[0], 99);

    bus[5] = open_bus(loop, ns, 5, &in[5]); /* slot 5's worker is up now */
    ck_assert_int_eq(bus_broadcast(bus[0], sb, m, 32), 0);
    RUN_UNTIL(loop, NULL, in[1].n == 2 && in[2].n == 2 && in[5].n == 1);
    ck_assert_uint_eq(in[5].seq[0], 7);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(in[i].bad, 0);
    free(m);
    for (int i = 0; i < N; i++)
        bus_close(bus[i]);
    sb_destroy(sb);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(replaced_destination_reconnected)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0}, ib2 = {0}, ib3 = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia), *b = open_bus(loop, ns, 1, &ib);

    ck_assert_int_eq(send_seq(a, 1, 101, 0, 16), 0);
    RUN_UNTIL(loop, NULL, ib.n == 1);

    /* The worker of slot 1 is replaced: the new pid makes the sender reconnect. */
    bus_close(b);
    struct bus *b2 = open_bus(loop, ns, 1, &ib2);
    ck_assert_int_eq(send_seq(a, 1, 102, 1, 16), 0);
    RUN_UNTIL(loop, NULL, ib2.n == 1);
    ck_assert_uint_eq(ib2.seq[0], 1);
    ck_assert_uint_eq(stats(a).dropped, 0);

    /* Replaced again, but the caller still names the old pid: the old connection is refused
     * (that message is dropped and counted), and the next send connects afresh. */
    bus_close(b2);
    struct bus *b3 = open_bus(loop, ns, 1, &ib3);
    ck_assert_int_eq(send_seq(a, 1, 102, 2, 16), -1);
    ck_assert_uint_eq(stats(a).dropped, 1);
    ck_assert_int_eq(send_seq(a, 1, 102, 3, 16), 0);
    RUN_UNTIL(loop, NULL, ib3.n == 1);
    ck_assert_uint_eq(ib3.seq[0], 3);
    ck_assert_int_eq(ib.n + ib2.n, 2);
    bus_close(a);
    bus_close(b3);
    ev_loop_destroy(loop);
}
END_TEST

/* A callback may close its own bus: nothing more is delivered, and the free waits for the
 * callback to return (the sanitizer build would catch a use after free). */
START_TEST(close_inside_callback)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia), *b = open_bus(loop, ns, 1, &ib);
    ib.close_on_first = b;
    for (uint32_t i = 0; i < 3; i++)
        ck_assert_int_eq(send_seq(a, 1, 101, i, 16), 0);
    RUN_UNTIL(loop, NULL, ib.n >= 1);
    ck_assert_int_eq(ib.n, 1); /* the other two were in the same batch */
    ck_assert_int_eq(send_seq(a, 1, 101, 3, 16), -1); /* the slot is closed */
    bus_close(a);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(bad_arguments)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64], err[256], longns[200];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0};
    err[0] = '\0';
    ck_assert_ptr_null(bus_open(loop, ns, -1, on_msg, &ia, err, sizeof err));
    ck_assert_str_ne(err, "");
    err[0] = '\0';
    ck_assert_ptr_null(bus_open(loop, ns, SB_SLOTS, on_msg, &ia, err, sizeof err));
    ck_assert_str_ne(err, "");
    memset(longns, 'x', sizeof longns - 1);
    longns[sizeof longns - 1] = '\0';
    err[0] = '\0';
    ck_assert_ptr_null(bus_open(loop, longns, 0, on_msg, &ia, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "too long"));

    struct bus *a = open_bus(loop, ns, 0, &ia);
    err[0] = '\0';
    ck_assert_ptr_null(bus_open(loop, ns, 0, on_msg, &ia, err, sizeof err)); /* taken */
    ck_assert_ptr_nonnull(strstr(err, "in use"));
    ck_assert_int_eq(send_seq(a, -1, 1, 0, 8), -1);
    ck_assert_int_eq(send_seq(a, SB_SLOTS, 1, 0, 8), -1);
    ck_assert_uint_eq(stats(a).dropped, 2);
    bus_close(a);
    bus_close(NULL);
    ev_loop_destroy(loop);
}
END_TEST

/* Anyone on the machine can send to an abstract name: a message from another user is
 * counted as rejected and never reaches the callback. Needs root, to become that user. */
START_TEST(foreign_user_rejected)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char ns[64];
    new_ns(ns, sizeof ns);
    struct inbox ia = {0}, ib = {0};
    struct bus *a = open_bus(loop, ns, 0, &ia), *b = open_bus(loop, ns, 1, &ib);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uint8_t m[16] = {0};
        struct sockaddr_un addr;
        socklen_t alen = slot_addr(&addr, ns, 1);
        int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
        bool ok = fd >= 0 && setresgid(65534, 65534, 65534) == 0 &&
                  setresuid(65534, 65534, 65534) == 0 &&
                  sendto(fd, m, sizeof m, 0, (struct sockaddr *)&addr, alen) == sizeof m;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the foreign sender failed");
    ck_assert_int_eq(send_seq(a, 1, 101, 1, 16), 0);
    RUN_UNTIL(loop, NULL, ib.n >= 1);
    ck_assert_int_eq(ib.n, 1);
    ck_assert_uint_eq(ib.seq[0], 1);
    ck_assert_uint_eq(stats(b).rejected, 1);
    ck_assert_uint_eq(stats(b).received, 1);
    bus_close(a);
    bus_close(b);
    ev_loop_destroy(loop);
}
END_TEST

Suite *
bus_suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("bus");
    tcase_add_test(tc, exchange_in_order);
    tcase_add_test(tc, largest_message_intact);
    tcase_add_test(tc, truncated_datagram_dropped);
    tcase_add_test(tc, full_receiver_queues_then_drops);
    tcase_add_test(tc, gone_receiver_drops_its_queue);
    tcase_add_test(tc, unbound_slot_dropped_then_reached);
    tcase_add_test(tc, broadcast_reaches_running_slots);
    tcase_add_test(tc, replaced_destination_reconnected);
    tcase_add_test(tc, close_inside_callback);
    tcase_add_test(tc, bad_arguments);
    if (geteuid() == 0)
        tcase_add_test(tc, foreign_user_rejected);
    else
        fprintf(stderr, "bus: not root: skipping the test of a sender of another user\n");
    suite_add_tcase(s, tc);
    return s;
}
