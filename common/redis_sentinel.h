/* redis_sentinel: where the Redis master is, asked of Redis Sentinel and followed.
 *
 * With redis_sentinels set, no connection of common/redis.c goes to redis_url's host:
 * each asks this module for the master's address before every connect. One watcher per
 * process (so per worker) keeps that address. It connects to a Sentinel, asks
 * SENTINEL get-master-addr-by-name, then, on the same connection, subscribes to
 * +switch-master and waits. It asks again when a connection of redis.c is lost or finds
 * a replica where the master was (ROLE, READONLY), and goes to the next Sentinel of the
 * list when one does not answer within the deadline. When the address changes, it tells
 * redis.c, which moves every connection (store, pub/sub, roster) at once.
 *
 * The Sentinels are spoken to as redis_url says: over TLS for rediss:// (with the same
 * CA and client certificate), without AUTH (Sentinel's own requirepass is not
 * supported; redis_url's password is the data nodes'). */
#ifndef SESSIOND_REDIS_SENTINEL_H
#define SESSIOND_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include "redis_url.h"

#define SENTINEL_MAX 16
#define SENTINEL_DEFAULT_PORT 26379
#define SENTINEL_NAME_MAX 128

struct ev_loop;
struct redisReply;
typedef struct ssl_ctx_st SSL_CTX;

struct sentinel_addr {
    char host[REDIS_URL_HOST_MAX];
    int port;
};

/* ---- parsing (pure) ---- */

/* "host[:port],[v6]:port,...": up to SENTINEL_MAX addresses, port 26379 by default.
 * Returns how many, or -1 with err naming the entry at fault. */
int sentinel_list_parse(const char *text, struct sentinel_addr *out, int max, char *err,
                        size_t errlen);

/* A master's name: what Sentinel accepts in a config line (no space, no control byte). */
bool sentinel_name_ok(const char *name);

/* The reply to SENTINEL get-master-addr-by-name: 1 with the address, 0 when the
 * Sentinel knows no master by that name (nil), -1 when the reply is not one. */
int sentinel_addr_reply(const struct redisReply *r, struct sentinel_addr *out);

/* A +switch-master message, "name old-ip old-port new-ip new-port": 1 with the new
 * address when it is about name, 0 when about another master, -1 when malformed. */
int sentinel_switch_parse(const char *msg, size_t len, const char *name, struct sentinel_addr *out);

/* The reply to ROLE: true when it says master. */
bool sentinel_role_is_master(const struct redisReply *r);

/* The directives redis_sentinels (list; "" for none) and redis_master (name, checked
 * only with a list): how many Sentinels, or -1 with err naming the directive at fault.
 * The config's check and the watcher's setup both read them so. */
int sentinel_config(const char *list, const char *name, struct sentinel_addr out[SENTINEL_MAX],
                    char *err, size_t errlen);

/* ---- the watcher ---- */

/* The process's Sentinels and master name (list "" turns Sentinel off); tls as
 * redis_url's scheme. Called where the TLS context is made (the store's prepare), before
 * any connection. 0, or -1 with err. */
int redis_sentinel_setup(const char *list, const char *name, bool tls, char *err, size_t errlen);
bool redis_sentinel_on(void);

/* Called by redis.c when the master's address changes (or is first known). */
typedef void (*sentinel_moved_cb)(void);

/* Start the watcher on loop (once per process; later calls only return), with tls for
 * rediss:// (redis.c's context); timeout bounds every question to a Sentinel. */
void redis_sentinel_start(struct ev_loop *loop, SSL_CTX *tls, double timeout,
                          sentinel_moved_cb moved);

/* The master's address as last told; false while none is known. */
bool redis_sentinel_master(struct sentinel_addr *out);

/* Ask again (a connection was lost, or found a replica): at once unless a question is
 * already out. */
void redis_sentinel_ask(void);

/* Why no master is known, for messages. */
const char *redis_sentinel_cause(void);

/* Stop the watcher (a worker going away). */
void redis_sentinel_stop(void);

#endif
