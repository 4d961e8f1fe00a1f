/* log: the JSON line format. Each line must be valid JSON whatever the message holds, since
 * log collectors drop (or choke on) a line that is not. jansson is the judge. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "suites.h"

static const struct timeval when = {.tv_sec = 1714564800, .tv_usec = 123456};

/* Format msg as worker 3 of pid 4242, check that the line parses, and return it. */
static json_t *
line_of(const char *msg, char *out, size_t len)
{
    size_t n = log_json_line(out, len, &when, LOG_LVL_WARN, "worker", 3, 4242, msg);
    ck_assert_uint_eq(n, strlen(out));
    ck_assert_uint_lt(n, len);
    json_error_t jerr;
    json_t *j = json_loadb(out, n, 0, &jerr);
    ck_assert_msg(j != NULL, "not JSON (%s): %s", jerr.text, out);
    return j;
}

START_TEST(fields)
{
    char out[512];
    json_t *j = line_of("started worker 0 (pid 12)", out, sizeof out);
    ck_assert_str_eq(out, "{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"warn\","
                          "\"process\":\"worker\",\"worker\":3,\"pid\":4242,"
                          "\"msg\":\"started worker 0 (pid 12)\"}");
    json_decref(j);
    /* The master's lines have no worker field. */
    log_json_line(out, sizeof out, &when, LOG_LVL_INFO, "master", -1, 7, "hi");
    ck_assert_str_eq(out, "{\"ts\":\"2024-05-01T12:00:00.123Z\",\"level\":\"info\","
                          "\"process\":\"master\",\"pid\":7,\"msg\":\"hi\"}");
}
END_TEST

START_TEST(escapes)
{
    char out[512];
    const char *msg = "say \"hi\" \\ back\nslash\ttab\r\x01\x1f\x7f end";
    json_t *j = line_of(msg, out, sizeof out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), msg);
    ck_assert_ptr_nonnull(strstr(out, "\\\"hi\\\" \\\\ back\\nslash\\ttab\\r"
                                      "\\u0001\\u001f\\u007f end"));
    json_decref(j);
}
END_TEST

START_TEST(utf8)
{
    char out[512];
    /* Valid: 2, 3 and 4 bytes, kept as they are. */
    const char *good = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    json_t *j = line_of(good, out, sizeof out);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), good);
    json_decref(j);

    /* Invalid: a stray continuation, a cut sequence, an overlong '/', a surrogate, above
     * U+10FFFF, 0xff. Every bad byte becomes one U+FFFD; the good ones around stay. */
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a\x80z", "a\xef\xbf\xbdz"},
        {"a\xc3", "a\xef\xbf\xbd"},
        {"a\xe2\x82z", "a\xef\xbf\xbd\xef\xbf\xbdz"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xff\xc3\xa9", "\xef\xbf\xbd\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        j = line_of(cases[i].in, out, sizeof out);
        ck_assert_msg(strcmp(json_string_value(json_object_get(j, "msg")), cases[i].want) == 0,
                      "case %zu: %s", i, out);
        json_decref(j);
    }
}
END_TEST

/* A message too long for the line is cut, never inside an escape or a character. */
START_TEST(cut_short)
{
    char msg[600], out[256];
    for (size_t i = 0; i + 1 < sizeof msg; i += 3)
        memcpy(msg + i, i % 2 ? "\xe2\x82\xac" : "\"\x01\\", 3);
    msg[sizeof msg - 1] = '\0';
    for (size_t len = 256; len > 200; len--) {
        json_t *j = line_of(msg, out, len);
        const char *got = json_string_value(json_object_get(j, "msg"));
        ck_assert_uint_gt(strlen(got), 0);
        ck_assert_msg(strncmp(got, msg, strlen(got)) == 0, "len %zu: %s", len, out);
        json_decref(j);
    }
}
END_TEST

START_TEST(format_names)
{
    ck_assert_int_eq(log_format_parse("text"), LOG_FMT_TEXT);
    ck_assert_int_eq(log_format_parse("json"), LOG_FMT_JSON);
    ck_assert_int_eq(log_format_parse("JSON"), -1);
    ck_assert_int_eq(log_format_parse(""), -1);
}
END_TEST

Suite *
log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, fields);
    tcase_add_test(tc, escapes);
    tcase_add_test(tc, utf8);
    tcase_add_test(tc, cut_short);
    tcase_add_test(tc, format_names);
    suite_add_tcase(s, tc);
    return s;
}
