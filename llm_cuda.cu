/* llm_cuda.cu - the CUDA backend for llm.h: every op of the backend table on an NVIDIA GPU.
 *
 * WHAT
 *   Fills llm.h's `llm_backend` table with GPU kernels. Compiled with nvcc into an object
 *   that is linked beside a program using llm.h (whose implementation lives in that
 *   program's .c file); the program chooses it with one line:
 *       llm_options opt = {0};  opt.backend = llm_cuda_backend();  opt.device = 0;
 *   Tensor memory (parameters, gradients, optimizer moments, activations, KV caches) then
 *   lives on the GPU; the model code is the same.
 *
 * BUILD
 *   nvcc -O3 -std=c++17 -I. -c llm_cuda.cu -o llm_cuda.o
 *   cc -O2 prog.c llm_cuda.o -lcublasLt -lcublas -lcudart -lstdc++ -lm -pthread
 *   Data parallel over GPUs (llm_options.dist_world, see DATA PARALLEL) needs NCCL:
 *   -DLLM_CUDA_NCCL=1 for nvcc and -lnccl for the link (the Makefile adds both when it
 *   finds nccl.h).
 *
 * DESIGN
 *   - One device (opt->device), one stream. Every op is queued on that stream and returns
 *     at once; upload, download, sumsq and sync wait for the stream.
 *   - Matmuls go to cuBLAS (cublasSgemm; cuBLASLt where a bias or GELU can ride in the
 *     epilogue; FP32 math: TF32 stays off, so results match the CPU to ~1e-6 relative).
 *     Everything else is a kernel in this file, each with the math in a comment, forward
 *     beside backward, in model order: encoder, layernorm, rmsnorm, matmul, rope,
 *     attention, attention_kv, gelu, swiglu, residual, cross-entropy, sumsq, adamw.
 *   - Ops return void (the table's contract), so a failure inside an op is recorded in the
 *     backend state: the first message is kept, later ops are skipped, and sync reports it
 *     (then clears it: "the first error since the last sync"). upload, download and alloc
 *     report a pending failure too (without clearing it); sumsq returns NaN. CUDA's own
 *     asynchronous errors surface at the next synchronising call. Set LLM_CUDA_SYNC=1 to
 *     synchronise after every kernel, so an error names the kernel that caused it.
 *   - Bad indices that only the GPU sees (attention_kv's seq/pos arrays live on the
 *     device) set a flag in device memory instead of being read out of bounds; sync
 *     reads the flag and reports them.
 *   - LLM_CUDA_PROFILE=1: every kernel and library call is timed with CUDA events (GPU
 *     time, read at each sync); llm_cuda_profile() prints the table by kind of work.
 *   - Determinism: every reduction has a fixed order (warp butterflies, fixed block counts,
 *     per-column partials summed in split order, one owner per gradient element in the
 *     attention backward and in the token-embedding gradient, whose positions are grouped
 *     by token on the host), so a run repeats bit for bit. No atomicAdd on floats.
 *   - Attention is flash-attention style: the (T,T) score matrix never exists in global
 *     memory. Forward keeps a running max and sum per query row (online softmax) and saves
 *     lse = log(sum_j exp(s_ij)); backward recomputes P_ij = exp(s_ij - lse_i). Grouped-query
 *     heads (NKV < NH) read their group's K/V directly, nothing is copied. Head size <= 128.
 *     fp32 kernels on CUDA cores; in the bf16 and fp16 modes, tensor-core (WMMA) versions
 *     of the same, one template for both types.
 *
 * STATUS: written without a GPU at hand. It compiles and links warning-free, and the
 *   kernels and host logic run in CI through tests/cuda_emu.h, which compiles this file
 *   with a host compiler and executes every kernel on the CPU (CUDA threads as fibers,
 *   cuBLAS/cuBLASLt/NCCL by reference implementations): tests/test_cuda compares every
 *   op with the CPU backend there. That proves the indexing, synchronisation and host
 *   logic, not the hardware behaviour (memory model, cuBLASLt's real kernels, speed):
 *   scripts/gpu_check.sh is the one-shot script to run on a real GPU.
 *
 * PRECISION
 *   llm_cuda_backend(): fp32 everywhere, the exact mode (matches the CPU to ~1e-5).
 *   llm_options.bf16 = 1 (or the table llm_cuda_backend_bf16(), which forces it), the
 *   fast mode (sm_80+): every matmul multiplies bf16 operands on tensor cores with fp32
 *   accumulation and fp32 output. Weights are read from persistent bf16 copies that AdamW
 *   writes in the same pass as the fp32 master weights; activations and gradients are
 *   rounded per product; forward products apply bias and GELU in cuBLASLt's epilogue.
 *   Attention's products run on tensor cores too (WMMA flash attention, head sizes that
 *   are multiples of 16 up to 128: Q, K, V, P, dO, dS rounded to bf16 in shared memory,
 *   scores, softmax statistics and accumulators fp32). Master weights, gradients, AdamW
 *   moments, norms, softmax and cross-entropy stay fp32, and so do the activations
 *   between ops (the backend table passes fp32 tensors): storing activations in bf16
 *   would halve the memory traffic of the elementwise ops and is the next step for speed.
 *   llm_options.fp16 = 1 (or llm_cuda_backend_fp16()), for GPUs without bf16 (sm_70+: V100,
 *   T4): the same with fp16 operands (unit roundoff 2^-11 against bf16's 2^-8, but only 5
 *   exponent bits: 6e-8 .. 65504). Activations and weights fit that range; gradients need
 *   loss scaling (llm_loss_scaler in llm.h): a gradient that overflows fp16 when rounded
 *   becomes inf, the step's gradient norm with it, and the step is skipped.
 */
#ifndef LLM_CUDA_EMU
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#if LLM_CUDA_NCCL
#include <nccl.h>
#endif
/* Every kernel launch goes through this macro, so that tests/cuda_emu.h (which compiles
 * this file with a host C++ compiler and runs the kernels on the CPU, see `make test`) can
 * replace the <<<>>> syntax with its own launcher. */
#define LLM__CU_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <errno.h>
#include <time.h>
#include <pthread.h>
#include <initializer_list>
#include <type_traits>
#include "llm.h"

/* Messages go to llm.h's llm_set_error(), so llm_last_error() reports them. */

//==== STATE ============================================================================
#define LLM__CU_THREADS 256                 /* threads per block of the elementwise kernels */
#define LLM__CU_SUMSQ_BLOCKS 1024           /* fixed grid of sumsq's first pass */
#define LLM__CU_SCRATCH_FLOATS (1u << 21)   /* column-sum partials, overlapping copies: 8 MiB */
#define LLM__CU_COLSUM_SPLITS 32            /* row splits of a column sum */
#define LLM__CU_HS_MAX 128                  /* largest attention head size */
#define LLM__CU_ATT_WARPS 8                 /* query (or key) rows per attention block */
#define LLM__CU_ROPE_PAIRS 128              /* largest RoPE head size / 2 */
#define LLM__CU_FULL 0xffffffffu            /* all lanes of a warp */
#define LLM__CU_FLAG_KV_INDEX 1             /* flags bit: attention_kv met a bad seq/pos */
#define LLM__CU_LT_CACHE 64                 /* cuBLASLt algorithm choices remembered */
#define LLM__CU_PROF_EVENTS 512             /* profile: events between two flushes */

/* Precision modes (see PRECISION): the type of the matmul and attention operands. */
enum { LLM__CU_FP32 = 0, LLM__CU_BF16 = 1, LLM__CU_FP16 = 2 };

/* 16-bit modes: one device allocation; for fp32 memory, the 16-bit copy of its floats once
 * a matmul has used memory in it as a weight (see MATMUL). */
typedef struct llm__cu_block {
    char *base;               /* what cudaMalloc returned */
    size_t bytes;
    void *shadow;             /* bytes/4 values of the mode's 16-bit type, or NULL */
    int fresh;                /* shadow equals the floats (else the next matmul refreshes it) */
    int act;                  /* from alloc_act: activations in the mode's 16-bit type */
} llm__cu_block;

typedef struct llm__cu {
    int dev;                  /* device index */
    cudaStream_t stream;      /* every op is queued here */
    cublasHandle_t blas;
    double *sumsq_part;       /* (LLM__CU_SUMSQ_BLOCKS + 1) device: partials, then the total */
    float *scratch;           /* (LLM__CU_SCRATCH_FLOATS) device: column-sum partials */
    int *flags;               /* (1) device: LLM__CU_FLAG_* bits set by kernels */
    int flags_armed;          /* a kernel that may set flags ran since the last sync */
    int sync_each;            /* LLM_CUDA_SYNC=1: synchronise after every kernel */
    int prec;                 /* LLM__CU_FP32, LLM__CU_BF16 or LLM__CU_FP16 */
    void *half[4];            /* 16-bit modes: copies of fp32 operands (activation, weight,
                               * gradient, bias), for products whose inputs are not 16-bit */
    size_t half_cap[4];       /* their capacities, in elements */
    llm__cu_block *blocks;    /* 16-bit modes: every live allocation, for the weight copies */
    int nblocks, blocks_cap;
    cublasLtHandle_t lt;      /* cuBLASLt, for matmuls with fused epilogues */
    void *lt_ws;              /* its workspace */
    size_t lt_ws_bytes;
    int lt_off;               /* bit (gelu + 2 prec): cuBLASLt refused that kind of fused
                               * product, so it takes the plain path from then on */
    struct {                  /* cuBLASLt's heuristic choices, by problem (see llm__cu_lt) */
        int64_t key[12];
        cublasLtMatmulAlgo_t algo;
    } lt_algo[LLM__CU_LT_CACHE];
    int lt_n;                 /* entries used; the next replaced is lt_n % LLM__CU_LT_CACHE */
    int *h_tok;               /* encoder_bwd: host copy of the tokens, and the positions */
    int *h_ord;               /*   sorted by token, then the runs (see ENCODER) */
    size_t h_cap;             /* elements of each */
    int *d_ord;               /* device copy of the sorted positions and the runs */
    size_t d_ord_cap;         /* elements */
    /* data parallel (see DATA PARALLEL): rank of world processes, one GPU each */
    int dist_rank, dist_world;
#if LLM_CUDA_NCCL
    ncclComm_t comm;          /* NULL when not distributed: allreduce_mean does nothing */
#endif
    int prof;                 /* LLM_CUDA_PROFILE=1: time every kernel and library call */
    cudaEvent_t prof_ev[LLM__CU_PROF_EVENTS];   /* recorded in stream order ... */
    const char *prof_name[LLM__CU_PROF_EVENTS]; /* ... each closing the named work before it
                                                 * (NULL: an op's start, closing nothing) */
    int prof_n;
    llm_status status;        /* first failure since the last sync, LLM_OK if none */
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

/* Check a CUDA runtime result. `fmt` says what the call was doing, with its sizes. */
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

static void llm__cu_mark(llm__cu *st, const char *name);   /* see the profile below */

/* After a kernel launch: a bad launch configuration shows here; with LLM_CUDA_SYNC=1 an
 * error during the kernel does too. */
static void llm__cu_launched(llm__cu *st, const char *kernel, const char *fmt, ...) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && st->sync_each) e = cudaStreamSynchronize(st->stream);
    if (e != cudaSuccess) {   /* the message is formatted only here: launches are the hot path */
        char what[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        llm__cu_fail(st, e == cudaErrorMemoryAllocation ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                     "CUDA: kernel %s failed: %s (%s) [%s]", kernel, cudaGetErrorString(e),
                     cudaGetErrorName(e), what);
    }
    llm__cu_mark(st, kernel);
}

/* Every op starts here: skip the work after a failure, and make this host thread use the
 * backend's device (the current device is per host thread in the CUDA runtime). */
static bool llm__cu_enter(llm__cu *st) {
    if (st->status != LLM_OK) return false;
    if (!LLM__CUDA(st, cudaSetDevice(st->dev), "device %d", st->dev)) return false;
    llm__cu_mark(st, NULL);
    return true;
}

/* ---- profile: where the GPU's time goes (LLM_CUDA_PROFILE=1) -------------------------
 * Every op records an event as it starts, and another after each kernel or library call
 * it queues, named after that work. The stream runs them in order, so the GPU time
 * between two consecutive events is the named work's (including any wait for the host
 * to queue it, when the GPU runs ahead). Events are read in batches: at each sync, or
 * when the batch is full; the totals are process-wide, for llm_cuda_profile(). */
typedef struct { const char *name; double ms; long calls; } llm__cu_prof_row;
static llm__cu_prof_row llm__cu_prof_rows[128];
static int llm__cu_prof_nrows;
static pthread_mutex_t llm__cu_prof_mu = PTHREAD_MUTEX_INITIALIZER;

static void llm__cu_prof_flush(llm__cu *st) {
    if (!st->prof || st->prof_n == 0) return;
    if (cudaEventSynchronize(st->prof_ev[st->prof_n - 1]) != cudaSuccess) {
        (void)cudaGetLastError();
        st->prof_n = 0;
        return;
    }
    pthread_mutex_lock(&llm__cu_prof_mu);
    for (int i = 1; i < st->prof_n; i++) {
        const char *name = st->prof_name[i];
        float ms = 0.0f;
        if (!name || cudaEventElapsedTime(&ms, st->prof_ev[i - 1], st->prof_ev[i]) != cudaSuccess) continue;
        int r = 0;
        while (r < llm__cu_prof_nrows && strcmp(llm__cu_prof_rows[r].name, name) != 0) r++;
        if (r == llm__cu_prof_nrows) {
            if (r == (int)(sizeof llm__cu_prof_rows / sizeof llm__cu_prof_rows[0])) continue;
            llm__cu_prof_rows[r].name = name;
            llm__cu_prof_rows[r].ms = 0.0;
            llm__cu_prof_rows[r].calls = 0;
            llm__cu_prof_nrows++;
        }
        llm__cu_prof_rows[r].ms += ms;
        llm__cu_prof_rows[r].calls++;
    }
    pthread_mutex_unlock(&llm__cu_prof_mu);
    (void)cudaGetLastError();
    st->prof_n = 0;
}
/* Record an event closing `name` (a string literal), or an op's start (NULL). */
static void llm__cu_mark(llm__cu *st, const char *name) {
    if (!st->prof) return;
    if (st->prof_n == LLM__CU_PROF_EVENTS) llm__cu_prof_flush(st);
    if (cudaEventRecord(st->prof_ev[st->prof_n], st->stream) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    st->prof_name[st->prof_n++] = name;
}

/* The table so far: one line per kind of work, the most expensive first, with calls,
 * GPU milliseconds and the share of the total; reset 1 starts a new count. Returns the
 * length of the text (as snprintf: it is cut at cap). Empty without LLM_CUDA_PROFILE=1. */
extern "C" size_t llm_cuda_profile(char *buf, size_t cap, int reset) {
    pthread_mutex_lock(&llm__cu_prof_mu);
    int n = llm__cu_prof_nrows, idx[128];
    double total = 0.0;
    for (int i = 0; i < n; i++) { idx[i] = i; total += llm__cu_prof_rows[i].ms; }
    for (int i = 1; i < n; i++)   /* insertion sort by time, descending */
        for (int j = i; j > 0 && llm__cu_prof_rows[idx[j]].ms > llm__cu_prof_rows[idx[j - 1]].ms; j--) {
            int t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t;
        }
    size_t len = 0;
    char line[160];
    if (cap) buf[0] = 0;
    for (int i = 0; i <= n && n > 0; i++) {
        if (i < n) {
            const llm__cu_prof_row *r = &llm__cu_prof_rows[idx[i]];
            snprintf(line, sizeof line, "%-32s %8ld calls %11.3f ms %6.1f%%\n", r->name, r->calls, r->ms,
                     total > 0 ? 100.0 * r->ms / total : 0.0);
        } else {
            snprintf(line, sizeof line, "%-32s %14s %11.3f ms  100.0%%\n", "total", "", total);
        }
        if (len + 1 < cap) snprintf(buf + len, cap - len, "%s", line);
        len += strlen(line);
    }
    if (reset) llm__cu_prof_nrows = 0;
    pthread_mutex_unlock(&llm__cu_prof_mu);
    return len;
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

//==== STORAGE TYPES ====================================================================
/* The element types of device tensors. Everything is fp32 except, in the 16-bit modes,
 * the activations in memory from alloc_act, stored in the mode's 16-bit type (see
 * ACTIVATION STORAGE). Kernels that stream tensors are templates on their storage type S;
 * their arithmetic is fp32 whatever S is: llm__cu_ld widens an element (exact), llm__cu_st
 * rounds a result to nearest even (for float both are the identity, so the fp32
 * instantiation is the plain kernel). The 16-bit types also say from which architecture
 * the tensor cores multiply them (wmma tiles: fp16 from sm_70, bf16 from sm_80); the host
 * pass (and the emulator) has both. A kernel for a type its device lacks compiles without
 * its products and is never launched (create refuses the mode there). */
template <class T> struct llm__cu_type;
template <> struct llm__cu_type<float> {
    static __device__ float round(float x) { return x; }
    static __device__ float widen(float x) { return x; }
};
template <> struct llm__cu_type<__nv_bfloat16> {
    enum { sm = 80 };   /* tensor-core tiles from sm_80 */
    static __device__ __nv_bfloat16 round(float x) { return __float2bfloat16(x); }
    static __device__ float widen(__nv_bfloat16 h) { return __bfloat162float(h); }
};
template <> struct llm__cu_type<__half> {
    enum { sm = 70 };
    static __device__ __half round(float x) { return __float2half(x); }
    static __device__ float widen(__half h) { return __half2float(h); }
};
template <class T> static __device__ float llm__cu_ld(const T *p, size_t i) { return llm__cu_type<T>::widen(p[i]); }
template <class T> static __device__ void llm__cu_st(T *p, size_t i, float v) { p[i] = llm__cu_type<T>::round(v); }
template <class H> static __device__ constexpr bool llm__cu_has_wmma(void) {
#ifdef __CUDA_ARCH__
    return __CUDA_ARCH__ >= 10 * llm__cu_type<H>::sm;
#else
    return true;
#endif
}
/* The block's dynamic shared memory (the launch's shmem bytes). Kernels that are templates
 * get it from here, a plain function: g++ (for tests/cuda_emu.h) mishandles a block-scope
 * extern thread_local inside a function template. */
static __device__ float *llm__cu_shmem(void) {
    extern __shared__ float sm[];
    return sm;
}
/* Host side: `body` with S the C++ type of storage type s (LLM__CU_FP32, _BF16, _FP16),
 * so that one line launches the right instantiation of a kernel template. */
#define LLM__CU_TYPED(s, ...)                                                                 \
    do {                                                                                      \
        if ((s) == LLM__CU_BF16) { typedef __nv_bfloat16 S; __VA_ARGS__; }                    \
        else if ((s) == LLM__CU_FP16) { typedef __half S; __VA_ARGS__; }                      \
        else { typedef float S; __VA_ARGS__; }                                                \
    } while (0)

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
 *   BIAS:  sum0[c] = sum_n dout[n,c]                                  (matmul dbias)
 *   LN:    sum0[c] = sum_n dout[n,c],
 *          sum1[c] = sum_n dout[n,c] * (inp[n,c] - mean[n]) * rstd[n] (layernorm db, dw)
 *   RMS:   sum1[c] = sum_n dout[n,c] * inp[n,c] * rstd[n]             (rmsnorm dw)
 * Block (32 columns x 8 rows); grid.y = S splits of the rows. With S == 1 the block adds
 * its sums into dst directly; otherwise it writes partials part[s][c] (sum0) and
 * part[S+s][c] (sum1) that llm__cu_colsum_finish adds up in split order: deterministic. */
enum { LLM__CU_COL_BIAS = 0, LLM__CU_COL_LN = 1, LLM__CU_COL_RMS = 2 };
/* dout and inp of storage type S; the mode is the same for every thread (no divergence). */
template <class S>
static __global__ void llm__cu_colsum(float *dst0, float *dst1, float *part, const S *dout, const S *inp,
                                      const float *mean, const float *rstd, int N, int C, int mode) {
    __shared__ float sh0[8][33], sh1[8][33];
    int tx = threadIdx.x, ty = threadIdx.y;
    int c = blockIdx.x * 32 + tx, splits = gridDim.y, s = blockIdx.y;
    int per = (N + splits - 1) / splits, n0 = s * per, n1 = min(N, n0 + per);
    float a0 = 0.0f, a1 = 0.0f;
    if (c < C) {
        for (int n = n0 + ty; n < n1; n += 8) {
            float d = llm__cu_ld(dout, (size_t)n * C + c);
            if (mode != LLM__CU_COL_RMS) a0 += d;
            if (mode == LLM__CU_COL_LN) a1 += d * (llm__cu_ld(inp, (size_t)n * C + c) - mean[n]) * rstd[n];
            if (mode == LLM__CU_COL_RMS) a1 += d * llm__cu_ld(inp, (size_t)n * C + c) * rstd[n];
        }
    }
    sh0[ty][tx] = a0;
    sh1[ty][tx] = a1;
    __syncthreads();
    if (ty != 0 || c >= C) return;
    a0 = 0.0f; a1 = 0.0f;
    for (int y = 0; y < 8; y++) { a0 += sh0[y][tx]; a1 += sh1[y][tx]; }
    if (splits == 1) {
        if (dst0) dst0[c] += a0;
        if (dst1) dst1[c] += a1;
    } else {
        part[(size_t)s * C + c] = a0;
        part[(size_t)(splits + s) * C + c] = a1;
    }
}
static __global__ void llm__cu_colsum_finish(float *dst0, float *dst1, const float *part, int S, int C) {
    LLM__CU_FOR(c, (size_t)C) {
        float a0 = 0.0f, a1 = 0.0f;
        for (int s = 0; s < S; s++) {
            a0 += part[(size_t)s * C + c];
            a1 += part[(size_t)(S + s) * C + c];
        }
        if (dst0) dst0[c] += a0;
        if (dst1) dst1[c] += a1;
    }
}
/* Launch a column sum: dst0 += sum0, dst1 += sum1 (either may be NULL: not wanted); dout
 * and inp of storage type s. */
static void llm__cu_colsums(llm__cu *st, int mode, float *dst0, float *dst1, int s, const float *dout,
                            const float *inp, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0 || (!dst0 && !dst1)) return;
    int splits = N / 256 + 1;                    /* >= 256 rows per split */
    if (splits > LLM__CU_COLSUM_SPLITS) splits = LLM__CU_COLSUM_SPLITS;
    if ((size_t)splits * 2 * C > LLM__CU_SCRATCH_FLOATS) splits = (int)(LLM__CU_SCRATCH_FLOATS / (2 * (size_t)C));
    if (splits < 1) splits = 1;
    dim3 grid((unsigned)((C + 31) / 32), (unsigned)splits), block(32, 8);
    if (mode == LLM__CU_COL_BIAS) dst1 = NULL;
    if (mode == LLM__CU_COL_RMS) dst0 = NULL;
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_colsum<S>, grid, block, 0, st->stream)(
        dst0, dst1, st->scratch, (const S *)dout, (const S *)inp, mean, rstd, N, C, mode));
    llm__cu_launched(st, "colsum", "N=%d C=%d splits=%d", N, C, splits);
    if (splits > 1) {
        LLM__CU_LAUNCH(llm__cu_colsum_finish, llm__cu_blocks((size_t)C), LLM__CU_THREADS, 0, st->stream)(
            dst0, dst1, st->scratch, splits, C);
        llm__cu_launched(st, "colsum_finish", "C=%d splits=%d", C, splits);
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
/* The name of device `dev` ("" if it cannot be read): tests print it, so a log says which
 * GPU ran, or that tests/cuda_emu.h did ("llm.h CUDA emulator"). Per host thread. */
extern "C" const char *llm_cuda_device_name(int dev) {
    static thread_local char name[256];
    cudaDeviceProp prop;
    name[0] = 0;
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess) snprintf(name, sizeof name, "%s", prop.name);
    else (void)cudaGetLastError();
    return name;
}

/* Compute capability and memory of device `dev`; 0, or -1 if they cannot be read. */
extern "C" int llm_cuda_device_props(int dev, int *cc_major, int *cc_minor, size_t *total_mem) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    if (cc_major) *cc_major = prop.major;
    if (cc_minor) *cc_minor = prop.minor;
    if (total_mem) *total_mem = prop.totalGlobalMem;
    return 0;
}

static void llm__cu_destroy(void *p) {
    llm__cu *st = (llm__cu *)p;
    if (!st) return;
    cudaSetDevice(st->dev);
    if (st->stream) cudaStreamSynchronize(st->stream);
    llm__cu_prof_flush(st);
    for (int i = 0; i < LLM__CU_PROF_EVENTS && st->prof; i++) cudaEventDestroy(st->prof_ev[i]);
    cudaFree(st->sumsq_part);
    cudaFree(st->scratch);
    cudaFree(st->flags);
    for (int i = 0; i < 4; i++) cudaFree(st->half[i]);
    for (int i = 0; i < st->nblocks; i++) cudaFree(st->blocks[i].shadow);
    free(st->blocks);
    if (st->lt) cublasLtDestroy(st->lt);
    cudaFree(st->lt_ws);
    cudaFree(st->d_ord);
    free(st->h_tok);
    free(st->h_ord);
#if LLM_CUDA_NCCL
    if (st->comm) ncclCommDestroy(st->comm);
#endif
    if (st->blas) cublasDestroy(st->blas);
    if (st->stream) cudaStreamDestroy(st->stream);
    (void)cudaGetLastError();
    free(st);
}

/* Data parallel setup (see DATA PARALLEL): the options are checked before any CUDA call,
 * the communicator is made once the device is ready. */
static llm_status llm__cu_dist_check(const llm_options *opt);
static bool llm__cu_dist_init(llm__cu *st, const llm_options *opt);

/* opt->device picks the GPU (opt NULL: device 0); opt->n_threads is not used. prec asks
 * for a precision mode: bf16 needs bf16 tensor cores (compute capability 8.0+), fp16
 * fp16 ones (7.0+). */
static const char *llm__cu_prec_name(int prec) {
    return prec == LLM__CU_BF16 ? "bf16" : prec == LLM__CU_FP16 ? "fp16" : "fp32";
}
static llm_status llm__cu_create_mode(void **out, const llm_options *opt, int prec) {
    *out = NULL;
    llm_status ds = llm__cu_dist_check(opt);
    if (ds != LLM_OK) return ds;
    int count = 0, dev = opt ? opt->device : 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return llm_set_error(LLM_ERR_UNSUPPORTED, "CUDA backend: no usable GPU (%s)",
                             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    }
    if (dev < 0 || dev >= count)
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: device %d requested, devices 0..%d present",
                             dev, count - 1);
    if (prec != LLM__CU_FP32) {
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return llm_set_error(LLM_ERR_BACKEND, "CUDA backend: cannot read the properties of device %d", dev);
        }
        int need = prec == LLM__CU_BF16 ? 8 : 7;
        if (prop.major < need)
            return llm_set_error(LLM_ERR_UNSUPPORTED, "CUDA %s backend: device %d (%s) is sm_%d%d; %s tensor-core "
                                 "matmuls need sm_%d0 or newer (use %s)", llm__cu_prec_name(prec), dev, prop.name,
                                 prop.major, prop.minor, llm__cu_prec_name(prec), need,
                                 prec == LLM__CU_BF16 && prop.major >= 7 ? "fp16 (sm_70+) or fp32" : "fp32");
    }
    llm__cu *st = (llm__cu *)calloc(1, sizeof *st);
    if (!st) return llm_set_error(LLM_ERR_NOMEM, "CUDA backend: out of host memory");
    st->dev = dev;
    st->prec = prec;
    const char *sync = getenv("LLM_CUDA_SYNC");
    st->sync_each = sync && sync[0] == '1';
    size_t nsum = (LLM__CU_SUMSQ_BLOCKS + 1) * sizeof(double), nscr = LLM__CU_SCRATCH_FLOATS * sizeof(float);
    bool ok = LLM__CUDA(st, cudaSetDevice(dev), "device %d", dev) &&
              LLM__CUDA(st, cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking),
                        "device %d", dev) &&
              LLM__BLAS(st, cublasCreate(&st->blas), "device %d", dev) &&
              LLM__BLAS(st, cublasSetStream(st->blas, st->stream), "device %d", dev) &&
              /* plain FP32 math: no TF32 tensor cores (10-bit mantissa) in the exact mode */
              LLM__BLAS(st, cublasSetMathMode(st->blas, CUBLAS_DEFAULT_MATH), "device %d", dev) &&
              LLM__CUDA(st, cudaMalloc((void **)&st->sumsq_part, nsum), "%zu bytes of sumsq scratch", nsum) &&
              LLM__CUDA(st, cudaMalloc((void **)&st->scratch, nscr), "%zu bytes of column-sum scratch", nscr) &&
              LLM__CUDA(st, cudaMalloc((void **)&st->flags, sizeof(int)), "4 bytes of flags") &&
              LLM__CUDA(st, cudaMemsetAsync(st->flags, 0, sizeof(int), st->stream), "flags");
    if (ok) {
        /* 32 MiB of workspace lets cuBLASLt pick its split-K and Hopper kernels */
        st->lt_ws_bytes = (size_t)32 << 20;
        ok = LLM__BLAS(st, cublasLtCreate(&st->lt), "device %d", dev) &&
             LLM__CUDA(st, cudaMalloc(&st->lt_ws, st->lt_ws_bytes), "%zu bytes of cuBLASLt workspace",
                       st->lt_ws_bytes);
    }
    const char *prof = getenv("LLM_CUDA_PROFILE");
    if (ok && prof && prof[0] == '1') {
        st->prof = 1;
        for (int i = 0; i < LLM__CU_PROF_EVENTS && st->prof; i++)
            if (cudaEventCreate(&st->prof_ev[i]) != cudaSuccess) {  /* no profile, no failure */
                (void)cudaGetLastError();
                for (int j = 0; j < i; j++) cudaEventDestroy(st->prof_ev[j]);
                st->prof = 0;
            }
    }
    if (!ok) {
        llm_status s = st->status;
        char msg[512];
        memcpy(msg, st->msg, sizeof msg);
        llm__cu_destroy(st);
        return llm_set_error(s, "%s", msg);
    }
    if (!llm__cu_dist_init(st, opt)) {   /* waits for the other ranks */
        llm_status s = st->status;
        char msg[512];
        memcpy(msg, st->msg, sizeof msg);
        llm__cu_destroy(st);
        return llm_set_error(s, "%s", msg);
    }
    *out = st;
    return LLM_OK;
}
static llm_status llm__cu_create(void **out, const llm_options *opt) {
    if (opt && opt->bf16 && opt->fp16) {
        *out = NULL;
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: llm_options asks for both bf16 and fp16; pick one");
    }
    return llm__cu_create_mode(out, opt, !opt ? LLM__CU_FP32 : opt->bf16 ? LLM__CU_BF16
                                         : opt->fp16 ? LLM__CU_FP16 : LLM__CU_FP32);
}
static llm_status llm__cu_create_bf16(void **out, const llm_options *opt) {
    return llm__cu_create_mode(out, opt, LLM__CU_BF16);
}
static llm_status llm__cu_create_fp16(void **out, const llm_options *opt) {
    return llm__cu_create_mode(out, opt, LLM__CU_FP16);
}

/* A failure recorded by an earlier (void) op, reported by a call with a status. */
static llm_status llm__cu_pending(llm__cu *st) {
    return llm_set_error(st->status, "%s (an earlier GPU op failed)", st->msg);
}

/* The 16-bit modes keep a list of the live allocations (a model has about fifteen, so a
 * linear search is cheap next to any launch). */
static llm__cu_block *llm__cu_block_of(llm__cu *st, const void *p) {
    const char *c = (const char *)p;
    for (int i = 0; i < st->nblocks; i++)
        if (c >= st->blocks[i].base && c < st->blocks[i].base + st->blocks[i].bytes) return &st->blocks[i];
    return NULL;
}
/* Memory at p was written by something other than AdamW: its 16-bit copy, if any, is stale. */
static void llm__cu_touch(llm__cu *st, const void *p) {
    if (!st->prec || !p) return;
    llm__cu_block *b = llm__cu_block_of(st, p);
    if (b) b->fresh = 0;
}
#define LLM__CU_TOUCH3(st, a, b, c) (llm__cu_touch(st, a), llm__cu_touch(st, b), llm__cu_touch(st, c))

/* Device memory of `bytes`; act: for activations (alloc_act), see ACTIVATION STORAGE. */
static void *llm__cu_alloc_kind(llm__cu *st, size_t bytes, int act) {
    if (st->status != LLM_OK) { llm__cu_pending(st); return NULL; }
    if (!llm__cu_enter(st)) return NULL;
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        /* out of memory is the caller's to handle, not a broken backend: not recorded */
        llm_set_error(e == cudaErrorMemoryAllocation ? LLM_ERR_NOMEM : LLM_ERR_BACKEND,
                      "CUDA: cudaMalloc of %zu bytes (%.1f MiB) failed: %s; device %d has "
                      "%.1f MiB free of %.1f MiB", bytes, bytes / 1048576.0,
                      cudaGetErrorString(e), st->dev, free_b / 1048576.0, total_b / 1048576.0);
        return NULL;
    }
    if (st->prec) {
        if (st->nblocks == st->blocks_cap) {
            int cap = st->blocks_cap ? 2 * st->blocks_cap : 16;
            llm__cu_block *nb = (llm__cu_block *)realloc(st->blocks, (size_t)cap * sizeof *nb);
            if (!nb) {
                cudaFree(d);
                llm_set_error(LLM_ERR_NOMEM, "CUDA: out of host memory for the allocation list");
                return NULL;
            }
            st->blocks = nb;
            st->blocks_cap = cap;
        }
        llm__cu_block blk = {(char *)d, bytes, NULL, 0, act};
        st->blocks[st->nblocks++] = blk;
    }
    return d;
}
static void *llm__cu_alloc(void *p, size_t bytes) { return llm__cu_alloc_kind((llm__cu *)p, bytes, 0); }

/* ---- activation storage -----------------------------------------------------------------
 * In a 16-bit mode the model's activations (the tensors between ops) live in memory from
 * alloc_act, stored as the mode's 16-bit type: every op that streams them moves half the
 * bytes of fp32, and they take half the memory. Memory from alloc stays fp32: parameters,
 * gradients, moments, norm statistics, logits, the residual stream's gradient, a caller's
 * own buffers. An op learns each tensor's type from the allocation it lies in, so one
 * table serves 2-byte activations, fp32 tensors, and the mixes a matmul meets (a 16-bit
 * input with fp32 logits out, an fp32 gradient in). A float * into activation storage is
 * a handle to 2-byte elements, at an offset the caller counts in those elements; kernels
 * cast it to the storage type and never read it as floats. In the fp32 mode alloc_act is
 * alloc. */
static void *llm__cu_alloc_act(void *p, size_t bytes) { return llm__cu_alloc_kind((llm__cu *)p, bytes, 1); }
static llm_dtype llm__cu_act_dtype(void *p) {
    int prec = ((llm__cu *)p)->prec;
    return prec == LLM__CU_BF16 ? LLM_DTYPE_BF16 : prec == LLM__CU_FP16 ? LLM_DTYPE_F16 : LLM_DTYPE_F32;
}
/* The storage type of the tensor at p: the mode's 16-bit type in activation storage,
 * else LLM__CU_FP32. */
static int llm__cu_stype(llm__cu *st, const void *p) {
    if (!st->prec || !p) return LLM__CU_FP32;
    llm__cu_block *b = llm__cu_block_of(st, p);
    return b && b->act ? st->prec : LLM__CU_FP32;
}
/* The storage type that an op's tensor arguments `act` share (NULLs skipped; fp32 if none),
 * after checking that those in `f32`, which the table keeps fp32, are; -1 after recording
 * LLM_ERR_ARG when either rule is broken (a caller's mix-up, which would otherwise read
 * 2-byte elements as floats or the reverse). */
static int llm__cu_io(llm__cu *st, const char *op, std::initializer_list<const void *> act,
                      std::initializer_list<const void *> f32) {
    if (!st->prec) return LLM__CU_FP32;
    int s = -1, i = 0;
    for (const void *p : act) {
        i++;
        if (!p) continue;
        int t = llm__cu_stype(st, p);
        if (s >= 0 && t != s) {
            llm__cu_fail(st, LLM_ERR_ARG, "CUDA %s: its tensors mix %s and %s storage (tensor %d); they must all "
                         "come from alloc_act or all from alloc", op, llm__cu_prec_name(s), llm__cu_prec_name(t), i);
            return -1;
        }
        s = t;
    }
    i = 0;
    for (const void *p : f32) {
        i++;
        if (p && llm__cu_stype(st, p) != LLM__CU_FP32) {
            llm__cu_fail(st, LLM_ERR_ARG, "CUDA %s: fp32 argument %d (statistics, parameters, gradients, logits, "
                         "caches) lies in %s activation storage (alloc_act)", op, i, llm__cu_prec_name(st->prec));
            return -1;
        }
    }
    return s < 0 ? LLM__CU_FP32 : s;
}

static void llm__cu_release(void *p, void *ptr) {
    llm__cu *st = (llm__cu *)p;
    if (!ptr) return;
    cudaSetDevice(st->dev);
    for (int i = 0; i < st->nblocks; i++)
        if (st->blocks[i].base == (char *)ptr) {
            cudaFree(st->blocks[i].shadow);
            st->blocks[i] = st->blocks[--st->nblocks];
            break;
        }
    LLM__CUDA(st, cudaFree(ptr), "release %p", ptr);
}

/* A synchronous copy between host and device, in either direction. */
static llm_status llm__cu_transfer(void *p, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                   const char *what) {
    llm__cu *st = (llm__cu *)p;
    if (st->status != LLM_OK) return llm__cu_pending(st);
    if (!llm__cu_enter(st)) return st->status;
    if (bytes == 0) return LLM_OK;
    if (!LLM__CUDA(st, cudaMemcpyAsync(dst, src, bytes, kind, st->stream), "%s %zu bytes", what, bytes) ||
        !LLM__CUDA(st, cudaStreamSynchronize(st->stream), "%s %zu bytes", what, bytes))
        return st->status;
    return LLM_OK;
}
static llm_status llm__cu_upload(void *p, void *dst, const void *src, size_t bytes) {
    llm__cu_touch((llm__cu *)p, dst);
    return llm__cu_transfer(p, dst, src, bytes, cudaMemcpyHostToDevice, "upload");
}
static llm_status llm__cu_download(void *p, void *dst, const void *src, size_t bytes) {
    return llm__cu_transfer(p, dst, src, bytes, cudaMemcpyDeviceToHost, "download");
}

static void llm__cu_zero(void *p, void *ptr, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || bytes == 0) return;
    llm__cu_touch(st, ptr);
    LLM__CUDA(st, cudaMemsetAsync(ptr, 0, bytes, st->stream), "zero %zu bytes", bytes);
    llm__cu_mark(st, "zero (memset)");
}

/* Device-to-device copy with memmove's meaning. cudaMemcpy leaves overlapping ranges
 * undefined, so those go through the scratch buffer in chunks, walking away from the
 * overlap (forward when dst < src, backward otherwise), each chunk read before written. */
static void llm__cu_copy(void *p, void *dst, const void *src, size_t bytes) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || bytes == 0 || dst == src) return;
    llm__cu_touch(st, dst);
    char *d = (char *)dst;
    const char *s = (const char *)src;
    if (d + bytes <= s || s + bytes <= d) {
        LLM__CUDA(st, cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, st->stream),
                  "copy %zu bytes", bytes);
        llm__cu_mark(st, "copy (memcpy)");
        return;
    }
    size_t chunk = LLM__CU_SCRATCH_FLOATS * sizeof(float);
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < chunk ? bytes - done : chunk;
        size_t off = d < s ? done : bytes - done - n;
        if (!LLM__CUDA(st, cudaMemcpyAsync(st->scratch, s + off, n, cudaMemcpyDeviceToDevice, st->stream),
                       "copy (overlapping) %zu bytes", bytes) ||
            !LLM__CUDA(st, cudaMemcpyAsync(d + off, st->scratch, n, cudaMemcpyDeviceToDevice, st->stream),
                       "copy (overlapping) %zu bytes", bytes))
            return;
        done += n;
    }
    llm__cu_mark(st, "copy (memcpy, overlapping)");
}

/* Wait for the stream; report (and clear) the first failure since the last sync,
 * including the index flags that kernels raise. */
static llm_status llm__cu_sync(void *p) {
    llm__cu *st = (llm__cu *)p;
    if (LLM__CUDA(st, cudaSetDevice(st->dev), "device %d", st->dev))
        LLM__CUDA(st, cudaStreamSynchronize(st->stream), "sync");
    if (st->flags_armed && st->status == LLM_OK) {
        int flags = 0;
        if (LLM__CUDA(st, cudaMemcpy(&flags, st->flags, sizeof flags, cudaMemcpyDeviceToHost), "sync: flags") &&
            LLM__CUDA(st, cudaMemsetAsync(st->flags, 0, sizeof(int), st->stream), "sync: flags") && flags)
            llm__cu_fail(st, LLM_ERR_ARG, "CUDA attention_kv: a row's seq < 0 or pos outside [0, maxT); "
                         "its k, v were not stored and its output is 0");
        st->flags_armed = 0;
    }
    llm__cu_prof_flush(st);
    llm_status s = st->status;
    if (s != LLM_OK) {
        llm_set_error(s, "%s", st->msg);
        st->status = LLM_OK;
        st->msg[0] = 0;
    }
    return s;
}

//==== ENCODER ==========================================================================
/* out[b,t,c] = wte[tok[b,t], c] + wpe[t, c]   (wpe NULL: the token embedding alone)
 * PyTorch: wte(tok) + wpe(arange(T)). */
template <class S>
static __global__ void llm__cu_encoder_fwd_k(S *out, const int *tok, const float *wte, const float *wpe, size_t BT,
                                             int T, int C) {
    LLM__CU_FOR(i, BT * C) {
        size_t bt = i / C;
        int c = (int)(i % C), t = (int)(bt % T);
        float x = wte[(size_t)tok[bt] * C + c];
        llm__cu_st(out, i, wpe ? x + wpe[(size_t)t * C + c] : x);
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
/* dwte[tok[b,t], c] += dout[b,t,c]. Positions holding the same token add into the same
 * row, so one thread per position would race; atomicAdd would be fast but would add in a
 * different order each run (the last bits of dwte, and so of training, would wander).
 * Instead the host sorts the positions by token (see llm__cu_runs_by_token) and one thread
 * per (token, c) sums that token's positions in order: each gradient element has one
 * owner and a fixed order, so a run repeats bit for bit.
 * runs: R+1 offsets into pos, then pos (the B*T positions grouped by token). */
static __global__ void llm__cu_encoder_bwd_wte_k(float *dwte, const float *dout, const int *tok,
                                                 const int *runs, int R, int C) {
    const int *pos = runs + R + 1;
    LLM__CU_FOR(i, (size_t)R * C) {
        int r = (int)(i / C), c = (int)(i % C);
        float s = 0.0f;
        for (int j = runs[r]; j < runs[r + 1]; j++) s += dout[(size_t)pos[j] * C + c];
        dwte[(size_t)tok[pos[runs[r]]] * C + c] += s;
    }
}
/* Group positions 0..n-1 of the host tokens st->h_tok by token, keeping position order
 * inside a group: a stable LSD radix sort on 16-bit digits (one pass when every token is
 * below 65536, as GPT-2's and Llama's are), then a cut wherever the token changes.
 * Writes runs (R+1 offsets) then the n positions at out; returns R. */
#define LLM__CU_RADIX 65536
static int llm__cu_runs_by_token(llm__cu *st, int n, int *out) {
    const int *tok = st->h_tok;
    int *cnt = st->h_tok + n, *a = st->h_ord, *b = st->h_ord + n;
    int maxtok = 0;
    for (int i = 0; i < n; i++) { a[i] = i; if (tok[i] > maxtok) maxtok = tok[i]; }
    for (int shift = 0; shift < 32 && (shift == 0 || (maxtok >> shift) != 0); shift += 16) {
        memset(cnt, 0, (LLM__CU_RADIX + 1) * sizeof(int));
        for (int i = 0; i < n; i++) cnt[((tok[a[i]] >> shift) & (LLM__CU_RADIX - 1)) + 1]++;
        for (int d = 0; d < LLM__CU_RADIX; d++) cnt[d + 1] += cnt[d];
        for (int i = 0; i < n; i++) b[cnt[(tok[a[i]] >> shift) & (LLM__CU_RADIX - 1)]++] = a[i];
        int *t = a; a = b; b = t;
    }
    int R = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || tok[a[i]] != tok[a[i - 1]]) out[R++] = i;
    out[R] = n;
    memcpy(out + R + 1, a, (size_t)n * sizeof(int));
    return R;
}
/* The token-embedding gradient: bring the tokens to the host (B*T ints; this waits for the
 * stream once per backward, at its last op), group them, send the groups back, sum. */
static void llm__cu_encoder_bwd_wte(llm__cu *st, float *dwte, const float *dout, const int *tok, int n, int C) {
    size_t need = (size_t)4 * n + 2;  /* h_ord: two position buffers, then runs + positions */
    if (need > st->h_cap) {
        free(st->h_tok);
        free(st->h_ord);
        st->h_tok = (int *)malloc(((size_t)n + LLM__CU_RADIX + 1) * sizeof(int));
        st->h_ord = (int *)malloc(need * sizeof(int));
        st->h_cap = st->h_tok && st->h_ord ? need : 0;
        if (!st->h_cap) {
            llm__cu_fail(st, LLM_ERR_NOMEM, "CUDA encoder_bwd: out of host memory for %d tokens", n);
            return;
        }
    }
    if (!LLM__CUDA(st, cudaMemcpyAsync(st->h_tok, tok, (size_t)n * sizeof(int), cudaMemcpyDeviceToHost,
                                       st->stream), "encoder_bwd: tokens (%d)", n) ||
        !LLM__CUDA(st, cudaStreamSynchronize(st->stream), "encoder_bwd: tokens (%d)", n))
        return;
    for (int i = 0; i < n; i++)
        if (st->h_tok[i] < 0) {
            llm__cu_fail(st, LLM_ERR_ARG, "CUDA encoder_bwd: token %d at position %d is negative", st->h_tok[i], i);
            return;
        }
    int *runs = st->h_ord + 2 * (size_t)n;
    int R = llm__cu_runs_by_token(st, n, runs);
    size_t nr = (size_t)R + 1 + n;
    if (nr > st->d_ord_cap) {
        (void)cudaFree(st->d_ord);
        st->d_ord = NULL;
        st->d_ord_cap = 0;
        if (!LLM__CUDA(st, cudaMalloc((void **)&st->d_ord, (size_t)2 * n * sizeof(int) + sizeof(int)),
                       "encoder_bwd: %zu bytes of token groups", (size_t)2 * n * sizeof(int) + sizeof(int)))
            return;
        st->d_ord_cap = (size_t)2 * n + 1;
    }
    /* pageable source: the copy has read it by the time the call returns */
    if (!LLM__CUDA(st, cudaMemcpyAsync(st->d_ord, runs, nr * sizeof(int), cudaMemcpyHostToDevice, st->stream),
                   "encoder_bwd: token groups (%zu ints)", nr))
        return;
    LLM__CU_LAUNCH(llm__cu_encoder_bwd_wte_k, llm__cu_blocks((size_t)R * C), LLM__CU_THREADS, 0, st->stream)(
        dwte, dout, tok, st->d_ord, R, C);
    llm__cu_launched(st, "encoder_bwd (wte)", "tokens=%d distinct=%d C=%d", n, R, C);
}

static void llm__cu_encoder_fwd(void *p, float *out, const int *tok, const float *wte,
                                const float *wpe, int B, int T, int C) {
    llm__cu *st = (llm__cu *)p;
    size_t n = (size_t)B * T * C;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "encoder_fwd", {out}, {wte, wpe});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_encoder_fwd_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)out, tok, wte, wpe, (size_t)B * T, T, C));
    llm__cu_launched(st, "encoder_fwd", "B=%d T=%d C=%d", B, T, C);
}

static void llm__cu_encoder_bwd(void *p, float *dwte, float *dwpe, const float *dout,
                                const int *tok, int B, int T, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0 || C <= 0) return;
    if (llm__cu_io(st, "encoder_bwd", {}, {dwte, dwpe, dout}) < 0) return;   /* dout: the residual gradient */
    LLM__CU_TOUCH3(st, dwte, dwpe, NULL);
    if (dwpe) {
        LLM__CU_LAUNCH(llm__cu_encoder_bwd_wpe_k, llm__cu_blocks((size_t)T * C), LLM__CU_THREADS, 0,
                       st->stream)(dwpe, dout, B, T, C);
        llm__cu_launched(st, "encoder_bwd (wpe)", "B=%d T=%d C=%d", B, T, C);
    }
    if (dwte) llm__cu_encoder_bwd_wte(st, dwte, dout, tok, B * T, C);
}

//==== LAYERNORM ========================================================================
/* One warp per row x (C):  mean = sum(x)/C,  var = sum((x-mean)^2)/C  (biased, as torch),
 *   rstd = 1/sqrt(var + 1e-5),  out = (x - mean) * rstd * w + b.
 * The row is read three times; after the first it comes from L1/L2. The passes over a row
 * are llm__cu_ln_row, shared with the fused residual + layernorm below. */
template <class S>
static __device__ void llm__cu_ln_row(S *o, float *mean, float *rstd, const S *x, const float *w, const float *b,
                                      int n, int C, int lane) {
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += llm__cu_ld(x, c);
    float m = llm__cu_warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = llm__cu_ld(x, c) - m; v += d * d; }
    float r = 1.0f / sqrtf(llm__cu_warp_sum(v) / C + 1e-5f);
    for (int c = lane; c < C; c += 32) llm__cu_st(o, c, (llm__cu_ld(x, c) - m) * r * w[c] + b[c]);
    if (lane == 0) {
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
    }
}
template <class S>
static __global__ void llm__cu_layernorm_fwd_k(S *out, float *mean, float *rstd, const S *inp, const float *w,
                                               const float *b, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    llm__cu_ln_row(out + (size_t)n * C, mean, rstd, inp + (size_t)n * C, w, b, n, C, lane);
}
/* Residual add and layernorm in one pass (the GPT-2 block's res2 = res + attn, then ln2):
 *   res = a + b,  out = layernorm(res)
 * The sum is stored first, rounded to S, and the norm reads it back (each lane its own
 * elements: no barrier), so the result is bit for bit the two separate ops': it only
 * saves the separate kernel's reading res from memory, and a launch. */
template <class S>
static __global__ void llm__cu_residual_layernorm_fwd_k(S *res, S *out, float *mean, float *rstd, const S *a,
                                                        const S *b, const float *w, const float *bias, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    size_t row = (size_t)n * C;
    for (int c = lane; c < C; c += 32) llm__cu_st(res, row + c, llm__cu_ld(a, row + c) + llm__cu_ld(b, row + c));
    llm__cu_ln_row(out + row, mean, rstd, res + row, w, bias, n, C, lane);
}
/* With xhat = (x - mean) * rstd and g = w * dout (the gradient w.r.t. xhat):
 *   dinp += rstd * (g - mean(g) - xhat * mean(g * xhat))          one warp per row
 *   dw += sum_n dout * xhat,   db += sum_n dout                    column sums
 * dout and x are activations (S); dinp, the residual stream's gradient, is fp32. */
template <class S>
static __global__ void llm__cu_layernorm_bwd_k(float *dinp, const S *dout, const S *inp, const float *w,
                                               const float *mean, const float *rstd, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const S *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float m = mean[n], r = rstd[n];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = w[c] * llm__cu_ld(dy, c);
        sg += g;
        sgx += g * (llm__cu_ld(x, c) - m) * r;
    }
    sg = llm__cu_warp_sum(sg) / C;
    sgx = llm__cu_warp_sum(sgx) / C;
    float *dx = dinp + (size_t)n * C;
    for (int c = lane; c < C; c += 32) {
        float g = w[c] * llm__cu_ld(dy, c), xhat = (llm__cu_ld(x, c) - m) * r;
        dx[c] += r * (g - sg - xhat * sgx);
    }
}

/* Rows per block of the warp-per-row kernels, and their grid. */
#define LLM__CU_ROWS (LLM__CU_THREADS / 32)
static unsigned llm__cu_row_blocks(int N) { return (unsigned)((N + LLM__CU_ROWS - 1) / LLM__CU_ROWS); }

static void llm__cu_layernorm_fwd(void *p, float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "layernorm_fwd", {out, inp}, {mean, rstd, w, b});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, mean, rstd);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_layernorm_fwd_k<S>, llm__cu_row_blocks(N), LLM__CU_THREADS, 0,
                                    st->stream)((S *)out, mean, rstd, (const S *)inp, w, b, N, C));
    llm__cu_launched(st, "layernorm_fwd", "N=%d C=%d", N, C);
}

static void llm__cu_residual_layernorm_fwd(void *p, float *res, float *out, float *mean, float *rstd,
                                           const float *a, const float *b, const float *w, const float *bias,
                                           int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "residual_layernorm_fwd", {res, out, a, b}, {mean, rstd, w, bias});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, res, out, mean);
    llm__cu_touch(st, rstd);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_residual_layernorm_fwd_k<S>, llm__cu_row_blocks(N), LLM__CU_THREADS,
                                    0, st->stream)((S *)res, (S *)out, mean, rstd, (const S *)a, (const S *)b, w,
                                                   bias, N, C));
    llm__cu_launched(st, "residual_layernorm_fwd", "N=%d C=%d", N, C);
}

static void llm__cu_layernorm_bwd(void *p, float *dinp, float *dw, float *db, const float *dout,
                                  const float *inp, const float *w, const float *mean,
                                  const float *rstd, int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "layernorm_bwd", {dout, inp}, {dinp, dw, db, w, mean, rstd});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, dinp, dw, db);
    if (dinp) {
        LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_layernorm_bwd_k<S>, llm__cu_row_blocks(N), LLM__CU_THREADS, 0,
                                        st->stream)(dinp, (const S *)dout, (const S *)inp, w, mean, rstd, N, C));
        llm__cu_launched(st, "layernorm_bwd", "N=%d C=%d", N, C);
    }
    llm__cu_colsums(st, LLM__CU_COL_LN, db, dw, s, dout, inp, mean, rstd, N, C);
}

//==== RMSNORM ==========================================================================
/* RMSNorm (Llama), one warp per row x (C):
 *   r = 1/sqrt(mean(x^2) + eps),   out = w * (r * x);   rstd[n] = r saved for backward.
 * PyTorch: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w. */
template <class S>
static __global__ void llm__cu_rmsnorm_fwd_k(S *out, float *rstd, const S *inp, const float *w, int N, int C,
                                             float eps) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const S *x = inp + (size_t)n * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) { float v = llm__cu_ld(x, c); ss += v * v; }
    float r = 1.0f / sqrtf(llm__cu_warp_sum(ss) / C + eps);
    S *o = out + (size_t)n * C;
    for (int c = lane; c < C; c += 32) llm__cu_st(o, c, w[c] * (r * llm__cu_ld(x, c)));
    if (lane == 0 && rstd) rstd[n] = r;
}
/* With g = dout * w (the gradient w.r.t. x*r):
 *   dinp += r * (g - x * r^2 * mean(g * x))      one warp per row (dinp fp32, as layernorm's)
 *   dw += sum_n dout * x * r                     column sums */
template <class S>
static __global__ void llm__cu_rmsnorm_bwd_k(float *dinp, const S *dout, const S *inp, const float *w,
                                             const float *rstd, int N, int C) {
    int lane = threadIdx.x % 32;
    int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const S *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
    float r = rstd[n], gx = 0.0f;
    for (int c = lane; c < C; c += 32) gx += llm__cu_ld(dy, c) * w[c] * llm__cu_ld(x, c);
    gx = llm__cu_warp_sum(gx) / C;
    float *dx = dinp + (size_t)n * C;
    for (int c = lane; c < C; c += 32)
        dx[c] += r * (llm__cu_ld(dy, c) * w[c] - llm__cu_ld(x, c) * r * r * gx);
}

static void llm__cu_rmsnorm_fwd(void *p, float *out, float *rstd, const float *inp, const float *w,
                                int N, int C, float eps) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "rmsnorm_fwd", {out, inp}, {rstd, w});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, rstd, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_rmsnorm_fwd_k<S>, llm__cu_row_blocks(N), LLM__CU_THREADS, 0,
                                    st->stream)((S *)out, rstd, (const S *)inp, w, N, C, eps));
    llm__cu_launched(st, "rmsnorm_fwd", "N=%d C=%d", N, C);
}

static void llm__cu_rmsnorm_bwd(void *p, float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, const float *rstd, int N, int C) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0) return;
    int s = llm__cu_io(st, "rmsnorm_bwd", {dout, inp}, {dinp, dw, w, rstd});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, dinp, dw, NULL);
    if (dinp) {
        LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_rmsnorm_bwd_k<S>, llm__cu_row_blocks(N), LLM__CU_THREADS, 0,
                                        st->stream)(dinp, (const S *)dout, (const S *)inp, w, rstd, N, C));
        llm__cu_launched(st, "rmsnorm_bwd", "N=%d C=%d", N, C);
    }
    llm__cu_colsums(st, LLM__CU_COL_RMS, NULL, dw, s, dout, inp, NULL, rstd, N, C);
}

//==== MATMUL ===========================================================================
/* cuBLAS is column-major. A row-major (R,K) matrix is the column-major (K,R) matrix with
 * the same bytes, so each row-major product is computed as its transpose:
 *   out = inp @ w^T        (N,OC)   <=>  out^T  = w  . inp^T   : gemm(T, N, OC, N, C)
 *   dinp += dout @ w       (N,C)    <=>  dinp^T = w^T . dout^T : gemm(N, N, C, N, OC)
 *   dw += dout^T @ inp     (OC,C)   <=>  dw^T   = inp^T . dout : gemm(N, T, C, OC, N)
 * where a column-major operand named by its row-major name means that buffer as is.
 *
 * 16-bit modes, the fast ones: both operands of every product are 16-bit floats, tensor
 * cores multiply them and accumulate in fp32; the output is stored in its tensor's type
 * (16-bit activations, or fp32: logits, weight gradients, a caller's fp32 buffers).
 *   bf16 (llm_options.bf16, llm_cuda_backend_bf16; sm_80+): 8 significant bits (unit
 *        roundoff u = 2^-8) and fp32's exponent range;
 *   fp16 (llm_options.fp16, llm_cuda_backend_fp16; sm_70+): 11 significant bits (u = 2^-11),
 *        normal from 2^-14 ~ 6.1e-5 to 65504, subnormal down to 2^-24 ~ 6e-8. Output
 *        gradients are that small or smaller: training scales the loss (llm_loss_scaler).
 * Both round fp32 to nearest even. The fp32 weights stay the master copy that AdamW
 * updates; weight gradients and moments stay fp32.
 *  - Weights: rounding a weight on every call would cost more than the product itself
 *    when decoding one token (read 4 + write 2 + read 2 bytes per weight, against 4 for
 *    the fp32 product). So an allocation that a matmul has used as a weight (or bias) gets
 *    a persistent 16-bit copy: AdamW writes the master and the copy in one pass; upload,
 *    zero, copy or an op writing into the allocation mark the copy stale, and the next
 *    matmul rounds the whole allocation again (one pass).
 *  - Activations in activation storage are operands as they are: the product reads and
 *    writes them directly. An fp32 operand (the residual stream's gradient, dlogits, a
 *    caller's fp32 buffer) is rounded per call into an operand buffer (once per
 *    matmul_bwd for dout, which both products read).
 * In every mode, forward products with a bias go through cuBLASLt, whose epilogue adds the
 * bias (and in the 16-bit modes, for the MLP's up-projection, applies GELU: see GELU) while
 * the tile is still in registers, instead of another pass over the output; the bias has the
 * output's type (cuBLASLt's default), so a 16-bit output takes the bias's 16-bit copy. If
 * cuBLASLt declines a kind of product, the backend falls back, for good, to
 * cublasSgemm/GemmEx and the kernels. */

/* The cuBLAS / cuBLASLt type of storage type s (LLM__CU_FP32, _BF16, _FP16). */
static cudaDataType_t llm__cu_dtype_of(int s) {
    return s == LLM__CU_FP16 ? CUDA_R_16F : s == LLM__CU_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}
/* The mode's operand type. */
static cudaDataType_t llm__cu_dtype(const llm__cu *st) { return llm__cu_dtype_of(st->prec); }

template <class H> static __global__ void llm__cu_round_k(H *dst, const float *src, size_t n) {
    LLM__CU_FOR(i, n) dst[i] = llm__cu_type<H>::round(src[i]);
}
/* dst (n values of the mode's 16-bit type) = src (n floats) rounded; `what` names it in
 * the profile (a string literal per mode). */
static void llm__cu_round16(llm__cu *st, void *dst, const float *src, size_t n, const char *what_bf16,
                            const char *what_fp16) {
    if (st->prec == LLM__CU_FP16)
        LLM__CU_LAUNCH(llm__cu_round_k<__half>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
            (__half *)dst, src, n);
    else
        LLM__CU_LAUNCH(llm__cu_round_k<__nv_bfloat16>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
            (__nv_bfloat16 *)dst, src, n);
    llm__cu_launched(st, st->prec == LLM__CU_FP16 ? what_fp16 : what_bf16, "n=%zu", n);
}
enum { LLM__CU_ACT = 0, LLM__CU_WEIGHT = 1, LLM__CU_GRAD = 2, LLM__CU_BIAS = 3 };   /* operand buffers */
/* The 16-bit copy of n floats of src, in operand buffer `slot`. A buffer grows on first
 * need; cudaFree of the old one waits for queued work that may still read it. */
static const void *llm__cu_half(llm__cu *st, int slot, const float *src, size_t n) {
    if (n > st->half_cap[slot]) {
        (void)cudaFree(st->half[slot]);
        st->half[slot] = NULL;
        st->half_cap[slot] = 0;
        if (!LLM__CUDA(st, cudaMalloc(&st->half[slot], n * 2), "%s operand buffer of %zu bytes",
                       llm__cu_prec_name(st->prec), n * 2))
            return NULL;
        st->half_cap[slot] = n;
    }
    llm__cu_round16(st, st->half[slot], src, n, "to_bf16", "to_fp16");
    return st->status == LLM_OK ? st->half[slot] : NULL;
}
/* An activation operand x (n elements) as a 16-bit matrix: itself when it lies in
 * activation storage, else its copy rounded into operand buffer `slot`. */
static const void *llm__cu_operand(llm__cu *st, int slot, const float *x, size_t n) {
    return llm__cu_stype(st, x) != LLM__CU_FP32 ? (const void *)x : llm__cu_half(st, slot, x, n);
}
/* The 16-bit copy of the weight w (n floats): its allocation's persistent copy, made or
 * refreshed here when missing or stale (`slot`: where a weight outside our allocations is
 * rounded instead; a weight in activation storage is 16-bit already). */
static const void *llm__cu_weight16(llm__cu *st, const float *w, size_t n, int slot = LLM__CU_WEIGHT) {
    llm__cu_block *b = llm__cu_block_of(st, w);
    if (b && b->act) return w;
    size_t nf = b ? b->bytes / sizeof(float) : 0;
    if (nf == 0) return llm__cu_half(st, slot, w, n);  /* not from our alloc */
    if (!b->shadow) {
        if (!LLM__CUDA(st, cudaMalloc(&b->shadow, nf * 2), "%s copy (%zu bytes) of a %zu-byte weight allocation",
                       llm__cu_prec_name(st->prec), nf * 2, b->bytes)) {
            b->shadow = NULL;
            return NULL;
        }
        b->fresh = 0;
    }
    if (!b->fresh) {
        llm__cu_round16(st, b->shadow, (const float *)b->base, nf, "to_bf16 (weights)", "to_fp16 (weights)");
        if (st->status != LLM_OK) return NULL;
        b->fresh = 1;
    }
    return (const char *)b->shadow + ((const char *)w - b->base) / 2;
}

/* Column-major C(m,n) = op(A) op(B) + beta C (alpha 1): fp32 (TF32 off), or A and B of
 * the mode's 16-bit type with fp32 accumulation, C of type ct (fp32 or the mode's type).
 * Both return false after recording a failure, whose message names `op` (e.g.
 * "matmul_bwd dw") and the column-major shape. */
#define LLM__CU_GEMM_WHAT "%s: column-major C(%d,%d) = op(A) op(B), k=%d"
static bool llm__cu_sgemm(llm__cu *st, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                          const float *A, int lda, const float *B, int ldb, float beta, float *Cm,
                          int ldc, const char *op) {
    const float one = 1.0f;
    bool ok = LLM__BLAS(st, cublasSgemm(st->blas, ta, tb, m, n, k, &one, A, lda, B, ldb, &beta, Cm, ldc),
                        LLM__CU_GEMM_WHAT, op, m, n, k);
    llm__cu_mark(st, "matmul: cublasSgemm");
    return ok;
}
static bool llm__cu_gemm16(llm__cu *st, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const void *A, int lda, const void *B, int ldb, float beta, void *Cm,
                           cudaDataType_t ct, int ldc, const char *op) {
    const float one = 1.0f;
    if (!A || !B) return false;  /* the 16-bit copy failed (recorded) */
    cudaDataType_t t = llm__cu_dtype(st);
    bool ok = LLM__BLAS(st, cublasGemmEx(st->blas, ta, tb, m, n, k, &one, A, t, lda, B, t, ldb, &beta, Cm,
                                         ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        LLM__CU_GEMM_WHAT " (%s)", op, m, n, k, llm__cu_prec_name(st->prec));
    llm__cu_mark(st, st->prec == LLM__CU_FP16 ? "matmul: cublasGemmEx fp16" : "matmul: cublasGemmEx bf16");
    return ok;
}

/* The largest power of two (<= 256) dividing a pointer: cuBLASLt must be told how aligned
 * the operands are, or it may pick a kernel that assumes 16 bytes. */
static uint32_t llm__cu_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
    return a;
}
/* Forward product with a fused epilogue through cuBLASLt, column-major, alpha 1, A and B
 * both ab_type (bf16, fp16, or fp32 with fp32 math: no TF32), D (and bias, aux) d_type:
 *   D(m,n) = op(A) op(B) + bias[row]                         (aux NULL)
 *   aux = op(A) op(B) + bias[row],   D = gelu(aux)           (aux (m,n), leading dim ldd)
 * Returns 1 when queued, 0 when cuBLASLt declined (nothing written or recorded; the
 * caller takes the plain path, and so does every later call). */
static int llm__cu_lt(llm__cu *st, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      cudaDataType_t ab_type, const void *A, int lda, const void *B, int ldb, cudaDataType_t d_type,
                      void *D, int ldd, const void *bias, void *aux) {
    int kind = 1 << ((aux ? 1 : 0) + (ab_type == CUDA_R_16BF ? 2 : ab_type == CUDA_R_16F ? 4 : 0) +
                     (d_type != CUDA_R_32F ? 6 : 0));
    if (!st->lt || (st->lt_off & kind) || !bias) return 0;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ldl = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    memset(&heur, 0, sizeof heur);
    int found = 0;
    int32_t opa = ta, opb = tb;
    cublasLtEpilogue_t epi = aux ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_BIAS;
    int64_t aux_ld = ldd;
    uint64_t ws = st->lt_ws_bytes;
    uint32_t al_a = llm__cu_align(A), al_b = llm__cu_align(B), al_d = llm__cu_align(D);
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t e = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
#define LLM__CU_LT_SET(call) if (e == CUBLAS_STATUS_SUCCESS) e = (call)
    LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux) {
        LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux,
                                                      sizeof aux));
        LLM__CU_LT_SET(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld,
                                                      sizeof aux_ld));
    }
    /* layouts of the stored matrices: op(A) is (m,k), so A is (m,k) untransposed, (k,m) transposed */
    LLM__CU_LT_SET(cublasLtMatrixLayoutCreate(&la, ab_type, ta == CUBLAS_OP_N ? m : k,
                                              ta == CUBLAS_OP_N ? k : m, lda));
    LLM__CU_LT_SET(cublasLtMatrixLayoutCreate(&lb, ab_type, tb == CUBLAS_OP_N ? k : n,
                                              tb == CUBLAS_OP_N ? n : k, ldb));
    LLM__CU_LT_SET(cublasLtMatrixLayoutCreate(&ldl, d_type, m, n, ldd));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceCreate(&pref));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                        sizeof ws));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                        sizeof al_a));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                        sizeof al_b));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                        sizeof al_d));
    LLM__CU_LT_SET(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                        sizeof al_d));
    /* The heuristic query costs tens of microseconds, as much as a small product: a model
     * asks about the same dozen problems every step, so the answers are remembered. */
    int64_t key[12] = {ta, tb, m, n, k, lda, ldb, ldd, ((int64_t)epi * 64 + ab_type) * 64 + d_type, al_a, al_b, al_d};
    int hit = -1;
    int nc = st->lt_n < LLM__CU_LT_CACHE ? st->lt_n : LLM__CU_LT_CACHE;
    for (int i = 0; i < nc && hit < 0; i++)
        if (memcmp(st->lt_algo[i].key, key, sizeof key) == 0) hit = i;
    if (hit >= 0) {
        heur.algo = st->lt_algo[hit].algo;
        found = 1;
    } else {
        LLM__CU_LT_SET(cublasLtMatmulAlgoGetHeuristic(st->lt, desc, la, lb, ldl, ldl, pref, 1, &heur, &found));
        if (e == CUBLAS_STATUS_SUCCESS && found > 0) {
            int slot = st->lt_n++ % LLM__CU_LT_CACHE;
            memcpy(st->lt_algo[slot].key, key, sizeof key);
            st->lt_algo[slot].algo = heur.algo;
        }
    }
    if (e == CUBLAS_STATUS_SUCCESS && found > 0)
        e = cublasLtMatmul(st->lt, desc, &one, A, la, B, lb, &zero, D, ldl, D, ldl, &heur.algo, st->lt_ws,
                           st->lt_ws_bytes, st->stream);
#undef LLM__CU_LT_SET
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ldl) cublasLtMatrixLayoutDestroy(ldl);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (e != CUBLAS_STATUS_SUCCESS || found <= 0) {
        (void)cudaGetLastError();
        st->lt_off |= kind;
        return 0;
    }
    llm__cu_mark(st, aux ? "matmul: cublasLt +bias +gelu" : "matmul: cublasLt +bias");
    return 1;
}

/* out[n, oc] += bias[oc] */
template <class S> static __global__ void llm__cu_add_bias_k(S *out, const float *bias, size_t N, int OC) {
    LLM__CU_FOR(i, N * OC) llm__cu_st(out, i, llm__cu_ld(out, i) + bias[i % OC]);
}

/* The forward product behind matmul_fwd and matmul_gelu_fwd: out (N,OC) = inp (N,C) @
 * w(OC,C)^T + bias, out of storage type so (gelu_out, when given, too). With gelu_out,
 * cuBLASLt may also write gelu_out = gelu(out) in its epilogue: returns 1 if it did (the
 * caller applies GELU otherwise), 0 if not, -1 after a recorded failure. */
static int llm__cu_product(llm__cu *st, float *out, float *gelu_out, int so, const float *inp, const float *w,
                           const float *bias, int N, int C, int OC, const char *op) {
    llm__cu_touch(st, out);
    llm__cu_touch(st, gelu_out);
    size_t esize = so == LLM__CU_FP32 ? sizeof(float) : 2;
    if (C <= 0) {  /* empty sum: out = bias (or 0) */
        if (!LLM__CUDA(st, cudaMemsetAsync(out, 0, (size_t)N * OC * esize, st->stream), "%s: out(%d,%d)",
                       op, N, OC))
            return -1;
    } else if (!st->prec) {
        /* bias only: cuBLASLt's GELU may evaluate tanh approximately, and this is the exact mode */
        if (llm__cu_lt(st, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, CUDA_R_32F, w, C, inp, C, CUDA_R_32F, out, OC, bias,
                       NULL))
            return 0;
        if (!llm__cu_sgemm(st, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, inp, C, 0.0f, out, OC, op)) return -1;
    } else {
        const void *w16 = llm__cu_weight16(st, w, (size_t)OC * C);
        const void *x16 = w16 ? llm__cu_operand(st, LLM__CU_ACT, inp, (size_t)N * C) : NULL;
        /* the bias in the output's type: the fp32 bias, or its 16-bit copy */
        const void *b = so == LLM__CU_FP32 || !bias ? (const void *)bias : llm__cu_weight16(st, bias, OC, LLM__CU_BIAS);
        if (!x16 || (bias && !b)) return -1;
        /* with GELU, the epilogue writes the activation to D and the pre-activation to aux */
        if (llm__cu_lt(st, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, llm__cu_dtype(st), w16, C, x16, C,
                       llm__cu_dtype_of(so), gelu_out ? gelu_out : out, OC, b, gelu_out ? out : NULL))
            return gelu_out ? 1 : 0;
        if (!llm__cu_gemm16(st, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w16, C, x16, C, 0.0f, out, llm__cu_dtype_of(so),
                            OC, op))
            return -1;
    }
    if (bias) {
        size_t n = (size_t)N * OC;
        LLM__CU_TYPED(so, LLM__CU_LAUNCH(llm__cu_add_bias_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
            (S *)out, bias, (size_t)N, OC));
        llm__cu_launched(st, "matmul (bias)", "N=%d OC=%d", N, OC);
    }
    return st->status == LLM_OK ? 0 : -1;
}

static void llm__cu_matmul_fwd(void *p, float *out, const float *inp, const float *w,
                               const float *bias, int N, int C, int OC) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || OC <= 0 || llm__cu_io(st, "matmul_fwd", {}, {bias}) < 0) return;
    llm__cu_product(st, out, NULL, llm__cu_stype(st, out), inp, w, bias, N, C, OC, "matmul_fwd");
}

/* Gradients: dinp (any storage) += dout @ w, dw (fp32) += dout^T @ inp, dbias (fp32) +=
 * column sums of dout, whatever the storage of dout and inp. */
static void llm__cu_matmul_bwd(void *p, float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int N, int C, int OC) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || C <= 0 || OC <= 0) return;
    if (llm__cu_io(st, "matmul_bwd", {}, {dw, dbias}) < 0) return;
    LLM__CU_TOUCH3(st, dinp, dw, dbias);
    const char *what_in = "matmul_bwd dinp += dout @ w", *what_w = "matmul_bwd dw += dout^T @ inp";
    size_t nd = (size_t)N * OC;
    if (!st->prec) {
        if (dinp && !llm__cu_sgemm(st, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, w, C, dout, OC, 1.0f, dinp, C, what_in))
            return;
        if (dw && !llm__cu_sgemm(st, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, inp, C, dout, OC, 1.0f, dw, C, what_w))
            return;
    } else if (dinp || dw) {
        const void *g16 = llm__cu_operand(st, LLM__CU_GRAD, dout, nd);  /* rounded (if fp32) once, used twice */
        if (!g16) return;
        if (dinp && !llm__cu_gemm16(st, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, llm__cu_weight16(st, w, (size_t)OC * C),
                                    C, g16, OC, 1.0f, dinp, llm__cu_dtype_of(llm__cu_stype(st, dinp)), C, what_in))
            return;
        if (dw && !llm__cu_gemm16(st, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N,
                                  llm__cu_operand(st, LLM__CU_ACT, inp, (size_t)N * C), C, g16, OC, 1.0f, dw,
                                  CUDA_R_32F, C, what_w))
            return;
    }
    llm__cu_colsums(st, LLM__CU_COL_BIAS, dbias, NULL, llm__cu_stype(st, dout), dout, NULL, NULL, NULL, N, OC);
}

//==== ROPE =============================================================================
/* Rotary position embedding, in place on the q and k heads of each qkv row
 * ((NH+2NKV)*HS: the NH query heads, then the NKV key heads, then values, untouched).
 * Within a head the pair (x[2i], x[2i+1]) turns by the angle pos * freq_i,
 *   freq_i = 1 / theta^(2i/HS),  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos);
 * backward turns the gradient by -angle (a rotation's transpose is its inverse).
 * llama2.c's interleaved-pair convention. The frequencies are computed on the host with
 * the same powf expression as the CPU backend and passed by value, so they are the same
 * floats; the angle p * freq_i is one float multiply on both sides. One thread per pair. */
typedef struct { float f[LLM__CU_ROPE_PAIRS]; } llm__cu_freqs;

template <class S>
static __global__ void llm__cu_rope_k(S *qkv, const int *pos, llm__cu_freqs fr, size_t BT, int T, int NH, int NKV,
                                      int HS, float sign) {
    int half = HS / 2;
    size_t per_row = (size_t)(NH + NKV) * half, row = (size_t)(NH + 2 * NKV) * HS;
    LLM__CU_FOR(e, BT * per_row) {
        size_t bt = e / per_row;
        int r = (int)(e % per_row), head = r / half, i = r % half;
        int p = pos ? pos[bt] : (int)(bt % T);
        float val = (float)p * fr.f[i];
        float c = cosf(val), s = sign * sinf(val);
        S *v = qkv + bt * row + (size_t)head * HS + 2 * i;
        float x0 = llm__cu_ld(v, 0), x1 = llm__cu_ld(v, 1);
        llm__cu_st(v, 0, x0 * c - x1 * s);
        llm__cu_st(v, 1, x0 * s + x1 * c);
    }
}

static void llm__cu_rope(llm__cu *st, const char *op, float *qkv, const int *pos, int B, int T,
                         int NH, int NKV, int HS, float theta, float sign) {
    if (!llm__cu_enter(st) || B <= 0 || T <= 0) return;
    int s = llm__cu_io(st, op, {qkv}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, qkv, NULL, NULL);
    if (HS <= 0 || HS % 2 != 0 || HS / 2 > LLM__CU_ROPE_PAIRS || NH <= 0 || NKV <= 0) {
        llm__cu_fail(st, LLM_ERR_UNSUPPORTED, "CUDA %s: head size %d must be even and <= %d (NH=%d NKV=%d)",
                     op, HS, 2 * LLM__CU_ROPE_PAIRS, NH, NKV);
        return;
    }
    llm__cu_freqs fr;
    memset(&fr, 0, sizeof fr);
    for (int i = 0; i < HS; i += 2) fr.f[i / 2] = 1.0f / powf(theta, (float)i / (float)HS);
    size_t n = (size_t)B * T * (NH + NKV) * (HS / 2);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_rope_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)qkv, pos, fr, (size_t)B * T, T, NH, NKV, HS, sign));
    llm__cu_launched(st, op, "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
}
static void llm__cu_rope_fwd(void *p, float *qkv, const int *pos, int B, int T, int NH, int NKV,
                             int HS, float theta) {
    llm__cu_rope((llm__cu *)p, "rope_fwd", qkv, pos, B, T, NH, NKV, HS, theta, 1.0f);
}
static void llm__cu_rope_bwd(void *p, float *dqkv, const int *pos, int B, int T, int NH, int NKV,
                             int HS, float theta) {
    llm__cu_rope((llm__cu *)p, "rope_bwd", dqkv, pos, B, T, NH, NKV, HS, theta, -1.0f);
}

//==== ATTENTION ========================================================================
/* Causal self-attention with grouped-query heads. A qkv row ((NH+2NKV)*HS) holds
 * [q (NH*HS) | k (NKV*HS) | v (NKV*HS)]; query head h reads key/value head g = h/(NH/NKV)
 * (GPT-2: NKV = NH, g = h). With q_i, k_j, v_j those heads' slices of rows i, j of one
 * sequence b and scale = 1/sqrt(HS):
 *   s_ij = scale * q_i . k_j   (j <= i),   P_ij = exp(s_ij - lse_i),
 *   lse_i = log sum_{j<=i} exp(s_ij),      out_i = sum_j P_ij v_j     (out row: NH*HS).
 * Forward (flash-attention): a block takes LLM__CU_ATT_WARPS query rows, one warp each,
 * and walks the keys in tiles of 32 staged in shared memory (shared by the warps). Lane l
 * scores key j0+l; the warp keeps the running max m, the running sum l = sum exp(s - m)
 * and the unnormalised output o (lane owns dims lane, lane+32, ...); a new tile with
 * max m' rescales them by exp(m - m'). At the end out = o / l, lse = m + log(l).
 * Shared memory: K and V tiles (32, HS+1) (padded: lane l reads row l without bank
 * conflicts) and the warps' q rows (WARPS, HS). */
#define LLM__CU_R (LLM__CU_HS_MAX / 32)   /* head dims per lane */

/* Where head h of a sequence b starts, for the qkv layout above. */
struct llm__cu_att {
    int T, NH, NKV, HS;
    size_t row;   /* (NH+2NKV)*HS: qkv row stride */
    size_t Cq;    /* NH*HS: out / dout row stride, and the offset of k in a qkv row */
    template <class S> __device__ const S *q(const S *qkv, int b, int h) const { return qkv + (size_t)b * T * row + (size_t)h * HS; }
    template <class S> __device__ const S *k(const S *qkv, int b, int g) const { return qkv + (size_t)b * T * row + Cq + (size_t)g * HS; }
    template <class S> __device__ const S *v(const S *qkv, int b, int g) const { return k(qkv, b, g) + (size_t)NKV * HS; }
    __device__ size_t o(int b, int h) const { return (size_t)b * T * Cq + (size_t)h * HS; }  /* in out/dout */
};
static llm__cu_att llm__cu_att_make(int T, int NH, int NKV, int HS) {
    llm__cu_att a;
    a.T = T; a.NH = NH; a.NKV = NKV; a.HS = HS;
    a.row = (size_t)(NH + 2 * NKV) * HS;
    a.Cq = (size_t)NH * HS;
    return a;
}

template <class S>
static __global__ void llm__cu_attention_fwd_k(S *out, float *lse, const S *qkv, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    int HS = A.HS, T = A.T, ld = HS + 1;
    float *Ks = sm, *Vs = Ks + 32 * ld, *Qs = Vs + 32 * ld;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / A.NH, h = blockIdx.y % A.NH, g = h / (A.NH / A.NKV);
    int q0 = blockIdx.x * LLM__CU_ATT_WARPS, i = q0 + warp;
    const S *qb = A.q(qkv, b, h), *kb = A.k(qkv, b, g), *vb = A.v(qkv, b, g);
    bool active = i < T;
    float *q = Qs + warp * HS;
    if (active)
        for (int d = lane; d < HS; d += 32) q[d] = llm__cu_ld(qb, i * A.row + d);
    float o[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) o[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    int last = min(q0 + LLM__CU_ATT_WARPS, T) - 1;  /* keys 0..last serve this block */
    for (int j0 = 0; j0 <= last; j0 += 32) {
        __syncthreads();  /* the previous tile is consumed; q is visible */
        for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r * ld + d] = j <= last ? llm__cu_ld(kb, j * A.row + d) : 0.0f;
            Vs[r * ld + d] = j <= last ? llm__cu_ld(vb, j * A.row + d) : 0.0f;
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
    S *y = out + A.o(b, h) + (size_t)i * A.Cq;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) llm__cu_st(y, d, o[r] / l);
    }
    if (lane == 0) lse[((size_t)b * A.NH + h) * T + i] = m + logf(l);
}

/* Backward, with dO_i = dout row i of head h and D_i = dO_i . out_i (= sum_j P_ij dP_ij):
 *   dP_ij = dO_i . v_j,   dS_ij = P_ij (dP_ij - D_i)            (softmax backward)
 *   dq_i += scale sum_j dS_ij k_j,   dk_j += scale sum_{h in group, i} dS_ij q_i,
 *   dv_j += sum_{h in group, i} P_ij dO_i
 * Two kernels, so that every gradient element has one owner (no atomics, deterministic):
 * dq walks keys for each query row (like the forward, one block per (b, h)), dk/dv walk
 * the queries of every head of the group for each key (one block per (b, g)). */
template <class S>
static __global__ void llm__cu_attention_bwd_dq_k(S *dqkv, const S *dout, const S *qkv, const S *out,
                                                  const float *lse, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    int HS = A.HS, T = A.T, ld = HS + 1;
    float *Ks = sm, *Vs = Ks + 32 * ld, *Qs = Vs + 32 * ld, *dOs = Qs + LLM__CU_ATT_WARPS * HS;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / A.NH, h = blockIdx.y % A.NH, g = h / (A.NH / A.NKV);
    int q0 = blockIdx.x * LLM__CU_ATT_WARPS, i = q0 + warp;
    const S *qb = A.q(qkv, b, h), *kb = A.k(qkv, b, g), *vb = A.v(qkv, b, g);
    size_t orow = A.o(b, h) + (size_t)i * A.Cq;  /* row i of head h in out/dout */
    bool active = i < T;
    float *q = Qs + warp * HS, *dO = dOs + warp * HS;
    float D = 0.0f, L = 0.0f;
    if (active) {
        for (int d = lane; d < HS; d += 32) {
            q[d] = llm__cu_ld(qb, i * A.row + d);
            dO[d] = llm__cu_ld(dout, orow + d);
            D += dO[d] * llm__cu_ld(out, orow + d);
        }
        D = llm__cu_warp_sum(D);
        L = lse[((size_t)b * A.NH + h) * T + i];
    }
    float dq[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) dq[r] = 0.0f;
    int last = min(q0 + LLM__CU_ATT_WARPS, T) - 1;
    for (int j0 = 0; j0 <= last; j0 += 32) {
        __syncthreads();
        for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
            int r = e / HS, d = e % HS, j = j0 + r;
            Ks[r * ld + d] = j <= last ? llm__cu_ld(kb, j * A.row + d) : 0.0f;
            Vs[r * ld + d] = j <= last ? llm__cu_ld(vb, j * A.row + d) : 0.0f;
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
    S *gq = dqkv + ((size_t)b * T + i) * A.row + (size_t)h * HS;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) llm__cu_st(gq, d, llm__cu_ld(gq, d) + scale * dq[r]);
    }
}

/* dk, dv: a block takes LLM__CU_ATT_WARPS key rows j of kv head g (one warp each); for each
 * query head h of the group it walks the query tiles i0 = k0, k0+32, ... (queries before
 * the block's first key k0 never see it), staging q_i, dO_i, lse_i and D_i of 32 queries
 * in shared memory; lane l takes query i0+l. The sums over the group's heads stay in
 * registers, so each dk, dv element is written once. Shared: Q and dO tiles (32, HS+1),
 * the warps' k and v rows (WARPS, HS), lse and D (32 each). */
template <class S>
static __global__ void llm__cu_attention_bwd_dkv_k(S *dqkv, const S *dout, const S *qkv, const S *out,
                                                   const float *lse, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    int HS = A.HS, T = A.T, ld = HS + 1, G = A.NH / A.NKV;
    float *Qs = sm, *dOs = Qs + 32 * ld, *Kw = dOs + 32 * ld, *Vw = Kw + LLM__CU_ATT_WARPS * HS;
    float *Ls = Vw + LLM__CU_ATT_WARPS * HS, *Ds = Ls + 32;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int b = blockIdx.y / A.NKV, g = blockIdx.y % A.NKV;
    int k0 = blockIdx.x * LLM__CU_ATT_WARPS, j = k0 + warp;
    const S *kb = A.k(qkv, b, g), *vb = A.v(qkv, b, g);
    bool active = j < T;
    float *k = Kw + warp * HS, *v = Vw + warp * HS;
    if (active)
        for (int d = lane; d < HS; d += 32) {
            k[d] = llm__cu_ld(kb, j * A.row + d);
            v[d] = llm__cu_ld(vb, j * A.row + d);
        }
    float dk[LLM__CU_R], dv[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) { dk[r] = 0.0f; dv[r] = 0.0f; }
    for (int h = g * G; h < (g + 1) * G; h++) {
        const S *qb = A.q(qkv, b, h), *dob = dout + A.o(b, h), *ob = out + A.o(b, h);
        const float *lseb = lse + ((size_t)b * A.NH + h) * T;
        for (int i0 = k0; i0 < T; i0 += 32) {
            __syncthreads();  /* the previous tile is consumed; k, v are visible */
            for (int e = threadIdx.x; e < 32 * HS; e += blockDim.x) {
                int r = e / HS, d = e % HS, i = i0 + r;
                Qs[r * ld + d] = i < T ? llm__cu_ld(qb, i * A.row + d) : 0.0f;
                dOs[r * ld + d] = i < T ? llm__cu_ld(dob, (size_t)i * A.Cq + d) : 0.0f;
            }
            __syncthreads();
            if (threadIdx.x < 32) {  /* D_i = dO_i . out_i for the tile's 32 queries */
                int r = threadIdx.x, i = i0 + r;
                float D = 0.0f;
                if (i < T)
                    for (int d = 0; d < HS; d++) D += dOs[r * ld + d] * llm__cu_ld(ob, (size_t)i * A.Cq + d);
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
    }
    if (!active) return;
    S *gk = dqkv + ((size_t)b * T + j) * A.row + A.Cq + (size_t)g * HS;
    S *gv = gk + (size_t)A.NKV * HS;
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) {
            llm__cu_st(gk, d, llm__cu_ld(gk, d) + scale * dk[r]);
            llm__cu_st(gv, d, llm__cu_ld(gv, d) + dv[r]);
        }
    }
}

/* ---- 16-bit tensor-core attention (bf16 or fp16) ---- */
/* The 16-bit modes run the same math as above on tensor cores (wmma: 16x16x16 tiles,
 * operands of the mode's type H, fp32 accumulation), flash-attention-2 style; one set of
 * kernels, templated on H. The fp32 kernels above do every product on CUDA cores and
 * would take about 3x the time of all of GPT-2's matmuls.
 * Precision: q, k, v and dO are rounded to H (unit roundoff u = 2^-8 for bf16, 2^-11 for
 * fp16) when a tile is staged in shared memory, and so are P and dS before they multiply;
 * every product accumulates in fp32, and everything that feeds an exponential or a
 * division stays fp32: the scores S, the running max m and sum l, lse, D and the
 * accumulators O, dQ, dK, dV. So each output element is a sum of products with relative
 * errors ~2u (about 1e-2 of the typical term in bf16, 1e-3 in fp16), never an error that
 * grows with T (the sums are fp32). fp16's range: P is in [0, 1] (values below 6e-8 flush
 * toward 0, negligible beside the row's largest, 1); q, k, v are activations, far below
 * 65504; dO and dS are gradients, scaled by the loss scale, and one that overflows is inf
 * in the result, which the step's gradient norm sees (the step is skipped).
 * Shapes: a block of W warps (blockDim.x = 32 W) owns 16 W query rows (forward, dq) or
 * key rows (dk, dv), and the forward and dq walk the keys in tiles of BC = 16 W; each warp
 * owns 16 of the rows, so a warp's rows are one wmma tile high. Inside a
 * warp, the lane pair (2r, 2r+1) owns row r for the elementwise work (softmax, scaling),
 * lane parity taking alternate columns; a row's max and sum combine with one shuffle.
 * Shared memory holds the staged 16-bit tiles (row length HS + 8: 16-byte padding spreads the
 * rows over the banks and keeps every 16-row, 16-column tile 32-byte aligned, as wmma
 * needs), and per warp its fp32 score tiles and its fp32 accumulator (O, dQ, or dK and
 * dV). Accumulators live in shared memory, not in fragments, because the online softmax
 * rescales them per row and a fragment's element-to-row map is unspecified. All sizes
 * are multiples of 32 bytes, so every piece carved below stays aligned (the kernels have
 * no static shared memory, so the dynamic array starts at the aligned base). Dynamic
 * shared memory per block (forward, dq, dk/dv), W = 4: HS 64: 70, 96, 89 KiB; HS 128:
 * 110, 144, 145 KiB; W = 2: HS 64: 29, 38, 49 KiB; HS 128: 49, 62, 81 KiB. Above 48 KiB a
 * kernel must opt in (cudaFuncSetAttribute), up to the device's limit (64 KiB on sm_75,
 * 96 KiB on sm_70, 99 KiB on sm_86/sm_89/sm_120, 163 KiB on sm_80, 227 KiB on sm_90).
 * W = 4 (64-row tiles: K and V are read half as often) where it fits, else W = 2 (the
 * T4's 64 KiB at HS 64), else the fp32 kernels for that head size. W = 4 shares a tile of
 * K and V among 4 warps: twice the reuse of W = 2, half the global reads. */
#define LLM__CU_FA_BQ 32                         /* queries per tile (dk, dv) */
/* BC = 16 W = the rows of a query block: every key tile of a query block then starts at or
 * before the block's first row, so each row has an unmasked key in each tile and its
 * running max stays finite. */

/* Shared bytes of each kernel (the carving order in the kernels) with W warps. */
static size_t llm__cu_fa_shmem(int kernel, int HS, int W) {
    size_t h = 2 * (size_t)(HS + 8), o = 4 * (size_t)(HS + 4), ROWS = 16 * (size_t)W, BC = ROWS;
    size_t sc = 4 * (BC + 4), pc = 2 * (BC + 8);
    size_t sq = 4 * (LLM__CU_FA_BQ + 4), pq = 2 * (LLM__CU_FA_BQ + 8);
    switch (kernel) {
    case 0:  /* forward: Q; K, V; per warp S, P, O */
        return (ROWS + 2 * BC) * h + ROWS * (sc + pc + o);
    case 1:  /* dq: Q, dO; K, V; per warp S, dP, dS, dQ */
        return (2 * ROWS + 2 * BC) * h + ROWS * (2 * sc + pc + o);
    default: /* dk, dv: K, V; Q, dO; per warp S^T, dP^T, P^T, dS^T, dK, dV; lse, D */
        return (2 * ROWS + 2 * LLM__CU_FA_BQ) * h + ROWS * (2 * sq + 2 * pq + 2 * o) +
               2 * LLM__CU_FA_BQ * sizeof(float);
    }
}

template <class H>
using llm__cu_fa_a = nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, H, nvcuda::wmma::row_major>;
template <class H>
using llm__cu_fa_b = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, H, nvcuda::wmma::row_major>;
template <class H>
using llm__cu_fa_bt = nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, H, nvcuda::wmma::col_major>;
typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> llm__cu_fa_acc;

/* The next n elements of type T from the shared-memory cursor. */
template <class T> static __device__ T *llm__cu_fa_carve(char *&cur, size_t n) {
    T *p = (T *)cur;
    cur += n * sizeof(T);
    return p;
}
/* The whole block: rows [0, n) of a (rows, HS) slab of storage type S with row stride
 * `stride` into 16-bit shared rows of length ld; rows n.. become zero. fp32 tensors are
 * rounded to nearest even; 16-bit activations (S = H) are copied as they are. */
template <class H, class S>
static __device__ void llm__cu_fa_stage(H *dst, int ld, const S *src, size_t stride, int rows, int n, int HS) {
    for (int e = threadIdx.x; e < rows * HS; e += blockDim.x) {
        int r = e / HS, d = e % HS;
        if constexpr (std::is_same<S, H>::value) dst[r * ld + d] = r < n ? src[(size_t)r * stride + d] : H();
        else dst[r * ld + d] = llm__cu_type<H>::round(r < n ? src[(size_t)r * stride + d] : 0.0f);
    }
}
/* A block-wide (rows, ld) array from the cursor, of which warp w's 16 rows are returned:
 * each warp works on its own slice of scores and accumulators. */
template <class T> static __device__ T *llm__cu_fa_warp_rows(char *&cur, int rows, int ld, int warp) {
    return llm__cu_fa_carve<T>(cur, (size_t)rows * ld) + (size_t)warp * 16 * ld;
}
/* One warp's product of tiles: C (16, N) = A (16, K) op(B), or C += it (ADD), with A
 * row-major 16-bit and C fp32: op(B) = B^T for B (N, K) row-major (BT: B read column-major,
 * so no transpose is ever stored), else B (K, N) row-major. Empty where the pass has no
 * tiles of type H (see llm__cu_has_wmma). */
template <class H, bool BT, bool ADD>
static __device__ void llm__cu_fa_mm(float *C, int ldc, const H *A, int lda, const H *B, int ldb, int N, int K) {
    if constexpr (llm__cu_has_wmma<H>()) {
        typedef typename std::conditional<BT, llm__cu_fa_bt<H>, llm__cu_fa_b<H>>::type frag_b;
        for (int n0 = 0; n0 < N; n0 += 16) {
            llm__cu_fa_acc c;
            if (ADD) nvcuda::wmma::load_matrix_sync(c, C + n0, ldc, nvcuda::wmma::mem_row_major);
            else nvcuda::wmma::fill_fragment(c, 0.0f);
            for (int k0 = 0; k0 < K; k0 += 16) {
                llm__cu_fa_a<H> a;
                frag_b b;
                nvcuda::wmma::load_matrix_sync(a, A + k0, lda);
                nvcuda::wmma::load_matrix_sync(b, BT ? B + (size_t)n0 * ldb + k0 : B + (size_t)k0 * ldb + n0, ldb);
                nvcuda::wmma::mma_sync(c, a, b, c);
            }
            nvcuda::wmma::store_matrix_sync(C + n0, c, ldc, nvcuda::wmma::mem_row_major);
        }
    }
}
/* C (16, N) = A (16, K) B^T, B (N, K); and C (16, N) += A (16, K) B, B (K, N). */
template <class H>
static __device__ void llm__cu_fa_mm_nt(float *C, int ldc, const H *A, int lda, const H *B, int ldb, int N, int K) {
    llm__cu_fa_mm<H, true, false>(C, ldc, A, lda, B, ldb, N, K);
}
template <class H>
static __device__ void llm__cu_fa_mm_nn_add(float *C, int ldc, const H *A, int lda, const H *B, int ldb, int N,
                                            int K) {
    llm__cu_fa_mm<H, false, true>(C, ldc, A, lda, B, ldb, N, K);
}

/* Forward. Block (query block, b*NH + h); warp w owns rows i of q0 + 16w .. +15. For each
 * key tile j0 .. j0+BC-1 (up to the block's last row; later tiles are all masked):
 *   S = scale Q_w K^T               (tensor cores, fp32; stored unscaled in Sc, scaled when read)
 *   m' = max(m, max_j S_ij),  P_ij = exp(S_ij - m') for j <= i, else 0   (rounded to H)
 *   l  = l exp(m - m') + sum_j P_ij,   O = O exp(m - m') + P V   (tensor cores)
 * (the FA2 recurrences: O / l is the softmax-weighted sum of the v rows seen so far, and
 * exp(m - m') moves the old terms to the new max). l sums the rounded P that multiply V,
 * so O / l is exactly a weighted mean of those rows. At the end out = O / l and
 * lse = m + log(l), as the fp32 kernel defines them. */
template <class H, class S>
static __global__ void llm__cu_attention_fwd16_k(S *out, float *lse, const S *qkv, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    const int ROWS = (int)blockDim.x / 32 * 16, BC = ROWS, lds = BC + 4, ldp = BC + 8;   /* 16 W */
    int HS = A.HS, T = A.T, ldh = HS + 8, ldo = HS + 4;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int b = blockIdx.y / A.NH, h = blockIdx.y % A.NH, g = h / (A.NH / A.NKV);
    int q0 = blockIdx.x * ROWS, nq = min(ROWS, T - q0);
    int i = q0 + 16 * warp + r;   /* this lane pair's query row */
    char *cur = (char *)sm;
    H *Qs = llm__cu_fa_carve<H>(cur, (size_t)ROWS * ldh);
    H *Ks = llm__cu_fa_carve<H>(cur, (size_t)BC * ldh);
    H *Vs = llm__cu_fa_carve<H>(cur, (size_t)BC * ldh);
    float *Sc = llm__cu_fa_warp_rows<float>(cur, ROWS, lds, warp);
    H *P = llm__cu_fa_warp_rows<H>(cur, ROWS, ldp, warp);
    float *O = llm__cu_fa_warp_rows<float>(cur, ROWS, ldo, warp);
    const S *kb = A.k(qkv, b, g), *vb = A.v(qkv, b, g);
    llm__cu_fa_stage(Qs, ldh, A.q(qkv, b, h) + (size_t)q0 * A.row, A.row, ROWS, nq, HS);
    for (int d = half; d < HS; d += 2) O[r * ldo + d] = 0.0f;
    float m = -INFINITY, l = 0.0f;   /* row i's running max and sum (both lanes of the pair) */
    int last = q0 + nq - 1;          /* keys 0..last serve this block */
    for (int j0 = 0; j0 <= last; j0 += BC) {
        __syncthreads();  /* the previous tile is consumed; Q is staged */
        llm__cu_fa_stage(Ks, ldh, kb + (size_t)j0 * A.row, A.row, BC, last + 1 - j0, HS);
        llm__cu_fa_stage(Vs, ldh, vb + (size_t)j0 * A.row, A.row, BC, last + 1 - j0, HS);
        __syncthreads();
        llm__cu_fa_mm_nt(Sc, lds, Qs + warp * 16 * ldh, ldh, Ks, ldh, BC, HS);
        __syncwarp();
        /* Rows past T (padding) see zero q, hence finite scores; they are never stored. */
        float mt = -INFINITY;
        for (int c = half; c < BC; c += 2)
            if (j0 + c <= i) mt = fmaxf(mt, Sc[r * lds + c]);
        mt = fmaxf(mt, __shfl_xor_sync(LLM__CU_FULL, mt, 1));
        float mnew = fmaxf(m, mt * scale);  /* finite: key j0 <= q0 <= i is in the tile */
        float corr = expf(m - mnew);         /* 0 on the first tile (m = -inf) */
        float sum = 0.0f;
        for (int c = half; c < BC; c += 2) {
            H p = llm__cu_type<H>::round(j0 + c <= i ? expf(Sc[r * lds + c] * scale - mnew) : 0.0f);
            P[r * ldp + c] = p;
            sum += llm__cu_type<H>::widen(p);
        }
        l = l * corr + sum + __shfl_xor_sync(LLM__CU_FULL, sum, 1);
        m = mnew;
        for (int d = half; d < HS; d += 2) O[r * ldo + d] *= corr;
        __syncwarp();  /* P and the rescaled O rows are visible to the warp */
        llm__cu_fa_mm_nn_add(O, ldo, P, ldp, Vs, ldh, HS, BC);
    }
    __syncwarp();
    if (i >= T) return;
    S *y = out + A.o(b, h) + (size_t)i * A.Cq;
    float inv = 1.0f / l;
    for (int d = half; d < HS; d += 2) llm__cu_st(y, d, O[r * ldo + d] * inv);
    if (half == 0) lse[((size_t)b * A.NH + h) * T + i] = m + logf(l);
}

/* dq. Block and warp rows as in the forward; for each key tile:
 *   S = scale Q_w K^T,  dP = dO_w V^T    (tensor cores; S stored unscaled, as in the forward)
 *   P_ij = exp(S_ij - lse_i) (j <= i),  dS_ij = P_ij (dP_ij - D_i)   (fp32, dS rounded)
 *   dQ += dS K                                         (tensor cores)
 * with D_i = dO_i . out_i from the fp32 tensors; finally dq_i += scale dQ_i. */
template <class H, class S>
static __global__ void llm__cu_attention_bwd_dq16_k(S *dqkv, const S *dout, const S *qkv, const S *out,
                                                    const float *lse, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    const int ROWS = (int)blockDim.x / 32 * 16, BC = ROWS, lds = BC + 4, ldp = BC + 8;   /* 16 W */
    int HS = A.HS, T = A.T, ldh = HS + 8, ldo = HS + 4;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int b = blockIdx.y / A.NH, h = blockIdx.y % A.NH, g = h / (A.NH / A.NKV);
    int q0 = blockIdx.x * ROWS, nq = min(ROWS, T - q0);
    int i = q0 + 16 * warp + r;
    char *cur = (char *)sm;
    H *Qs = llm__cu_fa_carve<H>(cur, (size_t)ROWS * ldh);
    H *dOs = llm__cu_fa_carve<H>(cur, (size_t)ROWS * ldh);
    H *Ks = llm__cu_fa_carve<H>(cur, (size_t)BC * ldh);
    H *Vs = llm__cu_fa_carve<H>(cur, (size_t)BC * ldh);
    float *Sc = llm__cu_fa_warp_rows<float>(cur, ROWS, lds, warp);
    float *dP = llm__cu_fa_warp_rows<float>(cur, ROWS, lds, warp);
    H *dS = llm__cu_fa_warp_rows<H>(cur, ROWS, ldp, warp);
    float *dQ = llm__cu_fa_warp_rows<float>(cur, ROWS, ldo, warp);
    const S *kb = A.k(qkv, b, g), *vb = A.v(qkv, b, g);
    llm__cu_fa_stage(Qs, ldh, A.q(qkv, b, h) + (size_t)q0 * A.row, A.row, ROWS, nq, HS);
    llm__cu_fa_stage(dOs, ldh, dout + A.o(b, h) + (size_t)q0 * A.Cq, A.Cq, ROWS, nq, HS);
    float D = 0.0f, L = 0.0f;   /* D_i and lse_i of row i (padding rows: 0) */
    if (i < T) {
        const S *dOi = dout + A.o(b, h) + (size_t)i * A.Cq, *Oi = out + A.o(b, h) + (size_t)i * A.Cq;
        for (int d = half; d < HS; d += 2) D += llm__cu_ld(dOi, d) * llm__cu_ld(Oi, d);
        L = lse[((size_t)b * A.NH + h) * T + i];
    }
    D += __shfl_xor_sync(LLM__CU_FULL, D, 1);
    for (int d = half; d < HS; d += 2) dQ[r * ldo + d] = 0.0f;
    int last = q0 + nq - 1;
    for (int j0 = 0; j0 <= last; j0 += BC) {
        __syncthreads();
        llm__cu_fa_stage(Ks, ldh, kb + (size_t)j0 * A.row, A.row, BC, last + 1 - j0, HS);
        llm__cu_fa_stage(Vs, ldh, vb + (size_t)j0 * A.row, A.row, BC, last + 1 - j0, HS);
        __syncthreads();
        llm__cu_fa_mm_nt(Sc, lds, Qs + warp * 16 * ldh, ldh, Ks, ldh, BC, HS);
        llm__cu_fa_mm_nt(dP, lds, dOs + warp * 16 * ldh, ldh, Vs, ldh, BC, HS);
        __syncwarp();
        for (int c = half; c < BC; c += 2) {
            float p = j0 + c <= i ? expf(Sc[r * lds + c] * scale - L) : 0.0f;
            dS[r * ldp + c] = llm__cu_type<H>::round(p * (dP[r * lds + c] - D));
        }
        __syncwarp();
        llm__cu_fa_mm_nn_add(dQ, ldo, dS, ldp, Ks, ldh, HS, BC);
    }
    __syncwarp();
    if (i >= T) return;
    S *gq = dqkv + ((size_t)b * T + i) * A.row + (size_t)h * HS;
    for (int d = half; d < HS; d += 2) llm__cu_st(gq, d, llm__cu_ld(gq, d) + scale * dQ[r * ldo + d]);
}

/* dk, dv. Block (key block, b*NKV + g); warp w owns keys j of k0 + 16w .. +15. For each
 * query head h of the group and each query tile i0 = k0, k0+BQ, ... (earlier queries
 * never see these keys), in transposed form so that the key rows stay the tile rows:
 *   S^T = scale K_w Q^T,  dP^T = V_w dO^T   (tensor cores; S^T stored unscaled)
 *   P^T_ji = exp(S^T_ji - lse_i) (i >= j),  dS^T_ji = P^T_ji (dP^T_ji - D_i)  (rounded)
 *   dV += P^T dO,  dK += dS^T Q                         (tensor cores)
 * and finally dk_j += scale dK_j, dv_j += dV_j: the group's heads sum in the accumulators,
 * so every element has one owner. lse_i and D_i of the tile are staged in shared memory. */
template <class H, class S>
static __global__ void llm__cu_attention_bwd_dkv16_k(S *dqkv, const S *dout, const S *qkv, const S *out,
                                                     const float *lse, llm__cu_att A, float scale) {
    float *sm = llm__cu_shmem();
    const int ROWS = (int)blockDim.x / 32 * 16, BQ = LLM__CU_FA_BQ, lds = BQ + 4, ldp = BQ + 8;
    int HS = A.HS, T = A.T, ldh = HS + 8, ldo = HS + 4, G = A.NH / A.NKV;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int b = blockIdx.y / A.NKV, g = blockIdx.y % A.NKV;
    int k0 = blockIdx.x * ROWS, nk = min(ROWS, T - k0);
    int w0 = k0 + 16 * warp, j = w0 + r;   /* the warp's first key; this lane pair's key */
    char *cur = (char *)sm;
    H *Ks = llm__cu_fa_carve<H>(cur, (size_t)ROWS * ldh);
    H *Vs = llm__cu_fa_carve<H>(cur, (size_t)ROWS * ldh);
    H *Qs = llm__cu_fa_carve<H>(cur, (size_t)BQ * ldh);
    H *dOs = llm__cu_fa_carve<H>(cur, (size_t)BQ * ldh);
    float *St = llm__cu_fa_warp_rows<float>(cur, ROWS, lds, warp);
    float *dPt = llm__cu_fa_warp_rows<float>(cur, ROWS, lds, warp);
    H *Pt = llm__cu_fa_warp_rows<H>(cur, ROWS, ldp, warp);
    H *dSt = llm__cu_fa_warp_rows<H>(cur, ROWS, ldp, warp);
    float *dK = llm__cu_fa_warp_rows<float>(cur, ROWS, ldo, warp);
    float *dV = llm__cu_fa_warp_rows<float>(cur, ROWS, ldo, warp);
    float *Ls = llm__cu_fa_carve<float>(cur, BQ), *Ds = llm__cu_fa_carve<float>(cur, BQ);
    llm__cu_fa_stage(Ks, ldh, A.k(qkv, b, g) + (size_t)k0 * A.row, A.row, ROWS, nk, HS);
    llm__cu_fa_stage(Vs, ldh, A.v(qkv, b, g) + (size_t)k0 * A.row, A.row, ROWS, nk, HS);
    for (int d = half; d < HS; d += 2) dK[r * ldo + d] = dV[r * ldo + d] = 0.0f;
    for (int h = g * G; h < (g + 1) * G; h++) {
        const S *qb = A.q(qkv, b, h), *dob = dout + A.o(b, h), *ob = out + A.o(b, h);
        const float *lseb = lse + ((size_t)b * A.NH + h) * T;
        for (int i0 = k0; i0 < T; i0 += BQ) {
            __syncthreads();  /* the previous tile is consumed; K, V are staged */
            llm__cu_fa_stage(Qs, ldh, qb + (size_t)i0 * A.row, A.row, BQ, T - i0, HS);
            llm__cu_fa_stage(dOs, ldh, dob + (size_t)i0 * A.Cq, A.Cq, BQ, T - i0, HS);
            for (int c = warp; c < BQ; c += ROWS / 16) {  /* D_i = dO_i . out_i, fp32 */
                int i = i0 + c;
                float D = 0.0f;
                if (i < T)
                    for (int d = lane; d < HS; d += 32)
                        D += llm__cu_ld(dob, (size_t)i * A.Cq + d) * llm__cu_ld(ob, (size_t)i * A.Cq + d);
                D = llm__cu_warp_sum(D);
                if (lane == 0) {
                    Ds[c] = D;
                    Ls[c] = i < T ? lseb[i] : 0.0f;
                }
            }
            __syncthreads();
            if (w0 >= T || w0 > i0 + BQ - 1) continue;  /* no key of the warp, or all after the tile */
            llm__cu_fa_mm_nt(St, lds, Ks + warp * 16 * ldh, ldh, Qs, ldh, BQ, HS);
            llm__cu_fa_mm_nt(dPt, lds, Vs + warp * 16 * ldh, ldh, dOs, ldh, BQ, HS);
            __syncwarp();
            for (int c = half; c < BQ; c += 2) {
                int i = i0 + c;
                float p = i >= j && i < T ? expf(St[r * lds + c] * scale - Ls[c]) : 0.0f;
                Pt[r * ldp + c] = llm__cu_type<H>::round(p);
                dSt[r * ldp + c] = llm__cu_type<H>::round(p * (dPt[r * lds + c] - Ds[c]));
            }
            __syncwarp();
            llm__cu_fa_mm_nn_add(dV, ldo, Pt, ldp, dOs, ldh, HS, BQ);
            llm__cu_fa_mm_nn_add(dK, ldo, dSt, ldp, Qs, ldh, HS, BQ);
        }
    }
    __syncwarp();
    if (j >= T) return;
    S *gk = dqkv + ((size_t)b * T + j) * A.row + A.Cq + (size_t)g * HS;
    S *gv = gk + (size_t)A.NKV * HS;
    for (int d = half; d < HS; d += 2) {
        llm__cu_st(gk, d, llm__cu_ld(gk, d) + scale * dK[r * ldo + d]);
        llm__cu_st(gv, d, llm__cu_ld(gv, d) + dV[r * ldo + d]);
    }
}

/* Raise the dynamic shared-memory limits of the type-H kernels for storage S (`kernels`: 0
 * the forward, 1 the two backward ones) to what they carve for head size HS with W warps. */
template <class H, class S> static bool llm__cu_fa_optin(llm__cu *st, int HS, int W, int kernels) {
    const cudaFuncAttribute a = cudaFuncAttributeMaxDynamicSharedMemorySize;
    size_t n0 = llm__cu_fa_shmem(0, HS, W), n1 = llm__cu_fa_shmem(1, HS, W), n2 = llm__cu_fa_shmem(2, HS, W);
    if (kernels == 0)
        return LLM__CUDA(st, cudaFuncSetAttribute((llm__cu_attention_fwd16_k<H, S>), a, (int)n0),
                         "attention_fwd: %zu bytes of shared memory", n0);
    return LLM__CUDA(st, cudaFuncSetAttribute((llm__cu_attention_bwd_dq16_k<H, S>), a, (int)n1),
                     "attention_bwd: %zu bytes of shared memory", n1) &&
           LLM__CUDA(st, cudaFuncSetAttribute((llm__cu_attention_bwd_dkv16_k<H, S>), a, (int)n2),
                     "attention_bwd: %zu bytes of shared memory", n2);
}
/* How this call runs: on tensor cores with W warps per block (4 or 2, returned) in a
 * 16-bit mode, for a head size that 16-wide tiles divide, when the kernels (`kernels`: 0
 * the forward, 1 the two backward ones) for storage type s fit this device's shared memory
 * with that W (their limits are raised here); else 0: the fp32 kernels run (e.g. HS = 128
 * backward on a 64 KiB sm_75). 0 also after a recorded failure, which the caller sees in
 * st->status. */
static int llm__cu_fa_warps(llm__cu *st, int HS, int kernels, int s) {
    if (!st->prec || HS % 16 != 0 || HS > LLM__CU_HS_MAX) return 0;
    int optin = 0;
    if (!LLM__CUDA(st, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, st->dev),
                   "device %d", st->dev))
        return 0;
    for (int W = 4; W >= 2; W /= 2) {
        size_t need = llm__cu_fa_shmem(kernels == 0 ? 0 : 1, HS, W);
        if (kernels != 0 && llm__cu_fa_shmem(2, HS, W) > need) need = llm__cu_fa_shmem(2, HS, W);
        if (need > (size_t)optin) continue;
        bool ok;
        if (st->prec == LLM__CU_FP16)
            ok = s == LLM__CU_FP32 ? llm__cu_fa_optin<__half, float>(st, HS, W, kernels)
                                   : llm__cu_fa_optin<__half, __half>(st, HS, W, kernels);
        else
            ok = s == LLM__CU_FP32 ? llm__cu_fa_optin<__nv_bfloat16, float>(st, HS, W, kernels)
                                   : llm__cu_fa_optin<__nv_bfloat16, __nv_bfloat16>(st, HS, W, kernels);
        return ok ? W : 0;
    }
    return 0;
}
/* Queue the type-H forward on storage S with W warps per block; `name` (a literal) is the
 * profile's. */
template <class H, class S>
static void llm__cu_fa_fwd(llm__cu *st, float *out, float *lse, const float *qkv, llm__cu_att A, int B, int W,
                           const char *name) {
    unsigned rows = 16 * (unsigned)W;
    dim3 grid(((unsigned)A.T + rows - 1) / rows, (unsigned)(B * A.NH));
    LLM__CU_LAUNCH((llm__cu_attention_fwd16_k<H, S>), grid, 32 * W, llm__cu_fa_shmem(0, A.HS, W), st->stream)(
        (S *)out, lse, (const S *)qkv, A, 1.0f / sqrtf((float)A.HS));
    llm__cu_launched(st, name, "B=%d T=%d NH=%d NKV=%d HS=%d W=%d", B, A.T, A.NH, A.NKV, A.HS, W);
}
/* Queue the type-H backward on storage S: dq, then dk and dv. */
template <class H, class S>
static void llm__cu_fa_bwd(llm__cu *st, float *dqkv, const float *dout, const float *qkv, const float *out,
                           const float *lse, llm__cu_att A, int B, int W, const char *name_dq,
                           const char *name_dkv) {
    float scale = 1.0f / sqrtf((float)A.HS);
    unsigned rows = 16 * (unsigned)W, blocks = ((unsigned)A.T + rows - 1) / rows;
    LLM__CU_LAUNCH((llm__cu_attention_bwd_dq16_k<H, S>), dim3(blocks, (unsigned)(B * A.NH)), 32 * W,
                   llm__cu_fa_shmem(1, A.HS, W), st->stream)((S *)dqkv, (const S *)dout, (const S *)qkv,
                                                             (const S *)out, lse, A, scale);
    llm__cu_launched(st, name_dq, "B=%d T=%d NH=%d NKV=%d HS=%d W=%d", B, A.T, A.NH, A.NKV, A.HS, W);
    LLM__CU_LAUNCH((llm__cu_attention_bwd_dkv16_k<H, S>), dim3(blocks, (unsigned)(B * A.NKV)), 32 * W,
                   llm__cu_fa_shmem(2, A.HS, W), st->stream)((S *)dqkv, (const S *)dout, (const S *)qkv,
                                                             (const S *)out, lse, A, scale);
    llm__cu_launched(st, name_dkv, "B=%d T=%d NH=%d NKV=%d HS=%d W=%d", B, A.T, A.NH, A.NKV, A.HS, W);
}

/* Shapes the attention kernels accept; records an error otherwise. */
static bool llm__cu_att_shape(llm__cu *st, const char *op, int B, int NH, int NKV, int HS) {
    if (NH <= 0 || NKV <= 0 || NH % NKV != 0 || HS <= 0 || HS > LLM__CU_HS_MAX ||
        (long long)B * NH > 65535) {
        llm__cu_fail(st, LLM_ERR_UNSUPPORTED,
                     "CUDA %s: B=%d NH=%d NKV=%d HS=%d: need NKV | NH, head size <= %d, B*NH <= 65535",
                     op, B, NH, NKV, HS, LLM__CU_HS_MAX);
        return false;
    }
    return true;
}

static void llm__cu_attention_fwd(void *p, float *out, float *lse, const float *qkv, int B, int T,
                                  int NH, int NKV, int HS) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0) return;
    int s = llm__cu_io(st, "attention_fwd", {out, qkv}, {lse});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, lse, NULL);
    if (!llm__cu_att_shape(st, "attention_fwd", B, NH, NKV, HS)) return;
    llm__cu_att A = llm__cu_att_make(T, NH, NKV, HS);
    int W = llm__cu_fa_warps(st, HS, 0, s);
    if (W) {  /* 16-bit modes: tensor cores, on fp32 tensors or 16-bit activations */
        const char *name = st->prec == LLM__CU_FP16 ? "attention_fwd (fp16)" : "attention_fwd (bf16)";
        if (st->prec == LLM__CU_FP16) {
            if (s == LLM__CU_FP32) llm__cu_fa_fwd<__half, float>(st, out, lse, qkv, A, B, W, name);
            else llm__cu_fa_fwd<__half, __half>(st, out, lse, qkv, A, B, W, name);
        } else {
            if (s == LLM__CU_FP32) llm__cu_fa_fwd<__nv_bfloat16, float>(st, out, lse, qkv, A, B, W, name);
            else llm__cu_fa_fwd<__nv_bfloat16, __nv_bfloat16>(st, out, lse, qkv, A, B, W, name);
        }
        return;
    }
    if (st->status != LLM_OK) return;
    size_t shmem = (2 * 32 * (size_t)(HS + 1) + LLM__CU_ATT_WARPS * (size_t)HS) * sizeof(float);
    dim3 grid((unsigned)((T + LLM__CU_ATT_WARPS - 1) / LLM__CU_ATT_WARPS), (unsigned)(B * NH));
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_attention_fwd_k<S>, grid, 32 * LLM__CU_ATT_WARPS, shmem, st->stream)(
        (S *)out, lse, (const S *)qkv, A, 1.0f / sqrtf((float)HS)));
    llm__cu_launched(st, "attention_fwd", "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
}

static void llm__cu_attention_bwd(void *p, float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, int B, int T, int NH, int NKV,
                                  int HS) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || B <= 0 || T <= 0) return;
    int s = llm__cu_io(st, "attention_bwd", {dqkv, dout, qkv, out}, {lse});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, dqkv, NULL, NULL);
    if (!llm__cu_att_shape(st, "attention_bwd", B, NH, NKV, HS)) return;
    float scale = 1.0f / sqrtf((float)HS);
    llm__cu_att A = llm__cu_att_make(T, NH, NKV, HS);
    int W = llm__cu_fa_warps(st, HS, 1, s);
    if (W) {  /* 16-bit modes: tensor cores */
        if (st->prec == LLM__CU_FP16) {
            const char *dq = "attention_bwd (dq, fp16)", *dkv = "attention_bwd (dk, dv, fp16)";
            if (s == LLM__CU_FP32) llm__cu_fa_bwd<__half, float>(st, dqkv, dout, qkv, out, lse, A, B, W, dq, dkv);
            else llm__cu_fa_bwd<__half, __half>(st, dqkv, dout, qkv, out, lse, A, B, W, dq, dkv);
        } else {
            const char *dq = "attention_bwd (dq, bf16)", *dkv = "attention_bwd (dk, dv, bf16)";
            if (s == LLM__CU_FP32) llm__cu_fa_bwd<__nv_bfloat16, float>(st, dqkv, dout, qkv, out, lse, A, B, W, dq, dkv);
            else llm__cu_fa_bwd<__nv_bfloat16, __nv_bfloat16>(st, dqkv, dout, qkv, out, lse, A, B, W, dq, dkv);
        }
        return;
    }
    if (st->status != LLM_OK) return;
    unsigned tiles = (unsigned)((T + LLM__CU_ATT_WARPS - 1) / LLM__CU_ATT_WARPS);
    size_t shmem = (2 * 32 * (size_t)(HS + 1) + 2 * LLM__CU_ATT_WARPS * (size_t)HS) * sizeof(float);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_attention_bwd_dq_k<S>, dim3(tiles, (unsigned)(B * NH)),
                                    32 * LLM__CU_ATT_WARPS, shmem, st->stream)(
        (S *)dqkv, (const S *)dout, (const S *)qkv, (const S *)out, lse, A, scale));
    llm__cu_launched(st, "attention_bwd (dq)", "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
    shmem += 64 * sizeof(float);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_attention_bwd_dkv_k<S>, dim3(tiles, (unsigned)(B * NKV)),
                                    32 * LLM__CU_ATT_WARPS, shmem, st->stream)(
        (S *)dqkv, (const S *)dout, (const S *)qkv, (const S *)out, lse, A, scale));
    llm__cu_launched(st, "attention_bwd (dk, dv)", "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
}

//==== ATTENTION WITH A KV CACHE ========================================================
/* Generation. Row i (of N) of qkv is the token at position pos[i] of sequence seq[i]:
 *   1. store its k, v (NKV*HS each) into kcache, vcache (S, maxT, NKV*HS) at [seq[i], pos[i]];
 *   2. then, for every query head h (kv head g = h/(NH/NKV)), attend over the cached
 *      positions 0..pos[i] of that sequence:  out_i = softmax(scale q_i . K^T) V.
 * Two kernels on one stream: every row's store finishes before any row attends, so one
 * call can prefill a prompt (row t sees rows < t) or step many sequences by one token.
 * A row with seq < 0 or pos outside [0, maxT) is skipped (output 0) and raises a flag
 * that sync reports; S is not known here, so seq's upper bound is the caller's to keep. */
template <class S>
static __global__ void llm__cu_kv_store_k(float *kcache, float *vcache, const S *qkv, const int *seq, const int *pos,
                                          int N, int NH, int NKV, int HS, int maxT, int *flags) {
    size_t kvw = (size_t)NKV * HS, row = (size_t)(NH + 2 * NKV) * HS;
    LLM__CU_FOR(e, (size_t)N * kvw) {
        size_t i = e / kvw, c = e % kvw;
        int sq = seq[i], p = pos[i];
        if (sq < 0 || p < 0 || p >= maxT) {
            if (c == 0) atomicOr(flags, LLM__CU_FLAG_KV_INDEX);
            continue;
        }
        const S *src = qkv + i * row + (size_t)NH * HS;   /* k, then v */
        size_t dst = ((size_t)sq * maxT + p) * kvw + c;
        kcache[dst] = llm__cu_ld(src, c);
        vcache[dst] = llm__cu_ld(src, kvw + c);
    }
}
/* One warp per (row i, query head h), LLM__CU_ATT_WARPS per block: the online softmax of
 * the forward kernel over the keys 0..pos[i] in chunks of 32 (lane l scores key j0+l;
 * lane l owns output dims l, l+32, ...). The warp's q row sits in shared memory. */
template <class S>
static __global__ void llm__cu_attention_kv_k(S *out, const S *qkv, const float *kcache, const float *vcache,
                                              const int *seq, const int *pos, int N, int NH, int NKV, int HS,
                                              int maxT, float scale) {
    float *sm = llm__cu_shmem();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    size_t w = (size_t)blockIdx.x * LLM__CU_ATT_WARPS + warp;   /* (i, h) */
    if (w >= (size_t)N * NH) return;                             /* no block-wide sync below */
    int i = (int)(w / NH), h = (int)(w % NH), g = h / (NH / NKV);
    size_t kvw = (size_t)NKV * HS, row = (size_t)(NH + 2 * NKV) * HS;
    S *o = out + (size_t)i * NH * HS + (size_t)h * HS;
    int sq = seq[i], P = pos[i];
    if (sq < 0 || P < 0 || P >= maxT) {                          /* flagged by the store */
        for (int d = lane; d < HS; d += 32) llm__cu_st(o, d, 0.0f);
        return;
    }
    float *q = sm + warp * HS;
    for (int d = lane; d < HS; d += 32) q[d] = llm__cu_ld(qkv, (size_t)i * row + (size_t)h * HS + d);
    __syncwarp();
    const float *kb = kcache + (size_t)sq * maxT * kvw + (size_t)g * HS;
    const float *vb = vcache + (size_t)sq * maxT * kvw + (size_t)g * HS;
    float acc[LLM__CU_R];
    for (int r = 0; r < LLM__CU_R; r++) acc[r] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 <= P; j0 += 32) {
        int j = j0 + lane;
        float s = -INFINITY;
        if (j <= P) {
            const float *k = kb + (size_t)j * kvw;
            float dot = 0.0f;
            for (int d = 0; d < HS; d++) dot += q[d] * k[d];
            s = dot * scale;
        }
        float mnew = fmaxf(m, llm__cu_warp_max(s));
        float pj = j <= P ? expf(s - mnew) : 0.0f;
        float corr = expf(m - mnew);
        l = l * corr + llm__cu_warp_sum(pj);
        for (int r = 0; r < LLM__CU_R; r++) acc[r] *= corr;
        for (int k = 0; k < 32 && j0 + k <= P; k++) {   /* the bound is the same on every lane */
            float pk = __shfl_sync(LLM__CU_FULL, pj, k);
            const float *v = vb + (size_t)(j0 + k) * kvw;
            for (int r = 0; r < LLM__CU_R; r++) {
                int d = lane + 32 * r;
                if (d < HS) acc[r] += pk * v[d];
            }
        }
        m = mnew;
    }
    for (int r = 0; r < LLM__CU_R; r++) {
        int d = lane + 32 * r;
        if (d < HS) llm__cu_st(o, d, acc[r] / l);
    }
}

static void llm__cu_attention_kv(void *p, float *out, const float *qkv, float *kcache, float *vcache,
                                 const int *seq, const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0) return;
    int s = llm__cu_io(st, "attention_kv", {out, qkv}, {kcache, vcache});   /* the caches stay fp32 */
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, kcache, vcache);
    if (!llm__cu_att_shape(st, "attention_kv", 1, NH, NKV, HS)) return;
    if (maxT <= 0) { llm__cu_fail(st, LLM_ERR_ARG, "CUDA attention_kv: maxT=%d", maxT); return; }
    st->flags_armed = 1;
    size_t n = (size_t)N * NKV * HS;
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_kv_store_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        kcache, vcache, (const S *)qkv, seq, pos, N, NH, NKV, HS, maxT, st->flags));
    llm__cu_launched(st, "attention_kv (store)", "N=%d NKV=%d HS=%d maxT=%d", N, NKV, HS, maxT);
    size_t warps = (size_t)N * NH;
    unsigned blocks = (unsigned)((warps + LLM__CU_ATT_WARPS - 1) / LLM__CU_ATT_WARPS);
    size_t shmem = LLM__CU_ATT_WARPS * (size_t)HS * sizeof(float);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_attention_kv_k<S>, blocks, 32 * LLM__CU_ATT_WARPS, shmem, st->stream)(
        (S *)out, (const S *)qkv, kcache, vcache, seq, pos, N, NH, NKV, HS, maxT, 1.0f / sqrtf((float)HS)));
    llm__cu_launched(st, "attention_kv", "N=%d NH=%d NKV=%d HS=%d maxT=%d", N, NH, NKV, HS, maxT);
}

//==== GELU =============================================================================
/* GELU, tanh approximation (torch's approximate='tanh'):
 *   u = sqrt(2/pi) (x + 0.044715 x^3),  gelu(x) = 0.5 x (1 + tanh u)
 *   gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2) */
#define LLM__CU_GELU_K 0.7978845608028654f  /* sqrt(2/pi) */
template <class S> static __global__ void llm__cu_gelu_fwd_k(S *out, const S *inp, size_t n) {
    LLM__CU_FOR(i, n) {
        float x = llm__cu_ld(inp, i);
        float u = LLM__CU_GELU_K * (x + 0.044715f * x * x * x);
        llm__cu_st(out, i, 0.5f * x * (1.0f + tanhf(u)));
    }
}
template <class S> static __global__ void llm__cu_gelu_bwd_k(S *dinp, const S *inp, const S *dout, size_t n) {
    LLM__CU_FOR(i, n) {
        float x = llm__cu_ld(inp, i);
        float u = LLM__CU_GELU_K * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float du = LLM__CU_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        llm__cu_st(dinp, i, llm__cu_ld(dinp, i) +
                            llm__cu_ld(dout, i) * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du));
    }
}
static void llm__cu_gelu_fwd(void *p, float *out, const float *inp, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    int s = llm__cu_io(st, "gelu_fwd", {out, inp}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_gelu_fwd_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)out, (const S *)inp, n));
    llm__cu_launched(st, "gelu_fwd", "n=%zu", n);
}
static void llm__cu_gelu_bwd(void *p, float *dinp, const float *inp, const float *dout, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    int s = llm__cu_io(st, "gelu_bwd", {dinp, inp, dout}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, dinp, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_gelu_bwd_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)dinp, (const S *)inp, (const S *)dout, n));
    llm__cu_launched(st, "gelu_bwd", "n=%zu", n);
}
/* The MLP's up-projection and its GELU in one call: pre = inp @ w^T + bias, out = gelu(pre).
 * In the 16-bit modes cuBLASLt's GELU_AUX_BIAS epilogue writes both from the accumulator tile
 * (out to D, pre to the aux matrix, both in their storage type), saving a read and a write
 * of the (N,OC) output; in the exact fp32 mode (cuBLASLt's GELU may use an approximate
 * tanh) and wherever cuBLASLt declines, it is matmul_fwd then gelu_fwd. Backward needs
 * nothing new: gelu_bwd reads pre. */
static void llm__cu_matmul_gelu_fwd(void *p, float *pre, float *out, const float *inp, const float *w,
                                    const float *bias, int N, int C, int OC) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || OC <= 0) return;
    int s = llm__cu_io(st, "matmul_gelu_fwd", {pre, out}, {bias});
    if (s < 0) return;
    if (llm__cu_product(st, pre, out, s, inp, w, bias, N, C, OC, "matmul_gelu_fwd") == 0)
        llm__cu_gelu_fwd(p, out, pre, (size_t)N * OC);
}

//==== SWIGLU ===========================================================================
/* SwiGLU (Llama's MLP): inp rows (2H) hold [gate g | up u]; with sig(g) = 1/(1+exp(-g)),
 *   out = silu(g) * u = g sig(g) u,
 *   du += dout * g sig(g),   dg += dout * u * sig(g) (1 + g (1 - sig(g))).
 * PyTorch: F.silu(x @ w1.T) * (x @ w3.T). One thread per output element. */
template <class S> static __global__ void llm__cu_swiglu_fwd_k(S *out, const S *inp, size_t N, int H) {
    LLM__CU_FOR(e, N * H) {
        size_t n = e / H;
        int i = (int)(e % H);
        float g = llm__cu_ld(inp, n * 2 * H + i), u = llm__cu_ld(inp, n * 2 * H + H + i);
        llm__cu_st(out, e, g * (1.0f / (1.0f + expf(-g))) * u);
    }
}
template <class S>
static __global__ void llm__cu_swiglu_bwd_k(S *dinp, const S *inp, const S *dout, size_t N, int H) {
    LLM__CU_FOR(e, N * H) {
        size_t n = e / H;
        int i = (int)(e % H);
        float g = llm__cu_ld(inp, n * 2 * H + i), u = llm__cu_ld(inp, n * 2 * H + H + i), d = llm__cu_ld(dout, e);
        float sg = 1.0f / (1.0f + expf(-g));
        size_t ig = n * 2 * H + i, iu = ig + H;
        llm__cu_st(dinp, iu, llm__cu_ld(dinp, iu) + d * g * sg);
        llm__cu_st(dinp, ig, llm__cu_ld(dinp, ig) + d * u * sg * (1.0f + g * (1.0f - sg)));
    }
}
static void llm__cu_swiglu_fwd(void *p, float *out, const float *inp, int N, int H) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || H <= 0) return;
    int s = llm__cu_io(st, "swiglu_fwd", {out, inp}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_swiglu_fwd_k<S>, llm__cu_blocks((size_t)N * H), LLM__CU_THREADS, 0,
                                    st->stream)((S *)out, (const S *)inp, (size_t)N, H));
    llm__cu_launched(st, "swiglu_fwd", "N=%d H=%d", N, H);
}
static void llm__cu_swiglu_bwd(void *p, float *dinp, const float *inp, const float *dout, int N, int H) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || H <= 0) return;
    int s = llm__cu_io(st, "swiglu_bwd", {dinp, inp, dout}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, dinp, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_swiglu_bwd_k<S>, llm__cu_blocks((size_t)N * H), LLM__CU_THREADS, 0,
                                    st->stream)((S *)dinp, (const S *)inp, (const S *)dout, (size_t)N, H));
    llm__cu_launched(st, "swiglu_bwd", "N=%d H=%d", N, H);
}

//==== RESIDUAL =========================================================================
/* out = a + b;   da += dout, db += dout. dout is read once into a register first, so the
 * backward is also right when da or db is the same buffer as dout. (The model's GPT-2
 * block adds its attention branch and normalises in one pass: residual_layernorm_fwd,
 * under LAYERNORM.) */
template <class S> static __global__ void llm__cu_residual_fwd_k(S *out, const S *a, const S *b, size_t n) {
    LLM__CU_FOR(i, n) llm__cu_st(out, i, llm__cu_ld(a, i) + llm__cu_ld(b, i));
}
template <class S> static __global__ void llm__cu_residual_bwd_k(S *da, S *db, const S *dout, size_t n) {
    LLM__CU_FOR(i, n) {
        float d = llm__cu_ld(dout, i);
        llm__cu_st(da, i, llm__cu_ld(da, i) + d);
        llm__cu_st(db, i, llm__cu_ld(db, i) + d);
    }
}
static void llm__cu_residual_fwd(void *p, float *out, const float *a, const float *b, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    int s = llm__cu_io(st, "residual_fwd", {out, a, b}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, out, NULL, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_residual_fwd_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)out, (const S *)a, (const S *)b, n));
    llm__cu_launched(st, "residual_fwd", "n=%zu", n);
}
static void llm__cu_residual_bwd(void *p, float *da, float *db, const float *dout, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    int s = llm__cu_io(st, "residual_bwd", {da, db, dout}, {});
    if (s < 0) return;
    LLM__CU_TOUCH3(st, da, db, NULL);
    LLM__CU_TYPED(s, LLM__CU_LAUNCH(llm__cu_residual_bwd_k<S>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
        (S *)da, (S *)db, (const S *)dout, n));
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
    if (llm__cu_io(st, "crossentropy_fwd", {}, {losses, lse, logits}) < 0) return;
    LLM__CU_TOUCH3(st, losses, lse, NULL);
    LLM__CU_LAUNCH(llm__cu_crossentropy_fwd_k, (unsigned)N, 512, 0, st->stream)(
        losses, lse, logits, targets, V);
    llm__cu_launched(st, "crossentropy_fwd", "N=%d V=%d", N, V);
}
static void llm__cu_crossentropy_bwd(void *p, float *logits, const float *lse, const int *targets,
                                     float dloss, int N, int V) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || N <= 0 || V <= 0) return;
    if (llm__cu_io(st, "crossentropy_bwd", {}, {logits, lse}) < 0) return;
    LLM__CU_TOUCH3(st, logits, NULL, NULL);
    LLM__CU_LAUNCH(llm__cu_crossentropy_bwd_k, (unsigned)N, 512, 0, st->stream)(
        logits, lse, targets, dloss, V);
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
    if (st->status != LLM_OK) { llm__cu_pending(st); return NAN; }
    if (!llm__cu_enter(st) || llm__cu_io(st, "sumsq", {}, {x}) < 0) return NAN;
    if (n == 0) return 0.0;
    unsigned nb = llm__cu_blocks(n);
    if (nb > LLM__CU_SUMSQ_BLOCKS) nb = LLM__CU_SUMSQ_BLOCKS;
    LLM__CU_LAUNCH(llm__cu_sumsq_k, nb, LLM__CU_THREADS, 0, st->stream)(st->sumsq_part, x, n);
    llm__cu_launched(st, "sumsq", "n=%zu", n);
    LLM__CU_LAUNCH(llm__cu_sumsq_finish_k, 1, LLM__CU_THREADS, 0, st->stream)(st->sumsq_part, (int)nb);
    llm__cu_launched(st, "sumsq (finish)", "n=%zu", n);
    double total = NAN;
    if (st->status == LLM_OK &&
        LLM__CUDA(st, cudaMemcpyAsync(&total, st->sumsq_part + LLM__CU_SUMSQ_BLOCKS, sizeof total,
                                      cudaMemcpyDeviceToHost, st->stream), "sumsq n=%zu", n) &&
        LLM__CUDA(st, cudaStreamSynchronize(st->stream), "sumsq n=%zu", n))
        return total;
    return NAN;
}

/* AdamW (torch.optim.AdamW), step t >= 1, with g = grad * grad_scale (the clip factor,
 * divided by the loss scale when the gradients were scaled: see llm_loss_scaler):
 *   m = b1 m + (1-b1) g,   v = b2 v + (1-b2) g^2,   mhat = m / (1-b1^t),  vhat = v / (1-b2^t)
 *   param -= lr wd param;   param -= lr mhat / (sqrt(vhat) + eps)     (torch's order)
 * The bias corrections 1-b^t are computed once on the host, in float as the CPU does.
 * param16: in a 16-bit mode, the weight copy of param (or NULL), written in the same pass. */
template <class H>
static __global__ void llm__cu_adamw_k(float *param, H *param16, const float *grad, float *m, float *v, size_t n,
                                       float lr, float b1, float b2, float eps, float wd, float gscale, float bc1,
                                       float bc2) {
    LLM__CU_FOR(i, n) {
        float g = grad[i] * gscale;
        float mi = b1 * m[i] + (1.0f - b1) * g;
        float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float p = param[i];
        p -= lr * wd * p;                                   /* decoupled decay first */
        p -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        param[i] = p;
        if (param16) param16[i] = llm__cu_type<H>::round(p);
    }
}
static void llm__cu_adamw(void *p, float *param, const float *grad, float *m, float *v, size_t n,
                          float lr, float beta1, float beta2, float eps, float weight_decay,
                          float grad_scale, int t) {
    llm__cu *st = (llm__cu *)p;
    if (!llm__cu_enter(st) || n == 0) return;
    if (llm__cu_io(st, "adamw", {}, {param, grad, m, v}) < 0) return;
    float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    /* 16-bit modes: keep a fresh weight copy fresh by writing it in the same pass (a stale
     * one stays stale and is rounded again whole at the next matmul) */
    void *p16 = NULL;
    llm__cu_block *b = st->prec ? llm__cu_block_of(st, param) : NULL;
    if (b && b->shadow && b->fresh) p16 = (char *)b->shadow + ((char *)param - b->base) / 2;
    LLM__CU_TOUCH3(st, m, v, NULL);
    if (st->prec == LLM__CU_FP16)
        LLM__CU_LAUNCH(llm__cu_adamw_k<__half>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
            param, (__half *)p16, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    else
        LLM__CU_LAUNCH(llm__cu_adamw_k<__nv_bfloat16>, llm__cu_blocks(n), LLM__CU_THREADS, 0, st->stream)(
            param, (__nv_bfloat16 *)p16, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2);
    llm__cu_launched(st, "adamw", "n=%zu t=%d", n, t);
}

//==== DATA PARALLEL (NCCL) =============================================================
/* Data parallel training, as PyTorch's DistributedDataParallel: dist_world processes, one
 * GPU each, each with a full replica of the model, run forward and backward on their own
 * share of the batch. Before the optimizer step the gradients are averaged over the ranks,
 *     g = (1/W) sum_r g_r,
 * the mean, not the sum: each rank's loss is already a mean over its own B*T tokens, so the
 * mean of the W gradients is the gradient of the mean loss over all W*B*T tokens, and a
 * learning rate means the same for any W. NCCL's ring allreduce gives every rank the same
 * bits (each sum is formed once, then passed around), so the replicas take identical
 * AdamW steps and stay identical without ever exchanging weights.
 *
 * Rendezvous: every rank needs the same 128-byte id (ncclGetUniqueId on rank 0: the
 * address of its bootstrap socket) before ncclCommInitRank. It travels through a file,
 * opt->dist_id_file, on a file system all ranks see: rank 0 writes path.tmp and renames it
 * (rename is atomic, so a reader never sees half an id); the others poll for it for
 * LLM_DIST_TIMEOUT seconds (default 300). ncclCommInitRank returns only when all W ranks
 * have joined; rank 0 then removes the file, so a later run never reads a stale id. World 1
 * needs no file. */
#define LLM__CU_DIST_TIMEOUT 300.0          /* seconds a rank waits for the id file */

static llm_status llm__cu_dist_check(const llm_options *opt) {
    if (!opt || opt->dist_world == 0) return LLM_OK;
    int r = opt->dist_rank, w = opt->dist_world;
    if (w < 0)
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: dist_world %d is negative (0: one process, no NCCL)", w);
    if (r < 0 || r >= w)
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: dist_rank %d is outside [0, dist_world %d)", r, w);
    if (w > 1 && (!opt->dist_id_file || !opt->dist_id_file[0]))
        return llm_set_error(LLM_ERR_ARG, "CUDA backend: dist_world %d needs dist_id_file, a path all ranks "
                             "can reach (rank 0 writes the NCCL id there)", w);
#if LLM_CUDA_NCCL
    return LLM_OK;
#else
    return llm_set_error(LLM_ERR_UNSUPPORTED, "CUDA backend: built without NCCL, so no data parallel "
                         "(dist_world %d): compile llm_cuda.cu with -DLLM_CUDA_NCCL=1 and link -lnccl "
                         "(make cuda does when it finds nccl.h)", w);
#endif
}

#if LLM_CUDA_NCCL
static bool llm__nccl_ok(llm__cu *st, ncclResult_t e, const char *call, const char *fmt, ...) {
    if (e == ncclSuccess) return true;
    char name[64], what[256];
    llm__cu_callname(name, sizeof name, call);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    llm__cu_fail(st, LLM_ERR_BACKEND, "NCCL: %s failed: %s [%s]", name, ncclGetErrorString(e), what);
    return false;
}
#define LLM__NCCL(st, call, ...) llm__nccl_ok((st), (call), #call, __VA_ARGS__)

static double llm__cu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* LLM_DIST_TIMEOUT (seconds, >= 0), else the default. */
static double llm__cu_dist_timeout(void) {
    const char *env = getenv("LLM_DIST_TIMEOUT");
    char *end = NULL;
    double t = env ? strtod(env, &end) : -1.0;
    return env && end != env && !*end && t >= 0.0 ? t : LLM__CU_DIST_TIMEOUT;
}

/* Rank 0: the id to path.tmp, then renamed to path. */
static bool llm__cu_dist_write_id(llm__cu *st, const char *path, const void *id, size_t n) {
    size_t len = strlen(path);
    char *tmp = (char *)malloc(len + 5);
    if (!tmp) { llm__cu_fail(st, LLM_ERR_NOMEM, "CUDA data parallel: out of host memory"); return false; }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    int err = f ? 0 : errno;
    if (f && fwrite(id, 1, n, f) != n) err = errno ? errno : EIO;
    if (f && fclose(f) != 0 && !err) err = errno ? errno : EIO;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        remove(tmp);
        llm__cu_fail(st, LLM_ERR_IO, "CUDA data parallel: rank 0 cannot write the NCCL id to %s: %s",
                     path, strerror(err));
    }
    free(tmp);
    return !err;
}

/* Ranks > 0: wait for rank 0's file, then read exactly one id from it. */
static bool llm__cu_dist_read_id(llm__cu *st, const char *path, void *id, size_t n) {
    double timeout = llm__cu_dist_timeout(), t0 = llm__cu_seconds();
    for (;;) {
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, 1, n, f);
            int more = fgetc(f) != EOF;
            fclose(f);
            if (got == n && !more) return true;
            llm__cu_fail(st, LLM_ERR_FORMAT, "CUDA data parallel: rank %d: %s is not an NCCL id file "
                         "(%s than %zu bytes)", st->dist_rank, path, more ? "more" : "fewer", n);
            return false;
        }
        int err = errno;
        if (llm__cu_seconds() - t0 >= timeout) {
            llm__cu_fail(st, LLM_ERR_IO, "CUDA data parallel: rank %d of %d waited %g s (LLM_DIST_TIMEOUT) "
                         "for the NCCL id file %s (%s); is rank 0 running with the same id file, on a "
                         "file system this rank sees?", st->dist_rank, st->dist_world, timeout, path,
                         strerror(err));
            return false;
        }
        struct timespec nap = {0, 50 * 1000 * 1000};   /* 50 ms */
        nanosleep(&nap, NULL);
    }
}

/* Join the communicator (the device is current: create set it). */
static bool llm__cu_dist_init(llm__cu *st, const llm_options *opt) {
    if (!opt || opt->dist_world < 1) return true;
    int r = opt->dist_rank, w = opt->dist_world;
    st->dist_rank = r;
    st->dist_world = w;
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (r == 0 && !LLM__NCCL(st, ncclGetUniqueId(&id), "rank 0 of %d", w)) return false;
    if (w > 1 && !(r == 0 ? llm__cu_dist_write_id(st, opt->dist_id_file, &id, sizeof id)
                          : llm__cu_dist_read_id(st, opt->dist_id_file, &id, sizeof id)))
        return false;
    bool ok = LLM__NCCL(st, ncclCommInitRank(&st->comm, w, id, r), "rank %d of %d on device %d", r, w, st->dev);
    if (!ok) st->comm = NULL;
    if (w > 1 && r == 0) remove(opt->dist_id_file);   /* read by all, or never to be */
    return ok;
}

/* buf (n floats, device) := its mean over the ranks, in place, queued on the backend's
 * stream: it follows the backward kernels that wrote buf and precedes the norm and AdamW
 * that read it, with no host wait in between. */
static llm_status llm__cu_allreduce_mean(void *p, float *buf, size_t n) {
    llm__cu *st = (llm__cu *)p;
    if (!st->comm) return LLM_OK;
    if (st->status != LLM_OK) return llm__cu_pending(st);
    if (!llm__cu_enter(st)) return st->status;
    if (n == 0) return LLM_OK;
    if (!LLM__NCCL(st, ncclAllReduce(buf, buf, n, ncclFloat, ncclAvg, st->comm, st->stream),
                   "%zu floats, rank %d of %d", n, st->dist_rank, st->dist_world))
        return st->status;
    llm__cu_mark(st, "allreduce (NCCL)");
    return LLM_OK;
}
#else
static bool llm__cu_dist_init(llm__cu *st, const llm_options *opt) {
    (void)st; (void)opt;
    return true;   /* llm__cu_dist_check refused dist_world >= 1 already */
}
#endif

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
    b.copy = llm__cu_copy;
    b.sync = llm__cu_sync;
    b.encoder_fwd = llm__cu_encoder_fwd;
    b.encoder_bwd = llm__cu_encoder_bwd;
    b.layernorm_fwd = llm__cu_layernorm_fwd;
    b.layernorm_bwd = llm__cu_layernorm_bwd;
    b.rmsnorm_fwd = llm__cu_rmsnorm_fwd;
    b.rmsnorm_bwd = llm__cu_rmsnorm_bwd;
    b.matmul_fwd = llm__cu_matmul_fwd;
    b.matmul_bwd = llm__cu_matmul_bwd;
    b.matmul_gelu_fwd = llm__cu_matmul_gelu_fwd;
    b.act_dtype = llm__cu_act_dtype;
    b.alloc_act = llm__cu_alloc_act;
    b.residual_layernorm_fwd = llm__cu_residual_layernorm_fwd;
    b.rope_fwd = llm__cu_rope_fwd;
    b.rope_bwd = llm__cu_rope_bwd;
    b.attention_fwd = llm__cu_attention_fwd;
    b.attention_bwd = llm__cu_attention_bwd;
    b.attention_kv = llm__cu_attention_kv;
    b.gelu_fwd = llm__cu_gelu_fwd;
    b.gelu_bwd = llm__cu_gelu_bwd;
    b.swiglu_fwd = llm__cu_swiglu_fwd;
    b.swiglu_bwd = llm__cu_swiglu_bwd;
    b.residual_fwd = llm__cu_residual_fwd;
    b.residual_bwd = llm__cu_residual_bwd;
    b.crossentropy_fwd = llm__cu_crossentropy_fwd;
    b.crossentropy_bwd = llm__cu_crossentropy_bwd;
    b.sumsq = llm__cu_sumsq;
    b.adamw = llm__cu_adamw;
#if LLM_CUDA_NCCL
    b.allreduce_mean = llm__cu_allreduce_mean;   /* NULL without NCCL: one process */
#endif
    return b;
}

extern "C" const llm_backend *llm_cuda_backend(void) {
    static const llm_backend table = llm__cu_table();
    return &table;
}

/* The same backend in a fixed 16-bit mode (see MATMUL): its own name and create. */
static llm_backend llm__cu_table_mode(const char *name, llm_status (*create)(void **, const llm_options *)) {
    llm_backend b = llm__cu_table();
    b.name = name;
    b.create = create;
    return b;
}
/* bf16 tensor-core matmuls and attention: the fast mode (sm_80+). */
extern "C" const llm_backend *llm_cuda_backend_bf16(void) {
    static const llm_backend table = llm__cu_table_mode("cuda-bf16", llm__cu_create_bf16);
    return &table;
}
/* fp16 ones, for GPUs without bf16 (sm_70+); train with llm_loss_scaler. */
extern "C" const llm_backend *llm_cuda_backend_fp16(void) {
    static const llm_backend table = llm__cu_table_mode("cuda-fp16", llm__cu_create_fp16);
    return &table;
}
