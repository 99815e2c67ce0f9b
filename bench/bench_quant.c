/* bench_quant: the weight matmuls of one token of a Llama 110M shape (dim 768, hidden
 * 2048, 12 layers, vocab 32000: per layer qkv 768->2304, out 768->768, gate|up
 * 768->4096, down 2048->768, then the classifier 768->32000), with the weights in fp32
 * (llm.h's SGEMM / GEMV), bf16 tiles and Q8_0 tiles (the QUANT section).
 *
 *   ./build/bench/bench_quant [results.jsonl]     (default bench/results.jsonl)
 *
 * decode: M = 1 row through all 49 matmuls (tokens/s of the matmuls alone, and the GB/s
 * of weights streamed); prefill: M = 128 rows (tokens/s). 1 thread and all cores; each
 * figure is the median of 7 rounds, the three weight types interleaved within a round so
 * that they see the same machine. Random weights (speed does not depend on the values). */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

enum { L = 12, C = 768, H = 2048, V = 32000, ROUNDS = 7, PREFILL = 128 };
typedef struct { int K, N; } shape;
static const shape layer[4] = {{C, 3 * C}, {C, C}, {C, 2 * H}, {H, C}};

typedef struct {
    float *f32[4], *cls;                 /* per matrix kind, all layers: (L, N, K) */
    void *q8[4], *q8cls, *bf[4], *bfcls;
} weights;

/* One token's matmuls (M rows) with weights of type t (0 fp32, 1 bf16, 2 Q8_0). */
static void pass(llm_pool *pool, const weights *w, int t, int M, const float *X, float *Y) {
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 4; i++) {
            int K = layer[i].K, N = layer[i].N;
            size_t per = (size_t)N * K;
            if (t == 0) llm__sgemm(pool, 0, 1, M, N, K, X, K, w->f32[i] + l * per, K, 0.0f, Y, N);
            else if (t == 1) llm__qmm(pool, 0, Y, X, (const uint32_t *)w->bf[i] + l * llm__bf16t_bytes(N, K) / 4, NULL, M, K, N);
            else llm__qmm(pool, 1, Y, X, (const unsigned char *)w->q8[i] + l * llm__q8t_bytes(N, K), NULL, M, K, N);
        }
    if (t == 0) llm__sgemm(pool, 0, 1, M, V, C, X, C, w->cls, C, 0.0f, Y, V);
    else if (t == 1) llm__qmm(pool, 0, Y, X, w->bfcls, NULL, M, C, V);
    else llm__qmm(pool, 1, Y, X, w->q8cls, NULL, M, C, V);
}

int main(int argc, char **argv) {
    FILE *out = bench_open_results(argc > 1 ? argv[1] : BENCH_RESULTS);
    if (!out) return 1;
    weights w;
    memset(&w, 0, sizeof w);
    test_seed(1);
    double bytes[3] = {0, 0, 0};
    for (int i = 0; i <= 4; i++) {
        int K = i < 4 ? layer[i].K : C, N = i < 4 ? layer[i].N : V, nl = i < 4 ? L : 1;
        size_t per = (size_t)N * K;
        float *f = (float *)llm__alloc_aligned(per * nl * sizeof(float));
        unsigned char *q = (unsigned char *)llm__alloc_aligned(llm__q8t_bytes(N, K) * nl);
        uint32_t *b = (uint32_t *)llm__alloc_aligned(llm__bf16t_bytes(N, K) * nl);
        if (!f || !q || !b) { fprintf(stderr, "bench_quant: out of memory\n"); return 1; }
        for (size_t k = 0; k < per * nl; k++) f[k] = test_frand() * 0.05f;
        for (int l = 0; l < nl; l++) {
            llm__q8t_quantize(q + l * llm__q8t_bytes(N, K), f + l * per, N, K);
            llm__bf16t_quantize(b + l * llm__bf16t_bytes(N, K) / 4, f + l * per, N, K);
        }
        bytes[0] += 4.0 * per * nl;
        bytes[1] += (double)llm__bf16t_bytes(N, K) * nl;
        bytes[2] += (double)llm__q8t_bytes(N, K) * nl;
        if (i < 4) { w.f32[i] = f; w.q8[i] = q; w.bf[i] = b; }
        else { w.cls = f; w.q8cls = q; w.bfcls = b; }
    }
    float *X = test_rand_floats((size_t)PREFILL * H, 1.0f), *Y = (float *)llm__alloc_aligned((size_t)PREFILL * V * sizeof(float));
    const char *names[3] = {"fp32", "bf16", "q8_0"};
    int cores = llm_cpu_count();
    printf("bench_quant: Llama-110M matmuls, SIMD %s%s%s; weights %.0f / %.0f / %.0f MB (fp32 / bf16 / Q8_0)\n",
           llm_simd_name(llm_simd_active()), (llm__cpu_get() & LLM__CPU_AVX512VNNI) ? " +vnni" : "",
           llm__bf16_dp() ? " +bf16" : "", bytes[0] / 1e6, bytes[1] / 1e6, bytes[2] / 1e6);
    for (int th = 1; th <= (cores > 1 ? 2 : 1); th++) {
        int nth = th == 1 ? 1 : cores;
        llm_pool *pool = llm_pool_create(nth);
        double dec[3][ROUNDS], pre[3][ROUNDS];
        for (int t = 0; t < 3; t++) pass(pool, &w, t, 1, X, Y);   /* warm-up */
        for (int r = 0; r < ROUNDS; r++)
            for (int t = 0; t < 3; t++) {
                double t0 = bench_now();
                for (int k = 0; k < 4; k++) pass(pool, &w, t, 1, X, Y);
                dec[t][r] = 4 / (bench_now() - t0);
                t0 = bench_now();
                pass(pool, &w, t, PREFILL, X, Y);
                pre[t][r] = PREFILL / (bench_now() - t0);
            }
        for (int t = 0; t < 3; t++) {
            double d = bench_median(dec[t], ROUNDS), p = bench_median(pre[t], ROUNDS);
            printf("  %d thread%s %-5s decode %7.1f tok/s (%5.1f GB/s)   prefill(%d) %7.1f tok/s\n", nth, nth > 1 ? "s" : " ",
                   names[t], d, d * bytes[t] / 1e9, PREFILL, p);
            fprintf(out, "{\"bench\":\"quant\",\"shape\":\"llama-110m-matmuls\",\"dtype\":\"%s\",\"threads\":%d,"
                         "\"decode_tps\":%.2f,\"decode_gbs\":%.2f,\"prefill_tps\":%.2f}\n", names[t], nth, d, d * bytes[t] / 1e9, p);
        }
        llm_pool_free(pool);
    }
    fclose(out);
    return 0;
}
