/* bench/bench_kernels.c: every non-GEMM kernel, reference against the fast dispatcher
 * (at the level llm.h picks: LLM_SIMD=avx2|scalar caps it), one thread, at GPT-2 124M
 * shapes: B=4, C=768, NH=12 (HS=64), V=50257, T=64 and T=256. Each figure is the median
 * of 7 runs after a warm-up; a run repeats the call for at least 10 ms (the calls that
 * overwrite their input, cross-entropy backward, are timed one by one with the input
 * restored in between). Memory-bound kernels report GB/s of the bytes they must move;
 * attention reports GFLOP/s (2 FLOP per multiply-add, causal: T(T+1)/2 pairs; forward
 * has 2 products per pair, backward 5). AdamW and sumsq run on 8M floats (beyond the
 * caches, like 124M would be).
 *
 *   ./build/bench/bench_kernels [results.jsonl]      (default bench/results.jsonl) */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static float *alloc_rand(size_t n, float scale, unsigned seed) {
    float *p = (float *)llm__alloc_aligned(n * sizeof(float));
    if (!p) { fprintf(stderr, "out of memory (%zu floats)\n", n); exit(1); }
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; p[i] = ((s >> 8) * (1.0f / 16777216.0f) * 2 - 1) * scale; }
    return p;
}

/* All buffers of one shape, and which kernel to run. */
typedef struct {
    int B, T, C, NH, HS, V, N;
    float *x, *out, *dout, *dx, *w, *b, *dw, *db, *mean, *rstd, *h4, *dh4, *dh4o;
    float *qkv, *dqkv, *att, *lse, *logits, *logits0, *losses, *clse;
    float *p, *g, *m, *v;
    int *tg;
    size_t nopt;
} bstate;

enum { K_LN_FWD, K_LN_DX, K_LN_DWDB, K_GELU_FWD, K_GELU_BWD, K_RES_FWD, K_RES_BWD, K_CE_FWD, K_CE_BWD,
       K_ATT_FWD, K_ATT_BWD, K_ADAMW, K_SUMSQ, K_COUNT };
static const char *knames[K_COUNT] = {"layernorm_fwd", "layernorm_bwd_dx", "layernorm_bwd_dwdb", "gelu_fwd", "gelu_bwd",
    "residual_fwd", "residual_bwd", "crossentropy_fwd", "crossentropy_bwd", "attention_fwd", "attention_bwd",
    "adamw", "sumsq"};
static volatile double sink;

static void run(bstate *s, int k, int fast) {
    const int N = s->N, C = s->C;
    const size_t NC = (size_t)N * C;
    switch (k) {
    case K_LN_FWD: if (fast) llm__layernorm_fwd_fast(s->out, s->mean, s->rstd, s->x, s->w, s->b, N, C);
                   else llm__layernorm_fwd_ref(s->out, s->mean, s->rstd, s->x, s->w, s->b, N, C);
                   break;
    case K_LN_DX: if (fast) llm__layernorm_bwd_dx_fast(s->dx, s->dout, s->x, s->w, s->mean, s->rstd, N, C);
                  else llm__layernorm_bwd_dx_ref(s->dx, s->dout, s->x, s->w, s->mean, s->rstd, N, C);
                  break;
    case K_LN_DWDB: if (fast) llm__layernorm_bwd_dwdb_fast(s->dw, s->db, s->dout, s->x, s->mean, s->rstd, N, C, 0, C);
                    else llm__layernorm_bwd_dwdb_ref(s->dw, s->db, s->dout, s->x, s->mean, s->rstd, N, C, 0, C);
                    break;
    case K_GELU_FWD: if (fast) llm__gelu_fwd_fast(s->dh4o, s->h4, 4 * NC); else llm__gelu_fwd_ref(s->dh4o, s->h4, 4 * NC);
    break;
    case K_GELU_BWD: if (fast) llm__gelu_bwd_fast(s->dh4o, s->h4, s->dh4, 4 * NC);
                     else llm__gelu_bwd_ref(s->dh4o, s->h4, s->dh4, 4 * NC);
                     break;
    case K_RES_FWD: if (fast) llm__residual_fwd_fast(s->out, s->x, s->dout, NC); else llm__residual_fwd_ref(s->out, s->x, s->dout, NC);
    break;
    case K_RES_BWD: if (fast) llm__residual_bwd_fast(s->dx, s->out, s->dout, NC); else llm__residual_bwd_ref(s->dx, s->out, s->dout, NC);
    break;
    case K_CE_FWD: if (fast) llm__crossentropy_fwd_fast(s->losses, s->clse, s->logits0, s->tg, N, s->V);
                   else llm__crossentropy_fwd_ref(s->losses, s->clse, s->logits0, s->tg, N, s->V);
                   break;
    case K_CE_BWD: if (fast) llm__crossentropy_bwd_fast(s->logits, s->clse, s->tg, 1.0f / N, N, s->V);
                   else llm__crossentropy_bwd_ref(s->logits, s->clse, s->tg, 1.0f / N, N, s->V);
                   break;
    case K_ATT_FWD:
        for (int b = 0; b < s->B; b++)
            for (int h = 0; h < s->NH; h++) {
                if (fast) llm__attention_fwd_fast(s->att, s->lse, s->qkv, b, h, s->T, s->NH, s->NH, s->HS);
                else llm__attention_fwd_head(s->att, s->lse, s->qkv, b, h, s->T, s->NH, s->NH, s->HS);
            }
        break;
    case K_ATT_BWD:
        for (int b = 0; b < s->B; b++)
            for (int h = 0; h < s->NH; h++) {
                if (fast) llm__attention_bwd_group_fast(s->dqkv, s->dout, s->qkv, s->att, s->lse, b, h, s->T, s->NH, s->NH, s->HS);
                else llm__attention_bwd_head(s->dqkv, s->dout, s->qkv, s->att, s->lse, b, h, s->T, s->NH, s->NH, s->HS);
            }
        break;
    case K_ADAMW: if (fast) llm__adamw_fast(s->p, s->g, s->m, s->v, s->nopt, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 3);
                  else llm__adamw_ref(s->p, s->g, s->m, s->v, s->nopt, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 3);
                  break;
    case K_SUMSQ: sink = fast ? llm__sumsq_fast(s->g, s->nopt) : llm__sumsq_ref(s->g, s->nopt); break;
    }
}

/* Seconds per call: the median of 7 runs after a warm-up. */
static double time_kernel(bstate *s, int k, int fast) {
    double t[7];
    const size_t nl = (size_t)s->N * s->V;
    for (int r = -1; r < 7; r++) {
        if (k == K_CE_BWD) {   /* overwrites the logits: restore them, time one call */
            memcpy(s->logits, s->logits0, nl * sizeof(float));
            double t0 = bench_now();
            run(s, k, fast);
            if (r >= 0) t[r] = bench_now() - t0;
            continue;
        }
        int n = 0;
        double t0 = bench_now(), el;
        do { run(s, k, fast); n++; el = bench_now() - t0; } while (el < 0.01);
        if (r >= 0) t[r] = el / n;
    }
    return bench_median(t, 7);
}

/* Bytes moved (memory-bound kernels) or FLOPs (attention) per call. */
static double work(const bstate *s, int k, int *is_flops) {
    const double NC = (double)s->N * s->C, pairs = (double)s->T * (s->T + 1) / 2 * s->B * s->NH;
    *is_flops = 0;
    switch (k) {
    case K_LN_FWD: return 8 * NC;
    case K_LN_DX: return 16 * NC;
    case K_LN_DWDB: return 8 * NC;
    case K_GELU_FWD: return 8 * 4 * NC;
    case K_GELU_BWD: return 16 * 4 * NC;
    case K_RES_FWD: return 12 * NC;
    case K_RES_BWD: return 20 * NC;
    case K_CE_FWD: return 4.0 * s->N * s->V;
    case K_CE_BWD: return 8.0 * s->N * s->V;
    case K_ATT_FWD: *is_flops = 1; return pairs * s->HS * 2 * 2;
    case K_ATT_BWD: *is_flops = 1; return pairs * s->HS * 5 * 2;
    case K_ADAMW: return 28.0 * s->nopt;   /* read p, g, m, v; write p, m, v */
    case K_SUMSQ: return 4.0 * s->nopt;
    }
    return 0;
}

int main(int argc, char **argv) {
    FILE *out = bench_open_results(argc > 1 ? argv[1] : BENCH_RESULTS);
    if (!out) return 1;
    time_t wall = time(NULL);
    const char *lvl = llm_simd_name(llm_simd_active());
    printf("CPU features: %s\nllm.h SIMD level: %s; one thread\n", llm__cpu_features(), lvl);
    printf("%-20s %4s %12s %12s %8s  %s\n", "kernel", "T", "reference", "fast", "speedup", "unit");
    const int Ts[2] = {64, 256};
    for (int ti = 0; ti < 2; ti++) {
        bstate s;
        memset(&s, 0, sizeof s);
        s.B = 4; s.T = Ts[ti]; s.C = 768; s.NH = 12; s.HS = 64; s.V = 50257; s.N = s.B * s.T;
        size_t NC = (size_t)s.N * s.C, nqkv = 3 * NC, nl = (size_t)s.N * s.V;
        s.x = alloc_rand(NC, 2, 1); s.out = alloc_rand(NC, 1, 2); s.dout = alloc_rand(NC, 1, 3); s.dx = alloc_rand(NC, 1, 4);
        s.w = alloc_rand((size_t)s.C, 1, 5); s.b = alloc_rand((size_t)s.C, 1, 6); s.dw = alloc_rand((size_t)s.C, 1, 7);
        s.db = alloc_rand((size_t)s.C, 1, 8); s.mean = alloc_rand((size_t)s.N, 1, 9); s.rstd = alloc_rand((size_t)s.N, 1, 10);
        s.h4 = alloc_rand(4 * NC, 4, 11); s.dh4 = alloc_rand(4 * NC, 1, 12); s.dh4o = alloc_rand(4 * NC, 1, 13);
        s.qkv = alloc_rand(nqkv, 1, 14); s.dqkv = alloc_rand(nqkv, 1, 15); s.att = alloc_rand(NC, 1, 16);
        s.lse = alloc_rand((size_t)s.B * s.NH * s.T, 1, 17);
        s.logits0 = alloc_rand(nl, 5, 18); s.logits = alloc_rand(nl, 1, 19);
        s.losses = alloc_rand((size_t)s.N, 1, 20); s.clse = alloc_rand((size_t)s.N, 1, 21);
        s.tg = (int *)malloc((size_t)s.N * sizeof(int));
        for (int i = 0; i < s.N; i++) s.tg[i] = (i * 7919) % s.V;
        s.nopt = (size_t)8 << 20;
        s.p = alloc_rand(s.nopt, 1, 22); s.g = alloc_rand(s.nopt, 1, 23); s.m = alloc_rand(s.nopt, 0.1f, 24);
        s.v = alloc_rand(s.nopt, 0.1f, 25);
        for (size_t i = 0; i < s.nopt; i++) s.v[i] = s.v[i] * s.v[i];
        /* real statistics for the kernels that read them */
        llm__layernorm_fwd_ref(s.out, s.mean, s.rstd, s.x, s.w, s.b, s.N, s.C);
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.NH; h++) llm__attention_fwd_head(s.att, s.lse, s.qkv, b, h, s.T, s.NH, s.NH, s.HS);
        llm__crossentropy_fwd_ref(s.losses, s.clse, s.logits0, s.tg, s.N, s.V);
        for (int k = 0; k < K_COUNT; k++) {
            if ((k == K_ADAMW || k == K_SUMSQ) && ti > 0) continue;   /* shape-independent */
            int fl;
            double wk = work(&s, k, &fl);
            double tr = time_kernel(&s, k, 0), tf = time_kernel(&s, k, 1);
            double ur = wk / tr * 1e-9, uf = wk / tf * 1e-9;
            printf("%-20s %4d %12.2f %12.2f %7.1fx  %s   (%.3f ms -> %.3f ms)\n", knames[k], s.T, ur, uf, tr / tf,
                   fl ? "GFLOP/s" : "GB/s", tr * 1e3, tf * 1e3);
            fflush(stdout);
            fprintf(out, "{\"bench\":\"kernel\",\"kernel\":\"%s\",\"time\":%ld,\"simd\":\"%s\",\"threads\":1,\"B\":%d,"
                    "\"T\":%d,\"C\":%d,\"NH\":%d,\"V\":%d,\"ref_ms\":%.4f,\"fast_ms\":%.4f,\"ref_%s\":%.3f,"
                    "\"fast_%s\":%.3f,\"speedup\":%.2f}\n", knames[k], (long)wall, lvl, s.B, s.T, s.C, s.NH, s.V,
                    tr * 1e3, tf * 1e3, fl ? "gflops" : "gbps", ur, fl ? "gflops" : "gbps", uf, tr / tf);
        }
        float *bufs[] = {s.x, s.out, s.dout, s.dx, s.w, s.b, s.dw, s.db, s.mean, s.rstd, s.h4, s.dh4, s.dh4o, s.qkv,
                         s.dqkv, s.att, s.lse, s.logits0, s.logits, s.losses, s.clse, s.p, s.g, s.m, s.v};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) llm__free_aligned(bufs[i]);
        free(s.tg);
    }
    fclose(out);
    return 0;
}
