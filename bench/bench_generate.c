/* bench_generate: inference speed at batch 1 through the KV cache (llm_kv_forward).
 *
 *   ./build/bench/bench_generate [results.jsonl]     (default bench/results.jsonl)
 *
 * Two fp32 shapes with random weights: GPT-2 124M (L 12, C 768, V 50257) and a Llama
 * 110M (dim 768, hidden 2048, 12 layers, 12 heads, 12 kv heads, vocab 32000, classifier
 * tied to the embedding, as llama2.c's stories110M). For 1 thread and all cores:
 *   prefill: one call forwarding a PREFILL-token prompt (logits of the last row only)
 *   decode:  DECODE calls of one row each after a short prompt (every logit row)
 * median of 5 runs each. Decode at batch 1 reads every weight once per token, so it is
 * bound by memory bandwidth: tok/s <= bandwidth / (4 bytes x parameters); the ceiling
 * with the bandwidth the M=1 matmul reaches is printed beside it. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

enum { PREFILL = 128, DECODE = 32, RUNS = 5 };


/* Returns 0 on failure. */
static int bench(llm_model *m, double *prefill_tps, double *decode_tps) {
    llm_config c = llm_model_config(m);
    int V = c.vocab_size;
    llm_kv *kv = NULL;
    if (llm_kv_create(&kv, m, 1, PREFILL + DECODE + 8, 0) != LLM_OK) return 0;
    float *logits = (float *)malloc((size_t)V * sizeof(float));
    int toks[PREFILL];
    unsigned char want[PREFILL];
    for (int i = 0; i < PREFILL; i++) { toks[i] = (i * 7919 + 13) % V; want[i] = i == PREFILL - 1; }
    double tp[RUNS], td[RUNS];
    int ok = logits != NULL;
    /* warm-up: page the weights in */
    if (ok) ok = llm_kv_forward(kv, NULL, toks, 8, NULL, NULL) == LLM_OK;
    for (int r = 0; r < RUNS && ok; r++) {
        llm_kv_clear(kv, 0);
        double t0 = bench_now();
        ok = llm_kv_forward(kv, NULL, toks, PREFILL, want, logits) == LLM_OK;
        tp[r] = PREFILL / (bench_now() - t0);
        llm_kv_clear(kv, 0);
        ok = ok && llm_kv_forward(kv, NULL, toks, 8, NULL, NULL) == LLM_OK;
        t0 = bench_now();
        for (int i = 0; i < DECODE && ok; i++) ok = llm_kv_forward(kv, NULL, &toks[i], 1, NULL, logits) == LLM_OK;
        td[r] = DECODE / (bench_now() - t0);
    }
    if (!ok) fprintf(stderr, "bench_generate: %s\n", llm_last_error());
    else { *prefill_tps = bench_median(tp, RUNS); *decode_tps = bench_median(td, RUNS); }
    free(logits);
    llm_kv_free(kv);
    return ok;
}

int main(int argc, char **argv) {
    FILE *out = bench_open_results(argc > 1 ? argv[1] : BENCH_RESULTS);
    if (!out) return 1;
    int cores = llm_cpu_count();
    llm_config shapes[2];
    const char *names[2] = {"gpt2-124m", "llama-110m"};
    shapes[0] = llm_config_gpt2();
    shapes[1] = llm_config_llama(32000, 12, 12, 12, 768, 2048);
    printf("llm.h SIMD level: %s; cores: %d; prefill %d tokens, decode %d tokens, median of %d\n",
           llm_simd_name(llm_simd_active()), cores, PREFILL, DECODE, RUNS);
    printf("%-11s %3s %12s %12s %10s\n", "model", "thr", "prefill t/s", "decode t/s", "decode GB/s");
    for (int s = 0; s < 2; s++) {
        float *params = NULL;
        int threads[2] = {1, cores};
        for (int k = 0; k < (cores > 1 ? 2 : 1); k++) {
            llm_options opt;
            memset(&opt, 0, sizeof opt);
            opt.n_threads = threads[k];
            llm_model *m = NULL;
            llm_status st;
            if (!params) {   /* random weights once, then copied into the next model */
                st = llm_model_create(&m, &shapes[s], &opt, 1);
                if (st == LLM_OK) {
                    params = (float *)malloc(llm_model_num_params(m) * sizeof(float));
                    if (params) llm_model_get_params(m, params);
                }
            } else {
                st = llm__model_new(&m, &shapes[s], &opt);
                if (st == LLM_OK) st = llm_model_set_params(m, params);
            }
            if (st != LLM_OK) { fprintf(stderr, "bench_generate: %s\n", llm_last_error()); return 1; }
            double pt = 0, dt = 0;
            if (!bench(m, &pt, &dt)) return 1;
            /* weight bytes streamed per decoded token: all but the position table, of
             * which one row is read (the tied embedding is read whole, as the classifier) */
            size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
            llm_tensor_layout(&shapes[s], off, size);
            double gb = dt * (double)(llm_model_num_params(m) - size[1]) * 4.0 * 1e-9;
            printf("%-11s %3d %12.1f %12.1f %10.1f\n", names[s], threads[k], pt, dt, gb);
            fprintf(out, "{\"bench\":\"generate\",\"time\":%ld,\"simd\":\"%s\",\"model\":\"%s\",\"params\":%zu,"
                         "\"threads\":%d,\"prefill_tokens\":%d,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
                         "\"decode_weight_gb_s\":%.2f}\n",
                    (long)time(NULL), llm_simd_name(llm_simd_active()), names[s], llm_model_num_params(m), threads[k],
                    PREFILL, pt, dt, gb);
            fflush(out);
            llm_model_free(m);
        }
        free(params);
    }
    fclose(out);
    return 0;
}
