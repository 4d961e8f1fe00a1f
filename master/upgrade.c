#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "util.h"

static char exe[PATH_MAX];
static char **args;

/* dir/name into exe, if it fits. */
static bool
join(const char *dir, size_t dirlen, const char *name)
{
    int n = snprintf(exe, sizeof exe, "%.*s/%s", (int)dirlen, dir, name);
    return n > 0 && (size_t)n < sizeof exe;
}

/* The command as it was started, not the file it resolved to: a deploy that points a
 * symlink at a new release must run the new one. argv[0] with a slash is a path (made
 * absolute: it is exec'd later), one without was found on PATH; the rest falls back to
 * /proc/self/exe, the file itself. */
static void
find_exe(const char *argv0)
{
    char cwd[PATH_MAX];
    const char *path = getenv("PATH");
    if (argv0 != NULL && argv0[0] == '/') {
        if ((size_t)snprintf(exe, sizeof exe, "%s", argv0) < sizeof exe) return;
    } else if (argv0 != NULL && strchr(argv0, '/') != NULL) {
        if (getcwd(cwd, sizeof cwd) != NULL && join(cwd, strlen(cwd), argv0)) return;
    } else if (argv0 != NULL && argv0[0] != '\0' && path != NULL) {
        for (const char *p = path, *end;; p = end + 1) {
            end = strchr(p, ':');
            size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
            if (len > 0 && p[0] == '/' && join(p, len, argv0) && access(exe, X_OK) == 0) return;
            if (end == NULL) break;
        }
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
}

void
upgrade_remember(char **argv)
{
    args = argv;
    find_exe(argv[0]);
}

/* One number of the value, at *p, followed by a separator or the end. */
static bool
number(const char **p, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (errno != 0 || end == *p || v < 0 || v > INT_MAX) return false;
    *out = v;
    *p = end;
    return true;
}

/* The value is "pid lock ready base store fd,fd,...", as exec_new_master writes it. */
int
upgrade_take(struct upgrade_from *u, char *err, size_t errlen)
{
    *u = (struct upgrade_from){.lock = -1, .ready = -1};
    const char *v = getenv(UPGRADE_ENV);
    if (v == NULL) return 0;
    const char *p = v;
    long pid, lock, ready, base, fd;
    int n = 0;
    bool ok = number(&p, &pid) && *p++ == ' ' && number(&p, &lock) && *p++ == ' ' &&
              number(&p, &ready) && *p++ == ' ' && number(&p, &base) && *p++ == ' ' &&
              sscanf(p, "%15[a-z]%n", u->store, &n) == 1 && (p[n] == '\0' || p[n] == ' ');
    p += n;
    while (ok && *p != '\0') { /* " fd,fd,...": the listeners */
        p++;
        ok = number(&p, &fd) && (*p == ',' || *p == '\0') && listener_inherit((int)fd) == 0;
    }
    if (!ok || pid == 0) {
        errf(err, errlen, "%s=%s: not a handover from a sessiond master", UPGRADE_ENV, v);
        return -1;
    }
    u->pid = (pid_t)pid;
    u->lock = (int)lock;
    u->ready = (int)ready;
    u->base = (int)base;
    (void)fcntl(u->lock, F_SETFD, FD_CLOEXEC);
    (void)fcntl(u->ready, F_SETFD, FD_CLOEXEC);
    unsetenv(UPGRADE_ENV);
    return 0;
}

static int
inheritable(int fd)
{
    return fcntl(fd, F_SETFD, 0);
}

/* In the child: the descriptors the new master takes lose close-on-exec (in this
 * process's table only), the environment names them, and the binary replaces us. */
static _Noreturn void
exec_new_master(const struct listener_set *ls, int lock, int base, const char *store, int ready)
{
    char value[64 + CONF_MAX_LISTEN * 12];
    int n =
        snprintf(value, sizeof value, "%ld %d %d %d %s", (long)getppid(), lock, ready, base, store);
    for (int i = 0; i < ls->n && n > 0 && (size_t)n < sizeof value; i++) {
        n += snprintf(value + n, sizeof value - (size_t)n, "%c%d", i > 0 ? ',' : ' ', ls->l[i].fd);
        inheritable(ls->l[i].fd);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (inheritable(lock) < 0 || inheritable(ready) < 0 || setenv(UPGRADE_ENV, value, 1) < 0 ||
        (notify_socket() != NULL && setenv("NOTIFY_SOCKET", notify_socket(), 1) < 0)) {
        log_error("upgrade: preparing the new master");
        _exit(127);
    }
    execv(exe, args);
    log_error("upgrade: cannot execute %s", exe);
    _exit(127);
}

pid_t
upgrade_start(const struct listener_set *ls, int lock, int base, const char *store, int *ready,
              char *err, size_t errlen)
{
    int p[2];
    if (exe[0] == '\0' || args == NULL) {
        errf(err, errlen, "the path of this binary is unknown (/proc was not mounted at start)");
        return -1;
    }
    if (pipe2(p, O_CLOEXEC) < 0) {
        errf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        errf(err, errlen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) exec_new_master(ls, lock, base, store, p[1]);
    close(p[1]);
    (void)fcntl(p[0], F_SETFL, O_NONBLOCK);
    *ready = p[0];
    return pid;
}

void
upgrade_done(struct upgrade_from *u)
{
    if (u->ready < 0) return;
    if (write(u->ready, "1", 1) != 1) log_warn("upgrade: telling pid %ld to drain", (long)u->pid);
    close(u->ready);
    u->ready = -1;
}
