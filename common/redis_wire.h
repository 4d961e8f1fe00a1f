/* redis_wire: one socket to Redis on a libev loop, in clear or in TLS; the bytes under
 * common/redis.c.
 *
 * hiredis 0.14 has no TLS, and its async context owns its socket, so TLS cannot be slid
 * under it. What hiredis does well stays in use: its reader parses replies into redisReply
 * trees (commands are written in RESP here, straight into the output buffer). The socket
 * is ours: a non-blocking connect (TCP or Unix), OpenSSL on top when asked, and libev
 * watchers on the fd. Owning the socket also makes a hard close a plain close(2), with no
 * graceful teardown to wait for.
 *
 * Replies are handed over in the order Redis sends them; matching them to commands (and
 * pushes to a subscriber) is the caller's business. After on_lost, nothing else comes;
 * the caller frees the wire, which it may do from inside any callback. */
#ifndef SESSIOND_REDIS_WIRE_H
#define SESSIOND_REDIS_WIRE_H

#include <stdbool.h>
#include <stddef.h>

#include "redis_url.h"

struct ev_loop;
struct redis_wire;
struct redisReply;
typedef struct ssl_ctx_st SSL_CTX;

struct redis_wire_ops {
    void (*on_open)(void *arg); /* connected, and the TLS handshake done; may be NULL */
    void (*on_reply)(void *arg, struct redisReply *r); /* r is the callee's to free */
    void (*on_lost)(void *arg, const char *why);       /* once; nothing comes after */
};

/* A TLS client context for rediss://: the server's certificate verified against ca (a
 * PEM file) or, when ca is NULL or "", the system's CAs; cert and key (PEM files, both or
 * neither) for a client certificate. NULL with err naming the file that failed. */
SSL_CTX *redis_tls_context(const char *ca, const char *cert, const char *key, char *err,
                           size_t errlen);

/* Start connecting to u (TLS when u->tls, with tls, which the caller keeps alive and
 * frees). NULL with err when it fails at once (no such host, no memory, no socket); a
 * refused connection comes later, as on_lost. */
struct redis_wire *redis_wire_open(struct ev_loop *loop, const struct redis_url *u,
                                   SSL_CTX *tls, const struct redis_wire_ops *ops, void *arg,
                                   char *err, size_t errlen);

/* Close at once (no callback), freeing what was queued. */
void redis_wire_free(struct redis_wire *w);

/* Queue one command (argv as redisFormatCommandArgv); it goes out as soon as the socket
 * is writable. Commands queued before on_open go out after the handshake. -1 when out of
 * memory or already lost. */
int redis_wire_send(struct redis_wire *w, int argc, const char **argv, const size_t *argvlen);

/* Read what the socket holds now, handing over its replies: for a caller about to judge
 * a reply late after its own loop stalled. */
void redis_wire_poll(struct redis_wire *w);

/* Is r the bulk string word, exactly those bytes? */
bool redis_reply_is(const struct redisReply *r, const char *word);

/* Bytes queued and not yet written. */
size_t redis_wire_pending(const struct redis_wire *w);

#endif
