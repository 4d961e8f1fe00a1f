/* store_redis: the Redis engine (store.c dispatches to it for "store redis").
 *
 * One hiredis async connection per worker, on the worker's libev loop, carries every
 * command, pipelined: hiredis writes each command as it comes and Redis answers in order.
 * Every check-and-write is one Lua script, so that it is atomic across every worker of
 * every instance. The keys, under redis_prefix {p}:
 *   {p}s:{id}         HASH user, th (token hash, hex), c (created), e (expires), ttl,
 *                     v (version), d (data JSON); EXPIREAT e, so Redis expires it itself.
 *                     The id follows from the token hash (token.h): no key per token.
 *   {p}u:{user}       ZSET of ids scored by created_at (a user's list, oldest first);
 *                     EXPIREAT the latest e among its sessions
 *   {p}all            ZSET of ids scored by expires_at: the count, trimmed by time
 * Scripts build keys from the prefix they are given, so this runs on one Redis (or a
 * primary with replicas), not on Redis Cluster. Expired sessions are never returned even
 * before Redis has deleted them: the scripts compare e with the caller's now.
 *
 * hiredis 0.14 has no command timeout and no reconnect, so this file keeps its own record
 * of every command in flight (struct rs_op, oldest first) with one ev_timer for the
 * oldest. A command without a reply in redis_timeout drops the connection, since hiredis
 * cannot cancel one command; every operation in flight then fails with STORE_UNAVAILABLE
 * (hiredis hands each pending callback a NULL reply as it frees the context). Each
 * operation is answered exactly once, from the loop, never before the call returns: even
 * a refusal decided at once waits in a queue for the next loop iteration.
 *
 * A circuit breaker keeps a Redis outage from holding requests for redis_timeout each: it
 * opens after RS_FAILURES_TO_OPEN consecutive failures or when the connection is lost,
 * and while it is open calls fail at once. After RS_OPEN_SECONDS it lets one probe (PING)
 * through, once connected again; its success closes the circuit. The connection comes
 * back on its own, with jittered exponential backoff. Nothing here ever ends the process. */
#include "store.h"

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json_merge.h"
#include "list.h"
#include "redis_url.h"
#include "store_engine.h"
#include "token.h"
#include "util.h"

#define RS_FAILURES_TO_OPEN 5
#define RS_OPEN_SECONDS 1.0
#define RS_BACKOFF_MIN 0.1
#define RS_BACKOFF_MAX 5.0
#define RS_JITTER 0.2
#define RS_UPDATE_RETRIES 3  /* re-reads when a session changed under an update */
#define RS_LIST_MAX 10000    /* as the LMDB engine */
#define RS_MAX_ARGS 16
#define RS_SHA_HEX 40
#define RS_HASH_HEX (2 * SESSION_HASH_LEN)
#define RS_SESSION_FIELDS 8  /* id, user, th, c, e, ttl, v, d: what the scripts return */

/* ---- the scripts ---- */

/* Shared by every script: ARGV[1] is the prefix. load() returns a live session as
 * {id, user, th, c, e, ttl, v, d}; purge() deletes one with its index entries;
 * extend() keeps a key at least until e. e is compared on the caller's clock (now), and
 * EXPIREAT reads it on Redis's, as extend() does with TIME. */
#define RS_PRELUDE                                                                          \
    "local P = ARGV[1]\n"                                                                   \
    "local ALL = P .. 'all'\n"                                                              \
    "local function skey(id) return P .. 's:' .. id end\n"                                  \
    "local function ukey(u) return P .. 'u:' .. u end\n"                                    \
    "local function load(id, now)\n"                                                        \
    "  local r = redis.call('HMGET', skey(id), 'user', 'th', 'c', 'e', 'ttl', 'v', 'd')\n"  \
    "  if not r[4] or tonumber(r[4]) <= now then return nil end\n"                          \
    "  table.insert(r, 1, id)\n"                                                            \
    "  return r\n"                                                                          \
    "end\n"                                                                                 \
    "local function purge(id)\n"                                                            \
    "  local f = redis.call('HMGET', skey(id), 'user')\n"                                   \
    "  redis.call('DEL', skey(id))\n"                                                       \
    "  if f[1] then redis.call('ZREM', ukey(f[1]), id) end\n"                               \
    "  redis.call('ZREM', ALL, id)\n"                                                       \
    "end\n"                                                                                 \
    "local function extend(k, e)\n"                                                         \
    "  local ms = redis.call('PTTL', k)\n"                                                  \
    "  if ms == -2 then return end\n"                                                       \
    "  if ms >= 0 then\n"                                                                   \
    "    local t = redis.call('TIME')\n"                                                    \
    "    if tonumber(t[1]) + ms / 1000 >= e then return end\n"                              \
    "  end\n"                                                                               \
    "  redis.call('EXPIREAT', k, e)\n"                                                      \
    "end\n"

enum rs_script {
    RS_GET,
    RS_CREATE,
    RS_UPDATE,
    RS_DELETE,
    RS_DELETE_USER,
    RS_LIST,
    RS_COUNT,
    RS_NSCRIPTS,
};

static const char *const rs_scripts[RS_NSCRIPTS] = {
    /* ARGV: P, now, id */
    [RS_GET] = RS_PRELUDE "return load(ARGV[3], tonumber(ARGV[2]))\n",

    /* ARGV: P, now, id, user, th, c, e, ttl, d, max_per_user, max_sessions.
     * Returns 0 (created), 1 (the id is taken), 3 (the user has max_per_user live
     * sessions), 4 (the store has max_sessions). Expired sessions met on
     * the way are deleted, since they hold no place; nothing of the new session is
     * written unless every check passed. */
    [RS_CREATE] = RS_PRELUDE
    "local now, id, user, th = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]\n"
    "local e = tonumber(ARGV[7])\n"
    "local old = redis.call('HGET', skey(id), 'e')\n"
    "if old then\n"
    "  if tonumber(old) > now then return 1 end\n"
    "  purge(id)\n"
    "end\n"
    "local uk, live, last = ukey(user), 0, e\n"
    "for _, sid in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
    "  local f = redis.call('HMGET', skey(sid), 'user', 'e')\n"
    "  if f[1] ~= user or not f[2] then redis.call('ZREM', uk, sid)\n"
    "  elseif tonumber(f[2]) <= now then purge(sid)\n"
    "  else\n"
    "    live = live + 1\n"
    "    if tonumber(f[2]) > last then last = tonumber(f[2]) end\n"
    "  end\n"
    "end\n"
    "if live >= tonumber(ARGV[10]) then return 3 end\n"
    "redis.call('ZREMRANGEBYSCORE', ALL, '-inf', ARGV[2])\n"
    "if redis.call('ZCARD', ALL) >= tonumber(ARGV[11]) then return 4 end\n"
    "local k = skey(id)\n"
    "redis.call('HSET', k, 'user', user, 'th', th, 'c', ARGV[6], 'e', ARGV[7],\n"
    "           'ttl', ARGV[8], 'v', '1', 'd', ARGV[9])\n"
    "redis.call('EXPIREAT', k, e)\n"
    "redis.call('ZADD', uk, ARGV[6], id)\n"
    "redis.call('ZADD', ALL, e, id)\n"
    "redis.call('EXPIREAT', uk, last)\n"
    "return 0\n",

    /* ARGV: P, now, id, version read ('' = any), if_version ('0' = none), ttl (0 = keep),
     * touch ('1' or '0'), has data ('1' or '0'), data. The whole change where it can be
     * made here (a touch, a ttl), a compare-and-set for data the caller merged from the
     * version it read. Returns the session as it is now, or 0 (gone or expired), -1 (it
     * changed since the caller read it), -2 (it is not at if_version). A data or ttl
     * change makes a new version; a touch alone does not. */
    [RS_UPDATE] = RS_PRELUDE
    "local id, now = ARGV[3], tonumber(ARGV[2])\n"
    "local k = skey(id)\n"
    "local f = redis.call('HMGET', k, 'v', 'e', 'user', 'ttl')\n"
    "if not f[2] or tonumber(f[2]) <= now then return 0 end\n"
    "if ARGV[5] ~= '0' and f[1] ~= ARGV[5] then return -2 end\n"
    "if ARGV[4] ~= '' and f[1] ~= ARGV[4] then return -1 end\n"
    "local nttl = tonumber(ARGV[6])\n"
    "local ttl = nttl > 0 and nttl or tonumber(f[4])\n"
    "local e = tonumber(f[2])\n"
    "if ARGV[7] == '1' then e = now + ttl end\n"
    "local v = tonumber(f[1])\n"
    "if ARGV[8] == '1' or nttl > 0 then v = v + 1 end\n"
    "local es = string.format('%d', e)\n"
    "redis.call('HSET', k, 'v', string.format('%d', v), 'e', es, 'ttl', string.format('%d', ttl))\n"
    "if ARGV[8] == '1' then redis.call('HSET', k, 'd', ARGV[9]) end\n"
    "if es ~= f[2] then\n"
    "  redis.call('EXPIREAT', k, es)\n"
    "  redis.call('ZADD', ALL, es, id)\n"
    "  extend(ukey(f[3]), e)\n"
    "end\n"
    "return load(id, now)\n",

    /* ARGV: P, id. Returns the deleted session (expired or not, as the LMDB engine), so
     * that the caller learns its user, or nil. */
    [RS_DELETE] = RS_PRELUDE
    "local id = ARGV[2]\n"
    "local r = redis.call('HMGET', skey(id), 'user', 'th', 'c', 'e', 'ttl', 'v', 'd')\n"
    "if not r[1] then return nil end\n"
    "purge(id)\n"
    "table.insert(r, 1, id)\n"
    "return r\n",

    /* ARGV: P, user. Returns how many sessions were deleted. */
    [RS_DELETE_USER] = RS_PRELUDE
    "local user, n = ARGV[2], 0\n"
    "for _, sid in ipairs(redis.call('ZRANGE', ukey(user), 0, -1)) do\n"
    "  if redis.call('HGET', skey(sid), 'user') == user then\n"
    "    purge(sid)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', ukey(user))\n"
    "return n\n",

    /* ARGV: P, now, user, max. The user's live sessions, oldest first (ZRANGE orders by
     * created_at, then by id, as the LMDB index does). */
    [RS_LIST] = RS_PRELUDE
    "local now, user, max, out = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), {}\n"
    "for _, sid in ipairs(redis.call('ZRANGE', ukey(user), 0, -1)) do\n"
    "  local s = load(sid, now)\n"
    "  if s and s[2] == user then\n"
    "    out[#out + 1] = s\n"
    "    if #out >= max then break end\n"
    "  end\n"
    "end\n"
    "return out\n",

    /* ARGV: P, now. */
    [RS_COUNT] = RS_PRELUDE
    "redis.call('ZREMRANGEBYSCORE', ALL, '-inf', ARGV[2])\n"
    "return redis.call('ZCARD', ALL)\n",
};

/* ---- state ---- */

enum rs_conn { RS_DOWN, RS_CONNECTING, RS_READY };
enum rs_circuit { RS_CLOSED, RS_OPEN, RS_HALF_OPEN };
enum rs_kind { RS_INTERNAL, RS_ONE, RS_LIST_CB, RS_COUNT_CB };

struct redis_store;
struct rs_op;

/* What to do with a reply (never NULL, never NOSCRIPT: rs_on_reply deals with those). */
typedef void (*rs_reply_fn)(struct redis_store *st, struct rs_op *op, redisReply *r);

/* One operation: a caller's (answered through its callback exactly once) or one of ours
 * (handshake, probe, sweep). It has at most one command in flight at a time. */
struct rs_op {
    struct rs_op *prev, *next; /* in flight, oldest first; or the deferred queue */
    struct redis_store *st;
    rs_reply_fn on_reply;
    enum rs_kind kind;
    union {
        store_cb one;
        store_list_cb list;
        store_count_cb count;
    } cb;
    void *arg;
    enum store_status status; /* the answer, while in the deferred queue */
    ev_tstamp deadline;
    const char *what;         /* for messages: "AUTH", "SELECT", ... */
    bool last;                /* the last command of the handshake */

    /* The command: argv points into mem once sealed; a script's argv[0] and argv[1] are
     * EVALSHA and its SHA, or EVAL and its body after a NOSCRIPT reply. */
    int script; /* enum rs_script, or -1 */
    bool eval, bad;
    int argc;
    const char *argv[RS_MAX_ARGS];
    size_t argvlen[RS_MAX_ARGS], off[RS_MAX_ARGS];
    char *mem;
    size_t mem_len, mem_cap;

    /* create: the session to answer with, its data ours; update: the id in out.id and
     * the merged data */
    struct session out;
    char *data;
    size_t data_len;
    /* get and update */
    int64_t now;
    bool by_token; /* a get by token: out.token_hash is the hash the session must have */
    struct store_change ch; /* ch.patch points to patch, ours */
    char *patch;
    int retries;
};

struct redis_store {
    struct ev_loop *loop;
    struct redis_url url;
    char where[REDIS_URL_HOST_MAX + REDIS_URL_PATH_MAX + 16]; /* host:port or the path */
    char prefix[sizeof ((struct conf *)0)->redis_prefix];
    size_t prefix_len;
    ev_tstamp timeout;
    long long timeout_ms;
    int64_t max_sessions;
    int max_per_user;
    size_t max_bytes;
    char sha[RS_NSCRIPTS][RS_SHA_HEX + 1];

    redisAsyncContext *ac; /* NULL while disconnected */
    enum rs_conn conn;
    enum rs_circuit circuit;
    bool probe_due;   /* the circuit has been open long enough: probe once connected */
    bool closing;     /* store_close: answer nothing more */
    int failures;     /* consecutive */
    int attempts;     /* reconnects since the circuit last closed, for the backoff */
    uint64_t rng;     /* the backoff's jitter */

    struct rs_op *head, *tail;             /* in flight, oldest first */
    struct rs_op *later_head, *later_tail; /* answered at the next loop iteration */
    ev_timer timeout_timer, reconnect_timer, circuit_timer, later_timer;

    char cause[512]; /* why Redis is unavailable */
    char error[640]; /* store_last_error */
};

/* ---- small helpers ---- */

static const char *
rs_circuit_name(enum rs_circuit c)
{
    return c == RS_CLOSED ? "closed" : c == RS_OPEN ? "open" : "half_open";
}

static void
rs_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int
rs_unhex(const char *s, size_t len, uint8_t *out, size_t n)
{
    if (len != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* A reply element that is a whole decimal integer. */
static int
rs_int(const redisReply *r, int64_t *out)
{
    char buf[24], *end;
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len >= sizeof buf)
        return -1;
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* Copy a string element of 1 to max bytes into out (max + 1 bytes). */
static int
rs_str(const redisReply *r, char *out, size_t max)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > max)
        return -1;
    memcpy(out, r->str, r->len);
    out[r->len] = '\0';
    return 0;
}

/* The seven fields after the id (user, th, c, e, ttl, v, d), as HMGET and the scripts'
 * load() return them, into s. */
static int
rs_session_fields(redisReply **e, const char *id, struct session *s)
{
    int64_t v;
    if (id != s->id)
        snprintf(s->id, sizeof s->id, "%s", id);
    if (rs_str(e[0], s->user, SESSION_USER_MAX) < 0 || e[1]->type != REDIS_REPLY_STRING ||
        rs_unhex(e[1]->str, e[1]->len, s->token_hash, SESSION_HASH_LEN) < 0 ||
        rs_int(e[2], &s->created_at) < 0 || rs_int(e[3], &s->expires_at) < 0 ||
        rs_int(e[4], &s->ttl) < 0 || rs_int(e[5], &v) < 0 || v < 1 ||
        e[6]->type != REDIS_REPLY_STRING)
        return -1;
    s->version = (uint64_t)v;
    s->data = e[6]->str;
    s->data_len = e[6]->len;
    return 0;
}

/* A session as the scripts return it: {id, user, th, c, e, ttl, v, d}. s->data points
 * into r. */
static int
rs_session(const redisReply *r, struct session *s)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != RS_SESSION_FIELDS ||
        rs_str(r->element[0], s->id, SESSION_ID_LEN) < 0)
        return -1;
    return rs_session_fields(r->element + 1, s->id, s);
}

/* A number in [0, 1) for the backoff's jitter (xorshift64*: no need for more). */
static double
rs_random(struct redis_store *st)
{
    uint64_t x = st->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    st->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* ---- operations: memory, arguments, answers ---- */

static struct rs_op *
rs_op_new(struct redis_store *st, enum rs_kind kind, rs_reply_fn on_reply, void *arg)
{
    struct rs_op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return NULL;
    op->st = st;
    op->kind = kind;
    op->on_reply = on_reply;
    op->arg = arg;
    op->script = -1;
    return op;
}

static void
rs_op_free(struct rs_op *op)
{
    free(op->mem);
    free(op->data);
    free(op->patch);
    free(op);
}

/* Append one argument (copied). A failure marks the op bad; rs_seal reports it. */
static void
rs_arg(struct rs_op *op, const void *p, size_t n)
{
    if (op->bad || op->argc == RS_MAX_ARGS) {
        op->bad = true;
        return;
    }
    if (op->mem_len + n > op->mem_cap) {
        size_t cap = op->mem_cap > 0 ? op->mem_cap : 256;
        while (cap < op->mem_len + n)
            cap *= 2;
        char *m = realloc(op->mem, cap);
        if (m == NULL) {
            op->bad = true;
            return;
        }
        op->mem = m;
        op->mem_cap = cap;
    }
    if (n > 0)
        memcpy(op->mem + op->mem_len, p, n);
    op->off[op->argc] = op->mem_len;
    op->argvlen[op->argc++] = n;
    op->mem_len += n;
}

static void
rs_arg_str(struct rs_op *op, const char *s)
{
    rs_arg(op, s, strlen(s));
}

static void
rs_arg_int(struct rs_op *op, long long v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%lld", v);
    rs_arg(op, buf, (size_t)n);
}

/* Start a script call: EVALSHA sha 0 prefix, then the script's own arguments. */
static void
rs_script(struct redis_store *st, struct rs_op *op, enum rs_script sc)
{
    op->argc = 0;
    op->mem_len = 0;
    op->eval = false;
    op->script = (int)sc;
    rs_arg_str(op, "EVALSHA");
    rs_arg(op, st->sha[sc], RS_SHA_HEX);
    rs_arg_str(op, "0");
    rs_arg(op, st->prefix, st->prefix_len);
}

/* Point argv into mem, now that it no longer moves. */
static bool
rs_seal(struct rs_op *op)
{
    if (op->bad)
        return false;
    for (int i = 0; i < op->argc; i++)
        op->argv[i] = op->mem + op->off[i];
    return true;
}

/* Answer the op (unless it is ours, or the store is closing) and free it. */
static void
rs_answer(struct redis_store *st, struct rs_op *op, enum store_status status,
          const struct session *s, size_t n, uint64_t count)
{
    if (status == STORE_UNAVAILABLE && op->kind != RS_INTERNAL)
        errf(st->error, sizeof st->error, "redis unavailable (circuit %s): %s",
                   rs_circuit_name(st->circuit), st->cause);
    if (!st->closing) {
        if (op->kind == RS_ONE)
            op->cb.one(op->arg, status, status == STORE_OK ? s : NULL);
        else if (op->kind == RS_LIST_CB)
            op->cb.list(op->arg, status, status == STORE_OK ? s : NULL,
                        status == STORE_OK ? n : 0);
        else if (op->kind == RS_COUNT_CB)
            op->cb.count(op->arg, status, status == STORE_OK ? count : 0);
    }
    rs_op_free(op);
}

static void
rs_finish(struct redis_store *st, struct rs_op *op, enum store_status status)
{
    rs_answer(st, op, status, NULL, 0, 0);
}

/* A STORE_ERROR with its reason in store_last_error. */
static void
rs_fail(struct redis_store *st, struct rs_op *op, const char *why)
{
    errf(st->error, sizeof st->error, "%s", why);
    rs_finish(st, op, STORE_ERROR);
}

/* Answer at the next loop iteration: a caller is never called back before its call
 * returns, even when the answer is known at once. */
static void
rs_later(struct redis_store *st, struct rs_op *op, enum store_status status)
{
    op->status = status;
    op->next = NULL;
    if (st->later_tail != NULL)
        st->later_tail->next = op;
    else
        st->later_head = op;
    st->later_tail = op;
    if (!ev_is_active(&st->later_timer)) {
        ev_timer_set(&st->later_timer, 0., 0.);
        ev_timer_start(st->loop, &st->later_timer);
    }
}

static void
rs_on_later(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_store *st = container_of(t, struct redis_store, later_timer);
    /* Take the whole queue first: what these callbacks queue waits for the next round. */
    struct rs_op *op = st->later_head;
    st->later_head = st->later_tail = NULL;
    while (op != NULL) {
        struct rs_op *next = op->next;
        rs_finish(st, op, op->status);
        op = next;
    }
}

/* ---- commands in flight ---- */

static void rs_on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Hand the op's command (argv as it is) to hiredis and start its clock. Returns false,
 * with the op answered STORE_UNAVAILABLE at the next iteration, if there is no
 * connection to send it on. */
static bool
rs_send(struct redis_store *st, struct rs_op *op)
{
    if (st->ac == NULL || redisAsyncCommandArgv(st->ac, rs_on_reply, op, op->argc, op->argv,
                                                op->argvlen) != REDIS_OK) {
        rs_later(st, op, STORE_UNAVAILABLE);
        return false;
    }
    op->deadline = ev_now(st->loop) + st->timeout;
    LIST_APPEND(st->head, st->tail, op);
    /* One timer, for the oldest command: replies come in order, so no later command
     * can time out first. */
    if (!ev_is_active(&st->timeout_timer)) {
        ev_timer_set(&st->timeout_timer, st->timeout, 0.);
        ev_timer_start(st->loop, &st->timeout_timer);
    }
    return true;
}

static bool
rs_send_new(struct redis_store *st, struct rs_op *op)
{
    if (!rs_seal(op)) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        rs_later(st, op, STORE_ERROR);
        return false;
    }
    return rs_send(st, op);
}

/* A caller's operation: sent if the circuit lets it through, else refused at once. */
static void
rs_submit(struct redis_store *st, struct rs_op *op)
{
    if (st->circuit != RS_CLOSED || st->ac == NULL) {
        rs_later(st, op, STORE_UNAVAILABLE);
        return;
    }
    rs_send_new(st, op);
}

/* ---- connection and circuit ---- */

__attribute__((format(printf, 2, 3))) static void
rs_cause(struct redis_store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->cause, sizeof st->cause, fmt, ap);
    va_end(ap);
}

static void
rs_circuit_open(struct redis_store *st)
{
    st->circuit = RS_OPEN;
    st->probe_due = false;
    ev_timer_stop(st->loop, &st->circuit_timer);
    ev_timer_set(&st->circuit_timer, RS_OPEN_SECONDS, 0.);
    ev_timer_start(st->loop, &st->circuit_timer);
}

/* A failure of Redis (an error reply, a timeout): enough of them in a row open the
 * circuit, so that callers stop waiting on a Redis that is unwell. */
static void
rs_count_failure(struct redis_store *st)
{
    if (++st->failures >= RS_FAILURES_TO_OPEN && st->circuit == RS_CLOSED)
        rs_circuit_open(st);
}

static void
rs_schedule_reconnect(struct redis_store *st)
{
    if (st->closing || ev_is_active(&st->reconnect_timer))
        return;
    double d = RS_BACKOFF_MIN;
    for (int i = 0; i < st->attempts && d < RS_BACKOFF_MAX; i++)
        d *= 2;
    if (d > RS_BACKOFF_MAX)
        d = RS_BACKOFF_MAX;
    /* Jitter, so that the workers of every instance do not reconnect in step. */
    d *= 1.0 - RS_JITTER + 2 * RS_JITTER * rs_random(st);
    if (st->attempts < 32)
        st->attempts++;
    ev_timer_set(&st->reconnect_timer, d, 0.);
    ev_timer_start(st->loop, &st->reconnect_timer);
}

/* The connection is gone (hiredis is freeing it, or we are): calls fail at once until a
 * reconnect and a successful probe. */
static void
rs_lost(struct redis_store *st)
{
    st->ac = NULL;
    st->conn = RS_DOWN;
    ev_timer_stop(st->loop, &st->timeout_timer);
    if (st->circuit != RS_OPEN)
        rs_circuit_open(st);
    rs_schedule_reconnect(st);
}

/* Drop the connection ourselves. Every command in flight gets its NULL reply from
 * hiredis, now or (inside a hiredis callback) as soon as that callback returns. */
static void
rs_drop(struct redis_store *st)
{
    redisAsyncContext *ac = st->ac;
    if (ac == NULL)
        return;
    rs_lost(st);
    redisAsyncFree(ac);
}

static void
rs_on_probe(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        rs_cause(st, "PING: %.*s", (int)r->len, r->str);
        rs_circuit_open(st);
    } else if (st->circuit == RS_HALF_OPEN) {
        st->circuit = RS_CLOSED;
        st->failures = 0;
        st->attempts = 0;
    }
    rs_op_free(op);
}

/* Half open: one PING decides. */
static void
rs_probe(struct redis_store *st)
{
    struct rs_op *op = rs_op_new(st, RS_INTERNAL, rs_on_probe, NULL);
    st->circuit = RS_HALF_OPEN;
    st->probe_due = false;
    if (op == NULL) {
        rs_circuit_open(st);
        return;
    }
    rs_arg_str(op, "PING");
    if (!rs_send_new(st, op))
        rs_circuit_open(st);
}

static void
rs_on_circuit_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_store *st = container_of(t, struct redis_store, circuit_timer);
    if (st->circuit != RS_OPEN)
        return;
    st->probe_due = true;
    if (st->conn == RS_READY)
        rs_probe(st);
}

static void
rs_ready(struct redis_store *st)
{
    st->conn = RS_READY;
    if (st->circuit == RS_OPEN && st->probe_due)
        rs_probe(st);
}

/* A reply to a handshake command (AUTH, SELECT, SCRIPT LOAD): an error drops the
 * connection and leaves the reason for store_last_error and the health check. */
static void
rs_on_setup(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        rs_cause(st, "%s: %s: %.*s", st->where, op->what, (int)r->len, r->str);
        rs_drop(st);
    } else if (op->script >= 0 && (r->type != REDIS_REPLY_STRING || r->len != RS_SHA_HEX ||
                                   memcmp(r->str, st->sha[op->script], RS_SHA_HEX) != 0)) {
        rs_cause(st, "%s: SCRIPT LOAD answered an unexpected SHA", st->where);
        rs_drop(st);
    } else if (op->last) {
        rs_ready(st);
    }
    rs_op_free(op);
}

static void
rs_setup_send(struct redis_store *st, struct rs_op *op, const char *what)
{
    op->what = what;
    rs_send_new(st, op);
}

/* Log in, choose the database and load the scripts. These go out first on the new
 * connection, so that the commands queued behind them find everything ready. */
static void
rs_handshake(struct redis_store *st)
{
    const struct redis_url *u = &st->url;
    struct rs_op *op;
    if (u->password[0] != '\0' && (op = rs_op_new(st, RS_INTERNAL, rs_on_setup, NULL)) != NULL) {
        rs_arg_str(op, "AUTH");
        if (u->user[0] != '\0')
            rs_arg_str(op, u->user);
        rs_arg_str(op, u->password);
        rs_setup_send(st, op, "AUTH");
    }
    if (u->db != 0 && (op = rs_op_new(st, RS_INTERNAL, rs_on_setup, NULL)) != NULL) {
        rs_arg_str(op, "SELECT");
        rs_arg_int(op, u->db);
        rs_setup_send(st, op, "SELECT");
    }
    for (int i = 0; i < RS_NSCRIPTS; i++) {
        if ((op = rs_op_new(st, RS_INTERNAL, rs_on_setup, NULL)) == NULL)
            continue;
        op->script = i; /* checks the SHA; this is no EVALSHA to retry */
        op->last = i == RS_NSCRIPTS - 1;
        rs_arg_str(op, "SCRIPT");
        rs_arg_str(op, "LOAD");
        rs_arg_str(op, rs_scripts[i]);
        rs_setup_send(st, op, "SCRIPT LOAD");
    }
}

static void
rs_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_store *st = ac->data;
    if (status == REDIS_OK || st->ac != ac)
        return;
    /* hiredis frees the context after this returns. */
    rs_cause(st, "%s: %s", st->where, ac->errstr);
    rs_lost(st);
}

static void
rs_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_store *st = ac->data;
    if (st->ac != ac)
        return; /* we dropped it ourselves and know why */
    rs_cause(st, "%s: %s", st->where, status == REDIS_OK ? "disconnected" : ac->errstr);
    rs_lost(st);
}

static void
rs_connect(struct redis_store *st)
{
    redisAsyncContext *ac = st->url.is_unix ? redisAsyncConnectUnix(st->url.path)
                                            : redisAsyncConnect(st->url.host, st->url.port);
    if (ac == NULL || ac->err) {
        rs_cause(st, "%s: %s", st->where, ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        rs_lost(st);
        return;
    }
    ac->data = st;
    if (redisLibevAttach(st->loop, ac) != REDIS_OK) {
        rs_cause(st, "%s: cannot attach to the event loop", st->where);
        redisAsyncFree(ac);
        rs_lost(st);
        return;
    }
    redisAsyncSetConnectCallback(ac, rs_on_connect);
    redisAsyncSetDisconnectCallback(ac, rs_on_disconnect);
    st->ac = ac;
    st->conn = RS_CONNECTING;
    rs_handshake(st);
}

static void
rs_on_reconnect_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    rs_connect(container_of(t, struct redis_store, reconnect_timer));
}

/* Arm the timer for the oldest command in flight; false if that one is overdue. */
static bool
rs_rearm(struct redis_store *st)
{
    if (st->head == NULL)
        return true;
    ev_tstamp left = st->head->deadline - ev_now(st->loop);
    if (left <= 0)
        return false;
    ev_timer_set(&st->timeout_timer, left, 0.);
    ev_timer_start(st->loop, &st->timeout_timer);
    return true;
}

/* The oldest command has had redis_timeout: hiredis cannot cancel it, so the connection
 * goes, and with it every command in flight. */
static void
rs_on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_store *st = container_of(t, struct redis_store, timeout_timer);
    if (st->ac == NULL || rs_rearm(st))
        return;
    /* After a stall of the loop the reply may be waiting unread: read before judging. */
    redisAsyncHandleRead(st->ac);
    if (st->ac == NULL || rs_rearm(st))
        return;
    rs_cause(st, "%s: no reply within %lld ms", st->where, st->timeout_ms);
    rs_count_failure(st);
    rs_drop(st);
}

/* NOSCRIPT: Redis lost its scripts (a restart, SCRIPT FLUSH, a failover). Send the same
 * call again as EVAL with the body, which also puts the script back in Redis's cache. */
static bool
rs_noscript(struct rs_op *op, const redisReply *r)
{
    if (op->script < 0 || op->eval || op->argc < 2 || r->len < 8 ||
        strncmp(r->str, "NOSCRIPT", 8) != 0)
        return false;
    op->eval = true;
    op->argv[0] = "EVAL";
    op->argvlen[0] = 4;
    op->argv[1] = rs_scripts[op->script];
    op->argvlen[1] = strlen(rs_scripts[op->script]);
    return true;
}

/* Every reply comes here, privdata being its op. NULL means the connection is going
 * away: whatever the op was, it is answered STORE_UNAVAILABLE, once. */
static void
rs_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rs_op *op = privdata;
    struct redis_store *st = op->st;
    redisReply *r = reply;
    LIST_UNLINK_TAIL(st->head, st->tail, op);
    if (r == NULL) {
        if (st->ac == ac) {
            rs_cause(st, "%s: %s", st->where, ac->err ? ac->errstr : "connection lost");
            rs_lost(st);
        }
        rs_finish(st, op, STORE_UNAVAILABLE);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && op->kind != RS_INTERNAL && rs_noscript(op, r)) {
        rs_send(st, op);
        return;
    }
    if (r->type != REDIS_REPLY_ERROR)
        st->failures = 0;
    op->on_reply(st, op, r);
}

/* ---- replies to the callers' operations ---- */

/* Errors that say Redis cannot serve now, rather than that the command was wrong. */
static enum store_status
rs_error_status(const redisReply *r)
{
    static const char *const busy[] = {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM",
                                       "NOAUTH", "TRYAGAIN", "CLUSTERDOWN"};
    for (size_t i = 0; i < ARRAY_LEN(busy); i++) {
        size_t n = strlen(busy[i]);
        if (r->len >= n && strncmp(r->str, busy[i], n) == 0)
            return STORE_UNAVAILABLE;
    }
    return STORE_ERROR;
}

/* An error reply: answered (and counted towards the circuit); true if r was one. */
static bool
rs_failed(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return false;
    enum store_status status = rs_error_status(r);
    rs_cause(st, "%s: %.*s", st->where, (int)r->len, r->str);
    errf(st->error, sizeof st->error, "redis: %.*s", (int)r->len, r->str);
    rs_count_failure(st);
    rs_finish(st, op, status);
    return true;
}

static void
rs_unexpected(struct redis_store *st, struct rs_op *op)
{
    rs_fail(st, op, "redis: unexpected reply");
}

/* Scripts that answer a session or nil: delete, and update's read. */
static void
rs_on_session(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    struct session s;
    if (rs_failed(st, op, r))
        return;
    if (r->type == REDIS_REPLY_NIL)
        rs_finish(st, op, STORE_NOT_FOUND);
    else if (rs_session(r, &s) < 0)
        rs_fail(st, op, "redis: malformed session");
    else
        rs_answer(st, op, STORE_OK, &s, 1, 0);
}

static void
rs_on_count(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (rs_failed(st, op, r))
        return;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        rs_unexpected(st, op);
    else
        rs_answer(st, op, STORE_OK, NULL, 0, (uint64_t)r->integer);
}

static void
rs_on_list(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (rs_failed(st, op, r))
        return;
    if (r->type != REDIS_REPLY_ARRAY) {
        rs_unexpected(st, op);
        return;
    }
    struct session *v = calloc(r->elements > 0 ? r->elements : 1, sizeof *v);
    if (v == NULL) {
        rs_fail(st, op, "redis: out of memory");
        return;
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (rs_session(r->element[i], &v[i]) < 0) {
            free(v);
            rs_fail(st, op, "redis: malformed session");
            return;
        }
    }
    rs_answer(st, op, STORE_OK, v, r->elements, 0);
    free(v);
}

static void
rs_on_create(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (rs_failed(st, op, r))
        return;
    if (r->type != REDIS_REPLY_INTEGER) {
        rs_unexpected(st, op);
        return;
    }
    switch (r->integer) {
    case 0:
        rs_answer(st, op, STORE_OK, &op->out, 1, 0);
        break;
    case 1:
        rs_fail(st, op, "a session with this id exists");
        break;
    case 3:
        rs_finish(st, op, STORE_USER_LIMIT);
        break;
    case 4:
        rs_finish(st, op, STORE_FULL);
        break;
    default:
        rs_unexpected(st, op);
        break;
    }
}

/* ---- the operations ---- */

static struct rs_op *
rs_op_one(struct redis_store *st, rs_reply_fn fn, store_cb cb, void *arg)
{
    struct rs_op *op = rs_op_new(st, RS_ONE, fn, arg);
    if (op != NULL)
        op->cb.one = cb;
    else
        errf(st->error, sizeof st->error, "redis: out of memory");
    return op;
}

static bool
rs_id_ok(const char *id)
{
    size_t n = strnlen(id, SESSION_ID_LEN + 1);
    return n >= 1 && n <= SESSION_ID_LEN;
}

static bool
rs_user_ok(const char *user)
{
    size_t n = strnlen(user, SESSION_USER_MAX + 1);
    return n >= 1 && n <= SESSION_USER_MAX;
}

/* The checks the LMDB engine makes before its transaction, with its messages. */
static enum store_status
rs_create_check(struct redis_store *st, const struct session *s)
{
    const char *why = NULL;
    if (!rs_id_ok(s->id) || !store_id_fits(s))
        why = "session id: not the id of its token";
    else if (strnlen(s->user, sizeof s->user) == 0 ||
             strnlen(s->user, sizeof s->user) > SESSION_USER_MAX)
        why = "user: 1 to 128 bytes";
    else if (s->data_len > st->max_bytes)
        return STORE_TOO_BIG;
    else if (s->data == NULL && s->data_len > 0)
        why = "data: NULL with a length";
    if (why == NULL)
        return STORE_OK;
    errf(st->error, sizeof st->error, "%s", why);
    return STORE_ERROR;
}

static void
rs_create(void *self, const struct session *s, store_cb cb, void *arg)
{
    struct redis_store *st = self;
    char th[RS_HASH_HEX + 1];
    struct rs_op *op = rs_op_one(st, rs_on_create, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL); /* no memory even to answer later */
        return;
    }
    enum store_status status = rs_create_check(st, s);
    if (status == STORE_OK && (op->data = malloc(s->data_len + 1)) == NULL) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        status = STORE_ERROR;
    }
    if (status != STORE_OK) {
        rs_later(st, op, status);
        return;
    }
    if (s->data_len > 0)
        memcpy(op->data, s->data, s->data_len);
    op->out = *s;
    op->out.data = op->data;
    op->out.version = 1;
    rs_hex(s->token_hash, SESSION_HASH_LEN, th);
    rs_script(st, op, RS_CREATE);
    rs_arg_int(op, s->created_at); /* the create's now, as in the LMDB engine */
    rs_arg_str(op, op->out.id);
    rs_arg_str(op, op->out.user);
    rs_arg_str(op, th);
    rs_arg_int(op, s->created_at);
    rs_arg_int(op, s->expires_at);
    rs_arg_int(op, s->ttl);
    rs_arg(op, s->data, s->data_len);
    rs_arg_int(op, st->max_per_user);
    rs_arg_int(op, st->max_sessions);
    rs_submit(st, op);
}

/* A read by id or token is the hot path and needs no atomicity beyond one command's: a
 * plain HMGET costs Redis a fraction of a script call, and the expiry check (and for a
 * token the comparison of the whole hash) moves here. */
static void
rs_on_get(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (rs_failed(st, op, r))
        return;
    struct session s = {0}; /* (cppcheck cannot tell that only s.id's address is read) */
    if (r->type != REDIS_REPLY_ARRAY || r->elements != RS_SESSION_FIELDS - 1) {
        rs_unexpected(st, op);
    /* Each NOT_FOUND branch is its own case, tested in order (the record is parsed before its
     * expiry and token are). NOLINTNEXTLINE(bugprone-branch-clone) */
    } else if (r->element[3]->type == REDIS_REPLY_NIL) {
        rs_finish(st, op, STORE_NOT_FOUND);
    } else if (rs_session_fields(r->element, op->out.id, &s) < 0) {
        rs_fail(st, op, "redis: malformed session");
    } else if (s.expires_at <= op->now) {
        rs_finish(st, op, STORE_NOT_FOUND); /* Redis has not expired the key yet */
    } else if (op->by_token && !token_equal(s.token_hash, SESSION_HASH_LEN,
                                            op->out.token_hash, SESSION_HASH_LEN)) {
        rs_finish(st, op, STORE_NOT_FOUND);
    } else {
        rs_answer(st, op, STORE_OK, &s, 1, 0);
    }
}

static void
rs_hmget(struct redis_store *st, struct rs_op *op, const char *id, int64_t now)
{
    if (!rs_id_ok(id)) {
        rs_later(st, op, STORE_NOT_FOUND);
        return;
    }
    op->now = now;
    snprintf(op->out.id, sizeof op->out.id, "%s", id);
    op->argc = 0;
    op->mem_len = 0;
    rs_arg_str(op, "HMGET");
    char key[sizeof st->prefix + SESSION_ID_LEN + 3];
    int n = snprintf(key, sizeof key, "%.*ss:%s", (int)st->prefix_len, st->prefix, id);
    rs_arg(op, key, (size_t)n);
    static const char *const fields[] = {"user", "th", "c", "e", "ttl", "v", "d"};
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        rs_arg_str(op, fields[i]);
    rs_submit(st, op);
}

static void
rs_get(void *self, const char *id, int64_t now, store_cb cb, void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_one(st, rs_on_get, cb, arg);
    if (op == NULL)
        cb(arg, STORE_ERROR, NULL);
    else
        rs_hmget(st, op, id, now);
}

static void
rs_get_by_token(void *self, const uint8_t hash[SESSION_HASH_LEN], int64_t now, store_cb cb,
                void *arg)
{
    struct redis_store *st = self;
    char id[SESSION_ID_LEN + 1];
    struct rs_op *op = rs_op_one(st, rs_on_get, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    op->by_token = true;
    memcpy(op->out.token_hash, hash, SESSION_HASH_LEN);
    token_id_of_hash(hash, id);
    rs_hmget(st, op, id, now);
}

/* ---- update ---- */

/* A touch or a new ttl is one script, atomic in Redis, without a read first (session_rolling
 * touches often, and concurrent touches of one session must not fail). A data patch is
 * merged here (json_merge keeps numbers as the client wrote them, which Lua's cjson would
 * not), so it reads the session, merges, and writes with a compare-and-set on the version
 * it read, reading again when another change came in between. */

static void rs_on_update_read(struct redis_store *st, struct rs_op *op, redisReply *r);
static void rs_on_update_write(struct redis_store *st, struct rs_op *op, redisReply *r);

static void
rs_update_read_args(struct redis_store *st, struct rs_op *op)
{
    op->on_reply = rs_on_update_read;
    rs_script(st, op, RS_GET);
    rs_arg_int(op, op->now);
    rs_arg_str(op, op->out.id);
}

/* read_version: the version the data was merged from, or 0 when there is no data. */
static void
rs_update_write_args(struct redis_store *st, struct rs_op *op, uint64_t read_version)
{
    op->on_reply = rs_on_update_write;
    rs_script(st, op, RS_UPDATE);
    rs_arg_int(op, op->now);
    rs_arg_str(op, op->out.id);
    if (read_version > 0)
        rs_arg_int(op, (long long)read_version);
    else
        rs_arg_str(op, "");
    rs_arg_int(op, (long long)op->ch.if_version);
    rs_arg_int(op, op->ch.ttl > 0 ? op->ch.ttl : 0);
    rs_arg_str(op, op->ch.touch ? "1" : "0");
    rs_arg_str(op, op->data != NULL ? "1" : "0");
    rs_arg(op, op->data, op->data != NULL ? op->data_len : 0);
}

/* The patch applied to cur's data, into op->data. */
static enum store_status
rs_update_merge(struct redis_store *st, struct rs_op *op, const struct session *cur)
{
    /* A session created without data has the empty object as data. */
    const char *t = cur->data_len > 0 ? cur->data : "{}";
    size_t tlen = cur->data_len > 0 ? cur->data_len : 2;
    free(op->data);
    op->data = NULL;
    int rc = json_merge_patch(t, tlen, op->ch.patch, op->ch.patch_len, st->max_bytes,
                              &op->data, &op->data_len);
    if (rc == 0)
        return STORE_OK;
    op->data = NULL;
    return rc == -2 ? STORE_TOO_BIG : STORE_BAD_DATA;
}

static void
rs_on_update_read(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    struct session cur;
    if (rs_failed(st, op, r))
        return;
    if (r->type == REDIS_REPLY_NIL) {
        rs_finish(st, op, STORE_NOT_FOUND);
        return;
    }
    if (rs_session(r, &cur) < 0) {
        rs_fail(st, op, "redis: malformed session");
        return;
    }
    if (op->ch.if_version > 0 && op->ch.if_version != cur.version) {
        rs_finish(st, op, STORE_VERSION);
        return;
    }
    enum store_status status = rs_update_merge(st, op, &cur);
    if (status != STORE_OK) {
        rs_finish(st, op, status);
        return;
    }
    rs_update_write_args(st, op, cur.version);
    rs_send_new(st, op);
}

static void
rs_on_update_write(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    struct session s;
    if (rs_failed(st, op, r))
        return;
    if (r->type == REDIS_REPLY_ARRAY) {
        if (rs_session(r, &s) < 0)
            rs_fail(st, op, "redis: malformed session");
        else
            rs_answer(st, op, STORE_OK, &s, 1, 0);
    /* A reply of the wrong type and an integer we do not know are both unexpected, tested
     * apart because the integer cases lie between. NOLINTNEXTLINE(bugprone-branch-clone) */
    } else if (r->type != REDIS_REPLY_INTEGER) {
        rs_unexpected(st, op);
    } else if (r->integer == 0) {
        rs_finish(st, op, STORE_NOT_FOUND);
    } else if (r->integer == -2) {
        rs_finish(st, op, STORE_VERSION);
    } else if (r->integer == -1 && op->retries++ < RS_UPDATE_RETRIES) {
        rs_update_read_args(st, op); /* changed since we read it: merge again */
        rs_send_new(st, op);
    } else if (r->integer == -1) {
        rs_fail(st, op, "redis: the session kept changing during the update");
    } else {
        rs_unexpected(st, op);
    }
}

static void
rs_update(void *self, const char *id, int64_t now, const struct store_change *ch, store_cb cb,
          void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_one(st, rs_on_update_read, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    if (!rs_id_ok(id)) {
        rs_later(st, op, STORE_NOT_FOUND);
        return;
    }
    snprintf(op->out.id, sizeof op->out.id, "%s", id);
    op->now = now;
    op->ch = *ch;
    op->ch.patch = NULL;
    if (ch->patch == NULL) {
        rs_update_write_args(st, op, 0);
        rs_submit(st, op);
        return;
    }
    /* Ours: the caller's patch is gone once this returns. */
    if ((op->patch = malloc(ch->patch_len + 1)) == NULL) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        rs_later(st, op, STORE_ERROR);
        return;
    }
    memcpy(op->patch, ch->patch, ch->patch_len);
    op->ch.patch = op->patch;
    rs_update_read_args(st, op);
    rs_submit(st, op);
}

static void
rs_delete(void *self, const char *id, store_cb cb, void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_one(st, rs_on_session, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    if (!rs_id_ok(id)) {
        rs_later(st, op, STORE_NOT_FOUND);
        return;
    }
    rs_script(st, op, RS_DELETE);
    rs_arg_str(op, id);
    rs_submit(st, op);
}

static void
rs_list_user(void *self, const char *user, int64_t now, store_list_cb cb, void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_new(st, RS_LIST_CB, rs_on_list, arg);
    if (op == NULL) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        cb(arg, STORE_ERROR, NULL, 0);
        return;
    }
    op->cb.list = cb;
    if (!rs_user_ok(user)) {
        rs_later(st, op, STORE_OK); /* no such user: an empty list */
        return;
    }
    rs_script(st, op, RS_LIST);
    rs_arg_int(op, now);
    rs_arg_str(op, user);
    rs_arg_int(op, RS_LIST_MAX);
    rs_submit(st, op);
}

static struct rs_op *
rs_op_count(struct redis_store *st, store_count_cb cb, void *arg)
{
    struct rs_op *op = rs_op_new(st, RS_COUNT_CB, rs_on_count, arg);
    if (op != NULL)
        op->cb.count = cb;
    else
        errf(st->error, sizeof st->error, "redis: out of memory");
    return op;
}

static void
rs_delete_user(void *self, const char *user, store_count_cb cb, void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_count(st, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, 0);
        return;
    }
    if (!rs_user_ok(user)) {
        rs_later(st, op, STORE_OK);
        return;
    }
    rs_script(st, op, RS_DELETE_USER);
    rs_arg_str(op, user);
    rs_submit(st, op);
}

static void
rs_count(void *self, store_count_cb cb, void *arg)
{
    struct redis_store *st = self;
    struct rs_op *op = rs_op_count(st, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, 0);
        return;
    }
    rs_script(st, op, RS_COUNT);
    rs_arg_int(op, (long long)time(NULL));
    rs_submit(st, op);
}

static void
rs_on_sweep(struct redis_store *st, struct rs_op *op, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        errf(st->error, sizeof st->error, "redis: sweep: %.*s", (int)r->len, r->str);
        rs_count_failure(st);
    }
    rs_op_free(op);
}

/* Redis expires the sessions' keys itself; the sweep only trims the count's index. It
 * does not wait for the answer, so it reports nothing swept. */
static int
rs_sweep(void *self, int64_t now, int max)
{
    struct redis_store *st = self;
    char key[sizeof st->prefix + 4];
    if (max <= 0 || st->circuit != RS_CLOSED || st->ac == NULL)
        return 0;
    struct rs_op *op = rs_op_new(st, RS_INTERNAL, rs_on_sweep, NULL);
    if (op == NULL)
        return 0;
    snprintf(key, sizeof key, "%sall", st->prefix);
    rs_arg_str(op, "ZREMRANGEBYSCORE");
    rs_arg_str(op, key);
    rs_arg_str(op, "-inf");
    rs_arg_int(op, now);
    rs_send_new(st, op);
    return 0;
}

/* ---- prepare, open, close ---- */

/* The master's check before it forks: the URL only, since Redis may well be down while
 * sessiond starts (it then starts degraded and connects when Redis is back). */
static int
rs_prepare(const struct conf *c, char *err, size_t errlen)
{
    struct redis_url u;
    char msg[256];
    if (redis_url_parse(c->redis_url, &u, msg, sizeof msg) == 0)
        return 0;
    errf(err, errlen, "redis_url: %s", msg);
    return -1;
}

static int
rs_sha1(const char *s, char out[RS_SHA_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL) != 1 || n != RS_SHA_HEX / 2)
        return -1;
    rs_hex(md, n, out);
    return 0;
}

static void
rs_seed(struct redis_store *st)
{
    if (getrandom(&st->rng, sizeof st->rng, GRND_NONBLOCK) != (ssize_t)sizeof st->rng)
        st->rng = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
    st->rng |= 1; /* xorshift never leaves zero */
}

/* Everything that does not touch the network. */
static int
rs_init(struct redis_store *st, const struct conf *c, char *err, size_t errlen)
{
    char msg[256];
    if (redis_url_parse(c->redis_url, &st->url, msg, sizeof msg) < 0) {
        errf(err, errlen, "redis_url: %s", msg);
        return -1;
    }
    for (int i = 0; i < RS_NSCRIPTS; i++) {
        if (rs_sha1(rs_scripts[i], st->sha[i]) < 0) {
            errf(err, errlen, "store redis: cannot compute the scripts' SHA-1");
            return -1;
        }
    }
    if (st->url.is_unix)
        snprintf(st->where, sizeof st->where, "redis %s", st->url.path);
    else if (strchr(st->url.host, ':') != NULL)
        snprintf(st->where, sizeof st->where, "redis [%s]:%d", st->url.host, st->url.port);
    else
        snprintf(st->where, sizeof st->where, "redis %s:%d", st->url.host, st->url.port);
    snprintf(st->prefix, sizeof st->prefix, "%s", c->redis_prefix);
    st->prefix_len = strlen(st->prefix);
    st->timeout_ms = (long long)c->redis_timeout_ms;
    st->timeout = (ev_tstamp)c->redis_timeout_ms / 1000.0;
    st->max_sessions = c->max_sessions;
    st->max_per_user = c->max_sessions_per_user;
    st->max_bytes = (size_t)c->session_max_bytes;
    snprintf(st->cause, sizeof st->cause, "%s: not connected yet", st->where);
    rs_seed(st);
    return 0;
}

/* Never fails because Redis is down: the connection comes when it can, and until then
 * calls answer STORE_UNAVAILABLE. */
static void *
rs_open(const struct conf *c, void *loop, char *err, size_t errlen)
{
    if (loop == NULL) {
        errf(err, errlen, "store redis: needs the worker's event loop");
        return NULL;
    }
    struct redis_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        errf(err, errlen, "store: out of memory");
        return NULL;
    }
    if (rs_init(st, c, err, errlen) < 0) {
        free(st);
        return NULL;
    }
    st->loop = loop;
    st->circuit = RS_CLOSED;
    st->conn = RS_DOWN;
    ev_timer_init(&st->timeout_timer, rs_on_timeout, 0., 0.);
    ev_timer_init(&st->reconnect_timer, rs_on_reconnect_timer, 0., 0.);
    ev_timer_init(&st->circuit_timer, rs_on_circuit_timer, 0., 0.);
    ev_timer_init(&st->later_timer, rs_on_later, 0., 0.);
    rs_connect(st);
    return st;
}

/* Operations still pending are dropped: their callbacks are not called, since close
 * comes when the worker and its connections are going away. Not to be called from inside
 * a store callback. */
static void
rs_close(void *self)
{
    struct redis_store *st = self;
    if (st == NULL)
        return;
    st->closing = true;
    ev_timer_stop(st->loop, &st->timeout_timer);
    ev_timer_stop(st->loop, &st->reconnect_timer);
    ev_timer_stop(st->loop, &st->circuit_timer);
    ev_timer_stop(st->loop, &st->later_timer);
    if (st->ac != NULL) {
        redisAsyncContext *ac = st->ac;
        st->ac = NULL;
        redisAsyncFree(ac); /* each command in flight gets its NULL reply, and is freed */
    }
    while (st->later_head != NULL) {
        struct rs_op *op = st->later_head;
        st->later_head = op->next;
        rs_op_free(op);
    }
    free(st);
}

static void
rs_info(const void *self, struct store_info *out)
{
    const struct redis_store *st = self;
    out->backend = "redis";
    out->healthy = st->circuit == RS_CLOSED && st->conn == RS_READY;
    out->circuit = rs_circuit_name(st->circuit);
}

static const char *
rs_last_error(const void *self)
{
    const struct redis_store *st = self;
    return st->error;
}

const struct store_ops store_redis_ops = {
    .name = "redis",
    .prepare = rs_prepare,
    .open = rs_open,
    .close = rs_close,
    .create = rs_create,
    .get = rs_get,
    .get_by_token = rs_get_by_token,
    .update = rs_update,
    .delete_one = rs_delete,
    .list_user = rs_list_user,
    .delete_user = rs_delete_user,
    .count = rs_count,
    .sweep = rs_sweep,
    .info = rs_info,
    .last_error = rs_last_error,
};
