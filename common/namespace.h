/* namespace: who may do what on a channel.
 *
 * A channel's namespace is the part of its name before the first ':' ("user:alice" is in
 * "user"); a name without ':' is in "default". Each "namespace NAME key=value..."
 * directive sets one namespace's rules; a namespace without a directive follows
 * "default", and "namespace default ..." replaces the built-in default rules. A key that a
 * directive leaves out takes the value of the (configured) default namespace.
 *
 * The decision is a pure function of the rules, the channel, and what the asking client
 * holds (its user, whether its session grants the channel, whether it is subscribed), so
 * that the table is tested on its own (test/unit/test_namespace.c). */
#ifndef SESSIOND_NAMESPACE_H
#define SESSIOND_NAMESPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NS_NAME_MAX 64        /* bytes of a namespace's name */
#define NS_MAX 64             /* namespaces in a config, default included */
#define NS_HISTORY_MAX 100000 /* kept per channel: one channel's share stays finite */
#define NS_GRANTS_MAX 64      /* patterns in a session's channels, and in its subscribe */
#define NS_CHANNEL_MAX 128    /* bytes of a channel's name */

enum ns_subscribe { NS_SUBSCRIBE_GRANT, NS_SUBSCRIBE_ANY, NS_SUBSCRIBE_OWNER, NS_SUBSCRIBE_NONE };
enum ns_publish { NS_PUBLISH_GRANT, NS_PUBLISH_ANY, NS_PUBLISH_SUBSCRIBERS, NS_PUBLISH_NONE };
enum ns_presence { NS_PRESENCE_SUBSCRIBERS, NS_PRESENCE_OFF };

struct ns_rules {
    char name[NS_NAME_MAX + 1];
    uint8_t subscribe;      /* enum ns_subscribe */
    uint8_t publish;        /* enum ns_publish */
    uint8_t presence;       /* enum ns_presence */
    bool join_events;       /* join and leave pushes */
    int history;            /* messages kept per channel; 0: no history */
    int64_t history_ttl_ms; /* how long each is kept */
    unsigned set;           /* NS_SET_* bits: the keys its directive gave */
};

enum {
    NS_SET_SUBSCRIBE = 1 << 0,
    NS_SET_PUBLISH = 1 << 1,
    NS_SET_PRESENCE = 1 << 2,
    NS_SET_JOIN_EVENTS = 1 << 3,
    NS_SET_HISTORY = 1 << 4,
    NS_SET_HISTORY_TTL = 1 << 5,
};

/* The namespaces of a config: v[0] is always "default". */
struct ns_table {
    struct ns_rules v[NS_MAX];
    int n;
};

/* Whether name is a channel name: 1-NS_CHANNEL_MAX bytes of [A-Za-z0-9_.:@-] (API.md).
 * The one check of channel names, for the worker and the grant patterns alike. */
bool ns_channel_ok(const char *name, size_t len);

/* The built-in table: only default, subscribe=grant publish=grant presence=subscribers
 * join_events=on history=0 history_ttl=1h. */
void ns_table_init(struct ns_table *t);

/* One directive's value, "NAME key=value...": added to t, or replacing the namespace of
 * that name given earlier (the last directive for a name wins, as a file read top to
 * bottom; a key it leaves out is not kept from the earlier one). NAME is 1-NS_NAME_MAX
 * bytes of [A-Za-z0-9_.@-]; the keys are subscribe=grant|any|owner|none,
 * publish=grant|any|subscribers|none, presence=subscribers|off, join_events=on|off,
 * history=0..NS_HISTORY_MAX and history_ttl=DURATION (1ms to 720h), each at most once.
 * 0, or -1 with err (a bad name, key or value, or too many namespaces), t unchanged. */
int ns_table_add(struct ns_table *t, const char *value, char *err, size_t errlen);

/* Once every source is read: keys that a directive left out take default's values.
 * It may run again after more directives, since the set bits stay what the directives
 * gave (conf runs it after each one, so that the table in a struct conf is always
 * finished). */
void ns_table_finish(struct ns_table *t);

/* The rules of channel (len bytes, not NUL-terminated): those of the namespace named
 * before its first ':', else (no ':', or a namespace without a directive) v[0]. */
const struct ns_rules *ns_of(const struct ns_table *t, const char *channel, size_t len);

/* A grant pattern (a channel name, or a prefix ending in '*') matches channel: the
 * same bytes, or channel starts with what is before the '*' ("*" matches any channel).
 * An empty pattern or channel matches nothing. */
bool ns_grant_match(const char *pattern, size_t plen, const char *channel, size_t len);

/* Whether a string is a valid grant pattern: a channel name, or 0-127 bytes of the channel
 * alphabet followed by '*'. */
bool ns_pattern_ok(const char *pattern, size_t len);

/* The channel names user as its owner: what follows the first ':' is user, whole
 * ("user:alice" is alice's, not alice2's; "user:" and "useralice" are nobody's). */
bool ns_owner_is(const char *channel, size_t len, const char *user);

enum ns_op { NS_OP_SUBSCRIBE, NS_OP_PUBLISH, NS_OP_PRESENCE };

/* What the asking client holds. */
struct ns_subject {
    const char *user;
    bool granted;    /* a grant of its session matches the channel (or a server-side one) */
    bool subscribed; /* it is subscribed to the channel now */
};

/* Whether op on channel is allowed under r (from ns_of):
 *   subscribe: grant -> s->granted; any -> true; owner -> ns_owner_is(channel, s->user)
 *              (a grant does not count); none -> false
 *   publish:   grant -> s->granted; any -> true; subscribers -> s->subscribed; none -> false
 *   presence:  subscribers -> s->subscribed; off -> false
 * Server-side subscriptions are applied without asking (they are allowed in any
 * namespace); client_publish off is applied by the caller, as publish=none everywhere. */
bool ns_allows(const struct ns_rules *r, enum ns_op op, const char *channel, size_t len,
               const struct ns_subject *s);

/* The op's key ("subscribe", "publish", "presence") and its value under r ("grant"...),
 * as a directive writes them: for messages that say why an op was refused. */
const char *ns_op_key(enum ns_op op);
const char *ns_rule_word(const struct ns_rules *r, enum ns_op op);

#endif
