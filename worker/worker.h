/* worker: one process, one libev loop, serving connections accepted from the listeners it
 * inherited from the master. A worker never forks. */
#ifndef SESSIOND_WORKER_H
#define SESSIOND_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <zlib.h>

#include <openssl/ssl.h>

#include "buf.h"
#include "conf.h"
#include "listener.h"
#include "scoreboard.h"

/* Exit status a worker uses for "fatal: do not respawn me" (nginx uses 2 as well). */
#define WORKER_EXIT_FATAL 2

/* Re-reads the config in single-process mode (no master to do it). */
typedef conf_loader worker_reload_fn;

struct worker_params {
    const struct conf *conf;
    const struct listener_set *listeners;
    struct scoreboard *sb;
    int slot;
    worker_reload_fn reload; /* NULL when a master supervises us */
    SSL_CTX *tls;            /* for listeners with the tls flag; NULL if there are none */
};

struct conn;
struct store;
struct ws_worker;
struct chan_worker;

struct worker_accept {
    ev_io io;
    int fd;
    bool tls;
    struct worker *w;
};

struct worker {
    struct ev_loop *loop;
    const struct conf *conf;
    struct conf *owned_conf; /* a config reloaded in single-process mode, else NULL */
    SSL_CTX *tls;            /* the master's context, inherited at fork */
    SSL_CTX *owned_tls;      /* one rebuilt by a reload in single-process mode, else NULL */
    struct scoreboard *sb;
    struct sb_slot *slot;
    int id;
    worker_reload_fn reload;

    struct worker_accept acc[CONF_MAX_LISTEN];
    int nacc;
    ev_timer accept_pause; /* backing off so that a less loaded sibling takes a connection */
    ev_timer heartbeat;
    ev_timer drain_timer;
    ev_prepare reap;      /* frees connections closed during the loop iteration */
    ev_signal sig[7];

    struct conn *conns;   /* every open connection (for drain) */
    struct conn *closed;  /* closed, waiting to be freed by reap */
    unsigned nconns;
    bool draining;
    bool fd_short;            /* accept is paused for want of descriptors */
    bool fd_said;             /* ... and this shortage was logged */
    ev_tstamp fd_quiet_until; /* shortages before this are not logged again */
    double drain_started;

    char date[40];        /* "Sun, 06 Nov 1994 08:49:37 GMT", refreshed once a second */
    ev_tstamp date_at;
    z_stream *gz;         /* one deflate state reused by every response of this worker */
    struct buf scratch;   /* for building a response body; handlers reuse it */
    struct store *store;  /* sessions */
    struct ws_worker *ws; /* the realtime side: the WebSocket transport */
    struct chan_worker *chan; /* channels, the bus, the roster */
    ev_timer sweep;       /* deletes expired sessions, a batch at a time */
    bool sweep_failing;   /* the last sweep failed: said once, and its recovery too */
    uint64_t sessions_active; /* the store's last count */
    ev_tstamp sessions_counted_at;
    bool store_used;          /* a handler used the store since that count */

    double cpu_prev;      /* for the load figure */
    double cpu_prev_at;
    double cpu_win;       /* for the cpu figure: CPU seconds and time at its window's start */
    double cpu_win_at;
};

/* Run a worker to its end; returns the process exit status. */
int worker_run(const struct worker_params *p);

/* The cached Date header value (for responses). */
const char *worker_date(struct worker *w);

/* Connections: bookkeeping the conn module asks of its worker. */
void worker_conn_opened(struct worker *w, struct conn *c);
void worker_conn_closed(struct worker *w, struct conn *c);
/* Free the connections closed so far, except those a handler still holds: what the
 * loop does once per iteration, and what a harness without the loop calls itself. */
void worker_reap(struct worker *w);

#endif
