#include "redis.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "list.h"
#include "log.h"
#include "redis_sentinel.h"
#include "redis_wire.h"
#include "util.h"

#define RC_BACKOFF_MIN 0.1
#define RC_BACKOFF_MAX 5.0
#define RC_JITTER 0.2

/* RC_DISCARD: a command whose reply nobody wants, still in line, since replies come in
 * the order of the commands. RC_WAIT: the WAIT after a replicated write, which holds
 * the write's reply until the replicas have it. */
enum rc_kind { RC_USER, RC_SETUP, RC_PROBE, RC_DISCARD, RC_WAIT };

/* A WAIT waits what is left of its write's deadline less this margin (at most
 * RC_WAIT_SHARE of the timeout), so that its answer, enough replicas or not, comes
 * within the write's deadline: Redis ends a WAIT up to 1/hz (100 ms) past its timeout. */
#define RC_WAIT_MARGIN 0.25
#define RC_WAIT_SHARE 0.4

/* A command with a reply to wait for, in flight oldest first: replies come in order. */
struct rc_cmd {
    struct rc_cmd *prev, *next;
    struct redis_conn *rc;
    enum rc_kind kind;
    redis_reply_cb cb;
    void *arg;
    ev_tstamp deadline;
    const char *what;                 /* setup: "AUTH", "SELECT", "SCRIPT LOAD" */
    const struct redis_script *script; /* setup: the SHA to check; eval: to retry */
    bool last;                        /* the handshake's last command */
    bool eval;                        /* already retried as EVAL */
    int replicas;                     /* a replicated write: WAIT for this many */
    redisReply *held;                 /* a WAIT: the write's reply, until WAIT answers */
    int argc;                         /* an EVALSHA's copied arguments, for the retry */
    const char **argv;
    size_t *argvlen;
};

struct redis_conn {
    struct redis_conn *prev, *next; /* in rc_all: every connection of the process */
    struct ev_loop *loop;
    struct redis_url url;
    struct redis_opts opts;
    char where[REDIS_URL_HOST_MAX + REDIS_URL_PATH_MAX + 16];
    struct redis_wire *wire; /* NULL while down */
    bool ready, closing;
    enum redis_circuit circuit;
    bool probe_due; /* the circuit has been open long enough: probe once ready */
    int failures;   /* consecutive */
    int attempts;   /* reconnects since the last success, for the backoff */
    uint64_t rng;
    struct rc_cmd *head, *tail;
    ev_timer deadline_timer, reconnect_timer, circuit_timer;
    char cause[512];
};

static void rc_connect(struct redis_conn *rc);

/* Every open connection of this process, for the Sentinel watcher to move them. */
static struct redis_conn *rc_all;

/* The rediss:// context, one per process: built by redis_tls_setup in the master before
 * it forks, so that a bad CA file is a config error and the workers inherit it. */
static SSL_CTX *rc_tls;

int
redis_tls_setup(const char *ca, const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = redis_tls_context(ca, cert, key, err, errlen);
    if (ctx == NULL)
        return -1;
    SSL_CTX_free(rc_tls);
    rc_tls = ctx;
    return 0;
}

/* ---- scripts ---- */

int
redis_script_init(struct redis_script *s, const char *body, char *err, size_t errlen)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    s->body = body;
    if (EVP_Digest(body, strlen(body), md, &n, EVP_sha1(), NULL) != 1 ||
        n != REDIS_SHA_HEX / 2) {
        errf(err, errlen, "redis: cannot compute a script's SHA-1");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        s->sha[2 * i] = digits[md[i] >> 4];
        s->sha[2 * i + 1] = digits[md[i] & 15];
    }
    s->sha[REDIS_SHA_HEX] = '\0';
    return 0;
}

/* ---- small helpers ---- */

__attribute__((format(printf, 2, 3))) static void
rc_cause(struct redis_conn *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rc->cause, sizeof rc->cause, fmt, ap);
    va_end(ap);
}

/* A number in [0, 1) for the backoff's jitter (xorshift64*: no need for more). */
static double
rc_random(struct redis_conn *rc)
{
    uint64_t x = rc->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rc->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

static void
rc_seed(struct redis_conn *rc)
{
    if (getrandom(&rc->rng, sizeof rc->rng, GRND_NONBLOCK) != (ssize_t)sizeof rc->rng)
        rc->rng = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
    rc->rng |= 1; /* xorshift never leaves zero */
}

static void
rc_cmd_free(struct rc_cmd *cmd)
{
    if (cmd->held != NULL)
        freeReplyObject(cmd->held);
    free(cmd->argv); /* argvlen and the bytes live in the same block */
    free(cmd);
}

/* ---- the log ---- */

/* Why Redis went away, said once: the connections of a process (the store's, pub/sub's
 * two) usually fail for one reason at once, and a reconnect that fails the same way
 * every few seconds says nothing new. */
static char rc_logged[sizeof ((struct redis_conn *)0)->cause];

static void
rc_log_down(const struct redis_conn *rc)
{
    if (rc->closing || strcmp(rc->cause, rc_logged) == 0)
        return;
    log_warnx("%s", rc->cause);
    snprintf(rc_logged, sizeof rc_logged, "%s", rc->cause);
}

static void
rc_log_up(const struct redis_conn *rc)
{
    if (rc_logged[0] == '\0')
        return;
    log_info("%s: connected", rc->where);
    rc_logged[0] = '\0';
}

/* ---- circuit and reconnect ---- */

static void
rc_circuit_open(struct redis_conn *rc)
{
    if (!rc->opts.circuit)
        return;
    rc->circuit = REDIS_OPEN;
    rc->probe_due = false;
    ev_timer_stop(rc->loop, &rc->circuit_timer);
    ev_timer_set(&rc->circuit_timer, REDIS_OPEN_SECONDS, 0.);
    ev_timer_start(rc->loop, &rc->circuit_timer);
}

/* An error reply or a timeout: enough of them in a row open the circuit, so that the
 * user stops waiting on a Redis that is unwell. */
static void
rc_count_failure(struct redis_conn *rc)
{
    if (++rc->failures >= REDIS_FAILURES_TO_OPEN && rc->circuit == REDIS_CLOSED)
        rc_circuit_open(rc);
}

static void
rc_schedule_reconnect(struct redis_conn *rc)
{
    if (rc->closing || ev_is_active(&rc->reconnect_timer))
        return;
    double d = RC_BACKOFF_MIN;
    for (int i = 0; i < rc->attempts && d < RC_BACKOFF_MAX; i++)
        d *= 2;
    if (d > RC_BACKOFF_MAX)
        d = RC_BACKOFF_MAX;
    /* Jitter, so that the workers of every instance do not reconnect in step. */
    d *= 1.0 - RC_JITTER + 2 * RC_JITTER * rc_random(rc);
    if (rc->attempts < 32)
        rc->attempts++;
    ev_timer_set(&rc->reconnect_timer, d, 0.);
    ev_timer_start(rc->loop, &rc->reconnect_timer);
}

static bool rc_complete(struct redis_conn *rc, redisReply *r);

/* Not connected: open the circuit, try again later. */
static void
rc_retry(struct redis_conn *rc)
{
    rc->ready = false;
    if (rc->circuit != REDIS_OPEN)
        rc_circuit_open(rc);
    rc_schedule_reconnect(rc);
}

/* Down, for the reason in cause: say so, and try again later. */
static void
rc_failed(struct redis_conn *rc)
{
    rc_log_down(rc);
    if (!rc->closing)
        redis_sentinel_ask(); /* lost, refused or a replica: the master may have moved */
    rc_retry(rc);
}

/* The connection is gone: close its socket at once, then every command in flight gets
 * its NULL reply, oldest first. A callback that sends again finds no connection. */
static void
rc_drop(struct redis_conn *rc)
{
    if (rc->wire == NULL)
        return;
    redis_wire_free(rc->wire);
    rc->wire = NULL;
    ev_timer_stop(rc->loop, &rc->deadline_timer);
    rc_failed(rc);
    while (rc->head != NULL)
        rc_complete(rc, NULL);
}

/* ---- sending ---- */

/* Queue cmd's command on the wire and start its clock; -1 (cmd not taken) without a
 * connection. */
static int
rc_send(struct redis_conn *rc, struct rc_cmd *cmd, int argc, const char **argv,
        const size_t *argvlen)
{
    if (rc->wire == NULL || redis_wire_send(rc->wire, argc, argv, argvlen) < 0)
        return -1;
    cmd->deadline = ev_now(rc->loop) + rc->opts.timeout;
    LIST_APPEND(rc->head, rc->tail, cmd);
    /* One timer, for the oldest command: replies come in order, so no later command can
     * time out first. */
    if (!ev_is_active(&rc->deadline_timer)) {
        ev_timer_set(&rc->deadline_timer, rc->opts.timeout, 0.);
        ev_timer_start(rc->loop, &rc->deadline_timer);
    }
    return 0;
}

static struct rc_cmd *
rc_cmd_new(struct redis_conn *rc, enum rc_kind kind, redis_reply_cb cb, void *arg)
{
    struct rc_cmd *cmd = calloc(1, sizeof *cmd);
    if (cmd != NULL)
        *cmd = (struct rc_cmd){.rc = rc, .kind = kind, .cb = cb, .arg = arg};
    return cmd;
}

static int
rc_send_new(struct redis_conn *rc, struct rc_cmd *cmd, int argc, const char **argv,
            const size_t *argvlen)
{
    if (rc_send(rc, cmd, argc, argv, argvlen) == 0)
        return 0;
    rc_cmd_free(cmd);
    return -1;
}

int
redis_command(struct redis_conn *rc, redis_reply_cb cb, void *arg, int argc,
              const char **argv, const size_t *argvlen)
{
    if (rc->wire == NULL)
        return -1;
    struct rc_cmd *cmd = rc_cmd_new(rc, cb != NULL ? RC_USER : RC_DISCARD, cb, arg);
    return cmd != NULL ? rc_send_new(rc, cmd, argc, argv, argvlen) : -1;
}

/* Copy argv behind "EVALSHA sha nkeys" into one block owned by cmd. */
static int
rc_eval_args(struct rc_cmd *cmd, const struct redis_script *s, int nkeys, int argc,
             const char **argv, const size_t *argvlen)
{
    char keys[16];
    int kn = snprintf(keys, sizeof keys, "%d", nkeys);
    size_t total = (size_t)kn, n = (size_t)argc + 3;
    for (int i = 0; i < argc; i++)
        total += argvlen[i];
    /* The two vectors first (pointers, then lengths), then the bytes they point into. */
    size_t ptrs = n * sizeof cmd->argv[0], vecs = ptrs + n * sizeof cmd->argvlen[0];
    char *block = malloc(vecs + total + 1);
    if (block == NULL)
        return -1;
    cmd->argv = (const char **)(void *)block;
    cmd->argvlen = (size_t *)(void *)(block + ptrs);
    char *p = block + vecs;
    cmd->argc = (int)n;
    cmd->argv[0] = "EVALSHA", cmd->argvlen[0] = 7;
    cmd->argv[1] = s->sha, cmd->argvlen[1] = REDIS_SHA_HEX;
    memcpy(p, keys, (size_t)kn);
    cmd->argv[2] = p, cmd->argvlen[2] = (size_t)kn;
    p += kn;
    for (int i = 0; i < argc; i++) {
        if (argvlen[i] > 0)
            memcpy(p, argv[i], argvlen[i]);
        cmd->argv[3 + i] = p, cmd->argvlen[3 + i] = argvlen[i];
        p += argvlen[i];
    }
    return 0;
}

static int
rc_eval(struct redis_conn *rc, const struct redis_script *s, int replicas, redis_reply_cb cb,
        void *arg, int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    if (rc->wire == NULL || cb == NULL || nkeys < 0 || nkeys > argc)
        return -1;
    struct rc_cmd *cmd = rc_cmd_new(rc, RC_USER, cb, arg);
    if (cmd == NULL)
        return -1;
    cmd->script = s;
    cmd->replicas = replicas;
    if (rc_eval_args(cmd, s, nkeys, argc, argv, argvlen) < 0) {
        rc_cmd_free(cmd);
        return -1;
    }
    return rc_send_new(rc, cmd, cmd->argc, cmd->argv, cmd->argvlen);
}

int
redis_eval(struct redis_conn *rc, const struct redis_script *s, redis_reply_cb cb, void *arg,
           int nkeys, int argc, const char **argv, const size_t *argvlen)
{
    return rc_eval(rc, s, 0, cb, arg, nkeys, argc, argv, argvlen);
}

int
redis_eval_replicated(struct redis_conn *rc, const struct redis_script *s, int replicas,
                      redis_reply_cb cb, void *arg, int nkeys, int argc, const char **argv,
                      const size_t *argvlen)
{
    return rc_eval(rc, s, replicas, cb, arg, nkeys, argc, argv, argvlen);
}

/* On a subscriber, what Redis sends unasked (messages) and its answers to SUBSCRIBE and
 * the like: an array that starts with one of these words. Anything else answers the
 * oldest command in line (the handshake's, a probe's PING). */
static bool
rc_is_push(const struct redis_conn *rc, const redisReply *r)
{
    static const char *const kinds[] = {"message",   "pmessage",   "subscribe",
                                        "unsubscribe", "psubscribe", "punsubscribe"};
    if (rc->opts.on_push == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return false;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (redis_reply_is(r->element[0], kinds[i]))
            return true;
    return false;
}

int
redis_subscribe_command(struct redis_conn *rc, int argc, const char **argv,
                        const size_t *argvlen)
{
    if (!rc->ready || rc->opts.on_push == NULL)
        return -1;
    return redis_wire_send(rc->wire, argc, argv, argvlen);
}

/* ---- replies ---- */

/* NOSCRIPT: Redis lost its scripts (a restart, SCRIPT FLUSH, a failover). Send the same
 * call again as EVAL with the body; true if it went. */
static bool
rc_noscript(struct redis_conn *rc, struct rc_cmd *cmd, const redisReply *r)
{
    if (cmd->script == NULL || cmd->eval || r->type != REDIS_REPLY_ERROR || r->len < 8 ||
        strncmp(r->str, "NOSCRIPT", 8) != 0)
        return false;
    cmd->eval = true;
    cmd->argv[0] = "EVAL", cmd->argvlen[0] = 4;
    cmd->argv[1] = cmd->script->body, cmd->argvlen[1] = strlen(cmd->script->body);
    return rc_send(rc, cmd, cmd->argc, cmd->argv, cmd->argvlen) == 0;
}

/* Half open: one PING decides. */
static void
rc_probe(struct redis_conn *rc)
{
    static const char *const ping[] = {"PING"};
    static const size_t ping_len[] = {4};
    rc->circuit = REDIS_HALF_OPEN;
    rc->probe_due = false;
    struct rc_cmd *cmd = rc_cmd_new(rc, RC_PROBE, NULL, NULL);
    if (cmd == NULL || rc_send_new(rc, cmd, 1, (const char **)ping, ping_len) < 0)
        rc_circuit_open(rc);
}

static void
rc_became_ready(struct redis_conn *rc)
{
    rc->ready = true;
    rc_log_up(rc);
    if (!rc->opts.circuit)
        rc->attempts = 0;
    if (rc->circuit == REDIS_OPEN && rc->probe_due)
        rc_probe(rc);
    if (rc->opts.on_ready != NULL)
        rc->opts.on_ready(rc->opts.arg);
}

/* A handshake reply: an error drops the connection and leaves the reason as the cause. */
static void
rc_on_setup(struct redis_conn *rc, const struct rc_cmd *cmd, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        rc_cause(rc, "%s: %s: %.*s", rc->where, cmd->what, (int)r->len, r->str);
        rc_drop(rc);
    } else if (strcmp(cmd->what, "ROLE") == 0 && !sentinel_role_is_master(r)) {
        rc_cause(rc, "%s: a replica, no longer the master: asking the Sentinels again",
                 rc->where);
        rc_drop(rc);
    } else if (cmd->script != NULL &&
               (r->type != REDIS_REPLY_STRING || r->len != REDIS_SHA_HEX ||
                memcmp(r->str, cmd->script->sha, REDIS_SHA_HEX) != 0)) {
        rc_cause(rc, "%s: SCRIPT LOAD answered an unexpected SHA", rc->where);
        rc_drop(rc);
    } else if (cmd->last) {
        rc_became_ready(rc);
    }
}

static void
rc_on_probe(struct redis_conn *rc, const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        rc_cause(rc, "PING: %.*s", (int)r->len, r->str);
        rc_circuit_open(rc);
    } else if (rc->circuit == REDIS_HALF_OPEN) {
        rc->circuit = REDIS_CLOSED;
        rc->failures = 0;
        rc->attempts = 0;
    }
}

static void
rc_on_user(struct redis_conn *rc, const struct rc_cmd *cmd, const redisReply *r)
{
    bool demoted = false;
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        rc_cause(rc, "%s: %.*s", rc->where, (int)r->len, r->str);
        rc_count_failure(rc);
        /* The master we were given has become a replica: find the new one. */
        demoted = redis_sentinel_on() && r->len >= 8 && strncmp(r->str, "READONLY", 8) == 0;
    }
    if (!rc->closing)
        cmd->cb(cmd->arg, r);
    if (demoted)
        rc_drop(rc);
}

/* A replicated write's own reply. A success goes on to WAIT, which holds it until the
 * replicas have the write (true: r is kept there); an error, or no reply, is the answer
 * now. WAIT goes once the write has answered, not pipelined behind it: a NOSCRIPT retry
 * then comes before it, and the commands sent meanwhile do not queue behind a WAIT. */
static bool
rc_on_replicated(struct redis_conn *rc, struct rc_cmd *cmd, redisReply *r)
{
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        rc_on_user(rc, cmd, r);
        return false;
    }
    double margin = rc->opts.timeout * RC_WAIT_SHARE;
    if (margin > RC_WAIT_MARGIN)
        margin = RC_WAIT_MARGIN;
    long long ms = (long long)((cmd->deadline - ev_now(rc->loop) - margin) * 1000);
    char n[16], t[24];
    snprintf(n, sizeof n, "%d", cmd->replicas);
    snprintf(t, sizeof t, "%lld", ms > 0 ? ms : 1);
    const char *argv[] = {"WAIT", n, t};
    const size_t len[] = {4, strlen(n), strlen(t)};
    struct rc_cmd *w = rc_cmd_new(rc, RC_WAIT, cmd->cb, cmd->arg);
    if (w != NULL && rc_send(rc, w, 3, argv, len) == 0) {
        w->replicas = cmd->replicas;
        w->held = r;
        return true;
    }
    if (w != NULL)
        rc_cmd_free(w);
    rc_cause(rc, "%s: WAIT could not be sent, so the write is not known to be replicated",
             rc->where);
    rc_on_user(rc, cmd, NULL);
    return false;
}

/* WAIT's answer: the held reply goes to the user when enough replicas have the write,
 * NULL (with the cause) when not. A shortfall is no failure of Redis itself, so it does
 * not count towards the circuit. */
static void
rc_on_wait(struct redis_conn *rc, const struct rc_cmd *w, const redisReply *r)
{
    const redisReply *answer = r != NULL ? w->held : NULL;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer < w->replicas) {
        rc_cause(rc, "%s: WAIT: %lld of %d replicas had the write in time", rc->where,
                 r->integer, w->replicas);
        rc_log_down(rc);
        answer = NULL;
    } else if (r != NULL && r->type != REDIS_REPLY_INTEGER) {
        rc_cause(rc, "%s: WAIT: %.*s", rc->where, r->type == REDIS_REPLY_ERROR ? (int)r->len : 0,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
        answer = NULL;
    }
    if (!rc->closing)
        w->cb(w->arg, answer);
}

/* The oldest command leaves the line: replies come in the order of the commands. */
static struct rc_cmd *
rc_pop(struct redis_conn *rc)
{
    struct rc_cmd *cmd = rc->head;
    rc->head = cmd->next;
    if (rc->head != NULL)
        rc->head->prev = NULL;
    else
        rc->tail = NULL;
    cmd->next = NULL;
    return cmd;
}

/* The oldest command's reply, or NULL when the connection went away: it is done. True
 * when r was kept (a replicated write's, until its WAIT answers). */
static bool
rc_complete(struct redis_conn *rc, redisReply *r)
{
    struct rc_cmd *cmd = rc_pop(rc);
    if (r != NULL && rc_noscript(rc, cmd, r))
        return false;
    if (r != NULL && r->type != REDIS_REPLY_ERROR)
        rc->failures = 0;
    bool kept = false;
    if (cmd->kind == RC_USER && cmd->replicas > 0)
        kept = rc_on_replicated(rc, cmd, r);
    else if (cmd->kind == RC_USER)
        rc_on_user(rc, cmd, r);
    else if (cmd->kind == RC_WAIT)
        rc_on_wait(rc, cmd, r);
    else if (r != NULL && cmd->kind == RC_SETUP)
        rc_on_setup(rc, cmd, r);
    else if (r != NULL && cmd->kind == RC_PROBE)
        rc_on_probe(rc, r);
    rc_cmd_free(cmd);
    return kept;
}

static void
rc_on_wire_reply(void *arg, redisReply *r)
{
    struct redis_conn *rc = arg;
    if (rc_is_push(rc, r)) {
        if (!rc->closing)
            rc->opts.on_push(rc->opts.arg, r);
    } else if (rc->head != NULL) {
        if (rc_complete(rc, r))
            r = NULL;
        if (rc->head == NULL)
            ev_timer_stop(rc->loop, &rc->deadline_timer);
    } else {
        rc_cause(rc, "%s: a reply nobody asked for", rc->where);
        rc_drop(rc);
    }
    if (r != NULL)
        freeReplyObject(r);
}

static void
rc_on_wire_lost(void *arg, const char *why)
{
    struct redis_conn *rc = arg;
    rc_cause(rc, "redis %s", why);
    rc_drop(rc);
}

/* No on_open: the handshake was queued at connect and goes out as soon as it can. */
static const struct redis_wire_ops rc_wire_ops = {.on_reply = rc_on_wire_reply,
                                                  .on_lost = rc_on_wire_lost};

/* ---- deadlines ---- */

/* Arm the timer for the oldest command in flight; false if that one is overdue. */
static bool
rc_rearm(struct redis_conn *rc)
{
    if (rc->head == NULL)
        return true;
    ev_tstamp left = rc->head->deadline - ev_now(rc->loop);
    if (left <= 0)
        return false;
    ev_timer_set(&rc->deadline_timer, left, 0.);
    ev_timer_start(rc->loop, &rc->deadline_timer);
    return true;
}

/* The oldest command has had its time: a command cannot be taken back from Redis, so the
 * connection goes at once, and with it every command in flight. */
static void
rc_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_conn *rc = container_of(t, struct redis_conn, deadline_timer);
    if (rc->wire == NULL || rc_rearm(rc))
        return;
    /* After a stall of the loop the reply may be waiting unread: read before judging. */
    redis_wire_poll(rc->wire);
    if (rc->wire == NULL || rc_rearm(rc))
        return;
    rc_cause(rc, "%s: no reply within %lld ms", rc->where,
             (long long)(rc->opts.timeout * 1000 + 0.5));
    rc_count_failure(rc);
    rc_drop(rc);
}

/* ---- connecting ---- */

static void
rc_setup_send(struct redis_conn *rc, const char *what, const struct redis_script *s, bool last,
              int argc, const char **argv)
{
    size_t len[4];
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    struct rc_cmd *cmd = rc_cmd_new(rc, RC_SETUP, NULL, NULL);
    if (cmd == NULL) {
        rc_cause(rc, "%s: out of memory", rc->where);
        rc_drop(rc);
        return;
    }
    cmd->what = what;
    cmd->script = s;
    cmd->last = last;
    rc_send_new(rc, cmd, argc, argv, len);
}

/* Log in, choose the database and load the scripts. These go out first on the new
 * connection, so that the commands queued behind them find everything ready. The last
 * of them (PING when there is nothing else) says the handshake is done. */
static void
rc_handshake(struct redis_conn *rc)
{
    const struct redis_url *u = &rc->url;
    char db[16];
    snprintf(db, sizeof db, "%d", u->db);
    if (u->password[0] != '\0' && u->user[0] != '\0')
        rc_setup_send(rc, "AUTH", NULL, false, 3,
                      (const char *[]){"AUTH", u->user, u->password});
    else if (u->password[0] != '\0')
        rc_setup_send(rc, "AUTH", NULL, false, 2, (const char *[]){"AUTH", u->password});
    if (u->db != 0)
        rc_setup_send(rc, "SELECT", NULL, false, 2, (const char *[]){"SELECT", db});
    /* What Sentinel named may have been demoted since: only a master will do. */
    if (redis_sentinel_on())
        rc_setup_send(rc, "ROLE", NULL, false, 1, (const char *[]){"ROLE"});
    for (size_t i = 0; i < rc->opts.nscripts; i++)
        rc_setup_send(rc, "SCRIPT LOAD", rc->opts.scripts[i], i + 1 == rc->opts.nscripts, 3,
                      (const char *[]){"SCRIPT", "LOAD", rc->opts.scripts[i]->body});
    if (rc->opts.nscripts == 0)
        rc_setup_send(rc, "PING", NULL, true, 1, (const char *[]){"PING"});
}

static void rc_where(struct redis_conn *rc);

/* With Sentinel, connect where it last said the master is; false while it has not. */
static bool
rc_find_master(struct redis_conn *rc)
{
    struct sentinel_addr a;
    if (!redis_sentinel_on())
        return true;
    if (!redis_sentinel_master(&a)) {
        rc_cause(rc, "redis: %s", redis_sentinel_cause());
        return false;
    }
    snprintf(rc->url.host, sizeof rc->url.host, "%s", a.host);
    rc->url.port = a.port;
    rc->url.is_unix = false;
    rc_where(rc);
    return true;
}

static void
rc_connect(struct redis_conn *rc)
{
    char why[256];
    if (!rc_find_master(rc)) {
        rc_retry(rc); /* the watcher is asking, and logs what goes wrong there */
        return;
    }
    if (rc->url.tls && rc_tls == NULL) {
        rc_cause(rc, "%s: rediss:// but no TLS context (redis_tls_setup)", rc->where);
        rc_failed(rc);
        return;
    }
    rc->wire = redis_wire_open(rc->loop, &rc->url, rc_tls, &rc_wire_ops, rc, why, sizeof why);
    if (rc->wire == NULL) {
        rc_cause(rc, "%s: %s", rc->where, why);
        rc_failed(rc);
        return;
    }
    rc_handshake(rc);
}

static void
rc_on_reconnect_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    rc_connect(container_of(t, struct redis_conn, reconnect_timer));
}

static void
rc_on_circuit_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct redis_conn *rc = container_of(t, struct redis_conn, circuit_timer);
    if (rc->circuit != REDIS_OPEN)
        return;
    rc->probe_due = true;
    if (rc->ready)
        rc_probe(rc);
}

/* ---- open, close, state ---- */

static void
rc_where(struct redis_conn *rc)
{
    const struct redis_url *u = &rc->url;
    if (u->is_unix)
        snprintf(rc->where, sizeof rc->where, "redis %s", u->path);
    else if (strchr(u->host, ':') != NULL)
        snprintf(rc->where, sizeof rc->where, "redis [%s]:%d", u->host, u->port);
    else
        snprintf(rc->where, sizeof rc->where, "redis %s:%d", u->host, u->port);
}

/* Sentinel says the master is elsewhere now: every connection goes there at once, those
 * connected elsewhere dropped (their commands answered NULL), those down without
 * waiting out their backoff. */
static void
rc_master_moved(void)
{
    struct sentinel_addr a;
    if (!redis_sentinel_master(&a))
        return;
    for (struct redis_conn *rc = rc_all, *next; rc != NULL; rc = next) {
        next = rc->next;
        if (rc->wire != NULL && rc->url.port == a.port && strcmp(rc->url.host, a.host) == 0)
            continue;
        if (rc->wire != NULL) {
            rc_cause(rc, "%s: the master moved to %s:%d", rc->where, a.host, a.port);
            rc_drop(rc);
        }
        ev_timer_stop(rc->loop, &rc->reconnect_timer);
        rc->attempts = 0;
        rc_connect(rc);
    }
}

struct redis_conn *
redis_open(struct ev_loop *loop, const struct redis_url *url, const struct redis_opts *opts,
           char *err, size_t errlen)
{
    struct redis_conn *rc = calloc(1, sizeof *rc);
    if (rc == NULL) {
        errf(err, errlen, "redis: out of memory");
        return NULL;
    }
    rc->loop = loop;
    rc->url = *url;
    rc->opts = *opts;
    rc->circuit = REDIS_CLOSED;
    rc_where(rc);
    rc_cause(rc, "%s: not connected yet", rc->where);
    rc_seed(rc);
    ev_timer_init(&rc->deadline_timer, rc_on_deadline, 0., 0.);
    ev_timer_init(&rc->reconnect_timer, rc_on_reconnect_timer, 0., 0.);
    ev_timer_init(&rc->circuit_timer, rc_on_circuit_timer, 0., 0.);
    LIST_PUSH(rc_all, rc);
    redis_sentinel_start(loop, rc_tls, rc->opts.timeout, rc_master_moved);
    rc_connect(rc);
    return rc;
}

/* Commands in flight get no callback: close comes when their users are going away. */
void
redis_close(struct redis_conn *rc)
{
    if (rc == NULL)
        return;
    rc->closing = true;
    LIST_UNLINK(rc_all, rc);
    if (rc_all == NULL)
        redis_sentinel_stop();
    ev_timer_stop(rc->loop, &rc->deadline_timer);
    ev_timer_stop(rc->loop, &rc->reconnect_timer);
    ev_timer_stop(rc->loop, &rc->circuit_timer);
    redis_wire_free(rc->wire);
    while (rc->head != NULL)
        rc_cmd_free(rc_pop(rc));
    free(rc);
}

void
redis_reset(struct redis_conn *rc)
{
    rc_cause(rc, "%s: dropped by its user", rc->where);
    rc_drop(rc);
}

bool
redis_ready(const struct redis_conn *rc)
{
    return rc->ready;
}

size_t
redis_pending_output(const struct redis_conn *rc)
{
    return rc->wire != NULL ? redis_wire_pending(rc->wire) : 0;
}

enum redis_circuit
redis_circuit(const struct redis_conn *rc)
{
    return rc->circuit;
}

const char *
redis_circuit_name(enum redis_circuit c)
{
    return c == REDIS_CLOSED ? "closed" : c == REDIS_OPEN ? "open" : "half_open";
}

const char *
redis_cause(const struct redis_conn *rc)
{
    return rc->cause;
}

const char *
redis_where(const struct redis_conn *rc)
{
    return rc->where;
}
