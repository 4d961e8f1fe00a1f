/* bus: Unix datagram sockets between the workers of one instance (see bus.h).
 *
 * Why datagrams: a message is one datagram, so there is no framing to parse, no partial
 * writes to resume, and a reader can never be left holding half a message. Why the
 * abstract namespace: nothing to create or clean up in the file system, and a name dies
 * with the socket, so a crashed worker leaves nothing behind for its replacement.
 *
 * Why one connected socket per destination: with a connected Unix datagram socket, EAGAIN
 * means precisely "this receiver's queue is full" (the kernel's net.unix.max_dgram_qlen,
 * or our send buffer), and EV_WRITE on that socket fires when that receiver has room
 * again (the kernel's peer_wake). With one unconnected socket for every destination, one
 * slow worker would make sends to all the others fail, and there would be nothing to wait
 * on. So each destination gets its own FIFO of messages that found its queue full,
 * bounded by BUS_MAX_PENDING bytes (message headers included, so that the bound is one
 * of memory even for tiny messages) and flushed from that socket's EV_WRITE watcher. A
 * message that arrives while the FIFO is not empty joins it, so the order holds.
 *
 * A send to a process that is gone fails with ECONNREFUSED (a connected socket whose
 * peer was closed), and a connect to a slot nobody bound fails the same way: the
 * destination is forgotten, with its FIFO, and a later send connects again. A new process
 * in a slot has a new pid, which the caller passes from the scoreboard: when it differs
 * from the pid we connected for, we reconnect before sending, since the old socket would
 * still point at the old process (or at nothing). */
#include "bus.h"

#include <errno.h>
#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "scoreboard.h"
#include "util.h"

/* Asked of the kernel for every socket; it caps this at net.core.[rw]mem_max. */
#define BUS_SOCKBUF (4 * 1024 * 1024)

/* A message that found its destination's queue full; data is our copy. */
struct bus_msg {
    struct bus_msg *next;
    size_t len;
    unsigned char data[];
};

/* One destination slot: the socket connected to it (or -1) and its FIFO, oldest first. */
struct bus_dest {
    struct bus *bus;
    int slot;
    int fd;
    uint64_t pid;          /* the slot's process when fd was connected */
    struct bus_msg *head, *tail;
    size_t pending_bytes;  /* of the FIFO, headers included: at most BUS_MAX_PENDING */
    ev_io writable;        /* active while the FIFO is not empty */
};

struct bus {
    struct ev_loop *loop;
    bus_msg_cb cb;
    void *arg;
    int slot;
    int fd;                /* ours, bound to our slot's name: receives */
    uid_t uid;             /* the only user whose messages we believe */
    ev_io readable;
    bool dispatching;      /* inside cb: bus_close must leave the free to bus_on_readable */
    bool closed;           /* bus_close was called from inside cb */
    struct bus_stats st;
    char ns[sizeof((struct sockaddr_un *)0)->sun_path];
    unsigned char *buf;    /* BUS_MAX_MSG bytes, for every received message */
    struct bus_dest dest[SB_SLOTS];
};

/* What became of one send(). */
enum bus_io { BUS_IO_SENT, BUS_IO_FULL, BUS_IO_GONE, BUS_IO_FAILED };

/* What one recvmsg() read. */
enum bus_rx { BUS_RX_NONE, BUS_RX_MSG, BUS_RX_TRUNCATED, BUS_RX_FOREIGN };

/* ---- names and sockets ---- */

/* The abstract address of slot under ns: a NUL, then "<ns>/bus/<slot>" with no terminator
 * (an abstract name is exactly as long as the address says). 0 if it does not fit. */
static socklen_t
bus_addr(struct sockaddr_un *a, const char *ns, int slot)
{
    char name[sizeof a->sun_path + 16];
    int n = snprintf(name, sizeof name, "%s/bus/%d", ns, slot);
    if (n < 0 || (size_t)n > sizeof a->sun_path - 1)
        return 0;
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, (size_t)n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* A bigger buffer only lets more messages be in flight, so a refusal is not an error. */
static void
bus_bufsize(int fd, int opt)
{
    int size = BUS_SOCKBUF;
    (void)setsockopt(fd, SOL_SOCKET, opt, &size, sizeof size);
}

static int
bus_socket(void)
{
    return socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* Our receiving socket, bound to slot's name. SO_PASSCRED is set before bind, so that
 * every message that can reach us carries its sender's credentials. */
static int
bus_bind(const char *ns, int slot, char *err, size_t errlen)
{
    struct sockaddr_un a;
    socklen_t alen = bus_addr(&a, ns, slot);
    int on = 1, fd = bus_socket();
    if (fd < 0) {
        errf(err, errlen, "bus: socket: %s", strerror(errno));
        return -1;
    }
    bus_bufsize(fd, SO_RCVBUF);
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) < 0) {
        errf(err, errlen, "bus: SO_PASSCRED: %s", strerror(errno));
    } else if (bind(fd, (struct sockaddr *)&a, alen) < 0) {
        errf(err, errlen, "bus: bind @%s/bus/%d: %s", ns, slot, strerror(errno));
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

static int
bus_drop(struct bus *b)
{
    b->st.dropped++;
    return -1;
}

/* ---- destinations ---- */

static void dest_on_writable(struct ev_loop *loop, ev_io *w, int revents);

static int
dest_connect(struct bus_dest *d, uint64_t pid)
{
    struct sockaddr_un a;
    socklen_t alen = bus_addr(&a, d->bus->ns, d->slot);
    int fd = bus_socket();
    if (fd < 0)
        return -1;
    bus_bufsize(fd, SO_SNDBUF); /* what is in flight is charged to the sender's buffer */
    if (connect(fd, (struct sockaddr *)&a, alen) < 0) {
        close(fd);
        return -1;
    }
    d->fd = fd;
    d->pid = pid;
    ev_io_init(&d->writable, dest_on_writable, fd, EV_WRITE);
    return 0;
}

/* Remove the oldest waiting message; dropped says whether it is lost rather than sent. */
static void
dest_pop(struct bus_dest *d, bool dropped)
{
    struct bus_msg *m = d->head;
    d->head = m->next;
    if (d->head == NULL)
        d->tail = NULL;
    d->pending_bytes -= sizeof *m + m->len;
    d->bus->st.pending--;
    if (dropped)
        d->bus->st.dropped++;
    free(m);
}

/* Forget the connection and drop what waits for it. */
static void
dest_reset(struct bus_dest *d)
{
    if (d->fd < 0)
        return;
    ev_io_stop(d->bus->loop, &d->writable);
    close(d->fd);
    d->fd = -1;
    while (d->head != NULL)
        dest_pop(d, true);
}

/* Hand one message to the kernel, without waiting. */
static enum bus_io
dest_write(struct bus_dest *d, const void *msg, size_t len)
{
    ssize_t n;
    do
        n = send(d->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
        d->bus->st.sent++;
        return BUS_IO_SENT;
    }
    switch (errno) {
    case EAGAIN:
        return BUS_IO_FULL;
    case ECONNREFUSED: /* the process we connected to closed its socket */
    case ENOTCONN:
    case ENOENT:
    case EPIPE:
        return BUS_IO_GONE;
    default: /* EMSGSIZE (a send buffer capped below the message), ENOBUFS, ENOMEM */
        return BUS_IO_FAILED;
    }
}

/* Append a copy of the message to the FIFO, unless that would exceed its bound. */
static int
dest_queue(struct bus_dest *d, const void *msg, size_t len)
{
    struct bus *b = d->bus;
    struct bus_msg *m;
    if (sizeof *m + len > BUS_MAX_PENDING - d->pending_bytes || !(m = malloc(sizeof *m + len)))
        return bus_drop(b);
    m->next = NULL;
    m->len = len;
    if (len > 0)
        memcpy(m->data, msg, len);
    if (d->tail != NULL)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
    d->pending_bytes += sizeof *m + len;
    b->st.pending++;
    ev_io_start(b->loop, &d->writable);
    return 0;
}

/* The destination has room again: send what waits, oldest first, until it is full. */
static void
dest_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct bus_dest *d = container_of(w, struct bus_dest, writable);
    (void)revents;
    while (d->head != NULL) {
        enum bus_io r = dest_write(d, d->head->data, d->head->len);
        if (r == BUS_IO_FULL)
            return;
        if (r == BUS_IO_GONE) {
            dest_reset(d);
            return;
        }
        dest_pop(d, r == BUS_IO_FAILED);
    }
    ev_io_stop(loop, w);
}

/* ---- receiving ---- */

/* Whether the credentials the kernel attached (SO_PASSCRED) are our user's. The control
 * buffer has room for them alone, so a truncated one means a sender that tried to pass
 * more (file descriptors, which the kernel then closes): not one of ours. */
static bool
bus_from_us(const struct bus *b, struct msghdr *mh)
{
    struct cmsghdr *c = CMSG_FIRSTHDR(mh);
    struct ucred cred;
    if ((mh->msg_flags & MSG_CTRUNC) || c == NULL || c->cmsg_level != SOL_SOCKET ||
        c->cmsg_type != SCM_CREDENTIALS || c->cmsg_len != CMSG_LEN(sizeof cred))
        return false;
    memcpy(&cred, CMSG_DATA(c), sizeof cred);
    return cred.uid == b->uid;
}

/* Read one datagram into b->buf. */
static enum bus_rx
bus_recv(struct bus *b, size_t *len)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {.iov_base = b->buf, .iov_len = BUS_MAX_MSG};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do
        n = recvmsg(b->fd, &mh, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return BUS_RX_NONE; /* EAGAIN: a bound datagram socket has no other failure to mind */
    *len = (size_t)n;
    if (!bus_from_us(b, &mh))
        return BUS_RX_FOREIGN;
    return (mh.msg_flags & MSG_TRUNC) ? BUS_RX_TRUNCATED : BUS_RX_MSG;
}

static void bus_free(struct bus *b);

/* Deliver what arrived, up to BUS_READ_BATCH messages: the rest waits for the next loop
 * iteration (the watcher is level-triggered), so that other watchers get their turn. */
static void
bus_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct bus *b = container_of(w, struct bus, readable);
    (void)loop, (void)revents;
    b->dispatching = true;
    for (int i = 0; i < BUS_READ_BATCH && !b->closed; i++) {
        size_t len = 0;
        enum bus_rx r = bus_recv(b, &len);
        if (r == BUS_RX_NONE)
            break;
        if (r == BUS_RX_FOREIGN) {
            b->st.rejected++;
        } else if (r == BUS_RX_TRUNCATED) {
            b->st.dropped++;
        } else {
            b->st.received++;
            b->cb(b->arg, b->buf, len);
        }
    }
    b->dispatching = false;
    if (b->closed)
        bus_free(b);
}

/* ---- the interface ---- */

struct bus *
bus_open(struct ev_loop *loop, const char *ns, int slot, bus_msg_cb cb, void *arg, char *err,
         size_t errlen)
{
    struct sockaddr_un a;
    if (slot < 0 || slot >= SB_SLOTS) {
        errf(err, errlen, "bus: slot %d is not in 0..%d", slot, SB_SLOTS - 1);
        return NULL;
    }
    /* Every slot's name must fit, not only ours: we connect to all of them. */
    if (strlen(ns) >= sizeof a.sun_path || bus_addr(&a, ns, SB_SLOTS - 1) == 0) {
        errf(err, errlen, "bus: namespace \"%s\" is too long for a socket name", ns);
        return NULL;
    }
    struct bus *b = calloc(1, sizeof *b);
    if (b == NULL) {
        errf(err, errlen, "bus: out of memory");
        return NULL;
    }
    *b = (struct bus){.loop = loop, .cb = cb, .arg = arg, .slot = slot, .fd = -1,
                      .uid = getuid()};
    snprintf(b->ns, sizeof b->ns, "%s", ns);
    for (int i = 0; i < SB_SLOTS; i++)
        b->dest[i] = (struct bus_dest){.bus = b, .slot = i, .fd = -1};
    if ((b->buf = malloc(BUS_MAX_MSG)) == NULL)
        errf(err, errlen, "bus: out of memory");
    else
        b->fd = bus_bind(ns, slot, err, errlen);
    if (b->fd < 0) {
        bus_free(b);
        return NULL;
    }
    ev_io_init(&b->readable, bus_on_readable, b->fd, EV_READ);
    ev_io_start(loop, &b->readable);
    return b;
}

int
bus_send(struct bus *b, int slot, uint64_t pid, const void *msg, size_t len)
{
    if (slot < 0 || slot >= SB_SLOTS || len > BUS_MAX_MSG)
        return bus_drop(b);
    struct bus_dest *d = &b->dest[slot];
    if (d->fd >= 0 && d->pid != pid)
        dest_reset(d); /* a new process in the slot: what waited was for the old one */
    if (d->fd < 0 && dest_connect(d, pid) < 0)
        return bus_drop(b);
    if (d->head != NULL)
        return dest_queue(d, msg, len); /* behind the messages that wait, to keep the order */
    switch (dest_write(d, msg, len)) {
    case BUS_IO_SENT:
        return 0;
    case BUS_IO_FULL:
        return dest_queue(d, msg, len);
    case BUS_IO_GONE:
        dest_reset(d);
        return bus_drop(b);
    default:
        return bus_drop(b);
    }
}

int
bus_broadcast(struct bus *b, const struct scoreboard *sb, const void *msg, size_t len)
{
    int dropped = 0, n = sb_nslots(sb);
    for (int i = 0; i < n && i < SB_SLOTS; i++) {
        const struct sb_slot *s = &sb->slot[i];
        uint64_t state = sb_get(&s->state), pid = sb_get(&s->pid);
        if (i == b->slot || pid == 0 || (state != SB_RUNNING && state != SB_DRAINING))
            continue;
        if (bus_send(b, i, pid, msg, len) < 0)
            dropped++;
    }
    return dropped;
}

void
bus_stats(const struct bus *b, struct bus_stats *out)
{
    *out = b->st;
}

/* The one free path, also for a bus that bus_open did not finish. */
static void
bus_free(struct bus *b)
{
    for (int i = 0; i < SB_SLOTS; i++)
        dest_reset(&b->dest[i]);
    if (b->fd >= 0) {
        ev_io_stop(b->loop, &b->readable);
        close(b->fd);
    }
    free(b->buf);
    free(b);
}

void
bus_close(struct bus *b)
{
    if (b == NULL)
        return;
    if (b->dispatching) {
        b->closed = true; /* bus_on_readable frees it once the callback has returned */
        return;
    }
    bus_free(b);
}
