/* test_quant: the QUANT section. fp16 conversions against the F16C instructions (an
 * implementation we did not write) and by exhaustive round trips; Q8_0 blocks (error at
 * most d/2 per value, |q| <= 127, ggml's block bytes); the tile layout; the activation
 * quantizer and the Q8_0 / bf16 matmuls on every SIMD level the machine has, bit for bit
 * against the scalar reference (the bf16 kernels with AVX512-BF16 within a tolerance),
 * for odd shapes, with and without bias, on 1 and 2 threads; and the Q8_0 matmul against
 * the exact product of the dequantized weights and activations, within the error bound
 * that the activations' rounding allows. */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "tests/test.h"

static const llm_simd levels[] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512, LLM_SIMD_NEON};

/* ---- fp16 --------------------------------------------------------------------------- */
#ifdef LLM__X86
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
}
#endif

static LLM__UNUSED uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void test_fp16(void) {
    int bad = 0;
    /* every half: half -> float -> half is the identity (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = llm__f16_to_f32((uint16_t)h);
        uint16_t back = llm__f32_to_f16(f);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !(f != f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad++;
    }
    CHECK(bad == 0, "fp16 round trip: %d of 65536 halves changed", bad);
    /* midpoints between neighbouring halves round to the even one */
    bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        double lo = llm__f16_to_f32((uint16_t)h), hi = llm__f16_to_f32((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);   /* exact in float: halves have 11 bits */
        uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (llm__f32_to_f16(mid) != want || llm__f32_to_f16(-mid) != (want | 0x8000)) bad++;
    }
    CHECK(bad == 0, "fp16 ties: %d midpoints not rounded to even", bad);
    CHECK(llm__f32_to_f16(65519.0f) == 0x7bff && llm__f32_to_f16(65520.0f) == 0x7c00, "fp16 overflow threshold");
    CHECK(llm__f32_to_f16(from_bits(0x33000000u)) == 0 && llm__f32_to_f16(from_bits(0x33000001u)) == 1,
          "fp16: 2^-25 rounds to 0, just above it to the smallest subnormal");
#ifdef LLM__X86
    if (!has_f16c()) { TEST_SKIP("fp16 against F16C: this CPU has no F16C"); return; }
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = llm__f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan ? !(a != a && b != b) : bits(a) != bits(b)) bad++;
    }
    CHECK(bad == 0, "f16->f32 differs from vcvtph2ps for %d halves", bad);
    bad = 0;
    test_seed(7);
    for (int i = 0; i < 2000000; i++) {
        /* random bit patterns over the whole float range, and dense near fp16's range */
        uint32_t u = (uint32_t)test_rand_u64();
        if (i & 1) u = (u & 0x80000000u) | (0x30000000u + (u & 0x1fffffffu) % 0x18000000u);
        float f = from_bits(u);
        if (f != f) continue;
        if (llm__f32_to_f16(f) != hw_f32_to_f16(f)) bad++;
    }
    CHECK(bad == 0, "f32->f16 differs from vcvtps2ph (round to nearest even) for %d of 2M floats", bad);
#else
    TEST_SKIP("fp16 against F16C: not an x86 build");
#endif
}

/* ---- Q8_0 blocks -------------------------------------------------------------------- */
static void test_blocks(void) {
    CHECK(sizeof(llm__q8_0) == 34, "block_q8_0 is 34 bytes, got %zu", sizeof(llm__q8_0));
    test_seed(11);
    double worst = 0;
    int badq = 0, bads = 0;
    const float scales[] = {1.0f, 1e-3f, 7.5f, 3e-5f, 1e3f, 2e-7f};
    for (int trial = 0; trial < 3000; trial++) {
        int n = 1 + (int)(test_rand_u64() % 100);
        float s = scales[trial % 6];
        float *x = test_rand_floats((size_t)n, s);
        if (trial % 7 == 0) x[test_rand_u64() % (size_t)n] = 0.0f;
        if (trial % 11 == 0) for (int i = 0; i < n; i++) x[i] = 0.0f;
        int nb = (n + 31) / 32;
        llm__q8_0 *y = (llm__q8_0 *)calloc((size_t)nb, sizeof *y);
        float *back = (float *)calloc((size_t)n, sizeof(float));
        llm__q8_0_quantize(y, x, (size_t)n);
        llm__q8_0_dequantize(back, y, (size_t)n);
        for (int b = 0; b < nb; b++) {
            float amax = 0;
            for (int k = 32 * b; k < n && k < 32 * b + 32; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
            /* the scale: fp16(max|x| / 127), or the first fp16 step above it with
             * max|x| / d < 127.5 (only for subnormal scales) */
            uint16_t d0 = llm__f32_to_f16(amax / 127.0f);
            int normal = (d0 & 0x7c00) != 0;
            if (normal ? y[b].d != d0
                       : (y[b].d < d0 || (amax > 0 && llm__f16_to_f32(y[b].d) * 127.5 <= amax) ||
                          (y[b].d > d0 && llm__f16_to_f32((uint16_t)(y[b].d - 1)) * 127.5 > amax))) bads++;
            float d = llm__f16_to_f32(y[b].d);
            for (int i = 0; i < 32; i++) {
                int k = 32 * b + i;
                if (y[b].qs[i] < -127 || (k >= n && y[b].qs[i] != 0)) badq++;
                if (k >= n) continue;
                /* error in units of d/2 (d == 0 only for an all-zero block) */
                double e = d > 0 ? fabs((double)x[k] - back[k]) / (d / 2.0) : (x[k] == 0 ? 0 : 2);
                if (e > worst) worst = e;
            }
        }
        free(x); free(y); free(back);
    }
    CHECK(bads == 0, "Q8_0 scale is not fp16(max|x| / 127) in %d blocks", bads);
    CHECK(badq == 0, "Q8_0: %d values outside [-127, 127] or non-zero padding", badq);
    CHECK(worst <= 1.0 + 1e-5, "Q8_0 round trip: worst error %.7f x d/2 (must be <= d/2)", worst);
    printf("Q8_0 round trip: worst |x - d q| = %.6f d/2\n", worst);

    /* tiles: rows in and out unchanged, quantizing straight into tiles = per row */
    const int N = 37, K = 100, nb = (K + 31) / 32;
    float *w = test_rand_floats((size_t)N * K, 0.5f);
    unsigned char *T = (unsigned char *)llm__alloc_aligned(llm__q8t_bytes(N, K));
    unsigned char *T2 = (unsigned char *)llm__alloc_aligned(llm__q8t_bytes(N, K));
    llm__q8t_quantize(T, w, N, K);
    memset(T2, 0, llm__q8t_bytes(N, K));
    llm__q8_0 row[4], row2[4];
    float x[100], xr[100];
    int bad = 0;
    for (int r = 0; r < N; r++) {
        llm__q8_0_quantize(row, w + (size_t)r * K, (size_t)K);
        llm__q8t_get_row(row2, T, K, r);
        if (memcmp(row, row2, sizeof row[0] * (size_t)nb) != 0) bad++;
        llm__q8t_put_row(T2, K, r, row);
        llm__q8_0_dequantize(x, row, (size_t)K);
        llm__q8t_row(xr, T, K, r);
        if (memcmp(x, xr, sizeof(float) * (size_t)K) != 0) bad++;
    }
    CHECK(bad == 0, "Q8_0 tiles: %d rows differ from their blocks", bad);
    CHECK(memcmp(T, T2, llm__q8t_bytes(N, K)) == 0, "Q8_0 tiles: put_row differs from quantize");
    CHECK(llm__q8t_bytes(N, K) == (size_t)3 * 4 * 544, "Q8_0 tiles of 37 x 100: 3 tiles x 4 blocks x 544 bytes");
    llm__free_aligned(T); llm__free_aligned(T2); free(w);
}

/* ---- activations ---------------------------------------------------------------------- */
static void test_activations(void) {
    const int Ks[] = {1, 5, 16, 31, 32, 33, 47, 64, 100, 172, 768, 2049};
    test_seed(3);
    for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
        if (!llm_simd_supported(levels[li])) continue;
        llm_simd_force(levels[li]);
        int bad = 0;
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            int K = Ks[ki], nb = (K + 31) / 32;
            float *x = test_rand_floats((size_t)K, ki % 2 ? 3.0f : 0.01f);
            if (K > 40) { for (int k = 32; k < 40; k++) x[k] = 0.0f; }   /* a block with zeros */
            if (K == 64) for (int k = 32; k < 64; k++) x[k] = 0.0f;      /* an all-zero block */
            int8_t *q0 = (int8_t *)calloc((size_t)nb * 32, 1), *q1 = (int8_t *)calloc((size_t)nb * 32, 1);
            float *d0 = (float *)calloc((size_t)nb, 4), *d1 = (float *)calloc((size_t)nb, 4);
            int32_t *s0 = (int32_t *)calloc((size_t)nb, 4), *s1 = (int32_t *)calloc((size_t)nb, 4);
            llm__q8x_row_ref(q0, d0, s0, x, K);
            llm__qmm_job J;
            memset(&J, 0, sizeof J);
            J.M = 1; J.K = K; J.X = x; J.level = llm_simd_active();
            J.x.nb = nb; J.x.q = q1; J.x.d = d1; J.x.s = s1;
            llm__q8x_rows(&J, 0, 1);
            if (memcmp(q0, q1, (size_t)nb * 32) || memcmp(d0, d1, (size_t)nb * 4) || memcmp(s0, s1, (size_t)nb * 4)) bad++;
            int sum_ok = 1;
            for (int b = 0; b < nb; b++) {
                int s = 0;
                for (int k = 0; k < 32; k++) s += q0[32 * b + k];
                sum_ok &= s == s0[b];
            }
            CHECK(sum_ok, "activation block sums wrong (K=%d)", K);
            free(x); free(q0); free(q1); free(d0); free(d1); free(s0); free(s1);
        }
        CHECK(bad == 0, "%s: activation quantizer differs from the reference for %d shapes", llm_simd_name(levels[li]), bad);
    }
    llm_simd_force(LLM_SIMD_AUTO);
}

/* ---- matmuls -------------------------------------------------------------------------- */
/* Every level the machine has against the reference, bit for bit; 1 and 2 threads. */
static void test_matmul(int q8) {
    const int Ms[] = {1, 2, 3, 4, 5, 9};
    const int Ns[] = {1, 16, 17, 40};
    const int Ks[] = {1, 2, 31, 32, 33, 64, 100, 172};
    llm_pool *pools[2] = {llm_pool_create(1), llm_pool_create(2)};
    test_seed(q8 ? 21 : 22);
    for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
        if (!llm_simd_supported(levels[li])) continue;
        llm_simd_force(levels[li]);
        int dp = !q8 && llm__bf16_dp();
        int bad = 0, cases = 0;
        double worst_dp = 0;
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
                for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
                    int M = Ms[mi], N = Ns[ni], K = Ks[ki];
                    float *X = test_rand_floats((size_t)M * K, 1.0f), *w = test_rand_floats((size_t)N * K, 0.1f);
                    float *bias = (ni % 2) ? test_rand_floats((size_t)N, 1.0f) : NULL;
                    size_t wb = q8 ? llm__q8t_bytes(N, K) : llm__bf16t_bytes(N, K);
                    void *W = llm__alloc_aligned(wb);
                    if (q8) llm__q8t_quantize((unsigned char *)W, w, N, K);
                    else llm__bf16t_quantize((uint32_t *)W, w, N, K);
                    float *ref = (float *)calloc((size_t)M * N, 4), *y = (float *)calloc((size_t)M * N, 4);
                    if (!dp) llm__qmm_ref(q8, ref, X, W, bias, M, K, N);
                    else {   /* the reference on x rounded to bf16 */
                        float *Xr = test_dup_floats(X, (size_t)M * K);
                        for (size_t i = 0; i < (size_t)M * K; i++) Xr[i] = llm__bf16_value(Xr[i]);
                        llm__qmm_ref(0, ref, Xr, W, bias, M, K, N);
                        free(Xr);
                    }
                    for (int p = 0; p < 2; p++) {
                        memset(y, 0xff, (size_t)M * N * 4);
                        llm__qmm(pools[p], q8, y, X, W, bias, M, K, N);
                        cases++;
                        if (!dp) { if (memcmp(y, ref, (size_t)M * N * 4) != 0) bad++; }
                        else {
                            /* K products of |w x| <= 0.1 each, added in another order: a few
                             * ulps of their sum */
                            for (size_t i = 0; i < (size_t)M * N; i++) {
                                double e = fabs((double)y[i] - ref[i]) / (0.1 * K * 1.2e-7 * 4 + 1e-30);
                                if (!(e <= worst_dp)) worst_dp = e;
                            }
                        }
                    }
                    llm__free_aligned(W);
                    free(X); free(w); free(bias); free(ref); free(y);
                }
        if (!dp) CHECK(bad == 0, "%s %s matmul: %d of %d cases differ from the reference", q8 ? "Q8_0" : "bf16",
                       llm_simd_name(levels[li]), bad, cases);
        else CHECK(worst_dp <= 1.0, "bf16 (AVX512-BF16) matmul: off the rounded-x reference by %.3g of the bound", worst_dp);
    }
    llm_simd_force(LLM_SIMD_AUTO);
    llm_pool_free(pools[0]); llm_pool_free(pools[1]);
}

/* The Q8_0 matmul against exact arithmetic on the dequantized weights: the only other
 * error is the activations' rounding, |x - dx q| <= dx/2, so
 *     |y - sum_k w~[k] x[k]| <= sum_b (dx[b]/2) sum_{k in b} |w~[k]|  (+ float rounding). */
static void test_q8_semantics(void) {
    const int M = 3, N = 50, K = 300;
    test_seed(5);
    float *X = test_rand_floats((size_t)M * K, 2.0f), *w = test_rand_floats((size_t)N * K, 0.05f);
    unsigned char *W = (unsigned char *)llm__alloc_aligned(llm__q8t_bytes(N, K));
    llm__q8t_quantize(W, w, N, K);
    float *y = (float *)calloc((size_t)M * N, 4), *wd = (float *)calloc((size_t)K, 4);
    llm_pool *pool = llm_pool_create(2);
    llm__qmm(pool, 1, y, X, W, NULL, M, K, N);
    double worst = 0;
    for (int i = 0; i < M; i++) {
        int8_t q[320]; float d[10]; int32_t s[10];
        llm__q8x_row_ref(q, d, s, X + (size_t)i * K, K);
        for (int j = 0; j < N; j++) {
            llm__q8t_row(wd, W, K, j);
            double exact = 0, bound = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                exact += (double)wd[k] * X[(size_t)i * K + k];
                bound += fabs(wd[k]) * d[k / 32] / 2;
                mag += fabs((double)wd[k] * X[(size_t)i * K + k]);
            }
            double e = fabs(y[(size_t)i * N + j] - exact) / (bound + 1e-6 * mag);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst <= 1.0, "Q8_0 matmul outside the activation-rounding bound: %.3f of it", worst);
    printf("Q8_0 matmul vs exact on dequantized weights: worst error %.3f of the bound\n", worst);
    /* bf16: against exact arithmetic on the rounded weights (x exact, or rounded with
     * AVX512-BF16): float rounding only */
    uint32_t *Wb = (uint32_t *)llm__alloc_aligned(llm__bf16t_bytes(N, K));
    llm__bf16t_quantize(Wb, w, N, K);
    llm__qmm(pool, 0, y, X, Wb, NULL, M, K, N);
    worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            llm__bf16t_row(wd, Wb, K, j);
            double exact = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double xv = llm__bf16_dp() ? llm__bf16_value(X[(size_t)i * K + k]) : X[(size_t)i * K + k];
                exact += wd[k] * xv;
                mag += fabs(wd[k] * xv);
            }
            double e = fabs(y[(size_t)i * N + j] - exact) / (mag * 1e-6);
            if (e > worst) worst = e;
        }
    CHECK(worst <= 1.0, "bf16 matmul off exact arithmetic on bf16 weights: %.3f of 1e-6 x sum|w x|", worst);
    llm__free_aligned(Wb);
    llm_pool_free(pool);
    llm__free_aligned(W);
    free(X); free(w); free(y); free(wd);
}

/* A Llama-110M-sized shape: thread counts agree bit for bit, every level agrees. */
static void test_big(void) {
    const int M = 7, N = 2048, K = 768;
    test_seed(9);
    float *X = test_rand_floats((size_t)M * K, 1.0f), *w = test_rand_floats((size_t)N * K, 0.05f);
    unsigned char *W = (unsigned char *)llm__alloc_aligned(llm__q8t_bytes(N, K));
    llm__q8t_quantize(W, w, N, K);
    float *y1 = (float *)calloc((size_t)M * N, 4), *y2 = (float *)calloc((size_t)M * N, 4);
    float *ref = (float *)calloc((size_t)M * N, 4);
    llm_pool *p1 = llm_pool_create(1), *p2 = llm_pool_create(2);
    llm__qmm_ref(1, ref, X, W, NULL, M, K, N);
    for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++) {
        if (!llm_simd_supported(levels[li])) continue;
        llm_simd_force(levels[li]);
        llm__qmm(p1, 1, y1, X, W, NULL, M, K, N);
        llm__qmm(p2, 1, y2, X, W, NULL, M, K, N);
        CHECK(memcmp(y1, ref, (size_t)M * N * 4) == 0 && memcmp(y2, ref, (size_t)M * N * 4) == 0,
              "Q8_0 %d x %d x %d on %s: 1 / 2 threads differ from the reference", M, K, N, llm_simd_name(levels[li]));
    }
    llm_simd_force(LLM_SIMD_AUTO);
    llm_pool_free(p1); llm_pool_free(p2);
    llm__free_aligned(W);
    free(X); free(w); free(y1); free(y2); free(ref);
}

int main(void) {
    printf("SIMD: %s; levels here:", llm_simd_name(llm_simd_active()));
    for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++)
        if (llm_simd_supported(levels[li])) printf(" %s", llm_simd_name(levels[li]));
    printf("; AVX512-BF16 dot: %s\n", llm__bf16_dp() ? "yes" : "no");
    test_fp16();
    test_blocks();
    test_activations();
    test_matmul(1);
    test_matmul(0);
    test_q8_semantics();
    test_big();
    return TEST_END("test_quant");
}
