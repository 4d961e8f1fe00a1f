/* router: pattern matching, captures, 404 and 405 with Allow; and the error JSON shape. */
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
};

static int
match(enum http_method m, const char *path, struct route_match *rm)
{
    struct http_str p = {path, strlen(path)};
    return router_match(table, sizeof table / sizeof *table, m, p, rm);
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
    tcase_add_test(tc, error_json_shape);
    tcase_add_test(tc, status_lines);
    suite_add_tcase(s, tc);
    return s;
}
