/* bench/bench_cuda.c: GPT-2 124M training and KV-cache inference on the GPU (llm_cuda.cu).
 *
 *   build/cuda/bench_cuda [results.jsonl] [--B 16,32,64] [--mode fp32|bf16|fp16|both|all]
 *                         [--steps N] [--warmup N] [--no-train] [--no-decode]
 *                         [--device D] [--probe] [--cpu] [--tiny]
 *
 * Training: GPT-2 124M (L 12, NH 12, C 768, V 50257), T = 1024, for each B of --B and
 * each matmul mode (fp32: exact; bf16: llm_options.bf16, bf16 operands with fp32
 * accumulation; fp16: llm_options.fp16, the same in fp16, with llm_loss_scaler as a
 * training run uses it; --mode all, the default, runs the three, both fp32 and bf16; a
 * mode the GPU lacks, bf16 before sm_80, is reported and skipped): --warmup steps
 * (default 2: they allocate the gradients and AdamW
 * moments and warm cuBLAS), then the median of --steps timed steps (default 5) of
 *   forward (with targets) + zero_grad + backward + AdamW step (clipping at 1.0)
 * each ended by a device sync, so a step's time is all its GPU work. Printed: ms per
 * step and its parts, tokens/s, model TFLOP/s and MFU against the GPU's dense bf16
 * tensor-core peak (see peak_tflops; LLM_GPU_PEAK_TFLOPS overrides it). A batch that
 * does not fit (LLM_ERR_NOMEM) is reported and skipped.
 *
 * Inference, batch 1, through the KV cache (llm_kv_forward), with random weights:
 * GPT-2 124M and a Llama 110M shape (dim 768, hidden 2048, 12 layers, 12 heads, vocab
 * 32000, tied classifier: llama2.c's stories110M), in each mode:
 *   prefill: one call forwarding a 512-token prompt (logits of the last row only)
 *   decode:  128 calls of one row each after an 8-token prompt (every logit row)
 * median of 5 runs after a warm-up. Decode at batch 1 reads every weight once per
 * token; the fp32 weight bytes per second this implies are printed beside it.
 *
 * Without a GPU it prints "SKIP: no CUDA device" and exits 0. --probe lists the devices
 * and the peak each would use, then exits (gpu_check.sh asks it whether to run the GPU
 * steps). --cpu runs the same code on the CPU backend at tiny shapes (L 2, C 64, T 64,
 * B 2): a check of this program's logic where there is no GPU; --tiny runs those tiny
 * shapes on the CUDA backend (tests/test_cuda_examples.sh runs it on tests/cuda_emu.h);
 * neither appends anything unless a results file is named. Exit status: 0 when every figure ran or ran out of
 * memory; 1 when any other error happened.
 *
 * Built by `make cuda` (with -DLLM_CUDA=1, linked with llm_cuda.o), run by
 * `make bench-cuda`. Without LLM_CUDA it builds too and only --cpu does anything. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <ctype.h>

/* ---- peak FLOP/s ------------------------------------------------------------------- */
/* Dense bf16 tensor-core peak with fp32 accumulation, TFLOP/s, from NVIDIA's data sheets
 * (their "with sparsity" figures halved). A name matches as a whole word of the device
 * name ("A10" is not "A100" or "A10G", "L4" is not "L40S", "H200" is not "GH200") and
 * only with the listed compute capability; dense fp16 peaks are the same figures on these
 * GPUs, so the fp16 mode's MFU uses them too. The T4 has no bf16: its figure is fp16 (the
 * bf16 mode is refused there by the backend). */
typedef struct { const char *name; int major, minor; double tflops; const char *type; } peak_entry;
static const peak_entry peaks[] = {
    {"H100 PCIe", 9, 0, 756, "bf16"}, {"H100", 9, 0, 989, "bf16"}, {"H200", 9, 0, 989, "bf16"},
    {"A100", 8, 0, 312, "bf16"}, {"A10", 8, 6, 125, "bf16"}, {"L40S", 8, 9, 362, "bf16"},
    {"L40", 8, 9, 181, "bf16"}, {"L4", 8, 9, 121, "bf16"}, {"RTX 4090", 8, 9, 165, "bf16"},
    {"T4", 7, 5, 65, "fp16"},
};

/* Whether word occurs in s with no letter or digit on either side. */
static int has_word(const char *s, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word))
        if ((p == s || !isalnum((unsigned char)p[-1])) && !isalnum((unsigned char)p[n])) return 1;
    return 0;
}

/* The peak for a device, and in `why` where it came from; 0 when unknown. */
static double peak_tflops(const char *name, int major, int minor, char *why, size_t cap) {
    const char *env = getenv("LLM_GPU_PEAK_TFLOPS");
    if (env && atof(env) > 0) { snprintf(why, cap, "LLM_GPU_PEAK_TFLOPS"); return atof(env); }
    for (size_t i = 0; i < sizeof peaks / sizeof peaks[0]; i++)
        if (major == peaks[i].major && minor == peaks[i].minor && has_word(name, peaks[i].name)) {
            snprintf(why, cap, "table: %s, sm_%d%d, %s dense", peaks[i].name, major, minor, peaks[i].type);
            return peaks[i].tflops;
        }
    snprintf(why, cap, "unknown device: no MFU; set LLM_GPU_PEAK_TFLOPS");
    return 0;
}

/* ---- what is measured ---------------------------------------------------------------- */
typedef struct {
    const llm_backend *backend;   /* NULL: the CPU */
    int device;
    const char *device_name;
    double peak;                  /* TFLOP/s, 0 unknown */
    int warmup, steps, runs;
    int T, prefill, decode;       /* train sequence length; inference prompt and decode lengths */
    FILE *out;                    /* results, may be NULL */
    long stamp;
    int failed;                   /* an error other than out of memory happened */
} bench_ctx;

/* A shape with its random weights, made once and copied into every model of that shape
 * (GPT-2 init draws 124M normals on the host: seconds, too slow to repeat per figure). */
typedef struct { const char *name; llm_config cfg; float *params; } shape;

enum { MODE_FP32 = 0, MODE_BF16 = 1, MODE_FP16 = 2 };
static const char *mode_name(int mode) { return mode == MODE_BF16 ? "bf16" : mode == MODE_FP16 ? "fp16" : "fp32"; }

/* Report a failed call: out of memory is an outcome (the figure is skipped), anything
 * else an error. */
static void report_fail(bench_ctx *b, const char *what, llm_status s) {
    if (s == LLM_ERR_NOMEM) printf("%s: out of memory, skipped (%s)\n", what, llm_last_error());
    else if (s == LLM_ERR_UNSUPPORTED) printf("%s: not on this GPU, skipped (%s)\n", what, llm_last_error());
    else { printf("%s: FAILED: %s: %s\n", what, llm_status_string(s), llm_last_error()); b->failed = 1; }
    fflush(stdout);
}

/* A model of shape sh on the bench's backend in the given mode, with sh's weights. */
static llm_status make_model(bench_ctx *b, shape *sh, int mode, llm_model **out) {
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = b->backend;
    opt.device = b->device;
    opt.bf16 = mode == MODE_BF16;
    opt.fp16 = mode == MODE_FP16;
    llm_status s;
    if (!sh->params) {
        if ((s = llm_model_create(out, &sh->cfg, &opt, 1)) != LLM_OK) return s;
        sh->params = (float *)malloc(llm_model_num_params(*out) * sizeof(float));
        if (!sh->params) return llm_set_error(LLM_ERR_NOMEM, "bench: no host memory for the weights");
        return llm_model_get_params(*out, sh->params);
    }
    if ((s = llm__model_new(out, &sh->cfg, &opt)) != LLM_OK) return s;
    return llm_model_set_params(*out, sh->params);
}

/* llm_model_forward and llm_model_backward end in a device sync; llm_model_step only
 * queues the AdamW kernels. The public API has no sync, so the bench reaches into the
 * model for its backend's (the same call the others end with). */
static llm_status model_sync(llm_model *m) { return m->be->sync(m->st); }

/* Model FLOPs of one training token (PaLM, appendix B):
 *   6 N + 12 L T C
 * N: the weights that take part in a matmul, i.e. every parameter but the embedding
 * tables, plus the classifier as used (the tied wte counts once, as the LM head). A
 * matmul costs 2 FLOPs per weight per token forward and 4 backward (dinp and dw): 6N.
 * Attention's own matmuls, Q K^T and P V, cost 2 T C each per token per layer forward
 * and twice that backward: 12 L T C, the causal mask ignored (counted full, as PaLM and
 * llm.c count it). */
static double train_flops_per_token(const llm_config *c, int T) {
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(c, off, size);
    double N = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) N += (double)size[i];
    N -= (double)size[1];                          /* wpe: a lookup */
    if (c->untied_head) N -= (double)size[0];      /* wte: a lookup when wcls is the head */
    return 6.0 * N + 12.0 * c->n_layer * (double)T * c->n_embd;
}

/* One training figure: sh at batch B and sequence length b->T in the given mode. */
/* LLM_CUDA_PROFILE=1 (CUDA build): the GPU time of the timed steps by kind of work, from
 * llm_cuda.cu's event profile (see llm_cuda_profile). */
static void profile_reset(void) {
#ifdef LLM_CUDA
    llm_cuda_profile(NULL, 0, 1);
#endif
}
static void profile_print(const char *what, int steps) {
#ifdef LLM_CUDA
    static char buf[16384];
    const char *e = getenv("LLM_CUDA_PROFILE");
    if (!e || e[0] != '1') return;
    llm_cuda_profile(buf, sizeof buf, 1);
    if (buf[0]) printf("GPU time by kind of work, %s, %d steps (LLM_CUDA_PROFILE=1):\n%s", what, steps, buf);
#else
    (void)what; (void)steps;
#endif
}

static void bench_train(bench_ctx *b, shape *sh, int B, int mode) {
    char what[96];
    int T = b->T, n = b->steps;
    snprintf(what, sizeof what, "train %s B=%d T=%d %s", sh->name, B, T, mode_name(mode));
    size_t BT = (size_t)B * (size_t)T;
    int *in = (int *)malloc(2 * BT * sizeof(int)), *tg = in ? in + BT : NULL;
    double *t = (double *)calloc(4 * (size_t)n, sizeof(double));   /* step, fwd, bwd, adamw */
    llm_model *m = NULL;
    llm_status s = in && t ? LLM_OK : llm_set_error(LLM_ERR_NOMEM, "bench: no host memory for the batch");
    if (s == LLM_OK) s = make_model(b, sh, mode, &m);
    if (s == LLM_OK) s = llm_model_reserve(m, B, T);
    if (s == LLM_OK) {
        llm_rng r;
        llm_rng_seed(&r, 42);
        for (size_t i = 0; i < 2 * BT; i++) in[i] = (int)(llm_rng_u64(&r) % (uint64_t)sh->cfg.vocab_size);
    }
    llm_adamw_config ac = llm_adamw_config_default();
    llm_loss_scaler scaler = llm_loss_scaler_default(), *sc = mode == MODE_FP16 ? &scaler : NULL;
    long long skipped_before = 0;
    for (int i = -b->warmup; i < n && s == LLM_OK; i++) {
        float loss, norm;
        if (i == 0) { profile_reset(); skipped_before = scaler.skipped; }
        double t0 = bench_now(), t1 = t0, t2 = t0, t3;
        s = llm_model_forward(m, in, tg, B, T, &loss);
        if (s == LLM_OK) { t1 = bench_now(); s = llm_model_zero_grad(m); }
        if (s == LLM_OK) s = llm_model_backward(m, sc ? sc->scale : 1.0f);
        if (s == LLM_OK) { t2 = bench_now(); s = llm_model_step_scaled(m, &ac, 3e-4f, sc, &norm, NULL); }
        if (s == LLM_OK) s = model_sync(m);
        t3 = bench_now();
        if (i >= 0) { t[i] = t3 - t0; t[n + i] = t1 - t0; t[2 * n + i] = t2 - t1; t[3 * n + i] = t3 - t2; }
    }
    if (s != LLM_OK) report_fail(b, what, s);
    else {
        double sec = bench_median(t, n), fwd = bench_median(t + n, n), bwd = bench_median(t + 2 * n, n);
        double adam = bench_median(t + 3 * n, n);
        double tok_s = (double)BT / sec, fpt = train_flops_per_token(&sh->cfg, T);
        double tflops = tok_s * fpt * 1e-12, mfu = b->peak > 0 ? tflops / b->peak : 0;
        printf("%-34s %8.1f ms (fwd %.1f bwd %.1f step %.1f) %9.0f tok/s %7.2f TFLOP/s  MFU ",
               what, sec * 1e3, fwd * 1e3, bwd * 1e3, adam * 1e3, tok_s, tflops);
        if (b->peak > 0) printf("%5.1f%%", 100 * mfu); else printf("n/a");
        /* a skipped step (fp16 overflow) has no AdamW pass: say so beside the figure */
        if (sc && scaler.skipped > skipped_before)
            printf("  (%lld of %d timed steps skipped by the loss scaler)", scaler.skipped - skipped_before, n);
        printf("\n");
        profile_print(what, n);
        fflush(stdout);
        if (b->out) {
            fprintf(b->out, "{\"bench\":\"cuda_train\",\"time\":%ld,\"device\":\"%s\",\"model\":\"%s\",\"mode\":\"%s\","
                    "\"B\":%d,\"T\":%d,\"steps\":%d,\"ms\":%.3f,\"fwd_ms\":%.3f,\"bwd_ms\":%.3f,\"step_ms\":%.3f,"
                    "\"tok_s\":%.1f,\"flops_per_token\":%.0f,\"tflops\":%.3f,\"peak_tflops\":%.1f",
                    b->stamp, b->device_name, sh->name, mode_name(mode), B, T, n, sec * 1e3, fwd * 1e3, bwd * 1e3,
                    adam * 1e3, tok_s, fpt, tflops, b->peak);
            if (b->peak > 0) fprintf(b->out, ",\"mfu\":%.4f", mfu);
            fprintf(b->out, "}\n");
            fflush(b->out);
        }
    }
    llm_model_free(m);
    free(in);
    free(t);
}

/* One inference figure: prefill and decode tokens/s of sh in the given mode. */
static void bench_infer(bench_ctx *b, shape *sh, int mode) {
    char what[96];
    snprintf(what, sizeof what, "infer %s %s", sh->name, mode_name(mode));
    int P = b->prefill, D = b->decode, R = b->runs, V = sh->cfg.vocab_size;
    enum { PROMPT = 8 };   /* decode starts after this many tokens */
    llm_model *m = NULL;
    llm_kv *kv = NULL;
    float *logits = (float *)malloc((size_t)V * sizeof(float));
    int *toks = (int *)malloc((size_t)(P > PROMPT + D ? P : PROMPT + D) * sizeof(int));
    unsigned char *want = (unsigned char *)calloc((size_t)P, 1);
    double *tp = (double *)calloc(2 * (size_t)R, sizeof(double)), *td = tp ? tp + R : NULL;
    llm_status s = logits && toks && want && tp ? LLM_OK : llm_set_error(LLM_ERR_NOMEM, "bench: no host memory");
    if (s == LLM_OK) s = make_model(b, sh, mode, &m);
    /* one forward chunk holds the whole prompt: prefill is a single pass */
    if (s == LLM_OK) s = llm_kv_create(&kv, m, 1, P + PROMPT + D + 8, P);
    if (s == LLM_OK) {
        for (int i = 0; i < (P > PROMPT + D ? P : PROMPT + D); i++) toks[i] = (i * 7919 + 13) % V;
        want[P - 1] = 1;
        s = llm_kv_forward(kv, NULL, toks, PROMPT, NULL, NULL);   /* warm-up */
    }
    for (int r = 0; r < R && s == LLM_OK; r++) {
        llm_kv_clear(kv, 0);
        double t0 = bench_now();
        s = llm_kv_forward(kv, NULL, toks, P, want, logits);   /* synchronous: ends in a sync */
        tp[r] = P / (bench_now() - t0);
        llm_kv_clear(kv, 0);
        if (s == LLM_OK) s = llm_kv_forward(kv, NULL, toks, PROMPT, NULL, NULL);
        t0 = bench_now();
        for (int i = 0; i < D && s == LLM_OK; i++) s = llm_kv_forward(kv, NULL, &toks[PROMPT + i], 1, NULL, logits);
        td[r] = D / (bench_now() - t0);
    }
    if (s != LLM_OK) report_fail(b, what, s);
    else {
        double pt = bench_median(tp, R), dt = bench_median(td, R);
        /* weights streamed per decoded token: all but the position table, of which one
         * row is read (a tied embedding is read whole, as the classifier) */
        size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_config c = llm_model_config(m);
        llm_tensor_layout(&c, off, size);
        double gb = dt * (double)(llm_model_num_params(m) - size[1]) * 4.0 * 1e-9;
        printf("%-34s prefill %d: %9.0f tok/s   decode: %8.1f tok/s (%.0f GB/s of fp32 weights)\n",
               what, P, pt, dt, gb);
        fflush(stdout);
        if (b->out) {
            fprintf(b->out, "{\"bench\":\"cuda_infer\",\"time\":%ld,\"device\":\"%s\",\"model\":\"%s\",\"mode\":\"%s\","
                    "\"params\":%zu,\"runs\":%d,\"prefill_tokens\":%d,\"prefill_tok_s\":%.1f,\"decode_tokens\":%d,"
                    "\"decode_tok_s\":%.2f,\"decode_weight_gb_s\":%.2f}\n",
                    b->stamp, b->device_name, sh->name, mode_name(mode), llm_model_num_params(m), R, P, pt, D, dt, gb);
            fflush(b->out);
        }
    }
    llm_kv_free(kv);
    llm_model_free(m);
    free(logits); free(toks); free(want); free(tp);
}

/* Parse "16,32,64" into bs[0..max); returns the count, 0 on a bad list. */
static int parse_list(const char *s, int *bs, int max) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || n == max || (*end && *end != ',')) return 0;
        bs[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [results.jsonl] [--B 16,32,64] [--mode fp32|bf16|fp16|both|all] [--steps N] [--warmup N]\n"
                    "       [--no-train] [--no-decode] [--device D] [--probe] [--cpu] [--tiny]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *out_path = NULL, *mode = "all";
    int Bs[16] = {16, 32, 64}, nB = 3, B_given = 0, steps = 5, warmup = 2, train = 1, infer = 1, probe = 0, cpu = 0,
        tiny = 0, dev = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cpu")) cpu = tiny = 1;
        else if (!strcmp(a, "--tiny")) tiny = 1;
        else if (!strcmp(a, "--probe")) probe = 1;
        else if (!strcmp(a, "--no-train")) train = 0;
        else if (!strcmp(a, "--no-decode")) infer = 0;
        else if (a[0] != '-') out_path = a;
        else if (!v) return usage(argv[0]);
        else if (!strcmp(a, "--B")) { if (!(nB = parse_list(v, Bs, 16))) return usage(argv[0]); B_given = 1; i++; }
        else if (!strcmp(a, "--mode")) { mode = v; i++; }
        else if (!strcmp(a, "--steps")) { steps = atoi(v); i++; }
        else if (!strcmp(a, "--warmup")) { warmup = atoi(v); i++; }
        else if (!strcmp(a, "--device")) { dev = atoi(v); i++; }
        else return usage(argv[0]);
    }
    if (steps < 1 || warmup < 0 || (strcmp(mode, "fp32") && strcmp(mode, "bf16") && strcmp(mode, "fp16") &&
                                    strcmp(mode, "both") && strcmp(mode, "all")))
        return usage(argv[0]);

    bench_ctx b;
    memset(&b, 0, sizeof b);
    b.warmup = warmup; b.steps = steps; b.runs = 5; b.device = dev;
    b.stamp = (long)time(NULL);
    char why[128] = "";
    shape shapes[2];
    memset(shapes, 0, sizeof shapes);
    shapes[0].name = "gpt2-124m"; shapes[0].cfg = llm_config_gpt2();
    shapes[1].name = "llama-110m"; shapes[1].cfg = llm_config_llama(32000, 12, 12, 12, 768, 2048);
    if (tiny) {
        /* tiny shapes: the same code paths in seconds (--cpu: on the CPU backend, for
         * machines without a GPU; --tiny alone: on the GPU, or on tests/cuda_emu.h) */
        llm_config g = llm_config_gpt2();
        g.max_seq_len = 128; g.vocab_size = 512; g.n_layer = 2; g.n_head = 4; g.n_embd = 64;
        llm_config l = llm_config_llama(512, 2, 4, 2, 64, 172);
        l.max_seq_len = 128;
        shapes[0].name = "gpt2-tiny"; shapes[0].cfg = g;
        shapes[1].name = "llama-tiny"; shapes[1].cfg = l;
        if (!B_given) { Bs[0] = 2; nB = 1; }
    }
    if (cpu) {
        b.T = 64; b.prefill = 32; b.decode = 16;
        b.device_name = "cpu";
        b.peak = peak_tflops("cpu", 0, 0, why, sizeof why);   /* LLM_GPU_PEAK_TFLOPS, or none */
        printf("bench_cuda --cpu: the CPU backend at tiny shapes (simd %s, %d cores), a check of this "
               "program, not a benchmark; peak %g TFLOP/s (%s)\n", llm_simd_name(llm_simd_active()), llm_cpu_count(),
               b.peak, why);
    } else {
#ifdef LLM_CUDA
        int ndev = llm_cuda_device_count();
        static char name[256];
        if (probe) printf("devices: %d\n", ndev);
        if (ndev == 0) { printf("SKIP: no CUDA device\n"); return 0; }
        for (int d = 0; d < ndev; d++) {
            int major = 0, minor = 0;
            size_t mem = 0;
            if (!probe && d != dev) continue;
            if (llm_cuda_device_props(d, &major, &minor, &mem) != 0) {
                printf("device %d: cannot read its properties\n", d);
                return 1;
            }
            const char *dname = llm_cuda_device_name(d);
            double pk = peak_tflops(dname, major, minor, why, sizeof why);
            if (probe)
                printf("device %d: %s, sm_%d%d, %.1f GiB; peak %.0f TFLOP/s (%s)\n", d, dname, major, minor,
                       (double)mem / (1 << 30), pk, why);
            if (d == dev) { snprintf(name, sizeof name, "%s", dname); b.peak = pk; }
        }
        if (probe) return 0;
        if (dev < 0 || dev >= ndev) { fprintf(stderr, "bench_cuda: --device %d, devices 0..%d\n", dev, ndev - 1); return 2; }
        b.backend = llm_cuda_backend();
        b.device_name = name;
        b.T = tiny ? 64 : 1024; b.prefill = tiny ? 32 : 512; b.decode = tiny ? 16 : 128;
        printf("bench_cuda: device %d: %s; peak %.0f TFLOP/s (%s)\n", dev, name, b.peak, why);
#else
        (void)dev;
        if (probe) printf("devices: 0\n");
        printf("SKIP: built without CUDA (make cuda builds build/cuda/bench_cuda)\n");
        return 0;
#endif
    }
    if (out_path || !tiny) {   /* tiny figures are not benchmarks: kept out of the default file */
        b.out = bench_open_results(out_path ? out_path : BENCH_RESULTS);
        if (!b.out) return 1;
    }
    int modes[3] = {MODE_FP32, MODE_BF16, MODE_FP16}, nm = 3;   /* all */
    if (!strcmp(mode, "both")) nm = 2;
    if (!strcmp(mode, "fp32")) nm = 1;
    if (!strcmp(mode, "bf16")) { modes[0] = MODE_BF16; nm = 1; }
    if (!strcmp(mode, "fp16")) { modes[0] = MODE_FP16; nm = 1; }
    if (train) {
        printf("training step: forward + backward + AdamW, median of %d after %d warm-up; model FLOPs/token "
               "6N + 12LTC (N: non-embedding weights + LM head) = %.1f M for %s at T=%d\n", steps, warmup,
               train_flops_per_token(&shapes[0].cfg, b.T) * 1e-6, shapes[0].name, b.T);
        for (int k = 0; k < nm; k++)
            for (int i = 0; i < nB; i++) bench_train(&b, &shapes[0], Bs[i], modes[k]);
    }
    if (infer) {
        printf("inference at batch 1 (KV cache): median of %d\n", b.runs);
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < nm; k++) bench_infer(&b, &shapes[s], modes[k]);
    }
    for (int s = 0; s < 2; s++) free(shapes[s].params);
    if (b.out) fclose(b.out);
    return b.failed;
}
