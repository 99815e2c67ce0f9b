/* llm_cuda.cu - the CUDA backend for llm.h: every op of the backend table on an NVIDIA GPU.
 *
 * WHAT
 *   Fills llm.h's `llm_backend` table with GPU kernels. Compiled with nvcc into an object
 *   that is linked beside a program using llm.h (whose implementation lives in that
 *   program's .c file); the program chooses it with one line:
 *       llm_options opt = {0};  opt.backend = llm_cuda_backend();
 *   Tensor memory (parameters, gradients, optimizer moments, activations) then lives on
 *   the GPU; the model code is the same.
 *
 * BUILD
 *   nvcc -O3 -std=c++17 -I. -c llm_cuda.cu -o llm_cuda.o
 *   cc -O2 prog.c llm_cuda.o -lcublas -lcudart -lstdc++ -lm -pthread
 *
 * DESIGN
 *   - One device, one stream. Every op is queued on that stream and returns at once;
 *     upload, download and sumsq wait for the stream (they are synchronous).
 *   - Matmuls go to cuBLAS (cublasSgemm, FP32 math: TF32 stays off, so results match
 *     the CPU to ~1e-6 relative). Everything else is a kernel in this file, each with
 *     the math in a comment, forward beside backward, in model order.
 *   - Ops return void (the table's contract), so a failure inside an op is remembered
 *     (sticky) in the backend state: the first message is kept, later ops are skipped,
 *     and the next call that returns a status (alloc, upload, download, sumsq -> NaN)
 *     reports it. CUDA's own asynchronous errors surface the same way, at the next
 *     synchronising call. Set LLM_CUDA_SYNC=1 to synchronise after every kernel, so an
 *     error names the kernel that caused it.
 *   - Determinism: every reduction has a fixed order (warp butterflies, fixed block
 *     counts, per-column partials summed in split order), so a run repeats bit for bit,
 *     except the token-embedding gradient, which uses float atomicAdd (see encoder_bwd).
 *   - Attention is flash-attention style: the (T,T) score matrix never exists in global
 *     memory. Forward keeps a running max and sum per query row (online softmax) and
 *     saves lse = log(sum_j exp(s_ij)); backward recomputes P_ij = exp(s_ij - lse_i).
 *     Head size up to 128.
 *
 * BF16 MIXED PRECISION (planned, not in this file yet)
 *   fp32 master weights, gradients and AdamW moments stay as they are; the backend keeps
 *   a bf16 copy of each matmul weight (refreshed by the AdamW kernel, which writes both)
 *   and bf16 activations for the matmul inputs; matmuls run in cublasLt with bf16 A/B,
 *   fp32 accumulation (CUBLAS_COMPUTE_32F) and the bias / GELU epilogues; layernorm,
 *   softmax, cross-entropy and attention statistics accumulate in fp32.
 */
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "llm.h"

/* Messages go to llm.h's llm_set_error(), so llm_last_error() reports them. */

//==== STATE ============================================================================
#define LLM__CU_THREADS 256                 /* threads per block of the elementwise kernels */
#define LLM__CU_SUMSQ_BLOCKS 1024           /* fixed grid of sumsq's first pass */
#define LLM__CU_SCRATCH_FLOATS (1u << 21)   /* column-sum partials: 8 MiB */
#define LLM__CU_COLSUM_SPLITS 32            /* row splits of a column sum */
#define LLM__CU_HS_MAX 128                  /* largest attention head size */
#define LLM__CU_ATT_WARPS 8                 /* query (or key) rows per attention block */
#define LLM__CU_FULL 0xffffffffu            /* all lanes of a warp */

typedef struct llm__cu {
    int dev;                  /* device index */
    cudaStream_t stream;      /* every op is queued here */
    cublasHandle_t blas;
    double *sumsq_part;       /* (LLM__CU_SUMSQ_BLOCKS + 1) device: partials, then the total */
    float *scratch;           /* (LLM__CU_SCRATCH_FLOATS) device: column-sum partials */
    int sync_each;            /* LLM_CUDA_SYNC=1: synchronise after every kernel */
    llm_status status;        /* first failure (sticky), LLM_OK if none */
    char msg[512];            /* its message */
} llm__cu;

/* Record a failure (the first one wins), pass it to llm_last_error(), return it. */
static llm_status llm__cu_fail(llm__cu *st, llm_status s, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (st && st->status == LLM_OK) {
        st->status = s;
        memcpy(st->msg, buf, sizeof buf);
    }
    return llm_set_error(s, "%s", buf);
}

/* The function name of a call's source text: "cudaMalloc(&p, n)" -> "cudaMalloc". */
static void llm__cu_callname(char *dst, size_t cap, const char *call) {
    size_t n = 0;
    while (call[n] && call[n] != '(' && n + 1 < cap) { dst[n] = call[n]; n++; }
    dst[n] = 0;
}

/* Check a CUDA runtime result. `what` says what the call was doing, with its sizes. */
static bool llm__cu_ok(llm__cu *st, cudaError_t e, const char *call, const char *fmt, ...) {
    if (e == cudaSuccess) return true;
    (void)cudaGetLastError();  /* clear a non-sticky error so the next check is clean */
    char name[64], what[256];
    llm__cu_callname(name, sizeof name, call);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    llm__cu_fail(st, e == cudaErrorMemoryAllocation ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                 "CUDA: %s failed: %s (%s) [%s]", name, cudaGetErrorString(e),
                 cudaGetErrorName(e), what);
    return false;
}
#define LLM__CUDA(st, call, ...) llm__cu_ok((st), (call), #call, __VA_ARGS__)

static bool llm__blas_ok(llm__cu *st, cublasStatus_t e, const char *call, const char *fmt, ...) {
    if (e == CUBLAS_STATUS_SUCCESS) return true;
    char name[64], what[256];
    llm__cu_callname(name, sizeof name, call);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    llm__cu_fail(st, e == CUBLAS_STATUS_ALLOC_FAILED ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                 "cuBLAS: %s failed: %s [%s]", name, cublasGetStatusString(e), what);
    return false;
}
#define LLM__BLAS(st, call, ...) llm__blas_ok((st), (call), #call, __VA_ARGS__)

/* After a kernel launch: a bad launch configuration shows here; with LLM_CUDA_SYNC=1 an
 * error during the kernel does too. */
static void llm__cu_launched(llm__cu *st, const char *kernel, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && st->sync_each) e = cudaStreamSynchronize(st->stream);
    if (e != cudaSuccess)
        llm__cu_fail(st, e == cudaErrorMemoryAllocation ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                     "CUDA: kernel %s failed: %s (%s) [%s]", kernel, cudaGetErrorString(e),
                     cudaGetErrorName(e), what);
}

/* Every op starts here: skip the work after a failure, and make this host thread use the
 * backend's device (the current device is per host thread in the CUDA runtime). */
static bool llm__cu_enter(llm__cu *st) {
    if (st->status != LLM_OK) return false;
    return LLM__CUDA(st, cudaSetDevice(st->dev), "device %d", st->dev);
}

/* Blocks for n elements at LLM__CU_THREADS each (n > 0); the kernels loop grid-stride, so
 * capping the grid is safe for any n. */
static unsigned llm__cu_blocks(size_t n) {
    size_t b = (n + LLM__CU_THREADS - 1) / LLM__CU_THREADS;
    return (unsigned)(b < (1u << 20) ? b : (1u << 20));
}
#define LLM__CU_FOR(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (size_t)gridDim.x * blockDim.x)

//==== REDUCTIONS =======================================================================
/* Butterfly sums: every lane ends with the same, bit-identical result (each step adds
 * the same two numbers on both lanes of a pair). */
static __device__ float llm__cu_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(LLM__CU_FULL, v, o);
    return v;
}
static __device__ double llm__cu_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(LLM__CU_FULL, v, o);
    return v;
}
static __device__ float llm__cu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(LLM__CU_FULL, v, o));
    return v;
}
/* Block-wide sum / max (blockDim.x a multiple of 32, at most 1024); every thread gets it.
 * sh: 32 floats of shared memory. */
static __device__ float llm__cu_block_sum(float v, float *sh) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = llm__cu_warp_sum(v);
    __syncthreads();                       /* sh may still be read by a previous call */
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return llm__cu_warp_sum(v);
}
static __device__ float llm__cu_block_max(float v, float *sh) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = llm__cu_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return llm__cu_warp_max(v);
}

/* Column sums, for the weight and bias gradients (reductions over the N rows):
 *   acc0[c] = sum_n dout[n,c]                          (layernorm db, matmul dbias)
 *   acc1[c] = sum_n dout[n,c] * (inp[n,c]-mean[n])*rstd[n]   (layernorm dw; LN only)
 * Block (32 columns x 8 rows); grid.y = S splits of the rows. With S == 1 the block adds
 * its sums into dst directly; otherwise it writes partials part[s][c] (and, for LN,
 * part[S+s][c]) that llm__cu_colsum_finish adds up in split order: deterministic. */
template <bool LN>
static __global__ void llm__cu_colsum(float *dst0, float *dst1, float *part, const float *dout,
                               const float *inp, const float *mean, const float *rstd,
                               int N, int C) {
    __shared__ float sh0[8][33], sh1[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int c = blockIdx.x * 32 + tx, S = gridDim.y, s = blockIdx.y;
    int per = (N + S - 1) / S, n0 = s * per, n1 = min(N, n0 + per);
    float a0 = 0.0f, a1 = 0.0f;
    if (c < C) {
        for (int n = n0 + ty; n < n1; n += 8) {
            float d = dout[(size_t)n * C + c];
            a0 += d;
            if (LN) a1 += d * (inp[(size_t)n * C + c] - mean[n]) * rstd[n];
        }
    }
    sh0[ty][tx] = a0;
    sh1[ty][tx] = a1;
    __syncthreads();
    if (ty != 0 || c >= C) return;
    a0 = 0.0f; a1 = 0.0f;
    for (int y = 0; y < 8; y++) { a0 += sh0[y][tx]; a1 += sh1[y][tx]; }
    if (S == 1) {
        dst0[c] += a0;
        if (LN) dst1[c] += a1;
    } else {
        part[(size_t)s * C + c] = a0;
        if (LN) part[(size_t)(S + s) * C + c] = a1;
    }
}
static __global__ void llm__cu_colsum_finish(float *dst0, float *dst1, const float *part, int S, int C) {
    LLM__CU_FOR(c, (size_t)C) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int s = 0; s < S; s++) {
            a0 += part[(size_t)s * C + c];
            if (dst1) a1 += part[(size_t)(S + s) * C + c];
        }
        dst0[c] += a0;
        if (dst1) dst1[c] += a1;
    }
}
/* Launch the column sum: dst0 += sum_n dout; if ln, dst1 += sum_n dout * xhat. */
static void llm__cu_colsums(llm__cu *st, float *dst0, float *dst1, const float *dout,
                            const float *inp, const float *mean, const float *rstd, int N, int C,
                            bool ln) {
    if (N <= 0 || C <= 0) return;
    size_t per_split = (size_t)C * (ln ? 2 : 1);
    int S = N / 256 + 1;                         /* >= 256 rows per split */
    if (S > LLM__CU_COLSUM_SPLITS) S = LLM__CU_COLSUM_SPLITS;
    if ((size_t)S * per_split > LLM__CU_SCRATCH_FLOATS)
        S = (int)(LLM__CU_SCRATCH_FLOATS / per_split);
    if (S < 1) S = 1;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)S), block(32, 8);
    if (ln)
        llm__cu_colsum<true><<<grid, block, 0, st->stream>>>(dst0, dst1, st->scratch, dout, inp,
                                                              mean, rstd, N, C);
    else
        llm__cu_colsum<false><<<grid, block, 0, st->stream>>>(dst0, NULL, st->scratch, dout,
                                                               NULL, NULL, NULL, N, C);
    llm__cu_launched(st, "colsum", "N=%d C=%d splits=%d", N, C, S);
    if (S > 1) {
        llm__cu_colsum_finish<<<llm__cu_blocks((size_t)C), LLM__CU_THREADS, 0, st->stream>>>(
            dst0, ln ? dst1 : NULL, st->scratch, S, C);
        llm__cu_launched(st, "colsum_finish", "C=%d splits=%d", C, S);
    }
}

//==== BACKEND STATE AND MEMORY =========================================================
extern "C" int llm_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {  /* no driver, no device: not an error */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

static void llm__cu_destroy(void *p) {
    llm__cu *st = (llm__cu *)p;
    if (!st) return;
    cudaSetDevice(st->dev);
    if (st->stream) cudaStreamSynchronize(st->stream);
    cudaFree(st->sumsq_part);
    cudaFree(st->scratch);
    if (st->blas) cublasDestroy(st->blas);
    if (st->stream) cudaStreamDestroy(st->stream);
    (void)cudaGetLastError();
    free(st);
}

/* n_threads is read as the device index: <= 0 means device 0. */
static llm_status llm__cu_create(void **out, int n_threads) {
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return llm_set_error(LLM_ERR_UNSUPPORTED, "CUDA backend: no usable GPU (%s)",
                             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    int dev = n_threads > 0 ? n_threads : 0;
    if (dev >= count)
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: device %d requested, %d present",
                             dev, count);
    llm__cu *st = (llm__cu *)calloc(1, sizeof *st);
    if (!st) return llm_set_error(LLM_ERR_NOMEM, "CUDA backend: out of host memory");
    st->dev = dev;
    const char *sync = getenv("LLM_CUDA_SYNC");
    st->sync_each = sync && sync[0] == '1';
    bool ok = LLM__CUDA(st, cudaSetDevice(dev), "device %d", dev) &&
              LLM__CUDA(st, cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking),
                        "device %d", dev) &&
              LLM__BLAS(st, cublasCreate(&st->blas), "device %d", dev) &&
              LLM__BLAS(st, cublasSetStream(st->blas, st->stream), "device %d", dev) &&
              /* plain FP32 math: no TF32 tensor cores (10-bit mantissa) in the exact mode */
              LLM__BLAS(st, cublasSetMathMode(st->blas, CUBLAS_DEFAULT_MATH), "device %d", dev) &&
              LLM__CUDA(st, cudaMalloc((void **)&st->sumsq_part,
                                       (LLM__CU_SUMSQ_BLOCKS + 1) * sizeof(double)),
                        "%zu bytes of sumsq scratch", (LLM__CU_SUMSQ_BLOCKS + 1) * sizeof(double)) &&
              LLM__CUDA(st, cudaMalloc((void **)&st->scratch, LLM__CU_SCRATCH_FLOATS * sizeof(float)),
                        "%zu bytes of column-sum scratch", LLM__CU_SCRATCH_FLOATS * sizeof(float));
    if (!ok) {
        llm_status s = st->status;
        char msg[512];
        memcpy(msg, st->msg, sizeof msg);
        llm__cu_destroy(st);
        return llm_set_error(s, "%s", msg);
    }
    *out = st;
    return LLM_OK;
}

/* A failure recorded by an earlier (void) op, reported again by a call with a status. */
static llm_status llm__cu_sticky(llm__cu *st) {
    return llm_set_error(st->status, "%s (an earlier GPU op failed)", st->msg);
}

static void *llm__cu_alloc(void *p, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (st->status != LLM_OK) { llm__cu_sticky(st); return NULL; }
    if (!llm__cu_enter(st)) return NULL;
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        /* out of memory is the caller's to handle, not a broken backend: not sticky */
        llm_set_error(e == cudaErrorMemoryAllocation ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                      "CUDA: cudaMalloc of %zu bytes (%.1f MiB) failed: %s; device %d has "
                      "%.1f MiB free of %.1f MiB", bytes, bytes / 1048576.0,
                      cudaGetErrorString(e), st->dev, free_b / 1048576.0, total_b / 1048576.0);
        return NULL;
    }
    return d;
}

static void llm__cu_release(void *p, void *ptr) {
    llm__cu *st = (llm__cu *)p;
    if (!ptr) return;
    cudaSetDevice(st->dev);
    LLM__CUDA(st, cudaFree(ptr), "release %p", ptr);
}

static llm_status llm__cu_upload(void *p, void *dst, const void *src, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (st->status != LLM_OK) return llm__cu_sticky(st);
    if (!llm__cu_enter(st)) return st->status;
    if (bytes == 0) return LLM_OK;
    if (!LLM__CUDA(st, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st->stream),
                   "upload %zu bytes", bytes) ||
        !LLM__CUDA(st, cudaStreamSynchronize(st->stream), "upload %zu bytes", bytes))
        return st->status;
    return LLM_OK;
}

static llm_status llm__cu_download(void *p, void *dst, const void *src, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (st->status != LLM_OK) return llm__cu_sticky(st);
    if (!llm__cu_enter(st)) return st->status;
    if (bytes == 0) return LLM_OK;
    if (!LLM__CUDA(st, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st->stream),
                   "download %zu bytes", bytes) ||
        !LLM__CUDA(st, cudaStreamSynchronize(st->stream), "download %zu bytes", bytes))
        return st->status;
    return LLM_OK;
}

static void llm__cu_zero(void *p, void *ptr, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || bytes == 0) return;
    LLM__CUDA(st, cudaMemsetAsync(ptr, 0, bytes, st->stream), "zero %zu bytes", bytes);
}

//==== ENCODER ==========================================================================
/* out[b,t,c] = wte[tok[b,t], c] + wpe[t, c]      (nn.Embedding twice, summed) */
static __global__ void llm__cu_encoder_fwd_k(float *out, const int *tok, const float *wte,
                                      const float *wpe, size_t BT, int T, int C) {
    LLM__CU_FOR(i, BT * C) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        out[i] = wte[(size_t)tok[bt] * C + c] + wpe[(size_t)t * C + c];
    }
}
/* dwpe[t,c] += sum_b dout[b,t,c]: one thread owns (t,c), so no races, fixed order. */
static __global__ void llm__cu_encoder_bwd_wpe_k(float *dwpe, const float *dout, int B, int T, int C) {
    LLM__CU_FOR(i, (size_t)T * C) {
        float s = 0.0f;
        for (int b = 0; b < B; b++) s += dout[(size_t)b * T * C + i];
        dwpe[i] += s;
    }
}
/* dwte[tok[b,t], c] += dout[b,t,c]. Two positions holding the same token add into the
 * same row, so this uses atomicAdd: fast, but the order of those additions (and so the
 * last bits of dwte) can change run to run. A deterministic version would sort the
 * positions by token first (needs (B*T) ints of scratch). */
static __global__ void llm__cu_encoder_bwd_wte_k(float *dwte, const float *dout, const int *tok,
                                          size_t BT, int C) {
    LLM__CU_FOR(i, BT * C) {
        size_t bt = i / C;
        int c = (int)(i % C);
        atomicAdd(&dwte[(size_t)tok[bt] * C + c], dout[i]);
    }
}

static void llm__cu_encoder_fwd(void *p, float *out, const int *tok, const float *wte,
                                const float *wpe, int B, int T, int C) {
    llm__cu *st = (llm__cu *)p;
    size_t n = (size_t)B * T * C;
    if (!llm__cu_enter(st) || n == 0) return;
    llm__cu_encoder_fwd_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(
        out, tok, wte, wpe, (size_t)B * T, T, C);
    llm__cu_launched(st, "encoder_fwd", "B=%d T=%d C=%d", B, T, C);
}

static void llm__cu_encoder_bwd(void *p, float *dwte, float *dwpe, const float *dout,
                                const int *tok, int B, int T, int C) {
    llm__cu *st = (llm__cu *)p;
    size_t n = (size_t)B * T * C;
    if (!llm__cu_enter(st) || n == 0) return;
    if (dwpe) {
        llm__cu_encoder_bwd_wpe_k<<<llm__cu_blocks((size_t)T * C), LLM__CU_THREADS, 0,
                                    st->stream>>>(dwpe, dout, B, T, C);
        llm__cu_launched(st, "encoder_bwd (wpe)", "B=%d T=%d C=%d", B, T, C);
    }
    if (dwte) {
        llm__cu_encoder_bwd_wte_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(
            dwte, dout, tok, (size_t)B * T, C);
        llm__cu_launched(st, "encoder_bwd (wte)", "B=%d T=%d C=%d", B, T, C);
    }
}

//==== LAYERNORM ========================================================================
/* One warp per row x (C):  mean = sum(x)/C,  var = sum((x-mean)^2)/C  (biased, as torch),
 *   rstd = 1/sqrt(var + 1e-5),  out = (x - mean) * rstd * w + b.
 * The row is read three times; after the first it comes from L1/L2. */
static __global__ void llm__cu_layernorm_fwd_k(float *out, float *mean, float *rstd, const float *inp,
                                        const float *w, const float *b, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const float *x = inp + (size_t)n * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    float m = llm__cu_warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = x[c] - m; v += d * d; }
    float r = 1.0f / sqrtf(llm__cu_warp_sum(v) / C + 1e-5f);
    float *o = out + (size_t)n * C;
    for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * w[c] + b[c];
    if (lane == 0) {
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}
/* With xhat = (x - mean) * rstd and g = w * dout (the gradient w.r.t. xhat):
 *   dinp += rstd * (g - mean(g) - xhat * mean(g * xhat))          one warp per row
 *   dw += sum_n dout * xhat,   db += sum_n dout                    column sums */
static __global__ void llm__cu_layernorm_bwd_k(float *dinp, const float *dout, const float *inp,
                                        const float *w, const float *mean, const float *rstd,
                                        int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float m = mean[n], r = rstd[n];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = w[c] * dy[c];
        sg += g;
        sgx += g * (x[c] - m) * r;
    }
    sg = llm__cu_warp_sum(sg) / C;
    sgx = llm__cu_warp_sum(sgx) / C;
    float *dx = dinp + (size_t)n * C;
    for (int c = lane; c < C; c += 32) {
        float g = w[c] * dy[c], xhat = (x[c] - m) * r;
        dx[c] += r * (g - sg - xhat * sgx);
    }
}

static void llm__cu_layernorm_fwd(void *p, float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int rows = LLM__CU_THREADS / 32;
    llm__cu_layernorm_fwd_k<<<(unsigned)((N + rows - 1) / rows), LLM__CU_THREADS, 0, st->stream>>>(
        out, mean, rstd, inp, w, b, N, C);
    llm__cu_launched(st, "layernorm_fwd", "N=%d C=%d", N, C);
}

static void llm__cu_layernorm_bwd(void *p, float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *w, const float *mean,
                                  const float *rstd, int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    if (dinp) {
        int rows = LLM__CU_THREADS / 32;
        llm__cu_layernorm_bwd_k<<<(unsigned)((N + rows - 1) / rows), LLM__CU_THREADS, 0,
                                  st->stream>>>(dinp, dout, inp, w, mean, rstd, N, C);
        llm__cu_launched(st, "layernorm_bwd", "N=%d C=%d", N, C);
    }
    if (db && dw) llm__cu_colsums(st, db, dw, dout, inp, mean, rstd, N, C, true);
}

//==== MATMUL ===========================================================================
/* cuBLAS is column-major. A row-major (R,K) matrix is the column-major (K,R) matrix with
 * the same bytes, so each row-major product is computed as its transpose:
 *   out = inp @ w^T        (N,OC)   <=>  out^T  = w  . inp^T   : gemm(T, N, OC, N, C)
 *   dinp += dout @ w       (N,C)    <=>  dinp^T = w^T . dout^T : gemm(N, N, C, N, OC)
 *   dw += dout^T @ inp     (OC,C)   <=>  dw^T   = inp^T . dout : gemm(N, T, C, OC, N)
 * where a column-major operand named by its row-major name means that buffer as is. */

/* out[n, oc] += bias[oc] */
static __global__ void llm__cu_add_bias_k(float *out, const float *bias, size_t N, int OC) {
    LLM__CU_FOR(i, N * OC) out[i] += bias[i % OC];
}

static void llm__cu_matmul_fwd(void *p, float *out, const float *inp, const float *w,
                               const float *bias, int N, int C, int OC) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || OC <= 0) return;
    const float one = 1.0f, zero = 0.0f;
    if (C <= 0) {  /* empty sum: out = bias (or 0) */
        LLM__CUDA(st, cudaMemsetAsync(out, 0, (size_t)N * OC * sizeof(float), st->stream),
                  "matmul_fwd N=%d C=%d OC=%d", N, C, OC);
    } else if (!LLM__BLAS(st, cublasSgemm(st->blas, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, w, C,
                                          inp, C, &zero, out, OC),
                          "matmul_fwd out(%d,%d) = inp(%d,%d) @ w(%d,%d)^T", N, OC, N, C, OC, C)) {
        return;
    }
    if (bias) {
        size_t n = (size_t)N * OC;
        llm__cu_add_bias_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(out, bias,
                                                                                   (size_t)N, OC);
        llm__cu_launched(st, "matmul_fwd (bias)", "N=%d OC=%d", N, OC);
    }
}

static void llm__cu_matmul_bwd(void *p, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int N, int C, int OC) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0 || OC <= 0) return;
    const float one = 1.0f;
    if (dinp && !LLM__BLAS(st, cublasSgemm(st->blas, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, w, C,
                                           dout, OC, &one, dinp, C),
                           "matmul_bwd dinp(%d,%d) += dout(%d,%d) @ w(%d,%d)", N, C, N, OC, OC, C))
        return;
    if (dw && !LLM__BLAS(st, cublasSgemm(st->blas, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C,
                                         dout, OC, &one, dw, C),
                         "matmul_bwd dw(%d,%d) += dout(%d,%d)^T @ inp(%d,%d)", OC, C, N, OC, N, C))
        return;
    if (dbias) llm__cu_colsums(st, dbias, NULL, dout, NULL, NULL, NULL, N, OC, false);
}

//==== ATTENTION ========================================================================
/* Causal self-attention, one head h of one sequence b. With q_i, k_j, v_j the head's
 * slices (HS) of qkv[b,i,0:C], qkv[b,j,C:2C], qkv[b,j,2C:3C] and scale = 1/sqrt(HS):
 *   s_ij = scale * q_i . k_j   (j <= i),   P_ij = exp(s_ij - lse_i),
 *   lse_i = log sum_{j<=i} exp(s_ij),      out_i = sum_j P_ij v_j.
 * Forward (flash-attention): a block takes LLM__CU_ATT_WARPS query rows, one warp each,
 * and walks the keys in tiles of 32 staged in shared memory (shared by the warps). Lane l
 * scores key j0+l; the warp keeps the running max m, the running sum l = sum exp(s - m)
 * and the unnormalised output o (lane owns dims lane, lane+32, ...); a new tile with
 * max m' rescales them by exp(m - m'). At the end out = o / l, lse = m + log(l).
 * Shared memory: K and V tiles (32, HS+1) (padded: lane l reads row l without bank
 * conflicts) and the warps' q rows (WARPS, HS). */
#define LLM__CU_R (LLM__CU_HS_MAX / 32)   /* head dims per lane */

static __global__ void llm__cu_attention_fwd_k(float *out, float *lse, const float *qkv, int T, int C,
                                        int NH, float scale) {
    extern __shared__ float sm[];
    int HS = C / NH, ld = HS + 1;
    float *Ks = sm, *Vs = Ks + 32 * ld, *Qs = Vs + 32 * ld;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / NH, h = blockIdx.y % NH;
    int q0 = blockIdx.x * LLM__CU_ATT_WARPS, i = q0 + warp;
    size_t ld3 = 3 * (size_t)C;
    const float *base = qkv + (size_t)b * T * ld3 + (size_t)h * HS;  /* q of (b, t=0, h) */
    bool active = i < T;
    float *q = Qs + warp * HS;
    if (active)
        for (int d = lane; d < HS; d += 32) q[d] = base[i * ld3 + d];
    float o[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) o[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int last = min(q0 + LLM__CU_ATT_WARPS, T) - 1;  /* keys 0..last serve this block */
    for (int j0 = 0; j0 <= last; j0 += 32) {
        __syncthreads();  /* the previous tile is consumed; q is visible */
        for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r * ld + d] = j <= last ? base[j * ld3 + C + d] : 0.0f;
            Vs[r * ld + d] = j <= last ? base[j * ld3 + 2 * C + d] : 0.0f;
        }
        __syncthreads();
        if (!active || j0 > i) continue;  /* this row sees none of these keys */
        int j = j0 + lane;
        float s = -INFINITY;
        if (j <= i) {
            float dot = 0.0f;
            for (int d = 0; d < HS; d++) dot += q[d] * Ks[lane * ld + d];
            s = dot * scale;
        }
        float mnew = fmaxf(m, llm__cu_warp_max(s));  /* finite: key j0 <= i is in the tile */
        float pj = j <= i ? expf(s - mnew) : 0.0f;
        float corr = expf(m - mnew);                  /* 0 on the first tile (m = -inf) */
        l = l * corr + llm__cu_warp_sum(pj);
        for (int r = 0; r < LLM__CU_R; r++) o[r] *= corr;
        for (int k = 0; k < 32; k++) {
            float pk = __shfl_sync(LLM__CU_FULL, pj, k);
            for (int r = 0; r < LLM__CU_R; r++) {
                int d = lane + 32 * r;
                if (d < HS) o[r] += pk * Vs[k * ld + d];
            }
        }
        m = mnew;
    }
    if (!active) return;
    float *y = out + ((size_t)b * T + i) * C + (size_t)h * HS;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) y[d] = o[r] / l;
    }
    if (lane == 0) lse[((size_t)b * NH + h) * T + i] = m + logf(l);
}

/* Backward, with dO_i = dout[b,i,h] and D_i = dO_i . out_i (= sum_j P_ij dP_ij):
 *   dP_ij = dO_i . v_j,   dS_ij = P_ij (dP_ij - D_i)            (softmax backward)
 *   dq_i += scale sum_j dS_ij k_j,   dk_j += scale sum_i dS_ij q_i,   dv_j += sum_i P_ij dO_i
 * Two kernels, so that every gradient element has one owner (no atomics, deterministic):
 * dq walks keys for each query row (like the forward), dk/dv walk queries for each key. */
static __global__ void llm__cu_attention_bwd_dq_k(float *dqkv, const float *dout, const float *qkv,
                                           const float *out, const float *lse, int T, int C,
                                           int NH, float scale) {
    extern __shared__ float sm[];
    int HS = C / NH, ld = HS + 1;
    float *Ks = sm, *Vs = Ks + 32 * ld, *Qs = Vs + 32 * ld, *dOs = Qs + LLM__CU_ATT_WARPS * HS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / NH, h = blockIdx.y % NH;
    int q0 = blockIdx.x * LLM__CU_ATT_WARPS, i = q0 + warp;
    size_t ld3 = 3 * (size_t)C;
    const float *base = qkv + (size_t)b * T * ld3 + (size_t)h * HS;
    size_t orow = ((size_t)b * T + i) * C + (size_t)h * HS;  /* (b,i,h) in out/dout/dq */
    bool active = i < T;
    float *q = Qs + warp * HS, *dO = dOs + warp * HS;
    float D = 0.0f, L = 0.0f;
    if (active) {
        for (int d = lane; d < HS; d += 32) {
            q[d] = base[i * ld3 + d];
            dO[d] = dout[orow + d];
            D += dO[d] * out[orow + d];
        }
        D = llm__cu_warp_sum(D);
        L = lse[((size_t)b * NH + h) * T + i];
    }
    float dq[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) dq[r] = 0.0f;
    int last = min(q0 + LLM__CU_ATT_WARPS, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += 32) {
        __syncthreads();
        for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r * ld + d] = j <= last ? base[j * ld3 + C + d] : 0.0f;
            Vs[r * ld + d] = j <= last ? base[j * ld3 + 2 * C + d] : 0.0f;
        }
        __syncthreads();
        if (!active || j0 > i) continue;
        int j = j0 + lane;
        float ds = 0.0f;
        if (j <= i) {
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += q[d] * Ks[lane * ld + d];
                dp += dO[d] * Vs[lane * ld + d];
            }
            float pij = expf(s * scale - L);
            ds = pij * (dp - D);
        }
        for (int k = 0; k < 32; k++) {
            float dsk = __shfl_sync(LLM__CU_FULL, ds, k);
            for (int r = 0; r < LLM__CU_R; r++) {
                int d = lane + 32 * r;
                if (d < HS) dq[r] += dsk * Ks[k * ld + d];
            }
        }
    }
    if (!active) return;
    float *g = dqkv + ((size_t)b * T + i) * ld3 + (size_t)h * HS;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) g[d] += scale * dq[r];
    }
}

/* dk, dv: a block takes LLM__CU_ATT_WARPS key rows (one warp each) and walks the query
 * tiles i0 = k0, k0+32, ... (queries before the block's first key k0 never see it),
 * staging q_i, dO_i, lse_i and D_i of 32 queries in shared memory; lane l takes query
 * i0+l. Shared: Q and dO tiles (32, HS+1), the warps' k and v rows (WARPS, HS), lse and
 * D (32 each). */
static __global__ void llm__cu_attention_bwd_dkv_k(float *dqkv, const float *dout, const float *qkv,
                                            const float *out, const float *lse, int T, int C,
                                            int NH, float scale) {
    extern __shared__ float sm[];
    int HS = C / NH, ld = HS + 1;
    float *Qs = sm, *dOs = Qs + 32 * ld, *Kw = dOs + 32 * ld, *Vw = Kw + LLM__CU_ATT_WARPS * HS;
    float *Ls = Vw + LLM__CU_ATT_WARPS * HS, *Ds = Ls + 32;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / NH, h = blockIdx.y % NH;
    int k0 = blockIdx.x * LLM__CU_ATT_WARPS, j = k0 + warp;
    size_t ld3 = 3 * (size_t)C;
    const float *base = qkv + (size_t)b * T * ld3 + (size_t)h * HS;
    const float *dob = dout + (size_t)b * T * C + (size_t)h * HS;  /* dout of (b, t=0, h) */
    const float *ob = out + (size_t)b * T * C + (size_t)h * HS;
    const float *lseb = lse + ((size_t)b * NH + h) * T;
    bool active = j < T;
    float *k = Kw + warp * HS, *v = Vw + warp * HS;
    if (active)
        for (int d = lane; d < HS; d += 32) {
            k[d] = base[j * ld3 + C + d];
            v[d] = base[j * ld3 + 2 * C + d];
        }
    float dk[LLM__CU_R], dv[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) { dk[r] = 0.0f; dv[r] = 0.0f; }
    for (int i0 = k0; i0 < T; i0 += 32) {
        __syncthreads();
        for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
            int r = e / HS, d = e % HS, i = i0 + r;
            Qs[r * ld + d] = i < T ? base[i * ld3 + d] : 0.0f;
            dOs[r * ld + d] = i < T ? dob[(size_t)i * C + d] : 0.0f;
        }
        __syncthreads();
        if (threadIdx.x < 32) {  /* D_i = dO_i . out_i for the tile's 32 queries */
            int r = threadIdx.x, i = i0 + r;
            float D = 0.0f;
            if (i < T)
                for (int d = 0; d < HS; d++) D += dOs[r * ld + d] * ob[(size_t)i * C + d];
            Ds[r] = D;
            Ls[r] = i < T ? lseb[i] : 0.0f;
        }
        __syncthreads();
        if (!active || i0 + 31 < j) continue;  /* every query of the tile is before key j */
        int i = i0 + lane;
        float pij = 0.0f, ds = 0.0f;
        if (i >= j && i < T) {
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < HS; d++) {
                s += Qs[lane * ld + d] * k[d];
                dp += dOs[lane * ld + d] * v[d];
            }
            pij = expf(s * scale - Ls[lane]);
            ds = pij * (dp - Ds[lane]);
        }
        for (int kk = 0; kk < 32; kk++) {
            float pk = __shfl_sync(LLM__CU_FULL, pij, kk);
            float dsk = __shfl_sync(LLM__CU_FULL, ds, kk);
            for (int r = 0; r < LLM__CU_R; r++) {
                int d = lane + 32 * r;
                if (d < HS) {
                    dv[r] += pk * dOs[kk * ld + d];
                    dk[r] += dsk * Qs[kk * ld + d];
                }
            }
        }
    }
    if (!active) return;
    float *g = dqkv + ((size_t)b * T + j) * ld3 + (size_t)h * HS;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) {
            g[C + d] += scale * dk[r];
            g[2 * C + d] += dv[r];
        }
    }
}

/* Shapes the attention kernels accept; records an error otherwise. */
static bool llm__cu_att_shape(llm__cu *st, const char *op, int B, int C, int NH) {
    if (NH <= 0 || C % NH != 0 || C / NH > LLM__CU_HS_MAX || (long long)B * NH > 65535) {
        llm__cu_fail(st, LLM_ERR_UNSUPPORTED,
                     "CUDA %s: B=%d C=%d NH=%d: need NH | C, head size <= %d, B*NH <= 65535",
                     op, B, C, NH, LLM__CU_HS_MAX);
        return false;
    }
    return true;
}

static void llm__cu_attention_fwd(void *p, float *out, float *lse, const float *qkv, int B, int T,
                                  int C, int NH) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0 || C <= 0) return;
    if (!llm__cu_att_shape(st, "attention_fwd", B, C, NH)) return;
    int HS = C / NH;
    size_t shmem = (2 * 32 * (size_t)(HS + 1) + LLM__CU_ATT_WARPS * (size_t)HS) * sizeof(float);
    dim3 grid((unsigned)((T + LLM__CU_ATT_WARPS - 1) / LLM__CU_ATT_WARPS), (unsigned)(B * NH));
    llm__cu_attention_fwd_k<<<grid, 32 * LLM__CU_ATT_WARPS, shmem, st->stream>>>(
        out, lse, qkv, T, C, NH, 1.0f / sqrtf((float)HS));
    llm__cu_launched(st, "attention_fwd", "B=%d T=%d C=%d NH=%d", B, T, C, NH);
}

static void llm__cu_attention_bwd(void *p, float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int B, int T, int C, int NH) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0 || C <= 0) return;
    if (!llm__cu_att_shape(st, "attention_bwd", B, C, NH)) return;
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    dim3 grid((unsigned)((T + LLM__CU_ATT_WARPS - 1) / LLM__CU_ATT_WARPS), (unsigned)(B * NH));
    size_t shmem = (2 * 32 * (size_t)(HS + 1) + 2 * LLM__CU_ATT_WARPS * (size_t)HS) * sizeof(float);
    llm__cu_attention_bwd_dq_k<<<grid, 32 * LLM__CU_ATT_WARPS, shmem, st->stream>>>(
        dqkv, dout, qkv, out, lse, T, C, NH, scale);
    llm__cu_launched(st, "attention_bwd (dq)", "B=%d T=%d C=%d NH=%d", B, T, C, NH);
    shmem += 64 * sizeof(float);
    llm__cu_attention_bwd_dkv_k<<<grid, 32 * LLM__CU_ATT_WARPS, shmem, st->stream>>>(
        dqkv, dout, qkv, out, lse, T, C, NH, scale);
    llm__cu_launched(st, "attention_bwd (dk, dv)", "B=%d T=%d C=%d NH=%d", B, T, C, NH);
}

//==== GELU =============================================================================
/* GELU, tanh approximation (torch's approximate='tanh'):
 *   u = sqrt(2/pi) (x + 0.044715 x^3),  gelu(x) = 0.5 x (1 + tanh u)
 *   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2) */
#define LLM__CU_GELU_K 0.7978845608028654f  /* sqrt(2/pi) */
static __global__ void llm__cu_gelu_fwd_k(float *out, const float *inp, size_t n) {
    LLM__CU_FOR(i, n) {
        float x = inp[i];
        float u = LLM__CU_GELU_K * (x + 0.044715f * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}
static __global__ void llm__cu_gelu_bwd_k(float *dinp, const float *inp, const float *dout, size_t n) {
    LLM__CU_FOR(i, n) {
        float x = inp[i];
        float u = LLM__CU_GELU_K * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float du = LLM__CU_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
    }
}
static void llm__cu_gelu_fwd(void *p, float *out, const float *inp, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    llm__cu_gelu_fwd_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(out, inp, n);
    llm__cu_launched(st, "gelu_fwd", "n=%zu", n);
}
static void llm__cu_gelu_bwd(void *p, float *dinp, const float *inp, const float *dout, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    llm__cu_gelu_bwd_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(dinp, inp, dout, n);
    llm__cu_launched(st, "gelu_bwd", "n=%zu", n);
}

//==== RESIDUAL =========================================================================
/* out = a + b;   da += dout, db += dout. dout is read once into a register first, so the
 * backward is also right when da or db is the same buffer as dout. */
static __global__ void llm__cu_residual_fwd_k(float *out, const float *a, const float *b, size_t n) {
    LLM__CU_FOR(i, n) out[i] = a[i] + b[i];
}
static __global__ void llm__cu_residual_bwd_k(float *da, float *db, const float *dout, size_t n) {
    LLM__CU_FOR(i, n) {
        float d = dout[i];
        da[i] += d;
        db[i] += d;
    }
}
static void llm__cu_residual_fwd(void *p, float *out, const float *a, const float *b, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    llm__cu_residual_fwd_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(out, a, b, n);
    llm__cu_launched(st, "residual_fwd", "n=%zu", n);
}
static void llm__cu_residual_bwd(void *p, float *da, float *db, const float *dout, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    llm__cu_residual_bwd_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(da, db, dout, n);
    llm__cu_launched(st, "residual_bwd", "n=%zu", n);
}

//==== CROSS-ENTROPY ====================================================================
/* Fused softmax + cross-entropy, one block per row x (V) with target t:
 *   lse = max(x) + log sum_v exp(x_v - max(x)),   loss = lse - x_t   (0 if t < 0)
 * backward (overwrites x):  dx_v = (exp(x_v - lse) - [v == t]) * dloss  (0 if t < 0) */
static __global__ void llm__cu_crossentropy_fwd_k(float *losses, float *lse, const float *logits,
                                           const int *targets, int V) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    const float *x = logits + row * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
    mx = llm__cu_block_max(mx, sh);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(x[v] - mx);
    s = llm__cu_block_sum(s, sh);
    if (threadIdx.x == 0) {
        float z = mx + logf(s);
        int t = targets[row];
        if (lse) lse[row] = z;
        losses[row] = (t >= 0 && t < V) ? z - x[t] : 0.0f;
    }
}
static __global__ void llm__cu_crossentropy_bwd_k(float *x_to_dx, const float *lse, const int *targets,
                                           float dloss, int V) {
    size_t row = blockIdx.x;
    float *x = x_to_dx + row * V;
    int t = targets[row];
    float z = lse[row];
    bool use = t >= 0 && t < V;
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        x[v] = use ? (expf(x[v] - z) - (v == t ? 1.0f : 0.0f)) * dloss : 0.0f;
}
static void llm__cu_crossentropy_fwd(void *p, float *losses, float *lse, const float *logits,
                                     const int *targets, int N, int V) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || V <= 0) return;
    llm__cu_crossentropy_fwd_k<<<(unsigned)N, 512, 0, st->stream>>>(losses, lse, logits, targets, V);
    llm__cu_launched(st, "crossentropy_fwd", "N=%d V=%d", N, V);
}
static void llm__cu_crossentropy_bwd(void *p, float *logits, const float *lse, const int *targets,
                                     float dloss, int N, int V) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || V <= 0) return;
    llm__cu_crossentropy_bwd_k<<<(unsigned)N, 512, 0, st->stream>>>(logits, lse, targets, dloss, V);
    llm__cu_launched(st, "crossentropy_bwd", "N=%d V=%d", N, V);
}

//==== SUMSQ AND ADAMW ==================================================================
/* sum_i x_i^2 in double, in two passes with a fixed shape, so the result does not depend
 * on scheduling: LLM__CU_SUMSQ_BLOCKS (or fewer, for small n) blocks each reduce a
 * grid-stride share into part[block]; one block then adds the partials in a fixed tree
 * into part[LLM__CU_SUMSQ_BLOCKS]. */
static __global__ void llm__cu_sumsq_k(double *part, const float *x, size_t n) {
    __shared__ double sh[32];
    double s = 0.0;
    LLM__CU_FOR(i, n) { double v = x[i]; s += v * v; }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    s = llm__cu_warp_sum_d(s);
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / 32) ? sh[lane] : 0.0;
        s = llm__cu_warp_sum_d(s);
        if (lane == 0) part[blockIdx.x] = s;
    }
}
static __global__ void llm__cu_sumsq_finish_k(double *part, int nblocks) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < nblocks; i += blockDim.x) s += part[i];
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    s = llm__cu_warp_sum_d(s);
    if (lane == 0) sh[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (int)(blockDim.x / 32) ? sh[lane] : 0.0;
        s = llm__cu_warp_sum_d(s);
        if (lane == 0) part[LLM__CU_SUMSQ_BLOCKS] = s;
    }
}
static double llm__cu_sumsq(void *p, const float *x, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (st->status != LLM_OK) { llm__cu_sticky(st); return NAN; }
    if (!llm__cu_enter(st)) return NAN;
    if (n == 0) return 0.0;
    unsigned nb = llm__cu_blocks(n);
    if (nb > LLM__CU_SUMSQ_BLOCKS) nb = LLM__CU_SUMSQ_BLOCKS;
    llm__cu_sumsq_k<<<nb, LLM__CU_THREADS, 0, st->stream>>>(st->sumsq_part, x, n);
    llm__cu_launched(st, "sumsq", "n=%zu", n);
    llm__cu_sumsq_finish_k<<<1, LLM__CU_THREADS, 0, st->stream>>>(st->sumsq_part, (int)nb);
    llm__cu_launched(st, "sumsq (finish)", "n=%zu", n);
    double total = NAN;
    if (st->status == LLM_OK &&
        LLM__CUDA(st, cudaMemcpyAsync(&total, st->sumsq_part + LLM__CU_SUMSQ_BLOCKS, sizeof total,
                                      cudaMemcpyDeviceToHost, st->stream), "sumsq n=%zu", n) &&
        LLM__CUDA(st, cudaStreamSynchronize(st->stream), "sumsq n=%zu", n))
        return total;
    return NAN;
}

/* AdamW (torch.optim.AdamW), step t >= 1, with g = grad * grad_scale:
 *   m = b1 m + (1-b1) g,   v = b2 v + (1-b2) g^2,   mhat = m / (1-b1^t),  vhat = v / (1-b2^t)
 *   param -= lr wd param;   param -= lr mhat / (sqrt(vhat) + eps)     (torch's order)
 * The bias corrections 1-b^t are computed once on the host, in float as the CPU does. */
static __global__ void llm__cu_adamw_k(float *param, const float *grad, float *m, float *v, size_t n,
                                float lr, float b1, float b2, float eps, float wd, float gscale,
                                float bc1, float bc2) {
    LLM__CU_FOR(i, n) {
        float g = grad[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i];
        p -= lr * wd * p;                                   /* decoupled decay first */
        param[i] = p - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}
static void llm__cu_adamw(void *p, float *param, const float *grad, float *m, float *v, size_t n,
                          float lr, float beta1, float beta2, float eps, float weight_decay,
                          float grad_scale, int t) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    llm__cu_adamw_k<<<llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream>>>(
        param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    llm__cu_launched(st, "adamw", "n=%zu t=%d", n, t);
}

//==== TABLE ============================================================================
/* Filled by name (the table's order is llm.h's business), once: C++ runs a function-local
 * static's initialiser exactly once even when threads race to it. */
static llm_backend llm__cu_table(void) {
    llm_backend b;
    memset(&b, 0, sizeof b);
    b.name = "cuda";
    b.create = llm__cu_create;
    b.destroy = llm__cu_destroy;
    b.alloc = llm__cu_alloc;
    b.release = llm__cu_release;
    b.upload = llm__cu_upload;
    b.download = llm__cu_download;
    b.zero = llm__cu_zero;
    b.encoder_fwd = llm__cu_encoder_fwd;
    b.encoder_bwd = llm__cu_encoder_bwd;
    b.layernorm_fwd = llm__cu_layernorm_fwd;
    b.layernorm_bwd = llm__cu_layernorm_bwd;
    b.matmul_fwd = llm__cu_matmul_fwd;
    b.matmul_bwd = llm__cu_matmul_bwd;
    b.attention_fwd = llm__cu_attention_fwd;
    b.attention_bwd = llm__cu_attention_bwd;
    b.gelu_fwd = llm__cu_gelu_fwd;
    b.gelu_bwd = llm__cu_gelu_bwd;
    b.residual_fwd = llm__cu_residual_fwd;
    b.residual_bwd = llm__cu_residual_bwd;
    b.crossentropy_fwd = llm__cu_crossentropy_fwd;
    b.crossentropy_bwd = llm__cu_crossentropy_bwd;
    b.sumsq = llm__cu_sumsq;
    b.adamw = llm__cu_adamw;
    return b;
}

extern "C" const llm_backend *llm_cuda_backend(void) {
    static const llm_backend table = llm__cu_table();
    return &table;
}
