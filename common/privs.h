/* privs: whom the workers serve as. A master started as root stays root, as nginx's does,
 * so that a reload can bind a new privileged port and read root-only keys; each worker
 * hands itself to the configured user and group before it touches a client, and the
 * master gives that user the files the workers must write (the store, the log). */
#ifndef SESSIOND_PRIVS_H
#define SESSIOND_PRIVS_H

#include <stdbool.h>
#include <sys/types.h>

#include "conf.h"

/* Whether the workers will change user: `user` is set and we run as root. */
bool privs_wanted(const struct conf *c);

/* The ids of `user` and `group` (the user's own group when `group` is empty). A name
 * that is not in the user database may be a number. Returns 0, or -1 with the reason. */
int privs_lookup(const struct conf *c, uid_t *uid, gid_t *gid, char *err, size_t errlen);

/* Give path to the workers' user when privs_wanted(); a missing file is not an error. */
int privs_own(const struct conf *c, const char *path, char *err, size_t errlen);

/* privs_own() every file the workers write: the store and the roster (each with its
 * lock file) and the log file. */
int privs_own_files(const struct conf *c, char *err, size_t errlen);

/* In a worker: become the configured user and group for good (supplementary groups,
 * real, effective and saved ids, each call checked), and check that root cannot be
 * regained. Does nothing unless privs_wanted(). Returns 0, or -1 with the reason. */
int privs_drop(const struct conf *c, char *err, size_t errlen);

#endif
