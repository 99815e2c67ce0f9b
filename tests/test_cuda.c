/* tests/test_cuda.c: the CUDA backend (llm_cuda.cu) against the CPU backend, op by op,
 * forward and backward, on the same random inputs and odd shapes (not multiples of 32,
 * tiles that end mid-warp, grouped-query heads), then whole models: a small GPT-2 and a
 * small Llama (RMSNorm, RoPE, GQA, SwiGLU, untied head): forward logits and loss, every
 * gradient tensor, and 3 AdamW steps.
 *
 * Built by `make cuda` with -DLLM_CUDA=1 and linked with llm_cuda.o; the plain build
 * (`make test`, no CUDA) only prints SKIP. `make test` also builds build/emu/tests/test_cuda:
 * llm_cuda.cu compiled by the host C++ compiler against tests/cuda_emu.h, a CPU emulation of
 * CUDA, so every comparison below runs in CI too (it says EMULATED; device name "llm.h
 * CUDA emulator"). Without a GPU it checks what the host side
 * can: the table is complete, create fails cleanly with a message (for a NULL options
 * pointer too), and so does llm_model_create with the CUDA backend; the GPU comparisons
 * print SKIP.
 *
 * Tolerances. fp32 everywhere: relative error 1e-4 with an absolute floor of 0.1 x the
 * tensor's RMS (test_max_rel_err). The two backends add the same terms in different
 * orders (cuBLAS tiles, warp butterflies, online softmax, FMA contraction on the GPU),
 * which moves a result by a few ulp x sqrt(terms), ~1e-6 relative; a value that is a
 * near-cancellation of much larger terms (a dx of a norm, a rotated pair, a gradient
 * summed over rows of both signs) keeps that absolute error while itself being small,
 * hence the floor: 0.1 RMS means "relative to the tensor's typical size, 1e-5". Looser,
 * and why:
 *   - sumsq: 1e-10 (both sum squares in double, only the order differs);
 *   - whole-model gradients: 1e-3 per tensor, the rounding of ~10 ops per layer
 *     compounds through the backward chain (the CPU's own SIMD-vs-scalar spread at these
 *     shapes is ~1e-5, so 1e-3 still catches any wrong index or missing term, which
 *     shows as O(1));
 *   - parameters after AdamW steps: at step 1 Adam moves each weight by ~lr*sign(g),
 *     whatever |g| is, so a gradient that is rounding noise around 0 may move the
 *     weight either way: compared absolutely, within 2*lr per step.
 * 16-bit modes against the fp32 CPU: bf16 (llm_cuda_backend_bf16, sm_80+; 8 significant
 * bits, unit roundoff u = 2^-8) and fp16 (llm_cuda_backend_fp16, sm_70+; 11 bits, u = 2^-11).
 * Rounding an operand errs by up to u relative, standard deviation ~u/sqrt(3); a product of
 * two rounded operands by ~sqrt(2) u/sqrt(3) ~ 0.8u, and a sum of K such terms of random
 * signs by ~0.8u of its RMS, the largest of ~1e4 outputs by ~4 sigma ~ 3.3u RMS: matmul
 * outputs are compared with the floor at 1 x RMS and tolerance 8u (bf16 3.1e-2, fp16
 * 3.9e-3). Through a whole model the errors of ~6 matmuls per layer add up: logits and every
 * gradient tensor 25u (floor 1 x RMS), the loss 2.5u relative, the gradient norm 12.5u. fp16's
 * range (6e-5 .. 65504) holds the activations and weights; its gradients go through the loss
 * scaler, as in training: backward on 65536 x the loss (llm_loss_scaler's default), which
 * lifts them into that range (the comparisons are relative, so the scale cancels). These
 * catch a wrong operand or transpose (errors O(1)), not a subtle rounding bug; the exact mode
 * is what pins the kernels down. */
#define _POSIX_C_SOURCE 200809L   /* setenv, unsetenv */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "tests/ref.h"

#ifdef LLM_CUDA

/* ---- host helpers ------------------------------------------------------------------ */
/* Random numbers: tests/test.h's xorshift (test_frand, uniform in [-1, 1)). */
static int irand(int n) { return (int)((test_rand_u64() >> 33) % (unsigned long long)n); }

#define MAX_HOST 512
static void *host_ptrs[MAX_HOST];
static int n_host;
static float *hnew(size_t n) {   /* zeroed host floats, freed by host_free_all */
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p || n_host == MAX_HOST) { fprintf(stderr, "test_cuda: out of host memory\n"); exit(1); }
    host_ptrs[n_host++] = p;
    return p;
}
static float *hrand(size_t n, float scale) {
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * test_frand();
    return p;
}
static void host_free_all(void) {
    for (int i = 0; i < n_host; i++) free(host_ptrs[i]);
    n_host = 0;
}

/* A backend with its state and the device buffers of the current case. */
typedef struct {
    const llm_backend *be;
    void *st;
    void *bufs[64];
    int nbufs;
} bk;

static void *put_bytes(bk *k, const void *h, size_t bytes) {
    void *d = k->be->alloc(k->st, bytes + 4);
    CHECK(d != NULL, "%s alloc %zu bytes: %s", k->be->name, bytes, llm_last_error());
    if (!d || k->nbufs == 64) { fprintf(stderr, "test_cuda: cannot continue\n"); exit(1); }
    k->bufs[k->nbufs++] = d;
    if (h) CHECK(k->be->upload(k->st, d, h, bytes) == LLM_OK, "%s upload: %s", k->be->name, llm_last_error());
    else k->be->zero(k->st, d, bytes);
    return d;
}
/* Device copy of n floats of h (h NULL: zeroed). */
static float *put(bk *k, const float *h, size_t n) { return (float *)put_bytes(k, h, n * sizeof(float)); }
static int *put_int(bk *k, const int *h, size_t n) { return (int *)put_bytes(k, h, n * sizeof(int)); }
/* Host copy of n floats of device buffer d. */
static float *get(bk *k, const float *d, size_t n) {
    float *h = hnew(n);
    llm_status s = k->be->download(k->st, h, d, n * sizeof(float));
    CHECK(s == LLM_OK, "%s download: %s", k->be->name, llm_last_error());
    return h;
}
/* End of a case: every queued op succeeded (sync), and the buffers go back. */
static void finish(bk *k, const char *what) {
    llm_status s = k->be->sync(k->st);
    CHECK(s == LLM_OK, "%s (%s): sync: %s", what, k->be->name, llm_last_error());
    for (int i = 0; i < k->nbufs; i++) k->be->release(k->st, k->bufs[i]);
    k->nbufs = 0;
}

/* got vs want: relative error with a floor of frac x RMS(want); prints the number. */
static void cmp_floor(const char *what, const float *got, const float *want, size_t n, double tol, double frac) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double floor_ = n ? frac * sqrt(ss / (double)n) : 0.0;
    if (floor_ < 1e-30) floor_ = 1e-30;
    double e = test_max_rel_err(got, want, n, floor_);
    CHECK(e <= tol, "%s: max rel err %.3g > %.3g (n=%zu)", what, e, tol, n);
    printf("  %-48s n=%-8zu max rel err %.2e\n", what, n, e);
}
static void cmp(const char *what, const float *got, const float *want, size_t n, double tol) {
    cmp_floor(what, got, want, n, tol, 0.1);
}
static void cmp_bits(const char *what, const float *a, const float *b, size_t n) {
    CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s: two runs differ", what);
}

/* ---- op by op, in model order -------------------------------------------------------- */
#define TOL 1e-4

static void t_encoder(bk *ks, int B, int T, int C, int V, int with_wpe) {
    size_t BT = (size_t)B * T, n = BT * C;
    int *tok = (int *)hnew(BT);
    for (size_t i = 0; i < BT; i++) tok[i] = irand(V);
    tok[0] = tok[BT - 1] = tok[BT / 2];  /* make sure some token repeats */
    float *wte = hrand((size_t)V * C, 1), *wpe = hrand((size_t)T * C, 1), *dout = hrand(n, 1);
    float *dwte0 = hrand((size_t)V * C, 1), *dwpe0 = hrand((size_t)T * C, 1);
    float *out[2], *dwte[2], *dwpe[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        int *dtok = put_int(K, tok, BT);
        float *o = put(K, NULL, n), *we = put(K, wte, (size_t)V * C), *pe = put(K, wpe, (size_t)T * C);
        float *d = put(K, dout, n), *gwe = put(K, dwte0, (size_t)V * C), *gpe = put(K, dwpe0, (size_t)T * C);
        K->be->encoder_fwd(K->st, o, dtok, we, with_wpe ? pe : NULL, B, T, C);
        K->be->encoder_bwd(K->st, gwe, with_wpe ? gpe : NULL, d, dtok, B, T, C);
        out[k] = get(K, o, n); dwte[k] = get(K, gwe, (size_t)V * C); dwpe[k] = get(K, gpe, (size_t)T * C);
        finish(K, "encoder");
    }
    char name[96];
    snprintf(name, sizeof name, "encoder B=%d T=%d C=%d V=%d%s: out", B, T, C, V, with_wpe ? "" : " (no wpe)");
    cmp(name, out[1], out[0], n, TOL);
    cmp("  dwte (atomics)", dwte[1], dwte[0], (size_t)V * C, TOL);
    cmp(with_wpe ? "  dwpe" : "  dwpe (untouched)", dwpe[1], dwpe[0], (size_t)T * C, TOL);
}

static void t_layernorm(bk *ks, int N, int C) {
    size_t n = (size_t)N * C;
    float *x = hrand(n, 2), *w = hrand(C, 1), *b = hrand(C, 1), *dout = hrand(n, 1);
    float *dx0 = hrand(n, 1), *dw0 = hrand(C, 1), *db0 = hrand(C, 1);
    for (size_t i = 0; i < n; i++) x[i] += 0.5f;  /* a non-zero mean */
    float *out[2], *mean[2], *rstd[2], *dx[2], *dw[2], *db[2], *dw_again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *W = put(K, w, C), *Bi = put(K, b, C), *O = put(K, NULL, n);
        float *M = put(K, NULL, N), *R = put(K, NULL, N), *D = put(K, dout, n);
        float *DX = put(K, dx0, n), *DW = put(K, dw0, C), *DB = put(K, db0, C);
        K->be->layernorm_fwd(K->st, O, M, R, X, W, Bi, N, C);
        K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
        out[k] = get(K, O, n); mean[k] = get(K, M, N); rstd[k] = get(K, R, N);
        dx[k] = get(K, DX, n); dw[k] = get(K, DW, C); db[k] = get(K, DB, C);
        if (k == 1) {  /* determinism: the column sums again from the same start */
            K->be->upload(K->st, DW, dw0, C * sizeof(float));
            K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
            dw_again = get(K, DW, C);
        }
        finish(K, "layernorm");
    }
    char name[96];
    snprintf(name, sizeof name, "layernorm N=%d C=%d: out", N, C);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  mean", mean[1], mean[0], N, TOL);
    cmp("  rstd", rstd[1], rstd[0], N, TOL);
    cmp("  dinp", dx[1], dx[0], n, TOL);
    cmp("  dw", dw[1], dw[0], C, TOL);
    cmp("  db", db[1], db[0], C, TOL);
    cmp_bits("layernorm dw", dw_again, dw[1], C);
}

static void t_rmsnorm(bk *ks, int N, int C) {
    size_t n = (size_t)N * C;
    float *x = hrand(n, 2), *w = hrand(C, 1), *dout = hrand(n, 1), *dx0 = hrand(n, 1), *dw0 = hrand(C, 1);
    float *out[2], *rstd[2], *dx[2], *dw[2], *dw_again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *W = put(K, w, C), *O = put(K, NULL, n), *R = put(K, NULL, N);
        float *D = put(K, dout, n), *DX = put(K, dx0, n), *DW = put(K, dw0, C);
        K->be->rmsnorm_fwd(K->st, O, R, X, W, N, C, 1e-5f);
        K->be->rmsnorm_bwd(K->st, DX, DW, D, X, W, R, N, C);
        out[k] = get(K, O, n); rstd[k] = get(K, R, N); dx[k] = get(K, DX, n); dw[k] = get(K, DW, C);
        if (k == 1) {
            K->be->upload(K->st, DW, dw0, C * sizeof(float));
            K->be->rmsnorm_bwd(K->st, DX, DW, D, X, W, R, N, C);
            dw_again = get(K, DW, C);
        }
        finish(K, "rmsnorm");
    }
    char name[96];
    snprintf(name, sizeof name, "rmsnorm N=%d C=%d: out", N, C);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  rstd", rstd[1], rstd[0], N, TOL);
    cmp("  dinp", dx[1], dx[0], n, TOL);
    cmp("  dw", dw[1], dw[0], C, TOL);
    cmp_bits("rmsnorm dw", dw_again, dw[1], C);
}

static void t_matmul_tol(bk *ks, int N, int C, int OC, int with_bias, double tol, double frac) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hrand(ni, 1), *w = hrand(nw, 1), *bias = hrand(OC, 1), *dout = hrand(no, 1);
    float *dx0 = hrand(ni, 1), *dw0 = hrand(nw, 1), *db0 = hrand(OC, 1);
    float *out[2], *dx[2], *dw[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni), *W = put(K, w, nw), *Bi = put(K, bias, OC), *O = put(K, NULL, no);
        float *D = put(K, dout, no), *DX = put(K, dx0, ni), *DW = put(K, dw0, nw), *DB = put(K, db0, OC);
        K->be->matmul_fwd(K->st, O, X, W, with_bias ? Bi : NULL, N, C, OC);
        K->be->matmul_bwd(K->st, DX, DW, with_bias ? DB : NULL, D, X, W, N, C, OC);
        out[k] = get(K, O, no); dx[k] = get(K, DX, ni); dw[k] = get(K, DW, nw); db[k] = get(K, DB, OC);
        finish(K, "matmul");
    }
    char name[96];
    snprintf(name, sizeof name, "%s N=%d C=%d OC=%d%s: out", ks[1].be->name, N, C, OC, with_bias ? " +bias" : "");
    /* the gradients start from random values of RMS ~0.6, the products have RMS ~sqrt(K/9) */
    cmp_floor(name, out[1], out[0], no, tol, frac);
    cmp_floor("  dinp", dx[1], dx[0], ni, tol, frac);
    cmp_floor("  dw", dw[1], dw[0], nw, tol, frac);
    cmp("  dbias (fp32 in both modes)", db[1], db[0], OC, TOL);  /* without bias: both leave it */
}
static void t_matmul(bk *ks, int N, int C, int OC, int with_bias) { t_matmul_tol(ks, N, C, OC, with_bias, TOL, 0.1); }

/* RoPE in place, forward then backward on another buffer; pos NULL (t) or an array with
 * large positions (the range reduction of sin/cos). Backward after forward on the same
 * buffer must give back the input (a rotation and its inverse). */
static void t_rope(bk *ks, int B, int T, int NH, int NKV, int HS, int with_pos) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, n = (size_t)B * T * row;
    float *x = hrand(n, 1), *d = hrand(n, 1);
    int *pos = (int *)hnew((size_t)B * T);
    for (int i = 0; i < B * T; i++) pos[i] = irand(1000);
    float *y[2], *dy[2], *back = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *D = put(K, d, n);
        int *P = put_int(K, pos, (size_t)B * T);
        K->be->rope_fwd(K->st, X, with_pos ? P : NULL, B, T, NH, NKV, HS, 10000.0f);
        K->be->rope_bwd(K->st, D, with_pos ? P : NULL, B, T, NH, NKV, HS, 10000.0f);
        y[k] = get(K, X, n); dy[k] = get(K, D, n);
        if (k == 1) {
            K->be->rope_bwd(K->st, X, with_pos ? P : NULL, B, T, NH, NKV, HS, 10000.0f);
            back = get(K, X, n);
        }
        finish(K, "rope");
    }
    char name[96];
    snprintf(name, sizeof name, "rope B=%d T=%d NH=%d NKV=%d HS=%d%s: out", B, T, NH, NKV, HS, with_pos ? " pos[]" : "");
    cmp(name, y[1], y[0], n, TOL);
    cmp("  dqkv (rotated back)", dy[1], dy[0], n, TOL);
    cmp("  bwd(fwd(x)) == x", back, x, n, TOL);
}

static void t_attention(bk *ks, int B, int T, int NH, int NKV, int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS;
    size_t n3 = (size_t)B * T * row, n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T;
    float *qkv = hrand(n3, 1), *dout = hrand(n, 1), *dqkv0 = hrand(n3, 1);
    float *out[2], *lse[2], *dqkv[2], *again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *Q = put(K, qkv, n3), *O = put(K, NULL, n), *L = put(K, NULL, nl);
        float *D = put(K, dout, n), *DQ = put(K, dqkv0, n3);
        K->be->attention_fwd(K->st, O, L, Q, B, T, NH, NKV, HS);
        K->be->attention_bwd(K->st, DQ, D, Q, O, L, B, T, NH, NKV, HS);
        out[k] = get(K, O, n); lse[k] = get(K, L, nl); dqkv[k] = get(K, DQ, n3);
        if (k == 1) {
            K->be->upload(K->st, DQ, dqkv0, n3 * sizeof(float));
            K->be->attention_bwd(K->st, DQ, D, Q, O, L, B, T, NH, NKV, HS);
            again = get(K, DQ, n3);
        }
        finish(K, "attention");
    }
    char name[96];
    snprintf(name, sizeof name, "attention B=%d T=%d NH=%d NKV=%d HS=%d: out", B, T, NH, NKV, HS);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  lse", lse[1], lse[0], nl, TOL);
    cmp("  dqkv", dqkv[1], dqkv[0], n3, TOL);
    cmp_bits("attention dqkv", again, dqkv[1], n3);
}

/* KV cache: S sequences with random old cache contents; one call prefills P tokens of
 * sequence 0 and adds one token to sequences 1 (at position 0) and 2 (at position maxT-7),
 * then a decode step advances sequences 0 and 2 by one token each. */
static void t_attention_kv(bk *ks, int NH, int NKV, int HS) {
    enum { S = 3, maxT = 40, P = 21 };
    size_t row = (size_t)(NH + 2 * NKV) * HS, nc = (size_t)S * maxT * NKV * HS;
    int seq1[P + 2], pos1[P + 2], seq2[2] = {0, 2}, pos2[2] = {P, maxT - 6};
    for (int i = 0; i < P; i++) { seq1[i] = 0; pos1[i] = i; }
    seq1[P] = 1; pos1[P] = 0; seq1[P + 1] = 2; pos1[P + 1] = maxT - 7;
    const int N1 = P + 2, N2 = 2;
    float *kc0 = hrand(nc, 1), *vc0 = hrand(nc, 1), *q1 = hrand(N1 * row, 1), *q2 = hrand(N2 * row, 1);
    float *o1[2], *o2[2], *kc[2], *vc[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *KC = put(K, kc0, nc), *VC = put(K, vc0, nc), *Q1 = put(K, q1, N1 * row), *Q2 = put(K, q2, N2 * row);
        float *O1 = put(K, NULL, (size_t)N1 * NH * HS), *O2 = put(K, NULL, (size_t)N2 * NH * HS);
        int *s1 = put_int(K, seq1, N1), *p1 = put_int(K, pos1, N1), *s2 = put_int(K, seq2, N2), *p2 = put_int(K, pos2, N2);
        K->be->attention_kv(K->st, O1, Q1, KC, VC, s1, p1, N1, NH, NKV, HS, maxT);
        K->be->attention_kv(K->st, O2, Q2, KC, VC, s2, p2, N2, NH, NKV, HS, maxT);
        o1[k] = get(K, O1, (size_t)N1 * NH * HS); o2[k] = get(K, O2, (size_t)N2 * NH * HS);
        kc[k] = get(K, KC, nc); vc[k] = get(K, VC, nc);
        finish(K, "attention_kv");
    }
    char name[96];
    snprintf(name, sizeof name, "attention_kv NH=%d NKV=%d HS=%d: prefill out", NH, NKV, HS);
    cmp(name, o1[1], o1[0], (size_t)N1 * NH * HS, TOL);
    cmp("  decode out", o2[1], o2[0], (size_t)N2 * NH * HS, TOL);
    cmp("  kcache", kc[1], kc[0], nc, 0.0);   /* copies: exact */
    cmp("  vcache", vc[1], vc[0], nc, 0.0);
}

static void t_elementwise(bk *ks, int N, int H) {
    size_t n = (size_t)N * H;
    float *x = hrand(2 * n, 4), *a = hrand(n, 1), *b = hrand(n, 1), *dout = hrand(n, 1);
    float *dx0 = hrand(2 * n, 1), *da0 = hrand(n, 1), *db0 = hrand(n, 1);
    float *g[2], *dg[2], *sw[2], *dsw[2], *r[2], *da[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, 2 * n), *G = put(K, NULL, n), *D = put(K, dout, n), *DX = put(K, dx0, n);
        float *SW = put(K, NULL, n), *DSW = put(K, dx0, 2 * n);
        float *A = put(K, a, n), *Bb = put(K, b, n), *R = put(K, NULL, n);
        float *DA = put(K, da0, n), *DB = put(K, db0, n);
        K->be->gelu_fwd(K->st, G, X, n);
        K->be->gelu_bwd(K->st, DX, X, D, n);
        K->be->swiglu_fwd(K->st, SW, X, N, H);
        K->be->swiglu_bwd(K->st, DSW, X, D, N, H);
        K->be->residual_fwd(K->st, R, A, Bb, n);
        K->be->residual_bwd(K->st, DA, DB, D, n);
        g[k] = get(K, G, n); dg[k] = get(K, DX, n); sw[k] = get(K, SW, n); dsw[k] = get(K, DSW, 2 * n);
        r[k] = get(K, R, n); da[k] = get(K, DA, n); db[k] = get(K, DB, n);
        finish(K, "elementwise");
    }
    char name[96];
    snprintf(name, sizeof name, "gelu n=%zu: out", n);
    cmp(name, g[1], g[0], n, TOL);
    cmp("  dinp", dg[1], dg[0], n, TOL);
    snprintf(name, sizeof name, "swiglu N=%d H=%d: out", N, H);
    cmp(name, sw[1], sw[0], n, TOL);
    cmp("  dinp (gate | up)", dsw[1], dsw[0], 2 * n, TOL);
    cmp("residual: out", r[1], r[0], n, TOL);
    cmp("  da", da[1], da[0], n, TOL);
    cmp("  db", db[1], db[0], n, TOL);
}

static void t_crossentropy(bk *ks, int N, int V) {
    size_t n = (size_t)N * V;
    float *logits = hrand(n, 5);
    int *tgt = (int *)hnew(N);
    for (int i = 0; i < N; i++) tgt[i] = (i % 5 == 3) ? -1 : irand(V);
    float *loss[2], *lse[2], *dl[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, logits, n), *Lo = put(K, NULL, N), *Ls = put(K, NULL, N);
        int *Tg = put_int(K, tgt, N);
        K->be->crossentropy_fwd(K->st, Lo, Ls, X, Tg, N, V);
        loss[k] = get(K, Lo, N); lse[k] = get(K, Ls, N);
        K->be->crossentropy_bwd(K->st, X, Ls, Tg, 0.37f, N, V);
        dl[k] = get(K, X, n);
        finish(K, "crossentropy");
    }
    char name[96];
    snprintf(name, sizeof name, "crossentropy N=%d V=%d: losses", N, V);
    cmp(name, loss[1], loss[0], N, TOL);
    cmp("  lse", lse[1], lse[0], N, TOL);
    cmp("  dlogits", dl[1], dl[0], n, TOL);
    CHECK(loss[1][3] == 0.0f && dl[1][3 * (size_t)V] == 0.0f, "ignored row 3: loss and dlogits 0");
}

static void t_sumsq_adamw(bk *ks, size_t n) {
    float *x = hrand(n, 1), *p0 = hrand(n, 1), *g = hrand(n, 1);
    double s[2];
    float *p[2], *m[2], *v[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *P = put(K, p0, n), *G = put(K, g, n), *M = put(K, NULL, n), *Vv = put(K, NULL, n);
        s[k] = K->be->sumsq(K->st, X, n);
        for (int t = 1; t <= 3; t++)   /* the same gradient three times: m, v build up */
            K->be->adamw(K->st, P, G, M, Vv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        p[k] = get(K, P, n); m[k] = get(K, M, n); v[k] = get(K, Vv, n);
        finish(K, "sumsq/adamw");
    }
    double rel = fabs(s[1] - s[0]) / s[0];
    CHECK(rel <= 1e-10, "sumsq n=%zu: %.17g vs %.17g (rel %.3g)", n, s[1], s[0], rel);
    printf("  %-48s n=%-8zu rel err %.2e\n", "sumsq", n, rel);
    CHECK(ks[1].be->sumsq(ks[1].st, NULL, 0) == 0.0, "sumsq of nothing is 0");
    cmp("adamw (3 steps): param", p[1], p[0], n, TOL);
    cmp("  m", m[1], m[0], n, TOL);
    cmp("  v", v[1], v[0], n, TOL);
}

/* copy has memmove's meaning: disjoint, and overlapping both ways, larger than the
 * backend's scratch chunk (8 MiB) so the overlapping path takes several chunks. */
static void t_copy(bk *ks) {
    size_t n = (size_t)5 << 20, sh = 1000003;
    float *x = hrand(n, 1);
    float *a[2], *fwd[2], *bwd[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *Y = put(K, NULL, n);
        K->be->copy(K->st, Y, X, n * sizeof(float));
        a[k] = get(K, Y, n);
        K->be->copy(K->st, X, X + sh, (n - sh) * sizeof(float));   /* dst before src */
        fwd[k] = get(K, X, n);
        K->be->copy(K->st, Y + sh, Y, (n - sh) * sizeof(float));   /* dst after src */
        bwd[k] = get(K, Y, n);
        finish(K, "copy");
    }
    cmp("copy: disjoint", a[1], x, n, 0.0);
    cmp("  overlapping, dst < src", fwd[1], fwd[0], n, 0.0);
    cmp("  overlapping, dst > src", bwd[1], bwd[0], n, 0.0);
}

/* Failures are reported, not crashed on: an impossible allocation; an op the kernels do
 * not support (reported by download, then by sync, which clears it); a bad KV-cache
 * position that only the GPU sees (flagged, reported by sync). */
static void t_errors(const llm_backend *cu, int ndev) {
    void *st = NULL;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.device = ndev;
    CHECK(cu->create(&st, &opt) == LLM_ERR_ARG && st == NULL, "device %d does not exist: %s", ndev, llm_last_error());
    opt.device = 0;
    opt.bf16 = opt.fp16 = 1;
    CHECK(cu->create(&st, &opt) == LLM_ERR_ARG && st == NULL && strstr(llm_last_error(), "fp16"),
          "bf16 and fp16 at once: %s", llm_last_error());
    opt.bf16 = opt.fp16 = 0;
    CHECK(cu->create(&st, &opt) == LLM_OK, "create: %s", llm_last_error());
    if (!st) return;
    void *p = cu->alloc(st, (size_t)1 << 50);
    CHECK(p == NULL, "a 1 PiB allocation fails");
    CHECK(strstr(llm_last_error(), "cudaMalloc") && strstr(llm_last_error(), "MiB"),
          "the message names the call and the sizes: %s", llm_last_error());
    CHECK(cu->sync(st) == LLM_OK, "out of memory is not an op failure");
    float one = 1.0f, back = 0.0f;
    float *d = (float *)cu->alloc(st, 4096 * sizeof(float));
    CHECK(d != NULL, "after an out-of-memory the backend still works: %s", llm_last_error());
    if (d) {
        cu->zero(st, d, 4096 * sizeof(float));
        CHECK(cu->upload(st, d, &one, sizeof one) == LLM_OK && cu->download(st, &back, d, sizeof back) == LLM_OK &&
              back == 1.0f, "round trip");
        /* head size 160 > 128 */
        cu->attention_fwd(st, d, d, d, 1, 1, 2, 2, 160);
        llm_status s = cu->download(st, &back, d, sizeof back);
        CHECK(s == LLM_ERR_UNSUPPORTED, "unsupported head size reported by download (%d)", (int)s);
        s = cu->sync(st);
        CHECK(s == LLM_ERR_UNSUPPORTED, "and by sync (%d)", (int)s);
        CHECK(strstr(llm_last_error(), "head size") != NULL, "message: %s", llm_last_error());
        CHECK(cu->sync(st) == LLM_OK, "sync cleared it: %s", llm_last_error());
        /* a position outside the cache: seq, pos live on the device */
        int *idx = (int *)cu->alloc(st, 2 * sizeof(int));
        int h_idx[2] = {0, 5};   /* seq 0, pos 5 >= maxT 4 */
        if (idx && cu->upload(st, idx, h_idx, sizeof h_idx) == LLM_OK) {
            float *q = d, *o = d + 256, *kc = d + 512, *vc = d + 1024;
            cu->attention_kv(st, o, q, kc, vc, idx, idx + 1, 1, 2, 1, 16, 4);
            s = cu->sync(st);
            CHECK(s == LLM_ERR_ARG && strstr(llm_last_error(), "pos"), "bad KV position reported by sync (%d): %s",
                  (int)s, llm_last_error());
            CHECK(cu->sync(st) == LLM_OK, "and cleared");
        }
        cu->release(st, idx);
        cu->release(st, d);
    }
    cu->destroy(st);
}

/* The unit roundoff of a CUDA table's 16-bit mode; 0 for fp32. */
static double unit_roundoff(const llm_backend *be) {
    return !strcmp(be->name, "cuda-bf16") ? 0x1p-8 : !strcmp(be->name, "cuda-fp16") ? 0x1p-11 : 0.0;
}
static int is_fp16(const llm_backend *be) { return !strcmp(be->name, "cuda-fp16"); }
/* Tolerances of the 16-bit modes in units of u (see the top). */
#define TOL_MM_U 8.0
#define TOL_MODEL_U 25.0
#define TOL_LOSS_U 2.5
#define TOL_NORM_U 12.5

/* ---- whole models ------------------------------------------------------------------- */
/* Forward (loss, logits), backward (every tensor's gradient), 3 AdamW steps, on the CPU
 * and the GPU from the same seed. fp16: backward on S x the loss and the steps through a
 * loss scaler (S = 65536), on both backends alike; no step may be skipped. */
static void t_model(const llm_backend *cu, const llm_config *cfg, int B, int T, const char *label) {
    double u = unit_roundoff(cu);
    int half = u > 0;
    double logit_tol = half ? TOL_MODEL_U * u : TOL, grad_tol = half ? TOL_MODEL_U * u : 1e-3, frac = half ? 1.0 : 0.1;
    float loss_tol = half ? (float)(TOL_LOSS_U * u) : 1e-5f, loss3_tol = half ? (float)(TOL_LOSS_U * u) : 1e-4f;
    float norm_tol = half ? (float)(TOL_NORM_U * u) : 1e-4f;
    llm_loss_scaler sc[2] = {llm_loss_scaler_default(), llm_loss_scaler_default()};
    int scaled = is_fp16(cu);
    float S = scaled ? sc[0].scale : 1.0f;
    int BT = B * T;
    int *tok = (int *)hnew((size_t)BT), *tgt = (int *)hnew((size_t)BT);
    for (int i = 0; i < BT; i++) {
        tok[i] = irand(cfg->vocab_size);
        tgt[i] = (i % 11 == 5) ? -1 : irand(cfg->vocab_size);
    }
    llm_model *m[2] = {NULL, NULL};
    llm_options opt[2];
    memset(opt, 0, sizeof opt);
    opt[0].backend = llm_cpu_backend(); opt[0].n_threads = 2;
    opt[1].backend = cu;
    for (int k = 0; k < 2; k++)
        CHECK(llm_model_create(&m[k], cfg, &opt[k], 1234) == LLM_OK, "%s create (%s): %s", label,
              opt[k].backend->name, llm_last_error());
    if (!m[0] || !m[1]) { llm_model_free(m[0]); llm_model_free(m[1]); return; }
    size_t np = llm_model_num_params(m[0]), nl = (size_t)BT * cfg->vocab_size;
    float *par[2], *grad[2], *logit[2], loss[2], norm[2], loss3[2];
    const float lr = 1e-3f;
    llm_adamw_config ac = llm_adamw_config_default();
    for (int k = 0; k < 2; k++) {
        par[k] = hnew(np); grad[k] = hnew(np); logit[k] = hnew(nl);
        CHECK(llm_model_get_params(m[k], par[k]) == LLM_OK, "get_params");
        CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss[k]) == LLM_OK, "forward: %s", llm_last_error());
        CHECK(llm_model_get_logits(m[k], logit[k]) == LLM_OK, "get_logits: %s", llm_last_error());
        CHECK(llm_model_zero_grad(m[k]) == LLM_OK, "zero_grad");
        CHECK(llm_model_backward(m[k], S) == LLM_OK, "backward: %s", llm_last_error());
        CHECK(llm_model_get_grads(m[k], grad[k]) == LLM_OK, "get_grads: %s", llm_last_error());
        for (int s = 0; s < 3; s++) {
            if (s > 0) {
                CHECK(llm_model_forward(m[k], tok, tgt, B, T, NULL) == LLM_OK, "forward: %s", llm_last_error());
                CHECK(llm_model_zero_grad(m[k]) == LLM_OK, "zero_grad");
                CHECK(llm_model_backward(m[k], S) == LLM_OK, "backward: %s", llm_last_error());
            }
            int skipped = 0;
            CHECK(llm_model_step_scaled(m[k], &ac, lr, scaled ? &sc[k] : NULL, &norm[k], &skipped) == LLM_OK,
                  "step: %s", llm_last_error());
            CHECK(!skipped, "%s step %d on %s skipped (gradient norm %g at loss scale %g)", label, s,
                  opt[k].backend->name, norm[k], S);
        }
        CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss3[k]) == LLM_OK, "forward after steps");
    }
    char name[96];
    snprintf(name, sizeof name, "%s initial params (same seed)", label);
    cmp(name, par[1], par[0], np, 0.0);
    printf("  %s loss cpu %.7f cuda %.7f; after 3 steps %.7f %.7f\n", label, loss[0], loss[1], loss3[0], loss3[1]);
    CHECK(fabsf(loss[1] - loss[0]) <= loss_tol * fabsf(loss[0]), "%s loss %.8f vs %.8f", label, loss[1], loss[0]);
    snprintf(name, sizeof name, "%s logits", label);
    cmp_floor(name, logit[1], logit[0], nl, logit_tol, frac);
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(cfg, off, size);
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!size[i]) continue;
        snprintf(name, sizeof name, "%s grad %s", label, llm_tensor_name(i));
        cmp_floor(name, grad[1] + off[i], grad[0] + off[i], size[i], grad_tol, frac);
    }
    CHECK(fabsf(norm[1] - norm[0]) <= norm_tol * norm[0], "%s last grad norm %.7g vs %.7g", label, norm[1], norm[0]);
    CHECK(fabsf(loss3[1] - loss3[0]) <= loss3_tol * fabsf(loss3[0]), "%s loss after 3 steps %.8f vs %.8f", label,
          loss3[1], loss3[0]);
    llm_model_get_params(m[0], par[0]);
    llm_model_get_params(m[1], par[1]);
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        double d = fabs((double)par[1][i] - par[0][i]);
        if (!(d <= worst)) worst = d;
    }
    CHECK(worst <= 3 * 2 * lr, "%s params after 3 steps: max |diff| %.3g > 2 lr per step", label, worst);
    printf("  %-48s n=%-8zu max abs diff %.2e (bound %.1e)\n", "params after 3 steps", np, worst, 6.0 * lr);
    llm_model_free(m[0]);
    llm_model_free(m[1]);
}

/* ---- the fused MLP up-projection ----------------------------------------------------- */
/* matmul_gelu_fwd (pre = inp @ w^T + bias, out = gelu(pre)) against the CPU's matmul_fwd
 * then gelu_fwd. In the 16-bit modes cuBLASLt's GELU epilogue may evaluate tanh its own way:
 * their tolerance covers it (its error is far below the operand rounding's). */
static void t_matmul_gelu(bk *ks, int N, int C, int OC, int with_bias, double tol, double frac) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hrand(ni, 1), *w = hrand(nw, 0.3f), *bias = hrand(OC, 0.5f);
    float *pre[2], *out[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni), *W = put(K, w, nw), *Bi = with_bias ? put(K, bias, OC) : NULL;
        float *P = put(K, NULL, no), *O = put(K, NULL, no);
        if (K->be->matmul_gelu_fwd) {
            K->be->matmul_gelu_fwd(K->st, P, O, X, W, Bi, N, C, OC);
        } else {
            K->be->matmul_fwd(K->st, P, X, W, Bi, N, C, OC);
            K->be->gelu_fwd(K->st, O, P, no);
        }
        pre[k] = get(K, P, no); out[k] = get(K, O, no);
        finish(K, "matmul_gelu");
    }
    char name[96];
    snprintf(name, sizeof name, "%s matmul_gelu N=%d C=%d OC=%d%s: pre", ks[1].be->name, N, C, OC,
             with_bias ? " +bias" : "");
    cmp_floor(name, pre[1], pre[0], no, tol, frac);
    cmp_floor("  gelu(pre)", out[1], out[0], no, tol, frac);
}

/* The 16-bit modes' weight copies follow every way the weight memory can change: upload, an
 * AdamW step (which writes the copy itself), an op writing into it, copy, zero. Each case
 * changes the weights completely, so a stale copy shows as an O(1) error; the weight sits
 * at an odd offset inside its allocation (not 16-byte aligned, which cuBLASLt must be told). */
static void t_weights16(bk *ks, int N, int C, int OC, double tol) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C, off = 3, na = nw + 2 * off;
    float *x = hrand(ni, 1), *bias = hrand(OC, 1), *w1 = hrand(na, 1), *w2 = hrand(na, 1), *g = hrand(na, 1);
    const char *stage[6] = {"first use", "after upload", "after adamw", "after an op wrote it",
                            "after copy", "after zero"};
    float *out[6][2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni), *Bi = put(K, bias, OC), *A = put(K, w1, na), *O = put(K, NULL, no);
        float *G = put(K, g, na), *M = put(K, NULL, na), *V = put(K, NULL, na), *S = put(K, w2, na);
        float *W = A + off;
        for (int s = 0; s < 6; s++) {
            if (s == 1) CHECK(K->be->upload(K->st, A, w2, na * sizeof(float)) == LLM_OK, "upload");
            if (s == 2) K->be->adamw(K->st, A, G, M, V, na, 0.5f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, 1);
            if (s == 3) K->be->residual_fwd(K->st, A, S, G, na);
            if (s == 4) K->be->copy(K->st, A, G, na * sizeof(float));
            if (s == 5) K->be->zero(K->st, A, na * sizeof(float));
            K->be->matmul_fwd(K->st, O, X, W, Bi, N, C, OC);
            out[s][k] = get(K, O, no);
        }
        finish(K, "16-bit weights");
    }
    for (int s = 0; s < 6; s++) {
        char name[96];
        snprintf(name, sizeof name, "%s weight copy %s", ks[1].be->name, stage[s]);
        cmp_floor(name, out[s][1], out[s][0], no, tol, 1.0);
    }
}

/* ---- whole-model properties ---------------------------------------------------------- */
/* The same step twice from the same seed on the GPU: logits and every gradient bit for bit
 * (fixed reduction orders, no float atomics; the token embedding's gradient included, with
 * tokens that repeat many times). */
static void t_repeat(const llm_backend *cu, const llm_config *cfg, int B, int T, const char *label) {
    int BT = B * T;
    int *tok = (int *)hnew((size_t)BT), *tgt = (int *)hnew((size_t)BT);
    for (int i = 0; i < BT; i++) { tok[i] = irand(7); tgt[i] = irand(cfg->vocab_size); }
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = cu;
    size_t nl = (size_t)BT * cfg->vocab_size;
    float *lg[2], *gr[2];
    size_t np = 0;
    for (int r = 0; r < 2; r++) {
        llm_model *m = NULL;
        CHECK(llm_model_create(&m, cfg, &opt, 77) == LLM_OK, "%s create: %s", label, llm_last_error());
        if (!m) return;
        np = llm_model_num_params(m);
        lg[r] = hnew(nl); gr[r] = hnew(np);
        CHECK(llm_model_forward(m, tok, tgt, B, T, NULL) == LLM_OK, "forward: %s", llm_last_error());
        CHECK(llm_model_get_logits(m, lg[r]) == LLM_OK, "logits");
        CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s",
              llm_last_error());
        CHECK(llm_model_get_grads(m, gr[r]) == LLM_OK, "grads");
        llm_model_free(m);
    }
    char name[96];
    snprintf(name, sizeof name, "%s: logits of two runs", label);
    cmp_bits(name, lg[0], lg[1], nl);
    snprintf(name, sizeof name, "%s: gradients of two runs", label);
    cmp_bits(name, gr[0], gr[1], np);
    printf("  %-48s bit-identical (logits %zu, gradients %zu)\n", label, nl, np);
}

/* tests/ref_gpt2.py's gpt2_small fixture: 10 AdamW steps (clipping active in some) on the
 * GPU, each loss and grad norm against PyTorch's. fp32: as tests/test_gpt2_torch.c (1e-4).
 * 16-bit: the loss moves by the operand rounding, ~0.8u relative per matmul, a few of them
 * in a chain: 5u absolute on a loss of ~6 (bf16 2e-2, fp16 2.4e-3), and the norm 12.5u
 * relative. fp16 trains as a user would, through llm_loss_scaler with its defaults; a
 * skipped step would leave the losses off PyTorch's, so none may be. */
static void t_torch_steps(const llm_backend *cu) {
    if (!test_has_fixture("gpt2_small")) {
        CHECK(0, "test_cuda: no PyTorch fixture gpt2_small in %s (committed in tests/fixtures)", test_fixtures_dir());
        return;
    }
    int B = (int)test_meta_num("gpt2_small", "B", 0), T = (int)test_meta_num("gpt2_small", "T", 0);
    int *tok = (int *)test_fixture_array("gpt2_small", "tokens.i32", (size_t)B * T);
    int *tgt = (int *)test_fixture_array("gpt2_small", "targets.i32", (size_t)B * T);
    float *ref_l = (float *)test_fixture_array("gpt2_small", "adamw_losses.f32", 10);
    float *ref_n = (float *)test_fixture_array("gpt2_small", "adamw_norms.f32", 10);
    char path[1024];
    const char *mf = ref_model_file("gpt2_small", REF_F32);   /* tests/ref.h writes it */
    snprintf(path, sizeof path, "%s", mf ? mf : "(not written)");
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = cu;
    llm_model *m = NULL;
    CHECK(llm_model_load(&m, path, &opt) == LLM_OK, "load %s on %s: %s", path, cu->name, llm_last_error());
    double u = unit_roundoff(cu), ltol = u > 0 ? 5 * u : 1e-4, ntol = u > 0 ? TOL_NORM_U * u : 1e-4;
    double worst_l = 0, worst_n = 0;
    llm_loss_scaler sc = llm_loss_scaler_default();
    llm_loss_scaler *scp = is_fp16(cu) ? &sc : NULL;
    if (m && tok && tgt && ref_l && ref_n) {
        llm_adamw_config oc = llm_adamw_config_default();
        oc.weight_decay = 0.1f; oc.decay_all = 0;
        oc.grad_clip = (float)test_meta_num("gpt2_small", "grad_clip", 0);
        for (int k = 0; k < 10; k++) {
            float loss = -1, norm = -1;
            CHECK(llm_model_forward(m, tok, tgt, B, T, &loss) == LLM_OK, "forward: %s", llm_last_error());
            CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, scp ? sc.scale : 1.0f) == LLM_OK,
                  "backward: %s", llm_last_error());
            int skipped = 0;
            CHECK(llm_model_step_scaled(m, &oc, 1e-3f, scp, &norm, &skipped) == LLM_OK, "step: %s", llm_last_error());
            CHECK(!skipped, "%s step %d skipped at loss scale %g", cu->name, k, scp ? sc.scale : 1.0f);
            CHECK(fabs(loss - ref_l[k]) <= ltol, "%s step %d: loss %.7f, PyTorch %.7f", cu->name, k, loss, ref_l[k]);
            CHECK(fabs(norm - ref_n[k]) <= ntol * ref_n[k], "%s step %d: grad norm %.7f, PyTorch %.7f", cu->name,
                  k, norm, ref_n[k]);
            if (fabs(loss - ref_l[k]) > worst_l) worst_l = fabs(loss - ref_l[k]);
            if (fabs(norm - ref_n[k]) / ref_n[k] > worst_n) worst_n = fabs(norm - ref_n[k]) / ref_n[k];
        }
        char what[64];
        snprintf(what, sizeof what, "10 AdamW steps vs PyTorch (%s)", cu->name);
        printf("  %-48s max |loss diff| %.2e, max rel norm diff %.2e (tol %.1e, %.1e)\n", what, worst_l, worst_n,
               ltol, ntol);
    }
    llm_model_free(m);
    free(tok); free(tgt); free(ref_l); free(ref_n);
}

/* Greedy generation (temperature 0) on the GPU gives the CPU's tokens: stories260K, 200
 * tokens from BOS through the KV cache (prefill, then one row per step). */
static void t_generate(const llm_backend *cu) {
    int half = unit_roundoff(cu) > 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260K/stories260K.bin", test_data_dir());
    if (!test_file_exists(path)) { TEST_SKIP("test_cuda: no %s", path); return; }
    int ids[2][256], n[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        llm_options opt;
        memset(&opt, 0, sizeof opt);
        opt.backend = k ? cu : llm_cpu_backend();
        opt.n_threads = 2;
        llm_model *m = NULL;
        llm_kv *kv = NULL;
        CHECK(llm_model_load(&m, path, &opt) == LLM_OK, "load stories260K: %s", llm_last_error());
        if (m) CHECK(llm_kv_create(&kv, m, 1, 256, 0) == LLM_OK, "kv: %s", llm_last_error());
        if (kv) {
            llm_generate_config gc = llm_generate_config_default();
            gc.max_new_tokens = 200;
            int bos = 1;
            CHECK(llm_generate(kv, 0, &bos, 1, &gc, ids[k], 256, &n[k], NULL, NULL) == LLM_OK, "generate: %s",
                  llm_last_error());
        }
        llm_kv_free(kv);
        llm_model_free(m);
    }
    int same = 0;
    while (same < n[0] && same < n[1] && ids[0][same] == ids[1][same]) same++;
    if (!half) {
        CHECK(n[0] == 200 && n[1] == n[0] && same == n[0], "greedy stories260K: %d of %d tokens equal (cpu %d, %s %d)",
              same, n[0], n[0], cu->name, n[1]);
    } else {
        /* 16-bit rounding may flip a near-tie between two tokens, after which the texts
         * part: require a long common start, not equality */
        CHECK(n[1] == 200 && same >= 20, "greedy stories260K on %s: only the first %d tokens equal", cu->name, same);
    }
    char what[64];
    snprintf(what, sizeof what, half ? "greedy generation, %s vs fp32 CPU" : "greedy generation vs CPU (%s)",
             cu->name);
    printf("  %-48s %d of %d tokens equal\n", what, same, n[0]);
}

/* LLM_CUDA_PROFILE=1: one training step's GPU work, by kind, adds up. Every call is
 * counted (a GPT-2 of L layers runs attention forward L times, plus none in backward's
 * forward), and the table is empty again after a reset. */
static void t_profile(const llm_backend *cu, const llm_config *cfg) {
    static char buf[8192];
    llm_cuda_profile(NULL, 0, 1);
    setenv("LLM_CUDA_PROFILE", "1", 1);
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = cu;
    llm_model *m = NULL;
    int B = 2, T = 16, tok[32], tgt[32];
    for (int i = 0; i < B * T; i++) { tok[i] = irand(cfg->vocab_size); tgt[i] = irand(cfg->vocab_size); }
    CHECK(llm_model_create(&m, cfg, &opt, 5) == LLM_OK, "profile: create: %s", llm_last_error());
    unsetenv("LLM_CUDA_PROFILE");
    if (!m) return;
    llm_cuda_profile(NULL, 0, 1);   /* from here: one step */
    CHECK(llm_model_forward(m, tok, tgt, B, T, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
          llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, NULL, 1e-4f, NULL) == LLM_OK,
          "profile: step: %s", llm_last_error());
    size_t len = llm_cuda_profile(buf, sizeof buf, 1);
    printf("  profile of one step (tests LLM_CUDA_PROFILE; times are the emulator's or the GPU's):\n%s", buf);
    CHECK(len == strlen(buf) && len > 0, "profile: %zu characters", len);
    const char *a = strstr(buf, "attention_fwd ");
    CHECK(a && strtol(a + 14, NULL, 10) == cfg->n_layer, "profile: attention_fwd calls (want %d): %s",
          cfg->n_layer, a ? a : "(no line)");
    CHECK(strstr(buf, "matmul: ") && strstr(buf, "adamw") && strstr(buf, "total"), "profile: lines missing");
    CHECK(llm_cuda_profile(buf, sizeof buf, 0) == 0 && buf[0] == 0, "profile: empty after a reset");
    llm_model_free(m);
}

/* Every check of a 16-bit mode (table h) against the fp32 CPU (cpu), where the GPU has it. */
static void t_mode16(const llm_backend *h, bk *cpu, const llm_options *o, const llm_config *g, const llm_config *l) {
    double u = unit_roundoff(h), tol = TOL_MM_U * u;
    bk kh[2];
    memset(kh, 0, sizeof kh);
    kh[0] = *cpu;
    kh[1].be = h;
    llm_status s = h->create(&kh[1].st, o);
    if (s == LLM_ERR_UNSUPPORTED) {
        TEST_SKIP("test_cuda: %s mode: %s", h->name, llm_last_error());
        return;
    }
    CHECK(s == LLM_OK, "%s create: %s", h->name, llm_last_error());
    if (!kh[1].st) return;
    printf("test_cuda: %s: 16-bit matmuls vs the fp32 CPU (u = 2^%d, matmul tolerance %.2g)\n", h->name,
           (int)round(log2(u)), tol);
    t_matmul_tol(kh, 37, 72, 101, 1, tol, 1.0);
    t_matmul_tol(kh, 700, 768, 300, 0, tol, 1.0);
    t_matmul_gelu(kh, 37, 72, 101, 1, tol, 1.0);   /* cuBLASLt's GELU_AUX_BIAS epilogue */
    t_matmul_gelu(kh, 29, 33, 64, 0, tol, 1.0);    /* no bias: GemmEx, then the kernel */
    t_weights16(kh, 33, 40, 24, tol);
    host_free_all();
    h->destroy(kh[1].st);
    char label[64];
    snprintf(label, sizeof label, "gpt2/%s", h->name + 5);
    t_model(h, g, 3, 37, label);
    host_free_all();
    snprintf(label, sizeof label, "llama/%s", h->name + 5);
    t_model(h, l, 2, 41, label);
    host_free_all();
    snprintf(label, sizeof label, "gpt2 %s, same seed twice", h->name + 5);
    t_repeat(h, g, 3, 37, label);
    host_free_all();
    t_torch_steps(h);
    t_generate(h);
}

/* What can be checked without a GPU. */
static void t_host_side(const llm_backend *cu) {
    int missing = !cu->create + !cu->destroy + !cu->alloc + !cu->release + !cu->upload +
        !cu->download + !cu->zero + !cu->copy + !cu->sync + !cu->encoder_fwd + !cu->encoder_bwd +
        !cu->layernorm_fwd + !cu->layernorm_bwd + !cu->rmsnorm_fwd + !cu->rmsnorm_bwd +
        !cu->matmul_fwd + !cu->matmul_bwd + !cu->rope_fwd + !cu->rope_bwd + !cu->attention_fwd +
        !cu->attention_bwd + !cu->attention_kv + !cu->gelu_fwd + !cu->gelu_bwd + !cu->swiglu_fwd +
        !cu->swiglu_bwd + !cu->residual_fwd + !cu->residual_bwd + !cu->crossentropy_fwd +
        !cu->crossentropy_bwd + !cu->sumsq + !cu->adamw;
    CHECK(missing == 0, "%d backend slots are NULL", missing);
    CHECK(cu->name && strcmp(cu->name, "cuda") == 0, "name");
    CHECK(llm_cuda_backend() == cu, "one table");
    /* the bf16 table: the same ops (the state says bf16), its own create and name */
    const llm_backend *h = llm_cuda_backend_bf16();
    CHECK(h && h->create != cu->create && strcmp(h->name, "cuda-bf16") == 0, "bf16 table");
    CHECK(h && h->matmul_fwd == cu->matmul_fwd && h->attention_bwd == cu->attention_bwd &&
          h->sync == cu->sync && h->adamw == cu->adamw, "bf16 table shares the ops");
    const llm_backend *f = llm_cuda_backend_fp16();
    CHECK(f && f->create != cu->create && f->create != h->create && strcmp(f->name, "cuda-fp16") == 0, "fp16 table");
    CHECK(f && f->matmul_fwd == cu->matmul_fwd && f->attention_fwd == cu->attention_fwd && f->adamw == cu->adamw,
          "fp16 table shares the ops");
}
static void t_no_device(const llm_backend *cu) {
    void *st = (void *)1;
    CHECK(cu->create(&st, NULL) == LLM_ERR_UNSUPPORTED && st == NULL, "create without a GPU fails cleanly");
    CHECK(strstr(llm_last_error(), "GPU") != NULL, "message: %s", llm_last_error());
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = cu;
    opt.device = 1;
    st = (void *)1;
    CHECK(cu->create(&st, &opt) == LLM_ERR_UNSUPPORTED && st == NULL, "with options too");
    st = (void *)1;
    CHECK(llm_cuda_backend_bf16()->create(&st, NULL) == LLM_ERR_UNSUPPORTED && st == NULL, "bf16 too");
    st = (void *)1;
    CHECK(llm_cuda_backend_fp16()->create(&st, NULL) == LLM_ERR_UNSUPPORTED && st == NULL, "fp16 too");
    llm_model *m = (llm_model *)1;
    llm_config cfg = llm_config_llama(64, 1, 2, 1, 16, 32);
    CHECK(llm_model_create(&m, &cfg, &opt, 1) == LLM_ERR_UNSUPPORTED && m == NULL,
          "llm_model_create on the CUDA backend without a GPU: %s", llm_last_error());
}
#endif /* LLM_CUDA */

int main(void) {
#ifndef LLM_CUDA
    TEST_SKIP("test_cuda: built without CUDA (`make cuda` builds build/cuda/tests/test_cuda)");
#else
    const llm_backend *cu = llm_cuda_backend();
    t_host_side(cu);
    int ndev = llm_cuda_device_count();
    if (ndev == 0) {
        t_no_device(cu);
        TEST_SKIP("test_cuda: no CUDA device; GPU-vs-CPU comparisons not run");
        return TEST_END("test_cuda");
    }
    bk ks[2];
    memset(ks, 0, sizeof ks);
    llm_options o[2];
    memset(o, 0, sizeof o);
    o[0].n_threads = 2;
    ks[0].be = llm_cpu_backend();
    ks[1].be = cu;
    CHECK(ks[0].be->create(&ks[0].st, &o[0]) == LLM_OK, "cpu create: %s", llm_last_error());
    CHECK(ks[1].be->create(&ks[1].st, &o[1]) == LLM_OK, "cuda create: %s", llm_last_error());
    if (!ks[0].st || !ks[1].st) {
        for (int k = 0; k < 2; k++)
            if (ks[k].st) ks[k].be->destroy(ks[k].st);
        return TEST_END("test_cuda");
    }
    const char *dev_name = llm_cuda_device_name(0);
    printf("test_cuda: %d device(s), device 0: %s; CUDA vs CPU, fp32\n", ndev, dev_name);
    if (strstr(dev_name, "emulator"))   /* never let a log pass this off as a GPU run */
        printf("test_cuda: EMULATED: no GPU ran; llm_cuda.cu's kernels ran on the CPU under tests/cuda_emu.h "
               "(checks their logic, not GPU rounding or speed)\n");

    t_encoder(ks, 3, 7, 40, 23, 1);
    t_encoder(ks, 2, 33, 77, 5, 1);        /* few tokens: many atomic collisions */
    t_encoder(ks, 2, 9, 48, 31, 0);        /* Llama: no position embedding */
    t_encoder(ks, 3, 20, 8, 70000, 1);     /* ids >= 65536: the two-digit radix sort */
    t_layernorm(ks, 37, 77);
    t_layernorm(ks, 1000, 65);             /* several row splits in the column sums */
    t_rmsnorm(ks, 37, 77);
    t_rmsnorm(ks, 1000, 96);
    t_matmul(ks, 37, 72, 101, 1);
    t_matmul(ks, 29, 33, 17, 0);
    t_matmul(ks, 700, 48, 144, 1);
    t_matmul_gelu(ks, 37, 72, 101, 1, TOL, 0.1);
    t_matmul_gelu(ks, 29, 33, 64, 0, TOL, 0.1);
    t_rope(ks, 2, 37, 4, 2, 16, 0);
    t_rope(ks, 3, 5, 3, 1, 64, 1);         /* positions up to 999 */
    t_rope(ks, 1, 9, 2, 2, 256, 0);        /* the largest head size */
    t_attention(ks, 2, 45, 3, 3, 16);      /* two key tiles, the last partial */
    t_attention(ks, 1, 70, 2, 2, 64);
    t_attention(ks, 2, 33, 3, 3, 40);      /* HS 40: lanes past HS idle */
    t_attention(ks, 1, 65, 2, 2, 128);     /* the largest head size */
    t_attention(ks, 3, 1, 2, 2, 12);       /* T = 1 */
    t_attention(ks, 2, 50, 6, 2, 16);      /* GQA: 3 query heads per kv head */
    t_attention(ks, 1, 67, 4, 1, 32);      /* MQA: one kv head */
    t_attention_kv(ks, 4, 4, 16);
    t_attention_kv(ks, 6, 2, 48);          /* GQA, HS 48 */
    t_attention_kv(ks, 2, 1, 128);
    t_elementwise(ks, 7, 147);
    t_crossentropy(ks, 13, 1001);
    t_crossentropy(ks, 4, 50257);          /* GPT-2's vocabulary */
    t_sumsq_adamw(ks, (size_t)1000003);
    t_copy(ks);
    host_free_all();
    t_errors(cu, ndev);

    llm_config g = llm_config_gpt2();
    g.max_seq_len = 48; g.vocab_size = 101; g.n_layer = 2; g.n_head = 3; g.n_embd = 48;
    t_model(cu, &g, 3, 37, "gpt2");
    host_free_all();
    llm_config l = llm_config_llama(97, 2, 4, 2, 64, 96);  /* GQA 2:1, HS 16 */
    l.max_seq_len = 48; l.untied_head = 1;
    t_model(cu, &l, 2, 41, "llama");
    host_free_all();
    t_repeat(cu, &g, 3, 37, "gpt2 fp32, same seed twice");
    host_free_all();
    t_torch_steps(cu);
    t_generate(cu);
    t_profile(cu, &g);

    /* the 16-bit modes, where the GPU has their tensor cores: bf16 (sm_80+), fp16 (sm_70+) */
    t_mode16(llm_cuda_backend_bf16(), &ks[0], &o[1], &g, &l);
    t_mode16(llm_cuda_backend_fp16(), &ks[0], &o[1], &g, &l);
    ks[0].be->destroy(ks[0].st);
    ks[1].be->destroy(ks[1].st);
#endif
    return TEST_END("test_cuda");
}
