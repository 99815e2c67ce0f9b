/* tests/test.h: the smallest test harness that does the job.
 *
 * Each test program counts checks; a failed CHECK prints where and why and the
 * program keeps going, so one run shows every failure. TEST_SKIP prints SKIP and
 * the reason. TEST_END prints "<prog>: N passed, N failed, N skipped" and returns
 * the exit status; tests/run.sh adds the counts of all programs together. */
#ifndef LLM_TEST_H
#define LLM_TEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int test__passed, test__failed, test__skipped;

#define CHECK(cond, ...) do { \
    if (cond) { test__passed++; } else { test__failed++; \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } while (0)

#define TEST_SKIP(...) do { test__skipped++; printf("SKIP "); printf(__VA_ARGS__); \
    printf("\n"); } while (0)

#define TEST_END(name) (printf("%s: %d passed, %d failed, %d skipped\n", (name), \
    test__passed, test__failed, test__skipped), test__failed ? 1 : 0)

/* Largest |a-b| / max(|b|, floor) over n values: relative error, with an absolute
 * floor so that values near zero are compared absolutely. */
static inline double test_max_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double s = fabs((double)b[i]); if (s < floor_) s = floor_;
        if (!(d / s <= worst)) worst = d / s;   /* NaN-safe: NaN makes it fail */
    }
    return worst;
}

/* Where the shared test data lives: $LLM_DATA, else ../shared/data, else data. */
static inline const char *test_data_dir(void) {
    const char *e = getenv("LLM_DATA");
    if (e && *e) return e;
    FILE *f = fopen("../shared/data/README.md", "rb");
    if (f) { fclose(f); return "../shared/data"; }
    return "data";
}
#endif
