/* /metrics: the table of single-figure series writes, byte for byte, the exposition that
 * Prometheus, the Grafana dashboard and test_metrics.py read. */
#include <string.h>

#include "api.h"
#include "buf.h"
#include "suites.h"

/* What the one printf of these series wrote, with the figures 1 to 18 in its order. */
static const char want[] =
    "# HELP sessiond_connections Open client connections, by kind.\n"
    "# TYPE sessiond_connections gauge\n"
    "sessiond_connections{kind=\"http\"} 1\n"
    "sessiond_connections{kind=\"websocket\"} 2\n"
    "# HELP sessiond_connections_accepted_total Connections accepted.\n"
    "# TYPE sessiond_connections_accepted_total counter\n"
    "sessiond_connections_accepted_total 3\n"
    "# HELP sessiond_sessions_active Live sessions in the store.\n"
    "# TYPE sessiond_sessions_active gauge\n"
    "sessiond_sessions_active 4\n"
    "# HELP sessiond_workers Workers serving, and the number configured.\n"
    "# TYPE sessiond_workers gauge\n"
    "sessiond_workers{state=\"alive\"} 5\n"
    "sessiond_workers{state=\"configured\"} 6\n"
    "# HELP sessiond_worker_restarts_total Workers replaced after dying.\n"
    "# TYPE sessiond_worker_restarts_total counter\n"
    "sessiond_worker_restarts_total 7\n"
    "# HELP sessiond_websocket_messages_total WebSocket messages, by direction.\n"
    "# TYPE sessiond_websocket_messages_total counter\n"
    "sessiond_websocket_messages_total{direction=\"in\"} 8\n"
    "sessiond_websocket_messages_total{direction=\"out\"} 9\n"
    "# HELP sessiond_websocket_slow_closed_total WebSockets closed for falling ws_max_queue behind.\n"
    "# TYPE sessiond_websocket_slow_closed_total counter\n"
    "sessiond_websocket_slow_closed_total 10\n"
    "# HELP sessiond_bus_dropped_total Messages between workers that were lost.\n"
    "# TYPE sessiond_bus_dropped_total counter\n"
    "sessiond_bus_dropped_total 11\n"
    "# HELP sessiond_pubsub_dropped_total Publishes to other instances lost while Redis was away.\n"
    "# TYPE sessiond_pubsub_dropped_total counter\n"
    "sessiond_pubsub_dropped_total 12\n"
    "# HELP sessiond_store_operations_total Operations on the session store.\n"
    "# TYPE sessiond_store_operations_total counter\n"
    "sessiond_store_operations_total 13\n"
    "# HELP sessiond_store_errors_total Store operations that failed.\n"
    "# TYPE sessiond_store_errors_total counter\n"
    "sessiond_store_errors_total 14\n"
    "# HELP sessiond_store_circuit_state Store circuit: 0 closed, 1 open, 2 half-open.\n"
    "# TYPE sessiond_store_circuit_state gauge\n"
    "sessiond_store_circuit_state 15\n"
    "# HELP sessiond_draining 1 while the instance drains.\n"
    "# TYPE sessiond_draining gauge\n"
    "sessiond_draining 16\n"
    "# HELP sessiond_memory_rss_bytes Resident memory of the master and workers.\n"
    "# TYPE sessiond_memory_rss_bytes gauge\n"
    "sessiond_memory_rss_bytes 17\n"
    "# HELP sessiond_limit_misses_total Per-address or per-user limits not applied for want of room in the shared table.\n"
    "# TYPE sessiond_limit_misses_total counter\n"
    "sessiond_limit_misses_total 18\n"
    "# HELP sessiond_history_unkept_total Messages of channels with history published without being kept (history file full).\n"
    "# TYPE sessiond_history_unkept_total counter\n"
    "sessiond_history_unkept_total 19\n";

START_TEST(series_in_order)
{
    struct api_metric_values v = {1,  2,  3,  4,  5,  6,  7,  8,  9, 10,
                                  11, 12, 13, 14, 15, 16, 17, 18, 19};
    struct buf b = {0};
    ck_assert_int_eq(api_metrics_series(&b, &v), 0);
    ck_assert_int_eq(buf_append(&b, "", 1), 0);
    ck_assert_str_eq(b.p, want);
    buf_free(&b);
}
END_TEST

/* Figures are whole 64-bit numbers, the largest too. */
START_TEST(large_figures)
{
    struct api_metric_values v = {0};
    v.rss = UINT64_MAX;
    struct buf b = {0};
    ck_assert_int_eq(api_metrics_series(&b, &v), 0);
    ck_assert_int_eq(buf_append(&b, "", 1), 0);
    ck_assert_ptr_nonnull(strstr(b.p, "\nsessiond_memory_rss_bytes 18446744073709551615\n"));
    buf_free(&b);
}
END_TEST

Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("series");
    tcase_add_test(tc, series_in_order);
    tcase_add_test(tc, large_figures);
    suite_add_tcase(s, tc);
    return s;
}
