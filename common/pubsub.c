#include "pubsub.h"

#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "redis_url.h"
#include "util.h"

#define PS_BACKOFF_MIN 0.1
#define PS_BACKOFF_MAX 5.0
#define PS_MAX_OUTPUT (8 << 20) /* bytes of publishes Redis has not read yet: beyond, drop */
#define PS_NAME_MAX 512

/* One of the two connections. */
struct ps_conn {
    struct pubsub *ps;
    bool subscriber;
    redisAsyncContext *ac; /* NULL while down */
    bool up;               /* connected */
    int attempts;          /* reconnects since it was last up, for the backoff */
    ev_timer retry;
};

/* A command waiting for its reply, oldest first: replies come in order. */
struct ps_cmd {
    struct ps_cmd *next;
    struct pubsub *ps;
    pubsub_reply_cb cb;
    void *arg;
    ev_tstamp deadline;
};

struct pubsub {
    struct ev_loop *loop;
    double timeout;
    struct ps_cmd *head, **tail;
    ev_timer deadline;
    struct redis_url url;
    char prefix[128];  /* redis_prefix "rt:" */
    size_t prefix_len;
    pubsub_msg_cb on_msg;
    pubsub_ready_cb on_ready;
    void *arg;
    struct ps_conn sub, pub;
    bool closing;
    struct pubsub_stats stats;
};

static void ps_connect(struct ps_conn *pc);

/* The next delay: doubling from PS_BACKOFF_MIN to PS_BACKOFF_MAX, each within +-20%, so
 * that every worker of every instance does not knock on Redis at the same instant. */
static double
ps_backoff(struct ps_conn *pc)
{
    double d = PS_BACKOFF_MIN;
    for (int i = 0; i < pc->attempts && d < PS_BACKOFF_MAX; i++)
        d *= 2;
    if (d > PS_BACKOFF_MAX)
        d = PS_BACKOFF_MAX;
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = 0x80000000u;
    pc->attempts++;
    return d * (0.8 + 0.4 * (r / 4294967296.0));
}

static void
ps_retry_later(struct ps_conn *pc)
{
    pc->ac = NULL;
    pc->up = false;
    if (pc->ps->closing)
        return;
    ev_timer_set(&pc->retry, ps_backoff(pc), 0.);
    ev_timer_start(pc->ps->loop, &pc->retry);
}

static void
ps_on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    ps_connect(container_of(t, struct ps_conn, retry));
}

static void
ps_on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct ps_conn *pc = ac->data;
    if (pc != NULL && pc->ac == ac)
        ps_retry_later(pc);
}

/* Drop a connection that misbehaves (an error reply to SUBSCRIBE or AUTH); the disconnect
 * callback then schedules the next attempt. */
static void
ps_drop(struct ps_conn *pc)
{
    if (pc->ac != NULL)
        redisAsyncDisconnect(pc->ac);
}

static void
ps_on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct ps_conn *pc = priv;
    const redisReply *r = reply;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        ps_drop(pc);
}

static void
ps_on_connect(const redisAsyncContext *ac, int status)
{
    struct ps_conn *pc = ac->data;
    if (pc == NULL || pc->ac != ac)
        return;
    if (status != REDIS_OK) {
        ps_retry_later(pc); /* hiredis frees a context that failed to connect */
        return;
    }
    pc->up = true;
    pc->attempts = 0;
    if (pc->subscriber) {
        pc->ps->stats.reconnects++;
        pc->ps->stats.subscribed = true;
        pc->ps->on_ready(pc->ps->arg);
    }
}

static void
ps_connect(struct ps_conn *pc)
{
    struct pubsub *ps = pc->ps;
    redisAsyncContext *ac = ps->url.is_unix ? redisAsyncConnectUnix(ps->url.path)
                                            : redisAsyncConnect(ps->url.host, ps->url.port);
    if (ac == NULL || ac->err || redisLibevAttach(ps->loop, ac) != REDIS_OK) {
        if (ac != NULL)
            redisAsyncFree(ac);
        ps_retry_later(pc);
        return;
    }
    ac->data = pc;
    pc->ac = ac;
    redisAsyncSetConnectCallback(ac, ps_on_connect);
    redisAsyncSetDisconnectCallback(ac, ps_on_disconnect);
    /* Commands may be queued before the connection is up: AUTH goes first. */
    if (ps->url.password[0] != '\0') {
        if (ps->url.user[0] != '\0')
            redisAsyncCommand(ac, ps_on_auth, pc, "AUTH %s %s", ps->url.user, ps->url.password);
        else
            redisAsyncCommand(ac, ps_on_auth, pc, "AUTH %s", ps->url.password);
    }
}

static void ps_on_deadline(struct ev_loop *loop, ev_timer *t, int revents);

struct pubsub *
pubsub_open(struct ev_loop *loop, const char *url, const char *prefix, double timeout,
            pubsub_msg_cb on_msg, pubsub_ready_cb on_ready, void *arg, char *err,
            size_t errlen)
{
    struct pubsub *ps = calloc(1, sizeof *ps);
    if (ps == NULL) {
        errf(err, errlen, "pubsub: out of memory");
        return NULL;
    }
    char why[256];
    if (redis_url_parse(url, &ps->url, why, sizeof why) < 0) {
        errf(err, errlen, "redis_url: %s", why);
        free(ps);
        return NULL;
    }
    int n = snprintf(ps->prefix, sizeof ps->prefix, "%srt:", prefix);
    ps->prefix_len = n > 0 && (size_t)n < sizeof ps->prefix ? (size_t)n : 0;
    ps->loop = loop;
    ps->timeout = timeout;
    ps->tail = &ps->head;
    ev_init(&ps->deadline, ps_on_deadline);
    ps->on_msg = on_msg;
    ps->on_ready = on_ready;
    ps->arg = arg;
    struct ps_conn *conns[] = {&ps->sub, &ps->pub};
    for (size_t i = 0; i < ARRAY_LEN(conns); i++) {
        conns[i]->ps = ps;
        conns[i]->subscriber = conns[i] == &ps->sub;
        ev_init(&conns[i]->retry, ps_on_retry);
        ps_connect(conns[i]);
    }
    return ps;
}

void
pubsub_close(struct pubsub *ps)
{
    if (ps == NULL)
        return;
    ps->closing = true;
    ev_timer_stop(ps->loop, &ps->deadline);
    struct ps_conn *conns[] = {&ps->sub, &ps->pub};
    for (size_t i = 0; i < ARRAY_LEN(conns); i++) {
        ev_timer_stop(ps->loop, &conns[i]->retry);
        if (conns[i]->ac != NULL) {
            conns[i]->ac->data = NULL; /* its callbacks must not find us */
            redisAsyncFree(conns[i]->ac);
        }
    }
    free(ps);
}


/* Every reply on the subscriber: confirmations, and the messages themselves. */
static void
ps_on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct pubsub *ps = priv;
    const redisReply *r = reply;
    if (r == NULL || ps->closing)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        ps_drop(&ps->sub);
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
    if (ps->sub.up && n > 0)
        redisAsyncCommand(ps->sub.ac, ps_on_sub, ps, "%s %b", cmd, full, n);
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
    redisAsyncContext *ac = ps->pub.ac;
    /* Down, or up but not reading: what cannot reach Redis soon is dropped, not hoarded. */
    if (n == 0 || !ps->pub.up || sdslen(ac->c.obuf) > PS_MAX_OUTPUT ||
        redisAsyncCommand(ac, NULL, NULL, "PUBLISH %b %b", full, n, msg, msg_len) != REDIS_OK) {
        ps->stats.dropped++;
        return -1;
    }
    ps->stats.published++;
    return 0;
}

/* Arm the timer for the oldest command. */
static void
ps_arm(struct pubsub *ps)
{
    ev_timer_stop(ps->loop, &ps->deadline);
    if (ps->head == NULL)
        return;
    double left = ps->head->deadline - ev_now(ps->loop);
    ev_timer_set(&ps->deadline, left > 0.001 ? left : 0.001, 0.);
    ev_timer_start(ps->loop, &ps->deadline);
}

/* Every command reply comes here first; NULL when the connection went away. */
static void
ps_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct ps_cmd *cmd = priv;
    struct pubsub *ps = cmd->ps;
    if (ps->head == cmd) { /* the oldest, as it should be */
        ps->head = cmd->next;
        if (ps->head == NULL)
            ps->tail = &ps->head;
    }
    if (!ps->closing) {
        ps_arm(ps);
        cmd->cb(cmd->arg, reply);
    }
    free(cmd);
}

/* The oldest command has had its time: drop the connection, and hiredis hands every
 * command in flight a NULL reply. */
static void
ps_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct pubsub *ps = container_of(t, struct pubsub, deadline);
    if (ps->head != NULL && ps->head->deadline <= ev_now(ps->loop) + 0.0005)
        ps_drop(&ps->pub);
    else
        ps_arm(ps);
}

int
pubsub_command(struct pubsub *ps, pubsub_reply_cb cb, void *arg, int argc, const char **argv,
               const size_t *argvlen)
{
    struct ps_cmd *cmd;
    if (!ps->pub.up || (cmd = calloc(1, sizeof *cmd)) == NULL)
        return -1;
    *cmd = (struct ps_cmd){.ps = ps, .cb = cb, .arg = arg,
                           .deadline = ev_now(ps->loop) + ps->timeout};
    if (redisAsyncCommandArgv(ps->pub.ac, ps_on_reply, cmd, argc, argv, argvlen) != REDIS_OK) {
        free(cmd);
        return -1;
    }
    *ps->tail = cmd;
    ps->tail = &cmd->next;
    if (!ev_is_active(&ps->deadline))
        ps_arm(ps);
    return 0;
}

size_t
pubsub_name(const struct pubsub *ps, const char *name, size_t len, char *out, size_t cap)
{
    if (ps->prefix_len + len > cap)
        return 0;
    memcpy(out, ps->prefix, ps->prefix_len);
    memcpy(out + ps->prefix_len, name, len);
    return ps->prefix_len + len;
}

void
pubsub_stats(const struct pubsub *ps, struct pubsub_stats *out)
{
    *out = ps->stats;
    out->subscribed = ps->sub.up;
}
