/* What the endpoint handlers share: credentials, and the bookkeeping and error answers
 * of store calls. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "json_in.h"
#include "http.h"
#include "store.h"
#include "token.h"
#include "worker.h"

/* The bearer credential of a request, or an empty string. */
struct http_str
api_bearer(const struct request *r)
{
    struct http_str none = {"", 0};
    const struct http_str *h = http_header_get(&r->http, "Authorization");
    if (h == NULL || h->len < 7 || strncasecmp(h->p, "Bearer ", 7) != 0)
        return none;
    struct http_str b = {h->p + 7, h->len - 7};
    while (b.len > 0 && b.p[0] == ' ') {
        b.p++;
        b.len--;
    }
    return b;
}

/* The admin API: the configured key, or with none configured, loopback peers only.
 * Answers 401/403 itself and returns false when the request may not go on. */
bool
api_admin_ok(struct request *r)
{
    const char *key = r->conn->w->conf->api_key;
    if (key[0] == '\0') {
        if (conn_peer_is_loopback(r->conn))
            return true;
        http_error(r, 403, NULL,
                   "No api_key is configured, so the admin API answers loopback clients only.");
        return false;
    }
    struct http_str b = api_bearer(r);
    if (token_equal(b.p, b.len, key, strlen(key)))
        return true;
    http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                    b.len ? "The API key is not valid." : "An API key is required.");
    return false;
}

/* Map a store failure to the API's answer. */
void
api_store_error(struct request *r, enum store_status st)
{
    sb_add(&r->conn->w->slot->c.store_errors,
           st == STORE_ERROR || st == STORE_UNAVAILABLE || st == STORE_NO_SPACE);
    switch (st) {
    case STORE_NOT_FOUND:
        http_error(r, 404, NULL, "No such session.");
        break;
    case STORE_VERSION:
        http_error(r, 412, NULL, "The session has changed since that version (If-Match).");
        break;
    case STORE_USER_LIMIT:
        http_error_with(r, 429, "Retry-After: 60\r\n", "too_many_sessions",
                        "The user has max_sessions_per_user live sessions.");
        break;
    case STORE_FULL:
        http_error_with(r, 503, "Retry-After: 60\r\n", "over_capacity",
                        "The store holds max_sessions live sessions.");
        break;
    case STORE_TOO_BIG:
        http_error(r, 413, NULL, "The session data would exceed session_max_bytes.");
        break;
    case STORE_BAD_DATA:
        http_error(r, 400, NULL, "\"data\" must be a JSON object.");
        break;
    case STORE_UNAVAILABLE:
        http_error_with(r, 503, "Retry-After: 1\r\n", "store_unavailable",
                        "The session store is unavailable.");
        break;
    case STORE_NO_SPACE:
        http_error_with(r, 503, "Retry-After: 10\r\n", "store_unavailable",
                        "The session store's disk is full: writes are refused until there "
                        "is space again; reads go on.");
        break;
    default:
        http_error(r, 500, NULL, "The session store failed.");
        break;
    }
}

struct store *
api_store(const struct request *r)
{
    return r->conn->w->store;
}

/* Every store call is counted when it starts and timed when its callback runs. */
void
api_store_begin(struct request *r)
{
    sb_add(&r->conn->w->slot->c.store_ops, 1);
    r->conn->w->store_used = true;
    r->store_started = ev_time();
}

void
api_store_end(struct request *r)
{
    sb_count_store_op(r->conn->w->slot, (uint64_t)((ev_time() - r->store_started) * 1e6));
}

static bool
json_content_type(const struct request *r)
{
    const struct http_str *ct = http_header_get(&r->http, "Content-Type");
    if (ct == NULL)
        return false;
    size_t n = 0;
    while (n < ct->len && ct->p[n] != ';' && ct->p[n] != ' ')
        n++;
    return n == 16 && strncasecmp(ct->p, "application/json", 16) == 0;
}

/* Parse a JSON object body, answering 411/415/400 itself on failure (NULL). */
json_t *
api_json_body(struct request *r)
{
    if (r->http.content_length < 0 && !r->http.chunked) {
        http_error(r, 411, NULL, "A JSON body with a Content-Length is required.");
        return NULL;
    }
    if (!json_content_type(r)) {
        http_error(r, 415, NULL, "The body must be sent as Content-Type: application/json.");
        return NULL;
    }
    char why[JSON_ERROR_TEXT_LENGTH + 64];
    json_t *j = json_in_object(r->body, r->body_len, "The body", why, sizeof why);
    if (j == NULL)
        http_error(r, 400, NULL, why);
    return j;
}

int64_t
api_query_number(const struct request *r, const char *name, int64_t def)
{
    struct http_str v;
    char digits[24];
    int64_t n;
    if (!http_query_get(&r->http, name, &v))
        return def;
    if (v.len >= sizeof digits)
        return -1;
    memcpy(digits, v.p, v.len);
    digits[v.len] = '\0';
    return conf_parse_number(digits, &n) == 0 ? n : -1;
}
