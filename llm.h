/* llm.h - tokenize, train and run Transformer language models in one C header.
 *
 * WHAT
 *   GPT-2 and the Llama family on the CPU: a byte-level BPE tokenizer (and llama2.c's),
 *   every tensor op with its forward and backward, AdamW, checkpoints in four formats
 *   (HuggingFace safetensors, llm.c .bin, llama2.c .bin, our own), token datasets,
 *   KV-cache generation with sampling, and a persistent pthreads thread pool. Nothing
 *   beyond libc and pthreads. Compiles as C99/C11 and as C++. An optional companion,
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
 *   LLM_NO_THREADS        no pthreads: the pool runs every task on the calling thread
 *   LLM_POOL_SPIN         how long idle workers spin (yielding) before sleeping (2000)
 * RUN-TIME
 *   LLM_SIMD=scalar|avx2|avx512|neon   cap the SIMD level (see llm_simd_force)
 *
 * HOW TO READ THIS FILE
 *   The public API comes first and is documented where it is declared. Then the
 *   implementation, in the order data flows: errors and memory, the thread pool,
 *   JSON, the GPT-2 tokenizer, the reference kernels (each forward beside its
 *   backward), their SIMD versions, the CPU backend that puts them in the backend
 *   table, the model (which only ever calls that table), the optimizer, file formats
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
 *   PLATFORM      configuration macros, thread-local storage
 *   ERRORS        status strings, the error message
 *   MEMORY        aligned allocation, files
 *   POOL          the thread pool
 *   JSON          a strict, bounded JSON reader (safetensors headers, vocabularies)
 *   TOKENIZER     GPT-2 byte-level BPE: loaders, pre-tokenizer, merges, decoding
 *   KERNELS       scalar reference kernels: forward beside backward, in model order
 *   SIMD          CPU feature detection, run-time dispatch, SGEMM (fp32 and bf16)
 *   SIMD KERNELS  AVX2 / AVX-512 versions of the other kernels, each tested against
 *                 its reference
 *   CPU           the CPU backend: the kernels split over the pool, in the table
 *   MODEL         GPT-2 and Llama: parameters, activations, forward, backward
 *   ADAMW         optimizer, gradient clipping, learning-rate schedule, RNG
 *   FORMATS       HF safetensors, llm.c .bin, llama2.c .bin, our checkpoint
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
#if defined(__GNUC__) || defined(__clang__)
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

/* How to run a model; zero-initialised means the defaults. */
typedef struct llm_options {
    const struct llm_backend *backend;  /* NULL: llm_cpu_backend() */
    int n_threads;                      /* CPU threads; <= 0: llm_cpu_count() */
    int device;                         /* GPU index, for a GPU backend */
    int bf16;                           /* 1: matmuls with bfloat16 operands and fp32
                                         * accumulation (master weights, optimizer and
                                         * every other op stay fp32). CPU: needs
                                         * AVX512-BF16, else fp32 is used. */
} llm_options;

/* ---- backend interface -------------------------------------------------------------- */
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
    /* layernorm over C for N rows (eps 1e-5); mean, rstd (N) saved for backward */
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
    /* out (N,OC) = inp (N,C) @ w(OC,C)^T + bias(OC); bias may be NULL */
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
} llm_backend;

LLMDEF const llm_backend *llm_cpu_backend(void);
/* Defined in llm_cuda.cu; link it to use them. llm_cuda_device_count() is 0 without a
 * driver or GPU. */
extern const llm_backend *llm_cuda_backend(void);   /* extern even with LLM_STATIC */
extern int llm_cuda_device_count(void);

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
 * or our checkpoint (llm_model_save). */
LLMDEF llm_status llm_model_load(llm_model **out, const char *path, const llm_options *opt);
LLMDEF void llm_model_free(llm_model *m);
LLMDEF llm_config llm_model_config(const llm_model *m);   /* defaults filled in */
LLMDEF size_t llm_model_num_params(const llm_model *m);
/* Host copies of the parameters / gradients (llm_model_num_params floats, in the order
 * of llm_params), and the reverse for parameters. */
LLMDEF llm_status llm_model_get_params(const llm_model *m, float *dst);
LLMDEF llm_status llm_model_set_params(llm_model *m, const float *src);
LLMDEF llm_status llm_model_get_grads(const llm_model *m, float *dst);
/* Offsets (in floats) and sizes of the tensors inside the parameter buffer. */
LLMDEF void llm_tensor_layout(const llm_config *cfg, size_t offset[LLM_NTENSORS],
                              size_t size[LLM_NTENSORS]);
LLMDEF const char *llm_tensor_name(int i);  /* "wte", "wpe", "ln1w", ... */

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
 * reuses their memory for the gradient. */
LLMDEF llm_status llm_model_get_logits(llm_model *m, float *dst);
/* Per-token losses (B,T) of the last forward with targets (0 where ignored). */
LLMDEF llm_status llm_model_get_losses(llm_model *m, float *dst);
LLMDEF llm_status llm_model_zero_grad(llm_model *m);
/* Backward of (loss_scale * mean loss) of the last forward; ADDS into the gradients.
 * For gradient accumulation over k micro-batches pass loss_scale = 1/k. */
LLMDEF llm_status llm_model_backward(llm_model *m, float loss_scale);

/* ---- AdamW ---------------------------------------------------------------------------- */
typedef struct llm_adamw_config {
    float beta1, beta2, eps;  /* 0.9, 0.95, 1e-8 by default (nanoGPT / llm.c) */
    float weight_decay;       /* decoupled, as torch.optim.AdamW: p -= lr*wd*p */
    int decay_all;            /* 0: decay only 2-D weights (nanoGPT); 1: every tensor */
    float grad_clip;          /* clip the global L2 norm to this; 0 = off */
} llm_adamw_config;
LLMDEF llm_adamw_config llm_adamw_config_default(void);
/* One optimizer step at learning rate lr. *grad_norm (may be NULL) receives the global
 * gradient L2 norm before clipping. Optimizer moments are allocated on first use. */
LLMDEF llm_status llm_model_step(llm_model *m, const llm_adamw_config *cfg, float lr,
                                 float *grad_norm);
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
 * if not NULL). Written to path.tmp, then renamed: a crash never leaves a half file. */
LLMDEF llm_status llm_model_save(const llm_model *m, const char *path, int with_optimizer,
                                 const llm_train_state *ts);
/* Restore the optimizer and train state saved by llm_model_save into a model loaded
 * from the same file. LLM_ERR_FORMAT if the file has none. ts may be NULL. */
LLMDEF llm_status llm_model_load_train_state(llm_model *m, const char *path,
                                             llm_train_state *ts);

/* ---- token datasets ---------------------------------------------------------------------- */
/* llm.c's token file: 256 int32 header (magic 20240520, version 1, count), then count
 * uint16 tokens. Memory-mapped where the platform allows. */
typedef struct llm_dataset llm_dataset;
LLMDEF llm_status llm_dataset_open(llm_dataset **out, const char *path);
LLMDEF void llm_dataset_close(llm_dataset *d);
LLMDEF size_t llm_dataset_len(const llm_dataset *d);
LLMDEF const uint16_t *llm_dataset_tokens(const llm_dataset *d);
/* Write tokens in that layout (to path.tmp, then renamed). Ids must be < 65536. */
LLMDEF llm_status llm_dataset_write(const char *path, const int *tokens, size_t n);

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
/* Mean loss over n_batches batches of the loader (from its current position). */
LLMDEF llm_status llm_model_eval(llm_model *m, llm_loader *l, int n_batches, float *loss);

/* ---- random numbers --------------------------------------------------------------------- */
/* xoshiro128-style generator used for init and shuffling; same seed, same stream. */
typedef struct llm_rng { uint64_t s[2]; } llm_rng;
LLMDEF void llm_rng_seed(llm_rng *r, uint64_t seed);
LLMDEF uint64_t llm_rng_u64(llm_rng *r);
LLMDEF float llm_rng_normal(llm_rng *r);   /* N(0,1), Box-Muller */

#include "wip/tokenizer_api.h"  /* @@WIP: inlined before release */
#include "wip/generate_api.h"   /* @@WIP */
#include "wip/infer_api.h"      /* @@WIP */

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
#if !defined(_WIN32)
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <math.h>
#include <float.h>
#include <limits.h>
#if !defined(_WIN32)
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <fcntl.h>
#define LLM__HAVE_MMAP 1
#endif
#ifndef LLM_NO_THREADS
#include <pthread.h>
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

#if defined(__cplusplus)
#define LLM__TLS thread_local
#elif defined(_MSC_VER)
#define LLM__TLS __declspec(thread)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define LLM__TLS _Thread_local
#else
#define LLM__TLS __thread
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LLM__UNUSED __attribute__((unused))
#define LLM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LLM__UNUSED
#define LLM__PRINTF(a, b)
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
    vsnprintf(llm__errmsg, sizeof llm__errmsg, fmt, ap);
    va_end(ap);
    return s;
}

//==== MEMORY ===========================================================================
/* 64-byte aligned blocks (a cache line; what AVX-512 loads like). The offset to the
 * block malloc returned is stored in the byte before the aligned pointer. */
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

/* Whole-file read into a malloc'd buffer (a NUL is appended for text parsers). */
static llm_status llm__read_file(const char *path, char **data, size_t *len) {
    *data = NULL; *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return llm__err(LLM_ERR_IO, "%s: cannot seek", path); }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return llm__err(LLM_ERR_IO, "%s: cannot size", path); }
    char *buf = LLM__CAST(char *, LLM_MALLOC(LLM__CAST(size_t, n) + 1));
    if (!buf) { fclose(f); return llm__err(LLM_ERR_NOMEM, "%s: no memory for %ld bytes", path, n); }
    if (fread(buf, 1, LLM__CAST(size_t, n), f) != LLM__CAST(size_t, n)) {
        fclose(f); LLM_FREE(buf); return llm__err(LLM_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf; *len = LLM__CAST(size_t, n);
    return LLM_OK;
}

/* Writers go to "<path>.tmp" and rename over the target when complete, so an
 * interrupted save never destroys the previous checkpoint. */
typedef struct { FILE *f; char tmp[1024]; const char *path; int failed; } llm__wfile;
static llm_status llm__wopen(llm__wfile *w, const char *path) {
    memset(w, 0, sizeof *w);
    if (strlen(path) + 5 > sizeof w->tmp) return llm__err(LLM_ERR_ARG, "%s: path too long", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->path = path;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return llm__err(LLM_ERR_IO, "%s: cannot create", w->tmp);
    return LLM_OK;
}
static void llm__wbytes(llm__wfile *w, const void *p, size_t n) {
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) w->failed = 1;
}
static llm_status llm__wclose(llm__wfile *w) {
    int bad = w->failed;
    if (fflush(w->f) != 0) bad = 1;
    if (fclose(w->f) != 0) bad = 1;
    if (bad) { remove(w->tmp); return llm__err(LLM_ERR_IO, "%s: write failed (disk full?)", w->tmp); }
    if (rename(w->tmp, w->path) != 0) {
        remove(w->tmp);
        return llm__err(LLM_ERR_IO, "%s: cannot rename to %s", w->tmp, w->path);
    }
    return LLM_OK;
}

//==== POOL =============================================================================
/* A task is published by bumping `generation`; each worker runs its slice and the
 * last one to finish signals `done`. The caller runs slice 0 itself, so a 1-thread
 * pool creates no thread at all.
 * Between tasks a worker first spins for a few microseconds (an op follows the last
 * one within microseconds during a forward pass, and a futex wake-up costs ~15 us),
 * then sleeps on a condition variable, so idle or oversubscribed pools cost nothing.
 * The spinning reads use the compiler's atomic builtins; without them (not GCC or
 * clang) the pool only sleeps. */
#if defined(__GNUC__) || defined(__clang__)
#define LLM__ATOMIC_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LLM__ATOMIC_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define LLM__ATOMIC_DEC(p) __atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)
#ifdef LLM_POOL_SPIN
#define LLM__SPIN_ITERS LLM_POOL_SPIN
#else
#define LLM__SPIN_ITERS 2000
#endif
/* Yield rather than pause: on a busy machine the spinner hands its core to whoever
 * is runnable (often the very thread it waits for); on an idle one sched_yield
 * returns at once. */
#include <sched.h>
#define LLM__CPU_RELAX() sched_yield()
#else
#define LLM__ATOMIC_LOAD(p) (*(p))
#define LLM__ATOMIC_STORE(p, v) (*(p) = (v))
#define LLM__ATOMIC_DEC(p) (--*(p))
#define LLM__SPIN_ITERS 0
#define LLM__CPU_RELAX() ((void)0)
#endif

struct llm_pool {
    int n;
#ifndef LLM_NO_THREADS
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation;   /* bumped (under mu, atomically) to publish a task */
    int pending, quit;          /* workers still running the task; shutdown flag */
    llm_pool_fn fn;
    void *arg;
#endif
};

LLMDEF int llm_cpu_count(void) {
#if defined(_SC_NPROCESSORS_ONLN)
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? LLM__CAST(int, n) : 1;
#else
    return 1;
#endif
}

#ifndef LLM_NO_THREADS
typedef struct { llm_pool *pool; int ith; } llm__worker_arg;

static void *llm__worker(void *p) {
    llm__worker_arg *wa = LLM__CAST(llm__worker_arg *, p);
    llm_pool *pool = wa->pool;
    int ith = wa->ith;
    unsigned long seen = 0;
    LLM_FREE(wa);
    for (;;) {
        /* spin briefly for the next task, then sleep */
        for (int i = 0; i < LLM__SPIN_ITERS && LLM__ATOMIC_LOAD(&pool->generation) == seen; i++) LLM__CPU_RELAX();
        pthread_mutex_lock(&pool->mu);
        while (pool->generation == seen && !pool->quit) pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->quit) { pthread_mutex_unlock(&pool->mu); return NULL; }
        seen = pool->generation;
        llm_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->mu);
        fn(arg, ith, pool->n);
        if (LLM__ATOMIC_DEC(&pool->pending) == 0) {   /* the last one wakes a sleeping caller */
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
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
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = LLM__CAST(pthread_t *, llm__calloc(LLM__CAST(size_t, n_threads), sizeof(pthread_t)));
    if (!p->threads) { llm_pool_free(p); llm__err(LLM_ERR_NOMEM, "thread pool: out of memory"); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        /* the worker owns (and frees) its argument block from its first instruction */
        llm__worker_arg *wa = LLM__CAST(llm__worker_arg *, LLM_MALLOC(sizeof *wa));
        if (wa) { wa->pool = p; wa->ith = i; }
        if (!wa || pthread_create(&p->threads[i], NULL, llm__worker, wa) != 0) {
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
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
        LLM_FREE(p->threads);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
#endif
    LLM_FREE(p);
}

LLMDEF int llm_pool_size(const llm_pool *p) { return p ? p->n : 1; }

LLMDEF void llm_pool_run(llm_pool *p, llm_pool_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
#ifndef LLM_NO_THREADS
    pthread_mutex_lock(&p->mu);
    p->fn = fn; p->arg = arg;
    LLM__ATOMIC_STORE(&p->pending, p->n - 1);
    LLM__ATOMIC_STORE(&p->generation, p->generation + 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int i = 0; i < LLM__SPIN_ITERS && LLM__ATOMIC_LOAD(&p->pending) > 0; i++) LLM__CPU_RELAX();
    if (LLM__ATOMIC_LOAD(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (LLM__ATOMIC_LOAD(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
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

#include "wip/tokenizer_impl.h" /* @@WIP */
#include "wip/kernels_impl.h"   /* @@WIP */
/* g++ 12 reports the _mm*_undefined_* placeholders inside its own intrinsics headers
 * as uninitialised once they are inlined into our kernels (a known false positive). */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "wip/simd_impl.h"      /* @@WIP */
#include "wip/simd_kernels.h"   /* @@WIP */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include "wip/cpu_impl.h"       /* @@WIP */
#include "wip/model_impl.h"     /* @@WIP */
#include "wip/generate_impl.h"  /* @@WIP */
#include "wip/infer_impl.h"     /* @@WIP */

#endif /* LLM_IMPLEMENTATION_DONE */
#endif /* LLM_IMPLEMENTATION */
