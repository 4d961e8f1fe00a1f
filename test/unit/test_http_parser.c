/* Unit tests for worker/http_parser: the request head parser, token lists and the
 * chunked decoder. Inputs are copied into buffers of their exact length so that AddressSanitizer
 * catches any read past the bytes the parser was given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"
#include "suites.h"

#define MAX_HEAD 8192

static struct http_request req;
static int status;
static const char *why;

/* Move a string that points into copy to the same place in orig. */
static void
rebase(struct http_str *v, const char *copy, const char *orig)
{
    v->p = orig + (v->p - copy);
}

/* Parse the first n bytes of s from a heap copy of exactly n bytes. */
static enum http_parse_result
parse_n_max(const char *s, size_t n, size_t max_head)
{
    char *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, s, n);
    enum http_parse_result r = http_parse_request(copy, n, max_head, &req, &status, &why);
    /* Point the strings back into s, so that the test can still read them. */
    if (r == HTTP_PARSE_OK) {
        rebase(&req.method_name, copy, s);
        rebase(&req.target, copy, s);
        rebase(&req.path, copy, s);
        rebase(&req.query, copy, s);
        for (size_t i = 0; i < req.nheaders; i++) {
            rebase(&req.headers[i].name, copy, s);
            rebase(&req.headers[i].value, copy, s);
        }
    }
    free(copy);
    return r;
}

static enum http_parse_result
parse(const char *s)
{
    return parse_n_max(s, strlen(s), MAX_HEAD);
}

static struct http_str
str(const char *s)
{
    return (struct http_str){s, strlen(s)};
}

#define ASSERT_STR(s, lit)                                                                    \
    ck_assert_msg((s).len == strlen(lit) && memcmp((s).p, (lit), (s).len) == 0,               \
                  "got \"%.*s\", want \"%s\"", (int)(s).len, (s).p, (lit))

#define ASSERT_OK(raw)                                                                        \
    do {                                                                                      \
        enum http_parse_result r_ = parse(raw);                                               \
        ck_assert_msg(r_ == HTTP_PARSE_OK, "result %d status %d (%s)", r_, status,            \
                      why ? why : "-");                                                       \
        ck_assert_int_eq(status, 0);                                                          \
        ck_assert_ptr_null(why);                                                              \
    } while (0)

#define ASSERT_STATUS(raw, want)                                                              \
    do {                                                                                      \
        enum http_parse_result r_ = parse(raw);                                               \
        ck_assert_msg(r_ == HTTP_PARSE_ERROR, "result %d, want an error %d", r_, (want));     \
        ck_assert_int_eq(status, (want));                                                     \
        ck_assert_ptr_nonnull(why);                                                           \
    } while (0)

/* ---- Valid requests -------------------------------------------------------------- */

START_TEST(test_get_with_headers)
{
    const char *raw = "GET /api/health HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "User-Agent:curl/8.5\r\n"
                      "Accept: \t */* \t\r\n"
                      "\r\n";
    ASSERT_OK(raw);
    ck_assert_int_eq(req.method, HTTP_GET);
    ASSERT_STR(req.method_name, "GET");
    ASSERT_STR(req.target, "/api/health");
    ASSERT_STR(req.path, "/api/health");
    ck_assert_uint_eq(req.query.len, 0);
    ck_assert_int_eq(req.version_minor, 1);
    ck_assert_uint_eq(req.nheaders, 3);
    ASSERT_STR(req.headers[0].name, "Host");
    ASSERT_STR(req.headers[0].value, "example.com");
    ASSERT_STR(req.headers[1].name, "User-Agent");
    ASSERT_STR(req.headers[1].value, "curl/8.5");
    ASSERT_STR(req.headers[2].value, "*/*");
    ck_assert_int_eq(req.content_length, -1);
    ck_assert(!req.chunked);
    ck_assert(req.keep_alive);
    ck_assert(!req.expect_continue);
    ck_assert(!req.upgrade);
    ck_assert_uint_eq(req.head_len, strlen(raw));

    const struct http_str *host = http_header_get(&req, "hOST");
    ck_assert_ptr_nonnull(host);
    ASSERT_STR(*host, "example.com");
    ck_assert_ptr_null(http_header_get(&req, "Hos"));
    ck_assert_ptr_null(http_header_get(&req, "X-Missing"));
}
END_TEST

START_TEST(test_post_content_length)
{
    const char *raw = "POST /api/sessions HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n"
                      "Content-Type: application/json\r\n\r\n{\"user\":\"u\"}";
    ASSERT_OK(raw);
    ck_assert_int_eq(req.method, HTTP_POST);
    ck_assert_int_eq(req.content_length, 13);
    ck_assert(!req.chunked);
    ck_assert_uint_eq(req.head_len, strlen(raw) - 12);
    ck_assert_int_eq(raw[req.head_len], '{');

    ASSERT_OK("POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n");
    ck_assert_int_eq(req.content_length, 0);
    ASSERT_OK("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0007\r\n\r\n");
    ck_assert_int_eq(req.content_length, 7);
    ASSERT_OK("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n");
    ck_assert_int_eq(req.content_length, INT64_C(4611686018427387904));
}
END_TEST

START_TEST(test_chunked_request)
{
    ASSERT_OK("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    ck_assert(req.chunked);
    ck_assert_int_eq(req.content_length, -1);
    ASSERT_OK("POST /x HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  ChUnKeD \r\n\r\n");
    ck_assert(req.chunked);
}
END_TEST

START_TEST(test_keep_alive)
{
    ASSERT_OK("GET / HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(req.version_minor, 0);
    ck_assert(!req.keep_alive);
    ASSERT_OK("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    ck_assert(req.keep_alive);
    ASSERT_OK("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
    ck_assert(!req.keep_alive);
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert(req.keep_alive);
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    ck_assert(!req.keep_alive);
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nConnection: TE\r\nConnection: CLOSE\r\n\r\n");
    ck_assert(!req.keep_alive);
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n");
    ck_assert(req.keep_alive);
    /* Options are matched as http_list_has_token matches them, q=0 included. */
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nConnection: close;q=0\r\n\r\n");
    ck_assert(req.keep_alive);
}
END_TEST

START_TEST(test_pipelined)
{
    const char *raw = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                      "GET /two?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    size_t first = strlen("GET /one HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_OK(raw);
    ASSERT_STR(req.path, "/one");
    ck_assert(req.keep_alive);
    ck_assert_uint_eq(req.head_len, first);
    ASSERT_OK(raw + req.head_len);
    ASSERT_STR(req.path, "/two");
    ASSERT_STR(req.query, "x");
    ck_assert(!req.keep_alive);
    ck_assert_uint_eq(req.head_len, strlen(raw) - first);
}
END_TEST

START_TEST(test_query_split)
{
    ASSERT_OK("GET /a/b?x=1&y=2?z HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_STR(req.target, "/a/b?x=1&y=2?z");
    ASSERT_STR(req.path, "/a/b");
    ASSERT_STR(req.query, "x=1&y=2?z");
    ASSERT_OK("GET /?token=abc HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_STR(req.path, "/");
    ASSERT_STR(req.query, "token=abc");
    ASSERT_OK("GET /ws? HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_STR(req.path, "/ws");
    ck_assert_uint_eq(req.query.len, 0);
}
END_TEST

START_TEST(test_absolute_form)
{
    ASSERT_OK("GET http://example.com:8080/api/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    ASSERT_STR(req.target, "http://example.com:8080/api/x?y=1");
    ASSERT_STR(req.path, "/api/x");
    ASSERT_STR(req.query, "y=1");
    ASSERT_OK("GET HTTPS://h/ HTTP/1.1\r\nHost: h\r\n\r\n");
    ASSERT_STR(req.path, "/");
    ck_assert_uint_eq(req.query.len, 0);

    ASSERT_STATUS("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET api/x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}
END_TEST

START_TEST(test_options_asterisk)
{
    ASSERT_OK("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(req.method, HTTP_OPTIONS);
    ASSERT_STR(req.target, "*");
    ASSERT_STR(req.path, "*");
    ck_assert_uint_eq(req.query.len, 0);

    ASSERT_STATUS("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}
END_TEST

START_TEST(test_methods)
{
    static const struct {
        const char *name;
        enum http_method method;
    } cases[] = {
        {"GET", HTTP_GET},       {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},       {"PATCH", HTTP_PATCH},   {"DELETE", HTTP_DELETE},
        {"OPTIONS", HTTP_OPTIONS}, {"PROPFIND", HTTP_OTHER}, {"get", HTTP_OTHER},
        {"GETX", HTTP_OTHER},    {"X-M~!#$%&'*+.^_`|", HTTP_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char raw[128];
        snprintf(raw, sizeof raw, "%s / HTTP/1.1\r\nHost: h\r\n\r\n", cases[i].name);
        ASSERT_OK(raw);
        ck_assert_int_eq(req.method, cases[i].method);
        ASSERT_STR(req.method_name, cases[i].name);
    }
    ASSERT_STATUS("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}
END_TEST

START_TEST(test_leading_empty_lines)
{
    const char *raw = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_OK(raw);
    ck_assert_uint_eq(req.head_len, strlen(raw));
    ASSERT_STR(req.method_name, "GET");
    ASSERT_STATUS("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ck_assert_int_eq(parse("\r\n\r\n"), HTTP_PARSE_INCOMPLETE);
    ck_assert_int_eq(parse("\r"), HTTP_PARSE_INCOMPLETE);
}
END_TEST

START_TEST(test_expect_and_upgrade)
{
    ASSERT_OK("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
    ck_assert(req.expect_continue);
    ASSERT_OK("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n");
    ck_assert(!req.expect_continue);

    ASSERT_OK("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
              "Upgrade: websocket\r\n\r\n");
    ck_assert(req.upgrade);
    ASSERT_OK("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n\r\n");
    ck_assert(!req.upgrade);
    ASSERT_OK("GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    ck_assert(!req.upgrade);
}
END_TEST

START_TEST(test_header_values)
{
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nX-Utf8: caf\xc3\xa9\r\nX-Tab: a\tb\r\n"
              "X-Empty:\r\nX-Blank:  \t \r\n\r\n");
    ck_assert_uint_eq(req.nheaders, 5);
    ASSERT_STR(req.headers[1].value, "caf\xc3\xa9");
    ASSERT_STR(req.headers[2].value, "a\tb");
    ck_assert_uint_eq(req.headers[3].value.len, 0);
    ASSERT_STR(*http_header_get(&req, "x-blank"), "");
}
END_TEST

/* Build a GET with extra headers "X-N: v" so that it has total headers including Host. */
static char *
request_with_headers(size_t total)
{
    size_t cap = 64 + total * 16;
    char *raw = malloc(cap);
    ck_assert_ptr_nonnull(raw);
    size_t n = (size_t)snprintf(raw, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i < total; i++)
        n += (size_t)snprintf(raw + n, cap - n, "X-%zu: v\r\n", i);
    snprintf(raw + n, cap - n, "\r\n");
    return raw;
}

START_TEST(test_max_headers)
{
    char *raw = request_with_headers(HTTP_MAX_HEADERS);
    ASSERT_OK(raw);
    ck_assert_uint_eq(req.nheaders, HTTP_MAX_HEADERS);
    free(raw);
    raw = request_with_headers(HTTP_MAX_HEADERS + 1);
    ASSERT_STATUS(raw, 431);
    free(raw);
}
END_TEST

START_TEST(test_head_exactly_max)
{
    const char *raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\nBODY";
    size_t head = strlen(raw) - 4;
    ck_assert_int_eq(parse_n_max(raw, strlen(raw), head), HTTP_PARSE_OK);
    ck_assert_uint_eq(req.head_len, head);
    ck_assert_int_eq(parse_n_max(raw, head, head), HTTP_PARSE_OK);
    ck_assert_int_eq(parse_n_max(raw, strlen(raw), head - 1), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 431);
    ck_assert_int_eq(parse_n_max(raw, head - 1, head), HTTP_PARSE_INCOMPLETE);
}
END_TEST

/* ---- Incremental input ----------------------------------------------------------- */

static void
assert_every_prefix_incomplete(const char *raw)
{
    size_t n = strlen(raw);
    for (size_t k = 0; k < n; k++) {
        enum http_parse_result r = parse_n_max(raw, k, MAX_HEAD);
        ck_assert_msg(r == HTTP_PARSE_INCOMPLETE, "prefix %zu of %zu: result %d status %d (%s)",
                      k, n, r, status, why ? why : "-");
    }
    ck_assert_int_eq(parse_n_max(raw, n, MAX_HEAD), HTTP_PARSE_OK);
    ck_assert_uint_eq(req.head_len, n);
}

START_TEST(test_every_prefix)
{
    assert_every_prefix_incomplete("GET /api/health HTTP/1.1\r\nHost: example.com\r\n"
                                   "Accept: */*\r\nConnection: keep-alive\r\n\r\n");
    assert_every_prefix_incomplete("\r\n\r\nPOST http://h/x?y HTTP/1.0\r\nContent-Length: 3\r\n"
                                   "X-Empty:\r\nX-Tab:\ta \t\r\n\r\n");
    assert_every_prefix_incomplete("OPTIONS * HTTP/1.1\r\nHost: h\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n");
}
END_TEST

/* A hostile request must never be reported differently as it arrives: each prefix is
 * incomplete or already the final error. */
START_TEST(test_hostile_prefixes)
{
    static const struct {
        const char *raw;
        int status;
    } cases[] = {
        {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].raw);
        for (size_t k = 0; k <= n; k++) {
            enum http_parse_result r = parse_n_max(cases[i].raw, k, MAX_HEAD);
            if (r == HTTP_PARSE_INCOMPLETE)
                continue;
            ck_assert_int_eq(r, HTTP_PARSE_ERROR);
            ck_assert_int_eq(status, cases[i].status);
        }
        ck_assert_int_eq(status, cases[i].status);
    }
    /* A TLS ClientHello on the plain port is refused at once, not after max_head bytes. */
    ck_assert_int_eq(parse_n_max("\x16\x03\x01\x02\x00\x01", 6, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 400);
}
END_TEST

/* ---- Hostile input ---------------------------------------------------------------- */

#define REQ(headers) "POST / HTTP/1.1\r\nHost: h\r\n" headers "\r\n"

START_TEST(test_content_length_hostile)
{
    ASSERT_STATUS(REQ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 5\r\nContent-Length: 5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 5\r\ncontent-length: 6\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: +5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: -5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 1 2\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 5, 5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 5,5\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 0x10\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length:\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 4611686018427387905\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 99999999999999999999999\r\n"), 400);
    ASSERT_STATUS(REQ("Content-Length: 18446744073709551616\r\n"), 400);
}
END_TEST

START_TEST(test_transfer_encoding_hostile)
{
    ASSERT_STATUS(REQ("Transfer-Encoding: gzip\r\n"), 501);
    ASSERT_STATUS(REQ("Transfer-Encoding: identity\r\n"), 501);
    ASSERT_STATUS(REQ("Transfer-Encoding: gzip, chunked\r\n"), 501);
    ASSERT_STATUS(REQ("Transfer-Encoding: chunked, chunked\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: chunked,\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: ,chunked\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: chunked;x=1\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: \"chunked\"\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding:\r\n"), 400);
    ASSERT_STATUS(REQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400);
    ASSERT_STATUS("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}
END_TEST

START_TEST(test_line_endings_hostile)
{
    ASSERT_STATUS("GET / HTTP/1.1\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: a\nY: b\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\rX: b\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nX\rY: b\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /\r\n\r\n", 400); /* HTTP/0.9 */
}
END_TEST

START_TEST(test_control_chars_hostile)
{
    static const char nul_value[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    ck_assert_int_eq(parse_n_max(nul_value, sizeof nul_value - 1, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 400);
    static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0: b\r\n\r\n";
    ck_assert_int_eq(parse_n_max(nul_name, sizeof nul_name - 1, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01" "b\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[0m\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: b\r\n\r\n", 400);
    ASSERT_STATUS("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);

    /* The same bytes in the middle of long runs, which are scanned a word at a time. */
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghij\x7fklmnopqrst\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghij\x1fklmnopqrst\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghij\rklmnopqrst\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghij\nklmnopqrst\r\n\r\n", 400);
    ASSERT_STATUS("GET /abcdefghij\x7fklmnopqrst HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /abcdefghij\x80klmnopqrst HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /abcdefghij\x01klmnopqrst HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /abcdefghij\tklmnopqrst HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_OK("GET / HTTP/1.1\r\nHost: h\r\nX: abcdefghij\tk\xffmnopq\x80rst~\r\n\r\n");
    ASSERT_STR(req.headers[1].value, "abcdefghij\tk\xffmnopq\x80rst~");
}
END_TEST

START_TEST(test_header_syntax_hostile)
{
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX(y): 1\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nX y: 1\r\n\r\n", 400);
}
END_TEST

START_TEST(test_request_line_hostile)
{
    ASSERT_STATUS("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    ASSERT_STATUS("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
    ASSERT_STATUS("GET / HTTP/0.9\r\n\r\n", 505);
    ASSERT_STATUS("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / FOO\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    ASSERT_STATUS("GET / HTTP/1.1\r\n\r\n", 400);                       /* no Host */
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400); /* two Hosts */
    ASSERT_STATUS("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
}
END_TEST

START_TEST(test_sizes_hostile)
{
    size_t n = 9000;
    char *raw = malloc(n + 64);
    ck_assert_ptr_nonnull(raw);

    /* A request line with no end in sight. */
    memcpy(raw, "GET /", 5);
    memset(raw + 5, 'a', n - 5);
    ck_assert_int_eq(parse_n_max(raw, n, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 414);
    ck_assert_int_eq(parse_n_max(raw, MAX_HEAD - 1, MAX_HEAD), HTTP_PARSE_INCOMPLETE);
    ck_assert_int_eq(parse_n_max(raw, MAX_HEAD, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 414);

    /* A short request line and then headers past max_head. */
    size_t k = (size_t)sprintf(raw, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(raw + k, 'b', n - k);
    ck_assert_int_eq(parse_n_max(raw, n, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 431);

    /* A complete head just over the limit is also 431. */
    memcpy(raw + MAX_HEAD - 3, "\r\n\r\n", 4);
    ck_assert_int_eq(parse_n_max(raw, MAX_HEAD + 1, MAX_HEAD), HTTP_PARSE_ERROR);
    ck_assert_int_eq(status, 431);
    ck_assert_int_eq(parse_n_max(raw, MAX_HEAD + 1, MAX_HEAD + 1), HTTP_PARSE_OK);
    ck_assert_uint_eq(req.head_len, MAX_HEAD + 1);
    free(raw);
}
END_TEST

/* ---- Token lists ------------------------------------------------------------------ */

START_TEST(test_list_tokens)
{
    ck_assert(http_list_has_token(str("close"), "close"));
    ck_assert(http_list_has_token(str("Close"), "close"));
    ck_assert(http_list_has_token(str("keep-alive, close"), "CLOSE"));
    ck_assert(http_list_has_token(str(" \tfoo ,  close \t"), "close"));
    ck_assert(http_list_has_token(str(",,close,,"), "close"));
    ck_assert(!http_list_has_token(str("closed"), "close"));
    ck_assert(!http_list_has_token(str("xclose"), "close"));
    ck_assert(!http_list_has_token(str("clos"), "close"));
    ck_assert(!http_list_has_token(str(""), "close"));
    ck_assert(!http_list_has_token(str("keep-alive"), "close"));
    ck_assert(!http_list_has_token(str("a^b"), "a~b"));

    ck_assert(http_list_has_token(str("deflate, gzip;q=1"), "gzip"));
    ck_assert(http_list_has_token(str("deflate, gzip;q=1"), "deflate"));
    ck_assert(!http_list_has_token(str("deflate, gzip;q=1"), "br"));
    ck_assert(http_list_has_token(str("gzip; level=9"), "gzip"));
    ck_assert(http_list_has_token(str("gzip;q=0.001"), "gzip"));
    ck_assert(http_list_has_token(str("gzip;q=0.5, br"), "gzip"));
}
END_TEST

START_TEST(test_list_tokens_q_zero)
{
    ck_assert(!http_list_has_token(str("gzip;q=0"), "gzip"));
    ck_assert(!http_list_has_token(str("gzip;q=0."), "gzip"));
    ck_assert(!http_list_has_token(str("gzip;q=0.0"), "gzip"));
    ck_assert(!http_list_has_token(str("gzip;q=0.00"), "gzip"));
    ck_assert(!http_list_has_token(str("gzip;q=0.000"), "gzip"));
    ck_assert(!http_list_has_token(str("gzip ; Q = 0"), "gzip"));
    ck_assert(!http_list_has_token(str("br, gzip;level=1;q=0, deflate"), "gzip"));
    ck_assert(http_list_has_token(str("br, gzip;level=1;q=0, deflate"), "deflate"));
    ck_assert(http_list_has_token(str("gzip;qq=0"), "gzip"));
    /* Four decimals is not a qvalue, so it does not switch the token off. */
    ck_assert(http_list_has_token(str("gzip;q=0.0000"), "gzip"));
    ck_assert(http_list_has_token(str("gzip;q=00"), "gzip"));
    /* A quoted parameter value may hold commas and semicolons without ending the element. */
    ck_assert(!http_list_has_token(str("foo;bar=\"a, gzip;q=1\""), "gzip"));
    ck_assert(http_list_has_token(str("foo;bar=\"a,\\\"b\", gzip"), "gzip"));
}
END_TEST

/* ---- Chunked decoder -------------------------------------------------------------- */

static const char chunked_body[] =
    "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
static const char chunked_data[] = "Wikipedia in\r\n\r\nchunks.";

/* Decode all of in at once into a fresh buffer; returns the result. */
static enum http_chunked_result
decode_all(const char *in, size_t n, size_t max_body, char *out, size_t *out_len,
           size_t *consumed)
{
    struct http_chunked c;
    http_chunked_init(&c);
    *out_len = 0;
    return http_chunked_decode(&c, in, n, consumed, out, out_len, max_body);
}

static enum http_chunked_result
decode_str(const char *in, size_t max_body)
{
    char out[16384];
    size_t out_len, consumed;
    return decode_all(in, strlen(in), max_body, out, &out_len, &consumed);
}

START_TEST(test_chunked_whole)
{
    char out[128];
    size_t out_len, consumed;
    size_t n = sizeof chunked_body - 1;
    ck_assert_int_eq(decode_all(chunked_body, n, 1024, out, &out_len, &consumed),
                     HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(consumed, n);
    ck_assert_uint_eq(out_len, sizeof chunked_data - 1);
    ck_assert(memcmp(out, chunked_data, out_len) == 0);
}
END_TEST

START_TEST(test_chunked_every_split)
{
    size_t n = sizeof chunked_body - 1;
    for (size_t k = 0; k <= n; k++) {
        struct http_chunked c;
        char out[128];
        size_t out_len = 0, used1, used2;
        http_chunked_init(&c);
        enum http_chunked_result r =
            http_chunked_decode(&c, chunked_body, k, &used1, out, &out_len, 1024);
        ck_assert_int_eq(r, k == n ? HTTP_CHUNKED_DONE : HTTP_CHUNKED_MORE);
        ck_assert_uint_eq(used1, k);
        r = http_chunked_decode(&c, chunked_body + k, n - k, &used2, out, &out_len, 1024);
        ck_assert_int_eq(r, HTTP_CHUNKED_DONE);
        ck_assert_uint_eq(used2, n - k);
        ck_assert_uint_eq(out_len, sizeof chunked_data - 1);
        ck_assert(memcmp(out, chunked_data, out_len) == 0);
    }
}
END_TEST

START_TEST(test_chunked_byte_at_a_time_in_place)
{
    size_t n = sizeof chunked_body - 1;
    char buf[sizeof chunked_body];
    memcpy(buf, chunked_body, n);
    struct http_chunked c;
    http_chunked_init(&c);
    size_t out_len = 0, pos = 0, used;
    enum http_chunked_result r = HTTP_CHUNKED_MORE;
    while (pos < n) {
        r = http_chunked_decode(&c, buf + pos, 1, &used, buf, &out_len, 1024);
        ck_assert_uint_eq(used, 1);
        pos++;
        ck_assert_int_eq(r, pos == n ? HTTP_CHUNKED_DONE : HTTP_CHUNKED_MORE);
    }
    ck_assert_uint_eq(out_len, sizeof chunked_data - 1);
    ck_assert(memcmp(buf, chunked_data, out_len) == 0);
}
END_TEST

START_TEST(test_chunked_in_place_whole)
{
    char buf[sizeof chunked_body];
    size_t n = sizeof chunked_body - 1, out_len = 0, used;
    memcpy(buf, chunked_body, n);
    struct http_chunked c;
    http_chunked_init(&c);
    ck_assert_int_eq(http_chunked_decode(&c, buf, n, &used, buf, &out_len, 1024),
                     HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(used, n);
    ck_assert_uint_eq(out_len, sizeof chunked_data - 1);
    ck_assert(memcmp(buf, chunked_data, out_len) == 0);
}
END_TEST

START_TEST(test_chunked_extensions_and_trailers)
{
    char out[64];
    size_t out_len, used;
    const char *in = "4;name=value;x\r\nWiki\r\n3 ; y=\"a;b\"\r\nabc\r\n0;last\r\n"
                     "X-Checksum: 123\r\nY:\r\n\r\n";
    ck_assert_int_eq(decode_all(in, strlen(in), 64, out, &out_len, &used), HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(used, strlen(in));
    ck_assert_uint_eq(out_len, 7);
    ck_assert(memcmp(out, "Wikiabc", 7) == 0);
    ck_assert_int_eq(decode_str("0\r\n\r\n", 0), HTTP_CHUNKED_DONE);
    ck_assert_int_eq(decode_str("000000000000001\r\na\r\n0\r\n\r\n", 1), HTTP_CHUNKED_DONE);
    ck_assert_int_eq(decode_str("aB\r\n", 1024), HTTP_CHUNKED_MORE);
}
END_TEST

START_TEST(test_chunked_bad_syntax)
{
    ck_assert_int_eq(decode_str("g\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4g\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("-4\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0x4\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str(";x\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str(" 4\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4 \r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("1000000000000000\r\n", SIZE_MAX), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4\nWiki\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4\rWiki\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4;a\nb\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4;a\x01\r\n", 1024), HTTP_CHUNKED_ERROR);
    /* Missing or wrong CRLF after the data. */
    ck_assert_int_eq(decode_str("4\r\nWikiX\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4\r\nWiki\n0\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("4\r\nWiki\r0\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
    /* Bad trailers and a bad final line. */
    ck_assert_int_eq(decode_str("0\r\n\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0\r\n\r\r", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0\r\nX: a\nY: b\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0\r\n X: a\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0\r\nX : a\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(decode_str("0\r\n: a\r\n\r\n", 1024), HTTP_CHUNKED_ERROR);
}
END_TEST

START_TEST(test_chunked_nul_in_trailer)
{
    static const char in[] = "0\r\nX: a\0\r\n\r\n";
    char out[8];
    size_t out_len, used;
    ck_assert_int_eq(decode_all(in, sizeof in - 1, 8, out, &out_len, &used),
                     HTTP_CHUNKED_ERROR);
}
END_TEST

START_TEST(test_chunked_line_limits)
{
    char *in = malloc(20000);
    ck_assert_ptr_nonnull(in);

    /* A size line of exactly 4096 bytes (CRLF included) passes; one more byte fails. */
    memcpy(in, "1;", 2);
    memset(in + 2, 'e', 4092);
    strcpy(in + 4094, "\r\na\r\n0\r\n\r\n");
    ck_assert_int_eq(decode_str(in, 16), HTTP_CHUNKED_DONE);
    memcpy(in, "1;", 2);
    memset(in + 2, 'e', 4093);
    strcpy(in + 4095, "\r\na\r\n0\r\n\r\n");
    ck_assert_int_eq(decode_str(in, 16), HTTP_CHUNKED_ERROR);

    /* The trailer section is bounded to 8 KiB in all, over many short lines. */
    size_t n = (size_t)sprintf(in, "0\r\n");
    while (n < 3 + 8192 - 10)
        n += (size_t)sprintf(in + n, "X: 12345\r\n");
    strcpy(in + n, "\r\n");
    ck_assert_int_eq(decode_str(in, 16), HTTP_CHUNKED_DONE);
    /* One more byte in the last value makes the section 8193 bytes. */
    strcpy(in + n - 2, "6\r\n\r\n");
    ck_assert_int_eq(decode_str(in, 16), HTTP_CHUNKED_ERROR);
    free(in);
}
END_TEST

START_TEST(test_chunked_too_big)
{
    char out[64];
    size_t out_len, used;
    const char *in = "5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n";
    ck_assert_int_eq(decode_all(in, strlen(in), 9, out, &out_len, &used), HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(out_len, 9);
    ck_assert_int_eq(decode_all(in, strlen(in), 8, out, &out_len, &used),
                     HTTP_CHUNKED_TOO_BIG);
    ck_assert_uint_eq(out_len, 5);
    ck_assert_uint_eq(used, strlen("5\r\nhello\r\n4\r\n"));

    /* Refused on the size line alone, before any of the data has arrived. */
    ck_assert_int_eq(decode_str("fffffffffffffff\r\n", 1 << 20), HTTP_CHUNKED_TOO_BIG);
    ck_assert_int_eq(decode_str("401\r\n", 1024), HTTP_CHUNKED_TOO_BIG);
    ck_assert_int_eq(decode_str("400\r\n", 1024), HTTP_CHUNKED_MORE);
}
END_TEST

START_TEST(test_chunked_leaves_next_request)
{
    const char *in = "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    char out[64];
    size_t out_len, used;
    struct http_chunked c;
    http_chunked_init(&c);
    out_len = 0;
    ck_assert_int_eq(http_chunked_decode(&c, in, strlen(in), &used, out, &out_len, 64),
                     HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(used, strlen("1\r\na\r\n0\r\n\r\n"));
    ck_assert(memcmp(in + used, "GET", 3) == 0);
    ck_assert_uint_eq(out_len, 1);

    /* DONE and errors stay put: later calls consume nothing. */
    ck_assert_int_eq(http_chunked_decode(&c, in + used, 3, &used, out, &out_len, 64),
                     HTTP_CHUNKED_DONE);
    ck_assert_uint_eq(used, 0);
    ck_assert_uint_eq(out_len, 1);
    http_chunked_init(&c);
    ck_assert_int_eq(http_chunked_decode(&c, "z", 1, &used, out, &out_len, 64),
                     HTTP_CHUNKED_ERROR);
    ck_assert_int_eq(http_chunked_decode(&c, "1\r\n", 3, &used, out, &out_len, 64),
                     HTTP_CHUNKED_ERROR);
    ck_assert_uint_eq(used, 0);
}
END_TEST

Suite *
http_parser_suite(void)
{
    Suite *s = suite_create("http_parser");

    TCase *valid = tcase_create("valid");
    tcase_add_test(valid, test_get_with_headers);
    tcase_add_test(valid, test_post_content_length);
    tcase_add_test(valid, test_chunked_request);
    tcase_add_test(valid, test_keep_alive);
    tcase_add_test(valid, test_pipelined);
    tcase_add_test(valid, test_query_split);
    tcase_add_test(valid, test_absolute_form);
    tcase_add_test(valid, test_options_asterisk);
    tcase_add_test(valid, test_methods);
    tcase_add_test(valid, test_leading_empty_lines);
    tcase_add_test(valid, test_expect_and_upgrade);
    tcase_add_test(valid, test_header_values);
    tcase_add_test(valid, test_max_headers);
    tcase_add_test(valid, test_head_exactly_max);
    suite_add_tcase(s, valid);

    TCase *partial = tcase_create("incremental");
    tcase_add_test(partial, test_every_prefix);
    tcase_add_test(partial, test_hostile_prefixes);
    suite_add_tcase(s, partial);

    TCase *hostile = tcase_create("hostile");
    tcase_add_test(hostile, test_content_length_hostile);
    tcase_add_test(hostile, test_transfer_encoding_hostile);
    tcase_add_test(hostile, test_line_endings_hostile);
    tcase_add_test(hostile, test_control_chars_hostile);
    tcase_add_test(hostile, test_header_syntax_hostile);
    tcase_add_test(hostile, test_request_line_hostile);
    tcase_add_test(hostile, test_sizes_hostile);
    suite_add_tcase(s, hostile);

    TCase *lists = tcase_create("token lists");
    tcase_add_test(lists, test_list_tokens);
    tcase_add_test(lists, test_list_tokens_q_zero);
    suite_add_tcase(s, lists);

    TCase *chunked = tcase_create("chunked");
    tcase_add_test(chunked, test_chunked_whole);
    tcase_add_test(chunked, test_chunked_every_split);
    tcase_add_test(chunked, test_chunked_byte_at_a_time_in_place);
    tcase_add_test(chunked, test_chunked_in_place_whole);
    tcase_add_test(chunked, test_chunked_extensions_and_trailers);
    tcase_add_test(chunked, test_chunked_bad_syntax);
    tcase_add_test(chunked, test_chunked_nul_in_trailer);
    tcase_add_test(chunked, test_chunked_line_limits);
    tcase_add_test(chunked, test_chunked_too_big);
    tcase_add_test(chunked, test_chunked_leaves_next_request);
    suite_add_tcase(s, chunked);
    return s;
}
