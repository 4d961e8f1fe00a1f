/* grants: a session's channels and subscribe, packed for a socket, and the questions
 * channels.c asks of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grants.h"
#include "namespace.h"
#include "suites.h"

static struct grants *
parse(const char *channels, const char *subscribe, int *err)
{
    return grants_parse(channels, strlen(channels), subscribe, strlen(subscribe), err);
}

static bool
allows(const struct grants *g, const char *channel)
{
    return grants_allow(g, channel, strlen(channel));
}

START_TEST(none_is_null)
{
    int err = 1;
    ck_assert_ptr_null(parse("", "", &err));
    ck_assert_int_eq(err, 0);
    ck_assert_ptr_null(parse("[]", "[]", &err));
    ck_assert_int_eq(err, 0);
    ck_assert(!allows(NULL, "room"));
    ck_assert(!grants_subscribes(NULL, "room", 4));
}
END_TEST

START_TEST(patterns_and_names)
{
    int err;
    struct grants *g = parse("[\"room:42\",\"chat:*\"]", "[\"news\"]", &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(err, 0);
    ck_assert_int_eq(g->nchannels, 2);
    ck_assert_int_eq(g->nsubscribe, 1);
    ck_assert(allows(g, "room:42"));
    ck_assert(!allows(g, "room:420"));
    ck_assert(!allows(g, "room:4"));
    ck_assert(allows(g, "chat:"));
    ck_assert(allows(g, "chat:x.y"));
    ck_assert(!allows(g, "chat"));
    ck_assert(allows(g, "news"));              /* a server-side channel is granted */
    ck_assert(grants_subscribes(g, "news", 4));
    ck_assert(!grants_subscribes(g, "room:42", 7)); /* a grant is not a subscription */
    size_t len;
    const char *s = grants_subscribe_at(g, 0, &len);
    ck_assert_int_eq(len, 4);
    ck_assert_int_eq(memcmp(s, "news", 4), 0);
    free(g);
}
END_TEST

START_TEST(only_subscribe)
{
    int err;
    struct grants *g = parse("", "[\"a\",\"b:c\"]", &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->nchannels, 0);
    ck_assert_int_eq(g->nsubscribe, 2);
    size_t len;
    const char *s = grants_subscribe_at(g, 1, &len);
    ck_assert_int_eq(len, 3);
    ck_assert_int_eq(memcmp(s, "b:c", 3), 0);
    ck_assert(allows(g, "a") && allows(g, "b:c") && !allows(g, "b"));
    free(g);
}
END_TEST

START_TEST(star_grants_everything)
{
    int err;
    struct grants *g = parse("[\"*\"]", "", &err);
    ck_assert(allows(g, "anything:at.all") && allows(g, "x"));
    free(g);
}
END_TEST

/* What the API would have refused is skipped, not trusted: a store written by hand. */
START_TEST(invalid_entries_are_skipped)
{
    int err;
    struct grants *g = parse("[\"ok\",\"bad name\",7,\"a*b\"]", "[\"x*\",\"fine\"]", &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(err, 0);
    ck_assert_int_eq(g->nchannels, 1);
    ck_assert_int_eq(g->nsubscribe, 1);
    ck_assert(allows(g, "ok") && allows(g, "fine") && !allows(g, "x"));
    free(g);
}
END_TEST

START_TEST(at_most_the_limit)
{
    char text[NS_GRANTS_MAX * 8 + 64] = "[";
    for (int i = 0; i < NS_GRANTS_MAX + 5; i++) {
        char e[16];
        snprintf(e, sizeof e, "%s\"c%d\"", i ? "," : "", i);
        strcat(text, e);
    }
    strcat(text, "]");
    int err;
    struct grants *g = parse(text, "", &err);
    ck_assert_int_eq(g->nchannels, NS_GRANTS_MAX);
    ck_assert(allows(g, "c63") && !allows(g, "c64"));
    free(g);
}
END_TEST

START_TEST(unreadable_json_is_an_error)
{
    int err = 0;
    ck_assert_ptr_null(parse("[\"a\"", "", &err));
    ck_assert_int_eq(err, -1);
    err = 0;
    struct grants *g = parse("[\"a\"]", "{}", &err); /* one good array, one not */
    ck_assert_int_eq(err, -1);
    free(g);
}
END_TEST

START_TEST(longest_names)
{
    char name[NS_CHANNEL_MAX + 1], json[NS_CHANNEL_MAX + 8];
    memset(name, 'a', NS_CHANNEL_MAX);
    name[NS_CHANNEL_MAX] = '\0';
    snprintf(json, sizeof json, "[\"%s\"]", name);
    int err;
    struct grants *g = parse(json, json, &err);
    ck_assert_ptr_nonnull(g);
    ck_assert(grants_subscribes(g, name, NS_CHANNEL_MAX));
    ck_assert(allows(g, name));
    free(g);
}
END_TEST

Suite *
grants_suite(void)
{
    Suite *s = suite_create("grants");
    TCase *t = tcase_create("grants");
    tcase_add_test(t, none_is_null);
    tcase_add_test(t, patterns_and_names);
    tcase_add_test(t, only_subscribe);
    tcase_add_test(t, star_grants_everything);
    tcase_add_test(t, invalid_entries_are_skipped);
    tcase_add_test(t, at_most_the_limit);
    tcase_add_test(t, unreadable_json_is_an_error);
    tcase_add_test(t, longest_names);
    suite_add_tcase(s, t);
    return s;
}
