/* tests/test_cuda_emu.cpp: tests/cuda_emu.h itself, the CUDA emulator that runs llm_cuda.cu
 * in CI. test_cuda trusts it to behave like a GPU and the CUDA libraries, so each behaviour
 * it relies on is checked here against what CUDA documents, with expected values worked
 * out by hand or by plain loops (never by the emulator): barriers (and threads that return
 * leaving them), shared memory, shuffles, deadlock and divergence reports, launch limits,
 * atomics, bf16 rounding, cuBLAS / cuBLASLt semantics, the out-of-memory switch, NCCL with
 * one rank and with ranks as host threads (LLM_CUDA_EMU_DEVICES). Built by `make test` as
 * C++ with -include tests/cuda_emu.h. */
#include "tests/test.h"
#include <math.h>
#include <thread>

/* ---- kernels ------------------------------------------------------------------------- */
/* out[b*n + i] = in[b*n + n-1-i] through a static shared array, n = blockDim.x*blockDim.y */
static __global__ void k_reverse(float *out, const float *in) {
    __shared__ float buf[1024];
    int n = blockDim.x * blockDim.y, t = threadIdx.y * blockDim.x + threadIdx.x;
    buf[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = buf[n - 1 - t];
}
/* threads >= keep return at once; the rest still meet at __syncthreads twice */
static __global__ void k_early_exit(float *out, int keep) {
    extern __shared__ float sm[];
    int t = threadIdx.x;
    if (t >= keep) return;
    sm[t] = (float)t;
    __syncthreads();
    float v = sm[keep - 1 - t];
    __syncthreads();
    out[t] = v;
}
/* reads dynamic shared memory nobody wrote, then what the other thread wrote */
static __global__ void k_unwritten(float *out) {
    extern __shared__ float sm[];
    int t = threadIdx.x;
    out[t] = sm[t];
    __syncthreads();
    sm[t] = 2.0f * t;
    __syncthreads();
    out[blockDim.x + t] = sm[blockDim.x - 1 - t];
}
/* lane 0 of warp 0 waits at __syncthreads, its warp-mates at __syncwarp: a deadlock */
static __global__ void k_deadlock(int *out) {
    if (threadIdx.x == 0) __syncthreads();
    else __syncwarp();
    out[threadIdx.x] = 1;
}
/* half a warp shuffles, the other half waits at __syncwarp: divergent */
static __global__ void k_diverge(float *out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    else __syncwarp();
    out[threadIdx.x] = v;
}
/* a race: every thread writes one shared word, then all read it */
static __global__ void k_race(int *out) {
    __shared__ int last;
    last = (int)threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = last;
}
static __global__ void k_shuffles(float *bc, float *x8, float *down, double *dx, int *lanes) {
    int t = threadIdx.x, lane = t % 32;
    bc[t] = __shfl_sync(0xffffffffu, (float)t, 5);               /* lane 5 of this warp */
    x8[t] = __shfl_xor_sync(0xffffffffu, (float)t, 4, 8);        /* partner lane ^ 4, groups of 8 */
    down[t] = __shfl_down_sync(0xffffffffu, (float)t, 3, 16);    /* lane + 3 within 16, else own */
    dx[t] = __shfl_xor_sync(0xffffffffu, 1.0 + t * 1e-10, 16);   /* a double keeps all its bits */
    lanes[t] = __shfl_sync(0xffffffffu, lane, 31 - lane);
}
/* a shuffle from a lane that has returned is undefined: the emulator hands out NaN */
static __global__ void k_shfl_exited(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 20);
}
static __global__ void k_atomic(float *sum, int *bits, double *dsum) {
    atomicAdd(sum, 0.25f);
    atomicOr(bits, 1 << (threadIdx.x % 31));
    atomicAdd(dsum, 1.0);
}
static __global__ void k_empty(int *x) { (void)x; }

static float frand(void) { return test_frand(); }
static float bf16_value(float f) { return __bfloat162float(__float2bfloat16(f)); }
static unsigned short bf16_bits(unsigned u) { float f; memcpy(&f, &u, 4); return __float2bfloat16(f).x; }

/* Naive column-major product in double: D = alpha op(A) op(B) + beta C (beta 0: C unread). */
static void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, const float *C, int ldc, double *D) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)(ta ? A[i * lda + p] : A[p * lda + i]) * (tb ? B[p * ldb + j] : B[j * ldb + p]);
            D[j * m + i] = alpha * s + (beta != 0.0f ? beta * (double)C[j * ldc + i] : 0.0);
        }
}
/* Largest error relative to max(|want|, 1): fp32 sums of ~20 terms of size ~1 err by ~1e-6. */
static double rel_err(const float *got, const double *want, int n, int ld, int m) {
    double worst = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double w = want[j * m + i], e = fabs(got[j * ld + i] - w) / fmax(fabs(w), 1.0);
            if (!(e <= worst)) worst = e;
        }
    return worst;
}

static void t_blocks(void) {
    float in[3 * 96], out[3 * 96];
    for (int i = 0; i < 3 * 96; i++) in[i] = (float)i;
    LLM__CU_LAUNCH(k_reverse, 3, dim3(32, 3), 0, 0)(out, in);
    CHECK(cudaGetLastError() == cudaSuccess, "k_reverse launch");
    int bad = 0;
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 96; i++) bad += out[b * 96 + i] != in[b * 96 + 95 - i];
    CHECK(bad == 0, "2D block, static shared, __syncthreads: %d wrong", bad);

    float o2[100];
    LLM__CU_LAUNCH(k_early_exit, 1, 100, 100 * sizeof(float), 0)(o2, 37);
    CHECK(cudaGetLastError() == cudaSuccess, "threads that returned leave the barrier");
    bad = 0;
    for (int t = 0; t < 37; t++) bad += o2[t] != (float)(36 - t);
    CHECK(bad == 0, "early exit: %d wrong", bad);

    float o3[128];
    LLM__CU_LAUNCH(k_unwritten, 1, 64, 64 * sizeof(float), 0)(o3);
    int nans = 0;
    bad = 0;
    for (int t = 0; t < 64; t++) { nans += isnan(o3[t]) != 0; bad += o3[64 + t] != 2.0f * (63 - t); }
    CHECK(nans == 64 && bad == 0, "unwritten dynamic shared memory reads NaN (%d of 64), written reads back (%d wrong)",
          nans, bad);

    int race[2] = {-1, -1};
    LLM__CU_LAUNCH(k_race, 2, 256, 0, 0)(race);
    CHECK(race[0] != race[1], "a race gives different results in odd and even blocks (%d, %d)", race[0], race[1]);
}

static void t_failures(void) {
    int o[64];
    LLM__CU_LAUNCH(k_deadlock, 1, 64, 0, 0)(o);
    cudaError_t e = cudaGetLastError();
    const char *msg = cudaGetErrorString(e);
    CHECK(e == cudaErrorLaunchFailure && strstr(msg, "k_deadlock") && strstr(msg, "deadlock"),
          "deadlock reported, naming the kernel: %s", msg);
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears");
    float f[32];
    LLM__CU_LAUNCH(k_diverge, 1, 32, 0, 0)(f);
    e = cudaGetLastError();
    CHECK(e == cudaErrorLaunchFailure && strstr(cudaGetErrorString(e), "diverged"), "divergent warp: %s",
          cudaGetErrorString(e));
    float r[32];
    LLM__CU_LAUNCH(k_reverse, 1, 32, 0, 0)(r, r);
    CHECK(cudaGetLastError() == cudaSuccess, "a launch after failed ones works");

    LLM__CU_LAUNCH(k_empty, 1, 1025, 0, 0)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads per block");
    LLM__CU_LAUNCH(k_empty, dim3(1, 65536), 32, 0, 0)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y 65536");
    LLM__CU_LAUNCH(k_empty, 0, 32, 0, 0)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "empty grid");
    LLM__CU_LAUNCH(k_empty, 1, 32, 49 * 1024, 0)(o);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "49 KiB of dynamic shared memory without opting in");
    CHECK(cudaFuncSetAttribute(k_empty, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024) == cudaSuccess, "opt in");
    LLM__CU_LAUNCH(k_empty, 1, 32, 99 * 1024, 0)(o);
    CHECK(cudaGetLastError() == cudaSuccess, "99 KiB after opting in to 100");
    CHECK(cudaFuncSetAttribute(k_empty, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) != cudaSuccess,
          "no more than 227 KiB");
    (void)cudaGetLastError();
}

static void t_shuffles(void) {
    float bc[64], x8[64], down[64], ex[16];
    double dx[64];
    int lanes[64];
    LLM__CU_LAUNCH(k_shuffles, 1, 64, 0, 0)(bc, x8, down, dx, lanes);
    CHECK(cudaGetLastError() == cudaSuccess, "shuffles launch");
    int bad = 0;
    for (int t = 0; t < 64; t++) {
        int w = t / 32 * 32, l = t % 32;
        int dn = (l % 16) + 3 < 16 ? t + 3 : t;
        bad += bc[t] != (float)(w + 5);
        bad += x8[t] != (float)(w + (l ^ 4));
        bad += down[t] != (float)dn;
        bad += dx[t] != 1.0 + (w + (l ^ 16)) * 1e-10;
        bad += lanes[t] != 31 - l;
    }
    CHECK(bad == 0, "shfl, shfl_xor width 8, shfl_down width 16, double, int: %d wrong", bad);
    LLM__CU_LAUNCH(k_shfl_exited, 1, 32, 0, 0)(ex);
    CHECK(cudaGetLastError() == cudaSuccess && isnan(ex[0]) && isnan(ex[15]), "shuffle from a returned lane: NaN");

    float sum = 0;
    int bits = 0;
    double dsum = 0;
    LLM__CU_LAUNCH(k_atomic, 5, 128, 0, 0)(&sum, &bits, &dsum);
    CHECK(sum == 160.0f && bits == 0x7fffffff && dsum == 640.0, "atomics: %g %x %g", sum, bits, dsum);
}

/* bf16 = the top 16 bits of a float, rounded to nearest even. */
static void t_bf16(void) {
    CHECK(bf16_bits(0x3f800000u) == 0x3f80, "1.0");
    CHECK(bf16_bits(0x3f808000u) == 0x3f80, "tie, even below: down");
    CHECK(bf16_bits(0x3f818000u) == 0x3f82, "tie, odd below: up");
    CHECK(bf16_bits(0x3f808001u) == 0x3f81, "above the tie: up");
    CHECK(bf16_bits(0x3f807fffu) == 0x3f80, "below the tie: down");
    CHECK(bf16_bits(0xbf818000u) == 0xbf82, "negative tie");
    CHECK(bf16_bits(0x7f7fffffu) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(bf16_bits(0x7f800000u) == 0x7f80 && bf16_bits(0x80000000u) == 0x8000, "inf, -0");
    CHECK(isnan(bf16_value(NAN)) && (bf16_bits(0x7f800001u) & 0x7f) != 0, "NaN stays NaN (even a tiny payload)");
}

/* fp16 (IEEE binary16), checked exhaustively against its definition: every finite half
 * widens to a float that rounds back to the same bits; the midpoint of two neighbours
 * rounds to the even one, and the floats just below and above it to the lower and the
 * upper; the midpoint of 65504 and 65536 rounds to inf; a few values by their bits. */
static float fp16_value(unsigned short bits) { __half h; h.x = bits; return __half2float(h); }
static void t_fp16(void) {
    long bad_trip = 0, bad_mid = 0, checked = 0;
    for (unsigned b = 0; b < 0x7c00u; b++) {   /* +0 up to 65504, and the negatives */
        for (unsigned sign = 0; sign <= 0x8000u; sign += 0x8000u) {
            float f = fp16_value((unsigned short)(b | sign));
            if (__float2half(f).x != (b | sign)) bad_trip++;
            float g = fp16_value((unsigned short)((b + 1) | sign));   /* the next away from 0 (0x7c00: inf) */
            float mid = b + 1 == 0x7c00u ? (sign ? -65520.0f : 65520.0f) : (float)(((double)f + g) / 2);
            unsigned even = (b & 1u) ? b + 1 : b;
            if (__float2half(mid).x != (even | sign) ||
                __float2half(nextafterf(mid, 0.0f)).x != (b | sign) ||
                __float2half(nextafterf(mid, sign ? -INFINITY : INFINITY)).x != ((b + 1) | sign))
                bad_mid++;
            checked++;
        }
    }
    CHECK(bad_trip == 0, "fp16: %ld halves do not survive half -> float -> half", bad_trip);
    CHECK(bad_mid == 0, "fp16: %ld of %ld midpoints round wrongly", bad_mid, checked);
    CHECK(fp16_value(0x3c00) == 1.0f && fp16_value(0x7bff) == 65504.0f && fp16_value(0xc000) == -2.0f &&
          fp16_value(0x0400) == ldexpf(1.0f, -14) && fp16_value(0x0001) == ldexpf(1.0f, -24), "fp16 values by bits");
    CHECK(__float2half(65519.0f).x == 0x7bff && __float2half(65520.0f).x == 0x7c00 &&
          __float2half(-1e6f).x == 0xfc00 && __float2half(ldexpf(1.0f, -26)).x == 0, "fp16 overflow and underflow");
    CHECK(isinf(fp16_value(0x7c00)) && isnan(fp16_value(__float2half(NAN).x)), "inf, NaN");
    printf("  fp16: %ld midpoints and every finite half checked\n", checked);
}

/* One 16x16x16 tile product through wmma, A row-major, B column-major. */
template <class T> static __global__ void k_mma(float *D, const T *A, const T *B) {
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major> a;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, nvcuda::wmma::col_major> b;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> c;
    nvcuda::wmma::fill_fragment(c, 0.0f);
    nvcuda::wmma::load_matrix_sync(a, A, 16);
    nvcuda::wmma::load_matrix_sync(b, B, 16);
    nvcuda::wmma::mma_sync(c, a, b, c);
    nvcuda::wmma::store_matrix_sync(D, c, 16, nvcuda::wmma::mem_row_major);
}
/* The tile product in bf16 and fp16 against double sums of the rounded operands; then the
 * architecture switch: LLM_CUDA_EMU_SM=75 reports sm_75 with the T4's 64 KiB of opt-in
 * shared memory, and a bf16 tile fails the launch there while an fp16 one runs. */
static void t_wmma_arch(void) {
    float *D, *Af, *Bf;
    __half *Ah, *Bh;
    __nv_bfloat16 *Ab, *Bb;
    cudaMalloc(&D, 256 * sizeof(float)); cudaMalloc(&Af, 256 * sizeof(float)); cudaMalloc(&Bf, 256 * sizeof(float));
    cudaMalloc(&Ah, 256 * sizeof(__half)); cudaMalloc(&Bh, 256 * sizeof(__half));
    cudaMalloc(&Ab, 256 * sizeof(__nv_bfloat16)); cudaMalloc(&Bb, 256 * sizeof(__nv_bfloat16));
    for (int i = 0; i < 256; i++) {
        float a = frand(), b = frand();
        Ah[i] = __float2half(a); Bh[i] = __float2half(b);
        Ab[i] = __float2bfloat16(a); Bb[i] = __float2bfloat16(b);
    }
    for (int t = 0; t < 2; t++) {
        if (t == 0) LLM__CU_LAUNCH(k_mma<__half>, 1, 32, 0, 0)(D, Ah, Bh);
        else LLM__CU_LAUNCH(k_mma<__nv_bfloat16>, 1, 32, 0, 0)(D, Ab, Bb);
        cudaError_t e = cudaGetLastError();
        CHECK(e == cudaSuccess, "wmma %s: %s", t ? "bf16" : "fp16", cudaGetErrorString(e));
        double worst = 0;
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 16; j++) {
                double s = 0;
                for (int k = 0; k < 16; k++)
                    s += t ? (double)__bfloat162float(Ab[i * 16 + k]) * __bfloat162float(Bb[j * 16 + k])
                           : (double)__half2float(Ah[i * 16 + k]) * __half2float(Bh[j * 16 + k]);
                if (fabs(D[i * 16 + j] - s) > worst) worst = fabs(D[i * 16 + j] - s);
            }
        CHECK(worst < 1e-5, "wmma %s tile product: max err %.3g", t ? "bf16" : "fp16", worst);
    }
    setenv("LLM_CUDA_EMU_SM", "75", 1);
    cudaDeviceProp prop;
    int optin = 0;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 7 && prop.minor == 5 &&
          cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) == cudaSuccess &&
          optin == 64 * 1024, "LLM_CUDA_EMU_SM=75: sm_%d%d, %d bytes of opt-in shared memory", prop.major,
          prop.minor, optin);
    CHECK(cudaFuncSetAttribute(k_empty, cudaFuncAttributeMaxDynamicSharedMemorySize, 65 * 1024) != cudaSuccess,
          "sm_75: no more than 64 KiB");
    (void)cudaGetLastError();
    LLM__CU_LAUNCH(k_mma<__half>, 1, 32, 0, 0)(D, Ah, Bh);
    CHECK(cudaGetLastError() == cudaSuccess, "sm_75: fp16 wmma runs");
    LLM__CU_LAUNCH(k_mma<__nv_bfloat16>, 1, 32, 0, 0)(D, Ab, Bb);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure && strstr(llm_emu::msg, "sm_80"),
          "sm_75: a bf16 tile fails the launch: %s", llm_emu::msg);
    unsetenv("LLM_CUDA_EMU_SM");
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 9, "back to sm_90");
    cudaFree(D); cudaFree(Af); cudaFree(Bf); cudaFree(Ah); cudaFree(Bh); cudaFree(Ab); cudaFree(Bb);
}

static void t_cublas(void) {
    enum { M = 13, N = 7, K = 19, LD = 24 };
    float A[LD * LD], B[LD * LD], C0[LD * N], C[LD * N];
    double want[M * N];
    for (int i = 0; i < LD * LD; i++) { A[i] = frand(); B[i] = frand(); }
    for (int i = 0; i < LD * N; i++) C0[i] = frand();
    cublasHandle_t h;
    CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int b = 0; b < 2; b++) {
                float alpha = 0.5f, beta = b ? 2.0f : 0.0f;
                memcpy(C, C0, sizeof C);
                if (!b) C[3] = NAN;   /* beta 0: C is not read */
                cublasStatus_t s = cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, M,
                                               N, K, &alpha, A, LD, B, LD, &beta, C, LD);
                ref_gemm(ta, tb, M, N, K, alpha, A, LD, B, LD, beta, C0, LD, want);
                double e = rel_err(C, want, N, LD, M);
                CHECK(s == CUBLAS_STATUS_SUCCESS && e < 1e-5, "Sgemm ta=%d tb=%d beta=%g: err %.3g", ta, tb, beta, e);
                CHECK(C[M] == C0[M], "rows past m are left alone");
            }
    float one = 1.0f, zero = 0.0f;
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, A, M - 1, B, LD, &zero, C, LD) ==
          CUBLAS_STATUS_INVALID_VALUE, "lda < m");
    /* GemmEx with bf16 operands: the products of the rounded values, summed in fp32 */
    __nv_bfloat16 a16[LD * LD], b16[LD * LD];
    float ar[LD * LD], br[LD * LD];
    for (int i = 0; i < LD * LD; i++) {
        a16[i] = __float2bfloat16(A[i]); b16[i] = __float2bfloat16(B[i]);
        unsigned ua = (unsigned)a16[i].x << 16, ub = (unsigned)b16[i].x << 16;
        memcpy(&ar[i], &ua, 4); memcpy(&br[i], &ub, 4);
    }
    CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, a16, CUDA_R_16BF, LD, b16, CUDA_R_16BF, LD, &zero,
                       C, CUDA_R_32F, LD, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS, "GemmEx");
    ref_gemm(1, 0, M, N, K, 1.0f, ar, LD, br, LD, 0.0f, C0, LD, want);
    CHECK(rel_err(C, want, N, LD, M) < 1e-5, "GemmEx bf16: err %.3g", rel_err(C, want, N, LD, M));
    CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, a16, CUDA_R_16BF, LD, B, CUDA_R_32F, LD, &zero,
                       C, CUDA_R_32F, LD, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
          "mixed operand types: not supported");
    /* and with fp16 operands */
    __half h16a[LD * LD], h16b[LD * LD];
    for (int i = 0; i < LD * LD; i++) {
        h16a[i] = __float2half(A[i]); h16b[i] = __float2half(B[i]);
        ar[i] = __half2float(h16a[i]); br[i] = __half2float(h16b[i]);
    }
    CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, M, N, K, &one, h16a, CUDA_R_16F, LD, h16b, CUDA_R_16F, LD, &zero,
                       C, CUDA_R_32F, LD, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS, "GemmEx fp16");
    ref_gemm(0, 1, M, N, K, 1.0f, ar, LD, br, LD, 0.0f, C0, LD, want);
    CHECK(rel_err(C, want, N, LD, M) < 1e-5, "GemmEx fp16: err %.3g", rel_err(C, want, N, LD, M));
    cublasDestroy(h);
}

/* cuBLASLt: D = gelu(aux), aux = op(A) op(B) + bias[row]; D = x + bias; the checks. */
static void t_cublaslt(void) {
    enum { M = 24, N = 5, K = 11 };
    float *A, *B, *D, *aux, *bias;
    cudaMalloc(&A, K * M * sizeof(float)); cudaMalloc(&B, K * N * sizeof(float));
    cudaMalloc(&D, M * N * sizeof(float)); cudaMalloc(&aux, M * N * sizeof(float)); cudaMalloc(&bias, M * sizeof(float));
    for (int i = 0; i < K * M; i++) A[i] = frand();
    for (int i = 0; i < K * N; i++) B[i] = frand();
    for (int i = 0; i < M; i++) bias[i] = frand();
    double x[M * N];
    ref_gemm(1, 0, M, N, K, 1.0f, A, K, B, K, 0.0f, NULL, M, x);   /* A stored (K,M), used transposed */
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtCreate(&lt);
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t opt = CUBLAS_OP_T;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    int64_t aux_ld = M;
    cublasStatus_t s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opt, sizeof opt);
    if (!s) s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (!s) s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (!s) s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux);
    if (!s) s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld);
    if (!s) s = cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, K, M, K);
    if (!s) s = cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, K, N, K);
    if (!s) s = cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, M, N, M);
    if (!s) s = cublasLtMatmulPreferenceCreate(&pref);
    CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt set-up: %s", cublasGetStatusString(s));
    CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &aux_ld, sizeof aux_ld) ==
          CUBLAS_STATUS_INVALID_VALUE, "an attribute of the wrong size");
    cublasLtMatmulHeuristicResult_t hr;
    int found = 0;
    s = cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 1, &hr, &found);
    CHECK(s == CUBLAS_STATUS_SUCCESS && found == 1, "heuristic");
    float one = 1.0f, zero = 0.0f;
    s = cublasLtMatmul(lt, desc, &one, A, la, B, lb, &zero, D, ld, D, ld, &hr.algo, NULL, 0, 0);
    double worst_aux = 0, worst_d = 0;
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            double a = x[j * M + i] + bias[i], g = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
            worst_aux = fmax(worst_aux, fabs(aux[j * M + i] - a) / fmax(fabs(a), 1.0));
            worst_d = fmax(worst_d, fabs(D[j * M + i] - g) / fmax(fabs(g), 1.0));
        }
    CHECK(s == CUBLAS_STATUS_SUCCESS && worst_aux < 1e-5 && worst_d < 1e-5, "GELU_AUX_BIAS: aux err %.3g, D err %.3g",
          worst_aux, worst_d);
    epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    s = cublasLtMatmul(lt, desc, &one, A, la, B, lb, &zero, D, ld, D, ld, &hr.algo, NULL, 0, 0);
    double worst = 0;
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            double a = x[j * M + i] + bias[i];
            worst = fmax(worst, fabs(D[j * M + i] - a) / fmax(fabs(a), 1.0));
        }
    CHECK(s == CUBLAS_STATUS_SUCCESS && worst < 1e-5, "BIAS: err %.3g", worst);
    s = cublasLtMatmul(lt, desc, &one, A + 1, la, B, lb, &zero, D, ld, D, ld, &hr.algo, NULL, 0, 0);
    CHECK(s == CUBLAS_STATUS_INVALID_VALUE, "A less aligned than the preference promised (256 by default)");
    epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    aux_ld = M + 1;   /* must be a multiple of 8 */
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld);
    CHECK(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 1, &hr, &found) == CUBLAS_STATUS_INVALID_VALUE &&
          found == 0, "aux ld not a multiple of 8");
    epi = CUBLASLT_EPILOGUE_RELU;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    CHECK(cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, ld, ld, pref, 1, &hr, &found) == CUBLAS_STATUS_NOT_SUPPORTED,
          "an epilogue the emulator lacks: not supported");
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la); cublasLtMatrixLayoutDestroy(lb); cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(desc);
    cublasLtDestroy(lt);
    cudaFree(A); cudaFree(B); cudaFree(D); cudaFree(aux); cudaFree(bias);
}

/* main set LLM_CUDA_EMU_FAIL_MALLOC_AFTER=3 before the first cudaMalloc. */
static void t_memory(void) {
    void *p[4];
    cudaError_t e[4];
    for (int i = 0; i < 4; i++) e[i] = cudaMalloc(&p[i], 100);
    CHECK(e[0] == cudaSuccess && e[1] == cudaSuccess && e[2] == cudaErrorMemoryAllocation && p[2] == NULL &&
          e[3] == cudaSuccess, "the 3rd cudaMalloc fails: %d %d %d %d", e[0], e[1], e[2], e[3]);
    (void)cudaGetLastError();
    CHECK(cudaFree(p[0]) == cudaSuccess && cudaFree(p[0]) == cudaErrorInvalidValue, "double free is caught");
    int x;
    CHECK(cudaFree(&x) == cudaErrorInvalidValue, "freeing a host pointer is caught");
    void *big = NULL;
    CHECK(cudaMalloc(&big, (size_t)1 << 50) == cudaErrorMemoryAllocation && big == NULL, "1 PiB");
    size_t fr = 0, tot = 0;
    CHECK(cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot == (size_t)16 << 30 && fr <= tot - 200, "mem info");
    char buf[64];
    CHECK(cudaMemcpy(buf + 8, buf, 32, cudaMemcpyDeviceToDevice) == cudaErrorInvalidValue, "overlapping cudaMemcpy");
    (void)cudaGetLastError();
    cudaFree(p[1]); cudaFree(p[3]);
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && strstr(prop.name, "emulator") && prop.major == 9,
          "device 0 says it is the emulator");
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice, "one device");
    (void)cudaGetLastError();
}

static void t_nccl(void) {
    ncclUniqueId id, id2;
    ncclComm_t c = NULL;
    CHECK(ncclGetUniqueId(&id) == ncclSuccess && ncclGetUniqueId(&id2) == ncclSuccess &&
          memcmp(&id, &id2, sizeof id) != 0, "unique ids differ");
    CHECK(ncclCommInitRank(&c, 1, id, 1) == ncclInvalidArgument && c == NULL, "rank outside [0, nranks)");
    CHECK(ncclCommInitRank(&c, 1, id, 0) == ncclSuccess && c, "one rank");
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0};
    CHECK(ncclAllReduce(a, b, 5, ncclFloat, ncclAvg, c, 0) == ncclSuccess && memcmp(a, b, sizeof a) == 0,
          "the mean over one rank is the buffer");
    CHECK(ncclAllReduce(a, a, 5, ncclFloat, ncclSum, c, 0) == ncclSuccess && a[4] == 5.0f, "in place");
    int ia[2] = {7, -9}, ib[2] = {0, 0};
    CHECK(ncclAllReduce(ia, ib, 2, ncclInt32, ncclSum, c, 0) == ncclSuccess && ib[0] == 7 && ib[1] == -9,
          "one rank: any type is a copy");
    CHECK(ncclGroupStart() == ncclSuccess && ncclGroupEnd() == ncclSuccess && ncclGroupEnd() == ncclInvalidUsage,
          "groups nest");
    ncclCommDestroy(c);
}

/* ---- NCCL, ranks as host threads ------------------------------------------------------
 * Each rank is a std::thread on its own device; the CHECKs run on the main thread after
 * the join (test.h's counters are not atomic). Expected values are plain float arithmetic
 * in rank order, written out below, never the emulator's. */
enum { NR = 3, NV = 64 };
struct rank_run {
    int rank, nranks, dev, count_add;   /* count_add / type_alt / op_alt: make a rank disagree */
    ncclDataType_t type_alt;
    ncclRedOp_t op_alt;
    ncclUniqueId id;
    ncclResult_t init, ar[8];
    float x[NV], sum[NV], avg[NV], mx[NV];   /* x: this rank's values; the results */
    __nv_bfloat16 hb[2];
    double d[2];
    int current_dev;
};
static void rank_main(rank_run *r) {
    memset(r->ar, 0xff, sizeof r->ar);
    cudaSetDevice(r->dev);
    ncclComm_t c = NULL;
    r->init = ncclCommInitRank(&c, r->nranks, r->id, r->rank);
    cudaGetDevice(&r->current_dev);
    if (r->init != ncclSuccess) return;
    for (int i = 0; i < NV; i++) r->avg[i] = r->x[i];
    r->ar[0] = ncclAllReduce(r->x, r->sum, NV, ncclFloat, ncclSum, c, 0);     /* out of place */
    r->ar[1] = ncclAllReduce(r->avg, r->avg, NV, ncclFloat, ncclAvg, c, 0);   /* in place */
    r->ar[2] = ncclAllReduce(r->x, r->mx, NV, ncclFloat, ncclMax, c, 0);
    /* bf16: 1 + 2^-8 + ... is rounded to bf16 after every add (8 significant bits) */
    r->hb[0] = __float2bfloat16(r->rank == 0 ? 1.0f : 0.00390625f);
    r->hb[1] = __float2bfloat16(3.0f);
    r->ar[3] = ncclAllReduce(r->hb, r->hb, 2, ncclBfloat16, ncclSum, c, 0);
    r->d[0] = 0.1 * (r->rank + 1);
    r->d[1] = -1.0;
    r->ar[4] = ncclAllReduce(r->d, r->d, 2, ncclDouble, ncclAvg, c, 0);
    /* disagreements, when asked: every rank must see the error */
    float t[NV + 1];
    memcpy(t, r->x, sizeof r->x);
    r->ar[5] = ncclAllReduce(t, t, (size_t)(NV + r->count_add), r->type_alt, r->op_alt, c, 0);
    ncclGroupStart();
    r->ar[6] = ncclAllReduce(t, t, 1, ncclFloat, ncclSum, c, 0);   /* would wait for itself */
    ncclGroupEnd();
    ncclCommDestroy(c);
}
/* Run nranks ranks; dev[r] = r unless same_dev; rank `odd` (if >= 0) disagrees as set. */
static void run_ranks(rank_run *rr, int nranks, ncclUniqueId id) {
    std::thread th[NR];
    for (int r = 0; r < nranks; r++) {
        rr[r].nranks = nranks;
        rr[r].id = id;
        th[r] = std::thread(rank_main, &rr[r]);
    }
    for (int r = 0; r < nranks; r++) th[r].join();
}
static void rank_setup(rank_run *rr, int nranks) {
    memset(rr, 0, sizeof(rank_run) * NR);
    for (int r = 0; r < nranks; r++) {
        rr[r].rank = r;
        rr[r].dev = r;
        rr[r].type_alt = ncclFloat;
        rr[r].op_alt = ncclSum;
        for (int i = 0; i < NV; i++)   /* values whose float sums round (a wide spread) */
            rr[r].x[i] = (float)((i * 37 + r * 11) % 23 - 11) * powf(2.0f, (float)((i + 5 * r) % 13 - 6)) / 3.0f;
    }
}

static void t_nccl_ranks(void) {
    int n = 0;
    CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n == NR, "LLM_CUDA_EMU_DEVICES=3: %d devices", n);
    cudaDeviceProp p1;
    CHECK(cudaSetDevice(2) == cudaSuccess && cudaGetDeviceProperties(&p1, 2) == cudaSuccess &&
          strstr(p1.name, "emulator"), "device 2 exists");
    CHECK(cudaSetDevice(3) == cudaErrorInvalidDevice, "device 3 does not");
    (void)cudaGetLastError();
    cudaSetDevice(0);

    static rank_run rr[NR];
    for (int W = 2; W <= 3; W++) {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        rank_setup(rr, W);
        run_ranks(rr, W, id);
        int bad_sum = 0, bad_avg = 0, bad_max = 0, differ = 0;
        const float inv = 1.0f / (float)W;   /* NCCL's avg: each value times 1/W in float, then the sum */
        for (int i = 0; i < NV; i++) {
            float s = rr[0].x[i], a = rr[0].x[i] * inv, m = rr[0].x[i];
            for (int r = 1; r < W; r++) {
                s = s + rr[r].x[i];
                a = a + rr[r].x[i] * inv;
                m = rr[r].x[i] > m ? rr[r].x[i] : m;
            }
            for (int r = 0; r < W; r++) {
                bad_sum += memcmp(&rr[r].sum[i], &s, 4) != 0;
                bad_avg += memcmp(&rr[r].avg[i], &a, 4) != 0;
                bad_max += rr[r].mx[i] != m;
                differ += memcmp(&rr[r].sum[i], &rr[0].sum[i], 4) != 0 || memcmp(&rr[r].avg[i], &rr[0].avg[i], 4) != 0;
            }
        }
        for (int r = 0; r < W; r++) {
            CHECK(rr[r].init == ncclSuccess && rr[r].current_dev == r, "W %d rank %d: init %d on device %d", W, r,
                  (int)rr[r].init, rr[r].current_dev);
            CHECK(rr[r].ar[0] == ncclSuccess && rr[r].ar[1] == ncclSuccess && rr[r].ar[2] == ncclSuccess &&
                  rr[r].ar[3] == ncclSuccess && rr[r].ar[4] == ncclSuccess,
                  "W %d rank %d: all-reduces %d %d %d %d %d", W, r, (int)rr[r].ar[0], (int)rr[r].ar[1],
                  (int)rr[r].ar[2], (int)rr[r].ar[3], (int)rr[r].ar[4]);
            CHECK(rr[r].ar[5] == ncclSuccess, "W %d rank %d: agreeing call", W, r);
            CHECK(rr[r].ar[6] == ncclInvalidUsage, "W %d rank %d: inside a group: refused (%d)", W, r, (int)rr[r].ar[6]);
        }
        CHECK(bad_sum == 0 && bad_avg == 0 && bad_max == 0, "W %d: %d sums, %d means, %d maxima wrong of %d",
              W, bad_sum, bad_avg, bad_max, W * NV);
        CHECK(differ == 0, "W %d: ranks got different bits in %d values", W, differ);
        /* bf16: 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even, 1; a third 2^-8 makes 1 + 2^-8
         * again, 1 again. 3 + 3 (+ 3) is exact. */
        for (int r = 0; r < W; r++)
            CHECK(rr[r].hb[0].x == 0x3f80 && __bfloat162float(rr[r].hb[1]) == 3.0f * (float)W,
                  "W %d rank %d: bf16 sum %#x %g", W, r, rr[r].hb[0].x, (double)__bfloat162float(rr[r].hb[1]));
        /* double avg: 0.1 (r+1) times 1/W, summed in rank order */
        double dinv = 1.0 / W, d0 = 0.1 * dinv, dm = -1.0 * dinv + -1.0 * dinv;
        for (int r = 1; r < W; r++) d0 = d0 + 0.1 * (r + 1) * dinv;
        if (W == 3) dm = dm + -1.0 * dinv;
        for (int r = 0; r < W; r++)
            CHECK(rr[r].d[0] == d0 && rr[r].d[1] == dm, "W %d rank %d: double mean %.17g %.17g", W, r, rr[r].d[0], rr[r].d[1]);
    }
    /* with W = 2 the mean is the sum halved (1/2 is exact); with 3 it is not the sum / 3 */
    {
        float s = 0.1f + 0.2f, a = 0.1f * (1.0f / 3.0f) + 0.2f * (1.0f / 3.0f);
        CHECK(0.1f * 0.5f + 0.2f * 0.5f == s * 0.5f && a != s / 3.0f,
              "the premultiplied mean (a plain-arithmetic fact the docs rely on)");
    }

    /* disagreements: every rank gets ncclInvalidUsage */
    const char *what[3] = {"count", "type", "op"};
    for (int k = 0; k < 3; k++) {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        rank_setup(rr, 2);
        if (k == 0) rr[1].count_add = 1;
        if (k == 1) rr[1].type_alt = ncclBfloat16;
        if (k == 2) rr[0].op_alt = ncclMax;
        run_ranks(rr, 2, id);
        CHECK(rr[0].ar[5] == ncclInvalidUsage && rr[1].ar[5] == ncclInvalidUsage,
              "mismatched %s: %d %d", what[k], (int)rr[0].ar[5], (int)rr[1].ar[5]);
    }

    /* joining: a rank twice, two nranks, one device twice: refused on every rank */
    for (int k = 0; k < 3; k++) {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        rank_setup(rr, 2);
        rr[0].nranks = rr[1].nranks = 2;
        rr[0].id = rr[1].id = id;
        if (k == 0) rr[1].rank = 0;
        if (k == 2) rr[1].dev = 0;
        int n1 = k == 1 ? 3 : 2;
        std::thread t0(rank_main, &rr[0]);
        rr[1].nranks = n1;
        std::thread t1(rank_main, &rr[1]);
        t0.join();
        t1.join();
        CHECK(rr[0].init == ncclInvalidUsage && rr[1].init == ncclInvalidUsage, "join case %d (%s): %d %d", k,
              k == 0 ? "rank twice" : k == 1 ? "nranks 2 and 3" : "device twice", (int)rr[0].init, (int)rr[1].init);
    }

    /* a rank that never comes: the others give up after LLM_CUDA_EMU_NCCL_TIMEOUT */
    setenv("LLM_CUDA_EMU_NCCL_TIMEOUT", "0.3", 1);
    {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        ncclComm_t c = NULL;
        auto t0 = std::chrono::steady_clock::now();
        ncclResult_t e = ncclCommInitRank(&c, 2, id, 0);
        double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK(e == ncclSystemError && c == NULL && dt >= 0.29 && dt < 10.0, "missing rank: %d after %.2f s", (int)e, dt);
    }
    /* a peer that left: rank 0's collective fails (ncclRemoteError: before or after rank 1's
     * destroy, never a wait) */
    {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        ncclComm_t c0 = NULL, c1 = NULL;
        ncclResult_t e0 = ncclInternalError, e1 = ncclInternalError, ea = ncclInternalError;
        std::thread t1([&] { cudaSetDevice(1); e1 = ncclCommInitRank(&c1, 2, id, 1); ncclCommDestroy(c1); });
        e0 = ncclCommInitRank(&c0, 2, id, 0);
        float v = 1.0f;
        t1.join();
        if (c0) ea = ncclAllReduce(&v, &v, 1, ncclFloat, ncclSum, c0, 0);
        ncclCommDestroy(c0);
        CHECK(e0 == ncclSuccess && e1 == ncclSuccess && ea == ncclRemoteError, "peer gone: %d %d %d",
              (int)e0, (int)e1, (int)ea);
    }
    /* a collective a peer never calls: times out */
    {
        ncclUniqueId id;
        ncclGetUniqueId(&id);
        ncclComm_t c0 = NULL, c1 = NULL;
        ncclResult_t e1 = ncclInternalError, ea = ncclInternalError, eq = ncclInternalError;
        std::atomic<int> done{0};
        std::thread t1([&] {
            cudaSetDevice(1);
            e1 = ncclCommInitRank(&c1, 2, id, 1);
            while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            ncclCommDestroy(c1);
        });
        ncclResult_t e0 = ncclCommInitRank(&c0, 2, id, 0);
        float v = 1.0f;
        if (c0) ea = ncclAllReduce(&v, &v, 1, ncclFloat, ncclSum, c0, 0);
        if (c0) ncclCommGetAsyncError(c0, &eq);
        done = 1;
        t1.join();
        ncclCommDestroy(c0);
        CHECK(e0 == ncclSuccess && e1 == ncclSuccess && ea == ncclSystemError && eq == ncclSystemError,
              "collective timeout: %d %d %d, async error %d", (int)e0, (int)e1, (int)ea, (int)eq);
    }
    unsetenv("LLM_CUDA_EMU_NCCL_TIMEOUT");
}

int main(void) {
    setenv("LLM_CUDA_EMU_FAIL_MALLOC_AFTER", "3", 1);
    t_memory();
    t_blocks();
    t_failures();
    t_shuffles();
    t_bf16();
    t_fp16();
    t_wmma_arch();
    t_cublas();
    t_cublaslt();
    t_nccl();
    setenv("LLM_CUDA_EMU_DEVICES", "3", 1);   /* read at each call; no other thread runs yet */
    t_nccl_ranks();
    return TEST_END("test_cuda_emu");
}
