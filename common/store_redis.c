/* store_redis: the Redis engine (store.c dispatches to it for "store redis").
 *
 * One hiredis async connection per worker, on the worker's libev loop, carries every
 * command, pipelined: hiredis writes each command as it comes and Redis answers in order.
 * Every check-and-write is one Lua script, so that it is atomic across every worker of
 * every instance. The keys, under redis_prefix {p}:
 *   {p}s:{id}         HASH user, th (token hash, hex), c (created), e (expires), ttl,
 *                     v (version), d (data JSON), and only when the session has them,
 *                     ch (channels) and sub (subscribe), each a JSON array: a session
 *                     written before they existed, or without them, reads as none.
 *                     EXPIREAT e, so Redis expires it itself. The id follows from the
 *                     token hash (token.h): no key per token.
 *   {p}u:{user}       ZSET of ids scored by created_at (a user's list, oldest first);
 *                     EXPIREAT the latest e among its sessions
 *   {p}all            ZSET of ids scored by expires_at: the count, trimmed by time
 * Scripts build keys from the prefix they are given, so this runs on one Redis (or a
 * primary with replicas), not on Redis Cluster. Expired sessions are never returned even
 * before Redis has deleted them: the scripts compare e with the caller's now.
 *
 * The connection (common/redis.h) is shared with pub/sub: it logs in, selects the
 * database, loads the scripts, gives every command a deadline (a command without a reply
 * in redis_timeout drops the connection, and every operation in flight then fails with
 * STORE_UNAVAILABLE), reconnects with jittered backoff and keeps the circuit breaker,
 * which opens after REDIS_FAILURES_TO_OPEN consecutive failures or when the connection is
 * lost, so that a Redis outage does not hold requests for redis_timeout each: while it is
 * open, calls fail at once. This file keeps its own list of operations in flight only to
 * free them at close. Each operation is answered exactly once, from the loop, never
 * before the call returns: even a refusal decided at once waits in a queue for the next
 * loop iteration. Nothing here ever ends the process. */
#include "store.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_merge.h"
#include "list.h"
#include "redis.h"
#include "redis_cache.h"
#include "redis_sentinel.h"
#include "redis_url.h"
#include "store_engine.h"
#include "token.h"
#include "util.h"

#define RS_UPDATE_RETRIES 3  /* re-reads when a session changed under an update */
#define RS_LIST_MAX 10000    /* as the LMDB engine */
#define RS_MAX_ARGS 16
#define RS_HASH_HEX (2 * SESSION_HASH_LEN)
/* id, user, th, c, e, ttl, v, d, ch, sub: what the scripts return */
#define RS_SESSION_FIELDS 10

/* ---- the scripts ---- */

/* Shared by every script: ARGV[1] is the prefix. load() returns a live session as
 * {id, user, th, c, e, ttl, v, d, ch, sub} (ch and sub nil when absent); purge() deletes
 * one with its index entries; setf() sets a field, or deletes it when the value is '';
 * extend() keeps a key at least until e. e is compared on the caller's clock (now), and
 * EXPIREAT reads it on Redis's, as extend() does with TIME. */
#define RS_PRELUDE                                                                          \
    "local P = ARGV[1]\n"                                                                   \
    "local ALL = P .. 'all'\n"                                                              \
    "local function skey(id) return P .. 's:' .. id end\n"                                  \
    "local function ukey(u) return P .. 'u:' .. u end\n"                                    \
    "local function load(id, now)\n"                                                        \
    "  local r = redis.call('HMGET', skey(id), 'user', 'th', 'c', 'e', 'ttl', 'v', 'd',\n"  \
    "                       'ch', 'sub')\n"                                                  \
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
    "end\n"                                                                                 \
    "local function setf(k, f, v)\n"                                                        \
    "  if v == '' then redis.call('HDEL', k, f) else redis.call('HSET', k, f, v) end\n"     \
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

    /* ARGV: P, now, id, user, th, c, e, ttl, d, max_per_user, max_sessions, ch, sub
     * ('' for none).
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
    "setf(k, 'ch', ARGV[12])\n"
    "setf(k, 'sub', ARGV[13])\n"
    "redis.call('EXPIREAT', k, e)\n"
    "redis.call('ZADD', uk, ARGV[6], id)\n"
    "redis.call('ZADD', ALL, e, id)\n"
    "redis.call('EXPIREAT', uk, last)\n"
    "return 0\n",

    /* ARGV: P, now, id, version read ('' = any), if_version ('0' = none), ttl (0 = keep),
     * touch (the time it runs from, '0' for none), has data ('1' or '0'), data, has ch ('1' or '0'), ch ('' =
     * none), has sub, sub. The whole change where it can be made here (a touch, a ttl,
     * channels and subscribe, which are replaced whole), a compare-and-set for data the
     * caller merged from the version it read. Returns the session as it is now, or 0
     * (gone or expired), -1 (it changed since the caller read it), -2 (it is not at
     * if_version). A data, ttl, channels or subscribe change makes a new version; a touch
     * alone does not. */
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
    "if ARGV[7] ~= '0' then e = tonumber(ARGV[7]) + ttl end\n"
    "local v = tonumber(f[1])\n"
    "if ARGV[8] == '1' or nttl > 0 or ARGV[10] == '1' or ARGV[12] == '1' then v = v + 1 end\n"
    "local es = string.format('%d', e)\n"
    "redis.call('HSET', k, 'v', string.format('%d', v), 'e', es, 'ttl', string.format('%d', ttl))\n"
    "if ARGV[8] == '1' then redis.call('HSET', k, 'd', ARGV[9]) end\n"
    "if ARGV[10] == '1' then setf(k, 'ch', ARGV[11]) end\n"
    "if ARGV[12] == '1' then setf(k, 'sub', ARGV[13]) end\n"
    "if es ~= f[2] then\n"
    "  redis.call('EXPIREAT', k, es)\n"
    "  redis.call('ZADD', ALL, es, id)\n"
    "  extend(ukey(f[3]), e)\n"
    "end\n"
    "return load(id, now)\n",

    /* ARGV: P, id, if_version ('0' = any). Returns the deleted session (expired or not,
     * as the LMDB engine), so that the caller learns its user; nil; or -2 (it is not at
     * if_version). */
    [RS_DELETE] = RS_PRELUDE
    "local id = ARGV[2]\n"
    "local r = redis.call('HMGET', skey(id), 'user', 'th', 'c', 'e', 'ttl', 'v', 'd', 'ch',\n"
    "                     'sub')\n"
    "if not r[1] then return nil end\n"
    "if ARGV[3] ~= '0' and r[6] ~= ARGV[3] then return -2 end\n"
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

    /* ARGV: P, now, user, max, after_created ('' = from the first), after_id. A page of
     * the user's live sessions, oldest first (the zset orders by created_at, then by the
     * id's bytes, as the LMDB index does). Ids are compared byte by byte: Lua's < on
     * strings follows the server's locale. */
    [RS_LIST] = RS_PRELUDE
    "local now, user, max, out = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), {}\n"
    "local ac, aid = tonumber(ARGV[5]), ARGV[6]\n"
    "local function after(sid, c)\n"
    "  if not ac or c > ac then return true end\n"
    "  if c < ac then return false end\n"
    "  for i = 1, math.min(#sid, #aid) do\n"
    "    local x, y = sid:byte(i), aid:byte(i)\n"
    "    if x ~= y then return x > y end\n"
    "  end\n"
    "  return #sid > #aid\n"
    "end\n"
    "local z = redis.call('ZRANGEBYSCORE', ukey(user), ac or '-inf', '+inf', 'WITHSCORES')\n"
    "for i = 1, #z, 2 do\n"
    "  local sid = z[i]\n"
    "  if after(sid, tonumber(z[i + 1])) then\n"
    "    local s = load(sid, now)\n"
    "    if s and s[2] == user then\n"
    "      out[#out + 1] = s\n"
    "      if #out >= max then break end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n",

    /* ARGV: P, now. */
    [RS_COUNT] = RS_PRELUDE
    "redis.call('ZREMRANGEBYSCORE', ALL, '-inf', ARGV[2])\n"
    "return redis.call('ZCARD', ALL)\n",
};

/* ---- state ---- */

enum rs_kind { RS_INTERNAL, RS_ONE, RS_LIST_CB, RS_COUNT_CB };

struct redis_store;
struct rs_op;

/* What to do with a reply (never NULL, never NOSCRIPT: redis.c and rs_on_reply deal
 * with those). */
typedef void (*rs_reply_fn)(struct redis_store *st, struct rs_op *op, const redisReply *r);

/* One operation: a caller's (answered through its callback exactly once) or one of ours
 * (the sweep). It has at most one command in flight at a time. */
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
    /* The command: argv points into mem once sealed; a script's arguments follow the
     * script (redis_eval adds EVALSHA, its SHA and the number of keys). */
    int script; /* enum rs_script, or -1 */
    bool bad;
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
    char *grants; /* create: out.channels and out.subscribe; update: ch's */
    /* get and update */
    int64_t now;
    bool by_token; /* a get by token: out.token_hash is the hash the session must have */
    bool may_cache;         /* a get that the cache may answer (store_get_cached) */
    bool cached;            /* a get the cache held: answered from it at the next iteration */
    struct store_change ch; /* ch.patch points to patch, ch.channels and ch.subscribe
                             * into grants: ours */
    char *patch;
    int retries;
};

struct redis_store {
    struct ev_loop *loop;
    char prefix[sizeof ((struct conf *)0)->redis_prefix];
    size_t prefix_len;
    int64_t max_sessions;
    int max_per_user;
    size_t max_bytes;
    int wait; /* redis_wait: replicas a session write must reach */
    struct redis_script scripts[RS_NSCRIPTS];
    const struct redis_script *script_list[RS_NSCRIPTS];

    struct redis_conn *rc;
    struct redis_cache *cache; /* redis_cache_sessions > 0: sessions read, while tracked */
    bool closing; /* store_close: answer nothing more */

    struct rs_op *head, *tail;             /* in flight, for rs_close to free */
    struct rs_op *later_head, *later_tail; /* answered at the next loop iteration */
    ev_timer later_timer;

    char error[640]; /* store_last_error */
};

/* ---- small helpers ---- */

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

/* An optional string field (ch, sub): nil (absent, as in sessions written before the
 * field existed) is none. */
static int
rs_opt_str(const redisReply *r, const char **p, size_t *len)
{
    if (r->type == REDIS_REPLY_NIL) {
        *p = NULL;
        *len = 0;
        return 0;
    }
    if (r->type != REDIS_REPLY_STRING)
        return -1;
    *p = r->str;
    *len = r->len;
    return 0;
}

/* The nine fields after the id (user, th, c, e, ttl, v, d, ch, sub), as HMGET and the
 * scripts' load() return them, into s. */
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
        e[6]->type != REDIS_REPLY_STRING ||
        rs_opt_str(e[7], &s->channels, &s->channels_len) < 0 ||
        rs_opt_str(e[8], &s->subscribe, &s->subscribe_len) < 0)
        return -1;
    s->version = (uint64_t)v;
    s->data = e[6]->str;
    s->data_len = e[6]->len;
    return 0;
}

/* A session as the scripts return it: {id, user, th, c, e, ttl, v, d, ch, sub}. s->data,
 * s->channels and s->subscribe point into r. */
static int
rs_session(const redisReply *r, struct session *s)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != RS_SESSION_FIELDS ||
        rs_str(r->element[0], s->id, SESSION_ID_LEN) < 0)
        return -1;
    return rs_session_fields(r->element + 1, s->id, s);
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
    free(op->grants);
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

/* Start a script call: the prefix, then the script's own arguments. */
static void
rs_script(struct redis_store *st, struct rs_op *op, enum rs_script sc)
{
    op->argc = 0;
    op->mem_len = 0;
    op->script = (int)sc;
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
             redis_circuit_name(redis_circuit(st->rc)), redis_cause(st->rc));
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

static void rs_answer_cached(struct redis_store *st, struct rs_op *op);

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
        if (op->cached)
            rs_answer_cached(st, op);
        else
            rs_finish(st, op, op->status);
        op = next;
    }
}

/* ---- commands in flight ---- */

static void rs_on_reply(void *arg, const redisReply *r);

/* Hand the op's command to the connection. Returns false, with the op answered
 * STORE_UNAVAILABLE at the next iteration, if there is no connection to send it on. */
static bool
rs_send(struct redis_store *st, struct rs_op *op)
{
    /* The scripts that change sessions are acknowledged once on redis_wait replicas. */
    bool write = op->script == RS_CREATE || op->script == RS_UPDATE ||
                 op->script == RS_DELETE || op->script == RS_DELETE_USER;
    int rc = op->script >= 0
                 ? redis_eval_replicated(st->rc, &st->scripts[op->script], write ? st->wait : 0,
                                         rs_on_reply, op, 0, op->argc, op->argv, op->argvlen)
                 : redis_command(st->rc, rs_on_reply, op, op->argc, op->argv, op->argvlen);
    if (rc < 0) {
        rs_later(st, op, STORE_UNAVAILABLE);
        return false;
    }
    LIST_APPEND(st->head, st->tail, op);
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
    if (redis_circuit(st->rc) != REDIS_CLOSED) {
        rs_later(st, op, STORE_UNAVAILABLE);
        return;
    }
    rs_send_new(st, op);
}

/* A write of this worker is answered (or lost): the cache forgets what it wrote, so that
 * this worker's next read sees the write even before Redis's invalidation comes. Reads
 * sent before the write were answered before it (one connection, in order). */
static void
rs_cache_written(struct redis_store *st, const struct rs_op *op)
{
    if (st->cache == NULL) return;
    if (op->script == RS_DELETE_USER)
        redis_cache_drop(st->cache, NULL);
    else if (op->script == RS_UPDATE || op->script == RS_DELETE)
        redis_cache_drop(st->cache, op->out.id);
}

/* Every reply comes here, arg being its op. NULL means the connection went away (or the
 * deadline passed): whatever the op was, it is answered STORE_UNAVAILABLE, once. */
static void
rs_on_reply(void *arg, const redisReply *r)
{
    struct rs_op *op = arg;
    struct redis_store *st = op->st;
    LIST_UNLINK_TAIL(st->head, st->tail, op);
    rs_cache_written(st, op);
    if (r == NULL)
        rs_finish(st, op, STORE_UNAVAILABLE);
    else
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

/* An error reply: answered (redis.c counts it towards the circuit); true if r was one. */
static bool
rs_failed(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR)
        return false;
    enum store_status status = rs_error_status(r);
    errf(st->error, sizeof st->error, "redis: %.*s", (int)r->len, r->str);
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
rs_on_session(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    struct session s;
    if (rs_failed(st, op, r))
        return;
    if (r->type == REDIS_REPLY_NIL)
        rs_finish(st, op, STORE_NOT_FOUND);
    else if (r->type == REDIS_REPLY_INTEGER && r->integer == -2)
        rs_finish(st, op, STORE_VERSION);
    else if (rs_session(r, &s) < 0)
        rs_fail(st, op, "redis: malformed session");
    else
        rs_answer(st, op, STORE_OK, &s, 1, 0);
}

static void
rs_on_count(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    if (rs_failed(st, op, r))
        return;
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        rs_unexpected(st, op);
    else
        rs_answer(st, op, STORE_OK, NULL, 0, (uint64_t)r->integer);
}

static void
rs_on_list(struct redis_store *st, struct rs_op *op, const redisReply *r)
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
rs_on_create(struct redis_store *st, struct rs_op *op, const redisReply *r)
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

/* Channels and subscribe as the caller gives them: the LMDB engine's bounds, so that the
 * engines take the same sessions. NULL, or why not. */
static const char *
rs_grants_check(const char *channels, size_t channels_len, const char *subscribe,
                size_t subscribe_len)
{
    if (channels_len > STORE_GRANTS_MAX || subscribe_len > STORE_GRANTS_MAX)
        return "channels, subscribe: at most 16384 bytes each";
    if ((channels == NULL && channels_len > 0) || (subscribe == NULL && subscribe_len > 0))
        return "channels, subscribe: NULL with a length";
    return NULL;
}

/* Copy channels and subscribe into one block of op's (op->grants), pointing *c and *sub
 * at their copies. Returns 0, or -1 (out of memory). */
static int
rs_grants_copy(struct rs_op *op, const char **c, size_t clen, const char **sub, size_t slen)
{
    char *p = op->grants = malloc(clen + slen + 1);
    if (p == NULL)
        return -1;
    if (clen > 0)
        memcpy(p, *c, clen);
    if (slen > 0)
        memcpy(p + clen, *sub, slen);
    *c = p;
    *sub = p + clen;
    return 0;
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
    else
        why = rs_grants_check(s->channels, s->channels_len, s->subscribe, s->subscribe_len);
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
    op->out = *s;
    if (status == STORE_OK &&
        ((op->data = malloc(s->data_len + 1)) == NULL ||
         rs_grants_copy(op, &op->out.channels, s->channels_len, &op->out.subscribe,
                        s->subscribe_len) < 0)) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        status = STORE_ERROR;
    }
    if (status != STORE_OK) {
        rs_later(st, op, status);
        return;
    }
    if (s->data_len > 0)
        memcpy(op->data, s->data, s->data_len);
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
    rs_arg(op, op->out.channels, op->out.channels_len);
    rs_arg(op, op->out.subscribe, op->out.subscribe_len);
    rs_submit(st, op);
}

/* The answer to a get, from Redis or from the cache: the expiry (Redis may not have
 * expired the key yet) and, for a get by token, the whole hash checked. */
static void
rs_answer_get(struct redis_store *st, struct rs_op *op, const struct session *s)
{
    bool gone = s->expires_at <= op->now ||
                (op->by_token && !token_equal(s->token_hash, SESSION_HASH_LEN, op->out.token_hash,
                                              SESSION_HASH_LEN));
    if (gone)
        rs_finish(st, op, STORE_NOT_FOUND);
    else
        rs_answer(st, op, STORE_OK, s, 1, 0);
}

/* A read by id or token is the hot path and needs no atomicity beyond one command's: a
 * plain HMGET costs Redis a fraction of a script call, and the expiry check (and for a
 * token the comparison of the whole hash) moves here. */
static void
rs_on_get(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    struct session s = {0}; /* (cppcheck cannot tell that only s.id's address is read) */
    bool shaped = r->type == REDIS_REPLY_ARRAY && r->elements == RS_SESSION_FIELDS - 1;
    bool found = shaped && r->element[3]->type != REDIS_REPLY_NIL;
    bool parsed = found && rs_session_fields(r->element, op->out.id, &s) == 0;
    if (st->cache != NULL && parsed)
        redis_cache_fill(st->cache, &s);
    else if (st->cache != NULL)
        redis_cache_drop(st->cache, op->out.id); /* no session to keep: the announcement goes */
    if (rs_failed(st, op, r))
        return;
    if (!shaped)
        rs_unexpected(st, op);
    else if (!found)
        rs_finish(st, op, STORE_NOT_FOUND);
    else if (!parsed)
        rs_fail(st, op, "redis: malformed session");
    else
        rs_answer_get(st, op, &s);
}

/* HMGET of op->out.id, announced to the cache when it goes out now. */
static void
rs_hmget_send(struct redis_store *st, struct rs_op *op)
{
    op->argc = 0;
    op->mem_len = 0;
    rs_arg_str(op, "HMGET");
    char key[sizeof st->prefix + SESSION_ID_LEN + 3];
    int n = snprintf(key, sizeof key, "%.*ss:%s", (int)st->prefix_len, st->prefix, op->out.id);
    rs_arg(op, key, (size_t)n);
    static const char *const fields[] = {"user", "th", "c", "e", "ttl", "v", "d", "ch", "sub"};
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        rs_arg_str(op, fields[i]);
    if (st->cache != NULL && redis_circuit(st->rc) == REDIS_CLOSED && redis_ready(st->rc))
        redis_cache_expect(st->cache, op->out.id);
    rs_submit(st, op);
}

/* A get the cache held at the call: answered from it if it still holds it (it was asked
 * again, since an invalidation may have come in between), else from Redis after all. */
static void
rs_answer_cached(struct redis_store *st, struct rs_op *op)
{
    op->cached = false;
    const struct session *s = redis_cache_find(st->cache, op->out.id);
    if (s != NULL)
        rs_answer_get(st, op, s);
    else
        rs_hmget_send(st, op);
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
    /* A hit is still answered at the next iteration, never before this call returns. */
    if (op->may_cache && st->cache != NULL && redis_cache_find(st->cache, id) != NULL) {
        op->cached = true;
        rs_later(st, op, STORE_OK);
        return;
    }
    rs_hmget_send(st, op);
}

static void
rs_get_one(struct redis_store *st, const char *id, int64_t now, bool may_cache, store_cb cb,
           void *arg)
{
    struct rs_op *op = rs_op_one(st, rs_on_get, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    op->may_cache = may_cache;
    rs_hmget(st, op, id, now);
}

static void
rs_get_by_token_one(struct redis_store *st, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                    bool may_cache, store_cb cb, void *arg)
{
    char id[SESSION_ID_LEN + 1];
    struct rs_op *op = rs_op_one(st, rs_on_get, cb, arg);
    if (op == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    op->by_token = true;
    op->may_cache = may_cache;
    memcpy(op->out.token_hash, hash, SESSION_HASH_LEN);
    token_id_of_hash(hash, id);
    rs_hmget(st, op, id, now);
}

static void
rs_get(void *self, const char *id, int64_t now, store_cb cb, void *arg)
{
    rs_get_one(self, id, now, false, cb, arg);
}

static void
rs_get_cached(void *self, const char *id, int64_t now, store_cb cb, void *arg)
{
    rs_get_one(self, id, now, true, cb, arg);
}

static void
rs_get_by_token(void *self, const uint8_t hash[SESSION_HASH_LEN], int64_t now, store_cb cb,
                void *arg)
{
    rs_get_by_token_one(self, hash, now, false, cb, arg);
}

static void
rs_get_by_token_cached(void *self, const uint8_t hash[SESSION_HASH_LEN], int64_t now, store_cb cb,
                       void *arg)
{
    rs_get_by_token_one(self, hash, now, true, cb, arg);
}

/* ---- update ---- */

/* A touch or a new ttl is one script, atomic in Redis, without a read first (session_rolling
 * touches often, and concurrent touches of one session must not fail). A data patch is
 * merged here (json_merge keeps numbers as the client wrote them, which Lua's cjson would
 * not), so it reads the session, merges, and writes with a compare-and-set on the version
 * it read, reading again when another change came in between. */

static void rs_on_update_read(struct redis_store *st, struct rs_op *op, const redisReply *r);
static void rs_on_update_write(struct redis_store *st, struct rs_op *op, const redisReply *r);

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
    if (op->ch.touch)
        rs_arg_int(op, op->ch.touch_from > 0 ? op->ch.touch_from : op->now);
    else
        rs_arg_str(op, "0");
    rs_arg_str(op, op->data != NULL ? "1" : "0");
    rs_arg(op, op->data, op->data != NULL ? op->data_len : 0);
    rs_arg_str(op, op->ch.set_channels ? "1" : "0");
    rs_arg(op, op->ch.channels, op->ch.set_channels ? op->ch.channels_len : 0);
    rs_arg_str(op, op->ch.set_subscribe ? "1" : "0");
    rs_arg(op, op->ch.subscribe, op->ch.set_subscribe ? op->ch.subscribe_len : 0);
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
rs_on_update_read(struct redis_store *st, struct rs_op *op, const redisReply *r)
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
rs_on_update_write(struct redis_store *st, struct rs_op *op, const redisReply *r)
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
    if (!ch->set_channels)
        op->ch.channels = NULL, op->ch.channels_len = 0;
    if (!ch->set_subscribe)
        op->ch.subscribe = NULL, op->ch.subscribe_len = 0;
    const char *why = rs_grants_check(op->ch.channels, op->ch.channels_len,
                                      op->ch.subscribe, op->ch.subscribe_len);
    if (why != NULL) {
        errf(st->error, sizeof st->error, "%s", why);
        rs_later(st, op, STORE_ERROR);
        return;
    }
    /* Ours: the caller's channels and subscribe are gone once this returns. */
    if (rs_grants_copy(op, &op->ch.channels, op->ch.channels_len, &op->ch.subscribe,
                       op->ch.subscribe_len) < 0) {
        errf(st->error, sizeof st->error, "redis: out of memory");
        rs_later(st, op, STORE_ERROR);
        return;
    }
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
rs_delete(void *self, const char *id, uint64_t if_version, store_cb cb, void *arg)
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
    snprintf(op->out.id, sizeof op->out.id, "%s", id); /* for the cache to forget */
    rs_script(st, op, RS_DELETE);
    rs_arg_str(op, id);
    rs_arg_int(op, (long long)if_version);
    rs_submit(st, op);
}

static void
rs_list_user(void *self, const char *user, int64_t now, const struct store_page *page,
             store_list_cb cb, void *arg)
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
    rs_arg_int(op, (long long)(page->limit < RS_LIST_MAX ? page->limit : RS_LIST_MAX));
    if (page->after_id[0] != '\0')
        rs_arg_int(op, page->after_created);
    else
        rs_arg_str(op, "");
    rs_arg_str(op, page->after_id);
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
rs_on_sweep(struct redis_store *st, struct rs_op *op, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR)
        errf(st->error, sizeof st->error, "redis: sweep: %.*s", (int)r->len, r->str);
    rs_op_free(op);
}

/* Redis expires the sessions' keys itself; the sweep only trims the count's index. It
 * does not wait for the answer, so it reports nothing swept. */
static int
rs_sweep(void *self, int64_t now, int max)
{
    struct redis_store *st = self;
    char key[sizeof st->prefix + 4];
    if (max <= 0 || redis_circuit(st->rc) != REDIS_CLOSED || !redis_ready(st->rc))
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

/* The master's check before it forks: the URL, and for rediss:// the TLS files, which
 * become the context the workers inherit. Not Redis itself, which may well be down while
 * sessiond starts (it then starts degraded and connects when Redis is back). */
static int
rs_prepare(const struct conf *c, char *err, size_t errlen)
{
    struct redis_url u;
    char msg[256];
    if (redis_url_parse(c->redis_url, &u, msg, sizeof msg) < 0) {
        errf(err, errlen, "redis_url: %s", msg);
        return -1;
    }
    if (u.tls &&
        redis_tls_setup(c->redis_tls_ca, c->redis_tls_cert, c->redis_tls_key, err, errlen) < 0)
        return -1;
    return redis_sentinel_setup(c->redis_sentinels, c->redis_master, u.tls, err, errlen);
}

/* Everything that does not touch the network. */
static int
rs_init(struct redis_store *st, const struct conf *c, char *err, size_t errlen)
{
    for (int i = 0; i < RS_NSCRIPTS; i++) {
        if (redis_script_init(&st->scripts[i], rs_scripts[i], err, errlen) < 0)
            return -1;
        st->script_list[i] = &st->scripts[i];
    }
    snprintf(st->prefix, sizeof st->prefix, "%s", c->redis_prefix);
    st->prefix_len = strlen(st->prefix);
    st->max_sessions = c->max_sessions;
    st->max_per_user = c->max_sessions_per_user;
    st->max_bytes = (size_t)c->session_max_bytes;
    st->wait = c->redis_wait;
    return 0;
}

/* After every handshake of the store's connection: Redis forgot what the old one read. */
static void
rs_on_ready(void *arg)
{
    struct redis_store *st = arg;
    if (st->cache != NULL) redis_cache_store_ready(st->cache);
}

/* redis_cache_sessions: the cache, with its own subscriber connection. */
static int
rs_open_cache(struct redis_store *st, const struct conf *c, const struct redis_url *url, char *err,
              size_t errlen)
{
    if (c->redis_cache_sessions <= 0) return 0;
    st->cache = redis_cache_open(st->loop, url, (double)c->redis_timeout_ms / 1000.0,
                                 (size_t)c->redis_cache_sessions, st->prefix, err, errlen);
    if (st->cache == NULL) return -1;
    redis_cache_attach(st->cache, st->rc);
    return 0;
}

/* Never fails because Redis is down: the connection comes when it can, and until then
 * calls answer STORE_UNAVAILABLE. */
static void *
rs_open(const struct conf *c, void *loop, char *err, size_t errlen)
{
    struct redis_url url;
    char msg[256];
    if (loop == NULL) {
        errf(err, errlen, "store redis: needs the worker's event loop");
        return NULL;
    }
    if (redis_url_parse(c->redis_url, &url, msg, sizeof msg) < 0) {
        errf(err, errlen, "redis_url: %s", msg);
        return NULL;
    }
    struct redis_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        errf(err, errlen, "store: out of memory");
        return NULL;
    }
    st->loop = loop;
    ev_timer_init(&st->later_timer, rs_on_later, 0., 0.);
    struct redis_opts opts = {.timeout = (double)c->redis_timeout_ms / 1000.0,
                              .circuit = true,
                              .scripts = st->script_list,
                              .nscripts = RS_NSCRIPTS,
                              .on_ready = rs_on_ready,
                              .arg = st};
    if (rs_init(st, c, err, errlen) < 0 ||
        (st->rc = redis_open(loop, &url, &opts, err, errlen)) == NULL) {
        free(st);
        return NULL;
    }
    if (rs_open_cache(st, c, &url, err, errlen) < 0) {
        redis_close(st->rc);
        free(st);
        return NULL;
    }
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
    ev_timer_stop(st->loop, &st->later_timer);
    redis_close(st->rc); /* calls no callback of ours */
    redis_cache_close(st->cache); /* after: the store's connection calls back into it */
    for (struct rs_op *op = st->head, *next; op != NULL; op = next) {
        next = op->next;
        rs_op_free(op);
    }
    st->head = st->tail = NULL;
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
    out->healthy = redis_circuit(st->rc) == REDIS_CLOSED && redis_ready(st->rc);
    out->circuit = redis_circuit_name(redis_circuit(st->rc));
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
    .get_cached = rs_get_cached,
    .get_by_token_cached = rs_get_by_token_cached,
    .update = rs_update,
    .delete_one = rs_delete,
    .list_user = rs_list_user,
    .delete_user = rs_delete_user,
    .count = rs_count,
    .sweep = rs_sweep,
    .info = rs_info,
    .last_error = rs_last_error,
};
