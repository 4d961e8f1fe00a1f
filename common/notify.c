#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static char notify_path[sizeof notify_addr.sun_path];

int
notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    size_t n = strlen(path);
    int rc = -1;
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof notify_addr.sun_path) {
        log_warnx("NOTIFY_SOCKET=%s: not a Unix socket path or abstract name; not notifying",
                  path);
    } else if ((notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
        log_warn("NOTIFY_SOCKET: socket");
    } else {
        notify_addr.sun_family = AF_UNIX;
        memcpy(notify_addr.sun_path, path, n);
        if (path[0] == '@')
            notify_addr.sun_path[0] = '\0'; /* abstract: the name, without a NUL after it */
        notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        memcpy(notify_path, path, n + 1);
        rc = 0;
    }
    unsetenv("NOTIFY_SOCKET");
    return rc;
}

void
notify_send(const char *fmt, ...)
{
    if (notify_fd < 0)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n <= 0 || (size_t)n >= sizeof msg)
        return;
    if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
               notify_len) < 0)
        log_debug("NOTIFY_SOCKET: %s", strerror(errno));
}

const char *
notify_socket(void)
{
    return notify_fd >= 0 ? notify_path : NULL;
}
