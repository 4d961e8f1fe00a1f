/* http_parser: a strict, allocation-free HTTP/1.x request head parser and chunked decoder.
 *
 * The head parser runs over the whole buffer on every call instead of keeping state between
 * reads: a head is small, one pass over it with a table lookup per byte costs far less than
 * the read that brought it, and a stateless parser cannot get out of step with the buffer.
 * Syntax is checked as the bytes are scanned, so a prefix that is already wrong is refused
 * at once rather than after max_head bytes; the meaning of the headers (lengths, codings,
 * Host, Connection) is checked once the head is complete. */
#include "http_parser.h"

#include <string.h>

#include "util.h"

/* Character classes, one bit each, looked up in char_class below. */
#define C_TCHAR 1 /* RFC 9110 token characters: method and field names */
#define C_VCHAR 2 /* visible ASCII 0x21-0x7E: request-target bytes */
#define C_VALUE 4 /* field-value bytes: HTAB, SP, visible ASCII and obs-text 0x80-0xFF */

/* clang-format off */
static const unsigned char char_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6,
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};
/* clang-format on */

static inline bool
is_class(char c, unsigned cls)
{
    return (char_class[(unsigned char)c] & cls) != 0;
}

static inline bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ASCII-only lowering without a branch: tolower() depends on the locale, and a '|0x20'
 * trick would make token characters such as '^' and '~' compare equal. */
static inline unsigned char
lower(char c)
{
    unsigned u = (unsigned char)c;
    return (unsigned char)(u + ((unsigned)(u - 'A' < 26u) << 5));
}

static bool
caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

static bool
str_caseeq(struct http_str s, const char *lit, size_t lit_len)
{
    return s.len == lit_len && caseeq(s.p, lit, lit_len);
}

#define STR_CASEEQ(s, lit) str_caseeq((s), (lit), sizeof(lit) - 1)

/* Word-at-a-time scanning with the "haszero" bit tricks: eight bytes are tested at once
 * for any byte that would end the run, and the mask says which one it is. Targets and
 * values are most of a head's bytes; this keeps them cheap without SIMD instruction sets
 * or per-byte branches. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Load eight bytes with the first one lowest, as scan_class needs. */
static inline uint64_t
load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Non-zero exactly when some byte of w is below n (for n <= 128). */
static inline uint64_t
has_less(uint64_t w, unsigned n)
{
    return (w - ONES * n) & ~w & HIGHS;
}

static inline uint64_t
has_byte(uint64_t w, unsigned char c)
{
    return has_less(w ^ (ONES * c), 1);
}

/* The bytes of w outside cls (C_VCHAR or C_VALUE), as a mask whose lowest set bit is in
 * the first such byte; bits above it may be false alarms, which is why only the lowest is
 * used. Tabs, allowed in values, are flagged here and then accepted by the table. */
static inline uint64_t
word_outside(uint64_t w, unsigned cls)
{
    if (cls == C_VCHAR)
        return has_less(w, 0x21) | has_byte(w, 0x7f) | (w & HIGHS);
    return has_less(w, 0x20) | has_byte(w, 0x7f);
}

/* Return the first byte at or after p that is not in cls, or end. The lowest set bit of
 * the mask names the first flagged byte; a tab there is accepted and the scan goes on. */
static inline const char *
scan_class(const char *p, const char *end, unsigned cls)
{
    while (end - p >= 8) {
        uint64_t m = word_outside(load64(p), cls);
        if (m == 0) {
            p += 8;
            continue;
        }
        p += __builtin_ctzll(m) >> 3;
        if (!is_class(*p, cls))
            return p;
        p++;
    }
    while (p < end && is_class(*p, cls))
        p++;
    return p;
}

/* ---- Request head ------------------------------------------------------------------ */

/* Internal results: 0 is success, NEED means the bytes ran out before the element ended,
 * and any other value is the HTTP status of the error. */
enum { NEED = -1 };

struct parser {
    const char *p;   /* next byte to look at */
    const char *end; /* end of the bytes we may look at: min(len, max_head) */
    const char *why; /* reason for the error, when there is one */
};

static int
fail(struct parser *ps, int status, const char *why)
{
    ps->why = why;
    return status;
}

/* Empty lines before the request line are allowed (RFC 9112 section 2.2), but each must be
 * a full CRLF: a lone CR or LF is exactly what lets two parsers split a stream differently. */
static int
skip_empty_lines(struct parser *ps)
{
    while (ps->p < ps->end && ps->p[0] == '\r') {
        if (ps->end - ps->p < 2)
            return NEED;
        if (ps->p[1] != '\n')
            return fail(ps, 400, "bare CR");
        ps->p += 2;
    }
    if (ps->p < ps->end && ps->p[0] == '\n')
        return fail(ps, 400, "bare LF");
    return 0;
}

static enum http_method
method_from_name(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return HTTP_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return HTTP_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return HTTP_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return HTTP_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return HTTP_PATCH;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return HTTP_OPTIONS;
        break;
    }
    return HTTP_OTHER;
}

static int
parse_method(struct parser *ps, struct http_request *req)
{
    const char *start = ps->p;
    while (ps->p < ps->end && is_class(*ps->p, C_TCHAR))
        ps->p++;
    if (ps->p == ps->end)
        return NEED;
    if (*ps->p != ' ' || ps->p == start)
        return fail(ps, 400, "invalid method");
    req->method_name.p = start;
    req->method_name.len = (size_t)(ps->p - start);
    req->method = method_from_name(start, req->method_name.len);
    ps->p++;
    return 0;
}

/* Split path and query at the first '?'. */
static void
split_query(struct http_request *req, const char *path, const char *end)
{
    const char *q = memchr(path, '?', (size_t)(end - path));
    req->path.p = path;
    req->path.len = (size_t)((q ? q : end) - path);
    req->query.p = q ? q + 1 : end;
    req->query.len = q ? (size_t)(end - q - 1) : 0;
}

/* Length of an "http://" or "https://" prefix (scheme case-insensitive), or 0. */
static size_t
http_scheme_len(const char *t, size_t n)
{
    if (n >= 7 && caseeq(t, "http://", 7))
        return 7;
    if (n >= 8 && caseeq(t, "https://", 8))
        return 8;
    return 0;
}

/* Absolute-form (RFC 9112 section 3.2.2): path and query come from the part after the
 * authority. We require a non-empty authority without userinfo and a path starting with
 * '/', so that path always points into the buffer and the router sees the origin-form. */
static int
split_absolute(struct parser *ps, struct http_request *req, size_t scheme_len)
{
    const char *auth = req->target.p + scheme_len;
    const char *end = req->target.p + req->target.len;
    const char *a = auth;
    while (a < end && *a != '/' && *a != '?') {
        if (*a == '@')
            return fail(ps, 400, "userinfo in request target");
        a++;
    }
    if (a == auth)
        return fail(ps, 400, "empty authority in request target");
    if (a == end || *a != '/')
        return fail(ps, 400, "absolute-form target without a path");
    split_query(req, a, end);
    return 0;
}

static int
classify_target(struct parser *ps, struct http_request *req)
{
    const char *t = req->target.p;
    size_t n = req->target.len;
    if (t[0] == '/') {
        split_query(req, t, t + n);
        return 0;
    }
    if (t[0] == '*') {
        /* The asterisk-form exists only for a server-wide OPTIONS. */
        if (n != 1 || req->method != HTTP_OPTIONS)
            return fail(ps, 400, "invalid asterisk-form target");
        req->path = req->target;
        req->query.p = t + n;
        req->query.len = 0;
        return 0;
    }
    size_t scheme = http_scheme_len(t, n);
    if (scheme == 0)
        return fail(ps, 400, "invalid request target");
    return split_absolute(ps, req, scheme);
}

static int
parse_target(struct parser *ps, struct http_request *req)
{
    const char *start = ps->p;
    ps->p = scan_class(ps->p, ps->end, C_VCHAR);
    if (ps->p == ps->end)
        return NEED;
    /* An empty target means two spaces in a row; anything but SP after the target is a
     * control byte, a non-ASCII byte or a line end without a version (HTTP/0.9). */
    if (ps->p == start)
        return fail(ps, 400, "empty request target");
    if (*ps->p != ' ')
        return fail(ps, 400, "invalid byte in request target");
    req->target.p = start;
    req->target.len = (size_t)(ps->p - start);
    ps->p++;
    return classify_target(ps, req);
}

/* "HTTP/" DIGIT "." DIGIT CRLF, checked on as many bytes as have arrived, so garbage is
 * refused before the line is complete. Well-formed versions other than 1.0 and 1.1 get
 * 505; anything else is 400. */
static int
parse_version(struct parser *ps, struct http_request *req)
{
    static const char shape[] = "HTTP/9.9";
    const char *v = ps->p;
    size_t avail = (size_t)(ps->end - v);
    for (size_t i = 0; i < 8 && i < avail; i++) {
        bool ok = shape[i] == '9' ? (v[i] >= '0' && v[i] <= '9') : v[i] == shape[i];
        if (!ok)
            return fail(ps, 400, "malformed HTTP version");
    }
    if (avail < 8)
        return NEED;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(ps, 505, "HTTP version not supported");
    if (avail > 8 && v[8] != '\r')
        return fail(ps, 400, "malformed request line");
    if (avail > 9 && v[9] != '\n')
        return fail(ps, 400, "bare CR");
    if (avail < 10)
        return NEED;
    req->version_minor = v[7] - '0';
    ps->p = v + 10;
    return 0;
}

static int
parse_request_line(struct parser *ps, struct http_request *req)
{
    int rc = parse_method(ps, req);
    if (rc == 0)
        rc = parse_target(ps, req);
    if (rc == 0)
        rc = parse_version(ps, req);
    return rc;
}

/* Why a field name ended at a byte other than ':'. */
static int
bad_name_byte(struct parser *ps, const char *name)
{
    char c = *ps->p;
    if (ps->p == name && is_ows(c))
        return fail(ps, 400, "obsolete line folding");
    if (is_ows(c))
        return fail(ps, 400, "whitespace before colon");
    if (c == '\n')
        return fail(ps, 400, "bare LF");
    if (c == '\r')
        return fail(ps, 400, "header line without colon");
    return fail(ps, 400, "invalid header name");
}

/* Why a field value ended: only CRLF is a proper end. */
static int
end_value(struct parser *ps)
{
    const char *p = ps->p;
    if (*p == '\r') {
        if (ps->end - p < 2)
            return NEED;
        if (p[1] != '\n')
            return fail(ps, 400, "bare CR");
        ps->p = p + 2;
        return 0;
    }
    if (*p == '\n')
        return fail(ps, 400, "bare LF");
    return fail(ps, 400, "control character in header value");
}

static int
parse_header_line(struct parser *ps, struct http_header *h)
{
    const char *name = ps->p;
    while (ps->p < ps->end && is_class(*ps->p, C_TCHAR))
        ps->p++;
    if (ps->p == ps->end)
        return NEED;
    if (*ps->p != ':')
        return bad_name_byte(ps, name);
    if (ps->p == name)
        return fail(ps, 400, "empty header name");
    h->name.p = name;
    h->name.len = (size_t)(ps->p - name);
    ps->p++;

    while (ps->p < ps->end && is_ows(*ps->p))
        ps->p++;
    const char *value = ps->p;
    ps->p = scan_class(ps->p, ps->end, C_VALUE);
    if (ps->p == ps->end)
        return NEED;
    const char *vend = ps->p;
    while (vend > value && is_ows(vend[-1]))
        vend--;
    h->value.p = value;
    h->value.len = (size_t)(vend - value);
    return end_value(ps);
}

static int
parse_headers(struct parser *ps, struct http_request *req)
{
    for (;;) {
        if (ps->p == ps->end)
            return NEED;
        if (*ps->p == '\r') {
            if (ps->end - ps->p < 2)
                return NEED;
            if (ps->p[1] != '\n')
                return fail(ps, 400, "bare CR");
            ps->p += 2;
            return 0;
        }
        if (req->nheaders == HTTP_MAX_HEADERS)
            return fail(ps, 431, "too many headers");
        int rc = parse_header_line(ps, &req->headers[req->nheaders]);
        if (rc != 0)
            return rc;
        req->nheaders++;
    }
}

struct list_iter {
    const char *p;
    const char *end;
};

static bool list_next(struct list_iter *it, struct http_str *tok, bool *q_zero);

/* What the framing and connection headers said, gathered in one pass. */
struct head_facts {
    const struct http_str *content_length;
    const struct http_str *transfer_encoding;
    int hosts;
    bool has_upgrade;
    bool conn_close;
    bool conn_keep_alive;
    bool conn_upgrade;
    bool expect_continue;
};

/* 1*DIGIT, at most 2^62: a bound far beyond any body we accept that keeps every later
 * sum of lengths clear of int64 overflow. Signs, spaces and lists are refused. */
static int
parse_content_length(struct http_str v, int64_t *out)
{
    const uint64_t max = (uint64_t)1 << 62;
    uint64_t n = 0;
    if (v.len == 0)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned char)v.p[i] - '0';
        if (d > 9 || n > (max - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = (int64_t)n;
    return 0;
}

/* Walk the Connection options once for the three we act on. */
static void
note_connection(struct head_facts *f, struct http_str v)
{
    struct list_iter it = {v.p, v.p + v.len};
    struct http_str tok;
    bool q_zero;
    while (list_next(&it, &tok, &q_zero)) {
        if (q_zero)
            continue;
        if (STR_CASEEQ(tok, "close"))
            f->conn_close = true;
        else if (STR_CASEEQ(tok, "keep-alive"))
            f->conn_keep_alive = true;
        else if (STR_CASEEQ(tok, "upgrade"))
            f->conn_upgrade = true;
    }
}

/* Record one header that matters for framing or the connection; duplicates of the
 * framing headers are refused here, since two copies are two opinions about the length. */
static int
note_header(struct parser *ps, struct head_facts *f, const struct http_header *h)
{
    switch (h->name.len) {
    case 4:
        if (STR_CASEEQ(h->name, "host") && ++f->hosts > 1)
            return fail(ps, 400, "more than one Host header");
        break;
    case 6:
        if (STR_CASEEQ(h->name, "expect") && STR_CASEEQ(h->value, "100-continue"))
            f->expect_continue = true;
        break;
    case 7:
        if (STR_CASEEQ(h->name, "upgrade"))
            f->has_upgrade = true;
        break;
    case 10:
        if (STR_CASEEQ(h->name, "connection"))
            note_connection(f, h->value);
        break;
    case 14:
        if (STR_CASEEQ(h->name, "content-length")) {
            if (f->content_length)
                return fail(ps, 400, "more than one Content-Length header");
            f->content_length = &h->value;
        }
        break;
    case 17:
        if (STR_CASEEQ(h->name, "transfer-encoding")) {
            if (f->transfer_encoding)
                return fail(ps, 400, "more than one Transfer-Encoding header");
            f->transfer_encoding = &h->value;
        }
        break;
    }
    return 0;
}

/* Only a lone "chunked" is served. A well-formed list naming another coding is 501 (RFC
 * 9112 section 6.1: a coding we do not understand); a malformed list, or chunked applied
 * twice, is 400. */
static int
check_transfer_encoding(struct parser *ps, struct http_str v)
{
    if (STR_CASEEQ(v, "chunked"))
        return 0;
    const char *p = v.p, *end = v.p + v.len;
    bool unknown = false;
    do {
        while (p < end && is_ows(*p))
            p++;
        const char *tok = p;
        while (p < end && is_class(*p, C_TCHAR))
            p++;
        struct http_str t = {tok, (size_t)(p - tok)};
        while (p < end && is_ows(*p))
            p++;
        if (t.len == 0 || (p < end && *p != ','))
            return fail(ps, 400, "malformed Transfer-Encoding");
        if (!STR_CASEEQ(t, "chunked"))
            unknown = true;
    } while (p++ < end);
    if (unknown)
        return fail(ps, 501, "unsupported transfer coding");
    return fail(ps, 400, "chunked applied more than once");
}

static int
apply_framing(struct parser *ps, struct http_request *req, const struct head_facts *f)
{
    if (f->transfer_encoding) {
        if (req->version_minor == 0)
            return fail(ps, 400, "Transfer-Encoding in HTTP/1.0");
        if (f->content_length)
            return fail(ps, 400, "both Content-Length and Transfer-Encoding");
        int rc = check_transfer_encoding(ps, *f->transfer_encoding);
        if (rc != 0)
            return rc;
        req->chunked = true;
    }
    if (f->content_length &&
        parse_content_length(*f->content_length, &req->content_length) != 0)
        return fail(ps, 400, "invalid Content-Length");
    return 0;
}

static int
interpret_headers(struct parser *ps, struct http_request *req)
{
    struct head_facts f = {0};
    for (size_t i = 0; i < req->nheaders; i++) {
        int rc = note_header(ps, &f, &req->headers[i]);
        if (rc != 0)
            return rc;
    }
    int rc = apply_framing(ps, req, &f);
    if (rc != 0)
        return rc;
    if (req->version_minor == 1 && f.hosts == 0)
        return fail(ps, 400, "missing Host header");
    if (req->version_minor == 1)
        req->keep_alive = !f.conn_close;
    else
        req->keep_alive = f.conn_keep_alive && !f.conn_close;
    req->upgrade = f.conn_upgrade && f.has_upgrade;
    req->expect_continue = f.expect_continue;
    return 0;
}

static void
request_reset(struct http_request *req)
{
    /* The header array is filled as lines are parsed; clearing it would cost more than
     * parsing a small request. */
    req->method = HTTP_OTHER;
    req->nheaders = 0;
    req->version_minor = 0;
    req->content_length = -1;
    req->chunked = false;
    req->keep_alive = false;
    req->expect_continue = false;
    req->upgrade = false;
    req->head_len = 0;
}

enum http_parse_result
http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req,
                   int *status, const char **why)
{
    struct parser ps = {buf, buf + (len < max_head ? len : max_head), NULL};
    bool in_request_line = false;
    request_reset(req);

    int rc = skip_empty_lines(&ps);
    if (rc == 0) {
        in_request_line = ps.p < ps.end;
        rc = parse_request_line(&ps, req);
    }
    if (rc == 0) {
        in_request_line = false;
        rc = parse_headers(&ps, req);
    }
    if (rc == 0)
        rc = interpret_headers(&ps, req);

    if (rc == NEED) {
        /* Out of bytes: more may come, unless we already hold max_head of them. */
        if (len < max_head) {
            *status = 0;
            *why = NULL;
            return HTTP_PARSE_INCOMPLETE;
        }
        rc = fail(&ps, in_request_line ? 414 : 431,
                  in_request_line ? "request line too long" : "request head too large");
    }
    if (rc != 0) {
        *status = rc;
        *why = ps.why;
        return HTTP_PARSE_ERROR;
    }
    req->head_len = (size_t)(ps.p - buf);
    *status = 0;
    *why = NULL;
    return HTTP_PARSE_OK;
}

const struct http_str *
http_header_get(const struct http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name.len == n && caseeq(h->name.p, name, n))
            return &h->value;
    }
    return NULL;
}

bool
http_query_get(const struct http_request *req, const char *name, struct http_str *out)
{
    size_t n = strlen(name);
    const char *q = req->query.p, *end = q + req->query.len;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp != NULL ? amp : end;
        if ((size_t)(stop - q) > n && memcmp(q, name, n) == 0 && q[n] == '=') {
            *out = (struct http_str){q + n + 1, (size_t)(stop - q - n - 1)};
            return true;
        }
        q = amp != NULL ? amp + 1 : NULL;
    }
    return false;
}

/* ---- Token lists ------------------------------------------------------------------- */

static const char *
skip_ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    return p;
}

static const char *
skip_tchars(const char *p, const char *end)
{
    while (p < end && is_class(*p, C_TCHAR))
        p++;
    return p;
}

/* p is at an opening quote; return the position after the closing one (or end), so that
 * commas and semicolons inside quoted parameter values do not split the element. */
static const char *
skip_quoted(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

/* A qvalue of zero: "0", "0." or "0." followed by up to three zeros. */
static bool
is_zero_qvalue(const char *v, size_t n)
{
    if (n == 0 || v[0] != '0')
        return false;
    if (n == 1)
        return true;
    if (v[1] != '.' || n > 5)
        return false;
    for (size_t i = 2; i < n; i++)
        if (v[i] != '0')
            return false;
    return true;
}

/* Walk one parameter after its ';': name [ "=" value ]. Sets *q_zero for q=0. */
static const char *
scan_param(const char *p, const char *end, bool *q_zero)
{
    p = skip_ows(p, end);
    const char *name = p;
    p = skip_tchars(p, end);
    bool is_q = p - name == 1 && lower(*name) == 'q';
    p = skip_ows(p, end);
    if (p == end || *p != '=')
        return p;
    p = skip_ows(p + 1, end);
    if (p < end && *p == '"')
        return skip_quoted(p, end);
    const char *value = p;
    p = skip_tchars(p, end);
    if (is_q && is_zero_qvalue(value, (size_t)(p - value)))
        *q_zero = true;
    return p;
}

/* Skip the rest of a list element after its token, up to the next top-level comma or the
 * end; says through *q_zero whether a parameter was q=0. */
static const char *
scan_params(const char *p, const char *end, bool *q_zero)
{
    *q_zero = false;
    while (p < end && *p != ',') {
        if (*p == ';')
            p = scan_param(p + 1, end, q_zero);
        else if (*p == '"')
            p = skip_quoted(p, end);
        else
            p++;
    }
    return p;
}

/* Step to the next element of a list: its token (empty when the element does not start
 * with one) and whether it carries q=0. Returns false when the list is exhausted. */
static bool
list_next(struct list_iter *it, struct http_str *tok, bool *q_zero)
{
    if (it->p >= it->end)
        return false;
    const char *p = skip_ows(it->p, it->end);
    tok->p = p;
    p = skip_tchars(p, it->end);
    tok->len = (size_t)(p - tok->p);
    p = scan_params(p, it->end, q_zero);
    it->p = p < it->end ? p + 1 : p; /* past the comma */
    return true;
}

bool
http_list_has_token(struct http_str value, const char *token)
{
    struct list_iter it = {value.p, value.p + value.len};
    struct http_str tok;
    bool q_zero;
    size_t tlen = strlen(token);
    while (list_next(&it, &tok, &q_zero))
        if (tok.len == tlen && tlen > 0 && !q_zero && caseeq(tok.p, token, tlen))
            return true;
    return false;
}

/* ---- Chunked decoder --------------------------------------------------------------- */

#define CHUNK_MAX_HEX 15          /* 15 hex digits: sizes below 2^60, no overflow */
#define CHUNK_MAX_SIZE_LINE 4096  /* size line with extensions, CRLF included */
#define CHUNK_MAX_TRAILERS 8192   /* whole trailer section, final CRLF included */

enum chunked_state {
    CH_SIZE = 0,      /* hex digits of the chunk size */
    CH_SIZE_WS,       /* whitespace after the size, which must lead to ';' */
    CH_EXT,           /* chunk extensions, skipped up to CR */
    CH_SIZE_LF,       /* the LF ending the size line */
    CH_DATA,          /* chunk data, remaining bytes to go */
    CH_DATA_CR,       /* the CRLF after chunk data */
    CH_DATA_LF,
    CH_TRAILER_START, /* start of a trailer line, or of the empty line ending the body */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,        /* the LF of the final empty line */
    CH_DONE,
    CH_ERROR,
    CH_TOO_BIG,
};

void
http_chunked_init(struct http_chunked *c)
{
    c->state = CH_SIZE;
    c->remaining = 0;
    c->line_len = 0;
    c->total = 0;
}

static int
size_digit(struct http_chunked *c, unsigned char ch)
{
    int d = hex_digit(ch);
    if (d >= 0) {
        /* line_len already counts this digit, and every byte before it was a digit. */
        if (c->line_len > CHUNK_MAX_HEX)
            return CH_ERROR;
        c->remaining = c->remaining << 4 | (uint64_t)d;
        return CH_SIZE;
    }
    if (c->line_len == 1)
        return CH_ERROR; /* no digits at all */
    if (ch == ';')
        return CH_EXT;
    if (is_ows((char)ch))
        return CH_SIZE_WS;
    return ch == '\r' ? CH_SIZE_LF : CH_ERROR;
}

/* The size line is complete: a zero size starts the trailers, others the data, unless
 * the body would outgrow max_body, which we say before reading any of the data. */
static int
size_line_done(struct http_chunked *c, size_t max_body)
{
    c->line_len = 0;
    if (c->remaining == 0)
        return CH_TRAILER_START;
    if (c->remaining > (uint64_t)max_body - c->total)
        return CH_TOO_BIG;
    return CH_DATA;
}

static int
size_line_byte(struct http_chunked *c, unsigned char ch, size_t max_body)
{
    if (++c->line_len > CHUNK_MAX_SIZE_LINE)
        return CH_ERROR;
    switch (c->state) {
    case CH_SIZE:
        return size_digit(c, ch);
    case CH_SIZE_WS:
        if (ch == ';')
            return CH_EXT;
        return is_ows((char)ch) ? CH_SIZE_WS : CH_ERROR;
    case CH_EXT:
        if (ch == '\r')
            return CH_SIZE_LF;
        return is_class((char)ch, C_VALUE) ? CH_EXT : CH_ERROR;
    default: /* CH_SIZE_LF */
        return ch == '\n' ? size_line_done(c, max_body) : CH_ERROR;
    }
}

/* Trailer fields are checked for shape (a token name, a colon, a clean value, CRLF) so
 * that they cannot smuggle bare line ends, and then dropped. */
static int
trailer_byte(struct http_chunked *c, unsigned char ch)
{
    if (++c->line_len > CHUNK_MAX_TRAILERS)
        return CH_ERROR;
    switch (c->state) {
    case CH_TRAILER_START:
        if (ch == '\r')
            return CH_END_LF;
        return is_class((char)ch, C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_NAME:
        if (ch == ':')
            return CH_TRAILER_VALUE;
        return is_class((char)ch, C_TCHAR) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_VALUE:
        if (ch == '\r')
            return CH_TRAILER_LF;
        return is_class((char)ch, C_VALUE) ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_LF:
        return ch == '\n' ? CH_TRAILER_START : CH_ERROR;
    default: /* CH_END_LF */
        return ch == '\n' ? CH_DONE : CH_ERROR;
    }
}

/* One byte of anything but chunk data; returns the next state. */
static int
chunked_byte(struct http_chunked *c, unsigned char ch, size_t max_body)
{
    switch (c->state) {
    case CH_SIZE:
    case CH_SIZE_WS:
    case CH_EXT:
    case CH_SIZE_LF:
        return size_line_byte(c, ch, max_body);
    case CH_DATA_CR:
        return ch == '\r' ? CH_DATA_LF : CH_ERROR;
    case CH_DATA_LF:
        if (ch != '\n')
            return CH_ERROR;
        c->remaining = 0;
        c->line_len = 0;
        return CH_SIZE;
    default:
        return trailer_byte(c, ch);
    }
}

static enum http_chunked_result
chunked_result(int state)
{
    switch (state) {
    case CH_DONE:
        return HTTP_CHUNKED_DONE;
    case CH_ERROR:
        return HTTP_CHUNKED_ERROR;
    case CH_TOO_BIG:
        return HTTP_CHUNKED_TOO_BIG;
    default:
        return HTTP_CHUNKED_MORE;
    }
}

enum http_chunked_result
http_chunked_decode(struct http_chunked *c, const char *in, size_t in_len, size_t *consumed,
                    char *out, size_t *out_len, size_t max_body)
{
    size_t i = 0;
    while (i < in_len && c->state < CH_DONE) {
        if (c->state == CH_DATA) {
            size_t n = in_len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            /* memmove, because decoding in place makes out and in overlap. */
            memmove(out + *out_len, in + i, n);
            *out_len += n;
            c->total += n;
            c->remaining -= n;
            i += n;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            continue;
        }
        c->state = chunked_byte(c, (unsigned char)in[i], max_body);
        i++;
    }
    *consumed = i;
    return chunked_result(c->state);
}
