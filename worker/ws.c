#include "ws.h"

#include <errno.h>
#include <jansson.h>
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
#include "channels.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "store.h"
#include "token.h"
#include "utf8.h"
#include "util.h"
#include "worker.h"
#include "ws_proto.h"

#define WS_CLOSE_GRACE 2.0     /* how long we wait for the client's close frame */
#define WS_READ_BUF 65536
#define WS_PARK_CHECK 1.0      /* how often quiet connections' wslay state is freed */
#define WS_CLOSE_INTERNAL 1011 /* RFC 6455 section 7.4.1: the server cannot go on */

enum ws_phase {
    WS_OPEN,
    WS_CLOSING, /* our close frame is queued or sent; waiting for the client's */
};

/* One socket's state: every idle WebSocket holds one, so the small fields are packed
 * (bit fields, small ints) behind the pointers and counters. */
struct ws {
    struct conn *c;
    /* wslay's state, 8.8 KB of it: freed whenever it holds nothing (see ws_park) and
     * made again by ws_ctx when needed. */
    wslay_event_context_ptr ctx;
    /* Bytes handed to wslay that are not yet part of a frame it finished: all that
     * ws_park needs of the two counts, in one field. */
    uint64_t unframed;
    uint64_t frame_bytes;   /* of the frame being received */
    double tokens, debt;    /* the rate limit's buckets */
    ev_tstamp bucket_at;
    struct ws *doomed_next;
    const char *close_reason; /* of close_code */
    int pending;              /* answers in flight that hold this struct (see ws_release) */
    uint16_t close_code;      /* a close that waits for the answers in flight (ws_close_with) */
    uint16_t fail_code;     /* what the client just sent breaks the protocol (ws_fail) */
    uint8_t phase;          /* enum ws_phase */
    int8_t deflate_bits;    /* 0: no permessage-deflate; else the window we compress with */
    bool in_frame : 1;
    bool in_message : 1;
    bool awaiting_pong : 1;
    bool in_recv : 1;      /* inside wslay_event_recv: ws_feed sends what is queued */
    bool doomed : 1;       /* it fell too far behind: gets nothing more but a close */
    bool orphan : 1;       /* its connection was freed while a lookup was in flight */
    bool broken : 1;       /* a send failed: the reaper closes it */
    bool close_queued : 1; /* our close frame is queued or sent: nothing may follow it */
    struct chan_client cl; /* its channels and session, in the same allocation, followed
                            * by its user's name (chan_admit) */
};

/* The worker's WebSocket transport. */
struct ws_worker {
    struct worker *w;
    struct ws *doomed;
    ev_prepare reaper;       /* closes doomed connections, outside of any fan-out */
    ev_timer park;
    z_stream inflate;
    bool inflate_ok;
    struct buf frame, msg, text;
    /* The bytes ws_feed is handing to wslay (ws_recv takes them from here): per worker,
     * not per socket, since a socket holds them only during its ws_feed. */
    const uint8_t *in;
    size_t in_len;
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
static void ws_free(struct ws *ws);

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

/* The header of a server frame (unmasked) of len bytes: FIN, the opcode, RSV1 when
 * compressed. Returns its length. */
static size_t
ws_frame_head(uint8_t h[10], int opcode, bool rsv1, size_t len)
{
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
    return n;
}

/* Frame a server message into out, which holds nothing else then. */
static int
ws_frame_op(struct buf *out, int opcode, bool rsv1, const void *p, size_t len)
{
    uint8_t h[10];
    size_t n = ws_frame_head(h, opcode, rsv1, len);
    out->off = out->len = 0;
    if (buf_append(out, h, n) < 0 || buf_append(out, p, len) < 0)
        return -1;
    return 0;
}

/* Whether a close frame of ours is queued or out (ours, or wslay's answer to the
 * client's): no frame may follow it. */
static bool
ws_said_close(const struct ws *ws)
{
    return ws->close_queued || (ws->ctx != NULL && wslay_event_get_close_sent(ws->ctx));
}

/* Queue a frame behind what the connection's output holds, unless that would put it over
 * ws_max_queue. Not through wslay's queue, which sends its control frames (a close
 * among them) ahead of the messages it holds: a close must not overtake the replies to
 * the messages before it. */
static int
ws_append_frame(struct ws *ws, int opcode, const void *p, size_t len)
{
    struct conn *c = ws->c;
    uint8_t h[10];
    size_t n = ws_frame_head(h, opcode, false, len);
    if (ws->doomed || c->closed || ws_said_close(ws)) return -1;
    if (buf_used(&c->out) + n + len > (size_t)c->w->conf->ws_max_queue ||
        buf_reserve(&c->out, n + len) < 0) {
        ws_doom(ws);
        return -1;
    }
    /* With the room reserved neither append can fail, so no half frame is ever queued. */
    buf_append(&c->out, h, n);
    buf_append(&c->out, p, len);
    return 0;
}

/* ---- wslay's callbacks ---- */

static ssize_t
ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    struct ws *ws = user;
    struct ws_worker *rt = rt_of(ws->c);
    if (rt->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < rt->in_len ? len : rt->in_len;
    memcpy(buf, rt->in, n);
    rt->in += n;
    rt->in_len -= n;
    ws->unframed += n;
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
    ws->unframed -= ws->frame_bytes;
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
    ws->unframed = 0;
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
    if (ctx == NULL || ws->phase != WS_OPEN || ws->in_frame || ws->in_message ||
        ws->unframed != 0 || wslay_event_get_queued_msg_count(ctx) > 0 ||
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

/* Queue the close that ws_close_with asked for, behind every reply queued before it; the
 * client has WS_CLOSE_GRACE to answer. */
static void
ws_close_now(struct ws *ws)
{
    uint16_t code = ws->close_code;
    ws->close_code = 0;
    conn_set_timer(ws->c, WS_CLOSE_GRACE);
    if (ws->doomed || ws_said_close(ws)) return; /* a close is on its way already */
    if (ws_ctx(ws) == NULL) {
        conn_close(ws->c);
        return;
    }
    ws->close_queued = true;
    wslay_event_queue_close(ws->ctx, code, (const uint8_t *)ws->close_reason,
                            strlen(ws->close_reason));
    ws_pump(ws);
}

/* Start the close handshake with code. No message of the client's is taken after this,
 * but the ops it took are all answered first: a close for the rate, say, must not leave
 * the client guessing which of its publishes went out. The answers still in flight get
 * WS_CLOSE_GRACE to come (ws_release), then the close goes. */
void
ws_close_with(struct ws *ws, int code, const char *reason)
{
    if (ws->phase == WS_CLOSING || ws->c->closed) return;
    ws->phase = WS_CLOSING;
    ws->close_code = (uint16_t)code;
    ws->close_reason = reason;
    if (ws->pending == 0)
        ws_close_now(ws);
    else
        conn_set_timer(ws->c, WS_CLOSE_GRACE);
}

/* ---- replies ---- */

/* Queue a text message for this connection (a reply: not compressed), in its turn. */
static void
ws_send_text(struct ws *ws, const char *p, size_t len)
{
    ws_append_frame(ws, WSLAY_TEXT_FRAME, p, len);
}

/* {"op": op, "id": id, ...rest}: rest is "" or starts with a comma. */
void
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

void
ws_error(struct ws *ws, const json_t *id, const char *code, const char *message)
{
    char rest[512];
    snprintf(rest, sizeof rest, ",\"error\":{\"code\":\"%s\",\"message\":\"%s\"}", code, message);
    ws_reply(ws, "error", id, rest);
}

/* ---- what the channels module asks of a socket ---- */

int
ws_frame_text(struct buf *out, bool compressed, const void *p, size_t len)
{
    return ws_frame_op(out, WSLAY_TEXT_FRAME, compressed, p, len);
}

/* Send a frame that is not ours to keep (a fan-out's, shared by every subscriber) straight
 * from the caller's buffer, when nothing is queued ahead of it: the common case of a
 * fan-out costs one send, with no copy, no allocation and no watcher change. What the
 * socket does not take is queued and waits for it to be writable. Plain sockets only: a
 * TLS write that has to be retried wants the very same buffer again. */
static void
ws_send_direct(struct ws *ws, const uint8_t *frame, size_t len)
{
    struct conn *c = ws->c;
    ssize_t n = conn_send(c, frame, len);
    if (n == (ssize_t)len) return;
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        ws->broken = true; /* the reaper closes it, after the fan-out */
        ws_doom(ws);
        return;
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    if (buf_append(&c->out, frame + sent, len - sent) < 0) {
        /* A part of the frame went: without the rest nothing may follow, not even a close. */
        ws->broken = true;
        ws_doom(ws);
        return;
    }
    ws_flush(c); /* the socket is full: this arms the writable watcher */
}

int
ws_push_frame(struct ws *ws, const void *frame, size_t len)
{
    struct conn *c = ws->c;
    if (ws->phase != WS_OPEN || ws_said_close(ws) || ws->doomed || c->closed) return -1;
    if (buf_used(&c->out) == 0 && c->ssl == NULL && len <= (size_t)c->w->conf->ws_max_queue) {
        ws_send_direct(ws, frame, len);
        return 0;
    }
    /* Replies are in the output already, ahead of this: a publisher gets its "ok" before
     * its message. */
    if (ws_append(ws, frame, len) < 0) return -1;
    /* A socket that did not take the last bytes is watched for writability: writing to it
     * again before that would only fail. */
    if (!c->writing) ws_flush(c);
    return 0;
}

int
ws_deflate_bits(const struct ws *ws)
{
    return ws->deflate_bits;
}

bool
ws_is_open(const struct ws *ws)
{
    return ws->phase == WS_OPEN && !ws->c->closed;
}

bool
ws_is_closed(const struct ws *ws)
{
    return ws->c->closed;
}

void
ws_answered(struct ws *ws)
{
    if (!ws->in_recv) /* an answer that came later: nobody else will send it */
        ws_pump(ws);
}

/* ---- the client's messages ---- */

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
    /* wslay does not check text frames: a whole message is checked here, and a failure
     * is what close code 1007 means. */
    if (!utf8_valid(p, len)) {
        ws_close_with(ws, WS_CLOSE_INVALID, "invalid UTF-8");
        return;
    }
    chan_client_text(&ws->cl, (const char *)p, len);
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
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        /* wslay has refused the codes it knows to be bad, but it echoes a payload of one
         * byte as an empty close, and checks the reason's UTF-8 piece by piece as it
         * arrives, skipping the first two bytes of every piece as if they were a code. */
        ws->fail_code = (uint16_t)ws_proto_close_check(arg->msg, arg->msg_length);
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

/* Fail the connection (RFC 6455 section 7.1.7): send what is already said (replies to
 * earlier messages of this read, and the 101 itself when the frames came with the
 * upgrade request, which the client would otherwise never see), then our close frame
 * with ws->fail_code, not the one wslay may have queued, then end the connection. */
static void
ws_fail(struct ws *ws)
{
    struct conn *c = ws->c;
    const char *reason = ws->fail_code == WS_PROTO_PROTOCOL_ERROR ? "protocol error"
                         : ws->fail_code == WS_PROTO_INVALID_DATA ? "invalid UTF-8"
                                                                  : "internal error";
    uint8_t payload[2 + 16];
    size_t n = strlen(reason);
    payload[0] = (uint8_t)(ws->fail_code >> 8);
    payload[1] = (uint8_t)ws->fail_code;
    memcpy(payload + 2, reason, n);
    if (ws_append_frame(ws, WSLAY_CONNECTION_CLOSE, payload, 2 + n) == 0) ws->close_queued = true;
    if (!c->closed && !ws->doomed) conn_write_out(c);
    conn_close(c);
}

static void
ws_feed(struct ws *ws, const void *p, size_t len)
{
    struct ws_worker *rt = rt_of(ws->c);
    /* Kept and put back, so that a feed nested in another socket's (none is, today)
     * would not pull the ground from under the outer one; what wslay leaves unread (the
     * bytes after a close) is forgotten with the feed, as before. */
    const uint8_t *outer = rt->in;
    size_t outer_len = rt->in_len;
    rt->in = p;
    rt->in_len = len;
    ws->in_recv = true;
    int rc = ws_ctx(ws) == NULL ? WSLAY_ERR_NOMEM : wslay_event_recv(ws->ctx);
    ws->in_recv = false;
    rt->in = outer;
    rt->in_len = outer_len;
    /* wslay refuses a malformed frame header this way (a control frame over 125 bytes or
     * fragmented, a length with its top bit set or longer than it needs), after queueing
     * a close frame without a code; our recv callback never fails otherwise. */
    if (rc != 0 && ws->fail_code == 0)
        ws->fail_code = rc == WSLAY_ERR_NOMEM ? WS_CLOSE_INTERNAL : WS_PROTO_PROTOCOL_ERROR;
    if (ws->fail_code != 0) {
        ws_fail(ws);
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
    if (ws->close_code != 0) { /* the answers it waited for are out, or late */
        ws_close_now(ws);
        return;
    }
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
    chan_client_close(&ws->cl);
    for (struct ws **p = &rt->doomed; *p != NULL; p = &(*p)->doomed_next) {
        if (*p == ws) {
            *p = ws->doomed_next;
            break;
        }
    }
}

void
ws_hold(struct ws *ws)
{
    ws->pending++;
}

bool
ws_release(struct ws *ws)
{
    ws->pending--;
    if (!ws->orphan) {
        /* The last answer a close waits for is being given now: the close follows it
         * from the timer, once the caller has queued it. */
        if (ws->pending == 0 && ws->close_code != 0 && !ws->c->closed) conn_set_timer(ws->c, 0.);
        return true;
    }
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
    chan_client_free(&ws->cl);
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
    struct http_str q;
    return http_query_get(&r->http, "token", &q) ? q : b;
}

/* The permessage-deflate the client offered and we take: the window we compress with
 * (0 for none), and the response header's value into ext. */
static int
ws_negotiate(const struct request *r, char *ext, size_t cap)
{
    struct ws_proto_deflate d = {0};
    if (!r->conn->w->conf->ws_compression)
        return 0;
    for (size_t i = 0; i < r->http.nheaders; i++) {
        const struct http_header *h = &r->http.headers[i];
        if (h->name.len == 24 && strncasecmp(h->name.p, "Sec-WebSocket-Extensions", 24) == 0)
            ws_proto_deflate_offer(h->value.p, h->value.len, &d);
    }
    if (!d.on || ws_proto_deflate_response(&d, ext, cap) < 0)
        return 0;
    return d.server_window_bits ? d.server_window_bits : 15;
}

/* Answer 101: the connection is a WebSocket from now on. */
static void
ws_accept(struct ws *ws)
{
    struct conn *c = ws->c;
    struct request *r = c->req;
    const struct http_str *key = http_header_get(&r->http, "Sec-WebSocket-Key");
    char accept[WS_PROTO_ACCEPT_CHARS + 1], ext[WS_PROTO_DEFLATE_RESPONSE_SIZE] = "";
    int bits = ws_negotiate(r, ext, sizeof ext);
    const struct conf *cf = c->w->conf;
    ws->deflate_bits = (int8_t)bits;
    ws->tokens = cf->ws_rate_limit;
    ws->bucket_at = ev_now(c->w->loop);
    ws_proto_accept(key->p, key->len, accept);
    http_status_line(&c->out, 1, 101);
    buf_printf(&c->out,
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
               accept, bits ? "Sec-WebSocket-Extensions: " : "", bits ? ext : "",
               bits ? "\r\n" : "");
    conn_set_timer(c, secs_of_ms(cf->ws_ping_interval_ms));
    chan_client_attach(&ws->cl);
    conn_upgrade(c, &ws_conn_proto, ws, 101);
    /* The bytes behind the request may have closed it already (ws_on_close has taken the
     * client out of the list then); if not, its server-side subscriptions go out behind
     * the 101. */
    if (ws_is_open(ws))
        chan_client_opened(&ws->cl);
}

void
ws_admitted(struct ws *ws, int rc)
{
    struct request *r = ws->c->req;
    if (rc == 1 && !r->conn->closed) {
        ws_accept(ws);
        return;
    }
    if (rc == 1)
        chan_client_drop(&ws->cl);
    free(ws);
    if (rc == 0)
        http_error_with(r, 429, "Retry-After: 5\r\n", "too_many_connections",
                        "The user holds max_connections_per_user WebSockets already.");
    else if (rc < 0)
        http_error_with(r, 503, "Retry-After: 1\r\n", NULL, "The connection could not be set up.");
    else
        http_error(r, 503, NULL, "The client left."); /* only releases the request */
}

/* The session is good: the socket's state is made now, and the roster decides. */
static void
ws_authenticated(void *arg, enum store_status st, const struct session *s)
{
    struct request *r = arg;
    struct ws *ws = NULL;
    api_store_end(r);
    if (st == STORE_NOT_FOUND)
        http_error_with(r, 401, "WWW-Authenticate: Bearer\r\n", NULL,
                        "The session has expired or was ended.");
    else if (st != STORE_OK)
        api_store_error(r, st);
    else if (r->conn->closed)
        http_error(r, 503, NULL, "The client left."); /* only releases the request */
    else if ((ws = calloc(1, sizeof *ws + strnlen(s->user, sizeof s->user - 1) + 1)) == NULL)
        http_error_with(r, 503, "Retry-After: 1\r\n", NULL, "The connection could not be set up.");
    else {
        ws->c = r->conn;
        chan_admit(&ws->cl, ws, r->conn->w, s, (char *)(ws + 1));
    }
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
        ws->close_code = 0;
        ws->close_queued = true;
        if (ws_frame_op(&rt->frame, WSLAY_CONNECTION_CLOSE, false, policy, sizeof policy) < 0 ||
            buf_append(&ws->c->out, buf_data(&rt->frame), buf_used(&rt->frame)) < 0) {
            conn_close(ws->c);
            continue;
        }
        conn_set_timer(ws->c, WS_CLOSE_GRACE);
        ws_flush(ws->c);
    }
}

/* Once a second, the wslay state of quiet connections is freed, and the pages of
 * contexts parked late (after a fan-out, say) go back to the kernel: free() keeps what it
 * gets back for later. */
static void
ws_park_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct ws_worker *rt = container_of(t, struct ws_worker, park);
    size_t parked = 0;
    for (struct conn *c = rt->w->conns; c != NULL; c = c->next)
        if (c->proto == &ws_conn_proto)
            parked += ws_park(ws_of(c));
    if (parked > 0)
        malloc_trim(0);
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
    ev_prepare_init(&rt->reaper, ws_reap);
    ev_timer_init(&rt->park, ws_park_check, WS_PARK_CHECK, WS_PARK_CHECK);
    if (ws_proto_inflate_init(&rt->inflate) < 0) {
        errf(err, errlen, "realtime: out of memory");
        ws_worker_stop(w);
        return -1;
    }
    rt->inflate_ok = true;
    ev_timer_start(w->loop, &rt->park);
    return 0;
}

void
ws_worker_stop(struct worker *w)
{
    struct ws_worker *rt = w->ws;
    if (rt == NULL)
        return;
    ev_timer_stop(w->loop, &rt->park);
    ev_prepare_stop(w->loop, &rt->reaper);
    if (rt->inflate_ok)
        inflateEnd(&rt->inflate);
    buf_free(&rt->frame);
    buf_free(&rt->msg);
    buf_free(&rt->text);
    free(rt);
    w->ws = NULL;
}
