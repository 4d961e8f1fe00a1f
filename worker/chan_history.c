/* chan_history: channels with history (namespace history=N): each message kept and
 * numbered in the machine's history file (common/history.h) before it goes out, numbered
 * messages delivered once each and in offset order on every worker (what a worker missed
 * is read back from the file), and a subscribe's recovery from a client's position. */
#include "chan_impl.h"

#include <stdio.h>
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

/* Keep a message of a channel with history: its offset, or 0 when it could not even be
 * numbered. A message numbered but not kept (the file full) is counted and said. */
uint64_t
chan_keep(struct chan_worker *cw, const struct ns_rules *r, const char *channel, size_t len,
          const char *data, size_t data_len, const char *from)
{
    int64_t now = chan_now_ms();
    struct history_msg m = {
        .ts = now, .from = from, .from_len = strlen(from), .data = data, .data_len = data_len};
    uint64_t offset = 0;
    int rc =
        history_append(cw->history, channel, len, &m, r->history, r->history_ttl_ms, now, &offset);
    if (rc == 0) return offset;
    sb_add(&cw->w->slot->c.history_unkept, 1);
    if (time(NULL) != cw->unkept_said) { /* once a second at most */
        cw->unkept_said = time(NULL);
        log_warnx("history of %.*s: message not kept (%s)", (int)len, channel,
                  rc == HISTORY_FULL ? "the history file is at history_max_bytes"
                                     : history_last_error(cw->history));
    }
    return offset;
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
