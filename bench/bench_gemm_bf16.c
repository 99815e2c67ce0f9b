/* bench/bench_gemm_bf16.c: the bf16 GEMM (llm__sgemm_bf16: bf16 operands, fp32 sums)
 * against the fp32 one (llm__sgemm), in GFLOP/s (2*M*N*K per call, as for fp32).
 *
 * Shapes: (M,N,K) = (256,2304,768), (256,768,3072), (256,3072,768) in the three layouts
 * of training (forward out = inp . W^T; dX += dout . W; dW += dout^T . inp), then
 * (1024,1024,1024) in the forward layout; at 1 thread and at all cores. Each figure is
 * the median of 7 runs after a warm-up; a run repeats the call for at least 20 ms; the
 * fp32 and bf16 runs alternate so that both see the same machine load.
 *
 *   ./build/bench/bench_gemm_bf16 [results.jsonl]     (default bench/results.jsonl)
 *
 * On a CPU without AVX512-BF16 the bf16 figures are fp32 ones (the fallback); the
 * output says so. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#define RUNS 7

typedef struct { const char *layout; int ta, tb, M, N, K; float beta; } bshape;

/* Seconds per call: run the call for >= 20 ms, return the mean. */
static double time_run(llm_pool *pool, const bshape *s, const float *A, const float *B, float *C, int bf16) {
    int n = 0, lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double t0 = bench_now(), t;
    do {
        if (bf16) llm__sgemm_bf16(pool, s->ta, s->tb, s->M, s->N, s->K, A, lda, B, ldb, s->beta, C, s->N);
        else llm__sgemm(pool, s->ta, s->tb, s->M, s->N, s->K, A, lda, B, ldb, s->beta, C, s->N);
        n++;
        t = bench_now() - t0;
    } while (t < 0.02);
    return t / n;
}

int main(int argc, char **argv) {
    FILE *out = bench_open_results(argc > 1 ? argv[1] : BENCH_RESULTS);
    if (!out) return 1;
    static const bshape shapes[] = {
        {"fwd", 0, 1, 256, 2304, 768, 0.0f}, {"dX", 0, 0, 256, 768, 2304, 1.0f}, {"dW", 1, 0, 2304, 768, 256, 1.0f},
        {"fwd", 0, 1, 256, 768, 3072, 0.0f}, {"dX", 0, 0, 256, 3072, 768, 1.0f}, {"dW", 1, 0, 768, 3072, 256, 1.0f},
        {"fwd", 0, 1, 256, 3072, 768, 0.0f}, {"dX", 0, 0, 256, 768, 3072, 1.0f}, {"dW", 1, 0, 3072, 768, 256, 1.0f},
        {"fwd", 0, 1, 1024, 1024, 1024, 0.0f},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    int ncpu = llm_cpu_count(), bf16 = llm__has_bf16();
    time_t wall = time(NULL);
    printf("CPU features: %s\nllm.h SIMD level: %s; cores: %d; bf16 GEMM: %s\n", llm__cpu_features(),
           llm_simd_name(llm_simd_active()), ncpu, bf16 ? "AVX512-BF16" : "not available (fp32 fallback)");
    printf("%-6s %5s %5s %5s %3s %10s %10s %7s\n", "layout", "M", "N", "K", "thr", "fp32 GF/s", "bf16 GF/s", "ratio");
    int thread_counts[2] = {1, ncpu};
    for (int ti = 0; ti < (ncpu > 1 ? 2 : 1); ti++) {
        int nth = thread_counts[ti];
        llm_pool *pool = llm_pool_create(nth);
        if (!pool) { fprintf(stderr, "%s\n", llm_last_error()); return 1; }
        for (int si = 0; si < nshapes; si++) {
            const bshape *s = &shapes[si];
            size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
            float *A = (float *)malloc(na * 4), *B = (float *)malloc(nb * 4), *C = (float *)malloc(nc * 4);
            if (!A || !B || !C) { fprintf(stderr, "out of memory\n"); return 1; }
            for (size_t i = 0; i < na; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
            for (size_t i = 0; i < nb; i++) B[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
            for (size_t i = 0; i < nc; i++) C[i] = 0.0f;
            double tf[RUNS], tb[RUNS];
            time_run(pool, s, A, B, C, 0);   /* warm-up */
            time_run(pool, s, A, B, C, 1);
            for (int r = 0; r < RUNS; r++) {
                tf[r] = time_run(pool, s, A, B, C, 0);
                tb[r] = time_run(pool, s, A, B, C, 1);
            }
            double mf = bench_median(tf, RUNS), mb = bench_median(tb, RUNS);
            double flops = 2.0 * s->M * s->N * s->K;
            double gf = flops / mf * 1e-9, gb = flops / mb * 1e-9;
            printf("%-6s %5d %5d %5d %3d %10.1f %10.1f %7.2f\n", s->layout, s->M, s->N, s->K, nth, gf, gb, gb / gf);
            fflush(stdout);
            fprintf(out, "{\"bench\":\"sgemm_bf16\",\"time\":%ld,\"simd\":\"%s\",\"bf16\":%d,\"layout\":\"%s\","
                    "\"M\":%d,\"N\":%d,\"K\":%d,\"threads\":%d,\"fp32_gflops\":%.2f,\"bf16_gflops\":%.2f,"
                    "\"fp32_ms\":%.4f,\"bf16_ms\":%.4f,\"ratio\":%.3f}\n",
                    (long)wall, llm_simd_name(llm_simd_active()), bf16, s->layout, s->M, s->N, s->K, nth, gf, gb,
                    mf * 1e3, mb * 1e3, gb / gf);
            free(A); free(B); free(C);
        }
        llm_pool_free(pool);
    }
    fclose(out);
    return 0;
}
