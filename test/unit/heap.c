#include "heap.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

char *
exact_copy(const void *s, size_t n)
{
    char *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    if (n > 0)
        memcpy(copy, s, n);
    return copy;
}
