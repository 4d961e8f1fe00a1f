/* store_lmdb: the embedded engine, on LMDB (store.c dispatches to it for store lmdb).
 *
 * One memory-mapped file (store_path, with store_path-lock beside it) shared by every
 * worker. LMDB gives what the store promises: a commit is all or nothing, readers never
 * block the writer, and the kill -9 of any process at any moment leaves the file intact
 * (copy-on-write pages, a robust writer mutex, reader slots cleared by mdb_reader_check).
 *
 * Three named databases:
 *   sessions  id -> record: a fixed header (below), the user and data bytes, then, only
 *             when the session has channels or subscribe, the grants tail (below); the id
 *             follows from the token hash (token.h), so no index of tokens
 *   users     user -> created_at (8 bytes big-endian) + id, sorted duplicates, so that a
 *             cursor lists a user's sessions oldest first
 *   expiry    expires_at (8 bytes big-endian) + id -> empty, so that the sweep finds the
 *             expired sessions at the front
 * Every operation is one transaction, so the indexes never disagree with the records. */
#include "store.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "json_merge.h"
#include "log.h"
#include "store_engine.h"
#include "store_lmdb_rec.h"
#include "token.h"

#define LMDB_SESSION_OVERHEAD 512 /* bytes of records and index entries per session */
#define LMDB_MIN_MAP ((size_t)1024 * 1024)
#define LMDB_MAX_READERS 512      /* 64 workers, each with a read txn or two, and room */
#define LMDB_RECLAIM 64           /* expired sessions a create may delete to make room */
/* Pages a write may take past the last one in use, for the disk reservation below: each
 * of the three trees may copy and split a path of at most 8 pages; a delete copies one
 * path per tree. Commit writes the free list and the meta page too. */
#define LMDB_TREE_PAGES 48
#define LMDB_DELETE_PAGES 24
#define LMDB_TXN_PAGES 64
/* A transaction of creates may reclaim expired sessions: up to LMDB_RECLAIM at a time,
 * and with at most LMDB_FLUSH_MAX creates, at most twice. */
#define LMDB_RECLAIM_PAGES ((size_t)2 * LMDB_RECLAIM * LMDB_DELETE_PAGES)
#define LMDB_RESERVE_CHUNK ((off_t)16 << 20) /* grow the reservation this much at a time */
#define LMDB_FLUSH_MAX 64         /* queued creates per transaction */
#define LMDB_LIST_MAX 10000
#define LMDB_TIME_KEY (8 + SESSION_ID_LEN)

struct lmdb_queued; /* a write waiting for the group commit (below) */

struct lmdb_store {
    MDB_env *env;
    /* Group commit: with a loop, the writes of one loop iteration (creates, updates,
     * deletes) share one write transaction, committed (and with store_sync, flushed to
     * disk) before the loop waits again. Under load that takes the cross-process write
     * lock, and pays the fsync, once per iteration instead of once per request. */
    struct ev_loop *loop;
    ev_prepare flush;
    struct lmdb_queued *queue, **queue_tail;
    MDB_dbi sessions, users, expiry;
    MDB_txn *rtxn;   /* the read transaction, reset between operations and renewed */
    bool rtxn_busy;  /* rtxn is in use: a callback is running and may call us again */
    int64_t max_sessions;
    int max_per_user;
    size_t max_bytes;
    bool healthy;
    unsigned fails; /* LMDB failures so far: one during a write breaks its transaction */
    char error[256];
    /* The disk reservation (see lmdb_reserve): the data file, its page size, the map,
     * and how far this process has made sure blocks are allocated. */
    int fd;
    size_t psize;
    off_t map, reserved;
    size_t create_pages; /* one create or update, without reclaiming */
};

typedef enum store_status (*lmdb_body)(struct lmdb_store *st, MDB_txn *txn, void *ctx);

/* ---- encoding ---- */

static MDB_val
lmdb_val(const void *p, size_t n)
{
    MDB_val v = {.mv_size = n, .mv_data = (void *)p};
    return v;
}

static void
lmdb_put_be64(char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--, u >>= 8)
        p[i] = (char)(u & 0xff);
}

static int64_t
lmdb_get_be64(const char *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | (unsigned char)p[i];
    return (int64_t)u;
}

/* Copy n bytes of src to *p, advancing it; returns where they went. */
static const char *
lmdb_copy(char **p, const char *src, size_t n)
{
    char *at = *p;
    if (n > 0)
        memcpy(at, src, n);
    *p += n;
    return at;
}

/* A users value or an expiry key: the time, big-endian so that byte order is time order,
 * then the id. Returns its length. */
static size_t
lmdb_time_key(char out[LMDB_TIME_KEY], int64_t t, const char *id, size_t id_len)
{
    lmdb_put_be64(out, t);
    memcpy(out + 8, id, id_len);
    return 8 + id_len;
}

static bool
lmdb_id_ok(size_t id_len)
{
    return id_len >= 1 && id_len <= SESSION_ID_LEN;
}

/* ---- errors and transactions ---- */

/* An LMDB failure: a full map is an answer (STORE_FULL), anything else is a fault that
 * marks the store unhealthy until an operation succeeds. */
static enum store_status
lmdb_fail(struct lmdb_store *st, int rc, const char *what)
{
    errf(st->error, sizeof st->error, "%s: %s", what, mdb_strerror(rc));
    st->fails++;
    if (rc == MDB_MAP_FULL)
        return STORE_FULL;
    st->healthy = false;
    return STORE_ERROR;
}

/* A refusal that is the caller's doing (a duplicate id, a malformed argument): an error,
 * but no sign that the store is unwell. */
static enum store_status
lmdb_refuse(struct lmdb_store *st, const char *why)
{
    errf(st->error, sizeof st->error, "%s", why);
    return STORE_ERROR;
}

static int
lmdb_begin(struct lmdb_store *st, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(st->env, NULL, flags, txn);
    /* Another process grew the map (it runs a newer config): adopt its size. Remapping
     * is only allowed while no read of ours is in progress. */
    if (rc == MDB_MAP_RESIZED && !st->rtxn_busy) {
        rc = mdb_env_set_mapsize(st->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(st->env, NULL, flags, txn);
    }
    return rc;
}

/* The reusable read transaction; renewing it costs far less than a new one. A call made
 * from inside a callback finds it busy and gets a transaction of its own. */
static int
lmdb_read_begin(struct lmdb_store *st, MDB_txn **txn)
{
    if (st->rtxn_busy)
        return lmdb_begin(st, MDB_RDONLY, txn);
    if (st->rtxn != NULL && mdb_txn_renew(st->rtxn) != 0) {
        mdb_txn_abort(st->rtxn);
        st->rtxn = NULL;
    }
    if (st->rtxn == NULL) {
        int rc = lmdb_begin(st, MDB_RDONLY, &st->rtxn);
        if (rc != 0) {
            st->rtxn = NULL;
            return rc;
        }
    }
    st->rtxn_busy = true;
    *txn = st->rtxn;
    return 0;
}

static void
lmdb_read_end(struct lmdb_store *st, MDB_txn *txn)
{
    if (txn == st->rtxn) {
        mdb_txn_reset(txn);
        st->rtxn_busy = false;
    } else {
        mdb_txn_abort(txn);
    }
}

/* With MDB_WRITEMAP a write transaction stores its new pages straight into the shared
 * mapping. Were the file's blocks behind them not allocated (the file is sparse) and the
 * disk full, that store would be a SIGBUS killing the worker, and the next one, and so
 * on. So, holding the write lock and before writing, make sure blocks are allocated for
 * every page the transaction could take (pages, a bound) past the last page in use: a
 * full disk then fails fallocate, and the write is refused cleanly while reads go on.
 * Allocated blocks are never given back, so the check only calls the kernel when the
 * store grows past this process's reservation, which grows 16 MiB at a time. */
static enum store_status
lmdb_reserve(struct lmdb_store *st, size_t pages)
{
    MDB_envinfo info;
    if (st->reserved >= st->map || mdb_env_info(st->env, &info) != 0)
        return STORE_OK;
    off_t need = (off_t)((info.me_last_pgno + 1 + pages + LMDB_TXN_PAGES) * st->psize);
    if (need > st->map)
        need = st->map;
    if (need <= st->reserved)
        return STORE_OK;
    off_t ahead = need + (st->reserved / 8 > LMDB_RESERVE_CHUNK ? st->reserved / 8
                                                                  : LMDB_RESERVE_CHUNK);
    if (ahead > st->map)
        ahead = st->map;
    if (fallocate(st->fd, 0, 0, ahead) == 0) {
        st->reserved = ahead;
        return STORE_OK;
    }
    if (errno == ENOSPC && ahead > need && fallocate(st->fd, 0, 0, need) == 0) {
        st->reserved = need; /* room for this write, not for the chunk ahead */
        return STORE_OK;
    }
    if (errno == EOPNOTSUPP || errno == ENOSYS) {
        /* A file system without fallocate: nothing to guard with; say so, once (the
         * whole map counts as reserved from now on). */
        log_warnx("store_path: fallocate: %s; a full disk may crash workers", strerror(errno));
        st->reserved = st->map;
        return STORE_OK;
    }
    errf(st->error, sizeof st->error, "%s (fallocate: %s)",
         errno == ENOSPC ? "the disk of the store is full" : "the store's disk refuses writes",
         strerror(errno));
    st->healthy = false;
    return STORE_NO_SPACE;
}

/* Run body in one write transaction that may take up to pages new pages: commit if it
 * returns STORE_OK, else write nothing. */
static enum store_status
lmdb_write(struct lmdb_store *st, lmdb_body body, void *ctx, size_t pages)
{
    MDB_txn *txn;
    int rc = lmdb_begin(st, 0, &txn);
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_txn_begin");
    enum store_status status = lmdb_reserve(st, pages);
    if (status != STORE_OK) {
        mdb_txn_abort(txn);
        return status;
    }
    status = body(st, txn, ctx);
    if (status != STORE_OK) {
        mdb_txn_abort(txn);
        return status;
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? STORE_OK : lmdb_fail(st, rc, "mdb_txn_commit");
}

/* ---- records and their indexes ---- */

/* The record of id, expired or not. */
static enum store_status
lmdb_find(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len, struct lmdb_rec *r)
{
    if (!lmdb_id_ok(id_len))
        return STORE_NOT_FOUND;
    MDB_val key = lmdb_val(id, id_len), val;
    int rc = mdb_get(txn, st->sessions, &key, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_get sessions");
    if (lmdb_rec_decode(val.mv_data, val.mv_size, r) != 0) {
        st->healthy = false;
        errf(st->error, sizeof st->error, "session %.*s: malformed record", (int)id_len,
                   id);
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* The live session of id as s, pointing into txn's memory. */
static enum store_status
lmdb_load(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len, int64_t now,
          struct session *s)
{
    struct lmdb_rec r;
    enum store_status status = lmdb_find(st, txn, id, id_len, &r);
    if (status != STORE_OK)
        return status;
    /* STORE_OK means r is filled; the analyzer, not inlining lmdb_fail this deep, thinks it
     * may return OK. NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
    if (r.expires_at <= now)
        return STORE_NOT_FOUND;
    lmdb_rec_to_session(id, id_len, &r, s);
    return STORE_OK;
}

/* Write r as the record of id. With MDB_RESERVE, LMDB hands us the space in its page and
 * we fill it, which saves a copy. */
static enum store_status
lmdb_put_rec(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len,
             const struct lmdb_rec *r, unsigned flags)
{
    MDB_val key = lmdb_val(id, id_len), val = lmdb_val(NULL, lmdb_rec_size(r));
    int rc = mdb_put(txn, st->sessions, &key, &val, flags | MDB_RESERVE);
    if (rc == MDB_KEYEXIST)
        return lmdb_refuse(st, "a session with this id exists");
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_put sessions");
    lmdb_rec_encode(r, val.mv_data);
    return STORE_OK;
}

static int
lmdb_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v, size_t vlen,
         unsigned flags)
{
    MDB_val key = lmdb_val(k, klen), val = lmdb_val(v, vlen);
    return mdb_put(txn, dbi, &key, &val, flags);
}

/* Delete one entry; an entry already gone is no failure (the goal is its absence). */
static int
lmdb_del(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v, size_t vlen)
{
    MDB_val key = lmdb_val(k, klen), val = lmdb_val(v, vlen);
    int rc = mdb_del(txn, dbi, &key, v != NULL ? &val : NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Write a new session: record and both index entries. */
static enum store_status
lmdb_insert(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len,
            const struct lmdb_rec *r)
{
    char k[LMDB_TIME_KEY];
    enum store_status status = lmdb_put_rec(st, txn, id, id_len, r, MDB_NOOVERWRITE);
    if (status != STORE_OK)
        return status;
    int rc = lmdb_put(txn, st->users, r->user, r->user_len, k,
                      lmdb_time_key(k, r->created_at, id, id_len), 0);
    if (rc == 0)
        rc = lmdb_put(txn, st->expiry, k, lmdb_time_key(k, r->expires_at, id, id_len), "", 0, 0);
    return rc == 0 ? STORE_OK : lmdb_fail(st, rc, "mdb_put index");
}

/* Delete the session id whose record is r, with its index entries. id and r may point
 * into pages that the first delete changes, so everything is copied first. */
static enum store_status
lmdb_remove(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len,
            const struct lmdb_rec *r)
{
    char sid[SESSION_ID_LEN], user[SESSION_USER_MAX], uval[LMDB_TIME_KEY], ekey[LMDB_TIME_KEY];
    /* As in lmdb_load, r comes from an lmdb_find that returned STORE_OK, which the analyzer
     * cannot always tell. NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
    size_t user_len = r->user_len;
    memcpy(sid, id, id_len);
    memcpy(user, r->user, user_len);
    size_t uval_len = lmdb_time_key(uval, r->created_at, sid, id_len);
    size_t ekey_len = lmdb_time_key(ekey, r->expires_at, sid, id_len);

    int rc = lmdb_del(txn, st->users, user, user_len, uval, uval_len);
    if (rc == 0)
        rc = lmdb_del(txn, st->expiry, ekey, ekey_len, NULL, 0);
    if (rc == 0)
        rc = lmdb_del(txn, st->sessions, sid, id_len, NULL, 0);
    return rc == 0 ? STORE_OK : lmdb_fail(st, rc, "mdb_del");
}

/* Find and remove the session id; NOT_FOUND if there is none. */
static enum store_status
lmdb_remove_id(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len)
{
    struct lmdb_rec r;
    enum store_status status = lmdb_find(st, txn, id, id_len, &r);
    return status == STORE_OK ? lmdb_remove(st, txn, id, id_len, &r) : status;
}

/* The first key of the expiry index, copied into k, if it is due by now; MDB_NOTFOUND if
 * none is. */
static int
lmdb_first_expired(MDB_cursor *cur, int64_t now, char k[LMDB_TIME_KEY], size_t *klen)
{
    MDB_val key, val;
    int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    if (rc != 0)
        return rc;
    if (key.mv_size <= 8 || key.mv_size > LMDB_TIME_KEY || lmdb_get_be64(key.mv_data) > now)
        return MDB_NOTFOUND;
    memcpy(k, key.mv_data, key.mv_size);
    *klen = key.mv_size;
    return 0;
}

/* Delete the session an expiry key names; a key without its record goes alone. */
static enum store_status
lmdb_expire(struct lmdb_store *st, MDB_txn *txn, const char *k, size_t klen)
{
    enum store_status status = lmdb_remove_id(st, txn, k + 8, klen - 8);
    if (status != STORE_NOT_FOUND)
        return status;
    int rc = lmdb_del(txn, st->expiry, k, klen, NULL, 0);
    return rc == 0 ? STORE_OK : lmdb_fail(st, rc, "mdb_del expiry");
}

/* Delete up to max expired sessions from the front of the expiry index. Returns how many,
 * or -1 with the status in *status. */
static int
lmdb_sweep_txn(struct lmdb_store *st, MDB_txn *txn, int64_t now, int max, enum store_status *status)
{
    MDB_cursor *cur;
    int n = 0, rc = mdb_cursor_open(txn, st->expiry, &cur);
    if (rc != 0) {
        *status = lmdb_fail(st, rc, "mdb_cursor_open expiry");
        return -1;
    }
    *status = STORE_OK;
    while (n < max && *status == STORE_OK) {
        char k[LMDB_TIME_KEY];
        size_t klen;
        if ((rc = lmdb_first_expired(cur, now, k, &klen)) != 0)
            break;
        *status = lmdb_expire(st, txn, k, klen);
        n++;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        *status = lmdb_fail(st, rc, "mdb_cursor_get expiry");
    return *status == STORE_OK ? n : -1;
}

/* ---- create ---- */

/* The ids of a user's expired sessions met while counting, deleted if the create goes on. */
struct lmdb_ids {
    size_t n;
    size_t len[LMDB_RECLAIM];
    char id[LMDB_RECLAIM][SESSION_ID_LEN];
};

/* Look at one entry of a user's list (created_at + id): count it if live, note it if
 * expired. */
static enum store_status
lmdb_count_one(struct lmdb_store *st, MDB_txn *txn, const MDB_val *v, int64_t now, int *live,
               struct lmdb_ids *expired)
{
    struct lmdb_rec r;
    const char *id = (const char *)v->mv_data + 8;
    size_t id_len = v->mv_size - 8;
    enum store_status status = lmdb_find(st, txn, id, id_len, &r);
    if (status == STORE_NOT_FOUND)
        return STORE_OK;
    if (status != STORE_OK)
        return status;
    if (r.expires_at > now) {
        (*live)++;
    } else if (expired->n < LMDB_RECLAIM) {
        memcpy(expired->id[expired->n], id, id_len);
        expired->len[expired->n++] = id_len;
    }
    return STORE_OK;
}

/* Count the user's live sessions against max_sessions_per_user, then delete the expired
 * ones met on the way, since they must not hold a place. */
static enum store_status
lmdb_check_user(struct lmdb_store *st, MDB_txn *txn, const struct lmdb_rec *r)
{
    MDB_cursor *cur;
    MDB_val key = lmdb_val(r->user, r->user_len), val;
    struct lmdb_ids expired = {0};
    enum store_status status = STORE_OK;
    int live = 0, rc = mdb_cursor_open(txn, st->users, &cur);
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_cursor_open users");
    /* Fewer entries than the limit, live or not, cannot reach it: the usual case needs no
     * look at each session (the sweep reclaims the expired ones in time). */
    size_t entries = 0;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_KEY);
    if (rc == 0 && (rc = mdb_cursor_count(cur, &entries)) == 0 &&
        entries < (size_t)st->max_per_user) {
        mdb_cursor_close(cur);
        return STORE_OK;
    }
    for (; rc == 0 && status == STORE_OK;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT_DUP)) {
        if (val.mv_size > 8 && lmdb_id_ok(val.mv_size - 8))
            status = lmdb_count_one(st, txn, &val, r->created_at, &live, &expired);
        if (status == STORE_OK && live >= st->max_per_user)
            status = STORE_USER_LIMIT;
    }
    mdb_cursor_close(cur);
    if (status != STORE_OK)
        return status;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail(st, rc, "mdb_cursor_get users");
    for (size_t i = 0; i < expired.n && status == STORE_OK; i++)
        status = lmdb_remove_id(st, txn, expired.id[i], expired.len[i]);
    return status;
}

static enum store_status
lmdb_entries(struct lmdb_store *st, MDB_txn *txn, uint64_t *n)
{
    MDB_stat ms;
    int rc = mdb_stat(txn, st->sessions, &ms);
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_stat");
    *n = ms.ms_entries;
    return STORE_OK;
}

/* Make sure there is room under max_sessions, reclaiming expired sessions (never a live
 * one) when the store is at its limit. */
static enum store_status
lmdb_check_total(struct lmdb_store *st, MDB_txn *txn, int64_t now)
{
    uint64_t n = 0;
    enum store_status status = lmdb_entries(st, txn, &n);
    if (status != STORE_OK || n < (uint64_t)st->max_sessions)
        return status;
    if (lmdb_sweep_txn(st, txn, now, LMDB_RECLAIM, &status) < 0)
        return status;
    status = lmdb_entries(st, txn, &n);
    if (status == STORE_OK && n >= (uint64_t)st->max_sessions)
        status = STORE_FULL;
    return status;
}

struct lmdb_create {
    const char *id;
    size_t id_len;
    struct lmdb_rec rec;
};

static enum store_status
lmdb_create_txn(struct lmdb_store *st, MDB_txn *txn, void *ctx)
{
    struct lmdb_create *c = ctx;
    enum store_status status = lmdb_check_user(st, txn, &c->rec);
    if (status == STORE_OK)
        status = lmdb_check_total(st, txn, c->rec.created_at);
    if (status == STORE_OK)
        status = lmdb_insert(st, txn, c->id, c->id_len, &c->rec);
    return status;
}

/* Channels and subscribe as the caller gives them: each fits its length field. */
static enum store_status
lmdb_grants_check(struct lmdb_store *st, const char *channels, size_t channels_len,
                  const char *subscribe, size_t subscribe_len)
{
    if (channels_len > STORE_GRANTS_MAX || subscribe_len > STORE_GRANTS_MAX)
        return lmdb_refuse(st, "channels, subscribe: at most 16384 bytes each");
    if ((channels == NULL && channels_len > 0) || (subscribe == NULL && subscribe_len > 0))
        return lmdb_refuse(st, "channels, subscribe: NULL with a length");
    return STORE_OK;
}

/* Check s before any transaction: a bad argument or oversized data writes nothing. */
static enum store_status
lmdb_create_args(struct lmdb_store *st, const struct session *s, struct lmdb_create *c)
{
    c->id = s->id;
    c->id_len = strnlen(s->id, sizeof s->id);
    c->rec = (struct lmdb_rec){.version = 1, .created_at = s->created_at,
                               .expires_at = s->expires_at, .ttl = s->ttl, .user = s->user,
                               .user_len = strnlen(s->user, sizeof s->user), .data = s->data,
                               .data_len = s->data_len, .channels = s->channels,
                               .channels_len = s->channels_len, .subscribe = s->subscribe,
                               .subscribe_len = s->subscribe_len};
    memcpy(c->rec.hash, s->token_hash, SESSION_HASH_LEN);
    if (!lmdb_id_ok(c->id_len) || !store_id_fits(s))
        return lmdb_refuse(st, "session id: not the id of its token");
    if (c->rec.user_len == 0 || c->rec.user_len > SESSION_USER_MAX)
        return lmdb_refuse(st, "user: 1 to 128 bytes");
    if (s->data_len > st->max_bytes)
        return STORE_TOO_BIG;
    if (s->data == NULL && s->data_len > 0)
        return lmdb_refuse(st, "data: NULL with a length");
    return lmdb_grants_check(st, s->channels, s->channels_len, s->subscribe, s->subscribe_len);
}

/* ---- reads ---- */

static void
lmdb_store_get(void *self, const char *id, int64_t now, store_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    MDB_txn *txn;
    struct session s;
    st->healthy = true;
    int rc = lmdb_read_begin(st, &txn);
    if (rc != 0) {
        cb(arg, lmdb_fail(st, rc, "mdb_txn_begin"), NULL);
        return;
    }
    enum store_status status = lmdb_load(st, txn, id, strlen(id), now, &s);
    cb(arg, status, status == STORE_OK ? &s : NULL);
    lmdb_read_end(st, txn);
}

static enum store_status
lmdb_load_by_token(struct lmdb_store *st, MDB_txn *txn, const uint8_t *hash, int64_t now,
                   struct session *s)
{
    char id[SESSION_ID_LEN + 1];
    token_id_of_hash(hash, id);
    enum store_status status = lmdb_load(st, txn, id, SESSION_ID_LEN, now, s);
    if (status == STORE_OK && !token_equal(s->token_hash, SESSION_HASH_LEN, hash, SESSION_HASH_LEN))
        status = STORE_NOT_FOUND;
    return status;
}

static void
lmdb_store_get_by_token(void *self, const uint8_t hash[SESSION_HASH_LEN], int64_t now,
                   store_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    MDB_txn *txn;
    struct session s;
    st->healthy = true;
    int rc = lmdb_read_begin(st, &txn);
    if (rc != 0) {
        cb(arg, lmdb_fail(st, rc, "mdb_txn_begin"), NULL);
        return;
    }
    enum store_status status = lmdb_load_by_token(st, txn, hash, now, &s);
    cb(arg, status, status == STORE_OK ? &s : NULL);
    lmdb_read_end(st, txn);
}

struct lmdb_list {
    struct session *v;
    size_t n, cap;
};

static enum store_status
lmdb_list_add(struct lmdb_store *st, MDB_txn *txn, const MDB_val *val, int64_t now,
              struct lmdb_list *l)
{
    if (val->mv_size <= 8)
        return STORE_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct session *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return lmdb_refuse(st, "out of memory");
        l->v = v;
        l->cap = cap;
    }
    enum store_status status = lmdb_load(st, txn, (const char *)val->mv_data + 8,
                                         val->mv_size - 8, now, &l->v[l->n]);
    if (status == STORE_OK)
        l->n++;
    return status == STORE_NOT_FOUND ? STORE_OK : status;
}

/* Put cur on the user's first index entry after page's (the first of all without one). */
static int
lmdb_list_start(MDB_cursor *cur, MDB_val *key, MDB_val *val, const struct store_page *page)
{
    size_t id_len = strlen(page->after_id);
    if (id_len == 0)
        return mdb_cursor_get(cur, key, val, MDB_SET_KEY);
    char after[LMDB_TIME_KEY];
    MDB_val want = {lmdb_time_key(after, page->after_created, page->after_id, id_len), after};
    *val = want;
    int rc = mdb_cursor_get(cur, key, val, MDB_GET_BOTH_RANGE); /* the first >= want */
    if (rc == 0 && val->mv_size == want.mv_size && memcmp(val->mv_data, after, want.mv_size) == 0)
        rc = mdb_cursor_get(cur, key, val, MDB_NEXT_DUP);
    return rc;
}

/* The user's live sessions, oldest first (the order of the users index): a page. */
static enum store_status
lmdb_list_txn(struct lmdb_store *st, MDB_txn *txn, const char *user, int64_t now,
              const struct store_page *page, struct lmdb_list *l)
{
    MDB_cursor *cur;
    MDB_val key = lmdb_val(user, strlen(user)), val;
    enum store_status status = STORE_OK;
    size_t max = page->limit < LMDB_LIST_MAX ? page->limit : LMDB_LIST_MAX;
    if (key.mv_size == 0 || key.mv_size > SESSION_USER_MAX)
        return STORE_OK;
    int rc = mdb_cursor_open(txn, st->users, &cur);
    if (rc != 0)
        return lmdb_fail(st, rc, "mdb_cursor_open users");
    for (rc = lmdb_list_start(cur, &key, &val, page); rc == 0 && status == STORE_OK && l->n < max;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT_DUP))
        status = lmdb_list_add(st, txn, &val, now, l);
    mdb_cursor_close(cur);
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = lmdb_fail(st, rc, "mdb_cursor_get users");
    return status;
}

static void
lmdb_store_list_user(void *self, const char *user, int64_t now, const struct store_page *page,
                     store_list_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    MDB_txn *txn;
    struct lmdb_list l = {0};
    st->healthy = true;
    int rc = lmdb_read_begin(st, &txn);
    if (rc != 0) {
        cb(arg, lmdb_fail(st, rc, "mdb_txn_begin"), NULL, 0);
        return;
    }
    enum store_status status = lmdb_list_txn(st, txn, user, now, page, &l);
    if (status == STORE_OK)
        cb(arg, STORE_OK, l.v, l.n);
    else
        cb(arg, status, NULL, 0);
    lmdb_read_end(st, txn);
    free(l.v);
}

static void
lmdb_store_count(void *self, store_count_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    MDB_txn *txn;
    uint64_t n = 0;
    st->healthy = true;
    int rc = lmdb_read_begin(st, &txn);
    if (rc != 0) {
        cb(arg, lmdb_fail(st, rc, "mdb_txn_begin"), 0);
        return;
    }
    enum store_status status = lmdb_entries(st, txn, &n);
    lmdb_read_end(st, txn);
    cb(arg, status, n);
}

/* ---- update ---- */

struct lmdb_update {
    const char *id;
    size_t id_len;
    int64_t now;
    const struct store_change *ch;
    struct session out; /* the session as it is now, for the callback */
    char *data;         /* out.data: ours, because the transaction's memory is gone */
    char *grants;       /* out.channels and out.subscribe, ours for the same reason */
};

/* The channels and subscribe after the change, copied into u->grants: the new ones where
 * the change sets them, else the old ones, which the write may move. */
static enum store_status
lmdb_new_grants(struct lmdb_store *st, struct lmdb_update *u, const struct lmdb_rec *old,
                struct lmdb_rec *n)
{
    const struct store_change *ch = u->ch;
    const char *c = ch->set_channels ? ch->channels : old->channels;
    const char *sub = ch->set_subscribe ? ch->subscribe : old->subscribe;
    size_t clen = ch->set_channels ? ch->channels_len : old->channels_len;
    size_t slen = ch->set_subscribe ? ch->subscribe_len : old->subscribe_len;
    char *p = u->grants = malloc(clen + slen + 1);
    if (p == NULL)
        return lmdb_refuse(st, "out of memory");
    n->channels = lmdb_copy(&p, c, clen);
    n->channels_len = clen;
    n->subscribe = lmdb_copy(&p, sub, slen);
    n->subscribe_len = slen;
    return STORE_OK;
}

/* The data after the change, in new memory: the patch applied, or a copy. */
static enum store_status
lmdb_new_data(struct lmdb_store *st, const struct lmdb_rec *r, const struct store_change *ch,
              char **out, size_t *out_len)
{
    if (ch->patch == NULL) {
        *out = malloc(r->data_len + 1);
        if (*out == NULL)
            return lmdb_refuse(st, "out of memory");
        if (r->data_len > 0)
            memcpy(*out, r->data, r->data_len);
        *out_len = r->data_len;
        return STORE_OK;
    }
    /* A session created without data has the empty object as data. */
    const char *t = r->data_len > 0 ? r->data : "{}";
    size_t tlen = r->data_len > 0 ? r->data_len : 2;
    int rc = json_merge_patch(t, tlen, ch->patch, ch->patch_len, st->max_bytes, out, out_len);
    return rc == 0 ? STORE_OK : rc == -2 ? STORE_TOO_BIG : STORE_BAD_DATA;
}

static enum store_status
lmdb_move_expiry(struct lmdb_store *st, MDB_txn *txn, const char *id, size_t id_len, int64_t from,
                 int64_t to)
{
    char k[LMDB_TIME_KEY];
    int rc = lmdb_del(txn, st->expiry, k, lmdb_time_key(k, from, id, id_len), NULL, 0);
    if (rc == 0)
        rc = lmdb_put(txn, st->expiry, k, lmdb_time_key(k, to, id, id_len), "", 0, 0);
    return rc == 0 ? STORE_OK : lmdb_fail(st, rc, "expiry index");
}

/* Write the changed record n over old (its expiry entry moving with it). Nothing is
 * written when nothing changed. */
static enum store_status
lmdb_rewrite(struct lmdb_store *st, MDB_txn *txn, const struct lmdb_update *u,
             const struct lmdb_rec *old, const struct lmdb_rec *n)
{
    enum store_status status = STORE_OK;
    if (n->version == old->version && n->expires_at == old->expires_at)
        return STORE_OK;
    if (n->expires_at != old->expires_at)
        status = lmdb_move_expiry(st, txn, u->id, u->id_len, old->expires_at, n->expires_at);
    if (status == STORE_OK)
        status = lmdb_put_rec(st, txn, u->id, u->id_len, n, 0);
    return status;
}

static enum store_status
lmdb_update_txn(struct lmdb_store *st, MDB_txn *txn, void *ctx)
{
    struct lmdb_update *u = ctx;
    const struct store_change *ch = u->ch;
    struct lmdb_rec old, n;
    enum store_status status = lmdb_find(st, txn, u->id, u->id_len, &old);
    if (status != STORE_OK)
        return status;
    if (old.expires_at <= u->now)
        return STORE_NOT_FOUND;
    if (ch->if_version > 0 && ch->if_version != old.version)
        return STORE_VERSION;
    n = old;
    status = lmdb_new_data(st, &old, ch, &u->data, &n.data_len);
    if (status == STORE_OK)
        status = lmdb_new_grants(st, u, &old, &n);
    if (status != STORE_OK)
        return status;
    n.data = u->data;
    n.ttl = ch->ttl > 0 ? ch->ttl : old.ttl;
    n.expires_at = ch->touch ? (ch->touch_from > 0 ? ch->touch_from : u->now) + n.ttl
                             : old.expires_at;
    /* Every patch, new ttl, channels or subscribe is a new version (API.md: PATCH
     * increments it, even when the patch happens to leave the session as it was); a
     * touch alone only moves the expiry. */
    bool changed = ch->patch != NULL || ch->ttl > 0 || ch->set_channels || ch->set_subscribe;
    n.version = old.version + (changed ? 1 : 0);
    /* Copy the user out of the old record before the write may move it. */
    lmdb_rec_to_session(u->id, u->id_len, &n, &u->out);
    n.user = u->out.user;
    return lmdb_rewrite(st, txn, u, &old, &n);
}

/* ---- deletes and the sweep ---- */

struct lmdb_delete {
    const char *id;
    size_t id_len;
    uint64_t if_version; /* 0: any */
    struct session out; /* the session deleted, so that the caller learns its user */
    char *data;         /* out's data, channels and subscribe: the pages go at commit */
};

static enum store_status
lmdb_delete_txn(struct lmdb_store *st, MDB_txn *txn, void *ctx)
{
    struct lmdb_delete *d = ctx;
    struct lmdb_rec r;
    enum store_status status = lmdb_find(st, txn, d->id, d->id_len, &r);
    if (status != STORE_OK)
        return status;
    if (d->if_version > 0 && d->if_version != r.version)
        return STORE_VERSION;
    char *p = d->data = malloc(r.data_len + r.channels_len + r.subscribe_len + 1);
    if (p == NULL)
        return lmdb_refuse(st, "out of memory");
    lmdb_rec_to_session(d->id, d->id_len, &r, &d->out);
    d->out.data = lmdb_copy(&p, r.data, r.data_len);
    d->out.channels = lmdb_copy(&p, r.channels, r.channels_len);
    d->out.subscribe = lmdb_copy(&p, r.subscribe, r.subscribe_len);
    return lmdb_remove(st, txn, d->id, d->id_len, &r);
}

struct lmdb_delete_user {
    const char *user;
    size_t user_len;
    uint64_t n;
    bool one; /* delete one session, not all */
};

/* Delete the user's first session (the list shrinks each time) until none is left. */
static enum store_status
lmdb_delete_user_txn(struct lmdb_store *st, MDB_txn *txn, void *ctx)
{
    struct lmdb_delete_user *d = ctx;
    for (;;) {
        MDB_val key = lmdb_val(d->user, d->user_len), val;
        char v[LMDB_TIME_KEY];
        int rc = mdb_get(txn, st->users, &key, &val);
        if (rc == MDB_NOTFOUND)
            return STORE_OK;
        if (rc != 0)
            return lmdb_fail(st, rc, "mdb_get users");
        size_t vlen = val.mv_size <= LMDB_TIME_KEY ? val.mv_size : LMDB_TIME_KEY;
        memcpy(v, val.mv_data, vlen);
        enum store_status status = vlen > 8 ? lmdb_remove_id(st, txn, v + 8, vlen - 8)
                                            : STORE_NOT_FOUND;
        if (status == STORE_OK) {
            d->n++;
            if (d->one)
                return STORE_OK;
        } else if (status != STORE_NOT_FOUND) {
            return status;
        } else if ((rc = mdb_del(txn, st->users, &key, &val)) != 0) { /* an entry alone */
            return lmdb_fail(st, rc, "mdb_del users");
        }
    }
}

/* The user's entries in the users index (expired ones included), for the pages a delete
 * of them all may take. */
static size_t
lmdb_user_entries(struct lmdb_store *st, const char *user, size_t user_len)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val key = lmdb_val(user, user_len), val;
    size_t n = 0;
    if (lmdb_read_begin(st, &txn) != 0)
        return (size_t)st->max_per_user;
    if (mdb_cursor_open(txn, st->users, &cur) == 0) {
        if (mdb_cursor_get(cur, &key, &val, MDB_SET_KEY) == 0 && mdb_cursor_count(cur, &n) != 0)
            n = (size_t)st->max_per_user;
        mdb_cursor_close(cur);
    }
    lmdb_read_end(st, txn);
    return n;
}

/* One transaction for all of them, with room for the sessions the user has. When the
 * disk is too full for that, one transaction per session: a user can be revoked
 * whenever a single session can be deleted, which is when it matters most. */
static void
lmdb_store_delete_user(void *self, const char *user, store_count_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    struct lmdb_delete_user d = {.user = user, .user_len = strlen(user)};
    st->healthy = true;
    if (d.user_len == 0 || d.user_len > SESSION_USER_MAX) {
        cb(arg, STORE_OK, 0);
        return;
    }
    size_t n = lmdb_user_entries(st, user, d.user_len) + 1; /* one may come meanwhile */
    enum store_status status = lmdb_write(st, lmdb_delete_user_txn, &d, n * LMDB_DELETE_PAGES);
    if (status == STORE_NO_SPACE) {
        uint64_t before;
        d.one = true;
        do { /* one session a transaction, until none is left or one fails */
            before = d.n;
            status = lmdb_write(st, lmdb_delete_user_txn, &d, LMDB_DELETE_PAGES);
        } while (status == STORE_OK && d.n > before);
    }
    cb(arg, status, status == STORE_OK ? d.n : 0);
}

struct lmdb_sweep {
    int64_t now;
    int max, n;
};

static enum store_status
lmdb_sweep_body(struct lmdb_store *st, MDB_txn *txn, void *ctx)
{
    struct lmdb_sweep *s = ctx;
    enum store_status status = STORE_OK;
    s->n = lmdb_sweep_txn(st, txn, s->now, s->max, &status);
    return status;
}

/* How many of the first max expiry keys are due by now (max when it cannot tell): a sweep
 * with nothing to do takes no write lock, and asks the disk only for what it deletes. */
static int
lmdb_due(struct lmdb_store *st, int64_t now, int max)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val key, val;
    int n = 0;
    if (lmdb_read_begin(st, &txn) != 0)
        return max;
    if (mdb_cursor_open(txn, st->expiry, &cur) != 0) {
        lmdb_read_end(st, txn);
        return max;
    }
    for (int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
         rc == 0 && n < max && key.mv_size > 8 && lmdb_get_be64(key.mv_data) <= now;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT))
        n++;
    mdb_cursor_close(cur);
    lmdb_read_end(st, txn);
    return n;
}

static int
lmdb_store_sweep(void *self, int64_t now, int max)
{
    struct lmdb_store *st = self;
    int dead;
    st->healthy = true;
    /* A worker killed while reading leaves its reader slot behind, and a stale slot stops
     * LMDB from reusing pages; the sweep's timer is a good moment to clear them. */
    (void)mdb_reader_check(st->env, &dead);
    if (max <= 0 || (max = lmdb_due(st, now, max)) == 0)
        return 0;
    struct lmdb_sweep s = {.now = now, .max = max};
    return lmdb_write(st, lmdb_sweep_body, &s, (size_t)max * LMDB_DELETE_PAGES) == STORE_OK
               ? s.n
               : -1;
}

/* ---- the group commit ---- */

enum lmdb_kind { LMDB_CREATE, LMDB_UPDATE, LMDB_DELETE };

/* A write waiting for the group commit. What the call was given is copied into it: the
 * id, the session (create) or the change (update), and the bytes they point to, which
 * follow this struct. */
struct lmdb_queued {
    struct lmdb_queued *next;
    enum lmdb_kind kind;
    store_cb cb;
    void *arg;
    enum store_status status;
    bool dropped; /* it broke a transaction: answered with its status, left out of retries */
    char id[SESSION_ID_LEN + 1];
    union {
        struct session s; /* create */
        struct {
            struct store_change ch;
            struct lmdb_update u; /* u.ch is &ch, u.id is id */
        } up;
        struct lmdb_delete d; /* d.id is id */
    };
};

/* Pages one queued write may take, for the reservation of its transaction. */
static size_t
lmdb_queued_pages(const struct lmdb_store *st, const struct lmdb_queued *q)
{
    return q->kind == LMDB_DELETE ? LMDB_DELETE_PAGES : st->create_pages;
}

/* Run one queued write in txn. A retry runs it again from the start, so what an earlier
 * run allocated goes first. */
static enum store_status
lmdb_queued_txn(struct lmdb_store *st, MDB_txn *txn, struct lmdb_queued *q)
{
    struct lmdb_create c;
    enum store_status status;
    switch (q->kind) {
    case LMDB_CREATE:
        status = lmdb_create_args(st, &q->s, &c);
        return status == STORE_OK ? lmdb_create_txn(st, txn, &c) : status;
    case LMDB_UPDATE:
        free(q->up.u.data);
        free(q->up.u.grants);
        q->up.u.data = q->up.u.grants = NULL;
        return lmdb_update_txn(st, txn, &q->up.u);
    case LMDB_DELETE:
        free(q->d.data);
        q->d.data = NULL;
        return lmdb_delete_txn(st, txn, &q->d);
    }
    return lmdb_refuse(st, "unknown queued write");
}

/* A commit failed: none of the batch is written, and every write still in it that had
 * not failed by itself reports it. */
static void
lmdb_batch_status(struct lmdb_queued *q, enum store_status status)
{
    for (; q != NULL; q = q->next)
        if (!q->dropped && q->status == STORE_OK) q->status = status;
}

/* One transaction for the batch's writes, in their order, each seeing the ones before
 * it. A write that fails by itself (a 412, data too big, a limit) has written nothing
 * and fails alone. A failure of LMDB while writing (the map full) breaks the whole
 * transaction: it is aborted and that write returned, for the caller to retry the
 * others without it, as they would have fared one by one. */
static struct lmdb_queued *
lmdb_batch_txn(struct lmdb_store *st, struct lmdb_queued *q)
{
    MDB_txn *txn;
    size_t pages = LMDB_RECLAIM_PAGES;
    for (struct lmdb_queued *b = q; b != NULL; b = b->next)
        pages += b->dropped ? 0 : lmdb_queued_pages(st, b);
    int rc = lmdb_begin(st, 0, &txn);
    enum store_status status =
        rc != 0 ? lmdb_fail(st, rc, "mdb_txn_begin") : lmdb_reserve(st, pages);
    if (status != STORE_OK) {
        if (rc == 0) mdb_txn_abort(txn);
        for (struct lmdb_queued *b = q; b != NULL; b = b->next)
            b->status = b->dropped ? b->status : status;
        return NULL;
    }
    for (struct lmdb_queued *b = q; b != NULL; b = b->next) {
        if (b->dropped) continue;
        unsigned fails = st->fails;
        b->status = lmdb_queued_txn(st, txn, b);
        if (st->fails != fails) {
            mdb_txn_abort(txn);
            return b;
        }
    }
    if ((rc = mdb_txn_commit(txn)) != 0) lmdb_batch_status(q, lmdb_fail(st, rc, "mdb_txn_commit"));
    return NULL;
}

/* Answer a write once its transaction is over (committed, or not), and free it. */
static void
lmdb_answer(struct lmdb_queued *q)
{
    const struct session *out = NULL;
    if (q->status == STORE_OK && q->kind == LMDB_CREATE) {
        q->s.version = 1;
        out = &q->s;
    } else if (q->status == STORE_OK) {
        out = q->kind == LMDB_UPDATE ? &q->up.u.out : &q->d.out;
    }
    q->cb(q->arg, q->status, out);
    if (q->kind == LMDB_UPDATE) {
        free(q->up.u.data);
        free(q->up.u.grants);
    } else if (q->kind == LMDB_DELETE) {
        free(q->d.data);
    }
    free(q);
}

/* Commit the queued writes, at most LMDB_FLUSH_MAX (which bounds what the disk must hold
 * ready), in one transaction, then answer each. Creates check their limits against the
 * writes before them in the same transaction, so limits hold as they do one by one. */
static void
lmdb_flush_batch(struct lmdb_store *st)
{
    struct lmdb_queued *q = st->queue, **cut = &st->queue, *broke;
    size_t n = 0;
    while (*cut != NULL && n < LMDB_FLUSH_MAX) {
        cut = &(*cut)->next;
        n++;
    }
    st->queue = *cut;
    *cut = NULL;
    if (st->queue == NULL) st->queue_tail = &st->queue;
    while ((broke = lmdb_batch_txn(st, q)) != NULL)
        broke->dropped = true; /* each retry has one write fewer: this ends */
    while (q != NULL) {
        struct lmdb_queued *next = q->next;
        lmdb_answer(q);
        q = next;
    }
}

static void
lmdb_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct lmdb_store *st = w->data;
    ev_prepare_stop(loop, w);
    while (st->queue != NULL)
        lmdb_flush_batch(st);
}

/* A write for the group commit, extra bytes after it for its copies; NULL (with the
 * error noted) when out of memory. */
static struct lmdb_queued *
lmdb_queued_new(struct lmdb_store *st, enum lmdb_kind kind, size_t extra, store_cb cb, void *arg)
{
    struct lmdb_queued *q = malloc(sizeof *q + extra);
    if (q == NULL) {
        (void)lmdb_refuse(st, "out of memory");
        return NULL;
    }
    memset(q, 0, sizeof *q);
    q->kind = kind;
    q->cb = cb;
    q->arg = arg;
    return q;
}

static void
lmdb_enqueue(struct lmdb_store *st, struct lmdb_queued *q)
{
    *st->queue_tail = q;
    st->queue_tail = &q->next;
    if (!ev_is_active(&st->flush)) ev_prepare_start(st->loop, &st->flush);
}

static void
lmdb_store_create(void *self, const struct session *s, store_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    struct lmdb_create c;
    st->healthy = true;
    enum store_status status = lmdb_create_args(st, s, &c);
    if (status == STORE_OK && st->loop != NULL) {
        struct lmdb_queued *q = lmdb_queued_new(
            st, LMDB_CREATE, s->data_len + s->channels_len + s->subscribe_len, cb, arg);
        if (q == NULL) {
            cb(arg, STORE_ERROR, NULL);
            return;
        }
        char *p = (char *)(q + 1);
        q->s = *s;
        q->s.data = lmdb_copy(&p, s->data, s->data_len);
        q->s.channels = lmdb_copy(&p, s->channels, s->channels_len);
        q->s.subscribe = lmdb_copy(&p, s->subscribe, s->subscribe_len);
        lmdb_enqueue(st, q);
        return;
    }
    if (status == STORE_OK)
        status = lmdb_write(st, lmdb_create_txn, &c, st->create_pages + LMDB_RECLAIM_PAGES);
    if (status != STORE_OK) {
        cb(arg, status, NULL);
        return;
    }
    struct session out = *s;
    out.version = 1;
    cb(arg, STORE_OK, &out);
}

/* Queue an update, copying the change and what it points to. */
static void
lmdb_queue_update(struct lmdb_store *st, const char *id, size_t id_len, int64_t now,
                  const struct store_change *ch, store_cb cb, void *arg)
{
    size_t clen = ch->set_channels ? ch->channels_len : 0;
    size_t slen = ch->set_subscribe ? ch->subscribe_len : 0;
    size_t plen = ch->patch != NULL ? ch->patch_len : 0;
    struct lmdb_queued *q = lmdb_queued_new(st, LMDB_UPDATE, plen + clen + slen, cb, arg);
    if (q == NULL) {
        cb(arg, STORE_ERROR, NULL);
        return;
    }
    char *p = (char *)(q + 1);
    memcpy(q->id, id, id_len);
    q->up.ch = *ch;
    if (ch->patch != NULL) q->up.ch.patch = lmdb_copy(&p, ch->patch, plen);
    q->up.ch.channels = clen > 0 ? lmdb_copy(&p, ch->channels, clen) : NULL;
    q->up.ch.subscribe = slen > 0 ? lmdb_copy(&p, ch->subscribe, slen) : NULL;
    q->up.u = (struct lmdb_update){.id = q->id, .id_len = id_len, .now = now, .ch = &q->up.ch};
    lmdb_enqueue(st, q);
}

static void
lmdb_store_update(void *self, const char *id, int64_t now, const struct store_change *ch,
                  store_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    struct lmdb_update u = {.id = id, .id_len = strlen(id), .now = now, .ch = ch};
    st->healthy = true;
    enum store_status status = lmdb_grants_check(
        st, ch->set_channels ? ch->channels : NULL, ch->set_channels ? ch->channels_len : 0,
        ch->set_subscribe ? ch->subscribe : NULL, ch->set_subscribe ? ch->subscribe_len : 0);
    if (status == STORE_OK && !lmdb_id_ok(u.id_len))
        status = STORE_NOT_FOUND; /* no such id can exist: no need to queue it */
    if (status == STORE_OK && st->loop != NULL) {
        lmdb_queue_update(st, id, u.id_len, now, ch, cb, arg);
        return;
    }
    if (status == STORE_OK) status = lmdb_write(st, lmdb_update_txn, &u, st->create_pages);
    cb(arg, status, status == STORE_OK ? &u.out : NULL);
    free(u.data);
    free(u.grants);
}

static void
lmdb_store_delete(void *self, const char *id, uint64_t if_version, store_cb cb, void *arg)
{
    struct lmdb_store *st = self;
    struct lmdb_delete d = {.id = id, .id_len = strlen(id), .if_version = if_version};
    st->healthy = true;
    if (!lmdb_id_ok(d.id_len)) {
        cb(arg, STORE_NOT_FOUND, NULL);
        return;
    }
    if (st->loop != NULL) {
        struct lmdb_queued *q = lmdb_queued_new(st, LMDB_DELETE, 0, cb, arg);
        if (q == NULL) {
            cb(arg, STORE_ERROR, NULL);
            return;
        }
        memcpy(q->id, id, d.id_len);
        q->d = d;
        q->d.id = q->id;
        lmdb_enqueue(st, q);
        return;
    }
    enum store_status status = lmdb_write(st, lmdb_delete_txn, &d, LMDB_DELETE_PAGES);
    cb(arg, status, status == STORE_OK ? &d.out : NULL);
    free(d.data);
}

/* ---- open, prepare, close ---- */

/* The map size from the bounds: every session at its largest, with its index entries,
 * twice over for copy-on-write and fragmentation. The file is sparse, so this is a
 * ceiling, not an allocation. Grants are left out: they are usually a few names, and
 * counting each session's at their most (16 KiB as the API makes them) would multiply
 * the disk that start-up demands; the doubling absorbs ordinary grants, and a store
 * whose every session held the most would fill the map before max_sessions (STORE_FULL,
 * an answer). */
static int
lmdb_map_size(const struct conf *c, size_t *out)
{
    uint64_t per = (uint64_t)c->session_max_bytes + LMDB_SESSION_OVERHEAD, size;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    if (c->max_sessions <= 0 || c->session_max_bytes < 0 ||
        __builtin_mul_overflow((uint64_t)c->max_sessions, per, &size) ||
        __builtin_mul_overflow(size, 2, &size) || size > SIZE_MAX - page)
        return -1;
    size = (size + page - 1) / page * page;
    *out = size < LMDB_MIN_MAP ? LMDB_MIN_MAP : (size_t)size;
    return 0;
}

static int
lmdb_env_open(const struct conf *c, size_t map, MDB_env **out)
{
    MDB_env *env;
    /* MDB_WRITEMAP: a commit writes its pages into the shared mapping instead of one
     * pwrite per page, which took POST /api/sessions from 9k to 16k requests/s here.
     * Commits stay copy-on-write, so a process killed mid-transaction still leaves the
     * last committed state intact; the price is that a stray write through a bad
     * pointer in sessiond could reach the map, and that the file's apparent size is the
     * whole (sparse) map. */
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_WRITEMAP | (c->store_sync ? 0 : MDB_NOSYNC);
    int rc = mdb_env_create(&env);
    if (rc != 0)
        return rc;
    if ((rc = mdb_env_set_mapsize(env, map)) != 0 || (rc = mdb_env_set_maxdbs(env, 3)) != 0 ||
        (rc = mdb_env_set_maxreaders(env, LMDB_MAX_READERS)) != 0 ||
        (rc = mdb_env_open(env, c->store_path, flags, 0600)) != 0) {
        mdb_env_close(env);
        return rc;
    }
    *out = env;
    return 0;
}

/* Open (creating if need be) the four databases. The handles stay valid for the env's
 * life once the transaction that opened them commits. */
static int
lmdb_open_dbs(MDB_env *env, struct lmdb_store *st)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "sessions", MDB_CREATE, &st->sessions)) != 0 ||
        (rc = mdb_dbi_open(txn, "users", MDB_CREATE | MDB_DUPSORT, &st->users)) != 0 ||
        (rc = mdb_dbi_open(txn, "expiry", MDB_CREATE, &st->expiry)) != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Create the missing directories above path (mode 0700: sessions are secrets). */
static int
lmdb_mkdirs(const char *path, char *err, size_t errlen)
{
    char dir[sizeof ((struct conf *)0)->store_path];
    struct stat sb;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    if (stat(dir, &sb) == 0)
        return 0;
    for (char *p = dir + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char end = *p;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            errf(err, errlen, "store_path %s: cannot create directory %s: %s", path, dir,
                       strerror(errno));
            return -1;
        }
        if (end == '\0')
            return 0;
        *p = end;
    }
}

/* The map may grow to its full size, so the disk must have room for it (counting what
 * the file already holds). */
static int
lmdb_check_space(const char *path, int fd, size_t map, char *err, size_t errlen)
{
    struct statvfs vfs;
    struct stat sb;
    if (fstatvfs(fd, &vfs) != 0 || fstat(fd, &sb) != 0) {
        errf(err, errlen, "store_path %s: %s", path, strerror(errno));
        return -1;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize + (uint64_t)sb.st_blocks * 512;
    if (avail >= map)
        return 0;
    uint64_t mib = (uint64_t)1024 * 1024;
    errf(err, errlen,
               "store_path %s: the disk has %llu MiB free but the store may grow to %llu MiB "
               "(max_sessions x session_max_bytes, doubled for copy-on-write); lower "
               "max_sessions or session_max_bytes, or free space",
               path, (unsigned long long)(avail / mib),
               (unsigned long long)((map + mib - 1) / mib));
    return -1;
}

/* Everything prepare checks before LMDB sees the file: the size, the directory, the
 * file itself (mode 0600) and the free space. */
static int
lmdb_prepare_file(const struct conf *c, size_t *map, char *err, size_t errlen)
{
    if (lmdb_map_size(c, map) != 0) {
        errf(err, errlen, "store_path %s: max_sessions x session_max_bytes is too "
                   "large to map", c->store_path);
        return -1;
    }
    if (lmdb_mkdirs(c->store_path, err, errlen) != 0)
        return -1;
    int fd = open(c->store_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        errf(err, errlen, "store_path %s: %s", c->store_path, strerror(errno));
        return -1;
    }
    int rc = lmdb_check_space(c->store_path, fd, *map, err, errlen);
    close(fd);
    return rc;
}

static int
lmdb_prepare_store(const struct conf *c, const char *lock, char *err, size_t errlen)
{
    size_t map;
    MDB_env *env;
    struct lmdb_store dbs;
    int dead, rc;
    if (lmdb_prepare_file(c, &map, err, errlen) != 0)
        return -1;
    if ((rc = lmdb_env_open(c, map, &env)) != 0) {
        errf(err, errlen, "store_path %s: %s", c->store_path, mdb_strerror(rc));
        return -1;
    }
    rc = mdb_reader_check(env, &dead);
    if (rc == 0)
        rc = lmdb_open_dbs(env, &dbs);
    mdb_env_close(env);
    if (rc != 0) {
        errf(err, errlen, "store_path %s: %s", c->store_path, mdb_strerror(rc));
        return -1;
    }
    if (reserve_file(lock) != 0) {
        errf(err, errlen, "store_path %s: cannot allocate its lock file: %s", c->store_path,
             strerror(errno));
        return -1;
    }
    return 0;
}

/* A start refused here (a full disk, a bad map) leaves no empty store behind to be taken
 * for a real one later: the files it made are removed; a store that was there stays. */
static int
lmdb_store_prepare(const struct conf *c, char *err, size_t errlen)
{
    char lock[sizeof c->store_path + 8];
    struct stat sb;
    snprintf(lock, sizeof lock, "%s-lock", c->store_path);
    bool had_store = stat(c->store_path, &sb) == 0, had_lock = stat(lock, &sb) == 0;
    if (lmdb_prepare_store(c, lock, err, errlen) == 0)
        return 0;
    if (!had_store)
        (void)unlink(c->store_path);
    if (!had_lock)
        (void)unlink(lock);
    return -1;
}

static void *
lmdb_store_open(const struct conf *c, void *loop, char *err, size_t errlen)
{
    size_t map;
    int dead, rc;
    struct lmdb_store *st = calloc(1, sizeof *st);
    if (st == NULL) {
        errf(err, errlen, "store: out of memory");
        return NULL;
    }
    if (lmdb_map_size(c, &map) != 0) {
        errf(err, errlen, "store_path %s: max_sessions x session_max_bytes is too "
                   "large to map", c->store_path);
        free(st);
        return NULL;
    }
    if ((rc = lmdb_env_open(c, map, &st->env)) != 0 ||
        (rc = mdb_reader_check(st->env, &dead)) != 0 || (rc = lmdb_open_dbs(st->env, st)) != 0) {
        errf(err, errlen, "store_path %s: %s", c->store_path, mdb_strerror(rc));
        if (st->env != NULL)
            mdb_env_close(st->env);
        free(st);
        return NULL;
    }
    st->max_sessions = c->max_sessions;
    st->max_per_user = c->max_sessions_per_user;
    st->max_bytes = (size_t)c->session_max_bytes;
    st->healthy = true;
    MDB_stat ms;
    if (mdb_env_get_fd(st->env, &st->fd) != 0 || mdb_env_stat(st->env, &ms) != 0)
        ms.ms_psize = 4096, st->reserved = (off_t)map; /* cannot reserve: do not try */
    st->psize = ms.ms_psize;
    st->map = (off_t)map;
    /* A record at its largest: the data, the grants (which session_max_bytes does not
     * bound), the header and the user. */
    st->create_pages =
        LMDB_TREE_PAGES + (st->max_bytes + (size_t)2 * STORE_GRANTS_MAX + 512) / st->psize + 1;
    st->loop = loop;
    st->queue_tail = &st->queue;
    ev_prepare_init(&st->flush, lmdb_flush);
    st->flush.data = st;
    return st;
}

static void
lmdb_store_close(void *self)
{
    struct lmdb_store *st = self;
    if (st == NULL)
        return;
    /* Creates still queued were never acknowledged: they are dropped, as the Redis
     * engine drops its pending calls (the worker closed their connections first). */
    if (st->loop != NULL)
        ev_prepare_stop(st->loop, &st->flush);
    while (st->queue != NULL) {
        struct lmdb_queued *next = st->queue->next;
        free(st->queue);
        st->queue = next;
    }
    if (st->rtxn != NULL)
        mdb_txn_abort(st->rtxn);
    mdb_env_close(st->env);
    free(st);
}

static void
lmdb_store_info(const void *self, struct store_info *out)
{
    const struct lmdb_store *st = self;
    out->backend = "lmdb";
    out->healthy = st->healthy;
    out->circuit = "closed";
}

static const char *
lmdb_store_last_error(const void *self)
{
    const struct lmdb_store *st = self;
    return st->error;
}

const struct store_ops store_lmdb_ops = {
    .name = "lmdb",
    .prepare = lmdb_store_prepare,
    .open = lmdb_store_open,
    .close = lmdb_store_close,
    .create = lmdb_store_create,
    .get = lmdb_store_get,
    .get_by_token = lmdb_store_get_by_token,
    .update = lmdb_store_update,
    .delete_one = lmdb_store_delete,
    .list_user = lmdb_store_list_user,
    .delete_user = lmdb_store_delete_user,
    .count = lmdb_store_count,
    .sweep = lmdb_store_sweep,
    .info = lmdb_store_info,
    .last_error = lmdb_store_last_error,
};
