/* train_gpt2: train a GPT-2 (or Llama) model on a token file.
 *
 *   build/train_gpt2 -d train.bin [-v val.bin] [-m init] [options]
 *
 * The model comes from a checkpoint (-m: HF model.safetensors or its folder, llm.c
 * gpt2_*.bin, llama2.c .bin, or our own checkpoint), or is created from scratch with
 * GPT-2's initialisation in the shape the flags give (GPT-2 124M by default). The token
 * file is llm.c's layout (build/tokenize --bin writes it). Every step prints one line:
 *
 *   step 12/100 | loss 6.123456 | lr 3.0000e-04 | norm 1.2345 | 812.3 ms | 315 tok/s | eta 71s
 *
 * and the validation loss (every --eval-every steps, at the start and the end):
 *
 *   val step 12/100 | val loss 6.234567 | 420.0 ms
 *
 * With --precision fp16 (CUDA) the gradients are loss-scaled; a step whose gradient
 * overflowed fp16 is skipped, and its line ends "| skipped: ..., loss scale now S".
 *
 * --log FILE.jsonl writes the same as JSON, one line per step and per validation:
 *
 *   {"step":12,"loss":6.123456,"lr":3.0000e-04,"norm":1.2345,"ms":812.3,"tok_s":315.2}
 *   {"step":12,"val_loss":6.234567,"ms":420.0}
 *
 * and --plot FILE.svg draws the training and validation loss against the step
 * (examples/plot.h), rewritten at every validation and at the end.
 *
 * Data parallel over W GPUs, one process each, as torchrun runs PyTorch's DDP:
 *
 *   torchrun --nproc_per_node=8 --no-python build/cuda/train_gpt2 --device cuda --dist-id /tmp/id ...
 *
 * (or set --dist-rank R --dist-world W --dist-id FILE per process). All ranks start from the
 * same weights (the same seed or file), rank r trains on batches r, r+W, r+2W, ... of the
 * data order, and the gradients are averaged over the ranks before each step, so every
 * step sees W*B*T*accum tokens and the replicas stay identical. Only rank 0 prints,
 * evaluates, saves and samples; the printed loss is the mean over the ranks.
 *
 * Run without arguments for the flags. Errors print llm_last_error() and exit 1. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, getenv */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "plot.h"
#include <time.h>

static void usage(const char *argv0) {
    fprintf(stderr,
        "usage: %s -d TRAIN.bin [options]\n"
        "model (one of):\n"
        "  -m PATH            initial weights: safetensors (file or folder), llm.c .bin,\n"
        "                     llama2.c .bin or an llm.h checkpoint\n"
        "  --arch gpt2|llama  from scratch (default gpt2), shape (default GPT-2 124M):\n"
        "  --layers L --heads NH --embd C --vocab V --ctx maxT\n"
        "  --kv-heads NKV --hidden H   (llama: grouped-query heads, SwiGLU width; required H)\n"
        "  --resume PATH      continue a run saved with -o: weights, AdamW state, step, data order\n"
        "data:\n"
        "  -d PATH            training tokens (llm.c token file, e.g. from build/tokenize --bin)\n"
        "  -v PATH            validation tokens; without it the last --val-frac of -d (default 0.1)\n"
        "  --val-frac F       fraction of -d held out for validation when -v is absent (0: none)\n"
        "  -b B  -t T         batch size (4) and sequence length (64)\n"
        "  --no-shuffle       batch k covers tokens [k*B*T, k*B*T + B*T + 1) in order\n"
        "training:\n"
        "  -s N               steps (20)\n"
        "  --lr X --min-lr X  peak and final learning rate (3e-4, lr/10)\n"
        "  --schedule S       cosine (default) or const, after --warmup N steps (0)\n"
        "  --wd X             AdamW weight decay on 2-D weights (0.1)\n"
        "  --clip X           clip the global gradient norm (1.0; 0 = off)\n"
        "  --beta1 X --beta2 X --eps X   AdamW moment decays and epsilon (0.9, 0.95, 1e-8)\n"
        "  --accum K          micro-batches per step (1)\n"
        "  --dropout P        dropout in [0, 1) at GPT-2's places: embeddings, attention output\n"
        "                     projection, MLP output (0: none)\n"
        "  --recompute        keep one layer's activations, recompute the others in backward\n"
        "                     (the same gradients, bit for bit; about a third more compute)\n"
        "  --seed S           init and shuffle seed (1337)\n"
        "  --threads N        CPU threads (all cores)\n"
        "  --device cpu|cuda  cuda needs a build with -DLLM_CUDA=1 (make cuda)\n"
        "  --precision P      fp32 (default) or bf16: matmuls with bf16 operands, fp32 accumulation\n"
        "                     (CPU: needs AVX512-BF16 or ARM BF16, else fp32; CUDA: tensor cores, sm_80+),\n"
        "                     or fp16: the same in fp16, CUDA only (sm_70+, e.g. the T4), with dynamic\n"
        "                     loss scaling (from 65536, x2 after 2000 good steps, x0.5 and the step\n"
        "                     skipped when a gradient overflows)\n"
        "data parallel (CUDA, one process per GPU; torchrun's RANK, WORLD_SIZE, LOCAL_RANK are read\n"
        "when these are absent; LOCAL_RANK, else the rank modulo the GPU count, picks the GPU):\n"
        "  --dist-rank R --dist-world W   this process's rank in [0, W)\n"
        "  --dist-id FILE     rank 0 writes the NCCL id here, the others read it (W > 1; a\n"
        "                     path all ranks see; wait limit LLM_DIST_TIMEOUT seconds, 300)\n"
        "output:\n"
        "  -o PATH            save the checkpoint (with optimizer state) here at the end\n"
        "  --save-every N     ... and every N steps\n"
        "  --eval-every N     validation loss every N steps (0: only at start and end)\n"
        "  --eval-batches K   batches per validation (20)\n"
        "  --print-every N    print every Nth step line (1)\n"
        "  --log FILE.jsonl   every step and validation as a JSON line (appended to with --resume)\n"
        "  --plot FILE.svg    the training and validation loss curves, redrawn at each validation\n"
        "  --sample N         after training, generate N tokens (GPT-2 tokenizer needed)\n"
        "  --temp X --top-k K sampling for --sample (0 = greedy, the default)\n"
        "  --vocab DIR        GPT-2 tokenizer for --sample ($LLM_DATA/gpt2, data/gpt2, ../shared/data/gpt2)\n",
        argv0);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int g_world;   /* data parallel: the number of ranks, 0 for one process */
static int g_rank;

/* Print the library's message (naming the rank when there are several) and return the
 * exit code. */
static int fail(const char *what) {
    char who[32] = "";
    if (g_world > 1) snprintf(who, sizeof who, " (rank %d)", g_rank);
    if (what) fprintf(stderr, "train_gpt2%s: %s: %s\n", who, what, llm_last_error());
    else fprintf(stderr, "train_gpt2%s: %s\n", who, llm_last_error());
    return 1;
}

/* An integer from the environment (torchrun's RANK, WORLD_SIZE, LOCAL_RANK), or def. */
static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    char *e;
    long x = v && *v ? strtol(v, &e, 10) : 0;
    return v && *v && !*e && x >= 0 && x < 1000000 ? (int)x : def;
}

/* The GPT-2 tokenizer from --vocab or the default places (as build/tokenize). */
static llm_status load_tokenizer(llm_tokenizer **tok, const char *vocab) { return ex_load_gpt2_tokenizer(tok, vocab); }

/* Generate n tokens after <|endoftext|> with a full forward over the last maxT tokens
 * each step (simple, not fast: build/generate uses a KV cache) and print them. */
static int sample_text(llm_model *m, int n, float temp, int top_k, uint64_t seed, const char *vocab) {
    llm_tokenizer *tok = NULL;
    if (load_tokenizer(&tok, vocab) != LLM_OK) {
        fprintf(stderr, "train_gpt2: --sample skipped, no GPT-2 tokenizer: %s\n", llm_last_error());
        return 0;
    }
    llm_config c = llm_model_config(m);
    int V = c.vocab_size, TV = llm_tokenizer_vocab_size(tok);
    if (V < TV) {
        fprintf(stderr, "train_gpt2: --sample skipped, model vocab %d < tokenizer's %d\n", V, TV);
        llm_tokenizer_free(tok);
        return 0;
    }
    int maxT = c.max_seq_len, len = 0, rc = 0;
    int *ids = (int *)malloc((size_t)(n + 1) * sizeof(int));
    float *logits = (float *)malloc((size_t)maxT * (size_t)V * sizeof(float));
    llm_sampler_config sc = llm_sampler_config_default();
    sc.temperature = temp; sc.top_k = top_k; sc.seed = seed;
    llm_sampler *smp = NULL;
    char buf[256];
    llm_tokenizer_stream ts;
    llm_tokenizer_stream_init(&ts, tok);
    if (!ids || !logits) { fprintf(stderr, "train_gpt2: out of memory\n"); rc = 1; goto done; }
    if (llm_sampler_create(&smp, TV, &sc) != LLM_OK) { rc = fail("sampler"); goto done; }
    ids[len++] = llm_tokenizer_eot(tok) >= 0 ? llm_tokenizer_eot(tok) : 0;
    printf("---- sample (%d tokens, temp %g) ----\n", n, temp);
    for (int i = 0; i < n; i++) {
        int start = len > maxT ? len - maxT : 0, T = len - start, next;
        if (llm_model_forward(m, ids + start, NULL, 1, T, NULL) != LLM_OK ||
            llm_model_get_logits(m, logits) != LLM_OK) { rc = fail("sample forward"); goto done; }
        /* the tokenizer's V: ids past it (a padded vocabulary) are never chosen */
        if (llm_sampler_sample(smp, logits + (size_t)(T - 1) * V, NULL, 0, &next, NULL) != LLM_OK) {
            rc = fail("sample"); goto done;
        }
        ids[len++] = next;
        size_t nb = 0;
        if (llm_tokenizer_stream_put(&ts, next, buf, sizeof buf, &nb) == LLM_OK) fwrite(buf, 1, nb, stdout);
        fflush(stdout);
    }
    fwrite(buf, 1, llm_tokenizer_stream_flush(&ts, buf), stdout);
    printf("\n----\n");
done:
    llm_sampler_free(smp);
    free(logits); free(ids);
    llm_tokenizer_free(tok);
    return rc;
}

/* ---- --log and --plot ---- */
static FILE *g_log;                        /* --log: one JSON line per step and validation */
static const char *g_plot;                 /* --plot: the SVG, redrawn at each validation */
static double *g_curve[4];                 /* train step, train loss, val step, val loss */
static int g_n[2], g_cap[2];               /* points in the train / val curves */

static void add_point(int c, double x, double y) {
    if (g_n[c] == g_cap[c]) {
        int cap = g_cap[c] ? 2 * g_cap[c] : 256;
        double *a = (double *)realloc(g_curve[2 * c], (size_t)cap * sizeof(double));
        if (a) g_curve[2 * c] = a;
        double *b = (double *)realloc(g_curve[2 * c + 1], (size_t)cap * sizeof(double));
        if (b) g_curve[2 * c + 1] = b;
        if (!a || !b) return;              /* out of memory: the plot misses the point */
        g_cap[c] = cap;
    }
    g_curve[2 * c][g_n[c]] = x;
    g_curve[2 * c + 1][g_n[c]++] = y;
}
static void log_step(int step, double loss, float lr, float norm, double ms, double tok_s) {
    if (g_log) {
        fprintf(g_log, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.4e,\"norm\":%.4f,\"ms\":%.1f,\"tok_s\":%.1f}\n",
                step, loss, lr, norm, ms, tok_s);
        fflush(g_log);
    }
    if (g_plot) add_point(0, step, loss);
}
static void write_plot(void) {
    if (!g_plot) return;
    plot_chart c;
    plot_init(&c, "loss", "step", "cross-entropy loss");
    plot_add(&c, "train", g_curve[0], g_curve[1], g_n[0], 0);
    plot_add(&c, "val", g_curve[2], g_curve[3], g_n[1], 1);
    if (plot_write(&c, g_plot) != 0) fprintf(stderr, "train_gpt2: --plot: cannot write %s\n", g_plot);
}
static void log_val(int step, float loss, double ms) {
    if (g_log) {
        fprintf(g_log, "{\"step\":%d,\"val_loss\":%.6f,\"ms\":%.1f}\n", step, loss, ms);
        fflush(g_log);
    }
    if (g_plot) { add_point(1, step, loss); write_plot(); }
}

/* Mean loss over the first k batches of the validation loader (always the same ones,
 * so the numbers are comparable between evaluations and across resumed runs). */
static int evaluate(llm_model *m, llm_loader *val, int k, int step, int total, float *out) {
    if (!val->perm) return 0;
    double t0 = now_ms();
    float loss = 0;
    llm_loader_reset(val);
    if (llm_model_eval(m, val, k, &loss, NULL) != LLM_OK) return fail("validation");
    double ms = now_ms() - t0;
    printf("val step %d/%d | val loss %.6f | %.1f ms\n", step, total, loss, ms);
    fflush(stdout);
    log_val(step, loss, ms);
    if (out) *out = loss;
    return 0;
}

int main(int argc, char **argv) {
    const char *init = NULL, *resume = NULL, *train_path = NULL, *val_path = NULL, *out_path = NULL;
    const char *vocab = NULL, *arch = "gpt2", *device = "cpu", *schedule = "cosine";
    const char *precision = "fp32", *dist_id = NULL, *log_path = NULL;
    const int unset = -2147483647 - 1;   /* below anything ex_int returns */
    int dist_rank = unset, dist_world = unset;
    int B = 4, T = 64, steps = 20, warmup = 0, accum = 1, threads = 0, shuffle = 1, seed = 1337;
    int save_every = 0, eval_every = 0, eval_batches = 20, print_every = 1, n_sample = 0, top_k = 0;
    int layers = 0, heads = 0, embd = 0, vocab_size = 0, ctx = 0, kv_heads = 0, hidden = 0;
    float lr = 3e-4f, min_lr = -1.0f, wd = 0.1f, clip = 1.0f, val_frac = -1.0f, temp = 0.0f, dropout = 0.0f;
    int recompute = 0;
    llm_adamw_config adam = llm_adamw_config_default();   /* --beta1, --beta2, --eps */

    /* flags: each takes one value unless listed as a switch */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, *ip = NULL;
        float *fp = NULL;
        const char **sp = NULL;
        if (!strcmp(a, "--no-shuffle")) { shuffle = 0; continue; }
        if (!strcmp(a, "--recompute")) { recompute = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(argv[0]); return 0; }
        if (!strcmp(a, "-m")) sp = &init;
        else if (!strcmp(a, "--resume")) sp = &resume;
        else if (!strcmp(a, "-d")) sp = &train_path;
        else if (!strcmp(a, "-v")) sp = &val_path;
        else if (!strcmp(a, "-o")) sp = &out_path;
        else if (!strcmp(a, "--vocab")) sp = &vocab;
        else if (!strcmp(a, "--arch")) sp = &arch;
        else if (!strcmp(a, "--device")) sp = &device;
        else if (!strcmp(a, "--schedule")) sp = &schedule;
        else if (!strcmp(a, "--precision")) sp = &precision;
        else if (!strcmp(a, "--dist-id")) sp = &dist_id;
        else if (!strcmp(a, "--log")) sp = &log_path;
        else if (!strcmp(a, "--plot")) sp = &g_plot;
        else if (!strcmp(a, "--dist-rank")) ip = &dist_rank;
        else if (!strcmp(a, "--dist-world")) ip = &dist_world;
        else if (!strcmp(a, "-b")) ip = &B;
        else if (!strcmp(a, "-t")) ip = &T;
        else if (!strcmp(a, "-s")) ip = &steps;
        else if (!strcmp(a, "--warmup")) ip = &warmup;
        else if (!strcmp(a, "--accum")) ip = &accum;
        else if (!strcmp(a, "--threads")) ip = &threads;
        else if (!strcmp(a, "--seed")) ip = &seed;
        else if (!strcmp(a, "--save-every")) ip = &save_every;
        else if (!strcmp(a, "--eval-every")) ip = &eval_every;
        else if (!strcmp(a, "--eval-batches")) ip = &eval_batches;
        else if (!strcmp(a, "--print-every")) ip = &print_every;
        else if (!strcmp(a, "--sample")) ip = &n_sample;
        else if (!strcmp(a, "--top-k")) ip = &top_k;
        else if (!strcmp(a, "--layers")) ip = &layers;
        else if (!strcmp(a, "--heads")) ip = &heads;
        else if (!strcmp(a, "--embd")) ip = &embd;
        else if (!strcmp(a, "--vocab-size")) ip = &vocab_size;
        else if (!strcmp(a, "--ctx")) ip = &ctx;
        else if (!strcmp(a, "--kv-heads")) ip = &kv_heads;
        else if (!strcmp(a, "--hidden")) ip = &hidden;
        else if (!strcmp(a, "--lr")) fp = &lr;
        else if (!strcmp(a, "--min-lr")) fp = &min_lr;
        else if (!strcmp(a, "--wd")) fp = &wd;
        else if (!strcmp(a, "--clip")) fp = &clip;
        else if (!strcmp(a, "--beta1")) fp = &adam.beta1;
        else if (!strcmp(a, "--beta2")) fp = &adam.beta2;
        else if (!strcmp(a, "--eps")) fp = &adam.eps;
        else if (!strcmp(a, "--val-frac")) fp = &val_frac;
        else if (!strcmp(a, "--temp")) fp = &temp;
        else if (!strcmp(a, "--dropout")) fp = &dropout;
        else { fprintf(stderr, "train_gpt2: unknown flag %s (run with -h)\n", a); return 2; }
        if (!v) { fprintf(stderr, "train_gpt2: %s needs a value\n", a); return 2; }
        if (sp) *sp = v;
        else if (ip) ok = ex_int(a, v, ip);
        else ok = ex_float(a, v, fp);
        if (!ok) return 2;   /* ex_int, ex_float said why */
        i++;
    }
    /* --vocab V (a number) sets the vocabulary size; --vocab DIR names the tokenizer */
    if (vocab && *vocab && strspn(vocab, "0123456789") == strlen(vocab) && ex_int("--vocab", vocab, &vocab_size)) vocab = NULL;
    if (!train_path) { usage(argv[0]); return 2; }
    if (!(adam.beta1 >= 0 && adam.beta1 < 1) || !(adam.beta2 >= 0 && adam.beta2 < 1) || !(adam.eps > 0)) {
        fprintf(stderr, "train_gpt2: --beta1 and --beta2 must be in [0, 1), --eps above 0\n");
        return 2;
    }
    if (B <= 0 || T <= 0 || steps < 0 || accum <= 0 || warmup < 0 || print_every <= 0 || eval_batches <= 0) {
        fprintf(stderr, "train_gpt2: -b, -t, --accum, --print-every, --eval-batches must be positive; -s, --warmup >= 0\n");
        return 2;
    }
    int shape_flags = layers || heads || embd || vocab_size || ctx || kv_heads || hidden || strcmp(arch, "gpt2");
    if ((init || resume) && shape_flags) {
        fprintf(stderr, "train_gpt2: shape flags (--arch, --layers, ...) apply only when training from scratch, not with -m/--resume\n");
        return 2;
    }
    if (init && resume) { fprintf(stderr, "train_gpt2: give -m or --resume, not both\n"); return 2; }
    llm_lr_schedule sched;
    if (!strcmp(schedule, "cosine")) sched.kind = LLM_LR_COSINE;
    else if (!strcmp(schedule, "const")) sched.kind = LLM_LR_CONST;
    else { fprintf(stderr, "train_gpt2: --schedule is cosine or const, not %s\n", schedule); return 2; }
    sched.lr = lr; sched.min_lr = min_lr >= 0 ? min_lr : lr / 10; sched.warmup = warmup; sched.total = steps;

    /* data parallel: the flags, else torchrun's environment (WORLD_SIZE unset: one process) */
    if (dist_world == unset) dist_world = env_int("WORLD_SIZE", 0);
    if (dist_rank == unset) dist_rank = env_int("RANK", 0);
    if (dist_world < 0) { fprintf(stderr, "train_gpt2: --dist-world is >= 0 (0: one process), not %d\n", dist_world); return 2; }
    if (dist_world > 0 && (dist_rank < 0 || dist_rank >= dist_world)) {
        fprintf(stderr, "train_gpt2: --dist-rank %d is not in [0, --dist-world %d)\n", dist_rank, dist_world);
        return 2;
    }
    if (dist_world > 0 && strcmp(device, "cuda")) {
        fprintf(stderr, "train_gpt2: data parallel (world %d) runs on GPUs through NCCL: add --device cuda\n", dist_world);
        return 2;
    }
    if (dist_world > 1 && !dist_id) {
        fprintf(stderr, "train_gpt2: --dist-world %d needs --dist-id FILE, a path all ranks see (rank 0 writes the NCCL id there)\n", dist_world);
        return 2;
    }
    g_world = dist_world;
    g_rank = dist_world > 0 ? dist_rank : 0;
    int lead = g_rank == 0;   /* prints, evaluates, saves, samples */
    int W = dist_world > 1 ? dist_world : 1;

    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    opt.dist_rank = g_rank; opt.dist_world = dist_world; opt.dist_id_file = dist_id;
    if (!(dropout >= 0.0f && dropout < 1.0f)) { fprintf(stderr, "train_gpt2: --dropout %g must be in [0, 1)\n", dropout); return 2; }
    opt.dropout = dropout; opt.dropout_seed = (uint64_t)seed; opt.recompute = recompute;
    if (!strcmp(precision, "bf16")) opt.bf16 = 1;
    else if (!strcmp(precision, "fp16")) opt.fp16 = 1;
    else if (strcmp(precision, "fp32")) { fprintf(stderr, "train_gpt2: --precision is fp32, bf16 or fp16, not %s\n", precision); return 2; }
    if (opt.fp16 && strcmp(device, "cuda")) {
        fprintf(stderr, "train_gpt2: --precision fp16 runs on a GPU (--device cuda, sm_70+); the CPU has no fp16 "
                        "kernels: use fp32, or bf16 on a CPU with AVX512-BF16\n");
        return 2;
    }
    if (!strcmp(device, "cuda")) {
#ifdef LLM_CUDA
        int ndev = llm_cuda_device_count();
        if (ndev < 1) { fprintf(stderr, "train_gpt2: --device cuda: no CUDA device found\n"); return 1; }
        opt.backend = llm_cuda_backend();
        /* one GPU per rank: torchrun's LOCAL_RANK, else the rank modulo the GPUs here */
        if (dist_world > 0) opt.device = env_int("LOCAL_RANK", g_rank % ndev);
#else
        fprintf(stderr, "train_gpt2: --device cuda: this binary was built without CUDA (make cuda builds build/cuda/train_gpt2)\n");
        return 1;
#endif
    } else if (strcmp(device, "cpu")) {
        fprintf(stderr, "train_gpt2: --device is cpu or cuda, not %s\n", device);
        return 2;
    }

    /* ---- model ---- */
    llm_model *m = NULL;
    llm_train_state ts;
    memset(&ts, 0, sizeof ts);
    if (init || resume) {
        if (llm_model_load(&m, init ? init : resume, &opt) != LLM_OK) return fail(NULL);
        if (resume && llm_model_load_train_state(m, resume, &ts) != LLM_OK) { llm_model_free(m); return fail("--resume"); }
    } else {
        llm_config c = llm_config_gpt2();
        if (!strcmp(arch, "llama")) {
            c = llm_config_llama(c.vocab_size, c.n_layer, c.n_head, 0, c.n_embd, 0);
            c.max_seq_len = 1024;
        } else if (strcmp(arch, "gpt2")) {
            fprintf(stderr, "train_gpt2: --arch is gpt2 or llama, not %s\n", arch);
            return 2;
        }
        if (layers) c.n_layer = layers;
        if (heads) c.n_head = heads;
        if (embd) c.n_embd = embd;
        if (vocab_size) c.vocab_size = vocab_size;
        if (ctx) c.max_seq_len = ctx;
        if (kv_heads) c.n_kv_head = kv_heads;
        if (hidden) c.hidden_dim = hidden;
        if (c.arch == LLM_ARCH_LLAMA && !c.hidden_dim) {
            /* Llama's rule: 2/3 of 4C, rounded up to a multiple of 32 */
            c.hidden_dim = ((8 * c.n_embd / 3) + 31) / 32 * 32;
        }
        if (llm_model_create(&m, &c, &opt, (uint64_t)seed) != LLM_OK) return fail("model");
    }
    llm_config cfg = llm_model_config(m);
    if (T > cfg.max_seq_len) {
        fprintf(stderr, "train_gpt2: -t %d exceeds the model's context %d\n", T, cfg.max_seq_len);
        llm_model_free(m);
        return 2;
    }

    /* ---- data: train on [0, split), validate on [split, n) or on -v ---- */
    llm_dataset *train = NULL, *valdata = NULL;
    llm_loader tl, vl;
    memset(&tl, 0, sizeof tl); memset(&vl, 0, sizeof vl);
    int rc = 0, first = 0;
    if (llm_dataset_open(&train, train_path) != LLM_OK) { rc = fail(NULL); goto done; }
    {
        size_t n = llm_dataset_len(train), split = n;
        if (!val_path && val_frac < 0) val_frac = 0.1f;
        if (val_path) {
            if (llm_dataset_open(&valdata, val_path) != LLM_OK) { rc = fail(NULL); goto done; }
        } else if (val_frac > 0) {
            if (val_frac >= 1) { fprintf(stderr, "train_gpt2: --val-frac must be below 1\n"); rc = 2; goto done; }
            split = n - (size_t)((double)n * val_frac);
        }
        if (llm_loader_init(&tl, train, 0, split, B, T, shuffle, (uint64_t)seed) != LLM_OK) { rc = fail("training data"); goto done; }
        if (valdata) {
            if (llm_loader_init(&vl, valdata, 0, 0, B, T, 0, 0) != LLM_OK) { rc = fail("validation data"); goto done; }
        } else if (split < n) {
            if (llm_loader_init(&vl, train, split, n, B, T, 0, 0) != LLM_OK) {
                fprintf(stderr, "train_gpt2: no validation (%s)\n", llm_last_error());
                memset(&vl, 0, sizeof vl);
            }
        }
        if (vl.perm && (size_t)eval_batches > vl.n_batches) eval_batches = (int)vl.n_batches;
        /* what the matmuls really run in: the CPU's bf16 needs AVX512-BF16 or ARM BF16 */
        const char *prec = opt.fp16 ? "fp16 matmuls and attention (tensor cores), fp32 elsewhere; dynamic loss "
                                      "scaling from 65536 (x2 after 2000 good steps, x0.5 on overflow)"
                         : !opt.bf16 ? "fp32"
                         : opt.backend ? "bf16 matmuls (tensor cores), fp32 elsewhere"
                         : llm_bf16_supported() ? "bf16 matmuls (AVX512-BF16 or ARM BF16), fp32 elsewhere"
                         : "fp32 (bf16 needs AVX512-BF16 at the avx512 SIMD level, or ARM BF16 at neon)";
        if (lead) {
            printf("model: %s L=%d NH=%d NKV=%d C=%d V=%d maxT=%d, %.2fM parameters\n",
                   cfg.arch == LLM_ARCH_LLAMA ? "llama" : "gpt2", cfg.n_layer, cfg.n_head, cfg.n_kv_head,
                   cfg.n_embd, cfg.vocab_size, cfg.max_seq_len, llm_model_num_params(m) / 1e6);
            printf("data: %zu training tokens (%zu batches of %dx%d per epoch%s), %zu validation tokens\n",
                   split, tl.n_batches, B, T, shuffle ? ", shuffled" : ", in order",
                   valdata ? llm_dataset_len(valdata) : n - split);
            printf("run: %d steps, accum %d, lr %g -> %g (%s, warmup %d), AdamW betas %g %g eps %g, wd %g, clip %g, %s, %d threads, simd %s\n",
                   steps, accum, sched.lr, sched.min_lr, schedule, warmup, adam.beta1, adam.beta2, adam.eps, wd, clip, device,
                   threads > 0 ? threads : llm_cpu_count(), llm_simd_name(llm_simd_active()));
            printf("precision: %s\n", prec);
            if (dist_world > 0) printf("data parallel: %d ranks (rank 0 on cuda:%d), rank r takes batches r, r+%d, ...\n",
                                       dist_world, opt.device, W);
            printf("batch: %d ranks x %d x %d x accum %d = %zu tokens per step\n", W, B, T, accum,
                   (size_t)W * (size_t)B * (size_t)T * (size_t)accum);
            if (dropout > 0 || recompute) printf("dropout %g%s\n", dropout, recompute ? ", recompute" : "");
            ex_print_memory(m, B, T);
        }
    }
    if (lead && log_path && !(g_log = fopen(log_path, resume ? "a" : "w"))) {
        fprintf(stderr, "train_gpt2: --log: cannot open %s\n", log_path);
        rc = 1;
        goto done;
    }
    if (resume) {
        if (llm_loader_set_state(&tl, &ts) != LLM_OK) { rc = fail("--resume: data position"); goto done; }
        first = (int)ts.step;
        if (lead) printf("resumed %s at step %d\n", resume, first);
    }
    fflush(stdout);

    /* ---- the loop ---- */
    {
        llm_adamw_config ac = adam;
        ac.weight_decay = wd; ac.grad_clip = clip;
        /* fp16: backward on S x the loss, so that small gradients do not underflow fp16;
         * the step divides by S, or skips when a gradient overflowed (see llm_loss_scaler) */
        llm_loss_scaler scaler = llm_loss_scaler_default(), *sc = opt.fp16 ? &scaler : NULL;
        size_t BT = (size_t)B * (size_t)T;
        /* in, tg (B,T); with W ranks also skip_in, skip_tg (B,T) for the other ranks' batches */
        int *in = (int *)malloc((W > 1 ? 4 : 2) * BT * sizeof(int)), *tg = in + BT, *skip = in + 2 * BT;
        double total_ms = 0;
        int timed = 0;
        if (!in) { fprintf(stderr, "train_gpt2: out of memory\n"); rc = 1; goto done; }
        if (llm_model_reserve(m, B, T) != LLM_OK) { free(in); rc = fail("reserve"); ex_memory_levers("train_gpt2", 0); goto done; }
        if (lead && vl.perm && (rc = evaluate(m, &vl, eval_batches, first, steps, NULL)) != 0) { free(in); goto done; }
        for (int step = first; step < steps; step++) {
            double t0 = now_ms();
            float lr_now = llm_lr_at(&sched, step), norm = 0;
            double loss = 0;
            llm_status s = llm_model_zero_grad(m);
            for (int k = 0; k < accum && s == LLM_OK; k++) {
                float l = 0;
                /* every rank walks the same batch order and keeps every W-th batch, its own:
                 * the loaders stay in step, so rank 0's checkpoint resumes all of them */
                for (int j = 0; j < W && s == LLM_OK; j++)
                    s = j == g_rank ? llm_loader_next(&tl, in, tg) : llm_loader_next(&tl, skip, skip + BT);
                if (s == LLM_OK && (s = llm_model_forward(m, in, tg, B, T, &l)) == LLM_OK)
                    s = llm_model_backward(m, (sc ? sc->scale : 1.0f) / (float)accum);
                loss += l / accum;
            }
            /* the step averages the gradients over the ranks; the loss to print likewise */
            int skipped = 0;
            if (s == LLM_OK) s = llm_model_step_scaled(m, &ac, lr_now, sc, &norm, &skipped);
            if (s == LLM_OK && dist_world > 0) {
                float lf = (float)loss;
                if ((s = llm_model_allreduce_mean(m, &lf, 1)) == LLM_OK) loss = lf;
            }
            if (s != LLM_OK) {
                free(in);
                rc = fail("training step");
                if (s == LLM_ERR_NOMEM) ex_memory_levers("train_gpt2", 0);
                goto done;
            }
            double ms = now_ms() - t0;
            /* the first step warms caches and pages in memory: leave it out of the ETA */
            if (step > first) { total_ms += ms; timed++; }
            double avg = timed ? total_ms / timed : ms;
            if (lead) log_step(step + 1, loss, lr_now, norm, ms, (double)(BT * (size_t)accum * (size_t)W) / (ms / 1e3));
            if (lead && ((step + 1) % print_every == 0 || step == first || step + 1 == steps || skipped)) {
                printf("step %d/%d | loss %.6f | lr %.4e | norm %.4f | %.1f ms | %.0f tok/s | eta %.0fs",
                       step + 1, steps, loss, lr_now, norm, ms, (double)(BT * (size_t)accum * (size_t)W) / (ms / 1e3),
                       avg * (steps - step - 1) / 1e3);
                if (skipped) printf(" | skipped: a gradient overflowed fp16, loss scale now %g", (double)sc->scale);
                printf("\n");
                fflush(stdout);
            }
            int last = step + 1 == steps;
            if (lead && vl.perm && ((eval_every > 0 && (step + 1) % eval_every == 0) || last) &&
                (rc = evaluate(m, &vl, eval_batches, step + 1, steps, NULL)) != 0) { free(in); goto done; }
            if (lead && out_path && ((save_every > 0 && (step + 1) % save_every == 0) || last)) {
                llm_loader_get_state(&tl, &ts);
                ts.step = (uint64_t)(step + 1);
                if (llm_model_save(m, out_path, 1, &ts) != LLM_OK) { free(in); rc = fail(NULL); goto done; }
                printf("saved %s at step %d\n", out_path, step + 1);
                fflush(stdout);
            }
        }
        free(in);
        if (lead && timed) printf("mean %.1f ms/step, %.0f tok/s (after the first step)\n", total_ms / timed,
                                  (double)(BT * (size_t)accum * (size_t)W) * timed / (total_ms / 1e3));
        if (lead && sc) printf("fp16 loss scaling: %lld of %d steps skipped, loss scale %g at the end\n", sc->skipped,
                               steps - first, (double)sc->scale);
        if (lead) printf("peak memory (resident): %.1f MB\n", ex_peak_rss_mb());
    }
    if (lead) write_plot();
    if (lead && n_sample > 0) rc = sample_text(m, n_sample, temp, top_k, (uint64_t)seed, vocab);
done:
    if (g_log) fclose(g_log);
    for (int k = 0; k < 4; k++) free(g_curve[k]);
    llm_loader_free(&tl);
    llm_loader_free(&vl);
    llm_dataset_close(train);
    llm_dataset_close(valdata);
    llm_model_free(m);
    return rc;
}
