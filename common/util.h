/* util: the few macros every module wants. */
#ifndef SESSIOND_UTIL_H
#define SESSIOND_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Recover the struct that embeds a member (libev watchers live inside their owners). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The version comes from VERSION in the Makefile (-DSESSIOND_VERSION), the one place it
 * is written. */
#ifndef SESSIOND_VERSION
#error "SESSIOND_VERSION is defined by the Makefile (VERSION)"
#endif

/* Seconds, from the milliseconds the config keeps durations in. */
static inline double
secs_of_ms(int64_t ms)
{
    return (double)ms / 1000.0;
}

/* The value of one hex digit, either case, or -1 when c is not one. Inline: the chunked
 * body parser calls it for every digit of every chunk size. */
static inline int
hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* 'A'..'F' to 'a'..'f'; no other byte becomes one of those */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Whether s is 1 to max bytes of [A-Za-z0-9_.:@-]: what user names and channel names
 * are made of (API.md), safe to put in JSON and logs unescaped. */
bool name_chars_ok(const char *s, size_t len, size_t max);

/* Resident memory of this process in bytes (from /proc/self/statm), or 0 if unknown. */
unsigned long long proc_rss_bytes(void);

/* Sleep ms milliseconds, through signals. */
void sleep_ms(long ms);

/* pid is a process that has not exited: kill(pid, 0) also succeeds for a zombie, which
 * an exited process stays until its parent waits for it. */
bool pid_running(pid_t pid);

/* Write a message into a caller's error buffer (err may be NULL): how helpers that do not
 * log report what went wrong. */
void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Allocate the blocks of path's whole current length, so that writes through a shared
 * mapping of it (LMDB's lock files) can never meet a full disk (a SIGBUS). Returns 0
 * (also where the file system cannot do it), or -1 with errno. */
int reserve_file(const char *path);

#endif
