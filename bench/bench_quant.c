/* bench_quant: inference with fp32, bf16 and Q8_0 weights (llm_model_quantize).
 *
 *   ./build/bench/bench_quant [results.jsonl] [--rounds R] [--no-1b]
 *
 * 1. A Llama 110M shape (dim 768, hidden 2048, 12 layers, 12 heads, vocab 32000, tied
 *    classifier: llama2.c's stories110M) with random weights, batch 1 through the KV cache:
 *      prefill: one call forwarding a 128-token prompt (logits of the last row only)
 *      decode:  32 calls of one token each after an 8-token prompt (every logit row)
 *    for fp32, bf16 and Q8_0 weights on 1 thread and on all cores; R rounds (default 5),
 *    every configuration once per round, so that all see the same machine; medians.
 * 2. With LLM_LLAMA_BENCH=/path/to/llama-bench (llama.cpp, built natively; never needed
 *    otherwise), the same weights are written to GGUF (F32 and Q8_0, by
 *    tests/gguf_write.py) and llama-bench measures them in the same rounds
 *    (-p 128 -n 0 and -p 0 -n 32, -r 1 each time): "ours / theirs" is printed.
 * 3. A 1.1B Llama shape (TinyLlama's: dim 2048, hidden 5632, 22 layers, 32 heads, 4 KV
 *    heads, vocab 32000, separate classifier): the weights' bytes in fp32 / bf16 / Q8_0,
 *    and decode tokens/s with random Q8_0 weights (made directly as Q8_0: the 4.4 GB of
 *    fp32 are never allocated).
 * Decode at batch 1 reads every weight once per token: the GB/s printed beside it is the
 * weights' bytes times tokens/s. */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

enum { PREFILL = 128, DECODE = 32 };

/* One prefill and one decode measurement of model m (tokens/s). */
static int run_once(llm_model *m, double *pre, double *dec) {
    llm_config c = llm_model_config(m);
    int V = c.vocab_size, toks[PREFILL];
    unsigned char want[PREFILL];
    for (int i = 0; i < PREFILL; i++) { toks[i] = (i * 7919 + 13) % V; want[i] = i == PREFILL - 1; }
    float *logits = (float *)malloc((size_t)V * sizeof(float));
    llm_kv *kv = NULL;
    int ok = logits && llm_kv_create(&kv, m, 1, PREFILL + DECODE + 8, 0) == LLM_OK;
    if (ok) {
        double t0 = bench_now();
        ok = llm_kv_forward(kv, NULL, toks, PREFILL, want, logits) == LLM_OK;
        *pre = PREFILL / (bench_now() - t0);
        llm_kv_clear(kv, 0);
        ok = ok && llm_kv_forward(kv, NULL, toks, 8, NULL, NULL) == LLM_OK;
        t0 = bench_now();
        for (int i = 0; i < DECODE && ok; i++) ok = llm_kv_forward(kv, NULL, &toks[i], 1, NULL, logits) == LLM_OK;
        *dec = DECODE / (bench_now() - t0);
    }
    if (!ok) fprintf(stderr, "bench_quant: %s\n", llm_last_error());
    llm_kv_free(kv);
    free(logits);
    return ok;
}

/* llama-bench on a GGUF file: tokens/s of a prefill (-p n) or a decode (-n n) test, one
 * repetition, from its CSV (the column avg_ts). 0 on failure. */
static double llama_bench(const char *bin, const char *gguf, int threads, int prefill) {
    char cmd[2048], line[4096];
    snprintf(cmd, sizeof cmd, "%s -m %s -t %d -r 1 -o csv %s 2>/dev/null", bin, gguf, threads,
             prefill ? "-p 128 -n 0" : "-p 0 -n 32");
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    int col = -1;
    double v = 0;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r(line, ",\n", &save);
        for (int i = 0; tok; i++, tok = strtok_r(NULL, ",\n", &save)) {
            if (col < 0 && !strcmp(tok, "\"avg_ts\"")) col = i;
            else if (col >= 0 && i == col) v = atof(tok[0] == '"' ? tok + 1 : tok);
        }
    }
    pclose(f);
    return v;
}

static double sum_bytes(llm_model *m) { return (double)llm_model_weight_bytes(m); }

int main(int argc, char **argv) {
    const char *results = BENCH_RESULTS;
    int rounds = 5, big = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-1b")) big = 0;
        else results = argv[i];
    }
    if (rounds < 1 || rounds > 64) rounds = 5;
    FILE *out = bench_open_results(results);
    if (!out) return 1;
    int cores = llm_cpu_count(), nth[2] = {1, cores > 1 ? cores : 1}, nt = cores > 1 ? 2 : 1;
    const char *dn[3] = {"fp32", "bf16", "q8_0"};
    const llm_dtype dt[3] = {LLM_DTYPE_F32, LLM_DTYPE_BF16, LLM_DTYPE_Q8_0};
    llm_config c = llm_config_llama(32000, 12, 12, 12, 768, 2048);
    printf("bench_quant: SIMD %s (%s); %d cores; Llama-110M random weights, prefill %d, decode %d, median of %d rounds\n",
           llm_simd_name(llm_simd_active()), llm__cpu_features(), cores, PREFILL, DECODE, rounds);
    llm_model *m[2][3];
    for (int t = 0; t < nt; t++)
        for (int d = 0; d < 3; d++) {
            llm_options opt;
            memset(&opt, 0, sizeof opt);
            opt.n_threads = nth[t];
            m[t][d] = NULL;
            if (llm_model_create(&m[t][d], &c, &opt, 1) != LLM_OK || (d && llm_model_quantize(m[t][d], dt[d]) != LLM_OK)) {
                fprintf(stderr, "bench_quant: %s\n", llm_last_error());
                return 1;
            }
        }
    /* llama.cpp side by side (optional) */
    const char *lb = getenv("LLM_LLAMA_BENCH");
    char gg[2][256] = {"", ""};
    if (lb && *lb) {
        const char *ck = "/tmp/llm_bench_quant.ckpt";
        snprintf(gg[0], sizeof gg[0], "/tmp/llm_bench_quant_f32.gguf");
        snprintf(gg[1], sizeof gg[1], "/tmp/llm_bench_quant_q8_0.gguf");
        char cmd[1024];
        int ok = llm_model_save(m[0][0], ck, 0, NULL) == LLM_OK;
        for (int k = 0; k < 2 && ok; k++) {
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/gguf_write.py ckpt %s %s --type %s", ck, gg[k], k ? "q8_0" : "f32");
            ok = system(cmd) == 0;
        }
        remove(ck);
        if (!ok) { fprintf(stderr, "bench_quant: could not write the GGUF files for llama-bench\n"); lb = NULL; }
    } else {
        printf("(llama.cpp side by side: set LLM_LLAMA_BENCH=/path/to/llama-bench)\n");
        lb = NULL;
    }
    double pre[2][5][64], dec[2][5][64];   /* [threads][fp32 bf16 q8 | llama.cpp f32 q8][round] */
    for (int r = 0; r < rounds; r++)
        for (int t = 0; t < nt; t++) {
            for (int d = 0; d < 3; d++) {
                if (!run_once(m[t][d], &pre[t][d][r], &dec[t][d][r])) return 1;
            }
            for (int k = 0; lb && k < 2; k++) {
                pre[t][3 + k][r] = llama_bench(lb, gg[k], nth[t], 1);
                dec[t][3 + k][r] = llama_bench(lb, gg[k], nth[t], 0);
            }
        }
    for (int t = 0; t < nt; t++) {
        double p[5], d[5];
        for (int k = 0; k < (lb ? 5 : 3); k++) { p[k] = bench_median(pre[t][k], rounds); d[k] = bench_median(dec[t][k], rounds); }
        for (int k = 0; k < 3; k++) {
            printf("  llama-110m %d thread%s %-5s  decode %7.1f tok/s (%4.1f GB/s, %.2fx fp32)  prefill %7.1f tok/s (%.2fx fp32)\n", nth[t],
                   nth[t] > 1 ? "s" : " ", dn[k], d[k], d[k] * sum_bytes(m[t][k]) / 1e9, d[k] / d[0], p[k], p[k] / p[0]);
            fprintf(out, "{\"bench\":\"quant\",\"model\":\"llama-110m\",\"dtype\":\"%s\",\"threads\":%d,\"decode_tps\":%.2f,"
                         "\"prefill_tps\":%.2f,\"rounds\":%d}\n", dn[k], nth[t], d[k], p[k], rounds);
        }
        for (int k = 3; lb && k < 5; k++) {
            int ours = k == 3 ? 0 : 2;
            printf("  llama.cpp  %d thread%s %-5s  decode %7.1f tok/s  prefill %7.1f tok/s   llm.h %s / llama.cpp: decode %.2fx, prefill %.2fx\n",
                   nth[t], nth[t] > 1 ? "s" : " ", k == 3 ? "f32" : "q8_0", d[k], p[k], dn[ours],
                   d[k] > 0 ? d[ours] / d[k] : 0, p[k] > 0 ? p[ours] / p[k] : 0);
            fprintf(out, "{\"bench\":\"quant\",\"model\":\"llama-110m\",\"impl\":\"llama.cpp\",\"dtype\":\"%s\",\"threads\":%d,"
                         "\"decode_tps\":%.2f,\"prefill_tps\":%.2f,\"rounds\":%d}\n", k == 3 ? "f32" : "q8_0", nth[t], d[k], p[k], rounds);
        }
    }
    for (int t = 0; t < nt; t++) for (int d = 0; d < 3; d++) llm_model_free(m[t][d]);
    for (int k = 0; lb && k < 2; k++) remove(gg[k]);

    if (big) {   /* TinyLlama 1.1B: memory of each type, Q8_0 decode with random weights */
        llm_config b = llm_config_llama(32000, 22, 32, 4, 2048, 5632);
        b.max_seq_len = 2048; b.untied_head = 1;
        size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_tensor_layout(&b, off, size);
        double np = (double)(off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1]);
        printf("llama-1.1b (TinyLlama shape), %.3f B parameters: weights fp32 %.0f MB", np / 1e9, np * 4 / 1e6);
        for (int d = 1; d < 3; d++) {
            llm_model *q = NULL;
            llm_options opt;
            memset(&opt, 0, sizeof opt);
            opt.n_threads = 1;
            if (llm__model_make(&q, &b, &opt, dt[d]) != LLM_OK) { fprintf(stderr, "\nbench_quant: %s\n", llm_last_error()); return 1; }
            printf(", %s %.0f MB", dn[d], sum_bytes(q) / 1e6);
            fprintf(out, "{\"bench\":\"quant\",\"model\":\"llama-1.1b\",\"dtype\":\"%s\",\"weight_bytes\":%.0f,\"fp32_bytes\":%.0f}\n",
                    dn[d], sum_bytes(q), np * 4);
            llm_model_free(q);
        }
        printf("\n");
        for (int t = 0; t < nt; t++) {
            llm_options opt;
            memset(&opt, 0, sizeof opt);
            opt.n_threads = nth[t];
            llm_model *q = NULL;
            if (llm__model_make(&q, &b, &opt, LLM_DTYPE_Q8_0) != LLM_OK) { fprintf(stderr, "bench_quant: %s\n", llm_last_error()); return 1; }
            /* random Q8_0 weights: scales near 0.02/127, values uniform in [-127, 127];
             * norm gains 1 */
            test_seed(5);
            for (int k = 0; k <= LLM__Q_EMB; k++) {
                int N, K, nl;
                llm__qshape(q, k, &N, &K, &nl);
                if (k == LLM__W_CLS && !b.untied_head) continue;
                for (int l = 0; l < nl; l++) {
                    unsigned char *W = llm__qmat(q, k, l);
                    size_t nbk = q->qper[k] / LLM__Q8_TB;
                    for (size_t bl = 0; bl < nbk; bl++) {
                        unsigned char *B = W + bl * LLM__Q8_TB;
                        for (int r = 0; r < LLM__QT; r++) { uint16_t h = llm__f32_to_f16(0.02f / 127 * (1 + 0.1f * test_frand())); memcpy(B + 2 * r, &h, 2); }
                        for (int i = 2 * LLM__QT; i < LLM__Q8_TB; i++) B[i] = (unsigned char)(int8_t)(test_rand_u64() % 255 - 127);
                    }
                }
            }
            const int gains[3] = {2, 8, 14};
            for (int g = 0; g < 3; g++) {
                float *v = llm__view(&q->p, gains[g]);
                for (size_t i = 0; i < q->size[gains[g]]; i++) v[i] = 1.0f;
            }
            double pp[64], dd[64];
            int R = rounds < 3 ? rounds : 3;
            for (int r = 0; r < R; r++) if (!run_once(q, &pp[r], &dd[r])) return 1;
            double d = bench_median(dd, R), p = bench_median(pp, R);
            printf("  llama-1.1b %d thread%s q8_0  decode %6.1f tok/s (%4.1f GB/s)  prefill %6.1f tok/s\n", nth[t], nth[t] > 1 ? "s" : " ",
                   d, d * sum_bytes(q) / 1e9, p);
            fprintf(out, "{\"bench\":\"quant\",\"model\":\"llama-1.1b\",\"dtype\":\"q8_0\",\"threads\":%d,\"decode_tps\":%.2f,"
                         "\"prefill_tps\":%.2f,\"rounds\":%d}\n", nth[t], d, p, R);
            llm_model_free(q);
        }
    }
    fclose(out);
    return 0;
}
