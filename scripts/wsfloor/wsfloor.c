/* wsfloor: the floor of a WebSocket fan-out, for scripts/bench ws.
 *
 *   wsfloor PORT [PROCS]
 *
 * A server that does only what a fan-out cannot avoid, so that the bench can say how far
 * above it sessiond's CPU per delivery is: one process, one epoll loop, and for each
 * publish one frame built once (compressed once, for the connections that negotiated
 * permessage-deflate) and one write() of it per subscriber. It speaks just enough of
 * sessiond's GET /ws protocol for scripts/wsload:
 *
 *   the HTTP upgrade (Sec-WebSocket-Accept; permessage-deflate answered as sessiond
 *   answers it: no context takeover either way), any token taken without a lookup;
 *   {"op":"subscribe",...,"id":N} and {"op":"ping",...} -> {"op":"ok"|"pong","id":N};
 *   {"op":"publish","channel":C,"data":D,"id":N} -> {"op":"ok","id":N} to the publisher,
 *   then {"op":"message","channel":C,"data":D,"from":"floor"} to every subscriber;
 *   pings answered with pongs, a close with a close.
 *
 * There is one channel: every subscribe, whatever its name, joins the one list that every
 * publish goes to. Messages of 128 bytes or more go compressed to the connections that
 * negotiated compression, as sessiond's do (its CHAN_DEFLATE_MIN). GET /api/health
 * answers 200 for the bench's readiness check. A write the socket does not take whole is
 * kept and finished on EPOLLOUT, so that every message is delivered even to a slow reader.
 *
 * One process by default, the floor the bench measures sessiond against: one loop is the
 * least a fan-out can do, and the CPU a delivery takes should not depend on how the
 * deliveries are split over cores. PROCS 2 is a second process on its own SO_REUSEPORT
 * listener, as sessiond has two workers, each publish handed to the other over a datagram
 * socket: to see what two processes sharing the cores with the readers cost by
 * themselves.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define IN_MAX 8192     /* a connection's unparsed input: a request head or frames */
#define MSG_MAX 65536   /* the largest message we push */
#define DEFLATE_MIN 128 /* sessiond's CHAN_DEFLATE_MIN */
#define EVENTS 256
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define DEFLATE_ANSWER                                                                             \
    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "                   \
    "client_no_context_takeover\r\n"

struct conn {
    int fd;
    bool open;    /* upgraded; else still in its HTTP head */
    bool deflate; /* permessage-deflate negotiated */
    bool subscribed;
    bool closing; /* close once what is queued is out */
    bool dead;    /* to be freed once the events at hand are handled */
    struct conn *next_dead;
    size_t sub_idx;     /* its place in subs[] while subscribed */
    unsigned char *out; /* what the socket did not take yet */
    size_t out_len;
    size_t in_len;
    unsigned char in[IN_MAX];
};

static int ep;
static struct conn **subs;
static size_t nsubs, subs_cap;
static z_stream zdef;
static unsigned char plain[MSG_MAX + 10], packed[MSG_MAX + 16];
static struct conn *dead; /* freed after each epoll_wait's events */
static int peer = -1;     /* PROCS 2: the datagram socket to the other process */
static struct conn peer_mark; /* the epoll tag of peer */
static bool second_proc;      /* PROCS 2: this is the forked one */

/* ---- output ---- */

/* Connections end here, and are freed only once every event of the batch is handled:
 * a fan-out may break a reader whose event comes later in the batch. */
static void
conn_kill(struct conn *c)
{
    if (c->dead) return;
    c->dead = true;
    c->next_dead = dead;
    dead = c;
}

static void
conn_free(struct conn *c)
{
    if (c->subscribed) { /* the last subscriber takes its place */
        subs[c->sub_idx] = subs[--nsubs];
        subs[c->sub_idx]->sub_idx = c->sub_idx;
    }
    close(c->fd);
    free(c->out);
    free(c);
}

static void
want_write(struct conn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* One write() of the bytes; what the socket does not take is kept for EPOLLOUT, behind
 * anything kept already. -1 when the connection is broken. */
static int
conn_write(struct conn *c, const void *p, size_t len)
{
    if (c->out_len == 0) {
        ssize_t n = write(c->fd, p, len);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        if (n == (ssize_t)len) return 0;
        if (n > 0) {
            p = (const unsigned char *)p + n;
            len -= (size_t)n;
        }
        want_write(c, true);
    }
    unsigned char *q = realloc(c->out, c->out_len + len);
    if (q == NULL) return -1;
    memcpy(q + c->out_len, p, len);
    c->out = q;
    c->out_len += len;
    return 0;
}

static int
conn_flush(struct conn *c)
{
    ssize_t n = write(c->fd, c->out, c->out_len);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (c->out_len == 0) {
        free(c->out);
        c->out = NULL;
        want_write(c, false);
        if (c->closing) return -1;
    }
    return 0;
}

/* A server frame (FIN, unmasked, RSV1 when compressed) of p into f; its length. */
static size_t
frame(unsigned char *f, int opcode, bool rsv1, const void *p, size_t len)
{
    size_t h = 2;
    f[0] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        f[1] = (unsigned char)len;
    } else {
        f[1] = 126;
        f[2] = (unsigned char)(len >> 8);
        f[3] = (unsigned char)len;
        h = 4;
    }
    memcpy(f + h, p, len);
    return h + len;
}

static int
send_frame(struct conn *c, int opcode, const void *p, size_t len)
{
    unsigned char f[MSG_MAX + 10];
    if (len > MSG_MAX) return -1;
    return conn_write(c, f, frame(f, opcode, false, p, len));
}

/* ---- the fan-out ---- */

/* Compress a message once (RFC 7692 7.2.1: raw deflate, sync flush, the trailing
 * 00 00 ff ff taken off) and frame it with RSV1 into packed; its length, or 0. */
static size_t
compress_once(const char *msg, size_t len)
{
    unsigned char z[MSG_MAX + 16];
    if (deflateReset(&zdef) != Z_OK) return 0;
    zdef.next_in = (unsigned char *)msg;
    zdef.avail_in = (uInt)len;
    zdef.next_out = z;
    zdef.avail_out = sizeof z;
    if (deflate(&zdef, Z_SYNC_FLUSH) != Z_OK || zdef.avail_in != 0 || zdef.avail_out == 0) return 0;
    size_t n = sizeof z - zdef.avail_out;
    if (n < 4 || n - 4 > MSG_MAX) return 0;
    return frame(packed, 0x1, true, z, n - 4);
}

/* The one write() per subscriber of one prebuilt frame. */
static void
fan_out(const char *msg, size_t len)
{
    size_t plain_len = frame(plain, 0x1, false, msg, len);
    size_t packed_len = len >= DEFLATE_MIN ? compress_once(msg, len) : 0;
    for (size_t i = 0; i < nsubs; i++) {
        struct conn *c = subs[i];
        int rc = c->deflate && packed_len > 0 ? conn_write(c, packed, packed_len)
                                              : conn_write(c, plain, plain_len);
        if (rc < 0) conn_kill(c);
    }
}

/* ---- the protocol ---- */

/* Where the value of "key" starts in a JSON text, or NULL (the first such key: wsload
 * puts op, channel and id at the top level, and no such key in its data). */
static const char *
json_value(const char *s, size_t len, const char *key)
{
    char pat[32];
    int n = snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = memmem(s, len, pat, (size_t)n), *end = s + len;
    if (p == NULL) return NULL;
    for (p += n; p < end && (*p == ' ' || *p == ':');)
        p++;
    return p < end ? p : NULL;
}

/* The length of the JSON value at p: a string, an object or array (strings inside may
 * hold anything but an escaped quote, as wsload's do), or a bare number or word. */
static size_t
json_span(const char *p, const char *end)
{
    const char *q = p;
    int depth = 0;
    bool in_string = false;
    for (; q < end; q++) {
        if (in_string) {
            in_string = *q != '"';
            if (!in_string && depth == 0) return (size_t)(q + 1 - p);
        } else if (*q == '"') {
            in_string = true;
        } else if (*q == '{' || *q == '[') {
            depth++;
        } else if (*q == '}' || *q == ']') {
            if (depth-- == 0) break;
            if (depth == 0) return (size_t)(q + 1 - p);
        } else if (depth == 0 && (*q == ',' || *q == ' ')) {
            break;
        }
    }
    return in_string || depth > 0 ? 0 : (size_t)(q - p);
}

static int
reply(struct conn *c, const char *op, const char *text, size_t len)
{
    char r[128];
    const char *id = json_value(text, len, "id");
    size_t idlen = id != NULL ? json_span(id, text + len) : 0;
    int n = idlen > 0 && idlen < 64
                ? snprintf(r, sizeof r, "{\"op\":\"%s\",\"id\":%.*s}", op, (int)idlen, id)
                : snprintf(r, sizeof r, "{\"op\":\"%s\"}", op);
    return send_frame(c, 0x1, r, (size_t)n);
}

static int
on_publish(struct conn *c, const char *text, size_t len)
{
    char msg[MSG_MAX];
    const char *end = text + len, *ch = json_value(text, len, "channel");
    const char *data = json_value(text, len, "data");
    size_t chlen = ch != NULL ? json_span(ch, end) : 0, dlen = data ? json_span(data, end) : 0;
    if (chlen < 2 || dlen == 0) return reply(c, "error", text, len);
    int n = snprintf(msg, sizeof msg,
                     "{\"op\":\"message\",\"channel\":%.*s,\"data\":%.*s,"
                     "\"from\":\"floor\"}",
                     (int)chlen, ch, (int)dlen, data);
    if (n < 0 || (size_t)n >= sizeof msg) return reply(c, "error", text, len);
    if (reply(c, "ok", text, len) < 0) /* the publisher's ok goes first, as sessiond's */
        return -1;
    if (peer >= 0) (void)send(peer, msg, (size_t)n, 0);
    fan_out(msg, (size_t)n);
    return 0;
}

static int
on_text(struct conn *c, const char *text, size_t len)
{
    const char *op = json_value(text, len, "op");
    size_t n = op != NULL ? json_span(op, text + len) : 0;
    if (n == 11 && memcmp(op, "\"subscribe\"", n) == 0) {
        if (!c->subscribed) {
            if (nsubs == subs_cap) {
                size_t cap = subs_cap ? subs_cap * 2 : 1024;
                struct conn **s = realloc(subs, cap * sizeof *s);
                if (s == NULL) return -1;
                subs = s;
                subs_cap = cap;
            }
            c->subscribed = true;
            c->sub_idx = nsubs;
            subs[nsubs++] = c;
        }
        return reply(c, "ok", text, len);
    }
    if (n == 9 && memcmp(op, "\"publish\"", n) == 0) return on_publish(c, text, len);
    if (n == 6 && memcmp(op, "\"ping\"", n) == 0) return reply(c, "pong", text, len);
    return reply(c, "ok", text, len);
}

/* One client frame (masked, never fragmented or compressed by wsload); -1 ends it. */
static int
on_frame(struct conn *c, int opcode, unsigned char *p, size_t len)
{
    if (opcode == 0x1) return on_text(c, (const char *)p, len);
    if (opcode == 0x9) return send_frame(c, 0xA, p, len);
    if (opcode == 0x8) {
        c->closing = true;
        if (send_frame(c, 0x8, p, len < 2 ? len : 2) < 0 || c->out_len == 0) return -1;
        return 0;
    }
    return opcode == 0xA ? 0 : -1;
}

/* Parse the frames in c->in; keeps a partial one. -1 ends the connection. */
static int
parse_frames(struct conn *c)
{
    size_t off = 0;
    while (c->in_len - off >= 6) {
        unsigned char *h = c->in + off;
        size_t need = 6, len = h[1] & 0x7F;
        if ((h[0] & 0x70) != 0 || (h[0] & 0x80) == 0 || (h[1] & 0x80) == 0 || len == 127)
            return -1; /* RSV bits, fragments, unmasked or huge frames: not wsload's */
        if (len == 126) {
            need = 8;
            if (c->in_len - off < need) break;
            len = (size_t)h[2] << 8 | h[3];
        }
        if (c->in_len - off < need + len) break;
        unsigned char *mask = h + need - 4, *p = h + need;
        for (size_t i = 0; i < len; i++)
            p[i] ^= mask[i & 3];
        if (on_frame(c, h[0] & 0x0F, p, len) < 0) return -1;
        off += need + len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return c->in_len == IN_MAX ? -1 : 0;
}

/* The value of a request header (the head NUL-terminated), or NULL. */
static const char *
header(const char *head, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
        p += 2;
        if (strncasecmp(p, name, nlen) != 0 || p[nlen] != ':') continue;
        const char *v = p + nlen + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        const char *end = strstr(v, "\r\n");
        *len = end != NULL ? (size_t)(end - v) : strlen(v);
        return v;
    }
    return NULL;
}

static int
upgrade(struct conn *c, const char *head)
{
    size_t klen = 0, elen = 0;
    const char *key = header(head, "Sec-WebSocket-Key", &klen);
    const char *ext = header(head, "Sec-WebSocket-Extensions", &elen);
    if (key == NULL || klen > 64) return -1;
    char joined[64 + sizeof WS_GUID], accept[32], resp[512];
    unsigned char digest[SHA_DIGEST_LENGTH];
    int jn = snprintf(joined, sizeof joined, "%.*s%s", (int)klen, key, WS_GUID);
    SHA1((const unsigned char *)joined, (size_t)jn, digest);
    EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);
    c->deflate = ext != NULL && memmem(ext, elen, "permessage-deflate", 18) != NULL;
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                     accept, c->deflate ? DEFLATE_ANSWER : "");
    c->open = true;
    return conn_write(c, resp, (size_t)n);
}

/* The HTTP head: an upgrade on /ws, or 200 for the health check (then closed). */
static int
on_head(struct conn *c)
{
    unsigned char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL) return c->in_len == IN_MAX ? -1 : 0;
    size_t head_len = (size_t)(end - c->in) + 4;
    char head[IN_MAX + 1];
    memcpy(head, c->in, head_len);
    head[head_len] = '\0';
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
    if (strncmp(head, "GET /ws", 7) == 0) return upgrade(c, head) < 0 ? -1 : parse_frames(c);
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}";
    c->closing = true;
    if (conn_write(c, ok, sizeof ok - 1) < 0 || c->out_len == 0) return -1;
    return 0;
}

/* ---- the loop ---- */

static int
on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->in + c->in_len, IN_MAX - c->in_len);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        c->in_len += (size_t)n;
        if ((c->open ? parse_frames(c) : on_head(c)) < 0) return -1;
        if (c->closing) return 0;
    }
}

static void
on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct conn, in));
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

/* A publish the other process received: fanned out to this one's subscribers. */
static void
on_peer(void)
{
    char msg[MSG_MAX];
    ssize_t n;
    while ((n = recv(peer, msg, sizeof msg, MSG_DONTWAIT)) > 0)
        fan_out(msg, (size_t)n);
}

static int
listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
        perror("wsfloor: listen");
        exit(1);
    }
    return fd;
}

/* PROCS 2: both listeners bound before the fork (so that "ready" means both listen), a
 * datagram pair between the processes; the second dies with the first. */
static int
start_second(int port, int *lfd)
{
    int second = listen_on(port), pair[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0) {
        perror("wsfloor: socketpair");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("wsfloor: fork");
        return -1;
    }
    bool child = pid == 0;
    second_proc = child;
    if (child) prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(child ? *lfd : second);
    close(pair[child ? 0 : 1]);
    *lfd = child ? second : *lfd;
    peer = pair[child ? 1 : 0];
    return 0;
}

int
main(int argc, char **argv)
{
    int port = argc >= 2 ? atoi(argv[1]) : 0, procs = argc == 3 ? atoi(argv[2]) : 1;
    if (argc > 3 || port <= 0 || port > 65535 || procs < 1 || procs > 2) {
        fprintf(stderr, "usage: wsfloor PORT [1|2]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (deflateInit2(&zdef, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 1;
    int lfd = listen_on(port);
    if (procs == 2 && start_second(port, &lfd) < 0) return 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event pev = {.events = EPOLLIN, .data.ptr = &peer_mark};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0 ||
        (peer >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, peer, &pev) < 0)) {
        perror("wsfloor: epoll");
        return 1;
    }
    if (!second_proc) { /* once */
        printf("ready\n");
        fflush(stdout);
    }
    struct epoll_event evs[EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept(lfd);
                continue;
            }
            if (c == &peer_mark) {
                on_peer();
                continue;
            }
            if (c->dead) continue;
            bool bad = (evs[i].events & EPOLLOUT) && c->out_len > 0 && conn_flush(c) < 0;
            if (!bad && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !c->closing)
                bad = on_readable(c) < 0;
            if (bad) conn_kill(c);
        }
        while (dead != NULL) {
            struct conn *c = dead;
            dead = c->next_dead;
            conn_free(c);
        }
    }
}
