/* router: maps a request's method and path to its handler.
 *
 * Routes are patterns of '/'-separated segments where "{name}" matches any one non-empty
 * segment and is captured into request.params in order. A path that matches some route
 * but not the method is answered 405 with an Allow header (GET implies HEAD); a path that
 * matches none is 404. */
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
};

/* Match method and path against a table of n routes. Returns 200 with m->route set, 405
 * when only the method is wrong, 404 when the path matches nothing. */
int router_match(const struct route *table, size_t n, enum http_method method,
                 struct http_str path, struct route_match *m);

/* Serve a request whose head and body are complete. */
void router_dispatch(struct request *r);

#endif
