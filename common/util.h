/* util: the few macros every module wants. */
#ifndef SESSIOND_UTIL_H
#define SESSIOND_UTIL_H

#include <stddef.h>

/* Recover the struct that embeds a member (libev watchers live inside their owners). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define SESSIOND_VERSION "0.1.0"

#endif
