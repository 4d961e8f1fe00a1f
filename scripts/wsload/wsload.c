/* wsload: a WebSocket load generator for scripts/bench ws, on one libev loop.
 *
 *   wsload --port P --tokens FILE [--host 127.0.0.1] [--source ADDR] [--conns N]
 *          [--channel C] [--deflate] [--inflight K] [--timeout SECS] [--hold SECS]
 *          [--publish-rate R --publish-secs S] [--drain SECS]
 *          [--recover [--reconnect-jitter SECS]] [--pad BYTES]
 *
 * Subscribers: opens N connections to ws://HOST:PORT/ws?token=T (tokens read from FILE,
 * one a line, used round-robin), at most K handshakes in flight at once; each sends
 * {"op":"subscribe","channel":C,"id":1} and waits for the reply. Once every connection
 * has opened or failed and every open one has its reply, it prints a "ready" line, then
 * holds the connections, answering pings, for --hold seconds (0, the default: until
 * SIGTERM or SIGINT), and prints a "done" line. Every channel message that arrives is
 * counted, and the time since the publisher stamped it goes into a latency histogram.
 * SIGUSR1 prints a "snapshot" line and starts the deliveries and the histogram anew, so
 * that one set of subscribers can measure several publish rates in turn.
 *
 * Publisher (--publish-rate): after "ready", one more connection (the first token)
 * publishes R messages a second for S seconds with {"op":"publish"}, each carrying
 * the CLOCK_MONOTONIC time of its sending in microseconds. The clock is the machine's,
 * so a publisher in one process and subscribers in others measure the same latency.
 * With --conns 0 the process only publishes; it waits --drain seconds for the acks.
 * --pad adds "p", a string of that many letters (from a fixed seed, so every run sends the
 * same), to each message's data: big enough, a message is worth compressing.
 *
 * Recovery (--recover, for a channel with history): each subscriber keeps the epoch of
 * its first subscribe's ok and the offsets of the messages it received. When its socket
 * drops, it reconnects after a random delay of up to --reconnect-jitter seconds (0.1 by
 * default; 0.1 s more after a failed attempt) and subscribes with "since" {the highest
 * offset up to which it has every message, the epoch}. A recovery is complete when the
 * "recovered": true ok has come and every offset up to the ok's has arrived; the "done"
 * line adds a "recover" object: connections dropped, attempts, oks with recovered true
 * and false, recoveries still pending, the first and last completion (CLOCK_MONOTONIC
 * us), and over every subscriber, against the highest offset any of them received:
 * offsets lost, received twice, and received after a higher one.
 *
 * Output: one JSON object a line on stdout, {"event":"ready",...} then (after any
 * "snapshot" lines) {"event":"done",...}, with the counts, why connections failed or
 * ended, p50/p99/max in ms and the histogram (sparse [bucket, count] pairs; bucket i
 * holds latencies below 2^((i+1)/16) us), so that the caller can merge the histograms of
 * several processes. Exit status 0 when the figures
 * were printed, 1 when the run could not start, 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

#define RBUF_SIZE (1024 * 1024)     /* the largest frame we take, with its header */
#define HEAD_MAX 4096               /* the largest handshake response */
#define HIST_SUB 16                 /* histogram buckets per power of two */
#define HIST_N (HIST_SUB * 40)      /* up to 2^40 us: far beyond any run */
#define REASONS_MAX 16
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- options and counters ------------------------------------------------------------ */

struct opts {
    const char *host;
    int port;
    const char *tokens_path;
    const char *source;     /* local address to bind, so that several processes (each
                               with its own) are not limited to one range of ports */
    long conns;
    const char *channel;
    bool deflate;
    long inflight;
    double timeout;
    double hold;
    double publish_rate;
    double publish_secs;
    double drain;
    bool recover;
    double reconnect_jitter;
    long pad;
};

struct reason {
    char name[32];
    long count;
};

struct stats {
    long started, opened, failed, subscribed, sub_errors, sub_timeouts, closed;
    long deflated;          /* connections with permessage-deflate negotiated */
    long pings, compressed, delivered;
    long published, publish_acked, publish_errors;
    bool publisher_open, publisher_failed;
    uint64_t hist[HIST_N];
    int64_t max_us;
    struct reason reasons[REASONS_MAX];   /* why connections failed, by kind */
    struct reason closes[REASONS_MAX];    /* why open connections ended, by kind */
    /* --recover */
    long drops, attempts, attempt_failures, recovered, not_recovered, dups, out_of_order;
};

/* What a subscriber knows of its channel across reconnects (--recover): conn_start
 * clears the connection, not this. */
struct track {
    char epoch[96];
    bool subscribed;        /* the first subscribe was answered with an epoch */
    bool dropped;           /* its socket dropped at least once */
    bool recovering;        /* dropped, and the recovery is not complete yet */
    long long base;         /* the offset in the first ok: messages start after it */
    long long contig;       /* every offset in base+1..contig has arrived */
    long long max;          /* the highest offset arrived */
    long long need;         /* the recovered ok's offset, -1 before it */
    unsigned char *seen;    /* arrivals per offset - base - 1, saturating at 255 */
    size_t seen_cap;
    int64_t done_us;        /* when its last recovery completed, 0 if none did */
};

/* ---- a connection -------------------------------------------------------------------- */

enum conn_state { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSED };

struct conn {
    int fd;
    enum conn_state state;
    bool publisher;
    bool settled;           /* counted once: failed, or its subscribe answered */
    bool deflate;           /* permessage-deflate negotiated */
    bool inflate_keeps;     /* the server compresses with context takeover */
    ev_io io;
    ev_timer timer;         /* handshake, then subscribe reply, deadline */
    const char *token;
    char key[25];           /* Sec-WebSocket-Key sent, base64 of 16 bytes */
    unsigned char *in;      /* bytes read but not yet a whole frame (or head) */
    size_t in_len;
    unsigned char *out;     /* bytes the socket did not take yet */
    size_t out_len;
    unsigned char *msg;     /* a fragmented message being gathered */
    size_t msg_len;
    bool msg_rsv1;
    int msg_opcode;
    z_stream *zin;          /* own inflater, only when the server keeps context */
};

static struct opts opt = {
    .host = "127.0.0.1", .channel = "bench", .inflight = 1000, .timeout = 10.0, .drain = 2.0,
    .reconnect_jitter = 0.1,
};
static struct stats st;
static struct ev_loop *loop;
static struct sockaddr_in server_addr, source_addr;
static char **tokens;
static size_t ntokens;
static struct conn *conns;          /* opt.conns subscribers, then the publisher */
static struct track *tracks;        /* --recover: one per subscriber */
static long in_flight;              /* subscribers between connect() and settling */
static bool ready_printed, finishing;
static double t_start, t_ready;
static ev_timer hold_timer, publish_timer, drain_timer;
static ev_signal sig_term, sig_int, sig_usr1;
static int64_t publish_t0_us;
static unsigned char rbuf[RBUF_SIZE];
static unsigned char zbuf[RBUF_SIZE];
static z_stream zshared;            /* for servers that compress without context takeover */
static uint64_t rng_state;
static char *pad_text; /* --pad: ,"p":"..." */

static void conn_close(struct conn *c);
static void conn_settle(struct conn *c);
static void pump(void);
static void maybe_ready(void);
static void finish(void);
static void conn_start(struct conn *c, const char *token, bool publisher);

/* ---- small helpers ------------------------------------------------------------------- */

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t
rng_next(void)
{
    /* xorshift64*: the handshake key only has to differ between connections. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void
count_in(struct reason *table, const char *name)
{
    for (int i = 0; i < REASONS_MAX; i++) {
        struct reason *r = &table[i];
        if (r->name[0] == '\0')
            snprintf(r->name, sizeof r->name, "%s", name);
        if (strcmp(r->name, name) == 0) {
            r->count++;
            return;
        }
    }
}

static void
count_reason(const char *name)
{
    count_in(st.reasons, name);
}

static void
hist_add(int64_t us)
{
    if (us < 1)
        us = 1;
    int i = (int)(log2((double)us) * HIST_SUB);
    st.hist[i < HIST_N ? i : HIST_N - 1]++;
    if (us > st.max_us)
        st.max_us = us;
}

/* The upper bound (ms) of the bucket holding the p-th percentile, or 0 with no data. */
static double
hist_percentile_ms(double p)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < HIST_N; i++)
        total += st.hist[i];
    if (total == 0)
        return 0.0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)total);
    for (int i = 0; i < HIST_N; i++) {
        seen += st.hist[i];
        if (seen >= rank && seen > 0) {
            double upper = exp2((i + 1) / (double)HIST_SUB) / 1000.0;
            double max = (double)st.max_us / 1000.0;
            return upper < max ? upper : max;
        }
    }
    return (double)st.max_us / 1000.0;
}

/* ---- output -------------------------------------------------------------------------- */

static void
print_ready(void)
{
    printf("{\"event\":\"ready\",\"opened\":%ld,\"failed\":%ld,\"subscribed\":%ld,"
           "\"deflated\":%ld,\"secs\":%.3f}\n",
           st.opened, st.failed, st.subscribed, st.deflated, t_ready - t_start);
    fflush(stdout);
}

static void
print_reasons(const char *key, const struct reason *table)
{
    printf("\"%s\":{", key);
    for (int i = 0; i < REASONS_MAX && table[i].name[0] != '\0'; i++)
        printf("%s\"%s\":%ld", i ? "," : "", table[i].name, table[i].count);
    printf("}");
}

static void
print_hist(void)
{
    printf("\"hist\":[");
    bool first = true;
    for (int i = 0; i < HIST_N; i++) {
        if (st.hist[i] == 0)
            continue;
        printf("%s[%d,%llu]", first ? "" : ",", i, (unsigned long long)st.hist[i]);
        first = false;
    }
    printf("]");
}

/* The recover object: every subscriber's offsets against the highest any received. */
static void
print_recover(void)
{
    long long top = 0, base_max = 0, lost = 0;
    long pending = 0, tracked = 0;
    int64_t first = 0, last = 0;
    for (long i = 0; i < opt.conns; i++)
        if (tracks[i].subscribed && tracks[i].max > top)
            top = tracks[i].max;
    for (long i = 0; i < opt.conns; i++) {
        struct track *t = &tracks[i];
        if (!t->subscribed)
            continue;
        tracked++;
        if (t->base > base_max)
            base_max = t->base;
        for (long long o = t->base + 1; o <= top; o++) {
            size_t k = (size_t)(o - t->base - 1);
            lost += k >= t->seen_cap || t->seen[k] == 0;
        }
        pending += t->recovering;
        if (t->done_us != 0) {
            if (first == 0 || t->done_us < first)
                first = t->done_us;
            if (t->done_us > last)
                last = t->done_us;
        }
    }
    printf(",\"recover\":{\"tracked\":%ld,\"top\":%lld,\"base_max\":%lld,\"drops\":%ld,"
           "\"attempts\":%ld,\"attempt_failures\":%ld,\"recovered\":%ld,"
           "\"not_recovered\":%ld,\"pending\":%ld,\"first_done_us\":%lld,"
           "\"last_done_us\":%lld,\"lost\":%lld,\"dups\":%ld,\"out_of_order\":%ld}",
           tracked, top, base_max, st.drops, st.attempts, st.attempt_failures, st.recovered,
           st.not_recovered, pending, (long long)first, (long long)last, lost, st.dups,
           st.out_of_order);
}

static void
print_figures(const char *event)
{
    long open_now = 0;
    for (long i = 0; i < opt.conns; i++)
        open_now += conns[i].state == CS_OPEN;
    printf("{\"event\":\"%s\",\"opened\":%ld,\"failed\":%ld,\"subscribed\":%ld,"
           "\"sub_errors\":%ld,\"sub_timeouts\":%ld,\"open\":%ld,\"closed\":%ld,"
           "\"deflated\":%ld,\"pings\":%ld,\"compressed\":%ld,",
           event, st.opened, st.failed, st.subscribed, st.sub_errors, st.sub_timeouts, open_now,
           st.closed, st.deflated, st.pings, st.compressed);
    printf("\"published\":%ld,\"publish_acked\":%ld,\"publish_errors\":%ld,"
           "\"publisher_failed\":%s,\"delivered\":%ld,",
           st.published, st.publish_acked, st.publish_errors,
           st.publisher_failed ? "true" : "false", st.delivered);
    /* Expected deliveries are known here only when this process has both sides. */
    if (opt.publish_rate > 0 && opt.conns > 0)
        printf("\"expected\":%ld,", st.published * st.subscribed);
    else
        printf("\"expected\":null,");
    printf("\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"ready_secs\":%.3f,",
           hist_percentile_ms(50), hist_percentile_ms(99), (double)st.max_us / 1000.0,
           ready_printed ? t_ready - t_start : -1.0);
    print_reasons("fail_reasons", st.reasons);
    printf(",");
    print_reasons("close_reasons", st.closes);
    printf(",");
    print_hist();
    if (tracks != NULL)
        print_recover();
    printf("}\n");
    fflush(stdout);
}

/* ---- writing ------------------------------------------------------------------------- */

static void
conn_want_write(struct conn *c, bool on)
{
    int events = EV_READ | (on ? EV_WRITE : 0);
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(loop, &c->io);
}

/* Send now what the socket takes and keep the rest for when it is writable again. */
static int
conn_send(struct conn *c, const void *data, size_t len)
{
    if (c->out_len == 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        }
        if (len == 0)
            return 0;
    }
    unsigned char *p = realloc(c->out, c->out_len + len);
    if (p == NULL)
        return -1;
    memcpy(p + c->out_len, data, len);
    c->out = p;
    c->out_len += len;
    conn_want_write(c, true);
    return 0;
}

static int
conn_flush(struct conn *c)
{
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (c->out_len == 0) {
        free(c->out);
        c->out = NULL;
        conn_want_write(c, false);
    }
    return 0;
}

/* A client frame: FIN, masked as RFC 6455 requires of clients, never compressed. */
static int
send_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
    unsigned char frame[14 + 1024];
    if (len > 1024)
        return -1;
    size_t h = 0;
    frame[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)len;
    }
    uint32_t mask = (uint32_t)rng_next();
    memcpy(frame + h, &mask, 4);
    const unsigned char *m = frame + h, *src = payload;
    h += 4;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = src[i] ^ m[i & 3];
    return conn_send(c, frame, h + len);
}

static int
send_text(struct conn *c, const char *text)
{
    return send_frame(c, 0x1, text, strlen(text));
}

/* ---- the handshake ------------------------------------------------------------------- */

static void
make_key(char out[25])
{
    unsigned char raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(raw + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)out, raw, 16);
}

static void
expected_accept(const char key[25], char out[29])
{
    char joined[24 + sizeof WS_GUID];
    unsigned char digest[SHA_DIGEST_LENGTH];
    snprintf(joined, sizeof joined, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)joined, strlen(joined), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

static int
send_request(struct conn *c)
{
    char req[1024];
    make_key(c->key);
    int n = snprintf(req, sizeof req,
                     "GET /ws?token=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n",
                     c->token, opt.host, opt.port, c->key,
                     /* what browsers offer */
                     opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                   "client_max_window_bits\r\n"
                                 : "");
    if (n < 0 || (size_t)n >= sizeof req)
        return -1;
    return conn_send(c, req, (size_t)n);
}

/* The value of a header in a response head (NUL-terminated), copied into out. */
static bool
header_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, name, nlen) != 0 || p[nlen] != ':')
            continue;
        const char *v = p + nlen + 1, *end = strstr(v, "\r\n");
        while (*v == ' ' || *v == '\t')
            v++;
        size_t len = end ? (size_t)(end - v) : strlen(v);
        if (len >= cap)
            len = cap - 1;
        memcpy(out, v, len);
        out[len] = '\0';
        return true;
    }
    return false;
}

/* Check a complete response head; 0 when the connection is open, else -1 with the
 * reason counted. */
static int
check_head(struct conn *c, char *head)
{
    int status = 0;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1 || status != 101) {
        char reason[32];
        snprintf(reason, sizeof reason, "http_%d", status);
        count_reason(reason);
        return -1;
    }
    char got[64], want[29];
    expected_accept(c->key, want);
    if (!header_value(head, "Sec-WebSocket-Accept", got, sizeof got) || strcmp(got, want)) {
        count_reason("bad_accept");
        return -1;
    }
    char ext[256];
    if (header_value(head, "Sec-WebSocket-Extensions", ext, sizeof ext) &&
        strstr(ext, "permessage-deflate") != NULL) {
        c->deflate = true;
        st.deflated += !c->publisher;
        c->inflate_keeps = strstr(ext, "server_no_context_takeover") == NULL;
    }
    return 0;
}

static void
on_open(struct conn *c)
{
    char sub[300];
    c->state = CS_OPEN;
    if (c->publisher) {
        st.publisher_open = true;
        ev_timer_stop(loop, &c->timer);
        return;
    }
    struct track *t = tracks != NULL ? &tracks[c - conns] : NULL;
    if (t != NULL && t->subscribed)
        snprintf(sub, sizeof sub,
                 "{\"op\":\"subscribe\",\"channel\":\"%s\",\"since\":{\"offset\":%lld,"
                 "\"epoch\":\"%s\"},\"id\":1}",
                 opt.channel, t->contig, t->epoch);
    else
        snprintf(sub, sizeof sub, "{\"op\":\"subscribe\",\"channel\":\"%s\",\"id\":1}",
                 opt.channel);
    if (t == NULL || !t->dropped)
        st.opened++;
    if (send_text(c, sub) < 0) {
        conn_close(c);
        return;
    }
    /* The handshake deadline becomes the deadline of the subscribe reply. */
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, opt.timeout, 0.0);
    ev_timer_start(loop, &c->timer);
}

/* ---- messages ------------------------------------------------------------------------ */

/* The string value of "key" in a JSON object text (the first such key: the servers put
 * "op" first, and the data published here has no key of that name). */
/* Where the value of "key" starts in a JSON object text, or NULL. */
static const char *
json_value(const char *s, size_t len, const char *key)
{
    char pat[40];
    int n = snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = memmem(s, len, pat, (size_t)n), *end = s + len;
    if (p == NULL)
        return NULL;
    p += n;
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    return p;
}

static bool
json_string(const char *s, size_t len, const char *key, char *out, size_t cap)
{
    const char *p = json_value(s, len, key), *end = s + len;
    if (p == NULL || p >= end || *p++ != '"')
        return false;
    size_t i = 0;
    while (p < end && *p != '"' && i + 1 < cap)
        out[i++] = *p++;
    out[i] = '\0';
    return true;
}

static bool
json_int(const char *s, size_t len, const char *key, long long *out)
{
    const char *p = json_value(s, len, key), *end = s + len;
    if (p == NULL)
        return false;
    bool negative = p < end && *p == '-';
    p += negative;
    if (p >= end || *p < '0' || *p > '9')
        return false;
    long long v = 0;
    while (p < end && *p >= '0' && *p <= '9' && v < LLONG_MAX / 10 - 10)
        v = v * 10 + (*p++ - '0');
    *out = negative ? -v : v;
    return true;
}

/* ---- recovery (--recover) ------------------------------------------------------------ */

static void
track_check_done(struct track *t)
{
    if (t->recovering && t->need >= 0 && t->contig >= t->need) {
        t->recovering = false;
        t->done_us = now_us();
    }
}

/* The ok of a subscribe: the first one sets the epoch and the base offset; one after a
 * reconnect says whether the messages missed will follow. */
static void
track_ok(struct conn *c, const char *s, size_t len)
{
    struct track *t = &tracks[c - conns];
    long long offset = 0;
    bool has_offset = json_int(s, len, "offset", &offset);
    if (!t->subscribed) {
        if (!has_offset || !json_string(s, len, "epoch", t->epoch, sizeof t->epoch))
            return;         /* no history on this channel: nothing to track */
        t->subscribed = true;
        t->base = t->contig = t->max = offset;
        return;
    }
    if (!t->recovering || t->need >= 0)
        return;
    const char *r = json_value(s, len, "recovered");
    if (r != NULL && *r == 't' && has_offset) {
        st.recovered++;
        t->need = offset;
        track_check_done(t);
    } else {
        st.not_recovered++;
        t->recovering = false;
    }
}

static int
track_message(struct conn *c, long long offset)
{
    struct track *t = &tracks[c - conns];
    if (!t->subscribed || offset <= t->base)
        return 0;
    size_t i = (size_t)(offset - t->base - 1);
    if (i >= t->seen_cap) {
        size_t cap = t->seen_cap ? t->seen_cap : 1024;
        while (cap <= i)
            cap *= 2;
        unsigned char *p = realloc(t->seen, cap);
        if (p == NULL)
            return -1;
        memset(p + t->seen_cap, 0, cap - t->seen_cap);
        t->seen = p;
        t->seen_cap = cap;
    }
    if (t->seen[i] > 0)
        st.dups++;
    else if (offset < t->max)
        st.out_of_order++;
    if (t->seen[i] < 255)
        t->seen[i]++;
    if (offset > t->max)
        t->max = offset;
    while (t->contig < t->max && t->seen[t->contig - t->base] > 0)
        t->contig++;
    track_check_done(t);
    return 0;
}

static void
on_reconnect(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *c = container_of(w, struct conn, timer);
    long i = c - conns;
    st.attempts++;
    conn_start(c, tokens[(size_t)i % ntokens], false);
}

/* After a subscriber's socket is gone: reconnect it, after a random delay. */
static void
track_closed(struct conn *c, bool was_open)
{
    struct track *t = &tracks[c - conns];
    if (finishing || !t->subscribed)
        return;
    if (was_open) {
        st.drops++;
        t->dropped = true;
        t->recovering = true;
        t->need = -1;
    } else {
        st.attempt_failures++;
    }
    double delay = opt.reconnect_jitter * (double)(rng_next() >> 11) / 9007199254740992.0;
    if (!was_open)
        delay += 0.1;
    ev_timer_init(&c->timer, on_reconnect, delay, 0.0);
    ev_timer_start(loop, &c->timer);
}

static void
on_reply(struct conn *c, bool ok)
{
    if (c->publisher) {
        if (ok)
            st.publish_acked++;
        else
            st.publish_errors++;
        return;
    }
    if (c->settled)
        return;
    if (tracks != NULL && tracks[c - conns].dropped)
        ;                   /* a reconnect: counted by the recover figures */
    else if (ok)
        st.subscribed++;
    else
        st.sub_errors++;
    conn_settle(c);
}

/* One text message; -1 ends the connection (out of memory). */
static int
on_text(struct conn *c, const char *s, size_t len, int64_t t_now)
{
    char op[16];
    if (!json_string(s, len, "op", op, sizeof op))
        return 0;
    if (strcmp(op, "message") == 0) {
        long long t, offset;
        st.delivered++;
        if (json_int(s, len, "t", &t))
            hist_add(t_now - t);
        if (tracks != NULL && !c->publisher && json_int(s, len, "offset", &offset))
            return track_message(c, offset);
    } else if (strcmp(op, "ok") == 0) {
        if (tracks != NULL && !c->publisher)
            track_ok(c, s, len);
        on_reply(c, true);
    } else if (strcmp(op, "error") == 0) {
        on_reply(c, false);
    }
    return 0;
}

/* Inflate one compressed message (RFC 7692 7.2.2: append 00 00 ff ff) into zbuf. */
static ssize_t
inflate_message(struct conn *c, const unsigned char *data, size_t len)
{
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
    z_stream *z = &zshared;
    if (c->inflate_keeps) {
        if (c->zin == NULL) {
            c->zin = calloc(1, sizeof *c->zin);
            if (c->zin == NULL || inflateInit2(c->zin, -15) != Z_OK)
                return -1;
        }
        z = c->zin;
    } else if (inflateReset(z) != Z_OK) {
        return -1;
    }
    z->next_out = zbuf;
    z->avail_out = sizeof zbuf;
    const unsigned char *parts[2] = {data, tail};
    size_t lens[2] = {len, sizeof tail};
    for (int i = 0; i < 2; i++) {
        z->next_in = (unsigned char *)parts[i];
        z->avail_in = (uInt)lens[i];
        int rc = inflate(z, Z_SYNC_FLUSH);
        if ((rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) || z->avail_in != 0)
            return -1;
    }
    return (ssize_t)(sizeof zbuf - z->avail_out);
}

static int
on_message(struct conn *c, int opcode, bool rsv1, const unsigned char *data, size_t len,
           int64_t t_now)
{
    if (rsv1) {
        if (!c->deflate)
            return -1;
        st.compressed++;
        ssize_t n = inflate_message(c, data, len);
        if (n < 0)
            return -1;
        data = zbuf;
        len = (size_t)n;
    }
    return opcode == 0x1 ? on_text(c, (const char *)data, len, t_now) : 0;
}

/* Gather the fragments of a message; 1 when it is whole in c->msg. */
static int
gather(struct conn *c, int opcode, bool fin, bool rsv1, const unsigned char *p, size_t len)
{
    if (opcode != 0x0) {
        if (c->msg_len != 0 || c->msg_opcode != 0)
            return -1;      /* a new message before the last one ended */
        c->msg_opcode = opcode;
        c->msg_rsv1 = rsv1;
    } else if (c->msg_opcode == 0) {
        return -1;          /* a continuation of nothing */
    }
    if (c->msg_len + len > RBUF_SIZE)
        return -1;
    unsigned char *m = realloc(c->msg, c->msg_len + len + 1);
    if (m == NULL)
        return -1;
    memcpy(m + c->msg_len, p, len);
    c->msg = m;
    c->msg_len += len;
    return fin ? 1 : 0;
}

static int
on_control(struct conn *c, int opcode, const unsigned char *p, size_t len)
{
    if (opcode == 0x9) {            /* ping: a pong with the same payload */
        st.pings++;
        return send_frame(c, 0xA, p, len);
    }
    if (opcode == 0x8) {            /* close: answer it, then the server ends TCP */
        char name[32];
        snprintf(name, sizeof name, "close_%d", len >= 2 ? p[0] << 8 | p[1] : 1005);
        count_in(st.closes, name);
        send_frame(c, 0x8, p, len < 2 ? len : 2);
        return -1;
    }
    return 0;                       /* pong: nothing to do */
}

/* One complete frame; -1 ends the connection. */
static int
on_frame(struct conn *c, const unsigned char *h, const unsigned char *p, size_t len,
         int64_t t_now)
{
    bool fin = h[0] & 0x80, rsv1 = h[0] & 0x40;
    int opcode = h[0] & 0x0F;
    if (opcode >= 0x8)
        return fin ? on_control(c, opcode, p, len) : -1;
    if (fin && opcode != 0x0)       /* the common case: a whole message in one frame */
        return on_message(c, opcode, rsv1, p, len, t_now);
    int whole = gather(c, opcode, fin, rsv1, p, len);
    if (whole <= 0)
        return whole;
    int rc = on_message(c, c->msg_opcode, c->msg_rsv1, c->msg, c->msg_len, t_now);
    free(c->msg);
    c->msg = NULL;
    c->msg_len = 0;
    c->msg_opcode = 0;
    return rc;
}

/* Parse the frames in buf; the number of bytes used (a partial frame stays), or -1. */
static ssize_t
parse_frames(struct conn *c, const unsigned char *buf, size_t len)
{
    size_t off = 0;
    int64_t t_now = now_us();       /* one clock reading for what one read() brought */
    while (len - off >= 2) {
        const unsigned char *h = buf + off;
        size_t need = 2, plen = h[1] & 0x7F;
        if (plen == 126)
            need = 4;
        else if (plen == 127)
            need = 10;
        if (h[1] & 0x80)
            need += 4;              /* servers must not mask; tolerate it anyway */
        if (len - off < need)
            break;
        if (plen == 126) {
            plen = (size_t)h[2] << 8 | h[3];
        } else if (plen == 127) {
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | h[i];
        }
        if (plen > RBUF_SIZE - 14)
            return -1;
        if (len - off < need + plen)
            break;
        unsigned char *p = (unsigned char *)buf + off + need;
        if (h[1] & 0x80)
            for (size_t i = 0; i < plen; i++)
                p[i] ^= h[need - 4 + (i & 3)];
        if (on_frame(c, h, p, plen, t_now) < 0)
            return -1;
        off += need + plen;
    }
    return (ssize_t)off;
}

/* ---- reading ------------------------------------------------------------------------- */

/* Keep the unparsed tail of rbuf with the connection, for the next read. */
static int
keep_rest(struct conn *c, const unsigned char *rest, size_t len)
{
    if (len == 0) {
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
        return 0;
    }
    unsigned char *p = malloc(len);
    if (p == NULL)
        return -1;
    memcpy(p, rest, len);
    free(c->in);
    c->in = p;
    c->in_len = len;
    return 0;
}

/* Handle what rbuf holds in the handshake state; bytes after the head are frames. */
static ssize_t
read_head(struct conn *c, size_t len)
{
    unsigned char *end = memmem(rbuf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len >= HEAD_MAX) {
            count_reason("head_too_big");
            return -1;
        }
        return 0;
    }
    size_t head_len = (size_t)(end - rbuf) + 4;
    char head[HEAD_MAX + 1];
    if (head_len > HEAD_MAX) {
        count_reason("head_too_big");
        return -1;
    }
    memcpy(head, rbuf, head_len);
    head[head_len] = '\0';
    if (check_head(c, head) < 0)
        return -1;
    on_open(c);
    if (c->state != CS_OPEN)
        return -1;
    ssize_t used = parse_frames(c, rbuf + head_len, len - head_len);
    return used < 0 ? -1 : (ssize_t)head_len + used;
}

static void
on_readable(struct conn *c)
{
    size_t have = c->in_len;
    if (have > 0)
        memcpy(rbuf, c->in, have);
    ssize_t n = recv(c->fd, rbuf + have, sizeof rbuf - have, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        const char *why = n == 0 ? "closed" : "reset";
        if (c->state == CS_HANDSHAKE)
            count_reason(n == 0 ? "closed_in_handshake" : "reset_in_handshake");
        else
            count_in(st.closes, why);
        conn_close(c);
        return;
    }
    size_t len = have + (size_t)n;
    ssize_t used = c->state == CS_HANDSHAKE ? read_head(c, len) : parse_frames(c, rbuf, len);
    if (used < 0 || keep_rest(c, rbuf + used, len - (size_t)used) < 0)
        conn_close(c);
}

/* ---- connection life ----------------------------------------------------------------- */

/* A subscriber is settled once it failed or its subscribe was answered; the next
 * connection may then start. */
static void
conn_settle(struct conn *c)
{
    if (c->publisher || c->settled)
        return;
    c->settled = true;
    in_flight--;
    ev_timer_stop(loop, &c->timer);
    pump();
    maybe_ready();
}

static void
conn_fail(struct conn *c, const char *reason)
{
    if (reason != NULL)
        count_reason(reason);
    conn_close(c);
}

/* The one way a connection ends: counts it, frees what it holds, settles it. */
static void
conn_close(struct conn *c)
{
    if (c->state == CS_CLOSED)
        return;
    bool was_open = c->state == CS_OPEN;
    bool again = tracks != NULL && !c->publisher && tracks[c - conns].dropped;
    if (was_open) {
        if (!c->publisher)
            st.closed++;
    } else if (c->publisher) {
        st.publisher_failed = true;
    } else if (!again) {
        st.failed++;
    }
    c->state = CS_CLOSED;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    free(c->msg);
    if (c->zin != NULL) {
        inflateEnd(c->zin);
        free(c->zin);
    }
    c->in = c->out = c->msg = NULL;
    c->zin = NULL;
    c->in_len = c->out_len = c->msg_len = 0;
    conn_settle(c);
    if (tracks != NULL && !c->publisher)
        track_closed(c, was_open);
}

static void
on_connected(struct conn *c)
{
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
        char reason[32];
        snprintf(reason, sizeof reason, "connect_%s", strerrorname_np(err ? err : errno));
        conn_fail(c, reason);
        return;
    }
    c->state = CS_HANDSHAKE;
    conn_want_write(c, false);
    if (send_request(c) < 0)
        conn_fail(c, "send_request");
}

static void
on_io(struct ev_loop *l, ev_io *w, int revents)
{
    (void)l;
    struct conn *c = container_of(w, struct conn, io);
    if (c->state == CS_CONNECTING) {
        on_connected(c);
        return;
    }
    if ((revents & EV_WRITE) && c->out_len > 0 && conn_flush(c) < 0) {
        conn_close(c);
        return;
    }
    if (revents & EV_READ)
        on_readable(c);
}

static void
on_timeout(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *c = container_of(w, struct conn, timer);
    if (c->state == CS_OPEN) {      /* open, but the subscribe was never answered */
        st.sub_timeouts++;
        conn_settle(c);
        return;
    }
    conn_fail(c, c->state == CS_CONNECTING ? "connect_timeout" : "handshake_timeout");
}

static int
open_socket(char *reason, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(reason, cap, "socket_%s", strerrorname_np(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.source != NULL) {
        /* The port is chosen at connect(), per destination, not reserved at bind(). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&source_addr, sizeof source_addr) < 0) {
            snprintf(reason, cap, "bind_%s", strerrorname_np(errno));
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0 &&
        errno != EINPROGRESS) {
        snprintf(reason, cap, "connect_%s", strerrorname_np(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void
conn_start(struct conn *c, const char *token, bool publisher)
{
    char reason[48];
    memset(c, 0, sizeof *c);
    c->token = token;
    c->publisher = publisher;
    c->state = CS_CONNECTING;
    ev_init(&c->io, on_io);
    ev_init(&c->timer, on_timeout);
    if (!publisher) {
        /* a reconnect takes no new place in the order of pump() */
        if (tracks == NULL || !tracks[c - conns].dropped)
            st.started++;
        in_flight++;
    }
    c->fd = open_socket(reason, sizeof reason);
    if (c->fd < 0) {
        conn_fail(c, reason);
        return;
    }
    ev_io_set(&c->io, c->fd, EV_WRITE);
    ev_io_start(loop, &c->io);
    ev_timer_set(&c->timer, opt.timeout, 0.0);
    ev_timer_start(loop, &c->timer);
}

/* Start connections while fewer than --inflight are between connect() and settling. */
static void
pump(void)
{
    static bool pumping;
    if (pumping)        /* a connection failing at once would recurse through settle */
        return;
    pumping = true;
    while (st.started < opt.conns && in_flight < opt.inflight && !finishing) {
        long i = st.started;
        conn_start(&conns[i], tokens[(size_t)i % ntokens], false);
    }
    pumping = false;
}

/* ---- publishing ---------------------------------------------------------------------- */

static void
publish_one(struct conn *c)
{
    char msg[1024];
    long n = st.published + 1;
    snprintf(msg, sizeof msg,
             "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":{\"t\":%lld,\"n\":%ld%s},"
             "\"id\":%ld}",
             opt.channel, (long long)now_us(), n, pad_text != NULL ? pad_text : "", n + 1);
    if (send_text(c, msg) < 0) {
        conn_close(c);
        return;
    }
    st.published = n;
}

static void
on_drained(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    finish();
}

/* Publish what is due by now on a fixed schedule from the first publish, so that a
 * late tick catches up instead of lowering the rate. */
static void
on_publish_tick(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *pub = &conns[opt.conns];
    long total = lround(opt.publish_rate * opt.publish_secs);
    double elapsed = (double)(now_us() - publish_t0_us) / 1e6;
    long due = (long)(elapsed * opt.publish_rate) + 1;
    while (st.published < due && st.published < total && pub->state == CS_OPEN)
        publish_one(pub);
    if (st.published >= total || pub->state != CS_OPEN) {
        ev_timer_stop(loop, w);
        ev_timer_init(&drain_timer, on_drained, opt.drain, 0.0);
        ev_timer_start(loop, &drain_timer);
    }
}

static void
start_publishing(void)
{
    struct conn *pub = &conns[opt.conns];
    if (pub->state != CS_OPEN) {
        st.publisher_failed = true;
        finish();
        return;
    }
    publish_t0_us = now_us();
    ev_timer_init(&publish_timer, on_publish_tick, 0.0, 1.0 / opt.publish_rate);
    ev_timer_start(loop, &publish_timer);
}

/* Wait for the publisher's handshake (it settles on its own timer) before publishing. */
static void
on_publisher_wait(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)revents;
    struct conn *pub = &conns[opt.conns];
    if (pub->state == CS_OPEN || pub->state == CS_CLOSED) {
        ev_timer_stop(loop, w);
        start_publishing();
    }
}

/* ---- the run ------------------------------------------------------------------------- */

static void
on_hold_end(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    finish();
}

static void
maybe_ready(void)
{
    static ev_timer wait_pub;
    if (ready_printed || st.started < opt.conns || in_flight > 0)
        return;
    ready_printed = true;
    t_ready = ev_time();
    print_ready();
    if (opt.publish_rate > 0) {
        conn_start(&conns[opt.conns], tokens[0], true);
        ev_timer_init(&wait_pub, on_publisher_wait, 0.0, 0.01);
        ev_timer_start(loop, &wait_pub);
    } else if (opt.hold > 0) {
        ev_timer_init(&hold_timer, on_hold_end, opt.hold, 0.0);
        ev_timer_start(loop, &hold_timer);
    }
}

static void
finish(void)
{
    if (finishing)
        return;
    finishing = true;
    print_figures("done");
    ev_break(loop, EVBREAK_ALL);
}

static void
on_signal(struct ev_loop *l, ev_signal *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    finish();
}

/* SIGUSR1: print the figures so far and start the deliveries and the histogram anew,
 * so that one set of subscribers can measure several publish rates in turn. */
static void
on_snapshot(struct ev_loop *l, ev_signal *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
    print_figures("snapshot");
    st.delivered = 0;
    st.compressed = 0;
    st.max_us = 0;
    memset(st.hist, 0, sizeof st.hist);
}

/* ---- setup --------------------------------------------------------------------------- */

static int
load_tokens(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "wsload: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (ntokens == cap) {
            cap = cap ? cap * 2 : 256;
            char **t = realloc(tokens, cap * sizeof *t);
            if (t == NULL)
                break;
            tokens = t;
        }
        tokens[ntokens] = strdup(line);
        if (tokens[ntokens] == NULL)
            break;
        ntokens++;
    }
    fclose(f);
    if (ntokens == 0) {
        fprintf(stderr, "wsload: %s: no token\n", path);
        return -1;
    }
    return 0;
}

/* Raise the soft limit on descriptors to the hard one, and check that N fit. */
static int
fd_limit_check(long needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)needed > rl.rlim_cur) {
        fprintf(stderr, "wsload: %ld connections need %ld descriptors, the limit is %llu: "
                "split them over several processes\n", opt.conns, needed,
                (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: wsload --port P --tokens FILE [--host ADDR] [--source ADDR] [--conns N]\n"
            "              [--channel C] [--deflate] [--inflight K] [--timeout SECS]\n"
            "              [--hold SECS] [--publish-rate R --publish-secs S] [--drain SECS]\n"
            "              [--recover [--reconnect-jitter SECS]] [--pad BYTES]\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"tokens", required_argument, NULL, 't'},
        {"source", required_argument, NULL, 's'},
        {"conns", required_argument, NULL, 'n'},
        {"channel", required_argument, NULL, 'c'},
        {"deflate", no_argument, NULL, 'z'},
        {"inflight", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 'T'},
        {"hold", required_argument, NULL, 'H'},
        {"publish-rate", required_argument, NULL, 'r'},
        {"publish-secs", required_argument, NULL, 'S'},
        {"drain", required_argument, NULL, 'd'},
        {"recover", no_argument, NULL, 'R'},
        {"reconnect-jitter", required_argument, NULL, 'j'},
        {"pad", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 't': opt.tokens_path = optarg; break;
        case 's': opt.source = optarg; break;
        case 'n': opt.conns = atol(optarg); break;
        case 'c': opt.channel = optarg; break;
        case 'z': opt.deflate = true; break;
        case 'i': opt.inflight = atol(optarg); break;
        case 'T': opt.timeout = atof(optarg); break;
        case 'H': opt.hold = atof(optarg); break;
        case 'r': opt.publish_rate = atof(optarg); break;
        case 'S': opt.publish_secs = atof(optarg); break;
        case 'd': opt.drain = atof(optarg); break;
        case 'R': opt.recover = true; break;
        case 'j': opt.reconnect_jitter = atof(optarg); break;
        case 'P':
            opt.pad = atol(optarg);
            break;
        default: usage();
        }
    }
    bool publishing = opt.publish_rate > 0;
    if (optind != argc || opt.port <= 0 || opt.port > 65535 || opt.tokens_path == NULL ||
        opt.conns < 0 || opt.inflight < 1 || opt.timeout <= 0 || opt.hold < 0 || opt.drain < 0 ||
        opt.reconnect_jitter < 0 || opt.pad < 0 || opt.pad > 800 ||
        (publishing && opt.publish_secs <= 0) || strlen(opt.channel) > 200 ||
        strpbrk(opt.channel, "\"\\") != NULL)
        usage();
}

/* --pad's string: letters from a fixed seed, compressible as text is, about 3:4. */
static int
make_pad(void)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    if (opt.pad == 0) return 0;
    pad_text = malloc((size_t)opt.pad + 8);
    if (pad_text == NULL) return -1;
    uint64_t saved = rng_state;
    rng_state = 0x9E3779B97F4A7C15ULL;
    size_t n = (size_t)snprintf(pad_text, 8, ",\"p\":\"");
    for (long i = 0; i < opt.pad; i++)
        pad_text[n++] = letters[rng_next() % (sizeof letters - 1)];
    pad_text[n++] = '"';
    pad_text[n] = '\0';
    rng_state = saved;
    return 0;
}

static int
resolve(const char *text, int port, struct sockaddr_in *out)
{
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, text, &out->sin_addr) != 1) {
        fprintf(stderr, "wsload: %s: not an IPv4 address\n", text);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    parse_args(argc, argv);
    if (load_tokens(opt.tokens_path) < 0 || resolve(opt.host, opt.port, &server_addr) < 0 ||
        (opt.source != NULL && resolve(opt.source, 0, &source_addr) < 0) ||
        fd_limit_check(opt.conns + 32) < 0)
        return 1;
    conns = calloc((size_t)opt.conns + 1, sizeof *conns);   /* +1: the publisher */
    if (opt.recover)
        tracks = calloc((size_t)opt.conns + 1, sizeof *tracks);
    if (conns == NULL || (opt.recover && tracks == NULL) || inflateInit2(&zshared, -15) != Z_OK) {
        fprintf(stderr, "wsload: out of memory\n");
        return 1;
    }
    rng_state = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (make_pad() < 0) {
        fprintf(stderr, "wsload: out of memory\n");
        return 1;
    }
    loop = EV_DEFAULT;
    ev_signal_init(&sig_term, on_signal, SIGTERM);
    ev_signal_init(&sig_int, on_signal, SIGINT);
    ev_signal_start(loop, &sig_term);
    ev_signal_init(&sig_usr1, on_snapshot, SIGUSR1);
    ev_signal_start(loop, &sig_int);
    ev_signal_start(loop, &sig_usr1);
    t_start = ev_time();
    pump();
    maybe_ready();
    if (!finishing)
        ev_run(loop, 0);
    return 0;
}
