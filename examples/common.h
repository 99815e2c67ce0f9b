/* examples/common.h: what the example programs share. Include it after llm.h (which
 * each example compiles with LLM_IMPLEMENTATION).
 *   - where the data files are: $LLM_DATA, then data/, then ../shared/data (ex_data_path,
 *     ex_load_gpt2_tokenizer);
 *   - numbers from the command line, refused with a message when they are not numbers
 *     (ex_int, ex_float, ex_u64) instead of silently read as 0. */
#ifndef LLM_EXAMPLES_COMMON_H
#define LLM_EXAMPLES_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "llm.h"

/* each program uses some of these */
#if defined(__GNUC__) || defined(__clang__)
#define EX_FN static __attribute__((unused))
#else
#define EX_FN static
#endif

EX_FN int ex_file_exists(const char *p) { FILE *f = fopen(p, "rb"); if (f) fclose(f); return f != NULL; }

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
#endif
