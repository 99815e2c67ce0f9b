//==== SIMD KERNELS =====================================================================
/* AVX2+FMA and AVX-512 versions of every kernel that is not a GEMM, each beside the
 * reference it is tested against (tests/test_simd_kernels.c), and one dispatcher per op,
 * llm__<op>_fast, with exactly the reference's signature. A dispatcher reads
 * llm_simd_active() on every call (one load) and runs the best version; at
 * LLM_SIMD_SCALAR, on ARM64 (no NEON versions yet) and on compilers without target
 * attributes it runs the reference itself.
 *
 * Accuracy contract: each fast kernel is within 1e-5 relative of its reference, with
 * an absolute floor where the reference itself cancels (stated per op in the tests).
 * Sums are reordered (several vector accumulators, then a horizontal sum) but stay in
 * fp32 (sumsq: fp64, like the reference). AdamW does the reference's operations in the
 * reference's order (no FMA), so it matches it bit for bit when the compiler does not
 * contract the reference's expressions (gcc -std=c99 does not).
 * Every kernel is deterministic: one thread, a fixed order of operations.
 *
 * Dispatchers: layernorm_fwd, layernorm_bwd_dx, layernorm_bwd_dwdb, gelu_fwd, gelu_bwd,
 * residual_fwd, residual_bwd, crossentropy_fwd, crossentropy_bwd, sumsq, adamw,
 * attention_fwd (one (b, h)), attention_bwd_group (one (b, kv group)), rmsnorm_fwd,
 * rmsnorm_bwd (+ its halves rmsnorm_bwd_dx, rmsnorm_bwd_dw), swiglu_fwd, swiglu_bwd,
 * attention_kv (+ attention_kv_head: one (row, head)), rope_rotate (+ rope_row: one row
 * with the frequencies given; the angles are libm's, computed as the reference does, so
 * the result is bit-identical to it).
 *
 * Tails (lengths not a multiple of the vector width) use masked loads and stores, so
 * no kernel reads or writes past its arrays. */

#ifdef LLM__X86
/* ---- vector exp ------------------------------------------------------------------------
 * exp(x) = 2^n · exp(r), n = round(x·log2 e), r = x - n·ln 2, |r| <= ln2/2 ≈ 0.347.
 * r is formed in two steps (Cody & Waite): ln 2 = LN2_HI + LN2_LO with LN2_HI =
 * 355/512 having 9 significant bits, so n·LN2_HI is exact for |n| < 2^15 and the
 * subtraction x - n·LN2_HI loses nothing; LN2_LO = ln 2 - LN2_HI corrects the rest.
 * exp(r) is its Taylor polynomial to degree 7 in Horner form: the truncation error
 * r^8/8! <= 5.2e-9 (< 0.05 ulp), so the result is off by rounding only: <= 2 ulp over
 * the whole range (measured in the test). Range: x is clamped to [-104, 89]; below
 * -103.97 exp underflows to 0 (a masked score of -inf gives exactly 0), above 88.73 it
 * overflows to +inf; results in [-103.97, -87.34] are denormal, as expf's. NaN stays
 * NaN: the clamps are max(c, x), min(c, x), which return x when x is NaN.
 * Scaling by 2^n: AVX-512 has vscalefps (exact, with over/underflow); AVX2 builds two
 * powers 2^(n/2) and 2^(n - n/2) from exponent bits, both normal for n in [-150, 128],
 * and multiplies by them in turn (one rounding: the first product is exact). */
#define LLM__EXP_LO -104.0f
#define LLM__EXP_HI 89.0f
#define LLM__LOG2E 1.44269504088896341f
#define LLM__LN2_HI 0.693359375f
#define LLM__LN2_LO -2.12194440e-4f
#define LLM__EXP_HORNER(FMA, SET1, p, r) do {   /* p = Σ_{k<=7} r^k / k! */ \
    p = FMA(SET1(1.0f / 5040.0f), r, SET1(1.0f / 720.0f)); \
    p = FMA(p, r, SET1(1.0f / 120.0f)); p = FMA(p, r, SET1(1.0f / 24.0f)); \
    p = FMA(p, r, SET1(1.0f / 6.0f)); p = FMA(p, r, SET1(0.5f)); \
    p = FMA(p, r, SET1(1.0f)); p = FMA(p, r, SET1(1.0f)); } while (0)

LLM__T_AVX512 static inline __m512 llm__exp_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(LLM__EXP_LO), x);
    x = _mm512_min_ps(_mm512_set1_ps(LLM__EXP_HI), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LLM__LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LLM__LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LLM__LN2_LO), r);
    __m512 p;
    LLM__EXP_HORNER(_mm512_fmadd_ps, _mm512_set1_ps, p, r);
    return _mm512_scalef_ps(p, n);
}
LLM__T_AVX2 static inline __m256 llm__exp_avx2(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(LLM__EXP_LO), x);
    x = _mm256_min_ps(_mm256_set1_ps(LLM__EXP_HI), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LLM__LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LLM__LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LLM__LN2_LO), r);
    __m256 p;
    LLM__EXP_HORNER(_mm256_fmadd_ps, _mm256_set1_ps, p, r);
    __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* Masks for the first rem lanes (rem may be <= 0 or >= the width). */
LLM__T_AVX512 static inline __mmask16 llm__mask16(int rem) {
    return LLM__CAST(__mmask16, rem >= 16 ? 0xFFFFu : rem <= 0 ? 0u : (1u << rem) - 1u);
}
LLM__T_AVX2 static inline __m256i llm__mask8(int rem) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* Masked load and store that use the plain instructions when all lanes are on: AMD
 * runs vmaskmovps stores in microcode, far slower than a store. */
LLM__T_AVX2 static inline __m256 llm__ld8(const float *p, __m256i k) {
    return _mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k);
}
LLM__T_AVX2 static inline void llm__st8(float *p, __m256i k, __m256 v) {
    if (_mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, k, v);
}
LLM__T_AVX2 static inline float llm__vsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
LLM__T_AVX2 static inline float llm__vmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif /* LLM__X86 */

/* Every dispatcher has this shape: the best level this build and CPU allow. */
#ifdef LLM__X86
#define LLM__DISPATCH(name, args) do { llm_simd lvl_ = llm_simd_active(); \
    if (lvl_ == LLM_SIMD_AVX512) { name##_avx512 args; return; } \
    if (lvl_ == LLM_SIMD_AVX2) { name##_avx2 args; return; } } while (0)
#else
#define LLM__DISPATCH(name, args) do { } while (0)
#endif

/* ---- layernorm forward ------------------------------------------------------------------
 * Per row, three passes over C floats that stay in L1: the mean, the variance around it
 * (two passes, not E[x²] - mean², which cancels), then out = (x-mean)·rstd·w + b. */
#ifdef LLM__X86
LLM__T_AVX512 static void llm__layernorm_fwd_avx512(float *out, float *mean, float *rstd, const float *inp,
                                                    const float *w, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int c = 0;
        for (; c + 32 <= C; c += 32) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + c));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + c + 16));
        }
        for (; c < C; c += 16) a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(llm__mask16(C - c), x + c));
        float m = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / LLM__CAST(float, C);
        __m512 mv = _mm512_set1_ps(m);
        a0 = _mm512_setzero_ps(); a1 = _mm512_setzero_ps();
        for (c = 0; c + 32 <= C; c += 32) {
            __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + c), mv), d1 = _mm512_sub_ps(_mm512_loadu_ps(x + c + 16), mv);
            a0 = _mm512_fmadd_ps(d0, d0, a0); a1 = _mm512_fmadd_ps(d1, d1, a1);
        }
        for (; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            __m512 d0 = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), mv);
            a0 = _mm512_fmadd_ps(d0, d0, a0);
        }
        float v = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / LLM__CAST(float, C);
        float s = 1.0f / sqrtf(v + LLM__LN_EPS);
        __m512 sv = _mm512_set1_ps(s);
        for (c = 0; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
            _mm512_mask_storeu_ps(o + c, k, _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(k, w + c),
                                                            _mm512_maskz_loadu_ps(k, b + c)));
        }
        mean[n] = m; rstd[n] = s;
    }
}
LLM__T_AVX2 static void llm__layernorm_fwd_avx2(float *out, float *mean, float *rstd, const float *inp,
                                                const float *w, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        int c = 0;
        for (; c + 16 <= C; c += 16) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + c));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + c + 8));
        }
        for (; c < C; c += 8) a0 = _mm256_add_ps(a0, llm__ld8(x + c, llm__mask8(C - c)));
        float m = llm__vsum8(_mm256_add_ps(a0, a1)) / LLM__CAST(float, C);
        __m256 mv = _mm256_set1_ps(m);
        a0 = _mm256_setzero_ps(); a1 = _mm256_setzero_ps();
        for (c = 0; c + 16 <= C; c += 16) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + c), mv), d1 = _mm256_sub_ps(_mm256_loadu_ps(x + c + 8), mv);
            a0 = _mm256_fmadd_ps(d0, d0, a0); a1 = _mm256_fmadd_ps(d1, d1, a1);
        }
        for (; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            __m256 d0 = _mm256_and_ps(_mm256_sub_ps(llm__ld8(x + c, k), mv), _mm256_castsi256_ps(k));
            a0 = _mm256_fmadd_ps(d0, d0, a0);
        }
        float v = llm__vsum8(_mm256_add_ps(a0, a1)) / LLM__CAST(float, C);
        float s = 1.0f / sqrtf(v + LLM__LN_EPS);
        __m256 sv = _mm256_set1_ps(s);
        for (c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(llm__ld8(x + c, k), mv), sv);
            llm__st8(o + c, k, _mm256_fmadd_ps(xh, llm__ld8(w + c, k), llm__ld8(b + c, k)));
        }
        mean[n] = m; rstd[n] = s;
    }
}
#endif
static LLM__UNUSED void llm__layernorm_fwd_fast(float *out, float *mean, float *rstd, const float *inp,
                                                const float *w, const float *b, int N, int C) {
    LLM__DISPATCH(llm__layernorm_fwd, (out, mean, rstd, inp, w, b, N, C));
    llm__layernorm_fwd_ref(out, mean, rstd, inp, w, b, N, C);
}

/* ---- layernorm backward -----------------------------------------------------------------
 * The reference's one loop is split in two for the CPU backend, which gives threads
 * rows for dinp but channels for dw, db (the sums over rows would collide):
 *   dx (rows):      dx += rstd·(g - mean(g) - xhat·mean(g·xhat)),  g = dout·w
 *   dwdb (channels [c0,c1), all N rows): db += dout, dw += dout·xhat.
 * The scalar versions are the reference's own loops, one half each. */
static void llm__layernorm_bwd_dx_ref(float *dinp, const float *dout, const float *inp, const float *w,
                                      const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        float m = mean[n], s = rstd[n], gmean = 0, gxmean = 0;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, g = d[c] * w[c];
            gmean += g; gxmean += g * xhat;
        }
        gmean /= C; gxmean /= C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, g = d[c] * w[c];
            dx[c] += s * (g - gmean - xhat * gxmean);
        }
    }
}
static void llm__layernorm_bwd_dwdb_ref(float *dw, float *db, const float *dout, const float *inp,
                                        const float *mean, const float *rstd, int N, int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        for (int c = c0; c < c1; c++) {
            db[c] += d[c];
            dw[c] += d[c] * ((x[c] - mean[n]) * rstd[n]);
        }
    }
}
#ifdef LLM__X86
LLM__T_AVX512 static void llm__layernorm_bwd_dx_avx512(float *dinp, const float *dout, const float *inp,
                                                       const float *w, const float *mean, const float *rstd,
                                                       int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        __m512 mv = _mm512_set1_ps(mean[n]), sv = _mm512_set1_ps(rstd[n]);
        __m512 g0 = _mm512_setzero_ps(), gx0 = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16) {   /* masked lanes load 0: g = 0 adds nothing */
            __mmask16 k = llm__mask16(C - c);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + c), _mm512_maskz_loadu_ps(k, w + c));
            g0 = _mm512_add_ps(g0, g); gx0 = _mm512_fmadd_ps(g, xh, gx0);
        }
        __m512 gm = _mm512_set1_ps(_mm512_reduce_add_ps(g0) / LLM__CAST(float, C));
        __m512 gxm = _mm512_set1_ps(_mm512_reduce_add_ps(gx0) / LLM__CAST(float, C));
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mv), sv);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + c), _mm512_maskz_loadu_ps(k, w + c));
            __m512 t = _mm512_fnmadd_ps(xh, gxm, _mm512_sub_ps(g, gm));
            _mm512_mask_storeu_ps(dx + c, k, _mm512_fmadd_ps(sv, t, _mm512_maskz_loadu_ps(k, dx + c)));
        }
    }
}
LLM__T_AVX2 static void llm__layernorm_bwd_dx_avx2(float *dinp, const float *dout, const float *inp,
                                                   const float *w, const float *mean, const float *rstd,
                                                   int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        __m256 mv = _mm256_set1_ps(mean[n]), sv = _mm256_set1_ps(rstd[n]);
        __m256 g0 = _mm256_setzero_ps(), gx0 = _mm256_setzero_ps();
        for (int c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(llm__ld8(x + c, k), mv), sv);
            __m256 g = _mm256_mul_ps(llm__ld8(d + c, k), llm__ld8(w + c, k));
            g0 = _mm256_add_ps(g0, g); gx0 = _mm256_fmadd_ps(g, xh, gx0);
        }
        __m256 gm = _mm256_set1_ps(llm__vsum8(g0) / LLM__CAST(float, C));
        __m256 gxm = _mm256_set1_ps(llm__vsum8(gx0) / LLM__CAST(float, C));
        for (int c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(llm__ld8(x + c, k), mv), sv);
            __m256 g = _mm256_mul_ps(llm__ld8(d + c, k), llm__ld8(w + c, k));
            __m256 t = _mm256_fnmadd_ps(xh, gxm, _mm256_sub_ps(g, gm));
            llm__st8(dx + c, k, _mm256_fmadd_ps(sv, t, llm__ld8(dx + c, k)));
        }
    }
}
/* dw, db: a block of channels lives in registers while all N rows stream past (each row
 * adds in row order, as the reference does), then goes back to memory once. */
LLM__T_AVX512 static void llm__layernorm_bwd_dwdb_avx512(float *dw, float *db, const float *dout, const float *inp,
                                                         const float *mean, const float *rstd, int N, int C,
                                                         int c0, int c1) {
    for (int cb = c0; cb < c1; cb += 64) {
        __mmask16 k0 = llm__mask16(c1 - cb), k1 = llm__mask16(c1 - cb - 16);
        __mmask16 k2 = llm__mask16(c1 - cb - 32), k3 = llm__mask16(c1 - cb - 48);
        __m512 w0 = _mm512_maskz_loadu_ps(k0, dw + cb), w1 = _mm512_maskz_loadu_ps(k1, dw + cb + 16);
        __m512 w2 = _mm512_maskz_loadu_ps(k2, dw + cb + 32), w3 = _mm512_maskz_loadu_ps(k3, dw + cb + 48);
        __m512 b0 = _mm512_maskz_loadu_ps(k0, db + cb), b1 = _mm512_maskz_loadu_ps(k1, db + cb + 16);
        __m512 b2 = _mm512_maskz_loadu_ps(k2, db + cb + 32), b3 = _mm512_maskz_loadu_ps(k3, db + cb + 48);
        for (int n = 0; n < N; n++) {
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;
            __m512 mv = _mm512_set1_ps(mean[n]), sv = _mm512_set1_ps(rstd[n]);
#define LLM__DWDB(i) { __m512 dd = _mm512_maskz_loadu_ps(k##i, d + 16 * i); \
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k##i, x + 16 * i), mv), sv); \
            b##i = _mm512_add_ps(b##i, dd); w##i = _mm512_fmadd_ps(dd, xh, w##i); }
            LLM__DWDB(0) LLM__DWDB(1) LLM__DWDB(2) LLM__DWDB(3)
#undef LLM__DWDB
        }
        _mm512_mask_storeu_ps(dw + cb, k0, w0); _mm512_mask_storeu_ps(dw + cb + 16, k1, w1);
        _mm512_mask_storeu_ps(dw + cb + 32, k2, w2); _mm512_mask_storeu_ps(dw + cb + 48, k3, w3);
        _mm512_mask_storeu_ps(db + cb, k0, b0); _mm512_mask_storeu_ps(db + cb + 16, k1, b1);
        _mm512_mask_storeu_ps(db + cb + 32, k2, b2); _mm512_mask_storeu_ps(db + cb + 48, k3, b3);
    }
}
LLM__T_AVX2 static void llm__layernorm_bwd_dwdb_avx2(float *dw, float *db, const float *dout, const float *inp,
                                                     const float *mean, const float *rstd, int N, int C,
                                                     int c0, int c1) {
    for (int cb = c0; cb < c1; cb += 32) {
        __m256i k0 = llm__mask8(c1 - cb), k1 = llm__mask8(c1 - cb - 8);
        __m256i k2 = llm__mask8(c1 - cb - 16), k3 = llm__mask8(c1 - cb - 24);
        __m256 w0 = llm__ld8(dw + cb, k0), w1 = llm__ld8(dw + cb + 8, k1);
        __m256 w2 = llm__ld8(dw + cb + 16, k2), w3 = llm__ld8(dw + cb + 24, k3);
        __m256 b0 = llm__ld8(db + cb, k0), b1 = llm__ld8(db + cb + 8, k1);
        __m256 b2 = llm__ld8(db + cb + 16, k2), b3 = llm__ld8(db + cb + 24, k3);
        for (int n = 0; n < N; n++) {
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;
            __m256 mv = _mm256_set1_ps(mean[n]), sv = _mm256_set1_ps(rstd[n]);
#define LLM__DWDB(i) { __m256 dd = llm__ld8(d + 8 * i, k##i); \
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(llm__ld8(x + 8 * i, k##i), mv), sv); \
            b##i = _mm256_add_ps(b##i, dd); w##i = _mm256_fmadd_ps(dd, xh, w##i); }
            LLM__DWDB(0) LLM__DWDB(1) LLM__DWDB(2) LLM__DWDB(3)
#undef LLM__DWDB
        }
        llm__st8(dw + cb, k0, w0); llm__st8(dw + cb + 8, k1, w1);
        llm__st8(dw + cb + 16, k2, w2); llm__st8(dw + cb + 24, k3, w3);
        llm__st8(db + cb, k0, b0); llm__st8(db + cb + 8, k1, b1);
        llm__st8(db + cb + 16, k2, b2); llm__st8(db + cb + 24, k3, b3);
    }
}
#endif
static LLM__UNUSED void llm__layernorm_bwd_dx_fast(float *dinp, const float *dout, const float *inp, const float *w,
                                                   const float *mean, const float *rstd, int N, int C) {
    LLM__DISPATCH(llm__layernorm_bwd_dx, (dinp, dout, inp, w, mean, rstd, N, C));
    llm__layernorm_bwd_dx_ref(dinp, dout, inp, w, mean, rstd, N, C);
}
static LLM__UNUSED void llm__layernorm_bwd_dwdb_fast(float *dw, float *db, const float *dout, const float *inp,
                                                     const float *mean, const float *rstd, int N, int C,
                                                     int c0, int c1) {
    LLM__DISPATCH(llm__layernorm_bwd_dwdb, (dw, db, dout, inp, mean, rstd, N, C, c0, c1));
    llm__layernorm_bwd_dwdb_ref(dw, db, dout, inp, mean, rstd, N, C, c0, c1);
}

/* ---- GELU ---------------------------------------------------------------------------------
 * No tanh is needed: with z = 2u, 1 + tanh(u) = 2/(1 + e^-z) = 2σ(z), so
 *   y = x/2 · (1 + tanh u) = x · σ(z) = x / (1 + e^-z),
 * which never subtracts nearly equal numbers (0.5·(1 + tanh u) does, for u << 0: there
 * the reference itself is only accurate in absolute terms, ~1e-7·|x|). For the
 * derivative, with e = e^-z and s = σ(z) = 1/(1+e): 1 - s = e·s and 1 - tanh² u = 4s(1-s), so
 *   dy/dx = s + 2·x·s·(e·s)·du,   du = sqrt(2/π)(1 + 3·0.044715 x²).
 * z is clamped to [-88, 88] so that e stays finite (e·s would be inf·0 otherwise);
 * past the clamp σ is 0 or 1 to far below fp32 resolution of the result. */
#define LLM__GELU_ZMAX 88.0f
#ifdef LLM__X86
LLM__T_AVX512 static inline void llm__gelu_core_avx512(__m512 x, __m512 *s, __m512 *e) {
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 z = _mm512_mul_ps(_mm512_set1_ps(2.0f * LLM__GELU_K), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x));
    z = _mm512_min_ps(_mm512_set1_ps(LLM__GELU_ZMAX), _mm512_max_ps(_mm512_set1_ps(-LLM__GELU_ZMAX), z));
    *e = llm__exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), z));
    *s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), *e));
}
LLM__T_AVX512 static void llm__gelu_fwd_avx512(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = llm__mask16(n - i < 16 ? LLM__CAST(int, n - i) : 16);
        __m512 x = _mm512_maskz_loadu_ps(k, inp + i), s, e;
        llm__gelu_core_avx512(x, &s, &e);
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(x, s));
    }
}
LLM__T_AVX512 static void llm__gelu_bwd_avx512(float *dinp, const float *inp, const float *dout, size_t n) {
    const __m512 c3 = _mm512_set1_ps(3.0f * 0.044715f), one = _mm512_set1_ps(1.0f), kk = _mm512_set1_ps(LLM__GELU_K);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = llm__mask16(n - i < 16 ? LLM__CAST(int, n - i) : 16);
        __m512 x = _mm512_maskz_loadu_ps(k, inp + i), s, e;
        llm__gelu_core_avx512(x, &s, &e);
        __m512 du = _mm512_mul_ps(kk, _mm512_fmadd_ps(_mm512_mul_ps(c3, x), x, one));
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_add_ps(x, x), s), _mm512_mul_ps(e, s));
        __m512 g = _mm512_fmadd_ps(t, du, s);
        _mm512_mask_storeu_ps(dinp + i, k, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dout + i), g,
                                                          _mm512_maskz_loadu_ps(k, dinp + i)));
    }
}
LLM__T_AVX2 static inline void llm__gelu_core_avx2(__m256 x, __m256 *s, __m256 *e) {
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 z = _mm256_mul_ps(_mm256_set1_ps(2.0f * LLM__GELU_K), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    z = _mm256_min_ps(_mm256_set1_ps(LLM__GELU_ZMAX), _mm256_max_ps(_mm256_set1_ps(-LLM__GELU_ZMAX), z));
    *e = llm__exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), z));
    *s = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), *e));
}
LLM__T_AVX2 static void llm__gelu_fwd_avx2(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        __m256i k = llm__mask8(n - i < 8 ? LLM__CAST(int, n - i) : 8);
        __m256 x = llm__ld8(inp + i, k), s, e;
        llm__gelu_core_avx2(x, &s, &e);
        llm__st8(out + i, k, _mm256_mul_ps(x, s));
    }
}
LLM__T_AVX2 static void llm__gelu_bwd_avx2(float *dinp, const float *inp, const float *dout, size_t n) {
    const __m256 c3 = _mm256_set1_ps(3.0f * 0.044715f), one = _mm256_set1_ps(1.0f), kk = _mm256_set1_ps(LLM__GELU_K);
    for (size_t i = 0; i < n; i += 8) {
        __m256i k = llm__mask8(n - i < 8 ? LLM__CAST(int, n - i) : 8);
        __m256 x = llm__ld8(inp + i, k), s, e;
        llm__gelu_core_avx2(x, &s, &e);
        __m256 du = _mm256_mul_ps(kk, _mm256_fmadd_ps(_mm256_mul_ps(c3, x), x, one));
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(x, x), s), _mm256_mul_ps(e, s));
        __m256 g = _mm256_fmadd_ps(t, du, s);
        llm__st8(dinp + i, k, _mm256_fmadd_ps(llm__ld8(dout + i, k), g,
                                                         llm__ld8(dinp + i, k)));
    }
}
#endif
static LLM__UNUSED void llm__gelu_fwd_fast(float *out, const float *inp, size_t n) {
    LLM__DISPATCH(llm__gelu_fwd, (out, inp, n));
    llm__gelu_fwd_ref(out, inp, n);
}
static LLM__UNUSED void llm__gelu_bwd_fast(float *dinp, const float *inp, const float *dout, size_t n) {
    LLM__DISPATCH(llm__gelu_bwd, (dinp, inp, dout, n));
    llm__gelu_bwd_ref(dinp, inp, dout, n);
}

/* ---- residual: bandwidth-bound adds, exact (same operations as the reference) ------- */
#ifdef LLM__X86
LLM__T_AVX512 static void llm__residual_fwd_avx512(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = llm__mask16(n - i < 16 ? LLM__CAST(int, n - i) : 16);
        _mm512_mask_storeu_ps(out + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i)));
    }
}
LLM__T_AVX512 static void llm__residual_bwd_avx512(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = llm__mask16(n - i < 16 ? LLM__CAST(int, n - i) : 16);
        __m512 d = _mm512_maskz_loadu_ps(k, dout + i);
        _mm512_mask_storeu_ps(da + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, da + i), d));
        _mm512_mask_storeu_ps(db + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, db + i), d));
    }
}
LLM__T_AVX2 static void llm__residual_fwd_avx2(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        __m256i k = llm__mask8(n - i < 8 ? LLM__CAST(int, n - i) : 8);
        llm__st8(out + i, k, _mm256_add_ps(llm__ld8(a + i, k), llm__ld8(b + i, k)));
    }
}
LLM__T_AVX2 static void llm__residual_bwd_avx2(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        __m256i k = llm__mask8(n - i < 8 ? LLM__CAST(int, n - i) : 8);
        __m256 d = llm__ld8(dout + i, k);
        llm__st8(da + i, k, _mm256_add_ps(llm__ld8(da + i, k), d));
        llm__st8(db + i, k, _mm256_add_ps(llm__ld8(db + i, k), d));
    }
}
#endif
static LLM__UNUSED void llm__residual_fwd_fast(float *out, const float *a, const float *b, size_t n) {
    LLM__DISPATCH(llm__residual_fwd, (out, a, b, n));
    llm__residual_fwd_ref(out, a, b, n);
}
static LLM__UNUSED void llm__residual_bwd_fast(float *da, float *db, const float *dout, size_t n) {
    LLM__DISPATCH(llm__residual_bwd, (da, db, dout, n));
    llm__residual_bwd_ref(da, db, dout, n);
}

/* ---- cross-entropy ------------------------------------------------------------------------
 * Forward: per row a max pass, then Σ exp(x - max) (the row, 200 KB at V = 50257, is
 * read back from L2). Masked tail lanes load -inf, whose exp is exactly 0.
 * Backward: x = exp(x - lse)·dloss over the row, then the target's element is redone
 * with the reference's formula (expf(x_y - lse) - 1)·dloss. */
#ifdef LLM__X86
LLM__T_AVX512 static void llm__crossentropy_fwd_avx512(float *losses, float *lse, const float *logits,
                                                       const int *targets, int N, int V) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int n = 0; n < N; n++) {
        const float *x = logits + LLM__CAST(size_t, n) * V;
        __m512 m0 = ninf, m1 = ninf, s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 32 <= V; i += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i)); m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        }
        for (; i < V; i += 16) m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(ninf, llm__mask16(V - i), x + i));
        float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        __m512 mv = _mm512_set1_ps(m);
        for (i = 0; i + 32 <= V; i += 32) {
            s0 = _mm512_add_ps(s0, llm__exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv)));
            s1 = _mm512_add_ps(s1, llm__exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), mv)));
        }
        for (; i < V; i += 16)
            s0 = _mm512_add_ps(s0, llm__exp_avx512(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, llm__mask16(V - i), x + i), mv)));
        lse[n] = m + logf(_mm512_reduce_add_ps(_mm512_add_ps(s0, s1)));
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - x[targets[n]];
    }
}
LLM__T_AVX512 static void llm__crossentropy_bwd_avx512(float *logits, const float *lse, const int *targets,
                                                       float dloss, int N, int V) {
    const __m512 dl = _mm512_set1_ps(dloss);
    for (int n = 0; n < N; n++) {
        float *x = logits + LLM__CAST(size_t, n) * V;
        int y = targets[n];
        if (y < 0) { memset(x, 0, LLM__CAST(size_t, V) * sizeof(float)); continue; }
        float xy = x[y];
        __m512 l = _mm512_set1_ps(lse[n]);
        for (int i = 0; i < V; i += 16) {
            __mmask16 k = llm__mask16(V - i);
            __m512 p = llm__exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), l));
            _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(p, dl));
        }
        x[y] = (expf(xy - lse[n]) - 1.0f) * dloss;
    }
}
LLM__T_AVX2 static void llm__crossentropy_fwd_avx2(float *losses, float *lse, const float *logits,
                                                   const int *targets, int N, int V) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int n = 0; n < N; n++) {
        const float *x = logits + LLM__CAST(size_t, n) * V;
        __m256 m0 = ninf, m1 = ninf, s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 16 <= V; i += 16) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i)); m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
        }
        for (; i < V; i += 8) {   /* masked lanes become -inf */
            __m256i k = llm__mask8(V - i);
            m0 = _mm256_max_ps(m0, _mm256_blendv_ps(ninf, llm__ld8(x + i, k), _mm256_castsi256_ps(k)));
        }
        float m = llm__vmax8(_mm256_max_ps(m0, m1));
        __m256 mv = _mm256_set1_ps(m);
        for (i = 0; i + 16 <= V; i += 16) {
            s0 = _mm256_add_ps(s0, llm__exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
            s1 = _mm256_add_ps(s1, llm__exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv)));
        }
        for (; i < V; i += 8) {
            __m256i k = llm__mask8(V - i);
            __m256 e = llm__exp_avx2(_mm256_sub_ps(llm__ld8(x + i, k), mv));
            s0 = _mm256_add_ps(s0, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
        }
        lse[n] = m + logf(llm__vsum8(_mm256_add_ps(s0, s1)));
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - x[targets[n]];
    }
}
LLM__T_AVX2 static void llm__crossentropy_bwd_avx2(float *logits, const float *lse, const int *targets,
                                                   float dloss, int N, int V) {
    const __m256 dl = _mm256_set1_ps(dloss);
    for (int n = 0; n < N; n++) {
        float *x = logits + LLM__CAST(size_t, n) * V;
        int y = targets[n];
        if (y < 0) { memset(x, 0, LLM__CAST(size_t, V) * sizeof(float)); continue; }
        float xy = x[y];
        __m256 l = _mm256_set1_ps(lse[n]);
        for (int i = 0; i < V; i += 8) {
            __m256i k = llm__mask8(V - i);
            __m256 p = llm__exp_avx2(_mm256_sub_ps(llm__ld8(x + i, k), l));
            llm__st8(x + i, k, _mm256_mul_ps(p, dl));
        }
        x[y] = (expf(xy - lse[n]) - 1.0f) * dloss;
    }
}
#endif
static LLM__UNUSED void llm__crossentropy_fwd_fast(float *losses, float *lse, const float *logits,
                                                   const int *targets, int N, int V) {
    LLM__DISPATCH(llm__crossentropy_fwd, (losses, lse, logits, targets, N, V));
    llm__crossentropy_fwd_ref(losses, lse, logits, targets, N, V);
}
static LLM__UNUSED void llm__crossentropy_bwd_fast(float *logits, const float *lse, const int *targets,
                                                   float dloss, int N, int V) {
    LLM__DISPATCH(llm__crossentropy_bwd, (logits, lse, targets, dloss, N, V));
    llm__crossentropy_bwd_ref(logits, lse, targets, dloss, N, V);
}

/* ---- Σ x² in double: 8 floats widened to doubles per FMA, four accumulators ----------- */
#ifdef LLM__X86
LLM__T_AVX512 static double llm__sumsq_avx512(const float *x, size_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd(), a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d v0 = _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(x + i)), v1 = _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(x + i + 8));
        __m512d v2 = _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(x + i + 16)), v3 = _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(x + i + 24));
        a0 = _mm512_fmadd_pd(v0, v0, a0); a1 = _mm512_fmadd_pd(v1, v1, a1);
        a2 = _mm512_fmadd_pd(v2, v2, a2); a3 = _mm512_fmadd_pd(v3, v3, a3);
    }
    double s = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
    for (; i < n; i++) s += LLM__CAST(double, x[i]) * x[i];
    return s;
}
LLM__T_AVX2 static double llm__sumsq_avx2(const float *x, size_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), v3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        a0 = _mm256_fmadd_pd(v0, v0, a0); a1 = _mm256_fmadd_pd(v1, v1, a1);
        a2 = _mm256_fmadd_pd(v2, v2, a2); a3 = _mm256_fmadd_pd(v3, v3, a3);
    }
    __m256d a = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += LLM__CAST(double, x[i]) * x[i];
    return s;
}
#endif
static LLM__UNUSED double llm__sumsq_fast(const float *x, size_t n) {
#ifdef LLM__X86
    llm_simd lvl = llm_simd_active();
    if (lvl == LLM_SIMD_AVX512) return llm__sumsq_avx512(x, n);
    if (lvl == LLM_SIMD_AVX2) return llm__sumsq_avx2(x, n);
#endif
    return llm__sumsq_ref(x, n);
}

/* ---- AdamW: the reference's operations in its order (no FMA), 16 or 8 at a time ------- */
#ifdef LLM__X86
LLM__T_AVX512 static void llm__adamw_avx512(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                                            float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, LLM__CAST(float, t)), bc2 = 1.0f - powf(beta2, LLM__CAST(float, t));
    const __m512 b1 = _mm512_set1_ps(beta1), b2 = _mm512_set1_ps(beta2), ob1 = _mm512_set1_ps(1.0f - beta1);
    const __m512 ob2 = _mm512_set1_ps(1.0f - beta2), lrwd = _mm512_set1_ps(lr * wd), vlr = _mm512_set1_ps(lr);
    const __m512 vbc1 = _mm512_set1_ps(bc1), vbc2 = _mm512_set1_ps(bc2), veps = _mm512_set1_ps(eps);
    const __m512 gs = _mm512_set1_ps(grad_scale);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = llm__mask16(n - i < 16 ? LLM__CAST(int, n - i) : 16);
        __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, grad + i), gs);
        __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_maskz_loadu_ps(k, m + i)), _mm512_mul_ps(ob1, g));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(b2, _mm512_maskz_loadu_ps(k, v + i)), _mm512_mul_ps(_mm512_mul_ps(ob2, g), g));
        __m512 pi = _mm512_maskz_loadu_ps(k, p + i);
        pi = _mm512_sub_ps(pi, _mm512_mul_ps(lrwd, pi));
        __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_div_ps(vi, vbc2)), veps);
        pi = _mm512_sub_ps(pi, _mm512_div_ps(_mm512_mul_ps(vlr, _mm512_div_ps(mi, vbc1)), den));
        _mm512_mask_storeu_ps(m + i, k, mi); _mm512_mask_storeu_ps(v + i, k, vi); _mm512_mask_storeu_ps(p + i, k, pi);
    }
}
LLM__T_AVX2 static void llm__adamw_avx2(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                                        float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, LLM__CAST(float, t)), bc2 = 1.0f - powf(beta2, LLM__CAST(float, t));
    const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2), ob1 = _mm256_set1_ps(1.0f - beta1);
    const __m256 ob2 = _mm256_set1_ps(1.0f - beta2), lrwd = _mm256_set1_ps(lr * wd), vlr = _mm256_set1_ps(lr);
    const __m256 vbc1 = _mm256_set1_ps(bc1), vbc2 = _mm256_set1_ps(bc2), veps = _mm256_set1_ps(eps);
    const __m256 gs = _mm256_set1_ps(grad_scale);
    for (size_t i = 0; i < n; i += 8) {
        __m256i k = llm__mask8(n - i < 8 ? LLM__CAST(int, n - i) : 8);
        __m256 g = _mm256_mul_ps(llm__ld8(grad + i, k), gs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, llm__ld8(m + i, k)), _mm256_mul_ps(ob1, g));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, llm__ld8(v + i, k)), _mm256_mul_ps(_mm256_mul_ps(ob2, g), g));
        __m256 pi = llm__ld8(p + i, k);
        pi = _mm256_sub_ps(pi, _mm256_mul_ps(lrwd, pi));
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, vbc2)), veps);
        pi = _mm256_sub_ps(pi, _mm256_div_ps(_mm256_mul_ps(vlr, _mm256_div_ps(mi, vbc1)), den));
        llm__st8(m + i, k, mi); llm__st8(v + i, k, vi); llm__st8(p + i, k, pi);
    }
}
#endif
static LLM__UNUSED void llm__adamw_fast(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                                        float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    LLM__DISPATCH(llm__adamw, (p, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t));
    llm__adamw_ref(p, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t);
}

/* ---- attention ----------------------------------------------------------------------------
 * Flash-attention's online softmax, laid out so that the vector lanes are queries.
 * A block of W queries (W = 16 for AVX-512, 8 for AVX2) is packed transposed, scaled by
 * 1/sqrt(HS): qt[d][i] = q_{t0+i}[d]/sqrt(HS) (on the stack, HS·W floats). Then for each
 * group of 8 keys j, the scores of all W queries come out as one vector each,
 *     s_j[i] = Σ_d qt[d][i] · k_j[d]       (HS FMAs per key: one load, one broadcast),
 * and everything the softmax needs is lane-wise: no horizontal reductions at all.
 * With the running max m and sum l (vectors over the W queries), per group:
 *     m' = max(m, max_j s_j),  α = exp(m - m'),  p_j = exp(s_j - m'),
 *     l  = l·α + Σ_j p_j,      ot[d] = ot[d]·α + Σ_j p_j · v_j[d],
 * where ot (HS x W, on the stack) holds the unnormalised outputs transposed; at the end
 * out_t = ot[·][i] / l[i] and lse_t = m + log l. Causality: in groups that reach past t0,
 * scores with key j > t_i are set to -inf (p = exp(-inf) = 0 exactly). Every query reads
 * the K, V rows it needs straight from qkv (for T·HS·8 bytes up to about 1 MB they stay
 * in L2), and nothing of size T x T is ever stored. Stack: 2·HS·W floats (32 KB at HS 256).
 *
 * Backward (all query heads of one key/value group, so that their dk, dv sums stay in
 * one thread), per query block, recomputing p = exp(s - lse) as the reference does:
 *     dp_j = Σ_d dot[d] · v_j[d]              (dot = dout block, transposed like qt)
 *     ds_j = p_j (dp_j - D) / sqrt(HS),       D_i = dout_i · out_i
 *     dqt[d] += Σ_j ds_j · k_j[d]             (lane-wise, like ot)
 *     dv_j += Σ_i p_j[i] dout_i,  dk_j += Σ_i ds_j[i] q_i   (across lanes: vectorised over d)
 * Lanes past T are padding: their q and dout are 0 and their lse +inf, so p = ds = 0.
 * HS above LLM__ATT_HSMAX (or below 1) falls back to the reference head loop. */
#define LLM__ATT_HSMAX 256

/* dst[d*W + i] = src[i*ld + d]·scale for i < n, 0 for n <= i < W: a block of rows, transposed. */
static void llm__att_pack(float *dst, int W, const float *src, size_t ld, int n, int HS, float scale) {
    for (int i = 0; i < W; i++) {
        const float *s = src + LLM__CAST(size_t, i) * ld;
        for (int d = 0; d < HS; d++) dst[d * W + i] = i < n ? s[d] * scale : 0.0f;
    }
}
#define LLM__REP8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define LLM__REP4(M) M(0) M(1) M(2) M(3)

#ifdef LLM__X86
LLM__T_AVX512 static void llm__attention_fwd_avx512(float *out, float *lse, const float *qkv, int b, int h,
                                                    int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    const size_t qoff = LLM__CAST(size_t, h) * HS;
    const size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const float *base = qkv + LLM__CAST(size_t, b) * T * row;
    float qt[LLM__ATT_HSMAX * 16] __attribute__((aligned(64)));
    float ot[LLM__ATT_HSMAX * 16] __attribute__((aligned(64)));
    float lm[16] __attribute__((aligned(64))), ll[16] __attribute__((aligned(64)));
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int t0 = 0; t0 < T; t0 += 16) {
        const int nq = T - t0 < 16 ? T - t0 : 16, kend = t0 + nq;
        llm__att_pack(qt, 16, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);
        for (int d = 0; d < HS; d++) _mm512_store_ps(ot + d * 16, _mm512_setzero_ps());
        __m512 m = ninf, l = _mm512_setzero_ps();
        const __m512 tq = _mm512_add_ps(_mm512_set1_ps(LLM__CAST(float, t0)), iota);
        for (int j0 = 0; j0 < kend; j0 += 8) {
            const int last = (kend - j0 < 8 ? kend - j0 : 8) - 1;   /* keys past it reuse its row */
#define LLM__KV(j) const float *k##j = base + LLM__CAST(size_t, j0 + (j < last ? j : last)) * row + koff; \
            const float *v##j = k##j + (voff - koff); __m512 s##j = _mm512_setzero_ps();
            LLM__REP8(LLM__KV)
#undef LLM__KV
            for (int d = 0; d < HS; d++) {
                const __m512 q = _mm512_load_ps(qt + d * 16);
#define LLM__S(j) s##j = _mm512_fmadd_ps(q, _mm512_set1_ps(k##j[d]), s##j);
                LLM__REP8(LLM__S)
#undef LLM__S
            }
            if (j0 + 7 > t0) {   /* causal mask: key j0+j is visible to lane i iff j0+j <= t0+i */
#define LLM__MASK(j) s##j = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_set1_ps(LLM__CAST(float, j0 + j)), tq, \
                                 _CMP_LE_OQ), ninf, s##j);
                LLM__REP8(LLM__MASK)
#undef LLM__MASK
            }
            __m512 mx = _mm512_max_ps(_mm512_max_ps(_mm512_max_ps(s0, s1), _mm512_max_ps(s2, s3)),
                                      _mm512_max_ps(_mm512_max_ps(s4, s5), _mm512_max_ps(s6, s7)));
            mx = _mm512_max_ps(m, mx);
            const __m512 alpha = llm__exp_avx512(_mm512_sub_ps(m, mx));
            m = mx;
#define LLM__P(j) const __m512 p##j = llm__exp_avx512(_mm512_sub_ps(s##j, m));
            LLM__REP8(LLM__P)
#undef LLM__P
            l = _mm512_fmadd_ps(l, alpha, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p0, p1), _mm512_add_ps(p2, p3)),
                                                        _mm512_add_ps(_mm512_add_ps(p4, p5), _mm512_add_ps(p6, p7))));
            for (int d = 0; d < HS; d++) {
                __m512 o = _mm512_mul_ps(_mm512_load_ps(ot + d * 16), alpha);
#define LLM__PV(j) o = _mm512_fmadd_ps(p##j, _mm512_set1_ps(v##j[d]), o);
                LLM__REP8(LLM__PV)
#undef LLM__PV
                _mm512_store_ps(ot + d * 16, o);
            }
        }
        _mm512_store_ps(lm, m); _mm512_store_ps(ll, l);
        for (int i = 0; i < nq; i++) {
            float *o = out + (LLM__CAST(size_t, b) * T + t0 + i) * C + qoff;
            for (int d = 0; d < HS; d++) o[d] = ot[d * 16 + i] / ll[i];
            lse[(LLM__CAST(size_t, b) * NH + h) * T + t0 + i] = lm[i] + logf(ll[i]);
        }
    }
}

LLM__T_AVX2 static void llm__attention_fwd_avx2(float *out, float *lse, const float *qkv, int b, int h,
                                                int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    const size_t qoff = LLM__CAST(size_t, h) * HS;
    const size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const float *base = qkv + LLM__CAST(size_t, b) * T * row;
    float qt[LLM__ATT_HSMAX * 8] __attribute__((aligned(32)));
    float ot[LLM__ATT_HSMAX * 8] __attribute__((aligned(32)));
    float lm[8] __attribute__((aligned(32))), ll[8] __attribute__((aligned(32)));
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256 iota = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (int t0 = 0; t0 < T; t0 += 8) {
        const int nq = T - t0 < 8 ? T - t0 : 8, kend = t0 + nq;
        llm__att_pack(qt, 8, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);
        for (int d = 0; d < HS; d++) _mm256_store_ps(ot + d * 8, _mm256_setzero_ps());
        __m256 m = ninf, l = _mm256_setzero_ps();
        const __m256 tq = _mm256_add_ps(_mm256_set1_ps(LLM__CAST(float, t0)), iota);
        for (int j0 = 0; j0 < kend; j0 += 8) {
            const int last = (kend - j0 < 8 ? kend - j0 : 8) - 1;
#define LLM__KV(j) const float *k##j = base + LLM__CAST(size_t, j0 + (j < last ? j : last)) * row + koff; \
            const float *v##j = k##j + (voff - koff); __m256 s##j = _mm256_setzero_ps();
            LLM__REP8(LLM__KV)
#undef LLM__KV
            for (int d = 0; d < HS; d++) {
                const __m256 q = _mm256_load_ps(qt + d * 8);
#define LLM__S(j) s##j = _mm256_fmadd_ps(q, _mm256_broadcast_ss(k##j + d), s##j);
                LLM__REP8(LLM__S)
#undef LLM__S
            }
            if (j0 + 7 > t0) {
#define LLM__MASK(j) s##j = _mm256_blendv_ps(ninf, s##j, _mm256_cmp_ps(_mm256_set1_ps(LLM__CAST(float, j0 + j)), tq, \
                                 _CMP_LE_OQ));
                LLM__REP8(LLM__MASK)
#undef LLM__MASK
            }
            __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(s0, s1), _mm256_max_ps(s2, s3)),
                                      _mm256_max_ps(_mm256_max_ps(s4, s5), _mm256_max_ps(s6, s7)));
            mx = _mm256_max_ps(m, mx);
            const __m256 alpha = llm__exp_avx2(_mm256_sub_ps(m, mx));
            m = mx;
#define LLM__P(j) const __m256 p##j = llm__exp_avx2(_mm256_sub_ps(s##j, m));
            LLM__REP8(LLM__P)
#undef LLM__P
            l = _mm256_fmadd_ps(l, alpha, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(p0, p1), _mm256_add_ps(p2, p3)),
                                                        _mm256_add_ps(_mm256_add_ps(p4, p5), _mm256_add_ps(p6, p7))));
            for (int d = 0; d < HS; d++) {
                __m256 o = _mm256_mul_ps(_mm256_load_ps(ot + d * 8), alpha);
#define LLM__PV(j) o = _mm256_fmadd_ps(p##j, _mm256_broadcast_ss(v##j + d), o);
                LLM__REP8(LLM__PV)
#undef LLM__PV
                _mm256_store_ps(ot + d * 8, o);
            }
        }
        _mm256_store_ps(lm, m); _mm256_store_ps(ll, l);
        for (int i = 0; i < nq; i++) {
            float *o = out + (LLM__CAST(size_t, b) * T + t0 + i) * C + qoff;
            for (int d = 0; d < HS; d++) o[d] = ot[d * 8 + i] / ll[i];
            lse[(LLM__CAST(size_t, b) * NH + h) * T + t0 + i] = lm[i] + logf(ll[i]);
        }
    }
}
#endif
static LLM__UNUSED void llm__attention_fwd_fast(float *out, float *lse, const float *qkv, int b, int h,
                                                int T, int NH, int NKV, int HS) {
    if (HS >= 1 && HS <= LLM__ATT_HSMAX) LLM__DISPATCH(llm__attention_fwd, (out, lse, qkv, b, h, T, NH, NKV, HS));
    llm__attention_fwd_head(out, lse, qkv, b, h, T, NH, NKV, HS);
}

/* Per query-block statistics for backward: D_i = dout_i·out_i and L_i = lse_i, with
 * padding lanes (i >= n) at D = 0, L = +inf. */
static void llm__att_bwd_stats(float *D, float *L, int W, const float *dout, const float *out, const float *lse,
                               size_t C, int n, int HS) {
    for (int i = 0; i < W; i++) {
        float s = 0;
        if (i < n) for (int d = 0; d < HS; d++) s += dout[LLM__CAST(size_t, i) * C + d] * out[LLM__CAST(size_t, i) * C + d];
        D[i] = s;
        L[i] = i < n ? lse[i] : INFINITY;
    }
}

#ifdef LLM__X86
/* dv += Σ_i p[i] dO_i, dk += Σ_i ds[i] q_i over the n rows of a query block, 64 columns
 * (4 vectors each) at a time so that 8 independent sums are in flight. */
LLM__T_AVX512 static void llm__att_kv_rows_avx512(float *dk, float *dv, const float *p, const float *ds,
                                                  const float *dO, size_t ldo, const float *q, size_t ldq,
                                                  int n, int HS) {
    for (int c = 0; c < HS; c += 64) {
        const __mmask16 m0 = llm__mask16(HS - c), m1 = llm__mask16(HS - c - 16);
        const __mmask16 m2 = llm__mask16(HS - c - 32), m3 = llm__mask16(HS - c - 48);
#define LLM__LD(j) __m512 a##j = _mm512_maskz_loadu_ps(m##j, dv + c + 16 * j), \
                          b##j = _mm512_maskz_loadu_ps(m##j, dk + c + 16 * j);
        LLM__REP4(LLM__LD)
#undef LLM__LD
        for (int i = 0; i < n; i++) {
            const __m512 pi = _mm512_set1_ps(p[i]), si = _mm512_set1_ps(ds[i]);
            const float *o = dO + LLM__CAST(size_t, i) * ldo + c, *qq = q + LLM__CAST(size_t, i) * ldq + c;
#define LLM__ACC(j) a##j = _mm512_fmadd_ps(pi, _mm512_maskz_loadu_ps(m##j, o + 16 * j), a##j); \
                    b##j = _mm512_fmadd_ps(si, _mm512_maskz_loadu_ps(m##j, qq + 16 * j), b##j);
            LLM__REP4(LLM__ACC)
#undef LLM__ACC
        }
#define LLM__ST(j) _mm512_mask_storeu_ps(dv + c + 16 * j, m##j, a##j); _mm512_mask_storeu_ps(dk + c + 16 * j, m##j, b##j);
        LLM__REP4(LLM__ST)
#undef LLM__ST
    }
}
LLM__T_AVX512 static void llm__attention_bwd_group_avx512(float *dqkv, const float *dout, const float *qkv,
                                                          const float *out, const float *lse, int b, int g,
                                                          int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    const size_t koff = C + LLM__CAST(size_t, g) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const size_t off = LLM__CAST(size_t, b) * T * row;
    const float *base = qkv + off;
    float *dbase = dqkv + off;
    const int grp = NH / NKV;
    float qt[LLM__ATT_HSMAX * 16] __attribute__((aligned(64)));
    float dot[LLM__ATT_HSMAX * 16] __attribute__((aligned(64)));
    float dqt[LLM__ATT_HSMAX * 16] __attribute__((aligned(64)));
    float Dl[16] __attribute__((aligned(64))), Ll[16] __attribute__((aligned(64)));
    float pj[8][16] __attribute__((aligned(64))), dsj[8][16] __attribute__((aligned(64)));
    const __m512 ninf = _mm512_set1_ps(-INFINITY), vscale = _mm512_set1_ps(scale);
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int h = g * grp; h < (g + 1) * grp; h++) {
        const size_t qoff = LLM__CAST(size_t, h) * HS;
        for (int t0 = 0; t0 < T; t0 += 16) {
            const int nq = T - t0 < 16 ? T - t0 : 16, kend = t0 + nq;
            const size_t orow = (LLM__CAST(size_t, b) * T + t0) * C + qoff;
            llm__att_pack(qt, 16, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);
            llm__att_pack(dot, 16, dout + orow, C, nq, HS, 1.0f);
            llm__att_bwd_stats(Dl, Ll, 16, dout + orow, out + orow, lse + (LLM__CAST(size_t, b) * NH + h) * T + t0, C, nq, HS);
            for (int d = 0; d < HS; d++) _mm512_store_ps(dqt + d * 16, _mm512_setzero_ps());
            const __m512 Dv = _mm512_load_ps(Dl), Lv = _mm512_load_ps(Ll);
            const __m512 tq = _mm512_add_ps(_mm512_set1_ps(LLM__CAST(float, t0)), iota);
            for (int j0 = 0; j0 < kend; j0 += 8) {
                const int nk = kend - j0 < 8 ? kend - j0 : 8, last = nk - 1;
#define LLM__KV(j) const float *k##j = base + LLM__CAST(size_t, j0 + (j < last ? j : last)) * row + koff; \
                const float *v##j = k##j + (voff - koff); __m512 s##j = _mm512_setzero_ps(), e##j = s##j;
                LLM__REP8(LLM__KV)
#undef LLM__KV
                for (int d = 0; d < HS; d++) {
                    const __m512 q = _mm512_load_ps(qt + d * 16), o = _mm512_load_ps(dot + d * 16);
#define LLM__S(j) s##j = _mm512_fmadd_ps(q, _mm512_set1_ps(k##j[d]), s##j); \
                  e##j = _mm512_fmadd_ps(o, _mm512_set1_ps(v##j[d]), e##j);
                    LLM__REP8(LLM__S)
#undef LLM__S
                }
                if (j0 + 7 > t0) {
#define LLM__MASK(j) s##j = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(_mm512_set1_ps(LLM__CAST(float, j0 + j)), tq, \
                                     _CMP_LE_OQ), ninf, s##j);
                    LLM__REP8(LLM__MASK)
#undef LLM__MASK
                }
                /* s becomes p = exp(s - lse), e becomes ds = p (dp - D) / sqrt(HS) */
#define LLM__DS(j) s##j = llm__exp_avx512(_mm512_sub_ps(s##j, Lv)); \
                   e##j = _mm512_mul_ps(_mm512_mul_ps(s##j, _mm512_sub_ps(e##j, Dv)), vscale); \
                   _mm512_store_ps(pj[j], s##j); _mm512_store_ps(dsj[j], e##j);
                LLM__REP8(LLM__DS)
#undef LLM__DS
                for (int d = 0; d < HS; d++) {
                    __m512 a = _mm512_load_ps(dqt + d * 16);
#define LLM__DQ(j) a = _mm512_fmadd_ps(e##j, _mm512_set1_ps(k##j[d]), a);
                    LLM__REP8(LLM__DQ)
#undef LLM__DQ
                    _mm512_store_ps(dqt + d * 16, a);
                }
                for (int j = 0; j < nk; j++) {
                    float *dk = dbase + LLM__CAST(size_t, j0 + j) * row + koff;
                    llm__att_kv_rows_avx512(dk, dk + (voff - koff), pj[j], dsj[j], dout + orow, C,
                                            base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS);
                }
            }
            for (int i = 0; i < nq; i++) {
                float *dq = dbase + LLM__CAST(size_t, t0 + i) * row + qoff;
                for (int d = 0; d < HS; d++) dq[d] += dqt[d * 16 + i];
            }
        }
    }
}

/* AVX2 has 16 registers: the score and dp sums go 4 keys at a time. */
LLM__T_AVX2 static void llm__att_kv_rows_avx2(float *dk, float *dv, const float *p, const float *ds,
                                              const float *dO, size_t ldo, const float *q, size_t ldq,
                                              int n, int HS) {
    for (int c = 0; c < HS; c += 32) {
        const __m256i m0 = llm__mask8(HS - c), m1 = llm__mask8(HS - c - 8);
        const __m256i m2 = llm__mask8(HS - c - 16), m3 = llm__mask8(HS - c - 24);
#define LLM__LD(j) __m256 a##j = llm__ld8(dv + c + 8 * j, m##j), b##j = llm__ld8(dk + c + 8 * j, m##j);
        LLM__REP4(LLM__LD)
#undef LLM__LD
        for (int i = 0; i < n; i++) {
            const __m256 pi = _mm256_set1_ps(p[i]), si = _mm256_set1_ps(ds[i]);
            const float *o = dO + LLM__CAST(size_t, i) * ldo + c, *qq = q + LLM__CAST(size_t, i) * ldq + c;
#define LLM__ACC(j) a##j = _mm256_fmadd_ps(pi, llm__ld8(o + 8 * j, m##j), a##j); \
                    b##j = _mm256_fmadd_ps(si, llm__ld8(qq + 8 * j, m##j), b##j);
            LLM__REP4(LLM__ACC)
#undef LLM__ACC
        }
#define LLM__ST(j) llm__st8(dv + c + 8 * j, m##j, a##j); llm__st8(dk + c + 8 * j, m##j, b##j);
        LLM__REP4(LLM__ST)
#undef LLM__ST
    }
}
LLM__T_AVX2 static void llm__attention_bwd_group_avx2(float *dqkv, const float *dout, const float *qkv,
                                                      const float *out, const float *lse, int b, int g,
                                                      int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    const size_t koff = C + LLM__CAST(size_t, g) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const size_t off = LLM__CAST(size_t, b) * T * row;
    const float *base = qkv + off;
    float *dbase = dqkv + off;
    const int grp = NH / NKV;
    float qt[LLM__ATT_HSMAX * 8] __attribute__((aligned(32)));
    float dot[LLM__ATT_HSMAX * 8] __attribute__((aligned(32)));
    float dqt[LLM__ATT_HSMAX * 8] __attribute__((aligned(32)));
    float Dl[8] __attribute__((aligned(32))), Ll[8] __attribute__((aligned(32)));
    float pj[4][8] __attribute__((aligned(32))), dsj[4][8] __attribute__((aligned(32)));
    const __m256 ninf = _mm256_set1_ps(-INFINITY), vscale = _mm256_set1_ps(scale);
    const __m256 iota = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    for (int h = g * grp; h < (g + 1) * grp; h++) {
        const size_t qoff = LLM__CAST(size_t, h) * HS;
        for (int t0 = 0; t0 < T; t0 += 8) {
            const int nq = T - t0 < 8 ? T - t0 : 8, kend = t0 + nq;
            const size_t orow = (LLM__CAST(size_t, b) * T + t0) * C + qoff;
            llm__att_pack(qt, 8, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);
            llm__att_pack(dot, 8, dout + orow, C, nq, HS, 1.0f);
            llm__att_bwd_stats(Dl, Ll, 8, dout + orow, out + orow, lse + (LLM__CAST(size_t, b) * NH + h) * T + t0, C, nq, HS);
            for (int d = 0; d < HS; d++) _mm256_store_ps(dqt + d * 8, _mm256_setzero_ps());
            const __m256 Dv = _mm256_load_ps(Dl), Lv = _mm256_load_ps(Ll);
            const __m256 tq = _mm256_add_ps(_mm256_set1_ps(LLM__CAST(float, t0)), iota);
            for (int j0 = 0; j0 < kend; j0 += 4) {
                const int nk = kend - j0 < 4 ? kend - j0 : 4, last = nk - 1;
#define LLM__KV(j) const float *k##j = base + LLM__CAST(size_t, j0 + (j < last ? j : last)) * row + koff; \
                const float *v##j = k##j + (voff - koff); __m256 s##j = _mm256_setzero_ps(), e##j = s##j;
                LLM__REP4(LLM__KV)
#undef LLM__KV
                for (int d = 0; d < HS; d++) {
                    const __m256 q = _mm256_load_ps(qt + d * 8), o = _mm256_load_ps(dot + d * 8);
#define LLM__S(j) s##j = _mm256_fmadd_ps(q, _mm256_broadcast_ss(k##j + d), s##j); \
                  e##j = _mm256_fmadd_ps(o, _mm256_broadcast_ss(v##j + d), e##j);
                    LLM__REP4(LLM__S)
#undef LLM__S
                }
                if (j0 + 3 > t0) {
#define LLM__MASK(j) s##j = _mm256_blendv_ps(ninf, s##j, _mm256_cmp_ps(_mm256_set1_ps(LLM__CAST(float, j0 + j)), tq, \
                                     _CMP_LE_OQ));
                    LLM__REP4(LLM__MASK)
#undef LLM__MASK
                }
#define LLM__DS(j) s##j = llm__exp_avx2(_mm256_sub_ps(s##j, Lv)); \
                   e##j = _mm256_mul_ps(_mm256_mul_ps(s##j, _mm256_sub_ps(e##j, Dv)), vscale); \
                   _mm256_store_ps(pj[j], s##j); _mm256_store_ps(dsj[j], e##j);
                LLM__REP4(LLM__DS)
#undef LLM__DS
                for (int d = 0; d < HS; d++) {
                    __m256 a = _mm256_load_ps(dqt + d * 8);
#define LLM__DQ(j) a = _mm256_fmadd_ps(e##j, _mm256_broadcast_ss(k##j + d), a);
                    LLM__REP4(LLM__DQ)
#undef LLM__DQ
                    _mm256_store_ps(dqt + d * 8, a);
                }
                for (int j = 0; j < nk; j++) {
                    float *dk = dbase + LLM__CAST(size_t, j0 + j) * row + koff;
                    llm__att_kv_rows_avx2(dk, dk + (voff - koff), pj[j], dsj[j], dout + orow, C,
                                          base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS);
                }
            }
            for (int i = 0; i < nq; i++) {
                float *dq = dbase + LLM__CAST(size_t, t0 + i) * row + qoff;
                for (int d = 0; d < HS; d++) dq[d] += dqt[d * 8 + i];
            }
        }
    }
}
#endif
static LLM__UNUSED void llm__attention_bwd_group_fast(float *dqkv, const float *dout, const float *qkv,
                                                      const float *out, const float *lse, int b, int g,
                                                      int T, int NH, int NKV, int HS) {
    if (HS >= 1 && HS <= LLM__ATT_HSMAX)
        LLM__DISPATCH(llm__attention_bwd_group, (dqkv, dout, qkv, out, lse, b, g, T, NH, NKV, HS));
    for (int h = g * (NH / NKV), e = h + NH / NKV; h < e; h++)
        llm__attention_bwd_head(dqkv, dout, qkv, out, lse, b, h, T, NH, NKV, HS);
}

/* ---- RMSNorm (Llama) ------------------------------------------------------------------------
 * Forward per row: r = 1/sqrt(Σx²/C + eps), out = w·(r·x). Backward is split like
 * layernorm's for the CPU backend: dx by rows, dw by channels [c0, c1) over all rows;
 * llm__rmsnorm_bwd_fast (the reference's signature) runs one after the other. */
static void llm__rmsnorm_bwd_dx_ref(float *dinp, const float *dout, const float *inp, const float *w,
                                    const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C, r = rstd[n], gx = 0;
        for (int c = 0; c < C; c++) gx += d[c] * w[c] * x[c];
        gx /= C;
        for (int c = 0; c < C; c++) dx[c] += r * (d[c] * w[c] - x[c] * r * r * gx);
    }
}
static void llm__rmsnorm_bwd_dw_ref(float *dw, const float *dout, const float *inp, const float *rstd,
                                    int N, int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        for (int c = c0; c < c1; c++) dw[c] += d[c] * x[c] * rstd[n];
    }
}
#ifdef LLM__X86
LLM__T_AVX512 static void llm__rmsnorm_fwd_avx512(float *out, float *rstd, const float *inp, const float *w,
                                                  int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        __m512 a = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16) {
            __m512 v = _mm512_maskz_loadu_ps(llm__mask16(C - c), x + c);
            a = _mm512_fmadd_ps(v, v, a);
        }
        float r = 1.0f / sqrtf(_mm512_reduce_add_ps(a) / LLM__CAST(float, C) + eps);
        __m512 rv = _mm512_set1_ps(r);
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            _mm512_mask_storeu_ps(o + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + c),
                                                          _mm512_mul_ps(rv, _mm512_maskz_loadu_ps(k, x + c))));
        }
        rstd[n] = r;
    }
}
LLM__T_AVX512 static void llm__rmsnorm_bwd_dx_avx512(float *dinp, const float *dout, const float *inp, const float *w,
                                                     const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C, r = rstd[n];
        __m512 a = _mm512_setzero_ps();
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            a = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + c), _mm512_maskz_loadu_ps(k, w + c)),
                                _mm512_maskz_loadu_ps(k, x + c), a);
        }
        const __m512 rv = _mm512_set1_ps(r), cx = _mm512_set1_ps(r * r * (_mm512_reduce_add_ps(a) / LLM__CAST(float, C)));
        for (int c = 0; c < C; c += 16) {
            __mmask16 k = llm__mask16(C - c);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, d + c), _mm512_maskz_loadu_ps(k, w + c));
            __m512 t = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(k, x + c), cx, g);
            _mm512_mask_storeu_ps(dx + c, k, _mm512_fmadd_ps(rv, t, _mm512_maskz_loadu_ps(k, dx + c)));
        }
    }
}
LLM__T_AVX512 static void llm__rmsnorm_bwd_dw_avx512(float *dw, const float *dout, const float *inp, const float *rstd,
                                                     int N, int C, int c0, int c1) {
    for (int cb = c0; cb < c1; cb += 64) {
        const __mmask16 k0 = llm__mask16(c1 - cb), k1 = llm__mask16(c1 - cb - 16);
        const __mmask16 k2 = llm__mask16(c1 - cb - 32), k3 = llm__mask16(c1 - cb - 48);
#define LLM__LD(i) __m512 w##i = _mm512_maskz_loadu_ps(k##i, dw + cb + 16 * i);
        LLM__REP4(LLM__LD)
#undef LLM__LD
        for (int n = 0; n < N; n++) {
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;
            const __m512 rv = _mm512_set1_ps(rstd[n]);
#define LLM__ACC(i) w##i = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k##i, d + 16 * i), \
                                           _mm512_maskz_loadu_ps(k##i, x + 16 * i)), rv, w##i);
            LLM__REP4(LLM__ACC)
#undef LLM__ACC
        }
#define LLM__ST(i) _mm512_mask_storeu_ps(dw + cb + 16 * i, k##i, w##i);
        LLM__REP4(LLM__ST)
#undef LLM__ST
    }
}
LLM__T_AVX2 static void llm__rmsnorm_fwd_avx2(float *out, float *rstd, const float *inp, const float *w,
                                              int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < C; c += 8) {
            __m256 v = llm__ld8(x + c, llm__mask8(C - c));
            a = _mm256_fmadd_ps(v, v, a);
        }
        float r = 1.0f / sqrtf(llm__vsum8(a) / LLM__CAST(float, C) + eps);
        __m256 rv = _mm256_set1_ps(r);
        for (int c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            llm__st8(o + c, k, _mm256_mul_ps(llm__ld8(w + c, k), _mm256_mul_ps(rv, llm__ld8(x + c, k))));
        }
        rstd[n] = r;
    }
}
LLM__T_AVX2 static void llm__rmsnorm_bwd_dx_avx2(float *dinp, const float *dout, const float *inp, const float *w,
                                                 const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C, r = rstd[n];
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            a = _mm256_fmadd_ps(_mm256_mul_ps(llm__ld8(d + c, k), llm__ld8(w + c, k)),
                                llm__ld8(x + c, k), a);
        }
        const __m256 rv = _mm256_set1_ps(r), cx = _mm256_set1_ps(r * r * (llm__vsum8(a) / LLM__CAST(float, C)));
        for (int c = 0; c < C; c += 8) {
            __m256i k = llm__mask8(C - c);
            __m256 g = _mm256_mul_ps(llm__ld8(d + c, k), llm__ld8(w + c, k));
            __m256 t = _mm256_fnmadd_ps(llm__ld8(x + c, k), cx, g);
            llm__st8(dx + c, k, _mm256_fmadd_ps(rv, t, llm__ld8(dx + c, k)));
        }
    }
}
LLM__T_AVX2 static void llm__rmsnorm_bwd_dw_avx2(float *dw, const float *dout, const float *inp, const float *rstd,
                                                 int N, int C, int c0, int c1) {
    for (int cb = c0; cb < c1; cb += 32) {
        const __m256i k0 = llm__mask8(c1 - cb), k1 = llm__mask8(c1 - cb - 8);
        const __m256i k2 = llm__mask8(c1 - cb - 16), k3 = llm__mask8(c1 - cb - 24);
#define LLM__LD(i) __m256 w##i = llm__ld8(dw + cb + 8 * i, k##i);
        LLM__REP4(LLM__LD)
#undef LLM__LD
        for (int n = 0; n < N; n++) {
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;
            const __m256 rv = _mm256_set1_ps(rstd[n]);
#define LLM__ACC(i) w##i = _mm256_fmadd_ps(_mm256_mul_ps(llm__ld8(d + 8 * i, k##i), \
                                           llm__ld8(x + 8 * i, k##i)), rv, w##i);
            LLM__REP4(LLM__ACC)
#undef LLM__ACC
        }
#define LLM__ST(i) llm__st8(dw + cb + 8 * i, k##i, w##i);
        LLM__REP4(LLM__ST)
#undef LLM__ST
    }
}
#endif
static LLM__UNUSED void llm__rmsnorm_fwd_fast(float *out, float *rstd, const float *inp, const float *w,
                                              int N, int C, float eps) {
    LLM__DISPATCH(llm__rmsnorm_fwd, (out, rstd, inp, w, N, C, eps));
    llm__rmsnorm_fwd_ref(out, rstd, inp, w, N, C, eps);
}
static LLM__UNUSED void llm__rmsnorm_bwd_dx_fast(float *dinp, const float *dout, const float *inp, const float *w,
                                                 const float *rstd, int N, int C) {
    LLM__DISPATCH(llm__rmsnorm_bwd_dx, (dinp, dout, inp, w, rstd, N, C));
    llm__rmsnorm_bwd_dx_ref(dinp, dout, inp, w, rstd, N, C);
}
static LLM__UNUSED void llm__rmsnorm_bwd_dw_fast(float *dw, const float *dout, const float *inp, const float *rstd,
                                                 int N, int C, int c0, int c1) {
    LLM__DISPATCH(llm__rmsnorm_bwd_dw, (dw, dout, inp, rstd, N, C, c0, c1));
    llm__rmsnorm_bwd_dw_ref(dw, dout, inp, rstd, N, C, c0, c1);
}
static LLM__UNUSED void llm__rmsnorm_bwd_fast(float *dinp, float *dw, const float *dout, const float *inp,
                                              const float *w, const float *rstd, int N, int C) {
    llm__rmsnorm_bwd_dx_fast(dinp, dout, inp, w, rstd, N, C);
    llm__rmsnorm_bwd_dw_fast(dw, dout, inp, rstd, N, C, 0, C);
}

/* ---- SwiGLU ----------------------------------------------------------------------------------
 * σ(g) = 1/(1 + exp(-g)) with the vector exp (exp(-g) = inf for g < -89 gives σ = 0). */
#ifdef LLM__X86
LLM__T_AVX512 static void llm__swiglu_fwd_avx512(float *out, const float *inp, int N, int H) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H;
        float *o = out + LLM__CAST(size_t, n) * H;
        for (int i = 0; i < H; i += 16) {
            __mmask16 k = llm__mask16(H - i);
            __m512 gv = _mm512_maskz_loadu_ps(k, g + i);
            __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, llm__exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
            _mm512_mask_storeu_ps(o + i, k, _mm512_mul_ps(_mm512_mul_ps(gv, sg), _mm512_maskz_loadu_ps(k, u + i)));
        }
    }
}
LLM__T_AVX512 static void llm__swiglu_bwd_avx512(float *dinp, const float *inp, const float *dout, int N, int H) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H, *d = dout + LLM__CAST(size_t, n) * H;
        float *dg = dinp + LLM__CAST(size_t, n) * 2 * H, *du = dg + H;
        for (int i = 0; i < H; i += 16) {
            __mmask16 k = llm__mask16(H - i);
            __m512 gv = _mm512_maskz_loadu_ps(k, g + i), dv = _mm512_maskz_loadu_ps(k, d + i);
            __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, llm__exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
            _mm512_mask_storeu_ps(du + i, k, _mm512_fmadd_ps(_mm512_mul_ps(dv, gv), sg, _mm512_maskz_loadu_ps(k, du + i)));
            __m512 t = _mm512_fmadd_ps(gv, _mm512_sub_ps(one, sg), one);   /* 1 + g(1 - σ) */
            __m512 a = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(dv, _mm512_maskz_loadu_ps(k, u + i)), sg), t);
            _mm512_mask_storeu_ps(dg + i, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dg + i), a));
        }
    }
}
LLM__T_AVX2 static void llm__swiglu_fwd_avx2(float *out, const float *inp, int N, int H) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H;
        float *o = out + LLM__CAST(size_t, n) * H;
        for (int i = 0; i < H; i += 8) {
            __m256i k = llm__mask8(H - i);
            __m256 gv = llm__ld8(g + i, k);
            __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, llm__exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
            llm__st8(o + i, k, _mm256_mul_ps(_mm256_mul_ps(gv, sg), llm__ld8(u + i, k)));
        }
    }
}
LLM__T_AVX2 static void llm__swiglu_bwd_avx2(float *dinp, const float *inp, const float *dout, int N, int H) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H, *d = dout + LLM__CAST(size_t, n) * H;
        float *dg = dinp + LLM__CAST(size_t, n) * 2 * H, *du = dg + H;
        for (int i = 0; i < H; i += 8) {
            __m256i k = llm__mask8(H - i);
            __m256 gv = llm__ld8(g + i, k), dv = llm__ld8(d + i, k);
            __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, llm__exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv))));
            llm__st8(du + i, k, _mm256_fmadd_ps(_mm256_mul_ps(dv, gv), sg, llm__ld8(du + i, k)));
            __m256 t = _mm256_fmadd_ps(gv, _mm256_sub_ps(one, sg), one);
            __m256 a = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dv, llm__ld8(u + i, k)), sg), t);
            llm__st8(dg + i, k, _mm256_add_ps(llm__ld8(dg + i, k), a));
        }
    }
}
#endif
static LLM__UNUSED void llm__swiglu_fwd_fast(float *out, const float *inp, int N, int H) {
    LLM__DISPATCH(llm__swiglu_fwd, (out, inp, N, H));
    llm__swiglu_fwd_ref(out, inp, N, H);
}
static LLM__UNUSED void llm__swiglu_bwd_fast(float *dinp, const float *inp, const float *dout, int N, int H) {
    LLM__DISPATCH(llm__swiglu_bwd, (dinp, inp, dout, N, H));
    llm__swiglu_bwd_ref(dinp, inp, dout, N, H);
}

/* ---- attention against the KV cache (generation) ------------------------------------------
 * One query row i, one head h (the reference's llm__attention_kv_row): the query attends
 * over positions 0..pos[i] of its sequence's cache. The reference sweeps the keys twice
 * (max, then exp and sum) and computes every q·k twice; here each key is touched once,
 * in chunks of LLM__KV_CHUNK keys with the online softmax between chunks:
 *     s_t = (q·k_t)/sqrt(HS)              (a chunk of scores, on the stack)
 *     m' = max(m, max_t s_t),  α = exp(m - m'),  p_t = exp(s_t - m')
 *     l = l·α + Σ_t p_t,       acc = acc·α + Σ_t p_t v_t
 * and out = acc / l at the end. A score is a dot product along HS, so it ends in a
 * horizontal sum: four keys share one reduction tree (llm__hsum4_*). The p·V sum keeps
 * 4 vectors of columns in registers and alternates two sets of accumulators between
 * even and odd keys, so that eight FMA chains are in flight. Nothing is bounded by the
 * context length; HS above LLM__ATT_HSMAX falls back to the reference. The result of a
 * (row, head) depends only on its inputs, so any split over threads gives the same bits. */
#define LLM__KV_CHUNK 256
#ifdef LLM__X86
/* [Σa, Σb, Σc, Σd] of four vectors */
LLM__T_AVX2 static inline __m128 llm__hsum4_avx2(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));   /* [a b c d | a b c d] halves */
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
LLM__T_AVX512 static inline __m256 llm__half_avx512(__m512 a) {   /* low 8 + high 8 lanes */
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
LLM__T_AVX512 static void llm__attention_kv_head_avx512(float *out, const float *qkv, const float *kcache,
                                                        const float *vcache, const int *seq, const int *pos,
                                                        int i, int h, int NH, int NKV, int HS, int maxT) {
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    const size_t base = LLM__CAST(size_t, seq[i]) * maxT * kvw + LLM__CAST(size_t, h / (NH / NKV)) * HS;
    const float *q = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, h) * HS;
    const float *K = kcache + base, *V = vcache + base;
    float *o = out + LLM__CAST(size_t, i) * NH * HS + LLM__CAST(size_t, h) * HS;
    float sc[LLM__KV_CHUNK] __attribute__((aligned(64)));
    float acc[LLM__ATT_HSMAX] __attribute__((aligned(64)));
    const int n = pos[i] + 1, nv = (HS + 15) / 16;
    const __mmask16 kt = llm__mask16(HS - 16 * (nv - 1));   /* the last vector of a head */
    const __m128 vscale = _mm_set1_ps(1.0f / sqrtf(LLM__CAST(float, HS)));
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < HS; d++) acc[d] = 0.0f;
    for (int t0 = 0; t0 < n; t0 += LLM__KV_CHUNK) {
        const int nc = n - t0 < LLM__KV_CHUNK ? n - t0 : LLM__KV_CHUNK;
        const float *Kc = K + LLM__CAST(size_t, t0) * kvw, *Vc = V + LLM__CAST(size_t, t0) * kvw;
        for (int j = 0; j < nc; j += 4) {   /* scores, four keys at a time (past nc: repeat the last) */
            const float *k0 = Kc + LLM__CAST(size_t, j) * kvw;
            const float *k1 = j + 1 < nc ? k0 + kvw : k0, *k2 = j + 2 < nc ? k0 + 2 * kvw : k0;
            const float *k3 = j + 3 < nc ? k0 + 3 * kvw : k0;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int v = 0; v < nv; v++) {
                const __mmask16 mk = v == nv - 1 ? kt : LLM__CAST(__mmask16, 0xFFFF);
                const __m512 qv = _mm512_maskz_loadu_ps(mk, q + 16 * v);
                a0 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k0 + 16 * v), a0);
                a1 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k1 + 16 * v), a1);
                a2 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k2 + 16 * v), a2);
                a3 = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(mk, k3 + 16 * v), a3);
            }
            __m128 s = _mm_mul_ps(llm__hsum4_avx2(llm__half_avx512(a0), llm__half_avx512(a1),
                                                  llm__half_avx512(a2), llm__half_avx512(a3)), vscale);
            _mm_store_ps(sc + j, s);   /* sc has room: j + 4 <= LLM__KV_CHUNK */
        }
        __m512 mx = ninf;
        for (int j = 0; j < nc; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, llm__mask16(nc - j), sc + j));
        const float mc = _mm512_reduce_max_ps(mx), mn = m > mc ? m : mc;
        const float alpha = expf(m - mn);   /* first chunk: exp(-inf) = 0, acc and l are 0 */
        m = mn;
        __m512 ls = _mm512_setzero_ps();
        const __m512 mv = _mm512_set1_ps(m);
        for (int j = 0; j < nc; j += 16) {   /* p = exp(s - m); lanes past nc load -inf: p = 0 */
            const __m512 p = llm__exp_avx512(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, llm__mask16(nc - j), sc + j), mv));
            _mm512_store_ps(sc + j, p);
            ls = _mm512_add_ps(ls, p);
        }
        l = l * alpha + _mm512_reduce_add_ps(ls);
        const __m512 va = _mm512_set1_ps(alpha);
        for (int c = 0; c < HS; c += 64) {   /* acc[c, c+64) = acc·α + Σ_t p_t v_t */
            const __mmask16 m0 = llm__mask16(HS - c), m1 = llm__mask16(HS - c - 16);
            const __mmask16 m2 = llm__mask16(HS - c - 32), m3 = llm__mask16(HS - c - 48);
#define LLM__LD(x) __m512 o##x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m##x, acc + c + 16 * x), va), \
                          e##x = _mm512_setzero_ps();
            LLM__REP4(LLM__LD)
#undef LLM__LD
            const float *v0 = Vc + c;
            int j = 0;
            for (; j + 2 <= nc; j += 2, v0 += 2 * kvw) {
                const __m512 p0 = _mm512_set1_ps(sc[j]), p1 = _mm512_set1_ps(sc[j + 1]);
                const float *v1 = v0 + kvw;
#define LLM__PV(x) o##x = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m##x, v0 + 16 * x), o##x); \
                   e##x = _mm512_fmadd_ps(p1, _mm512_maskz_loadu_ps(m##x, v1 + 16 * x), e##x);
                LLM__REP4(LLM__PV)
#undef LLM__PV
            }
            if (j < nc) {
                const __m512 p0 = _mm512_set1_ps(sc[j]);
#define LLM__PV(x) o##x = _mm512_fmadd_ps(p0, _mm512_maskz_loadu_ps(m##x, v0 + 16 * x), o##x);
                LLM__REP4(LLM__PV)
#undef LLM__PV
            }
#define LLM__ST(x) _mm512_mask_storeu_ps(acc + c + 16 * x, m##x, _mm512_add_ps(o##x, e##x));
            LLM__REP4(LLM__ST)
#undef LLM__ST
        }
    }
    const __m512 vl = _mm512_set1_ps(l);
    for (int d = 0; d < HS; d += 16) {
        const __mmask16 mk = llm__mask16(HS - d);
        _mm512_mask_storeu_ps(o + d, mk, _mm512_div_ps(_mm512_maskz_loadu_ps(mk, acc + d), vl));
    }
}
LLM__T_AVX2 static void llm__attention_kv_head_avx2(float *out, const float *qkv, const float *kcache,
                                                    const float *vcache, const int *seq, const int *pos,
                                                    int i, int h, int NH, int NKV, int HS, int maxT) {
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    const size_t base = LLM__CAST(size_t, seq[i]) * maxT * kvw + LLM__CAST(size_t, h / (NH / NKV)) * HS;
    const float *q = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, h) * HS;
    const float *K = kcache + base, *V = vcache + base;
    float *o = out + LLM__CAST(size_t, i) * NH * HS + LLM__CAST(size_t, h) * HS;
    float sc[LLM__KV_CHUNK] __attribute__((aligned(32)));
    float acc[LLM__ATT_HSMAX] __attribute__((aligned(32)));
    const int n = pos[i] + 1, nv = (HS + 7) / 8;
    const __m256i kt = llm__mask8(HS - 8 * (nv - 1)), all = _mm256_set1_epi32(-1);
    const __m128 vscale = _mm_set1_ps(1.0f / sqrtf(LLM__CAST(float, HS)));
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    float m = -INFINITY, l = 0.0f;
    for (int d = 0; d < HS; d++) acc[d] = 0.0f;
    for (int t0 = 0; t0 < n; t0 += LLM__KV_CHUNK) {
        const int nc = n - t0 < LLM__KV_CHUNK ? n - t0 : LLM__KV_CHUNK;
        const float *Kc = K + LLM__CAST(size_t, t0) * kvw, *Vc = V + LLM__CAST(size_t, t0) * kvw;
        for (int j = 0; j < nc; j += 4) {
            const float *k0 = Kc + LLM__CAST(size_t, j) * kvw;
            const float *k1 = j + 1 < nc ? k0 + kvw : k0, *k2 = j + 2 < nc ? k0 + 2 * kvw : k0;
            const float *k3 = j + 3 < nc ? k0 + 3 * kvw : k0;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int v = 0; v < nv; v++) {
                const __m256i mk = v == nv - 1 ? kt : all;
                const __m256 qv = llm__ld8(q + 8 * v, mk);
                a0 = _mm256_fmadd_ps(qv, llm__ld8(k0 + 8 * v, mk), a0);
                a1 = _mm256_fmadd_ps(qv, llm__ld8(k1 + 8 * v, mk), a1);
                a2 = _mm256_fmadd_ps(qv, llm__ld8(k2 + 8 * v, mk), a2);
                a3 = _mm256_fmadd_ps(qv, llm__ld8(k3 + 8 * v, mk), a3);
            }
            _mm_store_ps(sc + j, _mm_mul_ps(llm__hsum4_avx2(a0, a1, a2, a3), vscale));
        }
        __m256 mx = ninf;
        for (int j = 0; j < nc; j += 8) {
            const __m256i mk = llm__mask8(nc - j);
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, _mm256_load_ps(sc + j), _mm256_castsi256_ps(mk)));
        }
        const float mc = llm__vmax8(mx), mn = m > mc ? m : mc;
        const float alpha = expf(m - mn);
        m = mn;
        __m256 ls = _mm256_setzero_ps();
        const __m256 mv = _mm256_set1_ps(m);
        for (int j = 0; j < nc; j += 8) {   /* lanes past nc: blend to -inf, p = 0 (sc has room: 4-aligned, 8-padded) */
            const __m256i mk = llm__mask8(nc - j);
            const __m256 s = _mm256_blendv_ps(ninf, _mm256_load_ps(sc + j), _mm256_castsi256_ps(mk));
            const __m256 p = llm__exp_avx2(_mm256_sub_ps(s, mv));
            _mm256_store_ps(sc + j, p);
            ls = _mm256_add_ps(ls, p);
        }
        l = l * alpha + llm__vsum8(ls);
        const __m256 va = _mm256_set1_ps(alpha);
        for (int c = 0; c < HS; c += 32) {
            const __m256i m0 = llm__mask8(HS - c), m1 = llm__mask8(HS - c - 8);
            const __m256i m2 = llm__mask8(HS - c - 16), m3 = llm__mask8(HS - c - 24);
#define LLM__LD(x) __m256 o##x = _mm256_mul_ps(llm__ld8(acc + c + 8 * x, m##x), va), e##x = _mm256_setzero_ps();
            LLM__REP4(LLM__LD)
#undef LLM__LD
            const float *v0 = Vc + c;
            int j = 0;
            for (; j + 2 <= nc; j += 2, v0 += 2 * kvw) {
                const __m256 p0 = _mm256_broadcast_ss(sc + j), p1 = _mm256_broadcast_ss(sc + j + 1);
                const float *v1 = v0 + kvw;
#define LLM__PV(x) o##x = _mm256_fmadd_ps(p0, llm__ld8(v0 + 8 * x, m##x), o##x); \
                   e##x = _mm256_fmadd_ps(p1, llm__ld8(v1 + 8 * x, m##x), e##x);
                LLM__REP4(LLM__PV)
#undef LLM__PV
            }
            if (j < nc) {
                const __m256 p0 = _mm256_broadcast_ss(sc + j);
#define LLM__PV(x) o##x = _mm256_fmadd_ps(p0, llm__ld8(v0 + 8 * x, m##x), o##x);
                LLM__REP4(LLM__PV)
#undef LLM__PV
            }
#define LLM__ST(x) llm__st8(acc + c + 8 * x, m##x, _mm256_add_ps(o##x, e##x));
            LLM__REP4(LLM__ST)
#undef LLM__ST
        }
    }
    const __m256 vl = _mm256_set1_ps(l);
    for (int d = 0; d < HS; d += 8) {
        const __m256i mk = llm__mask8(HS - d);
        llm__st8(o + d, mk, _mm256_div_ps(llm__ld8(acc + d, mk), vl));
    }
}
#endif
/* One (row, head): the reference's llm__attention_kv_row contract (the caches already hold
 * every row's k, v). */
static LLM__UNUSED void llm__attention_kv_head_fast(float *out, const float *qkv, const float *kcache,
                                                    const float *vcache, const int *seq, const int *pos,
                                                    int i, int h, int NH, int NKV, int HS, int maxT) {
    if (HS >= 1 && HS <= LLM__ATT_HSMAX)
        LLM__DISPATCH(llm__attention_kv_head, (out, qkv, kcache, vcache, seq, pos, i, h, NH, NKV, HS, maxT));
    llm__attention_kv_row(out, qkv, kcache, vcache, seq, pos, i, h, NH, NKV, HS, maxT);
}
/* The whole op, llm__attention_kv_ref's signature: store every row's k, v, then attend. */
static LLM__UNUSED void llm__attention_kv_fast(float *out, const float *qkv, float *kcache, float *vcache,
                                               const int *seq, const int *pos, int N, int NH, int NKV, int HS,
                                               int maxT) {
    for (int i = 0; i < N; i++) llm__kv_store(kcache, vcache, qkv, seq, pos, i, NH, NKV, HS, maxT);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) llm__attention_kv_head_fast(out, qkv, kcache, vcache, seq, pos, i, h, NH, NKV, HS, maxT);
}

/* ---- RoPE -----------------------------------------------------------------------------------
 * The angles must be llama2.c's to the bit (greedy output is compared with it byte for
 * byte), so they stay libm's, computed as the reference does:
 *     freq_i = 1/powf(theta, i/HS),  val = pos·freq_i,  cosf(val), sinf(val)
 * What changes: freq_i does not depend on the position, so the caller computes it once
 * per call (llm__rope_freqs) instead of once per row; and the rotation of the NH + NKV
 * heads is vectorised. With c, s duplicated per pair, cv = [c c ...], sv = [-s s ...],
 * and x' = x with each pair swapped,
 *     out = x·cv + x'·sv  = [x0 c - x1 s,  x1 c + x0 s]
 * which are the reference's products and sums, each rounded once, so the rows are
 * bit-identical to it. No FMA: a fused multiply-add rounds once where the reference
 * rounds twice, and compilers that contract a*b + c*d (gcc outside ISO C modes) would
 * fuse the vector products too, so an empty asm hands each product over as a value. */
#define LLM__KEEP(v) __asm__("" : "+x"(v))
#define LLM__ROPE_HSMAX 1024   /* larger (or odd) head sizes: the reference */
static void llm__rope_freqs(float *freq, int HS, float theta) {   /* freq (HS/2) */
    for (int i = 0; i < HS; i += 2) freq[i / 2] = 1.0f / powf(theta, LLM__CAST(float, i) / LLM__CAST(float, HS));
}
/* One row x ((NH+NKV)·HS, the q and k parts of a qkv row) at position p; cs (2·HS) is
 * scratch for the duplicated cos and signed sin. */
static void llm__rope_row_ref(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign, float *cs) {
    (void)cs;
    for (int i = 0; i < HS; i += 2) {
        float val = LLM__CAST(float, p) * freq[i / 2], c = cosf(val), s = sign * sinf(val);
        for (int h = 0; h < NH + NKV; h++) {
            float *v = x + LLM__CAST(size_t, h) * HS + i, x0 = v[0], x1 = v[1];
            v[0] = x0 * c - x1 * s;
            v[1] = x0 * s + x1 * c;
        }
    }
}
static void llm__rope_table(float *cs, int p, int HS, const float *freq, float sign) {   /* cv (HS), sv (HS) */
    for (int i = 0; i < HS; i += 2) {
        float val = LLM__CAST(float, p) * freq[i / 2], c = cosf(val), s = sign * sinf(val);
        cs[i] = cs[i + 1] = c;
        cs[HS + i] = -s; cs[HS + i + 1] = s;
    }
}
#ifdef LLM__X86
LLM__T_AVX512 static void llm__rope_row_avx512(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign,
                                               float *cs) {
    llm__rope_table(cs, p, HS, freq, sign);
    for (int i = 0; i < HS; i += 16) {
        const __mmask16 k = llm__mask16(HS - i);
        const __m512 cv = _mm512_maskz_loadu_ps(k, cs + i), sv = _mm512_maskz_loadu_ps(k, cs + HS + i);
        for (int h = 0; h < NH + NKV; h++) {
            float *v = x + LLM__CAST(size_t, h) * HS + i;
            const __m512 a = _mm512_maskz_loadu_ps(k, v), sw = _mm512_permute_ps(a, 0xB1);   /* pairs swapped */
            __m512 pc = _mm512_mul_ps(a, cv), ps = _mm512_mul_ps(sw, sv);
            LLM__KEEP(pc); LLM__KEEP(ps);
            _mm512_mask_storeu_ps(v, k, _mm512_add_ps(pc, ps));
        }
    }
}
LLM__T_AVX2 static void llm__rope_row_avx2(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign,
                                           float *cs) {
    llm__rope_table(cs, p, HS, freq, sign);
    for (int i = 0; i < HS; i += 8) {
        const __m256i k = llm__mask8(HS - i);
        const __m256 cv = llm__ld8(cs + i, k), sv = llm__ld8(cs + HS + i, k);
        for (int h = 0; h < NH + NKV; h++) {
            float *v = x + LLM__CAST(size_t, h) * HS + i;
            const __m256 a = llm__ld8(v, k), sw = _mm256_permute_ps(a, 0xB1);
            __m256 pc = _mm256_mul_ps(a, cv), ps = _mm256_mul_ps(sw, sv);
            LLM__KEEP(pc); LLM__KEEP(ps);
            llm__st8(v, k, _mm256_add_ps(pc, ps));
        }
    }
}
#endif
/* HS must be even (as for the reference: pairs). */
static LLM__UNUSED void llm__rope_row_fast(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign,
                                           float *cs) {
    LLM__DISPATCH(llm__rope_row, (x, p, NH, NKV, HS, freq, sign, cs));
    llm__rope_row_ref(x, p, NH, NKV, HS, freq, sign, cs);
}
/* llm__rope_rotate's signature and result (sign +1: forward, -1: backward). */
static LLM__UNUSED void llm__rope_rotate_fast(float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS,
                                              float theta, float sign) {
    if (HS < 2 || HS > LLM__ROPE_HSMAX || HS % 2) { llm__rope_rotate(qkv, pos, B, T, NH, NKV, HS, theta, sign); return; }
    float freq[LLM__ROPE_HSMAX / 2], cs[2 * LLM__ROPE_HSMAX];
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS;
    llm__rope_freqs(freq, HS, theta);
    for (int bt = 0; bt < B * T; bt++)
        llm__rope_row_fast(qkv + LLM__CAST(size_t, bt) * row, pos ? pos[bt] : bt % T, NH, NKV, HS, freq, sign, cs);
}
