/* fuzz_worker: a worker without listeners, for the harnesses that drive the server from a
 * socket (see fuzz_worker.h). */
#include "fuzz_worker.h"

#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "channels.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "scoreboard.h"
#include "token.h"
#include "ws.h"

static struct {
    bool ready;
    struct conf conf;
    struct scoreboard *sb;
    struct worker w;
    char dir[64];
} fw;

static void
die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz_worker: %s: %s\n", what, err);
    abort();
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* The store's and the roster's files go with the process, so that runs leave nothing in
 * /tmp (except after a crash, which exits without atexit). */
static void
fuzz_worker_end(void)
{
    struct worker *w = &fw.w;
    while (w->conns != NULL)
        conn_close(w->conns);
    while (w->closed != NULL) {
        struct conn *c = w->closed;
        w->closed = c->next;
        conn_free(c);
    }
    chan_worker_stop(w);
    ws_worker_stop(w);
    store_close(w->store);
    ev_loop_destroy(w->loop);
    sb_destroy(fw.sb);
    nftw(fw.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void
fuzz_worker_init(void)
{
    char err[CONF_ERR_LEN];
    log_set_level(LOG_LVL_ERROR);
    signal(SIGPIPE, SIG_IGN);
    snprintf(fw.dir, sizeof fw.dir, "/tmp/sessiond-fuzz-XXXXXX");
    if (mkdtemp(fw.dir) == NULL)
        die("mkdtemp", strerror(errno));
    conf_defaults(&fw.conf);
    snprintf(fw.conf.store_path, sizeof fw.conf.store_path, "%s/sessions.db", fw.dir);
    /* The rate limit reads the clock; off, the same input always does the same thing. */
    fw.conf.ws_rate_limit = 0;
    if (store_prepare(&fw.conf, err, sizeof err) < 0)
        die("store_prepare", err);

    fw.sb = sb_create();
    if (fw.sb == NULL)
        die("sb_create", strerror(errno));
    /* The bus names its sockets after the master's pid: ours keeps two fuzzing processes
     * (a replay beside a fuzz run) apart. */
    sb_set(&fw.sb->master_pid, (uint64_t)getpid());
    int slot = sb_claim(fw.sb, 0, 1);
    struct worker *w = &fw.w;
    w->conf = &fw.conf;
    w->sb = fw.sb;
    w->slot = &fw.sb->slot[slot];
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (w->loop == NULL)
        die("ev_loop_new", "failed");
    if ((w->store = store_open(&fw.conf, w->loop, err, sizeof err)) == NULL)
        die("store_open", err);
    if (ws_worker_start(w, err, sizeof err) < 0)
        die("ws_worker_start", err);
    if (chan_worker_start(w, err, sizeof err) < 0)
        die("chan_worker_start", err);
    fw.ready = true;
    atexit(fuzz_worker_end);
}

struct worker *
fuzz_worker(void)
{
    if (!fw.ready)
        fuzz_worker_init();
    return &fw.w;
}

/* A store call's answer: LMDB answers creates from the loop (its group commit runs
 * before the loop waits), so the loop runs until it came. */
struct answer {
    bool came;
    enum store_status st;
};

static void
on_stored(void *arg, enum store_status st, const struct session *s)
{
    (void)s;
    struct answer *a = arg;
    a->came = true;
    a->st = st;
}

static enum store_status
wait_answer(struct answer *a)
{
    for (int i = 0; i < 100 && !a->came; i++)
        ev_run(fw.w.loop, EVRUN_NOWAIT);
    if (!a->came)
        die("store", "no answer");
    return a->st;
}

void
fuzz_worker_session(const char *data, char id[SESSION_ID_LEN + 1], char *token)
{
    struct worker *w = fuzz_worker();
    char tok[TOKEN_CHARS + 1];
    struct session s = {0};
    if (token_new(tok) < 0)
        die("token_new", "failed");
    token_hash(tok, TOKEN_CHARS, s.token_hash);
    token_id_of_hash(s.token_hash, s.id);
    snprintf(s.user, sizeof s.user, "fuzz");
    s.data = data;
    s.data_len = strlen(data);
    s.created_at = (int64_t)time(NULL);
    s.ttl = fw.conf.session_max_ttl_ms / 1000;
    s.expires_at = s.created_at + s.ttl;
    struct answer a = {0};
    store_create(w->store, &s, on_stored, &a);
    enum store_status st = wait_answer(&a);
    if (st != STORE_OK) {
        char why[64];
        snprintf(why, sizeof why, "status %d %s", (int)st, store_last_error(w->store));
        die("store_create", why);
    }
    memcpy(id, s.id, SESSION_ID_LEN + 1);
    if (token != NULL)
        memcpy(token, tok, sizeof tok);
}

void
fuzz_worker_delete(const char *id)
{
    struct answer a = {0};
    store_delete(fuzz_worker()->store, id, 0, on_stored, &a);
    wait_answer(&a);
}

/* Read what the server sent so far; returns the bytes read. */
static size_t
drain(int fd, struct buf *out, size_t out_max)
{
    char tmp[16384];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n <= 0)
            return total;
        total += (size_t)n;
        size_t keep = buf_used(out) >= out_max ? 0 : out_max - buf_used(out);
        if (keep > (size_t)n)
            keep = (size_t)n;
        if (keep > 0 && buf_append(out, tmp, keep) < 0)
            die("buf_append", "out of memory");
    }
}

/* Bytes the server has not read yet, 0 once it closed its side. */
static int
unread(const struct conn *c)
{
    int n = 0;
    if (c->closed || ioctl(c->fd, FIONREAD, &n) < 0)
        return 0;
    return n;
}

/* Let the loop run until it stops making progress: nothing more comes out and the server
 * reads nothing more (it may leave input unread on purpose, behind a pipelined request).
 * The bound keeps a server that would spin from hanging the fuzzer: it is a finding. */
static void
settle(struct conn *c, int fd, struct buf *out, size_t out_max)
{
    int idle = 0, last = -1;
    for (int i = 0; i < 10000 && idle < 3; i++) {
        ev_run(fw.w.loop, EVRUN_NOWAIT);
        size_t got = drain(fd, out, out_max);
        int left = unread(c);
        idle = got == 0 && left == last ? idle + 1 : 0;
        last = left;
    }
    if (idle < 3)
        die("settle", "the connection never went quiet");
}

static void
send_all(struct conn *c, int fd, const char *p, size_t len, struct buf *out, size_t out_max)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno != EAGAIN)
            return; /* the server closed: what is left has nobody to read it */
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
        settle(c, fd, out, out_max);
    }
}

void
fuzz_worker_serve(const void *in, size_t len, const size_t *cuts, size_t ncuts,
                  struct buf *out, size_t out_max)
{
    struct worker *w = fuzz_worker();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", strerror(errno));
    struct sockaddr_storage peer = {.ss_family = AF_UNIX}; /* loopback: admin API allowed */
    struct conn *c = conn_new(w, sv[0], &peer, NULL);
    if (c == NULL)
        die("conn_new", "failed");
    const char *p = in;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts && cuts[i] < len ? cuts[i] : len;
        if (to < at)
            continue;
        send_all(c, sv[1], p + at, to - at, out, out_max);
        settle(c, sv[1], out, out_max);
        at = to;
    }
    shutdown(sv[1], SHUT_WR);
    settle(c, sv[1], out, out_max);
    close(sv[1]);
    /* The worker's reaper, which this worker does not run: close, then free what is not
     * held by a handler. */
    if (!c->closed)
        conn_close(c);
    worker_reap(w);
}
