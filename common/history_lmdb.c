/* history_lmdb: channel history in its own LMDB file (history.h).
 *
 * Beside the store, not inside it: history is written on every publish and is worth far
 * less than sessions, so it gets its own bound (max_bytes), its own durability and its own
 * write lock, and a full history never refuses a session.
 *
 * Four named databases:
 *   msgs   channel NUL offset (8 bytes big-endian) -> expires_at (8), ts (8), from_len
 *          (1), from, data: one channel's messages are adjacent, in offset order
 *   times  expires_at (8 bytes big-endian) + a msgs key -> empty: the sweep finds the
 *          expired messages of every channel at the front, as the store's expiry index
 *   chans  channel -> top (8 bytes big-endian), the newest offset given: the counter,
 *          kept when every message is gone so that offsets never restart in an epoch
 *   meta   "epoch" -> 16 hex digits; "bytes" -> what the entries cost (below)
 * Every call is one transaction, so the index never disagrees with the messages, and a
 * kill -9 at any moment leaves the last commit (LMDB: copy-on-write pages, a robust
 * writer mutex, reader slots of dead processes cleared by mdb_reader_check).
 *
 * Trimming keeps the newest `keep` offsets (offsets top - keep + 1 .. top), so a message
 * never kept still counts as one of the channel's last messages; it needs no count.
 *
 * The bound. LMDB reports MDB_MAP_FULL only once a transaction cannot get a page, and
 * then even a delete or a counter update may fail, leaving the history unable to record
 * that it lost a message. So the file keeps its own account: "bytes" is what the entries
 * of msgs, times and chans would take in half-full pages (twice their size; a large value
 * its whole overflow pages), and a message is kept only while that stays within 3/4 of
 * max_bytes, a new counter within 7/8. The rest is room for what LMDB needs beside them:
 * branch pages, copy-on-write copies of the paths a commit changes, free-list records and
 * pages a reader still pins. A message refused for room still moves the counter (a small
 * update within that room), so recoveries across it answer incomplete. Should LMDB still
 * answer MDB_MAP_FULL, the transaction is aborted (nothing half-written) and tried again
 * without the message.
 *
 * Durability. No MDB_WRITEMAP: commits go through pwrite, the file grows only as pages
 * are written, and a full disk is an ENOSPC from pwrite (an error) rather than a SIGBUS on
 * a sparse page of the mapping, so the store's fallocate reservation is not needed; only
 * the lock file, which is mapped shared, is allocated ahead (reserve_file). MDB_NOSYNC:
 * a commit per publish cannot wait for the disk. A killed process loses nothing (its
 * writes are in the page cache); a machine crash may, so history_prepare replaces a file
 * last written before the machine booted, and the new epoch tells clients. */
#include "history.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "namespace.h"
#include "util.h"

#define HIST_MAX_READERS 512
#define HIST_KEY_MAX (NS_CHANNEL_MAX + 1 + 8)
#define HIST_TIME_KEY (8 + HIST_KEY_MAX)
#define HIST_HEAD 17 /* expires_at, ts, from_len */
#define HIST_NODE 10 /* LMDB's node header and its slot in the page's index */

struct history {
    MDB_env *env;
    MDB_dbi msgs, times, chans, meta;
    MDB_txn *rtxn;  /* the read transaction, reset between calls and renewed */
    bool rtxn_busy; /* in use: a history_since callback is running */
    size_t psize;
    uint64_t msg_budget, chan_budget; /* what "bytes" may reach with a message, a counter */
    char epoch[HISTORY_EPOCH_LEN + 1];
    char error[256];
};

/* ---- encoding ---- */

static MDB_val
hval(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

static void
put_be64(char *p, uint64_t u)
{
    for (int i = 7; i >= 0; i--, u >>= 8)
        p[i] = (char)(u & 0xff);
}

static uint64_t
get_be64(const void *v)
{
    const unsigned char *p = v;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | p[i];
    return u;
}

/* The msgs key of (ch, offset); returns its length. */
static size_t
msg_key(char out[HIST_KEY_MAX], const char *ch, size_t len, uint64_t offset)
{
    memcpy(out, ch, len);
    out[len] = '\0';
    put_be64(out + len + 1, offset);
    return len + 9;
}

/* Whether k is a msgs key of ch (len bytes). */
static bool
key_of(const MDB_val *k, const char *ch, size_t len)
{
    return k->mv_size == len + 9 && memcmp(k->mv_data, ch, len) == 0 &&
           ((const char *)k->mv_data)[len] == '\0';
}

static uint64_t
key_offset(const MDB_val *k)
{
    return get_be64((const char *)k->mv_data + k->mv_size - 8);
}

static size_t
time_key(char out[HIST_TIME_KEY], uint64_t expires_at, const void *mkey, size_t mlen)
{
    put_be64(out, expires_at);
    memcpy(out + 8, mkey, mlen);
    return 8 + mlen;
}

/* What one entry costs in the account (see the file comment). */
static uint64_t
entry_cost(const struct history *h, size_t klen, size_t vlen)
{
    size_t node = HIST_NODE + klen + vlen;
    if (node <= h->psize / 2)
        return 2 * (uint64_t)node;
    uint64_t pages = (vlen + 16 + h->psize - 1) / h->psize; /* an overflow page's header */
    return 2 * (uint64_t)(HIST_NODE + klen + 8) + pages * h->psize;
}

/* A message: its msgs entry and its times entry. */
static uint64_t
msg_cost(const struct history *h, size_t klen, size_t vlen)
{
    return entry_cost(h, klen, vlen) + entry_cost(h, 8 + klen, 0);
}

/* ---- errors and transactions ---- */

static int
fail(struct history *h, int rc, const char *what)
{
    errf(h->error, sizeof h->error, "history: %s: %s", what, mdb_strerror(rc));
    return rc == MDB_MAP_FULL ? HISTORY_FULL : HISTORY_ERROR;
}

/* The same, for the calls that answer only 0 or -1. */
static int
failed(struct history *h, int rc, const char *what)
{
    (void)fail(h, rc, what);
    return -1;
}

static int
begin(struct history *h, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(h->env, NULL, flags, txn);
    /* Another process grew the map (a larger max_bytes): adopt its size, which is only
     * allowed while no read of ours is in progress. */
    if (rc == MDB_MAP_RESIZED && !h->rtxn_busy) {
        rc = mdb_env_set_mapsize(h->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(h->env, NULL, flags, txn);
    }
    return rc;
}

/* The reusable read transaction; a call from inside a callback gets one of its own. */
static int
read_begin(struct history *h, MDB_txn **txn)
{
    if (h->rtxn_busy)
        return begin(h, MDB_RDONLY, txn);
    if (h->rtxn != NULL && mdb_txn_renew(h->rtxn) != 0) {
        mdb_txn_abort(h->rtxn);
        h->rtxn = NULL;
    }
    if (h->rtxn == NULL) {
        int rc = begin(h, MDB_RDONLY, &h->rtxn);
        if (rc != 0) {
            h->rtxn = NULL;
            return rc;
        }
    }
    h->rtxn_busy = true;
    *txn = h->rtxn;
    return 0;
}

static void
read_end(struct history *h, MDB_txn *txn)
{
    if (txn == h->rtxn) {
        mdb_txn_reset(txn);
        h->rtxn_busy = false;
    } else {
        mdb_txn_abort(txn);
    }
}

/* A meta or chans value of 8 bytes; 0 when absent. */
static int
get_u64(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, uint64_t *out, bool *found)
{
    MDB_val key = hval(k, klen), v;
    int rc = mdb_get(txn, dbi, &key, &v);
    *out = 0;
    if (found != NULL)
        *found = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && v.mv_size != 8)
        return MDB_CORRUPTED;
    if (rc == 0)
        *out = get_be64(v.mv_data);
    return rc;
}

static int
put_u64(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, uint64_t u)
{
    char b[8];
    put_be64(b, u);
    MDB_val key = hval(k, klen), v = hval(b, sizeof b);
    return mdb_put(txn, dbi, &key, &v, 0);
}

static bool
channel_ok(struct history *h, const char *ch, size_t len)
{
    if (ch != NULL && ns_channel_ok(ch, len))
        return true;
    errf(h->error, sizeof h->error, "history: channel: 1 to %d bytes of [A-Za-z0-9_.:@-]",
         NS_CHANNEL_MAX);
    return false;
}

/* ---- messages ---- */

/* Delete the message under cur (key k, value v) and its times entry, and take its cost
 * off *bytes. k and v point into pages the delete changes, so they are copied first. */
static int
drop_msg(struct history *h, MDB_txn *txn, MDB_cursor *cur, const MDB_val *k, const MDB_val *v,
         uint64_t *bytes)
{
    char tk[HIST_TIME_KEY];
    if (k->mv_size > HIST_KEY_MAX || v->mv_size < HIST_HEAD)
        return MDB_CORRUPTED;
    uint64_t cost = msg_cost(h, k->mv_size, v->mv_size);
    MDB_val t = hval(tk, time_key(tk, get_be64(v->mv_data), k->mv_data, k->mv_size));
    int rc = mdb_cursor_del(cur, 0);
    if (rc == 0)
        rc = mdb_del(txn, h->times, &t, NULL);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    *bytes = *bytes > cost ? *bytes - cost : 0;
    return rc;
}

/* Drop ch's messages from the front while their offset is at most cut or they have
 * expired by now (those behind a live one go with the sweep). */
static int
trim(struct history *h, MDB_txn *txn, const char *ch, size_t len, uint64_t cut, int64_t now,
     uint64_t *bytes)
{
    MDB_cursor *cur;
    char mk[HIST_KEY_MAX];
    int rc = mdb_cursor_open(txn, h->msgs, &cur);
    if (rc != 0)
        return rc;
    MDB_val k = hval(mk, msg_key(mk, ch, len, 0)), v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) { /* after a delete: the one behind */
        if (!key_of(&k, ch, len) || v.mv_size < HIST_HEAD)
            break;
        if (key_offset(&k) > cut && (int64_t)get_be64(v.mv_data) > now)
            break;
        if ((rc = drop_msg(h, txn, cur, &k, &v, bytes)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Store m as ch's message at offset, until expires_at. */
static int
put_msg(struct history *h, MDB_txn *txn, const char *ch, size_t len, uint64_t offset,
        const struct history_msg *m, int64_t expires_at, uint64_t *bytes)
{
    char mk[HIST_KEY_MAX], tk[HIST_TIME_KEY];
    size_t klen = msg_key(mk, ch, len, offset);
    MDB_val k = hval(mk, klen), v = hval(NULL, HIST_HEAD + m->from_len + m->data_len);
    MDB_val t = hval(tk, time_key(tk, (uint64_t)expires_at, mk, klen)), empty = hval("", 0);
    /* MDB_RESERVE: LMDB hands us the space in its page, and we fill it. */
    int rc = mdb_put(txn, h->msgs, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return rc;
    char *p = v.mv_data;
    put_be64(p, (uint64_t)expires_at);
    put_be64(p + 8, (uint64_t)m->ts);
    p[16] = (char)m->from_len;
    if (m->from_len > 0)
        memcpy(p + HIST_HEAD, m->from, m->from_len);
    if (m->data_len > 0)
        memcpy(p + HIST_HEAD + m->from_len, m->data, m->data_len);
    *bytes += msg_cost(h, klen, v.mv_size);
    return mdb_put(txn, h->times, &t, &empty, 0);
}

/* ---- append ---- */

struct append {
    const char *ch;
    size_t len;
    const struct history_msg *m;
    int keep;
    int64_t ttl, now;
    uint64_t offset; /* the one assigned */
    int status;      /* 0, HISTORY_FULL or HISTORY_TOO_BIG: whether m was kept */
};

/* The body of an append: expire, count, trim, store (when keep_msg and there is room),
 * and the account. Returns an LMDB code; a->status says what became of the message. */
static int
append_txn(struct history *h, MDB_txn *txn, struct append *a, bool keep_msg)
{
    uint64_t bytes, top;
    bool found;
    int rc = get_u64(txn, h->meta, "bytes", 5, &bytes, NULL);
    if (rc == 0)
        rc = get_u64(txn, h->chans, a->ch, a->len, &top, &found);
    if (rc != 0)
        return rc;
    if (!found) {
        uint64_t cost = entry_cost(h, a->len, 8);
        if (bytes + cost > h->chan_budget) {
            a->status = HISTORY_FULL;
            return MDB_MAP_FULL; /* not even a counter: nothing to write */
        }
        bytes += cost;
    }
    a->offset = top + 1;
    uint64_t cut = a->offset > (uint64_t)a->keep ? a->offset - (uint64_t)a->keep : 0;
    if ((rc = trim(h, txn, a->ch, a->len, cut, a->now, &bytes)) != 0)
        return rc;
    size_t klen = a->len + 9, vlen = HIST_HEAD + a->m->from_len + a->m->data_len;
    if (a->status == 0 && (!keep_msg || bytes + msg_cost(h, klen, vlen) > h->msg_budget))
        a->status = HISTORY_FULL;
    if (a->status == 0)
        rc = put_msg(h, txn, a->ch, a->len, a->offset, a->m, a->now + a->ttl, &bytes);
    if (rc == 0)
        rc = put_u64(txn, h->chans, a->ch, a->len, a->offset);
    if (rc == 0)
        rc = put_u64(txn, h->meta, "bytes", 5, bytes);
    return rc;
}

static int
append_try(struct history *h, struct append *a, bool keep_msg)
{
    MDB_txn *txn;
    int rc = begin(h, 0, &txn);
    if (rc != 0)
        return rc;
    rc = append_txn(h, txn, a, keep_msg);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static int
append_args(struct history *h, const char *ch, size_t len, const struct history_msg *m, int keep,
            int64_t ttl)
{
    if (!channel_ok(h, ch, len))
        return HISTORY_ERROR;
    if (m == NULL || (m->from == NULL && m->from_len > 0) || (m->data == NULL && m->data_len > 0)) {
        errf(h->error, sizeof h->error, "history: a message with NULL bytes");
        return HISTORY_ERROR;
    }
    if (keep < 1 || keep > NS_HISTORY_MAX || ttl <= 0) {
        errf(h->error, sizeof h->error, "history: keep 1 to %d and a ttl > 0", NS_HISTORY_MAX);
        return HISTORY_ERROR;
    }
    if (m->data_len > HISTORY_DATA_MAX || m->from_len > HISTORY_FROM_MAX) {
        errf(h->error, sizeof h->error,
             "history: message of %zu bytes from a name of %zu: at most %zu and %d",
             m->data_len, m->from_len, HISTORY_DATA_MAX, HISTORY_FROM_MAX);
        return HISTORY_TOO_BIG;
    }
    return 0;
}

int
history_append(struct history *h, const char *ch, size_t len, const struct history_msg *m,
               int keep, int64_t ttl, int64_t now, uint64_t *offset)
{
    struct append a = {.ch = ch, .len = len, .m = m, .keep = keep, .ttl = ttl, .now = now};
    *offset = 0;
    int status = append_args(h, ch, len, m, keep, ttl);
    if (status == HISTORY_ERROR)
        return status;
    a.status = status;
    int rc = append_try(h, &a, true);
    bool lmdb_full = rc == MDB_MAP_FULL && a.status == 0;
    if (lmdb_full) {
        /* LMDB ran out of pages before the account did (a long read pins freed pages):
         * nothing was written; record the offset without the message, which needs far
         * less. */
        a.status = HISTORY_FULL;
        rc = append_try(h, &a, false);
    }
    int code = rc != 0 ? fail(h, rc, "append") : 0;
    if (a.status == HISTORY_FULL)
        errf(h->error, sizeof h->error, "history: the file is full (%s)%s",
             lmdb_full ? "MDB_MAP_FULL" : "max_bytes",
             rc != 0 ? "; not even the offset could be written" : "");
    if (rc != 0)
        return a.status != 0 ? a.status : code;
    *offset = a.offset;
    return a.status;
}

void
history_append_many(struct history *h, struct history_append *v, size_t n, int64_t now)
{
    MDB_txn *txn = NULL;
    int rc = begin(h, 0, &txn);
    bool begun = rc == 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct history_append *e = &v[i];
        struct append a = {
            .ch = e->ch, .len = e->len, .m = &e->m, .keep = e->keep, .ttl = e->ttl, .now = now};
        e->offset = 0;
        e->status = a.status = append_args(h, e->ch, e->len, &e->m, e->keep, e->ttl);
        if (e->status == HISTORY_ERROR)
            continue;
        /* A message the account refuses is still numbered (its status says so); an
         * LMDB failure spoils the whole transaction. */
        if ((rc = append_txn(h, txn, &a, true)) == 0) {
            e->offset = a.offset;
            e->status = a.status;
        }
    }
    if (begun && rc == 0 && mdb_txn_commit(txn) == 0) /* a commit frees txn, even failing */
        return;
    if (begun && rc != 0)
        mdb_txn_abort(txn);
    for (size_t i = 0; i < n; i++) /* one by one, each as far as it can go */
        v[i].status = history_append(h, v[i].ch, v[i].len, &v[i].m, v[i].keep, v[i].ttl, now,
                                     &v[i].offset);
}

/* ---- reads ---- */

/* The start of a read of ch: the name checked and the read transaction begun. 0, or -1
 * with the error said. */
static int
read_channel(struct history *h, const char *ch, size_t len, MDB_txn **txn)
{
    if (!channel_ok(h, ch, len))
        return -1;
    int rc = read_begin(h, txn);
    return rc != 0 ? failed(h, rc, "mdb_txn_begin") : 0;
}

int
history_top(struct history *h, const char *ch, size_t len, uint64_t *top)
{
    MDB_txn *txn;
    *top = 0;
    if (read_channel(h, ch, len, &txn) < 0)
        return -1;
    int rc = get_u64(txn, h->chans, ch, len, top, NULL);
    read_end(h, txn);
    return rc == 0 ? 0 : failed(h, rc, "top");
}

struct since {
    const char *ch;
    size_t len;
    uint64_t since, top;
    size_t limit;
    int64_t now;
    void (*cb)(void *arg, const struct history_msg *m);
    void *arg;
    bool complete;
};

static bool
msg_decode(const MDB_val *k, const MDB_val *v, struct history_msg *m)
{
    const char *p = v->mv_data;
    if (v->mv_size < HIST_HEAD || (unsigned char)p[16] > v->mv_size - HIST_HEAD)
        return false;
    m->offset = key_offset(k);
    m->ts = (int64_t)get_be64(p + 8);
    m->from_len = (unsigned char)p[16];
    m->from = p + HIST_HEAD;
    m->data = m->from + m->from_len;
    m->data_len = v->mv_size - HIST_HEAD - m->from_len;
    return true;
}

/* Walk ch's messages from since + 1: each live one to cb, checking that they follow on
 * without a gap. */
static int
since_walk(struct history *h, MDB_txn *txn, struct since *s)
{
    MDB_cursor *cur;
    char mk[HIST_KEY_MAX];
    uint64_t want = s->since + 1;
    size_t n = 0;
    int rc = mdb_cursor_open(txn, h->msgs, &cur);
    if (rc != 0)
        return rc;
    MDB_val k = hval(mk, msg_key(mk, s->ch, s->len, want)), v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct history_msg m;
        if (!key_of(&k, s->ch, s->len))
            break;
        if (!msg_decode(&k, &v, &m)) {
            rc = MDB_CORRUPTED;
            break;
        }
        if ((int64_t)get_be64(v.mv_data) <= s->now)
            continue; /* expired, not yet swept: as good as gone */
        if (m.offset != want)
            s->complete = false;
        if (n == s->limit)
            break;
        s->cb(s->arg, &m);
        n++;
        want = m.offset + 1;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (n < s->limit && want != s->top + 1)
        s->complete = false; /* the newest were not kept */
    return 0;
}

int
history_since(struct history *h, const char *ch, size_t len, uint64_t since, size_t limit,
              int64_t now, void (*cb)(void *arg, const struct history_msg *m), void *arg,
              bool *complete, uint64_t *top)
{
    struct since s = {.ch = ch, .len = len, .since = since, .limit = limit, .now = now,
                      .cb = cb, .arg = arg, .complete = true};
    MDB_txn *txn;
    *complete = false;
    *top = 0;
    if (read_channel(h, ch, len, &txn) < 0)
        return -1;
    int rc = get_u64(txn, h->chans, ch, len, &s.top, NULL);
    if (rc == 0 && since >= s.top)
        s.complete = since == s.top;
    else if (rc == 0)
        rc = since_walk(h, txn, &s);
    read_end(h, txn);
    if (rc != 0)
        return failed(h, rc, "since");
    *complete = s.complete;
    *top = s.top;
    return 0;
}

/* ---- the sweep ---- */

/* Drop the message a due times entry (key tk) names, or the entry alone if the message
 * went another way. */
static int
expire_one(struct history *h, MDB_txn *txn, MDB_cursor *mcur, const MDB_val *tk, uint64_t *bytes)
{
    char t[HIST_TIME_KEY];
    memcpy(t, tk->mv_data, tk->mv_size);
    MDB_val k = hval(t + 8, tk->mv_size - 8), v, tkey = hval(t, tk->mv_size);
    int rc = mdb_cursor_get(mcur, &k, &v, MDB_SET_KEY);
    if (rc == 0 && v.mv_size >= HIST_HEAD && get_be64(v.mv_data) == get_be64(t))
        return drop_msg(h, txn, mcur, &k, &v, bytes);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    rc = mdb_del(txn, h->times, &tkey, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
sweep_txn(struct history *h, MDB_txn *txn, int64_t now, int max, int *n)
{
    MDB_cursor *tcur, *mcur;
    uint64_t bytes;
    int rc = get_u64(txn, h->meta, "bytes", 5, &bytes, NULL);
    if (rc != 0 || (rc = mdb_cursor_open(txn, h->times, &tcur)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, h->msgs, &mcur)) != 0) {
        mdb_cursor_close(tcur);
        return rc;
    }
    while (*n < max) {
        MDB_val k, v;
        if ((rc = mdb_cursor_get(tcur, &k, &v, MDB_FIRST)) != 0)
            break;
        if (k.mv_size <= 8 || k.mv_size > HIST_TIME_KEY || (int64_t)get_be64(k.mv_data) > now)
            break;
        if ((rc = expire_one(h, txn, mcur, &k, &bytes)) != 0)
            break;
        (*n)++;
    }
    mdb_cursor_close(mcur);
    mdb_cursor_close(tcur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    return rc == 0 && *n > 0 ? put_u64(txn, h->meta, "bytes", 5, bytes) : rc;
}

int
history_sweep(struct history *h, int64_t now, int max)
{
    MDB_txn *txn;
    int dead, n = 0;
    /* A worker killed while reading leaves its reader slot behind, and a stale slot stops
     * LMDB from reusing pages; the sweep's timer is a good moment to clear them. */
    (void)mdb_reader_check(h->env, &dead);
    if (max <= 0)
        return 0;
    int rc = begin(h, 0, &txn);
    if (rc != 0)
        return failed(h, rc, "mdb_txn_begin");
    if ((rc = sweep_txn(h, txn, now, max, &n)) != 0) {
        mdb_txn_abort(txn);
        return failed(h, rc, "sweep");
    }
    if (n == 0) {
        mdb_txn_abort(txn); /* nothing due: no commit */
        return 0;
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? n : failed(h, rc, "sweep commit");
}

/* ---- open, prepare, close ---- */

static int
env_open(const char *path, size_t max_bytes, MDB_env **out)
{
    MDB_env *env;
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC;
    int rc = mdb_env_create(&env);
    if (rc != 0)
        return rc;
    if ((rc = mdb_env_set_mapsize(env, max_bytes)) != 0 || (rc = mdb_env_set_maxdbs(env, 4)) != 0 ||
        (rc = mdb_env_set_maxreaders(env, HIST_MAX_READERS)) != 0 ||
        (rc = mdb_env_open(env, path, flags, 0600)) != 0) {
        mdb_env_close(env);
        return rc;
    }
    *out = env;
    return 0;
}

static int
new_epoch(char out[HISTORY_EPOCH_LEN + 1])
{
    unsigned char r[HISTORY_EPOCH_LEN / 2];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return -1;
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* Open (creating if need be) the four databases and read the epoch, making it when the
 * file is new. */
static int
dbs_open(struct history *h)
{
    MDB_txn *txn;
    MDB_val k = hval("epoch", 5), v;
    int rc = mdb_txn_begin(h->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_dbi_open(txn, "msgs", MDB_CREATE, &h->msgs)) == 0 &&
        (rc = mdb_dbi_open(txn, "times", MDB_CREATE, &h->times)) == 0 &&
        (rc = mdb_dbi_open(txn, "chans", MDB_CREATE, &h->chans)) == 0 &&
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &h->meta)) == 0)
        rc = mdb_get(txn, h->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = new_epoch(h->epoch) == 0 ? 0 : MDB_PANIC;
        v = hval(h->epoch, HISTORY_EPOCH_LEN);
        if (rc == 0)
            rc = mdb_put(txn, h->meta, &k, &v, 0);
    } else if (rc == 0 && v.mv_size == HISTORY_EPOCH_LEN) {
        memcpy(h->epoch, v.mv_data, HISTORY_EPOCH_LEN);
    } else if (rc == 0) {
        rc = MDB_CORRUPTED;
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

/* Open path; an LMDB code, with *out set on success. */
static int
hist_open(const char *path, size_t max_bytes, struct history **out)
{
    struct history *h = calloc(1, sizeof *h);
    MDB_stat ms;
    int dead, rc;
    if (h == NULL)
        return ENOMEM;
    if ((rc = env_open(path, max_bytes, &h->env)) != 0) {
        free(h);
        return rc;
    }
    if ((rc = mdb_reader_check(h->env, &dead)) != 0 || (rc = dbs_open(h)) != 0 ||
        (rc = mdb_env_stat(h->env, &ms)) != 0) {
        mdb_env_close(h->env);
        free(h);
        return rc;
    }
    h->psize = ms.ms_psize;
    h->msg_budget = (uint64_t)max_bytes / 4 * 3;
    h->chan_budget = (uint64_t)max_bytes / 8 * 7;
    *out = h;
    return 0;
}

static int
size_ok(const char *path, size_t max_bytes, char *err, size_t errlen)
{
    if (max_bytes >= HISTORY_MIN_BYTES)
        return 0;
    errf(err, errlen, "history %s: max_bytes: at least %zu", path, HISTORY_MIN_BYTES);
    return -1;
}

struct history *
history_open(const char *path, size_t max_bytes, char *err, size_t errlen)
{
    struct history *h = NULL;
    if (size_ok(path, max_bytes, err, errlen) != 0)
        return NULL;
    int rc = hist_open(path, max_bytes, &h);
    if (rc != 0) {
        errf(err, errlen, "history %s: %s", path, mdb_strerror(rc));
        return NULL;
    }
    return h;
}

void
history_close(struct history *h)
{
    if (h == NULL)
        return;
    if (h->rtxn != NULL)
        mdb_txn_abort(h->rtxn);
    mdb_env_close(h->env);
    free(h);
}

/* When the machine booted (Unix seconds, from /proc/stat), or 0 if unknown. */
static long long
boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    long long t = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "btime ", 6) == 0) {
            t = strtoll(line + 6, NULL, 10);
            break;
        }
    (void)fclose(f);
    return t;
}

/* Whether the file at path (if any) must give way to a new one: it was last written
 * before this boot, so commits that no fsync made durable may be missing from it. */
static bool
from_before_boot(const char *path)
{
    struct stat sb;
    long long boot = boot_time();
    return stat(path, &sb) == 0 && boot > 0 && (long long)sb.st_mtime < boot;
}

static int
remove_file(const char *path, char *err, size_t errlen)
{
    char lock[4096];
    snprintf(lock, sizeof lock, "%s-lock", path);
    if ((unlink(path) != 0 && errno != ENOENT) || (unlink(lock) != 0 && errno != ENOENT)) {
        errf(err, errlen, "history %s: cannot replace it: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The disk must have room for the whole map (counting what the file already holds). */
static int
check_space(const char *path, size_t max_bytes, char *err, size_t errlen)
{
    struct statvfs vfs;
    struct stat sb;
    if (statvfs(path, &vfs) != 0 || stat(path, &sb) != 0) {
        errf(err, errlen, "history %s: %s", path, strerror(errno));
        return -1;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize + (uint64_t)sb.st_blocks * 512;
    if (avail >= max_bytes)
        return 0;
    uint64_t mib = (uint64_t)1024 * 1024;
    errf(err, errlen, "history %s: the disk has %llu MiB free but the history may grow to %llu MiB",
         path, (unsigned long long)(avail / mib),
         (unsigned long long)((max_bytes + mib - 1) / mib));
    return -1;
}

int
history_prepare(const char *path, size_t max_bytes, char *err, size_t errlen)
{
    struct history *h = NULL;
    char lock[4096];
    if (size_ok(path, max_bytes, err, errlen) != 0)
        return -1;
    if (strlen(path) + 6 > sizeof lock) {
        errf(err, errlen, "history %s: path too long", path);
        return -1;
    }
    if (from_before_boot(path) && remove_file(path, err, errlen) != 0)
        return -1;
    int rc = hist_open(path, max_bytes, &h);
    if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
        rc == MDB_PAGE_NOTFOUND) {
        /* History is a cache of recent messages: an unreadable file is replaced (a new
         * epoch), not a reason to refuse to start. */
        if (remove_file(path, err, errlen) != 0)
            return -1;
        rc = hist_open(path, max_bytes, &h);
    }
    if (rc != 0) {
        errf(err, errlen, "history %s: %s", path, mdb_strerror(rc));
        return -1;
    }
    history_close(h);
    snprintf(lock, sizeof lock, "%s-lock", path);
    if (reserve_file(lock) != 0) {
        errf(err, errlen, "history %s: cannot allocate its lock file: %s", path, strerror(errno));
        return -1;
    }
    return check_space(path, max_bytes, err, errlen);
}

const char *
history_epoch(const struct history *h)
{
    return h->epoch;
}

const char *
history_last_error(const struct history *h)
{
    return h->error;
}

int
history_path(const char *store_path, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s-history", store_path);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
