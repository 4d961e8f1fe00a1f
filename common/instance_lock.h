/* instance_lock: one sessiond instance per store_path.
 *
 * The files beside store_path are one instance's: its sessions, its channel history, and
 * its roster (who is connected to which worker; also with store redis, whose roster
 * counts this instance's members there), which the master empties at start. A second
 * instance on the same path would empty the first one's roster under its feet. So the
 * master holds an exclusive flock(2) on store_path INSTANCE_LOCK_SUFFIX for as long as
 * the files are in use, and writes its pid into it so that a refused start can name the
 * holder. The lock is the kernel's: it goes with the last process that holds the
 * descriptor (workers inherit it), so a file left by a killed instance never blocks a
 * start; its pid text only serves the message.
 *
 * Not store_path-lock: that is LMDB's own lock file, on which LMDB takes fcntl locks. */
#ifndef SESSIOND_INSTANCE_LOCK_H
#define SESSIOND_INSTANCE_LOCK_H

#include <stdbool.h>
#include <stddef.h>

#define INSTANCE_LOCK_SUFFIX "-instance.lock"

/* The lock file of store_path into out. 0, or -1 when it does not fit. */
int instance_lock_path(const char *store_path, char *out, size_t outlen);

/* Take the lock of store_path for this process and its children, waiting up to wait_ms
 * for a holder that is letting go (an instance killed a moment ago is still exiting).
 * Returns the locked descriptor (close-on-exec; keep it open while the store is in use),
 * or -1 with err: for a store in use, one line that names the pid holding it. */
int instance_lock_take(const char *store_path, int wait_ms, char *err, size_t errlen);

/* Whether fd, a descriptor instance_lock_take returned, is the lock of store_path (the
 * same file, however the path is spelt): a reload onto the same store keeps it. */
bool instance_lock_is(int fd, const char *store_path);

/* Write this process's pid into the lock fd holds: an upgrade's new master, which was
 * handed the lock, is its holder from now on. 0, or -1 (errno). */
int instance_lock_claim(int fd);

#endif
