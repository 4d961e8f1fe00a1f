/* chan_impl: what channels.c and chan_history.c share, and nobody else: the worker's
 * channel state, the codec's types, and the calls between the two files. */
#ifndef SESSIOND_CHAN_IMPL_H
#define SESSIOND_CHAN_IMPL_H

#include <ev.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <zlib.h>

#include "buf.h"
#include "channels.h"
#include "history.h"
#include "hub.h"
#include "namespace.h"
#include "worker.h"

#define CHAN_RECOVER_MAX 10000 /* messages a recovery replays; beyond, recovered is false */
#define CHAN_HISTORY_SWEEP 256 /* expired history messages dropped per second */
#define CHAN_REPLAY_KEEP 65536 /* a recovery buffer larger than this is freed after use */

/* Messages between the workers of an instance, on the bus, and between instances, on
 * Redis (after the sending instance's nonce in hex). The first byte says what. */
enum {
    BUS_PUBLISH = 'P',         /* u16 channel length, channel, the pushed message's JSON */
    BUS_SESSION_END = 'S',     /* the session id */
    BUS_USER_END = 'U',        /* the user */
    BUS_SESSION_CHANGED = 'C', /* the session id: its channels or subscribe changed */
    BUS_PUBLISH_AT = 'O',      /* u16 channel length, channel, u64 offset, the message's JSON;
                                * on Redis (history with store redis): the epoch, the offset
                                * in decimal, a space, the JSON */
};

/* The sender of a Redis message that every worker takes, its own instance's too: the
 * history script's, whose messages no bus carries. Not hex, so no instance's nonce. */
#define CHAN_REDIS_ANYONE "~~~~~~~~~~~~~~~~"

/* The worker's channels. */
struct chan_worker {
    struct worker *w;
    struct hub *hub;
    struct bus *bus;
    struct roster *roster; /* the instance's (every instance's) connections and members */
    struct pubsub *ps;     /* with store redis: the other instances */
    char nonce[17];        /* this instance's, in hex, to skip our own Redis messages */
    struct buf redis;
    struct buf members; /* a presence answer */
    int slot;
    struct chan_client *list;
    ev_timer expiry;
    z_stream *deflate[16]; /* by window bits, made when first needed */
    struct buf frame, zframe, msg, text;
    uint64_t seq;            /* for connection ids */
    uint64_t conn_key;       /* random: connection ids are a bijection of seq under it */
    struct history *history; /* with store lmdb: the machine's channel history */
    struct hub *syncs;       /* with store redis: the history channels here (their chan_sync) */
    struct buf gap;          /* a message read back from history */
    struct buf replay;       /* a recovery's frames, before they go out */
    time_t unkept_said;      /* when the log last said a message went unkept */
    /* With store lmdb, the publishes to channels with history of one loop iteration,
     * kept in one transaction (a group commit) before the loop waits again. */
    ev_prepare keep;
    struct chan_queued *queue, **queue_tail;
};

static inline struct chan_worker *
cw_of(const struct chan_client *cl)
{
    return cl->w->chan;
}

/* A subscribe's recovery position: the client's, or none. */
struct chan_since {
    bool given;
    uint64_t offset;
    char epoch[HISTORY_EPOCH_LEN + 1];
};

/* A subscribe is answered, and announced to the channel, once the roster holds the
 * membership: a presence asked on any instance after the "ok" or the "join" lists this
 * connection (the socket is held meanwhile). */
struct chan_join_op {
    struct chan_join_op *next; /* waiting for a Redis history read (chan_history_redis.c) */
    struct chan_client *cl;
    json_t *id;
    bool pushed;             /* the server's doing: told as "subscribed", not answered "ok" */
    bool rh;                 /* history in Redis: it joins the hub when answered */
    bool covered;            /* ... and the read in flight started after it came */
    struct chan_since since; /* a recovery's position, if given */
    size_t members;          /* the channel's, over the instance, once joined */
    size_t len;
    char channel[HUB_CHANNEL_MAX];
};

/* channels.c: send text to this worker's subscribers of channel (framed once, compressed
 * once per window); how many were reached. */
size_t chan_fanout(struct chan_worker *cw, const char *channel, size_t len, const char *text,
                   size_t text_len);
/* channels.c: the bus copy of a push (its text in cw->text) to the other workers: type,
 * channel length and name, the offset when numbered (BUS_PUBLISH_AT), then the text. */
void chan_bus_push(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset);
/* channels.c: send a message (numbered at offset, or 0 for none) to the channel's
 * subscribers on every worker, then tell cb. */
void chan_send(struct chan_worker *cw, const char *channel, size_t len, const char *data,
               size_t data_len, const char *from, uint64_t offset, chan_published_cb cb, void *arg);
/* channels.c: a message push's JSON into t; offset 0 for none. 0 or -1. */
int chan_message_text(struct buf *t, const char *channel, size_t len, const char *data,
                      size_t data_len, const char *from, uint64_t offset);

/* channels.c: a subscribe (of op) that the roster holds is answered: rest is what follows
 * the "ok"'s id (NULL: it failed, and is refused), replay the frames that follow it. It
 * joins the hub now, if it has not yet. op is freed. */
void chan_join_answer(struct chan_join_op *op, const char *rest, const struct buf *replay);

/* chan_history.c */
int64_t chan_now_ms(void);
/* The rules of channel, if it keeps history here. */
const struct ns_rules *chan_history_rules(const struct chan_worker *cw, const char *channel,
                                          size_t len);
/* Publish a message of a channel with history (store lmdb) once it is kept: it waits
 * for the loop iteration's group commit, then goes out with its offset and cb is told. */
void chan_keep(struct chan_worker *cw, const struct ns_rules *r, const char *channel, size_t len,
               const char *data, size_t data_len, const char *from, chan_published_cb cb,
               void *arg);
/* Start and stop the group commit (stopping commits and sends what waits). */
void chan_keep_init(struct chan_worker *cw);
void chan_keep_stop(struct chan_worker *cw);
/* Bring the channel's members here up to offset upto, from the file. */
void chan_catch_up(struct chan_worker *cw, const char *channel, size_t len, uint64_t upto);
/* A numbered message for this worker's subscribers: once each, in offset order. */
size_t chan_deliver(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset,
                    const char *text, size_t text_len);
/* A numbered message (its text in cw->text) to every worker and here. */
void chan_push_at(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset);
/* The "ok" of a client's subscribe, with what history says, and a recovery's replay. */
void chan_subscribe_ok(struct chan_client *cl, const struct chan_join_op *op);
/* A subscribe's "since", or none (out->given false). -1 after answering bad_request. */
int chan_since_arg(struct chan_client *cl, json_t *j, const json_t *id, struct chan_since *out);

/* chan_history.c: an API history answer, in three parts: the head, each message, the end
 * with the channel's newest offset (0, or -1 when out of memory). */
void chan_history_head(struct buf *out, const char *channel, size_t len, const char *epoch,
                       size_t epoch_len);
void chan_history_item(void *out, const struct history_msg *m);
int chan_history_tail(struct buf *out, uint64_t top);

/* chan_history_redis.c: history with store redis. */
int chan_rh_init(char *err, size_t errlen);
/* The rules of channel, if it keeps history in Redis. */
const struct ns_rules *chan_rh_rules(const struct chan_worker *cw, const char *channel, size_t len);
/* A roster-joined subscribe to such a channel: answered (chan_join_answer) once this
 * worker knows where the channel stands, with its recovery. */
void chan_rh_join(struct chan_worker *cw, struct chan_join_op *op);
/* The last subscriber here left the channel. */
void chan_rh_left(struct chan_worker *cw, const char *channel, size_t len);
/* A numbered message from Redis (what follows the type byte). */
void chan_rh_message(struct chan_worker *cw, const char *channel, size_t len, const char *p,
                     size_t plen);
/* Redis's subscriber came back: each channel reads what it may have missed. */
void chan_rh_resync(struct chan_worker *cw);
void chan_rh_free(struct chan_worker *cw);
void chan_rh_publish(struct chan_worker *cw, const struct ns_rules *r, const char *channel,
                     size_t len, const char *data, size_t data_len, const char *from,
                     chan_published_cb cb, void *arg);
void chan_rh_history(struct chan_worker *cw, const struct ns_rules *r, const char *channel,
                     size_t len, uint64_t since, size_t limit, chan_history_cb cb, void *arg);

#endif
