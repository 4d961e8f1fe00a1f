/* hub: the channels of one worker, and which of its WebSocket connections listen to each.
 *
 * A publish walks one channel's members; a connection that closes leaves each of its
 * channels in O(1) per channel, because every membership knows its place in its
 * channel's array (a leave moves the last member into the hole). Channel names come from
 * clients, so the table hashes them with a per-process random key. Pure bookkeeping: no
 * I/O, nothing of WebSocket framing. */
#ifndef SESSIOND_HUB_H
#define SESSIOND_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "namespace.h"

#define HUB_CHANNEL_MAX NS_CHANNEL_MAX

struct hub;
struct hub_member;

struct hub *hub_new(void);
/* Free the table and every membership still in it. */
void hub_free(struct hub *h);

/* Add sub (the caller's connection) to a channel, creating the channel; the caller keeps
 * the membership to leave with, and must not join the same channel twice. NULL when out
 * of memory. */
struct hub_member *hub_join(struct hub *h, const char *name, size_t len, void *sub);
/* Leave (the membership is freed; an empty channel is removed). */
void hub_leave(struct hub *h, struct hub_member *m);

/* A channel's members as an array (NULL and 0 for a channel nobody is in). The array
 * is valid until the next join or leave on this hub. */
struct hub_member *const *hub_members(const struct hub *h, const char *name, size_t len,
                                      size_t *n);
/* The subs of a channel's members, in the order of hub_members, valid as long: what a
 * fan-out walks, one pointer per member and no membership to read. */
void *const *hub_subs(const struct hub *h, const char *name, size_t len, size_t *n);
/* With history, the newest offset a channel's members were sent here (0 at its creation):
 * the channel's own counter, NULL for a channel nobody is in. */
uint64_t *hub_offset(const struct hub *h, const char *name, size_t len);
void *hub_member_sub(const struct hub_member *m);
/* The channel name of a membership (not NUL-terminated; length in *len). */
const char *hub_member_channel(const struct hub_member *m, size_t *len);

/* How many channels have at least one member. */
size_t hub_nchannels(const struct hub *h);
/* Call fn for every channel with members (the hub must not change meanwhile). */
void hub_each_channel(const struct hub *h, void (*fn)(void *arg, const char *name, size_t len),
                      void *arg);

#endif
