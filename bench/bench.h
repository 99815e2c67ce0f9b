/* bench/bench.h: what every benchmark needs: a monotonic clock, the median of a few
 * runs, the results file, and the test data directory.
 *
 * Include it first (it sets _POSIX_C_SOURCE for clock_gettime before any system
 * header), then `#define LLM_IMPLEMENTATION` and `#include "llm.h"`. */
#ifndef LLM_BENCH_H
#define LLM_BENCH_H
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, popen */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "tests/test.h"   /* test_data_dir(): where the shared data lives, as for the tests */

/* Seconds on the monotonic clock (unaffected by changes of the wall clock). */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench__cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* The median of v[0..n) (sorts v): the middle value, or the mean of the two middle ones
 * when n is even. Robust to the odd run slowed down by another process. */
static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench__cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The results file (one JSON object a line), opened for appending; NULL after a
 * message if it cannot be. Every benchmark appends to BENCH_RESULTS unless told another. */
#define BENCH_RESULTS "bench/results.jsonl"
static inline FILE *bench_open_results(const char *path) {
    FILE *f = fopen(path, "a");
    if (!f) fprintf(stderr, "cannot open %s\n", path);
    return f;
}
#endif
