/* bench/bench_finetune.c: fine-tuning's levers at GPT-2 124M (issue 10's goals).
 *
 *   1. step time, full fine-tuning against LoRA r=8 (qkv, proj, up, down), B=4 T=256 at
 *      --threads (2): forward + backward + AdamW, the two interleaved step by step in the
 *      same run (so both see the same machine), the median of --steps after a warm-up.
 *      Goal: LoRA >= 1.3x faster. Beside them, what dropout (p = 0.1) and recompute
 *      cost LoRA's step.
 *   2. optimizer memory (AdamW's m and v, llm_model_memory): LoRA's share of full's.
 *      Goal: < 2%.
 *   3. peak resident memory of one training step at B=4 T=1024 for full, LoRA,
 *      LoRA + recompute and full + recompute, each in a child process of its own
 *      (getrusage's ru_maxrss of the child), beside llm_model_memory's accounting of the
 *      activations. Goal: recompute's activations >= 3x smaller.
 *   4. a real fine-tune: build/finetune trains llama2.c's pretrained stories260K (a
 *      TinyStories Llama) with LoRA on Tiny Shakespeare and prints the validation loss and
 *      perplexity on held-out Shakespeare as it goes (the curve).
 * Random GPT-2 124M weights for 1-3 (no pretrained weights are needed to time a step;
 * make gpt2 fetches the real ones).
 *
 *   build/bench/bench_finetune [results.jsonl] [--steps N] [--threads N] [--quick]
 *
 * --quick: T=256 for the peak memory and a short curve. Appends JSON lines to
 * results.jsonl (default bench/results.jsonl). */
#define _DEFAULT_SOURCE 1   /* wait4: a child's own peak memory */
#include "bench/bench.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct { const char *name; int lora, recompute; } bconf;

static llm_model *make_model(int threads, int lora, int recompute, float dropout) {
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    opt.recompute = recompute;
    opt.dropout = dropout;
    llm_config cfg = llm_config_gpt2();
    llm_model *m = NULL;
    if (llm_model_create(&m, &cfg, &opt, 1) != LLM_OK) return NULL;
    if (lora) {
        llm_lora_config lc;
        memset(&lc, 0, sizeof lc);
        lc.rank = lora; lc.seed = 7;
        if (llm_model_lora_create(m, &lc) != LLM_OK) { llm_model_free(m); return NULL; }
    }
    return m;
}

/* One training step (forward, zero_grad, backward, AdamW) in ms; < 0 on failure. */
static double step_ms(llm_model *m, const int *in, const int *tg, int B, int T) {
    llm_adamw_config ac = llm_adamw_config_default();
    float loss, norm;
    double t0 = bench_now();
    if (llm_model_forward(m, in, tg, B, T, &loss) != LLM_OK || llm_model_zero_grad(m) != LLM_OK ||
        llm_model_backward(m, 1.0f) != LLM_OK || llm_model_step(m, &ac, 1e-4f, &norm) != LLM_OK) {
        fprintf(stderr, "bench_finetune: %s\n", llm_last_error());
        return -1;
    }
    return (bench_now() - t0) * 1e3;
}

static int *random_tokens(size_t n) {
    int *t = (int *)malloc(n * sizeof(int));
    llm_rng r;
    llm_rng_seed(&r, 42);
    for (size_t i = 0; t && i < n; i++) t[i] = (int)(llm_rng_u64(&r) % 50257);
    return t;
}

/* 3: one step in a child; its peak RSS in MB (ru_maxrss), and the accounting. */
static double child_peak(const bconf *c, int threads, int B, int T, llm_memory *acct) {
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        llm_model *m = make_model(threads, c->lora, c->recompute, 0.0f);
        int *in = random_tokens(2 * (size_t)B * T);
        llm_memory u;
        memset(&u, 0, sizeof u);
        int ok = m && in && llm_model_memory(m, B, T, &u) == LLM_OK && step_ms(m, in, in + (size_t)B * T, B, T) >= 0;
        if (write(fd[1], &u, sizeof u) != (ssize_t)sizeof u) ok = 0;
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], acct, sizeof *acct);
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || got != (ssize_t)sizeof *acct)
        return -1;
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
    const char *out_path = BENCH_RESULTS;
    int steps = 5, threads = 2, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (argv[i][0] != '-') out_path = argv[i];
        else { fprintf(stderr, "usage: %s [results.jsonl] [--steps N] [--threads N] [--quick]\n", argv[0]); return 2; }
    }
    if (steps < 1 || threads < 1) { fprintf(stderr, "bench_finetune: --steps and --threads must be positive\n"); return 2; }
    FILE *out = bench_open_results(out_path);
    if (!out) return 1;
    long stamp = (long)time(NULL);
    const char *simd = llm_simd_name(llm_simd_active());
    printf("GPT-2 124M, simd %s, %d threads\n", simd, threads);

    /* ---- 1 and 2: step time and optimizer memory, full vs LoRA r=8 ---- */
    {
        const int B = 4, T = 256;
        llm_model *full = make_model(threads, 0, 0, 0.0f), *lora = make_model(threads, 8, 0, 0.0f);
        llm_model *ldrop = make_model(threads, 8, 0, 0.1f), *lrec = make_model(threads, 8, 1, 0.0f);
        int *in = random_tokens(2 * (size_t)B * T);
        double *tf = (double *)calloc((size_t)steps, sizeof(double)), *tl = (double *)calloc((size_t)steps, sizeof(double));
        double *td = (double *)calloc((size_t)steps, sizeof(double)), *tr = (double *)calloc((size_t)steps, sizeof(double));
        if (!full || !lora || !ldrop || !lrec || !in || !tf || !tl || !td || !tr) { fprintf(stderr, "bench_finetune: %s\n", llm_last_error()); return 1; }
        for (int i = -1; i < steps; i++) {   /* i = -1: warm-up (pages in the moments) */
            double a = step_ms(full, in, in + B * T, B, T), b = step_ms(lora, in, in + B * T, B, T);
            double d = step_ms(ldrop, in, in + B * T, B, T), r = step_ms(lrec, in, in + B * T, B, T);
            if (a < 0 || b < 0 || d < 0 || r < 0) return 1;
            if (i >= 0) { tf[i] = a; tl[i] = b; td[i] = d; tr[i] = r; }
        }
        double mf = bench_median(tf, steps), ml = bench_median(tl, steps), md = bench_median(td, steps), mr = bench_median(tr, steps);
        llm_memory uf, ul;
        llm_model_memory(full, B, T, &uf);
        llm_model_memory(lora, B, T, &ul);
        printf("train step B=%d T=%d: full %.1f ms, LoRA r=8 %.1f ms -> LoRA %.2fx faster (goal >= 1.3x)\n", B, T, mf, ml, mf / ml);
        printf("LoRA r=8 with dropout 0.1: %.1f ms (%+.1f%%); with recompute: %.1f ms (%+.1f%%)\n", md, 100 * (md / ml - 1), mr,
               100 * (mr / ml - 1));
        printf("optimizer memory: full %.1f MB, LoRA %.2f MB = %.3f%% of full (goal < 2%%); adapters %zu parameters\n",
               uf.optimizer / 1e6, ul.optimizer / 1e6, 100.0 * (double)ul.optimizer / (double)uf.optimizer, llm_model_lora_num_params(lora));
        fprintf(out, "{\"bench\":\"finetune_step\",\"time\":%ld,\"simd\":\"%s\",\"B\":%d,\"T\":%d,\"threads\":%d,\"runs\":%d,"
                "\"full_ms\":%.2f,\"lora8_ms\":%.2f,\"speedup\":%.3f,\"lora8_dropout_ms\":%.2f,\"lora8_recompute_ms\":%.2f,"
                "\"full_optimizer_bytes\":%zu,\"lora8_optimizer_bytes\":%zu}\n",
                stamp, simd, B, T, threads, steps, mf, ml, mf / ml, md, mr, uf.optimizer, ul.optimizer);
        fflush(stdout); fflush(out);
        free(tf); free(tl); free(td); free(tr); free(in);
        llm_model_free(full); llm_model_free(lora); llm_model_free(ldrop); llm_model_free(lrec);
    }

    /* ---- 3: peak memory of one step, each configuration in its own process ---- */
    {
        const int B = 4, T = quick ? 256 : 1024;
        static const bconf confs[4] = {{"full", 0, 0}, {"LoRA r=8", 8, 0}, {"LoRA r=8 + recompute", 8, 1}, {"full + recompute", 0, 1}};
        double act[4] = {0};
        for (int i = 0; i < 4; i++) {
            llm_memory u;
            memset(&u, 0, sizeof u);
            double peak = child_peak(&confs[i], threads, B, T, &u);
            if (peak < 0) { fprintf(stderr, "bench_finetune: %s at B=%d T=%d failed\n", confs[i].name, B, T); return 1; }
            act[i] = (double)u.activations;
            printf("peak RSS B=%d T=%d %-22s %7.0f MB   (accounted: parameters %.0f, gradients %.0f, AdamW %.0f, activations %.0f, total %.0f MB)\n",
                   B, T, confs[i].name, peak, (u.params + u.adapters) / 1e6, u.grads / 1e6, u.optimizer / 1e6, u.activations / 1e6, u.total / 1e6);
            fprintf(out, "{\"bench\":\"finetune_peak_rss\",\"time\":%ld,\"config\":\"%s\",\"B\":%d,\"T\":%d,\"threads\":%d,"
                    "\"peak_rss_mb\":%.1f,\"activations_bytes\":%zu,\"total_bytes\":%zu}\n", stamp, confs[i].name, B, T, threads,
                    peak, u.activations, u.total);
            fflush(stdout); fflush(out);
        }
        printf("recompute: activations %.2fx smaller with LoRA, %.2fx with full (goal >= 3x)\n", act[1] / act[2], act[0] / act[3]);
    }

    /* ---- 4: a real fine-tune's validation curve ---- */
    {
        char model[1024], tok[1024], text[1024], cmd[4096], line[1024];
        const char *d = test_data_dir();
        snprintf(model, sizeof model, "%s/stories260K/stories260K.bin", d);
        snprintf(tok, sizeof tok, "%s/stories260K/tok512.bin", d);
        snprintf(text, sizeof text, "%s/tinyshakespeare/input.txt", d);
        if (!test_file_exists(model) || !test_file_exists(tok) || !test_file_exists(text) || !test_file_exists("build/finetune")) {
            printf("fine-tune curve: SKIP (needs build/finetune and stories260K + tinyshakespeare in %s)\n", d);
        } else {
            int S = quick ? 100 : 400;
            snprintf(cmd, sizeof cmd, "build/finetune -m %s -z %s --text %s --lora 8 -s %d -b 8 -t 128 --lr 3e-3 "
                     "--eval-every %d --eval-batches 16 --threads %d --seed 1 --print-every 1000000", model, tok, text, S, S / 10, threads);
            printf("fine-tune curve: stories260K (TinyStories) -> Tiny Shakespeare, LoRA r=8, %d steps of 8x128:\n  %s\n", S, cmd);
            fflush(stdout);
            FILE *p = popen(cmd, "r");
            if (!p) return 1;
            while (fgets(line, sizeof line, p)) {
                if (!strncmp(line, "val step", 8) || !strncmp(line, "mean", 4) || !strncmp(line, "peak", 4) ||
                    !strncmp(line, "memory", 6)) {
                    printf("  %s", line);
                    int st, tot;
                    float vl, ppl;
                    if (sscanf(line, "val step %d/%d | val loss %f | ppl %f", &st, &tot, &vl, &ppl) == 4)
                        fprintf(out, "{\"bench\":\"finetune_curve\",\"time\":%ld,\"model\":\"stories260K\",\"text\":\"tinyshakespeare\","
                                "\"lora\":8,\"step\":%d,\"val_loss\":%.5f,\"ppl\":%.3f}\n", stamp, st, vl, ppl);
                }
            }
            if (pclose(p) != 0) { fprintf(stderr, "bench_finetune: build/finetune failed\n"); return 1; }
        }
    }
    fclose(out);
    return 0;
}
