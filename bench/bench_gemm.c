/* bench/bench_gemm.c: SGEMM speed of llm.h (llm__sgemm) against OpenBLAS, in GFLOP/s.
 *
 * Shapes: (M,N,K) = (256,2304,768), (256,768,3072), (256,3072,768) in the three layouts
 * of training (forward out = inp . W^T; dX += dout . W; dW += dout^T . inp), then
 * (1024,1024,1024); then the decode matrix-vectors, M = 1 (the Llama 110M / GPT-2 124M
 * weight shapes; "gemv_nn" is B not transposed), and M = 2..8 rows against W^T (batched
 * decode), beside "packed": the same shape through the packed GEMM.
 * Each figure is the median of 7 runs after a warm-up; a run repeats the call for at
 * least 20 ms. llm.h's runs come first, then OpenBLAS's, at 1 thread and at all cores.
 * The matrix-vector rows cycle through copies of W larger than the L3, so they read DRAM,
 * and print the GB/s of W read, to set against the machine's memory bandwidth.
 *
 *   ./build/bench/bench_gemm [--gemv] [results.jsonl]     (default bench/results.jsonl)
 * --gemv runs only the matrix-vector rows (M <= 8), which also print the GB/s of W read.
 *
 * With OpenBLAS (Debian libopenblas-dev):
 *   make build/bench/bench_gemm BENCH_LIBS="-DLLM_BENCH_OPENBLAS \
 *        -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas"
 * LLM_SIMD=avx2|scalar caps llm.h's level; OPENBLAS_CORETYPE picks OpenBLAS's kernels. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#define LLM_IMPLEMENTATION
#include "llm.h"
#ifdef LLM_BENCH_OPENBLAS
#include <cblas.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#ifdef LLM_BENCH_OPENBLAS
static void pause_s(double s) {
    struct timespec ts;
    ts.tv_sec = (time_t)s; ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}
#endif

#define GEMV_MAX_M 8   /* rows up to this many count as matrix-vector: W comes from DRAM */

typedef struct { const char *layout; int ta, tb, M, N, K; float beta; } bshape;

typedef struct {
    const bshape *s;
    float *A, *B, *C;
    int lda, ldb, ldc;
    int ncopies;       /* copies of B to cycle through (matrix-vector) */
    size_t bstride;    /* floats between copies */
    int next;
} bcase;

static void call_llm(llm_pool *pool, bcase *c) {
    const bshape *s = c->s;
    const float *B = c->B + (size_t)c->next * c->bstride;
    c->next = (c->next + 1) % c->ncopies;
    if (strcmp(s->layout, "packed") == 0)
        llm__sgemm_packed(pool, s->ta, s->tb, s->M, s->N, s->K, c->A, c->lda, B, c->ldb, s->beta, c->C, c->ldc);
    else
        llm__sgemm(pool, s->ta, s->tb, s->M, s->N, s->K, c->A, c->lda, B, c->ldb, s->beta, c->C, c->ldc);
}
#ifdef LLM_BENCH_OPENBLAS
static void call_blas(bcase *c) {
    const bshape *s = c->s;
    const float *B = c->B + (size_t)c->next * c->bstride;
    c->next = (c->next + 1) % c->ncopies;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                s->M, s->N, s->K, 1.0f, c->A, c->lda, B, c->ldb, s->beta, c->C, c->ldc);
}
#endif

/* Seconds per call: run the call for >= 20 ms, return the mean. */
static double time_run(llm_pool *pool, bcase *c, int blas) {
    int n = 0;
    double t0 = now_s(), t;
    do {
#ifdef LLM_BENCH_OPENBLAS
        if (blas) call_blas(c); else
#endif
        call_llm(pool, c);
        (void)blas;
        n++;
        t = now_s() - t0;
    } while (t < 0.02);
    return t / n;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *out_path = "bench/results.jsonl";
    int gemv_only = 0;   /* --gemv: only the rows with M <= 8 */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--gemv") == 0) gemv_only = 1;
        else out_path = argv[i];
    }
    FILE *out = fopen(out_path, "a");
    if (!out) { fprintf(stderr, "cannot open %s\n", out_path); return 1; }
    static const bshape shapes[] = {
        {"fwd", 0, 1, 256, 2304, 768, 0.0f}, {"dX", 0, 0, 256, 768, 2304, 1.0f}, {"dW", 1, 0, 2304, 768, 256, 1.0f},
        {"fwd", 0, 1, 256, 768, 3072, 0.0f}, {"dX", 0, 0, 256, 3072, 768, 1.0f}, {"dW", 1, 0, 768, 3072, 256, 1.0f},
        {"fwd", 0, 1, 256, 3072, 768, 0.0f}, {"dX", 0, 0, 256, 768, 3072, 1.0f}, {"dW", 1, 0, 3072, 768, 256, 1.0f},
        {"fwd", 0, 1, 1024, 1024, 1024, 0.0f},
        /* matrix-vector (decode): the Llama 110M / GPT-2 124M weights, W streamed from DRAM */
        {"fwd", 0, 1, 1, 2304, 768, 0.0f}, {"fwd", 0, 1, 1, 768, 768, 0.0f},
        {"fwd", 0, 1, 1, 2048, 768, 0.0f}, {"fwd", 0, 1, 1, 4096, 768, 0.0f},
        {"fwd", 0, 1, 1, 768, 2048, 0.0f}, {"fwd", 0, 1, 1, 32000, 768, 0.0f},
        {"gemv_nn", 0, 0, 1, 2304, 768, 0.0f}, {"gemv_nn", 0, 0, 1, 768, 2048, 0.0f},
        /* a few rows at once (batched decode): W streamed once for all rows; "packed"
         * forces the packed GEMM on the same shape, for comparison */
        {"fwd", 0, 1, 2, 2304, 768, 0.0f}, {"fwd", 0, 1, 4, 2304, 768, 0.0f},
        {"packed", 0, 1, 4, 2304, 768, 0.0f}, {"fwd", 0, 1, 8, 2304, 768, 0.0f},
        {"packed", 0, 1, 8, 2304, 768, 0.0f}, {"fwd", 0, 1, 4, 32000, 768, 0.0f},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    int ncpu = llm_cpu_count();
    const char *ct = getenv("OPENBLAS_CORETYPE");
    time_t wall = time(NULL);
    printf("CPU features: %s\nllm.h SIMD level: %s; cores: %d; OPENBLAS_CORETYPE=%s\n",
           llm__cpu_features(), llm_simd_name(llm_simd_active()), ncpu, ct ? ct : "(unset)");
#ifndef LLM_BENCH_OPENBLAS
    printf("OpenBLAS: not built in (see the comment at the top of bench/bench_gemm.c)\n");
#endif
    printf("%-8s %5s %5s %5s %3s %10s %10s %7s\n", "layout", "M", "N", "K", "thr", "llm GF/s",
           "BLAS GF/s", "ratio");
    int thread_counts[2] = {1, ncpu};
    for (int ti = 0; ti < (ncpu > 1 ? 2 : 1); ti++) {
        int nth = thread_counts[ti];
        llm_pool *pool = llm_pool_create(nth);
        if (!pool) { fprintf(stderr, "%s\n", llm_last_error()); return 1; }
#ifdef LLM_BENCH_OPENBLAS
        openblas_set_num_threads(nth);
#endif
        for (int si = 0; si < nshapes; si++) {
            const bshape *s = &shapes[si];
            if (gemv_only && s->M > GEMV_MAX_M) continue;
            bcase c;
            memset(&c, 0, sizeof c);
            c.s = s;
            c.lda = s->ta ? s->M : s->K; c.ldb = s->tb ? s->K : s->N; c.ldc = s->N;
            size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, ncc = (size_t)s->M * s->N;
            c.ncopies = s->M <= GEMV_MAX_M ? (int)(96e6 / (nb * 4)) + 1 : 1;   /* > 96 MB: past the L3 */
            c.bstride = nb;
            /* 64-byte aligned, as llm.h's tensors are (from malloc, rows of X split cache
             * lines and the matrix-vector rows with M >= 4 ran at half speed) */
            c.A = (float *)llm__alloc_aligned(na * 4); c.B = (float *)llm__alloc_aligned(nb * c.ncopies * 4);
            c.C = (float *)llm__alloc_aligned(ncc * 4);
            if (!c.A || !c.B || !c.C) { fprintf(stderr, "out of memory\n"); return 1; }
            for (size_t i = 0; i < na; i++) c.A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
            for (size_t i = 0; i < nb * c.ncopies; i++) c.B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
            for (size_t i = 0; i < ncc; i++) c.C[i] = 0.0f;
            /* llm.h's runs, then OpenBLAS's, then a pause: OpenBLAS's workers spin for a
             * while after each call and would steal the cores from the next llm.h run. */
            double tl[7], tb[7];
            time_run(pool, &c, 0);   /* warm-up */
            for (int r = 0; r < 7; r++) { tl[r] = time_run(pool, &c, 0); tb[r] = 0; }
#ifdef LLM_BENCH_OPENBLAS
            time_run(pool, &c, 1);
            for (int r = 0; r < 7; r++) tb[r] = time_run(pool, &c, 1);
            pause_s(0.3);
#endif
            qsort(tl, 7, sizeof(double), cmp_d);
            qsort(tb, 7, sizeof(double), cmp_d);
            double flops = 2.0 * s->M * s->N * s->K;
            double gl = flops / tl[3] * 1e-9, gb = tb[3] > 0 ? flops / tb[3] * 1e-9 : 0;
            printf("%-8s %5d %5d %5d %3d %10.1f %10.1f %7.2f", s->layout, s->M, s->N, s->K, nth, gl, gb,
                   gb > 0 ? gl / gb : 0.0);
            if (s->M <= GEMV_MAX_M) printf("   (%.1f GB/s of W)", nb * 4.0 / tl[3] * 1e-9);
            printf("\n");
            fflush(stdout);
            fprintf(out, "{\"bench\":\"sgemm\",\"time\":%ld,\"simd\":\"%s\",\"layout\":\"%s\",\"M\":%d,\"N\":%d,"
                    "\"K\":%d,\"threads\":%d,\"gflops\":%.2f,\"ms\":%.4f,\"openblas_gflops\":%.2f,"
                    "\"ratio\":%.3f,\"w_gb_s\":%.2f,\"openblas_coretype\":\"%s\"}\n",
                    (long)wall, llm_simd_name(llm_simd_active()), s->layout, s->M, s->N, s->K, nth, gl,
                    tl[3] * 1e3, gb, gb > 0 ? gl / gb : 0.0,
                    s->M <= GEMV_MAX_M ? nb * 4.0 / tl[3] * 1e-9 : 0.0, ct ? ct : "");
            llm__free_aligned(c.A); llm__free_aligned(c.B); llm__free_aligned(c.C);
        }
        llm_pool_free(pool);
    }
    fclose(out);
    return 0;
}
