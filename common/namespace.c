/* namespace: the rules of each channel namespace, read from "namespace" directives, and
 * the permission decision made from them (see namespace.h). */
#include "namespace.h"

#include <string.h>

#include "conf.h"
#include "util.h"

#define HISTORY_TTL_DEFAULT_MS ((int64_t)3600 * 1000)   /* 1h */
#define HISTORY_TTL_MAX_MS ((int64_t)720 * 3600 * 1000) /* 30 days, as "720h" below */
#define BLANKS " \t\r\n\v\f"

/* The words of the enumerated keys, in the order of their enums. */
static const char *const subscribe_words[] = {"grant", "any", "owner", "none", NULL};
static const char *const publish_words[] = {"grant", "any", "subscribers", "none", NULL};
static const char *const presence_words[] = {"subscribers", "off", NULL};

static const struct ns_key {
    const char *name;
    unsigned bit;
    const char *expected; /* the allowed values, for messages */
} ns_keys[] = {
    {"subscribe", NS_SET_SUBSCRIBE, "grant, any, owner or none"},
    {"publish", NS_SET_PUBLISH, "grant, any, subscribers or none"},
    {"presence", NS_SET_PRESENCE, "subscribers or off"},
    {"join_events", NS_SET_JOIN_EVENTS, "on or off"},
    {"history", NS_SET_HISTORY, "a number from 0 to 100000"},
    {"history_ttl", NS_SET_HISTORY_TTL, "a duration from 1ms to 720h"},
};

_Static_assert(NS_HISTORY_MAX == 100000, "the message of history gives its bound");

bool
ns_channel_ok(const char *name, size_t len)
{
    return name_chars_ok(name, len, NS_CHANNEL_MAX);
}

/* A namespace's name is what may stand before a channel's first ':'. */
static bool
ns_name_ok(const char *name)
{
    size_t len = strlen(name);
    return name_chars_ok(name, len, NS_NAME_MAX) && memchr(name, ':', len) == NULL;
}

static void
rules_builtin(struct ns_rules *r, const char *name)
{
    memset(r, 0, sizeof *r);
    memcpy(r->name, name, strlen(name) + 1); /* the caller has checked its length */
    r->subscribe = NS_SUBSCRIBE_GRANT;
    r->publish = NS_PUBLISH_GRANT;
    r->presence = NS_PRESENCE_SUBSCRIBERS;
    r->join_events = true;
    r->history = 0;
    r->history_ttl_ms = HISTORY_TTL_DEFAULT_MS;
}

void
ns_table_init(struct ns_table *t)
{
    memset(t, 0, sizeof *t);
    rules_builtin(&t->v[0], "default");
    t->n = 1;
}

/* ---- One directive ---- */

static int
parse_word(const char *v, const char *const *words, uint8_t *out)
{
    for (uint8_t i = 0; words[i] != NULL; i++) {
        if (strcmp(v, words[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static int
parse_history(const char *v, int *out)
{
    int64_t n;
    if (conf_parse_number(v, &n) < 0 || n > NS_HISTORY_MAX)
        return -1;
    *out = (int)n;
    return 0;
}

static int
parse_history_ttl(const char *v, int64_t *out)
{
    int64_t ms;
    if (conf_parse_duration_ms(v, &ms) < 0 || ms < 1 || ms > HISTORY_TTL_MAX_MS)
        return -1;
    *out = ms;
    return 0;
}

/* Set key k of r from v. 0, or -1 when v is not one of its values. */
static int
set_key(struct ns_rules *r, const struct ns_key *k, const char *v)
{
    switch (k->bit) {
    case NS_SET_SUBSCRIBE:
        return parse_word(v, subscribe_words, &r->subscribe);
    case NS_SET_PUBLISH:
        return parse_word(v, publish_words, &r->publish);
    case NS_SET_PRESENCE:
        return parse_word(v, presence_words, &r->presence);
    case NS_SET_JOIN_EVENTS:
        return conf_parse_bool(v, &r->join_events);
    case NS_SET_HISTORY:
        return parse_history(v, &r->history);
    case NS_SET_HISTORY_TTL:
        return parse_history_ttl(v, &r->history_ttl_ms);
    default:
        return -1;
    }
}

static const struct ns_key *
find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(ns_keys); i++)
        if (strlen(ns_keys[i].name) == len && memcmp(ns_keys[i].name, name, len) == 0)
            return &ns_keys[i];
    return NULL;
}

/* The next blank-separated word at *pos, cut in place; NULL at the end. */
static char *
next_word(char **pos)
{
    char *w = *pos + strspn(*pos, BLANKS);
    if (*w == '\0')
        return NULL;
    char *end = w + strcspn(w, BLANKS);
    *pos = *end != '\0' ? end + 1 : end;
    *end = '\0';
    return w;
}

/* One key=value word of namespace r. */
static int
parse_pair(struct ns_rules *r, char *word, char *err, size_t errlen)
{
    char *eq = strchr(word, '=');
    if (eq == NULL) {
        errf(err, errlen, "expected key=value in namespace \"%s\", not \"%s\"", r->name, word);
        return -1;
    }
    const struct ns_key *k = find_key(word, (size_t)(eq - word));
    if (k == NULL) {
        errf(err, errlen,
             "unknown key \"%.*s\" (in \"%s\") in namespace \"%s\": expected subscribe, "
             "publish, presence, join_events, history or history_ttl",
             (int)(eq - word), word, word, r->name);
        return -1;
    }
    if (r->set & k->bit) {
        errf(err, errlen, "\"%s\" is given twice in namespace \"%s\"", k->name, r->name);
        return -1;
    }
    if (set_key(r, k, eq + 1) < 0) {
        errf(err, errlen, "invalid value \"%s\" for \"%s\" in namespace \"%s\": expected %s",
             eq + 1, k->name, r->name, k->expected);
        return -1;
    }
    r->set |= k->bit;
    return 0;
}

/* Where the namespace called name is in t, or -1. */
static int
find_namespace(const struct ns_table *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return i;
    return -1;
}

int
ns_table_add(struct ns_table *t, const char *value, char *err, size_t errlen)
{
    char buf[1024];
    size_t len = strlen(value);
    if (len >= sizeof buf) {
        errf(err, errlen, "namespace directive is too long (at most %zu bytes)", sizeof buf - 1);
        return -1;
    }
    memcpy(buf, value, len + 1);
    if (memchr(buf, ';', len) != NULL) {
        errf(err, errlen, "one namespace per directive: \";\" separates namespaces only in "
                          "SESSIOND_NAMESPACE");
        return -1;
    }
    char *pos = buf, *name = next_word(&pos);
    if (name == NULL) {
        errf(err, errlen, "missing namespace name (namespace NAME key=value...)");
        return -1;
    }
    if (!ns_name_ok(name)) {
        errf(err, errlen,
             "invalid namespace name \"%s\": 1-%d bytes of A-Z a-z 0-9 and _ . @ - (no ':')",
             name, NS_NAME_MAX);
        return -1;
    }
    /* Built up aside, so that a bad key leaves t as it was. */
    struct ns_rules r;
    rules_builtin(&r, name);
    for (char *w; (w = next_word(&pos)) != NULL;)
        if (parse_pair(&r, w, err, errlen) < 0)
            return -1;
    int i = find_namespace(t, name);
    if (i < 0) {
        if (t->n >= NS_MAX) {
            errf(err, errlen, "too many namespaces (at most %d, default included)", NS_MAX);
            return -1;
        }
        i = t->n++;
    }
    t->v[i] = r;
    return 0;
}

void
ns_table_finish(struct ns_table *t)
{
    const struct ns_rules *d = &t->v[0];
    for (int i = 1; i < t->n; i++) {
        struct ns_rules *r = &t->v[i];
        if (!(r->set & NS_SET_SUBSCRIBE))
            r->subscribe = d->subscribe;
        if (!(r->set & NS_SET_PUBLISH))
            r->publish = d->publish;
        if (!(r->set & NS_SET_PRESENCE))
            r->presence = d->presence;
        if (!(r->set & NS_SET_JOIN_EVENTS))
            r->join_events = d->join_events;
        if (!(r->set & NS_SET_HISTORY))
            r->history = d->history;
        if (!(r->set & NS_SET_HISTORY_TTL))
            r->history_ttl_ms = d->history_ttl_ms;
    }
}

/* ---- Decisions ---- */

const struct ns_rules *
ns_of(const struct ns_table *t, const char *channel, size_t len)
{
    const char *colon = len > 0 ? memchr(channel, ':', len) : NULL;
    if (colon == NULL)
        return &t->v[0];
    size_t n = (size_t)(colon - channel);
    for (int i = 1; i < t->n; i++)
        if (strlen(t->v[i].name) == n && memcmp(t->v[i].name, channel, n) == 0)
            return &t->v[i];
    return &t->v[0];
}

bool
ns_grant_match(const char *pattern, size_t plen, const char *channel, size_t len)
{
    if (plen == 0 || len == 0)
        return false;
    if (pattern[plen - 1] == '*')
        return len >= plen - 1 && memcmp(pattern, channel, plen - 1) == 0;
    return plen == len && memcmp(pattern, channel, len) == 0;
}

bool
ns_pattern_ok(const char *pattern, size_t len)
{
    if (len > 0 && pattern[len - 1] == '*')
        return len == 1 || name_chars_ok(pattern, len - 1, NS_CHANNEL_MAX - 1);
    return ns_channel_ok(pattern, len);
}

bool
ns_owner_is(const char *channel, size_t len, const char *user)
{
    const char *colon = len > 0 ? memchr(channel, ':', len) : NULL;
    if (colon == NULL || user == NULL)
        return false;
    size_t n = len - (size_t)(colon + 1 - channel);
    return n > 0 && strlen(user) == n && memcmp(colon + 1, user, n) == 0;
}

static bool
may_subscribe(const struct ns_rules *r, const char *channel, size_t len,
              const struct ns_subject *s)
{
    switch (r->subscribe) {
    case NS_SUBSCRIBE_GRANT:
        return s->granted;
    case NS_SUBSCRIBE_ANY:
        return true;
    case NS_SUBSCRIBE_OWNER:
        /* The owner alone: a grant does not open another user's channel. */
        return ns_owner_is(channel, len, s->user);
    default:
        return false;
    }
}

static bool
may_publish(const struct ns_rules *r, const struct ns_subject *s)
{
    switch (r->publish) {
    case NS_PUBLISH_GRANT:
        return s->granted;
    case NS_PUBLISH_ANY:
        return true;
    case NS_PUBLISH_SUBSCRIBERS:
        return s->subscribed;
    default:
        return false;
    }
}

bool
ns_allows(const struct ns_rules *r, enum ns_op op, const char *channel, size_t len,
          const struct ns_subject *s)
{
    switch (op) {
    case NS_OP_SUBSCRIBE:
        return may_subscribe(r, channel, len, s);
    case NS_OP_PUBLISH:
        return may_publish(r, s);
    case NS_OP_PRESENCE:
        return r->presence == NS_PRESENCE_SUBSCRIBERS && s->subscribed;
    default:
        return false; /* an op this table does not know is refused */
    }
}

const char *
ns_op_key(enum ns_op op)
{
    return op == NS_OP_SUBSCRIBE ? "subscribe" : op == NS_OP_PUBLISH ? "publish" : "presence";
}

const char *
ns_rule_word(const struct ns_rules *r, enum ns_op op)
{
    const char *const *words = op == NS_OP_SUBSCRIBE ? subscribe_words
                               : op == NS_OP_PUBLISH ? publish_words
                                                     : presence_words;
    unsigned v = op == NS_OP_SUBSCRIBE ? r->subscribe
                 : op == NS_OP_PUBLISH ? r->publish
                                       : r->presence;
    for (unsigned i = 0; words[i] != NULL; i++)
        if (i == v)
            return words[i];
    return "?";
}
