/* conf: the configuration, its directive table, and the environment overrides.
 *
 * A config file has one directive per line, "name value...", with '#' comments.
 * Sizes take k/m/g suffixes (powers of 1024; a bare number is bytes), durations take
 * ms/s/m/h (a bare number is seconds). Every directive has a type, bounds and a default;
 * a bad value is an error ("FILE:LINE: message"), never a silent fallback.
 * Relative paths in a file are taken relative to the directory of that file.
 *
 * A struct conf is built whole and validated before it is used; a reload builds a new
 * one and keeps the old one if the new one fails. */
#ifndef SESSIOND_CONF_H
#define SESSIOND_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "namespace.h"

#define CONF_MAX_LISTEN 16
#define CONF_MAX_WORKERS 64
#define CONF_ERR_LEN 512

struct conf_listen {
    char text[256]; /* as written: "0.0.0.0:8080", "[::1]:80", "unix:/run/s.sock" */
    int family;     /* AF_INET, AF_INET6 or AF_UNIX */
    char host[128]; /* numeric address for INET/INET6, socket path for UNIX */
    int port;       /* 0 for UNIX */
    bool tls;       /* "listen ADDRESS tls": connections start with a TLS handshake */
};

/* Bits of conf.tls_protocols. */
#define CONF_TLS_1_0 (1 << 0)
#define CONF_TLS_1_1 (1 << 1)
#define CONF_TLS_1_2 (1 << 2)
#define CONF_TLS_1_3 (1 << 3)

struct conf {
    char path[4096];   /* the file it was read from; "" for built-in defaults */

    /* process */
    int workers;        /* 0 = auto (cores available to this process) */
    bool clustering;    /* false: one process serves, no master */
    char pidfile[4096]; /* "" = none */
    char log_file[4096];/* "" = stderr */
    int log_level;      /* enum log_level */
    int log_format;     /* enum log_format */
    char instance[128]; /* name reported by /api/health; default: host name */
    char user[64];      /* the workers' user; "" = the master's */
    char group[64];     /* the workers' group; "" = the user's own */

    /* listeners */
    struct conf_listen listen[CONF_MAX_LISTEN];
    int nlisten;
    int backlog;

    /* supervision (all durations in milliseconds, sizes in bytes) */
    int64_t min_uptime_ms;
    int64_t restart_delay_ms;
    int64_t restart_delay_max_ms;
    int64_t worker_timeout_ms;
    int64_t worker_max_rss;   /* 0 = off */
    int64_t shutdown_timeout_ms;
    int64_t upgrade_timeout_ms;

    /* HTTP */
    int max_connections;
    int64_t max_header_bytes;
    int64_t max_body_bytes;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t keepalive_timeout_ms;
    int64_t send_timeout_ms;
    bool gzip;
    int max_connections_per_ip; /* 0 = no limit */
    int rate_limit_per_ip;      /* requests per second; 0 = no limit */
    bool limit_exempt_loopback;
    int max_inflight_per_user;  /* 0 = no limit */

    /* TLS (used by listeners with the tls flag) */
    char tls_cert[4096];     /* PEM: the certificate, then its chain */
    char tls_key[4096];      /* PEM: the private key */
    int tls_protocols;       /* CONF_TLS_* bits */
    char tls_ciphers[1024];  /* OpenSSL cipher list for TLS 1.2 and older */
    int64_t tls_handshake_timeout_ms;

    /* credentials */
    char api_key[256];  /* "" = admin endpoints answer loopback peers only */
    bool metrics_public; /* false: /metrics is an admin endpoint */
    bool dashboard;      /* GET /dashboard is served */

    /* sessions and their store */
    int64_t max_sessions;
    int max_sessions_per_user;
    int64_t session_max_bytes;
    int64_t session_ttl_ms;
    int64_t session_max_ttl_ms;
    bool session_rolling;
    char store[8];         /* "lmdb" (embedded) or "redis" */
    char store_path[4096]; /* the embedded store's file (LMDB) */
    bool store_sync;       /* fsync every commit */
    int64_t history_max_bytes; /* the channel history's file (store_path-history) */
    char redis_url[1024];  /* redis://[:password@]host:port/db or unix:/path */
    char redis_prefix[64]; /* before every key, so deployments can share a Redis */
    int64_t redis_timeout_ms;
    char redis_tls_ca[4096];   /* rediss://: PEM CAs to verify the server; "" = the system's */
    char redis_tls_cert[4096]; /* rediss://: a client certificate, with redis_tls_key */
    char redis_tls_key[4096];
    char redis_sentinels[1024]; /* "host:port,...": find the master through Sentinel */
    char redis_master[128];     /* the master's name in Sentinel */
    int redis_wait;             /* replicas a session write must reach (WAIT); 0: none */
    int redis_cache_sessions;   /* sessions a worker keeps while Redis tracks them; 0: none */

    /* WebSockets */
    int max_connections_per_user;
    int64_t ws_max_message_bytes;
    int64_t ws_max_queue;
    int ws_max_channels;         /* channels one connection may be in (server-side ones too) */
    int ws_rate_limit;           /* messages per second per connection; 0 = no limit */
    int64_t ws_ping_interval_ms;
    int64_t ws_pong_timeout_ms;
    bool ws_compression;
    bool client_publish;        /* off: publish=none in every namespace */
    int presence_events_max;
    int64_t ws_drain_spread_ms;

    /* channels: the namespace directives, finished (ns_table_finish) */
    struct ns_table namespaces;
};

/* Builds a whole config (defaults, file, environment): main's loader, called again on
 * every reload. Returns 0, or -1 with "FILE:LINE: message" in err. */
typedef int (*conf_loader)(struct conf *out, char *err, size_t errlen);

/* Load a fresh config with load into new memory. Returns it, or NULL with the reason in
 * err (the caller keeps running on its current config). */
struct conf *conf_reread(conf_loader load, char *err, size_t errlen);

/* Fill c with the built-in defaults. */
void conf_defaults(struct conf *c);

/* Read path on top of the defaults. On failure returns -1 and writes "FILE:LINE: message"
 * into err. */
int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen);

/* Parse a config from memory (unit tests; name is used in error messages). */
int conf_load_string(struct conf *c, const char *name, const char *text, char *err,
                     size_t errlen);

/* Apply the environment: PORT, HOST, WORKERS, WEB_CONCURRENCY, ENABLE_CLUSTERING, LOG_LEVEL,
 * SESSIOND_API_KEY and SESSIOND_<DIRECTIVE> for any directive (SESSIOND_NAMESPACE holds
 * one or more namespace directives separated by ';', added to the file's or replacing
 * those of the same name). The environment beats the file.
 * getenv_fn is getenv in production and a fake in tests. A bad value is an error
 * ("environment WORKERS: message"), returned as -1. */
int conf_apply_env(struct conf *c, char *(*getenv_fn)(const char *), char *err,
                   size_t errlen);

/* Check that every SESSIOND_ variable of envp ("NAME=value" strings, as environ holds them)
 * is a directive's (SESSIOND_ and its name in upper case) or one sessiond itself reads, so
 * that a misspelt one is an error as a misspelt line of the file is, not silently ignored.
 * Returns 0, or -1 with "environment NAME: message" in err. */
int conf_check_env_names(char *const *envp, char *err, size_t errlen);

/* Check the config against this machine: store_path, log_file and pidfile must be in a
 * directory that exists (sessiond creates those files, never directories, so that a typo
 * is refused rather than given a fresh empty tree). Returns 0, or -1 with
 * "DIRECTIVE \"PATH\": message" in err. */
int conf_check_paths(const struct conf *c, char *err, size_t errlen);

/* What a reload cannot change: where the sessions are. A new store or store_path would
 * switch every new worker to other (empty) data while the old workers drain on the old,
 * so a reload that changes either is refused, as nginx refuses what it cannot change on
 * reload; a restart changes them. The same file spelt another way is no change. Returns
 * 0, or -1 with the reason in err. */
int conf_reload_check(const struct conf *running, const struct conf *next, char *err,
                      size_t errlen);

/* An api_key shorter than this is warned about (at start, on reload and by -t). */
#define CONF_API_KEY_MIN 32

/* Whether c deserves a warning about its api_key: set but shorter than CONF_API_KEY_MIN.
 * If so, the warning is written into msg. */
bool conf_key_warning(const struct conf *c, char *msg, size_t msglen);

/* Set one directive by name from its text value (as on a config line, without the name).
 * Returns 0 or -1 with a message (without position) in err. */
int conf_set(struct conf *c, const char *name, const char *value, char *err, size_t errlen);

/* Parsers shared with tests. Each returns 0 or -1. */
/* A whole string of decimal digits (no sign, no spaces, nothing after), refused rather than
 * wrapped when it does not fit. 0 or -1. */
int conf_parse_number(const char *s, int64_t *out);
int conf_parse_size(const char *s, int64_t *out);
int conf_parse_duration_ms(const char *s, int64_t *out);
int conf_parse_bool(const char *s, bool *out);
int conf_parse_listen(const char *s, struct conf_listen *out, char *err, size_t errlen);
int conf_parse_tls_protocols(const char *s, int *out, char *err, size_t errlen);

/* Whether any listener of c speaks TLS. */
bool conf_uses_tls(const struct conf *c);

#endif
