#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

static struct {
    enum log_level level;
    enum log_format format;
    int fd;        /* 2 (stderr) or an opened log file */
    char path[4096];
    char process[16]; /* "master", "worker" or "sessiond" */
    int worker;       /* the worker's id, or -1 */
    char role[32];    /* how text lines name the process: "master", "worker 3" */
    bool echo;        /* error lines also go to stderr (log_set_echo) */
} L = {LOG_LVL_INFO, LOG_FMT_TEXT, 2, "", "sessiond", -1, "sessiond", false};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"text", "json"};

void
log_set_process(const char *process, int worker)
{
    snprintf(L.process, sizeof L.process, "%s", process);
    L.worker = worker;
    if (worker >= 0)
        snprintf(L.role, sizeof L.role, "%s %d", process, worker);
    else
        snprintf(L.role, sizeof L.role, "%s", process);
}

void
log_set_level(enum log_level level)
{
    L.level = level;
}

void
log_set_echo(bool on)
{
    /* A closed stderr's number may since have been given to some other file: never write
     * there. */
    L.echo = on && fcntl(2, F_GETFD) != -1;
}

/* Whether stderr already is the log: no file is configured, or stderr was pointed at the
 * log file itself (sessiond 2>>sessiond.log). */
static bool
stderr_is_log(void)
{
    struct stat a, b;
    if (L.fd == 2) return true;
    return fstat(2, &a) == 0 && fstat(L.fd, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* An error line for a person at the terminal, as the command line's own messages read:
 * "sessiond: message", or "sessiond: worker 2: message" from a worker. */
static void
echo_error(const char *msg)
{
    char line[2200];
    int k = L.worker >= 0 ? snprintf(line, sizeof line, "sessiond: %s: %s\n", L.role, msg)
                          : snprintf(line, sizeof line, "sessiond: %s\n", msg);
    if (k <= 0) return;
    size_t n = (size_t)k < sizeof line ? (size_t)k : sizeof line - 1;
    line[n - 1] = '\n';
    ssize_t w = write(2, line, n);
    (void)w;
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
log_format_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof format_names / sizeof *format_names); i++)
        if (strcmp(name, format_names[i]) == 0)
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
log_configure(const char *path, int level, int format)
{
    L.level = (enum log_level)level;
    L.format = format == LOG_FMT_JSON ? LOG_FMT_JSON : LOG_FMT_TEXT;
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

size_t
log_json_line(char *out, size_t len, const struct timeval *tv, enum log_level level,
              const char *process, int worker, long pid, const char *msg)
{
    struct tm tm;
    char ts[32] = "";
    char who[32] = "";
    time_t sec = tv->tv_sec;
    if (gmtime_r(&sec, &tm) != NULL && strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        ts[0] = '\0';
    if (worker >= 0)
        snprintf(who, sizeof who, ",\"worker\":%d", worker);
    /* process is one of our own names: nothing in it needs escaping. */
    int k = snprintf(out, len,
                     "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"process\":\"%s\"%s,"
                     "\"pid\":%ld,\"msg\":\"",
                     ts, (long)tv->tv_usec / 1000, level_names[level], process, who, pid);
    if (k < 0 || (size_t)k + 3 > len) { /* cannot happen with len >= 256 */
        if (len > 0)
            out[0] = '\0';
        return 0;
    }
    size_t n = (size_t)k;
    n += utf8_json_escape(out + n, len - n - 3, msg, strlen(msg), NULL);
    memcpy(out + n, "\"}", 3); /* with the terminating NUL */
    return n + 2;
}

/* Hand one whole line to the kernel in a single write, so that lines from several
 * processes sharing the file never interleave mid-line. */
static void
emit(enum log_level level, int err, const char *fmt, va_list ap)
{
    if (level > L.level)
        return;
    char msg[2048];
    int k = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t m = k < 0 ? 0 : (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1;
    msg[m] = '\0';
    if (err && m < sizeof msg - 1)
        snprintf(msg + m, sizeof msg - m, ": %s", strerror(err));

    /* Room for the message and its prefix, and in JSON for some escapes as well. */
    char line[4096];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    size_t n;
    if (L.format == LOG_FMT_JSON) {
        n = log_json_line(line, sizeof line - 1, &tv, level, L.process, L.worker,
                          (long)getpid(), msg);
    } else {
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
        size_t room = sizeof line - n - 1; /* and one byte for the newline */
        k = snprintf(line + n, room, ".%03ld [%s] %s %ld: %s", (long)tv.tv_usec / 1000,
                     level_names[level], L.role, (long)getpid(), msg);
        if (k > 0)
            n += (size_t)k < room ? (size_t)k : room - 1;
    }
    line[n++] = '\n';
    ssize_t w = write(L.fd, line, n);
    (void)w; /* nowhere left to report a failed log write */
    if (level == LOG_LVL_ERROR && L.echo && !stderr_is_log()) echo_error(msg);
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
