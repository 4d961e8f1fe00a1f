/* redis_url: parse redis://[[user]:password@]host[:port][/db] and unix:/path[?db=N].
 *
 * Strict, as every config value: a bad port, a database that is not a number, an empty
 * host or anything left over is an error that names the part at fault. The messages
 * quote that part, never the whole URL, since the URL may hold a password. */
#include "redis_url.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define REDIS_DEFAULT_PORT 6379


/* A decimal number of n digits and nothing else. Returns 0, -1 if it is not one (or is
 * empty), -2 if it is greater than max. */
static int
url_number(const char *p, size_t n, long long max, long long *out)
{
    long long v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        int d = p[i] - '0';
        if (v > (max - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Percent-decode n bytes of p into out (size outsize, NUL-terminated); what names the
 * field in messages. */
static int
url_decode(const char *p, size_t n, char *out, size_t outsize, const char *what, char *err,
           size_t errlen)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(p[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(p[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                errf(err, errlen, "bad percent-escape in the %s (%%XX, two hex digits)",
                         what);
                return -1;
            }
            c = hi << 4 | lo;
            i += 2;
            if (c == 0) {
                errf(err, errlen, "the %s contains %%00", what);
                return -1;
            }
        }
        if (len + 1 >= outsize) {
            errf(err, errlen, "the %s is too long (at most %zu bytes)", what, outsize - 1);
            return -1;
        }
        out[len++] = (char)c;
    }
    out[len] = '\0';
    return 0;
}

/* user:password, :password, or (as redis-cli reads it) password alone. */
static int
url_userinfo(const char *p, size_t n, struct redis_url *out, char *err, size_t errlen)
{
    const char *colon = memchr(p, ':', n);
    const char *pw = p;
    size_t pwlen = n;
    if (colon != NULL) {
        if (url_decode(p, (size_t)(colon - p), out->user, sizeof out->user, "user name", err,
                       errlen) < 0)
            return -1;
        pw = colon + 1;
        pwlen = n - (size_t)(colon - p) - 1;
    }
    if (url_decode(pw, pwlen, out->password, sizeof out->password, "password", err, errlen) < 0)
        return -1;
    if (out->user[0] != '\0' && out->password[0] == '\0') {
        errf(err, errlen, "a user name needs a password (user:password@host)");
        return -1;
    }
    return 0;
}

static int
url_port(const char *p, size_t n, struct redis_url *out, char *err, size_t errlen)
{
    long long v;
    if (url_number(p, n, 65535, &v) < 0 || v == 0) {
        errf(err, errlen, "bad port \"%.*s\" (1 to 65535)", (int)n, p);
        return -1;
    }
    out->port = (int)v;
    return 0;
}

/* [v6addr] then an optional :port. */
static int
url_host_v6(const char *p, size_t n, struct redis_url *out, char *err, size_t errlen)
{
    const char *close = memchr(p, ']', n), *end = p + n;
    struct in6_addr a;
    if (close == NULL) {
        errf(err, errlen, "missing ] after the IPv6 address");
        return -1;
    }
    size_t alen = (size_t)(close - p) - 1;
    if (alen == 0) {
        errf(err, errlen, "empty host");
        return -1;
    }
    if (alen >= sizeof out->host) {
        errf(err, errlen, "host too long (at most %zu bytes)", sizeof out->host - 1);
        return -1;
    }
    memcpy(out->host, p + 1, alen);
    out->host[alen] = '\0';
    if (inet_pton(AF_INET6, out->host, &a) != 1) {
        errf(err, errlen, "bad IPv6 address \"[%s]\"", out->host);
        return -1;
    }
    const char *rest = close + 1;
    if (rest == end)
        return 0;
    if (*rest != ':') {
        errf(err, errlen, "unexpected \"%.*s\" after the host", (int)(end - rest), rest);
        return -1;
    }
    return url_port(rest + 1, (size_t)(end - rest - 1), out, err, errlen);
}

static bool
url_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

int
redis_url_host(const char *p, size_t n, struct redis_url *out, char *err, size_t errlen)
{
    if (n > 0 && p[0] == '[')
        return url_host_v6(p, n, out, err, errlen);
    const char *colon = memchr(p, ':', n);
    size_t hlen = colon != NULL ? (size_t)(colon - p) : n;
    if (colon != NULL && memchr(colon + 1, ':', n - hlen - 1) != NULL) {
        errf(err, errlen, "an IPv6 host needs brackets, as in redis://[::1]:6379");
        return -1;
    }
    if (hlen == 0) {
        errf(err, errlen, "empty host");
        return -1;
    }
    if (hlen >= sizeof out->host) {
        errf(err, errlen, "host too long (at most %zu bytes)", sizeof out->host - 1);
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        if (!url_host_char(p[i])) {
            errf(err, errlen, "bad character '%c' in the host", p[i]);
            return -1;
        }
    }
    memcpy(out->host, p, hlen);
    out->host[hlen] = '\0';
    return colon != NULL ? url_port(colon + 1, n - hlen - 1, out, err, errlen) : 0;
}

/* The database number, n digits at p; form shows how to write it. */
static int
url_db(const char *p, size_t n, const char *form, struct redis_url *out, char *err,
       size_t errlen)
{
    long long v;
    int rc = url_number(p, n, INT_MAX, &v);
    if (rc == -1) {
        errf(err, errlen, "the database must be a number, as in %s (not \"%.*s\")", form,
                 (int)n, p);
        return -1;
    }
    if (rc == -2) {
        errf(err, errlen, "database %.*s is out of range (0 to %d)", (int)n, p, INT_MAX);
        return -1;
    }
    out->db = (int)v;
    return 0;
}

/* What follows the authority: nothing, "/" or "/db". */
static int
url_path(const char *p, struct redis_url *out, char *err, size_t errlen)
{
    if (*p == '\0')
        return 0;
    if (*p == '/') {
        p++;
        size_t n = strcspn(p, "?#");
        if (p[n] != '\0') {
            errf(err, errlen, "unexpected \"%s\" after the database", p + n);
            return -1;
        }
        return n == 0 ? 0 : url_db(p, n, "/0", out, err, errlen);
    }
    errf(err, errlen, "unexpected \"%s\" after the host", p);
    return -1;
}

static int
url_tcp(const char *p, struct redis_url *out, char *err, size_t errlen)
{
    size_t alen = strcspn(p, "/?#");
    /* An '@' past the end of the authority is a user name or password cut short by an
     * unencoded '/', '?' or '#' in it (redis://:pa#ss@h): the messages below would quote
     * what follows the cut, password and all. */
    if (strchr(p + alen, '@') != NULL) {
        errf(err, errlen, "a '/', '?' or '#' in the user name or password must be "
                          "percent-encoded (%%2F, %%3F, %%23)");
        return -1;
    }
    const char *at = memrchr(p, '@', alen), *host = p;
    if (at != NULL) {
        if (url_userinfo(p, (size_t)(at - p), out, err, errlen) < 0)
            return -1;
        host = at + 1;
    }
    if (redis_url_host(host, alen - (size_t)(host - p), out, err, errlen) < 0)
        return -1;
    return url_path(p + alen, out, err, errlen);
}

/* unix:/path[?db=N]; unix:///path is the same path. */
static int
url_unix(const char *p, struct redis_url *out, char *err, size_t errlen)
{
    if (strncmp(p, "//", 2) == 0) {
        if (p[2] != '/') {
            errf(err, errlen, "a socket path is written unix:/path/to.sock");
            return -1;
        }
        p += 2;
    }
    size_t n = strcspn(p, "?");
    if (n == 0) {
        errf(err, errlen, "empty socket path");
        return -1;
    }
    if (p[0] != '/') {
        errf(err, errlen, "the socket path must be absolute, as in unix:/run/redis.sock");
        return -1;
    }
    if (n >= sizeof out->path) {
        errf(err, errlen, "socket path too long (at most %zu bytes)", sizeof out->path - 1);
        return -1;
    }
    memcpy(out->path, p, n);
    out->path[n] = '\0';
    out->is_unix = true;
    out->port = 0;
    if (p[n] == '\0')
        return 0;
    const char *q = p + n + 1;
    if (strncmp(q, "db=", 3) != 0) {
        errf(err, errlen, "unknown parameter \"%s\" (only db=N)", q);
        return -1;
    }
    return url_db(q + 3, strlen(q + 3), "?db=0", out, err, errlen);
}

int
redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->port = REDIS_DEFAULT_PORT;
    if (strncasecmp(url, "redis://", 8) == 0)
        return url_tcp(url + 8, out, err, errlen);
    if (strncasecmp(url, "unix:", 5) == 0)
        return url_unix(url + 5, out, err, errlen);
    if (strncasecmp(url, "rediss://", 9) == 0) {
        out->tls = true;
        return url_tcp(url + 9, out, err, errlen);
    }
    errf(err, errlen,
         "must start with redis://, rediss:// or unix: (as in redis://127.0.0.1:6379/0)");
    return -1;
}
