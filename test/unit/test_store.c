/* store (LMDB engine): every operation, its limits and indexes, and the store shared by
 * processes, including one killed in the middle of its writes. Each test has its own
 * store in a fresh directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "store.h"
#include "suites.h"

struct fx {
    char dir[64];
    struct conf c;
    struct store *st;
};

/* What a callback reported; the session is copied out, since its memory is the store's. */
struct got {
    int calls;
    enum store_status status;
    bool has_session;
    struct session s;
    char data[8192];
    uint64_t n;
    size_t nlist;
    char ids[16][SESSION_ID_LEN + 1];
    int64_t created[16];
};

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void
fx_conf(struct fx *f, int64_t max_sessions, int per_user, int64_t max_bytes)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/sessiond-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    conf_defaults(&f->c);
    snprintf(f->c.store_path, sizeof f->c.store_path, "%s/sessions.db", f->dir);
    f->c.max_sessions = max_sessions;
    f->c.max_sessions_per_user = per_user;
    f->c.session_max_bytes = max_bytes;
    f->st = NULL;
}

static struct store *
fx_open(const struct conf *c)
{
    char err[CONF_ERR_LEN] = "";
    struct store *st = store_open(c, NULL, err, sizeof err);
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
fx_setup(struct fx *f, int64_t max_sessions, int per_user, int64_t max_bytes)
{
    fx_conf(f, max_sessions, per_user, max_bytes);
    fx_prepare(&f->c);
    f->st = fx_open(&f->c);
}

static void
fx_teardown(struct fx *f)
{
    store_close(f->st);
    f->st = NULL;
    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
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

/* Session number n of user, created at now; its id and token hash derive from n. */
static void
mk(struct session *s, int n, const char *user, int64_t now, int64_t ttl, const char *data)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "s%021d", n);
    snprintf(s->user, sizeof s->user, "%s", user);
    memcpy(s->token_hash, &n, sizeof n);
    s->token_hash[SESSION_HASH_LEN - 1] = 0xab;
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
    snprintf(buf, SESSION_ID_LEN + 1, "s%021d", n);
    return buf;
}

/* The id of session number n, in a buffer that lives as long as the enclosing block. */
#define sid(n) sid_fmt((char[SESSION_ID_LEN + 1]){0}, (n))

static enum store_status
t_create(struct store *st, const struct session *s, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_create(st, s, on_session, g);
    ck_assert_int_eq(g->calls, 1);
    ck_assert(g->has_session == (g->status == STORE_OK));
    return g->status;
}

static enum store_status
t_new(struct store *st, int n, const char *user, int64_t now, int64_t ttl, const char *data)
{
    struct session s;
    struct got g;
    mk(&s, n, user, now, ttl, data);
    return t_create(st, &s, &g);
}

static enum store_status
t_get(struct store *st, const char *id, int64_t now, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_get(st, id, now, on_session, g);
    ck_assert_int_eq(g->calls, 1);
    ck_assert(g->has_session == (g->status == STORE_OK));
    return g->status;
}

static enum store_status
t_token(struct store *st, int n, int64_t now, struct got *g)
{
    struct session s;
    mk(&s, n, "x", 0, 0, "");
    memset(g, 0, sizeof *g);
    store_get_by_token(st, s.token_hash, now, on_session, g);
    ck_assert_int_eq(g->calls, 1);
    return g->status;
}

static enum store_status
t_update(struct store *st, const char *id, int64_t now, const struct store_change *ch,
         struct got *g)
{
    memset(g, 0, sizeof *g);
    store_update(st, id, now, ch, on_session, g);
    ck_assert_int_eq(g->calls, 1);
    ck_assert(g->has_session == (g->status == STORE_OK));
    return g->status;
}

static enum store_status
t_patch(struct store *st, const char *id, int64_t now, const char *patch, uint64_t if_version,
        struct got *g)
{
    struct store_change ch = {.patch = patch, .patch_len = strlen(patch),
                              .if_version = if_version};
    return t_update(st, id, now, &ch, g);
}

static enum store_status
t_delete(struct store *st, const char *id, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_delete(st, id, on_session, g);
    ck_assert_int_eq(g->calls, 1);
    return g->status;
}

static size_t
t_list(struct store *st, const char *user, int64_t now, struct got *g)
{
    memset(g, 0, sizeof *g);
    store_list_user(st, user, now, on_list, g);
    ck_assert_int_eq(g->calls, 1);
    ck_assert_int_eq(g->status, STORE_OK);
    return g->nlist;
}

static uint64_t
t_count(struct store *st)
{
    struct got g = {0};
    store_count(st, on_count, &g);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, STORE_OK);
    return g.n;
}

static uint64_t
t_delete_user(struct store *st, const char *user)
{
    struct got g = {0};
    store_delete_user(st, user, on_count, &g);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, STORE_OK);
    return g.n;
}

START_TEST(round_trip)
{
    struct fx f;
    struct session s;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    mk(&s, 1, "alice@example.com", 1000, 3600, "{\"cart\":[1,2],\"n\":1}");
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_str_eq(g.s.id, s.id);

    ck_assert_int_eq(t_get(f.st, s.id, 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.id, "s000000000000000000001");
    ck_assert_str_eq(g.s.user, "alice@example.com");
    ck_assert_mem_eq(g.s.token_hash, s.token_hash, SESSION_HASH_LEN);
    ck_assert_int_eq(g.s.created_at, 1000);
    ck_assert_int_eq(g.s.expires_at, 4600);
    ck_assert_int_eq(g.s.ttl, 3600);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_uint_eq(g.s.data_len, strlen(s.data));
    ck_assert_str_eq(g.data, "{\"cart\":[1,2],\"n\":1}");

    ck_assert_int_eq(t_token(f.st, 1, 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.id, s.id);
    ck_assert_str_eq(g.s.user, "alice@example.com");
    ck_assert_str_eq(g.data, "{\"cart\":[1,2],\"n\":1}");
    ck_assert_uint_eq(t_count(f.st), 1);

    struct store_info info;
    store_info(f.st, &info);
    ck_assert_str_eq(info.backend, "lmdb");
    ck_assert(info.healthy);
    ck_assert_str_eq(info.circuit, "closed");
    ck_assert_str_eq(store_last_error(f.st), "");
    fx_teardown(&f);
}
END_TEST

START_TEST(sync_mode_round_trip)
{
    struct fx f;
    struct got g;
    fx_conf(&f, 100, 10, 4096);
    f.c.store_sync = true;
    fx_prepare(&f.c);
    f.st = fx_open(&f.c);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(f.st, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{}");
    fx_teardown(&f);
}
END_TEST

START_TEST(unknown_ids)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(f.st, sid(2), 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(f.st, "", 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(f.st, "s0000000000000000000010", 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(f.st, 2, 1000, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(f.st, sid(1), 1000, &g), STORE_OK);
    fx_teardown(&f);
}
END_TEST

START_TEST(expired_is_not_found_before_the_sweep)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 10, "{}"), STORE_OK);
    ck_assert_int_eq(t_get(f.st, sid(1), 1009, &g), STORE_OK);
    ck_assert_int_eq(t_get(f.st, sid(1), 1010, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(f.st, 1, 1009, &g), STORE_OK);
    ck_assert_int_eq(t_token(f.st, 1, 1010, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(f.st, "u", 1010, &g), 0);
    ck_assert_uint_eq(t_count(f.st), 1); /* still there until the sweep */
    fx_teardown(&f);
}
END_TEST

START_TEST(create_refusals)
{
    struct fx f;
    struct session s;
    struct got g;
    char big[80];
    fx_setup(&f, 100, 10, 64);
    snprintf(big, sizeof big, "{\"x\":\"%059d\"}", 0); /* 67 bytes */
    mk(&s, 1, "u", 1000, 60, big);
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_TOO_BIG);
    big[62] = '\0', big[61] = '}', big[60] = '"'; /* 62 bytes */
    mk(&s, 1, "u", 1000, 60, big);
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 1);

    mk(&s, 1, "u", 1000, 60, "{}"); /* the same id again */
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_ERROR);
    ck_assert_str_eq(store_last_error(f.st), "a session with this id exists");
    mk(&s, 2, "u", 1000, 60, "{}");
    s.token_hash[0] = 1; /* session 1's token */
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_ERROR);
    ck_assert_str_eq(store_last_error(f.st), "a session with this token exists");
    mk(&s, 3, "", 1000, 60, "{}");
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_ERROR);
    ck_assert_uint_eq(t_count(f.st), 1);
    ck_assert_uint_eq(t_list(f.st, "u", 1000, &g), 1);

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
    fx_setup(&f, 100, 3, 4096);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(t_new(f.st, i, "u1", 1000 + i, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 4, "u1", 1005, 60, "{}"), STORE_USER_LIMIT);
    ck_assert_uint_eq(t_count(f.st), 3);
    ck_assert_int_eq(t_get(f.st, sid(4), 1005, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(f.st, 4, 1005, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(f.st, "u1", 1005, &g), 3);
    ck_assert_int_eq(t_new(f.st, 5, "u2", 1005, 60, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 4);
    fx_teardown(&f);
}
END_TEST

START_TEST(per_user_limit_ignores_expired)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 3, 4096);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(t_new(f.st, i, "u", 1000, 10, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 10, "u", 1009, 60, "{}"), STORE_USER_LIMIT);
    /* At 1010 all three have expired: the create deletes them and goes on. */
    ck_assert_int_eq(t_new(f.st, 11, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 1);
    ck_assert_int_eq(t_new(f.st, 12, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 13, "u", 1010, 60, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 14, "u", 1010, 60, "{}"), STORE_USER_LIMIT);
    ck_assert_uint_eq(t_count(f.st), 3);
    ck_assert_uint_eq(t_list(f.st, "u", 1010, &g), 3);
    ck_assert_str_eq(g.ids[0], sid(11));
    fx_teardown(&f);
}
END_TEST

START_TEST(total_limit)
{
    struct fx f;
    struct got g;
    char user[16];
    fx_setup(&f, 5, 100, 4096);
    for (int i = 1; i <= 5; i++) {
        snprintf(user, sizeof user, "u%d", i);
        ck_assert_int_eq(t_new(f.st, i, user, 1000, i <= 2 ? 10 : 1000, "{}"), STORE_OK);
    }
    ck_assert_int_eq(t_new(f.st, 6, "u6", 1005, 1000, "{}"), STORE_FULL);
    ck_assert_uint_eq(t_count(f.st), 5);
    ck_assert_int_eq(t_get(f.st, sid(6), 1005, &g), STORE_NOT_FOUND);

    /* Sessions 1 and 2 expired at 1010: the create reclaims them, and only them. */
    ck_assert_int_eq(t_new(f.st, 6, "u6", 1020, 1000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 4);
    for (int i = 3; i <= 6; i++)
        ck_assert_int_eq(t_get(f.st, sid(i), 1020, &g), STORE_OK);
    /* Their index entries went with them: session 1's token is free again. */
    struct session s;
    mk(&s, 7, "u7", 1020, 1000, "{}");
    s.token_hash[0] = 1;
    ck_assert_int_eq(t_create(f.st, &s, &g), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 5);
    /* Nothing has expired now, and nothing live is evicted. */
    ck_assert_int_eq(t_new(f.st, 8, "u8", 1020, 1000, "{}"), STORE_FULL);
    ck_assert_uint_eq(t_count(f.st), 5);
    fx_teardown(&f);
}
END_TEST

START_TEST(update_merge_and_versions)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 100, "{\"a\":1,\"b\":{\"c\":2}}"), STORE_OK);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "{\"b\":{\"c\":null,\"d\":3},\"e\":[1]}", 0, &g),
                     STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_str_eq(g.data, "{\"a\":1,\"b\":{\"d\":3},\"e\":[1]}");
    ck_assert_int_eq(g.s.expires_at, 1100);
    ck_assert_int_eq(g.s.ttl, 100);
    ck_assert_str_eq(g.s.user, "u");
    ck_assert_int_eq(g.s.created_at, 1000);
    ck_assert_int_eq(t_get(f.st, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_str_eq(g.data, "{\"a\":1,\"b\":{\"d\":3},\"e\":[1]}");

    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "{\"a\":5}", 1, &g), STORE_VERSION);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "{\"a\":2}", 2, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_str_eq(g.data, "{\"a\":2,\"b\":{\"d\":3},\"e\":[1]}");
    /* Every patch is a new version, even one that leaves the data as it was (API.md). */
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "{\"a\":2}", 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_int_eq(t_get(f.st, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 4);
    ck_assert_str_eq(g.data, "{\"a\":2,\"b\":{\"d\":3},\"e\":[1]}");
    fx_teardown(&f);
}
END_TEST

START_TEST(update_ttl_and_touch)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 100, "{}"), STORE_OK);
    struct store_change ttl = {.ttl = 500};
    ck_assert_int_eq(t_update(f.st, sid(1), 1010, &ttl, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_int_eq(g.s.ttl, 500);
    ck_assert_int_eq(g.s.expires_at, 1100); /* a new ttl without a touch keeps the expiry */

    struct store_change touch = {.touch = true};
    ck_assert_int_eq(t_update(f.st, sid(1), 1050, &touch, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 2);
    ck_assert_int_eq(g.s.expires_at, 1550);
    ck_assert_str_eq(g.data, "{}");

    struct store_change both = {.ttl = 500, .touch = true}; /* a ttl, even the same: new */
    ck_assert_int_eq(t_update(f.st, sid(1), 1060, &both, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 3);
    ck_assert_int_eq(g.s.expires_at, 1560);

    /* The expiry index moved with the session: the old expiry sweeps nothing. */
    ck_assert_int_eq(store_sweep(f.st, 1100, 10), 0);
    ck_assert_int_eq(t_get(f.st, sid(1), 1559, &g), STORE_OK);
    ck_assert_int_eq(g.s.expires_at, 1560);
    ck_assert_int_eq(store_sweep(f.st, 1559, 10), 0);
    ck_assert_int_eq(store_sweep(f.st, 1560, 10), 1);
    ck_assert_uint_eq(t_count(f.st), 0);
    ck_assert_int_eq(t_update(f.st, sid(1), 1000, &touch, &g), STORE_NOT_FOUND);
    fx_teardown(&f);
}
END_TEST

START_TEST(update_refusals)
{
    struct fx f;
    struct got g;
    char patch[96];
    fx_setup(&f, 100, 10, 64);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 100, "{\"a\":1}"), STORE_OK);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "[1]", 0, &g), STORE_BAD_DATA);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "\"x\"", 0, &g), STORE_BAD_DATA);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, "{\"b\":", 0, &g), STORE_BAD_DATA);
    snprintf(patch, sizeof patch, "{\"b\":\"%051d\"}", 0); /* {"a":1,"b":"0..0"}: 65 bytes */
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, patch, 0, &g), STORE_TOO_BIG);
    snprintf(patch, sizeof patch, "{\"b\":\"%050d\"}", 0); /* 64 bytes: fits */
    ck_assert_int_eq(t_get(f.st, sid(1), 1010, &g), STORE_OK);
    ck_assert_uint_eq(g.s.version, 1);
    ck_assert_str_eq(g.data, "{\"a\":1}");
    ck_assert_int_eq(t_patch(f.st, sid(1), 1010, patch, 0, &g), STORE_OK);
    ck_assert_uint_eq(g.s.data_len, 64);
    ck_assert_uint_eq(g.s.version, 2);

    ck_assert_int_eq(t_patch(f.st, sid(2), 1010, "{}", 0, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_patch(f.st, sid(1), 1100, "{}", 0, &g), STORE_NOT_FOUND); /* expired */
    fx_teardown(&f);
}
END_TEST

START_TEST(delete_one)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u1", 1000, 100, "{\"k\":1}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 2, "u1", 1001, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_delete(f.st, sid(1), &g), STORE_OK);
    ck_assert(g.has_session);
    ck_assert_str_eq(g.s.id, sid(1));
    ck_assert_str_eq(g.s.user, "u1");
    ck_assert_str_eq(g.data, "{\"k\":1}");
    ck_assert_int_eq(t_get(f.st, sid(1), 1010, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_token(f.st, 1, 1010, &g), STORE_NOT_FOUND);
    ck_assert_uint_eq(t_list(f.st, "u1", 1010, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_int_eq(t_delete(f.st, sid(1), &g), STORE_NOT_FOUND);
    ck_assert(!g.has_session);
    ck_assert_uint_eq(t_count(f.st), 1);
    /* No index entry of the deleted session is left to point at a new session that
     * happens to take its id. */
    ck_assert_int_eq(t_new(f.st, 1, "u9", 1000, 100, "{}"), STORE_OK);
    ck_assert_uint_eq(t_list(f.st, "u1", 1010, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(2));
    fx_teardown(&f);
}
END_TEST

START_TEST(delete_user)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u1", 1000, 10, "{}"), STORE_OK); /* expires at 1010 */
    ck_assert_int_eq(t_new(f.st, 2, "u1", 1001, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 3, "u1", 1002, 100, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 4, "u2", 1003, 100, "{}"), STORE_OK);
    ck_assert_uint_eq(t_delete_user(f.st, "u1"), 3);
    ck_assert_uint_eq(t_count(f.st), 1);
    ck_assert_uint_eq(t_list(f.st, "u1", 1005, &g), 0);
    ck_assert_int_eq(t_token(f.st, 2, 1005, &g), STORE_NOT_FOUND);
    ck_assert_int_eq(t_get(f.st, sid(4), 1005, &g), STORE_OK);
    ck_assert_uint_eq(t_delete_user(f.st, "u1"), 0);
    ck_assert_uint_eq(t_delete_user(f.st, "nobody"), 0);
    ck_assert_uint_eq(t_delete_user(f.st, ""), 0);
    ck_assert_uint_eq(t_count(f.st), 1);
    fx_teardown(&f);
}
END_TEST

START_TEST(list_oldest_first)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 3000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 2, "u", 1000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 3, "u", 2000, 10000, "{}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 4, "u", 500, 10, "{}"), STORE_OK); /* expired at 510 */
    ck_assert_int_eq(t_new(f.st, 5, "v", 1500, 10000, "{}"), STORE_OK);
    ck_assert_uint_eq(t_list(f.st, "u", 3000, &g), 3);
    ck_assert_str_eq(g.ids[0], sid(2));
    ck_assert_int_eq(g.created[0], 1000);
    ck_assert_str_eq(g.ids[1], sid(3));
    ck_assert_int_eq(g.created[1], 2000);
    ck_assert_str_eq(g.ids[2], sid(1));
    ck_assert_int_eq(g.created[2], 3000);
    ck_assert_uint_eq(t_list(f.st, "u", 505, &g), 4);
    ck_assert_str_eq(g.ids[0], sid(4));
    ck_assert_uint_eq(t_list(f.st, "nobody", 3000, &g), 0);
    fx_teardown(&f);
}
END_TEST

START_TEST(sweep_in_batches)
{
    struct fx f;
    struct got g;
    char user[16];
    fx_setup(&f, 100, 100, 4096);
    for (int i = 1; i <= 10; i++) {
        snprintf(user, sizeof user, "u%d", i % 3);
        ck_assert_int_eq(t_new(f.st, i, user, 1000, i <= 7 ? 10 + i : 1000, "{}"), STORE_OK);
    }
    ck_assert_int_eq(store_sweep(f.st, 1010, 100), 0);
    ck_assert_int_eq(store_sweep(f.st, 1017, 0), 0);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 3);
    ck_assert_uint_eq(t_count(f.st), 7);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 3);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 1);
    ck_assert_int_eq(store_sweep(f.st, 1017, 3), 0);
    ck_assert_uint_eq(t_count(f.st), 3);
    for (int i = 8; i <= 10; i++)
        ck_assert_int_eq(t_get(f.st, sid(i), 1017, &g), STORE_OK);
    /* Nothing of the swept ones is left: their ids and tokens can be used again. */
    ck_assert_uint_eq(t_list(f.st, "u1", 900, &g), 1);
    ck_assert_str_eq(g.ids[0], sid(10));
    for (int i = 1; i <= 7; i++)
        ck_assert_int_eq(t_new(f.st, i, "again", 2000, 10, "{}"), STORE_OK);
    ck_assert_uint_eq(t_count(f.st), 10);
    fx_teardown(&f);
}
END_TEST

/* A callback may call the store again (the engine calls back before returning), and what
 * it was handed stays valid and unchanged meanwhile. */
struct nested {
    struct store *st;
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
    n->inner_get = t_get(n->st, sid(2), 1000, &g);
    if (n->inner_get == STORE_OK)
        n->inner_get = t_get(n->st, sid(1), 1000, &g);
    /* Several commits, so that LMDB would reuse the pages the outer read still sees if
     * that read had lost its snapshot. */
    for (int i = 2; i <= 20; i++) {
        char patch[24];
        snprintf(patch, sizeof patch, "{\"a\":%d}", i);
        n->inner_update = t_patch(n->st, sid(1), 1000, patch, 0, &g);
    }
    snprintf(n->after, sizeof n->after, "%.*s", (int)s->data_len, s->data);
}

START_TEST(callbacks_may_call_again)
{
    struct fx f;
    struct got g;
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 100, "{\"a\":1}"), STORE_OK);
    ck_assert_int_eq(t_new(f.st, 2, "u", 1000, 100, "{}"), STORE_OK);
    struct nested n = {.st = f.st};
    store_get(f.st, sid(1), 1000, on_nested, &n);
    ck_assert_int_eq(n.calls, 1);
    ck_assert_int_eq(n.inner_get, STORE_OK);
    ck_assert_int_eq(n.inner_update, STORE_OK);
    ck_assert_str_eq(n.before, "{\"a\":1}");
    ck_assert_str_eq(n.after, "{\"a\":1}"); /* the outer read's snapshot */
    ck_assert_int_eq(t_get(f.st, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"a\":20}");
    ck_assert_uint_eq(g.s.version, 20);
    fx_teardown(&f);
}
END_TEST

/* ---- several processes ---- */

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
    fx_conf(&f, 100, 10, 4096);
    fx_prepare(&f.c);
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(pipe(up), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        two_handles_child(&f.c, down[0], up[1]);
    /* Both open after the fork, as workers do. */
    f.st = fx_open(&f.c);
    ck_assert_int_eq(t_get(f.st, sid(2), 1000, &g), STORE_NOT_FOUND); /* a read txn, reused */
    ck_assert_int_eq(t_new(f.st, 1, "u", 1000, 100, "{\"from\":\"parent\"}"), STORE_OK);
    pipe_write_byte(down[1], 'a');
    ck_assert_int_eq(pipe_read_byte(up[0]), '1');
    ck_assert_int_eq(t_get(f.st, sid(2), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.data, "{\"from\":\"child\"}");
    ck_assert_uint_eq(t_list(f.st, "u", 1000, &g), 2);
    ck_assert_int_eq(t_patch(f.st, sid(2), 1000, "{\"seen\":true}", 1, &g), STORE_OK);
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
    fx_setup(&f, 100, 10, 4096);
    ck_assert_int_eq(t_get(f.st, sid(1), 1000, &g), STORE_NOT_FOUND);
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
    ck_assert_int_eq(t_get(f.st, sid(1), 1000, &g), STORE_OK);
    ck_assert_str_eq(g.s.user, "child");
    ck_assert_str_eq(g.data, "{\"pid\":1}");
    ck_assert_int_eq(t_token(f.st, 1, 1000, &g), STORE_OK);
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

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    fx_conf(&f, 1000000, 100000, 256);
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
        f.st = fx_open(&f.c);
        for (size_t i = 0; i < n; i++) {
            char data[64];
            snprintf(data, sizeof data, "{\"i\":%d}", ids[i]);
            ck_assert_int_eq(t_get(f.st, sid(ids[i]), 2000, &g), STORE_OK);
            ck_assert_str_eq(g.data, data);
        }
        uint64_t count = t_count(f.st);
        ck_assert_uint_ge(count, total);
        ck_assert_uint_le(count, total + 1); /* at most the create being acknowledged */
        total = count;
        /* The writer lock is free again: a create and a sweep go through. */
        ck_assert_int_eq(t_new(f.st, 900000000 + round, "after", 2000, 10, "{}"), STORE_OK);
        ck_assert_int_eq(store_sweep(f.st, 2010, 10), 1);
        store_close(f.st);
        f.st = NULL;
    }
    free(ids);
    fx_teardown(&f);
}
END_TEST

/* ---- full map ---- */

/* Fill the file with large sessions under a roomy config, then reopen it with a config
 * whose map (1 MiB, smaller than the file) has no room to grow: creates must answer
 * STORE_FULL before max_sessions, with nothing written and the store still healthy. */
START_TEST(map_full_is_store_full)
{
    struct fx f;
    struct got g;
    char big[4100], user[SESSION_USER_MAX + 1];
    fx_setup(&f, 100000, 1000000, 4096);
    snprintf(big, sizeof big, "{\"p\":\"%03990d\"}", 0);
    for (int i = 1; i <= 200; i++) {
        snprintf(user, sizeof user, "big%d", i);
        ck_assert_int_eq(t_new(f.st, i, user, 1000, 100000, big), STORE_OK);
    }
    store_close(f.st);

    struct conf small = f.c;
    small.max_sessions = 990; /* 990 x (16 + 512) x 2 < 1 MiB */
    small.session_max_bytes = 16;
    f.st = fx_open(&small);
    enum store_status last = STORE_OK;
    int i;
    for (i = 1000; i < 1790 && last == STORE_OK; i++) {
        snprintf(user, sizeof user, "%0100d", i);
        last = t_new(f.st, i, user, 1000, 100000, "{}");
    }
    ck_assert_int_eq(last, STORE_FULL);
    uint64_t count = t_count(f.st);
    ck_assert_uint_lt(count, 990); /* the map was full, not the count */
    ck_assert_uint_eq(count, 200 + (uint64_t)(i - 1 - 1000));
    ck_assert_int_eq(t_get(f.st, sid(i - 1), 1000, &g), STORE_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(store_last_error(f.st), "MDB_MAP_FULL"));
    struct store_info info;
    store_info(f.st, &info);
    ck_assert(info.healthy);
    ck_assert_int_eq(t_get(f.st, sid(7), 1000, &g), STORE_OK);
    ck_assert_uint_eq(g.s.data_len, strlen(big));
    store_close(f.st);

    /* The roomy config again: there is room. */
    f.st = fx_open(&f.c);
    ck_assert_int_eq(t_new(f.st, i - 1, "again", 1000, 100000, "{}"), STORE_OK);
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
    fx_conf(&f, 100, 10, 4096);
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
    f.st = fx_open(&f.c);
    fx_teardown(&f);
}
END_TEST

START_TEST(prepare_errors)
{
    struct fx f;
    char want[8192], file[128];
    fx_conf(&f, 100, 10, 4096);

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
    fx_teardown(&f);
}
END_TEST

START_TEST(prepare_checks_free_space)
{
    struct fx f;
    char err[CONF_ERR_LEN] = "", start[8192];
    fx_conf(&f, 100000000, 10, 1024 * 1024);
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
    fx_conf(&f, 100, 10, 4096);
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

Suite *
store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("lmdb");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, sync_mode_round_trip);
    tcase_add_test(tc, unknown_ids);
    tcase_add_test(tc, expired_is_not_found_before_the_sweep);
    tcase_add_test(tc, create_refusals);
    tcase_add_test(tc, per_user_limit);
    tcase_add_test(tc, per_user_limit_ignores_expired);
    tcase_add_test(tc, total_limit);
    tcase_add_test(tc, update_merge_and_versions);
    tcase_add_test(tc, update_ttl_and_touch);
    tcase_add_test(tc, update_refusals);
    tcase_add_test(tc, delete_one);
    tcase_add_test(tc, delete_user);
    tcase_add_test(tc, list_oldest_first);
    tcase_add_test(tc, sweep_in_batches);
    tcase_add_test(tc, callbacks_may_call_again);
    tcase_add_test(tc, two_processes_see_each_other);
    tcase_add_test(tc, forked_child_writes);
    tcase_add_test(tc, kill_9_in_the_middle);
    tcase_add_test(tc, map_full_is_store_full);
    tcase_add_test(tc, prepare_creates_what_is_missing);
    tcase_add_test(tc, prepare_errors);
    tcase_add_test(tc, prepare_checks_free_space);
    tcase_add_test(tc, prepare_permission_denied);
    suite_add_tcase(s, tc);
    return s;
}
