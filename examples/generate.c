/* generate: write text with a GPT-2 or Llama model.
 *
 *   build/generate -m MODEL [-z TOKENIZER] [-p PROMPT] [-n N] [--temp T] [--top-k K]
 *                  [--top-p P] [--seed S] [--ids] [--threads N] [--device cpu|cuda]
 *                  [--precision fp32|bf16|fp16] [--adapters FILE]
 *
 *   -m MODEL     HF GPT-2 model.safetensors (or its folder), llm.c gpt2_*.bin, llama2.c
 *                model .bin, or an llm.h checkpoint: the format is read from the file
 *   -z TOK       Llama: llama2.c tokenizer.bin (default: tok<V>.bin, then tokenizer.bin,
 *                beside the model); GPT-2: a vocabulary folder or file (default: beside
 *                the model, then $LLM_DATA/gpt2, data/gpt2, ../shared/data/gpt2). A Llama
 *                model may use a byte-level BPE folder or file too (as make demo's does)
 *   -p PROMPT    the text to continue (default: none)
 *   -n N         positions in all, the prompt included, as llama2.c's -n (default 256;
 *                0 or more than the context: the model's context length)
 *   --temp T     temperature (default 1.0; 0 = greedy)
 *   --top-k K    keep the K most likely tokens (default: off)
 *   --top-p P    nucleus sampling (default 0.9; 0 or 1 = off)
 *   --seed S     sampler seed (default: the time)
 *   --ids        print the generated ids one per line instead of text
 *   --threads N  CPU threads (default: all cores)
 *   --device D   cpu or, when built with llm_cuda.cu (make cuda), cuda
 *   --precision P  fp32 (default), bf16: matmuls with bf16 operands and fp32
 *                accumulation (CPU: needs AVX512-BF16 or ARM BF16, else fp32; CUDA:
 *                sm_80+), or fp16: the same with fp16 on the GPU only (--device cuda,
 *                sm_70+, e.g. the T4); the CPU has no fp16 kernels, so fp16 there is refused
 *   --adapters F LoRA adapters (build/finetune --lora R -o F) attached to the model
 *
 * Llama models behave exactly as llama2.c's run.c: the prompt is encoded with BOS and
 * echoed, generation stops at BOS or after N positions, single bytes that are neither
 * printable nor space are not printed, and a newline ends the output. So
 *   build/generate -m stories260K.bin -z tok512.bin --temp 0 -n 200
 * prints what `run stories260K.bin -z tok512.bin -t 0 -n 200` prints. GPT-2 starts an
 * empty prompt from <|endoftext|>, stops at <|endoftext|>, and streams whole UTF-8
 * characters. Prefill and decode speeds are printed to stderr at the end. */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int ids;                          /* --ids */
    int llama;
    llm_tokenizer_stream stream;      /* GPT-2 */
    char buf[1024];
} printer;

/* run.c's safe_printf: a piece that is a single byte is printed only when it is
 * printable or whitespace; printing stops at a NUL, as "%s" does. */
static void safe_print(const char *p, size_t n) {
    if (n == 0) return;
    if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return;
    size_t k = 0;
    while (k < n && p[k]) k++;
    fwrite(p, 1, k, stdout);
}

static int on_token(void *ud, int item, int id, const char *text, size_t len, float logprob) {
    printer *pr = (printer *)ud;
    (void)item; (void)logprob;
    if (id < 0) return 0;
    if (pr->ids) printf("%d\n", id);
    else if (pr->llama) safe_print(text, len);
    else {
        size_t n = 0;
        if (llm_tokenizer_stream_put(&pr->stream, id, pr->buf, sizeof pr->buf, &n) == LLM_OK) fwrite(pr->buf, 1, n, stdout);
    }
    fflush(stdout);
    return 0;
}


/* Llama tokenizer beside the model: tok<V>.bin, then tokenizer.bin. */
static void llama_default_tok(const char *model, int V, char *out, size_t cap) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", model);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else dir[0] = 0;
    snprintf(out, cap, "%stok%d.bin", dir, V);
    if (ex_file_exists(out)) return;
    snprintf(out, cap, "%stokenizer.bin", dir);
}


static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s -m MODEL [-z TOKENIZER] [-p PROMPT] [-n N] [--temp T] [--top-k K] "
                    "[--top-p P] [--seed S] [--ids] [--threads N] [--device cpu|cuda] "
                    "[--precision fp32|bf16|fp16] [--adapters FILE]\n", argv0);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *adapters = NULL, *prompt = NULL, *device = "cpu", *precision = "fp32";
    int steps = 256, top_k = 0, threads = 0, ids = 0;
    float temp = 1.0f, top_p = 0.9f;
    unsigned long long seed = (unsigned long long)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--ids")) { ids = 1; continue; }
        if (!v) { usage(argv[0]); return 2; }
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-z")) tok_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "-i")) prompt = v;
        else if (!strcmp(a, "-n")) { if (!ex_int(a, v, &steps)) return 2; }
        else if (!strcmp(a, "--temp") || !strcmp(a, "-t")) { if (!ex_float(a, v, &temp)) return 2; }
        else if (!strcmp(a, "--top-k")) { if (!ex_int(a, v, &top_k)) return 2; }
        else if (!strcmp(a, "--top-p")) { if (!ex_float(a, v, &top_p)) return 2; }
        else if (!strcmp(a, "--seed") || !strcmp(a, "-s")) { if (!ex_u64(a, v, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!ex_int(a, v, &threads)) return 2; }
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else if (!strcmp(a, "--adapters")) adapters = v;
        else { usage(argv[0]); return 2; }
        i++;
    }
    if (!model_path) { usage(argv[0]); return 2; }
    if (temp < 0.0f) temp = 0.0f;                         /* run.c's clamps */
    if (top_p < 0.0f || top_p > 1.0f) top_p = 0.9f;

    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    if (!strcmp(precision, "bf16")) opt.bf16 = 1;
    else if (!strcmp(precision, "fp16")) opt.fp16 = 1;
    else if (strcmp(precision, "fp32") != 0) {
        fprintf(stderr, "generate: unknown precision '%s' (fp32, bf16 or fp16)\n", precision);
        return 2;
    }
    if (opt.fp16 && strcmp(device, "cuda") != 0) {
        fprintf(stderr, "generate: --precision fp16 runs on a GPU (--device cuda, sm_70+); the CPU has no fp16 "
                        "kernels: use fp32, or bf16 on a CPU with AVX512-BF16\n");
        return 2;
    }
    if (!strcmp(device, "cuda")) {
#ifdef LLM_CUDA
        opt.backend = llm_cuda_backend();
#else
        fprintf(stderr, "generate: built without CUDA (make cuda builds build/cuda/generate)\n");
        return 1;
#endif
    } else if (strcmp(device, "cpu") != 0) {
        fprintf(stderr, "generate: unknown device '%s' (cpu or cuda)\n", device);
        return 2;
    }
    llm_model *m = NULL;
    if (llm_model_load(&m, model_path, &opt) != LLM_OK) { fprintf(stderr, "generate: %s\n", llm_last_error()); return 1; }
    if (adapters && llm_model_lora_load(m, adapters, NULL) != LLM_OK) {
        fprintf(stderr, "generate: %s\n", llm_last_error());
        llm_model_free(m);
        return 1;
    }
    llm_config cfg = llm_model_config(m);
    int V = cfg.vocab_size, llama = cfg.arch == LLM_ARCH_LLAMA;
    if (steps <= 0 || steps > cfg.max_seq_len) steps = cfg.max_seq_len;

    printer pr;
    memset(&pr, 0, sizeof pr);
    pr.ids = ids; pr.llama = llama;
    llm_llama_tokenizer *ltok = NULL;
    llm_tokenizer *gtok = NULL;
    int rc = 1, np = 0, n_out = 0;
    /* a Llama model with a byte-level BPE vocabulary (make demo): GPT-2's text handling */
    if (llama && tok_path && llm_tokenizer_load(&gtok, tok_path) == LLM_OK) pr.llama = llama = 0;
    llm_generate_stats stats;
    llm_finish why;
    llm_generate_config gc = llm_generate_config_default();
    int *ptoks = NULL, *out = NULL;
    llm_kv *kv = NULL;
    size_t plen = prompt ? strlen(prompt) : 0;
    ptoks = (int *)malloc((plen + 3) * sizeof(int));
    out = (int *)malloc(((size_t)steps + 1) * sizeof(int));
    if (!ptoks || !out) { fprintf(stderr, "generate: out of memory\n"); goto done; }

    gc.sampler.temperature = temp;
    gc.sampler.top_p = top_p;
    gc.sampler.top_k = top_k;
    gc.sampler.seed = seed;
    gc.on_token = on_token;
    gc.on_token_ud = &pr;
    if (llama) {
        char def[4096];
        if (!tok_path) { llama_default_tok(model_path, V, def, sizeof def); tok_path = def; }
        if (llm_llama_tokenizer_load(&ltok, tok_path, V) != LLM_OK) {
            fprintf(stderr, "generate: %s\n(the tokenizer must have the model's %d tokens; pass it with -z)\n", llm_last_error(), V);
            goto done;
        }
        if (llm_llama_tokenizer_encode(ltok, prompt ? prompt : "", plen, 1, 0, ptoks, (int)plen + 3, &np) != LLM_OK) {
            fprintf(stderr, "generate: %s\n", llm_last_error()); goto done;
        }
        gc.piece = llm_piece_llama; gc.piece_ud = ltok;
        gc.stop_token = LLM_LLAMA_BOS;    /* run.c: BOS delimits sequences */
    } else {
        if (!gtok && ex_load_model_gpt2_tokenizer(&gtok, tok_path, model_path) != LLM_OK) {
            fprintf(stderr, "generate: %s\n", llm_last_error()); goto done;
        }
        if (llm_tokenizer_vocab_size(gtok) != V) {
            fprintf(stderr, "generate: the tokenizer has %d tokens but the model's vocabulary is %d\n",
                    llm_tokenizer_vocab_size(gtok), V);
            goto done;
        }
        size_t n = 0;
        if (plen && llm_tokenizer_encode(gtok, prompt, plen, 0, ptoks, plen + 3, &n) != LLM_OK) {
            fprintf(stderr, "generate: %s\n", llm_last_error()); goto done;
        }
        np = (int)n;
        if (np == 0) ptoks[np++] = llm_tokenizer_eot(gtok) >= 0 ? llm_tokenizer_eot(gtok) : 0;   /* condition on <|endoftext|> */
        else if (!ids) { fwrite(prompt, 1, plen, stdout); fflush(stdout); }
        gc.piece = llm_piece_gpt2; gc.piece_ud = gtok;
        gc.stop_token = llm_tokenizer_eot(gtok);
        llm_tokenizer_stream_init(&pr.stream, gtok);
    }
    if (np > cfg.max_seq_len) {
        fprintf(stderr, "generate: the prompt has %d tokens, more than the model's context of %d\n", np, cfg.max_seq_len);
        goto done;
    }
    if (llama && !ids) {
        /* run.c echoes the prompt: each forced token printed after the one before it */
        int echo = np - 1 < steps ? np - 1 : steps;
        for (int j = 1; j <= echo; j++) {
            size_t n = 0;
            const char *p = llm_llama_tokenizer_decode(ltok, ptoks[j - 1], ptoks[j], &n);
            if (p) safe_print(p, n);
        }
    }
    if (np > steps) {
        /* run.c forwards only `steps` positions of a long prompt; there is nothing to sample */
        if (!llama) fprintf(stderr, "generate: the prompt has %d tokens, more than -n %d\n", np, steps);
        if (!ids) printf("\n");
        rc = llama ? 0 : 1;
        goto done;
    }
    if (llm_kv_create(&kv, m, 1, steps, 0) != LLM_OK) { fprintf(stderr, "generate: %s\n", llm_last_error()); goto done; }
    gc.max_new_tokens = steps - np + 1;     /* the last one is sampled, never forwarded */
    if (llm_generate(kv, 0, ptoks, np, &gc, out, steps + 1, &n_out, &why, &stats) != LLM_OK) {
        fprintf(stderr, "\ngenerate: %s\n", llm_last_error()); goto done;
    }
    if (!llama && !ids) {
        char tail[4];
        size_t k = llm_tokenizer_stream_flush(&pr.stream, tail);
        fwrite(tail, 1, k, stdout);
    }
    if (!ids) printf("\n");
    fflush(stdout);
    /* the precision in effect: the CPU's bf16 needs AVX512-BF16 or ARM BF16 (llm.h's own check) */
    const char *prec = opt.fp16 ? "fp16 matmuls" : !opt.bf16 ? "fp32"
                     : opt.backend || llm_bf16_supported() ? "bf16 matmuls" : "fp32, no AVX512-BF16 or ARM BF16";
    fprintf(stderr, "prefill: %d tokens, %.1f tok/s; decode: %d tokens, %.1f tok/s (%s, %s, %s)\n",
            stats.prefill_tokens, stats.prefill_seconds > 0 ? stats.prefill_tokens / stats.prefill_seconds : 0.0,
            stats.decode_tokens, stats.decode_seconds > 0 ? stats.decode_tokens / stats.decode_seconds : 0.0,
            cfg.arch == LLM_ARCH_LLAMA ? "llama" : "gpt2", device, prec);
    rc = 0;
done:
    llm_kv_free(kv);
    llm_llama_tokenizer_free(ltok);
    llm_tokenizer_free(gtok);
    llm_model_free(m);
    free(ptoks);
    free(out);
    return rc;
}
