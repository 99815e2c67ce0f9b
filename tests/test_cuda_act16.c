/* tests/test_cuda_act16.c: the CUDA backend's 16-bit activation storage (llm_cuda.cu,
 * "activation storage"): in the bf16 and fp16 modes, tensors in memory from alloc_act
 * hold 2-byte elements, and every op reads and writes them in that type. Each op runs
 * with its activations in that storage and is compared with the CPU backend's fp32 op on
 * the same values (the host rounds every input to the mode's type first, so both sides
 * start from identical numbers and what is measured is the op's own rounding). Then the
 * rules of the seam: fp32 memory (alloc) still works in the 16-bit modes (tests/test_cuda.c
 * covers it op by op); an op whose tensors mix the two storages, or an fp32-only argument
 * (statistics, logits, caches, the residual gradient) in activation storage, is refused
 * with LLM_ERR_ARG; the fused residual + layernorm equals the two separate ops bit for
 * bit; repeats are bit-identical; the table's act_dtype says each mode's type, and the CPU
 * backend has no activation storage (fp32).
 *
 * Tolerances, in units of the format's unit roundoff u (bf16 2^-8, fp16 2^-11; a rounding
 * to nearest errs by at most u relative):
 *   - ops that compute in fp32 from their (exact 16-bit) inputs and round the result once
 *     (encoder, norms, rope, gelu, swiglu, residual, the fp32 attention kernels,
 *     attention_kv): 1.25u relative, with a floor of 0.01 x the tensor's RMS for values
 *     near 0 whose fp32 evaluation differs by ~1e-6 between the backends; rope forward then
 *     backward gives x back within 3u of its pair's size (two roundings, mixed by the
 *     rotation): 6u of RMS;
 *   - fp32 results from 16-bit inputs (norm statistics, the norms' dinp, weight and bias
 *     gradients from 16-bit operands, whose products are exact in fp32): 1e-4 as the fp32
 *     mode (tests/test_cuda.c), floor 0.1 RMS;
 *   - matmuls: the weight is fp32 and rounded to 16 bits by the backend, which errs by
 *     ~0.8u of the product's RMS per output in standard deviation (tests/test_cuda.c's
 *     8u with a floor of 1 x RMS), plus the output's rounding: 10u; an fp32 output (the
 *     logits) 8u; an fp32 output gradient (the residual stream's) is rounded too: 10u;
 *   - tensor-core attention on 16-bit inputs: tests/test_cuda_attn16.c's tolerances for
 *     inputs that are 16-bit values already (out 4u, gradients 8u, lse 8u absolute) plus
 *     the output's rounding: 6u and 10u, floor 1 x RMS, dq, dk and dv each on its own scale.
 * A wrong index, a type read as the other (2-byte elements as floats) or a missed
 * rounding errs by O(1). fp16's range holds every value here (O(1) activations).
 *
 * Built by `make cuda` (SKIP without a GPU) and under tests/cuda_emu.h by `make test`
 * (prints EMULATED); the plain build prints SKIP. */
#define _POSIX_C_SOURCE 200809L
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#ifdef LLM_CUDA

/* ---- the two 16-bit formats on the host, rounded to nearest even as the GPU does ---- */
static uint16_t bf16_of(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);   /* NaN stays NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
static float bf16_val(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static uint16_t fp16_of(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);          /* >= 65520: inf */
    if (a < 0x38800000u) {                                            /* below 2^-14: subnormal */
        float v;
        memcpy(&v, &a, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(v * 16777216.0f));   /* units of 2^-24 */
    }
    uint32_t h = ((((a >> 23) - 112u) << 10) | ((a & 0x7fffffu) >> 13)), rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
static float fp16_val(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* The mode under test: 1 bf16, 2 fp16 (as llm_dtype), and its unit roundoff. */
static int mode;
static double u;
static uint16_t enc(float f) { return mode == LLM_DTYPE_F16 ? fp16_of(f) : bf16_of(f); }
static float dec(uint16_t h) { return mode == LLM_DTYPE_F16 ? fp16_val(h) : bf16_val(h); }
static float q16(float f) { return dec(enc(f)); }

/* ---- host buffers ---------------------------------------------------------------------- */
static int irand(int n) { return (int)((test_rand_u64() >> 33) % (unsigned long long)n); }
#define MAX_HOST 1024
static void *host_ptrs[MAX_HOST];
static int n_host;
static float *hnew(size_t n) {
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p || n_host == MAX_HOST) { fprintf(stderr, "test_cuda_act16: out of host memory\n"); exit(1); }
    host_ptrs[n_host++] = p;
    return p;
}
/* n random values in [-scale, scale) (+ shift), each a value of the mode's 16-bit type. */
static float *hq(size_t n, float scale, float shift) {
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = q16(scale * test_frand() + shift);
    return p;
}
/* n random fp32 values (parameters: the backend rounds them itself where it multiplies). */
static float *hf(size_t n, float scale) {
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * test_frand();
    return p;
}
static void host_free_all(void) {
    for (int i = 0; i < n_host; i++) free(host_ptrs[i]);
    n_host = 0;
}

/* ---- a backend and its buffers: ks[0] the CPU (fp32), ks[1] CUDA in the 16-bit mode ---- */
typedef struct {
    const llm_backend *be;
    void *st;
    int cuda;
    void *bufs[96];
    int nbufs;
} bk;
static bk ks[2];

/* A device tensor of n values of h (NULL: zeros): in activation storage when act and the
 * backend is the CUDA one (2-byte elements), else fp32. */
static float *put(bk *K, const float *h, size_t n, int act) {
    int half = act && K->cuda;
    size_t bytes = n * (half ? 2 : 4);
    void *d = half ? K->be->alloc_act(K->st, bytes + 8) : K->be->alloc(K->st, bytes + 8);
    CHECK(d != NULL, "%s alloc%s %zu bytes: %s", K->be->name, half ? "_act" : "", bytes, llm_last_error());
    if (!d || K->nbufs == 96) { fprintf(stderr, "test_cuda_act16: cannot continue\n"); exit(1); }
    K->bufs[K->nbufs++] = d;
    if (!h) { K->be->zero(K->st, d, bytes); return (float *)d; }
    void *src = (void *)h;
    uint16_t *tmp = NULL;
    if (half) {
        tmp = (uint16_t *)malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++) tmp[i] = enc(h[i]);
        src = tmp;
    }
    CHECK(K->be->upload(K->st, d, src, bytes) == LLM_OK, "%s upload: %s", K->be->name, llm_last_error());
    free(tmp);
    return (float *)d;
}
/* Host copy (as floats) of n values of the device tensor d, stored as put() made it. */
static float *get(bk *K, const float *d, size_t n, int act) {
    float *h = hnew(n);
    int half = act && K->cuda;
    if (!half) {
        CHECK(K->be->download(K->st, h, d, n * 4) == LLM_OK, "%s download: %s", K->be->name, llm_last_error());
        return h;
    }
    uint16_t *tmp = (uint16_t *)malloc(n * 2 + 2);
    CHECK(K->be->download(K->st, tmp, d, n * 2) == LLM_OK, "%s download: %s", K->be->name, llm_last_error());
    for (size_t i = 0; i < n; i++) h[i] = dec(tmp[i]);
    free(tmp);
    return h;
}
static int *put_int(bk *K, const int *h, size_t n) {
    void *d = K->be->alloc(K->st, n * sizeof(int) + 8);
    CHECK(d != NULL, "alloc");
    if (!d || K->nbufs == 96) { fprintf(stderr, "test_cuda_act16: cannot continue\n"); exit(1); }
    K->bufs[K->nbufs++] = d;
    CHECK(K->be->upload(K->st, d, h, n * sizeof(int)) == LLM_OK, "upload");
    return (int *)d;
}
static void finish(bk *K, const char *what) {
    llm_status s = K->be->sync(K->st);
    CHECK(s == LLM_OK, "%s (%s): sync: %s", what, K->be->name, llm_last_error());
    for (int i = 0; i < K->nbufs; i++) K->be->release(K->st, K->bufs[i]);
    K->nbufs = 0;
}

/* got vs want: relative error with a floor of frac x RMS(want). */
static void cmp(const char *what, const float *got, const float *want, size_t n, double tol, double frac) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double floor_ = n ? frac * sqrt(ss / (double)n) : 0.0;
    if (ss == 0.0) floor_ = 1.0;   /* all zero (dq, dk at T = 1): absolutely, on the inputs' O(1) scale */
    if (floor_ < 1e-30) floor_ = 1e-30;
    double e = test_max_rel_err(got, want, n, floor_);
    CHECK(e <= tol, "%s: max rel err %.3g > %.3g (n=%zu)", what, e, tol, n);
    printf("  %-50s n=%-7zu err %.2e (%.2fu, tol %.2fu)\n", what, n, e, e / u, tol / u);
}
static void cmp_bits(const char *what, const float *a, const float *b, size_t n) {
    CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s: not bit-identical", what);
}
#define TOL32 1e-4             /* fp32 results (see the top) */
#define ONE (1.25 * u)         /* one rounding of an fp32 result */
#define FLOOR 0.01             /* of RMS, for ONE */
#define MM (10.0 * u)          /* matmul with a 16-bit output or an fp32 gradient in */
#define MM32 (8.0 * u)         /* matmul to fp32 */

/* ---- op by op, in model order ------------------------------------------------------- */
static void t_encoder(int B, int T, int C, int V) {
    size_t BT = (size_t)B * T, n = BT * C;
    int *tok = (int *)hnew(BT);
    for (size_t i = 0; i < BT; i++) tok[i] = irand(V);
    float *wte = hf((size_t)V * C, 1), *wpe = hf((size_t)T * C, 1), *out[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *O = put(K, NULL, n, 1), *We = put(K, wte, (size_t)V * C, 0), *Pe = put(K, wpe, (size_t)T * C, 0);
        int *Tk = put_int(K, tok, BT);
        K->be->encoder_fwd(K->st, O, Tk, We, Pe, B, T, C);
        out[k] = get(K, O, n, 1);
        finish(K, "encoder");
    }
    char name[96];
    snprintf(name, sizeof name, "encoder_fwd B=%d T=%d C=%d: out", B, T, C);
    cmp(name, out[1], out[0], n, ONE, 1e-6);   /* the same fp32 sum, rounded: within u */
}

/* layernorm (rms 0) or rmsnorm (rms 1), forward then backward; dinp (the residual
 * stream's gradient) and the statistics fp32. */
static void t_norm(int N, int C, int rms) {
    size_t n = (size_t)N * C;
    float *x = hq(n, 2, 0.5f), *w = hf(C, 1), *b = hf(C, 1), *dout = hq(n, 1, 0);
    float *dx0 = hf(n, 1), *dw0 = hf(C, 1), *db0 = hf(C, 1);
    float *out[2], *mean[2], *rstd[2], *dx[2], *dw[2], *db[2], *dw_again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n, 1), *O = put(K, NULL, n, 1), *D = put(K, dout, n, 1);
        float *W = put(K, w, C, 0), *Bi = put(K, b, C, 0), *M = put(K, NULL, N, 0), *R = put(K, NULL, N, 0);
        float *DX = put(K, dx0, n, 0), *DW = put(K, dw0, C, 0), *DB = put(K, db0, C, 0);
        if (rms) {
            K->be->rmsnorm_fwd(K->st, O, R, X, W, N, C, 1e-5f);
            K->be->rmsnorm_bwd(K->st, DX, DW, D, X, W, R, N, C);
        } else {
            K->be->layernorm_fwd(K->st, O, M, R, X, W, Bi, N, C);
            K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
        }
        out[k] = get(K, O, n, 1); mean[k] = get(K, M, N, 0); rstd[k] = get(K, R, N, 0);
        dx[k] = get(K, DX, n, 0); dw[k] = get(K, DW, C, 0); db[k] = get(K, DB, C, 0);
        if (k == 1) {   /* the column sums again from the same start: bit for bit */
            K->be->upload(K->st, DW, dw0, C * sizeof(float));
            if (rms) K->be->rmsnorm_bwd(K->st, DX, DW, D, X, W, R, N, C);
            else K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
            dw_again = get(K, DW, C, 0);
        }
        finish(K, rms ? "rmsnorm" : "layernorm");
    }
    char name[96];
    snprintf(name, sizeof name, "%s N=%d C=%d: out", rms ? "rmsnorm" : "layernorm", N, C);
    cmp(name, out[1], out[0], n, ONE, FLOOR);
    if (!rms) cmp("  mean (fp32)", mean[1], mean[0], N, TOL32, 0.1);
    cmp("  rstd (fp32)", rstd[1], rstd[0], N, TOL32, 0.1);
    cmp("  dinp (fp32, the residual gradient)", dx[1], dx[0], n, TOL32, 0.1);
    cmp("  dw (fp32)", dw[1], dw[0], C, TOL32, 0.1);
    if (!rms) cmp("  db (fp32)", db[1], db[0], C, TOL32, 0.1);
    cmp_bits("norm dw repeated", dw_again, dw[1], C);
}

/* residual_layernorm_fwd: res = a + b is the same fp32 sum on both sides, so its 16-bit
 * value must be exactly that sum rounded; out against the CPU's layernorm of that res; and
 * the fused op against residual_fwd then layernorm_fwd on the same GPU: the same bits. */
static void t_residual_layernorm(int N, int C) {
    size_t n = (size_t)N * C;
    float *a = hq(n, 2, 0.3f), *b = hq(n, 1, 0), *w = hf(C, 1), *bias = hf(C, 1);
    float *res_want = hnew(n), *out_want, *mean_want, *rstd_want;
    for (size_t i = 0; i < n; i++) res_want[i] = q16(a[i] + b[i]);
    {   /* the CPU: layernorm of the rounded sum */
        bk *K = &ks[0];
        float *X = put(K, res_want, n, 0), *O = put(K, NULL, n, 0), *M = put(K, NULL, N, 0), *R = put(K, NULL, N, 0);
        float *W = put(K, w, C, 0), *Bi = put(K, bias, C, 0);
        K->be->layernorm_fwd(K->st, O, M, R, X, W, Bi, N, C);
        out_want = get(K, O, n, 0); mean_want = get(K, M, N, 0); rstd_want = get(K, R, N, 0);
        finish(K, "layernorm (reference)");
    }
    bk *K = &ks[1];
    float *A = put(K, a, n, 1), *Bb = put(K, b, n, 1), *W = put(K, w, C, 0), *Bi = put(K, bias, C, 0);
    float *res[2], *out[2], *mean[2], *rstd[2];
    for (int fused = 0; fused < 2; fused++) {
        float *Res = put(K, NULL, n, 1), *O = put(K, NULL, n, 1), *M = put(K, NULL, N, 0), *R = put(K, NULL, N, 0);
        if (fused) {
            K->be->residual_layernorm_fwd(K->st, Res, O, M, R, A, Bb, W, Bi, N, C);
        } else {
            K->be->residual_fwd(K->st, Res, A, Bb, n);
            K->be->layernorm_fwd(K->st, O, M, R, Res, W, Bi, N, C);
        }
        res[fused] = get(K, Res, n, 1); out[fused] = get(K, O, n, 1);
        mean[fused] = get(K, M, N, 0); rstd[fused] = get(K, R, N, 0);
    }
    finish(K, "residual_layernorm");
    char name[96];
    snprintf(name, sizeof name, "residual_layernorm_fwd N=%d C=%d: res", N, C);
    cmp(name, res[1], res_want, n, 0.0, 1e-30);
    cmp("  out", out[1], out_want, n, ONE, FLOOR);
    cmp("  mean", mean[1], mean_want, N, TOL32, 0.1);
    cmp("  rstd", rstd[1], rstd_want, N, TOL32, 0.1);
    cmp_bits("fused residual_layernorm: res", res[1], res[0], n);
    cmp_bits("fused residual_layernorm: out", out[1], out[0], n);
    cmp_bits("fused residual_layernorm: mean", mean[1], mean[0], N);
    cmp_bits("fused residual_layernorm: rstd", rstd[1], rstd[0], N);
    printf("  %-50s bit-identical to residual_fwd + layernorm_fwd\n", "  fused");
}

/* matmul forward and backward. out16: the output in activation storage (else fp32, the
 * logits); dout16: the output gradient too (else fp32, the residual stream's gradient). The
 * input and dinp are activations; w, bias, dw, dbias fp32. dinp accumulates onto random
 * 16-bit values. */
static void t_matmul(int N, int C, int OC, int with_bias, int out16, int dout16) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hq(ni, 1, 0), *w = hf(nw, 1), *bias = hf(OC, 1), *dout = hq(no, 1, 0);
    float *dx0 = hq(ni, 1, 0), *dw0 = hf(nw, 1), *db0 = hf(OC, 1);
    float *out[2], *dx[2], *dw[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni, 1), *O = put(K, NULL, no, out16), *D = put(K, dout, no, dout16);
        float *W = put(K, w, nw, 0), *Bi = put(K, bias, OC, 0);
        float *DX = put(K, dx0, ni, 1), *DW = put(K, dw0, nw, 0), *DB = put(K, db0, OC, 0);
        K->be->matmul_fwd(K->st, O, X, W, with_bias ? Bi : NULL, N, C, OC);
        K->be->matmul_bwd(K->st, DX, DW, with_bias ? DB : NULL, D, X, W, N, C, OC);
        out[k] = get(K, O, no, out16); dx[k] = get(K, DX, ni, 1); dw[k] = get(K, DW, nw, 0); db[k] = get(K, DB, OC, 0);
        finish(K, "matmul");
    }
    char name[96];
    snprintf(name, sizeof name, "matmul N=%d C=%d OC=%d%s: out (%s)", N, C, OC, with_bias ? " +bias" : "",
             out16 ? "16-bit" : "fp32");
    cmp(name, out[1], out[0], no, out16 ? MM : MM32, 1.0);
    cmp(dout16 ? "  dinp (16-bit dout)" : "  dinp (fp32 dout, rounded)", dx[1], dx[0], ni, MM, 1.0);
    /* from 16-bit operands the products are exact: fp32 accuracy; an fp32 dout is rounded */
    cmp("  dw (fp32)", dw[1], dw[0], nw, dout16 ? TOL32 : MM32, dout16 ? 0.1 : 1.0);
    cmp("  dbias (fp32)", db[1], db[0], OC, TOL32, 0.1);
}

/* matmul_gelu_fwd with pre and out in activation storage (cuBLASLt's GELU_AUX_BIAS
 * epilogue writing 16-bit D and aux; without a bias, the product then the kernel). */
static void t_matmul_gelu(int N, int C, int OC, int with_bias) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hq(ni, 1, 0), *w = hf(nw, 0.3f), *bias = hf(OC, 0.5f);
    float *pre[2], *out[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni, 1), *W = put(K, w, nw, 0), *Bi = put(K, bias, OC, 0);
        float *P = put(K, NULL, no, 1), *O = put(K, NULL, no, 1);
        if (K->be->matmul_gelu_fwd) {
            K->be->matmul_gelu_fwd(K->st, P, O, X, W, with_bias ? Bi : NULL, N, C, OC);
        } else {
            K->be->matmul_fwd(K->st, P, X, W, with_bias ? Bi : NULL, N, C, OC);
            K->be->gelu_fwd(K->st, O, P, no);
        }
        pre[k] = get(K, P, no, 1); out[k] = get(K, O, no, 1);
        finish(K, "matmul_gelu");
    }
    char name[96];
    snprintf(name, sizeof name, "matmul_gelu N=%d C=%d OC=%d%s: pre", N, C, OC, with_bias ? " +bias" : "");
    cmp(name, pre[1], pre[0], no, MM, 1.0);
    cmp("  gelu(pre)", out[1], out[0], no, MM, 1.0);
}

static void t_rope(int B, int T, int NH, int NKV, int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, n = (size_t)B * T * row;
    float *x = hq(n, 1, 0), *d = hq(n, 1, 0), *y[2], *dy[2], *back = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n, 1), *D = put(K, d, n, 1);
        K->be->rope_fwd(K->st, X, NULL, B, T, NH, NKV, HS, 10000.0f);
        K->be->rope_bwd(K->st, D, NULL, B, T, NH, NKV, HS, 10000.0f);
        y[k] = get(K, X, n, 1); dy[k] = get(K, D, n, 1);
        if (k == 1) {
            K->be->rope_bwd(K->st, X, NULL, B, T, NH, NKV, HS, 10000.0f);
            back = get(K, X, n, 1);
        }
        finish(K, "rope");
    }
    char name[96];
    snprintf(name, sizeof name, "rope B=%d T=%d NH=%d NKV=%d HS=%d: out", B, T, NH, NKV, HS);
    cmp(name, y[1], y[0], n, ONE, FLOOR);
    cmp("  dqkv", dy[1], dy[0], n, ONE, FLOOR);
    /* each rounding errs by u of its component, and the rotation back mixes the pair's:
     * within 3u of the pair's size (<= sqrt(2)), 5.2u of RMS = 0.58 */
    cmp("  bwd(fwd(x)) == x (two roundings)", back, x, n, 6 * u, 1.0);
}

/* The (B, T, QKV) gradient split into its q, k, v parts (each compared on its own scale). */
static float *part(const float *g, int B, int T, int NH, int NKV, int HS, int which, size_t *n_out) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, off = which == 0 ? 0 : which == 1 ? (size_t)NH * HS : (size_t)(NH + NKV) * HS;
    size_t w = which == 0 ? (size_t)NH * HS : (size_t)NKV * HS, BT = (size_t)B * T;
    float *p = hnew(BT * w);
    for (size_t i = 0; i < BT; i++) memcpy(p + i * w, g + i * row + off, w * sizeof(float));
    *n_out = BT * w;
    return p;
}
/* Attention with qkv, out, dout and dqkv in activation storage (dqkv from zero, as the
 * model starts it). HS a multiple of 16: the tensor-core kernels; else the fp32 ones.
 * Backward reads the forward's out and lse (D_i = dO_i . out_i, P = exp(s - lse)): both
 * sides get the CPU's, out rounded to 16 bits, so each side's gradients come from the
 * same numbers (the GPU's own out differs in the last bit here and there, and dP - D
 * cancels: that would be measured, not the backward). */
static void t_attention(int B, int T, int NH, int NKV, int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, n3 = (size_t)B * T * row, n = (size_t)B * T * NH * HS;
    size_t nl = (size_t)B * NH * T;
    float *qkv = hq(n3, 2, 0), *dout = hq(n, 1, 0);
    float *out[2], *lse[2], *dqkv[2], *again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *Q = put(K, qkv, n3, 1), *O = put(K, NULL, n, 1), *L = put(K, NULL, nl, 0);
        float *D = put(K, dout, n, 1), *DQ = put(K, NULL, n3, 1);
        K->be->attention_fwd(K->st, O, L, Q, B, T, NH, NKV, HS);
        out[k] = get(K, O, n, 1); lse[k] = get(K, L, nl, 0);
        float *o16 = hnew(n);   /* the CPU's out, rounded: the same on both sides */
        for (size_t i = 0; i < n; i++) o16[i] = q16(out[0][i]);
        float *O0 = put(K, o16, n, 1), *L0 = put(K, lse[0], nl, 0);
        K->be->attention_bwd(K->st, DQ, D, Q, O0, L0, B, T, NH, NKV, HS);
        dqkv[k] = get(K, DQ, n3, 1);
        if (k == 1) {
            K->be->zero(K->st, DQ, n3 * 2);
            K->be->attention_bwd(K->st, DQ, D, Q, O0, L0, B, T, NH, NKV, HS);
            again = get(K, DQ, n3, 1);
        }
        finish(K, "attention");
    }
    int tc = HS % 16 == 0;
    char name[96];
    snprintf(name, sizeof name, "attention B=%d T=%d NH=%d NKV=%d HS=%d%s: out", B, T, NH, NKV, HS,
             tc ? "" : " (fp32 kernels)");
    cmp(name, out[1], out[0], n, tc ? 6 * u : ONE, tc ? 1.0 : FLOOR);
    double se = 0;   /* lse, absolutely */
    for (size_t i = 0; i < nl; i++) if (fabs((double)lse[1][i] - lse[0][i]) > se) se = fabs((double)lse[1][i] - lse[0][i]);
    CHECK(se <= (tc ? 8 * u : TOL32 * 10), "attention lse: max abs err %.3g", se);
    printf("  %-50s max abs err %.2e\n", "  lse (fp32)", se);
    const char *pn[3] = {"  dq", "  dk", "  dv"};
    for (int w = 0; w < 3; w++) {
        size_t np;
        float *g1 = part(dqkv[1], B, T, NH, NKV, HS, w, &np), *g0 = part(dqkv[0], B, T, NH, NKV, HS, w, &np);
        cmp(pn[w], g1, g0, np, tc ? 10 * u : ONE, tc ? 1.0 : FLOOR);
    }
    cmp_bits("attention dqkv repeated", again, dqkv[1], n3);
}

/* attention_kv: qkv and out in activation storage, the caches fp32 (the stored k, v are
 * the 16-bit values widened, exactly). */
static void t_attention_kv(int NH, int NKV, int HS) {
    enum { S = 2, maxT = 24, P = 13 };
    size_t row = (size_t)(NH + 2 * NKV) * HS, nc = (size_t)S * maxT * NKV * HS;
    int seq[P + 1], pos[P + 1];
    for (int i = 0; i < P; i++) { seq[i] = 0; pos[i] = i; }
    seq[P] = 1; pos[P] = 0;
    const int N = P + 1;
    float *kc0 = hq(nc, 1, 0), *vc0 = hq(nc, 1, 0), *q = hq((size_t)N * row, 1, 0);
    float *o[2], *kc[2], *vc[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *KC = put(K, kc0, nc, 0), *VC = put(K, vc0, nc, 0), *Q = put(K, q, (size_t)N * row, 1);
        float *O = put(K, NULL, (size_t)N * NH * HS, 1);
        int *sq = put_int(K, seq, N), *ps = put_int(K, pos, N);
        K->be->attention_kv(K->st, O, Q, KC, VC, sq, ps, N, NH, NKV, HS, maxT);
        o[k] = get(K, O, (size_t)N * NH * HS, 1); kc[k] = get(K, KC, nc, 0); vc[k] = get(K, VC, nc, 0);
        finish(K, "attention_kv");
    }
    char name[96];
    snprintf(name, sizeof name, "attention_kv NH=%d NKV=%d HS=%d: out", NH, NKV, HS);
    cmp(name, o[1], o[0], (size_t)N * NH * HS, ONE, FLOOR);
    cmp("  kcache (fp32, exact copies)", kc[1], kc[0], nc, 0.0, 1e-30);
    cmp("  vcache (fp32, exact copies)", vc[1], vc[0], nc, 0.0, 1e-30);
}

static void t_elementwise(int N, int H) {
    size_t n = (size_t)N * H;
    float *x = hq(2 * n, 3, 0), *a = hq(n, 1, 0), *b = hq(n, 1, 0), *dout = hq(n, 1, 0);
    float *dx0 = hq(2 * n, 1, 0), *da0 = hq(n, 1, 0), *db0 = hq(n, 1, 0);
    float *g[2], *dg[2], *sw[2], *dsw[2], *r[2], *da[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, 2 * n, 1), *G = put(K, NULL, n, 1), *D = put(K, dout, n, 1), *DX = put(K, dx0, n, 1);
        float *SW = put(K, NULL, n, 1), *DSW = put(K, dx0, 2 * n, 1);
        float *A = put(K, a, n, 1), *Bb = put(K, b, n, 1), *R = put(K, NULL, n, 1);
        float *DA = put(K, da0, n, 1), *DB = put(K, db0, n, 1);
        K->be->gelu_fwd(K->st, G, X, n);
        K->be->gelu_bwd(K->st, DX, X, D, n);
        K->be->swiglu_fwd(K->st, SW, X, N, H);
        K->be->swiglu_bwd(K->st, DSW, X, D, N, H);
        K->be->residual_fwd(K->st, R, A, Bb, n);
        K->be->residual_bwd(K->st, DA, DB, D, n);
        g[k] = get(K, G, n, 1); dg[k] = get(K, DX, n, 1); sw[k] = get(K, SW, n, 1); dsw[k] = get(K, DSW, 2 * n, 1);
        r[k] = get(K, R, n, 1); da[k] = get(K, DA, n, 1); db[k] = get(K, DB, n, 1);
        finish(K, "elementwise");
    }
    char name[96];
    snprintf(name, sizeof name, "gelu n=%zu: out", n);
    cmp(name, g[1], g[0], n, ONE, FLOOR);
    cmp("  dinp (+=)", dg[1], dg[0], n, ONE, FLOOR);
    snprintf(name, sizeof name, "swiglu N=%d H=%d: out", N, H);
    cmp(name, sw[1], sw[0], n, ONE, FLOOR);
    cmp("  dinp (+=, gate | up)", dsw[1], dsw[0], 2 * n, ONE, FLOOR);
    cmp("residual: out", r[1], r[0], n, ONE, 1e-6);
    cmp("  da (+=)", da[1], da[0], n, ONE, 1e-6);
    cmp("  db (+=)", db[1], db[0], n, ONE, 1e-6);
}

/* The seam's rules: a mix of storages in one op, or an fp32-only argument in activation
 * storage, is refused by name (LLM_ERR_ARG at sync), and the backend goes on working. */
static void t_rules(void) {
    bk *K = &ks[1];
    const int N = 4, C = 32;
    size_t n = (size_t)N * C;
    float *x = hq(n, 1, 0), *w = hq(C, 1, 0);
    float *X16 = put(K, x, n, 1), *X32 = put(K, x, n, 0), *O16 = put(K, NULL, n, 1);
    float *W = put(K, w, C, 0), *M = put(K, NULL, N, 0), *R = put(K, NULL, N, 0), *M16 = put(K, NULL, N, 1);
    K->be->layernorm_fwd(K->st, O16, M, R, X32, W, W, N, C);
    llm_status s = K->be->sync(K->st);
    CHECK(s == LLM_ERR_ARG && strstr(llm_last_error(), "mix"), "layernorm_fwd of fp32 into 16-bit: %d %s", (int)s,
          llm_last_error());
    K->be->layernorm_fwd(K->st, O16, M16, R, X16, W, W, N, C);
    s = K->be->sync(K->st);
    CHECK(s == LLM_ERR_ARG && strstr(llm_last_error(), "fp32 argument"), "mean in activation storage: %d %s", (int)s,
          llm_last_error());
    int tgt[4] = {1, 2, 3, 4};
    int *T = put_int(K, tgt, 4);
    K->be->crossentropy_fwd(K->st, M, R, O16, T, N, C);
    s = K->be->sync(K->st);
    CHECK(s == LLM_ERR_ARG, "16-bit logits refused: %d %s", (int)s, llm_last_error());
    /* still working, and the op with consistent storage is fine */
    K->be->layernorm_fwd(K->st, O16, M, R, X16, W, W, N, C);
    CHECK(K->be->sync(K->st) == LLM_OK, "after the refusals: %s", llm_last_error());
    finish(K, "rules");
}

/* Bit-identical repeats of a small pipeline in activation storage: every 16-bit op, twice. */
static void t_repeat(void) {
    const int B = 2, T = 37, NH = 2, HS = 16, C = NH * HS, QKV = 3 * C;
    size_t BT = (size_t)B * T;
    float *x = hq(BT * C, 1, 0), *wq = hq((size_t)QKV * C, 0.3f, 0), *bq = hq(QKV, 0.1f, 0), *lw = hq(C, 1, 1);
    float *res[2];
    bk *K = &ks[1];
    for (int r = 0; r < 2; r++) {
        float *X = put(K, x, BT * C, 1), *L = put(K, NULL, BT * C, 1), *Q = put(K, NULL, BT * QKV, 1);
        float *A = put(K, NULL, BT * C, 1), *Y = put(K, NULL, BT * C, 1), *LS = put(K, NULL, (size_t)B * NH * T, 0);
        float *W = put(K, wq, (size_t)QKV * C, 0), *Bq = put(K, bq, QKV, 0), *LW = put(K, lw, C, 0);
        float *M = put(K, NULL, BT, 0), *R = put(K, NULL, BT, 0), *Lb = put(K, NULL, C, 0);
        K->be->layernorm_fwd(K->st, L, M, R, X, LW, Lb, (int)BT, C);
        K->be->matmul_fwd(K->st, Q, L, W, Bq, (int)BT, C, QKV);
        K->be->attention_fwd(K->st, A, LS, Q, B, T, NH, NH, HS);
        K->be->residual_layernorm_fwd(K->st, Y, L, M, R, X, A, LW, Lb, (int)BT, C);
        res[r] = get(K, L, BT * C, 1);
        finish(K, "repeat");
    }
    cmp_bits("16-bit pipeline run twice", res[0], res[1], BT * C);
    printf("  %-50s bit-identical\n", "layernorm, matmul, attention, fused norm twice");
}

/* ---- the model on activation storage ------------------------------------------------ */
/* llm.h keeps the tensors between ops in the backend's activation storage (alloc_act):
 *   - memory: llm_model_memory's activations in this mode are smaller than in the fp32
 *     mode at the same (B, T) by at least 2 bytes for each element of the per-layer
 *     tensors (ln1, qkv, att, res2, ln2, fch, fch_act, res3: (5C + QKV + F + H) per row
 *     and layer); the fp32 ones (logits, statistics, the residual gradient) stay;
 *   - the block adds the residual and normalizes in one op (GPT-2): once per layer in
 *     the profile of a training step (backward makes no forward without recompute);
 *   - recompute makes the layers' activations again with the same ops, the fused one
 *     included: logits and gradients bit for bit those of the kept activations;
 *   - LoRA on 16-bit activations (its rank-r tensors fp32) against the CPU's, from the
 *     same weights and random adapters (B != 0): loss and the loss after 2 AdamW steps
 *     2.5u, tests/test_cuda.c's whole-model tolerance; adapter gradients 32u of RMS: the
 *     whole model's 25u for the gradient coming in, plus the adapter's own chain of three
 *     products of rounded operands (Bt, dhs, dh: ~0.8u of RMS each, their sum's 4 sigma
 *     ~5.5u); measured 17u (bf16) and 24u (fp16). fp16 goes through the loss scaler at its
 *     default scale, as a user trains. */
static llm_config small_gpt2(void) {
    llm_config c = llm_config_gpt2();
    c.vocab_size = 97; c.max_seq_len = 64; c.n_layer = 2; c.n_head = 2; c.n_embd = 32;
    return c;
}
static void t_model_memory(const llm_backend *h) {
    llm_config c = small_gpt2();
    const int B = 2, T = 40;
    llm_options o;
    memset(&o, 0, sizeof o);
    llm_model *m[2] = {NULL, NULL};
    llm_memory mem[2];
    for (int k = 0; k < 2; k++) {
        o.backend = k ? h : llm_cuda_backend();
        CHECK(llm_model_create(&m[k], &c, &o, 3) == LLM_OK, "create on %s: %s", o.backend->name, llm_last_error());
        CHECK(m[k] && llm_model_memory(m[k], B, T, &mem[k]) == LLM_OK, "memory: %s", llm_last_error());
    }
    if (m[0] && m[1]) {
        size_t C = (size_t)c.n_embd, per_row = 5 * C + 3 * C + 4 * C + 4 * C;
        size_t least = 2 * (size_t)B * T * (size_t)c.n_layer * per_row;
        CHECK(mem[1].activations + least <= mem[0].activations, "%s activations %zu bytes, fp32 mode %zu: saves < %zu",
              h->name, mem[1].activations, mem[0].activations, least);
        printf("  %-50s %zu bytes (fp32 mode %zu; at least %zu fewer)\n", "model activations, B=2 T=40", mem[1].activations,
               mem[0].activations, least);
    }
    llm_model_free(m[0]);
    llm_model_free(m[1]);
}
static void t_model_fused(const llm_backend *h) {
    static char buf[8192];
    llm_config c = small_gpt2();
    int tok[32], tgt[32];
    for (int i = 0; i < 32; i++) { tok[i] = irand(c.vocab_size); tgt[i] = irand(c.vocab_size); }
    llm_options o;
    memset(&o, 0, sizeof o);
    o.backend = h;
    setenv("LLM_CUDA_PROFILE", "1", 1);
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, &o, 5) == LLM_OK, "profile: create: %s", llm_last_error());
    unsetenv("LLM_CUDA_PROFILE");
    if (!m) return;
    llm_cuda_profile(NULL, 0, 1);
    CHECK(llm_model_forward(m, tok, tgt, 2, 16, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
          llm_model_backward(m, 1.0f) == LLM_OK, "profile: step: %s", llm_last_error());
    llm_cuda_profile(buf, sizeof buf, 1);
    const char *f = strstr(buf, "residual_layernorm_fwd ");
    long n = f ? strtol(f + strlen("residual_layernorm_fwd "), NULL, 10) : -1;
    CHECK(n == c.n_layer, "the block's fused residual + layernorm: %ld calls in a step, want %d", n, c.n_layer);
    printf("  %-50s %ld calls (L = %d)\n", "fused residual + layernorm in a step", n, c.n_layer);
    llm_model_free(m);
}
static void t_model_recompute(const llm_backend *h) {
    llm_config c = small_gpt2();
    const int B = 2, T = 33, BT = B * T;
    int *tok = (int *)hnew(BT), *tgt = (int *)hnew(BT);
    for (int i = 0; i < BT; i++) { tok[i] = irand(c.vocab_size); tgt[i] = irand(c.vocab_size); }
    size_t nl = (size_t)BT * c.vocab_size, np = 0;
    float *lg[2], *gr[2], loss[2];
    for (int k = 0; k < 2; k++) {
        llm_options o;
        memset(&o, 0, sizeof o);
        o.backend = h; o.recompute = k;
        llm_model *m = NULL;
        CHECK(llm_model_create(&m, &c, &o, 9) == LLM_OK, "create: %s", llm_last_error());
        if (!m) return;
        np = llm_model_num_params(m);
        lg[k] = hnew(nl); gr[k] = hnew(np);
        CHECK(llm_model_forward(m, tok, tgt, B, T, &loss[k]) == LLM_OK && llm_model_get_logits(m, lg[k]) == LLM_OK &&
              llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK &&
              llm_model_get_grads(m, gr[k]) == LLM_OK, "recompute %d: %s", k, llm_last_error());
        llm_model_free(m);
    }
    CHECK(loss[0] == loss[1] && isfinite(loss[0]), "loss %.9g vs recompute %.9g", loss[0], loss[1]);
    cmp_bits("recompute: logits", lg[0], lg[1], nl);
    cmp_bits("recompute: gradients", gr[0], gr[1], np);
    printf("  %-50s bit-identical (loss %.6f)\n", "recompute vs kept activations", loss[0]);
}
static void t_model_lora(const llm_backend *h) {
    llm_config c = small_gpt2();
    const int B = 2, T = 29, BT = B * T;
    int *tok = (int *)hnew(BT), *tgt = (int *)hnew(BT);
    for (int i = 0; i < BT; i++) { tok[i] = irand(c.vocab_size); tgt[i] = irand(c.vocab_size); }
    int fp16 = mode == (int)LLM_DTYPE_F16;
    llm_loss_scaler sc[2] = {llm_loss_scaler_default(), llm_loss_scaler_default()};
    float S = fp16 ? sc[0].scale : 1.0f;
    llm_lora_config lc;
    memset(&lc, 0, sizeof lc);
    lc.rank = 4; lc.seed = 11;
    llm_adamw_config ac = llm_adamw_config_default();
    float loss[2], loss2[2], *g[2] = {NULL, NULL}, *ad = NULL;
    size_t n = 0;
    llm_model *m[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        llm_options o;
        memset(&o, 0, sizeof o);
        o.backend = k ? h : llm_cpu_backend(); o.n_threads = 2;
        CHECK(llm_model_create(&m[k], &c, &o, 21) == LLM_OK && llm_model_lora_create(m[k], &lc) == LLM_OK,
              "lora on %s: %s", o.backend->name, llm_last_error());
        if (!m[k]) break;
        n = llm_model_lora_num_params(m[k]);
        if (!ad) {   /* B != 0 too (fresh adapters have B = 0, so dA = 0): the same random adapters on both */
            ad = hnew(n);
            for (size_t i = 0; i < n; i++) ad[i] = 0.2f * test_frand();
        }
        g[k] = hnew(n);
        CHECK(llm_model_lora_set(m[k], ad) == LLM_OK && llm_model_forward(m[k], tok, tgt, B, T, &loss[k]) == LLM_OK &&
              llm_model_zero_grad(m[k]) == LLM_OK && llm_model_backward(m[k], S) == LLM_OK &&
              llm_model_lora_get_grads(m[k], g[k]) == LLM_OK, "lora fwd/bwd on %s: %s", o.backend->name, llm_last_error());
        for (int s = 0; s < 2; s++) {
            int skipped = 0;
            if (s > 0)
                CHECK(llm_model_forward(m[k], tok, tgt, B, T, NULL) == LLM_OK && llm_model_zero_grad(m[k]) == LLM_OK &&
                      llm_model_backward(m[k], S) == LLM_OK, "lora fwd/bwd: %s", llm_last_error());
            CHECK(llm_model_step_scaled(m[k], &ac, 1e-3f, fp16 ? &sc[k] : NULL, NULL, &skipped) == LLM_OK && !skipped,
                  "lora step %d on %s: %s", s, o.backend->name, llm_last_error());
        }
        CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss2[k]) == LLM_OK, "lora forward: %s", llm_last_error());
    }
    if (m[0] && m[1]) {
        double lt = 2.5 * u;
        CHECK(fabsf(loss[1] - loss[0]) <= lt * fabsf(loss[0]), "lora loss %.7f vs cpu %.7f", loss[1], loss[0]);
        CHECK(fabsf(loss2[1] - loss2[0]) <= lt * fabsf(loss2[0]), "lora loss after 2 steps %.7f vs cpu %.7f", loss2[1],
              loss2[0]);
        printf("  %-50s %.6f vs cpu %.6f; after 2 steps %.6f vs %.6f\n", "lora: loss", loss[1], loss[0], loss2[1], loss2[0]);
        cmp("lora: adapter gradients", g[1], g[0], n, 32 * u, 1.0);
    }
    llm_model_free(m[0]);
    llm_model_free(m[1]);
}

static void run_mode(const llm_backend *h, llm_dtype want) {
    mode = (int)want;
    u = want == LLM_DTYPE_F16 ? 0x1p-11 : 0x1p-8;
    ks[1].be = h;
    ks[1].cuda = 1;
    llm_options o;
    memset(&o, 0, sizeof o);
    llm_status s = h->create(&ks[1].st, &o);
    if (s == LLM_ERR_UNSUPPORTED) {
        TEST_SKIP("test_cuda_act16: %s mode: %s", h->name, llm_last_error());
        return;
    }
    CHECK(s == LLM_OK && ks[1].st, "%s create: %s", h->name, llm_last_error());
    if (!ks[1].st) return;
    CHECK(h->act_dtype && h->act_dtype(ks[1].st) == want && h->alloc_act && h->residual_layernorm_fwd,
          "%s: act_dtype says %s", h->name, want == LLM_DTYPE_F16 ? "fp16" : "bf16");
    printf("test_cuda_act16: %s, activations in 2 bytes vs the fp32 CPU (u = 2^%d)\n", h->name, (int)round(log2(u)));
    t_encoder(3, 7, 40, 23);
    t_norm(37, 77, 0);
    t_norm(1000, 65, 0);     /* several row splits in the column sums */
    t_norm(37, 77, 1);
    t_residual_layernorm(37, 77);
    t_residual_layernorm(300, 768);
    t_matmul(37, 72, 101, 1, 1, 1);     /* 16-bit in and out: cuBLASLt with a 16-bit D and bias */
    t_matmul(29, 33, 17, 0, 1, 1);      /* no bias: GemmEx writing 16 bits */
    t_matmul(45, 64, 80, 0, 0, 0);      /* fp32 out (the logits), fp32 dout (dlogits / dres) */
    t_matmul(45, 64, 96, 1, 1, 0);      /* 16-bit out, fp32 dout: an attention projection */
    t_matmul_gelu(37, 72, 104, 1);      /* GELU_AUX_BIAS epilogue, 16-bit D and aux */
    t_matmul_gelu(29, 33, 64, 0);
    t_rope(2, 37, 4, 2, 16);
    t_attention(2, 45, 3, 3, 16);       /* tensor cores, partial tiles */
    t_attention(1, 70, 2, 2, 64);
    t_attention(2, 50, 6, 2, 32);       /* GQA */
    t_attention(3, 1, 2, 2, 16);        /* T = 1 */
    t_attention(2, 33, 3, 3, 40);       /* HS 40: the fp32 kernels on 16-bit storage */
    t_attention_kv(4, 2, 16);
    t_attention_kv(2, 2, 40);
    t_elementwise(7, 147);
    t_rules();
    t_repeat();
    host_free_all();
    h->destroy(ks[1].st);
    ks[1].st = NULL;
    t_model_memory(h);
    t_model_fused(h);
    t_model_recompute(h);
    t_model_lora(h);
    host_free_all();
}
#endif /* LLM_CUDA */

int main(void) {
#ifndef LLM_CUDA
    TEST_SKIP("test_cuda_act16: built without CUDA (`make cuda` builds build/cuda/tests/test_cuda_act16)");
#else
    const llm_backend *cpu = llm_cpu_backend(), *cu = llm_cuda_backend();
    CHECK(!cpu->act_dtype && !cpu->alloc_act && !cpu->residual_layernorm_fwd,
          "the CPU backend keeps fp32 activations (no act_dtype, alloc_act) and has no fused op");
    CHECK(cu->act_dtype && cu->alloc_act && cu->residual_layernorm_fwd, "the CUDA table has activation storage");
    if (llm_cuda_device_count() == 0) {
        TEST_SKIP("test_cuda_act16: no CUDA device");
        return TEST_END("test_cuda_act16");
    }
    const char *dev = llm_cuda_device_name(0);
    printf("test_cuda_act16: device 0: %s\n", dev);
    if (strstr(dev, "emulator"))
        printf("test_cuda_act16: EMULATED: no GPU ran; the kernels ran on the CPU under tests/cuda_emu.h\n");
    /* host conversions against known values */
    CHECK(fp16_of(65504.0f) == 0x7bff && fp16_of(65520.0f) == 0x7c00 && fp16_of(1.0f) == 0x3c00 &&
          fp16_of(0x1p-24f) == 1 && fp16_val(0x3555) == 0x1.554p-2f && bf16_of(1.0f + 0x1p-8f) == 0x3f80 &&
          bf16_of(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "host 16-bit conversions");
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2;
    ks[0].be = cpu;
    CHECK(cpu->create(&ks[0].st, &o) == LLM_OK, "cpu create");
    {   /* the fp32 mode: alloc_act is fp32 memory, and the fused op matches the CPU */
        void *st = NULL;
        CHECK(cu->create(&st, NULL) == LLM_OK && cu->act_dtype(st) == LLM_DTYPE_F32, "fp32 mode: act_dtype F32");
        if (st) cu->destroy(st);
    }
    run_mode(llm_cuda_backend_bf16(), LLM_DTYPE_BF16);
    run_mode(llm_cuda_backend_fp16(), LLM_DTYPE_F16);
    cpu->destroy(ks[0].st);
#endif
    return TEST_END("test_cuda_act16");
}
