/* api: the endpoint handlers. Each answers through the http module. */
#ifndef SESSIOND_API_H
#define SESSIOND_API_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"
#include "conn.h"
#include "store.h"

/* Shared by the handlers (api_common.c). */
/* The bearer credential of a request, or an empty string. */
struct http_str api_bearer(const struct request *r);
/* The admin API: the configured key, or with none configured, loopback peers only.
 * Answers 401/403 itself and returns false when the request may not go on. */
bool api_admin_ok(struct request *r);
/* The worker's store, and the metrics of a call to it: begin before, end in its callback. */
struct store *api_store(const struct request *r);
void api_store_begin(struct request *r);
void api_store_end(struct request *r);
/* Parse a JSON object body, answering 411/415/400 itself on failure (NULL). */
json_t *api_json_body(struct request *r);
/* Answer a store failure as the API says (404, 412, 429, 503, ...). */
void api_store_error(struct request *r, enum store_status st);

/* A query parameter as a decimal number: def when absent, -1 when not a number. */
int64_t api_query_number(const struct request *r, const char *name, int64_t def);

/* GET /api/health and /health: the whole instance's state, from the scoreboard. */
void api_health(struct request *r);
/* GET /livez: 200 while this worker's loop runs, whatever the store does. GET /readyz:
 * 200 while the instance serves with a healthy store and (with Redis) pub/sub, else 503
 * with the reason; what a load balancer or Kubernetes readiness probe should poll. */
void api_livez(struct request *r);
void api_readyz(struct request *r);
/* GET /metrics: Prometheus text exposition, aggregated over every worker. */
void api_metrics(struct request *r);

/* The single-figure series of /metrics, gathered before any is written. */
struct api_metric_values {
    uint64_t conns_http, conns_ws, accepted, sessions, workers_alive, workers_configured, restarts,
        ws_in, ws_out, ws_slow_closed, bus_dropped, pubsub_dropped, store_ops, store_errors,
        circuit, draining, rss, limit_misses, history_unkept;
};
/* Append those series (HELP, TYPE and samples) to b, in the order of api_health.c's
 * table. Returns 0, or -1 when b cannot grow. */
int api_metrics_series(struct buf *b, const struct api_metric_values *v);

/* GET /dashboard (unless dashboard off) and GET /client.js, served from the binary. */
void api_dashboard(struct request *r);
void api_client_js(struct request *r);

/* Sessions, with the API key: /api/sessions..., /api/users/{user}/sessions. */
void api_session_create(struct request *r);
void api_session_get(struct request *r);
void api_session_patch(struct request *r);
void api_session_touch(struct request *r);
void api_session_delete(struct request *r);
void api_user_sessions(struct request *r);
void api_user_sessions_delete(struct request *r);
/* Channels, with the API key: /api/channels/{channel}/publish and .../presence. */
void api_channel_publish(struct request *r);
void api_channel_presence(struct request *r);
/* GET /api/channels/{channel}/history?since=N&limit=L: a namespace with history only. */
void api_channel_history(struct request *r);
/* The end user's own session, with its token: /api/session. */
void api_own_session(struct request *r);
void api_own_session_delete(struct request *r);

#ifdef SESSIOND_TEST_HOOKS
/* /debug/{action}: test-only hooks (spin, sleep, exit, alloc); never in a release build. */
void api_debug(struct request *r);
/* At a worker's exit: answer the requests still sleeping, so that their connections
 * can be freed. */
void api_debug_release(struct ev_loop *loop);
#endif

#endif
