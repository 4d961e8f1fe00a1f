/* ws: WebSocket connections (RFC 6455): the transport under the realtime API.
 *
 * GET /ws authenticates a session token, then the connection leaves HTTP for good: wslay
 * parses the client's frames and writes our control frames, both through the connection's
 * own buffers, and each text message goes to the channels module (channels.h), which
 * answers through the calls below.
 *
 * A connection costs what it holds: its output buffer is freed whenever it drains, and a
 * reader that falls more than ws_max_queue behind is closed (1008) instead of growing.
 * The connection's one timer carries the heartbeat (ping, then pong timeout), the close
 * handshake's grace, and the staggered close of a drain. */
#ifndef SESSIOND_WS_H
#define SESSIOND_WS_H

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct json_t;
struct request;
struct worker;
struct ws;

/* Close codes of API.md. */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_INVALID = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_SESSION_ENDED = 4001,
};

/* The worker's WebSocket transport state (channels.h has the channels'): made before the
 * loop runs and before chan_worker_start, freed after chan_worker_stop. 0, or -1 with
 * err. */
int ws_worker_start(struct worker *w, char *err, size_t errlen);
void ws_worker_stop(struct worker *w);

/* GET /ws: the upgrade. Once upgraded, conn.c hands the connection's events to ws.c's
 * hooks (conn_upgrade): a drain closes with 1001 at a random moment within
 * ws_drain_spread, and a close takes the client out of its channels. */
void ws_upgrade_request(struct request *r);
/* The channels' answer to chan_admit: 1 admitted, 0 over the limit, -1 failed. */
void ws_admitted(struct ws *ws, int rc);

/* Replies: {"op": op, "id": id, ...rest}, rest "" or starting with a comma; and an error
 * reply with code and message (JSON-escaped already). Not compressed. */
void ws_reply(struct ws *ws, const char *op, const struct json_t *id, const char *rest);
void ws_error(struct ws *ws, const struct json_t *id, const char *code, const char *message);

/* Start the close handshake with code: no more of the client's messages are taken, the
 * ops it took are answered first (those in flight get a short grace), then the close goes
 * and the client has a short grace to answer. */
void ws_close_with(struct ws *ws, int code, const char *reason);

/* A server text frame (unmasked; RSV1 when compressed) of p into out. 0 or -1. */
int ws_frame_text(struct buf *out, bool compressed, const void *p, size_t len);
/* Queue a frame from ws_frame_text behind what the socket was told already, unless it is
 * closing or would go over ws_max_queue (then it is closed, 1008). 0 when queued. */
int ws_push_frame(struct ws *ws, const void *frame, size_t len);
/* The window its pushes are compressed with; 0 without permessage-deflate. */
int ws_deflate_bits(const struct ws *ws);
bool ws_is_open(const struct ws *ws);
bool ws_is_closed(const struct ws *ws);

/* An answer that comes later holds the socket (ws_hold) until it is given: ws_release
 * returns false if the connection went away meanwhile, and then the socket is freed.
 * ws_answered sends what an answer queued outside of a read. */
void ws_hold(struct ws *ws);
bool ws_release(struct ws *ws);
void ws_answered(struct ws *ws);

#endif
