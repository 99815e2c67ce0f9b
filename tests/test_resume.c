/* tests/test_resume.c: save -> load -> continue gives exactly the straight run.
 *
 * A small random GPT-2 trains on a token file through a shuffled llm_loader, with
 * warmup + cosine learning rate, weight decay and clipping. Straight through for N
 * steps; then again, stopping after k steps to save (weights, AdamW moments, step,
 * loader state), freeing everything, loading and continuing. The losses and the final
 * weights must be bit-identical (memcmp): same thread count, same kernels, so any
 * difference is state that the checkpoint lost. k is taken mid-epoch, at the epoch
 * boundary and in the second epoch (where the loader has drawn a new permutation).
 *
 * Also gradient accumulation: one batch of B=4 against two micro-batches of B=2 with
 * loss_scale 0.5 gives the same gradients (to float32 rounding: the sums differ in order).
 */
#include "test.h"
#include "llm.h"
#include <unistd.h>

#define NSTEPS 20
#define BB 2
#define TT 8
#define NTOK 200   /* (200-1)/8 = 24 windows, 12 batches of 2: an epoch is 12 steps */

static char tmpdir[256], data_path[320], ckpt_path[320];
static llm_options opts;

static llm_config small_cfg(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 16; c.vocab_size = 67; c.n_layer = 2; c.n_head = 2; c.n_embd = 18;
    return c;
}

static llm_adamw_config adam(void) {
    llm_adamw_config a = llm_adamw_config_default();
    a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-8f; a.weight_decay = 0.1f; a.decay_all = 0;
    a.grad_clip = 0.5f;
    return a;
}

static llm_lr_schedule sched(void) {
    llm_lr_schedule s;
    s.kind = LLM_LR_COSINE; s.lr = 3e-3f; s.min_lr = 3e-4f; s.warmup = 3; s.total = NSTEPS;
    return s;
}

/* Steps [from, to) of training: loss of each into losses[step]. */
static int train(llm_model *m, llm_loader *l, int from, int to, float *losses) {
    int in[BB * TT], tg[BB * TT];
    llm_adamw_config a = adam();
    llm_lr_schedule s = sched();
    for (int step = from; step < to; step++) {
        float loss = -1, norm = -1;
        llm_status st = llm_loader_next(l, in, tg);
        if (st == LLM_OK) st = llm_model_forward(m, in, tg, BB, TT, &loss);
        if (st == LLM_OK) st = llm_model_zero_grad(m);
        if (st == LLM_OK) st = llm_model_backward(m, 1.0f);
        if (st == LLM_OK) st = llm_model_step(m, &a, llm_lr_at(&s, step), &norm);
        CHECK(st == LLM_OK, "training step %d: %s", step, llm_last_error());
        if (st != LLM_OK) return 0;
        losses[step] = loss;
    }
    return 1;
}

static int open_data(llm_dataset **d, llm_loader *l) {
    llm_status s = llm_dataset_open(d, data_path);
    CHECK(s == LLM_OK, "dataset_open: %s", llm_last_error());
    if (s != LLM_OK) return 0;
    memset(l, 0, sizeof *l);
    s = llm_loader_init(l, *d, 0, 0, BB, TT, 1, 42);
    CHECK(s == LLM_OK, "loader_init: %s", llm_last_error());
    if (s != LLM_OK) { llm_dataset_close(*d); *d = NULL; return 0; }
    CHECK(l->n_batches == 12, "loader: %zu batches per epoch, want 12", l->n_batches);
    return 1;
}

static void test_resume(const float *straight, const float *straight_params, size_t np, int k) {
    float losses[NSTEPS];
    memset(losses, 0, sizeof losses);
    llm_config c = small_cfg();
    llm_model *m = NULL;
    llm_dataset *d = NULL;
    llm_loader l;
    llm_train_state ts, ts2;
    if (llm_model_create(&m, &c, &opts, 7) != LLM_OK) { CHECK(0, "create: %s", llm_last_error()); return; }
    if (!open_data(&d, &l)) { llm_model_free(m); return; }
    int ok = train(m, &l, 0, k, losses);
    memset(&ts, 0, sizeof ts);
    llm_loader_get_state(&l, &ts);
    ts.step = (uint64_t)k;
    if (ok) CHECK(llm_model_save(m, ckpt_path, 1, &ts) == LLM_OK, "save: %s", llm_last_error());
    llm_model_free(m);
    llm_loader_free(&l);
    llm_dataset_close(d);
    if (!ok) return;

    /* A new process would start here: nothing survives but the two files. */
    m = NULL; d = NULL;
    llm_status s = llm_model_load(&m, ckpt_path, &opts);
    CHECK(s == LLM_OK, "load: %s", llm_last_error());
    if (s != LLM_OK) return;
    memset(&ts2, 0, sizeof ts2);
    s = llm_model_load_train_state(m, ckpt_path, &ts2);
    CHECK(s == LLM_OK, "load_train_state: %s", llm_last_error());
    CHECK(memcmp(&ts, &ts2, sizeof ts) == 0, "k=%d: train state changed in the round trip", k);
    CHECK(llm_model_step_count(m) == k, "k=%d: step count %d after load", k, llm_model_step_count(m));
    if (s == LLM_OK && open_data(&d, &l)) {
        CHECK(llm_loader_set_state(&l, &ts2) == LLM_OK, "loader_set_state: %s", llm_last_error());
        if (train(m, &l, (int)ts2.step, NSTEPS, losses)) {
            CHECK(memcmp(losses, straight, sizeof losses) == 0, "k=%d: losses differ from the straight run", k);
            for (int i = 0; i < NSTEPS; i++)
                if (losses[i] != straight[i])
                    printf("  k=%d step %d: loss %.9g, straight %.9g\n", k, i, losses[i], straight[i]);
            float *p = (float *)malloc(np * sizeof(float));
            CHECK(p && llm_model_get_params(m, p) == LLM_OK, "get_params: %s", llm_last_error());
            if (p) CHECK(memcmp(p, straight_params, np * sizeof(float)) == 0,
                         "k=%d: final weights differ from the straight run", k);
            free(p);
            CHECK(llm_model_step_count(m) == NSTEPS, "k=%d: step count %d at the end", k, llm_model_step_count(m));
        }
        llm_loader_free(&l);
        llm_dataset_close(d);
    }
    llm_model_free(m);
    printf("resume after %d of %d steps: %s\n", k, NSTEPS, memcmp(losses, straight, sizeof losses) ? "DIFFERENT" : "bit-identical");
}

/* Controls: the test must be able to fail. Resuming with the weights only (fresh AdamW
 * moments) or with a fresh loader must NOT reproduce the straight run. */
static void test_controls(const float *straight, int k) {
    float losses[NSTEPS];
    llm_config c = small_cfg();
    for (int variant = 0; variant < 2; variant++) {
        llm_model *m = NULL;
        llm_dataset *d = NULL;
        llm_loader l;
        llm_train_state ts;
        memset(losses, 0, sizeof losses);
        if (llm_model_create(&m, &c, &opts, 7) != LLM_OK || !open_data(&d, &l)) {
            CHECK(0, "setup: %s", llm_last_error());
            llm_model_free(m);
            return;
        }
        int ok = train(m, &l, 0, k, losses);
        memset(&ts, 0, sizeof ts);
        llm_loader_get_state(&l, &ts);
        ts.step = (uint64_t)k;
        if (ok) CHECK(llm_model_save(m, ckpt_path, variant == 1, &ts) == LLM_OK, "save: %s", llm_last_error());
        llm_model_free(m);
        llm_loader_free(&l);
        m = NULL;
        if (ok && llm_model_load(&m, ckpt_path, &opts) == LLM_OK) {
            memset(&l, 0, sizeof l);
            if (variant == 1) CHECK(llm_model_load_train_state(m, ckpt_path, NULL) == LLM_OK, "load_train_state");
            if (llm_loader_init(&l, d, 0, 0, BB, TT, 1, 42) == LLM_OK) {
                if (variant == 0) llm_loader_set_state(&l, &ts);  /* variant 1: loader from scratch */
                if (train(m, &l, k, NSTEPS, losses))
                    CHECK(memcmp(losses + k, straight + k, sizeof(float) * (NSTEPS - k)) != 0,
                          "control %s: still identical, so the test cannot see lost state",
                          variant == 0 ? "without AdamW state" : "without loader state");
                llm_loader_free(&l);
            }
        }
        llm_model_free(m);
        llm_dataset_close(d);
    }
}

/* One batch of 4 against two micro-batches of 2 with loss_scale 1/2. */
static void test_accumulation(void) {
    llm_config c = small_cfg();
    llm_model *m = NULL;
    if (llm_model_create(&m, &c, &opts, 11) != LLM_OK) { CHECK(0, "create: %s", llm_last_error()); return; }
    size_t np = llm_model_num_params(m);
    float *g1 = (float *)malloc(np * sizeof(float)), *g2 = (float *)malloc(np * sizeof(float));
    int tok[4 * TT], tgt[4 * TT];  /* no ignored targets: each micro-batch has the same count */
    for (int i = 0; i < 4 * TT; i++) { tok[i] = (i * 13 + 5) % c.vocab_size; tgt[i] = (i * 29 + 3) % c.vocab_size; }
    float loss4 = 0, la = 0, lb = 0;
    CHECK(llm_model_zero_grad(m) == LLM_OK, "zero_grad");
    CHECK(llm_model_forward(m, tok, tgt, 4, TT, &loss4) == LLM_OK, "forward B=4: %s", llm_last_error());
    CHECK(llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_get_grads(m, g1) == LLM_OK, "get_grads");
    CHECK(llm_model_zero_grad(m) == LLM_OK, "zero_grad");
    CHECK(llm_model_forward(m, tok, tgt, 2, TT, &la) == LLM_OK, "forward B=2: %s", llm_last_error());
    CHECK(llm_model_backward(m, 0.5f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_forward(m, tok + 2 * TT, tgt + 2 * TT, 2, TT, &lb) == LLM_OK, "forward B=2: %s", llm_last_error());
    CHECK(llm_model_backward(m, 0.5f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_get_grads(m, g2) == LLM_OK, "get_grads");
    CHECK(fabs(0.5 * (la + lb) - loss4) <= 1e-5 * loss4, "mean of micro-batch losses %.7f, batch loss %.7f",
          0.5 * (la + lb), loss4);
    /* Per tensor: |g2 - g1| <= 1e-5 * max(|g1|, 5% of max|g1|) (the sums split differently). */
    size_t off[LLM_NTENSORS], sz[LLM_NTENSORS];
    llm_tensor_layout(&c, off, sz);
    double worst = 0;
    for (int t = 0; t < LLM_NTENSORS; t++) {
        double mx = 0;
        for (size_t i = off[t]; i < off[t] + sz[t]; i++) if (fabs(g1[i]) > mx) mx = fabs(g1[i]);
        double e = test_max_rel_err(g2 + off[t], g1 + off[t], sz[t], 0.05 * mx);
        CHECK(e <= 1e-5, "accumulated gradient of %s differs: %.3g", llm_tensor_name(t), e);
        if (e > worst) worst = e;
    }
    /* Non-trivial: the gradient is not all zero, and a missing 0.5 would be caught. */
    double sum = 0;
    for (size_t i = 0; i < np; i++) sum += fabs(g1[i]);
    CHECK(sum > 0, "zero gradient");
    printf("gradient accumulation 1x4 vs 2x2: worst err %.2e\n", worst);
    free(g1); free(g2);
    llm_model_free(m);
}

int main(void) {
    (void)test_data_dir;
    memset(&opts, 0, sizeof opts);
    opts.n_threads = 2;  /* fixed: bit-identity is promised for the same thread count */
    if (!test_make_tmpdir(tmpdir, sizeof tmpdir, "llm_test_resume")) { CHECK(0, "cannot make a temporary directory"); return TEST_END("test_resume"); }
    snprintf(data_path, sizeof data_path, "%s/tokens.bin", tmpdir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/model.ckpt", tmpdir);

    llm_config c = small_cfg();
    int toks[NTOK];
    llm_rng r;
    llm_rng_seed(&r, 5);
    /* Learnable: mostly the successor rule t -> 5t+1 (mod V), 1 in 8 tokens random. */
    toks[0] = 1;
    for (int i = 1; i < NTOK; i++)
        toks[i] = llm_rng_u64(&r) % 8 == 0 ? (int)(llm_rng_u64(&r) % (uint64_t)c.vocab_size)
                                          : (toks[i - 1] * 5 + 1) % c.vocab_size;
    CHECK(llm_dataset_write(data_path, toks, NTOK) == LLM_OK, "dataset_write: %s", llm_last_error());

    /* The straight run. */
    float straight[NSTEPS];
    llm_model *m = NULL;
    llm_dataset *d = NULL;
    llm_loader l;
    float *params = NULL;
    size_t np = 0;
    if (llm_model_create(&m, &c, &opts, 7) == LLM_OK && open_data(&d, &l)) {
        if (train(m, &l, 0, NSTEPS, straight)) {
            np = llm_model_num_params(m);
            params = (float *)malloc(np * sizeof(float));
            llm_model_get_params(m, params);
            float first = (straight[0] + straight[1] + straight[2]) / 3;
            float last = (straight[NSTEPS - 1] + straight[NSTEPS - 2] + straight[NSTEPS - 3]) / 3;
            CHECK(last < first, "the loss did not fall: %.4f -> %.4f", first, last);
            printf("straight run: loss %.4f -> %.4f over %d steps\n", straight[0], straight[NSTEPS - 1], NSTEPS);
        }
        llm_loader_free(&l);
        llm_dataset_close(d);
    } else {
        CHECK(0, "setup: %s", llm_last_error());
    }
    llm_model_free(m);
    if (params) {
        /* The same run again gives the same losses (determinism, else resume is moot). */
        float again[NSTEPS];
        m = NULL;
        if (llm_model_create(&m, &c, &opts, 7) == LLM_OK && open_data(&d, &l)) {
            if (train(m, &l, 0, NSTEPS, again))
                CHECK(memcmp(again, straight, sizeof again) == 0, "two identical runs differ");
            llm_loader_free(&l);
            llm_dataset_close(d);
        }
        llm_model_free(m);
        test_resume(straight, params, np, 5);   /* mid-epoch */
        test_resume(straight, params, np, 12);  /* at the epoch boundary */
        test_resume(straight, params, np, 15);  /* in the second epoch */
        test_controls(straight, 5);
    }
    free(params);
    test_accumulation();

    remove(data_path);
    remove(ckpt_path);
    CHECK(test_rmdir(tmpdir) == 0, "temp dir %s not empty at the end", tmpdir);
    return TEST_END("test_resume");
}
