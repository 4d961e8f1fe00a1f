/* roster_lmdb: the roster in an LMDB file shared by the instance's workers. */
#include "roster_engine.h"

#include <errno.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Address space only: the file grows with what is written (no MDB_WRITEMAP here). */
#define ROSTER_MAP_SIZE ((size_t)1 << 30)
#define ROSTER_MAX_READERS 512
#define ROSTER_SLOT_KEY 2

/* Three databases:
 *   users  user -> conn (sorted duplicates): a user's connections, counted for the limit
 *   chans  channel -> conn NUL user NUL session (sorted duplicates): its members
 *   slots  slot (2 bytes) conn -> user, for a connection, and
 *          slot (2 bytes) conn NUL channel -> the chans value, for a membership:
 *          everything of a worker, together, for the purge */
struct roster_lmdb {
    MDB_env *env;
    MDB_dbi users, chans, slots;
    int slot; /* the worker's, whose entries it writes */
    char error[256];
};

static MDB_val
val(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

static int
fail(struct roster_lmdb *l, int rc, const char *what)
{
    errf(l->error, sizeof l->error, "roster: %s: %s", what, mdb_strerror(rc));
    return -1;
}

/* "conn NUL user NUL session", the value of a membership. */
static size_t
member_encode(const struct roster_member *m, char *out)
{
    size_t a = strlen(m->conn), b = strlen(m->user), c = strlen(m->session);
    memcpy(out, m->conn, a + 1);
    memcpy(out + a + 1, m->user, b + 1);
    memcpy(out + a + b + 2, m->session, c);
    return a + b + c + 2;
}

static int
member_decode(const MDB_val *v, struct roster_member *m)
{
    const char *p = v->mv_data, *end = p + v->mv_size;
    const char *u = memchr(p, '\0', v->mv_size);
    const char *s = u != NULL ? memchr(u + 1, '\0', (size_t)(end - u - 1)) : NULL;
    if (s == NULL || u - p > ROSTER_CONN_MAX || s - u - 1 > ROSTER_USER_MAX ||
        end - s - 1 > ROSTER_SESSION_MAX)
        return -1;
    snprintf(m->conn, sizeof m->conn, "%s", p);
    snprintf(m->user, sizeof m->user, "%s", u + 1);
    snprintf(m->session, sizeof m->session, "%.*s", (int)(end - s - 1), s + 1);
    return 0;
}

/* The slots key of a connection (channel NULL) or of one of its memberships. */
static size_t
slot_key(int slot, const char *conn, const char *channel, size_t len, char *out)
{
    size_t n = strlen(conn);
    out[0] = (char)(slot >> 8);
    out[1] = (char)slot;
    memcpy(out + ROSTER_SLOT_KEY, conn, n);
    n += ROSTER_SLOT_KEY;
    if (channel != NULL) {
        out[n++] = '\0';
        memcpy(out + n, channel, len);
        n += len;
    }
    return n;
}

static int
env_open(const struct conf *c, MDB_env **out)
{
    char path[sizeof c->store_path + 8];
    snprintf(path, sizeof path, "%s-roster", c->store_path);
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != 0) return rc;
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC | MDB_NOMETASYNC;
    if ((rc = mdb_env_set_mapsize(env, ROSTER_MAP_SIZE)) != 0 ||
        (rc = mdb_env_set_maxdbs(env, 3)) != 0 ||
        (rc = mdb_env_set_maxreaders(env, ROSTER_MAX_READERS)) != 0 ||
        (rc = mdb_env_open(env, path, flags, 0600)) != 0) {
        mdb_env_close(env);
        return rc;
    }
    int dead;
    mdb_reader_check(env, &dead);
    *out = env;
    return 0;
}

static int
dbs_open(MDB_txn *txn, struct roster_lmdb *l)
{
    int rc;
    if ((rc = mdb_dbi_open(txn, "users", MDB_CREATE | MDB_DUPSORT, &l->users)) != 0 ||
        (rc = mdb_dbi_open(txn, "chans", MDB_CREATE | MDB_DUPSORT, &l->chans)) != 0 ||
        (rc = mdb_dbi_open(txn, "slots", MDB_CREATE, &l->slots)) != 0)
        return rc;
    return 0;
}

struct roster_lmdb *
roster_lmdb_open(const struct conf *c, int slot, char *err, size_t errlen)
{
    struct roster_lmdb *l = calloc(1, sizeof *l);
    MDB_txn *txn;
    int rc;
    if (l == NULL) {
        errf(err, errlen, "roster: out of memory");
        return NULL;
    }
    if ((rc = env_open(c, &l->env)) != 0) {
        errf(err, errlen, "roster: %s-roster: %s", c->store_path, mdb_strerror(rc));
        free(l);
        return NULL;
    }
    if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0 || (rc = dbs_open(txn, l)) != 0 ||
        (rc = mdb_txn_commit(txn)) != 0) {
        if (rc != 0 && txn != NULL) mdb_txn_abort(txn);
        errf(err, errlen, "roster: %s-roster: %s", c->store_path, mdb_strerror(rc));
        mdb_env_close(l->env);
        free(l);
        return NULL;
    }
    l->slot = slot;
    return l;
}

void
roster_lmdb_close(struct roster_lmdb *l)
{
    if (l == NULL) return;
    mdb_env_close(l->env);
    free(l);
}

int
roster_prepare(const struct conf *c, bool fresh, char *err, size_t errlen)
{
    struct roster_lmdb *l = roster_lmdb_open(c, 0, err, errlen);
    if (l == NULL) return -1;
    char lock[sizeof c->store_path + 16];
    snprintf(lock, sizeof lock, "%s-roster-lock", c->store_path);
    if (reserve_file(lock) != 0) {
        errf(err, errlen, "roster: cannot allocate %s: %s", lock, strerror(errno));
        roster_lmdb_close(l);
        return -1;
    }
    MDB_txn *txn;
    int rc = 0;
    if (fresh &&
        ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0 ||
         (rc = mdb_drop(txn, l->users, 0)) != 0 || (rc = mdb_drop(txn, l->chans, 0)) != 0 ||
         (rc = mdb_drop(txn, l->slots, 0)) != 0 || (rc = mdb_txn_commit(txn)) != 0))
        errf(err, errlen, "roster: emptying %s-roster: %s", c->store_path, mdb_strerror(rc));
    roster_lmdb_close(l);
    return rc == 0 ? 0 : -1;
}

/* ---- connections ---- */

int
roster_lmdb_connect(struct roster_lmdb *l, const char *conn, const char *user, int max)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = val(user, strlen(user)), v = val(conn, strlen(conn));
    size_t have = 0;
    char sk[ROSTER_SLOT_KEY + ROSTER_CONN_MAX];
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0) return fail(l, rc, "begin");
    if ((rc = mdb_cursor_open(txn, l->users, &cur)) == 0) {
        MDB_val kk = k, vv;
        if (mdb_cursor_get(cur, &kk, &vv, MDB_SET_KEY) == 0) rc = mdb_cursor_count(cur, &have);
        mdb_cursor_close(cur);
    }
    if (rc == 0 && have >= (size_t)max) {
        mdb_txn_abort(txn);
        return 0;
    }
    MDB_val skv = val(sk, slot_key(l->slot, conn, NULL, 0, sk));
    if (rc == 0) rc = mdb_put(txn, l->users, &k, &v, MDB_NODUPDATA);
    if (rc == 0) rc = mdb_put(txn, l->slots, &skv, &k, 0);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc == 0 ? 1 : fail(l, rc, "connect");
}

/* Delete what one slots entry stands for: a user's connection, or a membership. */
static int
slot_entry_delete(struct roster_lmdb *l, MDB_txn *txn, const MDB_val *key, const MDB_val *value)
{
    const char *k = key->mv_data;
    const char *nul = memchr(k + ROSTER_SLOT_KEY, '\0', key->mv_size - ROSTER_SLOT_KEY);
    MDB_val a, b;
    int rc;
    if (nul == NULL) { /* a connection: users user -> conn */
        a = *value;
        b = val(k + ROSTER_SLOT_KEY, key->mv_size - ROSTER_SLOT_KEY);
        rc = mdb_del(txn, l->users, &a, &b);
    } else { /* a membership: chans channel -> member */
        a = val(nul + 1, (size_t)(k + key->mv_size - nul - 1));
        b = *value;
        rc = mdb_del(txn, l->chans, &a, &b);
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Delete every slots entry whose key starts with prefix, with what each stands for. */
static int
delete_prefixed(struct roster_lmdb *l, MDB_txn *txn, const char *prefix, size_t plen, int *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, l->slots, &cur);
    if (rc != 0) return rc;
    MDB_val k = val(prefix, plen), v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) { /* after a delete: the next one */
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) break;
        /* A connection's own key is a prefix of its memberships' keys: match whole ids. */
        if (k.mv_size > plen && plen > ROSTER_SLOT_KEY && ((const char *)k.mv_data)[plen] != '\0')
            break;
        if ((rc = slot_entry_delete(l, txn, &k, &v)) != 0 || (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        (*n)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

void
roster_lmdb_disconnect(struct roster_lmdb *l, const char *conn)
{
    MDB_txn *txn;
    char sk[ROSTER_SLOT_KEY + ROSTER_CONN_MAX];
    int n = 0, rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0) {
        fail(l, rc, "begin");
        return;
    }
    rc = delete_prefixed(l, txn, sk, slot_key(l->slot, conn, NULL, 0, sk), &n);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc != 0) fail(l, rc, "disconnect");
}

int
roster_lmdb_purge_slot(struct roster_lmdb *l, int slot)
{
    MDB_txn *txn;
    char prefix[ROSTER_SLOT_KEY] = {(char)(slot >> 8), (char)slot};
    int n = 0, rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0) return fail(l, rc, "begin");
    rc = delete_prefixed(l, txn, prefix, sizeof prefix, &n);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc == 0 ? n : fail(l, rc, "purge");
}

/* One slots entry of ours to the caller: a connection (conn -> user) or a membership
 * (conn NUL channel -> member). Malformed entries are skipped. */
static void
slot_entry_give(const MDB_val *k, const MDB_val *v, roster_conn_fn conn,
                roster_membership_fn member, void *arg)
{
    const char *p = (const char *)k->mv_data + ROSTER_SLOT_KEY;
    size_t n = k->mv_size - ROSTER_SLOT_KEY;
    const char *nul = memchr(p, '\0', n);
    struct roster_member m;
    if (nul == NULL) {
        char id[ROSTER_CONN_MAX + 1], user[ROSTER_USER_MAX + 1];
        if (n > ROSTER_CONN_MAX || v->mv_size > ROSTER_USER_MAX) return;
        snprintf(id, sizeof id, "%.*s", (int)n, p);
        snprintf(user, sizeof user, "%.*s", (int)v->mv_size, (const char *)v->mv_data);
        conn(arg, id, user);
    } else if (member_decode(v, &m) == 0) {
        member(arg, nul + 1, (size_t)(p + n - nul - 1), &m);
    }
}

int
roster_lmdb_each_own(struct roster_lmdb *l, roster_conn_fn conn, roster_membership_fn member,
                     void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    char prefix[ROSTER_SLOT_KEY] = {(char)(l->slot >> 8), (char)l->slot};
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return fail(l, rc, "begin");
    if ((rc = mdb_cursor_open(txn, l->slots, &cur)) != 0) {
        mdb_txn_abort(txn);
        return fail(l, rc, "cursor");
    }
    MDB_val k = val(prefix, sizeof prefix), v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= sizeof prefix || memcmp(k.mv_data, prefix, sizeof prefix) != 0) break;
        slot_entry_give(&k, &v, conn, member, arg);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : fail(l, rc, "each");
}

/* ---- channels ---- */

static size_t
count_in(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t len)
{
    MDB_cursor *cur;
    MDB_val k = val(key, len), v;
    size_t n = 0;
    if (mdb_cursor_open(txn, dbi, &cur) != 0) return 0;
    if (mdb_cursor_get(cur, &k, &v, MDB_SET_KEY) == 0) mdb_cursor_count(cur, &n);
    mdb_cursor_close(cur);
    return n;
}

int
roster_lmdb_membership(struct roster_lmdb *l, bool join, const char *channel, size_t len,
                       const struct roster_member *m, size_t *count)
{
    MDB_txn *txn;
    char mv[ROSTER_CONN_MAX + ROSTER_USER_MAX + ROSTER_SESSION_MAX + 2];
    char sk[ROSTER_SLOT_KEY + ROSTER_CONN_MAX + 1 + ROSTER_CHANNEL_MAX];
    if (len > ROSTER_CHANNEL_MAX || strlen(m->conn) > ROSTER_CONN_MAX)
        return fail(l, MDB_BAD_VALSIZE, "membership");
    MDB_val ck = val(channel, len), v = val(mv, member_encode(m, mv));
    MDB_val skv = val(sk, slot_key(l->slot, m->conn, channel, len, sk));
    int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
    if (rc != 0) return fail(l, rc, "begin");
    if (join) {
        rc = mdb_put(txn, l->chans, &ck, &v, MDB_NODUPDATA);
        if (rc == MDB_KEYEXIST) rc = 0;
        if (rc == 0) rc = mdb_put(txn, l->slots, &skv, &v, 0);
    } else {
        rc = mdb_del(txn, l->chans, &ck, &v);
        if (rc == 0 || rc == MDB_NOTFOUND) rc = mdb_del(txn, l->slots, &skv, NULL);
        if (rc == MDB_NOTFOUND) rc = 0;
    }
    *count = rc == 0 ? count_in(txn, l->chans, channel, len) : 0;
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc == 0 ? 0 : fail(l, rc, join ? "join" : "leave");
}

size_t
roster_lmdb_count(struct roster_lmdb *l, const char *channel, size_t len)
{
    MDB_txn *txn;
    if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
    size_t n = count_in(txn, l->chans, channel, len);
    mdb_txn_abort(txn);
    return n;
}

int
roster_lmdb_members(struct roster_lmdb *l, const char *channel, size_t len, size_t max,
                    roster_member_cb each, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return fail(l, rc, "begin");
    if ((rc = mdb_cursor_open(txn, l->chans, &cur)) != 0) {
        mdb_txn_abort(txn);
        return fail(l, rc, "cursor");
    }
    MDB_val k = val(channel, len), v;
    int n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0 && (size_t)n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        struct roster_member m;
        if (member_decode(&v, &m) == 0) {
            each(arg, &m);
            n++;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc == 0 || rc == MDB_NOTFOUND ? n : fail(l, rc, "members");
}

const char *
roster_lmdb_last_error(const struct roster_lmdb *l)
{
    return l->error;
}

/* ---- the engine: every answer at once ---- */

static void *
lmdb_open(const struct roster_params *p, char *err, size_t errlen)
{
    return roster_lmdb_open(p->conf, p->base + p->slot, err, errlen);
}

static void
lmdb_close(void *e)
{
    roster_lmdb_close(e);
}

static void
lmdb_connect(void *e, const char *conn, const char *user, int max, roster_admit_cb cb, void *arg)
{
    cb(arg, roster_lmdb_connect(e, conn, user, max));
}

static void
lmdb_disconnect(void *e, const char *conn, const char *user)
{
    (void)user;
    roster_lmdb_disconnect(e, conn);
}

static void
lmdb_join(void *e, const char *channel, size_t len, const struct roster_member *m,
          roster_count_cb cb, void *arg)
{
    size_t n = 0;
    int rc = roster_lmdb_membership(e, true, channel, len, m, &n);
    cb(arg, rc, n);
}

static void
lmdb_leave(void *e, const char *channel, size_t len, const struct roster_member *m,
           roster_count_cb cb, void *arg)
{
    size_t n = 0;
    int rc = roster_lmdb_membership(e, false, channel, len, m, &n);
    cb(arg, rc, n);
}

static size_t
lmdb_count(void *e, const char *channel, size_t len)
{
    return roster_lmdb_count(e, channel, len);
}

static void
lmdb_members(void *e, const char *channel, size_t len, size_t max, roster_member_cb each,
             roster_done_cb done, void *arg)
{
    done(arg, roster_lmdb_members(e, channel, len, max, each, arg) < 0 ? -1 : 0);
}

static void
lmdb_tick(void *e)
{
    (void)e; /* the master purges a dead worker's entries: nothing expires here */
}

static int
lmdb_purge_slot(void *e, int slot)
{
    return roster_lmdb_purge_slot(e, slot);
}

static const char *
lmdb_last_error(const void *e)
{
    return roster_lmdb_last_error(e);
}

const struct roster_ops roster_lmdb_ops = {
    .name = "lmdb",
    .open = lmdb_open,
    .close = lmdb_close,
    .connect = lmdb_connect,
    .disconnect = lmdb_disconnect,
    .join = lmdb_join,
    .leave = lmdb_leave,
    .count = lmdb_count,
    .members = lmdb_members,
    .tick = lmdb_tick,
    .purge_slot = lmdb_purge_slot,
    .last_error = lmdb_last_error,
};
