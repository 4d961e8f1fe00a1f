/* chan_order: see chan_order.h. */
#include "chan_order.h"

#include <string.h>

#define HELD_HEAD (8 + HISTORY_EPOCH_LEN + 4) /* offset, epoch, length */

static void
hold(struct chan_order *o, const char *epoch, uint64_t offset, const char *text, size_t len)
{
    uint32_t n = (uint32_t)len;
    if (buf_used(&o->held) + len > CHAN_HELD_MAX || buf_append(&o->held, &offset, 8) < 0 ||
        buf_append(&o->held, epoch, HISTORY_EPOCH_LEN) < 0 || buf_append(&o->held, &n, 4) < 0 ||
        buf_append(&o->held, text, len) < 0)
        o->again = true; /* the read after this one fetches it */
}

void
chan_order_heard(struct chan_order *o, const char *epoch, uint64_t offset, const char *text,
                 size_t len, bool blind)
{
    bool same = o->epoch[0] != '\0' && memcmp(epoch, o->epoch, HISTORY_EPOCH_LEN) == 0;
    if (o->reading) {
        hold(o, epoch, offset, text, len);
        return;
    }
    if (!blind && (!same || offset > o->at + 1)) {
        hold(o, epoch, offset, text, len);
        o->read(o->arg);
        return;
    }
    if (!same) { /* blind to a new epoch: it starts here */
        memcpy(o->epoch, epoch, HISTORY_EPOCH_LEN);
        o->epoch[HISTORY_EPOCH_LEN] = '\0';
        o->at = 0;
        o->tell_epoch = true;
    }
    if (offset <= o->at) return; /* sent already */
    o->at = offset;
    o->send(o->arg, text, len);
}

void
chan_order_drain(struct chan_order *o, bool blind)
{
    struct buf held = o->held;
    o->held = (struct buf){0};
    for (size_t at = held.off; at + HELD_HEAD <= held.len;) {
        uint64_t offset;
        uint32_t n;
        memcpy(&offset, held.p + at, 8);
        memcpy(&n, held.p + at + 8 + HISTORY_EPOCH_LEN, 4);
        const char *epoch = held.p + at + 8;
        /* The read just named the current epoch: a message of another is older (heard
         * late), or of one newer still, whose next message reads it all. */
        if (blind || memcmp(epoch, o->epoch, HISTORY_EPOCH_LEN) == 0)
            chan_order_heard(o, epoch, offset, held.p + at + HELD_HEAD, n, blind);
        at += HELD_HEAD + n;
    }
    buf_free(&held);
}
