#include <stdlib.h>

#include "suites.h"

int
main(void)
{
    Suite *(*const suites[])(void) = {
        conf_suite,
        namespace_suite,
        grants_suite,
        cores_suite,
        http_parser_suite,
        router_suite,
        scoreboard_suite,
        token_suite,
        json_merge_suite,
        redis_url_suite,
        redis_sentinel_suite,
        redis_suite,
        redis_cache_suite,
        ws_proto_suite,
        hub_suite,
        roster_suite,
        limits_suite,
        status_suite,
        log_suite,
        utf8_suite,
        util_suite,
        metrics_suite,
        store_suite,
        history_suite,
        chan_order_suite,
        bus_suite,
        instance_lock_suite,
        upgrade_suite,
    };
    SRunner *sr = srunner_create(NULL);
    for (size_t i = 0; i < sizeof suites / sizeof *suites; i++)
        srunner_add_suite(sr, suites[i]());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
