/* fuzz_http_parser: request heads and chunked bodies (worker/http_parser.c).
 *
 * The input is what a client sends. Besides the sanitizers, it checks the promises of
 * http_parser.h that the server relies on:
 *   - every string of a parsed request lies inside the buffer and within the head;
 *   - a head that parses is INCOMPLETE at any shorter length (a stateless parser that
 *     answered differently on a prefix would act on a request before it arrived), and
 *     still parses with max_head at exactly its length;
 *   - the chunked decoder gives the same result, the same bytes and the same end, in one
 *     call into another buffer and in small pieces decoded in place, as conn.c does;
 *   - the router (worker/router.c) matches every parsed path with its segments
 *     percent-decoded: 400 exactly when an escape is bad or %00, and otherwise captures
 *     that are their raw segments decoded, in the path or in the store, never empty. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"
#include "fuzz.h"
#include "router.h"
#include "util.h"

#define MAX_HEAD 8192
#define MAX_BODY (1 << 16)

static void
check_str(struct http_str s, const char *buf, size_t head_len, const char *what)
{
    check(s.len == 0 || (s.p >= buf && s.p + s.len <= buf + head_len), what);
}

static void
check_request(const struct http_request *req, const char *buf, size_t len)
{
    check(req->head_len > 0 && req->head_len <= len && req->head_len <= MAX_HEAD, "head_len");
    check(req->version_minor == 0 || req->version_minor == 1, "version");
    check(req->nheaders <= HTTP_MAX_HEADERS, "nheaders");
    check(req->content_length >= -1, "content_length");
    check(!(req->chunked && req->content_length >= 0), "both lengths");
    check_str(req->method_name, buf, req->head_len, "method");
    check_str(req->target, buf, req->head_len, "target");
    check_str(req->path, buf, req->head_len, "path");
    check_str(req->query, buf, req->head_len, "query");
    check(req->path.len > 0, "empty path");
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        check(h->name.len > 0, "empty header name");
        check_str(h->name, buf, req->head_len, "header name");
        check_str(h->value, buf, req->head_len, "header value");
        /* The token walker on every value, as the router and ws.c use it. */
        (void)http_list_has_token(h->value, "upgrade");
        (void)http_list_has_token(h->value, "gzip");
    }
    (void)http_header_get(req, "Host");
}

/* The chunked decoder, two ways; they must agree. */
static void
check_chunked(const char *body, size_t len)
{
    struct http_chunked a, b;
    http_chunked_init(&a);
    http_chunked_init(&b);
    char *out_a = malloc(len + 1), *work = malloc(len + 1);
    check(out_a != NULL && work != NULL, "malloc");
    memcpy(work, body, len);

    size_t used_a = 0, got_a = 0;
    enum http_chunked_result ra =
        http_chunked_decode(&a, body, len, &used_a, out_a, &got_a, MAX_BODY);

    /* In place, in pieces of 1 to 7 bytes (by the length, so each input has one split),
     * stopping at the first result that is not MORE, as conn.c does. */
    size_t step = len % 7 + 1, at = 0, got_b = 0;
    enum http_chunked_result rb = HTTP_CHUNKED_MORE;
    while (at < len && rb == HTTP_CHUNKED_MORE) {
        size_t n = len - at < step ? len - at : step, used = 0;
        rb = http_chunked_decode(&b, work + at, n, &used, work, &got_b, MAX_BODY);
        check(used <= n, "consumed more than given");
        check(rb != HTTP_CHUNKED_MORE || used == n, "MORE without consuming everything");
        at += used;
    }
    check(ra == rb, "one call and pieces disagree on the result");
    check(got_a == got_b && memcmp(out_a, work, got_a) == 0, "the decoded bytes differ");
    check(got_a <= MAX_BODY, "body over max_body");
    if (ra == HTTP_CHUNKED_DONE)
        check(used_a == at, "the body ends in different places");
    free(out_a);
    free(work);
}

static void
route_any(struct request *r)
{
    (void)r;
}

/* Patterns of the daemon's shapes: literals, one capture, two in a row. */
static const struct route routes[] = {
    {HTTP_GET, "/api/health", route_any, OWNER_NONE},
    {HTTP_GET, "/api/users/{user}/sessions", route_any, OWNER_USER},
    {HTTP_POST, "/api/channels/{channel}/publish", route_any, OWNER_NONE},
    {HTTP_GET, "/api/sessions/{id}", route_any, OWNER_NONE},
    {HTTP_PATCH, "/{a}/{b}", route_any, OWNER_NONE},
};

/* The router's decision the slow way, to compare with: the path cut at its own '/' into
 * segments, each decoded on its own; a pattern's literal segments must equal them, and
 * each capture is one, not empty. */
#define MAX_SEGS 64

struct segs {
    char bytes[MAX_HEAD];
    struct http_str seg[MAX_SEGS];
    bool escaped[MAX_SEGS]; /* the raw segment had an escape (so it is copied) */
    size_t n;
    bool bad;       /* a bad escape or %00 somewhere */
    bool unmatched; /* not absolute, or more segments than any pattern has */
};

static void
decode_slowly(struct http_str path, struct segs *out)
{
    size_t k = 0;
    out->n = 0;
    out->bad = out->unmatched = false;
    const char *p = path.p, *end = path.p + path.len;
    for (const char *q = p; q < end && !out->bad; q++) {
        if (*q != '%') continue;
        out->bad = end - q < 3 || hex_digit((unsigned char)q[1]) < 0 ||
                   hex_digit((unsigned char)q[2]) < 0 || (q[1] == '0' && q[2] == '0');
        q += 2;
    }
    if (out->bad) return;
    out->unmatched = p == end || *p != '/';
    while (p < end && !out->unmatched) {
        p++; /* the '/' */
        if (out->n == MAX_SEGS) {
            out->unmatched = true;
            return;
        }
        struct http_str *seg = &out->seg[out->n];
        out->escaped[out->n] = false;
        seg->p = out->bytes + k;
        for (; p < end && *p != '/'; p++) {
            if (*p == '%') {
                out->escaped[out->n] = true;
                out->bytes[k++] =
                    (char)(hex_digit((unsigned char)p[1]) << 4 | hex_digit((unsigned char)p[2]));
                p += 2;
            } else {
                out->bytes[k++] = *p;
            }
        }
        seg->len = (size_t)(out->bytes + k - seg->p);
        out->n++;
    }
}

/* Whether pattern matches the decoded segments; its captures go to caps. */
static bool
slow_match(const char *pat, const struct segs *s, struct http_str *caps, size_t *ncaps,
           size_t *copied)
{
    size_t i = 0;
    *ncaps = *copied = 0;
    for (const char *q = pat; *q == '/'; i++) {
        q++;
        size_t len = strcspn(q, "/");
        if (i == s->n) return false;
        if (*q == '{') {
            if (s->seg[i].len == 0) return false;
            caps[(*ncaps)++] = s->seg[i];
            if (s->escaped[i]) *copied += s->seg[i].len;
        } else if (s->seg[i].len != len || memcmp(s->seg[i].p, q, len) != 0) {
            return false;
        }
        q += len;
    }
    return i == s->n;
}

static void
check_route(struct http_str path, enum http_method method)
{
    static char store[ROUTE_PARAM_BYTES];
    static struct segs s;
    struct route_match m;
    int st =
        router_match(routes, sizeof routes / sizeof *routes, method, path, store, sizeof store, &m);
    decode_slowly(path, &s);
    if (s.bad) {
        check(st == 400 && m.why[0] != '\0', "a bad escape or %00 not answered 400");
        return;
    }
    /* What the router should answer: the first route of the method that matches, and
     * 400 if its decoded captures do not fit the store; else 405 or 404. */
    int want = 404;
    const struct route *route = NULL;
    struct http_str caps[ROUTE_MAX_PARAMS];
    size_t ncaps = 0;
    for (size_t i = 0; i < sizeof routes / sizeof *routes && !s.unmatched; i++) {
        struct http_str c[ROUTE_MAX_PARAMS];
        size_t nc, cp;
        if (!slow_match(routes[i].pattern, &s, c, &nc, &cp)) continue;
        bool same =
            routes[i].method == method || (method == HTTP_HEAD && routes[i].method == HTTP_GET);
        if (!same) {
            want = 405;
            continue;
        }
        route = &routes[i];
        memcpy(caps, c, sizeof c);
        ncaps = nc;
        want = cp > sizeof store ? 400 : 200;
        break;
    }
    check(st == want, "the router and the slow way disagree on the status");
    if (st != 200) return;
    check(m.route == route && (size_t)m.nparams == ncaps, "the router chose another route");
    for (size_t i = 0; i < ncaps; i++) {
        struct http_str v = m.params[i];
        bool in_path = v.p >= path.p && v.p + v.len <= path.p + path.len;
        bool in_store = v.p >= store && v.p + v.len <= store + sizeof store;
        check(in_path || in_store, "a capture outside the path and the store");
        check(v.len == caps[i].len && memcmp(v.p, caps[i].p, v.len) == 0,
              "a capture that is not its segment decoded");
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_request req;
    int status;
    const char *why;
    enum http_parse_result r = http_parse_request(buf, size, MAX_HEAD, &req, &status, &why);
    if (r == HTTP_PARSE_ERROR) {
        check(status >= 400 && status < 600 && why != NULL, "error without status or reason");
        check_chunked(buf, size); /* not a head: the decoder gets the bytes instead */
        return 0;
    }
    check(status == 0 && why == NULL, "status on success");
    if (r == HTTP_PARSE_INCOMPLETE) {
        check(size < MAX_HEAD, "INCOMPLETE at max_head");
        check_chunked(buf, size);
        return 0;
    }
    check_request(&req, buf, size);
    check_route(req.path, req.method);
    size_t head = req.head_len;

    struct http_request again;
    check(http_parse_request(buf, head, head, &again, &status, &why) == HTTP_PARSE_OK &&
              again.head_len == head,
          "not OK with max_head at the head's length");
    size_t cut[] = {head - 1, head / 2, 1};
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++)
        if (cut[i] < head)
            check(http_parse_request(buf, cut[i], MAX_HEAD, &again, &status, &why) ==
                      HTTP_PARSE_INCOMPLETE,
                  "a prefix of a good head is not INCOMPLETE");
    check_chunked(buf + head, size - head);
    return 0;
}
