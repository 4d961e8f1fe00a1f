/* history: each channel's last messages, in an LMDB file shared by the machine's workers.
 *
 * A channel of a namespace with history keeps its newest `keep` messages, each until it
 * is `ttl` old. Every message appended gets the channel's next offset, 1, 2, 3, ... with
 * no gap, assigned in the transaction that stores it, so that every worker of the
 * machine sees the same numbering. The offsets of a channel never restart while the
 * file's epoch stays: the counter outlives the messages (trimmed, expired or never kept).
 * The epoch, 16 random hex digits, changes whenever the history is lost: a new file, or
 * one that history_prepare found unusable or left over from before a reboot.
 *
 * The file is store_path with "-history" appended. Every call answers at once (LMDB),
 * before it returns. Times are Unix milliseconds, as the config keeps history_ttl.
 * Channel names are those of ns_channel_ok (1 to NS_CHANNEL_MAX bytes of
 * [A-Za-z0-9_.:@-]). */
#ifndef SESSIOND_HISTORY_H
#define SESSIOND_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY_EPOCH_LEN 16
#define HISTORY_DATA_MAX ((size_t)1 << 20) /* bytes of a message's data */
#define HISTORY_FROM_MAX 255               /* bytes of its sender's name */
#define HISTORY_MIN_BYTES ((size_t)1 << 20) /* the smallest max_bytes */

/* What history_append returns besides 0. For FULL and TOO_BIG the message is not kept,
 * yet it may still have its offset (*offset > 0): the channel's counter moved past it,
 * so that a recovery across it answers incomplete, and the caller publishes it with that
 * offset as with any other. *offset is 0 when not even that could be written; the caller
 * then publishes it without one. */
enum {
    HISTORY_ERROR = -1,   /* a bad argument or an LMDB failure: see history_last_error */
    HISTORY_FULL = -2,    /* the file is at max_bytes; appends work again once trims and
                           * expiry (history_sweep) have made room */
    HISTORY_TOO_BIG = -3, /* data over HISTORY_DATA_MAX or from over HISTORY_FROM_MAX */
};

struct history;

struct history_msg {
    uint64_t offset;
    int64_t ts;           /* when it was appended */
    const char *from;     /* the publishing user; "" (from_len 0) for the API */
    size_t from_len;
    const char *data;     /* one serialized JSON value, kept byte for byte */
    size_t data_len;
};

/* The master, before forking: create the file or check it, with a map of max_bytes (at
 * least HISTORY_MIN_BYTES; the disk must have room for it). A file that LMDB cannot read,
 * or that was last written before the machine booted (it is written without fsync, so a
 * crash may have lost its last commits), is replaced by a new one: a new epoch. The
 * directory must exist (store_prepare makes it). 0, or -1 with err. */
int history_prepare(const char *path, size_t max_bytes, char *err, size_t errlen);

/* Each process (each worker, after the fork) opens its own handle. NULL with err. */
struct history *history_open(const char *path, size_t max_bytes, char *err, size_t errlen);
void history_close(struct history *h);

/* The file's epoch: HISTORY_EPOCH_LEN hex digits, made when the file was created. */
const char *history_epoch(const struct history *h);

/* Append m (its offset is ignored) to channel ch (len bytes): in one transaction, drop
 * the channel's messages that have expired by now, assign the next offset, trim the
 * channel to its newest keep offsets (1 to NS_HISTORY_MAX) and store m until now + ttl
 * (ttl > 0). Two processes racing get two consecutive offsets. Returns 0 with *offset,
 * or one of the codes above. */
int history_append(struct history *h, const char *ch, size_t len, const struct history_msg *m,
                   int keep, int64_t ttl, int64_t now, uint64_t *offset);

/* One message of a group commit (history_append_many): what history_append takes, and
 * what it answers (status, offset). */
struct history_append {
    const char *ch;
    size_t len;
    struct history_msg m;
    int keep;
    int64_t ttl;
    int status;      /* out: 0 or a code above, as history_append returns */
    uint64_t offset; /* out */
};

/* Append v[0..n) as history_append would, in order, in one transaction: one take of the
 * machine's write lock and one commit for all (a worker's publishes of one loop
 * iteration). When the transaction cannot hold them all (the file full mid-way, an LMDB
 * failure), each is appended again on its own, so that each gets what history_append
 * alone would give it. */
void history_append_many(struct history *h, struct history_append *v, size_t n, int64_t now);

/* The newest offset of ch (0: nothing was ever appended in this epoch). 0 or -1. */
int history_top(struct history *h, const char *ch, size_t len, uint64_t *top);

/* The messages of ch after offset since that have not expired by now, oldest first, at
 * most limit of them, each to cb (its pointers are valid during the call only; cb may
 * call history functions again). *complete says whether the history still holds every
 * message from since + 1 on: up to *top when fewer than limit followed, else up to the
 * last one given to cb (ask again from there for the rest). It is false when messages
 * were trimmed, expired or never kept, and when since > *top (an offset this epoch never
 * gave): a recovery must then answer recovered=false. since = *top gives nothing and
 * complete. 0 or -1. */
int history_since(struct history *h, const char *ch, size_t len, uint64_t since, size_t limit,
                  int64_t now, void (*cb)(void *arg, const struct history_msg *m), void *arg,
                  bool *complete, uint64_t *top);

/* Drop messages that have expired by now, at most max of them, over every channel,
 * including those nobody appends to any more (a timer calls it in small batches). Also
 * clears the reader slots of dead processes. Returns how many, or -1. */
int history_sweep(struct history *h, int64_t now, int max);

/* The last failure, for the caller's log line. */
const char *history_last_error(const struct history *h);

/* The history file of a store: store_path with "-history" appended. 0, or -1 when it
 * does not fit in out. */
int history_path(const char *store_path, char *out, size_t outlen);

#endif
