/* fuzz_redis_url: the Redis URL of "store redis" and REDIS_URL (common/redis_url.c).
 *
 * The input is the URL (up to its first NUL, as it comes from a config line). Besides
 * the sanitizers it checks that a parsed URL is usable as the header says (a port in
 * 1..65535 and a host for TCP, an absolute path for a socket, a database from 0 up) and
 * that no error message repeats the password, which is the point of the messages quoting
 * only the part at fault. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok, const char *what, const char *url)
{
    if (!ok) {
        fprintf(stderr, "fuzz_redis_url: %s: %s\n", what, url);
        abort();
    }
}

#define MARK "Pw0rdMark"

/* url with the password of its userinfo (redis:// only: up to the last '@' before the
 * path, after the first ':') replaced by MARK; NULL when it has no userinfo. */
static char *
with_marker(const char *url)
{
    if (strncmp(url, "redis://", 8) != 0)
        return NULL;
    const char *auth = url + 8, *end = auth + strcspn(auth, "/"), *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (at == NULL)
        return NULL;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *pw = colon != NULL ? colon + 1 : auth;
    char *out = malloc(strlen(url) + sizeof MARK);
    if (out != NULL)
        sprintf(out, "%.*s%s%s", (int)(pw - url), url, MARK, at);
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = malloc(size + 1);
    check(url != NULL, "malloc", "");
    memcpy(url, data, size);
    url[size] = '\0';
    struct redis_url u;
    char err[256] = "";
    memset(&u, 0x5a, sizeof u); /* the parser must not rely on a zeroed out */
    u.password[0] = '\0';
    int rc = redis_url_parse(url, &u, err, sizeof err);
    check(rc == 0 || rc == -1, "an undocumented result", url);
    if (rc == 0) {
        if (u.is_unix) {
            check(u.path[0] == '/' && strlen(u.path) < sizeof u.path, "socket path", url);
        } else {
            check(u.host[0] != '\0' && strlen(u.host) < sizeof u.host, "host", url);
            check(u.port >= 1 && u.port <= 65535, "port", url);
        }
        check(u.db >= 0, "db", url);
        check(strlen(u.user) < sizeof u.user && strlen(u.password) < sizeof u.password,
              "user or password unterminated", url);
    } else {
        check(err[0] != '\0', "an error without a message", url);
    }
    /* The password swapped for a marker that nothing else in the URL spells, so that a
     * message quoting the host or the database cannot look like a leak by chance. */
    char *marked = strstr(url, MARK) == NULL ? with_marker(url) : NULL;
    if (marked != NULL) {
        err[0] = '\0';
        if (redis_url_parse(marked, &u, err, sizeof err) < 0)
            check(strstr(err, MARK) == NULL, "the message repeats the password", url);
        free(marked);
    }
    free(url);
    return 0;
}
