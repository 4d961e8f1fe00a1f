/* replay: run a harness's LLVMFuzzerTestOneInput over files, without libFuzzer.
 *
 *   replay DIR|FILE...
 *
 * Every regular file named, and every regular file in every directory named (in name
 * order, not recursively), is read and handed to the harness once. Built with the
 * project's compiler and flags, so that `make fuzz-replay` (and under SANITIZE, with ASan
 * and UBSan) checks the seed corpora and every past finding on each test run, on
 * machines without clang. A finding aborts, as under libFuzzer; with REPLAY_VERBOSE set in
 * the environment each file is named before its input, so that the culprit is the last
 * name printed. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int verbose;

static int
run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (size_t n; buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap) {
            uint8_t *more = realloc(buf, cap *= 2);
            if (more == NULL)
                free(buf);
            buf = more;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        free(buf);
        return -1;
    }
    if (verbose)
        fprintf(stderr, "replay: %s\n", path);
    /* A copy of exactly len bytes, as libFuzzer gives: ASan then sees any read past it. */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **more = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names);
            if (more == NULL) {
                rc = -1;
                break;
            }
            names = more;
        }
        if ((names[n] = malloc(strlen(dir) + strlen(e->d_name) + 2)) == NULL) {
            rc = -1;
            break;
        }
        sprintf(names[n++], "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (n > 0)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(names[i]);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    verbose = getenv("REPLAY_VERBOSE") != NULL;
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        struct stat st;
        size_t count = 0;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = run_dir(argv[i], &count);
        } else {
            rc = run_file(argv[i]);
            count = 1;
        }
        printf("%s: %zu input(s) from %s%s\n", argv[0], count, argv[i], rc ? ": FAILED" : "");
    }
    return rc == 0 ? 0 : 1;
}
