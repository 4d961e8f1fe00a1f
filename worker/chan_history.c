/* chan_history: channels with history (namespace history=N): each message kept and
 * numbered in the machine's history file (common/history.h) before it goes out, numbered
 * messages delivered once each and in offset order on every worker (what a worker missed
 * is read back from the file), and a subscribe's recovery from a client's position. */
#include "chan_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scoreboard.h"
#include "util.h"
#include "worker.h"
#include "ws.h"
#include "ws_proto.h"

int64_t
chan_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The rules of channel, if it keeps history here. */
const struct ns_rules *
chan_history_rules(const struct chan_worker *cw, const char *channel, size_t len)
{
    const struct ns_rules *r = ns_of(&cw->w->conf->namespaces, channel, len);
    return cw->history != NULL && r->history > 0 ? r : NULL;
}

/* A message numbered but not kept (the file full), or not even numbered: counted, and
 * said once a second at most. */
static void
chan_unkept(struct chan_worker *cw, int rc, const char *channel, size_t len)
{
    sb_add(&cw->w->slot->c.history_unkept, 1);
    if (time(NULL) == cw->unkept_said) return;
    cw->unkept_said = time(NULL);
    log_warnx("history of %.*s: message not kept (%s)", (int)len, channel,
              rc == HISTORY_FULL ? "the history file is at history_max_bytes"
                                 : history_last_error(cw->history));
}

/* ---- the group commit ---- */

#define CHAN_KEEP_BATCH 64 /* messages per transaction */

/* A publish waiting for the group commit; its channel, from (with its NUL) and data
 * follow it. */
struct chan_queued {
    struct chan_queued *next;
    chan_published_cb cb;
    void *arg;
    int keep;
    int64_t ttl;
    size_t len, from_len, data_len;
};

static char *
queued_bytes(struct chan_queued *q)
{
    return (char *)(q + 1);
}

/* Keep up to CHAN_KEEP_BATCH queued messages in one transaction, then send each with
 * its offset, in the order they were published here. A cb may queue more (a pipelined
 * request): those wait for the next batch. */
static void
chan_keep_batch(struct chan_worker *cw)
{
    struct history_append v[CHAN_KEEP_BATCH];
    struct chan_queued *batch = cw->queue, *q = batch;
    size_t n = 0;
    for (; q != NULL && n < CHAN_KEEP_BATCH; q = q->next, n++) {
        const char *p = queued_bytes(q);
        v[n] = (struct history_append){.ch = p,
                                       .len = q->len,
                                       .keep = q->keep,
                                       .ttl = q->ttl,
                                       .m = {.from = p + q->len,
                                             .from_len = q->from_len,
                                             .data = p + q->len + q->from_len + 1,
                                             .data_len = q->data_len}};
    }
    cw->queue = q;
    if (q == NULL) cw->queue_tail = &cw->queue;
    int64_t now = chan_now_ms();
    for (size_t i = 0; i < n; i++)
        v[i].m.ts = now;
    history_append_many(cw->history, v, n, now);
    for (size_t i = 0; i < n; i++) {
        struct chan_queued *next = batch->next;
        if (v[i].status != 0) chan_unkept(cw, v[i].status, v[i].ch, v[i].len);
        chan_send(cw, v[i].ch, v[i].len, v[i].m.data, v[i].m.data_len, v[i].m.from, v[i].offset,
                  batch->cb, batch->arg);
        free(batch);
        batch = next;
    }
}

static void
chan_keep_flush(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct chan_worker *cw = p->data;
    ev_prepare_stop(loop, p);
    while (cw->queue != NULL)
        chan_keep_batch(cw);
}

void
chan_keep_init(struct chan_worker *cw)
{
    ev_prepare_init(&cw->keep, chan_keep_flush);
    cw->keep.data = cw;
    cw->queue = NULL;
    cw->queue_tail = &cw->queue;
}

void
chan_keep_stop(struct chan_worker *cw)
{
    chan_keep_flush(cw->w->loop, &cw->keep, 0);
}

void
chan_keep(struct chan_worker *cw, const struct ns_rules *r, const char *channel, size_t len,
          const char *data, size_t data_len, const char *from, chan_published_cb cb, void *arg)
{
    size_t from_len = strlen(from);
    struct chan_queued *q = malloc(sizeof *q + len + from_len + 1 + data_len);
    if (q == NULL) {
        cb(arg, -1, 0, 0);
        return;
    }
    *q = (struct chan_queued){.cb = cb,
                              .arg = arg,
                              .keep = r->history,
                              .ttl = r->history_ttl_ms,
                              .len = len,
                              .from_len = from_len,
                              .data_len = data_len};
    char *p = queued_bytes(q);
    memcpy(p, channel, len);
    memcpy(p + len, from, from_len + 1);
    if (data_len > 0) memcpy(p + len + from_len + 1, data, data_len);
    *cw->queue_tail = q;
    cw->queue_tail = &q->next;
    if (!ev_is_active(&cw->keep)) ev_prepare_start(cw->w->loop, &cw->keep);
}

struct chan_replay {
    struct chan_worker *cw;
    const char *channel;
    size_t len;
    uint64_t upto;    /* send offsets up to this one */
    struct buf *into; /* a recovery's frames, for one socket; NULL: to every member here */
    bool failed;      /* a recovery's frame could not be made: it is not whole */
};

/* The text of a message read back from history, into cw->gap. */
static int
chan_replay_text(struct chan_replay *rp, const struct history_msg *m)
{
    char from[HISTORY_FROM_MAX + 1];
    size_t n = m->from_len < sizeof from ? m->from_len : sizeof from - 1;
    memcpy(from, m->from, n);
    from[n] = '\0';
    return chan_message_text(&rp->cw->gap, rp->channel, rp->len, m->data, m->data_len, from,
                             m->offset);
}

static void
chan_replay_one(void *arg, const struct history_msg *m)
{
    struct chan_replay *rp = arg;
    if (m->offset > rp->upto) return;
    if (chan_replay_text(rp, m) < 0) {
        rp->failed = true;
        return;
    }
    struct buf *g = &rp->cw->gap, *f = &rp->cw->frame;
    if (rp->into == NULL)
        chan_fanout(rp->cw, rp->channel, rp->len, buf_data(g), buf_used(g));
    else if (ws_frame_text(f, false, buf_data(g), buf_used(g)) < 0 ||
             buf_append(rp->into, buf_data(f), buf_used(f)) < 0)
        rp->failed = true;
}

/* Bring a channel's members here up to offset upto: the messages other workers kept and
 * whose copies have not reached this one yet are read back from the file, in order. Those
 * the history no longer holds are skipped: they are gone for everyone. */
void
chan_catch_up(struct chan_worker *cw, const char *channel, size_t len, uint64_t upto)
{
    uint64_t *at = hub_offset(cw->hub, channel, len);
    if (at == NULL || *at >= upto) return;
    struct chan_replay rp = {.cw = cw, .channel = channel, .len = len, .upto = upto};
    bool complete;
    uint64_t top;
    /* From 0 too: a channel subscribed here before its first message, whose offset 2
     * (another worker's publish) came before 1. */
    history_since(cw->history, channel, len, *at, (size_t)(upto - *at), chan_now_ms(),
                  chan_replay_one, &rp, &complete, &top);
    *at = upto;
}

/* A numbered message for this worker's subscribers: once each, in offset order. */
size_t
chan_deliver(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset,
             const char *text, size_t text_len)
{
    uint64_t *at = hub_offset(cw->hub, channel, len);
    if (at == NULL || offset <= *at) /* nobody here, or sent already (read back) */
        return 0;
    if (offset > *at + 1) chan_catch_up(cw, channel, len, offset - 1);
    *at = offset;
    return chan_fanout(cw, channel, len, text, text_len);
}

/* To every worker: type BUS_PUBLISH_AT, the channel, the offset, the text (in cw->text),
 * then to this worker's own subscribers. */
void
chan_push_at(struct chan_worker *cw, const char *channel, size_t len, uint64_t offset)
{
    struct buf *t = &cw->text;
    chan_bus_push(cw, channel, len, offset);
    chan_deliver(cw, channel, len, offset, buf_data(t), buf_used(t));
}

void
chan_history_head(struct buf *out, const char *channel, size_t len, const char *epoch,
                  size_t epoch_len)
{
    out->off = out->len = 0;
    buf_puts(out, "{\"channel\":\"");
    buf_append(out, channel, len);
    buf_puts(out, "\",\"epoch\":\"");
    buf_append(out, epoch, epoch_len);
    buf_puts(out, "\",\"messages\":[");
}

/* One message of an API history answer. */
void
chan_history_item(void *arg, const struct history_msg *m)
{
    struct buf *b = arg;
    buf_puts(b, buf_data(b)[buf_used(b) - 1] == '[' ? "{\"offset\":" : ",{\"offset\":");
    buf_put_u64(b, m->offset);
    buf_puts(b, ",\"data\":");
    buf_append(b, m->data, m->data_len);
    if (m->from_len > 0) {
        buf_puts(b, ",\"from\":\"");
        buf_append(b, m->from, m->from_len);
        buf_puts(b, "\"");
    }
    buf_puts(b, ",\"ts\":");
    buf_put_u64(b, (uint64_t)(m->ts / 1000));
    buf_puts(b, "}");
}

int
chan_history_tail(struct buf *out, uint64_t top)
{
    buf_puts(out, "],\"offset\":");
    buf_put_u64(out, top);
    return buf_puts(out, "}");
}

void
chan_history(struct worker *w, const char *channel, size_t len, uint64_t since, size_t limit,
             chan_history_cb cb, void *arg)
{
    struct chan_worker *cw = w->chan;
    const struct ns_rules *r = chan_rh_rules(cw, channel, len);
    if (r != NULL) {
        chan_rh_history(cw, r, channel, len, since, limit, cb, arg);
        return;
    }
    if (chan_history_rules(cw, channel, len) == NULL) {
        cb(arg, -1, NULL, 0);
        return;
    }
    struct buf *out = &w->scratch;
    bool complete;
    uint64_t top;
    const char *epoch = history_epoch(cw->history);
    chan_history_head(out, channel, len, epoch, strlen(epoch));
    int rc = history_since(cw->history, channel, len, since, limit, chan_now_ms(),
                           chan_history_item, out, &complete, &top) < 0 ||
                     chan_history_tail(out, top) < 0
                 ? -2
                 : 0;
    cb(arg, rc, rc == 0 ? buf_data(out) : NULL, rc == 0 ? buf_used(out) : 0);
}

/* The "ok" of a subscribe; with history, the channel's offset and epoch, and for a
 * recovery whether every message after the client's position is still held, which then
 * follow, oldest first, before any newer one (the worker is caught up to the top already:
 * nothing newer can come between). */
void
chan_subscribe_ok(struct chan_client *cl, const struct chan_join_op *op)
{
    struct chan_worker *cw = cw_of(cl);
    const uint64_t *at = hub_offset(cw->hub, op->channel, op->len);
    if (chan_history_rules(cw, op->channel, op->len) == NULL || at == NULL) {
        ws_reply(cl->ws, "ok", op->id, "");
        return;
    }
    const char *epoch = history_epoch(cw->history);
    uint64_t top = *at, newest;
    bool recovered = false, complete = false;
    const struct chan_since *since = &op->since;
    /* One read of what was missed: framed while it is read, sent once the "ok" that says
     * whether it is whole has gone ahead of it. */
    struct buf *replay = &cw->replay;
    replay->off = replay->len = 0;
    struct chan_replay rp = {
        .cw = cw, .channel = op->channel, .len = op->len, .upto = top, .into = replay};
    if (since->given && strcmp(since->epoch, epoch) == 0 && since->offset <= top &&
        top - since->offset <= CHAN_RECOVER_MAX)
        recovered =
            top == since->offset || (history_since(cw->history, op->channel, op->len, since->offset,
                                                   (size_t)(top - since->offset), chan_now_ms(),
                                                   chan_replay_one, &rp, &complete, &newest) == 0 &&
                                     complete && !rp.failed);
    char rest[128];
    snprintf(rest, sizeof rest, "%s,\"offset\":%llu,\"epoch\":\"%s\"",
             !since->given ? ""
             : recovered   ? ",\"recovered\":true"
                           : ",\"recovered\":false",
             (unsigned long long)top, epoch);
    ws_reply(cl->ws, "ok", op->id, rest);
    if (recovered && buf_used(replay) > 0)
        ws_push_frame(cl->ws, buf_data(replay), buf_used(replay));
    if (replay->cap > CHAN_REPLAY_KEEP) /* a long recovery's memory goes back */
        buf_free(replay);
}

/* A subscribe's "since": {"offset": N, "epoch": "E"}, or none. -1 after answering. */
int
chan_since_arg(struct chan_client *cl, json_t *j, const json_t *id, struct chan_since *out)
{
    json_t *since = json_object_get(j, "since");
    *out = (struct chan_since){0};
    if (since == NULL || json_is_null(since)) return 0;
    json_t *o = json_object_get(since, "offset"), *e = json_object_get(since, "epoch");
    if (!json_is_object(since) || !json_is_integer(o) || json_integer_value(o) < 0 ||
        !json_is_string(e) || json_string_length(e) > HISTORY_EPOCH_LEN) {
        ws_error(cl->ws, id, "bad_request",
                 "\\\"since\\\" must be {\\\"offset\\\": N, \\\"epoch\\\": \\\"E\\\"}, as the "
                 "subscribe's ok and the last message gave them.");
        return -1;
    }
    out->given = true;
    out->offset = (uint64_t)json_integer_value(o);
    memcpy(out->epoch, json_string_value(e), json_string_length(e) + 1);
    return 0;
}
