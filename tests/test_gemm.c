/* tests/test_gemm.c: the SIMD level switch, and llm__sgemm against llm__sgemm_ref on
 * every (transA, transB), beta 0 / 1 / 0.5, odd shapes, padded leading dimensions,
 * every SIMD level this CPU has, and 1, 2, 3 threads; results must be bit-identical
 * run to run and across thread counts, and nothing outside C may be written. The
 * matrix-vector path (M <= 8 with B transposed, M == 1 otherwise): every K tail, rows
 * split over threads, and a batch's rows bit-identical to the same rows alone. */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static unsigned long long rng_state = 88172645463325252ULL;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct { int M, N, K; } shape;

static void test_simd_api(void) {
    llm_simd best = llm_simd_active();
    CHECK(llm_simd_supported(LLM_SIMD_SCALAR), "scalar must be supported");
    CHECK(llm_simd_supported(best), "the active level %s is supported", llm_simd_name(best));
    CHECK(strcmp(llm_simd_name(LLM_SIMD_AVX512), "avx512") == 0, "name");
    CHECK(llm_simd_force(LLM_SIMD_SCALAR) == LLM_OK && llm_simd_active() == LLM_SIMD_SCALAR, "force scalar");
#if defined(__x86_64__)
    CHECK(llm_simd_force(LLM_SIMD_NEON) == LLM_ERR_UNSUPPORTED, "NEON refused on x86");
    CHECK(strstr(llm_last_error(), "neon") != NULL, "message names the level: %s", llm_last_error());
#endif
    CHECK(llm_simd_force((llm_simd)42) == LLM_ERR_ARG, "unknown level refused");
    CHECK(llm_simd_force(LLM_SIMD_AUTO) == LLM_OK && llm_simd_active() == best, "auto restores %s",
          llm_simd_name(best));
    printf("SIMD: best %s; CPU features: %s\n", llm_simd_name(best), llm__cpu_features());
}

/* Batched decode: each row of a batch of M <= 8 rows of X against W^T gets the same
 * bits as that row alone (M == 1), on every level and thread count. */
static void test_gemv_batch(llm_pool **pools) {
    static const shape shapes[] = { {8, 37, 77}, {5, 20, 16}, {8, 3, 1}, {7, 300, 259} };
    llm_simd levels[3] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512};
    for (int s = 0; s < 4; s++) {
        const int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K, ldx = K + 3;
        float *X = (float *)malloc((size_t)M * ldx * sizeof(float)), *W = (float *)malloc((size_t)N * K * sizeof(float));
        float *Y = (float *)malloc((size_t)M * N * sizeof(float)), *y = (float *)malloc((size_t)N * sizeof(float));
        for (int i = 0; i < M * ldx; i++) X[i] = frand();
        for (int i = 0; i < N * K; i++) W[i] = frand();
        for (int l = 0; l < 3; l++) {
            if (!llm_simd_supported(levels[l])) continue;
            llm_simd_force(levels[l]);
            for (int t = 0; t < 3; t++)
                for (int m = 1; m <= M; m++) {
                    llm__sgemm(pools[t], 0, 1, m, N, K, X, ldx, W, K, 0.0f, Y, N);
                    int same = 1;
                    for (int i = 0; i < m; i++) {
                        llm__sgemm(pools[0], 0, 1, 1, N, K, X + (size_t)i * ldx, ldx, W, K, 0.0f, y, N);
                        if (memcmp(y, Y + (size_t)i * N, (size_t)N * sizeof(float)) != 0) same = 0;
                    }
                    CHECK(same, "%s %d threads: rows of a batch of %d (N %d, K %d) differ from the rows alone",
                          llm_simd_name(levels[l]), t + 1, m, N, K);
                }
        }
        free(X); free(W); free(Y); free(y);
    }
    llm_simd_force(LLM_SIMD_AUTO);
}

int main(void) {
    test_simd_api();
    static const shape shapes[] = {
        {1, 1, 1}, {7, 13, 5}, {33, 65, 17}, {1, 100, 37}, {64, 64, 64}, {13, 1, 40},
#if !LLM_TEST_SAN
        {1, 2304, 768}, {127, 300, 259}, {256, 97, 1000}, {50, 700, 300}, {1, 33, 2100},
        /* the matrix-vector path: K tails of every length, a few rows of X (M <= 8), and
         * enough of W (>= 256 KB) to be split over threads, in ragged units */
        {1, 300, 259}, {5, 300, 259}, {8, 301, 250}, {1, 2100, 40}, {3, 70, 1025},
#endif
        {1, 9, 15}, {1, 9, 16}, {1, 9, 17}, {1, 5, 31}, {1, 5, 33}, {2, 11, 7}, {3, 17, 45},
        {4, 6, 64}, {6, 23, 19}, {7, 5, 100}, {8, 9, 48}, {9, 10, 20},
    };
    const int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    const float betas[3] = {0.0f, 1.0f, 0.5f};
    llm_simd levels[3] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512};
    llm_pool *pools[3];
    for (int t = 0; t < 3; t++) pools[t] = llm_pool_create(t + 1);
    CHECK(pools[0] && pools[1] && pools[2], "pools: %s", llm_last_error());
    if (!pools[0] || !pools[1] || !pools[2]) return TEST_END("test_gemm");
    for (int l = 0; l < 3; l++)
        if (!llm_simd_supported(levels[l])) TEST_SKIP("SIMD level %s: not on this CPU", llm_simd_name(levels[l]));

    int cases = 0;
    for (int s = 0; s < nshapes; s++) {
        const int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        const int pad = s % 3 == 1 ? 0 : 3 + s;   /* leading dimensions larger than needed */
        for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
        for (int bi = 0; bi < 3; bi++) {
            const float beta = betas[bi];
            int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
            int lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
            size_t na = (size_t)arows * lda, nb = (size_t)brows * ldb, nc = (size_t)M * ldc;
            float *A = (float *)malloc(na * sizeof(float)), *B = (float *)malloc(nb * sizeof(float));
            float *C0 = (float *)malloc(nc * sizeof(float)), *R = (float *)malloc(nc * sizeof(float));
            float *C = (float *)malloc(nc * sizeof(float)), *C1 = (float *)malloc(nc * sizeof(float));
            for (size_t i = 0; i < na; i++) A[i] = frand();
            for (size_t i = 0; i < nb; i++) B[i] = frand();
            for (size_t i = 0; i < nc; i++) {   /* beta 0 must ignore even NaN; padding is a sentinel */
                int in_c = (int)(i % ldc) < N;
                C0[i] = !in_c ? 12345.0f : beta == 0.0f ? NAN : frand();
            }
            memcpy(R, C0, nc * sizeof(float));
            llm__sgemm_ref(ta, tb, M, N, K, A, lda, B, ldb, beta, R, ldc);
            double scale = 1e-30;
            for (size_t i = 0; i < nc; i++) if ((int)(i % ldc) < N && fabs(R[i]) > scale) scale = fabs(R[i]);
            for (int l = 0; l < 3; l++) {
                if (!llm_simd_supported(levels[l])) continue;
                llm_simd_force(levels[l]);
                for (int t = 0; t < 3; t++) {
                    memcpy(C, C0, nc * sizeof(float));
                    llm__sgemm(pools[t], ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
                    double worst = 0;
                    int sentinel_ok = 1;
                    for (size_t i = 0; i < nc; i++) {
                        if ((int)(i % ldc) >= N) { if (C[i] != 12345.0f) sentinel_ok = 0; continue; }
                        double d = fabs((double)C[i] - (double)R[i]);
                        if (!(d <= worst)) worst = d;
                    }
                    double tol = 1e-5 * sqrt((double)K) * scale;
                    CHECK(worst <= tol, "%s %d threads (%d,%d,%d) tA=%d tB=%d beta=%g: err %g > %g",
                          llm_simd_name(levels[l]), t + 1, M, N, K, ta, tb, beta, worst, tol);
                    CHECK(sentinel_ok, "%s (%d,%d,%d): wrote outside C", llm_simd_name(levels[l]), M, N, K);
                    if (t == 0) {
                        memcpy(C1, C, nc * sizeof(float));
                        memcpy(C, C0, nc * sizeof(float));   /* same threads again: same bits */
                        llm__sgemm(pools[0], ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
                    }
                    CHECK(memcmp(C, C1, nc * sizeof(float)) == 0,
                          "%s (%d,%d,%d) tA=%d tB=%d: %d threads not bit-identical to 1 thread",
                          llm_simd_name(levels[l]), M, N, K, ta, tb, t + 1);
                    cases++;
                }
            }
            free(A); free(B); free(C0); free(R); free(C); free(C1);
        }
    }
    llm_simd_force(LLM_SIMD_AUTO);
    printf("%d sgemm cases checked\n", cases);
    test_gemv_batch(pools);
    for (int t = 0; t < 3; t++) llm_pool_free(pools[t]);
    return TEST_END("test_gemm");
}
