#include "buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    if (b->off > 0 && b->cap - buf_used(b) >= n) {
        buf_compact(b);
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - buf_used(b) < n) {
        if (cap > ((size_t)-1) / 2) {
            errno = ENOMEM;
            return -1;
        }
        cap *= 2;
    }
    buf_compact(b);
    char *p = realloc(b->p, cap);
    if (p == NULL)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
    if (n == 0) /* b->p and data may be NULL then, and NULL + 0 is undefined */
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(room ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        if (buf_reserve(b, (size_t)n + 1) < 0)
            return -1;
    }
}

void
buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void
buf_compact(struct buf *b)
{
    if (b->off == 0)
        return;
    memmove(b->p, b->p + b->off, buf_used(b));
    b->len -= b->off;
    b->off = 0;
}

void
buf_shrink(struct buf *b, size_t keep)
{
    if (buf_used(b) == 0 && b->cap > keep) {
        free(b->p);
        b->p = NULL;
        b->cap = b->len = b->off = 0;
    }
}

void
buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->cap = b->len = b->off = 0;
}

int
buf_put_u64(struct buf *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return buf_append(b, tmp + sizeof tmp - n, n);
}

int
buf_put_fixed(struct buf *b, uint64_t scaled, unsigned decimals)
{
    uint64_t unit = 1;
    for (unsigned i = 0; i < decimals; i++)
        unit *= 10;
    if (buf_put_u64(b, scaled / unit) < 0)
        return -1;
    if (decimals == 0)
        return 0;
    char frac[20];
    uint64_t f = scaled % unit;
    for (unsigned i = decimals; i > 0; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    frac[0] = '.';
    return buf_append(b, frac, decimals + 1);
}
