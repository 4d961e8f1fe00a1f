/* sessiond: the command line. Parse options, load and check the whole configuration, then
 * hand over to the supervisor (or, with clustering off, serve in this process). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "listener.h"
#include "log.h"
#include "master.h"
#include "notify.h"
#include "pidfile.h"
#include "status.h"
#include "store.h"
#include "tls.h"
#include "util.h"

#define EXIT_NOT_RUNNING 3 /* -s status: no master (as LSB init scripts use 3) */

static const char *const default_paths[] = {"sessiond.conf", "/etc/sessiond/sessiond.conf"};

/* The file the config comes from: the -c argument, else the first default that exists,
 * else "" for the built-in defaults. Kept for reloads. */
static char conf_path[4096];

/* Build a complete configuration: defaults, the file, then the environment (every
 * SESSIOND_ variable of which must name a directive). */
static int
load_settings(struct conf *c, char *err, size_t errlen)
{
    conf_defaults(c);
    if (conf_path[0] != '\0' && conf_load_file(c, conf_path, err, errlen) < 0)
        return -1;
    if (conf_check_env_names(environ, err, errlen) < 0) return -1;
    return conf_apply_env(c, getenv, err, errlen);
}

/* The settings, checked against this machine as well: what -t, a start and a reload use.
 * (-s only needs the pidfile, and must work while, say, the log's directory is away.) */
static int
load_config(struct conf *c, char *err, size_t errlen)
{
    char msg[CONF_ERR_LEN];
    if (load_settings(c, err, errlen) < 0) return -1;
    if (conf_check_paths(c, msg, sizeof msg) < 0) {
        errf(err, errlen, "%s: %s", conf_path[0] != '\0' ? conf_path : "sessiond", msg);
        return -1;
    }
    return 0;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: sessiond [-c FILE] [-t] [-s reload|upgrade|stop|quit|status] [-v] [-h]\n"
               "  -c FILE   configuration file (default ./sessiond.conf, then\n"
               "            /etc/sessiond/sessiond.conf, else built-in defaults)\n"
               "  -t        check the configuration and exit\n"
               "  -s SIGNAL signal the running master: reload (HUP), stop (TERM),\n"
               "            quit (QUIT); upgrade (USR2: run the binary on disk, and\n"
               "            wait until it serves: exit 0, or 1 when it did not take);\n"
               "            or status: print its workers as a table\n"
               "            (exit 0 when it runs, 3 when it does not)\n"
               "  -v        print the version and exit\n"
               "  -h        print this help and exit\n");
}

static bool
same_inode(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* -s upgrade: USR2 to the master, then its answer, read off the pidfile: a new pid once
 * the new master serves, or the same pid written anew when the upgrade failed. Then, for
 * a script that goes on, the old master's exit once it has drained. */
static int
upgrade_command(const struct conf *c, pid_t pid)
{
    struct stat before, now;
    if (stat(c->pidfile, &before) < 0 || kill(pid, SIGUSR2) < 0) {
        fprintf(stderr, "sessiond: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
        return 1;
    }
    long waited = 0, limit = (long)c->upgrade_timeout_ms + 5000;
    pid_t next = 0;
    for (; waited < limit; waited += 20, sleep_ms(20)) {
        next = pidfile_running(c->pidfile);
        if (next > 0 && next != pid) break;
        if (next == pid && stat(c->pidfile, &now) == 0 && !same_inode(&before, &now)) {
            fprintf(stderr, "sessiond: the upgrade did not take (the log says why); pid %ld "
                            "serves on\n",
                    (long)pid);
            return 1;
        }
        if (!pid_running(pid)) {
            fprintf(stderr, "sessiond: pid %ld exited during the upgrade\n", (long)pid);
            return 1;
        }
    }
    if (waited >= limit) {
        fprintf(stderr, "sessiond: no answer to the upgrade from pid %ld within %ld ms\n",
                (long)pid, limit);
        return 1;
    }
    limit = (long)c->shutdown_timeout_ms + 2000;
    for (waited = 0; waited < limit && pid_running(pid); waited += 20)
        sleep_ms(20);
    if (pid_running(pid))
        printf("sessiond: upgraded: pid %ld serves; pid %ld is still draining\n", (long)next,
               (long)pid);
    else
        printf("sessiond: upgraded: pid %ld serves in place of pid %ld\n", (long)next, (long)pid);
    return 0;
}

static int
send_command(const struct conf *c, const char *cmd)
{
    static const struct {
        const char *name;
        int sig;
    } cmds[] = {{"reload", SIGHUP}, {"upgrade", SIGUSR2}, {"stop", SIGTERM},
                {"quit", SIGQUIT},  {"status", 0}};
    int sig = -1;
    for (size_t i = 0; i < ARRAY_LEN(cmds); i++)
        if (strcmp(cmd, cmds[i].name) == 0)
            sig = cmds[i].sig;
    if (sig < 0) {
        fprintf(stderr,
                "sessiond: unknown command \"%s\" for -s (reload, upgrade, stop, quit, status)\n",
                cmd);
        return 2;
    }
    if (c->pidfile[0] == '\0') {
        fprintf(stderr, "sessiond: no pidfile is configured, so -s cannot find the master\n");
        return 1;
    }
    pid_t pid = pidfile_running(c->pidfile);
    if (pid < 0) {
        fprintf(stderr, "sessiond: cannot read %s: %s\n", c->pidfile, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        fprintf(stderr, "sessiond: not running (no live master in %s)\n", c->pidfile);
        return sig == 0 ? EXIT_NOT_RUNNING : 1;
    }
    if (sig == 0)
        return status_run(c, pid, stdout, stderr);
    if (sig == SIGUSR2)
        return upgrade_command(c, pid);
    if (kill(pid, sig) < 0) {
        fprintf(stderr, "sessiond: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
        return 1;
    }
    return 0;
}

static void
find_config(const char *arg)
{
    if (arg != NULL) {
        snprintf(conf_path, sizeof conf_path, "%s", arg);
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(default_paths); i++) {
        if (access(default_paths[i], F_OK) == 0) {
            snprintf(conf_path, sizeof conf_path, "%s", default_paths[i]);
            return;
        }
    }
    conf_path[0] = '\0';
}

/* What the operator should hear about whom the workers will serve as. */
static const char *
privilege_warning(const struct conf *c)
{
    if (geteuid() == 0 && c->user[0] == '\0')
        return "running as root without \"user\": the workers will serve clients as root";
    if (geteuid() != 0 && c->user[0] != '\0')
        return "\"user\" is ignored: only a master started as root can change user";
    return NULL;
}

int
main(int argc, char **argv)
{
    const char *conf_arg = NULL, *command = NULL;
    bool test_only = false;
    int opt;
    upgrade_remember(argv);
    while ((opt = getopt(argc, argv, "c:ts:vh")) != -1) {
        switch (opt) {
        case 'c': conf_arg = optarg; break;
        case 't': test_only = true; break;
        case 's': command = optarg; break;
        case 'v': printf("sessiond %s\n", SESSIOND_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    /* A cut path could name another file that exists: refuse it instead. */
    if (conf_arg != NULL && strlen(conf_arg) >= sizeof conf_path) {
        fprintf(stderr, "sessiond: -c: %s\n", strerror(ENAMETOOLONG));
        return 1;
    }
    find_config(conf_arg);

    /* What a start is handed, before the environment is read as config: sockets from
     * systemd, or the sockets and lock of the master this one replaces. */
    struct upgrade_from from;
    char err[CONF_ERR_LEN];
    int activated = 0;
    if (command == NULL && !test_only &&
        (upgrade_take(&from, err, sizeof err) < 0 ||
         (activated = listener_from_systemd(err, sizeof err)) < 0)) {
        fprintf(stderr, "sessiond: %s\n", err);
        return 1;
    }
    struct conf *c = malloc(sizeof *c);
    if (c == NULL)
        return 1;
    if ((command != NULL && !test_only ? load_settings : load_config)(c, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        free(c);
        return 1;
    }
    const char *warning = privilege_warning(c);
    if (test_only) {
        /* The certificate and key too: a config that names an unreadable or mismatched
         * pair would fail at start (and is refused on reload). */
        SSL_CTX *tls = NULL;
        /* With store redis, the URL and the rediss:// files (store_prepare touches
         * nothing else for it; for lmdb it would create the store's files). */
        bool redis = strcmp(c->store, "redis") == 0;
        if (tls_ctx_build(c, &tls, err, sizeof err) < 0 ||
            (redis && store_prepare(c, err, sizeof err) < 0)) {
            SSL_CTX_free(tls);
            fprintf(stderr, "%s: %s\n", conf_path[0] != '\0' ? conf_path : "sessiond", err);
            free(c);
            return 1;
        }
        SSL_CTX_free(tls);
        if (warning != NULL)
            fprintf(stderr, "sessiond: warning: %s\n", warning);
        if (conf_key_warning(c, err, sizeof err)) fprintf(stderr, "sessiond: warning: %s\n", err);
        printf("configuration OK\n");
        free(c);
        return 0;
    }
    if (command != NULL) {
        int rc = send_command(c, command);
        free(c);
        return rc;
    }
    /* Named before the first line: this process is the master, or the only one. */
    log_set_process(c->clustering ? "master" : "sessiond", -1);
    if (log_configure(c->log_file, c->log_level, c->log_format) < 0) {
        fprintf(stderr, "sessiond: cannot open log file %s: %s\n", c->log_file, strerror(errno));
        free(c);
        return 1;
    }
    /* Until it serves, an error that stops the start is said on the terminal too, not only
     * in a log file nobody is looking at yet. */
    log_set_echo(true);
    notify_init();
    if (warning != NULL)
        log_warnx("%s", warning);
    if (c->api_key[0] == '\0')
        log_warnx("no api_key is configured: the admin API answers loopback clients only");
    if (conf_key_warning(c, err, sizeof err)) log_warnx("%s", err);
    if (from.pid != 0)
        log_info("upgrade: taking over from pid %ld", (long)from.pid);
    if (activated > 0)
        log_info("%d listening socket(s) from systemd (LISTEN_FDS)", activated);
    if (conf_path[0] == '\0')
        log_info("no configuration file found (./sessiond.conf, /etc/sessiond/sessiond.conf); "
                 "using built-in defaults");
    else
        log_info("configuration from %s", conf_path);
    if (!c->clustering) {
        /* Platforms set WEB_CONCURRENCY on their own: say why it has no effect. */
        if (c->workers > 1)
            log_info("clustering is off: one process serves, and workers %d (or WORKERS, "
                     "WEB_CONCURRENCY) is ignored",
                     c->workers);
        return master_run_single(c, load_config, &from);
    }
    return master_run(c, load_config, &from);
}
