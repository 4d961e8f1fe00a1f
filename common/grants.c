#include "grants.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "namespace.h"

/* A stored array, read once: NULL for none (length 0), *bad set if it is no array. */
static json_t *
load(const char *text, size_t len, bool *bad)
{
    if (len == 0)
        return NULL;
    json_t *a = json_loadb(text, len, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        *bad = true;
        return NULL;
    }
    return a;
}

/* The valid strings of a (at most NS_GRANTS_MAX), each a length byte and its bytes,
 * appended at out + *used (or only counted into *used, with out NULL); their count. */
static int
pack(const json_t *a, bool patterns, char *out, size_t *used)
{
    int n = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        size_t l = json_string_length(v);
        bool ok = s != NULL && (patterns ? ns_pattern_ok(s, l) : ns_channel_ok(s, l));
        if (!ok || n == NS_GRANTS_MAX)
            continue;
        if (out != NULL) {
            out[*used] = (char)l;
            memcpy(out + *used + 1, s, l);
        }
        *used += 1 + l;
        n++;
    }
    return n;
}

struct grants *
grants_parse(const char *channels, size_t channels_len, const char *subscribe,
             size_t subscribe_len, int *err)
{
    bool bad = false;
    json_t *c = load(channels, channels_len, &bad);
    json_t *s = load(subscribe, subscribe_len, &bad);
    struct grants *g = NULL;
    size_t need = 0;
    int nc = pack(c, true, NULL, &need), ns = pack(s, false, NULL, &need);
    *err = bad ? -1 : 0;
    if (nc + ns > 0 && (g = malloc(sizeof *g + need)) == NULL)
        *err = -1;
    if (g != NULL) {
        size_t used = 0;
        g->nchannels = (uint8_t)pack(c, true, g->p, &used);
        g->nsubscribe = (uint8_t)pack(s, false, g->p, &used);
    }
    json_decref(c);
    json_decref(s);
    return g;
}

/* The entry at p: its bytes, and where the next one starts. */
static const char *
entry(const char *p, size_t *len, const char **next)
{
    *len = (uint8_t)p[0];
    *next = p + 1 + *len;
    return p + 1;
}

bool
grants_allow(const struct grants *g, const char *channel, size_t len)
{
    if (g == NULL)
        return false;
    const char *p = g->p;
    for (unsigned i = 0; i < g->nchannels; i++) {
        size_t l;
        const char *s = entry(p, &l, &p);
        if (ns_grant_match(s, l, channel, len))
            return true;
    }
    return grants_subscribes(g, channel, len);
}

/* Where the server-side channels start, after the patterns. */
static const char *
subscribe_start(const struct grants *g)
{
    const char *p = g->p;
    size_t l;
    for (unsigned i = 0; i < g->nchannels; i++)
        entry(p, &l, &p);
    return p;
}

const char *
grants_subscribe_at(const struct grants *g, unsigned i, size_t *len)
{
    const char *p = subscribe_start(g);
    const char *s = entry(p, len, &p);
    while (i-- > 0)
        s = entry(p, len, &p);
    return s;
}

bool
grants_subscribes(const struct grants *g, const char *channel, size_t len)
{
    if (g == NULL)
        return false;
    const char *p = subscribe_start(g);
    for (unsigned i = 0; i < g->nsubscribe; i++) {
        size_t l;
        const char *s = entry(p, &l, &p);
        if (l == len && memcmp(s, channel, len) == 0)
            return true;
    }
    return false;
}
