#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

bool
privs_wanted(const struct conf *c)
{
    return c->user[0] != '\0' && geteuid() == 0;
}

/* A decimal id, for users that exist only as numbers (a container's --user 10001). */
static bool
numeric_id(const char *s, unsigned long *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno == 0 && *end == '\0' && *out < 0xffffffffUL;
}

int
privs_lookup(const struct conf *c, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
    unsigned long n;
    const struct passwd *pw = getpwnam(c->user);
    if (pw != NULL) {
        *uid = pw->pw_uid;
        *gid = pw->pw_gid;
    } else if (numeric_id(c->user, &n)) {
        *uid = (uid_t)n;
        *gid = (gid_t)n;
    } else {
        errf(err, errlen, "\"user\": no user %s", c->user);
        return -1;
    }
    if (c->group[0] == '\0')
        return 0;
    const struct group *gr = getgrnam(c->group);
    if (gr != NULL) {
        *gid = gr->gr_gid;
    } else if (numeric_id(c->group, &n)) {
        *gid = (gid_t)n;
    } else {
        errf(err, errlen, "\"group\": no group %s", c->group);
        return -1;
    }
    return 0;
}

static int
give(const struct conf *c, const char *path, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    if (path[0] == '\0' || chown(path, uid, gid) == 0 || errno == ENOENT)
        return 0;
    errf(err, errlen, "cannot give %s to user %s: %s", path, c->user, strerror(errno));
    return -1;
}

int
privs_own(const struct conf *c, const char *path, char *err, size_t errlen)
{
    uid_t uid;
    gid_t gid;
    if (!privs_wanted(c))
        return 0;
    if (privs_lookup(c, &uid, &gid, err, errlen) < 0)
        return -1;
    return give(c, path, uid, gid, err, errlen);
}

int
privs_own_files(const struct conf *c, char *err, size_t errlen)
{
    static const char *const suffixes[] = {"",        "-lock",         "-roster",
                                           "-roster-lock", "-history", "-history-lock"};
    char path[sizeof c->store_path + 16];
    uid_t uid;
    gid_t gid;
    if (!privs_wanted(c))
        return 0;
    if (privs_lookup(c, &uid, &gid, err, errlen) < 0) /* once, not once per file */
        return -1;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s%s", c->store_path, suffixes[i]);
        if (give(c, path, uid, gid, err, errlen) < 0)
            return -1;
    }
    return give(c, c->log_file, uid, gid, err, errlen);
}

int
privs_drop(const struct conf *c, char *err, size_t errlen)
{
    uid_t uid, ruid, euid, suid;
    gid_t gid, rgid, egid, sgid;
    if (!privs_wanted(c))
        return 0;
    if (privs_lookup(c, &uid, &gid, err, errlen) < 0)
        return -1;
    /* Groups first: once the user has changed, we may no longer change them. */
    if (setgroups(1, &gid) != 0) {
        errf(err, errlen, "setgroups(%lu): %s", (unsigned long)gid, strerror(errno));
        return -1;
    }
    if (setresgid(gid, gid, gid) != 0) {
        errf(err, errlen, "setresgid(%lu): %s", (unsigned long)gid, strerror(errno));
        return -1;
    }
    if (setresuid(uid, uid, uid) != 0) {
        errf(err, errlen, "setresuid(%lu): %s", (unsigned long)uid, strerror(errno));
        return -1;
    }
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
        ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid ||
        sgid != gid) {
        errf(err, errlen, "the user and group did not change as asked");
        return -1;
    }
    if (uid != 0 && setuid(0) == 0) {
        errf(err, errlen, "root could be regained after dropping to user %s", c->user);
        return -1;
    }
    return 0;
}
