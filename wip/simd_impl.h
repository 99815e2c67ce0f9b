//==== SIMD =============================================================================
/* CPU feature detection, the run-time SIMD level, and SGEMM.
 *
 * One binary runs on any x86-64: nothing here is compiled with -march. Each SIMD
 * function carries its own __attribute__((target(...))) and is called only after
 * CPUID (and XGETBV: the OS must save the YMM/ZMM registers) said the CPU has it.
 * On ARM64, NEON is part of the base ISA and is always on.
 *
 * The level is one int, detected lazily on first use. Two threads racing on the
 * first use both compute the same value, so the race is harmless in practice;
 * llm_simd_force() should be called before other threads compute. */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LLM__X86 1
#include <cpuid.h>
#include <immintrin.h>
#define LLM__T_AVX2 __attribute__((target("avx2,fma")))
#define LLM__T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define LLM__NEON 1
#include <arm_neon.h>
#endif

/* ---- feature detection ------------------------------------------------------------ */
enum {
    LLM__CPU_AVX2 = 1, LLM__CPU_FMA = 2, LLM__CPU_AVX512F = 4, LLM__CPU_AVX512BW = 8,
    LLM__CPU_AVX512VL = 16, LLM__CPU_AVX512DQ = 32, LLM__CPU_AVX512BF16 = 64,
    LLM__CPU_AVX512VNNI = 128, LLM__CPU_NEON = 256
};
static int llm__cpu_flags = -1;     /* LLM__CPU_* bits; -1 until detected */
static int llm__simd_level = 0;     /* active llm_simd; 0 until first use */

static int llm__cpu_detect(void) {
    int f = 0;
#ifdef LLM__X86
    unsigned a, b, c, d, xlo = 0, xhi = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    /* XCR0: bit 1 SSE, bit 2 AVX (YMM upper halves), bits 5-7 opmask/ZMM state. */
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    (void)xhi;
    if ((xlo & 0x6) != 0x6) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if ((b >> 5) & 1) f |= LLM__CPU_AVX2;
    if (fma) f |= LLM__CPU_FMA;
    if ((xlo & 0xE0) == 0xE0) {
        if ((b >> 16) & 1) f |= LLM__CPU_AVX512F;
        if ((b >> 17) & 1) f |= LLM__CPU_AVX512DQ;
        if ((b >> 30) & 1) f |= LLM__CPU_AVX512BW;
        if ((b >> 31) & 1) f |= LLM__CPU_AVX512VL;
        if ((c >> 11) & 1) f |= LLM__CPU_AVX512VNNI;
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        (void)b1; (void)c1; (void)d1;
        if ((a1 >> 5) & 1) f |= LLM__CPU_AVX512BF16;
    }
#elif defined(LLM__NEON)
    f |= LLM__CPU_NEON;
#endif
    return f;
}
static int llm__cpu_get(void) {
    if (llm__cpu_flags < 0) llm__cpu_flags = llm__cpu_detect();
    return llm__cpu_flags;
}

/* Space-separated names of the features found, for logs and benchmarks. */
static LLM__UNUSED const char *llm__cpu_features(void) {
    static const char *names[] = { "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                   "avx512_bf16", "avx512_vnni", "neon" };
    static char buf[128];
    int f = llm__cpu_get();
    buf[0] = 0;
    for (int i = 0; i < 9; i++)
        if (f & (1 << i)) { if (buf[0]) strcat(buf, " "); strcat(buf, names[i]); }
    if (!buf[0]) strcpy(buf, "none");
    return buf;
}

LLMDEF int llm_simd_supported(llm_simd level) {
    int f = llm__cpu_get();
    const int avx512 = LLM__CPU_AVX512F | LLM__CPU_AVX512BW | LLM__CPU_AVX512VL | LLM__CPU_AVX512DQ |
                       LLM__CPU_FMA | LLM__CPU_AVX2;
    switch (level) {
    case LLM_SIMD_AUTO: case LLM_SIMD_SCALAR: return 1;
    case LLM_SIMD_AVX2: return (f & (LLM__CPU_AVX2 | LLM__CPU_FMA)) == (LLM__CPU_AVX2 | LLM__CPU_FMA);
    case LLM_SIMD_AVX512: return (f & avx512) == avx512;
    case LLM_SIMD_NEON: return (f & LLM__CPU_NEON) != 0;
    }
    return 0;
}

/* The best level the CPU has, capped by LLM_SIMD in the environment (an unknown
 * value is ignored; a level the CPU lacks falls to the best one below it). */
static llm_simd llm__simd_best(void) {
    llm_simd best = llm_simd_supported(LLM_SIMD_NEON) ? LLM_SIMD_NEON
                  : llm_simd_supported(LLM_SIMD_AVX512) ? LLM_SIMD_AVX512
                  : llm_simd_supported(LLM_SIMD_AVX2) ? LLM_SIMD_AVX2 : LLM_SIMD_SCALAR;
    const char *e = getenv("LLM_SIMD");
    if (!e || !*e) return best;
    if (strcmp(e, "scalar") == 0) return LLM_SIMD_SCALAR;
    if (strcmp(e, "neon") == 0) return best == LLM_SIMD_NEON ? best : LLM_SIMD_SCALAR;
    if (strcmp(e, "avx2") == 0) return best == LLM_SIMD_AVX512 ? LLM_SIMD_AVX2 : best == LLM_SIMD_AVX2 ? best : LLM_SIMD_SCALAR;
    if (strcmp(e, "avx512") == 0) return best == LLM_SIMD_NEON ? LLM_SIMD_SCALAR : best;
    return best;
}

LLMDEF llm_simd llm_simd_active(void) {
    if (llm__simd_level == 0) llm__simd_level = llm__simd_best();
    return LLM__CAST(llm_simd, llm__simd_level);
}

LLMDEF llm_status llm_simd_force(llm_simd level) {
    if (level == LLM_SIMD_AUTO) { llm__simd_level = llm__simd_best(); return LLM_OK; }
    if (level < LLM_SIMD_SCALAR || level > LLM_SIMD_NEON)
        return llm__err(LLM_ERR_ARG, "llm_simd_force: unknown level %d", LLM__CAST(int, level));
    if (!llm_simd_supported(level))
        return llm__err(LLM_ERR_UNSUPPORTED, "llm_simd_force: this CPU has no %s (it has: %s)",
                        llm_simd_name(level), llm__cpu_features());
    llm__simd_level = level;
    return LLM_OK;
}

LLMDEF const char *llm_simd_name(llm_simd level) {
    switch (level) {
    case LLM_SIMD_AUTO: return "auto";
    case LLM_SIMD_SCALAR: return "scalar";
    case LLM_SIMD_AVX2: return "avx2";
    case LLM_SIMD_AVX512: return "avx512";
    case LLM_SIMD_NEON: return "neon";
    }
    return "unknown";
}

/* ---- SGEMM: the reference ------------------------------------------------------------ */
/* C (M,N) = op(A) (M,K) . op(B) (K,N) + beta * C, all row-major.
 *   op(A)[i][k] = transA ? A[k*lda + i] : A[i*lda + k]    (A stored (K,M) when transposed)
 *   op(B)[k][j] = transB ? B[j*ldb + k] : B[k*ldb + j]    (B stored (N,K) when transposed)
 * beta == 0 ignores C's old contents (even NaN), as BLAS does. The three matmuls of
 * training: forward out = inp . W^T (transB), dX += dout . W (beta 1), dW += dout^T . inp
 * (transA, beta 1). The sum runs over k in order, in float, as a textbook would. */
static void llm__sgemm_ref(int transA, int transB, int M, int N, int K, const float *A, int lda,
                           const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[LLM__CAST(size_t, k) * lda + i] : A[LLM__CAST(size_t, i) * lda + k];
                float b = transB ? B[LLM__CAST(size_t, j) * ldb + k] : B[LLM__CAST(size_t, k) * ldb + j];
                s += a * b;
            }
            float *c = &C[LLM__CAST(size_t, i) * ldc + j];
            *c = beta == 0.0f ? s : s + beta * *c;
        }
    }
}

/* ---- SGEMM: the fast path -------------------------------------------------------------
 * GotoBLAS/BLIS structure. For each block of NC columns and KC of the K sum, a panel
 * of op(B) (KC x NC) is packed into slivers NR wide; for each block of MC rows, a
 * block of op(A) (MC x KC) into slivers MR tall. The micro-kernel then computes an
 * MR x NR tile of C from one A sliver and one B sliver: for each k, NR/16 vector
 * loads of B, MR broadcasts of A, MR*NR/16 FMAs into registers that never leave the
 * core until the tile is done. Packing absorbs the transposes and the ragged edges
 * (padded with zeros), so the kernel always runs full tiles on contiguous memory.
 *
 * Loops, outermost first, with where each operand lives:
 *   jc (NC cols):  pack B panel (KC x NC)              -> L2/L3
 *   pc (KC of K):
 *   ic (MC rows):  pack A block (MC x KC)              -> L2
 *   jr (NR cols):  B sliver (KC x NR)                  -> L1
 *   ir (MR rows):  kernel, A sliver streamed from L2
 *
 * Threads own rectangles of C (a tm x tn grid), each packing what it reads. The K sum
 * is never split, and every element of C is computed by the same operations in the
 * same order whichever tile or thread holds it, so the result is bit-identical for
 * any thread count (for a given SIMD level). */
typedef void (*llm__gemm_kern)(int kc, const float *A, const float *B, float *C, size_t ldc,
                               float beta);
/* dst[k*w + r] = rows[r][k] for r < nrows, zero for nrows <= r < w: packs w rows
 * that are contiguous along k (a transpose). */
typedef void (*llm__gemm_pack_t)(float *dst, int w, const float *src, size_t ld, int nrows, int kc);

typedef struct llm__gemm_impl {
    int mr, nr, kc, mc, nc;
    llm__gemm_kern kern;
    llm__gemm_pack_t pack_t;   /* rows contiguous along k: transpose */
    llm__gemm_pack_t pack_n;   /* already k-major: copy w columns per k */
} llm__gemm_impl;

/* The copying pack for operands already k-major: columns [0, n) of kc rows go to
 * ceil(n/w) slivers, sliver s at dst + s*kc*w holding dst[k*w + c] = src[k*ld + s*w + c]
 * (zero past n). Row by row, so the source is read sequentially. */
static void llm__gemm_pack_n_ref(float *dst, int w, const float *src, size_t ld, int n, int kc) {
    for (int k = 0; k < kc; k++) {
        const float *s = src + LLM__CAST(size_t, k) * ld;
        for (int c0 = 0; c0 < n; c0 += w) {
            float *d = dst + LLM__CAST(size_t, c0) * kc + LLM__CAST(size_t, k) * w;
            for (int c = 0; c < w; c++) d[c] = c0 + c < n ? s[c0 + c] : 0.0f;
        }
    }
}
static void llm__gemm_pack_t_ref(float *dst, int w, const float *src, size_t ld, int nrows, int kc) {
    for (int r = 0; r < w; r++) {
        const float *s = src + LLM__CAST(size_t, r) * ld;
        if (r < nrows) for (int k = 0; k < kc; k++) dst[LLM__CAST(size_t, k) * w + r] = s[k];
        else for (int k = 0; k < kc; k++) dst[LLM__CAST(size_t, k) * w + r] = 0.0f;
    }
}

/* Store an MR x NR tile held in acc (row stride nr) into C: C = acc + beta*C. */
static void llm__gemm_store_tile(const float *acc, int nr, float *C, size_t ldc, int m, int n,
                                 float beta) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *c = &C[LLM__CAST(size_t, i) * ldc + j];
            *c = beta == 0.0f ? acc[i * nr + j] : acc[i * nr + j] + beta * *c;
        }
}

/* Scalar micro-kernel, 4 x 16: plain loops the compiler may vectorise. */
#define LLM__SCALAR_MR 4
#define LLM__SCALAR_NR 16
static void llm__gemm_kern_scalar(int kc, const float *A, const float *B, float *C, size_t ldc,
                                  float beta) {
    float acc[LLM__SCALAR_MR][LLM__SCALAR_NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < LLM__SCALAR_MR; i++) {
            float a = A[i];
            for (int j = 0; j < LLM__SCALAR_NR; j++) acc[i][j] += a * B[j];
        }
        A += LLM__SCALAR_MR; B += LLM__SCALAR_NR;
    }
    llm__gemm_store_tile(&acc[0][0], LLM__SCALAR_NR, C, ldc, LLM__SCALAR_MR, LLM__SCALAR_NR, beta);
}

#ifdef LLM__X86
/* 8x8 transpose of rows r[0..7] (8 floats each) into columns, in registers. */
#define LLM__TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7) do { \
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1); \
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3); \
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5); \
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7); \
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE); \
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE); \
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE); \
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE); \
    r0 = _mm256_permute2f128_ps(s0, s4, 0x20); r1 = _mm256_permute2f128_ps(s1, s5, 0x20); \
    r2 = _mm256_permute2f128_ps(s2, s6, 0x20); r3 = _mm256_permute2f128_ps(s3, s7, 0x20); \
    r4 = _mm256_permute2f128_ps(s0, s4, 0x31); r5 = _mm256_permute2f128_ps(s1, s5, 0x31); \
    r6 = _mm256_permute2f128_ps(s2, s6, 0x31); r7 = _mm256_permute2f128_ps(s3, s7, 0x31); \
} while (0)

/* The transposing pack with 8x8 register transposes; groups of 8 full rows go
 * through registers, the rest (ragged rows, the k tail) through the scalar loop. */
LLM__T_AVX2 static void llm__gemm_pack_t_avx2(float *dst, int w, const float *src, size_t ld,
                                              int nrows, int kc) {
    int r = 0;
    for (; r + 8 <= w && r + 8 <= nrows; r += 8) {
        const float *s = src + LLM__CAST(size_t, r) * ld;
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 x0 = _mm256_loadu_ps(s + k), x1 = _mm256_loadu_ps(s + ld + k);
            __m256 x2 = _mm256_loadu_ps(s + 2 * ld + k), x3 = _mm256_loadu_ps(s + 3 * ld + k);
            __m256 x4 = _mm256_loadu_ps(s + 4 * ld + k), x5 = _mm256_loadu_ps(s + 5 * ld + k);
            __m256 x6 = _mm256_loadu_ps(s + 6 * ld + k), x7 = _mm256_loadu_ps(s + 7 * ld + k);
            LLM__TRANSPOSE8(x0, x1, x2, x3, x4, x5, x6, x7);
            float *d = dst + LLM__CAST(size_t, k) * w + r;
            _mm256_storeu_ps(d, x0); _mm256_storeu_ps(d + w, x1);
            _mm256_storeu_ps(d + 2 * w, x2); _mm256_storeu_ps(d + 3 * w, x3);
            _mm256_storeu_ps(d + 4 * w, x4); _mm256_storeu_ps(d + 5 * w, x5);
            _mm256_storeu_ps(d + 6 * w, x6); _mm256_storeu_ps(d + 7 * w, x7);
        }
        for (; k < kc; k++)
            for (int i = 0; i < 8; i++) dst[LLM__CAST(size_t, k) * w + r + i] = s[LLM__CAST(size_t, i) * ld + k];
    }
    for (; r < w; r++) {
        const float *s = src + LLM__CAST(size_t, r) * ld;
        if (r < nrows) for (int k = 0; k < kc; k++) dst[LLM__CAST(size_t, k) * w + r] = s[k];
        else for (int k = 0; k < kc; k++) dst[LLM__CAST(size_t, k) * w + r] = 0.0f;
    }
}

/* The copying pack, 8 floats at a time; the ragged last sliver by the plain loop. */
LLM__T_AVX2 static void llm__gemm_pack_n_avx2(float *dst, int w, const float *src, size_t ld,
                                              int n, int kc) {
    int full = w % 4 == 0 ? n / w * w : 0;   /* columns in whole slivers */
    for (int k = 0; k < kc; k++) {
        const float *s = src + LLM__CAST(size_t, k) * ld;
        for (int c0 = 0; c0 < full; c0 += w) {
            float *d = dst + LLM__CAST(size_t, c0) * kc + LLM__CAST(size_t, k) * w;
            int c = 0;
            for (; c + 8 <= w; c += 8) _mm256_storeu_ps(d + c, _mm256_loadu_ps(s + c0 + c));
            for (; c < w; c += 4) _mm_storeu_ps(d + c, _mm_loadu_ps(s + c0 + c));
        }
    }
    if (full < n) llm__gemm_pack_n_ref(dst + LLM__CAST(size_t, full) * kc, w, src + full, ld, n - full, kc);
}

/* AVX2+FMA micro-kernel, 6 x 16: 12 ymm accumulators, 2 for B, 1 broadcast (of 16). */
#define LLM__AVX2_MR 6
#define LLM__AVX2_NR 16
LLM__T_AVX2 static void llm__gemm_kern_avx2(int kc, const float *A, const float *B, float *C,
                                            size_t ldc, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int i = 0; i < LLM__AVX2_MR; i++) {   /* fetch C early: it is read at the end */
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc), _MM_HINT_T0);
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc + 15), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8), a;
#define LLM__ROW(i) a = _mm256_broadcast_ss(A + i); \
        c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0); c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);
        LLM__ROW(0) LLM__ROW(1) LLM__ROW(2) LLM__ROW(3) LLM__ROW(4) LLM__ROW(5)
#undef LLM__ROW
        A += LLM__AVX2_MR; B += LLM__AVX2_NR;
    }
    __m256 vb = _mm256_set1_ps(beta);
#define LLM__ROW(i) { float *c = C + i * ldc; \
        if (beta == 0.0f) { _mm256_storeu_ps(c, c##i##0); _mm256_storeu_ps(c + 8, c##i##1); } \
        else { _mm256_storeu_ps(c, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), c##i##0)); \
               _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), c##i##1)); } }
    LLM__ROW(0) LLM__ROW(1) LLM__ROW(2) LLM__ROW(3) LLM__ROW(4) LLM__ROW(5)
#undef LLM__ROW
}

/* AVX-512 micro-kernel, 12 x 32: 24 zmm accumulators, 2 for B, 1 broadcast (of 32).
 * 24 independent FMA chains cover the FMA latency (4 cycles x 2 pipes) three times
 * over; per k, 14 loads feed 24 FMAs. The development machine (AMD EPYC, Zen 5) runs
 * 512-bit FMAs at full width: this kernel measured 255 GFLOP/s on one core from L1
 * (64 flop/cycle), twice what any 256-bit tile can reach there, so no ymm variant. */
#define LLM__AVX512_MR 12
#define LLM__AVX512_NR 32
LLM__T_AVX512 static void llm__gemm_kern_avx512(int kc, const float *A, const float *B, float *C,
                                                size_t ldc, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
    __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
    /* C is read only at the end; start fetching it now so the sum hides the latency */
    for (int i = 0; i < LLM__AVX512_MR; i++) {
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc), _MM_HINT_T0);
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc + 31), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16), a;
#define LLM__ROW(i, n) a = _mm512_set1_ps(A[n]); \
        c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0); c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);
        LLM__ROW(0, 0) LLM__ROW(1, 1) LLM__ROW(2, 2) LLM__ROW(3, 3) LLM__ROW(4, 4) LLM__ROW(5, 5)
        LLM__ROW(6, 6) LLM__ROW(7, 7) LLM__ROW(8, 8) LLM__ROW(9, 9) LLM__ROW(A, 10) LLM__ROW(B, 11)
#undef LLM__ROW
        A += LLM__AVX512_MR; B += LLM__AVX512_NR;
    }
    __m512 vb = _mm512_set1_ps(beta);
#define LLM__ROW(i, n) { float *c = C + n * ldc; \
        if (beta == 0.0f) { _mm512_storeu_ps(c, c##i##0); _mm512_storeu_ps(c + 16, c##i##1); } \
        else { _mm512_storeu_ps(c, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), c##i##0)); \
               _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16), c##i##1)); } }
    LLM__ROW(0, 0) LLM__ROW(1, 1) LLM__ROW(2, 2) LLM__ROW(3, 3) LLM__ROW(4, 4) LLM__ROW(5, 5)
    LLM__ROW(6, 6) LLM__ROW(7, 7) LLM__ROW(8, 8) LLM__ROW(9, 9) LLM__ROW(A, 10) LLM__ROW(B, 11)
#undef LLM__ROW
}
#endif /* LLM__X86 */

#ifdef LLM__NEON
/* NEON micro-kernel, 8 x 8: 16 q-register accumulators; each k loads 8 values of B
 * and 8 of A and multiplies by lanes. Not tested on hardware here (built on x86). */
#define LLM__NEON_MR 8
#define LLM__NEON_NR 8
static void llm__gemm_kern_neon(int kc, const float *A, const float *B, float *C, size_t ldc,
                                float beta) {
    float32x4_t c[8][2];
    for (int i = 0; i < 8; i++) c[i][0] = c[i][1] = vdupq_n_f32(0.0f);
    for (int k = 0; k < kc; k++) {
        float32x4_t b0 = vld1q_f32(B), b1 = vld1q_f32(B + 4);
        float32x4_t a0 = vld1q_f32(A), a1 = vld1q_f32(A + 4);
#define LLM__ROW(i, a, l) c[i][0] = vfmaq_laneq_f32(c[i][0], b0, a, l); \
        c[i][1] = vfmaq_laneq_f32(c[i][1], b1, a, l);
        LLM__ROW(0, a0, 0) LLM__ROW(1, a0, 1) LLM__ROW(2, a0, 2) LLM__ROW(3, a0, 3)
        LLM__ROW(4, a1, 0) LLM__ROW(5, a1, 1) LLM__ROW(6, a1, 2) LLM__ROW(7, a1, 3)
#undef LLM__ROW
        A += 8; B += 8;
    }
    for (int i = 0; i < 8; i++) {
        float *p = C + i * ldc;
        if (beta == 0.0f) { vst1q_f32(p, c[i][0]); vst1q_f32(p + 4, c[i][1]); }
        else {
            vst1q_f32(p, vfmaq_n_f32(c[i][0], vld1q_f32(p), beta));
            vst1q_f32(p + 4, vfmaq_n_f32(c[i][1], vld1q_f32(p + 4), beta));
        }
    }
}
#endif

static llm__gemm_impl llm__gemm_pick(llm_simd level) {
    llm__gemm_impl g;
    g.mr = LLM__SCALAR_MR; g.nr = LLM__SCALAR_NR; g.kc = 256; g.mc = 64; g.nc = 1024;
    g.kern = llm__gemm_kern_scalar; g.pack_t = llm__gemm_pack_t_ref; g.pack_n = llm__gemm_pack_n_ref;
#ifdef LLM__X86
    if (level == LLM_SIMD_AVX2) {
        g.mr = LLM__AVX2_MR; g.nr = LLM__AVX2_NR; g.kc = 256; g.mc = 120; g.nc = 2048;
        g.kern = llm__gemm_kern_avx2; g.pack_t = llm__gemm_pack_t_avx2; g.pack_n = llm__gemm_pack_n_avx2;
    } else if (level == LLM_SIMD_AVX512) {
        g.mr = LLM__AVX512_MR; g.nr = LLM__AVX512_NR; g.kc = 256; g.mc = 144; g.nc = 2048;
        g.kern = llm__gemm_kern_avx512; g.pack_t = llm__gemm_pack_t_avx2; g.pack_n = llm__gemm_pack_n_avx2;
    }
#elif defined(LLM__NEON)
    if (level == LLM_SIMD_NEON) {
        g.mr = LLM__NEON_MR; g.nr = LLM__NEON_NR; g.kc = 256; g.mc = 128; g.nc = 1024;
        g.kern = llm__gemm_kern_neon;
    }
#else
    (void)level;
#endif
    return g;
}

/* One call's shared state; each thread works on its rectangle of C. */
typedef struct llm__gemm_job {
    llm__gemm_impl g;
    int transA, transB, M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float *C, beta;
    int tm, tn;               /* thread grid: tm row groups x tn column groups */
    float *buf;               /* per thread: A block (mc*kc), then B panel (kc*nc) */
    size_t a_floats;          /* the A block's share, rounded up to 64 bytes */
    size_t per_thread;        /* floats of buf per thread */
} llm__gemm_job;

/* The rectangle [*m0,*m1) x [*n0,*n1) of C owned by thread ith (whole tiles, so no
 * tile is split). */
static void llm__gemm_rect(const llm__gemm_job *J, int ith, int *m0, int *m1, int *n0, int *n1) {
    size_t lo, hi;
    size_t tiles_m = LLM__CAST(size_t, (J->M + J->g.mr - 1) / J->g.mr);
    size_t tiles_n = LLM__CAST(size_t, (J->N + J->g.nr - 1) / J->g.nr);
    llm__split(tiles_m, ith / J->tn, J->tm, &lo, &hi);
    *m0 = LLM__CAST(int, lo) * J->g.mr; *m1 = LLM__CAST(int, hi) * J->g.mr;
    if (*m1 > J->M) *m1 = J->M;
    llm__split(tiles_n, ith % J->tn, J->tn, &lo, &hi);
    *n0 = LLM__CAST(int, lo) * J->g.nr; *n1 = LLM__CAST(int, hi) * J->g.nr;
    if (*n1 > J->N) *n1 = J->N;
}

static void llm__gemm_task(void *arg, int ith, int nth) {
    const llm__gemm_job *J = LLM__CAST(const llm__gemm_job *, arg);
    const llm__gemm_impl *g = &J->g;
    const int MR = g->mr, NR = g->nr;
    int m0, m1, n0, n1;
    (void)nth;
    if (ith >= J->tm * J->tn) return;
    llm__gemm_rect(J, ith, &m0, &m1, &n0, &n1);
    if (m0 >= m1 || n0 >= n1) return;
    float *Ap = J->buf + LLM__CAST(size_t, ith) * J->per_thread;
    float *Bp = Ap + J->a_floats;   /* 64-byte aligned: the kernels' B loads need it */
    float edge[16 * 64];   /* one tile, for ragged edges: mr*nr <= 16*64 */
    for (int jc = n0; jc < n1; jc += g->nc) {
        int nc = n1 - jc < g->nc ? n1 - jc : g->nc;
        for (int pc = 0; pc < J->K; pc += g->kc) {
            int kc = J->K - pc < g->kc ? J->K - pc : g->kc;
            float beta = pc == 0 ? J->beta : 1.0f;
            /* pack op(B)[pc:pc+kc, jc:jc+nc] into slivers of NR columns */
            if (!J->transB) g->pack_n(Bp, NR, J->B + LLM__CAST(size_t, pc) * J->ldb + jc, LLM__CAST(size_t, J->ldb), nc, kc);
            else for (int jr = 0; jr < nc; jr += NR) {
                int w = nc - jr < NR ? nc - jr : NR;
                g->pack_t(Bp + LLM__CAST(size_t, jr) * kc, NR, J->B + LLM__CAST(size_t, jc + jr) * J->ldb + pc, LLM__CAST(size_t, J->ldb), w, kc);
            }
            for (int ic = m0; ic < m1; ic += g->mc) {
                int mc = m1 - ic < g->mc ? m1 - ic : g->mc;
                /* pack op(A)[ic:ic+mc, pc:pc+kc] into slivers of MR rows */
                if (J->transA) g->pack_n(Ap, MR, J->A + LLM__CAST(size_t, pc) * J->lda + ic, LLM__CAST(size_t, J->lda), mc, kc);
                else for (int ir = 0; ir < mc; ir += MR) {
                    int h = mc - ir < MR ? mc - ir : MR;
                    g->pack_t(Ap + LLM__CAST(size_t, ir) * kc, MR, J->A + LLM__CAST(size_t, ic + ir) * J->lda + pc, LLM__CAST(size_t, J->lda), h, kc);
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    int w = nc - jr < NR ? nc - jr : NR;
                    const float *bs = Bp + LLM__CAST(size_t, jr) * kc;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int h = mc - ir < MR ? mc - ir : MR;
                        const float *as = Ap + LLM__CAST(size_t, ir) * kc;
                        float *c = J->C + LLM__CAST(size_t, ic + ir) * J->ldc + jc + jr;
                        if (h == MR && w == NR) {
                            g->kern(kc, as, bs, c, LLM__CAST(size_t, J->ldc), beta);
                        } else {   /* ragged tile: compute in full, store the valid part */
                            g->kern(kc, as, bs, edge, LLM__CAST(size_t, NR), 0.0f);
                            llm__gemm_store_tile(edge, NR, c, LLM__CAST(size_t, J->ldc), h, w, beta);
                        }
                    }
                }
            }
        }
    }
}

/* ---- matrix-vector, and a few rows (M <= 8): the decode shapes ----------------------
 * Decoding a token multiplies one row x by every weight matrix W: 2 flops per 4-byte
 * weight, and each weight is read once. At ~40 GB/s that is ~20 GFLOP/s, a tenth of what
 * one core's FMAs do, so the time is the bytes of W over the memory bandwidth, and the
 * kernel's job is to keep the memory busy: stream W once, in address order, never pack
 * it (a pack reads W and writes a copy: more traffic, not less).
 *
 * transB (the forward layout, W (N,K) row-major): Y[i][j] = X[i] . W[j], one dot
 * product per output. Each thread owns a contiguous run of W's rows, i.e. one slab of
 * memory, and reads it row after row, in address order; each W vector loaded serves up
 * to 4 rows of X from registers, so batched decode of M <= 8 sequences reads W once
 * where the packed GEMM would pack it (4x faster at M = 4, 2.6x at M = 8, one thread).
 * !transB (W (K,N)): y[j] = sum_k x[k] W[k][j]. Each thread owns a range of columns and
 * walks down W's rows, reading its part of each row as one contiguous segment; the
 * partial sums of a block of columns stay in L1.
 *
 * Alignment matters: llm.h's tensors are 64-byte aligned, so with K a multiple of 16 every
 * vector load is one cache line; from a malloc'd buffer (16 bytes past a line) the loads
 * split lines, and W ran at 42 instead of 45 GB/s on one thread, 53 instead of 95 on
 * two, while M = 8 fell from 27 to 12 GB/s (X's loads are 8 per load of W).
 *
 * Every output gets the same operations wherever its row of W falls (which thread) and
 * whatever M is: two vector accumulators over alternate blocks of k, the ragged tail
 * masked into the one of its parity, the lanes summed in a fixed tree (!transB: one FMA
 * chain over k in order per column). So Y does not depend on the thread count, and a row
 * of X in a batch of up to 8 gets the same bits as that row alone. */
#define LLM__GEMV_MAX_M 8       /* M up to this streams W; above it, the packed GEMM */
#define LLM__GEMV_PF_BYTES 8192 /* software prefetch distance in W (best of 1-24 KB) */
#define LLM__GEMV_SPLIT 16      /* rows (columns) per unit split over threads: 64 bytes of y */
#define LLM__GEMV_COLS 1024     /* !transB: columns summed together in L1 */
#define LLM__GEMV_MIN_BYTES (256 * 1024)   /* less W than this: one thread */

typedef struct llm__gemv_job {
    int transB, M, N, K, level;
    const float *X, *W;       /* X (M, ldx); W (N, ldw) if transB, else (K, ldw) */
    size_t ldx, ldw, ldy;
    float *Y, beta;           /* Y (M, ldy) */
} llm__gemv_job;

static void llm__gemv_put(float *y, float v, float beta) { *y = beta == 0.0f ? v : v + beta * *y; }

/* The reference: a dot product in k order, as in llm__sgemm_ref. */
static float llm__dot_ref(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void llm__gemv_t_rows_ref(const llm__gemv_job *J, size_t j0, size_t j1) {
    for (size_t j = j0; j < j1; j++)
        for (int i = 0; i < J->M; i++)
            llm__gemv_put(J->Y + LLM__CAST(size_t, i) * J->ldy + j,
                          llm__dot_ref(J->X + LLM__CAST(size_t, i) * J->ldx, J->W + j * J->ldw, J->K), J->beta);
}
/* !transB, M == 1, columns [c0, c1): y[j] = sum_k x[k] W[k][j], k in order. */
static void llm__gemv_n_cols_ref(const llm__gemv_job *J, size_t c0, size_t c1) {
    for (size_t j = c0; j < c1; j++) {
        float s = 0.0f;
        for (int k = 0; k < J->K; k++) s += J->X[k] * J->W[LLM__CAST(size_t, k) * J->ldw + j];
        llm__gemv_put(J->Y + j, s, J->beta);
    }
}

#ifdef LLM__X86
/* Fetch the line `bytes` past p. A prefetch never faults and the address may lie past
 * W, so it is formed as an integer (C defines pointer arithmetic only inside the array).
 * A macro, not a function: gcc 12 drops the prefetch of a plain inline function inlined
 * into an AVX-512 one. */
#define LLM__PREFETCH(p, bytes) \
    _mm_prefetch(LLM__CAST(const char *, LLM__CAST(uintptr_t, (p)) + (bytes)), _MM_HINT_T0)
/* Unroll the loop that follows completely (its trip count, at most 4, is a constant
 * after inlining), so that arrays of accumulators become registers. clang ignores an
 * unroll count larger than a loop's trip count, hence its own spelling. */
#if defined(__clang__)
#define LLM__UNROLL _Pragma("clang loop unroll(full)")
#else
#define LLM__UNROLL _Pragma("GCC unroll 4")
#endif

LLM__T_AVX2 static float llm__hsum256(__m256 v) {   /* (0+4, 1+5, 2+6, 3+7), then pairs */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
LLM__T_AVX512 static float llm__hsum512(__m512 v) {
    return llm__hsum256(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
/* The first n (0..8) lanes of a ymm, as maskload wants them (the top bit of each int). */
LLM__T_AVX2 static __m256i llm__gemv_mask8(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* out[i] = X[i] . w for i < MI (a constant after inlining; with LLM__UNROLL, at -O2
 * too, the accumulators live in registers). Two accumulators per output, for the
 * even and odd blocks of 16 k (two FMA chains hide the FMA latency even at MI == 1),
 * added at the end; the ragged last block is masked into the one of its parity.
 * pf: how many bytes ahead in w to prefetch. */
#define LLM__AVX512_GEMV_MI 4
__attribute__((always_inline)) LLM__T_AVX512 static inline void
llm__gemv_tile_avx512(const int MI, const float *X, size_t ldx, const float *w, int K, size_t pf,
                      float *out) {
    __m512 a0[LLM__AVX512_GEMV_MI], a1[LLM__AVX512_GEMV_MI];
LLM__UNROLL
    for (int i = 0; i < MI; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        LLM__PREFETCH(w + k, pf);
        LLM__PREFETCH(w + k + 16, pf);
        __m512 w0 = _mm512_loadu_ps(w + k), w1 = _mm512_loadu_ps(w + k + 16);
        /* keep w in registers: left to itself gcc folds the loads of w into each FMA,
         * reading w MI times, and for MI = 2, 3 the DRAM stream then ran at half speed
         * (it no longer overlapped the arithmetic) */
        __asm__("" : "+v"(w0), "+v"(w1));
LLM__UNROLL
        for (int i = 0; i < MI; i++) {
            a0[i] = _mm512_fmadd_ps(_mm512_loadu_ps(X + i * ldx + k), w0, a0[i]);
            a1[i] = _mm512_fmadd_ps(_mm512_loadu_ps(X + i * ldx + k + 16), w1, a1[i]);
        }
    }
    if (k < K) {   /* masked lanes load as zero and add nothing */
        const int n = K - k;
        const __mmask16 m0 = LLM__CAST(__mmask16, n >= 16 ? 0xffff : (1u << n) - 1);
        const __mmask16 m1 = LLM__CAST(__mmask16, n <= 16 ? 0 : (1u << (n - 16)) - 1);
        __m512 w0 = _mm512_maskz_loadu_ps(m0, w + k), w1 = _mm512_maskz_loadu_ps(m1, w + k + 16);
LLM__UNROLL
        for (int i = 0; i < MI; i++) {
            a0[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, X + i * ldx + k), w0, a0[i]);
            if (n > 16) a1[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, X + i * ldx + k + 16), w1, a1[i]);
        }
    }
LLM__UNROLL
    for (int i = 0; i < MI; i++) out[i] = llm__hsum512(_mm512_add_ps(a0[i], a1[i]));
}

/* transB rows [j0, j1), one row of W at a time against 4 rows of X at a time (a second
 * pass, for M > 4, finds the row in L1): the slab is read in address order, one
 * stream, which the hardware prefetcher follows best (4 rows side by side, 4 streams,
 * ran ~20% slower), and software fetches 8 KB ahead of it (+10% over none; 1-24 KB
 * tried). One pass over 8 rows of X ran slower than two over 4 (21 against 15 GB/s). */
LLM__T_AVX512 static void llm__gemv_t_rows_avx512(const llm__gemv_job *J, size_t j0, size_t j1) {
    const size_t ldw = J->ldw, ldx = J->ldx, pf = LLM__GEMV_PF_BYTES;
    /* passes of equal size: M = 5 as 3 + 2, not 4 + 1 */
    const int passes = (J->M + LLM__AVX512_GEMV_MI - 1) / LLM__AVX512_GEMV_MI, step = (J->M + passes - 1) / passes;
    float out[LLM__AVX512_GEMV_MI];
    for (size_t j = j0; j < j1; j++) {
        const float *w = J->W + j * ldw;
        for (int i0 = 0; i0 < J->M; i0 += step) {
            const int mi = J->M - i0 < step ? J->M - i0 : step;
            const float *X = J->X + LLM__CAST(size_t, i0) * ldx;
            switch (mi) {
            case 1: llm__gemv_tile_avx512(1, X, ldx, w, J->K, pf, out); break;
            case 2: llm__gemv_tile_avx512(2, X, ldx, w, J->K, pf, out); break;
            case 3: llm__gemv_tile_avx512(3, X, ldx, w, J->K, pf, out); break;
            default: llm__gemv_tile_avx512(4, X, ldx, w, J->K, pf, out); break;
            }
            for (int i = 0; i < mi; i++) llm__gemv_put(J->Y + LLM__CAST(size_t, i0 + i) * J->ldy + j, out[i], J->beta);
        }
    }
}

/* The AVX2 tile: 8 lanes, blocks of 8 k, at most 4 rows of X (8 accumulators, 2 of w,
 * one x: 11 of the 16 ymm registers). */
#define LLM__AVX2_GEMV_MI 4
__attribute__((always_inline)) LLM__T_AVX2 static inline void
llm__gemv_tile_avx2(const int MI, const float *X, size_t ldx, const float *w, int K, size_t pf,
                    float *out) {
    __m256 a0[LLM__AVX2_GEMV_MI], a1[LLM__AVX2_GEMV_MI];
LLM__UNROLL
    for (int i = 0; i < MI; i++) a0[i] = a1[i] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        LLM__PREFETCH(w + k, pf);
        __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
        __asm__("" : "+x"(w0), "+x"(w1));   /* in registers, as in the AVX-512 tile */
LLM__UNROLL
        for (int i = 0; i < MI; i++) {
            a0[i] = _mm256_fmadd_ps(_mm256_loadu_ps(X + i * ldx + k), w0, a0[i]);
            a1[i] = _mm256_fmadd_ps(_mm256_loadu_ps(X + i * ldx + k + 8), w1, a1[i]);
        }
    }
    if (k < K) {   /* a full or masked block into a0, then a masked one into a1 */
        const int n = K - k;
        const __m256i m0 = llm__gemv_mask8(n), m1 = llm__gemv_mask8(n - 8);
        __m256 w0 = n >= 8 ? _mm256_loadu_ps(w + k) : _mm256_maskload_ps(w + k, m0);
        __m256 w1 = _mm256_maskload_ps(w + k + 8, m1);
LLM__UNROLL
        for (int i = 0; i < MI; i++) {
            const float *x = X + i * ldx + k;
            a0[i] = _mm256_fmadd_ps(n >= 8 ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, m0), w0, a0[i]);
            if (n > 8) a1[i] = _mm256_fmadd_ps(_mm256_maskload_ps(x + 8, m1), w1, a1[i]);
        }
    }
LLM__UNROLL
    for (int i = 0; i < MI; i++) out[i] = llm__hsum256(_mm256_add_ps(a0[i], a1[i]));
}

LLM__T_AVX2 static void llm__gemv_t_rows_avx2(const llm__gemv_job *J, size_t j0, size_t j1) {
    const size_t ldw = J->ldw, ldx = J->ldx, pf = LLM__GEMV_PF_BYTES;
    /* passes of equal size: M = 5 as 3 + 2, not 4 + 1 */
    const int passes = (J->M + LLM__AVX2_GEMV_MI - 1) / LLM__AVX2_GEMV_MI, step = (J->M + passes - 1) / passes;
    float out[LLM__AVX2_GEMV_MI];
    for (size_t j = j0; j < j1; j++) {
        const float *w = J->W + j * ldw;
        for (int i0 = 0; i0 < J->M; i0 += step) {
            const int mi = J->M - i0 < step ? J->M - i0 : step;
            const float *X = J->X + LLM__CAST(size_t, i0) * ldx;
            switch (mi) {
            case 1: llm__gemv_tile_avx2(1, X, ldx, w, J->K, pf, out); break;
            case 2: llm__gemv_tile_avx2(2, X, ldx, w, J->K, pf, out); break;
            case 3: llm__gemv_tile_avx2(3, X, ldx, w, J->K, pf, out); break;
            default: llm__gemv_tile_avx2(4, X, ldx, w, J->K, pf, out); break;
            }
            for (int i = 0; i < mi; i++) llm__gemv_put(J->Y + LLM__CAST(size_t, i0 + i) * J->ldy + j, out[i], J->beta);
        }
    }
}

/* !transB, M == 1, columns [c0, c1), in blocks of LLM__GEMV_COLS: for each 4 rows of W,
 * acc[c] = fma(x[k+3], W[k+3][c], ... fma(x[k], W[k][c], acc[c])), so each y[j] is the
 * sum over k in order, whatever the blocks. Ragged columns through masks. */
LLM__T_AVX512 static void llm__gemv_n_cols_avx512(const llm__gemv_job *J, size_t c0, size_t c1) {
    float acc[LLM__GEMV_COLS];
    const size_t ldw = J->ldw;
    const int K = J->K;
    for (size_t cb = c0; cb < c1; cb += LLM__GEMV_COLS) {
        const int n = c1 - cb < LLM__GEMV_COLS ? LLM__CAST(int, c1 - cb) : LLM__GEMV_COLS;
        const float *Wb = J->W + cb;
        memset(acc, 0, sizeof acc);
        int k = 0;
        for (; k < K; k += 4) {
            const int kn = K - k < 4 ? K - k : 4;
            const float *w0 = Wb + LLM__CAST(size_t, k) * ldw;
            __m512 x0 = _mm512_set1_ps(J->X[k]), x1 = _mm512_set1_ps(kn > 1 ? J->X[k + 1] : 0.0f);
            __m512 x2 = _mm512_set1_ps(kn > 2 ? J->X[k + 2] : 0.0f), x3 = _mm512_set1_ps(kn > 3 ? J->X[k + 3] : 0.0f);
            for (int c = 0; c < n; c += 16) {
                __mmask16 m = n - c >= 16 ? 0xffff : LLM__CAST(__mmask16, (1u << (n - c)) - 1);
                __m512 a = _mm512_maskz_loadu_ps(m, acc + c);
                LLM__PREFETCH(w0 + c, 4 * ldw * sizeof(float));
                a = _mm512_fmadd_ps(x0, _mm512_maskz_loadu_ps(m, w0 + c), a);
                if (kn == 4) {   /* the common case, unmasked rows */
                    LLM__PREFETCH(w0 + ldw + c, 4 * ldw * sizeof(float));
                    LLM__PREFETCH(w0 + 2 * ldw + c, 4 * ldw * sizeof(float));
                    LLM__PREFETCH(w0 + 3 * ldw + c, 4 * ldw * sizeof(float));
                    a = _mm512_fmadd_ps(x1, _mm512_maskz_loadu_ps(m, w0 + ldw + c), a);
                    a = _mm512_fmadd_ps(x2, _mm512_maskz_loadu_ps(m, w0 + 2 * ldw + c), a);
                    a = _mm512_fmadd_ps(x3, _mm512_maskz_loadu_ps(m, w0 + 3 * ldw + c), a);
                } else {
                    for (int q = 1; q < kn; q++)
                        a = _mm512_fmadd_ps(q == 1 ? x1 : q == 2 ? x2 : x3,
                                            _mm512_maskz_loadu_ps(m, w0 + q * ldw + c), a);
                }
                _mm512_mask_storeu_ps(acc + c, m, a);
            }
        }
        for (int c = 0; c < n; c++) llm__gemv_put(J->Y + cb + c, acc[c], J->beta);
    }
}
/* The AVX2 version; vmaskmovps is slow on AMD (a store runs in microcode), so only the
 * ragged last 8 columns go through masks. */
LLM__T_AVX2 static void llm__gemv_n_cols_avx2(const llm__gemv_job *J, size_t c0, size_t c1) {
    float acc[LLM__GEMV_COLS];
    const size_t ldw = J->ldw;
    const int K = J->K;
    for (size_t cb = c0; cb < c1; cb += LLM__GEMV_COLS) {
        const int n = c1 - cb < LLM__GEMV_COLS ? LLM__CAST(int, c1 - cb) : LLM__GEMV_COLS;
        const int nf = n / 8 * 8;
        const __m256i m = llm__gemv_mask8(n - nf);
        const float *Wb = J->W + cb;
        memset(acc, 0, sizeof acc);
        for (int k = 0; k < K; k += 4) {
            const int kn = K - k < 4 ? K - k : 4;
            const float *w0 = Wb + LLM__CAST(size_t, k) * ldw;
            for (int c = 0; c < nf; c += 8) {
                __m256 a = _mm256_loadu_ps(acc + c);
                for (int q = 0; q < kn; q++) {
                    if ((c & 15) == 0) LLM__PREFETCH(w0 + q * ldw + c, 4 * ldw * sizeof(float));
                    a = _mm256_fmadd_ps(_mm256_set1_ps(J->X[k + q]), _mm256_loadu_ps(w0 + q * ldw + c), a);
                }
                _mm256_storeu_ps(acc + c, a);
            }
            if (nf < n) {
                __m256 a = _mm256_maskload_ps(acc + nf, m);
                for (int q = 0; q < kn; q++)
                    a = _mm256_fmadd_ps(_mm256_set1_ps(J->X[k + q]), _mm256_maskload_ps(w0 + q * ldw + nf, m), a);
                _mm256_maskstore_ps(acc + nf, m, a);
            }
        }
        for (int c = 0; c < n; c++) llm__gemv_put(J->Y + cb + c, acc[c], J->beta);
    }
}
#endif /* LLM__X86 */

static void llm__gemv_range(const llm__gemv_job *J, size_t lo, size_t hi) {
#ifdef LLM__X86
    if (J->level == LLM_SIMD_AVX512) {
        if (J->transB) llm__gemv_t_rows_avx512(J, lo, hi); else llm__gemv_n_cols_avx512(J, lo, hi);
        return;
    }
    if (J->level == LLM_SIMD_AVX2) {
        if (J->transB) llm__gemv_t_rows_avx2(J, lo, hi); else llm__gemv_n_cols_avx2(J, lo, hi);
        return;
    }
#endif
    if (J->transB) llm__gemv_t_rows_ref(J, lo, hi); else llm__gemv_n_cols_ref(J, lo, hi);
}

/* Thread ith's share: a contiguous run of output units of LLM__GEMV_SPLIT (rows of W
 * for transB, columns for !transB). (Chunks claimed from an atomic counter, so that a
 * thread short of a core does less, measured no faster on a busy machine: the pool
 * waits for every thread anyway.) */
static void llm__gemv_task(void *arg, int ith, int nth) {
    const llm__gemv_job *J = LLM__CAST(const llm__gemv_job *, arg);
    const size_t N = LLM__CAST(size_t, J->N), U = LLM__GEMV_SPLIT;
    size_t lo, hi;
    llm__split((N + U - 1) / U, ith, nth, &lo, &hi);
    lo *= U; hi *= U;
    if (hi > N) hi = N;
    if (lo < hi) llm__gemv_range(J, lo, hi);
}

/* Y (M,N) = X (M,K) . op(W) + beta Y for M <= LLM__GEMV_MAX_M (M == 1 when !transB):
 * no packing, no allocation; threads only when there is enough of W to share. */
static void llm__gemv(llm_pool *pool, int transB, int M, int N, int K, const float *X, size_t ldx,
                      const float *W, size_t ldw, float beta, float *Y, size_t ldy) {
    llm__gemv_job v;
    v.transB = transB; v.M = M; v.N = N; v.K = K; v.level = llm_simd_active();
    v.X = X; v.W = W; v.ldx = ldx; v.ldw = ldw; v.ldy = ldy; v.Y = Y; v.beta = beta;
    if (4.0 * N * K < LLM__GEMV_MIN_BYTES || llm_pool_size(pool) == 1) llm__gemv_task(&v, 0, 1);
    else llm_pool_run(pool, llm__gemv_task, &v);
}

/* Choose the thread grid tm x tn (tm*tn <= nth) that minimises the estimated time of
 * the slowest thread: its multiply-adds (macs_per_op per instruction: 16 for fp32 in a
 * zmm, 32 for a bf16 dot product) plus the cost of packing what it reads. */
static void llm__gemm_grid(const llm__gemm_impl *g, int M, int N, int K, int nth, double macs_per_op,
                           int *tm, int *tn) {
    double best = 0;
    int tiles_m = (M + g->mr - 1) / g->mr, tiles_n = (N + g->nr - 1) / g->nr;
    *tm = 1; *tn = 1;
    for (int a = 1; a <= nth; a++) {
        int b = nth / a;
        if (a > tiles_m || b > tiles_n || a * b != nth) continue;
        double rows = LLM__CAST(double, (tiles_m + a - 1) / a) * g->mr;
        double cols = LLM__CAST(double, (tiles_n + b - 1) / b) * g->nr;
        double a_packs = 1.0 + LLM__CAST(int, cols) / g->nc;   /* A is repacked per NC block */
        double t = rows * cols * K / macs_per_op + 2.0 * K * (rows * a_packs + cols);
        if (best == 0 || t < best) { best = t; *tm = a; *tn = b; }
    }
}

static void llm__sgemm_packed(llm_pool *pool, int transA, int transB, int M, int N, int K,
                              const float *A, int lda, const float *B, int ldb, float beta, float *C,
                              int ldc);
static LLM__UNUSED void llm__sgemm(llm_pool *pool, int transA, int transB, int M, int N, int K,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   /* empty sum: C = beta*C */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = &C[LLM__CAST(size_t, i) * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    /* one row of X (contiguous: A's row, or A's column when lda == 1), or a few rows
     * against W^T: stream W, no packing */
    if ((M == 1 && (!transA || lda == 1)) || (M <= LLM__GEMV_MAX_M && transB && !transA)) {
        llm__gemv(pool, transB, M, N, K, A, LLM__CAST(size_t, lda), B, LLM__CAST(size_t, ldb), beta, C,
                  LLM__CAST(size_t, ldc));
        return;
    }
    llm__sgemm_packed(pool, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

/* The packed GEMM alone, for any shape (llm__sgemm sends M <= 8 elsewhere). */
static void llm__sgemm_packed(llm_pool *pool, int transA, int transB, int M, int N, int K,
                              const float *A, int lda, const float *B, int ldb, float beta, float *C,
                              int ldc) {
    llm_simd level = llm_simd_active();
    int nth = llm_pool_size(pool);
    double flops = 2.0 * M * N * K;
    llm__gemm_job J;
    J.g = llm__gemm_pick(level);
    J.transA = transA; J.transB = transB; J.M = M; J.N = N; J.K = K;
    J.lda = lda; J.ldb = ldb; J.ldc = ldc; J.A = A; J.B = B; J.C = C; J.beta = beta;
    if (flops < 1e6) nth = 1;   /* too small to be worth waking threads */
    llm__gemm_grid(&J.g, M, N, K, nth, 16.0, &J.tm, &J.tn);
    /* per thread: an A block and a B panel, each rounded to 16 floats (64 bytes) */
    int ncp = N < J.g.nc ? (N + J.g.nr - 1) / J.g.nr * J.g.nr : J.g.nc;
    size_t kc = LLM__CAST(size_t, K < J.g.kc ? K : J.g.kc);
    J.a_floats = (LLM__CAST(size_t, J.g.mc) * kc + 15) / 16 * 16;
    J.per_thread = J.a_floats + (LLM__CAST(size_t, ncp) * kc + 15) / 16 * 16;
    J.buf = LLM__CAST(float *, llm__alloc_aligned(J.per_thread * sizeof(float) * LLM__CAST(size_t, J.tm * J.tn)));
    if (!J.buf) {   /* no memory for packing: the reference loop needs none */
        llm__sgemm_ref(transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (J.tm * J.tn == 1) llm__gemm_task(&J, 0, 1);
    else llm_pool_run(pool, llm__gemm_task, &J);
    llm__free_aligned(J.buf);
}

/* ---- bf16 GEMM: bfloat16 operands, fp32 accumulation ---------------------------------
 * bfloat16 is the top half of a float32: the same 8-bit exponent (so the same range),
 * 8 significant bits (7 stored) instead of 24. Rounding to nearest costs a relative
 * error of at most u = 2^-8 per operand, so a product is off by at most 2u + u^2; with
 * errors of random sign, a sum of K products is off by about 2^-8 sqrt(K) times a
 * typical product (tests/test_gemm_bf16.c measures it). The product of two bf16
 * values has at most 16 significant bits and is exact in fp32, so the only other error
 * is the fp32 summation's, as in llm__sgemm. AVX512-BF16's vdpbf16ps does 16 lanes x 2
 * such products per instruction, accumulated in fp32: twice the multiply-adds of an
 * fp32 FMA at the same issue rate. The opt-in bf16 mode of training uses it for the matmuls only (master
 * weights, gradients, the optimizer and every other op stay fp32).
 *
 * llm__sgemm_bf16 has llm__sgemm's contract, except that A and B are rounded to bf16
 * as they are packed. Without AVX512-BF16 (or with the level forced below AVX-512) it
 * is plain llm__sgemm: fp32, no rounding. */
#ifdef LLM__X86
#define LLM__T_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))
#endif

/* 1 when llm__sgemm_bf16 really computes in bf16: the CPU has AVX512-BF16 and the
 * active level (LLM_SIMD, llm_simd_force) is AVX-512. */
static LLM__UNUSED int llm__has_bf16(void) {
    return (llm__cpu_get() & LLM__CPU_AVX512BF16) && llm_simd_active() == LLM_SIMD_AVX512;
}

/* float -> bf16 bits, as VCVTNEPS2BF16 does it: round to nearest, ties to even, by
 * adding 0x7fff plus the lowest kept bit and truncating (a carry into the exponent is
 * the right answer, FLT_MAX rounds to inf); NaN stays NaN (quieted, sign and top of the
 * payload kept); denormals become signed zero, as the instruction treats them (they are
 * below 2^-126, and vdpbf16ps would read them as zero anyway). */
static uint16_t llm__bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return LLM__CAST(uint16_t, (u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return LLM__CAST(uint16_t, (u >> 16) & 0x8000);
    u += 0x7fffu + ((u >> 16) & 1);
    return LLM__CAST(uint16_t, u >> 16);
}
static float llm__bf16_widen(uint16_t h) {
    uint32_t u = LLM__CAST(uint32_t, h) << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
/* The value the bf16 GEMM uses for x. */
static float llm__bf16_value(float x) { return llm__bf16_widen(llm__bf16_round(x)); }

/* The reference: llm__sgemm_ref with each operand rounded to bf16; the products are
 * exact, and the sum runs over k in order, in fp32. */
static LLM__UNUSED void llm__sgemm_bf16_ref(int transA, int transB, int M, int N, int K,
                                            const float *A, int lda, const float *B, int ldb,
                                            float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[LLM__CAST(size_t, k) * lda + i] : A[LLM__CAST(size_t, i) * lda + k];
                float b = transB ? B[LLM__CAST(size_t, j) * ldb + k] : B[LLM__CAST(size_t, k) * ldb + j];
                s += llm__bf16_value(a) * llm__bf16_value(b);
            }
            float *c = &C[LLM__CAST(size_t, i) * ldc + j];
            *c = beta == 0.0f ? s : s + beta * *c;
        }
    }
}

/* Packed layout. vdpbf16ps multiplies bf16 pairs: lane j of the result gains
 * a[2j]*b[2j] + a[2j+1]*b[2j+1]. So the packed operands hold k in pairs, one pair per
 * 32-bit word (the even k in the low half): for pair p (k = 2p, 2p+1),
 *   A sliver: MR words  (a[i][2p], a[i][2p+1])  i < MR    -> one word broadcast per row
 *   B sliver: NR words  (b[2p][j], b[2p+1][j])  j < NR    -> NR/16 vector loads
 * and the micro-kernel is the fp32 one with each FMA replaced by a dot product that
 * advances two steps of k. An odd kc is padded with a zero k (0*0 adds nothing), ragged
 * rows and columns with zeros, as in the fp32 packs. kp = ceil(kc/2) pairs. */
static LLM__UNUSED uint32_t llm__bf16_pair(float lo, float hi) {
    return LLM__CAST(uint32_t, llm__bf16_round(lo)) | LLM__CAST(uint32_t, llm__bf16_round(hi)) << 16;
}
/* k-major source (src[k*ld + c]): sliver s at dst + s*kp*w, dst[p*w + c] =
 * pair(src[2p][s*w + c], src[2p+1][s*w + c]), zero past n columns and past kc. */
static LLM__UNUSED void llm__bf16_pack_n_ref(uint32_t *dst, int w, const float *src, size_t ld, int n, int kc) {
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < kp; p++) {
        int odd = 2 * p + 1 >= kc;   /* the padding k */
        const float *s0 = src + LLM__CAST(size_t, 2 * p) * ld, *s1 = odd ? s0 : s0 + ld;
        for (int c0 = 0; c0 < n; c0 += w) {
            uint32_t *d = dst + LLM__CAST(size_t, c0) * kp + LLM__CAST(size_t, p) * w;
            for (int c = 0; c < w; c++)
                d[c] = c0 + c >= n ? 0 : llm__bf16_pair(s0[c0 + c], odd ? 0.0f : s1[c0 + c]);
        }
    }
}
/* rows contiguous along k (src[r*ld + k]): dst[p*w + r] = pair(src[r][2p], src[r][2p+1]),
 * zero for rows nrows <= r < w and past kc. */
static LLM__UNUSED void llm__bf16_pack_t_ref(uint32_t *dst, int w, const float *src, size_t ld, int nrows, int kc) {
    const int kp = (kc + 1) / 2;
    for (int r = 0; r < w; r++) {
        const float *s = src + LLM__CAST(size_t, r) * ld;
        for (int p = 0; p < kp; p++)
            dst[LLM__CAST(size_t, p) * w + r] =
                r >= nrows ? 0 : llm__bf16_pair(s[2 * p], 2 * p + 1 < kc ? s[2 * p + 1] : 0.0f);
    }
}

#ifdef LLM__X86
/* Mask of the first n (clamped to 0..16) lanes. */
static inline __mmask16 llm__bf16_lanes(int n) {
    return LLM__CAST(__mmask16, n <= 0 ? 0 : n >= 16 ? 0xffff : (1u << n) - 1);
}

/* Fetch the line `bytes` past p into L1 (LLM__PREFETCH, with the matrix-vector code).
 * Until it was made a macro, gcc 12 dropped these prefetches (an inline function
 * inlined into an AVX-512 one); restored, they measured +0-2% in bench_gemm_bf16 on a
 * busy machine, short of the gains noted at the two call sites. */
#define llm__bf16_prefetch(p, bytes) LLM__PREFETCH(p, bytes)

/* pack_n: two rows of k at a time. vcvtne2ps2bf16 rounds 16 floats of each row into
 * one vector, [row 2p (16 x bf16) | row 2p+1 (16 x bf16)]; vpermw interleaves the
 * halves into the 16 pairs. Masked loads give the zeros of ragged columns. */
LLM__T_BF16 static void llm__bf16_pack_n_avx512(uint32_t *dst, int w, const float *src, size_t ld,
                                                int n, int kc) {
    const int kp = (kc + 1) / 2;
    /* word 2j <- word j (row 2p), word 2j+1 <- word 16+j (row 2p+1) */
    const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                           23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int p = 0; p < kp; p++) {
        int odd = 2 * p + 1 >= kc;   /* the padding k */
        const float *s0 = src + LLM__CAST(size_t, 2 * p) * ld, *s1 = odd ? s0 : s0 + ld;
        for (int c0 = 0; c0 < n; c0 += w) {
            uint32_t *d = dst + LLM__CAST(size_t, c0) * kp + LLM__CAST(size_t, p) * w;
            for (int c = 0; c < w; c += 16) {
                __mmask16 m = llm__bf16_lanes(n - c0 - c);
                /* the same columns two pairs of rows on: the jump from row to row is
                 * what the hardware prefetcher misses (this saved ~20% of dX's time) */
                llm__bf16_prefetch(s0 + c0 + c, 4 * ld * sizeof(float));
                llm__bf16_prefetch(s1 + c0 + c, 4 * ld * sizeof(float));
                __m512 x0 = _mm512_maskz_loadu_ps(m, s0 + c0 + c);
                __m512 x1 = odd ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, s1 + c0 + c);
                __m512i v = LLM__CAST(__m512i, _mm512_cvtne2ps_pbh(x1, x0));
                _mm512_mask_storeu_epi32(d + c, llm__bf16_lanes(w - c), _mm512_permutexvar_epi16(inter, v));
            }
        }
    }
}

/* 16 x 16 transpose of 32-bit words, r[i][j] -> r[j][i]: 32-bit then 64-bit unpacks
 * transpose the 4x4 blocks inside each 128-bit lane; two rounds of lane shuffles then
 * transpose the 4x4 grid of lanes. (The maskz forms with a full mask are the plain
 * instructions; the plain intrinsics trip g++ 12's -Wmaybe-uninitialized.) */
#define LLM__UNPLO32(a, b) _mm512_maskz_unpacklo_epi32(0xffff, a, b)
#define LLM__UNPHI32(a, b) _mm512_maskz_unpackhi_epi32(0xffff, a, b)
#define LLM__UNPLO64(a, b) _mm512_maskz_unpacklo_epi64(0xff, a, b)
#define LLM__UNPHI64(a, b) _mm512_maskz_unpackhi_epi64(0xff, a, b)
#define LLM__SHUF128(a, b, imm) _mm512_maskz_shuffle_i32x4(0xffff, a, b, imm)
LLM__T_BF16 static void llm__transpose16_epi32(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = LLM__UNPLO32(r[i], r[i + 1]);
        t[i + 1] = LLM__UNPHI32(r[i], r[i + 1]);
    }
    for (int b = 0; b < 16; b += 4) {   /* u[b+c], lane L: rows b..b+3 of column 4L+c */
        u[b] = LLM__UNPLO64(t[b], t[b + 2]);
        u[b + 1] = LLM__UNPHI64(t[b], t[b + 2]);
        u[b + 2] = LLM__UNPLO64(t[b + 1], t[b + 3]);
        u[b + 3] = LLM__UNPHI64(t[b + 1], t[b + 3]);
    }
    for (int c = 0; c < 4; c++) {
        __m512i s0 = LLM__SHUF128(u[c], u[4 + c], 0x44), s1 = LLM__SHUF128(u[c], u[4 + c], 0xEE);
        __m512i s2 = LLM__SHUF128(u[8 + c], u[12 + c], 0x44), s3 = LLM__SHUF128(u[8 + c], u[12 + c], 0xEE);
        r[c] = LLM__SHUF128(s0, s2, 0x88);
        r[4 + c] = LLM__SHUF128(s0, s2, 0xDD);
        r[8 + c] = LLM__SHUF128(s1, s3, 0x88);
        r[12 + c] = LLM__SHUF128(s1, s3, 0xDD);
    }
}
#undef LLM__UNPLO32
#undef LLM__UNPHI32
#undef LLM__UNPLO64
#undef LLM__UNPHI64
#undef LLM__SHUF128

/* pack_t: blocks of 16 rows x 32 k. Each row's 32 floats round into 16 pair words
 * (vcvtne2ps2bf16 keeps k order, so word q is pair q); a 16x16 word transpose turns
 * them into 16 pairs x 16 rows, stored as w-wide slices. Missing rows and the k tail
 * come in as zeros through masks. */
LLM__T_BF16 static void llm__bf16_pack_t_avx512(uint32_t *dst, int w, const float *src, size_t ld,
                                                int nrows, int kc) {
    __m512i r[16];
    for (int r0 = 0; r0 < w; r0 += 16) {
        int rows = w - r0 < 16 ? w - r0 : 16;
        for (int k = 0; k < kc; k += 32) {
            __mmask16 m0 = llm__bf16_lanes(kc - k), m1 = llm__bf16_lanes(kc - k - 16);
            for (int i = 0; i < 16; i++) {
                if (r0 + i >= nrows || i >= rows) { r[i] = _mm512_setzero_si512(); continue; }
                const float *s = src + LLM__CAST(size_t, r0 + i) * ld + k;
                /* 16 rows far apart are 16 streams; fetch 512 bytes ahead in each (the
                 * hardware prefetcher alone left this pack ~25% slower) */
                llm__bf16_prefetch(s, 512);
                llm__bf16_prefetch(s, 576);
                __m512 x0 = _mm512_maskz_loadu_ps(m0, s), x1 = _mm512_maskz_loadu_ps(m1, s + 16);
                r[i] = LLM__CAST(__m512i, _mm512_cvtne2ps_pbh(x1, x0));
            }
            llm__transpose16_epi32(r);
            int pairs = kc - k >= 32 ? 16 : (kc - k + 1) / 2;
            __mmask16 mr = llm__bf16_lanes(rows);
            uint32_t *d = dst + LLM__CAST(size_t, k / 2) * w + r0;
            for (int q = 0; q < pairs; q++) _mm512_mask_storeu_epi32(d + LLM__CAST(size_t, q) * w, mr, r[q]);
        }
    }
}

/* The micro-kernel, 12 x 32 like the fp32 one: 24 zmm accumulators; per pair of k,
 * 2 loads of B, 12 broadcast words of A, 24 vdpbf16ps of 16 lanes x 2 products each
 * (twice the multiply-adds of an FMA). The development machine (Zen 5) issues two a
 * cycle: 544 GFLOP/s on one core from registers, against 272 for fp32 FMAs; this
 * kernel runs at ~495 on packed operands from L1/L2 (CPU time, one thread). */
#define LLM__BF16_MR 12
#define LLM__BF16_NR 32
/* noinline: inlined into the task at -O3, gcc 12 spilled b0/b1 to the stack and
 * reloaded them for each use, halving the speed. */
__attribute__((noinline)) LLM__T_BF16 static void llm__gemm_kern_bf16(int kp, const uint32_t *A, const uint32_t *B, float *C,
                                            size_t ldc, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
    __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
    for (int i = 0; i < LLM__BF16_MR; i++) {
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc), _MM_HINT_T0);
        _mm_prefetch(LLM__CAST(const char *, C + i * ldc + 31), _MM_HINT_T0);
    }
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = LLM__CAST(__m512bh, _mm512_load_si512(B)), b1 = LLM__CAST(__m512bh, _mm512_load_si512(B + 16)), a;
#define LLM__ROW(i, n) a = LLM__CAST(__m512bh, _mm512_set1_epi32(LLM__CAST(int, A[n]))); \
        c##i##0 = _mm512_dpbf16_ps(c##i##0, a, b0); c##i##1 = _mm512_dpbf16_ps(c##i##1, a, b1);
        LLM__ROW(0, 0) LLM__ROW(1, 1) LLM__ROW(2, 2) LLM__ROW(3, 3) LLM__ROW(4, 4) LLM__ROW(5, 5)
        LLM__ROW(6, 6) LLM__ROW(7, 7) LLM__ROW(8, 8) LLM__ROW(9, 9) LLM__ROW(A, 10) LLM__ROW(B, 11)
#undef LLM__ROW
        A += LLM__BF16_MR; B += LLM__BF16_NR;
    }
    __m512 vb = _mm512_set1_ps(beta);
#define LLM__ROW(i, n) { float *c = C + n * ldc; \
        if (beta == 0.0f) { _mm512_storeu_ps(c, c##i##0); _mm512_storeu_ps(c + 16, c##i##1); } \
        else { _mm512_storeu_ps(c, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), c##i##0)); \
               _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16), c##i##1)); } }
    LLM__ROW(0, 0) LLM__ROW(1, 1) LLM__ROW(2, 2) LLM__ROW(3, 3) LLM__ROW(4, 4) LLM__ROW(5, 5)
    LLM__ROW(6, 6) LLM__ROW(7, 7) LLM__ROW(8, 8) LLM__ROW(9, 9) LLM__ROW(A, 10) LLM__ROW(B, 11)
#undef LLM__ROW
}

/* One call's shared state: the fp32 job for the shape, grid and blocking (g.kc counts
 * k, even, so pairs never straddle blocks), and the packing buffers in pair words. */
typedef struct llm__gemm_bf16_job {
    llm__gemm_job J;          /* J.buf unused */
    uint32_t *buf;            /* per thread: A block (mc*kc/2 words), then B panel */
    size_t a_words, per_thread;
} llm__gemm_bf16_job;

/* llm__gemm_task's loops, on pair words. Every element of C gets the same operations in
 * the same order wherever it lies, so the result does not depend on the thread count. */
LLM__T_BF16 static void llm__gemm_bf16_task(void *arg, int ith, int nth) {
    const llm__gemm_bf16_job *X = LLM__CAST(const llm__gemm_bf16_job *, arg);
    const llm__gemm_job *J = &X->J;
    const llm__gemm_impl *g = &J->g;
    const int MR = LLM__BF16_MR, NR = LLM__BF16_NR;
    int m0, m1, n0, n1;
    (void)nth;
    if (ith >= J->tm * J->tn) return;
    llm__gemm_rect(J, ith, &m0, &m1, &n0, &n1);
    if (m0 >= m1 || n0 >= n1) return;
    uint32_t *Ap = X->buf + LLM__CAST(size_t, ith) * X->per_thread;
    uint32_t *Bp = Ap + X->a_words;
    float edge[LLM__BF16_MR * LLM__BF16_NR];
    const size_t lda = LLM__CAST(size_t, J->lda), ldb = LLM__CAST(size_t, J->ldb), ldc = LLM__CAST(size_t, J->ldc);
    for (int jc = n0; jc < n1; jc += g->nc) {
        int nc = n1 - jc < g->nc ? n1 - jc : g->nc;
        for (int pc = 0; pc < J->K; pc += g->kc) {
            int kc = J->K - pc < g->kc ? J->K - pc : g->kc, kp = (kc + 1) / 2;
            float beta = pc == 0 ? J->beta : 1.0f;
            if (!J->transB) llm__bf16_pack_n_avx512(Bp, NR, J->B + LLM__CAST(size_t, pc) * ldb + jc, ldb, nc, kc);
            else for (int jr = 0; jr < nc; jr += NR) {
                int w = nc - jr < NR ? nc - jr : NR;
                llm__bf16_pack_t_avx512(Bp + LLM__CAST(size_t, jr) * kp, NR, J->B + LLM__CAST(size_t, jc + jr) * ldb + pc, ldb, w, kc);
            }
            for (int ic = m0; ic < m1; ic += g->mc) {
                int mc = m1 - ic < g->mc ? m1 - ic : g->mc;
                if (J->transA) llm__bf16_pack_n_avx512(Ap, MR, J->A + LLM__CAST(size_t, pc) * lda + ic, lda, mc, kc);
                else for (int ir = 0; ir < mc; ir += MR) {
                    int h = mc - ir < MR ? mc - ir : MR;
                    llm__bf16_pack_t_avx512(Ap + LLM__CAST(size_t, ir) * kp, MR, J->A + LLM__CAST(size_t, ic + ir) * lda + pc, lda, h, kc);
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    int w = nc - jr < NR ? nc - jr : NR;
                    const uint32_t *bs = Bp + LLM__CAST(size_t, jr) * kp;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int h = mc - ir < MR ? mc - ir : MR;
                        const uint32_t *as = Ap + LLM__CAST(size_t, ir) * kp;
                        float *c = J->C + LLM__CAST(size_t, ic + ir) * ldc + jc + jr;
                        if (h == MR && w == NR) {
                            llm__gemm_kern_bf16(kp, as, bs, c, ldc, beta);
                        } else {
                            llm__gemm_kern_bf16(kp, as, bs, edge, LLM__CAST(size_t, NR), 0.0f);
                            llm__gemm_store_tile(edge, NR, c, ldc, h, w, beta);
                        }
                    }
                }
            }
        }
    }
}

/* ---- bf16 matrix-vector, M == 1 with B transposed: the decode shape y = x . W^T.
 * Bound by reading B, so B's rows are rounded as they stream by, never packed; x is
 * rounded once into pair words. Rows go in groups of up to 4 (x loaded once for 4),
 * each row by the same operations in any group, so any thread count gives the same y. */
typedef struct llm__gemv_bf16_job {
    int N, K, ldb;
    const uint32_t *xb;       /* ceil(K/32)*16 pair words of x, zero padded */
    const float *B;           /* (N, ldb) */
    float *y, beta;
} llm__gemv_bf16_job;

LLM__T_BF16 static void llm__gemv_bf16_rows(const llm__gemv_bf16_job *J, size_t j, int n) {
    __m512 acc[4];
    const float *b[4];
    for (int r = 0; r < n; r++) { acc[r] = _mm512_setzero_ps(); b[r] = J->B + (j + LLM__CAST(size_t, r)) * LLM__CAST(size_t, J->ldb); }
    for (int k = 0; k < J->K; k += 32) {
        __mmask16 m0 = llm__bf16_lanes(J->K - k), m1 = llm__bf16_lanes(J->K - k - 16);
        __m512bh xv = LLM__CAST(__m512bh, _mm512_load_si512(J->xb + k / 2));
        for (int r = 0; r < n; r++) {
            __m512bh bv = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, b[r] + k + 16), _mm512_maskz_loadu_ps(m0, b[r] + k));
            acc[r] = _mm512_dpbf16_ps(acc[r], xv, bv);
        }
    }
    for (int r = 0; r < n; r++) {   /* the 16 lanes, summed pairwise in a fixed order */
        float l[16], *y = J->y + j + LLM__CAST(size_t, r);
        _mm512_storeu_ps(l, acc[r]);
        for (int w = 8; w >= 1; w /= 2)
            for (int i = 0; i < w; i++) l[i] += l[i + w];
        *y = J->beta == 0.0f ? l[0] : l[0] + J->beta * *y;
    }
}

LLM__T_BF16 static void llm__gemv_bf16_task(void *arg, int ith, int nth) {
    const llm__gemv_bf16_job *J = LLM__CAST(const llm__gemv_bf16_job *, arg);
    size_t lo, hi, N = LLM__CAST(size_t, J->N);
    llm__split((N + 3) / 4, ith, nth, &lo, &hi);
    for (size_t j = lo * 4; j < hi * 4 && j < N; j += 4) llm__gemv_bf16_rows(J, j, N - j < 4 ? LLM__CAST(int, N - j) : 4);
}

/* y (N) = x (K) . B^T (B: N rows of K) + beta y, with x and B rounded to bf16. */
static void llm__gemv_bf16(llm_pool *pool, int N, int K, const float *x, const float *B, int ldb,
                           float beta, float *y) {
    size_t words = LLM__CAST(size_t, (K + 31) / 32) * 16;
    uint32_t *xb = LLM__CAST(uint32_t *, llm__alloc_aligned(words * sizeof(uint32_t)));
    if (!xb) { llm__sgemm_bf16_ref(0, 1, 1, N, K, x, K, B, ldb, beta, y, N); return; }
    memset(xb, 0, words * sizeof(uint32_t));
    llm__bf16_pack_t_avx512(xb, 1, x, 0, 1, K);   /* one row: xb[p] = pair(x[2p], x[2p+1]) */
    llm__gemv_bf16_job J;
    J.N = N; J.K = K; J.ldb = ldb; J.xb = xb; J.B = B; J.y = y; J.beta = beta;
    if (2.0 * N * K < 2e5 || llm_pool_size(pool) == 1) llm__gemv_bf16_task(&J, 0, 1);
    else llm_pool_run(pool, llm__gemv_bf16_task, &J);
    llm__free_aligned(xb);
}
#endif /* LLM__X86 */

static LLM__UNUSED void llm__sgemm_bf16(llm_pool *pool, int transA, int transB, int M, int N, int K,
                                        const float *A, int lda, const float *B, int ldb, float beta,
                                        float *C, int ldc) {
#ifdef LLM__X86
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || !llm__has_bf16()) {   /* an empty sum, or no bf16 here: fp32 */
        llm__sgemm(pool, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M == 1 && transB && (!transA || lda == 1)) {   /* decode: stream B, no packing */
        llm__gemv_bf16(pool, N, K, A, B, ldb, beta, C);
        return;
    }
    llm__gemm_bf16_job X;
    llm__gemm_job *J = &X.J;
    int nth = llm_pool_size(pool);
    memset(&X, 0, sizeof X);
    /* kc counts k (even). Per thread: the B panel (nc x kc/2 words, 1 MB) and the A block
     * (mc x kc/2 words, 270 KB) share the 2 MB L2; mc covers the 256 rows of the
     * training shapes, so the B panel is streamed once; the B sliver (32 x kc/2 words,
     * 32 KB) stays in the 48 KB L1. (Measured within noise of kc 256-1024, mc 144-516.) */
    J->g.mr = LLM__BF16_MR; J->g.nr = LLM__BF16_NR; J->g.kc = 512; J->g.mc = 264; J->g.nc = 1024;
    J->transA = transA; J->transB = transB; J->M = M; J->N = N; J->K = K;
    J->lda = lda; J->ldb = ldb; J->ldc = ldc; J->A = A; J->B = B; J->C = C; J->beta = beta;
    if (2.0 * M * N * K < 1e6) nth = 1;
    llm__gemm_grid(&J->g, M, N, K, nth, 32.0, &J->tm, &J->tn);
    int ncp = N < J->g.nc ? (N + J->g.nr - 1) / J->g.nr * J->g.nr : J->g.nc;
    size_t kp = LLM__CAST(size_t, ((K < J->g.kc ? K : J->g.kc) + 1) / 2);
    X.a_words = (LLM__CAST(size_t, J->g.mc) * kp + 15) / 16 * 16;
    X.per_thread = X.a_words + (LLM__CAST(size_t, ncp) * kp + 15) / 16 * 16;
    X.buf = LLM__CAST(uint32_t *, llm__alloc_aligned(X.per_thread * sizeof(uint32_t) * LLM__CAST(size_t, J->tm * J->tn)));
    if (!X.buf) {   /* no memory for packing: the reference needs none */
        llm__sgemm_bf16_ref(transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (J->tm * J->tn == 1) llm__gemm_bf16_task(&X, 0, 1);
    else llm_pool_run(pool, llm__gemm_bf16_task, &X);
    llm__free_aligned(X.buf);
#else
    llm__sgemm(pool, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
#endif
}
