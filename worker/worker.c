#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "buf.h"
#include "channels.h"
#include "conn.h"
#include "http.h"
#include "list.h"
#include "log.h"
#include "privs.h"
#include "store.h"
#include "tls.h"
#include "util.h"
#include "ws.h"

/* How long a worker that holds more than its share of connections leaves a new
 * connection in the shared queue for a sibling before taking it itself. */
#define ACCEPT_YIELD 0.001
/* How long to stop accepting when out of file descriptors. */
#define ACCEPT_EMFILE_PAUSE 0.1
/* Seconds between two warnings about running out of descriptors. */
#define FD_SHORT_QUIET 60.
#define ACCEPT_BATCH 32
/* Expired sessions are deleted this many per transaction, for at most SWEEP_BUDGET
 * seconds per second, so that a pile of expiries never stalls the loop. */
#define SWEEP_BATCH 256
#define SWEEP_BUDGET 0.005

static void accept_start(struct worker *w);
static void accept_stop(struct worker *w);

const char *
worker_date(struct worker *w)
{
    ev_tstamp now = ev_now(w->loop);
    if ((time_t)now != (time_t)w->date_at || w->date[0] == '\0') {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        /* 29 bytes for any four-digit year: it always fits, so strftime cannot fail. */
        (void)strftime(w->date, sizeof w->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_at = now;
    }
    return w->date;
}

/* Connections held by this worker and by the workers that are accepting, for balancing. */
static bool
holds_more_than_share(const struct worker *w)
{
    uint64_t sum = 0, n = 0;
    for (int i = 0; i < sb_nslots(w->sb); i++) {
        const struct sb_slot *s = &w->sb->slot[i];
        if (!sb_get(&s->accepting))
            continue;
        sum += sb_get(&s->conns_http) + sb_get(&s->conns_ws);
        n++;
    }
    uint64_t mine = sb_get(&w->slot->conns_http) + sb_get(&w->slot->conns_ws);
    return n > 1 && mine * n > sum;
}

static uint64_t
instance_connections(const struct worker *w)
{
    uint64_t sum = 0;
    for (int i = 0; i < sb_nslots(w->sb); i++) {
        const struct sb_slot *s = &w->sb->slot[i];
        if (sb_get(&s->state) != SB_FREE)
            sum += sb_get(&s->conns_http) + sb_get(&s->conns_ws);
    }
    return sum;
}

/* A connection over a limit: say so and close, rather than leave the client in the
 * queue or make it wait for a request it would be refused anyway. */
static void
refuse(struct worker *w, int fd, bool tls, int status, const char *code, const char *message)
{
    if (tls) { /* no handshake is spent on a client that cannot be served */
        close(fd);
        sb_add(&w->slot->c.status[sb_status_index(status)], 1);
        return;
    }
    char body[256];
    size_t len = http_error_json(body, sizeof body, code, message);
    struct buf msg = {0};
    int rc = http_head(&msg, 1, status, worker_date(w));
    rc |= buf_puts(&msg, "Content-Type: application/json\r\nContent-Length: ");
    rc |= buf_put_u64(&msg, len);
    rc |= buf_puts(&msg, "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n");
    rc |= buf_append(&msg, body, len);
    if (rc == 0 && send(fd, msg.p, msg.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("refusing a connection: %s", strerror(errno));
    buf_free(&msg);
    close(fd);
    sb_add(&w->slot->c.status[sb_status_index(status)], 1);
}

/* Adopt an accepted socket, counted under max_connections_per_ip. */
static void
adopt(struct worker *w, int fd, const struct sockaddr_storage *peer, SSL_CTX *tls)
{
    const struct conf *cf = w->conf;
    uint64_t key = conn_peer_key(w, peer);
    bool held = key != 0 && cf->max_connections_per_ip > 0;
    bool over = held && !limit_acquire(&w->sb->limits, key,
                                       (unsigned)cf->max_connections_per_ip);
    static const char over_why[] =
        "This address holds max_connections_per_ip connections already.";
    if (over && tls != NULL) {
        refuse(w, fd, true, 429, "too_many_connections", over_why);
        return;
    }
    struct conn *c = conn_new(w, fd, peer, tls);
    if (c == NULL) {
        if (held && !over)
            limit_release(&w->sb->limits, key);
        return;
    }
    c->ip_key = key;
    c->ip_held = held && !over;
    if (over) /* through the connection, so that the answer is not lost to a reset */
        conn_refuse(c, 429, "Retry-After: 1\r\n", "too_many_connections", over_why);
}

/* Accept up to max connections from one listener. With yield set, stop as soon as this
 * worker holds more than its share, leaving the rest to its siblings. */
static void
accept_batch(struct worker *w, const struct worker_accept *a, int max, bool yield)
{
    for (int i = 0; i < max && !w->draining; i++) {
        if (yield && holds_more_than_share(w)) {
            accept_stop(w);
            ev_timer_set(&w->accept_pause, ACCEPT_YIELD, 0.);
            ev_timer_start(w->loop, &w->accept_pause);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int fd = accept4(a->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: accept would fail at once again, so pause instead
                 * of spinning. Clients wait in the kernel's queue meanwhile. A server at
                 * its limit flaps in and out of shortage as connections close, so say so
                 * at most once a minute, not at every flap. */
                if (!w->fd_short && ev_now(w->loop) >= w->fd_quiet_until) {
                    log_warn("accept (pausing until connections close; see max_connections "
                             "and the open-file limit)");
                    w->fd_said = true;
                    w->fd_quiet_until = ev_now(w->loop) + FD_SHORT_QUIET;
                }
                w->fd_short = true;
                accept_stop(w);
                ev_timer_set(&w->accept_pause, ACCEPT_EMFILE_PAUSE, 0.);
                ev_timer_start(w->loop, &w->accept_pause);
            }
            return; /* EAGAIN: the queue is empty (or a sibling was faster) */
        }
        sb_add(&w->slot->c.accepted, 1);
        w->fd_short = false;
        if (w->fd_said) {
            w->fd_said = false;
            log_info("accepting again");
        }
        if (instance_connections(w) >= (uint64_t)w->conf->max_connections) {
            refuse(w, fd, a->tls, 503, "over_capacity", "The server is at max_connections.");
            continue;
        }
        adopt(w, fd, &peer, a->tls ? w->tls : NULL);
    }
}

static void
on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct worker_accept *a = container_of(io, struct worker_accept, io);
    accept_batch(a->w, a, ACCEPT_BATCH, true);
}

/* The yield (or an fd shortage) is over. A connection that no sibling took in that time
 * is taken now, so that a busy or stuck sibling delays it by one pause at most; but only
 * one per listener, after which the share check applies again. Taking a whole batch here
 * let a worker that had yielded sweep up a burst (seen with 4 workers on 2 cores). */
static void
on_accept_pause(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = container_of(t, struct worker, accept_pause);
    for (int i = 0; i < w->nacc; i++)
        accept_batch(w, &w->acc[i], 1, false);
    if (!ev_is_active(&w->accept_pause))
        accept_start(w);
}

static void
accept_start(struct worker *w)
{
    if (w->draining)
        return;
    for (int i = 0; i < w->nacc; i++)
        ev_io_start(w->loop, &w->acc[i].io);
    sb_set(&w->slot->accepting, 1);
}

static void
accept_stop(struct worker *w)
{
    for (int i = 0; i < w->nacc; i++)
        ev_io_stop(w->loop, &w->acc[i].io);
}

void
worker_conn_opened(struct worker *w, struct conn *c)
{
    LIST_PUSH(w->conns, c);
    w->nconns++;
    sb_add(&w->slot->conns_http, 1);
}

void
worker_conn_closed(struct worker *w, struct conn *c)
{
    LIST_UNLINK(w->conns, c);
    c->next = w->closed; /* the closed list is singly linked, through next alone */
    w->closed = c;
    w->nconns--;
    uint64_t *count = c->state == CONN_UPGRADED ? &w->slot->conns_ws : &w->slot->conns_http;
    sb_set(count, sb_get(count) - 1);
    if (w->draining && w->nconns == 0)
        ev_break(w->loop, EVBREAK_ALL);
}

/* Free the connections closed since the last iteration, except those a handler still
 * holds (they are freed once it answers). */
void
worker_reap(struct worker *w)
{
    struct conn **pp = &w->closed;
    while (*pp != NULL) {
        struct conn *c = *pp;
        if (c->state == CONN_PENDING) {
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        conn_free(c);
    }
}

static void
on_reap(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    worker_reap(container_of(p, struct worker, reap));
}

static double
cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* The cpu figure covers at least this long (beats are a quarter of worker_timeout, so
 * they can be short): a window closes on the first beat past it. A little under a second,
 * so that one-second beats that fire a hair early still close one window each. */
#define CPU_WINDOW 0.9

static void
update_cpu(struct worker *w, double now, double cpu)
{
    if (now > w->cpu_prev_at)
        sb_set(&w->slot->load_permille,
               (uint64_t)(1000.0 * (cpu - w->cpu_prev) / (now - w->cpu_prev_at)));
    w->cpu_prev = cpu;
    w->cpu_prev_at = now;
    if (w->cpu_win_at > 0 && now - w->cpu_win_at < CPU_WINDOW)
        return;
    if (w->cpu_win_at > 0)
        sb_set(&w->slot->cpu_permille,
               (uint64_t)(1000.0 * (cpu - w->cpu_win) / (now - w->cpu_win_at)));
    w->cpu_win = cpu;
    w->cpu_win_at = now;
}

/* Tell the master we are alive, and refresh the figures it and /api/health report. */
static void
on_heartbeat(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = container_of(t, struct worker, heartbeat);
    sb_set(&w->slot->heartbeat_ms, (uint64_t)sb_now_ms());
    sb_set(&w->slot->rss_bytes, proc_rss_bytes());
    chan_worker_stats(w);
    update_cpu(w, ev_time(), cpu_seconds());
    (void)loop;
}

/* Readers never see an expired session; this only reclaims the space. One worker does
 * it (the first), since they all share the store. */
static void
on_sweep(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = container_of(t, struct worker, sweep);
    double until = ev_time() + SWEEP_BUDGET;
    int n;
    do
        n = store_sweep(w->store, (int64_t)time(NULL), SWEEP_BATCH);
    while (n == SWEEP_BATCH && ev_time() < until);
    if (n < 0 && !w->sweep_failing)
        log_warnx("expiry sweep failed: %s (said once until it works again)",
                  store_last_error(w->store));
    else if (n >= 0 && w->sweep_failing)
        log_info("expiry sweep works again");
    w->sweep_failing = n < 0;
}

static void
on_drain_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = container_of(t, struct worker, drain_timer);
    log_warnx("shutdown_timeout reached with %u connection(s) open; closing them", w->nconns);
    ev_break(loop, EVBREAK_ALL);
}

/* The whole instance drains: stop listening for every process at once, so that a new
 * connection is refused rather than left in the kernel's queue, where no process would
 * accept it and the master's exit would reset it. A proxy retries a refused connection
 * on another instance even for a POST, since nothing was sent; a reset after the request
 * went out it retries only for idempotent methods. What is queued already is accepted
 * first, to be served here with "Connection: close". shutdown() acts on the socket that
 * the master and the siblings share (close() would drop this process's reference only);
 * a sibling that got there first leaves ENOTCONN. */
static void
stop_listening(struct worker *w)
{
    for (int i = 0; i < w->nacc; i++) {
        accept_batch(w, &w->acc[i], INT_MAX, false);
        if (shutdown(w->acc[i].fd, SHUT_RD) < 0 && errno != ENOTCONN)
            log_warn("shutdown of a listening socket");
    }
}

/* Stop accepting, finish what is in flight, close what is idle, and exit when empty or at
 * shutdown_timeout. When only this worker drains (a reload, a retirement, SIGTTOU), the
 * listening sockets stay open in the master and the other workers, so connections
 * waiting in the queue are taken by them. */
static void
worker_drain(struct worker *w)
{
    if (w->draining)
        return;
    if (w->reload != NULL || sb_get(&w->sb->draining) != 0)
        stop_listening(w);
    w->draining = true;
    w->drain_started = ev_now(w->loop);
    accept_stop(w);
    ev_timer_stop(w->loop, &w->accept_pause);
    sb_set(&w->slot->accepting, 0);
    sb_set(&w->slot->state, SB_DRAINING);
    if (w->reload != NULL)
        sb_set(&w->sb->draining, 1); /* alone, this process is the instance */
    log_info("draining %u connection(s)", w->nconns);
    for (struct conn *c = w->conns; c != NULL; c = c->next)
        conn_drain(c);
    /* Leave the master a moment after our own deadline to kill us if we hang. */
    double limit = (double)w->conf->shutdown_timeout_ms / 1000.0 - 0.25;
    ev_timer_set(&w->drain_timer, limit > 0.05 ? limit : 0.05, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
    if (w->nconns == 0)
        ev_break(w->loop, EVBREAK_ALL);
}

/* Single-process mode has no master: SIGHUP re-reads the config here and applies it to
 * the next requests. Listeners stay as they are; changing them needs a restart. */
static void
worker_reload(struct worker *w)
{
    char err[CONF_ERR_LEN];
    struct conf *next = conf_reread(w->reload, err, sizeof err);
    if (next != NULL && conf_reload_check(w->conf, next, err, sizeof err) < 0) {
        free(next);
        next = NULL;
    }
    if (next == NULL) {
        log_errorx("reload refused, keeping the running configuration: %s", err);
        return;
    }
    SSL_CTX *tls;
    if (tls_ctx_build(next, &tls, err, sizeof err) < 0) {
        log_errorx("reload refused, keeping the running configuration: %s", err);
        free(next);
        return;
    }
    bool same_listen = next->nlisten == w->conf->nlisten;
    for (int i = 0; same_listen && i < next->nlisten; i++)
        same_listen = strcmp(next->listen[i].text, w->conf->listen[i].text) == 0 &&
                      next->listen[i].tls == w->conf->listen[i].tls;
    if (!same_listen)
        log_warnx("listen changes need a restart in single-process mode; keeping the sockets");
    if (log_configure(next->log_file, next->log_level, next->log_format) < 0)
        log_warn("cannot open log file %s", next->log_file);
    if (conf_key_warning(next, err, sizeof err)) log_warnx("%s", err);
    free(w->owned_conf);
    w->owned_conf = next;
    w->conf = next;
    /* Connections hold a reference to the context they started with; new ones get the
     * new certificate. A config without TLS listeners keeps the old context, since the
     * sockets (and their flags) stay as they were. */
    if (tls != NULL) {
        SSL_CTX_free(w->owned_tls);
        w->owned_tls = tls;
        w->tls = tls;
    }
    sb_set(&w->sb->workers_target, 1);
    log_info("configuration reloaded");
}

/* A worker never forks, so a child can only be an orphan handed to us: in single-process
 * mode as PID 1 of a container, every process of the namespace whose parent exits. Reap
 * them all, quietly, so that none stays a zombie. */
static void
reap_orphans(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void
on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)revents;
    struct worker *w = s->data;
    switch (s->signum) {
    case SIGTERM:
    case SIGINT:
        worker_drain(w);
        break;
    case SIGQUIT:
        ev_break(loop, EVBREAK_ALL);
        break;
    case SIGUSR1:
        if (log_reopen() < 0)
            log_warn("reopening the log file");
        break;
    case SIGHUP:
        if (w->reload != NULL)
            worker_reload(w);
        break;
    case SIGCHLD:
        reap_orphans();
        break;
    case SIGUSR2:
        /* A worker reached by a signal to the whole group (systemctl kill) ignores it. */
        if (w->reload != NULL)
            log_warnx("USR2 ignored: a binary upgrade needs a master (clustering on); restart "
                      "to run a new binary");
        break;
    default:
        break;
    }
}

static void
watch_signals(struct worker *w)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGCHLD, SIGUSR2};
    _Static_assert(ARRAY_LEN(sigs) <= ARRAY_LEN(((struct worker *)0)->sig), "room for each");
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++) {
        ev_signal_init(&w->sig[i], on_signal, sigs[i]);
        w->sig[i].data = w;
        ev_signal_start(w->loop, &w->sig[i]);
        ev_unref(w->loop);
    }
}

static void
worker_free(struct worker *w)
{
    while (w->conns != NULL)
        conn_close(w->conns);
    /* A drain cut short by its deadline can leave requests with a handler: the store's
     * last callbacks (and the test hooks') answer them now, to closed connections, so
     * that the reaper below frees those too. */
    chan_worker_stop(w);
    ws_worker_stop(w);
    if (w->store != NULL)
        store_close(w->store);
    w->store = NULL;
#ifdef SESSIOND_TEST_HOOKS
    api_debug_release(w->loop);
#endif
    worker_reap(w);
    if (w->gz != NULL) {
        deflateEnd(w->gz);
        free(w->gz);
    }
    free(w->owned_conf);
    SSL_CTX_free(w->owned_tls);
    buf_free(&w->scratch);
    ev_loop_destroy(w->loop);
}

#ifdef SESSIOND_TEST_HOOKS
/* Test hook: a worker that dies at start while this file exists (a crash loop). */
static void
test_crash_at_start(void)
{
    const char *path = getenv("SESSIOND_TEST_CRASH_FILE");
    if (path != NULL && access(path, F_OK) == 0)
        _exit(1);
}
#endif

int
worker_run(const struct worker_params *p)
{
    struct worker w = {0};
    w.conf = p->conf;
    w.sb = p->sb;
    w.slot = &p->sb->slot[p->slot];
    w.id = (int)sb_get(&w.slot->id);
    w.reload = p->reload;
    w.tls = p->tls;
    log_set_process(p->reload ? "sessiond" : "worker", p->reload ? -1 : w.id);
#ifdef SESSIOND_TEST_HOOKS
    test_crash_at_start();
#endif
    (void)signal(SIGPIPE, SIG_IGN);
    w.loop = ev_loop_new(EVFLAG_AUTO);
    if (w.loop == NULL) {
        log_errorx("cannot create the event loop");
        return WORKER_EXIT_FATAL;
    }
    char err[CONF_ERR_LEN];
    if (privs_drop(w.conf, err, sizeof err) < 0) {
        log_errorx("cannot run as user %s: %s", w.conf->user, err);
        ev_loop_destroy(w.loop);
        return WORKER_EXIT_FATAL;
    }
    w.store = store_open(w.conf, w.loop, err, sizeof err);
    if (w.store == NULL) {
        log_errorx("cannot open the session store: %s", err);
        ev_loop_destroy(w.loop);
        return WORKER_EXIT_FATAL;
    }
    if (ws_worker_start(&w, err, sizeof err) < 0 || chan_worker_start(&w, err, sizeof err) < 0) {
        log_errorx("cannot start the realtime side: %s", err);
        chan_worker_stop(&w);
        ws_worker_stop(&w);
        store_close(w.store);
        ev_loop_destroy(w.loop);
        return WORKER_EXIT_FATAL;
    }
    watch_signals(&w);
    for (int i = 0; i < p->listeners->n; i++) {
        struct worker_accept *a = &w.acc[w.nacc++];
        a->fd = p->listeners->l[i].fd;
        a->tls = p->listeners->l[i].addr.tls;
        a->w = &w;
        ev_io_init(&a->io, on_accept, a->fd, EV_READ);
    }
    ev_init(&w.accept_pause, on_accept_pause);
    ev_init(&w.drain_timer, on_drain_timeout);
    ev_timer_init(&w.sweep, on_sweep, 1.0, 1.0);
    if (w.id == 0) {
        ev_timer_start(w.loop, &w.sweep);
        ev_unref(w.loop);
    }
    ev_prepare_init(&w.reap, on_reap);
    ev_prepare_start(w.loop, &w.reap);
    ev_unref(w.loop);
    double beat = (double)w.conf->worker_timeout_ms / 4000.0;
    ev_timer_init(&w.heartbeat, on_heartbeat, 0., beat < 1.0 ? beat : 1.0);
    ev_timer_again(w.loop, &w.heartbeat);
    on_heartbeat(w.loop, &w.heartbeat, 0);

    sb_set(&w.slot->pid, (uint64_t)getpid());
    sb_set(&w.slot->state, SB_RUNNING);
    accept_start(&w);
    log_debug("serving");
    log_set_echo(false); /* single-process mode: started; from now on errors are the log's */
    ev_run(w.loop, 0);

    sb_set(&w.slot->accepting, 0);
    log_info("exiting (%u connection(s) left open)", w.nconns);
    worker_free(&w);
    return 0;
}
