/* tests/test_cuda_scaler.c: dynamic loss scaling (llm_loss_scaler, llm_model_step_scaled)
 * on every backend: the CPU always; with -DLLM_CUDA also the CUDA backend's exact fp32
 * mode and its fp16 mode, the one that needs it (on a GPU, or in CI on tests/cuda_emu.h,
 * which prints EMULATED).
 *
 * What PyTorch's GradScaler promises, and so what is checked:
 *   - defaults: scale 2^16, growth factor 2 every 2000 finite steps, backoff 0.5;
 *   - a non-finite gradient (here a poisoned one: a backend wrapper writes inf or NaN into
 *     the token-embedding gradient after backward, through the backend table, so every
 *     backend is poisoned the same way) skips the step: LLM_OK, *skipped = 1, the gradient
 *     norm reported inf/NaN, weights bit for bit unchanged, the AdamW step count unchanged,
 *     the scale halved, the run continues with the next batch; the unscaled llm_model_step
 *     refuses the same gradient with an error, weights unchanged;
 *   - growth: after growth_interval finite steps in a row the scale doubles, and a skip
 *     restarts the count (the scale sequence is checked step by step against the rule);
 *   - in fp32 nothing overflows, and scaling by powers of two rounds nothing: a scaled run
 *     (gradient accumulation over 2 micro-batches, the scale growing 2^16 -> 2^18) equals
 *     the unscaled one bit for bit: losses, norms, weights;
 *   - fp16 (CUDA): a loss scale that is too large (2^30) overflows fp16 when the output
 *     gradients are rounded; the first steps skip, the scale halves until they fit, then
 *     the run trains (the loss falls), growing the scale again every 4 steps and backing
 *     off when it overflows; no NaN reaches the weights; two runs are bit-identical,
 *     skips included;
 *   - a failed GPU op also reads as a NaN norm: it is reported as the step's error, not
 *     taken for an overflow (CUDA only: the CPU backend's ops cannot fail);
 *   - a scaler with a bad field is refused (LLM_ERR_ARG), the model untouched. */
#define _POSIX_C_SOURCE 200809L
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#define B_ 3
#define T_ 17

static llm_config small_gpt2(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 32; c.vocab_size = 67; c.n_layer = 2; c.n_head = 2; c.n_embd = 32;
    return c;
}
static int tok[2][B_ * T_], tgt[2][B_ * T_];   /* two fixed batches, alternating */
static void make_batches(void) {
    test_seed(4242);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < B_ * T_; i++) {
            tok[b][i] = (int)(test_rand_u64() % 67);
            tgt[b][i] = (int)(test_rand_u64() % 67);
        }
}

/* ---- a backend that poisons a gradient on request --------------------------------------- */
/* The inner backend's table with two ops wrapped. encoder_bwd: after the real one (the
 * last op of a GPT-2 backward, it writes dwte), `poison` != 0 is written into dwte[5]
 * through the table's upload, so the gradient is poisoned on any backend as an overflow
 * would leave it. allreduce_mean (which llm_model_step calls first, before the norm): with
 * fail_op it queues an op the backend refuses (head size 160), which CUDA records and
 * reports at the next call with a status; otherwise the inner one (or nothing). */
static const llm_backend *inner;
static float poison;
static int fail_op;
static llm_backend wrapped;
static void poison_encoder_bwd(void *st, float *dwte, float *dwpe, const float *dout, const int *tok_,
                               int B, int T, int C) {
    inner->encoder_bwd(st, dwte, dwpe, dout, tok_, B, T, C);
    if (poison != 0.0f && inner->upload(st, dwte + 5, &poison, sizeof poison) != LLM_OK)
        fprintf(stderr, "test_cuda_scaler: poison upload failed: %s\n", llm_last_error());
}
static llm_status failing_allreduce(void *st, float *buf, size_t n) {
    if (fail_op) {
        inner->attention_fwd(st, buf, buf, buf, 1, 1, 2, 2, 160);
        return LLM_OK;
    }
    return inner->allreduce_mean ? inner->allreduce_mean(st, buf, n) : LLM_OK;
}
static const llm_backend *poisoning(const llm_backend *be) {
    inner = be;
    wrapped = *be;
    wrapped.encoder_bwd = poison_encoder_bwd;
    wrapped.allreduce_mean = failing_allreduce;
    return &wrapped;
}

/* ---- a short training run -------------------------------------------------------------- */
typedef struct {
    float loss[16], norm[16], scale[16];   /* per step; scale: the one backward used */
    int skipped[16];
    float *params;                         /* after the run (malloc'd) */
    size_t np;
    int steps_taken;                       /* llm_model_step_count */
} run_log;

/* `steps` steps of forward + backward over `accum` micro-batches + step on backend `be`
 * (opt: fp16 etc.), with scaler sc (NULL: llm_model_step, unscaled). poison_at[k] != 0
 * poisons step k's gradient with that value. */
static llm_status train(const llm_backend *be, int fp16, int steps, int accum, llm_loss_scaler *sc,
                        const float *poison_at, run_log *L) {
    memset(L, 0, sizeof *L);
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = be;
    opt.n_threads = 2;
    opt.fp16 = fp16;
    llm_config c = small_gpt2();
    llm_model *m = NULL;
    llm_status s = llm_model_create(&m, &c, &opt, 99);
    if (s != LLM_OK) return s;
    llm_adamw_config ac = llm_adamw_config_default();
    ac.grad_clip = 1.0f;
    for (int k = 0; k < steps && s == LLM_OK; k++) {
        float S = sc ? sc->scale : 1.0f, l = 0;
        L->scale[k] = S;
        s = llm_model_zero_grad(m);
        for (int a = 0; a < accum && s == LLM_OK; a++) {
            poison = poison_at && a == accum - 1 ? poison_at[k] : 0.0f;
            s = llm_model_forward(m, tok[(k * accum + a) % 2], tgt[(k * accum + a) % 2], B_, T_, &l);
            if (s == LLM_OK) s = llm_model_backward(m, S / (float)accum);
            L->loss[k] += l / (float)accum;
        }
        poison = 0.0f;
        if (s == LLM_OK) s = llm_model_step_scaled(m, &ac, 1e-2f, sc, &L->norm[k], &L->skipped[k]);
    }
    L->np = llm_model_num_params(m);
    L->params = (float *)malloc(L->np * sizeof(float));
    L->steps_taken = llm_model_step_count(m);
    if (s == LLM_OK && L->params) s = llm_model_get_params(m, L->params);
    llm_model_free(m);
    return s;
}

static size_t count_nonfinite(const float *x, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !isfinite(x[i]);
    return k;
}
/* The scale after each step by GradScaler's rule, from the skipped flags; 1 when sc's
 * recorded scales follow it. */
static int scales_follow_rule(const run_log *L, int steps, float s0, float growth, float backoff, int interval,
                              float final_scale) {
    float s = s0;
    int good = 0;
    for (int k = 0; k < steps; k++) {
        if (L->scale[k] != s) return 0;
        if (L->skipped[k]) { s *= backoff; good = 0; }
        else if (interval > 0 && ++good == interval) { s *= growth; good = 0; }
    }
    return s == final_scale;
}

/* ---- the checks ------------------------------------------------------------------------ */
static void t_defaults(void) {
    llm_loss_scaler d = llm_loss_scaler_default();
    CHECK(d.scale == 65536.0f && d.growth_factor == 2.0f && d.backoff_factor == 0.5f && d.growth_interval == 2000 &&
          d.good_steps == 0 && d.skipped == 0, "defaults are GradScaler's: %g %g %g %d", d.scale, d.growth_factor,
          d.backoff_factor, d.growth_interval);
}

/* A scaled run equals the unscaled one bit for bit (fp32: the CPU, CUDA's exact mode). */
static void t_equivalence(const llm_backend *be) {
    run_log a, b;
    llm_loss_scaler sc = llm_loss_scaler_default();
    sc.growth_interval = 2;   /* the scale moves: 2^16, 2^17, 2^18 */
    llm_status sa = train(be, 0, 6, 2, NULL, NULL, &a), sb = train(be, 0, 6, 2, &sc, NULL, &b);
    CHECK(sa == LLM_OK && sb == LLM_OK, "%s: training: %s", be->name, llm_last_error());
    if (sa != LLM_OK || sb != LLM_OK) { free(a.params); free(b.params); return; }
    int same = memcmp(a.loss, b.loss, sizeof a.loss) == 0 && memcmp(a.norm, b.norm, sizeof a.norm) == 0 &&
               a.np == b.np && memcmp(a.params, b.params, a.np * sizeof(float)) == 0;
    CHECK(same, "%s fp32: scaled and unscaled runs differ (loss %.9g vs %.9g, norm %.9g vs %.9g)", be->name,
          a.loss[5], b.loss[5], a.norm[5], b.norm[5]);
    CHECK(sc.skipped == 0 && sc.scale == 524288.0f && b.scale[5] == 262144.0f,
          "%s fp32: no skips, the scale grew every 2 steps (%g)", be->name, sc.scale);
    printf("  %-14s fp32: 6 steps (accum 2) with the scale 2^16 -> 2^19 = unscaled, bit for bit (loss %.6f -> %.6f)\n",
           be->name, a.loss[0], a.loss[5]);
    free(a.params); free(b.params);
}

/* Poisoned gradients (inf at step 2, NaN at step 5): skipped, halved, continued. */
static void t_poison(const llm_backend *base, int fp16) {
    const llm_backend *be = poisoning(base);
    const char *name = fp16 ? "cuda-fp16" : base->name;
    float at[8] = {0, 0, INFINITY, 0, 0, NAN, 0, 0};
    run_log r, ref, ref1;
    llm_loss_scaler sc = llm_loss_scaler_default();
    sc.growth_interval = 3;
    llm_status s = train(be, fp16, 8, 1, &sc, at, &r);
    CHECK(s == LLM_OK, "%s: poisoned run: %s", name, llm_last_error());
    /* the run cut after 2 steps, and after 3 (the third skipped): the same weights */
    llm_loss_scaler s2 = llm_loss_scaler_default(), s3 = llm_loss_scaler_default();
    s2.growth_interval = s3.growth_interval = 3;
    llm_status t2 = train(be, fp16, 2, 1, &s2, at, &ref1), t3 = train(be, fp16, 3, 1, &s3, at, &ref);
    if (s == LLM_OK && t2 == LLM_OK && t3 == LLM_OK) {
        CHECK(r.skipped[2] && r.skipped[5] && r.skipped[0] + r.skipped[1] + r.skipped[3] + r.skipped[4] +
              r.skipped[6] + r.skipped[7] == 0, "%s: exactly the poisoned steps 2 and 5 are skipped", name);
        CHECK(isinf(r.norm[2]) && isnan(r.norm[5]) && isfinite(r.norm[3]), "%s: norms inf, NaN (%g %g)", name,
              r.norm[2], r.norm[5]);
        CHECK(r.steps_taken == 6 && sc.skipped == 2, "%s: 6 AdamW steps of 8, 2 skipped (%d, %lld)", name,
              r.steps_taken, sc.skipped);
        /* ref (3 steps: 0, 1, skipped 2) ends with the weights of 2 good steps, as ref1 */
        CHECK(ref.np == ref1.np && memcmp(ref.params, ref1.params, ref.np * sizeof(float)) == 0,
              "%s: a skipped step leaves the weights bit for bit", name);
        CHECK(scales_follow_rule(&r, 8, 65536.0f, 2.0f, 0.5f, 3, sc.scale),
              "%s: scales follow the rule (final %g)", name, sc.scale);
        CHECK(count_nonfinite(r.params, r.np) == 0, "%s: no inf or NaN reached the weights", name);
        CHECK(r.loss[7] < r.loss[0], "%s: the run continued and trained (loss %.4f -> %.4f)", name, r.loss[0],
              r.loss[7]);
        printf("  %-14s poisoned steps 2 (inf) and 5 (NaN) skipped; scales", name);
        for (int k = 0; k < 8; k++) printf(" %g", r.scale[k]);
        printf(" -> %g; loss %.4f -> %.4f\n", sc.scale, r.loss[0], r.loss[7]);
    }
    free(r.params); free(ref.params); free(ref1.params);
    /* the unscaled step refuses a poisoned gradient, weights unchanged */
    run_log u;
    float at1[2] = {0, INFINITY};
    s = train(be, fp16, 2, 1, NULL, at1, &u);
    CHECK(s == LLM_ERR_ARG && strstr(llm_last_error(), "not finite"), "%s: llm_model_step on an inf gradient: %s",
          name, llm_last_error());
    free(u.params);
}

/* A scaler with a bad field: refused before anything changes. */
static void t_bad_config(const llm_backend *be) {
    llm_loss_scaler bad[7];
    for (int i = 0; i < 7; i++) bad[i] = llm_loss_scaler_default();
    bad[0].scale = 0.0f; bad[1].scale = -1.0f; bad[2].scale = INFINITY; bad[3].scale = NAN;
    bad[4].growth_factor = 0.5f; bad[5].backoff_factor = 1.0f; bad[6].growth_interval = -1;
    for (int i = 0; i < 7; i++) {
        run_log r;
        llm_loss_scaler keep = bad[i];
        llm_status s = train(be, 0, 1, 1, &bad[i], NULL, &r);
        CHECK(s == LLM_ERR_ARG && r.steps_taken == 0 && memcmp(&keep, &bad[i], sizeof keep) == 0,
              "bad scaler %d refused (%d): %s", i, (int)s, llm_last_error());
        free(r.params);
    }
}

#ifdef LLM_CUDA
/* fp16: too large a scale overflows; the run finds its scale and trains; twice the same. */
static void t_fp16_overflow(const llm_backend *be) {
    run_log r[2];
    llm_loss_scaler sc[2];
    for (int k = 0; k < 2; k++) {
        sc[k] = llm_loss_scaler_default();
        sc[k].scale = 1073741824.0f;   /* 2^30 */
        sc[k].growth_interval = 4;
        llm_status s = train(be, 1, 16, 1, &sc[k], NULL, &r[k]);
        CHECK(s == LLM_OK, "fp16 overflow run %d: %s", k, llm_last_error());
        if (s != LLM_OK) { free(r[0].params); if (k) free(r[1].params); return; }
    }
    int first_good = 0;
    while (first_good < 16 && r[0].skipped[first_good]) first_good++;
    CHECK(r[0].skipped[0] && first_good < 16, "fp16: 2^30 overflows at first (%d skipped steps before the first "
          "good one)", first_good);
    CHECK(scales_follow_rule(&r[0], 16, 1073741824.0f, 2.0f, 0.5f, 4, sc[0].scale), "fp16: scales follow the rule");
    CHECK(count_nonfinite(r[0].params, r[0].np) == 0, "fp16: no inf or NaN reached the weights");
    CHECK(r[0].loss[15] < r[0].loss[first_good], "fp16: the run trains after finding its scale (%.4f -> %.4f)",
          r[0].loss[first_good], r[0].loss[15]);
    CHECK(r[0].steps_taken == 16 - (int)sc[0].skipped, "fp16: AdamW steps = steps - skipped");
    CHECK(memcmp(r[0].loss, r[1].loss, sizeof r[0].loss) == 0 && memcmp(r[0].norm, r[1].norm, sizeof r[0].norm) == 0 &&
          memcmp(r[0].skipped, r[1].skipped, sizeof r[0].skipped) == 0 &&
          memcmp(r[0].params, r[1].params, r[0].np * sizeof(float)) == 0, "fp16: two runs differ");
    printf("  cuda-fp16      scale 2^30: %lld of 16 steps skipped, scales", sc[0].skipped);
    for (int k = 0; k < 16; k++) printf(" 2^%d%s", (int)log2f(r[0].scale[k]), r[0].skipped[k] ? "*" : "");
    printf(" (* skipped); loss %.4f -> %.4f; a second run bit-identical\n", r[0].loss[0], r[0].loss[15]);
    free(r[0].params); free(r[1].params);
}

/* A failed op inside the step, before the norm: its error, not a skip. */
static void t_failure_not_overflow(const llm_backend *base) {
    const llm_backend *be = poisoning(base);
    llm_loss_scaler sc = llm_loss_scaler_default();
    run_log r;
    fail_op = 1;
    llm_status s = train(be, 1, 1, 1, &sc, NULL, &r);
    fail_op = 0;
    CHECK(s == LLM_ERR_UNSUPPORTED && sc.skipped == 0 && sc.scale == 65536.0f && !r.skipped[0],
          "a failed GPU op is the step's error (%d: %s), not an overflow (skipped %lld)", (int)s, llm_last_error(),
          sc.skipped);
    free(r.params);
}
#endif

int main(void) {
    make_batches();
    t_defaults();
    printf("test_cuda_scaler: the CPU backend\n");
    t_bad_config(llm_cpu_backend());
    t_equivalence(llm_cpu_backend());
    t_poison(llm_cpu_backend(), 0);
#ifdef LLM_CUDA
    if (llm_cuda_device_count() == 0) {
        TEST_SKIP("test_cuda_scaler: no CUDA device; the CUDA fp32 and fp16 cases not run");
        return TEST_END("test_cuda_scaler");
    }
    const char *dev = llm_cuda_device_name(0);
    printf("test_cuda_scaler: device 0: %s\n", dev);
    if (strstr(dev, "emulator"))
        printf("test_cuda_scaler: EMULATED: no GPU ran; llm_cuda.cu's kernels ran on the CPU under tests/cuda_emu.h\n");
    t_equivalence(llm_cuda_backend());
    void *st = NULL;
    llm_status s = llm_cuda_backend_fp16()->create(&st, NULL);
    if (s == LLM_ERR_UNSUPPORTED) {
        TEST_SKIP("test_cuda_scaler: fp16 mode: %s", llm_last_error());
    } else {
        CHECK(s == LLM_OK, "fp16 create: %s", llm_last_error());
        if (st) llm_cuda_backend_fp16()->destroy(st);
        t_poison(llm_cuda_backend(), 1);   /* opt.fp16 on the plain table */
        t_fp16_overflow(llm_cuda_backend());
        t_failure_not_overflow(llm_cuda_backend());
    }
#else
    TEST_SKIP("test_cuda_scaler: built without CUDA: the CUDA fp32 and fp16 cases not run (make cuda, make test's "
              "emulated build)");
#endif
    return TEST_END("test_cuda_scaler");
}
