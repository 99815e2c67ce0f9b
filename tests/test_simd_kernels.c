/* tests/test_simd_kernels.c: every llm__<op>_fast dispatcher against its reference
 * kernel, at every SIMD level this CPU has (scalar, AVX2, AVX-512, NEON), on odd shapes
 * (lengths not multiples of 8 or 16; HS 16, 40, 64, 128; fewer key/value heads than
 * query heads), plus special values: very negative logits, ignored targets (-100),
 * large |x| for GELU, and the vector exp against exp() in double over its whole range.
 * Each result must be deterministic (the same inputs twice give the same bits).
 *
 * Tolerances (relative, with an absolute floor where values can be near 0):
 *   - exp: <= 2 ulp of the correctly rounded value (measured: see the printout).
 *   - layernorm and attention reorder fp32 sums, and the reference's own sequential
 *     sums are off by up to ~1e-5 (a mean over 768 values near 3, say). So both are
 *     measured against the same math in double, and the fast kernel must be within
 *     max(2e-5, 3 x the reference's error) of it (it is usually closer than the
 *     reference); floors 1e-2 (outputs of size ~1) and
 *     1e-1 for attention gradients (size ~1, sums of T·HS products).
 *   - cross-entropy: 1e-5 relative to the reference (floor 1e-3 for losses, 1e-4 for
 *     probabilities, which sum to dloss per row).
 *   - GELU: |fast - ref| <= 2e-6·max(1, |ref|): the reference's 0.5·(1 + tanh u) has an
 *     absolute error of ~6e-8 where it cancels (x << 0), the vector path does not.
 *   - RMSNorm, SwiGLU: 1e-5 relative to the reference (floors 1e-2 / 1e-1 for gradients).
 *   - residual and AdamW: exact (same operations); sumsq: 1e-12 relative (double). */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

/* Random buffers from tests/test.h's generator (short names: they fill the lines below). */
static float *rnd(size_t n, float scale) { return test_rand_floats(n, scale); }
static float *dupf(const float *a, size_t n) { return test_dup_floats(a, n); }
/* max |a-b| / max(|b|, floor) */
#define ERR(a, b, n, fl) test_max_rel_err((a), (b), (n), (fl))

static const char *lvl_name;

/* The vector exp over arrays, from functions compiled for the level (the test itself
 * is built for plain x86-64 or ARMv8). n a multiple of 16. */
#ifdef LLM__X86
LLM__T_AVX512 static void exp_array_avx512(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, llm__exp_avx512(_mm512_loadu_ps(x + i)));
}
LLM__T_AVX2 static void exp_array_avx2(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(y + i, llm__exp_avx2(_mm256_loadu_ps(x + i)));
}
#endif
#ifdef LLM__NEON
static void exp_array_neon(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 4) vst1q_f32(y + i, llm__exp_neon(vld1q_f32(x + i)));
}
#endif
static int exp_array(llm_simd lvl, float *y, const float *x, int n) {
#ifdef LLM__X86
    if (lvl == LLM_SIMD_AVX512) { exp_array_avx512(y, x, n); return 1; }
    if (lvl == LLM_SIMD_AVX2) { exp_array_avx2(y, x, n); return 1; }
#endif
#ifdef LLM__NEON
    if (lvl == LLM_SIMD_NEON) { exp_array_neon(y, x, n); return 1; }
#endif
    (void)lvl; (void)y; (void)x; (void)n;
    return 0;
}

static void test_exp(llm_simd lvl) {
    {
    /* Sweep [-104, 89] plus the special values; compare with exp() in double. */
    enum { M = 16 * 4096 };
    static float x[M], y[M];
    for (int i = 0; i < M; i++) x[i] = -104.0f + 193.0f * (float)i / (float)M;
    x[0] = -INFINITY; x[1] = INFINITY; x[2] = -1e30f; x[3] = 1e30f; x[4] = 0.0f; x[5] = -0.0f;
    x[6] = 88.72f; x[7] = 88.73f; x[8] = -87.0f; x[9] = -103.0f; x[10] = NAN; x[11] = 1e-10f;
    if (!exp_array(lvl, y, x, M)) return;
    double worst = 0; int bad = 0;
    for (int i = 0; i < M; i++) {
        if (i == 10) { CHECK(y[i] != y[i], "%s exp(NaN) is NaN", lvl_name); continue; }
        double e = exp((double)x[i]);
        if (e > FLT_MAX) { if (!(y[i] == INFINITY)) bad++; continue; }
        if (e < FLT_MIN) { if (fabs(y[i] - e) > 1.5e-45) bad++; continue; }   /* denormal: 1 ulp there */
        float ef = (float)e;
        double ulp = nextafterf(ef, INFINITY) - ef;
        double u = fabs(y[i] - e) / ulp;
        if (u > worst) worst = u;
    }
    CHECK(bad == 0, "%s exp: %d special values wrong", lvl_name, bad);
    CHECK(worst <= 2.0, "%s exp: %.2f ulp", lvl_name, worst);
    CHECK(y[0] == 0.0f && y[2] == 0.0f && y[1] == INFINITY && y[3] == INFINITY && y[4] == 1.0f && y[5] == 1.0f,
          "%s exp special: %g %g %g %g %g", lvl_name, y[0], y[2], y[1], y[3], y[4]);
    printf("  %s exp: max %.2f ulp over [-104, 89]\n", lvl_name, worst);
    }
}

/* Error of a float result against a double truth: max |a-t| / max(|t|, floor). */
static double derr(const float *a, const double *t, size_t n, double fl) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - t[i]), sc = fabs(t[i]) > fl ? fabs(t[i]) : fl;
        if (!(d / sc <= worst)) worst = d / sc;
    }
    return worst;
}
/* Where fp32 sums are reordered, the fast kernel is held to the exact (double) result:
 * no worse than 3x the reference's own error there, or 2e-5, whichever is larger (the
 * reference's sequential fp32 sums are off by ~1e-5 on rows of hundreds; a different
 * order has errors of the same size, and the worst element of thousands is noisy). */
#define CHECK_TRUTH(fast, ref, truth, n, fl, what) do { \
    double ef_ = derr((fast), (truth), (n), (fl)), er_ = derr((ref), (truth), (n), (fl)); \
    CHECK(ef_ <= (3 * er_ > 2e-5 ? 3 * er_ : 2e-5), "%s %s: fast err %g, ref err %g", lvl_name, what, ef_, er_); \
    if (ef_ > worst_fast) worst_fast = ef_; \
    if (er_ > worst_ref) worst_ref = er_; } while (0)
static double worst_fast, worst_ref;

static void layernorm_double(double *out, double *dx, double *dw, double *db, const float *x, const float *w,
                             const float *b, const float *dout, const float *mean, const float *rstd, int N, int C) {
    for (int c = 0; c < C; c++) dw[c] = db[c] = 0;
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *d = dout + (size_t)n * C;
        double m = 0, v = 0, gm = 0, gx = 0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (xr[c] - m) * s * w[c] + b[c];
        /* backward uses the given mean/rstd, as the kernels do */
        double mf = mean[n], sf = rstd[n];
        for (int c = 0; c < C; c++) { double xh = (xr[c] - mf) * sf, g = (double)d[c] * w[c]; gm += g; gx += g * xh; }
        gm /= C; gx /= C;
        for (int c = 0; c < C; c++) {
            double xh = (xr[c] - mf) * sf;
            dx[(size_t)n * C + c] = sf * ((double)d[c] * w[c] - gm - xh * gx);
            dw[c] += d[c] * xh; db[c] += d[c];
        }
    }
}

static void test_layernorm(int N, int C) {
    size_t n = (size_t)N * C;
    float *x = rnd(n, 2.0f), *w = rnd((size_t)C, 1.0f), *b = rnd((size_t)C, 1.0f), *dout = rnd(n, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f;   /* a mean far from 0 */
    float *o1 = rnd(n, 1), *o2 = rnd(n, 1), *m1 = rnd((size_t)N, 1), *m2 = rnd((size_t)N, 1);
    float *r1 = rnd((size_t)N, 1), *r2 = rnd((size_t)N, 1);
    llm__layernorm_fwd_ref(o1, m1, r1, x, w, b, N, C);
    llm__layernorm_fwd_fast(o2, m2, r2, x, w, b, N, C);
    double *to = (double *)malloc(n * 8), *tdx = (double *)malloc(n * 8), *tdw = (double *)malloc((size_t)C * 8);
    double *tdb = (double *)malloc((size_t)C * 8);
    layernorm_double(to, tdx, tdw, tdb, x, w, b, dout, m1, r1, N, C);
    CHECK_TRUTH(o2, o1, to, n, 1e-2, "ln fwd out");
    CHECK(ERR(r2, r1, (size_t)N, 1e-3) < 1e-4, "%s ln fwd rstd", lvl_name);
    /* backward: the reference's fused kernel against dx_fast + dwdb_fast over two channel ranges */
    float *dx1 = rnd(n, 1), *dw1 = rnd((size_t)C, 1), *db1 = rnd((size_t)C, 1);
    float *dx2 = dupf(dx1, n), *dw2 = dupf(dw1, (size_t)C), *db2 = dupf(db1, (size_t)C);
    float *dx0 = dupf(dx1, n), *dw0 = dupf(dw1, (size_t)C), *db0 = dupf(db1, (size_t)C);
    llm__layernorm_bwd_ref(dx1, dw1, db1, dout, x, w, m1, r1, N, C);
    llm__layernorm_bwd_dx_fast(dx2, dout, x, w, m1, r1, N, C);
    int cm = C / 3;   /* an odd split point */
    llm__layernorm_bwd_dwdb_fast(dw2, db2, dout, x, m1, r1, N, C, 0, cm);
    llm__layernorm_bwd_dwdb_fast(dw2, db2, dout, x, m1, r1, N, C, cm, C);
    /* the truths are the increments: add the starting values */
    for (size_t i = 0; i < n; i++) tdx[i] += dx0[i];
    for (int c = 0; c < C; c++) { tdw[c] += dw0[c]; tdb[c] += db0[c]; }
    CHECK_TRUTH(dx2, dx1, tdx, n, 1e-2, "ln bwd dx");
    CHECK_TRUTH(dw2, dw1, tdw, (size_t)C, 1e-2, "ln bwd dw");
    CHECK_TRUTH(db2, db1, tdb, (size_t)C, 1e-2, "ln bwd db");
    free(to); free(tdx); free(tdw); free(tdb); free(dx0); free(dw0); free(db0);
    free(x); free(w); free(b); free(dout); free(o1); free(o2); free(m1); free(m2); free(r1); free(r2);
    free(dx1); free(dw1); free(db1); free(dx2); free(dw2); free(db2);
}

static void test_gelu(size_t n) {
    float *x = rnd(n, 10.0f), *d = rnd(n, 1.0f);
    if (n > 8) { x[0] = 0.0f; x[1] = -50.0f; x[2] = 50.0f; x[3] = -1e4f; x[4] = 1e4f; x[5] = 1e-20f; x[6] = -9.99f; }
    float *y1 = rnd(n, 1), *y2 = rnd(n, 1);
    llm__gelu_fwd_ref(y1, x, n);
    llm__gelu_fwd_fast(y2, x, n);
    CHECK(ERR(y2, y1, n, 1.0) < 2e-6, "%s gelu fwd n=%zu err %g", lvl_name, n, ERR(y2, y1, n, 1.0));
    float *g1 = rnd(n, 1), *g2 = dupf(g1, n);
    llm__gelu_bwd_ref(g1, x, d, n);
    llm__gelu_bwd_fast(g2, x, d, n);
    CHECK(ERR(g2, g1, n, 1.0) < 2e-6, "%s gelu bwd n=%zu err %g", lvl_name, n, ERR(g2, g1, n, 1.0));
    free(x); free(d); free(y1); free(y2); free(g1); free(g2);
}

static void test_residual_adamw_sumsq(size_t n) {
    float *a = rnd(n, 1), *b = rnd(n, 1), *o1 = rnd(n, 1), *o2 = rnd(n, 1);
    llm__residual_fwd_ref(o1, a, b, n);
    llm__residual_fwd_fast(o2, a, b, n);
    CHECK(n == 0 || memcmp(o1, o2, n * sizeof(float)) == 0, "%s residual fwd n=%zu", lvl_name, n);
    float *da1 = rnd(n, 1), *db1 = rnd(n, 1), *da2 = dupf(da1, n), *db2 = dupf(db1, n);
    llm__residual_bwd_ref(da1, db1, a, n);
    llm__residual_bwd_fast(da2, db2, a, n);
    CHECK(n == 0 || (memcmp(da1, da2, n * 4) == 0 && memcmp(db1, db2, n * 4) == 0), "%s residual bwd n=%zu", lvl_name, n);
    /* AdamW: three steps */
    float *p1 = rnd(n, 1), *m1 = rnd(n, 0.1f), *v1 = rnd(n, 0.0f), *p2 = dupf(p1, n), *m2 = dupf(m1, n), *v2 = dupf(v1, n);
    for (int t = 1; t <= 3; t++) {
        llm__adamw_ref(p1, a, m1, v1, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        llm__adamw_fast(p2, a, m2, v2, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
    }
    double e = ERR(p2, p1, n, 1e-3);
    if (ERR(m2, m1, n, 1e-3) > e) e = ERR(m2, m1, n, 1e-3);
    if (ERR(v2, v1, n, 1e-6) > e) e = ERR(v2, v1, n, 1e-6);
    CHECK(e < 1e-6, "%s adamw n=%zu err %g", lvl_name, n, e);
    double s1 = llm__sumsq_ref(a, n), s2 = llm__sumsq_fast(a, n);
    CHECK(fabs(s1 - s2) <= 1e-12 * s1, "%s sumsq n=%zu: %.17g vs %.17g", lvl_name, n, s2, s1);
    free(a); free(b); free(o1); free(o2); free(da1); free(db1); free(da2); free(db2);
    free(p1); free(m1); free(v1); free(p2); free(m2); free(v2);
}

static void test_rmsnorm_swiglu(int N, int C) {
    size_t n = (size_t)N * C;
    float *x = rnd(n, 2.0f), *w = rnd((size_t)C, 1.0f), *dout = rnd(n, 1.0f);
    float *o1 = rnd(n, 1), *o2 = rnd(n, 1), *r1 = rnd((size_t)N, 1), *r2 = rnd((size_t)N, 1);
    llm__rmsnorm_fwd_ref(o1, r1, x, w, N, C, 1e-5f);
    llm__rmsnorm_fwd_fast(o2, r2, x, w, N, C, 1e-5f);
    CHECK(ERR(o2, o1, n, 1e-2) < 1e-5 && ERR(r2, r1, (size_t)N, 1e-2) < 1e-5, "%s rmsnorm fwd N=%d C=%d err %g", lvl_name,
          N, C, ERR(o2, o1, n, 1e-2));
    float *dx1 = rnd(n, 1), *dw1 = rnd((size_t)C, 1), *dx2 = dupf(dx1, n), *dw2 = dupf(dw1, (size_t)C);
    float *dx3 = dupf(dx1, n), *dw3 = dupf(dw1, (size_t)C);
    llm__rmsnorm_bwd_ref(dx1, dw1, dout, x, w, r1, N, C);
    llm__rmsnorm_bwd_fast(dx2, dw2, dout, x, w, r1, N, C);
    llm__rmsnorm_bwd_dx_fast(dx3, dout, x, w, r1, N, C);   /* the split halves, channels in two ranges */
    llm__rmsnorm_bwd_dw_fast(dw3, dout, x, r1, N, C, 0, C / 2);
    llm__rmsnorm_bwd_dw_fast(dw3, dout, x, r1, N, C, C / 2, C);
    CHECK(ERR(dx2, dx1, n, 1e-1) < 1e-5 && ERR(dw2, dw1, (size_t)C, 1e-1) < 1e-5, "%s rmsnorm bwd err %g %g", lvl_name,
          ERR(dx2, dx1, n, 1e-1), ERR(dw2, dw1, (size_t)C, 1e-1));
    CHECK(ERR(dx3, dx1, n, 1e-1) < 1e-5 && ERR(dw3, dw1, (size_t)C, 1e-1) < 1e-5, "%s rmsnorm bwd split", lvl_name);
    /* SwiGLU: rows of 2H = 2C, with large |gate| values in the first row */
    float *gi = rnd(2 * n, 6.0f), *so1 = rnd(n, 1), *so2 = rnd(n, 1);
    if (C > 4) { gi[0] = -100.0f; gi[1] = 100.0f; gi[2] = -1e30f; gi[3] = 0.0f; }
    llm__swiglu_fwd_ref(so1, gi, N, C);
    llm__swiglu_fwd_fast(so2, gi, N, C);
    CHECK(ERR(so2, so1, n, 1e-2) < 1e-5, "%s swiglu fwd N=%d H=%d err %g", lvl_name, N, C, ERR(so2, so1, n, 1e-2));
    float *sd1 = rnd(2 * n, 1), *sd2 = dupf(sd1, 2 * n);
    llm__swiglu_bwd_ref(sd1, gi, dout, N, C);
    llm__swiglu_bwd_fast(sd2, gi, dout, N, C);
    CHECK(ERR(sd2, sd1, 2 * n, 1e-1) < 1e-5, "%s swiglu bwd err %g", lvl_name, ERR(sd2, sd1, 2 * n, 1e-1));
    free(x); free(w); free(dout); free(o1); free(o2); free(r1); free(r2); free(dx1); free(dw1); free(dx2); free(dw2);
    free(dx3); free(dw3); free(gi); free(so1); free(so2); free(sd1); free(sd2);
}

static void test_crossentropy(int N, int V) {
    size_t n = (size_t)N * V;
    float *x = rnd(n, 4.0f);
    int *tg = (int *)malloc((size_t)N * sizeof(int));
    for (int i = 0; i < N; i++) tg[i] = (int)((unsigned)(i * 7919) % (unsigned)V);
    tg[0] = -100;                                    /* ignored */
    if (N > 2) {                                     /* very negative logits, one large */
        for (int i = 0; i < V; i++) x[(size_t)2 * V + i] = -1e30f;
        x[(size_t)2 * V + V / 2] = 30.0f;
        tg[2] = V / 2;
    }
    if (N > 3) x[(size_t)3 * V + tg[3]] = -80.0f;    /* target with a tiny probability */
    float *l1 = rnd((size_t)N, 1), *l2 = rnd((size_t)N, 1), *s1 = rnd((size_t)N, 1), *s2 = rnd((size_t)N, 1);
    llm__crossentropy_fwd_ref(l1, s1, x, tg, N, V);
    llm__crossentropy_fwd_fast(l2, s2, x, tg, N, V);
    CHECK(ERR(l2, l1, (size_t)N, 1e-3) < 1e-5, "%s ce fwd N=%d V=%d loss err %g", lvl_name, N, V, ERR(l2, l1, (size_t)N, 1e-3));
    CHECK(ERR(s2, s1, (size_t)N, 1e-3) < 1e-5, "%s ce fwd lse err %g", lvl_name, ERR(s2, s1, (size_t)N, 1e-3));
    CHECK(l2[0] == 0.0f, "%s ce ignored target has loss 0", lvl_name);
    float *g1 = dupf(x, n), *g2 = dupf(x, n);
    llm__crossentropy_bwd_ref(g1, s1, tg, 0.25f, N, V);
    llm__crossentropy_bwd_fast(g2, s1, tg, 0.25f, N, V);
    /* probabilities: absolute error ~1e-7·dloss is the floor (they sum to dloss per row) */
    CHECK(ERR(g2, g1, n, 1e-4) < 1e-5, "%s ce bwd err %g", lvl_name, ERR(g2, g1, n, 1e-4));
    int zero = 1;
    for (int i = 0; i < V; i++) zero &= g2[i] == 0.0f;
    CHECK(zero, "%s ce bwd: ignored row is zero", lvl_name);
    free(x); free(tg); free(l1); free(l2); free(s1); free(s2); free(g1); free(g2);
}

/* Attention in double: out, and the increments of dqkv (from the exact softmax). */
static void attention_double(double *out, double *dqkv, const float *qkv, const float *dout, int B, int T,
                             int NH, int NKV, int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, C = (size_t)NH * HS;
    double *p = (double *)malloc((size_t)T * 8), *o = (double *)malloc((size_t)HS * 8);
    double sc = 1.0 / sqrt((double)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *base = qkv + (size_t)b * T * row, *q = base + t * row + (size_t)h * HS;
                size_t koff = C + (size_t)(h / (NH / NKV)) * HS, voff = koff + (size_t)NKV * HS;
                const float *d = dout + ((size_t)b * T + t) * C + (size_t)h * HS;
                double mx = -1e300, sum = 0, D = 0;
                for (int j = 0; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < HS; i++) s += (double)q[i] * base[j * row + koff + i];
                    p[j] = s * sc; if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int i = 0; i < HS; i++) o[i] = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] /= sum;
                    for (int i = 0; i < HS; i++) o[i] += p[j] * base[j * row + voff + i];
                }
                for (int i = 0; i < HS; i++) { out[((size_t)b * T + t) * C + (size_t)h * HS + i] = o[i]; D += o[i] * d[i]; }
                double *dq = dqkv + (size_t)b * T * row + t * row + (size_t)h * HS;
                for (int j = 0; j <= t; j++) {
                    const float *k = base + j * row + koff, *v = base + j * row + voff;
                    double *dk = dqkv + (size_t)b * T * row + j * row + koff, *dv = dk + (size_t)NKV * HS;
                    double dp = 0;
                    for (int i = 0; i < HS; i++) dp += (double)d[i] * v[i];
                    double ds = p[j] * (dp - D) * sc;
                    for (int i = 0; i < HS; i++) { dv[i] += p[j] * d[i]; dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                }
            }
    free(p); free(o);
}

static void test_attention(int B, int T, int NH, int NKV, int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, C = (size_t)NH * HS;
    size_t nqkv = (size_t)B * T * row, nout = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = rnd(nqkv, 1.5f), *dout = rnd(nout, 1.0f);
    float *o1 = rnd(nout, 1), *o2 = rnd(nout, 1), *L1 = rnd(nl, 1), *L2 = rnd(nl, 1);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            llm__attention_fwd_head(o1, L1, qkv, b, h, T, NH, NKV, HS);
            llm__attention_fwd_fast(o2, L2, qkv, b, h, T, NH, NKV, HS);
        }
    double *to = (double *)calloc(nout, 8), *td = (double *)calloc(nqkv, 8);
    attention_double(to, td, qkv, dout, B, T, NH, NKV, HS);
    char what[96];
    snprintf(what, sizeof what, "attn fwd B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
    CHECK_TRUTH(o2, o1, to, nout, 1e-2, what);
    CHECK(ERR(L2, L1, nl, 1e-1) < 1e-5, "%s attn fwd lse err %g", lvl_name, ERR(L2, L1, nl, 1e-1));   /* lse ~ 1: floor 0.1 */
    /* backward from the same (reference) forward state; dqkv starts non-zero (+=) */
    float *d1 = rnd(nqkv, 0.5f), *d2 = dupf(d1, nqkv), *d3 = dupf(d1, nqkv), *d4 = dupf(d1, nqkv);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) llm__attention_bwd_head(d1, dout, qkv, o1, L1, b, h, T, NH, NKV, HS);
        for (int g = 0; g < NKV; g++) llm__attention_bwd_group_fast(d2, dout, qkv, o1, L1, b, g, T, NH, NKV, HS);
    }
    for (size_t i = 0; i < nqkv; i++) td[i] += d3[i];   /* d3: the starting values */
    snprintf(what, sizeof what, "attn bwd B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
    CHECK_TRUTH(d2, d1, td, nqkv, 1e-1, what);   /* gradients O(1): floor 0.1 */
    /* deterministic: the same call again gives the same bits */
    for (int b = 0; b < B; b++)
        for (int g = 0; g < NKV; g++) llm__attention_bwd_group_fast(d4, dout, qkv, o1, L1, b, g, T, NH, NKV, HS);
    CHECK(memcmp(d2, d4, nqkv * sizeof(float)) == 0, "%s attn bwd deterministic", lvl_name);
    free(to); free(td); free(d4); free(qkv); free(dout); free(o1); free(o2); free(L1); free(L2); free(d1); free(d2); free(d3);
}


/* ---- attention against the KV cache -----------------------------------------------------
 * A call's rows (seq[i], pos[i]) against caches (S, maxT, NKV·HS) that already hold
 * random keys and values at the earlier positions. The fast op and the reference each
 * start from the same caches; both must store the same k, v, and the outputs are held
 * to the exact attention in double (CHECK_TRUTH, floor 1e-2: outputs are averages of
 * values ~1). The CPU backend (1, 2 and 3 threads: the cost-balanced split) must give
 * exactly the bits of llm__attention_kv_fast run alone. */
static llm_pool *kv_pools[3];
static void *kv_st[3];
static void attention_kv_double(double *out, const float *qkv, const float *kc, const float *vc, const int *seq,
                                const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, kvw = (size_t)NKV * HS;
    double *p = (double *)malloc((size_t)maxT * 8), sc = 1.0 / sqrt((double)HS);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + i * row + (size_t)h * HS;
            size_t base = (size_t)seq[i] * maxT * kvw + (size_t)(h / (NH / NKV)) * HS;
            double mx = -1e300, sum = 0;
            for (int t = 0; t <= pos[i]; t++) {
                double s = 0;
                for (int d = 0; d < HS; d++) s += (double)q[d] * kc[base + t * kvw + d];
                p[t] = s * sc; if (p[t] > mx) mx = p[t];
            }
            for (int t = 0; t <= pos[i]; t++) { p[t] = exp(p[t] - mx); sum += p[t]; }
            for (int d = 0; d < HS; d++) {
                double o = 0;
                for (int t = 0; t <= pos[i]; t++) o += p[t] * vc[base + t * kvw + d];
                out[(size_t)i * NH * HS + (size_t)h * HS + d] = o / sum;
            }
        }
    free(p);
}
static void test_attention_kv(const char *name, const int *seq, const int *pos, int N, int S, int maxT, int NH, int NKV,
                              int HS) {
    size_t row = (size_t)(NH + 2 * NKV) * HS, C = (size_t)NH * HS, cache = (size_t)S * maxT * NKV * HS;
    float *qkv = rnd((size_t)N * row, 1.5f), *kc1 = rnd(cache, 1.5f), *vc1 = rnd(cache, 1.0f);
    float *kc2 = dupf(kc1, cache), *vc2 = dupf(vc1, cache), *kc3 = dupf(kc1, cache), *vc3 = dupf(vc1, cache);
    float *o1 = rnd((size_t)N * C, 1), *o2 = rnd((size_t)N * C, 1), *o3 = rnd((size_t)N * C, 1);
    double *to = (double *)malloc((size_t)N * C * 8);
    llm__attention_kv_ref(o1, qkv, kc1, vc1, seq, pos, N, NH, NKV, HS, maxT);
    llm__attention_kv_fast(o2, qkv, kc2, vc2, seq, pos, N, NH, NKV, HS, maxT);
    CHECK(memcmp(kc1, kc2, cache * 4) == 0 && memcmp(vc1, vc2, cache * 4) == 0, "%s attn kv %s: caches", lvl_name, name);
    attention_kv_double(to, qkv, kc1, vc1, seq, pos, N, NH, NKV, HS, maxT);
    char what[128];
    snprintf(what, sizeof what, "attn kv %s N=%d NH=%d NKV=%d HS=%d", name, N, NH, NKV, HS);
    CHECK_TRUTH(o2, o1, to, (size_t)N * C, 1e-2, what);
    for (int k = 0; k < 3; k++) {   /* the threaded backend: the same bits for any thread count */
        for (size_t i = 0; i < (size_t)N * C; i++) o3[i] = NAN;
        float *kc5 = dupf(kc3, cache), *vc5 = dupf(vc3, cache);
        llm_cpu_backend()->attention_kv(kv_st[k], o3, qkv, kc5, vc5, seq, pos, N, NH, NKV, HS, maxT);
        CHECK(memcmp(o3, o2, (size_t)N * C * 4) == 0 && memcmp(kc5, kc2, cache * 4) == 0 && memcmp(vc5, vc2, cache * 4) == 0,
              "%s attn kv %s: cpu backend with %d threads differs from the kernel alone", lvl_name, name,
              llm_pool_size(kv_pools[k]));
        free(kc5); free(vc5);
    }
    free(qkv); free(kc1); free(vc1); free(kc2); free(vc2); free(kc3); free(vc3); free(o1); free(o2); free(o3); free(to);
}
static void test_attention_kv_all(int NH, int NKV, int HS, int big) {
    enum { MAXN = 256 };
    int seq[MAXN], pos[MAXN], maxT = big ? 1030 : 300, n;
    /* prefill: one sequence from position 0 */
    n = big ? 200 : 37;
    for (int i = 0; i < n; i++) { seq[i] = 1; pos[i] = i; }
    test_attention_kv("prefill", seq, pos, n, 3, maxT, NH, NKV, HS);
    /* prefill continued from a cached prefix, across a chunk boundary (256 keys) */
    for (int i = 0; i < 20; i++) { seq[i] = 0; pos[i] = 245 + i; }
    test_attention_kv("prefill+prefix", seq, pos, 20, 3, maxT, NH, NKV, HS);
    /* decode: one row, then a batch of rows of different sequences and lengths */
    seq[0] = 2; pos[0] = maxT - 1;
    test_attention_kv("decode", seq, pos, 1, 3, maxT, NH, NKV, HS);
    seq[0] = 2; pos[0] = 5; seq[1] = 0; pos[1] = maxT - 1; seq[2] = 1; pos[2] = 256; seq[3] = 1; pos[3] = 257;
    test_attention_kv("batch decode", seq, pos, 4, 3, maxT, NH, NKV, HS);
    /* interleaved: two prompts prefilled together, rows alternating, one starting at 0 */
    for (int i = 0; i < 30; i++) { seq[i] = i % 2; pos[i] = i % 2 ? i / 2 : 100 + i / 2; }
    test_attention_kv("interleaved", seq, pos, 30, 2, maxT, NH, NKV, HS);
    /* position 0 alone: one key, softmax of one score */
    seq[0] = 0; pos[0] = 0;
    test_attention_kv("pos 0", seq, pos, 1, 1, maxT, NH, NKV, HS);
}

/* ---- RoPE: bit-exact against the reference, through the CPU backend (1, 2, 3 threads),
 * forward and backward, with positions from an array (up to ~1000) and implicit. */
static void test_rope(int B, int T, int NH, int NKV, int HS, int with_pos) {
    size_t n = (size_t)B * T * (NH + 2 * NKV) * HS;
    float *x = rnd(n, 2.0f), *r = dupf(x, n), *f = dupf(x, n);
    int *pos = (int *)malloc((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) pos[i] = (int)((unsigned)(i * 7919 + 3) % 1000u);
    const int *pp = with_pos ? pos : NULL;
    llm__rope_rotate(r, pp, B, T, NH, NKV, HS, 10000.0f, 1.0f);   /* the single-thread dispatcher */
    llm__rope_rotate_fast(f, pp, B, T, NH, NKV, HS, 10000.0f, 1.0f);
    CHECK(memcmp(r, f, n * 4) == 0, "%s rope_rotate_fast B=%d T=%d NH=%d NKV=%d HS=%d: not bit-exact", lvl_name, B, T, NH,
          NKV, HS);
    for (int k = 0; k < 3; k++) {
        memcpy(r, x, n * 4); memcpy(f, x, n * 4);
        llm__rope_fwd_ref(r, pp, B, T, NH, NKV, HS, 10000.0f);
        llm_cpu_backend()->rope_fwd(kv_st[k], f, pp, B, T, NH, NKV, HS, 10000.0f);
        CHECK(memcmp(r, f, n * 4) == 0, "%s rope fwd B=%d T=%d NH=%d NKV=%d HS=%d pos=%d thr=%d: not bit-exact", lvl_name, B,
              T, NH, NKV, HS, with_pos, llm_pool_size(kv_pools[k]));
        llm__rope_bwd_ref(r, pp, B, T, NH, NKV, HS, 500000.0f);
        llm_cpu_backend()->rope_bwd(kv_st[k], f, pp, B, T, NH, NKV, HS, 500000.0f);
        CHECK(memcmp(r, f, n * 4) == 0, "%s rope bwd B=%d T=%d HS=%d thr=%d: not bit-exact", lvl_name, B, T, HS,
              llm_pool_size(kv_pools[k]));
    }
    free(x); free(r); free(f); free(pos);
}

int main(void) {
    llm_simd levels[4] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512, LLM_SIMD_NEON};
    for (int k = 0; k < 3; k++) {   /* CPU backends with 1, 2 and 3 threads */
        llm_options opt;
        memset(&opt, 0, sizeof opt);
        opt.n_threads = k + 1;
        CHECK(llm_cpu_backend()->create(&kv_st[k], &opt) == LLM_OK, "cpu backend with %d threads", k + 1);
        kv_pools[k] = ((llm__cpu *)kv_st[k])->pool;
    }
    for (int li = 0; li < 4; li++) {
        if (!llm_simd_supported(levels[li])) {
            TEST_SKIP("SIMD level %s: not on this CPU", llm_simd_name(levels[li]));
            continue;
        }
        CHECK(llm_simd_force(levels[li]) == LLM_OK, "force %s", llm_simd_name(levels[li]));
        lvl_name = llm_simd_name(levels[li]);
        printf("level %s\n", lvl_name);
        if (levels[li] != LLM_SIMD_SCALAR) test_exp(levels[li]);
        test_layernorm(1, 1); test_layernorm(3, 17); test_layernorm(5, 100); test_layernorm(7, 768);
        test_layernorm(2, 63);
        test_gelu(1); test_gelu(13); test_gelu(1000); test_gelu(4099);
        test_residual_adamw_sumsq(0); test_residual_adamw_sumsq(1); test_residual_adamw_sumsq(31);
        test_residual_adamw_sumsq(1237);
        test_rmsnorm_swiglu(1, 1); test_rmsnorm_swiglu(3, 37); test_rmsnorm_swiglu(5, 288); test_rmsnorm_swiglu(2, 101);
        test_crossentropy(1, 7); test_crossentropy(5, 100); test_crossentropy(4, 1001);
#if !LLM_TEST_SAN
        test_crossentropy(3, 50257);
#endif
        test_attention(1, 1, 1, 1, 16);
        test_attention(2, 19, 3, 3, 16);
        test_attention(1, 37, 4, 2, 40);
        test_attention(1, 33, 2, 1, 64);
        test_attention(1, 21, 2, 2, 100);
#if !LLM_TEST_SAN
        test_attention(2, 70, 4, 1, 128);
        test_attention(1, 130, 2, 2, 64);
        test_attention(1, 9, 1, 1, 300);   /* past LLM__ATT_HSMAX: the reference runs */
#endif
        test_attention_kv_all(2, 2, 16, 0);
        test_attention_kv_all(4, 2, 8, 0); test_attention_kv_all(3, 3, 6, 0); test_attention_kv_all(6, 1, 4, 0);
        test_attention_kv_all(4, 2, 40, 0);   /* GQA, HS not a multiple of 16 */
        test_attention_kv_all(3, 1, 64, 0);
        test_attention_kv_all(2, 2, 300, 0);  /* past LLM__ATT_HSMAX: the reference runs */
#if !LLM_TEST_SAN
        test_attention_kv_all(12, 12, 64, 1); /* Llama 110M's heads, positions up to 1029 */
        test_attention_kv_all(4, 2, 128, 1);
        test_attention_kv_all(6, 3, 100, 1);
#endif
        test_rope(1, 1, 1, 1, 2, 0); test_rope(2, 7, 4, 2, 6, 0); test_rope(1, 37, 3, 1, 16, 1);
        test_rope(2, 19, 12, 12, 64, 1); test_rope(1, 9, 4, 2, 128, 1); test_rope(1, 5, 2, 2, 24, 1);
        test_rope(1, 3, 2, 1, 1030, 1);   /* past LLM__ROPE_HSMAX: the reference runs */
    }
    printf("worst error against double math: fast %.3g, reference %.3g\n", worst_fast, worst_ref);
    llm_simd_force(LLM_SIMD_AUTO);
    for (int k = 0; k < 3; k++) llm_cpu_backend()->destroy(kv_st[k]);
    return TEST_END("test_simd_kernels");
}
