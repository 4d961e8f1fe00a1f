/* A redis-server of a unit test's own: on a free loopback port, saving nothing, its
 * output discarded, killed with the test process (PR_SET_PDEATHSIG) if the test dies
 * first, and stopped by its pid. Both Redis suites (redis, roster) use it. */
#ifndef SESSIOND_TEST_REDIS_SERVER_H
#define SESSIOND_TEST_REDIS_SERVER_H

#include <sys/types.h>

struct test_redis {
    pid_t pid;
    int port;
};

/* Start one and wait (at most 10 s) until it answers; fails the test otherwise. dir is
 * its working directory, or NULL for the test's own. */
void test_redis_start(struct test_redis *r, const char *dir);
/* Stop it (also when SIGSTOPped) and reap it; nothing when it was never started. */
void test_redis_stop(struct test_redis *r);

#endif
