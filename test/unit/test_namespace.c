/* namespace: the namespace directive's parser, the inheritance from default, and the
 * permission decision as a table. */
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "namespace.h"
#include "suites.h"

/* ---- helpers ---- */

static void
add_ok(struct ns_table *t, const char *value)
{
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(ns_table_add(t, value, err, sizeof err) == 0, "refused \"%s\": %s", value,
                  err);
}

/* value is refused with exactly want, and t is left as it was. */
static void
add_fails(struct ns_table *t, const char *value, const char *want)
{
    struct ns_table before = *t;
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(ns_table_add(t, value, err, sizeof err) == -1, "accepted \"%s\"", value);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(memcmp(t, &before, sizeof before), 0);
}

static const struct ns_rules *
rules_of(const struct ns_table *t, const char *channel)
{
    return ns_of(t, channel, strlen(channel));
}

static void
builtin_is(const struct ns_rules *r)
{
    ck_assert_int_eq(r->subscribe, NS_SUBSCRIBE_GRANT);
    ck_assert_int_eq(r->publish, NS_PUBLISH_GRANT);
    ck_assert_int_eq(r->presence, NS_PRESENCE_SUBSCRIBERS);
    ck_assert(r->join_events);
    ck_assert_int_eq(r->history, 0);
    ck_assert_int_eq(r->history_ttl_ms, 3600000);
}

/* ---- the table and its parser ---- */

START_TEST(builtin_default)
{
    struct ns_table t;
    memset(&t, 0x5a, sizeof t);
    ns_table_init(&t);
    ck_assert_int_eq(t.n, 1);
    ck_assert_str_eq(t.v[0].name, "default");
    ck_assert_uint_eq(t.v[0].set, 0);
    builtin_is(&t.v[0]);
    ns_table_finish(&t);
    builtin_is(&t.v[0]);
}
END_TEST

START_TEST(every_key)
{
    static const struct {
        const char *value;
        int subscribe, publish, presence, join_events, history;
        long long ttl;
        unsigned set;
    } cases[] = {
        {"a subscribe=grant", NS_SUBSCRIBE_GRANT, 0, 0, 1, 0, 3600000, NS_SET_SUBSCRIBE},
        {"a subscribe=any", NS_SUBSCRIBE_ANY, 0, 0, 1, 0, 3600000, NS_SET_SUBSCRIBE},
        {"a subscribe=owner", NS_SUBSCRIBE_OWNER, 0, 0, 1, 0, 3600000, NS_SET_SUBSCRIBE},
        {"a subscribe=none", NS_SUBSCRIBE_NONE, 0, 0, 1, 0, 3600000, NS_SET_SUBSCRIBE},
        {"a publish=grant", 0, NS_PUBLISH_GRANT, 0, 1, 0, 3600000, NS_SET_PUBLISH},
        {"a publish=any", 0, NS_PUBLISH_ANY, 0, 1, 0, 3600000, NS_SET_PUBLISH},
        {"a publish=subscribers", 0, NS_PUBLISH_SUBSCRIBERS, 0, 1, 0, 3600000, NS_SET_PUBLISH},
        {"a publish=none", 0, NS_PUBLISH_NONE, 0, 1, 0, 3600000, NS_SET_PUBLISH},
        {"a presence=subscribers", 0, 0, NS_PRESENCE_SUBSCRIBERS, 1, 0, 3600000,
         NS_SET_PRESENCE},
        {"a presence=off", 0, 0, NS_PRESENCE_OFF, 1, 0, 3600000, NS_SET_PRESENCE},
        {"a join_events=off", 0, 0, 0, 0, 0, 3600000, NS_SET_JOIN_EVENTS},
        {"a join_events=on", 0, 0, 0, 1, 0, 3600000, NS_SET_JOIN_EVENTS},
        {"a join_events=no", 0, 0, 0, 0, 0, 3600000, NS_SET_JOIN_EVENTS}, /* any boolean */
        {"a history=0", 0, 0, 0, 1, 0, 3600000, NS_SET_HISTORY},
        {"a history=100", 0, 0, 0, 1, 100, 3600000, NS_SET_HISTORY},
        {"a history=100000", 0, 0, 0, 1, 100000, 3600000, NS_SET_HISTORY},
        {"a history_ttl=1ms", 0, 0, 0, 1, 0, 1, NS_SET_HISTORY_TTL},
        {"a history_ttl=90", 0, 0, 0, 1, 0, 90000, NS_SET_HISTORY_TTL},
        {"a history_ttl=5m", 0, 0, 0, 1, 0, 300000, NS_SET_HISTORY_TTL},
        {"a history_ttl=720h", 0, 0, 0, 1, 0, 2592000000LL, NS_SET_HISTORY_TTL},
        {"a  subscribe=any\tpublish=none presence=off join_events=off history=7 "
         "history_ttl=2s ",
         NS_SUBSCRIBE_ANY, NS_PUBLISH_NONE, NS_PRESENCE_OFF, 0, 7, 2000,
         NS_SET_SUBSCRIBE | NS_SET_PUBLISH | NS_SET_PRESENCE | NS_SET_JOIN_EVENTS |
             NS_SET_HISTORY | NS_SET_HISTORY_TTL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ns_table t;
        ns_table_init(&t);
        add_ok(&t, cases[i].value);
        ck_assert_int_eq(t.n, 2);
        const struct ns_rules *r = &t.v[1];
        ck_assert_str_eq(r->name, "a");
        ck_assert_msg(r->subscribe == cases[i].subscribe, "%s", cases[i].value);
        ck_assert_msg(r->publish == cases[i].publish, "%s", cases[i].value);
        ck_assert_msg(r->presence == cases[i].presence, "%s", cases[i].value);
        ck_assert_msg(r->join_events == (cases[i].join_events != 0), "%s", cases[i].value);
        ck_assert_msg(r->history == cases[i].history, "%s", cases[i].value);
        ck_assert_msg(r->history_ttl_ms == cases[i].ttl, "%s", cases[i].value);
        ck_assert_msg(r->set == cases[i].set, "%s", cases[i].value);
    }
}
END_TEST

START_TEST(bad_keys_and_values)
{
    static const struct {
        const char *value, *want;
    } cases[] = {
        {"a subscribe=all", "invalid value \"all\" for \"subscribe\" in namespace \"a\": "
                            "expected grant, any, owner or none"},
        {"a subscribe=", "invalid value \"\" for \"subscribe\" in namespace \"a\": expected "
                         "grant, any, owner or none"},
        {"a subscribe=Any", "invalid value \"Any\" for \"subscribe\" in namespace \"a\": "
                            "expected grant, any, owner or none"},
        {"a subscribe=subscribers", "invalid value \"subscribers\" for \"subscribe\" in "
                                    "namespace \"a\": expected grant, any, owner or none"},
        {"a publish=owner", "invalid value \"owner\" for \"publish\" in namespace \"a\": "
                            "expected grant, any, subscribers or none"},
        {"a presence=any", "invalid value \"any\" for \"presence\" in namespace \"a\": "
                           "expected subscribers or off"},
        {"a presence=on", "invalid value \"on\" for \"presence\" in namespace \"a\": "
                          "expected subscribers or off"},
        {"a join_events=maybe", "invalid value \"maybe\" for \"join_events\" in namespace "
                                "\"a\": expected on or off"},
        {"a history=100001", "invalid value \"100001\" for \"history\" in namespace \"a\": "
                             "expected a number from 0 to 100000"},
        {"a history=-1", "invalid value \"-1\" for \"history\" in namespace \"a\": expected "
                         "a number from 0 to 100000"},
        {"a history=1k", "invalid value \"1k\" for \"history\" in namespace \"a\": expected "
                         "a number from 0 to 100000"},
        {"a history=", "invalid value \"\" for \"history\" in namespace \"a\": expected a "
                       "number from 0 to 100000"},
        {"a history=99999999999999999999", "invalid value \"99999999999999999999\" for "
                                           "\"history\" in namespace \"a\": expected a number "
                                           "from 0 to 100000"},
        {"a history_ttl=0", "invalid value \"0\" for \"history_ttl\" in namespace \"a\": "
                            "expected a duration from 1ms to 720h"},
        {"a history_ttl=721h", "invalid value \"721h\" for \"history_ttl\" in namespace "
                               "\"a\": expected a duration from 1ms to 720h"},
        {"a history_ttl=1d", "invalid value \"1d\" for \"history_ttl\" in namespace \"a\": "
                             "expected a duration from 1ms to 720h"},
        {"a history_ttl=-5s", "invalid value \"-5s\" for \"history_ttl\" in namespace \"a\": "
                              "expected a duration from 1ms to 720h"},
        {"a frob=1", "unknown key \"frob\" (in \"frob=1\") in namespace \"a\": expected "
                     "subscribe, publish, presence, join_events, history or history_ttl"},
        {"a Subscribe=any", "unknown key \"Subscribe\" (in \"Subscribe=any\") in namespace "
                            "\"a\": expected subscribe, publish, presence, join_events, "
                            "history or history_ttl"},
        {"a =any", "unknown key \"\" (in \"=any\") in namespace \"a\": expected subscribe, "
                   "publish, presence, join_events, history or history_ttl"},
        {"a subscribe", "expected key=value in namespace \"a\", not \"subscribe\""},
        {"a subscribe = any", "expected key=value in namespace \"a\", not \"subscribe\""},
        {"a subscribe=any subscribe=any", "\"subscribe\" is given twice in namespace \"a\""},
        {"a history=1 publish=any history=2", "\"history\" is given twice in namespace \"a\""},
        {"a subscribe=any; b subscribe=any", "one namespace per directive: \";\" separates "
                                             "namespaces only in SESSIOND_NAMESPACE"},
    };
    struct ns_table t;
    ns_table_init(&t);
    add_ok(&t, "a publish=any"); /* a refused directive does not touch the one before */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        add_fails(&t, cases[i].value, cases[i].want);
    ck_assert_int_eq(t.n, 2);
    ck_assert_int_eq(t.v[1].publish, NS_PUBLISH_ANY);
}
END_TEST

START_TEST(names)
{
    struct ns_table t;
    char name[NS_NAME_MAX + 2], value[NS_NAME_MAX + 32], want[256];
    ns_table_init(&t);
    add_ok(&t, "user");
    add_ok(&t, "A-z_0.9@x");
    memset(name, 'n', NS_NAME_MAX);
    name[NS_NAME_MAX] = '\0';
    add_ok(&t, name);
    ck_assert_int_eq(t.n, 4);
    ck_assert_str_eq(t.v[3].name, name);

    static const char *const bad[] = {"us:er", "a/b", "caf\xc3\xa9", "a*", "a\"b", ":"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(want, sizeof want,
                 "invalid namespace name \"%s\": 1-64 bytes of A-Z a-z 0-9 and _ . @ - "
                 "(no ':')",
                 bad[i]);
        snprintf(value, sizeof value, "%s subscribe=any", bad[i]);
        add_fails(&t, value, want);
    }
    name[NS_NAME_MAX] = 'n';
    name[NS_NAME_MAX + 1] = '\0';
    snprintf(want, sizeof want,
             "invalid namespace name \"%s\": 1-64 bytes of A-Z a-z 0-9 and _ . @ - (no ':')",
             name);
    add_fails(&t, name, want);
    add_fails(&t, "", "missing namespace name (namespace NAME key=value...)");
    add_fails(&t, " \t ", "missing namespace name (namespace NAME key=value...)");
    /* A name is not a key: "subscribe=any" alone is a bad name, not a default's key. */
    add_fails(&t, "subscribe=any",
              "invalid namespace name \"subscribe=any\": 1-64 bytes of A-Z a-z 0-9 and _ . @ "
              "- (no ':')");
    char huge[1100];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    add_fails(&t, huge, "namespace directive is too long (at most 1023 bytes)");
}
END_TEST

START_TEST(last_directive_wins)
{
    struct ns_table t;
    ns_table_init(&t);
    add_ok(&t, "room subscribe=any publish=any history=10");
    add_ok(&t, "user subscribe=owner");
    add_ok(&t, "room publish=none");
    ck_assert_int_eq(t.n, 3);
    ck_assert_str_eq(t.v[1].name, "room"); /* replaced where it was */
    ck_assert_int_eq(t.v[1].publish, NS_PUBLISH_NONE);
    ck_assert_uint_eq(t.v[1].set, NS_SET_PUBLISH); /* nothing kept from the first one */
    ns_table_finish(&t);
    ck_assert_int_eq(t.v[1].subscribe, NS_SUBSCRIBE_GRANT);
    ck_assert_int_eq(t.v[1].history, 0);

    /* "namespace default" replaces the built-in rules, and stays v[0]. */
    add_ok(&t, "default subscribe=any");
    ck_assert_int_eq(t.n, 3);
    ck_assert_str_eq(t.v[0].name, "default");
    ck_assert_int_eq(t.v[0].subscribe, NS_SUBSCRIBE_ANY);
    ck_assert_int_eq(t.v[0].publish, NS_PUBLISH_GRANT); /* unset: the built-in value */
    add_ok(&t, "default");
    builtin_is(&t.v[0]);
    ck_assert_int_eq(t.n, 3);
}
END_TEST

START_TEST(too_many)
{
    struct ns_table t;
    char value[32];
    ns_table_init(&t);
    for (int i = 1; i < NS_MAX; i++) {
        snprintf(value, sizeof value, "ns%d publish=any", i);
        add_ok(&t, value);
    }
    ck_assert_int_eq(t.n, NS_MAX);
    add_fails(&t, "one-more", "too many namespaces (at most 64, default included)");
    /* Replacing one that is there needs no room. */
    add_ok(&t, "ns7 publish=none");
    add_ok(&t, "default publish=none");
    ck_assert_int_eq(t.n, NS_MAX);
    ck_assert_int_eq(t.v[7].publish, NS_PUBLISH_NONE);
}
END_TEST

START_TEST(finish_inherits_from_default)
{
    struct ns_table t;
    ns_table_init(&t);
    add_ok(&t, "user subscribe=owner publish=none");
    add_ok(&t, "chat history=50");
    add_ok(&t, "default subscribe=any presence=off join_events=off history=5 history_ttl=10m");
    ns_table_finish(&t);
    const struct ns_rules *u = &t.v[1], *c = &t.v[2];
    ck_assert_int_eq(u->subscribe, NS_SUBSCRIBE_OWNER); /* its own */
    ck_assert_int_eq(u->publish, NS_PUBLISH_NONE);
    ck_assert_int_eq(u->presence, NS_PRESENCE_OFF); /* the configured default's */
    ck_assert(!u->join_events);
    ck_assert_int_eq(u->history, 5);
    ck_assert_int_eq(u->history_ttl_ms, 600000);
    ck_assert_int_eq(c->subscribe, NS_SUBSCRIBE_ANY);
    ck_assert_int_eq(c->publish, NS_PUBLISH_GRANT); /* default left it: the built-in value */
    ck_assert_int_eq(c->history, 50);
    ck_assert_int_eq(c->history_ttl_ms, 600000);
    /* The set bits stay what the directives gave, so a second finish after a new
     * default follows it. */
    ck_assert_uint_eq(u->set, NS_SET_SUBSCRIBE | NS_SET_PUBLISH);
    add_ok(&t, "default");
    ns_table_finish(&t);
    ck_assert_int_eq(u->subscribe, NS_SUBSCRIBE_OWNER);
    ck_assert_int_eq(u->presence, NS_PRESENCE_SUBSCRIBERS);
    ck_assert(u->join_events);
    ck_assert_int_eq(u->history, 0);
    ck_assert_int_eq(c->history, 50);
    ck_assert_int_eq(c->history_ttl_ms, 3600000);
    ck_assert_int_eq(c->subscribe, NS_SUBSCRIBE_GRANT);
}
END_TEST

/* ---- channels ---- */

START_TEST(namespace_of)
{
    struct ns_table t;
    ns_table_init(&t);
    add_ok(&t, "user subscribe=owner");
    add_ok(&t, "public subscribe=any");
    add_ok(&t, "u subscribe=none");
    ns_table_finish(&t);
    ck_assert_ptr_eq(rules_of(&t, "user:alice"), &t.v[1]);
    ck_assert_ptr_eq(rules_of(&t, "user:"), &t.v[1]);
    ck_assert_ptr_eq(rules_of(&t, "user:a:b"), &t.v[1]); /* the first ':' */
    ck_assert_ptr_eq(rules_of(&t, "public:lobby"), &t.v[2]);
    ck_assert_ptr_eq(rules_of(&t, "u:x"), &t.v[3]);
    ck_assert_ptr_eq(rules_of(&t, "user"), &t.v[0]);     /* no ':': default */
    ck_assert_ptr_eq(rules_of(&t, "useralice"), &t.v[0]);
    ck_assert_ptr_eq(rules_of(&t, "users:x"), &t.v[0]);  /* no directive: default */
    ck_assert_ptr_eq(rules_of(&t, "use:x"), &t.v[0]);
    ck_assert_ptr_eq(rules_of(&t, "User:x"), &t.v[0]);   /* names are case-sensitive */
    ck_assert_ptr_eq(rules_of(&t, ":x"), &t.v[0]);
    ck_assert_ptr_eq(rules_of(&t, "default:x"), &t.v[0]);
    ck_assert_ptr_eq(rules_of(&t, ""), &t.v[0]);
    /* The length bounds the name: "user:alice" cut to "user" has no ':'. */
    ck_assert_ptr_eq(ns_of(&t, "user:alice", 4), &t.v[0]);
    ck_assert_ptr_eq(ns_of(&t, "u:ser", 2), &t.v[3]);
}
END_TEST

START_TEST(channel_names)
{
    ck_assert(ns_channel_ok("room1", 5));
    ck_assert(ns_channel_ok("a.b:c@d-e_F9", 12));
    ck_assert(!ns_channel_ok("", 0));
    ck_assert(!ns_channel_ok("a b", 3));
    ck_assert(!ns_channel_ok("a*", 2));
    ck_assert(!ns_channel_ok("a/b", 3));
    ck_assert(!ns_channel_ok("caf\xc3\xa9", 5));
    ck_assert(!ns_channel_ok("a\0b", 3));
    char name[NS_CHANNEL_MAX + 1];
    memset(name, 'x', sizeof name);
    ck_assert(ns_channel_ok(name, NS_CHANNEL_MAX));
    ck_assert(!ns_channel_ok(name, NS_CHANNEL_MAX + 1));
}
END_TEST

static bool
match(const char *pattern, const char *channel)
{
    return ns_grant_match(pattern, strlen(pattern), channel, strlen(channel));
}

START_TEST(grant_patterns)
{
    ck_assert(match("room:42", "room:42"));
    ck_assert(!match("room:42", "room:421"));
    ck_assert(!match("room:42", "room:4"));
    ck_assert(!match("room:42", "Room:42"));
    ck_assert(match("room:*", "room:42"));
    ck_assert(match("room:*", "room:"));
    ck_assert(match("room:*", "room:a:b"));
    ck_assert(!match("room:*", "room"));
    ck_assert(!match("room:*", "rooms:1"));
    ck_assert(match("room*", "rooms:1"));
    ck_assert(match("*", "anything"));
    ck_assert(match("*", "user:alice"));
    ck_assert(!match("*", ""));
    ck_assert(!match("", ""));
    ck_assert(!match("", "room"));
    /* A '*' inside is no wildcard (and such a pattern is refused by ns_pattern_ok). */
    ck_assert(!match("r*m", "rom"));
    /* Lengths, not NULs, bound both sides. */
    ck_assert(ns_grant_match("room:42xyz", 7, "room:42", 7));
    ck_assert(ns_grant_match("room:*", 6, "room:1abc", 6));
    ck_assert(!ns_grant_match("room:42", 7, "room:42", 6));
}
END_TEST

START_TEST(pattern_validity)
{
    static const char *const good[] = {"room:42", "room:*", "*", "a", "a*", ":*", "user:",
                                       "A-z_0.9@x:y"};
    static const char *const bad[] = {"", "**", "room:**", "r*m", "*room", "a b", "a/*",
                                      "caf\xc3\xa9", "room:4 2*"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        ck_assert_msg(ns_pattern_ok(good[i], strlen(good[i])), "refused \"%s\"", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!ns_pattern_ok(bad[i], strlen(bad[i])), "accepted \"%s\"", bad[i]);
    char p[NS_CHANNEL_MAX + 2];
    memset(p, 'x', sizeof p);
    ck_assert(ns_pattern_ok(p, NS_CHANNEL_MAX)); /* a whole channel name */
    ck_assert(!ns_pattern_ok(p, NS_CHANNEL_MAX + 1));
    p[NS_CHANNEL_MAX - 1] = '*';
    ck_assert(ns_pattern_ok(p, NS_CHANNEL_MAX)); /* 127 bytes and '*' */
    p[NS_CHANNEL_MAX] = '*';
    ck_assert(!ns_pattern_ok(p, NS_CHANNEL_MAX + 1)); /* 128 bytes and '*' */
    ck_assert(!ns_pattern_ok("a\0*", 3));
}
END_TEST

static bool
owner(const char *channel, const char *user)
{
    return ns_owner_is(channel, strlen(channel), user);
}

START_TEST(owners)
{
    ck_assert(owner("user:alice", "alice"));
    ck_assert(!owner("user:alice", "alice2"));
    ck_assert(!owner("user:alice2", "alice"));
    ck_assert(!owner("user:alic", "alice"));
    ck_assert(!owner("user:Alice", "alice"));
    ck_assert(!owner("user:", "alice"));
    ck_assert(!owner("user:", ""));
    ck_assert(!owner("useralice", "alice"));
    ck_assert(!owner("alice", "alice"));
    ck_assert(!owner("", "alice"));
    ck_assert(!owner("user:alice", NULL));
    ck_assert(owner("inbox:alice", "alice")); /* whatever the namespace */
    ck_assert(owner("user:a:b", "a:b"));     /* all of what follows the first ':' */
    ck_assert(!owner("user:a:b", "a"));
    ck_assert(!owner("user:a:b", "b"));
    ck_assert(ns_owner_is("user:alice:x", 10, "alice"));
}
END_TEST

/* ---- the decision ---- */

/* Every subscribe rule against every (owner, granted, subscribed) a client may hold. */
START_TEST(decide_subscribe)
{
    static const struct {
        int rule;
        bool owner, granted, subscribed, want;
    } cases[] = {
        {NS_SUBSCRIBE_GRANT, false, false, false, false},
        {NS_SUBSCRIBE_GRANT, false, true, false, true},
        {NS_SUBSCRIBE_GRANT, true, false, false, false},
        {NS_SUBSCRIBE_GRANT, true, true, true, true},
        {NS_SUBSCRIBE_GRANT, false, false, true, false},
        {NS_SUBSCRIBE_ANY, false, false, false, true},
        {NS_SUBSCRIBE_ANY, true, true, true, true},
        {NS_SUBSCRIBE_OWNER, true, false, false, true},
        {NS_SUBSCRIBE_OWNER, true, true, false, true},
        {NS_SUBSCRIBE_OWNER, false, true, false, false}, /* a grant does not make an owner */
        {NS_SUBSCRIBE_OWNER, false, false, true, false},
        {NS_SUBSCRIBE_OWNER, false, false, false, false},
        {NS_SUBSCRIBE_NONE, true, true, true, false},
        {NS_SUBSCRIBE_NONE, false, false, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ns_rules r;
        memset(&r, 0, sizeof r);
        r.subscribe = (uint8_t)cases[i].rule;
        struct ns_subject s = {cases[i].owner ? "alice" : "bob", cases[i].granted,
                               cases[i].subscribed};
        bool got = ns_allows(&r, NS_OP_SUBSCRIBE, "user:alice", 10, &s);
        ck_assert_msg(got == cases[i].want, "case %zu", i);
    }
}
END_TEST

START_TEST(decide_publish)
{
    static const struct {
        int rule;
        bool granted, subscribed, want;
    } cases[] = {
        {NS_PUBLISH_GRANT, false, false, false},
        {NS_PUBLISH_GRANT, true, false, true},
        {NS_PUBLISH_GRANT, false, true, false},
        {NS_PUBLISH_GRANT, true, true, true},
        {NS_PUBLISH_ANY, false, false, true},
        {NS_PUBLISH_ANY, true, true, true},
        {NS_PUBLISH_SUBSCRIBERS, false, false, false},
        {NS_PUBLISH_SUBSCRIBERS, true, false, false},
        {NS_PUBLISH_SUBSCRIBERS, false, true, true},
        {NS_PUBLISH_SUBSCRIBERS, true, true, true},
        {NS_PUBLISH_NONE, false, false, false},
        {NS_PUBLISH_NONE, true, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ns_rules r;
        memset(&r, 0, sizeof r);
        r.publish = (uint8_t)cases[i].rule;
        /* The owner gains nothing for publish. */
        struct ns_subject s = {"alice", cases[i].granted, cases[i].subscribed};
        bool got = ns_allows(&r, NS_OP_PUBLISH, "user:alice", 10, &s);
        ck_assert_msg(got == cases[i].want, "case %zu", i);
    }
}
END_TEST

START_TEST(decide_presence)
{
    static const struct {
        int rule;
        bool granted, subscribed, want;
    } cases[] = {
        {NS_PRESENCE_SUBSCRIBERS, false, false, false},
        {NS_PRESENCE_SUBSCRIBERS, true, false, false},
        {NS_PRESENCE_SUBSCRIBERS, false, true, true},
        {NS_PRESENCE_SUBSCRIBERS, true, true, true},
        {NS_PRESENCE_OFF, false, false, false},
        {NS_PRESENCE_OFF, true, true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct ns_rules r;
        memset(&r, 0, sizeof r);
        r.presence = (uint8_t)cases[i].rule;
        r.subscribe = NS_SUBSCRIBE_ANY; /* the other rules do not leak into presence */
        r.publish = NS_PUBLISH_ANY;
        struct ns_subject s = {"alice", cases[i].granted, cases[i].subscribed};
        bool got = ns_allows(&r, NS_OP_PRESENCE, "user:alice", 10, &s);
        ck_assert_msg(got == cases[i].want, "case %zu", i);
    }
}
END_TEST

/* Rules outside the enums (a table built by hand) and an unknown op deny. */
START_TEST(decide_unknown_denies)
{
    struct ns_rules r;
    memset(&r, 0, sizeof r);
    r.subscribe = 9;
    r.publish = 9;
    r.presence = 9;
    struct ns_subject s = {"alice", true, true};
    ck_assert(!ns_allows(&r, NS_OP_SUBSCRIBE, "user:alice", 10, &s));
    ck_assert(!ns_allows(&r, NS_OP_PUBLISH, "user:alice", 10, &s));
    ck_assert(!ns_allows(&r, NS_OP_PRESENCE, "user:alice", 10, &s));
    ck_assert(!ns_allows(&r, (enum ns_op)7, "user:alice", 10, &s));
}
END_TEST

/* The example rules of the docs, through ns_of and ns_allows together. */
START_TEST(decide_documented_examples)
{
    struct ns_table t;
    ns_table_init(&t);
    add_ok(&t, "user subscribe=owner publish=none");
    add_ok(&t, "public subscribe=any publish=subscribers");
    add_ok(&t, "room subscribe=grant publish=grant presence=subscribers");
    ns_table_finish(&t);
    struct ns_subject alice = {"alice", false, false}, alice_in = {"alice", false, true};
    struct ns_subject granted = {"bob", true, false};
#define ALLOWS(op, ch, s) ns_allows(ns_of(&t, ch, strlen(ch)), op, ch, strlen(ch), s)
    ck_assert(ALLOWS(NS_OP_SUBSCRIBE, "user:alice", &alice));
    ck_assert(!ALLOWS(NS_OP_SUBSCRIBE, "user:bob", &alice));
    ck_assert(!ALLOWS(NS_OP_SUBSCRIBE, "user:alice", &granted));
    ck_assert(!ALLOWS(NS_OP_PUBLISH, "user:alice", &alice_in));
    ck_assert(ALLOWS(NS_OP_PRESENCE, "user:alice", &alice_in));
    ck_assert(ALLOWS(NS_OP_SUBSCRIBE, "public:lobby", &alice));
    ck_assert(!ALLOWS(NS_OP_PUBLISH, "public:lobby", &alice));
    ck_assert(ALLOWS(NS_OP_PUBLISH, "public:lobby", &alice_in));
    ck_assert(!ALLOWS(NS_OP_SUBSCRIBE, "room:1", &alice));
    ck_assert(ALLOWS(NS_OP_SUBSCRIBE, "room:1", &granted));
    ck_assert(ALLOWS(NS_OP_PUBLISH, "room:1", &granted));
    ck_assert(!ALLOWS(NS_OP_PRESENCE, "room:1", &granted));
    /* No directive: the built-in default, grants only. */
    ck_assert(!ALLOWS(NS_OP_SUBSCRIBE, "lobby", &alice));
    ck_assert(ALLOWS(NS_OP_SUBSCRIBE, "other:x", &granted));
#undef ALLOWS
}
END_TEST

Suite *
namespace_suite(void)
{
    Suite *s = suite_create("namespace");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, builtin_default);
    tcase_add_test(parse, every_key);
    tcase_add_test(parse, bad_keys_and_values);
    tcase_add_test(parse, names);
    tcase_add_test(parse, last_directive_wins);
    tcase_add_test(parse, too_many);
    tcase_add_test(parse, finish_inherits_from_default);
    suite_add_tcase(s, parse);

    TCase *chan = tcase_create("channels");
    tcase_add_test(chan, namespace_of);
    tcase_add_test(chan, channel_names);
    tcase_add_test(chan, grant_patterns);
    tcase_add_test(chan, pattern_validity);
    tcase_add_test(chan, owners);
    suite_add_tcase(s, chan);

    TCase *decide = tcase_create("decide");
    tcase_add_test(decide, decide_subscribe);
    tcase_add_test(decide, decide_publish);
    tcase_add_test(decide, decide_presence);
    tcase_add_test(decide, decide_unknown_denies);
    tcase_add_test(decide, decide_documented_examples);
    suite_add_tcase(s, decide);
    return s;
}
