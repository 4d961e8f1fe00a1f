/* redis_url: where the Redis of "store redis" is, and how to log in.
 *
 *   redis://[[user]:password@]host[:port][/db]   port 6379 and db 0 by default; an IPv6
 *                                               host in brackets: redis://[::1]:6380/2
 *   rediss://...                               the same over TLS (common/redis_wire.c)
 *   unix:/path/to.sock[?db=N]                  (unix:///path/to.sock is the same)
 *
 * The user and the password are percent-decoded (%40 is @). As redis-cli does, userinfo
 * without a colon is a password: redis://secret@host. Error messages never repeat the
 * password. */
#ifndef SESSIOND_REDIS_URL_H
#define SESSIOND_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_HOST_MAX 256
#define REDIS_URL_PATH_MAX 108 /* sizeof sun_path */
#define REDIS_URL_USER_MAX 256
#define REDIS_URL_PASSWORD_MAX 512

struct redis_url {
    bool is_unix;                          /* unix:/path: path is set, host and port not */
    bool tls;                              /* rediss:// */
    char host[REDIS_URL_HOST_MAX];         /* a name or an address; IPv6 without brackets */
    int port;
    char path[REDIS_URL_PATH_MAX];
    char user[REDIS_URL_USER_MAX];         /* "" = AUTH with the password alone */
    char password[REDIS_URL_PASSWORD_MAX]; /* "" = no AUTH */
    int db;                                /* 0 to INT_MAX; the server decides its own limit */
};

/* Parse url into out. Returns 0, or -1 with a message naming the problem in err (without
 * the directive's name, which the caller adds). */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen);

/* The host part alone (n bytes at p): host, host:port, [v6addr] or [v6addr]:port, into
 * out->host and out->port (left as it was when no port is given). For redis_url and for
 * the entries of redis_sentinels. 0, or -1 with err. */
int redis_url_host(const char *p, size_t n, struct redis_url *out, char *err, size_t errlen);

#endif
