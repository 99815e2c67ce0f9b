/* tokenize: the byte-level BPE tokenizer on the command line: encode, decode, train.
 *
 *   build/tokenize [--vocab DIR|FILE] [--special] < text      one id per line
 *   build/tokenize [--vocab DIR|FILE] --decode < ids          the text back
 *   build/tokenize [--vocab DIR|FILE] [--special] --bin OUT < text
 *                                      llm.c token file for training (llm_dataset_write):
 *                                      256 x int32 header (magic 20240520, version 1,
 *                                      count), then the ids as uint16
 *   build/tokenize --train N --out DIR [--special-token TEXT]... [--no-pretokenize] < corpus
 *                                      learn a vocabulary of N tokens (the 256 bytes and
 *                                      N - 256 merges; special tokens come on top) and
 *                                      write DIR/vocab.json, merges.txt, tokenizer.json;
 *                                      --no-pretokenize learns over raw bytes with each
 *                                      line (its newline included) as one word, and the
 *                                      saved tokenizer encodes the same way
 *
 * The vocabulary is a directory with tokenizer.json, encoder.json + vocab.bpe (OpenAI) or
 * vocab.json + merges.txt (HuggingFace), or one of those files. Default: $LLM_DATA/gpt2,
 * then data/gpt2, then ../shared/data/gpt2. --special lets special tokens in the text
 * (<|endoftext|>, those given to --special-token) become their ids; otherwise they are
 * ordinary text. --threads N sets the threads (default: all cores). */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, mkdir */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <direct.h>
#define make_dir(d) _mkdir(d)
#else
#include <sys/stat.h>
#define make_dir(d) mkdir(d, 0777)
#endif

static int read_all(FILE *f, char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)malloc(cap);
    if (!buf) return 0;
    for (;;) {
        if (n == cap) {
            char *b = (char *)realloc(buf, cap * 2);
            if (!b) { free(buf); return 0; }
            buf = b; cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    *out = buf; *len = n;
    return 1;
}

/* ids as decimal text, one a line. printf per id costs more than encoding does, so the
 * digits come two at a time from a table, the pool's threads each format a share of a
 * block of ids into their own buffer, and the buffers are written in order. */
static char *put_id(char *p, unsigned v) {
    static const char two[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char tmp[10];
    int k = 10;
    while (v >= 100) { unsigned q = v / 100; k -= 2; memcpy(tmp + k, two + 2 * (v - 100 * q), 2); v = q; }
    if (v >= 10) { k -= 2; memcpy(tmp + k, two + 2 * v, 2); } else tmp[--k] = (char)('0' + v);
    memcpy(p, tmp + k, (size_t)(10 - k));
    p[10 - k] = '\n';
    return p + 11 - k;
}
enum { FMT_BLOCK = 1 << 18 };   /* ids per block: 256 K ids, <= 2.8 MB of text */
typedef struct { const int *ids; size_t n; char *buf[64]; size_t len[64]; } fmt_job;
static void fmt_task(void *arg, int ith, int nth) {
    fmt_job *J = (fmt_job *)arg;
    size_t lo = J->n * (size_t)ith / (size_t)nth, hi = J->n * (size_t)(ith + 1) / (size_t)nth;
    char *p = J->buf[ith];
    for (size_t i = lo; i < hi; i++) p = put_id(p, (unsigned)J->ids[i]);   /* ids are >= 0 */
    J->len[ith] = (size_t)(p - J->buf[ith]);
}
/* Returns 0 on a write error or when out of memory. */
static int write_ids(FILE *f, const int *ids, size_t n, llm_pool *pool) {
    fmt_job J;
    int nth = llm_pool_size(pool) < 64 ? llm_pool_size(pool) : 64, ok = 1;
    char *mem = (char *)malloc((size_t)FMT_BLOCK * 11 + (size_t)nth * 11);   /* 11 bytes an id at most */
    if (!mem) return 0;
    for (size_t at = 0; ok && at < n; at += FMT_BLOCK) {
        J.ids = ids + at;
        J.n = n - at < FMT_BLOCK ? n - at : FMT_BLOCK;
        for (int k = 0; k < nth; k++) J.buf[k] = mem + (J.n * (size_t)k / (size_t)nth + (size_t)k) * 11;
        if (nth > 1) llm_pool_run(pool, fmt_task, &J);
        else fmt_task(&J, 0, 1);
        for (int k = 0; ok && k < nth; k++) ok = fwrite(J.buf[k], 1, J.len[k], f) == J.len[k];
    }
    free(mem);
    return ok && fflush(f) == 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* --train: learn, then save into dir (made if missing). */
static int train(const char *text, size_t len, int n, const char *dir, const char *const *special, int n_special,
                 int lines, llm_pool *pool) {
    llm_tokenizer_train_config c = llm_tokenizer_train_config_default();
    c.pretokenize = lines ? LLM_PRETOK_LINES : LLM_PRETOK_GPT2;
    c.special = special; c.n_special = n_special; c.pool = pool;
    llm_tokenizer *tok = NULL;
    double t0 = now_s();
    if (llm_tokenizer_train(&tok, &text, &len, 1, n + n_special, &c) != LLM_OK) {
        fprintf(stderr, "tokenize: %s\n", llm_last_error());
        return 1;
    }
    double secs = now_s() - t0;
    if (make_dir(dir) != 0 && errno != EEXIST) { fprintf(stderr, "tokenize: cannot create %s\n", dir); llm_tokenizer_free(tok); return 1; }
    int rc = 0;
    if (llm_tokenizer_save(tok, dir) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
    else {
        int nm = llm_tokenizer_n_merges(tok);
        fprintf(stderr, "tokenize: learned %d merges%s from %lu bytes in %.2f s (%s): %d tokens%s -> %s/{vocab.json,merges.txt,tokenizer.json}\n",
                nm, 256 + nm < n ? " (no pair left that occurs twice)" : "", (unsigned long)len, secs,
                lines ? "lines as words" : "GPT-2 words", llm_tokenizer_vocab_size(tok),
                n_special ? " with the special tokens" : "", dir);
    }
    llm_tokenizer_free(tok);
    return rc;
}

int main(int argc, char **argv) {
    const char *vocab = NULL, *bin = NULL, *out_dir = NULL;
    const char *special_tokens[64];
    int special = 0, decode = 0, n_train = 0, n_special = 0, lines = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--bin") && i + 1 < argc) bin = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_dir = argv[++i];
        else if (!strcmp(argv[i], "--train") && i + 1 < argc) { if (!ex_int("--train", argv[++i], &n_train)) return 2; }
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) { if (!ex_int("--threads", argv[++i], &threads)) return 2; }
        else if (!strcmp(argv[i], "--special-token") && i + 1 < argc && n_special < 64) special_tokens[n_special++] = argv[++i];
        else if (!strcmp(argv[i], "--no-pretokenize")) lines = 1;
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else {
            fprintf(stderr, "usage: %s [--vocab DIR|FILE] [--special] [--decode] [--bin OUT] [--threads N] < input\n"
                            "       %s --train N --out DIR [--special-token TEXT]... [--no-pretokenize] < corpus\n",
                    argv[0], argv[0]);
            return 2;
        }
    }
    if ((n_train || out_dir) && !(n_train > 0 && out_dir)) {
        fprintf(stderr, "tokenize: --train N (N >= 256: the bytes plus the merges) needs --out DIR, and --out needs --train\n");
        return 2;
    }
    char *text; size_t len;
    if (!read_all(stdin, &text, &len)) { fprintf(stderr, "tokenize: out of memory reading stdin\n"); return 1; }
    llm_pool *pool = llm_pool_create(threads);
    if (!pool) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); free(text); return 1; }
    if (n_train) {
        int rc = train(text, len, n_train, out_dir, special_tokens, n_special, lines, pool);
        llm_pool_free(pool);
        free(text);
        return rc;
    }

    llm_tokenizer *tok = NULL;
    llm_status s = vocab ? llm_tokenizer_load(&tok, vocab) : ex_load_gpt2_tokenizer(&tok, NULL);
    if (s != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); llm_pool_free(pool); free(text); return 1; }
    int rc = 0;
    if (decode) {   /* ids separated by whitespace -> text, decoded in one call */
        int *ids = (int *)malloc((len / 2 + 1) * sizeof(int));   /* an id and a separator: >= 2 bytes */
        size_t n = 0, bytes = 0;
        char *p = text, *end = text + len, *out = NULL;
        while (ids && p < end) {
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
            if (p >= end) break;
            long id = 0;
            char *q = p;
            while (q < end && *q >= '0' && *q <= '9' && id <= 0x7FFFFFFF) id = id * 10 + (*q++ - '0');
            if (q == p || id > 0x7FFFFFFF || (q < end && *q != ' ' && *q != '\n' && *q != '\r' && *q != '\t')) {
                fprintf(stderr, "tokenize: bad id near \"%.10s\"\n", p); rc = 1; break;
            }
            ids[n++] = (int)id;
            p = q;
        }
        if (!ids) { fprintf(stderr, "tokenize: out of memory\n"); rc = 1; }
        if (!rc && llm_tokenizer_decode(tok, ids, n, NULL, 0, &bytes) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
        if (!rc && !(out = (char *)malloc(bytes + 1))) { fprintf(stderr, "tokenize: out of memory\n"); rc = 1; }
        if (!rc && llm_tokenizer_decode(tok, ids, n, out, bytes, &bytes) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
        if (!rc && (fwrite(out, 1, bytes, stdout) != bytes || fflush(stdout) != 0)) { fprintf(stderr, "tokenize: write failed\n"); rc = 1; }
        free(out); free(ids);
    } else {
        int *ids = (int *)malloc((len ? len : 1) * sizeof(int));   /* ids <= bytes */
        size_t n = 0;
        if (!ids) { fprintf(stderr, "tokenize: out of memory\n"); rc = 1; }
        else if ((s = llm_tokenizer_encode_pool(tok, pool, text, len, special ? LLM_TOKENIZE_SPECIAL : 0, ids, len, &n)) != LLM_OK) {
            fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1;
        } else if (bin) {
            if (llm_dataset_write(bin, ids, n) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
        } else if (!write_ids(stdout, ids, n, pool)) { fprintf(stderr, "tokenize: write failed\n"); rc = 1; }
        free(ids);
    }
    llm_pool_free(pool);
    free(text);
    llm_tokenizer_free(tok);
    return rc;
}
