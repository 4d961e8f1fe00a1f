/* replay: run a harness's LLVMFuzzerTestOneInput over files, without libFuzzer.
 *
 *   replay DIR|FILE...
 *
 * Every regular file named, and every regular file in every directory named (not
 * recursively), is read and handed to the harness once, after one empty input, in the
 * order libFuzzer runs a seed corpus: smallest first, then by name. The order matters,
 * because a harness's worker keeps buffers from one input to the next: an input that
 * stops libFuzzer as the first of its kind must meet the same state here. Built with the
 * project's compiler and flags, so that `make fuzz-replay` (and under SANITIZE, with ASan
 * and UBSan) checks the seed corpora and every past finding on each test run, on
 * machines without clang, and with clang's sanitizers too (fuzz-replay-clang). A finding
 * aborts, as under libFuzzer, and the input is named as the process dies; with
 * REPLAY_VERBOSE set in the environment each file is named before its input. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
/* From the sanitizers' runtime (gcc's and clang's), when one is linked. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static int verbose;
static const char *volatile current; /* the input being run */

/* Name the input that stopped the process: from a sanitizer's report or a harness's
 * abort. Only write(2), as it may run in a signal handler. */
static void
name_current(void)
{
    const char *path = current;
    if (path == NULL) return;
    static const char head[] = "replay: the input that failed: ";
    (void)!write(2, head, sizeof head - 1);
    (void)!write(2, path, strlen(path));
    (void)!write(2, "\n", 1);
}

static void
on_abort(int sig)
{
    name_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

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
    current = path;
    LLVMFuzzerTestOneInput(exact, len);
    current = NULL;
    free(exact);
    return 0;
}

struct entry {
    char *name;
    off_t size;
};

static int
by_size_then_name(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int
run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    struct entry *files = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            struct entry *more = realloc(files, (cap = cap ? cap * 2 : 64) * sizeof *files);
            if (more == NULL) {
                rc = -1;
                break;
            }
            files = more;
        }
        char *name = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (name == NULL) {
            rc = -1;
            break;
        }
        sprintf(name, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(name, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(name);
            continue;
        }
        files[n++] = (struct entry){name, st.st_size};
    }
    closedir(d);
    if (n > 0) qsort(files, n, sizeof *files, by_size_then_name);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            rc = run_file(files[i].name);
            ++*count;
        }
        free(files[i].name);
    }
    free(files);
    return rc;
}

int
main(int argc, char **argv)
{
    verbose = getenv("REPLAY_VERBOSE") != NULL;
    if (__sanitizer_set_death_callback != NULL) __sanitizer_set_death_callback(name_current);
    signal(SIGABRT, on_abort);
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
        return 2;
    }
    /* libFuzzer's first call, before the corpus. */
    static const uint8_t none[1];
    LLVMFuzzerTestOneInput(none, 0);
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
