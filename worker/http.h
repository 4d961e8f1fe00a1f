/* http: building responses, and the one writer of HTTP status lines. Every response goes
 * through http_respond(), which writes the head (status line, Date, Server, Content-Type,
 * Content-Length, Connection, and Content-Encoding when it compresses) into the
 * connection's output; the heads written elsewhere (a refused connection, the WebSocket
 * upgrade, 100 Continue) begin with http_status_line() or http_head(). */
#ifndef SESSIOND_HTTP_H
#define SESSIOND_HTTP_H

#include <stddef.h>

#include "buf.h"
#include "conn.h"

/* Bodies of at least this many bytes are gzip-compressed when the client accepts it. */
#define HTTP_GZIP_MIN 1024

/* extra_headers: zero or more complete "Name: value\r\n" lines, or NULL. */
/* Does the request's If-None-Match name etag (or "*")? etag is quoted, with no quote
 * inside ("3", "0f1e..."), so finding it in the list, weak (W/) or not, is an exact
 * match of one of its members. */
bool http_not_modified(const struct request *r, const char *etag);

void http_respond(struct request *r, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len);

/* A JSON body. */
void http_respond_json(struct request *r, int status, const char *extra_headers,
                       const char *json, size_t len);

/* The API's error shape: {"error": {"code": "...", "message": "..."}}, with code derived
 * from the status (404 → not_found, ...) unless code is given. */
void http_error(struct request *r, int status, const char *code, const char *message);
void http_error_with(struct request *r, int status, const char *extra_headers,
                     const char *code, const char *message);

/* Append "HTTP/1.<version_minor> <status> <reason>\r\n" to out: alone, it begins an
 * interim head (100 Continue, 101 Switching Protocols), which carries no Date. Returns 0,
 * or -1 when out cannot grow. */
int http_status_line(struct buf *out, int version_minor, int status);

/* The status line, then the Date (an IMF-fixdate such as worker_date's) and Server
 * headers that every final response carries; the caller adds the rest of the head and
 * its blank line. Returns 0 or -1 as http_status_line does. */
int http_head(struct buf *out, int version_minor, int status, const char *date);

const char *http_reason(int status);
/* The snake_case error code the API uses for a status. */
const char *http_error_code(int status);

/* Write the error JSON into out (NUL-terminated, truncated to cap); returns its length. */
size_t http_error_json(char *out, size_t cap, const char *code, const char *message);

#endif
