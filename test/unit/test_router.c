/* router: pattern matching, captures, percent-decoding, 400, 404 and 405 with Allow; and
 * the error JSON shape. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "router.h"
#include "suites.h"

static void handler_a(struct request *r) { (void)r; }
static void handler_b(struct request *r) { (void)r; }

static const struct route table[] = {
    {HTTP_GET, "/api/health", handler_a, OWNER_NONE},
    {HTTP_GET, "/api/sessions/{id}", handler_a, OWNER_NONE},
    {HTTP_PATCH, "/api/sessions/{id}", handler_b, OWNER_NONE},
    {HTTP_DELETE, "/api/sessions/{id}", handler_b, OWNER_NONE},
    {HTTP_POST, "/api/sessions/{id}/touch", handler_b, OWNER_NONE},
    {HTTP_POST, "/api/channels/{c}/publish", handler_b, OWNER_NONE},
    {HTTP_GET, "/api/users/{user}/sessions", handler_a, OWNER_USER},
};

static char store[ROUTE_PARAM_BYTES];

static int
match(enum http_method m, const char *path, struct route_match *rm)
{
    struct http_str p = {path, strlen(path)};
    return router_match(table, sizeof table / sizeof *table, m, p, store, sizeof store, rm);
}

/* Whether capture i is the string want (which may hold '/'). */
static bool
param_is(const struct route_match *m, int i, const char *want)
{
    return i < m->nparams && m->params[i].len == strlen(want) &&
           memcmp(m->params[i].p, want, m->params[i].len) == 0;
}

START_TEST(exact_path)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_GET, "/api/health", &m), 200);
    ck_assert_ptr_eq(m.route, &table[0]);
    ck_assert_int_eq(m.nparams, 0);
    ck_assert_int_eq(match(HTTP_GET, "/api/healthz", &m), 404);
    ck_assert_int_eq(match(HTTP_GET, "/api/healt", &m), 404);
    ck_assert_int_eq(match(HTTP_GET, "/api/health/", &m), 404);
}
END_TEST

START_TEST(head_matches_get)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_HEAD, "/api/health", &m), 200);
    ck_assert_ptr_eq(m.route, &table[0]);
}
END_TEST

START_TEST(captures)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_PATCH, "/api/sessions/abc123", &m), 200);
    ck_assert_ptr_eq(m.route, &table[2]);
    ck_assert_int_eq(m.nparams, 1);
    ck_assert_int_eq((int)m.params[0].len, 6);
    ck_assert(memcmp(m.params[0].p, "abc123", 6) == 0);
    ck_assert_int_eq(match(HTTP_POST, "/api/sessions/x/touch", &m), 200);
    ck_assert_ptr_eq(m.route, &table[4]);
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/", &m), 404); /* empty capture */
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/a/b", &m), 404);
}
END_TEST

START_TEST(method_not_allowed_lists_allow)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_PUT, "/api/sessions/abc", &m), 405);
    ck_assert_ptr_null(m.route);
    ck_assert_str_eq(m.allow, "GET, HEAD, PATCH, DELETE");
    ck_assert_int_eq(match(HTTP_POST, "/api/health", &m), 405);
    ck_assert_str_eq(m.allow, "GET, HEAD");
    ck_assert_int_eq(match(HTTP_GET, "/api/channels/c1/publish", &m), 405);
    ck_assert_str_eq(m.allow, "POST");
}
END_TEST

/* API.md: path segments are percent-decoded before they are matched or validated. */
START_TEST(captures_are_percent_decoded)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_GET, "/api/users/al%69ce/sessions", &m), 200);
    ck_assert_ptr_eq(m.route, &table[6]);
    ck_assert(param_is(&m, 0, "alice"));
    ck_assert_int_eq(match(HTTP_GET, "/api/users/%61%6C%69%63%65/sessions", &m), 200);
    ck_assert(param_is(&m, 0, "alice")); /* upper and lower case hex alike */
    ck_assert_int_eq(match(HTTP_POST, "/api/channels/room%3A42/publish", &m), 200);
    ck_assert(param_is(&m, 0, "room:42"));
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/100%25", &m), 200);
    ck_assert(param_is(&m, 0, "100%")); /* decoded once, not twice */
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/%2541", &m), 200);
    ck_assert(param_is(&m, 0, "%41"));
    /* A capture without escapes is not copied. */
    const char *path = "/api/sessions/abc";
    ck_assert_int_eq(match(HTTP_GET, path, &m), 200);
    ck_assert_ptr_eq(m.params[0].p, path + strlen("/api/sessions/"));
}
END_TEST

/* A decoded '/' is a byte of its segment, not a separator: it is captured, and it matches
 * no literal segment. */
START_TEST(encoded_slash_does_not_split)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_POST, "/api/channels/a%2Fb/publish", &m), 200);
    ck_assert(param_is(&m, 0, "a/b"));
    ck_assert_int_eq(match(HTTP_POST, "/api/channels/a%2fb/publish", &m), 200);
    ck_assert(param_is(&m, 0, "a/b"));
    ck_assert_int_eq(match(HTTP_POST, "/api/channels/a/b/publish", &m), 404);
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/x%2Ftouch", &m), 200);
    ck_assert_ptr_eq(m.route, &table[1]);
    ck_assert(param_is(&m, 0, "x/touch"));
    ck_assert_int_eq(match(HTTP_GET, "/api%2Fhealth", &m), 404);
}
END_TEST

START_TEST(literal_segments_are_decoded)
{
    struct route_match m;
    ck_assert_int_eq(match(HTTP_GET, "/api/%68ealth", &m), 200);
    ck_assert_ptr_eq(m.route, &table[0]);
    ck_assert_int_eq(match(HTTP_POST, "/%61pi/sessions/x/t%6Fuch", &m), 200);
    ck_assert_ptr_eq(m.route, &table[4]);
    ck_assert(param_is(&m, 0, "x"));
    ck_assert_int_eq(match(HTTP_GET, "/api/%68ealt", &m), 404);
    ck_assert_int_eq(match(HTTP_GET, "/api/%68ealthz", &m), 404);
    ck_assert_int_eq(match(HTTP_PUT, "/api/s%65ssions/abc", &m), 405);
    ck_assert_str_eq(m.allow, "GET, HEAD, PATCH, DELETE");
}
END_TEST

/* A bad escape or %00 is 400, whatever route the path would have had, and says where. */
START_TEST(bad_escapes_are_400)
{
    static const char *const bad[] = {
        "/api/users/al%6/sessions",
        "/api/users/al%zzce/sessions",
        "/api/sessions/abc%",
        "/api/sessions/abc%4",
        "/api/sessions/%g1",
        "/nowhere/%",
        "/api/health%",
        "/api/users/%%41/sessions",
    };
    struct route_match m;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(match(HTTP_GET, bad[i], &m) == 400, "%s", bad[i]);
        ck_assert_ptr_null(m.route);
        ck_assert_msg(strstr(m.why, "bad percent-escape at byte") != NULL, "%s: %s", bad[i], m.why);
    }
    ck_assert_int_eq(match(HTTP_GET, "/api/sessions/abc%4", &m), 400);
    ck_assert_str_eq(m.why, "The path has a bad percent-escape at byte 17: % must be "
                            "followed by two hex digits (%25 for % itself).");
    ck_assert_int_eq(match(HTTP_GET, "/api/users/a%00b/sessions", &m), 400);
    ck_assert_str_eq(m.why, "The path has %00 at byte 12: no name may contain NUL.");
    ck_assert_int_eq(match(HTTP_GET, "/nowhere/%00", &m), 400);
}
END_TEST

/* The decoded captures live in the caller's store; what does not fit is 400, not cut. */
START_TEST(decoded_captures_fit_the_store)
{
    struct route_match m;
    char path[4096], small[4];
    size_t n = (size_t)snprintf(path, sizeof path, "/api/users/");
    for (int i = 0; i < ROUTE_PARAM_BYTES; i++)
        n += (size_t)snprintf(path + n, sizeof path - n, "%%61");
    snprintf(path + n, sizeof path - n, "/sessions");
    ck_assert_int_eq(match(HTTP_GET, path, &m), 200);
    ck_assert_uint_eq(m.params[0].len, ROUTE_PARAM_BYTES);
    ck_assert_ptr_eq(m.params[0].p, store);
    snprintf(path + n, sizeof path - n, "%%61/sessions");
    ck_assert_int_eq(match(HTTP_GET, path, &m), 400);
    ck_assert_str_eq(m.why, "The path's parameters are longer than 512 bytes once "
                            "percent-decoded.");

    struct http_str p = {"/api/users/%61bcd/sessions", strlen("/api/users/%61bcd/sessions")};
    ck_assert_int_eq(
        router_match(table, sizeof table / sizeof *table, HTTP_GET, p, small, sizeof small, &m),
        200);
    ck_assert(param_is(&m, 0, "abcd"));
    p = (struct http_str){"/api/users/%61bcde/sessions", strlen("/api/users/%61bcde/sessions")};
    ck_assert_int_eq(
        router_match(table, sizeof table / sizeof *table, HTTP_GET, p, small, sizeof small, &m),
        400);
    /* Without escapes nothing is copied, so the store's size does not matter. */
    p = (struct http_str){"/api/users/abcdef/sessions", strlen("/api/users/abcdef/sessions")};
    ck_assert_int_eq(
        router_match(table, sizeof table / sizeof *table, HTTP_GET, p, small, sizeof small, &m),
        200);
    ck_assert(param_is(&m, 0, "abcdef"));
}
END_TEST

/* The one writer of status lines: the version and the reason come from the caller's
 * request and the status table; a final head adds Date and Server. */
START_TEST(status_lines)
{
    struct buf b = {0};
    ck_assert_int_eq(http_status_line(&b, 1, 100), 0);
    ck_assert_int_eq(http_status_line(&b, 1, 101), 0);
    ck_assert_int_eq(http_status_line(&b, 0, 404), 0);
    ck_assert_int_eq(http_head(&b, 1, 503, "Wed, 01 May 2024 12:00:00 GMT"), 0);
    ck_assert_int_eq(http_status_line(&b, 1, 299), 0);
    ck_assert_int_eq(buf_append(&b, "", 1), 0);
    ck_assert_str_eq(b.p, "HTTP/1.1 100 Continue\r\n"
                          "HTTP/1.1 101 Switching Protocols\r\n"
                          "HTTP/1.0 404 Not Found\r\n"
                          "HTTP/1.1 503 Service Unavailable\r\n"
                          "Date: Wed, 01 May 2024 12:00:00 GMT\r\nServer: sessiond\r\n"
                          "HTTP/1.1 299 Unknown\r\n");
    buf_free(&b);
}
END_TEST

START_TEST(error_json_shape)
{
    char out[256];
    size_t n = http_error_json(out, sizeof out, "bad_request", "Bad \"x\"\n at byte 3.");
    ck_assert_str_eq(out, "{\"error\":{\"code\":\"bad_request\",\"message\":"
                          "\"Bad \\\"x\\\"\\n at byte 3.\"}}");
    ck_assert_uint_eq(n, strlen(out));
    ck_assert_str_eq(http_error_code(431), "header_too_large");
    ck_assert_str_eq(http_error_code(415), "unsupported_media_type");
    ck_assert_str_eq(http_error_code(404), "not_found");
    ck_assert_str_eq(http_reason(405), "Method Not Allowed");
    /* Truncation keeps the output NUL-terminated and within the buffer. */
    char small[20];
    n = http_error_json(small, sizeof small, "bad_request", "long message here");
    ck_assert_uint_eq(n, sizeof small - 1);
    ck_assert_uint_eq(strlen(small), sizeof small - 1);
}
END_TEST

Suite *
router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("match");
    tcase_add_test(tc, exact_path);
    tcase_add_test(tc, head_matches_get);
    tcase_add_test(tc, captures);
    tcase_add_test(tc, method_not_allowed_lists_allow);
    tcase_add_test(tc, captures_are_percent_decoded);
    tcase_add_test(tc, encoded_slash_does_not_split);
    tcase_add_test(tc, literal_segments_are_decoded);
    tcase_add_test(tc, bad_escapes_are_400);
    tcase_add_test(tc, decoded_captures_fit_the_store);
    tcase_add_test(tc, error_json_shape);
    tcase_add_test(tc, status_lines);
    suite_add_tcase(s, tc);
    return s;
}
