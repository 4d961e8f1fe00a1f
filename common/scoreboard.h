/* scoreboard: what every process of an instance knows about the others.
 *
 * One anonymous MAP_SHARED mapping, created by the master before the first fork, so that
 * every worker inherits it. Each worker owns one slot and is its only writer; the master
 * owns the header. Readers (the health and metrics handlers of any worker, the master's
 * watchdog) read every slot without locks: each field is a naturally aligned 64-bit word
 * written and read with relaxed atomics, so a reader may see a slightly old figure but
 * never a torn one. */
#ifndef SESSIOND_SCOREBOARD_H
#define SESSIOND_SCOREBOARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "peer_limits.h"

/* Twice the largest worker count: during a reload or a replacement, old and new workers
 * hold slots at the same time. */
#define SB_SLOTS 128
#define SB_DEAD_RING 64

enum sb_state { SB_FREE = 0, SB_STARTING, SB_RUNNING, SB_DRAINING };

/* Status codes counted one by one; anything else lands in the last bucket ("other"). */
#define SB_STATUS_CODES                                                                            \
    X(200)                                                                                         \
    X(201) X(202) X(204) X(301) X(304) X(400) X(401) X(403) X(404) X(405) X(408) X(409) X(411)     \
        X(412) X(413) X(414) X(415) X(417) X(429) X(431) X(500) X(501) X(503) X(505)
enum {
#define X(code) SB_STATUS_##code,
    SB_STATUS_CODES
#undef X
        SB_STATUS_OTHER,
    SB_NSTATUS
};

/* Histogram bounds of request and store durations, in microseconds (Prometheus "le"
 * labels). */
#define SB_HIST_BOUNDS_US                                                                          \
    {                                                                                              \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,     \
            2500000                                                                                \
    }
#define SB_NHIST 14

/* Counters a worker accumulates; the master folds a dead worker's into the header, so
 * that instance totals never go backwards when a worker is replaced. */
struct sb_counters {
    uint64_t requests;
    uint64_t status[SB_NSTATUS];
    uint64_t hist[SB_NHIST + 1]; /* the last bucket is +Inf */
    uint64_t duration_us_sum;
    uint64_t ws_in, ws_out;
    uint64_t ws_slow_closed; /* WebSockets closed for falling ws_max_queue behind */
    uint64_t bus_dropped;    /* messages between workers that were lost */
    uint64_t pubsub_dropped; /* publishes to other instances lost (Redis away) */
    uint64_t history_unkept; /* messages of history channels published without being kept */
    uint64_t accepted;
    uint64_t store_ops;                /* store operations started */
    uint64_t store_errors;             /* of those, failed for the store's own reasons */
    uint64_t store_hist[SB_NHIST + 1]; /* answered (by the store, or failed by it), by the
                                        * time from call to answer */
    uint64_t store_us_sum;
};

struct sb_slot {
    uint64_t pid;
    uint64_t id;           /* worker number, 0..workers-1, kept by its replacement */
    uint64_t state;        /* enum sb_state */
    uint64_t generation;   /* bumped by every reload */
    uint64_t started_at;   /* Unix seconds */
    uint64_t heartbeat_ms; /* CLOCK_MONOTONIC milliseconds of the last beat */
    uint64_t conns_http;
    uint64_t conns_ws;
    uint64_t rss_bytes;
    uint64_t load_permille; /* CPU used over the last beat, in 1/1000 of a core */
    uint64_t cpu_permille;  /* CPU used over the last second or so, in 1/1000 of a core:
                             * steadier than load when beats are short */
    uint64_t accepting;     /* 1 while its accept watchers run */
    uint64_t restarts;      /* times this worker id was respawned after dying on its own;
                             * written by the master when it claims the slot */
    uint64_t lease_epoch;   /* with Redis, the worker's lease is renamed at every reconnect:
                             * its number now, for its siblings to end it when it dies */
    struct sb_counters c;
};

struct scoreboard {
    uint64_t master_pid;
    uint64_t instance_nonce; /* random, never 0: tells this instance's messages on Redis */
    uint64_t started_at;     /* Unix seconds the master started */
    uint64_t workers_target;
    uint64_t restarts;
    uint64_t draining;
    uint64_t master_rss;
    uint64_t slots_used; /* slots below this index have been claimed at some time */
    /* Added to a slot in the keys of the instance's roster file, which outlives a master
     * across an upgrade: 0 or SB_SLOTS, the one its predecessor's workers do not use. */
    uint64_t roster_base;
    /* The last SB_DEAD_RING workers that died, (slot, pid, lease epoch), for the living
     * to clean up after them (with Redis, their leases); dead_count counts them all. */
    uint64_t dead_count;
    uint64_t dead_slot[SB_DEAD_RING], dead_pid[SB_DEAD_RING], dead_epoch[SB_DEAD_RING];
    struct sb_counters retired; /* counters of workers that are gone */
    struct sb_slot slot[SB_SLOTS];
    struct limit_table limits; /* per-address and per-user limits of the instance */
};

/* Create the shared mapping; NULL on failure (errno set). */
struct scoreboard *sb_create(void);
void sb_destroy(struct scoreboard *sb);

/* Master: find a free slot, mark it STARTING for a worker; -1 if none. */
int sb_claim(struct scoreboard *sb, int id, uint64_t generation);
/* Master: fold a dead worker's counters into retired, note it among the dead, and free
 * its slot. */
void sb_release(struct scoreboard *sb, int slot);

static inline uint64_t
sb_get(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void
sb_set(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* Single-writer increment: the slot's owner is the only writer, so no locked add. */
static inline void
sb_add(uint64_t *p, uint64_t v)
{
    sb_set(p, sb_get(p) + v);
}

/* The index in sb_counters.status for an HTTP status code. */
int sb_status_index(int code);
/* The status code of an index ("other" gives 0). */
int sb_status_code(int index);
/* Count one finished request of the given status and duration into a slot. */
void sb_count_request(struct sb_slot *s, int status, uint64_t duration_us);
void sb_count_store_op(struct sb_slot *s, uint64_t duration_us);

/* How many slots readers need to look at (the high-water mark of claimed slots). */
static inline int
sb_nslots(const struct scoreboard *sb)
{
    return (int)sb_get(&sb->slots_used);
}

/* Totals over the retired counters and every live slot. */
void sb_sum_counters(const struct scoreboard *sb, struct sb_counters *out);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t sb_now_ms(void);

#endif
