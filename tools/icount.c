/* tools/icount.c: one call of each kernel (and one decode step), between two markers, for
 * counting executed instructions under qemu (tools/icount.sh). Under qemu no timing means
 * anything; the number of guest instructions a kernel executes at LLM_SIMD=scalar and at
 * NEON is the only speed signal there is.
 *
 *   tools/icount.sh            (builds this for aarch64 and prints the table)
 *   icount KERNEL              runs KERNEL once between icount_begin() and icount_end()
 * Shapes: N=32 rows of C=768 (GPT-2 124M), H=2048 (SwiGLU), V=4096 (cross-entropy),
 * attention B=1 T=64 NH=4 HS=64, KV attention at position 255, AdamW/Σx² 65536 floats,
 * GEMV 768 x 2304, GEMM 64 x 256 x 256; decode: one token of a Llama (dim 288, 6 layers,
 * 6 heads, vocab 512: stories15M's shape with fewer layers and tokens) at position 32. */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <stdio.h>

__attribute__((noinline)) void icount_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void icount_end(void) { __asm__ volatile("" ::: "memory"); }

static float *rnd(size_t n, float scale) {
    float *p = (float *)llm__alloc_aligned(n * sizeof(float));
    unsigned s = 12345u + (unsigned)n;
    for (size_t i = 0; i < n; i++) { s = s * 1664525u + 1013904223u; p[i] = ((float)(s >> 8) / 16777216.0f * 2 - 1) * scale; }
    return p;
}

int main(int argc, char **argv) {
    const char *k = argc > 1 ? argv[1] : "";
    enum { N = 32, C = 768, H = 2048, V = 4096, T = 64, NH = 4, HS = 64, NOPT = 65536, MAXT = 256 };
    float *x = rnd((size_t)N * C, 2), *w = rnd(C, 1), *b = rnd(C, 1), *out = rnd((size_t)N * C, 1), *d = rnd((size_t)N * C, 1);
    float *dx = rnd((size_t)N * C, 1), *dw = rnd(C, 1), *db = rnd(C, 1), *mean = rnd(N, 1), *rstd = rnd(N, 1);
    float *g2 = rnd((size_t)N * 2 * H, 3), *gh = rnd((size_t)N * H, 1), *dg2 = rnd((size_t)N * 2 * H, 1);
    float *logits = rnd((size_t)N * V, 4), *losses = rnd(N, 1), *lse = rnd(N, 1);
    float *qkv = rnd((size_t)T * 3 * NH * HS, 1.5f), *att = rnd((size_t)T * NH * HS, 1), *alse = rnd((size_t)NH * T, 1);
    float *dqkv = rnd((size_t)T * 3 * NH * HS, 1), *datt = rnd((size_t)T * NH * HS, 1);
    float *kc = rnd((size_t)MAXT * NH * HS, 1.5f), *vc = rnd((size_t)MAXT * NH * HS, 1);
    float *p = rnd(NOPT, 1), *g = rnd(NOPT, 1), *m = rnd(NOPT, 0.1f), *v = rnd(NOPT, 0.1f);
    float *W = rnd((size_t)3 * C * C, 1), *y = rnd((size_t)3 * C * 64, 1);
    float freq[HS / 2], cs[2 * HS];
    int tg[N], seq = 0, pos = MAXT - 1;
    for (int i = 0; i < N; i++) { tg[i] = (i * 7919) % V; mean[i] = 0.1f; rstd[i] = 0.9f; }
    for (int i = 0; i < NOPT; i++) v[i] = v[i] * v[i];
    llm__rope_freqs(freq, HS, 10000.0f);
    llm_pool *pool = llm_pool_create(1);
    llm_model *mdl = NULL;
    llm_kv *kv = NULL;
    int toks[33];
    float *lg = (float *)malloc(512 * sizeof(float));
    if (strcmp(k, "decode") == 0) {   /* prefill 32 tokens outside the markers */
        llm_config cfg = llm_config_llama(512, 6, 6, 6, 288, 768);
        cfg.max_seq_len = 64;
        llm_options opt;
        memset(&opt, 0, sizeof opt);
        opt.n_threads = 1;
        if (llm_model_create(&mdl, &cfg, &opt, 1) || llm_kv_create(&kv, mdl, 1, 64, 0)) { fprintf(stderr, "%s\n", llm_last_error()); return 1; }
        for (int i = 0; i < 33; i++) toks[i] = (i * 37) % 512;
        llm_kv_forward(kv, NULL, toks, 32, NULL, NULL);
    }
    if (!strcmp(k, "crossentropy_bwd")) llm__crossentropy_fwd_ref(losses, lse, logits, tg, N, V);   /* its input */
    icount_begin();
    if (!strcmp(k, "layernorm_fwd")) llm__layernorm_fwd_fast(out, mean, rstd, x, w, b, N, C);
    else if (!strcmp(k, "layernorm_bwd_dx")) llm__layernorm_bwd_dx_fast(dx, d, x, w, mean, rstd, N, C);
    else if (!strcmp(k, "layernorm_bwd_dwdb")) llm__layernorm_bwd_dwdb_fast(dw, db, d, x, mean, rstd, N, C, 0, C);
    else if (!strcmp(k, "rmsnorm_fwd")) llm__rmsnorm_fwd_fast(out, rstd, x, w, N, C, 1e-5f);
    else if (!strcmp(k, "rmsnorm_bwd")) llm__rmsnorm_bwd_fast(dx, dw, d, x, w, rstd, N, C);
    else if (!strcmp(k, "gelu_fwd")) llm__gelu_fwd_fast(gh, g2, (size_t)N * H);
    else if (!strcmp(k, "gelu_bwd")) llm__gelu_bwd_fast(dg2, g2, gh, (size_t)N * H);
    else if (!strcmp(k, "swiglu_fwd")) llm__swiglu_fwd_fast(gh, g2, N, H);
    else if (!strcmp(k, "swiglu_bwd")) llm__swiglu_bwd_fast(dg2, g2, gh, N, H);
    else if (!strcmp(k, "residual_fwd")) llm__residual_fwd_fast(out, x, d, (size_t)N * C);
    else if (!strcmp(k, "residual_bwd")) llm__residual_bwd_fast(dx, out, d, (size_t)N * C);
    else if (!strcmp(k, "crossentropy_fwd")) llm__crossentropy_fwd_fast(losses, lse, logits, tg, N, V);
    else if (!strcmp(k, "crossentropy_bwd")) llm__crossentropy_bwd_fast(logits, lse, tg, 0.5f, N, V);
    else if (!strcmp(k, "sumsq")) { volatile double s = llm__sumsq_fast(p, NOPT); (void)s; }
    else if (!strcmp(k, "adamw")) llm__adamw_fast(p, g, m, v, NOPT, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 3);
    else if (!strcmp(k, "attention_fwd")) for (int h = 0; h < NH; h++) llm__attention_fwd_fast(att, alse, qkv, 0, h, T, NH, NH, HS);
    else if (!strcmp(k, "attention_bwd")) for (int h = 0; h < NH; h++) llm__attention_bwd_group_fast(dqkv, datt, qkv, att, alse, 0, h, T, NH, NH, HS);
    else if (!strcmp(k, "attention_kv")) for (int h = 0; h < NH; h++) llm__attention_kv_head_fast(att, qkv, kc, vc, &seq, &pos, 0, h, NH, NH, HS, MAXT);
    else if (!strcmp(k, "rope")) for (int r = 0; r < T; r++) llm__rope_row_fast(qkv + (size_t)r * 3 * NH * HS, r, NH, NH, HS, freq, 1.0f, cs);
    else if (!strcmp(k, "gemv")) llm__sgemm(pool, 0, 1, 1, 3 * C, C, x, C, W, C, 0.0f, y, 3 * C);
    else if (!strcmp(k, "gemm")) llm__sgemm(pool, 0, 1, 64, 256, 256, W, 256, W + 65536, 256, 0.0f, y, 256);
    else if (!strcmp(k, "decode")) llm_kv_forward(kv, NULL, toks + 32, 1, NULL, lg);
    else { fprintf(stderr, "unknown kernel '%s'\n", k); return 2; }
    icount_end();
    printf("%s %s done (%g)\n", k, llm_simd_name(llm_simd_active()), (double)out[0] + y[0] + att[0] + lg[0] * 0);
    llm_kv_free(kv); llm_model_free(mdl); llm_pool_free(pool);
    return 0;
}
