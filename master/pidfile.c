#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pid_t
read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    char line[32], *end;
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    (void)fclose(f);
    /* strtol, unlike fscanf, says when the number is out of range; a pid_t must hold it. */
    errno = 0;
    long pid = strtol(line, &end, 10);
    if (errno != 0 || end == line || pid <= 0 || pid != (pid_t)pid)
        pid = 0;
    return (pid_t)pid;
}

/* A recycled pid may belong to anything: only a live process named sessiond* counts. */
static int
is_sessiond(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno != EPERM)
        return 0;
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fgets(comm, sizeof comm, f) == NULL)
        comm[0] = '\0';
    (void)fclose(f);
    return strncmp(comm, "sessiond", 8) == 0;
}

pid_t
pidfile_running(const char *path)
{
    pid_t pid = read_pid(path);
    if (pid <= 0)
        return pid;
    return is_sessiond(pid) ? pid : 0;
}

int
pidfile_write(const char *path, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "pidfile %s: %s", tmp, strerror(errno));
        return -1;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    int ok = write(fd, line, (size_t)n) == n;
    if (close(fd) < 0)
        ok = 0;
    if (!ok || rename(tmp, path) < 0) {
        snprintf(err, errlen, "pidfile %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void
pidfile_remove(const char *path)
{
    if (path[0] != '\0' && read_pid(path) == getpid())
        unlink(path);
}
