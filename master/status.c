#include "status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

/* Each step (connect, send, every read) may take this long: a master that cannot answer
 * its health within it is not well, and status must not hang a shell or a monitor. */
#define STATUS_TIMEOUT_S 3
/* A health document of 128 slots is a few tens of KiB: more is not our server. */
#define STATUS_MAX_RESPONSE (4 << 20)

/* One connection to a listener: a socket, and the TLS session on it for tls listeners. */
struct link {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
};

static void
link_close(struct link *l)
{
    SSL_free(l->ssl);
    SSL_CTX_free(l->ctx);
    if (l->fd >= 0)
        close(l->fd);
    *l = (struct link){.fd = -1};
}

/* Where to dial a listener: a wildcard address is reached on the loopback address of its
 * family; any other address is one of this host's, dialled as written. */
static int
peer_addr(const struct conf_listen *a, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == AF_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        size_t n = strlen(a->host);
        if (n >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, a->host, n + 1);
        *len = sizeof *un;
        return 0;
    }
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)a->port);
        if (inet_pton(AF_INET6, a->host, &in6->sin6_addr) != 1)
            return -1;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
        *len = sizeof *in6;
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)a->port);
    if (inet_pton(AF_INET, a->host, &in->sin_addr) != 1)
        return -1;
    if (in->sin_addr.s_addr == htonl(INADDR_ANY))
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *in;
    return 0;
}

/* A blocking socket whose connect, sends and receives give up after STATUS_TIMEOUT_S
 * (on Linux the send timeout bounds connect too). */
static int
dial(const struct conf_listen *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (peer_addr(a, &ss, &len) < 0) {
        snprintf(err, errlen, "cannot make an address of it");
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = STATUS_TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&ss, len) < 0) {
        snprintf(err, errlen, "%s", errno == EINPROGRESS ? "connect timed out" : strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void
tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, errlen, "%s: %s", what, reason);
}

/* The handshake, without checking the certificate: we send nothing secret, and what we
 * dial (a loopback address, a socket path) is not the name the certificate is for. */
static int
tls_start(struct link *l, char *err, size_t errlen)
{
    l->ctx = SSL_CTX_new(TLS_client_method());
    if (l->ctx == NULL) {
        tls_error(err, errlen, "TLS context");
        return -1;
    }
    SSL_CTX_set_verify(l->ctx, SSL_VERIFY_NONE, NULL);
    l->ssl = SSL_new(l->ctx);
    if (l->ssl == NULL || SSL_set_fd(l->ssl, l->fd) != 1 || SSL_connect(l->ssl) != 1) {
        tls_error(err, errlen, "TLS handshake");
        return -1;
    }
    return 0;
}

static int
link_write(struct link *l, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (l->ssl != NULL) {
            int k = SSL_write(l->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            w = k > 0 ? k : -1;
        } else {
            w = send(l->fd, p, n, MSG_NOSIGNAL);
        }
        if (w < 0 && errno == EINTR && l->ssl == NULL)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read what is there, up to n bytes: >0 bytes read, 0 at the end, -1 on an error. */
static ssize_t
link_read(struct link *l, char *p, size_t n)
{
    if (l->ssl == NULL) {
        ssize_t r;
        do
            r = recv(l->fd, p, n, 0);
        while (r < 0 && errno == EINTR);
        return r;
    }
    int k = SSL_read(l->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
    if (k > 0)
        return k;
    return SSL_get_error(l->ssl, k) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

/* The value of header name (with its colon) in head, or NULL. */
static const char *
header(const char *head, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *h = head; h < end;) {
        const char *eol = memmem(h, (size_t)(end - h) + 2, "\r\n", 2);
        if (eol == NULL) /* not reached: the head ends with one */
            break;
        if ((size_t)(eol - h) > n && strncasecmp(h, name, n) == 0)
            return h + n;
        h = eol + 2;
    }
    return NULL;
}

/* Whether b holds a complete response: 1 with where its body starts and how long it is,
 * 0 while more is to come, -1 if it is framed in a way we do not read. The health
 * response has a Content-Length; without one, the body ends when the server closes. */
static int
response_complete(const struct buf *b, bool closed, size_t *body, size_t *body_len)
{
    const char *p = buf_data(b), *end = memmem(p, buf_used(b), "\r\n\r\n", 4);
    if (end == NULL)
        return closed ? -1 : 0;
    size_t head = (size_t)(end - p) + 4;
    if (header(p, end, "Transfer-Encoding:") != NULL)
        return -1;
    const char *cl = header(p, end, "Content-Length:");
    size_t want = buf_used(b) - head;
    if (cl != NULL) {
        errno = 0;
        long long v = strtoll(cl, NULL, 10);
        if (v < 0 || v > STATUS_MAX_RESPONSE || errno != 0)
            return -1;
        want = (size_t)v;
    } else if (!closed) {
        return 0;
    }
    if (buf_used(b) - head < want)
        return closed ? -1 : 0;
    *body = head;
    *body_len = want;
    return 1;
}

/* Send GET /api/health and read the whole response into resp. Health needs no
 * credentials (API.md), so the API key, if any, is never sent. */
static int
exchange(struct link *l, struct buf *resp, size_t *body, size_t *body_len, char *err,
         size_t errlen)
{
    static const char req[] = "GET /api/health HTTP/1.1\r\nHost: localhost\r\n"
                              "User-Agent: sessiond-status\r\nConnection: close\r\n\r\n";
    if (link_write(l, req, sizeof req - 1) < 0) {
        snprintf(err, errlen, "sending the request: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        if (buf_used(resp) >= STATUS_MAX_RESPONSE || buf_reserve(resp, 16384) < 0) {
            snprintf(err, errlen, "response too large");
            return -1;
        }
        errno = 0;
        ssize_t r = link_read(l, resp->p + resp->len, resp->cap - resp->len);
        if (r < 0) {
            snprintf(err, errlen, "reading the response: %s",
                     errno == EAGAIN || errno == EWOULDBLOCK ? "timed out"
                     : errno != 0                            ? strerror(errno)
                                                             : "TLS error");
            return -1;
        }
        resp->len += (size_t)r;
        int done = response_complete(resp, r == 0, body, body_len);
        if (done > 0)
            return 0;
        if (done < 0) {
            snprintf(err, errlen, "%s", r == 0 ? "the connection closed before a whole "
                                                 "response"
                                               : "a response framed in a way we do not read");
            return -1;
        }
    }
}

/* Ask one listener for the health document; on success resp holds the response and
 * [body, body + body_len) the document. */
static int
ask(const struct conf_listen *a, struct buf *resp, size_t *body, size_t *body_len, char *err,
    size_t errlen)
{
    struct link l = {.fd = dial(a, err, errlen)};
    if (l.fd < 0)
        return -1;
    int rc = a->tls ? tls_start(&l, err, errlen) : 0;
    if (rc == 0)
        rc = exchange(&l, resp, body, body_len, err, errlen);
    link_close(&l);
    if (rc < 0)
        return -1;
    /* 200 serving, 503 draining or degraded: both carry the document. */
    const char *p = buf_data(resp);
    if (buf_used(resp) < 12 || strncmp(p, "HTTP/1.1 ", 9) != 0 ||
        (strncmp(p + 9, "200", 3) != 0 && strncmp(p + 9, "503", 3) != 0)) {
        const char *eol = memchr(p, '\r', buf_used(resp));
        int n = eol != NULL ? (int)(eol - p) : 0;
        snprintf(err, errlen, "unexpected answer \"%.*s\"", n > 64 ? 64 : n, p);
        return -1;
    }
    return 0;
}

/* The order listeners are tried in: a Unix socket needs no address, plain needs no
 * handshake. */
static int
preference(const struct conf_listen *a)
{
    return (a->tls ? 2 : 0) + (a->family == AF_UNIX ? 0 : 1);
}

/* Fetch the health document from the first listener that answers. Returns the index of
 * that listener, or -1 with the last listener's error in err. */
static int
fetch_health(const struct conf *c, struct buf *resp, size_t *body, size_t *body_len,
             char *err, size_t errlen)
{
    snprintf(err, errlen, "no listener is configured");
    for (int pref = 0; pref < 4; pref++) {
        for (int i = 0; i < c->nlisten; i++) {
            if (preference(&c->listen[i]) != pref)
                continue;
            char why[256];
            resp->off = resp->len = 0;
            if (ask(&c->listen[i], resp, body, body_len, why, sizeof why) == 0)
                return i;
            snprintf(err, errlen, "%s%s: %s", c->listen[i].text, c->listen[i].tls ? " tls" : "",
                     why);
        }
    }
    return -1;
}

/* The parent of pid from /proc, or -1 if it cannot be read. */
static pid_t
parent_of(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    (void)fclose(f);
    stat[n] = '\0';
    /* ") S 1234 ...": the command name before may hold anything, so look after it. */
    const char *p = strrchr(stat, ')');
    if (p == NULL || strlen(p) < 5 || p[1] != ' ' || p[3] != ' ')
        return -1;
    char *end;
    errno = 0;
    long ppid = strtol(p + 4, &end, 10);
    if (errno != 0 || end == p + 4 || ppid < 0)
        return -1;
    return (pid_t)ppid;
}

/* Whether the workers listed belong to pid: the listener could be another server's (a
 * config changed since the start, a port taken over). */
static bool
workers_belong(const json_t *health, pid_t pid)
{
    const json_t *list = json_object_get(json_object_get(health, "workers"), "list");
    size_t i;
    const json_t *w;
    json_array_foreach(list, i, w)
    {
        pid_t wp = (pid_t)json_integer_value(json_object_get(w, "pid"));
        pid_t parent = parent_of(wp);
        if (wp != pid && parent >= 0 && parent != pid)
            return false;
    }
    return true;
}

static int render(json_t *h, pid_t pid, bool single, FILE *out, char *err, size_t errlen);

int
status_run(const struct conf *c, pid_t pid, FILE *out, FILE *errout)
{
    struct buf resp = {0};
    size_t body = 0, body_len = 0;
    char err[512];
    int which = fetch_health(c, &resp, &body, &body_len, err, sizeof err);
    if (which < 0) {
        fprintf(errout, "sessiond: pid %ld is running, but its health cannot be read: %s\n",
                (long)pid, err);
        buf_free(&resp);
        return 1;
    }
    const char *from = c->listen[which].text;
    json_error_t jerr;
    json_t *health = json_loadb(buf_data(&resp) + body, body_len, 0, &jerr);
    buf_free(&resp);
    int rc = 1;
    if (health == NULL)
        fprintf(errout, "sessiond: the health from %s is not JSON: %s\n", from, jerr.text);
    else if (!workers_belong(health, pid))
        fprintf(errout,
                "sessiond: the server on %s is not pid %ld's (its workers are not that "
                "process's children)\n",
                from, (long)pid);
    else if (render(health, pid, !c->clustering, out, err, sizeof err) < 0)
        fprintf(errout, "sessiond: the health from %s: %s\n", from, err);
    else
        rc = 0;
    json_decref(health);
    return rc;
}

void
status_human_duration(uint64_t seconds, char *buf, size_t len)
{
    if (seconds < 60)
        snprintf(buf, len, "%llus", (unsigned long long)seconds);
    else if (seconds < 3600)
        snprintf(buf, len, "%llum", (unsigned long long)(seconds / 60));
    else if (seconds < 86400)
        snprintf(buf, len, "%lluh", (unsigned long long)(seconds / 3600));
    else
        snprintf(buf, len, "%llud", (unsigned long long)(seconds / 86400));
}

enum { COL_ID, COL_PID, COL_STATE, COL_UPTIME, COL_RESTARTS, COL_CONNS, COL_REQUESTS, COL_RSS,
       COL_CPU, NCOLS };

static const char *const col_names[NCOLS] = {"ID",    "PID",      "STATE", "UPTIME", "RESTARTS",
                                             "CONNS", "REQUESTS", "RSS",   "CPU"};

struct row {
    json_int_t id, generation, pid;
    char cell[NCOLS][32];
};

/* One worker of the list as a row of cells. Fields newer than the contract (restarts,
 * cpu) show "-" when an older server does not send them. */
static int
fill_row(json_t *w, struct row *r)
{
    const char *state;
    json_int_t uptime, conns, requests, rss, restarts = -1, gen = 0;
    double cpu = -1;
    if (json_unpack(w, "{s:I, s:I, s:s, s:I, s:I, s:I, s:I, s?I, s?I, s?F}", "id", &r->id,
                    "pid", &r->pid, "state", &state, "uptime_s", &uptime, "connections",
                    &conns, "requests", &requests, "rss_bytes", &rss, "generation", &gen,
                    "restarts", &restarts, "cpu", &cpu) < 0)
        return -1;
    r->generation = gen;
    char up[16];
    status_human_duration(uptime > 0 ? (uint64_t)uptime : 0, up, sizeof up);
    snprintf(r->cell[COL_ID], sizeof r->cell[0], "%lld", (long long)r->id);
    snprintf(r->cell[COL_PID], sizeof r->cell[0], "%lld", (long long)r->pid);
    snprintf(r->cell[COL_STATE], sizeof r->cell[0], "%s", state);
    snprintf(r->cell[COL_UPTIME], sizeof r->cell[0], "%s", up);
    if (restarts >= 0)
        snprintf(r->cell[COL_RESTARTS], sizeof r->cell[0], "%lld", (long long)restarts);
    else
        snprintf(r->cell[COL_RESTARTS], sizeof r->cell[0], "-");
    snprintf(r->cell[COL_CONNS], sizeof r->cell[0], "%lld", (long long)conns);
    snprintf(r->cell[COL_REQUESTS], sizeof r->cell[0], "%lld", (long long)requests);
    snprintf(r->cell[COL_RSS], sizeof r->cell[0], "%.1f MiB", (double)rss / (1 << 20));
    if (cpu >= 0)
        snprintf(r->cell[COL_CPU], sizeof r->cell[0], "%.1f%%", cpu * 100);
    else
        snprintf(r->cell[COL_CPU], sizeof r->cell[0], "-");
    return 0;
}

static int
row_order(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->generation != y->generation)
        return x->generation < y->generation ? -1 : 1;
    return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* One line of cells, each padded to its column's width, two spaces apart. */
static void
print_line(FILE *out, const int width[NCOLS], const char *const cells[NCOLS])
{
    for (int c = 0; c + 1 < NCOLS; c++)
        fprintf(out, "%-*s  ", width[c], cells[c]);
    fprintf(out, "%s\n", cells[NCOLS - 1]);
}

/* The rows in columns as wide as their widest cell, under a line of column names. */
static void
print_table(FILE *out, const struct row *rows, size_t n)
{
    int width[NCOLS];
    for (int c = 0; c < NCOLS; c++) {
        width[c] = (int)strlen(col_names[c]);
        for (size_t i = 0; i < n; i++)
            if ((int)strlen(rows[i].cell[c]) > width[c])
                width[c] = (int)strlen(rows[i].cell[c]);
    }
    print_line(out, width, col_names);
    for (size_t i = 0; i < n; i++) {
        const char *cells[NCOLS];
        for (int c = 0; c < NCOLS; c++)
            cells[c] = rows[i].cell[c];
        print_line(out, width, cells);
    }
}

static int
render_workers(json_t *list, FILE *out, char *err, size_t errlen)
{
    size_t n = json_array_size(list);
    struct row *rows = calloc(n > 0 ? n : 1, sizeof *rows);
    if (rows == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (fill_row(json_array_get(list, i), &rows[i]) < 0) {
            snprintf(err, errlen, "worker %zu of the list lacks a field", i);
            free(rows);
            return -1;
        }
    }
    qsort(rows, n, sizeof *rows, row_order);
    print_table(out, rows, n);
    free(rows);
    return 0;
}

static int
render(json_t *h, pid_t pid, bool single, FILE *out, char *err, size_t errlen)
{
    const char *status, *instance, *version, *backend, *circuit;
    json_int_t uptime, active, count, alive, restarts;
    json_t *list;
    if (json_unpack(h, "{s:s, s:s, s:I, s:s, s:{s:I}, s:{s:I, s:I, s:I, s:o}, s:{s:s, s:s}}",
                    "status", &status, "version", &version, "uptime_s", &uptime, "instance",
                    &instance, "sessions", "active", &active, "workers", "count", &count,
                    "alive", &alive, "restarts", &restarts, "list", &list, "store", "backend",
                    &backend, "circuit", &circuit) < 0 ||
        !json_is_array(list)) {
        snprintf(err, errlen, "not a health document");
        return -1;
    }
    char up[16];
    status_human_duration(uptime > 0 ? (uint64_t)uptime : 0, up, sizeof up);
    fprintf(out,
            "%s pid %ld, up %s, status %s; store %s, circuit %s; %lld session(s) active; "
            "%lld of %lld worker(s) alive, %lld restart(s); sessiond %s on %s\n",
            single ? "single process" : "master", (long)pid, up, status, backend, circuit,
            (long long)active, (long long)alive, (long long)count, (long long)restarts, version,
            instance);
    return render_workers(list, out, err, errlen);
}

int
status_render(const char *body, size_t len, pid_t pid, bool single, FILE *out, char *err,
              size_t errlen)
{
    json_error_t jerr;
    json_t *h = json_loadb(body, len, 0, &jerr);
    if (h == NULL) {
        snprintf(err, errlen, "not JSON: %s", jerr.text);
        return -1;
    }
    int rc = render(h, pid, single, out, err, errlen);
    json_decref(h);
    return rc;
}
