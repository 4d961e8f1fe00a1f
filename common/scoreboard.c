#include "scoreboard.h"

#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

static const int status_codes[] = {
#define X(code) code,
    SB_STATUS_CODES
#undef X
};

static const uint64_t hist_bounds[SB_NHIST] = SB_HIST_BOUNDS_US;

struct scoreboard *
sb_create(void)
{
    struct scoreboard *sb = mmap(NULL, sizeof(struct scoreboard), PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sb == MAP_FAILED) return NULL; /* anonymous mappings start zeroed */
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != sizeof nonce)
        nonce = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    sb_set(&sb->instance_nonce, nonce | 1);
    limit_init(&sb->limits);
    return sb;
}

void
sb_destroy(struct scoreboard *sb)
{
    if (sb != NULL) munmap(sb, sizeof *sb);
}

int
sb_claim(struct scoreboard *sb, int id, uint64_t generation)
{
    for (int i = 0; i < SB_SLOTS; i++) {
        struct sb_slot *s = &sb->slot[i];
        if (sb_get(&s->state) != SB_FREE) continue;
        memset(s, 0, sizeof *s);
        sb_set(&s->id, (uint64_t)id);
        sb_set(&s->generation, generation);
        sb_set(&s->heartbeat_ms, (uint64_t)sb_now_ms());
        sb_set(&s->started_at, (uint64_t)time(NULL));
        sb_set(&s->state, SB_STARTING);
        if ((uint64_t)i >= sb_get(&sb->slots_used)) sb_set(&sb->slots_used, (uint64_t)i + 1);
        return i;
    }
    return -1;
}

static void
add_counters(struct sb_counters *to, const struct sb_counters *from)
{
    /* sb_counters is nothing but uint64_t words, so it can be summed as an array. */
    const uint64_t *f = (const uint64_t *)from;
    uint64_t *t = (uint64_t *)to;
    for (size_t i = 0; i < sizeof *from / sizeof(uint64_t); i++)
        sb_set(&t[i], sb_get(&t[i]) + sb_get(&f[i]));
}

void
sb_release(struct scoreboard *sb, int slot)
{
    struct sb_slot *s = &sb->slot[slot];
    add_counters(&sb->retired, &s->c);
    uint64_t n = sb_get(&sb->dead_count);
    sb_set(&sb->dead_slot[n % SB_DEAD_RING], (uint64_t)slot);
    sb_set(&sb->dead_pid[n % SB_DEAD_RING], sb_get(&s->pid));
    sb_set(&sb->dead_epoch[n % SB_DEAD_RING], sb_get(&s->lease_epoch));
    __atomic_store_n(&sb->dead_count, n + 1, __ATOMIC_RELEASE); /* after the entry */
    sb_set(&s->pid, 0);
    sb_set(&s->conns_http, 0);
    sb_set(&s->conns_ws, 0);
    sb_set(&s->state, SB_FREE);
}

int
sb_status_index(int code)
{
    for (int i = 0; i < SB_STATUS_OTHER; i++)
        if (status_codes[i] == code) return i;
    return SB_STATUS_OTHER;
}

int
sb_status_code(int index)
{
    return index >= 0 && index < SB_STATUS_OTHER ? status_codes[index] : 0;
}

static void
observe(uint64_t hist[SB_NHIST + 1], uint64_t *sum, uint64_t us)
{
    int b = 0;
    while (b < SB_NHIST && us > hist_bounds[b])
        b++;
    sb_add(&hist[b], 1);
    sb_add(sum, us);
}

void
sb_count_request(struct sb_slot *s, int status, uint64_t duration_us)
{
    sb_add(&s->c.requests, 1);
    sb_add(&s->c.status[sb_status_index(status)], 1);
    observe(s->c.hist, &s->c.duration_us_sum, duration_us);
}

void
sb_count_store_op(struct sb_slot *s, uint64_t duration_us)
{
    observe(s->c.store_hist, &s->c.store_us_sum, duration_us);
}

void
sb_sum_counters(const struct scoreboard *sb, struct sb_counters *out)
{
    memset(out, 0, sizeof *out);
    add_counters(out, &sb->retired);
    for (int i = 0; i < sb_nslots(sb); i++)
        if (sb_get(&sb->slot[i].state) != SB_FREE) add_counters(out, &sb->slot[i].c);
}

int64_t
sb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
