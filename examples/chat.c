/* chat: an interactive loop. Each line read from stdin is appended to the text so far
 * and the model continues it, streaming the reply; the KV cache is kept across turns, so
 * a turn costs only its new tokens. Ends at EOF (Ctrl-D).
 *
 *   build/chat -m MODEL [-z TOKENIZER] [-n N] [--temp T] [--top-k K] [--top-p P]
 *              [--seed S] [--threads N] [--stop STR] [--device cpu|cuda] [--precision fp32|bf16|fp16]
 *
 *   -n N        new tokens per turn at most (default 128)
 *   --stop STR  end a reply at STR (default: a blank line, "\n\n"); may be repeated
 * The other options are those of build/generate. A reply also ends at the model's end
 * token (<|endoftext|>, or BOS for Llama). When the context fills up, the older half of
 * the conversation is dropped and the rest re-read (slide_window).
 *
 * A base model is not a chat model: it continues the text, so a prompt shaped like the
 * text it learned works best (e.g. "Q: ...", or the start of a story for stories260K). */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int on_token(void *ud, int item, int id, const char *text, size_t len, float logprob) {
    (void)ud; (void)item; (void)id; (void)logprob;
    /* with stop strings the library hands over the final bytes; GPT-2 bytes may split a
     * UTF-8 character, which the terminal reassembles */
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}


int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *device = "cpu", *precision = "fp32";
    const char *stops[8];
    int n_stops = 0, n_new = 128, top_k = 0, threads = 0;
    float temp = 0.8f, top_p = 0.9f;
    unsigned long long seed = (unsigned long long)time(NULL);
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "-m")) model_path = v;
        else if (!strcmp(a, "-z")) tok_path = v;
        else if (!strcmp(a, "-n")) { if (!ex_int(a, v, &n_new)) return 2; }
        else if (!strcmp(a, "--temp")) { if (!ex_float(a, v, &temp)) return 2; }
        else if (!strcmp(a, "--top-k")) { if (!ex_int(a, v, &top_k)) return 2; }
        else if (!strcmp(a, "--top-p")) { if (!ex_float(a, v, &top_p)) return 2; }
        else if (!strcmp(a, "--seed")) { if (!ex_u64(a, v, &seed)) return 2; }
        else if (!strcmp(a, "--threads")) { if (!ex_int(a, v, &threads)) return 2; }
        else if (!strcmp(a, "--stop") && n_stops < 8) stops[n_stops++] = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--precision")) precision = v;
        else { model_path = NULL; break; }
    }
    if (!model_path || argc % 2 == 0) {
        fprintf(stderr, "usage: %s -m MODEL [-z TOKENIZER] [-n N] [--temp T] [--top-k K] [--top-p P] "
                        "[--seed S] [--threads N] [--stop STR] [--device cpu|cuda] [--precision fp32|bf16|fp16]\n",
                argv[0]);
        return 2;
    }
    if (n_stops == 0) stops[n_stops++] = "\n\n";
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    if (!strcmp(precision, "bf16")) opt.bf16 = 1;
    else if (!strcmp(precision, "fp16")) opt.fp16 = 1;
    else if (strcmp(precision, "fp32") != 0) {
        fprintf(stderr, "chat: unknown precision '%s' (fp32, bf16 or fp16)\n", precision);
        return 2;
    }
    if (opt.fp16 && strcmp(device, "cuda") != 0) {
        fprintf(stderr, "chat: --precision fp16 runs on a GPU (--device cuda, sm_70+); the CPU has no fp16 "
                        "kernels: use fp32, or bf16 on a CPU with AVX512-BF16\n");
        return 2;
    }
    if (!strcmp(device, "cuda")) {
#ifdef LLM_CUDA
        opt.backend = llm_cuda_backend();
#else
        fprintf(stderr, "chat: built without CUDA (make cuda builds build/cuda/chat)\n");
        return 1;
#endif
    } else if (strcmp(device, "cpu") != 0) {
        fprintf(stderr, "chat: unknown device '%s' (cpu or cuda)\n", device);
        return 2;
    }
    llm_model *m = NULL;
    if (llm_model_load(&m, model_path, &opt) != LLM_OK) { fprintf(stderr, "chat: %s\n", llm_last_error()); return 1; }
    llm_config cfg = llm_model_config(m);
    int V = cfg.vocab_size, llama = cfg.arch == LLM_ARCH_LLAMA, rc = 1;
    llm_generate_config gc = llm_generate_config_default();
    llm_llama_tokenizer *ltok = NULL;
    llm_tokenizer *gtok = NULL;
    llm_kv *kv = NULL;
    int *ids = NULL, *out = NULL;
    char *line = NULL;
    size_t cap = 1 << 16;
    int pending = -1;   /* the last id of the previous reply: sampled but not yet in the cache */
    gc.max_new_tokens = n_new;
    gc.sampler.temperature = temp; gc.sampler.top_k = top_k; gc.sampler.top_p = top_p; gc.sampler.seed = seed;
    gc.stops = stops; gc.n_stops = n_stops;
    gc.on_token = on_token;
    gc.slide_window = 1;
    if (llama) {
        char def[4096];
        if (!tok_path) {
            const char *slash = strrchr(model_path, '/');
            int dl = slash ? (int)(slash - model_path + 1) : 0;
            snprintf(def, sizeof def, "%.*stok%d.bin", dl, model_path, V);
            if (!ex_file_exists(def)) snprintf(def, sizeof def, "%.*stokenizer.bin", dl, model_path);
            tok_path = def;
        }
        if (llm_llama_tokenizer_load(&ltok, tok_path, V) != LLM_OK) { fprintf(stderr, "chat: %s\n", llm_last_error()); goto done; }
        gc.piece = llm_piece_llama; gc.piece_ud = ltok; gc.stop_token = LLM_LLAMA_BOS;
    } else {
        if (ex_load_gpt2_tokenizer(&gtok, tok_path) != LLM_OK) { fprintf(stderr, "chat: %s\n", llm_last_error()); goto done; }
        if (llm_tokenizer_vocab_size(gtok) != V) {
            fprintf(stderr, "chat: the tokenizer has %d tokens but the model's vocabulary is %d\n", llm_tokenizer_vocab_size(gtok), V);
            goto done;
        }
        gc.piece = llm_piece_gpt2; gc.piece_ud = gtok; gc.stop_token = llm_tokenizer_eot(gtok);
    }
    if (llm_kv_create(&kv, m, 1, 0, 0) != LLM_OK) { fprintf(stderr, "chat: %s\n", llm_last_error()); goto done; }
    line = (char *)malloc(cap);
    ids = (int *)malloc((cap + 4) * sizeof(int));
    out = (int *)malloc(((size_t)n_new + 1) * sizeof(int));
    if (!line || !ids || !out) { fprintf(stderr, "chat: out of memory\n"); goto done; }
    fprintf(stderr, "chat: %s model, %d tokens of context; type a line, Ctrl-D to end\n", llama ? "Llama" : "GPT-2", llm_kv_max_len(kv));
    for (;;) {
        fputs("> ", stderr);
        if (!fgets(line, (int)cap, stdin)) break;
        size_t len = strlen(line);
        int n = 0;
        if (pending >= 0) ids[n++] = pending;
        if (llama) {
            int k = 0;
            /* the first turn starts with BOS and the dummy-prefix space, as run.c */
            int first = llm_kv_len(kv, 0) == 0 && pending < 0;
            if (llm_llama_tokenizer_encode(ltok, line, len, first, 0, ids + n, (int)cap + 3, &k) != LLM_OK) {
                fprintf(stderr, "chat: %s\n", llm_last_error()); continue;
            }
            n += k;
        } else {
            size_t k = 0;
            if (llm_kv_len(kv, 0) == 0 && pending < 0) ids[n++] = llm_tokenizer_eot(gtok);   /* start of a text */
            if (llm_tokenizer_encode(gtok, line, len, 0, ids + n, cap, &k) != LLM_OK) { fprintf(stderr, "chat: %s\n", llm_last_error()); continue; }
            n += (int)k;
        }
        if (n == 0) continue;
        int n_out = 0;
        llm_finish why;
        llm_generate_stats st;
        if (llm_generate(kv, 0, ids, n, &gc, out, n_new + 1, &n_out, &why, &st) != LLM_OK) {
            fprintf(stderr, "chat: %s\n", llm_last_error()); goto done;
        }
        /* the reply's last id is fed back at the start of the next turn; a stop token is
         * not (the next line starts a new paragraph of the same text) */
        pending = why == LLM_FINISH_TOKEN || n_out == 0 ? -1 : out[n_out - 1];
        if (why == LLM_FINISH_STOP) pending = -1;   /* the stop string ends the reply: drop its token */
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "[%d tokens, %.1f tok/s; context %d/%d]\n", n_out,
                st.decode_seconds > 0 ? st.decode_tokens / st.decode_seconds : 0.0, llm_kv_len(kv, 0), llm_kv_max_len(kv));
    }
    rc = 0;
done:
    free(line); free(ids); free(out);
    llm_kv_free(kv);
    llm_llama_tokenizer_free(ltok);
    llm_tokenizer_free(gtok);
    llm_model_free(m);
    return rc;
}
