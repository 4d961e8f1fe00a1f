/* redis_sentinel's parsing: the redis_sentinels list, the answers of Sentinel
 * (get-master-addr-by-name, +switch-master) and of ROLE, each with what it refuses. The
 * replies are built by hand, as hiredis's reader would build them. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "redis_sentinel.h"
#include "suites.h"

static redisReply
str(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
}

static void
list_bad(const char *text, const char *want)
{
    struct sentinel_addr a[SENTINEL_MAX];
    char err[256] = "";
    ck_assert_msg(sentinel_list_parse(text, a, SENTINEL_MAX, err, sizeof err) == -1,
                  "%s was accepted", text);
    ck_assert_str_eq(err, want);
}

START_TEST(lists)
{
    struct sentinel_addr a[SENTINEL_MAX];
    char err[256];
    ck_assert_int_eq(
        sentinel_list_parse("10.0.0.1:26380, s2 ,[::1]:5", a, SENTINEL_MAX, err, sizeof err), 3);
    ck_assert_str_eq(a[0].host, "10.0.0.1");
    ck_assert_int_eq(a[0].port, 26380);
    ck_assert_str_eq(a[1].host, "s2");
    ck_assert_int_eq(a[1].port, SENTINEL_DEFAULT_PORT);
    ck_assert_str_eq(a[2].host, "::1");
    ck_assert_int_eq(a[2].port, 5);
    ck_assert_int_eq(sentinel_list_parse("[fe80::1]", a, SENTINEL_MAX, err, sizeof err), 1);
    ck_assert_str_eq(a[0].host, "fe80::1");
    ck_assert_int_eq(a[0].port, SENTINEL_DEFAULT_PORT);
    list_bad("", "an empty entry (host:port,host:port)");
    list_bad("a:1,", "an empty entry (host:port,host:port)");
    list_bad("a:0", "\"a:0\": bad port \"0\" (1 to 65535)");
    list_bad("a:65536", "\"a:65536\": bad port \"65536\" (1 to 65535)");
    list_bad("a:", "\"a:\": bad port \"\" (1 to 65535)");
    list_bad("a:1x", "\"a:1x\": bad port \"1x\" (1 to 65535)");
    list_bad(":1", "\":1\": empty host");
    list_bad("::1", "\"::1\": an IPv6 host needs brackets, as in redis://[::1]:6379");
    list_bad("[::1", "\"[::1\": missing ] after the IPv6 address");
    list_bad("[zz]:1", "\"[zz]:1\": bad IPv6 address \"[zz]\"");
    list_bad("[::1]x", "\"[::1]x\": unexpected \"x\" after the host");
    list_bad("redis://a:1", "\"redis://a:1\": host:port, not a URL");
    list_bad("u@a:1", "\"u@a:1\": bad character '@' in the host");
    ck_assert_int_eq(sentinel_list_parse("a,b", a, 1, err, sizeof err), -1);
    ck_assert_str_eq(err, "more than 1 Sentinels");
}
END_TEST

START_TEST(names)
{
    ck_assert(sentinel_name_ok("mymaster"));
    ck_assert(sentinel_name_ok("cache-1.eu"));
    ck_assert(!sentinel_name_ok(""));
    ck_assert(!sentinel_name_ok("my master"));
    ck_assert(!sentinel_name_ok("a\tb"));
    char longname[SENTINEL_NAME_MAX + 1];
    memset(longname, 'x', SENTINEL_NAME_MAX);
    longname[SENTINEL_NAME_MAX] = '\0';
    ck_assert(!sentinel_name_ok(longname));
}
END_TEST

START_TEST(master_address_replies)
{
    struct sentinel_addr a = {0};
    redisReply h = str("10.1.2.3"), p = str("6380"), *e[] = {&h, &p};
    redisReply r = {.type = REDIS_REPLY_ARRAY, .element = e, .elements = 2};
    ck_assert_int_eq(sentinel_addr_reply(&r, &a), 1);
    ck_assert_str_eq(a.host, "10.1.2.3");
    ck_assert_int_eq(a.port, 6380);
    redisReply nil = {.type = REDIS_REPLY_NIL};
    ck_assert_int_eq(sentinel_addr_reply(&nil, &a), 0);
    r.elements = 1;
    ck_assert_int_eq(sentinel_addr_reply(&r, &a), -1);
    r.elements = 2;
    p = str("port");
    ck_assert_int_eq(sentinel_addr_reply(&r, &a), -1);
    p = str("70000");
    ck_assert_int_eq(sentinel_addr_reply(&r, &a), -1);
    p = (redisReply){.type = REDIS_REPLY_INTEGER, .integer = 6380};
    ck_assert_int_eq(sentinel_addr_reply(&r, &a), -1);
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "ERR no", .len = 6};
    ck_assert_int_eq(sentinel_addr_reply(&err, &a), -1);
    ck_assert_str_eq(a.host, "10.1.2.3"); /* what was refused changed nothing */
    ck_assert_int_eq(a.port, 6380);
}
END_TEST

START_TEST(switch_master_messages)
{
    struct sentinel_addr a = {0};
    const char *m = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
    ck_assert_int_eq(sentinel_switch_parse(m, strlen(m), "mymaster", &a), 1);
    ck_assert_str_eq(a.host, "127.0.0.1");
    ck_assert_int_eq(a.port, 6380);
    ck_assert_int_eq(sentinel_switch_parse(m, strlen(m), "other", &a), 0);
    ck_assert_int_eq(sentinel_switch_parse(m, strlen(m), "mymaste", &a), 0);
    const char *v6 = "c ::1 1 ::2 2";
    ck_assert_int_eq(sentinel_switch_parse(v6, strlen(v6), "c", &a), 1);
    ck_assert_str_eq(a.host, "::2");
    ck_assert_int_eq(a.port, 2);
    const char *bad[] = {"mymaster 127.0.0.1 6379 127.0.0.1", "mymaster a 1 b 2 extra",
                         "mymaster a 1 b port", "", "mymaster a 1 b 0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sentinel_switch_parse(bad[i], strlen(bad[i]), "mymaster", &a) == -1,
                      "%s was accepted", bad[i]);
    /* Only len bytes count: a longer buffer's tail is not read. */
    ck_assert_int_eq(sentinel_switch_parse("c a 1 b 22 junk", 10, "c", &a), 1);
    ck_assert_int_eq(a.port, 22);
}
END_TEST

START_TEST(roles)
{
    redisReply master = str("master"), slave = str("slave"), *e[] = {&master};
    redisReply r = {.type = REDIS_REPLY_ARRAY, .element = e, .elements = 1};
    ck_assert(sentinel_role_is_master(&r));
    e[0] = &slave;
    ck_assert(!sentinel_role_is_master(&r));
    r.elements = 0;
    ck_assert(!sentinel_role_is_master(&r));
    ck_assert(!sentinel_role_is_master(&master)); /* a string, not ROLE's array */
}
END_TEST

START_TEST(setup)
{
    char err[256];
    ck_assert_int_eq(redis_sentinel_setup("", "any name", false, err, sizeof err), 0);
    ck_assert(!redis_sentinel_on());
    ck_assert_int_eq(redis_sentinel_setup("a:1,b:2", "mymaster", false, err, sizeof err), 0);
    ck_assert(redis_sentinel_on());
    ck_assert_int_eq(redis_sentinel_setup("a:1", "my master", false, err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid \"redis_master\": a name of 1 to 127 bytes without spaces");
    ck_assert_int_eq(redis_sentinel_setup("a:x", "m", false, err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid \"redis_sentinels\": \"a:x\": bad port \"x\" (1 to 65535)");
    ck_assert_int_eq(redis_sentinel_setup("", "", false, err, sizeof err), 0);
    ck_assert(!redis_sentinel_on());
}
END_TEST

Suite *
redis_sentinel_suite(void)
{
    Suite *s = suite_create("redis_sentinel");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, lists);
    tcase_add_test(tc, names);
    tcase_add_test(tc, master_address_replies);
    tcase_add_test(tc, switch_master_messages);
    tcase_add_test(tc, roles);
    tcase_add_test(tc, setup);
    suite_add_tcase(s, tc);
    return s;
}
