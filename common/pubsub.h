/* pubsub: Redis publish/subscribe between the instances that share one Redis.
 *
 * Two connections (common/redis.h) on the caller's libev loop, as Redis wants them: one
 * that SUBSCRIBEs (and can then do nothing else) and one that PUBLISHes. Both select
 * redis_url's database and come back on their own after an outage, with jittered backoff. Redis
 * forgets a connection's subscriptions with the connection, which is how Socket.IO's adapter
 * silently stops delivering after a reconnect; here every (re)connect of the subscriber calls
 * on_ready, whose job is to subscribe again to everything the caller listens to.
 *
 * Redis channel names are the caller's names under redis_prefix and "rt:". A publish
 * while Redis is away is dropped and counted (the caller's own instance is served by its
 * own bus, so only the other instances miss it, visibly in the stats). */
#ifndef SESSIOND_PUBSUB_H
#define SESSIOND_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct pubsub;
struct redisReply;
struct redis_script; /* common/redis.h: a script and its SHA-1 (redis_script_init) */

typedef void (*pubsub_msg_cb)(void *arg, const char *name, size_t len, const char *msg,
                              size_t msg_len);
typedef void (*pubsub_ready_cb)(void *arg);

struct pubsub_stats {
    bool subscribed; /* the subscriber is connected and has been told to resubscribe */
    uint64_t published, received, dropped, reconnects;
};

/* A command's reply; NULL when Redis could not answer (down, or no reply within the
 * timeout). The reply is freed after the callback returns. */
typedef void (*pubsub_reply_cb)(void *arg, const struct redisReply *reply);

/* Connect to url (as redis_url) in the background; NULL with err only for a bad URL or no
 * memory: a Redis that is down is no error here. A command without a reply after
 * timeout seconds drops the publisher connection at once (hiredis cannot cancel one
 * command), and every command in flight gets its callback with NULL. */
struct pubsub *pubsub_open(struct ev_loop *loop, const char *url, const char *prefix,
                           double timeout, pubsub_msg_cb on_msg, pubsub_ready_cb on_ready,
                           void *arg, char *err, size_t errlen);
void pubsub_close(struct pubsub *ps);

/* cb after every completed (re)connect of the publisher connection, the one that
 * pubsub_command and pubsub_eval use: the roster's cue to write back what Redis may have
 * lost. Before any command of the caller's goes out on that connection. One at a time. */
void pubsub_on_command_ready(struct pubsub *ps, pubsub_ready_cb cb, void *arg);

/* Listen to a name, or stop. Without a connection they do nothing: on_ready will. */
void pubsub_subscribe(struct pubsub *ps, const char *name, size_t len);
void pubsub_unsubscribe(struct pubsub *ps, const char *name, size_t len);

/* Publish msg under name. 0 if handed to Redis, -1 if dropped. */
int pubsub_publish(struct pubsub *ps, const char *name, size_t len, const void *msg,
                   size_t msg_len);

/* A command on the publisher connection (argv as hiredis's redisAsyncCommandArgv). cb
 * gets its reply exactly once, never before this returns; -1 (and no callback) when
 * Redis is down now. */
int pubsub_command(struct pubsub *ps, pubsub_reply_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen);

/* Run script s (EVALSHA, and EVAL again if Redis answers NOSCRIPT) on the publisher
 * connection, with nkeys keys first among argv (argc of them, copied). cb as for
 * pubsub_command, with the final reply; -1 (and no callback) when Redis is down now. */
int pubsub_eval(struct pubsub *ps, const struct redis_script *s, pubsub_reply_cb cb, void *arg,
                int nkeys, int argc, const char **argv, const size_t *argvlen);

/* Our Redis name for name (prefix "rt:" name) into out; its length, or 0 if too long. */
size_t pubsub_name(const struct pubsub *ps, const char *name, size_t len, char *out, size_t cap);

void pubsub_stats(const struct pubsub *ps, struct pubsub_stats *out);

#endif
