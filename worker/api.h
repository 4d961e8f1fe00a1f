/* api: the endpoint handlers. Each answers through the http module. */
#ifndef SESSIOND_API_H
#define SESSIOND_API_H

#include "conn.h"

/* GET /api/health and /health: the whole instance's state, from the scoreboard. */
void api_health(struct request *r);
/* GET /metrics: Prometheus text exposition, aggregated over every worker. */
void api_metrics(struct request *r);

/* Sessions, with the API key: /api/sessions..., /api/users/{user}/sessions. */
void api_session_create(struct request *r);
void api_session_get(struct request *r);
void api_session_patch(struct request *r);
void api_session_touch(struct request *r);
void api_session_delete(struct request *r);
void api_user_sessions(struct request *r);
void api_user_sessions_delete(struct request *r);
/* The end user's own session, with its token: /api/session. */
void api_own_session(struct request *r);
void api_own_session_delete(struct request *r);

#ifdef SESSIOND_TEST_HOOKS
/* /debug/{action}: test-only hooks (spin, sleep, exit, alloc); never in a release build. */
void api_debug(struct request *r);
#endif

#endif
