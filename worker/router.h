/* router: maps a request's method and path to its handler.
 *
 * Routes are patterns of '/'-separated segments where "{name}" matches any one non-empty
 * segment and is captured into request.params in order. Each segment of the path is
 * percent-decoded before it is matched or captured (API.md), and a decoded '/' (%2F)
 * stays inside its segment. A path that matches some route but not the method is
 * answered 405 with an Allow header (GET implies HEAD); a path that matches none is 404;
 * a bad escape or %00 is 400. */
#ifndef SESSIOND_ROUTER_H
#define SESSIOND_ROUTER_H

#include <stddef.h>

#include "conn.h"

typedef void (*route_handler)(struct request *r);

/* Whom a request is counted for under max_inflight_per_user. */
enum route_owner {
    OWNER_NONE,  /* nobody: admin calls about one session, health, ... */
    OWNER_TOKEN, /* the session token it carries */
    OWNER_USER,  /* the {user} of its path, its first parameter */
};

struct route {
    enum http_method method;
    const char *pattern;
    route_handler handler;
    enum route_owner owner;
};

struct route_match {
    const struct route *route;  /* NULL when nothing matched the method */
    struct http_str params[ROUTE_MAX_PARAMS];
    int nparams;
    char allow[96];             /* the methods the path has, for 405 and OPTIONS */
    char why[128];              /* what is wrong with the path, for 400 */
};

/* Match method and path against a table of n routes. Returns 200 with m->route set and
 * the captures percent-decoded (into store, of store_len bytes, those that had escapes),
 * 405 when only the method is wrong, 404 when the path matches nothing, 400 with m->why
 * when the path has a bad percent-escape or %00, or its captures do not fit in store. */
int router_match(const struct route *table, size_t n, enum http_method method, struct http_str path,
                 char *store, size_t store_len, struct route_match *m);

/* Serve a request whose head and body are complete. */
void router_dispatch(struct request *r);

#endif
