/* tests/cuda_emu.h - a CUDA emulator, so that CI (no GPU) runs llm_cuda.cu's kernels on the CPU.
 *
 *   g++ -std=c++17 -O2 -x c++ -include tests/cuda_emu.h -DLLM_CUDA_EMU=1 -I. -c llm_cuda.cu
 *
 * llm_cuda.cu keeps its CUDA includes and the <<<>>> launch macro under #ifndef LLM_CUDA_EMU;
 * this header supplies what the file uses instead: the kernel language, the runtime,
 * cuBLAS, cuBLASLt and NCCL (ranks as host threads), all on the host. `make test` builds
 * build/emu/tests/test_cuda with it, so every GPU-vs-CPU comparison of tests/test_cuda.c runs
 * in CI. It checks kernel *logic* (indices, barriers, shuffles, shared memory, launch shapes);
 * it says nothing about speed, and it cannot see what only real hardware does (memory
 * ordering between blocks that run at once, timing, tensor-core rounding).
 *
 * EXECUTION
 *   A launch runs synchronously. Blocks run one after another; within a block every CUDA
 *   thread is a fiber (its own stack; x86-64: a 6-register switch, elsewhere ucontext), all on
 *   the calling OS thread. A fiber runs until it reaches a barrier: __syncthreads (the block),
 *   __syncwarp or a shuffle (its warp). The barrier releases when every *live* thread of the
 *   block / warp has arrived (threads that returned drop out, as on a GPU). A shuffle writes the
 *   lane's value to a per-warp slot, waits at the warp barrier, then reads its source lane's
 *   slot; the slots alternate between two banks, so one barrier per shuffle suffices (a lane
 *   can write bank p again only after the next barrier, which every reader of p passed).
 *   No runnable fiber while some are unfinished is a deadlock (e.g. __syncthreads under a
 *   branch that not every thread takes): the launch fails with cudaErrorLaunchFailure and
 *   cudaGetErrorString names the kernel, the block and who waits where. So does a warp whose
 *   lanes meet at different warp ops (a shuffle against a __syncwarp). A shuffle that reads
 *   a lane which has returned gets NaN (undefined on a GPU). Under AddressSanitizer the
 *   fiber switches are annotated, so a kernel's out-of-bounds access to cudaMalloc'd memory
 *   is reported with the kernel's line.
 *   Every other block starts its threads in reverse order (alternating from launch to launch
 *   too), so a result that depends on which thread runs first (a race) changes between
 *   blocks and between runs, where test_cuda's bit-for-bit repeat checks see it. Blocks
 *   run one at a time, in index order on one launch and in reverse on the next (alternating
 *   every two launches), so a kernel that assumes an order between blocks shows it too.
 *   Shared memory: `__shared__` is thread_local (block-scope thread_local is static, so
 *   static __shared__ arrays are one copy, shared by the block's fibers); the dynamic
 *   `extern __shared__ float sm[]` is the array `sm` below (a kernel must name it `sm`),
 *   NaN before every block (reading a word nobody wrote shows), and under AddressSanitizer
 *   poisoned past the launch's shmem bytes. Static __shared__ arrays are not NaN-filled
 *   (the emulator cannot enumerate them).
 *   Launch checks as on sm_90: block <= 1024 threads (x, y <= 1024, z <= 64), grid y, z <= 65535,
 *   no empty grid or block, dynamic shared memory <= 48 KiB unless raised with
 *   cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, n), n <= 227 KiB.
 * ARCHITECTURE: sm_90 unless LLM_CUDA_EMU_SM says 70, 75, 80, 86 or 89 (read at each call):
 *   the device then reports that compute capability, and the opt-in shared-memory limit
 *   (n above) is that architecture's: 96 KiB (70), 64 KiB (75, the T4), 163 KiB (80), 99 KiB
 *   (86, 89), 227 KiB (90); wmma tiles of a type the architecture lacks (bf16 below sm_80)
 *   fail the launch. Everything else (memory, speed) stays the same.
 *
 * RUNTIME: device memory is host memory (posix_memalign, tracked: cudaFree of a pointer that
 *   cudaMalloc did not return fails), one device of 16 GiB named "llm.h CUDA emulator", sm_90.
 *   LLM_CUDA_EMU_DEVICES=n (1..64, read at each call, so set it before starting threads)
 *   makes that n identical devices, 0..n-1, for data parallel tests; they share one 16 GiB
 *   pool, and a pointer from one works on all (as with peer access).
 *   LLM_CUDA_EMU_FAIL_MALLOC_AFTER=n makes the n-th cudaMalloc of the process (counted from 1)
 *   fail with cudaErrorMemoryAllocation, to test out-of-memory paths. Overlapping
 *   cudaMemcpy ranges (undefined on a GPU) fail with cudaErrorInvalidValue.
 * cuBLAS / cuBLASLt: column-major products of fp32, bf16 or fp16 operands with fp32
 *   accumulation in k order, the output (C, D, and cuBLASLt's bias and GELU aux) fp32 or the
 *   operands' 16-bit type (rounded once, to nearest even), beta == 0 never reads C,
 *   arguments validated as the libraries document; anything not emulated returns
 *   CUBLAS_STATUS_NOT_SUPPORTED. NCCL: a communicator of W ranks is W host threads of this
 *   process (see NCCL below), all-reduce only.
 * Everything is per host thread (thread_local) except memory accounting and NCCL's
 *   communicators; launches from two host threads at once are independent. */
#ifndef LLM_CUDA_EMU_H
#define LLM_CUDA_EMU_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>
#include <pthread.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define LLM_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LLM_EMU_ASAN 1
#endif
#endif
#ifndef LLM_EMU_ASAN
#define LLM_EMU_ASAN 0
#endif
#if LLM_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#ifndef LLM_CUDA_NCCL
#define LLM_CUDA_NCCL 1   /* the emulator has NCCL (all-reduce, ranks as host threads) */
#endif

//==== KERNEL LANGUAGE ===================================================================
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ thread_local   /* see SHARED MEMORY in the header comment */
#define __constant__ static
inline constexpr int warpSize = 32;

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned x, y, z; };

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

/* The fast-math intrinsics, at full precision (a GPU's differ in the last bits); glibc
 * declares __expf, __logf, __sinf, __cosf itself. */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }

/* bf16: the top 16 bits of a float. Rounding to nearest, ties to even: add 0x7fff plus the
 * lowest kept bit, then truncate; a NaN stays a (quiet) NaN instead of rounding to inf. */
struct __nv_bfloat16 { unsigned short x; };
typedef __nv_bfloat16 nv_bfloat16;
static inline __nv_bfloat16 __float2bfloat16(float f) {
    unsigned u = __float_as_uint(f);
    __nv_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) h.x = (unsigned short)((u >> 16) | 0x40u);
    else h.x = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }

/* fp16, IEEE binary16 (1 sign, 5 exponent, 10 fraction bits), rounded as __float2half_rn:
 * to nearest, ties to even. Normal halves (>= 2^-14) keep the float's top 10 fraction bits
 * with the exponent rebased by 127 - 15 = 112; below 2^-14 the subnormals, multiples of
 * 2^-24 (x * 2^24 is exact in float, rintf rounds it to even); from 65520 up (the midpoint
 * of the largest finite half, 65504, and 2^16, which is odd below) inf; NaN stays a quiet NaN. */
struct __half { unsigned short x; };
static inline __half __float2half(float f) {
    unsigned u = __float_as_uint(f), a = u & 0x7fffffffu, sign = (u >> 16) & 0x8000u;
    __half h;
    if (a > 0x7f800000u) h.x = (unsigned short)(sign | 0x7e00u);
    else if (a >= 0x477ff000u) h.x = (unsigned short)(sign | 0x7c00u);
    else if (a >= 0x38800000u) h.x = (unsigned short)(sign | ((a - 0x38000000u + 0x0fffu + ((a >> 13) & 1u)) >> 13));
    else h.x = (unsigned short)(sign | (unsigned)rintf(__uint_as_float(a) * 16777216.0f));
    return h;
}
static inline __half __float2half_rn(float f) { return __float2half(f); }
static inline float __half2float(__half h) {
    unsigned s = (unsigned)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu;
    if (e == 0) return __uint_as_float(s | __float_as_uint((float)m * 5.9604644775390625e-8f));  /* m 2^-24 */
    if (e == 31) return __uint_as_float(s | 0x7f800000u | (m << 13));
    return __uint_as_float(s | ((e + 112) << 23) | (m << 13));
}

/* Atomics: one OS thread runs a launch, but launches from other host threads may touch the
 * same memory, so these are real atomics. */
static inline float atomicAdd(float *p, float v) {
    unsigned old = __atomic_load_n((unsigned *)p, __ATOMIC_RELAXED), want;
    do { want = __float_as_uint(__uint_as_float(old) + v); }
    while (!__atomic_compare_exchange_n((unsigned *)p, &old, want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return __uint_as_float(old);
}
static inline double atomicAdd(double *p, double v) {
    unsigned long long old = __atomic_load_n((unsigned long long *)p, __ATOMIC_RELAXED), want;
    double o, w;
    do {
        memcpy(&o, &old, 8);
        w = o + v;
        memcpy(&want, &w, 8);
    } while (!__atomic_compare_exchange_n((unsigned long long *)p, &old, want, false, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return o;
}
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int atomicOr(int *p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicOr(unsigned *p, unsigned v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
static inline int atomicMax(int *p, int v) {
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return old;
}
static inline int atomicExch(int *p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
static inline int atomicCAS(int *p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
static inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

//==== RUNTIME TYPES =====================================================================
typedef enum cudaError {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3, cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17, cudaErrorInvalidDeviceFunction = 98, cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101, cudaErrorInvalidResourceHandle = 400, cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700, cudaErrorLaunchOutOfResources = 701, cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801, cudaErrorUnknown = 999
} cudaError_t;
typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4
} cudaMemcpyKind;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
struct llm_emu_stream { int flags; };
struct llm_emu_event { double t; };
typedef llm_emu_stream *cudaStream_t;
typedef llm_emu_event *cudaEvent_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, sharedMemPerMultiprocessor;
    size_t totalConstMem;
    int regsPerBlock, warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3];
    int major, minor, multiProcessorCount, maxThreadsPerMultiProcessor, l2CacheSize;
    int memoryBusWidth, integrated, concurrentKernels, pciBusID, pciDeviceID, unifiedAddressing;
};

namespace llm_emu {
//==== ERRORS ============================================================================
inline thread_local cudaError_t last_err = cudaSuccess;   /* cudaGetLastError's */
inline thread_local cudaError_t msg_code = cudaSuccess;   /* the error `msg` describes */
inline thread_local char msg[600];

static inline cudaError_t fail(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline cudaError_t fail(cudaError_t e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    msg_code = e;
    last_err = e;
    return e;
}

//==== FIBERS ============================================================================
enum { RUN = 0, WAIT_BLOCK = 1, WAIT_WARP = 2, DONE = 3 };
enum { BAR_SHFL = 1, BAR_SYNCWARP = 2 };
#if LLM_EMU_ASAN
static const size_t STACK = 512 * 1024;   /* ASan's redzones and fake frames need room */
#else
static const size_t STACK = 64 * 1024;
#endif

struct fiber {
    void *sp;             /* saved stack pointer (x86-64) */
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
    char *stack;          /* STACK bytes above a guard page */
    uint3 idx;            /* threadIdx */
    unsigned tid;         /* linear thread index in the block */
    int state, parity;    /* RUN, WAIT_BLOCK, WAIT_WARP or DONE; the shuffle bank to use next */
    void *fake;           /* ASan's fake stack while switched out */
};
struct warp {
    int live, arrived, kind;   /* unfinished lanes; lanes at the barrier; BAR_* of the first */
    unsigned gen;              /* barriers completed */
    unsigned long long slot[2][32];
    unsigned sgen[2][32];      /* the gen in which the slot was written */
};
struct block_run {
    const char *kernel;
    void (*body)(void *);
    void *ctx;
    fiber *f;                  /* nt fibers, by linear thread index */
    int *order;                /* start (and scan) order: order[k] = linear index */
    int *pos;                  /* pos[linear index] = k */
    warp *w;
    int nt, live, arrived, done;
    int failed;                /* a fiber stopped the launch (deadlock, divergent warp) */
    void *main_sp;
#if !defined(__x86_64__)
    ucontext_t main_uc;
#endif
    const void *main_bottom;
    size_t main_size;
};
inline thread_local block_run *blk;
inline thread_local fiber *cur;
inline thread_local uint3 blockIdx_, gridDim3_, blockDim3_;
inline thread_local fiber *pool;       /* fibers and their stacks, reused by every launch */
inline thread_local int pool_n;
inline thread_local int *pool_ints;
inline thread_local warp *pool_warps;

#if defined(__x86_64__)
/* switch(&save, to): push the callee-saved registers, save rsp, load `to`, pop, return into
 * the other fiber. A fresh stack holds six zero registers and the address of entry, which
 * calls fiber_main with rsp aligned as the ABI wants (16-aligned at the call). */
extern "C" void llm_emu_switch(void **save, void *to);
extern "C" void llm_emu_entry(void);
__asm__(".pushsection .text\n"
        "llm_emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        "llm_emu_entry:\n"
        "  call llm_emu_fiber_main@PLT\n"
        "  ud2\n"
        ".popsection\n");
#endif

static inline void asan_start(void **fake, const void *bottom, size_t size) {
#if LLM_EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake; (void)bottom; (void)size;
#endif
}
static inline void asan_finish(void *fake, const void **bottom, size_t *size) {
#if LLM_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom, size);
#else
    (void)fake; (void)bottom; (void)size;
#endif
}

/* Leave fiber `from` (NULL: the launcher) for fiber `to` (NULL: the launcher). A fiber that
 * has finished passes exiting = 1: it is never resumed, so ASan drops its fake stack. */
static inline void switch_to(fiber *from, fiber *to, int exiting) {
    block_run *b = blk;
    void **fake = exiting ? NULL : (from ? &from->fake : NULL);
    void *main_fake = NULL;
    if (!from) fake = &main_fake;
    if (to) asan_start(fake, to->stack, STACK);
    else asan_start(fake, b->main_bottom, b->main_size);
    cur = to;
#if defined(__x86_64__)
    llm_emu_switch(from ? &from->sp : &b->main_sp, to ? to->sp : b->main_sp);
#else
    swapcontext(from ? &from->uc : &b->main_uc, to ? &to->uc : &b->main_uc);
#endif
    /* back here: `from` runs again */
    if (from) {
        cur = from;
        asan_finish(from->fake, NULL, NULL);
    } else {
        asan_finish(main_fake, NULL, NULL);
    }
}

/* The next runnable fiber after `f` in start order (cyclically), or NULL. */
static inline fiber *next_runnable(fiber *f) {
    block_run *b = blk;
    int k0 = b->pos[f->tid];
    for (int d = 1; d <= b->nt; d++) {
        fiber *g = &b->f[b->order[(k0 + d) % b->nt]];
        if (g->state == RUN) return g;
    }
    return NULL;
}
/* Give way: to the next runnable fiber, or back to the launcher when none is (all done,
 * or a deadlock: the launcher tells them apart). */
static inline void yield(int exiting) {
    fiber *me = cur, *g = next_runnable(me);
    if (g == me) return;
    switch_to(me, g, exiting);
}
static inline void stop_launch(void) {   /* a fiber found the launch broken: never resumed */
    blk->failed = 1;
    switch_to(cur, NULL, 0);
}

static inline void release_block(void) {
    block_run *b = blk;
    for (int t = 0; t < b->nt; t++)
        if (b->f[t].state == WAIT_BLOCK) b->f[t].state = RUN;
    b->arrived = 0;
}
static inline void release_warp(int w) {
    block_run *b = blk;
    int t1 = (w + 1) * 32 < b->nt ? (w + 1) * 32 : b->nt;
    for (int t = w * 32; t < t1; t++)
        if (b->f[t].state == WAIT_WARP) b->f[t].state = RUN;
    b->w[w].arrived = 0;
    b->w[w].kind = 0;
    b->w[w].gen++;
}
static inline void sync_block(void) {
    block_run *b = blk;
    cur->state = WAIT_BLOCK;
    if (++b->arrived == b->live) release_block();
    else yield(0);
    if (cur->state != RUN) stop_launch();   /* resumed without release: cannot happen */
}
static inline void sync_warp(int kind) {
    block_run *b = blk;
    int wi = (int)(cur->tid / 32);
    warp *w = &b->w[wi];
    if (w->arrived == 0) w->kind = kind;
    else if (w->kind != kind) {
        fail(cudaErrorLaunchFailure, "kernel %s: block (%u,%u,%u): warp %d diverged: lanes wait at %s "
             "while lane %u reached %s (undefined on a GPU)", b->kernel, blockIdx_.x, blockIdx_.y, blockIdx_.z,
             wi, w->kind == BAR_SHFL ? "a shuffle" : "__syncwarp", cur->tid % 32,
             kind == BAR_SHFL ? "a shuffle" : "__syncwarp");
        stop_launch();
    }
    cur->state = WAIT_WARP;
    if (++w->arrived == w->live) release_warp(wi);
    else yield(0);
}
static inline void check_mask(unsigned mask) {
    if (mask != 0xffffffffu) {
        fail(cudaErrorLaunchFailure, "kernel %s: a warp op with mask 0x%08x: the emulator supports full "
             "warps only", blk->kernel, mask);
        stop_launch();
    }
}
static const unsigned long long SLOT_NAN = 0x7fc000007fc00000ull;   /* NaN as a float and a double */
/* Exchange through the warp's slots: lane writes, all meet, each reads its source lane. A
 * source lane that did not write in this round (it returned, or is past the block's end)
 * gives NaN: undefined on a GPU. */
template <class T> static inline T shfl(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    fiber *me = cur;
    warp *w = &blk->w[me->tid / 32];
    int p = me->parity;
    me->parity ^= 1;
    unsigned long long u = 0;
    memcpy(&u, &v, sizeof v);
    unsigned g = w->gen;
    w->slot[p][me->tid % 32] = u;
    w->sgen[p][me->tid % 32] = g;
    sync_warp(BAR_SHFL);
    T r;
    memcpy(&r, w->sgen[p][src & 31] == g ? &w->slot[p][src & 31] : &SLOT_NAN, sizeof r);
    return r;
}

extern "C" __attribute__((used)) inline void llm_emu_fiber_main(void) {
    block_run *b = blk;
    asan_finish(NULL, NULL, NULL);
    b->body(b->ctx);
    /* returned: drop out of the barriers (which may complete them) */
    fiber *me = cur;
    me->state = DONE;
    b->done++;
    warp *w = &b->w[me->tid / 32];
    b->live--;
    if (b->arrived > 0 && b->arrived == b->live) release_block();
    w->live--;
    if (w->arrived > 0 && w->arrived == w->live) release_warp((int)(me->tid / 32));
    fiber *g = next_runnable(me);
    switch_to(me, g, 1);   /* g NULL: the launcher */
    __builtin_trap();      /* a finished fiber is never resumed */
}
#if !defined(__x86_64__)
static void uc_entry(void) { llm_emu_fiber_main(); }
#endif

/* A host thread that launched gives its pool back when it exits (a rank of a data parallel
 * test runs on a thread of its own); the main thread's, at exit. */
struct pool_owner {
    ~pool_owner() {
        long pg = sysconf(_SC_PAGESIZE);
        for (int t = 0; t < pool_n; t++) {
#if LLM_EMU_ASAN
            __asan_unpoison_memory_region(pool[t].stack, STACK);   /* the next owner of these pages */
#endif
            munmap(pool[t].stack - pg, STACK + (size_t)pg);
        }
        free(pool); free(pool_ints); free(pool_warps);
        pool = NULL; pool_ints = NULL; pool_warps = NULL; pool_n = 0;
    }
};
inline thread_local pool_owner pool_owner_;   /* constructed at this thread's first pool */

/* Fibers, warps and index arrays for nt threads (kept and reused). */
static inline bool ensure_pool(int nt) {
    if (nt <= pool_n) return true;
    (void)&pool_owner_;
    fiber *f = (fiber *)realloc(pool, (size_t)nt * sizeof *f);
    if (!f) return false;
    pool = f;
    long pg = sysconf(_SC_PAGESIZE);
    for (int t = pool_n; t < nt; t++) {
        char *m = (char *)mmap(NULL, STACK + (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) { pool_n = t; return false; }
        mprotect(m, (size_t)pg, PROT_NONE);   /* guard page: a stack overflow faults */
        pool[t].stack = m + pg;
        pool_n = t + 1;
    }
    free(pool_ints);
    free(pool_warps);
    pool_ints = (int *)malloc(2 * (size_t)nt * sizeof(int));
    pool_warps = (warp *)malloc((size_t)(nt + 31) / 32 * sizeof(warp));
    return pool_ints && pool_warps;
}
static inline void fiber_init(fiber *f) {
#if LLM_EMU_ASAN
    /* the frames of fiber_main and switch_to never return (the fiber switches away for good),
     * so their redzones stay poisoned near the top of a reused stack */
    __asan_unpoison_memory_region(f->stack + STACK - 16384, 16384);
#endif
    f->fake = NULL;
#if defined(__x86_64__)
    void **sp = (void **)(f->stack + STACK);
    *--sp = (void *)llm_emu_entry;       /* ret target; after it rsp = top, 16-aligned, for the call */
    for (int r = 0; r < 6; r++) *--sp = NULL;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = STACK;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, uc_entry, 0);
#endif
}

//==== LAUNCH ============================================================================
inline thread_local const void *attr_fn[64];   /* cudaFuncSetAttribute: kernel -> max dynamic shmem */
inline thread_local int attr_val[64];
inline thread_local int attr_n;
inline thread_local unsigned long long launches;
static const size_t SMEM_DEFAULT = 48 * 1024, SMEM_MAX = 227 * 1024;
/* LLM_CUDA_EMU_SM (see ARCHITECTURE): the emulated architecture, as 10 major + minor. */
static inline int arch(void) {
    const char *s = getenv("LLM_CUDA_EMU_SM");
    int a = s ? atoi(s) : 90;
    return a == 70 || a == 75 || a == 80 || a == 86 || a == 89 ? a : 90;
}
/* Its largest dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin). */
static inline size_t smem_optin(void) {
    switch (arch()) {
    case 70: return 96 * 1024;
    case 75: return 64 * 1024;
    case 80: return 163 * 1024;
    case 86: case 89: return 99 * 1024;
    default: return SMEM_MAX;
    }
}

static inline int smem_limit(const void *k) {
    for (int i = 0; i < attr_n; i++)
        if (attr_fn[i] == k) return attr_val[i];
    return (int)SMEM_DEFAULT;
}
} /* namespace llm_emu */

/* The dynamic shared memory: kernels declare `extern __shared__ float sm[]`, which (with
 * __shared__ thread_local) names this array. Sized for the largest opt-in. */
alignas(16) inline thread_local float sm[227 * 1024 / sizeof(float) + 16];

namespace llm_emu {
#if LLM_EMU_ASAN
/* An ASan report from inside a kernel also says which CUDA thread made the access. */
static void asan_where(const char *report) {
    (void)report;
    if (blk && cur)
        fprintf(stderr, "cuda_emu: the access above was made by kernel %s, block (%u,%u,%u), thread (%u,%u,%u)\n",
                blk->kernel, blockIdx_.x, blockIdx_.y, blockIdx_.z, cur->idx.x, cur->idx.y, cur->idx.z);
}
#endif
static inline void run_grid(const char *name, const void *kfn, dim3 g, dim3 bd, size_t shmem,
                            void (*body)(void *), void *ctx) {
    unsigned long long nt = (unsigned long long)bd.x * bd.y * bd.z;
    if (g.x == 0 || g.y == 0 || g.z == 0 || nt == 0 || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535 ||
        bd.x > 1024 || bd.y > 1024 || bd.z > 64 || nt > 1024) {
        fail(cudaErrorInvalidConfiguration, "kernel %s: invalid configuration argument: grid (%u,%u,%u), "
             "block (%u,%u,%u) (at most 1024 threads, grid y and z at most 65535)", name, g.x, g.y, g.z,
             bd.x, bd.y, bd.z);
        return;
    }
    if (shmem > (size_t)smem_limit(kfn)) {
        fail(cudaErrorInvalidValue, "kernel %s: %zu bytes of dynamic shared memory > the limit %d "
             "(48 KiB unless raised with cudaFuncSetAttribute, at most %zu KiB on sm_%d)", name, shmem,
             smem_limit(kfn), smem_optin() / 1024, arch());
        return;
    }
    if (!ensure_pool((int)nt)) {
        fail(cudaErrorLaunchOutOfResources, "kernel %s: the emulator cannot allocate %llu fiber stacks",
             name, nt);
        return;
    }
    block_run b;
    memset(&b, 0, sizeof b);
    b.kernel = name; b.body = body; b.ctx = ctx; b.f = pool; b.nt = (int)nt;
    b.order = pool_ints; b.pos = pool_ints + nt; b.w = pool_warps;
    int nw = (int)((nt + 31) / 32);
    block_run *saved_blk = blk;   /* a launch inside a kernel is not CUDA; keep it sane anyway */
    fiber *saved_cur = cur;
    blk = &b;
#if LLM_EMU_ASAN
    __asan_set_error_report_callback(asan_where);
    /* the launcher's own stack, for switching back to it */
    pthread_attr_t at;
    void *sa = NULL;
    size_t ss = 0;
    if (pthread_getattr_np(pthread_self(), &at) == 0) {
        pthread_attr_getstack(&at, &sa, &ss);
        pthread_attr_destroy(&at);
    }
    b.main_bottom = sa; b.main_size = ss;
#endif
    gridDim3_ = {g.x, g.y, g.z};
    blockDim3_ = {bd.x, bd.y, bd.z};
    size_t nsm = (shmem + sizeof(float) - 1) / sizeof(float);
#if LLM_EMU_ASAN
    __asan_unpoison_memory_region(sm, sizeof sm);
    __asan_poison_memory_region((char *)sm + nsm * sizeof(float), sizeof sm - nsm * sizeof(float));
#endif
    unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
    launches++;   /* a one-block kernel alternates its order from launch to launch */
    /* Blocks run one after another, in index order on one launch and in reverse on the
     * next: a GPU promises no order, so a kernel that needs one shows it here. */
    int backwards = (launches & 2) != 0;
    for (unsigned long long bi = 0; bi < nblocks && !b.failed; bi++) {
                unsigned long long li = backwards ? nblocks - 1 - bi : bi;
                unsigned bx = (unsigned)(li % g.x), by = (unsigned)(li / g.x % g.y), bz = (unsigned)(li / g.x / g.y);
                blockIdx_ = {bx, by, bz};
                for (size_t i = 0; i < nsm; i++) sm[i] = NAN;
                for (int t = 0; t < b.nt; t++) {
                    fiber *f = &b.f[t];
                    f->tid = (unsigned)t;
                    f->idx = {t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
                    f->state = RUN;
                    f->parity = 0;
                    fiber_init(f);
                    int k = ((bi + launches) & 1) ? b.nt - 1 - t : t;   /* every other block in reverse */
                    b.order[k] = t;
                    b.pos[t] = k;
                }
                for (int w = 0; w < nw; w++) {
                    b.w[w].live = w * 32 + 32 <= b.nt ? 32 : b.nt - w * 32;
                    b.w[w].arrived = b.w[w].kind = 0;
                    b.w[w].gen = 0;
                    for (int i = 0; i < 64; i++) b.w[w].sgen[i / 32][i % 32] = ~0u;
                }
                b.live = b.nt; b.arrived = 0; b.done = 0;
                switch_to(NULL, &b.f[b.order[0]], 0);
                if (!b.failed && b.done != b.nt) {   /* nobody runnable, somebody unfinished */
                    int at_block = 0, at_warp = 0;
                    for (int t = 0; t < b.nt; t++) {
                        at_block += b.f[t].state == WAIT_BLOCK;
                        at_warp += b.f[t].state == WAIT_WARP;
                    }
                    fail(cudaErrorLaunchFailure, "kernel %s: deadlock in block (%u,%u,%u) of %llu: %d threads "
                         "wait at __syncthreads, %d at a warp barrier (__syncwarp or a shuffle), %d returned: a "
                         "barrier under a branch not every thread takes (hangs or is undefined on a GPU)",
                         name, bx, by, bz, nblocks, at_block, at_warp, b.done);
                    b.failed = 1;
                }
            }
#if LLM_EMU_ASAN
    __asan_unpoison_memory_region(sm, sizeof sm);
    if (b.failed)   /* the stopped fibers' frames stay poisoned on stacks that will be reused */
        for (int t = 0; t < pool_n; t++) __asan_unpoison_memory_region(pool[t].stack, STACK);
#endif
    blk = saved_blk;
    cur = saved_cur;
}

/* LLM__CU_LAUNCH(k, grid, block, shmem, stream)(args...): the object below; its call takes
 * the kernel's parameters by value (converted at the call, as <<<>>> does) and every CUDA
 * thread calls the kernel with its own copy. */
template <class... P> struct launch {
    void (*k)(P...);
    const char *name;
    dim3 grid, block;
    size_t shmem;
    struct args_t {
        void (*k)(P...);
        std::tuple<P...> a;
    };
    static void body(void *p) {
        args_t *c = (args_t *)p;
        std::apply(c->k, c->a);
    }
    void operator()(P... a) const {
        args_t c{k, std::tuple<P...>(a...)};
        run_grid(name, (const void *)k, grid, block, shmem, body, &c);
    }
};
template <class... P>
static inline launch<P...> make_launch(void (*k)(P...), const char *name, dim3 grid, dim3 block, size_t shmem,
                                       cudaStream_t stream) {
    (void)stream;   /* one synchronous stream */
    return launch<P...>{k, name, grid, block, shmem};
}
} /* namespace llm_emu */

#define LLM__CU_LAUNCH(kernel, grid, block, shmem, stream) \
    llm_emu::make_launch(kernel, #kernel, grid, block, shmem, stream)

#define threadIdx (llm_emu::cur->idx)
#define blockIdx (llm_emu::blockIdx_)
#define blockDim (llm_emu::blockDim3_)
#define gridDim (llm_emu::gridDim3_)

static inline void __syncthreads(void) { llm_emu::sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    llm_emu::check_mask(mask);
    llm_emu::sync_warp(llm_emu::BAR_SYNCWARP);
}
/* Shuffles with width w (a power of two <= 32): lanes form groups of w; a source outside
 * the lane's group reads the lane itself, as the CUDA guide specifies. */
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    llm_emu::check_mask(mask);
    int lane = (int)llm_emu::cur->tid % 32;
    return llm_emu::shfl(v, (lane & ~(width - 1)) | (src & (width - 1)));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int x, int width = 32) {
    llm_emu::check_mask(mask);
    int lane = (int)llm_emu::cur->tid % 32, s = lane ^ x;
    return llm_emu::shfl(v, (s & ~(width - 1)) == (lane & ~(width - 1)) ? s : lane);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    llm_emu::check_mask(mask);
    int lane = (int)llm_emu::cur->tid % 32, s = lane + (int)d;
    return llm_emu::shfl(v, (s & ~(width - 1)) == (lane & ~(width - 1)) ? s : lane);
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    llm_emu::check_mask(mask);
    int lane = (int)llm_emu::cur->tid % 32, s = lane - (int)d;
    return llm_emu::shfl(v, s >= (lane & ~(width - 1)) ? s : lane);
}

//==== RUNTIME ===========================================================================
namespace llm_emu {
static const size_t DEVICE_BYTES = (size_t)16 << 30;
inline std::mutex mem_mu;
inline std::unordered_map<void *, size_t> *allocs;   /* device pointer -> bytes */
inline size_t mem_used;
inline long long malloc_calls, fail_at = -1;
inline thread_local int device;   /* cudaSetDevice's, per host thread as in CUDA */
/* LLM_CUDA_EMU_DEVICES, 1..64 (anything else: 1) */
static inline int device_count(void) {
    const char *s = getenv("LLM_CUDA_EMU_DEVICES");
    int n = s ? atoi(s) : 1;
    return n >= 1 && n <= 64 ? n : 1;
}
static inline bool bad_device(int d) { return d < 0 || d >= device_count(); }
static inline bool overlap(const void *a, const void *b, size_t n) {
    const char *x = (const char *)a, *y = (const char *)b;
    return n && x < y + n && y < x + n;
}
} /* namespace llm_emu */

static inline const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    default: return "cudaErrorUnknown";
    }
}
/* The detailed message of the last failure when it is of this kind (a launch names its
 * kernel and the reason), else the generic text. */
static inline const char *cudaGetErrorString(cudaError_t e) {
    if (e != cudaSuccess && e == llm_emu::msg_code && llm_emu::msg[0]) return llm_emu::msg;
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    default: return "unknown error";
    }
}
static inline cudaError_t cudaGetLastError(void) {
    cudaError_t e = llm_emu::last_err;
    llm_emu::last_err = cudaSuccess;
    return e;
}
static inline cudaError_t cudaPeekAtLastError(void) { return llm_emu::last_err; }

static inline cudaError_t cudaGetDeviceCount(int *n) { *n = llm_emu::device_count(); return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int d) {
    if (llm_emu::bad_device(d))
        return llm_emu::fail(cudaErrorInvalidDevice, "invalid device ordinal %d (the emulator has devices 0..%d; "
                             "LLM_CUDA_EMU_DEVICES sets how many)", d, llm_emu::device_count() - 1);
    llm_emu::device = d;
    return cudaSuccess;
}
static inline cudaError_t cudaGetDevice(int *d) { *d = llm_emu::device; return cudaSuccess; }
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (llm_emu::bad_device(d)) return llm_emu::fail(cudaErrorInvalidDevice, "invalid device ordinal %d", d);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "llm.h CUDA emulator");
    p->totalGlobalMem = llm_emu::DEVICE_BYTES;
    p->sharedMemPerBlock = llm_emu::SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = llm_emu::smem_optin();
    p->sharedMemPerMultiprocessor = 228 * 1024;
    p->totalConstMem = 64 * 1024;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = 1024; p->maxThreadsDim[1] = 1024; p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff; p->maxGridSize[1] = 65535; p->maxGridSize[2] = 65535;
    p->major = llm_emu::arch() / 10; p->minor = llm_emu::arch() % 10;
    p->multiProcessorCount = 132;
    p->maxThreadsPerMultiProcessor = 2048;
    p->l2CacheSize = 50 << 20;
    p->memoryBusWidth = 5120;
    p->concurrentKernels = 1;
    p->unifiedAddressing = 1;
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *k, cudaFuncAttribute a, int v) {
    using namespace llm_emu;
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || (size_t)v > smem_optin())
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute(%d, %d): not emulated or over %zu KiB (sm_%d)",
                    (int)a, v, smem_optin() / 1024, arch());
    for (int i = 0; i < attr_n; i++)
        if (attr_fn[i] == (const void *)k) { attr_val[i] = v; return cudaSuccess; }
    if (attr_n == 64) return fail(cudaErrorNotSupported, "cudaFuncSetAttribute: too many kernels");
    attr_fn[attr_n] = (const void *)k;
    attr_val[attr_n++] = v;
    return cudaSuccess;
}

static inline cudaError_t cudaMalloc(void **p, size_t n) {
    using namespace llm_emu;
    *p = NULL;
    std::lock_guard<std::mutex> g(mem_mu);
    if (fail_at < 0) {
        const char *s = getenv("LLM_CUDA_EMU_FAIL_MALLOC_AFTER");
        fail_at = s && atoll(s) > 0 ? atoll(s) : 0;
    }
    if (!allocs) allocs = new std::unordered_map<void *, size_t>();
    if (++malloc_calls == fail_at)
        return fail(cudaErrorMemoryAllocation, "out of memory (LLM_CUDA_EMU_FAIL_MALLOC_AFTER=%lld)", fail_at);
    if (n > DEVICE_BYTES - mem_used) return fail(cudaErrorMemoryAllocation, "out of memory");
    if (n == 0) return cudaSuccess;
    void *q = NULL;
    if (posix_memalign(&q, 256, n) != 0) return fail(cudaErrorMemoryAllocation, "out of memory (host)");
    (*allocs)[q] = n;
    mem_used += n;
    *p = q;
    return cudaSuccess;
}
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
static inline cudaError_t cudaFree(void *p) {
    using namespace llm_emu;
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> g(mem_mu);
    auto it = allocs ? allocs->find(p) : std::unordered_map<void *, size_t>::iterator();
    if (!allocs || it == allocs->end())
        return fail(cudaErrorInvalidValue, "cudaFree(%p): not a pointer cudaMalloc returned (or freed twice)", p);
    mem_used -= it->second;
    allocs->erase(it);
    free(p);
    return cudaSuccess;
}
static inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    std::lock_guard<std::mutex> g(llm_emu::mem_mu);
    *free_b = llm_emu::DEVICE_BYTES - llm_emu::mem_used;
    *total_b = llm_emu::DEVICE_BYTES;
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind) {
    if ((int)kind < 0 || (int)kind > 4) return llm_emu::fail(cudaErrorInvalidValue, "cudaMemcpy: bad kind %d", (int)kind);
    if (n && (!dst || !src)) return llm_emu::fail(cudaErrorInvalidValue, "cudaMemcpy of %zu bytes with a NULL pointer", n);
    if (llm_emu::overlap(dst, src, n))
        return llm_emu::fail(cudaErrorInvalidValue, "cudaMemcpy of %zu bytes between overlapping ranges "
                             "(undefined on a GPU)", n);
    if (n) memcpy(dst, src, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                                          cudaStream_t s = 0) {
    (void)s;
    return cudaMemcpy(dst, src, n, kind);
}
static inline cudaError_t cudaMemset(void *p, int v, size_t n) {
    if (n && !p) return llm_emu::fail(cudaErrorInvalidValue, "cudaMemset of %zu bytes at NULL", n);
    if (n) memset(p, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0) {
    (void)s;
    return cudaMemset(p, v, n);
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new llm_emu_stream{(int)flags};
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; return cudaSuccess; }
static inline double llm_emu_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned f) { (void)f; *e = new llm_emu_event{0}; return cudaSuccess; }
static inline cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0) { (void)s; e->t = llm_emu_now_ms(); return cudaSuccess; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t e) { (void)e; return cudaSuccess; }
static inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(b->t - a->t); return cudaSuccess; }
static inline cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned f = 0) { (void)s; (void)e; (void)f; return cudaSuccess; }

//==== CUBLAS ============================================================================
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_ARCH_MISMATCH = 8, CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13, CUBLAS_STATUS_INTERNAL_ERROR = 14, CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum {
    CUBLAS_DEFAULT_MATH = 0, CUBLAS_TENSOR_OP_MATH = 1, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3
} cublasMath_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef cudaDataType cudaDataType_t;
typedef enum {
    CUBLAS_COMPUTE_16F = 64, CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_64F = 70, CUBLAS_COMPUTE_32F_FAST_16F = 74, CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77
} cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 } cublasGemmAlgo_t;
struct llm_emu_blas { cudaStream_t stream; cublasMath_t math; };
typedef llm_emu_blas *cublasHandle_t;

static inline const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
static inline cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new llm_emu_blas{NULL, CUBLAS_DEFAULT_MATH}; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}

namespace llm_emu {
static inline float ld(const float *p, size_t i) { return p[i]; }
static inline float ld(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
static inline float ld(const __half *p, size_t i) { return __half2float(p[i]); }
/* Store v rounded to the element type (to nearest even), as a library writes its output. */
static inline void st(float *p, size_t i, float v) { p[i] = v; }
static inline void st(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16(v); }
static inline void st(__half *p, size_t i, float v) { p[i] = __float2half(v); }
static inline float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
/* What follows the product, per output element (cuBLASLt epilogues; plain gemm: none).
 * The bias and the aux matrix have the output's type TD (cuBLASLt's default). */
template <class TD> struct epilogue { const TD *bias; TD *aux; long long aux_ld; int gelu; };

/* Column-major D(m,n) = epi(alpha op(A) op(B) + beta C), op(X) = X or X^T, C and D of type
 * TD (fp32, or a 16-bit type: read widened, written rounded once). Every output is one
 * fp32 sum over p = 0..k-1 in that order, starting at 0: the transposed-A form is a dot
 * product along A's column, the plain form adds columns of A (same order per element).
 * beta == 0 does not read C (NaN there does not propagate), as cuBLAS documents. */
template <class TA, class TB, class TD>
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const TA *A,
                 long long lda, const TB *B, long long ldb, float beta, const TD *C, long long ldc, TD *D,
                 long long ldd, const epilogue<TD> *ep) {
    float *bcol = (float *)malloc(((size_t)k + (size_t)m + 1) * sizeof(float)), *acc = bcol + k;
    if (!bcol) return;
    for (int j = 0; j < n; j++) {
        for (int p = 0; p < k; p++) bcol[p] = tb == CUBLAS_OP_N ? ld(B, (size_t)j * ldb + p) : ld(B, (size_t)p * ldb + j);
        if (ta == CUBLAS_OP_N) {
            for (int i = 0; i < m; i++) acc[i] = 0.0f;
            for (int p = 0; p < k; p++) {
                const TA *a = A + (size_t)p * lda;
                float bp = bcol[p];
                for (int i = 0; i < m; i++) acc[i] += ld(a, i) * bp;
            }
        } else {
            for (int i = 0; i < m; i++) {
                const TA *a = A + (size_t)i * lda;
                float s = 0.0f;
                for (int p = 0; p < k; p++) s += ld(a, p) * bcol[p];
                acc[i] = s;
            }
        }
        for (int i = 0; i < m; i++) {
            float x = alpha * acc[i];
            if (beta != 0.0f) x += beta * ld(C, (size_t)j * ldc + i);
            if (ep) {
                if (ep->bias) x += ld(ep->bias, i);
                if (ep->aux) st(ep->aux, (size_t)j * ep->aux_ld + i, x);
                if (ep->gelu) x = gelu(x);
            }
            st(D, (size_t)j * ldd + i, x);
        }
    }
    free(bcol);
}
static inline bool op_ok(int op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }
static inline cublasOperation_t op_real(int op) { return op == CUBLAS_OP_N ? CUBLAS_OP_N : CUBLAS_OP_T; }
/* cuBLAS's argument checks for C(m,n) = op(A)(m,k) op(B)(k,n). */
static inline cublasStatus_t gemm_args(cublasHandle_t h, int ta, int tb, int m, int n, int k, long long lda,
                                       long long ldb, long long ldc) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!op_ok(ta) || !op_ok(tb) || m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    long long ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
} /* namespace llm_emu */

static inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                         const float *beta, float *C, int ldc) {
    cublasStatus_t s = llm_emu::gemm_args(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS || m == 0 || n == 0) return s;
    llm_emu::gemm(llm_emu::op_real(ta), llm_emu::op_real(tb), m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc, C, ldc,
                  (const llm_emu::epilogue<float> *)NULL);
    return CUBLAS_STATUS_SUCCESS;
}
/* The products cuBLAS documents for compute type 32F, as emulated: A and B of one type,
 * C fp32, or C of A's 16-bit type. */
namespace llm_emu {
template <class TA, class TD>
static void gemm_as(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float al, const void *A,
                    long long lda, const void *B, long long ldb, float be, void *C, long long ldc,
                    const epilogue<TD> *ep) {
    gemm(op_real(ta), op_real(tb), m, n, k, al, (const TA *)A, lda, (const TA *)B, ldb, be, (const TD *)C, ldc,
         (TD *)C, ldc, ep);
}
} /* namespace llm_emu */
static inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          const void *B, cudaDataType bt, int ldb, const void *beta, void *C,
                                          cudaDataType ct, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    cublasStatus_t s = llm_emu::gemm_args(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    (void)algo;
    if ((ct != CUDA_R_32F && ct != at) || (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC) ||
        at != bt || (at != CUDA_R_32F && at != CUDA_R_16BF && at != CUDA_R_16F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *(const float *)alpha, be = *(const float *)beta;
    const llm_emu::epilogue<float> *none = NULL;
    if (at == CUDA_R_32F)
        llm_emu::gemm_as<float>(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, none);
    else if (at == CUDA_R_16BF && ct == CUDA_R_32F)
        llm_emu::gemm_as<__nv_bfloat16>(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, none);
    else if (at == CUDA_R_16BF)
        llm_emu::gemm_as<__nv_bfloat16>(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc,
                                        (const llm_emu::epilogue<__nv_bfloat16> *)NULL);
    else if (ct == CUDA_R_32F)
        llm_emu::gemm_as<__half>(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, none);
    else
        llm_emu::gemm_as<__half>(ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, (const llm_emu::epilogue<__half> *)NULL);
    return CUBLAS_STATUS_SUCCESS;
}

//==== CUBLASLT ==========================================================================
typedef enum {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0, CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1, CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
    CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE = 22,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26
} cublasLtMatmulDescAttributes_t;
typedef enum {
    CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_RELU = 2, CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_GELU = 32, CUBLASLT_EPILOGUE_GELU_AUX = 32 | 128, CUBLASLT_EPILOGUE_GELU_BIAS = 32 | 4,
    CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4, CUBLASLT_EPILOGUE_DGELU = 64 | 128,
    CUBLASLT_EPILOGUE_DGELU_BGRAD = 64 | 128 | 16, CUBLASLT_EPILOGUE_BGRADA = 256, CUBLASLT_EPILOGUE_BGRADB = 512
} cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8
} cublasLtMatmulPreferenceAttributes_t;
typedef struct { uint64_t data[8]; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;
struct llm_emu_lt { int magic; };
struct llm_emu_lt_desc {
    cublasComputeType_t compute;
    cudaDataType scale;
    int32_t ta, tb;
    uint32_t epi;
    const void *bias;
    void *aux;
    int64_t aux_ld;
    int32_t bias_type, aux_type;
};
struct llm_emu_lt_layout { cudaDataType type; uint64_t rows, cols; int64_t ld; };
struct llm_emu_lt_pref { uint64_t ws; uint32_t align[4]; };
typedef llm_emu_lt *cublasLtHandle_t;
typedef llm_emu_lt_desc *cublasLtMatmulDesc_t;
typedef llm_emu_lt_layout *cublasLtMatrixLayout_t;
typedef llm_emu_lt_pref *cublasLtMatmulPreference_t;

static inline const char *cublasLtGetStatusString(cublasStatus_t s) { return cublasGetStatusString(s); }
static inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { *h = new llm_emu_lt{1}; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType_t s) {
    *d = new llm_emu_lt_desc{c, s, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL, NULL, 0, -1, -1};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { delete d; return CUBLAS_STATUS_SUCCESS; }
/* Each attribute has one type; a buffer of another size is CUBLAS_STATUS_INVALID_VALUE. */
static inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                            const void *buf, size_t n) {
    if (!d || !buf) return CUBLAS_STATUS_INVALID_VALUE;
#define LLM_EMU_ATTR(field) do { if (n != sizeof d->field) return CUBLAS_STATUS_INVALID_VALUE; \
        memcpy(&d->field, buf, n); return CUBLAS_STATUS_SUCCESS; } while (0)
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: LLM_EMU_ATTR(ta);
    case CUBLASLT_MATMUL_DESC_TRANSB: LLM_EMU_ATTR(tb);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: LLM_EMU_ATTR(epi);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: LLM_EMU_ATTR(bias);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: LLM_EMU_ATTR(aux);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: LLM_EMU_ATTR(aux_ld);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: LLM_EMU_ATTR(bias_type);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: LLM_EMU_ATTR(aux_type);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
#undef LLM_EMU_ATTR
}
static inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows,
                                                        uint64_t cols, int64_t ld) {
    *l = new llm_emu_lt_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { delete l; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new llm_emu_lt_pref{0, {256, 256, 256, 256}};   /* documented defaults */
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { delete p; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                                  cublasLtMatmulPreferenceAttributes_t a,
                                                                  const void *buf, size_t n) {
    if (!p || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (n != sizeof p->ws) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->ws, buf, n);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (a >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && a <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) {
        if (n != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&p->align[a - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, n);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

namespace llm_emu {
/* The checks cuBLASLt documents for D = epi(alpha op(A) op(B) + beta C), op(A) (m,k),
 * op(B) (k,n), C and D (m,n): layouts agree, ld >= rows, the emulated types (A and B alike;
 * C and D alike, fp32 or A's 16-bit type) and epilogues (else NOT_SUPPORTED); the bias and
 * aux types left at their default, D's, or set to it; a bias pointer for the BIAS
 * epilogues, an aux pointer with ld >= m and ld % 8 == 0 for GELU_AUX. */
static inline cublasStatus_t lt_check(const llm_emu_lt_desc *d, const llm_emu_lt_layout *a,
                                      const llm_emu_lt_layout *b, const llm_emu_lt_layout *c,
                                      const llm_emu_lt_layout *dd) {
    if (!d || !a || !b || !c || !dd) return CUBLAS_STATUS_INVALID_VALUE;
    if (!op_ok(d->ta) || !op_ok(d->tb)) return CUBLAS_STATUS_INVALID_VALUE;
    uint64_t m = d->ta == CUBLAS_OP_N ? a->rows : a->cols, k = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t kb = d->tb == CUBLAS_OP_N ? b->rows : b->cols, n = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (k != kb || c->rows != m || c->cols != n || dd->rows != m || dd->cols != n) return CUBLAS_STATUS_INVALID_VALUE;
    if (m > 0x7fffffff || n > 0x7fffffff || k > 0x7fffffff) return CUBLAS_STATUS_NOT_SUPPORTED;
    const llm_emu_lt_layout *all[4] = {a, b, c, dd};
    for (int i = 0; i < 4; i++)
        if (all[i]->ld < 1 || (uint64_t)all[i]->ld < all[i]->rows) return CUBLAS_STATUS_INVALID_VALUE;
    if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F || a->type != b->type ||
        (a->type != CUDA_R_32F && a->type != CUDA_R_16BF && a->type != CUDA_R_16F) || c->type != dd->type ||
        (dd->type != CUDA_R_32F && dd->type != a->type))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    uint32_t e = d->epi;
    if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS && e != CUBLASLT_EPILOGUE_GELU &&
        e != CUBLASLT_EPILOGUE_GELU_BIAS && e != CUBLASLT_EPILOGUE_GELU_AUX && e != CUBLASLT_EPILOGUE_GELU_AUX_BIAS)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((e & CUBLASLT_EPILOGUE_BIAS) && d->bias_type != -1 && d->bias_type != (int32_t)dd->type)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((e & 128) && d->aux_type != -1 && d->aux_type != (int32_t)dd->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if ((e & CUBLASLT_EPILOGUE_BIAS) && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
    if ((e & 128) && (!d->aux || d->aux_ld < (int64_t)m || d->aux_ld % 8 != 0)) return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
} /* namespace llm_emu */

namespace llm_emu {
/* The product with its epilogue, A and B of type TA, C, D, bias and aux of type TD. */
template <class TA, class TD>
static void lt_run(const llm_emu_lt_desc *d, int m, int n, int k, float al, const void *A, long long lda,
                   const void *B, long long ldb, float be, const void *C, long long ldc, void *D, long long ldd) {
    epilogue<TD> ep;
    ep.bias = (d->epi & CUBLASLT_EPILOGUE_BIAS) ? (const TD *)d->bias : NULL;
    ep.aux = (d->epi & 128) ? (TD *)d->aux : NULL;
    ep.aux_ld = d->aux_ld;
    ep.gelu = (d->epi & CUBLASLT_EPILOGUE_GELU) != 0;
    gemm(op_real(d->ta), op_real(d->tb), m, n, k, al, (const TA *)A, lda, (const TA *)B, ldb, be, (const TD *)C, ldc,
         (TD *)D, ldd, &ep);
}
} /* namespace llm_emu */

/* One algorithm: the preference's alignments are stored in it, and cublasLtMatmul
 * rejects pointers less aligned than that (a real kernel chosen for them may fault). */
static inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                                            cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                                            cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                                            cublasLtMatmulPreference_t p, int requested,
                                                            cublasLtMatmulHeuristicResult_t *res, int *returned) {
    if (returned) *returned = 0;
    if (!h || !p || !res || !returned || requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s = llm_emu::lt_check(d, a, b, c, dd);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    memset(res, 0, sizeof *res);
    for (int i = 0; i < 4; i++) res->algo.data[i] = p->align[i];
    res->algo.data[7] = 0x6c6c6d2e68ull;   /* "llm.h": marks an algo from here */
    res->state = CUBLAS_STATUS_SUCCESS;
    res->wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                                            const void *A, cublasLtMatrixLayout_t a, const void *B,
                                            cublasLtMatrixLayout_t b, const void *beta, const void *C,
                                            cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t dd,
                                            const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes,
                                            cudaStream_t stream) {
    (void)ws; (void)ws_bytes; (void)stream;
    if (!h || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t s = llm_emu::lt_check(d, a, b, c, dd);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (algo && algo->data[7] == 0x6c6c6d2e68ull) {
        const void *ptr[4] = {A, B, C, D};
        for (int i = 0; i < 4; i++)
            if (algo->data[i] && (uintptr_t)ptr[i] % algo->data[i] != 0) return CUBLAS_STATUS_INVALID_VALUE;
    }
    int m = (int)dd->rows, n = (int)dd->cols, k = (int)(d->ta == CUBLAS_OP_N ? a->cols : a->rows);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *(const float *)alpha, be = *(const float *)beta;
    if (a->type == CUDA_R_32F)
        llm_emu::lt_run<float, float>(d, m, n, k, al, A, a->ld, B, b->ld, be, C, c->ld, D, dd->ld);
    else if (a->type == CUDA_R_16BF && dd->type == CUDA_R_32F)
        llm_emu::lt_run<__nv_bfloat16, float>(d, m, n, k, al, A, a->ld, B, b->ld, be, C, c->ld, D, dd->ld);
    else if (a->type == CUDA_R_16BF)
        llm_emu::lt_run<__nv_bfloat16, __nv_bfloat16>(d, m, n, k, al, A, a->ld, B, b->ld, be, C, c->ld, D, dd->ld);
    else if (dd->type == CUDA_R_32F)
        llm_emu::lt_run<__half, float>(d, m, n, k, al, A, a->ld, B, b->ld, be, C, c->ld, D, dd->ld);
    else
        llm_emu::lt_run<__half, __half>(d, m, n, k, al, A, a->ld, B, b->ld, be, C, c->ld, D, dd->ld);
    return CUBLAS_STATUS_SUCCESS;
}

//==== NCCL ==============================================================================
/* A communicator of W ranks is W host threads of this process, one per emulated device: the
 * way one process drives several GPUs with a thread per GPU, each calling ncclCommInitRank.
 *
 * Joining: ncclCommInitRank blocks until all nranks ranks have called it with the same id,
 * as NCCL's does. The communicators still gathering are a process-wide list keyed by the
 * id's bytes. A rank taken twice, an nranks unlike the first caller's, or two ranks on one
 * device (NCCL refuses that too: "Duplicate GPU detected") is ncclInvalidUsage on every rank
 * that joined; a rank still missing after LLM_CUDA_EMU_NCCL_TIMEOUT seconds (default 60) is
 * ncclSystemError on all that came, so a broken test fails instead of hanging CI.
 *
 * All-reduce: the emulator runs everything at the call (a stream is not asynchronous), so
 * ncclAllReduce blocks until every rank of the communicator has called it. The last to
 * arrive checks that all passed the same count, type and op (else ncclInvalidUsage on all),
 * reduces every send buffer into a scratch copy, then writes every recv buffer (all are host
 * memory), so in place and out of place both work. The reduction runs over ranks 0..W-1 in
 * the type itself (a float sum is rounded after each add, a bf16 one to bf16), so every rank
 * gets the same bits, as from NCCL's ring, which forms each sum once and passes it on (its
 * order of ranks depends on the chunk, so its bits may differ from these, never between
 * ranks). ncclAvg as NCCL computes it: for floating types (its PreMulSum op) each rank's
 * value times 1/W rounded to the type, then the sum; for integers the sum, then / W. With
 * W = 2 the scaling is exact, so the mean is the rounded sum halved. Types: float32,
 * float64, bf16 (any type with one rank, whose reduction is a copy).
 *
 * A rank that destroys its communicator makes its peers' later collectives
 * ncclRemoteError; a collective some rank never calls times out as joining does, and the
 * communicator is broken after it. Inside ncclGroupStart/End a call on several ranks is
 * ncclInvalidUsage: NCCL defers grouped calls so that one thread can drive several ranks, but
 * the emulator runs each at once and would wait for itself. */
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId;
typedef enum {
    ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
    ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7
} ncclResult_t;
typedef enum {
    ncclInt8 = 0, ncclChar = 0, ncclUint8 = 1, ncclInt32 = 2, ncclInt = 2, ncclUint32 = 3, ncclInt64 = 4,
    ncclUint64 = 5, ncclFloat16 = 6, ncclHalf = 6, ncclFloat32 = 7, ncclFloat = 7, ncclFloat64 = 8,
    ncclDouble = 8, ncclBfloat16 = 9
} ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;

namespace llm_emu {
struct nccl_call { const void *send; void *recv; size_t count; int type, op; };
/* What the ranks of one communicator share; guarded by nccl_mu. */
struct nccl_world {
    char id[NCCL_UNIQUE_ID_BYTES];
    int nranks, joined = 0;         /* ranks that have called ncclCommInitRank */
    int refs = 0;                   /* callers holding it: joining, or a live communicator */
    int left = 0;                   /* ranks that destroyed their communicator */
    ncclResult_t err = ncclSuccess; /* once set, every later call fails with it */
    std::vector<int> dev;           /* rank -> its device, -1 until it joins */
    std::vector<nccl_call> call;    /* rank -> its arguments in the current collective */
    int arrived = 0;                /* ranks in the current collective */
    unsigned long long gen = 0;     /* collectives completed */
    ncclResult_t result = ncclSuccess;   /* of the last one completed */
};
inline std::mutex nccl_mu;
inline std::condition_variable nccl_cv;
inline std::vector<nccl_world *> *nccl_gathering;   /* joining, not yet complete */
inline std::atomic<unsigned> nccl_ids;
inline thread_local int nccl_group;

/* LLM_CUDA_EMU_NCCL_TIMEOUT (seconds, >= 0), else 60: how long a rank waits for its peers. */
static inline std::chrono::steady_clock::time_point nccl_deadline(void) {
    const char *s = getenv("LLM_CUDA_EMU_NCCL_TIMEOUT");
    char *end = NULL;
    double t = s ? strtod(s, &end) : -1.0;
    if (!s || end == s || *end || !(t >= 0.0 && t < 1e6)) t = 60.0;
    return std::chrono::steady_clock::now() + std::chrono::microseconds((long long)(t * 1e6));
}
static inline void nccl_unlist(nccl_world *w) {
    for (size_t i = 0; nccl_gathering && i < nccl_gathering->size(); i++)
        if ((*nccl_gathering)[i] == w) { nccl_gathering->erase(nccl_gathering->begin() + (long)i); return; }
}
static inline void nccl_release(nccl_world *w) {   /* nccl_mu held */
    if (--w->refs == 0) { nccl_unlist(w); delete w; }
}
static inline size_t nccl_size(int t) {
    return t == ncclFloat32 || t == ncclInt32 || t == ncclUint32 ? 4 : t == ncclFloat64 || t == ncclInt64 ||
           t == ncclUint64 ? 8 : t == ncclFloat16 || t == ncclBfloat16 ? 2 : t == ncclInt8 || t == ncclUint8 ? 1 : 0;
}

/* Element i as the arithmetic type, and a value rounded to the stored type: a bf16 is
 * computed in float and rounded after every operation, as a bf16 add is. */
static inline float nccl_get(const float *p, size_t i) { return p[i]; }
static inline double nccl_get(const double *p, size_t i) { return p[i]; }
static inline float nccl_get(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
static inline void nccl_put(float *p, size_t i, float v) { p[i] = v; }
static inline void nccl_put(double *p, size_t i, double v) { p[i] = v; }
static inline void nccl_put(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16(v); }
template <class T, class A> static inline A nccl_round(A v) {
    T t[1];
    nccl_put(t, 0, v);
    return nccl_get(t, 0);
}

/* recv_r := op over r = 0..W-1 of send_r, for every rank r; floating types only. */
template <class T, class A> static inline void nccl_reduce_as(nccl_world *w) {
    int W = w->nranks, op = w->call[0].op;
    size_t n = w->call[0].count;
    std::vector<A> acc(n);
    const A scale = nccl_round<T, A>((A)(1.0 / W));   /* ncclAvg: 1/W in the type */
    for (int r = 0; r < W; r++) {
        const T *x = (const T *)w->call[r].send;
        for (size_t i = 0; i < n; i++) {
            A v = nccl_get(x, i), a = acc[i];
            if (op == ncclAvg) v = nccl_round<T, A>(v * scale);
            if (r > 0)
                v = nccl_round<T, A>(op == ncclProd ? a * v : op == ncclMax ? (v > a ? v : a)
                                     : op == ncclMin ? (v < a ? v : a) : a + v);
            acc[i] = v;
        }
    }
    for (int r = 0; r < W; r++)   /* only now: a recv buffer may be its rank's send buffer */
        for (size_t i = 0; i < n; i++) nccl_put((T *)w->call[r].recv, i, acc[i]);
}
/* Run by the last rank to arrive, with every rank's arguments in w->call. */
static inline ncclResult_t nccl_reduce(nccl_world *w) {
    const nccl_call &c0 = w->call[0];
    for (int r = 1; r < w->nranks; r++)
        if (w->call[r].count != c0.count || w->call[r].type != c0.type || w->call[r].op != c0.op)
            return ncclInvalidUsage;   /* NCCL would hang or corrupt; say so on every rank */
    if (w->nranks == 1) {   /* the reduction of one value is the value, for every op and type */
        if (c0.send != c0.recv && c0.count) memmove(c0.recv, c0.send, c0.count * nccl_size(c0.type));
        return ncclSuccess;
    }
    switch (c0.type) {
    case ncclFloat32: nccl_reduce_as<float, float>(w); return ncclSuccess;
    case ncclFloat64: nccl_reduce_as<double, double>(w); return ncclSuccess;
    case ncclBfloat16: nccl_reduce_as<__nv_bfloat16, float>(w); return ncclSuccess;
    default: return ncclInvalidArgument;   /* integers and fp16 over several ranks: not emulated */
    }
}
} /* namespace llm_emu */

struct llm_emu_comm { int nranks, rank; llm_emu::nccl_world *w; };
typedef llm_emu_comm *ncclComm_t;

static inline const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error (emulator: a rank missing after "
                                 "LLM_CUDA_EMU_NCCL_TIMEOUT)";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}
/* Unique in the process: a counter and the pid (NCCL's is its bootstrap socket's address). */
static inline ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "llm.h-emu %ld %u", (long)getpid(), ++llm_emu::nccl_ids);
    return ncclSuccess;
}
static inline ncclResult_t ncclCommInitRank(ncclComm_t *c, int nranks, ncclUniqueId id, int rank) {
    using namespace llm_emu;
    if (!c) return ncclInvalidArgument;
    *c = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    if (nranks > 1 && nccl_group > 0) return ncclInvalidUsage;   /* see NCCL above */
    auto deadline = nccl_deadline();
    std::unique_lock<std::mutex> lk(nccl_mu);
    if (!nccl_gathering) nccl_gathering = new std::vector<nccl_world *>();
    nccl_world *w = NULL;
    for (nccl_world *x : *nccl_gathering)
        if (memcmp(x->id, id.internal, sizeof x->id) == 0) w = x;
    if (!w) {
        w = new nccl_world();
        memcpy(w->id, id.internal, sizeof w->id);
        w->nranks = nranks;
        w->dev.assign((size_t)nranks, -1);
        w->call.resize((size_t)nranks);
        nccl_gathering->push_back(w);
    }
    w->refs++;
    if (nranks != w->nranks || w->dev[(size_t)rank] != -1) {
        w->err = ncclInvalidUsage;
    } else {
        w->dev[(size_t)rank] = device;
        if (++w->joined == nranks) {
            for (int a = 0; a < nranks; a++)
                for (int b = a + 1; b < nranks; b++)
                    if (w->dev[(size_t)a] == w->dev[(size_t)b]) w->err = ncclInvalidUsage;
        }
    }
    if (w->err != ncclSuccess || w->joined == w->nranks) { nccl_unlist(w); nccl_cv.notify_all(); }
    if (!nccl_cv.wait_until(lk, deadline, [w] { return w->err != ncclSuccess || w->joined == w->nranks; })) {
        w->err = ncclSystemError;   /* a rank never came: fail everyone who did */
        nccl_unlist(w);
        nccl_cv.notify_all();
    }
    if (w->err != ncclSuccess) {
        ncclResult_t e = w->err;
        nccl_release(w);
        return e;
    }
    *c = new llm_emu_comm{nranks, rank, w};
    return ncclSuccess;
}
static inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
    if (!c) return ncclSuccess;
    {
        std::lock_guard<std::mutex> g(llm_emu::nccl_mu);
        c->w->left++;
        llm_emu::nccl_cv.notify_all();
        llm_emu::nccl_release(c->w);
    }
    delete c;
    return ncclSuccess;
}
static inline ncclResult_t ncclCommAbort(ncclComm_t c) { return ncclCommDestroy(c); }
static inline ncclResult_t ncclCommCount(ncclComm_t c, int *n) { if (!c) return ncclInvalidArgument; *n = c->nranks; return ncclSuccess; }
static inline ncclResult_t ncclCommUserRank(ncclComm_t c, int *r) { if (!c) return ncclInvalidArgument; *r = c->rank; return ncclSuccess; }
static inline ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t *e) {
    if (!c) return ncclInvalidArgument;
    std::lock_guard<std::mutex> g(llm_emu::nccl_mu);
    *e = c->w->err;
    return ncclSuccess;
}
static inline ncclResult_t ncclGroupStart(void) { llm_emu::nccl_group++; return ncclSuccess; }
static inline ncclResult_t ncclGroupEnd(void) {
    if (llm_emu::nccl_group <= 0) return ncclInvalidUsage;
    llm_emu::nccl_group--;
    return ncclSuccess;
}
static inline ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                                         ncclComm_t c, cudaStream_t s) {
    using namespace llm_emu;
    (void)s;
    if (!c || (count && (!send || !recv)) || (int)op < 0 || (int)op > ncclAvg || !nccl_size(t))
        return ncclInvalidArgument;
    if (c->nranks > 1 && nccl_group > 0) return ncclInvalidUsage;   /* see NCCL above */
    nccl_world *w = c->w;
    auto deadline = nccl_deadline();
    std::unique_lock<std::mutex> lk(nccl_mu);
    if (w->err != ncclSuccess) return w->err;
    if (w->left) return ncclRemoteError;
    w->call[(size_t)c->rank] = nccl_call{send, recv, count, (int)t, (int)op};
    unsigned long long gen = w->gen;
    if (++w->arrived == w->nranks) {   /* the last one: reduce for all */
        w->arrived = 0;
        w->result = nccl_reduce(w);
        w->gen++;
        nccl_cv.notify_all();
        return w->result;
    }
    /* w->result stays this collective's until the next completes, which needs this rank */
    if (!nccl_cv.wait_until(lk, deadline, [w, gen] { return w->gen != gen || w->err != ncclSuccess || w->left; })) {
        w->err = ncclSystemError;
        nccl_cv.notify_all();
        return w->err;
    }
    if (w->gen != gen) return w->result;
    return w->err != ncclSuccess ? w->err : ncclRemoteError;
}
#endif /* LLM_CUDA_EMU_H */
