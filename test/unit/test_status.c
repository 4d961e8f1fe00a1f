/* -s status: the human durations and the table made of a health document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"
#include "suites.h"

START_TEST(human_durations)
{
    static const struct {
        uint64_t s;
        const char *want;
    } cases[] = {{0, "0s"},      {59, "59s"},       {60, "1m"},    {3599, "59m"},
                 {3600, "1h"},   {86399, "23h"},    {86400, "1d"}, {4 * 86400 + 5, "4d"},
                 {UINT64_MAX, "213503982334601d"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[32];
        status_human_duration(cases[i].s, buf, sizeof buf);
        ck_assert_str_eq(buf, cases[i].want);
    }
}
END_TEST

/* Render body into a string (freed by the caller), or NULL with the error in err. */
static char *
render(const char *body, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    int rc = status_render(body, strlen(body), 4242, false, f, err, errlen);
    ck_assert_int_eq(fclose(f), 0);
    if (rc < 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Workers out of order, one of them from an older server without restarts and cpu. */
static const char health[] =
    "{\"status\":\"ok\",\"version\":\"1.2.3\",\"uptime_s\":7300,\"instance\":\"web1\","
    "\"sessions\":{\"active\":5,\"max\":100},"
    "\"workers\":{\"count\":2,\"alive\":2,\"restarts\":3,\"list\":["
    "{\"id\":1,\"pid\":501,\"state\":\"running\",\"generation\":0,\"uptime_s\":65,"
    "\"connections\":2,\"requests\":1234567,\"rss_bytes\":5242880,\"load\":0.1,"
    "\"cpu\":0.125,\"restarts\":3},"
    "{\"id\":0,\"pid\":500,\"state\":\"draining\",\"generation\":0,\"uptime_s\":4,"
    "\"connections\":0,\"requests\":9,\"rss_bytes\":1048576,\"load\":0}]},"
    "\"store\":{\"backend\":\"lmdb\",\"healthy\":true,\"circuit\":\"closed\"}}";

START_TEST(table)
{
    char err[256] = "";
    char *text = render(health, err, sizeof err);
    ck_assert_msg(text != NULL, "%s", err);
    static const char *const want[] = {
        "master pid 4242, up 2h, status ok; store lmdb, circuit closed; 5 session(s) active; "
        "2 of 2 worker(s) alive, 3 restart(s); sessiond 1.2.3 on web1",
        "ID  PID  STATE     UPTIME  RESTARTS  CONNS  REQUESTS  RSS      CPU",
        "0   500  draining  4s      -         0      9         1.0 MiB  -",
        "1   501  running   1m      3         2      1234567   5.0 MiB  12.5%",
    };
    const char *line = text;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const char *eol = strchr(line, '\n');
        ck_assert_ptr_nonnull(eol);
        ck_assert_msg(strlen(want[i]) == (size_t)(eol - line) &&
                          strncmp(line, want[i], strlen(want[i])) == 0,
                      "line %zu: \"%.*s\"", i, (int)(eol - line), line);
        line = eol + 1;
    }
    ck_assert_str_eq(line, "");
    free(text);
}
END_TEST

START_TEST(not_health)
{
    char err[256] = "";
    ck_assert_ptr_null(render("{\"status\":\"ok\"", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_ptr_null(render("{\"status\":\"ok\"}", err, sizeof err));
    ck_assert_str_eq(err, "not a health document");
    /* A worker without its pid. */
    char bad[sizeof health];
    memcpy(bad, health, sizeof health);
    char *pid = strstr(bad, "\"pid\":500");
    ck_assert_ptr_nonnull(pid);
    memcpy(pid, "\"pix\"", 5);
    ck_assert_ptr_null(render(bad, err, sizeof err));
    ck_assert_str_eq(err, "worker 1 of the list lacks a field");
}
END_TEST

Suite *
status_suite(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("status");
    tcase_add_test(tc, human_durations);
    tcase_add_test(tc, table);
    tcase_add_test(tc, not_health);
    suite_add_tcase(s, tc);
    return s;
}
