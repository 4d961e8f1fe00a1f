/* roster_redis: the roster over every instance that shares one Redis.
 *
 * The instance's own LMDB file (the lmdb engine) still counts this instance's members
 * and is the fallback whenever Redis cannot answer. Each worker mirrors its connections
 * and memberships into Redis hashes under redis_prefix "rt:": u:USER (conn -> lease) and
 * m:CHANNEL (conn -> "lease user session"), and renews its lease, rt:lease:NONCE.SLOT.PID,
 * every second (roster_tick). A worker that dies (or a whole instance) stops renewing it,
 * and the scripts below drop its entries the next time they meet them, ROSTER_LEASE_MS
 * later at most; the caller's own lease is renewed by the same script, since it is alive
 * by definition. */
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pubsub.h"
#include "redis.h"
#include "roster_engine.h"
#include "scoreboard.h"
#include "util.h"

#define ROSTER_LEASE_MS "6000" /* a whole instance that dies leaves presence this late */
#define ROSTER_VALUE_MAX 200   /* "lease user session" */

/* KEYS[1] u:USER; ARGV lease prefix, conn, lease, max, lease ms. 1 admitted, 0 over max. */
static const char admit_lua[] =
    "redis.call('SET', ARGV[1] .. ARGV[3], '1', 'PX', ARGV[5])\n"
    "local live, alive = 0, {}\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  local n = all[i + 1]\n"
    "  if alive[n] == nil then alive[n] = redis.call('EXISTS', ARGV[1] .. n) == 1 end\n"
    "  if alive[n] then live = live + 1 else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "end\n"
    "if live >= tonumber(ARGV[4]) then return 0 end\n"
    "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
    "return 1\n";

/* KEYS[1] m:CHANNEL; ARGV lease prefix, lease, lease ms. {conn, "lease user session", ...}
 * of the members whose worker is alive. */
static const char members_lua[] =
    "redis.call('SET', ARGV[1] .. ARGV[2], '1', 'PX', ARGV[3])\n"
    "local out, alive = {}, {}\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  local n = string.match(all[i + 1], '^(%S+)')\n"
    "  if n and alive[n] == nil then alive[n] = redis.call('EXISTS', ARGV[1] .. n) == 1 end\n"
    "  if n and alive[n] then out[#out + 1] = all[i]; out[#out + 1] = all[i + 1]\n"
    "  else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "end\n"
    "return out\n";

struct roster_redis {
    struct roster_lmdb *local;
    struct pubsub *ps;
    struct scoreboard *sb;
    int slot;
    unsigned pid;
    uint64_t epoch;         /* bumped at every reconnect: the lease's last part */
    char nonce[17];         /* this instance's, in hex */
    char lease[48];         /* this worker's: nonce.slot.pid.epoch */
    char lease_prefix[128]; /* the Redis name of leases, before the lease: the scripts' */
    uint64_t dead_seen;     /* workers of the scoreboard's dead list already dealt with */
    struct redis_script admit, members; /* sent by SHA; Redis is given the text once */
};

/* Our Redis key for kind ("u:", "m:", "lease:") and name. */
static size_t
rkey(const struct roster_redis *e, const char *kind, const char *name, size_t len, char *out,
     size_t cap)
{
    char k[8 + ROSTER_USER_MAX + ROSTER_CHANNEL_MAX];
    size_t n = strlen(kind);
    if (n + len > sizeof k) return 0;
    /* k is counted (n + len bytes), not a string.
     * NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
    memcpy(k, kind, n);
    memcpy(k + n, name, len);
    return pubsub_name(e->ps, k, n + len, out, cap);
}

static void
ignore(void *arg, const struct redisReply *reply)
{
    (void)arg, (void)reply;
}

/* A command on a key of ours (argv[1], built here), answered to cb; -1 when it could not
 * be sent (not connected), and then cb is not called. */
static int
call(struct roster_redis *e, pubsub_reply_cb cb, void *arg, const char *cmd, const char *kind,
     const char *name, size_t len, int nargs, const char **args)
{
    char key[600];
    const char *argv[6] = {cmd, key};
    size_t argvlen[6] = {strlen(cmd), rkey(e, kind, name, len, key, sizeof key)};
    if (argvlen[1] == 0 || nargs > 4) return -1;
    for (int i = 0; i < nargs; i++) {
        argv[2 + i] = args[i];
        argvlen[2 + i] = strlen(args[i]);
    }
    return pubsub_command(e->ps, cb, arg, 2 + nargs, argv, argvlen);
}

/* Run script (by its SHA; pubsub_eval sends the text only when Redis lacks it) on its
 * one key and args. */
static int
eval(struct roster_redis *e, pubsub_reply_cb cb, void *arg, const struct redis_script *script,
     const char *kind, const char *name, size_t len, int nargs, const char **args)
{
    char key[600];
    const char *argv[7] = {key};
    size_t argvlen[7] = {rkey(e, kind, name, len, key, sizeof key)};
    if (argvlen[0] == 0 || nargs > 6) return -1;
    for (int i = 0; i < nargs; i++) {
        argv[1 + i] = args[i];
        argvlen[1 + i] = strlen(args[i]);
    }
    return pubsub_eval(e->ps, script, cb, arg, 1, 1 + nargs, argv, argvlen);
}

static void
forget(struct roster_redis *e, const char *conn, const char *user)
{
    const char *args[] = {conn};
    (void)call(e, ignore, NULL, "HDEL", "u:", user, strlen(user), 1, args);
}

/* ---- connections ---- */

/* An admission waiting for Redis to count the user's connections on every instance. */
struct admission {
    struct roster_redis *e;
    roster_admit_cb cb;
    void *arg;
    int max;
    char conn[ROSTER_CONN_MAX + 1];
    char user[ROSTER_USER_MAX + 1];
};

/* Record the connection in the instance's file, under max: INT_MAX when Redis admitted
 * it over every instance, the limit itself when Redis could not say. */
static void
admit_locally(struct admission *a, int max)
{
    int rc = roster_lmdb_connect(a->e->local, a->conn, a->user, max);
    if (rc != 1) forget(a->e, a->conn, a->user);
    a->cb(a->arg, rc);
    free(a);
}

static void
admitted(void *arg, const struct redisReply *reply)
{
    struct admission *a = arg;
    bool counted = reply != NULL && reply->type == REDIS_REPLY_INTEGER;
    if (counted && reply->integer == 0) {
        a->cb(a->arg, 0);
        free(a);
        return;
    }
    admit_locally(a, counted ? INT_MAX : a->max);
}

static void
rr_connect(void *engine, const char *conn, const char *user, int max, roster_admit_cb cb, void *arg)
{
    struct roster_redis *e = engine;
    struct admission *a = malloc(sizeof *a);
    if (a == NULL) {
        cb(arg, -1);
        return;
    }
    *a = (struct admission){.e = e, .cb = cb, .arg = arg, .max = max};
    snprintf(a->conn, sizeof a->conn, "%s", conn);
    snprintf(a->user, sizeof a->user, "%s", user);
    char maxs[16];
    snprintf(maxs, sizeof maxs, "%d", max);
    const char *args[] = {e->lease_prefix, a->conn, e->lease, maxs, ROSTER_LEASE_MS};
    if (eval(e, admitted, a, &e->admit, "u:", a->user, strlen(a->user), 5, args) < 0)
        admit_locally(a, max);
}

static void
rr_disconnect(void *engine, const char *conn, const char *user)
{
    struct roster_redis *e = engine;
    roster_lmdb_disconnect(e->local, conn);
    forget(e, conn, user);
}

/* ---- channels ---- */

/* HSET or HDEL of a membership in m:CHANNEL. */
static int
member_call(struct roster_redis *e, bool join, const char *channel, size_t len,
            const struct roster_member *m, pubsub_reply_cb cb, void *arg)
{
    char value[sizeof e->lease + ROSTER_USER_MAX + ROSTER_SESSION_MAX + 3];
    snprintf(value, sizeof value, "%s %s %s", e->lease, m->user, m->session);
    const char *args[] = {m->conn, value};
    return call(e, cb, arg, join ? "HSET" : "HDEL", "m:", channel, len, join ? 2 : 1, args);
}

/* A join is answered once Redis holds the membership: a presence asked on any instance
 * after the answer lists it. */
struct join_op {
    roster_count_cb cb;
    void *arg;
    size_t count;
};

static void
joined(void *arg, const struct redisReply *reply)
{
    (void)reply; /* a lost Redis degrades presence as everywhere; the membership stands */
    struct join_op *op = arg;
    op->cb(op->arg, 0, op->count);
    free(op);
}

static void
rr_join(void *engine, const char *channel, size_t len, const struct roster_member *m,
        roster_count_cb cb, void *arg)
{
    struct roster_redis *e = engine;
    size_t n = 0;
    if (roster_lmdb_membership(e->local, true, channel, len, m, &n) < 0) {
        cb(arg, -1, 0);
        return;
    }
    struct join_op *op = malloc(sizeof *op);
    if (op == NULL) {
        (void)member_call(e, true, channel, len, m, ignore, NULL);
    } else {
        *op = (struct join_op){.cb = cb, .arg = arg, .count = n};
        if (member_call(e, true, channel, len, m, joined, op) == 0) return;
        free(op); /* Redis is away: the answer is given now */
    }
    cb(arg, 0, n);
}

static void
rr_leave(void *engine, const char *channel, size_t len, const struct roster_member *m,
         roster_count_cb cb, void *arg)
{
    struct roster_redis *e = engine;
    size_t n = 0;
    int rc = roster_lmdb_membership(e->local, false, channel, len, m, &n);
    (void)member_call(e, false, channel, len, m, ignore, NULL);
    cb(arg, rc, n);
}

static size_t
rr_count(void *engine, const char *channel, size_t len)
{
    return roster_lmdb_count(((struct roster_redis *)engine)->local, channel, len);
}

/* A presence question waiting for Redis. */
struct members_op {
    struct roster_redis *e;
    roster_member_cb each;
    roster_done_cb done;
    void *arg;
    size_t max, len;
    char channel[ROSTER_CHANNEL_MAX];
};

static void
members_locally(struct members_op *op)
{
    int n = roster_lmdb_members(op->e->local, op->channel, op->len, op->max, op->each, op->arg);
    op->done(op->arg, n < 0 ? -1 : 0);
}

/* One {conn, "lease user session"} pair of the script's answer, or -1 if malformed. */
static int
member_of(const struct redisReply *c, const struct redisReply *v, struct roster_member *m)
{
    char lease[48], user[ROSTER_USER_MAX + 1], session[ROSTER_SESSION_MAX + 1];
    if (c->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
        c->len > ROSTER_CONN_MAX || v->len > ROSTER_VALUE_MAX ||
        sscanf(v->str, "%47s %128s %32s", lease, user, session) != 3)
        return -1;
    snprintf(m->conn, sizeof m->conn, "%.*s", (int)c->len, c->str);
    snprintf(m->user, sizeof m->user, "%s", user);
    snprintf(m->session, sizeof m->session, "%s", session);
    return name_chars_ok(m->user, strlen(m->user), ROSTER_USER_MAX) ? 0 : -1;
}

static void
members_answer(void *arg, const struct redisReply *reply)
{
    struct members_op *op = arg;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        members_locally(op);
        free(op);
        return;
    }
    for (size_t i = 0; i + 1 < reply->elements && i / 2 < op->max; i += 2) {
        struct roster_member m;
        if (member_of(reply->element[i], reply->element[i + 1], &m) == 0) op->each(op->arg, &m);
    }
    op->done(op->arg, 0);
    free(op);
}

static void
rr_members(void *engine, const char *channel, size_t len, size_t max, roster_member_cb each,
           roster_done_cb done, void *arg)
{
    struct roster_redis *e = engine;
    struct members_op *op = len <= ROSTER_CHANNEL_MAX ? malloc(sizeof *op) : NULL;
    if (op == NULL) {
        int n = roster_lmdb_members(e->local, channel, len, max, each, arg);
        done(arg, n < 0 ? -1 : 0);
        return;
    }
    *op =
        (struct members_op){.e = e, .each = each, .done = done, .arg = arg, .max = max, .len = len};
    memcpy(op->channel, channel, len);
    const char *args[] = {e->lease_prefix, e->lease, ROSTER_LEASE_MS};
    if (eval(e, members_answer, op, &e->members, "m:", channel, len, 3, args) < 0) {
        members_locally(op);
        free(op);
    }
}

/* ---- leases ---- */

/* A worker of this instance that died will not renew its lease: end the lease now, not
 * ROSTER_LEASE_MS later, so that its members leave presence at the next look. The master
 * notes the dead in the scoreboard; every worker ends their leases (a second DEL is no
 * harm). */
static void
end_dead_leases(struct roster_redis *e)
{
    const struct scoreboard *sb = e->sb;
    uint64_t n = __atomic_load_n(&sb->dead_count, __ATOMIC_ACQUIRE);
    if (n - e->dead_seen > SB_DEAD_RING) e->dead_seen = n - SB_DEAD_RING;
    for (; e->dead_seen < n; e->dead_seen++) {
        char lease[48];
        size_t at = e->dead_seen % SB_DEAD_RING;
        int len = snprintf(lease, sizeof lease, "%s.%d.%x.%llx", e->nonce,
                           (int)sb_get(&sb->dead_slot[at]), (unsigned)sb_get(&sb->dead_pid[at]),
                           (unsigned long long)sb_get(&sb->dead_epoch[at]));
        (void)call(e, ignore, NULL, "DEL", "lease:", lease, (size_t)len, 0, NULL);
    }
}

static void
rr_tick(void *engine)
{
    struct roster_redis *e = engine;
    const char *args[] = {"1", "PX", ROSTER_LEASE_MS};
    (void)call(e, ignore, NULL, "SET", "lease:", e->lease, strlen(e->lease), 3, args);
    end_dead_leases(e);
}

/* ---- after a reconnect ---- */

static void
reassert_conn(void *arg, const char *conn, const char *user)
{
    struct roster_redis *e = arg;
    const char *args[] = {conn, e->lease};
    (void)call(e, ignore, NULL, "HSET", "u:", user, strlen(user), 2, args);
}

static void
reassert_member(void *arg, const char *channel, size_t len, const struct roster_member *m)
{
    (void)member_call(arg, true, channel, len, m, ignore, NULL);
}

/* The lease's name, nonce.slot.pid.epoch, and its epoch in the scoreboard, where the
 * siblings find it to end the lease when this worker dies. */
static void
lease_name(struct roster_redis *e)
{
    snprintf(e->lease, sizeof e->lease, "%s.%d.%x.%llx", e->nonce, e->slot, e->pid,
             (unsigned long long)e->epoch);
    sb_set(&e->sb->slot[e->slot].lease_epoch, e->epoch);
}

/* The command connection is back, and Redis may have lost everything (a restart) or
 * missed what changed while it was unreachable (a socket closed, its HDEL never sent).
 * Deltas cannot be replayed reliably, so the whole truth is written instead: under a
 * new lease, every connection and membership this worker holds (the instance's file has
 * them by slot), then the old lease ends, and with it whatever was written under it
 * that is no longer true; the scripts drop such entries at the next look. */
static void
rr_reassert(void *arg)
{
    struct roster_redis *e = arg;
    char old[sizeof e->lease];
    snprintf(old, sizeof old, "%s", e->lease);
    e->epoch++;
    lease_name(e);
    rr_tick(e);
    (void)roster_lmdb_each_own(e->local, reassert_conn, reassert_member, e);
    (void)call(e, ignore, NULL, "DEL", "lease:", old, strlen(old), 0, NULL);
}

static int
rr_purge_slot(void *engine, int slot)
{
    return roster_lmdb_purge_slot(((struct roster_redis *)engine)->local, slot);
}

static const char *
rr_last_error(const void *engine)
{
    return roster_lmdb_last_error(((const struct roster_redis *)engine)->local);
}

static void *
rr_open(const struct roster_params *p, char *err, size_t errlen)
{
    struct roster_redis *e = calloc(1, sizeof *e);
    if (e == NULL || p->sb == NULL) {
        errf(err, errlen, "roster: %s", e == NULL ? "out of memory" : "no scoreboard");
        free(e);
        return NULL;
    }
    if (redis_script_init(&e->admit, admit_lua, err, errlen) < 0 ||
        redis_script_init(&e->members, members_lua, err, errlen) < 0 ||
        (e->local = roster_lmdb_open(p->conf, p->base + p->slot, err, errlen)) == NULL) {
        free(e);
        return NULL;
    }
    e->ps = p->ps;
    e->sb = p->sb;
    e->slot = p->slot;
    e->pid = p->pid;
    snprintf(e->nonce, sizeof e->nonce, "%016llx",
             (unsigned long long)sb_get(&p->sb->instance_nonce));
    lease_name(e);
    uint64_t dead = sb_get(&p->sb->dead_count);
    e->dead_seen = dead > SB_DEAD_RING ? dead - SB_DEAD_RING : 0;
    /* redis_prefix is at most 63 bytes: it fits. */
    size_t n = rkey(e, "lease:", "", 0, e->lease_prefix, sizeof e->lease_prefix - 1);
    e->lease_prefix[n] = '\0';
    pubsub_on_command_ready(e->ps, rr_reassert, e);
    return e;
}

static void
rr_close(void *engine)
{
    struct roster_redis *e = engine;
    roster_lmdb_close(e->local);
    free(e);
}

const struct roster_ops roster_redis_ops = {
    .name = "redis",
    .open = rr_open,
    .close = rr_close,
    .connect = rr_connect,
    .disconnect = rr_disconnect,
    .join = rr_join,
    .leave = rr_leave,
    .count = rr_count,
    .members = rr_members,
    .tick = rr_tick,
    .purge_slot = rr_purge_slot,
    .last_error = rr_last_error,
};
