#include "ws.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>
#include <zlib.h>

#include "api.h"
#include "bus.h"
#include "conn.h"
#include "http.h"
#include "hub.h"
#include "json_merge.h"
#include "log.h"
#include "pubsub.h"
#include "roster.h"
#include "store.h"
#include "token.h"
#include "util.h"
#include "worker.h"
#include "ws_proto.h"

#define WS_MAX_CHANNELS 256    /* channels one connection may be in */
#define WS_CLOSE_GRACE 2.0     /* how long we wait for the client's close frame */
#define WS_READ_BUF 65536
#define WS_DEFLATE_MIN 128     /* smaller pushes are not worth compressing */
#define WS_EXPIRY_CHECK 1.0    /* how often expired sessions' sockets are looked for */
#define WS_PRESENCE_MAX 10000  /* members listed by a presence answer */
#define WS_REDIS_CONTROL "~"   /* the Redis name of session ends: no channel is called so */

/* Messages between the workers of an instance, on the bus, and between instances, on
 * Redis (after the sending instance's nonce in hex). The first byte says what. */
enum {
    BUS_PUBLISH = 'P',     /* u16 channel length, channel, the pushed message's JSON */
    BUS_SESSION_END = 'S', /* the session id */
    BUS_USER_END = 'U',    /* the user */
};

enum ws_phase {
    WS_OPEN,
    WS_CLOSING, /* our close frame is queued or sent; waiting for the client's */
};

struct ws {
    struct conn *c;
    struct ws *prev, *next; /* in the worker's list */
    /* wslay's state, 8.8 KB of it: freed whenever it holds nothing (see ws_park) and
     * made again by ws_ctx when needed. */
    wslay_event_context_ptr ctx;
    uint64_t fed, framed;   /* bytes handed to wslay, and bytes of the frames it finished */
    uint64_t frame_bytes;   /* of the frame being received */
    bool in_frame, in_message;
    const uint8_t *in;      /* bytes being handed to wslay by ws_recv */
    size_t in_len;
    struct hub_member **subs;
    size_t nsubs, subs_cap;
    char id[SESSION_ID_LEN + 1];
    char user[SESSION_USER_MAX + 1];
    char conn_id[ROSTER_CONN_MAX + 1];
    int64_t expires_at;
    double tokens, debt;    /* the rate limit's buckets */
    ev_tstamp bucket_at;
    enum ws_phase phase;
    int deflate_bits;       /* 0: no permessage-deflate; else the window we compress with */
    bool awaiting_pong;
    bool checking;          /* a store lookup of its session is in flight */
    int pending;            /* answers in flight that hold this struct (see ws_release) */
    bool in_recv;           /* inside wslay_event_recv: ws_feed sends what is queued */
    bool doomed;            /* it fell too far behind: gets nothing more but a close */
    bool orphan;            /* its connection was freed while a lookup was in flight */
    bool broken;            /* a send failed: the reaper closes it */
    struct ws *doomed_next;
};

/* The worker's realtime state. */
struct ws_worker {
    struct worker *w;
    struct hub *hub;
    struct bus *bus;
    struct roster *roster;   /* the instance's connections and members */
    struct pubsub *ps;       /* with store redis: the other instances */
    char nonce[17];          /* this instance's, in hex, to skip our own Redis messages */
    char lease[48];          /* this worker's: nonce.slot.pid (see the roster on Redis) */
    char lease_prefix[128];  /* the Redis name of leases, before the lease: the scripts' */
    uint64_t dead_seen;      /* workers of the scoreboard's dead list already dealt with */
    struct buf redis;
    struct buf members;      /* a presence answer */
    int slot;
    struct ws *list;
    struct ws *doomed;
    ev_prepare reaper;       /* closes doomed connections, outside of any fan-out */
    ev_timer expiry;
    z_stream *deflate[16];   /* by window bits, made when first needed */
    z_stream inflate;
    bool inflate_ok;
    struct buf frame, zframe, msg, text;
    uint64_t seq;            /* for connection ids */
    uint8_t rbuf[WS_READ_BUF];
};

static struct ws_worker *
rt_of(const struct conn *c)
{
    return c->w->ws;
}

static struct ws *
ws_of(const struct conn *c)
{
    return c->proto_data;
}

/* ---- output ---- */

static void ws_doom(struct ws *ws);

/* Write what the connection's output holds; free the buffer once it is empty, so that an
 * idle connection holds no output memory. A failed send does not close the connection
 * here, since a fan-out may be walking a channel it is in: the reaper closes it. */
static void
ws_flush(struct conn *c)
{
    if (conn_write_all(c) < 0) {
        ws_of(c)->broken = true;
        ws_doom(ws_of(c));
    }
}

/* A reader that fell more than ws_max_queue behind gets nothing more but a close (1008),
 * queued behind what it has not read yet, and WS_CLOSE_GRACE to read it; then it is
 * reset. Not from inside a fan-out that walks the channel it is in: the reaper does it
 * before the loop sleeps. */
static void
ws_doom(struct ws *ws)
{
    if (ws->doomed)
        return;
    struct ws_worker *rt = rt_of(ws->c);
    ws->doomed = true;
    ws->doomed_next = rt->doomed;
    rt->doomed = ws;
    if (!ws->broken)
        sb_add(&ws->c->w->slot->c.ws_slow_closed, 1);
    if (!ev_is_active(&rt->reaper))
        ev_prepare_start(ws->c->w->loop, &rt->reaper);
}

/* Queue bytes for the client, unless that would put it over ws_max_queue. */
static int
ws_append(struct ws *ws, const void *p, size_t len)
{
    struct conn *c = ws->c;
    if (ws->doomed || c->closed)
        return -1;
    if (buf_used(&c->out) + len > (size_t)c->w->conf->ws_max_queue) {
        ws_doom(ws);
        return -1;
    }
    return buf_append(&c->out, p, len);
}

/* Frame a server message (unmasked) into out: FIN, the opcode, RSV1 when compressed. */
static int
ws_frame(struct buf *out, int opcode, bool rsv1, const void *p, size_t len)
{
    uint8_t h[10];
    size_t n = 2;
    h[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    out->off = out->len = 0;
    if (buf_append(out, h, n) < 0 || buf_append(out, p, len) < 0)
        return -1;
    return 0;
}

/* ---- wslay's callbacks ---- */

static ssize_t
ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct ws *ws = user;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    ws->fed += n;
    return (ssize_t)n;
}

/* Frame boundaries, so that ws_park knows when wslay holds nothing half-received. A
 * client's frame is its header (2 bytes, 2 or 8 more for the length, 4 of mask) and its
 * payload; wslay refuses unmasked or non-minimal ones before this is called. */
static void
ws_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
               void *user)
{
    (void)ctx;
    struct ws *ws = user;
    uint64_t len = arg->payload_length;
    ws->frame_bytes = 2 + (len >= 65536 ? 8 : len >= 126 ? 2 : 0) + 4 + len;
    ws->in_frame = true;
    if (!wslay_is_ctrl_frame(arg->opcode))
        ws->in_message = !arg->fin;
}

static void
ws_frame_end(wslay_event_context_ptr ctx, void *user)
{
    (void)ctx;
    struct ws *ws = user;
    ws->framed += ws->frame_bytes;
    ws->in_frame = false;
}

static ssize_t
ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    struct ws *ws = user;
    if (ws_append(ws, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_on_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                          void *user);

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_frame_recv_start_callback = ws_frame_start,
    .on_frame_recv_end_callback = ws_frame_end,
    .on_msg_recv_callback = ws_on_message,
};

/* wslay's context, made if the connection was parked. NULL only without memory. */
static wslay_event_context_ptr
ws_ctx(struct ws *ws)
{
    if (ws->ctx != NULL)
        return ws->ctx;
    if (wslay_event_context_server_init(&ws->ctx, &ws_callbacks, ws) != 0) {
        ws->ctx = NULL;
        return NULL;
    }
    const struct conf *cf = ws->c->w->conf;
    wslay_event_config_set_max_recv_msg_length(ws->ctx, (uint64_t)cf->ws_max_message_bytes);
    if (ws->deflate_bits > 0)
        wslay_event_config_set_allowed_rsv_bits(ws->ctx, WSLAY_RSV1_BIT);
    ws->fed = ws->framed = 0;
    return ws->ctx;
}

/* Free wslay's context as soon as it holds nothing: no byte of an unfinished frame or
 * message, nothing queued to send, no close under way. Most WebSockets are idle most of
 * the time, and the context is most of what an idle one would cost; made again for the
 * next read, it lives as long as the handling of one read, so the contexts of thousands
 * of connections never sit interleaved with longer-lived memory. */
static bool
ws_park(struct ws *ws)
{
    wslay_event_context_ptr ctx = ws->ctx;
    if (ctx == NULL || ws->phase != WS_OPEN || ws->in_frame ||
        ws->in_message || ws->fed != ws->framed || wslay_event_get_queued_msg_count(ctx) > 0 ||
        wslay_event_get_close_received(ctx) || wslay_event_get_close_sent(ctx))
        return false;
    wslay_event_context_free(ctx);
    ws->ctx = NULL;
    return true;
}

/* Let wslay write what it has queued (replies, pongs, a close), then send it. A close
 * handshake that is complete both ways ends the connection. */
static void
ws_pump(struct ws *ws)
{
    struct conn *c = ws->c;
    if (c->closed || ws->doomed)
        return;
    if (ws->ctx == NULL) { /* parked: wslay has nothing to say */
        ws_flush(c);
        return;
    }
    if (wslay_event_send(ws->ctx) != 0) {
        conn_close(c);
        return;
    }
    ws_flush(c);
    if (!c->closed && !wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx) &&
        buf_used(&c->out) == 0)
        conn_close(c);
}

/* Start the close handshake with code; the client has WS_CLOSE_GRACE to answer. */
static void
ws_close_with(struct ws *ws, int code, const char *reason)
{
    if (ws->phase == WS_CLOSING || ws->c->closed)
        return;
    if (ws_ctx(ws) == NULL) {
        conn_close(ws->c);
        return;
    }
    ws->phase = WS_CLOSING;
    wslay_event_queue_close(ws->ctx, (uint16_t)code, (const uint8_t *)reason, strlen(reason));
    conn_set_timer(ws->c, WS_CLOSE_GRACE);
    ws_pump(ws);
}

/* ---- replies ---- */

/* Queue a text message for this connection (a reply: not compressed). */
static void
ws_send_text(struct ws *ws, const char *p, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)p, len};
    if (ws_ctx(ws) == NULL || wslay_event_queue_msg(ws->ctx, &m) != 0)
        ws_doom(ws);
}

/* {"op": op, "id": id, ...rest}: rest is "" or starts with a comma. */
static void
ws_reply(struct ws *ws, const char *op, const json_t *id, const char *rest)
{
    struct buf *t = &rt_of(ws->c)->text;
    t->off = t->len = 0;
    buf_puts(t, "{\"op\":\"");
    buf_puts(t, op);
    buf_puts(t, "\"");
    if (id != NULL) {
        char *s = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
        if (s != NULL) {
            buf_puts(t, ",\"id\":");
            buf_puts(t, s);
            free(s);
        }
    }
    buf_puts(t, rest);
    buf_puts(t, "}");
    if (t->p != NULL)
        ws_send_text(ws, buf_data(t), buf_used(t));
}

static void
ws_error(struct ws *ws, const json_t *id, const char *code, const char *message)
{
    char rest[512];
    snprintf(rest, sizeof rest, ",\"error\":{\"code\":\"%s\",\"message\":\"%s\"}", code, message);
    ws_reply(ws, "error", id, rest);
}

/* ---- channels ---- */

static struct roster_member ws_member(const struct ws *ws);
static bool ws_release(struct ws *ws);
static void ws_free(struct ws *ws);
static void ws_redis_forget(struct ws_worker *rt, const char *conn_id, const char *user);
static void ws_accept(struct request *r, const struct session *s, const char *conn_id, int max);
static bool ws_redis_join(struct ws *ws, const char *channel, size_t len, size_t members,
                          const json_t *id);
static int ws_redis_member(struct ws *ws, bool join, const char *channel, size_t len,
                           pubsub_reply_cb cb, void *arg);
static void ws_redis_ignore(void *arg, const struct redisReply *reply);
static void ws_presence_rt(struct ws_worker *rt, const char *channel, size_t len,
                           ws_presence_cb cb, void *arg);
static void ws_presence_event(struct ws *ws, const char *op, const char *channel, size_t len,
                              size_t members);

static ssize_t
ws_find_sub(const struct ws *ws, const char *name, size_t len)
{
    for (size_t i = 0; i < ws->nsubs; i++) {
        size_t n;
        const char *ch = hub_member_channel(ws->subs[i], &n);
        if (n == len && memcmp(ch, name, len) == 0)
            return (ssize_t)i;
    }
    return -1;
}

static void ws_reply(struct ws *ws, const char *op, const json_t *id, const char *rest);

/* Join a channel, answer the client, then tell the channel (the answer comes first). */
static int
ws_subscribe(struct ws *ws, const char *name, size_t len, const json_t *id)
{
    if (ws_find_sub(ws, name, len) >= 0) {
        ws_reply(ws, "ok", id, "");
        return 0;
    }
    if (ws->nsubs == ws->subs_cap) {
        size_t cap = ws->subs_cap ? ws->subs_cap * 2 : 2;
        /* An array of pointers. NOLINTNEXTLINE(bugprone-sizeof-expression) */
        struct hub_member **v = realloc(ws->subs, cap * sizeof *v);
        if (v == NULL)
            return -1;
        ws->subs = v;
        ws->subs_cap = cap;
    }
    struct ws_worker *rt = rt_of(ws->c);
    struct roster_member rm = ws_member(ws);
    size_t members;
    if (roster_join(rt->roster, rt->slot, name, len, &rm, &members) < 0)
        return -1;
    struct hub_member *m = hub_join(rt->hub, name, len, ws);
    if (m == NULL) {
        roster_leave(rt->roster, rt->slot, name, len, &rm, &members);
        return -1;
    }
    size_t here;
    if (rt->ps != NULL && hub_members(rt->hub, name, len, &here) != NULL && here == 1)
        pubsub_subscribe(rt->ps, name, len); /* the first here: hear the other instances */
    ws->subs[ws->nsubs++] = m;
    if (!ws_redis_join(ws, name, len, members, id)) {
        ws_reply(ws, "ok", id, "");
        ws_presence_event(ws, "join", name, len, members);
    }
    return 0;
}

/* Leave the i-th channel of ws; when asked by the client (reply), answer it before the
 * channel is told. */
static void
ws_leave(struct ws *ws, size_t i, bool reply, const json_t *id)
{
    struct ws_worker *rt = rt_of(ws->c);
    struct roster_member rm = ws_member(ws);
    size_t len, members = 0;
    const char *ch = hub_member_channel(ws->subs[i], &len);
    char name[HUB_CHANNEL_MAX];
    memcpy(name, ch, len);
    hub_leave(rt->hub, ws->subs[i]);
    ws->subs[i] = ws->subs[--ws->nsubs];
    size_t here;
    hub_members(rt->hub, name, len, &here);
    if (rt->ps != NULL && here == 0)
        pubsub_unsubscribe(rt->ps, name, len);
    int rc = roster_leave(rt->roster, rt->slot, name, len, &rm, &members);
    ws_redis_member(ws, false, name, len, ws_redis_ignore, NULL);
    if (reply)
        ws_reply(ws, "ok", id, "");
    if (rc == 0)
        ws_presence_event(ws, "leave", name, len, members + 1);
}

static void
ws_unsubscribe(struct ws *ws, const char *name, size_t len, const json_t *id)
{
    ssize_t i = ws_find_sub(ws, name, len);
    if (i >= 0)
        ws_leave(ws, (size_t)i, true, id);
    else
        ws_reply(ws, "ok", id, "");
}

/* The compressor for a window, made when first needed. */
static z_stream *
ws_deflater(struct ws_worker *rt, int bits)
{
    int i = bits >= 8 && bits <= 15 ? bits : 15;
    if (rt->deflate[i] == NULL) {
        z_stream *z = calloc(1, sizeof *z);
        if (z == NULL || ws_proto_deflate_init(z, i) < 0) {
            free(z);
            return NULL;
        }
        rt->deflate[i] = z;
    }
    return rt->deflate[i];
}

/* Send a pushed message to this worker's subscribers of a channel: framed once, and
 * compressed once per window for those that negotiated compression. */
static size_t
ws_fanout(struct ws_worker *rt, const char *channel, size_t len, const char *text,
          size_t text_len)
{
    size_t n;
    struct hub_member *const *m = hub_members(rt->hub, channel, len, &n);
    if (n == 0)
        return 0;
    if (ws_frame(&rt->frame, WSLAY_TEXT_FRAME, false, text, text_len) < 0)
        return 0;
    int zbits = -1; /* the window rt->zframe holds, if any */
    size_t reached = 0;
    for (size_t i = 0; i < n; i++) {
        struct ws *ws = hub_member_sub(m[i]);
        const struct buf *f = &rt->frame;
        if (ws->deflate_bits > 0 && text_len >= WS_DEFLATE_MIN) {
            if (zbits != ws->deflate_bits) {
                z_stream *z = ws_deflater(rt, ws->deflate_bits);
                rt->msg.off = rt->msg.len = 0;
                zbits = z != NULL && ws_proto_deflate(z, ws->deflate_bits, text, text_len,
                                                      &rt->msg) == 0 &&
                                ws_frame(&rt->zframe, WSLAY_TEXT_FRAME, true,
                                         buf_data(&rt->msg), buf_used(&rt->msg)) == 0
                            ? ws->deflate_bits
                            : -1;
            }
            if (zbits == ws->deflate_bits)
                f = &rt->zframe;
        }
        /* Replies wslay still holds go first: a publisher gets its "ok" before its message. */
        if (ws->ctx != NULL && wslay_event_get_queued_msg_count(ws->ctx) > 0 &&
            wslay_event_send(ws->ctx) != 0)
            ws_doom(ws);
        if (ws->phase == WS_OPEN && ws_append(ws, buf_data(f), buf_used(f)) == 0) {
            ws_flush(ws->c);
            reached++;
        }
    }
    sb_add(&rt->w->slot->c.ws_out, reached);
    return reached;
}

/* {"op":"message","channel":C,"data":D,"from":U}: channel and user are of a safe
 * alphabet, so they need no escaping. */
static int
ws_message_text(struct buf *t, const char *channel, size_t len, const char *data,
                size_t data_len, const char *from)
{
    t->off = t->len = 0;
    buf_puts(t, "{\"op\":\"message\",\"channel\":\"");
    buf_append(t, channel, len);
    buf_puts(t, "\",\"data\":");
    buf_append(t, data, data_len);
    buf_puts(t, ",\"from\":\"");
    buf_puts(t, from);
    return buf_puts(t, "\"}");
}

/* To the other instances: nonce, type, payload, under name on Redis. */
static void
ws_redis_send(struct ws_worker *rt, const char *name, size_t len, int type, const void *p,
              size_t plen)
{
    if (rt->ps == NULL)
        return;
    char t = (char)type;
    struct buf *b = &rt->redis;
    b->off = b->len = 0;
    if (buf_append(b, rt->nonce, 16) == 0 && buf_append(b, &t, 1) == 0 &&
        buf_append(b, p, plen) == 0)
        pubsub_publish(rt->ps, name, len, buf_data(b), buf_used(b));
}

/* Push text (in rt->text) to a channel's subscribers on every worker of every instance. */
static size_t
ws_push(struct worker *w, const char *channel, size_t len)
{
    struct ws_worker *rt = w->ws;
    struct buf *t = &rt->text;
    /* The bus copy: type, channel length and name, then the text. */
    struct buf *b = &rt->msg;
    uint8_t head[3] = {BUS_PUBLISH, (uint8_t)(len >> 8), (uint8_t)len};
    b->off = b->len = 0;
    if (buf_append(b, head, 3) == 0 && buf_append(b, channel, len) == 0 &&
        buf_append(b, buf_data(t), buf_used(t)) == 0 && buf_used(b) <= BUS_MAX_MSG)
        bus_broadcast(rt->bus, w->sb, buf_data(b), buf_used(b));
    ws_redis_send(rt, channel, len, BUS_PUBLISH, buf_data(t), buf_used(t));
    /* ws_fanout uses msg for compression: the bus copy has been sent by now. */
    return ws_fanout(rt, channel, len, buf_data(t), buf_used(t));
}

size_t
ws_publish(struct worker *w, const char *channel, size_t len, const char *data,
           size_t data_len, const char *from)
{
    if (ws_message_text(&w->ws->text, channel, len, data, data_len, from) < 0)
        return 0;
    ws_push(w, channel, len);
    return roster_count(w->ws->roster, channel, len);
}

/* {"op":"join"|"leave","channel":C,"user":U}, while the channel has at most
 * presence_events_max members: beyond, they would cost members squared messages. */
static void
ws_presence_event(struct ws *ws, const char *op, const char *channel, size_t len, size_t members)
{
    struct worker *w = ws->c->w;
    if (members > (size_t)w->conf->presence_events_max)
        return;
    struct buf *t = &w->ws->text;
    t->off = t->len = 0;
    buf_puts(t, "{\"op\":\"");
    buf_puts(t, op);
    buf_puts(t, "\",\"channel\":\"");
    buf_append(t, channel, len);
    buf_puts(t, "\",\"user\":\"");
    buf_puts(t, ws->user);
    if (buf_puts(t, "\"}") == 0)
        ws_push(w, channel, len);
}

static struct roster_member
ws_member(const struct ws *ws)
{
    struct roster_member m;
    memcpy(m.conn, ws->conn_id, sizeof m.conn);
    memcpy(m.user, ws->user, sizeof m.user);
    snprintf(m.session, sizeof m.session, "%s", ws->id);
    return m;
}

/* ---- the client's operations ---- */

/* Whether the client may send one more message now: a token bucket of ws_rate_limit per
 * second with a burst of as many. Refused messages fill a second bucket that drains at
 * the same rate; a client that keeps it full has ignored the error replies for a second
 * and is closed. */
static bool
ws_rate_ok(struct ws *ws, bool *close)
{
    int rate = ws->c->w->conf->ws_rate_limit;
    *close = false;
    if (rate == 0)
        return true;
    ev_tstamp now = ev_now(ws->c->w->loop);
    double refill = (now - ws->bucket_at) * rate;
    ws->bucket_at = now;
    ws->tokens = ws->tokens + refill > rate ? rate : ws->tokens + refill;
    ws->debt = ws->debt - refill < 0 ? 0 : ws->debt - refill;
    if (ws->tokens >= 1) {
        ws->tokens -= 1;
        return true;
    }
    ws->debt += 1;
    *close = ws->debt > rate;
    return false;
}

static const char *
ws_channel_arg(struct ws *ws, json_t *j, const json_t *id, size_t *len)
{
    json_t *ch = json_object_get(j, "channel");
    if (!json_is_string(ch) || !hub_channel_ok(json_string_value(ch), json_string_length(ch))) {
        ws_error(ws, id, "bad_request",
                 "\\\"channel\\\" must be 1-128 characters of A-Z a-z 0-9 and _ . : @ -");
        return NULL;
    }
    *len = json_string_length(ch);
    return json_string_value(ch);
}

static void
ws_op_publish(struct ws *ws, json_t *j, const json_t *id, const char *channel, size_t len)
{
    struct worker *w = ws->c->w;
    if (!w->conf->client_publish) {
        ws_error(ws, id, "forbidden", "Publishing is for the API only here (client_publish off).");
        return;
    }
    json_t *data = json_object_get(j, "data");
    if (data == NULL) {
        ws_error(ws, id, "bad_request", "\\\"data\\\" is required.");
        return;
    }
    char *d;
    size_t dlen;
    if (json_merge_dump(data, (size_t)w->conf->ws_max_message_bytes, &d, &dlen) != 0) {
        ws_error(ws, id, "too_big", "\\\"data\\\" is too large.");
        return;
    }
    ws_reply(ws, "ok", id, ""); /* before the message, which the publisher may also get */
    ws_publish(w, channel, len, d, dlen, ws->user);
    free(d);
}

/* A presence op waits for its answer holding the connection (ws->pending). */
struct ws_presence_op {
    struct ws *ws;
    json_t *id;
};

static void
ws_presence_op_answer(void *arg, const char *json, size_t len)
{
    struct ws_presence_op *op = arg;
    struct ws *ws = op->ws;
    if (ws_release(ws) && !ws->c->closed) {
        struct buf *b = &rt_of(ws->c)->msg;
        b->off = b->len = 0;
        buf_puts(b, ",\"members\":");
        if (json == NULL || buf_append(b, json, len) < 0 || buf_append(b, "", 1) < 0)
            ws_error(ws, op->id, "internal", "Presence is unavailable.");
        else
            ws_reply(ws, "ok", op->id, buf_data(b));
        if (!ws->in_recv) /* an answer that came later: nobody else will send it */
            ws_pump(ws);
    }
    json_decref(op->id);
    free(op);
}

static void
ws_op_presence(struct ws *ws, const json_t *id, const char *channel, size_t len)
{
    struct ws_presence_op *op = malloc(sizeof *op);
    if (op == NULL) {
        ws_error(ws, id, "internal", "Out of memory.");
        return;
    }
    op->ws = ws;
    op->id = id != NULL ? json_deep_copy(id) : NULL;
    ws->pending++;
    ws_presence_rt(rt_of(ws->c), channel, len, ws_presence_op_answer, op);
}

static void
ws_dispatch(struct ws *ws, json_t *j)
{
    const json_t *id = json_object_get(j, "id");
    const char *op = json_string_value(json_object_get(j, "op"));
    if (op == NULL) {
        ws_error(ws, id, "bad_request", "A message needs an \\\"op\\\".");
        return;
    }
    if (strcmp(op, "ping") == 0) {
        ws_reply(ws, "pong", id, "");
        return;
    }
    size_t len;
    const char *channel;
    bool known = strcmp(op, "subscribe") == 0 || strcmp(op, "unsubscribe") == 0 ||
                 strcmp(op, "publish") == 0 || strcmp(op, "presence") == 0;
    if (!known) {
        ws_error(ws, id, "unknown_op", "op must be subscribe, unsubscribe, publish, presence "
                                       "or ping.");
        return;
    }
    if ((channel = ws_channel_arg(ws, j, id, &len)) == NULL)
        return;
    if (strcmp(op, "subscribe") == 0) {
        if (ws->nsubs >= WS_MAX_CHANNELS && ws_find_sub(ws, channel, len) < 0)
            ws_error(ws, id, "too_many_channels", "A connection may be in 256 channels.");
        else if (ws_subscribe(ws, channel, len, id) < 0)
            ws_error(ws, id, "internal", "Out of memory.");
    } else if (strcmp(op, "unsubscribe") == 0) {
        ws_unsubscribe(ws, channel, len, id);
    } else if (strcmp(op, "publish") == 0) {
        ws_op_publish(ws, j, id, channel, len);
    } else {
        ws_op_presence(ws, id, channel, len);
    }
}

static void
ws_text(struct ws *ws, const uint8_t *p, size_t len)
{
    bool close;
    if (!ws_rate_ok(ws, &close)) {
        if (close)
            ws_close_with(ws, WS_CLOSE_POLICY, "rate limit");
        else
            ws_error(ws, NULL, "rate_limited", "Too many messages: slow down (ws_rate_limit).");
        return;
    }
    if (!ws_proto_utf8_ok(p, len)) {
        ws_close_with(ws, WS_CLOSE_INVALID, "invalid UTF-8");
        return;
    }
    json_error_t e;
    json_t *j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(j)) {
        ws_error(ws, NULL, "bad_request", "A message must be a JSON object.");
    } else {
        ws_dispatch(ws, j);
    }
    json_decref(j);
}

static void
ws_on_message(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
              void *user)
{
    (void)ctx;
    struct ws *ws = user;
    struct ws_worker *rt = rt_of(ws->c);
    if (arg->opcode == WSLAY_PONG) {
        ws->awaiting_pong = false;
        return;
    }
    if (wslay_is_ctrl_frame(arg->opcode) || ws->phase != WS_OPEN)
        return; /* wslay answers pings and closes itself */
    sb_add(&ws->c->w->slot->c.ws_in, 1);
    if (arg->opcode != WSLAY_TEXT_FRAME) {
        ws_close_with(ws, WS_CLOSE_UNSUPPORTED, "text frames only");
        return;
    }
    const uint8_t *p = arg->msg;
    size_t len = arg->msg_length;
    if (arg->rsv & WSLAY_RSV1_BIT) {
        rt->msg.off = rt->msg.len = 0;
        int rc = ws_proto_inflate(&rt->inflate, p, len, (size_t)ws->c->w->conf->ws_max_message_bytes,
                                  &rt->msg);
        if (rc != 0) {
            ws_close_with(ws, rc == WS_PROTO_TOO_BIG ? WS_CLOSE_TOO_BIG : WS_CLOSE_INVALID,
                          rc == WS_PROTO_TOO_BIG ? "message too big" : "bad compressed data");
            return;
        }
        p = (const uint8_t *)buf_data(&rt->msg);
        len = buf_used(&rt->msg);
    }
    ws_text(ws, p, len);
}

/* ---- events from the connection ---- */

static void
ws_feed(struct ws *ws, const void *p, size_t len)
{
    ws->in = p;
    ws->in_len = len;
    ws->in_recv = true;
    int rc = ws_ctx(ws) == NULL ? -1 : wslay_event_recv(ws->ctx);
    ws->in_recv = false;
    if (rc != 0) {
        /* wslay refuses a malformed frame header (a length with its top bit set, a long
         * or fragmented control frame) this way, after queueing a close frame. Send what
         * is already said before closing: replies to earlier messages of this read, that
         * close frame, and the 101 itself when the frames came with the upgrade request,
         * which the client would otherwise never see. */
        if (ws->ctx != NULL && !ws->c->closed && !ws->doomed)
            wslay_event_send(ws->ctx);
        if (!ws->c->closed && !ws->doomed)
            conn_write_out(ws->c);
        conn_close(ws->c);
        return;
    }
    ws_pump(ws);
    if (!ws->c->closed)
        ws_park(ws);
}

static void
ws_on_readable(struct conn *c)
{
    struct ws_worker *rt = rt_of(c);
    ssize_t n = conn_recv(c, rt->rbuf, sizeof rt->rbuf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c); /* the client went away without a close frame */
        return;
    }
    ws_feed(ws_of(c), rt->rbuf, (size_t)n);
}

static void
ws_on_writable(struct conn *c)
{
    ws_flush(c);
    if (c->closed || ws_of(c)->phase != WS_CLOSING || buf_used(&c->out) > 0)
        return;
    if (ws_of(c)->doomed)
        conn_close(c); /* it read everything, our close frame included */
    else
        ws_pump(ws_of(c));
}

/* The heartbeat: a ping after ws_ping_interval; no pong by ws_pong_timeout ends it. The
 * same timer bounds the close handshake and starts a drain's close. */
static void
ws_on_timer(struct conn *c)
{
    struct ws *ws = ws_of(c);
    const struct conf *cf = c->w->conf;
    if (ws->phase == WS_CLOSING || ws->awaiting_pong) {
        /* An abortive close (RST) for a reader still behind: the kernel drops what it
         * queues for it at once, instead of keeping a socket buffer's worth for as long
         * as the reader takes. */
        if (buf_used(&c->out) > 0)
            conn_reset(c);
        else
            conn_close(c);
        return;
    }
    if (c->w->draining) {
        ws_close_with(ws, WS_CLOSE_GOING_AWAY, "server going away");
        return;
    }
    ws->awaiting_pong = true;
    struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
    if (ws_ctx(ws) == NULL || wslay_event_queue_msg(ws->ctx, &ping) != 0) {
        conn_close(c);
        return;
    }
    conn_set_timer(c, secs_of_ms(cf->ws_pong_timeout_ms));
    ws_pump(ws);
    if (!c->closed)
        ws_park(ws);
}

static void
ws_on_close(struct conn *c)
{
    struct ws *ws = ws_of(c);
    struct ws_worker *rt = rt_of(c);
    while (ws->nsubs > 0)
        ws_leave(ws, ws->nsubs - 1, false, NULL);
    roster_disconnect(rt->roster, rt->slot, ws->conn_id);
    ws_redis_forget(rt, ws->conn_id, ws->user);
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        rt->list = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    ws->prev = ws->next = NULL;
    for (struct ws **p = &rt->doomed; *p != NULL; p = &(*p)->doomed_next) {
        if (*p == ws) {
            *p = ws->doomed_next;
            break;
        }
    }
}

/* An answer that held ws (ws->pending) has come: false if the connection went away
 * meanwhile, and then ws is freed here. */
static bool
ws_release(struct ws *ws)
{
    ws->pending--;
    if (!ws->orphan)
        return true;
    if (ws->pending == 0) {
        ws->orphan = false;
        ws_free(ws);
    }
    return false;
}

static void
ws_free(struct ws *ws)
{
    if (ws == NULL)
        return;
    if (ws->pending > 0) { /* the last answer in flight frees it */
        ws->orphan = true;
        return;
    }
    if (ws->ctx != NULL)
        wslay_event_context_free(ws->ctx);
    free(ws->subs);
    free(ws);
}

static void
ws_drain(struct conn *c)
{
    const struct conf *cf = c->w->conf;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        /* Only spreads the closes, and only before the kernel's pool is ready: rand does.
         * NOLINTNEXTLINE(cert-msc30-c,cert-msc50-cpp) */
        r = (uint32_t)rand();
    conn_set_timer(c, secs_of_ms(cf->ws_drain_spread_ms) * (r / 4294967296.0));
}

/* ---- the roster over every instance, on Redis (store redis) ----
 *
 * Each worker mirrors its connections and memberships into Redis hashes under
 * redis_prefix "rt:": u:USER (conn -> lease) and m:CHANNEL (conn -> "lease user session"),
 * and renews its lease, rt:lease:NONCE.SLOT.PID, every second. A worker that dies (or a
 * whole instance) stops renewing it, and the scripts below drop its entries the next time
 * they meet them, WS_LEASE_MS later at most; the caller's own lease is renewed by the
 * same script, since it is alive by definition. Without Redis, both fall back to this
 * instance's roster. */

#define WS_LEASE_MS "6000" /* a whole instance that dies leaves presence this late */

/* KEYS[1] u:USER; ARGV lease prefix, conn, lease, max, lease ms. 1 admitted, 0 over max. */
static const char ws_admit_lua[] =
    "redis.call('SET', ARGV[1] .. ARGV[3], '1', 'PX', ARGV[5])\n"
    "local live, alive = 0, {}\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  local n = all[i + 1]\n"
    "  if alive[n] == nil then alive[n] = redis.call('EXISTS', ARGV[1] .. n) == 1 end\n"
    "  if alive[n] then live = live + 1 else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "end\n"
    "if live >= tonumber(ARGV[4]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
    "return 1\n";

/* KEYS[1] m:CHANNEL; ARGV lease prefix, lease, lease ms. {conn, "lease user session", ...}
 * of the members whose worker is alive. */
static const char ws_members_lua[] =
    "redis.call('SET', ARGV[1] .. ARGV[2], '1', 'PX', ARGV[3])\n"
    "local out, alive = {}, {}\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  local n = string.match(all[i + 1], '^(%S+)')\n"
    "  if n and alive[n] == nil then alive[n] = redis.call('EXISTS', ARGV[1] .. n) == 1 end\n"
    "  if n and alive[n] then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]\n"
    "  else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "end\n"
    "return out\n";

/* Our Redis key for kind ("u:", "m:", "lease:") and name. */
static size_t
ws_rkey(const struct ws_worker *rt, const char *kind, const char *name, size_t len, char *out,
        size_t cap)
{
    char k[8 + ROSTER_USER_MAX + ROSTER_CHANNEL_MAX];
    size_t n = strlen(kind);
    if (rt->ps == NULL || n + len > sizeof k)
        return 0;
    /* k is counted (n + len bytes), not a string.
     * NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
    memcpy(k, kind, n);
    memcpy(k + n, name, len);
    return pubsub_name(rt->ps, k, n + len, out, cap);
}

static void
ws_redis_ignore(void *arg, const struct redisReply *reply)
{
    (void)arg, (void)reply;
}

/* A command on a key of ours (argv[1], built here), answered to cb; -1 when it could not
 * be sent (no Redis, or not connected), and then cb is not called. */
static int
ws_redis_call(struct ws_worker *rt, pubsub_reply_cb cb, void *arg, const char *cmd,
              const char *kind, const char *name, size_t len, int nargs, const char **args)
{
    char key[600];
    const char *argv[6] = {cmd, key};
    size_t argvlen[6] = {strlen(cmd), ws_rkey(rt, kind, name, len, key, sizeof key)};
    if (rt->ps == NULL || argvlen[1] == 0 || nargs > 4)
        return -1;
    for (int i = 0; i < nargs; i++) {
        argv[2 + i] = args[i];
        argvlen[2 + i] = strlen(args[i]);
    }
    return pubsub_command(rt->ps, cb, arg, 2 + nargs, argv, argvlen);
}

/* A command whose answer nobody waits for. */
static void
ws_redis_do(struct ws_worker *rt, const char *cmd, const char *kind, const char *name,
            size_t len, int nargs, const char **args)
{
    (void)ws_redis_call(rt, ws_redis_ignore, NULL, cmd, kind, name, len, nargs, args);
}

static void
ws_redis_lease(struct ws_worker *rt)
{
    const char *args[] = {"1", "PX", WS_LEASE_MS};
    ws_redis_do(rt, "SET", "lease:", rt->lease, strlen(rt->lease), 3, args);
}

/* A worker of this instance that died will not renew its lease: end the lease now, not
 * WS_LEASE_MS later, so that its members leave presence at the next look. The master
 * notes the dead in the scoreboard; every worker ends their leases (a second DEL is no
 * harm). */
static void
ws_redis_end_dead_leases(struct ws_worker *rt)
{
    const struct scoreboard *sb = rt->w->sb;
    uint64_t n = __atomic_load_n(&sb->dead_count, __ATOMIC_ACQUIRE);
    if (n - rt->dead_seen > SB_DEAD_RING)
        rt->dead_seen = n - SB_DEAD_RING;
    for (; rt->dead_seen < n; rt->dead_seen++) {
        char lease[48];
        int len = snprintf(lease, sizeof lease, "%s.%d.%x", rt->nonce,
                           (int)sb_get(&sb->dead_slot[rt->dead_seen % SB_DEAD_RING]),
                           (unsigned)sb_get(&sb->dead_pid[rt->dead_seen % SB_DEAD_RING]));
        ws_redis_do(rt, "DEL", "lease:", lease, (size_t)len, 0, NULL);
    }
}

static void
ws_redis_forget(struct ws_worker *rt, const char *conn_id, const char *user)
{
    const char *args[] = {conn_id};
    ws_redis_do(rt, "HDEL", "u:", user, strlen(user), 1, args);
}

static int
ws_redis_member(struct ws *ws, bool join, const char *channel, size_t len, pubsub_reply_cb cb,
                void *arg)
{
    struct ws_worker *rt = rt_of(ws->c);
    if (rt->ps == NULL)
        return -1;
    char value[200];
    snprintf(value, sizeof value, "%s %s %s", rt->lease, ws->user, ws->id);
    const char *args[] = {ws->conn_id, value};
    return ws_redis_call(rt, cb, arg, join ? "HSET" : "HDEL", "m:", channel, len,
                         join ? 2 : 1, args);
}

/* A subscribe on Redis is answered, and announced to the channel, once Redis holds the
 * membership: a presence asked on any instance after the "ok" or the "join" lists this
 * connection (ws->pending holds it meanwhile). */
struct ws_join_op {
    struct ws *ws;
    json_t *id;
    size_t members; /* the channel's, for presence_events_max */
    size_t len;
    char channel[HUB_CHANNEL_MAX];
};

static void
ws_joined(void *arg, const struct redisReply *reply)
{
    (void)reply; /* a lost Redis degrades presence as everywhere; the subscription stands */
    struct ws_join_op *op = arg;
    struct ws *ws = op->ws;
    if (ws_release(ws) && !ws->c->closed) {
        ws_reply(ws, "ok", op->id, "");
        ws_presence_event(ws, "join", op->channel, op->len, op->members);
        if (!ws->in_recv) /* an answer that came later: nobody else will send it */
            ws_pump(ws);
    }
    json_decref(op->id);
    free(op);
}

/* Tell Redis of the subscription: true when the answer and the join event are left to
 * ws_joined, false when they are to be given now (no Redis, or it cannot be reached). */
static bool
ws_redis_join(struct ws *ws, const char *channel, size_t len, size_t members,
              const json_t *id)
{
    struct ws_join_op *op = rt_of(ws->c)->ps != NULL && len <= sizeof op->channel
                                ? malloc(sizeof *op)
                                : NULL;
    if (op == NULL) {
        ws_redis_member(ws, true, channel, len, ws_redis_ignore, NULL);
        return false;
    }
    *op = (struct ws_join_op){.ws = ws, .members = members, .len = len};
    memcpy(op->channel, channel, len);
    op->id = id != NULL ? json_deep_copy(id) : NULL;
    if (ws_redis_member(ws, true, channel, len, ws_joined, op) < 0) {
        json_decref(op->id);
        free(op);
        return false;
    }
    ws->pending++;
    return true;
}

/* EVAL script with its one key and args. */
static int
ws_redis_eval(struct ws_worker *rt, pubsub_reply_cb cb, void *arg, const char *script,
              const char *kind, const char *name, size_t len, int nargs, const char **args)
{
    char key[600];
    const char *argv[10] = {"EVAL", script, "1", key};
    size_t argvlen[10] = {4, strlen(script), 1, ws_rkey(rt, kind, name, len, key, sizeof key)};
    if (argvlen[3] == 0 || nargs > 6)
        return -1;
    for (int i = 0; i < nargs; i++) {
        argv[4 + i] = args[i];
        argvlen[4 + i] = strlen(args[i]);
    }
    return pubsub_command(rt->ps, cb, arg, 4 + nargs, argv, argvlen);
}

/* An upgrade waiting for Redis to count the user's connections on every instance. */
struct ws_admission {
    struct request *r;
    struct session s; /* its data pointer is not kept */
    char conn_id[ROSTER_CONN_MAX + 1];
};

static void
ws_admitted(void *arg, const struct redisReply *reply)
{
    struct ws_admission *a = arg;
    struct request *r = a->r;
    struct ws_worker *rt = rt_of(r->conn);
    int max = r->conn->w->conf->max_connections_per_user;
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        http_error_with(r, 429, "Retry-After: 5\r\n", "too_many_connections",
                        "The user holds max_connections_per_user WebSockets already.");
    } else if (r->conn->closed) {
        ws_redis_forget(rt, a->conn_id, a->s.user);
        http_error(r, 503, NULL, "The client left."); /* only releases the request */
    } else {
        /* Admitted over every instance, or Redis could not say: then this instance's
         * count is all there is to go by. */
        bool counted = reply != NULL && reply->type == REDIS_REPLY_INTEGER;
        ws_accept(r, &a->s, a->conn_id, counted ? INT_MAX : max);
    }
    free(a);
}

/* The connection's id says where it lives: slot, process, and a count. */
static void
ws_admit(struct request *r, const struct session *s)
{
    struct ws_worker *rt = rt_of(r->conn);
    char conn_id[ROSTER_CONN_MAX + 1], max[16];
    snprintf(conn_id, sizeof conn_id, "%d.%x.%llx", rt->slot, (unsigned)getpid(),
             (unsigned long long)++rt->seq);
    int limit = r->conn->w->conf->max_connections_per_user;
    struct ws_admission *a = rt->ps != NULL ? malloc(sizeof *a) : NULL;
    if (a != NULL) {
        snprintf(max, sizeof max, "%d", limit);
        *a = (struct ws_admission){.r = r, .s = *s};
        a->s.data = NULL;
        a->s.data_len = 0;
        memcpy(a->conn_id, conn_id, sizeof conn_id);
        const char *args[] = {rt->lease_prefix, conn_id, rt->lease, max, WS_LEASE_MS};
        if (ws_redis_eval(rt, ws_admitted, a, ws_admit_lua, "u:", s->user,
                                   strlen(s->user), 5, args) == 0)
            return;
        free(a);
    }
    ws_accept(r, s, conn_id, limit);
}


struct ws_presence_call {
    struct ws_worker *rt;
    ws_presence_cb cb;
    void *arg;
    char channel[HUB_CHANNEL_MAX];
    size_t len;
};

static void
ws_member_json(void *arg, const struct roster_member *m)
{
    struct buf *b = arg;
    buf_printf(b, "%s{\"user\":\"%s\",\"session\":\"%s\",\"conn\":\"%s\"}",
               buf_data(b)[buf_used(b) - 1] == '[' ? "" : ",", m->user, m->session, m->conn);
}

/* This instance's members, from its roster. */
static void
ws_presence_local(struct ws_worker *rt, const char *channel, size_t len, ws_presence_cb cb,
                  void *arg)
{
    struct buf *b = &rt->members;
    b->off = b->len = 0;
    buf_puts(b, "[");
    int n = roster_members(rt->roster, channel, len, WS_PRESENCE_MAX, ws_member_json, b);
    if (buf_puts(b, "]") < 0 || n < 0)
        cb(arg, NULL, 0);
    else
        cb(arg, buf_data(b), buf_used(b));
}

static void
ws_presence_answer(void *arg, const struct redisReply *reply)
{
    struct ws_presence_call *call = arg;
    struct ws_worker *rt = call->rt;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ws_presence_local(rt, call->channel, call->len, call->cb, call->arg);
        free(call);
        return;
    }
    struct buf *b = &rt->members;
    b->off = b->len = 0;
    buf_puts(b, "[");
    for (size_t i = 0; i + 1 < reply->elements && i / 2 < WS_PRESENCE_MAX; i += 2) {
        const struct redisReply *c = reply->element[i], *v = reply->element[i + 1];
        char lease[48], user[ROSTER_USER_MAX + 1], session[ROSTER_SESSION_MAX + 1];
        if (c->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            c->len > ROSTER_CONN_MAX || v->len > 200 ||
            sscanf(v->str, "%47s %128s %32s", lease, user, session) != 3)
            continue;
        struct roster_member m;
        snprintf(m.conn, sizeof m.conn, "%.*s", (int)c->len, c->str);
        snprintf(m.user, sizeof m.user, "%s", user);
        snprintf(m.session, sizeof m.session, "%s", session);
        if (name_chars_ok(m.user, strlen(m.user), ROSTER_USER_MAX))
            ws_member_json(b, &m);
    }
    if (buf_puts(b, "]") < 0)
        call->cb(call->arg, NULL, 0);
    else
        call->cb(call->arg, buf_data(b), buf_used(b));
    free(call);
}

/* A channel's members over the instance, or over every instance with Redis; cb gets the
 * JSON array (NULL if none could be had), now or later. */
static void
ws_presence_rt(struct ws_worker *rt, const char *channel, size_t len, ws_presence_cb cb,
               void *arg)
{
    struct ws_presence_call *call = rt->ps != NULL ? malloc(sizeof *call) : NULL;
    if (call != NULL) {
        *call = (struct ws_presence_call){.rt = rt, .cb = cb, .arg = arg, .len = len};
        memcpy(call->channel, channel, len);
        const char *args[] = {rt->lease_prefix, rt->lease, WS_LEASE_MS};
        if (ws_redis_eval(rt, ws_presence_answer, call, ws_members_lua, "m:", channel,
                                   len, 3, args) == 0)
            return;
        free(call);
    }
    ws_presence_local(rt, channel, len, cb, arg);
}

void
ws_presence(struct worker *w, const char *channel, size_t len, ws_presence_cb cb, void *arg)
{
    ws_presence_rt(w->ws, channel, len, cb, arg);
}

/* ---- the upgrade ---- */

static void
ws_input(struct conn *c, const void *p, size_t len)
{
    ws_feed(ws_of(c), p, len);
}

static void
ws_free_data(void *data)
{
    ws_free(data);
}

static const struct conn_proto ws_conn_proto = {
    .read = ws_on_readable,
    .write = ws_on_writable,
    .timer = ws_on_timer,
    .drain = ws_drain,
    .input = ws_input,
    .close = ws_on_close,
    .free = ws_free_data,
};

/* The token of a WebSocket request: the Authorization header, or ?token= (browsers cannot
 * set headers on a WebSocket). Tokens are base64url, so the query needs no decoding. */
static struct http_str
ws_token(const struct request *r)
{
    struct http_str b = api_bearer(r);
    if (b.len > 0)
        return b;
    struct http_str q = r->http.query;
    for (size_t i = 0; i + 6 <= q.len; i++) {
        if ((i == 0 || q.p[i - 1] == '&') && memcmp(q.p + i, "token=", 6) == 0) {
            size_t j = i + 6;
            while (j < q.len && q.p[j] != '&')
                j++;
            return (struct http_str){q.p + i + 6, j - i - 6};
        }
    }
    return b;
}

static struct ws *
ws_new(struct conn *c, const struct session *s, const char *conn_id, int deflate_bits)
{
    struct ws_worker *rt = rt_of(c);
    struct ws *ws = calloc(1, sizeof *ws);
    if (ws == NULL)
        return NULL;
    const struct conf *cf = c->w->conf;
    ws->c = c;
    ws->deflate_bits = deflate_bits;
    memcpy(ws->id, s->id, sizeof ws->id);
    memcpy(ws->user, s->user, sizeof ws->user);
    ws->expires_at = s->expires_at;
    snprintf(ws->conn_id, sizeof ws->conn_id, "%s", conn_id);
    ws->tokens = cf->ws_rate_limit;
    ws->bucket_at = ev_now(c->w->loop);
    ws->next = rt->list;
    if (rt->list)
        rt->list->prev = ws;
    rt->list = ws;
    return ws;
}

/* Answer 101 and turn the connection into a WebSocket, unless the user holds max
 * connections of this instance already. */
static void
ws_accept(struct request *r, const struct session *s, const char *conn_id, int max)
{
    struct conn *c = r->conn;
    const struct http_str *key = http_header_get(&r->http, "Sec-WebSocket-Key");
    struct ws_proto_deflate d = {0};
    char accept[WS_PROTO_ACCEPT_CHARS + 1], ext[WS_PROTO_DEFLATE_RESPONSE_SIZE] = "";
    if (c->w->conf->ws_compression) {
        for (size_t i = 0; i < r->http.nheaders; i++) {
            const struct http_header *h = &r->http.headers[i];
            if (h->name.len == 24 && strncasecmp(h->name.p, "Sec-WebSocket-Extensions", 24) == 0)
                ws_proto_deflate_offer(h->value.p, h->value.len, &d);
        }
    }
    if (d.on && ws_proto_deflate_response(&d, ext, sizeof ext) < 0)
        d.on = false;
    struct ws_worker *rt = rt_of(c);
    int admitted = roster_connect(rt->roster, rt->slot, conn_id, s->user, max);
    if (admitted == 0) {
        ws_redis_forget(rt, conn_id, s->user);
        http_error_with(r, 429, "Retry-After: 5\r\n", "too_many_connections",
                        "The user holds max_connections_per_user WebSockets already.");
        return;
    }
    struct ws *ws = admitted < 0 ? NULL
                                 : ws_new(c, s, conn_id,
                                          d.on ? (d.server_window_bits ? d.server_window_bits : 15) : 0);
    if (ws == NULL) {
        ws_redis_forget(rt, conn_id, s->user);
        if (admitted > 0)
            roster_disconnect(rt->roster, rt->slot, conn_id);
        else
            log_warnx("%s", roster_last_error(rt->roster));
        http_error_with(r, 503, "Retry-After: 1\r\n", NULL, "The connection could not be set up.");
        return;
    }
    ws_proto_accept(key->p, key->len, accept);
    buf_printf(&c->out,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
               accept, d.on ? "Sec-WebSocket-Extensions: " : "", d.on ? ext : "",
               d.on ? "\r\n" : "");
    conn_set_timer(c, secs_of_ms(c->w->conf->ws_ping_interval_ms));
    conn_upgrade(c, &ws_conn_proto, ws, 101);
}

static void
ws_authenticated(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    api_store_end(r);
    if (st == STORE_NOT_FOUND)
        http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                        "The session has expired or was ended.");
    else if (st != STORE_OK)
        api_store_error(r, st);
    else if (r->conn->closed)
        http_error(r, 503, NULL, "The client left."); /* only releases the request */
    else
        ws_admit(r, s);
}

void
ws_upgrade_request(struct request *r)
{
    const struct http_request *h = &r->http;
    const struct http_str *up = http_header_get(h, "Upgrade");
    const struct http_str *conn = http_header_get(h, "Connection");
    const struct http_str *version = http_header_get(h, "Sec-WebSocket-Version");
    const struct http_str *key = http_header_get(h, "Sec-WebSocket-Key");
    if (up == NULL || conn == NULL || !http_list_has_token(*up, "websocket") ||
        !http_list_has_token(*conn, "upgrade")) {
        http_error_with(r, 426, "Upgrade: websocket\r\nConnection: Upgrade\r\n", NULL,
                        "This endpoint speaks WebSocket only.");
        return;
    }
    if (version == NULL || version->len != 2 || memcmp(version->p, "13", 2) != 0) {
        http_error_with(r, 426, "Sec-WebSocket-Version: 13\r\n", NULL,
                        "Only WebSocket version 13 is supported.");
        return;
    }
    if (key == NULL || !ws_proto_key_ok(key->p, key->len)) {
        http_error(r, 400, NULL, "Sec-WebSocket-Key must be 16 bytes in base64.");
        return;
    }
    if (r->conn->w->draining) {
        http_error_with(r, 503, "Retry-After: 1\r\n", "draining", "The server is restarting.");
        return;
    }
    struct http_str t = ws_token(r);
    if (!token_is_wellformed(t.p, t.len)) {
        http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                        t.len ? "The session token is not valid." : "A session token is required.");
        return;
    }
    uint8_t hash[SESSION_HASH_LEN];
    token_hash(t.p, t.len, hash);
    api_store_begin(r);
    store_get_by_token(api_store(r), hash, (int64_t)time(NULL), ws_authenticated, r);
}

/* ---- sessions that end ---- */

static void
ws_end_matching(struct ws_worker *rt, const char *id, const char *user)
{
    for (struct ws *ws = rt->list; ws != NULL; ws = ws->next)
        if ((id != NULL && strcmp(ws->id, id) == 0) || (user != NULL && strcmp(ws->user, user) == 0))
            ws_close_with(ws, WS_CLOSE_SESSION_ENDED, "session ended");
}

static void
ws_end_broadcast(struct worker *w, int type, const char *what)
{
    char msg[1 + SESSION_USER_MAX];
    size_t n = strnlen(what, SESSION_USER_MAX);
    msg[0] = (char)type;
    memcpy(msg + 1, what, n);
    bus_broadcast(w->ws->bus, w->sb, msg, n + 1);
    ws_redis_send(w->ws, WS_REDIS_CONTROL, strlen(WS_REDIS_CONTROL), type, what, n);
}

void
ws_session_ended(struct worker *w, const char *id)
{
    ws_end_matching(w->ws, id, NULL);
    ws_end_broadcast(w, BUS_SESSION_END, id);
}

void
ws_user_ended(struct worker *w, const char *user)
{
    ws_end_matching(w->ws, NULL, user);
    ws_end_broadcast(w, BUS_USER_END, user);
}

/* Sessions expire without anyone deleting them: once a second, the sockets whose session
 * is past its expiry at connect time ask the store whether it was extended since. The
 * same walk parks the wslay state of quiet connections. */
static void
ws_expiry_answer(void *arg, enum store_status st, const struct session *s)
{
    struct ws *ws = arg;
    ws->checking = false;
    if (!ws_release(ws))
        return;
    if (st == STORE_OK)
        ws->expires_at = s->expires_at;
    else if (st == STORE_NOT_FOUND)
        ws_close_with(ws, WS_CLOSE_SESSION_ENDED, "session expired");
}

static void
ws_expiry_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct ws_worker *rt = container_of(t, struct ws_worker, expiry);
    int64_t now = (int64_t)time(NULL);
    size_t parked = 0;
    ws_redis_lease(rt);
    if (rt->ps != NULL)
        ws_redis_end_dead_leases(rt);
    for (struct ws *ws = rt->list; ws != NULL; ws = ws->next) {
        parked += ws_park(ws);
        if (ws->expires_at > now || ws->checking || ws->phase != WS_OPEN)
            continue;
        ws->checking = true;
        ws->pending++;
        store_get(rt->w->store, ws->id, now, ws_expiry_answer, ws);
    }
    /* free() keeps what it gets back for later; give the pages of contexts parked late
     * (after a fan-out, say) back to the kernel. */
    if (parked > 0)
        malloc_trim(0);

}

/* ---- the worker's side ---- */

/* A session end (type, then the id or the user) from another worker or instance. */
static void
ws_end_message(struct ws_worker *rt, int type, const char *p, size_t len)
{
    char what[SESSION_USER_MAX + 1];
    if (len > SESSION_USER_MAX)
        return;
    memcpy(what, p, len);
    what[len] = '\0';
    ws_end_matching(rt, type == BUS_SESSION_END ? what : NULL, type == BUS_USER_END ? what : NULL);
}

static void
ws_bus_message(void *arg, const void *msg, size_t len)
{
    struct ws_worker *rt = arg;
    const char *p = msg;
    if (len < 1)
        return;
    if (p[0] == BUS_PUBLISH && len >= 3) {
        size_t clen = (size_t)(uint8_t)p[1] << 8 | (uint8_t)p[2];
        if (3 + clen <= len)
            ws_fanout(rt, p + 3, clen, p + 3 + clen, len - 3 - clen);
    } else if (p[0] == BUS_SESSION_END || p[0] == BUS_USER_END) {
        ws_end_message(rt, p[0], p + 1, len - 1);
    }
}

/* From Redis: every worker of every instance hears it; our own instance's messages have
 * reached us over the bus already. */
static void
ws_redis_message(void *arg, const char *name, size_t len, const char *msg, size_t msg_len)
{
    struct ws_worker *rt = arg;
    if (msg_len < 17 || memcmp(msg, rt->nonce, 16) == 0)
        return;
    int type = (unsigned char)msg[16];
    const char *p = msg + 17;
    size_t plen = msg_len - 17;
    bool control = len == strlen(WS_REDIS_CONTROL) && memcmp(name, WS_REDIS_CONTROL, len) == 0;
    if (control && (type == BUS_SESSION_END || type == BUS_USER_END))
        ws_end_message(rt, type, p, plen);
    else if (!control && type == BUS_PUBLISH && hub_channel_ok(name, len))
        ws_fanout(rt, name, len, p, plen);
}

static void
ws_resubscribe_one(void *arg, const char *name, size_t len)
{
    pubsub_subscribe(arg, name, len);
}

/* Redis forgot our subscriptions with the old connection: all of them again. */
static void
ws_redis_ready(void *arg)
{
    struct ws_worker *rt = arg;
    ws_redis_lease(rt);
    pubsub_subscribe(rt->ps, WS_REDIS_CONTROL, strlen(WS_REDIS_CONTROL));
    hub_each_channel(rt->hub, ws_resubscribe_one, rt->ps);
}

static void
ws_reap(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct ws_worker *rt = container_of(p, struct ws_worker, reaper);
    ev_prepare_stop(loop, p);
    static const uint8_t policy[] = {WS_CLOSE_POLICY >> 8, WS_CLOSE_POLICY & 0xff};
    while (rt->doomed != NULL) {
        struct ws *ws = rt->doomed;
        rt->doomed = ws->doomed_next;
        ws->doomed_next = NULL;
        if (ws->broken) {
            conn_close(ws->c);
            continue;
        }
        ws->phase = WS_CLOSING;
        if (ws_frame(&rt->frame, WSLAY_CONNECTION_CLOSE, false, policy, sizeof policy) < 0 ||
            buf_append(&ws->c->out, buf_data(&rt->frame), buf_used(&rt->frame)) < 0) {
            conn_close(ws->c);
            continue;
        }
        conn_set_timer(ws->c, WS_CLOSE_GRACE);
        ws_flush(ws->c);
    }
}

int
ws_worker_start(struct worker *w, char *err, size_t errlen)
{
    struct ws_worker *rt = calloc(1, sizeof *rt);
    if (rt == NULL) {
        errf(err, errlen, "realtime: out of memory");
        return -1;
    }
    w->ws = rt;
    rt->w = w;
    rt->slot = (int)(w->slot - w->sb->slot);
    snprintf(rt->nonce, sizeof rt->nonce, "%016llx",
             (unsigned long long)sb_get(&w->sb->instance_nonce));
    snprintf(rt->lease, sizeof rt->lease, "%s.%d.%x", rt->nonce, rt->slot, (unsigned)getpid());
    rt->dead_seen = sb_get(&w->sb->dead_count) > SB_DEAD_RING
                        ? sb_get(&w->sb->dead_count) - SB_DEAD_RING : 0;
    ev_prepare_init(&rt->reaper, ws_reap);
    ev_timer_init(&rt->expiry, ws_expiry_check, WS_EXPIRY_CHECK, WS_EXPIRY_CHECK);
    char ns[64];
    snprintf(ns, sizeof ns, "sessiond/%llu", (unsigned long long)sb_get(&w->sb->master_pid));
    if ((rt->hub = hub_new()) == NULL || ws_proto_inflate_init(&rt->inflate) < 0) {
        errf(err, errlen, "realtime: out of memory");
        ws_worker_stop(w);
        return -1;
    }
    rt->inflate_ok = true;
    if ((rt->roster = roster_open(w->conf, err, errlen)) == NULL ||
        (rt->bus = bus_open(w->loop, ns, rt->slot, ws_bus_message, rt, err, errlen)) == NULL ||
        (strcmp(w->conf->store, "redis") == 0 &&
         (rt->ps = pubsub_open(w->loop, w->conf->redis_url, w->conf->redis_prefix,
                               secs_of_ms(w->conf->redis_timeout_ms), ws_redis_message,
                               ws_redis_ready, rt, err, errlen)) == NULL)) {
        ws_worker_stop(w);
        return -1;
    }
    if (rt->ps != NULL) { /* redis_prefix is at most 63 bytes: it fits */
        size_t n = ws_rkey(rt, "lease:", "", 0, rt->lease_prefix, sizeof rt->lease_prefix - 1);
        rt->lease_prefix[n] = '\0';
    }
    ev_timer_start(w->loop, &rt->expiry);
    return 0;
}

void
ws_worker_stop(struct worker *w)
{
    struct ws_worker *rt = w->ws;
    if (rt == NULL)
        return;
    ev_timer_stop(w->loop, &rt->expiry);
    ev_prepare_stop(w->loop, &rt->reaper);
    bus_close(rt->bus);
    pubsub_close(rt->ps);
    buf_free(&rt->redis);
    buf_free(&rt->members);
    roster_close(rt->roster);
    hub_free(rt->hub);
    for (size_t i = 0; i < ARRAY_LEN(rt->deflate); i++) {
        if (rt->deflate[i] != NULL)
            deflateEnd(rt->deflate[i]);
        free(rt->deflate[i]);
    }
    if (rt->inflate_ok)
        inflateEnd(&rt->inflate);
    buf_free(&rt->frame);
    buf_free(&rt->zframe);
    buf_free(&rt->msg);
    buf_free(&rt->text);
    free(rt);
    w->ws = NULL;
}

void
ws_worker_stats(struct worker *w)
{
    struct ws_worker *rt = w->ws;
    struct bus_stats bs;
    bus_stats(rt->bus, &bs);
    sb_set(&w->slot->c.bus_dropped, bs.dropped);
    if (rt->ps != NULL) {
        struct pubsub_stats ps;
        pubsub_stats(rt->ps, &ps);
        sb_set(&w->slot->c.pubsub_dropped, ps.dropped);
    }
}
