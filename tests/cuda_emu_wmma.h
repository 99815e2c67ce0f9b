/* tests/cuda_emu_wmma.h - nvcuda::wmma (bf16 or fp16 16x16x16 tiles, fp32 accumulators) for tests/cuda_emu.h.
 *
 *   g++ ... -include tests/cuda_emu.h -include tests/cuda_emu_wmma.h -DLLM_CUDA_EMU=1 -c llm_cuda.cu
 *
 * What llm_cuda.cu's tensor-core attention uses of <mma.h>, run by the emulator's fibers:
 *   fragment<matrix_a | matrix_b, 16,16,16, __nv_bfloat16 | __half, row_major | col_major>,
 *   fragment<accumulator, 16,16,16, float>, fill_fragment, load_matrix_sync,
 *   store_matrix_sync (mem_row_major | mem_col_major), mma_sync;
 * and cudaDeviceGetAttribute for the shared-memory opt-in limit, which cuda_emu.h lacks.
 *
 * FRAGMENTS. As on sm_80, every lane holds 8 of a tile's 256 elements, in x[]. Which ones is
 * unspecified by CUDA, so code may only load, store, fill, multiply, or apply the same
 * operation to every element. To catch code that assumes a layout, the one here is unlike
 * the hardware's: element e of lane l is the tile's (row, col) = (p / 16, p % 16) with
 * p = 32 e + l (lane l holds column l % 16 of every other row, from row l / 16). For
 * matrix_a the tile is A (M, K), for matrix_b B (K, N), for the accumulator C (M, N);
 * row_major / col_major (or mem_*) says how that tile lies in memory: (r, c) at
 * ptr[r*ldm + c] or ptr[c*ldm + r].
 *
 * COLLECTIVES. The _sync functions are warp-collective: each meets the warp's barrier once
 * (so a lane that skips one deadlocks or diverges, as cuda_emu.h reports), placed so that
 * the ordering a GPU does NOT give is not given here either:
 *   load_matrix_sync   reads, then meets the barrier: data other lanes wrote must have been
 *                      published with __syncwarp (or __syncthreads) before the load;
 *   store_matrix_sync  meets the barrier, then writes: other lanes may read the tile only
 *                      after a __syncwarp that follows the store;
 *   mma_sync           meets the barrier, publishes its A and B elements in a per-warp
 *                      scratch, meets it again, then computes its own 8 outputs
 *                      D = A B + C in fp32 (k in order; a tensor core's summation order and
 *                      rounding differ in the last bits). The product of two bf16 or two
 *                      fp16 values is exact in fp32 (8 + 8 or 11 + 11 significant bits).
 * fp16 tiles exist from sm_70, bf16 from sm_80: under LLM_CUDA_EMU_SM below 80 (see
 * cuda_emu.h, ARCHITECTURE) a bf16 tile fails the launch, as the kernel could not exist there.
 * Misuse that the hardware rejects fails the launch (cudaErrorLaunchFailure with a message):
 * a pointer not 32-byte aligned (shared memory: relative to the dynamic array `sm`, whose
 * base a GPU aligns), ldm not a multiple of 8 (bf16) or 4 (float). */
#ifndef LLM_CUDA_EMU_WMMA_H
#define LLM_CUDA_EMU_WMMA_H
#include "cuda_emu.h"
#include <type_traits>

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class T> struct llm_emu_frag {
    enum { num_elements = 8 };
    typedef T element_type;
    T x[8];
};
template <class Use, int M, int N, int K, class T, class Layout = void> class fragment;
template <class L> class fragment<matrix_a, 16, 16, 16, __nv_bfloat16, L> : public llm_emu_frag<__nv_bfloat16> {};
template <class L> class fragment<matrix_b, 16, 16, 16, __nv_bfloat16, L> : public llm_emu_frag<__nv_bfloat16> {};
template <class L> class fragment<matrix_a, 16, 16, 16, __half, L> : public llm_emu_frag<__half> {};
template <class L> class fragment<matrix_b, 16, 16, 16, __half, L> : public llm_emu_frag<__half> {};
template <> class fragment<accumulator, 16, 16, 16, float, void> : public llm_emu_frag<float> {};

typedef fragment<accumulator, 16, 16, 16, float> llm_emu_acc;
} /* namespace wmma */
} /* namespace nvcuda */

namespace llm_emu {
namespace wmma_impl {
/* mma_sync's exchange: A and B of every warp of the running block (one OS thread runs a
 * block at a time, so thread_local suffices). */
inline thread_local float scratch_a[32][256], scratch_b[32][256];

static inline int lane(void) { return (int)(cur->tid % 32); }
static inline int warp_id(void) { return (int)(cur->tid / 32); }
/* The tile position of element e of this lane (see FRAGMENTS). */
static inline int row_of(int e) { return (32 * e + lane()) / 16; }
static inline int col_of(int e) { return (32 * e + lane()) % 16; }

static inline void misuse(const char *what, const void *p, unsigned ldm) {
    fail(cudaErrorLaunchFailure, "kernel %s: block (%u,%u,%u) thread %u: wmma %s: pointer %p, ldm %u "
         "(the pointer must be 32-byte aligned, ldm a multiple of 16 bytes)", blk->kernel, blockIdx_.x,
         blockIdx_.y, blockIdx_.z, cur->tid, what, p, ldm);
    stop_launch();
}
static inline void check(const char *what, const void *p, unsigned ldm, size_t elem) {
    const char *c = (const char *)p, *s = (const char *)sm;
    size_t off = c >= s && c < s + sizeof sm ? (size_t)(c - s) : (size_t)(uintptr_t)c;
    if (off % 32 != 0 || ldm * elem % 16 != 0) misuse(what, p, ldm);
}
/* A tile type the emulated architecture lacks (bf16 before sm_80). */
static inline void check_type(const __nv_bfloat16 *) {
    if (arch() >= 80) return;
    fail(cudaErrorLaunchFailure, "kernel %s: bf16 wmma tiles on sm_%d (they need sm_80)", blk->kernel, arch());
    stop_launch();
}
static inline void check_type(const __half *) {}
static inline void check_type(const float *) {}
static inline size_t at(int r, int c, unsigned ldm, bool rowmajor) {
    return rowmajor ? (size_t)r * ldm + c : (size_t)c * ldm + r;
}
static inline float widen(__nv_bfloat16 h) { return __bfloat162float(h); }
static inline float widen(__half h) { return __half2float(h); }
} /* namespace wmma_impl */
} /* namespace llm_emu */

namespace nvcuda {
namespace wmma {
template <class F, class V> static inline void fill_fragment(F &f, const V &v) {
    for (int e = 0; e < 8; e++) f.x[e] = v;
}
/* bf16 / fp16 tiles: row_major / col_major as the fragment's type says. */
template <class Use, class T, class L>
static inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    using namespace llm_emu::wmma_impl;
    check("load_matrix_sync", p, ldm, sizeof *p);
    check_type(p);
    bool rm = std::is_same<L, row_major>::value;
    for (int e = 0; e < 8; e++) f.x[e] = p[at(row_of(e), col_of(e), ldm, rm)];
    __syncwarp();
}
static inline void load_matrix_sync(llm_emu_acc &f, const float *p, unsigned ldm, layout_t l) {
    using namespace llm_emu::wmma_impl;
    check("load_matrix_sync", p, ldm, sizeof *p);
    for (int e = 0; e < 8; e++) f.x[e] = p[at(row_of(e), col_of(e), ldm, l == mem_row_major)];
    __syncwarp();
}
static inline void store_matrix_sync(float *p, const llm_emu_acc &f, unsigned ldm, layout_t l) {
    using namespace llm_emu::wmma_impl;
    check("store_matrix_sync", p, ldm, sizeof *p);
    __syncwarp();
    for (int e = 0; e < 8; e++) p[at(row_of(e), col_of(e), ldm, l == mem_row_major)] = f.x[e];
}
/* D = A B + C, all 16x16: bf16 or fp16 products are exact in fp32, accumulated in fp32. */
template <class T, class LA, class LB>
static inline void mma_sync(llm_emu_acc &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, T, LB> &b, const llm_emu_acc &c) {
    using namespace llm_emu::wmma_impl;
    float *A = scratch_a[warp_id()], *B = scratch_b[warp_id()];
    __syncwarp();   /* every lane is done with the previous product's scratch */
    for (int e = 0; e < 8; e++) {
        A[row_of(e) * 16 + col_of(e)] = widen(a.x[e]);
        B[row_of(e) * 16 + col_of(e)] = widen(b.x[e]);
    }
    __syncwarp();
    float out[8];
    for (int e = 0; e < 8; e++) {
        int r = row_of(e), n = col_of(e);
        float s = c.x[e];
        for (int k = 0; k < 16; k++) s = fmaf(A[r * 16 + k], B[k * 16 + n], s);
        out[e] = s;
    }
    for (int e = 0; e < 8; e++) d.x[e] = out[e];   /* d may be c */
}
} /* namespace wmma */
} /* namespace nvcuda */

/* cudaDeviceGetAttribute, for the attributes llm_cuda.cu asks (values as on the emulated
 * architecture: sm_90 unless LLM_CUDA_EMU_SM says otherwise). */
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev) {
    if (llm_emu::bad_device(dev)) return llm_emu::fail(cudaErrorInvalidDevice, "invalid device ordinal %d", dev);
    switch (a) {
    case cudaDevAttrComputeCapabilityMajor: *v = llm_emu::arch() / 10; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)llm_emu::smem_optin(); return cudaSuccess;
    }
    return llm_emu::fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute(%d): not emulated", (int)a);
}
#endif
