#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "suites.h"

/* ---- helpers ---- */

/* Parse text as a file named "t.conf"; fail the test with the message if it is refused. */
static void
load_ok(struct conf *c, const char *text)
{
    char err[CONF_ERR_LEN] = "";
    int rc = conf_load_string(c, "t.conf", text, err, sizeof err);
    ck_assert_msg(rc == 0, "refused: %s", err);
}

/* Parse text as "t.conf" and expect exactly the error want. */
static void
load_fails(const char *text, const char *want)
{
    struct conf c;
    char err[CONF_ERR_LEN] = "";
    conf_defaults(&c);
    int rc = conf_load_string(&c, "t.conf", text, err, sizeof err);
    ck_assert_msg(rc == -1, "accepted: %s", text);
    ck_assert_str_eq(err, want);
}

static int64_t
size_of(const char *s)
{
    int64_t v = -7;
    ck_assert_msg(conf_parse_size(s, &v) == 0, "refused size \"%s\"", s);
    return v;
}

static int64_t
ms_of(const char *s)
{
    int64_t v = -7;
    ck_assert_msg(conf_parse_duration_ms(s, &v) == 0, "refused duration \"%s\"", s);
    return v;
}

/* ---- units ---- */

START_TEST(size_units)
{
    ck_assert_int_eq(size_of("0"), 0);
    ck_assert_int_eq(size_of("512"), 512);
    ck_assert_int_eq(size_of("512k"), 524288);
    ck_assert_int_eq(size_of("8K"), 8192);
    ck_assert_int_eq(size_of("1m"), 1048576);
    ck_assert_int_eq(size_of("1g"), 1073741824);
    ck_assert_int_eq(size_of("3G"), INT64_C(3221225472));
    ck_assert_int_eq(size_of("007"), 7);
    ck_assert_int_eq(size_of("9223372036854775807"), INT64_MAX);
}
END_TEST

START_TEST(size_bad)
{
    static const char *const bad[] = {
        "",    "12x", "-1",    "+1", " 1",  "1 ",   "1 k", "k",  "1.5m", "1kb", "0x10",
        "1t",  "1mm", "99999999999999999999g", "9223372036854775808", "9223372036854775807k",
        "8589934592g",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t v = -7;
        ck_assert_msg(conf_parse_size(bad[i], &v) == -1, "accepted size \"%s\"", bad[i]);
        ck_assert_int_eq(v, -7);
    }
    int64_t v;
    ck_assert_int_eq(conf_parse_size(NULL, &v), -1);
}
END_TEST

START_TEST(duration_units)
{
    ck_assert_int_eq(ms_of("10s"), 10000);
    ck_assert_int_eq(ms_of("250ms"), 250);
    ck_assert_int_eq(ms_of("2m"), 120000);
    ck_assert_int_eq(ms_of("1h"), 3600000);
    ck_assert_int_eq(ms_of("5"), 5000);
    ck_assert_int_eq(ms_of("0"), 0);
    ck_assert_int_eq(ms_of("0ms"), 0);
    ck_assert_int_eq(ms_of("10S"), 10000);
    ck_assert_int_eq(ms_of("3MS"), 3);
    ck_assert_int_eq(ms_of("24h"), 86400000);
}
END_TEST

START_TEST(duration_bad)
{
    static const char *const bad[] = {
        "",   "-1s", "-1", "10x", "1.5s", "s", "ms", "10 s", " 10s", "1d", "10sec",
        "99999999999999999999h", "9223372036854775807s", "2562047788015216h",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t v = -7;
        ck_assert_msg(conf_parse_duration_ms(bad[i], &v) == -1, "accepted duration \"%s\"",
                      bad[i]);
        ck_assert_int_eq(v, -7);
    }
}
END_TEST

START_TEST(bools)
{
    static const char *const yes[] = {"on", "yes", "true", "1", "ON", "True", "YES"};
    static const char *const no[] = {"off", "no", "false", "0", "OFF", "False", "No"};
    static const char *const bad[] = {"", "2", "maybe", "o", "onn", "yes ", "enabled", "-1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        bool b = false;
        ck_assert_int_eq(conf_parse_bool(yes[i], &b), 0);
        ck_assert_msg(b, "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        bool b = true;
        ck_assert_int_eq(conf_parse_bool(no[i], &b), 0);
        ck_assert_msg(!b, "%s", no[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool b = true;
        ck_assert_msg(conf_parse_bool(bad[i], &b) == -1, "accepted \"%s\"", bad[i]);
        ck_assert(b);
    }
}
END_TEST

/* ---- listen ---- */

static void
listen_is(const char *s, int family, const char *host, int port)
{
    struct conf_listen l;
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(conf_parse_listen(s, &l, err, sizeof err) == 0, "%s: %s", s, err);
    ck_assert_str_eq(l.text, s);
    ck_assert_int_eq(l.family, family);
    ck_assert_str_eq(l.host, host);
    ck_assert_int_eq(l.port, port);
}

START_TEST(listen_forms)
{
    listen_is("8080", AF_INET, "0.0.0.0", 8080);
    listen_is("1", AF_INET, "0.0.0.0", 1);
    listen_is("1.2.3.4:80", AF_INET, "1.2.3.4", 80);
    listen_is("127.0.0.1:65535", AF_INET, "127.0.0.1", 65535);
    listen_is("[::1]:8080", AF_INET6, "::1", 8080);
    listen_is("[::]:8080", AF_INET6, "::", 8080);
    listen_is("[0:0::0001]:443", AF_INET6, "::1", 443);
    listen_is("[2001:db8::7]:9000", AF_INET6, "2001:db8::7", 9000);
    listen_is("unix:/run/sessiond.sock", AF_UNIX, "/run/sessiond.sock", 0);
    listen_is("unix:rel.sock", AF_UNIX, "rel.sock", 0);
}
END_TEST

static void
listen_fails(const char *s, const char *want)
{
    struct conf_listen l;
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(conf_parse_listen(s, &l, err, sizeof err) == -1, "accepted \"%s\"", s);
    ck_assert_str_eq(err, want);
}

START_TEST(listen_bad)
{
    char path[200], text[220], want[300];
    listen_fails("", "empty listen address");
    listen_fails("0", "invalid port \"0\" in listen \"0\" (must be 1-65535)");
    listen_fails("65536", "invalid port \"65536\" in listen \"65536\" (must be 1-65535)");
    listen_fails("-1", "missing port in listen \"-1\"");
    listen_fails("80x", "missing port in listen \"80x\"");
    listen_fails("1.2.3.4", "missing port in listen \"1.2.3.4\"");
    listen_fails("1.2.3.4:", "invalid port \"\" in listen \"1.2.3.4:\" (must be 1-65535)");
    listen_fails("1.2.3.4:0", "invalid port \"0\" in listen \"1.2.3.4:0\" (must be 1-65535)");
    listen_fails("1.2.3.4:-80", "invalid port \"-80\" in listen \"1.2.3.4:-80\" (must be 1-65535)");
    listen_fails("1.2.3.4:99999999999999999999",
                 "invalid port \"99999999999999999999\" in listen "
                 "\"1.2.3.4:99999999999999999999\" (must be 1-65535)");
    listen_fails("1.2.3:80", "invalid IPv4 address \"1.2.3\" in listen \"1.2.3:80\"");
    listen_fails("localhost:80", "invalid IPv4 address \"localhost\" in listen \"localhost:80\"");
    listen_fails(":80", "invalid IPv4 address \"\" in listen \":80\"");
    listen_fails("::1:80", "IPv6 address must be in brackets in listen \"::1:80\"");
    listen_fails("[::1]", "expected [IPV6]:PORT in listen \"[::1]\"");
    listen_fails("[::1]80", "expected [IPV6]:PORT in listen \"[::1]80\"");
    listen_fails("[::1:80", "expected [IPV6]:PORT in listen \"[::1:80\"");
    listen_fails("[1.2.3.4]:80", "invalid IPv6 address \"1.2.3.4\" in listen \"[1.2.3.4]:80\"");
    listen_fails("[::1]:0", "invalid port \"0\" in listen \"[::1]:0\" (must be 1-65535)");
    listen_fails("unix:", "missing socket path in listen \"unix:\"");
    memset(path, 'a', 108);
    path[0] = '/';
    path[108] = '\0';
    snprintf(text, sizeof text, "unix:%s", path);
    snprintf(want, sizeof want, "socket path in listen \"%s\" is too long (at most 107 bytes)",
             text);
    listen_fails(text, want);
    path[107] = '\0'; /* 107 bytes fit in sun_path with its NUL */
    snprintf(text, sizeof text, "unix:%s", path);
    listen_is(text, AF_UNIX, path, 0);
    char huge[300];
    memset(huge, '1', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    listen_fails(huge, "listen address is too long (at most 255 bytes)");
}
END_TEST

/* ---- defaults ---- */

START_TEST(defaults)
{
    struct conf c;
    char host[256] = "";
    memset(&c, 0x5a, sizeof c);
    conf_defaults(&c); /* aborts if any default fails its own setter */
    ck_assert_str_eq(c.path, "");
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "0.0.0.0:8080");
    ck_assert_int_eq(c.listen[0].family, AF_INET);
    ck_assert_str_eq(c.listen[0].host, "0.0.0.0");
    ck_assert_int_eq(c.listen[0].port, 8080);
    ck_assert_int_eq(c.backlog, 511);
    ck_assert_int_eq(c.workers, 0);
    ck_assert(c.clustering);
    ck_assert_str_eq(c.pidfile, "");
    ck_assert_str_eq(c.log_file, "");
    ck_assert_int_eq(c.log_level, LOG_LVL_INFO);
    gethostname(host, sizeof host);
    ck_assert_str_eq(c.instance, host[0] != '\0' ? host : "sessiond");
    ck_assert_int_eq(c.min_uptime_ms, 1000);
    ck_assert_int_eq(c.restart_delay_ms, 100);
    ck_assert_int_eq(c.restart_delay_max_ms, 30000);
    ck_assert_int_eq(c.worker_timeout_ms, 30000);
    ck_assert_int_eq(c.worker_max_rss, 0);
    ck_assert_int_eq(c.shutdown_timeout_ms, 10000);
    ck_assert_int_eq(c.max_connections, 10000);
    ck_assert_int_eq(c.max_header_bytes, 8192);
    ck_assert_int_eq(c.max_body_bytes, 1048576);
    ck_assert_int_eq(c.header_timeout_ms, 10000);
    ck_assert_int_eq(c.body_timeout_ms, 30000);
    ck_assert_int_eq(c.keepalive_timeout_ms, 75000);
    ck_assert_int_eq(c.send_timeout_ms, 30000);
    ck_assert(c.gzip);
    ck_assert_int_eq(c.max_sessions, 100000);
    ck_assert_int_eq(c.ws_max_channels, 256); /* what sessiond.conf(5) promises */

    /* An empty file is the defaults, and passes the checks across fields. */
    struct conf e;
    memset(&e, 0, sizeof e);
    load_ok(&e, "");
    ck_assert_int_eq(memcmp(&e, &c, sizeof c), 0);
}
END_TEST

/* ---- a whole file ---- */

static const char full_text[] =
    "# every directive, none at its default\n"
    "listen 127.0.0.1:9000\n"
    "listen [::1]:9001\n"
    "listen unix:/tmp/sessiond-test.sock\n"
    "backlog 1024\n"
    "workers 4\n"
    "clustering off\n"
    "pidfile /run/sessiond.pid\n"
    "log_file /var/log/sessiond.log\n"
    "log_level debug\n"
    "instance edge-1\n"
    "min_uptime 5s\n"
    "restart_delay 250ms\n"
    "restart_delay_max 2m\n"
    "worker_timeout 1m\n"
    "worker_max_rss 512m\n"
    "shutdown_timeout 0\n"
    "max_connections 50000\n"
    "max_header_bytes 16k\n"
    "max_body_bytes 0\n"
    "header_timeout 5\n"
    "body_timeout 1h\n"
    "keepalive_timeout 0\n"
    "send_timeout 1ms\n"
    "gzip no\n"
    "max_sessions 100000000\n";

START_TEST(full_file)
{
    struct conf c;
    load_ok(&c, full_text);
    ck_assert_str_eq(c.path, "");
    ck_assert_int_eq(c.nlisten, 3);
    ck_assert_str_eq(c.listen[0].host, "127.0.0.1");
    ck_assert_int_eq(c.listen[0].port, 9000);
    ck_assert_int_eq(c.listen[1].family, AF_INET6);
    ck_assert_str_eq(c.listen[1].host, "::1");
    ck_assert_int_eq(c.listen[1].port, 9001);
    ck_assert_int_eq(c.listen[2].family, AF_UNIX);
    ck_assert_str_eq(c.listen[2].host, "/tmp/sessiond-test.sock");
    ck_assert_int_eq(c.backlog, 1024);
    ck_assert_int_eq(c.workers, 4);
    ck_assert(!c.clustering);
    ck_assert_str_eq(c.pidfile, "/run/sessiond.pid");
    ck_assert_str_eq(c.log_file, "/var/log/sessiond.log");
    ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
    ck_assert_str_eq(c.instance, "edge-1");
    ck_assert_int_eq(c.min_uptime_ms, 5000);
    ck_assert_int_eq(c.restart_delay_ms, 250);
    ck_assert_int_eq(c.restart_delay_max_ms, 120000);
    ck_assert_int_eq(c.worker_timeout_ms, 60000);
    ck_assert_int_eq(c.worker_max_rss, 536870912);
    ck_assert_int_eq(c.shutdown_timeout_ms, 0);
    ck_assert_int_eq(c.max_connections, 50000);
    ck_assert_int_eq(c.max_header_bytes, 16384);
    ck_assert_int_eq(c.max_body_bytes, 0);
    ck_assert_int_eq(c.header_timeout_ms, 5000);
    ck_assert_int_eq(c.body_timeout_ms, 3600000);
    ck_assert_int_eq(c.keepalive_timeout_ms, 0);
    ck_assert_int_eq(c.send_timeout_ms, 1);
    ck_assert(!c.gzip);
    ck_assert_int_eq(c.max_sessions, 100000000);
}
END_TEST

START_TEST(bounds_accepted)
{
    struct conf c;
    load_ok(&c, "workers 64\nbacklog 65535\nmax_header_bytes 1m\nmax_body_bytes 1g\n"
                "worker_max_rss 1m\nmin_uptime 1h\nrestart_delay 1h\nrestart_delay_max 24h\n"
                "max_connections 1\nmax_sessions 1\nkeepalive_timeout 1h\nsend_timeout 1h\n");
    ck_assert_int_eq(c.workers, 64);
    ck_assert_int_eq(c.backlog, 65535);
    ck_assert_int_eq(c.max_header_bytes, 1048576);
    ck_assert_int_eq(c.max_body_bytes, 1073741824);
    ck_assert_int_eq(c.worker_max_rss, 1048576);
    ck_assert_int_eq(c.min_uptime_ms, 3600000);
    ck_assert_int_eq(c.restart_delay_ms, 3600000);
    ck_assert_int_eq(c.restart_delay_max_ms, 86400000);
    ck_assert_int_eq(c.max_connections, 1);
    ck_assert_int_eq(c.max_sessions, 1);
    ck_assert_int_eq(c.keepalive_timeout_ms, 3600000);
    load_ok(&c, "workers 1\nworker_max_rss 1024g\nmax_header_bytes 1k\nworker_timeout 1s\n");
    ck_assert_int_eq(c.workers, 1);
    ck_assert_int_eq(c.worker_max_rss, INT64_C(1099511627776));
    ck_assert_int_eq(c.max_header_bytes, 1024);
    ck_assert_int_eq(c.worker_timeout_ms, 1000);
}
END_TEST

/* ---- errors, with their exact positions ---- */

START_TEST(error_messages)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"\n\nworkers 65\n", "t.conf:3: \"workers\" must be between 1 and 64"},
        {"workers 0", "t.conf:1: \"workers\" must be between 1 and 64"},
        {"workers -1", "t.conf:1: invalid value \"-1\" for \"workers\": expected auto or a number"},
        {"workers four", "t.conf:1: invalid value \"four\" for \"workers\": expected auto or a "
                         "number"},
        {"max_body_bytes 12x", "t.conf:1: invalid size \"12x\" for \"max_body_bytes\""},
        {"max_body_bytes -1", "t.conf:1: invalid size \"-1\" for \"max_body_bytes\""},
        {"max_body_bytes 2g", "t.conf:1: \"max_body_bytes\" must be between 0 and 1g"},
        {"max_body_bytes 99999999999999999999g",
         "t.conf:1: invalid size \"99999999999999999999g\" for \"max_body_bytes\""},
        {"max_header_bytes 512", "t.conf:1: \"max_header_bytes\" must be between 1k and 1m"},
        {"worker_max_rss 512k",
         "t.conf:1: \"worker_max_rss\" must be 0 (off) or between 1m and 1024g"},
        {"min_uptime 2h", "t.conf:1: \"min_uptime\" must be between 0 and 1h"},
        {"min_uptime 1.5s", "t.conf:1: invalid duration \"1.5s\" for \"min_uptime\""},
        {"restart_delay 0", "t.conf:1: \"restart_delay\" must be between 1ms and 1h"},
        {"worker_timeout 999ms", "t.conf:1: \"worker_timeout\" must be between 1s and 1h"},
        {"header_timeout 0", "t.conf:1: \"header_timeout\" must be between 1ms and 1h"},
        {"keepalive_timeout 61m",
         "t.conf:1: \"keepalive_timeout\" must be 0 (off) or between 1ms and 1h"},
        {"backlog 0", "t.conf:1: \"backlog\" must be between 1 and 65535"},
        {"backlog -5", "t.conf:1: invalid number \"-5\" for \"backlog\""},
        {"backlog 5k", "t.conf:1: invalid number \"5k\" for \"backlog\""},
        {"max_connections 1000001", "t.conf:1: \"max_connections\" must be between 1 and 1000000"},
        {"max_sessions 99999999999999999999",
         "t.conf:1: invalid number \"99999999999999999999\" for \"max_sessions\""},
        {"gzip maybe", "t.conf:1: invalid value \"maybe\" for \"gzip\": expected on/off, "
                       "yes/no, true/false or 1/0"},
        {"log_level verbose", "t.conf:1: invalid log level \"verbose\" for \"log_level\": "
                              "expected error, warn, info or debug"},
        {"log_format yaml", "t.conf:1: invalid log format \"yaml\" for \"log_format\": "
                            "expected text or json"},
        {"instance \"\"", "t.conf:1: \"instance\" must not be empty"},
        {"foo bar\n", "t.conf:1: unknown directive \"foo\""},
        {"# c\n  Workers 2\n", "t.conf:2: unknown directive \"Workers\""},
        {"workers\n", "t.conf:1: invalid number of arguments in \"workers\" directive"},
        {"workers 2 3\n", "t.conf:1: invalid number of arguments in \"workers\" directive"},
        {"pidfile a b c d\n", "t.conf:1: invalid number of arguments in \"pidfile\" directive"},
        {"workers 2\ngzip on\nworkers 3\n", "t.conf:3: \"workers\" directive is duplicate"},
        {"workers auto\nworkers auto\n", "t.conf:2: \"workers\" directive is duplicate"},
        {"instance \"abc\n", "t.conf:1: unterminated quoted string"},
        {"instance \"a\\nb\"", "t.conf:1: invalid escape in quoted string (only \\\" and \\\\)"},
        {"instance \"a\"b", "t.conf:1: a closing quote must be followed by a space"},
        {"instance a\"b\"", "t.conf:1: unexpected quote inside a word"},
        {"instance \"a b\"",
         "t.conf:1: \"instance\" may hold only letters, digits and . _ : @ -"},
        {"listen 1.2.3.4:0",
         "t.conf:1: invalid port \"0\" in listen \"1.2.3.4:0\" (must be 1-65535)"},
        {"listen 80\nlisten 0.0.0.0:80\n", "t.conf:2: duplicate listen \"0.0.0.0:80\""},
        {"listen [::1]:80\nlisten [0::1]:80\n", "t.conf:2: duplicate listen \"[0::1]:80\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        load_fails(cases[i].text, cases[i].want);
}
END_TEST

START_TEST(too_many_listens)
{
    char text[2048] = "";
    size_t n = 0;
    for (int i = 0; i < CONF_MAX_LISTEN; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "listen %d\n", 9000 + i);
    struct conf c;
    load_ok(&c, text);
    ck_assert_int_eq(c.nlisten, CONF_MAX_LISTEN);
    ck_assert_int_eq(c.listen[CONF_MAX_LISTEN - 1].port, 9000 + CONF_MAX_LISTEN - 1);
    snprintf(text + n, sizeof text - n, "listen 8999\n");
    load_fails(text, "t.conf:17: too many \"listen\" directives (at most 16)");
}
END_TEST

START_TEST(failed_load_keeps_old)
{
    struct conf c, before;
    char err[CONF_ERR_LEN];
    load_ok(&c, "workers 3\nlisten 7000\n");
    before = c;
    ck_assert_int_eq(conf_load_string(&c, "t.conf", "workers 5\nlisten 1.2.3.4:1\nbogus 1\n",
                                      err, sizeof err),
                     -1);
    ck_assert_int_eq(memcmp(&c, &before, sizeof c), 0);
}
END_TEST

/* ---- syntax ---- */

START_TEST(quoting_and_comments)
{
    struct conf c;
    load_ok(&c, "# a comment line\n"
                "\n"
                "   \t  \n"
                "  # an indented comment\n"
                "pidfile \"/run/my # pid\"   # a comment after a quoted value\n"
                "gzip off#a comment right after the value\n"
                "\tworkers\t2\t\n"
                "log_level warn\r\n"
                "log_file \"/tmp/with space/and \\\"quotes\\\" and \\\\ backslash\"\n");
    ck_assert(!c.gzip);
    ck_assert_int_eq(c.workers, 2);
    ck_assert_int_eq(c.log_level, LOG_LVL_WARN);
    ck_assert_str_eq(c.pidfile, "/run/my # pid");
    ck_assert_str_eq(c.log_file, "/tmp/with space/and \"quotes\" and \\ backslash");

    load_ok(&c, "\xef\xbb\xbfworkers 7"); /* a byte order mark, and no final newline */
    ck_assert_int_eq(c.workers, 7);
    load_ok(&c, "\"workers\" \"8\"");
    ck_assert_int_eq(c.workers, 8);
    load_ok(&c, "workers 2 # 3 4 5");
    ck_assert_int_eq(c.workers, 2);
}
END_TEST

START_TEST(listen_replaces_then_appends)
{
    struct conf c;
    load_ok(&c, "workers 1\n");
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "0.0.0.0:8080");
    load_ok(&c, "listen 9000\nlisten unix:/tmp/x.sock\n");
    ck_assert_int_eq(c.nlisten, 2);
    ck_assert_str_eq(c.listen[0].text, "9000");
    ck_assert_int_eq(c.listen[0].port, 9000);
    ck_assert_str_eq(c.listen[1].host, "/tmp/x.sock");
    /* The default itself may be written again without being a duplicate of itself. */
    load_ok(&c, "listen 0.0.0.0:8080\n");
    ck_assert_int_eq(c.nlisten, 1);
}
END_TEST

/* The user and group are looked up when the config is read, so that a typo is caught by
 * -t and refuses a reload instead of killing every worker as it starts. */
START_TEST(user_and_group)
{
    struct conf c;
    load_ok(&c, "user nobody\n");
    ck_assert_str_eq(c.user, "nobody");
    ck_assert_str_eq(c.group, "");
    load_ok(&c, "user root\ngroup root\n");
    load_ok(&c, "user 4242\ngroup 4243\n"); /* ids without names, as in containers */
    load_fails("user no-such-user-here\n", "t.conf:1: \"user\": no user no-such-user-here");
    load_fails("user nobody\ngroup no-such-group-here\n",
               "t.conf:1: \"group\": no group no-such-group-here");
    load_fails("group root\n", "t.conf: \"group\" needs \"user\"");
    load_fails("user 12x\n", "t.conf:1: \"user\": no user 12x");
}
END_TEST

START_TEST(cross_field_restart_delay)
{
    struct conf c;
    load_fails("restart_delay 1m\n\nrestart_delay_max 30s\n",
               "t.conf:3: \"restart_delay_max\" (30s) must not be less than "
               "\"restart_delay\" (1m)");
    load_fails("restart_delay_max 50ms\n",
               "t.conf:1: \"restart_delay_max\" (50ms) must not be less than "
               "\"restart_delay\" (100ms)");
    load_fails("restart_delay 45s\n", "t.conf: \"restart_delay_max\" (30s) must not be less "
                                      "than \"restart_delay\" (45s)");
    /* Order in the file does not matter: the check runs after the whole file. */
    load_ok(&c, "restart_delay_max 2m\nrestart_delay 1m\n");
    ck_assert_int_eq(c.restart_delay_ms, 60000);
    ck_assert_int_eq(c.restart_delay_max_ms, 120000);
    load_ok(&c, "restart_delay 5s\nrestart_delay_max 5s\n");
}
END_TEST

START_TEST(set_by_name)
{
    struct conf c;
    char err[CONF_ERR_LEN];
    conf_defaults(&c);
    ck_assert_int_eq(conf_set(&c, "max_body_bytes", "2m", err, sizeof err), 0);
    ck_assert_int_eq(c.max_body_bytes, 2097152);
    ck_assert_int_eq(conf_set(&c, "workers", "auto", err, sizeof err), 0);
    ck_assert_int_eq(c.workers, 0);
    ck_assert_int_eq(conf_set(&c, "nope", "1", err, sizeof err), -1);
    ck_assert_str_eq(err, "unknown directive \"nope\"");
    ck_assert_int_eq(conf_set(&c, "max_body_bytes", "12x", err, sizeof err), -1);
    ck_assert_str_eq(err, "invalid size \"12x\" for \"max_body_bytes\"");
    ck_assert_int_eq(c.max_body_bytes, 2097152);
    ck_assert_int_eq(conf_set(&c, "listen", "[::]:81", err, sizeof err), 0);
    ck_assert_int_eq(conf_set(&c, "listen", "82", err, sizeof err), 0);
    ck_assert_int_eq(c.nlisten, 1); /* each call is its own source: it replaces */
    ck_assert_int_eq(c.listen[0].port, 82);
    ck_assert_int_eq(conf_set(&c, "pidfile", "rel.pid", err, sizeof err), 0);
    ck_assert_str_eq(c.pidfile, "rel.pid");
    ck_assert_int_eq(conf_set(&c, "log_level", "DEBUG", err, sizeof err), 0);
    ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
    ck_assert_int_eq(c.log_format, LOG_FMT_TEXT);
    ck_assert_int_eq(conf_set(&c, "log_format", "json", err, sizeof err), 0);
    ck_assert_int_eq(c.log_format, LOG_FMT_JSON);

    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ck_assert_int_eq(conf_set(&c, "instance", long_name, err, sizeof err), -1);
    ck_assert_str_eq(err, "value for \"instance\" is too long (at most 127 bytes)");
}
END_TEST

/* ---- files ---- */

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(relative_paths)
{
    char tmpl[] = "/tmp/conf-test-XXXXXX", real[PATH_MAX], file[128];
    char want[PATH_MAX + 64], err[CONF_ERR_LEN] = "";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    ck_assert_ptr_nonnull(realpath(tmpl, real));
    snprintf(file, sizeof file, "%s/sessiond.conf", tmpl);
    write_file(file, "pidfile run/s.pid\n"
                     "log_file /var/log/abs.log\n"
                     "listen unix:s.sock\n"
                     "listen unix:/abs.sock\n");
    struct conf c;
    memset(&c, 0, sizeof c);
    ck_assert_msg(conf_load_file(&c, file, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.path, (snprintf(want, sizeof want, "%s/sessiond.conf", real), want));
    ck_assert_str_eq(c.pidfile, (snprintf(want, sizeof want, "%s/run/s.pid", real), want));
    ck_assert_str_eq(c.log_file, "/var/log/abs.log");
    ck_assert_int_eq(c.nlisten, 2);
    ck_assert_str_eq(c.listen[0].text, "unix:s.sock");
    ck_assert_str_eq(c.listen[0].host, (snprintf(want, sizeof want, "%s/s.sock", real), want));
    ck_assert_str_eq(c.listen[1].host, "/abs.sock");

    /* Errors in a file name the file as it was given. */
    write_file(file, "gzip on\nworkers 99\n");
    ck_assert_int_eq(conf_load_file(&c, file, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: \"workers\" must be between 1 and 64", file);
    ck_assert_str_eq(err, want);
    unlink(file);
    rmdir(tmpl);
}
END_TEST

START_TEST(unreadable_files)
{
    char tmpl[] = "/tmp/conf-test-XXXXXX", file[128], want[256];
    char err[CONF_ERR_LEN] = "";
    struct conf c;
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(file, sizeof file, "%s/missing.conf", tmpl);
    ck_assert_int_eq(conf_load_file(&c, file, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: No such file or directory", file);
    ck_assert_str_eq(err, want);

    ck_assert_int_eq(conf_load_file(&c, tmpl, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: Is a directory", tmpl);
    ck_assert_str_eq(err, want);

    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fwrite("gzip on\nwork\0ers 2\n", 1, 19, f);
    fclose(f);
    ck_assert_int_eq(conf_load_file(&c, file, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: NUL byte in the file", file);
    ck_assert_str_eq(err, want);
    unlink(file);
    rmdir(tmpl);
}
END_TEST

/* The example file ships with every directive; with each "# name value" line uncommented
 * it must still load, and every value shown must be the default (except the two the file
 * sets on purpose and instance, whose default is the host name). */
START_TEST(example_file)
{
    static const char *const names[] = {
        "listen",         "backlog",          "workers",        "clustering",
        "pidfile",        "log_file",         "log_level",      "log_format",
        "instance",
        "min_uptime",     "restart_delay",    "restart_delay_max", "worker_timeout",
        "worker_max_rss", "shutdown_timeout", "max_connections", "max_header_bytes",
        "max_body_bytes", "header_timeout",   "body_timeout",   "keepalive_timeout",
        "send_timeout",   "gzip",             "max_sessions",
    };
    const char *path = "../../conf/sessiond.conf";
    char err[CONF_ERR_LEN] = "", line[1024];
    struct conf c, def;
    ck_assert_msg(conf_load_file(&c, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "0.0.0.0:8080");
    ck_assert_ptr_nonnull(strstr(c.pidfile, "/conf/sessiond.pid"));

    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int seen[sizeof names / sizeof *names] = {0};
    char all[16384] = "";
    conf_defaults(&def);
    while (fgets(line, sizeof line, f) != NULL) {
        const char *s = line[0] == '#' && line[1] == ' ' ? line + 2 : line;
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            size_t n = strlen(names[i]);
            if (strncmp(s, names[i], n) != 0 || s[n] != ' ')
                continue;
            seen[i]++;
            strncat(all, s, sizeof all - strlen(all) - 1);
            if (strcmp(names[i], "instance") == 0 || strcmp(names[i], "pidfile") == 0)
                continue;
            struct conf one;
            char value[256];
            conf_defaults(&one);
            snprintf(value, sizeof value, "%s %s", names[i], s + n + 1);
            ck_assert_msg(conf_load_string(&one, "line", value, err, sizeof err) == 0, "%s", err);
            ck_assert_msg(memcmp(&one, &def, sizeof one) == 0, "not the default: %s", s);
        }
    }
    fclose(f);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        ck_assert_msg(seen[i] == 1, "%s appears %d times", names[i], seen[i]);
    ck_assert_msg(conf_load_string(&c, "uncommented", all, err, sizeof err) == 0, "%s", err);
}
END_TEST

/* ---- environment ---- */

/* The fake environment: pairs of name and value, ending with NULL. */
static const char *const *fake_env;

static char *
fake_getenv(const char *name)
{
    for (const char *const *p = fake_env; p != NULL && *p != NULL; p += 2)
        if (strcmp(p[0], name) == 0)
            return (char *)(uintptr_t)p[1]; /* getenv's type; nobody writes through it */
    return NULL;
}

static void
env_ok(struct conf *c, const char *const *env)
{
    char err[CONF_ERR_LEN] = "";
    fake_env = env;
    ck_assert_msg(conf_apply_env(c, fake_getenv, err, sizeof err) == 0, "%s", err);
}

static void
env_fails(const char *const *env, const char *want)
{
    struct conf c, before;
    char err[CONF_ERR_LEN] = "";
    conf_defaults(&c);
    before = c;
    fake_env = env;
    ck_assert_int_eq(conf_apply_env(&c, fake_getenv, err, sizeof err), -1);
    ck_assert_str_eq(err, want);
    ck_assert_int_eq(memcmp(&c, &before, sizeof c), 0);
}

START_TEST(env_port_host)
{
    struct conf c;
    load_ok(&c, "listen unix:/tmp/a.sock\nlisten 127.0.0.1:9000\nlisten 9001\n");
    env_ok(&c, (const char *const[]){"PORT", "3000", NULL});
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "0.0.0.0:3000");
    ck_assert_str_eq(c.listen[0].host, "0.0.0.0");
    ck_assert_int_eq(c.listen[0].port, 3000);

    /* HOST alone keeps the port of the first INET listener. */
    load_ok(&c, "listen unix:/tmp/a.sock\nlisten 127.0.0.1:9000\n");
    env_ok(&c, (const char *const[]){"HOST", "::1", NULL});
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "[::1]:9000");
    ck_assert_int_eq(c.listen[0].family, AF_INET6);

    load_ok(&c, "listen unix:/tmp/a.sock\n");
    env_ok(&c, (const char *const[]){"HOST", "::", "PORT", "5000", NULL});
    ck_assert_str_eq(c.listen[0].text, "[::]:5000");
    load_ok(&c, "listen unix:/tmp/a.sock\n");
    env_ok(&c, (const char *const[]){"HOST", "127.0.0.1", NULL});
    ck_assert_str_eq(c.listen[0].text, "127.0.0.1:8080");
    env_ok(&c, (const char *const[]){"HOST", "[::1]", "PORT", "", NULL});
    ck_assert_str_eq(c.listen[0].text, "[::1]:8080");

    env_fails((const char *const[]){"PORT", "http", NULL},
              "environment PORT: invalid port \"http\" (must be 1-65535)");
    env_fails((const char *const[]){"PORT", "70000", NULL},
              "environment PORT: invalid port \"70000\" (must be 1-65535)");
    env_fails((const char *const[]){"HOST", "localhost", NULL},
              "environment HOST: invalid IPv4 address \"localhost\" in listen "
              "\"localhost:8080\"");
}
END_TEST

START_TEST(env_workers)
{
    struct conf c;
    conf_defaults(&c);
    env_ok(&c, (const char *const[]){"WEB_CONCURRENCY", "2", NULL});
    ck_assert_int_eq(c.workers, 2);
    env_ok(&c, (const char *const[]){"WEB_CONCURRENCY", "2", "WORKERS", "3", NULL});
    ck_assert_int_eq(c.workers, 3);
    env_ok(&c, (const char *const[]){"WORKERS", "5", "WEB_CONCURRENCY", "6", NULL});
    ck_assert_int_eq(c.workers, 5);
    env_ok(&c, (const char *const[]){"SESSIOND_WORKERS", "9", "WEB_CONCURRENCY", "4", NULL});
    ck_assert_int_eq(c.workers, 4);
    env_ok(&c, (const char *const[]){"WORKERS", "auto", NULL});
    ck_assert_int_eq(c.workers, 0);
    env_ok(&c, (const char *const[]){"WORKERS", "", "WEB_CONCURRENCY", "", NULL});
    ck_assert_int_eq(c.workers, 0);
    env_fails((const char *const[]){"WORKERS", "100", NULL},
              "environment WORKERS: \"workers\" must be between 1 and 64");
    env_fails((const char *const[]){"WEB_CONCURRENCY", "x", "WORKERS", "2", NULL},
              "environment WEB_CONCURRENCY: invalid value \"x\" for \"workers\": expected auto "
              "or a number");
}
END_TEST

START_TEST(env_clustering)
{
    static const char *const off[] = {"false", "0", "no", "off", "FALSE"};
    static const char *const on[] = {"true", "1", "yes", "on", "True"};
    struct conf c;
    conf_defaults(&c);
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        c.clustering = true;
        env_ok(&c, (const char *const[]){"ENABLE_CLUSTERING", off[i], NULL});
        ck_assert_msg(!c.clustering, "%s", off[i]);
    }
    for (size_t i = 0; i < sizeof on / sizeof *on; i++) {
        c.clustering = false;
        env_ok(&c, (const char *const[]){"ENABLE_CLUSTERING", on[i], NULL});
        ck_assert_msg(c.clustering, "%s", on[i]);
    }
    env_fails((const char *const[]){"ENABLE_CLUSTERING", "maybe", NULL},
              "environment ENABLE_CLUSTERING: invalid value \"maybe\" for \"clustering\": "
              "expected on/off, yes/no, true/false or 1/0");
}
END_TEST

START_TEST(env_directives)
{
    struct conf c;
    load_ok(&c, "max_body_bytes 4m\nlisten 1.2.3.4:1\nlisten 1.2.3.4:2\n");
    env_ok(&c, (const char *const[]){"SESSIOND_MAX_BODY_BYTES", "2m",
                                     "SESSIOND_LISTEN", "unix:/tmp/e.sock",
                                     "SESSIOND_GZIP", "off",
                                     "SESSIOND_KEEPALIVE_TIMEOUT", "0",
                                     "SESSIOND_PIDFILE", "rel.pid",
                                     "SESSIOND_API_KEY", "reserved for later",
                                     "LOG_LEVEL", "debug",
                                     "SESSIOND_LOG_LEVEL", "error",
                                     "SESSIOND_MAX_SESSIONS", "", NULL});
    ck_assert_int_eq(c.max_body_bytes, 2097152);
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_int_eq(c.listen[0].family, AF_UNIX);
    ck_assert_str_eq(c.listen[0].host, "/tmp/e.sock");
    ck_assert(!c.gzip);
    ck_assert_int_eq(c.keepalive_timeout_ms, 0);
    ck_assert_str_eq(c.pidfile, "rel.pid");
    ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG); /* LOG_LEVEL beats SESSIOND_LOG_LEVEL */
    ck_assert_int_eq(c.max_sessions, 100000);

    /* Nothing set: nothing changes. */
    struct conf before = c;
    env_ok(&c, (const char *const[]){NULL});
    ck_assert_int_eq(memcmp(&c, &before, sizeof c), 0);

    env_fails((const char *const[]){"SESSIOND_MAX_BODY_BYTES", "12x", NULL},
              "environment SESSIOND_MAX_BODY_BYTES: invalid size \"12x\" for \"max_body_bytes\"");
    env_fails((const char *const[]){"LOG_LEVEL", "loud", NULL},
              "environment LOG_LEVEL: invalid log level \"loud\" for \"log_level\": expected "
              "error, warn, info or debug");
    env_fails((const char *const[]){"SESSIOND_RESTART_DELAY_MAX", "10ms", NULL},
              "environment SESSIOND_RESTART_DELAY_MAX: \"restart_delay_max\" (10ms) must not be "
              "less than \"restart_delay\" (100ms)");
    env_fails((const char *const[]){"SESSIOND_RESTART_DELAY", "1m", NULL},
              "environment: \"restart_delay_max\" (30s) must not be less than "
              "\"restart_delay\" (1m)");
}
END_TEST

/* A SESSIOND_ variable must name a directive: a typo is refused like a misspelt line of
 * the file, with the near miss named. The few that are not directives but are ours pass. */
static void
env_names_fail(const char *var, const char *want)
{
    char *envp[] = {(char *)(uintptr_t) "PATH=/bin", (char *)(uintptr_t)var, NULL};
    char err[CONF_ERR_LEN] = "";
    ck_assert_int_eq(conf_check_env_names(envp, err, sizeof err), -1);
    ck_assert_str_eq(err, want);
}

START_TEST(env_unknown_names)
{
    char err[CONF_ERR_LEN] = "";
    char *ok[] = {(char *)(uintptr_t) "SESSIOND_MAX_BODY_BYTES=2m",
                  (char *)(uintptr_t) "SESSIOND_API_KEY=k",
                  (char *)(uintptr_t) "SESSIOND_STORE=lmdb",
                  (char *)(uintptr_t) "SESSIOND_NAMESPACE=chat subscribe=any",
                  (char *)(uintptr_t) "SESSIOND_BIN=/usr/sbin/sessiond",
                  (char *)(uintptr_t) "SESSIOND_TEST_CRASH_FILE=/tmp/x",
                  (char *)(uintptr_t) "SESSIONDX=1",
                  (char *)(uintptr_t) "HOME=/root",
                  NULL};
    ck_assert_msg(conf_check_env_names(ok, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(conf_check_env_names((char *[]){NULL}, err, sizeof err), 0);

    env_names_fail("SESSIOND_MAX_BODY_BYTE=2m",
                   "environment SESSIOND_MAX_BODY_BYTE: unknown directive \"max_body_byte\" (did "
                   "you mean SESSIOND_MAX_BODY_BYTES?)");
    env_names_fail("SESSIOND_WROKERS=2", "environment SESSIOND_WROKERS: unknown directive "
                                         "\"wrokers\" (did you mean SESSIOND_WORKERS?)");
    env_names_fail("SESSIOND_COLOUR=blue",
                   "environment SESSIOND_COLOUR: unknown directive \"colour\"");
    env_names_fail("SESSIOND_NOTHING=", "environment SESSIOND_NOTHING: unknown directive "
                                        "\"nothing\"");
    env_names_fail("SESSIOND_=1", "environment SESSIOND_: unknown directive \"\"");
    env_names_fail("SESSIOND_gzip=off",
                   "environment SESSIOND_gzip: a directive's variable is in upper case: "
                   "SESSIOND_GZIP");
}
END_TEST

/* store_path, log_file and pidfile are files sessiond creates, never directories: one under
 * a directory that does not exist is a typo, refused with the directive and the path. */
START_TEST(paths_need_their_directory)
{
    char tmpl[] = "/tmp/conf-test-XXXXXX", text[512], want[512], err[CONF_ERR_LEN] = "";
    static const char *const names[] = {"store_path", "log_file", "pidfile"};
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    struct conf c;
    conf_defaults(&c);
    ck_assert_msg(conf_check_paths(&c, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(text, sizeof text, "%s %s/f\n", names[i], tmpl);
        load_ok(&c, text);
        ck_assert_msg(conf_check_paths(&c, err, sizeof err) == 0, "%s", err);
        snprintf(text, sizeof text, "%s %s/no/such/f\n", names[i], tmpl);
        load_ok(&c, text); /* the syntax is fine: the check is of the machine */
        ck_assert_int_eq(conf_check_paths(&c, err, sizeof err), -1);
        snprintf(want, sizeof want, "%s \"%s/no/such/f\": directory %s/no/such does not exist",
                 names[i], tmpl, tmpl);
        ck_assert_str_eq(err, want);
    }
    /* A bare name is in the working directory, which exists. */
    load_ok(&c, "store_path s.db\nlog_file s.log\npidfile s.pid\n");
    ck_assert_msg(conf_check_paths(&c, err, sizeof err) == 0, "%s", err);
    /* A file where a directory should be. */
    snprintf(text, sizeof text, "%s/plain", tmpl);
    write_file(text, "");
    snprintf(text, sizeof text, "log_file %s/plain/s.log\n", tmpl);
    load_ok(&c, text);
    ck_assert_int_eq(conf_check_paths(&c, err, sizeof err), -1);
    snprintf(want, sizeof want, "log_file \"%s/plain/s.log\": %s/plain is not a directory", tmpl,
             tmpl);
    ck_assert_str_eq(err, want);
    snprintf(text, sizeof text, "%s/plain", tmpl);
    unlink(text);
    rmdir(tmpl);
}
END_TEST

/* A reload cannot move the sessions: store and store_path stay what they were at start
 * (the same file spelt another way is no change); everything else may change. */
START_TEST(reload_keeps_the_store)
{
    char tmpl[] = "/tmp/conf-test-XXXXXX", text[512], want[1024], err[CONF_ERR_LEN] = "";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(text, sizeof text, "%s/sub", tmpl);
    ck_assert_int_eq(mkdir(text, 0700), 0);
    struct conf run, next;
    snprintf(text, sizeof text, "store_path %s/one.db\n", tmpl);
    load_ok(&run, text);
    snprintf(text, sizeof text, "store_path %s/sub/../one.db\nworkers 3\nmax_body_bytes 2m\n",
             tmpl);
    load_ok(&next, text);
    ck_assert_msg(conf_reload_check(&run, &next, err, sizeof err) == 0, "%s", err);

    snprintf(text, sizeof text, "store_path %s/sub/one.db\n", tmpl);
    load_ok(&next, text);
    ck_assert_int_eq(conf_reload_check(&run, &next, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "store_path cannot change on reload (from %s/one.db to %s/sub/one.db): restart "
             "sessiond to change it",
             tmpl, tmpl);
    ck_assert_str_eq(err, want);

    snprintf(text, sizeof text, "store_path %s/one.db\nstore redis\n", tmpl);
    load_ok(&next, text);
    ck_assert_int_eq(conf_reload_check(&run, &next, err, sizeof err), -1);
    ck_assert_str_eq(err, "store cannot change on reload (from lmdb to redis): restart sessiond "
                          "to change it");
    snprintf(text, sizeof text, "%s/sub", tmpl);
    rmdir(text);
    rmdir(tmpl);
}
END_TEST

/* An api_key anyone could guess is worth a warning: one under 32 characters. No key is
 * warned about elsewhere (the admin API then answers loopback peers only). */
START_TEST(short_api_key_warning)
{
    struct conf c;
    char msg[256] = "";
    conf_defaults(&c);
    ck_assert(!conf_key_warning(&c, msg, sizeof msg));
    load_ok(&c, "api_key x\n");
    ck_assert(conf_key_warning(&c, msg, sizeof msg));
    ck_assert_str_eq(msg, "api_key is 1 character long: anyone who guesses it holds the admin "
                          "API; use a random one of at least 32 (openssl rand -hex 32)");
    load_ok(&c, "api_key 0123456789012345678901234567890\n");
    ck_assert(conf_key_warning(&c, msg, sizeof msg));
    ck_assert_ptr_nonnull(strstr(msg, "api_key is 31 characters long"));
    load_ok(&c, "api_key 01234567890123456789012345678901\n");
    ck_assert(!conf_key_warning(&c, msg, sizeof msg));
}
END_TEST

/* ---- namespaces ---- */

START_TEST(namespace_directives)
{
    struct conf c;
    conf_defaults(&c);
    ck_assert_int_eq(c.namespaces.n, 1);
    ck_assert_str_eq(c.namespaces.v[0].name, "default");
    ck_assert_int_eq(c.namespaces.v[0].subscribe, NS_SUBSCRIBE_GRANT);
    ck_assert_int_eq(c.namespaces.v[0].publish, NS_PUBLISH_GRANT);
    ck_assert_int_eq(c.namespaces.v[0].presence, NS_PRESENCE_SUBSCRIBERS);

    /* Repeatable; each later key of default reaches the namespaces that left it out,
     * whatever the order in the file; a name given twice is the last one. */
    load_ok(&c, "namespace user subscribe=owner publish=none\n"
                "namespace public subscribe=any publish=subscribers\n"
                "namespace \"room subscribe=grant\" history=10 history_ttl=30m\n"
                "namespace public subscribe=any\n"
                "namespace default presence=off\n");
    const struct ns_table *t = &c.namespaces;
    ck_assert_int_eq(t->n, 4);
    ck_assert_int_eq(t->v[0].presence, NS_PRESENCE_OFF);
    ck_assert_str_eq(t->v[1].name, "user");
    ck_assert_int_eq(t->v[1].subscribe, NS_SUBSCRIBE_OWNER);
    ck_assert_int_eq(t->v[1].publish, NS_PUBLISH_NONE);
    ck_assert_int_eq(t->v[1].presence, NS_PRESENCE_OFF);
    ck_assert_str_eq(t->v[2].name, "public");
    ck_assert_int_eq(t->v[2].publish, NS_PUBLISH_GRANT);
    ck_assert_str_eq(t->v[3].name, "room");
    ck_assert_int_eq(t->v[3].history, 10);
    ck_assert_int_eq(t->v[3].history_ttl_ms, 1800000);
    ck_assert_ptr_eq(ns_of(t, "user:alice", 10), &t->v[1]);

    /* Errors carry the file and line, and leave the config as it was. */
    struct conf before = c;
    char err[CONF_ERR_LEN];
    ck_assert_int_eq(conf_load_string(&c, "t.conf",
                                      "namespace a publish=any\n\nnamespace b publish=all\n",
                                      err, sizeof err),
                     -1);
    ck_assert_str_eq(err, "t.conf:3: invalid value \"all\" for \"publish\" in namespace \"b\": "
                          "expected grant, any, subscribers or none");
    ck_assert_int_eq(memcmp(&c, &before, sizeof c), 0);
    load_fails("namespace\n", "t.conf:1: invalid number of arguments in \"namespace\" directive");
    load_fails("namespace a subscribe=any publish=any presence=off join_events=on history=1 "
               "history_ttl=1s x\n",
               "t.conf:1: invalid number of arguments in \"namespace\" directive");
    load_fails("namespace a:b\n", "t.conf:1: invalid namespace name \"a:b\": 1-64 bytes of "
                                  "A-Z a-z 0-9 and _ . @ - (no ':')");
    load_fails("gzip on\nnamespace a frob=1 # a comment\n",
               "t.conf:2: unknown key \"frob\" (in \"frob=1\") in namespace \"a\": expected "
               "subscribe, publish, presence, join_events, history or history_ttl");
    load_fails("namespace a subscribe=any; b\n",
               "t.conf:1: one namespace per directive: \";\" separates namespaces only in "
               "SESSIOND_NAMESPACE");
    char text[4096] = "";
    size_t n = 0;
    for (int i = 1; i <= NS_MAX; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "namespace n%d\n", i);
    load_fails(text, "t.conf:64: too many namespaces (at most 64, default included)");

    /* conf_set takes one directive's value. */
    conf_defaults(&c);
    ck_assert_int_eq(conf_set(&c, "namespace", "chat publish=any", err, sizeof err), 0);
    ck_assert_int_eq(c.namespaces.n, 2);
    ck_assert_int_eq(conf_set(&c, "namespace", "", err, sizeof err), -1);
    ck_assert_str_eq(err, "missing namespace name (namespace NAME key=value...)");
}
END_TEST

/* The example file's namespace lines load together, and the default it shows is the
 * built-in one. */
START_TEST(example_namespaces)
{
    FILE *f = fopen("../../conf/sessiond.conf", "r");
    ck_assert_ptr_nonnull(f);
    char line[1024], all[4096] = "", err[CONF_ERR_LEN] = "";
    int n = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "# namespace ", 12) != 0)
            continue;
        strncat(all, line + 2, sizeof all - strlen(all) - 1);
        n++;
    }
    fclose(f);
    ck_assert_int_eq(n, 4);
    struct conf c, def;
    conf_defaults(&def);
    ck_assert_msg(conf_load_string(&c, "example", all, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.namespaces.n, 4);
    const struct ns_rules *d = &c.namespaces.v[0], *b = &def.namespaces.v[0];
    ck_assert_int_eq(d->subscribe, b->subscribe);
    ck_assert_int_eq(d->publish, b->publish);
    ck_assert_int_eq(d->presence, b->presence);
    ck_assert_int_eq(d->join_events, b->join_events);
    ck_assert_int_eq(d->history, b->history);
    ck_assert_int_eq(d->history_ttl_ms, b->history_ttl_ms);
}
END_TEST

START_TEST(namespace_file_errors)
{
    char tmpl[] = "/tmp/conf-test-XXXXXX", file[128], want[512];
    char err[CONF_ERR_LEN] = "";
    struct conf c;
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(file, sizeof file, "%s/sessiond.conf", tmpl);
    write_file(file, "# channels\nnamespace user subscribe=owner publish=none\n"
                     "namespace user subscribe=mine\n");
    ck_assert_int_eq(conf_load_file(&c, file, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s:3: invalid value \"mine\" for \"subscribe\" in namespace \"user\": expected "
             "grant, any, owner or none",
             file);
    ck_assert_str_eq(err, want);
    write_file(file, "namespace user subscribe=owner publish=none\n");
    ck_assert_msg(conf_load_file(&c, file, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.namespaces.n, 2);
    unlink(file);
    rmdir(tmpl);
}
END_TEST

START_TEST(namespace_env)
{
    struct conf c;
    load_ok(&c, "namespace user subscribe=owner\nnamespace room history=5\n");
    env_ok(&c, (const char *const[]){"SESSIOND_NAMESPACE",
                                     "user subscribe=owner publish=none; public subscribe=any;"
                                     " ; default join_events=off",
                                     NULL});
    const struct ns_table *t = &c.namespaces;
    ck_assert_int_eq(t->n, 4);
    ck_assert_int_eq(t->v[1].publish, NS_PUBLISH_NONE); /* replaced by the environment */
    ck_assert(!t->v[1].join_events);                    /* and finished again */
    ck_assert_int_eq(t->v[2].history, 5);               /* the file's, kept */
    ck_assert_str_eq(t->v[3].name, "public");
    ck_assert_int_eq(t->v[3].subscribe, NS_SUBSCRIBE_ANY);
    ck_assert(!t->v[3].join_events);
    ck_assert(!t->v[0].join_events);

    env_fails((const char *const[]){"SESSIOND_NAMESPACE", "a subscribe=any; b subscribe=al",
                                    NULL},
              "environment SESSIOND_NAMESPACE: invalid value \"al\" for \"subscribe\" in "
              "namespace \"b\": expected grant, any, owner or none");
    env_fails((const char *const[]){"SESSIOND_NAMESPACE", "a:b", NULL},
              "environment SESSIOND_NAMESPACE: invalid namespace name \"a:b\": 1-64 bytes of "
              "A-Z a-z 0-9 and _ . @ - (no ':')");
}
END_TEST

/* ---- TLS ---- */

static void
listen_tls_is(const char *s, const char *text, bool tls)
{
    struct conf_listen l;
    char err[CONF_ERR_LEN] = "";
    ck_assert_msg(conf_parse_listen(s, &l, err, sizeof err) == 0, "%s: %s", s, err);
    ck_assert_str_eq(l.text, text);
    ck_assert_int_eq(l.tls, tls);
}

START_TEST(listen_tls_flag)
{
    listen_tls_is("0.0.0.0:443 tls", "0.0.0.0:443", true);
    listen_tls_is("8443\ttls", "8443", true);
    listen_tls_is("[::1]:443 tls", "[::1]:443", true);
    listen_tls_is("unix:/run/s.sock tls", "unix:/run/s.sock", true);
    listen_tls_is("127.0.0.1:80", "127.0.0.1:80", false);
    listen_fails("443 ssl", "unknown flag \"ssl\" in listen \"443 ssl\" (only tls)");
    listen_fails("443 TLS", "unknown flag \"TLS\" in listen \"443 TLS\" (only tls)");
    listen_fails("tls", "missing port in listen \"tls\"");

    struct conf c;
    load_ok(&c, "listen 127.0.0.1:8443 tls\nlisten 8080\ntls_cert c.pem\ntls_key k.pem\n");
    ck_assert_int_eq(c.nlisten, 2);
    ck_assert(c.listen[0].tls);
    ck_assert_str_eq(c.listen[0].text, "127.0.0.1:8443");
    ck_assert_int_eq(c.listen[0].port, 8443);
    ck_assert(!c.listen[1].tls);
    ck_assert(conf_uses_tls(&c));
    /* The same address with and without the flag is still one address. */
    load_fails("listen 8443 tls\nlisten 8443\ntls_cert c\ntls_key k\n",
               "t.conf:2: duplicate listen \"8443\"");
    load_fails("listen 8443 tls tls\n",
               "t.conf:1: invalid number of arguments in \"listen\" directive");
    load_fails("listen 8443 ssl\n", "t.conf:1: unknown flag \"ssl\" in listen \"8443 ssl\" (only tls)");
}
END_TEST

START_TEST(tls_directives)
{
    struct conf c;
    conf_defaults(&c);
    ck_assert(!conf_uses_tls(&c));
    ck_assert_str_eq(c.tls_cert, "");
    ck_assert_str_eq(c.tls_key, "");
    ck_assert_int_eq(c.tls_protocols, CONF_TLS_1_2 | CONF_TLS_1_3);
    ck_assert_int_eq(c.tls_handshake_timeout_ms, 10000);
    ck_assert_ptr_nonnull(strstr(c.tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256"));

    load_ok(&c, "tls_protocols TLSv1.3\ntls_handshake_timeout 500ms\n"
                "tls_ciphers ECDHE-RSA-AES256-GCM-SHA384\n");
    ck_assert_int_eq(c.tls_protocols, CONF_TLS_1_3);
    ck_assert_int_eq(c.tls_handshake_timeout_ms, 500);
    ck_assert_str_eq(c.tls_ciphers, "ECDHE-RSA-AES256-GCM-SHA384");
    load_ok(&c, "tls_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3\n");
    ck_assert_int_eq(c.tls_protocols, CONF_TLS_1_0 | CONF_TLS_1_1 | CONF_TLS_1_2 | CONF_TLS_1_3);
    load_ok(&c, "tls_protocols \"TLSv1.2 TLSv1.3\"\n");
    ck_assert_int_eq(c.tls_protocols, CONF_TLS_1_2 | CONF_TLS_1_3);

    int mask = -1;
    char err[CONF_ERR_LEN];
    ck_assert_int_eq(conf_parse_tls_protocols("  TLSv1.2\tTLSv1.2 ", &mask, err, sizeof err), 0);
    ck_assert_int_eq(mask, CONF_TLS_1_2);

    load_fails("tls_protocols SSLv3\n",
               "t.conf:1: unknown TLS version \"SSLv3\" in \"tls_protocols\" (TLSv1, TLSv1.1, "
               "TLSv1.2 or TLSv1.3)");
    load_fails("tls_protocols TLSv1.2 tlsv1.3\n",
               "t.conf:1: unknown TLS version \"tlsv1.3\" in \"tls_protocols\" (TLSv1, TLSv1.1, "
               "TLSv1.2 or TLSv1.3)");
    load_fails("tls_protocols \"\"\n",
               "t.conf:1: \"tls_protocols\" must name at least one TLS version");
    load_fails("tls_protocols\n",
               "t.conf:1: invalid number of arguments in \"tls_protocols\" directive");
    load_fails("tls_cert a b\n", "t.conf:1: invalid number of arguments in \"tls_cert\" directive");
    load_fails("tls_handshake_timeout 0\n",
               "t.conf:1: \"tls_handshake_timeout\" must be between 1ms and 10m");
    load_fails("tls_ciphers \"\"\n", "t.conf:1: \"tls_ciphers\" must not be empty");
    load_fails("listen 8443 tls\n",
               "t.conf: a listen with the tls flag needs \"tls_cert\" and \"tls_key\"");
    load_fails("listen 8443 tls\ntls_cert c.pem\n",
               "t.conf:2: a listen with the tls flag needs \"tls_cert\" and \"tls_key\"");
    /* Certificates without a TLS listener are allowed (and unused). */
    load_ok(&c, "tls_cert c.pem\n");
}
END_TEST

START_TEST(tls_env)
{
    struct conf c;
    conf_defaults(&c);
    env_ok(&c, (const char *const[]){"SESSIOND_TLS_PROTOCOLS", "TLSv1.3", "SESSIOND_LISTEN",
                                     "127.0.0.1:8443 tls", "SESSIOND_TLS_CERT", "/c.pem",
                                     "SESSIOND_TLS_KEY", "/k.pem", NULL});
    ck_assert_int_eq(c.tls_protocols, CONF_TLS_1_3);
    ck_assert(c.listen[0].tls);
    ck_assert_str_eq(c.tls_cert, "/c.pem");
    /* PORT moves a TLS listener and keeps it TLS. */
    load_ok(&c, "listen 127.0.0.1:8443 tls\ntls_cert c\ntls_key k\n");
    env_ok(&c, (const char *const[]){"PORT", "9443", NULL});
    ck_assert_int_eq(c.nlisten, 1);
    ck_assert_str_eq(c.listen[0].text, "0.0.0.0:9443");
    ck_assert(c.listen[0].tls);
    env_fails((const char *const[]){"SESSIOND_LISTEN", "8443 tls", NULL},
              "environment: a listen with the tls flag needs \"tls_cert\" and \"tls_key\"");
}
END_TEST

Suite *
conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *units = tcase_create("units");
    tcase_add_test(units, size_units);
    tcase_add_test(units, size_bad);
    tcase_add_test(units, duration_units);
    tcase_add_test(units, duration_bad);
    tcase_add_test(units, bools);
    tcase_add_test(units, listen_forms);
    tcase_add_test(units, listen_bad);
    suite_add_tcase(s, units);

    TCase *file = tcase_create("file");
    tcase_add_test(file, defaults);
    tcase_add_test(file, full_file);
    tcase_add_test(file, bounds_accepted);
    tcase_add_test(file, error_messages);
    tcase_add_test(file, too_many_listens);
    tcase_add_test(file, failed_load_keeps_old);
    tcase_add_test(file, quoting_and_comments);
    tcase_add_test(file, listen_replaces_then_appends);
    tcase_add_test(file, cross_field_restart_delay);
    tcase_add_test(file, user_and_group);
    tcase_add_test(file, set_by_name);
    tcase_add_test(file, relative_paths);
    tcase_add_test(file, unreadable_files);
    tcase_add_test(file, example_file);
    tcase_add_test(file, paths_need_their_directory);
    tcase_add_test(file, reload_keeps_the_store);
    tcase_add_test(file, short_api_key_warning);
    suite_add_tcase(s, file);

    TCase *env = tcase_create("env");
    tcase_add_test(env, env_port_host);
    tcase_add_test(env, env_workers);
    tcase_add_test(env, env_clustering);
    tcase_add_test(env, env_directives);
    tcase_add_test(env, env_unknown_names);
    suite_add_tcase(s, env);

    TCase *ns = tcase_create("namespaces");
    tcase_add_test(ns, namespace_directives);
    tcase_add_test(ns, namespace_file_errors);
    tcase_add_test(ns, example_namespaces);
    tcase_add_test(ns, namespace_env);
    suite_add_tcase(s, ns);

    TCase *tls = tcase_create("tls");
    tcase_add_test(tls, listen_tls_flag);
    tcase_add_test(tls, tls_directives);
    tcase_add_test(tls, tls_env);
    suite_add_tcase(s, tls);
    return s;
}
