/* bus: opaque messages between the worker processes of one sessiond instance.
 *
 * It carries WebSocket publishes (and presence changes) from the worker that took them to
 * every sibling, so it is built for throughput on one machine: each worker slot of the
 * scoreboard has one Unix datagram socket bound in the abstract namespace under
 * "<ns>/bus/<slot>", and a sender keeps one socket connected to each destination it has
 * sent to, so that a message costs one send() per destination. Nothing ever blocks the
 * loop: when a destination's receive queue is full the message waits in a bounded queue
 * of that destination, flushed when the kernel says there is room again.
 *
 * No message is lost silently: bus_send returns -1 for a message it had to drop, and
 * every message dropped anywhere (queue bound reached, destination gone or replaced with
 * messages still queued, truncated on receipt) is counted in bus_stats. What the kernel
 * accepted ("sent") is lost only if the receiving process dies before reading it.
 *
 * Abstract socket names are open to every process of the network namespace, so the
 * receiver checks the sender's credentials (SO_PASSCRED) on every message and accepts only
 * those from its own user; the others are counted as rejected, never delivered. */
#ifndef SESSIOND_BUS_H
#define SESSIOND_BUS_H

#include <stddef.h>
#include <stdint.h>

#define BUS_MAX_MSG ((size_t)256 * 1024)
/* Bytes of messages that may wait for one destination; beyond, new ones are dropped. */
#define BUS_MAX_PENDING ((size_t)8 * 1024 * 1024)
/* Messages delivered per wake-up, so that one busy sender cannot starve the loop. */
#define BUS_READ_BATCH 64

struct bus;
struct ev_loop;
struct scoreboard;

/* One message; msg is the bus's buffer, valid only during the call. The callback may send
 * on the bus and may close it (the bus is then freed once the callback has returned). */
typedef void (*bus_msg_cb)(void *arg, const void *msg, size_t len);

struct bus_stats {
    uint64_t sent;     /* accepted by the kernel for a destination */
    uint64_t received; /* delivered to the callback */
    uint64_t dropped;  /* lost here, on either side, for any of the reasons above */
    uint64_t rejected; /* received from another user's process, and ignored */
    uint64_t pending;  /* waiting in the destination queues now */
};

/* Bind slot's socket under namespace ns (e.g. "sessiond/<master pid>") and start receiving
 * on loop. NULL with err (bad slot, name too long, name taken, ...). */
struct bus *bus_open(struct ev_loop *loop, const char *ns, int slot, bus_msg_cb cb, void *arg,
                     char *err, size_t errlen);

/* Send to one slot, whose process has pid (the slot's pid in the scoreboard): when it
 * differs from the pid this destination was connected for, the slot has a new process, and
 * the bus reconnects (dropping what was queued for the old one). Returns 0 if the message
 * was sent or queued, -1 if it was dropped (and counted). A queued message may still be
 * dropped later, if the destination goes away: the stats count it then. */
int bus_send(struct bus *b, int slot, uint64_t pid, const void *msg, size_t len);

/* Send to every slot of sb whose state is SB_RUNNING or SB_DRAINING and whose pid is not
 * 0, except our own. Returns how many destinations dropped it (0 = delivered or queued
 * everywhere). */
int bus_broadcast(struct bus *b, const struct scoreboard *sb, const void *msg, size_t len);

void bus_stats(const struct bus *b, struct bus_stats *out);

/* Stop watchers, close sockets, free everything (pending messages are dropped). Before the
 * loop is destroyed. From inside the bus's own callback, the free waits for its return. */
void bus_close(struct bus *b);

#endif
