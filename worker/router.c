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

/* Match one pattern against a path, segment by segment. */
static bool
match_pattern(const char *pat, struct http_str path, struct http_str *params, int *nparams)
{
    const char *p = path.p, *end = path.p + path.len;
    int n = 0;
    while (*pat != '\0') {
        if (*pat == '{') {
            const char *close = strchr(pat, '}');
            const char *seg = p;
            while (p < end && *p != '/')
                p++;
            if (p == seg || close == NULL || n == ROUTE_MAX_PARAMS) return false;
            params[n].p = seg;
            params[n].len = (size_t)(p - seg);
            n++;
            pat = close + 1;
        } else {
            if (p == end || *p != *pat) return false;
            p++;
            pat++;
        }
    }
    *nparams = n;
    return p == end;
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
             struct route_match *m)
{
    /* The common case first: the route that matches path and method, found without
     * collecting the Allow list that only a 405 or OPTIONS needs. */
    m->route = NULL;
    for (size_t i = 0; i < n; i++) {
        bool same =
            table[i].method == method || (method == HTTP_HEAD && table[i].method == HTTP_GET);
        if (same && match_pattern(table[i].pattern, path, m->params, &m->nparams)) {
            m->route = &table[i];
            return 200;
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
    if (m->route != NULL) return 200;
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
    int status = router_match(routes, ARRAY_LEN(routes), r->http.method, r->http.path, &m);
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
