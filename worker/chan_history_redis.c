/* chan_history_redis: channels with history on store redis, shared by every instance.
 *
 * One script numbers a message, keeps it and PUBLISHes it, so that Redis's order of
 * publication is the offset order, and every worker of every instance (the publisher's
 * too) hears a channel's messages from Redis in that order. A worker reads the history
 * only for what it did not hear: a gap (its subscription was late, or Redis dropped the
 * connection), a new epoch (Redis lost the channel), and a subscribe's recovery. While a
 * read is in flight, what it hears of that channel is held back and sent after the read's
 * messages, each once.
 *
 * Keys, under redis_prefix: "hm:" channel, a hash of the newest offset ("top") and the
 * epoch; "hl:" channel, a list of the newest `history` messages, each
 * "OFFSET TS FROMLEN FROM" then the data. The list expires history_ttl after the last
 * publish and its messages are read only while younger than that; the hash lives
 * CHAN_META_TTL_MS after the channel was last used, and losing it (a flush, a restart
 * without data, eviction) gives the next publish or read a new epoch and offsets from 1.
 *
 * A worker's subscribers of such a channel join its hub only once their "ok" is out, so
 * that nothing reaches them before it; each channel's state here is a chan_sync, kept in
 * a hub of its own (one member per channel: the chan_sync). */
#include "chan_impl.h"
#include "chan_order.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "pubsub.h"
#include "redis.h"
#include "roster.h"
#include "scoreboard.h"
#include "util.h"
#include "ws.h"
#include "ws_proto.h"

#define CHAN_META_TTL_MS (30LL * 24 * 3600 * 1000) /* a channel's offsets and epoch */
#define CHAN_KEY_MAX (sizeof((struct conf *)0)->redis_prefix + 3 + NS_CHANNEL_MAX)

/* KEYS: the hash, the list. ARGV: an epoch if the channel has none, keep, ttl, now, from,
 * data, the pub/sub name, the message's JSON without its last "}", the hash's ttl, and
 * what goes before the epoch in the pub/sub message. Returns {offset, epoch}. */
static const char publish_lua[] =
    "local top = redis.call('HINCRBY', KEYS[1], 'top', 1)\n"
    "local epoch = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not epoch then\n"
    "  epoch = ARGV[1]\n"
    "  top = 1\n"
    "  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 1)\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "redis.call('RPUSH', KEYS[2], top .. ' ' .. ARGV[4] .. ' ' .. #ARGV[5] .. ' ' .. ARGV[5] .. "
    "ARGV[6])\n"
    "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)\n"
    "redis.call('PEXPIRE', KEYS[2], ARGV[3])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[9])\n"
    "redis.call('PUBLISH', ARGV[7], ARGV[10] .. epoch .. top .. ' ' .. ARGV[8] .. "
    "',\"offset\":' .. top .. '}')\n"
    "return {top, epoch}\n";

/* KEYS: the hash, the list. ARGV: an epoch if the channel has none, since, limit, the
 * hash's ttl. Returns {epoch, top, the oldest offset held, the messages after since}. */
static const char read_lua[] =
    "local m = redis.call('HMGET', KEYS[1], 'top', 'epoch')\n"
    "local top, epoch = tonumber(m[1]) or 0, m[2]\n"
    "if not epoch then\n"
    "  epoch = ARGV[1]\n"
    "  top = 0\n"
    "  redis.call('HSET', KEYS[1], 'epoch', epoch, 'top', 0)\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
    "local n = redis.call('LLEN', KEYS[2])\n"
    "local first = top - n + 1\n"
    "local from = tonumber(ARGV[2]) + 1\n"
    "if from < first then from = first end\n"
    "local r = {epoch, top, first}\n"
    "if from <= top then\n"
    "  local i = n - (top - from + 1)\n"
    "  for _, v in ipairs(redis.call('LRANGE', KEYS[2], i, i + tonumber(ARGV[3]) - 1)) do\n"
    "    r[#r + 1] = v\n"
    "  end\n"
    "end\n"
    "return r\n";

static struct redis_script publish_script, read_script;

int
chan_rh_init(char *err, size_t errlen)
{
    if (publish_script.body != NULL) return 0;
    return redis_script_init(&publish_script, publish_lua, err, errlen) < 0 ||
                   redis_script_init(&read_script, read_lua, err, errlen) < 0
               ? -1
               : 0;
}

/* A channel's state on this worker. */
struct chan_sync {
    struct chan_worker *cw;
    struct hub_member *self;      /* in cw->syncs */
    struct chan_order o;          /* where the subscribers here stand, and the hold-back */
    uint64_t asked;               /* the read in flight is for what came after this offset */
    int busy;                     /* inside its read's answer: not to be freed yet */
    struct chan_join_op *waiting; /* subscribes waiting for the read, newest first */
    size_t len;
    char channel[];
};

const struct ns_rules *
chan_rh_rules(const struct chan_worker *cw, const char *channel, size_t len)
{
    const struct ns_rules *r = ns_of(&cw->w->conf->namespaces, channel, len);
    return cw->ps != NULL && r->history > 0 ? r : NULL;
}

static struct chan_sync *
sync_find(const struct chan_worker *cw, const char *channel, size_t len)
{
    size_t n;
    struct hub_member *const *m = hub_members(cw->syncs, channel, len, &n);
    return m != NULL && n > 0 ? hub_member_sub(m[0]) : NULL;
}

static void sync_fanout(struct chan_worker *cw, struct chan_sync *s, const char *text, size_t len);
static void sync_read(struct chan_worker *cw, struct chan_sync *s);

/* The hold-back's two ways out (chan_order.h). */
static void
order_send(void *arg, const char *text, size_t len)
{
    struct chan_sync *s = arg;
    sync_fanout(s->cw, s, text, len);
}

static void
order_read(void *arg)
{
    struct chan_sync *s = arg;
    sync_read(s->cw, s);
}

static struct chan_sync *
sync_get(struct chan_worker *cw, const char *channel, size_t len)
{
    struct chan_sync *s = sync_find(cw, channel, len);
    if (s != NULL || (s = calloc(1, sizeof *s + len)) == NULL) return s;
    s->cw = cw;
    s->o = (struct chan_order){.send = order_send, .read = order_read, .arg = s};
    s->len = len;
    memcpy(s->channel, channel, len);
    if ((s->self = hub_join(cw->syncs, channel, len, s)) == NULL) {
        free(s);
        return NULL;
    }
    pubsub_subscribe(cw->ps, channel, len); /* first here: hear the channel from now on */
    return s;
}

/* Forget a channel nobody here is in, or waits for. */
static void
sync_drop_if_idle(struct chan_worker *cw, struct chan_sync *s)
{
    size_t here = 0;
    hub_members(cw->hub, s->channel, s->len, &here);
    if (here > 0 || s->o.reading || s->waiting != NULL || s->busy > 0) return;
    pubsub_unsubscribe(cw->ps, s->channel, s->len);
    hub_leave(cw->syncs, s->self);
    buf_free(&s->o.held);
    free(s);
}

void
chan_rh_left(struct chan_worker *cw, const char *channel, size_t len)
{
    struct chan_sync *s = sync_find(cw, channel, len);
    if (s != NULL) sync_drop_if_idle(cw, s);
}

static void
random_epoch(char out[HISTORY_EPOCH_LEN + 1])
{
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)clock();
    snprintf(out, HISTORY_EPOCH_LEN + 1, "%016llx", (unsigned long long)r);
}

/* The two keys of a channel: "hm:" and "hl:" under the prefix. */
static void
sync_keys(const struct chan_worker *cw, const char *channel, size_t len, char meta[CHAN_KEY_MAX],
          char list[CHAN_KEY_MAX], size_t *klen)
{
    const char *prefix = cw->w->conf->redis_prefix;
    int n = snprintf(meta, CHAN_KEY_MAX, "%shm:%.*s", prefix, (int)len, channel);
    snprintf(list, CHAN_KEY_MAX, "%shl:%.*s", prefix, (int)len, channel);
    *klen = n > 0 ? (size_t)n : 0;
}

/* ---- delivery ---- */

/* text, naming the epoch when s says it changed, to the subscribers here. */
static void
sync_fanout(struct chan_worker *cw, struct chan_sync *s, const char *text, size_t len)
{
    if (!s->o.tell_epoch || len < 2) {
        chan_fanout(cw, s->channel, s->len, text, len);
        return;
    }
    struct buf *b = &cw->gap;
    if (b->p != text) { /* a read-back message is in gap already */
        b->off = b->len = 0;
        buf_append(b, text, len);
    }
    b->len--; /* the closing brace */
    buf_puts(b, ",\"epoch\":\"");
    buf_puts(b, s->o.epoch);
    if (buf_puts(b, "\"}") == 0) {
        s->o.tell_epoch = false;
        chan_fanout(cw, s->channel, s->len, buf_data(b), buf_used(b));
    }
}

void
chan_rh_message(struct chan_worker *cw, const char *channel, size_t len, const char *p, size_t plen)
{
    /* epoch, offset in decimal, a space, the text */
    struct chan_sync *s = sync_find(cw, channel, len);
    if (s == NULL || plen < HISTORY_EPOCH_LEN + 2) return;
    const char *q = p + HISTORY_EPOCH_LEN, *end = p + plen;
    uint64_t offset = 0;
    while (q < end && *q >= '0' && *q <= '9')
        offset = offset * 10 + (uint64_t)(*q++ - '0');
    if (q == end || *q != ' ' || offset == 0) return;
    q++;
    chan_order_heard(&s->o, p, offset, q, (size_t)(end - q), false);
}

/* ---- reads ---- */

/* One message of a read: "OFFSET TS FROMLEN FROM" then the data. */
static bool
item_parse(const redisReply *r, struct history_msg *m)
{
    if (r->type != REDIS_REPLY_STRING) return false;
    char *p = r->str, *end = r->str + r->len, *q;
    m->offset = strtoull(p, &q, 10);
    if (q == p || q >= end || *q != ' ') return false;
    m->ts = strtoll(p = q + 1, &q, 10);
    if (q == p || q >= end || *q != ' ') return false;
    m->from_len = strtoul(p = q + 1, &q, 10);
    if (q == p || q >= end || *q != ' ' || m->from_len > (size_t)(end - q - 1) ||
        m->from_len > HISTORY_FROM_MAX)
        return false;
    m->from = q + 1;
    m->data = m->from + m->from_len;
    m->data_len = (size_t)(end - m->data);
    return true;
}

/* A read's answer: the epoch, the newest offset, the oldest held, then the messages. */
struct sync_read {
    const char *epoch;
    uint64_t top, first;
    const redisReply *const *items;
    size_t nitems;
};

static bool
read_parse(const redisReply *r, struct sync_read *out)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len != HISTORY_EPOCH_LEN ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->integer < 0)
        return false;
    out->epoch = r->element[0]->str;
    out->top = (uint64_t)r->element[1]->integer;
    out->first = r->element[2]->integer > 0 ? (uint64_t)r->element[2]->integer : 1;
    out->items = (const redisReply *const *)r->element + 3;
    out->nitems = r->elements - 3;
    return true;
}

/* The text of a message read back, into cw->gap. */
static int
item_text(struct chan_worker *cw, const struct chan_sync *s, const struct history_msg *m)
{
    char from[HISTORY_FROM_MAX + 1];
    memcpy(from, m->from, m->from_len);
    from[m->from_len] = '\0';
    return chan_message_text(&cw->gap, s->channel, s->len, m->data, m->data_len, from, m->offset);
}

/* Whether the read holds every message after since up to its top, unexpired by now. */
static bool
read_whole(const struct sync_read *rd, uint64_t since, int64_t ttl_ms, int64_t now)
{
    if (since == rd->top) return true;
    if (since > rd->top || since + 1 < rd->first || rd->top - since > CHAN_RECOVER_MAX)
        return false;
    size_t need = (size_t)(rd->top - since), seen = 0;
    for (size_t i = 0; i < rd->nitems; i++) {
        struct history_msg m;
        if (!item_parse(rd->items[i], &m)) return false;
        if (m.offset > since && m.offset <= rd->top) {
            if (m.ts + ttl_ms <= now) return false;
            seen++;
        }
    }
    return seen == need;
}

/* A waiting subscribe is answered and joins the hub: ok (or "subscribed") with the top
 * and the epoch, then for a recovery what it missed. */
static void
sync_answer(struct chan_worker *cw, struct chan_sync *s, struct chan_join_op *op,
            const struct sync_read *rd, int64_t ttl_ms, int64_t now)
{
    const struct chan_since *since = &op->since;
    bool recovered = since->given && rd != NULL && strcmp(since->epoch, s->o.epoch) == 0 &&
                     read_whole(rd, since->offset, ttl_ms, now);
    if (rd == NULL) /* Redis could not be read: what this worker knows */
        recovered =
            since->given && strcmp(since->epoch, s->o.epoch) == 0 && since->offset == s->o.at;
    struct buf *replay = &cw->replay, *f = &cw->frame;
    replay->off = replay->len = 0;
    for (size_t i = 0; recovered && rd != NULL && i < rd->nitems; i++) {
        struct history_msg m;
        if (!item_parse(rd->items[i], &m) || m.offset <= since->offset || m.offset > s->o.at)
            continue;
        if (item_text(cw, s, &m) < 0 ||
            ws_frame_text(f, false, buf_data(&cw->gap), buf_used(&cw->gap)) < 0 ||
            buf_append(replay, buf_data(f), buf_used(f)) < 0)
            recovered = false;
    }
    char rest[128];
    snprintf(rest, sizeof rest, "%s,\"offset\":%llu,\"epoch\":\"%s\"",
             !since->given ? ""
             : recovered   ? ",\"recovered\":true"
                           : ",\"recovered\":false",
             (unsigned long long)s->o.at, s->o.epoch);
    chan_join_answer(op, rest, recovered ? replay : NULL);
}

static void
sync_read_done(void *arg, const redisReply *reply)
{
    struct chan_sync *s = arg;
    struct chan_worker *cw = s->cw;
    struct sync_read rd;
    bool ok = read_parse(reply, &rd);
    const struct ns_rules *r = ns_of(&cw->w->conf->namespaces, s->channel, s->len);
    int64_t now = chan_now_ms();
    s->o.reading = false;
    s->busy++;
    size_t here = 0;
    hub_members(cw->hub, s->channel, s->len, &here);
    if (!ok) {
        log_warnx("history of %.*s: Redis could not be read (%s)", (int)s->len, s->channel,
                  reply == NULL ? "no answer" : "an unexpected reply");
    } else if (s->o.epoch[0] == '\0' || memcmp(rd.epoch, s->o.epoch, HISTORY_EPOCH_LEN) != 0) {
        /* The first read here, or the channel's history was lost: its new epoch starts
         * here; the subscribers here (if any) are sent all of it, naming the epoch. */
        s->o.tell_epoch = here > 0;
        s->o.at = s->o.epoch[0] == '\0' && here == 0 ? rd.top : 0;
        memcpy(s->o.epoch, rd.epoch, HISTORY_EPOCH_LEN);
        s->o.epoch[HISTORY_EPOCH_LEN] = '\0';
        if (here > 0 && s->asked > 0) { /* asked after an offset of the old epoch */
            sync_read(cw, s);           /* all of the new one, for everyone waiting */
            s->busy--;
            return;
        }
    }
    /* What the subscribers here did not hear, in order; what Redis no longer holds is
     * gone for everyone. */
    for (size_t i = 0; ok && here > 0 && i < rd.nitems; i++) {
        struct history_msg m;
        if (item_parse(rd.items[i], &m) && m.offset > s->o.at && m.offset <= rd.top &&
            m.ts + r->history_ttl_ms > now && item_text(cw, s, &m) == 0) {
            s->o.at = m.offset;
            sync_fanout(cw, s, buf_data(&cw->gap), buf_used(&cw->gap));
        }
    }
    /* A read cut at its limit is followed by the next one from where it stopped. */
    if (ok && s->o.at < rd.top) {
        if (here > 0 && rd.nitems >= CHAN_RECOVER_MAX)
            s->o.again = true;
        else
            s->o.at = rd.top;
    }
    /* The subscribes this read was for, oldest first; those that came during it wait
     * for the next one. */
    struct chan_join_op *list = NULL, **pp = &s->waiting;
    while (*pp != NULL) {
        struct chan_join_op *op = *pp;
        if (!op->covered) {
            s->o.again = true;
            pp = &op->next;
            continue;
        }
        *pp = op->next;
        op->next = list;
        list = op;
    }
    while (list != NULL) {
        struct chan_join_op *op = list;
        list = op->next;
        sync_answer(cw, s, op, ok ? &rd : NULL, r->history_ttl_ms, now);
    }
    if (s->o.again) {
        s->o.again = false;
        sync_read(cw, s);
    }
    chan_order_drain(&s->o, !ok);
    s->busy--;
    sync_drop_if_idle(cw, s);
}

/* Read the channel from the oldest position anybody here needs: the subscribers' (at),
 * and each waiting recovery's. */
static void
sync_read(struct chan_worker *cw, struct chan_sync *s)
{
    uint64_t since = s->o.epoch[0] != '\0' ? s->o.at : UINT64_MAX;
    for (struct chan_join_op *op = s->waiting; op != NULL; op = op->next) {
        op->covered = true;
        if (op->since.given && op->since.offset < since) since = op->since.offset;
    }
    char meta[CHAN_KEY_MAX], list[CHAN_KEY_MAX], epoch[HISTORY_EPOCH_LEN + 1], from[24], limit[24],
        ttl[24];
    size_t klen;
    sync_keys(cw, s->channel, s->len, meta, list, &klen);
    random_epoch(epoch);
    snprintf(from, sizeof from, "%llu",
             since == UINT64_MAX ? 9007199254740992ULL : (unsigned long long)since);
    snprintf(limit, sizeof limit, "%d", CHAN_RECOVER_MAX);
    snprintf(ttl, sizeof ttl, "%lld", CHAN_META_TTL_MS);
    const char *argv[] = {meta, list, epoch, from, limit, ttl};
    size_t lens[] = {klen, klen, HISTORY_EPOCH_LEN, strlen(from), strlen(limit), strlen(ttl)};
    s->asked = since;
    s->o.reading = true;
    if (pubsub_eval(cw->ps, &read_script, sync_read_done, s, 2, 6, argv, lens) < 0)
        sync_read_done(s, NULL); /* Redis is away now: answer with what is known */
}

void
chan_rh_join(struct chan_worker *cw, struct chan_join_op *op)
{
    struct chan_sync *s = sync_get(cw, op->channel, op->len);
    if (s == NULL) {
        chan_join_answer(op, NULL, NULL);
        return;
    }
    bool known = s->o.epoch[0] != '\0' && !s->o.reading;
    if (known && (!op->since.given ||
                  (strcmp(op->since.epoch, s->o.epoch) == 0 && op->since.offset == s->o.at))) {
        char rest[128];
        snprintf(rest, sizeof rest, "%s,\"offset\":%llu,\"epoch\":\"%s\"",
                 op->since.given ? ",\"recovered\":true" : "", (unsigned long long)s->o.at,
                 s->o.epoch);
        chan_join_answer(op, rest, NULL);
        return;
    }
    op->next = s->waiting;
    s->waiting = op;
    if (!s->o.reading) sync_read(cw, s);
}

static void
resync_name(void *arg, const char *name, size_t len)
{
    struct buf *names = arg;
    uint8_t n = (uint8_t)len;
    buf_append(names, &n, 1);
    buf_append(names, name, len);
}

void
chan_rh_resync(struct chan_worker *cw)
{
    /* The names first: a read that cannot start answers at once, and what it sends
     * may close sockets and so end other channels here. */
    struct buf names = {0};
    hub_each_channel(cw->syncs, resync_name, &names);
    for (size_t at = names.off; at < names.len; at += 1 + (uint8_t)names.p[at]) {
        const char *name = names.p + at + 1;
        size_t len = (uint8_t)names.p[at];
        struct chan_sync *s = sync_find(cw, name, len);
        pubsub_subscribe(cw->ps, name, len);
        if (s != NULL && !s->o.reading) sync_read(cw, s);
    }
    buf_free(&names);
}

static void
free_one(void *arg, const char *name, size_t len)
{
    struct chan_sync *s = sync_find(arg, name, len);
    while (s->waiting != NULL) {
        struct chan_join_op *op = s->waiting;
        s->waiting = op->next;
        json_decref(op->id);
        free(op);
    }
    buf_free(&s->o.held);
    free(s);
}

void
chan_rh_free(struct chan_worker *cw)
{
    /* The reads in flight died with the Redis connection (closed first), without their
     * callbacks: what they waited with goes here. The hub of syncs goes after. */
    if (cw->syncs != NULL) hub_each_channel(cw->syncs, free_one, cw);
}

/* ---- publish ---- */

struct rh_pub {
    struct chan_worker *cw;
    chan_published_cb cb;
    void *arg;
    size_t len;
    char channel[HUB_CHANNEL_MAX];
};

static void
rh_published(void *arg, const redisReply *r)
{
    struct rh_pub *p = arg;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer > 0)
        p->cb(p->arg, 0, roster_count(p->cw->roster, p->channel, p->len),
              (uint64_t)r->element[0]->integer);
    else
        p->cb(p->arg, -1, 0, 0);
    free(p);
}

void
chan_rh_publish(struct chan_worker *cw, const struct ns_rules *r, const char *channel, size_t len,
                const char *data, size_t data_len, const char *from, chan_published_cb cb,
                void *arg)
{
    struct rh_pub *p = len <= HUB_CHANNEL_MAX ? malloc(sizeof *p) : NULL;
    struct buf *t = &cw->text;
    if (p == NULL || chan_message_text(t, channel, len, data, data_len, from, 0) < 0) {
        free(p);
        cb(arg, -1, 0, 0);
        return;
    }
    *p = (struct rh_pub){.cw = cw, .cb = cb, .arg = arg, .len = len};
    memcpy(p->channel, channel, len);
    char meta[CHAN_KEY_MAX], list[CHAN_KEY_MAX], epoch[HISTORY_EPOCH_LEN + 1], keep[16], ttl[24],
        now[24], mttl[24], name[CHAN_KEY_MAX + 8], head[18];
    size_t klen;
    sync_keys(cw, channel, len, meta, list, &klen);
    random_epoch(epoch);
    snprintf(keep, sizeof keep, "%d", r->history);
    snprintf(ttl, sizeof ttl, "%lld", (long long)r->history_ttl_ms);
    snprintf(now, sizeof now, "%lld", (long long)chan_now_ms());
    snprintf(mttl, sizeof mttl, "%lld", CHAN_META_TTL_MS);
    size_t nlen = pubsub_name(cw->ps, channel, len, name, sizeof name);
    snprintf(head, sizeof head, "%s%c", CHAN_REDIS_ANYONE, BUS_PUBLISH_AT);
    const char *argv[] = {meta, list, epoch, keep,        ttl,  now,
                          from, data, name,  buf_data(t), mttl, head};
    size_t lens[] = {
        klen,     klen, HISTORY_EPOCH_LEN, strlen(keep), strlen(ttl), strlen(now), strlen(from),
        data_len, nlen, buf_used(t) - 1,   strlen(mttl), 17};
    if (pubsub_eval(cw->ps, &publish_script, rh_published, p, 2, 12, argv, lens) < 0) {
        free(p);
        cb(arg, -1, 0, 0);
    }
}

/* ---- the history endpoint ---- */

struct rh_history {
    struct chan_worker *cw;
    chan_history_cb cb;
    void *arg;
    int64_t ttl_ms;
    size_t len;
    char channel[HUB_CHANNEL_MAX];
};

static void
rh_history_read(void *arg, const redisReply *reply)
{
    struct rh_history *h = arg;
    struct sync_read rd;
    struct buf *out = &h->cw->w->scratch;
    int64_t now = chan_now_ms();
    if (!read_parse(reply, &rd)) {
        h->cb(h->arg, -2, NULL, 0);
        free(h);
        return;
    }
    chan_history_head(out, h->channel, h->len, rd.epoch, HISTORY_EPOCH_LEN);
    for (size_t i = 0; i < rd.nitems; i++) {
        struct history_msg m;
        if (item_parse(rd.items[i], &m) && m.ts + h->ttl_ms > now) chan_history_item(out, &m);
    }
    int rc = chan_history_tail(out, rd.top);
    h->cb(h->arg, rc, rc == 0 ? buf_data(out) : NULL, rc == 0 ? buf_used(out) : 0);
    free(h);
}

void
chan_rh_history(struct chan_worker *cw, const struct ns_rules *r, const char *channel, size_t len,
                uint64_t since, size_t limit, chan_history_cb cb, void *arg)
{
    struct rh_history *h = len <= HUB_CHANNEL_MAX ? malloc(sizeof *h) : NULL;
    if (h == NULL) {
        cb(arg, -2, NULL, 0);
        return;
    }
    *h = (struct rh_history){
        .cw = cw, .cb = cb, .arg = arg, .ttl_ms = r->history_ttl_ms, .len = len};
    memcpy(h->channel, channel, len);
    char meta[CHAN_KEY_MAX], list[CHAN_KEY_MAX], epoch[HISTORY_EPOCH_LEN + 1], from[24], lim[24],
        ttl[24];
    size_t klen;
    sync_keys(cw, channel, len, meta, list, &klen);
    random_epoch(epoch);
    snprintf(from, sizeof from, "%llu", (unsigned long long)since);
    snprintf(lim, sizeof lim, "%zu", limit);
    snprintf(ttl, sizeof ttl, "%lld", CHAN_META_TTL_MS);
    const char *argv[] = {meta, list, epoch, from, lim, ttl};
    size_t lens[] = {klen, klen, HISTORY_EPOCH_LEN, strlen(from), strlen(lim), strlen(ttl)};
    if (pubsub_eval(cw->ps, &read_script, rh_history_read, h, 2, 6, argv, lens) < 0) {
        free(h);
        cb(arg, -2, NULL, 0);
    }
}
