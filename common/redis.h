/* redis: one Redis connection on a libev loop, as every user of Redis here wants it.
 *
 * Under it, common/redis_wire.c moves the bytes (in clear or TLS; hiredis parses the
 * replies). This module adds what each user would otherwise
 * repeat: the handshake (AUTH, with the URL's user if it has one; SELECT of the URL's
 * database; SCRIPT LOAD of the scripts it is given), a deadline for every command,
 * reconnects with jittered exponential backoff, and, for the users that ask for one, a
 * circuit breaker. The store, pub/sub's subscriber and pub/sub's
 * command connection each hold one; nothing else connects to Redis.
 *
 * A command without a reply at its deadline ends the connection at once (its socket is
 * closed, not shut down politely), and every command in flight then gets its callback
 * with NULL. Each callback runs exactly
 * once, never before the call that queued it returns.
 *
 * With Sentinel (common/redis_sentinel.h), every connect goes where Sentinel says the
 * master is, checks with ROLE that it still is one, and a READONLY reply drops the
 * connection to look again; when Sentinel announces a new master, every connection of
 * the process moves there at once.
 *
 * The circuit (when asked for) opens after REDIS_FAILURES_TO_OPEN error replies or
 * timeouts in a row, or when the connection is lost; after REDIS_OPEN_SECONDS, once
 * connected again, one PING goes through, and its success closes the circuit. The module
 * only reports the state: the user decides what an open circuit refuses. */
#ifndef SESSIOND_REDIS_H
#define SESSIOND_REDIS_H

#include <stdbool.h>
#include <stddef.h>

#include "redis_url.h"

#define REDIS_FAILURES_TO_OPEN 5
#define REDIS_OPEN_SECONDS 1.0
#define REDIS_SHA_HEX 40

struct ev_loop;
struct redis_conn;
struct redisReply;

/* A Lua script and the SHA-1 Redis knows it by (filled by redis_script_init). */
struct redis_script {
    const char *body;
    char sha[REDIS_SHA_HEX + 1];
};

enum redis_circuit { REDIS_CLOSED, REDIS_OPEN, REDIS_HALF_OPEN };

/* A reply, or NULL when Redis did not answer (down, lost, or past the deadline). The
 * reply is freed after the callback returns. */
typedef void (*redis_reply_cb)(void *arg, const struct redisReply *reply);
typedef void (*redis_ready_cb)(void *arg);

struct redis_opts {
    double timeout;                          /* seconds a command may wait for its reply */
    bool circuit;                            /* keep a circuit breaker */
    const struct redis_script *const *scripts; /* loaded at every (re)connect; may be NULL */
    size_t nscripts;
    redis_ready_cb on_ready; /* after every completed handshake; may be NULL */
    redis_reply_cb on_push;  /* subscriber: every reply to redis_subscribe_command */
    void *arg;               /* for on_ready and on_push */
};

/* The TLS context every rediss:// connection of this process uses, from PEM files (see
 * redis_tls_context in redis_wire.h); made again on each call. 0, or -1 with err. */
int redis_tls_setup(const char *ca, const char *cert, const char *key, char *err, size_t errlen);

/* Compute s's SHA-1 (OpenSSL) from body. 0, or -1 with err. */
int redis_script_init(struct redis_script *s, const char *body, char *err, size_t errlen);

/* Connect in the background: a Redis that is down is no error. NULL with err only when
 * out of memory. Not to be closed from inside one of its own callbacks. */
struct redis_conn *redis_open(struct ev_loop *loop, const struct redis_url *url,
                              const struct redis_opts *opts, char *err, size_t errlen);
void redis_close(struct redis_conn *rc);

/* A command (argv as redisFormatCommandArgv). With cb, its reply comes to cb; with cb
 * NULL, it is discarded. Either way the deadline applies: a Redis that does not answer a
 * publish is as stalled as one that does not answer a GET. Commands sent while the
 * handshake runs wait behind it. -1 (and no callback) when there is no
 * connection now. */
int redis_command(struct redis_conn *rc, redis_reply_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen);

/* EVALSHA s with nkeys keys among argv (argc of them, keys first); on a NOSCRIPT reply
 * (Redis lost its scripts) the same call again as EVAL, which also caches the script
 * anew; cb sees only the final reply. The arguments are copied. */
int redis_eval(struct redis_conn *rc, const struct redis_script *s, redis_reply_cb cb,
               void *arg, int nkeys, int argc, const char **argv, const size_t *argvlen);

/* redis_eval for a write that must be on replicas before it counts: WAIT replicas goes
 * once it has answered (waiting what is left of its deadline less 250 ms, or less 40%
 * of a short timeout), and cb gets the script's reply
 * only when that many replicas have the write; NULL, with redis_cause saying how many
 * did, when fewer had it in time. Commands sent after WAIT queue behind it. */
int redis_eval_replicated(struct redis_conn *rc, const struct redis_script *s, int replicas,
                          redis_reply_cb cb, void *arg, int nkeys, int argc,
                          const char **argv, const size_t *argvlen);

/* SUBSCRIBE, UNSUBSCRIBE and the like, whose replies (and then messages) all go to
 * opts.on_push, with no deadline. Only once ready; -1 otherwise. */
int redis_subscribe_command(struct redis_conn *rc, int argc, const char **argv,
                            const size_t *argvlen);

/* Drop the connection now (hard, as at a deadline) and reconnect after the backoff, as
 * after an outage. */
void redis_reset(struct redis_conn *rc);

/* Connected, with the handshake done. */
bool redis_ready(const struct redis_conn *rc);
/* Bytes of commands Redis has not been sent yet (0 while down). */
size_t redis_pending_output(const struct redis_conn *rc);
enum redis_circuit redis_circuit(const struct redis_conn *rc);
const char *redis_circuit_name(enum redis_circuit c);
/* Why Redis is unavailable, or was last: for health checks and error messages. */
const char *redis_cause(const struct redis_conn *rc);
/* "redis host:port" or "redis /path", for messages. */
const char *redis_where(const struct redis_conn *rc);

#endif
