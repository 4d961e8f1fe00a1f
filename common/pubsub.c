#include "pubsub.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"
#include "util.h"

#define PS_MAX_OUTPUT (8 << 20) /* bytes of publishes Redis has not read yet: beyond, drop */
#define PS_NAME_MAX 512

/* Two connections of common/redis.h, which log in, select redis_url's database (so that
 * what the roster writes through pubsub_command lands beside the sessions), time out
 * commands and reconnect. The subscriber's handshake ends before on_ready resubscribes. */
struct pubsub {
    struct redis_conn *sub, *pub;
    char prefix[128]; /* redis_prefix "rt:" */
    size_t prefix_len;
    pubsub_msg_cb on_msg;
    pubsub_ready_cb on_ready;
    void *arg;
    pubsub_ready_cb on_pub_ready; /* may be NULL */
    void *pub_arg;
    struct pubsub_stats stats;
};

static void ps_on_push(void *arg, const redisReply *r);

static void
ps_on_sub_ready(void *arg)
{
    struct pubsub *ps = arg;
    ps->stats.reconnects++;
    ps->on_ready(ps->arg);
}

static void
ps_on_pub_ready(void *arg)
{
    struct pubsub *ps = arg;
    if (ps->on_pub_ready != NULL) ps->on_pub_ready(ps->pub_arg);
}

static int
ps_open_conns(struct pubsub *ps, struct ev_loop *loop, const struct redis_url *url, double timeout,
              char *err, size_t errlen)
{
    struct redis_opts sub = {
        .timeout = timeout, .on_ready = ps_on_sub_ready, .on_push = ps_on_push, .arg = ps};
    struct redis_opts pub = {.timeout = timeout, .on_ready = ps_on_pub_ready, .arg = ps};
    if ((ps->sub = redis_open(loop, url, &sub, err, errlen)) == NULL) return -1;
    if ((ps->pub = redis_open(loop, url, &pub, err, errlen)) == NULL) {
        redis_close(ps->sub);
        return -1;
    }
    return 0;
}

struct pubsub *
pubsub_open(struct ev_loop *loop, const char *url, const char *prefix, double timeout,
            pubsub_msg_cb on_msg, pubsub_ready_cb on_ready, void *arg, char *err, size_t errlen)
{
    struct redis_url u;
    char why[256];
    if (redis_url_parse(url, &u, why, sizeof why) < 0) {
        errf(err, errlen, "redis_url: %s", why);
        return NULL;
    }
    struct pubsub *ps = calloc(1, sizeof *ps);
    if (ps == NULL) {
        errf(err, errlen, "pubsub: out of memory");
        return NULL;
    }
    int n = snprintf(ps->prefix, sizeof ps->prefix, "%srt:", prefix);
    ps->prefix_len = n > 0 && (size_t)n < sizeof ps->prefix ? (size_t)n : 0;
    ps->on_msg = on_msg;
    ps->on_ready = on_ready;
    ps->arg = arg;
    if (ps_open_conns(ps, loop, &u, timeout, err, errlen) < 0) {
        free(ps);
        return NULL;
    }
    return ps;
}

void
pubsub_close(struct pubsub *ps)
{
    if (ps == NULL) return;
    redis_close(ps->sub);
    redis_close(ps->pub);
    free(ps);
}

void
pubsub_on_command_ready(struct pubsub *ps, pubsub_ready_cb cb, void *arg)
{
    ps->on_pub_ready = cb;
    ps->pub_arg = arg;
}

/* Every reply on the subscriber: confirmations, and the messages themselves. */
static void
ps_on_push(void *arg, const redisReply *r)
{
    struct pubsub *ps = arg;
    if (r->type == REDIS_REPLY_ERROR) {
        redis_reset(ps->sub); /* a refused SUBSCRIBE: start again, and resubscribe all */
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0)
        return;
    const redisReply *ch = r->element[1], *msg = r->element[2];
    if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING ||
        ch->len < ps->prefix_len)
        return;
    ps->stats.received++;
    ps->on_msg(ps->arg, ch->str + ps->prefix_len, ch->len - ps->prefix_len, msg->str, msg->len);
}

static void
ps_sub_command(struct pubsub *ps, const char *cmd, const char *name, size_t len)
{
    char full[PS_NAME_MAX];
    size_t n = pubsub_name(ps, name, len, full, sizeof full);
    const char *argv[] = {cmd, full};
    size_t argvlen[] = {strlen(cmd), n};
    if (n > 0) redis_subscribe_command(ps->sub, 2, argv, argvlen);
}

void
pubsub_subscribe(struct pubsub *ps, const char *name, size_t len)
{
    ps_sub_command(ps, "SUBSCRIBE", name, len);
}

void
pubsub_unsubscribe(struct pubsub *ps, const char *name, size_t len)
{
    ps_sub_command(ps, "UNSUBSCRIBE", name, len);
}

int
pubsub_publish(struct pubsub *ps, const char *name, size_t len, const void *msg, size_t msg_len)
{
    char full[PS_NAME_MAX];
    size_t n = pubsub_name(ps, name, len, full, sizeof full);
    const char *argv[] = {"PUBLISH", full, msg};
    size_t argvlen[] = {7, n, msg_len};
    /* Down, or up but not reading: what cannot reach Redis soon is dropped, not hoarded. */
    if (n == 0 || !redis_ready(ps->pub) || redis_pending_output(ps->pub) > PS_MAX_OUTPUT ||
        redis_command(ps->pub, NULL, NULL, 3, argv, argvlen) < 0) {
        ps->stats.dropped++;
        return -1;
    }
    ps->stats.published++;
    return 0;
}

int
pubsub_command(struct pubsub *ps, pubsub_reply_cb cb, void *arg, int argc, const char **argv,
               const size_t *argvlen)
{
    if (!redis_ready(ps->pub)) return -1;
    return redis_command(ps->pub, cb, arg, argc, argv, argvlen);
}

int
pubsub_eval(struct pubsub *ps, const struct redis_script *s, pubsub_reply_cb cb, void *arg,
            int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (!redis_ready(ps->pub)) return -1;
    return redis_eval(ps->pub, s, cb, arg, nkeys, argc, argv, argvlen);
}

size_t
pubsub_name(const struct pubsub *ps, const char *name, size_t len, char *out, size_t cap)
{
    if (ps->prefix_len + len > cap) return 0;
    memcpy(out, ps->prefix, ps->prefix_len);
    memcpy(out + ps->prefix_len, name, len);
    return ps->prefix_len + len;
}

void
pubsub_stats(const struct pubsub *ps, struct pubsub_stats *out)
{
    *out = ps->stats;
    out->subscribed = redis_ready(ps->sub);
}
