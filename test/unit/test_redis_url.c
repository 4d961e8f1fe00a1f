/* redis_url: every form the parser takes, with each field it fills, and every refusal
 * with its exact message. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "redis_url.h"
#include "suites.h"

static struct redis_url
ok(const char *url)
{
    struct redis_url u;
    char err[256] = "";
    ck_assert_msg(redis_url_parse(url, &u, err, sizeof err) == 0, "%s: %s", url, err);
    return u;
}

static void
bad(const char *url, const char *want)
{
    struct redis_url u;
    char err[256] = "";
    ck_assert_msg(redis_url_parse(url, &u, err, sizeof err) == -1, "%s was accepted", url);
    ck_assert_str_eq(err, want);
}

START_TEST(defaults)
{
    struct redis_url u = ok("redis://127.0.0.1");
    ck_assert(!u.is_unix);
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "");
    ck_assert_str_eq(u.path, "");
    u = ok("redis://localhost:6379/");
    ck_assert_str_eq(u.host, "localhost");
    ck_assert_int_eq(u.db, 0);
    u = ok("REDIS://Cache-1.internal_zone.example");
    ck_assert_str_eq(u.host, "Cache-1.internal_zone.example");
}
END_TEST

START_TEST(every_part)
{
    struct redis_url u = ok("redis://default:s3cr%40t%3a%2F@cache.example.com:6380/5");
    ck_assert_str_eq(u.user, "default");
    ck_assert_str_eq(u.password, "s3cr@t:/");
    ck_assert_str_eq(u.host, "cache.example.com");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 5);
    ck_assert(!u.is_unix);

    u = ok("redis://:pw@10.0.0.2/15");
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "pw");
    ck_assert_int_eq(u.db, 15);
    u = ok("redis://secret@h"); /* no colon: a password, as redis-cli reads it */
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "secret");
    u = ok("redis://u:p:q@h:1");
    ck_assert_str_eq(u.user, "u");
    ck_assert_str_eq(u.password, "p:q");
    ck_assert_int_eq(u.port, 1);
    u = ok("redis://:a@b@h:65535"); /* the last @ ends the userinfo */
    ck_assert_str_eq(u.password, "a@b");
    ck_assert_str_eq(u.host, "h");
    ck_assert_int_eq(u.port, 65535);
    u = ok("redis://@h");
    ck_assert_str_eq(u.password, "");
    u = ok("redis://h/2147483647");
    ck_assert_int_eq(u.db, INT_MAX);
    u = ok("redis://h/007");
    ck_assert_int_eq(u.db, 7);
}
END_TEST

START_TEST(ipv6)
{
    struct redis_url u = ok("redis://[::1]:6380/2");
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 2);
    u = ok("redis://:pw@[fe80::1:2]");
    ck_assert_str_eq(u.host, "fe80::1:2");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_str_eq(u.password, "pw");
    bad("redis://[::1", "missing ] after the IPv6 address");
    bad("redis://[]:6379", "empty host");
    bad("redis://[not-an-address]", "bad IPv6 address \"[not-an-address]\"");
    bad("redis://[::1]x", "unexpected \"x\" after the host");
    bad("redis://[::1]:", "bad port \"\" (1 to 65535)");
    bad("redis://::1", "an IPv6 host needs brackets, as in redis://[::1]:6379");
    bad("redis://fe80::1:6379/0", "an IPv6 host needs brackets, as in redis://[::1]:6379");
}
END_TEST

START_TEST(unix_socket)
{
    struct redis_url u = ok("unix:/run/redis/redis.sock");
    ck_assert(u.is_unix);
    ck_assert_str_eq(u.path, "/run/redis/redis.sock");
    ck_assert_str_eq(u.host, "");
    ck_assert_int_eq(u.port, 0);
    ck_assert_int_eq(u.db, 0);
    u = ok("unix:/tmp/r.sock?db=3");
    ck_assert_str_eq(u.path, "/tmp/r.sock");
    ck_assert_int_eq(u.db, 3);
    u = ok("unix:///tmp/r.sock");
    ck_assert_str_eq(u.path, "/tmp/r.sock");
    ck_assert(u.is_unix);

    char longpath[200];
    memset(longpath, 'x', sizeof longpath);
    memcpy(longpath, "unix:/", 6);
    longpath[5 + 108] = '\0'; /* a path of 108 bytes */
    bad(longpath, "socket path too long (at most 107 bytes)");
    longpath[5 + 107] = '\0';
    u = ok(longpath);
    ck_assert_uint_eq(strlen(u.path), 107);

    bad("unix:", "empty socket path");
    bad("unix:?db=1", "empty socket path");
    bad("unix:redis.sock", "the socket path must be absolute, as in unix:/run/redis.sock");
    bad("unix://:pw@/tmp/r.sock", "a socket path is written unix:/path/to.sock");
    bad("unix:/tmp/r.sock?foo=1", "unknown parameter \"foo=1\" (only db=N)");
    bad("unix:/tmp/r.sock?db=a", "the database must be a number, as in ?db=0 (not \"a\")");
    bad("unix:/tmp/r.sock?db=", "the database must be a number, as in ?db=0 (not \"\")");
    bad("unix:/tmp/r.sock?db=1&x=2",
        "the database must be a number, as in ?db=0 (not \"1&x=2\")");
}
END_TEST

START_TEST(schemes)
{
    static const char want[] =
        "must start with redis://, rediss:// or unix: (as in redis://127.0.0.1:6379/0)";
    struct redis_url u = ok("rediss://user:pw@cache.example.com:6380/2");
    ck_assert(u.tls && !u.is_unix);
    ck_assert_str_eq(u.host, "cache.example.com");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 2);
    ck_assert_str_eq(u.user, "user");
    ck_assert_str_eq(u.password, "pw");
    u = ok("REDISS://[::1]");
    ck_assert(u.tls);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6379);
    ck_assert(!ok("redis://h").tls && !ok("unix:/tmp/r.sock").tls);
    bad("rediss://h:0", "bad port \"0\" (1 to 65535)"); /* the same rules as redis:// */
    bad("rediss:/h", want);
    bad("http://h", want);
    bad("127.0.0.1:6379", want);
    bad("", want);
    bad("redis:/h", want);
}
END_TEST

START_TEST(bad_ports)
{
    bad("redis://h:0", "bad port \"0\" (1 to 65535)");
    bad("redis://h:65536", "bad port \"65536\" (1 to 65535)");
    bad("redis://h:99999999999999999999", "bad port \"99999999999999999999\" (1 to 65535)");
    bad("redis://h:", "bad port \"\" (1 to 65535)");
    bad("redis://h:12a/0", "bad port \"12a\" (1 to 65535)");
    bad("redis://h:-1", "bad port \"-1\" (1 to 65535)");
    bad("redis://h: 1", "bad port \" 1\" (1 to 65535)");
}
END_TEST

START_TEST(bad_databases_and_trailing_junk)
{
    bad("redis://h/abc", "the database must be a number, as in /0 (not \"abc\")");
    bad("redis://h/-1", "the database must be a number, as in /0 (not \"-1\")");
    bad("redis://h/1/2", "the database must be a number, as in /0 (not \"1/2\")");
    bad("redis://h/0 ", "the database must be a number, as in /0 (not \"0 \")");
    bad("redis://h/2147483648", "database 2147483648 is out of range (0 to 2147483647)");
    bad("redis://h/0?timeout=1", "unexpected \"?timeout=1\" after the database");
    bad("redis://h/0#frag", "unexpected \"#frag\" after the database");
    bad("redis://h?db=1", "unexpected \"?db=1\" after the host");
}
END_TEST

START_TEST(bad_hosts)
{
    bad("redis://", "empty host");
    bad("redis:///0", "empty host");
    bad("redis://:6379", "empty host");
    bad("redis://u:p@", "empty host");
    bad("redis://u:p@/3", "empty host");
    bad("redis://ho st", "bad character ' ' in the host");
    bad("redis://h%41", "bad character '%' in the host");
    char host[300];
    memset(host, 'a', sizeof host);
    memcpy(host, "redis://", 8);
    host[8 + 256] = '\0';
    bad(host, "host too long (at most 255 bytes)");
    host[8 + 255] = '\0';
    ck_assert_uint_eq(strlen(ok(host).host), 255);
}
END_TEST

START_TEST(userinfo)
{
    bad("redis://:p%4@h", "bad percent-escape in the password (%XX, two hex digits)");
    bad("redis://:p%@h", "bad percent-escape in the password (%XX, two hex digits)");
    bad("redis://:p%zz@h", "bad percent-escape in the password (%XX, two hex digits)");
    bad("redis://:p%00@h", "the password contains %00");
    bad("redis://u%g1:p@h", "bad percent-escape in the user name (%XX, two hex digits)");
    bad("redis://user:@h", "a user name needs a password (user:password@host)");
    char url[700];
    snprintf(url, sizeof url, "redis://:%0600d@h", 0);
    bad(url, "the password is too long (at most 511 bytes)");
    snprintf(url, sizeof url, "redis://:%0511d@h", 0);
    ck_assert_uint_eq(strlen(ok(url).password), 511);
    snprintf(url, sizeof url, "redis://:%%41%0509d@h", 0); /* 3 bytes that decode to 1 */
    ck_assert_uint_eq(strlen(ok(url).password), 510);

    /* A message never repeats the password. */
    struct redis_url u;
    char err[256];
    ck_assert_int_eq(redis_url_parse("redis://:hunter2@h:99999/0", &u, err, sizeof err), -1);
    ck_assert_ptr_null(strstr(err, "hunter2"));
    ck_assert_int_eq(redis_url_parse("redis://:hunter2@h/x", &u, err, sizeof err), -1);
    ck_assert_ptr_null(strstr(err, "hunter2"));
    /* Found by fuzz_redis_url (corpus crash-password-cut-by-hash): a '#' in a password
     * ended the authority there, and the message quoted the rest as junk after the host. */
    const char *cut[] = {"redis://:hun#ter2@h", "redis://u:hun?ter2@h:1/0", "redis://:hun/ter2@h"};
    for (size_t i = 0; i < sizeof cut / sizeof *cut; i++) {
        ck_assert_int_eq(redis_url_parse(cut[i], &u, err, sizeof err), -1);
        ck_assert_ptr_null(strstr(err, "ter2"));
    }
    bad("redis://:hun#ter2@h", "a '/', '?' or '#' in the user name or password must be "
                               "percent-encoded (%2F, %3F, %23)");
}
END_TEST

Suite *
redis_url_suite(void)
{
    Suite *s = suite_create("redis_url");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, every_part);
    tcase_add_test(tc, ipv6);
    tcase_add_test(tc, unix_socket);
    tcase_add_test(tc, schemes);
    tcase_add_test(tc, bad_ports);
    tcase_add_test(tc, bad_databases_and_trailing_junk);
    tcase_add_test(tc, bad_hosts);
    tcase_add_test(tc, userinfo);
    suite_add_tcase(s, tc);
    return s;
}
