#include "router.h"

#include <stdio.h>
#include <string.h>

#include "api.h"
#include "http.h"
#include "util.h"
#include "worker.h"
#include "ws.h"

static const struct route routes[] = {
    {HTTP_GET, "/api/health", api_health, OWNER_NONE},
    {HTTP_GET, "/health", api_health, OWNER_NONE},
    {HTTP_GET, "/livez", api_livez, OWNER_NONE},
    {HTTP_GET, "/readyz", api_readyz, OWNER_NONE},
    {HTTP_GET, "/metrics", api_metrics, OWNER_NONE},
    {HTTP_GET, "/dashboard", api_dashboard, OWNER_NONE},
    {HTTP_GET, "/client.js", api_client_js, OWNER_NONE},
    {HTTP_POST, "/api/sessions", api_session_create, OWNER_NONE},
    {HTTP_GET, "/api/sessions/{id}", api_session_get, OWNER_NONE},
    {HTTP_PATCH, "/api/sessions/{id}", api_session_patch, OWNER_NONE},
    {HTTP_DELETE, "/api/sessions/{id}", api_session_delete, OWNER_NONE},
    {HTTP_POST, "/api/sessions/{id}/touch", api_session_touch, OWNER_NONE},
    {HTTP_GET, "/api/users/{user}/sessions", api_user_sessions, OWNER_USER},
    {HTTP_DELETE, "/api/users/{user}/sessions", api_user_sessions_delete, OWNER_USER},
    {HTTP_GET, "/api/session", api_own_session, OWNER_TOKEN},
    {HTTP_DELETE, "/api/session", api_own_session_delete, OWNER_TOKEN},
    {HTTP_GET, "/ws", ws_upgrade_request, OWNER_NONE},
    {HTTP_POST, "/api/channels/{channel}/publish", api_channel_publish, OWNER_NONE},
    {HTTP_GET, "/api/channels/{channel}/presence", api_channel_presence, OWNER_NONE},
    {HTTP_GET, "/api/channels/{channel}/history", api_channel_history, OWNER_NONE},
#ifdef SESSIOND_TEST_HOOKS
    {HTTP_GET, "/debug/{action}", api_debug, OWNER_NONE},
    {HTTP_POST, "/debug/{action}", api_debug, OWNER_NONE},
#endif
};

static const char *const method_names[] = {
    [HTTP_GET] = "GET",         [HTTP_HEAD] = "HEAD",   [HTTP_POST] = "POST",
    [HTTP_PUT] = "PUT",         [HTTP_PATCH] = "PATCH", [HTTP_DELETE] = "DELETE",
    [HTTP_OPTIONS] = "OPTIONS",
};

/* The byte an escape "%XX" at p stands for, or -1 unless p[1] and p[2] are hex digits. */
static int
escape_value(const char *p)
{
    int hi = hex_digit((unsigned char)p[1]);
    int lo = hi < 0 ? -1 : hex_digit((unsigned char)p[2]);
    return lo < 0 ? -1 : hi * 16 + lo;
}

/* Whether every '%' of the path starts an escape of two hex digits, and none is %00 (no
 * name may hold a NUL, and one would cut the C strings made of it). Fills why, and
 * returns false, when not. */
static bool
path_check(struct http_str path, char *why, size_t whylen)
{
    for (const char *p = path.p, *end = path.p + path.len;
         (p = memchr(p, '%', (size_t)(end - p))) != NULL; p += 3) {
        size_t at = (size_t)(p - path.p);
        int v = end - p < 3 ? -1 : escape_value(p);
        if (v < 0) {
            snprintf(why, whylen,
                     "The path has a bad percent-escape at byte %zu: %% must be followed by "
                     "two hex digits (%%25 for %% itself).",
                     at);
            return false;
        }
        if (v == 0) {
            snprintf(why, whylen, "The path has %%00 at byte %zu: no name may contain NUL.", at);
            return false;
        }
    }
    return true;
}

/* Whether a raw path segment, percent-decoded, is the literal lit[0..len). */
static bool
segment_is(const char *seg, size_t seglen, const char *lit, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; i < seglen; j++) {
        int c = (unsigned char)seg[i];
        if (c == '%') {
            c = escape_value(seg + i);
            i += 3;
        } else {
            i++;
        }
        if (j == len || (unsigned char)lit[j] != c) return false;
    }
    return j == len;
}

/* Match one pattern against a path, segment by segment, each segment percent-decoded:
 * the segments are cut at the path's own '/' only, so that %2F stays inside its segment.
 * A capture is the raw segment, decoded once a route is chosen (decode_params). */
static bool
match_pattern(const char *pat, struct http_str path, struct http_str *params, int *nparams)
{
    const char *p = path.p, *end = path.p + path.len;
    int n = 0;
    while (*pat != '\0') {
        if (*pat == '/') {
            if (p == end || *p != '/') return false;
            p++;
            pat++;
            continue;
        }
        const char *seg = p;
        while (p < end && *p != '/')
            p++;
        size_t patlen = strcspn(pat, "/");
        if (*pat == '{') {
            if (p == seg || n == ROUTE_MAX_PARAMS) return false;
            params[n].p = seg;
            params[n].len = (size_t)(p - seg);
            n++;
        } else if (!segment_is(seg, (size_t)(p - seg), pat, patlen)) {
            return false;
        }
        pat += patlen;
    }
    *nparams = n;
    return p == end;
}

/* Percent-decode the captures that have escapes into store; the others stay where they
 * are in the path. Fills why and returns false when they do not fit: store holds more
 * than any parameter can be (a user or a channel name is at most 128 bytes). */
static bool
decode_params(struct route_match *m, char *store, size_t cap, char *why, size_t whylen)
{
    size_t used = 0;
    for (int k = 0; k < m->nparams; k++) {
        struct http_str *v = &m->params[k];
        if (memchr(v->p, '%', v->len) == NULL) continue;
        char *out = store + used;
        size_t n = 0;
        for (size_t i = 0; i < v->len; n++) {
            if (used + n == cap) {
                snprintf(why, whylen,
                         "The path's parameters are longer than %zu bytes once percent-decoded.",
                         cap);
                return false;
            }
            if (v->p[i] == '%') {
                out[n] = (char)escape_value(v->p + i);
                i += 3;
            } else {
                out[n] = v->p[i++];
            }
        }
        v->p = out;
        v->len = n;
        used += n;
    }
    return true;
}

static void
allow_add(struct route_match *m, enum http_method method)
{
    const char *name = method_names[method];
    if (strstr(m->allow, name) != NULL) return;
    size_t len = strlen(m->allow);
    snprintf(m->allow + len, sizeof m->allow - len, "%s%s", len ? ", " : "", name);
}

int
router_match(const struct route *table, size_t n, enum http_method method, struct http_str path,
             char *store, size_t store_len, struct route_match *m)
{
    m->route = NULL;
    m->why[0] = '\0';
    if (!path_check(path, m->why, sizeof m->why)) return 400;
    /* The common case first: the route that matches path and method, found without
     * collecting the Allow list that only a 405 or OPTIONS needs. */
    for (size_t i = 0; i < n; i++) {
        bool same =
            table[i].method == method || (method == HTTP_HEAD && table[i].method == HTTP_GET);
        if (same && match_pattern(table[i].pattern, path, m->params, &m->nparams)) {
            m->route = &table[i];
            return decode_params(m, store, store_len, m->why, sizeof m->why) ? 200 : 400;
        }
    }
    memset(m, 0, sizeof *m);
    bool path_found = false;
    for (size_t i = 0; i < n; i++) {
        struct http_str params[ROUTE_MAX_PARAMS];
        int np = 0;
        if (!match_pattern(table[i].pattern, path, params, &np)) continue;
        path_found = true;
        allow_add(m, table[i].method);
        if (table[i].method == HTTP_GET) allow_add(m, HTTP_HEAD);
        bool same =
            table[i].method == method || (method == HTTP_HEAD && table[i].method == HTTP_GET);
        if (same && m->route == NULL) {
            m->route = &table[i];
            memcpy(m->params, params, sizeof params);
            m->nparams = np;
        }
    }
    if (m->route != NULL)
        return decode_params(m, store, store_len, m->why, sizeof m->why) ? 200 : 400;
    return path_found ? 405 : 404;
}

/* max_inflight_per_user: count the request for its owner, or answer 429 at once rather
 * than let one user queue work without bound. A request without its credential goes on,
 * to be refused by its handler. */
static bool
inflight_ok(struct request *r, const struct route *route)
{
    struct worker *w = r->conn->w;
    int max = w->conf->max_inflight_per_user;
    struct http_str who = {0};
    if (max == 0 || route->owner == OWNER_NONE) return true;
    who = route->owner == OWNER_TOKEN ? api_bearer(r) : r->params[0];
    if (who.len == 0) return true;
    uint64_t key = limit_key(&w->sb->limits, LIMIT_USER, who.p, who.len);
    if (limit_acquire(&w->sb->limits, key, (unsigned)max)) {
        r->inflight_key = key;
        return true;
    }
    char why[128];
    snprintf(why, sizeof why, "This user has %d requests in flight already.", max);
    http_error_with(r, 429, "Retry-After: 1\r\n", "too_many_requests", why);
    return false;
}

void
router_dispatch(struct request *r)
{
    const struct http_str *expect = http_header_get(&r->http, "Expect");
    if (expect != NULL && !r->http.expect_continue) {
        http_error(r, 417, NULL, "Only \"Expect: 100-continue\" is supported.");
        return;
    }
    struct route_match m;
    int status = router_match(routes, ARRAY_LEN(routes), r->http.method, r->http.path,
                              r->param_bytes, sizeof r->param_bytes, &m);
    if (status == 400) {
        http_error(r, 400, NULL, m.why);
        return;
    }
    if (status == 404) {
        http_error(r, 404, NULL, "No such endpoint.");
        return;
    }
    if (status == 405) {
        char allow[128];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", m.allow);
        if (r->http.method == HTTP_OPTIONS) {
            http_respond(r, 204, NULL, allow, NULL, 0);
            return;
        }
        http_error_with(r, 405, allow, NULL, "This endpoint does not support that method.");
        return;
    }
    memcpy(r->params, m.params, sizeof m.params);
    r->nparams = m.nparams;
    if (inflight_ok(r, m.route)) m.route->handler(r);
}
