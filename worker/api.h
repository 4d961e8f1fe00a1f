/* api: the endpoint handlers. Each answers through the http module. */
#ifndef SESSIOND_API_H
#define SESSIOND_API_H

#include <jansson.h>

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

/* GET /api/health and /health: the whole instance's state, from the scoreboard. */
void api_health(struct request *r);
/* GET /metrics: Prometheus text exposition, aggregated over every worker. */
void api_metrics(struct request *r);

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
