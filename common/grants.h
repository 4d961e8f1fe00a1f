/* grants: what a session lets its sockets into, as the channels module keeps it.
 *
 * A session's "channels" (grant patterns: channel names, or prefixes ending in '*') and
 * "subscribe" (channels every socket of the session is put in by the server, which count
 * as granted too) arrive from the store as two JSON arrays. A socket keeps them packed in
 * one allocation, each entry a length byte and its bytes, and none at all when the
 * session has neither (most sessions under "subscribe=any"). */
#ifndef SESSIOND_GRANTS_H
#define SESSIOND_GRANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct grants {
    uint8_t nchannels, nsubscribe;
    char p[]; /* nchannels patterns, then nsubscribe channel names */
};

/* From the two arrays (either may be length 0); entries that are not valid patterns
 * (channels) or channel names (subscribe) are skipped, as are entries past
 * NS_GRANTS_MAX. NULL with *err 0 when there is nothing to keep; NULL with *err -1 when
 * the JSON cannot be read or memory runs out. Freed with free(). */
struct grants *grants_parse(const char *channels, size_t channels_len, const char *subscribe,
                            size_t subscribe_len, int *err);

/* A pattern of g matches channel, or g subscribes its sockets to it. g may be NULL. */
bool grants_allow(const struct grants *g, const char *channel, size_t len);

/* g subscribes its sockets to channel. g may be NULL. */
bool grants_subscribes(const struct grants *g, const char *channel, size_t len);

/* The i-th channel g subscribes to (i < g->nsubscribe). */
const char *grants_subscribe_at(const struct grants *g, unsigned i, size_t *len);

#endif
