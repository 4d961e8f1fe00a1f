/* Health and metrics: both read the scoreboard, so whichever worker answers, the figures
 * are the whole instance's. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "buf.h"
#include "channels.h"
#include "http.h"
#include "scoreboard.h"
#include "store.h"
#include "util.h"
#include "worker.h"

static const char *const state_names[] = {"free", "starting", "running", "draining"};

struct totals {
    uint64_t http, ws, rss, alive;
};

static void
sum_slots(const struct scoreboard *sb, struct totals *t)
{
    *t = (struct totals){0};
    for (int i = 0; i < sb_nslots(sb); i++) {
        const struct sb_slot *s = &sb->slot[i];
        uint64_t state = sb_get(&s->state);
        if (state == SB_FREE) continue;
        t->http += sb_get(&s->conns_http);
        t->ws += sb_get(&s->conns_ws);
        t->rss += sb_get(&s->rss_bytes);
        if (state == SB_RUNNING) t->alive++;
    }
}

/* The instance drains when its master stops (or, alone, this process does); a worker
 * that drains because a reload replaced it speaks for an instance that goes on serving. */
static bool
instance_draining(const struct worker *w)
{
    return sb_get(&w->sb->draining) != 0;
}

/* Health is built with the buf_put_* appenders, not printf: it is the endpoint load
 * balancers and benchmarks hit hardest. Fractions are written as fixed point. */
static void
put_u64(struct buf *b, const char *key, uint64_t v)
{
    buf_puts(b, key);
    buf_put_u64(b, v);
}

static void
health_workers(struct buf *b, const struct scoreboard *sb, uint64_t now)
{
    bool first = true;
    for (int i = 0; i < sb_nslots(sb); i++) {
        const struct sb_slot *s = &sb->slot[i];
        uint64_t state = sb_get(&s->state);
        if (state == SB_FREE || sb_get(&s->pid) == 0) continue;
        uint64_t started = sb_get(&s->started_at);
        put_u64(b, first ? "{\"id\":" : ",{\"id\":", sb_get(&s->id));
        put_u64(b, ",\"pid\":", sb_get(&s->pid));
        buf_puts(b, ",\"state\":\"");
        buf_puts(b, state_names[state & 3]);
        put_u64(b, "\",\"generation\":", sb_get(&s->generation));
        put_u64(b, ",\"uptime_s\":", now > started ? now - started : 0);
        put_u64(b, ",\"connections\":", sb_get(&s->conns_http) + sb_get(&s->conns_ws));
        put_u64(b, ",\"requests\":", sb_get(&s->c.requests));
        put_u64(b, ",\"rss_bytes\":", sb_get(&s->rss_bytes));
        buf_puts(b, ",\"load\":");
        buf_put_fixed(b, sb_get(&s->load_permille), 3);
        buf_puts(b, ",\"cpu\":");
        buf_put_fixed(b, sb_get(&s->cpu_permille), 3);
        put_u64(b, ",\"restarts\":", sb_get(&s->restarts));
        buf_puts(b, "}");
        first = false;
    }
}

static void
counted(void *arg, enum store_status st, uint64_t n)
{
    if (st == STORE_OK) *(uint64_t *)arg = n;
}

/* Live sessions. Health is what load balancers poll hardest, so the count is taken at
 * most every SESSIONS_COUNT_AGE seconds, or at once after this worker used the store; an
 * engine that answers later leaves the last figure it reported. */
#define SESSIONS_COUNT_AGE 0.01
static uint64_t
sessions_active(struct worker *w)
{
    ev_tstamp now = ev_now(w->loop);
    if (w->store_used || now - w->sessions_counted_at >= SESSIONS_COUNT_AGE) {
        store_count(w->store, counted, &w->sessions_active);
        w->sessions_counted_at = now;
        w->store_used = false;
    }
    return w->sessions_active;
}

void
api_health(struct request *r)
{
    struct worker *w = r->conn->w;
    const struct scoreboard *sb = w->sb;
    const struct conf *cf = w->conf;
    struct totals t;
    sum_slots(sb, &t);
    uint64_t now = (uint64_t)time(NULL);
    uint64_t started = sb_get(&sb->started_at);
    bool draining = instance_draining(w);
    uint64_t conns = t.http + t.ws;
    struct store_info si;
    store_info(w->store, &si);
    const char *status = draining ? "draining" : si.healthy ? "ok" : "degraded";

    struct buf b = w->scratch;
    b.off = b.len = 0;
    if (buf_reserve(&b, 1024) < 0) {
        http_error(r, 500, NULL, "Out of memory.");
        return;
    }
    buf_puts(&b, "{\"status\":\"");
    buf_puts(&b, status);
    buf_puts(&b, "\"");
    buf_puts(&b, ",\"version\":\"" SESSIOND_VERSION "\"");
    put_u64(&b, ",\"uptime_s\":", now > started ? now - started : 0);
    buf_puts(&b, ",\"instance\":\""); /* host-name characters only: see conf.c */
    buf_puts(&b, cf->instance);
    put_u64(&b, "\",\"sessions\":{\"active\":", sessions_active(w));
    put_u64(&b, ",\"max\":", (uint64_t)cf->max_sessions);
    put_u64(&b, "},\"connections\":{\"http\":", t.http);
    put_u64(&b, ",\"websocket\":", t.ws);
    put_u64(&b, ",\"limit\":", (uint64_t)cf->max_connections);
    buf_puts(&b, ",\"utilization\":");
    buf_put_fixed(&b, conns * 10000 / (uint64_t)cf->max_connections, 4);
    put_u64(&b, "},\"workers\":{\"count\":", sb_get(&sb->workers_target));
    put_u64(&b, ",\"alive\":", t.alive);
    put_u64(&b, ",\"restarts\":", sb_get(&sb->restarts));
    buf_puts(&b, ",\"list\":[");
    health_workers(&b, sb, now);
    buf_puts(&b, "]},\"store\":{\"backend\":\"");
    buf_puts(&b, si.backend);
    buf_puts(&b, si.healthy ? "\",\"healthy\":true,\"circuit\":\""
                            : "\",\"healthy\":false,\"circuit\":\"");
    buf_puts(&b, si.circuit);
    buf_puts(&b, "\"},");
    put_u64(&b, "\"memory\":{\"rss_bytes\":", t.rss + sb_get(&sb->master_rss));
    buf_puts(&b, "}}");
    w->scratch = b; /* keep the memory for the next request */
    bool serving = !draining && si.healthy;
    http_respond_json(r, serving ? 200 : 503, serving ? NULL : "Retry-After: 5\r\n", b.p, b.len);
}

/* Liveness answers from the loop alone: a probe on it restarts a process that stopped
 * turning, never one that waits out a Redis outage. */
void
api_livez(struct request *r)
{
    static const char body[] = "{\"status\":\"alive\"}";
    http_respond_json(r, 200, NULL, body, sizeof body - 1);
}

void
api_readyz(struct request *r)
{
    struct worker *w = r->conn->w;
    struct store_info si;
    store_info(w->store, &si);
    const char *why = instance_draining(w) ? "draining"
                      : !si.healthy        ? "store_unavailable"
                      : !chan_pubsub_up(w) ? "pubsub_unavailable"
                                           : NULL;
    if (why == NULL) {
        static const char body[] = "{\"status\":\"ready\"}";
        http_respond_json(r, 200, NULL, body, sizeof body - 1);
        return;
    }
    char body[64];
    int n = snprintf(body, sizeof body, "{\"status\":\"%s\"}", why);
    http_respond_json(r, 503, "Retry-After: 5\r\n", body, (size_t)n);
}

static void
metrics_histogram(struct buf *b, const char *name, const char *help,
                  const uint64_t hist[SB_NHIST + 1], uint64_t us_sum)
{
    static const uint64_t bounds[SB_NHIST] = SB_HIST_BOUNDS_US;
    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < SB_NHIST; i++) {
        cum += hist[i];
        buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds[i] / 1e6,
                   (unsigned long long)cum);
    }
    cum += hist[SB_NHIST];
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
               (unsigned long long)cum, name, (double)us_sum / 1e6, name, (unsigned long long)cum);
}

static void
metrics_requests(struct buf *b, const struct sb_counters *c)
{
    buf_printf(b, "# HELP sessiond_http_requests_total HTTP requests answered, by status code.\n"
                  "# TYPE sessiond_http_requests_total counter\n");
    for (int i = 0; i < SB_NSTATUS; i++) {
        if (c->status[i] == 0) continue;
        int code = sb_status_code(i);
        if (code)
            buf_printf(b, "sessiond_http_requests_total{code=\"%d\"} %llu\n", code,
                       (unsigned long long)c->status[i]);
        else
            buf_printf(b, "sessiond_http_requests_total{code=\"other\"} %llu\n",
                       (unsigned long long)c->status[i]);
    }
    metrics_histogram(b, "sessiond_http_request_duration_seconds",
                      "Time from a complete request to its response.", c->hist, c->duration_us_sum);
}

static void
metrics_workers(struct buf *b, const struct scoreboard *sb)
{
    buf_printf(b, "# HELP sessiond_worker_rss_bytes Resident memory of each worker.\n"
                  "# TYPE sessiond_worker_rss_bytes gauge\n");
    for (int i = 0; i < sb_nslots(sb); i++) {
        const struct sb_slot *s = &sb->slot[i];
        if (sb_get(&s->state) == SB_FREE || sb_get(&s->pid) == 0) continue;
        buf_printf(b, "sessiond_worker_rss_bytes{worker=\"%llu\",pid=\"%llu\"} %llu\n",
                   (unsigned long long)sb_get(&s->id), (unsigned long long)sb_get(&s->pid),
                   (unsigned long long)sb_get(&s->rss_bytes));
    }
}

/* The store's circuit as a number: 0 closed, 1 open, 2 half-open. */
static int
circuit_state(const struct worker *w)
{
    struct store_info si;
    store_info(w->store, &si);
    return strcmp(si.circuit, "open") == 0 ? 1 : strcmp(si.circuit, "half_open") == 0 ? 2 : 0;
}

/* One sample of a single-figure series. A row with a type starts a family and writes its
 * HELP and TYPE lines; a row without one is another sample of the family above it. */
struct metric_row {
    const char *name;
    const char *type;
    const char *help;
    const char *labels; /* "" or {name="value",...} */
    size_t value;       /* offset of the figure in struct api_metric_values */
};

#define V(field) offsetof(struct api_metric_values, field)

static const struct metric_row metric_rows[] = {
    {"sessiond_connections", "gauge", "Open client connections, by kind.", "{kind=\"http\"}",
     V(conns_http)},
    {"sessiond_connections", NULL, NULL, "{kind=\"websocket\"}", V(conns_ws)},
    {"sessiond_connections_accepted_total", "counter", "Connections accepted.", "", V(accepted)},
    {"sessiond_sessions_active", "gauge", "Live sessions in the store.", "", V(sessions)},
    {"sessiond_workers", "gauge", "Workers serving, and the number configured.",
     "{state=\"alive\"}", V(workers_alive)},
    {"sessiond_workers", NULL, NULL, "{state=\"configured\"}", V(workers_configured)},
    {"sessiond_worker_restarts_total", "counter", "Workers replaced after dying.", "", V(restarts)},
    {"sessiond_websocket_messages_total", "counter", "WebSocket messages, by direction.",
     "{direction=\"in\"}", V(ws_in)},
    {"sessiond_websocket_messages_total", NULL, NULL, "{direction=\"out\"}", V(ws_out)},
    {"sessiond_websocket_slow_closed_total", "counter",
     "WebSockets closed for falling ws_max_queue behind.", "", V(ws_slow_closed)},
    {"sessiond_bus_dropped_total", "counter", "Messages between workers that were lost.", "",
     V(bus_dropped)},
    {"sessiond_pubsub_dropped_total", "counter",
     "Publishes to other instances lost while Redis was away.", "", V(pubsub_dropped)},
    {"sessiond_store_operations_total", "counter", "Operations on the session store.", "",
     V(store_ops)},
    {"sessiond_store_errors_total", "counter", "Store operations that failed.", "",
     V(store_errors)},
    {"sessiond_store_circuit_state", "gauge", "Store circuit: 0 closed, 1 open, 2 half-open.", "",
     V(circuit)},
    {"sessiond_draining", "gauge", "1 while the instance drains.", "", V(draining)},
    {"sessiond_memory_rss_bytes", "gauge", "Resident memory of the master and workers.", "",
     V(rss)},
    {"sessiond_limit_misses_total", "counter",
     "Per-address or per-user limits not applied for want of room in the shared table.", "",
     V(limit_misses)},
    {"sessiond_history_unkept_total", "counter",
     "Messages of channels with history published without being kept (history file full).", "",
     V(history_unkept)},
};

#undef V

static int
metric_row_put(struct buf *b, const struct metric_row *m, const struct api_metric_values *v)
{
    uint64_t value;
    memcpy(&value, (const char *)v + m->value, sizeof value);
    int rc = 0;
    if (m->type != NULL) {
        rc |= buf_puts(b, "# HELP ");
        rc |= buf_puts(b, m->name);
        rc |= buf_puts(b, " ");
        rc |= buf_puts(b, m->help);
        rc |= buf_puts(b, "\n# TYPE ");
        rc |= buf_puts(b, m->name);
        rc |= buf_puts(b, " ");
        rc |= buf_puts(b, m->type);
        rc |= buf_puts(b, "\n");
    }
    rc |= buf_puts(b, m->name);
    rc |= buf_puts(b, m->labels);
    rc |= buf_puts(b, " ");
    rc |= buf_put_u64(b, value);
    rc |= buf_puts(b, "\n");
    return rc < 0 ? -1 : 0;
}

int
api_metrics_series(struct buf *b, const struct api_metric_values *v)
{
    for (size_t i = 0; i < ARRAY_LEN(metric_rows); i++)
        if (metric_row_put(b, &metric_rows[i], v) < 0) return -1;
    return 0;
}

static void
metric_values(struct worker *w, const struct sb_counters *c, const struct totals *t,
              struct api_metric_values *v)
{
    const struct scoreboard *sb = w->sb;
    *v = (struct api_metric_values){
        .conns_http = t->http,
        .conns_ws = t->ws,
        .accepted = c->accepted,
        .sessions = sessions_active(w),
        .workers_alive = t->alive,
        .workers_configured = sb_get(&sb->workers_target),
        .restarts = sb_get(&sb->restarts),
        .ws_in = c->ws_in,
        .ws_out = c->ws_out,
        .ws_slow_closed = c->ws_slow_closed,
        .bus_dropped = c->bus_dropped,
        .pubsub_dropped = c->pubsub_dropped,
        .store_ops = c->store_ops,
        .store_errors = c->store_errors,
        .circuit = (uint64_t)circuit_state(w),
        .draining = instance_draining(w) ? 1 : 0,
        .rss = t->rss + sb_get(&sb->master_rss),
        .limit_misses = sb_get(&sb->limits.misses),
        .history_unkept = c->history_unkept,
    };
}

void
api_metrics(struct request *r)
{
    struct worker *w = r->conn->w;
    if (!w->conf->metrics_public && !api_admin_ok(r)) return;
    const struct scoreboard *sb = w->sb;
    struct sb_counters c;
    sb_sum_counters(sb, &c);
    struct totals t;
    sum_slots(sb, &t);

    struct api_metric_values v;
    metric_values(w, &c, &t, &v);
    struct buf b = {0};
    metrics_requests(&b, &c);
    api_metrics_series(&b, &v);
    metrics_histogram(&b, "sessiond_store_operation_seconds",
                      "Time from a store call to its answer.", c.store_hist, c.store_us_sum);
    metrics_workers(&b, sb);
    if (b.p == NULL) {
        http_error(r, 500, NULL, "Out of memory.");
        return;
    }
    http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.p, b.len);
    buf_free(&b);
}
