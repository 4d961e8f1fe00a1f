/* ws: WebSocket connections (RFC 6455) and the realtime API over them.
 *
 * GET /ws authenticates a session token, then the connection leaves HTTP for good: wslay
 * parses the client's frames and writes our control frames, both through the connection's
 * own buffers, and the JSON operations (subscribe, unsubscribe, publish, presence, ping)
 * are served here. A publish is serialized once, framed once per worker, and appended to
 * every subscriber's output; it reaches the other workers of the instance over the bus.
 *
 * A connection costs what it holds: its output buffer is freed whenever it drains, and a
 * reader that falls more than ws_max_queue behind is closed (1008) instead of growing.
 * The connection's one timer carries the heartbeat (ping, then pong timeout), the close
 * handshake's grace, and the staggered close of a drain. */
#ifndef SESSIOND_WS_H
#define SESSIOND_WS_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct request;
struct worker;
struct ws;
struct buf;

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

/* The worker's realtime state (hub, bus, compression streams): made before the loop runs,
 * freed after it ends. Returns 0, or -1 with err. */
int ws_worker_start(struct worker *w, char *err, size_t errlen);
void ws_worker_stop(struct worker *w);

/* Copy the bus's and Redis pub/sub's loss counts into the worker's scoreboard slot. */
void ws_worker_stats(struct worker *w);

/* GET /ws: the upgrade. */
void ws_upgrade_request(struct request *r);

/* Once upgraded, conn.c hands the connection's events to ws.c's hooks (conn_upgrade): a
 * drain closes with 1001 at a random moment within ws_drain_spread, and a close leaves
 * every channel. */

/* Publish a message on a channel to every subscriber of the instance; data is one
 * serialized JSON value and from the publishing user ("" for the API). Returns the
 * channel's subscribers over the instance at publish time. */
size_t ws_publish(struct worker *w, const char *channel, size_t channel_len, const char *data,
                  size_t data_len, const char *from);

/* A channel's members over the instance (every instance, with Redis): cb gets them as a
 * JSON array, or NULL if they could not be had, now or later. */
typedef void (*ws_presence_cb)(void *arg, const char *json, size_t len);
void ws_presence(struct worker *w, const char *channel, size_t len, ws_presence_cb cb, void *arg);

/* A session or all of a user's sessions ended: close their sockets with 4001 on every
 * worker of the instance. */
void ws_session_ended(struct worker *w, const char *id);
void ws_user_ended(struct worker *w, const char *user);

#endif
