#include "redis_sentinel.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_wire.h"
#include "util.h"

/* After every Sentinel of the list failed, wait this long before the next round. */
#define SW_REST_SECONDS 0.5

/* ---- parsing ---- */

static bool
port_parse(const char *p, size_t n, int *out)
{
    int v = 0;
    if (n == 0 || n > 5) return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535) return false;
    *out = v;
    return true;
}

/* One "host[:port]" or "[v6]:port" of n bytes, read as redis_url reads its host. */
static int
entry_parse(const char *p, size_t n, struct sentinel_addr *a, char *err, size_t errlen)
{
    struct redis_url u = {.port = SENTINEL_DEFAULT_PORT};
    char why[256];
    if (memchr(p, '/', n) != NULL) {
        errf(err, errlen, "\"%.*s\": host:port, not a URL", (int)n, p);
        return -1;
    }
    if (redis_url_host(p, n, &u, why, sizeof why) < 0) {
        errf(err, errlen, "\"%.*s\": %s", (int)n, p, why);
        return -1;
    }
    memcpy(a->host, u.host, sizeof a->host);
    a->port = u.port;
    return 0;
}

int
sentinel_list_parse(const char *text, struct sentinel_addr *out, int max, char *err, size_t errlen)
{
    int n = 0;
    for (const char *p = text;;) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 0) {
            errf(err, errlen, "an empty entry (host:port,host:port)");
            return -1;
        }
        if (n == max) {
            errf(err, errlen, "more than %d Sentinels", max);
            return -1;
        }
        if (entry_parse(p, len, &out[n], err, errlen) < 0) return -1;
        n++;
        if (end == NULL) return n;
        p = end + 1;
    }
}

bool
sentinel_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= SENTINEL_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f) return false;
    return true;
}

static bool
addr_set(struct sentinel_addr *a, const char *host, size_t hlen, const char *port, size_t plen)
{
    if (hlen == 0 || hlen >= sizeof a->host || memchr(host, '\0', hlen) != NULL ||
        !port_parse(port, plen, &a->port))
        return false;
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    return true;
}

int
sentinel_addr_reply(const redisReply *r, struct sentinel_addr *out)
{
    if (r->type == REDIS_REPLY_NIL) return 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return -1;
    const redisReply *h = r->element[0], *p = r->element[1];
    return addr_set(out, h->str, h->len, p->str, p->len) ? 1 : -1;
}

/* The next space-separated word of [*p, end): its start and length; false if none. */
static bool
word(const char **p, const char *end, const char **w, size_t *n)
{
    while (*p < end && **p == ' ')
        (*p)++;
    const char *s = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    *w = s, *n = (size_t)(*p - s);
    return *n > 0;
}

int
sentinel_switch_parse(const char *msg, size_t len, const char *name, struct sentinel_addr *out)
{
    const char *p = msg, *end = msg + len, *w[5];
    size_t n[5];
    for (int i = 0; i < 5; i++)
        if (!word(&p, end, &w[i], &n[i])) return -1;
    const char *extra;
    size_t nextra;
    if (word(&p, end, &extra, &nextra)) return -1;
    struct sentinel_addr a;
    if (!addr_set(&a, w[3], n[3], w[4], n[4])) return -1;
    if (n[0] != strlen(name) || memcmp(w[0], name, n[0]) != 0) return 0;
    *out = a;
    return 1;
}

bool
sentinel_role_is_master(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           redis_reply_is(r->element[0], "master");
}

/* ---- the watcher ---- */

/* IDLE: not started. ASKING: the address asked, and +switch-master subscribed behind
 * it. LISTENING: subscribed, waiting for a failover. RESTING: every Sentinel failed;
 * the timer starts the next round. */
enum sw_state { SW_IDLE, SW_ASKING, SW_SUBSCRIBING, SW_LISTENING, SW_RESTING };

static struct {
    /* config, set in the master and inherited by the workers */
    struct sentinel_addr list[SENTINEL_MAX];
    int n;
    char name[SENTINEL_NAME_MAX];
    bool tls;
    /* the watcher, per process */
    struct ev_loop *loop;
    SSL_CTX *tls_ctx;
    double timeout;
    sentinel_moved_cb moved;
    enum sw_state state;
    struct redis_wire *wire;
    int cur;   /* the Sentinel asked */
    int tried; /* Sentinels failed in a row */
    bool known, telling;
    struct sentinel_addr master;
    ev_timer timer;
    char cause[512], logged[512];
} sw;

static void sw_connect(void);

int
sentinel_config(const char *list, const char *name, struct sentinel_addr out[SENTINEL_MAX],
                char *err, size_t errlen)
{
    char msg[256];
    int n;
    if (list == NULL || list[0] == '\0')
        return 0;
    if ((n = sentinel_list_parse(list, out, SENTINEL_MAX, msg, sizeof msg)) < 0) {
        errf(err, errlen, "invalid \"redis_sentinels\": %s", msg);
        return -1;
    }
    if (!sentinel_name_ok(name)) {
        errf(err, errlen, "invalid \"redis_master\": a name of 1 to %d bytes without spaces",
             SENTINEL_NAME_MAX - 1);
        return -1;
    }
    return n;
}

int
redis_sentinel_setup(const char *list, const char *name, bool tls, char *err, size_t errlen)
{
    struct sentinel_addr a[SENTINEL_MAX] = {0};
    int n = sentinel_config(list, name, a, err, errlen);
    if (n < 0)
        return -1;
    memcpy(sw.list, a, (size_t)n * sizeof a[0]);
    sw.n = n;
    snprintf(sw.name, sizeof sw.name, "%s", n > 0 ? name : "");
    sw.tls = tls;
    return 0;
}

bool
redis_sentinel_on(void)
{
    return sw.n > 0;
}

__attribute__((format(printf, 1, 2))) static void
sw_cause(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sw.cause, sizeof sw.cause, fmt, ap);
    va_end(ap);
}

static const char *
sw_where(void)
{
    static char where[REDIS_URL_HOST_MAX + 32];
    const struct sentinel_addr *a = &sw.list[sw.cur];
    snprintf(where, sizeof where, strchr(a->host, ':') ? "sentinel [%s]:%d" : "sentinel %s:%d",
             a->host, a->port);
    return where;
}

static void
sw_drop_wire(void)
{
    redis_wire_free(sw.wire);
    sw.wire = NULL;
    ev_timer_stop(sw.loop, &sw.timer);
}

/* The Sentinel asked failed (cause says why): the next one, or a rest after a round. */
static void
sw_next(void)
{
    sw_drop_wire();
    if (!sw.known && strcmp(sw.cause, sw.logged) != 0) { /* once per distinct cause */
        log_warnx("%s", sw.cause);
        snprintf(sw.logged, sizeof sw.logged, "%s", sw.cause);
    }
    sw.cur = (sw.cur + 1) % sw.n;
    if (++sw.tried < sw.n) {
        sw_connect();
        return;
    }
    sw.tried = 0;
    sw.state = SW_RESTING;
    ev_timer_set(&sw.timer, SW_REST_SECONDS, 0.);
    ev_timer_start(sw.loop, &sw.timer);
}

static void
sw_found(const struct sentinel_addr *a)
{
    if (sw.known && strcmp(a->host, sw.master.host) == 0 && a->port == sw.master.port) return;
    bool first = !sw.known;
    sw.logged[0] = '\0';
    sw.master = *a;
    sw.known = true;
    log_info("%s: master %s %s %s:%d", sw_where(), sw.name, first ? "is at" : "moved to", a->host,
             a->port);
    sw.telling = true; /* the connections it moves ask nothing meanwhile */
    sw.moved();
    sw.telling = false;
}

static void
sw_on_answer(const redisReply *r)
{
    struct sentinel_addr a;
    int found = sentinel_addr_reply(r, &a);
    if (found == 1) {
        sw.state = SW_SUBSCRIBING;
        sw_found(&a);
        return;
    }
    if (found == 0)
        sw_cause("%s: knows no master named %s", sw_where(), sw.name);
    else if (r->type == REDIS_REPLY_ERROR)
        sw_cause("%s: %.*s", sw_where(), (int)r->len, r->str);
    else
        sw_cause("%s: an unexpected answer to get-master-addr-by-name", sw_where());
    sw_next();
}

static void
sw_on_push(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !redis_reply_is(r->element[1], "+switch-master")) {
        sw_cause("%s: an unexpected message", sw_where());
        sw_next();
        return;
    }
    if (sw.state == SW_SUBSCRIBING && redis_reply_is(r->element[0], "subscribe")) {
        sw.state = SW_LISTENING;
        sw.tried = 0;
        ev_timer_stop(sw.loop, &sw.timer);
        return;
    }
    struct sentinel_addr a;
    const redisReply *m = r->element[2];
    if (redis_reply_is(r->element[0], "message") && m->type == REDIS_REPLY_STRING &&
        sentinel_switch_parse(m->str, m->len, sw.name, &a) == 1)
        sw_found(&a);
}

static void
sw_on_reply(void *arg, redisReply *r)
{
    (void)arg;
    if (sw.state == SW_ASKING)
        sw_on_answer(r);
    else
        sw_on_push(r);
    freeReplyObject(r);
}

static void
sw_on_lost(void *arg, const char *why)
{
    (void)arg;
    sw_cause("sentinel %s", why);
    sw_next();
}

static const struct redis_wire_ops sw_ops = {.on_reply = sw_on_reply, .on_lost = sw_on_lost};

static void
sw_connect(void)
{
    static const char *const sub[] = {"SUBSCRIBE", "+switch-master"};
    static const size_t sub_len[] = {9, 14};
    const char *ask[] = {"SENTINEL", "get-master-addr-by-name", sw.name};
    size_t ask_len[] = {8, 23, strlen(sw.name)};
    struct redis_url u = {.tls = sw.tls, .port = sw.list[sw.cur].port};
    char why[256];
    snprintf(u.host, sizeof u.host, "%s", sw.list[sw.cur].host);
    sw.state = SW_ASKING;
    sw.wire = redis_wire_open(sw.loop, &u, sw.tls_ctx, &sw_ops, NULL, why, sizeof why);
    if (sw.wire == NULL || redis_wire_send(sw.wire, 3, ask, ask_len) < 0 ||
        redis_wire_send(sw.wire, 2, (const char **)sub, sub_len) < 0) {
        sw_cause("%s: %s", sw_where(), sw.wire == NULL ? why : "out of memory");
        sw_next();
        return;
    }
    ev_timer_set(&sw.timer, sw.timeout, 0.);
    ev_timer_start(sw.loop, &sw.timer);
}

static void
sw_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    if (sw.state == SW_RESTING) {
        sw_connect();
        return;
    }
    sw_cause("%s: no answer within %lld ms", sw_where(), (long long)(sw.timeout * 1000 + 0.5));
    sw_next();
}

void
redis_sentinel_start(struct ev_loop *loop, SSL_CTX *tls_ctx, double timeout,
                     sentinel_moved_cb moved)
{
    if (sw.state != SW_IDLE || sw.n == 0) return;
    sw.loop = loop, sw.tls_ctx = tls_ctx, sw.timeout = timeout, sw.moved = moved;
    sw.known = false;
    sw.cur = sw.tried = 0;
    sw_cause("no master %s known yet: asking the Sentinels", sw.name);
    ev_timer_init(&sw.timer, sw_on_timer, 0., 0.);
    sw_connect();
}

bool
redis_sentinel_master(struct sentinel_addr *out)
{
    if (!sw.known) return false;
    *out = sw.master;
    return true;
}

void
redis_sentinel_ask(void)
{
    if (sw.state != SW_LISTENING || sw.telling) return;
    sw_drop_wire();
    sw_connect();
}

const char *
redis_sentinel_cause(void)
{
    return sw.cause;
}

void
redis_sentinel_stop(void)
{
    if (sw.state == SW_IDLE) return;
    sw_drop_wire();
    sw.state = SW_IDLE;
    sw.known = false;
}
