/* conn: one client connection: its socket, watchers, buffers, timers and the HTTP/1.1
 * request cycle (parse, read the body, dispatch, write, keep alive or close).
 *
 * A connection owns everything it holds and has one way out: conn_close(), which stops
 * its watchers and closes its socket at once, while the memory is freed later by the
 * worker (so a callback that closes the connection may still look at it). */
#ifndef SESSIOND_CONN_H
#define SESSIOND_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "http_parser.h"

struct worker;
struct conn;
struct ssl_st;     /* OpenSSL's SSL, kept out of every file that includes this one */
struct ssl_ctx_st; /* SSL_CTX */

#define ROUTE_MAX_PARAMS 4
/* Room for the percent-decoded captures: as many of the longest kind (128-byte user and
 * channel names) as a route can have. */
#define ROUTE_PARAM_BYTES (ROUTE_MAX_PARAMS * 128)

/* One request being served. Strings point into the connection's input buffer, which is
 * not touched until the response is sent (or, for decoded captures, into param_bytes). */
struct request {
    struct conn *conn;
    struct http_request http;
    const char *body;
    size_t body_len;
    struct http_str params[ROUTE_MAX_PARAMS]; /* {captures} of the matched route,
                                               * percent-decoded */
    int nparams;
    char param_bytes[ROUTE_PARAM_BYTES]; /* where the captures with escapes are decoded */
    ev_tstamp started;
    bool gzip_ok;       /* the client accepts gzip */
    bool head_only;     /* HEAD: send headers, no body */
    void *handler_data; /* for handlers that answer later */
    double store_started; /* when the current store call began (metrics) */
    uint64_t inflight_key; /* counted under max_inflight_per_user; 0 = not counted */
    /* The HTTP cycle's state, kept here rather than in struct conn: a connection that
     * leaves HTTP (an idle WebSocket, by the tens of thousands) frees it with the
     * request. */
    struct buf in;       /* the connection's input: heads and bodies */
    const char *head_at; /* where the input buffer was when the head was parsed */
    struct http_chunked chunked;
    size_t body_have;   /* decoded body bytes so far, stored right after the head */
    size_t in_consumed; /* raw bytes (head + encoded body) of the current request */
    ev_tstamp deadline; /* when the current phase times out */
};

enum conn_state {
    CONN_HANDSHAKE, /* TLS: the handshake is under way, within tls_handshake_timeout */
    CONN_HEAD,    /* waiting for (more of) a request head */
    CONN_BODY,    /* reading a request body */
    CONN_PENDING, /* a handler has the request and will answer later */
    CONN_LINGER,  /* response sent, write side shut, draining what the client still sends */
    CONN_UPGRADED, /* it left HTTP: its protocol's hooks have it */
};

/* What a protocol that takes a connection over (conn_upgrade) does with its events, as
 * nginx swaps a connection's read and write handlers: conn.c keeps the socket, the
 * watchers and the one free path, and hands each event to these. */
struct conn_proto {
    void (*read)(struct conn *c);  /* the socket is readable */
    void (*write)(struct conn *c); /* the socket has room again */
    void (*timer)(struct conn *c); /* the timer set with conn_set_timer fired */
    void (*drain)(struct conn *c); /* the worker drains */
    /* Bytes the client sent right behind the upgrade request, once, at the upgrade. */
    void (*input)(struct conn *c, const void *p, size_t len);
    void (*close)(struct conn *c); /* the connection is closing, for any reason */
    void (*free)(void *data);      /* the connection's memory goes: the protocol's too */
};

struct conn {
    struct worker *w;
    int fd;
    /* Small fields packed into the word after fd: an idle WebSocket is mostly this struct,
     * so every 16 bytes (glibc's chunk step) count tens of thousands of times over. */
    uint8_t state; /* enum conn_state */
    bool closed : 1;
    bool close_after : 1;          /* close once the output is written */
    bool in_process : 1;           /* inside conn_process: responses must not re-enter it */
    bool reading : 1;              /* input is waited for (conn_watch) */
    bool writing : 1;              /* room for output is waited for (conn_watch) */
    bool eof : 1;                  /* the client shut its side: answer what was sent, then close */
    bool peer_loopback : 1;        /* 127.0.0.0/8, ::1 or a Unix socket: all that is kept of the
                                    * peer's address (ip_key has the rest that matters) */
    bool ip_held : 1;              /* counted under max_connections_per_ip */
    bool tls_ok : 1;               /* handshake done and no fatal error: close_notify may be sent */
    bool tls_sniffed : 1;          /* the first byte was looked at: TLS, not plain HTTP */
    bool tls_read_wants_write : 1; /* SSL_read needs the socket writable before it can go on */
    bool tls_write_wants_read : 1; /* SSL_write needs the socket readable before it can go on */
    ev_io io;                      /* one watcher for both directions (conn_watch) */
    ev_timer timer;
    struct buf out;
    struct request *req;            /* the request being served, with the HTTP cycle's state; freed
                                     * once the connection is upgraded, which needs none of it */
    const struct conn_proto *proto; /* once upgraded: where its events go */
    void *proto_data;     /* the protocol's state, handed to proto->free */
    struct ssl_st *ssl;   /* TLS connections only; NULL on the plain path */
    uint64_t ip_key;      /* the peer's key in the instance's limits; 0 = not limited */
    struct conn *prev, *next; /* in the worker's list */
};

/* Adopt an accepted socket; with tls set, it starts with a TLS handshake in that context.
 * Returns the connection or NULL (the socket is then closed). */
struct conn *conn_new(struct worker *w, int fd, const struct sockaddr_storage *peer,
                      struct ssl_ctx_st *tls);

/* TLS halves of conn_recv and conn_send. */
ssize_t conn_tls_recv(struct conn *c, void *p, size_t len);
ssize_t conn_tls_send(struct conn *c, const void *p, size_t len);

/* The one seam between the connection's bytes and the socket, for HTTP and WebSocket
 * alike: both return as read(2) and send(2) do, -1 with errno EAGAIN when they must wait
 * for the socket (the TLS half arranges for the right watcher itself). The plain path
 * stays a direct system call. */
static inline ssize_t
conn_recv(struct conn *c, void *p, size_t len)
{
    if (c->ssl == NULL)
        return read(c->fd, p, len);
    return conn_tls_recv(c, p, len);
}

static inline ssize_t
conn_send(struct conn *c, const void *p, size_t len)
{
    if (c->ssl == NULL)
        return send(c->fd, p, len, MSG_NOSIGNAL);
    return conn_tls_send(c, p, len);
}

/* The key of a peer address for the per-address limits: the whole IPv4 address, or an
 * IPv6 address's /64 (what one subscriber is usually given); 0 when no per-address limit
 * is configured or the peer is exempt (loopback with limit_exempt_loopback, Unix). */
uint64_t conn_peer_key(const struct worker *w, const struct sockaddr_storage *peer);

/* Answer status at once and close: the response is written, then the connection
 * lingers (reads and drops what the client sends) so that the kernel does not answer
 * the client's unread request with a reset that would destroy the response. */
void conn_refuse(struct conn *c, int status, const char *extra_headers, const char *code,
                 const char *why);

/* Close now (stop watchers, close the socket); the memory is freed by the worker later. */
void conn_close(struct conn *c);

/* Free a closed connection's memory (the worker's reaper calls this). */
void conn_free(struct conn *c);

/* The worker started draining: finish what is in flight, close what is idle. */
void conn_drain(struct conn *c);

/* Queue a complete response (head and body already formatted in the connection's output
 * buffer by the http module) and move on to the next request. keep_alive false closes the
 * connection after the write. */
void conn_response_done(struct conn *c, int status, bool keep_alive);

/* Send what the output holds: 1 when all of it went, 0 when the socket is full (the
 * write watcher then waits for room), -1 when the connection failed. */
int conn_write_out(struct conn *c);

/* Hand the connection, whose current request is answered (the protocol's response head
 * is in the output already), to a protocol for good: the request is counted with status
 * and freed, the connection is counted as a WebSocket (the one protocol we upgrade to),
 * reading starts, and what the client sent behind the request goes to proto->input, else
 * the output is written with proto->write. The connection may be closed on return. */
void conn_upgrade(struct conn *c, const struct conn_proto *proto, void *data, int status);

/* An upgraded connection's one timer: fires proto->timer after secs. */
void conn_set_timer(struct conn *c, double secs);

/* Write what the output holds, as conn_write_out; once all of it went, stop waiting for
 * room and free the output buffer, so that an idle connection holds no output memory. */
int conn_write_all(struct conn *c);

/* Close with a reset: the kernel drops what it still queues for a reader that is behind,
 * at once, instead of keeping a socket buffer's worth for as long as it takes. */
void conn_reset(struct conn *c);

/* Whether the peer is on loopback (127.0.0.0/8, ::1, or a Unix socket). */
bool conn_peer_is_loopback(const struct conn *c);

#endif
