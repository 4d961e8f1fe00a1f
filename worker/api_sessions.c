/* The session endpoints: the application's backend manages sessions with its API key
 * (/api/sessions, /api/users/{user}/sessions); an end user's client reads or ends its own
 * session with its token (/api/session).
 *
 * Every handler validates all of its input before it touches the store, so a bad request
 * writes nothing; the store checks its limits in the same transaction as the write. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "channels.h"
#include "http.h"
#include "hub.h"
#include "json_merge.h"
#include "namespace.h"
#include "store.h"
#include "token.h"
#include "util.h"
#include "worker.h"

/* ---- input ---- */

static bool
valid_user(const char *s, size_t len)
{
    return name_chars_ok(s, len, SESSION_USER_MAX);
}

/* Refuse members other than the allowed ones, naming the first stranger. */
static bool
only_members(struct request *r, json_t *j, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        bool known = false;
        for (const char *const *a = allowed; *a != NULL; a++)
            known = known || strcmp(key, *a) == 0;
        if (!known) {
            char msg[200];
            snprintf(msg, sizeof msg, "Unknown member \"%.100s\".", key);
            http_error(r, 400, NULL, msg);
            return false;
        }
    }
    (void)v;
    return true;
}

/* ttl: absent (0), or an integer from 1 to session_max_ttl. -1 after answering 400. */
static int64_t
ttl_of(struct request *r, json_t *j)
{
    json_t *t = json_object_get(j, "ttl");
    int64_t max = r->conn->w->conf->session_max_ttl_ms / 1000;
    if (t == NULL)
        return 0;
    if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > max) {
        char msg[128];
        snprintf(msg, sizeof msg, "\"ttl\" must be an integer from 1 to %lld seconds.",
                 (long long)max);
        http_error(r, 400, NULL, msg);
        return -1;
    }
    return json_integer_value(t);
}

/* The id in the path, or NULL after answering 404 (an id of the wrong shape cannot
 * exist). */
static const char *
path_id(struct request *r, char buf[SESSION_ID_LEN + 1])
{
    struct http_str id = r->params[0];
    if (!token_id_is_wellformed(id.p, id.len)) {
        http_error(r, 404, NULL, "No such session.");
        return NULL;
    }
    memcpy(buf, id.p, SESSION_ID_LEN);
    buf[SESSION_ID_LEN] = '\0';
    return buf;
}

static const char *
path_user(struct request *r, char buf[SESSION_USER_MAX + 1])
{
    struct http_str u = r->params[0];
    if (!valid_user(u.p, u.len)) {
        http_error(r, 400, NULL,
                   "\"user\" must be 1-128 characters of A-Z a-z 0-9 and _ . @ : -");
        return NULL;
    }
    memcpy(buf, u.p, u.len);
    buf[u.len] = '\0';
    return buf;
}

/* ---- channels (grants) and subscribe (server-side subscriptions) ---- */

/* A request's channels or subscribe member. */
struct grant_list {
    bool set;   /* the member was there (null and [] included): replace the session's */
    char *json; /* the distinct entries as a compact JSON array, first occurrences in
                 * order; NULL (len 0) for none */
    size_t len;
};

/* Entry i of array a: a string that is a pattern (channels) or a channel name
 * (subscribe). False after answering 400, naming the field and the index. */
static bool
grant_entry_ok(struct request *r, const char *field, bool patterns, json_t *a, size_t i)
{
    json_t *e = json_array_get(a, i);
    const char *v = json_string_value(e); /* NULL if e is no string */
    size_t n = json_string_length(e);
    char msg[256];
    if (v != NULL && (patterns ? ns_pattern_ok(v, n) : ns_channel_ok(v, n)))
        return true;
    if (v == NULL)
        snprintf(msg, sizeof msg, "\"%s\"[%zu] must be a string.", field, i);
    else if (patterns)
        snprintf(msg, sizeof msg,
                 "\"%s\"[%zu] must be a channel name or a prefix ending in *: 1-128 "
                 "characters of A-Z a-z 0-9 and _ . : @ -, with * only at the end.",
                 field, i);
    else
        snprintf(msg, sizeof msg,
                 "\"%s\"[%zu] must be a channel name: 1-128 characters of A-Z a-z 0-9 and "
                 "_ . : @ - (no *).",
                 field, i);
    http_error(r, 400, NULL, msg);
    return false;
}

/* Whether entry i of a repeats an earlier one. */
static bool
grant_repeated(json_t *a, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (json_equal(json_array_get(a, k), json_array_get(a, i)))
            return true;
    return false;
}

/* The member field of j: absent (nothing to set), null or [] (none), or an array of at
 * most NS_GRANTS_MAX valid strings, kept once each. The entries are of the channel
 * alphabet (and '*'), so they are written without escaping. False after answering. */
static bool
grant_list_of(struct request *r, json_t *j, const char *field, bool patterns,
              struct grant_list *g)
{
    json_t *a = json_object_get(j, field);
    *g = (struct grant_list){.set = a != NULL};
    if (a == NULL || json_is_null(a))
        return true;
    char msg[160];
    if (!json_is_array(a) || json_array_size(a) > NS_GRANTS_MAX) {
        if (!json_is_array(a))
            snprintf(msg, sizeof msg, "\"%s\" must be an array of strings, or null.", field);
        else
            snprintf(msg, sizeof msg, "\"%s\" has %zu entries; at most %d are allowed.", field,
                     json_array_size(a), NS_GRANTS_MAX);
        http_error(r, 400, NULL, msg);
        return false;
    }
    size_t n = json_array_size(a), size = 2;
    for (size_t i = 0; i < n; i++) {
        if (!grant_entry_ok(r, field, patterns, a, i))
            return false;
        size += json_string_length(json_array_get(a, i)) + 3; /* quotes and a comma */
    }
    if (n == 0)
        return true;
    char *p = g->json = malloc(size);
    if (p == NULL) {
        http_error(r, 500, NULL, "Out of memory.");
        return false;
    }
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        if (grant_repeated(a, i))
            continue;
        if (p > g->json + 1)
            *p++ = ',';
        *p++ = '"';
        memcpy(p, json_string_value(e), json_string_length(e));
        p += json_string_length(e);
        *p++ = '"';
    }
    *p++ = ']';
    g->len = (size_t)(p - g->json);
    return true;
}

/* A body's channels and subscribe; false after answering. */
static bool
grants_of(struct request *r, json_t *j, struct grant_list *channels,
          struct grant_list *subscribe)
{
    *subscribe = (struct grant_list){0};
    return grant_list_of(r, j, "channels", true, channels) &&
           grant_list_of(r, j, "subscribe", false, subscribe);
}

/* ---- output ---- */

/* A stored channels or subscribe: the array, or [] for none. */
static void
put_list(struct buf *b, const char *p, size_t len)
{
    if (len == 0)
        buf_puts(b, "[]");
    else
        buf_append(b, p, len);
}

static void
put_session(struct buf *b, const struct session *s, const char *token)
{
    buf_puts(b, "{\"id\":\"");
    buf_puts(b, s->id);
    if (token != NULL) {
        buf_puts(b, "\",\"token\":\"");
        buf_puts(b, token);
    }
    buf_puts(b, "\",\"user\":\"");
    buf_puts(b, s->user); /* validated: no character needs escaping */
    buf_puts(b, "\",\"data\":");
    buf_append(b, s->data, s->data_len);
    buf_puts(b, ",\"channels\":");
    put_list(b, s->channels, s->channels_len);
    buf_puts(b, ",\"subscribe\":");
    put_list(b, s->subscribe, s->subscribe_len);
    buf_puts(b, ",\"created_at\":");
    buf_put_u64(b, (uint64_t)s->created_at);
    buf_puts(b, ",\"expires_at\":");
    buf_put_u64(b, (uint64_t)s->expires_at);
    buf_puts(b, ",\"ttl\":");
    buf_put_u64(b, (uint64_t)s->ttl);
    buf_puts(b, ",\"version\":");
    buf_put_u64(b, s->version);
    buf_puts(b, "}");
}

/* Answer with one session, its ETag, and (on creation) its Location and token. */
static void
respond_session(struct request *r, int status, const struct session *s, const char *token)
{
    struct worker *w = r->conn->w;
    struct buf *b = &w->scratch;
    b->off = b->len = 0;
    put_session(b, s, token);
    char headers[160];
    int n = snprintf(headers, sizeof headers, "ETag: \"%llu\"\r\n",
                     (unsigned long long)s->version);
    if (status == 201)
        snprintf(headers + n, sizeof headers - (size_t)n, "Location: /api/sessions/%s\r\n",
                 s->id);
    if (b->p == NULL) {
        http_error(r, 500, NULL, "Out of memory.");
        return;
    }
    http_respond_json(r, status, headers, b->p, b->len);
}

/* Now rounded up to the second: expiries run from it, so that a session lives at least
 * its whole ttl, to the millisecond, although the API's times are whole seconds (a read
 * finds it expired once the clock reaches expires_at). */
static int64_t
now_up(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec + (ts.tv_nsec > 0);
}

/* ---- POST /api/sessions ---- */

struct create_ctx {
    struct request *r;
    char token[TOKEN_CHARS + 1];
};

static void
created(void *arg, enum store_status st, const struct session *s)
{
    struct create_ctx *cx = arg;
    api_store_end(cx->r);
    if (st != STORE_OK)
        api_store_error(cx->r, st);
    else
        respond_session(cx->r, 201, s, cx->token);
    token_wipe(cx->token, sizeof cx->token);
    free(cx);
}

/* Fill s from a create request's body; false after answering 400/413. */
static bool
parse_create(struct request *r, json_t *j, struct session *s, char **data)
{
    static const char *const allowed[] = {"user", "data", "ttl", "channels", "subscribe", NULL};
    const struct conf *cf = r->conn->w->conf;
    if (!only_members(r, j, allowed))
        return false;
    json_t *u = json_object_get(j, "user");
    if (!json_is_string(u) || !valid_user(json_string_value(u), json_string_length(u))) {
        http_error(r, 400, NULL,
                   "\"user\" must be 1-128 characters of A-Z a-z 0-9 and _ . @ : -");
        return false;
    }
    json_t *d = json_object_get(j, "data");
    if (d != NULL && !json_is_object(d)) {
        http_error(r, 400, NULL, "\"data\" must be a JSON object.");
        return false;
    }
    int64_t ttl = ttl_of(r, j);
    if (ttl < 0)
        return false;
    /* json_merge_dump, not json_dumps: it keeps 19.99 as 19.99. */
    int rc = d != NULL ? json_merge_dump(d, (size_t)cf->session_max_bytes, data, &s->data_len)
                       : ((*data = strdup("{}")) != NULL ? (s->data_len = 2, 0) : -1);
    if (rc == -2) {
        http_error(r, 413, NULL, "\"data\" is larger than session_max_bytes.");
        return false;
    }
    if (rc < 0) {
        http_error(r, 500, NULL, "Out of memory.");
        return false;
    }
    s->data = *data;
    memcpy(s->user, json_string_value(u), json_string_length(u) + 1);
    s->ttl = ttl ? ttl : cf->session_ttl_ms / 1000;
    s->created_at = (int64_t)time(NULL);
    s->expires_at = now_up() + s->ttl;
    return true;
}

void
api_session_create(struct request *r)
{
    if (!api_admin_ok(r))
        return;
    json_t *j = api_json_body(r);
    if (j == NULL)
        return;
    struct session s = {0};
    struct grant_list channels = {0}, subscribe = {0};
    char *data = NULL;
    struct create_ctx *cx = NULL;
    if (parse_create(r, j, &s, &data) && grants_of(r, j, &channels, &subscribe)) {
        s.channels = channels.json;
        s.channels_len = channels.len;
        s.subscribe = subscribe.json;
        s.subscribe_len = subscribe.len;
        cx = malloc(sizeof *cx);
        if (cx == NULL || token_new(cx->token) < 0) {
            http_error(r, 500, NULL, "Could not make a session token.");
        } else {
            token_hash(cx->token, TOKEN_CHARS, s.token_hash);
            token_id_of_hash(s.token_hash, s.id);
            cx->r = r;
            api_store_begin(r);
            store_create(api_store(r), &s, created, cx);
            cx = NULL; /* the callback owns it now */
        }
    }
    free(cx);
    free(data);
    free(channels.json);
    free(subscribe.json);
    json_decref(j);
}

/* ---- GET, PATCH, touch, DELETE /api/sessions/{id} ---- */

static void
answered_session(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    if (st != STORE_OK)
        api_store_error(r, st);
    else
        respond_session(r, 200, s, NULL);
}

/* If-Match: "<version>" (or *). Returns the version, 0 for none or *, -1 after 400. */
static int64_t
if_match(struct request *r)
{
    const struct http_str *h = http_header_get(&r->http, "If-Match");
    if (h == NULL || (h->len == 1 && h->p[0] == '*'))
        return 0;
    const char *p = h->p, *end = h->p + h->len;
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
        p += 2;
    if (end - p >= 2 && *p == '"' && end[-1] == '"') {
        p++;
        end--;
    }
    int64_t v = 0;
    for (; p < end && v < (INT64_MAX - 9) / 10; p++) {
        if (*p < '0' || *p > '9')
            break;
        v = v * 10 + (*p - '0');
    }
    if (p != end || v == 0) {
        http_error(r, 400, NULL, "If-Match must be a session version, as in ETag: \"3\".");
        return -1;
    }
    return v;
}

/* A GET with If-None-Match naming the session's version: 304, with the ETag. */
static void
got_session(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    char etag[32], headers[48];
    if (st == STORE_OK) {
        snprintf(etag, sizeof etag, "\"%llu\"", (unsigned long long)s->version);
        if (http_not_modified(r, etag)) {
            api_store_end(r);
            snprintf(headers, sizeof headers, "ETag: %s\r\n", etag);
            http_respond(r, 304, NULL, headers, NULL, 0);
            return;
        }
    }
    answered_session(arg, st, s);
}

void
api_session_get(struct request *r)
{
    char id[SESSION_ID_LEN + 1];
    if (!api_admin_ok(r) || path_id(r, id) == NULL)
        return;
    api_store_begin(r);
    store_get_cached(api_store(r), id, (int64_t)time(NULL), got_session, r);
}

/* A PATCH of the grants: the session's sockets, wherever they are, read them again. */
static void
grants_patched(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    if (st == STORE_OK)
        chan_session_changed(r->conn->w, s->id);
    answered_session(arg, st, s);
}

void
api_session_patch(struct request *r)
{
    static const char *const allowed[] = {"data", "ttl", "channels", "subscribe", NULL};
    char id[SESSION_ID_LEN + 1];
    if (!api_admin_ok(r) || path_id(r, id) == NULL)
        return;
    int64_t version = if_match(r);
    json_t *j = version < 0 ? NULL : api_json_body(r);
    if (j == NULL)
        return;
    struct store_change ch = {.if_version = (uint64_t)version};
    struct grant_list channels = {0}, subscribe = {0};
    char *patch = NULL;
    json_t *d = json_object_get(j, "data");
    if (!only_members(r, j, allowed) || (ch.ttl = ttl_of(r, j)) < 0)
        goto out;
    if (d != NULL && !json_is_object(d)) {
        http_error(r, 400, NULL, "\"data\" must be a JSON object (a merge patch).");
        goto out;
    }
    if (!grants_of(r, j, &channels, &subscribe))
        goto out;
    if (d == NULL && ch.ttl == 0 && !channels.set && !subscribe.set) {
        http_error(r, 400, NULL,
                   "Nothing to change: send \"data\", \"ttl\", \"channels\" or \"subscribe\".");
        goto out;
    }
    if (d != NULL && json_merge_dump(d, SIZE_MAX, &patch, &ch.patch_len) < 0) {
        http_error(r, 500, NULL, "Out of memory.");
        goto out;
    }
    ch.patch = patch;
    ch.touch = ch.ttl > 0; /* a new ttl runs from now */
    ch.touch_from = now_up();
    ch.set_channels = channels.set;
    ch.channels = channels.json;
    ch.channels_len = channels.len;
    ch.set_subscribe = subscribe.set;
    ch.subscribe = subscribe.json;
    ch.subscribe_len = subscribe.len;
    api_store_begin(r);
    store_update(api_store(r), id, (int64_t)time(NULL), &ch,
                 ch.set_channels || ch.set_subscribe ? grants_patched : answered_session, r);
out:
    free(patch);
    free(channels.json);
    free(subscribe.json);
    json_decref(j);
}

void
api_session_touch(struct request *r)
{
    char id[SESSION_ID_LEN + 1];
    if (!api_admin_ok(r) || path_id(r, id) == NULL)
        return;
    int64_t version = if_match(r);
    if (version < 0)
        return;
    struct store_change ch = {.touch = true, .touch_from = now_up(),
                              .if_version = (uint64_t)version};
    api_store_begin(r);
    store_update(api_store(r), id, (int64_t)time(NULL), &ch, answered_session, r);
}

static void
deleted(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    if (st != STORE_OK) {
        api_store_error(r, st);
        return;
    }
    chan_session_ended(r->conn->w, s->id); /* its sockets close with 4001, everywhere */
    http_respond(r, 204, NULL, NULL, NULL, 0);
}

void
api_session_delete(struct request *r)
{
    char id[SESSION_ID_LEN + 1];
    if (!api_admin_ok(r) || path_id(r, id) == NULL)
        return;
    int64_t version = if_match(r);
    if (version < 0)
        return;
    api_store_begin(r);
    store_delete(api_store(r), id, (uint64_t)version, deleted, r);
}

/* ---- /api/users/{user}/sessions ---- */

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

/* The cursor is "<created_at>.<id>" of the last session shown: opaque to clients, and
 * still valid when that session is gone. */
static bool
parse_cursor(const struct http_str *c, struct store_page *page)
{
    const char *dot = memchr(c->p, '.', c->len);
    int64_t t = 0;
    if (dot == NULL || dot == c->p || dot - c->p > 18)
        return false;
    for (const char *p = c->p; p < dot; p++) {
        if (*p < '0' || *p > '9')
            return false;
        t = t * 10 + (*p - '0');
    }
    size_t id_len = c->len - (size_t)(dot + 1 - c->p);
    if (!token_id_is_wellformed(dot + 1, id_len))
        return false;
    page->after_created = t;
    memcpy(page->after_id, dot + 1, SESSION_ID_LEN);
    page->after_id[SESSION_ID_LEN] = '\0';
    return true;
}

static void
listed(void *arg, enum store_status st, const struct session *list, size_t n)
{
    struct request *r = arg;
    /* The page asked for one session more than it shows (limit, checked when asked):
     * whether that one came says whether a next page follows. */
    size_t limit = (size_t)api_query_number(r, "limit", LIST_LIMIT_DEFAULT);
    api_store_end(r);
    if (st != STORE_OK) {
        api_store_error(r, st);
        return;
    }
    bool more = n > limit;
    if (more)
        n = limit;
    struct buf *b = &r->conn->w->scratch;
    b->off = b->len = 0;
    buf_puts(b, "{\"user\":\"");
    buf_append(b, r->params[0].p, r->params[0].len);
    buf_puts(b, "\",\"sessions\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            buf_puts(b, ",");
        put_session(b, &list[i], NULL);
    }
    buf_puts(b, "],\"next_cursor\":");
    if (more) {
        buf_puts(b, "\"");
        buf_put_u64(b, (uint64_t)list[n - 1].created_at);
        buf_puts(b, ".");
        buf_puts(b, list[n - 1].id);
        buf_puts(b, "\"}");
    } else {
        buf_puts(b, "null}");
    }
    if (b->p == NULL) {
        http_error(r, 500, NULL, "Out of memory.");
        return;
    }
    http_respond_json(r, 200, NULL, b->p, b->len);
}

void
api_user_sessions(struct request *r)
{
    char user[SESSION_USER_MAX + 1];
    if (!api_admin_ok(r) || path_user(r, user) == NULL)
        return;
    struct store_page page = {.after_id = ""};
    struct http_str cursor;
    int64_t limit = api_query_number(r, "limit", LIST_LIMIT_DEFAULT);
    if (limit < 1 || limit > LIST_LIMIT_MAX) {
        http_error(r, 400, NULL, "limit must be a number from 1 to 1000.");
        return;
    }
    if (http_query_get(&r->http, "cursor", &cursor) && !parse_cursor(&cursor, &page)) {
        http_error(r, 400, NULL, "cursor must be a next_cursor this API returned.");
        return;
    }
    page.limit = (size_t)limit + 1;
    api_store_begin(r);
    store_list_user(api_store(r), user, (int64_t)time(NULL), &page, listed, r);
}

static void
user_deleted(void *arg, enum store_status st, uint64_t n)
{
    struct request *r = arg;
    api_store_end(r);
    (void)n;
    if (st != STORE_OK) {
        api_store_error(r, st);
        return;
    }
    char user[SESSION_USER_MAX + 1];
    if (path_user(r, user) != NULL)
        chan_user_ended(r->conn->w, user);
    http_respond(r, 204, NULL, NULL, NULL, 0);
}

void
api_user_sessions_delete(struct request *r)
{
    char user[SESSION_USER_MAX + 1];
    if (!api_admin_ok(r) || path_user(r, user) == NULL)
        return;
    api_store_begin(r);
    store_delete_user(api_store(r), user, user_deleted, r);
}

/* ---- /api/session: the end user's own session, by its token ---- */

/* Hash the request's token; false after answering 401. */
static bool
token_of(struct request *r, uint8_t hash[SESSION_HASH_LEN])
{
    struct http_str b = api_bearer(r);
    if (!token_is_wellformed(b.p, b.len)) {
        http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                        b.len ? "The session token is not valid." : "A session token is required.");
        return false;
    }
    token_hash(b.p, b.len, hash);
    return true;
}

/* An unknown or expired token is 401 here, not 404: the token is the credential. */
static void
own_respond(struct request *r, enum store_status st, const struct session *s)
{
    if (st == STORE_NOT_FOUND)
        http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                        "The session has expired or was ended.");
    else if (st != STORE_OK)
        api_store_error(r, st);
    else
        respond_session(r, 200, s, NULL);
}

static void
own_answered(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    own_respond(r, st, s);
}

/* With session_rolling, reading the session also slides its expiry. */
static void
own_found(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    if (st != STORE_OK || !r->conn->w->conf->session_rolling) {
        own_respond(r, st, s);
        return;
    }
    struct store_change ch = {.touch = true, .touch_from = now_up()};
    char id[SESSION_ID_LEN + 1];
    memcpy(id, s->id, sizeof id);
    api_store_begin(r);
    store_update(api_store(r), id, (int64_t)time(NULL), &ch, own_answered, r);
}

void
api_own_session(struct request *r)
{
    uint8_t hash[SESSION_HASH_LEN];
    if (!token_of(r, hash))
        return;
    api_store_begin(r);
    store_get_by_token_cached(api_store(r), hash, (int64_t)time(NULL), own_found, r);
}

static void
own_delete_found(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    if (st != STORE_OK) {
        own_respond(r, st, s);
        return;
    }
    char id[SESSION_ID_LEN + 1];
    memcpy(id, s->id, sizeof id);
    api_store_begin(r);
    store_delete(api_store(r), id, 0, deleted, r);
}

void
api_own_session_delete(struct request *r)
{
    uint8_t hash[SESSION_HASH_LEN];
    if (!token_of(r, hash))
        return;
    api_store_begin(r);
    store_get_by_token(api_store(r), hash, (int64_t)time(NULL), own_delete_found, r);
}
