/* fuzz_conf: the config parser (common/conf.c), from a file and from the environment.
 *
 * The input is a config file; after a line "%%env", its remaining lines are NAME=value
 * pairs that a fake getenv answers, so the environment overrides (PORT, REDIS_URL,
 * SESSIOND_<DIRECTIVE>, ...) are fuzzed on top of what the file set. The file goes
 * through conf_load_file (a real file in a scratch directory, so that relative paths and
 * the NUL check are exercised) and through conf_load_string. (The two may disagree: a
 * relative path can fit alone and be too long beside the file's directory.) Besides the
 * sanitizers it checks that a failure always says why, and that a config that loads has
 * its values inside the bounds the table gives (spot checks of the derived ones). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"

#define ENV_MAX 32

static char dir[64], path[96];
static char *env_names[ENV_MAX], *env_values[ENV_MAX];
static size_t nenv;

static void
cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

static char *
fake_getenv(const char *name)
{
    for (size_t i = 0; i < nenv; i++)
        if (strcmp(env_names[i], name) == 0)
            return env_values[i];
    return NULL;
}

/* Cut env (modified in place) into NAME=value lines. */
static void
read_env(char *env)
{
    nenv = 0;
    for (char *line = env; line != NULL && nenv < ENV_MAX;) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        char *eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            env_names[nenv] = line;
            env_values[nenv++] = eq + 1;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
}

/* The namespace table is whole: default first, each name valid and once, each rule in
 * range, and every key a directive left out equal to default's. */
static void
check_namespaces(const struct ns_table *t)
{
    check(t->n >= 1 && t->n <= NS_MAX && strcmp(t->v[0].name, "default") == 0, "namespaces");
    for (int i = 0; i < t->n; i++) {
        const struct ns_rules *r = &t->v[i], *d = &t->v[0];
        size_t len = strlen(r->name);
        check(len >= 1 && len <= NS_NAME_MAX && memchr(r->name, ':', len) == NULL &&
                  ns_channel_ok(r->name, len),
              "namespace name");
        for (int j = 0; j < i; j++)
            check(strcmp(t->v[j].name, r->name) != 0, "namespace twice");
        check(r->subscribe <= NS_SUBSCRIBE_NONE && r->publish <= NS_PUBLISH_NONE &&
                  r->presence <= NS_PRESENCE_OFF,
              "namespace rules");
        check(r->history >= 0 && r->history <= NS_HISTORY_MAX && r->history_ttl_ms >= 1 &&
                  r->history_ttl_ms <= (int64_t)720 * 3600 * 1000,
              "namespace history");
        check(i == 0 || (r->set & NS_SET_SUBSCRIBE) || r->subscribe == d->subscribe,
              "subscribe inherited");
        check(i == 0 || (r->set & NS_SET_PUBLISH) || r->publish == d->publish,
              "publish inherited");
        check(i == 0 || (r->set & NS_SET_HISTORY_TTL) || r->history_ttl_ms == d->history_ttl_ms,
              "history_ttl inherited");
        char channel[NS_NAME_MAX + 3];
        snprintf(channel, sizeof channel, "%s:x", r->name);
        check(ns_of(t, r->name, len) == &t->v[0], "a name without ':' is in default");
        check(ns_of(t, channel, len + 2) == r, "a channel in its namespace");
    }
}

static void
check_conf(const struct conf *c)
{
    check(c->nlisten >= 1 && c->nlisten <= CONF_MAX_LISTEN, "listeners");
    for (int i = 0; i < c->nlisten; i++) {
        const struct conf_listen *l = &c->listen[i];
        check(l->family == AF_INET || l->family == AF_INET6 || l->family == AF_UNIX, "family");
        check(l->family == AF_UNIX ? l->port == 0 : l->port >= 0 && l->port <= 65535, "port");
    }
    check(c->workers >= 0 && c->workers <= CONF_MAX_WORKERS, "workers");
    check(c->max_body_bytes >= 0 && c->max_header_bytes > 0, "sizes");
    check(c->ws_max_message_bytes >= 125, "ws_max_message_bytes");
    check(strcmp(c->store, "lmdb") == 0 || strcmp(c->store, "redis") == 0, "store");
    check_namespaces(&c->namespaces);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "/tmp/sessiond-fuzz-conf-XXXXXX");
        check(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(path, sizeof path, "%s/sessiond.conf", dir);
        atexit(cleanup);
    }
    char *text = malloc(size + 1);
    check(text != NULL, "malloc");
    memcpy(text, data, size);
    text[size] = '\0';
    char *env = NULL;
    char *mark = strstr(text, "%%env\n");
    size_t file_len = size;
    if (mark != NULL && (mark == text || mark[-1] == '\n')) {
        env = mark + 6;
        file_len = (size_t)(mark - text);
    }

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    check(fd >= 0 && write(fd, data, file_len) == (ssize_t)file_len, "write");
    close(fd);

    struct conf from_file, from_string;
    char err[CONF_ERR_LEN] = "", err2[CONF_ERR_LEN] = "";
    conf_defaults(&from_file);
    int rc = conf_load_file(&from_file, path, err, sizeof err);
    check(rc == 0 || err[0] != '\0', "a failure without a message");

    /* The string parser stops at a NUL, which the file parser refuses: compare them
     * only where both see the same text. */
    text[file_len] = '\0';
    conf_defaults(&from_string);
    int rc2 = conf_load_string(&from_string, "fuzz", text, err2, sizeof err2);
    check(rc2 == 0 || err2[0] != '\0', "a failure without a message (string)");
    if (rc2 == 0)
        check_conf(&from_string);

    if (rc == 0) {
        check_conf(&from_file);
        if (env != NULL) {
            read_env(env);
            err[0] = '\0';
            if (conf_apply_env(&from_file, fake_getenv, err, sizeof err) == 0)
                check_conf(&from_file);
            else
                check(err[0] != '\0', "an environment failure without a message");
        }
    }
    free(text);
    return 0;
}
