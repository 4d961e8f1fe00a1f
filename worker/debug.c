/* Test-only hooks, compiled in only with -DSESSIOND_TEST_HOOKS (build/sessiond-test): the
 * integration tests use them to provoke what a healthy server never does on its own. */
#ifdef SESSIOND_TEST_HOOKS

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "http.h"
#include "list.h"
#include "util.h"
#include "worker.h"

struct sleeper {
    ev_timer t;
    struct request *r;
    struct sleeper *prev, *next; /* the worker's sleepers, for api_debug_release */
};

static struct sleeper *sleepers; /* one worker per process: a static list is its own */

static long
query_num(const struct request *r, const char *name, long dflt)
{
    struct http_str v;
    char digits[24];
    if (!http_query_get(&r->http, name, &v))
        return dflt;
    snprintf(digits, sizeof digits, "%.*s", (int)v.len, v.p);
    return strtol(digits, NULL, 10);
}

static void
on_sleep_done(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct sleeper *s = container_of(t, struct sleeper, t);
    struct request *r = s->r;
    LIST_UNLINK(sleepers, s);
    free(s);
    static const char body[] = "{\"slept\":true}";
    http_respond_json(r, 200, NULL, body, sizeof body - 1);
}

void
api_debug_release(struct ev_loop *loop)
{
    while (sleepers != NULL) {
        ev_timer_stop(loop, &sleepers->t);
        on_sleep_done(loop, &sleepers->t, 0);
    }
}

static bool
action_is(const struct request *r, const char *name)
{
    return r->params[0].len == strlen(name) && memcmp(r->params[0].p, name, r->params[0].len) == 0;
}

void
api_debug(struct request *r)
{
    static const char ok[] = "{\"ok\":true}";
    if (action_is(r, "sleep")) {
        /* Answer after ms milliseconds without blocking the loop: a slow request. */
        struct sleeper *s = malloc(sizeof *s);
        if (s == NULL) {
            http_error(r, 500, NULL, "Out of memory.");
            return;
        }
        s->r = r;
        LIST_PUSH(sleepers, s);
        ev_timer_init(&s->t, on_sleep_done, (double)query_num(r, "ms", 1000) / 1000.0, 0.);
        ev_timer_start(r->conn->w->loop, &s->t);
        return;
    }
    if (action_is(r, "spin")) {
        for (;;) /* a worker stuck in a loop: the master's watchdog must notice */
            ;
    }
    if (action_is(r, "exit"))
        _exit((int)query_num(r, "code", 1));
    if (action_is(r, "alloc")) {
        /* Grow this worker's resident memory by mb megabytes (for worker_max_rss). */
        static void *hog; /* a chain of blocks, kept reachable until the worker exits */
        size_t mb = (size_t)query_num(r, "mb", 16);
        void **p = malloc(mb << 20);
        if (p != NULL) {
            memset(p, 1, mb << 20); /* touched, so it counts as resident */
            *p = hog;
            hog = p;
        }
        http_respond_json(r, 200, NULL, ok, sizeof ok - 1);
        return;
    }
    if (action_is(r, "echo")) {
        /* How many body bytes arrived (for Content-Length, chunked, 100-continue). */
        char body[64];
        int n = snprintf(body, sizeof body, "{\"bytes\":%zu}", r->body_len);
        http_respond_json(r, 200, NULL, body, (size_t)n);
        return;
    }
    if (action_is(r, "big")) {
        /* A compressible body of kb kilobytes (for gzip). */
        size_t n = (size_t)query_num(r, "kb", 4) << 10;
        char *p = malloc(n + 16);
        if (p == NULL) {
            http_error(r, 500, NULL, "Out of memory.");
            return;
        }
        memset(p, 'a', n + 16);
        memcpy(p, "{\"a\":\"", 6);
        memcpy(p + n + 6, "\"}", 2);
        http_respond_json(r, 200, NULL, p, n + 8);
        free(p);
        return;
    }
    http_error(r, 404, NULL, "No such debug action.");
}

#endif
