/* http_parser: a strict, allocation-free HTTP/1.x request head parser and a chunked
 * body decoder.
 *
 * The head parser is called on the bytes received so far; it answers "incomplete" until
 * the blank line ending the head has arrived, so a head split over many reads needs no
 * saved state. Strings in struct http_request point into the caller's buffer.
 *
 * It refuses everything that lets two parsers disagree about where a request ends
 * (request smuggling): Content-Length together with Transfer-Encoding, repeated or
 * malformed Content-Length, a Transfer-Encoding other than "chunked", bare LF or CR,
 * obs-fold continuation lines, NUL and control bytes, spaces before the colon. */
#ifndef SESSIOND_HTTP_PARSER_H
#define SESSIOND_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

enum http_method {
    HTTP_OTHER = 0, /* a syntactically valid token we do not serve (405/501 by the router) */
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_OPTIONS,
};

struct http_str {
    const char *p;
    size_t len;
};

struct http_header {
    struct http_str name;  /* as sent; compare case-insensitively */
    struct http_str value; /* leading and trailing spaces/tabs trimmed */
};

struct http_request {
    enum http_method method;
    struct http_str method_name;
    struct http_str target; /* the raw request-target */
    struct http_str path;   /* target up to '?'; for absolute-form http://host/p?q, "/p" */
    struct http_str query;  /* after '?', empty if none */
    int version_minor;      /* HTTP/1.<minor>: 0 or 1 */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t nheaders;

    /* Derived from the headers. */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* per version and Connection header */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* Connection: upgrade with an Upgrade header */
    size_t head_len;        /* bytes of leading CRLFs + request line + headers + blank line */
};

enum http_parse_result {
    HTTP_PARSE_OK = 1,
    HTTP_PARSE_INCOMPLETE = 0,
    HTTP_PARSE_ERROR = -1,
};

/* Parse the request head at buf[0..len). Leading empty lines (CRLF) before the request line
 * are skipped, as RFC 9112 allows. If the head is not complete within max_head bytes the
 * result is an error with *status 431 (or 414 for an overlong request line).
 * On error *status is the HTTP status to answer (400, 414, 431, 501, 505) and *why a short
 * static reason; otherwise *status is 0 and *why NULL. The fields of req are meaningful
 * only on OK. Absolute-form targets must have a path ("http://h" alone is 400). */
enum http_parse_result http_parse_request(const char *buf, size_t len, size_t max_head,
                                          struct http_request *req, int *status,
                                          const char **why);

/* Find a header by name (case-insensitive); NULL if absent. */
const struct http_str *http_header_get(const struct http_request *req, const char *name);

/* The raw value of the query's first name=value pair for name (not percent-decoded):
 * true and *out, or false when the query has no such pair. */
bool http_query_get(const struct http_request *req, const char *name, struct http_str *out);

/* Whether a comma-separated header value contains token (case-insensitive), e.g. "gzip" in
 * "deflate, gzip;q=1". A token with q=0 does not count. */
bool http_list_has_token(struct http_str value, const char *token);

/* Chunked transfer decoding, incremental over any split of the input. */
struct http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk (the size, while it is read) */
    size_t line_len;    /* bytes of the current size line, or of the trailer section, so far */
    uint64_t total;     /* data bytes decoded so far, held against max_body */
};

enum http_chunked_result {
    HTTP_CHUNKED_DONE = 1,     /* the last chunk and trailers have been read */
    HTTP_CHUNKED_MORE = 0,     /* all of in consumed; more input needed */
    HTTP_CHUNKED_ERROR = -1,   /* malformed: answer 400 and close */
    HTTP_CHUNKED_TOO_BIG = -2, /* the body would exceed max_body: answer 413 and close */
};

void http_chunked_init(struct http_chunked *c);

/* Decode from in[0..in_len): data bytes are appended at out + *out_len and *out_len grows;
 * more than max_body data bytes in all (counted in c->total, across calls) is TOO_BIG,
 * reported as soon as a chunk size says so, before its data is read. The caller guarantees
 * room for in_len more bytes at out + *out_len, and out + *out_len may be at or before in
 * (decoding in place: data only ever moves left, with memmove). *consumed says how many
 * input bytes were used; on DONE the bytes after them belong to the next request. DONE,
 * ERROR and TOO_BIG are sticky: later calls consume nothing and return the same. Chunk
 * extensions are skipped; trailers are read and discarded. */
enum http_chunked_result http_chunked_decode(struct http_chunked *c, const char *in,
                                             size_t in_len, size_t *consumed, char *out,
                                             size_t *out_len, size_t max_body);

#endif
