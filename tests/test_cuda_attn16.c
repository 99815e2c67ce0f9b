/* tests/test_cuda_attn16.c: the CUDA backend's 16-bit tensor-core attention (llm_cuda.cu,
 * "16-bit tensor-core attention": attention_fwd / attention_bwd of llm_cuda_backend_bf16
 * and llm_cuda_backend_fp16, one template for both types) against the CPU backend's fp32
 * attention, in each mode the GPU has (bf16: sm_80+, fp16: sm_70+).
 *
 * Shapes: T not a multiple of the 64-row blocks or the key tiles (45, 37, 130), T = 1,
 * T = 64 exactly, HS 16 / 32 / 64 / 128, grouped-query 6:2 and multi-query 4:1, B > 1.
 * Then: HS = 40 (not a multiple of 16) falls back to the fp32 kernels, so it matches the fp32
 * backend's GPU result within 1e-4; and two runs are bit-identical (no atomics). fp16 only:
 * a dO beyond fp16's range (the overflow of a too-large loss scale) gives non-finite
 * gradients, the signal llm_loss_scaler skips a step on, never finite garbage.
 * Under the emulator also the T4's limits (LLM_CUDA_EMU_SM=75: sm_75, 64 KiB of shared
 * memory per block): bf16 is refused, fp16 runs its tensor-core kernels with 2 warps per
 * block at HS 64 (the 4-warp tiles need 70-96 KiB), and at HS 128 the forward on tensor
 * cores, the backward (81 KiB) on the fp32 kernels; the profile says which ran.
 * The backward accumulates into dqkv, so it starts from random values and the test compares
 * the increments, dq, dk and dv each on its own scale.
 *
 * Tolerances, from the format's unit roundoff u (bf16 2^-8: 8 significant bits; fp16 2^-11:
 * 11 bits; a rounding errs by at most u relative, by about u/sqrt(3) ~ 0.58u in standard
 * deviation), written below for bf16 and scaled by u for fp16. fp16's narrow range does not
 * enter: q, k, v, dO are O(1), far inside it, and P, dS below its normal range (6e-5) err by
 * at most 3e-8 absolutely, nothing beside terms of O(1e-2). q and k are uniform
 * in [-2, 2], so the scores s = q.k / sqrt(HS) have a standard deviation ~1.3 (a softmax
 * with clear peaks, where a wrong max or mask shows). A score sums HS products whose two
 * factors were rounded: its error is ~ sqrt(2) 0.58u x RMS(s) ~ 1.1u ~ 4e-3 in standard
 * deviation, and P_ij = exp(s_ij - lse_i) inherits it as a relative error.
 *   - lse, a soft maximum, carries a weighted mean of the score errors: compared
 *     absolutely within 3e-2 (~7 sigma).
 *   - out = sum_j P_ij v_j / l: the score error, P's rounding and v's, ~1.4u ~ 5.4e-3 of
 *     the typical term in standard deviation: relative error <= 4e-2 (~7 sigma: the
 *     largest of ~5e4 values reaches ~4.5 sigma).
 *   - dq, dk, dv add dP = dO . v (error ~1.1u of RMS(dP), like the scores) and the
 *     rounding of dO, dS and q or k: ~1.8u ~ 7e-3; and dS = P (dP - D) subtracts D, a
 *     P-weighted mean of dP, so dP's error is relative to a smaller difference, which
 *     makes the tails heavier than a Gaussian's (~6 sigma seen at these sizes): 6e-2.
 *   - inputs that are bf16 values already (the `bf16 inputs` case): only P and dS are
 *     rounded, ~0.6u for out (tolerance 1.5e-2) and ~u for the gradients (3e-2). This
 *     pins down the fp32 parts (max, sums, lse, D) more tightly than the general case.
 * Relative errors use a floor of 1 x the tensor's RMS: values much smaller than the
 * typical one (cancellations) are compared absolutely. With T = 1 the softmax has one
 * key, so dq and dk are exactly 0 (dP - D cancels completely) and what bf16 leaves there
 * is compared against dv's RMS (dv = dO: the size of one term). A wrong index, mask or
 * scale errs by O(1); the fp32 mode (tests/test_cuda.c) pins the exact math.
 *
 * Built by `make cuda` (nvcc, real GPU; SKIP without one) and by `make test` under
 * tests/cuda_emu.h, which runs the kernels on the CPU (prints EMULATED; the wmma emulation
 * in tests/cuda_emu_wmma.h rounds as a tensor core does up to the summation order). The
 * plain build prints SKIP. */
#define _POSIX_C_SOURCE 200809L   /* setenv, unsetenv */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#ifdef LLM_CUDA

/* Tolerances (see the top) in units of u: relative with a floor of 1 x RMS, lse absolute.
 * For bf16 (u = 2^-8): out 3.9e-2, gradients 5.9e-2, with 16-bit inputs 1.6e-2 and 3.1e-2,
 * lse 3.1e-2. */
#define TOL_OUT 10.0
#define TOL_GRAD 15.0
#define TOL_OUT_EXACT 4.0   /* 16-bit inputs */
#define TOL_GRAD_EXACT 8.0
#define TOL_LSE 8.0

/* One attention case on backend `be`: out, lse, and the increment of dqkv. */
typedef struct {
    float *out, *lse, *dqkv;
} att_result;

static void *dev_put(const llm_backend *be, void *st, const float *h, size_t n) {
    void *d = be->alloc(st, n * sizeof(float));
    CHECK(d != NULL, "%s alloc: %s", be->name, llm_last_error());
    if (d) CHECK(be->upload(st, d, h, n * sizeof(float)) == LLM_OK, "%s upload: %s", be->name, llm_last_error());
    return d;
}
static float *dev_get(const llm_backend *be, void *st, const void *d, size_t n) {
    float *h = (float *)calloc(n, sizeof(float));
    if (!h) { fprintf(stderr, "test_cuda_attn16: out of memory\n"); exit(1); }
    if (d) CHECK(be->download(st, h, d, n * sizeof(float)) == LLM_OK, "%s download: %s", be->name, llm_last_error());
    return h;
}

/* Forward, then backward into dqkv0 (+=); returns the results with dqkv minus dqkv0. */
static att_result run(const llm_backend *be, void *st, const float *qkv, const float *dout, const float *dqkv0,
                      int B, int T, int NH, int NKV, int HS) {
    size_t n3 = (size_t)B * T * (NH + 2 * NKV) * HS, n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T;
    float *Q = (float *)dev_put(be, st, qkv, n3), *D = (float *)dev_put(be, st, dout, n);
    float *G = (float *)dev_put(be, st, dqkv0, n3);
    float *O = (float *)be->alloc(st, n * sizeof(float)), *L = (float *)be->alloc(st, nl * sizeof(float));
    att_result r = {NULL, NULL, NULL};
    if (Q && D && G && O && L) {
        be->attention_fwd(st, O, L, Q, B, T, NH, NKV, HS);
        be->attention_bwd(st, G, D, Q, O, L, B, T, NH, NKV, HS);
        CHECK(be->sync(st) == LLM_OK, "%s attention: %s", be->name, llm_last_error());
    }
    r.out = dev_get(be, st, O, n);
    r.lse = dev_get(be, st, L, nl);
    r.dqkv = dev_get(be, st, G, n3);
    for (size_t i = 0; i < n3; i++) r.dqkv[i] -= dqkv0[i];
    void *bufs[5] = {Q, D, G, O, L};
    for (int i = 0; i < 5; i++)
        if (bufs[i]) be->release(st, bufs[i]);
    return r;
}
static void att_free(att_result *r) { free(r->out); free(r->lse); free(r->dqkv); }

static double rms(const float *x, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return n ? sqrt(ss / (double)n) : 0.0;
}
/* got vs want: max relative error with an absolute floor; prints the number. */
static void cmp_floor(const char *what, const float *got, const float *want, size_t n, double tol, double floor_) {
    if (floor_ < 1e-30) floor_ = 1e-30;
    double e = test_max_rel_err(got, want, n, floor_);
    CHECK(e <= tol, "%s: max rel err %.3g > %.3g (n=%zu)", what, e, tol, n);
    printf("  %-44s n=%-7zu max rel err %.2e (tol %.1e)\n", what, n, e, tol);
}
static void cmp_rms(const char *what, const float *got, const float *want, size_t n, double tol, double frac) {
    cmp_floor(what, got, want, n, tol, frac * rms(want, n));
}
static void cmp_abs(const char *what, const float *got, const float *want, size_t n, double tol) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= e)) e = d;   /* NaN-safe */
    }
    CHECK(e <= tol, "%s: max abs err %.3g > %.3g (n=%zu)", what, e, tol, n);
    printf("  %-44s n=%-7zu max abs err %.2e (tol %.1e)\n", what, n, e, tol);
}
/* dq, dk and dv of dqkv (B, T, (NH+2NKV)*HS) as separate arrays; part 0, 1, 2. */
static float *part(const float *dqkv, int B, int T, int NH, int NKV, int HS, int which, size_t *n) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, w = (size_t)(which == 0 ? NH : NKV) * HS;
    size_t off = which == 0 ? 0 : which == 1 ? (size_t)NH * HS : (size_t)(NH + NKV) * HS;
    *n = (size_t)B * T * w;
    float *p = (float *)malloc(*n * sizeof(float));
    if (!p) { fprintf(stderr, "test_cuda_attn16: out of memory\n"); exit(1); }
    for (size_t bt = 0; bt < (size_t)B * T; bt++) memcpy(p + bt * w, dqkv + bt * row + off, w * sizeof(float));
    return p;
}

typedef struct {
    const llm_backend *be;
    void *st;
    double u;        /* 16-bit modes: the unit roundoff of the type */
    int fp16;
} bk;

/* x rounded to the nearest bf16 (ties to even), as a float: the top 16 bits. */
static float round_bf16(float x) {
    unsigned u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
/* x rounded to the nearest fp16 (ties to even), as a float: 11 significant bits from 2^-14
 * up, multiples of 2^-24 below (subnormals), inf from 65520 (the midpoint of 65504 and 2^16) on. */
static float round_fp16(float x) {
    float a = fabsf(x);
    if (!(a < 65520.0f)) return x != x ? x : copysignf(INFINITY, x);
    int e;
    frexpf(a, &e);                      /* a = f 2^e, f in [0.5, 1) */
    if (e < -13) e = -13;               /* below 2^-14 the spacing stays 2^-24 */
    float ulp = ldexpf(1.0f, e - 11);
    return copysignf(rintf(a / ulp) * ulp, x);
}
/* Random qkv (q, k in [-2, 2], v in [-1, 1]), dout and the initial dqkv; with exact16 (1:
 * bf16, 2: fp16), qkv and dout are values of that type already, so staging them rounds
 * nothing. */
static void inputs(int B, int T, int NH, int NKV, int HS, int exact16, float **qkv, float **dout, float **dqkv0) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, n3 = (size_t)B * T * row, n = (size_t)B * T * NH * HS;
    *qkv = test_rand_floats(n3, 1.0f);
    for (size_t bt = 0; bt < (size_t)B * T; bt++)   /* q and k in [-2, 2]: peaked softmax */
        for (size_t c = 0; c < (size_t)(NH + NKV) * HS; c++) (*qkv)[bt * row + c] *= 2.0f;
    *dout = test_rand_floats(n, 1.0f);
    *dqkv0 = test_rand_floats(n3, 1.0f);
    if (exact16) {
        float (*rnd)(float) = exact16 == 2 ? round_fp16 : round_bf16;
        for (size_t i = 0; i < n3; i++) (*qkv)[i] = rnd((*qkv)[i]);
        for (size_t i = 0; i < n; i++) (*dout)[i] = rnd((*dout)[i]);
    }
}

/* 16-bit GPU vs fp32 CPU on one shape. */
static void t_shape(bk *cpu, bk *g16, int B, int T, int NH, int NKV, int HS, int exact16) {
    float *qkv, *dout, *dqkv0;
    inputs(B, T, NH, NKV, HS, exact16 ? 1 + g16->fp16 : 0, &qkv, &dout, &dqkv0);
    size_t n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T;
    att_result want = run(cpu->be, cpu->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    att_result got = run(g16->be, g16->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    const char *type = g16->fp16 ? "fp16" : "bf16";
    printf("attention %s B=%d T=%d NH=%d NKV=%d HS=%d%s%s\n", type, B, T, NH, NKV, HS, exact16 ? " (16-bit inputs)" : "",
           getenv("LLM_CUDA_EMU_SM") ? " (emulated sm_75)" : "");
    double u = g16->u, tol_out = u * (exact16 ? TOL_OUT_EXACT : TOL_OUT);
    double tol_grad = u * (exact16 ? TOL_GRAD_EXACT : TOL_GRAD);
    cmp_rms("out", got.out, want.out, n, tol_out, 1.0);
    cmp_abs("lse", got.lse, want.lse, nl, u * TOL_LSE);
    static const char *names[3] = {"dq (increment)", "dk (increment)", "dv (increment)"};
    float *a[3], *b[3];
    size_t np[3];
    for (int w = 0; w < 3; w++) {
        a[w] = part(got.dqkv, B, T, NH, NKV, HS, w, &np[w]);
        b[w] = part(want.dqkv, B, T, NH, NKV, HS, w, &np[w]);
    }
    for (int w = 0; w < 3; w++) {
        double floor_ = rms(b[w == 2 || T > 1 ? w : 2], np[w == 2 || T > 1 ? w : 2]);  /* T = 1: dv's */
        cmp_floor(names[w], a[w], b[w], np[w], tol_grad, floor_);
    }
    for (int w = 0; w < 3; w++) { free(a[w]); free(b[w]); }
    att_free(&want);
    att_free(&got);
    free(qkv); free(dout); free(dqkv0);
}

/* HS = 40 is not a multiple of 16: the 16-bit backend runs the fp32 kernels. */
static void t_fallback(bk *g32, bk *g16) {
    const int B = 2, T = 33, NH = 3, NKV = 3, HS = 40;
    float *qkv, *dout, *dqkv0;
    inputs(B, T, NH, NKV, HS, 0, &qkv, &dout, &dqkv0);
    size_t n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T, n3 = (size_t)B * T * (NH + 2 * NKV) * HS;
    att_result a = run(g32->be, g32->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    att_result b = run(g16->be, g16->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    printf("attention HS=40 (fp32 kernels in the %s mode) vs the fp32 mode\n", g16->fp16 ? "fp16" : "bf16");
    cmp_rms("out", b.out, a.out, n, 1e-4, 0.1);
    cmp_rms("lse", b.lse, a.lse, nl, 1e-4, 0.1);
    cmp_rms("dqkv (increment)", b.dqkv, a.dqkv, n3, 1e-4, 0.1);
    att_free(&a);
    att_free(&b);
    free(qkv); free(dout); free(dqkv0);
}

/* The same call twice gives the same bits (every output element has one owner). */
static void t_repeat(bk *g16) {
    const int B = 2, T = 100, NH = 6, NKV = 2, HS = 32;
    float *qkv, *dout, *dqkv0;
    inputs(B, T, NH, NKV, HS, 0, &qkv, &dout, &dqkv0);
    size_t n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T, n3 = (size_t)B * T * (NH + 2 * NKV) * HS;
    att_result a = run(g16->be, g16->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    att_result b = run(g16->be, g16->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    const char *type = g16->fp16 ? "fp16" : "bf16";
    CHECK(memcmp(a.out, b.out, n * sizeof(float)) == 0, "%s attention out: two runs differ", type);
    CHECK(memcmp(a.lse, b.lse, nl * sizeof(float)) == 0, "%s attention lse: two runs differ", type);
    CHECK(memcmp(a.dqkv, b.dqkv, n3 * sizeof(float)) == 0, "%s attention dqkv: two runs differ", type);
    printf("attention %s B=%d T=%d NH=%d NKV=%d HS=%d: two runs bit-identical\n", type, B, T, NH, NKV, HS);
    att_free(&a);
    att_free(&b);
    free(qkv); free(dout); free(dqkv0);
}

/* fp16: a dO of 1e5 (> 65504) is inf once staged; the gradients it reaches must not come
 * out finite (inf or NaN), or a loss scale that overflowed would pass unnoticed. The
 * forward does not read dO: out and lse stay finite. */
static void t_overflow(bk *g16) {
    const int B = 1, T = 20, NH = 2, NKV = 2, HS = 16;
    float *qkv, *dout, *dqkv0;
    inputs(B, T, NH, NKV, HS, 0, &qkv, &dout, &dqkv0);
    size_t n = (size_t)B * T * NH * HS, nl = (size_t)B * NH * T, n3 = (size_t)B * T * (NH + 2 * NKV) * HS;
    dout[5] = 1e5f;   /* row 0 of head 0 */
    att_result r = run(g16->be, g16->st, qkv, dout, dqkv0, B, T, NH, NKV, HS);
    size_t finite_out = 0, bad = 0;
    for (size_t i = 0; i < n; i++) finite_out += isfinite(r.out[i]) != 0;
    for (size_t i = 0; i < nl; i++) finite_out += isfinite(r.lse[i]) != 0;
    for (size_t i = 0; i < n3; i++) bad += !isfinite(r.dqkv[i]);
    CHECK(finite_out == n + nl, "fp16 overflow in dO: the forward stays finite");
    CHECK(bad > 0, "fp16 attention: a dO of 1e5 (over fp16's 65504) left every gradient finite");
    printf("attention fp16 with a dO of 1e5: %zu of %zu gradient values not finite (the loss scaler's signal)\n",
           bad, n3);
    att_free(&r);
    free(qkv); free(dout); free(dqkv0);
}

/* Calls of `name` in a profile table (lines "name   N calls ..."), 0 when absent. */
static long prof_calls(const char *buf, const char *name) {
    size_t len = strlen(name);
    for (const char *p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, len) && p[len] == ' ') return strtol(p + len, NULL, 10);
    return 0;
}

/* The T4's limits, emulated (tests/cuda_emu.h: LLM_CUDA_EMU_SM=75). */
static void t_sm75(bk *cpu) {
    static char buf[8192];
    setenv("LLM_CUDA_EMU_SM", "75", 1);
    setenv("LLM_CUDA_PROFILE", "1", 1);
    llm_options o;
    memset(&o, 0, sizeof o);
    void *st = NULL;
    llm_status s = llm_cuda_backend_bf16()->create(&st, &o);
    CHECK(s == LLM_ERR_UNSUPPORTED && st == NULL && strstr(llm_last_error(), "sm_75") &&
          strstr(llm_last_error(), "fp16"), "sm_75: bf16 refused, fp16 suggested: %s", llm_last_error());
    bk g = {llm_cuda_backend_fp16(), NULL, 0x1p-11, 1};
    CHECK(g.be->create(&g.st, &o) == LLM_OK, "sm_75: fp16 create: %s", llm_last_error());
    if (g.st) {
        llm_cuda_profile(NULL, 0, 1);
        t_shape(cpu, &g, 1, 70, 2, 2, 64, 0);    /* GPT-2's head size: 2 warps per block, all on tensor cores */
        llm_cuda_profile(buf, sizeof buf, 1);
        CHECK(prof_calls(buf, "attention_fwd (fp16)") == 1 && prof_calls(buf, "attention_bwd (dq, fp16)") == 1 &&
              prof_calls(buf, "attention_bwd (dk, dv, fp16)") == 1, "sm_75, HS 64: tensor-core kernels:\n%s", buf);
        t_shape(cpu, &g, 1, 37, 2, 1, 128, 0);   /* forward on tensor cores, backward too big: fp32 */
        llm_cuda_profile(buf, sizeof buf, 1);
        CHECK(prof_calls(buf, "attention_fwd (fp16)") == 1 && prof_calls(buf, "attention_bwd (dq)") == 1 &&
              prof_calls(buf, "attention_bwd (dq, fp16)") == 0, "sm_75, HS 128: fp16 forward, fp32 backward:\n%s",
              buf);
        g.be->destroy(g.st);
    }
    unsetenv("LLM_CUDA_PROFILE");
    unsetenv("LLM_CUDA_EMU_SM");
}

/* Every case in one 16-bit mode, where the GPU has it. */
static void t_mode(bk *cpu, bk *g32, const llm_backend *be, double u, int fp16) {
    bk g16 = {be, NULL, u, fp16};
    llm_options o;
    memset(&o, 0, sizeof o);
    llm_status s = be->create(&g16.st, &o);
    if (s == LLM_ERR_UNSUPPORTED) {   /* bf16 before sm_80, fp16 before sm_70 */
        TEST_SKIP("test_cuda_attn16: the %s backend is unsupported here: %s", be->name, llm_last_error());
        return;
    }
    CHECK(s == LLM_OK, "%s create: %s", be->name, llm_last_error());
    if (!g16.st) return;
    test_seed(20261130);
    t_shape(cpu, &g16, 2, 45, 2, 2, 16, 0);    /* B > 1, T ends mid key tile */
    t_shape(cpu, &g16, 1, 1, 2, 1, 64, 0);     /* T = 1 */
    t_shape(cpu, &g16, 1, 64, 1, 1, 32, 0);    /* exactly one block and one key tile */
    t_shape(cpu, &g16, 1, 130, 6, 2, 64, 0);   /* GQA 6:2, three query blocks, the last of 2 rows */
    t_shape(cpu, &g16, 1, 130, 6, 2, 64, 1);   /* the same with 16-bit inputs */
    t_shape(cpu, &g16, 2, 37, 4, 1, 128, 0);   /* MQA 4:1, the largest head */
    t_fallback(g32, &g16);
    t_repeat(&g16);
    if (fp16) t_overflow(&g16);
    be->destroy(g16.st);
}
#endif /* LLM_CUDA */

int main(void) {
#ifndef LLM_CUDA
    TEST_SKIP("test_cuda_attn16: built without CUDA (`make cuda` builds build/cuda/tests/test_cuda_attn16)");
#else
    if (llm_cuda_device_count() == 0) {
        TEST_SKIP("test_cuda_attn16: no CUDA device");
        return TEST_END("test_cuda_attn16");
    }
    bk cpu = {llm_cpu_backend(), NULL, 0, 0}, g32 = {llm_cuda_backend(), NULL, 0, 0};
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2;
    CHECK(cpu.be->create(&cpu.st, &o) == LLM_OK, "cpu create: %s", llm_last_error());
    memset(&o, 0, sizeof o);
    CHECK(g32.be->create(&g32.st, &o) == LLM_OK, "cuda create: %s", llm_last_error());
    if (cpu.st && g32.st) {
        const char *dev = llm_cuda_device_name(0);
        printf("test_cuda_attn16: device 0: %s; 16-bit attention vs the fp32 CPU\n", dev);
        if (strstr(dev, "emulator"))
            printf("test_cuda_attn16: EMULATED: no GPU ran; the kernels ran on the CPU under tests/cuda_emu.h "
                   "and tests/cuda_emu_wmma.h (checks their logic, not tensor-core rounding or speed)\n");
        t_mode(&cpu, &g32, llm_cuda_backend_bf16(), 0x1p-8, 0);
        t_mode(&cpu, &g32, llm_cuda_backend_fp16(), 0x1p-11, 1);
        if (strstr(dev, "emulator")) t_sm75(&cpu);
    }
    if (cpu.st) cpu.be->destroy(cpu.st);
    if (g32.st) g32.be->destroy(g32.st);
#endif
    return TEST_END("test_cuda_attn16");
}
