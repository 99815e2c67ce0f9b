/* bench_tokenizer: the byte-level BPE tokenizer on Tiny Shakespeare (1.1 MB).
 *   - library: vocabulary load ms (encoder.json + vocab.bpe), encode MB/s on one thread
 *     and on all (llm_tokenizer_encode_pool), decode MB/s (output bytes);
 *   - the command line: build/tokenize with text ids out and with --bin, on 10 copies of
 *     the text (11 MB), timed from start to exit (load, read, encode, write), beside the
 *     library's all-threads encode of the same text;
 *   - training (llm_tokenizer_train): a 4,096-token vocabulary on one thread and on all,
 *     with GPT-2 words and with lines; and to the end (until no pair occurs twice) beside
 *     HuggingFace tokenizers' trainer (npm "tokenizers", when node and it are installed:
 *     npm install --prefix build/npm tokenizers), which runs to the end too.
 * Each figure is the median of 5 runs after one warm-up run, printed and appended to
 * bench/results.jsonl. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#define RUNS 5

static double secs_of(const char *cmd) {   /* wall time of a shell command, -1 if it fails */
    double t0 = bench_now();
    int rc = system(cmd);
    return rc == 0 ? bench_now() - t0 : -1;
}
static double median_cmd(const char *cmd) {
    double t[RUNS];
    if (secs_of(cmd) < 0) return -1;
    for (int r = 0; r < RUNS; r++) if ((t[r] = secs_of(cmd)) < 0) return -1;
    return bench_median(t, RUNS);
}

/* Median seconds to train vocab tokens over text. */
static double median_train(const char *text, size_t len, int vocab, int mode, llm_pool *pool, int *merges) {
    llm_tokenizer_train_config c = llm_tokenizer_train_config_default();
    c.pretokenize = mode; c.pool = pool;
    double t[RUNS];
    for (int r = -1; r < RUNS; r++) {
        llm_tokenizer *tok = NULL;
        double t0 = bench_now();
        if (llm_tokenizer_train(&tok, &text, &len, 1, vocab, &c) != LLM_OK) { printf("train: %s\n", llm_last_error()); return -1; }
        if (r >= 0) t[r] = bench_now() - t0;
        *merges = llm_tokenizer_n_merges(tok);
        llm_tokenizer_free(tok);
    }
    return bench_median(t, RUNS);
}

int main(int argc, char **argv) {
    char vdir[1024], tpath[1024];
    snprintf(vdir, sizeof vdir, "%s/gpt2", test_data_dir());
    snprintf(tpath, sizeof tpath, "%s/tinyshakespeare/input.txt", test_data_dir());
    size_t ulen;
    char *text = test_read_file(tpath, &ulen);
    if (!text) { printf("SKIP bench_tokenizer: %s not found\n", tpath); return 0; }
    long len = (long)ulen;
    FILE *out = bench_open_results(argc > 1 ? argv[1] : BENCH_RESULTS);
    if (!out) return 1;
    long now = (long)time(NULL);

    double t[RUNS];
    llm_tokenizer *tok = NULL;
    for (int r = -1; r < RUNS; r++) {
        llm_tokenizer_free(tok);
        tok = NULL;
        double t0 = bench_now();
        if (llm_tokenizer_load(&tok, vdir) != LLM_OK) { printf("bench_tokenizer: %s\n", llm_last_error()); return 1; }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double load_ms = 1e3 * bench_median(t, RUNS);

    int *ids = (int *)malloc((size_t)len * 10 * sizeof(int));
    size_t n = 0;
    for (int r = -1; r < RUNS; r++) {
        double t0 = bench_now();
        llm_tokenizer_encode(tok, text, (size_t)len, 0, ids, (size_t)len, &n);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double enc1 = (double)len / 1e6 / bench_median(t, RUNS);

    llm_pool *pool = llm_pool_create(0);
    size_t n2 = 0;
    for (int r = -1; r < RUNS; r++) {
        double t0 = bench_now();
        llm_tokenizer_encode_pool(tok, pool, text, (size_t)len, 0, ids, (size_t)len, &n2);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double encN = (double)len / 1e6 / bench_median(t, RUNS);

    char *dec = (char *)malloc((size_t)len);
    size_t bytes = 0;
    for (int r = -1; r < RUNS; r++) {
        double t0 = bench_now();
        llm_tokenizer_decode(tok, ids, n2, dec, (size_t)len, &bytes);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double decs = (double)bytes / 1e6 / bench_median(t, RUNS);
    int nth = llm_pool_size(pool);

    printf("tokenizer: tinyshakespeare %.2f MB, %lu GPT-2 tokens%s\n", (double)len / 1e6, (unsigned long)n,
           n == n2 && bytes == (size_t)len && memcmp(dec, text, bytes) == 0 ? "" : " (MISMATCH)");
    printf("  vocab load            %8.1f ms\n", load_ms);
    printf("  encode 1 thread       %8.1f MB/s\n", enc1);
    printf("  encode %d threads      %8.1f MB/s\n", nth, encN);
    printf("  decode                %8.1f MB/s\n", decs);
    fprintf(out, "{\"bench\":\"tokenizer\",\"time\":%ld,\"load_ms\":%.2f,\"encode_1t_mbs\":%.1f,\"encode_%dt_mbs\":%.1f,\"decode_mbs\":%.1f}\n",
            now, load_ms, enc1, nth, encN, decs);

    /* ---- the command line, on 10 copies (11 MB) so that the vocabulary load counts little */
    char big[] = "/tmp/llm_bench_tok_XXXXXX", cmd[2048];
    int fd = mkstemp(big);
    FILE *bf = fd >= 0 ? fdopen(fd, "wb") : NULL;
    for (int k = 0; bf && k < 10; k++) fwrite(text, 1, (size_t)len, bf);
    if (bf) fclose(bf);
    double big_mb = 10.0 * (double)len / 1e6;
    char *btext = (char *)malloc((size_t)len * 10);
    for (int k = 0; btext && k < 10; k++) memcpy(btext + (size_t)k * (size_t)len, text, (size_t)len);
    for (int r = -1; btext && r < RUNS; r++) {
        double t0 = bench_now();
        llm_tokenizer_encode_pool(tok, pool, btext, (size_t)len * 10, 0, ids, (size_t)len * 10, &n2);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double lib_big = big_mb / bench_median(t, RUNS);
    snprintf(cmd, sizeof cmd, "build/tokenize --vocab '%s' < %s > /dev/null", vdir, big);
    double cli_text = bf ? median_cmd(cmd) : -1;
    snprintf(cmd, sizeof cmd, "build/tokenize --vocab '%s' --bin %s.bin < %s", vdir, big, big);
    double cli_bin = bf ? median_cmd(cmd) : -1;
    printf("build/tokenize on %.1f MB (start to exit: load, read, encode on %d threads, write):\n", big_mb, nth);
    if (cli_text > 0 && cli_bin > 0) {
        printf("  text ids out          %8.1f MB/s   (%.0f ms)\n", big_mb / cli_text, 1e3 * cli_text);
        printf("  --bin                 %8.1f MB/s   (%.0f ms)\n", big_mb / cli_bin, 1e3 * cli_bin);
        printf("  library, %d threads    %8.1f MB/s   (encode alone, the same text)\n", nth, lib_big);
        fprintf(out, "{\"bench\":\"tokenize_cli\",\"time\":%ld,\"mb\":%.2f,\"text_mbs\":%.1f,\"bin_mbs\":%.1f,\"library_mbs\":%.1f}\n",
                now, big_mb, big_mb / cli_text, big_mb / cli_bin, lib_big);
    } else {
        printf("  SKIP: build/tokenize failed (run from the repository root after make)\n");
    }
    snprintf(cmd, sizeof cmd, "%s.bin", big);
    remove(cmd);
    remove(big);
    free(btext);

    /* ---- training */
    int m1 = 0, mN = 0, mL = 0, mE = 0;
    double tr1 = median_train(text, (size_t)len, 4096, LLM_PRETOK_GPT2, NULL, &m1);
    double trN = median_train(text, (size_t)len, 4096, LLM_PRETOK_GPT2, pool, &mN);
    double trL = median_train(text, (size_t)len, 4096, LLM_PRETOK_LINES, NULL, &mL);
    double trE = median_train(text, (size_t)len, 1 << 20, LLM_PRETOK_GPT2, NULL, &mE);
    printf("training a byte-level BPE on tinyshakespeare (goal for 4096 tokens: <= 2 s on one thread):\n");
    printf("  4096 tokens, GPT-2 words, 1 thread     %8.3f s  (%d merges)\n", tr1, m1);
    printf("  4096 tokens, GPT-2 words, %d threads    %8.3f s\n", nth, trN);
    printf("  4096 tokens, lines, 1 thread           %8.3f s  (%d merges)\n", trL, mL);
    printf("  to the end, GPT-2 words, 1 thread      %8.3f s  (%d merges, until no pair occurs twice)\n", trE, mE);
    fprintf(out, "{\"bench\":\"bpe_train\",\"time\":%ld,\"v4096_1t_s\":%.4f,\"v4096_%dt_s\":%.4f,\"v4096_lines_1t_s\":%.4f,"
                 "\"to_end_1t_s\":%.4f,\"to_end_merges\":%d}\n", now, tr1, nth, trN, trL, trE, mE);

    /* HuggingFace tokenizers' trainer, as a yardstick (it runs to the end: min_frequency 0) */
    if (system("NODE_PATH=build/npm/node_modules node -e \"require('tokenizers')\" > /dev/null 2>&1") != 0) {
        printf("  HuggingFace tokenizers: SKIP (needs node and: npm install --prefix build/npm tokenizers)\n");
    } else {
        for (int par = 0; par < 2; par++) {
            char line[256] = "";
            snprintf(cmd, sizeof cmd, "NODE_PATH=build/npm/node_modules TOKENIZERS_PARALLELISM=%s node bench/hf_train.js %s %d 2>/dev/null",
                     par ? "true" : "false", tpath, RUNS);
            FILE *p = popen(cmd, "r");
            if (!p) continue;
            char buf[256];
            while (fgets(buf, sizeof buf, p))   /* its progress bar prints empty lines first */
                if (strstr(buf, "median_s")) memcpy(line, buf, sizeof line);
            pclose(p);
            double s = -1;
            int v = 0;
            const char *q = strstr(line, "\"median_s\":"), *w = strstr(line, "\"vocab\":");
            if (q) s = atof(q + 11);
            if (w) v = atoi(w + 8);
            if (s <= 0) { printf("  HuggingFace tokenizers: failed (%s)\n", cmd); break; }
            printf("  HuggingFace tokenizers, %s       %8.3f s  (vocabulary %d: merges down to count 1)\n",
                   par ? "all threads" : "1 thread   ", s, v);
            fprintf(out, "{\"bench\":\"bpe_train_hf\",\"time\":%ld,\"parallel\":%d,\"to_end_s\":%.4f,\"vocab\":%d}\n", now, par, s, v);
        }
    }
    fclose(out);
    llm_pool_free(pool);
    llm_tokenizer_free(tok);
    free(text); free(ids); free(dec);
    return 0;
}
