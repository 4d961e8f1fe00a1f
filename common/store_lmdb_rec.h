/* store_lmdb_rec: the bytes of one session record in the embedded store's "sessions"
 * database (store_lmdb.c keeps the transactions and indexes), in one place: the layout
 * below, its encoder and its decoder. */
#ifndef SESSIOND_STORE_LMDB_REC_H
#define SESSIOND_STORE_LMDB_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The record header, written and read with memcpy at these offsets because LMDB values
 * carry no alignment promise (integers in the machine's byte order: the file never leaves
 * it). The user (user_len bytes) and the data (data_len bytes) follow it. */
enum {
    REC_VERSION = 0,    /* u64 */
    REC_CREATED = 8,    /* i64 */
    REC_EXPIRES = 16,   /* i64 */
    REC_TTL = 24,       /* i64 */
    REC_HASH = 32,      /* SESSION_HASH_LEN bytes */
    REC_USER_LEN = 64,  /* u16 */
    REC_DATA_LEN = 66,  /* u32 */
    REC_HEADER = 70,
};

/* The grants tail, after the data: a tag byte, then the lengths of channels and subscribe
 * (each STORE_GRANTS_MAX at most), then their bytes. Files written before sessions had
 * grants hold records that end with the data, and they still read (as no grants); for the
 * same reason a session without grants is written without a tail, byte for byte as
 * before, so that an older sessiond reads it too. A record is exactly as long as its
 * lengths say; the tag leaves room for other tails later. */
enum {
    REC_TAIL_TAG = 0,       /* u8, REC_TAIL_GRANTS */
    REC_TAIL_CHANNELS = 1,  /* u16 */
    REC_TAIL_SUBSCRIBE = 3, /* u16 */
    REC_TAIL = 5,           /* channels, then subscribe */
};
#define REC_TAIL_GRANTS 1

/* A record decoded: the pointers point into LMDB's memory (or the caller's). */
struct lmdb_rec {
    uint64_t version;
    int64_t created_at, expires_at, ttl;
    uint8_t hash[SESSION_HASH_LEN];
    const char *user;
    size_t user_len;
    const char *data;
    size_t data_len;
    const char *channels, *subscribe; /* length 0: none */
    size_t channels_len, subscribe_len;
};

bool lmdb_rec_has_grants(const struct lmdb_rec *r);
/* The bytes r takes when encoded. */
size_t lmdb_rec_size(const struct lmdb_rec *r);
/* r into p, which holds lmdb_rec_size(r) bytes. */
void lmdb_rec_encode(const struct lmdb_rec *r, char *p);
/* The n bytes at v into r, whose pointers then point into v. 0, or -1 if they are not a
 * well-formed record. */
int lmdb_rec_decode(const void *v, size_t n, struct lmdb_rec *r);
/* Fill s from r and its id (s's data, channels and subscribe point where r's do). */
void lmdb_rec_to_session(const char *id, size_t id_len, const struct lmdb_rec *r,
                         struct session *s);

#endif
