#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

unsigned long long
proc_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    /* NOLINTNEXTLINE(cert-err34-c): the kernel writes statm; its page counts fit. */
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    (void)fclose(f);
    return (unsigned long long)resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

void
sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool
pid_running(pid_t pid)
{
    char path[64], text[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    (void)fclose(f);
    text[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')', as comm may hold one. */
    const char *end = strrchr(text, ')');
    return end != NULL && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X' && end[2] != '\0';
}

void
errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

bool
name_chars_ok(const char *s, size_t len, size_t max)
{
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int
reserve_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (rc == 0 && sb.st_size > 0 && fallocate(fd, 0, 0, sb.st_size) != 0 &&
        errno != EOPNOTSUPP && errno != ENOSYS)
        rc = -1;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
