#include "instance_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define RETRY_MS 20

int
instance_lock_path(const char *store_path, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s", store_path, INSTANCE_LOCK_SUFFIX);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* The pid the holder wrote, or 0 when the file names none (yet). */
static long
holder_pid(int fd)
{
    char text[32];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) return 0;
    text[n] = '\0';
    char *end;
    errno = 0;
    long pid = strtol(text, &end, 10);
    return errno != 0 || end == text || pid <= 0 ? 0 : pid;
}

/* Our pid over whatever the last holder wrote: written first and cut to length after,
 * so that a reader meanwhile still finds a number that ends where ours does. */
static int
write_pid(int fd)
{
    char text[32];
    int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (pwrite(fd, text, (size_t)n, 0) != n || ftruncate(fd, n) != 0) return -1;
    return 0;
}

static void
refusal(const char *store_path, long pid, char *err, size_t errlen)
{
    if (pid == 0)
        errf(err, errlen,
             "store_path %s is in use by another process (another sessiond instance); give "
             "each instance its own store_path",
             store_path);
    else if (kill((pid_t)pid, 0) == 0 || errno == EPERM)
        errf(err, errlen,
             "store_path %s is in use by pid %ld (another sessiond instance); give each "
             "instance its own store_path",
             store_path, pid);
    else
        errf(err, errlen,
             "store_path %s is in use by the workers of pid %ld, which has exited; they "
             "stop within its shutdown_timeout",
             store_path, pid);
}

/* flock, not fcntl: its lock belongs to the open file description, so forked workers
 * share it and no close of another descriptor of the file in this process drops it. */
static int
lock_wait(int fd, int wait_ms)
{
    for (int waited = 0;; waited += RETRY_MS) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
        if (errno != EWOULDBLOCK || waited >= wait_ms) return -1;
        sleep_ms(RETRY_MS);
    }
}

int
instance_lock_take(const char *store_path, int wait_ms, char *err, size_t errlen)
{
    char path[4200];
    if (instance_lock_path(store_path, path, sizeof path) < 0) {
        errf(err, errlen, "store_path %s: too long for its lock file", store_path);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        errf(err, errlen, "store_path %s: cannot open %s: %s", store_path, path, strerror(errno));
        return -1;
    }
    if (lock_wait(fd, wait_ms) < 0) {
        if (errno == EWOULDBLOCK)
            refusal(store_path, holder_pid(fd), err, errlen);
        else
            errf(err, errlen, "store_path %s: cannot lock %s: %s", store_path, path,
                 strerror(errno));
        close(fd);
        return -1;
    }
    if (write_pid(fd) < 0) {
        errf(err, errlen, "store_path %s: cannot write %s: %s", store_path, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int
instance_lock_claim(int fd)
{
    return write_pid(fd);
}

bool
instance_lock_is(int fd, const char *store_path)
{
    char path[4200];
    struct stat held, named;
    if (fd < 0 || instance_lock_path(store_path, path, sizeof path) < 0) return false;
    return fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_dev == named.st_dev &&
           held.st_ino == named.st_ino;
}
