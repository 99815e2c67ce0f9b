/* examples/common.h: what the example programs share. Include it after llm.h (which
 * each example compiles with LLM_IMPLEMENTATION).
 *   - where the data files are: $LLM_DATA, then data/, then ../shared/data (ex_data_path,
 *     ex_load_gpt2_tokenizer);
 *   - numbers from the command line, refused with a message when they are not numbers
 *     (ex_int, ex_float, ex_u64) instead of silently read as 0;
 *   - memory: the one-line summary of what training needs (ex_print_memory), what to
 *     do when it does not fit (ex_memory_levers), the process's peak (ex_peak_rss_mb). */
#ifndef LLM_EXAMPLES_COMMON_H
#define LLM_EXAMPLES_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llm.h"
#include <sys/stat.h>
#if !defined(_WIN32)
#include <sys/resource.h>
#endif

/* each program uses some of these */
#if defined(__GNUC__) || defined(__clang__)
#define EX_FN static __attribute__((unused))
#else
#define EX_FN static
#endif

EX_FN int ex_file_exists(const char *p) { FILE *f = fopen(p, "rb"); if (f) fclose(f); return f != NULL; }
EX_FN int ex_is_dir(const char *p) {
#if defined(_WIN32)
    struct _stat sb;
    return _stat(p, &sb) == 0 && (sb.st_mode & _S_IFDIR) != 0;
#else
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
#endif
}

/* The data directories, in the order they are searched. */
EX_FN int ex_data_dir(int i, char *buf, size_t cap) {
    const char *env = getenv("LLM_DATA");
    if (env && *env) { if (i == 0) { snprintf(buf, cap, "%s", env); return 1; } i--; }
    if (i == 0) { snprintf(buf, cap, "data"); return 1; }
    if (i == 1) { snprintf(buf, cap, "../shared/data"); return 1; }
    return 0;
}
/* buf = the first DIR/rel that exists among the data directories (else data/rel); 1 if found. */
EX_FN int ex_data_path(const char *rel, char *buf, size_t cap) {
    char dir[4096];
    for (int i = 0; ex_data_dir(i, dir, sizeof dir); i++) {
        snprintf(buf, cap, "%s/%s", dir, rel);
        if (ex_file_exists(buf)) return 1;
    }
    snprintf(buf, cap, "data/%s", rel);
    return 0;
}
/* The GPT-2 tokenizer from path, or (path NULL) from the first data directory's gpt2/
 * that loads; the last error is the one left for llm_last_error(). */
EX_FN llm_status ex_load_gpt2_tokenizer(llm_tokenizer **tok, const char *path) {
    char dir[4096], p[4200];
    llm_status s = LLM_ERR_IO;
    if (path) return llm_tokenizer_load(tok, path);
    for (int i = 0; ex_data_dir(i, dir, sizeof dir); i++) {
        snprintf(p, sizeof p, "%s/gpt2", dir);
        if ((s = llm_tokenizer_load(tok, p)) == LLM_OK) return s;
    }
    return s;
}

/* The GPT-2 tokenizer of a model: path when given; else beside the model (the folder
 * `make gpt2` fills holds vocab.json and merges.txt, as HuggingFace's does); else as
 * ex_load_gpt2_tokenizer. */
EX_FN llm_status ex_load_model_gpt2_tokenizer(llm_tokenizer **tok, const char *path, const char *model) {
    char dir[4096], p[4200];
    if (path) return llm_tokenizer_load(tok, path);
    snprintf(dir, sizeof dir, "%s", model);
    if (!ex_is_dir(model)) { char *slash = strrchr(dir, '/'); if (slash) *slash = 0; else snprintf(dir, sizeof dir, "."); }
    const char *names[3] = {"tokenizer.json", "vocab.json", "encoder.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (ex_file_exists(p) && llm_tokenizer_load(tok, dir) == LLM_OK) return LLM_OK;
    }
    return ex_load_gpt2_tokenizer(tok, NULL);
}

/* The value of option `opt`, or a message on stderr and 0. */
EX_FN int ex_int(const char *opt, const char *s, int *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (e == s || *e || v < -2147483647L || v > 2147483647L) {
        fprintf(stderr, "%s: '%s' is not an integer\n", opt, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}
EX_FN int ex_float(const char *opt, const char *s, float *out) {
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e) { fprintf(stderr, "%s: '%s' is not a number\n", opt, s); return 0; }
    *out = (float)v;
    return 1;
}
EX_FN int ex_u64(const char *opt, const char *s, unsigned long long *out) {
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (e == s || *e || *s == '-') { fprintf(stderr, "%s: '%s' is not a non-negative integer\n", opt, s); return 0; }
    *out = v;
    return 1;
}

/* "memory: parameters X MB | ... | total X MB": what training at (B, T) needs. */
EX_FN void ex_print_memory(const llm_model *m, int B, int T) {
    llm_memory u;
    if (llm_model_memory(m, B, T, &u) != LLM_OK) return;
    printf("memory: parameters %.1f MB", u.params / 1e6);
    if (u.adapters) printf(" | adapters %.2f MB", u.adapters / 1e6);
    printf(" | gradients %.1f MB | AdamW %.1f MB | activations %.1f MB (B=%d T=%d) | total %.1f MB\n",
           u.grads / 1e6, u.optimizer / 1e6, u.activations / 1e6, B, T, u.total / 1e6);
}
/* After an out-of-memory failure (the library's message names what did not fit): the
 * flags that make training need less. */
EX_FN void ex_memory_levers(const char *prog, int has_lora) {
    fprintf(stderr, "%s: to need less memory: a smaller -b with --accum K (the same tokens per step), --recompute "
                    "(keep one layer's activations), %sa smaller -t; --precision bf16 does not help here (weights, "
                    "gradients and activations stay fp32)\n", prog, has_lora ? "--lora R (train adapters, not the weights), " : "");
}
/* The most resident memory the process has held, in MB (0 where unknown). */
EX_FN double ex_peak_rss_mb(void) {
#if !defined(_WIN32)
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return ru.ru_maxrss / 1024.0;   /* KiB on Linux */
#endif
    return 0;
}
#endif
