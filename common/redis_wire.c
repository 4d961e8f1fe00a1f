#include "redis_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

#define WIRE_READ_CHUNK 16384

enum wire_state { W_CONNECTING, W_HANDSHAKE, W_OPEN, W_LOST };

struct redis_wire {
    struct ev_loop *loop;
    const struct redis_wire_ops *ops;
    void *arg;
    int fd;
    SSL *ssl; /* NULL in clear */
    enum wire_state state;
    ev_io io;
    struct buf out;
    redisReader *reader;
    int busy;      /* callbacks running: a free inside one is done when they return */
    bool free_me;
    char where[REDIS_URL_HOST_MAX + 16];
};

/* ---- TLS context ---- */

/* OpenSSL's newest error for a message, or what fallback says. */
static const char *
tls_error(char *buf, size_t len, const char *fallback)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        return fallback;
    ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* A file named by a directive (none is fine), for a message clearer than OpenSSL's. */
static int
file_readable(const char *directive, const char *path, char *err, size_t errlen)
{
    if (path == NULL || path[0] == '\0' || access(path, R_OK) == 0)
        return 0;
    errf(err, errlen, "%s %s: %s", directive, path, strerror(errno));
    return -1;
}

SSL_CTX *
redis_tls_context(const char *ca, const char *cert, const char *key, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        errf(err, errlen, "redis TLS: %s", tls_error(why, sizeof why, "out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    bool own_ca = ca != NULL && ca[0] != '\0';
    if (file_readable("redis_tls_ca", ca, err, errlen) < 0 ||
        file_readable("redis_tls_cert", cert, err, errlen) < 0 ||
        file_readable("redis_tls_key", key, err, errlen) < 0)
        goto fail;
    int ok = own_ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        errf(err, errlen, "redis_tls_ca %s: %s", own_ca ? ca : "(the system's)",
             tls_error(why, sizeof why, "cannot load"));
        goto fail;
    }
    bool have_cert = cert != NULL && cert[0] != '\0', have_key = key != NULL && key[0] != '\0';
    if (have_cert != have_key) {
        errf(err, errlen, "redis_tls_cert and redis_tls_key go together: set both or neither");
        goto fail;
    }
    if (have_cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        errf(err, errlen, "redis_tls_cert %s: %s", cert, tls_error(why, sizeof why, "bad"));
        goto fail;
    }
    if (have_key && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                     SSL_CTX_check_private_key(ctx) != 1)) {
        errf(err, errlen, "redis_tls_key %s: %s", key,
             tls_error(why, sizeof why, "does not match redis_tls_cert"));
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- lifetime ---- */

static void
wire_close_fd(struct redis_wire *w)
{
    if (w->fd < 0)
        return;
    ev_io_stop(w->loop, &w->io);
    close(w->fd);
    w->fd = -1;
}

static void
wire_release(struct redis_wire *w)
{
    wire_close_fd(w);
    SSL_free(w->ssl);
    w->ssl = NULL;
    if (w->reader != NULL)
        redisReaderFree(w->reader);
    w->reader = NULL;
    buf_free(&w->out);
}

void
redis_wire_free(struct redis_wire *w)
{
    if (w == NULL)
        return;
    if (w->busy > 0) {
        w->free_me = true; /* the callback's caller frees it on the way out */
        return;
    }
    wire_release(w);
    free(w);
}

/* Around every callback: true if the wire is still there afterwards. */
static void
wire_enter(struct redis_wire *w)
{
    w->busy++;
}

static bool
wire_leave(struct redis_wire *w)
{
    if (--w->busy > 0 || !w->free_me)
        return !w->free_me;
    wire_release(w);
    free(w);
    return false;
}

/* Lost: the socket goes now, the owner hears why once. False: w is gone or dead. */
static bool
wire_lost(struct redis_wire *w, const char *why)
{
    if (w->state == W_LOST)
        return false;
    w->state = W_LOST;
    wire_close_fd(w);
    wire_enter(w);
    w->ops->on_lost(w->arg, why);
    wire_leave(w);
    return false;
}

__attribute__((format(printf, 2, 3))) static bool
wire_lostf(struct redis_wire *w, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return wire_lost(w, why);
}

/* Watch for what the socket waits on next. */
static void
wire_watch(struct redis_wire *w, int events)
{
    if (w->fd < 0 || (ev_is_active(&w->io) && (w->io.events & (EV_READ | EV_WRITE)) == events))
        return;
    ev_io_stop(w->loop, &w->io);
    ev_io_set(&w->io, w->fd, events);
    ev_io_start(w->loop, &w->io);
}

static int
wire_want(const struct redis_wire *w)
{
    return EV_READ | (w->state == W_OPEN && buf_used(&w->out) > 0 ? EV_WRITE : 0);
}

/* ---- TLS errors ---- */

/* Why a TLS call failed, as one line: a failed verification says what failed. */
static void
wire_tls_why(struct redis_wire *w, int rc, char *why, size_t len)
{
    long v = SSL_get_verify_result(w->ssl);
    int e = SSL_get_error(w->ssl, rc);
    char ossl[256];
    if (w->state == W_HANDSHAKE && v != X509_V_OK)
        snprintf(why, len, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(why, len, "TLS: closed by the server");
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        snprintf(why, len, "TLS: %s", errno != 0 ? strerror(errno) : "connection closed");
    else
        snprintf(why, len, "TLS: %s", tls_error(ossl, sizeof ossl, "handshake failed"));
}

/* ---- reading and writing ---- */

/* Hand every complete reply to the owner. False if the wire went away or died. */
static bool
wire_dispatch(struct redis_wire *w)
{
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(w->reader, &reply) != REDIS_OK)
            return wire_lostf(w, "%s: protocol error: %s", w->where, w->reader->errstr);
        if (reply == NULL)
            return true;
        wire_enter(w);
        w->ops->on_reply(w->arg, reply);
        if (!wire_leave(w) || w->state == W_LOST)
            return false;
    }
}

/* One read; >0 bytes, 0 nothing now, -1 lost (already reported). */
static ssize_t
wire_read_once(struct redis_wire *w, char *chunk, size_t len)
{
    if (w->ssl == NULL) {
        ssize_t n = read(w->fd, chunk, len);
        if (n > 0)
            return n;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        wire_lostf(w, "%s: %s", w->where, n == 0 ? "connection closed" : strerror(errno));
        return -1;
    }
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(w->ssl, chunk, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(w->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    char why[384];
    wire_tls_why(w, n, why, sizeof why);
    wire_lostf(w, "%s: %s", w->where, why);
    return -1;
}

static void
wire_read(struct redis_wire *w)
{
    char chunk[WIRE_READ_CHUNK];
    for (;;) {
        ssize_t n = wire_read_once(w, chunk, sizeof chunk);
        if (n <= 0)
            return;
        if (redisReaderFeed(w->reader, chunk, (size_t)n) != REDIS_OK) {
            wire_lostf(w, "%s: out of memory", w->where);
            return;
        }
        if (!wire_dispatch(w))
            return;
        /* A short read emptied the socket; TLS may hold a decrypted record still. */
        if ((size_t)n < sizeof chunk && (w->ssl == NULL || SSL_pending(w->ssl) == 0))
            return;
    }
}

static bool
wire_flush(struct redis_wire *w)
{
    while (buf_used(&w->out) > 0) {
        size_t len = buf_used(&w->out);
        ssize_t n;
        if (w->ssl == NULL) {
            n = write(w->fd, buf_data(&w->out), len);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n < 0)
                return wire_lostf(w, "%s: %s", w->where, strerror(errno));
        } else {
            ERR_clear_error();
            errno = 0;
            int m = SSL_write(w->ssl, buf_data(&w->out), (int)(len > INT32_MAX ? INT32_MAX : len));
            if (m <= 0) {
                int e = SSL_get_error(w->ssl, m);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    break;
                char why[384];
                wire_tls_why(w, m, why, sizeof why);
                return wire_lostf(w, "%s: %s", w->where, why);
            }
            n = m;
        }
        buf_consume(&w->out, (size_t)n);
    }
    buf_shrink(&w->out, WIRE_READ_CHUNK);
    return true;
}

/* ---- connecting ---- */

static bool
wire_opened(struct redis_wire *w)
{
    w->state = W_OPEN;
    if (w->ops->on_open != NULL) {
        wire_enter(w);
        w->ops->on_open(w->arg);
        if (!wire_leave(w) || w->state == W_LOST)
            return false;
    }
    if (!wire_flush(w))
        return false;
    wire_watch(w, wire_want(w));
    return true;
}

static void
wire_handshake(struct redis_wire *w)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(w->ssl);
    if (rc == 1) {
        wire_opened(w);
        return;
    }
    int e = SSL_get_error(w->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        wire_watch(w, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    char why[384];
    wire_tls_why(w, rc, why, sizeof why);
    wire_lostf(w, "%s: %s", w->where, why);
}

/* The TCP (or Unix) connect finished: see how, then start TLS or go. */
static void
wire_connected(struct redis_wire *w)
{
    int so = 0;
    socklen_t len = sizeof so;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &so, &len) < 0)
        so = errno;
    if (so != 0) {
        wire_lostf(w, "%s: %s", w->where, strerror(so));
        return;
    }
    if (w->ssl == NULL) {
        wire_opened(w);
        return;
    }
    w->state = W_HANDSHAKE;
    wire_handshake(w);
}

static void
wire_on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct redis_wire *w = container_of(io, struct redis_wire, io);
    switch (w->state) {
    case W_CONNECTING:
        wire_connected(w);
        return;
    case W_HANDSHAKE:
        wire_handshake(w);
        return;
    case W_LOST:
        return;
    case W_OPEN:
        break;
    }
    wire_enter(w);
    if (revents & EV_READ)
        wire_read(w);
    if (w->state == W_OPEN && !w->free_me && (revents & EV_WRITE))
        wire_flush(w);
    if (w->state == W_OPEN && !w->free_me)
        wire_watch(w, wire_want(w));
    wire_leave(w);
}

/* A connected-or-connecting non-blocking socket to u; -1 with err. */
static int
wire_socket(const struct redis_url *u, char *err, size_t errlen)
{
    if (u->is_unix) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof sun.sun_path, "%s", u->path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ||
                        errno == EINPROGRESS || errno == EAGAIN))
            return fd;
        errf(err, errlen, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", u->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res = NULL;
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0) {
        errf(err, errlen, "%s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS)
            break;
        errf(err, errlen, "%s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* The name the server's certificate must carry: u's host, as a DNS name or an address. */
static int
wire_tls_start(struct redis_wire *w, const struct redis_url *u, SSL_CTX *tls, char *err,
               size_t errlen)
{
    char why[256];
    struct in6_addr a6;
    struct in_addr a4;
    bool is_ip = inet_pton(AF_INET, u->host, &a4) == 1 || inet_pton(AF_INET6, u->host, &a6) == 1;
    if ((w->ssl = SSL_new(tls)) == NULL || SSL_set_fd(w->ssl, w->fd) != 1) {
        errf(err, errlen, "TLS: %s", tls_error(why, sizeof why, "out of memory"));
        return -1;
    }
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(w->ssl), u->host)
                   : SSL_set1_host(w->ssl, u->host) && SSL_set_tlsext_host_name(w->ssl, u->host);
    if (ok != 1) {
        errf(err, errlen, "TLS: cannot check the name %s", u->host);
        return -1;
    }
    return 0;
}

struct redis_wire *
redis_wire_open(struct ev_loop *loop, const struct redis_url *u, SSL_CTX *tls,
                const struct redis_wire_ops *ops, void *arg, char *err, size_t errlen)
{
    struct redis_wire *w = calloc(1, sizeof *w);
    if (w == NULL || (w->reader = redisReaderCreate()) == NULL) {
        errf(err, errlen, "out of memory");
        free(w);
        return NULL;
    }
    w->loop = loop, w->ops = ops, w->arg = arg, w->state = W_CONNECTING;
    if (u->is_unix)
        snprintf(w->where, sizeof w->where, "%s", u->path);
    else
        snprintf(w->where, sizeof w->where, strchr(u->host, ':') ? "[%s]:%d" : "%s:%d",
                 u->host, u->port);
    if ((w->fd = wire_socket(u, err, errlen)) < 0 ||
        (u->tls && (tls == NULL ? (errf(err, errlen, "TLS: no context"), -1)
                                : wire_tls_start(w, u, tls, err, errlen)) < 0)) {
        wire_release(w);
        free(w);
        return NULL;
    }
    ev_io_init(&w->io, wire_on_io, w->fd, EV_WRITE); /* writable: the connect is done */
    ev_io_start(loop, &w->io);
    return w;
}

/* ---- commands ---- */

/* One RESP header line, "*N\r\n" or "$N\r\n". */
static int
wire_put_len(struct buf *b, char kind, size_t n)
{
    if (buf_append(b, &kind, 1) < 0 || buf_put_u64(b, n) < 0) return -1;
    return buf_append(b, "\r\n", 2);
}

static int
wire_put_arg(struct buf *b, const char *arg, size_t len)
{
    if (wire_put_len(b, '$', len) < 0 || buf_append(b, arg, len) < 0) return -1;
    return buf_append(b, "\r\n", 2);
}

/* The command in RESP straight into the output, as redisFormatCommandArgv would make
 * it, without its allocation and its printf per argument: on the hot path of every
 * session read. On failure the output is cut back to where it was. */
static int
wire_format(struct buf *b, int argc, const char **argv, const size_t *argvlen)
{
    size_t mark = b->len;
    int rc = wire_put_len(b, '*', (size_t)argc);
    for (int i = 0; i < argc && rc == 0; i++)
        rc = wire_put_arg(b, argv[i], argvlen[i]);
    if (rc < 0) b->len = mark;
    return rc;
}

int
redis_wire_send(struct redis_wire *w, int argc, const char **argv, const size_t *argvlen)
{
    if (w->state == W_LOST || argc <= 0) return -1;
    if (wire_format(&w->out, argc, argv, argvlen) < 0) return -1;
    if (w->state == W_OPEN)
        wire_watch(w, EV_READ | EV_WRITE);
    return 0;
}

void
redis_wire_poll(struct redis_wire *w)
{
    if (w == NULL || w->state != W_OPEN)
        return;
    wire_enter(w);
    wire_read(w);
    /* The analyzer cannot see that busy keeps w alive across the owner's callbacks.
     * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    wire_leave(w);
}

size_t
redis_wire_pending(const struct redis_wire *w)
{
    return buf_used(&w->out);
}

bool
redis_reply_is(const redisReply *r, const char *word)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(word) &&
           memcmp(r->str, word, r->len) == 0;
}
