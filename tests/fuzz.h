/* tests/fuzz.h: what the fuzz targets (tests/fuzz_*.c) share.
 *
 * A target defines
 *     static int fuzz_one(int mode, const uint8_t *data, size_t size);
 *     static const fuzz_corpus fuzz_corpora[] = {{"dir", mode}, ..., {NULL, 0}};
 * and ends with FUZZ_MAIN(name). It is built two ways:
 *   - with libFuzzer (`make fuzz`: clang -fsanitize=fuzzer,address,undefined): libFuzzer
 *     calls fuzz_one(FUZZ_MODE, ...) (FUZZ_MODE from -D, default 0) with inputs it grows
 *     from the seed corpus tests/fuzz/<dir>/ (small valid files, and every input that
 *     once crashed a loader, named regress-*: each finding stays a regression test);
 *   - with -DFUZZ_REPLAY, as a plain program that feeds every file of its corpora once
 *     and prints "name: N passed, 0 failed, 0 skipped" (`make test`; `make check` runs
 *     it under ASan+UBSan too). A crash there is a regression.
 * An invariant that fails calls fuzz_check, which traps: libFuzzer reports it as a
 * crash with the input that caused it. */
#ifndef LLM_FUZZ_H
#define LLM_FUZZ_H
#include "test.h"
#include <stdint.h>

typedef struct fuzz_corpus { const char *dir; int mode; } fuzz_corpus;

static void fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz: invariant failed: %s\n", what);
    fflush(stderr);
#if defined(__GNUC__) || defined(__clang__)
    __builtin_trap();
#else
    abort();
#endif
}
#define fuzz_check(cond) do { if (!(cond)) fuzz_fail(#cond); } while (0)

#ifndef FUZZ_MODE
#define FUZZ_MODE 0
#endif

#ifdef FUZZ_REPLAY
#include <dirent.h>
/* Where the corpora are: $LLM_FUZZ_DIR, else tests/fuzz (from the repository root). */
static const char *fuzz_dir(void) {
    const char *e = getenv("LLM_FUZZ_DIR");
    return e && *e ? e : "tests/fuzz";
}
static int fuzz__cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
/* Every file of tests/fuzz/<dir>, in name order, through fuzz_one(mode); the count. */
static int fuzz_replay_dir(int (*one)(int, const uint8_t *, size_t), const char *dir, int mode) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), dir);
    DIR *d = opendir(path);
    CHECK(d != NULL, "fuzz corpus %s: cannot open", path);
    if (!d) return 0;
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = (char **)realloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *names);
        names[n] = (char *)malloc(strlen(e->d_name) + 1);
        strcpy(names[n++], e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, fuzz__cmp);
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s/%s", fuzz_dir(), dir, names[i]);
        char *data = test_read_file(path, &len);
        CHECK(data != NULL, "%s: cannot read", path);
        if (data) {
            /* an exact-size copy, so that ASan sees a read past the end */
            uint8_t *copy = (uint8_t *)malloc(len ? len : 1);
            if (len) memcpy(copy, data, len);
            one(mode, copy, len);
            free(copy);
            CHECK(1, "%s", path);
        }
        free(data);
        free(names[i]);
    }
    free(names);
    CHECK(n > 0, "fuzz corpus %s/%s is empty", fuzz_dir(), dir);
    return n;
}
#define FUZZ_MAIN(name) \
    int main(void) { \
        int total = 0; \
        for (const fuzz_corpus *c = fuzz_corpora; c->dir; c++) total += fuzz_replay_dir(fuzz_one, c->dir, c->mode); \
        printf("%s: %d inputs replayed\n", name, total); \
        return TEST_END(name); \
    }
#else
#define FUZZ_MAIN(name) \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { (void)fuzz_corpora; return fuzz_one(FUZZ_MODE, data, size); }
#endif
#endif
