/* The channel endpoints: with its API key, the application's backend publishes to
 * WebSocket subscribers and sees who is present. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "channels.h"
#include "http.h"
#include "json_merge.h"
#include "namespace.h"
#include "util.h"
#include "worker.h"

/* The {channel} of the path; false after answering 400. */
static bool
path_channel(struct request *r)
{
    struct http_str ch = r->params[0];
    if (ns_channel_ok(ch.p, ch.len)) return true;
    http_error(r, 400, NULL, "The channel must be 1-128 characters of A-Z a-z 0-9 and _ . : @ -");
    return false;
}

static void
published(void *arg, int rc, size_t recipients, uint64_t offset)
{
    struct request *r = arg;
    struct http_str ch = r->params[0];
    if (rc < 0) {
        http_error_with(r, 503, "Retry-After: 1\r\n", "store_unavailable",
                        "The channel's history is unavailable: nothing was published.");
        return;
    }
    char body[256], at[32] = "";
    if (offset > 0) snprintf(at, sizeof at, ",\"offset\":%llu", (unsigned long long)offset);
    int len = snprintf(body, sizeof body, "{\"channel\":\"%.*s\",\"recipients\":%zu%s}",
                       (int)ch.len, ch.p, recipients, at);
    http_respond_json(r, 202, NULL, body, (size_t)len);
}

/* POST /api/channels/{channel}/publish {"data": <any JSON>} -> 202, once it is numbered
 * (with history in Redis, once Redis has answered). */
void
api_channel_publish(struct request *r)
{
    if (!api_admin_ok(r) || !path_channel(r)) return;
    json_t *j = api_json_body(r);
    if (j == NULL) return;
    json_t *data = json_object_get(j, "data");
    char *d = NULL;
    size_t dlen = 0;
    int rc = data != NULL
                 ? json_merge_dump(data, (size_t)r->conn->w->conf->ws_max_message_bytes, &d, &dlen)
                 : 0;
    if (data == NULL) {
        http_error(r, 400, NULL, "\"data\" is required.");
    } else if (rc == -2) {
        http_error(r, 413, NULL, "\"data\" is larger than ws_max_message_bytes.");
    } else if (rc < 0) {
        http_error(r, 500, NULL, "Out of memory.");
    } else {
        struct http_str ch = r->params[0];
        chan_publish(r->conn->w, ch.p, ch.len, d, dlen, "", published, r);
    }
    free(d);
    json_decref(j);
}

/* GET /api/channels/{channel}/presence -> {"channel": c, "members": [...]}, over every
 * worker of the instance (and every instance, with Redis). */
static void
presence_answered(void *arg, const char *json, size_t len)
{
    struct request *r = arg;
    struct http_str ch = r->params[0];
    struct buf *b = &r->conn->w->scratch;
    b->off = b->len = 0;
    buf_puts(b, "{\"channel\":\"");
    buf_append(b, ch.p, ch.len);
    buf_puts(b, "\",\"members\":");
    if (json == NULL || buf_append(b, json, len) < 0 || buf_puts(b, "}") < 0) {
        http_error_with(r, 503, "Retry-After: 1\r\n", "store_unavailable",
                        "Presence is unavailable.");
        return;
    }
    http_respond_json(r, 200, NULL, buf_data(b), buf_used(b));
}

void
api_channel_presence(struct request *r)
{
    if (!api_admin_ok(r) || !path_channel(r)) return;
    chan_presence(r->conn->w, r->params[0].p, r->params[0].len, presence_answered, r);
}

static void
history_answered(void *arg, int rc, const char *json, size_t len)
{
    struct request *r = arg;
    if (rc == -1)
        http_error(r, 404, NULL, "This channel's namespace keeps no history.");
    else if (rc < 0)
        http_error_with(r, 503, "Retry-After: 1\r\n", "store_unavailable",
                        "History is unavailable.");
    else
        http_respond_json(r, 200, NULL, json, len);
}

/* GET /api/channels/{channel}/history?since=N&limit=L -> 200, oldest first. */
void
api_channel_history(struct request *r)
{
    if (!api_admin_ok(r) || !path_channel(r)) return;
    int64_t since = api_query_number(r, "since", 0), limit = api_query_number(r, "limit", 100);
    if (since < 0 || limit < 1 || limit > 1000) {
        http_error(r, 400, NULL, "since must be an offset and limit a number from 1 to 1000.");
        return;
    }
    struct http_str ch = r->params[0];
    chan_history(r->conn->w, ch.p, ch.len, (uint64_t)since, (size_t)limit, history_answered, r);
}
