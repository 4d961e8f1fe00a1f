/* One Check suite per module; test/unit/main.c runs them all. */
#ifndef SESSIOND_TEST_SUITES_H
#define SESSIOND_TEST_SUITES_H

#include <check.h>

Suite *conf_suite(void);
Suite *namespace_suite(void);
Suite *grants_suite(void);
Suite *cores_suite(void);
Suite *http_parser_suite(void);
Suite *router_suite(void);
Suite *scoreboard_suite(void);
Suite *token_suite(void);
Suite *store_suite(void);
Suite *history_suite(void);
Suite *chan_order_suite(void);
Suite *json_merge_suite(void);
Suite *redis_url_suite(void);
Suite *redis_sentinel_suite(void);
Suite *redis_suite(void);
Suite *redis_cache_suite(void);
Suite *ws_proto_suite(void);
Suite *bus_suite(void);
Suite *hub_suite(void);
Suite *roster_suite(void);
Suite *limits_suite(void);
Suite *status_suite(void);
Suite *log_suite(void);
Suite *utf8_suite(void);
Suite *util_suite(void);
Suite *metrics_suite(void);
Suite *instance_lock_suite(void);
Suite *upgrade_suite(void);

#endif
