#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

static int
fill_addr(const struct conf_listen *a, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (a->family == AF_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        un->sun_family = AF_UNIX;
        size_t n = strlen(a->host);
        if (n >= sizeof un->sun_path)
            return -1;
        memcpy(un->sun_path, a->host, n + 1);
        *len = sizeof *un;
    } else if (a->family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)a->port);
        if (inet_pton(AF_INET6, a->host, &in6->sin6_addr) != 1)
            return -1;
        *len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)a->port);
        if (inet_pton(AF_INET, a->host, &in->sin_addr) != 1)
            return -1;
        *len = sizeof *in;
    }
    return 0;
}

/* Remove a Unix socket file left by a previous run, but never a file that is not a
 * socket, and never one some process still listens on. */
static int
clear_stale_unix(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        errno = EEXIST;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof un.sun_path) {
        close(fd);
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(un.sun_path, path, strlen(path) + 1);
    int live = connect(fd, (struct sockaddr *)&un, sizeof un) == 0;
    close(fd);
    if (live) {
        errno = EADDRINUSE;
        return -1;
    }
    return unlink(path);
}

/* Sockets handed to this process and not taken yet (-1: taken or closed). A process
 * fact, like the descriptors themselves: one pool, filled once at start. */
static int inherited[CONF_MAX_LISTEN * 2];
static int ninherited;

/* A listening stream socket's bound address is exactly the one fill_addr makes for a. */
static bool
bound_to(int fd, const struct sockaddr_storage *want, socklen_t wantlen)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof got;
    int type = 0, listening = 0;
    socklen_t tlen = sizeof type, llen = sizeof listening;
    memset(&got, 0, sizeof got);
    if (getsockname(fd, (struct sockaddr *)&got, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) < 0)
        return false;
    if (type != SOCK_STREAM || !listening || got.ss_family != want->ss_family) return false;
    if (want->ss_family == AF_UNIX)
        return strcmp(((const struct sockaddr_un *)&got)->sun_path,
                      ((const struct sockaddr_un *)want)->sun_path) == 0;
    return len == wantlen && memcmp(&got, want, len) == 0;
}

/* The inherited socket bound to ss, made ours (non-blocking, close-on-exec), or -1. */
static int
take_inherited(const struct sockaddr_storage *ss, socklen_t len)
{
    for (int i = 0; i < ninherited; i++) {
        int fd = inherited[i];
        if (fd < 0 || !bound_to(fd, ss, len)) continue;
        inherited[i] = -1;
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        return fd;
    }
    return -1;
}

int
listener_inherit(int fd)
{
    if (ninherited == (int)ARRAY_LEN(inherited)) return -1;
    inherited[ninherited++] = fd;
    return 0;
}

int
listener_close_inherited(void)
{
    int n = 0;
    for (int i = 0; i < ninherited; i++)
        if (inherited[i] >= 0) {
            close(inherited[i]);
            n++;
        }
    ninherited = 0;
    return n;
}

int
listener_from_systemd(char *err, size_t errlen)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int n = 0;
    if (pid != NULL && fds != NULL && strtol(pid, NULL, 10) == (long)getpid()) {
        char *end;
        long count = strtol(fds, &end, 10);
        if (*end != '\0' || count < 0 || count > (long)ARRAY_LEN(inherited) - ninherited) {
            errf(err, errlen, "LISTEN_FDS=%s: not a count of sockets sessiond can take", fds);
            return -1;
        }
        for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + (int)count; fd++)
            if (listener_inherit(fd) == 0) n++;
    }
    /* Ours alone: a worker or a new master must not take them for its own. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return n;
}

int
listener_open(const struct conf_listen *addr, int backlog, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (fill_addr(addr, &ss, &len) < 0) {
        snprintf(err, errlen, "listen %s: invalid address", addr->text);
        return -1;
    }
    int held = take_inherited(&ss, len);
    if (held >= 0) {
        if (listen(held, backlog) < 0) {
            snprintf(err, errlen, "listen %s: %s", addr->text, strerror(errno));
            close(held);
            return -1;
        }
        return held;
    }
    if (addr->family == AF_UNIX && clear_stale_unix(addr->host) < 0) {
        snprintf(err, errlen, "listen %s: %s", addr->text, strerror(errno));
        return -1;
    }
    int fd = socket(addr->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: socket: %s", addr->text, strerror(errno));
        return -1;
    }
    int one = 1;
    if (addr->family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        snprintf(err, errlen, "listen %s: %s", addr->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int
find(const struct listener_set *set, const struct conf_listen *a)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->l[i].addr.text, a->text) == 0)
            return i;
    return -1;
}

int
listener_sync(struct listener_set *set, const struct conf *conf, char *err, size_t errlen)
{
    struct listener_set next = {.n = 0};
    bool opened[CONF_MAX_LISTEN] = {false};

    for (int i = 0; i < conf->nlisten; i++) {
        const struct conf_listen *a = &conf->listen[i];
        int k = find(set, a);
        int fd = k >= 0 ? set->l[k].fd : listener_open(a, conf->backlog, err, errlen);
        if (fd < 0) {
            for (int j = 0; j < next.n; j++)
                if (opened[j])
                    close(next.l[j].fd);
            return -1;
        }
        if (k >= 0)
            listen(fd, conf->backlog); /* a changed backlog applies to a kept socket too */
        opened[next.n] = k < 0;
        next.l[next.n].fd = fd;
        next.l[next.n].addr = *a;
        next.n++;
    }
    for (int i = 0; i < set->n; i++)
        if (find(&next, &set->l[i].addr) < 0)
            close(set->l[i].fd);
    *set = next;
    return 0;
}

void
listener_close_all(struct listener_set *set)
{
    for (int i = 0; i < set->n; i++)
        close(set->l[i].fd);
    set->n = 0;
}
