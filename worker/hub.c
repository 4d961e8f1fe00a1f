#include "hub.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>


#define HUB_MIN_BUCKETS 64

struct hub_chan {
    struct hub_chan *next; /* in its bucket */
    uint64_t hash;
    struct hub_member **m;
    void **sub; /* m[i]'s sub, so that a fan-out reads no membership */
    size_t n, cap;
    uint64_t offset; /* with history: the newest offset its members were sent */
    size_t len;
    char name[];
};

struct hub_member {
    struct hub_chan *chan;
    void *sub;
    size_t idx; /* where this membership sits in chan->m */
};

struct hub {
    struct hub_chan **bucket;
    size_t nbuckets; /* a power of two */
    size_t nchan;
    uint64_t seed;
};

/* FNV-1a from a random starting point, then a final mix: names that collide in one
 * process do not in the next, which is enough to keep a client from piling its channels
 * into one bucket on purpose. */
static uint64_t
hub_hash(const struct hub *h, const char *s, size_t len)
{
    uint64_t x = h->seed;
    for (size_t i = 0; i < len; i++)
        x = (x ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

struct hub *
hub_new(void)
{
    struct hub *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    h->bucket = calloc(HUB_MIN_BUCKETS, sizeof *h->bucket);
    if (h->bucket == NULL) {
        free(h);
        return NULL;
    }
    h->nbuckets = HUB_MIN_BUCKETS;
    if (getrandom(&h->seed, sizeof h->seed, GRND_NONBLOCK) != sizeof h->seed)
        h->seed = (uint64_t)(uintptr_t)h ^ 0xcbf29ce484222325ULL;
    return h;
}

static void
chan_free(struct hub_chan *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->m[i]);
    free(c->m);
    free(c->sub);
    free(c);
}

void
hub_free(struct hub *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        struct hub_chan *c = h->bucket[i];
        while (c != NULL) {
            struct hub_chan *next = c->next;
            chan_free(c);
            c = next;
        }
    }
    free(h->bucket);
    free(h);
}

static struct hub_chan **
chan_slot(const struct hub *h, const char *name, size_t len, uint64_t hash)
{
    struct hub_chan **p = &h->bucket[hash & (h->nbuckets - 1)];
    while (*p != NULL &&
           ((*p)->hash != hash || (*p)->len != len || memcmp((*p)->name, name, len) != 0))
        p = &(*p)->next;
    return p;
}

/* Double the buckets when channels outnumber them; on failure the table stays as it is
 * (only slower). */
static void
hub_grow(struct hub *h)
{
    size_t nb = h->nbuckets * 2;
    /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    struct hub_chan **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < h->nbuckets; i++) {
        struct hub_chan *c = h->bucket[i];
        while (c != NULL) {
            struct hub_chan *next = c->next;
            c->next = b[c->hash & (nb - 1)];
            b[c->hash & (nb - 1)] = c;
            c = next;
        }
    }
    free(h->bucket);
    h->bucket = b;
    h->nbuckets = nb;
}

static struct hub_chan *
chan_get(struct hub *h, const char *name, size_t len)
{
    uint64_t hash = hub_hash(h, name, len);
    struct hub_chan **p = chan_slot(h, name, len, hash);
    if (*p != NULL)
        return *p;
    struct hub_chan *c = calloc(1, sizeof *c + len);
    if (c == NULL)
        return NULL;
    c->hash = hash;
    c->len = len;
    memcpy(c->name, name, len);
    *p = c;
    if (++h->nchan > h->nbuckets)
        hub_grow(h);
    return c;
}

static void
chan_remove(struct hub *h, struct hub_chan *c)
{
    struct hub_chan **p = chan_slot(h, c->name, c->len, c->hash);
    *p = c->next;
    h->nchan--;
    chan_free(c);
}

/* Room for one more member in both arrays. When only the first could grow it stays
 * bigger than cap says, which is harmless. */
static int
chan_reserve(struct hub_chan *c)
{
    if (c->n < c->cap) return 0;
    size_t cap = c->cap ? c->cap * 2 : 4;
    /* Arrays of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
    struct hub_member **v = realloc(c->m, cap * sizeof *v);
    if (v == NULL) return -1;
    c->m = v;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression) */
    void **s = realloc(c->sub, cap * sizeof *s);
    if (s == NULL) return -1;
    c->sub = s;
    c->cap = cap;
    return 0;
}

struct hub_member *
hub_join(struct hub *h, const char *name, size_t len, void *sub)
{
    struct hub_chan *c = chan_get(h, name, len);
    if (c == NULL)
        return NULL;
    struct hub_member *m = malloc(sizeof *m);
    if (m != NULL && chan_reserve(c) < 0) {
        free(m);
        m = NULL;
    }
    if (m == NULL) {
        if (c->n == 0)
            chan_remove(h, c);
        return NULL;
    }
    *m = (struct hub_member){.chan = c, .sub = sub, .idx = c->n};
    c->sub[c->n] = sub;
    c->m[c->n++] = m;
    return m;
}

void
hub_leave(struct hub *h, struct hub_member *m)
{
    struct hub_chan *c = m->chan;
    struct hub_member *last = c->m[--c->n];
    c->m[m->idx] = last;
    c->sub[m->idx] = last->sub;
    last->idx = m->idx;
    free(m);
    if (c->n == 0)
        chan_remove(h, c);
}

struct hub_member *const *
hub_members(const struct hub *h, const char *name, size_t len, size_t *n)
{
    struct hub_chan *c = *chan_slot(h, name, len, hub_hash(h, name, len));
    *n = c != NULL ? c->n : 0;
    return c != NULL ? c->m : NULL;
}

void *const *
hub_subs(const struct hub *h, const char *name, size_t len, size_t *n)
{
    struct hub_chan *c = *chan_slot(h, name, len, hub_hash(h, name, len));
    *n = c != NULL ? c->n : 0;
    return c != NULL ? c->sub : NULL;
}

uint64_t *
hub_offset(const struct hub *h, const char *name, size_t len)
{
    struct hub_chan *c = *chan_slot(h, name, len, hub_hash(h, name, len));
    return c != NULL ? &c->offset : NULL;
}

void *
hub_member_sub(const struct hub_member *m)
{
    return m->sub;
}

const char *
hub_member_channel(const struct hub_member *m, size_t *len)
{
    *len = m->chan->len;
    return m->chan->name;
}

size_t
hub_nchannels(const struct hub *h)
{
    return h->nchan;
}

void
hub_each_channel(const struct hub *h, void (*fn)(void *arg, const char *name, size_t len),
                 void *arg)
{
    for (size_t i = 0; i < h->nbuckets; i++)
        for (const struct hub_chan *c = h->bucket[i]; c != NULL; c = c->next)
            fn(arg, c->name, c->len);
}
