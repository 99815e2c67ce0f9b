/* llm.h - tokenize, train and run Transformer language models in one C header.
 *
 * WHAT
 *   GPT-2 and the Llama family on the CPU: a byte-level BPE tokenizer (and llama2.c's),
 *   every tensor op with its forward and backward, AdamW, checkpoints in five formats
 *   (HuggingFace safetensors, llm.c .bin, llama2.c .bin, llama.cpp's GGUF, our own),
 *   token datasets, KV-cache generation with sampling, Q8_0 and bf16 weights for
 *   inference, and a persistent thread pool. Nothing beyond
 *   libc and threads (pthreads; Win32 on Windows). Compiles as C99/C11 and as C++, on
 *   Linux, macOS and Windows (MinGW-w64, MSVC). An optional companion,
 *   llm_cuda.cu, fills the same backend table with GPU kernels.
 *
 * QUICK START
 *   In exactly one .c file:
 *       #define LLM_IMPLEMENTATION
 *       #include "llm.h"
 *
 *       llm_model *m = NULL;
 *       if (llm_model_load(&m, "model.safetensors", NULL) != LLM_OK) {
 *           fprintf(stderr, "%s\n", llm_last_error()); return 1;
 *       }
 *       float loss, grad_norm;
 *       llm_adamw_config opt = llm_adamw_config_default();
 *       llm_model_forward(m, inputs, targets, B, T, &loss);  // (B,T) int tokens
 *       llm_model_zero_grad(m);
 *       llm_model_backward(m, 1.0f);
 *       llm_model_step(m, &opt, 3e-4f, &grad_norm);
 *       llm_model_free(m);
 *
 * OPTIONS (define before including the implementation)
 *   LLM_STATIC            make every function static (private copy per .c file)
 *   LLM_MALLOC(sz), LLM_REALLOC(p,sz), LLM_FREE(p)   allocator (define all or none)
 *   LLM_ASSERT(x)         invariant checks (default: assert); never reached by bad input
 *   LLM_NO_THREADS        no threads: the pool runs every task on the calling thread
 *   LLM_POOL_SPIN         how long idle workers spin (yielding) before sleeping (2000)
 * RUN-TIME
 *   LLM_SIMD=scalar|avx2|avx512|neon   cap the SIMD level (see llm_simd_force)
 *
 * HOW TO READ THIS FILE
 *   The public API comes first and is documented where it is declared. Then the
 *   implementation, in the order data flows: errors and memory, the thread pool,
 *   JSON, the GPT-2 tokenizer, the reference kernels (each forward beside its
 *   backward), their SIMD versions, the quantized (Q8_0, bf16) matmul kernels, the CPU
 *   backend that puts them in the backend table, the model (which only ever calls that
 *   table, except for quantized weights, which only the CPU runs), the optimizer, file formats
 *   and datasets, then inference: llama2.c's tokenizer, sampling, the KV cache and
 *   generation. The generated Unicode table closes the file.
 *
 *   Shapes use the letters of the field: B batch, T time, C channels, NH heads,
 *   HS head size (C/NH), L layers, V vocabulary, OC output channels. Row-major.
 *
 * ERRORS
 *   Fallible functions return llm_status (LLM_OK == 0, errors are negative) and leave
 *   a message for llm_last_error() (thread-local). The library never prints, exits
 *   or aborts on bad input.
 *
 * TABLE OF CONTENTS  (`grep -n '^//==== ' llm.h`)
 *   API           public types and functions
 *   PLATFORM      configuration macros, system headers (POSIX or Windows), thread-local
 *   ERRORS        status strings, the error message
 *   MEMORY        aligned allocation, files (UTF-8 paths, mapped, 64-bit sizes)
 *   POOL          the thread pool (pthreads or Win32)
 *   JSON          a strict, bounded JSON reader (safetensors headers, vocabularies)
 *   TOKENIZER     GPT-2 byte-level BPE: loaders, pre-tokenizer, merges, decoding,
 *                 training a vocabulary, saving
 *   KERNELS       scalar reference kernels: forward beside backward, in model order
 *   SIMD          CPU feature detection, run-time dispatch, SGEMM (fp32 and bf16), the
 *                 vector layer (AVX2, AVX-512, NEON) and the GEMV written on it
 *   SIMD KERNELS  the other kernels, each written once on the vector layer, compiled
 *                 per ISA and tested against its reference
 *   QUANT         Q8_0 and bf16 weights for inference: fp16, blocks, tiles, the
 *                 matmul kernels (scalar, AVX2, AVX-512 VNNI, AVX512-BF16, NEON)
 *   CPU           the CPU backend: the kernels split over the pool, in the table
 *   MODEL         GPT-2 and Llama: parameters, activations, forward, backward
 *   ADAMW         optimizer, gradient clipping, learning-rate schedule, RNG
 *   FORMATS       HF safetensors, llm.c .bin, llama2.c .bin, our checkpoint, GGUF
 *   DATA          token files and batch loaders
 *   LLAMATOK      llama2.c's SentencePiece-style tokenizer
 *   SAMPLE        temperature, top-k, top-p, repetition penalty, seeded RNG
 *   STOP          stop strings
 *   INFER         KV-cache inference sessions
 *   GENERATE      generation: prefill, decode, streaming, batches
 *   UNICODE       generated Unicode class table (tools/gen_unicode.py)
 *
 * LICENSE: MIT.
 */
//==== API ============================================================================
#ifndef LLM_H
#define LLM_H

#include <stddef.h>
#include <stdint.h>

#define LLM_VERSION "0.1.0"

#ifndef LLMDEF
#ifdef LLM_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define LLMDEF static __attribute__((unused))
#else
#define LLMDEF static
#endif
#else
#define LLMDEF extern
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes -------------------------------------------------------------- */
typedef enum llm_status {
    LLM_OK = 0,
    LLM_ERR_ARG = -1,         /* bad argument: NULL, shape, token id out of range */
    LLM_ERR_NOMEM = -2,       /* out of memory (host or device) */
    LLM_ERR_IO = -3,          /* a file could not be opened, read or written */
    LLM_ERR_FORMAT = -4,      /* a file is malformed: magic, size, truncated, lies */
    LLM_ERR_UNSUPPORTED = -5, /* valid, but not something this build handles */
    LLM_ERR_BACKEND = -6,     /* the compute backend failed (e.g. a CUDA error) */
    LLM_ERR_STATE = -7        /* call out of order, e.g. backward before forward */
} llm_status;

/* A fixed English name for a status ("out of memory"). Never NULL. */
LLMDEF const char *llm_status_string(llm_status s);
/* The message of the last failure on this thread: what failed, and where. Valid
 * until the next failing call on this thread. Never NULL ("" when none). */
LLMDEF const char *llm_last_error(void);
/* Record a failure message (printf-style) for llm_last_error() and return s. For
 * backends and extensions that live outside this file (llm_cuda.cu). */
LLMDEF llm_status llm_set_error(llm_status s, const char *fmt, ...)
#if defined(__MINGW32__) && !defined(__clang__)
    __attribute__((format(gnu_printf, 2, 3)))   /* C99 formats (%zu) on MinGW-w64 too */
#elif defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- thread pool ----------------------------------------------------------------- */
/* A fixed set of worker threads, created once and reused by every op. A task
 * fn(arg, ith, nth) runs once on each of the nth threads (the caller is thread 0);
 * llm_pool_run returns when all have finished. Work is split statically by ith, so
 * the same thread count gives bit-identical results run to run. One pool must not
 * be used by two threads at once; make one pool per thread that computes. */
typedef struct llm_pool llm_pool;
typedef void (*llm_pool_fn)(void *arg, int ith, int nth);
LLMDEF int llm_cpu_count(void);                        /* online cores, >= 1 */
/* n_threads <= 0 means llm_cpu_count(). Returns NULL (see llm_last_error) on failure. */
LLMDEF llm_pool *llm_pool_create(int n_threads);
LLMDEF void llm_pool_free(llm_pool *pool);             /* accepts NULL */
LLMDEF int llm_pool_size(const llm_pool *pool);
LLMDEF void llm_pool_run(llm_pool *pool, llm_pool_fn fn, void *arg);

/* ---- SIMD level -------------------------------------------------------------------- */
/* Kernels are chosen at run time from what the CPU has. LLM_SIMD=scalar|avx2|avx512|neon
 * in the environment, or llm_simd_force(), asks for a lower level (tests run every path
 * the machine supports). A level the CPU lacks is refused with LLM_ERR_UNSUPPORTED. */
typedef enum llm_simd {
    LLM_SIMD_AUTO = 0, LLM_SIMD_SCALAR = 1, LLM_SIMD_AVX2 = 2, LLM_SIMD_AVX512 = 3,
    LLM_SIMD_NEON = 4
} llm_simd;
LLMDEF llm_status llm_simd_force(llm_simd level);      /* LLM_SIMD_AUTO: back to best */
LLMDEF llm_simd llm_simd_active(void);
LLMDEF const char *llm_simd_name(llm_simd level);
LLMDEF int llm_simd_supported(llm_simd level);
/* 1 when the CPU backend's bf16 matmuls (llm_options.bf16) run in bf16 here: AVX512-BF16
 * (x86) or the BF16 extension (ARM64) present and allowed by the SIMD cap; 0 means they
 * fall back to fp32. */
LLMDEF int llm_bf16_supported(void);

/* How to run a model; zero-initialised means the defaults. */
typedef struct llm_options {
    const struct llm_backend *backend;  /* NULL: llm_cpu_backend() */
    int n_threads;                      /* CPU threads; <= 0: llm_cpu_count() */
    int device;                         /* GPU index, for a GPU backend */
    int bf16;                           /* 1: matmuls with bfloat16 operands and fp32
                                         * accumulation (master weights, optimizer and
                                         * every other op stay fp32). CPU: needs
                                         * AVX512-BF16 or ARM BF16, else fp32 is used. */
    int fp16;                           /* 1: fp16 mixed precision (the CUDA backend,
                                         * sm_70+): matmuls and attention with fp16
                                         * operands on tensor cores, fp32 accumulation,
                                         * fp32 master weights and optimizer; train with
                                         * llm_loss_scaler. The CPU backend has no fp16
                                         * kernels and runs fp32. Not with bf16. */
    /* Data parallel across processes, one GPU each (a backend with allreduce_mean, i.e.
     * llm_cuda.cu built with NCCL). dist_world >= 1 turns it on: llm_model_step averages
     * the gradients over the dist_world ranks before clipping, as PyTorch's DDP does.
     * Rank 0 creates the NCCL id and writes it to dist_id_file (atomically); the other
     * ranks wait for that file. dist_world 1 needs no file. 0: one process, no NCCL. */
    int dist_rank, dist_world;
    const char *dist_id_file;
    /* Memory levers for training (see llm_model_memory):
     * recompute 1: the forward pass keeps only each layer's input and backward recomputes
     * the layer before going back through it: the layers' activations shrink to one
     * layer's (plus L inputs), for one more forward pass per step; the gradients are
     * bit-identical to those without it. */
    int recompute;
    /* dropout in [0, 1): during training (llm_model_set_training), zero each activation
     * with probability dropout and scale the rest by 1/(1-dropout), at GPT-2's places:
     * the embedding output, the attention output projection and the MLP output (not the
     * attention probabilities). The masks come from a counter-based hash of
     * (dropout_seed, optimizer step, micro-batch, layer, place, element): nothing is
     * stored, and a resumed run draws the same masks. 0: none. */
    float dropout;
    uint64_t dropout_seed;
} llm_options;

/* ---- backend interface -------------------------------------------------------------- */
/* Element types: of tensors in backend memory (F32, BF16, F16: see the table's activation
 * storage) and of a model's weights (F32, BF16, Q8_0: see llm_model_quantize). The values
 * are stored in quantized checkpoints. */
typedef enum llm_dtype { LLM_DTYPE_F32 = 0, LLM_DTYPE_BF16 = 1, LLM_DTYPE_Q8_0 = 2, LLM_DTYPE_F16 = 3 } llm_dtype;

/* The seam between the model and the hardware. The model code never touches tensor
 * memory directly: it calls these functions with pointers that the backend allocated.
 * The CPU backend (llm_cpu_backend) fills the table with the kernels in this file; the
 * optional llm_cuda.cu fills it with GPU kernels (llm_cuda_backend). Every op
 * ACCUMULATES (+=) into its gradient outputs, as autograd does, so one call per
 * micro-batch sums gradients over micro-batches; forward outputs are overwritten.
 * `st` is the backend's own state (for the CPU: the thread pool). */
typedef struct llm_backend {
    const char *name;
    /* state: create for the options' thread count (CPU) or device index (GPU) */
    llm_status (*create)(void **st, const llm_options *opt);
    void (*destroy)(void *st);
    /* memory, in bytes; alloc returns NULL (with llm_last_error set) on failure */
    void *(*alloc)(void *st, size_t bytes);
    void (*release)(void *st, void *p);
    llm_status (*upload)(void *st, void *dst_dev, const void *src_host, size_t bytes);
    llm_status (*download)(void *st, void *dst_host, const void *src_dev, size_t bytes);
    void (*zero)(void *st, void *p, size_t bytes);
    void (*copy)(void *st, void *dst_dev, const void *src_dev, size_t bytes);
    /* wait for queued work; report the first error of an op since the last sync */
    llm_status (*sync)(void *st);
    /* token + position embedding: out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] (wpe may be NULL) */
    void (*encoder_fwd)(void *st, float *out, const int *tok, const float *wte,
                        const float *wpe, int B, int T, int C);
    void (*encoder_bwd)(void *st, float *dwte, float *dwpe, const float *dout,
                        const int *tok, int B, int T, int C);
    /* layernorm over C for N rows (eps 1e-5); mean, rstd (N) saved for backward. The
     * norms' bwd take dw (and db) NULL for a frozen gain (LoRA trains adapters only) */
    void (*layernorm_fwd)(void *st, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N, int C);
    void (*layernorm_bwd)(void *st, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const float *mean,
                          const float *rstd, int N, int C);
    /* RMSNorm over C for N rows: out = x / sqrt(mean(x^2) + eps) * w; rstd (N) saved */
    void (*rmsnorm_fwd)(void *st, float *out, float *rstd, const float *inp, const float *w,
                        int N, int C, float eps);
    void (*rmsnorm_bwd)(void *st, float *dinp, float *dw, const float *dout, const float *inp,
                        const float *w, const float *rstd, int N, int C);
    /* out (N,OC) = inp (N,C) @ w(OC,C)^T + bias(OC); bias may be NULL. In bwd any of
     * dinp, dw, dbias may be NULL: that gradient is not wanted (a frozen weight) */
    void (*matmul_fwd)(void *st, float *out, const float *inp, const float *w,
                       const float *bias, int N, int C, int OC);
    void (*matmul_bwd)(void *st, float *dinp, float *dw, float *dbias, const float *dout,
                       const float *inp, const float *w, int N, int C, int OC);
    /* rotary embedding IN PLACE on the q and k parts of qkv (B,T,(NH+2NKV)*HS); pos (B,T)
     * device positions, or NULL for pos = t. bwd rotates the gradient back, in place. */
    void (*rope_fwd)(void *st, float *qkv, const int *pos, int B, int T, int NH, int NKV,
                     int HS, float theta);
    void (*rope_bwd)(void *st, float *dqkv, const int *pos, int B, int T, int NH, int NKV,
                     int HS, float theta);
    /* causal self-attention with grouped-query heads (GPT-2: NKV = NH):
     * qkv (B,T,(NH+2NKV)*HS) rows [q | k | v] -> out (B,T,NH*HS); lse (B,NH,T) saved.
     * Query head h reads key/value head h / (NH/NKV). */
    void (*attention_fwd)(void *st, float *out, float *lse, const float *qkv, int B, int T,
                          int NH, int NKV, int HS);
    void (*attention_bwd)(void *st, float *dqkv, const float *dout, const float *qkv,
                          const float *out, const float *lse, int B, int T, int NH, int NKV,
                          int HS);
    /* inference: row i (N rows of qkv) is token pos[i] of sequence seq[i]; its k, v are
     * stored in the caches (S, maxT, NKV*HS) first, then it attends to positions
     * 0..pos[i] of its sequence. out (N, NH*HS). seq, pos are device arrays. */
    void (*attention_kv)(void *st, float *out, const float *qkv, float *kcache, float *vcache,
                         const int *seq, const int *pos, int N, int NH, int NKV, int HS, int maxT);
    void (*gelu_fwd)(void *st, float *out, const float *inp, size_t n);
    void (*gelu_bwd)(void *st, float *dinp, const float *inp, const float *dout, size_t n);
    /* SwiGLU: inp (N,2H) rows [gate | up] -> out (N,H) = silu(gate) * up */
    void (*swiglu_fwd)(void *st, float *out, const float *inp, int N, int H);
    void (*swiglu_bwd)(void *st, float *dinp, const float *inp, const float *dout, int N, int H);
    void (*residual_fwd)(void *st, float *out, const float *a, const float *b, size_t n);
    void (*residual_bwd)(void *st, float *da, float *db, const float *dout, size_t n);
    /* fused softmax + cross-entropy over V for N rows; targets < 0 are ignored.
     * fwd writes losses (N) (0 for ignored rows) and lse (N). bwd overwrites logits
     * with dlogits = (softmax - onehot) * dloss (ignored rows get 0). */
    void (*crossentropy_fwd)(void *st, float *losses, float *lse, const float *logits,
                             const int *targets, int N, int V);
    void (*crossentropy_bwd)(void *st, float *logits_to_dlogits, const float *lse,
                             const int *targets, float dloss, int N, int V);
    /* sum of squares (for the global gradient norm), in double on the host */
    double (*sumsq)(void *st, const float *x, size_t n);
    /* one AdamW update of n values; grads are multiplied by grad_scale first (clipping) */
    void (*adamw)(void *st, float *param, const float *grad, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float weight_decay,
                  float grad_scale, int t);
    /* ---- optional ops: NULL where a backend has none (the model then does without) ---- */
    /* data parallel: buf (n floats, device) := the mean of buf over all ranks; LLM_OK at
     * once when the backend was created without dist_world */
    llm_status (*allreduce_mean)(void *st, float *buf, size_t n);
    /* fused MLP up-projection: pre = inp @ w^T + bias, out = gelu(pre) (tanh form), the
     * same as matmul_fwd then gelu_fwd; NULL: the model makes those two calls */
    void (*matmul_gelu_fwd)(void *st, float *pre, float *out, const float *inp, const float *w,
                            const float *bias, int N, int C, int OC);
    /* activation storage: act_dtype says how the tensors between ops are stored
     * (LLM_DTYPE_BF16 or _F16: 2-byte elements), and alloc_act gives memory (bytes) for
     * them. A float * into that memory is a handle to such elements, at an offset counted
     * in them; the ops read and write it in that type. Memory from alloc stays fp32. These
     * arguments are always fp32: parameters, gradients of parameters (dw, db), moments,
     * norm statistics (mean, rstd), lse, losses, logits, KV caches, the residual stream's
     * gradient (dinp of the norms' bwd, dout of encoder_bwd); an op's other tensors share
     * one storage, except matmul's, which may mix (fp32 logits from 16-bit inputs). NULL:
     * activations are fp32 (the CPU backend). */
    llm_dtype (*act_dtype)(void *st);
    void *(*alloc_act)(void *st, size_t bytes);
    /* fused: res = a + b, then out = layernorm(res) with mean, rstd saved (N rows of C):
     * the same as residual_fwd then layernorm_fwd; NULL: the model makes those two calls */
    void (*residual_layernorm_fwd)(void *st, float *res, float *out, float *mean, float *rstd,
                                   const float *a, const float *b, const float *w,
                                   const float *bias, int N, int C);
    /* dropout of n values: out[i] = inp[i] * keep(key, i) / (1 - p), the mask a pure
     * function of (key, i) (see llm__dropout_ref), so backward -- the same call on the
     * gradient -- regenerates it; out may be inp. NULL: the model refuses dropout > 0 */
    void (*dropout)(void *st, float *out, const float *inp, size_t n, float p, uint64_t key);
} llm_backend;

LLMDEF const llm_backend *llm_cpu_backend(void);
/* Defined in llm_cuda.cu; link it to use them. llm_cuda_device_count() is 0 without a
 * driver or GPU. llm_cuda_backend() runs in fp32 (the exact mode) unless
 * llm_options.bf16 or .fp16 is set; llm_cuda_backend_bf16() is always in the bf16 mode
 * (bf16 tensor-core matmuls and attention with persistent bf16 weight copies, fp32
 * master weights, optimizer state and accumulation; needs sm_80+), and
 * llm_cuda_backend_fp16() in the fp16 mode (the same with fp16, for sm_70+ such as the
 * T4; fp16 gradients need loss scaling: llm_loss_scaler). */
extern const llm_backend *llm_cuda_backend(void);   /* extern even with LLM_STATIC */
extern const llm_backend *llm_cuda_backend_bf16(void);
extern const llm_backend *llm_cuda_backend_fp16(void);
extern int llm_cuda_device_count(void);
/* The device's name ("" if unreadable); "llm.h CUDA emulator" under tests/cuda_emu.h. */
extern const char *llm_cuda_device_name(int dev);
/* Its compute capability and memory in bytes (each may be NULL): 0, or -1 if unreadable. */
extern int llm_cuda_device_props(int dev, int *cc_major, int *cc_minor, size_t *total_mem);
/* With LLM_CUDA_PROFILE=1 in the environment, the CUDA backend times every kernel and
 * library call (GPU time, by CUDA events) up to the last sync; this writes the table
 * (kind of work, calls, ms, share; the most expensive first) into buf as snprintf does
 * and returns its length; reset 1 starts a new count. Empty without the variable. */
extern size_t llm_cuda_profile(char *buf, size_t cap, int reset);

/* ---- models: GPT-2 and Llama ------------------------------------------------------- */
/* One Transformer with two families' choices of parts:
 *   GPT-2: learned position embedding, LayerNorm with bias, biased matmuls, GELU MLP
 *          (4C hidden), tied LM head.
 *   Llama: RoPE, RMSNorm, no biases, SwiGLU MLP (hidden_dim), grouped-query attention
 *          (n_kv_head < n_head), tied or separate classifier. */
typedef enum llm_arch { LLM_ARCH_GPT2 = 0, LLM_ARCH_LLAMA = 1 } llm_arch;

/* Zero in an optional field means its default (given after the field). */
typedef struct llm_config {
    llm_arch arch;
    int max_seq_len;   /* maxT: 1024 for GPT-2 */
    int vocab_size;    /* V: 50257 for GPT-2 */
    int n_layer;       /* L */
    int n_head;        /* NH; must divide n_embd */
    int n_embd;        /* C */
    int n_kv_head;     /* NKV (Llama): 0 = n_head; must divide n_head */
    int hidden_dim;    /* H, the MLP width: 0 = 4C for GPT-2; required for Llama */
    float norm_eps;    /* RMSNorm eps (Llama): 0 = 1e-5. GPT-2's LayerNorm uses 1e-5 */
    float rope_theta;  /* RoPE base (Llama): 0 = 10000 */
    int untied_head;   /* Llama: 1 = a separate classifier wcls; GPT-2 is always tied */
} llm_config;

/* Views into the one contiguous parameter buffer, in this order (for GPT-2, llm.c's
 * order, so llm.c checkpoints load as one read). Matmul weights are (out, in), as
 * nn.Linear. Tensors a family lacks have size 0 and a NULL view. */
#define LLM_NTENSORS 17
typedef struct llm_params {
    float *wte;       /* (V, C)      token embedding (the LM head too, when tied) */
    float *wpe;       /* (maxT, C)   position embedding (GPT-2) */
    float *ln1w;      /* (L, C)      pre-attention norm gain */
    float *ln1b;      /* (L, C)      (GPT-2) */
    float *qkvw;      /* (L, (NH+2NKV)*HS, C)  rows: q then k then v */
    float *qkvb;      /* (L, (NH+2NKV)*HS)     (GPT-2) */
    float *attprojw;  /* (L, C, C) */
    float *attprojb;  /* (L, C)      (GPT-2) */
    float *ln2w;      /* (L, C)      pre-MLP norm gain */
    float *ln2b;      /* (L, C)      (GPT-2) */
    float *fcw;       /* (L, F, C)   F = 4C (GPT-2) or 2H: rows [w1 (gate) ; w3 (up)] (Llama) */
    float *fcb;       /* (L, F)      (GPT-2) */
    float *fcprojw;   /* (L, C, H)   H = 4C (GPT-2); Llama's w2 */
    float *fcprojb;   /* (L, C)      (GPT-2) */
    float *lnfw;      /* (C)         final norm gain */
    float *lnfb;      /* (C)         (GPT-2) */
    float *wcls;      /* (V, C)      separate classifier (Llama, untied_head) */
} llm_params;

typedef struct llm_model llm_model;

/* GPT-2 small (124M): maxT 1024, V 50257, L 12, NH 12, C 768. */
LLMDEF llm_config llm_config_gpt2(void);
/* A Llama shape with the given sizes (maxT 1024 unless changed after). */
LLMDEF llm_config llm_config_llama(int vocab_size, int n_layer, int n_head, int n_kv_head,
                                   int n_embd, int hidden_dim);
/* A model with GPT-2's initialisation: weights N(0, 0.02), the residual output
 * projections (attprojw, fcprojw) N(0, 0.02/sqrt(2L)), biases 0, norm gains 1.
 * opt may be NULL. *out is NULL on failure. */
LLMDEF llm_status llm_model_create(llm_model **out, const llm_config *cfg,
                                   const llm_options *opt, uint64_t seed);
/* Load weights, detecting the format from the file's content: HuggingFace GPT-2
 * model.safetensors (or a folder holding it; config.json beside it is read when
 * present), llm.c's gpt2_*.bin (versions 3 fp32 and 5 bf16), llama2.c's model .bin,
 * llama.cpp's GGUF (versions 2 and 3; architectures "llama" and "gpt2"; F32, F16, BF16
 * and Q8_0 tensors, any other type is LLM_ERR_UNSUPPORTED naming it; the shape, RoPE
 * theta and RMSNorm eps from its metadata), or our checkpoint (llm_model_save). Every
 * size in the file is checked against the file's length before anything is allocated:
 * a malformed or truncated file gives LLM_ERR_FORMAT (or LLM_ERR_UNSUPPORTED), never a
 * crash or a huge allocation. The file is memory-mapped during the call only. *out is
 * NULL on failure. */
LLMDEF llm_status llm_model_load(llm_model **out, const char *path, const llm_options *opt);
/* The same from a file's bytes in memory, data[0..len) (only read during the call; the
 * model keeps its own copy). No config.json is consulted: a safetensors GPT-2 takes its
 * shape from its tensors, with n_head = n_embd / 64 (GPT-2's head size). Errors name
 * the file "(memory)". */
LLMDEF llm_status llm_model_load_memory(llm_model **out, const void *data, size_t len,
                                        const llm_options *opt);
LLMDEF void llm_model_free(llm_model *m);
LLMDEF llm_config llm_model_config(const llm_model *m);   /* defaults filled in */
LLMDEF size_t llm_model_num_params(const llm_model *m);
/* Host copies of the parameters / gradients (llm_model_num_params floats, in the order
 * of llm_params), and the reverse for parameters. (A quantized model's parameters are
 * its dequantized weights; it has no gradients, and set_params is refused.) */
LLMDEF llm_status llm_model_get_params(const llm_model *m, float *dst);
LLMDEF llm_status llm_model_set_params(llm_model *m, const float *src);
LLMDEF llm_status llm_model_get_grads(const llm_model *m, float *dst);
/* Offsets (in floats) and sizes of the tensors inside the parameter buffer. */
LLMDEF void llm_tensor_layout(const llm_config *cfg, size_t offset[LLM_NTENSORS],
                              size_t size[LLM_NTENSORS]);
LLMDEF const char *llm_tensor_name(int i);  /* "wte", "wpe", "ln1w", ... */

/* ---- weights in fewer bytes, for inference ------------------------------------------------
 * LLM_DTYPE_Q8_0 is llama.cpp's Q8_0: each run of 32 weights of a row as 32 int8 values
 * and one fp16 scale (8.5 bits a weight; every weight within half a step of its value),
 * multiplied by activations quantized to 8 bits on the fly, with exact integer sums.
 * LLM_DTYPE_BF16 keeps each weight's top 16 bits (round to nearest), multiplied in fp32
 * (by vdpbf16ps with the activations rounded to bf16 too, where the CPU has AVX512-BF16).
 * Decoding reads every weight once per token, so it runs about 2x (bf16) and 3.5x (Q8_0)
 * faster than fp32 where memory bandwidth is the limit. */
LLMDEF const char *llm_dtype_name(llm_dtype t);   /* "f32", "bf16", "q8_0", "f16"; "?" otherwise */
/* Store every weight matrix (each layer's qkv, attention output, MLP up/gate and down
 * projections) and the token embedding / classifier in dtype, in place, for inference:
 * the fp32 copies, gradients and optimizer state are freed; norms, biases and GPT-2's
 * position embedding stay fp32. Then forward, the KV cache and generation run on the
 * quantized weights; backward, zero_grad, step and set_params give LLM_ERR_UNSUPPORTED
 * (quantized models are for inference; train in fp32). get_params returns the
 * dequantized values; llm_model_save writes a quantized checkpoint that llm_model_load
 * reads back. Quantizing to the dtype the model has is a no-op; from one quantized dtype
 * to another is LLM_ERR_STATE. Errors: LLM_ERR_UNSUPPORTED on a backend other than the
 * CPU's, LLM_ERR_ARG for a weight that is not finite (or, for Q8_0, beyond 127 x 65504),
 * LLM_ERR_NOMEM (the model is then unchanged). Not thread-safe with other calls on m. */
LLMDEF llm_status llm_model_quantize(llm_model *m, llm_dtype dtype);
LLMDEF llm_dtype llm_model_dtype(const llm_model *m);      /* LLM_DTYPE_F32 unless quantized */
/* Bytes the parameters occupy in memory (fp32 tensors plus quantized matrices). */
LLMDEF size_t llm_model_weight_bytes(const llm_model *m);

/* Reserve activations for up to B x T tokens (forward calls it when needed; calling
 * it up front keeps every later call free of allocation). */
LLMDEF llm_status llm_model_reserve(llm_model *m, int B, int T);
/* Forward pass on tokens (B,T). With targets (B,T) (entries < 0 are ignored, as
 * PyTorch's ignore_index) it also computes the mean cross-entropy loss into *loss
 * (loss may be NULL; with no valid target the loss is 0). Token ids must be in
 * [0, V); T <= maxT. */
LLMDEF llm_status llm_model_forward(llm_model *m, const int *tokens, const int *targets,
                                    int B, int T, float *loss);
/* Copy the logits (B,T,V) of the last forward to dst. Call before backward, which
 * reuses their memory for the gradient. (With llm_options.recompute the logits are not
 * kept: this makes them again from the final norm's output, the same bits.) */
LLMDEF llm_status llm_model_get_logits(llm_model *m, float *dst);
/* Per-token losses (B,T) of the last forward with targets (0 where ignored). */
LLMDEF llm_status llm_model_get_losses(llm_model *m, float *dst);
LLMDEF llm_status llm_model_zero_grad(llm_model *m);
/* Backward of (loss_scale * mean loss) of the last forward; ADDS into the gradients.
 * For gradient accumulation over k micro-batches pass loss_scale = 1/k. */
LLMDEF llm_status llm_model_backward(llm_model *m, float loss_scale);
/* Training mode (the default, 1) lets llm_model_forward with targets apply dropout;
 * 0 turns it off (evaluation, sampling), as PyTorch's model.train() / model.eval().
 * Forwards without targets and the KV cache never drop out. */
LLMDEF void llm_model_set_training(llm_model *m, int training);

/* Memory in bytes, by what it holds. The fields are what training at (B, T) needs with
 * the model's current settings (LoRA, recompute), allocated or not yet: parameters
 * when loaded, activations at the first forward (or llm_model_reserve), gradients at the
 * first backward, optimizer moments at the first step. B = T = 0: the activations
 * reserved now. `allocated` is what the model (and its KV sessions) holds right now. */
typedef struct llm_memory {
    size_t params;       /* the weights (with LoRA: the frozen base) */
    size_t adapters;     /* LoRA's A and B */
    size_t grads;        /* gradients of what trains (LoRA: the adapters only) */
    size_t optimizer;    /* AdamW's m and v of what trains */
    size_t activations;  /* forward and backward activations for B x T tokens */
    size_t kv_cache;     /* the live KV-cache sessions (llm_kv_create) */
    size_t total;        /* the sum of the above */
    size_t allocated;    /* held now */
} llm_memory;
LLMDEF llm_status llm_model_memory(const llm_model *m, int B, int T, llm_memory *out);

/* ---- AdamW ---------------------------------------------------------------------------- */
typedef struct llm_adamw_config {
    float beta1, beta2, eps;  /* 0.9, 0.95, 1e-8 by default (nanoGPT / llm.c) */
    float weight_decay;       /* decoupled, as torch.optim.AdamW: p -= lr*wd*p */
    int decay_all;            /* 0: decay only 2-D weights (nanoGPT); 1: every tensor */
    float grad_clip;          /* clip the global L2 norm to this; 0 = off */
} llm_adamw_config;
LLMDEF llm_adamw_config llm_adamw_config_default(void);
/* One optimizer step at learning rate lr. *grad_norm (may be NULL) receives the global
 * gradient L2 norm before clipping. Optimizer moments are allocated on first use. A
 * gradient that is not finite (its norm inf or NaN) is refused with LLM_ERR_ARG, the
 * parameters unchanged; llm_model_step_scaled (below) skips such a step instead. */
LLMDEF llm_status llm_model_step(llm_model *m, const llm_adamw_config *cfg, float lr,
                                 float *grad_norm);

/* ---- mixed precision: dynamic loss scaling ------------------------------------------------ */
/* fp16 (llm_options.fp16) keeps 5 exponent bits: a gradient below 2^-24 (6e-8) rounds to
 * 0 and one above 65504 to inf, and many of a Transformer's gradients are that small.
 * Loss scaling, as PyTorch's torch.cuda.amp.GradScaler does it: backward runs on S times
 * the loss, so every gradient is S times the true one and clears the underflow, and the
 * step divides by S again (folded into AdamW's gradient factor: no extra pass). If a
 * gradient overflowed, the global gradient norm the step computes anyway is inf or NaN:
 * the step is then skipped (weights, AdamW moments and step count untouched), counted,
 * and S is multiplied by backoff_factor; after growth_interval finite steps in a row, S
 * is multiplied by growth_factor (unless that overflows). The defaults are GradScaler's.
 *     llm_loss_scaler sc = llm_loss_scaler_default();
 *     each step: llm_model_zero_grad(m);
 *                per micro-batch k of K: forward; llm_model_backward(m, sc.scale / K);
 *                llm_model_step_scaled(m, &cfg, lr, &sc, &norm, &skipped);
 * It works on every backend. In fp32 (the CPU, the exact CUDA mode) nothing overflows,
 * so no step is skipped, and with S a power of two (as the defaults keep it) scaling and
 * unscaling round nothing: the run equals an unscaled one bit for bit, unless a gradient
 * was below fp32's normal range (1e-38). Data parallel: the norm is taken after the
 * gradients are averaged, so every rank skips the same steps and the scalers agree. The
 * state (scale, good_steps, skipped) is not part of a checkpoint: a resumed run starts
 * again from the initial scale. */
typedef struct llm_loss_scaler {
    float scale;            /* S: pass S / K to llm_model_backward. 65536 (2^16) */
    float growth_factor;    /* S *= this after growth_interval finite steps in a row: 2 */
    float backoff_factor;   /* S *= this when a step is skipped: 0.5 */
    int growth_interval;    /* 2000; 0: S never grows */
    int good_steps;         /* state: finite steps since S last changed (start 0) */
    long long skipped;      /* state: steps skipped so far (start 0) */
} llm_loss_scaler;
LLMDEF llm_loss_scaler llm_loss_scaler_default(void);
/* llm_model_step for gradients of S = sc->scale times the loss: the norm and clipping
 * see the true gradients (*grad_norm is the true norm), AdamW gets them divided by S.
 * A non-finite gradient skips the step as described above: LLM_OK with *skipped = 1
 * (skipped may be NULL) and *grad_norm inf or NaN. sc NULL: llm_model_step. Errors:
 * LLM_ERR_ARG for a scaler with scale <= 0 or not finite, growth_factor < 1,
 * backoff_factor outside (0, 1) or growth_interval < 0; a backend failure as the step's. */
LLMDEF llm_status llm_model_step_scaled(llm_model *m, const llm_adamw_config *cfg, float lr,
                                        llm_loss_scaler *sc, float *grad_norm, int *skipped);
/* Data parallel (llm_options.dist_world): vals (n host floats, e.g. a step's loss) :=
 * their mean over the ranks, the same on every rank. Every rank must call it, in the same
 * order. Not distributed (or a backend without allreduce_mean): vals are left as they are. */
LLMDEF llm_status llm_model_allreduce_mean(llm_model *m, float *vals, int n);
LLMDEF int llm_model_step_count(const llm_model *m);

/* Learning-rate schedule: linear warmup from lr/warmup to lr over `warmup` steps,
 * then constant or cosine decay to min_lr at step `total`. step counts from 0. */
typedef enum llm_lr_kind { LLM_LR_COSINE = 0, LLM_LR_CONST = 1 } llm_lr_kind;
typedef struct llm_lr_schedule {
    llm_lr_kind kind; float lr, min_lr; int warmup, total;
} llm_lr_schedule;
LLMDEF float llm_lr_at(const llm_lr_schedule *s, int step);

/* ---- checkpoints ------------------------------------------------------------------------ */
/* What a training run needs, beyond weights, to resume exactly where it stopped. */
typedef struct llm_train_state {
    uint64_t step;           /* steps done */
    uint64_t rng[2];         /* the data loader's RNG (llm_loader) */
    uint64_t cursor;         /* the data loader's position */
    uint64_t epoch;
} llm_train_state;
/* Save weights (and, when with_optimizer, the AdamW moments and step count, plus ts
 * if not NULL). Crash-safe: written to path.tmp (its magic bytes last, so that a torn
 * .tmp is never taken for a checkpoint), fsync'ed, renamed over path, and the directory
 * fsync'ed (POSIX): a process killed at any point, or a power cut, leaves the previous
 * file or the new one, whole. A failed write (a full disk) gives LLM_ERR_IO, removes
 * path.tmp and leaves path as it was. A quantized model (llm_model_quantize) is saved
 * with its Q8_0 / bf16 matrices as they are (a version-2 checkpoint, about a quarter /
 * half the size; with_optimizer and ts do not apply), and llm_model_load gives it back
 * quantized. */
LLMDEF llm_status llm_model_save(const llm_model *m, const char *path, int with_optimizer,
                                 const llm_train_state *ts);
/* Restore the optimizer and train state saved by llm_model_save into a model loaded
 * from the same file. LLM_ERR_FORMAT if the file has none. ts may be NULL. */
LLMDEF llm_status llm_model_load_train_state(llm_model *m, const char *path,
                                             llm_train_state *ts);

/* ---- LoRA: low-rank adapters (Hu et al. 2021, as HuggingFace PEFT) ---------------------
 * Each chosen weight W (out, in) of every layer gains a trainable low-rank update:
 *     y = x W^T + b + (alpha / r) * (x A^T) B^T,    A (r, in), B (out, r)
 * A is drawn from U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform(a=sqrt(5))) and B is
 * zero, so the model starts exactly as the base. While adapters are attached the base is
 * frozen: no gradients and no AdamW moments exist for it (they are freed if they did),
 * backward computes only what the adapters need, and llm_model_step updates the adapters
 * alone (2-D tensors: weight decay applies). For Llama the fused matrices take one
 * adapter each: qkv = [wq; wk; wv], up = [w1 (gate); w3 (up)] (as PEFT on GPT-2's fused
 * c_attn). The adapters live beside the model; llm_model_save writes the base only. */
#define LLM_LORA_QKV  1   /* attention q, k, v: qkvw */
#define LLM_LORA_PROJ 2   /* attention output projection: attprojw */
#define LLM_LORA_UP   4   /* MLP up projection: fcw */
#define LLM_LORA_DOWN 8   /* MLP down projection: fcprojw */
#define LLM_LORA_ALL  15
typedef struct llm_lora_config {
    int rank;          /* r: 1 <= r <= C (and <= every adapted matrix's sides) */
    float alpha;       /* the update is scaled by alpha / r; 0: alpha = 2r (PEFT's 16 at r 8) */
    int targets;       /* LLM_LORA_* bits; 0: LLM_LORA_ALL */
    uint64_t seed;     /* for A */
} llm_lora_config;
/* Attach fresh adapters (replacing any). LLM_ERR_ARG for a rank outside [1, C] (named) or
 * bad targets/alpha. */
LLMDEF llm_status llm_model_lora_create(llm_model *m, const llm_lora_config *cfg);
/* Detach the adapters (the base is unchanged, and trainable again). Accepts no LoRA. */
LLMDEF void llm_model_lora_free(llm_model *m);
/* W += (alpha/r) B A for every adapted matrix (computed in double, rounded once), then
 * detach: the model is a plain one that computes what it computed with the adapters. */
LLMDEF llm_status llm_model_lora_merge(llm_model *m);
/* The attached config (rank 0 when none) and the number of adapter floats. */
LLMDEF llm_lora_config llm_model_lora_config(const llm_model *m);
LLMDEF size_t llm_model_lora_num_params(const llm_model *m);
/* Host copies of the adapters / their gradients / the reverse: for each target in the
 * order qkv, proj, up, down (those attached), A (L, r, in) then B^T (L, r, out): B is
 * kept transposed (PEFT's lora_B.weight is B), so that adding its product to a layer's
 * output is one accumulating matmul. */
LLMDEF llm_status llm_model_lora_get(const llm_model *m, float *dst);
LLMDEF llm_status llm_model_lora_set(llm_model *m, const float *src);
LLMDEF llm_status llm_model_lora_get_grads(const llm_model *m, float *dst);
/* The adapters alone, in their own small file (path.tmp, then renamed): the base's
 * shape, rank, alpha, targets, then the floats; with_optimizer adds their AdamW moments
 * and step (and ts, when not NULL), so a run can resume. */
LLMDEF llm_status llm_model_lora_save(const llm_model *m, const char *path, int with_optimizer,
                                      const llm_train_state *ts);
/* Attach the adapters of a file (replacing any) to a model of the same shape (any copy
 * of the base): LLM_ERR_ARG naming both shapes when they differ. The moments, step and
 * ts are restored when the file has them (ts may be NULL). */
LLMDEF llm_status llm_model_lora_load(llm_model *m, const char *path, llm_train_state *ts);

/* ---- token datasets ---------------------------------------------------------------------- */
/* llm.c's token file: 256 int32 header (magic 20240520, version 1, count), then count
 * uint16 tokens. Memory-mapped where the platform allows. */
typedef struct llm_dataset llm_dataset;
LLMDEF llm_status llm_dataset_open(llm_dataset **out, const char *path);
/* The same over a token file's bytes in memory, data[0..len): borrowed, so they must
 * stay valid (and unchanged) until llm_dataset_close, and data must be 2-byte aligned
 * (LLM_ERR_ARG otherwise; malloc'd memory is). */
LLMDEF llm_status llm_dataset_open_memory(llm_dataset **out, const void *data, size_t len);
LLMDEF void llm_dataset_close(llm_dataset *d);
LLMDEF size_t llm_dataset_len(const llm_dataset *d);
LLMDEF const uint16_t *llm_dataset_tokens(const llm_dataset *d);
/* Write tokens in that layout, crash-safe as llm_model_save. Ids must be < 65536, and
 * at most 2^31 - 1 of them (the header's int32 count). */
LLMDEF llm_status llm_dataset_write(const char *path, const int *tokens, size_t n);
/* A dataset held in memory: a copy of tokens[0, n) (ids in [0, 65536)), for text that
 * was tokenized in the program (build/finetune). Close it as any other. */
LLMDEF llm_status llm_dataset_from_tokens(llm_dataset **out, const int *tokens, size_t n);

/* Serves (B, T+1) windows of tokens [begin, end) of a dataset: window j covers tokens
 * [begin + j*T, begin + j*T + T + 1). Batch k holds windows k*B .. k*B+B-1, in order,
 * or of a permutation of the windows drawn anew each epoch when shuffle is set. */
typedef struct llm_loader {
    const llm_dataset *data;
    size_t begin, end;       /* token range */
    int B, T, shuffle;
    size_t n_windows;        /* (end - begin - 1) / T */
    size_t n_batches;        /* n_windows / B batches per epoch */
    size_t cursor;           /* next batch in this epoch */
    uint64_t epoch;
    uint64_t rng[2];         /* state of the permutation RNG at the start of this epoch */
    uint32_t *perm;          /* (n_windows) current order */
} llm_loader;
/* begin/end: token range (end == 0 means the whole dataset). */
LLMDEF llm_status llm_loader_init(llm_loader *l, const llm_dataset *d, size_t begin, size_t end,
                                  int B, int T, int shuffle, uint64_t seed);
LLMDEF void llm_loader_free(llm_loader *l);
/* Next batch: inputs and targets (B,T). Wraps to a new epoch after the last batch. */
LLMDEF llm_status llm_loader_next(llm_loader *l, int *inputs, int *targets);
LLMDEF void llm_loader_reset(llm_loader *l);
LLMDEF void llm_loader_get_state(const llm_loader *l, llm_train_state *ts);
LLMDEF llm_status llm_loader_set_state(llm_loader *l, const llm_train_state *ts);
/* Evaluation over n_batches batches of the loader (from its current position), with
 * dropout off: *loss (may be NULL) the mean cross-entropy per predicted token (every
 * target counts the same, ignored targets none), *ppl (may be NULL) the perplexity
 * exp(loss). */
LLMDEF llm_status llm_model_eval(llm_model *m, llm_loader *l, int n_batches, float *loss, float *ppl);

/* ---- random numbers --------------------------------------------------------------------- */
/* xoshiro128-style generator used for init and shuffling; same seed, same stream. */
typedef struct llm_rng { uint64_t s[2]; } llm_rng;
LLMDEF void llm_rng_seed(llm_rng *r, uint64_t seed);
LLMDEF uint64_t llm_rng_u64(llm_rng *r);
LLMDEF float llm_rng_normal(llm_rng *r);   /* N(0,1), Box-Muller */

/* ---- GPT-2 tokenizer ------------------------------------------------------------------- */
/* Byte-level BPE, byte-exact with OpenAI's GPT-2 encoder (encoder.py / tiktoken "gpt2"):
 * text is split by GPT-2's pre-tokenizer pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (\s = Unicode White_Space), each piece is merged by rank, and ids come from the
 * vocabulary. Any bytes can be encoded: a byte that is not part of valid UTF-8 counts
 * as one "other" character, so decode(encode(x)) == x for every byte string x.
 *
 * A loaded tokenizer is immutable: every function below that takes a const
 * llm_tokenizer * may be called from any number of threads at once. Encoding keeps
 * its pre-token cache per call, so there is no shared mutable state. */
typedef struct llm_tokenizer llm_tokenizer;

/* Load a vocabulary. path is a file or a directory:
 *   directory: tokenizer.json, else encoder.json + vocab.bpe, else vocab.json + merges.txt;
 *   tokenizer.json (HF single file: model.vocab, model.merges as "a b" or ["a","b"],
 *     added_tokens; a pre_tokenizer that splits after "\n" and then applies ByteLevel
 *     without its regex, as llm_tokenizer_save writes for LLM_PRETOK_LINES, selects
 *     that mode; any other pre_tokenizer is taken for GPT-2's);
 *   encoder.json or vocab.json (any *.json that is not a tokenizer.json): the merges
 *     are read from vocab.bpe or merges.txt in the same directory.
 * `<|endoftext|>` (and added_tokens marked special) become special tokens.
 * On success *out owns the tokenizer (free with llm_tokenizer_free); on failure *out is
 * NULL and llm_last_error() names the file and the problem (LLM_ERR_IO, LLM_ERR_FORMAT,
 * LLM_ERR_NOMEM). */
LLMDEF llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path);
/* The same from memory. With merges != NULL, vocab is an encoder.json/vocab.json
 * object and merges a vocab.bpe/merges.txt text; with merges == NULL, vocab is a
 * tokenizer.json. The buffers are only read during the call (need not be NUL-ended). */
LLMDEF llm_status llm_tokenizer_load_memory(llm_tokenizer **out, const char *vocab,
                                            size_t vocab_len, const char *merges,
                                            size_t merges_len);
LLMDEF void llm_tokenizer_free(llm_tokenizer *tok);            /* accepts NULL */

/* V: one more than the largest id (50257 for GPT-2). */
LLMDEF int llm_tokenizer_vocab_size(const llm_tokenizer *tok);
/* The id of <|endoftext|>, or -1 when the vocabulary has none. */
LLMDEF int llm_tokenizer_eot(const llm_tokenizer *tok);
/* The bytes of token id (not NUL-terminated; *len receives the count), owned by the
 * tokenizer. NULL when id is out of range or unused. */
LLMDEF const char *llm_tokenizer_token(const llm_tokenizer *tok, int id, size_t *len);
/* The id of the token whose bytes are s[0..len), or -1. */
LLMDEF int llm_tokenizer_find(const llm_tokenizer *tok, const char *s, size_t len);

/* Encoding flags. */
#define LLM_TOKENIZE_SPECIAL 1  /* recognise special tokens (<|endoftext|>) in the text;
                                   without it they are ordinary text */

/* Encode text[0..len) (any bytes) into ids[0..cap). *n_ids receives the number of ids.
 * A token never covers less than one byte, so cap >= len always suffices. If cap is too
 * small, ids holds the first cap ids, *n_ids the full count, and LLM_ERR_ARG is
 * returned. Allocates scratch memory (LLM_ERR_NOMEM possible); thread-safe. */
LLMDEF llm_status llm_tokenizer_encode(const llm_tokenizer *tok, const char *text, size_t len,
                                       int flags, int *ids, size_t cap, size_t *n_ids);
/* The same, spreading a long text over the threads of pool (NULL: single thread). The
 * text is cut only between an ASCII non-space byte and a space (LLM_PRETOK_LINES: at
 * line starts), where the pre-tokenizer provably starts a new piece, so the ids equal
 * llm_tokenizer_encode's exactly. The pool must not be in use by another thread during
 * the call. */
LLMDEF llm_status llm_tokenizer_encode_pool(const llm_tokenizer *tok, llm_pool *pool,
                                            const char *text, size_t len, int flags, int *ids,
                                            size_t cap, size_t *n_ids);

/* Decode ids[0..n) into out[0..cap) (the raw bytes, no NUL). *n_out receives the
 * byte count; with out == NULL and cap == 0 only the count is computed. LLM_ERR_ARG on
 * an unknown id or when cap is too small (out then holds what fit). Thread-safe. */
LLMDEF llm_status llm_tokenizer_decode(const llm_tokenizer *tok, const int *ids, size_t n,
                                       char *out, size_t cap, size_t *n_out);

/* Streaming decoder for printing tokens as they are generated: it emits only whole
 * UTF-8 characters and holds back the first bytes of a character that a later token
 * completes. Bytes that can never become valid UTF-8 are passed through unchanged, so
 * the concatenated output (with the final flush) equals llm_tokenizer_decode's.
 * One stream per output; plain struct, no allocation. */
typedef struct llm_tokenizer_stream {
    const llm_tokenizer *tok;
    unsigned char pending[4];  /* start of an incomplete UTF-8 character */
    int n_pending;             /* 0..3 */
} llm_tokenizer_stream;
LLMDEF void llm_tokenizer_stream_init(llm_tokenizer_stream *s, const llm_tokenizer *tok);
/* Append token id; writes the complete characters to out[0..cap) and their count to
 * *n_out. cap >= llm_tokenizer_max_token_len(tok) + 3 always suffices. LLM_ERR_ARG on an
 * unknown id or too small cap (the stream is then unchanged). */
LLMDEF llm_status llm_tokenizer_stream_put(llm_tokenizer_stream *s, int id, char *out,
                                           size_t cap, size_t *n_out);
/* End of stream: writes the held-back bytes (at most 3) to out and returns their count. */
LLMDEF size_t llm_tokenizer_stream_flush(llm_tokenizer_stream *s, char out[4]);
/* The length in bytes of the longest token. */
LLMDEF size_t llm_tokenizer_max_token_len(const llm_tokenizer *tok);

/* How text is cut into words before BPE, in training and encoding alike. */
#define LLM_PRETOK_GPT2  0  /* GPT-2's pattern above (the default) */
#define LLM_PRETOK_LINES 1  /* no pattern: each line, its '\n' included, is one word */
/* The tokenizer's pre-tokenizer (LLM_PRETOK_*); a loaded tokenizer.json records it. */
LLMDEF int llm_tokenizer_pretokenize(const llm_tokenizer *tok);
/* The number of merges, and merge r (0 is applied first): *left and *right (either may
 * be NULL) receive its parts' ids; returns the id it makes, or -1 when r is out of range. */
LLMDEF int llm_tokenizer_n_merges(const llm_tokenizer *tok);
LLMDEF int llm_tokenizer_merge(const llm_tokenizer *tok, int r, int *left, int *right);

/* ---- training a byte-level BPE ----------------------------------------------------------- */
typedef struct llm_tokenizer_train_config {
    int pretokenize;              /* LLM_PRETOK_GPT2 (default) or LLM_PRETOK_LINES */
    const char *const *special;   /* (n_special) special tokens, NUL-ended UTF-8 of 2+ bytes */
    int n_special;                /* (0 by default) */
    llm_pool *pool;               /* count words on its threads (NULL: the calling thread) */
} llm_tokenizer_train_config;
LLMDEF llm_tokenizer_train_config llm_tokenizer_train_config_default(void);

/* Learn a byte-level BPE of vocab_size tokens (the special tokens included) from
 * texts[0..n_texts), lens[k] bytes each (any bytes: invalid UTF-8 is learned like the
 * rest). cfg NULL means the defaults. The rule, exact so that any implementation can
 * reproduce it (tests/bpe_train_ref.py is one, in plain Python):
 *   1. words: each text is cut at the special tokens (they are not learned), then by
 *      the pre-tokenizer; a word's count is the number of times it occurs;
 *   2. ids 0..255 are the 256 byte values; every word starts as its bytes;
 *   3. merge k = 0, 1, ...: count each adjacent pair of symbols over all words, a word
 *      weighted by its count (every position counts: "aaa" holds (a, a) twice). Take
 *      the pair (a, b) with the highest count, ties to the smallest a, then the smallest
 *      b. It becomes id 256 + k, and every word replaces its occurrences left to right
 *      ("aaa" -> [aa, a]);
 *   4. stop after vocab_size - 256 - n_special merges, or when no pair left occurs at
 *      least twice;
 *   5. the special tokens follow, in the order given: ids 256 + n_merges, ...
 * Encoding replays the merges in order on each word, so a training word encodes to its
 * final symbols. Pair counts are kept up to date as merges happen (each merge visits
 * only the words that hold its pair) and the best pair comes from a heap: not a recount
 * per merge. The same inputs give the same tokenizer at any thread count.
 * A merge never makes the bytes of an existing token (a stretch of a word that stays
 * whole evolves as that stretch alone would, and alone it was merged into the older
 * token), so ids and strings stay one to one, as vocab.json needs.
 * HuggingFace tokenizers' BpeTrainer differs in: ids (its special tokens come first,
 * then the bytes in the order of GPT-2's printable characters), so ties, which it
 * breaks by the smallest pair of *its* ids, can go another way; it also merges pairs
 * seen once (min_frequency 0); and trained from files it reads them line by line, so
 * no word spans a line end. minbpe follows this rule but breaks ties by first occurrence.
 * Errors (LLM_ERR_ARG): an empty corpus; vocab_size below 256 + n_special or above
 * 2^24; a special token that is empty, one byte long, repeated or not valid UTF-8.
 * On success *out owns the tokenizer; on failure *out is NULL. */
LLMDEF llm_status llm_tokenizer_train(llm_tokenizer **out, const char *const *texts, const size_t *lens,
                                      int n_texts, int vocab_size, const llm_tokenizer_train_config *cfg);

/* Write tok into the existing directory dir: vocab.json + merges.txt (the GPT-2 /
 * HuggingFace pair, which knows neither special tokens other than <|endoftext|> nor the
 * pre-tokenizer) and tokenizer.json (HuggingFace's single file, which records both);
 * llm_tokenizer_load(dir) reads tokenizer.json. Each file goes to a temporary and is
 * renamed into place. LLM_ERR_IO when a file cannot be written. */
LLMDEF llm_status llm_tokenizer_save(const llm_tokenizer *tok, const char *dir);

/* ---- Llama tokenizer (llama2.c's tokenizer.bin) ------------------------------------- */
/* SentencePiece-style vocabulary in llama2.c's layout: int32 max_token_length, then per
 * token: float32 score, int32 length, `length` bytes (the piece, no NUL). Id 0 is <unk>,
 * 1 BOS, 2 EOS, 3..258 the byte pieces "<0x00>".."<0xFF>", then the merges.
 * Encoding and decoding follow llama2.c's run.c exactly (see llm_llama_tokenizer_encode).
 * Read-only after loading: one tokenizer may be used by several threads at once. */
typedef struct llm_llama_tokenizer llm_llama_tokenizer;
#define LLM_LLAMA_BOS 1
#define LLM_LLAMA_EOS 2

/* Load path. The file does not store the vocabulary size: vocab_size > 0 requires the
 * file to hold exactly that many tokens (a tokenizer that does not match the model is
 * an error); vocab_size == 0 reads tokens until the end of the file. Truncated or
 * inconsistent files give LLM_ERR_FORMAT naming the token. *out is NULL on failure. */
LLMDEF llm_status llm_llama_tokenizer_load(llm_llama_tokenizer **out, const char *path,
                                           int vocab_size);
/* The same from the file's bytes in memory, data[0..len) (only read during the call).
 * Errors name the file "(memory)". */
LLMDEF llm_status llm_llama_tokenizer_load_memory(llm_llama_tokenizer **out, const void *data,
                                                  size_t len, int vocab_size);
LLMDEF void llm_llama_tokenizer_free(llm_llama_tokenizer *t);       /* accepts NULL */
LLMDEF int llm_llama_tokenizer_vocab_size(const llm_llama_tokenizer *t);
/* The raw piece of token id (NUL-terminated; *len its length, may be NULL) and its
 * merge score. NULL / 0 for an id outside [0, V). */
LLMDEF const char *llm_llama_tokenizer_piece(const llm_llama_tokenizer *t, int id, size_t *len);
LLMDEF float llm_llama_tokenizer_score(const llm_llama_tokenizer *t, int id);
/* Encode text[0, len) as run.c's encode(): optional BOS, the dummy-prefix piece " "
 * when the text is not empty, one piece per UTF-8 code point (bytes that are not in
 * the vocabulary fall back to the byte tokens, id = byte + 3), then repeated merges of
 * the adjacent pair whose concatenation is in the vocabulary with the highest score
 * (the leftmost on ties), optional EOS. At most len + 3 ids result; ids must have
 * room for max_ids of them (LLM_ERR_ARG if the result does not fit; *n_ids then holds
 * the number needed). Runs in O(n log n) for n code points. */
LLMDEF llm_status llm_llama_tokenizer_encode(const llm_llama_tokenizer *t, const char *text,
                                             size_t len, int bos, int eos, int *ids,
                                             int max_ids, int *n_ids);
/* The bytes token id stands for when it follows prev_id, as run.c's decode(): after
 * BOS a leading space is dropped (the dummy prefix); a "<0xXX>" piece is the raw byte.
 * Returns a pointer into the tokenizer (valid until it is freed), *len its length
 * (len may be NULL); NULL for an id outside [0, V). Note that run.c's safe_printf()
 * additionally skips one-byte results that are neither printable nor whitespace;
 * this function returns them (a UTF-8 character split into byte tokens needs them). */
LLMDEF const char *llm_llama_tokenizer_decode(const llm_llama_tokenizer *t, int prev_id, int id,
                                              size_t *len);

/* ---- the tokenizer of a GGUF file ------------------------------------------------------- */
/* A GGUF model file carries its tokenizer in its metadata (tokenizer.ggml.*). For
 * tokenizer.ggml.model "llama" (SentencePiece pieces with scores: Llama 2, TinyLlama,
 * stories*) *llama receives llama2.c's tokenizer built from it (BOS 1, EOS 2 and the byte
 * pieces at ids 3..258 are required, as llm_llama_tokenizer has them); for "gpt2"
 * (byte-level BPE tokens and merges, GPT-2's pre-tokenizer) *gpt2 receives the GPT-2
 * tokenizer. The other pointer is set to NULL. Errors: LLM_ERR_FORMAT for a file without
 * a tokenizer or a malformed one, LLM_ERR_UNSUPPORTED for other tokenizer models or
 * pre-tokenizers (named). Both out pointers must be given. */
LLMDEF llm_status llm_gguf_load_tokenizer(const char *path, llm_tokenizer **gpt2, llm_llama_tokenizer **llama);

/* ---- sampling ------------------------------------------------------------------------ */
/* How the next token is chosen from the logits. Zero-initialised (or
 * llm_sampler_config_default()) means greedy: argmax, the first maximum on ties, no
 * randomness. Order of operations, on a private copy of the V logits:
 *   1. repetition penalty: for each distinct id in the previous ids,
 *      x = x > 0 ? x / penalty : x * penalty              (CTRL paper; HF transformers)
 *   2. temperature: temperature == 0 -> argmax, done; else x = x / temperature and
 *      p = softmax(x)
 *   3. top-k: keep the k largest p (ties: lower id first), p /= sum of those
 *   4. top-p: keep the shortest prefix of the candidates sorted by p (descending, ties:
 *      lower id first) whose cumulative p exceeds top_p, p /= that sum
 *   5. draw r = one uniform float from the sampler's RNG; return the first candidate
 *      whose cumulative p exceeds r.
 * With top_k off this is llama2.c's run.c sample() exactly (same float operations, the
 * same xorshift RNG, the same (1 - top_p)/(V - 1) pre-filter of the nucleus), so a seed
 * reproduces run.c's text; candidates are sorted with an explicit tie-break on the id
 * (run.c's qsort leaves ties to the C library), which makes results platform-independent.
 * (It departs from run.c only where run.c fails: see the SAMPLE section.) */
typedef struct llm_sampler_config {
    float temperature;         /* 0: greedy. Must be >= 0 */
    int top_k;                 /* <= 0 or >= V: off */
    float top_p;               /* <= 0 or >= 1: off (run.c's convention) */
    float repetition_penalty;  /* 0 or 1: off; > 1 discourages repeats (1.1..1.3 typical) */
    uint64_t seed;             /* initial xorshift state; 0 is replaced by a fixed non-zero
                                  constant (an all-zero xorshift state never changes) */
} llm_sampler_config;
LLMDEF llm_sampler_config llm_sampler_config_default(void);  /* all zero: greedy */

/* One sampler per generated sequence: it owns the RNG state and V-sized scratch, so
 * sampling never allocates. Not to be used by two threads at once; separate samplers
 * are independent. */
typedef struct llm_sampler llm_sampler;
/* cfg NULL means greedy. LLM_ERR_ARG for V < 1 or an invalid config (negative or NaN
 * temperature, negative penalty, NaN top_p). *out is NULL on failure. */
LLMDEF llm_status llm_sampler_create(llm_sampler **out, int vocab_size,
                                     const llm_sampler_config *cfg);
LLMDEF void llm_sampler_free(llm_sampler *s);                          /* accepts NULL */
/* Restart the RNG stream from seed (0: the same fixed constant as in the config). */
LLMDEF void llm_sampler_reseed(llm_sampler *s, uint64_t seed);
/* Choose the next token from logits (V), which are only read (the sampler works on its
 * own copy). prev (n_prev ids, may be NULL) are the ids the repetition penalty applies
 * to (e.g. the prompt and what was generated, or a window of the last ones); ignored
 * when the penalty is off. *out_id receives the id; out_logprob (may be NULL) receives
 * log p of that id under the final distribution of step 5 (after penalty, temperature,
 * top-k, top-p and renormalisation). For greedy, where that distribution is a point
 * mass, it is instead log softmax(x)[id] of the penalised logits at temperature 1, the
 * model's own probability of its choice. One RNG draw per call when temperature > 0,
 * none when greedy. Errors: LLM_ERR_ARG for a NaN or +inf logit, logits that are all
 * -inf, or a prev id outside [0, V). */
LLMDEF llm_status llm_sampler_sample(llm_sampler *s, const float *logits, const int *prev,
                                     int n_prev, int *out_id, float *out_logprob);

/* ---- stop strings -------------------------------------------------------------------- */
/* For streaming generation that must stop at user strings. Keep the text generated so
 * far in one buffer; after appending a token's bytes, call
 *   llm_stop_find(text, len, len_before_append, stops, n, &pos)
 * which looks for an occurrence of any stop string that ends after byte `from` (so
 * each byte is searched once, stop strings spanning tokens included). It returns the
 * index in stops of the earliest occurrence (the first listed on a tie), with *pos
 * (may be NULL) where it starts, so the text to keep is text[0, pos); -1 if none.
 * Empty and NULL stop strings never match. */
LLMDEF int llm_stop_find(const char *text, size_t len, size_t from, const char *const *stops,
                         int n_stops, size_t *pos);
/* The number of trailing bytes of text that begin some stop string without completing
 * one: a streaming caller prints text only up to len minus this, and holds the rest
 * back until the next token shows whether the stop string follows. */
LLMDEF size_t llm_stop_partial(const char *text, size_t len, const char *const *stops,
                               int n_stops);
/* ---- inference: KV cache ---------------------------------------------------------------
 * An inference session over a model: a key/value cache for S independent sequences of up
 * to maxT positions each, separate from the training activations (a model can train and
 * serve at once). Each forward call takes n rows, row i being the next token of sequence
 * seq[i]; its keys and values are stored in the cache and it attends to everything its
 * sequence holds. One call prefills a whole prompt (its rows in order), or advances
 * several sequences by one token each (batched decoding), or any mix.
 * Memory: 2 * L * S * maxT * NKV*HS floats of cache, plus scratch for max_rows rows.
 * Not thread-safe: one session is used by one thread at a time (it shares the model's
 * backend state, so neither may run another call meanwhile). */
typedef struct llm_kv llm_kv;

/* n_seq >= 1 sequences; max_len positions per sequence (0 or > the model's context: the
 * model's max_seq_len); max_rows rows per internal forward chunk (0: 256; longer inputs
 * are split into chunks). The model must outlive the session. *out is NULL on failure. */
LLMDEF llm_status llm_kv_create(llm_kv **out, llm_model *m, int n_seq, int max_len, int max_rows);
LLMDEF void llm_kv_free(llm_kv *kv);                    /* accepts NULL */
LLMDEF int llm_kv_max_len(const llm_kv *kv);            /* maxT */
LLMDEF int llm_kv_n_seq(const llm_kv *kv);              /* S */
/* Tokens held by sequence seq (0 for a bad seq), and those tokens (host memory owned by
 * the session, valid until the next call that changes it). */
LLMDEF int llm_kv_len(const llm_kv *kv, int seq);
LLMDEF const int *llm_kv_tokens(const llm_kv *kv, int seq);
/* Forget sequence seq (seq < 0: all). Nothing is freed; the positions are reused. */
LLMDEF void llm_kv_clear(llm_kv *kv, int seq);
/* Drop the last n tokens of sequence seq (n > its length: all). Rewinding is free: the
 * cached keys beyond the new length are simply overwritten later. */
LLMDEF void llm_kv_truncate(llm_kv *kv, int seq, int n);
/* Forward n rows: row i is token tokens[i] appended to sequence seq[i] (seq may be NULL:
 * all rows go to sequence 0). Rows of one sequence must come in order; rows of different
 * sequences may interleave. want (n flags) selects the rows whose logits are returned:
 * logits (count of wanted rows, V), in row order. want NULL: every row, or none when
 * logits is NULL too (a prefill that only fills the cache). Everything is validated before anything changes: a bad seq or
 * token, or a sequence that would exceed max_len ("context full"), gives LLM_ERR_ARG and
 * leaves the session as it was. */
LLMDEF llm_status llm_kv_forward(llm_kv *kv, const int *seq, const int *tokens, int n,
                                 const unsigned char *want, float *logits);

/* ---- inference: generation ----------------------------------------------------------- */
/* The bytes of token id when it follows prev_id (prev_id -1 at the start of a text),
 * written to buf[0, cap); returns the full length (which may exceed cap; then the piece
 * is truncated). Ready-made ones for both tokenizers follow. */
typedef size_t (*llm_piece_fn)(void *ud, int prev_id, int id, char *buf, size_t cap);
/* ud: a const llm_tokenizer * (GPT-2: the token's bytes, which may be part of a UTF-8
 * character) / a const llm_llama_tokenizer * (llm_llama_tokenizer_decode: after BOS the
 * leading space is dropped; <0xXX> is the raw byte). Unknown ids give 0 bytes. */
LLMDEF size_t llm_piece_gpt2(void *ud, int prev_id, int id, char *buf, size_t cap);
LLMDEF size_t llm_piece_llama(void *ud, int prev_id, int id, char *buf, size_t cap);

/* Called once per generated token. item: the index in the batch (0 for llm_generate);
 * id the token; text[0, len) the bytes that became final with it (its piece when there
 * are no stop strings; with stop strings, bytes that might begin a stop string are held
 * back and come with a later token, and the stop string itself never comes); NULL/0
 * without a piece function. logprob: see llm_sampler_sample. A final call with id -1
 * delivers held-back bytes when generation ends for another reason than a stop string.
 * Return non-zero to stop this item. */
typedef int (*llm_token_fn)(void *ud, int item, int id, const char *text, size_t len,
                            float logprob);

/* Why an item stopped. */
typedef enum llm_finish {
    LLM_FINISH_NONE = 0,     /* still running (never returned) */
    LLM_FINISH_LENGTH = 1,   /* max_new_tokens generated, or the output array is full */
    LLM_FINISH_TOKEN = 2,    /* the stop token was sampled (it is not part of the output) */
    LLM_FINISH_STOP = 3,     /* a stop string appeared (the token completing it is output) */
    LLM_FINISH_CALLBACK = 4, /* the token callback returned non-zero */
    LLM_FINISH_CONTEXT = 5   /* the sequence reached max_len and slide_window is off */
} llm_finish;

/* Start from llm_generate_config_default() (a zeroed struct would stop at id 0). */
typedef struct llm_generate_config {
    int max_new_tokens;          /* <= 0: until another condition stops it (or the output
                                    array is full) */
    llm_sampler_config sampler;  /* zero: greedy. Item i of a batch uses seed + i */
    int stop_token;              /* an id that ends generation (GPT-2: <|endoftext|>; run.c
                                    stops at BOS = 1); < 0: none. NOTE: 0 is a valid id, so
                                    use llm_generate_config_default() (-1) */
    const char *const *stops;    /* n_stops stop strings (need `piece`) */
    int n_stops;
    llm_piece_fn piece;          /* decodes ids for stop strings and the callback; may be NULL */
    void *piece_ud;
    llm_token_fn on_token;       /* may be NULL */
    void *on_token_ud;
    int slide_window;            /* 1: when a sequence is full keep its last max_len/2
                                    tokens and re-prefill them (positions restart), instead
                                    of stopping with LLM_FINISH_CONTEXT */
} llm_generate_config;
/* max_new_tokens 256, greedy, stop_token -1, no stop strings, no callbacks, no sliding. */
LLMDEF llm_generate_config llm_generate_config_default(void);

/* Timing of a generation call (added up over the batch). */
typedef struct llm_generate_stats {
    int prefill_tokens;       /* prompt rows forwarded (re-prefills of a slide included) */
    double prefill_seconds;
    int decode_tokens;        /* rows forwarded one token per sequence per step */
    double decode_seconds;    /* everything after the prefill: sampling, callbacks, decode */
    int generated;            /* tokens output */
} llm_generate_stats;

/* Continue sequence seq of the session: append prompt[0, n_prompt) (n_prompt >= 1; the
 * sequence may already hold tokens, e.g. an earlier turn), then sample up to
 * max_new_tokens ids into out[0, cap), *n_out of them. The cache then holds the prompt
 * and every output id except the last (sampled from the final logits and never fed
 * back): to continue the sequence, pass that id first in the next prompt.
 * finish (may be NULL) receives why it stopped, stats (may be NULL) the timing.
 * Errors: bad arguments, a prompt that does not fit in max_len (unless slide_window,
 * which then keeps the prompt's last max_len/2 tokens), sampler errors. */
LLMDEF llm_status llm_generate(llm_kv *kv, int seq, const int *prompt, int n_prompt,
                               const llm_generate_config *cfg, int *out, int cap, int *n_out,
                               llm_finish *finish, llm_generate_stats *stats);
/* The same for n items at once, sharing every forward: item i continues sequence seqs[i]
 * (distinct; NULL: item i uses sequence i) with prompts[i][0, n_prompts[i]) and writes
 * outs[i][0, caps[i]), n_outs[i]. All prompts are prefilled in one forward; then each step
 * forwards one row per item still running; an item that stops drops out (continuous
 * batching in small). Item i samples with seed cfg->sampler.seed + i, and gives what
 * llm_generate gives with that seed (up to the float rounding of a batched matmul, which
 * adds in another order than a single row's). finish (n, may be NULL). */
LLMDEF llm_status llm_generate_batch(llm_kv *kv, int n, const int *seqs,
                                     const int *const *prompts, const int *n_prompts,
                                     const llm_generate_config *cfg, int *const *outs,
                                     const int *caps, int *n_outs, llm_finish *finish,
                                     llm_generate_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* LLM_H */

/* ==================================================================================== */
/*                                 IMPLEMENTATION                                       */
/* ==================================================================================== */
#ifdef LLM_IMPLEMENTATION
#ifndef LLM_IMPLEMENTATION_DONE
#define LLM_IMPLEMENTATION_DONE

//==== PLATFORM =========================================================================
/* What differs between Linux, macOS and Windows lives here and in MEMORY and POOL:
 *   threads    pthreads on POSIX; on Windows (MinGW-w64 and MSVC alike) Win32 threads,
 *              SRW locks and condition variables (Vista or later)
 *   files      paths are UTF-8 everywhere: on Windows they are widened for _wfopen and
 *              the W functions; mmap on POSIX, MapViewOfFile on Windows; 64-bit sizes
 *   the rest   the thread-local error, the CPU count, a monotonic clock
 * Each feature macro below is defined only when the caller's code has not already
 * included the system headers it steers (headers read it once). */
#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN   /* no winsock.h, ole or gdi: fewer macros in the user's file */
#endif
#ifndef NOMINMAX
#define NOMINMAX              /* no min/max macros */
#endif
#if defined(_MSC_VER) && !defined(_CRT_SECURE_NO_WARNINGS)
#define _CRT_SECURE_NO_WARNINGS   /* fopen, strcpy, getenv: MSVC would ask for its _s forms */
#endif
#else
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#if defined(__APPLE__) && !defined(_DARWIN_C_SOURCE)
#define _DARWIN_C_SOURCE 1    /* _POSIX_C_SOURCE alone hides macOS's own declarations */
#endif
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <math.h>
#include <float.h>
#include <limits.h>
#if defined(_WIN32)
#include <windows.h>
#include <process.h>          /* _beginthreadex */
#include <wchar.h>            /* _wfopen, _wremove */
#if defined(_WIN32_WINNT) && _WIN32_WINNT < 0x0600 && !defined(LLM_NO_THREADS)
#error "llm.h needs Windows Vista or later (_WIN32_WINNT >= 0x0600) for SRW locks and condition variables (or LLM_NO_THREADS)"
#endif
#else
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <fcntl.h>
#define LLM__HAVE_MMAP 1
#ifndef LLM_NO_THREADS
#include <pthread.h>
#include <sched.h>            /* sched_yield */
#endif
#if defined(__APPLE__)
/* declared here rather than from <sys/sysctl.h>, which needs BSD types (u_int) that a
 * file compiled with _POSIX_C_SOURCE and without _DARWIN_C_SOURCE does not have */
#ifdef __cplusplus
extern "C"
#endif
int sysctlbyname(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
#endif
#endif

#if defined(LLM_MALLOC) && defined(LLM_FREE) && defined(LLM_REALLOC)
#elif !defined(LLM_MALLOC) && !defined(LLM_FREE) && !defined(LLM_REALLOC)
#define LLM_MALLOC(sz) malloc(sz)
#define LLM_REALLOC(p, sz) realloc(p, sz)
#define LLM_FREE(p) free(p)
#else
#error "llm.h: define all of LLM_MALLOC, LLM_REALLOC and LLM_FREE, or none"
#endif
#ifndef LLM_ASSERT
#include <assert.h>
#define LLM_ASSERT(x) assert(x)
#endif

/* Thread-local storage: C++11 and C11 have a keyword; MSVC's C has __declspec(thread);
 * gcc and clang have __thread in every C mode (MinGW-w64 emulates it). */
#if defined(__cplusplus)
#define LLM__TLS thread_local
#elif defined(_MSC_VER)
#define LLM__TLS __declspec(thread)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define LLM__TLS _Thread_local
#else
#define LLM__TLS __thread
#endif

/* MinGW-w64's gcc takes format(printf) to mean msvcrt's printf, which lacks %zu; the
 * library formats its messages with MinGW's own C99 printf (see llm_set_error). clang
 * has no gnu_printf and checks printf as C99 there. */
#if defined(__MINGW32__) && !defined(__clang__)
#define LLM__PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__) || defined(__clang__)
#define LLM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LLM__PRINTF(a, b)
#endif
#if defined(__GNUC__) || defined(__clang__)
#define LLM__UNUSED __attribute__((unused))
#else
#define LLM__UNUSED
#endif

/* Casts that C++ requires and C allows (void* from malloc, pointer reinterpretation). */
#define LLM__CAST(T, x) ((T)(x))

//==== ERRORS ===========================================================================
static LLM__TLS char llm__errmsg[512];

LLMDEF const char *llm_status_string(llm_status s) {
    switch (s) {
    case LLM_OK: return "ok";
    case LLM_ERR_ARG: return "invalid argument";
    case LLM_ERR_NOMEM: return "out of memory";
    case LLM_ERR_IO: return "i/o error";
    case LLM_ERR_FORMAT: return "malformed file";
    case LLM_ERR_UNSUPPORTED: return "unsupported";
    case LLM_ERR_BACKEND: return "backend error";
    case LLM_ERR_STATE: return "call out of order";
    }
    return "unknown status";
}

LLMDEF const char *llm_last_error(void) { return llm__errmsg; }

/* Record why a call failed and return the status, so failures read
 * `return llm__err(LLM_ERR_FORMAT, "%s: bad magic %d", path, magic);` */
#define llm__err llm_set_error
LLMDEF llm_status llm_set_error(llm_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
#if defined(__MINGW32__)
    __mingw_vsnprintf(llm__errmsg, sizeof llm__errmsg, fmt, ap);   /* msvcrt's lacks %zu */
#else
    vsnprintf(llm__errmsg, sizeof llm__errmsg, fmt, ap);
#endif
    va_end(ap);
    return s;
}

//==== MEMORY ===========================================================================
/* 64-byte aligned blocks (a cache line; what AVX-512 loads like). The offset to the
 * block malloc returned is stored in the byte before the aligned pointer. Built on
 * LLM_MALLOC, so a user's allocator serves it on every platform (hence no
 * _aligned_malloc or posix_memalign). */
static void *llm__alloc_aligned(size_t bytes) {
    if (bytes > SIZE_MAX - 64) return NULL;
    unsigned char *raw = LLM__CAST(unsigned char *, LLM_MALLOC(bytes + 64));
    if (!raw) return NULL;
    size_t off = 64 - ((uintptr_t)raw & 63);  /* 1..64 */
    raw[off - 1] = LLM__CAST(unsigned char, off);
    return raw + off;
}
static void llm__free_aligned(void *p) {
    if (!p) return;
    unsigned char *a = LLM__CAST(unsigned char *, p);
    LLM_FREE(a - a[-1]);
}
static void *llm__calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    void *p = LLM_MALLOC(bytes > 0 ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

/* ---- files ---------------------------------------------------------------------------
 * Paths are UTF-8 on every platform. POSIX takes the bytes as they are; Windows gets
 * them widened to UTF-16 for _wfopen and the W functions (a narrow fopen would read them
 * in the ANSI code page). Sizes are 64-bit: files are mapped, never measured with ftell
 * (a 32-bit long on Windows). */
#if defined(_WIN32)
/* path as UTF-16, malloc'd; NULL if out of memory or not convertible. A string that is
 * not valid UTF-8 is read in the ANSI code page, as a narrow argv[] gives it. */
static wchar_t *llm__widen(const char *s) {
    static const UINT cp[2] = { CP_UTF8, CP_ACP };
    for (int k = 0; k < 2; k++) {
        DWORD flags = k == 0 ? MB_ERR_INVALID_CHARS : 0;
        int n = MultiByteToWideChar(cp[k], flags, s, -1, NULL, 0);   /* with the NUL */
        if (n <= 0) continue;
        wchar_t *w = LLM__CAST(wchar_t *, LLM_MALLOC(LLM__CAST(size_t, n) * sizeof(wchar_t)));
        if (!w) return NULL;
        if (MultiByteToWideChar(cp[k], flags, s, -1, w, n) == n) return w;
        LLM_FREE(w);
    }
    return NULL;
}
#endif

static FILE *llm__fopen(const char *path, const char *mode) {
#if defined(_WIN32)
    wchar_t wmode[8], *wpath = llm__widen(path);
    size_t i = 0;
    for (; mode[i] && i + 1 < sizeof wmode / sizeof wmode[0]; i++) wmode[i] = LLM__CAST(wchar_t, mode[i]);
    wmode[i] = 0;
    FILE *f = wpath ? _wfopen(wpath, wmode) : NULL;
    LLM_FREE(wpath);
    return f;
#else
    return fopen(path, mode);
#endif
}
static int llm__remove(const char *path) {
#if defined(_WIN32)
    wchar_t *w = llm__widen(path);
    int r = w ? _wremove(w) : -1;
    LLM_FREE(w);
    return r;
#else
    return remove(path);
#endif
}
/* Rename from over to, replacing it (POSIX rename replaces atomically; Windows' rename
 * refuses an existing target, MoveFileEx replaces it). 0 on success. */
static int llm__rename(const char *from, const char *to) {
#if defined(_WIN32)
    wchar_t *wf = llm__widen(from), *wt = llm__widen(to);
    int ok = wf && wt && MoveFileExW(wf, wt, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH);
    LLM_FREE(wf); LLM_FREE(wt);
    return ok ? 0 : -1;
#else
    return rename(from, to);
#endif
}
static int llm__is_dir(const char *path) {
#if defined(_WIN32)
    wchar_t *w = llm__widen(path);
    DWORD a = w ? GetFileAttributesW(w) : INVALID_FILE_ATTRIBUTES;
    LLM_FREE(w);
    return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY);
#else
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
#endif
}

/* A read-only view of a whole file: memory-mapped where the platform can (weights and
 * token files are then paged in on demand and shared), else read into memory. */
typedef struct llm__map { const unsigned char *data; size_t len; void *heap; int borrowed; } llm__map;

static llm_status llm__map_open(llm__map *mp, const char *path) {
    memset(mp, 0, sizeof *mp);
#if defined(LLM__HAVE_MMAP)
    int fd = open(path, O_RDONLY);
    if (fd < 0) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return llm__err(LLM_ERR_IO, "%s: not a regular file", path); }
    if (LLM__CAST(unsigned long long, sb.st_size) > SIZE_MAX) { close(fd); return llm__err(LLM_ERR_IO, "%s: too large for this address space", path); }
    mp->len = LLM__CAST(size_t, sb.st_size);
    if (mp->len == 0) { close(fd); mp->data = LLM__CAST(const unsigned char *, ""); return LLM_OK; }
    void *p = mmap(NULL, mp->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return llm__err(LLM_ERR_IO, "%s: mmap failed", path);
    mp->data = LLM__CAST(const unsigned char *, p);
    return LLM_OK;
#elif defined(_WIN32)
    /* Sharing as POSIX does: others may read, write or delete meanwhile. */
    wchar_t *w = llm__widen(path);
    HANDLE fh = w ? CreateFileW(w, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                                OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL) : INVALID_HANDLE_VALUE;
    LLM_FREE(w);
    if (fh == INVALID_HANDLE_VALUE) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    LARGE_INTEGER size;
    if (GetFileType(fh) != FILE_TYPE_DISK || !GetFileSizeEx(fh, &size)) { CloseHandle(fh); return llm__err(LLM_ERR_IO, "%s: not a regular file", path); }
    if (LLM__CAST(unsigned long long, size.QuadPart) > SIZE_MAX) { CloseHandle(fh); return llm__err(LLM_ERR_IO, "%s: too large for this address space", path); }
    mp->len = LLM__CAST(size_t, size.QuadPart);
    if (mp->len == 0) { CloseHandle(fh); mp->data = LLM__CAST(const unsigned char *, ""); return LLM_OK; }   /* an empty file cannot be mapped */
    HANDLE mh = CreateFileMappingW(fh, NULL, PAGE_READONLY, 0, 0, NULL);
    void *p = mh ? MapViewOfFile(mh, FILE_MAP_READ, 0, 0, 0) : NULL;
    if (mh) CloseHandle(mh);   /* the view keeps the mapping (and the file) open */
    CloseHandle(fh);
    if (!p) return llm__err(LLM_ERR_IO, "%s: cannot map (error %lu)", path, LLM__CAST(unsigned long, GetLastError()));
    mp->data = LLM__CAST(const unsigned char *, p);
    return LLM_OK;
#else
    /* standard C only: read it (ftell's long bounds the size) */
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (!f) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return llm__err(LLM_ERR_IO, "%s: cannot size", path); }
    mp->len = LLM__CAST(size_t, n);
    mp->heap = LLM_MALLOC(mp->len ? mp->len : 1);
    if (!mp->heap) { fclose(f); return llm__err(LLM_ERR_NOMEM, "%s: no memory for %ld bytes", path, n); }
    if (fread(mp->heap, 1, mp->len, f) != mp->len) { fclose(f); LLM_FREE(mp->heap); mp->heap = NULL; return llm__err(LLM_ERR_IO, "%s: read failed", path); }
    fclose(f);
    mp->data = LLM__CAST(const unsigned char *, mp->heap);
    return LLM_OK;
#endif
}
/* A caller's buffer (borrowed: the *_memory loaders), which closing leaves alone. */
static void llm__map_memory(llm__map *mp, const void *data, size_t len) {
    memset(mp, 0, sizeof *mp);
    mp->data = len ? LLM__CAST(const unsigned char *, data) : LLM__CAST(const unsigned char *, "");
    mp->len = len;
    mp->borrowed = 1;
}
static void llm__map_close(llm__map *mp) {
    if (mp->borrowed) {}
    else if (mp->heap) LLM_FREE(mp->heap);
#if defined(LLM__HAVE_MMAP)
    else if (mp->data && mp->len) munmap(LLM__CAST(void *, LLM__CAST(uintptr_t, mp->data)), mp->len);
#elif defined(_WIN32)
    else if (mp->data && mp->len) UnmapViewOfFile(mp->data);
#endif
    memset(mp, 0, sizeof *mp);
}

/* Whole-file read into a malloc'd buffer (a NUL is appended for text parsers). */
static llm_status llm__read_file(const char *path, char **data, size_t *len) {
    llm__map mp;
    *data = NULL; *len = 0;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    char *buf = mp.len < SIZE_MAX ? LLM__CAST(char *, LLM_MALLOC(mp.len + 1)) : NULL;
    if (!buf) { llm__map_close(&mp); return llm__err(LLM_ERR_NOMEM, "%s: no memory for %zu bytes", path, mp.len); }
    if (mp.len) memcpy(buf, mp.data, mp.len);
    buf[mp.len] = 0;
    *data = buf; *len = mp.len;
    llm__map_close(&mp);
    return LLM_OK;
}

/* Writers go to "<path>.tmp" and rename over the target when complete, so an
 * interrupted save never destroys the previous file. Crash-safe on POSIX: the data is
 * fsync'ed before the rename and the directory after it, so after a power cut the path
 * holds the old file or the new one, whole. A caller may set head[0..nhead) (its magic
 * number): those bytes are written at offset 0 last, just before the fsync, so a torn
 * "<path>.tmp" left by a killed process never carries the magic that would make a
 * loader take it for a complete file. */
typedef struct { FILE *f; char tmp[1024]; const char *path; int failed; unsigned char head[8]; size_t nhead; } llm__wfile;
static llm_status llm__wopen(llm__wfile *w, const char *path) {
    memset(w, 0, sizeof *w);
    if (strlen(path) + 5 > sizeof w->tmp) return llm__err(LLM_ERR_ARG, "%s: path too long", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->path = path;
    w->f = llm__fopen(w->tmp, "wb");
    if (!w->f) return llm__err(LLM_ERR_IO, "%s: cannot create", w->tmp);
    return LLM_OK;
}
static void llm__wbytes(llm__wfile *w, const void *p, size_t n) {
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) w->failed = 1;
}
#ifdef LLM__HAVE_MMAP
/* fsync a file or directory by name (fsync acts on the file, whichever descriptor names it;
 * opening by name needs no fileno, which strict C99 headers hide); 0 on success. */
static int llm__fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}
/* fsync the directory holding path, so that a rename in it is durable; 0 on success. */
static int llm__fsync_dir(const char *path) {
    char dir[1024];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? LLM__CAST(size_t, slash - path) : 0;
    if (n >= sizeof dir) return -1;
    if (slash && n == 0) n = 1;   /* "/file": the root */
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = 0;
    return llm__fsync_path(dir);
}
#endif
static llm_status llm__wclose(llm__wfile *w) {
    int bad = w->failed;
    if (!bad && w->nhead && (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 || fwrite(w->head, 1, w->nhead, w->f) != w->nhead)) bad = 1;
    if (fflush(w->f) != 0) bad = 1;
    if (fclose(w->f) != 0) bad = 1;
#ifdef LLM__HAVE_MMAP
    if (!bad && llm__fsync_path(w->tmp) != 0) bad = 1;   /* on disk before it replaces the old file */
#endif
    if (bad) { llm__remove(w->tmp); return llm__err(LLM_ERR_IO, "%s: write failed (disk full?)", w->tmp); }
    if (llm__rename(w->tmp, w->path) != 0) {
        llm__remove(w->tmp);
        return llm__err(LLM_ERR_IO, "%s: cannot rename to %s", w->tmp, w->path);
    }
#ifdef LLM__HAVE_MMAP
    (void)llm__fsync_dir(w->path);   /* best effort: some file systems refuse fsync on a directory */
#endif
    return LLM_OK;
}

//==== POOL =============================================================================
/* A task is published by bumping `generation`; each worker runs its slice and the
 * last one to finish signals `done`. The caller runs slice 0 itself, so a 1-thread
 * pool creates no thread at all.
 * Between tasks a worker first spins for a few microseconds (an op follows the last
 * one within microseconds during a forward pass, and a futex wake-up costs ~15 us),
 * then sleeps on a condition variable, so idle or oversubscribed pools cost nothing.
 * The spinning reads are atomic: the builtins of gcc and clang, MSVC's interlocked
 * intrinsics; with neither, the pool only sleeps and counts under its mutex. */
#if defined(__GNUC__) || defined(__clang__)
#define LLM__ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LLM__ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define LLM__ATOMIC_DEC(p) __atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)
#define LLM__HAVE_ATOMICS 1
#elif defined(_MSC_VER)
/* full barriers, on the pool's unsigned longs (32 bits on Windows, as `long` is) */
#define LLM__ATOMIC_LOAD(p) LLM__CAST(unsigned long, InterlockedOr(LLM__CAST(volatile long *, p), 0))
#define LLM__ATOMIC_STORE(p, v) ((void)InterlockedExchange(LLM__CAST(volatile long *, p), LLM__CAST(long, v)))
#define LLM__ATOMIC_DEC(p) LLM__CAST(unsigned long, InterlockedDecrement(LLM__CAST(volatile long *, p)))
#define LLM__HAVE_ATOMICS 1
#endif
#if defined(LLM__HAVE_ATOMICS)
#ifdef LLM_POOL_SPIN
#define LLM__SPIN_ITERS LLM_POOL_SPIN
#else
#define LLM__SPIN_ITERS 2000
#endif
#else
#define LLM__HAVE_ATOMICS 0
#define LLM__ATOMIC_LOAD(p) (*(p))        /* then only ever used under the mutex */
#define LLM__ATOMIC_STORE(p, v) (*(p) = (v))
#define LLM__SPIN_ITERS 0
#endif
/* Yield rather than pause: on a busy machine the spinner hands its core to whoever
 * is runnable (often the very thread it waits for); on an idle one it returns at once. */
#if defined(_WIN32)
#define LLM__CPU_RELAX() ((void)SwitchToThread())
#else
#define LLM__CPU_RELAX() ((void)sched_yield())
#endif

/* ---- threads, mutexes, condition variables: pthreads, or Win32 on Windows ------------ */
#ifndef LLM_NO_THREADS
static void llm__worker(void *arg);
#if defined(_WIN32)
typedef HANDLE llm__thread;
typedef SRWLOCK llm__mutex;
typedef CONDITION_VARIABLE llm__cond;
static void llm__mutex_init(llm__mutex *m) { InitializeSRWLock(m); }
static void llm__mutex_destroy(llm__mutex *m) { (void)m; }   /* SRW locks hold no resources */
static void llm__mutex_lock(llm__mutex *m) { AcquireSRWLockExclusive(m); }
static void llm__mutex_unlock(llm__mutex *m) { ReleaseSRWLockExclusive(m); }
static void llm__cond_init(llm__cond *c) { InitializeConditionVariable(c); }
static void llm__cond_destroy(llm__cond *c) { (void)c; }
static void llm__cond_wait(llm__cond *c, llm__mutex *m) { SleepConditionVariableSRW(c, m, INFINITE, 0); }
static void llm__cond_signal(llm__cond *c) { WakeConditionVariable(c); }
static void llm__cond_broadcast(llm__cond *c) { WakeAllConditionVariable(c); }
/* _beginthreadex rather than CreateThread: the workers call the C runtime, and the
 * runtime's own thread start is what Microsoft documents for such threads. */
static unsigned __stdcall llm__thread_main(void *arg) { llm__worker(arg); return 0; }
static int llm__thread_start(llm__thread *t, void *arg) {
    *t = LLM__CAST(HANDLE, _beginthreadex(NULL, 0, llm__thread_main, arg, 0, NULL));
    return *t ? 0 : -1;
}
static void llm__thread_join(llm__thread t) { WaitForSingleObject(t, INFINITE); CloseHandle(t); }
#else
typedef pthread_t llm__thread;
typedef pthread_mutex_t llm__mutex;
typedef pthread_cond_t llm__cond;
static void llm__mutex_init(llm__mutex *m) { pthread_mutex_init(m, NULL); }
static void llm__mutex_destroy(llm__mutex *m) { pthread_mutex_destroy(m); }
static void llm__mutex_lock(llm__mutex *m) { pthread_mutex_lock(m); }
static void llm__mutex_unlock(llm__mutex *m) { pthread_mutex_unlock(m); }
static void llm__cond_init(llm__cond *c) { pthread_cond_init(c, NULL); }
static void llm__cond_destroy(llm__cond *c) { pthread_cond_destroy(c); }
static void llm__cond_wait(llm__cond *c, llm__mutex *m) { pthread_cond_wait(c, m); }
static void llm__cond_signal(llm__cond *c) { pthread_cond_signal(c); }
static void llm__cond_broadcast(llm__cond *c) { pthread_cond_broadcast(c); }
static void *llm__thread_main(void *arg) { llm__worker(arg); return NULL; }
static int llm__thread_start(llm__thread *t, void *arg) { return pthread_create(t, NULL, llm__thread_main, arg); }
static void llm__thread_join(llm__thread t) { pthread_join(t, NULL); }
#endif
#endif

/* ---- run-once initialisation: pthread_once, or InitOnceExecuteOnce on Windows ---------- */
#if defined(LLM_NO_THREADS)
typedef int llm__once;
#define LLM__ONCE_INIT 0
static LLM__UNUSED void llm__call_once(llm__once *o, void (*fn)(void)) { if (!*o) { *o = 1; fn(); } }
#elif defined(_WIN32)
typedef INIT_ONCE llm__once;
#define LLM__ONCE_INIT INIT_ONCE_STATIC_INIT
typedef struct llm__once_call { void (*fn)(void); } llm__once_call;  /* ISO C: no fn -> void * */
static BOOL CALLBACK llm__once_run(PINIT_ONCE o, PVOID arg, PVOID *ctx) {
    (void)o; (void)ctx;
    LLM__CAST(llm__once_call *, arg)->fn();
    return TRUE;
}
static LLM__UNUSED void llm__call_once(llm__once *o, void (*fn)(void)) {
    llm__once_call c;
    c.fn = fn;
    InitOnceExecuteOnce(o, llm__once_run, &c, NULL);
}
#else
typedef pthread_once_t llm__once;
#define LLM__ONCE_INIT PTHREAD_ONCE_INIT
static LLM__UNUSED void llm__call_once(llm__once *o, void (*fn)(void)) { pthread_once(o, fn); }
#endif

struct llm_pool {
    int n;
#ifndef LLM_NO_THREADS
    llm__thread *threads;
    llm__mutex mu;
    llm__cond wake, done;
    unsigned long generation;   /* bumped (under mu, atomically) to publish a task */
    unsigned long pending;      /* workers still running the task */
    int quit;                   /* shutdown flag */
    llm_pool_fn fn;
    void *arg;
#endif
};

/* Logical CPUs this process may use now. */
LLMDEF int llm_cpu_count(void) {
    long n = 0;
#if defined(_WIN32)
#if !defined(_WIN32_WINNT) || _WIN32_WINNT >= 0x0601
    /* every processor group (more than 64 CPUs): Windows 11 spreads a process's threads
     * over all of them; older Windows keep them in one group */
    n = LLM__CAST(long, GetActiveProcessorCount(ALL_PROCESSOR_GROUPS));
#endif
    if (n <= 0) { SYSTEM_INFO si; GetSystemInfo(&si); n = LLM__CAST(long, si.dwNumberOfProcessors); }
#elif defined(__APPLE__)
    int v = 0;
    size_t sz = sizeof v;
    if (sysctlbyname("hw.activecpu", &v, &sz, NULL, 0) == 0) n = v;
#elif defined(_SC_NPROCESSORS_ONLN)
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? LLM__CAST(int, n) : 1;
}

#ifndef LLM_NO_THREADS
typedef struct { llm_pool *pool; int ith; } llm__worker_arg;

/* One worker's share of a task is done; the last one wakes a caller asleep on `done`. */
static void llm__task_done(llm_pool *pool) {
#if LLM__HAVE_ATOMICS
    if (LLM__ATOMIC_DEC(&pool->pending) != 0) return;
    llm__mutex_lock(&pool->mu);
#else
    llm__mutex_lock(&pool->mu);
    if (--pool->pending != 0) { llm__mutex_unlock(&pool->mu); return; }
#endif
    llm__cond_signal(&pool->done);
    llm__mutex_unlock(&pool->mu);
}

static void llm__worker(void *p) {
    llm__worker_arg *wa = LLM__CAST(llm__worker_arg *, p);
    llm_pool *pool = wa->pool;
    int ith = wa->ith;
    unsigned long seen = 0;
    LLM_FREE(wa);
    for (;;) {
        /* spin briefly for the next task, then sleep */
        for (int i = 0; i < LLM__SPIN_ITERS && LLM__ATOMIC_LOAD(&pool->generation) == seen; i++) LLM__CPU_RELAX();
        llm__mutex_lock(&pool->mu);
        while (pool->generation == seen && !pool->quit) llm__cond_wait(&pool->wake, &pool->mu);
        if (pool->quit) { llm__mutex_unlock(&pool->mu); return; }
        seen = pool->generation;
        llm_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        llm__mutex_unlock(&pool->mu);
        fn(arg, ith, pool->n);
        llm__task_done(pool);
    }
}
#endif

LLMDEF llm_pool *llm_pool_create(int n_threads) {
    if (n_threads <= 0) n_threads = llm_cpu_count();
#ifdef LLM_NO_THREADS
    n_threads = 1;
#endif
    llm_pool *p = LLM__CAST(llm_pool *, llm__calloc(1, sizeof *p));
    if (!p) { llm__err(LLM_ERR_NOMEM, "thread pool: out of memory"); return NULL; }
    p->n = n_threads;
#ifndef LLM_NO_THREADS
    llm__mutex_init(&p->mu);
    llm__cond_init(&p->wake);
    llm__cond_init(&p->done);
    p->threads = LLM__CAST(llm__thread *, llm__calloc(LLM__CAST(size_t, n_threads), sizeof(llm__thread)));
    if (!p->threads) { llm_pool_free(p); llm__err(LLM_ERR_NOMEM, "thread pool: out of memory"); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        /* the worker owns (and frees) its argument block from its first instruction */
        llm__worker_arg *wa = LLM__CAST(llm__worker_arg *, LLM_MALLOC(sizeof *wa));
        if (wa) { wa->pool = p; wa->ith = i; }
        if (!wa || llm__thread_start(&p->threads[i], wa) != 0) {
            LLM_FREE(wa);
            p->n = i;  /* join the ones that started */
            llm_pool_free(p);
            llm__err(LLM_ERR_NOMEM, "thread pool: cannot start thread %d of %d", i, n_threads);
            return NULL;
        }
    }
#endif
    return p;
}

LLMDEF void llm_pool_free(llm_pool *p) {
    if (!p) return;
#ifndef LLM_NO_THREADS
    if (p->threads) {
        llm__mutex_lock(&p->mu);
        p->quit = 1;
        llm__cond_broadcast(&p->wake);
        llm__mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) llm__thread_join(p->threads[i]);
        LLM_FREE(p->threads);
    }
    llm__mutex_destroy(&p->mu);
    llm__cond_destroy(&p->wake);
    llm__cond_destroy(&p->done);
#endif
    LLM_FREE(p);
}

LLMDEF int llm_pool_size(const llm_pool *p) { return p ? p->n : 1; }

LLMDEF void llm_pool_run(llm_pool *p, llm_pool_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
#ifndef LLM_NO_THREADS
    llm__mutex_lock(&p->mu);
    p->fn = fn; p->arg = arg;
    LLM__ATOMIC_STORE(&p->pending, LLM__CAST(unsigned long, p->n - 1));
    LLM__ATOMIC_STORE(&p->generation, p->generation + 1);
    llm__cond_broadcast(&p->wake);
    llm__mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int i = 0; i < LLM__SPIN_ITERS && LLM__ATOMIC_LOAD(&p->pending) > 0; i++) LLM__CPU_RELAX();
    if (!LLM__HAVE_ATOMICS || LLM__ATOMIC_LOAD(&p->pending) > 0) {   /* still running: sleep */
        llm__mutex_lock(&p->mu);
        while (LLM__ATOMIC_LOAD(&p->pending) > 0) llm__cond_wait(&p->done, &p->mu);
        llm__mutex_unlock(&p->mu);
    }
#endif
}

/* The contiguous share [*lo, *hi) of n items for thread ith of nth. */
static void llm__split(size_t n, int ith, int nth, size_t *lo, size_t *hi) {
    size_t per = n / LLM__CAST(size_t, nth), rem = n % LLM__CAST(size_t, nth);
    size_t i = LLM__CAST(size_t, ith);
    *lo = i * per + (i < rem ? i : rem);
    *hi = *lo + per + (i < rem ? 1 : 0);
}

//==== JSON =============================================================================
/* A strict JSON reader (RFC 8259) into a flat array of nodes. Strings are decoded
 * (escapes, \uXXXX with surrogate pairs) into one arena; every limit is checked, so
 * a hostile safetensors header or vocabulary gives an error, never a crash.
 * Node 0 is the root. Children of an array/object are linked by `next`. */
enum { LLM__J_NULL, LLM__J_FALSE, LLM__J_TRUE, LLM__J_NUM, LLM__J_STR, LLM__J_ARR, LLM__J_OBJ };
typedef struct llm__jnode {
    int type;
    int child, next;       /* first child / next sibling, -1 if none */
    int count;             /* number of children */
    size_t key, key_len;   /* member name (in the arena) when the parent is an object */
    size_t str, str_len;   /* decoded string value (in the arena) */
    double num;
} llm__jnode;
typedef struct llm__json {
    llm__jnode *nodes; int n, cap;
    char *arena; size_t alen, acap;
} llm__json;

typedef struct { const char *p, *end; llm__json *doc; int depth; } llm__jparser;
#define LLM__JSON_MAX_DEPTH 64

static void llm__json_free(llm__json *d) {
    LLM_FREE(d->nodes); LLM_FREE(d->arena);
    memset(d, 0, sizeof *d);
}
static const char *llm__jstr(const llm__json *d, size_t off) { return d->arena + off; }

static int llm__jnew(llm__json *d, int type) {
    if (d->n == d->cap) {
        if (d->cap > INT_MAX / 2 - 1) return -1;
        int cap = d->cap ? d->cap * 2 : 256;
        llm__jnode *nn = LLM__CAST(llm__jnode *, LLM_REALLOC(d->nodes, LLM__CAST(size_t, cap) * sizeof *nn));
        if (!nn) return -1;
        d->nodes = nn; d->cap = cap;
    }
    llm__jnode *x = &d->nodes[d->n];
    memset(x, 0, sizeof *x);
    x->type = type; x->child = x->next = -1;
    return d->n++;
}
static int llm__jput(llm__json *d, const char *s, size_t n) {
    if (d->alen + n + 1 > d->acap) {
        size_t cap = d->acap ? d->acap : 4096;
        while (cap < d->alen + n + 1) cap *= 2;
        char *a = LLM__CAST(char *, LLM_REALLOC(d->arena, cap));
        if (!a) return 0;
        d->arena = a; d->acap = cap;
    }
    memcpy(d->arena + d->alen, s, n);
    d->alen += n;
    return 1;
}
static void llm__jws(llm__jparser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}
static int llm__jhex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= LLM__CAST(unsigned, c - '0');
        else if (c >= 'a' && c <= 'f') v |= LLM__CAST(unsigned, c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= LLM__CAST(unsigned, c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}
/* Encode code point cp as UTF-8 into out; returns the length (1..4). */
static int llm__utf8_put(unsigned cp, char *out) {
    if (cp < 0x80) { out[0] = LLM__CAST(char, cp); return 1; }
    if (cp < 0x800) { out[0] = LLM__CAST(char, 0xC0 | (cp >> 6)); out[1] = LLM__CAST(char, 0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        out[0] = LLM__CAST(char, 0xE0 | (cp >> 12)); out[1] = LLM__CAST(char, 0x80 | ((cp >> 6) & 63));
        out[2] = LLM__CAST(char, 0x80 | (cp & 63)); return 3;
    }
    out[0] = LLM__CAST(char, 0xF0 | (cp >> 18)); out[1] = LLM__CAST(char, 0x80 | ((cp >> 12) & 63));
    out[2] = LLM__CAST(char, 0x80 | ((cp >> 6) & 63)); out[3] = LLM__CAST(char, 0x80 | (cp & 63));
    return 4;
}

static llm_status llm__jerr(llm__jparser *ps, const char *start, const char *what) {
    return llm__err(LLM_ERR_FORMAT, "JSON: %s at byte %ld", what, LLM__CAST(long, ps->p - start));
}

/* Parse a string starting at '"' into the arena at (*off, *len). */
static llm_status llm__jstring(llm__jparser *ps, const char *start, size_t *off, size_t *len) {
    llm__json *d = ps->doc;
    ps->p++;  /* opening quote */
    *off = d->alen;
    for (;;) {
        const char *run = ps->p;
        while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' && LLM__CAST(unsigned char, *ps->p) >= 0x20) ps->p++;
        if (!llm__jput(d, run, LLM__CAST(size_t, ps->p - run))) return llm__err(LLM_ERR_NOMEM, "JSON: out of memory");
        if (ps->p >= ps->end) return llm__jerr(ps, start, "unterminated string");
        char c = *ps->p;
        if (c == '"') { ps->p++; break; }
        if (c != '\\') return llm__jerr(ps, start, "control character in string");
        if (ps->end - ps->p < 2) return llm__jerr(ps, start, "unterminated escape");
        char e = ps->p[1], ch;
        ps->p += 2;
        switch (e) {
        case '"': ch = '"'; break;   case '\\': ch = '\\'; break; case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;  case 'f': ch = '\f'; break;  case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;  case 't': ch = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 4 || !llm__jhex4(ps->p, &cp)) return llm__jerr(ps, start, "bad \\u escape");
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {   /* high surrogate: a low one must follow */
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || !llm__jhex4(ps->p + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return llm__jerr(ps, start, "unpaired surrogate in \\u escape");
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return llm__jerr(ps, start, "unpaired surrogate in \\u escape");
            }
            char u[4];
            int n = llm__utf8_put(cp, u);
            if (!llm__jput(d, u, LLM__CAST(size_t, n))) return llm__err(LLM_ERR_NOMEM, "JSON: out of memory");
            continue;
        }
        default: return llm__jerr(ps, start, "bad escape");
        }
        if (!llm__jput(d, &ch, 1)) return llm__err(LLM_ERR_NOMEM, "JSON: out of memory");
    }
    *len = d->alen - *off;
    if (!llm__jput(d, "", 1)) return llm__err(LLM_ERR_NOMEM, "JSON: out of memory");  /* NUL */
    return LLM_OK;
}

static llm_status llm__jnumber(llm__jparser *ps, const char *start, double *out) {
    const char *p = ps->p, *b = p;
    if (p < ps->end && *p == '-') p++;
    if (p >= ps->end) return llm__jerr(ps, start, "bad number");
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < ps->end && *p >= '0' && *p <= '9') p++;
    else return llm__jerr(ps, start, "bad number");
    if (p < ps->end && *p == '.') {
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') return llm__jerr(ps, start, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || *p < '0' || *p > '9') return llm__jerr(ps, start, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    char buf[64];
    size_t n = LLM__CAST(size_t, p - b);
    if (n >= sizeof buf) return llm__jerr(ps, start, "number too long");
    memcpy(buf, b, n); buf[n] = 0;
    *out = strtod(buf, NULL);
    ps->p = p;
    return LLM_OK;
}

static llm_status llm__jvalue(llm__jparser *ps, const char *start, int *out);

/* Arrays and objects: children are appended as they are parsed and linked in order. */
static llm_status llm__jcompound(llm__jparser *ps, const char *start, int self, int is_obj) {
    llm__json *d = ps->doc;
    char close = is_obj ? '}' : ']';
    int last = -1;
    ps->p++;
    llm__jws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return LLM_OK; }
    for (;;) {
        size_t key = 0, key_len = 0;
        llm_status s;
        llm__jws(ps);
        if (is_obj) {
            if (ps->p >= ps->end || *ps->p != '"') return llm__jerr(ps, start, "expected member name");
            if ((s = llm__jstring(ps, start, &key, &key_len)) != LLM_OK) return s;
            llm__jws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return llm__jerr(ps, start, "expected ':'");
            ps->p++;
        }
        int child;
        if ((s = llm__jvalue(ps, start, &child)) != LLM_OK) return s;
        d->nodes[child].key = key; d->nodes[child].key_len = key_len;
        if (last < 0) d->nodes[self].child = child; else d->nodes[last].next = child;
        last = child;
        d->nodes[self].count++;
        llm__jws(ps);
        if (ps->p >= ps->end) return llm__jerr(ps, start, "unterminated array or object");
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; return LLM_OK; }
        return llm__jerr(ps, start, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static llm_status llm__jvalue(llm__jparser *ps, const char *start, int *out) {
    llm__json *d = ps->doc;
    llm__jws(ps);
    if (ps->p >= ps->end) return llm__jerr(ps, start, "unexpected end of input");
    char c = *ps->p;
    int type = c == '{' ? LLM__J_OBJ : c == '[' ? LLM__J_ARR : c == '"' ? LLM__J_STR :
               c == 't' ? LLM__J_TRUE : c == 'f' ? LLM__J_FALSE : c == 'n' ? LLM__J_NULL : LLM__J_NUM;
    int self = llm__jnew(d, type);
    if (self < 0) return llm__err(LLM_ERR_NOMEM, "JSON: out of memory");
    *out = self;
    llm_status s = LLM_OK;
    if (type == LLM__J_OBJ || type == LLM__J_ARR) {
        if (++ps->depth > LLM__JSON_MAX_DEPTH) return llm__jerr(ps, start, "nested too deeply");
        s = llm__jcompound(ps, start, self, type == LLM__J_OBJ);
        ps->depth--;
    } else if (type == LLM__J_STR) {
        size_t off, len;
        s = llm__jstring(ps, start, &off, &len);
        d->nodes[self].str = off; d->nodes[self].str_len = len;
    } else if (type == LLM__J_NUM) {
        double v = 0;
        s = llm__jnumber(ps, start, &v);
        d->nodes[self].num = v;
    } else {
        const char *word = type == LLM__J_TRUE ? "true" : type == LLM__J_FALSE ? "false" : "null";
        size_t n = strlen(word);
        if (LLM__CAST(size_t, ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
            return llm__jerr(ps, start, "unexpected character");
        ps->p += n;
    }
    return s;
}

/* Parse text[0..len) into doc (which must be zeroed). The whole input must be one
 * value. On failure the doc is freed and llm_last_error() says where. */
static llm_status llm__json_parse(llm__json *doc, const char *text, size_t len) {
    llm__jparser ps;
    int root;
    memset(doc, 0, sizeof *doc);
    ps.p = text; ps.end = text + len; ps.doc = doc; ps.depth = 0;
    llm_status s = llm__jvalue(&ps, text, &root);
    if (s == LLM_OK) {
        llm__jws(&ps);
        if (ps.p != ps.end) s = llm__jerr(&ps, text, "trailing characters after the value");
    }
    if (s != LLM_OK) llm__json_free(doc);
    return s;
}

/* The member of object node `obj` named key, or -1. */
static int llm__json_get(const llm__json *d, int obj, const char *key) {
    if (obj < 0 || d->nodes[obj].type != LLM__J_OBJ) return -1;
    size_t n = strlen(key);
    for (int c = d->nodes[obj].child; c >= 0; c = d->nodes[c].next)
        if (d->nodes[c].key_len == n && memcmp(d->arena + d->nodes[c].key, key, n) == 0) return c;
    return -1;
}
/* An integer-valued number node as int64 (fails on non-integers and |x| >= 2^53). */
static int llm__json_int(const llm__json *d, int node, int64_t *out) {
    if (node < 0 || d->nodes[node].type != LLM__J_NUM) return 0;
    double v = d->nodes[node].num;
    if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0) || v != floor(v)) return 0;
    *out = LLM__CAST(int64_t, v);
    return 1;
}

//==== TOKENIZER ========================================================================
/* GPT-2 byte-level BPE, in three steps:
 *   1. pre-tokenize: cut the text into pieces with GPT-2's pattern (hand-written below;
 *      no regex engine), Unicode classes from the generated table at the end of this
 *      section (or, with LLM_PRETOK_LINES, after each newline);
 *   2. BPE each piece: start from one symbol per byte and repeatedly merge the adjacent
 *      pair with the lowest merge rank (vocab.bpe line number) until none is left;
 *   3. the final symbols are the ids.
 * Token strings in encoder.json/vocab.json are written in GPT-2's byte-to-unicode
 * alphabet (so they are printable); we decode them to raw bytes once at load time and
 * work on bytes and ids from then on. */

/* ---- byte-to-unicode alphabet ----------------------------------------------------- */
/* GPT-2 maps each byte b to a printable code point: the "nice" bytes 33..126, 161..172
 * and 174..255 map to themselves, the other 68 bytes (controls, space, 127..160, 173)
 * in increasing order to 256, 257, ... (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ'). */
static int llm__byte_is_nice(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}
/* The byte that code point cp stands for, or -1. */
static int llm__unicode_to_byte(unsigned cp) {
    if (cp < 256) return llm__byte_is_nice(LLM__CAST(int, cp)) ? LLM__CAST(int, cp) : -1;
    if (cp >= 256 + 68) return -1;
    int k = LLM__CAST(int, cp) - 256;      /* the k-th byte that is not nice */
    for (int b = 0; b < 256; b++)
        if (!llm__byte_is_nice(b) && k-- == 0) return b;
    return -1;
}

/* ---- UTF-8 and character classes ---------------------------------------------------- */
enum { LLM__U_OTHER = 0, LLM__U_LETTER = 1, LLM__U_NUMBER = 2, LLM__U_SPACE = 3 };

/* Classes of the ASCII characters: \s is 9..13 and 32 (Unicode White_Space). */
static const unsigned char llm__ascii_class[128] = {
    0,0,0,0,0,0,0,0,0,3,3,3,3,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,2,2,2,2,2,2,2,2,0,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
};

static int llm__uclass_lookup(uint32_t cp);  /* after the generated table, at the end */

/* Strict UTF-8 decode of s[i..n): returns the byte length (1..4) and the code point.
 * Overlong forms, surrogates, values above U+10FFFF and truncated sequences are
 * invalid: then the result is length 1 and *cp = 0xFFFFFFFF, i.e. the single byte is a
 * character of class "other". Re-synchronising after one byte means an ASCII byte is
 * never swallowed by a broken sequence. */
static int llm__utf8_get(const unsigned char *s, size_t i, size_t n, uint32_t *cp) {
    unsigned c = s[i];
    size_t left = n - i;
    *cp = 0xFFFFFFFFu;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (left >= 2 && (s[i + 1] & 0xC0) == 0x80) { *cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); return 2; }
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3) return 1;
        unsigned c1 = s[i + 1], c2 = s[i + 2];
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;  /* no overlong, no surrogate */
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80) return 1;
        *cp = ((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (c2 & 0x3Fu);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4) return 1;
        unsigned c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;  /* <= U+10FFFF */
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80 || (c3 & 0xC0) != 0x80) return 1;
        *cp = ((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((c2 & 0x3Fu) << 6) | (c3 & 0x3Fu);
        return 4;
    }
    return 1;  /* continuation byte or C0, C1, F5..FF: never a valid start */
}

/* Class of the character at s[i] (an invalid byte is OTHER); *clen gets its length. */
static int llm__class_at(const unsigned char *s, size_t i, size_t n, int *clen) {
    if (s[i] < 0x80) { *clen = 1; return llm__ascii_class[s[i]]; }
    uint32_t cp;
    *clen = llm__utf8_get(s, i, n, &cp);
    return cp == 0xFFFFFFFFu ? LLM__U_OTHER : llm__uclass_lookup(cp);
}

/* ---- pre-tokenizer ------------------------------------------------------------------- */
/* The end of the piece that starts at s[i] (i < n). The alternatives of
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * are tried in order, as a backtracking regex engine does (leftmost-first):
 *   - contractions: ASCII, case-sensitive, only where a piece starts;
 *   - an optional ' ' (U+0020 only) then a maximal run of letters, numbers, or "other"
 *     (neither space, letter nor number; an invalid UTF-8 byte counts as other);
 *   - whitespace: \s+(?!\S) takes the whole run at the end of the text, otherwise the
 *     run minus its last character (which then prefixes the next word, or stands
 *     alone via \s+ if it is not ' ' or if the run was one character long). */
static size_t llm__pretok_next(const unsigned char *s, size_t i, size_t n) {
    int clen, cls;
    unsigned c0 = s[i];
    if (c0 == '\'' && i + 1 < n) {
        unsigned c1 = s[i + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned c2 = s[i + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
        }
    }
    size_t j = i;
    cls = llm__class_at(s, i, n, &clen);
    if (c0 == ' ' && i + 1 < n) {               /* " ?X+": the space joins a following run */
        int len2, c2 = llm__class_at(s, i + 1, n, &len2);
        if (c2 != LLM__U_SPACE) { cls = c2; j = i + 1; clen = len2; }
    }
    if (cls != LLM__U_SPACE) {                  /* maximal run of one class */
        j += LLM__CAST(size_t, clen);
        while (j < n) {
            if (s[j] < 0x80) {                  /* ASCII fast path */
                if (llm__ascii_class[s[j]] != cls) break;
                j++;
            } else {
                if (llm__class_at(s, j, n, &clen) != cls) break;
                j += LLM__CAST(size_t, clen);
            }
        }
        return j;
    }
    size_t last = i;                            /* start of the run's last character */
    j = i + LLM__CAST(size_t, clen);
    while (j < n && llm__class_at(s, j, n, &clen) == LLM__U_SPACE) { last = j; j += LLM__CAST(size_t, clen); }
    if (j == n || last == i) return j;          /* \s+(?!\S) at the end, or \s+ of one char */
    return last;                                /* \s+(?!\S): leave the last one */
}

/* The end of the word that starts at s[i] (i < n) under pre-tokenizer pretok
 * (LLM_PRETOK_*): GPT-2's pattern, or the line with its '\n'. */
static size_t llm__word_end(int pretok, const unsigned char *s, size_t i, size_t n) {
    if (pretok == LLM_PRETOK_LINES) {
        const unsigned char *nl = LLM__CAST(const unsigned char *, memchr(s + i, '\n', n - i));
        return nl ? LLM__CAST(size_t, nl - s) + 1 : n;
    }
    return llm__pretok_next(s, i, n);
}

/* ---- the tokenizer object --------------------------------------------------------------- */
#define LLM__TOK_MAX_ID (1 << 24)
#define LLM__TOK_MAX_SPECIAL 64

struct llm_tokenizer {
    int V;                   /* one more than the largest id */
    uint32_t *tok_off;       /* (V) offset of token id's bytes in `bytes` */
    int32_t *tok_len;        /* (V) its length, -1 for an unused id */
    char *bytes;             /* all token bytes, back to back */
    size_t max_len;          /* longest token, in bytes */
    int32_t *vhash;          /* (vmask+1) bytes -> id table, open addressing, -1 empty */
    uint32_t vmask;
    /* merges: pair (a,b) -> rank (line number); the result of rank r is merge_res[r] */
    uint64_t *mkey;          /* (mmask+1) a<<32|b, UINT64_MAX empty */
    int32_t *mrank;          /* (mmask+1) */
    uint32_t mmask;
    int32_t *merge_res;      /* (n_merges) */
    int32_t *merge_pair;     /* (2*n_merges) the parts (a, b) of merge r */
    int n_merges;
    int byte_id[256];        /* id of each single-byte token */
    int monotone;            /* every merge ranks after the merges that make its parts */
    int eot;                 /* <|endoftext|> or -1 */
    int n_special;
    int special[LLM__TOK_MAX_SPECIAL];
    int special_has_space;   /* a special token contains ' ': no parallel cuts */
    int special_has_newline; /* ... '\n' (the cut byte of LLM_PRETOK_LINES) */
    int pretok;              /* LLM_PRETOK_GPT2 or LLM_PRETOK_LINES */
};

static uint64_t llm__hash_bytes(const unsigned char *p, size_t n) {
    /* FNV-1a over 8-byte words, then a final mix: fast for short keys, good spread */
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w; memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull; h ^= h >> 29;
        p += 8; n -= 8;
    }
    uint64_t w = 0;
    if (n) memcpy(&w, p, n);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}
static uint32_t llm__hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return LLM__CAST(uint32_t, key >> 32);
}

LLMDEF int llm_tokenizer_find(const llm_tokenizer *t, const char *s, size_t len) {
    if (!t || (!s && len)) return -1;
    uint32_t h = LLM__CAST(uint32_t, llm__hash_bytes(LLM__CAST(const unsigned char *, s), len));
    for (uint32_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        int id = t->vhash[i];
        if (id < 0) return -1;
        if (LLM__CAST(size_t, t->tok_len[id]) == len && memcmp(t->bytes + t->tok_off[id], s, len) == 0) return id;
    }
}

/* Rank of merging ids (a, b), or -1 when no merge applies. */
static int llm__merge_rank(const llm_tokenizer *t, int a, int b) {
    uint64_t key = (LLM__CAST(uint64_t, LLM__CAST(uint32_t, a)) << 32) | LLM__CAST(uint32_t, b);
    for (uint32_t i = llm__hash_pair(key) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == key) return t->mrank[i];
        if (t->mkey[i] == UINT64_MAX) return -1;
    }
}

LLMDEF void llm_tokenizer_free(llm_tokenizer *t) {
    if (!t) return;
    LLM_FREE(t->tok_off); LLM_FREE(t->tok_len); LLM_FREE(t->bytes); LLM_FREE(t->vhash);
    LLM_FREE(t->mkey); LLM_FREE(t->mrank); LLM_FREE(t->merge_res); LLM_FREE(t->merge_pair);
    LLM_FREE(t);
}
LLMDEF int llm_tokenizer_vocab_size(const llm_tokenizer *t) { return t ? t->V : 0; }
LLMDEF int llm_tokenizer_eot(const llm_tokenizer *t) { return t ? t->eot : -1; }
LLMDEF size_t llm_tokenizer_max_token_len(const llm_tokenizer *t) { return t ? t->max_len : 0; }
LLMDEF int llm_tokenizer_pretokenize(const llm_tokenizer *t) { return t ? t->pretok : LLM_PRETOK_GPT2; }
LLMDEF int llm_tokenizer_n_merges(const llm_tokenizer *t) { return t ? t->n_merges : 0; }
LLMDEF int llm_tokenizer_merge(const llm_tokenizer *t, int r, int *left, int *right) {
    if (left) *left = -1;
    if (right) *right = -1;
    if (!t || r < 0 || r >= t->n_merges) return -1;
    if (left) *left = t->merge_pair[2 * r];
    if (right) *right = t->merge_pair[2 * r + 1];
    return t->merge_res[r];
}
LLMDEF const char *llm_tokenizer_token(const llm_tokenizer *t, int id, size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V || t->tok_len[id] < 0) return NULL;
    if (len) *len = LLM__CAST(size_t, t->tok_len[id]);
    return t->bytes + t->tok_off[id];
}

/* ---- loading ------------------------------------------------------------------------ */
/* Loading collects (token bytes, id) entries and merge lines from whichever format,
 * then builds the tables in one place (llm__tok_build), which checks everything. */
typedef struct {
    char *bytes; size_t blen, bcap;        /* token bytes, back to back */
    uint32_t *off, *len; int32_t *id;      /* (n) entries */
    unsigned char *special;                /* (n) marked special (tokenizer.json) */
    size_t n, cap;
    const char *what;                      /* file name for messages */
} llm__vbuild;

static void llm__vbuild_free(llm__vbuild *b) {
    LLM_FREE(b->bytes); LLM_FREE(b->off); LLM_FREE(b->len); LLM_FREE(b->id); LLM_FREE(b->special);
}

/* Append raw bytes to the builder's arena. */
static int llm__vb_put(llm__vbuild *b, const char *s, size_t n) {
    if (b->blen + n > b->bcap) {
        size_t cap = b->bcap ? b->bcap : 1 << 16;
        while (cap < b->blen + n) cap *= 2;
        char *p = LLM__CAST(char *, LLM_REALLOC(b->bytes, cap));
        if (!p) return 0;
        b->bytes = p; b->bcap = cap;
    }
    memcpy(b->bytes + b->blen, s, n);
    b->blen += n;
    return 1;
}

/* Decode a byte-alphabet string (UTF-8) to raw bytes into out (n bytes at most: each
 * alphabet character is at least one UTF-8 byte). Returns the length, or -1 if a
 * character is not in the alphabet. */
static long llm__unalpha(const char *s, size_t n, const signed short *u2b, char *out) {
    const unsigned char *p = LLM__CAST(const unsigned char *, s);
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        int l = llm__utf8_get(p, i, n, &cp);
        if (cp >= 324 || u2b[cp] < 0) return -1;
        out[o++] = LLM__CAST(char, u2b[cp]);
        i += LLM__CAST(size_t, l);
    }
    return LLM__CAST(long, o);
}

static void llm__u2b_init(signed short u2b[324]) {
    for (unsigned cp = 0; cp < 324; cp++) u2b[cp] = LLM__CAST(signed short, llm__unicode_to_byte(cp));
}

static llm_status llm__vb_add(llm__vbuild *b, const char *raw, size_t n, int64_t id, int special) {
    if (id < 0 || id >= LLM__TOK_MAX_ID)
        return llm__err(LLM_ERR_FORMAT, "%s: token id %lld out of range [0, %d)", b->what, LLM__CAST(long long, id), LLM__TOK_MAX_ID);
    if (n == 0) return llm__err(LLM_ERR_FORMAT, "%s: empty token (id %lld)", b->what, LLM__CAST(long long, id));
    if (n > 0xFFFFFF || b->blen > 0xFFFFFFFFu - n) return llm__err(LLM_ERR_FORMAT, "%s: vocabulary too large", b->what);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        uint32_t *o = LLM__CAST(uint32_t *, LLM_REALLOC(b->off, cap * sizeof *o));
        if (o) b->off = o;
        uint32_t *l = LLM__CAST(uint32_t *, LLM_REALLOC(b->len, cap * sizeof *l));
        if (l) b->len = l;
        int32_t *d = LLM__CAST(int32_t *, LLM_REALLOC(b->id, cap * sizeof *d));
        if (d) b->id = d;
        unsigned char *sp = LLM__CAST(unsigned char *, LLM_REALLOC(b->special, cap));
        if (sp) b->special = sp;
        if (!o || !l || !d || !sp) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", b->what);
        b->cap = cap;
    }
    b->off[b->n] = LLM__CAST(uint32_t, b->blen);
    b->len[b->n] = LLM__CAST(uint32_t, n);
    b->id[b->n] = LLM__CAST(int32_t, id);
    b->special[b->n] = LLM__CAST(unsigned char, special);
    if (!llm__vb_put(b, raw, n)) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", b->what);
    b->n++;
    return LLM_OK;
}

/* Entries of a JSON object {"token": id, ...} (encoder.json, vocab.json, model.vocab). */
static llm_status llm__vb_from_json(llm__vbuild *b, const llm__json *d, int obj, const signed short *u2b) {
    if (obj < 0 || d->nodes[obj].type != LLM__J_OBJ)
        return llm__err(LLM_ERR_FORMAT, "%s: the vocabulary is not a JSON object", b->what);
    char tmp[1024];
    for (int c = d->nodes[obj].child; c >= 0; c = d->nodes[c].next) {
        const llm__jnode *x = &d->nodes[c];
        int64_t id;
        if (!llm__json_int(d, c, &id))
            return llm__err(LLM_ERR_FORMAT, "%s: token \"%.40s\": id is not an integer", b->what, llm__jstr(d, x->key));
        if (x->key_len > sizeof tmp)
            return llm__err(LLM_ERR_FORMAT, "%s: token of %lu bytes is too long", b->what, LLM__CAST(unsigned long, x->key_len));
        long n = llm__unalpha(llm__jstr(d, x->key), x->key_len, u2b, tmp);
        if (n < 0)
            return llm__err(LLM_ERR_FORMAT, "%s: token \"%.40s\" (id %lld) has a character outside GPT-2's byte alphabet",
                            b->what, llm__jstr(d, x->key), LLM__CAST(long long, id));
        llm_status s = llm__vb_add(b, tmp, LLM__CAST(size_t, n), id, 0);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* Merge lines are collected as pairs of (byte-alphabet) strings in a flat list; the
 * pointers stay valid while the source text / JSON document lives. */
typedef struct { const char *a, *b; uint32_t alen, blen; } llm__mline;
typedef struct { llm__mline *m; size_t n, cap; } llm__mlist;

static llm_status llm__ml_add(llm__mlist *ml, const char *a, size_t alen, const char *b, size_t blen, const char *what) {
    if (alen > 0xFFFFFF || blen > 0xFFFFFF) return llm__err(LLM_ERR_FORMAT, "%s: merge too long", what);
    if (ml->n == ml->cap) {
        size_t cap = ml->cap ? ml->cap * 2 : 1024;
        llm__mline *m = LLM__CAST(llm__mline *, LLM_REALLOC(ml->m, cap * sizeof *m));
        if (!m) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", what);
        ml->m = m; ml->cap = cap;
    }
    llm__mline *x = &ml->m[ml->n++];
    x->a = a; x->alen = LLM__CAST(uint32_t, alen); x->b = b; x->blen = LLM__CAST(uint32_t, blen);
    return LLM_OK;
}

/* vocab.bpe / merges.txt: an optional "#version" first line, then "a b" per line. */
static llm_status llm__ml_from_text(llm__mlist *ml, const char *text, size_t len, const char *what) {
    size_t i = 0, line = 0;
    while (i < len) {
        const char *p = text + i;
        const char *nl = LLM__CAST(const char *, memchr(p, '\n', len - i));
        size_t n = nl ? LLM__CAST(size_t, nl - p) : len - i;
        i += n + (nl ? 1 : 0);
        line++;
        if (n && p[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (line == 1 && n >= 8 && memcmp(p, "#version", 8) == 0) continue;
        const char *sp = LLM__CAST(const char *, memchr(p, ' ', n));
        if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', LLM__CAST(size_t, p + n - sp - 1)))
            return llm__err(LLM_ERR_FORMAT, "%s: line %lu: expected two tokens separated by one space",
                            what, LLM__CAST(unsigned long, line));
        llm_status s = llm__ml_add(ml, p, LLM__CAST(size_t, sp - p), sp + 1, LLM__CAST(size_t, p + n - sp - 1), what);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* model.merges of tokenizer.json: ["a b", ...] or [["a", "b"], ...]. */
static llm_status llm__ml_from_json(llm__mlist *ml, const llm__json *d, int arr, const char *what) {
    if (arr < 0 || d->nodes[arr].type != LLM__J_ARR)
        return llm__err(LLM_ERR_FORMAT, "%s: model.merges is missing or not an array", what);
    size_t k = 0;
    for (int c = d->nodes[arr].child; c >= 0; c = d->nodes[c].next, k++) {
        const llm__jnode *x = &d->nodes[c];
        llm_status s;
        if (x->type == LLM__J_STR) {
            const char *p = llm__jstr(d, x->str);
            const char *sp = LLM__CAST(const char *, memchr(p, ' ', x->str_len));
            size_t n = x->str_len;
            if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', LLM__CAST(size_t, p + n - sp - 1)))
                return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: expected \"a b\"", what, LLM__CAST(unsigned long, k));
            s = llm__ml_add(ml, p, LLM__CAST(size_t, sp - p), sp + 1, LLM__CAST(size_t, p + n - sp - 1), what);
        } else if (x->type == LLM__J_ARR && x->count == 2 && d->nodes[x->child].type == LLM__J_STR &&
                   d->nodes[d->nodes[x->child].next].type == LLM__J_STR) {
            const llm__jnode *a = &d->nodes[x->child], *b = &d->nodes[a->next];
            if (a->str_len == 0 || b->str_len == 0)
                return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: empty token", what, LLM__CAST(unsigned long, k));
            s = llm__ml_add(ml, llm__jstr(d, a->str), a->str_len, llm__jstr(d, b->str), b->str_len, what);
        } else {
            return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: expected \"a b\" or [\"a\", \"b\"]", what, LLM__CAST(unsigned long, k));
        }
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

static uint32_t llm__pow2_at_least(size_t n) {
    uint32_t p = 16;
    while (p < n && p < (1u << 30)) p <<= 1;
    return p;
}

/* Build the tokenizer from the collected entries and merges; checks ids unique, token
 * strings unique, every byte present, every merge's parts and result in the vocabulary.
 * The merges' strings are in the byte alphabet, or raw bytes when u2b is NULL (training). */
static llm_status llm__tok_build(llm_tokenizer **out, llm__vbuild *vb, const llm__mlist *ml, const signed short *u2b) {
    const char *what = vb->what;
    llm_tokenizer *t = LLM__CAST(llm_tokenizer *, llm__calloc(1, sizeof *t));
    if (!t) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", what);
    t->eot = -1;
    llm_status s = LLM_OK;
    int32_t maxid = -1;
    for (size_t i = 0; i < vb->n; i++) if (vb->id[i] > maxid) maxid = vb->id[i];
    if (maxid < 0) { s = llm__err(LLM_ERR_FORMAT, "%s: empty vocabulary", what); goto fail; }
    t->V = maxid + 1;
    t->tok_off = LLM__CAST(uint32_t *, llm__calloc(LLM__CAST(size_t, t->V), sizeof *t->tok_off));
    t->tok_len = LLM__CAST(int32_t *, LLM_MALLOC(LLM__CAST(size_t, t->V) * sizeof *t->tok_len));
    t->vmask = llm__pow2_at_least(vb->n * 2) - 1;
    t->vhash = LLM__CAST(int32_t *, LLM_MALLOC((LLM__CAST(size_t, t->vmask) + 1) * sizeof *t->vhash));
    if (!t->tok_off || !t->tok_len || !t->vhash) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", what); goto fail; }
    memset(t->tok_len, 0xFF, LLM__CAST(size_t, t->V) * sizeof *t->tok_len);      /* all -1 */
    memset(t->vhash, 0xFF, (LLM__CAST(size_t, t->vmask) + 1) * sizeof *t->vhash);
    t->bytes = vb->bytes; vb->bytes = NULL;  /* take over the arena */
    for (size_t i = 0; i < vb->n; i++) {
        int32_t id = vb->id[i];
        if (t->tok_len[id] >= 0) {  /* an added token repeating a vocabulary entry is fine */
            if (LLM__CAST(uint32_t, t->tok_len[id]) == vb->len[i] &&
                memcmp(t->bytes + t->tok_off[id], t->bytes + vb->off[i], vb->len[i]) == 0) {
                if (vb->special[i] && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = id;
                continue;
            }
            s = llm__err(LLM_ERR_FORMAT, "%s: id %d is used by two different tokens", what, id);
            goto fail;
        }
        t->tok_off[id] = vb->off[i];
        t->tok_len[id] = LLM__CAST(int32_t, vb->len[i]);
        if (vb->len[i] > t->max_len) t->max_len = vb->len[i];
        const char *p = t->bytes + vb->off[i];
        uint32_t h = LLM__CAST(uint32_t, llm__hash_bytes(LLM__CAST(const unsigned char *, p), vb->len[i]));
        for (uint32_t k = h & t->vmask;; k = (k + 1) & t->vmask) {
            int o = t->vhash[k];
            if (o < 0) { t->vhash[k] = id; break; }
            if (LLM__CAST(uint32_t, t->tok_len[o]) == vb->len[i] && memcmp(t->bytes + t->tok_off[o], p, vb->len[i]) == 0) {
                s = llm__err(LLM_ERR_FORMAT, "%s: ids %d and %d have the same token \"%.40s\"", what, o, id, p);
                goto fail;
            }
        }
        if (vb->special[i] && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = id;
    }
    for (int b = 0; b < 256; b++) {
        char c = LLM__CAST(char, b);
        t->byte_id[b] = llm_tokenizer_find(t, &c, 1);
        if (t->byte_id[b] < 0) { s = llm__err(LLM_ERR_FORMAT, "%s: no token for byte 0x%02X (byte-level BPE needs all 256)", what, b); goto fail; }
    }
    t->eot = llm_tokenizer_find(t, "<|endoftext|>", 13);
    if (t->eot >= 0) {
        int seen = 0;
        for (int k = 0; k < t->n_special; k++) seen |= t->special[k] == t->eot;
        if (!seen && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = t->eot;
    }
    for (int k = 0; k < t->n_special; k++) {
        const char *sp = t->bytes + t->tok_off[t->special[k]];
        size_t sl = LLM__CAST(size_t, t->tok_len[t->special[k]]);
        if (memchr(sp, ' ', sl)) t->special_has_space = 1;
        if (memchr(sp, '\n', sl)) t->special_has_newline = 1;
    }

    /* merges */
    if (ml->n > LLM__TOK_MAX_ID) { s = llm__err(LLM_ERR_FORMAT, "%s: too many merges", what); goto fail; }
    t->n_merges = LLM__CAST(int, ml->n);
    t->mmask = llm__pow2_at_least(ml->n * 2) - 1;
    t->mkey = LLM__CAST(uint64_t *, LLM_MALLOC((LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mkey));
    t->mrank = LLM__CAST(int32_t *, LLM_MALLOC((LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mrank));
    t->merge_res = LLM__CAST(int32_t *, LLM_MALLOC((ml->n ? ml->n : 1) * sizeof *t->merge_res));
    t->merge_pair = LLM__CAST(int32_t *, LLM_MALLOC((ml->n ? ml->n : 1) * 2 * sizeof *t->merge_pair));
    {
        /* made_by[id]: the highest rank of a merge that produces id (-1: none), to check
         * that the heap BPE's order equals encoder.py's (see llm__bpe_heap) */
        int32_t *made_by = LLM__CAST(int32_t *, LLM_MALLOC(LLM__CAST(size_t, t->V) * sizeof(int32_t)));
        char *buf = LLM__CAST(char *, LLM_MALLOC(t->max_len * 2 + 2));
        if (!t->mkey || !t->mrank || !t->merge_res || !t->merge_pair || !made_by || !buf) {
            LLM_FREE(made_by); LLM_FREE(buf);
            s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", what); goto fail;
        }
        memset(t->mkey, 0xFF, (LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mkey);
        memset(made_by, 0xFF, LLM__CAST(size_t, t->V) * sizeof(int32_t));
        t->monotone = 1;
        for (size_t r = 0; r < ml->n && s == LLM_OK; r++) {
            const llm__mline *m = &ml->m[r];
            long na = -1, nb = -1;
            if (m->alen <= t->max_len && m->blen <= t->max_len) {
                if (!u2b) {
                    memcpy(buf, m->a, m->alen); memcpy(buf + m->alen, m->b, m->blen);
                    na = LLM__CAST(long, m->alen); nb = LLM__CAST(long, m->blen);
                } else {
                    na = llm__unalpha(m->a, m->alen, u2b, buf);
                    if (na >= 0) nb = llm__unalpha(m->b, m->blen, u2b, buf + na);
                }
            }
            int a = na < 0 ? -1 : llm_tokenizer_find(t, buf, LLM__CAST(size_t, na));
            int b = nb < 0 ? -1 : llm_tokenizer_find(t, buf + na, LLM__CAST(size_t, nb));
            int c = (a < 0 || b < 0) ? -1 : llm_tokenizer_find(t, buf, LLM__CAST(size_t, na + nb));
            if (a < 0 || b < 0 || c < 0) {
                s = llm__err(LLM_ERR_FORMAT, "%s: merge %lu (\"%.*s\" \"%.*s\"): %s is not in the vocabulary", what,
                             LLM__CAST(unsigned long, r), LLM__CAST(int, m->alen < 40 ? m->alen : 40), m->a,
                             LLM__CAST(int, m->blen < 40 ? m->blen : 40), m->b,
                             a < 0 ? "the first part" : b < 0 ? "the second part" : "the result");
                break;
            }
            t->merge_res[r] = c;
            t->merge_pair[2 * r] = a; t->merge_pair[2 * r + 1] = b;
            if (made_by[c] < LLM__CAST(int32_t, r)) made_by[c] = LLM__CAST(int32_t, r);
            uint64_t key = (LLM__CAST(uint64_t, LLM__CAST(uint32_t, a)) << 32) | LLM__CAST(uint32_t, b);
            for (uint32_t k = llm__hash_pair(key) & t->mmask;; k = (k + 1) & t->mmask) {
                if (t->mkey[k] == key) break;  /* a repeated merge keeps its first rank */
                if (t->mkey[k] == UINT64_MAX) { t->mkey[k] = key; t->mrank[k] = LLM__CAST(int32_t, r); break; }
            }
        }
        /* monotone: each merge (a,b) of rank r ranks after every merge that makes a or b */
        for (uint32_t k = 0; k <= t->mmask && s == LLM_OK; k++) {
            if (t->mkey[k] == UINT64_MAX) continue;
            int32_t a = LLM__CAST(int32_t, t->mkey[k] >> 32), b = LLM__CAST(int32_t, t->mkey[k] & 0xFFFFFFFFu);
            if (made_by[a] >= t->mrank[k] || made_by[b] >= t->mrank[k]) t->monotone = 0;
        }
        LLM_FREE(made_by); LLM_FREE(buf);
        if (s != LLM_OK) goto fail;
    }
    *out = t;
    return LLM_OK;
fail:
    llm_tokenizer_free(t);
    return s;
}

/* added_tokens of tokenizer.json: [{"id": 50256, "content": "<|endoftext|>", "special": true}, ...].
 * Their content is raw text, not the byte alphabet. */
static llm_status llm__vb_added(llm__vbuild *b, const llm__json *d, int arr) {
    if (arr < 0) return LLM_OK;
    if (d->nodes[arr].type != LLM__J_ARR) return llm__err(LLM_ERR_FORMAT, "%s: added_tokens is not an array", b->what);
    for (int c = d->nodes[arr].child; c >= 0; c = d->nodes[c].next) {
        int idn = llm__json_get(d, c, "id"), cn = llm__json_get(d, c, "content"), sn = llm__json_get(d, c, "special");
        int64_t id;
        if (!llm__json_int(d, idn, &id) || cn < 0 || d->nodes[cn].type != LLM__J_STR)
            return llm__err(LLM_ERR_FORMAT, "%s: added_tokens entry without an integer id and a string content", b->what);
        int special = sn >= 0 && d->nodes[sn].type == LLM__J_TRUE;
        llm_status s = llm__vb_add(b, llm__jstr(d, d->nodes[cn].str), d->nodes[cn].str_len, id, special);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* Is node n the string str? */
static int llm__json_is(const llm__json *d, int n, const char *str) {
    return n >= 0 && d->nodes[n].type == LLM__J_STR && d->nodes[n].str_len == strlen(str) &&
           memcmp(llm__jstr(d, d->nodes[n].str), str, d->nodes[n].str_len) == 0;
}
/* The pre-tokenizer a tokenizer.json describes: LLM_PRETOK_LINES for the one
 * llm_tokenizer_save writes for it,
 *   {"type": "Sequence", "pretokenizers": [
 *     {"type": "Split", "pattern": {"String": "\n"}, "behavior": "MergedWithPrevious", ...},
 *     {"type": "ByteLevel", "use_regex": false, ...}]}
 * (what HuggingFace tokenizers runs as: cut after each newline, no regex), else GPT-2's. */
static int llm__pretok_of_doc(const llm__json *d) {
    int pt = llm__json_get(d, 0, "pre_tokenizer");
    int list = llm__json_get(d, pt, "pretokenizers");
    if (!llm__json_is(d, llm__json_get(d, pt, "type"), "Sequence") || list < 0 ||
        d->nodes[list].type != LLM__J_ARR || d->nodes[list].count != 2) return LLM_PRETOK_GPT2;
    int split = d->nodes[list].child, bl = d->nodes[split].next;
    int ure = llm__json_get(d, bl, "use_regex");
    if (llm__json_is(d, llm__json_get(d, split, "type"), "Split") &&
        llm__json_is(d, llm__json_get(d, llm__json_get(d, split, "pattern"), "String"), "\n") &&
        llm__json_is(d, llm__json_get(d, split, "behavior"), "MergedWithPrevious") &&
        llm__json_is(d, llm__json_get(d, bl, "type"), "ByteLevel") && ure >= 0 && d->nodes[ure].type == LLM__J_FALSE)
        return LLM_PRETOK_LINES;
    return LLM_PRETOK_GPT2;
}

/* From a parsed vocabulary document: with merges, d is encoder.json/vocab.json;
 * without, d is a tokenizer.json. */
static llm_status llm__tok_from_doc(llm_tokenizer **out, const llm__json *d, const char *merges, size_t mlen,
                                    const char *vname, const char *mname) {
    llm__vbuild vb;
    llm__mlist ml;
    signed short u2b[324];
    llm_status s;
    memset(&vb, 0, sizeof vb); memset(&ml, 0, sizeof ml);
    vb.what = vname;
    llm__u2b_init(u2b);
    if (merges) {
        s = llm__vb_from_json(&vb, d, 0, u2b);
        if (s == LLM_OK) s = llm__ml_from_text(&ml, merges, mlen, mname);
    } else {
        int model = llm__json_get(d, 0, "model"), type = llm__json_get(d, model, "type");
        if (model < 0 || d->nodes[model].type != LLM__J_OBJ)
            s = llm__err(LLM_ERR_FORMAT, "%s: no \"model\" object (not a tokenizer.json?)", vname);
        else if (type >= 0 && (d->nodes[type].type != LLM__J_STR || strcmp(llm__jstr(d, d->nodes[type].str), "BPE") != 0))
            s = llm__err(LLM_ERR_UNSUPPORTED, "%s: model.type is not \"BPE\"", vname);
        else s = llm__vb_from_json(&vb, d, llm__json_get(d, model, "vocab"), u2b);
        if (s == LLM_OK) s = llm__vb_added(&vb, d, llm__json_get(d, 0, "added_tokens"));
        if (s == LLM_OK) s = llm__ml_from_json(&ml, d, llm__json_get(d, model, "merges"), vname);
    }
    if (s == LLM_OK) s = llm__tok_build(out, &vb, &ml, u2b);
    if (s == LLM_OK && !merges) (*out)->pretok = llm__pretok_of_doc(d);
    llm__vbuild_free(&vb);
    LLM_FREE(ml.m);
    return s;
}

/* Parse JSON, prefixing an error with the file name. */
static llm_status llm__tok_parse(llm__json *d, const char *text, size_t len, const char *what) {
    llm_status s = llm__json_parse(d, text, len);
    if (s != LLM_OK) {
        char msg[512];
        memcpy(msg, llm_last_error(), sizeof msg);   /* the message is at most 511 chars + NUL */
        msg[sizeof msg - 1] = 0;
        return llm__err(s, "%s: %s", what, msg);
    }
    return LLM_OK;
}

LLMDEF llm_status llm_tokenizer_load_memory(llm_tokenizer **out, const char *vocab, size_t vocab_len,
                                            const char *merges, size_t merges_len) {
    if (!out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load_memory: out is NULL");
    *out = NULL;
    if (!vocab) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load_memory: vocab is NULL");
    llm__json d;
    llm_status s = llm__tok_parse(&d, vocab, vocab_len, merges ? "vocab.json" : "tokenizer.json");
    if (s != LLM_OK) return s;
    s = llm__tok_from_doc(out, &d, merges, merges_len, merges ? "vocab.json" : "tokenizer.json", "merges.txt");
    llm__json_free(&d);
    return s;
}

static char *llm__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = LLM__CAST(char *, LLM_MALLOC(a + b + 2));
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}
static int llm__file_exists(const char *path) {
    FILE *f = path ? llm__fopen(path, "rb") : NULL;
    if (f) fclose(f);
    return f != NULL;
}

/* Load vocabulary file vpath, and merges file mpath (NULL: vpath is a tokenizer.json,
 * or a vocab.json whose merges sit beside it). */
static llm_status llm__tok_load_files(llm_tokenizer **out, const char *vpath, const char *mpath) {
    char *vt = NULL, *mt = NULL, *dir = NULL, *m1 = NULL, *m2 = NULL;
    size_t vl = 0, ml = 0;
    llm__json d;
    llm_status s = llm__read_file(vpath, &vt, &vl);
    if (s != LLM_OK) return s;
    s = llm__tok_parse(&d, vt, vl, vpath);
    LLM_FREE(vt);
    if (s != LLM_OK) return s;
    int model = llm__json_get(&d, 0, "model");  /* (GPT-2's vocabulary has a token "model") */
    if (!mpath && (model < 0 || d.nodes[model].type != LLM__J_OBJ)) {   /* a bare vocabulary: find its merges */
        const char *slash = strrchr(vpath, '/');
        size_t n = slash ? LLM__CAST(size_t, slash - vpath) : 1;
        dir = LLM__CAST(char *, LLM_MALLOC(n + 1));
        if (dir) { memcpy(dir, slash ? vpath : ".", n); dir[n] = 0; }
        m1 = dir ? llm__path_join(dir, "vocab.bpe") : NULL;
        m2 = dir ? llm__path_join(dir, "merges.txt") : NULL;
        if (!m1 || !m2) s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", vpath);
        else if (llm__file_exists(m1)) mpath = m1;
        else if (llm__file_exists(m2)) mpath = m2;
        else s = llm__err(LLM_ERR_IO, "%s: no vocab.bpe or merges.txt beside it (and no \"model\": not a tokenizer.json)", vpath);
    }
    if (s == LLM_OK && mpath) s = llm__read_file(mpath, &mt, &ml);
    if (s == LLM_OK) s = llm__tok_from_doc(out, &d, mt, ml, vpath, mpath);
    llm__json_free(&d);
    LLM_FREE(mt); LLM_FREE(dir); LLM_FREE(m1); LLM_FREE(m2);
    return s;
}

LLMDEF llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path) {
    /* tokenizer.json first: it alone records special tokens and the pre-tokenizer */
    static const char *const pairs[3][2] = {
        {"tokenizer.json", NULL}, {"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}};
    if (!out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load: path is NULL");
    for (int k = 0; k < 3; k++) {        /* a directory holding one of the three layouts */
        char *v = llm__path_join(path, pairs[k][0]);
        char *m = pairs[k][1] ? llm__path_join(path, pairs[k][1]) : NULL;
        if (!v || (pairs[k][1] && !m)) { LLM_FREE(v); LLM_FREE(m); return llm__err(LLM_ERR_NOMEM, "out of memory"); }
        if (llm__file_exists(v) && (!pairs[k][1] || llm__file_exists(m))) {
            llm_status s = llm__tok_load_files(out, v, m);
            LLM_FREE(v); LLM_FREE(m);
            return s;
        }
        LLM_FREE(v); LLM_FREE(m);
    }
    if (!llm__file_exists(path))
        return llm__err(LLM_ERR_IO, "%s: cannot open (expected a tokenizer.json, an encoder.json/vocab.json, or a directory with them)", path);
    return llm__tok_load_files(out, path, NULL);
}

/* ---- BPE ----------------------------------------------------------------------------- */
/* Per-call scratch: the BPE work arrays and the pre-token cache. Encoding owns one of
 * these for the duration of a call (one per thread in llm_tokenizer_encode_pool), so
 * the tokenizer itself is never written. */
#define LLM__CKEY 22   /* cache pieces of up to 22 bytes ... */
#define LLM__CIDS 8    /* ... that give up to 8 ids */
typedef struct {
    uint32_t h;                       /* hash, 0 when the slot is empty */
    unsigned char klen, nid;
    unsigned char key[LLM__CKEY];
    int32_t id[LLM__CIDS];
} llm__centry;

typedef struct {
    const llm_tokenizer *tok;
    int *ids; size_t cap, n;          /* output: ids[0..cap), n counted even past cap */
    int32_t *sym, *nxt, *prv, *rnk;   /* (scap) BPE symbols and links */
    uint64_t *heap; size_t scap, hn;  /* (3*scap) */
    llm__centry *cache; uint32_t cmask, cused;
} llm__enc;

static void llm__enc_free(llm__enc *e) {
    LLM_FREE(e->sym); LLM_FREE(e->nxt); LLM_FREE(e->prv); LLM_FREE(e->rnk); LLM_FREE(e->heap);
    LLM_FREE(e->cache);
}
static llm_status llm__enc_reserve(llm__enc *e, size_t n) {
    if (n <= e->scap) return LLM_OK;
    if (n > 0x7FFFFFFFu / 3) return llm__err(LLM_ERR_ARG, "tokenizer: a piece of %lu bytes is too long", LLM__CAST(unsigned long, n));
    size_t cap = e->scap ? e->scap : 64;
    while (cap < n) cap *= 2;
    LLM_FREE(e->sym); LLM_FREE(e->nxt); LLM_FREE(e->prv); LLM_FREE(e->rnk); LLM_FREE(e->heap);
    e->sym = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->nxt = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->prv = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->rnk = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->heap = LLM__CAST(uint64_t *, LLM_MALLOC(3 * cap * sizeof(uint64_t)));
    e->scap = cap;
    if (!e->sym || !e->nxt || !e->prv || !e->rnk || !e->heap) {
        e->scap = 0;
        return llm__err(LLM_ERR_NOMEM, "tokenizer: out of memory for a piece of %lu bytes", LLM__CAST(unsigned long, n));
    }
    return LLM_OK;
}

/* Reference BPE, as OpenAI's encoder.py: find the lowest-ranked adjacent pair, merge
 * every non-overlapping occurrence of it left to right, repeat. O(n) per merge and up
 * to n merges: O(n^2) for a piece of n bytes, fine for words, slow for a 10k-byte run.
 * Symbols in e->sym[0..n); returns the final count. */
static size_t llm__bpe_ref(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    int32_t *sym = e->sym;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[p[i]];
    while (n > 1) {
        int best = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            int r = llm__merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        int a = -1, b = -1;
        for (size_t i = 0; i + 1 < n; i++)
            if (llm__merge_rank(t, sym[i], sym[i + 1]) == best) { a = sym[i]; b = sym[i + 1]; break; }
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == b) { sym[j++] = t->merge_res[best]; i += 2; }
            else sym[j++] = sym[i++];
        }
        n = j;
    }
    return n;
}

/* Min-heap of keys rank<<32 | position: pops the lowest rank, leftmost first. */
static void llm__heap_push(uint64_t *h, size_t *n, uint64_t key) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up] <= key) break;
        h[i] = h[up]; i = up;
    }
    h[i] = key;
}
static uint64_t llm__heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (last <= h[c]) break;
        h[i] = h[c]; i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* The same result in O(n log n): symbols form a linked list, every adjacent pair that
 * can merge sits in a heap keyed (rank, position), and each merge re-ranks only its two
 * new neighbour pairs. Stale heap entries are skipped: rnk[i] holds the live rank of
 * the pair starting at symbol i (-1: none). Popping (rank, position) in order merges
 * all occurrences of the lowest rank left to right before any higher rank, exactly as
 * encoder.py does, provided a merge's result never forms a pair ranked below the
 * merge itself: tok->monotone, checked at load (true for every trained BPE; otherwise
 * the reference is used). Symbols in e->sym[0..count), returns count. */
static size_t llm__bpe_heap(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    int32_t *sym = e->sym, *nxt = e->nxt, *prv = e->prv, *rnk = e->rnk;
    uint64_t *heap = e->heap;
    size_t hn = 0;
    int32_t nn = LLM__CAST(int32_t, n);
    for (int32_t i = 0; i < nn; i++) { sym[i] = t->byte_id[p[i]]; nxt[i] = i + 1; prv[i] = i - 1; }
    for (int32_t i = 0; i < nn; i++) {
        rnk[i] = i + 1 < nn ? llm__merge_rank(t, sym[i], sym[i + 1]) : -1;
        if (rnk[i] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[i]) << 32) | LLM__CAST(uint32_t, i));
    }
    while (hn) {
        uint64_t key = llm__heap_pop(heap, &hn);
        int32_t r = LLM__CAST(int32_t, key >> 32), i = LLM__CAST(int32_t, key & 0xFFFFFFFFu);
        if (rnk[i] != r) continue;                 /* stale */
        int32_t j = nxt[i], k = nxt[j];            /* merge i and j; j disappears */
        sym[i] = t->merge_res[r];
        rnk[j] = -1;
        nxt[i] = k;
        if (k < nn) prv[k] = i;
        rnk[i] = k < nn ? llm__merge_rank(t, sym[i], sym[k]) : -1;
        if (rnk[i] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[i]) << 32) | LLM__CAST(uint32_t, i));
        int32_t h = prv[i];
        if (h >= 0) {
            rnk[h] = llm__merge_rank(t, sym[h], sym[i]);
            if (rnk[h] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[h]) << 32) | LLM__CAST(uint32_t, h));
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i < nn; i = nxt[i]) sym[m++] = sym[i];   /* compact: m <= i */
    return m;
}

static void llm__emit(llm__enc *e, int id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* Encode one pre-token piece: one byte directly, else through the cache or BPE. */
static llm_status llm__encode_piece(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    if (n == 1) { llm__emit(e, t->byte_id[p[0]]); return LLM_OK; }
    llm__centry *slot = NULL;
    uint32_t h = 0;
    if (n <= LLM__CKEY && e->cache) {
        h = LLM__CAST(uint32_t, llm__hash_bytes(p, n)) | 1u;
        for (uint32_t k = h & e->cmask;; k = (k + 1) & e->cmask) {
            llm__centry *c = &e->cache[k];
            if (c->h == 0) { slot = c; break; }
            if (c->h == h && c->klen == n && memcmp(c->key, p, n) == 0) {
                for (int q = 0; q < c->nid; q++) llm__emit(e, c->id[q]);
                return LLM_OK;
            }
        }
    }
    llm_status s = llm__enc_reserve(e, n);
    if (s != LLM_OK) return s;
    size_t m = t->monotone ? llm__bpe_heap(e, p, n) : llm__bpe_ref(e, p, n);
    for (size_t q = 0; q < m; q++) llm__emit(e, e->sym[q]);
    if (slot && m <= LLM__CIDS && e->cused < e->cmask / 4 * 3) {   /* keep the table <= 3/4 full */
        slot->h = h; slot->klen = LLM__CAST(unsigned char, n); slot->nid = LLM__CAST(unsigned char, m);
        memcpy(slot->key, p, n);
        for (size_t q = 0; q < m; q++) slot->id[q] = e->sym[q];
        e->cused++;
    }
    return LLM_OK;
}

/* Ordinary text (no special tokens): pre-tokenize and encode each piece. */
static llm_status llm__encode_ordinary(llm__enc *e, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = llm__word_end(e->tok->pretok, s, i, n);
        llm_status st = llm__encode_piece(e, s + i, j - i);
        if (st != LLM_OK) return st;
        i = j;
    }
    return LLM_OK;
}

/* Where the first of the strings sp[k] (sl[k] bytes, k < ns) starts in s[i..n), and
 * which k (-1: none, and n is returned): the leftmost match, the longest one when
 * several start at the same byte. */
static size_t llm__find_first(const unsigned char *s, size_t i, size_t n, const char *const *sp, const size_t *sl,
                              int ns, int *which) {
    size_t best = n;
    *which = -1;
    for (int k = 0; k < ns; k++) {
        const unsigned char *p = LLM__CAST(const unsigned char *, sp[k]);
        size_t len = sl[k];
        for (size_t j = i; j + len <= n && j <= best; j++) {
            const unsigned char *q = LLM__CAST(const unsigned char *, memchr(s + j, p[0], n - j));
            if (!q) break;
            j = LLM__CAST(size_t, q - s);
            if (j + len > n || j > best) break;
            if (memcmp(q, p, len) == 0) {
                if (j < best || (j == best && len > sl[*which])) { best = j; *which = k; }
                break;
            }
        }
    }
    return best;
}

/* Where the next allowed special token starts in s[i..n), and which id (or -1). */
static size_t llm__next_special(const llm_tokenizer *t, const unsigned char *s, size_t i, size_t n, int *which) {
    const char *sp[LLM__TOK_MAX_SPECIAL];
    size_t sl[LLM__TOK_MAX_SPECIAL];
    for (int k = 0; k < t->n_special; k++) {
        sp[k] = t->bytes + t->tok_off[t->special[k]];
        sl[k] = LLM__CAST(size_t, t->tok_len[t->special[k]]);
    }
    int k;
    size_t at = llm__find_first(s, i, n, sp, sl, t->n_special, &k);
    *which = k < 0 ? -1 : t->special[k];
    return at;
}

static llm_status llm__encode_text(llm__enc *e, const unsigned char *s, size_t n, int flags) {
    if (!(flags & LLM_TOKENIZE_SPECIAL) || e->tok->n_special == 0) return llm__encode_ordinary(e, s, n);
    size_t i = 0;
    while (i < n) {
        int id;
        size_t j = llm__next_special(e->tok, s, i, n, &id);
        llm_status st = llm__encode_ordinary(e, s + i, j - i);
        if (st != LLM_OK) return st;
        if (id < 0) break;
        llm__emit(e, id);
        i = j + LLM__CAST(size_t, e->tok->tok_len[id]);
    }
    return LLM_OK;
}

/* The cache: about one slot per 8 bytes of text, between 64 and 32768 slots. */
static void llm__enc_init(llm__enc *e, const llm_tokenizer *t, size_t text_len, int *ids, size_t cap) {
    memset(e, 0, sizeof *e);
    e->tok = t; e->ids = ids; e->cap = cap;
    uint32_t slots = llm__pow2_at_least(text_len / 8);
    if (slots < 64) slots = 64;
    if (slots > 32768) slots = 32768;
    if (text_len > 16) {   /* below that a cache cannot pay off */
        e->cache = LLM__CAST(llm__centry *, llm__calloc(slots, sizeof(llm__centry)));
        if (e->cache) e->cmask = slots - 1;   /* no memory for a cache: go without */
    }
}

LLMDEF llm_status llm_tokenizer_encode(const llm_tokenizer *t, const char *text, size_t len, int flags,
                                       int *ids, size_t cap, size_t *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_ids) return llm__err(LLM_ERR_ARG, "llm_tokenizer_encode: NULL argument");
    llm__enc e;
    llm__enc_init(&e, t, len, ids, cap);
    llm_status s = llm__encode_text(&e, LLM__CAST(const unsigned char *, text), len, flags);
    llm__enc_free(&e);
    *n_ids = e.n;
    if (s == LLM_OK && e.n > cap)
        s = llm__err(LLM_ERR_ARG, "llm_tokenizer_encode: %lu ids do not fit in %lu", LLM__CAST(unsigned long, e.n), LLM__CAST(unsigned long, cap));
    return s;
}

/* ---- parallel encoding ----------------------------------------------------------------- */
/* Cut points: byte p is a cut when s[p] == ' ' and s[p-1] is an ASCII byte that is not
 * whitespace. Then the piece holding s[p-1] ends at p-1 (runs of letters, numbers or
 * other stop before whitespace; contractions are at most "'re" and cannot reach over
 * the space; a whitespace run cannot end at p-1), no rule looks behind, and the only
 * lookahead, (?!\S), belongs to whitespace runs, none of which crosses p. So encoding
 * [0,p) and [p,n) separately gives the same pieces. ASCII bytes never sit inside a
 * multi-byte character, and special tokens without a space cannot straddle p.
 * With LLM_PRETOK_LINES the cuts are simply the line starts (s[p-1] == '\n'). */
static int llm__is_cut(int pretok, const unsigned char *s, size_t p) {
    if (pretok == LLM_PRETOK_LINES) return s[p - 1] == '\n';
    return s[p] == ' ' && s[p - 1] < 0x80 && llm__ascii_class[s[p - 1]] != LLM__U_SPACE;
}
/* nth pieces of s[0..len): cut[0] = 0, cut[nth] = len, cut[k] the first cut at or after
 * an even share (and past cut[k-1]), or len when there is none. */
static void llm__even_cuts(int pretok, const unsigned char *s, size_t len, int nth, size_t *cut) {
    cut[0] = 0;
    for (int k = 1; k < nth; k++) {
        size_t p = len / LLM__CAST(size_t, nth) * LLM__CAST(size_t, k);
        if (p < cut[k - 1] + 1) p = cut[k - 1] + 1;
        while (p < len && !llm__is_cut(pretok, s, p)) p++;
        cut[k] = p < len ? p : len;
    }
    cut[nth] = len;
}
typedef struct {
    const llm_tokenizer *tok;
    const unsigned char *s;
    const size_t *cut;       /* (nth+1) */
    int flags;
    int *tmp;                /* (n) thread k writes at tmp + cut[k] */
    size_t *count;           /* (nth) */
    llm_status *status;      /* (nth) */
} llm__par;

static void llm__encode_task(void *arg, int ith, int nth) {
    llm__par *P = LLM__CAST(llm__par *, arg);
    size_t lo = P->cut[ith], hi = P->cut[ith + 1];
    llm__enc e;
    (void)nth;
    llm__enc_init(&e, P->tok, hi - lo, P->tmp + lo, hi - lo);
    P->status[ith] = llm__encode_text(&e, P->s + lo, hi - lo, P->flags);
    P->count[ith] = e.n;
    llm__enc_free(&e);
}

LLMDEF llm_status llm_tokenizer_encode_pool(const llm_tokenizer *t, llm_pool *pool, const char *text, size_t len,
                                            int flags, int *ids, size_t cap, size_t *n_ids) {
    int nth = llm_pool_size(pool);
    if (!pool || nth <= 1 || len < (1u << 16) ||
        (t && (flags & LLM_TOKENIZE_SPECIAL) && (t->pretok == LLM_PRETOK_LINES ? t->special_has_newline : t->special_has_space)))
        return llm_tokenizer_encode(t, text, len, flags, ids, cap, n_ids);
    if (n_ids) *n_ids = 0;
    if (!t || !text || (!ids && cap) || !n_ids) return llm__err(LLM_ERR_ARG, "llm_tokenizer_encode_pool: NULL argument");
    const unsigned char *s = LLM__CAST(const unsigned char *, text);
    size_t *cut = LLM__CAST(size_t *, llm__calloc(LLM__CAST(size_t, nth) * 2 + 1, sizeof(size_t)));
    llm_status *status = LLM__CAST(llm_status *, llm__calloc(LLM__CAST(size_t, nth), sizeof(llm_status)));
    int *tmp = cap >= len ? ids : LLM__CAST(int *, LLM_MALLOC(len * sizeof(int)));  /* ids fit in len */
    if (!cut || !status || !tmp) {
        LLM_FREE(cut); LLM_FREE(status); if (tmp != ids) LLM_FREE(tmp);
        return llm__err(LLM_ERR_NOMEM, "llm_tokenizer_encode_pool: out of memory");
    }
    size_t *count = cut + nth + 1;
    llm__even_cuts(t->pretok, s, len, nth, cut);
    llm__par P;
    P.tok = t; P.s = s; P.cut = cut; P.flags = flags; P.tmp = tmp; P.count = count; P.status = status;
    llm_pool_run(pool, llm__encode_task, &P);
    llm_status st = LLM_OK;
    size_t n = 0;
    for (int k = 0; k < nth; k++) {   /* gather in order (memmove: the runs only move left) */
        if (status[k] != LLM_OK && st == LLM_OK)
            st = llm__err(status[k], "llm_tokenizer_encode_pool: thread %d failed (%s)", k, llm_status_string(status[k]));
        size_t c = count[k];
        if (n < cap) memmove(ids + n, tmp + cut[k], (c < cap - n ? c : cap - n) * sizeof(int));
        n += c;
    }
    LLM_FREE(cut); LLM_FREE(status); if (tmp != ids) LLM_FREE(tmp);
    *n_ids = n;
    if (st == LLM_OK && n > cap)
        st = llm__err(LLM_ERR_ARG, "llm_tokenizer_encode_pool: %lu ids do not fit in %lu", LLM__CAST(unsigned long, n), LLM__CAST(unsigned long, cap));
    return st;
}

/* ---- decoding -------------------------------------------------------------------------- */
LLMDEF llm_status llm_tokenizer_decode(const llm_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                                       size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || (!ids && n) || (!out && cap) || !n_out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: NULL argument");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->V || t->tok_len[id] < 0)
            return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: id %d at position %lu is not in the vocabulary", id, LLM__CAST(unsigned long, i));
        size_t l = LLM__CAST(size_t, t->tok_len[id]);
        if (o + l <= cap) memcpy(out + o, t->bytes + t->tok_off[id], l);
        else if (o < cap) memcpy(out + o, t->bytes + t->tok_off[id], cap - o);
        o += l;
    }
    *n_out = o;
    if (o > cap && out)
        return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: %lu bytes do not fit in %lu", LLM__CAST(unsigned long, o), LLM__CAST(unsigned long, cap));
    return LLM_OK;
}

LLMDEF void llm_tokenizer_stream_init(llm_tokenizer_stream *s, const llm_tokenizer *t) {
    memset(s, 0, sizeof *s);
    s->tok = t;
}

/* Length of the incomplete UTF-8 character at the end of b[0..n): the last lead byte
 * in the last 3 bytes, if the bytes after it are a valid start of its sequence that is
 * still too short. (A lead byte is never inside an earlier valid character.) */
static size_t llm__utf8_incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = b[n - back];
        if ((c & 0xC0) == 0x80) continue;        /* continuation: look further back */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need <= back) return 0;              /* ASCII, invalid, or complete */
        if (back >= 2) {                         /* the second byte's narrower range */
            unsigned c1 = b[n - back + 1];
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (c1 < lo || c1 > hi) return 0;
        }
        return back;                             /* later bytes are continuations */
    }
    return 0;
}

LLMDEF llm_status llm_tokenizer_stream_put(llm_tokenizer_stream *s, int id, char *out, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!s || !s->tok || !out || !n_out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: NULL argument");
    size_t len;
    const char *p = llm_tokenizer_token(s->tok, id, &len);
    if (!p) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: id %d is not in the vocabulary", id);
    size_t total = LLM__CAST(size_t, s->n_pending) + len;
    if (total > cap) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: %lu bytes do not fit in %lu", LLM__CAST(unsigned long, total), LLM__CAST(unsigned long, cap));
    memcpy(out, s->pending, LLM__CAST(size_t, s->n_pending));
    memcpy(out + s->n_pending, p, len);
    size_t keep = llm__utf8_incomplete_tail(LLM__CAST(const unsigned char *, out), total);
    memcpy(s->pending, out + total - keep, keep);
    s->n_pending = LLM__CAST(int, keep);
    *n_out = total - keep;
    return LLM_OK;
}

LLMDEF size_t llm_tokenizer_stream_flush(llm_tokenizer_stream *s, char out[4]) {
    if (!s) return 0;
    size_t n = LLM__CAST(size_t, s->n_pending);
    memcpy(out, s->pending, n);
    s->n_pending = 0;
    return n;
}

/* ---- training ------------------------------------------------------------------------- */
/* llm_tokenizer_train in three steps (its rule is written where it is declared):
 *   1. words: cut the texts into words and count them in a hash table (one table per
 *      thread over its share of the text, added together, then sorted by bytes);
 *   2. pairs: count every adjacent pair of every word, weighted by the word's count,
 *      and list for each pair the words that hold it;
 *   3. merges: pop the best pair from a heap ordered by (count, then smallest a, b);
 *      replace it in the words on its list, changing only the counts of the pairs
 *      around each occurrence; push the pairs whose counts changed. A heap entry whose
 *      count is no longer its pair's is stale and skipped when popped.
 * Each merge costs the length of the words that hold its pair, not a recount of the
 * corpus. (A word that is very long, e.g. a text without newlines in LLM_PRETOK_LINES,
 * is rescanned whole by every merge that touches it.) */

LLMDEF llm_tokenizer_train_config llm_tokenizer_train_config_default(void) {
    llm_tokenizer_train_config c;
    memset(&c, 0, sizeof c);
    return c;
}

/* Word counts: open addressing over (pointer into the text, length). */
typedef struct { const unsigned char *p; size_t n; int64_t count; uint64_t h; } llm__word;
typedef struct { llm__word *slot; size_t mask, used; int nomem; } llm__wtab;

static void llm__wtab_add(llm__wtab *w, const unsigned char *p, size_t n, int64_t count, uint64_t h) {
    if (w->nomem) return;
    if (2 * (w->used + 1) > w->mask + 1) {                /* keep it at most half full */
        size_t cap = w->mask ? 2 * (w->mask + 1) : 4096;
        llm__word *s = LLM__CAST(llm__word *, llm__calloc(cap, sizeof *s));
        if (!s) { w->nomem = 1; return; }
        for (size_t i = 0; w->mask && i <= w->mask; i++) {
            if (!w->slot[i].p) continue;
            size_t k = LLM__CAST(size_t, w->slot[i].h) & (cap - 1);
            while (s[k].p) k = (k + 1) & (cap - 1);
            s[k] = w->slot[i];
        }
        LLM_FREE(w->slot);
        w->slot = s; w->mask = cap - 1;
    }
    for (size_t k = LLM__CAST(size_t, h) & w->mask;; k = (k + 1) & w->mask) {
        llm__word *e = &w->slot[k];
        if (!e->p) { e->p = p; e->n = n; e->count = count; e->h = h; w->used++; return; }
        if (e->h == h && e->n == n && memcmp(e->p, p, n) == 0) { e->count += count; return; }
    }
}

/* Count the words of s[lo..hi): cut at the special tokens, then by the pre-tokenizer. */
typedef struct {
    llm__wtab *tab;                       /* (nth) one table per thread */
    const unsigned char *s;
    const size_t *cut;                    /* (nth+1) */
    const char *const *sp; const size_t *sl; int ns;
    int pretok;
} llm__count_job;

static void llm__count_words(llm__wtab *w, const llm__count_job *J, size_t lo, size_t hi) {
    const unsigned char *s = J->s;
    size_t i = lo;
    while (i < hi) {
        int k = -1;
        size_t j = J->ns ? llm__find_first(s, i, hi, J->sp, J->sl, J->ns, &k) : hi;
        while (i < j) {
            size_t e = llm__word_end(J->pretok, s, i, j);
            llm__wtab_add(w, s + i, e - i, 1, llm__hash_bytes(s + i, e - i));
            i = e;
        }
        if (k < 0) break;
        i = j + J->sl[k];
    }
}
static void llm__count_task(void *arg, int ith, int nth) {
    llm__count_job *J = LLM__CAST(llm__count_job *, arg);
    (void)nth;
    llm__count_words(&J->tab[ith], J, J->cut[ith], J->cut[ith + 1]);
}

static int llm__word_cmp(const void *x, const void *y) {
    const llm__word *a = LLM__CAST(const llm__word *, x), *b = LLM__CAST(const llm__word *, y);
    int c = memcmp(a->p, b->p, a->n < b->n ? a->n : b->n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* A pair of symbols: its count, and the words that hold it (or held it: the list is only
 * appended to, so it may name words that lost the pair; they are checked when used). */
typedef struct {
    int32_t a, b;
    int64_t count;
    int32_t *w; size_t nw, cw;            /* (nw) word indices */
    int32_t stamp;                        /* the last merge that changed the count */
} llm__pair;
typedef struct { int64_t count; int32_t a, b; } llm__hent;   /* heap entry */

typedef struct {
    /* words: the symbols of word i are sym[off[i] .. off[i] + len[i]) */
    int32_t *sym; size_t *off; size_t *len; int64_t *count; int32_t *seen; size_t nw;
    /* pairs, and a hash (a, b) -> index into pair */
    llm__pair *pair; size_t np, pcap;
    int32_t *ptab; size_t pmask;
    int32_t *touched; size_t nt, tcap;    /* pairs whose count the current merge changed */
    llm__hent *heap; size_t nh, hcap;
    /* tokens: the bytes of id are tb[toff[id] .. toff[id] + tlen[id]) */
    unsigned char *tb; size_t tblen, tbcap;
    size_t *toff, *tlen;
    int nomem;
} llm__bt;

static void llm__bt_free(llm__bt *T) {
    for (size_t i = 0; i < T->np; i++) LLM_FREE(T->pair[i].w);
    LLM_FREE(T->sym); LLM_FREE(T->off); LLM_FREE(T->len); LLM_FREE(T->count); LLM_FREE(T->seen);
    LLM_FREE(T->pair); LLM_FREE(T->ptab); LLM_FREE(T->touched); LLM_FREE(T->heap);
    LLM_FREE(T->tb); LLM_FREE(T->toff); LLM_FREE(T->tlen);
}

/* Room for `need` elements of `elem` bytes in the array p (capacity *cap, doubled as
 * needed): the array, perhaps moved, or NULL when out of memory (p is then unchanged). */
static void *llm__grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap && p) return p;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = LLM_REALLOC(p, c * elem);
    if (q) *cap = c;
    return q;
}


static uint64_t llm__pair_key(int32_t a, int32_t b) {
    return (LLM__CAST(uint64_t, LLM__CAST(uint32_t, a)) << 32) | LLM__CAST(uint32_t, b);
}

/* The index of pair (a, b), made with count 0 when new; -1 when out of memory. */
static int32_t llm__pair_get(llm__bt *T, int32_t a, int32_t b) {
    if (2 * (T->np + 1) > T->pmask + 1) {                 /* rehash at half full */
        size_t cap = T->pmask ? 2 * (T->pmask + 1) : LLM__CAST(size_t, 1) << 16;
        int32_t *t = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof *t));
        if (!t) { T->nomem = 1; return -1; }
        memset(t, 0xFF, cap * sizeof *t);
        for (size_t i = 0; i < T->np; i++) {
            size_t k = llm__hash_pair(llm__pair_key(T->pair[i].a, T->pair[i].b)) & (cap - 1);
            while (t[k] >= 0) k = (k + 1) & (cap - 1);
            t[k] = LLM__CAST(int32_t, i);
        }
        LLM_FREE(T->ptab);
        T->ptab = t; T->pmask = cap - 1;
    }
    size_t k = llm__hash_pair(llm__pair_key(a, b)) & T->pmask;
    for (; T->ptab[k] >= 0; k = (k + 1) & T->pmask) {
        const llm__pair *p = &T->pair[T->ptab[k]];
        if (p->a == a && p->b == b) return T->ptab[k];
    }
    void *grown = T->np < 0x7FFFFFFF ? llm__grow(T->pair, &T->pcap, T->np + 1, sizeof *T->pair) : NULL;
    if (!grown) { T->nomem = 1; return -1; }
    T->pair = LLM__CAST(llm__pair *, grown);
    llm__pair *p = &T->pair[T->np];
    memset(p, 0, sizeof *p);
    p->a = a; p->b = b; p->stamp = -1;
    T->ptab[k] = LLM__CAST(int32_t, T->np);
    return LLM__CAST(int32_t, T->np++);
}

/* count(a, b) += d for an occurrence in word w (listing w when d > 0). The pair is
 * noted as touched by merge `stamp`, once, so that its new count is pushed once. */
static void llm__pair_add(llm__bt *T, int32_t a, int32_t b, int64_t d, int32_t w, int32_t stamp) {
    int32_t i = llm__pair_get(T, a, b);
    if (i < 0) return;
    llm__pair *p = &T->pair[i];
    p->count += d;
    if (d > 0 && (p->nw == 0 || p->w[p->nw - 1] != w)) {
        int32_t *wl = LLM__CAST(int32_t *, llm__grow(p->w, &p->cw, p->nw + 1, sizeof *p->w));
        if (!wl) { T->nomem = 1; return; }
        p->w = wl;
        p->w[p->nw++] = w;
    }
    if (p->stamp != stamp) {
        p->stamp = stamp;
        int32_t *tl = LLM__CAST(int32_t *, llm__grow(T->touched, &T->tcap, T->nt + 1, sizeof *T->touched));
        if (!tl) { T->nomem = 1; return; }
        T->touched = tl;
        T->touched[T->nt++] = i;
    }
}

/* Max-heap: the highest count first, then the smallest a, then the smallest b. */
static int llm__hent_first(const llm__hent *x, const llm__hent *y) {
    if (x->count != y->count) return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}
static void llm__hpush(llm__bt *T, const llm__pair *p) {
    llm__hent *h = LLM__CAST(llm__hent *, llm__grow(T->heap, &T->hcap, T->nh + 1, sizeof *T->heap)), e;
    if (!h) { T->nomem = 1; return; }
    T->heap = h;
    e.count = p->count; e.a = p->a; e.b = p->b;
    size_t i = T->nh++;
    while (i > 0 && llm__hent_first(&e, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = e;
}
static llm__hent llm__hpop(llm__bt *T) {
    llm__hent *h = T->heap, top = h[0], last = h[--T->nh];
    size_t i = 0, n = T->nh;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && llm__hent_first(&h[c + 1], &h[c])) c++;
        if (!llm__hent_first(&h[c], &last)) break;
        h[i] = h[c]; i = c;
    }
    if (n) h[i] = last;
    return top;
}

/* Replace every (a, b) in word w by z, left to right, and update the counts of the pairs
 * around each occurrence at old position i (p = the symbol before, q = the one after):
 *   removed: (p, a) unless the previous occurrence ended at i-1 (it removed (b, a) as
 *            its right pair), (a, b), and (b, q);
 *   added:   (left, z) where left is the new symbol before (z itself after an adjacent
 *            occurrence), and (z, q) unless q starts the next occurrence (which adds
 *            (z, z) as its left pair).
 * So "a b a b" loses (a,b) twice and (b,a) once and gains (z,z): its pairs exactly. */
static void llm__merge_word(llm__bt *T, int32_t w, int32_t a, int32_t b, int32_t z, int32_t stamp) {
    int32_t *s = T->sym + T->off[w];
    size_t n = T->len[w], i = 0, j = 0, prev_end = LLM__CAST(size_t, -1);
    int64_t c = T->count[w];
    while (i < n) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (i > 0 && prev_end != i - 1) llm__pair_add(T, s[i - 1], a, -c, w, stamp);
            llm__pair_add(T, a, b, -c, w, stamp);
            if (i + 2 < n) llm__pair_add(T, b, s[i + 2], -c, w, stamp);
            if (j > 0) llm__pair_add(T, s[j - 1], z, c, w, stamp);   /* s[j-1]: already the new symbol */
            if (i + 2 < n && !(i + 3 < n && s[i + 2] == a && s[i + 3] == b)) llm__pair_add(T, z, s[i + 2], c, w, stamp);
            s[j++] = z;
            i += 2;
            prev_end = i - 1;
        } else {
            s[j++] = s[i++];
        }
    }
    T->len[w] = j;
}

/* Validate the arguments; the special tokens' lengths into sl. */
static llm_status llm__train_check(const char *const *texts, const size_t *lens, int n_texts, int vocab_size,
                                   const llm_tokenizer_train_config *c, size_t *sl) {
    const char *fn = "llm_tokenizer_train";
    if (n_texts < 0 || (n_texts > 0 && (!texts || !lens))) return llm__err(LLM_ERR_ARG, "%s: NULL texts or lens", fn);
    if (c->pretokenize != LLM_PRETOK_GPT2 && c->pretokenize != LLM_PRETOK_LINES)
        return llm__err(LLM_ERR_ARG, "%s: pretokenize %d is not LLM_PRETOK_GPT2 or LLM_PRETOK_LINES", fn, c->pretokenize);
    if (c->n_special < 0 || c->n_special > LLM__TOK_MAX_SPECIAL || (c->n_special > 0 && !c->special))
        return llm__err(LLM_ERR_ARG, "%s: n_special %d is not in [0, %d] (or special is NULL)", fn, c->n_special, LLM__TOK_MAX_SPECIAL);
    for (int k = 0; k < c->n_special; k++) {
        const char *sp = c->special[k];
        if (!sp) return llm__err(LLM_ERR_ARG, "%s: special token %d is NULL", fn, k);
        sl[k] = strlen(sp);
        if (sl[k] < 2)
            return llm__err(LLM_ERR_ARG, "%s: special token %d \"%s\" is %s (each of the 256 bytes is a token already)", fn, k, sp,
                            sl[k] ? "one byte" : "empty");
        if (sl[k] > 0xFFFF) return llm__err(LLM_ERR_ARG, "%s: special token %d is longer than 65535 bytes", fn, k);
        for (size_t i = 0; i < sl[k];) {
            uint32_t cp;
            i += LLM__CAST(size_t, llm__utf8_get(LLM__CAST(const unsigned char *, sp), i, sl[k], &cp));
            if (cp == 0xFFFFFFFFu) return llm__err(LLM_ERR_ARG, "%s: special token %d is not valid UTF-8", fn, k);
        }
        for (int q = 0; q < k; q++)
            if (strcmp(c->special[q], sp) == 0) return llm__err(LLM_ERR_ARG, "%s: special token \"%s\" is given twice", fn, sp);
    }
    if (vocab_size < 256 + c->n_special || vocab_size > LLM__TOK_MAX_ID)
        return llm__err(LLM_ERR_ARG, "%s: vocab_size %d is not in [256 + %d special tokens, %d]", fn, vocab_size, c->n_special,
                        LLM__TOK_MAX_ID);
    size_t total = 0;
    for (int k = 0; k < n_texts; k++) {
        if (!texts[k] && lens[k]) return llm__err(LLM_ERR_ARG, "%s: text %d is NULL", fn, k);
        total += lens[k];
    }
    if (total == 0) return llm__err(LLM_ERR_ARG, "%s: the corpus is empty (nothing to learn from)", fn);
    return LLM_OK;
}

/* Step 1: the words of all texts with their counts, sorted by bytes, into *words. */
static llm_status llm__train_words(const char *const *texts, const size_t *lens, int n_texts,
                                   const llm_tokenizer_train_config *c, const size_t *sl, llm__word **words, size_t *nw) {
    int nth = c->pool ? llm_pool_size(c->pool) : 1;
    int cut_in_special = 0;    /* a special token holding the cut byte could straddle a cut */
    for (int k = 0; k < c->n_special; k++)
        if (memchr(c->special[k], c->pretokenize == LLM_PRETOK_LINES ? '\n' : ' ', sl[k])) cut_in_special = 1;
    llm__wtab *tab = LLM__CAST(llm__wtab *, llm__calloc(LLM__CAST(size_t, nth), sizeof *tab));
    size_t *cut = LLM__CAST(size_t *, llm__calloc(LLM__CAST(size_t, nth) + 1, sizeof *cut));
    llm_status s = LLM_OK;
    *words = NULL; *nw = 0;
    if (!tab || !cut) { s = llm__err(LLM_ERR_NOMEM, "llm_tokenizer_train: out of memory"); goto done; }
    for (int k = 0; k < n_texts; k++) {
        llm__count_job J;
        J.tab = tab; J.s = LLM__CAST(const unsigned char *, texts[k]); J.cut = cut;
        J.sp = c->special; J.sl = sl; J.ns = c->n_special; J.pretok = c->pretokenize;
        if (nth > 1 && lens[k] >= (1u << 16) && !cut_in_special) {   /* shares of a long text */
            llm__even_cuts(c->pretokenize, J.s, lens[k], nth, cut);
            llm_pool_run(c->pool, llm__count_task, &J);
        } else if (lens[k]) {
            llm__count_words(&tab[0], &J, 0, lens[k]);
        }
    }
    for (int t = 1; t < nth; t++)      /* add the other tables into the first */
        for (size_t i = 0; tab[t].mask && i <= tab[t].mask; i++)
            if (tab[t].slot[i].p) llm__wtab_add(&tab[0], tab[t].slot[i].p, tab[t].slot[i].n, tab[t].slot[i].count, tab[t].slot[i].h);
    for (int t = 0; t < nth; t++)
        if (tab[t].nomem) { s = llm__err(LLM_ERR_NOMEM, "llm_tokenizer_train: out of memory counting words"); goto done; }
    {   /* compact the table into a sorted list: the same order at any thread count */
        size_t n = 0;
        for (size_t i = 0; tab[0].mask && i <= tab[0].mask; i++)
            if (tab[0].slot[i].p) tab[0].slot[n++] = tab[0].slot[i];
        if (n) qsort(tab[0].slot, n, sizeof *tab[0].slot, llm__word_cmp);
        *words = tab[0].slot; *nw = n;
        tab[0].slot = NULL;
    }
done:
    for (int t = 0; tab && t < nth; t++) LLM_FREE(tab[t].slot);
    LLM_FREE(tab); LLM_FREE(cut);
    return s;
}

/* Steps 2 and 3: the merges. T gets the words; on return T->toff/tlen/tb hold the
 * 256 + *n_merges tokens and merge k is (ma[k], mb[k]). */
static llm_status llm__train_merges(llm__bt *T, const llm__word *words, size_t nw, int max_merges,
                                    int32_t *ma, int32_t *mb, int *n_merges) {
    const char *fn = "llm_tokenizer_train";
    size_t nsym = 0, nv = 256 + LLM__CAST(size_t, max_merges);
    *n_merges = 0;
    for (size_t i = 0; i < nw; i++) if (words[i].n >= 2) nsym += words[i].n;
    T->sym = LLM__CAST(int32_t *, LLM_MALLOC((nsym ? nsym : 1) * sizeof *T->sym));
    T->off = LLM__CAST(size_t *, LLM_MALLOC((nw ? nw : 1) * sizeof *T->off));
    T->len = LLM__CAST(size_t *, LLM_MALLOC((nw ? nw : 1) * sizeof *T->len));
    T->count = LLM__CAST(int64_t *, LLM_MALLOC((nw ? nw : 1) * sizeof *T->count));
    T->seen = LLM__CAST(int32_t *, LLM_MALLOC((nw ? nw : 1) * sizeof *T->seen));
    T->toff = LLM__CAST(size_t *, LLM_MALLOC(nv * sizeof *T->toff));
    T->tlen = LLM__CAST(size_t *, LLM_MALLOC(nv * sizeof *T->tlen));
    T->tb = LLM__CAST(unsigned char *, llm__grow(NULL, &T->tbcap, 4096, 1));
    if (!T->sym || !T->off || !T->len || !T->count || !T->seen || !T->toff || !T->tlen || !T->tb)
        return llm__err(LLM_ERR_NOMEM, "%s: out of memory", fn);
    for (int32_t id = 0; id < 256; id++) {                /* the 256 byte tokens */
        T->tb[id] = LLM__CAST(unsigned char, id);
        T->toff[id] = LLM__CAST(size_t, id); T->tlen[id] = 1;
    }
    T->tblen = 256;
    /* words of one byte hold no pair: leave them out */
    for (size_t i = 0; i < nw; i++) {
        if (words[i].n < 2) continue;
        if (words[i].n > 0x7FFFFFFF) return llm__err(LLM_ERR_ARG, "%s: a word of %lu bytes is too long", fn, LLM__CAST(unsigned long, words[i].n));
        size_t o = T->nw ? T->off[T->nw - 1] + T->len[T->nw - 1] : 0;
        T->off[T->nw] = o; T->len[T->nw] = words[i].n; T->count[T->nw] = words[i].count; T->seen[T->nw] = -1;
        for (size_t q = 0; q < words[i].n; q++) T->sym[o + q] = words[i].p[q];
        T->nw++;
    }
    /* step 2: every pair of every word; then the heap of those that occur twice or more */
    for (size_t w = 0; w < T->nw; w++) {
        const int32_t *s = T->sym + T->off[w];
        for (size_t q = 0; q + 1 < T->len[w]; q++) llm__pair_add(T, s[q], s[q + 1], T->count[w], LLM__CAST(int32_t, w), -2);
    }
    for (size_t i = 0; i < T->np; i++) if (T->pair[i].count >= 2) llm__hpush(T, &T->pair[i]);
    if (T->nomem) return llm__err(LLM_ERR_NOMEM, "%s: out of memory counting pairs", fn);

    /* step 3 */
    for (int k = 0; k < max_merges; k++) {
        int32_t pi = -1, z = 256 + k;
        while (T->nh > 0 && pi < 0) {                     /* the best pair, skipping stale entries */
            llm__hent e = llm__hpop(T);
            pi = llm__pair_get(T, e.a, e.b);
            if (pi < 0) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", fn);
            if (T->pair[pi].count != e.count) pi = -1;
        }
        if (pi < 0) break;                                /* no pair occurs twice */
        int32_t a = T->pair[pi].a, b = T->pair[pi].b;
        size_t la = T->tlen[a], lb = T->tlen[b];          /* z's bytes: a's, then b's */
        unsigned char *tb = LLM__CAST(unsigned char *, llm__grow(T->tb, &T->tbcap, T->tblen + la + lb, 1));
        if (!tb) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", fn);
        T->tb = tb;
        memcpy(T->tb + T->tblen, T->tb + T->toff[a], la);
        memcpy(T->tb + T->tblen + la, T->tb + T->toff[b], lb);
        T->toff[z] = T->tblen; T->tlen[z] = la + lb; T->tblen += la + lb;
        ma[k] = a; mb[k] = b;
        /* the words that hold (a, b); the list does not change during the merge (no new
         * pair is (a, b)), but T->pair may move, so keep the list's own pointer */
        int32_t *wl = T->pair[pi].w;
        size_t nwl = T->pair[pi].nw;
        T->nt = 0;
        for (size_t q = 0; q < nwl; q++) {
            int32_t w = wl[q];
            if (T->seen[w] == k) continue;
            T->seen[w] = k;
            llm__merge_word(T, w, a, b, z, k);
        }
        if (T->nomem) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", fn);
        LLM_ASSERT(T->pair[pi].count == 0);               /* every occurrence was replaced */
        LLM_FREE(T->pair[pi].w);
        T->pair[pi].w = NULL; T->pair[pi].nw = T->pair[pi].cw = 0;
        for (size_t q = 0; q < T->nt; q++) {
            const llm__pair *p = &T->pair[T->touched[q]];
            if (p->count >= 2) llm__hpush(T, p);
        }
        if (T->nomem) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", fn);
        *n_merges = k + 1;
    }
    return LLM_OK;
}

LLMDEF llm_status llm_tokenizer_train(llm_tokenizer **out, const char *const *texts, const size_t *lens, int n_texts,
                                      int vocab_size, const llm_tokenizer_train_config *cfg) {
    if (!out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_train: out is NULL");
    *out = NULL;
    llm_tokenizer_train_config c = cfg ? *cfg : llm_tokenizer_train_config_default();
    size_t sl[LLM__TOK_MAX_SPECIAL];
    llm_status s = llm__train_check(texts, lens, n_texts, vocab_size, &c, sl);
    if (s != LLM_OK) return s;
    int max_merges = vocab_size - 256 - c.n_special, nm = 0;
    llm__word *words = NULL;
    size_t nw = 0;
    llm__bt T;
    llm__vbuild vb;
    llm__mlist ml;
    memset(&T, 0, sizeof T); memset(&vb, 0, sizeof vb); memset(&ml, 0, sizeof ml);
    vb.what = "llm_tokenizer_train";
    int32_t *ma = LLM__CAST(int32_t *, LLM_MALLOC((LLM__CAST(size_t, max_merges) + 1) * 2 * sizeof(int32_t)));
    int32_t *mb = ma ? ma + max_merges + 1 : NULL;
    if (!ma) { s = llm__err(LLM_ERR_NOMEM, "llm_tokenizer_train: out of memory"); goto done; }
    s = llm__train_words(texts, lens, n_texts, &c, sl, &words, &nw);
    if (s == LLM_OK) s = llm__train_merges(&T, words, nw, max_merges, ma, mb, &nm);
    /* the tokenizer, built as the loaders build one: tokens, special tokens, merges */
    for (int id = 0; s == LLM_OK && id < 256 + nm; id++)
        s = llm__vb_add(&vb, LLM__CAST(const char *, T.tb + T.toff[id]), T.tlen[id], id, 0);
    for (int k = 0; s == LLM_OK && k < c.n_special; k++)
        s = llm__vb_add(&vb, c.special[k], sl[k], 256 + nm + k, 1);
    for (int k = 0; s == LLM_OK && k < nm; k++)
        s = llm__ml_add(&ml, LLM__CAST(const char *, T.tb + T.toff[ma[k]]), T.tlen[ma[k]],
                        LLM__CAST(const char *, T.tb + T.toff[mb[k]]), T.tlen[mb[k]], vb.what);
    if (s == LLM_OK) s = llm__tok_build(out, &vb, &ml, NULL);
    if (s == LLM_OK) (*out)->pretok = c.pretokenize;
done:
    llm__vbuild_free(&vb);
    LLM_FREE(ml.m);
    llm__bt_free(&T);
    LLM_FREE(words); LLM_FREE(ma);
    return s;
}
/* ---- saving --------------------------------------------------------------------------- */
/* Token bytes as a JSON string in GPT-2's byte alphabet (the inverse of llm__unalpha):
 * byte b is code point b2u[b], UTF-8 encoded; '"' and '\\' are escaped. */
static void llm__w_alpha(llm__wfile *w, const unsigned short *b2u, const char *p, size_t n, int quoted) {
    if (quoted) llm__wbytes(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned cp = b2u[LLM__CAST(unsigned char, p[i])];
        char u[3];
        if (cp == '"' || cp == '\\') { u[0] = '\\'; u[1] = LLM__CAST(char, cp); llm__wbytes(w, u, 2); }
        else if (cp < 0x80) { u[0] = LLM__CAST(char, cp); llm__wbytes(w, u, 1); }
        else { u[0] = LLM__CAST(char, 0xC0 | (cp >> 6)); u[1] = LLM__CAST(char, 0x80 | (cp & 0x3F)); llm__wbytes(w, u, 2); }
    }
    if (quoted) llm__wbytes(w, "\"", 1);
}
/* Raw UTF-8 text as a JSON string (special tokens' content). */
static void llm__w_json_raw(llm__wfile *w, const char *p, size_t n) {
    llm__wbytes(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = LLM__CAST(unsigned char, p[i]);
        char e[8];
        if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = LLM__CAST(char, c); llm__wbytes(w, e, 2); }
        else if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); llm__wbytes(w, e, 6); }
        else llm__wbytes(w, p + i, 1);
    }
    llm__wbytes(w, "\"", 1);
}
static void llm__wstr(llm__wfile *w, const char *s) { llm__wbytes(w, s, strlen(s)); }
static void llm__wint(llm__wfile *w, long v) { char b[24]; llm__wbytes(w, b, LLM__CAST(size_t, snprintf(b, sizeof b, "%ld", v))); }

/* {"token": id, ...} for every id in order (vocab.json, and model.vocab of tokenizer.json). */
static void llm__w_vocab(llm__wfile *w, const llm_tokenizer *t, const unsigned short *b2u, const char *sep) {
    int first = 1;
    llm__wstr(w, "{");
    for (int id = 0; id < t->V; id++) {
        if (t->tok_len[id] < 0) continue;
        if (!first) llm__wstr(w, ",");
        llm__wstr(w, sep);
        first = 0;
        llm__w_alpha(w, b2u, t->bytes + t->tok_off[id], LLM__CAST(size_t, t->tok_len[id]), 1);
        llm__wstr(w, ": ");
        llm__wint(w, id);
    }
    llm__wstr(w, "}");
}

static llm_status llm__save_file(const llm_tokenizer *t, const char *dir, const char *name, const unsigned short *b2u) {
    char *path = llm__path_join(dir, name);
    if (!path) return llm__err(LLM_ERR_NOMEM, "llm_tokenizer_save: out of memory");
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) { LLM_FREE(path); return s; }
    if (!strcmp(name, "vocab.json")) {
        llm__w_vocab(&w, t, b2u, "\n");
        llm__wstr(&w, "\n");
    } else if (!strcmp(name, "merges.txt")) {
        llm__wstr(&w, "#version: 0.2\n");
        for (int r = 0; r < t->n_merges; r++) {
            int a = t->merge_pair[2 * r], b = t->merge_pair[2 * r + 1];
            llm__w_alpha(&w, b2u, t->bytes + t->tok_off[a], LLM__CAST(size_t, t->tok_len[a]), 0);
            llm__wstr(&w, " ");
            llm__w_alpha(&w, b2u, t->bytes + t->tok_off[b], LLM__CAST(size_t, t->tok_len[b]), 0);
            llm__wstr(&w, "\n");
        }
    } else {   /* tokenizer.json, in the layout HuggingFace tokenizers writes */
        llm__wstr(&w, "{\n\"version\": \"1.0\",\n\"truncation\": null,\n\"padding\": null,\n\"added_tokens\": [");
        for (int k = 0; k < t->n_special; k++) {
            int id = t->special[k];
            llm__wstr(&w, k ? ",\n  {\"id\": " : "\n  {\"id\": ");
            llm__wint(&w, id);
            llm__wstr(&w, ", \"content\": ");
            llm__w_json_raw(&w, t->bytes + t->tok_off[id], LLM__CAST(size_t, t->tok_len[id]));
            llm__wstr(&w, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
        }
        llm__wstr(&w, "],\n\"normalizer\": null,\n\"pre_tokenizer\": ");
        if (t->pretok == LLM_PRETOK_LINES)
            llm__wstr(&w, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \"\\n\"}, "
                          "\"behavior\": \"MergedWithPrevious\", \"invert\": false}, {\"type\": \"ByteLevel\", "
                          "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}");
        else
            llm__wstr(&w, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}");
        llm__wstr(&w, ",\n\"post_processor\": null,\n\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                      "\"trim_offsets\": true, \"use_regex\": true},\n\"model\": {\"type\": \"BPE\", \"dropout\": null, "
                      "\"unk_token\": null, \"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
                      "\"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false,\n\"vocab\": ");
        llm__w_vocab(&w, t, b2u, "\n  ");
        llm__wstr(&w, ",\n\"merges\": [");
        for (int r = 0; r < t->n_merges; r++) {
            int a = t->merge_pair[2 * r], b = t->merge_pair[2 * r + 1];
            llm__wstr(&w, r ? ",\n  [" : "\n  [");
            llm__w_alpha(&w, b2u, t->bytes + t->tok_off[a], LLM__CAST(size_t, t->tok_len[a]), 1);
            llm__wstr(&w, ", ");
            llm__w_alpha(&w, b2u, t->bytes + t->tok_off[b], LLM__CAST(size_t, t->tok_len[b]), 1);
            llm__wstr(&w, "]");
        }
        llm__wstr(&w, "]}\n}\n");
    }
    s = llm__wclose(&w);
    LLM_FREE(path);
    return s;
}

LLMDEF llm_status llm_tokenizer_save(const llm_tokenizer *t, const char *dir) {
    static const char *const files[3] = {"vocab.json", "merges.txt", "tokenizer.json"};
    if (!t || !dir) return llm__err(LLM_ERR_ARG, "llm_tokenizer_save: NULL argument");
    unsigned short b2u[256];
    for (int b = 0, k = 0; b < 256; b++) b2u[b] = LLM__CAST(unsigned short, llm__byte_is_nice(b) ? b : 256 + k++);
    for (int f = 0; f < 3; f++) {
        llm_status s = llm__save_file(t, dir, files[f], b2u);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

//==== KERNELS ==========================================================================
/* Reference kernels: plain loops, one op each, forward beside backward, in the order
 * the model calls them. They are the executable definition of each op; the CPU
 * backend runs them (or a SIMD version tested against them) on slices in parallel.
 * Backward kernels ADD into every gradient output (+=), as autograd accumulates. */

/* Token + position embedding. out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] (wpe NULL: the
 * token embedding alone, as Llama, whose positions come from RoPE).
 * PyTorch: wte(tok) + wpe(arange(T)). */
static LLM__UNUSED void llm__encoder_fwd_ref(float *out, const int *tok, const float *wte, const float *wpe,
                                 int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + (LLM__CAST(size_t, b) * T + t) * C;
            const float *we = wte + LLM__CAST(size_t, tok[b * T + t]) * C;
            if (wpe) for (int c = 0; c < C; c++) o[c] = we[c] + wpe[LLM__CAST(size_t, t) * C + c];
            else memcpy(o, we, LLM__CAST(size_t, C) * sizeof(float));
        }
}
/* dwte[tok[b,t],:] += dout[b,t,:], dwpe[t,:] += dout[b,t,:], for channels [c0, c1) (a
 * token may repeat, so rows would collide in dwte; channel slices never do). */
static void llm__encoder_bwd_cols_ref(float *dwte, float *dwpe, const float *dout, const int *tok,
                                      int B, int T, int C, int c0, int c1) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + (LLM__CAST(size_t, b) * T + t) * C;
            float *dwe = dwte + LLM__CAST(size_t, tok[b * T + t]) * C;
            for (int c = c0; c < c1; c++) dwe[c] += d[c];
            if (dwpe) for (int c = c0; c < c1; c++) dwpe[LLM__CAST(size_t, t) * C + c] += d[c];
        }
}
static LLM__UNUSED void llm__encoder_bwd_ref(float *dwte, float *dwpe, const float *dout, const int *tok,
                                             int B, int T, int C) {
    llm__encoder_bwd_cols_ref(dwte, dwpe, dout, tok, B, T, C, 0, C);
}

/* LayerNorm over the last dimension, eps 1e-5 (GPT-2), biased variance:
 *   mean = Σx/C, var = Σ(x-mean)²/C, rstd = 1/sqrt(var+eps),
 *   out = (x - mean) * rstd * w + b.   PyTorch: F.layer_norm(x, (C,), w, b, 1e-5). */
#define LLM__LN_EPS 1e-5f
static LLM__UNUSED void llm__layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        float m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        float s = 1.0f / sqrtf(v + LLM__LN_EPS);
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[n] = m; rstd[n] = s;
    }
}
/* With xhat = (x-mean)*rstd and g = dout*w (the gradient at xhat):
 *   dx += rstd * (g - mean(g) - xhat * mean(g*xhat))     (per row)
 *   db += dout, dw += dout*xhat                            (summed over rows, per channel)
 * (the two means remove the parts of g that the normalisation cancels). In two parts, so
 * that threads can take rows of dx and channels [c0, c1) of dw, db (rows would collide). */
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
static LLM__UNUSED void llm__layernorm_bwd_ref(float *dinp, float *dw, float *db, const float *dout,
                                               const float *inp, const float *w, const float *mean,
                                               const float *rstd, int N, int C) {
    llm__layernorm_bwd_dx_ref(dinp, dout, inp, w, mean, rstd, N, C);
    llm__layernorm_bwd_dwdb_ref(dw, db, dout, inp, mean, rstd, N, C, 0, C);
}

/* RMSNorm (Llama): r = 1/sqrt(mean(x²) + eps), out = x · r · w.  rstd (N) saved.
 * PyTorch: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w. */
static LLM__UNUSED void llm__rmsnorm_fwd_ref(float *out, float *rstd, const float *inp, const float *w,
                                             int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C, ss = 0;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) o[c] = w[c] * (r * x[c]);
        rstd[n] = r;
    }
}
/* With g = dout·w:  dx += r · (g - x · r² · mean(g·x)) per row, dw += Σ_rows dout · x · r
 * per channel (in two parts, as layernorm's). */
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
static LLM__UNUSED void llm__rmsnorm_bwd_ref(float *dinp, float *dw, const float *dout, const float *inp,
                                             const float *w, const float *rstd, int N, int C) {
    llm__rmsnorm_bwd_dx_ref(dinp, dout, inp, w, rstd, N, C);
    llm__rmsnorm_bwd_dw_ref(dw, dout, inp, rstd, N, C, 0, C);
}

/* Rotary position embedding (RoPE), in place on the q and k parts of qkv rows laid out
 * as for attention. Within each head, the pair (x[i], x[i+1]) for even i is rotated by
 * the angle pos · theta^(-i/HS):  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).
 * This is llama2.c's (and Meta's) interleaved convention; HF's rotate_half layout is
 * the same after a permutation of the q/k weight rows. pos (B,T) or NULL for pos = t.
 * The angle is computed in float exactly as llama2.c does, so logits match it. */
static float llm__rope_freq(int i, int HS, float theta) {
    return 1.0f / powf(theta, LLM__CAST(float, i) / LLM__CAST(float, HS));
}
static void llm__rope_freqs(float *freq, int HS, float theta) {   /* freq (HS/2) */
    for (int i = 0; i < HS; i += 2) freq[i / 2] = llm__rope_freq(i, HS, theta);
}
/* One row x (the q and k parts of a qkv row) at position p; freq (HS/2) from
 * llm__rope_freqs, or NULL to compute each as it is needed. */
static void llm__rope_row_ref(float *x, int p, int NH, int NKV, int HS, float theta, const float *freq, float sign) {
    for (int i = 0; i < HS; i += 2) {
        float f = freq ? freq[i / 2] : llm__rope_freq(i, HS, theta);
        float val = LLM__CAST(float, p) * f, c = cosf(val), s = sign * sinf(val);
        for (int h = 0; h < NH + NKV; h++) {   /* the NH query heads, then the NKV key heads */
            float *v = x + LLM__CAST(size_t, h) * HS + i, x0 = v[0], x1 = v[1];
            v[0] = x0 * c - x1 * s;
            v[1] = x0 * s + x1 * c;
        }
    }
}
static void llm__rope_rotate(float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS,
                             float theta, float sign) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS;
    for (int bt = 0; bt < B * T; bt++)
        llm__rope_row_ref(qkv + LLM__CAST(size_t, bt) * row, pos ? pos[bt] : bt % T, NH, NKV, HS, theta, NULL, sign);
}
static LLM__UNUSED void llm__rope_fwd_ref(float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__rope_rotate(qkv, pos, B, T, NH, NKV, HS, theta, 1.0f);
}
/* A rotation is orthogonal: its backward is the rotation by -angle, applied to the
 * gradient in place (this op transforms dqkv rather than accumulating into it). */
static LLM__UNUSED void llm__rope_bwd_ref(float *dqkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__rope_rotate(dqkv, pos, B, T, NH, NKV, HS, theta, -1.0f);
}

/* SwiGLU (Llama's MLP nonlinearity): inp rows (2H) hold [gate | up], the outputs of
 * w1 and w3 fused into one matmul; out (H) = silu(gate) · up, silu(g) = g·σ(g).
 *   d up = dout · silu(g),  d gate = dout · up · σ(g) (1 + g (1 - σ(g))).
 * PyTorch: F.silu(x @ w1.T) * (x @ w3.T). */
static LLM__UNUSED void llm__swiglu_fwd_ref(float *out, const float *inp, int N, int H) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H;
        float *o = out + LLM__CAST(size_t, n) * H;
        for (int i = 0; i < H; i++) o[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
    }
}
static LLM__UNUSED void llm__swiglu_bwd_ref(float *dinp, const float *inp, const float *dout, int N, int H) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H, *d = dout + LLM__CAST(size_t, n) * H;
        float *dg = dinp + LLM__CAST(size_t, n) * 2 * H, *du = dg + H;
        for (int i = 0; i < H; i++) {
            float sg = 1.0f / (1.0f + expf(-g[i]));
            du[i] += d[i] * g[i] * sg;
            dg[i] += d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    }
}

/* Fully connected layer: out (N,OC) = inp (N,C) @ w(OC,C)^T + bias(OC).
 * PyTorch: F.linear(inp, w, bias). */
static LLM__UNUSED void llm__matmul_fwd_ref(float *out, const float *inp, const float *w, const float *bias,
                                int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            const float *x = inp + LLM__CAST(size_t, n) * C, *wr = w + LLM__CAST(size_t, o) * C;
            float acc = bias ? bias[o] : 0.0f;
            for (int c = 0; c < C; c++) acc += x[c] * wr[c];
            out[LLM__CAST(size_t, n) * OC + o] = acc;
        }
}
/* dinp += dout @ w, dw += dout^T @ inp, dbias += Σ_n dout. */
static LLM__UNUSED void llm__matmul_bwd_ref(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + LLM__CAST(size_t, n) * OC, *x = inp + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        for (int o = 0; o < OC; o++) {
            const float *wr = w + LLM__CAST(size_t, o) * C;
            float *dwr = dw + LLM__CAST(size_t, o) * C;
            for (int c = 0; c < C; c++) { dx[c] += d[o] * wr[c]; dwr[c] += d[o] * x[c]; }
            if (dbias) dbias[o] += d[o];
        }
    }
}

/* Causal self-attention for one (batch b, query head h), with grouped-query
 * attention: qkv rows hold [q (NH*HS) | k (NKV*HS) | v (NKV*HS)] and query head h
 * reads key/value head h / (NH/NKV) (GPT-2: NKV = NH). For query t over keys t2 <= t:
 *   s(t2) = q_t·k_t2 / sqrt(HS),  p = softmax(s) (max subtracted), out_t = Σ p(t2) v_t2,
 * and lse_t = log Σ exp(s) is saved so that backward can recompute p without ever
 * storing the (T,T) matrix. PyTorch: F.scaled_dot_product_attention(q,k,v,is_causal=True). */
static void llm__attention_fwd_head(float *out, float *lse, const float *qkv, int b, int h,
                                    int T, int NH, int NKV, int HS) {
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const float *base = qkv + LLM__CAST(size_t, b) * T * row;
    for (int t = 0; t < T; t++) {
        const float *q = base + t * row + LLM__CAST(size_t, h) * HS;
        float *o = out + (LLM__CAST(size_t, b) * T + t) * C + LLM__CAST(size_t, h) * HS;
        float mx = -FLT_MAX, sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {            /* pass 1: the max, for stability */
            const float *k = base + t2 * row + koff;
            float s = 0;
            for (int i = 0; i < HS; i++) s += q[i] * k[i];
            s *= scale;
            if (s > mx) mx = s;
        }
        for (int i = 0; i < HS; i++) o[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {            /* pass 2: weights and values */
            const float *k = base + t2 * row + koff, *v = base + t2 * row + voff;
            float s = 0;
            for (int i = 0; i < HS; i++) s += q[i] * k[i];
            float e = expf(s * scale - mx);
            sum += e;
            for (int i = 0; i < HS; i++) o[i] += e * v[i];
        }
        for (int i = 0; i < HS; i++) o[i] /= sum;
        lse[(LLM__CAST(size_t, b) * NH + h) * T + t] = mx + logf(sum);
    }
}
/* Backward for one (b, h), recomputing p = exp(s - lse). With D_t = dout_t·out_t:
 *   dv_t2 += p dout_t,  dp = dout_t·v_t2,  ds = p (dp - D_t)   (softmax backward),
 *   dq_t += ds k_t2 / sqrt(HS),  dk_t2 += ds q_t / sqrt(HS).
 * Query heads that share a key/value head all add into its dk, dv. */
static void llm__attention_bwd_head(float *dqkv, const float *dout, const float *qkv,
                                    const float *out, const float *lse, int b, int h,
                                    int T, int NH, int NKV, int HS) {
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    size_t off = LLM__CAST(size_t, b) * T * row;
    const float *base = qkv + off;
    float *dbase = dqkv + off;
    for (int t = 0; t < T; t++) {
        size_t ot = (LLM__CAST(size_t, b) * T + t) * C + LLM__CAST(size_t, h) * HS;
        const float *q = base + t * row + LLM__CAST(size_t, h) * HS, *d = dout + ot, *o = out + ot;
        float *dq = dbase + t * row + LLM__CAST(size_t, h) * HS;
        float L = lse[(LLM__CAST(size_t, b) * NH + h) * T + t], D = 0;
        for (int i = 0; i < HS; i++) D += d[i] * o[i];
        for (int t2 = 0; t2 <= t; t2++) {
            const float *k = base + t2 * row + koff, *v = base + t2 * row + voff;
            float *dk = dbase + t2 * row + koff, *dv = dbase + t2 * row + voff;
            float s = 0, dp = 0;
            for (int i = 0; i < HS; i++) { s += q[i] * k[i]; dp += d[i] * v[i]; }
            float p = expf(s * scale - L), ds = p * (dp - D) * scale;
            for (int i = 0; i < HS; i++) {
                dv[i] += p * d[i];
                dq[i] += ds * k[i];
                dk[i] += ds * q[i];
            }
        }
    }
}
static LLM__UNUSED void llm__attention_fwd_ref(float *out, float *lse, const float *qkv, int B, int T,
                                               int NH, int NKV, int HS) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) llm__attention_fwd_head(out, lse, qkv, b, h, T, NH, NKV, HS);
}
static LLM__UNUSED void llm__attention_bwd_ref(float *dqkv, const float *dout, const float *qkv, const float *out,
                                               const float *lse, int B, int T, int NH, int NKV, int HS) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) llm__attention_bwd_head(dqkv, dout, qkv, out, lse, b, h, T, NH, NKV, HS);
}

/* Attention against a KV cache, for generation. Row i (of N) is the token at position
 * pos[i] of sequence seq[i]. Its key and value (from qkv, laid out as above) are first
 * stored in kcache/vcache (S, maxT, NKV*HS) at [seq[i], pos[i]]; then its query attends
 * over positions 0..pos[i] of its own sequence. Storing every row before attending lets
 * one call prefill a whole prompt (row t sees the rows before it) or advance many
 * sequences by one token each. out (N, NH*HS). */
static void llm__kv_store(float *kcache, float *vcache, const float *qkv, const int *seq, const int *pos,
                          int i, int NH, int NKV, int HS, int maxT) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    size_t dst = (LLM__CAST(size_t, seq[i]) * maxT + LLM__CAST(size_t, pos[i])) * kvw;
    const float *src = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, NH) * HS;
    memcpy(kcache + dst, src, kvw * sizeof(float));
    memcpy(vcache + dst, src + kvw, kvw * sizeof(float));
}
static void llm__attention_kv_row(float *out, const float *qkv, const float *kcache, const float *vcache,
                                  const int *seq, const int *pos, int i, int h, int NH, int NKV, int HS, int maxT) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    const float *q = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, h) * HS;
    size_t base = LLM__CAST(size_t, seq[i]) * maxT * kvw + LLM__CAST(size_t, h / (NH / NKV)) * HS;
    float *o = out + LLM__CAST(size_t, i) * NH * HS + LLM__CAST(size_t, h) * HS;
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS)), mx = -FLT_MAX, sum = 0;
    for (int t2 = 0; t2 <= pos[i]; t2++) {
        const float *k = kcache + base + LLM__CAST(size_t, t2) * kvw;
        float s = 0;
        for (int j = 0; j < HS; j++) s += q[j] * k[j];
        if (s * scale > mx) mx = s * scale;
    }
    for (int j = 0; j < HS; j++) o[j] = 0;
    for (int t2 = 0; t2 <= pos[i]; t2++) {
        const float *k = kcache + base + LLM__CAST(size_t, t2) * kvw, *v = vcache + base + LLM__CAST(size_t, t2) * kvw;
        float s = 0;
        for (int j = 0; j < HS; j++) s += q[j] * k[j];
        float e = expf(s * scale - mx);
        sum += e;
        for (int j = 0; j < HS; j++) o[j] += e * v[j];
    }
    for (int j = 0; j < HS; j++) o[j] /= sum;
}
static LLM__UNUSED void llm__attention_kv_ref(float *out, const float *qkv, float *kcache, float *vcache,
                                              const int *seq, const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    for (int i = 0; i < N; i++) llm__kv_store(kcache, vcache, qkv, seq, pos, i, NH, NKV, HS, maxT);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) llm__attention_kv_row(out, qkv, kcache, vcache, seq, pos, i, h, NH, NKV, HS, maxT);
}

/* GELU, tanh approximation (GPT-2; PyTorch F.gelu(x, approximate="tanh")):
 *   y = x/2 · (1 + tanh(u)),  u = sqrt(2/π) (x + 0.044715 x³)
 *   dy/dx = (1 + tanh u)/2 + x/2 · (1 - tanh² u) · sqrt(2/π) (1 + 3·0.044715 x²) */
#define LLM__GELU_K 0.7978845608028654f /* sqrt(2/pi) */
static LLM__UNUSED void llm__gelu_fwd_ref(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(LLM__GELU_K * (x + 0.044715f * x * x * x)));
    }
}
static LLM__UNUSED void llm__gelu_bwd_ref(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], th = tanhf(LLM__GELU_K * (x + 0.044715f * x * x * x));
        float du = LLM__GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
    }
}

/* Residual connection: out = a + b; both inputs receive the gradient unchanged. */
static LLM__UNUSED void llm__residual_fwd_ref(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
static LLM__UNUSED void llm__residual_bwd_ref(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) { da[i] += dout[i]; db[i] += dout[i]; }
}

/* Dropout with a counter-based mask (the idea of Philox in cuRAND and JAX, with
 * splitmix64's output function h as the mixer): element i of the stream `key` is
 *   u_i = h(key + (i+1)·φ)            (φ = 0x9E3779B97F4A7C15: splitmix64's stream)
 *   kept when (u_i >> 40) >= floor(p·2^24), then scaled by 1/(1-p):
 *   out[i] = kept ? inp[i] · (1/(1-p)) : 0.
 * The mask is a pure function of (key, i): it takes no memory and no state, any thread
 * can do any slice (i0: the index of inp[0] in the stream), backward regenerates it,
 * and a resumed run draws the same masks. Backward is the same op on the gradient:
 * dinp = dout · kept / (1-p) (overwritten, not accumulated: the mask is a function, not
 * a parameter). out may be inp. PyTorch: x * mask with the mask of tests/ref_lora.py. */
#define LLM__PHI64 0x9E3779B97F4A7C15ull
static uint64_t llm__mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t llm__dropout_threshold(float p) { return LLM__CAST(uint32_t, p * 16777216.0f); }
static LLM__UNUSED void llm__dropout_ref(float *out, const float *inp, size_t n, float p, uint64_t key, size_t i0) {
    uint32_t thr = llm__dropout_threshold(p);
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = llm__mix64(key + LLM__CAST(uint64_t, i0 + i + 1) * LLM__PHI64);
        out[i] = LLM__CAST(uint32_t, u >> 40) >= thr ? inp[i] * scale : 0.0f;
    }
}

/* Fused softmax + cross-entropy over V logits per row, without materialising the
 * probabilities: lse = m + log Σ exp(x - m) (m = max x), loss = lse - x[target].
 * Rows whose target is negative (PyTorch's ignore_index) get loss 0.
 * PyTorch: F.cross_entropy(logits, targets, reduction="none"). */
static LLM__UNUSED void llm__crossentropy_fwd_ref(float *losses, float *lse, const float *logits,
                                      const int *targets, int N, int V) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + LLM__CAST(size_t, n) * V;
        float m = -FLT_MAX, s = 0;
        for (int i = 0; i < V; i++) if (x[i] > m) m = x[i];
        for (int i = 0; i < V; i++) s += expf(x[i] - m);
        lse[n] = m + logf(s);
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - x[targets[n]];
    }
}
/* dlogits = (softmax(x) - onehot(target)) · dloss, written over the logits. */
static LLM__UNUSED void llm__crossentropy_bwd_ref(float *logits, const float *lse, const int *targets,
                                      float dloss, int N, int V) {
    for (int n = 0; n < N; n++) {
        float *x = logits + LLM__CAST(size_t, n) * V;
        int y = targets[n];
        for (int i = 0; i < V; i++)
            x[i] = y < 0 ? 0.0f : (expf(x[i] - lse[n]) - (i == y ? 1.0f : 0.0f)) * dloss;
    }
}

/* Σ x², accumulated in double: the squared global gradient norm. */
static LLM__UNUSED double llm__sumsq_ref(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += LLM__CAST(double, x[i]) * x[i];
    return s;
}

/* AdamW (Loshchilov & Hutter), in torch.optim.AdamW's order: decay, then Adam.
 *   g = grad·grad_scale;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
 *   p -= lr·wd·p;  p -= lr · (m/(1-β1^t)) / (sqrt(v/(1-β2^t)) + eps) */
static LLM__UNUSED void llm__adamw_ref(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                           float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, LLM__CAST(float, t)), bc2 = 1.0f - powf(beta2, LLM__CAST(float, t));
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        p[i] -= lr * wd * p[i];
        p[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
    }
}
/* g++ 12 reports the _mm*_undefined_* placeholders inside its own intrinsics headers
 * as uninitialised once they are inlined into our kernels (a known false positive). */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
//==== SIMD =============================================================================
/* CPU feature detection, the run-time SIMD level, and SGEMM.
 *
 * One binary runs on any x86-64: nothing here is compiled with -march. Each SIMD
 * function carries its own __attribute__((target(...))) and is called only after
 * CPUID (and XGETBV: the OS must save the YMM/ZMM registers) said the CPU has it.
 * On ARM64, NEON is part of the base ISA and is always on; the BF16 extension is asked
 * of the OS (getauxval on Linux, sysctl on macOS).
 *
 * The level is one int, detected lazily on first use. Two threads racing on the
 * first use both compute the same value, so the race is harmless in practice;
 * llm_simd_force() should be called before other threads compute. */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LLM__X86 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>           /* __cpuidex, _xgetbv */
#else
#include <cpuid.h>
#endif
#include <immintrin.h>
#define LLM__T_AVX2 __attribute__((target("avx2,fma")))
#define LLM__T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif
#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define LLM__NEON 1
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>      /* getauxval: the CPU's features beyond the base ISA */
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

/* ---- feature detection ------------------------------------------------------------ */
enum {
    LLM__CPU_AVX2 = 1, LLM__CPU_FMA = 2, LLM__CPU_AVX512F = 4, LLM__CPU_AVX512BW = 8,
    LLM__CPU_AVX512VL = 16, LLM__CPU_AVX512DQ = 32, LLM__CPU_AVX512BF16 = 64,
    LLM__CPU_AVX512VNNI = 128, LLM__CPU_NEON = 256, LLM__CPU_BF16 = 512   /* ARMv8.6 BF16 */
};
static int llm__cpu_flags = -1;     /* LLM__CPU_* bits; -1 until detected */
static int llm__simd_level = 0;     /* active llm_simd; 0 until first use */

#ifdef LLM__X86
/* CPUID leaf/subleaf into r = {eax, ebx, ecx, edx}, in each compiler's spelling. */
static void llm__cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
    int v[4];
    __cpuidex(v, LLM__CAST(int, leaf), LLM__CAST(int, sub));
    for (int i = 0; i < 4; i++) r[i] = LLM__CAST(unsigned, v[i]);
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}
/* XCR0, the register state the OS saves: bit 1 SSE, bit 2 AVX (YMM upper halves),
 * bits 5-7 opmask/ZMM. Only valid when CPUID says OSXSAVE. */
static unsigned llm__xgetbv0(void) {
    unsigned lo;
#if defined(_MSC_VER) && !defined(__clang__)
    lo = LLM__CAST(unsigned, _xgetbv(0));
#else
    unsigned hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
#endif
#if defined(__APPLE__)
    {   /* macOS turns the AVX-512 state on at a thread's first AVX-512 instruction, so
         * XCR0 lacks it until then; the kernel says in advance whether it will */
        int on = 0;
        size_t sz = sizeof on;
        if (sysctlbyname("hw.optional.avx512f", &on, &sz, NULL, 0) == 0 && on) lo |= 0xE0;
    }
#endif
    return lo;
}
#endif

static int llm__cpu_detect(void) {
    int f = 0;
#ifdef LLM__X86
    unsigned r[4], a, b, c, xlo;
    llm__cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    if (max_leaf < 1) return 0;
    llm__cpuid(1, 0, r);
    c = r[2];
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx) return 0;
    xlo = llm__xgetbv0();
    if ((xlo & 0x6) != 0x6) return 0;
    if (max_leaf < 7) return 0;
    llm__cpuid(7, 0, r);
    b = r[1]; c = r[2];
    if ((b >> 5) & 1) f |= LLM__CPU_AVX2;
    if (fma) f |= LLM__CPU_FMA;
    if ((xlo & 0xE0) == 0xE0) {
        if ((b >> 16) & 1) f |= LLM__CPU_AVX512F;
        if ((b >> 17) & 1) f |= LLM__CPU_AVX512DQ;
        if ((b >> 30) & 1) f |= LLM__CPU_AVX512BW;
        if ((b >> 31) & 1) f |= LLM__CPU_AVX512VL;
        if ((c >> 11) & 1) f |= LLM__CPU_AVX512VNNI;
        llm__cpuid(7, 1, r);
        a = r[0];
        if ((a >> 5) & 1) f |= LLM__CPU_AVX512BF16;
    }
#elif defined(LLM__NEON)
    f |= LLM__CPU_NEON;
#if defined(__linux__)
    if (getauxval(AT_HWCAP2) & (1ul << 14)) f |= LLM__CPU_BF16;   /* HWCAP2_BF16 */
#elif defined(__APPLE__)
    int v = 0;
    size_t len = sizeof v;
    if (sysctlbyname("hw.optional.arm.FEAT_BF16", &v, &len, NULL, 0) == 0 && v) f |= LLM__CPU_BF16;
#endif
#endif
    return f;
}
static int llm__cpu_get(void) {   /* atomic: models in several threads detect at once */
    int f = LLM__ATOMIC_LOAD(&llm__cpu_flags);
    if (f < 0) LLM__ATOMIC_STORE(&llm__cpu_flags, f = llm__cpu_detect());
    return f;
}

/* Space-separated names of the features found, for logs and benchmarks. */
static LLM__UNUSED const char *llm__cpu_features(void) {
    static const char *names[] = { "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                   "avx512_bf16", "avx512_vnni", "neon", "bf16" };
    static char buf[128];
    int f = llm__cpu_get();
    buf[0] = 0;
    for (int i = 0; i < 10; i++)
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
    int l = LLM__ATOMIC_LOAD(&llm__simd_level);
    if (l == 0) LLM__ATOMIC_STORE(&llm__simd_level, l = LLM__CAST(int, llm__simd_best()));
    return LLM__CAST(llm_simd, l);
}

LLMDEF llm_status llm_simd_force(llm_simd level) {
    if (level == LLM_SIMD_AUTO) { LLM__ATOMIC_STORE(&llm__simd_level, LLM__CAST(int, llm__simd_best())); return LLM_OK; }
    if (level < LLM_SIMD_SCALAR || level > LLM_SIMD_NEON)
        return llm__err(LLM_ERR_ARG, "llm_simd_force: unknown level %d", LLM__CAST(int, level));
    if (!llm_simd_supported(level))
        return llm__err(LLM_ERR_UNSUPPORTED, "llm_simd_force: this CPU has no %s (it has: %s)",
                        llm_simd_name(level), llm__cpu_features());
    LLM__ATOMIC_STORE(&llm__simd_level, LLM__CAST(int, level));
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

#define LLM__REP8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define LLM__REP4(M) M(0) M(1) M(2) M(3)
#ifdef LLM__NEON
/* NEON micro-kernel, 8 x 12, for 32 128-bit registers: 24 accumulators (8 rows x 3
 * vectors of 4), 3 for B, 2 holding the 8 values of A; each k, 5 loads feed 24 FMAs by
 * lane (fmla v.4s, v.4s, v.s[l]), which needs no broadcast. Written once for fp32 and
 * for bf16 pairs (SIMD's bf16 GEMM): the element and vector types, the load and the
 * multiply-add by lane are the parameters. */
#define LLM__NEON_MR 8
#define LLM__NEON_NR 12
#define LLM__NEON_GEMM_KERN(name, target, elem, vec, load, mac_lane)                                \
target static void name(int kc, const elem *A, const elem *B, float *C, size_t ldc, float beta) {   \
    /* named accumulators, not an array: gcc 12 kept an array in registers but also                 \
     * stored all of it back to the stack on every k */                                             \
    LLM__REP8(LLM__NEON_ACC)                                                                        \
    for (int k = 0; k < kc; k++) {                                                                  \
        const vec b0 = load(B), b1 = load(B + 4), b2 = load(B + 8), a0 = load(A), a1 = load(A + 4); \
        LLM__NEON_ROW(mac_lane, 0, a0, 0) LLM__NEON_ROW(mac_lane, 1, a0, 1)                         \
        LLM__NEON_ROW(mac_lane, 2, a0, 2) LLM__NEON_ROW(mac_lane, 3, a0, 3)                         \
        LLM__NEON_ROW(mac_lane, 4, a1, 0) LLM__NEON_ROW(mac_lane, 5, a1, 1)                         \
        LLM__NEON_ROW(mac_lane, 6, a1, 2) LLM__NEON_ROW(mac_lane, 7, a1, 3)                         \
        A += LLM__NEON_MR; B += LLM__NEON_NR;                                                       \
    }                                                                                               \
    LLM__REP8(LLM__NEON_STROW)                                                                      \
}
#define LLM__NEON_ACC(i) float32x4_t c##i##0 = vdupq_n_f32(0.0f), c##i##1 = c##i##0, c##i##2 = c##i##0;
#define LLM__NEON_ROW(mac, i, a, l) c##i##0 = mac(c##i##0, b0, a, l); \
    c##i##1 = mac(c##i##1, b1, a, l); c##i##2 = mac(c##i##2, b2, a, l);
#define LLM__NEON_ST(i, j) { float *p = C + i * ldc + 4 * j; \
    vst1q_f32(p, beta == 0.0f ? c##i##j : vfmaq_n_f32(c##i##j, vld1q_f32(p), beta)); }
#define LLM__NEON_STROW(i) LLM__NEON_ST(i, 0) LLM__NEON_ST(i, 1) LLM__NEON_ST(i, 2)
LLM__NEON_GEMM_KERN(llm__gemm_kern_neon, , float, float32x4_t, vld1q_f32, vfmaq_laneq_f32)
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
        g.mr = LLM__NEON_MR; g.nr = LLM__NEON_NR; g.kc = 256; g.mc = 128; g.nc = 1020;
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

/* ---- the vector layer ------------------------------------------------------------------
 * Every SIMD kernel that is not a GEMM micro-kernel (the GEMV below and all of SIMD
 * KERNELS) is written once, on a vector of LLM__VW floats and the handful of operations
 * listed here, and compiled once per instruction set: AVX2 (8 lanes), AVX-512 (16) and
 * NEON (4). A kernel body is a macro, expanded with LLM__V set to avx2, avx512 or neon;
 * each generic name then means that ISA's version (llm__vadd is llm__vadd_avx2, which is
 * _mm256_add_ps), and LLM__ISA(llm__gelu_fwd) names the function llm__gelu_fwd_avx2.
 *   llm__vf               LLM__VW floats            llm__vd: doubles (half as many)
 *   llm__vm               a tail mask: the first n lanes, llm__vmask(n) (n clamped to 0..VW)
 *   llm__vb               the lanes where a comparison (llm__vle) held, for llm__vsel
 *   vzero vset1(x) vload(p) vloada(p) (aligned) vstore(p, v) vstorea(p, v)
 *   vload_m(p, m)         the masked lanes, 0 elsewhere; never reads past them
 *   vload_mor(p, m, f)    the masked lanes, f's lanes elsewhere
 *   vstore_m(p, m, v)     writes the masked lanes only
 *   vadd vsub vmul vdiv vmax vmin vsqrt, vfma(a, b, c) = a·b + c, vfnma(a, b, c) = c - a·b
 *   vle(a, b) vsel(k, a, b) = k ? a : b   vround (to nearest even)   viota = 0, 1, ...
 *   vswap_pairs           lanes (0 1)(2 3)... exchanged
 *   vhsum vhmax           the lanes summed (maxed) in a fixed order
 *   vhsum4(dst, a, b, c, d, s)   dst[0..3] = (Σa, Σb, Σc, Σd)·s
 *   vldexp(p, n)          p·2^n for integral n in [-150, 128] (the last step of vexp)
 *   vkeep(v)              an empty asm: v is a value here (not fused, not re-loaded)
 *   vprefetch(p, bytes)   fetch the line `bytes` past p into L1
 *   LLM__VALL             the mask of every lane: a constant, with which a masked load or
 *                         store compiles to the plain one
 *   vd_zero vd_load(p) (VW/2 floats, widened) vd_fma vd_add vd_hsum
 * NEON has no masked loads: a tail goes through 4 floats on the stack. */
#define LLM__CAT3(a, b, c) a##b##c
#define LLM__XCAT3(a, b, c) LLM__CAT3(a, b, c)
#define LLM__ISA(name) LLM__XCAT3(name, _, LLM__V)
#define LLM__VT LLM__ISA(LLM__T)     /* the target attribute of the current ISA */
#define LLM__VW LLM__ISA(LLM__W)     /* its lanes */
#define llm__vf LLM__ISA(llm__vf)
#define llm__vm LLM__ISA(llm__vm)
#define llm__vb LLM__ISA(llm__vb)
#define llm__vd LLM__ISA(llm__vd)
#define llm__vzero LLM__ISA(llm__vzero)
#define llm__vset1 LLM__ISA(llm__vset1)
#define llm__vload LLM__ISA(llm__vload)
#define llm__vloada LLM__ISA(llm__vloada)
#define llm__vstore LLM__ISA(llm__vstore)
#define llm__vstorea LLM__ISA(llm__vstorea)
#define llm__vmask LLM__ISA(llm__vmask)
#define llm__vload_m LLM__ISA(llm__vload_m)
#define llm__vload_mor LLM__ISA(llm__vload_mor)
#define llm__vstore_m LLM__ISA(llm__vstore_m)
#define llm__vadd LLM__ISA(llm__vadd)
#define llm__vsub LLM__ISA(llm__vsub)
#define llm__vmul LLM__ISA(llm__vmul)
#define llm__vdiv LLM__ISA(llm__vdiv)
#define llm__vmax LLM__ISA(llm__vmax)
#define llm__vmin LLM__ISA(llm__vmin)
#define llm__vsqrt LLM__ISA(llm__vsqrt)
#define llm__vfma LLM__ISA(llm__vfma)
#define llm__vfnma LLM__ISA(llm__vfnma)
#define llm__vle LLM__ISA(llm__vle)
#define llm__vsel LLM__ISA(llm__vsel)
#define llm__vround LLM__ISA(llm__vround)
#define llm__viota LLM__ISA(llm__viota)
#define llm__vswap_pairs LLM__ISA(llm__vswap_pairs)
#define llm__vhsum LLM__ISA(llm__vhsum)
#define llm__vhmax LLM__ISA(llm__vhmax)
#define llm__vhsum4 LLM__ISA(llm__vhsum4)
#define llm__vldexp LLM__ISA(llm__vldexp)
#define llm__vkeep LLM__ISA(llm__vkeep)
#define llm__vprefetch LLM__ISA(llm__vprefetch)
#define llm__vd_zero LLM__ISA(llm__vd_zero)
#define llm__vd_load LLM__ISA(llm__vd_load)
#define llm__vd_fma LLM__ISA(llm__vd_fma)
#define llm__vd_add LLM__ISA(llm__vd_add)
#define llm__vd_hsum LLM__ISA(llm__vd_hsum)
#define LLM__VALL LLM__ISA(LLM__VALL)

/* for (i = 0; i < n; i += VW) { ... } with k the mask of the lanes below n. The body is
 * expanded twice: over the whole vectors with k = LLM__VALL, where each masked load and
 * store compiles to the plain one (no test of the mask per access), then once for the
 * ragged tail.
 * LLM__VFOR4 does the same for blocks of 4 vectors, [i, i + 4VW) from i0, masks k0..k3. */
#define LLM__VFOR(type, i, n, k, ...) { type i = 0; \
    for (; i + LLM__VW <= (n); i += LLM__VW) { const llm__vm k = LLM__VALL; __VA_ARGS__ } \
    if (i < (n)) { const llm__vm k = llm__vmask(LLM__CAST(int, (n) - i)); __VA_ARGS__ } }
#define LLM__MASK4(k, n) const llm__vm k##0 = llm__vmask(n), k##1 = llm__vmask((n) - LLM__VW), \
    k##2 = llm__vmask((n) - 2 * LLM__VW), k##3 = llm__vmask((n) - 3 * LLM__VW)
#define LLM__VFOR4(i, i0, n, k, ...) { int i = i0; \
    for (; i + 4 * LLM__VW <= (n); i += 4 * LLM__VW) { \
        const llm__vm k##0 = LLM__VALL, k##1 = LLM__VALL, k##2 = LLM__VALL, k##3 = LLM__VALL; __VA_ARGS__ } \
    if (i < (n)) { LLM__MASK4(k, (n) - i); __VA_ARGS__ } }

/* Unroll the loop that follows completely (its trip count, at most 4, is a constant
 * after inlining), so that arrays of accumulators become registers. clang ignores an
 * unroll count larger than a loop's trip count, hence its own spelling. */
#if defined(__clang__)
#define LLM__UNROLL _Pragma("clang loop unroll(full)")
#else
#define LLM__UNROLL _Pragma("GCC unroll 4")
#endif

#ifdef LLM__X86
/* Fetch the line `bytes` past p. A prefetch never faults and the address may lie past
 * the array, so it is formed as an integer (C defines pointer arithmetic only inside the
 * array). A macro, not a function: gcc 12 drops the prefetch of a plain inline function
 * inlined into an AVX-512 one. */
#define LLM__PREFETCH(p, bytes) \
    _mm_prefetch(LLM__CAST(const char *, LLM__CAST(uintptr_t, (p)) + (bytes)), _MM_HINT_T0)

/* AVX2 + FMA: 8 lanes; a tail mask is the ints vmaskmovps wants (top bit per lane). */
#define LLM__T_avx2 LLM__T_AVX2
#define LLM__W_avx2 8
typedef __m256 llm__vf_avx2;
typedef __m256i llm__vm_avx2;
typedef __m256 llm__vb_avx2;
typedef __m256d llm__vd_avx2;
#define llm__vzero_avx2 _mm256_setzero_ps
#define llm__vset1_avx2 _mm256_set1_ps
#define llm__vload_avx2 _mm256_loadu_ps
#define llm__vloada_avx2 _mm256_load_ps
#define llm__vstore_avx2 _mm256_storeu_ps
#define llm__vstorea_avx2 _mm256_store_ps
#define llm__vadd_avx2 _mm256_add_ps
#define llm__vsub_avx2 _mm256_sub_ps
#define llm__vmul_avx2 _mm256_mul_ps
#define llm__vdiv_avx2 _mm256_div_ps
#define llm__vmax_avx2 _mm256_max_ps
#define llm__vmin_avx2 _mm256_min_ps
#define llm__vsqrt_avx2 _mm256_sqrt_ps
#define llm__vfma_avx2 _mm256_fmadd_ps
#define llm__vfnma_avx2 _mm256_fnmadd_ps
#define llm__vle_avx2(a, b) _mm256_cmp_ps(a, b, _CMP_LE_OQ)
#define llm__vsel_avx2(k, a, b) _mm256_blendv_ps(b, a, k)
#define llm__vround_avx2(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define llm__viota_avx2() _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7)
#define llm__vswap_pairs_avx2(a) _mm256_permute_ps(a, 0xB1)
#define llm__vkeep_avx2(v) __asm__("" : "+x"(v))
#define llm__vprefetch_avx2 LLM__PREFETCH
#define llm__vd_zero_avx2 _mm256_setzero_pd
#define llm__vd_load_avx2(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#define llm__vd_fma_avx2 _mm256_fmadd_pd
#define llm__vd_add_avx2 _mm256_add_pd
#define LLM__VALL_avx2 _mm256_set1_epi32(-1)
LLM__T_AVX2 static inline __m256i llm__vmask_avx2(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* The plain load and store when every lane is on: AMD runs vmaskmovps stores in microcode. */
LLM__T_AVX2 static inline __m256 llm__vload_m_avx2(const float *p, __m256i k) {
    return _mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k);
}
LLM__T_AVX2 static inline __m256 llm__vload_mor_avx2(const float *p, __m256i k, __m256 f) {
    return _mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF ? _mm256_loadu_ps(p)
         : _mm256_blendv_ps(f, _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
}
LLM__T_AVX2 static inline void llm__vstore_m_avx2(float *p, __m256i k, __m256 v) {
    if (_mm256_movemask_ps(_mm256_castsi256_ps(k)) == 0xFF) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, k, v);
}
LLM__T_AVX2 static inline float llm__vhsum_avx2(__m256 v) {   /* (0+4, 1+5, 2+6, 3+7), then pairs */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
LLM__T_AVX2 static inline float llm__vhmax_avx2(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
LLM__T_AVX2 static inline void llm__vhsum4_avx2(float *dst, __m256 a, __m256 b, __m256 c, __m256 d, float sc) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));   /* [a b c d | a b c d] halves */
    _mm_storeu_ps(dst, _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)), _mm_set1_ps(sc)));
}
/* p·2^n as two factors 2^(n/2), 2^(n - n/2) built from exponent bits, each normal for n
 * in [-150, 128]; the first product is exact, so there is one rounding. */
LLM__T_AVX2 static inline __m256 llm__vldexp_avx2(__m256 p, __m256 n) {
    __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
LLM__T_AVX2 static inline double llm__vd_hsum_avx2(__m256d a) {
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* AVX-512: 16 lanes; tail masks and comparisons are k-registers. (The maskz forms with
 * a full mask are the plain instructions; some plain intrinsics trip g++ 12's
 * -Wmaybe-uninitialized.) */
#define LLM__T_avx512 LLM__T_AVX512
#define LLM__W_avx512 16
typedef __m512 llm__vf_avx512;
typedef __mmask16 llm__vm_avx512;
typedef __mmask16 llm__vb_avx512;
typedef __m512d llm__vd_avx512;
#define llm__vzero_avx512 _mm512_setzero_ps
#define llm__vset1_avx512 _mm512_set1_ps
#define llm__vload_avx512 _mm512_loadu_ps
#define llm__vloada_avx512 _mm512_load_ps
#define llm__vstore_avx512 _mm512_storeu_ps
#define llm__vstorea_avx512 _mm512_store_ps
#define llm__vload_m_avx512(p, k) _mm512_maskz_loadu_ps(k, p)
#define llm__vload_mor_avx512(p, k, f) _mm512_mask_loadu_ps(f, k, p)
#define llm__vstore_m_avx512 _mm512_mask_storeu_ps
#define llm__vadd_avx512 _mm512_add_ps
#define llm__vsub_avx512 _mm512_sub_ps
#define llm__vmul_avx512 _mm512_mul_ps
#define llm__vdiv_avx512 _mm512_div_ps
#define llm__vmax_avx512 _mm512_max_ps
#define llm__vmin_avx512 _mm512_min_ps
#define llm__vsqrt_avx512 _mm512_sqrt_ps
#define llm__vfma_avx512 _mm512_fmadd_ps
#define llm__vfnma_avx512 _mm512_fnmadd_ps
#define llm__vle_avx512(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ)
#define llm__vsel_avx512(k, a, b) _mm512_mask_blend_ps(k, b, a)
#define llm__vround_avx512(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define llm__viota_avx512() _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define llm__vswap_pairs_avx512(a) _mm512_permute_ps(a, 0xB1)
#define llm__vhsum_avx512 _mm512_reduce_add_ps
#define llm__vhmax_avx512 _mm512_reduce_max_ps
#define llm__vldexp_avx512 _mm512_scalef_ps   /* exact, with over- and underflow */
#define llm__vkeep_avx512(v) __asm__("" : "+v"(v))
#define llm__vprefetch_avx512 LLM__PREFETCH
#define llm__vd_zero_avx512 _mm512_setzero_pd
#define llm__vd_load_avx512(p) _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(p))
#define llm__vd_fma_avx512 _mm512_fmadd_pd
#define llm__vd_add_avx512 _mm512_add_pd
#define llm__vd_hsum_avx512 _mm512_reduce_add_pd
#define LLM__VALL_avx512 LLM__CAST(__mmask16, 0xFFFF)
LLM__T_AVX512 static inline __mmask16 llm__vmask_avx512(int n) {
    return LLM__CAST(__mmask16, n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u);
}
LLM__T_AVX512 static inline void llm__vhsum4_avx512(float *dst, __m512 a, __m512 b, __m512 c, __m512 d, float sc) {
#define LLM__HALF(x) _mm256_add_ps(_mm512_castps512_ps256(x), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)))
    llm__vhsum4_avx2(dst, LLM__HALF(a), LLM__HALF(b), LLM__HALF(c), LLM__HALF(d), sc);
#undef LLM__HALF
}
#endif /* LLM__X86 */

#ifdef LLM__NEON
/* NEON: 4 lanes; a tail mask is the number of lanes. */
#define LLM__T_neon
#define LLM__W_neon 4
typedef float32x4_t llm__vf_neon;
typedef int llm__vm_neon;
typedef uint32x4_t llm__vb_neon;
typedef float64x2_t llm__vd_neon;
#define llm__vzero_neon() vdupq_n_f32(0.0f)
#define llm__vset1_neon vdupq_n_f32
#define llm__vload_neon vld1q_f32
#define llm__vloada_neon vld1q_f32
#define llm__vstore_neon vst1q_f32
#define llm__vstorea_neon vst1q_f32
#define llm__vadd_neon vaddq_f32
#define llm__vsub_neon vsubq_f32
#define llm__vmul_neon vmulq_f32
#define llm__vdiv_neon vdivq_f32
#define llm__vmax_neon vmaxq_f32
#define llm__vmin_neon vminq_f32
#define llm__vsqrt_neon vsqrtq_f32
#define llm__vfma_neon(a, b, c) vfmaq_f32(c, a, b)
#define llm__vfnma_neon(a, b, c) vfmsq_f32(c, a, b)
#define llm__vle_neon vcleq_f32
#define llm__vsel_neon vbslq_f32
#define llm__vround_neon vrndnq_f32
#define llm__vswap_pairs_neon vrev64q_f32
#define llm__vhsum_neon vaddvq_f32
#define llm__vhmax_neon vmaxvq_f32
#define llm__vkeep_neon(v) __asm__("" : "+w"(v))
#define llm__vprefetch_neon(p, bytes) __builtin_prefetch(LLM__CAST(const char *, LLM__CAST(uintptr_t, (p)) + (bytes)))
#define llm__vd_zero_neon() vdupq_n_f64(0.0)
#define llm__vd_load_neon(p) vcvt_f64_f32(vld1_f32(p))
#define llm__vd_fma_neon(a, b, c) vfmaq_f64(c, a, b)
#define llm__vd_add_neon vaddq_f64
#define llm__vd_hsum_neon vaddvq_f64
#define LLM__VALL_neon 4
static inline float32x4_t llm__viota_neon(void) {
    static const float iota[4] = {0, 1, 2, 3};
    return vld1q_f32(iota);
}
static inline int llm__vmask_neon(int n) { return n < 0 ? 0 : n > 4 ? 4 : n; }
static inline float32x4_t llm__vload_mor_neon(const float *p, int m, float32x4_t f) {
    if (m >= 4) return vld1q_f32(p);
    float t[4];
    vst1q_f32(t, f);
    for (int i = 0; i < m; i++) t[i] = p[i];
    return vld1q_f32(t);
}
static inline float32x4_t llm__vload_m_neon(const float *p, int m) { return llm__vload_mor_neon(p, m, vdupq_n_f32(0.0f)); }
static inline void llm__vstore_m_neon(float *p, int m, float32x4_t v) {
    if (m >= 4) { vst1q_f32(p, v); return; }
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < m; i++) p[i] = t[i];
}
static inline void llm__vhsum4_neon(float *dst, float32x4_t a, float32x4_t b, float32x4_t c, float32x4_t d, float sc) {
    vst1q_f32(dst, vmulq_n_f32(vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)), sc));
}
static inline float32x4_t llm__vldexp_neon(float32x4_t p, float32x4_t n) {   /* as AVX2's */
    int32x4_t ni = vcvtq_s32_f32(n), n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}
#endif /* LLM__NEON */

/* out[i] = X[i] . w for i < MI (a constant after inlining; with LLM__UNROLL, at -O2
 * too, the accumulators live in registers). Two accumulators per output, for the
 * even and odd blocks of VW k (two FMA chains hide the FMA latency even at MI == 1),
 * added at the end; the ragged last block is masked into the one of its parity.
 * w is held in registers (vkeep): left to itself gcc folds the loads of w into each
 * FMA, reading w MI times, and for MI = 2, 3 the DRAM stream then ran at half speed
 * (it no longer overlapped the arithmetic). pf: how many bytes ahead in w to prefetch.
 * At most 4 rows of X (AVX2: 8 accumulators, 2 of w, one x: 11 of 16 registers). */
#define LLM__GEMV_MI 4
#define LLM__K_GEMV_TILE                                                                                           \
__attribute__((always_inline)) LLM__VT static inline void                                                          \
LLM__ISA(llm__gemv_tile)(const int MI, const float *X, size_t ldx, const float *w, int K, size_t pf, float *out) { \
    const int W = LLM__VW;                                                                                         \
    llm__vf a0[LLM__GEMV_MI], a1[LLM__GEMV_MI];                                                                    \
LLM__UNROLL                                                                                                        \
    for (int i = 0; i < MI; i++) a0[i] = a1[i] = llm__vzero();                                                     \
    int k = 0;                                                                                                     \
    for (; k + 2 * W <= K; k += 2 * W) {                                                                           \
LLM__UNROLL                                                                                                        \
        for (int q = 0; q < 2 * W; q += 16) llm__vprefetch(w + k + q, pf);   /* each line once */                  \
        llm__vf w0 = llm__vload(w + k), w1 = llm__vload(w + k + W);                                                \
        llm__vkeep(w0); llm__vkeep(w1);                                                                            \
LLM__UNROLL                                                                                                        \
        for (int i = 0; i < MI; i++) {                                                                             \
            a0[i] = llm__vfma(llm__vload(X + i * ldx + k), w0, a0[i]);                                             \
            a1[i] = llm__vfma(llm__vload(X + i * ldx + k + W), w1, a1[i]);                                         \
        }                                                                                                          \
    }                                                                                                              \
    if (k < K) {   /* masked lanes load as zero and add nothing */                                                 \
        const int n = K - k;                                                                                       \
        const llm__vm m0 = llm__vmask(n), m1 = llm__vmask(n - W);                                                  \
        llm__vf w0 = llm__vload_m(w + k, m0), w1 = llm__vload_m(w + k + W, m1);                                    \
LLM__UNROLL                                                                                                        \
        for (int i = 0; i < MI; i++) {                                                                             \
            a0[i] = llm__vfma(llm__vload_m(X + i * ldx + k, m0), w0, a0[i]);                                       \
            if (n > W) a1[i] = llm__vfma(llm__vload_m(X + i * ldx + k + W, m1), w1, a1[i]);                        \
        }                                                                                                          \
    }                                                                                                              \
LLM__UNROLL                                                                                                        \
    for (int i = 0; i < MI; i++) out[i] = llm__vhsum(llm__vadd(a0[i], a1[i]));                                     \
}

/* transB rows [j0, j1), one row of W at a time against 4 rows of X at a time (a second
 * pass, for M > 4, finds the row in L1): the slab is read in address order, one
 * stream, which the hardware prefetcher follows best (4 rows side by side, 4 streams,
 * ran ~20% slower), and software fetches 8 KB ahead of it (+10% over none; 1-24 KB
 * tried). One pass over 8 rows of X ran slower than two over 4 (21 against 15 GB/s). */
#define LLM__K_GEMV_T_ROWS                                                                                              \
LLM__VT static void LLM__ISA(llm__gemv_t_rows)(const llm__gemv_job *J, size_t j0, size_t j1) {                          \
    const size_t ldw = J->ldw, ldx = J->ldx, pf = LLM__GEMV_PF_BYTES;                                                   \
    /* passes of equal size: M = 5 as 3 + 2, not 4 + 1 */                                                               \
    const int passes = (J->M + LLM__GEMV_MI - 1) / LLM__GEMV_MI, step = (J->M + passes - 1) / passes;                   \
    float out[LLM__GEMV_MI];                                                                                            \
    for (size_t j = j0; j < j1; j++) {                                                                                  \
        const float *w = J->W + j * ldw;                                                                                \
        for (int i0 = 0; i0 < J->M; i0 += step) {                                                                       \
            const int mi = J->M - i0 < step ? J->M - i0 : step;                                                         \
            const float *X = J->X + LLM__CAST(size_t, i0) * ldx;                                                        \
            switch (mi) {                                                                                               \
            case 1: LLM__ISA(llm__gemv_tile)(1, X, ldx, w, J->K, pf, out); break;                                       \
            case 2: LLM__ISA(llm__gemv_tile)(2, X, ldx, w, J->K, pf, out); break;                                       \
            case 3: LLM__ISA(llm__gemv_tile)(3, X, ldx, w, J->K, pf, out); break;                                       \
            default: LLM__ISA(llm__gemv_tile)(4, X, ldx, w, J->K, pf, out); break;                                      \
            }                                                                                                           \
            for (int i = 0; i < mi; i++) llm__gemv_put(J->Y + LLM__CAST(size_t, i0 + i) * J->ldy + j, out[i], J->beta); \
        }                                                                                                               \
    }                                                                                                                   \
}

/* !transB, M == 1, columns [c0, c1), in blocks of LLM__GEMV_COLS: for each 4 rows of W,
 * acc[c] = fma(x[k+3], W[k+3][c], ... fma(x[k], W[k][c], acc[c])), so each y[j] is the
 * sum over k in order, whatever the blocks. The ragged last columns go through a mask
 * (only those: vmaskmovps is slow on AMD, a store runs in microcode). */
#define LLM__K_GEMV_N_COLS                                                                                                     \
LLM__VT static void LLM__ISA(llm__gemv_n_cols)(const llm__gemv_job *J, size_t c0, size_t c1) {                                 \
    const int W = LLM__VW, K = J->K;                                                                                           \
    const size_t ldw = J->ldw, pf = 4 * ldw * sizeof(float);                                                                   \
    float acc[LLM__GEMV_COLS];                                                                                                 \
    for (size_t cb = c0; cb < c1; cb += LLM__GEMV_COLS) {                                                                      \
        const int n = c1 - cb < LLM__GEMV_COLS ? LLM__CAST(int, c1 - cb) : LLM__GEMV_COLS, nf = n / W * W;                     \
        const llm__vm m = llm__vmask(n - nf);                                                                                  \
        const float *Wb = J->W + cb;                                                                                           \
        memset(acc, 0, sizeof acc);                                                                                            \
        for (int k = 0; k < K; k += 4) {                                                                                       \
            const int kn = K - k < 4 ? K - k : 4;                                                                              \
            const float *w0 = Wb + LLM__CAST(size_t, k) * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;                 \
            const llm__vf x0 = llm__vset1(J->X[k]), x1 = llm__vset1(kn > 1 ? J->X[k + 1] : 0.0f);                              \
            const llm__vf x2 = llm__vset1(kn > 2 ? J->X[k + 2] : 0.0f), x3 = llm__vset1(kn > 3 ? J->X[k + 3] : 0.0f);          \
            for (int c = 0; c < nf; c += W) {                                                                                  \
                llm__vf a = llm__vfma(x0, llm__vload(w0 + c), llm__vload(acc + c));                                            \
                if ((c & 15) == 0) llm__vprefetch(w0 + c, pf);                                                                 \
                if (kn == 4) {   /* the common case */                                                                         \
                    if ((c & 15) == 0) { llm__vprefetch(w1 + c, pf); llm__vprefetch(w2 + c, pf); llm__vprefetch(w3 + c, pf); } \
                    a = llm__vfma(x1, llm__vload(w1 + c), a);                                                                  \
                    a = llm__vfma(x2, llm__vload(w2 + c), a);                                                                  \
                    a = llm__vfma(x3, llm__vload(w3 + c), a);                                                                  \
                } else {                                                                                                       \
                    if (kn > 1) a = llm__vfma(x1, llm__vload(w1 + c), a);                                                      \
                    if (kn > 2) a = llm__vfma(x2, llm__vload(w2 + c), a);                                                      \
                }                                                                                                              \
                llm__vstore(acc + c, a);                                                                                       \
            }                                                                                                                  \
            if (nf < n) {                                                                                                      \
                llm__vf a = llm__vfma(x0, llm__vload_m(w0 + nf, m), llm__vload_m(acc + nf, m));                                \
                if (kn > 1) a = llm__vfma(x1, llm__vload_m(w1 + nf, m), a);                                                    \
                if (kn > 2) a = llm__vfma(x2, llm__vload_m(w2 + nf, m), a);                                                    \
                if (kn > 3) a = llm__vfma(x3, llm__vload_m(w3 + nf, m), a);                                                    \
                llm__vstore_m(acc + nf, m, a);                                                                                 \
            }                                                                                                                  \
        }                                                                                                                      \
        for (int c = 0; c < n; c++) llm__gemv_put(J->Y + cb + c, acc[c], J->beta);                                             \
    }                                                                                                                          \
}

#define LLM__K_GEMV LLM__K_GEMV_TILE LLM__K_GEMV_T_ROWS LLM__K_GEMV_N_COLS
#ifdef LLM__X86
#define LLM__V avx2
LLM__K_GEMV
#undef LLM__V
#define LLM__V avx512
LLM__K_GEMV
#undef LLM__V
#endif
#ifdef LLM__NEON
#define LLM__V neon
LLM__K_GEMV
#undef LLM__V
#endif

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
#elif defined(LLM__NEON)
    if (J->level == LLM_SIMD_NEON) {
        if (J->transB) llm__gemv_t_rows_neon(J, lo, hi); else llm__gemv_n_cols_neon(J, lo, hi);
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
 * fp32 FMA at the same issue rate. ARMv8.6's BF16 extension (Apple M2 and later,
 * Graviton 3, Neoverse V1/N2) has the same dot product on 4 lanes, BFDOT; it adds the
 * pair of products in round-to-odd and flushes denormals (no FPCR applies), which the
 * test's bound allows for. The opt-in bf16 mode of training uses it for the matmuls
 * only (master weights, gradients, the optimizer and every other op stay fp32).
 *
 * llm__sgemm_bf16 has llm__sgemm's contract, except that A and B are rounded to bf16
 * as they are packed. Without AVX512-BF16 or ARM BF16 (or with the level forced below
 * AVX-512, or to scalar) it is plain llm__sgemm: fp32, no rounding.
 *
 * Like the x86 levels, ARM BF16 is found at run time (getauxval on Linux, sysctl on
 * macOS) and its functions carry their own target attribute, so one binary runs on
 * any ARM64. clang's arm_neon.h (up to 15 at least) declares the bf16 intrinsics only
 * when the whole build targets BF16 (e.g. -march=armv8.6-a): other clang builds use fp32. */
#ifdef LLM__X86
#define LLM__T_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma")))
#endif
#if defined(LLM__NEON) && defined(__clang__) && defined(__ARM_FEATURE_BF16_VECTOR_ARITHMETIC)
#define LLM__NEON_BF16 1
#define LLM__T_NEON_BF16
#elif defined(LLM__NEON) && !defined(__clang__) && __GNUC__ >= 10
#define LLM__NEON_BF16 1
#define LLM__T_NEON_BF16 __attribute__((target("arch=armv8.2-a+bf16")))
#endif

/* 1 when llm__sgemm_bf16 really computes in bf16: the CPU has AVX512-BF16 and the
 * active level (LLM_SIMD, llm_simd_force) is AVX-512, or it has ARM BF16 and the level
 * is NEON (and this build can emit BF16). */
static LLM__UNUSED int llm__has_bf16(void) {
#if defined(LLM__X86)
    return (llm__cpu_get() & LLM__CPU_AVX512BF16) && llm_simd_active() == LLM_SIMD_AVX512;
#elif defined(LLM__NEON_BF16)
    return (llm__cpu_get() & LLM__CPU_BF16) && llm_simd_active() == LLM_SIMD_NEON;
#else
    return 0;
#endif
}
LLMDEF int llm_bf16_supported(void) { return llm__has_bf16(); }

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

/* One instruction set's bf16 GEMM: the micro-kernel (an mr x nr tile of C from kp pair
 * words of an A and a B sliver), its packs, and the matrix-vector rows (below). */
struct llm__gemv_bf16_job;
typedef struct llm__gemm_bf16_impl {
    int mr, nr;
    void (*kern)(int kp, const uint32_t *A, const uint32_t *B, float *C, size_t ldc, float beta);
    void (*pack_n)(uint32_t *dst, int w, const float *src, size_t ld, int n, int kc);
    void (*pack_t)(uint32_t *dst, int w, const float *src, size_t ld, int nrows, int kc);
    void (*gemv_rows)(const struct llm__gemv_bf16_job *J, size_t j, int n);   /* rows j..j+n-1, n <= 4 */
} llm__gemm_bf16_impl;

/* ---- bf16 matrix-vector, M == 1 with B transposed: the decode shape y = x . W^T.
 * Bound by reading B, so B's rows are rounded as they stream by, never packed; x is
 * rounded once into pair words. Rows go in groups of up to 4 (x loaded once for 4),
 * each row by the same operations in any group, so any thread count gives the same y. */
typedef struct llm__gemv_bf16_job {
    int N, K, ldb;
    const uint32_t *xb;       /* ceil(K/32)*16 pair words of x, zero padded */
    const float *B;           /* (N, ldb) */
    float *y, beta;
    llm__gemm_bf16_impl g;
} llm__gemv_bf16_job;

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
__attribute__((noinline)) LLM__T_BF16 static void llm__gemm_kern_bf16_avx512(int kp, const uint32_t *A, const uint32_t *B,
                                                                           float *C, size_t ldc, float beta) {
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

LLM__T_BF16 static void llm__gemv_bf16_rows_avx512(const llm__gemv_bf16_job *J, size_t j, int n) {
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
#endif /* LLM__X86 */

#ifdef LLM__NEON_BF16
/* NEON: the fp32 8 x 12 micro-kernel's loop with BFDOT by lane (a pair of bf16 from A
 * broadcast against 4 pairs of B, 2 products per lane), so each k step of the loop
 * advances two of the sum; the packs are the reference ones (packing is a small part). */
#define LLM__NEON_BF16_LOADB(p) vreinterpretq_bf16_u32(vld1q_u32(p))
LLM__NEON_GEMM_KERN(llm__gemm_kern_bf16_neon, LLM__T_NEON_BF16, uint32_t, bfloat16x8_t, LLM__NEON_BF16_LOADB,
                    vbfdotq_laneq_f32)
#undef LLM__NEON_BF16_LOADB

/* 8 k at a time: 8 floats of a row of B rounded by BFCVTN (to nearest even, as
 * llm__bf16_round; a denormal is kept where llm__bf16_round flushes it, but BFDOT flushes
 * its inputs, so the products are the same), one BFDOT against x's pair words. */
LLM__T_NEON_BF16 static void llm__gemv_bf16_rows_neon(const llm__gemv_bf16_job *J, size_t j, int n) {
    float32x4_t acc[4];
    const float *b[4];
    const int K8 = J->K / 8 * 8;
    for (int r = 0; r < n; r++) { acc[r] = vdupq_n_f32(0.0f); b[r] = J->B + (j + LLM__CAST(size_t, r)) * LLM__CAST(size_t, J->ldb); }
    for (int k = 0; k < J->K; k += 8) {
        const bfloat16x8_t xv = vreinterpretq_bf16_u32(vld1q_u32(J->xb + k / 2));
        for (int r = 0; r < n; r++) {
            float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            const float *p = b[r] + k;
            if (k >= K8) { memcpy(t, p, LLM__CAST(size_t, J->K - k) * sizeof(float)); p = t; }   /* the tail */
            const bfloat16x8_t bv = vcvtq_high_bf16_f32(vcvtq_low_bf16_f32(vld1q_f32(p)), vld1q_f32(p + 4));
            acc[r] = vbfdotq_f32(acc[r], bv, xv);
        }
    }
    for (int r = 0; r < n; r++) {
        float *y = J->y + j + LLM__CAST(size_t, r), v = vaddvq_f32(acc[r]);
        *y = J->beta == 0.0f ? v : v + J->beta * *y;
    }
}
#endif /* LLM__NEON_BF16 */

/* The bf16 GEMM of the active level; g.kern is NULL where there is none. */
static llm__gemm_bf16_impl llm__gemm_bf16_pick(void) {
    llm__gemm_bf16_impl g;
    memset(&g, 0, sizeof g);
    if (!llm__has_bf16()) return g;
#if defined(LLM__X86)
    g.mr = LLM__BF16_MR; g.nr = LLM__BF16_NR; g.kern = llm__gemm_kern_bf16_avx512;
    g.pack_n = llm__bf16_pack_n_avx512; g.pack_t = llm__bf16_pack_t_avx512; g.gemv_rows = llm__gemv_bf16_rows_avx512;
#elif defined(LLM__NEON_BF16)
    g.mr = LLM__NEON_MR; g.nr = LLM__NEON_NR; g.kern = llm__gemm_kern_bf16_neon;
    g.pack_n = llm__bf16_pack_n_ref; g.pack_t = llm__bf16_pack_t_ref; g.gemv_rows = llm__gemv_bf16_rows_neon;
#endif
    return g;
}

/* One call's shared state: the fp32 job for the shape, grid and blocking (g.kc counts
 * k, even, so pairs never straddle blocks), the bf16 kernels, and the packing buffers
 * in pair words. */
typedef struct llm__gemm_bf16_job {
    llm__gemm_job J;          /* J.buf unused */
    llm__gemm_bf16_impl b;
    uint32_t *buf;            /* per thread: A block (mc*kc/2 words), then B panel */
    size_t a_words, per_thread;
} llm__gemm_bf16_job;

/* llm__gemm_task's loops, on pair words. Every element of C gets the same operations in
 * the same order wherever it lies, so the result does not depend on the thread count. */
static void llm__gemm_bf16_task(void *arg, int ith, int nth) {
    const llm__gemm_bf16_job *X = LLM__CAST(const llm__gemm_bf16_job *, arg);
    const llm__gemm_job *J = &X->J;
    const llm__gemm_impl *g = &J->g;
    const llm__gemm_bf16_impl *b = &X->b;
    const int MR = b->mr, NR = b->nr;
    int m0, m1, n0, n1;
    (void)nth;
    if (ith >= J->tm * J->tn) return;
    llm__gemm_rect(J, ith, &m0, &m1, &n0, &n1);
    if (m0 >= m1 || n0 >= n1) return;
    uint32_t *Ap = X->buf + LLM__CAST(size_t, ith) * X->per_thread;
    uint32_t *Bp = Ap + X->a_words;
    float edge[16 * 64];   /* one tile, for ragged edges: mr*nr <= 16*64 */
    const size_t lda = LLM__CAST(size_t, J->lda), ldb = LLM__CAST(size_t, J->ldb), ldc = LLM__CAST(size_t, J->ldc);
    for (int jc = n0; jc < n1; jc += g->nc) {
        int nc = n1 - jc < g->nc ? n1 - jc : g->nc;
        for (int pc = 0; pc < J->K; pc += g->kc) {
            int kc = J->K - pc < g->kc ? J->K - pc : g->kc, kp = (kc + 1) / 2;
            float beta = pc == 0 ? J->beta : 1.0f;
            if (!J->transB) b->pack_n(Bp, NR, J->B + LLM__CAST(size_t, pc) * ldb + jc, ldb, nc, kc);
            else for (int jr = 0; jr < nc; jr += NR) {
                int w = nc - jr < NR ? nc - jr : NR;
                b->pack_t(Bp + LLM__CAST(size_t, jr) * kp, NR, J->B + LLM__CAST(size_t, jc + jr) * ldb + pc, ldb, w, kc);
            }
            for (int ic = m0; ic < m1; ic += g->mc) {
                int mc = m1 - ic < g->mc ? m1 - ic : g->mc;
                if (J->transA) b->pack_n(Ap, MR, J->A + LLM__CAST(size_t, pc) * lda + ic, lda, mc, kc);
                else for (int ir = 0; ir < mc; ir += MR) {
                    int h = mc - ir < MR ? mc - ir : MR;
                    b->pack_t(Ap + LLM__CAST(size_t, ir) * kp, MR, J->A + LLM__CAST(size_t, ic + ir) * lda + pc, lda, h, kc);
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    int w = nc - jr < NR ? nc - jr : NR;
                    const uint32_t *bs = Bp + LLM__CAST(size_t, jr) * kp;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int h = mc - ir < MR ? mc - ir : MR;
                        const uint32_t *as = Ap + LLM__CAST(size_t, ir) * kp;
                        float *c = J->C + LLM__CAST(size_t, ic + ir) * ldc + jc + jr;
                        if (h == MR && w == NR) {
                            b->kern(kp, as, bs, c, ldc, beta);
                        } else {
                            b->kern(kp, as, bs, edge, LLM__CAST(size_t, NR), 0.0f);
                            llm__gemm_store_tile(edge, NR, c, ldc, h, w, beta);
                        }
                    }
                }
            }
        }
    }
}

static void llm__gemv_bf16_task(void *arg, int ith, int nth) {
    const llm__gemv_bf16_job *J = LLM__CAST(const llm__gemv_bf16_job *, arg);
    size_t lo, hi, N = LLM__CAST(size_t, J->N);
    llm__split((N + 3) / 4, ith, nth, &lo, &hi);
    for (size_t j = lo * 4; j < hi * 4 && j < N; j += 4) J->g.gemv_rows(J, j, N - j < 4 ? LLM__CAST(int, N - j) : 4);
}

/* y (N) = x (K) . B^T (B: N rows of K) + beta y, with x and B rounded to bf16. */
static void llm__gemv_bf16(llm_pool *pool, const llm__gemm_bf16_impl *g, int N, int K, const float *x,
                           const float *B, int ldb, float beta, float *y) {
    size_t words = LLM__CAST(size_t, (K + 31) / 32) * 16;
    uint32_t *xb = LLM__CAST(uint32_t *, llm__alloc_aligned(words * sizeof(uint32_t)));
    if (!xb) { llm__sgemm_bf16_ref(0, 1, 1, N, K, x, K, B, ldb, beta, y, N); return; }
    memset(xb, 0, words * sizeof(uint32_t));
    g->pack_t(xb, 1, x, 0, 1, K);   /* one row: xb[p] = pair(x[2p], x[2p+1]) */
    llm__gemv_bf16_job J;
    J.N = N; J.K = K; J.ldb = ldb; J.xb = xb; J.B = B; J.y = y; J.beta = beta; J.g = *g;
    if (2.0 * N * K < 2e5 || llm_pool_size(pool) == 1) llm__gemv_bf16_task(&J, 0, 1);
    else llm_pool_run(pool, llm__gemv_bf16_task, &J);
    llm__free_aligned(xb);
}

static LLM__UNUSED void llm__sgemm_bf16(llm_pool *pool, int transA, int transB, int M, int N, int K,
                                        const float *A, int lda, const float *B, int ldb, float beta,
                                        float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    const llm__gemm_bf16_impl b = llm__gemm_bf16_pick();
    if (K <= 0 || !b.kern) {   /* an empty sum, or no bf16 here: fp32 */
        llm__sgemm(pool, transA, transB, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M == 1 && transB && (!transA || lda == 1)) {   /* decode: stream B, no packing */
        llm__gemv_bf16(pool, &b, N, K, A, B, ldb, beta, C);
        return;
    }
    llm__gemm_bf16_job X;
    llm__gemm_job *J = &X.J;
    int nth = llm_pool_size(pool);
    memset(&X, 0, sizeof X);
    X.b = b;
    /* kc counts k (even). Per thread: the B panel (nc x kc/2 words, 1 MB) and the A block
     * (mc x kc/2 words, 270 KB) share the 2 MB L2; mc covers the 256 rows of the
     * training shapes, so the B panel is streamed once; the B sliver (32 x kc/2 words,
     * 32 KB) stays in the 48 KB L1. (Measured within noise of kc 256-1024, mc 144-516,
     * on x86; NEON's tile is 8 x 12, the same blocking untuned, nc rounded down to whole
     * slivers: the panel's buffer holds nc columns.) */
    J->g.mr = b.mr; J->g.nr = b.nr; J->g.kc = 512; J->g.mc = 264 / b.mr * b.mr; J->g.nc = 1024 / b.nr * b.nr;
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
}
//==== SIMD KERNELS =====================================================================
/* Vector versions of every kernel that is not a GEMM, each written once on the vector
 * layer (SIMD) and compiled for AVX2, AVX-512 and NEON; each is tested against the
 * reference in KERNELS (tests/test_simd_kernels.c). One dispatcher per op,
 * llm__<op>_fast, with the reference's signature, reads llm_simd_active() on every call
 * (one load) and runs the best version; at LLM_SIMD_SCALAR, and with compilers that
 * have no target attributes, it runs the reference itself.
 *
 * Accuracy contract: each fast kernel is within 1e-5 relative of its reference, with
 * an absolute floor where the reference itself cancels (stated per op in the tests).
 * Sums are reordered (several vector accumulators, then a horizontal sum) but stay in
 * fp32 (sumsq: fp64, like the reference). AdamW does the reference's operations in the
 * reference's order (no FMA), so it matches it bit for bit when the compiler does not
 * contract the reference's expressions (gcc -std=c99 does not); RoPE likewise.
 * Every kernel is deterministic: one thread, a fixed order of operations.
 *
 * Loops over a row run whole vectors with plain loads and stores, then the ragged tail
 * (a length not a multiple of the vector width) once, with masked ones (LLM__VFOR), so no
 * kernel reads or writes past its arrays. */

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
 * NaN: the clamps are max(c, x), min(c, x), which return x (x86) or NaN (NEON) when x
 * is NaN. The scaling by 2^n is llm__vldexp (AVX-512: vscalefps). */
#define LLM__EXP_LO -104.0f
#define LLM__EXP_HI 89.0f
#define LLM__LOG2E 1.44269504088896341f
#define LLM__LN2_HI 0.693359375f
#define LLM__LN2_LO -2.12194440e-4f
#define llm__vexp LLM__ISA(llm__exp)
#define LLM__K_EXP                                                                                           \
LLM__VT static inline llm__vf LLM__ISA(llm__exp)(llm__vf x) {                                                \
    x = llm__vmin(llm__vset1(LLM__EXP_HI), llm__vmax(llm__vset1(LLM__EXP_LO), x));                           \
    const llm__vf n = llm__vround(llm__vmul(x, llm__vset1(LLM__LOG2E)));                                     \
    llm__vf r = llm__vfnma(n, llm__vset1(LLM__LN2_HI), x);                                                   \
    r = llm__vfnma(n, llm__vset1(LLM__LN2_LO), r);                                                           \
    llm__vf p = llm__vfma(llm__vset1(1.0f / 5040.0f), r, llm__vset1(1.0f / 720.0f));   /* Σ_{k<=7} r^k/k! */ \
    p = llm__vfma(p, r, llm__vset1(1.0f / 120.0f)); p = llm__vfma(p, r, llm__vset1(1.0f / 24.0f));           \
    p = llm__vfma(p, r, llm__vset1(1.0f / 6.0f)); p = llm__vfma(p, r, llm__vset1(0.5f));                     \
    p = llm__vfma(p, r, llm__vset1(1.0f)); p = llm__vfma(p, r, llm__vset1(1.0f));                            \
    return llm__vldexp(p, n);                                                                                \
}

/* ---- layernorm --------------------------------------------------------------------------
 * Forward, per row: three passes over C floats that stay in L1: the mean, the variance
 * around it (two passes, not E[x²] - mean², which cancels), then out = (x-mean)·rstd·w + b.
 * Backward as the reference splits it: dx by rows; dw, db by channels, a block of 4
 * vectors of channels in registers while all N rows stream past (each row adds in row
 * order, as the reference does), then back to memory once. */
#define LLM__LN_DWDB(i) { const llm__vf dd = llm__vload_m(d + W * i, k##i); \
    const llm__vf xh = llm__vmul(llm__vsub(llm__vload_m(x + W * i, k##i), mv), sv); \
    b##i = llm__vadd(b##i, dd); w##i = llm__vfma(dd, xh, w##i); }
#define LLM__K_LAYERNORM                                                                                              \
LLM__VT static void LLM__ISA(llm__layernorm_fwd)(float *out, float *mean, float *rstd, const float *inp,              \
                                                 const float *w, const float *b, int N, int C) {                      \
    const int W = LLM__VW;                                                                                            \
    for (int n = 0; n < N; n++) {                                                                                     \
        const float *x = inp + LLM__CAST(size_t, n) * C;                                                              \
        float *o = out + LLM__CAST(size_t, n) * C;                                                                    \
        llm__vf a0 = llm__vzero(), a1 = llm__vzero();                                                                 \
        int c = 0;                                                                                                    \
        for (; c + 2 * W <= C; c += 2 * W) {                                                                          \
            a0 = llm__vadd(a0, llm__vload(x + c));                                                                    \
            a1 = llm__vadd(a1, llm__vload(x + c + W));                                                                \
        }                                                                                                             \
        for (; c < C; c += W) a0 = llm__vadd(a0, llm__vload_m(x + c, llm__vmask(C - c)));                             \
        const float m = llm__vhsum(llm__vadd(a0, a1)) / LLM__CAST(float, C);                                          \
        const llm__vf mv = llm__vset1(m);                                                                             \
        a0 = llm__vzero(); a1 = llm__vzero();                                                                         \
        for (c = 0; c + 2 * W <= C; c += 2 * W) {                                                                     \
            const llm__vf d0 = llm__vsub(llm__vload(x + c), mv), d1 = llm__vsub(llm__vload(x + c + W), mv);           \
            a0 = llm__vfma(d0, d0, a0); a1 = llm__vfma(d1, d1, a1);                                                   \
        }                                                                                                             \
        for (; c < C; c += W) {   /* masked lanes load the mean: x - mean = 0 there */                                \
            const llm__vf d0 = llm__vsub(llm__vload_mor(x + c, llm__vmask(C - c), mv), mv);                           \
            a0 = llm__vfma(d0, d0, a0);                                                                               \
        }                                                                                                             \
        const float s = 1.0f / sqrtf(llm__vhsum(llm__vadd(a0, a1)) / LLM__CAST(float, C) + LLM__LN_EPS);              \
        const llm__vf sv = llm__vset1(s);                                                                             \
        LLM__VFOR(int, c, C, k,                                                                                       \
            const llm__vf xh = llm__vmul(llm__vsub(llm__vload_m(x + c, k), mv), sv);                                  \
            llm__vstore_m(o + c, k, llm__vfma(xh, llm__vload_m(w + c, k), llm__vload_m(b + c, k)));)                  \
        mean[n] = m; rstd[n] = s;                                                                                     \
    }                                                                                                                 \
}                                                                                                                     \
LLM__VT static void LLM__ISA(llm__layernorm_bwd_dx)(float *dinp, const float *dout, const float *inp, const float *w, \
                                                    const float *mean, const float *rstd, int N, int C) {             \
    for (int n = 0; n < N; n++) {                                                                                     \
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;                        \
        float *dx = dinp + LLM__CAST(size_t, n) * C;                                                                  \
        const llm__vf mv = llm__vset1(mean[n]), sv = llm__vset1(rstd[n]);                                             \
        llm__vf g0 = llm__vzero(), gx0 = llm__vzero();                                                                \
        LLM__VFOR(int, c, C, k,   /* masked lanes load 0: g = 0 adds nothing */                                       \
            const llm__vf xh = llm__vmul(llm__vsub(llm__vload_m(x + c, k), mv), sv);                                  \
            const llm__vf g = llm__vmul(llm__vload_m(d + c, k), llm__vload_m(w + c, k));                              \
            g0 = llm__vadd(g0, g); gx0 = llm__vfma(g, xh, gx0);)                                                      \
        const llm__vf gm = llm__vset1(llm__vhsum(g0) / LLM__CAST(float, C));                                          \
        const llm__vf gxm = llm__vset1(llm__vhsum(gx0) / LLM__CAST(float, C));                                        \
        LLM__VFOR(int, c, C, k,                                                                                       \
            const llm__vf xh = llm__vmul(llm__vsub(llm__vload_m(x + c, k), mv), sv);                                  \
            const llm__vf g = llm__vmul(llm__vload_m(d + c, k), llm__vload_m(w + c, k));                              \
            const llm__vf t = llm__vfnma(xh, gxm, llm__vsub(g, gm));                                                  \
            llm__vstore_m(dx + c, k, llm__vfma(sv, t, llm__vload_m(dx + c, k)));)                                     \
    }                                                                                                                 \
}                                                                                                                     \
LLM__VT static void LLM__ISA(llm__layernorm_bwd_dwdb)(float *dw, float *db, const float *dout, const float *inp,      \
                                                      const float *mean, const float *rstd, int N, int C,             \
                                                      int c0, int c1) {                                               \
    const int W = LLM__VW;                                                                                            \
    LLM__VFOR4(cb, c0, c1, k,                                                                                         \
        llm__vf w0 = llm__vload_m(dw + cb, k0), w1 = llm__vload_m(dw + cb + W, k1);                                   \
        llm__vf w2 = llm__vload_m(dw + cb + 2 * W, k2), w3 = llm__vload_m(dw + cb + 3 * W, k3);                       \
        llm__vf b0 = llm__vload_m(db + cb, k0), b1 = llm__vload_m(db + cb + W, k1);                                   \
        llm__vf b2 = llm__vload_m(db + cb + 2 * W, k2), b3 = llm__vload_m(db + cb + 3 * W, k3);                       \
        for (int n = 0; n < N; n++) {                                                                                 \
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;          \
            const llm__vf mv = llm__vset1(mean[n]), sv = llm__vset1(rstd[n]);                                         \
            LLM__REP4(LLM__LN_DWDB)                                                                                   \
        }                                                                                                             \
        llm__vstore_m(dw + cb, k0, w0); llm__vstore_m(dw + cb + W, k1, w1);                                           \
        llm__vstore_m(dw + cb + 2 * W, k2, w2); llm__vstore_m(dw + cb + 3 * W, k3, w3);                               \
        llm__vstore_m(db + cb, k0, b0); llm__vstore_m(db + cb + W, k1, b1);                                           \
        llm__vstore_m(db + cb + 2 * W, k2, b2); llm__vstore_m(db + cb + 3 * W, k3, b3);)                              \
}

/* ---- RMSNorm (Llama) ------------------------------------------------------------------------
 * Forward per row: r = 1/sqrt(Σx²/C + eps), out = w·(r·x). Backward split like
 * layernorm's: dx by rows, dw by channels [c0, c1) over all rows. */
#define LLM__RMS_DW(i) w##i = llm__vfma(llm__vmul(llm__vload_m(d + W * i, k##i), llm__vload_m(x + W * i, k##i)), rv, w##i);
#define LLM__K_RMSNORM                                                                                               \
LLM__VT static void LLM__ISA(llm__rmsnorm_fwd)(float *out, float *rstd, const float *inp, const float *w,            \
                                               int N, int C, float eps) {                                            \
    for (int n = 0; n < N; n++) {                                                                                    \
        const float *x = inp + LLM__CAST(size_t, n) * C;                                                             \
        float *o = out + LLM__CAST(size_t, n) * C;                                                                   \
        llm__vf a = llm__vzero();                                                                                    \
        LLM__VFOR(int, c, C, k, const llm__vf v = llm__vload_m(x + c, k); a = llm__vfma(v, v, a);)                   \
        const float r = 1.0f / sqrtf(llm__vhsum(a) / LLM__CAST(float, C) + eps);                                     \
        const llm__vf rv = llm__vset1(r);                                                                            \
        LLM__VFOR(int, c, C, k,                                                                                      \
            llm__vstore_m(o + c, k, llm__vmul(llm__vload_m(w + c, k), llm__vmul(rv, llm__vload_m(x + c, k))));)      \
        rstd[n] = r;                                                                                                 \
    }                                                                                                                \
}                                                                                                                    \
LLM__VT static void LLM__ISA(llm__rmsnorm_bwd_dx)(float *dinp, const float *dout, const float *inp, const float *w,  \
                                                  const float *rstd, int N, int C) {                                 \
    for (int n = 0; n < N; n++) {                                                                                    \
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;                       \
        float *dx = dinp + LLM__CAST(size_t, n) * C, r = rstd[n];                                                    \
        llm__vf a = llm__vzero();                                                                                    \
        LLM__VFOR(int, c, C, k,                                                                                      \
            a = llm__vfma(llm__vmul(llm__vload_m(d + c, k), llm__vload_m(w + c, k)), llm__vload_m(x + c, k), a);)    \
        const llm__vf rv = llm__vset1(r), cx = llm__vset1(r * r * (llm__vhsum(a) / LLM__CAST(float, C)));            \
        LLM__VFOR(int, c, C, k,                                                                                      \
            const llm__vf g = llm__vmul(llm__vload_m(d + c, k), llm__vload_m(w + c, k));                             \
            const llm__vf t = llm__vfnma(llm__vload_m(x + c, k), cx, g);                                             \
            llm__vstore_m(dx + c, k, llm__vfma(rv, t, llm__vload_m(dx + c, k)));)                                    \
    }                                                                                                                \
}                                                                                                                    \
LLM__VT static void LLM__ISA(llm__rmsnorm_bwd_dw)(float *dw, const float *dout, const float *inp, const float *rstd, \
                                                  int N, int C, int c0, int c1) {                                    \
    const int W = LLM__VW;                                                                                           \
    LLM__VFOR4(cb, c0, c1, k,                                                                                        \
        llm__vf w0 = llm__vload_m(dw + cb, k0), w1 = llm__vload_m(dw + cb + W, k1);                                  \
        llm__vf w2 = llm__vload_m(dw + cb + 2 * W, k2), w3 = llm__vload_m(dw + cb + 3 * W, k3);                      \
        for (int n = 0; n < N; n++) {                                                                                \
            const float *x = inp + LLM__CAST(size_t, n) * C + cb, *d = dout + LLM__CAST(size_t, n) * C + cb;         \
            const llm__vf rv = llm__vset1(rstd[n]);                                                                  \
            LLM__REP4(LLM__RMS_DW)                                                                                   \
        }                                                                                                            \
        llm__vstore_m(dw + cb, k0, w0); llm__vstore_m(dw + cb + W, k1, w1);                                          \
        llm__vstore_m(dw + cb + 2 * W, k2, w2); llm__vstore_m(dw + cb + 3 * W, k3, w3);)                             \
}

/* ---- GELU ---------------------------------------------------------------------------------
 * No tanh is needed: with z = 2u, 1 + tanh(u) = 2/(1 + e^-z) = 2σ(z), so
 *   y = x/2 · (1 + tanh u) = x · σ(z) = x / (1 + e^-z),
 * which never subtracts nearly equal numbers (0.5·(1 + tanh u) does, for u << 0: there
 * the reference itself is only accurate in absolute terms, ~1e-7·|x|). For the
 * derivative, with e = e^-z and s = σ(z) = 1/(1+e): 1 - s = e·s and 1 - tanh² u = 4s(1-s), so
 *   dy/dx = s + 2·x·s·(e·s)·du,   du = sqrt(2/π)(1 + 3·0.044715 x²).
 * z is clamped to [-88, 88] so that e stays finite (e·s would be inf·0 otherwise);
 * past the clamp σ is 0 or 1 to far below fp32 resolution of the result.
 * SwiGLU: σ(g) = 1/(1 + exp(-g)) with the vector exp (exp(-g) = inf for g < -89 gives
 * σ = 0). Residual: bandwidth-bound adds, exact (the reference's operations). */
#define LLM__GELU_ZMAX 88.0f
#define LLM__K_ELEMENTWISE                                                                                      \
LLM__VT static inline void LLM__ISA(llm__gelu_core)(llm__vf x, llm__vf *s, llm__vf *e) {                        \
    const llm__vf x3 = llm__vmul(llm__vmul(x, x), x);                                                           \
    llm__vf z = llm__vmul(llm__vset1(2.0f * LLM__GELU_K), llm__vfma(llm__vset1(0.044715f), x3, x));             \
    z = llm__vmin(llm__vset1(LLM__GELU_ZMAX), llm__vmax(llm__vset1(-LLM__GELU_ZMAX), z));                       \
    *e = llm__vexp(llm__vsub(llm__vzero(), z));                                                                 \
    *s = llm__vdiv(llm__vset1(1.0f), llm__vadd(llm__vset1(1.0f), *e));                                          \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__gelu_fwd)(float *out, const float *inp, size_t n) {                           \
    LLM__VFOR(size_t, i, n, k,                                                                                  \
        llm__vf x = llm__vload_m(inp + i, k), s, e;                                                             \
        LLM__ISA(llm__gelu_core)(x, &s, &e);                                                                    \
        llm__vstore_m(out + i, k, llm__vmul(x, s));)                                                            \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__gelu_bwd)(float *dinp, const float *inp, const float *dout, size_t n) {       \
    const llm__vf c3 = llm__vset1(3.0f * 0.044715f), one = llm__vset1(1.0f), kk = llm__vset1(LLM__GELU_K);      \
    LLM__VFOR(size_t, i, n, k,                                                                                  \
        llm__vf x = llm__vload_m(inp + i, k), s, e;                                                             \
        LLM__ISA(llm__gelu_core)(x, &s, &e);                                                                    \
        const llm__vf du = llm__vmul(kk, llm__vfma(llm__vmul(c3, x), x, one));                                  \
        const llm__vf t = llm__vmul(llm__vmul(llm__vadd(x, x), s), llm__vmul(e, s));                            \
        const llm__vf g = llm__vfma(t, du, s);                                                                  \
        llm__vstore_m(dinp + i, k, llm__vfma(llm__vload_m(dout + i, k), g, llm__vload_m(dinp + i, k)));)        \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__swiglu_fwd)(float *out, const float *inp, int N, int H) {                     \
    const llm__vf one = llm__vset1(1.0f);                                                                       \
    for (int n = 0; n < N; n++) {                                                                               \
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H;                                        \
        float *o = out + LLM__CAST(size_t, n) * H;                                                              \
        LLM__VFOR(int, i, H, k,                                                                                 \
            const llm__vf gv = llm__vload_m(g + i, k);                                                          \
            const llm__vf sg = llm__vdiv(one, llm__vadd(one, llm__vexp(llm__vsub(llm__vzero(), gv))));          \
            llm__vstore_m(o + i, k, llm__vmul(llm__vmul(gv, sg), llm__vload_m(u + i, k)));)                     \
    }                                                                                                           \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__swiglu_bwd)(float *dinp, const float *inp, const float *dout, int N, int H) { \
    const llm__vf one = llm__vset1(1.0f);                                                                       \
    for (int n = 0; n < N; n++) {                                                                               \
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H, *d = dout + LLM__CAST(size_t, n) * H;  \
        float *dg = dinp + LLM__CAST(size_t, n) * 2 * H, *du = dg + H;                                          \
        LLM__VFOR(int, i, H, k,                                                                                 \
            const llm__vf gv = llm__vload_m(g + i, k), dv = llm__vload_m(d + i, k);                             \
            const llm__vf sg = llm__vdiv(one, llm__vadd(one, llm__vexp(llm__vsub(llm__vzero(), gv))));          \
            llm__vstore_m(du + i, k, llm__vfma(llm__vmul(dv, gv), sg, llm__vload_m(du + i, k)));                \
            const llm__vf t = llm__vfma(gv, llm__vsub(one, sg), one);   /* 1 + g(1 - σ) */                      \
            const llm__vf a = llm__vmul(llm__vmul(llm__vmul(dv, llm__vload_m(u + i, k)), sg), t);               \
            llm__vstore_m(dg + i, k, llm__vadd(llm__vload_m(dg + i, k), a));)                                   \
    }                                                                                                           \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__residual_fwd)(float *out, const float *a, const float *b, size_t n) {         \
    LLM__VFOR(size_t, i, n, k,                                                                                  \
        llm__vstore_m(out + i, k, llm__vadd(llm__vload_m(a + i, k), llm__vload_m(b + i, k)));)                  \
}                                                                                                               \
LLM__VT static void LLM__ISA(llm__residual_bwd)(float *da, float *db, const float *dout, size_t n) {            \
    LLM__VFOR(size_t, i, n, k,                                                                                  \
        const llm__vf d = llm__vload_m(dout + i, k);                                                            \
        llm__vstore_m(da + i, k, llm__vadd(llm__vload_m(da + i, k), d));                                        \
        llm__vstore_m(db + i, k, llm__vadd(llm__vload_m(db + i, k), d));)                                       \
}

/* ---- cross-entropy, Σx², AdamW ------------------------------------------------------------
 * Cross-entropy forward: per row a max pass, then Σ exp(x - max) (the row, 200 KB at
 * V = 50257, is read back from L2). Masked tail lanes load -inf, whose exp is exactly 0.
 * Backward: x = exp(x - lse)·dloss over the row, then the target's element is redone
 * with the reference's formula (expf(x_y - lse) - 1)·dloss.
 * Σx² in double: half vectors of floats loaded widened to doubles, four accumulators.
 * AdamW: the reference's operations in its order (no FMA). */
#define LLM__K_LOSS_OPT                                                                                                \
LLM__VT static void LLM__ISA(llm__crossentropy_fwd)(float *losses, float *lse, const float *logits,                    \
                                                    const int *targets, int N, int V) {                                \
    const int W = LLM__VW;                                                                                             \
    const llm__vf ninf = llm__vset1(-INFINITY);                                                                        \
    for (int n = 0; n < N; n++) {                                                                                      \
        const float *x = logits + LLM__CAST(size_t, n) * V;                                                            \
        llm__vf m0 = ninf, m1 = ninf, s0 = llm__vzero(), s1 = llm__vzero();                                            \
        int i = 0;                                                                                                     \
        for (; i + 2 * W <= V; i += 2 * W) {                                                                           \
            m0 = llm__vmax(m0, llm__vload(x + i)); m1 = llm__vmax(m1, llm__vload(x + i + W));                          \
        }                                                                                                              \
        for (; i < V; i += W) m0 = llm__vmax(m0, llm__vload_mor(x + i, llm__vmask(V - i), ninf));                      \
        const float m = llm__vhmax(llm__vmax(m0, m1));                                                                 \
        const llm__vf mv = llm__vset1(m);                                                                              \
        for (i = 0; i + 2 * W <= V; i += 2 * W) {                                                                      \
            s0 = llm__vadd(s0, llm__vexp(llm__vsub(llm__vload(x + i), mv)));                                           \
            s1 = llm__vadd(s1, llm__vexp(llm__vsub(llm__vload(x + i + W), mv)));                                       \
        }                                                                                                              \
        for (; i < V; i += W)                                                                                          \
            s0 = llm__vadd(s0, llm__vexp(llm__vsub(llm__vload_mor(x + i, llm__vmask(V - i), ninf), mv)));              \
        lse[n] = m + logf(llm__vhsum(llm__vadd(s0, s1)));                                                              \
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - x[targets[n]];                                                    \
    }                                                                                                                  \
}                                                                                                                      \
LLM__VT static void LLM__ISA(llm__crossentropy_bwd)(float *logits, const float *lse, const int *targets,               \
                                                    float dloss, int N, int V) {                                       \
    const llm__vf dl = llm__vset1(dloss);                                                                              \
    for (int n = 0; n < N; n++) {                                                                                      \
        float *x = logits + LLM__CAST(size_t, n) * V;                                                                  \
        const int y = targets[n];                                                                                      \
        if (y < 0) { memset(x, 0, LLM__CAST(size_t, V) * sizeof(float)); continue; }                                   \
        const float xy = x[y];                                                                                         \
        const llm__vf l = llm__vset1(lse[n]);                                                                          \
        LLM__VFOR(int, i, V, k,                                                                                        \
            llm__vstore_m(x + i, k, llm__vmul(llm__vexp(llm__vsub(llm__vload_m(x + i, k), l)), dl));)                  \
        x[y] = (expf(xy - lse[n]) - 1.0f) * dloss;                                                                     \
    }                                                                                                                  \
}                                                                                                                      \
LLM__VT static double LLM__ISA(llm__sumsq)(const float *x, size_t n) {                                                 \
    const size_t W = LLM__VW;                                                                                          \
    llm__vd a0 = llm__vd_zero(), a1 = llm__vd_zero(), a2 = llm__vd_zero(), a3 = llm__vd_zero();                        \
    size_t i = 0;                                                                                                      \
    for (; i + 2 * W <= n; i += 2 * W) {                                                                               \
        const llm__vd u0 = llm__vd_load(x + i), u1 = llm__vd_load(x + i + W / 2);                                      \
        const llm__vd v0 = llm__vd_load(x + i + W), v1 = llm__vd_load(x + i + 3 * W / 2);                              \
        a0 = llm__vd_fma(u0, u0, a0); a1 = llm__vd_fma(u1, u1, a1);                                                    \
        a2 = llm__vd_fma(v0, v0, a2); a3 = llm__vd_fma(v1, v1, a3);                                                    \
    }                                                                                                                  \
    double s = llm__vd_hsum(llm__vd_add(llm__vd_add(a0, a1), llm__vd_add(a2, a3)));                                    \
    for (; i < n; i++) s += LLM__CAST(double, x[i]) * x[i];                                                            \
    return s;                                                                                                          \
}                                                                                                                      \
LLM__VT static void LLM__ISA(llm__adamw)(float *p, const float *grad, float *m, float *v, size_t n, float lr,          \
                                         float beta1, float beta2, float eps, float wd, float grad_scale, int t) {     \
    const float bc1 = 1.0f - powf(beta1, LLM__CAST(float, t)), bc2 = 1.0f - powf(beta2, LLM__CAST(float, t));          \
    const llm__vf b1 = llm__vset1(beta1), b2 = llm__vset1(beta2), ob1 = llm__vset1(1.0f - beta1);                      \
    const llm__vf ob2 = llm__vset1(1.0f - beta2), lrwd = llm__vset1(lr * wd), vlr = llm__vset1(lr);                    \
    const llm__vf vbc1 = llm__vset1(bc1), vbc2 = llm__vset1(bc2), veps = llm__vset1(eps), gs = llm__vset1(grad_scale); \
    LLM__VFOR(size_t, i, n, k,                                                                                         \
        const llm__vf g = llm__vmul(llm__vload_m(grad + i, k), gs);                                                    \
        const llm__vf mi = llm__vadd(llm__vmul(b1, llm__vload_m(m + i, k)), llm__vmul(ob1, g));                        \
        const llm__vf vi = llm__vadd(llm__vmul(b2, llm__vload_m(v + i, k)), llm__vmul(llm__vmul(ob2, g), g));          \
        llm__vf pi = llm__vload_m(p + i, k);                                                                           \
        pi = llm__vsub(pi, llm__vmul(lrwd, pi));                                                                       \
        const llm__vf den = llm__vadd(llm__vsqrt(llm__vdiv(vi, vbc2)), veps);                                          \
        pi = llm__vsub(pi, llm__vdiv(llm__vmul(vlr, llm__vdiv(mi, vbc1)), den));                                       \
        llm__vstore_m(m + i, k, mi); llm__vstore_m(v + i, k, vi); llm__vstore_m(p + i, k, pi);)                        \
}

/* ---- attention ----------------------------------------------------------------------------
 * Flash-attention's online softmax, laid out so that the vector lanes are queries.
 * A block of W = LLM__VW queries is packed transposed, scaled by 1/sqrt(HS):
 * qt[d][i] = q_{t0+i}[d]/sqrt(HS) (on the stack, HS·W floats). Then for each group of 8
 * keys j, the scores of all W queries come out as one vector each,
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
 * one thread), per query block, recomputing p = exp(s - lse) as the reference does,
 * LLM__ATT_BK keys at a time (8; AVX2's 16 registers hold 4):
 *     dp_j = Σ_d dot[d] · v_j[d]              (dot = dout block, transposed like qt)
 *     ds_j = p_j (dp_j - D) / sqrt(HS),       D_i = dout_i · out_i
 *     dqt[d] += Σ_j ds_j · k_j[d]             (lane-wise, like ot)
 *     dv_j += Σ_i p_j[i] dout_i,  dk_j += Σ_i ds_j[i] q_i   (across lanes: vectorised over d)
 * Lanes past T are padding: their q and dout are 0 and their lse +inf, so p = ds = 0.
 * HS above LLM__ATT_HSMAX (or below 1) falls back to the reference head loop. */
#define LLM__ATT_HSMAX 256
#define LLM__ATT_BK LLM__ISA(LLM__ATT_BK)
#define LLM__ATT_BREP LLM__ISA(LLM__ATT_BREP)
#define LLM__ATT_BK_avx2 4
#define LLM__ATT_BREP_avx2 LLM__REP4
#define LLM__ATT_BK_avx512 8
#define LLM__ATT_BREP_avx512 LLM__REP8
#define LLM__ATT_BK_neon 8
#define LLM__ATT_BREP_neon LLM__REP8

/* dst[d*W + i] = src[i*ld + d]·scale for i < n, 0 for n <= i < W: a block of rows, transposed. */
static void llm__att_pack(float *dst, int W, const float *src, size_t ld, int n, int HS, float scale) {
    for (int i = 0; i < W; i++) {
        const float *s = src + LLM__CAST(size_t, i) * ld;
        for (int d = 0; d < HS; d++) dst[d * W + i] = i < n ? s[d] * scale : 0.0f;
    }
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
/* the pieces of the key loops, for key j of the group (keys past the last reuse its row) */
#define LLM__ATT_KV(j) const float *k##j = base + LLM__CAST(size_t, j0 + (j < last ? j : last)) * row + koff; \
    const float *v##j = k##j + (voff - koff); llm__vf s##j = llm__vzero(), e##j = s##j; (void)v##j; (void)e##j;
#define LLM__ATT_S(j) s##j = llm__vfma(q, llm__vset1(k##j[d]), s##j);
#define LLM__ATT_SE(j) s##j = llm__vfma(q, llm__vset1(k##j[d]), s##j); e##j = llm__vfma(o, llm__vset1(v##j[d]), e##j);
#define LLM__ATT_MASK(j) s##j = llm__vsel(llm__vle(llm__vset1(LLM__CAST(float, j0 + j)), tq), s##j, ninf);
#define LLM__ATT_P(j) const llm__vf p##j = llm__vexp(llm__vsub(s##j, m));
#define LLM__ATT_PV(j) o = llm__vfma(p##j, llm__vset1(v##j[d]), o);
/* s becomes p = exp(s - lse), e becomes ds = p (dp - D) / sqrt(HS) */
#define LLM__ATT_DS(j) s##j = llm__vexp(llm__vsub(s##j, Lv)); \
    e##j = llm__vmul(llm__vmul(s##j, llm__vsub(e##j, Dv)), vscale); \
    llm__vstorea(pj[j], s##j); llm__vstorea(dsj[j], e##j);
#define LLM__ATT_DQ(j) a = llm__vfma(e##j, llm__vset1(k##j[d]), a);
#define LLM__ATT_RLD(j) llm__vf a##j = llm__vload_m(dv + c + W * j, m##j), b##j = llm__vload_m(dk + c + W * j, m##j);
#define LLM__ATT_RACC(j) a##j = llm__vfma(pi, llm__vload_m(o + W * j, m##j), a##j); \
    b##j = llm__vfma(si, llm__vload_m(qq + W * j, m##j), b##j);
#define LLM__ATT_RST(j) llm__vstore_m(dv + c + W * j, m##j, a##j); llm__vstore_m(dk + c + W * j, m##j, b##j);
#define LLM__K_ATTENTION                                                                                                       \
LLM__VT static void LLM__ISA(llm__attention_fwd)(float *out, float *lse, const float *qkv, int b, int h,                       \
                                                 int T, int NH, int NKV, int HS) {                                             \
    const int W = LLM__VW;                                                                                                     \
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));                                                                    \
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;                                   \
    const size_t qoff = LLM__CAST(size_t, h) * HS;                                                                             \
    const size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;                 \
    const float *base = qkv + LLM__CAST(size_t, b) * T * row;                                                                  \
    float qt[LLM__ATT_HSMAX * LLM__VW] __attribute__((aligned(64)));                                                           \
    float ot[LLM__ATT_HSMAX * LLM__VW] __attribute__((aligned(64)));                                                           \
    float lm[LLM__VW] __attribute__((aligned(64))), ll[LLM__VW] __attribute__((aligned(64)));                                  \
    const llm__vf ninf = llm__vset1(-INFINITY), iota = llm__viota();                                                           \
    for (int t0 = 0; t0 < T; t0 += W) {                                                                                        \
        const int nq = T - t0 < W ? T - t0 : W, kend = t0 + nq;                                                                \
        llm__att_pack(qt, W, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);                                   \
        for (int d = 0; d < HS; d++) llm__vstorea(ot + d * W, llm__vzero());                                                   \
        llm__vf m = ninf, l = llm__vzero();                                                                                    \
        const llm__vf tq = llm__vadd(llm__vset1(LLM__CAST(float, t0)), iota);                                                  \
        for (int j0 = 0; j0 < kend; j0 += 8) {                                                                                 \
            const int last = (kend - j0 < 8 ? kend - j0 : 8) - 1;                                                              \
            LLM__REP8(LLM__ATT_KV)                                                                                             \
            for (int d = 0; d < HS; d++) {                                                                                     \
                const llm__vf q = llm__vloada(qt + d * W);                                                                     \
                LLM__REP8(LLM__ATT_S)                                                                                          \
            }                                                                                                                  \
            if (j0 + 7 > t0) { LLM__REP8(LLM__ATT_MASK) }   /* key j0+j is visible to lane i iff j0+j <= t0+i */               \
            llm__vf mx = llm__vmax(llm__vmax(llm__vmax(s0, s1), llm__vmax(s2, s3)),                                            \
                                   llm__vmax(llm__vmax(s4, s5), llm__vmax(s6, s7)));                                           \
            mx = llm__vmax(m, mx);                                                                                             \
            const llm__vf alpha = llm__vexp(llm__vsub(m, mx));                                                                 \
            m = mx;                                                                                                            \
            LLM__REP8(LLM__ATT_P)                                                                                              \
            l = llm__vfma(l, alpha, llm__vadd(llm__vadd(llm__vadd(p0, p1), llm__vadd(p2, p3)),                                 \
                                              llm__vadd(llm__vadd(p4, p5), llm__vadd(p6, p7))));                               \
            for (int d = 0; d < HS; d++) {                                                                                     \
                llm__vf o = llm__vmul(llm__vloada(ot + d * W), alpha);                                                         \
                LLM__REP8(LLM__ATT_PV)                                                                                         \
                llm__vstorea(ot + d * W, o);                                                                                   \
            }                                                                                                                  \
        }                                                                                                                      \
        llm__vstorea(lm, m); llm__vstorea(ll, l);                                                                              \
        for (int i = 0; i < nq; i++) {                                                                                         \
            float *o = out + (LLM__CAST(size_t, b) * T + t0 + i) * C + qoff;                                                   \
            for (int d = 0; d < HS; d++) o[d] = ot[d * W + i] / ll[i];                                                         \
            lse[(LLM__CAST(size_t, b) * NH + h) * T + t0 + i] = lm[i] + logf(ll[i]);                                           \
        }                                                                                                                      \
    }                                                                                                                          \
}                                                                                                                              \
/* dv += Σ_i p[i] dO_i, dk += Σ_i ds[i] q_i over the n rows of a query block, 4 vectors of                                     \
 * columns at a time so that 8 independent sums are in flight. */                                                              \
LLM__VT static void LLM__ISA(llm__att_kv_rows)(float *dk, float *dv, const float *p, const float *ds,                          \
                                               const float *dO, size_t ldo, const float *q, size_t ldq, int n, int HS) {       \
    const int W = LLM__VW;                                                                                                     \
    LLM__VFOR4(c, 0, HS, m,                                                                                                    \
        LLM__REP4(LLM__ATT_RLD)                                                                                                \
        for (int i = 0; i < n; i++) {                                                                                          \
            const llm__vf pi = llm__vset1(p[i]), si = llm__vset1(ds[i]);                                                       \
            const float *o = dO + LLM__CAST(size_t, i) * ldo + c, *qq = q + LLM__CAST(size_t, i) * ldq + c;                    \
            LLM__REP4(LLM__ATT_RACC)                                                                                           \
        }                                                                                                                      \
        LLM__REP4(LLM__ATT_RST))                                                                                               \
}                                                                                                                              \
LLM__VT static void LLM__ISA(llm__attention_bwd_group)(float *dqkv, const float *dout, const float *qkv,                       \
                                                       const float *out, const float *lse, int b, int g,                       \
                                                       int T, int NH, int NKV, int HS) {                                       \
    const int W = LLM__VW, BK = LLM__ATT_BK;                                                                                   \
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));                                                                    \
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;                                   \
    const size_t koff = C + LLM__CAST(size_t, g) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;                              \
    const size_t off = LLM__CAST(size_t, b) * T * row;                                                                         \
    const float *base = qkv + off;                                                                                             \
    float *dbase = dqkv + off;                                                                                                 \
    const int grp = NH / NKV;                                                                                                  \
    float qt[LLM__ATT_HSMAX * LLM__VW] __attribute__((aligned(64)));                                                           \
    float dot[LLM__ATT_HSMAX * LLM__VW] __attribute__((aligned(64)));                                                          \
    float dqt[LLM__ATT_HSMAX * LLM__VW] __attribute__((aligned(64)));                                                          \
    float Dl[LLM__VW] __attribute__((aligned(64))), Ll[LLM__VW] __attribute__((aligned(64)));                                  \
    float pj[LLM__ATT_BK][LLM__VW] __attribute__((aligned(64))), dsj[LLM__ATT_BK][LLM__VW] __attribute__((aligned(64)));       \
    const llm__vf ninf = llm__vset1(-INFINITY), vscale = llm__vset1(scale), iota = llm__viota();                               \
    for (int h = g * grp; h < (g + 1) * grp; h++) {                                                                            \
        const size_t qoff = LLM__CAST(size_t, h) * HS;                                                                         \
        for (int t0 = 0; t0 < T; t0 += W) {                                                                                    \
            const int nq = T - t0 < W ? T - t0 : W, kend = t0 + nq;                                                            \
            const size_t orow = (LLM__CAST(size_t, b) * T + t0) * C + qoff;                                                    \
            llm__att_pack(qt, W, base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS, scale);                               \
            llm__att_pack(dot, W, dout + orow, C, nq, HS, 1.0f);                                                               \
            llm__att_bwd_stats(Dl, Ll, W, dout + orow, out + orow, lse + (LLM__CAST(size_t, b) * NH + h) * T + t0, C, nq, HS); \
            for (int d = 0; d < HS; d++) llm__vstorea(dqt + d * W, llm__vzero());                                              \
            const llm__vf Dv = llm__vloada(Dl), Lv = llm__vloada(Ll);                                                          \
            const llm__vf tq = llm__vadd(llm__vset1(LLM__CAST(float, t0)), iota);                                              \
            for (int j0 = 0; j0 < kend; j0 += BK) {                                                                            \
                const int nk = kend - j0 < BK ? kend - j0 : BK, last = nk - 1;                                                 \
                LLM__ATT_BREP(LLM__ATT_KV)                                                                                     \
                for (int d = 0; d < HS; d++) {                                                                                 \
                    const llm__vf q = llm__vloada(qt + d * W), o = llm__vloada(dot + d * W);                                   \
                    LLM__ATT_BREP(LLM__ATT_SE)                                                                                 \
                }                                                                                                              \
                if (j0 + BK - 1 > t0) { LLM__ATT_BREP(LLM__ATT_MASK) }                                                         \
                LLM__ATT_BREP(LLM__ATT_DS)                                                                                     \
                for (int d = 0; d < HS; d++) {                                                                                 \
                    llm__vf a = llm__vloada(dqt + d * W);                                                                      \
                    LLM__ATT_BREP(LLM__ATT_DQ)                                                                                 \
                    llm__vstorea(dqt + d * W, a);                                                                              \
                }                                                                                                              \
                for (int j = 0; j < nk; j++) {                                                                                 \
                    float *dk = dbase + LLM__CAST(size_t, j0 + j) * row + koff;                                                \
                    LLM__ISA(llm__att_kv_rows)(dk, dk + (voff - koff), pj[j], dsj[j], dout + orow, C,                          \
                                               base + LLM__CAST(size_t, t0) * row + qoff, row, nq, HS);                        \
                }                                                                                                              \
            }                                                                                                                  \
            for (int i = 0; i < nq; i++) {                                                                                     \
                float *dq = dbase + LLM__CAST(size_t, t0 + i) * row + qoff;                                                    \
                for (int d = 0; d < HS; d++) dq[d] += dqt[d * W + i];                                                          \
            }                                                                                                                  \
        }                                                                                                                      \
    }                                                                                                                          \
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
 * horizontal sum: four keys share one reduction tree (llm__vhsum4). The p·V sum keeps
 * 4 vectors of columns in registers and alternates two sets of accumulators between
 * even and odd keys, so that eight FMA chains are in flight. Nothing is bounded by the
 * context length; HS above LLM__ATT_HSMAX falls back to the reference. The result of a
 * (row, head) depends only on its inputs, so any split over threads gives the same bits. */
#define LLM__KV_CHUNK 256
#define LLM__KV_LD(x) llm__vf o##x = llm__vmul(llm__vload_m(acc + c + W * x, m##x), va), e##x = llm__vzero();
#define LLM__KV_PV2(x) o##x = llm__vfma(p0, llm__vload_m(v0 + W * x, m##x), o##x); \
    e##x = llm__vfma(p1, llm__vload_m(v1 + W * x, m##x), e##x);
#define LLM__KV_PV1(x) o##x = llm__vfma(p0, llm__vload_m(v0 + W * x, m##x), o##x);
#define LLM__KV_ST(x) llm__vstore_m(acc + c + W * x, m##x, llm__vadd(o##x, e##x));
#define LLM__K_ATTENTION_KV                                                                                               \
LLM__VT static void LLM__ISA(llm__attention_kv_head)(float *out, const float *qkv, const float *kcache,                   \
                                                     const float *vcache, const int *seq, const int *pos,                 \
                                                     int i, int h, int NH, int NKV, int HS, int maxT) {                   \
    const int W = LLM__VW;                                                                                                \
    const size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;                           \
    const size_t base = LLM__CAST(size_t, seq[i]) * maxT * kvw + LLM__CAST(size_t, h / (NH / NKV)) * HS;                  \
    const float *q = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, h) * HS;                                        \
    const float *K = kcache + base, *V = vcache + base;                                                                   \
    float *o = out + LLM__CAST(size_t, i) * NH * HS + LLM__CAST(size_t, h) * HS;                                          \
    float sc[LLM__KV_CHUNK] __attribute__((aligned(64)));                                                                 \
    float acc[LLM__ATT_HSMAX] __attribute__((aligned(64)));                                                               \
    const int n = pos[i] + 1;                                                                                             \
    const float scale = 1.0f / sqrtf(LLM__CAST(float, HS));                                                               \
    const llm__vf ninf = llm__vset1(-INFINITY);                                                                           \
    float m = -INFINITY, l = 0.0f;                                                                                        \
    for (int d = 0; d < HS; d++) acc[d] = 0.0f;                                                                           \
    for (int t0 = 0; t0 < n; t0 += LLM__KV_CHUNK) {                                                                       \
        const int nc = n - t0 < LLM__KV_CHUNK ? n - t0 : LLM__KV_CHUNK;                                                   \
        const float *Kc = K + LLM__CAST(size_t, t0) * kvw, *Vc = V + LLM__CAST(size_t, t0) * kvw;                         \
        for (int j = 0; j < nc; j += 4) {   /* scores, four keys at a time (past nc: repeat the last) */                  \
            const float *k0 = Kc + LLM__CAST(size_t, j) * kvw;                                                            \
            const float *k1 = j + 1 < nc ? k0 + kvw : k0, *k2 = j + 2 < nc ? k0 + 2 * kvw : k0;                           \
            const float *k3 = j + 3 < nc ? k0 + 3 * kvw : k0;                                                             \
            llm__vf a0 = llm__vzero(), a1 = a0, a2 = a0, a3 = a0;                                                         \
            LLM__VFOR(int, d, HS, mk,                                                                                     \
                const llm__vf qv = llm__vload_m(q + d, mk);                                                               \
                a0 = llm__vfma(qv, llm__vload_m(k0 + d, mk), a0);                                                         \
                a1 = llm__vfma(qv, llm__vload_m(k1 + d, mk), a1);                                                         \
                a2 = llm__vfma(qv, llm__vload_m(k2 + d, mk), a2);                                                         \
                a3 = llm__vfma(qv, llm__vload_m(k3 + d, mk), a3);)                                                        \
            llm__vhsum4(sc + j, a0, a1, a2, a3, scale);   /* sc has room: j + 4 <= LLM__KV_CHUNK */                       \
        }                                                                                                                 \
        llm__vf mx = ninf;                                                                                                \
        LLM__VFOR(int, j, nc, mk, mx = llm__vmax(mx, llm__vload_mor(sc + j, mk, ninf));)                                  \
        const float mc = llm__vhmax(mx), mn = m > mc ? m : mc;                                                            \
        const float alpha = expf(m - mn);   /* first chunk: exp(-inf) = 0, acc and l are 0 */                             \
        m = mn;                                                                                                           \
        llm__vf ls = llm__vzero();                                                                                        \
        const llm__vf mv = llm__vset1(m);                                                                                 \
        LLM__VFOR(int, j, nc, mk,   /* p = exp(s - m); lanes past nc load -inf: p = 0 */                                  \
            const llm__vf p = llm__vexp(llm__vsub(llm__vload_mor(sc + j, mk, ninf), mv));                                 \
            llm__vstorea(sc + j, p);                                                                                      \
            ls = llm__vadd(ls, p);)                                                                                       \
        l = l * alpha + llm__vhsum(ls);                                                                                   \
        const llm__vf va = llm__vset1(alpha);                                                                             \
        LLM__VFOR4(c, 0, HS, m,   /* acc[c, c + 4W) = acc·α + Σ_t p_t v_t */                                              \
            LLM__REP4(LLM__KV_LD)                                                                                         \
            const float *v0 = Vc + c;                                                                                     \
            int j = 0;                                                                                                    \
            for (; j + 2 <= nc; j += 2, v0 += 2 * kvw) {                                                                  \
                const llm__vf p0 = llm__vset1(sc[j]), p1 = llm__vset1(sc[j + 1]);                                         \
                const float *v1 = v0 + kvw;                                                                               \
                LLM__REP4(LLM__KV_PV2)                                                                                    \
            }                                                                                                             \
            if (j < nc) {                                                                                                 \
                const llm__vf p0 = llm__vset1(sc[j]);                                                                     \
                LLM__REP4(LLM__KV_PV1)                                                                                    \
            }                                                                                                             \
            LLM__REP4(LLM__KV_ST))                                                                                        \
    }                                                                                                                     \
    const llm__vf vl = llm__vset1(l);                                                                                     \
    LLM__VFOR(int, d, HS, mk,                                                                                             \
        llm__vstore_m(o + d, mk, llm__vdiv(llm__vload_m(acc + d, mk), vl));)                                              \
}

/* ---- RoPE -----------------------------------------------------------------------------------
 * The angles must be llama2.c's to the bit (greedy output is compared with it byte for
 * byte), so they stay libm's, computed as the reference does (llm__rope_table). What is
 * vectorised is the rotation of the NH + NKV heads: with c, s duplicated per pair,
 * cv = [c c ...], sv = [-s s ...], and x' = x with each pair swapped,
 *     out = x·cv + x'·sv  = [x0 c - x1 s,  x1 c + x0 s]
 * which are the reference's products and sums, each rounded once, so the rows are
 * bit-identical to it. No FMA: a fused multiply-add rounds once where the reference
 * rounds twice, and compilers that contract a*b + c*d (gcc outside ISO C modes) would
 * fuse the vector products too, so an empty asm hands each product over as a value. */
#define LLM__ROPE_HSMAX 1024   /* larger (or odd) head sizes: the reference */
static void llm__rope_table(float *cs, int p, int HS, const float *freq, float sign) {   /* cv (HS), sv (HS) */
    for (int i = 0; i < HS; i += 2) {
        float val = LLM__CAST(float, p) * freq[i / 2], c = cosf(val), s = sign * sinf(val);
        cs[i] = cs[i + 1] = c;
        cs[HS + i] = -s; cs[HS + i + 1] = s;
    }
}
#define LLM__K_ROPE                                                                                                  \
LLM__VT static void LLM__ISA(llm__rope_row)(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign, \
                                            float *cs) {                                                             \
    llm__rope_table(cs, p, HS, freq, sign);                                                                          \
    LLM__VFOR(int, i, HS, k,                                                                                         \
        const llm__vf cv = llm__vload_m(cs + i, k), sv = llm__vload_m(cs + HS + i, k);                               \
        for (int h = 0; h < NH + NKV; h++) {                                                                         \
            float *v = x + LLM__CAST(size_t, h) * HS + i;                                                            \
            const llm__vf a = llm__vload_m(v, k), sw = llm__vswap_pairs(a);                                          \
            llm__vf pc = llm__vmul(a, cv), ps = llm__vmul(sw, sv);                                                   \
            llm__vkeep(pc); llm__vkeep(ps);                                                                          \
            llm__vstore_m(v, k, llm__vadd(pc, ps));                                                                  \
        })                                                                                                           \
}

/* ---- every body, compiled for each instruction set this build can run -------------------- */
#define LLM__K_ALL LLM__K_EXP LLM__K_LAYERNORM LLM__K_RMSNORM LLM__K_ELEMENTWISE LLM__K_LOSS_OPT \
    LLM__K_ATTENTION LLM__K_ATTENTION_KV LLM__K_ROPE
#ifdef LLM__X86
#define LLM__V avx2
LLM__K_ALL
#undef LLM__V
#define LLM__V avx512
LLM__K_ALL
#undef LLM__V
#endif
#ifdef LLM__NEON
#define LLM__V neon
LLM__K_ALL
#undef LLM__V
#endif

/* ---- the dispatchers: the best level this build and CPU allow, else the reference ------ */
#if defined(LLM__X86)
#define LLM__DISPATCH(name, args) do { llm_simd lvl_ = llm_simd_active(); \
    if (lvl_ == LLM_SIMD_AVX512) { name##_avx512 args; return; } \
    if (lvl_ == LLM_SIMD_AVX2) { name##_avx2 args; return; } } while (0)
#elif defined(LLM__NEON)
#define LLM__DISPATCH(name, args) do { \
    if (llm_simd_active() == LLM_SIMD_NEON) { name##_neon args; return; } } while (0)
#else
#define LLM__DISPATCH(name, args) do { } while (0)
#endif
static LLM__UNUSED void llm__layernorm_fwd_fast(float *out, float *mean, float *rstd, const float *inp,
                                                const float *w, const float *b, int N, int C) {
    LLM__DISPATCH(llm__layernorm_fwd, (out, mean, rstd, inp, w, b, N, C));
    llm__layernorm_fwd_ref(out, mean, rstd, inp, w, b, N, C);
}
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
static LLM__UNUSED void llm__gelu_fwd_fast(float *out, const float *inp, size_t n) {
    LLM__DISPATCH(llm__gelu_fwd, (out, inp, n));
    llm__gelu_fwd_ref(out, inp, n);
}
static LLM__UNUSED void llm__gelu_bwd_fast(float *dinp, const float *inp, const float *dout, size_t n) {
    LLM__DISPATCH(llm__gelu_bwd, (dinp, inp, dout, n));
    llm__gelu_bwd_ref(dinp, inp, dout, n);
}
static LLM__UNUSED void llm__swiglu_fwd_fast(float *out, const float *inp, int N, int H) {
    LLM__DISPATCH(llm__swiglu_fwd, (out, inp, N, H));
    llm__swiglu_fwd_ref(out, inp, N, H);
}
static LLM__UNUSED void llm__swiglu_bwd_fast(float *dinp, const float *inp, const float *dout, int N, int H) {
    LLM__DISPATCH(llm__swiglu_bwd, (dinp, inp, dout, N, H));
    llm__swiglu_bwd_ref(dinp, inp, dout, N, H);
}
static LLM__UNUSED void llm__residual_fwd_fast(float *out, const float *a, const float *b, size_t n) {
    LLM__DISPATCH(llm__residual_fwd, (out, a, b, n));
    llm__residual_fwd_ref(out, a, b, n);
}
static LLM__UNUSED void llm__residual_bwd_fast(float *da, float *db, const float *dout, size_t n) {
    LLM__DISPATCH(llm__residual_bwd, (da, db, dout, n));
    llm__residual_bwd_ref(da, db, dout, n);
}
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
static LLM__UNUSED double llm__sumsq_fast(const float *x, size_t n) {
    llm_simd lvl = llm_simd_active();
#if defined(LLM__X86)
    if (lvl == LLM_SIMD_AVX512) return llm__sumsq_avx512(x, n);
    if (lvl == LLM_SIMD_AVX2) return llm__sumsq_avx2(x, n);
#elif defined(LLM__NEON)
    if (lvl == LLM_SIMD_NEON) return llm__sumsq_neon(x, n);
#endif
    (void)lvl;
    return llm__sumsq_ref(x, n);
}
static LLM__UNUSED void llm__adamw_fast(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                                        float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    LLM__DISPATCH(llm__adamw, (p, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t));
    llm__adamw_ref(p, grad, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t);
}
/* attention: one (b, h) forward; one (b, key/value group) backward */
static LLM__UNUSED void llm__attention_fwd_fast(float *out, float *lse, const float *qkv, int b, int h,
                                                int T, int NH, int NKV, int HS) {
    if (HS >= 1 && HS <= LLM__ATT_HSMAX) LLM__DISPATCH(llm__attention_fwd, (out, lse, qkv, b, h, T, NH, NKV, HS));
    llm__attention_fwd_head(out, lse, qkv, b, h, T, NH, NKV, HS);
}
static LLM__UNUSED void llm__attention_bwd_group_fast(float *dqkv, const float *dout, const float *qkv,
                                                      const float *out, const float *lse, int b, int g,
                                                      int T, int NH, int NKV, int HS) {
    if (HS >= 1 && HS <= LLM__ATT_HSMAX)
        LLM__DISPATCH(llm__attention_bwd_group, (dqkv, dout, qkv, out, lse, b, g, T, NH, NKV, HS));
    for (int h = g * (NH / NKV), e = h + NH / NKV; h < e; h++)
        llm__attention_bwd_head(dqkv, dout, qkv, out, lse, b, h, T, NH, NKV, HS);
}
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
/* One row (HS even; the frequencies given, cs scratch of 2·HS floats). */
static LLM__UNUSED void llm__rope_row_fast(float *x, int p, int NH, int NKV, int HS, const float *freq, float sign,
                                           float *cs) {
    (void)cs; /* used only by the SIMD kernels */
    LLM__DISPATCH(llm__rope_row, (x, p, NH, NKV, HS, freq, sign, cs));
    llm__rope_row_ref(x, p, NH, NKV, HS, 0.0f, freq, sign);
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
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
//==== QUANT ============================================================================
/* Weights in fewer bytes, for inference: Q8_0 (8.5 bits a weight) and bfloat16 (16 bits).
 * Decoding a token reads every weight once (see the matrix-vector notes in SIMD), so its
 * speed is the weights' bytes over the memory bandwidth: 4 bytes a weight in fp32, 2 in
 * bf16, 34/32 in Q8_0.
 *
 * Q8_0 is ggml's format (llama.cpp's "Q8_0"): each run of 32 consecutive weights of a row
 * is one block of 32 int8 values q and an fp16 scale d, w ~= d q, with d = max|w| / 127
 * rounded to fp16 and q = round(w / d), so every weight is within d/2 of its value.
 * A matmul quantizes its activation rows the same way on the fly (blocks of 32, an fp32
 * scale), which turns the inner product of two blocks into a sum of 32 int8 x int8
 * products, exact in int32 on every machine:
 *     y[i][j] = sum over blocks b of  s(i,j,b) * (dw[j][b] * dx[i][b])
 *     s(i,j,b) = sum over k in block b of  qw[j][k] * qx[i][k]        (int32, exact)
 * The float sum over b runs in b order, one fused multiply-add per block:
 *     acc = llm__fmaf((float)s, dw * dx, acc)          (|s| < 2^24 converts exactly)
 * so every SIMD level gives the scalar reference's bits (tests/test_quant.c checks it).
 *
 * Files hold Q8_0 as ggml does: row-major blocks of 34 bytes (llm__q8_0). In memory the
 * kernels keep the same bytes in another order, tiles of 16 rows. Block b of tile t
 * (rows 16t .. 16t+15) is 544 bytes: the 16 rows' fp16 scales, then for each group g of
 * 4 k (k = 32b + 4g .. 32b + 4g + 3) the 16 rows' four int8 values side by side:
 *     [ d(r0) .. d(r15) ] [ q(r0, 4 k) q(r1, 4 k) .. q(r15, 4 k) ] x 8 groups
 * One 64-byte load then holds 4 k of 16 rows: 16 lanes, each with the 4 products of one
 * output to add up, which is exactly what AVX-512 VNNI's vpdpbusd and ARM's sdot compute
 * (the activation's 4 values broadcast to every lane). Each lane accumulates one output,
 * so no horizontal sums are needed, and the rows of a batch reuse a tile from L1. A
 * tile's blocks follow each other in k order, so a thread streams its tiles in address
 * order. Rows past N are zero (scale 0); K is zero-padded to a multiple of 32 (the
 * activation's padding is zero too). (llama.cpp's CPU backend also repacks weights for
 * its kernels; this layout is our own.)
 *
 * bf16 weights (the top half of a float32, see the bf16 GEMM in SIMD) are tiled the same
 * way: pair p (k = 2p, 2p+1) of a tile is 64 bytes, one 32-bit word per row holding
 * (bf16 w[r][2p], bf16 w[r][2p+1]), the operand layout of AVX512-BF16's vdpbf16ps (lane r
 * gains w[r][2p] x[2p] + w[r][2p+1] x[2p+1]) with x's pair broadcast. Where there is no
 * AVX512-BF16 the words are widened to fp32 (a shift, a mask) and multiplied by fp32 x
 * in four chains of fused multiply-adds (the pair's parity times k's parity; four, so
 * that the adds of one output are not one long chain of dependent instructions):
 *     a[2 (p & 1) + (k & 1)] = llm__fmaf(w[j][k], x[k], ...),   y = (a0 + a1) + (a2 + a3)
 * which every level computes bit for bit. With AVX512-BF16 x is rounded to bf16 too and
 * the instruction adds in its own order: that path is checked against the reference
 * within a tolerance, not bit for bit. */

/* ---- the references' fused multiply-add ------------------------------------------------
 * a * b + c rounded once, as the SIMD kernels' fma instructions compute it. libm's fmaf
 * does that everywhere but on Windows, where MinGW-w64's runtime rounds twice; there the
 * float operation is done in double: a * b is exact in double (24 + 24 bits of mantissa),
 * the sum s = a b + c is rounded to double with its error e kept (TwoSum), and s is made
 * odd when e != 0 ("round to odd": its last bit records the inexactness), after which one
 * rounding to float is correct since double carries more than 24 + 2 bits. */
#if defined(_WIN32)
static float llm__fmaf(float a, float b, float c) {
    double p = LLM__CAST(double, a) * b, s = p + c, bp = s - p, e = (p - (s - bp)) + (c - bp);
    if (e != 0.0 && e == e) {   /* inexact and finite (e is NaN for inf or NaN) */
        uint64_t u;
        memcpy(&u, &s, 8);
        if (!(u & 1)) u += ((e > 0.0) == (s > 0.0)) ? 1 : LLM__CAST(uint64_t, -1);   /* toward the exact sum */
        memcpy(&s, &u, 8);
    }
    return LLM__CAST(float, s);
}
#else
#define llm__fmaf fmaf
#endif

/* ---- fp16 (IEEE binary16) ------------------------------------------------------------ */
/* half -> float: rebias the exponent (15 -> 127); subnormal halves are normalised by
 * shifting the mantissa up; inf/NaN keep their payload. Exact. */
static float llm__f16_to_f32(uint16_t h) {
    uint32_t sign = LLM__CAST(uint32_t, h & 0x8000) << 16, e = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    float f;
    if (e == 0) {
        if (man == 0) { u = sign; memcpy(&f, &u, 4); return f; }
        e = 127 - 14;
        while (!(man & 0x400)) { man <<= 1; e--; }
        u = sign | e << 23 | (man & 0x3ff) << 13;
    } else if (e == 31) {
        u = sign | 0x7f800000u | man << 13;
    } else {
        u = sign | (e + 127 - 15) << 23 | man << 13;
    }
    memcpy(&f, &u, 4);
    return f;
}
/* float -> half, rounded to nearest, ties to even (as numpy's astype(float16) and the
 * F16C instruction vcvtps2ph): 65520 and above become inf, values below 2^-14 become
 * subnormal halves (multiples of 2^-24), NaN stays NaN (quiet, sign and top of the
 * payload kept). */
static uint16_t llm__f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return LLM__CAST(uint16_t, sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) return LLM__CAST(uint16_t, sign | 0x7c00);   /* >= 65520: inf */
    if (a < 0x38800000u) {                     /* below 2^-14: a multiple of 2^-24 */
        if (a <= 0x33000000u) return LLM__CAST(uint16_t, sign);         /* <= 2^-25: 0 */
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000, sh = 126 - e;   /* 14..24 */
        uint32_t q = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
        if (rem > half || (rem == half && (q & 1))) q++;   /* may carry into 2^-14: right */
        return LLM__CAST(uint16_t, sign | q);
    }
    uint32_t h = (a - 0x38000000u) >> 13, rem = a & 0x1fff;   /* exponent 127 -> 15 */
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return LLM__CAST(uint16_t, sign | h);
}

/* ---- Q8_0 blocks: ggml's block_q8_0 ------------------------------------------------- */
#define LLM__QK 32
typedef struct llm__q8_0 {
    uint16_t d;              /* fp16 scale */
    int8_t qs[LLM__QK];      /* w[k] ~= d * qs[k] */
} llm__q8_0;                 /* 34 bytes, no padding */

/* One block from 32 values (n < 32: the rest are zero). The scale is d = max|x| / 127
 * rounded to fp16, and q = round(x / d) uses that rounded d, so |x - d q| <= d/2 (up to
 * the float rounding of x / d). (ggml divides by the unrounded d, which can err by up to
 * 0.56 d.) A normal fp16 d is within 2^-11 of max|x| / 127, so |x / d| < 127.5 and
 * |q| <= 127; a subnormal one (max|x| < 127 * 2^-14) can be coarser, and is then moved
 * one fp16 step up until max|x| / d < 127.5, which also keeps d > 0 for any non-zero
 * block. Ties round to even, as numpy's rint. Values must be finite with
 * |x| <= 127 * 65504 (fp16's largest d); llm_model_quantize checks that. */
static void llm__q8_0_block(llm__q8_0 *y, const float *x, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) { float a = fabsf(x[i]); amax = a > amax ? a : amax; }
    y->d = llm__f32_to_f16(amax / 127.0f);
    while (amax > 0.0f && llm__f16_to_f32(y->d) * 127.5f <= amax) y->d++;   /* exact product */
    float d = llm__f16_to_f32(y->d);
    for (int i = 0; i < LLM__QK; i++) {
        float v = i < n && d > 0.0f ? rintf(x[i] / d) : 0.0f;
        if (!(v >= -127.0f)) v = -127.0f;   /* NaN too: never reached with checked input */
        if (v > 127.0f) v = 127.0f;
        y->qs[i] = LLM__CAST(int8_t, LLM__CAST(int, v));
    }
}
/* n values -> ceil(n/32) blocks (the last zero-padded), and back. */
static LLM__UNUSED void llm__q8_0_quantize(llm__q8_0 *y, const float *x, size_t n) {
    for (size_t b = 0; b * LLM__QK < n; b++)
        llm__q8_0_block(y + b, x + b * LLM__QK, n - b * LLM__QK < LLM__QK ? LLM__CAST(int, n - b * LLM__QK) : LLM__QK);
}
static LLM__UNUSED void llm__q8_0_dequantize(float *x, const llm__q8_0 *y, size_t n) {
    for (size_t k = 0; k < n; k++) x[k] = llm__f16_to_f32(y[k / LLM__QK].d) * LLM__CAST(float, y[k / LLM__QK].qs[k % LLM__QK]);
}

/* ---- Q8_0 tiles: the kernels' layout (see the top of this section) ------------------- */
#define LLM__QT 16                                   /* rows per tile */
#define LLM__Q8_TB (2 * LLM__QT + LLM__QT * LLM__QK)  /* 544 bytes: one block of a tile */
static int llm__q8_nb(int K) { return (K + LLM__QK - 1) / LLM__QK; }
static size_t llm__q8t_bytes(int N, int K) {
    return LLM__CAST(size_t, (N + LLM__QT - 1) / LLM__QT) * LLM__CAST(size_t, llm__q8_nb(K)) * LLM__Q8_TB;
}
/* Where block b of row r starts in tiles W: its scale at +2 (r % 16), its group g at
 * +32 + 64 g + 4 (r % 16). */
static unsigned char *llm__q8t_block(const unsigned char *W, int K, int r, int b) {
    size_t nb = LLM__CAST(size_t, llm__q8_nb(K));
    return LLM__CAST(unsigned char *, LLM__CAST(uintptr_t, W)) +
           (LLM__CAST(size_t, r / LLM__QT) * nb + LLM__CAST(size_t, b)) * LLM__Q8_TB;
}
/* Row r's ggml blocks (nb of them) into / out of the tiles. */
static LLM__UNUSED void llm__q8t_put_row(unsigned char *W, int K, int r, const llm__q8_0 *row) {
    int i = r % LLM__QT;
    for (int b = 0; b < llm__q8_nb(K); b++) {
        unsigned char *B = llm__q8t_block(W, K, r, b);
        memcpy(B + 2 * i, &row[b].d, 2);
        for (int g = 0; g < LLM__QK / 4; g++) memcpy(B + 2 * LLM__QT + 64 * g + 4 * i, row[b].qs + 4 * g, 4);
    }
}
static LLM__UNUSED void llm__q8t_get_row(llm__q8_0 *row, const unsigned char *W, int K, int r) {
    int i = r % LLM__QT;
    for (int b = 0; b < llm__q8_nb(K); b++) {
        const unsigned char *B = llm__q8t_block(W, K, r, b);
        memcpy(&row[b].d, B + 2 * i, 2);
        for (int g = 0; g < LLM__QK / 4; g++) memcpy(row[b].qs + 4 * g, B + 2 * LLM__QT + 64 * g + 4 * i, 4);
    }
}
/* Rows r0 .. r0+n-1 of tiles W (rows of K) from n rows of K floats, quantized. The tiles'
 * padding must already be zero (the allocation is zeroed). */
static void llm__q8t_rows(unsigned char *W, int K, int r0, int n, const float *rows) {
    llm__q8_0 blk;
    for (int r = r0; r < r0 + n; r++)
        for (int b = 0; b < llm__q8_nb(K); b++) {
            int m = K - b * LLM__QK < LLM__QK ? K - b * LLM__QK : LLM__QK, i = r % LLM__QT;
            llm__q8_0_block(&blk, rows + LLM__CAST(size_t, r - r0) * K + b * LLM__QK, m);
            unsigned char *B = llm__q8t_block(W, K, r, b);
            memcpy(B + 2 * i, &blk.d, 2);
            for (int g = 0; g < LLM__QK / 4; g++) memcpy(B + 2 * LLM__QT + 64 * g + 4 * i, blk.qs + 4 * g, 4);
        }
}
/* Quantize w (N, K) into tiles W (llm__q8t_bytes(N, K) bytes, padding zeroed). */
static LLM__UNUSED void llm__q8t_quantize(unsigned char *W, const float *w, int N, int K) {
    memset(W, 0, llm__q8t_bytes(N, K));
    llm__q8t_rows(W, K, 0, N, w);
}
/* Row r of tiles W as K floats (the embedding lookup of a quantized table). */
static LLM__UNUSED void llm__q8t_row(float *x, const unsigned char *W, int K, int r) {
    int i = r % LLM__QT;
    for (int b = 0; b < llm__q8_nb(K); b++) {
        const unsigned char *B = llm__q8t_block(W, K, r, b);
        uint16_t h;
        memcpy(&h, B + 2 * i, 2);
        float d = llm__f16_to_f32(h);
        for (int k = 0; k < LLM__QK && b * LLM__QK + k < K; k++)
            x[b * LLM__QK + k] = d * LLM__CAST(float, LLM__CAST(int8_t, B[2 * LLM__QT + 64 * (k / 4) + 4 * i + k % 4]));
    }
}

/* ---- activations, quantized on the fly ------------------------------------------------ */
/* Rows of X quantized for the Q8_0 kernels: row i's int8 values (nb*32, zero past K), its
 * block scales (fp32: the activations' scale need not be stored, so it is not rounded to
 * fp16 as ggml does), and each block's sum of q (which the VNNI kernel needs, see it). */
typedef struct llm__q8x {
    int8_t *q;      /* (M, nb*32) */
    float *d;       /* (M, nb) */
    int32_t *s;     /* (M, nb) */
    int nb;
} llm__q8x;

/* One row: per block d = max|x| / 127, q = round(x / d) as x * (1/d), ties to even, so
 * |q| <= 127 (a NaN becomes -127: garbage in, but no undefined behaviour). */
static void llm__q8x_row_ref(int8_t *q, float *d, int32_t *s, const float *x, int K) {
    for (int b = 0; b < llm__q8_nb(K); b++) {
        int k0 = b * LLM__QK, n = K - k0 < LLM__QK ? K - k0 : LLM__QK, sum = 0;
        float amax = 0.0f;
        for (int i = 0; i < n; i++) { float a = fabsf(x[k0 + i]); amax = a > amax ? a : amax; }
        float db = amax / 127.0f, id = db > 0.0f ? 1.0f / db : 0.0f;
        for (int i = 0; i < LLM__QK; i++) {
            float v = i < n ? x[k0 + i] * id : 0.0f;
            if (!(v >= -127.0f)) v = -127.0f;
            if (v > 127.0f) v = 127.0f;
            int qi = LLM__CAST(int, rintf(v));
            q[k0 + i] = LLM__CAST(int8_t, qi);
            sum += qi;
        }
        d[b] = db; s[b] = sum;
    }
}

/* ---- the tile kernels: outputs (mr, 16) of rows i < mr of X against one tile ---------- */
/* Scalar: s(i,j,b) in int32, then the fmaf chain over b (the reference of the top of
 * this section, llm__qmm_ref below, computes the same with each block of x quantized as
 * it goes). */
static void llm__q8_tile_ref(const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                             size_t ldd, int mr, float *out) {
    for (int i = 0; i < mr; i++)
        for (int r = 0; r < LLM__QT; r++) {
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                const unsigned char *B = T + LLM__CAST(size_t, b) * LLM__Q8_TB;
                const int8_t *x = xq + i * ldq + LLM__CAST(size_t, b) * LLM__QK;
                int32_t s = 0;
                for (int g = 0; g < LLM__QK / 4; g++)
                    for (int c = 0; c < 4; c++)
                        s += LLM__CAST(int32_t, LLM__CAST(int8_t, B[2 * LLM__QT + 64 * g + 4 * r + c])) * x[4 * g + c];
                uint16_t h;
                memcpy(&h, B + 2 * r, 2);
                acc = llm__fmaf(LLM__CAST(float, s), llm__f16_to_f32(h) * xd[i * ldd + b], acc);
            }
            out[i * LLM__QT + r] = acc;
        }
}

#define LLM__Q8_MR 4       /* rows of X per pass over a tile */

#ifdef LLM__X86
#define LLM__T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))

/* AVX2: the tile in two halves of 8 rows (8 int32 lanes). vpmaddubsw
 * multiplies unsigned by signed bytes, so the weight's sign moves onto x: |w| * sign(x, w)
 * = w x, and a pair of products, at most 2 * 128 * 127, never saturates its int16 (x is
 * never -128: our quantizer clamps to 127). vpmaddwd with ones then sums pairs of pairs:
 * lane r holds the 4 products of row r, as in the layout. */
LLM__T_AVX2 static __m256 llm__f16x8_avx2(const unsigned char *p) {
    /* 8 halves -> floats without F16C: |h| << 13 is a float 2^-112 times the half's value
     * (subnormal halves land on float subnormals, also exact); multiplying by 2^112 is
     * exact; exponent 31 (inf, NaN) is mapped to 255; then the sign. */
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(LLM__CAST(const __m128i *, LLM__CAST(const void *, p))));
    __m256i mag = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
    __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(mag), _mm256_castsi256_ps(_mm256_set1_epi32(0x77800000)));
    __m256i infnan = _mm256_cmpeq_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7c00)), _mm256_set1_epi32(0x7c00));
    f = _mm256_blendv_ps(f, _mm256_castsi256_ps(_mm256_or_si256(mag, _mm256_set1_epi32(0x7f800000))), _mm256_castsi256_ps(infnan));
    return _mm256_or_ps(f, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16)));
}
__attribute__((always_inline)) LLM__T_AVX2 static inline void
llm__q8_tile_avx2_mr(const int MR, const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                     size_t ldd, float *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int h = 0; h < 2; h++) {
        __m256 acc[LLM__Q8_MR];
LLM__UNROLL
        for (int i = 0; i < MR; i++) acc[i] = _mm256_setzero_ps();
        const unsigned char *B = T;
        for (int b = 0; b < nb; b++, B += LLM__Q8_TB) {
            __m256 dw = llm__f16x8_avx2(B + 16 * h);
            __m256i s[LLM__Q8_MR];
LLM__UNROLL
            for (int i = 0; i < MR; i++) s[i] = _mm256_setzero_si256();
            for (int g = 0; g < LLM__QK / 4; g++) {
                __m256i w = _mm256_loadu_si256(LLM__CAST(const __m256i *, LLM__CAST(const void *, B + 2 * LLM__QT + 64 * g + 32 * h)));
                __m256i aw = _mm256_abs_epi8(w);
LLM__UNROLL
                for (int i = 0; i < MR; i++) {
                    int32_t x4;
                    memcpy(&x4, xq + i * ldq + LLM__CAST(size_t, b) * LLM__QK + 4 * g, 4);
                    __m256i sx = _mm256_sign_epi8(_mm256_set1_epi32(x4), w);
                    s[i] = _mm256_add_epi32(s[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
                }
            }
LLM__UNROLL
            for (int i = 0; i < MR; i++)
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[i]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[i * ldd + b])), acc[i]);
        }
LLM__UNROLL
        for (int i = 0; i < MR; i++) _mm256_storeu_ps(out + i * LLM__QT + 8 * h, acc[i]);
    }
}
LLM__T_AVX2 static void llm__q8_tile_avx2(const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                                          size_t ldd, int mr, float *out) {
    switch (mr) {
    case 1: llm__q8_tile_avx2_mr(1, T, nb, xq, ldq, xd, ldd, out); break;
    case 2: llm__q8_tile_avx2_mr(2, T, nb, xq, ldq, xd, ldd, out); break;
    case 3: llm__q8_tile_avx2_mr(3, T, nb, xq, ldq, xd, ldd, out); break;
    default: llm__q8_tile_avx2_mr(4, T, nb, xq, ldq, xd, ldd, out); break;
    }
}

/* AVX-512 VNNI: vpdpbusd adds to each of 16 int32 lanes the 4 products of unsigned bytes
 * (its first operand) and signed bytes (its second). The weights are made unsigned by
 * flipping their top bit, which adds 128: sum (w + 128) x = s + 128 sum x, and the block
 * sum of x is subtracted again (exact in int32: |sum| <= 32 * 255 * 127). Two int32
 * accumulators over alternate groups, so that consecutive vpdpbusd do not wait for each
 * other; their int32 sum is exact in any order. */
__attribute__((always_inline)) LLM__T_VNNI static inline void
llm__q8_tile_vnni_mr(const int MR, const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                     const int32_t *xs, size_t ldd, float *out) {
    const __m512i flip = _mm512_set1_epi8(LLM__CAST(char, 0x80));
    __m512 acc[LLM__Q8_MR];
LLM__UNROLL
    for (int i = 0; i < MR; i++) acc[i] = _mm512_setzero_ps();
    const unsigned char *B = T;
    for (int b = 0; b < nb; b++, B += LLM__Q8_TB) {
        LLM__PREFETCH(B, 2048);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(LLM__CAST(const __m256i *, LLM__CAST(const void *, B))));
        __m512i s0[LLM__Q8_MR], s1[LLM__Q8_MR];
LLM__UNROLL
        for (int i = 0; i < MR; i++) s0[i] = s1[i] = _mm512_setzero_si512();
        for (int g = 0; g < LLM__QK / 4; g += 2) {
            const unsigned char *G = B + 2 * LLM__QT + 64 * g;
            __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(LLM__CAST(const void *, G)), flip);
            __m512i w1 = _mm512_xor_si512(_mm512_loadu_si512(LLM__CAST(const void *, G + 64)), flip);
LLM__UNROLL
            for (int i = 0; i < MR; i++) {
                int32_t x0, x1;
                const int8_t *x = xq + i * ldq + LLM__CAST(size_t, b) * LLM__QK + 4 * g;
                memcpy(&x0, x, 4);
                memcpy(&x1, x + 4, 4);
                s0[i] = _mm512_dpbusd_epi32(s0[i], w0, _mm512_set1_epi32(x0));
                s1[i] = _mm512_dpbusd_epi32(s1[i], w1, _mm512_set1_epi32(x1));
            }
        }
LLM__UNROLL
        for (int i = 0; i < MR; i++) {
            __m512i s = _mm512_sub_epi32(_mm512_add_epi32(s0[i], s1[i]), _mm512_set1_epi32(128 * xs[i * ldd + b]));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xd[i * ldd + b])), acc[i]);
        }
    }
LLM__UNROLL
    for (int i = 0; i < MR; i++) _mm512_storeu_ps(out + i * LLM__QT, acc[i]);
}
LLM__T_VNNI static void llm__q8_tile_vnni(const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                                          const int32_t *xs, size_t ldd, int mr, float *out) {
    switch (mr) {
    case 1: llm__q8_tile_vnni_mr(1, T, nb, xq, ldq, xd, xs, ldd, out); break;
    case 2: llm__q8_tile_vnni_mr(2, T, nb, xq, ldq, xd, xs, ldd, out); break;
    case 3: llm__q8_tile_vnni_mr(3, T, nb, xq, ldq, xd, xs, ldd, out); break;
    default: llm__q8_tile_vnni_mr(4, T, nb, xq, ldq, xd, xs, ldd, out); break;
    }
}

/* Activation rows, vectorised: the reference's operations lane by lane (max of |x|
 * exactly, then the same division, product and rounding). vmaxps returns its second
 * operand when the first is NaN, which ignores NaN in the max and clamps a NaN to -127,
 * as the reference does. */
LLM__T_AVX2 static void llm__q8x_row_avx2(int8_t *q, float *d, int32_t *s, const float *x, int K) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int b = 0; b < llm__q8_nb(K); b++) {
        int k0 = b * LLM__QK, n = K - k0 < LLM__QK ? K - k0 : LLM__QK;
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int c = 0; c < 4; c++) {
            int m = n - 8 * c;
            v[c] = m >= 8 ? _mm256_loadu_ps(x + k0 + 8 * c) : m > 0 ? _mm256_maskload_ps(x + k0 + 8 * c, llm__vmask_avx2(m)) : _mm256_setzero_ps();
            mx = _mm256_max_ps(_mm256_and_ps(v[c], absm), mx);
        }
        float l[8], amax = 0.0f;
        _mm256_storeu_ps(l, mx);
        for (int i = 0; i < 8; i++) amax = l[i] > amax ? l[i] : amax;
        float db = amax / 127.0f, id = db > 0.0f ? 1.0f / db : 0.0f;
        __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        __m256i qi[4];
        for (int c = 0; c < 4; c++)
            qi[c] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[c], vid), lo), hi));
        /* sum: 32 int32 -> one; pack: int32 -> int16 -> int8 (saturation never bites),
         * then undo the packs' lane interleave */
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
        __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(LLM__CAST(__m256i *, LLM__CAST(void *, q + k0)), p);
        d[b] = db; s[b] = _mm_cvtsi128_si32(t4);
    }
}
LLM__T_AVX512 static void llm__q8x_row_avx512(int8_t *q, float *d, int32_t *s, const float *x, int K) {
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int b = 0; b < llm__q8_nb(K); b++) {
        int k0 = b * LLM__QK, n = K - k0 < LLM__QK ? K - k0 : LLM__QK;
        __mmask16 m0 = LLM__CAST(__mmask16, n >= 16 ? 0xffff : (1u << n) - 1);
        __mmask16 m1 = LLM__CAST(__mmask16, n <= 16 ? 0 : n >= 32 ? 0xffff : (1u << (n - 16)) - 1);
        __m512 v0 = _mm512_maskz_loadu_ps(m0, x + k0), v1 = _mm512_maskz_loadu_ps(m1, x + k0 + 16);
        __m512 mx = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
        float l[16], amax = 0.0f;
        _mm512_storeu_ps(l, mx);
        for (int i = 0; i < 16; i++) amax = l[i] > amax ? l[i] : amax;
        float db = amax / 127.0f, id = db > 0.0f ? 1.0f / db : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, vid), lo), hi));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, vid), lo), hi));
        _mm_storeu_si128(LLM__CAST(__m128i *, LLM__CAST(void *, q + k0)), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(LLM__CAST(__m128i *, LLM__CAST(void *, q + k0 + 16)), _mm512_cvtepi32_epi8(q1));
        d[b] = db; s[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}
#endif /* LLM__X86 */

#ifdef LLM__NEON
/* NEON: 16 rows in four quarters of 4 int32 lanes. With the dot-product extension
 * (-march=armv8.2-a+dotprod) sdot adds the 4 products of each lane at once; base NEON
 * multiplies into int16 (vmull_s8) and adds pairs twice. */
static void llm__q8_tile_neon(const unsigned char *T, int nb, const int8_t *xq, size_t ldq, const float *xd,
                              size_t ldd, int mr, float *out) {
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 4; h++) {
            float32x4_t acc = vdupq_n_f32(0.0f);
            const unsigned char *B = T;
            for (int b = 0; b < nb; b++, B += LLM__Q8_TB) {
                uint16_t hd[4];
                memcpy(hd, B + 8 * h, 8);
                float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(hd)));
                int32x4_t s = vdupq_n_s32(0);
                const int8_t *x = xq + i * ldq + LLM__CAST(size_t, b) * LLM__QK;
                for (int g = 0; g < LLM__QK / 4; g++) {
                    int32_t x4;
                    memcpy(&x4, x + 4 * g, 4);
                    int8x16_t w = vld1q_s8(LLM__CAST(const int8_t *, LLM__CAST(const void *, B + 2 * LLM__QT + 64 * g + 16 * h)));
                    int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(x4));
#if defined(__ARM_FEATURE_DOTPROD)
                    s = vdotq_s32(s, w, xv);
#else
                    int16x8_t p0 = vmull_s8(vget_low_s8(w), vget_low_s8(xv)), p1 = vmull_high_s8(w, xv);
                    s = vaddq_s32(s, vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
#endif
                }
                acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vmulq_n_f32(dw, xd[i * ldd + b]));
            }
            vst1q_f32(out + i * LLM__QT + 4 * h, acc);
        }
}
static void llm__q8x_row_neon(int8_t *q, float *d, int32_t *s, const float *x, int K) {
    for (int b = 0; b < llm__q8_nb(K); b++) {
        int k0 = b * LLM__QK, n = K - k0 < LLM__QK ? K - k0 : LLM__QK;
        float buf[LLM__QK];
        memset(buf, 0, sizeof buf);
        memcpy(buf, x + k0, LLM__CAST(size_t, n) * sizeof(float));
        float32x4_t v[8], mx = vdupq_n_f32(0.0f);
        for (int c = 0; c < 8; c++) { v[c] = vld1q_f32(buf + 4 * c); mx = vmaxnmq_f32(mx, vabsq_f32(v[c])); }
        float amax = vmaxnmvq_f32(mx);
        float db = amax / 127.0f, id = db > 0.0f ? 1.0f / db : 0.0f;
        int32x4_t t = vdupq_n_s32(0);
        for (int c = 0; c < 8; c++) {
            float32x4_t y = vminnmq_f32(vmaxnmq_f32(vmulq_n_f32(v[c], id), vdupq_n_f32(-127.0f)), vdupq_n_f32(127.0f));
            int32x4_t qi = vcvtnq_s32_f32(y);
            t = vaddq_s32(t, qi);
            int8x8_t q8 = vqmovn_s16(vcombine_s16(vqmovn_s32(qi), vdup_n_s16(0)));
            int8_t tmp[8];
            vst1_s8(tmp, q8);
            memcpy(q + k0 + 4 * c, tmp, 4);
        }
        d[b] = db; s[b] = vaddvq_s32(t);
    }
}
#endif /* LLM__NEON */

/* ---- bf16 tiles ----------------------------------------------------------------------- */
static int llm__bf16_kp(int K) { return (K + 1) / 2; }
static size_t llm__bf16t_bytes(int N, int K) {
    return LLM__CAST(size_t, (N + LLM__QT - 1) / LLM__QT) * LLM__CAST(size_t, llm__bf16_kp(K)) * LLM__QT * 4;
}
/* The word of row r, pair p, in tiles W. */
static uint32_t *llm__bf16t_word(const uint32_t *W, int K, int r, int p) {
    return LLM__CAST(uint32_t *, LLM__CAST(uintptr_t, W)) +
           (LLM__CAST(size_t, r / LLM__QT) * LLM__CAST(size_t, llm__bf16_kp(K)) + LLM__CAST(size_t, p)) * LLM__QT + r % LLM__QT;
}
/* Row r from K bf16 values (a file's) / K floats (rounded to nearest even), and back. */
static LLM__UNUSED void llm__bf16t_put_row(uint32_t *W, int K, int r, const uint16_t *row) {
    for (int p = 0; p < llm__bf16_kp(K); p++)
        *llm__bf16t_word(W, K, r, p) = row[2 * p] | (2 * p + 1 < K ? LLM__CAST(uint32_t, row[2 * p + 1]) << 16 : 0u);
}
static void llm__bf16t_rows(uint32_t *W, int K, int r0, int n, const float *rows) {
    for (int r = r0; r < r0 + n; r++)
        for (int p = 0; p < llm__bf16_kp(K); p++) {
            const float *x = rows + LLM__CAST(size_t, r - r0) * K + 2 * p;
            *llm__bf16t_word(W, K, r, p) = llm__bf16_round(x[0]) | (2 * p + 1 < K ? LLM__CAST(uint32_t, llm__bf16_round(x[1])) << 16 : 0u);
        }
}
static LLM__UNUSED void llm__bf16t_quantize(uint32_t *W, const float *w, int N, int K) {
    memset(W, 0, llm__bf16t_bytes(N, K));
    llm__bf16t_rows(W, K, 0, N, w);
}
static LLM__UNUSED void llm__bf16t_row(float *x, const uint32_t *W, int K, int r) {
    for (int k = 0; k < K; k++) {
        uint32_t w = *llm__bf16t_word(W, K, r, k / 2);
        x[k] = llm__bf16_widen(LLM__CAST(uint16_t, k % 2 ? w >> 16 : w & 0xffff));
    }
}

/* The reference, one output: four chains of fmaf over k, as described at the top. */
static float llm__bf16_dot_ref(const uint32_t *W, int K, int j, const float *x) {
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int p = 0; p < llm__bf16_kp(K); p++) {
        uint32_t w = *llm__bf16t_word(W, K, j, p);
        int c = 2 * (p & 1);
        a[c] = llm__fmaf(llm__bf16_widen(LLM__CAST(uint16_t, w & 0xffff)), x[2 * p], a[c]);
        if (2 * p + 1 < K) a[c + 1] = llm__fmaf(llm__bf16_widen(LLM__CAST(uint16_t, w >> 16)), x[2 * p + 1], a[c + 1]);
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}
/* Tile kernels: outputs (mr, 16) of rows i < mr of X (ldx apart) against one tile. */
static void llm__bf16_tile_ref(const uint32_t *T, int K, const float *X, size_t ldx, int mr, float *out) {
    for (int i = 0; i < mr; i++)
        for (int r = 0; r < LLM__QT; r++) {
            const float *x = X + i * ldx;
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int p = 0; p < llm__bf16_kp(K); p++) {
                uint32_t w = T[LLM__CAST(size_t, p) * LLM__QT + r];
                int c = 2 * (p & 1);
                a[c] = llm__fmaf(llm__bf16_widen(LLM__CAST(uint16_t, w & 0xffff)), x[2 * p], a[c]);
                if (2 * p + 1 < K) a[c + 1] = llm__fmaf(llm__bf16_widen(LLM__CAST(uint16_t, w >> 16)), x[2 * p + 1], a[c + 1]);
            }
            out[i * LLM__QT + r] = (a[0] + a[1]) + (a[2] + a[3]);
        }
}

#ifdef LLM__X86
/* AVX-512F / AVX2: a word's low half shifted up is the even k's float, the word with
 * its low half cleared the odd k's. */
#define LLM__BF16T_MR 4
__attribute__((always_inline)) LLM__T_AVX512 static inline void
llm__bf16_tile_avx512_mr(const int MR, const uint32_t *T, int K, const float *X, size_t ldx, float *out) {
    __m512 a0[LLM__BF16T_MR], a1[LLM__BF16T_MR], a2[LLM__BF16T_MR], a3[LLM__BF16T_MR];
    const __m512i hi = _mm512_set1_epi32(LLM__CAST(int, 0xffff0000u));
LLM__UNROLL
    for (int i = 0; i < MR; i++) a0[i] = a1[i] = a2[i] = a3[i] = _mm512_setzero_ps();
    const int kp = llm__bf16_kp(K), kfull = K / 4;   /* pairs of pairs with every k < K */
    int q = 0;
    for (; q < kfull; q++) {
        const uint32_t *P = T + LLM__CAST(size_t, 2 * q) * LLM__QT;
        LLM__PREFETCH(P, 4096);
        __m512i w0 = _mm512_loadu_si512(LLM__CAST(const void *, P)), w1 = _mm512_loadu_si512(LLM__CAST(const void *, P + LLM__QT));
        __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), o0 = _mm512_castsi512_ps(_mm512_and_si512(w0, hi));
        __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)), o1 = _mm512_castsi512_ps(_mm512_and_si512(w1, hi));
LLM__UNROLL
        for (int i = 0; i < MR; i++) {
            const float *x = X + i * ldx + 4 * q;
            a0[i] = _mm512_fmadd_ps(e0, _mm512_set1_ps(x[0]), a0[i]);
            a1[i] = _mm512_fmadd_ps(o0, _mm512_set1_ps(x[1]), a1[i]);
            a2[i] = _mm512_fmadd_ps(e1, _mm512_set1_ps(x[2]), a2[i]);
            a3[i] = _mm512_fmadd_ps(o1, _mm512_set1_ps(x[3]), a3[i]);
        }
    }
    for (int p = 2 * q; p < kp; p++) {   /* the last 1..3 k */
        __m512i w = _mm512_loadu_si512(LLM__CAST(const void *, T + LLM__CAST(size_t, p) * LLM__QT));
        __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), o = _mm512_castsi512_ps(_mm512_and_si512(w, hi));
LLM__UNROLL
        for (int i = 0; i < MR; i++) {
            const float *x = X + i * ldx + 2 * p;
            if (p & 1) {
                a2[i] = _mm512_fmadd_ps(e, _mm512_set1_ps(x[0]), a2[i]);
                if (2 * p + 1 < K) a3[i] = _mm512_fmadd_ps(o, _mm512_set1_ps(x[1]), a3[i]);
            } else {
                a0[i] = _mm512_fmadd_ps(e, _mm512_set1_ps(x[0]), a0[i]);
                if (2 * p + 1 < K) a1[i] = _mm512_fmadd_ps(o, _mm512_set1_ps(x[1]), a1[i]);
            }
        }
    }
LLM__UNROLL
    for (int i = 0; i < MR; i++)
        _mm512_storeu_ps(out + i * LLM__QT, _mm512_add_ps(_mm512_add_ps(a0[i], a1[i]), _mm512_add_ps(a2[i], a3[i])));
}
LLM__T_AVX512 static void llm__bf16_tile_avx512(const uint32_t *T, int K, const float *X, size_t ldx, int mr, float *out) {
    switch (mr) {
    case 1: llm__bf16_tile_avx512_mr(1, T, K, X, ldx, out); break;
    case 2: llm__bf16_tile_avx512_mr(2, T, K, X, ldx, out); break;
    case 3: llm__bf16_tile_avx512_mr(3, T, K, X, ldx, out); break;
    default: llm__bf16_tile_avx512_mr(4, T, K, X, ldx, out); break;
    }
}
/* AVX2: the two halves of the tile's rows, one row of X at a time (4 accumulators, two
 * weight vectors, their conversions: well inside 16 registers). */
LLM__T_AVX2 static void llm__bf16_tile_avx2(const uint32_t *T, int K, const float *X, size_t ldx, int mr, float *out) {
    const __m256i hi = _mm256_set1_epi32(LLM__CAST(int, 0xffff0000u));
    const int kp = llm__bf16_kp(K);
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 2; h++) {
            const float *x = X + i * ldx;
            __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int p = 0; p < kp; p++) {
                __m256i w = _mm256_loadu_si256(LLM__CAST(const __m256i *, LLM__CAST(const void *, T + LLM__CAST(size_t, p) * LLM__QT + 8 * h)));
                int c = 2 * (p & 1);
                a[c] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)), _mm256_set1_ps(x[2 * p]), a[c]);
                if (2 * p + 1 < K)
                    a[c + 1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(w, hi)), _mm256_set1_ps(x[2 * p + 1]), a[c + 1]);
            }
            _mm256_storeu_ps(out + i * LLM__QT + 8 * h, _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
        }
}
/* AVX512-BF16: x's pairs rounded to bf16 (xp: kp words per row); two tiles (32 outputs)
 * against up to 6 rows of x at a time, one accumulator per row and tile (12 chains of
 * vdpbf16ps, each pair of k read once from L1 for 6 rows). Not bit-equal to the
 * reference: x is rounded, and the instruction adds two products per step. A row gets
 * the same operations whatever the batch, so M does not change its bits. */
#define LLM__BF16DP_MR 6
__attribute__((always_inline)) LLM__T_BF16 static inline void
llm__bf16_tile_dp_mr(const int MR, const uint32_t *T0, const uint32_t *T1, int kp, const uint32_t *xp, size_t ldp, float *out) {
    __m512 a0[LLM__BF16DP_MR], a1[LLM__BF16DP_MR];
LLM__UNROLL
    for (int i = 0; i < MR; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        const uint32_t *P0 = T0 + LLM__CAST(size_t, p) * LLM__QT, *P1 = T1 + LLM__CAST(size_t, p) * LLM__QT;
        LLM__PREFETCH(P0, 4096);
        LLM__PREFETCH(P1, 4096);
        __m512bh w0 = LLM__CAST(__m512bh, _mm512_loadu_si512(LLM__CAST(const void *, P0)));
        __m512bh w1 = LLM__CAST(__m512bh, _mm512_loadu_si512(LLM__CAST(const void *, P1)));
LLM__UNROLL
        for (int i = 0; i < MR; i++) {
            __m512bh x = LLM__CAST(__m512bh, _mm512_set1_epi32(LLM__CAST(int, xp[i * ldp + LLM__CAST(size_t, p)])));
            a0[i] = _mm512_dpbf16_ps(a0[i], w0, x);
            a1[i] = _mm512_dpbf16_ps(a1[i], w1, x);
        }
    }
LLM__UNROLL
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(out + i * 2 * LLM__QT, a0[i]);
        _mm512_storeu_ps(out + i * 2 * LLM__QT + LLM__QT, a1[i]);
    }
}
/* outputs (mr, 32): tile T0's 16 then T1's (T1 may be T0 again, for an odd tile) */
LLM__T_BF16 static void llm__bf16_tile_dp(const uint32_t *T0, const uint32_t *T1, int kp, const uint32_t *xp, size_t ldp, int mr,
                                          float *out) {
    switch (mr) {
    case 1: llm__bf16_tile_dp_mr(1, T0, T1, kp, xp, ldp, out); break;
    case 2: llm__bf16_tile_dp_mr(2, T0, T1, kp, xp, ldp, out); break;
    case 3: llm__bf16_tile_dp_mr(3, T0, T1, kp, xp, ldp, out); break;
    case 4: llm__bf16_tile_dp_mr(4, T0, T1, kp, xp, ldp, out); break;
    case 5: llm__bf16_tile_dp_mr(5, T0, T1, kp, xp, ldp, out); break;
    default: llm__bf16_tile_dp_mr(6, T0, T1, kp, xp, ldp, out); break;
    }
}
#endif /* LLM__X86 */

#ifdef LLM__NEON
static void llm__bf16_tile_neon(const uint32_t *T, int K, const float *X, size_t ldx, int mr, float *out) {
    const int kp = llm__bf16_kp(K);
    const uint32x4_t hi = vdupq_n_u32(0xffff0000u);
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 4; h++) {
            const float *x = X + i * ldx;
            float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
            for (int p = 0; p < kp; p++) {
                uint32x4_t w = vld1q_u32(T + LLM__CAST(size_t, p) * LLM__QT + 4 * h);
                int c = 2 * (p & 1);
                a[c] = vfmaq_n_f32(a[c], vreinterpretq_f32_u32(vshlq_n_u32(w, 16)), x[2 * p]);
                if (2 * p + 1 < K) a[c + 1] = vfmaq_n_f32(a[c + 1], vreinterpretq_f32_u32(vandq_u32(w, hi)), x[2 * p + 1]);
            }
            vst1q_f32(out + i * LLM__QT + 4 * h, vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3])));
        }
}
#endif

/* ---- the drivers: Y (M, N) = X (M, K) . W^T + bias ------------------------------------
 * Threads own runs of tiles (16 outputs each, so no two write the same float, and every
 * output gets the same operations whichever thread computes it: the result does not
 * depend on the thread count). Each thread takes its tiles one at a time and passes over
 * the rows of X in groups of up to 4 against it (the tile stays in L1 between groups).
 * The activations are quantized (Q8_0) or paired (bf16 with AVX512-BF16) once per call
 * into scratch memory; without memory for it the reference runs instead. */
typedef struct llm__qmm_job {
    int M, N, K, level, bf16dp;
    const float *X, *bias;
    const void *W;
    float *Y;
    llm__q8x x;              /* Q8_0: the quantized rows */
    uint32_t *xp;            /* bf16 with AVX512-BF16: (M, kp) pair words */
    int q8;                  /* 1: W is Q8_0 tiles, 0: bf16 tiles */
} llm__qmm_job;

/* Outputs (mr, 16) of tile t for rows i0.. of X. */
static void llm__qmm_tile(const llm__qmm_job *J, size_t t, int i0, int mr, float *out) {
    const int K = J->K;
    if (J->q8) {
        const int nb = J->x.nb;
        const size_t ldq = LLM__CAST(size_t, nb) * LLM__QK, ldd = LLM__CAST(size_t, nb);
        const unsigned char *T = LLM__CAST(const unsigned char *, J->W) + t * LLM__CAST(size_t, nb) * LLM__Q8_TB;
        const int8_t *xq = J->x.q + LLM__CAST(size_t, i0) * ldq;
        const float *xd = J->x.d + LLM__CAST(size_t, i0) * ldd;
#ifdef LLM__X86
        if (J->level == LLM_SIMD_AVX512 && (llm__cpu_get() & LLM__CPU_AVX512VNNI)) {
            llm__q8_tile_vnni(T, nb, xq, ldq, xd, J->x.s + LLM__CAST(size_t, i0) * ldd, ldd, mr, out);
            return;
        }
        if (J->level >= LLM_SIMD_AVX2) { llm__q8_tile_avx2(T, nb, xq, ldq, xd, ldd, mr, out); return; }
#elif defined(LLM__NEON)
        if (J->level == LLM_SIMD_NEON) { llm__q8_tile_neon(T, nb, xq, ldq, xd, ldd, mr, out); return; }
#endif
        llm__q8_tile_ref(T, nb, xq, ldq, xd, ldd, mr, out);
    } else {
        const size_t kp = LLM__CAST(size_t, llm__bf16_kp(K));
        const uint32_t *T = LLM__CAST(const uint32_t *, J->W) + t * kp * LLM__QT;
        const float *X = J->X + LLM__CAST(size_t, i0) * K;
#ifdef LLM__X86
        if (J->level == LLM_SIMD_AVX512) { llm__bf16_tile_avx512(T, K, X, LLM__CAST(size_t, K), mr, out); return; }
        if (J->level == LLM_SIMD_AVX2) { llm__bf16_tile_avx2(T, K, X, LLM__CAST(size_t, K), mr, out); return; }
#elif defined(LLM__NEON)
        if (J->level == LLM_SIMD_NEON) { llm__bf16_tile_neon(T, K, X, LLM__CAST(size_t, K), mr, out); return; }
#endif
        llm__bf16_tile_ref(T, K, X, LLM__CAST(size_t, K), mr, out);
    }
}

/* Y rows i0 .. i0+mr-1, columns of tile t, from out (mr rows, ldo apart), plus the bias. */
static void llm__qmm_put(const llm__qmm_job *J, size_t t, int i0, int mr, const float *out, int ldo) {
    const int j0 = LLM__CAST(int, t) * LLM__QT, jn = J->N - j0 < LLM__QT ? J->N - j0 : LLM__QT;
    for (int i = 0; i < mr; i++) {
        float *y = J->Y + LLM__CAST(size_t, i0 + i) * J->N + j0;
        for (int r = 0; r < jn; r++) y[r] = J->bias ? out[i * ldo + r] + J->bias[j0 + r] : out[i * ldo + r];
    }
}

static void llm__qmm_task(void *arg, int ith, int nth) {
    const llm__qmm_job *J = LLM__CAST(const llm__qmm_job *, arg);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, (J->N + LLM__QT - 1) / LLM__QT), ith, nth, &lo, &hi);
#ifdef LLM__X86
    if (J->bf16dp) {   /* two tiles at a time */
        float o2[LLM__BF16DP_MR * 2 * LLM__QT];
        const size_t kp = LLM__CAST(size_t, llm__bf16_kp(J->K));
        for (size_t t = lo; t < hi; t += 2) {
            const uint32_t *T0 = LLM__CAST(const uint32_t *, J->W) + t * kp * LLM__QT;
            const uint32_t *T1 = t + 1 < hi ? T0 + kp * LLM__QT : T0;
            for (int i0 = 0; i0 < J->M; i0 += LLM__BF16DP_MR) {
                const int mr = J->M - i0 < LLM__BF16DP_MR ? J->M - i0 : LLM__BF16DP_MR;
                llm__bf16_tile_dp(T0, T1, LLM__CAST(int, kp), J->xp + LLM__CAST(size_t, i0) * kp, kp, mr, o2);
                llm__qmm_put(J, t, i0, mr, o2, 2 * LLM__QT);
                if (t + 1 < hi) llm__qmm_put(J, t + 1, i0, mr, o2 + LLM__QT, 2 * LLM__QT);
            }
        }
        return;
    }
#endif
    float out[LLM__Q8_MR * LLM__QT];
    for (size_t t = lo; t < hi; t++) {
        for (int i0 = 0; i0 < J->M; i0 += LLM__Q8_MR) {
            const int mr = J->M - i0 < LLM__Q8_MR ? J->M - i0 : LLM__Q8_MR;
            llm__qmm_tile(J, t, i0, mr, out);
            llm__qmm_put(J, t, i0, mr, out, LLM__QT);
        }
    }
}

/* Quantize rows [lo, hi) of X into J->x. */
static void llm__q8x_rows(llm__qmm_job *J, size_t lo, size_t hi) {
    const size_t ldq = LLM__CAST(size_t, J->x.nb) * LLM__QK, ldd = LLM__CAST(size_t, J->x.nb);
    for (size_t i = lo; i < hi; i++) {
        int8_t *q = J->x.q + i * ldq;
        float *d = J->x.d + i * ldd;
        int32_t *s = J->x.s + i * ldd;
        const float *x = J->X + i * LLM__CAST(size_t, J->K);
#ifdef LLM__X86
        if (J->level == LLM_SIMD_AVX512) { llm__q8x_row_avx512(q, d, s, x, J->K); continue; }
        if (J->level == LLM_SIMD_AVX2) { llm__q8x_row_avx2(q, d, s, x, J->K); continue; }
#elif defined(LLM__NEON)
        if (J->level == LLM_SIMD_NEON) { llm__q8x_row_neon(q, d, s, x, J->K); continue; }
#endif
        llm__q8x_row_ref(q, d, s, x, J->K);
    }
}
static void llm__q8x_task(void *arg, int ith, int nth) {
    llm__qmm_job *J = LLM__CAST(llm__qmm_job *, arg);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, J->M), ith, nth, &lo, &hi);
    llm__q8x_rows(J, lo, hi);
}

/* The reference matmul, for the tests and for when scratch memory is short: quantizes
 * each row of X into 32-value pieces on the stack as it goes. */
static void llm__qmm_ref(int q8, float *Y, const float *X, const void *W, const float *bias, int M, int K, int N) {
    for (int i = 0; i < M; i++) {
        const float *x = X + LLM__CAST(size_t, i) * K;
        for (int j = 0; j < N; j++) {
            float v;
            if (q8) {
                float acc = 0.0f;
                const unsigned char *Wb = LLM__CAST(const unsigned char *, W);
                for (int b = 0; b < llm__q8_nb(K); b++) {   /* llm__q8_dot_ref, one block at a time */
                    int8_t q[LLM__QK];
                    float d;
                    int32_t s;
                    int n = K - b * LLM__QK < LLM__QK ? K - b * LLM__QK : LLM__QK;
                    llm__q8x_row_ref(q, &d, &s, x + b * LLM__QK, n);
                    const unsigned char *B = llm__q8t_block(Wb, K, j, b);
                    int32_t sum = 0;
                    for (int k = 0; k < LLM__QK; k++)
                        sum += LLM__CAST(int32_t, LLM__CAST(int8_t, B[2 * LLM__QT + 64 * (k / 4) + 4 * (j % LLM__QT) + k % 4])) * q[k];
                    uint16_t h;
                    memcpy(&h, B + 2 * (j % LLM__QT), 2);
                    acc = llm__fmaf(LLM__CAST(float, sum), llm__f16_to_f32(h) * d, acc);
                }
                v = acc;
            } else {
                v = llm__bf16_dot_ref(LLM__CAST(const uint32_t *, W), K, j, x);
            }
            Y[LLM__CAST(size_t, i) * N + j] = bias ? v + bias[j] : v;
        }
    }
}

/* Whether the bf16 kernels use vdpbf16ps here (AVX512-BF16 at the AVX-512 level). */
static int llm__bf16_dp(void) {
#ifdef LLM__X86
    return llm__has_bf16();
#else
    return 0;
#endif
}

/* Y (M, N) = X (M, K) . W^T + bias (bias (N) may be NULL); W is Q8_0 tiles (q8 = 1,
 * llm__q8t_bytes(N, K) bytes) or bf16 tiles (q8 = 0). Y and X do not overlap. */
static LLM__UNUSED void llm__qmm(llm_pool *pool, int q8, float *Y, const float *X, const void *W, const float *bias, int M, int K,
                     int N) {
    if (M <= 0 || N <= 0) return;
    llm__qmm_job J;
    memset(&J, 0, sizeof J);
    J.M = M; J.N = N; J.K = K; J.level = llm_simd_active(); J.q8 = q8;
    J.X = X; J.W = W; J.bias = bias; J.Y = Y;
    const size_t Mz = LLM__CAST(size_t, M);
    void *scratch = NULL;
    int ok = 1;
    if (q8) {
        J.x.nb = llm__q8_nb(K);
        const size_t nb = LLM__CAST(size_t, J.x.nb), qbytes = (Mz * nb * LLM__QK + 63) / 64 * 64;
        scratch = llm__alloc_aligned(qbytes + 2 * Mz * nb * 4);
        if (scratch) {
            J.x.q = LLM__CAST(int8_t *, scratch);
            J.x.d = LLM__CAST(float *, LLM__CAST(void *, J.x.q + qbytes));
            J.x.s = LLM__CAST(int32_t *, LLM__CAST(void *, J.x.d + Mz * nb));
        }
        ok = scratch != NULL;
    } else if ((J.bf16dp = llm__bf16_dp()) != 0) {
        const size_t kp = LLM__CAST(size_t, llm__bf16_kp(K));
        scratch = llm__alloc_aligned(Mz * kp * 4);
        J.xp = LLM__CAST(uint32_t *, scratch);
        ok = scratch != NULL;
        if (ok)
            for (size_t i = 0; i < Mz; i++)
                for (size_t p = 0; p < kp; p++) {
                    const float *x = X + i * LLM__CAST(size_t, K) + 2 * p;
                    J.xp[i * kp + p] = llm__bf16_pair(x[0], 2 * p + 1 < LLM__CAST(size_t, K) ? x[1] : 0.0f);
                }
    }   /* (bf16 without the BF16 instructions reads X as it is) */
    if (!ok) { llm__qmm_ref(q8, Y, X, W, bias, M, K, N); return; }
    /* threads only when there is enough to share: 256 KB of weights (as the GEMV), or
     * as much work in a batch */
    const double bytes = (q8 ? 34.0 / 32.0 : 2.0) * N * K;
    const int one = llm_pool_size(pool) == 1 || bytes * M < LLM__GEMV_MIN_BYTES;
    if (q8) {
        if (one || M == 1) llm__q8x_rows(&J, 0, Mz);
        else llm_pool_run(pool, llm__q8x_task, &J);
    }
    if (one) llm__qmm_task(&J, 0, 1);
    else llm_pool_run(pool, llm__qmm_task, &J);
    llm__free_aligned(scratch);
}

//==== CPU ==============================================================================
/* The CPU backend: each op splits its work over the pool's threads so that no two
 * threads write the same float (rows for row-wise ops, columns for the parameter
 * gradients that sum over rows). Each task runs the fastest kernel the CPU has (SIMD
 * KERNELS, tested against the reference in KERNELS), or at LLM_SIMD=scalar the
 * reference itself on its slice. The split depends only on the thread count, so the
 * results are bit-identical run to run. Each op passes its task one small struct of
 * its own arguments. */
typedef struct llm__cpu { llm_pool *pool; int bf16; } llm__cpu;
#define LLM__POOL(st) (LLM__CAST(llm__cpu *, st)->pool)

static llm_status llm__cpu_create(void **st, const llm_options *opt) {
    int n_threads = opt ? opt->n_threads : 0;
    llm__cpu *c = LLM__CAST(llm__cpu *, llm__calloc(1, sizeof *c));
    if (!c) return llm__err(LLM_ERR_NOMEM, "cpu backend: out of memory");
    c->pool = llm_pool_create(n_threads);
    c->bf16 = opt ? opt->bf16 : 0;
    if (!c->pool) { LLM_FREE(c); return LLM_ERR_NOMEM; }
    *st = c;
    return LLM_OK;
}
static void llm__cpu_destroy(void *st) {
    if (!st) return;
    llm_pool_free(LLM__POOL(st));
    LLM_FREE(st);
}
static void *llm__cpu_alloc(void *st, size_t bytes) {
    (void)st;
    void *p = llm__alloc_aligned(bytes);
    if (!p) llm__err(LLM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}
static void llm__cpu_release(void *st, void *p) { (void)st; llm__free_aligned(p); }
static llm_status llm__cpu_copy(void *st, void *dst, const void *src, size_t bytes) {
    (void)st;
    if (bytes) memcpy(dst, src, bytes);
    return LLM_OK;
}
static void llm__cpu_zero(void *st, void *p, size_t bytes) { (void)st; if (bytes) memset(p, 0, bytes); }
static void llm__cpu_copy_dev(void *st, void *dst, const void *src, size_t bytes) { (void)st; if (bytes) memmove(dst, src, bytes); }
static llm_status llm__cpu_sync(void *st) { (void)st; return LLM_OK; }

/* This thread's share [lo, hi) of n items, as ints (every count here fits in one). */
static void llm__share(size_t n, int ith, int nth, int *lo, int *hi) {
    size_t l, h;
    llm__split(n, ith, nth, &l, &h);
    *lo = LLM__CAST(int, l); *hi = LLM__CAST(int, h);
}

/* encoder: forward by rows; backward by channel slices (a token may repeat, so rows
 * would collide in dwte, but channels never do). */
typedef struct { float *out; float *dwte, *dwpe; const float *dout, *wte, *wpe; const int *tok; int B, T, C; } llm__encoder_args;
static void llm__t_encoder_fwd(void *arg, int ith, int nth) {
    const llm__encoder_args *a = LLM__CAST(const llm__encoder_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->B) * a->T, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {   /* row r is (b, t) = (r / T, r % T): a batch of one */
        const float *wpe = a->wpe ? a->wpe + LLM__CAST(size_t, r % a->T) * a->C : NULL;
        llm__encoder_fwd_ref(a->out + LLM__CAST(size_t, r) * a->C, a->tok + r, a->wte, wpe, 1, 1, a->C);
    }
}
static void llm__cpu_encoder_fwd(void *st, float *out, const int *tok, const float *wte,
                                 const float *wpe, int B, int T, int C) {
    llm__encoder_args a = {out, NULL, NULL, NULL, wte, wpe, tok, B, T, C};
    llm_pool_run(LLM__POOL(st), llm__t_encoder_fwd, &a);
}
static void llm__t_encoder_bwd(void *arg, int ith, int nth) {
    const llm__encoder_args *a = LLM__CAST(const llm__encoder_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->C), ith, nth, &lo, &hi);
    llm__encoder_bwd_cols_ref(a->dwte, a->dwpe, a->dout, a->tok, a->B, a->T, a->C, lo, hi);
}
static void llm__cpu_encoder_bwd(void *st, float *dwte, float *dwpe, const float *dout,
                                 const int *tok, int B, int T, int C) {
    llm__encoder_args a = {NULL, dwte, dwpe, dout, NULL, NULL, tok, B, T, C};
    llm_pool_run(LLM__POOL(st), llm__t_encoder_bwd, &a);
}

/* layernorm and RMSNorm: forward by rows. Backward: dinp by rows, then dw (db) by
 * channel slices. mean and b are NULL for RMSNorm. */
typedef struct {
    float *out, *mean, *rstd, *dinp, *dw, *db;
    const float *inp, *w, *b, *dout, *cmean, *crstd;
    int N, C;
    float eps;
} llm__norm_args;
static void llm__t_norm_fwd(void *arg, int ith, int nth) {
    const llm__norm_args *a = LLM__CAST(const llm__norm_args *, arg);
    int lo, hi;
    const size_t C = LLM__CAST(size_t, a->C);
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    if (a->mean) llm__layernorm_fwd_fast(a->out + lo * C, a->mean + lo, a->rstd + lo, a->inp + lo * C, a->w, a->b, hi - lo, a->C);
    else llm__rmsnorm_fwd_fast(a->out + lo * C, a->rstd + lo, a->inp + lo * C, a->w, hi - lo, a->C, a->eps);
}
static void llm__t_norm_bwd_dx(void *arg, int ith, int nth) {
    const llm__norm_args *a = LLM__CAST(const llm__norm_args *, arg);
    int lo, hi;
    const size_t C = LLM__CAST(size_t, a->C);
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    if (a->cmean) llm__layernorm_bwd_dx_fast(a->dinp + lo * C, a->dout + lo * C, a->inp + lo * C, a->w, a->cmean + lo,
                                             a->crstd + lo, hi - lo, a->C);
    else llm__rmsnorm_bwd_dx_fast(a->dinp + lo * C, a->dout + lo * C, a->inp + lo * C, a->w, a->crstd + lo, hi - lo, a->C);
}
static void llm__t_norm_bwd_dw(void *arg, int ith, int nth) {
    const llm__norm_args *a = LLM__CAST(const llm__norm_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->C), ith, nth, &lo, &hi);
    if (a->cmean) llm__layernorm_bwd_dwdb_fast(a->dw, a->db, a->dout, a->inp, a->cmean, a->crstd, a->N, a->C, lo, hi);
    else llm__rmsnorm_bwd_dw_fast(a->dw, a->dout, a->inp, a->crstd, a->N, a->C, lo, hi);
}
static void llm__cpu_layernorm_fwd(void *st, float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C) {
    llm__norm_args a;
    memset(&a, 0, sizeof a);
    a.out = out; a.mean = mean; a.rstd = rstd; a.inp = inp; a.w = w; a.b = b; a.N = N; a.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_norm_fwd, &a);
}
static void llm__cpu_layernorm_bwd(void *st, float *dinp, float *dw, float *db, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int N, int C) {
    llm__norm_args a;
    memset(&a, 0, sizeof a);
    a.dinp = dinp; a.dw = dw; a.db = db; a.dout = dout; a.inp = inp; a.w = w; a.cmean = mean; a.crstd = rstd;
    a.N = N; a.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_norm_bwd_dx, &a);
    if (dw) llm_pool_run(LLM__POOL(st), llm__t_norm_bwd_dw, &a);   /* NULL: a frozen norm */
}
static void llm__cpu_rmsnorm_fwd(void *st, float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    llm__norm_args a;
    memset(&a, 0, sizeof a);
    a.out = out; a.rstd = rstd; a.inp = inp; a.w = w; a.N = N; a.C = C; a.eps = eps;
    llm_pool_run(LLM__POOL(st), llm__t_norm_fwd, &a);
}
static void llm__cpu_rmsnorm_bwd(void *st, float *dinp, float *dw, const float *dout, const float *inp,
                                 const float *w, const float *rstd, int N, int C) {
    llm__norm_args a;
    memset(&a, 0, sizeof a);
    a.dinp = dinp; a.dw = dw; a.dout = dout; a.inp = inp; a.w = w; a.crstd = rstd; a.N = N; a.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_norm_bwd_dx, &a);
    if (dw) llm_pool_run(LLM__POOL(st), llm__t_norm_bwd_dw, &a);   /* NULL: a frozen norm */
}

/* matmul: all three products go through the GEMM. out = bias, then out += inp·w^T;
 * dbias sums dout over rows, by column slices. */
typedef struct { float *out; const float *in; int N, OC; } llm__bias_args;
static void llm__t_bias_bcast(void *arg, int ith, int nth) {
    const llm__bias_args *a = LLM__CAST(const llm__bias_args *, arg);
    int lo, hi;
    const size_t OC = LLM__CAST(size_t, a->OC);
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    for (int n = lo; n < hi; n++) memcpy(a->out + n * OC, a->in, OC * sizeof(float));
}
static void llm__t_bias_grad(void *arg, int ith, int nth) {
    const llm__bias_args *a = LLM__CAST(const llm__bias_args *, arg);
    int lo, hi;
    const size_t OC = LLM__CAST(size_t, a->OC);
    llm__share(OC, ith, nth, &lo, &hi);
    for (size_t n = 0; n < LLM__CAST(size_t, a->N); n++)
        for (int j = lo; j < hi; j++) a->out[j] += a->in[n * OC + j];
}
/* The GEMM of the backend's precision: fp32, or bf16 operands with fp32 accumulation
 * (llm_options.bf16, on CPUs with AVX512-BF16 or ARM BF16; otherwise it falls back to fp32). */
typedef void (*llm__gemm_fn)(llm_pool *, int, int, int, int, int, const float *, int, const float *, int,
                             float, float *, int);
static llm__gemm_fn llm__cpu_gemm(void *st) { return LLM__CAST(llm__cpu *, st)->bf16 ? llm__sgemm_bf16 : llm__sgemm; }

static void llm__cpu_matmul_fwd(void *st, float *out, const float *inp, const float *w,
                                const float *bias, int N, int C, int OC) {
    llm_pool *pool = LLM__POOL(st);
    if (bias) {
        llm__bias_args a = {out, bias, N, OC};
        llm_pool_run(pool, llm__t_bias_bcast, &a);
    }
    llm__cpu_gemm(st)(pool, 0, 1, N, OC, C, inp, C, w, C, bias ? 1.0f : 0.0f, out, OC);
}
static void llm__cpu_matmul_bwd(void *st, float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    llm_pool *pool = LLM__POOL(st);
    llm__gemm_fn gemm = llm__cpu_gemm(st);
    if (dinp) gemm(pool, 0, 0, N, C, OC, dout, OC, w, C, 1.0f, dinp, C);   /* dinp += dout·w */
    if (dw) gemm(pool, 1, 0, OC, C, N, dout, OC, inp, C, 1.0f, dw, C);     /* dw += doutᵀ·inp */
    if (dbias) {
        llm__bias_args a = {dbias, dout, N, OC};
        llm_pool_run(pool, llm__t_bias_grad, &a);
    }
}

/* attention: forward by (b, h); backward by (b, key/value head), since the query heads
 * of a group all add into that group's dk, dv. */
typedef struct { float *out, *lse, *dqkv; const float *qkv, *dout, *cout, *clse; int B, T, NH, NKV, HS; } llm__att_args;
static void llm__t_attention_fwd(void *arg, int ith, int nth) {
    const llm__att_args *a = LLM__CAST(const llm__att_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->B) * a->NH, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++)
        llm__attention_fwd_fast(a->out, a->lse, a->qkv, i / a->NH, i % a->NH, a->T, a->NH, a->NKV, a->HS);
}
static void llm__cpu_attention_fwd(void *st, float *out, float *lse, const float *qkv, int B, int T,
                                   int NH, int NKV, int HS) {
    llm__att_args a = {out, lse, NULL, qkv, NULL, NULL, NULL, B, T, NH, NKV, HS};
    llm_pool_run(LLM__POOL(st), llm__t_attention_fwd, &a);
}
static void llm__t_attention_bwd(void *arg, int ith, int nth) {
    const llm__att_args *a = LLM__CAST(const llm__att_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->B) * a->NKV, ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++)
        llm__attention_bwd_group_fast(a->dqkv, a->dout, a->qkv, a->cout, a->clse, i / a->NKV, i % a->NKV,
                                      a->T, a->NH, a->NKV, a->HS);
}
static void llm__cpu_attention_bwd(void *st, float *dqkv, const float *dout, const float *qkv,
                                   const float *out, const float *lse, int B, int T, int NH, int NKV, int HS) {
    llm__att_args a = {NULL, NULL, dqkv, qkv, dout, out, lse, B, T, NH, NKV, HS};
    llm_pool_run(LLM__POOL(st), llm__t_attention_bwd, &a);
}

/* KV-cache attention: every row's k, v is stored first (by the caller for a few rows: a
 * copy of 2·NKV·HS floats each is cheaper than a round trip through the pool), then the
 * (head, row) attentions run in parallel. The cost of one is about pos + 1 keys (plus a
 * fixed overhead), so in a prefill the late rows weigh far more than the early ones: the
 * items, in the order (head, row), are cut into nth runs of equal total cost (each item
 * goes to the run its start falls in). A decode row splits over heads. Every (row, head)
 * is computed alone, so the result does not depend on the thread count. */
#define LLM__KV_ITEM_COST 16
typedef struct {
    float *out, *kcache, *vcache;
    const float *qkv;
    const int *seq, *pos;
    int N, NH, NKV, HS, maxT;
} llm__att_kv_args;
static void llm__t_kv_store(void *arg, int ith, int nth) {
    const llm__att_kv_args *a = LLM__CAST(const llm__att_kv_args *, arg);
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    for (int i = lo; i < hi; i++) llm__kv_store(a->kcache, a->vcache, a->qkv, a->seq, a->pos, i, a->NH, a->NKV, a->HS, a->maxT);
}
static void llm__t_attention_kv(void *arg, int ith, int nth) {
    const llm__att_kv_args *a = LLM__CAST(const llm__att_kv_args *, arg);
    const int N = a->N, NH = a->NH, *pos = a->pos;
    size_t total = 0, at = 0;
    for (int i = 0; i < N; i++) total += LLM__CAST(size_t, pos[i]) + 1 + LLM__KV_ITEM_COST;
    total *= LLM__CAST(size_t, NH);
    const size_t lo = total * LLM__CAST(size_t, ith) / LLM__CAST(size_t, nth);
    const size_t hi = total * LLM__CAST(size_t, ith + 1) / LLM__CAST(size_t, nth);
    for (int h = 0; h < NH && at < hi; h++)
        for (int i = 0; i < N && at < hi; i++) {
            if (at >= lo)
                llm__attention_kv_head_fast(a->out, a->qkv, a->kcache, a->vcache, a->seq, pos, i, h, NH, a->NKV, a->HS, a->maxT);
            at += LLM__CAST(size_t, pos[i]) + 1 + LLM__KV_ITEM_COST;
        }
}
static void llm__cpu_attention_kv(void *st, float *out, const float *qkv, float *kcache, float *vcache, const int *seq,
                                  const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    llm__att_kv_args a = {out, kcache, vcache, qkv, seq, pos, N, NH, NKV, HS, maxT};
    if (N <= 64) llm__t_kv_store(&a, 0, 1);
    else llm_pool_run(LLM__POOL(st), llm__t_kv_store, &a);
    llm_pool_run(LLM__POOL(st), llm__t_attention_kv, &a);
}

/* rope: rows are independent. The frequencies are computed once per call (not per row),
 * the cos/sin once per row and position, the rotation vectorised (llm__rope_row_fast:
 * bit-identical to the reference). Odd head sizes, or past LLM__ROPE_HSMAX, use the
 * reference row by row. */
typedef struct { float *qkv; const int *pos; const float *freq; int B, T, NH, NKV, HS; float theta, sign; } llm__rope_args;
static void llm__t_rope(void *arg, int ith, int nth) {
    const llm__rope_args *a = LLM__CAST(const llm__rope_args *, arg);
    const size_t row = LLM__CAST(size_t, a->NH + 2 * a->NKV) * a->HS;
    float cs[2 * LLM__ROPE_HSMAX];
    int lo, hi;
    llm__share(LLM__CAST(size_t, a->B) * a->T, ith, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const int p = a->pos ? a->pos[r] : r % a->T;
        if (a->freq) llm__rope_row_fast(a->qkv + r * row, p, a->NH, a->NKV, a->HS, a->freq, a->sign, cs);
        else llm__rope_row_ref(a->qkv + r * row, p, a->NH, a->NKV, a->HS, a->theta, NULL, a->sign);
    }
}
static void llm__cpu_rope(void *st, float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta, float sign) {
    float freq[LLM__ROPE_HSMAX / 2];
    llm__rope_args a = {qkv, pos, NULL, B, T, NH, NKV, HS, theta, sign};
    if (HS >= 2 && HS <= LLM__ROPE_HSMAX && HS % 2 == 0) { llm__rope_freqs(freq, HS, theta); a.freq = freq; }
    llm_pool_run(LLM__POOL(st), llm__t_rope, &a);
}
static void llm__cpu_rope_fwd(void *st, float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__cpu_rope(st, qkv, pos, B, T, NH, NKV, HS, theta, 1.0f);
}
static void llm__cpu_rope_bwd(void *st, float *dqkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__cpu_rope(st, dqkv, pos, B, T, NH, NKV, HS, theta, -1.0f);
}

/* element-wise ops: contiguous slices; SwiGLU: rows. */
enum { LLM__EW_GELU_FWD, LLM__EW_GELU_BWD, LLM__EW_RES_FWD, LLM__EW_RES_BWD, LLM__EW_SWIGLU_FWD, LLM__EW_SWIGLU_BWD };
typedef struct { int kind; float *out, *out2; const float *in, *in2; size_t n; int H; } llm__ew_args;
static void llm__t_elementwise(void *arg, int ith, int nth) {
    const llm__ew_args *a = LLM__CAST(const llm__ew_args *, arg);
    size_t lo, hi, H = LLM__CAST(size_t, a->H);
    llm__split(a->n, ith, nth, &lo, &hi);
    switch (a->kind) {
    case LLM__EW_GELU_FWD: llm__gelu_fwd_fast(a->out + lo, a->in + lo, hi - lo); break;
    case LLM__EW_GELU_BWD: llm__gelu_bwd_fast(a->out + lo, a->in + lo, a->in2 + lo, hi - lo); break;
    case LLM__EW_RES_FWD: llm__residual_fwd_fast(a->out + lo, a->in + lo, a->in2 + lo, hi - lo); break;
    case LLM__EW_RES_BWD: llm__residual_bwd_fast(a->out + lo, a->out2 + lo, a->in + lo, hi - lo); break;
    case LLM__EW_SWIGLU_FWD: llm__swiglu_fwd_fast(a->out + lo * H, a->in + lo * 2 * H, LLM__CAST(int, hi - lo), a->H); break;
    case LLM__EW_SWIGLU_BWD:
        llm__swiglu_bwd_fast(a->out + lo * 2 * H, a->in + lo * 2 * H, a->in2 + lo * H, LLM__CAST(int, hi - lo), a->H);
        break;
    }
}
static void llm__cpu_ew(void *st, int kind, float *out, float *out2, const float *in, const float *in2, size_t n, int H) {
    llm__ew_args a = {kind, out, out2, in, in2, n, H};
    llm_pool_run(LLM__POOL(st), llm__t_elementwise, &a);
}
static void llm__cpu_gelu_fwd(void *st, float *out, const float *inp, size_t n) { llm__cpu_ew(st, LLM__EW_GELU_FWD, out, NULL, inp, NULL, n, 0); }
static void llm__cpu_gelu_bwd(void *st, float *dinp, const float *inp, const float *dout, size_t n) { llm__cpu_ew(st, LLM__EW_GELU_BWD, dinp, NULL, inp, dout, n, 0); }
static void llm__cpu_residual_fwd(void *st, float *out, const float *a, const float *b, size_t n) { llm__cpu_ew(st, LLM__EW_RES_FWD, out, NULL, a, b, n, 0); }
static void llm__cpu_residual_bwd(void *st, float *da, float *db, const float *dout, size_t n) { llm__cpu_ew(st, LLM__EW_RES_BWD, da, db, dout, NULL, n, 0); }

/* dropout: contiguous slices; each element's mask depends on its index alone, so the
 * split does not change the result. */
typedef struct { float *out; const float *inp; size_t n; float p; uint64_t key; } llm__dropout_args;
static void llm__t_dropout(void *arg, int ith, int nth) {
    const llm__dropout_args *a = LLM__CAST(const llm__dropout_args *, arg);
    size_t lo, hi;
    llm__split(a->n, ith, nth, &lo, &hi);
    llm__dropout_ref(a->out + lo, a->inp + lo, hi - lo, a->p, a->key, lo);
}
static void llm__cpu_dropout(void *st, float *out, const float *inp, size_t n, float p, uint64_t key) {
    llm__dropout_args a = {out, inp, n, p, key};
    llm_pool_run(LLM__POOL(st), llm__t_dropout, &a);
}
static void llm__cpu_swiglu_fwd(void *st, float *out, const float *inp, int N, int H) {
    llm__cpu_ew(st, LLM__EW_SWIGLU_FWD, out, NULL, inp, NULL, LLM__CAST(size_t, N), H);
}
static void llm__cpu_swiglu_bwd(void *st, float *dinp, const float *inp, const float *dout, int N, int H) {
    llm__cpu_ew(st, LLM__EW_SWIGLU_BWD, dinp, NULL, inp, dout, LLM__CAST(size_t, N), H);
}

/* cross-entropy: rows are independent. */
typedef struct { float *losses, *lse, *logits; const float *clogits, *clse; const int *targets; float dloss; int N, V; } llm__ce_args;
static void llm__t_ce_fwd(void *arg, int ith, int nth) {
    const llm__ce_args *a = LLM__CAST(const llm__ce_args *, arg);
    int lo, hi;
    const size_t V = LLM__CAST(size_t, a->V);
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    llm__crossentropy_fwd_fast(a->losses + lo, a->lse + lo, a->clogits + lo * V, a->targets + lo, hi - lo, a->V);
}
static void llm__cpu_crossentropy_fwd(void *st, float *losses, float *lse, const float *logits,
                                      const int *targets, int N, int V) {
    llm__ce_args a = {losses, lse, NULL, logits, NULL, targets, 0.0f, N, V};
    llm_pool_run(LLM__POOL(st), llm__t_ce_fwd, &a);
}
static void llm__t_ce_bwd(void *arg, int ith, int nth) {
    const llm__ce_args *a = LLM__CAST(const llm__ce_args *, arg);
    int lo, hi;
    const size_t V = LLM__CAST(size_t, a->V);
    llm__share(LLM__CAST(size_t, a->N), ith, nth, &lo, &hi);
    llm__crossentropy_bwd_fast(a->logits + lo * V, a->clse + lo, a->targets + lo, a->dloss, hi - lo, a->V);
}
static void llm__cpu_crossentropy_bwd(void *st, float *logits, const float *lse, const int *targets,
                                      float dloss, int N, int V) {
    llm__ce_args a = {NULL, NULL, logits, NULL, lse, targets, dloss, N, V};
    llm_pool_run(LLM__POOL(st), llm__t_ce_bwd, &a);
}

/* sum of squares: one partial per thread, added in thread order (deterministic). */
typedef struct { const float *x; size_t n; double partial[256]; } llm__sumsq_args;
static void llm__t_sumsq(void *arg, int ith, int nth) {
    llm__sumsq_args *a = LLM__CAST(llm__sumsq_args *, arg);
    size_t lo, hi;
    llm__split(a->n, ith, nth, &lo, &hi);
    a->partial[ith] = llm__sumsq_fast(a->x + lo, hi - lo);
}
static double llm__cpu_sumsq(void *st, const float *x, size_t n) {
    llm__sumsq_args a;
    llm_pool *pool = LLM__POOL(st);
    int nth = llm_pool_size(pool);
    if (nth > 256) return llm__sumsq_ref(x, n);
    a.x = x; a.n = n;
    llm_pool_run(pool, llm__t_sumsq, &a);
    double s = 0;
    for (int i = 0; i < nth; i++) s += a.partial[i];
    return s;
}

typedef struct { float *p, *m, *v; const float *g; size_t n; float lr, beta1, beta2, eps, wd, grad_scale; int t; } llm__adamw_args;
static void llm__t_adamw(void *arg, int ith, int nth) {
    const llm__adamw_args *a = LLM__CAST(const llm__adamw_args *, arg);
    size_t lo, hi;
    llm__split(a->n, ith, nth, &lo, &hi);
    llm__adamw_fast(a->p + lo, a->g + lo, a->m + lo, a->v + lo, hi - lo, a->lr, a->beta1, a->beta2, a->eps, a->wd,
                    a->grad_scale, a->t);
}
static void llm__cpu_adamw(void *st, float *param, const float *grad, float *m, float *v, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           float grad_scale, int t) {
    llm__adamw_args a = {param, m, v, grad, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t};
    llm_pool_run(LLM__POOL(st), llm__t_adamw, &a);
}

/* The table, filled by field name (C++11 has no designated initializers, so in a
 * function): a member added to llm_backend stays NULL here instead of shifting the
 * others. Filled once (llm__call_once), so two threads asking at once are safe. */
static llm_backend llm__cpu_backend_table;
static void llm__cpu_fill(void) {
    llm_backend *b = &llm__cpu_backend_table;
    b->name = "cpu";
    b->create = llm__cpu_create; b->destroy = llm__cpu_destroy;
    b->alloc = llm__cpu_alloc; b->release = llm__cpu_release;
    b->upload = llm__cpu_copy; b->download = llm__cpu_copy;
    b->zero = llm__cpu_zero; b->copy = llm__cpu_copy_dev; b->sync = llm__cpu_sync;
    b->encoder_fwd = llm__cpu_encoder_fwd; b->encoder_bwd = llm__cpu_encoder_bwd;
    b->layernorm_fwd = llm__cpu_layernorm_fwd; b->layernorm_bwd = llm__cpu_layernorm_bwd;
    b->rmsnorm_fwd = llm__cpu_rmsnorm_fwd; b->rmsnorm_bwd = llm__cpu_rmsnorm_bwd;
    b->matmul_fwd = llm__cpu_matmul_fwd; b->matmul_bwd = llm__cpu_matmul_bwd;
    b->rope_fwd = llm__cpu_rope_fwd; b->rope_bwd = llm__cpu_rope_bwd;
    b->attention_fwd = llm__cpu_attention_fwd; b->attention_bwd = llm__cpu_attention_bwd;
    b->attention_kv = llm__cpu_attention_kv;
    b->gelu_fwd = llm__cpu_gelu_fwd; b->gelu_bwd = llm__cpu_gelu_bwd;
    b->swiglu_fwd = llm__cpu_swiglu_fwd; b->swiglu_bwd = llm__cpu_swiglu_bwd;
    b->residual_fwd = llm__cpu_residual_fwd; b->residual_bwd = llm__cpu_residual_bwd;
    b->crossentropy_fwd = llm__cpu_crossentropy_fwd; b->crossentropy_bwd = llm__cpu_crossentropy_bwd;
    b->sumsq = llm__cpu_sumsq; b->adamw = llm__cpu_adamw;
    b->dropout = llm__cpu_dropout;
    /* allreduce_mean (one process) and matmul_gelu_fwd (not fused on the CPU) stay NULL */
}
static llm__once llm__cpu_once = LLM__ONCE_INIT;
LLMDEF const llm_backend *llm_cpu_backend(void) {
    llm__call_once(&llm__cpu_once, llm__cpu_fill);
    return &llm__cpu_backend_table;
}
//==== MODEL ============================================================================
#define LLM__LORA_NT 4   /* LoRA targets: qkv, proj, up, down */
/* The classifier runs on chunks of rows of about this many logits (128 MB): with
 * recompute only one chunk of logits is kept, and both ways compute the same chunks, so
 * that the two give the same bits. */
#ifndef LLM__CLS_FLOATS   /* (tests/test_recompute.c makes it small, to have many chunks) */
#define LLM__CLS_FLOATS (32u << 20)
#endif
/* Activations of one forward pass, views into two buffers sized for (B, T): the tensors
 * between ops in the backend's activation storage (2-byte elements in a 16-bit mode of
 * the GPU), the rest fp32 (llm__act_views says which). Only
 * what backward reads is kept per layer (with llm_options.recompute the (L, ...) tensors
 * but residual3 hold one layer: backward recomputes each layer from its input); the
 * projections before each residual add go through one scratch tensor. QKV = (NH+2NKV)*HS, F = fc width (4C or 2H), H = MLP
 * hidden (4C or H). */
typedef struct llm__acts {
    float *encoded;    /* (B, T, C) */
    float *ln1;        /* (L, B, T, C) */
    float *ln1_mean;   /* (L, B, T)   (LayerNorm only) */
    float *ln1_rstd;   /* (L, B, T) */
    float *qkv;        /* (L, B, T, QKV)  after RoPE for Llama */
    float *atty;       /* (L, B, T, C) */
    float *att_lse;    /* (L, B, NH, T)   log-sum-exp of each attention row */
    float *residual2;  /* (L, B, T, C) */
    float *ln2;        /* (L, B, T, C) */
    float *ln2_mean;   /* (L, B, T) */
    float *ln2_rstd;   /* (L, B, T) */
    float *fch;        /* (L, B, T, F) */
    float *fch_act;    /* (L, B, T, H)    gelu(fch) or swiglu(fch) */
    float *residual3;  /* (L, B, T, C) */
    float *lnf;        /* (B, T, C) */
    float *lnf_mean;   /* (B, T) */
    float *lnf_rstd;   /* (B, T) */
    float *logits;     /* (B, T, V); holds dlogits after backward (recompute: one chunk of
                        * cls_rows rows, made again in backward) */
    float *lse;        /* (B, T) */
    float *losses;     /* (B, T) */
    float *proj;       /* (B, T, C) scratch: attention / MLP output before the residual add */
    /* gradient scratch for one layer at a time (backward) */
    float *dres;       /* (B, T, C) gradient of the residual stream */
    float *dC;         /* (B, T, C) */
    float *dqkv;       /* (B, T, QKV) */
    float *dH;         /* (B, T, H) */
    float *dF;         /* (B, T, F) */
    /* LoRA (only with adapters attached): hs = scale * x A^T of each adapted matmul,
     * kept for backward; h, dhs, dh: scratch */
    float *lora_hs;    /* (L, 4, B, T, r) */
    float *lora_h, *lora_dhs, *lora_dh;   /* (B, T, r) */
    float *dproj;      /* (B, T, C) dropout: a block output's gradient through the mask */
} llm__acts;
#define LLM__NACTS 31

/* LoRA adapters (see the API): for each adapted matrix W (L, out, in) of the model,
 * A (L, r, in) and Bt = B^T (L, r, out), all in one buffer, targets in the order qkv,
 * proj, up, down. */
typedef struct llm__lora {
    llm_lora_config cfg;               /* resolved: rank, alpha, targets, seed */
    float scale;                       /* alpha / r */
    int tensor[LLM__LORA_NT];          /* the adapted tensor of each target (qkvw, ...) */
    int in[LLM__LORA_NT], out[LLM__LORA_NT];
    size_t offA[LLM__LORA_NT], offBt[LLM__LORA_NT];  /* (0 for a target not attached) */
    size_t n;                          /* adapter floats */
    float *mem, *grad, *m, *v;         /* (n) device: adapters, gradients, AdamW moments */
    float *eye;                        /* (r, r) device: scale * I, the scaling as a matmul */
} llm__lora;

struct llm_model {
    llm_config cfg;                    /* defaults filled in */
    int QKV, F, H;                     /* widths derived from cfg (see llm__acts) */
    const llm_backend *be;
    void *st;                          /* backend state */
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS], n_params;
    float *params_mem, *grads_mem;     /* (n_params) device */
    float *m_mem, *v_mem;              /* (n_params) AdamW moments, on first step */
    llm_params p, g;                   /* views into params_mem / grads_mem */
    int t;                             /* optimizer steps taken */
    /* activations */
    size_t cap_BT;                     /* reserved B*T */
    int cap_T;
    float *acts_mem;                   /* the fp32 activations (statistics, logits, dres, ...) */
    float *store_mem;                  /* the tensors between ops, in the backend's activation
                                        * storage (alloc_act): act_size bytes an element */
    size_t act_size;                   /* 4, or 2 where the backend stores them in 16 bits */
    llm__acts a;
    int *tokens, *targets;             /* (B, T) device */
    float *host_losses;                /* (B, T) host */
    int B, T;                          /* of the last forward */
    int have_targets, n_valid, logits_state;   /* logits_state: 0 none, 1 logits, 2 dlogits */
    /* memory levers and regularisation (llm_options) */
    int recompute;                     /* keep only each layer's input; recompute in backward */
    float dropout;                     /* p, in [0, 1) */
    uint64_t dropout_seed;
    int training;                      /* llm_model_set_training (1 by default) */
    int micro;                         /* forwards that dropped out since the last step */
    int drop_on;                       /* the last forward dropped out, with ... */
    uint64_t drop_step, drop_micro;    /* ... these counters (backward regenerates its masks) */
    llm__lora *lora;                   /* NULL: no adapters */
    int cls_rows;                      /* rows per classifier chunk (LLM__CLS_FLOATS / V) */
    size_t kv_bytes;                   /* held by the live KV sessions */
    /* quantized matrices (llm_model_quantize; see the MODEL subsection on them):
     * qdtype F32 means none; else params_mem holds only the other tensors */
    llm_dtype qdtype;
    unsigned char *qmem;               /* host: every matrix's tiles */
    size_t qoff[6], qper[6];           /* by kind (llm__wkind, then the embedding): start, bytes a layer */
};

static const char *const llm__tensor_names[LLM_NTENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "wcls"};
LLMDEF const char *llm_tensor_name(int i) { return i >= 0 && i < LLM_NTENSORS ? llm__tensor_names[i] : "?"; }

LLMDEF llm_config llm_config_gpt2(void) {
    llm_config c;
    memset(&c, 0, sizeof c);
    c.arch = LLM_ARCH_GPT2;
    c.max_seq_len = 1024; c.vocab_size = 50257; c.n_layer = 12; c.n_head = 12; c.n_embd = 768;
    return c;
}
LLMDEF llm_config llm_config_llama(int vocab_size, int n_layer, int n_head, int n_kv_head, int n_embd, int hidden_dim) {
    llm_config c;
    memset(&c, 0, sizeof c);
    c.arch = LLM_ARCH_LLAMA;
    c.max_seq_len = 1024; c.vocab_size = vocab_size; c.n_layer = n_layer; c.n_head = n_head;
    c.n_kv_head = n_kv_head; c.n_embd = n_embd; c.hidden_dim = hidden_dim;
    return c;
}

/* Fill the defaults in and check that the shape is possible. */
static llm_status llm__config_resolve(llm_config *c) {
    if (c->arch != LLM_ARCH_GPT2 && c->arch != LLM_ARCH_LLAMA) return llm__err(LLM_ERR_ARG, "config: unknown arch %d", LLM__CAST(int, c->arch));
    int gpt2 = c->arch == LLM_ARCH_GPT2;
    if (c->n_kv_head == 0 || gpt2) c->n_kv_head = c->n_head;
    if (c->hidden_dim == 0 && gpt2) c->hidden_dim = c->n_embd > 0 && c->n_embd <= (1 << 20) ? 4 * c->n_embd : -1;
    if (c->norm_eps == 0.0f) c->norm_eps = 1e-5f;
    if (c->rope_theta == 0.0f) c->rope_theta = 10000.0f;
    if (gpt2) c->untied_head = 0;
    c->untied_head = c->untied_head != 0;
    if (c->n_layer <= 0 || c->n_head <= 0 || c->n_embd <= 0 || c->vocab_size <= 0 || c->max_seq_len <= 0 ||
        c->hidden_dim <= 0 || c->n_kv_head <= 0)
        return llm__err(LLM_ERR_ARG, "config: every size must be positive (L=%d NH=%d NKV=%d C=%d H=%d V=%d maxT=%d)",
                        c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->hidden_dim, c->vocab_size, c->max_seq_len);
    if (c->n_embd % c->n_head != 0)
        return llm__err(LLM_ERR_ARG, "config: n_head %d does not divide n_embd %d", c->n_head, c->n_embd);
    if (c->n_head % c->n_kv_head != 0)
        return llm__err(LLM_ERR_ARG, "config: n_kv_head %d does not divide n_head %d", c->n_kv_head, c->n_head);
    if (!gpt2 && (c->n_embd / c->n_head) % 2)
        return llm__err(LLM_ERR_ARG, "config: RoPE needs an even head size, got %d", c->n_embd / c->n_head);
    /* keep every index computation well inside size_t and int */
    if (c->n_layer > 4096 || c->n_embd > 65536 || c->hidden_dim > (1 << 20) || c->vocab_size > (1 << 24) || c->max_seq_len > (1 << 20))
        return llm__err(LLM_ERR_ARG, "config: sizes out of range (L=%d C=%d H=%d V=%d maxT=%d)",
                        c->n_layer, c->n_embd, c->hidden_dim, c->vocab_size, c->max_seq_len);
    if (!(c->norm_eps > 0.0f) || !(c->rope_theta > 0.0f)) return llm__err(LLM_ERR_ARG, "config: norm_eps and rope_theta must be positive");
    return LLM_OK;
}

LLMDEF void llm_tensor_layout(const llm_config *cfg, size_t off[LLM_NTENSORS], size_t size[LLM_NTENSORS]) {
    llm_config c = *cfg;
    llm__config_resolve(&c);
    size_t C = LLM__CAST(size_t, c.n_embd), L = LLM__CAST(size_t, c.n_layer), V = LLM__CAST(size_t, c.vocab_size);
    size_t T = LLM__CAST(size_t, c.max_seq_len), HS = C / LLM__CAST(size_t, c.n_head);
    size_t QKV = LLM__CAST(size_t, c.n_head + 2 * c.n_kv_head) * HS, H = LLM__CAST(size_t, c.hidden_dim);
    int gpt2 = c.arch == LLM_ARCH_GPT2;
    size_t F = gpt2 ? H : 2 * H, bias = gpt2 ? 1 : 0;   /* GPT-2 has biases, Llama none */
    size_t s[LLM_NTENSORS];
    s[0] = V * C; s[1] = gpt2 ? T * C : 0; s[2] = L * C; s[3] = bias * L * C;
    s[4] = L * QKV * C; s[5] = bias * L * QKV; s[6] = L * C * C; s[7] = bias * L * C;
    s[8] = L * C; s[9] = bias * L * C; s[10] = L * F * C; s[11] = bias * L * F;
    s[12] = L * C * H; s[13] = bias * L * C; s[14] = C; s[15] = bias * C;
    s[16] = c.untied_head ? V * C : 0;
    size_t o = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) { off[i] = o; size[i] = s[i]; o += s[i]; }
}

static void llm__param_views(llm_params *v, float *mem, const size_t off[LLM_NTENSORS], const size_t size[LLM_NTENSORS]) {
    float **f[LLM_NTENSORS] = {&v->wte, &v->wpe, &v->ln1w, &v->ln1b, &v->qkvw, &v->qkvb,
        &v->attprojw, &v->attprojb, &v->ln2w, &v->ln2b, &v->fcw, &v->fcb, &v->fcprojw, &v->fcprojb,
        &v->lnfw, &v->lnfb, &v->wcls};
    for (int i = 0; i < LLM_NTENSORS; i++) *f[i] = mem && size[i] ? mem + off[i] : NULL;
}

/* A model with zeroed parameters and no activations: the common part of create/load. */
static llm_status llm__qalloc(llm_model *m, llm_dtype dtype, float **small, unsigned char **q);
static void llm__qadopt(llm_model *m, llm_dtype dtype, float *small, unsigned char *q);
/* A model with zeroed parameters: fp32, or (dtype Q8_0 / BF16) with its matrices as
 * zeroed tiles for a loader to fill. */
static llm_status llm__model_make(llm_model **out, const llm_config *cfg, const llm_options *opt, llm_dtype dtype) {
    *out = NULL;
    llm_config c = *cfg;
    llm_status s = llm__config_resolve(&c);
    if (s != LLM_OK) return s;
    llm_model *m = LLM__CAST(llm_model *, llm__calloc(1, sizeof *m));
    if (!m) return llm__err(LLM_ERR_NOMEM, "model: out of memory");
    m->cfg = c;
    int HS = c.n_embd / c.n_head;
    m->QKV = (c.n_head + 2 * c.n_kv_head) * HS;
    m->H = c.hidden_dim;
    m->F = c.arch == LLM_ARCH_GPT2 ? m->H : 2 * m->H;
    m->be = opt && opt->backend ? opt->backend : llm_cpu_backend();
    m->training = 1;
    m->cls_rows = LLM__CLS_FLOATS / c.vocab_size > 16 ? LLM__CAST(int, LLM__CLS_FLOATS / c.vocab_size) : 16;
    if (opt) {
        m->recompute = opt->recompute != 0;
        m->dropout = opt->dropout;
        m->dropout_seed = opt->dropout_seed;
    }
    if (!(m->dropout >= 0.0f && m->dropout < 1.0f)) s = llm__err(LLM_ERR_ARG, "model: dropout p = %g must be in [0, 1)", LLM__CAST(double, m->dropout));
    else if (m->dropout > 0.0f && !m->be->dropout) s = llm__err(LLM_ERR_UNSUPPORTED, "model: the %s backend has no dropout op (use dropout 0)", m->be->name);
    if (s != LLM_OK || (s = m->be->create(&m->st, opt)) != LLM_OK) { LLM_FREE(m); return s; }
    m->act_size = m->be->act_dtype && m->be->act_dtype(m->st) != LLM_DTYPE_F32 ? 2 : sizeof(float);
    llm_tensor_layout(&c, m->off, m->size);
    m->n_params = m->off[LLM_NTENSORS - 1] + m->size[LLM_NTENSORS - 1];
    if (dtype != LLM_DTYPE_F32) {
        float *small;
        unsigned char *q;
        if ((s = llm__qalloc(m, dtype, &small, &q)) != LLM_OK) { llm_model_free(m); return s; }
        llm__qadopt(m, dtype, small, q);
        *out = m;
        return LLM_OK;
    }
    m->params_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
    if (!m->params_mem) { llm_model_free(m); return LLM_ERR_NOMEM; }
    m->be->zero(m->st, m->params_mem, m->n_params * sizeof(float));
    llm__param_views(&m->p, m->params_mem, m->off, m->size);
    *out = m;
    return LLM_OK;
}
static llm_status llm__model_new(llm_model **out, const llm_config *cfg, const llm_options *opt) {
    return llm__model_make(out, cfg, opt, LLM_DTYPE_F32);
}

/* Which tensors are matmul weights or embeddings (initialised N(0, 0.02), decayed by
 * AdamW as nanoGPT does), which are norm gains (1), and which project into the
 * residual stream (scaled by 1/sqrt(2L)). */
static int llm__is_2d(int i) { return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12 || i == 16; }
static int llm__is_gain(int i) { return i == 2 || i == 8 || i == 14; }

LLMDEF llm_status llm_model_create(llm_model **out, const llm_config *cfg, const llm_options *opt, uint64_t seed) {
    if (!out || !cfg) return llm__err(LLM_ERR_ARG, "llm_model_create: NULL argument");
    llm_model *m;
    llm_status s = llm__model_new(&m, cfg, opt);
    if (s != LLM_OK) { *out = NULL; return s; }
    float *h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { llm_model_free(m); *out = NULL; return llm__err(LLM_ERR_NOMEM, "model: out of memory for init"); }
    /* GPT-2's init: N(0, 0.02) for weights, the two projections that write into the
     * residual stream scaled by 1/sqrt(2L) so that its variance does not grow with
     * depth; biases 0; norm gains 1. */
    llm_rng r;
    llm_rng_seed(&r, seed);
    float proj_std = 0.02f / sqrtf(2.0f * LLM__CAST(float, m->cfg.n_layer));
    for (int i = 0; i < LLM_NTENSORS; i++) {
        float *t = h + m->off[i];
        float std = (i == 6 || i == 12) ? proj_std : 0.02f;
        for (size_t j = 0; j < m->size[i]; j++)
            t[j] = llm__is_2d(i) ? std * llm_rng_normal(&r) : llm__is_gain(i) ? 1.0f : 0.0f;
    }
    s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
    LLM_FREE(h);
    if (s != LLM_OK) { llm_model_free(m); *out = NULL; return s; }
    *out = m;
    return LLM_OK;
}

LLMDEF void llm_model_free(llm_model *m) {
    if (!m) return;
    llm_model_lora_free(m);
    if (m->st) {
        void *bufs[8] = {m->params_mem, m->grads_mem, m->m_mem, m->v_mem, m->acts_mem, m->store_mem, m->tokens, m->targets};
        for (int i = 0; i < 8; i++) if (bufs[i]) m->be->release(m->st, bufs[i]);
        m->be->destroy(m->st);
    }
    llm__free_aligned(m->qmem);
    LLM_FREE(m->host_losses);
    LLM_FREE(m);
}

LLMDEF llm_config llm_model_config(const llm_model *m) { return m->cfg; }
LLMDEF size_t llm_model_num_params(const llm_model *m) { return m->n_params; }
LLMDEF int llm_model_step_count(const llm_model *m) { return m->t; }

static void llm__qget_params(const llm_model *m, float *dst);
LLMDEF llm_status llm_model_get_params(const llm_model *m, float *dst) {
    if (m->qdtype != LLM_DTYPE_F32) { llm__qget_params(m, dst); return LLM_OK; }
    return m->be->download(m->st, dst, m->params_mem, m->n_params * sizeof(float));
}
LLMDEF llm_status llm_model_set_params(llm_model *m, const float *src) {
    if (m->qdtype != LLM_DTYPE_F32)
        return llm__err(LLM_ERR_UNSUPPORTED, "set_params: the model's weights are %s (set them on an fp32 model, then quantize)",
                        llm_dtype_name(m->qdtype));
    return m->be->upload(m->st, m->params_mem, src, m->n_params * sizeof(float));
}
LLMDEF llm_status llm_model_get_grads(const llm_model *m, float *dst) {
    if (m->lora) return llm__err(LLM_ERR_STATE, "get_grads: the base is frozen while LoRA adapters are attached (llm_model_lora_get_grads)");
    if (!m->grads_mem) return llm__err(LLM_ERR_STATE, "get_grads: no gradients yet (run backward)");
    return m->be->download(m->st, dst, m->grads_mem, m->n_params * sizeof(float));
}
LLMDEF void llm_model_set_training(llm_model *m, int training) { if (m) m->training = training != 0; }

/* The key of one dropout mask (llm__dropout_ref draws the elements from it): each
 * counter is absorbed in turn, h = mix((h ^ v) + φ), so that every (seed, optimizer
 * step, micro-batch, layer, place) has its own stream. place: 0 the embedding (layer 0),
 * 1 the attention output projection, 2 the MLP output. tests/ref_lora.py computes the
 * same in numpy. */
static uint64_t llm__dropout_key(uint64_t seed, uint64_t step, uint64_t micro, int layer, int place) {
    const uint64_t v[4] = {step, micro, LLM__CAST(uint64_t, layer), LLM__CAST(uint64_t, place)};
    uint64_t h = llm__mix64(seed + LLM__PHI64);
    for (int i = 0; i < 4; i++) h = llm__mix64((h ^ v[i]) + LLM__PHI64);
    return h;
}

/* ---- LoRA ---------------------------------------------------------------------------- */
/* The adapters are parameters of their own: one device buffer with its gradient and
 * moments, views per target. The forward and backward use them in the linear layers
 * (llm__linear_fwd/bwd); this part makes, merges and frees them. */
static void llm__free_dev(llm_model *m, float **p) {
    if (*p) m->be->release(m->st, *p);
    *p = NULL;
}
/* The activations' layout depends on the adapters: the next forward reserves anew. */
static void llm__acts_release(llm_model *m) {
    llm__free_dev(m, &m->acts_mem);
    llm__free_dev(m, &m->store_mem);
    if (m->tokens) m->be->release(m->st, m->tokens);
    if (m->targets) m->be->release(m->st, m->targets);
    LLM_FREE(m->host_losses);
    m->tokens = m->targets = NULL; m->host_losses = NULL;
    m->cap_BT = 0; m->cap_T = 0; m->logits_state = 0; m->have_targets = 0;
}

LLMDEF void llm_model_lora_free(llm_model *m) {
    if (!m || !m->lora) return;
    llm__lora *a = m->lora;
    llm__free_dev(m, &a->mem); llm__free_dev(m, &a->grad); llm__free_dev(m, &a->m); llm__free_dev(m, &a->v);
    llm__free_dev(m, &a->eye);
    LLM_FREE(a);
    m->lora = NULL;
    llm__acts_release(m);
}
LLMDEF llm_lora_config llm_model_lora_config(const llm_model *m) {
    llm_lora_config c;
    memset(&c, 0, sizeof c);
    return m && m->lora ? m->lora->cfg : c;
}
LLMDEF size_t llm_model_lora_num_params(const llm_model *m) { return m && m->lora ? m->lora->n : 0; }

/* Fill the defaults in and lay the adapters out for model m (no memory yet). */
static llm_status llm__lora_layout(llm__lora *a, const llm_model *m, const llm_lora_config *cfg) {
    memset(a, 0, sizeof *a);
    a->cfg = *cfg;
    llm_lora_config *c = &a->cfg;
    int C = m->cfg.n_embd;
    if (c->targets == 0) c->targets = LLM_LORA_ALL;
    if (c->targets & ~LLM_LORA_ALL) return llm__err(LLM_ERR_ARG, "lora: unknown target bits 0x%x", LLM__CAST(unsigned, c->targets));
    if (c->rank < 1 || c->rank > C)
        return llm__err(LLM_ERR_ARG, "lora: rank %d must be in [1, C = %d]", c->rank, C);
    if (c->alpha == 0.0f) c->alpha = 2.0f * LLM__CAST(float, c->rank);
    if (!(c->alpha > 0.0f) || c->alpha > 1e6f) return llm__err(LLM_ERR_ARG, "lora: alpha %g must be positive", LLM__CAST(double, c->alpha));
    a->scale = c->alpha / LLM__CAST(float, c->rank);
    const int tensor[LLM__LORA_NT] = {4, 6, 10, 12};               /* qkvw, attprojw, fcw, fcprojw */
    const int in[LLM__LORA_NT] = {C, C, C, m->H}, out[LLM__LORA_NT] = {m->QKV, C, m->F, C};
    size_t L = LLM__CAST(size_t, m->cfg.n_layer), r = LLM__CAST(size_t, c->rank), o = 0;
    for (int k = 0; k < LLM__LORA_NT; k++) {
        a->tensor[k] = tensor[k]; a->in[k] = in[k]; a->out[k] = out[k];
        if (!(c->targets & (1 << k))) continue;
        if (c->rank > in[k] || c->rank > out[k])
            return llm__err(LLM_ERR_ARG, "lora: rank %d exceeds a side of %s (%d x %d)", c->rank, llm_tensor_name(tensor[k]), out[k], in[k]);
        a->offA[k] = o; o += L * r * LLM__CAST(size_t, in[k]);
        a->offBt[k] = o; o += L * r * LLM__CAST(size_t, out[k]);
    }
    a->n = o;
    return LLM_OK;
}

/* The frozen base needs neither gradients nor moments. */
static void llm__freeze_base(llm_model *m) {
    llm__free_dev(m, &m->grads_mem);
    llm__free_dev(m, &m->m_mem);
    llm__free_dev(m, &m->v_mem);
    llm__param_views(&m->g, NULL, m->off, m->size);
}

/* Attach adapters laid out as a, with values src (host, n floats), freezing the base. */
static llm_status llm__lora_attach(llm_model *m, const llm__lora *layout, const float *src) {
    llm__lora *a = LLM__CAST(llm__lora *, llm__calloc(1, sizeof *a));
    if (!a) return llm__err(LLM_ERR_NOMEM, "lora: out of memory");
    *a = *layout;
    size_t r = LLM__CAST(size_t, a->cfg.rank), bytes = a->n * sizeof(float);
    float *eye = LLM__CAST(float *, llm__calloc(r * r, sizeof(float)));
    a->mem = LLM__CAST(float *, m->be->alloc(m->st, bytes));
    a->eye = LLM__CAST(float *, m->be->alloc(m->st, r * r * sizeof(float)));
    llm_status s = !eye || !a->mem || !a->eye ? llm__err(LLM_ERR_NOMEM, "lora: out of memory for %zu adapter floats", a->n) : LLM_OK;
    if (s == LLM_OK) {
        for (size_t i = 0; i < r; i++) eye[i * r + i] = a->scale;
        s = m->be->upload(m->st, a->eye, eye, r * r * sizeof(float));
    }
    if (s == LLM_OK) s = m->be->upload(m->st, a->mem, src, bytes);
    LLM_FREE(eye);
    if (s != LLM_OK) {
        llm__free_dev(m, &a->mem); llm__free_dev(m, &a->eye);
        LLM_FREE(a);
        return s;
    }
    llm_model_lora_free(m);
    llm__freeze_base(m);
    llm__acts_release(m);
    m->lora = a;
    return LLM_OK;
}

LLMDEF llm_status llm_model_lora_create(llm_model *m, const llm_lora_config *cfg) {
    if (!m || !cfg) return llm__err(LLM_ERR_ARG, "lora_create: NULL argument");
    llm__lora a;
    llm_status s = llm__lora_layout(&a, m, cfg);
    if (s != LLM_OK) return s;
    float *h = LLM__CAST(float *, llm__calloc(a.n, sizeof(float)));   /* B = 0 */
    if (!h) return llm__err(LLM_ERR_NOMEM, "lora: out of memory");
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)): target by target, layer by layer, row-major */
    llm_rng rng;
    llm_rng_seed(&rng, a.cfg.seed);
    size_t L = LLM__CAST(size_t, m->cfg.n_layer), r = LLM__CAST(size_t, a.cfg.rank);
    for (int k = 0; k < LLM__LORA_NT; k++) {
        if (!(a.cfg.targets & (1 << k))) continue;
        float bound = 1.0f / sqrtf(LLM__CAST(float, a.in[k]));
        for (size_t i = 0; i < L * r * LLM__CAST(size_t, a.in[k]); i++) {
            float u = LLM__CAST(float, llm_rng_u64(&rng) >> 40) * (1.0f / 16777216.0f);   /* [0, 1) */
            h[a.offA[k] + i] = (2.0f * u - 1.0f) * bound;
        }
    }
    s = llm__lora_attach(m, &a, h);
    LLM_FREE(h);
    return s;
}

static llm_status llm__lora_copy(const llm_model *m, float *dst, const float *dev, const char *what) {
    if (!m || !m->lora) return llm__err(LLM_ERR_STATE, "%s: no LoRA adapters attached", what);
    if (!dev) return llm__err(LLM_ERR_STATE, "%s: no adapter gradients yet (run backward)", what);
    return m->be->download(m->st, dst, dev, m->lora->n * sizeof(float));
}
LLMDEF llm_status llm_model_lora_get(const llm_model *m, float *dst) { return llm__lora_copy(m, dst, m ? (m->lora ? m->lora->mem : NULL) : NULL, "lora_get"); }
LLMDEF llm_status llm_model_lora_get_grads(const llm_model *m, float *dst) { return llm__lora_copy(m, dst, m && m->lora ? m->lora->grad : NULL, "lora_get_grads"); }
LLMDEF llm_status llm_model_lora_set(llm_model *m, const float *src) {
    if (!m || !m->lora) return llm__err(LLM_ERR_STATE, "lora_set: no LoRA adapters attached");
    return m->be->upload(m->st, m->lora->mem, src, m->lora->n * sizeof(float));
}

/* W[l] += scale * B[l] A[l] = scale * Bt[l]^T A[l], on the host in double: (out, r) x (r, in). */
LLMDEF llm_status llm_model_lora_merge(llm_model *m) {
    if (!m || !m->lora) return llm__err(LLM_ERR_STATE, "lora_merge: no LoRA adapters attached");
    llm__lora *a = m->lora;
    float *w = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    float *ad = LLM__CAST(float *, LLM_MALLOC((a->n ? a->n : 1) * sizeof(float)));
    double *row = LLM__CAST(double *, LLM_MALLOC((m->H > m->cfg.n_embd ? LLM__CAST(size_t, m->H) : LLM__CAST(size_t, m->cfg.n_embd)) * sizeof(double)));
    llm_status s = !w || !ad || !row ? llm__err(LLM_ERR_NOMEM, "lora_merge: out of memory") : LLM_OK;
    if (s == LLM_OK) s = llm_model_get_params(m, w);
    if (s == LLM_OK) s = llm_model_lora_get(m, ad);
    size_t L = LLM__CAST(size_t, m->cfg.n_layer), r = LLM__CAST(size_t, a->cfg.rank);
    for (int k = 0; k < LLM__LORA_NT && s == LLM_OK; k++) {
        if (!(a->cfg.targets & (1 << k))) continue;
        size_t in = LLM__CAST(size_t, a->in[k]), out = LLM__CAST(size_t, a->out[k]);
        for (size_t l = 0; l < L; l++) {
            const float *A = ad + a->offA[k] + l * r * in, *Bt = ad + a->offBt[k] + l * r * out;
            float *W = w + m->off[a->tensor[k]] + l * out * in;
            for (size_t o = 0; o < out; o++) {
                for (size_t i = 0; i < in; i++) row[i] = 0.0;
                for (size_t j = 0; j < r; j++) {
                    double b = LLM__CAST(double, Bt[j * out + o]) * a->scale;
                    for (size_t i = 0; i < in; i++) row[i] += b * A[j * in + i];
                }
                for (size_t i = 0; i < in; i++) W[o * in + i] = LLM__CAST(float, W[o * in + i] + row[i]);
            }
        }
    }
    if (s == LLM_OK) s = llm_model_set_params(m, w);
    LLM_FREE(w); LLM_FREE(ad); LLM_FREE(row);
    if (s == LLM_OK) llm_model_lora_free(m);
    return s;
}

/* Element i of an activation tensor in store_mem. Its elements are m->act_size bytes (4,
 * or 2 in a backend's 16-bit activation storage), so such a float * is a handle that the
 * model offsets but never reads; on the CPU this is p + i. */
static float *llm__act(const llm_model *m, float *p, size_t i) {
    return LLM__CAST(float *, LLM__CAST(char *, p) + i * m->act_size);
}
/* Lay the activation views out for (B, T): the tensors between ops in store_mem (the
 * backend's activation storage), the fp32 ones (norm statistics, lse, losses, logits,
 * the residual stream's gradient, LoRA's rank-r tensors, dproj) in acts_mem. Returns the
 * floats of acts_mem and sets *n_store to the elements of store_mem (mem, store NULL:
 * only count). Each tensor starts on a 16-element boundary. */
static llm_status llm__oom(const llm_model *m, const char *what, int B, int T);
static size_t llm__act_views(llm__acts *a, float *mem, float *store, const llm_model *m, size_t B, size_t T,
                             size_t *n_store) {
    const llm_config *c = &m->cfg;
    size_t L = LLM__CAST(size_t, c->n_layer), C = LLM__CAST(size_t, c->n_embd), NH = LLM__CAST(size_t, c->n_head);
    size_t V = LLM__CAST(size_t, c->vocab_size), BT = B * T;
    size_t QKV = LLM__CAST(size_t, m->QKV), F = LLM__CAST(size_t, m->F), H = LLM__CAST(size_t, m->H);
    size_t r = m->lora ? LLM__CAST(size_t, m->lora->cfg.rank) : 0, drop = m->dropout > 0.0f;
    /* recompute: one layer's activations (backward makes them again, layer by layer);
     * only the layers' inputs (encoded, residual3) are kept for all L */
    size_t Lk = m->recompute ? 1 : L;
    size_t n[LLM__NACTS] = {
        BT * C, Lk * BT * C, Lk * BT, Lk * BT, Lk * BT * QKV, Lk * BT * C, Lk * B * NH * T, Lk * BT * C,
        Lk * BT * C, Lk * BT, Lk * BT, Lk * BT * F, Lk * BT * H, L * BT * C, BT * C, BT, BT,
        (m->recompute && BT > LLM__CAST(size_t, m->cls_rows) + 15 ? LLM__CAST(size_t, m->cls_rows) + 15 : BT) * V, BT, BT,
        BT * C, BT * C, BT * C, BT * QKV, BT * H, BT * F,
        Lk * LLM__LORA_NT * BT * r, BT * r, BT * r, BT * r, drop * BT * C};
    float **views[LLM__NACTS] = {&a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv,
        &a->atty, &a->att_lse, &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch,
        &a->fch_act, &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits, &a->lse,
        &a->losses, &a->proj, &a->dres, &a->dC, &a->dqkv, &a->dH, &a->dF,
        &a->lora_hs, &a->lora_h, &a->lora_dhs, &a->lora_dh, &a->dproj};
    static const char in_store[LLM__NACTS] = {1, 1, 0, 0, 1,   /* 1: in store_mem, 0: fp32 */
        1, 0, 1, 1, 0, 0, 1,
        1, 1, 1, 0, 0, 0, 0,
        0, 1, 0, 1, 1, 1, 1,
        0, 0, 0, 0, 0};
    size_t o = 0, os = 0;
    for (int i = 0; i < LLM__NACTS; i++) {
        size_t *at = in_store[i] ? &os : &o;
        *views[i] = !mem ? NULL : in_store[i] ? llm__act(m, store, *at) : mem + *at;
        *at += (n[i] + 15) & ~LLM__CAST(size_t, 15);
    }
    *n_store = os;
    return o;
}

LLMDEF llm_status llm_model_reserve(llm_model *m, int B, int T) {
    if (B <= 0 || T <= 0) return llm__err(LLM_ERR_ARG, "reserve: B=%d and T=%d must be positive", B, T);
    if (T > m->cfg.max_seq_len)
        return llm__err(LLM_ERR_ARG, "reserve: T=%d exceeds the model's context of %d", T, m->cfg.max_seq_len);
    size_t BT = LLM__CAST(size_t, B) * LLM__CAST(size_t, T);
    if (BT <= m->cap_BT && T <= m->cap_T) return LLM_OK;
    size_t per_token = LLM__CAST(size_t, m->cfg.vocab_size) + LLM__CAST(size_t, m->cfg.n_layer) * 
                       (8 * LLM__CAST(size_t, m->cfg.n_embd) + LLM__CAST(size_t, m->QKV + m->F + m->H)) + 64;
    if (BT > (SIZE_MAX / 64) / per_token) return llm__err(LLM_ERR_NOMEM, "reserve: B=%d T=%d is too large", B, T);
    llm__acts a;
    size_t n_store, need = llm__act_views(&a, NULL, NULL, m, LLM__CAST(size_t, B), LLM__CAST(size_t, T), &n_store);
    const llm_backend *be = m->be;
    llm__acts_release(m);
    m->acts_mem = LLM__CAST(float *, be->alloc(m->st, need * sizeof(float)));
    /* the tensors between ops where the backend keeps them (2 bytes each in its 16-bit modes) */
    m->store_mem = LLM__CAST(float *, (be->alloc_act ? be->alloc_act : be->alloc)(m->st, n_store * m->act_size));
    m->tokens = LLM__CAST(int *, be->alloc(m->st, BT * sizeof(int)));
    m->targets = LLM__CAST(int *, be->alloc(m->st, BT * sizeof(int)));
    m->host_losses = LLM__CAST(float *, LLM_MALLOC(BT * sizeof(float)));
    if (!m->acts_mem || !m->store_mem || !m->tokens || !m->targets || !m->host_losses)
        return llm__oom(m, "the activations", B, T);
    m->cap_BT = BT; m->cap_T = T;
    return LLM_OK;
}

/* Bytes of the activations for (B, T) (the views, the token and target ids, the host
 * copy of the losses). */
static size_t llm__act_bytes(const llm_model *m, size_t B, size_t T) {
    llm__acts a;
    size_t n_store, n = llm__act_views(&a, NULL, NULL, m, B, T, &n_store);
    return n * sizeof(float) + n_store * m->act_size + B * T * (2 * sizeof(int) + sizeof(float));
}

LLMDEF llm_status llm_model_memory(const llm_model *m, int B, int T, llm_memory *out) {
    if (!m || !out) return llm__err(LLM_ERR_ARG, "memory: NULL argument");
    if (B < 0 || T < 0 || T > m->cfg.max_seq_len || (B > 0) != (T > 0))
        return llm__err(LLM_ERR_ARG, "memory: B=%d T=%d (both positive and T <= %d, or both 0)", B, T, m->cfg.max_seq_len);
    memset(out, 0, sizeof *out);
    size_t f = sizeof(float), trains = m->lora ? m->lora->n : m->n_params;
    out->params = m->n_params * f;
    out->adapters = m->lora ? (m->lora->n + LLM__CAST(size_t, m->lora->cfg.rank) * LLM__CAST(size_t, m->lora->cfg.rank)) * f : 0;
    out->grads = trains * f;
    out->optimizer = 2 * trains * f;
    out->activations = B > 0 ? llm__act_bytes(m, LLM__CAST(size_t, B), LLM__CAST(size_t, T))
                             : m->cap_BT ? llm__act_bytes(m, m->cap_BT / LLM__CAST(size_t, m->cap_T), LLM__CAST(size_t, m->cap_T)) : 0;
    out->kv_cache = m->kv_bytes;
    out->total = out->params + out->adapters + out->grads + out->optimizer + out->activations + out->kv_cache;
    int have_grads = m->lora ? m->lora->grad != NULL : m->grads_mem != NULL;
    int have_moments = m->lora ? m->lora->m != NULL : m->m_mem != NULL;
    out->allocated = out->params + out->adapters + (have_grads ? out->grads : 0) + (have_moments ? out->optimizer : 0) +
                     (m->cap_BT ? llm__act_bytes(m, m->cap_BT / LLM__CAST(size_t, m->cap_T), LLM__CAST(size_t, m->cap_T)) : 0) +
                     m->kv_bytes;
    return LLM_OK;
}

/* An allocation for training failed: say what did not fit, what the model holds, and
 * which levers need less. */
static llm_status llm__oom(const llm_model *m, const char *what, int B, int T) {
    char fail[sizeof llm__errmsg];
    snprintf(fail, sizeof fail, "%s", llm_last_error());
    llm_memory u;
    if (llm_model_memory(m, B, T, &u) != LLM_OK) memset(&u, 0, sizeof u);
    return llm__err(LLM_ERR_NOMEM,
                    "out of memory for %s (training at B=%d T=%d needs %.1f MB: parameters %.1f, gradients %.1f, "
                    "AdamW moments %.1f, activations %.1f); what needs less: a smaller batch with gradient "
                    "accumulation, recompute (llm_options.recompute), LoRA adapters instead of full training [%s]",
                    what, B, T, u.total / 1e6, (u.params + u.adapters) / 1e6, u.grads / 1e6, u.optimizer / 1e6,
                    u.activations / 1e6, fail);
}

static llm_status llm__check_tokens(const int *tok, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= V)
            return llm__err(LLM_ERR_ARG, "%s[%zu] = %d is out of range [0, %d)", what, i, tok[i], V);
    return LLM_OK;
}

/* One norm, whichever the family uses: LayerNorm (with mean) or RMSNorm. */
static void llm__norm_fwd(const llm_model *m, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N) {
    if (m->cfg.arch == LLM_ARCH_GPT2) m->be->layernorm_fwd(m->st, out, mean, rstd, inp, w, b, N, m->cfg.n_embd);
    else m->be->rmsnorm_fwd(m->st, out, rstd, inp, w, N, m->cfg.n_embd, m->cfg.norm_eps);
}
/* res = a + b, then out = norm(res): one pass over the rows where the backend fuses the
 * two (LayerNorm), else the two ops. */
static void llm__residual_norm_fwd(const llm_model *m, float *res, float *out, float *mean, float *rstd, const float *a,
                                   const float *b, const float *w, const float *bias, int N) {
    if (m->cfg.arch == LLM_ARCH_GPT2 && m->be->residual_layernorm_fwd) {
        m->be->residual_layernorm_fwd(m->st, res, out, mean, rstd, a, b, w, bias, N, m->cfg.n_embd);
        return;
    }
    m->be->residual_fwd(m->st, res, a, b, LLM__CAST(size_t, N) * LLM__CAST(size_t, m->cfg.n_embd));
    llm__norm_fwd(m, out, mean, rstd, res, w, bias, N);
}
static void llm__norm_bwd(const llm_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const float *mean, const float *rstd, int N) {
    if (m->cfg.arch == LLM_ARCH_GPT2) m->be->layernorm_bwd(m->st, dinp, dw, db, dout, inp, w, mean, rstd, N, m->cfg.n_embd);
    else m->be->rmsnorm_bwd(m->st, dinp, dw, dout, inp, w, rstd, N, m->cfg.n_embd);
}
/* A view of layer l inside a stacked (L, ...) tensor; NULL stays NULL (absent biases). */
static float *llm__at(float *base, int l, size_t per_layer) { return base ? base + LLM__CAST(size_t, l) * per_layer : NULL; }

/* ---- the weight matrices: every matmul with a weight goes through llm__linear_* -------
 * out (N, OC) = inp (N, IC) @ W^T + b for W, b = the kind's tensors in layer l (the
 * classifier: the one wcls or the tied wte, no bias; l ignored). One place for all of
 * them, so that what changes how a weight is applied (adapters, other storage) changes
 * here and nowhere else. */
typedef enum { LLM__W_QKV, LLM__W_ATTPROJ, LLM__W_FC, LLM__W_FCPROJ, LLM__W_CLS } llm__wkind;
typedef struct { float *w, *b; int IC, OC; } llm__wview;   /* w (OC, IC), b (OC) or NULL */
/* The weight and bias of kind k in layer l within p (the parameters or their gradients). */
static llm__wview llm__weight(const llm_model *m, const llm_params *p, int l, llm__wkind k) {
    const size_t C = LLM__CAST(size_t, m->cfg.n_embd), QKV = LLM__CAST(size_t, m->QKV);
    const size_t F = LLM__CAST(size_t, m->F), H = LLM__CAST(size_t, m->H);
    llm__wview v;
    v.IC = m->cfg.n_embd;
    switch (k) {
    case LLM__W_QKV: v.w = llm__at(p->qkvw, l, QKV * C); v.b = llm__at(p->qkvb, l, QKV); v.OC = m->QKV; break;
    case LLM__W_ATTPROJ: v.w = llm__at(p->attprojw, l, C * C); v.b = llm__at(p->attprojb, l, C); v.OC = m->cfg.n_embd; break;
    case LLM__W_FC: v.w = llm__at(p->fcw, l, F * C); v.b = llm__at(p->fcb, l, F); v.OC = m->F; break;
    case LLM__W_FCPROJ:
        v.w = llm__at(p->fcprojw, l, C * H); v.b = llm__at(p->fcprojb, l, C); v.IC = m->H; v.OC = m->cfg.n_embd;
        break;
    default: v.w = p->wcls ? p->wcls : p->wte; v.b = NULL; v.OC = m->cfg.vocab_size; break;
    }
    return v;
}

/* ---- LoRA: the adapters' part of a linear layer ---------------------------------------
 * Kind k (QKV, ATTPROJ, FC, FCPROJ: LoRA's targets 0-3, in order) of layer l on N rows
 * x (N, in):      out (N, out) += scale * (x A^T) Bt
 * as three small products of ops every backend has: h = x A^T (N, r); hs = h (scale I)^T,
 * the scaling as an r x r matmul; out += hs Bt, the accumulating product that matmul_bwd
 * computes for an input gradient (its weight gradient NULL). hs is kept for backward, h
 * is scratch. */
static int llm__lora_on(const llm_model *m, llm__wkind k) {
    return m->lora && k != LLM__W_CLS && (m->lora->cfg.targets & (1 << LLM__CAST(int, k)));
}
static void llm__lora_fwd(const llm_model *m, int k, int l, float *out, const float *x, float *hs, float *h, int N) {
    const llm__lora *a = m->lora;
    const llm_backend *be = m->be;
    int r = a->cfg.rank, in = a->in[k], o = a->out[k];
    size_t ur = LLM__CAST(size_t, r), ul = LLM__CAST(size_t, l);
    const float *A = a->mem + a->offA[k] + ul * ur * LLM__CAST(size_t, in), *Bt = a->mem + a->offBt[k] + ul * ur * LLM__CAST(size_t, o);
    be->matmul_fwd(m->st, h, x, A, NULL, N, in, r);
    be->matmul_fwd(m->st, hs, h, a->eye, NULL, N, r, r);
    be->matmul_bwd(m->st, out, NULL, NULL, hs, NULL, Bt, N, o, r);
}
/* Its backward, given dout (N, out) and the forward's x and hs:
 *     dhs = dout Bt^T;  dBt += hs^T dout;  dh = scale dhs;  dA += dh^T x;  dx += dh A
 * (dx accumulates beside the base weight's own dx += dout W). dhs, dh (N, r) scratch. */
static void llm__lora_bwd(const llm_model *m, int k, int l, float *dx, const float *dout, const float *x, const float *hs,
                          float *dhs, float *dh, int N) {
    const llm__lora *a = m->lora;
    const llm_backend *be = m->be;
    int r = a->cfg.rank, in = a->in[k], o = a->out[k];
    size_t ur = LLM__CAST(size_t, r), ul = LLM__CAST(size_t, l);
    size_t oA = a->offA[k] + ul * ur * LLM__CAST(size_t, in), oB = a->offBt[k] + ul * ur * LLM__CAST(size_t, o);
    be->matmul_fwd(m->st, dhs, dout, a->mem + oB, NULL, N, o, r);
    be->matmul_bwd(m->st, NULL, a->grad + oB, NULL, hs, dout, NULL, N, o, r);
    be->matmul_fwd(m->st, dh, dhs, a->eye, NULL, N, r, r);
    be->matmul_bwd(m->st, dx, a->grad + oA, NULL, dh, x, a->mem + oA, N, in, r);
}
/* Where a linear layer's adapter keeps hs: training keeps one (N, r) per kind (for
 * backward); inference shares one. h: scratch. Given by the block's llm__layer_io. */
typedef struct { float *hs, *h; int keep; } llm__lora_io;
static float *llm__lora_hs(const llm__lora_io *lo, llm__wkind k, int N, int r) {
    return lo->hs + (lo->keep ? LLM__CAST(size_t, k) * LLM__CAST(size_t, N) * LLM__CAST(size_t, r) : 0);
}

/* out = inp @ W^T + b (+ the adapter's update, LoRA) on N rows; act (may be NULL): also
 * act = gelu(out), in one call where the backend fuses the two (the GPT-2 MLP
 * up-projection) and no adapter comes between. lo: the LoRA buffers (NULL: none).
 * Quantized matrices (llm_model_quantize, below) run the QUANT kernels. */
static unsigned char *llm__qmat(const llm_model *m, int k, int l);
static void llm__linear_fwd(const llm_model *m, int l, llm__wkind k, float *out, const float *inp, int N, float *act,
                            const llm__lora_io *lo) {
    const llm_backend *be = m->be;
    const llm__wview W = llm__weight(m, &m->p, l, k);
    int lora = lo && llm__lora_on(m, k);
    if (m->qdtype != LLM_DTYPE_F32)
        llm__qmm(LLM__POOL(m->st), m->qdtype == LLM_DTYPE_Q8_0, out, inp, llm__qmat(m, k, l), W.b, N, W.IC, W.OC);
    else if (act && be->matmul_gelu_fwd && !lora) { be->matmul_gelu_fwd(m->st, out, act, inp, W.w, W.b, N, W.IC, W.OC); return; }
    else be->matmul_fwd(m->st, out, inp, W.w, W.b, N, W.IC, W.OC);
    if (lora) llm__lora_fwd(m, LLM__CAST(int, k), l, out, inp, llm__lora_hs(lo, k, N, m->lora->cfg.rank), lo->h, N);
    if (act) be->gelu_fwd(m->st, act, out, LLM__CAST(size_t, N) * LLM__CAST(size_t, W.OC));
}
/* dinp += dout @ W, dW += dout^T @ inp, db += Σ_rows dout (dW, db in the gradients m->g;
 * NULL views there, a frozen base, are skipped), then the adapter's part. */
static void llm__linear_bwd(const llm_model *m, int l, llm__wkind k, float *dinp, const float *dout, const float *inp, int N,
                            const llm__lora_io *lo) {
    const llm__wview W = llm__weight(m, &m->p, l, k), G = llm__weight(m, &m->g, l, k);
    m->be->matmul_bwd(m->st, dinp, G.w, G.b, dout, inp, W.w, N, W.IC, W.OC);
    if (lo && llm__lora_on(m, k))
        llm__lora_bwd(m, LLM__CAST(int, k), l, dinp, dout, inp, llm__lora_hs(lo, k, N, m->lora->cfg.rank), m->a.lora_dhs,
                      m->a.lora_dh, N);
}

/* ---- quantized matrices (inference) ---------------------------------------------------
 * After llm_model_quantize (or loading a quantized checkpoint, or a GGUF file with Q8_0 or
 * BF16 matrices) every matrix lives as tiles (see QUANT) in one host block, qmem: for each
 * kind k (llm__wkind, then LLM__Q_EMB for the token embedding) layer l's matrix is at
 * qoff[k] + l qper[k]; a tied classifier is the embedding's matrix. params_mem keeps the
 * other tensors (norms, biases, GPT-2's position embedding) back to back in llm_params
 * order, and the views of the matrices are NULL. llm__linear_fwd multiplies with the
 * QUANT kernels and llm__encoder_fwd dequantizes the embedding rows it gathers. Only the
 * CPU backend runs this: its device memory is host memory, and the kernels are its own. */
#define LLM__Q_EMB 5
static int llm__is_qmat(int ti) { return ti == 0 || ti == 4 || ti == 6 || ti == 10 || ti == 12 || ti == 16; }
/* The kind of matrix tensor ti (llm_params order). */
static int llm__qkind(int ti) {
    return ti == 4 ? LLM__W_QKV : ti == 6 ? LLM__W_ATTPROJ : ti == 10 ? LLM__W_FC : ti == 12 ? LLM__W_FCPROJ
         : ti == 16 ? LLM__W_CLS : LLM__Q_EMB;
}
/* Kind k's matrices: N rows of K, nl of them (one a layer, or one in all). */
static void llm__qshape(const llm_model *m, int k, int *N, int *K, int *nl) {
    const int C = m->cfg.n_embd;
    *K = k == LLM__W_FCPROJ ? m->H : C;
    *N = k == LLM__W_QKV ? m->QKV : k == LLM__W_FC ? m->F : k >= LLM__W_CLS ? m->cfg.vocab_size : C;
    *nl = k < LLM__W_CLS ? m->cfg.n_layer : 1;
}
static size_t llm__qtile_bytes(llm_dtype t, int N, int K) {
    return t == LLM_DTYPE_Q8_0 ? llm__q8t_bytes(N, K) : llm__bf16t_bytes(N, K);
}
static unsigned char *llm__qmat(const llm_model *m, int k, int l) {
    return m->qmem + m->qoff[k] + LLM__CAST(size_t, l) * m->qper[k];
}
/* Tensor i of p (llm_params order). */
static float *llm__view(const llm_params *p, int i) {
    float *const v[LLM_NTENSORS] = {p->wte, p->wpe, p->ln1w, p->ln1b, p->qkvw, p->qkvb, p->attprojw, p->attprojb,
                                    p->ln2w, p->ln2b, p->fcw, p->fcb, p->fcprojw, p->fcprojb, p->lnfw, p->lnfb, p->wcls};
    return v[i];
}
LLMDEF const char *llm_dtype_name(llm_dtype t) {
    return t == LLM_DTYPE_F32 ? "f32" : t == LLM_DTYPE_BF16 ? "bf16" : t == LLM_DTYPE_Q8_0 ? "q8_0" : t == LLM_DTYPE_F16 ? "f16" : "?";
}
LLMDEF llm_dtype llm_model_dtype(const llm_model *m) { return m ? m->qdtype : LLM_DTYPE_F32; }

/* The storage of a model quantized to dtype: zeroed small params (fp32, on the backend)
 * and zeroed tiles; fills m->qoff / qper. Nothing of m's weights changes. */
static llm_status llm__qalloc(llm_model *m, llm_dtype dtype, float **small, unsigned char **q) {
    *small = NULL; *q = NULL;
    if (m->be != llm_cpu_backend())
        return llm__err(LLM_ERR_UNSUPPORTED, "%s weights: only the CPU backend runs quantized models (this one is '%s'); "
                        "load an fp32 model for it", llm_dtype_name(dtype), m->be->name);
    size_t ns = 0, total = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) if (!llm__is_qmat(i)) ns += m->size[i];
    for (int k = 0; k <= LLM__Q_EMB; k++) {
        int N, K, nl;
        llm__qshape(m, k, &N, &K, &nl);
        m->qper[k] = llm__qtile_bytes(dtype, N, K);
        m->qoff[k] = total;
        if (k == LLM__W_CLS && !m->cfg.untied_head) continue;   /* it is the embedding's */
        total += m->qper[k] * LLM__CAST(size_t, nl);
    }
    if (!m->cfg.untied_head) m->qoff[LLM__W_CLS] = m->qoff[LLM__Q_EMB];
    *small = LLM__CAST(float *, m->be->alloc(m->st, (ns ? ns : 1) * sizeof(float)));
    *q = LLM__CAST(unsigned char *, llm__alloc_aligned(total));
    if (!*small || !*q) {
        if (*small) m->be->release(m->st, *small);
        llm__free_aligned(*q);
        *small = NULL; *q = NULL;
        return llm__err(LLM_ERR_NOMEM, "out of memory for %zu MB of %s weights", total >> 20, llm_dtype_name(dtype));
    }
    memset(*small, 0, ns * sizeof(float));
    memset(*q, 0, total);
    return LLM_OK;
}
/* Make the storage from llm__qalloc the model's, dropping its fp32 weights, gradients and
 * optimizer state. */
static void llm__qadopt(llm_model *m, llm_dtype dtype, float *small, unsigned char *q) {
    float *old[4] = {m->params_mem, m->grads_mem, m->m_mem, m->v_mem};
    for (int i = 0; i < 4; i++) if (old[i]) m->be->release(m->st, old[i]);
    m->grads_mem = m->m_mem = m->v_mem = NULL;
    memset(&m->g, 0, sizeof m->g);
    m->t = 0;
    llm__free_aligned(m->qmem);
    m->params_mem = small;
    m->qmem = q;
    m->qdtype = dtype;
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS], o = 0;   /* the small tensors back to back */
    for (int i = 0; i < LLM_NTENSORS; i++) {
        off[i] = o;
        size[i] = llm__is_qmat(i) ? 0 : m->size[i];
        o += size[i];
    }
    llm__param_views(&m->p, small, off, size);
}
/* Rows [R, R + n) of matrix tensor ti (its rows stacked over the layers) from floats,
 * quantized; and row R back, dequantized. */
static void llm__qput_rows(llm_model *m, int ti, size_t R, size_t n, const float *rows) {
    int k = llm__qkind(ti), N, K, nl;
    llm__qshape(m, k, &N, &K, &nl);
    while (n > 0) {
        int l = LLM__CAST(int, R / LLM__CAST(size_t, N)), j = LLM__CAST(int, R % LLM__CAST(size_t, N));
        int cnt = LLM__CAST(size_t, N - j) < n ? N - j : LLM__CAST(int, n);
        if (m->qdtype == LLM_DTYPE_Q8_0) llm__q8t_rows(llm__qmat(m, k, l), K, j, cnt, rows);
        else llm__bf16t_rows(LLM__CAST(uint32_t *, LLM__CAST(void *, llm__qmat(m, k, l))), K, j, cnt, rows);
        rows += LLM__CAST(size_t, cnt) * K;
        R += LLM__CAST(size_t, cnt);
        n -= LLM__CAST(size_t, cnt);
    }
}
static void llm__qget_row(const llm_model *m, int ti, size_t R, float *x) {
    int k = llm__qkind(ti), N, K, nl;
    llm__qshape(m, k, &N, &K, &nl);
    const unsigned char *W = llm__qmat(m, k, LLM__CAST(int, R / LLM__CAST(size_t, N)));
    int j = LLM__CAST(int, R % LLM__CAST(size_t, N));
    if (m->qdtype == LLM_DTYPE_Q8_0) llm__q8t_row(x, W, K, j);
    else llm__bf16t_row(x, LLM__CAST(const uint32_t *, LLM__CAST(const void *, W)), K, j);
}
/* Row R of matrix tensor ti exactly as a file holds it in the model's dtype: Q8_0 blocks
 * (ceil(K/32) of them) or K bf16 values. */
static void llm__qput_row_exact(llm_model *m, int ti, size_t R, const llm__q8_0 *blocks, const uint16_t *bf16) {
    int k = llm__qkind(ti), N, K, nl;
    llm__qshape(m, k, &N, &K, &nl);
    unsigned char *W = llm__qmat(m, k, LLM__CAST(int, R / LLM__CAST(size_t, N)));
    int j = LLM__CAST(int, R % LLM__CAST(size_t, N));
    if (m->qdtype == LLM_DTYPE_Q8_0) llm__q8t_put_row(W, K, j, blocks);
    else llm__bf16t_put_row(LLM__CAST(uint32_t *, LLM__CAST(void *, W)), K, j, bf16);
}
/* Every parameter in llm_params order: the matrices dequantized. */
static void llm__qget_params(const llm_model *m, float *dst) {
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!m->size[i]) continue;
        if (!llm__is_qmat(i)) { memcpy(dst + m->off[i], llm__view(&m->p, i), m->size[i] * sizeof(float)); continue; }
        int N, K, nl;
        llm__qshape(m, llm__qkind(i), &N, &K, &nl);
        for (size_t R = 0; R < m->size[i] / LLM__CAST(size_t, K); R++) llm__qget_row(m, i, R, dst + m->off[i] + R * LLM__CAST(size_t, K));
    }
}

/* llm_model_quantize's work, split over the pool: every matrix, its tiles (16 rows) shared
 * out among the threads. */
typedef struct { llm_model *m; const float *const *src; } llm__qjob;
static void llm__qtask(void *arg, int ith, int nth) {
    const llm__qjob *J = LLM__CAST(const llm__qjob *, arg);
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!llm__is_qmat(i) || !J->m->size[i]) continue;
        int N, K, nl;
        llm__qshape(J->m, llm__qkind(i), &N, &K, &nl);
        size_t lo, hi;
        llm__split(LLM__CAST(size_t, (N + LLM__QT - 1) / LLM__QT), ith, nth, &lo, &hi);
        for (int l = 0; l < nl; l++)
            for (size_t r = lo * LLM__QT; r < hi * LLM__QT && r < LLM__CAST(size_t, N); r += LLM__QT) {
                size_t R = LLM__CAST(size_t, l) * N + r, n = N - r < LLM__QT ? N - r : LLM__QT;
                llm__qput_rows(J->m, i, R, n, J->src[i] + R * LLM__CAST(size_t, K));
            }
    }
}

LLMDEF llm_status llm_model_quantize(llm_model *m, llm_dtype dtype) {
    if (!m) return llm__err(LLM_ERR_ARG, "quantize: model is NULL");
    if (dtype != LLM_DTYPE_BF16 && dtype != LLM_DTYPE_Q8_0)
        return llm__err(LLM_ERR_ARG, "quantize: dtype %d is not LLM_DTYPE_BF16 or LLM_DTYPE_Q8_0", LLM__CAST(int, dtype));
    if (m->qdtype == dtype) return LLM_OK;
    if (m->qdtype != LLM_DTYPE_F32)
        return llm__err(LLM_ERR_STATE, "quantize: the weights are already %s (quantize the fp32 model instead)", llm_dtype_name(m->qdtype));
    float *small;
    unsigned char *q;
    llm_status s = llm__qalloc(m, dtype, &small, &q);   /* refuses other backends before values are read */
    if (s != LLM_OK) return s;
    const float limit = dtype == LLM_DTYPE_Q8_0 ? 127.0f * 65504.0f : FLT_MAX;
    const float *v[LLM_NTENSORS];
    for (int i = 0; i < LLM_NTENSORS; i++) v[i] = llm__view(&m->p, i);
    for (int i = 0; i < LLM_NTENSORS; i++)
        for (size_t j = 0; llm__is_qmat(i) && j < m->size[i]; j++)
            if (!(fabsf(v[i][j]) <= limit)) {
                m->be->release(m->st, small);
                llm__free_aligned(q);
                return llm__err(LLM_ERR_ARG, "quantize: %s[%zu] = %g cannot be stored in %s", llm_tensor_name(i), j,
                                LLM__CAST(double, v[i][j]), llm_dtype_name(dtype));
            }
    /* quantize into the new tiles (m->qmem is swapped in only at the end) */
    unsigned char *keep = m->qmem;
    llm_dtype kd = m->qdtype;
    m->qmem = q; m->qdtype = dtype;
    llm__qjob J;
    J.m = m; J.src = v;
    llm_pool_run(LLM__POOL(m->st), llm__qtask, &J);
    m->qmem = keep; m->qdtype = kd;
    size_t o = 0;
    for (int i = 0; i < LLM_NTENSORS; i++)
        if (!llm__is_qmat(i) && m->size[i]) { memcpy(small + o, v[i], m->size[i] * sizeof(float)); o += m->size[i]; }
    llm__qadopt(m, dtype, small, q);
    return LLM_OK;
}

LLMDEF size_t llm_model_weight_bytes(const llm_model *m) {
    if (!m) return 0;
    if (m->qdtype == LLM_DTYPE_F32) return m->n_params * sizeof(float);
    size_t b = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) if (!llm__is_qmat(i)) b += m->size[i] * sizeof(float);
    for (int k = 0; k <= LLM__Q_EMB; k++) {
        int N, K, nl;
        llm__qshape(m, k, &N, &K, &nl);
        if (k != LLM__W_CLS || m->cfg.untied_head) b += m->qper[k] * LLM__CAST(size_t, nl);
    }
    return b;
}

/* out (B·T, C) = wte[tok] (+ wpe[t] at row (b, t) when wpe is given): the backend's
 * encoder, or for a quantized embedding its rows dequantized here (tok is host memory on
 * the CPU backend). */
static void llm__encoder_fwd(const llm_model *m, float *out, const int *tok, const float *wpe, int B, int T) {
    const int C = m->cfg.n_embd;
    if (m->qdtype == LLM_DTYPE_F32) { m->be->encoder_fwd(m->st, out, tok, m->p.wte, wpe, B, T, C); return; }
    for (int r = 0; r < B * T; r++) {
        float *o = out + LLM__CAST(size_t, r) * C;
        llm__qget_row(m, 0, LLM__CAST(size_t, tok[r]), o);
        if (wpe) for (int c = 0; c < C; c++) o[c] += wpe[LLM__CAST(size_t, r % T) * C + c];
    }
}

/* ---- one transformer block, shared by training and KV-cache inference -----------------
 *   res2 = res + attproj(attention(rope(qkv(norm1(res)))))
 *   res3 = res2 + fcproj(act(fc(norm2(res2))))      act: GELU (GPT-2) or SwiGLU (Llama)
 * llm__layer_io says where layer l's tensors live. Training keeps them per layer (for
 * backward) and attends within (B, T) blocks; inference reuses one set of rows for every
 * layer and attends against the KV cache (row i at sequence seq[i], position pos[i]).
 * llm__block_fwd reads only io->res and the weights, so calling it again with the same io
 * recomputes the same activations (backward may do that instead of keeping them). */
typedef struct llm__layer_io {
    const float *res;                   /* (N, C) the residual stream coming in */
    float *ln1, *ln1_mean, *ln1_rstd;   /* (N, C), (N), (N); mean: LayerNorm only */
    float *qkv;                         /* (N, QKV), after RoPE for Llama */
    float *att, *att_lse;               /* (N, C); lse (B, NH, T): training only */
    float *res2;                        /* (N, C) after the attention block */
    float *ln2, *ln2_mean, *ln2_rstd;   /* (N, C), (N), (N) */
    float *fch, *fcha;                  /* (N, F), (N, H): before / after the activation */
    float *proj;                        /* (N, C) scratch: a branch's output */
    float *res3;                        /* (N, C) the residual stream going out (may be res) */
    int B, T;                           /* N = B·T rows */
    const int *seq, *pos;               /* inference: (N) device arrays; training: NULL */
    float *kcache, *vcache;             /* inference: this layer's caches (S, maxT, NKV·HS) */
    int maxT;
    llm__lora_io lora;                  /* the adapters' hs and scratch (unused without LoRA) */
    int drop;                           /* training with dropout: mask both branch outputs */
} llm__layer_io;

static void llm__block_fwd(const llm_model *m, int l, const llm__layer_io *io) {
    const llm_config *c = &m->cfg;
    const llm_backend *be = m->be;
    void *st = m->st;
    const llm_params *p = &m->p;
    const int N = io->B * io->T, NH = c->n_head, NKV = c->n_kv_head, HS = c->n_embd / NH;
    const size_t uC = LLM__CAST(size_t, c->n_embd), nC = LLM__CAST(size_t, N) * uC;
    const llm__lora_io *lo = &io->lora;
    llm__norm_fwd(m, io->ln1, io->ln1_mean, io->ln1_rstd, io->res, llm__at(p->ln1w, l, uC), llm__at(p->ln1b, l, uC), N);
    llm__linear_fwd(m, l, LLM__W_QKV, io->qkv, io->ln1, N, NULL, lo);
    if (c->arch == LLM_ARCH_LLAMA) be->rope_fwd(st, io->qkv, io->pos, io->B, io->T, NH, NKV, HS, c->rope_theta);
    if (io->kcache) be->attention_kv(st, io->att, io->qkv, io->kcache, io->vcache, io->seq, io->pos, N, NH, NKV, HS, io->maxT);
    else be->attention_fwd(st, io->att, io->att_lse, io->qkv, io->B, io->T, NH, NKV, HS);
    llm__linear_fwd(m, l, LLM__W_ATTPROJ, io->proj, io->att, N, NULL, lo);
    if (io->drop) be->dropout(st, io->proj, io->proj, nC, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, l, 1));
    llm__residual_norm_fwd(m, io->res2, io->ln2, io->ln2_mean, io->ln2_rstd, io->res, io->proj, llm__at(p->ln2w, l, uC),
                           llm__at(p->ln2b, l, uC), N);
    if (c->arch == LLM_ARCH_LLAMA) {   /* fch = [gate | up], fcha = silu(gate)·up */
        llm__linear_fwd(m, l, LLM__W_FC, io->fch, io->ln2, N, NULL, lo);
        be->swiglu_fwd(st, io->fcha, io->fch, N, m->H);
    } else {
        llm__linear_fwd(m, l, LLM__W_FC, io->fch, io->ln2, N, io->fcha, lo);   /* fcha = gelu(fch) */
    }
    llm__linear_fwd(m, l, LLM__W_FCPROJ, io->proj, io->fcha, N, NULL, lo);
    if (io->drop) be->dropout(st, io->proj, io->proj, nC, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, l, 2));
    be->residual_fwd(st, io->res3, io->res2, io->proj, nC);
}
/* Its backward (training). dres (N, C) comes in as the gradient at res3 and leaves as
 * the gradient at res: a residual add passes its gradient to both inputs unchanged, so
 * each branch adds into dres in place instead of copying it (through the branch's
 * dropout mask first, regenerated from its key, into dproj). Scratch: the model's dC,
 * dqkv, dH, dF, dproj. */
static void llm__block_bwd(const llm_model *m, int l, const llm__layer_io *io, float *dres) {
    const llm_config *c = &m->cfg;
    const llm_backend *be = m->be;
    void *st = m->st;
    const llm_params *p = &m->p, *g = &m->g;
    const llm__acts *a = &m->a;
    const int N = io->B * io->T, NH = c->n_head, NKV = c->n_kv_head, HS = c->n_embd / NH, llama = c->arch == LLM_ARCH_LLAMA;
    const size_t uC = LLM__CAST(size_t, c->n_embd), nC = LLM__CAST(size_t, N) * uC;
    const size_t nH = LLM__CAST(size_t, N) * LLM__CAST(size_t, m->H), nF = LLM__CAST(size_t, N) * LLM__CAST(size_t, m->F);
    const llm__lora_io *lo = &io->lora;
    const float *dout = dres;   /* a branch's output gradient */
    /* MLP block */
    if (io->drop) {
        be->dropout(st, a->dproj, dres, nC, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, l, 2));
        dout = a->dproj;
    }
    be->zero(st, a->dH, nH * m->act_size);
    be->zero(st, a->dF, nF * m->act_size);
    be->zero(st, a->dC, nC * m->act_size);
    llm__linear_bwd(m, l, LLM__W_FCPROJ, a->dH, dout, io->fcha, N, lo);
    if (llama) be->swiglu_bwd(st, a->dF, io->fch, a->dH, N, m->H);
    else be->gelu_bwd(st, a->dF, io->fch, a->dH, nH);
    llm__linear_bwd(m, l, LLM__W_FC, a->dC, a->dF, io->ln2, N, lo);
    llm__norm_bwd(m, dres, llm__at(g->ln2w, l, uC), llm__at(g->ln2b, l, uC), a->dC, io->res2, llm__at(p->ln2w, l, uC),
                  io->ln2_mean, io->ln2_rstd, N);
    /* attention block */
    dout = dres;
    if (io->drop) {
        be->dropout(st, a->dproj, dres, nC, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, l, 1));
        dout = a->dproj;
    }
    be->zero(st, a->dC, nC * m->act_size);
    be->zero(st, a->dqkv, LLM__CAST(size_t, N) * LLM__CAST(size_t, m->QKV) * m->act_size);
    llm__linear_bwd(m, l, LLM__W_ATTPROJ, a->dC, dout, io->att, N, lo);
    be->attention_bwd(st, a->dqkv, a->dC, io->qkv, io->att, io->att_lse, io->B, io->T, NH, NKV, HS);
    if (llama) be->rope_bwd(st, a->dqkv, NULL, io->B, io->T, NH, NKV, HS, c->rope_theta);
    be->zero(st, a->dC, nC * m->act_size);
    llm__linear_bwd(m, l, LLM__W_QKV, a->dC, a->dqkv, io->ln1, N, lo);
    llm__norm_bwd(m, dres, llm__at(g->ln1w, l, uC), llm__at(g->ln1b, l, uC), a->dC, io->res, llm__at(p->ln1w, l, uC),
                  io->ln1_mean, io->ln1_rstd, N);
}
/* Rows in the classifier's chunk at row r0 of N: cls_rows, and the last chunk takes a
 * remainder under 16 rows (a tiny last chunk would go down another matmul path). */
static int llm__cls_chunk(const llm_model *m, int r0, int N) {
    int n = N - r0 < m->cls_rows ? N - r0 : m->cls_rows;
    return N - r0 - n > 0 && N - r0 - n < 16 ? N - r0 : n;
}
/* Layer l's tensors among the training activations, for the last forward's (B, T).
 * With recompute every layer shares one set (L = 0 below), but for its input and output
 * in residual3. */
static llm__layer_io llm__layer_acts(const llm_model *m, int l) {
    const llm__acts *a = &m->a;
    const size_t bt = LLM__CAST(size_t, m->B) * LLM__CAST(size_t, m->T), btc = bt * LLM__CAST(size_t, m->cfg.n_embd);
    const size_t L = m->recompute ? 0 : LLM__CAST(size_t, l), l_io = LLM__CAST(size_t, l);
    llm__layer_io io;
    memset(&io, 0, sizeof io);
    io.res = l == 0 ? a->encoded : llm__act(m, a->residual3, (l_io - 1) * btc);
    io.ln1 = llm__act(m, a->ln1, L * btc); io.ln1_mean = a->ln1_mean + L * bt; io.ln1_rstd = a->ln1_rstd + L * bt;
    io.qkv = llm__act(m, a->qkv, L * bt * LLM__CAST(size_t, m->QKV));
    io.att = llm__act(m, a->atty, L * btc); io.att_lse = a->att_lse + L * bt * LLM__CAST(size_t, m->cfg.n_head);
    io.res2 = llm__act(m, a->residual2, L * btc);
    io.ln2 = llm__act(m, a->ln2, L * btc); io.ln2_mean = a->ln2_mean + L * bt; io.ln2_rstd = a->ln2_rstd + L * bt;
    io.fch = llm__act(m, a->fch, L * bt * LLM__CAST(size_t, m->F));
    io.fcha = llm__act(m, a->fch_act, L * bt * LLM__CAST(size_t, m->H));
    io.proj = a->proj; io.res3 = llm__act(m, a->residual3, l_io * btc);
    io.B = m->B; io.T = m->T;
    io.drop = m->drop_on;
    if (m->lora) {
        io.lora.hs = a->lora_hs + L * LLM__LORA_NT * bt * LLM__CAST(size_t, m->lora->cfg.rank);
        io.lora.h = a->lora_h;
        io.lora.keep = 1;
    }
    return io;
}

LLMDEF llm_status llm_model_forward(llm_model *m, const int *tokens, const int *targets, int B, int T, float *loss) {
    if (!m || !tokens) return llm__err(LLM_ERR_ARG, "forward: NULL argument");
    llm_status s = llm_model_reserve(m, B, T);
    if (s != LLM_OK) return s;
    const llm_config *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd, V = c->vocab_size, BT = B * T;
    size_t uC = LLM__CAST(size_t, C), bt = LLM__CAST(size_t, BT);
    if ((s = llm__check_tokens(tokens, LLM__CAST(size_t, BT), V, "tokens")) != LLM_OK) return s;
    if (targets)
        for (int i = 0; i < BT; i++)
            if (targets[i] >= V) return llm__err(LLM_ERR_ARG, "targets[%d] = %d is out of range [0, %d)", i, targets[i], V);
    const llm_backend *be = m->be;
    void *st = m->st;
    llm__acts *a = &m->a;
    llm_params *p = &m->p;
    size_t n_store;
    llm__act_views(a, m->acts_mem, m->store_mem, m, LLM__CAST(size_t, B), LLM__CAST(size_t, T), &n_store);
    if ((s = be->upload(st, m->tokens, tokens, LLM__CAST(size_t, BT) * sizeof(int))) != LLM_OK) return s;
    m->B = B; m->T = T; m->have_targets = 0; m->logits_state = 0;
    /* dropout: in training, with targets; its masks are keyed by (step, micro-batch) */
    int drop = m->dropout > 0.0f && m->training && targets;
    m->drop_on = drop; m->drop_step = LLM__CAST(uint64_t, m->t); m->drop_micro = LLM__CAST(uint64_t, m->micro);
    if (drop) m->micro++;
    size_t btc = bt * uC;

    llm__encoder_fwd(m, a->encoded, m->tokens, p->wpe, B, T);
    if (drop) be->dropout(st, a->encoded, a->encoded, btc, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, 0, 0));
    for (int l = 0; l < L; l++) {
        llm__layer_io io = llm__layer_acts(m, l);
        llm__block_fwd(m, l, &io);
    }
    llm__norm_fwd(m, a->lnf, a->lnf_mean, a->lnf_rstd, llm__act(m, a->residual3, LLM__CAST(size_t, L - 1) * bt * uC), p->lnfw,
                  p->lnfb, BT);
    /* the classifier and the loss, chunk by chunk of rows; with recompute the logits of a
     * chunk are dropped once its loss is known (llm_model_get_logits and backward make
     * them again), and without targets none are made here */
    if (targets && (s = be->upload(st, m->targets, targets, bt * sizeof(int))) != LLM_OK) return s;
    for (int r0 = 0, n; r0 < BT && (targets || !m->recompute); r0 += n) {
        n = llm__cls_chunk(m, r0, BT);
        float *lg = a->logits + (m->recompute ? 0 : LLM__CAST(size_t, r0) * LLM__CAST(size_t, V));
        llm__linear_fwd(m, 0, LLM__W_CLS, lg, llm__act(m, a->lnf, LLM__CAST(size_t, r0) * uC), n, NULL, NULL);
        if (targets) be->crossentropy_fwd(st, a->losses + r0, a->lse + r0, lg, m->targets + r0, n, V);
    }
    m->logits_state = 1;

    if (targets) {
        if ((s = be->download(st, m->host_losses, a->losses, bt * sizeof(float))) != LLM_OK) return s;
        double sum = 0;
        int n = 0;
        for (int i = 0; i < BT; i++) if (targets[i] >= 0) { sum += m->host_losses[i]; n++; }
        m->have_targets = 1;
        m->n_valid = n;
        if (loss) *loss = n ? LLM__CAST(float, sum / n) : 0.0f;
    } else if (loss) {
        *loss = 0.0f;
    }
    return be->sync(st);
}

LLMDEF llm_status llm_model_get_logits(llm_model *m, float *dst) {
    if (m->logits_state != 1) return llm__err(LLM_ERR_STATE, "get_logits: no logits (run forward; backward overwrites them)");
    size_t V = LLM__CAST(size_t, m->cfg.vocab_size), BT = LLM__CAST(size_t, m->B) * LLM__CAST(size_t, m->T);
    if (!m->recompute) return m->be->download(m->st, dst, m->a.logits, BT * V * sizeof(float));
    llm_status s = LLM_OK;   /* recompute keeps none: made again, chunk by chunk */
    for (int r0 = 0, n; r0 < LLM__CAST(int, BT) && s == LLM_OK; r0 += n) {
        n = llm__cls_chunk(m, r0, LLM__CAST(int, BT));
        llm__linear_fwd(m, 0, LLM__W_CLS, m->a.logits, llm__act(m, m->a.lnf, LLM__CAST(size_t, r0) * LLM__CAST(size_t, m->cfg.n_embd)), n,
                        NULL, NULL);
        s = m->be->download(m->st, dst + LLM__CAST(size_t, r0) * V, m->a.logits, LLM__CAST(size_t, n) * V * sizeof(float));
    }
    return s;
}
LLMDEF llm_status llm_model_get_losses(llm_model *m, float *dst) {
    if (!m->have_targets) return llm__err(LLM_ERR_STATE, "get_losses: the last forward had no targets");
    memcpy(dst, m->host_losses, LLM__CAST(size_t, m->B) * m->T * sizeof(float));
    return LLM_OK;
}

/* The gradients of what trains: every parameter, or with LoRA the adapters alone (the
 * base's views in m->g stay NULL, which the ops read as "frozen"). */
static llm_status llm__alloc_grads(llm_model *m) {
    if (m->lora) {
        llm__lora *a = m->lora;
        if (a->grad) return LLM_OK;
        a->grad = LLM__CAST(float *, m->be->alloc(m->st, a->n * sizeof(float)));
        if (!a->grad) return llm__oom(m, "the adapters' gradients", m->B, m->T);
        m->be->zero(m->st, a->grad, a->n * sizeof(float));
        return LLM_OK;
    }
    if (m->grads_mem) return LLM_OK;
    m->grads_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
    if (!m->grads_mem) return llm__oom(m, "the gradients", m->B, m->T);
    m->be->zero(m->st, m->grads_mem, m->n_params * sizeof(float));
    llm__param_views(&m->g, m->grads_mem, m->off, m->size);
    return LLM_OK;
}

/* A quantized model has no gradients. */
static llm_status llm__trainable(const llm_model *m, const char *what) {
    if (m->qdtype == LLM_DTYPE_F32) return LLM_OK;
    return llm__err(LLM_ERR_UNSUPPORTED, "%s: the model's weights are %s, for inference only (train an fp32 model)", what,
                    llm_dtype_name(m->qdtype));
}

LLMDEF llm_status llm_model_zero_grad(llm_model *m) {
    if (llm__trainable(m, "zero_grad") != LLM_OK) return LLM_ERR_UNSUPPORTED;
    llm_status s = llm__alloc_grads(m);
    if (s != LLM_OK) return s;
    if (m->lora) m->be->zero(m->st, m->lora->grad, m->lora->n * sizeof(float));
    else m->be->zero(m->st, m->grads_mem, m->n_params * sizeof(float));
    return LLM_OK;
}

/* Backward, the forward in reverse. `dres` carries the gradient of the residual stream
 * from the final norm down through every block (llm__block_bwd) to the embeddings. */
LLMDEF llm_status llm_model_backward(llm_model *m, float loss_scale) {
    if (llm__trainable(m, "backward") != LLM_OK) return LLM_ERR_UNSUPPORTED;
    if (!m->have_targets || m->logits_state != 1)
        return llm__err(LLM_ERR_STATE, "backward: needs a forward with targets first (and one backward per forward)");
    llm_status s = llm__alloc_grads(m);
    if (s != LLM_OK) return s;
    const llm_config *c = &m->cfg;
    int B = m->B, T = m->T, L = c->n_layer, C = c->n_embd, V = c->vocab_size, BT = B * T;
    const llm_backend *be = m->be;
    void *st = m->st;
    llm__acts *a = &m->a;
    llm_params *p = &m->p, *g = &m->g;
    size_t btc = LLM__CAST(size_t, BT) * LLM__CAST(size_t, C);
    float dloss = m->n_valid ? loss_scale / LLM__CAST(float, m->n_valid) : 0.0f;
    int drop = m->drop_on;   /* the masks of the forward, regenerated */

    be->zero(st, a->dC, btc * m->act_size);
    be->zero(st, a->dres, btc * sizeof(float));
    /* the classifier, by the forward's chunks: dlogits over the logits, then its products
     * (recompute: the chunk's logits made again first, by the forward's call) */
    for (int r0 = 0, n; r0 < BT; r0 += n) {
        n = llm__cls_chunk(m, r0, BT);
        float *lg = a->logits + (m->recompute ? 0 : LLM__CAST(size_t, r0) * LLM__CAST(size_t, V));
        float *lnf = llm__act(m, a->lnf, LLM__CAST(size_t, r0) * LLM__CAST(size_t, C));
        if (m->recompute) llm__linear_fwd(m, 0, LLM__W_CLS, lg, lnf, n, NULL, NULL);
        be->crossentropy_bwd(st, lg, a->lse + r0, m->targets + r0, dloss, n, V);
        llm__linear_bwd(m, 0, LLM__W_CLS, llm__act(m, a->dC, LLM__CAST(size_t, r0) * LLM__CAST(size_t, C)), lg, lnf, n, NULL);
    }
    m->logits_state = 2;
    llm__norm_bwd(m, a->dres, g->lnfw, g->lnfb, a->dC, llm__act(m, a->residual3, LLM__CAST(size_t, L - 1) * btc), p->lnfw,
                  a->lnf_mean, a->lnf_rstd, BT);
    for (int l = L - 1; l >= 0; l--) {
        llm__layer_io io = llm__layer_acts(m, l);
        /* recompute: the forward left the last layer's activations in place; each other
         * layer is made again from its kept input by the same ops in the same order (its
         * dropout masks from the same keys), so to the bit */
        if (m->recompute && l < L - 1) llm__block_fwd(m, l, &io);
        llm__block_bwd(m, l, &io, a->dres);
    }
    if (g->wte) {   /* NULL: frozen (LoRA) */
        if (drop) be->dropout(st, a->dres, a->dres, btc, m->dropout, llm__dropout_key(m->dropout_seed, m->drop_step, m->drop_micro, 0, 0));
        be->encoder_bwd(st, g->wte, g->wpe, a->dres, m->tokens, B, T, C);
    }
    return be->sync(st);
}

//==== ADAMW ============================================================================
LLMDEF llm_adamw_config llm_adamw_config_default(void) {
    llm_adamw_config c;
    c.beta1 = 0.9f; c.beta2 = 0.95f; c.eps = 1e-8f; c.weight_decay = 0.1f; c.decay_all = 0; c.grad_clip = 1.0f;
    return c;
}


/* AdamW's moments m and v, zeroed, made on the first step: both or neither, so that a
 * failed allocation leaves no half-made state for the next call to trip on. */
static llm_status llm__moments_of(llm_model *m, float **mm, float **vv, size_t n) {
    if (*mm) return LLM_OK;
    size_t bytes = n * sizeof(float);
    *mm = LLM__CAST(float *, m->be->alloc(m->st, bytes));
    *vv = *mm ? LLM__CAST(float *, m->be->alloc(m->st, bytes)) : NULL;
    if (!*vv) {
        if (*mm) m->be->release(m->st, *mm);
        *mm = NULL;
        return llm__oom(m, "the AdamW moments", m->B, m->T);
    }
    m->be->zero(m->st, *mm, bytes);
    m->be->zero(m->st, *vv, bytes);
    return LLM_OK;
}
/* ... of what trains: with LoRA the adapters alone (the frozen base has none). */
static llm_status llm__moments(llm_model *m) {
    if (m->lora) return llm__moments_of(m, &m->lora->m, &m->lora->v, m->lora->n);
    return llm__moments_of(m, &m->m_mem, &m->v_mem, m->n_params);
}

/* The step behind llm_model_step and llm_model_step_scaled. The gradients in memory are
 * S times the true ones (S = 1: unscaled, else a power of two: see llm_loss_scaler).
 * Their global norm is computed as it is, then divided by S: the true norm for clipping
 * and *grad_norm; AdamW multiplies each gradient by clip / S, so unscaling costs nothing.
 * A non-finite norm (some gradient is inf or NaN) leaves everything unchanged and sets
 * *finite = 0; a backend failure that made it so is returned instead. What trains is
 * every parameter, or with LoRA the adapters (one buffer either way). */
static llm_status llm__step(llm_model *m, const llm_adamw_config *cfg, float lr, float S, float *grad_norm,
                            int *finite) {
    *finite = 1;
    if (llm__trainable(m, "step") != LLM_OK) return LLM_ERR_UNSUPPORTED;
    float *grads = m->lora ? m->lora->grad : m->grads_mem;
    size_t n = m->lora ? m->lora->n : m->n_params;
    if (!grads) return llm__err(LLM_ERR_STATE, "step: no gradients (run backward first)");
    llm_adamw_config def = llm_adamw_config_default();
    if (!cfg) cfg = &def;
    llm_status s = llm__moments(m);
    if (s != LLM_OK) return s;
    /* data parallel: every rank steps with the mean gradient over the ranks, so the
     * replicas stay identical (LLM_OK at once for one process) */
    if (m->be->allreduce_mean && (s = m->be->allreduce_mean(m->st, grads, n)) != LLM_OK)
        return s;
    /* global L2 norm, then the clip factor as torch.nn.utils.clip_grad_norm_ */
    double norm = sqrt(m->be->sumsq(m->st, grads, n)) / S;
    if (grad_norm) *grad_norm = LLM__CAST(float, norm);
    if (!(norm == norm) || norm > DBL_MAX) {
        *finite = 0;
        return m->be->sync(m->st);   /* a failed GPU op also reads as NaN: report it */
    }
    float scale = 1.0f;
    if (cfg->grad_clip > 0.0f) {
        double coef = cfg->grad_clip / (norm + 1e-6);
        if (coef < 1.0) scale = LLM__CAST(float, coef);
    }
    scale /= S;
    m->t++;
    m->micro = 0;   /* dropout masks: a new step, a new stream */
    if (m->lora) {  /* the adapters: every one a 2-D weight */
        llm__lora *a = m->lora;
        m->be->adamw(m->st, a->mem, a->grad, a->m, a->v, a->n, lr, cfg->beta1, cfg->beta2, cfg->eps,
                     cfg->weight_decay, scale, m->t);
        return m->be->sync(m->st);
    }
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!m->size[i]) continue;
        float wd = (cfg->decay_all || llm__is_2d(i)) ? cfg->weight_decay : 0.0f;
        m->be->adamw(m->st, m->params_mem + m->off[i], m->grads_mem + m->off[i], m->m_mem + m->off[i],
                     m->v_mem + m->off[i], m->size[i], lr, cfg->beta1, cfg->beta2, cfg->eps, wd, scale, m->t);
    }
    /* a GPU queues the updates: wait, so that a failure is this call's, not the next's */
    return m->be->sync(m->st);
}

LLMDEF llm_status llm_model_step(llm_model *m, const llm_adamw_config *cfg, float lr, float *grad_norm) {
    float norm = 0.0f;
    int finite = 1;
    llm_status s = llm__step(m, cfg, lr, 1.0f, &norm, &finite);
    if (grad_norm) *grad_norm = norm;
    if (s == LLM_OK && !finite)
        return llm__err(LLM_ERR_ARG, "step: the gradient norm is not finite (%g); parameters unchanged", norm);
    return s;
}

LLMDEF llm_loss_scaler llm_loss_scaler_default(void) {
    llm_loss_scaler sc;
    sc.scale = 65536.0f; sc.growth_factor = 2.0f; sc.backoff_factor = 0.5f; sc.growth_interval = 2000;
    sc.good_steps = 0; sc.skipped = 0;
    return sc;
}

/* GradScaler's update (torch._amp_update_scale_): a skipped step backs off and restarts
 * the count; growth_interval finite steps in a row grow the scale, if it stays finite. */
LLMDEF llm_status llm_model_step_scaled(llm_model *m, const llm_adamw_config *cfg, float lr,
                                        llm_loss_scaler *sc, float *grad_norm, int *skipped) {
    if (skipped) *skipped = 0;
    if (!sc) return llm_model_step(m, cfg, lr, grad_norm);
    if (!(sc->scale > 0.0f) || sc->scale > FLT_MAX)
        return llm__err(LLM_ERR_ARG, "step: loss scale %g is not a positive finite number (after %lld skipped "
                        "steps: are the gradients NaN at every scale, e.g. from a NaN in the forward pass?)",
                        LLM__CAST(double, sc->scale), sc->skipped);
    if (!(sc->growth_factor >= 1.0f) || !(sc->backoff_factor > 0.0f && sc->backoff_factor < 1.0f) ||
        sc->growth_interval < 0)
        return llm__err(LLM_ERR_ARG, "step: loss scaler growth_factor %g (>= 1), backoff_factor %g (in (0, 1)), "
                        "growth_interval %d (>= 0)", LLM__CAST(double, sc->growth_factor),
                        LLM__CAST(double, sc->backoff_factor), sc->growth_interval);
    int finite = 1;
    llm_status s = llm__step(m, cfg, lr, sc->scale, grad_norm, &finite);
    if (s != LLM_OK) return s;
    if (!finite) {
        sc->scale *= sc->backoff_factor;
        sc->good_steps = 0;
        sc->skipped++;
        if (skipped) *skipped = 1;
    } else if (sc->growth_interval > 0 && ++sc->good_steps >= sc->growth_interval) {
        float grown = sc->scale * sc->growth_factor;
        if (grown <= FLT_MAX) sc->scale = grown;
        sc->good_steps = 0;
    }
    return LLM_OK;
}

/* Host values through a small device buffer of their own: the backend averages device
 * memory only. An allocation per call is fine for what this is for (a few floats per step). */
LLMDEF llm_status llm_model_allreduce_mean(llm_model *m, float *vals, int n) {
    if (!m || n < 0 || (n > 0 && !vals)) return llm__err(LLM_ERR_ARG, "allreduce_mean: NULL model or values, or n < 0");
    if (!m->be->allreduce_mean || n == 0) return LLM_OK;
    size_t bytes = LLM__CAST(size_t, n) * sizeof(float);
    float *d = LLM__CAST(float *, m->be->alloc(m->st, bytes));
    if (!d) return LLM_ERR_NOMEM;
    llm_status s = m->be->upload(m->st, d, vals, bytes);
    if (s == LLM_OK) s = m->be->allreduce_mean(m->st, d, LLM__CAST(size_t, n));
    if (s == LLM_OK) s = m->be->download(m->st, vals, d, bytes);
    m->be->release(m->st, d);
    return s;
}

LLMDEF float llm_lr_at(const llm_lr_schedule *s, int step) {
    if (step < s->warmup) return s->lr * LLM__CAST(float, step + 1) / LLM__CAST(float, s->warmup);
    if (s->kind == LLM_LR_CONST) return s->lr;
    if (step >= s->total) return s->min_lr;
    double ratio = LLM__CAST(double, step - s->warmup) / LLM__CAST(double, s->total - s->warmup);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));   /* 1 -> 0 */
    return LLM__CAST(float, s->min_lr + coeff * (s->lr - s->min_lr));
}

/* xorshift128+ (Vigna): two 64-bit words of state, seeded through splitmix64 so that
 * any seed, 0 included, gives a well-mixed state. */
static uint64_t llm__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
LLMDEF void llm_rng_seed(llm_rng *r, uint64_t seed) {
    r->s[0] = llm__splitmix64(&seed);
    r->s[1] = llm__splitmix64(&seed);
}
LLMDEF uint64_t llm_rng_u64(llm_rng *r) {
    uint64_t a = r->s[0], b = r->s[1];
    r->s[0] = b;
    a ^= a << 23;
    r->s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return r->s[1] + b;
}
/* Box-Muller: two uniforms in (0,1] give one normal (the second is discarded to keep
 * the stream position simple). */
LLMDEF float llm_rng_normal(llm_rng *r) {
    double u1 = (LLM__CAST(double, llm_rng_u64(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = LLM__CAST(double, llm_rng_u64(r) >> 11) / 9007199254740992.0;
    return LLM__CAST(float, sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

//==== FORMATS ==========================================================================
static uint32_t llm__rd32(const unsigned char *p) {
    return LLM__CAST(uint32_t, p[0]) | LLM__CAST(uint32_t, p[1]) << 8 | LLM__CAST(uint32_t, p[2]) << 16 | LLM__CAST(uint32_t, p[3]) << 24;
}
static uint64_t llm__rd64(const unsigned char *p) { return llm__rd32(p) | LLM__CAST(uint64_t, llm__rd32(p + 4)) << 32; }
static float llm__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half -> float: llm__f16_to_f32, in QUANT. */
/* bfloat16 is the top half of a float32. */
static float llm__bf16_to_f32(uint16_t h) { return llm__bits_f32(LLM__CAST(uint32_t, h) << 16); }

enum { LLM__DT_F32, LLM__DT_F16, LLM__DT_BF16 };
static float llm__load_elem(const unsigned char *p, int dtype, size_t i) {
    if (dtype == LLM__DT_F32) return llm__bits_f32(llm__rd32(p + 4 * i));
    uint16_t h = LLM__CAST(uint16_t, p[2 * i] | p[2 * i + 1] << 8);
    return dtype == LLM__DT_F16 ? llm__f16_to_f32(h) : llm__bf16_to_f32(h);
}
/* Convert a (rows, cols) tensor into floats; with transpose, dst is (cols, rows):
 * HF's Conv1D stores weights (in, out), the transpose of our (out, in). */
static void llm__convert(float *dst, const unsigned char *src, int dtype, size_t rows, size_t cols, int transpose) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            float v = llm__load_elem(src, dtype, r * cols + c);
            if (transpose) dst[c * rows + r] = v; else dst[r * cols + c] = v;
        }
}

/* A shape read from a file: an impossible one means the file is malformed. */
static llm_status llm__file_config(const char *path, const llm_config *cfg) {
    llm_config c = *cfg;
    if (llm__config_resolve(&c) == LLM_OK) return LLM_OK;
    char msg[sizeof llm__errmsg];
    memcpy(msg, llm__errmsg, sizeof msg);
    msg[sizeof msg - 1 - 128] = 0;   /* leave room for the path */
    return llm__err(LLM_ERR_FORMAT, "%.120s: %s", path, msg);
}

/* ---- safetensors: u64 header length N, N bytes of JSON, then the data ---------------- */
typedef struct llm__st { llm__json j; const unsigned char *data; size_t data_len; } llm__st;
typedef struct llm__st_tensor { int dtype, ndim; int64_t shape[8]; const unsigned char *data; } llm__st_tensor;

typedef struct { size_t b, e; } llm__range;
static int llm__range_cmp(const void *x, const void *y) {
    const llm__range *a = LLM__CAST(const llm__range *, x), *b = LLM__CAST(const llm__range *, y);
    return a->b < b->b ? -1 : a->b > b->b ? 1 : 0;
}

/* Validate the whole header of the file in mp (which must outlive f): every tensor's
 * dtype, shape and offsets must be consistent with each other and with the file, and
 * no two tensors may overlap. */
static llm_status llm__st_open(llm__st *f, const llm__map *mp, const char *path) {
    memset(f, 0, sizeof *f);
    llm_status s;
    const unsigned char *d = mp->data;
    size_t len = mp->len;
    if (len < 8) return llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for safetensors", path, len);
    uint64_t n = llm__rd64(d);
    if (n < 2 || n > len - 8 || n > (100u << 20))
        return llm__err(LLM_ERR_FORMAT, "%s: safetensors header length %llu does not fit the file (%zu bytes)", path,
                        LLM__CAST(unsigned long long, n), len);
    if ((s = llm__json_parse(&f->j, LLM__CAST(const char *, d + 8), LLM__CAST(size_t, n))) != LLM_OK) {
        char msg[sizeof llm__errmsg];
        snprintf(msg, sizeof msg, "%s", llm_last_error());
        return llm__err(s, "%s: safetensors header: %s", path, msg);
    }
    f->data = d + 8 + n;
    f->data_len = len - 8 - LLM__CAST(size_t, n);
    const llm__json *j = &f->j;
    if (j->nodes[0].type != LLM__J_OBJ) { s = llm__err(LLM_ERR_FORMAT, "%s: safetensors header is not a JSON object", path); goto fail; }
    {
        llm__range *rg = LLM__CAST(llm__range *, llm__calloc(LLM__CAST(size_t, j->nodes[0].count) + 1, sizeof *rg));
        int nr = 0;
        if (!rg) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto fail; }
        for (int c = j->nodes[0].child; c >= 0; c = j->nodes[c].next) {
            const char *name = llm__jstr(j, j->nodes[c].key);
            if (strcmp(name, "__metadata__") == 0) continue;
            int dt = llm__json_get(j, c, "dtype"), sh = llm__json_get(j, c, "shape"), of = llm__json_get(j, c, "data_offsets");
            int64_t b, e, numel = 1, esz;
            if (dt < 0 || sh < 0 || of < 0 || j->nodes[dt].type != LLM__J_STR || j->nodes[sh].type != LLM__J_ARR ||
                j->nodes[of].type != LLM__J_ARR || j->nodes[of].count != 2 ||
                !llm__json_int(j, j->nodes[of].child, &b) || !llm__json_int(j, j->nodes[j->nodes[of].child].next, &e)) {
                LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, name); goto fail;
            }
            const char *dts = llm__jstr(j, j->nodes[dt].str);
            esz = !strcmp(dts, "F64") || !strcmp(dts, "I64") || !strcmp(dts, "U64") ? 8 :
                  !strcmp(dts, "F32") || !strcmp(dts, "I32") || !strcmp(dts, "U32") ? 4 :
                  !strcmp(dts, "F16") || !strcmp(dts, "BF16") || !strcmp(dts, "I16") || !strcmp(dts, "U16") ? 2 :
                  !strcmp(dts, "I8") || !strcmp(dts, "U8") || !strcmp(dts, "BOOL") || !strcmp(dts, "F8_E4M3") ||
                  !strcmp(dts, "F8_E5M2") ? 1 : 0;
            if (!esz) { LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, name, dts); goto fail; }
            for (int k = j->nodes[sh].child; k >= 0; k = j->nodes[k].next) {
                int64_t dim;
                if (!llm__json_int(j, k, &dim) || dim < 0 || (dim && numel > (INT64_C(1) << 50) / dim)) {
                    LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has a bad shape", path, name); goto fail;
                }
                numel *= dim;
            }
            if (b < 0 || e < b || LLM__CAST(uint64_t, e) > f->data_len || e - b != numel * esz) {
                LLM_FREE(rg);
                s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] disagree with its shape/dtype (%lld bytes) or the data size (%zu)",
                             path, name, LLM__CAST(long long, b), LLM__CAST(long long, e), LLM__CAST(long long, numel * esz), f->data_len);
                goto fail;
            }
            rg[nr].b = LLM__CAST(size_t, b); rg[nr].e = LLM__CAST(size_t, e); nr++;
        }
        qsort(rg, LLM__CAST(size_t, nr), sizeof *rg, llm__range_cmp);
        for (int i = 1; i < nr; i++)
            if (rg[i].b < rg[i - 1].e) {
                s = llm__err(LLM_ERR_FORMAT, "%s: two tensors overlap at data offset %zu", path, rg[i].b);
                LLM_FREE(rg); goto fail;
            }
        LLM_FREE(rg);
    }
    return LLM_OK;
fail:
    llm__json_free(&f->j);
    return s;
}
static void llm__st_close(llm__st *f) { llm__json_free(&f->j); }

/* Find tensor `name` (already validated by llm__st_open); 0 if absent. */
static int llm__st_get(const llm__st *f, const char *name, llm__st_tensor *t) {
    int c = llm__json_get(&f->j, 0, name);
    if (c < 0) return 0;
    const llm__json *j = &f->j;
    const char *dts = llm__jstr(j, j->nodes[llm__json_get(j, c, "dtype")].str);
    int sh = llm__json_get(j, c, "shape"), of = llm__json_get(j, c, "data_offsets");
    int64_t b = 0;
    llm__json_int(j, j->nodes[of].child, &b);
    t->dtype = !strcmp(dts, "F32") ? LLM__DT_F32 : !strcmp(dts, "F16") ? LLM__DT_F16 : !strcmp(dts, "BF16") ? LLM__DT_BF16 : -1;
    t->ndim = 0;
    for (int k = j->nodes[sh].child; k >= 0 && t->ndim < 8; k = j->nodes[k].next) llm__json_int(j, k, &t->shape[t->ndim++]);
    t->data = f->data + b;
    return 1;
}

/* Fetch a float tensor of the expected shape (d0[, d1]) or fail with a message. */
static llm_status llm__st_need(const llm__st *f, const char *path, const char *name, int64_t d0, int64_t d1,
                               llm__st_tensor *t) {
    if (!llm__st_get(f, name, t)) return llm__err(LLM_ERR_FORMAT, "%s: missing tensor '%s'", path, name);
    if (t->dtype < 0) return llm__err(LLM_ERR_UNSUPPORTED, "%s: tensor '%s' must be F32, F16 or BF16", path, name);
    int want = d1 ? 2 : 1;
    if (t->ndim != want || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[160] = "", tmp[32];
        for (int i = 0; i < t->ndim; i++) {
            snprintf(tmp, sizeof tmp, "%s%lld", i ? ", " : "", LLM__CAST(long long, t->shape[i]));
            strncat(got, tmp, sizeof got - strlen(got) - 1);
        }
        if (d1) snprintf(tmp, sizeof tmp, "%lld, %lld", LLM__CAST(long long, d0), LLM__CAST(long long, d1));
        else snprintf(tmp, sizeof tmp, "%lld", LLM__CAST(long long, d0));
        return llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", path, name, got, tmp);
    }
    return LLM_OK;
}

/* A GPT-2 config.json's text (cfgpath names it in messages): n_layer, n_head, n_embd,
 * vocab_size, n_positions (or n_ctx). */
static llm_status llm__hf_config_parse(const char *text, size_t len, const char *cfgpath, llm_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = LLM_ARCH_GPT2;
    llm__json j;
    llm_status s = llm__json_parse(&j, text, len);
    if (s != LLM_OK) { char msg[sizeof llm__errmsg]; snprintf(msg, sizeof msg, "%s", llm_last_error()); return llm__err(s, "%s: %s", cfgpath, msg); }
    const char *keys[5] = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};
    int *dst[5] = {&c->n_layer, &c->n_head, &c->n_embd, &c->vocab_size, &c->max_seq_len};
    for (int i = 0; i < 5; i++) {
        int64_t v;
        int node = llm__json_get(&j, 0, keys[i]);
        if (node < 0 && i == 4) node = llm__json_get(&j, 0, "n_ctx");
        if (!llm__json_int(&j, node, &v) || v <= 0 || v > INT_MAX) {
            llm__json_free(&j);
            return llm__err(LLM_ERR_FORMAT, "%s: missing or bad '%s'", cfgpath, keys[i]);
        }
        *dst[i] = LLM__CAST(int, v);
    }
    llm__json_free(&j);
    return LLM_OK;
}
/* config.json next to the weights at path, when there is one (*found). */
static llm_status llm__hf_config(const char *path, llm_config *c, int *found) {
    char cfgpath[1024];
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? LLM__CAST(size_t, slash - path + 1) : 0;
    *found = 0;
    if (dirlen + 12 >= sizeof cfgpath) return LLM_OK;
    memcpy(cfgpath, path, dirlen);
    strcpy(cfgpath + dirlen, "config.json");
    char *text; size_t len;
    FILE *probe = llm__fopen(cfgpath, "rb");
    if (!probe) return LLM_OK;
    fclose(probe);
    llm_status s = llm__read_file(cfgpath, &text, &len);
    if (s != LLM_OK) return s;
    s = llm__hf_config_parse(text, len, cfgpath, c);
    LLM_FREE(text);
    *found = s == LLM_OK;
    return s;
}

/* GPT-2's tensors in a safetensors file, by HF's names after the prefix `pre`, each
 * checked against the shape in c; with h, also converted into the parameter buffer h
 * (library layout off/size; HF's Conv1D weights transposed to (out, in)). The loader
 * calls it first with h == NULL, so that a file cannot make it allocate a model its
 * tensors do not hold. */
static llm_status llm__st_gpt2(const llm__st *f, const char *path, const char *pre, const llm_config *c,
                               const size_t off[LLM_NTENSORS], const size_t size[LLM_NTENSORS], float *h) {
    int64_t C = c->n_embd, V = c->vocab_size, T = c->max_seq_len;
    llm_params v;
    llm__param_views(&v, h, off, size);
    /* name (per layer: after "h.<l>."), destination, HF shape (rows, cols; cols 0: 1-D), transposed */
    const struct { const char *name; int layered; float *dst; int64_t rows, cols; int transpose; } ts[16] = {
        {"wte.weight", 0, v.wte, V, C, 0}, {"wpe.weight", 0, v.wpe, T, C, 0},
        {"ln_1.weight", 1, v.ln1w, C, 0, 0}, {"ln_1.bias", 1, v.ln1b, C, 0, 0},
        {"attn.c_attn.weight", 1, v.qkvw, C, 3 * C, 1}, {"attn.c_attn.bias", 1, v.qkvb, 3 * C, 0, 0},
        {"attn.c_proj.weight", 1, v.attprojw, C, C, 1}, {"attn.c_proj.bias", 1, v.attprojb, C, 0, 0},
        {"ln_2.weight", 1, v.ln2w, C, 0, 0}, {"ln_2.bias", 1, v.ln2b, C, 0, 0},
        {"mlp.c_fc.weight", 1, v.fcw, C, 4 * C, 1}, {"mlp.c_fc.bias", 1, v.fcb, 4 * C, 0, 0},
        {"mlp.c_proj.weight", 1, v.fcprojw, 4 * C, C, 1}, {"mlp.c_proj.bias", 1, v.fcprojb, C, 0, 0},
        {"ln_f.weight", 0, v.lnfw, C, 0, 0}, {"ln_f.bias", 0, v.lnfb, C, 0, 0}};
    llm__st_tensor t;
    llm_status s;
    char name[256];
    for (int i = 0; i < 16; i++)
        for (int l = 0; l < (ts[i].layered ? c->n_layer : 1); l++) {
            if (ts[i].layered) snprintf(name, sizeof name, "%sh.%d.%s", pre, l, ts[i].name);
            else snprintf(name, sizeof name, "%s%s", pre, ts[i].name);
            if ((s = llm__st_need(f, path, name, ts[i].rows, ts[i].cols, &t)) != LLM_OK) return s;
            size_t rows = LLM__CAST(size_t, ts[i].rows), cols = ts[i].cols ? LLM__CAST(size_t, ts[i].cols) : 1;
            if (h) llm__convert(ts[i].dst + LLM__CAST(size_t, l) * rows * cols, t.data, t.dtype, rows, cols, ts[i].transpose);
        }
    /* The LM head is tied to wte; a file may repeat it, but it must be the same. */
    if (llm__st_get(f, "lm_head.weight", &t)) {
        if ((s = llm__st_need(f, path, "lm_head.weight", V, C, &t)) != LLM_OK) return s;
        for (size_t i = 0; h && i < LLM__CAST(size_t, V * C); i++)
            if (llm__load_elem(t.data, t.dtype, i) != v.wte[i])
                return llm__err(LLM_ERR_UNSUPPORTED, "%s: lm_head.weight differs from wte.weight; untied heads are not supported", path);
    }
    return LLM_OK;
}

/* A GPT-2 in HF's safetensors, of shape *given (a config.json's) or, when NULL, the
 * shape its tensors show. */
static llm_status llm__load_safetensors(llm_model **out, const llm__map *mp, const char *path, const llm_config *given,
                                        const llm_options *opt) {
    llm__st f;
    llm_status s = llm__st_open(&f, mp, path);
    if (s != LLM_OK) return s;
    llm__st_tensor t;
    const char *pre = llm__st_get(&f, "wte.weight", &t) ? "" : llm__st_get(&f, "transformer.wte.weight", &t) ? "transformer." : NULL;
    char name[256];
    llm_config c;
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    float *h = NULL;
    llm_model *m = NULL;
    if (!pre) { s = llm__err(LLM_ERR_FORMAT, "%s: no 'wte.weight' tensor: not a GPT-2 checkpoint", path); goto done; }
    if (given) c = *given;
    else {   /* infer the shape from the tensors */
        memset(&c, 0, sizeof c);
        c.arch = LLM_ARCH_GPT2;
        llm__st_tensor wpe;
        snprintf(name, sizeof name, "%swpe.weight", pre);
        if (t.ndim != 2 || !llm__st_get(&f, name, &wpe) || wpe.ndim != 2) {
            s = llm__err(LLM_ERR_FORMAT, "%s: cannot infer the shape: wte/wpe must be 2-D", path); goto done;
        }
        c.vocab_size = LLM__CAST(int, t.shape[0]); c.n_embd = LLM__CAST(int, t.shape[1]);
        c.max_seq_len = LLM__CAST(int, wpe.shape[0]);
        c.n_layer = 0;
        for (;;) {
            snprintf(name, sizeof name, "%sh.%d.ln_1.weight", pre, c.n_layer);
            if (c.n_layer >= 4096 || !llm__st_get(&f, name, &wpe)) break;
            c.n_layer++;
        }
        /* The head count is not visible in the tensors; every GPT-2 uses head size 64. */
        if (c.n_embd % 64) { s = llm__err(LLM_ERR_FORMAT, "%s: no config.json and n_embd %d is not a multiple of 64: cannot infer n_head", path, c.n_embd); goto done; }
        c.n_head = c.n_embd / 64;
    }
    if ((s = llm__file_config(path, &c)) != LLM_OK) goto done;
    llm_tensor_layout(&c, off, size);
    if ((s = llm__st_gpt2(&f, path, pre, &c, off, size, NULL)) != LLM_OK || (s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
    h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if ((s = llm__st_gpt2(&f, path, pre, &m->cfg, m->off, m->size, h)) == LLM_OK)
        s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
done:
    LLM_FREE(h);
    llm__st_close(&f);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- llm.c's gpt2_124M.bin: 256 int32 header, then every tensor in our order, wte
 * padded to Vp rows (fp32 for version 3, bf16 for version 5) ------------------------- */
#define LLM__LLMC_MAGIC 20240326
static llm_status llm__load_llmc(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt) {
    llm_status s = LLM_OK;
    llm_model *m = NULL;
    float *h = NULL;
    int32_t hd[8];
    if (mp->len < 1024) { s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for an llm.c checkpoint header", path, mp->len); goto done; }
    for (int i = 0; i < 8; i++) hd[i] = LLM__CAST(int32_t, llm__rd32(mp->data + 4 * i));
    if (hd[0] != LLM__LLMC_MAGIC) { s = llm__err(LLM_ERR_FORMAT, "%s: bad magic %d (llm.c checkpoints have %d)", path, hd[0], LLM__LLMC_MAGIC); goto done; }
    if (hd[1] != 3 && hd[1] != 5) { s = llm__err(LLM_ERR_UNSUPPORTED, "%s: llm.c checkpoint version %d (3 = fp32 and 5 = bf16 are supported)", path, hd[1]); goto done; }
    {
        llm_config c;
        memset(&c, 0, sizeof c);
        c.arch = LLM_ARCH_GPT2;
        c.max_seq_len = hd[2]; c.vocab_size = hd[3]; c.n_layer = hd[4]; c.n_head = hd[5]; c.n_embd = hd[6];
        int Vp = hd[7];
        if ((s = llm__file_config(path, &c)) != LLM_OK) goto done;
        if (Vp < c.vocab_size) { s = llm__err(LLM_ERR_FORMAT, "%s: padded vocab %d < vocab %d", path, Vp, c.vocab_size); goto done; }
        int dtype = hd[1] == 3 ? LLM__DT_F32 : LLM__DT_BF16;
        size_t esz = dtype == LLM__DT_F32 ? 4 : 2, C = LLM__CAST(size_t, c.n_embd);
        size_t pad = (LLM__CAST(size_t, Vp) - LLM__CAST(size_t, c.vocab_size)) * C, off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_tensor_layout(&c, off, size);
        /* the file must hold the shape it claims before anything is allocated for it */
        uint64_t np = off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1], want = 1024 + (np + pad) * esz;
        if (mp->len != want) {
            s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %llu for this shape (truncated?)", path, mp->len,
                         LLM__CAST(unsigned long long, want));
            goto done;
        }
        if ((s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
        h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
        if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
        size_t vc = LLM__CAST(size_t, c.vocab_size) * C;
        llm__convert(h, mp->data + 1024, dtype, 1, vc, 0);                    /* wte, real rows */
        llm__convert(h + vc, mp->data + 1024 + (vc + pad) * esz, dtype, 1, m->n_params - vc, 0);
        s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
    }
done:
    LLM_FREE(h);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- llama2.c's model .bin (the original, "version 0" export): seven int32
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: a separate
 *   classifier follows), seq_len
 * then fp32 tensors: token embedding (V,C), rms_att (L,C), wq (L,C,C), wk (L,KV,C),
 * wv (L,KV,C), wo (L,C,C), rms_ffn (L,C), w1 (L,H,C), w2 (L,C,H), w3 (L,H,C),
 * rms_final (C), two unused RoPE tables (maxT*HS/2 each), [wcls (V,C)]. Weights are
 * (out, in) like ours; q, k, v are stacked into qkvw and w1, w3 into fcw. There is no
 * magic number: a header of seven positive sizes is taken as one (1: a valid shape, whose
 * file must then be `want` bytes; -1: an impossible shape; 0: not a llama2.c header). */
static int llm__llama2c_config(const unsigned char *d, size_t len, llm_config *c, size_t *want) {
    if (len < 28) return 0;
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = LLM__CAST(int32_t, llm__rd32(d + 4 * i));
    for (int i = 0; i < 7; i++)   /* every size positive; vocab_size's sign is a flag */
        if (i == 5 ? (h[i] == 0 || h[i] == INT32_MIN) : h[i] <= 0) return 0;
    memset(c, 0, sizeof *c);
    c->arch = LLM_ARCH_LLAMA;
    c->n_embd = h[0]; c->hidden_dim = h[1]; c->n_layer = h[2]; c->n_head = h[3]; c->n_kv_head = h[4];
    c->vocab_size = h[5] < 0 ? -h[5] : h[5]; c->untied_head = h[5] < 0; c->max_seq_len = h[6];
    llm_config r = *c;
    if (llm__config_resolve(&r) != LLM_OK) return -1;   /* plausible, but an impossible shape */
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(&r, off, size);
    size_t np = off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1];
    size_t rope = LLM__CAST(size_t, r.max_seq_len) * LLM__CAST(size_t, r.n_embd / r.n_head);   /* two tables of maxT*HS/2 */
    *want = 28 + 4 * (np + rope);
    return 1;
}

static llm_status llm__load_llama2c(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt) {
    llm_status s = LLM_OK;
    llm_config c;
    size_t want = 0;
    llm_model *m = NULL;
    float *h = NULL;
    int kind = llm__llama2c_config(mp->data, mp->len, &c, &want);
    if (kind <= 0) {
        char msg[sizeof llm__errmsg];
        memcpy(msg, llm__errmsg, sizeof msg);
        msg[sizeof msg - 1 - 128] = 0;
        s = kind == 0 ? llm__err(LLM_ERR_FORMAT, "%.120s: not a llama2.c checkpoint", path)
                      : llm__err(LLM_ERR_FORMAT, "%.120s: impossible llama2.c header: %s", path, msg);
        goto done;
    }
    if (mp->len != want) { s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, but its llama2.c header implies %zu (truncated?)", path, mp->len, want); goto done; }
    if ((s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
    h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
    {
        const llm_config *r = &m->cfg;
        size_t C = LLM__CAST(size_t, r->n_embd), L = LLM__CAST(size_t, r->n_layer), H = LLM__CAST(size_t, r->hidden_dim);
        size_t V = LLM__CAST(size_t, r->vocab_size), KV = LLM__CAST(size_t, r->n_kv_head) * (C / LLM__CAST(size_t, r->n_head));
        size_t QKV = C + 2 * KV;
        const unsigned char *src = mp->data + 28;
        llm_params v;
        llm__param_views(&v, h, m->off, m->size);
        /* read `rows` rows of C' floats of every layer into rows [row0, row0+rows) of a
         * stacked (L, per, cols) tensor */
#define LLM__L2C_READ(dst, per, row0, rows, cols) \
        for (size_t l = 0; l < L; l++) { \
            llm__convert((dst) + (l * (per) + (row0)) * (cols), src, LLM__DT_F32, 1, (rows) * (cols), 0); \
            src += 4 * (rows) * (cols); }
        llm__convert(v.wte, src, LLM__DT_F32, 1, V * C, 0); src += 4 * V * C;
        LLM__L2C_READ(v.ln1w, 1, 0, 1, C);
        LLM__L2C_READ(v.qkvw, QKV, 0, C, C);          /* wq */
        LLM__L2C_READ(v.qkvw, QKV, C, KV, C);         /* wk */
        LLM__L2C_READ(v.qkvw, QKV, C + KV, KV, C);    /* wv */
        LLM__L2C_READ(v.attprojw, C, 0, C, C);        /* wo */
        LLM__L2C_READ(v.ln2w, 1, 0, 1, C);
        LLM__L2C_READ(v.fcw, 2 * H, 0, H, C);         /* w1: the gate */
        LLM__L2C_READ(v.fcprojw, C, 0, C, H);         /* w2 */
        LLM__L2C_READ(v.fcw, 2 * H, H, H, C);         /* w3: the up projection */
#undef LLM__L2C_READ
        llm__convert(v.lnfw, src, LLM__DT_F32, 1, C, 0); src += 4 * C;
        src += 4 * LLM__CAST(size_t, r->max_seq_len) * (C / LLM__CAST(size_t, r->n_head));   /* RoPE tables */
        if (v.wcls) llm__convert(v.wcls, src, LLM__DT_F32, 1, V * C, 0);
    }
    s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
done:
    LLM_FREE(h);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- our checkpoint: a 256-byte header, the parameters, optionally m and v ----------
 *   0 "LLMHCKPT" | 8 u32 version 1 | 12 u32 flags (1: optimizer state follows)
 *   16 i32 arch, maxT, V, L, NH, C, NKV, hidden, untied | 52 f32 norm_eps, rope_theta
 *   60 u32 0 | 64 u64 n_params | 72 u64 adam step
 *   80 u64 train step, rng[0], rng[1], cursor, epoch | 120..255 zero
 *   256: f32 params[n_params] (+ f32 m[n_params], f32 v[n_params])        little-endian */
#define LLM__CKPT_MAGIC "LLMHCKPT"
#define LLM__CKPT_NCFG 9
static void llm__wr32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = LLM__CAST(unsigned char, v >> (8 * i)); }
static void llm__wr64(unsigned char *p, uint64_t v) { llm__wr32(p, LLM__CAST(uint32_t, v)); llm__wr32(p + 4, LLM__CAST(uint32_t, v >> 32)); }

/* The start every header of ours shares (checkpoints, both versions, and LoRA adapters):
 * bytes 8 u32 version, 12 u32 flags, 16-51 the model's shape (LLM__CKPT_NCFG i32). The
 * magic (bytes 0-7) is written last: see llm__wfile. */
static void llm__hdr_begin(unsigned char *hdr, uint32_t version, uint32_t flags, const llm_config *c) {
    const int cf[LLM__CKPT_NCFG] = {LLM__CAST(int, c->arch), c->max_seq_len, c->vocab_size, c->n_layer, c->n_head,
                                    c->n_embd, c->n_kv_head, c->hidden_dim, c->untied_head};
    llm__wr32(hdr + 8, version);
    llm__wr32(hdr + 12, flags);
    for (int i = 0; i < LLM__CKPT_NCFG; i++) llm__wr32(hdr + 16 + 4 * i, LLM__CAST(uint32_t, cf[i]));
}
/* llm_train_state as five u64 at p: step, rng[0], rng[1], cursor, epoch (zeros when NULL). */
static void llm__hdr_train_state(unsigned char *p, const llm_train_state *ts) {
    if (!ts) return;
    const uint64_t v[5] = {ts->step, ts->rng[0], ts->rng[1], ts->cursor, ts->epoch};
    for (int i = 0; i < 5; i++) llm__wr64(p + 8 * i, v[i]);
}
/* Write magic + hdr, then narr arrays of n floats from backend memory (the values, then
 * AdamW's m and v), through one host buffer; path is replaced only once all is on disk. */
static llm_status llm__save_dev(const llm_model *m, const char *path, const char *magic, const unsigned char *hdr,
                                size_t nhdr, const float *const *dev, int narr, size_t n) {
    float *host = LLM__CAST(float *, LLM_MALLOC((n ? n : 1) * sizeof(float)));
    if (!host) return llm__err(LLM_ERR_NOMEM, "save %s: out of memory", path);
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) { LLM_FREE(host); return s; }
    memcpy(w.head, magic, 8);
    w.nhead = 8;
    llm__wbytes(&w, hdr, nhdr);   /* zeros in bytes 0-7 until the close */
    for (int i = 0; i < narr && s == LLM_OK; i++) {
        s = m->be->download(m->st, host, dev[i], n * sizeof(float));
        if (s == LLM_OK) llm__wbytes(&w, host, n * sizeof(float));
    }
    LLM_FREE(host);
    if (s != LLM_OK) { w.failed = 1; llm__wclose(&w); return s; }
    return llm__wclose(&w);
}

static llm_status llm__save_quantized(const llm_model *m, const char *path);
LLMDEF llm_status llm_model_save(const llm_model *m, const char *path, int with_optimizer, const llm_train_state *ts) {
    if (!m || !path) return llm__err(LLM_ERR_ARG, "save: NULL argument");
    if (m->qdtype != LLM_DTYPE_F32) return llm__save_quantized(m, path);   /* version 2, below */
    unsigned char hdr[256];
    memset(hdr, 0, sizeof hdr);
    int opt = with_optimizer && m->m_mem;
    llm__hdr_begin(hdr, 1, opt ? 1u : 0u, &m->cfg);
    memcpy(hdr + 52, &m->cfg.norm_eps, 4);
    memcpy(hdr + 56, &m->cfg.rope_theta, 4);
    llm__wr64(hdr + 64, m->n_params);
    llm__wr64(hdr + 72, LLM__CAST(uint64_t, m->t));
    llm__hdr_train_state(hdr + 80, ts);
    const float *arrays[3] = {m->params_mem, m->m_mem, m->v_mem};
    return llm__save_dev(m, path, LLM__CKPT_MAGIC, hdr, sizeof hdr, arrays, opt ? 3 : 1, m->n_params);
}

/* Validate our header against the file; fills the config and says whether the
 * optimizer state is present. */
static llm_status llm__ckpt_header(const llm__map *mp, const char *path, llm_config *c, int *has_opt) {
    if (mp->len < 256 || memcmp(mp->data, LLM__CKPT_MAGIC, 8) != 0)
        return llm__err(LLM_ERR_FORMAT, "%s: not an llm.h checkpoint (bad magic or too short)", path);
    if (llm__rd32(mp->data + 8) != 1) return llm__err(LLM_ERR_UNSUPPORTED, "%s: checkpoint version %u", path, llm__rd32(mp->data + 8));
    *has_opt = llm__rd32(mp->data + 12) & 1;
    int arch = LLM__CAST(int32_t, llm__rd32(mp->data + 16));
    int *cf[LLM__CKPT_NCFG] = {&arch, &c->max_seq_len, &c->vocab_size, &c->n_layer, &c->n_head, &c->n_embd,
                               &c->n_kv_head, &c->hidden_dim, &c->untied_head};
    for (int i = 0; i < LLM__CKPT_NCFG; i++) *cf[i] = LLM__CAST(int32_t, llm__rd32(mp->data + 16 + 4 * i));
    c->arch = arch == 1 ? LLM_ARCH_LLAMA : LLM_ARCH_GPT2;
    if (arch != 0 && arch != 1) return llm__err(LLM_ERR_FORMAT, "%s: unknown architecture %d", path, arch);
    memcpy(&c->norm_eps, mp->data + 52, 4);
    memcpy(&c->rope_theta, mp->data + 56, 4);
    llm_status s = llm__file_config(path, c);
    if (s == LLM_OK) s = llm__config_resolve(c);
    if (s != LLM_OK) return s;
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(c, off, size);
    uint64_t np = off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1];
    if (llm__rd64(mp->data + 64) != np) return llm__err(LLM_ERR_FORMAT, "%s: parameter count disagrees with the shape", path);
    uint64_t want = 256 + np * 4 * (*has_opt ? 3 : 1);
    if (mp->len != want)
        return llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %llu (truncated?)", path, mp->len, LLM__CAST(unsigned long long, want));
    return LLM_OK;
}

/* ---- our checkpoint with quantized weights (version 2) --------------------------------
 * The version-1 header with version 2, flags 0 (quantized models do not train: no
 * optimizer or train state) and at 60 the u32 dtype (1 bf16, 2 q8_0); then every tensor
 * in llm_params order: a matrix (wte, qkvw, attprojw, fcw, fcprojw, wcls) row by row, a
 * row of K values as ceil(K/32) of ggml's Q8_0 blocks (u16 fp16 scale, 32 int8: 34 bytes;
 * when K is not a multiple of 32 the last block is zero-padded) or as K bf16 values; the
 * other tensors f32. Little-endian. */
#define LLM__CKPT_QVERSION 2
static size_t llm__qrow_bytes(llm_dtype t, int K) {
    return t == LLM_DTYPE_Q8_0 ? LLM__CAST(size_t, llm__q8_nb(K)) * sizeof(llm__q8_0) : 2 * LLM__CAST(size_t, K);
}
/* The bytes after the header, for a model of config c (resolved) in dtype t. */
static uint64_t llm__qckpt_bytes(const llm_config *c, const size_t size[LLM_NTENSORS], llm_dtype t) {
    uint64_t n = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) {
        int K = i == 12 ? c->hidden_dim : c->n_embd;
        n += llm__is_qmat(i) ? size[i] / LLM__CAST(size_t, K) * llm__qrow_bytes(t, K) : 4 * LLM__CAST(uint64_t, size[i]);
    }
    return n;
}

static llm_status llm__save_quantized(const llm_model *m, const char *path) {
    unsigned char hdr[256];
    memset(hdr, 0, sizeof hdr);
    const llm_config *c = &m->cfg;
    llm__hdr_begin(hdr, LLM__CKPT_QVERSION, 0, c);
    memcpy(hdr + 52, &c->norm_eps, 4);
    memcpy(hdr + 56, &c->rope_theta, 4);
    llm__wr32(hdr + 60, LLM__CAST(uint32_t, m->qdtype));
    llm__wr64(hdr + 64, m->n_params);
    size_t maxK = LLM__CAST(size_t, c->hidden_dim > c->n_embd ? c->hidden_dim : c->n_embd);
    llm__q8_0 *blk = LLM__CAST(llm__q8_0 *, LLM_MALLOC((maxK / LLM__QK + 1) * sizeof(llm__q8_0)));
    unsigned char *row = LLM__CAST(unsigned char *, LLM_MALLOC(llm__qrow_bytes(LLM_DTYPE_Q8_0, LLM__CAST(int, maxK)) + 2 * maxK));
    if (!blk || !row) { LLM_FREE(blk); LLM_FREE(row); return llm__err(LLM_ERR_NOMEM, "save: out of memory"); }
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) { LLM_FREE(blk); LLM_FREE(row); return s; }
    memcpy(w.head, LLM__CKPT_MAGIC, 8);   /* written last, as every save's */
    w.nhead = 8;
    llm__wbytes(&w, hdr, sizeof hdr);
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!llm__is_qmat(i)) {   /* f32, host memory on the CPU backend */
            llm__wbytes(&w, llm__view(&m->p, i), m->size[i] * sizeof(float));
            continue;
        }
        int k = llm__qkind(i), N, K, nl;
        llm__qshape(m, k, &N, &K, &nl);
        for (size_t R = 0; R < m->size[i] / LLM__CAST(size_t, K); R++) {
            const unsigned char *W = llm__qmat(m, k, LLM__CAST(int, R / LLM__CAST(size_t, N)));
            int j = LLM__CAST(int, R % LLM__CAST(size_t, N));
            size_t n = llm__qrow_bytes(m->qdtype, K);
            if (m->qdtype == LLM_DTYPE_Q8_0) {
                llm__q8t_get_row(blk, W, K, j);
                for (int b = 0; b < llm__q8_nb(K); b++) {
                    row[34 * b] = LLM__CAST(unsigned char, blk[b].d & 0xff);
                    row[34 * b + 1] = LLM__CAST(unsigned char, blk[b].d >> 8);
                    memcpy(row + 34 * b + 2, blk[b].qs, LLM__QK);
                }
            } else {
                for (int x = 0; x < K; x++) {
                    uint32_t v = *llm__bf16t_word(LLM__CAST(const uint32_t *, LLM__CAST(const void *, W)), K, j, x / 2);
                    uint16_t h = LLM__CAST(uint16_t, x % 2 ? v >> 16 : v & 0xffff);
                    row[2 * x] = LLM__CAST(unsigned char, h & 0xff);
                    row[2 * x + 1] = LLM__CAST(unsigned char, h >> 8);
                }
            }
            llm__wbytes(&w, row, n);
        }
    }
    LLM_FREE(blk);
    LLM_FREE(row);
    return llm__wclose(&w);
}

static llm_status llm__load_quantized(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt) {
    const unsigned char *d = mp->data;
    llm_config c;
    *out = NULL;
    if (llm__rd32(d + 12) != 0) return llm__err(LLM_ERR_FORMAT, "%s: a quantized checkpoint with optimizer state", path);
    uint32_t dt = llm__rd32(d + 60);
    if (dt != LLM_DTYPE_BF16 && dt != LLM_DTYPE_Q8_0) return llm__err(LLM_ERR_FORMAT, "%s: unknown weight type %u", path, dt);
    memset(&c, 0, sizeof c);
    int arch = LLM__CAST(int32_t, llm__rd32(d + 16));
    int *cf[LLM__CKPT_NCFG] = {&arch, &c.max_seq_len, &c.vocab_size, &c.n_layer, &c.n_head, &c.n_embd,
                               &c.n_kv_head, &c.hidden_dim, &c.untied_head};
    for (int i = 0; i < LLM__CKPT_NCFG; i++) *cf[i] = LLM__CAST(int32_t, llm__rd32(d + 16 + 4 * i));
    if (arch != 0 && arch != 1) return llm__err(LLM_ERR_FORMAT, "%s: unknown architecture %d", path, arch);
    c.arch = arch == 1 ? LLM_ARCH_LLAMA : LLM_ARCH_GPT2;
    memcpy(&c.norm_eps, d + 52, 4);
    memcpy(&c.rope_theta, d + 56, 4);
    llm_status s = llm__file_config(path, &c);
    if (s == LLM_OK) s = llm__config_resolve(&c);
    if (s != LLM_OK) return s;
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(&c, off, size);
    if (llm__rd64(d + 64) != off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1])
        return llm__err(LLM_ERR_FORMAT, "%s: parameter count disagrees with the shape", path);
    uint64_t want = 256 + llm__qckpt_bytes(&c, size, LLM__CAST(llm_dtype, dt));
    if (mp->len != want)
        return llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %llu (truncated?)", path, mp->len, LLM__CAST(unsigned long long, want));
    llm_model *m = NULL;
    if ((s = llm__model_make(&m, &c, opt, LLM__CAST(llm_dtype, dt))) != LLM_OK) return s;
    size_t maxK = LLM__CAST(size_t, c.hidden_dim > c.n_embd ? c.hidden_dim : c.n_embd);
    llm__q8_0 *blk = LLM__CAST(llm__q8_0 *, LLM_MALLOC((maxK / LLM__QK + 1) * sizeof(llm__q8_0)));
    uint16_t *vals = LLM__CAST(uint16_t *, LLM_MALLOC(maxK * sizeof(uint16_t)));
    if (!blk || !vals) { LLM_FREE(blk); LLM_FREE(vals); llm_model_free(m); return llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); }
    const unsigned char *p = d + 256;
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!llm__is_qmat(i)) {
            if (m->size[i]) llm__convert(llm__view(&m->p, i), p, LLM__DT_F32, 1, m->size[i], 0);
            p += 4 * m->size[i];
            continue;
        }
        int K = i == 12 ? c.hidden_dim : c.n_embd;
        for (size_t R = 0; R < m->size[i] / LLM__CAST(size_t, K); R++, p += llm__qrow_bytes(m->qdtype, K)) {
            if (m->qdtype == LLM_DTYPE_Q8_0)
                for (int b = 0; b < llm__q8_nb(K); b++) {
                    blk[b].d = LLM__CAST(uint16_t, p[34 * b] | p[34 * b + 1] << 8);
                    memcpy(blk[b].qs, p + 34 * b + 2, LLM__QK);
                }
            else
                for (int x = 0; x < K; x++) vals[x] = LLM__CAST(uint16_t, p[2 * x] | p[2 * x + 1] << 8);
            llm__qput_row_exact(m, i, R, blk, vals);
        }
    }
    LLM_FREE(blk);
    LLM_FREE(vals);
    *out = m;
    return LLM_OK;
}

static llm_status llm__load_ckpt(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt) {
    if (mp->len >= 256 && llm__rd32(mp->data + 8) == LLM__CKPT_QVERSION) return llm__load_quantized(out, mp, path, opt);   /* above */
    llm_config c;
    int has_opt;
    llm_model *m = NULL;
    llm_status s;
    if ((s = llm__ckpt_header(mp, path, &c, &has_opt)) == LLM_OK && (s = llm__model_new(&m, &c, opt)) == LLM_OK)
        s = m->be->upload(m->st, m->params_mem, mp->data + 256, m->n_params * sizeof(float));
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* The optimizer and training state of the checkpoint in mp into m. */
static llm_status llm__load_train_state(llm_model *m, const llm__map *mp, const char *path, llm_train_state *ts) {
    llm_config c;
    int has_opt;
    llm_status s;
    if ((s = llm__ckpt_header(mp, path, &c, &has_opt)) != LLM_OK) return s;
    if (!has_opt) return llm__err(LLM_ERR_FORMAT, "%s: saved without optimizer state", path);
    if (m->lora) return llm__err(LLM_ERR_STATE, "%s: the model has LoRA adapters: their state is in their own file (llm_model_lora_load)", path);
    if (memcmp(&c, &m->cfg, sizeof c) != 0) return llm__err(LLM_ERR_ARG, "%s: the checkpoint's shape differs from the model's", path);
    uint64_t t = llm__rd64(mp->data + 72);
    if (t > INT_MAX) return llm__err(LLM_ERR_FORMAT, "%s: AdamW step count %llu is out of range", path, LLM__CAST(unsigned long long, t));
    if ((s = llm__moments(m)) != LLM_OK) return s;
    if ((s = m->be->upload(m->st, m->m_mem, mp->data + 256 + m->n_params * 4, m->n_params * 4)) != LLM_OK) return s;
    if ((s = m->be->upload(m->st, m->v_mem, mp->data + 256 + m->n_params * 8, m->n_params * 4)) != LLM_OK) return s;
    m->t = LLM__CAST(int, t);
    if (ts) {
        uint64_t *v[5] = {&ts->step, &ts->rng[0], &ts->rng[1], &ts->cursor, &ts->epoch};
        for (int i = 0; i < 5; i++) *v[i] = llm__rd64(mp->data + 80 + 8 * i);
    }
    return LLM_OK;
}

LLMDEF llm_status llm_model_load_train_state(llm_model *m, const char *path, llm_train_state *ts) {
    if (!m || !path) return llm__err(LLM_ERR_ARG, "llm_model_load_train_state: NULL argument");
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    s = llm__load_train_state(m, &mp, path, ts);
    llm__map_close(&mp);
    return s;
}

/* ---- LoRA adapters: their own small file, a 128-byte header, then the floats --------
 *   0 "LLMHLORA" | 8 u32 version 1 | 12 u32 flags (1: AdamW state follows)
 *   16 i32 arch, maxT, V, L, NH, C, NKV, hidden, untied: the base's shape (our checkpoint's)
 *   52 u32 rank | 56 f32 alpha | 60 u32 targets (LLM_LORA_* bits) | 64 u64 seed
 *   72 u64 n (adapter floats) | 80 u64 adam step
 *   88 u64 train step, rng[0], rng[1], cursor, epoch (llm_train_state) | 128: f32 adapters[n]
 *   (+ f32 m[n], f32 v[n])                                               little-endian
 * The adapters fit any model whose layers have the same shapes (arch, L, C, NH, NKV, hidden):
 * the vocabulary and the context do not enter them. */
#define LLM__LORA_MAGIC "LLMHLORA"
#define LLM__LORA_HDR 128

LLMDEF llm_status llm_model_lora_save(const llm_model *m, const char *path, int with_optimizer, const llm_train_state *ts) {
    if (!m || !path) return llm__err(LLM_ERR_ARG, "lora_save: NULL argument");
    if (!m->lora) return llm__err(LLM_ERR_STATE, "lora_save: no LoRA adapters attached");
    const llm__lora *a = m->lora;
    unsigned char hdr[LLM__LORA_HDR];
    memset(hdr, 0, sizeof hdr);
    int opt = with_optimizer && a->m;
    llm__hdr_begin(hdr, 1, opt ? 1u : 0u, &m->cfg);
    llm__wr32(hdr + 52, LLM__CAST(uint32_t, a->cfg.rank));
    memcpy(hdr + 56, &a->cfg.alpha, 4);
    llm__wr32(hdr + 60, LLM__CAST(uint32_t, a->cfg.targets));
    llm__wr64(hdr + 64, a->cfg.seed);
    llm__wr64(hdr + 72, a->n);
    llm__wr64(hdr + 80, LLM__CAST(uint64_t, m->t));
    llm__hdr_train_state(hdr + 88, ts);
    const float *arrays[3] = {a->mem, a->m, a->v};
    return llm__save_dev(m, path, LLM__LORA_MAGIC, hdr, sizeof hdr, arrays, opt ? 3 : 1, a->n);
}

LLMDEF llm_status llm_model_lora_load(llm_model *m, const char *path, llm_train_state *ts) {
    if (!m || !path) return llm__err(LLM_ERR_ARG, "lora_load: NULL argument");
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    const unsigned char *d = mp.data;
    llm__lora a;
    llm_lora_config lc;
    llm_config c;
    int has_opt = 0;
    memset(&c, 0, sizeof c);
    if (mp.len < LLM__LORA_HDR || memcmp(d, LLM__LORA_MAGIC, 8) != 0) {
        s = llm__err(LLM_ERR_FORMAT, "%s: not an llm.h adapters file (bad magic or too short)", path); goto done;
    }
    if (llm__rd32(d + 8) != 1) { s = llm__err(LLM_ERR_UNSUPPORTED, "%s: adapters file version %u", path, llm__rd32(d + 8)); goto done; }
    has_opt = llm__rd32(d + 12) & 1;
    {
        int32_t cf[LLM__CKPT_NCFG];
        for (int i = 0; i < LLM__CKPT_NCFG; i++) cf[i] = LLM__CAST(int32_t, llm__rd32(d + 16 + 4 * i));
        c.arch = cf[0] == 1 ? LLM_ARCH_LLAMA : LLM_ARCH_GPT2;
        c.n_layer = cf[3]; c.n_head = cf[4]; c.n_embd = cf[5]; c.n_kv_head = cf[6]; c.hidden_dim = cf[7];
        const llm_config *mc = &m->cfg;
        if (cf[0] != LLM__CAST(int32_t, mc->arch) || c.n_layer != mc->n_layer || c.n_head != mc->n_head ||
            c.n_embd != mc->n_embd || c.n_kv_head != mc->n_kv_head || c.hidden_dim != mc->hidden_dim) {
            s = llm__err(LLM_ERR_ARG, "%s: adapters for another model shape: they were made for %s L=%d C=%d NH=%d NKV=%d "
                         "hidden=%d, this model is %s L=%d C=%d NH=%d NKV=%d hidden=%d", path,
                         cf[0] == 1 ? "llama" : cf[0] == 0 ? "gpt2" : "?", c.n_layer, c.n_embd, c.n_head, c.n_kv_head,
                         c.hidden_dim, mc->arch == LLM_ARCH_LLAMA ? "llama" : "gpt2", mc->n_layer, mc->n_embd,
                         mc->n_head, mc->n_kv_head, mc->hidden_dim);
            goto done;
        }
    }
    memset(&lc, 0, sizeof lc);
    lc.rank = LLM__CAST(int32_t, llm__rd32(d + 52));
    memcpy(&lc.alpha, d + 56, 4);
    lc.targets = LLM__CAST(int32_t, llm__rd32(d + 60));
    lc.seed = llm__rd64(d + 64);
    if (lc.targets == 0 || lc.alpha == 0.0f) { s = llm__err(LLM_ERR_FORMAT, "%s: no targets or a zero alpha", path); goto done; }
    if ((s = llm__lora_layout(&a, m, &lc)) != LLM_OK) {
        char msg[sizeof llm__errmsg];
        snprintf(msg, sizeof msg, "%s", llm_last_error());
        s = llm__err(LLM_ERR_FORMAT, "%.200s: %s", path, msg);
        goto done;
    }
    if (llm__rd64(d + 72) != a.n) { s = llm__err(LLM_ERR_FORMAT, "%s: adapter count disagrees with the rank and targets", path); goto done; }
    {
        uint64_t want = LLM__LORA_HDR + LLM__CAST(uint64_t, a.n) * 4 * (has_opt ? 3 : 1);
        if (mp.len != want) {
            s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %llu (truncated?)", path, mp.len, LLM__CAST(unsigned long long, want));
            goto done;
        }
    }
    {   /* the floats may sit at any alignment in a map: copy them out */
        float *h = LLM__CAST(float *, LLM_MALLOC((a.n ? a.n : 1) * sizeof(float)));
        if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
        memcpy(h, d + LLM__LORA_HDR, a.n * sizeof(float));
        for (size_t i = 0; i < a.n; i++)
            if (!(h[i] == h[i]) || h[i] > FLT_MAX || h[i] < -FLT_MAX) {
                LLM_FREE(h);
                s = llm__err(LLM_ERR_FORMAT, "%s: adapter value %zu is not finite", path, i);
                goto done;
            }
        s = llm__lora_attach(m, &a, h);
        LLM_FREE(h);
    }
    if (s == LLM_OK && has_opt) {
        llm__lora *la = m->lora;
        size_t bytes = la->n * sizeof(float);
        if ((s = llm__moments(m)) == LLM_OK && (s = m->be->upload(m->st, la->m, d + LLM__LORA_HDR + bytes, bytes)) == LLM_OK)
            s = m->be->upload(m->st, la->v, d + LLM__LORA_HDR + 2 * bytes, bytes);
        if (s == LLM_OK) {
            m->t = LLM__CAST(int, llm__rd64(d + 80));
            m->micro = 0;
            if (ts) {
                uint64_t *v[5] = {&ts->step, &ts->rng[0], &ts->rng[1], &ts->cursor, &ts->epoch};
                for (int i = 0; i < 5; i++) *v[i] = llm__rd64(d + 88 + 8 * i);
            }
        } else {
            llm_model_lora_free(m);
        }
    }
done:
    llm__map_close(&mp);
    return s;
}
static llm_status llm__load_gguf(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt);   /* below */

/* The format from the content's first bytes, then its loader. */
static llm_status llm__load_map(llm_model **out, const llm__map *mp, const char *path, int read_config,
                                const llm_options *opt) {
    const unsigned char *head = mp->data;
    size_t n = mp->len;
    llm_config c;
    size_t want = 0;
    if (n >= 8 && memcmp(head, LLM__CKPT_MAGIC, 8) == 0) return llm__load_ckpt(out, mp, path, opt);
    if (n >= 4 && llm__rd32(head) == LLM__LLMC_MAGIC) return llm__load_llmc(out, mp, path, opt);
    if (n >= 4 && memcmp(head, "GGUF", 4) == 0) return llm__load_gguf(out, mp, path, opt);
    if (n >= 9 && head[8] == '{') {
        int found = 0;
        llm_status s = read_config ? llm__hf_config(path, &c, &found) : LLM_OK;
        return s != LLM_OK ? s : llm__load_safetensors(out, mp, path, found ? &c : NULL, opt);
    }
    /* llama2.c has no magic: a plausible header is taken as one (and must then predict
     * the file size exactly; its loader says what is wrong with the file) */
    if (llm__llama2c_config(head, n, &c, &want) != 0) return llm__load_llama2c(out, mp, path, opt);
    return llm__err(LLM_ERR_FORMAT, "%s: unknown model format (expected HF safetensors, llm.c .bin, llama2.c .bin, GGUF or an llm.h checkpoint)", path);
}

LLMDEF llm_status llm_model_load(llm_model **out, const char *path, const llm_options *opt) {
    if (!out || !path) return llm__err(LLM_ERR_ARG, "llm_model_load: NULL argument");
    *out = NULL;
    char buf[1024];
    if (llm__is_dir(path)) {   /* a HF model folder */
        snprintf(buf, sizeof buf, "%s/model.safetensors", path);
        path = buf;
    }
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    s = llm__load_map(out, &mp, path, 1, opt);
    llm__map_close(&mp);
    return s;
}

LLMDEF llm_status llm_model_load_memory(llm_model **out, const void *data, size_t len, const llm_options *opt) {
    if (!out || (!data && len)) return llm__err(LLM_ERR_ARG, "llm_model_load_memory: NULL argument");
    *out = NULL;
    llm__map mp;
    llm__map_memory(&mp, data, len);
    return llm__load_map(out, &mp, "(memory)", 0, opt);
}

/* ---- GGUF: llama.cpp's model files, versions 2 and 3 ----------------------------------
 * Little-endian throughout:
 *   "GGUF", u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x      { str key, u32 value type, value }
 *   n_tensors x { str name, u32 n_dims (1..4), u64 ne[n_dims], u32 ggml type, u64 offset }
 *   zero padding up to a multiple of general.alignment (32 when absent), then the data:
 *   each tensor `offset` bytes past that point, every offset a multiple of the alignment.
 * str = u64 length, then the bytes (no NUL). Value types: 0 u8, 1 i8, 2 u16, 3 i16,
 * 4 u32, 5 i32, 6 f32, 7 bool (1 byte), 8 str, 9 array (u32 element type, u64 count, the
 * elements; arrays of arrays are refused, as ggml refuses them), 10 u64, 11 i64, 12 f64.
 * Version 1 had u32 counts; version 3 only allowed big-endian files, which carry the
 * same magic and a byte-swapped version (refused). ne[0] varies fastest: a matrix with
 * ne = [K, N] is N rows of K values, our (out, in) layout.
 * A file is untrusted input. Every count, length and offset is checked against what is
 * left of the file before it is used; counts are bounded by the bytes they need before
 * anything is allocated; keys and tensor names must be unique; a tensor of a type we
 * read must lie inside the data without overlapping another. Tensors of other types
 * are only named in an LLM_ERR_UNSUPPORTED when a model needs them. */
enum { LLM__GGUF_U8, LLM__GGUF_I8, LLM__GGUF_U16, LLM__GGUF_I16, LLM__GGUF_U32, LLM__GGUF_I32, LLM__GGUF_F32,
       LLM__GGUF_BOOL, LLM__GGUF_STR, LLM__GGUF_ARR, LLM__GGUF_U64, LLM__GGUF_I64, LLM__GGUF_F64 };
enum { LLM__GGML_F32 = 0, LLM__GGML_F16 = 1, LLM__GGML_Q8_0 = 8, LLM__GGML_BF16 = 30 };
#define LLM__GGUF_MAX_DIMS 4

typedef struct llm__gguf_kv {
    const char *key;             /* klen bytes in the mapped file, no NUL */
    size_t klen;
    uint32_t type;               /* value type */
    uint32_t atype;              /* arrays: the elements' type */
    uint64_t n;                  /* arrays: the count */
    const unsigned char *val;    /* the value (arrays: the first element) */
} llm__gguf_kv;
typedef struct llm__gguf_tensor {
    const char *name;
    size_t nlen;
    uint64_t ne[LLM__GGUF_MAX_DIMS];   /* 1 past n_dims */
    int n_dims;
    uint32_t type;               /* ggml type */
    uint64_t offset;
    const unsigned char *data;   /* the bytes, for the types we read (else NULL) */
} llm__gguf_tensor;
typedef struct llm__gguf {
    llm__map map;
    const char *path;
    uint32_t version;
    size_t n_kv, n_t, align;
    llm__gguf_kv *kv;            /* (n_kv) */
    llm__gguf_tensor *t;         /* (n_t) */
    const unsigned char *data;   /* the data section, data_len bytes */
    size_t data_len;
} llm__gguf;

static const char *llm__ggml_type_name(uint32_t t) {
    static const char *const names[40] = {
        "F32", "F16", "Q4_0", "Q4_1", "type 4", "type 5", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
        "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S",
        "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8",
        "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
    return t < 40 ? names[t] : "an unknown type";
}
/* Bytes per block and values per block of the types we read; 0 for the others. */
static size_t llm__ggml_block(uint32_t t, size_t *per) {
    *per = t == LLM__GGML_Q8_0 ? LLM__QK : 1;
    return t == LLM__GGML_F32 ? 4 : t == LLM__GGML_F16 || t == LLM__GGML_BF16 ? 2 : t == LLM__GGML_Q8_0 ? sizeof(llm__q8_0) : 0;
}
/* Bytes of one value of a scalar value type; 0 for str, array and unknown types. */
static size_t llm__gguf_vsize(uint32_t type) {
    switch (type) {
    case LLM__GGUF_U8: case LLM__GGUF_I8: case LLM__GGUF_BOOL: return 1;
    case LLM__GGUF_U16: case LLM__GGUF_I16: return 2;
    case LLM__GGUF_U32: case LLM__GGUF_I32: case LLM__GGUF_F32: return 4;
    case LLM__GGUF_U64: case LLM__GGUF_I64: case LLM__GGUF_F64: return 8;
    }
    return 0;
}

/* A bounded reader over the file: every read first checks that the bytes are there. */
typedef struct llm__gguf_rd { const unsigned char *p; size_t n, at; } llm__gguf_rd;
static int llm__gguf_has(const llm__gguf_rd *r, uint64_t k) { return k <= LLM__CAST(uint64_t, r->n - r->at); }
static int llm__gguf_u32(llm__gguf_rd *r, uint32_t *v) {
    if (!llm__gguf_has(r, 4)) return 0;
    *v = llm__rd32(r->p + r->at); r->at += 4;
    return 1;
}
static int llm__gguf_u64(llm__gguf_rd *r, uint64_t *v) {
    if (!llm__gguf_has(r, 8)) return 0;
    *v = llm__rd64(r->p + r->at); r->at += 8;
    return 1;
}
/* A string: its bytes stay in the file. */
static int llm__gguf_str(llm__gguf_rd *r, const char **s, size_t *n) {
    uint64_t len;
    if (!llm__gguf_u64(r, &len) || !llm__gguf_has(r, len)) return 0;
    *s = LLM__CAST(const char *, LLM__CAST(const void *, r->p + r->at));
    *n = LLM__CAST(size_t, len);
    r->at += LLM__CAST(size_t, len);
    return 1;
}

static void llm__gguf_close(llm__gguf *g) {
    LLM_FREE(g->kv);
    LLM_FREE(g->t);
    llm__map_close(&g->map);
    memset(g, 0, sizeof *g);
}

/* Names (keys or tensor names) sorted to find duplicates in n log n. */
typedef struct llm__gguf_name { const char *s; size_t n; } llm__gguf_name;
static int llm__gguf_name_cmp(const void *x, const void *y) {
    const llm__gguf_name *a = LLM__CAST(const llm__gguf_name *, x), *b = LLM__CAST(const llm__gguf_name *, y);
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}
/* The first name that appears twice among n (sorted in place), or NULL. */
static const llm__gguf_name *llm__gguf_dup(llm__gguf_name *v, size_t n) {
    if (n < 2) return NULL;
    qsort(v, n, sizeof *v, llm__gguf_name_cmp);
    for (size_t i = 1; i < n; i++)
        if (llm__gguf_name_cmp(v + i - 1, v + i) == 0) return v + i;
    return NULL;
}

/* Step over one value of `type` (strings walked, arrays of scalars jumped over). */
static int llm__gguf_skip(llm__gguf_rd *r, uint32_t type, uint32_t *atype, uint64_t *count) {
    size_t vs = llm__gguf_vsize(type);
    if (vs) { if (!llm__gguf_has(r, vs)) return 0; r->at += vs; return 1; }
    if (type == LLM__GGUF_STR) { const char *s; size_t n; return llm__gguf_str(r, &s, &n); }
    if (type != LLM__GGUF_ARR) return 0;
    uint32_t at;
    uint64_t n;
    if (!llm__gguf_u32(r, &at) || !llm__gguf_u64(r, &n)) return 0;
    *atype = at; *count = n;
    if (at == LLM__GGUF_STR) {
        if (n > (r->n - r->at) / 8) return 0;   /* each string needs its 8-byte length */
        for (uint64_t i = 0; i < n; i++) { const char *s; size_t l; if (!llm__gguf_str(r, &s, &l)) return 0; }
        return 1;
    }
    vs = llm__gguf_vsize(at);
    if (!vs || n > (r->n - r->at) / vs) return 0;   /* arrays of arrays, unknown types, too long */
    r->at += LLM__CAST(size_t, n) * vs;
    return 1;
}

typedef struct { size_t b, e; const char *name; size_t nlen; } llm__gguf_range;
static int llm__gguf_range_cmp(const void *x, const void *y) {
    const llm__gguf_range *a = LLM__CAST(const llm__gguf_range *, x), *b = LLM__CAST(const llm__gguf_range *, y);
    return a->b < b->b ? -1 : a->b > b->b ? 1 : 0;
}

/* Validate the whole header of the file in g->map and the placement of every tensor we
 * could read; on failure g is closed (the map too). */
static llm_status llm__gguf_parse(llm__gguf *g, const char *path) {
    llm_status s;
    g->path = path;
    g->align = 32;
    const unsigned char *d = g->map.data;
    const size_t len = g->map.len;
    llm__gguf_rd r;
    r.p = d; r.n = len; r.at = 24;
    llm__gguf_name *names = NULL;
    llm__gguf_range *rg = NULL;
    uint64_t n_t, n_kv;
#define LLM__GGUF_FAIL(st, ...) do { s = llm__err(st, __VA_ARGS__); goto fail; } while (0)
    if (len < 24 || memcmp(d, "GGUF", 4) != 0)
        LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic, or shorter than its 24-byte header)", path);
    g->version = llm__rd32(d + 4);
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version, sw = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        if (sw == 2 || sw == 3) LLM__GGUF_FAIL(LLM_ERR_UNSUPPORTED, "%s: a big-endian GGUF file (llm.h reads little-endian ones)", path);
        LLM__GGUF_FAIL(LLM_ERR_UNSUPPORTED, "%s: GGUF version %u (llm.h reads versions 2 and 3)", path, v);
    }
    n_t = llm__rd64(d + 8);
    n_kv = llm__rd64(d + 16);
    /* a key/value takes at least 13 bytes (length, type, a one-byte value), a tensor 32 */
    if (n_kv > (len - 24) / 13 || n_t > (len - 24) / 32)
        LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: claims %llu keys and %llu tensors, more than its %zu bytes can hold", path,
                       LLM__CAST(unsigned long long, n_kv), LLM__CAST(unsigned long long, n_t), len);
    g->n_kv = LLM__CAST(size_t, n_kv);
    g->n_t = LLM__CAST(size_t, n_t);
    g->kv = LLM__CAST(llm__gguf_kv *, llm__calloc(g->n_kv + 1, sizeof *g->kv));
    g->t = LLM__CAST(llm__gguf_tensor *, llm__calloc(g->n_t + 1, sizeof *g->t));
    names = LLM__CAST(llm__gguf_name *, llm__calloc((g->n_kv > g->n_t ? g->n_kv : g->n_t) + 1, sizeof *names));
    rg = LLM__CAST(llm__gguf_range *, llm__calloc(g->n_t + 1, sizeof *rg));
    if (!g->kv || !g->t || !names || !rg) LLM__GGUF_FAIL(LLM_ERR_NOMEM, "%s: out of memory for the GGUF header", path);
    for (size_t i = 0; i < g->n_kv; i++) {
        llm__gguf_kv *kv = &g->kv[i];
        size_t at = r.at;
        if (!llm__gguf_str(&r, &kv->key, &kv->klen) || !llm__gguf_u32(&r, &kv->type))
            LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: key %zu (at byte %zu) is cut off", path, i, at);
        kv->val = d + r.at;
        if (!llm__gguf_skip(&r, kv->type, &kv->atype, &kv->n)) {
            if (kv->type > LLM__GGUF_F64)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: key '%.*s' has unknown value type %u", path, LLM__CAST(int, kv->klen < 80 ? kv->klen : 80), kv->key, kv->type);
            LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: the value of key '%.*s' is cut off or malformed (an array too long for the "
                           "file, of arrays, or of an unknown type)", path, LLM__CAST(int, kv->klen < 80 ? kv->klen : 80), kv->key);
        }
        if (kv->type == LLM__GGUF_ARR) kv->val += 12;   /* past the element type and count */
        names[i].s = kv->key; names[i].n = kv->klen;
    }
    {
        const llm__gguf_name *dup = llm__gguf_dup(names, g->n_kv);
        if (dup) LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: key '%.*s' appears twice", path, LLM__CAST(int, dup->n < 80 ? dup->n : 80), dup->s);
    }
    for (size_t i = 0; i < g->n_t; i++) {
        llm__gguf_tensor *t = &g->t[i];
        size_t at = r.at;
        uint32_t nd;
        if (!llm__gguf_str(&r, &t->name, &t->nlen) || !llm__gguf_u32(&r, &nd))
            LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor %zu (at byte %zu) is cut off", path, i, at);
        const int nn = LLM__CAST(int, t->nlen < 80 ? t->nlen : 80);
        if (nd < 1 || nd > LLM__GGUF_MAX_DIMS)
            LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' has %u dimensions (1 to 4 allowed)", path, nn, t->name, nd);
        t->n_dims = LLM__CAST(int, nd);
        uint64_t numel = 1;
        for (int k = 0; k < LLM__GGUF_MAX_DIMS; k++) {
            uint64_t e = 1;
            if (k < t->n_dims && !llm__gguf_u64(&r, &e)) LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' is cut off", path, nn, t->name);
            if (e < 1 || e > (UINT64_C(1) << 50) / numel)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' has a bad shape (dimension %d is %llu)", path, nn, t->name, k,
                               LLM__CAST(unsigned long long, e));
            t->ne[k] = e;
            numel *= e;
        }
        if (!llm__gguf_u32(&r, &t->type) || !llm__gguf_u64(&r, &t->offset))
            LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' is cut off", path, nn, t->name);
        names[i].s = t->name; names[i].n = t->nlen;
    }
    {
        const llm__gguf_name *dup = llm__gguf_dup(names, g->n_t);
        if (dup) LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' appears twice", path, LLM__CAST(int, dup->n < 80 ? dup->n : 80), dup->s);
    }
    for (size_t i = 0; i < g->n_kv; i++)   /* general.alignment: a u32 power of two */
        if (g->kv[i].klen == 17 && memcmp(g->kv[i].key, "general.alignment", 17) == 0) {
            uint32_t a = g->kv[i].type == LLM__GGUF_U32 ? llm__rd32(g->kv[i].val) : 0;
            if (a == 0 || (a & (a - 1)) || a > (1u << 30))
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: general.alignment must be a u32 power of two", path);
            g->align = a;
        }
    {
        size_t start = (r.at + g->align - 1) / g->align * g->align;   /* r.at <= len: no overflow */
        if (start > len) {
            if (g->n_t) LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: the file ends before its tensor data", path);
            start = len;
        }
        g->data = d + start;
        g->data_len = len - start;
    }
    {
        size_t nr = 0;
        for (size_t i = 0; i < g->n_t; i++) {
            llm__gguf_tensor *t = &g->t[i];
            const int nn = LLM__CAST(int, t->nlen < 80 ? t->nlen : 80);
            if (t->offset % g->align)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' at offset %llu, not a multiple of the alignment %zu", path, nn, t->name,
                               LLM__CAST(unsigned long long, t->offset), g->align);
            size_t per, bs = llm__ggml_block(t->type, &per);
            if (!bs) continue;   /* a type we never read: its bytes are never touched */
            if (t->ne[0] % per)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' (%s) has rows of %llu values, not a multiple of %zu", path, nn,
                               t->name, llm__ggml_type_name(t->type), LLM__CAST(unsigned long long, t->ne[0]), per);
            uint64_t bytes = t->ne[0] / per * t->ne[1] * t->ne[2] * t->ne[3] * bs;   /* < 2^50 * 34 */
            if (t->offset > g->data_len || bytes > g->data_len - t->offset)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensor '%.*s' (%llu bytes at offset %llu) runs past the end of the data (%zu bytes)",
                               path, nn, t->name, LLM__CAST(unsigned long long, bytes), LLM__CAST(unsigned long long, t->offset), g->data_len);
            t->data = g->data + t->offset;
            rg[nr].b = LLM__CAST(size_t, t->offset); rg[nr].e = LLM__CAST(size_t, t->offset + bytes);
            rg[nr].name = t->name; rg[nr].nlen = t->nlen;
            nr++;
        }
        qsort(rg, nr, sizeof *rg, llm__gguf_range_cmp);
        for (size_t i = 1; i < nr; i++)
            if (rg[i].b < rg[i - 1].e)
                LLM__GGUF_FAIL(LLM_ERR_FORMAT, "%s: tensors '%.*s' and '%.*s' overlap", path, LLM__CAST(int, rg[i - 1].nlen < 80 ? rg[i - 1].nlen : 80),
                               rg[i - 1].name, LLM__CAST(int, rg[i].nlen < 80 ? rg[i].nlen : 80), rg[i].name);
    }
#undef LLM__GGUF_FAIL
    LLM_FREE(names);
    LLM_FREE(rg);
    return LLM_OK;
fail:
    LLM_FREE(names);
    LLM_FREE(rg);
    llm__gguf_close(g);
    return s;
}

static llm_status llm__gguf_open(llm__gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    llm_status s = llm__map_open(&g->map, path);
    return s != LLM_OK ? s : llm__gguf_parse(g, path);
}

/* ---- looking things up ---------------------------------------------------------------- */
static const llm__gguf_kv *llm__gguf_find(const llm__gguf *g, const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].klen == n && memcmp(g->kv[i].key, key, n) == 0) return &g->kv[i];
    return NULL;
}
static const llm__gguf_tensor *llm__gguf_tensor_find(const llm__gguf *g, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < g->n_t; i++)
        if (g->t[i].nlen == n && memcmp(g->t[i].name, name, n) == 0) return &g->t[i];
    return NULL;
}
/* The integer at p of scalar type t (bool too); 0 if t is not an integer type or the
 * value does not fit an int64. */
static int llm__gguf_int_at(const unsigned char *p, uint32_t t, int64_t *v) {
    switch (t) {
    case LLM__GGUF_U8: case LLM__GGUF_BOOL: *v = p[0]; return 1;
    case LLM__GGUF_I8: *v = LLM__CAST(int8_t, p[0]); return 1;
    case LLM__GGUF_U16: *v = p[0] | p[1] << 8; return 1;
    case LLM__GGUF_I16: *v = LLM__CAST(int16_t, LLM__CAST(uint16_t, p[0] | p[1] << 8)); return 1;
    case LLM__GGUF_U32: *v = llm__rd32(p); return 1;
    case LLM__GGUF_I32: *v = LLM__CAST(int32_t, llm__rd32(p)); return 1;
    case LLM__GGUF_U64: if (llm__rd64(p) > INT64_MAX) return 0; *v = LLM__CAST(int64_t, llm__rd64(p)); return 1;
    case LLM__GGUF_I64: *v = LLM__CAST(int64_t, llm__rd64(p)); return 1;
    }
    return 0;
}
/* Metadata getters: 1 found (and valid), 0 absent, LLM error status (< 0) when present
 * but of the wrong type or out of [lo, hi]. */
static int llm__gguf_get_int(const llm__gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const llm__gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == LLM__GGUF_ARR)
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: %s is an array (values that vary by layer are not supported)", g->path, key);
    if (!llm__gguf_int_at(kv->val, kv->type, v) || *v < lo || *v > hi)
        return llm__err(LLM_ERR_FORMAT, "%s: %s must be an integer in [%lld, %lld]", g->path, key, LLM__CAST(long long, lo),
                        LLM__CAST(long long, hi));
    return 1;
}
static int llm__gguf_get_float(const llm__gguf *g, const char *key, double *v) {
    const llm__gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == LLM__GGUF_F32) *v = llm__bits_f32(llm__rd32(kv->val));
    else if (kv->type == LLM__GGUF_F64) { uint64_t u = llm__rd64(kv->val); memcpy(v, &u, 8); }
    else return llm__err(LLM_ERR_FORMAT, "%s: %s must be a float", g->path, key);
    return 1;
}
static int llm__gguf_get_str(const llm__gguf *g, const char *key, const char **s, size_t *n) {
    const llm__gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type != LLM__GGUF_STR) return llm__err(LLM_ERR_FORMAT, "%s: %s must be a string", g->path, key);
    *n = LLM__CAST(size_t, llm__rd64(kv->val));
    *s = LLM__CAST(const char *, LLM__CAST(const void *, kv->val + 8));
    return 1;
}
static int llm__gguf_streq(const char *s, size_t n, const char *lit) { return n == strlen(lit) && memcmp(s, lit, n) == 0; }

/* Tensor `name` as rows x cols floats (ne = [cols, rows]; rows 0: a vector ne = [cols])
 * into dst: F32, F16 and BF16 converted, Q8_0 dequantized. Trailing dimensions of 1 are
 * allowed. LLM_ERR_FORMAT for a missing tensor or another shape, LLM_ERR_UNSUPPORTED
 * naming the type for any other type. */
static llm_status llm__gguf_shape(const llm__gguf *g, const llm__gguf_tensor *t, const char *name, uint64_t cols,
                                  uint64_t rows) {
    uint64_t want[LLM__GGUF_MAX_DIMS] = {cols, rows ? rows : 1, 1, 1};
    if (!t) return llm__err(LLM_ERR_FORMAT, "%s: missing tensor '%s'", g->path, name);
    for (int k = 0; k < LLM__GGUF_MAX_DIMS; k++)
        if (t->ne[k] != want[k])
            return llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]", g->path, name,
                            LLM__CAST(unsigned long long, t->ne[0]), LLM__CAST(unsigned long long, t->ne[1]),
                            LLM__CAST(unsigned long long, t->ne[2]), LLM__CAST(unsigned long long, t->ne[3]),
                            LLM__CAST(unsigned long long, cols), LLM__CAST(unsigned long long, rows ? rows : 1));
    if (!t->data)
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: tensor '%s' is %s (llm.h reads F32, F16, BF16 and Q8_0; requantize to Q8_0 "
                        "or F16 with llama.cpp's llama-quantize)", g->path, name, llm__ggml_type_name(t->type));
    return LLM_OK;
}
/* Row r of tensor t (rows of ne[0] values, of a type we read) as floats. */
static void llm__gguf_row(const llm__gguf_tensor *t, uint64_t r, float *dst) {
    const size_t K = LLM__CAST(size_t, t->ne[0]);
    if (t->type == LLM__GGML_Q8_0) {
        const unsigned char *B = t->data + LLM__CAST(size_t, r) * (K / LLM__QK) * sizeof(llm__q8_0);
        for (size_t b = 0; b < K / LLM__QK; b++, B += sizeof(llm__q8_0)) {
            float d = llm__f16_to_f32(LLM__CAST(uint16_t, B[0] | B[1] << 8));
            for (int k = 0; k < LLM__QK; k++) dst[b * LLM__QK + LLM__CAST(size_t, k)] = d * LLM__CAST(float, LLM__CAST(int8_t, B[2 + k]));
        }
        return;
    }
    int dt = t->type == LLM__GGML_F32 ? LLM__DT_F32 : t->type == LLM__GGML_F16 ? LLM__DT_F16 : LLM__DT_BF16;
    llm__convert(dst, t->data + LLM__CAST(size_t, r) * K * (dt == LLM__DT_F32 ? 4 : 2), dt, 1, K, 0);
}

static llm_status llm__gguf_floats(const llm__gguf *g, const char *name, uint64_t cols, uint64_t rows, float *dst) {
    const llm__gguf_tensor *t = llm__gguf_tensor_find(g, name);
    llm_status s = llm__gguf_shape(g, t, name, cols, rows);
    if (s != LLM_OK || !dst) return s;   /* dst NULL: only check */
    for (uint64_t r = 0; r < (rows ? rows : 1); r++) llm__gguf_row(t, r, dst + LLM__CAST(size_t, r * cols));
    return LLM_OK;
}

/* ---- GGUF models ---------------------------------------------------------------------
 * llama.cpp's tensor names, per architecture (ne = [in, out]):
 *   both:  token_embd.weight [C, V], output_norm.weight [C], output.weight [C, V] (optional:
 *          tied to token_embd when absent), blk.N.attn_norm.weight, blk.N.ffn_norm.weight,
 *          blk.N.attn_output.weight [C, C], blk.N.ffn_down.weight [H, C]
 *   llama: blk.N.attn_q.weight [C, C], attn_k / attn_v [C, NKV*HS], ffn_gate, ffn_up [C, H]
 *          (its converter stores q and k in the interleaved RoPE order that llama2.c and
 *          llm.h use, so nothing is permuted)
 *   gpt2:  position_embd.weight [C, maxT], blk.N.attn_qkv.weight [C, 3C] (rows q, k, v),
 *          blk.N.ffn_up.weight [C, H], and a .bias beside every norm and matmul weight.
 * Hyper-parameters come from "<arch>.*" keys (context_length, embedding_length,
 * block_count, feed_forward_length, attention.head_count[_kv], rope.freq_base,
 * attention.layer_norm_rms_epsilon). What llm.h's Transformer cannot express is refused
 * by name: other architectures, partial rotary dimensions, RoPE scaling, experts,
 * attention biases in a Llama. */
static llm_status llm__gguf_config(const llm__gguf *g, llm_config *c) {
    const char *arch, *path = g->path;
    size_t alen;
    int r = llm__gguf_get_str(g, "general.architecture", &arch, &alen);
    if (r < 0) return LLM__CAST(llm_status, r);
    if (r == 0) return llm__err(LLM_ERR_FORMAT, "%s: no general.architecture key", path);
    memset(c, 0, sizeof *c);
    if (llm__gguf_streq(arch, alen, "llama")) c->arch = LLM_ARCH_LLAMA;
    else if (llm__gguf_streq(arch, alen, "gpt2")) c->arch = LLM_ARCH_GPT2;
    else return llm__err(LLM_ERR_UNSUPPORTED, "%s: architecture '%.*s' (llm.h runs 'llama' and 'gpt2')", path,
                         LLM__CAST(int, alen < 40 ? alen : 40), arch);
    const char *a = c->arch == LLM_ARCH_LLAMA ? "llama" : "gpt2";
    char key[96];
    struct { const char *suffix; int *dst; int required; } ints[6] = {
        {"context_length", &c->max_seq_len, 1}, {"embedding_length", &c->n_embd, 1}, {"block_count", &c->n_layer, 1},
        {"feed_forward_length", &c->hidden_dim, 1}, {"attention.head_count", &c->n_head, 1},
        {"attention.head_count_kv", &c->n_kv_head, 0}};
    for (int i = 0; i < 6; i++) {
        int64_t v = 0;
        snprintf(key, sizeof key, "%s.%s", a, ints[i].suffix);
        if ((r = llm__gguf_get_int(g, key, 1, INT_MAX, &v)) < 0) return LLM__CAST(llm_status, r);
        if (r == 0 && ints[i].required) return llm__err(LLM_ERR_FORMAT, "%s: no %s key", path, key);
        *ints[i].dst = LLM__CAST(int, v);
    }
    double f;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if ((r = llm__gguf_get_float(g, key, &f)) < 0) return LLM__CAST(llm_status, r);
    if (r) c->rope_theta = LLM__CAST(float, f);
    if (c->arch == LLM_ARCH_LLAMA) {
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
        if ((r = llm__gguf_get_float(g, key, &f)) < 0) return LLM__CAST(llm_status, r);
        if (r) c->norm_eps = LLM__CAST(float, f);
        if (!(c->norm_eps >= 0.0f) || !(c->rope_theta >= 0.0f))   /* resolve checks > 0; catch NaN here */
            return llm__err(LLM_ERR_FORMAT, "%s: rope.freq_base and layer_norm_rms_epsilon must be positive", path);
    } else {
        snprintf(key, sizeof key, "%s.attention.layer_norm_epsilon", a);
        if ((r = llm__gguf_get_float(g, key, &f)) < 0) return LLM__CAST(llm_status, r);
        if (r && !(fabs(f - 1e-5) <= 1e-9))
            return llm__err(LLM_ERR_UNSUPPORTED, "%s: GPT-2 layer-norm epsilon %g (llm.h's LayerNorm uses 1e-5)", path, f);
    }
    int64_t v;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if ((r = llm__gguf_get_int(g, key, 0, INT_MAX, &v)) < 0) return LLM__CAST(llm_status, r);
    if (r && c->arch == LLM_ARCH_LLAMA && c->n_head > 0 && v != c->n_embd / c->n_head)
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: RoPE on %lld of each head's %d dimensions (llm.h rotates all of them)", path,
                        LLM__CAST(long long, v), c->n_embd / c->n_head);
    snprintf(key, sizeof key, "%s.expert_count", a);
    if ((r = llm__gguf_get_int(g, key, 0, INT_MAX, &v)) < 0) return LLM__CAST(llm_status, r);
    if (r && v > 0) return llm__err(LLM_ERR_UNSUPPORTED, "%s: a mixture of %lld experts", path, LLM__CAST(long long, v));
    const char *st;
    size_t sl;
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if ((r = llm__gguf_get_str(g, key, &st, &sl)) < 0) return LLM__CAST(llm_status, r);
    if (r && !llm__gguf_streq(st, sl, "none"))
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: RoPE scaling '%.*s'", path, LLM__CAST(int, sl < 40 ? sl : 40), st);
    if (llm__gguf_tensor_find(g, "rope_freqs.weight"))
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 style)", path);
    if (c->arch == LLM_ARCH_LLAMA && llm__gguf_tensor_find(g, "blk.0.attn_q.bias"))
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: attention biases in a Llama", path);
    const llm__gguf_tensor *emb = llm__gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return llm__err(LLM_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (emb->ne[1] > INT_MAX) return llm__err(LLM_ERR_FORMAT, "%s: vocabulary of %llu tokens", path, LLM__CAST(unsigned long long, emb->ne[1]));
    c->vocab_size = LLM__CAST(int, emb->ne[1]);
    c->untied_head = c->arch == LLM_ARCH_LLAMA && llm__gguf_tensor_find(g, "output.weight") != NULL;
    return llm__file_config(path, c);
}

/* Tensor `name` (cols x rows) into the model: an fp32 model's host copy h (at element
 * `at` of tensor ti), a quantized model's small tensors, or its tiles: Q8_0 blocks into a
 * Q8_0 model and BF16 values into a bf16 one are copied as they are, anything else is
 * converted to floats and quantized, row by row. m NULL: only check the tensor. */
static llm_status llm__gguf_put(const llm__gguf *g, llm_model *m, float *h, int ti, uint64_t at, const char *name,
                                uint64_t cols, uint64_t rows) {
    if (!m) return llm__gguf_floats(g, name, cols, rows, NULL);
    if (m->qdtype == LLM_DTYPE_F32) return llm__gguf_floats(g, name, cols, rows, h + m->off[ti] + at);
    if (!llm__is_qmat(ti)) return llm__gguf_floats(g, name, cols, rows, llm__view(&m->p, ti) + at);
    const llm__gguf_tensor *t = llm__gguf_tensor_find(g, name);
    llm_status s = llm__gguf_shape(g, t, name, cols, rows);
    if (s != LLM_OK) return s;
    const size_t K = LLM__CAST(size_t, cols), nb = K / LLM__QK;
    const int q8 = t->type == LLM__GGML_Q8_0 && m->qdtype == LLM_DTYPE_Q8_0, b16 = t->type == LLM__GGML_BF16 && m->qdtype == LLM_DTYPE_BF16;
    void *tmp = LLM_MALLOC(q8 ? nb * sizeof(llm__q8_0) : K * sizeof(float));
    if (!tmp) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t r = 0; r < rows; r++) {
        const size_t R = LLM__CAST(size_t, at / cols + r);
        if (q8) {   /* 34-byte blocks: a little-endian fp16 scale, 32 int8 */
            llm__q8_0 *bl = LLM__CAST(llm__q8_0 *, tmp);
            const unsigned char *B = t->data + LLM__CAST(size_t, r) * nb * sizeof(llm__q8_0);
            for (size_t b = 0; b < nb; b++, B += sizeof(llm__q8_0)) {
                bl[b].d = LLM__CAST(uint16_t, B[0] | B[1] << 8);
                memcpy(bl[b].qs, B + 2, LLM__QK);
            }
            llm__qput_row_exact(m, ti, R, bl, NULL);
        } else if (b16) {
            uint16_t *v = LLM__CAST(uint16_t *, tmp);
            const unsigned char *B = t->data + LLM__CAST(size_t, r) * K * 2;
            for (size_t k = 0; k < K; k++) v[k] = LLM__CAST(uint16_t, B[2 * k] | B[2 * k + 1] << 8);
            llm__qput_row_exact(m, ti, R, NULL, v);
        } else {
            llm__gguf_row(t, r, LLM__CAST(float *, tmp));
            llm__qput_rows(m, ti, R, 1, LLM__CAST(float *, tmp));
        }
    }
    LLM_FREE(tmp);
    return LLM_OK;
}

/* Read every tensor into model m (its host fp32 copy h, or its quantized storage), or
 * with m NULL only check that every tensor is there with its shape and a type we read:
 * done before the model is allocated, so that a header claiming a huge shape costs
 * nothing (the tensors must then fit in the file). c is the resolved config. */
static llm_status llm__gguf_weights(const llm__gguf *g, const llm_config *c, llm_model *m, float *h) {
    const uint64_t C = LLM__CAST(uint64_t, c->n_embd), V = LLM__CAST(uint64_t, c->vocab_size), H = LLM__CAST(uint64_t, c->hidden_dim);
    const uint64_t KV = LLM__CAST(uint64_t, c->n_kv_head) * (C / LLM__CAST(uint64_t, c->n_head)), QKV = C + 2 * KV;
    const int gpt2 = c->arch == LLM_ARCH_GPT2;
    /* (tensor index in llm_params, element offset in it, file name, cols, rows: 0 = a vector) */
    struct { int ti; uint64_t at; const char *name; uint64_t cols, rows; } t[16];
    char name[16][64];
    int nt = 0;
    llm_status s;
#define LLM__GG(i, a, nm, cl, rw) do { t[nt].ti = i; t[nt].at = a; t[nt].name = nm; t[nt].cols = cl; t[nt].rows = rw; nt++; } while (0)
    LLM__GG(0, 0, "token_embd.weight", C, V);
    LLM__GG(14, 0, "output_norm.weight", C, 0);
    if (gpt2) {
        LLM__GG(15, 0, "output_norm.bias", C, 0);
        LLM__GG(1, 0, "position_embd.weight", C, LLM__CAST(uint64_t, c->max_seq_len));
    }
    if (c->untied_head) LLM__GG(16, 0, "output.weight", C, V);
    for (int l = -1; l < c->n_layer; l++) {
        const uint64_t L = LLM__CAST(uint64_t, l);
        if (l >= 0) {
            nt = 0;
            LLM__GG(2, L * C, "attn_norm.weight", C, 0);
            LLM__GG(8, L * C, "ffn_norm.weight", C, 0);
            LLM__GG(6, L * C * C, "attn_output.weight", C, C);
            LLM__GG(12, L * C * H, "ffn_down.weight", H, C);
            if (gpt2) {
                LLM__GG(3, L * C, "attn_norm.bias", C, 0);
                LLM__GG(9, L * C, "ffn_norm.bias", C, 0);
                LLM__GG(4, L * QKV * C, "attn_qkv.weight", C, QKV);
                LLM__GG(5, L * QKV, "attn_qkv.bias", QKV, 0);
                LLM__GG(7, L * C, "attn_output.bias", C, 0);
                LLM__GG(10, L * H * C, "ffn_up.weight", C, H);
                LLM__GG(11, L * H, "ffn_up.bias", H, 0);
                LLM__GG(13, L * C, "ffn_down.bias", C, 0);
            } else {   /* q, k, v stacked into qkvw; gate then up into fcw */
                LLM__GG(4, L * QKV * C, "attn_q.weight", C, C);
                LLM__GG(4, (L * QKV + C) * C, "attn_k.weight", C, KV);
                LLM__GG(4, (L * QKV + C + KV) * C, "attn_v.weight", C, KV);
                LLM__GG(10, L * 2 * H * C, "ffn_gate.weight", C, H);
                LLM__GG(10, (L * 2 * H + H) * C, "ffn_up.weight", C, H);
            }
            for (int i = 0; i < nt; i++) {
                snprintf(name[i], sizeof name[i], "blk.%d.%s", l, t[i].name);
                t[i].name = name[i];
            }
        }
        for (int i = 0; i < nt; i++)
            if ((s = llm__gguf_put(g, m, h, t[i].ti, t[i].at, t[i].name, t[i].cols, t[i].rows == 0 ? 1 : t[i].rows)) != LLM_OK)
                return s;
    }
#undef LLM__GG
    /* GPT-2's head is tied; llama.cpp's converter writes it again as output.weight, which
     * must then hold the same values (as in the safetensors loader), row by row */
    const llm__gguf_tensor *o = llm__gguf_tensor_find(g, "output.weight"), *e = llm__gguf_tensor_find(g, "token_embd.weight");
    if (gpt2 && o) {
        if ((s = llm__gguf_shape(g, o, "output.weight", C, V)) != LLM_OK) return s;
        float *a = m ? LLM__CAST(float *, LLM_MALLOC(2 * LLM__CAST(size_t, C) * sizeof(float))) : NULL;
        if (m && !a) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", g->path);
        for (uint64_t r = 0; m && r < V && s == LLM_OK; r++) {
            llm__gguf_row(o, r, a);
            llm__gguf_row(e, r, a + C);
            if (memcmp(a, a + C, LLM__CAST(size_t, C) * sizeof(float)) != 0)
                s = llm__err(LLM_ERR_UNSUPPORTED, "%s: output.weight differs from token_embd.weight; GPT-2's head is tied", g->path);
        }
        LLM_FREE(a);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* The model in an opened GGUF file (closed by the caller). Its matrices stay quantized:
 * a file with Q8_0 matrices gives a Q8_0 model (its blocks copied as they are; a matrix
 * of another type in it is quantized to Q8_0, as llama-quantize leaves some), else one
 * with BF16 matrices a bf16 model; F32 and F16 give fp32. */
static llm_status llm__gguf_model(const llm__gguf *g, llm_model **out, const llm_options *opt) {
    llm_config c;
    llm_model *m = NULL;
    float *h = NULL;
    llm_status s;
    llm_dtype dt = LLM_DTYPE_F32;
    *out = NULL;
    for (size_t i = 0; i < g->n_t; i++) {
        if (g->t[i].type == LLM__GGML_Q8_0) dt = LLM_DTYPE_Q8_0;
        else if (g->t[i].type == LLM__GGML_BF16 && g->t[i].ne[1] > 1 && dt == LLM_DTYPE_F32) dt = LLM_DTYPE_BF16;
    }
    if ((s = llm__gguf_config(g, &c)) != LLM_OK || (s = llm__config_resolve(&c)) != LLM_OK ||
        (s = llm__gguf_weights(g, &c, NULL, NULL)) != LLM_OK || (s = llm__model_make(&m, &c, opt, dt)) != LLM_OK)
        return s;
    if (dt == LLM_DTYPE_F32) {
        h = LLM__CAST(float *, llm__calloc(m->n_params, sizeof(float)));
        if (!h) s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", g->path);
    }
    if (s == LLM_OK) s = llm__gguf_weights(g, &m->cfg, m, h);
    if (s == LLM_OK && h) s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
    LLM_FREE(h);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

static llm_status llm__load_gguf(llm_model **out, const llm__map *mp, const char *path, const llm_options *opt) {
    llm__gguf g;
    *out = NULL;
    memset(&g, 0, sizeof g);
    llm__map_memory(&g.map, mp->data, mp->len);   /* borrowed: the caller closes mp */
    llm_status s = llm__gguf_parse(&g, path);
    if (s != LLM_OK) return s;
    s = llm__gguf_model(&g, out, opt);
    llm__gguf_close(&g);
    return s;
}

/* ---- the tokenizer in a GGUF file ------------------------------------------------------
 * tokenizer.ggml.model says which: "llama" (SentencePiece: tokenizer.ggml.tokens with
 * tokenizer.ggml.scores; pieces spell a space as U+2581, the byte pieces are <0x00> ..
 * <0xFF> at ids 3 .. 258) becomes llama2.c's tokenizer (a tokenizer.bin image built in
 * memory, spaces restored, as llama2.c's export does); "gpt2" (byte-level BPE: tokens in
 * GPT-2's byte alphabet, tokenizer.ggml.merges "a b") becomes the GPT-2 tokenizer, with
 * control tokens (token_type 3, like <|endoftext|>) as special raw text. */
static llm_status llm__ltok_parse(llm_llama_tokenizer **out, const unsigned char *d, size_t n, int vocab_size,
                                  const char *path);

/* The string array under key (n strings at *first, walked with llm__gguf_str). */
static llm_status llm__gguf_strings(const llm__gguf *g, const char *key, llm__gguf_rd *rd, size_t *n) {
    const llm__gguf_kv *kv = llm__gguf_find(g, key);
    if (!kv) return llm__err(LLM_ERR_FORMAT, "%s: no %s", g->path, key);
    if (kv->type != LLM__GGUF_ARR || kv->atype != LLM__GGUF_STR || kv->n < 1 || kv->n > (1u << 24))
        return llm__err(LLM_ERR_FORMAT, "%s: %s must be an array of 1 to 2^24 strings", g->path, key);
    rd->p = g->map.data; rd->n = g->map.len; rd->at = LLM__CAST(size_t, kv->val - g->map.data);
    *n = LLM__CAST(size_t, kv->n);
    return LLM_OK;
}
/* An optional array of n numbers under key (element type one of those allowed); NULL
 * when absent. */
static llm_status llm__gguf_numbers(const llm__gguf *g, const char *key, size_t n, uint32_t t1, uint32_t t2,
                                    const llm__gguf_kv **out) {
    const llm__gguf_kv *kv = llm__gguf_find(g, key);
    *out = NULL;
    if (!kv) return LLM_OK;
    if (kv->type != LLM__GGUF_ARR || (kv->atype != t1 && kv->atype != t2) || kv->n != n)
        return llm__err(LLM_ERR_FORMAT, "%s: %s must be an array of %zu numbers, one per token", g->path, key, n);
    *out = kv;
    return LLM_OK;
}

static llm_status llm__gguf_llama_tok(const llm__gguf *g, llm_llama_tokenizer **out) {
    llm__gguf_rd rd;
    size_t n, bytes = 4, maxlen = 1;
    const llm__gguf_kv *scores, *types;
    llm_status s;
    if ((s = llm__gguf_strings(g, "tokenizer.ggml.tokens", &rd, &n)) != LLM_OK) return s;
    if ((s = llm__gguf_numbers(g, "tokenizer.ggml.scores", n, LLM__GGUF_F32, LLM__GGUF_F32, &scores)) != LLM_OK) return s;
    if ((s = llm__gguf_numbers(g, "tokenizer.ggml.token_type", n, LLM__GGUF_I32, LLM__GGUF_U32, &types)) != LLM_OK) return s;
    (void)types;
    if (!scores) return llm__err(LLM_ERR_FORMAT, "%s: a SentencePiece vocabulary without tokenizer.ggml.scores", g->path);
    const char *ids[2] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"};
    for (int i = 0; i < 2; i++) {
        int64_t v;
        int r = llm__gguf_get_int(g, ids[i], 0, INT_MAX, &v);
        if (r < 0) return LLM__CAST(llm_status, r);
        if (r && v != i + 1)
            return llm__err(LLM_ERR_UNSUPPORTED, "%s: %s is %lld; llm.h's Llama tokenizer has BOS 1 and EOS 2", g->path, ids[i],
                            LLM__CAST(long long, v));
    }
    /* pass 1: sizes (each U+2581 "\xe2\x96\x81" becomes one space), and the byte pieces */
    llm__gguf_rd r1 = rd;
    for (size_t i = 0; i < n; i++) {
        const char *p = NULL;
        size_t l = 0, k, out_l = 0;
        if (!llm__gguf_str(&r1, &p, &l)) return llm__err(LLM_ERR_FORMAT, "%s: token %zu is cut off", g->path, i);
        for (k = 0; k < l; k++, out_l++) if (l - k >= 3 && memcmp(p + k, "\xe2\x96\x81", 3) == 0) k += 2;
        if (out_l > (1u << 20)) return llm__err(LLM_ERR_FORMAT, "%s: token %zu is %zu bytes long", g->path, i, out_l);
        if (out_l > maxlen) maxlen = out_l;
        bytes += 8 + out_l;
        if (i >= 3 && i < 259) {
            char want[8];
            snprintf(want, sizeof want, "<0x%02X>", LLM__CAST(unsigned, i - 3));
            if (l != 6 || memcmp(p, want, 6) != 0)
                return llm__err(LLM_ERR_UNSUPPORTED, "%s: token %zu is not the byte piece %s (llm.h's Llama tokenizer expects "
                                "<0x00>..<0xFF> at ids 3..258)", g->path, i, want);
        }
    }
    if (n < 259) return llm__err(LLM_ERR_UNSUPPORTED, "%s: %zu tokens: no byte pieces <0x00>..<0xFF> at ids 3..258", g->path, n);
    unsigned char *img = LLM__CAST(unsigned char *, LLM_MALLOC(bytes));
    if (!img) return llm__err(LLM_ERR_NOMEM, "%s: out of memory for the vocabulary", g->path);
    llm__wr32(img, LLM__CAST(uint32_t, maxlen));
    size_t w = 4;
    for (size_t i = 0; i < n; i++) {
        const char *p = NULL;
        size_t l = 0, o = 0;
        llm__gguf_str(&rd, &p, &l);
        memcpy(img + w, scores->val + 4 * i, 4);
        for (size_t k = 0; k < l; k++, o++) {
            int sp = l - k >= 3 && memcmp(p + k, "\xe2\x96\x81", 3) == 0;
            img[w + 8 + o] = sp ? ' ' : LLM__CAST(unsigned char, p[k]);
            if (sp) k += 2;
        }
        llm__wr32(img + w + 4, LLM__CAST(uint32_t, o));
        w += 8 + o;
    }
    s = llm__ltok_parse(out, img, bytes, LLM__CAST(int, n), g->path);
    LLM_FREE(img);
    return s;
}

static llm_status llm__gguf_gpt2_tok(const llm__gguf *g, llm_tokenizer **out) {
    llm__gguf_rd rd, mr;
    size_t n, nm;
    const llm__gguf_kv *types;
    const char *pre;
    size_t pl;
    llm_status s;
    int r = llm__gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pl);
    if (r < 0) return LLM__CAST(llm_status, r);
    if (r && !llm__gguf_streq(pre, pl, "gpt2") && !llm__gguf_streq(pre, pl, "gpt-2") && !llm__gguf_streq(pre, pl, "default"))
        return llm__err(LLM_ERR_UNSUPPORTED, "%s: BPE pre-tokenizer '%.*s' (llm.h has GPT-2's)", g->path,
                        LLM__CAST(int, pl < 40 ? pl : 40), pre);
    if ((s = llm__gguf_strings(g, "tokenizer.ggml.tokens", &rd, &n)) != LLM_OK) return s;
    if ((s = llm__gguf_strings(g, "tokenizer.ggml.merges", &mr, &nm)) != LLM_OK) return s;
    if ((s = llm__gguf_numbers(g, "tokenizer.ggml.token_type", n, LLM__GGUF_I32, LLM__GGUF_U32, &types)) != LLM_OK) return s;
    llm__vbuild vb;
    llm__mlist ml;
    signed short u2b[324];
    char *buf = NULL;
    size_t cap = 0;
    memset(&vb, 0, sizeof vb);
    memset(&ml, 0, sizeof ml);
    vb.what = g->path;
    llm__u2b_init(u2b);
    for (size_t i = 0; i < n && s == LLM_OK; i++) {
        const char *p = NULL;
        size_t l = 0;
        llm__gguf_str(&rd, &p, &l);
        int32_t type = types ? LLM__CAST(int32_t, llm__rd32(types->val + 4 * i)) : 1;
        if (type == 3 || type == 4) { s = llm__vb_add(&vb, p, l, LLM__CAST(int64_t, i), type == 3); continue; }   /* raw */
        if (l > cap) {
            char *nb2 = LLM__CAST(char *, LLM_REALLOC(buf, l + 1));
            if (!nb2) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", g->path); break; }
            buf = nb2; cap = l;
        }
        long bl = llm__unalpha(p, l, u2b, buf);
        if (bl < 0) s = llm__err(LLM_ERR_FORMAT, "%s: token %zu \"%.*s\" has a character outside GPT-2's byte alphabet", g->path, i,
                                 LLM__CAST(int, l < 40 ? l : 40), p);
        else s = llm__vb_add(&vb, buf, LLM__CAST(size_t, bl), LLM__CAST(int64_t, i), 0);
    }
    for (size_t i = 0; i < nm && s == LLM_OK; i++) {
        const char *p = NULL, *sp;
        size_t l = 0;
        llm__gguf_str(&mr, &p, &l);
        sp = LLM__CAST(const char *, l ? memchr(p, ' ', l) : NULL);
        if (!sp || sp == p || sp == p + l - 1 || memchr(sp + 1, ' ', LLM__CAST(size_t, p + l - sp - 1)))
            s = llm__err(LLM_ERR_FORMAT, "%s: merge %zu: expected \"a b\"", g->path, i);
        else s = llm__ml_add(&ml, p, LLM__CAST(size_t, sp - p), sp + 1, LLM__CAST(size_t, p + l - sp - 1), g->path);
    }
    if (s == LLM_OK) s = llm__tok_build(out, &vb, &ml, u2b);
    LLM_FREE(buf);
    llm__vbuild_free(&vb);
    LLM_FREE(ml.m);
    return s;
}

static llm_status llm__gguf_tokenizer(const llm__gguf *g, llm_tokenizer **gpt2, llm_llama_tokenizer **llama) {
    const char *model;
    size_t ml;
    int r = llm__gguf_get_str(g, "tokenizer.ggml.model", &model, &ml);
    if (r < 0) return LLM__CAST(llm_status, r);
    if (r == 0) return llm__err(LLM_ERR_FORMAT, "%s: the file holds no tokenizer (no tokenizer.ggml.model)", g->path);
    if (llm__gguf_streq(model, ml, "llama")) return llm__gguf_llama_tok(g, llama);
    if (llm__gguf_streq(model, ml, "gpt2")) return llm__gguf_gpt2_tok(g, gpt2);
    return llm__err(LLM_ERR_UNSUPPORTED, "%s: tokenizer '%.*s' (llm.h reads 'llama' and 'gpt2')", g->path,
                    LLM__CAST(int, ml < 40 ? ml : 40), model);
}
LLMDEF llm_status llm_gguf_load_tokenizer(const char *path, llm_tokenizer **gpt2, llm_llama_tokenizer **llama) {
    if (gpt2) *gpt2 = NULL;
    if (llama) *llama = NULL;
    if (!path || !gpt2 || !llama) return llm__err(LLM_ERR_ARG, "llm_gguf_load_tokenizer: NULL argument");
    llm__gguf g;
    llm_status s = llm__gguf_open(&g, path);
    if (s != LLM_OK) return s;
    s = llm__gguf_tokenizer(&g, gpt2, llama);
    llm__gguf_close(&g);
    return s;
}

//==== DATA =============================================================================
#define LLM__DATA_MAGIC 20240520
struct llm_dataset { llm__map map; const uint16_t *tokens; size_t n; };

/* Check the header of the token file in d->map and point d at its tokens. */
static llm_status llm__dataset_init(llm_dataset *d, const char *path) {
    llm_status s = LLM_OK;
    const unsigned char *p = d->map.data;
    if (d->map.len < 1024) s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for a token file header", path, d->map.len);
    else if (llm__rd32(p) != LLM__DATA_MAGIC) s = llm__err(LLM_ERR_FORMAT, "%s: bad magic %u (token files have %d)", path, llm__rd32(p), LLM__DATA_MAGIC);
    else if (llm__rd32(p + 4) != 1) s = llm__err(LLM_ERR_UNSUPPORTED, "%s: token file version %u (1 is supported)", path, llm__rd32(p + 4));
    else {
        uint64_t n = llm__rd32(p + 8);
        if (LLM__CAST(int32_t, llm__rd32(p + 8)) < 0)
            s = llm__err(LLM_ERR_FORMAT, "%s: negative token count %d in the header", path, LLM__CAST(int32_t, llm__rd32(p + 8)));
        else if (n > (d->map.len - 1024) / 2)
            s = llm__err(LLM_ERR_FORMAT, "%s: header says %llu tokens but the file holds %zu (truncated?)", path,
                         LLM__CAST(unsigned long long, n), (d->map.len - 1024) / 2);
        d->n = LLM__CAST(size_t, n);
        d->tokens = LLM__CAST(const uint16_t *, LLM__CAST(const void *, p + 1024));   /* 1024 keeps it aligned */
    }
    return s;
}
LLMDEF llm_status llm_dataset_open(llm_dataset **out, const char *path) {
    if (!out || !path) return llm__err(LLM_ERR_ARG, "llm_dataset_open: NULL argument");
    *out = NULL;
    llm_dataset *d = LLM__CAST(llm_dataset *, llm__calloc(1, sizeof *d));
    if (!d) return llm__err(LLM_ERR_NOMEM, "dataset: out of memory");
    llm_status s = llm__map_open(&d->map, path);
    if (s != LLM_OK) { LLM_FREE(d); return s; }
    if ((s = llm__dataset_init(d, path)) != LLM_OK) { llm_dataset_close(d); return s; }
    *out = d;
    return LLM_OK;
}
LLMDEF llm_status llm_dataset_open_memory(llm_dataset **out, const void *data, size_t len) {
    if (!out || (!data && len)) return llm__err(LLM_ERR_ARG, "llm_dataset_open_memory: NULL argument");
    *out = NULL;
    if (LLM__CAST(uintptr_t, data) % 2) return llm__err(LLM_ERR_ARG, "llm_dataset_open_memory: data must be 2-byte aligned");
    llm_dataset *d = LLM__CAST(llm_dataset *, llm__calloc(1, sizeof *d));
    if (!d) return llm__err(LLM_ERR_NOMEM, "dataset: out of memory");
    llm__map_memory(&d->map, data, len);
    llm_status s = llm__dataset_init(d, "(memory)");
    if (s != LLM_OK) { llm_dataset_close(d); return s; }
    *out = d;
    return LLM_OK;
}
LLMDEF void llm_dataset_close(llm_dataset *d) {
    if (!d) return;
    llm__map_close(&d->map);
    LLM_FREE(d);
}
LLMDEF size_t llm_dataset_len(const llm_dataset *d) { return d->n; }
LLMDEF const uint16_t *llm_dataset_tokens(const llm_dataset *d) { return d->tokens; }

LLMDEF llm_status llm_dataset_write(const char *path, const int *tokens, size_t n) {
    if (n > 0x7FFFFFFFu) return llm__err(LLM_ERR_ARG, "dataset_write: %zu tokens do not fit the header's int32 count", n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] > 65535) return llm__err(LLM_ERR_ARG, "dataset_write: token %zu = %d does not fit uint16", i, tokens[i]);
    unsigned char hdr[1024];
    memset(hdr, 0, sizeof hdr);
    llm__wr32(hdr + 4, 1); llm__wr32(hdr + 8, LLM__CAST(uint32_t, n));
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) return s;
    llm__wr32(w.head, LLM__DATA_MAGIC);   /* written last: see llm__wfile */
    w.nhead = 4;
    llm__wbytes(&w, hdr, sizeof hdr);
    unsigned char buf[8192];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 2 && i < n; k++, i++) { buf[2 * k] = LLM__CAST(unsigned char, tokens[i]); buf[2 * k + 1] = LLM__CAST(unsigned char, tokens[i] >> 8); }
        llm__wbytes(&w, buf, 2 * k);
    }
    return llm__wclose(&w);
}

LLMDEF llm_status llm_dataset_from_tokens(llm_dataset **out, const int *tokens, size_t n) {
    if (!out || (!tokens && n)) return llm__err(LLM_ERR_ARG, "dataset_from_tokens: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] > 65535) return llm__err(LLM_ERR_ARG, "dataset_from_tokens: token %zu = %d does not fit uint16", i, tokens[i]);
    llm_dataset *d = LLM__CAST(llm_dataset *, llm__calloc(1, sizeof *d));
    uint16_t *t = LLM__CAST(uint16_t *, LLM_MALLOC((n ? n : 1) * sizeof(uint16_t)));
    if (!d || !t) { LLM_FREE(d); LLM_FREE(t); return llm__err(LLM_ERR_NOMEM, "dataset_from_tokens: out of memory for %zu tokens", n); }
    for (size_t i = 0; i < n; i++) t[i] = LLM__CAST(uint16_t, tokens[i]);
    d->map.heap = t;   /* freed by llm__map_close, as a file read into memory */
    d->map.data = LLM__CAST(const unsigned char *, LLM__CAST(void *, t));
    d->map.len = n * sizeof(uint16_t);
    d->tokens = t;
    d->n = n;
    *out = d;
    return LLM_OK;
}

/* Fisher-Yates over the windows, from the loader's RNG. */
static void llm__loader_shuffle(llm_loader *l) {
    llm_rng r;
    r.s[0] = l->rng[0]; r.s[1] = l->rng[1];
    for (size_t i = 0; i < l->n_windows; i++) l->perm[i] = LLM__CAST(uint32_t, i);
    if (!l->shuffle) return;
    for (size_t i = l->n_windows; i > 1; i--) {
        size_t j = LLM__CAST(size_t, llm_rng_u64(&r) % i);
        uint32_t tmp = l->perm[i - 1]; l->perm[i - 1] = l->perm[j]; l->perm[j] = tmp;
    }
}

LLMDEF llm_status llm_loader_init(llm_loader *l, const llm_dataset *d, size_t begin, size_t end, int B, int T,
                                  int shuffle, uint64_t seed) {
    memset(l, 0, sizeof *l);
    if (!d || B <= 0 || T <= 0) return llm__err(LLM_ERR_ARG, "loader: needs a dataset and positive B, T");
    if (end == 0) end = d->n;
    if (begin >= end || end > d->n) return llm__err(LLM_ERR_ARG, "loader: range [%zu, %zu) is not inside the %zu tokens", begin, end, d->n);
    l->data = d; l->begin = begin; l->end = end; l->B = B; l->T = T; l->shuffle = shuffle;
    l->n_windows = (end - begin - 1) / LLM__CAST(size_t, T);
    l->n_batches = l->n_windows / LLM__CAST(size_t, B);
    if (l->n_batches == 0)
        return llm__err(LLM_ERR_ARG, "loader: %zu tokens are too few for one batch of B=%d T=%d", end - begin, B, T);
    if (l->n_windows > 0xFFFFFFFFu) return llm__err(LLM_ERR_ARG, "loader: too many windows");
    l->perm = LLM__CAST(uint32_t *, LLM_MALLOC(l->n_windows * sizeof(uint32_t)));
    if (!l->perm) return llm__err(LLM_ERR_NOMEM, "loader: out of memory");
    llm_rng r;
    llm_rng_seed(&r, seed);
    l->rng[0] = r.s[0]; l->rng[1] = r.s[1];
    llm__loader_shuffle(l);
    return LLM_OK;
}
LLMDEF void llm_loader_free(llm_loader *l) { if (l) { LLM_FREE(l->perm); l->perm = NULL; } }
LLMDEF void llm_loader_reset(llm_loader *l) { l->cursor = 0; }

LLMDEF llm_status llm_loader_next(llm_loader *l, int *inputs, int *targets) {
    if (!l->perm) return llm__err(LLM_ERR_STATE, "loader: not initialised");
    if (l->cursor >= l->n_batches) {   /* new epoch: the next permutation continues the stream */
        llm_rng r;
        r.s[0] = l->rng[0]; r.s[1] = l->rng[1];
        for (size_t i = l->n_windows; i > 1; i--) (void)llm_rng_u64(&r);
        l->rng[0] = r.s[0]; l->rng[1] = r.s[1];
        l->epoch++;
        l->cursor = 0;
        llm__loader_shuffle(l);
    }
    const uint16_t *tok = l->data->tokens + l->begin;
    size_t T = LLM__CAST(size_t, l->T);
    for (int b = 0; b < l->B; b++) {
        const uint16_t *w = tok + LLM__CAST(size_t, l->perm[l->cursor * LLM__CAST(size_t, l->B) + b]) * T;
        for (size_t t = 0; t < T; t++) {
            inputs[b * T + t] = w[t];
            if (targets) targets[b * T + t] = w[t + 1];
        }
    }
    l->cursor++;
    return LLM_OK;
}
LLMDEF void llm_loader_get_state(const llm_loader *l, llm_train_state *ts) {
    ts->rng[0] = l->rng[0]; ts->rng[1] = l->rng[1];
    ts->cursor = l->cursor; ts->epoch = l->epoch;
}
LLMDEF llm_status llm_loader_set_state(llm_loader *l, const llm_train_state *ts) {
    if (!l->perm) return llm__err(LLM_ERR_STATE, "loader: not initialised");
    if (ts->cursor > l->n_batches) return llm__err(LLM_ERR_ARG, "loader: saved position %llu is past the %zu batches of an epoch",
                                                   LLM__CAST(unsigned long long, ts->cursor), l->n_batches);
    l->rng[0] = ts->rng[0]; l->rng[1] = ts->rng[1];
    l->cursor = LLM__CAST(size_t, ts->cursor); l->epoch = ts->epoch;
    llm__loader_shuffle(l);
    return LLM_OK;
}

/* Perplexity exp(mean loss): the number of equally likely tokens the model is, on
 * average, as unsure between as it is about the next token of this text. The mean is
 * over tokens (each batch's mean weighted by its valid targets), in double. Dropout is
 * off for the evaluation and the training mode restored after. */
LLMDEF llm_status llm_model_eval(llm_model *m, llm_loader *l, int n_batches, float *loss, float *ppl) {
    if (!m || !l) return llm__err(LLM_ERR_ARG, "eval: NULL argument");
    size_t BT = LLM__CAST(size_t, l->B) * LLM__CAST(size_t, l->T);
    int *buf = LLM__CAST(int *, LLM_MALLOC(2 * BT * sizeof(int)));
    if (!buf) return llm__err(LLM_ERR_NOMEM, "eval: out of memory");
    double sum = 0;
    size_t count = 0;
    int training = m->training;
    m->training = 0;
    llm_status s = LLM_OK;
    for (int i = 0; i < n_batches && s == LLM_OK; i++) {
        float li = 0;
        if ((s = llm_loader_next(l, buf, buf + BT)) == LLM_OK && (s = llm_model_forward(m, buf, buf + BT, l->B, l->T, &li)) == LLM_OK) {
            sum += LLM__CAST(double, li) * m->n_valid;
            count += LLM__CAST(size_t, m->n_valid);
        }
    }
    m->training = training;
    LLM_FREE(buf);
    double mean = count ? sum / LLM__CAST(double, count) : 0.0;
    if (loss) *loss = LLM__CAST(float, mean);
    if (ppl) *ppl = LLM__CAST(float, exp(mean));
    return s;
}

//==== LLAMATOK =========================================================================
/* llama2.c's SentencePiece-style tokenizer. The file is a list of (score, piece); the
 * pieces are looked up through an open-addressing hash table built at load time, so
 * encoding needs no sorted copy and the tokenizer stays read-only (thread-safe).
 *
 * Encoding is run.c's encode(): code points first, then BPE-like merges where the pair
 * to merge next is the adjacent pair whose concatenation is a piece with the highest
 * score, the leftmost on ties. run.c rescans all pairs after each merge (O(n^2)); here
 * every candidate pair sits in a binary heap ordered by (score desc, position asc) and
 * stale entries are skipped when popped, which picks exactly the same pair each step
 * in O(n log n). Known differences from run.c, all where run.c misbehaves: pieces are
 * compared as byte strings with lengths (run.c's strcmp stops at a NUL inside a piece),
 * text may contain NUL bytes (run.c stops at the first), duplicate pieces resolve to the
 * lowest id (run.c's bsearch picks any), and a vocabulary without " " falls back to the
 * byte token for the dummy prefix (run.c emits id -1). */
struct llm_llama_tokenizer {
    int V;                  /* tokens */
    int max_token_length;   /* from the header; every piece is at most this long */
    float *scores;          /* (V) merge scores: the higher, the earlier the merge */
    size_t *off;            /* (V+1) piece i is text[off[i] .. off[i+1]-1), then a NUL */
    char *text;             /* all pieces, each followed by a NUL */
    int *slots;             /* (nslots) hash table: a token id, or -1 for empty */
    size_t nslots;          /* a power of two >= 2V */
    char bytes[512];        /* "<0xXX>" decoded: byte b at bytes[2b], a NUL at bytes[2b+1] */
};

/* The merge threshold of run.c: its best score starts at -1e10, so a pair whose score
 * is not above that never merges. */
#define LLM__LTOK_MIN_SCORE (-1e10f)

static int32_t llm__ltok_i32(const unsigned char *p) {
    uint32_t u = LLM__CAST(uint32_t, p[0]) | LLM__CAST(uint32_t, p[1]) << 8 |
                 LLM__CAST(uint32_t, p[2]) << 16 | LLM__CAST(uint32_t, p[3]) << 24;
    int32_t v;
    memcpy(&v, &u, 4);  /* the file is little-endian, as the machines llama2.c runs on */
    return v;
}
static float llm__ltok_f32(const unsigned char *p) {
    int32_t i = llm__ltok_i32(p);
    float f;
    memcpy(&f, &i, 4);
    return f;
}

/* FNV-1a, fed in pieces so that a pair can be hashed without concatenating it. */
#define LLM__LTOK_FNV0 0xcbf29ce484222325ULL
static uint64_t llm__ltok_fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= LLM__CAST(unsigned char, s[i]); h *= 0x100000001b3ULL; }
    return h;
}

/* The id of the piece a||b (b may be empty), or -1. */
static int llm__ltok_find(const llm_llama_tokenizer *t, const char *a, size_t na, const char *b,
                          size_t nb) {
    size_t mask = t->nslots - 1;
    size_t i = LLM__CAST(size_t, llm__ltok_fnv(llm__ltok_fnv(LLM__LTOK_FNV0, a, na), b, nb)) & mask;
    for (;; i = (i + 1) & mask) {
        int id = t->slots[i];
        if (id < 0) return -1;
        const char *p = t->text + t->off[id];
        size_t n = t->off[id + 1] - t->off[id] - 1;
        if (n == na + nb && memcmp(p, a, na) == 0 && (nb == 0 || memcmp(p + na, b, nb) == 0))
            return id;
    }
}

LLMDEF void llm_llama_tokenizer_free(llm_llama_tokenizer *t) {
    if (!t) return;
    LLM_FREE(t->scores); LLM_FREE(t->off); LLM_FREE(t->text); LLM_FREE(t->slots);
    LLM_FREE(t);
}

/* Walk the records of a tokenizer.bin image d[0, n) once to count tokens and bytes,
 * checking every length against what is left; then copy them out and build the hash
 * table. path names the source in messages (a GGUF file builds its image in memory). */
static llm_status llm__ltok_parse(llm_llama_tokenizer **out, const unsigned char *d, size_t n, int vocab_size,
                                  const char *path) {
    if (n < 4) {
        return llm__err(LLM_ERR_FORMAT, "%s: %lu bytes, too short for the int32 max_token_length",
                        path, LLM__CAST(unsigned long, n));
    }
    int32_t mtl = llm__ltok_i32(d);
    if (mtl < 1) {
        return llm__err(LLM_ERR_FORMAT, "%s: max_token_length %d < 1 (not a llama2.c tokenizer.bin?)",
                        path, mtl);
    }
    /* pass 1: count and validate */
    size_t pos = 4, text_bytes = 0;
    int count = 0;
    while (pos < n && (vocab_size == 0 || count < vocab_size)) {
        if (n - pos < 8) {
            return llm__err(LLM_ERR_FORMAT, "%s: truncated: token %d has %lu of its 8 header bytes",
                            path, count, LLM__CAST(unsigned long, n - pos));
        }
        int32_t len = llm__ltok_i32(d + pos + 4);
        if (len < 0 || len > mtl) {
            return llm__err(LLM_ERR_FORMAT, "%s: token %d has length %d, outside [0, max_token_length %d]",
                            path, count, len, mtl);
        }
        if (LLM__CAST(size_t, len) > n - pos - 8) {
            return llm__err(LLM_ERR_FORMAT, "%s: truncated: token %d needs %d bytes, %lu left",
                            path, count, len, LLM__CAST(unsigned long, n - pos - 8));
        }
        pos += 8 + LLM__CAST(size_t, len);
        text_bytes += LLM__CAST(size_t, len) + 1;
        if (count == INT_MAX / 4) {
            return llm__err(LLM_ERR_FORMAT, "%s: too many tokens", path);
        }
        count++;
    }
    if (vocab_size > 0 && count < vocab_size) {
        return llm__err(LLM_ERR_FORMAT, "%s: holds %d tokens, expected vocab_size %d (truncated, or "
                        "a tokenizer for another model)", path, count, vocab_size);
    }
    if (pos < n) {
        return llm__err(LLM_ERR_FORMAT, "%s: %lu bytes follow token %d: more tokens than vocab_size "
                        "%d (a tokenizer for another model?)", path, LLM__CAST(unsigned long, n - pos),
                        count - 1, vocab_size);
    }
    if (count < 3) {
        return llm__err(LLM_ERR_FORMAT, "%s: %d tokens; a Llama vocabulary has at least <unk>, BOS, EOS",
                        path, count);
    }
    /* pass 2: copy */
    llm_llama_tokenizer *t = LLM__CAST(llm_llama_tokenizer *, llm__calloc(1, sizeof *t));
    size_t nslots = 16;
    while (nslots < 2 * LLM__CAST(size_t, count)) nslots *= 2;
    if (t) {
        t->V = count;
        t->max_token_length = mtl;
        t->nslots = nslots;
        t->scores = LLM__CAST(float *, llm__calloc(LLM__CAST(size_t, count), sizeof(float)));
        t->off = LLM__CAST(size_t *, llm__calloc(LLM__CAST(size_t, count) + 1, sizeof(size_t)));
        t->text = LLM__CAST(char *, llm__calloc(text_bytes, 1));
        t->slots = LLM__CAST(int *, llm__calloc(nslots, sizeof(int)));
    }
    if (!t || !t->scores || !t->off || !t->text || !t->slots) {
        llm_llama_tokenizer_free(t);
        return llm__err(LLM_ERR_NOMEM, "%s: out of memory for %d tokens", path, count);
    }
    pos = 4;
    size_t w = 0;
    for (int i = 0; i < count; i++) {
        size_t len = LLM__CAST(size_t, llm__ltok_i32(d + pos + 4));
        t->scores[i] = llm__ltok_f32(d + pos);
        t->off[i] = w;
        memcpy(t->text + w, d + pos + 8, len);
        t->text[w + len] = 0;
        w += len + 1;
        pos += 8 + len;
    }
    t->off[count] = w;
    for (size_t i = 0; i < nslots; i++) t->slots[i] = -1;
    for (int i = 0; i < count; i++) {
        const char *p = t->text + t->off[i];
        size_t len = t->off[i + 1] - t->off[i] - 1;
        if (llm__ltok_find(t, p, len, "", 0) >= 0) continue;  /* duplicate: the first id wins */
        size_t j = LLM__CAST(size_t, llm__ltok_fnv(LLM__LTOK_FNV0, p, len)) & (nslots - 1);
        while (t->slots[j] >= 0) j = (j + 1) & (nslots - 1);
        t->slots[j] = i;
    }
    for (int b = 0; b < 256; b++) { t->bytes[2 * b] = LLM__CAST(char, b); t->bytes[2 * b + 1] = 0; }
    *out = t;
    return LLM_OK;
}

LLMDEF llm_status llm_llama_tokenizer_load(llm_llama_tokenizer **out, const char *path,
                                           int vocab_size) {
    if (!out) return llm__err(LLM_ERR_ARG, "llama tokenizer: out is NULL");
    *out = NULL;
    if (!path) return llm__err(LLM_ERR_ARG, "llama tokenizer: path is NULL");
    if (vocab_size < 0) return llm__err(LLM_ERR_ARG, "%s: vocab_size %d < 0", path, vocab_size);
    char *data;
    size_t n;
    llm_status s = llm__read_file(path, &data, &n);
    if (s != LLM_OK) return s;
    s = llm__ltok_parse(out, LLM__CAST(const unsigned char *, LLM__CAST(const void *, data)), n, vocab_size, path);
    LLM_FREE(data);
    return s;
}
LLMDEF llm_status llm_llama_tokenizer_load_memory(llm_llama_tokenizer **out, const void *data, size_t len,
                                                  int vocab_size) {
    if (!out) return llm__err(LLM_ERR_ARG, "llama tokenizer: out is NULL");
    *out = NULL;
    if (!data && len) return llm__err(LLM_ERR_ARG, "llama tokenizer: data is NULL");
    if (vocab_size < 0) return llm__err(LLM_ERR_ARG, "(memory): vocab_size %d < 0", vocab_size);
    return llm__ltok_parse(out, LLM__CAST(const unsigned char *, data), len, vocab_size, "(memory)");
}

LLMDEF int llm_llama_tokenizer_vocab_size(const llm_llama_tokenizer *t) { return t ? t->V : 0; }

LLMDEF const char *llm_llama_tokenizer_piece(const llm_llama_tokenizer *t, int id, size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V) return NULL;
    if (len) *len = t->off[id + 1] - t->off[id] - 1;
    return t->text + t->off[id];
}

LLMDEF float llm_llama_tokenizer_score(const llm_llama_tokenizer *t, int id) {
    return (!t || id < 0 || id >= t->V) ? 0.0f : t->scores[id];
}

/* A candidate merge of the adjacent symbols at positions left and right (indices into
 * the initial token list; a merged symbol keeps its left position, so positions keep
 * the text order). ver_* are the positions' versions when it was pushed: a change at
 * either position makes the entry stale. */
typedef struct llm__ltok_pair {
    float score;
    int left, right, id;
    unsigned ver_left, ver_right;
} llm__ltok_pair;

/* Heap order: higher score first; on equal scores the leftmost pair (run.c's strict
 * `>` keeps the first best it scans). */
static int llm__ltok_before(const llm__ltok_pair *a, const llm__ltok_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct llm__ltok_work {
    int *tok;               /* (n) token at each position */
    int *next, *prev;       /* (n) linked list of live positions; -1 at the ends */
    unsigned *ver;          /* (n) bumped whenever tok[i] changes or position i dies */
    llm__ltok_pair *heap;   /* binary max-heap in llm__ltok_before order */
    size_t nheap, capheap;
} llm__ltok_work;

/* Push the pair (left, right) if its concatenation is a piece that may merge. */
static int llm__ltok_push(const llm_llama_tokenizer *t, llm__ltok_work *w, int left, int right) {
    int a = w->tok[left], b = w->tok[right];
    int id = llm__ltok_find(t, t->text + t->off[a], t->off[a + 1] - t->off[a] - 1,
                            t->text + t->off[b], t->off[b + 1] - t->off[b] - 1);
    if (id < 0 || !(t->scores[id] > LLM__LTOK_MIN_SCORE)) return 1;  /* NaN never merges */
    if (w->nheap == w->capheap) {
        size_t cap = w->capheap * 2 + 16;
        llm__ltok_pair *h = LLM__CAST(llm__ltok_pair *, LLM_REALLOC(w->heap, cap * sizeof *h));
        if (!h) return 0;
        w->heap = h; w->capheap = cap;
    }
    llm__ltok_pair e;
    e.score = t->scores[id]; e.left = left; e.right = right; e.id = id;
    e.ver_left = w->ver[left]; e.ver_right = w->ver[right];
    size_t i = w->nheap++;
    while (i > 0 && llm__ltok_before(&e, &w->heap[(i - 1) / 2])) {   /* sift up */
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = e;
    return 1;
}

static llm__ltok_pair llm__ltok_pop(llm__ltok_work *w) {
    llm__ltok_pair top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {                                                        /* sift down */
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && llm__ltok_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!llm__ltok_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static const unsigned char llm__ltok_space[1] = {' '};

/* The byte-fallback ids of buf[0, n): byte + 3 (ids 3..258 are <0x00>..<0xFF>). */
static llm_status llm__ltok_bytes(const llm_llama_tokenizer *t, const unsigned char *buf, size_t n,
                                  int *tok, int *m) {
    for (size_t i = 0; i < n; i++) {
        int id = buf[i] + 3;
        if (id >= t->V)
            return llm__err(LLM_ERR_ARG, "llama tokenizer: byte 0x%02X is not in the vocabulary and "
                            "byte fallback needs id %d, but the vocabulary has %d tokens", buf[i], id, t->V);
        tok[(*m)++] = id;
    }
    return LLM_OK;
}

LLMDEF llm_status llm_llama_tokenizer_encode(const llm_llama_tokenizer *t, const char *text,
                                             size_t len, int bos, int eos, int *ids,
                                             int max_ids, int *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || !n_ids || (!text && len > 0) || (!ids && max_ids > 0) || max_ids < 0)
        return llm__err(LLM_ERR_ARG, "llama tokenizer encode: NULL argument or max_ids < 0");
    if (len > LLM__CAST(size_t, INT_MAX / 4) - 3)
        return llm__err(LLM_ERR_ARG, "llama tokenizer encode: text of %lu bytes is too long",
                        LLM__CAST(unsigned long, len));
    int cap = LLM__CAST(int, len) + 3, m = 0;   /* BOS + dummy prefix + one per byte + EOS */
    llm__ltok_work w;
    memset(&w, 0, sizeof w);
    w.tok = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.next = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.prev = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.ver = LLM__CAST(unsigned *, llm__calloc(LLM__CAST(size_t, cap), sizeof(unsigned)));
    llm_status s = LLM_OK;
    if (!w.tok || !w.next || !w.prev || !w.ver) {
        s = llm__err(LLM_ERR_NOMEM, "llama tokenizer encode: out of memory for %d tokens", cap);
        goto done;
    }
    /* 1. BOS, the dummy prefix " " (SentencePiece's add_dummy_prefix), then one token per
     *    code point. As run.c: a lead byte starts a new code point, continuation bytes
     *    (10xxxxxx) join it up to 4 bytes in all; no other UTF-8 validation. */
    if (bos) w.tok[m++] = LLM_LLAMA_BOS;
    if (len > 0) {
        int sp = llm__ltok_find(t, " ", 1, "", 0);
        if (sp >= 0) w.tok[m++] = sp;
        else if ((s = llm__ltok_bytes(t, llm__ltok_space, 1, w.tok, &m)) != LLM_OK) goto done;
    }
    {
        const unsigned char *u = LLM__CAST(const unsigned char *, LLM__CAST(const void *, text));
        unsigned char buf[4];
        size_t nb = 0;
        for (size_t i = 0; i < len; i++) {
            if ((u[i] & 0xC0) != 0x80) nb = 0;
            buf[nb++] = u[i];
            if (i + 1 < len && (u[i + 1] & 0xC0) == 0x80 && nb < 4) continue;
            int id = llm__ltok_find(t, LLM__CAST(const char *, LLM__CAST(const void *, buf)), nb, "", 0);
            if (id >= 0) w.tok[m++] = id;
            else if ((s = llm__ltok_bytes(t, buf, nb, w.tok, &m)) != LLM_OK) goto done;
            nb = 0;
        }
    }
    /* 2. Merges. Reference (run.c): repeat { scan all adjacent pairs, take the best by
     *    (score, leftmost); replace it by the merged piece } until no pair is a piece.
     *    Here: the same choice from a heap of candidates; after merging (l, r) into l,
     *    only the pairs (prev(l), l) and (l, next(l)) are new. */
    for (int i = 0; i < m; i++) { w.next[i] = i + 1 < m ? i + 1 : -1; w.prev[i] = i - 1; }
    for (int i = 0; i + 1 < m; i++)
        if (!llm__ltok_push(t, &w, i, i + 1)) goto nomem;
    while (w.nheap > 0) {
        llm__ltok_pair e = llm__ltok_pop(&w);
        if (w.ver[e.left] != e.ver_left || w.ver[e.right] != e.ver_right) continue;  /* stale */
        int l = e.left, r = e.right;
        w.tok[l] = e.id; w.ver[l]++;
        w.ver[r]++;                                /* r dies: unlink it */
        w.next[l] = w.next[r];
        if (w.next[r] >= 0) w.prev[w.next[r]] = l;
        if (w.prev[l] >= 0 && !llm__ltok_push(t, &w, w.prev[l], l)) goto nomem;
        if (w.next[l] >= 0 && !llm__ltok_push(t, &w, l, w.next[l])) goto nomem;
    }
    /* 3. Collect the live positions, then EOS. */
    {
        int n = 0;
        for (int i = m > 0 ? 0 : -1; i >= 0; i = w.next[i]) n++;
        if (eos) n++;
        *n_ids = n;
        if (n > max_ids) {
            s = llm__err(LLM_ERR_ARG, "llama tokenizer encode: %d ids do not fit in max_ids %d", n, max_ids);
            goto done;
        }
        n = 0;
        for (int i = m > 0 ? 0 : -1; i >= 0; i = w.next[i]) ids[n++] = w.tok[i];
        if (eos) ids[n++] = LLM_LLAMA_EOS;
    }
    goto done;
nomem:
    s = llm__err(LLM_ERR_NOMEM, "llama tokenizer encode: out of memory");
done:
    LLM_FREE(w.tok); LLM_FREE(w.next); LLM_FREE(w.prev); LLM_FREE(w.ver); LLM_FREE(w.heap);
    return s;
}

static int llm__ltok_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

LLMDEF const char *llm_llama_tokenizer_decode(const llm_llama_tokenizer *t, int prev_id, int id,
                                              size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V) {
        llm__err(LLM_ERR_ARG, "llama tokenizer decode: id %d outside [0, %d)", id, t ? t->V : 0);
        return NULL;
    }
    const char *p = t->text + t->off[id];
    size_t n = t->off[id + 1] - t->off[id] - 1;
    /* after BOS the dummy-prefix space that encode added is not part of the text */
    if (prev_id == LLM_LLAMA_BOS && n > 0 && p[0] == ' ') { p++; n--; }
    /* "<0xXX>" is the raw byte XX (run.c: sscanf "<0x%02hhX>"; here exactly 2 hex digits) */
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' &&
        llm__ltok_hex(p[3]) >= 0 && llm__ltok_hex(p[4]) >= 0) {
        int b = llm__ltok_hex(p[3]) * 16 + llm__ltok_hex(p[4]);
        p = t->bytes + 2 * b;
        n = 1;
    }
    if (len) *len = n;
    return p;
}

//==== SAMPLE ===========================================================================
/* Choosing the next token: repetition penalty, temperature, top-k, top-p, one draw.
 * The temperature + top-p path is llama2.c's run.c sample(), float for float, so that
 * its seeded outputs are reproduced exactly (checked: stories260K at -t 1.0 -p 0.9
 * -s 133742 gives run.c's text). It departs from run.c only where run.c fails: when
 * rounding leaves the draw above the total cdf run.c returns id V-1 even if its p is 0
 * (here: the last id with p > 0); when run.c's nucleus pre-filter keeps no token it
 * reads out of bounds (here: every token is a candidate); seed 0, which run.c replaces
 * by the time, is a fixed constant here. */
typedef struct llm__cand { float p; int id; } llm__cand;   /* run.c's ProbIndex */

struct llm_sampler {
    llm_sampler_config cfg;
    int V;
    uint64_t rng;           /* xorshift64* state */
    float *x;               /* (V) working copy: logits, then probabilities */
    llm__cand *cand;        /* (V) candidates for top-k / top-p */
    llm__cand *sorted;      /* (V) the nucleus, sorted */
    unsigned char *seen;    /* (V) marks, so a repeated id is penalised once */
};

/* run.c's RNG: xorshift64* (Marsaglia's shifts 12, 25, 27; Vigna's multiplier), the
 * high 32 bits; a float in [0, 1) from its top 24 bits. */
static uint32_t llm__xorshift_u32(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return LLM__CAST(uint32_t, (*s * 0x2545F4914F6CDD1DULL) >> 32);
}
static float llm__xorshift_f32(uint64_t *s) {
    return LLM__CAST(float, llm__xorshift_u32(s) >> 8) / 16777216.0f;
}

LLMDEF llm_sampler_config llm_sampler_config_default(void) {
    llm_sampler_config c;
    memset(&c, 0, sizeof c);
    return c;
}

LLMDEF void llm_sampler_reseed(llm_sampler *s, uint64_t seed) {
    if (s) s->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;  /* 2^64 / golden ratio */
}

LLMDEF void llm_sampler_free(llm_sampler *s) {
    if (!s) return;
    LLM_FREE(s->x); LLM_FREE(s->cand); LLM_FREE(s->sorted); LLM_FREE(s->seen);
    LLM_FREE(s);
}

LLMDEF llm_status llm_sampler_create(llm_sampler **out, int vocab_size,
                                     const llm_sampler_config *cfg) {
    if (!out) return llm__err(LLM_ERR_ARG, "sampler: out is NULL");
    *out = NULL;
    llm_sampler_config c = cfg ? *cfg : llm_sampler_config_default();
    if (vocab_size < 1) return llm__err(LLM_ERR_ARG, "sampler: vocab_size %d < 1", vocab_size);
    if (!(c.temperature >= 0) || c.temperature == INFINITY)
        return llm__err(LLM_ERR_ARG, "sampler: temperature %g must be finite and >= 0", c.temperature);
    if (!(c.repetition_penalty >= 0) || c.repetition_penalty == INFINITY)
        return llm__err(LLM_ERR_ARG, "sampler: repetition_penalty %g must be finite and >= 0 "
                        "(0 or 1: off)", c.repetition_penalty);
    if (c.top_p != c.top_p) return llm__err(LLM_ERR_ARG, "sampler: top_p is NaN");
    llm_sampler *s = LLM__CAST(llm_sampler *, llm__calloc(1, sizeof *s));
    if (s) {
        s->x = LLM__CAST(float *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(float)));
        s->cand = LLM__CAST(llm__cand *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(llm__cand)));
        s->sorted = LLM__CAST(llm__cand *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(llm__cand)));
        s->seen = LLM__CAST(unsigned char *, llm__calloc(LLM__CAST(size_t, vocab_size), 1));
    }
    if (!s || !s->x || !s->cand || !s->sorted || !s->seen) {
        llm_sampler_free(s);
        return llm__err(LLM_ERR_NOMEM, "sampler: out of memory for vocab_size %d", vocab_size);
    }
    s->cfg = c;
    s->V = vocab_size;
    llm_sampler_reseed(s, c.seed);
    *out = s;
    return LLM_OK;
}

/* Candidate order: descending p, then ascending id. A total order, so any sort gives
 * the same result on every platform. */
static int llm__cand_before(const llm__cand *a, const llm__cand *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}
static int llm__cand_cmp(const void *a, const void *b) {
    const llm__cand *x = LLM__CAST(const llm__cand *, a), *y = LLM__CAST(const llm__cand *, b);
    return llm__cand_before(x, y) ? -1 : llm__cand_before(y, x) ? 1 : 0;
}

/* The first maximum (torch.argmax's choice). */
static int llm__sample_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* Top-k selection in O(V log k): a min-heap of the k best so far (root = the worst of
 * them), then sorted. Reference: sort all V candidates and keep the first k. */
static void llm__topk(const float *p, int V, int k, llm__cand *h) {
    int n = 0;
    for (int i = 0; i < V; i++) {
        llm__cand c;
        c.p = p[i]; c.id = i;
        int j;
        if (n < k) {                        /* sift up: parents must not come before children */
            j = n++;
            while (j > 0 && llm__cand_before(&h[(j - 1) / 2], &c)) { h[j] = h[(j - 1) / 2]; j = (j - 1) / 2; }
        } else if (llm__cand_before(&c, &h[0])) {
            j = 0;                          /* replace the worst, sift down */
            for (;;) {
                int ch = 2 * j + 1;
                if (ch >= k) break;
                if (ch + 1 < k && llm__cand_before(&h[ch], &h[ch + 1])) ch++;  /* the worse child */
                if (!llm__cand_before(&c, &h[ch])) break;
                h[j] = h[ch];
                j = ch;
            }
        } else {
            continue;
        }
        h[j] = c;
    }
    qsort(h, LLM__CAST(size_t, k), sizeof *h, llm__cand_cmp);
}

/* Max-heap of candidates in llm__cand_before order: restore it below position i. */
static void llm__cand_sift(llm__cand *h, int n, int i) {
    llm__cand e = h[i];
    for (;;) {
        int ch = 2 * i + 1;
        if (ch >= n) break;
        if (ch + 1 < n && llm__cand_before(&h[ch + 1], &h[ch])) ch++;
        if (!llm__cand_before(&h[ch], &e)) break;
        h[i] = h[ch];
        i = ch;
    }
    h[i] = e;
}

/* The sorted prefix of c[0, n) that the nucleus needs: out[0, m) holds the candidates in
 * descending order up to and including the first whose cumulative p exceeds top_p (all
 * n if none does); returns m. Reference: qsort all n, as run.c does; popping a heap
 * (O(n + m log n)) yields the same prefix, since the order is total, and is several
 * times faster for a 32000-50000 token vocabulary where the nucleus is small. c is
 * destroyed. */
static int llm__nucleus(llm__cand *c, int n, float top_p, llm__cand *out) {
    for (int i = n / 2 - 1; i >= 0; i--) llm__cand_sift(c, n, i);
    float cum = 0.0f;
    int m = 0;
    while (n > 0) {
        out[m] = c[0];
        cum += out[m++].p;
        if (cum > top_p) break;
        c[0] = c[--n];
        if (n > 0) llm__cand_sift(c, n, 0);
    }
    return m;
}

/* The end of run.c's sample_topp(): c[0, n) sorted by descending p; the nucleus is the
 * shortest prefix whose cumulative p exceeds top_p (top_p >= 1: all of it); draw
 * r = coin * (nucleus mass) and return the first candidate whose running cdf exceeds
 * r. *logprob = log of the pick's probability renormalised over the nucleus. */
static int llm__draw_sorted(const llm__cand *c, int n, float top_p, float coin, double *logprob) {
    float cum = 0.0f;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (top_p < 1.0f && cum > top_p) { last = i; break; }
    }
    float r = coin * cum, cdf = 0.0f;
    int pick = last;                        /* if rounding leaves r >= cdf */
    for (int i = 0; i <= last; i++) {
        cdf += c[i].p;
        if (r < cdf) { pick = i; break; }
    }
    *logprob = log(LLM__CAST(double, c[pick].p)) - log(LLM__CAST(double, cum));
    return c[pick].id;
}

/* CTRL's repetition penalty (Keskar et al. 2019, as HF's RepetitionPenaltyLogitsProcessor):
 * x = x > 0 ? x / penalty : x * penalty, once for each distinct id in prev. */
static llm_status llm__sample_penalty(llm_sampler *s, const int *prev, int n_prev, float pen) {
    for (int i = 0; i < n_prev; i++)
        if (prev[i] < 0 || prev[i] >= s->V)
            return llm__err(LLM_ERR_ARG, "sampler: previous id %d (at %d) outside [0, %d)", prev[i], i, s->V);
    for (int i = 0; i < n_prev; i++) {
        int t = prev[i];
        if (s->seen[t]) continue;
        s->seen[t] = 1;
        s->x[t] = s->x[t] > 0 ? s->x[t] / pen : s->x[t] * pen;
    }
    for (int i = 0; i < n_prev; i++) s->seen[prev[i]] = 0;
    return LLM_OK;
}

/* softmax in place, as run.c: p = exp(x - max) / sum, in float, summed in index order
 * (these exact operations make seeded samples match run.c's). Returns 0, leaving x
 * unchanged, when the maximum is infinite (x / temperature overflowed). */
static int llm__sample_softmax(float *x, int V) {
    float mx = x[0], sum = 0.0f;
    for (int i = 1; i < V; i++) if (x[i] > mx) mx = x[i];
    if (mx == INFINITY || mx == -INFINITY) return 0;
    for (int i = 0; i < V; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    for (int i = 0; i < V; i++) x[i] /= sum;
    return 1;
}

LLMDEF llm_status llm_sampler_sample(llm_sampler *s, const float *logits, const int *prev,
                                     int n_prev, int *out_id, float *out_logprob) {
    if (!s || !logits || !out_id || n_prev < 0 || (n_prev > 0 && !prev))
        return llm__err(LLM_ERR_ARG, "sampler: NULL argument or n_prev < 0");
    const int V = s->V;
    const llm_sampler_config *c = &s->cfg;
    float *x = s->x;
    int all_neg_inf = 1;
    for (int i = 0; i < V; i++) {
        float v = logits[i];
        if (v != v || v == INFINITY)
            return llm__err(LLM_ERR_ARG, "sampler: logit %d is %s", i, v != v ? "NaN" : "+inf");
        if (v != -INFINITY) all_neg_inf = 0;
        x[i] = v;
    }
    if (all_neg_inf) return llm__err(LLM_ERR_ARG, "sampler: every logit is -inf");
    double logprob = 0;
    int id;
    /* 1. repetition penalty */
    float pen = c->repetition_penalty;
    if (pen != 0.0f && pen != 1.0f && n_prev > 0) {
        llm_status st = llm__sample_penalty(s, prev, n_prev, pen);
        if (st != LLM_OK) return st;
    }
    /* 2. temperature */
    int greedy = llm__sample_argmax(x, V);
    if (c->temperature == 0.0f) {
        /* logprob: log softmax at temperature 1 = x[id] - max - log sum exp(x - max) */
        *out_id = greedy;
        if (out_logprob) {
            double sum = 0;
            for (int i = 0; i < V; i++) sum += exp(LLM__CAST(double, x[i]) - x[greedy]);
            *out_logprob = LLM__CAST(float, -log(sum));
        }
        return LLM_OK;
    }
    float coin = llm__xorshift_f32(&s->rng);
    for (int i = 0; i < V; i++) x[i] /= c->temperature;
    if (!llm__sample_softmax(x, V)) {          /* x / temperature overflowed: the T -> 0 limit */
        *out_id = greedy;
        if (out_logprob) *out_logprob = 0.0f;
        return LLM_OK;
    }
    int top_k = c->top_k > 0 && c->top_k < V ? c->top_k : 0;
    int top_p = c->top_p > 0.0f && c->top_p < 1.0f;
    if (top_k) {
        /* 3. top-k: the k most likely, renormalised; then 4-5 over them */
        llm__topk(x, V, top_k, s->cand);
        float ksum = 0.0f;
        for (int i = 0; i < top_k; i++) ksum += s->cand[i].p;
        for (int i = 0; i < top_k; i++) s->cand[i].p /= ksum;
        id = llm__draw_sorted(s->cand, top_k, top_p ? c->top_p : 1.0f, coin, &logprob);
    } else if (top_p) {
        /* 4. top-p, as run.c: tokens with p < (1 - top_p)/(V - 1) cannot be in the nucleus
         *    (even all V - 1 others together would stay under 1 - top_p), so only the rest
         *    are sorted. If none passes (possible only for a near-uniform p and a tiny
         *    top_p; run.c would read out of bounds) every token is a candidate. */
        const float cutoff = (1.0f - c->top_p) / LLM__CAST(float, V - 1);
        int n0 = 0;
        for (int i = 0; i < V; i++)
            if (x[i] >= cutoff) { s->cand[n0].p = x[i]; s->cand[n0].id = i; n0++; }
        if (n0 == 0)
            for (int i = 0; i < V; i++) { s->cand[n0].p = x[i]; s->cand[n0].id = i; n0++; }
        int m = llm__nucleus(s->cand, n0, c->top_p, s->sorted);
        id = llm__draw_sorted(s->sorted, m, c->top_p, coin, &logprob);
    } else {
        /* 5. plain multinomial over the cdf in id order (run.c's sample_mult). Where
         *    rounding leaves coin >= the total, run.c returns V - 1; here the last id
         *    with p > 0, so a masked (-inf) token is never emitted. */
        float cdf = 0.0f;
        id = -1;
        for (int i = 0; i < V; i++) {
            cdf += x[i];
            if (coin < cdf) { id = i; break; }
        }
        if (id < 0) { id = V - 1; while (id > 0 && x[id] == 0.0f) id--; }
        logprob = log(LLM__CAST(double, x[id]));
    }
    *out_id = id;
    if (out_logprob) *out_logprob = LLM__CAST(float, logprob);
    return LLM_OK;
}

//==== STOP =============================================================================
/* Stop strings over streamed text; see llm_stop_find in the API. Naive matching: stop
 * strings are short and only the bytes new since the last call are searched. */
LLMDEF int llm_stop_find(const char *text, size_t len, size_t from, const char *const *stops,
                         int n_stops, size_t *pos) {
    int best = -1;
    size_t best_pos = 0;
    if (!text || !stops) return -1;
    if (from > len) from = len;
    for (int k = 0; k < n_stops; k++) {
        const char *st = stops[k];
        size_t m = st ? strlen(st) : 0;
        if (m == 0 || m > len) continue;
        /* occurrences [q, q+m) that end after `from`: q > from - m */
        size_t q = from >= m ? from - m + 1 : 0;
        size_t hi = best >= 0 && best_pos < len - m ? best_pos : len - m;  /* earliest wins */
        for (; q <= hi; q++) {
            if (text[q] == st[0] && memcmp(text + q, st, m) == 0) {
                if (best < 0 || q < best_pos) { best = k; best_pos = q; }
                break;
            }
        }
    }
    if (pos) *pos = best >= 0 ? best_pos : len;
    return best;
}

LLMDEF size_t llm_stop_partial(const char *text, size_t len, const char *const *stops,
                               int n_stops) {
    size_t best = 0;
    if (!text || !stops) return 0;
    for (int k = 0; k < n_stops; k++) {
        const char *st = stops[k];
        size_t m = st ? strlen(st) : 0;
        /* the longest proper prefix st[0, j) that text ends with */
        for (size_t j = (m > 0 ? m - 1 : 0); j > best; j--)
            if (j <= len && memcmp(text + len - j, st, j) == 0) { best = j; break; }
    }
    return best;
}
//==== INFER ============================================================================
/* Inference with a key/value cache. Training runs the whole (B,T) block at once and keeps
 * every activation for backward; generation instead appends one token at a time, and a
 * token's keys and values never change once computed (causal attention: position t sees
 * only positions <= t, and RoPE/learned positions depend only on t). So each layer's k, v
 * rows are kept in a cache (S, maxT, NKV*HS) and a new row costs one pass through the
 * weights instead of a pass over the whole sequence.
 *
 * The forward here is llm_model_forward's, row by row: the same backend ops in the same
 * order, with positions taken from a device array instead of t. Only ops of the backend
 * table are used, so a GPU backend runs it unchanged:
 *   x   = wte[tok] (+ wpe[pos] for GPT-2: a second gather with the positions as ids)
 *   per layer: x += attproj(attention_kv(rope(qkv(norm1(x)))))     (k, v stored first)
 *              x += fcproj(act(fc(norm2(x))))
 *   logits = normf(x)[wanted rows] @ wcls^T
 * Scratch is sized for R rows per chunk; longer inputs are split into chunks of R rows
 * (a later chunk attends to what the earlier ones stored). The classifier runs only on
 * the wanted rows (a prompt needs the logits of its last row only), W rows at a time. */
#include <time.h>

#define LLM__KV_DEFAULT_ROWS 256
/* classifier rows per matmul: about 32 MB of logits scratch, at least 1 row */
#define LLM__KV_LOGIT_FLOATS (8u << 20)

struct llm_kv {
    llm_model *m;
    size_t bytes;              /* device memory held (counted in the model's kv_bytes) */
    int S, maxT, R, W;         /* sequences, positions each, rows per chunk, logits rows */
    size_t KVW;                /* NKV*HS: one cached k (or v) row */
    int *len;                  /* (S) host: tokens held */
    int *toks;                 /* (S, maxT) host: the tokens held */
    int *cnt;                  /* (S) host scratch: rows per sequence in a call */
    int *h_tok, *h_seq, *h_pos;   /* (R) host: one chunk's rows */
    float *kcache, *vcache;    /* (L, S, maxT, KVW) device */
    float *mem;                /* device scratch, the views below */
    float *res, *res2;         /* (R, C) the residual stream, before/after attention */
    float *ln;                 /* (R, C) a block's normalised input */
    float *qkv;                /* (R, QKV) */
    float *att;                /* (R, C) attention output */
    float *fch;                /* (R, F) */
    float *fcha;               /* (R, H) */
    float *proj;               /* (R, C) a block's output before the residual add */
    float *mean, *rstd;        /* (R) norm statistics (unused by inference, the ops write them) */
    float *lrows;              /* (W, C) gathered final-norm rows */
    float *logits;             /* (W, V) */
    float *lh, *lhs;           /* (R, C) LoRA scratch (llm__lora_fwd; rank <= C) */
    int *d_tok, *d_seq, *d_pos;   /* (R) device */
};

LLMDEF void llm_kv_free(llm_kv *kv) {
    if (!kv) return;
    if (kv->m) {
        const llm_backend *be = kv->m->be;
        kv->m->kv_bytes -= kv->bytes;
        void *bufs[6] = {kv->kcache, kv->vcache, kv->mem, kv->d_tok, kv->d_seq, kv->d_pos};
        for (int i = 0; i < 6; i++) if (bufs[i]) be->release(kv->m->st, bufs[i]);
    }
    LLM_FREE(kv->len); LLM_FREE(kv->toks); LLM_FREE(kv->cnt);
    LLM_FREE(kv->h_tok); LLM_FREE(kv->h_seq); LLM_FREE(kv->h_pos);
    LLM_FREE(kv);
}

LLMDEF llm_status llm_kv_create(llm_kv **out, llm_model *m, int n_seq, int max_len, int max_rows) {
    if (!out) return llm__err(LLM_ERR_ARG, "kv_create: out is NULL");
    *out = NULL;
    if (!m) return llm__err(LLM_ERR_ARG, "kv_create: model is NULL");
    if (n_seq < 1 || max_len < 0 || max_rows < 0)
        return llm__err(LLM_ERR_ARG, "kv_create: n_seq %d must be >= 1, max_len %d and max_rows %d >= 0",
                        n_seq, max_len, max_rows);
    const llm_config *c = &m->cfg;
    llm_kv *kv = LLM__CAST(llm_kv *, llm__calloc(1, sizeof *kv));
    if (!kv) return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory");
    kv->m = m;
    kv->S = n_seq;
    kv->maxT = max_len == 0 || max_len > c->max_seq_len ? c->max_seq_len : max_len;
    kv->R = max_rows == 0 ? LLM__KV_DEFAULT_ROWS : max_rows;
    if (kv->R > 65536) kv->R = 65536;
    size_t V = LLM__CAST(size_t, c->vocab_size), C = LLM__CAST(size_t, c->n_embd), R = LLM__CAST(size_t, kv->R);
    size_t W = LLM__KV_LOGIT_FLOATS / V;
    kv->W = LLM__CAST(int, W < 1 ? 1 : W > R ? R : W);
    kv->KVW = LLM__CAST(size_t, c->n_kv_head) * (C / LLM__CAST(size_t, c->n_head));
    size_t S = LLM__CAST(size_t, n_seq), T = LLM__CAST(size_t, kv->maxT), L = LLM__CAST(size_t, c->n_layer);
    if (S > (SIZE_MAX / 8) / T / L / kv->KVW) { llm_kv_free(kv); return llm__err(LLM_ERR_NOMEM, "kv_create: cache too large"); }
    size_t cache = L * S * T * kv->KVW;
    kv->len = LLM__CAST(int *, llm__calloc(S, sizeof(int)));
    kv->cnt = LLM__CAST(int *, llm__calloc(S, sizeof(int)));
    kv->toks = LLM__CAST(int *, llm__calloc(S * T, sizeof(int)));
    kv->h_tok = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    kv->h_seq = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    kv->h_pos = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    if (!kv->len || !kv->cnt || !kv->toks || !kv->h_tok || !kv->h_seq || !kv->h_pos) {
        llm_kv_free(kv);
        return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory");
    }
    /* device scratch: each view rounded up to 16 floats (64 bytes) */
    size_t Wn = LLM__CAST(size_t, kv->W);
    size_t n[14] = {R * C, R * C, R * C, R * LLM__CAST(size_t, m->QKV), R * C, R * LLM__CAST(size_t, m->F),
                    R * LLM__CAST(size_t, m->H), R * C, R, R, Wn * C, Wn * V, R * C, R * C};
    float **views[14] = {&kv->res, &kv->res2, &kv->ln, &kv->qkv, &kv->att, &kv->fch, &kv->fcha, &kv->proj,
                         &kv->mean, &kv->rstd, &kv->lrows, &kv->logits, &kv->lh, &kv->lhs};
    size_t total = 0;
    for (int i = 0; i < 14; i++) total += (n[i] + 15) & ~LLM__CAST(size_t, 15);
    const llm_backend *be = m->be;
    kv->kcache = LLM__CAST(float *, be->alloc(m->st, cache * sizeof(float)));
    kv->vcache = LLM__CAST(float *, be->alloc(m->st, cache * sizeof(float)));
    kv->mem = LLM__CAST(float *, be->alloc(m->st, total * sizeof(float)));
    kv->d_tok = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    kv->d_seq = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    kv->d_pos = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    if (!kv->kcache || !kv->vcache || !kv->mem || !kv->d_tok || !kv->d_seq || !kv->d_pos) {
        llm_kv_free(kv);
        return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory for a cache of %d x %d positions (%zu MB)",
                        n_seq, kv->maxT, 2 * cache * sizeof(float) >> 20);
    }
    size_t o = 0;
    for (int i = 0; i < 14; i++) { *views[i] = kv->mem + o; o += (n[i] + 15) & ~LLM__CAST(size_t, 15); }
    kv->bytes = (2 * cache + total) * sizeof(float) + 3 * R * sizeof(int);
    m->kv_bytes += kv->bytes;
    *out = kv;
    return LLM_OK;
}

LLMDEF int llm_kv_max_len(const llm_kv *kv) { return kv ? kv->maxT : 0; }
LLMDEF int llm_kv_n_seq(const llm_kv *kv) { return kv ? kv->S : 0; }
LLMDEF int llm_kv_len(const llm_kv *kv, int seq) { return kv && seq >= 0 && seq < kv->S ? kv->len[seq] : 0; }
LLMDEF const int *llm_kv_tokens(const llm_kv *kv, int seq) {
    return kv && seq >= 0 && seq < kv->S ? kv->toks + LLM__CAST(size_t, seq) * kv->maxT : NULL;
}
LLMDEF void llm_kv_clear(llm_kv *kv, int seq) {
    if (!kv) return;
    for (int s = 0; s < kv->S; s++) if (seq < 0 || s == seq) kv->len[s] = 0;
}
LLMDEF void llm_kv_truncate(llm_kv *kv, int seq, int n) {
    if (!kv || seq < 0 || seq >= kv->S || n <= 0) return;
    kv->len[seq] = n >= kv->len[seq] ? 0 : kv->len[seq] - n;
}

/* One chunk of n <= R rows whose h_tok/h_seq/h_pos are filled: the layers, leaving the
 * final-norm output of every row in kv->ln. */
static llm_status llm__kv_chunk(llm_kv *kv, int n) {
    llm_model *m = kv->m;
    const llm_backend *be = m->be;
    void *st = m->st;
    const llm_config *c = &m->cfg;
    const llm_params *p = &m->p;
    int C = c->n_embd;
    size_t nC = LLM__CAST(size_t, n) * LLM__CAST(size_t, C);
    size_t layer_cache = LLM__CAST(size_t, kv->S) * kv->maxT * kv->KVW;
    llm_status s;
    if ((s = be->upload(st, kv->d_tok, kv->h_tok, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    if ((s = be->upload(st, kv->d_seq, kv->h_seq, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    if ((s = be->upload(st, kv->d_pos, kv->h_pos, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    /* embedding: the rows as a (1, n) batch; GPT-2's position rows are gathered with
     * the positions as token ids into the wpe table, then added */
    if (p->wpe) {
        llm__encoder_fwd(m, kv->ln, kv->d_tok, NULL, 1, n);
        be->encoder_fwd(st, kv->proj, kv->d_pos, p->wpe, NULL, 1, n, C);
        be->residual_fwd(st, kv->res, kv->ln, kv->proj, nC);
    } else {
        llm__encoder_fwd(m, kv->res, kv->d_tok, NULL, 1, n);
    }
    /* every layer through the training forward's block, on this chunk's rows, with one set
     * of scratch rows for all layers and the layer's KV cache */
    llm__layer_io io;
    memset(&io, 0, sizeof io);
    io.res = kv->res; io.res3 = kv->res; io.res2 = kv->res2;
    io.ln1 = io.ln2 = kv->ln; io.ln1_rstd = io.ln2_rstd = kv->rstd;
    io.ln1_mean = io.ln2_mean = kv->mean;   /* written by LayerNorm, unused here */
    io.qkv = kv->qkv; io.att = kv->att; io.fch = kv->fch; io.fcha = kv->fcha; io.proj = kv->proj;
    io.B = 1; io.T = n; io.seq = kv->d_seq; io.pos = kv->d_pos; io.maxT = kv->maxT;
    io.lora.hs = kv->lhs; io.lora.h = kv->lh; io.lora.keep = 0;   /* LoRA: scratch only */
    for (int l = 0; l < c->n_layer; l++) {
        io.kcache = kv->kcache + LLM__CAST(size_t, l) * layer_cache;
        io.vcache = kv->vcache + LLM__CAST(size_t, l) * layer_cache;
        llm__block_fwd(m, l, &io);
    }
    llm__norm_fwd(m, kv->ln, kv->mean, kv->rstd, kv->res, p->lnfw, p->lnfb, n);
    return LLM_OK;
}

/* The classifier on rows[0, k) of the chunk (k <= W): gathered into lrows unless they are
 * consecutive, then (k, V) logits downloaded to dst. */
static llm_status llm__kv_logits(llm_kv *kv, const int *rows, int k, float *dst) {
    llm_model *m = kv->m;
    size_t C = LLM__CAST(size_t, m->cfg.n_embd), V = LLM__CAST(size_t, m->cfg.vocab_size);
    int consecutive = 1;
    for (int j = 1; j < k; j++) if (rows[j] != rows[0] + j) consecutive = 0;
    const float *x = kv->ln + LLM__CAST(size_t, rows[0]) * C;
    if (!consecutive) {
        for (int j = 0; j < k; j++)
            m->be->copy(m->st, kv->lrows + LLM__CAST(size_t, j) * C, kv->ln + LLM__CAST(size_t, rows[j]) * C, C * sizeof(float));
        x = kv->lrows;
    }
    llm__linear_fwd(m, 0, LLM__W_CLS, kv->logits, x, k, NULL, NULL);
    return m->be->download(m->st, dst, kv->logits, LLM__CAST(size_t, k) * V * sizeof(float));
}

LLMDEF llm_status llm_kv_forward(llm_kv *kv, const int *seq, const int *tokens, int n,
                                 const unsigned char *want, float *logits) {
    if (!kv || (!tokens && n > 0) || n < 0) return llm__err(LLM_ERR_ARG, "kv_forward: NULL argument or n < 0");
    int V = kv->m->cfg.vocab_size;
    unsigned char none = 0;
    if (!want && !logits) { want = &none; }   /* no logits at all: no row wanted */
    /* validate everything first, so that an error leaves the session unchanged */
    memset(kv->cnt, 0, LLM__CAST(size_t, kv->S) * sizeof(int));
    int n_want = 0;
    for (int i = 0; i < n; i++) {
        int s = seq ? seq[i] : 0;
        if (s < 0 || s >= kv->S) return llm__err(LLM_ERR_ARG, "kv_forward: row %d: sequence %d outside [0, %d)", i, s, kv->S);
        if (tokens[i] < 0 || tokens[i] >= V)
            return llm__err(LLM_ERR_ARG, "kv_forward: row %d: token %d outside [0, %d)", i, tokens[i], V);
        kv->cnt[s]++;
        if (!want || (want != &none && want[i])) n_want++;
    }
    for (int s = 0; s < kv->S; s++)
        if (kv->cnt[s] > kv->maxT - kv->len[s])
            return llm__err(LLM_ERR_ARG, "kv_forward: context full: sequence %d holds %d tokens, %d more exceed "
                            "max_len %d (clear it, or slide the window)", s, kv->len[s], kv->cnt[s], kv->maxT);
    if (n_want > 0 && !logits) return llm__err(LLM_ERR_ARG, "kv_forward: logits is NULL but %d rows are wanted", n_want);
    llm_status st = LLM_OK;
    int rows[1024];   /* wanted rows of a chunk, up to W at a time */
    int wcap = kv->W < 1024 ? kv->W : 1024;
    size_t out_row = 0, Vz = LLM__CAST(size_t, V);
    for (int c0 = 0; c0 < n && st == LLM_OK; c0 += kv->R) {
        int cn = n - c0 < kv->R ? n - c0 : kv->R;
        for (int i = 0; i < cn; i++) {
            int s = seq ? seq[c0 + i] : 0;
            kv->h_tok[i] = tokens[c0 + i];
            kv->h_seq[i] = s;
            kv->h_pos[i] = kv->len[s];
            kv->toks[LLM__CAST(size_t, s) * kv->maxT + kv->len[s]] = tokens[c0 + i];
            kv->len[s]++;
        }
        if ((st = llm__kv_chunk(kv, cn)) != LLM_OK) break;
        int k = 0;
        for (int i = 0; i <= cn && st == LLM_OK; i++) {
            if (i < cn && (!want || (want != &none && want[c0 + i]))) rows[k++] = i;
            if (k > 0 && (k == wcap || i == cn)) {
                st = llm__kv_logits(kv, rows, k, logits + out_row * Vz);
                out_row += LLM__CAST(size_t, k);
                k = 0;
            }
        }
    }
    if (st == LLM_OK) st = kv->m->be->sync(kv->m->st);
    return st;
}

//==== GENERATE =========================================================================
/* Generation on top of the session: prefill every prompt in one forward (only the last
 * row's logits), then loop { sample each running item; stream and check stops; forward
 * one row per item still running }. The last sampled id of an item is not fed back
 * (nothing would read its logits), which is also run.c's behaviour: -n steps is the
 * number of forwards. */

static double llm__now(void) {
#if defined(_WIN32)
    LARGE_INTEGER f, t;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&t);
    return LLM__CAST(double, t.QuadPart) / LLM__CAST(double, f.QuadPart);
#elif defined(CLOCK_MONOTONIC)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return LLM__CAST(double, ts.tv_sec) + 1e-9 * LLM__CAST(double, ts.tv_nsec);
#else
    return LLM__CAST(double, clock()) / CLOCKS_PER_SEC;
#endif
}

LLMDEF size_t llm_piece_gpt2(void *ud, int prev_id, int id, char *buf, size_t cap) {
    size_t n = 0;
    const char *p = llm_tokenizer_token(LLM__CAST(const llm_tokenizer *, ud), id, &n);
    (void)prev_id;
    if (!p) return 0;
    memcpy(buf, p, n < cap ? n : cap);
    return n;
}
LLMDEF size_t llm_piece_llama(void *ud, int prev_id, int id, char *buf, size_t cap) {
    size_t n = 0;
    const char *p = llm_llama_tokenizer_decode(LLM__CAST(const llm_llama_tokenizer *, ud), prev_id, id, &n);
    if (!p) return 0;
    memcpy(buf, p, n < cap ? n : cap);
    return n;
}

LLMDEF llm_generate_config llm_generate_config_default(void) {
    llm_generate_config c;
    memset(&c, 0, sizeof c);
    c.max_new_tokens = 256;
    c.stop_token = -1;
    return c;
}

#define LLM__PIECE_CAP 1024
typedef struct llm__gen_item {
    int seq, active, n_out, cap, pending, prev_id, lrow;
    const int *pre;            /* tokens to prefill (the prompt, or a slid context) */
    int n_pre;
    int *slid;                 /* owned copy when the prompt was slid */
    llm_sampler *smp;
    char *hold;                /* bytes held back (a stop string may begin there) */
    size_t n_hold;
    llm_finish why;
} llm__gen_item;

/* End an item: a final callback releases held-back bytes unless a stop string ended it. */
static void llm__gen_finish(const llm_generate_config *cfg, llm__gen_item *it, int i, llm_finish why) {
    it->active = 0;
    it->why = why;
    if (why != LLM_FINISH_STOP && it->n_hold && cfg->on_token)
        cfg->on_token(cfg->on_token_ud, i, -1, it->hold, it->n_hold, 0.0f);
    it->n_hold = 0;
}

/* Keep the last `keep` tokens of what sequence it->seq holds (+ extra[0, n_extra)): clear
 * the sequence and forward them again (their positions start from 0). */
static llm_status llm__gen_slide(llm_kv *kv, int seq, const int *extra, int n_extra, int keep,
                                 int **buf_out, llm_generate_stats *stats) {
    int have = kv->len[seq], total = have + n_extra;
    if (keep > total) keep = total;
    int *buf = LLM__CAST(int *, LLM_MALLOC((LLM__CAST(size_t, total) + 1) * sizeof(int)));
    if (!buf) return llm__err(LLM_ERR_NOMEM, "generate: out of memory");
    memcpy(buf, kv->toks + LLM__CAST(size_t, seq) * kv->maxT, LLM__CAST(size_t, have) * sizeof(int));
    if (n_extra) memcpy(buf + have, extra, LLM__CAST(size_t, n_extra) * sizeof(int));
    memmove(buf, buf + total - keep, LLM__CAST(size_t, keep) * sizeof(int));
    kv->len[seq] = 0;
    if (buf_out) { *buf_out = buf; return LLM_OK; }   /* the caller prefills them */
    double t0 = llm__now();
    llm_status s = LLM_OK;
    if (keep > 0) {
        int *seqs = LLM__CAST(int *, LLM_MALLOC(LLM__CAST(size_t, keep) * sizeof(int)));
        if (!seqs) { LLM_FREE(buf); return llm__err(LLM_ERR_NOMEM, "generate: out of memory"); }
        for (int i = 0; i < keep; i++) seqs[i] = seq;
        s = llm_kv_forward(kv, seqs, buf, keep, NULL, NULL);
        LLM_FREE(seqs);
        if (stats) { stats->prefill_tokens += keep; stats->prefill_seconds += llm__now() - t0; }
    }
    LLM_FREE(buf);
    return s;
}

static llm_status llm__generate(llm_kv *kv, int n, const int *seqs, const int *const *prompts,
                                const int *n_prompts, const llm_generate_config *cfg_in,
                                int *const *outs, const int *caps, int *n_outs, llm_finish *finish,
                                llm_generate_stats *stats) {
    llm_generate_stats dummy;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    if (!kv || n < 1 || !prompts || !n_prompts || !outs || !caps || !n_outs)
        return llm__err(LLM_ERR_ARG, "generate: NULL argument or no items");
    llm_generate_config cfg = cfg_in ? *cfg_in : llm_generate_config_default();
    if (cfg.n_stops > 0 && (!cfg.stops || !cfg.piece))
        return llm__err(LLM_ERR_ARG, "generate: stop strings need the stops array and a piece function");
    if (cfg.n_stops < 0) cfg.n_stops = 0;
    const int V = kv->m->cfg.vocab_size, maxT = kv->maxT;
    size_t max_stop = 0;
    for (int k = 0; k < cfg.n_stops; k++) if (cfg.stops[k] && strlen(cfg.stops[k]) > max_stop) max_stop = strlen(cfg.stops[k]);
    for (int i = 0; i < n; i++) {
        int s = seqs ? seqs[i] : i;
        if (s < 0 || s >= kv->S) return llm__err(LLM_ERR_ARG, "generate: item %d: sequence %d outside [0, %d)", i, s, kv->S);
        for (int j = 0; j < i; j++)
            if ((seqs ? seqs[j] : j) == s) return llm__err(LLM_ERR_ARG, "generate: items %d and %d share sequence %d", j, i, s);
        if (n_prompts[i] < 1 || !prompts[i]) return llm__err(LLM_ERR_ARG, "generate: item %d: the prompt needs at least one token", i);
        if (!outs[i] && caps[i] > 0) return llm__err(LLM_ERR_ARG, "generate: item %d: out is NULL", i);
        for (int j = 0; j < n_prompts[i]; j++)
            if (prompts[i][j] < 0 || prompts[i][j] >= V)
                return llm__err(LLM_ERR_ARG, "generate: item %d: prompt token %d is %d, outside [0, %d)", i, j, prompts[i][j], V);
        if (!cfg.slide_window && kv->len[s] + n_prompts[i] > maxT)
            return llm__err(LLM_ERR_ARG, "generate: item %d: a prompt of %d tokens does not fit: sequence %d holds %d "
                            "of max_len %d (shorten it, or set slide_window)", i, n_prompts[i], s, kv->len[s], maxT);
    }
    llm__gen_item *it = LLM__CAST(llm__gen_item *, llm__calloc(LLM__CAST(size_t, n), sizeof *it));
    float *lg = LLM__CAST(float *, LLM_MALLOC(LLM__CAST(size_t, n) * LLM__CAST(size_t, V) * sizeof(float)));
    char *piece = LLM__CAST(char *, LLM_MALLOC(LLM__PIECE_CAP));
    size_t total_pre = 0;
    for (int i = 0; i < n; i++) total_pre += LLM__CAST(size_t, n_prompts[i]);
    if (total_pre < LLM__CAST(size_t, n)) total_pre = LLM__CAST(size_t, n);   /* rows: the prefill, then one per item */
    int *rseq = LLM__CAST(int *, LLM_MALLOC(total_pre * sizeof(int)));
    int *rtok = LLM__CAST(int *, LLM_MALLOC(total_pre * sizeof(int)));
    unsigned char *rwant = LLM__CAST(unsigned char *, LLM_MALLOC(total_pre));
    llm_status s = LLM_OK;
    if (!it || !lg || !piece || !rseq || !rtok || !rwant) { s = llm__err(LLM_ERR_NOMEM, "generate: out of memory"); goto done; }
    for (int i = 0; i < n && s == LLM_OK; i++) {
        llm_sampler_config sc = cfg.sampler;
        sc.seed = cfg.sampler.seed + LLM__CAST(uint64_t, i);
        it[i].seq = seqs ? seqs[i] : i;
        it[i].cap = caps[i] > 0 ? caps[i] : 0;
        if (cfg.max_new_tokens > 0 && it[i].cap > cfg.max_new_tokens) it[i].cap = cfg.max_new_tokens;
        it[i].active = 1;
        it[i].pre = prompts[i];
        it[i].n_pre = n_prompts[i];
        n_outs[i] = 0;
        if (finish) finish[i] = LLM_FINISH_NONE;
        if ((s = llm_sampler_create(&it[i].smp, V, &sc)) != LLM_OK) goto done;
        if (max_stop && !(it[i].hold = LLM__CAST(char *, LLM_MALLOC(max_stop + LLM__PIECE_CAP)))) {
            s = llm__err(LLM_ERR_NOMEM, "generate: out of memory"); goto done;
        }
        if (kv->len[it[i].seq] + n_prompts[i] > maxT) {   /* slide_window: keep the last half */
            int keep = maxT / 2 > 0 ? maxT / 2 : 1;
            if ((s = llm__gen_slide(kv, it[i].seq, prompts[i], n_prompts[i], keep, &it[i].slid, stats)) != LLM_OK) goto done;
            it[i].pre = it[i].slid;
            it[i].n_pre = keep;
        }
    }
    /* prefill: all prompts in one forward, the last row of each wanted */
    {
        int r = 0;
        for (int i = 0; i < n; i++) {
            const llm__gen_item *t = &it[i];
            for (int j = 0; j < t->n_pre; j++, r++) { rseq[r] = t->seq; rtok[r] = t->pre[j]; rwant[r] = j == t->n_pre - 1; }
            it[i].prev_id = t->pre[t->n_pre - 1];
            it[i].lrow = i;
        }
        double t0 = llm__now();
        if ((s = llm_kv_forward(kv, rseq, rtok, r, rwant, lg)) != LLM_OK) goto done;
        stats->prefill_tokens += r;
        stats->prefill_seconds += llm__now() - t0;
    }
    {
        double t_dec = llm__now(), t_pre0 = stats->prefill_seconds;
        for (int i = 0; i < n; i++) if (it[i].cap == 0) llm__gen_finish(&cfg, &it[i], i, LLM_FINISH_LENGTH);
        for (;;) {
            /* sample, stream, check the stop conditions */
            for (int i = 0; i < n && s == LLM_OK; i++) {
                llm__gen_item *t = &it[i];
                if (!t->active) continue;
                int id;
                float lp;
                const int *ctx = kv->toks + LLM__CAST(size_t, t->seq) * maxT;
                if ((s = llm_sampler_sample(t->smp, lg + LLM__CAST(size_t, t->lrow) * V, ctx, kv->len[t->seq], &id, &lp)) != LLM_OK) break;
                if (id == cfg.stop_token) { llm__gen_finish(&cfg, t, i, LLM_FINISH_TOKEN); continue; }
                outs[i][t->n_out++] = id;
                stats->generated++;
                const char *text = NULL;
                size_t tlen = 0;
                int stopped = 0;
                if (cfg.piece) {
                    size_t pl = cfg.piece(cfg.piece_ud, t->prev_id, id, piece, LLM__PIECE_CAP);
                    if (pl > LLM__PIECE_CAP) pl = LLM__PIECE_CAP;
                    text = piece; tlen = pl;
                    if (max_stop) {
                        size_t from = t->n_hold, at;
                        memcpy(t->hold + t->n_hold, piece, pl);
                        t->n_hold += pl;
                        if (llm_stop_find(t->hold, t->n_hold, from, cfg.stops, cfg.n_stops, &at) >= 0) {
                            stopped = 1;
                            tlen = at;
                        } else {
                            tlen = t->n_hold - llm_stop_partial(t->hold, t->n_hold, cfg.stops, cfg.n_stops);
                        }
                        text = t->hold;
                    }
                }
                t->prev_id = id;
                int cb = cfg.on_token ? cfg.on_token(cfg.on_token_ud, i, id, text, tlen, lp) : 0;
                if (max_stop) {   /* drop what was released */
                    memmove(t->hold, t->hold + tlen, t->n_hold - tlen);
                    t->n_hold -= tlen;
                }
                if (stopped) llm__gen_finish(&cfg, t, i, LLM_FINISH_STOP);
                else if (cb) llm__gen_finish(&cfg, t, i, LLM_FINISH_CALLBACK);
                else if (t->n_out >= t->cap) llm__gen_finish(&cfg, t, i, LLM_FINISH_LENGTH);
                else t->pending = id;
            }
            if (s != LLM_OK) break;
            /* one row per running item; make room first */
            int r = 0;
            for (int i = 0; i < n && s == LLM_OK; i++) {
                llm__gen_item *t = &it[i];
                if (!t->active) continue;
                if (kv->len[t->seq] >= maxT) {
                    if (!cfg.slide_window) { llm__gen_finish(&cfg, t, i, LLM_FINISH_CONTEXT); continue; }
                    s = llm__gen_slide(kv, t->seq, NULL, 0, maxT / 2, NULL, stats);
                    if (s != LLM_OK) break;
                }
                rseq[r] = t->seq; rtok[r] = t->pending;
                t->lrow = r++;
            }
            if (s != LLM_OK || r == 0) break;
            if ((s = llm_kv_forward(kv, rseq, rtok, r, NULL, lg)) != LLM_OK) break;
            stats->decode_tokens += r;
        }
        /* decode time: the loop, less the re-prefills it did */
        stats->decode_seconds = llm__now() - t_dec - (stats->prefill_seconds - t_pre0);
    }
done:
    for (int i = 0; it && i < n; i++) {
        if (s == LLM_OK) {
            n_outs[i] = it[i].n_out;
            if (finish) finish[i] = it[i].why;
        }
        llm_sampler_free(it[i].smp);
        LLM_FREE(it[i].hold);
        LLM_FREE(it[i].slid);
    }
    LLM_FREE(it); LLM_FREE(lg); LLM_FREE(piece); LLM_FREE(rseq); LLM_FREE(rtok); LLM_FREE(rwant);
    return s;
}

LLMDEF llm_status llm_generate(llm_kv *kv, int seq, const int *prompt, int n_prompt,
                               const llm_generate_config *cfg, int *out, int cap, int *n_out,
                               llm_finish *finish, llm_generate_stats *stats) {
    int *outs[1];
    outs[0] = out;
    if (!n_out) return llm__err(LLM_ERR_ARG, "generate: n_out is NULL");
    return llm__generate(kv, 1, &seq, &prompt, &n_prompt, cfg, outs, &cap, n_out, finish, stats);
}

LLMDEF llm_status llm_generate_batch(llm_kv *kv, int n, const int *seqs, const int *const *prompts,
                                     const int *n_prompts, const llm_generate_config *cfg,
                                     int *const *outs, const int *caps, int *n_outs, llm_finish *finish,
                                     llm_generate_stats *stats) {
    return llm__generate(kv, n, seqs, prompts, n_prompts, cfg, outs, caps, n_outs, finish, stats);
}

//==== UNICODE ========================================================================
/* ---- Unicode classes ------------------------------------------------------------------- */
/* Binary search in the generated table below (reached only for non-ASCII). */
static int llm__uclass_lookup(uint32_t cp);

/* ---- BEGIN generated by tools/gen_unicode.py -- do not edit ---- */
/* Code point classes of the GPT-2 pre-tokenizer: sorted, disjoint ranges
 * [lo, hi] of letters (1), numbers (2) and White_Space (3); the rest is other (0).
 * Source: UnicodeData.txt (Unicode 15.0) and PropList.txt White_Space.
 * Regenerate: /usr/bin/python3 tools/gen_unicode.py */
typedef struct { uint32_t lo, hi; unsigned char cls; } llm__urange;
#define LLM__UCLASS_N 806
static const llm__urange llm__uclass_table[LLM__UCLASS_N] = {
    {0x9,0xD,3},{0x20,0x20,3},{0x30,0x39,2},{0x41,0x5A,1},{0x61,0x7A,1},{0x85,0x85,3},
    {0xA0,0xA0,3},{0xAA,0xAA,1},{0xB2,0xB3,2},{0xB5,0xB5,1},{0xB9,0xB9,2},{0xBA,0xBA,1},
    {0xBC,0xBE,2},{0xC0,0xD6,1},{0xD8,0xF6,1},{0xF8,0x2C1,1},{0x2C6,0x2D1,1},{0x2E0,0x2E4,1},
    {0x2EC,0x2EC,1},{0x2EE,0x2EE,1},{0x370,0x374,1},{0x376,0x377,1},{0x37A,0x37D,1},{0x37F,0x37F,1},
    {0x386,0x386,1},{0x388,0x38A,1},{0x38C,0x38C,1},{0x38E,0x3A1,1},{0x3A3,0x3F5,1},{0x3F7,0x481,1},
    {0x48A,0x52F,1},{0x531,0x556,1},{0x559,0x559,1},{0x560,0x588,1},{0x5D0,0x5EA,1},{0x5EF,0x5F2,1},
    {0x620,0x64A,1},{0x660,0x669,2},{0x66E,0x66F,1},{0x671,0x6D3,1},{0x6D5,0x6D5,1},{0x6E5,0x6E6,1},
    {0x6EE,0x6EF,1},{0x6F0,0x6F9,2},{0x6FA,0x6FC,1},{0x6FF,0x6FF,1},{0x710,0x710,1},{0x712,0x72F,1},
    {0x74D,0x7A5,1},{0x7B1,0x7B1,1},{0x7C0,0x7C9,2},{0x7CA,0x7EA,1},{0x7F4,0x7F5,1},{0x7FA,0x7FA,1},
    {0x800,0x815,1},{0x81A,0x81A,1},{0x824,0x824,1},{0x828,0x828,1},{0x840,0x858,1},{0x860,0x86A,1},
    {0x870,0x887,1},{0x889,0x88E,1},{0x8A0,0x8C9,1},{0x904,0x939,1},{0x93D,0x93D,1},{0x950,0x950,1},
    {0x958,0x961,1},{0x966,0x96F,2},{0x971,0x980,1},{0x985,0x98C,1},{0x98F,0x990,1},{0x993,0x9A8,1},
    {0x9AA,0x9B0,1},{0x9B2,0x9B2,1},{0x9B6,0x9B9,1},{0x9BD,0x9BD,1},{0x9CE,0x9CE,1},{0x9DC,0x9DD,1},
    {0x9DF,0x9E1,1},{0x9E6,0x9EF,2},{0x9F0,0x9F1,1},{0x9F4,0x9F9,2},{0x9FC,0x9FC,1},{0xA05,0xA0A,1},
    {0xA0F,0xA10,1},{0xA13,0xA28,1},{0xA2A,0xA30,1},{0xA32,0xA33,1},{0xA35,0xA36,1},{0xA38,0xA39,1},
    {0xA59,0xA5C,1},{0xA5E,0xA5E,1},{0xA66,0xA6F,2},{0xA72,0xA74,1},{0xA85,0xA8D,1},{0xA8F,0xA91,1},
    {0xA93,0xAA8,1},{0xAAA,0xAB0,1},{0xAB2,0xAB3,1},{0xAB5,0xAB9,1},{0xABD,0xABD,1},{0xAD0,0xAD0,1},
    {0xAE0,0xAE1,1},{0xAE6,0xAEF,2},{0xAF9,0xAF9,1},{0xB05,0xB0C,1},{0xB0F,0xB10,1},{0xB13,0xB28,1},
    {0xB2A,0xB30,1},{0xB32,0xB33,1},{0xB35,0xB39,1},{0xB3D,0xB3D,1},{0xB5C,0xB5D,1},{0xB5F,0xB61,1},
    {0xB66,0xB6F,2},{0xB71,0xB71,1},{0xB72,0xB77,2},{0xB83,0xB83,1},{0xB85,0xB8A,1},{0xB8E,0xB90,1},
    {0xB92,0xB95,1},{0xB99,0xB9A,1},{0xB9C,0xB9C,1},{0xB9E,0xB9F,1},{0xBA3,0xBA4,1},{0xBA8,0xBAA,1},
    {0xBAE,0xBB9,1},{0xBD0,0xBD0,1},{0xBE6,0xBF2,2},{0xC05,0xC0C,1},{0xC0E,0xC10,1},{0xC12,0xC28,1},
    {0xC2A,0xC39,1},{0xC3D,0xC3D,1},{0xC58,0xC5A,1},{0xC5D,0xC5D,1},{0xC60,0xC61,1},{0xC66,0xC6F,2},
    {0xC78,0xC7E,2},{0xC80,0xC80,1},{0xC85,0xC8C,1},{0xC8E,0xC90,1},{0xC92,0xCA8,1},{0xCAA,0xCB3,1},
    {0xCB5,0xCB9,1},{0xCBD,0xCBD,1},{0xCDD,0xCDE,1},{0xCE0,0xCE1,1},{0xCE6,0xCEF,2},{0xCF1,0xCF2,1},
    {0xD04,0xD0C,1},{0xD0E,0xD10,1},{0xD12,0xD3A,1},{0xD3D,0xD3D,1},{0xD4E,0xD4E,1},{0xD54,0xD56,1},
    {0xD58,0xD5E,2},{0xD5F,0xD61,1},{0xD66,0xD78,2},{0xD7A,0xD7F,1},{0xD85,0xD96,1},{0xD9A,0xDB1,1},
    {0xDB3,0xDBB,1},{0xDBD,0xDBD,1},{0xDC0,0xDC6,1},{0xDE6,0xDEF,2},{0xE01,0xE30,1},{0xE32,0xE33,1},
    {0xE40,0xE46,1},{0xE50,0xE59,2},{0xE81,0xE82,1},{0xE84,0xE84,1},{0xE86,0xE8A,1},{0xE8C,0xEA3,1},
    {0xEA5,0xEA5,1},{0xEA7,0xEB0,1},{0xEB2,0xEB3,1},{0xEBD,0xEBD,1},{0xEC0,0xEC4,1},{0xEC6,0xEC6,1},
    {0xED0,0xED9,2},{0xEDC,0xEDF,1},{0xF00,0xF00,1},{0xF20,0xF33,2},{0xF40,0xF47,1},{0xF49,0xF6C,1},
    {0xF88,0xF8C,1},{0x1000,0x102A,1},{0x103F,0x103F,1},{0x1040,0x1049,2},{0x1050,0x1055,1},{0x105A,0x105D,1},
    {0x1061,0x1061,1},{0x1065,0x1066,1},{0x106E,0x1070,1},{0x1075,0x1081,1},{0x108E,0x108E,1},{0x1090,0x1099,2},
    {0x10A0,0x10C5,1},{0x10C7,0x10C7,1},{0x10CD,0x10CD,1},{0x10D0,0x10FA,1},{0x10FC,0x1248,1},{0x124A,0x124D,1},
    {0x1250,0x1256,1},{0x1258,0x1258,1},{0x125A,0x125D,1},{0x1260,0x1288,1},{0x128A,0x128D,1},{0x1290,0x12B0,1},
    {0x12B2,0x12B5,1},{0x12B8,0x12BE,1},{0x12C0,0x12C0,1},{0x12C2,0x12C5,1},{0x12C8,0x12D6,1},{0x12D8,0x1310,1},
    {0x1312,0x1315,1},{0x1318,0x135A,1},{0x1369,0x137C,2},{0x1380,0x138F,1},{0x13A0,0x13F5,1},{0x13F8,0x13FD,1},
    {0x1401,0x166C,1},{0x166F,0x167F,1},{0x1680,0x1680,3},{0x1681,0x169A,1},{0x16A0,0x16EA,1},{0x16EE,0x16F0,2},
    {0x16F1,0x16F8,1},{0x1700,0x1711,1},{0x171F,0x1731,1},{0x1740,0x1751,1},{0x1760,0x176C,1},{0x176E,0x1770,1},
    {0x1780,0x17B3,1},{0x17D7,0x17D7,1},{0x17DC,0x17DC,1},{0x17E0,0x17E9,2},{0x17F0,0x17F9,2},{0x1810,0x1819,2},
    {0x1820,0x1878,1},{0x1880,0x1884,1},{0x1887,0x18A8,1},{0x18AA,0x18AA,1},{0x18B0,0x18F5,1},{0x1900,0x191E,1},
    {0x1946,0x194F,2},{0x1950,0x196D,1},{0x1970,0x1974,1},{0x1980,0x19AB,1},{0x19B0,0x19C9,1},{0x19D0,0x19DA,2},
    {0x1A00,0x1A16,1},{0x1A20,0x1A54,1},{0x1A80,0x1A89,2},{0x1A90,0x1A99,2},{0x1AA7,0x1AA7,1},{0x1B05,0x1B33,1},
    {0x1B45,0x1B4C,1},{0x1B50,0x1B59,2},{0x1B83,0x1BA0,1},{0x1BAE,0x1BAF,1},{0x1BB0,0x1BB9,2},{0x1BBA,0x1BE5,1},
    {0x1C00,0x1C23,1},{0x1C40,0x1C49,2},{0x1C4D,0x1C4F,1},{0x1C50,0x1C59,2},{0x1C5A,0x1C7D,1},{0x1C80,0x1C88,1},
    {0x1C90,0x1CBA,1},{0x1CBD,0x1CBF,1},{0x1CE9,0x1CEC,1},{0x1CEE,0x1CF3,1},{0x1CF5,0x1CF6,1},{0x1CFA,0x1CFA,1},
    {0x1D00,0x1DBF,1},{0x1E00,0x1F15,1},{0x1F18,0x1F1D,1},{0x1F20,0x1F45,1},{0x1F48,0x1F4D,1},{0x1F50,0x1F57,1},
    {0x1F59,0x1F59,1},{0x1F5B,0x1F5B,1},{0x1F5D,0x1F5D,1},{0x1F5F,0x1F7D,1},{0x1F80,0x1FB4,1},{0x1FB6,0x1FBC,1},
    {0x1FBE,0x1FBE,1},{0x1FC2,0x1FC4,1},{0x1FC6,0x1FCC,1},{0x1FD0,0x1FD3,1},{0x1FD6,0x1FDB,1},{0x1FE0,0x1FEC,1},
    {0x1FF2,0x1FF4,1},{0x1FF6,0x1FFC,1},{0x2000,0x200A,3},{0x2028,0x2029,3},{0x202F,0x202F,3},{0x205F,0x205F,3},
    {0x2070,0x2070,2},{0x2071,0x2071,1},{0x2074,0x2079,2},{0x207F,0x207F,1},{0x2080,0x2089,2},{0x2090,0x209C,1},
    {0x2102,0x2102,1},{0x2107,0x2107,1},{0x210A,0x2113,1},{0x2115,0x2115,1},{0x2119,0x211D,1},{0x2124,0x2124,1},
    {0x2126,0x2126,1},{0x2128,0x2128,1},{0x212A,0x212D,1},{0x212F,0x2139,1},{0x213C,0x213F,1},{0x2145,0x2149,1},
    {0x214E,0x214E,1},{0x2150,0x2182,2},{0x2183,0x2184,1},{0x2185,0x2189,2},{0x2460,0x249B,2},{0x24EA,0x24FF,2},
    {0x2776,0x2793,2},{0x2C00,0x2CE4,1},{0x2CEB,0x2CEE,1},{0x2CF2,0x2CF3,1},{0x2CFD,0x2CFD,2},{0x2D00,0x2D25,1},
    {0x2D27,0x2D27,1},{0x2D2D,0x2D2D,1},{0x2D30,0x2D67,1},{0x2D6F,0x2D6F,1},{0x2D80,0x2D96,1},{0x2DA0,0x2DA6,1},
    {0x2DA8,0x2DAE,1},{0x2DB0,0x2DB6,1},{0x2DB8,0x2DBE,1},{0x2DC0,0x2DC6,1},{0x2DC8,0x2DCE,1},{0x2DD0,0x2DD6,1},
    {0x2DD8,0x2DDE,1},{0x2E2F,0x2E2F,1},{0x3000,0x3000,3},{0x3005,0x3006,1},{0x3007,0x3007,2},{0x3021,0x3029,2},
    {0x3031,0x3035,1},{0x3038,0x303A,2},{0x303B,0x303C,1},{0x3041,0x3096,1},{0x309D,0x309F,1},{0x30A1,0x30FA,1},
    {0x30FC,0x30FF,1},{0x3105,0x312F,1},{0x3131,0x318E,1},{0x3192,0x3195,2},{0x31A0,0x31BF,1},{0x31F0,0x31FF,1},
    {0x3220,0x3229,2},{0x3248,0x324F,2},{0x3251,0x325F,2},{0x3280,0x3289,2},{0x32B1,0x32BF,2},{0x3400,0x4DBF,1},
    {0x4E00,0xA48C,1},{0xA4D0,0xA4FD,1},{0xA500,0xA60C,1},{0xA610,0xA61F,1},{0xA620,0xA629,2},{0xA62A,0xA62B,1},
    {0xA640,0xA66E,1},{0xA67F,0xA69D,1},{0xA6A0,0xA6E5,1},{0xA6E6,0xA6EF,2},{0xA717,0xA71F,1},{0xA722,0xA788,1},
    {0xA78B,0xA7CA,1},{0xA7D0,0xA7D1,1},{0xA7D3,0xA7D3,1},{0xA7D5,0xA7D9,1},{0xA7F2,0xA801,1},{0xA803,0xA805,1},
    {0xA807,0xA80A,1},{0xA80C,0xA822,1},{0xA830,0xA835,2},{0xA840,0xA873,1},{0xA882,0xA8B3,1},{0xA8D0,0xA8D9,2},
    {0xA8F2,0xA8F7,1},{0xA8FB,0xA8FB,1},{0xA8FD,0xA8FE,1},{0xA900,0xA909,2},{0xA90A,0xA925,1},{0xA930,0xA946,1},
    {0xA960,0xA97C,1},{0xA984,0xA9B2,1},{0xA9CF,0xA9CF,1},{0xA9D0,0xA9D9,2},{0xA9E0,0xA9E4,1},{0xA9E6,0xA9EF,1},
    {0xA9F0,0xA9F9,2},{0xA9FA,0xA9FE,1},{0xAA00,0xAA28,1},{0xAA40,0xAA42,1},{0xAA44,0xAA4B,1},{0xAA50,0xAA59,2},
    {0xAA60,0xAA76,1},{0xAA7A,0xAA7A,1},{0xAA7E,0xAAAF,1},{0xAAB1,0xAAB1,1},{0xAAB5,0xAAB6,1},{0xAAB9,0xAABD,1},
    {0xAAC0,0xAAC0,1},{0xAAC2,0xAAC2,1},{0xAADB,0xAADD,1},{0xAAE0,0xAAEA,1},{0xAAF2,0xAAF4,1},{0xAB01,0xAB06,1},
    {0xAB09,0xAB0E,1},{0xAB11,0xAB16,1},{0xAB20,0xAB26,1},{0xAB28,0xAB2E,1},{0xAB30,0xAB5A,1},{0xAB5C,0xAB69,1},
    {0xAB70,0xABE2,1},{0xABF0,0xABF9,2},{0xAC00,0xD7A3,1},{0xD7B0,0xD7C6,1},{0xD7CB,0xD7FB,1},{0xF900,0xFA6D,1},
    {0xFA70,0xFAD9,1},{0xFB00,0xFB06,1},{0xFB13,0xFB17,1},{0xFB1D,0xFB1D,1},{0xFB1F,0xFB28,1},{0xFB2A,0xFB36,1},
    {0xFB38,0xFB3C,1},{0xFB3E,0xFB3E,1},{0xFB40,0xFB41,1},{0xFB43,0xFB44,1},{0xFB46,0xFBB1,1},{0xFBD3,0xFD3D,1},
    {0xFD50,0xFD8F,1},{0xFD92,0xFDC7,1},{0xFDF0,0xFDFB,1},{0xFE70,0xFE74,1},{0xFE76,0xFEFC,1},{0xFF10,0xFF19,2},
    {0xFF21,0xFF3A,1},{0xFF41,0xFF5A,1},{0xFF66,0xFFBE,1},{0xFFC2,0xFFC7,1},{0xFFCA,0xFFCF,1},{0xFFD2,0xFFD7,1},
    {0xFFDA,0xFFDC,1},{0x10000,0x1000B,1},{0x1000D,0x10026,1},{0x10028,0x1003A,1},{0x1003C,0x1003D,1},{0x1003F,0x1004D,1},
    {0x10050,0x1005D,1},{0x10080,0x100FA,1},{0x10107,0x10133,2},{0x10140,0x10178,2},{0x1018A,0x1018B,2},{0x10280,0x1029C,1},
    {0x102A0,0x102D0,1},{0x102E1,0x102FB,2},{0x10300,0x1031F,1},{0x10320,0x10323,2},{0x1032D,0x10340,1},{0x10341,0x10341,2},
    {0x10342,0x10349,1},{0x1034A,0x1034A,2},{0x10350,0x10375,1},{0x10380,0x1039D,1},{0x103A0,0x103C3,1},{0x103C8,0x103CF,1},
    {0x103D1,0x103D5,2},{0x10400,0x1049D,1},{0x104A0,0x104A9,2},{0x104B0,0x104D3,1},{0x104D8,0x104FB,1},{0x10500,0x10527,1},
    {0x10530,0x10563,1},{0x10570,0x1057A,1},{0x1057C,0x1058A,1},{0x1058C,0x10592,1},{0x10594,0x10595,1},{0x10597,0x105A1,1},
    {0x105A3,0x105B1,1},{0x105B3,0x105B9,1},{0x105BB,0x105BC,1},{0x10600,0x10736,1},{0x10740,0x10755,1},{0x10760,0x10767,1},
    {0x10780,0x10785,1},{0x10787,0x107B0,1},{0x107B2,0x107BA,1},{0x10800,0x10805,1},{0x10808,0x10808,1},{0x1080A,0x10835,1},
    {0x10837,0x10838,1},{0x1083C,0x1083C,1},{0x1083F,0x10855,1},{0x10858,0x1085F,2},{0x10860,0x10876,1},{0x10879,0x1087F,2},
    {0x10880,0x1089E,1},{0x108A7,0x108AF,2},{0x108E0,0x108F2,1},{0x108F4,0x108F5,1},{0x108FB,0x108FF,2},{0x10900,0x10915,1},
    {0x10916,0x1091B,2},{0x10920,0x10939,1},{0x10980,0x109B7,1},{0x109BC,0x109BD,2},{0x109BE,0x109BF,1},{0x109C0,0x109CF,2},
    {0x109D2,0x109FF,2},{0x10A00,0x10A00,1},{0x10A10,0x10A13,1},{0x10A15,0x10A17,1},{0x10A19,0x10A35,1},{0x10A40,0x10A48,2},
    {0x10A60,0x10A7C,1},{0x10A7D,0x10A7E,2},{0x10A80,0x10A9C,1},{0x10A9D,0x10A9F,2},{0x10AC0,0x10AC7,1},{0x10AC9,0x10AE4,1},
    {0x10AEB,0x10AEF,2},{0x10B00,0x10B35,1},{0x10B40,0x10B55,1},{0x10B58,0x10B5F,2},{0x10B60,0x10B72,1},{0x10B78,0x10B7F,2},
    {0x10B80,0x10B91,1},{0x10BA9,0x10BAF,2},{0x10C00,0x10C48,1},{0x10C80,0x10CB2,1},{0x10CC0,0x10CF2,1},{0x10CFA,0x10CFF,2},
    {0x10D00,0x10D23,1},{0x10D30,0x10D39,2},{0x10E60,0x10E7E,2},{0x10E80,0x10EA9,1},{0x10EB0,0x10EB1,1},{0x10F00,0x10F1C,1},
    {0x10F1D,0x10F26,2},{0x10F27,0x10F27,1},{0x10F30,0x10F45,1},{0x10F51,0x10F54,2},{0x10F70,0x10F81,1},{0x10FB0,0x10FC4,1},
    {0x10FC5,0x10FCB,2},{0x10FE0,0x10FF6,1},{0x11003,0x11037,1},{0x11052,0x1106F,2},{0x11071,0x11072,1},{0x11075,0x11075,1},
    {0x11083,0x110AF,1},{0x110D0,0x110E8,1},{0x110F0,0x110F9,2},{0x11103,0x11126,1},{0x11136,0x1113F,2},{0x11144,0x11144,1},
    {0x11147,0x11147,1},{0x11150,0x11172,1},{0x11176,0x11176,1},{0x11183,0x111B2,1},{0x111C1,0x111C4,1},{0x111D0,0x111D9,2},
    {0x111DA,0x111DA,1},{0x111DC,0x111DC,1},{0x111E1,0x111F4,2},{0x11200,0x11211,1},{0x11213,0x1122B,1},{0x1123F,0x11240,1},
    {0x11280,0x11286,1},{0x11288,0x11288,1},{0x1128A,0x1128D,1},{0x1128F,0x1129D,1},{0x1129F,0x112A8,1},{0x112B0,0x112DE,1},
    {0x112F0,0x112F9,2},{0x11305,0x1130C,1},{0x1130F,0x11310,1},{0x11313,0x11328,1},{0x1132A,0x11330,1},{0x11332,0x11333,1},
    {0x11335,0x11339,1},{0x1133D,0x1133D,1},{0x11350,0x11350,1},{0x1135D,0x11361,1},{0x11400,0x11434,1},{0x11447,0x1144A,1},
    {0x11450,0x11459,2},{0x1145F,0x11461,1},{0x11480,0x114AF,1},{0x114C4,0x114C5,1},{0x114C7,0x114C7,1},{0x114D0,0x114D9,2},
    {0x11580,0x115AE,1},{0x115D8,0x115DB,1},{0x11600,0x1162F,1},{0x11644,0x11644,1},{0x11650,0x11659,2},{0x11680,0x116AA,1},
    {0x116B8,0x116B8,1},{0x116C0,0x116C9,2},{0x11700,0x1171A,1},{0x11730,0x1173B,2},{0x11740,0x11746,1},{0x11800,0x1182B,1},
    {0x118A0,0x118DF,1},{0x118E0,0x118F2,2},{0x118FF,0x11906,1},{0x11909,0x11909,1},{0x1190C,0x11913,1},{0x11915,0x11916,1},
    {0x11918,0x1192F,1},{0x1193F,0x1193F,1},{0x11941,0x11941,1},{0x11950,0x11959,2},{0x119A0,0x119A7,1},{0x119AA,0x119D0,1},
    {0x119E1,0x119E1,1},{0x119E3,0x119E3,1},{0x11A00,0x11A00,1},{0x11A0B,0x11A32,1},{0x11A3A,0x11A3A,1},{0x11A50,0x11A50,1},
    {0x11A5C,0x11A89,1},{0x11A9D,0x11A9D,1},{0x11AB0,0x11AF8,1},{0x11C00,0x11C08,1},{0x11C0A,0x11C2E,1},{0x11C40,0x11C40,1},
    {0x11C50,0x11C6C,2},{0x11C72,0x11C8F,1},{0x11D00,0x11D06,1},{0x11D08,0x11D09,1},{0x11D0B,0x11D30,1},{0x11D46,0x11D46,1},
    {0x11D50,0x11D59,2},{0x11D60,0x11D65,1},{0x11D67,0x11D68,1},{0x11D6A,0x11D89,1},{0x11D98,0x11D98,1},{0x11DA0,0x11DA9,2},
    {0x11EE0,0x11EF2,1},{0x11F02,0x11F02,1},{0x11F04,0x11F10,1},{0x11F12,0x11F33,1},{0x11F50,0x11F59,2},{0x11FB0,0x11FB0,1},
    {0x11FC0,0x11FD4,2},{0x12000,0x12399,1},{0x12400,0x1246E,2},{0x12480,0x12543,1},{0x12F90,0x12FF0,1},{0x13000,0x1342F,1},
    {0x13441,0x13446,1},{0x14400,0x14646,1},{0x16800,0x16A38,1},{0x16A40,0x16A5E,1},{0x16A60,0x16A69,2},{0x16A70,0x16ABE,1},
    {0x16AC0,0x16AC9,2},{0x16AD0,0x16AED,1},{0x16B00,0x16B2F,1},{0x16B40,0x16B43,1},{0x16B50,0x16B59,2},{0x16B5B,0x16B61,2},
    {0x16B63,0x16B77,1},{0x16B7D,0x16B8F,1},{0x16E40,0x16E7F,1},{0x16E80,0x16E96,2},{0x16F00,0x16F4A,1},{0x16F50,0x16F50,1},
    {0x16F93,0x16F9F,1},{0x16FE0,0x16FE1,1},{0x16FE3,0x16FE3,1},{0x17000,0x187F7,1},{0x18800,0x18CD5,1},{0x18D00,0x18D08,1},
    {0x1AFF0,0x1AFF3,1},{0x1AFF5,0x1AFFB,1},{0x1AFFD,0x1AFFE,1},{0x1B000,0x1B122,1},{0x1B132,0x1B132,1},{0x1B150,0x1B152,1},
    {0x1B155,0x1B155,1},{0x1B164,0x1B167,1},{0x1B170,0x1B2FB,1},{0x1BC00,0x1BC6A,1},{0x1BC70,0x1BC7C,1},{0x1BC80,0x1BC88,1},
    {0x1BC90,0x1BC99,1},{0x1D2C0,0x1D2D3,2},{0x1D2E0,0x1D2F3,2},{0x1D360,0x1D378,2},{0x1D400,0x1D454,1},{0x1D456,0x1D49C,1},
    {0x1D49E,0x1D49F,1},{0x1D4A2,0x1D4A2,1},{0x1D4A5,0x1D4A6,1},{0x1D4A9,0x1D4AC,1},{0x1D4AE,0x1D4B9,1},{0x1D4BB,0x1D4BB,1},
    {0x1D4BD,0x1D4C3,1},{0x1D4C5,0x1D505,1},{0x1D507,0x1D50A,1},{0x1D50D,0x1D514,1},{0x1D516,0x1D51C,1},{0x1D51E,0x1D539,1},
    {0x1D53B,0x1D53E,1},{0x1D540,0x1D544,1},{0x1D546,0x1D546,1},{0x1D54A,0x1D550,1},{0x1D552,0x1D6A5,1},{0x1D6A8,0x1D6C0,1},
    {0x1D6C2,0x1D6DA,1},{0x1D6DC,0x1D6FA,1},{0x1D6FC,0x1D714,1},{0x1D716,0x1D734,1},{0x1D736,0x1D74E,1},{0x1D750,0x1D76E,1},
    {0x1D770,0x1D788,1},{0x1D78A,0x1D7A8,1},{0x1D7AA,0x1D7C2,1},{0x1D7C4,0x1D7CB,1},{0x1D7CE,0x1D7FF,2},{0x1DF00,0x1DF1E,1},
    {0x1DF25,0x1DF2A,1},{0x1E030,0x1E06D,1},{0x1E100,0x1E12C,1},{0x1E137,0x1E13D,1},{0x1E140,0x1E149,2},{0x1E14E,0x1E14E,1},
    {0x1E290,0x1E2AD,1},{0x1E2C0,0x1E2EB,1},{0x1E2F0,0x1E2F9,2},{0x1E4D0,0x1E4EB,1},{0x1E4F0,0x1E4F9,2},{0x1E7E0,0x1E7E6,1},
    {0x1E7E8,0x1E7EB,1},{0x1E7ED,0x1E7EE,1},{0x1E7F0,0x1E7FE,1},{0x1E800,0x1E8C4,1},{0x1E8C7,0x1E8CF,2},{0x1E900,0x1E943,1},
    {0x1E94B,0x1E94B,1},{0x1E950,0x1E959,2},{0x1EC71,0x1ECAB,2},{0x1ECAD,0x1ECAF,2},{0x1ECB1,0x1ECB4,2},{0x1ED01,0x1ED2D,2},
    {0x1ED2F,0x1ED3D,2},{0x1EE00,0x1EE03,1},{0x1EE05,0x1EE1F,1},{0x1EE21,0x1EE22,1},{0x1EE24,0x1EE24,1},{0x1EE27,0x1EE27,1},
    {0x1EE29,0x1EE32,1},{0x1EE34,0x1EE37,1},{0x1EE39,0x1EE39,1},{0x1EE3B,0x1EE3B,1},{0x1EE42,0x1EE42,1},{0x1EE47,0x1EE47,1},
    {0x1EE49,0x1EE49,1},{0x1EE4B,0x1EE4B,1},{0x1EE4D,0x1EE4F,1},{0x1EE51,0x1EE52,1},{0x1EE54,0x1EE54,1},{0x1EE57,0x1EE57,1},
    {0x1EE59,0x1EE59,1},{0x1EE5B,0x1EE5B,1},{0x1EE5D,0x1EE5D,1},{0x1EE5F,0x1EE5F,1},{0x1EE61,0x1EE62,1},{0x1EE64,0x1EE64,1},
    {0x1EE67,0x1EE6A,1},{0x1EE6C,0x1EE72,1},{0x1EE74,0x1EE77,1},{0x1EE79,0x1EE7C,1},{0x1EE7E,0x1EE7E,1},{0x1EE80,0x1EE89,1},
    {0x1EE8B,0x1EE9B,1},{0x1EEA1,0x1EEA3,1},{0x1EEA5,0x1EEA9,1},{0x1EEAB,0x1EEBB,1},{0x1F100,0x1F10C,2},{0x1FBF0,0x1FBF9,2},
    {0x20000,0x2A6DF,1},{0x2A700,0x2B739,1},{0x2B740,0x2B81D,1},{0x2B820,0x2CEA1,1},{0x2CEB0,0x2EBE0,1},{0x2F800,0x2FA1D,1},
    {0x30000,0x3134A,1},{0x31350,0x323AF,1},
};
/* ---- END generated by tools/gen_unicode.py ---- */

static int llm__uclass_lookup(uint32_t cp) {
    int lo = 0, hi = LLM__UCLASS_N - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < llm__uclass_table[mid].lo) hi = mid - 1;
        else if (cp > llm__uclass_table[mid].hi) lo = mid + 1;
        else return llm__uclass_table[mid].cls;
    }
    return LLM__U_OTHER;
}

#endif /* LLM_IMPLEMENTATION_DONE */
#endif /* LLM_IMPLEMENTATION */
