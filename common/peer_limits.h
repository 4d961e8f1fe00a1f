/* peer_limits: per-client counters that every worker of an instance shares, for the limits
 * that a client could otherwise dodge by landing on another worker: connections per IP,
 * requests per second per IP (a token bucket) and requests in flight per user.
 *
 * The table lives in the scoreboard's shared mapping and takes no lock. An entry is two
 * words: one holds the key's 40-bit hash and a 24-bit count, so that claiming a free
 * entry, counting and releasing are each one compare-and-swap that cannot mix two keys;
 * the other is the key's token bucket. An entry whose count is zero and whose bucket has
 * refilled can be taken over by another key. When the table is full in a key's
 * neighbourhood, the limit is not applied (fail open) and the miss is counted. */
#ifndef SESSIOND_PEER_LIMITS_H
#define SESSIOND_PEER_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIMIT_ENTRIES 65536 /* a power of two: 1 MiB of shared memory */
#define LIMIT_PROBE 16      /* entries a key may live in, after its home */

/* What a key counts; the same bytes in two kinds are two keys. */
enum limit_kind { LIMIT_IP = 1, LIMIT_USER = 2 };

struct limit_entry {
    uint64_t word;   /* key << 24 | count; 0 = never used */
    uint64_t bucket; /* token bucket: last refill (ms, 32 bits) << 32 | set bit | milli-tokens */
};

struct limit_table {
    uint64_t seed[2]; /* random per start, so that nobody can aim keys at one neighbourhood */
    uint64_t misses;  /* lookups that found no room: the limit was not applied */
    struct limit_entry e[LIMIT_ENTRIES];
};

/* Fill the seed (once, in the master, before any worker uses the table). */
void limit_init(struct limit_table *t);

/* The key of n bytes of a kind: a keyed hash, never 0. */
uint64_t limit_key(const struct limit_table *t, enum limit_kind kind, const void *p, size_t n);

/* One more holder of key, unless it has max already (max 0: no limit, always counted).
 * Returns false when refused. Every true must be matched by one limit_release(). */
bool limit_acquire(struct limit_table *t, uint64_t key, unsigned max);
void limit_release(struct limit_table *t, uint64_t key);

/* How many hold key now. */
unsigned limit_count(struct limit_table *t, uint64_t key);

/* The clock of the buckets: CLOCK_MONOTONIC in ms. */
uint64_t limit_now_ms(void);

/* Take one token from key's bucket, which holds at most rate tokens and gains rate per
 * second; now_ms is limit_now_ms(). Returns 0 when a token was taken, else the
 * whole seconds until one will be there (for Retry-After, at least 1). */
unsigned limit_take(struct limit_table *t, uint64_t key, unsigned rate, uint64_t now_ms);

#endif
