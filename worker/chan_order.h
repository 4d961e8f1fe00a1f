/* chan_order: the hold-back that keeps a channel's numbered messages in offset order on a
 * worker, when they are heard from Redis's pub/sub (chan_history_redis.c).
 *
 * Messages come in offset order on one connection, yet a worker may miss some (its
 * subscription was late, the connection dropped) or hear a new epoch (Redis lost the
 * channel). Then it reads the missing ones from Redis's list; what it hears while that
 * read is in flight is held back and taken again, in the order heard, once the read's
 * messages are out. So each offset goes out once, in increasing order. Pure: the caller
 * sends and reads through the two callbacks. */
#ifndef SESSIOND_CHAN_ORDER_H
#define SESSIOND_CHAN_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "history.h"

#define CHAN_HELD_MAX ((size_t)8 << 20) /* bytes held during a read; beyond, read again */

struct chan_order {
    uint64_t at;                       /* the newest offset sent */
    char epoch[HISTORY_EPOCH_LEN + 1]; /* "" until Redis named it */
    bool reading;                      /* a read is in flight (the caller sets and clears it) */
    bool again;                        /* ... and what was heard meanwhile overflowed: read again */
    bool tell_epoch;                   /* the epoch changed: the next message out names it */
    struct buf held; /* heard during the read: u64 offset, epoch, u32 length, text */
    void (*send)(void *arg, const char *text, size_t len); /* to the subscribers here */
    void (*read)(void *arg); /* read what came after at (or all, with no epoch yet) */
    void *arg;
};

/* A numbered message heard (text, len) of epoch (HISTORY_EPOCH_LEN bytes) at offset.
 * blind: Redis cannot be read now, so a gap or a new epoch is taken as it comes. */
void chan_order_heard(struct chan_order *o, const char *epoch, uint64_t offset, const char *text,
                      size_t len, bool blind);
/* After a read's messages are out: the held-back ones, in the order heard. A gap among
 * them may start another read, which holds the rest back again. Unless blind (the read
 * failed), those of an epoch other than the one the read found are dropped: heard late
 * from before Redis lost the channel (or of a newer epoch still, whose next message
 * reads all of it), they would otherwise start read after read. */
void chan_order_drain(struct chan_order *o, bool blind);

#endif
