#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
    enum log_level level;
    int fd;        /* 2 (stderr) or an opened log file */
    char path[4096];
    char role[32];
} L = {LOG_LVL_INFO, 2, "", "sessiond"};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void
log_set_role(const char *role)
{
    snprintf(L.role, sizeof L.role, "%s", role);
}

void
log_set_level(enum log_level level)
{
    L.level = level;
}

int
log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof level_names / sizeof *level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

int
log_open(const char *path)
{
    if (path == NULL || *path == '\0') {
        if (L.fd != 2)
            close(L.fd);
        L.fd = 2;
        L.path[0] = '\0';
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (L.fd != 2)
        close(L.fd);
    L.fd = fd;
    snprintf(L.path, sizeof L.path, "%s", path);
    return 0;
}

int
log_configure(const char *path, int level)
{
    L.level = (enum log_level)level;
    return log_open(path);
}

int
log_reopen(void)
{
    if (L.path[0] == '\0')
        return 0;
    char path[sizeof L.path];
    memcpy(path, L.path, sizeof path);
    return log_open(path);
}

/* Format one whole line and hand it to the kernel in a single write, so that lines
 * from several processes sharing the file never interleave mid-line. */
static void
emit(enum log_level level, int err, const char *fmt, va_list ap)
{
    if (level > L.level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof line - n, ".%03ld [%s] %s %ld: ", (long)tv.tv_usec / 1000,
                     level_names[level], L.role, (long)getpid());
    if (k > 0)
        n += (size_t)k;
    if (n < sizeof line) {
        k = vsnprintf(line + n, sizeof line - n, fmt, ap);
        if (k > 0)
            n += (size_t)k;
    }
    if (err && n < sizeof line) {
        k = snprintf(line + n, sizeof line - n, ": %s", strerror(err));
        if (k > 0)
            n += (size_t)k;
    }
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(L.fd, line, n);
    (void)w; /* nowhere left to report a failed log write */
}

#define LOG_BODY(level, err)                                                                       \
    do {                                                                                           \
        int saved = errno;                                                                         \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        emit(level, err, fmt, ap);                                                                 \
        va_end(ap);                                                                                \
        errno = saved;                                                                             \
    } while (0)

void log_warn(const char *fmt, ...) { LOG_BODY(LOG_LVL_WARN, saved); }
void log_warnx(const char *fmt, ...) { LOG_BODY(LOG_LVL_WARN, 0); }
void log_error(const char *fmt, ...) { LOG_BODY(LOG_LVL_ERROR, saved); }
void log_errorx(const char *fmt, ...) { LOG_BODY(LOG_LVL_ERROR, 0); }
void log_info(const char *fmt, ...) { LOG_BODY(LOG_LVL_INFO, 0); }
void log_debug(const char *fmt, ...) { LOG_BODY(LOG_LVL_DEBUG, 0); }

void
log_fatal(int status, const char *fmt, ...)
{
    LOG_BODY(LOG_LVL_ERROR, 0);
    exit(status);
}
