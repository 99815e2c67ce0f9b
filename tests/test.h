/* tests/test.h: the smallest test harness that does the job.
 *
 * Each test program counts checks; a failed CHECK prints where and why and the
 * program keeps going, so one run shows every failure. TEST_SKIP prints SKIP and
 * the reason. TEST_END prints "<prog>: N passed, N failed, N skipped" and returns
 * the exit status; tests/run.sh adds the counts of all programs together.
 *
 * Then what several tests share: error measures (test_max_rel_err, test_close_err), a
 * reproducible random generator and buffers (test_seed, test_frand, test_rand_floats),
 * the finite-difference gradient check (test_fd_check), whole-file reads
 * (test_read_file, test_read_data under test_data_dir()), and the PyTorch fixtures that
 * tests/ref_*.py wrote into tests/fixtures (test_fixtures_dir, test_has_fixture,
 * test_fixture_array, test_meta_num; tests/ref.h rebuilds their models). Everything is
 * static inline: a test pays only for what it uses, and
 * bench/bench.h includes this file for test_data_dir() without warnings. */
#ifndef LLM_TEST_H
#define LLM_TEST_H
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L   /* mkdtemp, fileno, fork: before the first system header */
#endif
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

#define TEST_END(name) test__end(name)
static inline int test__end(const char *name) {
    printf("%s: %d passed, %d failed, %d skipped\n", name, test__passed, test__failed, test__skipped);
    return test__failed ? 1 : 0;
}

/* In the ASan+UBSan copy (build/san/test_*, -DLLM_TEST_SAN=1) TEST_SAN is 1: heavy cases
 * are left out with #if !TEST_SAN. */
#if defined(LLM_TEST_SAN) && LLM_TEST_SAN
#define TEST_SAN 1
#else
#define TEST_SAN 0
#endif

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

/* test_max_rel_err with the floor at floor_frac x max|ref|: a float32 sum of n terms
 * errs by about n*eps*(largest term) whatever its own size, so a value much smaller than
 * its tensor's largest (a cancellation) can only be compared absolutely. */
static inline double test_close_err(const float *a, const float *ref, size_t n, double floor_frac) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) if (fabs((double)ref[i]) > mx) mx = fabs((double)ref[i]);
    return test_max_rel_err(a, ref, n, floor_frac * mx);
}

/* ---- random numbers: xorshift64 (Marsaglia), reproducible run to run ---------------- */
static unsigned long long test__rng = 0x9E3779B97F4A7C15ULL;
static inline void test_seed(unsigned long long s) { test__rng = s ? s : 0x9E3779B97F4A7C15ULL; }
static inline unsigned long long test_rand_u64(void) {
    test__rng ^= test__rng << 13; test__rng ^= test__rng >> 7; test__rng ^= test__rng << 17;
    return test__rng;
}
/* Uniform in [-1, 1): the top 24 bits as a fraction of 2^24, so every value is exact. */
static inline float test_frand(void) {
    return (float)((test_rand_u64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
/* n floats uniform in [-scale, scale), malloc'd (calloc: at least 1 float, so n = 0 is
 * fine, and no compiler sees uninitialized memory behind it). */
static inline float *test_rand_floats(size_t n, float scale) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "test: out of memory (%zu floats)\n", n); exit(1); }
    for (size_t i = 0; i < n; i++) p[i] = test_frand() * scale;
    return p;
}
/* A malloc'd copy of n floats. */
static inline float *test_dup_floats(const float *x, size_t n) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "test: out of memory (%zu floats)\n", n); exit(1); }
    if (n) memcpy(p, x, n * sizeof(float));
    return p;
}
/* Σ a·g in double: the scalar loss L = Σ g·forward(x) whose gradient a backward computes. */
static inline double test_dot(const float *a, const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * g[i];
    return s;
}

/* ---- finite differences ------------------------------------------------------------ */
/* The op under test as a scalar function of its inputs: L = Σ g·forward(inputs). */
typedef double (*test_loss_fn)(void *ctx);

/* Compare the analytic gradient `an` of x (n values) with central differences
 * (L(x+h) - L(x-h)) / (2h) at about `samples` coordinates (a random start, then evenly
 * spaced). The step is 1e-2 relative to |x| and the divisor is the step as float32
 * actually took it; the loss is summed in double, so the float32 forward's rounding,
 * ~1e-7 of L, is what limits the quotient. Relative error, floor 0.1; must be < 2e-2. */
static inline void test_fd_check(const char *what, test_loss_fn f, void *ctx, float *x, size_t n,
                                 const float *an, int samples) {
    double worst = 0;
    size_t step = n / (size_t)samples + 1;
    for (size_t i = (size_t)(test_rand_u64() % step); i < n; i += step) {
        float x0 = x[i];
        float h = 1e-2f * (fabsf(x0) > 1 ? fabsf(x0) : 1);
        float xp = x0 + h, xm = x0 - h;
        x[i] = xp; double lp = f(ctx);
        x[i] = xm; double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs(fd - an[i]) / (fabs(an[i]) > 1e-1 ? fabs(an[i]) : 1e-1);
        if (err > worst) worst = err;
    }
    CHECK(worst < 2e-2, "%s: finite-difference mismatch, worst relative error %g", what, worst);
}

/* Where the shared test data lives: $LLM_DATA, else ../shared/data, else data. */
static inline const char *test_data_dir(void) {
    const char *e = getenv("LLM_DATA");
    if (e && *e) return e;
    FILE *f = fopen("../shared/data/README.md", "rb");
    if (f) { fclose(f); return "../shared/data"; }
    return "data";
}

/* ---- files ------------------------------------------------------------------------- */
/* Every byte of stream f into a malloc'd buffer with a NUL after the last (so text reads
 * as a string); *len (if given) = the bytes read. NULL if out of memory. */
static inline char *test_read_stream(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0, got;
    char *b = (char *)malloc(cap);
    while (b) {
        if (n + 1024 > cap) {
            char *t = (char *)realloc(b, cap *= 2);
            if (!t) { free(b); return NULL; }
            b = t;
        }
        if (!(got = fread(b + n, 1, cap - n - 1, f))) break;
        n += got;
    }
    if (!b) return NULL;
    char *t = (char *)realloc(b, n + 1);   /* exact size, so ASan sees a read past the end */
    if (t) b = t;
    b[n] = 0;
    if (len) *len = n;
    return b;
}
/* The whole file at path (see test_read_stream), or NULL if it cannot be read. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = test_read_stream(f, len);
    fclose(f);
    return b;
}
/* File `rel` under test_data_dir() (see test_read_file). */
static inline char *test_read_data(const char *rel, size_t *len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", test_data_dir(), rel);
    return test_read_file(path, len);
}
static inline int test_file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

/* ---- temporary directories (POSIX and Windows) ---------------------------------------- */
#ifdef _WIN32
#include <direct.h>     /* _mkdir, _rmdir */
#include <process.h>    /* _getpid */
#define test_mkdir(p) _mkdir(p)
#define test_rmdir(p) _rmdir(p)
#define test__getpid() _getpid()
#else
#include <sys/stat.h>
#include <unistd.h>
#define test_mkdir(p) mkdir((p), 0700)
#define test_rmdir(p) rmdir(p)
#define test__getpid() getpid()
#endif
/* A new, empty directory $TMPDIR/name_<pid>_<k> (else $TEMP, else /tmp) into buf; 0 if
 * none could be made. Remove it with test_rmdir when the test is done. */
static inline int test_make_tmpdir(char *buf, size_t cap, const char *name) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = getenv("TEMP");
    if (!base || !*base) base = "/tmp";
    for (int k = 0; k < 1000; k++) {
        snprintf(buf, cap, "%s/%s_%ld_%d", base, name, (long)test__getpid(), k);
        if (test_mkdir(buf) == 0) return 1;
    }
    return 0;
}

/* ---- PyTorch fixtures (tests/ref_*.py; committed in tests/fixtures) ---------------- */
/* Where they are: $LLM_FIXTURES (the Makefile sets it, so that a test runs from any
 * directory), else tests/fixtures (from the repository root). */
static inline const char *test_fixtures_dir(void) {
    const char *e = getenv("LLM_FIXTURES");
    return e && *e ? e : "tests/fixtures";
}
/* The path of fixture file dir/name (name NULL: the directory) in buf. */
static inline const char *test_fixture_path(char *buf, size_t cap, const char *dir, const char *name) {
    if (name) snprintf(buf, cap, "%s/%s/%s", test_fixtures_dir(), dir, name);
    else snprintf(buf, cap, "%s/%s", test_fixtures_dir(), dir);
    return buf;
}
/* Whether fixture dir is there (its meta.json). */
static inline int test_has_fixture(const char *dir) {
    char path[1024];
    return test_file_exists(test_fixture_path(path, sizeof path, dir, "meta.json"));
}
/* Fixture file dir/name, as test_read_file. */
static inline char *test_read_fixture(const char *dir, const char *name, size_t *len) {
    char path[1024];
    return test_read_file(test_fixture_path(path, sizeof path, dir, name), len);
}
/* A raw array of exactly n 4-byte values (.f32 float32 or .i32 int32, little-endian as
 * this machine) from fixture dir/name, or NULL with a failed check. */
static inline void *test_fixture_array(const char *dir, const char *name, size_t n) {
    size_t bytes = 0;
    char *p = test_read_fixture(dir, name, &bytes);
    CHECK(p && bytes == n * 4, "%s/%s: expected %zu values, file has %zu bytes", dir, name, n, bytes);
    if (p && bytes != n * 4) { free(p); p = NULL; }
    return p;
}
/* A number from fixture dir's meta.json: the first `"key": value`; `absent` if none. */
static inline double test_meta_num(const char *dir, const char *key, double absent) {
    char *text = test_read_fixture(dir, "meta.json", NULL), pat[64];
    double v = absent;
    if (!text) return v;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (p) v = strtod(p + strlen(pat), NULL);
    free(text);
    return v;
}
#endif
