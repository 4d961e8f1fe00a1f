#include "channels.h"
#include "chan_impl.h"

#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "bus.h"
#include "grants.h"
#include "history.h"
#include "hub.h"
#include "json_merge.h"
#include "list.h"
#include "log.h"
#include "namespace.h"
#include "pubsub.h"
#include "roster.h"
#include "store.h"
#include "util.h"
#include "worker.h"
#include "ws.h"
#include "ws_proto.h"

#define CHAN_DEFLATE_MIN 128    /* smaller pushes are not worth compressing */
#define CHAN_EXPIRY_CHECK 1.0   /* how often expired sessions' sockets are looked for */
#define CHAN_PRESENCE_MAX 10000 /* members listed by a presence answer */
#define CHAN_REDIS_CONTROL "~"  /* the Redis name of session ends: no channel is called so */

/* How many channels one connection may be in, server-side ones included. */
static size_t
chan_max_subs(const struct chan_client *cl)
{
    return (size_t)cl->w->conf->ws_max_channels;
}

static void
chan_too_many(struct chan_client *cl, const json_t *id)
{
    char msg[64];
    snprintf(msg, sizeof msg, "A connection may be in %d channels.", cl->w->conf->ws_max_channels);
    ws_error(cl->ws, id, "too_many_channels", msg);
}

static struct roster_member
chan_member(const struct chan_client *cl)
{
    struct roster_member m;
    snprintf(m.conn, sizeof m.conn, "%s", cl->conn_id);
    snprintf(m.user, sizeof m.user, "%s", cl->user);
    snprintf(m.session, sizeof m.session, "%s", cl->id);
    return m;
}

/* ---- fan-out ---- */

/* The compressor for a window, made when first needed. */
static z_stream *
chan_deflater(struct chan_worker *cw, int bits)
{
    int i = bits >= 8 && bits <= 15 ? bits : 15;
    if (cw->deflate[i] == NULL) {
        z_stream *z = calloc(1, sizeof *z);
        if (z == NULL || ws_proto_deflate_init(z, i) < 0) {
            free(z);
            return NULL;
        }
        cw->deflate[i] = z;
    }
    return cw->deflate[i];
}

/* The frame for a subscriber compressing with window bits: made once per window while
 * *zbits says which window cw->zframe holds. */
static const struct buf *
chan_zframe(struct chan_worker *cw, int bits, const char *text, size_t len, int *zbits)
{
    if (*zbits != bits) {
        z_stream *z = chan_deflater(cw, bits);
        cw->msg.off = cw->msg.len = 0;
        *zbits =
            z != NULL && ws_proto_deflate(z, bits, text, len, &cw->msg) == 0 &&
                    ws_frame_text(&cw->zframe, true, buf_data(&cw->msg), buf_used(&cw->msg)) == 0
                ? bits
                : -1;
    }
    return *zbits == bits ? &cw->zframe : &cw->frame;
}

/* Send a pushed message to this worker's subscribers of a channel: framed once, and
 * compressed once per window for those that negotiated compression. */
size_t
chan_fanout(struct chan_worker *cw, const char *channel, size_t len, const char *text,
            size_t text_len)
{
    size_t n;
    void *const *subs = hub_subs(cw->hub, channel, len, &n);
    if (n == 0) return 0;
    if (ws_frame_text(&cw->frame, false, text, text_len) < 0) return 0;
    int zbits = -1; /* the window cw->zframe holds, if any */
    size_t reached = 0;
    for (size_t i = 0; i < n; i++) {
        struct chan_client *cl = subs[i];
        int bits = ws_deflate_bits(cl->ws);
        const struct buf *f = bits > 0 && text_len >= CHAN_DEFLATE_MIN
                                  ? chan_zframe(cw, bits, text, text_len, &zbits)
                                  : &cw->frame;
        if (ws_push_frame(cl->ws, buf_data(f), buf_used(f)) == 0) reached++;
    }
    sb_add(&cw->w->slot->c.ws_out, reached);
    return reached;
}

/* ---- the codec between workers and instances ---- */

/* To the other instances: nonce, type, payload, under name on Redis. */
static void
chan_redis_send(struct chan_worker *cw, const char *name, size_t len, int type, const void *p,
                size_t plen)
{
    if (cw->ps == NULL) return;
    char t = (char)type;
    struct buf *b = &cw->redis;
    b->off = b->len = 0;
    if (buf_append(b, cw->nonce, 16) == 0 && buf_append(b, &t, 1) == 0 &&
        buf_append(b, p, plen) == 0)
        pubsub_publish(cw->ps, name, len, buf_data(b), buf_used(b));
}

void
chan_bus_push(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset)
{
    struct buf *t = &cw->text;
    struct buf *b = &cw->msg;
    uint8_t head[11] = {offset > 0 ? BUS_PUBLISH_AT : BUS_PUBLISH, (uint8_t)(len >> 8),
                        (uint8_t)len};
    size_t numbered = offset > 0 ? 8 : 0;
    for (size_t i = 0; i < numbered; i++)
        head[3 + i] = (uint8_t)(offset >> (56 - 8 * i));
    b->off = b->len = 0;
    if (buf_append(b, head, 3) == 0 && buf_append(b, channel, len) == 0 &&
        buf_append(b, head + 3, numbered) == 0 && buf_append(b, buf_data(t), buf_used(t)) == 0 &&
        buf_used(b) <= BUS_MAX_MSG)
        bus_broadcast(cw->bus, cw->w->sb, buf_data(b), buf_used(b));
}

/* Push text (in cw->text) to a channel's subscribers on every worker of every instance. */
static size_t
chan_push(struct chan_worker *cw, const char *channel, size_t len)
{
    struct buf *t = &cw->text;
    chan_bus_push(cw, channel, len, 0);
    chan_redis_send(cw, channel, len, BUS_PUBLISH, buf_data(t), buf_used(t));
    /* chan_fanout uses msg for compression: the bus copy has been sent by now. */
    return chan_fanout(cw, channel, len, buf_data(t), buf_used(t));
}

/* {"op":"message","channel":C,"data":D,"from":U}, without "from" when the API published
 * it (from ""): channel and user are of a safe alphabet, so they need no escaping. */
int
chan_message_text(struct buf *t, const char *channel, size_t len, const char *data, size_t data_len,
                  const char *from, uint64_t offset)
{
    t->off = t->len = 0;
    buf_puts(t, "{\"op\":\"message\",\"channel\":\"");
    buf_append(t, channel, len);
    buf_puts(t, "\",\"data\":");
    buf_append(t, data, data_len);
    if (from[0] != '\0') {
        buf_puts(t, ",\"from\":\"");
        buf_puts(t, from);
        buf_puts(t, "\"");
    }
    if (offset > 0) {
        buf_puts(t, ",\"offset\":");
        buf_put_u64(t, offset);
    }
    return buf_puts(t, "}");
}

void
chan_publish(struct worker *w, const char *channel, size_t len, const char *data, size_t data_len,
             const char *from, chan_published_cb cb, void *arg)
{
    struct chan_worker *cw = w->chan;
    const struct ns_rules *r = chan_rh_rules(cw, channel, len);
    if (r != NULL) { /* Redis numbers it and publishes it to every worker, ours too */
        chan_rh_publish(cw, r, channel, len, data, data_len, from, cb, arg);
        return;
    }
    r = chan_history_rules(cw, channel, len);
    if (r != NULL) /* kept in the machine's file first, with the loop iteration's others */
        chan_keep(cw, r, channel, len, data, data_len, from, cb, arg);
    else
        chan_send(cw, channel, len, data, data_len, from, 0, cb, arg);
}

void
chan_send(struct chan_worker *cw, const char *channel, size_t len, const char *data,
          size_t data_len, const char *from, uint64_t offset, chan_published_cb cb, void *arg)
{
    if (chan_message_text(&cw->text, channel, len, data, data_len, from, offset) < 0) {
        cb(arg, -1, 0, 0);
        return;
    }
    if (offset > 0)
        chan_push_at(cw, channel, len, offset);
    else
        chan_push(cw, channel, len);
    cb(arg, 0, roster_count(cw->roster, channel, len), offset);
}

/* {"op":"join"|"leave","channel":C,"user":U}, where the namespace has join_events on and
 * while the channel has at most presence_events_max members: beyond, they would cost
 * members squared messages. */
static void
chan_presence_event(struct chan_worker *cw, const char *op, const char *user, const char *channel,
                    size_t len, size_t members)
{
    const struct conf *cf = cw->w->conf;
    if (members > (size_t)cf->presence_events_max ||
        !ns_of(&cf->namespaces, channel, len)->join_events)
        return;
    struct buf *t = &cw->text;
    t->off = t->len = 0;
    buf_puts(t, "{\"op\":\"");
    buf_puts(t, op);
    buf_puts(t, "\",\"channel\":\"");
    buf_append(t, channel, len);
    buf_puts(t, "\",\"user\":\"");
    buf_puts(t, user);
    if (buf_puts(t, "\"}") == 0) chan_push(cw, channel, len);
}

/* ---- subscribe and unsubscribe ---- */

static ssize_t
chan_find_sub(const struct chan_client *cl, const char *name, size_t len)
{
    for (size_t i = 0; i < cl->nsubs; i++) {
        size_t n;
        const char *ch = hub_member_channel(cl->subs[i], &n);
        if (n == len && memcmp(ch, name, len) == 0) return (ssize_t)i;
    }
    return -1;
}

/* Out of the hub (and, as the last one here, out of Redis's channel). */
static void
chan_hub_leave(struct chan_client *cl, size_t i, char name[HUB_CHANNEL_MAX], size_t *len)
{
    struct chan_worker *cw = cw_of(cl);
    const char *ch = hub_member_channel(cl->subs[i], len);
    memcpy(name, ch, *len);
    hub_leave(cw->hub, cl->subs[i]);
    cl->subs[i] = cl->subs[--cl->nsubs];
    size_t here;
    hub_members(cw->hub, name, *len, &here);
    if (cw->ps == NULL || here > 0) return;
    if (chan_rh_rules(cw, name, *len) != NULL)
        chan_rh_left(cw, name, *len); /* it leaves Redis's channel when nobody waits */
    else
        pubsub_unsubscribe(cw->ps, name, *len);
}

/* Into the hub, in its place in cl->subs (and, as the first here, into Redis's channel,
 * which a channel with history in Redis has joined already). */
static struct hub_member *
chan_hub_add(struct chan_client *cl, const char *name, size_t len)
{
    if (cl->nsubs == cl->subs_cap) {
        size_t cap = cl->subs_cap ? (size_t)cl->subs_cap * 2 : 2;
        /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
        struct hub_member **v = realloc(cl->subs, cap * sizeof *v);
        if (v == NULL) return NULL;
        cl->subs = v;
        cl->subs_cap = (uint16_t)cap;
    }
    struct chan_worker *cw = cw_of(cl);
    struct hub_member *m = hub_join(cw->hub, name, len, cl);
    if (m == NULL) return NULL;
    size_t here;
    if (cw->ps != NULL && chan_rh_rules(cw, name, len) == NULL &&
        hub_members(cw->hub, name, len, &here) != NULL && here == 1)
        pubsub_subscribe(cw->ps, name, len); /* the first here: hear the other instances */
    cl->subs[cl->nsubs++] = m;
    return m;
}

/* {"op": op, "channel": C}: what the server did to a socket's channels by itself. */
static void
chan_tell(struct chan_client *cl, const char *op, const char *channel, size_t len)
{
    char rest[HUB_CHANNEL_MAX + 16];
    snprintf(rest, sizeof rest, ",\"channel\":\"%.*s\"", (int)len, channel);
    ws_reply(cl->ws, op, NULL, rest);
}

void
chan_join_answer(struct chan_join_op *op, const char *rest, const struct buf *replay)
{
    struct chan_client *cl = op->cl;
    if (ws_release(cl->ws) && !ws_is_closed(cl->ws)) {
        ssize_t i = chan_find_sub(cl, op->channel, op->len);
        if (rest != NULL && i < 0 && op->rh && chan_hub_add(cl, op->channel, op->len) != NULL)
            i = cl->nsubs - 1;
        if (rest == NULL || i < 0) {
            char name[HUB_CHANNEL_MAX];
            size_t n;
            if (i >= 0) chan_hub_leave(cl, (size_t)i, name, &n);
            if (!op->pushed) ws_error(cl->ws, op->id, "internal", "Out of memory.");
        } else {
            if (op->pushed)
                chan_tell(cl, "subscribed", op->channel, op->len);
            else if (!op->rh)
                chan_subscribe_ok(cl, op);
            else
                ws_reply(cl->ws, "ok", op->id, rest);
            if (replay != NULL && buf_used(replay) > 0)
                ws_push_frame(cl->ws, buf_data(replay), buf_used(replay));
            chan_presence_event(cw_of(cl), "join", cl->user, op->channel, op->len, op->members);
        }
        ws_answered(cl->ws);
    }
    json_decref(op->id);
    free(op);
}

/* The roster holds the membership. A subscribe to a channel with history in Redis then
 * waits for where the channel stands; the others are answered now. */
static void
chan_joined(void *arg, int rc, size_t members)
{
    struct chan_join_op *op = arg;
    op->members = members;
    if (rc == 0 && op->rh && !ws_is_closed(op->cl->ws))
        chan_rh_join(cw_of(op->cl), op);
    else
        chan_join_answer(op, rc == 0 ? "" : NULL, NULL);
}

/* Join a channel: the hub at once, the roster then answers the client (or, pushed, tells
 * it "subscribed"). With history in Redis, the hub once the answer is out. */
static int
chan_subscribe(struct chan_client *cl, const char *name, size_t len, const json_t *id, bool pushed,
               const struct chan_since *since)
{
    if (chan_find_sub(cl, name, len) >= 0) {
        if (!pushed) ws_reply(cl->ws, "ok", id, "");
        return 0;
    }
    struct chan_worker *cw = cw_of(cl);
    bool rh = chan_rh_rules(cw, name, len) != NULL;
    struct chan_join_op *op = len <= HUB_CHANNEL_MAX ? malloc(sizeof *op) : NULL;
    if (op == NULL) return -1;
    if (!rh) {
        /* With history, the members here are brought up to the channel's newest offset
         * first, so that the new one starts at that offset and is sent nothing older. */
        uint64_t top = 0;
        bool numbered = chan_history_rules(cw, name, len) != NULL &&
                        history_top(cw->history, name, len, &top) == 0;
        if (numbered) chan_catch_up(cw, name, len, top);
        if (chan_hub_add(cl, name, len) == NULL) {
            free(op);
            return -1;
        }
        uint64_t *at = numbered ? hub_offset(cw->hub, name, len) : NULL;
        if (at != NULL && *at < top) /* a channel new here */
            *at = top;
    }
    *op = (struct chan_join_op){.cl = cl, .pushed = pushed, .rh = rh, .len = len};
    if (since != NULL) op->since = *since;
    memcpy(op->channel, name, len);
    op->id = id != NULL ? json_deep_copy(id) : NULL;
    struct roster_member rm = chan_member(cl);
    ws_hold(cl->ws);
    roster_join(cw->roster, name, len, &rm, chan_joined, op);
    return 0;
}

/* A leave is told to the channel once the roster has counted it. */
struct chan_leave_op {
    struct chan_worker *cw;
    char user[SESSION_USER_MAX + 1];
    size_t len;
    char channel[HUB_CHANNEL_MAX];
};

static void
chan_left(void *arg, int rc, size_t members)
{
    struct chan_leave_op *op = arg;
    if (rc == 0) chan_presence_event(op->cw, "leave", op->user, op->channel, op->len, members + 1);
    free(op);
}

static void
chan_left_untold(void *arg, int rc, size_t members)
{
    (void)arg, (void)rc, (void)members;
}

/* Leave the i-th channel of cl; when asked by the client (reply), answer it before the
 * channel is told. */
static void
chan_leave(struct chan_client *cl, size_t i, bool reply, const json_t *id)
{
    struct chan_worker *cw = cw_of(cl);
    struct roster_member rm = chan_member(cl);
    struct chan_leave_op *op = malloc(sizeof *op);
    char name[HUB_CHANNEL_MAX];
    size_t len;
    chan_hub_leave(cl, i, name, &len);
    if (reply) ws_reply(cl->ws, "ok", id, "");
    if (op == NULL) { /* the channel is not told; the roster forgets all the same */
        roster_leave(cw->roster, name, len, &rm, chan_left_untold, NULL);
        return;
    }
    *op = (struct chan_leave_op){.cw = cw, .len = len};
    snprintf(op->user, sizeof op->user, "%s", cl->user);
    memcpy(op->channel, name, len);
    roster_leave(cw->roster, name, len, &rm, chan_left, op);
}

static void
chan_unsubscribe(struct chan_client *cl, const char *name, size_t len, const json_t *id)
{
    ssize_t i = chan_find_sub(cl, name, len);
    if (i >= 0)
        chan_leave(cl, (size_t)i, true, id);
    else
        ws_reply(cl->ws, "ok", id, "");
}

/* ---- presence ---- */

/* A presence question. Its answer (every member, then done) comes in one go, now or
 * later, and is written into the worker's members buffer, started at its first part. */
struct chan_presence_call {
    struct chan_worker *cw;
    chan_presence_cb cb;
    void *arg;
    bool started;
    bool users_only; /* a client's question: each user once, nothing else */
    char **users;    /* ... collected, then sorted */
    size_t nusers, cap;
};

static struct buf *
chan_members_buf(struct chan_presence_call *call)
{
    struct buf *b = &call->cw->members;
    if (!call->started) {
        b->off = b->len = 0;
        buf_puts(b, "[");
        call->started = true;
    }
    return b;
}

static void
chan_member_json(void *arg, const struct roster_member *m)
{
    struct chan_presence_call *call = arg;
    if (call->users_only) {
        if (call->nusers == call->cap) {
            size_t cap = call->cap ? call->cap * 2 : 16;
            /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
            char **v = realloc(call->users, cap * sizeof *v);
            if (v == NULL) return;
            call->users = v;
            call->cap = cap;
        }
        if ((call->users[call->nusers] = strdup(m->user)) != NULL) call->nusers++;
        return;
    }
    struct buf *b = chan_members_buf(call);
    buf_printf(b, "%s{\"user\":\"%s\",\"session\":\"%s\",\"conn\":\"%s\"}",
               buf_data(b)[buf_used(b) - 1] == '[' ? "" : ",", m->user, m->session, m->conn);
}

static int
chan_user_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The users collected, each once: {"user": U}, in order. */
static void
chan_users_json(struct chan_presence_call *call)
{
    struct buf *b = chan_members_buf(call);
    qsort(call->users, call->nusers, sizeof *call->users, chan_user_cmp);
    for (size_t i = 0; i < call->nusers; i++) {
        if (i == 0 || strcmp(call->users[i], call->users[i - 1]) != 0)
            buf_printf(b, "%s{\"user\":\"%s\"}", buf_used(b) > 1 ? "," : "", call->users[i]);
    }
    for (size_t i = 0; i < call->nusers; i++)
        free(call->users[i]);
    free(call->users);
}

static void
chan_members_done(void *arg, int rc)
{
    struct chan_presence_call *call = arg;
    struct buf *b = chan_members_buf(call);
    if (call->users_only) chan_users_json(call);
    if (buf_puts(b, "]") < 0 || rc < 0)
        call->cb(call->arg, NULL, 0);
    else
        call->cb(call->arg, buf_data(b), buf_used(b));
    free(call);
}

static void
chan_presence_ask(struct chan_worker *cw, const char *channel, size_t len, bool users_only,
                  chan_presence_cb cb, void *arg)
{
    struct chan_presence_call *call = malloc(sizeof *call);
    if (call == NULL) {
        cb(arg, NULL, 0);
        return;
    }
    *call = (struct chan_presence_call){.cw = cw, .cb = cb, .arg = arg, .users_only = users_only};
    roster_members(cw->roster, channel, len, CHAN_PRESENCE_MAX, chan_member_json, chan_members_done,
                   call);
}

void
chan_presence(struct worker *w, const char *channel, size_t len, chan_presence_cb cb, void *arg)
{
    chan_presence_ask(w->chan, channel, len, false, cb, arg);
}

/* ---- the client's operations ---- */

static const char *
chan_channel_arg(struct chan_client *cl, json_t *j, const json_t *id, size_t *len)
{
    json_t *ch = json_object_get(j, "channel");
    if (!json_is_string(ch) || !ns_channel_ok(json_string_value(ch), json_string_length(ch))) {
        ws_error(cl->ws, id, "bad_request",
                 "\\\"channel\\\" must be 1-128 characters of A-Z a-z 0-9 and _ . : @ -");
        return NULL;
    }
    *len = json_string_length(ch);
    return json_string_value(ch);
}

/* The namespace's decision on op for cl, with what its session holds: its grants, and its
 * server-side subscriptions, which are granted in any namespace. */
static bool
chan_allowed(const struct chan_client *cl, const struct ns_rules *r, enum ns_op op,
             const char *channel, size_t len, bool subscribed)
{
    if (op == NS_OP_SUBSCRIBE && grants_subscribes(cl->grants, channel, len)) return true;
    struct ns_subject sub = {.user = cl->user,
                             .granted = grants_allow(cl->grants, channel, len),
                             .subscribed = subscribed};
    return ns_allows(r, op, channel, len, &sub);
}

/* Whether cl may do op on channel under its namespace's rules; if not, it is told so
 * (forbidden) and the socket stays open. A server-side subscription is granted in any
 * namespace; client_publish off is publish=none in every one. */
static bool
chan_may(struct chan_client *cl, enum ns_op op, const char *channel, size_t len, const json_t *id)
{
    const struct conf *cf = cl->w->conf;
    const struct ns_rules *r = ns_of(&cf->namespaces, channel, len);
    if (op == NS_OP_PUBLISH && !cf->client_publish) {
        ws_error(cl->ws, id, "forbidden",
                 "Publishing is for the API only here (client_publish off).");
        return false;
    }
    if (chan_allowed(cl, r, op, channel, len, chan_find_sub(cl, channel, len) >= 0)) return true;
    char msg[160];
    snprintf(msg, sizeof msg, "Not allowed to %s here: namespace %s has %s=%s.", ns_op_key(op),
             r->name, ns_op_key(op), ns_rule_word(r, op));
    ws_error(cl->ws, id, "forbidden", msg);
    return false;
}

static void
chan_published_nowhere(void *arg, int rc, size_t recipients, uint64_t offset)
{
    (void)arg;
    (void)rc;
    (void)recipients;
    (void)offset;
}

/* A client's publish to a channel with history in Redis waits holding the socket. */
struct chan_publish_op {
    struct chan_client *cl;
    json_t *id;
};

static void
chan_op_published(void *arg, int rc, size_t recipients, uint64_t offset)
{
    (void)recipients;
    struct chan_publish_op *op = arg;
    struct chan_client *cl = op->cl;
    if (ws_release(cl->ws) && !ws_is_closed(cl->ws)) {
        char rest[40];
        snprintf(rest, sizeof rest, ",\"offset\":%llu", (unsigned long long)offset);
        if (rc == 0)
            ws_reply(cl->ws, "ok", op->id, rest);
        else
            ws_error(cl->ws, op->id, "store_unavailable",
                     "The channel's history (Redis) is unavailable: nothing was published.");
        ws_answered(cl->ws);
    }
    json_decref(op->id);
    free(op);
}

static void
chan_op_publish(struct chan_client *cl, json_t *j, const json_t *id, const char *channel,
                size_t len)
{
    struct worker *w = cl->w;
    if (!chan_may(cl, NS_OP_PUBLISH, channel, len, id)) return;
    json_t *data = json_object_get(j, "data");
    if (data == NULL) {
        ws_error(cl->ws, id, "bad_request", "\\\"data\\\" is required.");
        return;
    }
    char *d;
    size_t dlen;
    if (json_merge_dump(data, (size_t)w->conf->ws_max_message_bytes, &d, &dlen) != 0) {
        ws_error(cl->ws, id, "too_big", "\\\"data\\\" is too large.");
        return;
    }
    if (chan_rh_rules(w->chan, channel, len) == NULL) {
        ws_reply(cl->ws, "ok", id, ""); /* before the message, which it may also get */
        chan_publish(w, channel, len, d, dlen, cl->user, chan_published_nowhere, NULL);
    } else { /* answered once Redis has numbered it, with its offset */
        struct chan_publish_op *op = malloc(sizeof *op);
        if (op == NULL) {
            ws_error(cl->ws, id, "internal", "Out of memory.");
        } else {
            *op = (struct chan_publish_op){.cl = cl, .id = id != NULL ? json_deep_copy(id) : NULL};
            ws_hold(cl->ws);
            chan_publish(w, channel, len, d, dlen, cl->user, chan_op_published, op);
        }
    }
    free(d);
}

/* A presence op waits for its answer holding the socket. */
struct chan_presence_op {
    struct chan_client *cl;
    json_t *id;
};

static void
chan_presence_op_answer(void *arg, const char *json, size_t len)
{
    struct chan_presence_op *op = arg;
    struct chan_client *cl = op->cl;
    if (ws_release(cl->ws) && !ws_is_closed(cl->ws)) {
        struct buf *b = &cw_of(cl)->msg;
        b->off = b->len = 0;
        buf_puts(b, ",\"members\":");
        if (json == NULL || buf_append(b, json, len) < 0 || buf_append(b, "", 1) < 0)
            ws_error(cl->ws, op->id, "internal", "Presence is unavailable.");
        else
            ws_reply(cl->ws, "ok", op->id, buf_data(b));
        ws_answered(cl->ws);
    }
    json_decref(op->id);
    free(op);
}

static void
chan_op_presence(struct chan_client *cl, const json_t *id, const char *channel, size_t len)
{
    if (!chan_may(cl, NS_OP_PRESENCE, channel, len, id)) return;
    struct chan_presence_op *op = malloc(sizeof *op);
    if (op == NULL) {
        ws_error(cl->ws, id, "internal", "Out of memory.");
        return;
    }
    op->cl = cl;
    op->id = id != NULL ? json_deep_copy(id) : NULL;
    ws_hold(cl->ws);
    chan_presence_ask(cw_of(cl), channel, len, true, chan_presence_op_answer, op);
}

static void
chan_dispatch(struct chan_client *cl, json_t *j)
{
    const json_t *id = json_object_get(j, "id");
    const char *op = json_string_value(json_object_get(j, "op"));
    if (op == NULL) {
        ws_error(cl->ws, id, "bad_request", "A message needs an \\\"op\\\".");
        return;
    }
    if (strcmp(op, "ping") == 0) {
        ws_reply(cl->ws, "pong", id, "");
        return;
    }
#ifdef SESSIOND_TEST_HOOKS
    if (strcmp(op, "test_worker_pid") == 0) {
        /* Which worker holds the socket, for the tests that stop or kill it: the
         * connection ids of presence say nothing of it. */
        char rest[32];
        snprintf(rest, sizeof rest, ",\"worker_pid\":%d", (int)getpid());
        ws_reply(cl->ws, "ok", id, rest);
        return;
    }
#endif
    size_t len;
    const char *channel;
    bool known = strcmp(op, "subscribe") == 0 || strcmp(op, "unsubscribe") == 0 ||
                 strcmp(op, "publish") == 0 || strcmp(op, "presence") == 0;
    if (!known) {
        ws_error(cl->ws, id, "unknown_op",
                 "op must be subscribe, unsubscribe, publish, "
                 "presence or ping.");
        return;
    }
    if ((channel = chan_channel_arg(cl, j, id, &len)) == NULL) return;
    if (strcmp(op, "subscribe") == 0) {
        struct chan_since since;
        if (!chan_may(cl, NS_OP_SUBSCRIBE, channel, len, id) ||
            chan_since_arg(cl, j, id, &since) < 0)
            return;
        if (cl->nsubs >= chan_max_subs(cl) && chan_find_sub(cl, channel, len) < 0)
            chan_too_many(cl, id);
        else if (chan_subscribe(cl, channel, len, id, false, &since) < 0)
            ws_error(cl->ws, id, "internal", "Out of memory.");
    } else if (strcmp(op, "unsubscribe") == 0) {
        chan_unsubscribe(cl, channel, len, id);
    } else if (strcmp(op, "publish") == 0) {
        chan_op_publish(cl, j, id, channel, len);
    } else {
        chan_op_presence(cl, id, channel, len);
    }
}

void
chan_client_text(struct chan_client *cl, const char *p, size_t len)
{
    char msg[WS_PROTO_MESSAGE_ERROR_SIZE];
    json_t *j = ws_proto_message(p, len, msg, sizeof msg);
    if (j == NULL)
        ws_error(cl->ws, NULL, "bad_request", msg);
    else
        chan_dispatch(cl, j);
    json_decref(j);
}

/* ---- clients ---- */

static void
chan_admitted(void *arg, int rc)
{
    struct chan_client *cl = arg;
    if (rc < 0) log_warnx("%s", roster_last_error(cw_of(cl)->roster));
    ws_admitted(cl->ws, rc);
}

/* A session's grants for one of its sockets; a session whose arrays cannot be read keeps
 * none (old), and says so. */
static void
chan_read_grants(struct chan_client *cl, const struct session *s, struct grants *old)
{
    int err;
    struct grants *g =
        grants_parse(s->channels, s->channels_len, s->subscribe, s->subscribe_len, &err);
    if (err < 0) {
        free(g);
        log_warnx("session %s: its channels or subscribe could not be read", s->id);
        return;
    }
    free(old);
    cl->grants = g;
}

/* The connection's id: a bijection of the worker's count under a random key (the
 * splitmix64 finalizer), so that it is unique in the worker, and with 64 random bits
 * across workers and instances, yet says nothing of where or when. */
static uint64_t
chan_conn_mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void
chan_admit(struct chan_client *cl, struct ws *ws, struct worker *w, const struct session *s,
           char *user)
{
    struct chan_worker *cw = w->chan;
    size_t ulen = strnlen(s->user, sizeof s->user - 1);
    memcpy(user, s->user, ulen);
    user[ulen] = '\0';
    *cl = (struct chan_client){.w = w, .ws = ws, .expires_at = s->expires_at, .user = user};
    memcpy(cl->id, s->id, sizeof cl->id);
    snprintf(cl->conn_id, sizeof cl->conn_id, "%016llx",
             (unsigned long long)chan_conn_mix(cw->conn_key + ++cw->seq));
    chan_read_grants(cl, s, NULL);
    roster_connect(cw->roster, cl->conn_id, cl->user, w->conf->max_connections_per_user,
                   chan_admitted, cl);
}

/* Into each of the session's server-side channels that it is not in yet. */
static void
chan_join_server_side(struct chan_client *cl)
{
    for (unsigned i = 0; cl->grants != NULL && i < cl->grants->nsubscribe; i++) {
        size_t len;
        const char *ch = grants_subscribe_at(cl->grants, i, &len);
        if (cl->nsubs < chan_max_subs(cl) && chan_subscribe(cl, ch, len, NULL, true, NULL) < 0)
            log_warnx("session %s: out of memory joining %.*s", cl->id, (int)len, ch);
    }
}

void
chan_client_attach(struct chan_client *cl)
{
    LIST_PUSH(cw_of(cl)->list, cl);
}

void
chan_client_opened(struct chan_client *cl)
{
    chan_join_server_side(cl);
    ws_answered(cl->ws);
}

void
chan_client_drop(struct chan_client *cl)
{
    roster_disconnect(cw_of(cl)->roster, cl->conn_id, cl->user);
}

void
chan_client_close(struct chan_client *cl)
{
    struct chan_worker *cw = cw_of(cl);
    while (cl->nsubs > 0)
        chan_leave(cl, cl->nsubs - 1, false, NULL);
    roster_disconnect(cw->roster, cl->conn_id, cl->user);
    LIST_UNLINK(cw->list, cl);
}

void
chan_client_free(struct chan_client *cl)
{
    free(cl->subs);
    free(cl->grants);
    cl->subs = NULL;
    cl->grants = NULL;
}

/* ---- sessions that end ---- */

static void
chan_end_matching(struct chan_worker *cw, const char *id, const char *user)
{
    for (struct chan_client *cl = cw->list; cl != NULL; cl = cl->next)
        if ((id != NULL && strcmp(cl->id, id) == 0) ||
            (user != NULL && strcmp(cl->user, user) == 0))
            ws_close_with(cl->ws, WS_CLOSE_SESSION_ENDED, "session ended");
}

static void
chan_end_broadcast(struct chan_worker *cw, int type, const char *what)
{
    char msg[1 + SESSION_USER_MAX];
    size_t n = strnlen(what, SESSION_USER_MAX);
    msg[0] = (char)type;
    memcpy(msg + 1, what, n);
    bus_broadcast(cw->bus, cw->w->sb, msg, n + 1);
    chan_redis_send(cw, CHAN_REDIS_CONTROL, strlen(CHAN_REDIS_CONTROL), type, what, n);
}

void
chan_session_ended(struct worker *w, const char *id)
{
    chan_end_matching(w->chan, id, NULL);
    chan_end_broadcast(w->chan, BUS_SESSION_END, id);
}

void
chan_user_ended(struct worker *w, const char *user)
{
    chan_end_matching(w->chan, NULL, user);
    chan_end_broadcast(w->chan, BUS_USER_END, user);
}

/* ---- sessions that change ---- */

/* Whether cl may stay in a channel it is in, under its grants now. */
static bool
chan_may_stay(const struct chan_client *cl, const char *channel, size_t len)
{
    const struct ns_rules *r = ns_of(&cl->w->conf->namespaces, channel, len);
    return chan_allowed(cl, r, NS_OP_SUBSCRIBE, channel, len, true);
}

/* The session as the store has it now: its expiry, and its grants, which may take the
 * socket out of channels (told "unsubscribed") and put it in new server-side ones. */
static void
chan_apply_session(struct chan_client *cl, const struct session *s)
{
    cl->expires_at = s->expires_at;
    chan_read_grants(cl, s, cl->grants);
    for (size_t i = cl->nsubs; i-- > 0;) {
        size_t len;
        const char *ch = hub_member_channel(cl->subs[i], &len);
        if (chan_may_stay(cl, ch, len)) continue;
        char name[HUB_CHANNEL_MAX];
        memcpy(name, ch, len);
        chan_leave(cl, i, false, NULL); /* moves the last one here: it was looked at */
        chan_tell(cl, "unsubscribed", name, len);
    }
    chan_join_server_side(cl);
    ws_answered(cl->ws);
}

static void chan_check_session(struct chan_client *cl);

static void
chan_session_answer(void *arg, enum store_status st, const struct session *s)
{
    struct chan_client *cl = arg;
    cl->checking = false;
    if (!ws_release(cl->ws) || ws_is_closed(cl->ws)) return;
    if (st == STORE_NOT_FOUND) {
        ws_close_with(cl->ws, WS_CLOSE_SESSION_ENDED, "session expired");
    } else if (st != STORE_OK) {
        cl->recheck = true; /* the store could not say: the next second asks again */
    } else {
        chan_apply_session(cl, s);
        if (cl->recheck) /* it changed again while we asked */
            chan_check_session(cl);
    }
}

/* Ask the store for cl's session (once at a time: a change meanwhile asks again). */
static void
chan_check_session(struct chan_client *cl)
{
    if (cl->checking) {
        cl->recheck = true;
        return;
    }
    cl->checking = true;
    cl->recheck = false;
    ws_hold(cl->ws);
    store_get(cw_of(cl)->w->store, cl->id, (int64_t)time(NULL), chan_session_answer, cl);
}

static void
chan_changed_matching(struct chan_worker *cw, const char *id)
{
    for (struct chan_client *cl = cw->list; cl != NULL; cl = cl->next)
        if (strcmp(cl->id, id) == 0 && ws_is_open(cl->ws)) chan_check_session(cl);
}

void
chan_session_changed(struct worker *w, const char *id)
{
    chan_changed_matching(w->chan, id);
    chan_end_broadcast(w->chan, BUS_SESSION_CHANGED, id);
}

/* Sessions expire without anyone deleting them: once a second, the sockets whose session
 * is past its expiry at connect time ask the store whether it was extended since (and so
 * do those whose session changed when the store could not be asked). The same second
 * renews what the roster keeps alive (the worker's Redis lease). */
static void
chan_expiry_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct chan_worker *cw = container_of(t, struct chan_worker, expiry);
    int64_t now = (int64_t)time(NULL);
    roster_tick(cw->roster);
    if (cw->history != NULL && history_sweep(cw->history, chan_now_ms(), CHAN_HISTORY_SWEEP) < 0)
        log_warnx("history: %s", history_last_error(cw->history));
    for (struct chan_client *cl = cw->list; cl != NULL; cl = cl->next)
        if ((cl->expires_at <= now || cl->recheck) && !cl->checking && ws_is_open(cl->ws))
            chan_check_session(cl);
}

/* ---- messages from other workers and instances ---- */

/* A session's end or change (type, then the id or the user) from another worker or
 * instance. */
static void
chan_end_message(struct chan_worker *cw, int type, const char *p, size_t len)
{
    char what[SESSION_USER_MAX + 1];
    if (len > SESSION_USER_MAX) return;
    memcpy(what, p, len);
    what[len] = '\0';
    if (type == BUS_SESSION_CHANGED)
        chan_changed_matching(cw, what);
    else
        chan_end_matching(cw, type == BUS_SESSION_END ? what : NULL,
                          type == BUS_USER_END ? what : NULL);
}

static void
chan_bus_message(void *arg, const void *msg, size_t len)
{
    struct chan_worker *cw = arg;
    const char *p = msg;
    if (len < 1) return;
    if ((p[0] == BUS_PUBLISH || p[0] == BUS_PUBLISH_AT) && len >= 3) {
        size_t clen = (size_t)(uint8_t)p[1] << 8 | (uint8_t)p[2];
        size_t numbered = p[0] == BUS_PUBLISH_AT ? 8 : 0, text = 3 + clen + numbered;
        uint64_t offset = 0;
        if (text > len) return;
        for (size_t i = 0; i < numbered; i++)
            offset = offset << 8 | (uint8_t)p[3 + clen + i];
        if (numbered == 0)
            chan_fanout(cw, p + 3, clen, p + text, len - text);
        else if (cw->history != NULL)
            chan_deliver(cw, p + 3, clen, offset, p + text, len - text);
    } else if (p[0] == BUS_SESSION_END || p[0] == BUS_USER_END || p[0] == BUS_SESSION_CHANGED) {
        chan_end_message(cw, p[0], p + 1, len - 1);
    }
}

/* From Redis: every worker of every instance hears it; our own instance's messages have
 * reached us over the bus already. */
static void
chan_redis_message(void *arg, const char *name, size_t len, const char *msg, size_t msg_len)
{
    struct chan_worker *cw = arg;
    if (msg_len < 17 || memcmp(msg, cw->nonce, 16) == 0) return;
    int type = (unsigned char)msg[16];
    const char *p = msg + 17;
    size_t plen = msg_len - 17;
    bool control = len == strlen(CHAN_REDIS_CONTROL) && memcmp(name, CHAN_REDIS_CONTROL, len) == 0;
    if (control && (type == BUS_SESSION_END || type == BUS_USER_END || type == BUS_SESSION_CHANGED))
        chan_end_message(cw, type, p, plen);
    else if (!control && type == BUS_PUBLISH && ns_channel_ok(name, len))
        chan_fanout(cw, name, len, p, plen);
    else if (!control && type == BUS_PUBLISH_AT && memcmp(msg, CHAN_REDIS_ANYONE, 16) == 0)
        chan_rh_message(cw, name, len, p, plen);
}

static void
chan_resubscribe_one(void *arg, const char *name, size_t len)
{
    pubsub_subscribe(arg, name, len);
}

/* Redis forgot our subscriptions with the old connection: all of them again. (The
 * roster writes back its memberships, counts and lease itself, when the command
 * connection it writes on is back: see roster_redis.c.) */
static void
chan_redis_ready(void *arg)
{
    struct chan_worker *cw = arg;
    if (cw->roster != NULL) roster_tick(cw->roster);
    pubsub_subscribe(cw->ps, CHAN_REDIS_CONTROL, strlen(CHAN_REDIS_CONTROL));
    hub_each_channel(cw->hub, chan_resubscribe_one, cw->ps);
    chan_rh_resync(cw);
}

/* ---- the worker's side ---- */

static int
chan_open_links(struct chan_worker *cw, char *err, size_t errlen)
{
    struct worker *w = cw->w;
    char ns[64];
    snprintf(ns, sizeof ns, "sessiond/%llu", (unsigned long long)sb_get(&w->sb->master_pid));
    if (strcmp(w->conf->store, "redis") == 0 &&
        (chan_rh_init(err, errlen) < 0 ||
         (cw->ps = pubsub_open(w->loop, w->conf->redis_url, w->conf->redis_prefix,
                               secs_of_ms(w->conf->redis_timeout_ms), chan_redis_message,
                               chan_redis_ready, cw, err, errlen)) == NULL))
        return -1;
    struct roster_params rp = {
        .conf = w->conf, .slot = cw->slot, .base = (int)sb_get(&w->sb->roster_base),
        .pid = (unsigned)getpid(), .ps = cw->ps, .sb = w->sb};
    char path[sizeof w->conf->store_path + 16];
    if (strcmp(w->conf->store, "lmdb") == 0 &&
        (history_path(w->conf->store_path, path, sizeof path) < 0 ||
         (cw->history = history_open(path, (size_t)w->conf->history_max_bytes, err, errlen)) ==
             NULL))
        return -1;
    if ((cw->roster = roster_open(&rp, err, errlen)) == NULL ||
        (cw->bus = bus_open(w->loop, ns, cw->slot, chan_bus_message, cw, err, errlen)) == NULL)
        return -1;
    return 0;
}

int
chan_worker_start(struct worker *w, char *err, size_t errlen)
{
    struct chan_worker *cw = calloc(1, sizeof *cw);
    if (cw == NULL) {
        errf(err, errlen, "realtime: out of memory");
        return -1;
    }
    w->chan = cw;
    cw->w = w;
    cw->slot = (int)(w->slot - w->sb->slot);
    snprintf(cw->nonce, sizeof cw->nonce, "%016llx",
             (unsigned long long)sb_get(&w->sb->instance_nonce));
    if (getrandom(&cw->conn_key, sizeof cw->conn_key, 0) != sizeof cw->conn_key)
        cw->conn_key = chan_conn_mix((uint64_t)getpid() << 32 ^ (uint64_t)time(NULL));
    ev_timer_init(&cw->expiry, chan_expiry_check, CHAN_EXPIRY_CHECK, CHAN_EXPIRY_CHECK);
    chan_keep_init(cw);
    if ((cw->hub = hub_new()) == NULL || (cw->syncs = hub_new()) == NULL) {
        errf(err, errlen, "realtime: out of memory");
        chan_worker_stop(w);
        return -1;
    }
    if (chan_open_links(cw, err, errlen) < 0) {
        chan_worker_stop(w);
        return -1;
    }
    ev_timer_start(w->loop, &cw->expiry);
    return 0;
}

void
chan_worker_stop(struct worker *w)
{
    struct chan_worker *cw = w->chan;
    if (cw == NULL) return;
    ev_timer_stop(w->loop, &cw->expiry);
    chan_keep_stop(cw); /* what waits for the group commit is kept and sent */
    bus_close(cw->bus);
    pubsub_close(cw->ps); /* before the roster: it drops the roster's answers in flight */
    buf_free(&cw->redis);
    buf_free(&cw->members);
    roster_close(cw->roster);
    history_close(cw->history);
    chan_rh_free(cw);
    hub_free(cw->syncs);
    buf_free(&cw->gap);
    buf_free(&cw->replay);
    hub_free(cw->hub);
    for (size_t i = 0; i < ARRAY_LEN(cw->deflate); i++) {
        if (cw->deflate[i] != NULL) deflateEnd(cw->deflate[i]);
        free(cw->deflate[i]);
    }
    buf_free(&cw->frame);
    buf_free(&cw->zframe);
    buf_free(&cw->msg);
    buf_free(&cw->text);
    free(cw);
    w->chan = NULL;
}

bool
chan_pubsub_up(const struct worker *w)
{
    const struct chan_worker *cw = w->chan;
    if (cw == NULL || cw->ps == NULL) return true;
    struct pubsub_stats ps;
    pubsub_stats(cw->ps, &ps);
    return ps.subscribed;
}

void
chan_worker_stats(struct worker *w)
{
    struct chan_worker *cw = w->chan;
    struct bus_stats bs;
    bus_stats(cw->bus, &bs);
    sb_set(&w->slot->c.bus_dropped, bs.dropped);
    if (cw->ps != NULL) {
        struct pubsub_stats ps;
        pubsub_stats(cw->ps, &ps);
        sb_set(&w->slot->c.pubsub_dropped, ps.dropped);
    }
}
