/* bench/bench_bf16_loss.c: what bf16 matmuls cost in accuracy, and what they save in time.
 *
 * Trains a small GPT-2 (L=4, C=256, NH=4, GPT-2 vocabulary) on Tiny Shakespeare twice
 * from the same initialisation, with the same batches and learning-rate schedule: once
 * in fp32, once with llm_options.bf16 = 1 (matmul operands rounded to bfloat16, fp32
 * accumulation; weights, gradients and AdamW stay fp32). Prints both training-loss
 * curves (every 10th step), the max and mean |difference| over all steps, the mean of
 * the last 20 steps, the validation loss at the end and the time per step.
 *
 *   ./build/bench/bench_bf16_loss [results.jsonl] [steps]
 *          (default bench/results.jsonl, 200 steps)
 *
 * The token file is $LLM_DATA/tinyshakespeare/input.gpt2.tokens.txt (LLM_DATA defaults
 * to ../shared/data, then data), one id per line; it is converted with
 * llm_dataset_write into build/tinyshakespeare.gpt2.bin on first use. The last 10% of
 * the tokens are the validation split. On a CPU without AVX512-BF16 both runs are fp32
 * and the curves are identical (the output says so). */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

/* The text file of ids -> the binary dataset (once). */
static int make_dataset(const char *txt, const char *bin) {
    FILE *f = fopen(bin, "rb");
    if (f) { fclose(f); return 0; }
    f = fopen(txt, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", txt); return 1; }
    size_t n = 0, cap = 1 << 16;
    int *ids = (int *)malloc(cap * sizeof(int)), v;
    while (ids && fscanf(f, "%d", &v) == 1) {
        if (v < 0 || v >= 50257) { fprintf(stderr, "%s: bad token id %d\n", txt, v); fclose(f); free(ids); return 1; }
        if (n == cap) { int *t = (int *)realloc(ids, 2 * cap * sizeof(int)); if (!t) { free(ids); ids = NULL; break; } ids = t; cap *= 2; }
        ids[n++] = v;
    }
    fclose(f);
    if (!ids) { fprintf(stderr, "out of memory\n"); return 1; }
    llm_status s = llm_dataset_write(bin, ids, n);
    free(ids);
    if (s != LLM_OK) { fprintf(stderr, "%s\n", llm_last_error()); return 1; }
    return 0;
}

typedef struct { float *loss; float val; double ms_per_step; } run_result;

static int train(const llm_dataset *d, int bf16, int steps, int B, int T, run_result *r) {
    llm_config cfg = llm_config_gpt2();
    cfg.n_layer = 4; cfg.n_head = 4; cfg.n_embd = 256; cfg.max_seq_len = T;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.bf16 = bf16;
    llm_model *m = NULL;
    if (llm_model_create(&m, &cfg, &opt, 1337) != LLM_OK) { fprintf(stderr, "create: %s\n", llm_last_error()); return 1; }
    size_t n = llm_dataset_len(d), split = n / 10 * 9;
    llm_loader tl, vl;
    memset(&tl, 0, sizeof tl); memset(&vl, 0, sizeof vl);
    if (llm_loader_init(&tl, d, 0, split, B, T, 1, 42) != LLM_OK || llm_loader_init(&vl, d, split, n, B, T, 0, 0) != LLM_OK) {
        fprintf(stderr, "loader: %s\n", llm_last_error()); llm_model_free(m); return 1;
    }
    llm_adamw_config ac = llm_adamw_config_default();
    ac.grad_clip = 1.0f;
    llm_lr_schedule sched;
    sched.kind = LLM_LR_COSINE; sched.lr = 1e-3f; sched.min_lr = 1e-4f; sched.warmup = 20; sched.total = steps;
    int *in = (int *)malloc(sizeof(int) * B * T), *tg = (int *)malloc(sizeof(int) * B * T);
    int rc = 0;
    double t0 = bench_now();
    for (int step = 0; step < steps && !rc; step++) {
        float loss = 0;
        if (llm_loader_next(&tl, in, tg) != LLM_OK || llm_model_forward(m, in, tg, B, T, &loss) != LLM_OK ||
            llm_model_zero_grad(m) != LLM_OK || llm_model_backward(m, 1.0f) != LLM_OK ||
            llm_model_step(m, &ac, llm_lr_at(&sched, step), NULL) != LLM_OK) {
            fprintf(stderr, "step %d: %s\n", step, llm_last_error()); rc = 1;
        }
        r->loss[step] = loss;
    }
    r->ms_per_step = (bench_now() - t0) * 1e3 / steps;
    if (!rc && llm_model_eval(m, &vl, 20, &r->val, NULL) != LLM_OK) { fprintf(stderr, "eval: %s\n", llm_last_error()); rc = 1; }
    free(in); free(tg);
    llm_loader_free(&tl); llm_loader_free(&vl);
    llm_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    const char *out_path = argc > 1 ? argv[1] : BENCH_RESULTS;
    int steps = argc > 2 ? atoi(argv[2]) : 200, B = 8, T = 64;
    if (steps < 20) steps = 20;
    char txt[1024];
    snprintf(txt, sizeof txt, "%s/tinyshakespeare/input.gpt2.tokens.txt", test_data_dir());
    const char *bin = "build/tinyshakespeare.gpt2.bin";
    if (make_dataset(txt, bin)) return 1;
    llm_dataset *d = NULL;
    if (llm_dataset_open(&d, bin) != LLM_OK) { fprintf(stderr, "%s\n", llm_last_error()); return 1; }
    printf("CPU features: %s; bf16 GEMM available: %s; threads: %d\n", llm__cpu_features(),
           llm__has_bf16() ? "yes" : "no (both runs are fp32)", llm_cpu_count());
    printf("GPT-2 L=4 C=256 NH=4 V=50257, B=%d T=%d, %d steps, AdamW lr 1e-3 cosine (warmup 20), %zu tokens\n",
           B, T, steps, llm_dataset_len(d));
    run_result r32, r16;
    r32.loss = (float *)calloc((size_t)steps, sizeof(float));
    r16.loss = (float *)calloc((size_t)steps, sizeof(float));
    if (train(d, 0, steps, B, T, &r32) || train(d, 1, steps, B, T, &r16)) return 1;
    double maxd = 0, sumd = 0, last32 = 0, last16 = 0;
    printf("%5s %10s %10s %10s\n", "step", "fp32", "bf16", "bf16-fp32");
    for (int i = 0; i < steps; i++) {
        double dd = (double)r16.loss[i] - r32.loss[i];
        if (fabs(dd) > maxd) maxd = fabs(dd);
        sumd += fabs(dd);
        if (i >= steps - 20) { last32 += r32.loss[i] / 20.0; last16 += r16.loss[i] / 20.0; }
        if (i % 10 == 0 || i == steps - 1) printf("%5d %10.4f %10.4f %+10.4f\n", i, r32.loss[i], r16.loss[i], dd);
    }
    printf("|bf16 - fp32| training loss over %d steps: max %.4f, mean %.4f\n", steps, maxd, sumd / steps);
    printf("mean of the last 20 steps: fp32 %.4f, bf16 %.4f; validation loss: fp32 %.4f, bf16 %.4f\n",
           last32, last16, r32.val, r16.val);
    printf("time per step: fp32 %.1f ms, bf16 %.1f ms (x%.2f)\n", r32.ms_per_step, r16.ms_per_step,
           r32.ms_per_step / r16.ms_per_step);
    if (maxd == 0) printf("note: identical curves: the bf16 option did not change the matmuls here\n");
    FILE *out = bench_open_results(out_path);
    if (out) {
        fprintf(out, "{\"bench\":\"bf16_loss\",\"time\":%ld,\"bf16\":%d,\"steps\":%d,\"B\":%d,\"T\":%d,"
                "\"max_abs_diff\":%.5f,\"mean_abs_diff\":%.5f,\"last20_fp32\":%.5f,\"last20_bf16\":%.5f,"
                "\"val_fp32\":%.5f,\"val_bf16\":%.5f,\"ms_step_fp32\":%.2f,\"ms_step_bf16\":%.2f}\n",
                (long)time(NULL), llm__has_bf16(), steps, B, T, maxd, sumd / steps, last32, last16,
                r32.val, r16.val, r32.ms_per_step, r16.ms_per_step);
        fclose(out);
    }
    free(r32.loss); free(r16.loss);
    llm_dataset_close(d);
    return 0;
}
