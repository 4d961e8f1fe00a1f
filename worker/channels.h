/* channels: the realtime API over WebSockets: subscribe, unsubscribe, publish, presence,
 * and the closes of sockets whose session ended.
 *
 * The transport (ws.c) hands each client's text message here and sends what this module
 * answers; a publish is serialized once, framed once per worker, compressed once per
 * window, and appended to every subscriber's output. It reaches the other workers of the
 * instance over the bus and, with Redis, the other instances over pub/sub, in one codec
 * (a type byte, then the payload). Who is where over the instance (and every instance)
 * is the roster's (common/roster.h). */
#ifndef SESSIOND_CHANNELS_H
#define SESSIOND_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CHAN_CONN_ID_LEN 16

struct grants;
struct hub_member;
struct session;
struct worker;
struct ws;

/* One WebSocket's realtime side: its session and its channels. The transport embeds it
 * in its own connection state, so that a connection is one allocation and fan-out reaches
 * the socket without leaving it; only channels.c touches the fields. */
struct chan_client {
    struct worker *w;
    struct ws *ws;                   /* the socket it is part of */
    struct chan_client *prev, *next; /* in the worker's list, once attached */
    struct hub_member **subs;
    struct grants *grants; /* its session's channels and subscribe, or NULL */
    const char *user;      /* its session's user, in room the socket's owner gave chan_admit */
    int64_t expires_at;
    uint16_t nsubs, subs_cap;
    bool checking; /* a store lookup of its session is in flight */
    bool recheck;  /* ... and the session changed meanwhile */
    char id[SESSION_ID_LEN + 1];
    char conn_id[CHAN_CONN_ID_LEN + 1]; /* opaque: it names no pid, slot or address */
};

/* The worker's channels (hub, bus, roster, Redis pub/sub): made before the loop runs,
 * freed after it ends. Returns 0, or -1 with err. */
int chan_worker_start(struct worker *w, char *err, size_t errlen);
void chan_worker_stop(struct worker *w);

/* Copy the bus's and Redis pub/sub's loss counts into the worker's scoreboard slot. */
void chan_worker_stats(struct worker *w);

/* Whether this worker hears the other instances: true without Redis pub/sub, else while
 * its subscriber is connected and subscribed again. */
bool chan_pubsub_up(const struct worker *w);

/* Socket ws of session s asks to be admitted under max_connections_per_user: cl (inside
 * ws) is set up and the answer goes to ws_admitted, now or later. user is room for
 * strlen(s->user) + 1 bytes that lives as long as cl: the session's user is copied there,
 * so that each socket holds its user's name at its length, not at the longest one's. */
void chan_admit(struct chan_client *cl, struct ws *ws, struct worker *w, const struct session *s,
                char *user);

/* The admitted client's socket is being upgraded: it can be told of its session's end. */
void chan_client_attach(struct chan_client *cl);
/* ... and is open, its 101 written: it is put in its session's server-side
 * subscriptions. */
void chan_client_opened(struct chan_client *cl);
/* An admitted client that got no socket: the roster forgets it. */
void chan_client_drop(struct chan_client *cl);

/* One text message (UTF-8) from the client: an operation, answered through ws.c. */
void chan_client_text(struct chan_client *cl, const char *p, size_t len);
/* Its socket is closing: it leaves every channel and the roster. */
void chan_client_close(struct chan_client *cl);
/* What it holds besides itself (the socket's memory is the transport's). */
void chan_client_free(struct chan_client *cl);

/* What a publish came to: rc 0 with the channel's subscribers over the instance at
 * publish time and the message's offset (0 when the channel keeps no history), or rc -1
 * when its history (Redis) could not take it: then it went to nobody. */
typedef void (*chan_published_cb)(void *arg, int rc, size_t recipients, uint64_t offset);
/* Publish a message on a channel to every subscriber of the instance (of every instance,
 * with Redis); data is one serialized JSON value and from the publishing user ("" for
 * the API). cb gets the answer exactly once, now or (history in Redis) later. */
void chan_publish(struct worker *w, const char *channel, size_t channel_len, const char *data,
                  size_t data_len, const char *from, chan_published_cb cb, void *arg);

/* GET /api/channels/{c}/history: the messages after since, at most limit, as the API's
 * JSON: to cb with rc 0, or rc -1 when the channel's namespace keeps no history, -2 when
 * the history could not be read; now or later. */
typedef void (*chan_history_cb)(void *arg, int rc, const char *json, size_t len);
void chan_history(struct worker *w, const char *channel, size_t len, uint64_t since, size_t limit,
                  chan_history_cb cb, void *arg);

/* A channel's members over the instance (every instance, with Redis): cb gets them as a
 * JSON array, or NULL if they could not be had, now or later. */
typedef void (*chan_presence_cb)(void *arg, const char *json, size_t len);
void chan_presence(struct worker *w, const char *channel, size_t len, chan_presence_cb cb,
                   void *arg);

/* A session or all of a user's sessions ended: close their sockets with 4001 on every
 * worker of the instance. */
void chan_session_ended(struct worker *w, const char *id);
/* A session's channels or subscribe changed: its sockets on every worker of every
 * instance read it again and are subscribed to what was added and unsubscribed (told
 * "unsubscribed") from what it no longer allows. */
void chan_session_changed(struct worker *w, const char *id);
void chan_user_ended(struct worker *w, const char *user);

#endif
