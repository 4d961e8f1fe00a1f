/* http: building responses. Every response goes through http_respond(), which writes the
 * status line and the common headers (Date, Server, Content-Type, Content-Length,
 * Connection, and Content-Encoding when it compresses) into the connection's output. */
#ifndef SESSIOND_HTTP_H
#define SESSIOND_HTTP_H

#include <stddef.h>

#include "conn.h"

/* Bodies of at least this many bytes are gzip-compressed when the client accepts it. */
#define HTTP_GZIP_MIN 1024

/* extra_headers: zero or more complete "Name: value\r\n" lines, or NULL. */
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

const char *http_reason(int status);
/* The snake_case error code the API uses for a status. */
const char *http_error_code(int status);

/* Write the error JSON into out (NUL-terminated, truncated to cap); returns its length. */
size_t http_error_json(char *out, size_t cap, const char *code, const char *message);

#endif
