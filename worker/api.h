/* api: the endpoint handlers. Each answers through the http module. */
#ifndef SESSIOND_API_H
#define SESSIOND_API_H

#include "conn.h"

/* GET /api/health and /health: the whole instance's state, from the scoreboard. */
void api_health(struct request *r);
/* GET /metrics: Prometheus text exposition, aggregated over every worker. */
void api_metrics(struct request *r);

#ifdef SESSIOND_TEST_HOOKS
/* /debug/{action}: test-only hooks (spin, sleep, exit, alloc); never in a release build. */
void api_debug(struct request *r);
#endif

#endif
