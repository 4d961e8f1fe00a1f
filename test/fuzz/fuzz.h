/* What the harnesses share: libFuzzer's entry point, and how a harness reports a promise
 * of the code under test that an input broke (abort, so that libFuzzer keeps the input
 * and replay.c fails on it). */
#ifndef SESSIOND_FUZZ_H
#define SESSIOND_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void
fuzz_check(bool ok, const char *harness, const char *what)
{
    if (!ok) {
        fprintf(stderr, "%s: %s\n", harness, what);
        abort();
    }
}

#define check(ok, what) fuzz_check((ok), __FILE__, (what))

#endif
