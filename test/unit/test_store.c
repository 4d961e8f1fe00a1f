/* store: the interface, run against each engine, then what is particular to each.
 *
 * The interface tests run once per engine (Check's loop index says which): LMDB in a fresh
 * directory under /tmp, without a loop (every call answers before it returns) and with one
 * (writes answer from the group commit), Redis on a redis-server of its own on a free loopback port
 * (started for each test and killed by pid at its end; it also dies with the test
 * process, through PR_SET_PDEATHSIG, when a failed assertion ends the test early). The
 * Redis engine answers from the event loop, so the helpers run the loop until the callback
 * came (with a deadline) and check that it did not come before the call returned.
 *
 * Test times are offsets from the fixture's t0: 0 for LMDB (the times are the times),
 * and the current time for Redis, because Redis really expires keys at EXPIREAT, so every
 * test time must lie ahead of the real clock. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "store.h"
#include "suites.h"
#include "token.h"

/* LMDB_GROUPED: LMDB with an event loop, where writes wait for the group commit (the
 * fixture then says LMDB: only how answers come differs). */
enum { LMDB = 0, REDIS = 1, LMDB_GROUPED = 2 };

struct fx {
    int engine;
    char dir[64];
    struct conf c;
    struct store *st;
    struct ev_loop *loop; /* Redis only */
    int64_t t0;
    pid_t redis_pid;      /* the redis-server, while it runs */
    int redis_port;
};

/* What a callback reported; the session is copied out, since its memory is the store's
 * (channels and subscribe as NUL-terminated strings, "" for none). Times are relative to
 * the fixture's t0. */
struct got {
    int calls;
    enum store_status status;
    bool has_session;
    struct session s;
    char data[8192];
    char channels[16400], subscribe[16400];
    uint64_t n;
    size_t nlist;
    char ids[16][SESSION_ID_LEN + 1];
    int64_t created[16];
    char list_channels[16][64], list_subscribe[16][64];
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
at(const struct fx *f, int64_t t)
{
    return f->t0 + t;
}

/* ---- redis-server ---- */

static bool
redis_installed(void)
{
    const char *path = getenv("PATH");
    char dirs[4096], exe[4200];
    snprintf(dirs, sizeof dirs, "%s", path != NULL ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        snprintf(exe, sizeof exe, "%s/redis-server", d);
        if (access(exe, X_OK) == 0)
            return true;
    }
    return false;
}

static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A connection for the test's own commands (SCRIPT FLUSH, TTL, ...). */
static redisContext *
redis_admin(const struct fx *f)
{
    struct timeval tv = {.tv_sec = 1};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", f->redis_port, tv);
    ck_assert_msg(c != NULL && c->err == 0, "cannot reach redis-server on port %d",
                  f->redis_port);
    return c;
}

/* Run one command on the test's connection; returns the reply (caller frees). */
static redisReply *
redis_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_msg(r != NULL, "redis command failed: %s", c->errstr);
    return r;
}

static long long
redis_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = redis_cmd(c, fmt, arg);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Whether redis-server answers on the port yet (any reply will do, NOAUTH included). */
static bool
redis_answers(int port)
{
    struct timeval tv = {.tv_usec = 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool up = false;
    if (c != NULL && c->err == 0) {
        redisReply *r = redisCommand(c, "PING");
        up = r != NULL;
        freeReplyObject(r);
    }
    redisFree(c);
    return up;
}

/* Start redis-server on f's port (extra: more arguments, NULL-terminated, or NULL) and
 * wait until it answers. */
static void
redis_start(struct fx *f, const char *const *extra)
{
    char port[16];
    const char *argv[32] = {"redis-server", "--port", port, "--save", "", "--appendonly", "no",
                            "--bind", "127.0.0.1", "--dir", f->dir};
    size_t n = 11;
    for (; extra != NULL && *extra != NULL && n < 31; extra++)
        argv[n++] = *extra;
    snprintf(port, sizeof port, "%d", f->redis_port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    f->redis_pid = pid;
    for (int64_t end = now_ms() + 10000; !redis_answers(f->redis_port); usleep(10000)) {
        int status = 0;
        ck_assert_msg(waitpid(pid, &status, WNOHANG) == 0, "redis-server exited (status %d)",
                      status);
        ck_assert_msg(now_ms() < end, "redis-server did not answer within 10 s");
    }
}

static void
redis_kill(struct fx *f)
{
    if (f->redis_pid <= 0)
        return;
    kill(f->redis_pid, SIGKILL);
    waitpid(f->redis_pid, NULL, 0);
    f->redis_pid = 0;
}

/* ---- the fixture ---- */

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The config for engine (Redis: the URL of a port on which no server runs yet). */
static void
fx_conf(struct fx *f, int engine, int64_t max_sessions, int per_user, int64_t max_bytes)
{
    memset(f, 0, sizeof *f);
    f->engine = engine;
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    conf_defaults(&f->c);
    snprintf(f->c.store_path, sizeof f->c.store_path, "%s/sessions.db", f->dir);
    f->c.max_sessions = max_sessions;
    f->c.max_sessions_per_user = per_user;
    f->c.session_max_bytes = max_bytes;
    if (engine == LMDB_GROUPED) {
        f->engine = LMDB;
        f->loop = ev_loop_new(EVFLAG_AUTO);
        ck_assert_ptr_nonnull(f->loop);
    }
    if (f->engine == LMDB) return;
    f->redis_port = free_port();
    snprintf(f->c.store, sizeof f->c.store, "redis");
    snprintf(f->c.redis_url, sizeof f->c.redis_url, "redis://127.0.0.1:%d/0", f->redis_port);
    snprintf(f->c.redis_prefix, sizeof f->c.redis_prefix, "test:");
    f->loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(f->loop);
    f->t0 = (int64_t)time(NULL);
}

static struct store *
fx_open(const struct fx *f, const struct conf *c)
{
    char err[CONF_ERR_LEN] = "";
    struct store *st = store_open(c, f->loop, err, sizeof err);
    ck_assert_msg(st != NULL, "store_open: %s", err);
    return st;
}

static void
fx_prepare(const struct conf *c)
{
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(store_prepare(c, err, sizeof err) == 0, "store_prepare: %s", err);
}

static void
on_guard(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
}

/* Run f's loop until done(arg) or ms milliseconds; returns done(arg). A repeating guard
 * timer makes each round return, so the deadline holds even if nothing else happens. */
static bool
fx_run_until(struct fx *f, bool (*done)(const void *), const void *arg, int ms)
{
    if (f->loop == NULL)
        return done(arg);
    ev_timer guard;
    ev_timer_init(&guard, on_guard, 0.05, 0.05);
    ev_timer_start(f->loop, &guard);
    for (int64_t end = now_ms() + ms; !done(arg) && now_ms() < end;)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &guard);
    return done(arg);
}

static bool
called(const void *arg)
{
    return ((const struct got *)arg)->calls > 0;
}

static bool
never(const void *arg)
{
    (void)arg;
    return false;
}

/* Run the loop for ms milliseconds (Redis), letting whatever is due happen. */
static void
fx_pause(struct fx *f, int ms)
{
    fx_run_until(f, never, NULL, ms);
}

/* After a call: LMDB has answered already; Redis answers from the loop, and not before
 * the call returned. Either way, exactly once. */
static void
fx_wait(struct fx *f, struct got *g)
{
    if (f->engine == REDIS) ck_assert_int_eq(g->calls, 0);
    if (f->loop != NULL && g->calls == 0) {
        ck_assert_msg(fx_run_until(f, called, g, 10000), "no answer within 10 s");
    }
    ck_assert_int_eq(g->calls, 1);
}

static bool
healthy(const void *arg)
{
    struct store_info info;
    store_info(arg, &info);
    return info.healthy;
}

static void
fx_start(struct fx *f)
{
    fx_prepare(&f->c);
    f->st = fx_open(f, &f->c);
    if (f->engine == REDIS)
        ck_assert_msg(fx_run_until(f, healthy, f->st, 10000), "not connected: %s",
                      store_last_error(f->st));
}

static void
fx_setup(struct fx *f, int engine, int64_t max_sessions, int per_user, int64_t max_bytes)
{
    fx_conf(f, engine, max_sessions, per_user, max_bytes);
    if (engine == REDIS)
        redis_start(f, NULL);
    fx_start(f);
}

static void
fx_teardown(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    if (f->loop != NULL)
        ev_loop_destroy(f->loop);
    f->loop = NULL;
    redis_kill(f);
    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- callbacks and helpers ---- */

/* A channels or subscribe blob as a string. */
static void
copy_blob(char *out, size_t size, const char *p, size_t len)
{
    ck_assert_uint_lt(len, size);
    ck_assert(p != NULL || len == 0);
    if (len > 0)
        memcpy(out, p, len);
    out[len] = '\0';
}

static void
on_session(void *arg, enum store_status status, const struct session *s)
{
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->has_session = s != NULL;
    if (s == NULL)
        return;
    ck_assert_uint_lt(s->data_len, sizeof g->data);
    g->s = *s;
    memcpy(g->data, s->data, s->data_len);
    g->data[s->data_len] = '\0';
    g->s.data = g->data;
    copy_blob(g->channels, sizeof g->channels, s->channels, s->channels_len);
    copy_blob(g->subscribe, sizeof g->subscribe, s->subscribe, s->subscribe_len);
    g->s.channels = g->channels;
    g->s.subscribe = g->subscribe;
}

static void
on_list(void *arg, enum store_status status, const struct session *list, size_t n)
{
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->nlist = n;
    for (size_t i = 0; i < n && i < 16; i++) {
        memcpy(g->ids[i], list[i].id, sizeof g->ids[i]);
        g->created[i] = list[i].created_at;
        copy_blob(g->list_channels[i], sizeof g->list_channels[i], list[i].channels,
                  list[i].channels_len);
        copy_blob(g->list_subscribe[i], sizeof g->list_subscribe[i], list[i].subscribe,
                  list[i].subscribe_len);
    }
}

static void
on_count(void *arg, enum store_status status, uint64_t n)
{
    struct got *g = arg;
    g->calls++;
    g->status = status;
    g->n = n;
}

/* Session number n of user, created at now; its token hash derives from n, and its id
 * from the hash as the API makes it. */
static void
mk(struct session *s, int n, const char *user, int64_t now, int64_t ttl, const char *data)
{
    memset(s, 0, sizeof *s);
    snprintf(s->user, sizeof s->user, "%s", user);
    memcpy(s->token_hash, &n, sizeof n);
    s->token_hash[SESSION_HASH_LEN - 1] = 0xab;
    token_id_of_hash(s->token_hash, s->id);
    s->created_at = now;
    s->expires_at = now + ttl;
    s->ttl = ttl;
    s->version = 99; /* ignored by create */
    s->data = data;
    s->data_len = strlen(data);
}

static const char *
sid_fmt(char *buf, int n)
{
    struct session s;
    mk(&s, n, "x", 0, 0, "");
    memcpy(buf, s.id, SESSION_ID_LEN + 1);
    return buf;
}

/* The id of session number n, in a buffer that lives as long as the enclosing block. */
#define sid(n) sid_fmt((char[SESSION_ID_LEN + 1]){0}, (n))

/* Wait for a one-session answer and make its times relative to t0. */
static enum store_status
t_one(struct fx *f, struct got *g)
{
    fx_wait(f, g);
    ck_assert(g->has_session == (g->status == STORE_OK));
    if (g->has_session) {
        g->s.created_at -= f->t0;
        g->s.expires_at -= f->t0;
    }
    return g->status;
}

/* s has absolute times. */
static enum store_status
t_create(struct fx *f, const struct session *s, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_create(f->st, s, on_session, g);
    return t_one(f, g);
}

static enum store_status
t_new(struct fx *f, int n, const char *user, int64_t now, int64_t ttl, const char *data)
{
    struct session s;
    struct got g;
    mk(&s, n, user, at(f, now), ttl, data);
    return t_create(f, &s, &g);
}

static enum store_status
t_get(struct fx *f, const char *id, int64_t now, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_get(f->st, id, at(f, now), on_session, g);
    return t_one(f, g);
}

static enum store_status
t_hash(struct fx *f, const uint8_t hash[SESSION_HASH_LEN], int64_t now, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_get_by_token(f->st, hash, at(f, now), on_session, g);
    return t_one(f, g);
}

static enum store_status
t_token(struct fx *f, int n, int64_t now, struct got *g)
{
    struct session s;
    mk(&s, n, "x", 0, 0, "");
    return t_hash(f, s.token_hash, now, g);
}

static enum store_status
t_update(struct fx *f, const char *id, int64_t now, const struct store_change *ch,
         struct got *g)
{
    memset(g, 0, sizeof *g);
    store_update(f->st, id, at(f, now), ch, on_session, g);
    return t_one(f, g);
}

static enum store_status
t_patch(struct fx *f, const char *id, int64_t now, const char *patch, uint64_t if_version,
        struct got *g)
{
    struct store_change ch = {.patch = patch, .patch_len = strlen(patch),
                              .if_version = if_version};
    return t_update(f, id, now, &ch, g);
}

static enum store_status
t_delete_if(struct fx *f, const char *id, uint64_t if_version, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_delete(f->st, id, if_version, on_session, g);
    return t_one(f, g);
}

static enum store_status
t_delete(struct fx *f, const char *id, struct got *g)
{
    return t_delete_if(f, id, 0, g);
}

/* A page of at most limit sessions after (created, id); id NULL for the first page. */
static size_t
t_page(struct fx *f, const char *user, int64_t now, int64_t created, const char *id,
       size_t limit, struct got *g)
{
    struct store_page page = {.limit = limit};
    if (id != NULL) {
        page.after_created = at(f, created);
        snprintf(page.after_id, sizeof page.after_id, "%s", id);
    }
    memset(g, 0, sizeof *g);
    store_list_user(f->st, user, at(f, now), &page, on_list, g);
    fx_wait(f, g);
    ck_assert_int_eq(g->status, STORE_OK);
    for (size_t i = 0; i < g->nlist && i < 16; i++)
        g->created[i] -= f->t0;
    return g->nlist;
}

static size_t
t_list(struct fx *f, const char *user, int64_t now, struct got *g)
{
    struct store_page page = {.limit = 10000};
    memset(g, 0, sizeof *g);
    store_list_user(f->st, user, at(f, now), &page, on_list, g);
    fx_wait(f, g);
    ck_assert_int_eq(g->status, STORE_OK);
    for (size_t i = 0; i < g->nlist && i < 16; i++)
        g->created[i] -= f->t0;
    return g->nlist;
}

static uint64_t
t_count(struct fx *f)
{
    struct got g = {0};
    store_count(f->st, on_count, &g);
    fx_wait(f, &g);
    ck_assert_int_eq(g.status, STORE_OK);
    return g.n;
}

static uint64_t
t_delete_user(struct fx *f, const char *user)
{
    struct got g = {0};
    store_delete_user(f->st, user, on_count, &g);
    fx_wait(f, &g);
    ck_assert_int_eq(g.status, STORE_OK);
    return g.n;
}

/* LMDB sweeps at once and says how many; Redis sends its command and says 0. */
static int
t_sweep(struct fx *f, int64_t now, int max)
{
    return store_sweep(f->st, at(f, now), max);
}

/* ---- the interface, on each engine (_i is the engine) ---- */

START_TEST(round_trip)
{
    struct fx f;
    struct session s;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    mk(&s, 1, "alice@example.com", at(&f, 1000), 3600, "{\"cart\":[1,2],\"n\":1}");
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_str_eq(g.s.id, s.id);
    ck_assert_str_eq(g.data, "{\"cart\":[1,2],\"n\":1}");

    ck_assert_int_eq(t_get(&f, s.id, 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.id, sid(1));
    ck_assert_str_eq(g.s.user, "alice@example.com");
    ck_assert_mem_eq(g.s.token_hash, s.token_hash, SESSION_HASH_LEN);
    ck_assert_int_eq(g.s.created_at, 1000);
    ck_assert_int_eq(g.s.expires_at, 4600);
    ck_assert_int_eq(g.s.ttl, 3600);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_uint_eq(g.s.data_len, strlen(s.data));
    ck_assert_str_eq(g.data, "{\"cart\":[1,2],\"n\":1}");

    ck_assert_int_eq(t_token(&f, 1, 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.id, s.id);
    ck_assert_str_eq(g.s.user, "alice@example.com");
    ck_assert_str_eq(g.data, "{\"cart\":[1,2],\"n\":1}");
    ck_assert_uint_eq(t_count(&f), 1);

    struct store_info info;
    store_info(f.st, &info);
    ck_assert_str_eq(info.backend, f.engine == LMDB ? "lmdb" : "redis");
    ck_assert(info.healthy);
    ck_assert_str_eq(info.circuit, "closed");
    ck_assert_str_eq(store_last_error(f.st), "");
    fx_teardown(&f);
}
END_TEST

START_TEST(unknown_ids)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(2), 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, "", 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, "s0000000000000000000010", 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(&f, 2, 1000, &g), STORE_NOT_FOUND);
    /* A hash that gives session 1's id but is not its token's: the id alone opens nothing. */
    struct session s;
    mk(&s, 1, "u", 0, 0, "");
    s.token_hash[SESSION_HASH_LEN - 1] ^= 1;
    ck_assert_int_eq(t_hash(&f, s.token_hash, 1000, &g), STORE_NOT_FOUND);
    s.token_hash[SESSION_HASH_LEN - 1] ^= 1;
    ck_assert_int_eq(t_hash(&f, s.token_hash, 1000, &g), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

START_TEST(expired_is_not_found_before_the_sweep)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 10, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1009, &g), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(&f, 1, 1009, &g), STORE_OK);
    ck_assert_int_eq(t_token(&f, 1, 1010, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(&f, "u", 1010, &g), 0);
    struct store_change touch = {.touch = true};
    ck_assert_int_eq(t_update(&f, sid(1), 1010, &touch, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_count(&f), 1); /* still there until the sweep */
    ck_assert_int_eq(t_get(&f, sid(1), 1009, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

START_TEST(create_refusals)
{
    struct fx f;
    struct session s;
    struct got g;
    char big[80];
    fx_setup(&f, _i, 100, 10, 64);
    snprintf(big, sizeof big, "{\"x\":\"%059d\"}", 0); /* 67 bytes */
    mk(&s, 1, "u", at(&f, 1000), 60, big);
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_TOO_BIG);
    big[62] = '\0', big[61] = '}', big[60] = '"'; /* 62 bytes */
    mk(&s, 1, "u", at(&f, 1000), 60, big);
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 1);

    mk(&s, 1, "u", at(&f, 1000), 60, "{}"); /* the same id again */
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_ERROR);
    ck_assert_str_eq(store_last_error(f.st), "a session with this id exists");
    mk(&s, 2, "u", at(&f, 1000), 60, "{}");
    s.id[0] = s.id[0] == 'A' ? 'B' : 'A'; /* not the id its token gives */
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_ERROR);
    ck_assert_str_eq(store_last_error(f.st), "session id: not the id of its token");
    mk(&s, 3, "", at(&f, 1000), 60, "{}");
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_ERROR);
    ck_assert_str_eq(store_last_error(f.st), "user: 1 to 128 bytes");
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_uint_eq(t_list(&f, "u", 1000, &g), 1);

    struct store_info info;
    store_info(f.st, &info);
    ck_assert(info.healthy); /* a caller's mistake is not the store's ill health */
    fx_teardown(&f);
}
END_TEST

START_TEST(per_user_limit)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 3, 4096);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(t_new(&f, i, "u1", 1000 + i, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 4, "u1", 1005, 60, "{}"), STORE_USER_LIMIT);
    ck_assert_uint_eq(t_count(&f), 3);
    ck_assert_int_eq(t_get(&f, sid(4), 1005, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(&f, 4, 1005, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(&f, "u1", 1005, &g), 3);
    ck_assert_int_eq(t_new(&f, 5, "u2", 1005, 60, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 4);
    fx_teardown(&f);
}
END_TEST

START_TEST(per_user_limit_ignores_expired)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 3, 4096);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(t_new(&f, i, "u", 1000, 10, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 10, "u", 1009, 60, "{}"), STORE_USER_LIMIT);
    /* At 1010 all three have expired: the create deletes them and goes on. */
    ck_assert_int_eq(t_new(&f, 11, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_int_eq(t_new(&f, 12, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 13, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 14, "u", 1010, 60, "{}"), STORE_USER_LIMIT);
    ck_assert_uint_eq(t_count(&f), 3);
    ck_assert_uint_eq(t_list(&f, "u", 1010, &g), 3);
    ck_assert_str_eq(g.ids[0], sid(11));
    fx_teardown(&f);
}
END_TEST

START_TEST(total_limit)
{
    struct fx f;
    struct got g;
    char user[16];
    fx_setup(&f, _i, 5, 100, 4096);
    for (int i = 1; i <= 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        ck_assert_int_eq(t_new(&f, i, user, 1000, i <= 2 ? 10 : 1000, "{}"), STORE_OK);
    }
    ck_assert_int_eq(t_new(&f, 6, "u6", 1005, 1000, "{}"), STORE_FULL);
    ck_assert_uint_eq(t_count(&f), 5);
    ck_assert_int_eq(t_get(&f, sid(6), 1005, &g), STORE_NOT_FOUND);

    /* Sessions 1 and 2 expired at 1010: the create reclaims them, and only them. */
    ck_assert_int_eq(t_new(&f, 6, "u6", 1020, 1000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 4);
    for (int i = 3; i <= 6; i++)
        ck_assert_int_eq(t_get(&f, sid(i), 1020, &g), STORE_OK);
    /* Their index entries went with them: session 1's id and token are free again. */
    ck_assert_int_eq(t_new(&f, 1, "u7", 1020, 1000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 5);
    /* Nothing has expired now, and nothing live is evicted. */
    ck_assert_int_eq(t_new(&f, 8, "u8", 1020, 1000, "{}"), STORE_FULL);
    ck_assert_uint_eq(t_count(&f), 5);
    fx_teardown(&f);
}
END_TEST

START_TEST(update_merge_and_versions)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{\"a\":1,\"b\":{\"c\":2}}"), STORE_OK);
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"b\":{\"c\":null,\"d\":3},\"e\":[1]}", 0, &g),
                     STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_str_eq(g.data, "{\"a\":1,\"b\":{\"d\":3},\"e\":[1]}");
    ck_assert_int_eq(g.s.expires_at, 1100);
    ck_assert_int_eq(g.s.ttl, 100);
    ck_assert_str_eq(g.s.user, "u");
    ck_assert_int_eq(g.s.created_at, 1000);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_str_eq(g.data, "{\"a\":1,\"b\":{\"d\":3},\"e\":[1]}");

    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"a\":5}", 1, &g), STORE_VERSION);
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"a\":2}", 2, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_str_eq(g.data, "{\"a\":2,\"b\":{\"d\":3},\"e\":[1]}");
    /* Every patch is a new version, even one that leaves the data as it was (API.md). */
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"a\":2}", 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_str_eq(g.data, "{\"a\":2,\"b\":{\"d\":3},\"e\":[1]}");
    /* The token finds the new state too. */
    ck_assert_int_eq(t_token(&f, 1, 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    fx_teardown(&f);
}
END_TEST

START_TEST(update_ttl_and_touch)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    struct store_change ttl = {.ttl = 500};
    ck_assert_int_eq(t_update(&f, sid(1), 1010, &ttl, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_int_eq(g.s.ttl, 500);
    ck_assert_int_eq(g.s.expires_at, 1100); /* a new ttl without a touch keeps the expiry */

    struct store_change touch = {.touch = true};
    ck_assert_int_eq(t_update(&f, sid(1), 1050, &touch, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_int_eq(g.s.expires_at, 1550);
    ck_assert_str_eq(g.data, "{}");
    ck_assert_int_eq(t_get(&f, sid(1), 1549, &g), STORE_OK);
    ck_assert_int_eq(g.s.expires_at, 1550);
    ck_assert_uint_eq(g.s.version, 2);

    struct store_change both = {.ttl = 500, .touch = true}; /* a ttl, even the same: new */
    ck_assert_int_eq(t_update(&f, sid(1), 1060, &both, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_int_eq(g.s.expires_at, 1560);
    /* If-Match holds for a ttl change as for a patch. */
    struct store_change stale = {.ttl = 600, .if_version = 2};
    ck_assert_int_eq(t_update(&f, sid(1), 1060, &stale, &g), STORE_VERSION);
    struct store_change fresh = {.ttl = 600, .if_version = 3};
    ck_assert_int_eq(t_update(&f, sid(1), 1060, &fresh, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_int_eq(g.s.ttl, 600);
    ck_assert_int_eq(g.s.expires_at, 1560);

    /* The expiry index moved with the session: the old expiry sweeps nothing. */
    ck_assert_int_eq(t_sweep(&f, 1100, 10), 0);
    ck_assert_int_eq(t_get(&f, sid(1), 1559, &g), STORE_OK);
    ck_assert_int_eq(g.s.expires_at, 1560);
    ck_assert_int_eq(t_token(&f, 1, 1559, &g), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_int_eq(t_sweep(&f, 1559, 10), 0);
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_int_eq(t_sweep(&f, 1560, 10), f.engine == LMDB ? 1 : 0);
    ck_assert_uint_eq(t_count(&f), 0);
    ck_assert_int_eq(t_update(&f, sid(1), 1560, &touch, &g), STORE_NOT_FOUND);
    if (f.engine == LMDB) /* swept means deleted, at any time; Redis deletes it at 1560 */
        ck_assert_int_eq(t_update(&f, sid(1), 1000, &touch, &g), STORE_NOT_FOUND);
    fx_teardown(&f);
}
END_TEST

START_TEST(update_refusals)
{
    struct fx f;
    struct got g;
    char patch[96];
    fx_setup(&f, _i, 100, 10, 64);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{\"a\":1}"), STORE_OK);
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "[1]", 0, &g), STORE_BAD_DATA);
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "\"x\"", 0, &g), STORE_BAD_DATA);
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"b\":", 0, &g), STORE_BAD_DATA);
    snprintf(patch, sizeof patch, "{\"b\":\"%051d\"}", 0); /* {"a":1,"b":"0..0"}: 65 bytes */
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, patch, 0, &g), STORE_TOO_BIG);
    snprintf(patch, sizeof patch, "{\"b\":\"%050d\"}", 0); /* 64 bytes: fits */
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_str_eq(g.data, "{\"a\":1}");
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, patch, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.data_len, 64);
    ck_assert_uint_eq(g.s.version, 2);

    ck_assert_int_eq(t_patch(&f, sid(2), 1010, "{}", 0, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_patch(&f, sid(1), 1100, "{}", 0, &g), STORE_NOT_FOUND); /* expired */
    ck_assert_int_eq(t_patch(&f, "", 1010, "{}", 0, &g), STORE_NOT_FOUND);
    fx_teardown(&f);
}
END_TEST

START_TEST(delete_one)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u1", 1000, 100, "{\"k\":1}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 2, "u1", 1001, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_delete(&f, sid(1), &g), STORE_OK);
    ck_assert(g.has_session);
    ck_assert_str_eq(g.s.id, sid(1));
    ck_assert_str_eq(g.s.user, "u1");
    ck_assert_str_eq(g.data, "{\"k\":1}");
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(&f, 1, 1010, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(&f, "u1", 1010, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_int_eq(t_delete(&f, sid(1), &g), STORE_NOT_FOUND);
    ck_assert(!g.has_session);
    ck_assert_int_eq(t_delete(&f, "", &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_count(&f), 1);
    /* If-Match: a stale version deletes nothing; the current one deletes. */
    ck_assert_int_eq(t_delete_if(&f, sid(2), 2, &g), STORE_VERSION);
    ck_assert(!g.has_session);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g), STORE_OK);
    ck_assert_int_eq(t_delete_if(&f, sid(2), 1, &g), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_new(&f, 2, "u1", 1001, 100, "{}"), STORE_OK);
    /* No index entry of the deleted session is left to point at a new session that
     * happens to take its id. */
    ck_assert_int_eq(t_new(&f, 1, "u9", 1000, 100, "{}"), STORE_OK);
    ck_assert_uint_eq(t_list(&f, "u1", 1010, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(2));
    fx_teardown(&f);
}
END_TEST

START_TEST(delete_user)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u1", 1000, 10, "{}"), STORE_OK); /* expires at 1010 */
    ck_assert_int_eq(t_new(&f, 2, "u1", 1001, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 3, "u1", 1002, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 4, "u2", 1003, 100, "{}"), STORE_OK);
    ck_assert_uint_eq(t_delete_user(&f, "u1"), 3);
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_uint_eq(t_list(&f, "u1", 1005, &g), 0);
    ck_assert_int_eq(t_token(&f, 2, 1005, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, sid(3), 1005, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, sid(4), 1005, &g), STORE_OK);
    ck_assert_uint_eq(t_delete_user(&f, "u1"), 0);
    ck_assert_uint_eq(t_delete_user(&f, "nobody"), 0);
    ck_assert_uint_eq(t_delete_user(&f, ""), 0);
    ck_assert_uint_eq(t_count(&f), 1);
    /* The user can start again from nothing. */
    ck_assert_int_eq(t_new(&f, 2, "u1", 1006, 100, "{}"), STORE_OK);
    ck_assert_uint_eq(t_list(&f, "u1", 1006, &g), 1);
    fx_teardown(&f);
}
END_TEST

START_TEST(list_oldest_first)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 3000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 2, "u", 1000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 3, "u", 2000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 6, "u", 2000, 10000, "{}"), STORE_OK); /* 3's time: by id */
    ck_assert_int_eq(t_new(&f, 4, "u", 500, 10, "{}"), STORE_OK); /* expired at 510 */
    ck_assert_int_eq(t_new(&f, 5, "v", 1500, 10000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_list(&f, "u", 3000, &g), 4);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_int_eq(g.created[0], 1000);
    ck_assert_str_eq(g.ids[1], sid(3));
    ck_assert_int_eq(g.created[1], 2000);
    ck_assert_str_eq(g.ids[2], sid(6));
    ck_assert_int_eq(g.created[2], 2000);
    ck_assert_str_eq(g.ids[3], sid(1));
    ck_assert_int_eq(g.created[3], 3000);
    ck_assert_uint_eq(t_list(&f, "u", 505, &g), 5);
    ck_assert_str_eq(g.ids[0], sid(4));
    ck_assert_uint_eq(t_list(&f, "nobody", 3000, &g), 0);
    ck_assert_uint_eq(t_list(&f, "", 3000, &g), 0);
    fx_teardown(&f);
}
END_TEST

/* Pages follow the list's order, each after the last one shown, also when that one is
 * gone by then, and with sessions created in the same second told apart by id. */
START_TEST(list_in_pages)
{
    struct fx f;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 3000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 2, "u", 1000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 3, "u", 2000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 6, "u", 2000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 5, "v", 1500, 10000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_page(&f, "u", 3000, 0, NULL, 2, &g), 2);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_str_eq(g.ids[1], sid(3));
    ck_assert_uint_eq(t_page(&f, "u", 3000, 2000, sid(3), 2, &g), 2);
    ck_assert_str_eq(g.ids[0], sid(6));
    ck_assert_str_eq(g.ids[1], sid(1));
    ck_assert_uint_eq(t_page(&f, "u", 3000, 2000, sid(6), 2, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(1));
    ck_assert_uint_eq(t_page(&f, "u", 3000, 3000, sid(1), 2, &g), 0);
    ck_assert_uint_eq(t_page(&f, "u", 3000, 1000, sid(2), 1, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(3));
    /* the session the cursor names was deleted: the page starts where it was */
    ck_assert_int_eq(t_delete(&f, sid(3), &g), STORE_OK);
    ck_assert_uint_eq(t_page(&f, "u", 3000, 2000, sid(3), 5, &g), 2);
    ck_assert_str_eq(g.ids[0], sid(6));
    ck_assert_str_eq(g.ids[1], sid(1));
    /* a cursor before every session, and one past them all */
    ck_assert_uint_eq(t_page(&f, "u", 3000, 1, sid(1), 5, &g), 3);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_uint_eq(t_page(&f, "u", 3000, 9999, sid(1), 5, &g), 0);
    fx_teardown(&f);
}
END_TEST

/* Channels (grants) and subscribe are kept whole, by every read, and replaced whole by
 * an update that sets them; each such update is a new version. */
#define CH1 "[\"room:*\",\"lobby\"]"
#define SUB1 "[\"news\"]"

static enum store_status
t_grants(struct fx *f, const char *id, bool set_channels, const char *channels,
         bool set_subscribe, const char *subscribe, uint64_t if_version, struct got *g)
{
    struct store_change ch = {.set_channels = set_channels, .channels = channels,
                              .channels_len = channels ? strlen(channels) : 0,
                              .set_subscribe = set_subscribe, .subscribe = subscribe,
                              .subscribe_len = subscribe ? strlen(subscribe) : 0,
                              .if_version = if_version};
    return t_update(f, id, 1010, &ch, g);
}

START_TEST(grants_round_trip)
{
    struct fx f;
    struct session s;
    struct got g;
    fx_setup(&f, _i, 100, 10, 4096);
    mk(&s, 1, "u", at(&f, 1000), 100, "{\"a\":1}");
    s.channels = CH1, s.channels_len = strlen(CH1);
    s.subscribe = SUB1, s.subscribe_len = strlen(SUB1);
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_int_eq(t_new(&f, 2, "u", 1001, 100, "{}"), STORE_OK); /* none */

    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_str_eq(g.data, "{\"a\":1}");
    ck_assert_int_eq(t_token(&f, 1, 1010, &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    ck_assert_uint_eq(t_list(&f, "u", 1010, &g), 2);
    ck_assert_str_eq(g.list_channels[0], CH1);
    ck_assert_str_eq(g.list_subscribe[0], SUB1);
    ck_assert_str_eq(g.list_channels[1], "");
    ck_assert_str_eq(g.list_subscribe[1], "");

    /* Channels replaced, subscribe kept. */
    ck_assert_int_eq(t_grants(&f, sid(1), true, "[\"a\"]", false, NULL, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_str_eq(g.channels, "[\"a\"]");
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_str_eq(g.data, "{\"a\":1}");
    /* Subscribe to none, channels kept. */
    ck_assert_int_eq(t_grants(&f, sid(1), false, NULL, true, "", 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_str_eq(g.channels, "[\"a\"]");
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_str_eq(g.channels, "[\"a\"]");
    ck_assert_str_eq(g.subscribe, "");
    /* The same values again are still a new version, as a patch that changes nothing is. */
    ck_assert_int_eq(t_grants(&f, sid(1), true, "[\"a\"]", false, NULL, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    /* If-Match: a stale version changes nothing. */
    ck_assert_int_eq(t_grants(&f, sid(1), true, CH1, true, SUB1, 3, &g), STORE_VERSION);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_str_eq(g.channels, "[\"a\"]");
    ck_assert_str_eq(g.subscribe, "");
    ck_assert_int_eq(t_grants(&f, sid(1), true, CH1, true, SUB1, 4, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 5);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    /* A data patch and a touch leave them be, and a touch makes no version. */
    ck_assert_int_eq(t_patch(&f, sid(1), 1010, "{\"b\":2}", 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 6);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    struct store_change touch = {.touch = true};
    ck_assert_int_eq(t_update(&f, sid(1), 1020, &touch, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 6);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    /* Both to none: the session has no grants, as one created without. */
    ck_assert_int_eq(t_grants(&f, sid(1), true, NULL, true, NULL, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 7);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.channels, "");
    ck_assert_str_eq(g.subscribe, "");
    ck_assert_str_eq(g.data, "{\"a\":1,\"b\":2}");
    /* Grants on a session that had none; the delete hands them back. */
    ck_assert_int_eq(t_grants(&f, sid(2), true, CH1, true, SUB1, 1, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_int_eq(t_delete(&f, sid(2), &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_int_eq(t_grants(&f, sid(2), true, CH1, false, NULL, 0, &g), STORE_NOT_FOUND);
    fx_teardown(&f);
}
END_TEST

/* Grants longer than any the API makes are refused, and write nothing. */
START_TEST(grants_refusals)
{
    struct fx f;
    struct session s;
    struct got g;
    static char big[16386];
    fx_setup(&f, _i, 100, 10, 4096);
    memset(big, 'a', sizeof big - 1);
    mk(&s, 1, "u", at(&f, 1000), 100, "{}");
    s.channels = big, s.channels_len = sizeof big - 1;
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_ERROR);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_NOT_FOUND);
    s.channels = NULL, s.channels_len = 2;
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_ERROR);
    s.channels_len = 0;
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_OK);
    ck_assert_int_eq(t_grants(&f, sid(1), false, NULL, true, big, 0, &g), STORE_ERROR);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    /* The largest allowed is kept whole. */
    big[16384] = '\0';
    ck_assert_int_eq(t_grants(&f, sid(1), false, NULL, true, big, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.subscribe_len, 16384);
    fx_teardown(&f);
}
END_TEST

/* ---- LMDB only ---- */

START_TEST(sync_mode_round_trip)
{
    struct fx f;
    struct got g;
    fx_conf(&f, LMDB, 100, 10, 4096);
    f.c.store_sync = true;
    fx_start(&f);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{}");
    fx_teardown(&f);
}
END_TEST

/* The store file by hand, as another program would open it (while no store has it
 * open: LMDB wants one environment per file and process). */
struct raw {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi sessions, users, expiry;
};

static void
raw_open(const struct fx *f, struct raw *r)
{
    ck_assert_int_eq(mdb_env_create(&r->env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(r->env, 3), 0);
    ck_assert_int_eq(mdb_env_open(r->env, f->c.store_path, MDB_NOSUBDIR, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    ck_assert_int_eq(mdb_dbi_open(r->txn, "sessions", 0, &r->sessions), 0);
    ck_assert_int_eq(mdb_dbi_open(r->txn, "users", MDB_DUPSORT, &r->users), 0);
    ck_assert_int_eq(mdb_dbi_open(r->txn, "expiry", 0, &r->expiry), 0);
}

static void
raw_close(struct raw *r)
{
    ck_assert_int_eq(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* The size of the record of id. */
static size_t
raw_size(struct raw *r, const char *id)
{
    MDB_val k = {.mv_size = strlen(id), .mv_data = (void *)id}, v;
    ck_assert_int_eq(mdb_get(r->txn, r->sessions, &k, &v), 0);
    return v.mv_size;
}

static void
raw_be64(char *p, int64_t t)
{
    for (int i = 7; i >= 0; i--, t >>= 8)
        p[i] = (char)(t & 0xff);
}

/* Session s written as the records of the first format were (before grants): a 70-byte
 * header (version, created, expires and ttl as native 64-bit integers, the 32-byte token
 * hash, the user's length as u16 and the data's as u32), the user, the data; and extra
 * bytes after it, which that format never had. */
static void
raw_put_v1(struct raw *r, const struct session *s, uint64_t version, const char *extra)
{
    char rec[512], key[8 + SESSION_ID_LEN];
    uint16_t ulen = (uint16_t)strlen(s->user);
    uint32_t dlen = (uint32_t)s->data_len;
    size_t n = 70 + ulen + dlen, xlen = strlen(extra);
    memcpy(rec, &version, 8);
    memcpy(rec + 8, &s->created_at, 8);
    memcpy(rec + 16, &s->expires_at, 8);
    memcpy(rec + 24, &s->ttl, 8);
    memcpy(rec + 32, s->token_hash, SESSION_HASH_LEN);
    memcpy(rec + 64, &ulen, 2);
    memcpy(rec + 66, &dlen, 4);
    memcpy(rec + 70, s->user, ulen);
    memcpy(rec + 70 + ulen, s->data, dlen);
    memcpy(rec + n, extra, xlen);
    MDB_val k = {.mv_size = SESSION_ID_LEN, .mv_data = (void *)s->id};
    MDB_val v = {.mv_size = n + xlen, .mv_data = rec};
    ck_assert_int_eq(mdb_put(r->txn, r->sessions, &k, &v, 0), 0);
    raw_be64(key, s->created_at);
    memcpy(key + 8, s->id, SESSION_ID_LEN);
    k = (MDB_val){.mv_size = ulen, .mv_data = (void *)s->user};
    v = (MDB_val){.mv_size = sizeof key, .mv_data = key};
    ck_assert_int_eq(mdb_put(r->txn, r->users, &k, &v, 0), 0);
    raw_be64(key, s->expires_at);
    k = (MDB_val){.mv_size = sizeof key, .mv_data = key};
    v = (MDB_val){.mv_size = 0, .mv_data = ""};
    ck_assert_int_eq(mdb_put(r->txn, r->expiry, &k, &v, 0), 0);
}

/* A store file written before sessions had grants reads on: its records as sessions
 * without grants, which take grants when an update sets them. A session without grants
 * is still written in that first format, byte for byte, so that an older sessiond
 * reads it too; a record whose tail is not a whole grants tail is malformed. */
START_TEST(records_without_grants_read_as_none)
{
    struct fx f;
    struct got g;
    struct session s;
    struct raw r;
    fx_setup(&f, LMDB, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "new", 1000, 100, "{\"n\":1}"), STORE_OK);
    store_close(f.st);
    raw_open(&f, &r);
    ck_assert_uint_eq(raw_size(&r, sid(1)), 70 + strlen("new") + strlen("{\"n\":1}"));
    mk(&s, 2, "old", 1000, 100, "{\"o\":2}");
    raw_put_v1(&r, &s, 3, "");
    mk(&s, 3, "bad", 1000, 100, "{}");
    raw_put_v1(&r, &s, 1, "\x01\x05");
    raw_close(&r);

    f.st = fx_open(&f, &f.c);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.s.user, "old");
    ck_assert_str_eq(g.data, "{\"o\":2}");
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_int_eq(g.s.expires_at, 1100);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    ck_assert_int_eq(t_token(&f, 2, 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(t_list(&f, "old", 1010, &g), 1);
    ck_assert_str_eq(g.list_channels[0], "");
    ck_assert_int_eq(t_grants(&f, sid(2), true, CH1, false, NULL, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, "");
    ck_assert_str_eq(g.data, "{\"o\":2}");
    ck_assert_int_eq(t_get(&f, sid(3), 1010, &g), STORE_ERROR);
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "malformed record"));
    /* With grants, a tail; without them again, the first format again. */
    ck_assert_int_eq(t_grants(&f, sid(1), false, NULL, true, SUB1, 0, &g), STORE_OK);
    store_close(f.st);
    raw_open(&f, &r);
    ck_assert_uint_eq(raw_size(&r, sid(1)), 70 + 3 + 7 + 5 + strlen(SUB1));
    ck_assert_uint_eq(raw_size(&r, sid(2)), 70 + 3 + 7 + 5 + strlen(CH1));
    raw_close(&r);
    f.st = fx_open(&f, &f.c);
    ck_assert_int_eq(t_grants(&f, sid(1), false, NULL, true, "", 0, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"n\":1}");
    store_close(f.st);
    raw_open(&f, &r);
    ck_assert_uint_eq(raw_size(&r, sid(1)), 70 + 3 + 7);
    raw_close(&r);
    f.st = fx_open(&f, &f.c);
    fx_teardown(&f);
}
END_TEST

/* With a loop, creates wait for the group commit: their grants must outlive the call. */
START_TEST(queued_create_keeps_grants)
{
    struct fx f;
    struct got g = {0};
    struct session s;
    char channels[64], subscribe[64];
    fx_conf(&f, LMDB, 100, 10, 4096);
    fx_prepare(&f.c);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    char err[CONF_ERR_LEN] = "";
    f.st = store_open(&f.c, loop, err, sizeof err);
    ck_assert_msg(f.st != NULL, "store_open: %s", err);
    snprintf(channels, sizeof channels, "%s", CH1);
    snprintf(subscribe, sizeof subscribe, "%s", SUB1);
    mk(&s, 1, "u", 1000, 100, "{}");
    s.channels = channels, s.channels_len = strlen(channels);
    s.subscribe = subscribe, s.subscribe_len = strlen(subscribe);
    store_create(f.st, &s, on_session, &g);
    ck_assert_int_eq(g.calls, 0);
    memset(channels, 'x', sizeof channels); /* the caller's memory is gone */
    memset(subscribe, 'x', sizeof subscribe);
    ev_run(loop, EVRUN_NOWAIT);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, SUB1);
    fx_teardown(&f);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(sweep_in_batches)
{
    struct fx f;
    struct got g;
    char user[16];
    fx_setup(&f, LMDB, 100, 100, 4096);
    for (int i = 1; i <= 10; i++) {
        snprintf(user, sizeof user, "u%d", i % 3);
        ck_assert_int_eq(t_new(&f, i, user, 1000, i <= 7 ? 10 + i : 1000, "{}"), STORE_OK);
    }
    ck_assert_int_eq(store_sweep(f.st, 1010, 100), 0);
    ck_assert_int_eq(store_sweep(f.st, 1017, 0), 0);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 3);
    ck_assert_uint_eq(t_count(&f), 7);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 3);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 1);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 0);
    ck_assert_uint_eq(t_count(&f), 3);
    for (int i = 8; i <= 10; i++)
        ck_assert_int_eq(t_get(&f, sid(i), 1017, &g), STORE_OK);
    /* Nothing of the swept ones is left: their ids and tokens can be used again. */
    ck_assert_uint_eq(t_list(&f, "u1", 900, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(10));
    for (int i = 1; i <= 7; i++)
        ck_assert_int_eq(t_new(&f, i, "again", 2000, 10, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(&f), 10);
    fx_teardown(&f);
}
END_TEST

/* A callback may call the store again (the engine calls back before returning), and what
 * it was handed stays valid and unchanged meanwhile. */
struct nested {
    struct fx *f;
    int calls;
    enum store_status inner_get, inner_update;
    char before[64], after[64];
};

static void
on_nested(void *arg, enum store_status status, const struct session *s)
{
    struct nested *n = arg;
    struct got g;
    n->calls++;
    ck_assert_int_eq(status, STORE_OK);
    snprintf(n->before, sizeof n->before, "%.*s", (int)s->data_len, s->data);
    n->inner_get = t_get(n->f, sid(2), 1000, &g);
    if (n->inner_get == STORE_OK)
        n->inner_get = t_get(n->f, sid(1), 1000, &g);
    /* Several commits, so that LMDB would reuse the pages the outer read still sees if
     * that read had lost its snapshot. */
    for (int i = 2; i <= 20; i++) {
        char patch[24];
        snprintf(patch, sizeof patch, "{\"a\":%d}", i);
        n->inner_update = t_patch(n->f, sid(1), 1000, patch, 0, &g);
    }
    snprintf(n->after, sizeof n->after, "%.*s", (int)s->data_len, s->data);
}

START_TEST(callbacks_may_call_again)
{
    struct fx f;
    struct got g;
    fx_setup(&f, LMDB, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{\"a\":1}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 2, "u", 1000, 100, "{}"), STORE_OK);
    struct nested n = {.f = &f};
    store_get(f.st, sid(1), 1000, on_nested, &n);
    ck_assert_int_eq(n.calls, 1);
    ck_assert_int_eq(n.inner_get, STORE_OK);
    ck_assert_int_eq(n.inner_update, STORE_OK);
    ck_assert_str_eq(n.before, "{\"a\":1}");
    ck_assert_str_eq(n.after, "{\"a\":1}"); /* the outer read's snapshot */
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"a\":20}");
    ck_assert_uint_eq(g.s.version, 20);
    fx_teardown(&f);
}
END_TEST

/* ---- LMDB only: several processes ---- */

static char
pipe_read_byte(int fd)
{
    char c = 0;
    ssize_t r;
    do
        r = read(fd, &c, 1);
    while (r < 0 && errno == EINTR);
    return r == 1 ? c : 0;
}

static void
pipe_write_byte(int fd, char c)
{
    if (write(fd, &c, 1) != 1)
        _exit(3);
}

/* The second worker: no Check asserts here (this is a child of the test process); each
 * step answers '1' (as expected) or '0'. */
static void
two_handles_child(const struct conf *c, int in, int out)
{
    char err[CONF_ERR_LEN];
    struct got g = {0};
    struct store *st = store_open(c, NULL, err, sizeof err);
    if (st == NULL || pipe_read_byte(in) != 'a')
        _exit(2);
    store_get(st, sid(1), 1000, on_session, &g);
    bool ok = g.status == STORE_OK && strcmp(g.data, "{\"from\":\"parent\"}") == 0;
    struct session s;
    mk(&s, 2, "u", 1000, 100, "{\"from\":\"child\"}");
    memset(&g, 0, sizeof g);
    store_create(st, &s, on_session, &g);
    pipe_write_byte(out, ok && g.status == STORE_OK ? '1' : '0');
    if (pipe_read_byte(in) != 'b')
        _exit(2);
    memset(&g, 0, sizeof g);
    store_get(st, sid(2), 1000, on_session, &g);
    ok = g.status == STORE_OK && g.s.version == 2 &&
         strcmp(g.data, "{\"from\":\"child\",\"seen\":true}") == 0;
    pipe_write_byte(out, ok ? '1' : '0');
    store_close(st);
    _exit(0);
}

START_TEST(two_processes_see_each_other)
{
    struct fx f;
    struct got g;
    int down[2], up[2], status;
    fx_conf(&f, LMDB, 100, 10, 4096);
    fx_prepare(&f.c);
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(pipe(up), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        two_handles_child(&f.c, down[0], up[1]);
    /* Both open after the fork, as workers do. */
    f.st = fx_open(&f, &f.c);
    ck_assert_int_eq(t_get(&f, sid(2), 1000, &g), STORE_NOT_FOUND); /* a read txn, reused */
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{\"from\":\"parent\"}"), STORE_OK);
    pipe_write_byte(down[1], 'a');
    ck_assert_int_eq(pipe_read_byte(up[0]), '1');
    ck_assert_int_eq(t_get(&f, sid(2), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"from\":\"child\"}");
    ck_assert_uint_eq(t_list(&f, "u", 1000, &g), 2);
    ck_assert_int_eq(t_patch(&f, sid(2), 1000, "{\"seen\":true}", 1, &g), STORE_OK);
    pipe_write_byte(down[1], 'b');
    ck_assert_int_eq(pipe_read_byte(up[0]), '1');
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fx_teardown(&f);
}
END_TEST

START_TEST(forked_child_writes)
{
    struct fx f;
    struct got g;
    int status;
    fx_setup(&f, LMDB, 100, 10, 4096);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_NOT_FOUND);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The child leaves the inherited handle alone and opens its own. */
        char err[CONF_ERR_LEN];
        struct store *st = store_open(&f.c, NULL, err, sizeof err);
        if (st == NULL)
            _exit(2);
        struct session s;
        memset(&g, 0, sizeof g);
        mk(&s, 1, "child", 1000, 100, "{\"pid\":1}");
        store_create(st, &s, on_session, &g);
        store_close(st);
        _exit(g.status == STORE_OK ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.user, "child");
    ck_assert_str_eq(g.data, "{\"pid\":1}");
    ck_assert_int_eq(t_token(&f, 1, 1000, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

/* Create sessions first..., reporting each id on out once its create has returned. */
static void
creating_child(const struct conf *c, int first, int out)
{
    char err[CONF_ERR_LEN], user[16], data[64];
    struct store *st = store_open(c, NULL, err, sizeof err);
    if (st == NULL)
        _exit(2);
    for (int i = first;; i++) {
        struct session s;
        struct got g = {0};
        snprintf(user, sizeof user, "u%d", i % 97);
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        mk(&s, i, user, 1000, 100000, data);
        store_create(st, &s, on_session, &g);
        if (g.status != STORE_OK)
            _exit(1);
        if (write(out, &i, sizeof i) != sizeof i)
            _exit(3);
    }
}

/* Read every id the child reports, for ms milliseconds from the first one (a loaded
 * machine may take a while to start the child), then kill it; then read the rest.
 * Returns how many ids were read into ids. */
static size_t
collect_then_kill(pid_t pid, int in, int ms, int *ids, size_t max)
{
    size_t n = 0;
    int64_t end = now_ms() + 10000; /* no id at all within 10 s: give up */
    bool killed = false;
    for (;;) {
        if (!killed && now_ms() >= end) {
            ck_assert_int_eq(kill(pid, SIGKILL), 0);
            killed = true;
        }
        ssize_t r = read(in, &ids[n], sizeof ids[n]);
        if (r == sizeof ids[n] && n < max - 1) {
            if (n++ == 0)
                end = now_ms() + ms;
        } else if (r == 0 && killed) {
            return n;
        } else if (r < 0 && errno != EAGAIN && errno != EINTR) {
            ck_abort_msg("read: %s", strerror(errno));
        } else if (r < 0) {
            usleep(200);
        }
    }
}

START_TEST(kill_9_in_the_middle)
{
    struct fx f;
    struct got g;
    enum { MAX_IDS = 200000 };
    int *ids = malloc(MAX_IDS * sizeof *ids), status;
    fx_conf(&f, LMDB, 1000000, 100000, 256);
    fx_prepare(&f.c);
    size_t total = 0;
    for (int round = 0; round < 3; round++) {
        int p[2];
        ck_assert_int_eq(pipe(p), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(p[0]);
            creating_child(&f.c, 1 + round * MAX_IDS, p[1]);
        }
        close(p[1]);
        ck_assert_int_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
        size_t n = collect_then_kill(pid, p[0], 30 + 20 * round, ids, MAX_IDS);
        close(p[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ck_assert_uint_gt(n, 0);
        total += n;

        /* As the master would at its next start, then as a fresh worker. */
        fx_prepare(&f.c);
        f.st = fx_open(&f, &f.c);
        for (size_t i = 0; i < n; i++) {
            char data[64];
            snprintf(data, sizeof data, "{\"i\":%d}", ids[i]);
            ck_assert_int_eq(t_get(&f, sid(ids[i]), 2000, &g), STORE_OK);
            ck_assert_str_eq(g.data, data);
        }
        uint64_t count = t_count(&f);
        ck_assert_uint_ge(count, total);
        ck_assert_uint_le(count, total + 1); /* at most the create being acknowledged */
        total = count;
        /* The writer lock is free again: a create and a sweep go through. */
        ck_assert_int_eq(t_new(&f, 900000000 + round, "after", 2000, 10, "{}"), STORE_OK);
        ck_assert_int_eq(store_sweep(f.st, 2010, 10), 1);
        store_close(f.st);
        f.st = NULL;
    }
    free(ids);
    fx_teardown(&f);
}
END_TEST

/* ---- LMDB only: full map ---- */

/* Fill the file with large sessions under a roomy config, then reopen it with a config
 * whose map (1 MiB, smaller than the file) has no room to grow: creates must answer
 * STORE_FULL before max_sessions, with nothing written and the store still healthy. */
START_TEST(map_full_is_store_full)
{
    struct fx f;
    struct got g;
    char big[4100], user[SESSION_USER_MAX + 1];
    fx_setup(&f, LMDB, 100000, 1000000, 4096);
    snprintf(big, sizeof big, "{\"p\":\"%03990d\"}", 0);
    for (int i = 1; i <= 200; i++) {
        snprintf(user, sizeof user, "big%d", i);
        ck_assert_int_eq(t_new(&f, i, user, 1000, 100000, big), STORE_OK);
    }
    store_close(f.st);

    struct conf small = f.c;
    small.max_sessions = 990; /* 990 x (16 + 512) x 2 < 1 MiB */
    small.session_max_bytes = 16;
    f.st = fx_open(&f, &small);
    enum store_status last = STORE_OK;
    int i;
    for (i = 1000; i < 1790 && last == STORE_OK; i++) {
        snprintf(user, sizeof user, "%0100d", i);
        last = t_new(&f, i, user, 1000, 100000, "{}");
    }
    ck_assert_int_eq(last, STORE_FULL);
    uint64_t count = t_count(&f);
    ck_assert_uint_lt(count, 990); /* the map was full, not the count */
    ck_assert_uint_eq(count, 200 + (uint64_t)(i - 1 - 1000));
    ck_assert_int_eq(t_get(&f, sid(i - 1), 1000, &g), STORE_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "MDB_MAP_FULL"));
    struct store_info info;
    store_info(f.st, &info);
    ck_assert(info.healthy);
    ck_assert_int_eq(t_get(&f, sid(7), 1000, &g), STORE_OK);
    ck_assert_uint_eq(g.s.data_len, strlen(big));
    store_close(f.st);

    /* The roomy config again: there is room. */
    f.st = fx_open(&f, &f.c);
    ck_assert_int_eq(t_new(&f, i - 1, "again", 1000, 100000, "{}"), STORE_OK);
    fx_teardown(&f);
}
END_TEST

/* ---- LMDB only: the group commit ---- */

/* Writes queued in one loop iteration share a transaction, yet each keeps its own answer:
 * a stale If-Match, data too big and a session already deleted fail alone, in the order
 * the calls came, and what the calls were given was copied. */
START_TEST(group_keeps_each_answer)
{
    struct fx f;
    struct got g[7];
    char p1[16], p2[16], p3[16], big[128];
    fx_setup(&f, LMDB_GROUPED, 100, 10, 64);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(&f, 2, "u", 1000, 100, "{\"k\":1}"), STORE_OK);
    memset(g, 0, sizeof g);
    snprintf(p1, sizeof p1, "{\"a\":1}");
    snprintf(p2, sizeof p2, "{\"b\":2}");
    snprintf(p3, sizeof p3, "{\"c\":3}");
    snprintf(big, sizeof big, "{\"big\":\"%0100d\"}", 0);
    struct store_change c1 = {.patch = p1, .patch_len = strlen(p1), .if_version = 1};
    struct store_change c2 = {.patch = p2, .patch_len = strlen(p2), .if_version = 1};
    struct store_change c3 = {.patch = big, .patch_len = strlen(big)};
    struct store_change touch = {.touch = true, .touch_from = 1050};
    struct store_change c5 = {.patch = p3, .patch_len = strlen(p3), .if_version = 2};
    store_update(f.st, sid(1), 1010, &c1, on_session, &g[0]); /* wins version 1 */
    store_update(f.st, sid(1), 1010, &c2, on_session, &g[1]); /* sees version 2: 412 */
    store_update(f.st, sid(2), 1010, &c3, on_session, &g[2]); /* too big, alone */
    store_update(f.st, sid(2), 1010, &touch, on_session, &g[3]);
    store_update(f.st, sid(1), 1010, &c5, on_session, &g[4]); /* after the first */
    store_delete(f.st, sid(1), 3, on_session, &g[5]);
    store_update(f.st, sid(1), 1010, &c1, on_session, &g[6]); /* deleted just before */
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(g[i].calls, 0); /* nothing answered before the commit */
    memset(p1, 'x', sizeof p1 - 1);      /* the callers' memory is gone */
    memset(p3, 'x', sizeof p3 - 1);
    ev_run(f.loop, EVRUN_NOWAIT);
    enum store_status want[7] = {STORE_OK, STORE_VERSION, STORE_TOO_BIG,  STORE_OK,
                                 STORE_OK, STORE_OK,      STORE_NOT_FOUND};
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(g[i].calls, 1);
        ck_assert_msg(g[i].status == want[i], "write %d: status %d, not %d", i, g[i].status,
                      want[i]);
    }
    ck_assert_uint_eq(g[0].s.version, 2);
    ck_assert_str_eq(g[0].data, "{\"a\":1}");
    ck_assert_uint_eq(g[4].s.version, 3);
    ck_assert_str_eq(g[4].data, "{\"a\":1,\"c\":3}");
    ck_assert_str_eq(g[5].s.user, "u"); /* the deleted session, as it was */
    ck_assert_int_eq(g[3].s.expires_at, 1150);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g[0]), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, sid(2), 1010, &g[0]), STORE_OK);
    ck_assert_str_eq(g[0].data, "{\"k\":1}"); /* the big patch wrote nothing */
    ck_assert_int_eq(g[0].s.expires_at, 1150);
    ck_assert_uint_eq(g[0].s.version, 1);
    fx_teardown(&f);
}
END_TEST

struct answer {
    int calls;
    enum store_status status;
};

static void
on_answer(void *arg, enum store_status status, const struct session *s)
{
    struct answer *a = arg;
    (void)s;
    a->calls++;
    a->status = status;
}

/* A full map in the middle of a group fails the write that did not fit, not the group:
 * the others are written as they would be one by one (a delete among them too), and each
 * answer says what happened to its write. */
START_TEST(group_map_full_fails_alone)
{
    enum { N = 800 };
    struct fx f;
    struct got g;
    char big[4100], user[SESSION_USER_MAX + 1];
    static struct answer a[N + 1];
    fx_setup(&f, LMDB, 100000, 1000000, 4096);
    snprintf(big, sizeof big, "{\"p\":\"%03990d\"}", 0);
    for (int i = 1; i <= 200; i++) {
        snprintf(user, sizeof user, "big%d", i);
        ck_assert_int_eq(t_new(&f, i, user, 1000, 100000, big), STORE_OK);
    }
    store_close(f.st);
    struct conf small = f.c;
    small.max_sessions = 990;
    small.session_max_bytes = 16;
    f.loop = ev_loop_new(EVFLAG_AUTO);
    f.st = fx_open(&f, &small);
    memset(a, 0, sizeof a);
    store_delete(f.st, sid(7), 0, on_answer, &a[N]);
    for (int i = 0; i < N; i++) {
        struct session s;
        snprintf(user, sizeof user, "%0100d", 1000 + i);
        mk(&s, 1000 + i, user, 1000, 100000, "{}");
        store_create(f.st, &s, on_answer, &a[i]);
    }
    ev_run(f.loop, EVRUN_NOWAIT);
    ck_assert_int_eq(a[N].calls, 1);
    ck_assert_int_eq(a[N].status, STORE_OK);
    int ok = 0, full = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(a[i].calls, 1);
        ck_assert_msg(a[i].status == STORE_OK || a[i].status == STORE_FULL, "create %d: status %d",
                      i, a[i].status);
        ok += a[i].status == STORE_OK;
        full += a[i].status == STORE_FULL;
        ck_assert_int_eq(t_get(&f, sid(1000 + i), 1000, &g),
                         a[i].status == STORE_OK ? STORE_OK : STORE_NOT_FOUND);
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(full, 0);
    ck_assert_uint_eq(t_count(&f), 199 + (uint64_t)ok);
    ck_assert_int_eq(t_get(&f, sid(7), 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(&f, sid(8), 1000, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

/* ---- store_prepare and store_open errors ---- */

static void
expect_prepare_error(const struct conf *c, const char *want)
{
    char err[CONF_ERR_LEN] = "";
    ck_assert_int_eq(store_prepare(c, err, sizeof err), -1);
    ck_assert_str_eq(err, want);
}

START_TEST(prepare_creates_what_is_missing)
{
    struct fx f;
    struct stat sb;
    char want[8192];
    fx_conf(&f, LMDB, 100, 10, 4096);
    snprintf(f.c.store_path, sizeof f.c.store_path, "%s/a/b/sessions.db", f.dir);
    char err[CONF_ERR_LEN] = "";
    f.st = store_open(&f.c, NULL, err, sizeof err); /* open does not create directories */
    ck_assert_ptr_null(f.st);
    snprintf(want, sizeof want, "store_path %s: No such file or directory", f.c.store_path);
    ck_assert_str_eq(err, want);
    fx_prepare(&f.c);
    ck_assert_int_eq(stat(f.c.store_path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    ck_assert(S_ISREG(sb.st_mode));
    snprintf(want, sizeof want, "%s-lock", f.c.store_path);
    ck_assert_int_eq(stat(want, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    snprintf(want, sizeof want, "%s/a", f.dir);
    ck_assert_int_eq(stat(want, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0700);
    fx_prepare(&f.c); /* and again, on an existing store */
    f.st = fx_open(&f, &f.c);
    fx_teardown(&f);
}
END_TEST

START_TEST(prepare_errors)
{
    struct fx f;
    char want[8192], file[128];
    fx_conf(&f, LMDB, 100, 10, 4096);

    snprintf(file, sizeof file, "%s/file", f.dir);
    FILE *fp = fopen(file, "w");
    ck_assert_ptr_nonnull(fp);
    fclose(fp);
    snprintf(f.c.store_path, sizeof f.c.store_path, "%s/sessions.db", file);
    snprintf(want, sizeof want, "store_path %s: Not a directory", f.c.store_path);
    expect_prepare_error(&f.c, want);

    snprintf(f.c.store_path, sizeof f.c.store_path, "%s/junk.db", f.dir);
    fp = fopen(f.c.store_path, "w");
    for (int i = 0; i < 8192; i++)
        fputc('x', fp);
    fclose(fp);
    snprintf(want, sizeof want, "store_path %s: MDB_INVALID: File is not an LMDB file",
             f.c.store_path);
    expect_prepare_error(&f.c, want);

    snprintf(f.c.store_path, sizeof f.c.store_path, "%s", f.dir);
    snprintf(want, sizeof want, "store_path %s: Is a directory", f.dir);
    expect_prepare_error(&f.c, want);

    /* A config built by hand may name an engine that does not exist. */
    snprintf(f.c.store, sizeof f.c.store, "mem");
    expect_prepare_error(&f.c, "store \"mem\": must be lmdb or redis");
    char err[CONF_ERR_LEN] = "";
    ck_assert_ptr_null(store_open(&f.c, NULL, err, sizeof err));
    ck_assert_str_eq(err, "store \"mem\": must be lmdb or redis");
    fx_teardown(&f);
}
END_TEST

START_TEST(prepare_checks_free_space)
{
    struct fx f;
    char err[CONF_ERR_LEN] = "", start[8192];
    fx_conf(&f, LMDB, 100000000, 10, 1024 * 1024);
    ck_assert_int_eq(store_prepare(&f.c, err, sizeof err), -1);
    /* 1e8 x (1 MiB + 512) x 2 bytes = 200097656.25 MiB, rounded up. */
    snprintf(start, sizeof start, "store_path %s: the disk has ", f.c.store_path);
    ck_assert_int_eq(strncmp(err, start, strlen(start)), 0);
    ck_assert_ptr_nonnull(
        strstr(err, " MiB free but the store may grow to 200097657 MiB (max_sessions x "
                    "session_max_bytes, doubled for copy-on-write); lower max_sessions or "
                    "session_max_bytes, or free space"));
    fx_teardown(&f);
}
END_TEST

/* Write the error of store_prepare on c to fd (run as an unprivileged user). */
static void
prepare_as_nobody(const struct conf *c, int fd)
{
    char err[CONF_ERR_LEN] = "";
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        snprintf(err, sizeof err, "cannot become uid 65534: %s", strerror(errno));
    else if (store_prepare(c, err, sizeof err) == 0)
        _exit(1);
    if (write(fd, err, strlen(err) + 1) < 0)
        _exit(3);
    _exit(0);
}

static void
expect_prepare_error_as_nobody(const struct conf *c, const char *want)
{
    int p[2], status;
    char err[CONF_ERR_LEN] = "";
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        prepare_as_nobody(c, p[1]);
    close(p[1]);
    ck_assert_int_ge(read(p[0], err, sizeof err - 1), 0);
    close(p[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    ck_assert_str_eq(err, want);
}

/* A directory the server's user may not write: as root the check drops to nobody in a
 * child, since root writes anywhere. */
START_TEST(prepare_permission_denied)
{
    struct fx f;
    char want[8192], ro[128];
    fx_conf(&f, LMDB, 100, 10, 4096);
    ck_assert_int_eq(chmod(f.dir, 0755), 0);
    snprintf(ro, sizeof ro, "%s/ro", f.dir);
    ck_assert_int_eq(mkdir(ro, 0555), 0);

    snprintf(f.c.store_path, sizeof f.c.store_path, "%s/sessions.db", ro);
    snprintf(want, sizeof want, "store_path %s: Permission denied", f.c.store_path);
    expect_prepare_error_as_nobody(&f.c, want);

    snprintf(f.c.store_path, sizeof f.c.store_path, "%s/new/sessions.db", ro);
    snprintf(want, sizeof want, "store_path %s: cannot create directory %s/new: Permission denied",
             f.c.store_path, ro);
    expect_prepare_error_as_nobody(&f.c, want);
    chmod(ro, 0755);
    fx_teardown(&f);
}
END_TEST

/* ---- Redis only ---- */

/* A second handle on f's Redis, as another worker or instance would have: the same loop
 * and times, its own connection. */
static struct fx
fx_other(struct fx *f, const struct conf *c)
{
    struct fx o = *f;
    o.st = fx_open(f, c);
    ck_assert_msg(fx_run_until(f, healthy, o.st, 10000), "not connected: %s",
                  store_last_error(o.st));
    return o;
}

/* The prefix keeps two deployments apart on one Redis; the keys are where the engine's
 * header says, and Redis expires them at the session's expiry. */
START_TEST(redis_prefix_and_keys)
{
    struct fx f;
    struct got g;
    fx_setup(&f, REDIS, 100, 10, 4096);
    struct conf c2 = f.c;
    snprintf(c2.redis_prefix, sizeof c2.redis_prefix, "other:");
    struct fx b = fx_other(&f, &c2);

    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 3600, "{\"a\":1}"), STORE_OK);
    ck_assert_int_eq(t_get(&b, sid(1), 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_new(&b, 1, "u", 1000, 3600, "{\"b\":2}"), STORE_OK); /* same id, token */
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"a\":1}");
    ck_assert_int_eq(t_token(&b, 1, 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"b\":2}");
    ck_assert_uint_eq(t_count(&f), 1);
    ck_assert_uint_eq(t_count(&b), 1);

    redisContext *rc = redis_admin(&f);
    char key[64], other[64];
    snprintf(key, sizeof key, "test:s:%s", sid(1));
    snprintf(other, sizeof other, "other:s:%s", sid(1));
    long long left = redis_int(rc, "TTL %s", key);
    ck_assert_int_ge(left, 1000 + 3600 - 5);
    ck_assert_int_le(left, 1000 + 3600);
    ck_assert_int_ge(redis_int(rc, "TTL %s", "test:u:u"), 1000 + 3600 - 5);
    ck_assert_int_eq(redis_int(rc, "ZCARD %s", "test:all"), 1);
    ck_assert_int_eq(redis_int(rc, "EXISTS %s", other), 1);

    /* A touch moves the expiry of every key with it. */
    struct store_change touch = {.touch = true};
    ck_assert_int_eq(t_update(&f, sid(1), 2000, &touch, &g), STORE_OK);
    ck_assert_int_eq(g.s.expires_at, 5600);
    ck_assert_int_ge(redis_int(rc, "TTL %s", key), 5600 - 5);
    ck_assert_int_ge(redis_int(rc, "TTL %s", "test:u:u"), 5600 - 5);

    ck_assert_uint_eq(t_delete_user(&f, "u"), 1);
    ck_assert_int_eq(redis_int(rc, "EXISTS %s", key), 0);
    ck_assert_int_eq(redis_int(rc, "EXISTS %s", "test:u:u"), 0);
    ck_assert_int_eq(t_get(&b, sid(1), 1000, &g), STORE_OK);
    ck_assert_uint_eq(t_count(&b), 1);
    ck_assert_uint_eq(t_count(&f), 0);
    redisFree(rc);
    store_close(b.st);
    fx_teardown(&f);
}
END_TEST

/* A session's hash holds ch and sub only when it has them; one written before they
 * existed (by hand here, as an older sessiond wrote it) reads as none, and takes them
 * when an update sets them. */
START_TEST(redis_sessions_without_grants_read_as_none)
{
    struct fx f;
    struct got g;
    struct session s;
    char key[64], th[2 * SESSION_HASH_LEN + 1];
    fx_setup(&f, REDIS, 100, 10, 4096);
    redisContext *rc = redis_admin(&f);
    mk(&s, 1, "old", at(&f, 1000), 3600, "{\"o\":1}");
    for (int i = 0; i < SESSION_HASH_LEN; i++)
        snprintf(th + 2 * i, 3, "%02x", s.token_hash[i]);
    snprintf(key, sizeof key, "test:s:%s", s.id);
    freeReplyObject(redis_cmd(rc, "HSET %s user old th %s c %lld e %lld ttl 3600 v 2 d %s", key,
                              th, (long long)s.created_at, (long long)s.expires_at, s.data));
    freeReplyObject(redis_cmd(rc, "ZADD test:u:old %lld %s", (long long)s.created_at, s.id));
    freeReplyObject(redis_cmd(rc, "ZADD test:all %lld %s", (long long)s.expires_at, s.id));

    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"o\":1}");
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(g.s.subscribe_len, 0);
    ck_assert_int_eq(t_token(&f, 1, 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.channels_len, 0);
    ck_assert_uint_eq(t_list(&f, "old", 1010, &g), 1);
    ck_assert_str_eq(g.list_channels[0], "");
    ck_assert_str_eq(g.list_subscribe[0], "");
    ck_assert_int_eq(t_grants(&f, sid(1), true, CH1, false, NULL, 2, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_str_eq(g.channels, CH1);
    ck_assert_str_eq(g.subscribe, "");
    redisReply *r = redis_cmd(rc, "HGET %s ch", key);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, CH1);
    freeReplyObject(r);
    ck_assert_int_eq(redis_int(rc, "HEXISTS %s sub", key), 0);
    /* None again: the field goes. */
    ck_assert_int_eq(t_grants(&f, sid(1), true, "", false, NULL, 0, &g), STORE_OK);
    ck_assert_int_eq(redis_int(rc, "HEXISTS %s ch", key), 0);
    ck_assert_int_eq(t_get(&f, sid(1), 1010, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"o\":1}");
    ck_assert_uint_eq(g.s.version, 4);
    /* Created without grants: no field; with them: the arrays as given. */
    ck_assert_int_eq(t_new(&f, 2, "new", 1000, 3600, "{}"), STORE_OK);
    snprintf(key, sizeof key, "test:s:%s", sid(2));
    ck_assert_int_eq(redis_int(rc, "HEXISTS %s ch", key), 0);
    ck_assert_int_eq(redis_int(rc, "HEXISTS %s sub", key), 0);
    mk(&s, 3, "new", at(&f, 1000), 3600, "{}");
    s.subscribe = SUB1, s.subscribe_len = strlen(SUB1);
    ck_assert_int_eq(t_create(&f, &s, &g), STORE_OK);
    snprintf(key, sizeof key, "test:s:%s", sid(3));
    ck_assert_int_eq(redis_int(rc, "HEXISTS %s ch", key), 0);
    r = redis_cmd(rc, "HGET %s sub", key);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, SUB1);
    freeReplyObject(r);
    redisFree(rc);
    fx_teardown(&f);
}
END_TEST

/* Redis forgets its scripts (SCRIPT FLUSH, a restart): the next calls get NOSCRIPT and are
 * sent again with the script's body, several at once included. */
START_TEST(redis_noscript_recovery)
{
    struct fx f;
    struct got g, many[6];
    fx_setup(&f, REDIS, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{\"a\":1}"), STORE_OK);
    redisContext *rc = redis_admin(&f);
    freeReplyObject(redis_cmd(rc, "SCRIPT FLUSH"));
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"a\":1}");

    freeReplyObject(redis_cmd(rc, "SCRIPT FLUSH"));
    memset(many, 0, sizeof many);
    struct session s;
    mk(&s, 2, "u", at(&f, 1000), 100, "{}");
    store_create(f.st, &s, on_session, &many[0]);
    store_get(f.st, sid(1), at(&f, 1000), on_session, &many[1]);
    struct store_change ch = {.patch = "{\"b\":2}", .patch_len = 7};
    store_update(f.st, sid(1), at(&f, 1000), &ch, on_session, &many[2]);
    struct store_page page = {.limit = 100};
    store_list_user(f.st, "u", at(&f, 1000), &page, on_list, &many[3]);
    store_count(f.st, on_count, &many[4]);
    store_delete_user(f.st, "nobody", on_count, &many[5]);
    for (int i = 0; i < 6; i++) {
        ck_assert(fx_run_until(&f, called, &many[i], 10000));
        ck_assert_int_eq(many[i].status, STORE_OK);
    }
    fx_pause(&f, 50);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(many[i].calls, 1);
    ck_assert_str_eq(many[2].data, "{\"a\":1,\"b\":2}");
    ck_assert_uint_eq(many[3].nlist, 2);
    ck_assert_uint_eq(many[4].n, 2);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    redisFree(rc);
    fx_teardown(&f);
}
END_TEST

/* A Redis that stops answering: the calls in flight fail within redis_timeout, each once;
 * calls meanwhile fail at once; when it answers again, so does the store. */
START_TEST(redis_timeout)
{
    struct fx f;
    struct got g, inflight[3];
    fx_conf(&f, REDIS, 100, 10, 4096);
    f.c.redis_timeout_ms = 300;
    redis_start(&f, NULL);
    fx_start(&f);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);

    ck_assert_int_eq(kill(f.redis_pid, SIGSTOP), 0);
    memset(inflight, 0, sizeof inflight);
    int64_t t = now_ms();
    store_get(f.st, sid(1), at(&f, 1000), on_session, &inflight[0]);
    store_update(f.st, sid(1), at(&f, 1000), &(struct store_change){.touch = true}, on_session,
                 &inflight[1]);
    store_count(f.st, on_count, &inflight[2]);
    for (int i = 0; i < 3; i++)
        ck_assert(fx_run_until(&f, called, &inflight[i], 5000));
    int64_t took = now_ms() - t;
    ck_assert_msg(took <= 300 + 200, "the timeout took %lld ms", (long long)took);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(inflight[i].status, STORE_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "no reply within 300 ms"));
    struct store_info info;
    store_info(f.st, &info);
    ck_assert_str_eq(info.circuit, "open");
    ck_assert(!info.healthy);

    /* While it is open, calls fail without waiting. */
    t = now_ms();
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t, 100);
    fx_pause(&f, 400); /* reconnects meet the stopped server and time out too */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(inflight[i].calls, 1);

    ck_assert_int_eq(kill(f.redis_pid, SIGCONT), 0);
    t = now_ms();
    enum store_status st = STORE_UNAVAILABLE;
    while (st == STORE_UNAVAILABLE && now_ms() - t < 10000) {
        fx_pause(&f, 50);
        st = t_get(&f, sid(1), 1000, &g);
    }
    ck_assert_int_eq(st, STORE_OK);
    store_info(f.st, &info);
    ck_assert_str_eq(info.circuit, "closed");
    ck_assert(info.healthy);
    fx_teardown(&f);
}
END_TEST

/* A worker whose loop stalls past redis_timeout while the reply waits in the socket: the
 * reply counts, not the clock. */
START_TEST(redis_stalled_loop_is_no_timeout)
{
    struct fx f;
    struct got g;
    fx_conf(&f, REDIS, 100, 10, 4096);
    f.c.redis_timeout_ms = 200;
    redis_start(&f, NULL);
    fx_start(&f);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    memset(&g, 0, sizeof g);
    store_get(f.st, sid(1), at(&f, 1000), on_session, &g);
    ev_run(f.loop, EVRUN_NOWAIT); /* the command goes out */
    usleep(500 * 1000);           /* the loop stalls; the reply comes meanwhile */
    ck_assert(fx_run_until(&f, called, &g, 5000));
    ck_assert_int_eq(g.status, STORE_OK);
    ck_assert(healthy(f.st));
    fx_teardown(&f);
}
END_TEST

static bool
circuit_open(const void *arg)
{
    struct store_info info;
    store_info(arg, &info);
    return strcmp(info.circuit, "open") == 0;
}

/* Redis goes away: calls fail fast behind an open circuit; Redis comes back on the same
 * port: within about two seconds the store serves again, by itself. */
START_TEST(redis_outage)
{
    struct fx f;
    struct got g, inflight;
    fx_setup(&f, REDIS, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    memset(&inflight, 0, sizeof inflight);
    store_get(f.st, sid(1), at(&f, 1000), on_session, &inflight);
    redis_kill(&f);
    ck_assert(fx_run_until(&f, called, &inflight, 5000));
    ck_assert(inflight.status == STORE_UNAVAILABLE || inflight.status == STORE_OK);
    ck_assert_msg(fx_run_until(&f, circuit_open, f.st, 1000), "the circuit did not open");
    struct store_info info;
    store_info(f.st, &info);
    ck_assert(!info.healthy);

    for (int i = 0; i < 5; i++) {
        int64_t t = now_ms();
        ck_assert_int_eq(t_new(&f, 2, "u", 1000, 100, "{}"), STORE_UNAVAILABLE);
        ck_assert_int_lt(now_ms() - t, 100);
    }
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "redis unavailable (circuit open)"));
    ck_assert_int_eq(inflight.calls, 1);

    redis_start(&f, NULL);
    int64_t back = now_ms();
    enum store_status st = STORE_UNAVAILABLE;
    while (st == STORE_UNAVAILABLE && now_ms() - back < 10000) {
        fx_pause(&f, 50);
        st = t_new(&f, 3, "u", 1000, 100, "{}");
    }
    ck_assert_int_eq(st, STORE_OK);
    int64_t took = now_ms() - back;
    ck_assert_msg(took < 2500, "recovered %lld ms after Redis was back", (long long)took);
    store_info(f.st, &info);
    ck_assert_str_eq(info.circuit, "closed");
    ck_assert(info.healthy);
    ck_assert_int_eq(t_get(&f, sid(3), 1000, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

/* Redis down when the worker starts: prepare and open succeed, calls fail, and the store
 * serves once Redis is up. */
START_TEST(redis_down_at_start)
{
    struct fx f;
    struct got g;
    fx_conf(&f, REDIS, 100, 10, 4096);
    fx_prepare(&f.c);
    f.st = fx_open(&f, &f.c);
    struct store_info info;
    store_info(f.st, &info);
    ck_assert(!info.healthy);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "Connection refused"));
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_UNAVAILABLE);
    redis_start(&f, NULL);
    enum store_status st = STORE_UNAVAILABLE;
    for (int64_t t = now_ms(); st == STORE_UNAVAILABLE && now_ms() - t < 10000;) {
        fx_pause(&f, 50);
        st = t_new(&f, 1, "u", 1000, 100, "{}");
    }
    ck_assert_int_eq(st, STORE_OK);
    ck_assert(healthy(f.st));
    fx_teardown(&f);
}
END_TEST

/* store_prepare checks the URL and, for rediss://, the TLS files; not Redis. */
START_TEST(redis_prepare_checks_the_url)
{
    struct fx f;
    char err[CONF_ERR_LEN] = "";
    fx_conf(&f, REDIS, 100, 10, 4096);
    fx_prepare(&f.c); /* nothing listens there: fine */
    snprintf(f.c.redis_url, sizeof f.c.redis_url, "redis://:secret@127.0.0.1:0/0");
    expect_prepare_error(&f.c, "redis_url: bad port \"0\" (1 to 65535)");
    ck_assert_ptr_null(store_open(&f.c, f.loop, err, sizeof err));
    ck_assert_str_eq(err, "redis_url: bad port \"0\" (1 to 65535)");
    snprintf(f.c.redis_url, sizeof f.c.redis_url, "rediss://127.0.0.1:6380/0");
    snprintf(f.c.redis_tls_ca, sizeof f.c.redis_tls_ca, "/nonexistent/ca.pem");
    expect_prepare_error(&f.c, "redis_tls_ca /nonexistent/ca.pem: No such file or directory");
    f.c.redis_tls_ca[0] = '\0';
    snprintf(f.c.redis_tls_cert, sizeof f.c.redis_tls_cert, "/etc/hostname");
    expect_prepare_error(&f.c, "redis_tls_cert and redis_tls_key go together: set both or "
                               "neither");
    f.c.redis_tls_cert[0] = '\0';
    fx_prepare(&f.c); /* rediss:// with the system's CAs */
    snprintf(f.c.redis_url, sizeof f.c.redis_url, "redis://127.0.0.1:6379/0");
    ck_assert_ptr_null(store_open(&f.c, NULL, err, sizeof err));
    ck_assert_str_eq(err, "store redis: needs the worker's event loop");
    fx_teardown(&f);
}
END_TEST

/* A password (percent-encoded in the URL) and a database other than 0; a wrong password
 * is a clear error, not a crash or a hang. */
START_TEST(redis_auth_and_db)
{
    static const char *const auth[] = {"--requirepass", "p@ss word", NULL};
    struct fx f;
    struct got g;
    fx_conf(&f, REDIS, 100, 10, 4096);
    redis_start(&f, auth);
    snprintf(f.c.redis_url, sizeof f.c.redis_url, "redis://:p%%40ss%%20word@127.0.0.1:%d/3",
             f.redis_port);
    fx_start(&f);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    redisContext *rc = redis_admin(&f);
    char key[64];
    snprintf(key, sizeof key, "test:s:%s", sid(1));
    freeReplyObject(redis_cmd(rc, "AUTH %s", "p@ss word"));
    freeReplyObject(redis_cmd(rc, "SELECT 3"));
    ck_assert_int_eq(redis_int(rc, "EXISTS %s", key), 1);
    freeReplyObject(redis_cmd(rc, "SELECT 0"));
    ck_assert_int_eq(redis_int(rc, "EXISTS %s", key), 0);
    redisFree(rc);

    struct conf c2 = f.c; /* the same with a user name (Redis 6 ACL) */
    snprintf(c2.redis_url, sizeof c2.redis_url, "redis://default:p%%40ss%%20word@127.0.0.1:%d/3",
             f.redis_port);
    struct fx b = fx_other(&f, &c2);
    ck_assert_int_eq(t_get(&b, sid(1), 1000, &g), STORE_OK);
    store_close(b.st);

    snprintf(c2.redis_url, sizeof c2.redis_url, "redis://:hunter2@127.0.0.1:%d/3", f.redis_port);
    b.st = fx_open(&f, &c2);
    ck_assert_int_eq(t_get(&b, sid(1), 1000, &g), STORE_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(store_last_error(b.st), "AUTH: WRONGPASS"));
    ck_assert_ptr_null(strstr(store_last_error(b.st), "hunter2"));
    ck_assert(!healthy(b.st));
    store_close(b.st);
    fx_teardown(&f);
}
END_TEST

/* Two handles (two connections, as two instances have) creating for one user at once:
 * the limit holds exactly. */
START_TEST(redis_user_limit_across_handles)
{
    struct fx f;
    struct got g, res[12];
    fx_setup(&f, REDIS, 1000, 5, 4096);
    struct fx b = fx_other(&f, &f.c);
    memset(res, 0, sizeof res);
    for (int i = 0; i < 12; i++) {
        struct session s;
        mk(&s, i + 1, "racer", at(&f, 1000 + i), 100, "{}");
        store_create(i % 2 ? b.st : f.st, &s, on_session, &res[i]);
    }
    int created = 0, refused = 0;
    for (int i = 0; i < 12; i++) {
        ck_assert(fx_run_until(&f, called, &res[i], 10000));
        created += res[i].status == STORE_OK;
        refused += res[i].status == STORE_USER_LIMIT;
    }
    ck_assert_int_eq(created, 5);
    ck_assert_int_eq(refused, 7);
    ck_assert_uint_eq(t_list(&f, "racer", 1000, &g), 5);
    ck_assert_uint_eq(t_list(&b, "racer", 1000, &g), 5);
    ck_assert_uint_eq(t_count(&b), 5);
    store_close(b.st);
    fx_teardown(&f);
}
END_TEST

/* Updates of one session at once, from two handles: touches never conflict; patches
 * compare-and-set, so none is lost; with If-Match exactly one of two wins. */
START_TEST(redis_concurrent_updates)
{
    struct fx f;
    struct got g, res[20];
    fx_setup(&f, REDIS, 100, 10, 4096);
    struct fx b = fx_other(&f, &f.c);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);

    memset(res, 0, sizeof res);
    for (int i = 0; i < 20; i++)
        store_update(i % 2 ? b.st : f.st, sid(1), at(&f, 1000 + i),
                     &(struct store_change){.touch = true}, on_session, &res[i]);
    for (int i = 0; i < 20; i++) {
        ck_assert(fx_run_until(&f, called, &res[i], 10000));
        ck_assert_int_eq(res[i].status, STORE_OK);
        ck_assert_uint_eq(res[i].s.version, 1);
    }
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_int_ge(g.s.expires_at, 1000 + 10 + 100);

    static const char *const patches[] = {"{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}"};
    memset(res, 0, sizeof res);
    for (int i = 0; i < 4; i++)
        store_update(i % 2 ? b.st : f.st, sid(1), at(&f, 1000),
                     &(struct store_change){.patch = patches[i], .patch_len = 7}, on_session,
                     &res[i]);
    for (int i = 0; i < 4; i++) {
        ck_assert(fx_run_until(&f, called, &res[i], 10000));
        ck_assert_msg(res[i].status == STORE_OK, "patch %d: %d (%s)", i, res[i].status,
                      store_last_error(i % 2 ? b.st : f.st));
    }
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 5);
    for (int i = 0; i < 4; i++) {
        char member[8];
        snprintf(member, sizeof member, "%.5s", patches[i] + 1); /* "a":1 */
        ck_assert_msg(strstr(g.data, member) != NULL, "lost %s in %s", member, g.data);
    }

    memset(res, 0, sizeof res);
    for (int i = 0; i < 2; i++)
        store_update(i % 2 ? b.st : f.st, sid(1), at(&f, 1000),
                     &(struct store_change){.patch = "{\"e\":5}", .patch_len = 7,
                                            .if_version = 5},
                     on_session, &res[i]);
    for (int i = 0; i < 2; i++)
        ck_assert(fx_run_until(&f, called, &res[i], 10000));
    ck_assert_int_eq((res[0].status == STORE_OK) + (res[1].status == STORE_OK), 1);
    ck_assert_int_eq((res[0].status == STORE_VERSION) + (res[1].status == STORE_VERSION), 1);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 6);
    store_close(b.st);
    fx_teardown(&f);
}
END_TEST

/* Error replies (here: a key of the wrong type under the prefix) are failures: five in a
 * row open the circuit; a second later a probe finds Redis well and closes it. */
START_TEST(redis_breaker_opens_on_errors)
{
    struct fx f;
    struct got g;
    fx_setup(&f, REDIS, 100, 10, 4096);
    redisContext *rc = redis_admin(&f);
    freeReplyObject(redis_cmd(rc, "SET %s %s", "test:all", "not a zset"));
    for (int i = 0; i < 5; i++) {
        memset(&g, 0, sizeof g);
        store_count(f.st, on_count, &g);
        fx_wait(&f, &g);
        ck_assert_int_eq(g.status, STORE_ERROR);
        ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "WRONGTYPE"));
    }
    ck_assert(circuit_open(f.st));
    int64_t t = now_ms();
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t, 100);
    freeReplyObject(redis_cmd(rc, "DEL %s", "test:all"));
    ck_assert_msg(fx_run_until(&f, healthy, f.st, 3000), "the circuit did not close");
    ck_assert_uint_eq(t_count(&f), 0);
    redisFree(rc);
    fx_teardown(&f);
}
END_TEST

/* What the worker does: a callback that calls the store again (own_found, then a touch).
 * Each call is answered once, in order. */
struct chain {
    struct fx *f;
    struct got touched;
    int calls;
};

static void
on_found_then_touch(void *arg, enum store_status status, const struct session *s)
{
    struct chain *c = arg;
    c->calls++;
    ck_assert_int_eq(status, STORE_OK);
    char id[SESSION_ID_LEN + 1];
    memcpy(id, s->id, sizeof id);
    store_update(c->f->st, id, at(c->f, 1050), &(struct store_change){.touch = true},
                 on_session, &c->touched);
    ck_assert_int_eq(c->touched.calls, 0);
}

START_TEST(redis_callback_calls_again)
{
    struct fx f;
    struct got g;
    fx_setup(&f, REDIS, 100, 10, 4096);
    ck_assert_int_eq(t_new(&f, 1, "u", 1000, 100, "{}"), STORE_OK);
    struct chain c = {.f = &f};
    struct session s;
    mk(&s, 1, "x", 0, 0, "");
    store_get_by_token(f.st, s.token_hash, at(&f, 1000), on_found_then_touch, &c);
    ck_assert(fx_run_until(&f, called, &c.touched, 10000));
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.touched.calls, 1);
    ck_assert_int_eq(c.touched.status, STORE_OK);
    ck_assert_int_eq(t_get(&f, sid(1), 1000, &g), STORE_OK);
    ck_assert_int_eq(g.s.expires_at, 1150);
    fx_teardown(&f);
}
END_TEST

/* store_close with calls pending: they are dropped, never answered (and nothing leaks,
 * which the sanitizer build checks). */
START_TEST(redis_close_drops_pending)
{
    struct fx f;
    struct got g[4];
    fx_setup(&f, REDIS, 100, 10, 4096);
    memset(g, 0, sizeof g);
    struct session s;
    mk(&s, 1, "u", at(&f, 1000), 100, "{}");
    store_create(f.st, &s, on_session, &g[0]);
    store_get(f.st, sid(1), at(&f, 1000), on_session, &g[1]);
    store_get(f.st, "", at(&f, 1000), on_session, &g[2]); /* answered later, even so */
    store_count(f.st, on_count, &g[3]);
    store_close(f.st);
    f.st = NULL;
    fx_pause(&f, 100);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(g[i].calls, 0);
    fx_teardown(&f);
}
END_TEST

/* The interface tests, for each engine. */
#define STORE_INTERFACE_TESTS(X)                                                            \
    X(round_trip)                                                                           \
    X(unknown_ids)                                                                          \
    X(expired_is_not_found_before_the_sweep)                                                \
    X(create_refusals)                                                                      \
    X(per_user_limit)                                                                       \
    X(per_user_limit_ignores_expired)                                                       \
    X(total_limit)                                                                          \
    X(update_merge_and_versions)                                                            \
    X(update_ttl_and_touch)                                                                 \
    X(update_refusals)                                                                      \
    X(delete_one)                                                                           \
    X(delete_user)                                                                          \
    X(list_oldest_first)                                                                    \
    X(list_in_pages)                                                                        \
    X(grants_round_trip)                                                                    \
    X(grants_refusals)

static TCase *
lmdb_tcase(void)
{
    TCase *tc = tcase_create("lmdb");
    tcase_set_timeout(tc, 30);
#define ADD_LMDB(t) tcase_add_loop_test(tc, t, LMDB, LMDB + 1);
    STORE_INTERFACE_TESTS(ADD_LMDB)
#undef ADD_LMDB
#define ADD_LMDB_GROUPED(t) tcase_add_loop_test(tc, t, LMDB_GROUPED, LMDB_GROUPED + 1);
    STORE_INTERFACE_TESTS(ADD_LMDB_GROUPED)
#undef ADD_LMDB_GROUPED
    tcase_add_test(tc, sync_mode_round_trip);
    tcase_add_test(tc, records_without_grants_read_as_none);
    tcase_add_test(tc, queued_create_keeps_grants);
    tcase_add_test(tc, sweep_in_batches);
    tcase_add_test(tc, callbacks_may_call_again);
    tcase_add_test(tc, two_processes_see_each_other);
    tcase_add_test(tc, forked_child_writes);
    tcase_add_test(tc, kill_9_in_the_middle);
    tcase_add_test(tc, map_full_is_store_full);
    tcase_add_test(tc, group_keeps_each_answer);
    tcase_add_test(tc, group_map_full_fails_alone);
    tcase_add_test(tc, prepare_creates_what_is_missing);
    tcase_add_test(tc, prepare_errors);
    tcase_add_test(tc, prepare_checks_free_space);
    tcase_add_test(tc, prepare_permission_denied);
    return tc;
}

static TCase *
redis_tcase(void)
{
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 60);
#define ADD_REDIS(t) tcase_add_loop_test(tc, t, REDIS, REDIS + 1);
    STORE_INTERFACE_TESTS(ADD_REDIS)
#undef ADD_REDIS
    tcase_add_test(tc, redis_prefix_and_keys);
    tcase_add_test(tc, redis_sessions_without_grants_read_as_none);
    tcase_add_test(tc, redis_noscript_recovery);
    tcase_add_test(tc, redis_timeout);
    tcase_add_test(tc, redis_stalled_loop_is_no_timeout);
    tcase_add_test(tc, redis_outage);
    tcase_add_test(tc, redis_down_at_start);
    tcase_add_test(tc, redis_prepare_checks_the_url);
    tcase_add_test(tc, redis_auth_and_db);
    tcase_add_test(tc, redis_user_limit_across_handles);
    tcase_add_test(tc, redis_concurrent_updates);
    tcase_add_test(tc, redis_breaker_opens_on_errors);
    tcase_add_test(tc, redis_callback_calls_again);
    tcase_add_test(tc, redis_close_drops_pending);
    return tc;
}

Suite *
store_suite(void)
{
    Suite *s = suite_create("store");
    suite_add_tcase(s, lmdb_tcase());
    if (redis_installed())
        suite_add_tcase(s, redis_tcase());
    else
        fprintf(stderr, "store: redis-server is not installed (not in PATH): skipping the "
                        "Redis engine's tests\n");
    return s;
}
