#include "store_lmdb_rec.h"

#include <string.h>

bool
lmdb_rec_has_grants(const struct lmdb_rec *r)
{
    return r->channels_len > 0 || r->subscribe_len > 0;
}

size_t
lmdb_rec_size(const struct lmdb_rec *r)
{
    size_t n = REC_HEADER + r->user_len + r->data_len;
    return lmdb_rec_has_grants(r) ? n + REC_TAIL + r->channels_len + r->subscribe_len : n;
}

/* The grants tail at p (see REC_TAIL_*). */
static void
lmdb_tail_encode(const struct lmdb_rec *r, char *p)
{
    uint16_t channels_len = (uint16_t)r->channels_len;
    uint16_t subscribe_len = (uint16_t)r->subscribe_len;
    p[REC_TAIL_TAG] = REC_TAIL_GRANTS;
    memcpy(p + REC_TAIL_CHANNELS, &channels_len, 2);
    memcpy(p + REC_TAIL_SUBSCRIBE, &subscribe_len, 2);
    if (r->channels_len > 0)
        memcpy(p + REC_TAIL, r->channels, r->channels_len);
    if (r->subscribe_len > 0)
        memcpy(p + REC_TAIL + r->channels_len, r->subscribe, r->subscribe_len);
}

/* The n bytes at p after the data: none, or a whole grants tail. Returns 0, or -1. */
static int
lmdb_tail_decode(const char *p, size_t n, struct lmdb_rec *r)
{
    uint16_t channels_len, subscribe_len;
    r->channels = r->subscribe = NULL;
    r->channels_len = r->subscribe_len = 0;
    if (n == 0)
        return 0;
    if (n < REC_TAIL || p[REC_TAIL_TAG] != REC_TAIL_GRANTS)
        return -1;
    memcpy(&channels_len, p + REC_TAIL_CHANNELS, 2);
    memcpy(&subscribe_len, p + REC_TAIL_SUBSCRIBE, 2);
    if (n != (size_t)REC_TAIL + channels_len + subscribe_len)
        return -1;
    r->channels = p + REC_TAIL;
    r->channels_len = channels_len;
    r->subscribe = p + REC_TAIL + channels_len;
    r->subscribe_len = subscribe_len;
    return 0;
}

void
lmdb_rec_encode(const struct lmdb_rec *r, char *p)
{
    uint16_t user_len = (uint16_t)r->user_len;
    uint32_t data_len = (uint32_t)r->data_len;
    memcpy(p + REC_VERSION, &r->version, 8);
    memcpy(p + REC_CREATED, &r->created_at, 8);
    memcpy(p + REC_EXPIRES, &r->expires_at, 8);
    memcpy(p + REC_TTL, &r->ttl, 8);
    memcpy(p + REC_HASH, r->hash, SESSION_HASH_LEN);
    memcpy(p + REC_USER_LEN, &user_len, 2);
    memcpy(p + REC_DATA_LEN, &data_len, 4);
    memcpy(p + REC_HEADER, r->user, r->user_len);
    if (r->data_len > 0)
        memcpy(p + REC_HEADER + r->user_len, r->data, r->data_len);
    if (lmdb_rec_has_grants(r))
        lmdb_tail_encode(r, p + REC_HEADER + r->user_len + r->data_len);
}

int
lmdb_rec_decode(const void *v, size_t n, struct lmdb_rec *r)
{
    const char *p = v;
    uint16_t user_len;
    uint32_t data_len;
    if (n < REC_HEADER)
        return -1;
    memcpy(&r->version, p + REC_VERSION, 8);
    memcpy(&r->created_at, p + REC_CREATED, 8);
    memcpy(&r->expires_at, p + REC_EXPIRES, 8);
    memcpy(&r->ttl, p + REC_TTL, 8);
    memcpy(r->hash, p + REC_HASH, SESSION_HASH_LEN);
    memcpy(&user_len, p + REC_USER_LEN, 2);
    memcpy(&data_len, p + REC_DATA_LEN, 4);
    size_t end = (size_t)REC_HEADER + user_len + data_len;
    if (user_len > SESSION_USER_MAX || n < end || lmdb_tail_decode(p + end, n - end, r) != 0)
        return -1;
    r->user = p + REC_HEADER;
    r->user_len = user_len;
    r->data = p + REC_HEADER + user_len;
    r->data_len = data_len;
    return 0;
}

void
lmdb_rec_to_session(const char *id, size_t id_len, const struct lmdb_rec *r, struct session *s)
{
    memcpy(s->id, id, id_len);
    s->id[id_len] = '\0';
    memcpy(s->user, r->user, r->user_len);
    s->user[r->user_len] = '\0';
    memcpy(s->token_hash, r->hash, SESSION_HASH_LEN);
    s->created_at = r->created_at;
    s->expires_at = r->expires_at;
    s->ttl = r->ttl;
    s->version = r->version;
    s->data = r->data;
    s->data_len = r->data_len;
    s->channels = r->channels;
    s->channels_len = r->channels_len;
    s->subscribe = r->subscribe;
    s->subscribe_len = r->subscribe_len;
}
