/* bench_tokenizer: GPT-2 tokenizer speed on Tiny Shakespeare (1.1 MB).
 * Encode MB/s single thread and with all threads (llm_tokenizer_encode_pool), decode
 * MB/s (output bytes), vocabulary load ms (encoder.json + vocab.bpe). Each figure is the
 * median of 5 runs after one warm-up run. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

int main(void) {
    char vdir[1024], tpath[1024];
    snprintf(vdir, sizeof vdir, "%s/gpt2", test_data_dir());
    snprintf(tpath, sizeof tpath, "%s/tinyshakespeare/input.txt", test_data_dir());
    FILE *f = fopen(tpath, "rb");
    if (!f) { printf("SKIP bench_tokenizer: %s not found\n", tpath); return 0; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = (char *)malloc((size_t)len);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len) { printf("bench_tokenizer: read failed\n"); return 1; }
    fclose(f);

    double t[5];
    llm_tokenizer *tok = NULL;
    for (int r = -1; r < 5; r++) {
        llm_tokenizer_free(tok);
        tok = NULL;
        double t0 = bench_now();
        if (llm_tokenizer_load(&tok, vdir) != LLM_OK) { printf("bench_tokenizer: %s\n", llm_last_error()); return 1; }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double load_ms = 1e3 * bench_median(t, 5);

    int *ids = (int *)malloc((size_t)len * sizeof(int));
    size_t n = 0;
    for (int r = -1; r < 5; r++) {
        double t0 = bench_now();
        llm_tokenizer_encode(tok, text, (size_t)len, 0, ids, (size_t)len, &n);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double enc1 = (double)len / 1e6 / bench_median(t, 5);

    llm_pool *pool = llm_pool_create(0);
    size_t n2 = 0;
    for (int r = -1; r < 5; r++) {
        double t0 = bench_now();
        llm_tokenizer_encode_pool(tok, pool, text, (size_t)len, 0, ids, (size_t)len, &n2);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double encN = (double)len / 1e6 / bench_median(t, 5);

    char *out = (char *)malloc((size_t)len);
    size_t bytes = 0;
    for (int r = -1; r < 5; r++) {
        double t0 = bench_now();
        llm_tokenizer_decode(tok, ids, n2, out, (size_t)len, &bytes);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    double dec = (double)bytes / 1e6 / bench_median(t, 5);

    printf("tokenizer: tinyshakespeare %.2f MB, %lu tokens%s\n", (double)len / 1e6, (unsigned long)n,
           n == n2 && bytes == (size_t)len && memcmp(out, text, bytes) == 0 ? "" : " (MISMATCH)");
    printf("  vocab load            %8.1f ms\n", load_ms);
    printf("  encode 1 thread       %8.1f MB/s\n", enc1);
    printf("  encode %d threads      %8.1f MB/s\n", llm_pool_size(pool), encN);
    printf("  decode                %8.1f MB/s\n", dec);
    llm_pool_free(pool);
    llm_tokenizer_free(tok);
    free(text); free(ids); free(out);
    return 0;
}
