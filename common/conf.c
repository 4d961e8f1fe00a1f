#include "conf.h"
#include "privs.h"
#include "redis_sentinel.h"
#include "redis_url.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* Units, so that the table reads the way a config file does. */
#define MS(n) ((int64_t)(n))
#define SEC(n) ((int64_t)(n) * 1000)
#define MIN(n) ((int64_t)(n) * 60 * 1000)
#define HOUR(n) ((int64_t)(n) * 3600 * 1000)
#define KIB(n) ((int64_t)(n) << 10)
#define MIB(n) ((int64_t)(n) << 20)
#define GIB(n) ((int64_t)(n) << 30)

/* A config file larger than this is a mistake (or /dev/zero), not a config. */
#define CONF_MAX_FILE_BYTES (4 << 20)

enum conf_type {
    CT_INT,      /* a bare decimal number */
    CT_SIZE,     /* bytes, with k/m/g suffixes */
    CT_DURATION, /* milliseconds, with ms/s/m/h suffixes; bare = seconds */
    CT_BOOL,     /* on/off, yes/no, true/false, 1/0 */
    CT_STRING,   /* text into a char array; min and max bound its length */
    CT_PATH,     /* a string; relative paths in a file follow the file */
    CT_OUT_PATH, /* a CT_PATH that sessiond creates: its directory must exist */
    CT_LOG_LEVEL,
    CT_LOG_FORMAT,
    CT_WORKERS, /* "auto" (0) or a number */
    CT_LISTEN,  /* repeatable: the first one in a source replaces the defaults */
    CT_TLS_PROTOCOLS, /* a list of TLS versions, as CONF_TLS_* bits */
    CT_NAMESPACE,     /* repeatable: "NAME key=value...", parsed by namespace.c */
};

struct directive {
    const char *name;
    enum conf_type type;
    size_t offset;    /* of the field in struct conf */
    size_t size;      /* of the field: which integer type it is, or a string's bound */
    int64_t min, max; /* bounds of the value (of the length, for strings) */
    bool zero_off;    /* 0 is also allowed, outside [min, max], and means "off" */
    const char *def;  /* default text, read by the same setter as a file value */
    /* A check across fields, run once the whole source has been read. */
    int (*check)(const struct conf *c, char *err, size_t errlen);
    const char *help;
};

/* Where values come from while one file, string or environment variable is applied. */
struct source {
    const char *dir;  /* directory for relative paths, or NULL to keep them as written */
    bool listen_seen; /* a listen from this source has already replaced the old ones */
    bool env;         /* an environment variable: a namespace value may hold several */
};

static int check_restart_delay_max(const struct conf *c, char *err, size_t errlen);
static int check_instance(const struct conf *c, char *err, size_t errlen);
static int check_session_ttl(const struct conf *c, char *err, size_t errlen);
static int check_store(const struct conf *c, char *err, size_t errlen);
static int check_redis_url(const struct conf *c, char *err, size_t errlen);
static int check_redis_sentinels(const struct conf *c, char *err, size_t errlen);
static int check_user(const struct conf *c, char *err, size_t errlen);
static int check_tls(const struct conf *c, char *err, size_t errlen);

#define FIELD(f) offsetof(struct conf, f), sizeof(((struct conf *)0)->f)

static const struct directive directives[] = {
    {"listen", CT_LISTEN, FIELD(listen), 0, 0, false, "0.0.0.0:8080", NULL,
     "address to accept connections on: PORT, IPV4:PORT, [IPV6]:PORT or unix:PATH, then "
     "tls to speak HTTPS and WSS there"},
    {"backlog", CT_INT, FIELD(backlog), 1, 65535, false, "511", NULL,
     "length of the kernel's queue of connections not yet accepted"},
    {"workers", CT_WORKERS, FIELD(workers), 1, CONF_MAX_WORKERS, false, "auto", NULL,
     "worker processes: auto (the CPUs this process may use) or a number"},
    {"clustering", CT_BOOL, FIELD(clustering), 0, 0, false, "on", NULL,
     "off: one process serves, with no master"},
    {"pidfile", CT_OUT_PATH, FIELD(pidfile), 0, 0, false, "", NULL,
     "file holding the master's pid; empty for none"},
    {"log_file", CT_OUT_PATH, FIELD(log_file), 0, 0, false, "", NULL,
     "file the log is appended to; empty for stderr"},
    {"log_level", CT_LOG_LEVEL, FIELD(log_level), 0, 0, false, "info", NULL,
     "error, warn, info or debug"},
    {"log_format", CT_LOG_FORMAT, FIELD(log_format), 0, 0, false, "text", NULL,
     "text (a line of words) or json (one object per line, for log collectors)"},
    {"instance", CT_STRING, FIELD(instance), 1, 0, false, NULL, check_instance,
     "name reported by /api/health; default: the host name"},
    {"user", CT_STRING, FIELD(user), 0, 0, false, "", check_user,
     "a master started as root runs its workers as this user; empty: as the master"},
    {"group", CT_STRING, FIELD(group), 0, 0, false, "", NULL,
     "the workers' group with user; empty: the user's own group"},
    {"min_uptime", CT_DURATION, FIELD(min_uptime_ms), 0, HOUR(1), false, "1s", NULL,
     "a worker that dies sooner than this counts as a crash for the backoff"},
    {"restart_delay", CT_DURATION, FIELD(restart_delay_ms), MS(1), HOUR(1), false, "100ms",
     NULL, "first delay before respawning a crashed worker"},
    {"restart_delay_max", CT_DURATION, FIELD(restart_delay_max_ms), MS(1), HOUR(24), false,
     "30s", check_restart_delay_max, "the delay doubles after each crash up to this"},
    {"worker_timeout", CT_DURATION, FIELD(worker_timeout_ms), SEC(1), HOUR(1), false, "30s",
     NULL, "a worker without a heartbeat for this long is killed and replaced"},
    {"worker_max_rss", CT_SIZE, FIELD(worker_max_rss), MIB(1), GIB(1024), true, "0", NULL,
     "a worker above this resident size is replaced; 0 for no limit"},
    {"shutdown_timeout", CT_DURATION, FIELD(shutdown_timeout_ms), 0, HOUR(1), false, "10s",
     NULL, "time a drain may take before what is left is killed"},
    {"upgrade_timeout", CT_DURATION, FIELD(upgrade_timeout_ms), SEC(1), HOUR(1), false, "30s",
     NULL, "USR2: a new master whose workers do not all serve within this is stopped, and "
     "the old one goes on"},
    {"max_connections", CT_INT, FIELD(max_connections), 1, 1000000, false, "10000", NULL,
     "connections (HTTP and WebSocket) for the whole instance"},
    {"max_header_bytes", CT_SIZE, FIELD(max_header_bytes), KIB(1), MIB(1), false, "8k", NULL,
     "request line and headers; more is answered 431"},
    {"max_body_bytes", CT_SIZE, FIELD(max_body_bytes), 0, GIB(1), false, "1m", NULL,
     "request body; more is answered 413"},
    {"header_timeout", CT_DURATION, FIELD(header_timeout_ms), MS(1), HOUR(1), false, "10s",
     NULL, "time to receive the request line and headers"},
    {"body_timeout", CT_DURATION, FIELD(body_timeout_ms), MS(1), HOUR(1), false, "30s", NULL,
     "time to receive the request body"},
    {"keepalive_timeout", CT_DURATION, FIELD(keepalive_timeout_ms), MS(1), HOUR(1), true,
     "75s", NULL, "idle time between requests on a connection; 0 disables keep-alive"},
    {"send_timeout", CT_DURATION, FIELD(send_timeout_ms), MS(1), HOUR(1), false, "30s", NULL,
     "time a client may take to accept more of a response"},
    {"gzip", CT_BOOL, FIELD(gzip), 0, 0, false, "on", NULL,
     "compress responses over 1 KiB when the client accepts gzip"},
    {"max_connections_per_ip", CT_INT, FIELD(max_connections_per_ip), 1, 1000000, true, "0",
     NULL, "connections one address may hold over the instance; more get 429; 0: no limit"},
    {"rate_limit_per_ip", CT_INT, FIELD(rate_limit_per_ip), 1, 1000000, true, "0", NULL,
     "requests per second from one address (a burst of as many); more get 429; 0: no limit"},
    {"limit_exempt_loopback", CT_BOOL, FIELD(limit_exempt_loopback), 0, 0, false, "on", NULL,
     "on: the per-address limits do not apply to loopback clients"},
    {"max_inflight_per_user", CT_INT, FIELD(max_inflight_per_user), 1, 1000000, true, "5",
     NULL, "requests of one session token or user being served at once; more get 429"},
    {"tls_cert", CT_PATH, FIELD(tls_cert), 0, 0, false, "", check_tls,
     "PEM file with the certificate and its chain, for listeners with the tls flag"},
    {"tls_key", CT_PATH, FIELD(tls_key), 0, 0, false, "", NULL,
     "PEM file with the certificate's private key (read by the master before it forks)"},
    {"tls_protocols", CT_TLS_PROTOCOLS, FIELD(tls_protocols), 0, 0, false, "TLSv1.2 TLSv1.3",
     NULL, "TLS versions offered: some of TLSv1 TLSv1.1 TLSv1.2 TLSv1.3"},
    {"tls_ciphers", CT_STRING, FIELD(tls_ciphers), 1, 0, false,
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
     NULL, "OpenSSL cipher list for TLS 1.2 (TLS 1.3 keeps OpenSSL's suites)"},
    {"tls_handshake_timeout", CT_DURATION, FIELD(tls_handshake_timeout_ms), MS(1), MIN(10),
     false, "10s", NULL, "time a client has to complete the TLS handshake"},
    {"api_key", CT_STRING, FIELD(api_key), 0, 0, false, "", NULL,
     "bearer key for the admin API; empty: admin endpoints answer loopback peers only"},
    {"metrics_public", CT_BOOL, FIELD(metrics_public), 0, 0, false, "on", NULL,
     "off: /metrics needs the API key (or a loopback peer), like the admin API"},
    {"dashboard", CT_BOOL, FIELD(dashboard), 0, 0, false, "on", NULL,
     "serve the live dashboard page at /dashboard"},
    {"max_sessions", CT_INT, FIELD(max_sessions), 1, 100000000, false, "100000", NULL,
     "live sessions in the store; more are refused with 503 over_capacity"},
    {"max_sessions_per_user", CT_INT, FIELD(max_sessions_per_user), 1, 1000000, false, "100",
     NULL, "live sessions of one user; more are refused with 429 too_many_sessions"},
    {"session_max_bytes", CT_SIZE, FIELD(session_max_bytes), 16, MIB(1), false, "4k", NULL,
     "a session's data, serialized; more is refused with 413"},
    {"session_ttl", CT_DURATION, FIELD(session_ttl_ms), SEC(1), HOUR(24 * 365), false, "1h",
     NULL, "lifetime of a session created without a ttl"},
    {"session_max_ttl", CT_DURATION, FIELD(session_max_ttl_ms), SEC(1), HOUR(24 * 365), false,
     "720h", check_session_ttl, "the largest ttl a client may ask for"},
    {"session_rolling", CT_BOOL, FIELD(session_rolling), 0, 0, false, "off", NULL,
     "on: GET /api/session slides the session's expiry by its ttl"},
    {"store", CT_STRING, FIELD(store), 1, 0, false, "lmdb", check_store,
     "where sessions live: lmdb (embedded, one machine) or redis (many instances)"},
    {"store_path", CT_OUT_PATH, FIELD(store_path), 1, 0, false, "sessiond.db", NULL,
     "the embedded store's file (a -lock file sits beside it)"},
    {"store_sync", CT_BOOL, FIELD(store_sync), 0, 0, false, "off", NULL,
     "on: flush every commit to disk (survives power loss, slower)"},
    {"history_max_bytes", CT_SIZE, FIELD(history_max_bytes), MIB(1), GIB(1024), false, "64m", NULL,
     "disk for channel history (store_path-history); when full, messages are published "
     "without being kept"},
    {"redis_url", CT_STRING, FIELD(redis_url), 1, 0, false, "redis://127.0.0.1:6379/0",
     check_redis_url,
     "the Redis of store redis: redis[s]://[[user]:password@]host[:port][/db] or unix:/path"},
    {"redis_tls_ca", CT_PATH, FIELD(redis_tls_ca), 0, 0, false, "", NULL,
     "rediss://: PEM file of the CAs that sign Redis's certificate (default: the system's)"},
    {"redis_tls_cert", CT_PATH, FIELD(redis_tls_cert), 0, 0, false, "", NULL,
     "rediss://: PEM client certificate, for a Redis that asks for one (with redis_tls_key)"},
    {"redis_tls_key", CT_PATH, FIELD(redis_tls_key), 0, 0, false, "", NULL,
     "rediss://: the client certificate's private key"},
    {"redis_sentinels", CT_STRING, FIELD(redis_sentinels), 0, 0, false, "",
     check_redis_sentinels,
     "host:port,... of Redis Sentinels: the master named redis_master is found and followed "
     "through failovers (redis_url then gives only the scheme, password and database)"},
    {"redis_master", CT_STRING, FIELD(redis_master), 1, 0, false, "mymaster", NULL,
     "with redis_sentinels: the name the Sentinels monitor the master under"},
    {"redis_wait", CT_INT, FIELD(redis_wait), 0, 64, false, "0", NULL,
     "replicas every session write must reach (Redis WAIT) before it is acknowledged; "
     "fewer in time: 503 store_unavailable"},
    {"redis_cache_sessions", CT_INT, FIELD(redis_cache_sessions), 0, 10000000, false, "0",
     NULL,
     "sessions each worker keeps in memory while Redis tracks them (CLIENT TRACKING, "
     "Redis 6+): a change is refused everywhere within 100 ms; 0: no cache"},
    {"redis_prefix", CT_STRING, FIELD(redis_prefix), 0, 0, false, "sessiond:", NULL,
     "prefix of every key, so that several deployments can share one Redis"},
    {"redis_timeout", CT_DURATION, FIELD(redis_timeout_ms), MS(10), MIN(1), false, "2s", NULL,
     "a Redis command without an answer by then fails (503 store_unavailable)"},
    {"max_connections_per_user", CT_INT, FIELD(max_connections_per_user), 1, 1000000, false,
     "2", NULL, "WebSockets one user may hold open over the instance; more are refused 429"},
    {"ws_max_message_bytes", CT_SIZE, FIELD(ws_max_message_bytes), 125, MIB(16), false, "64k",
     NULL, "a WebSocket message from a client; larger ones close it with 1009"},
    {"ws_max_queue", CT_SIZE, FIELD(ws_max_queue), KIB(4), GIB(1), false, "1m", NULL,
     "bytes waiting for a slow WebSocket reader; beyond, it is closed with 1008"},
    /* At most 16384: a connection's channel count and capacity are 16-bit (channels.h). */
    {"ws_max_channels", CT_INT, FIELD(ws_max_channels), 1, 16384, false, "256", NULL,
     "channels one WebSocket may be in at once; one more is refused too_many_channels"},
    {"ws_rate_limit", CT_INT, FIELD(ws_rate_limit), 1, 1000000, true, "100", NULL,
     "messages per second a WebSocket client may send (a burst of as many); 0: no limit"},
    {"ws_ping_interval", CT_DURATION, FIELD(ws_ping_interval_ms), SEC(1), HOUR(1), false,
     "25s", NULL, "time between the server's pings on an idle WebSocket"},
    {"ws_pong_timeout", CT_DURATION, FIELD(ws_pong_timeout_ms), SEC(1), HOUR(1), false, "10s",
     NULL, "a WebSocket that does not answer a ping by then is closed"},
    {"ws_compression", CT_BOOL, FIELD(ws_compression), 0, 0, false, "on", NULL,
     "on: permessage-deflate when the client offers it"},
    {"client_publish", CT_BOOL, FIELD(client_publish), 0, 0, false, "on", NULL,
     "off: publish=none in every namespace (only POST /api/channels/{c}/publish); on: as "
     "each namespace's publish= says"},
    {"presence_events_max", CT_INT, FIELD(presence_events_max), 0, 1000000, false, "100", NULL,
     "join and leave events are sent while a channel has at most this many members"},
    {"ws_drain_spread", CT_DURATION, FIELD(ws_drain_spread_ms), 0, MIN(1), false, "2s", NULL,
     "a drain closes WebSockets (1001) spread over this time, not in one burst"},
    {"namespace", CT_NAMESPACE, FIELD(namespaces), 0, 0, false, NULL, NULL,
     "NAME key=value...: who may subscribe, publish and ask presence in the channels "
     "NAME:...; repeatable"},
};

#define NDIRECTIVES (sizeof directives / sizeof *directives)

static const struct directive *
find_directive(const char *name)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (strcmp(directives[i].name, name) == 0)
            return &directives[i];
    return NULL;
}

/* ---- Numbers and units ---- */

/* Read the decimal digits at the start of s. Signs, spaces and numbers that do not fit an
 * int64_t are refused rather than wrapped. Returns a pointer past the digits, or NULL. */
static const char *
parse_digits(const char *s, int64_t *out)
{
    int64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    if (p == s)
        return NULL;
    *out = v;
    return p;
}

int
conf_parse_number(const char *s, int64_t *out)
{
    const char *end = parse_digits(s, out);
    return end != NULL && *end == '\0' ? 0 : -1;
}

struct unit {
    const char *suffix;
    int64_t mult;
};

/* A number followed by one of units (matched without regard to case). */
static int
parse_with_unit(const char *s, const struct unit *units, size_t nunits, int64_t *out)
{
    int64_t v;
    const char *end = s != NULL ? parse_digits(s, &v) : NULL;
    if (end == NULL)
        return -1;
    for (size_t i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i].suffix) != 0)
            continue;
        if (v > INT64_MAX / units[i].mult)
            return -1;
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

static const struct unit size_units[] = {
    {"", 1}, {"k", KIB(1)}, {"m", MIB(1)}, {"g", GIB(1)},
};

/* Duration units, largest first, which is also the order format_duration wants. */
static const struct unit duration_units[] = {
    {"h", HOUR(1)}, {"m", MIN(1)}, {"", SEC(1)}, {"s", SEC(1)}, {"ms", MS(1)},
};

int
conf_parse_size(const char *s, int64_t *out)
{
    return parse_with_unit(s, size_units, sizeof size_units / sizeof *size_units, out);
}

int
conf_parse_duration_ms(const char *s, int64_t *out)
{
    return parse_with_unit(s, duration_units, sizeof duration_units / sizeof *duration_units,
                           out);
}

int
conf_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Write v in the largest unit that divides it exactly, so that messages show bounds the
 * way a user writes them ("1h", not "3600000"). */
static void
format_with_unit(int64_t v, const struct unit *units, size_t nunits, char *buf, size_t len)
{
    for (size_t i = 0; i < nunits; i++) {
        if (units[i].suffix[0] != '\0' && v != 0 && v % units[i].mult == 0) {
            snprintf(buf, len, "%lld%s", (long long)(v / units[i].mult), units[i].suffix);
            return;
        }
    }
    snprintf(buf, len, "%lld", (long long)v);
}

static void
format_value(const struct directive *d, int64_t v, char *buf, size_t len)
{
    static const struct unit size_desc[] = {{"g", GIB(1)}, {"m", MIB(1)}, {"k", KIB(1)}};
    if (d->type == CT_SIZE)
        format_with_unit(v, size_desc, 3, buf, len);
    else if (d->type == CT_DURATION)
        format_with_unit(v, duration_units, sizeof duration_units / sizeof *duration_units,
                         buf, len);
    else
        snprintf(buf, len, "%lld", (long long)v);
}

static void
format_duration(int64_t ms, char *buf, size_t len)
{
    format_with_unit(ms, duration_units, sizeof duration_units / sizeof *duration_units, buf,
                     len);
}

/* ---- Setters, one per type ---- */

static int
check_range(const struct directive *d, int64_t v, char *err, size_t errlen)
{
    if ((v >= d->min && v <= d->max) || (d->zero_off && v == 0))
        return 0;
    char lo[32], hi[32];
    format_value(d, d->min, lo, sizeof lo);
    format_value(d, d->max, hi, sizeof hi);
    if (d->zero_off)
        errf(err, errlen, "\"%s\" must be 0 (off) or between %s and %s", d->name, lo, hi);
    else
        errf(err, errlen, "\"%s\" must be between %s and %s", d->name, lo, hi);
    return -1;
}

/* Store v into the integer field of d, an int or an int64_t as the table says. */
static void
store_int(struct conf *c, const struct directive *d, int64_t v)
{
    char *field = (char *)c + d->offset;
    if (d->size == sizeof(int64_t)) {
        memcpy(field, &v, sizeof v);
    } else {
        int i = (int)v; /* check_range has bounded v to the int fields' ranges */
        memcpy(field, &i, sizeof i);
    }
}

static int
set_number(struct conf *c, const struct directive *d, const char *v, char *err,
           size_t errlen)
{
    int64_t n;
    int rc;
    const char *what;
    if (d->type == CT_SIZE) {
        rc = conf_parse_size(v, &n);
        what = "size";
    } else if (d->type == CT_DURATION) {
        rc = conf_parse_duration_ms(v, &n);
        what = "duration";
    } else {
        rc = conf_parse_number(v, &n);
        what = "number";
    }
    if (rc < 0) {
        errf(err, errlen, "invalid %s \"%s\" for \"%s\"", what, v, d->name);
        return -1;
    }
    if (check_range(d, n, err, errlen) < 0)
        return -1;
    store_int(c, d, n);
    return 0;
}

static int
set_workers(struct conf *c, const struct directive *d, const char *v, char *err,
            size_t errlen)
{
    if (strcasecmp(v, "auto") == 0) {
        store_int(c, d, 0);
        return 0;
    }
    int64_t n;
    if (conf_parse_number(v, &n) < 0) {
        errf(err, errlen, "invalid value \"%s\" for \"%s\": expected auto or a number", v,
             d->name);
        return -1;
    }
    if (check_range(d, n, err, errlen) < 0)
        return -1;
    store_int(c, d, n);
    return 0;
}

static int
set_bool(struct conf *c, const struct directive *d, const char *v, char *err, size_t errlen)
{
    bool b;
    if (conf_parse_bool(v, &b) < 0) {
        errf(err, errlen,
             "invalid value \"%s\" for \"%s\": expected on/off, yes/no, true/false or 1/0", v,
             d->name);
        return -1;
    }
    memcpy((char *)c + d->offset, &b, sizeof b);
    return 0;
}

static int
set_log_level(struct conf *c, const struct directive *d, const char *v, char *err,
              size_t errlen)
{
    /* Lower-case first: LOG_LEVEL=DEBUG is how many environments spell it. */
    char lower[16];
    size_t n = strlen(v);
    int level = -1;
    if (n < sizeof lower) {
        for (size_t i = 0; i <= n; i++)
            lower[i] = (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] - 'A' + 'a' : v[i]);
        level = log_level_parse(lower);
    }
    if (level < 0) {
        errf(err, errlen,
             "invalid log level \"%s\" for \"%s\": expected error, warn, info or debug", v,
             d->name);
        return -1;
    }
    store_int(c, d, level);
    return 0;
}

static int
set_log_format(struct conf *c, const struct directive *d, const char *v, char *err,
               size_t errlen)
{
    int format = log_format_parse(v);
    if (format < 0) {
        errf(err, errlen, "invalid log format \"%s\" for \"%s\": expected text or json", v,
             d->name);
        return -1;
    }
    store_int(c, d, format);
    return 0;
}

/* Copy v into out, after dir when v is a relative path and dir is given. */
static int
resolve_path(const char *v, const char *dir, char *out, size_t outlen)
{
    int n;
    if (dir == NULL || v[0] == '\0' || v[0] == '/')
        n = snprintf(out, outlen, "%s", v);
    else
        n = snprintf(out, outlen, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", v);
    return n >= 0 && (size_t)n < outlen ? 0 : -1;
}

static int
set_string(struct conf *c, const struct directive *d, const char *v, const struct source *src,
           char *err, size_t errlen)
{
    char buf[4096];
    const char *dir = d->type == CT_PATH || d->type == CT_OUT_PATH ? src->dir : NULL;
    size_t max = d->size - 1;
    if (resolve_path(v, dir, buf, sizeof buf) < 0 || strlen(buf) > max) {
        errf(err, errlen, "value for \"%s\" is too long (at most %zu bytes)", d->name, max);
        return -1;
    }
    if (strlen(buf) < (size_t)d->min) {
        errf(err, errlen, "\"%s\" must not be empty", d->name);
        return -1;
    }
    memcpy((char *)c + d->offset, buf, strlen(buf) + 1);
    return 0;
}

/* ---- Listen addresses ---- */

static int
parse_port(const char *s, int *port)
{
    int64_t n;
    const char *end = parse_digits(s, &n);
    if (end == NULL || *end != '\0' || n < 1 || n > 65535)
        return -1;
    *port = (int)n;
    return 0;
}

/* Check a numeric address and store it in its canonical spelling, so that "::0001" and
 * "::1" compare equal when duplicates are looked for. */
static int
parse_inet(const char *host, int family, struct conf_listen *out)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(family, host, addr) != 1)
        return -1;
    if (inet_ntop(family, addr, out->host, sizeof out->host) == NULL)
        return -1;
    out->family = family;
    return 0;
}

static int
parse_listen_unix(const char *s, const char *dir, struct conf_listen *out, char *err,
                  size_t errlen)
{
    const char *path = s + strlen("unix:");
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    char buf[4096];
    if (*path == '\0') {
        errf(err, errlen, "missing socket path in listen \"%s\"", s);
        return -1;
    }
    if (resolve_path(path, dir, buf, sizeof buf) < 0 || strlen(buf) > max) {
        errf(err, errlen, "socket path in listen \"%s\" is too long (at most %zu bytes)", s,
             max);
        return -1;
    }
    out->family = AF_UNIX;
    memcpy(out->host, buf, strlen(buf) + 1);
    out->port = 0;
    return 0;
}

/* Split "HOST:PORT" or "[HOST]:PORT", in buf, into its parts. */
static int
split_host_port(char *buf, char **host, char **port, bool *bracketed, const char *s,
                char *err, size_t errlen)
{
    *bracketed = buf[0] == '[';
    if (*bracketed) {
        char *close = strchr(buf, ']');
        if (close == NULL || close[1] != ':') {
            errf(err, errlen, "expected [IPV6]:PORT in listen \"%s\"", s);
            return -1;
        }
        *close = '\0';
        *host = buf + 1;
        *port = close + 2;
        return 0;
    }
    char *colon = strrchr(buf, ':');
    if (colon == NULL) {
        errf(err, errlen, "missing port in listen \"%s\"", s);
        return -1;
    }
    *colon = '\0';
    if (strchr(buf, ':') != NULL) {
        errf(err, errlen, "IPv6 address must be in brackets in listen \"%s\"", s);
        return -1;
    }
    *host = buf;
    *port = colon + 1;
    return 0;
}

static int
parse_listen_inet(const char *s, struct conf_listen *out, char *err, size_t errlen)
{
    /* A bare port is the common case of "all IPv4 addresses", as nginx reads "listen 80". */
    char buf[sizeof out->text + sizeof "0.0.0.0:"];
    bool all_digits = strspn(s, "0123456789") == strlen(s);
    snprintf(buf, sizeof buf, "%s%s", all_digits ? "0.0.0.0:" : "", s);
    char *host, *port;
    bool v6;
    if (split_host_port(buf, &host, &port, &v6, s, err, errlen) < 0)
        return -1;
    if (parse_inet(host, v6 ? AF_INET6 : AF_INET, out) < 0) {
        errf(err, errlen, "invalid %s address \"%s\" in listen \"%s\"", v6 ? "IPv6" : "IPv4",
             host, s);
        return -1;
    }
    if (parse_port(port, &out->port) < 0) {
        errf(err, errlen, "invalid port \"%s\" in listen \"%s\" (must be 1-65535)", port, s);
        return -1;
    }
    return 0;
}

/* The flags after the address ("tls"), separated from it and each other by blanks. */
static int
parse_listen_flags(const char *flags, const char *s, struct conf_listen *l, char *err,
                   size_t errlen)
{
    while (*flags != '\0') {
        size_t n = strcspn(flags, " \t");
        if (n == 3 && strncmp(flags, "tls", 3) == 0) {
            l->tls = true;
        } else if (n > 0) {
            errf(err, errlen, "unknown flag \"%.*s\" in listen \"%s\" (only tls)", (int)n,
                 flags, s);
            return -1;
        }
        flags += n;
        flags += strspn(flags, " \t");
    }
    return 0;
}

static int
parse_listen(const char *s, const char *dir, struct conf_listen *out, char *err,
             size_t errlen)
{
    struct conf_listen l;
    memset(&l, 0, sizeof l);
    if (s == NULL || *s == '\0') {
        errf(err, errlen, "empty listen address");
        return -1;
    }
    size_t addr_len = strcspn(s, " \t");
    if (addr_len >= sizeof l.text) {
        errf(err, errlen, "listen address is too long (at most %zu bytes)",
             sizeof l.text - 1);
        return -1;
    }
    memcpy(l.text, s, addr_len);
    l.text[addr_len] = '\0';
    if (parse_listen_flags(s + addr_len, s, &l, err, errlen) < 0)
        return -1;
    int rc = strncmp(l.text, "unix:", 5) == 0 ? parse_listen_unix(l.text, dir, &l, err, errlen)
                                              : parse_listen_inet(l.text, &l, err, errlen);
    if (rc < 0)
        return -1;
    *out = l;
    return 0;
}

int
conf_parse_listen(const char *s, struct conf_listen *out, char *err, size_t errlen)
{
    return parse_listen(s, NULL, out, err, errlen);
}

static int
set_listen(struct conf *c, const char *v, struct source *src, char *err, size_t errlen)
{
    struct conf_listen l;
    if (parse_listen(v, src->dir, &l, err, errlen) < 0)
        return -1;
    /* The first listen of a file (or of the environment) replaces the defaults, so that
     * "listen 9000" means only port 9000; later ones in the same file add to it. */
    int n = src->listen_seen ? c->nlisten : 0;
    for (int i = 0; i < n; i++) {
        const struct conf_listen *o = &c->listen[i];
        if (o->family == l.family && o->port == l.port && strcmp(o->host, l.host) == 0) {
            errf(err, errlen, "duplicate listen \"%s\"", v);
            return -1;
        }
    }
    if (n >= CONF_MAX_LISTEN) {
        errf(err, errlen, "too many \"listen\" directives (at most %d)", CONF_MAX_LISTEN);
        return -1;
    }
    c->listen[n] = l;
    c->nlisten = n + 1;
    src->listen_seen = true;
    return 0;
}

static const struct {
    const char *name;
    int bit;
} tls_versions[] = {
    {"TLSv1", CONF_TLS_1_0}, {"TLSv1.1", CONF_TLS_1_1},
    {"TLSv1.2", CONF_TLS_1_2}, {"TLSv1.3", CONF_TLS_1_3},
};

int
conf_parse_tls_protocols(const char *s, int *out, char *err, size_t errlen)
{
    int mask = 0;
    for (const char *p = s + strspn(s, " \t"); *p != '\0'; p += strspn(p, " \t")) {
        size_t n = strcspn(p, " \t");
        int bit = 0;
        for (size_t i = 0; i < ARRAY_LEN(tls_versions) && bit == 0; i++)
            if (strlen(tls_versions[i].name) == n && strncmp(p, tls_versions[i].name, n) == 0)
                bit = tls_versions[i].bit;
        if (bit == 0) {
            errf(err, errlen,
                 "unknown TLS version \"%.*s\" in \"tls_protocols\" (TLSv1, TLSv1.1, TLSv1.2 "
                 "or TLSv1.3)",
                 (int)n, p);
            return -1;
        }
        mask |= bit;
        p += n;
    }
    if (mask == 0) {
        errf(err, errlen, "\"tls_protocols\" must name at least one TLS version");
        return -1;
    }
    *out = mask;
    return 0;
}

static int
set_tls_protocols(struct conf *c, const struct directive *d, const char *v, char *err,
                  size_t errlen)
{
    int mask;
    if (conf_parse_tls_protocols(v, &mask, err, errlen) < 0)
        return -1;
    store_int(c, d, mask);
    return 0;
}

/* A namespace directive (namespace.c parses it). One environment variable must carry what
 * a file says on many lines, so there ';' separates several. The table is finished after
 * each, so that it is whole however the sources end. */
static int
set_namespace(struct conf *c, const char *v, const struct source *src, char *err,
              size_t errlen)
{
    char one[1024];
    for (const char *p = v;; p++) {
        size_t n = src->env ? strcspn(p, ";") : strlen(p);
        if (n >= sizeof one) {
            errf(err, errlen, "namespace directive is too long (at most %zu bytes)",
                 sizeof one - 1);
            return -1;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        /* Blank pieces are skipped: "a subscribe=any;" ends a list as a shell writes it. */
        if ((!src->env || one[strspn(one, " \t\r\n")] != '\0') &&
            ns_table_add(&c->namespaces, one, err, errlen) < 0)
            return -1;
        ns_table_finish(&c->namespaces);
        p += n;
        if (*p == '\0')
            return 0;
    }
}

static int
set_directive(struct conf *c, const struct directive *d, const char *v, struct source *src,
              char *err, size_t errlen)
{
    switch (d->type) {
    case CT_INT:
    case CT_SIZE:
    case CT_DURATION:
        return set_number(c, d, v, err, errlen);
    case CT_BOOL:
        return set_bool(c, d, v, err, errlen);
    case CT_STRING:
    case CT_PATH:
    case CT_OUT_PATH:
        return set_string(c, d, v, src, err, errlen);
    case CT_LOG_LEVEL:
        return set_log_level(c, d, v, err, errlen);
    case CT_LOG_FORMAT:
        return set_log_format(c, d, v, err, errlen);
    case CT_WORKERS:
        return set_workers(c, d, v, err, errlen);
    case CT_LISTEN:
        return set_listen(c, v, src, err, errlen);
    case CT_TLS_PROTOCOLS:
        return set_tls_protocols(c, d, v, err, errlen);
    case CT_NAMESPACE:
        return set_namespace(c, v, src, err, errlen);
    }
    errf(err, errlen, "internal error: \"%s\" has no type", d->name);
    return -1;
}

int
conf_set(struct conf *c, const char *name, const char *value, char *err, size_t errlen)
{
    const struct directive *d = find_directive(name);
    struct source src = {NULL, false, false};
    if (d == NULL) {
        errf(err, errlen, "unknown directive \"%s\"", name);
        return -1;
    }
    if (value == NULL) {
        errf(err, errlen, "missing value for \"%s\"", name);
        return -1;
    }
    return set_directive(c, d, value, &src, err, errlen);
}

/* ---- Checks across fields ---- */

static int
check_restart_delay_max(const struct conf *c, char *err, size_t errlen)
{
    if (c->restart_delay_max_ms >= c->restart_delay_ms)
        return 0;
    char max[32], min[32];
    format_duration(c->restart_delay_max_ms, max, sizeof max);
    format_duration(c->restart_delay_ms, min, sizeof min);
    errf(err, errlen, "\"restart_delay_max\" (%s) must not be less than \"restart_delay\" (%s)",
         max, min);
    return -1;
}

/* The instance name goes into JSON and metrics labels as it is: keep it to the characters
 * of a host name and a few separators, so that it never needs escaping. */
static int
check_instance(const struct conf *c, char *err, size_t errlen)
{
    for (const char *p = c->instance; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("._:@-", *p) == NULL) {
            errf(err, errlen, "\"instance\" may hold only letters, digits and . _ : @ -");
            return -1;
        }
    }
    return 0;
}

static int
check_store(const struct conf *c, char *err, size_t errlen)
{
    if (strcmp(c->store, "lmdb") == 0 || strcmp(c->store, "redis") == 0)
        return 0;
    errf(err, errlen, "\"store\" must be lmdb or redis");
    return -1;
}

static int
check_redis_url(const struct conf *c, char *err, size_t errlen)
{
    struct redis_url u;
    char msg[CONF_ERR_LEN];
    if (redis_url_parse(c->redis_url, &u, msg, sizeof msg) == 0)
        return 0;
    errf(err, errlen, "invalid \"redis_url\": %s", msg);
    return -1;
}

static int
check_redis_sentinels(const struct conf *c, char *err, size_t errlen)
{
    struct sentinel_addr a[SENTINEL_MAX];
    return sentinel_config(c->redis_sentinels, c->redis_master, a, err, errlen) < 0 ? -1 : 0;
}

/* An unknown user or group is a config error (caught by -t and refused on reload), not a
 * worker that dies at every respawn. */
static int
check_user(const struct conf *c, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (c->user[0] == '\0') {
        if (c->group[0] == '\0')
            return 0;
        errf(err, errlen, "\"group\" needs \"user\"");
        return -1;
    }
    return privs_lookup(c, &uid, &gid, err, errlen);
}

bool
conf_uses_tls(const struct conf *c)
{
    for (int i = 0; i < c->nlisten; i++)
        if (c->listen[i].tls)
            return true;
    return false;
}

/* Whether the files can be read, and hold a key matching the certificate, is checked
 * when the TLS context is built (tls_ctx_build), which -t and a reload do as well. */
static int
check_tls(const struct conf *c, char *err, size_t errlen)
{
    if (!conf_uses_tls(c) || (c->tls_cert[0] != '\0' && c->tls_key[0] != '\0'))
        return 0;
    errf(err, errlen, "a listen with the tls flag needs \"tls_cert\" and \"tls_key\"");
    return -1;
}

static int
check_session_ttl(const struct conf *c, char *err, size_t errlen)
{
    if (c->session_max_ttl_ms >= c->session_ttl_ms)
        return 0;
    errf(err, errlen, "\"session_max_ttl\" must not be less than \"session_ttl\"");
    return -1;
}

/* Run the checks that need the whole config. Returns the index of the directive whose
 * check failed (its message in msg), or -1 when all pass. */
static int
run_checks(const struct conf *c, char *msg, size_t msglen)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (directives[i].check != NULL && directives[i].check(c, msg, msglen) < 0)
            return (int)i;
    return -1;
}

/* ---- Paths on this machine ---- */

/* The directory part of path, as dirname(3) has it: "." for a bare name, "/" at the root. */
static void
dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

int
conf_check_paths(const struct conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const struct directive *d = &directives[i];
        const char *path = (const char *)c + d->offset;
        char dir[4096];
        struct stat st;
        if (d->type != CT_OUT_PATH || path[0] == '\0') continue;
        dir_of(path, dir, sizeof dir);
        if (stat(dir, &st) != 0) {
            if (errno == ENOENT)
                errf(err, errlen, "%s \"%s\": directory %s does not exist", d->name, path, dir);
            else
                errf(err, errlen, "%s \"%s\": directory %s: %s", d->name, path, dir,
                     strerror(errno));
            return -1;
        }
        if (!S_ISDIR(st.st_mode)) {
            errf(err, errlen, "%s \"%s\": %s is not a directory", d->name, path, dir);
            return -1;
        }
    }
    return 0;
}

/* Whether a and b name the same file: the same text, or the same name in the same
 * directory (compared by device and inode, so "d/../x" is "x"). */
static bool
same_file_path(const char *a, const char *b)
{
    const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
    char da[4096], db[4096];
    struct stat sa, sb;
    if (strcmp(a, b) == 0) return true;
    if (strcmp(na != NULL ? na + 1 : a, nb != NULL ? nb + 1 : b) != 0) return false;
    dir_of(a, da, sizeof da);
    dir_of(b, db, sizeof db);
    return stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int
refuse_change(const char *what, const char *from, const char *to, char *err, size_t errlen)
{
    errf(err, errlen, "%s cannot change on reload (from %s to %s): restart sessiond to change it",
         what, from, to);
    return -1;
}

int
conf_reload_check(const struct conf *running, const struct conf *next, char *err, size_t errlen)
{
    if (strcmp(running->store, next->store) != 0)
        return refuse_change("store", running->store, next->store, err, errlen);
    if (!same_file_path(running->store_path, next->store_path))
        return refuse_change("store_path", running->store_path, next->store_path, err, errlen);
    return 0;
}

bool
conf_key_warning(const struct conf *c, char *msg, size_t msglen)
{
    size_t n = strlen(c->api_key);
    if (n == 0 || n >= CONF_API_KEY_MIN) return false;
    snprintf(msg, msglen,
             "api_key is %zu character%s long: anyone who guesses it holds the admin API; use a "
             "random one of at least %d (openssl rand -hex 32)",
             n, n == 1 ? "" : "s", CONF_API_KEY_MIN);
    return true;
}

/* ---- Defaults ---- */

static const char *
host_name(char *buf, size_t len)
{
    if (gethostname(buf, len) != 0 || buf[0] == '\0')
        return "sessiond";
    buf[len - 1] = '\0';
    /* Whatever the system allows in a host name, the instance name keeps to a safe set
     * (see check_instance), so that an odd host name cannot stop sessiond from starting. */
    for (char *p = buf; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("._:@-", *p) == NULL)
            *p = '-';
    return buf;
}

void
conf_defaults(struct conf *c)
{
    char host[256], msg[CONF_ERR_LEN];
    memset(c, 0, sizeof *c);
    /* The built-in namespace rules are a table, not the text of one directive. */
    ns_table_init(&c->namespaces);
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const struct directive *d = &directives[i];
        struct source src = {NULL, false, false};
        if (d->type == CT_NAMESPACE)
            continue;
        const char *def = d->def != NULL ? d->def : host_name(host, sizeof host);
        if (set_directive(c, d, def, &src, msg, sizeof msg) == 0)
            continue;
        /* Only a host name too long for "instance" gets here from outside the table. */
        if (d->def != NULL || set_directive(c, d, "sessiond", &src, msg, sizeof msg) < 0)
            abort(); /* a default that fails its own setter is a bug in the table */
    }
    if (run_checks(c, msg, sizeof msg) >= 0)
        abort();
}

/* ---- The file syntax ---- */

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Read a double-quoted word at r, unescaping \" and \\ in place towards w. */
static int
read_quoted(char **rp, char **wp, char *msg, size_t msglen)
{
    char *r = *rp + 1, *w = *wp;
    while (*r != '"') {
        if (*r == '\0') {
            errf(msg, msglen, "unterminated quoted string");
            return -1;
        }
        if (*r == '\\') {
            r++;
            if (*r != '"' && *r != '\\') {
                errf(msg, msglen, "invalid escape in quoted string (only \\\" and \\\\)");
                return -1;
            }
        }
        *w++ = *r++;
    }
    r++;
    if (*r != '\0' && *r != '#' && !is_blank(*r)) {
        errf(msg, msglen, "a closing quote must be followed by a space");
        return -1;
    }
    *rp = r;
    *wp = w;
    return 0;
}

/* Read one word at *pos, in place, and move *pos past it. A '#' outside quotes ends the
 * word and starts a comment that runs to the end of the line. */
static int
read_word(char **pos, char **word, char *msg, size_t msglen)
{
    char *r = *pos, *w = r;
    *word = w;
    if (*r == '"') {
        if (read_quoted(&r, &w, msg, msglen) < 0)
            return -1;
    } else {
        for (; *r != '\0' && *r != '#' && !is_blank(*r); r++, w++) {
            if (*r == '"') {
                errf(msg, msglen, "unexpected quote inside a word");
                return -1;
            }
        }
    }
    /* The terminator may be overwritten by the word's NUL when nothing was unescaped, so
     * step over it only when it was a blank: a '#' must stay the end of the line. */
    char end = *r;
    *w = '\0';
    *pos = (w == r && is_blank(end)) ? r + 1 : r;
    return 0;
}

/* A name and its value, which is one word but for listen (an address and its flag),
 * tls_protocols (a list) and namespace (a name and its keys); and one more word to know
 * there were too many. */
#define MAX_WORDS 9

/* Split a line into words. *nwords counts them all; only the first MAX_WORDS are kept. */
static int
split_line(char *line, char *words[MAX_WORDS], int *nwords, char *msg, size_t msglen)
{
    char *pos = line;
    *nwords = 0;
    for (;;) {
        while (is_blank(*pos))
            pos++;
        if (*pos == '\0' || *pos == '#')
            return 0;
        char *word;
        if (read_word(&pos, &word, msg, msglen) < 0)
            return -1;
        if (*nwords < MAX_WORDS)
            words[*nwords] = word;
        (*nwords)++;
    }
}

/* What one file or string has done so far, for duplicates and for check positions. */
struct parse_state {
    struct source src;
    size_t line_of[NDIRECTIVES]; /* 0: not set in this source */
};

static int
parse_line(struct conf *c, char *line, size_t lineno, struct parse_state *st, char *msg,
           size_t msglen)
{
    char *words[MAX_WORDS];
    int n;
    if (split_line(line, words, &n, msg, msglen) < 0)
        return -1;
    if (n == 0)
        return 0;
    const struct directive *d = find_directive(words[0]);
    if (d == NULL) {
        errf(msg, msglen, "unknown directive \"%s\"", words[0]);
        return -1;
    }
    /* listen ADDRESS tls; tls_protocols and four versions; namespace NAME and six keys */
    int max_words = d->type == CT_LISTEN          ? 3
                    : d->type == CT_TLS_PROTOCOLS ? 5
                    : d->type == CT_NAMESPACE     ? MAX_WORDS - 1
                                                  : 2;
    if (n < 2 || n > max_words) {
        errf(msg, msglen, "invalid number of arguments in \"%s\" directive", d->name);
        return -1;
    }
    size_t i = (size_t)(d - directives);
    if (st->line_of[i] != 0 && d->type != CT_LISTEN && d->type != CT_NAMESPACE) {
        errf(msg, msglen, "\"%s\" directive is duplicate", d->name);
        return -1;
    }
    st->line_of[i] = lineno;
    /* The setters read a list as one value with its words separated by spaces, as it
     * comes from an environment variable. */
    char joined[1024];
    const char *value = words[1];
    if (n > 2) {
        size_t len = 0;
        for (int k = 1; k < n && len < sizeof joined; k++)
            len += (size_t)snprintf(joined + len, sizeof joined - len, "%s%s", k > 1 ? " " : "",
                                    words[k]);
        if (len >= sizeof joined) {
            errf(msg, msglen, "value for \"%s\" is too long", d->name);
            return -1;
        }
        value = joined;
    }
    return set_directive(c, d, value, &st->src, msg, msglen);
}

/* A relative default path (store_path "sessiond.db") belongs beside the config file, as
 * a relative path written in the file does, not in whatever directory sessiond was
 * started from. */
static int
resolve_default_paths(struct conf *c, const struct parse_state *st, char *msg, size_t msglen)
{
    if (st->src.dir == NULL)
        return 0;
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const struct directive *d = &directives[i];
        const char *v = (const char *)c + d->offset;
        bool path = d->type == CT_PATH || d->type == CT_OUT_PATH;
        if (!path || st->line_of[i] != 0 || v[0] == '\0' || v[0] == '/') continue;
        char value[4096];
        struct source src = st->src;
        snprintf(value, sizeof value, "%s", v);
        if (set_directive(c, d, value, &src, msg, msglen) < 0)
            return -1;
    }
    return 0;
}

/* Parse text (modified in place) on top of c. name is the file name for messages. */
static int
parse_text(struct conf *c, const char *name, char *text, const char *dir, char *err,
           size_t errlen)
{
    struct parse_state st;
    char msg[CONF_ERR_LEN];
    memset(&st, 0, sizeof st);
    st.src.dir = dir;
    if (strncmp(text, "\xef\xbb\xbf", 3) == 0)
        text += 3; /* a byte order mark left by an editor */
    size_t lineno = 1;
    for (char *line = text; line != NULL; lineno++) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (parse_line(c, line, lineno, &st, msg, sizeof msg) < 0) {
            errf(err, errlen, "%s:%zu: %s", name, lineno, msg);
            return -1;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (resolve_default_paths(c, &st, msg, sizeof msg) < 0) {
        errf(err, errlen, "%s: %s", name, msg);
        return -1;
    }
    int bad = run_checks(c, msg, sizeof msg);
    if (bad < 0)
        return 0;
    if (st.line_of[bad] != 0)
        errf(err, errlen, "%s:%zu: %s", name, st.line_of[bad], msg);
    else
        errf(err, errlen, "%s: %s", name, msg);
    return -1;
}

int
conf_load_string(struct conf *c, const char *name, const char *text, char *err,
                 size_t errlen)
{
    struct conf tmp;
    char *copy = strdup(text);
    if (copy == NULL) {
        errf(err, errlen, "%s: %s", name, strerror(errno));
        return -1;
    }
    conf_defaults(&tmp);
    int rc = parse_text(&tmp, name, copy, NULL, err, errlen);
    free(copy);
    if (rc == 0)
        *c = tmp;
    return rc;
}

/* Read the whole of a regular file into a NUL-terminated buffer; *lenp is its length. */
static char *
read_file(const char *path, size_t *lenp, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    if (fd < 0 || fstat(fd, &st) < 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if (st.st_size > CONF_MAX_FILE_BYTES) {
        errno = EFBIG;
        goto fail;
    }
    size_t size = (size_t)st.st_size, len = 0;
    if ((buf = calloc(size + 1, 1)) == NULL) /* zeroed: the analyzer cannot follow read() */
        goto fail;
    for (ssize_t n; len < size; len += (size_t)n)
        if ((n = read(fd, buf + len, size - len)) <= 0)
            break; /* a file that shrank while read is parsed as far as it went */
    buf[len] = '\0';
    *lenp = len;
    close(fd);
    return buf;
fail:
    errf(err, errlen, "%s: %s", path, strerror(errno));
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* A NUL byte would silently cut its line short; refuse it and say where it is. */
static int
check_no_nul(const char *path, const char *buf, size_t size, char *err, size_t errlen)
{
    const char *nul = memchr(buf, '\0', size);
    if (nul == NULL)
        return 0;
    size_t lineno = 1;
    for (const char *p = buf; p < nul; p++)
        /* memchr found nul within buf's size bytes, all of them read; the analyzer does not
         * bound its result. NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        lineno += *p == '\n';
    errf(err, errlen, "%s:%zu: NUL byte in the file", path, lineno);
    return -1;
}

int
conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
    struct conf tmp;
    size_t len;
    char *buf = read_file(path, &len, err, errlen);
    if (buf == NULL)
        return -1;
    int rc = -1;
    char *real = NULL;
    if (check_no_nul(path, buf, len, err, errlen) < 0)
        goto out;
    if ((real = realpath(path, NULL)) == NULL || strlen(real) >= sizeof tmp.path) {
        errf(err, errlen, "%s: %s", path, real == NULL ? strerror(errno) : "path too long");
        goto out;
    }
    conf_defaults(&tmp);
    memcpy(tmp.path, real, strlen(real) + 1);
    /* Relative paths in the file follow the file, not the working directory: cut real
     * down to its directory ("/" itself for a file at the root). */
    char *slash = strrchr(real, '/');
    slash[slash == real ? 1 : 0] = '\0';
    rc = parse_text(&tmp, path, buf, real, err, errlen);
    if (rc == 0)
        *c = tmp;
out:
    free(real);
    free(buf);
    return rc;
}

/* ---- The environment ---- */

struct env_state {
    struct conf *c;
    char *(*getenv_fn)(const char *);
    char var_of[NDIRECTIVES][64]; /* the variable that set each directive, or "" */
};

/* Look up var; unset and empty are the same, so that VAR= in a unit file clears nothing. */
static const char *
env_value(const struct env_state *es, const char *var)
{
    const char *v = es->getenv_fn(var);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* Apply var, if set, to directive name. */
static int
env_apply(struct env_state *es, const char *var, const char *name, char *err, size_t errlen)
{
    const char *v = env_value(es, var);
    if (v == NULL)
        return 0;
    const struct directive *d = find_directive(name);
    struct source src = {NULL, false, true};
    char msg[CONF_ERR_LEN];
    if (set_directive(es->c, d, v, &src, msg, sizeof msg) < 0) {
        errf(err, errlen, "environment %s: %s", var, msg);
        return -1;
    }
    snprintf(es->var_of[d - directives], sizeof es->var_of[0], "%s", var);
    return 0;
}

/* The variable of a directive: SESSIOND_ and its name in upper case. */
static void
env_var_of(const struct directive *d, char *var, size_t len)
{
    int n = snprintf(var, len, "SESSIOND_%s", d->name);
    for (int j = 0; j < n && (size_t)j < len; j++)
        var[j] = (char)toupper((unsigned char)var[j]);
}

static int
env_directives(struct env_state *es, char *err, size_t errlen)
{
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        char var[64];
        env_var_of(&directives[i], var, sizeof var);
        if (env_apply(es, var, directives[i].name, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* SESSIOND_ variables that are ours but name no directive: the binary the test suite and
 * scripts/bench run (the Makefile exports it to every sessiond the tests start), and the
 * test build's crash hook. */
static const char *const env_not_directives[] = {"SESSIOND_BIN", "SESSIOND_TEST_CRASH_FILE"};

/* The Levenshtein distance of a and b, or SIZE_MAX when one is longer than any directive's
 * name could be. */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la >= ARRAY_LEN(row) || lb >= ARRAY_LEN(row)) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The directive whose name is within two edits of name (the closest, the first of a tie):
 * what a typo most likely meant. NULL when none is that close. */
static const struct directive *
nearest_directive(const char *name)
{
    const struct directive *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        size_t d = edit_distance(name, directives[i].name);
        if (d < best_d) {
            best_d = d;
            best = &directives[i];
        }
    }
    return best;
}

/* var (a SESSIOND_ variable) names no directive: say so, and what it may have meant. */
static void
env_unknown(const char *var, char *err, size_t errlen)
{
    char name[128] = "", hint[96] = ""; /* zeroed: the analyzer cannot follow the copy */
    size_t n = 0;
    for (const char *p = var + strlen("SESSIOND_"); *p != '\0' && n < sizeof name - 1; p++)
        name[n++] = (char)tolower((unsigned char)*p);
    name[n] = '\0';
    const struct directive *d = find_directive(name);
    if (d != NULL) {
        env_var_of(d, hint, sizeof hint);
        errf(err, errlen, "environment %s: a directive's variable is in upper case: %s", var, hint);
        return;
    }
    if ((d = nearest_directive(name)) != NULL) {
        char near[64];
        env_var_of(d, near, sizeof near);
        snprintf(hint, sizeof hint, " (did you mean %s?)", near);
    }
    errf(err, errlen, "environment %s: unknown directive \"%s\"%s", var, name, hint);
}

/* Whether var is a directive's variable (exactly as env_var_of spells it) or one of ours. */
static bool
env_var_known(const char *var)
{
    for (size_t i = 0; i < ARRAY_LEN(env_not_directives); i++)
        if (strcmp(var, env_not_directives[i]) == 0) return true;
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        char want[64];
        env_var_of(&directives[i], want, sizeof want);
        if (strcmp(var, want) == 0) return true;
    }
    return false;
}

int
conf_check_env_names(char *const *envp, char *err, size_t errlen)
{
    for (char *const *e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, "SESSIOND_", strlen("SESSIOND_")) != 0) continue;
        char var[128];
        size_t n = strcspn(*e, "=");
        snprintf(var, sizeof var, "%.*s", (int)(n < sizeof var ? n : sizeof var - 1), *e);
        if (!env_var_known(var)) {
            env_unknown(var, err, errlen);
            return -1;
        }
    }
    return 0;
}

/* The listener whose port HOST alone keeps: the first INET one, or NULL. */
static const struct conf_listen *
first_inet(const struct conf *c)
{
    for (int i = 0; i < c->nlisten; i++)
        if (c->listen[i].family == AF_INET || c->listen[i].family == AF_INET6)
            return &c->listen[i];
    return NULL;
}

/* HOST and PORT, as platforms such as Heroku and Railway set them, replace every listener
 * with the one address they name. */
static int
env_host_port(struct env_state *es, char *err, size_t errlen)
{
    const char *host = env_value(es, "HOST"), *port_text = env_value(es, "PORT");
    if (host == NULL && port_text == NULL)
        return 0;
    const struct conf_listen *old = first_inet(es->c);
    int port = old != NULL ? old->port : 8080;
    /* PORT moves a TLS listener; it must not silently make it speak plain HTTP. */
    bool tls = old != NULL ? old->tls : false;
    if (port_text != NULL && parse_port(port_text, &port) < 0) {
        errf(err, errlen, "environment PORT: invalid port \"%s\" (must be 1-65535)", port_text);
        return -1;
    }
    if (host == NULL)
        host = "0.0.0.0";
    bool v6 = strchr(host, ':') != NULL && host[0] != '[';
    char text[sizeof es->c->listen[0].text + 16], msg[CONF_ERR_LEN];
    snprintf(text, sizeof text, v6 ? "[%s]:%d%s" : "%s:%d%s", host, port, tls ? " tls" : "");
    struct conf_listen l;
    /* PORT is valid by now, so a failure here is HOST's. */
    if (parse_listen(text, NULL, &l, msg, sizeof msg) < 0) {
        errf(err, errlen, "environment HOST: %s", msg);
        return -1;
    }
    es->c->listen[0] = l;
    es->c->nlisten = 1;
    return 0;
}

static int
env_check(const struct env_state *es, char *err, size_t errlen)
{
    char msg[CONF_ERR_LEN];
    int bad = run_checks(es->c, msg, sizeof msg);
    if (bad < 0)
        return 0;
    const char *var = es->var_of[bad];
    errf(err, errlen, "environment%s%s: %s", var[0] != '\0' ? " " : "", var, msg);
    return -1;
}

/* REDIS_URL (as Railway and Heroku set it when a Redis is attached) names the Redis and,
 * unless SESSIOND_STORE says otherwise, makes it the store; so do REDIS_SENTINELS (with
 * REDIS_MASTER). */
static int
env_redis(struct env_state *es, char *err, size_t errlen)
{
    const char *url = es->getenv_fn("REDIS_URL"), *sentinels = es->getenv_fn("REDIS_SENTINELS");
    if (env_apply(es, "REDIS_MASTER", "redis_master", err, errlen) < 0)
        return -1;
    if ((url == NULL || url[0] == '\0') && (sentinels == NULL || sentinels[0] == '\0'))
        return 0;
    if (env_apply(es, "REDIS_URL", "redis_url", err, errlen) < 0 ||
        env_apply(es, "REDIS_SENTINELS", "redis_sentinels", err, errlen) < 0)
        return -1;
    const char *store = es->getenv_fn("SESSIOND_STORE");
    if (store != NULL && store[0] != '\0')
        return 0;
    snprintf(es->c->store, sizeof es->c->store, "redis");
    return 0;
}

int
conf_apply_env(struct conf *c, char *(*getenv_fn)(const char *), char *err,
               size_t errlen)
{
    struct conf tmp = *c;
    struct env_state es;
    memset(&es, 0, sizeof es);
    es.c = &tmp;
    es.getenv_fn = getenv_fn;
    /* The order is the precedence: a later variable beats an earlier one. */
    if (env_directives(&es, err, errlen) < 0 ||
        env_apply(&es, "WEB_CONCURRENCY", "workers", err, errlen) < 0 ||
        env_apply(&es, "WORKERS", "workers", err, errlen) < 0 ||
        env_apply(&es, "ENABLE_CLUSTERING", "clustering", err, errlen) < 0 ||
        env_apply(&es, "LOG_LEVEL", "log_level", err, errlen) < 0 ||
        env_redis(&es, err, errlen) < 0 ||
        env_host_port(&es, err, errlen) < 0 || env_check(&es, err, errlen) < 0)
        return -1;
    *c = tmp;
    return 0;
}

struct conf *
conf_reread(conf_loader load, char *err, size_t errlen)
{
    struct conf *c = malloc(sizeof *c);
    if (c == NULL) {
        errf(err, errlen, "out of memory");
        return NULL;
    }
    if (load(c, err, errlen) < 0) {
        free(c);
        return NULL;
    }
    return c;
}
