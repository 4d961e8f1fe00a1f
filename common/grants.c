#include "grants.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "namespace.h"

/* Append the valid strings of a JSON array (at most NS_GRANTS_MAX) to out; their count,
 * or -1 if the text is not an array. */
static int
pack(const char *text, size_t len, bool patterns, char *out, size_t *used)
{
    if (len == 0)
        return 0;
    json_t *a = json_loadb(text, len, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return -1;
    }
    int n = 0;
    size_t i;
    json_t *v;
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
    json_decref(a);
    return n;
}

struct grants *
grants_parse(const char *channels, size_t channels_len, const char *subscribe,
             size_t subscribe_len, int *err)
{
    size_t need = 0;
    int nc = pack(channels, channels_len, true, NULL, &need);
    int ns = pack(subscribe, subscribe_len, false, NULL, &need);
    *err = nc < 0 || ns < 0 ? -1 : 0;
    if (nc <= 0 && ns <= 0)
        return NULL;
    struct grants *g = malloc(sizeof *g + need);
    if (g == NULL) {
        *err = -1;
        return NULL;
    }
    size_t used = 0;
    g->nchannels = (uint8_t)(nc > 0 ? pack(channels, channels_len, true, g->p, &used) : 0);
    g->nsubscribe = (uint8_t)(ns > 0 ? pack(subscribe, subscribe_len, false, g->p, &used) : 0);
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
