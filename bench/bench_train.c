/* bench/bench_train.c: GPT-2 124M training and inference speed, against PyTorch.
 *
 * Figures (each the median of --steps runs after one warm-up run, default 5):
 *   train B=4 T=64    forward + backward + AdamW step (with zero_grad and clipping)
 *   train B=4 T=256   the same
 *   infer B=1 T=64    forward only (logits for every position)
 * at 1 thread and at all cores, with the time split into forward / backward / step.
 * When /usr/bin/python3 (or $LLM_PY) has torch, bench/torch_step.py times the same work
 * in PyTorch right after each llm.h figure (interleaved, so both see the same machine),
 * with OMP_WAIT_POLICY=PASSIVE and torch.set_num_threads matching, and the ratio is
 * printed. Random weights (GPT-2 init) and random tokens: speed does not depend on them.
 *
 *   build/bench/bench_train [results.jsonl] [--steps N] [--no-torch] [--threads N]
 *
 * Appends one JSON line per figure to results.jsonl (default bench/results.jsonl).
 * --threads N replaces "all cores" by N; --steps 3 makes a quick run (T=256 at one
 * thread takes ~10 s a step in both implementations on a laptop core). */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static double now_ms(void) { return bench_now() * 1e3; }

typedef struct { const char *mode; int B, T; } bcase;

/* Median ms of the whole step and of its parts (fwd, bwd, step) over n runs. */
static int time_llm(llm_model *m, const bcase *c, int n, double out[4]) {
    size_t BT = (size_t)c->B * (size_t)c->T;
    int train = !strcmp(c->mode, "train");
    int *in = (int *)malloc(2 * BT * sizeof(int)), *tg = in + BT;
    double *t[4];
    llm_rng r;
    llm_adamw_config ac = llm_adamw_config_default();
    if (!in) return 0;
    for (int k = 0; k < 4; k++) t[k] = (double *)calloc((size_t)n, sizeof(double));
    llm_rng_seed(&r, 42);
    for (size_t i = 0; i < 2 * BT; i++) in[i] = (int)(llm_rng_u64(&r) % 50257);
    int ok = 1;
    for (int i = -1; i < n && ok; i++) {   /* i = -1: warm-up */
        double t0 = now_ms(), t1, t2, t3;
        float loss, norm;
        ok = llm_model_forward(m, in, train ? tg : NULL, c->B, c->T, &loss) == LLM_OK;
        t1 = now_ms();
        if (ok && train) ok = llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK;
        t2 = now_ms();
        if (ok && train) ok = llm_model_step(m, &ac, 3e-4f, &norm) == LLM_OK;
        t3 = now_ms();
        if (i >= 0) { t[0][i] = t3 - t0; t[1][i] = t1 - t0; t[2][i] = t2 - t1; t[3][i] = t3 - t2; }
    }
    if (!ok) fprintf(stderr, "bench_train: %s\n", llm_last_error());
    for (int k = 0; k < 4; k++) { out[k] = ok ? bench_median(t[k], n) : 0; free(t[k]); }
    free(in);
    return ok;
}

/* PyTorch's median ms for the same case, or -1. */
static double time_torch(const char *py, const bcase *c, int threads, int n) {
    char cmd[1024], line[4096];
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%d %s bench/torch_step.py --mode %s --B %d --T %d "
             "--threads %d --steps %d 2>/dev/null", threads, py, c->mode, c->B, c->T, threads, n);
    FILE *p = popen(cmd, "r");
    double ms = -1;
    if (!p) return -1;
    while (fgets(line, sizeof line, p)) {
        const char *k = strstr(line, "\"ms\": ");
        if (k) ms = strtod(k + 6, NULL);
    }
    if (pclose(p) != 0) return -1;
    return ms;
}

int main(int argc, char **argv) {
    const char *out_path = BENCH_RESULTS;
    int steps = 5, use_torch = 1, max_threads = llm_cpu_count();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-torch")) use_torch = 0;
        else if (argv[i][0] != '-') out_path = argv[i];
        else { fprintf(stderr, "usage: %s [results.jsonl] [--steps N] [--no-torch] [--threads N]\n", argv[0]); return 2; }
    }
    if (steps < 1 || max_threads < 1) { fprintf(stderr, "bench_train: --steps and --threads must be positive\n"); return 2; }
    FILE *out = bench_open_results(out_path);
    if (!out) return 1;
    const char *py = getenv("LLM_PY") ? getenv("LLM_PY") : "/usr/bin/python3";
    char probe[512];
    snprintf(probe, sizeof probe, "%s -c 'import torch' >/dev/null 2>&1 && test -f bench/torch_step.py", py);
    if (use_torch && system(probe) != 0) {
        printf("PyTorch: not found (%s has no torch, or bench/torch_step.py is missing): llm.h only\n", py);
        use_torch = 0;
    }
    const char *simd = llm_simd_name(llm_simd_active());
    printf("GPT-2 124M (L=12 NH=12 C=768 V=50257), simd %s, %d cores; median of %d after 1 warm-up\n",
           simd, llm_cpu_count(), steps);

    static const bcase cases[3] = {{"train", 4, 64}, {"train", 4, 256}, {"infer", 1, 64}};
    int threads[2] = {1, max_threads}, n_counts = max_threads > 1 ? 2 : 1;
    long stamp = (long)time(NULL);
    for (int ti = 0; ti < n_counts; ti++) {
        int nt = threads[ti];
        llm_options opt;
        memset(&opt, 0, sizeof opt);
        opt.n_threads = nt;
        llm_config cfg = llm_config_gpt2();
        llm_model *m = NULL;
        if (llm_model_create(&m, &cfg, &opt, 1) != LLM_OK || llm_model_reserve(m, 4, 256) != LLM_OK) {
            fprintf(stderr, "bench_train: %s\n", llm_last_error());
            llm_model_free(m);
            return 1;
        }
        for (int ci = 0; ci < 3; ci++) {
            const bcase *c = &cases[ci];
            double t[4];
            if (!time_llm(m, c, steps, t)) { llm_model_free(m); return 1; }
            double tok_s = c->B * c->T / (t[0] / 1e3);
            printf("%-5s B=%d T=%-3d threads=%d  llm.h %8.1f ms  %7.0f tok/s", c->mode, c->B, c->T, nt, t[0], tok_s);
            if (!strcmp(c->mode, "train")) printf("  (fwd %.0f, bwd %.0f, step %.0f)", t[1], t[2], t[3]);
            fprintf(out, "{\"bench\":\"gpt2_124m_%s\",\"time\":%ld,\"impl\":\"llm.h\",\"simd\":\"%s\",\"B\":%d,\"T\":%d,"
                    "\"threads\":%d,\"runs\":%d,\"ms\":%.2f,\"tok_s\":%.1f,\"fwd_ms\":%.2f,\"bwd_ms\":%.2f,\"step_ms\":%.2f}\n",
                    c->mode, stamp, simd, c->B, c->T, nt, steps, t[0], tok_s, t[1], t[2], t[3]);
            if (use_torch) {
                fflush(stdout);
                double tm = time_torch(py, c, nt, steps);
                if (tm > 0) {
                    printf("  | PyTorch %8.1f ms  -> llm.h %.2fx", tm, tm / t[0]);
                    fprintf(out, "{\"bench\":\"gpt2_124m_%s\",\"time\":%ld,\"impl\":\"pytorch\",\"omp_wait_policy\":\"PASSIVE\","
                            "\"B\":%d,\"T\":%d,\"threads\":%d,\"runs\":%d,\"ms\":%.2f,\"tok_s\":%.1f,\"llm_speedup\":%.3f}\n",
                            c->mode, stamp, c->B, c->T, nt, steps, tm, c->B * c->T / (tm / 1e3), tm / t[0]);
                } else {
                    printf("  | PyTorch failed");
                }
            }
            printf("\n");
            fflush(stdout);
            fflush(out);
        }
        llm_model_free(m);
    }
    fclose(out);
    printf("appended to %s\n", out_path);
    return 0;
}
