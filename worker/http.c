#include "http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "utf8.h"
#include "util.h"
#include "worker.h"

struct status_text {
    int status;
    const char *reason;
    const char *code;
};

static const struct status_text statuses[] = {
    {100, "Continue", ""},
    {101, "Switching Protocols", ""},
    {200, "OK", ""},
    {201, "Created", ""},
    {202, "Accepted", ""},
    {204, "No Content", ""},
    {304, "Not Modified", ""},
    {400, "Bad Request", "bad_request"},
    {401, "Unauthorized", "unauthorized"},
    {403, "Forbidden", "forbidden"},
    {404, "Not Found", "not_found"},
    {405, "Method Not Allowed", "method_not_allowed"},
    {408, "Request Timeout", "request_timeout"},
    {409, "Conflict", "conflict"},
    {411, "Length Required", "length_required"},
    {412, "Precondition Failed", "precondition_failed"},
    {413, "Payload Too Large", "payload_too_large"},
    {414, "URI Too Long", "uri_too_long"},
    {415, "Unsupported Media Type", "unsupported_media_type"},
    {417, "Expectation Failed", "expectation_failed"},
    {429, "Too Many Requests", "too_many_requests"},
    {431, "Request Header Fields Too Large", "header_too_large"},
    {500, "Internal Server Error", "internal_error"},
    {501, "Not Implemented", "not_implemented"},
    {503, "Service Unavailable", "service_unavailable"},
    {505, "HTTP Version Not Supported", "http_version_not_supported"},
};

static const struct status_text *
find_status(int status)
{
    for (size_t i = 0; i < ARRAY_LEN(statuses); i++)
        if (statuses[i].status == status)
            return &statuses[i];
    return NULL;
}

const char *
http_reason(int status)
{
    const struct status_text *s = find_status(status);
    return s ? s->reason : "Unknown";
}

const char *
http_error_code(int status)
{
    const struct status_text *s = find_status(status);
    return s && *s->code ? s->code : "error";
}

int
http_status_line(struct buf *out, int version_minor, int status)
{
    int rc = buf_puts(out, version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ");
    rc |= buf_put_u64(out, (uint64_t)status);
    rc |= buf_puts(out, " ");
    rc |= buf_puts(out, http_reason(status));
    rc |= buf_puts(out, "\r\n");
    return rc < 0 ? -1 : 0;
}

int
http_head(struct buf *out, int version_minor, int status, const char *date)
{
    int rc = http_status_line(out, version_minor, status);
    rc |= buf_puts(out, "Date: ");
    rc |= buf_puts(out, date);
    rc |= buf_puts(out, "\r\nServer: sessiond\r\n");
    return rc < 0 ? -1 : 0;
}

size_t
http_error_json(char *out, size_t cap, const char *code, const char *message)
{
    char c[64], m[512];
    c[utf8_json_escape(c, sizeof c - 1, code, strlen(code), NULL)] = '\0';
    m[utf8_json_escape(m, sizeof m - 1, message, strlen(message), NULL)] = '\0';
    int n = snprintf(out, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", c, m);
    if (n < 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Compress body with the worker's deflate state into out. Returns 0, or -1 to send the
 * body as it is. */
static int
gzip_body(struct worker *w, const void *body, size_t len, struct buf *out)
{
    if (w->gz == NULL) {
        z_stream *z = calloc(1, sizeof *z);
        /* windowBits 15 + 16 asks zlib for the gzip wrapper; level 1 is what nginx uses
         * by default: most of the gain for little CPU. */
        if (z == NULL || deflateInit2(z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            return -1;
        }
        w->gz = z;
    } else if (deflateReset(w->gz) != Z_OK) {
        return -1;
    }
    size_t bound = deflateBound(w->gz, (uLong)len);
    if (buf_reserve(out, bound) < 0)
        return -1;
    w->gz->next_in = (Bytef *)(uintptr_t)body;
    w->gz->avail_in = (uInt)len;
    w->gz->next_out = (Bytef *)(out->p + out->len);
    w->gz->avail_out = (uInt)bound;
    if (deflate(w->gz, Z_FINISH) != Z_STREAM_END)
        return -1;
    out->len += bound - w->gz->avail_out;
    return 0;
}

bool
http_not_modified(const struct request *r, const char *etag)
{
    const struct http_str *inm = http_header_get(&r->http, "If-None-Match");
    if (inm == NULL)
        return false;
    size_t n = strlen(etag);
    for (size_t i = 0; i < inm->len; i++) {
        if (inm->p[i] == '*')
            return true;
        if (inm->len - i >= n && memcmp(inm->p + i, etag, n) == 0)
            return true;
    }
    return false;
}

void
http_respond(struct request *r, int status, const char *content_type, const char *extra_headers,
             const void *body, size_t len)
{
    struct conn *c = r->conn;
    struct worker *w = c->w;
    const struct http_request *h = &r->http;
    bool keep = h->keep_alive && !c->close_after && !w->draining &&
                w->conf->keepalive_timeout_ms > 0;
    struct buf *out = &c->out;
    if (c->closed) {
        /* The client went away while a handler worked: nothing to send, but the request
         * still counts, and the connection can now be freed. */
        conn_response_done(c, 499, false);
        return;
    }

    /* Compress into a scratch buffer first: the head needs the compressed length. */
    struct buf gz = {0};
    bool zipped = false;
    if (r->gzip_ok && len >= HTTP_GZIP_MIN && w->conf->gzip && gzip_body(w, body, len, &gz) == 0) {
        body = gz.p;
        len = gz.len;
        zipped = true;
    }

    /* The head is assembled from pieces rather than printf'd: this runs for every
     * response, and format parsing was a fifth of a worker's CPU under load. */
    size_t extra_len = extra_headers != NULL ? strlen(extra_headers) : 0;
    if (buf_reserve(out, 256 + extra_len + (r->head_only ? 0 : len)) < 0) {
        buf_free(&gz);
        conn_close(c);
        conn_response_done(c, 500, false);
        return;
    }
    http_head(out, h->version_minor, status, worker_date(w));
    if (status != 204 && status != 304) {
        if (content_type != NULL) {
            buf_puts(out, "Content-Type: ");
            buf_puts(out, content_type);
            buf_puts(out, "\r\n");
        }
        buf_puts(out, "Content-Length: ");
        buf_put_u64(out, len);
        buf_puts(out, "\r\n");
    }
    if (zipped)
        buf_puts(out, "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
    if (extra_len > 0)
        buf_append(out, extra_headers, extra_len);
    if (!keep)
        buf_puts(out, "Connection: close\r\n\r\n");
    else if (h->version_minor == 0)
        buf_puts(out, "Connection: keep-alive\r\n\r\n");
    else
        buf_puts(out, "\r\n");
    if (!r->head_only && status != 204 && status != 304)
        buf_append(out, body, len);
    buf_free(&gz);
    conn_response_done(c, status, keep);
}

void
http_respond_json(struct request *r, int status, const char *extra_headers, const char *json,
                  size_t len)
{
    http_respond(r, status, "application/json", extra_headers, json, len);
}

void
http_error_with(struct request *r, int status, const char *extra_headers, const char *code,
                const char *message)
{
    char body[768];
    size_t n = http_error_json(body, sizeof body, code ? code : http_error_code(status), message);
    http_respond_json(r, status, extra_headers, body, n);
}

void
http_error(struct request *r, int status, const char *code, const char *message)
{
    http_error_with(r, status, NULL, code, message);
}
