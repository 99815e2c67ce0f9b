/* tokenize: GPT-2 tokenizer on the command line.
 *
 *   build/tokenize [--vocab DIR|FILE] [--special] < text      one id per line
 *   build/tokenize [--vocab DIR|FILE] --decode < ids          the text back
 *   build/tokenize [--vocab DIR|FILE] [--special] --bin OUT < text
 *                                      llm.c token file for training (llm_dataset_write):
 *                                      256 x int32 header (magic 20240520, version 1,
 *                                      count), then the ids as uint16
 *
 * The vocabulary is a directory with encoder.json + vocab.bpe (OpenAI), vocab.json +
 * merges.txt (HuggingFace) or tokenizer.json, or one of those files. Default: $LLM_DATA/gpt2,
 * then data/gpt2, then ../shared/data/gpt2. --special lets <|endoftext|> in the text
 * become id 50256 (otherwise it is ordinary text). */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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


int main(int argc, char **argv) {
    const char *vocab = NULL, *bin = NULL;
    int special = 0, decode = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--bin") && i + 1 < argc) bin = argv[++i];
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else {
            fprintf(stderr, "usage: %s [--vocab DIR|FILE] [--special] [--decode] [--bin OUT] < input\n", argv[0]);
            return 2;
        }
    }
    llm_tokenizer *tok = NULL;
    llm_status s = vocab ? llm_tokenizer_load(&tok, vocab) : ex_load_gpt2_tokenizer(&tok, NULL);
    if (s != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); return 1; }

    char *text; size_t len;
    if (!read_all(stdin, &text, &len)) { fprintf(stderr, "tokenize: out of memory reading stdin\n"); return 1; }
    int rc = 0;
    if (decode) {   /* ids separated by whitespace -> text */
        llm_tokenizer_stream st;
        llm_tokenizer_stream_init(&st, tok);
        size_t cap = llm_tokenizer_max_token_len(tok) + 4;
        char *buf = (char *)malloc(cap);
        char *p = text, *end = text + len;
        while (buf && p < end) {
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
            if (p >= end) break;
            char *q;
            long id = strtol(p, &q, 10);
            if (q == p || id < 0 || id > 0x7FFFFFFF) { fprintf(stderr, "tokenize: bad id near \"%.10s\"\n", p); rc = 1; break; }
            p = q;
            size_t n;
            if (llm_tokenizer_stream_put(&st, (int)id, buf, cap, &n) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; break; }
            fwrite(buf, 1, n, stdout);
        }
        if (buf) fwrite(buf, 1, llm_tokenizer_stream_flush(&st, buf), stdout);
        free(buf);
    } else {
        int *ids = (int *)malloc((len ? len : 1) * sizeof(int));   /* ids <= bytes */
        llm_pool *pool = llm_pool_create(0);
        size_t n = 0;
        if (!ids || !pool) { fprintf(stderr, "tokenize: out of memory\n"); return 1; }
        s = llm_tokenizer_encode_pool(tok, pool, text, len, special ? LLM_TOKENIZE_SPECIAL : 0, ids, len, &n);
        if (s != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
        else if (bin) {
            if (llm_dataset_write(bin, ids, n) != LLM_OK) { fprintf(stderr, "tokenize: %s\n", llm_last_error()); rc = 1; }
        } else for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
        llm_pool_free(pool);
        free(ids);
    }
    free(text);
    llm_tokenizer_free(tok);
    return rc;
}
