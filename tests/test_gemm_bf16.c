/* tests/test_gemm_bf16.c: the bf16 GEMM (llm__sgemm_bf16: bf16 operands, fp32 sums).
 *
 * 1. llm__bf16_round on hand-picked values: ties to even, carries, overflow to inf,
 *    NaN kept, denormals to signed zero.
 * 2. The AVX512-BF16 packs against the scalar reference packs, bit for bit, on random
 *    bit patterns (NaN, inf, denormals, ties), odd kc, ragged rows and columns.
 * 3. llm__sgemm_bf16 against llm__sgemm_bf16_ref on odd shapes, all (transA, transB),
 *    beta 0 / 1 / 0.5, padded leading dimensions, 1-3 threads (M = 1 with B
 *    transposed takes the matrix-vector path, the rest the packed GEMM). Both use the same bf16
 *    operands, whose products are exact in fp32, so they differ only in the order of
 *    the fp32 sum. Each result is within gamma_n * S of the exact sum of those
 *    products, S = sum_k |a~ b~| + |beta c|, gamma_n = n u/(1 - n u), u = 2^-24, n the
 *    number of roundings on the way: K - 1 for the reference; for the fast path at most
 *    two per pair of k (vdpbf16ps adds two products), one per K block and one for beta.
 *    So |fast - ref| <= (2K + 8) 2^-24 S per element (the rigorous bound; random data
 *    is ~sqrt(K) times better), plus 1e-30 for vdpbf16ps's flushing of denormal sums.
 *    ARM's BFDOT rounds both of its additions to odd, with an error up to 2^-23 (twice
 *    that of rounding to nearest): its K roundings count as 2K, and the bound is
 *    (3K + 8) 2^-24 S there (qemu emulates BFDOT as the architecture defines it).
 *    The result must also be bit-identical across thread counts and leave everything
 *    outside C untouched.
 * 4. llm__sgemm_bf16 against fp32 llm__sgemm: the bf16 rounding error. Rigorously
 *    |a~ b~ - a b| <= (2u + u^2)|a b| with u = 2^-8, so |bf16 - fp32| <= (2^-7 + 2^-16 +
 *    fp32 terms) sum_k |a b|. Statistically: rounding x to bf16 moves it by an error
 *    uniform over an ulp, 2^-7 x 2^e for x in [2^e, 2^(e+1)), of variance ulp^2/12;
 *    for x uniform in that binade E[x^2] = (7/3) 4^e, so E[(x~ - x)^2] / E[x^2] =
 *    2^-14/28. A product gets that from both operands, and the errors are independent
 *    over k, so E[(bf16 - fp32)^2] = 2^-14/14 sum_k (a b)^2: the error divided by
 *    sqrt(sum_k (a b)^2) has rms 2^-7/sqrt(14) = 2.09e-3 (checked within 10%). In units
 *    of a typical product that is 2^-7 sqrt(K/14), about 2^-8 sqrt(K); relative to
 *    rms(C) (sqrt(K) products for zero-mean data) about 2e-3 whatever K is.
 * 5. NaN in A reaches its row of C; without bf16 (AVX2 or scalar forced, or a CPU without
 *    it) the bf16 path is the fp32 sgemm.
 * On x86 the bf16 cases need AVX512-BF16, on ARM64 the BF16 extension (ARMv8.6: BFDOT,
 * found through getauxval/sysctl); they print SKIP on CPUs without. */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

/* Random numbers: tests/test.h's xorshift (test_rand_u64; test_frand uniform in [-1, 1)). */
static float fbits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bitsf(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

#ifdef LLM__X86
/* A float drawn to hit the edge cases of rounding: NaNs, infs, denormals, exact ties,
 * values just off a tie, the largest floats, and ordinary numbers. */
static float fspecial(void) {
    unsigned long long r = test_rand_u64();
    uint32_t sign = (uint32_t)(r >> 63) << 31, hi = (uint32_t)(r >> 16) & 0x7fff0000u;
    switch (r % 10) {
    case 0: return fbits(sign | 0x7f800000u | ((uint32_t)(r >> 20) & 0x7fffffu) | 1u);   /* NaN */
    case 1: return fbits(sign | 0x7f800000u);                                            /* inf */
    case 2: return fbits(sign | ((uint32_t)(r >> 24) & 0x7fffffu));                       /* denormal */
    case 3: return fbits(sign | hi | 0x8000u);                                           /* tie */
    case 4: return fbits(sign | hi | 0x8000u | ((uint32_t)(r >> 40) & 1u ? 1u : 0xffffu)); /* next to a tie */
    case 5: return fbits(sign | 0x7f7f0000u | ((uint32_t)(r >> 20) & 0xffffu));           /* near FLT_MAX */
    default: return test_frand() * 8.0f;
    }
}
#endif

static void test_round(void) {
    static const struct { uint32_t in; uint16_t out; const char *what; } cases[] = {
        {0x3f800000u, 0x3f80, "1"},
        {0x3f808000u, 0x3f80, "1 + 2^-8: tie, to even (down)"},
        {0x3f818000u, 0x3f82, "1 + 3 2^-8: tie, to even (up)"},
        {0x3f808001u, 0x3f81, "just above a tie: up"},
        {0x3f807fffu, 0x3f80, "just below a tie: down"},
        {0x3fffffffu, 0x4000, "carry into the exponent"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds to inf"},
        {0xff800000u, 0xff80, "-inf"},
        {0x80000000u, 0x8000, "-0"},
        {0x00000001u, 0x0000, "smallest denormal: zero"},
        {0x807fffffu, 0x8000, "largest negative denormal: -0"},
        {0x00800000u, 0x0080, "smallest normal"},
        {0x7fc00000u, 0x7fc0, "quiet NaN"},
        {0xffc12345u, 0xffc1, "negative NaN with payload"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = llm__bf16_round(fbits(cases[i].in));
        CHECK(got == cases[i].out, "round(0x%08x) = 0x%04x, want 0x%04x (%s)", cases[i].in, got,
              cases[i].out, cases[i].what);
    }
    /* a signalling NaN (only a low payload bit) must not turn into inf */
    uint16_t s = llm__bf16_round(fbits(0x7f800001u));
    CHECK((s & 0x7f80) == 0x7f80 && (s & 0x7f) != 0, "signalling NaN stays NaN: 0x%04x", s);
    /* the value never moves by more than half an ulp (2^-8 relative) */
    double worst = 0;
    for (int i = 0; i < 100000; i++) {
        float x = test_frand() * 1000.0f;
        if (x == 0.0f) continue;
        double e = fabs((double)llm__bf16_value(x) - x) / fabs(x);
        if (e > worst) worst = e;
    }
    CHECK(worst <= 1.0 / 256, "rounding error %.3g > 2^-8", worst);
}

#ifdef LLM__X86
static void test_packs(void) {
    static const int kcs[] = {1, 2, 3, 16, 31, 32, 33, 64, 77};
    for (int wi = 0; wi < 2; wi++) {
        const int w = wi ? LLM__BF16_NR : LLM__BF16_MR;
        for (size_t ki = 0; ki < sizeof kcs / sizeof kcs[0]; ki++) {
            const int kc = kcs[ki], kp = (kc + 1) / 2;
            const int n = w * 2 + 5;   /* three slivers, the last ragged */
            const size_t ld = (size_t)n + 3;
            float *src = (float *)malloc(sizeof(float) * ld * (size_t)(kc > n ? kc : n) * 2);
            size_t words = (size_t)kp * ((n + w - 1) / w) * w;
            uint32_t *r = (uint32_t *)malloc(words * 4), *v = (uint32_t *)malloc(words * 4);
            for (size_t i = 0; i < ld * (size_t)(kc > n ? kc : n) * 2; i++) src[i] = fspecial();
            /* k-major (pack_n): kc rows of ld */
            memset(r, 0xAB, words * 4); memset(v, 0xCD, words * 4);
            llm__bf16_pack_n_ref(r, w, src, ld, n, kc);
            llm__bf16_pack_n_avx512(v, w, src, ld, n, kc);
            CHECK(memcmp(r, v, words * 4) == 0, "pack_n w=%d kc=%d: vector pack differs from reference", w, kc);
            /* rows along k (pack_t): every row count up to w */
            for (int nrows = 1; nrows <= w; nrows += (nrows < 3 ? 1 : 5)) {
                size_t sw = (size_t)kp * w;
                memset(r, 0xAB, sw * 4); memset(v, 0xCD, sw * 4);
                llm__bf16_pack_t_ref(r, w, src, (size_t)kc + 2, nrows, kc);
                llm__bf16_pack_t_avx512(v, w, src, (size_t)kc + 2, nrows, kc);
                int same = memcmp(r, v, sw * 4) == 0;
                CHECK(same, "pack_t w=%d kc=%d nrows=%d: vector pack differs from reference", w, kc, nrows);
                if (!same) for (size_t i = 0; i < sw; i++) if (r[i] != v[i]) {
                    fprintf(stderr, "  word %zu: ref 0x%08x vec 0x%08x\n", i, r[i], v[i]); break; }
            }
            free(src); free(r); free(v);
        }
    }
}
#endif

typedef struct { int M, N, K; } shape;
#ifdef LLM__NEON
#define BFDOT_ROUNDINGS 3.0   /* per k, in units of 2^-24: the reference's 1 and BFDOT's 2 */
#else
#define BFDOT_ROUNDINGS 2.0   /* the reference's 1 and vdpbf16ps's 1 */
#endif

/* sum_k |a~ b~| (or |a b| with raw = 1) for C[i][j], in double */
static double abs_sum(int ta, int tb, int i, int j, int K, const float *A, int lda, const float *B,
                      int ldb, int raw) {
    double s = 0;
    for (int k = 0; k < K; k++) {
        float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
        float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
        if (!raw) { a = llm__bf16_value(a); b = llm__bf16_value(b); }
        s += fabs((double)a * b);
    }
    return s;
}

static void test_vs_ref(llm_pool **pools) {
    static const shape shapes[] = {
        {1, 1, 1}, {7, 13, 5}, {12, 32, 2}, {33, 65, 17}, {1, 100, 37}, {13, 1, 40}, {64, 64, 64},
#if !LLM_TEST_SAN
        {25, 97, 513}, {127, 300, 259}, {50, 700, 300}, {1, 33, 1100}, {200, 70, 1025}, {1, 2303, 301},
#endif
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const float betas[3] = {0.0f, 1.0f, 0.5f};
    int cases = 0;
    double worst_ratio = 0;
    for (int s = 0; s < nshapes; s++) {
        const int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        const int pad = s % 3 == 1 ? 0 : 3 + s;
        for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
        for (int bi = 0; bi < 3; bi++) {
            const float beta = betas[bi];
            int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
            int lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
            size_t na = (size_t)arows * lda, nb = (size_t)brows * ldb, nc = (size_t)M * ldc;
            float *A = (float *)malloc(na * 4), *B = (float *)malloc(nb * 4);
            float *C0 = (float *)malloc(nc * 4), *R = (float *)malloc(nc * 4);
            float *C = (float *)malloc(nc * 4), *C1 = (float *)malloc(nc * 4);
            for (size_t i = 0; i < na; i++) A[i] = test_frand();
            for (size_t i = 0; i < nb; i++) B[i] = test_frand();
            for (size_t i = 0; i < nc; i++) {   /* beta 0 ignores even NaN; padding is a sentinel */
                int in_c = (int)(i % ldc) < N;
                C0[i] = !in_c ? 12345.0f : beta == 0.0f ? NAN : test_frand();
            }
            memcpy(R, C0, nc * 4);
            llm__sgemm_bf16_ref(ta, tb, M, N, K, A, lda, B, ldb, beta, R, ldc);
            for (int t = 0; t < 3; t++) {
                memcpy(C, C0, nc * 4);
                llm__sgemm_bf16(pools[t], ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
                if (t == 0) {
                    int bad = 0, pad_ok = 1;
                    for (int i = 0; i < M && !bad; i++)
                        for (int j = 0; j < ldc; j++) {
                            size_t x = (size_t)i * ldc + j;
                            if (j >= N) { if (bitsf(C[x]) != bitsf(12345.0f)) pad_ok = 0; continue; }
                            double S = abs_sum(ta, tb, i, j, K, A, lda, B, ldb, 0) +
                                       (beta != 0.0f ? fabs((double)beta * C0[x]) : 0.0);
                            double tol = (BFDOT_ROUNDINGS * K + 8) * ldexp(1.0, -24) * S + 1e-30;
                            double d = fabs((double)C[x] - R[x]);
                            if (!(d <= tol)) {
                                bad = 1;
                                CHECK(0, "bf16 vs ref (%d,%d,%d) ta=%d tb=%d beta=%g: C[%d][%d] = %.9g, ref %.9g, "
                                      "diff %.3g > bound %.3g", M, N, K, ta, tb, beta, i, j, C[x], R[x], d, tol);
                                break;
                            }
                            if (tol > 1e-29 && d / tol > worst_ratio) worst_ratio = d / tol;
                        }
                    if (!bad) CHECK(1, "ok");
                    CHECK(pad_ok, "(%d,%d,%d) ta=%d tb=%d: wrote outside C", M, N, K, ta, tb);
                    memcpy(C1, C, nc * 4);
                } else {
                    CHECK(memcmp(C, C1, nc * 4) == 0, "(%d,%d,%d) ta=%d tb=%d beta=%g: %d threads differ from 1",
                          M, N, K, ta, tb, beta, t + 1);
                }
            }
            cases++;
            free(A); free(B); free(C0); free(R); free(C); free(C1);
        }
    }
    printf("bf16 vs reference: %d cases x 3 thread counts; worst |diff| / bound = %.3g\n", cases, worst_ratio);
}

/* The cost of bf16: against fp32 sgemm on the training layouts. */
static void test_vs_fp32(llm_pool *pool) {
#if LLM_TEST_SAN
    static const shape shapes[] = {{48, 64, 96}};
#else
    static const shape shapes[] = {{96, 128, 768}, {64, 96, 3072}};
#endif
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        for (int layout = 0; layout < 3; layout++) {   /* fwd (0,1), dX (0,0), dW (1,0) */
            int ta = layout == 2, tb = layout == 0;
            int lda = ta ? M : K, ldb = tb ? K : N;
            float *A = (float *)malloc((size_t)M * K * 4), *B = (float *)malloc((size_t)K * N * 4);
            float *C = (float *)malloc((size_t)M * N * 4), *F = (float *)malloc((size_t)M * N * 4);
            for (size_t i = 0; i < (size_t)M * K; i++) A[i] = test_frand();
            for (size_t i = 0; i < (size_t)K * N; i++) B[i] = test_frand();
            llm__sgemm_bf16(pool, ta, tb, M, N, K, A, lda, B, ldb, 0.0f, C, N);
            llm__sgemm(pool, ta, tb, M, N, K, A, lda, B, ldb, 0.0f, F, N);
            double e2 = 0, d2 = 0, c2 = 0, worst_bound = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double q = 0;   /* sum_k (a b)^2 */
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                        double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                        q += a * b * a * b;
                    }
                    double d = (double)C[(size_t)i * N + j] - F[(size_t)i * N + j];
                    double S = abs_sum(ta, tb, i, j, K, A, lda, B, ldb, 1);
                    double bound = (ldexp(1.0, -7) + ldexp(1.0, -16) + (4.0 * K + 8) * ldexp(1.0, -24)) * S;
                    if (fabs(d) / bound > worst_bound) worst_bound = fabs(d) / bound;
                    e2 += d * d / q;
                    double c = F[(size_t)i * N + j];
                    d2 += d * d; c2 += c * c;
                }
            double rms = sqrt(e2 / ((double)M * N)), expect = ldexp(1.0, -7) / sqrt(14.0);
            printf("bf16 vs fp32 (%d,%d,%d) %s: error / sqrt(sum (ab)^2) rms %.3e (expected %.3e), "
                   "rms error / rms C %.2e, worst |diff| / rigorous bound %.3f\n", M, N, K,
                   layout == 0 ? "fwd" : layout == 1 ? "dX" : "dW", rms, expect, sqrt(d2 / c2), worst_bound);
            CHECK(worst_bound <= 1.0, "bf16 error over the rigorous bound: %.3f", worst_bound);
            CHECK(rms > 0.9 * expect && rms < 1.1 * expect, "bf16 error rms %.3e, expected %.3e +- 10%%", rms, expect);
            free(A); free(B); free(C); free(F);
        }
    }
}

static void test_special(llm_pool *pool) {
    const int M = 20, N = 40, K = 33;
    float *A = (float *)malloc(M * K * 4), *B = (float *)malloc(K * N * 4), *C = (float *)malloc(M * N * 4);
    for (int i = 0; i < M * K; i++) A[i] = test_frand();
    for (int i = 0; i < K * N; i++) B[i] = test_frand();
    A[5 * K + 32] = NAN;   /* row 5, the last (odd) k */
    llm__sgemm_bf16(pool, 0, 0, M, N, K, A, K, B, N, 0.0f, C, N);
    int row_nan = 1, others_finite = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            if (i == 5) row_nan &= isnan(C[i * N + j]) != 0;
            else others_finite &= isfinite(C[i * N + j]) != 0;
        }
    CHECK(row_nan, "NaN in A row 5 must make C row 5 NaN");
    CHECK(others_finite, "the other rows stay finite");
    free(A); free(B); free(C);
}

/* Without bf16 the bf16 GEMM is the fp32 one, bit for bit: at a level below the bf16 one
 * (x86: AVX2; ARM64: scalar), and at the best level on a CPU without bf16 (qemu's
 * cortex-a72 in make test-arm: the binary must run there, and in fp32). */
static void test_fallback(llm_pool *pool) {
    const int M = 30, N = 50, K = 70;
    float *A = (float *)malloc(M * K * 4), *B = (float *)malloc(K * N * 4);
    float *C = (float *)malloc(M * N * 4), *F = (float *)malloc(M * N * 4);
    for (int i = 0; i < M * K; i++) A[i] = test_frand();
    for (int i = 0; i < K * N; i++) B[i] = test_frand();
#ifdef LLM__X86
    const llm_simd below = LLM_SIMD_AVX2;
#else
    const llm_simd below = LLM_SIMD_SCALAR;
#endif
    for (int pass = 0; pass < 2; pass++) {
        const llm_simd level = pass == 0 ? below : LLM_SIMD_AUTO;
        if (!llm_simd_supported(level)) { TEST_SKIP("fallback: no %s to force", llm_simd_name(level)); continue; }
        llm_simd_force(level);
        if (pass == 1 && llm__has_bf16()) continue;   /* this CPU has bf16: tested below */
        CHECK(!llm__has_bf16(), "no bf16 at the %s level", llm_simd_name(llm_simd_active()));
        for (int m = 1; m <= M; m += M - 1) {   /* the matrix-vector path and the packed GEMM */
            llm__sgemm_bf16(pool, 0, 1, m, N, K, A, K, B, K, 0.0f, C, N);
            llm__sgemm(pool, 0, 1, m, N, K, A, K, B, K, 0.0f, F, N);
            CHECK(memcmp(C, F, (size_t)m * N * 4) == 0, "%s, M=%d: bf16 GEMM must be the fp32 one",
                  llm_simd_name(llm_simd_active()), m);
        }
    }
    llm_simd_force(LLM_SIMD_AUTO);
    free(A); free(B); free(C); free(F);
}

int main(void) {
    test_round();
    llm_pool *pools[3];
    for (int t = 0; t < 3; t++) pools[t] = llm_pool_create(t + 1);
    CHECK(pools[0] && pools[1] && pools[2], "pools: %s", llm_last_error());
    if (!pools[0] || !pools[1] || !pools[2]) return TEST_END("test_gemm_bf16");
    test_fallback(pools[1]);
    printf("CPU features: %s; bf16 GEMM active: %d\n", llm__cpu_features(), llm__has_bf16());
    if (!llm__has_bf16()) {
        TEST_SKIP("bf16 GEMM: this CPU (or the forced SIMD level) has no AVX512-BF16 or ARM BF16");
    } else {
#ifdef LLM__X86
        test_packs();
#endif
        test_vs_ref(pools);
        test_vs_fp32(pools[1]);
        test_special(pools[1]);
    }
    for (int t = 0; t < 3; t++) llm_pool_free(pools[t]);
    return TEST_END("test_gemm_bf16");
}
