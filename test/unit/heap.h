/* Heap copies for tests that must catch a read past the bytes a function was given. */
#ifndef SESSIOND_TEST_HEAP_H
#define SESSIOND_TEST_HEAP_H

#include <stddef.h>

/* A heap copy of exactly n bytes of s (one byte when n is 0, never read), so that
 * AddressSanitizer reports any read past the end. The caller frees it. */
char *exact_copy(const void *s, size_t n);

#endif
