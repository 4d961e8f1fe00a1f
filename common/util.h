/* util: the few macros every module wants. */
#ifndef SESSIOND_UTIL_H
#define SESSIOND_UTIL_H

#include <stddef.h>

/* Recover the struct that embeds a member (libev watchers live inside their owners). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define SESSIOND_VERSION "0.1.0"

/* Resident memory of this process in bytes (from /proc/self/statm), or 0 if unknown. */
unsigned long long proc_rss_bytes(void);

/* Write a message into a caller's error buffer (err may be NULL): how helpers that do not
 * log report what went wrong. */
void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
