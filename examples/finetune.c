/* finetune: fine-tune a pretrained GPT-2 (or Llama) on your own text.
 *
 *   make gpt2                                   # GPT-2 124M into data/gpt2-124M/
 *   build/finetune -m data/gpt2-124M --text notes.txt -o notes.lora
 *   build/generate -m data/gpt2-124M --adapters notes.lora -p 'Dear diary,'
 *
 * Reads one or more UTF-8 text files (--text, repeatable), tokenizes them with the
 * model's own tokenizer (GPT-2's BPE, or llama2.c's tokenizer.bin for a Llama; every
 * file is one document, each begun by <|endoftext|> (GPT-2) or BOS (Llama)), holds the
 * last --val-frac of the tokens out for validation, and trains. By default it trains
 * LoRA adapters of rank 8 (--lora 0: every weight, "full fine-tuning"); then -o writes
 * the adapters alone, a small file that goes on top of any copy of the base
 * (build/generate --adapters, or --merge to bake them into a plain checkpoint).
 *
 * Each step prints train_gpt2's line, each evaluation the validation loss and the
 * perplexity exp(loss):
 *   step 12/200 | loss 3.123456 | lr 5.0000e-04 | norm 0.4321 | 812.3 ms | 1261 tok/s | eta 152s
 *   val step 12/200 | val loss 3.234567 | ppl 25.39 | 420.0 ms
 * At the start a memory line says what training needs (parameters, adapters, gradients,
 * AdamW moments, activations), at the end the process's peak resident memory.
 * --log FILE.jsonl writes the same numbers as JSON lines; --plot FILE.svg draws the
 * training and validation loss against the step (examples/plot.h), redrawn at each
 * evaluation, so it can be watched in a browser while the run goes on.
 *
 *   build/finetune -m MODEL --text FILE --eval-only      val loss X | ppl X (all the text)
 *   build/finetune -m BASE --adapters A --merge MERGED   a plain checkpoint with A merged
 *
 * Run with -h for every flag. Errors print the library's message and exit 1 (2 for a bad
 * command line); nothing is written unless training finished. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, getrusage */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include "plot.h"
#include <time.h>

#define MAX_TEXTS 256

typedef struct {
    const char *model, *out, *adapters, *merge, *tok_path, *log_path, *plot_path, *prompt, *data;
    const char *precision, *targets;
    const char *texts[MAX_TEXTS];
    int n_texts;
    int steps, B, T, accum, lora, seed, threads, eval_every, eval_batches, sample, sample_len, warmup;
    int recompute, eval_only, print_every;
    float lr, min_lr, lora_alpha, dropout, val_frac, wd, clip, temp;
} args;

static void usage(const char *argv0) {
    fprintf(stderr,
        "usage: %s -m MODEL --text FILE [--text FILE ...] [options]\n"
        "       %s -m MODEL --text FILE --eval-only\n"
        "       %s -m BASE --adapters ADAPTERS --merge MERGED\n"
        "model and text:\n"
        "  -m PATH            the model to start from: HF folder or model.safetensors (make gpt2),\n"
        "                     llm.c .bin, llama2.c .bin or an llm.h checkpoint\n"
        "  --text FILE        UTF-8 text to learn (repeatable: each file one document)\n"
        "  -d TOKENS.bin      or an llm.c token file instead of --text\n"
        "  -z TOKENIZER       GPT-2: a vocabulary folder or file (default: beside the model, then\n"
        "                     $LLM_DATA/gpt2, data/gpt2, ../shared/data/gpt2); Llama: tokenizer.bin\n"
        "                     (default: tok<V>.bin, then tokenizer.bin beside the model)\n"
        "  --val-frac F       the last F of the tokens are held out for validation (0.1)\n"
        "what trains:\n"
        "  --lora R           LoRA adapters of rank R (8); 0: every weight (full fine-tuning)\n"
        "  --lora-alpha A     the adapters' scale is A/R (2R)\n"
        "  --lora-targets L   comma list of qkv, proj, up, down (all four)\n"
        "  --adapters FILE    start from these adapters (with --merge: the ones to merge)\n"
        "training:\n"
        "  -s N               steps (200)\n"
        "  -b B  -t T         batch size (4) and sequence length (256, at most the model's context)\n"
        "  --accum K          micro-batches per step (1): K*B*T tokens a step, the memory of B*T\n"
        "  --lr X             peak learning rate (LoRA 5e-4, full 5e-5), after --warmup N steps\n"
        "                     (steps/10), cosine down to --min-lr (lr/10)\n"
        "  --wd X --clip X    AdamW weight decay (0.01) and gradient-norm clip (1.0; 0 = off)\n"
        "  --dropout P        dropout in [0, 1) at GPT-2's places (0)\n"
        "  --recompute        keep one layer's activations, recompute the rest in backward\n"
        "  --precision P      fp32 (default) or bf16 matmuls (CPU: AVX512-BF16, else fp32)\n"
        "  --seed S           adapters, data order and dropout (1337)\n"
        "  --threads N        CPU threads (all cores)\n"
        "output:\n"
        "  -o PATH            LoRA: the adapters alone; full: a checkpoint (at the end)\n"
        "  --eval-every N     validation every N steps (steps/10), and at the start and end\n"
        "  --eval-batches K   at most K batches per validation (20)\n"
        "  --sample N         every N steps (and at the end) write --sample-len tokens (64) from\n"
        "                     --prompt TEXT (default: a new document) at --temp X (0.8)\n"
        "  --print-every N    print every Nth step line (1)\n"
        "  --log FILE.jsonl   one JSON line per step and evaluation (train_gpt2's, with ppl)\n"
        "  --plot FILE.svg    the training and validation loss curves, redrawn at each evaluation\n"
        "other modes:\n"
        "  --eval-only        print 'val loss X | ppl X' over all the text, train nothing\n"
        "  --merge OUT        with --adapters: write the base with the adapters merged in\n",
        argv0, argv0, argv0);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
static int fail(const char *what) {
    if (what) fprintf(stderr, "finetune: %s: %s\n", what, llm_last_error());
    else fprintf(stderr, "finetune: %s\n", llm_last_error());
    return 1;
}
/* Out of memory: the library names what did not fit; these are the flags that need less. */
static int fail_mem(const char *what) {
    fail(what);
    ex_memory_levers("finetune", 1);
    return 1;
}

/* ---- text ------------------------------------------------------------------------------ */
/* The offset of the first byte that does not begin (or continue) valid UTF-8 in p[0, n)
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or n. */
static size_t utf8_invalid(const unsigned char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n) return i;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return i;
        i += len;
    }
    return n;
}

/* The whole of a text file, checked: not empty, UTF-8 (a leading byte-order mark is
 * dropped). Returns a malloc'd buffer (*len bytes) or NULL after printing why. */
static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "finetune: %s: cannot open\n", path); return NULL; }
    size_t cap = 1 << 16, n = 0, got;
    char *b = (char *)malloc(cap);
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *t = cap > ((size_t)1 << 40) ? NULL : (char *)realloc(b, cap *= 2);
            if (!t) { free(b); b = NULL; }
            else b = t;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!b || err) { fprintf(stderr, "finetune: %s: %s\n", path, b ? "read error" : "out of memory"); free(b); return NULL; }
    size_t start = n >= 3 && (unsigned char)b[0] == 0xEF && (unsigned char)b[1] == 0xBB && (unsigned char)b[2] == 0xBF ? 3 : 0;
    size_t bad = utf8_invalid((const unsigned char *)b + start, n - start) + start;
    if (bad < n) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++) line += b[i] == '\n';
        fprintf(stderr, "finetune: %s: not UTF-8 text: byte 0x%02x at offset %zu (line %zu); convert it first, "
                        "e.g. iconv -f latin1 -t utf-8\n", path, (unsigned char)b[bad], bad, line);
        free(b);
        return NULL;
    }
    int blank = 1;
    for (size_t i = start; i < n && blank; i++)
        if (!(b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == '\f' || b[i] == '\v')) blank = 0;
    if (blank) {
        fprintf(stderr, "finetune: %s: the file is empty%s\n", path, n > start ? " (only whitespace)" : "");
        free(b);
        return NULL;
    }
    memmove(b, b + start, n - start);
    *len = n - start;
    return b;
}

/* ---- the model's tokenizer ------------------------------------------------------------- */
typedef struct { llm_tokenizer *gpt2; llm_llama_tokenizer *llama; } tokenizer;
/* The folder a model lives in ("" for the current one), with a trailing slash. */
static void model_dir(const char *model, char *out, size_t cap) {
    if (ex_is_dir(model)) { snprintf(out, cap, "%s/", model); return; }
    snprintf(out, cap, "%s", model);
    char *slash = strrchr(out, '/');
    if (slash) slash[1] = 0; else out[0] = 0;
}

static int load_tokenizer(tokenizer *tk, const char *model, const char *z, const llm_config *c) {
    char dir[4096], path[4200];
    model_dir(model, dir, sizeof dir);
    if (c->arch == LLM_ARCH_LLAMA) {
        if (z) snprintf(path, sizeof path, "%s", z);
        else {
            snprintf(path, sizeof path, "%stok%d.bin", dir, c->vocab_size);
            if (!ex_file_exists(path)) snprintf(path, sizeof path, "%stokenizer.bin", dir);
        }
        if (llm_llama_tokenizer_load(&tk->llama, path, c->vocab_size) != LLM_OK) {
            fail("tokenizer");
            fprintf(stderr, "finetune: a Llama needs llama2.c's tokenizer of its %d tokens: pass it with -z\n", c->vocab_size);
            return 0;
        }
        return 1;
    }
    llm_status s = ex_load_model_gpt2_tokenizer(&tk->gpt2, z, model);
    if (s != LLM_OK) {
        fail("tokenizer");
        fprintf(stderr, "finetune: GPT-2 needs its vocabulary (vocab.json + merges.txt): beside the model, "
                        "in $LLM_DATA/gpt2 or data/gpt2 (make data), or with -z\n");
        return 0;
    }
    if (llm_tokenizer_vocab_size(tk->gpt2) > c->vocab_size) {
        fprintf(stderr, "finetune: the tokenizer has %d tokens, more than the model's %d\n",
                llm_tokenizer_vocab_size(tk->gpt2), c->vocab_size);
        return 0;
    }
    return 1;
}

/* Tokenize the files into one stream: each file one document, begun by <|endoftext|>
 * (GPT-2, as GPT-2's and llm.c's training data) or BOS (Llama, as llama2.c's). */
static int *tokenize_texts(const args *a, const tokenizer *tk, int threads, size_t *n_out) {
    size_t n = 0, cap = 0;
    int *ids = NULL;
    llm_pool *pool = tk->gpt2 ? llm_pool_create(threads) : NULL;
    for (int f = 0; f < a->n_texts; f++) {
        size_t len = 0, got = 0;
        char *text = read_text(a->texts[f], &len);
        if (!text) { free(ids); llm_pool_free(pool); return NULL; }
        size_t need = n + len + 4;
        if (need > cap) {
            int *t = (int *)realloc(ids, need * sizeof(int));
            if (!t) { free(text); free(ids); llm_pool_free(pool); fprintf(stderr, "finetune: out of memory\n"); return NULL; }
            ids = t; cap = need;
        }
        llm_status s;
        if (tk->gpt2) {
            ids[n++] = llm_tokenizer_eot(tk->gpt2) >= 0 ? llm_tokenizer_eot(tk->gpt2) : 0;
            s = llm_tokenizer_encode_pool(tk->gpt2, pool, text, len, 0, ids + n, cap - n, &got);
        } else {
            int k = 0;
            s = len + 3 > (size_t)2147483647 ? LLM_ERR_ARG
                : llm_llama_tokenizer_encode(tk->llama, text, len, 1, 0, ids + n, (int)(cap - n), &k);
            got = (size_t)k;
        }
        free(text);
        if (s != LLM_OK) { fprintf(stderr, "finetune: %s: %s\n", a->texts[f], llm_last_error()); free(ids); llm_pool_free(pool); return NULL; }
        n += got;
    }
    llm_pool_free(pool);
    *n_out = n;
    return ids;
}

/* ---- pieces of the run ------------------------------------------------------------------ */
static FILE *g_log;

/* --plot: the curves so far. The run's length is known, so the arrays are sized once:
 * a point per step, a validation at most every step plus the one at step 0. */
static struct {
    const char *path;
    double *x[2], *y[2];   /* [0] training (step, loss), [1] validation (step, val loss) */
    int n[2];
} g_plot;

static int plot_open(const char *path, int steps) {
    g_plot.path = path;
    for (int c = 0; c < 2; c++) {
        g_plot.x[c] = (double *)malloc(((size_t)steps + 1) * sizeof(double));
        g_plot.y[c] = (double *)malloc(((size_t)steps + 1) * sizeof(double));
        if (!g_plot.x[c] || !g_plot.y[c]) { fprintf(stderr, "finetune: out of memory\n"); return 1; }
    }
    return 0;
}
static void plot_point(int c, int step, double loss) {
    if (!g_plot.path) return;
    g_plot.x[c][g_plot.n[c]] = step;
    g_plot.y[c][g_plot.n[c]++] = loss;
}
/* Returns 0, or 1 when the file cannot be written (said on stderr). */
static int plot_draw(void) {
    if (!g_plot.path) return 0;
    plot_chart c;
    plot_init(&c, "fine-tuning", "step", "cross-entropy loss");
    plot_add(&c, "train", g_plot.x[0], g_plot.y[0], g_plot.n[0], 0);
    plot_add(&c, "val", g_plot.x[1], g_plot.y[1], g_plot.n[1], 1);
    if (plot_write(&c, g_plot.path) == 0) return 0;
    fprintf(stderr, "finetune: --plot: cannot write %s\n", g_plot.path);
    return 1;
}

static int evaluate(llm_model *m, llm_loader *val, int k, int step, int total) {
    double t0 = now_ms();
    float loss = 0, ppl = 0;
    llm_loader_reset(val);
    if (llm_model_eval(m, val, k, &loss, &ppl) != LLM_OK) return fail("validation");
    double ms = now_ms() - t0;
    printf("val step %d/%d | val loss %.6f | ppl %.4f | %.1f ms\n", step, total, loss, ppl, ms);
    fflush(stdout);
    if (g_log) { fprintf(g_log, "{\"step\":%d,\"val_loss\":%.6f,\"ppl\":%.4f,\"ms\":%.1f}\n", step, loss, ppl, ms); fflush(g_log); }
    plot_point(1, step, loss);
    return plot_draw();
}

/* Write n tokens after the prompt with the KV cache (dropout off), print them. */
static int sample(llm_model *m, const tokenizer *tk, const char *prompt, int n, float temp, uint64_t seed, int step) {
    llm_config c = llm_model_config(m);
    int *in = NULL, *out = NULL, np = 0, n_out = 0, rc = 0;
    size_t plen = prompt ? strlen(prompt) : 0;
    llm_kv *kv = NULL;
    in = (int *)malloc((plen + 4) * sizeof(int));
    out = (int *)malloc(((size_t)n + 1) * sizeof(int));
    if (!in || !out) { fprintf(stderr, "finetune: out of memory\n"); rc = 1; goto done; }
    if (tk->gpt2) {
        size_t k = 0;
        in[np++] = llm_tokenizer_eot(tk->gpt2) >= 0 ? llm_tokenizer_eot(tk->gpt2) : 0;   /* a new document */
        if (plen && llm_tokenizer_encode(tk->gpt2, prompt, plen, 0, in + 1, plen + 2, &k) != LLM_OK) { rc = fail("prompt"); goto done; }
        np += (int)k;
    } else if (llm_llama_tokenizer_encode(tk->llama, prompt ? prompt : "", plen, 1, 0, in, (int)plen + 3, &np) != LLM_OK) {
        rc = fail("prompt"); goto done;
    }
    if (np >= c.max_seq_len) { fprintf(stderr, "finetune: --prompt is longer than the context\n"); rc = 1; goto done; }
    if (llm_kv_create(&kv, m, 1, 0, 0) != LLM_OK) { rc = fail("sample"); goto done; }
    {
        llm_generate_config g = llm_generate_config_default();
        g.max_new_tokens = n < c.max_seq_len - np ? n : c.max_seq_len - np;
        g.sampler.temperature = temp; g.sampler.seed = seed;
        g.stop_token = tk->gpt2 ? llm_tokenizer_eot(tk->gpt2) : LLM_LLAMA_BOS;
        if (llm_generate(kv, 0, in, np, &g, out, n, &n_out, NULL, NULL) != LLM_OK) { rc = fail("sample"); goto done; }
    }
    printf("---- sample at step %d ----\n%s", step, prompt ? prompt : "");
    if (tk->gpt2) {
        size_t k = 0;
        char *text = (char *)malloc((size_t)n_out * llm_tokenizer_max_token_len(tk->gpt2) + 1);
        if (text && llm_tokenizer_decode(tk->gpt2, out, (size_t)n_out, text, (size_t)n_out * llm_tokenizer_max_token_len(tk->gpt2), &k) == LLM_OK)
            fwrite(text, 1, k, stdout);
        free(text);
    } else {
        for (int i = 0; i < n_out; i++) {
            size_t k = 0;
            const char *p = llm_llama_tokenizer_decode(tk->llama, i ? out[i - 1] : in[np - 1], out[i], &k);
            if (p) fwrite(p, 1, k, stdout);
        }
    }
    printf("\n----\n");
    fflush(stdout);
done:
    llm_kv_free(kv);
    free(in); free(out);
    return rc;
}


/* comma list of qkv, proj, up, down -> LLM_LORA_* bits (0 on a bad name) */
static int parse_targets(const char *s) {
    int bits = 0;
    while (*s) {
        size_t k = strcspn(s, ",");
        if (k == 3 && !strncmp(s, "qkv", 3)) bits |= LLM_LORA_QKV;
        else if (k == 4 && !strncmp(s, "proj", 4)) bits |= LLM_LORA_PROJ;
        else if (k == 2 && !strncmp(s, "up", 2)) bits |= LLM_LORA_UP;
        else if (k == 4 && !strncmp(s, "down", 4)) bits |= LLM_LORA_DOWN;
        else return 0;
        s += k + (s[k] == ',');
    }
    return bits;
}


/* 0: parsed; 1: -h; 2: an error (printed) */
static int parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->steps = 200; a->B = 4; a->T = 256; a->accum = 1; a->lora = 8; a->seed = 1337; a->eval_batches = 20;
    a->sample_len = 64; a->warmup = -1; a->print_every = 1; a->eval_every = -1;
    a->lr = -1; a->min_lr = -1; a->val_frac = 0.1f; a->wd = 0.01f; a->clip = 1.0f; a->temp = 0.8f;
    a->precision = "fp32";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1, *ip = NULL;
        float *fp = NULL;
        const char **sp = NULL;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) return 1;
        if (!strcmp(s, "--recompute")) { a->recompute = 1; continue; }
        if (!strcmp(s, "--eval-only")) { a->eval_only = 1; continue; }
        if (!strcmp(s, "-m")) sp = &a->model;
        else if (!strcmp(s, "--text")) {
            if (a->n_texts == MAX_TEXTS) { fprintf(stderr, "finetune: at most %d --text files\n", MAX_TEXTS); return 2; }
            sp = &a->texts[a->n_texts++];
        }
        else if (!strcmp(s, "-d")) sp = &a->data;
        else if (!strcmp(s, "-o")) sp = &a->out;
        else if (!strcmp(s, "-z")) sp = &a->tok_path;
        else if (!strcmp(s, "--adapters")) sp = &a->adapters;
        else if (!strcmp(s, "--merge")) sp = &a->merge;
        else if (!strcmp(s, "--log")) sp = &a->log_path;
        else if (!strcmp(s, "--plot")) sp = &a->plot_path;
        else if (!strcmp(s, "--prompt")) sp = &a->prompt;
        else if (!strcmp(s, "--precision")) sp = &a->precision;
        else if (!strcmp(s, "--lora-targets")) sp = &a->targets;
        else if (!strcmp(s, "-s")) ip = &a->steps;
        else if (!strcmp(s, "-b")) ip = &a->B;
        else if (!strcmp(s, "-t")) ip = &a->T;
        else if (!strcmp(s, "--accum")) ip = &a->accum;
        else if (!strcmp(s, "--lora")) ip = &a->lora;
        else if (!strcmp(s, "--seed")) ip = &a->seed;
        else if (!strcmp(s, "--threads")) ip = &a->threads;
        else if (!strcmp(s, "--eval-every")) ip = &a->eval_every;
        else if (!strcmp(s, "--eval-batches")) ip = &a->eval_batches;
        else if (!strcmp(s, "--sample")) ip = &a->sample;
        else if (!strcmp(s, "--sample-len")) ip = &a->sample_len;
        else if (!strcmp(s, "--warmup")) ip = &a->warmup;
        else if (!strcmp(s, "--print-every")) ip = &a->print_every;
        else if (!strcmp(s, "--lr")) fp = &a->lr;
        else if (!strcmp(s, "--min-lr")) fp = &a->min_lr;
        else if (!strcmp(s, "--lora-alpha")) fp = &a->lora_alpha;
        else if (!strcmp(s, "--dropout")) fp = &a->dropout;
        else if (!strcmp(s, "--val-frac")) fp = &a->val_frac;
        else if (!strcmp(s, "--wd")) fp = &a->wd;
        else if (!strcmp(s, "--clip")) fp = &a->clip;
        else if (!strcmp(s, "--temp")) fp = &a->temp;
        else { fprintf(stderr, "finetune: unknown flag %s (run with -h)\n", s); return 2; }
        if (!v) { fprintf(stderr, "finetune: %s needs a value\n", s); return 2; }
        if (sp) *sp = v;
        else if (ip) ok = ex_int(s, v, ip);
        else ok = ex_float(s, v, fp);
        if (!ok) return 2;
        i++;
    }
    if (!a->model) { fprintf(stderr, "finetune: -m MODEL is required (run with -h)\n"); return 2; }
    if (a->merge) {
        if (!a->adapters) { fprintf(stderr, "finetune: --merge needs --adapters FILE\n"); return 2; }
        return 0;
    }
    if (!a->n_texts && !a->data) { fprintf(stderr, "finetune: give the text to learn with --text FILE (or -d TOKENS.bin)\n"); return 2; }
    if (a->n_texts && a->data) { fprintf(stderr, "finetune: give --text or -d, not both\n"); return 2; }
    if (a->B <= 0 || a->T <= 0 || a->accum <= 0 || a->steps < 0 || a->print_every <= 0 || a->eval_batches <= 0 || a->sample_len <= 0) {
        fprintf(stderr, "finetune: -b, -t, --accum, --print-every, --eval-batches, --sample-len must be positive, -s >= 0\n");
        return 2;
    }
    if (a->lora < 0) { fprintf(stderr, "finetune: --lora is a rank >= 1, or 0 for full fine-tuning\n"); return 2; }
    if (!(a->dropout >= 0.0f && a->dropout < 1.0f)) { fprintf(stderr, "finetune: --dropout %g must be in [0, 1)\n", a->dropout); return 2; }
    if (!(a->val_frac >= 0.0f && a->val_frac < 1.0f)) { fprintf(stderr, "finetune: --val-frac %g must be in [0, 1)\n", a->val_frac); return 2; }
    if (a->lora == 0 && (a->targets || a->lora_alpha != 0.0f || a->adapters)) {
        fprintf(stderr, "finetune: --lora-targets, --lora-alpha and --adapters need --lora R > 0\n"); return 2;
    }
    if (strcmp(a->precision, "fp32") && strcmp(a->precision, "bf16")) { fprintf(stderr, "finetune: --precision is fp32 or bf16, not %s\n", a->precision); return 2; }
    if (a->lr < 0) a->lr = a->lora ? 5e-4f : 5e-5f;
    if (a->min_lr < 0) a->min_lr = a->lr / 10;
    if (a->warmup < 0) a->warmup = a->steps / 10;
    if (a->eval_every < 0) a->eval_every = a->steps >= 10 ? a->steps / 10 : 0;
    return 0;
}

int main(int argc, char **argv) {
    args a;
    int pr = parse_args(argc, argv, &a);
    if (pr == 1) { usage(argv[0]); return 0; }
    if (pr) return 2;

    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = a.threads;
    opt.bf16 = !strcmp(a.precision, "bf16");
    opt.recompute = a.recompute;
    opt.dropout = a.eval_only || a.merge ? 0.0f : a.dropout;
    opt.dropout_seed = (uint64_t)a.seed;
    llm_model *m = NULL;
    if (llm_model_load(&m, a.model, &opt) != LLM_OK) return fail(NULL);
    llm_config cfg = llm_model_config(m);
    int rc = 0;
    tokenizer tk;
    memset(&tk, 0, sizeof tk);
    llm_dataset *data = NULL;
    llm_loader tl, vl;
    memset(&tl, 0, sizeof tl); memset(&vl, 0, sizeof vl);
    int *in = NULL;

    /* ---- --merge: base + adapters -> a plain checkpoint ---- */
    if (a.merge) {
        if (llm_model_lora_load(m, a.adapters, NULL) != LLM_OK) { rc = fail(NULL); goto done; }
        llm_lora_config lc = llm_model_lora_config(m);
        if (llm_model_lora_merge(m) != LLM_OK || llm_model_save(m, a.merge, 0, NULL) != LLM_OK) { rc = fail(NULL); goto done; }
        printf("merged %s (rank %d, alpha %g) into %s: %s\n", a.adapters, lc.rank, lc.alpha, a.model, a.merge);
        goto done;
    }

    /* ---- the text, tokenized with the model's own tokenizer ---- */
    if (a.data) {
        if (llm_dataset_open(&data, a.data) != LLM_OK) { rc = fail(NULL); goto done; }
        if (a.sample && !load_tokenizer(&tk, a.model, a.tok_path, &cfg)) { rc = 1; goto done; }
    } else {
        size_t n = 0;
        if (!load_tokenizer(&tk, a.model, a.tok_path, &cfg)) { rc = 1; goto done; }
        int *ids = tokenize_texts(&a, &tk, a.threads, &n);
        if (!ids) { rc = 1; goto done; }
        llm_status s = llm_dataset_from_tokens(&data, ids, n);
        free(ids);
        if (s != LLM_OK) { rc = fail("tokens"); goto done; }
    }
    if (a.T > cfg.max_seq_len) { fprintf(stderr, "finetune: -t %d exceeds the model's context %d\n", a.T, cfg.max_seq_len); rc = 2; goto done; }
    {
        const uint16_t *tokens = llm_dataset_tokens(data);
        size_t n = llm_dataset_len(data);
        for (size_t i = 0; i < n; i++)
            if (tokens[i] >= cfg.vocab_size) {
                fprintf(stderr, "finetune: token %zu is %d, outside the model's vocabulary of %d\n", i, tokens[i], cfg.vocab_size);
                rc = 1; goto done;
            }
        size_t n_val = a.eval_only ? n : (size_t)((double)n * a.val_frac), split = n - n_val;
        /* the validation batches: as many windows of T as the held-out part has, up to B */
        if (n_val > 0) {
            size_t windows = (n_val - 1) / (size_t)a.T;
            int Bv = windows < (size_t)a.B ? (int)windows : a.B;
            if (Bv < 1) {
                fprintf(stderr, "finetune: the %s holds %zu tokens, too few for one sequence of -t %d (+1); give more text%s or a smaller -t\n",
                        a.eval_only ? "text" : "validation part (--val-frac)", n_val, a.T, a.eval_only ? "" : ", a larger --val-frac");
                rc = 1; goto done;
            }
            if (llm_loader_init(&vl, data, split, n, Bv, a.T, 0, 0) != LLM_OK) { rc = fail("validation data"); goto done; }
        }
        if (a.eval_only) {
            float loss = 0, ppl = 0;
            if (a.adapters && llm_model_lora_load(m, a.adapters, NULL) != LLM_OK) { rc = fail(NULL); goto done; }
            if (llm_model_eval(m, &vl, (int)vl.n_batches, &loss, &ppl) != LLM_OK) { rc = fail("evaluation"); goto done; }
            printf("val loss %.6f | ppl %.4f\n", loss, ppl);
            fprintf(stderr, "finetune: %zu tokens in %zu windows of %d\n", n, vl.n_batches * (size_t)vl.B, a.T);
            goto done;
        }
        if (llm_loader_init(&tl, data, 0, split, a.B, a.T, 1, (uint64_t)a.seed) != LLM_OK) {
            rc = fail("training data");
            fprintf(stderr, "finetune: %zu training tokens: give more text, or a smaller -b or -t\n", split);
            goto done;
        }
        if (a.eval_batches > (int)vl.n_batches && vl.perm) a.eval_batches = (int)vl.n_batches;
        printf("model: %s L=%d NH=%d C=%d V=%d maxT=%d, %.2fM parameters\n", cfg.arch == LLM_ARCH_LLAMA ? "llama" : "gpt2",
               cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size, cfg.max_seq_len, llm_model_num_params(m) / 1e6);
        printf("text: %zu tokens: %zu to train on (%zu batches of %dx%d an epoch), %zu held out\n", n, split, tl.n_batches,
               a.B, a.T, n_val);
    }

    /* ---- what trains ---- */
    if (a.lora > 0) {
        if (a.adapters) {
            if (llm_model_lora_load(m, a.adapters, NULL) != LLM_OK) { rc = fail(NULL); goto done; }
        } else {
            llm_lora_config lc;
            memset(&lc, 0, sizeof lc);
            lc.rank = a.lora; lc.alpha = a.lora_alpha; lc.seed = (uint64_t)a.seed;
            lc.targets = a.targets ? parse_targets(a.targets) : LLM_LORA_ALL;
            if (!lc.targets) { fprintf(stderr, "finetune: --lora-targets is a comma list of qkv, proj, up, down\n"); rc = 2; goto done; }
            if (llm_model_lora_create(m, &lc) != LLM_OK) { rc = fail("--lora"); goto done; }
        }
        llm_lora_config lc = llm_model_lora_config(m);
        printf("training: LoRA rank %d, alpha %g, %zu adapter parameters (%.3f%% of the model); the base is frozen\n",
               lc.rank, lc.alpha, llm_model_lora_num_params(m), 100.0 * llm_model_lora_num_params(m) / llm_model_num_params(m));
    } else {
        printf("training: every parameter (full fine-tuning)\n");
    }
    printf("run: %d steps of %d x %d x accum %d tokens, lr %g -> %g (cosine, warmup %d), wd %g, clip %g, dropout %g%s, "
           "%s, %d threads\n", a.steps, a.B, a.T, a.accum, a.lr, a.min_lr, a.warmup, a.wd, a.clip, a.dropout,
           a.recompute ? ", recompute" : "", opt.bf16 && llm_bf16_supported() ? "bf16 matmuls" : "fp32",
           a.threads > 0 ? a.threads : llm_cpu_count());
    ex_print_memory(m, a.B, a.T);
    fflush(stdout);
    if (a.log_path && !(g_log = fopen(a.log_path, "w"))) { fprintf(stderr, "finetune: %s: cannot create\n", a.log_path); rc = 1; goto done; }
    if (a.plot_path && (rc = plot_open(a.plot_path, a.steps)) != 0) goto done;

    /* ---- the loop ---- */
    {
        llm_adamw_config ac = llm_adamw_config_default();
        ac.weight_decay = a.wd; ac.grad_clip = a.clip;
        llm_lr_schedule sched;
        sched.kind = LLM_LR_COSINE; sched.lr = a.lr; sched.min_lr = a.min_lr; sched.warmup = a.warmup; sched.total = a.steps;
        size_t BT = (size_t)a.B * (size_t)a.T;
        double total_ms = 0;
        int timed = 0;
        in = (int *)malloc(2 * BT * sizeof(int));
        if (!in) { fprintf(stderr, "finetune: out of memory\n"); rc = 1; goto done; }
        if (llm_model_reserve(m, a.B, a.T) != LLM_OK) { rc = fail_mem("reserve"); goto done; }
        if (vl.perm && (rc = evaluate(m, &vl, a.eval_batches, 0, a.steps)) != 0) goto done;
        for (int step = 0; step < a.steps; step++) {
            double t0 = now_ms();
            float lr = llm_lr_at(&sched, step), norm = 0;
            double loss = 0;
            llm_status s = llm_model_zero_grad(m);
            for (int k = 0; k < a.accum && s == LLM_OK; k++) {
                float l = 0;
                if ((s = llm_loader_next(&tl, in, in + BT)) == LLM_OK && (s = llm_model_forward(m, in, in + BT, a.B, a.T, &l)) == LLM_OK)
                    s = llm_model_backward(m, 1.0f / (float)a.accum);
                loss += l / a.accum;
            }
            if (s == LLM_OK) s = llm_model_step(m, &ac, lr, &norm);
            if (s != LLM_OK) { rc = s == LLM_ERR_NOMEM ? fail_mem("training step") : fail("training step"); goto done; }
            double ms = now_ms() - t0;
            if (step > 0) { total_ms += ms; timed++; }
            double avg = timed ? total_ms / timed : ms, tps = (double)(BT * (size_t)a.accum) / (ms / 1e3);
            if ((step + 1) % a.print_every == 0 || step == 0 || step + 1 == a.steps) {
                printf("step %d/%d | loss %.6f | lr %.4e | norm %.4f | %.1f ms | %.0f tok/s | eta %.0fs\n",
                       step + 1, a.steps, loss, lr, norm, ms, tps, avg * (a.steps - step - 1) / 1e3);
                fflush(stdout);
            }
            if (g_log) fprintf(g_log, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.4e,\"norm\":%.4f,\"ms\":%.1f,\"tok_s\":%.1f}\n",
                               step + 1, loss, lr, norm, ms, tps);
            plot_point(0, step + 1, loss);
            int last = step + 1 == a.steps;
            if (vl.perm && ((a.eval_every > 0 && (step + 1) % a.eval_every == 0) || last) &&
                (rc = evaluate(m, &vl, a.eval_batches, step + 1, a.steps)) != 0) goto done;
            if (a.sample > 0 && tk.gpt2 == NULL && tk.llama == NULL) a.sample = 0;
            if (a.sample > 0 && ((step + 1) % a.sample == 0 || last) &&
                (rc = sample(m, &tk, a.prompt, a.sample_len, a.temp, (uint64_t)a.seed, step + 1)) != 0) goto done;
        }
        if (!vl.perm && (rc = plot_draw()) != 0) goto done;   /* no validation: drawn once, here */
        if (timed) printf("mean %.1f ms/step, %.0f tok/s (after the first step)\n", total_ms / timed,
                          (double)(BT * (size_t)a.accum) * timed / (total_ms / 1e3));
    }

    /* ---- save ---- */
    if (a.out) {
        llm_status s = a.lora > 0 ? llm_model_lora_save(m, a.out, 0, NULL) : llm_model_save(m, a.out, 0, NULL);
        if (s != LLM_OK) { rc = fail(NULL); goto done; }
        printf("saved %s to %s\n", a.lora > 0 ? "the adapters" : "the model", a.out);
    }
    printf("peak memory (resident): %.1f MB\n", ex_peak_rss_mb());
done:
    free(in);
    if (g_log) fclose(g_log);
    for (int c = 0; c < 2; c++) { free(g_plot.x[c]); free(g_plot.y[c]); }
    llm_loader_free(&tl);
    llm_loader_free(&vl);
    llm_dataset_close(data);
    llm_tokenizer_free(tk.gpt2);
    llm_llama_tokenizer_free(tk.llama);
    llm_model_free(m);
    return rc;
}
