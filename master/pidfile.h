/* pidfile: the master's pid on disk, for `sessiond -s` and for init scripts. */
#ifndef SESSIOND_PIDFILE_H
#define SESSIOND_PIDFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The pid in path if that process is alive and is a sessiond; 0 if the file is missing
 * or stale; -1 if it cannot be read (errno set). */
pid_t pidfile_running(const char *path);

/* Write our pid atomically (a temporary file renamed over path). Returns 0 or -1 with a
 * message in err. */
int pidfile_write(const char *path, char *err, size_t errlen);

/* Remove path if it still holds our pid. */
void pidfile_remove(const char *path);

#endif
