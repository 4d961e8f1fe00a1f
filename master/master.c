#include "master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cores.h"
#include "history.h"
#include "instance_lock.h"
#include "listener.h"
#include "log.h"
#include "notify.h"
#include "pidfile.h"
#include "privs.h"
#include "roster.h"
#include "scoreboard.h"
#include "store.h"
#include "tls.h"
#include "upgrade.h"
#include "util.h"

/* The embedded store's channel history: created or checked before any worker opens it. */
static int
history_prepare_conf(const struct conf *c, char *err, size_t errlen)
{
    char path[sizeof c->store_path + 16];
    if (strcmp(c->store, "lmdb") != 0)
        return 0;
    if (history_path(c->store_path, path, sizeof path) < 0) {
        errf(err, errlen, "store_path is too long for its history file");
        return -1;
    }
    return history_prepare(path, (size_t)c->history_max_bytes, err, errlen);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
/* A worker leaves by _exit, which skips LeakSanitizer's check at exit: run it here, so
 * that a sanitized build reports a worker's leaks as it does the master's. */
static void
leak_check(void)
{
    __lsan_do_leak_check();
}
#else
static void
leak_check(void)
{
}
#endif

#define TICK 0.1                 /* watchdog, handovers, memory limits */
#define READY_POLL 0.005         /* while a start, reload or upgrade waits for its workers */
#define QUIT_GRACE 1.0           /* SIGQUIT: how long workers get before SIGKILL */
/* At start, how long a store_path still held waits to be let go: an instance killed just
 * before (a restart after kill -9) is gone only once the kernel has ended its processes. */
#define LOCK_WAIT_MS 1000

struct child {
    pid_t pid;          /* 0: the slot is unused */
    int id;
    uint64_t gen;
    double started;
    bool retiring;      /* replaced or no longer wanted: drain once its successor serves */
    double term_at;     /* when SIGTERM was sent (0: not yet) */
};

struct respawn {
    double delay;       /* current backoff, seconds (0: none) */
    double at;          /* when to start it (0: nothing scheduled) */
};

struct master {
    struct ev_loop *loop;
    struct conf *conf;
    worker_reload_fn reload;
    struct listener_set ls;
    SSL_CTX *tls;      /* built here before any fork; each generation's workers inherit it */
    int lock;          /* instance_lock of conf->store_path; workers inherit it (-1: none) */
    struct upgrade_from from; /* the master this one replaces, if it is an upgrade */
    int roster_base;          /* sb->roster_base */
    /* USR2: the new master while it starts (pid 0: none), the pipe it says "serving" on,
     * and how long it may take. */
    struct {
        pid_t pid;
        ev_io ready;
        ev_timer timeout;
    } next;
    bool handed_over;  /* a new master serves: we drain, and leave it the sockets */
    struct scoreboard *sb;
    struct child kids[SB_SLOTS]; /* indexed by scoreboard slot */
    struct respawn respawn[CONF_MAX_WORKERS];
    /* Per worker id, how often it was respawned after dying on its own. Unlike respawn,
     * kept across reloads: it is the worker's history that -s status shows. */
    uint64_t restarts[CONF_MAX_WORKERS];
    int target;
    uint64_t gen;
    ev_signal sig[10];
    int nsig;
    ev_timer tick;
    ev_timer ready_poll;
    ev_timer stop_timer;
    bool stopping;
    int exit_status;
    /* sd_notify: READY=1 is owed (at start, after a reload) until every worker of the
     * current generation serves; serving is the count last reported in STATUS=. */
    bool ready_owed;
    int serving;
};

static double
now(const struct master *m)
{
    return ev_now(m->loop);
}

static int
workers_wanted(const struct conf *c)
{
    return c->workers > 0 ? c->workers : cores_available();
}

static const char *
describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "ended with wait status %d", status);
    return buf;
}

/* In the new worker: forget everything of the master's loop and signal handling, make
 * sure we die with the master, and serve. Never returns. */
static _Noreturn void
become_worker(struct master *m, int slot, pid_t master_pid)
{
    /* Drain, do not just vanish, if the master is killed. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master_pid)
        _exit(0);
    for (int i = 0; i < m->nsig; i++)
        ev_signal_stop(m->loop, &m->sig[i]);
    ev_loop_destroy(m->loop);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct worker_params p = {
        .conf = m->conf, .listeners = &m->ls, .sb = m->sb, .slot = slot, .reload = NULL,
        .tls = m->tls};
    int status = worker_run(&p);
    leak_check();
    _exit(status);
}

/* A worker could not be started (no slot, fork failed): try again after a delay
 * rather than never, and rather than in a tight loop. */
static int
spawn_later(struct master *m, int id)
{
    if (id < CONF_MAX_WORKERS)
        m->respawn[id].at = now(m) + (double)m->conf->restart_delay_ms / 1000.0;
    return -1;
}

static int
spawn(struct master *m, int id)
{
    int slot = sb_claim(m->sb, id, m->gen);
    if (slot < 0) {
        log_errorx("no free scoreboard slot for worker %d", id);
        return spawn_later(m, id);
    }
    if (id < CONF_MAX_WORKERS)
        sb_set(&m->sb->slot[slot].restarts, m->restarts[id]);
    pid_t master_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork for worker %d", id);
        sb_set(&m->sb->slot[slot].state, SB_FREE);
        return spawn_later(m, id);
    }
    if (pid == 0)
        become_worker(m, slot, master_pid);
    sb_set(&m->sb->slot[slot].pid, (uint64_t)pid);
    m->kids[slot] = (struct child){.pid = pid, .id = id, .gen = m->gen, .started = now(m)};
    log_info("started worker %d (pid %ld)", id, (long)pid);
    return 0;
}

/* The child serving worker id in the current generation, not being replaced. */
static struct child *
current_child(struct master *m, int id)
{
    for (int i = 0; i < SB_SLOTS; i++) {
        struct child *k = &m->kids[i];
        if (k->pid && k->id == id && k->gen == m->gen && !k->retiring)
            return k;
    }
    return NULL;
}

static int
live_children(const struct master *m)
{
    int n = 0;
    for (int i = 0; i < SB_SLOTS; i++)
        n += m->kids[i].pid != 0;
    return n;
}

static void
signal_children(struct master *m, int sig)
{
    for (int i = 0; i < SB_SLOTS; i++)
        if (m->kids[i].pid)
            kill(m->kids[i].pid, sig);
}

static void
drain_child(struct master *m, struct child *k)
{
    if (k->term_at > 0)
        return;
    k->retiring = true;
    k->term_at = now(m);
    kill(k->pid, SIGTERM);
}

/* A worker died on its own: replace it now, or after a backoff if it died young. */
static void
schedule_respawn(struct master *m, const struct child *k)
{
    if (k->id >= m->target || current_child(m, k->id) != NULL)
        return;
    struct respawn *r = &m->respawn[k->id];
    double lived = now(m) - k->started;
    double min_uptime = (double)m->conf->min_uptime_ms / 1000.0;
    if (lived >= min_uptime) {
        r->delay = 0;
        spawn(m, k->id);
        return;
    }
    double first = (double)m->conf->restart_delay_ms / 1000.0;
    double max = (double)m->conf->restart_delay_max_ms / 1000.0;
    r->delay = r->delay > 0 ? r->delay * 2 : first;
    if (r->delay > max)
        r->delay = max;
    r->at = now(m) + r->delay;
    log_warnx("worker %d lived %.3f s (less than min_uptime); respawning in %.0f ms", k->id,
              lived, r->delay * 1000);
}

/* A dead worker's WebSockets died with it: nobody may stay present, or hold a place
 * under max_connections_per_user, for them. Opened for the purge only: the master holds
 * no LMDB environment its children would inherit. */
static void
purge_roster(struct master *m, int slot)
{
    char err[CONF_ERR_LEN];
    int key = m->roster_base + slot;
    struct roster_params p = {.conf = m->conf, .slot = key};
    struct roster *r = roster_open(&p, err, sizeof err);
    int n = r != NULL ? roster_purge_slot(r, key) : -1;
    if (n < 0)
        log_warnx("%s", r != NULL ? roster_last_error(r) : err);
    else if (n > 0)
        log_info("forgot %d connection and channel entries of the dead worker", n);
    roster_close(r);
}

/* ---- USR2: handing over to a new master (see upgrade.h) ---- */

static void stop(struct master *m, bool graceful);

static void
upgrade_forget(struct master *m)
{
    ev_io_stop(m->loop, &m->next.ready);
    ev_timer_stop(m->loop, &m->next.timeout);
    close(m->next.ready.fd);
    m->next.pid = 0;
}

/* The new master will not serve: we go on, and say so where -s upgrade looks. A
 * pidfile written anew (a new inode, the same pid) is its answer. */
static void
upgrade_failed(struct master *m, const char *why)
{
    char err[CONF_ERR_LEN];
    log_errorx("upgrade failed: %s; pid %ld keeps serving", why, (long)getpid());
    upgrade_forget(m);
    if (m->conf->pidfile[0] != '\0' && pidfile_write(m->conf->pidfile, err, sizeof err) < 0)
        log_errorx("%s", err);
    notify_send("STATUS=%d of %d workers serving (upgrade failed: see the log)", m->serving,
                m->target);
}

/* Its workers serve: systemd follows it (MAINPID=), and we drain as on TERM. */
static void
upgrade_succeeded(struct master *m)
{
    pid_t pid = m->next.pid;
    upgrade_forget(m);
    log_info("upgrade: the new master (pid %ld) serves; draining this one", (long)pid);
    notify_send("MAINPID=%ld\nSTATUS=replaced by pid %ld", (long)pid, (long)pid);
    m->handed_over = true;
    stop(m, true);
}

static void
on_upgrade_ready(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = container_of(w, struct master, next.ready);
    char byte;
    ssize_t n = read(w->fd, &byte, 1);
    if (n == 1)
        upgrade_succeeded(m);
    else if (n == 0)
        ev_io_stop(m->loop, w); /* it exited, or is about to: its status says why */
}

static void
on_upgrade_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = container_of(t, struct master, next.timeout);
    char why[160];
    snprintf(why, sizeof why,
             "the new master (pid %ld) did not serve within upgrade_timeout (%lld ms), and is "
             "stopped",
             (long)m->next.pid, (long long)m->conf->upgrade_timeout_ms);
    kill(m->next.pid, SIGTERM);
    upgrade_failed(m, why);
}

static void
start_upgrade(struct master *m)
{
    char err[CONF_ERR_LEN];
    int fd;
    if (m->next.pid != 0) {
        log_warnx("upgrade: pid %ld is starting already; USR2 ignored", (long)m->next.pid);
        return;
    }
    /* Our predecessor's workers use the other roster range until it has exited. */
    if (m->from.pid != 0 && pid_running(m->from.pid)) {
        log_warnx("upgrade: pid %ld, the master this one replaced, is still draining; USR2 "
                  "ignored (send it again once it has exited)",
                  (long)m->from.pid);
        return;
    }
    pid_t pid =
        upgrade_start(&m->ls, m->lock, m->roster_base, m->conf->store, &fd, err, sizeof err);
    if (pid < 0) {
        log_errorx("upgrade failed: %s; pid %ld keeps serving", err, (long)getpid());
        return;
    }
    log_info("upgrade: started a new master (pid %ld); this one serves until it does",
             (long)pid);
    m->next.pid = pid;
    ev_io_init(&m->next.ready, on_upgrade_ready, fd, EV_READ);
    ev_io_start(m->loop, &m->next.ready);
    ev_timer_init(&m->next.timeout, on_upgrade_timeout,
                  (double)m->conf->upgrade_timeout_ms / 1000.0, 0.);
    ev_timer_start(m->loop, &m->next.timeout);
}

static void
on_child_exit(struct master *m, pid_t pid, int status)
{
    int slot = -1;
    for (int i = 0; i < SB_SLOTS && slot < 0; i++)
        if (m->kids[i].pid == pid)
            slot = i;
    if (slot < 0) {
        if (pid != 0 && pid == m->next.pid) {
            char how[128], why[192], byte;
            if (read(m->next.ready.fd, &byte, 1) == 1) { /* it said so before it went */
                upgrade_succeeded(m);
                return;
            }
            snprintf(why, sizeof why, "the new master (pid %ld) %s", (long)pid,
                     describe_status(status, how, sizeof how));
            upgrade_failed(m, why);
            return;
        }
        /* As PID 1 or a subreaper every orphan of the container or of the workers is
         * ours to reap; it is none of our business beyond that. */
        log_debug("reaped pid %ld, not a worker", (long)pid);
        return;
    }
    struct child k = m->kids[slot];
    m->kids[slot].pid = 0;
    purge_roster(m, slot);
    sb_release(m->sb, slot);
    char how[128];
    describe_status(status, how, sizeof how);
    if (m->stopping || k.term_at > 0) {
        log_info("worker %d (pid %ld) %s", k.id, (long)pid, how);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == WORKER_EXIT_FATAL) {
        log_errorx("worker %d (pid %ld) exited with the fatal status; not respawning it",
                   k.id, (long)pid);
        if (live_children(m) == 0) {
            log_set_echo(true); /* why the master exits 1 belongs on stderr too */
            log_errorx("no workers left; exiting");
            m->exit_status = 1;
            ev_break(m->loop, EVBREAK_ALL);
        }
        return;
    }
    log_warnx("worker %d (pid %ld) %s", k.id, (long)pid, how);
    sb_add(&m->sb->restarts, 1);
    if (k.id < CONF_MAX_WORKERS)
        m->restarts[k.id]++;
    schedule_respawn(m, &k);
}

static void
reap(struct master *m)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        on_child_exit(m, pid, status);
    }
    if (m->stopping && live_children(m) == 0)
        ev_break(m->loop, EVBREAK_ALL);
}

/* Kill a worker whose heartbeat stopped (stuck in a loop or a blocking call). */
static void
watchdog(struct master *m, int slot, int64_t now_ms)
{
    struct child *k = &m->kids[slot];
    struct sb_slot *s = &m->sb->slot[slot];
    int64_t silent = now_ms - (int64_t)sb_get(&s->heartbeat_ms);
    if (silent <= m->conf->worker_timeout_ms)
        return;
    log_errorx("worker %d (pid %ld) missed its heartbeat for %lld ms (worker_timeout %lld ms); "
               "killing it",
               k->id, (long)k->pid, (long long)silent, (long long)m->conf->worker_timeout_ms);
    kill(k->pid, SIGKILL);
    sb_set(&s->heartbeat_ms, (uint64_t)now_ms); /* once is enough */
}

/* Over worker_max_rss: start a replacement first, drain this one once it serves. */
static void
check_rss(struct master *m, struct child *k, int slot)
{
    uint64_t rss = sb_get(&m->sb->slot[slot].rss_bytes);
    if (m->conf->worker_max_rss == 0 || k->retiring || rss <= (uint64_t)m->conf->worker_max_rss)
        return;
    log_warnx("worker %d (pid %ld) uses %llu bytes, over worker_max_rss %lld; replacing it",
              k->id, (long)k->pid, (unsigned long long)rss, (long long)m->conf->worker_max_rss);
    k->retiring = true;
    spawn(m, k->id);
}

/* A retiring worker drains once its successor runs (or at once if it has none). */
static void
handover(struct master *m, struct child *k)
{
    struct child *succ = k->id < m->target ? current_child(m, k->id) : NULL;
    if (succ != NULL) {
        int s = (int)(succ - m->kids);
        if (sb_get(&m->sb->slot[s].state) != SB_RUNNING)
            return;
    }
    drain_child(m, k);
}

/* An upgrade's new master whose workers all serve: the pidfile names it, and the old
 * master is told to drain. */
static void
took_over(struct master *m)
{
    char err[CONF_ERR_LEN];
    if (m->conf->pidfile[0] != '\0' && pidfile_write(m->conf->pidfile, err, sizeof err) < 0)
        log_errorx("%s", err);
    if (instance_lock_claim(m->lock) < 0)
        log_warn("writing our pid into the instance lock");
    upgrade_done(&m->from);
    log_info("upgrade: serving in place of pid %ld", (long)m->from.pid);
}

/* Tell the service manager how many workers serve, and READY=1 when a start or a
 * reload is complete: every worker of the current generation is running. */
static void
notify_serving(struct master *m)
{
    int n = 0;
    for (int i = 0; i < SB_SLOTS; i++) {
        const struct child *k = &m->kids[i];
        n += k->pid != 0 && k->gen == m->gen && !k->retiring &&
             sb_get(&m->sb->slot[i].state) == SB_RUNNING;
    }
    if (m->ready_owed && n >= m->target) {
        if (m->from.ready >= 0)
            took_over(m);
        notify_send("READY=1\nSTATUS=%d of %d workers serving\nMAINPID=%ld", n, m->target,
                    (long)getpid());
        m->ready_owed = false;
    } else if (!m->ready_owed && n != m->serving) {
        notify_send("STATUS=%d of %d workers serving", n, m->target);
    }
    m->serving = n;
}

/* READY=1 (and an upgrade's handover) as soon as the workers serve, not at the next
 * tick: the old master of an upgrade waits for it. */
static void
on_ready_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct master *m = container_of(t, struct master, ready_poll);
    if (!m->stopping)
        notify_serving(m);
    if (m->stopping || !m->ready_owed)
        ev_timer_stop(loop, t);
}

static void
owe_ready(struct master *m)
{
    m->ready_owed = true;
    ev_timer_again(m->loop, &m->ready_poll);
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = container_of(t, struct master, tick);
    int64_t now_ms = sb_now_ms();
    double min_uptime = (double)m->conf->min_uptime_ms / 1000.0;
    double kill_after = (double)m->conf->shutdown_timeout_ms / 1000.0 + 1.0;
    for (int i = 0; i < SB_SLOTS; i++) {
        struct child *k = &m->kids[i];
        if (k->pid == 0)
            continue;
        watchdog(m, i, now_ms);
        if (m->stopping)
            continue;
        check_rss(m, k, i);
        if (k->retiring && k->term_at == 0)
            handover(m, k);
        if (k->term_at > 0 && now(m) - k->term_at > kill_after) {
            log_warnx("worker %d (pid %ld) did not drain in time; killing it", k->id,
                      (long)k->pid);
            kill(k->pid, SIGKILL);
            k->term_at = now(m);
        }
        if (!k->retiring && now(m) - k->started >= min_uptime)
            m->respawn[k->id].delay = 0; /* it proved healthy: the backoff starts over */
    }
    for (int id = 0; id < m->target && !m->stopping; id++) {
        struct respawn *r = &m->respawn[id];
        if (r->at > 0 && now(m) >= r->at) {
            r->at = 0;
            if (current_child(m, id) == NULL)
                spawn(m, id);
        }
    }
    if (!m->stopping)
        notify_serving(m);
}

static void
update_master_rss(struct master *m)
{
    uint64_t rss = proc_rss_bytes();
    if (rss > 0) /* keep the last figure if /proc could not be read */
        sb_set(&m->sb->master_rss, rss);
}

static void
start_workers(struct master *m)
{
    sb_set(&m->sb->workers_target, (uint64_t)m->target);
    for (int id = 0; id < m->target; id++)
        if (current_child(m, id) == NULL)
            spawn(m, id);
}

/* A refused reload leaves the old generation serving: the service manager, told
 * RELOADING=1, is told READY=1 again at once. */
static void
refused_reload(struct master *m)
{
    notify_send("READY=1\nSTATUS=%d of %d workers serving (reload refused: see the log)",
                m->serving, m->target);
}

/* The lock a reload onto next needs: the one held when its store_path is the same file,
 * else a new one, taken without waiting (the running instance must not stall). */
static int
lock_for(struct master *m, const struct conf *next, char *err, size_t errlen)
{
    if (instance_lock_is(m->lock, next->store_path)) return m->lock;
    return instance_lock_take(next->store_path, 0, err, errlen);
}

/* SIGHUP: a new config (refused as a whole if anything in it is wrong), new workers on
 * it, and the old workers drained once their successors serve. */
static void
reload(struct master *m)
{
    char err[CONF_ERR_LEN];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    notify_send("RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading",
                (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    struct conf *next = conf_reread(m->reload, err, sizeof err);
    /* Checked before store_prepare, which would create the new store's files. */
    if (next != NULL && conf_reload_check(m->conf, next, err, sizeof err) < 0) {
        free(next);
        next = NULL;
    }
    if (next == NULL) {
        log_errorx("reload refused, keeping the running configuration: %s", err);
        refused_reload(m);
        return;
    }
    /* The certificate and key are read here, as root if we started as root; a missing
     * or mismatched one refuses the reload like a bad config. */
    SSL_CTX *tls = NULL;
    int lock = -1;
    if (tls_ctx_build(next, &tls, err, sizeof err) < 0 ||
        store_prepare(next, err, sizeof err) < 0 ||
        (lock = lock_for(m, next, err, sizeof err)) < 0 ||
        roster_prepare(next, false, err, sizeof err) < 0 ||
        history_prepare_conf(next, err, sizeof err) < 0 ||
        listener_sync(&m->ls, next, err, sizeof err) < 0) {
        log_errorx("reload refused, keeping the running configuration: %s", err);
        refused_reload(m);
        if (lock >= 0 && lock != m->lock) close(lock);
        SSL_CTX_free(tls);
        free(next);
        return;
    }
    /* Old workers keep their own copy of the old context until they have drained, and
     * their inherited descriptor holds the old store_path until they exit. */
    SSL_CTX_free(m->tls);
    m->tls = tls;
    if (lock != m->lock) {
        close(m->lock);
        m->lock = lock;
    }
    if (log_configure(next->log_file, next->log_level, next->log_format) < 0)
        log_warn("cannot open log file %s", next->log_file);
    if (privs_own_files(next, err, sizeof err) < 0)
        log_warnx("%s", err);
    if (conf_key_warning(next, err, sizeof err)) log_warnx("%s", err);
    free(m->conf);
    m->conf = next;
    m->gen++;
    owe_ready(m); /* READY=1 once the new generation serves */
    for (int i = 0; i < SB_SLOTS; i++)
        if (m->kids[i].pid)
            m->kids[i].retiring = true;
    memset(m->respawn, 0, sizeof m->respawn);
    m->target = workers_wanted(next);
    log_info("reloading: generation %llu with %d worker(s)", (unsigned long long)m->gen,
             m->target);
    start_workers(m);
}

/* SIGTTIN and SIGTTOU: one worker more or less, never fewer than one. */
static void
scale(struct master *m, int delta)
{
    int next = m->target + delta;
    if (next < 1 || next > CONF_MAX_WORKERS) {
        log_warnx("not scaling to %d worker(s): the range is 1 to %d", next, CONF_MAX_WORKERS);
        return;
    }
    m->target = next;
    sb_set(&m->sb->workers_target, (uint64_t)next);
    log_info("scaling to %d worker(s)", next);
    if (delta > 0) {
        start_workers(m);
        return;
    }
    for (int i = 0; i < SB_SLOTS; i++)
        if (m->kids[i].pid && m->kids[i].id >= next)
            drain_child(m, &m->kids[i]);
    m->respawn[next].at = 0;
}

static void
on_stop_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct master *m = container_of(t, struct master, stop_timer);
    if (live_children(m) > 0)
        log_warnx("%d worker(s) still running at the deadline; killing them", live_children(m));
    signal_children(m, SIGKILL);
    ev_break(loop, EVBREAK_ALL);
}

static void
stop(struct master *m, bool graceful)
{
    if (m->stopping && graceful)
        return;
    m->stopping = true;
    /* The instance drains, and its workers stop listening for every process (see
     * stop_listening); handed over, only we go, as old workers do at a reload. */
    if (!m->handed_over)
        sb_set(&m->sb->draining, 1);
    if (m->next.pid != 0) {
        log_info("upgrade abandoned: stopping the new master (pid %ld) too", (long)m->next.pid);
        kill(m->next.pid, SIGTERM);
        upgrade_forget(m);
    }
    /* Once replaced, the service is the new master's: systemd must not hear it stop. */
    if (!m->handed_over)
        notify_send("STOPPING=1\nSTATUS=draining");
    double limit = graceful ? (double)m->conf->shutdown_timeout_ms / 1000.0 : QUIT_GRACE;
    log_info("%s: %d worker(s), deadline %.1f s", graceful ? "draining" : "stopping now",
             live_children(m), limit);
    signal_children(m, graceful ? SIGTERM : SIGQUIT);
    ev_timer_stop(m->loop, &m->stop_timer);
    ev_timer_set(&m->stop_timer, limit, 0.);
    ev_timer_start(m->loop, &m->stop_timer);
    if (live_children(m) == 0)
        ev_break(m->loop, EVBREAK_ALL);
}

/* SIGUSR1 (after logrotate): a new log file, given to the workers' user before they are
 * told to reopen it too. */
static void
reopen_log(struct master *m)
{
    char err[CONF_ERR_LEN];
    if (log_reopen() < 0)
        log_warn("reopening the log file");
    else if (privs_own(m->conf, m->conf->log_file, err, sizeof err) < 0)
        log_warnx("%s", err);
    signal_children(m, SIGUSR1);
}

static void
on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = s->data;
    switch (s->signum) {
    case SIGCHLD:
        reap(m);
        break;
    case SIGHUP:
        if (m->next.pid != 0)
            log_warnx("reload refused: an upgrade is under way (pid %ld)", (long)m->next.pid);
        else if (!m->stopping)
            reload(m);
        break;
    case SIGUSR2:
        if (!m->stopping)
            start_upgrade(m);
        break;
    case SIGTERM:
    case SIGINT:
        stop(m, true);
        break;
    case SIGQUIT:
        stop(m, false);
        break;
    case SIGTTIN:
        if (!m->stopping)
            scale(m, +1);
        break;
    case SIGTTOU:
        if (!m->stopping)
            scale(m, -1);
        break;
    case SIGUSR1:
        reopen_log(m);
        break;
    default:
        break;
    }
}

static void
watch_signals(struct master *m)
{
    static const int sigs[] = {SIGCHLD, SIGHUP,  SIGTERM, SIGINT, SIGQUIT,
                               SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2};
    _Static_assert(ARRAY_LEN(sigs) <= ARRAY_LEN(((struct master *)0)->sig), "room for each");
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++) {
        ev_signal *s = &m->sig[m->nsig++];
        ev_signal_init(s, on_signal, sigs[i]);
        s->data = m;
        ev_signal_start(m->loop, s);
    }
}

static void
on_rss_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    update_master_rss(t->data);
}

/* An upgrade serves the data its predecessor does, as a reload does: the store engine
 * and the store_path whose lock it was handed. */
static int
same_store(const struct master *m, char *err, size_t errlen)
{
    if (strcmp(m->from.store, m->conf->store) != 0)
        errf(err, errlen,
             "an upgrade keeps the store: pid %ld uses store %s, this config says %s (restart "
             "to change it)",
             (long)m->from.pid, m->from.store, m->conf->store);
    else if (!instance_lock_is(m->from.lock, m->conf->store_path))
        errf(err, errlen,
             "an upgrade keeps the store: store_path %s is not the one pid %ld uses (restart "
             "to change it)",
             m->conf->store_path, (long)m->from.pid);
    else
        return 0;
    return -1;
}

/* What both modes set up before serving: listeners, scoreboard, pidfile. */
static int
prepare(struct master *m, struct conf *conf)
{
    char err[CONF_ERR_LEN];
    m->conf = conf;
    m->sb = sb_create();
    if (m->sb == NULL) {
        log_error("cannot create the scoreboard");
        return -1;
    }
    pid_t other = conf->pidfile[0] ? pidfile_running(conf->pidfile) : 0;
    if (other > 0 && other != getpid() && other != m->from.pid) {
        log_errorx("already running as pid %ld (pidfile %s)", (long)other, conf->pidfile);
        return -1;
    }
    /* The store is created and checked here, once, so that a bad path or a full disk is
     * a start-up error and not a worker that dies at every respawn. The instance lock
     * comes after the store exists (store_prepare creates it, in a directory the config
     * check found, and changes nothing another instance could lose) and before the
     * roster is emptied.
     * An upgrade's new master keeps the lock its predecessor handed over (which that
     * one and its draining workers hold too), and the roster, whose other slots are
     * the predecessor's connections. */
    bool upgrade = m->from.pid != 0;
    if ((upgrade && same_store(m, err, sizeof err) < 0) || store_prepare(conf, err, sizeof err) < 0 ||
        (m->lock = upgrade ? m->from.lock
                           : instance_lock_take(conf->store_path, LOCK_WAIT_MS, err, sizeof err)) < 0 ||
        roster_prepare(conf, !upgrade, err, sizeof err) < 0 ||
        history_prepare_conf(conf, err, sizeof err) < 0 ||
        privs_own_files(conf, err, sizeof err) < 0) {
        log_errorx("%s", err);
        return -1;
    }
    if (tls_ctx_build(conf, &m->tls, err, sizeof err) < 0 ||
        listener_sync(&m->ls, conf, err, sizeof err) < 0) {
        log_errorx("%s", err);
        return -1;
    }
    int unused = listener_close_inherited();
    if (unused > 0)
        log_info("closed %d inherited listening socket(s) that no listen directive names",
                 unused);
    /* An upgrade's new master writes it once it serves (took_over). */
    if (!upgrade && conf->pidfile[0] != '\0' && pidfile_write(conf->pidfile, err, sizeof err) < 0) {
        log_errorx("%s", err);
        return -1;
    }
    m->roster_base = upgrade && m->from.base == 0 ? SB_SLOTS : 0;
    sb_set(&m->sb->roster_base, (uint64_t)m->roster_base);
    sb_set(&m->sb->master_pid, (uint64_t)getpid());
    sb_set(&m->sb->started_at, (uint64_t)time(NULL));
    update_master_rss(m);
    for (int i = 0; i < conf->nlisten; i++)
        log_info("listening on %s%s", conf->listen[i].text, conf->listen[i].tls ? " (tls)" : "");
    return 0;
}

static void
cleanup(struct master *m)
{
    if (m->conf->pidfile[0] != '\0')
        pidfile_remove(m->conf->pidfile);
    /* A Unix socket's file belongs to whoever serves on it: after a handover, or while
     * the master we were to replace still does, not to us. */
    for (int i = 0; i < m->ls.n && !m->handed_over && m->from.ready < 0; i++)
        if (m->ls.l[i].addr.family == AF_UNIX)
            unlink(m->ls.l[i].addr.host);
    listener_close_all(&m->ls);
    SSL_CTX_free(m->tls);
    sb_destroy(m->sb);
    free(m->conf);
    /* The file stays: unlinking it could let a start that already opened it and one that
     * creates a new one both hold "the" lock. Its stale pid blocks nobody. */
    if (m->lock >= 0) close(m->lock);
}

/* Descriptors a worker needs besides its connections: listeners, store, bus, log... */
#define FD_RESERVE 64

/* Every connection is a descriptor: take the whole open-file limit we are allowed (the
 * soft limit up to the hard one, as nginx's worker_rlimit_nofile does; children inherit
 * it), and say so at start when a worker's share of max_connections cannot fit. */
static void
take_fd_limit(const struct conf *c, int workers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    rlim_t share = (rlim_t)(c->max_connections + workers - 1) / (rlim_t)workers;
    if (rl.rlim_cur != RLIM_INFINITY && share + FD_RESERVE > rl.rlim_cur)
        log_warnx("the open-file limit (%llu) is below a worker's share of max_connections "
                  "(%llu): a worker that reaches it pauses accepting; raise it "
                  "(ulimit -n, LimitNOFILE=) or lower max_connections",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)share);
}

/* After the loop: whatever worker is still alive was killed by the stop deadline.
 * Wait for those by pid, not for any child: as PID 1 an orphan that never exits (a
 * process left behind by docker exec) would hold the exit past shutdown_timeout. */
static void
collect_workers(struct master *m)
{
    for (int i = 0; i < SB_SLOTS; i++) {
        if (m->kids[i].pid == 0)
            continue;
        while (waitpid(m->kids[i].pid, NULL, 0) < 0 && errno == EINTR)
            ;
        m->kids[i].pid = 0;
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ; /* orphans that are already dead: leave no zombie */
}

/* As PID 1 (in a container) orphans are reparented to us anyway; elsewhere, becoming a
 * subreaper makes the master reap what its workers leave behind as well. */
static void
become_reaper(void)
{
    if (getpid() == 1)
        log_debug("running as PID 1: reaping every orphan of the namespace");
    else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        log_debug("not a subreaper: %s", strerror(errno));
}

int
master_run(struct conf *conf, worker_reload_fn reload_fn, const struct upgrade_from *from)
{
    struct master m = {.reload = reload_fn, .lock = -1, .from = *from};
    log_set_process("master", -1);
    if (prepare(&m, conf) < 0) {
        free(conf);
        return 1;
    }
    become_reaper();
    m.loop = ev_loop_new(EVFLAG_AUTO);
    if (m.loop == NULL) {
        log_errorx("cannot create the event loop");
        cleanup(&m);
        return 1;
    }
    watch_signals(&m);
    ev_timer_init(&m.tick, on_tick, TICK, TICK);
    ev_init(&m.ready_poll, on_ready_poll);
    m.ready_poll.repeat = READY_POLL;
    ev_timer_start(m.loop, &m.tick);
    ev_init(&m.stop_timer, on_stop_timeout);
    ev_timer rss;
    ev_timer_init(&rss, on_rss_tick, 1.0, 1.0);
    rss.data = &m;
    ev_timer_start(m.loop, &rss);
    m.target = workers_wanted(conf);
    owe_ready(&m);
    take_fd_limit(conf, m.target);
    log_info("sessiond %s starting %d worker(s)", SESSIOND_VERSION, m.target);
    /* The start can no longer fail as a whole: from here errors are the log's alone (and
     * the workers inherit that). */
    log_set_echo(false);
    start_workers(&m);
    ev_run(m.loop, 0);

    collect_workers(&m);
    log_info("exiting with status %d", m.exit_status);
    int status = m.exit_status;
    ev_loop_destroy(m.loop);
    cleanup(&m);
    return status;
}

int
master_run_single(struct conf *conf, worker_reload_fn reload_fn, const struct upgrade_from *from)
{
    struct master m = {.reload = reload_fn, .lock = -1, .from = *from};
    log_set_process("sessiond", -1);
    if (prepare(&m, conf) < 0) {
        free(conf);
        return 1;
    }
    sb_set(&m.sb->workers_target, 1);
    take_fd_limit(conf, 1);
    int slot = sb_claim(m.sb, 0, 0);
    log_info("sessiond %s serving in a single process (clustering off)", SESSIOND_VERSION);
    if (m.from.ready >= 0)
        took_over(&m); /* it serves from here on */
    notify_send("READY=1\nSTATUS=serving in a single process\nMAINPID=%ld", (long)getpid());
    struct worker_params p = {.conf = conf, .listeners = &m.ls, .sb = m.sb, .slot = slot,
                              .reload = reload_fn, .tls = m.tls};
    int status = worker_run(&p);
    cleanup(&m);
    return status;
}
