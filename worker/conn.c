#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http.h"
#include "log.h"
#include "router.h"
#include "util.h"
#include "worker.h"

/* How long an idle keep-alive connection may stay once a drain starts: long enough for a
 * client that is about to send its next request to get an answer (with Connection: close),
 * short enough not to delay the drain. */
#define DRAIN_IDLE_GRACE 1.0
/* How long a closing connection reads and discards what the client still sends, so that
 * the kernel does not answer unread bytes with a reset that could destroy our response. */
#define LINGER_TIMEOUT 2.0
/* Stop parsing pipelined requests while this much output waits to be written. */
#define OUT_HIGH_WATER ((size_t)256 * 1024)
#define READ_CHUNK 16384

static bool addr_is_loopback(const struct sockaddr_storage *ss);
static void conn_process(struct conn *c);
static void conn_flush(struct conn *c);
static void conn_readable(struct conn *c);
static void reject(struct conn *c, int status, const char *why);

/* The connection's one timer follows a deadline. Moving the deadline later costs nothing:
 * the timer fires at the old time and re-arms itself for the rest. */
static void
set_deadline(struct conn *c, double secs)
{
    struct ev_loop *loop = c->w->loop;
    c->req->deadline = ev_now(loop) + secs;
    if (ev_is_active(&c->timer)) {
        if (ev_timer_remaining(loop, &c->timer) <= secs)
            return;
        ev_timer_stop(loop, &c->timer);
    }
    ev_timer_set(&c->timer, secs, 0.);
    ev_timer_start(loop, &c->timer);
}

/* The connection's one watcher waits for what it needs: input while it reads (or while
 * a TLS write needs input first), room while output waits (or a TLS read or handshake
 * needs to write). One ev_io rather than one per direction saves 48 bytes on every
 * connection; a change of events is a stop and a start, which libev folds into one
 * epoll_ctl before it polls again, and an event already pending for a direction still
 * wanted (fed for bytes OpenSSL holds, say) is fed again rather than lost. */
static void
conn_watch(struct conn *c)
{
    struct ev_loop *loop = c->w->loop;
    int want = (c->reading || c->tls_write_wants_read ? EV_READ : 0) | (c->writing ? EV_WRITE : 0);
    int now = ev_is_active(&c->io) ? c->io.events & (EV_READ | EV_WRITE) : 0;
    if (want == now || c->closed) return;
    int pending = ev_clear_pending(loop, &c->io);
    ev_io_stop(loop, &c->io);
    if (want == 0) return;
    ev_io_modify(&c->io, want);
    ev_io_start(loop, &c->io);
    if ((pending & want) != 0) ev_feed_event(loop, &c->io, pending & want);
}

static void
set_writing(struct conn *c, bool on)
{
    c->writing = on;
    conn_watch(c);
}

static void
set_reading(struct conn *c, bool on)
{
    if (on == c->reading || c->closed)
        return;
    c->reading = on;
    conn_watch(c);
    /* Bytes OpenSSL already decrypted will not make the socket readable again. */
    if (on && c->ssl != NULL && SSL_pending(c->ssl) > 0) ev_feed_event(c->w->loop, &c->io, EV_READ);
}

/* Between requests: idle until the next one starts, or a short grace while draining. */
static void
set_idle(struct conn *c)
{
    const struct conf *cf = c->w->conf;
    double idle = secs_of_ms(cf->keepalive_timeout_ms);
    if (c->w->draining && idle > DRAIN_IDLE_GRACE)
        idle = DRAIN_IDLE_GRACE;
    set_deadline(c, idle);
}

void
conn_close(struct conn *c)
{
    if (c->closed)
        return;
    if (c->proto != NULL)
        c->proto->close(c);
    struct ev_loop *loop = c->w->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    if (c->ssl != NULL) {
        if (c->tls_ok)
            SSL_shutdown(c->ssl); /* close_notify, if the socket takes it now; no waiting */
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
    }
    close(c->fd);
    c->fd = -1;
    c->closed = true;
    if (c->ip_held) {
        limit_release(&c->w->sb->limits, c->ip_key);
        c->ip_held = false;
    }
    c->reading = false;
    worker_conn_closed(c->w, c);
}

void
conn_free(struct conn *c)
{
    if (c->proto != NULL)
        c->proto->free(c->proto_data);
    if (c->req != NULL) buf_free(&c->req->in);
    free(c->req);
    buf_free(&c->out);
    free(c);
}

/* Shut our side, then read and drop what the client still sends until it closes too. */
static void
start_linger(struct conn *c)
{
    c->state = CONN_LINGER;
    if (c->ssl != NULL && c->tls_ok) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify before the FIN */
        c->tls_ok = false;    /* sent: once is enough */
    }
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    buf_free(&c->req->in);
    set_reading(c, true);
    set_deadline(c, LINGER_TIMEOUT);
}

static void
linger_read(struct conn *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct conn *c = container_of(t, struct conn, timer);
    if (c->proto != NULL) {
        c->proto->timer(c);
        return;
    }
    if (c->state == CONN_HANDSHAKE) {
        conn_close(c); /* tls_handshake_timeout: a silent or too slow client */
        return;
    }
    double left = c->req->deadline - ev_now(loop);
    if (left > 0.0005) {
        ev_timer_set(t, left, 0.);
        ev_timer_start(loop, t);
        return;
    }
    if (buf_used(&c->out) > 0 || c->state == CONN_LINGER) {
        conn_close(c); /* the client stopped reading, or we are done with it */
        return;
    }
    if (c->state == CONN_PENDING)
        return; /* a handler holds the request; its answer re-arms the timer */
    if (c->state == CONN_BODY || buf_used(&c->req->in) > 0) {
        /* A request started but did not arrive in time (slow clients, slowloris). */
        reject(c, 408, "The request was not received in time.");
        return;
    }
    conn_close(c); /* idle keep-alive connection */
}

/* ---- TLS ---- */

/* The handshake, driven by whichever watcher OpenSSL waits for. Once done, the
 * connection is an ordinary one in CONN_HEAD with header_timeout to send its request. */
/* Whether the client spoke plain HTTP to a TLS port: its first byte is a letter (a
 * method), where TLS would start with a handshake record (22). Such a client is told so
 * in plain HTTP, as nginx does, rather than dropped without a word. */
static bool
plain_http_on_tls(struct conn *c)
{
    unsigned char first;
    if (c->tls_sniffed || recv(c->fd, &first, 1, MSG_PEEK) != 1)
        return false;
    c->tls_sniffed = true;
    if (first < 'A' || first > 'Z')
        return false;
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->state = CONN_HEAD;
    set_writing(c, false);
    conn_refuse(c, 400, NULL, "bad_request",
                "A plain HTTP request was sent to a TLS port: use https:// (or wss://).");
    return true;
}

static void
conn_handshake(struct conn *c)
{
    if (plain_http_on_tls(c))
        return;
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->tls_ok = true;
        c->state = CONN_HEAD;
        set_writing(c, false);
        set_deadline(c, secs_of_ms(c->w->conf->header_timeout_ms));
        if (c->w->draining)
            set_idle(c); /* a short grace for its first request, as idle ones get */
        if (SSL_has_pending(c->ssl)) ev_feed_event(c->w->loop, &c->io, EV_READ);
        return;
    }
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        set_writing(c, false);
        return;
    case SSL_ERROR_WANT_WRITE:
        set_writing(c, true);
        return;
    default: {
        unsigned long e = ERR_peek_last_error();
        const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
        log_debug("TLS handshake failed: %s", why != NULL ? why : strerror(errno));
        conn_close(c);
    }
    }
}

ssize_t
conn_tls_recv(struct conn *c, void *p, size_t len)
{
    ERR_clear_error();
    int n = SSL_read(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        /* The rest of a record larger than p stays inside OpenSSL, where the socket's
         * readiness cannot announce it: come back for it in this loop iteration. */
        if (SSL_pending(c->ssl) > 0) ev_feed_event(c->w->loop, &c->io, EV_READ);
        return n;
    }
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        c->tls_read_wants_write = true;
        set_writing(c, true);
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare FIN */
    case SSL_ERROR_SYSCALL:
        c->tls_ok = false;
        if (errno == 0 || errno == EAGAIN)
            errno = ECONNRESET;
        return -1;
    default:
        c->tls_ok = false;
        errno = EPROTO;
        return -1;
    }
}

ssize_t
conn_tls_send(struct conn *c, const void *p, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_READ:
        c->tls_write_wants_read = true;
        conn_watch(c);
        errno = EAGAIN;
        return -1;
    default:
        c->tls_ok = false;
        if (errno == 0 || errno == EAGAIN)
            errno = EPIPE;
        return -1;
    }
}

/* ---- Events ---- */

static void
conn_writable(struct conn *c)
{
    if (c->state == CONN_HANDSHAKE)
        conn_handshake(c);
    else if (c->proto != NULL)
        c->proto->write(c);
    else
        conn_flush(c);
}

static void
on_write(struct conn *c)
{
    if (c->tls_read_wants_write) {
        c->tls_read_wants_write = false;
        conn_readable(c);
        if (c->closed)
            return;
    }
    conn_writable(c);
}

static void
on_read(struct conn *c)
{
    if (c->tls_write_wants_read) {
        c->tls_write_wants_read = false;
        conn_watch(c); /* stops reading if it was for the write alone */
        conn_writable(c);
        if (c->closed || !c->reading)
            return;
    }
    conn_readable(c);
}

/* Input first, then room, as far as each is still waited for: what the input did may
 * have ended the wait for room (or the connection). */
static void
on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct conn *c = container_of(io, struct conn, io);
    if ((revents & EV_READ) != 0) {
        on_read(c);
        if (c->closed) return;
    }
    if ((revents & EV_WRITE) != 0 && c->writing) on_write(c);
}

static void
conn_readable(struct conn *c)
{
    if (c->state == CONN_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if (c->proto != NULL) {
        c->proto->read(c);
        return;
    }
    if (c->state == CONN_LINGER) {
        linger_read(c);
        return;
    }
    if (c->state == CONN_PENDING) {
        set_reading(c, false); /* conn_process starts it again once the answer is out */
        return;
    }
    if (buf_reserve(&c->req->in, READ_CHUNK) < 0) {
        conn_close(c);
        return;
    }
    ssize_t n = conn_recv(c, c->req->in.p + c->req->in.len, c->req->in.cap - c->req->in.len);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(c);
        return;
    }
    if (n == 0) {
        /* The client closed (or half-closed) its side: answer the complete requests it
         * already sent, then close. */
        c->eof = true;
        set_reading(c, false);
        conn_process(c);
        return;
    }
    bool was_idle = c->state == CONN_HEAD && buf_used(&c->req->in) == 0;
    c->req->in.len += (size_t)n;
    if (was_idle)
        c->req->deadline = 0; /* a new request starts: its head must arrive within header_timeout */
    conn_process(c);
}

struct conn *
conn_new(struct worker *w, int fd, const struct sockaddr_storage *peer, SSL_CTX *tls)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL || (c->req = calloc(1, sizeof *c->req)) == NULL ||
        (tls != NULL && (c->ssl = SSL_new(tls)) == NULL)) {
        if (c != NULL)
            free(c->req);
        free(c);
        close(fd);
        ERR_clear_error();
        return NULL;
    }
    if (c->ssl != NULL) {
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
    }
    c->w = w;
    c->fd = fd;
    c->peer_loopback = addr_is_loopback(peer);
    if (peer->ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ev_io_init(&c->io, on_io, fd, 0);
    ev_init(&c->timer, on_timer);
    c->state = c->ssl != NULL ? CONN_HANDSHAKE : CONN_HEAD;
    worker_conn_opened(w, c);
    set_reading(c, true);
    set_deadline(c, secs_of_ms(c->ssl != NULL ? w->conf->tls_handshake_timeout_ms
                                              : w->conf->header_timeout_ms));
    return c;
}

void
conn_refuse(struct conn *c, int status, const char *extra_headers, const char *code,
            const char *why)
{
    struct request *r = c->req;
    memset(&r->http, 0, sizeof r->http);
    r->http.version_minor = 1;
    r->conn = c;
    r->started = ev_now(c->w->loop);
    c->close_after = true;
    c->state = CONN_PENDING;
    http_error_with(r, status, extra_headers, code, why);
}

/* Answer a request that could not be parsed, then close: after a framing error nothing
 * that follows on the connection can be trusted to be a request. */
static void
reject(struct conn *c, int status, const char *why)
{
    conn_refuse(c, status, NULL, NULL, why);
}

/* A complete head has been parsed: check it against our limits and get ready for the
 * body. Returns false if the request was answered (and the connection is closing). */
static bool
begin_request(struct conn *c)
{
    const struct conf *cf = c->w->conf;
    struct http_request *h = &c->req->http;
    if (h->content_length > cf->max_body_bytes) {
        reject(c, 413, "The request body is larger than max_body_bytes.");
        return false;
    }
    if (h->chunked) http_chunked_init(&c->req->chunked);
    c->req->body_have = 0;
    c->req->in_consumed = h->head_len;
    c->state = CONN_BODY;
    bool has_body = h->chunked || h->content_length > 0;
    if (has_body) {
        if (h->expect_continue && h->version_minor == 1 && buf_used(&c->req->in) == h->head_len) {
            http_status_line(&c->out, 1, 100);
            buf_puts(&c->out, "\r\n");
        }
        set_deadline(c, secs_of_ms(cf->body_timeout_ms));
    }
    return true;
}

/* Make the body of the current request complete in the input buffer, right after the
 * head. Returns 1 when it is, 0 when more input is needed, -1 when the request was
 * answered with an error. */
static int
read_body(struct conn *c)
{
    struct http_request *h = &c->req->http;
    char *data = buf_data(&c->req->in);
    size_t have = buf_used(&c->req->in);
    if (!h->chunked) {
        size_t need = h->head_len + (size_t)(h->content_length > 0 ? h->content_length : 0);
        if (have < need)
            return 0;
        c->req->body_have = need - h->head_len;
        c->req->in_consumed = need;
        return 1;
    }
    size_t used = 0;
    enum http_chunked_result res = http_chunked_decode(
        &c->req->chunked, data + c->req->in_consumed, have - c->req->in_consumed, &used,
        data + h->head_len, &c->req->body_have, (size_t)c->w->conf->max_body_bytes);
    c->req->in_consumed += used;
    if (res == HTTP_CHUNKED_MORE)
        return 0;
    if (res == HTTP_CHUNKED_TOO_BIG) {
        reject(c, 413, "The request body is larger than max_body_bytes.");
        return -1;
    }
    if (res == HTTP_CHUNKED_ERROR) {
        reject(c, 400, "The chunked request body is malformed.");
        return -1;
    }
    return 1;
}

/* rate_limit_per_ip: a token from the peer's bucket, or 429 with the wait. */
static bool
rate_ok(struct request *r)
{
    struct conn *c = r->conn;
    const struct conf *cf = c->w->conf;
    if (c->ip_key == 0 || cf->rate_limit_per_ip == 0)
        return true;
    unsigned wait = limit_take(&c->w->sb->limits, c->ip_key, (unsigned)cf->rate_limit_per_ip,
                               limit_now_ms());
    if (wait == 0)
        return true;
    char retry[40], why[128];
    snprintf(retry, sizeof retry, "Retry-After: %u\r\n", wait);
    snprintf(why, sizeof why, "This address sends more than %d requests per second.",
             cf->rate_limit_per_ip);
    http_error_with(r, 429, retry, "too_many_requests", why);
    return false;
}

static void
dispatch(struct conn *c)
{
    struct request *r = c->req;
    struct http_request *h = &r->http;
    if (c->req->head_at != buf_data(&c->req->in)) {
        /* Reading the body moved the input buffer: the head's strings must be found
         * again. The head is unchanged and complete, so this parse cannot fail. */
        int status;
        const char *why;
        struct http_chunked keep = c->req->chunked;
        http_parse_request(buf_data(&c->req->in), h->head_len, h->head_len, h, &status, &why);
        c->req->chunked = keep;
    }
    r->conn = c;
    r->body = buf_data(&c->req->in) + h->head_len;
    r->body_len = c->req->body_have;
    r->nparams = 0;
    r->handler_data = NULL;
    r->started = ev_time();
    r->head_only = h->method == HTTP_HEAD;
    const struct http_str *ae = http_header_get(h, "Accept-Encoding");
    r->gzip_ok = ae != NULL && http_list_has_token(*ae, "gzip");
    c->state = CONN_PENDING;
    r->inflight_key = 0;
    if (!rate_ok(r))
        return;
    router_dispatch(r);
}

/* Parse what the input holds: as many pipelined requests as are complete, as long as the
 * output is not backed up. Handlers answering at once loop back here; a handler that
 * answers later leaves the connection PENDING with reading stopped. */
static void
conn_process(struct conn *c)
{
    if (c->in_process)
        return;
    c->in_process = true;
    const struct conf *cf = c->w->conf;
    while (!c->closed && !c->close_after && buf_used(&c->out) < OUT_HIGH_WATER) {
        if (c->state == CONN_HEAD) {
            if (buf_used(&c->req->in) == 0) break;
            int status = 0;
            const char *why = NULL;
            enum http_parse_result res =
                http_parse_request(buf_data(&c->req->in), buf_used(&c->req->in),
                                   (size_t)cf->max_header_bytes, &c->req->http, &status, &why);
            if (res == HTTP_PARSE_INCOMPLETE) {
                if (c->req->deadline == 0) set_deadline(c, secs_of_ms(cf->header_timeout_ms));
                break;
            }
            if (res == HTTP_PARSE_ERROR) {
                reject(c, status, why);
                break;
            }
            c->req->head_at = buf_data(&c->req->in);
            if (!begin_request(c))
                break;
        }
        if (c->state == CONN_BODY) {
            if (read_body(c) <= 0)
                break;
            dispatch(c);
        }
        if (c->state == CONN_PENDING || c->proto != NULL)
            break;
    }
    c->in_process = false;
    if (c->closed || c->proto != NULL)
        return;
    /* Stop reading while the input holds more than one full request may need. While a
     * handler holds the request its strings point into the input buffer, which a read
     * could move: on_read stops reading then, if the client sends more meanwhile (it
     * pipelines), rather than here on every answer that comes later (a Redis call), which
     * would cost two epoll_ctl calls per request. */
    size_t in_cap = (size_t)cf->max_header_bytes + (size_t)cf->max_body_bytes + READ_CHUNK;
    set_reading(c, !c->close_after && !c->eof && buf_used(&c->req->in) < in_cap);
    conn_flush(c);
}

int
conn_write_out(struct conn *c)
{
    while (buf_used(&c->out) > 0) {
        ssize_t n = conn_send(c, buf_data(&c->out), buf_used(&c->out));
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* A TLS write waiting for input has on_read to call it back instead. */
            if (!c->writing && !c->tls_write_wants_read) set_writing(c, true);
            return 0;
        }
        return -1;
    }
    return 1;
}

static void
conn_flush(struct conn *c)
{
    bool waiting = c->writing;
    int rc = conn_write_out(c);
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if (rc == 0) {
        if (!waiting) /* the client stopped reading: it has send_timeout to start again */
            set_deadline(c, secs_of_ms(c->w->conf->send_timeout_ms));
        return;
    }
    if (c->writing) {
        set_writing(c, false);
        if (c->state == CONN_HEAD)
            set_idle(c);
        /* Output drained: pipelined requests held back by the high-water mark can go on. */
        if (!c->close_after && c->state == CONN_HEAD && buf_used(&c->req->in) > 0) {
            conn_process(c);
            return;
        }
    }
    buf_shrink(&c->out, 16384);
    if ((c->close_after || c->eof) && c->state != CONN_PENDING && c->state != CONN_LINGER)
        start_linger(c);
}

void
conn_response_done(struct conn *c, int status, bool keep_alive)
{
    struct worker *w = c->w;
    uint64_t us = (uint64_t)((ev_time() - c->req->started) * 1e6);
    if (c->req->inflight_key != 0) {
        limit_release(&w->sb->limits, c->req->inflight_key);
        c->req->inflight_key = 0;
    }
    sb_count_request(w->slot, status, us);
    if (c->closed) {
        c->state = CONN_HEAD; /* no longer held by a handler: the reaper may free it */
        return;
    }
    if (!keep_alive)
        c->close_after = true;
    buf_consume(&c->req->in, c->req->in_consumed);
    c->req->in_consumed = 0;
    c->req->body_have = 0;
    c->state = CONN_HEAD;
    if (buf_used(&c->req->in) == 0) {
        set_idle(c);
        buf_shrink(&c->req->in, READ_CHUNK);
    } else {
        c->req->deadline = 0;
    }
    if (!c->in_process)
        conn_process(c); /* answered later: go on with pipelined input, and write */
}

void
conn_drain(struct conn *c)
{
    if (c->proto != NULL) {
        c->proto->drain(c);
        return;
    }
    if (c->state == CONN_HEAD && buf_used(&c->req->in) == 0 && buf_used(&c->out) == 0) set_idle(c);
}

void
conn_upgrade(struct conn *c, const struct conn_proto *proto, void *data, int status)
{
    struct worker *w = c->w;
    sb_count_request(w->slot, status, (uint64_t)((ev_time() - c->req->started) * 1e6));
    /* The request and the input buffer go with HTTP: nothing up the stack touches the
     * request after this returns, and what the client sent behind it is handed over
     * from a copy of the buffer that this function frees. */
    struct buf in = c->req->in;
    buf_consume(&in, c->req->in_consumed);
    free(c->req);
    c->req = NULL;
    c->proto = proto;
    c->proto_data = data;
    c->state = CONN_UPGRADED;
    sb_set(&w->slot->conns_http, sb_get(&w->slot->conns_http) - 1);
    sb_add(&w->slot->conns_ws, 1);
    set_reading(c, true);
    if (buf_used(&in) > 0)
        proto->input(c, buf_data(&in), buf_used(&in));
    else
        proto->write(c);
    buf_free(&in);
}

void
conn_set_timer(struct conn *c, double secs)
{
    struct ev_loop *loop = c->w->loop;
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, secs, 0.);
    ev_timer_start(loop, &c->timer);
}

int
conn_write_all(struct conn *c)
{
    int rc = conn_write_out(c);
    if (rc <= 0)
        return rc;
    if (c->writing) set_writing(c, false);
    buf_free(&c->out);
    return 1;
}

void
conn_reset(struct conn *c)
{
    static const struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    if (!c->closed)
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    conn_close(c);
}

static bool
addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_UNIX)
        return true;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

bool
conn_peer_is_loopback(const struct conn *c)
{
    return c->peer_loopback;
}

uint64_t
conn_peer_key(const struct worker *w, const struct sockaddr_storage *peer)
{
    const struct conf *cf = w->conf;
    if ((cf->max_connections_per_ip == 0 && cf->rate_limit_per_ip == 0) ||
        (cf->limit_exempt_loopback && addr_is_loopback(peer)))
        return 0;
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)peer;
        return limit_key(&w->sb->limits, LIMIT_IP, &in->sin_addr, 4);
    }
    if (peer->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)peer)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) /* the same client as on an IPv4 socket */
            return limit_key(&w->sb->limits, LIMIT_IP, a->s6_addr + 12, 4);
        return limit_key(&w->sb->limits, LIMIT_IP, a->s6_addr, 8);
    }
    return 0;
}
