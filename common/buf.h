/* buf: a growable byte buffer with a read offset, for connection input and output. */
#ifndef SESSIOND_BUF_H
#define SESSIOND_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    char *p;
    size_t off; /* bytes before off are consumed */
    size_t len; /* bytes before len are filled */
    size_t cap;
};

/* Make room for at least n more bytes after len; returns 0 or -1 (ENOMEM). */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Mark n bytes as consumed; when everything is consumed the buffer rewinds to empty. */
void buf_consume(struct buf *b, size_t n);
/* Move unconsumed bytes to the front (before a read that needs contiguous space). */
void buf_compact(struct buf *b);
/* Release memory beyond keep bytes of capacity when the buffer is empty. */
void buf_shrink(struct buf *b, size_t keep);
void buf_free(struct buf *b);

/* Appenders for hot paths, where printf's format parsing costs more than the work:
 * a string, a decimal number, and a fixed-point number given in 1/10^decimals units.
 * Like buf_append they return 0 or -1. */
int buf_put_u64(struct buf *b, uint64_t v);
int buf_put_fixed(struct buf *b, uint64_t scaled, unsigned decimals);

/* Inline, so that the length of a string literal is known at compile time. */
static inline int
buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, __builtin_strlen(s));
}

static inline size_t
buf_used(const struct buf *b)
{
    return b->len - b->off;
}

/* The unconsumed bytes. A buffer that never held a byte has no memory, and then this is
 * an empty string rather than p + off: arithmetic on a null pointer is undefined even
 * when it adds 0 (clang's UBSan stops on it), and so is a null pointer handed to memcpy,
 * memcmp or json_loadb with a length of 0. */
static inline char *
buf_data(const struct buf *b)
{
    return b->p != NULL ? b->p + b->off : (char *)"";
}

#endif
