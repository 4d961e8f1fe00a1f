#include "peer_limits.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define COUNT_BITS 24
#define COUNT_MASK ((UINT64_C(1) << COUNT_BITS) - 1)
#define KEY_MASK ((UINT64_C(1) << (64 - COUNT_BITS)) - 1)
#define BUCKET_SET (UINT64_C(1) << 31)
#define MILLI 1000u
/* A bucket untouched this long has refilled (it holds one second of tokens), so its
 * entry, once nobody holds it, is as good as empty. */
#define BUCKET_IDLE_MS 2000u

static inline uint64_t
load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline bool
cas(uint64_t *p, uint64_t *expect, uint64_t want)
{
    return __atomic_compare_exchange_n(p, expect, want, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

void
limit_init(struct limit_table *t)
{
    if (getrandom(t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t->seed[0] = (uint64_t)ts.tv_nsec << 20 ^ (uint64_t)getpid();
        t->seed[1] = (uint64_t)ts.tv_sec * 0x9e3779b97f4a7c15u;
    }
}

static inline uint64_t
mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return h;
}

uint64_t
limit_key(const struct limit_table *t, enum limit_kind kind, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = t->seed[0] ^ ((uint64_t)kind << 56) ^ n;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = 0;
        memcpy(&w, b + i, n - i < 8 ? n - i : 8);
        h = mix(h ^ w ^ t->seed[1]);
    }
    h = mix(h) & KEY_MASK;
    return h != 0 ? h : 1;
}

static bool
bucket_idle(uint64_t bucket, uint64_t now_ms)
{
    return bucket == 0 || (uint32_t)((uint32_t)now_ms - (uint32_t)(bucket >> 32)) > BUCKET_IDLE_MS;
}

uint64_t
limit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The entry of key, claimed if it has none (claim) and there is room; NULL otherwise. */
static struct limit_entry *
find(struct limit_table *t, uint64_t key, bool claim, uint64_t now)
{
    size_t home = (size_t)key & (LIMIT_ENTRIES - 1);
    for (size_t i = 0; i <= LIMIT_PROBE; i++) {
        struct limit_entry *e = &t->e[(home + i) & (LIMIT_ENTRIES - 1)];
        uint64_t w = load(&e->word);
        for (;;) {
            if (w >> COUNT_BITS == key)
                return e;
            if (!claim || (w & COUNT_MASK) != 0 || (w != 0 && !bucket_idle(load(&e->bucket), now)))
                break;
            /* Empty, or nobody's and refilled: make it key's, with a fresh bucket. */
            if (cas(&e->word, &w, key << COUNT_BITS)) {
                __atomic_store_n(&e->bucket, 0, __ATOMIC_RELAXED);
                return e;
            }
        }
    }
    if (claim)
        __atomic_fetch_add(&t->misses, 1, __ATOMIC_RELAXED);
    return NULL;
}

bool
limit_acquire(struct limit_table *t, uint64_t key, unsigned max)
{
    struct limit_entry *e = find(t, key, true, limit_now_ms());
    if (e == NULL)
        return true; /* no room to count: fail open, counted in misses */
    uint64_t w = load(&e->word);
    for (;;) {
        if (w >> COUNT_BITS != key)
            return limit_acquire(t, key, max); /* taken over meanwhile: find again */
        uint64_t n = w & COUNT_MASK;
        if ((max != 0 && n >= max) || n == COUNT_MASK)
            return false;
        if (cas(&e->word, &w, w + 1))
            return true;
    }
}

void
limit_release(struct limit_table *t, uint64_t key)
{
    struct limit_entry *e = find(t, key, false, 0);
    if (e == NULL)
        return;
    uint64_t w = load(&e->word);
    while (w >> COUNT_BITS == key && (w & COUNT_MASK) != 0 && !cas(&e->word, &w, w - 1))
        ;
}

unsigned
limit_count(struct limit_table *t, uint64_t key)
{
    struct limit_entry *e = find(t, key, false, 0);
    uint64_t w = e != NULL ? load(&e->word) : 0;
    return w >> COUNT_BITS == key ? (unsigned)(w & COUNT_MASK) : 0;
}

unsigned
limit_take(struct limit_table *t, uint64_t key, unsigned rate, uint64_t now)
{
    if (rate == 0)
        return 0;
    struct limit_entry *e = find(t, key, true, now);
    if (e == NULL)
        return 0;
    uint64_t full = (uint64_t)rate * MILLI, b = load(&e->bucket);
    for (;;) {
        uint64_t tokens = full;
        if (b & BUCKET_SET) {
            uint64_t elapsed = (uint32_t)((uint32_t)now - (uint32_t)(b >> 32));
            tokens = (b & (BUCKET_SET - 1)) + elapsed * rate;
            if (tokens > full)
                tokens = full;
        }
        if (tokens < MILLI) /* the wait for the missing part of one token, rounded up */
            return (unsigned)(((MILLI - tokens) + rate - 1) / rate + 999) / 1000;
        uint64_t next = (now & 0xffffffffu) << 32 | BUCKET_SET | (tokens - MILLI);
        if (cas(&e->bucket, &b, next))
            return 0;
    }
}
