/* tests/test_llama_torch.c: the Llama family end to end against PyTorch.
 *
 * tests/ref_llama.py (`make fixtures`) computed PyTorch's float64 answers for two small
 * Llamas (untied classifier with GQA 4:2; tied classifier with GQA 6:3) and committed
 * them in tests/fixtures with each model's recipe (see the file list at the top of that
 * script); tests/ref.h draws the same weights and writes them as llama2.c .bin files.
 * Each model goes through the public loader (llm_model_load on the .bin) and must agree:
 *   - configuration and parameters: bit-exact (the load only restacks float32 rows;
 *     FNV-1a against PyTorch's);
 *   - logits, loss, per-token losses and the gradient of every tensor (CLOSE below);
 *   - 8 AdamW steps with clipping: each step's loss and gradient norm, then the
 *     parameters after the last step;
 *   - a greedy continuation by repeated full forwards: the same token ids;
 *   - our checkpoint: save -> load gives the same parameters and bit-identical logits,
 *     and with the optimizer state one more step lands on the same bits;
 * on every SIMD level this CPU has. */
#include "test.h"
#include "llm.h"
#include "ref.h"

/* The references are float64 and the library computes in float32. A float32 sum of n
 * terms errs by about n*eps*(largest term) whatever its own size, so a value much
 * smaller than its tensor's largest (a cancellation) can only be compared absolutely.
 * CLOSE: |a - ref| <= 1e-4 * max(|ref|, 5% of max|ref| over the tensor), as for GPT-2.
 * torch's own float32 result errs by 1.4e-5..1.8e-5 on logits and 1.8e-5..2.7e-5 on
 * gradients (meta.json: torch_f32_*); ours by 1.3e-5..1.7e-5 and 1.7e-5..2.5e-5,
 * depending on the SIMD level: float32's own noise, a factor of 3 inside the bound. A
 * wrong part (RoPE direction, pairing or frequency, GQA head mapping, eps outside the
 * sqrt, the SwiGLU derivative, the untied head's gradient, a swapped wk/wv in the
 * loader) moves the result by 1e-2 or more: each of those, planted in a copy of the
 * library, fails this test. */
#define REL_TOL 1e-4
#define FLOOR_FRAC 0.05
#define LOSS_TOL 1e-4   /* absolute, on losses of 2..7 nats */
/* Parameters after 8 AdamW steps, absolutely: lr 1e-3 moves each by up to 8e-3; small
 * noisy gradients are amplified by Adam's m/sqrt(v), and torch's own float32 run ends
 * up to 8.7e-5 from float64 (meta.json: torch_f32_params_after_err; ours 0.9e-5 to
 * 3.6e-5). 1e-4 is ~1% of the movement; a wrong bias correction, decay of the gains or
 * a missed clip moves parameters by 1e-3 or more. */
#define PARAM_TOL 1e-4

/* A number from the fixture's meta.json; -1 if absent. */
static double meta_num(const char *dir, const char *key) { return test_meta_num(dir, key, -1); }
static double close_err(const float *a, const float *ref, size_t n) {
    return test_close_err(a, ref, n, FLOOR_FRAC);
}

/* What a fixture says about itself (meta.json) and its batch. */
typedef struct fixture {
    const char *dir;
    char model[1024];   /* the .bin, written by tests/ref.h */
    int V, L, NH, NKV, C, H, maxT, untied, B, T, steps, prompt_len, greedy_len;
    size_t n_params;
    double grad_clip;
    int *tok, *tgt;
} fixture;

static int fixture_open(fixture *fx, const char *dir) {
    memset(fx, 0, sizeof *fx);
    fx->dir = dir;
    const char *keys[] = {"V", "L", "NH", "NKV", "C", "H", "maxT", "untied", "B", "T", "steps",
                          "prompt_len", "greedy_len"};
    int *dst[] = {&fx->V, &fx->L, &fx->NH, &fx->NKV, &fx->C, &fx->H, &fx->maxT, &fx->untied, &fx->B,
                  &fx->T, &fx->steps, &fx->prompt_len, &fx->greedy_len};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        double v = meta_num(dir, keys[i]);
        CHECK(v >= 0 && v < 1e6, "%s/meta.json: no '%s'", dir, keys[i]);
        if (!(v >= 0 && v < 1e6)) return 0;
        *dst[i] = (int)v;
    }
    fx->n_params = (size_t)meta_num(dir, "n_params");
    fx->grad_clip = meta_num(dir, "grad_clip");
    fx->tok = (int *)test_fixture_array(dir, "tokens.i32", (size_t)fx->B * fx->T);
    fx->tgt = (int *)test_fixture_array(dir, "targets.i32", (size_t)fx->B * fx->T);
    const char *path = ref_model_file(dir, 0);
    snprintf(fx->model, sizeof fx->model, "%s", path ? path : "");
    return fx->tok && fx->tgt && fx->grad_clip > 0 && path;
}
static void fixture_close(fixture *fx) { free(fx->tok); free(fx->tgt); }

static llm_model *load_bin(const fixture *fx) {
    llm_model *m = NULL;
    llm_status s = llm_model_load(&m, fx->model, NULL);
    CHECK(s == LLM_OK && m, "load %s: %s (%s)", fx->model, llm_status_string(s), llm_last_error());
    if (s != LLM_OK) { llm_model_free(m); return NULL; }
    return m;
}

/* A temporary checkpoint path of our own (removed at exit). */
static void tmp_path(char *buf, size_t n, const char *dir, const char *what) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s.%s.ckpt", dir, what);
    snprintf(buf, n, "%s", ref_tmp_path(rel));
}

static void check_config(const fixture *fx, const llm_model *m) {
    llm_config c = llm_model_config(m);
    CHECK(c.arch == LLM_ARCH_LLAMA && c.vocab_size == fx->V && c.n_layer == fx->L && c.n_head == fx->NH &&
          c.n_kv_head == fx->NKV && c.n_embd == fx->C && c.hidden_dim == fx->H && c.max_seq_len == fx->maxT &&
          c.untied_head == fx->untied && c.norm_eps == 1e-5f && c.rope_theta == 10000.0f,
          "%s: config arch%d V%d L%d NH%d NKV%d C%d H%d maxT%d untied%d eps%g theta%g, want "
          "llama V%d L%d NH%d NKV%d C%d H%d maxT%d untied%d eps1e-05 theta10000", fx->dir, (int)c.arch,
          c.vocab_size, c.n_layer, c.n_head, c.n_kv_head, c.n_embd, c.hidden_dim, c.max_seq_len,
          c.untied_head, c.norm_eps, c.rope_theta, fx->V, fx->L, fx->NH, fx->NKV, fx->C, fx->H, fx->maxT,
          fx->untied);
    CHECK(llm_model_num_params(m) == fx->n_params, "%s: %zu parameters, want %zu", fx->dir,
          llm_model_num_params(m), fx->n_params);
}

/* Logits and loss of the fixture's batch; returns the logits (malloc'd) or NULL. */
static float *check_forward(llm_model *m, const fixture *fx, const char *what) {
    size_t nl = (size_t)fx->B * fx->T * fx->V;
    float *ref = (float *)test_fixture_array(fx->dir, "logits.f32", nl);
    float *ref_loss = (float *)test_fixture_array(fx->dir, "loss.f32", 1);
    float *logits = (float *)malloc(nl * sizeof(float));
    float loss = -1;
    llm_status s = llm_model_forward(m, fx->tok, fx->tgt, fx->B, fx->T, &loss);
    CHECK(s == LLM_OK, "%s %s: forward: %s", fx->dir, what, llm_last_error());
    if (ref && ref_loss && logits && s == LLM_OK &&
        llm_model_get_logits(m, logits) == LLM_OK) {
        double e = close_err(logits, ref, nl);
        CHECK(e <= REL_TOL, "%s %s: logits differ from PyTorch: %.3g > %.0e", fx->dir, what, e, REL_TOL);
        CHECK(fabs(loss - ref_loss[0]) <= LOSS_TOL, "%s %s: loss %.7f, PyTorch %.7f", fx->dir, what, loss,
              ref_loss[0]);
        printf("%s %s: logits err %.2e, loss %.6f (PyTorch %.6f)\n", fx->dir, what, e, loss, ref_loss[0]);
    } else {
        CHECK(0, "%s %s: no logits: %s", fx->dir, what, llm_last_error());
        free(logits); logits = NULL;
    }
    free(ref); free(ref_loss);
    return logits;
}

/* Shape, parameters, logits, loss, per-token losses, every gradient, accumulation,
 * greedy ids, and the checkpoint round trip. */
static void test_model(const fixture *fx) {
    llm_model *m = load_bin(fx), *m2 = NULL;
    if (!m) return;
    check_config(fx, m);
    size_t np = fx->n_params;
    float *ref_p = (float *)malloc(np * sizeof(float));   /* the loaded parameters */
    float *ref_g = (float *)test_fixture_array(fx->dir, "grads.f32", np);
    float *buf = (float *)malloc(np * sizeof(float)), *logits = NULL, *logits2 = NULL;
    float *losses = (float *)malloc((size_t)fx->B * fx->T * sizeof(float));
    int *ref_greedy = (int *)test_fixture_array(fx->dir, "greedy.i32", (size_t)fx->greedy_len);
    if (llm_model_num_params(m) != np || !ref_p || !ref_g || !buf || !losses || !ref_greedy) goto done;

    /* llama2.c's rows, restacked: exact. */
    llm_config c = llm_model_config(m);
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(&c, off, size);
    ref_check_params(m, fx->dir, fx->dir);
    CHECK(llm_model_get_params(m, ref_p) == LLM_OK, "get_params: %s", llm_last_error());
    CHECK((size[16] != 0) == (fx->untied != 0), "%s: wcls has %zu values, untied=%d", fx->dir, size[16],
          fx->untied);

    logits = check_forward(m, fx, "forward");

    /* Per-token losses: 0 where ignored, and their mean over the rest is the loss. */
    float *ref_loss = (float *)test_fixture_array(fx->dir, "loss.f32", 1);
    if (ref_loss && llm_model_get_losses(m, losses) == LLM_OK) {
        double sum = 0; int n = 0, zero_ignored = 1;
        for (int i = 0; i < fx->B * fx->T; i++) {
            if (fx->tgt[i] < 0) { if (losses[i] != 0.0f) zero_ignored = 0; }
            else { sum += losses[i]; n++; }
        }
        CHECK(zero_ignored, "%s: ignored targets have a non-zero per-token loss", fx->dir);
        CHECK(n > 0 && fabs(sum / n - ref_loss[0]) <= LOSS_TOL, "%s: mean per-token loss %.7f, PyTorch %.7f",
              fx->dir, n ? sum / n : 0.0, ref_loss[0]);
    } else {
        CHECK(0, "%s: get_losses: %s", fx->dir, llm_last_error());
    }
    free(ref_loss);

    /* Every gradient, tensor by tensor (after zero_grad: backward accumulates). */
    CHECK(llm_model_zero_grad(m) == LLM_OK, "zero_grad: %s", llm_last_error());
    CHECK(llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_get_grads(m, buf) == LLM_OK, "get_grads: %s", llm_last_error());
    double worst = 0;
    int nt = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!size[i]) continue;
        double e = close_err(buf + off[i], ref_g + off[i], size[i]);
        CHECK(e <= REL_TOL, "%s: gradient of %s differs from PyTorch: %.3g > %.0e", fx->dir,
              llm_tensor_name(i), e, REL_TOL);
        if (e > worst) worst = e;
        nt++;
    }
    printf("%s: gradients of all %d tensors, worst err %.2e\n", fx->dir, nt, worst);

    /* A second forward+backward without zero_grad doubles the gradient; loss_scale
     * scales it. */
    CHECK(llm_model_forward(m, fx->tok, fx->tgt, fx->B, fx->T, NULL) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(llm_model_backward(m, 0.5f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_get_grads(m, buf) == LLM_OK, "get_grads: %s", llm_last_error());
    for (size_t i = 0; i < np; i++) buf[i] /= 1.5f;
    double e2 = close_err(buf, ref_g, np);
    CHECK(e2 <= REL_TOL, "%s: backward(1) + backward(0.5) is not 1.5x the gradient: err %.3g", fx->dir, e2);

    /* Greedy by full forwards over the growing sequence: PyTorch's ids. */
    {
        int n = fx->prompt_len + fx->greedy_len, ok = 1, first_bad = -1;
        int *seq = (int *)malloc((size_t)n * sizeof(int));
        float *lg = (float *)malloc((size_t)n * fx->V * sizeof(float));
        memcpy(seq, fx->tok, (size_t)fx->prompt_len * sizeof(int));
        for (int t = fx->prompt_len; t < n && ok; t++) {
            if (llm_model_forward(m, seq, NULL, 1, t, NULL) != LLM_OK || llm_model_get_logits(m, lg) != LLM_OK) {
                CHECK(0, "%s: greedy forward at T=%d: %s", fx->dir, t, llm_last_error());
                ok = 0; break;
            }
            const float *last = lg + (size_t)(t - 1) * fx->V;
            int best = 0;
            for (int v = 1; v < fx->V; v++) if (last[v] > last[best]) best = v;
            seq[t] = best;
            if (best != ref_greedy[t - fx->prompt_len] && first_bad < 0) first_bad = t - fx->prompt_len;
        }
        CHECK(ok && first_bad < 0, "%s: greedy ids differ from PyTorch from step %d", fx->dir, first_bad);
        free(seq); free(lg);
    }

    /* Our checkpoint: save, load, same config and bits. */
    {
        char path[1100];
        tmp_path(path, sizeof path, fx->dir, "roundtrip");
        CHECK(llm_model_save(m, path, 0, NULL) == LLM_OK, "%s: save: %s", fx->dir, llm_last_error());
        llm_status s = llm_model_load(&m2, path, NULL);
        CHECK(s == LLM_OK && m2, "%s: load of our checkpoint: %s", fx->dir, llm_last_error());
        remove(path);
        if (s == LLM_OK && m2) {
            llm_config c2 = llm_model_config(m2);
            CHECK(memcmp(&c, &c2, sizeof c) == 0, "%s: the checkpoint's config differs from the model's", fx->dir);
            float *p2 = (float *)malloc(np * sizeof(float));
            CHECK(llm_model_num_params(m2) == np && llm_model_get_params(m2, p2) == LLM_OK &&
                  memcmp(p2, ref_p, np * sizeof(float)) == 0, "%s: parameters change in save -> load", fx->dir);
            free(p2);
            logits2 = check_forward(m2, fx, "after save/load");
            if (logits && logits2)
                CHECK(memcmp(logits, logits2, (size_t)fx->B * fx->T * fx->V * sizeof(float)) == 0,
                      "%s: logits after save -> load are not bit-identical", fx->dir);
        }
    }
done:
    free(ref_p); free(ref_g); free(buf); free(losses); free(ref_greedy); free(logits); free(logits2);
    llm_model_free(m); llm_model_free(m2);
}

/* One training step as the reference does it; returns the loss, *norm the grad norm. */
static float train_step(llm_model *m, const fixture *fx, const llm_adamw_config *oc, float *norm) {
    float loss = -1;
    CHECK(llm_model_forward(m, fx->tok, fx->tgt, fx->B, fx->T, &loss) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(llm_model_zero_grad(m) == LLM_OK, "zero_grad: %s", llm_last_error());
    CHECK(llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s", llm_last_error());
    CHECK(llm_model_step(m, oc, 1e-3f, norm) == LLM_OK, "step: %s", llm_last_error());
    return loss;
}

/* 8 AdamW steps on the same batch, as torch.optim.AdamW + clip_grad_norm_; then the
 * optimizer state through our checkpoint: one more step on the original and on the
 * reloaded copy must give the same bits. */
static void test_adamw(const fixture *fx) {
    llm_model *m = load_bin(fx), *m2 = NULL;
    int K = fx->steps;
    size_t np = fx->n_params;
    float *ref_l = (float *)test_fixture_array(fx->dir, "adamw_losses.f32", (size_t)K);
    float *ref_n = (float *)test_fixture_array(fx->dir, "adamw_norms.f32", (size_t)K);
    float *ref_p = (float *)test_fixture_array(fx->dir, "params_after.f32", np);
    float *buf = (float *)malloc(np * sizeof(float)), *buf2 = (float *)malloc(np * sizeof(float));
    if (!m || !ref_l || !ref_n || !ref_p || !buf || !buf2 || llm_model_num_params(m) != np) goto done;
    llm_adamw_config oc;
    oc.beta1 = 0.9f; oc.beta2 = 0.95f; oc.eps = 1e-8f; oc.weight_decay = 0.1f; oc.decay_all = 0;
    oc.grad_clip = (float)fx->grad_clip;
    int clipped = 0;
    double worst_l = 0, worst_n = 0;
    for (int k = 0; k < K; k++) {
        float norm = -1, loss = train_step(m, fx, &oc, &norm);
        double el = fabs(loss - ref_l[k]), en = fabs(norm - ref_n[k]) / ref_n[k];
        CHECK(el <= LOSS_TOL, "%s AdamW step %d: loss %.7f, PyTorch %.7f", fx->dir, k, loss, ref_l[k]);
        CHECK(en <= REL_TOL, "%s AdamW step %d: grad norm %.7f, PyTorch %.7f", fx->dir, k, norm, ref_n[k]);
        if (el > worst_l) worst_l = el;
        if (en > worst_n) worst_n = en;
        if (ref_n[k] > oc.grad_clip) clipped++;
    }
    CHECK(clipped > 0 && clipped < K, "%s: the reference should clip in some steps, not all (%d)", fx->dir, clipped);
    CHECK(llm_model_step_count(m) == K, "step count %d, want %d", llm_model_step_count(m), K);
    CHECK(llm_model_get_params(m, buf) == LLM_OK, "get_params: %s", llm_last_error());
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        double d = fabs((double)buf[i] - ref_p[i]);
        if (!(d <= worst)) worst = d;
    }
    CHECK(worst <= PARAM_TOL, "%s: parameters after %d AdamW steps differ from PyTorch by %.3g", fx->dir, K, worst);
    printf("%s AdamW: %d steps (%d clipped at %.4f), losses within %.1e, norms within %.1e rel, params within %.2e\n",
           fx->dir, K, clipped, oc.grad_clip, worst_l, worst_n, worst);

    /* Resume from our checkpoint with the optimizer state. */
    char path[1100];
    tmp_path(path, sizeof path, fx->dir, "resume");
    llm_train_state ts, ts2;
    memset(&ts, 0, sizeof ts);
    ts.step = 8; ts.rng[0] = 1; ts.rng[1] = 2; ts.cursor = 3; ts.epoch = 4;
    CHECK(llm_model_save(m, path, 1, &ts) == LLM_OK, "%s: save with optimizer: %s", fx->dir, llm_last_error());
    llm_status s = llm_model_load(&m2, path, NULL);
    CHECK(s == LLM_OK && m2, "%s: load: %s", fx->dir, llm_last_error());
    if (s == LLM_OK && m2) {
        memset(&ts2, 0, sizeof ts2);
        CHECK(llm_model_load_train_state(m2, path, &ts2) == LLM_OK, "%s: load_train_state: %s", fx->dir, llm_last_error());
        CHECK(memcmp(&ts, &ts2, sizeof ts) == 0 && llm_model_step_count(m2) == K, "%s: train state or step count lost",
              fx->dir);
        float n1 = -1, n2 = -2;
        float l1 = train_step(m, fx, &oc, &n1), l2 = train_step(m2, fx, &oc, &n2);
        CHECK(l1 == l2 && n1 == n2, "%s: after resume, loss %.9g vs %.9g, norm %.9g vs %.9g", fx->dir, l1, l2, n1, n2);
        CHECK(llm_model_get_params(m, buf) == LLM_OK && llm_model_get_params(m2, buf2) == LLM_OK &&
              memcmp(buf, buf2, np * sizeof(float)) == 0, "%s: one step after resume differs from one step without",
              fx->dir);
    }
    remove(path);
done:
    free(ref_l); free(ref_n); free(ref_p); free(buf); free(buf2);
    llm_model_free(m); llm_model_free(m2);
}

/* Our checkpoint keeps what a llama2.c file cannot say: a non-default RoPE theta and
 * RMSNorm eps, with an untied head and GQA. A created model, saved and loaded back,
 * must keep its config and give bit-identical logits. (No fixture needed.) */
static void test_ckpt_config(void) {
    llm_config c = llm_config_llama(37, 2, 4, 2, 16, 24);
    c.max_seq_len = 16; c.untied_head = 1; c.rope_theta = 500000.0f; c.norm_eps = 1e-6f;
    llm_model *m = NULL, *m2 = NULL;
    llm_status s = llm_model_create(&m, &c, NULL, 99);
    CHECK(s == LLM_OK && m, "create llama: %s", llm_last_error());
    if (!m) return;
    int tok[2 * 11];
    for (int i = 0; i < 22; i++) tok[i] = (i * 7 + 3) % 37;
    float *l1 = (float *)malloc(22 * 37 * sizeof(float)), *l2 = (float *)malloc(22 * 37 * sizeof(float));
    char path[1100];
    snprintf(path, sizeof path, "%s", ref_tmp_path("ckpt_config.ckpt"));
    CHECK(llm_model_forward(m, tok, NULL, 2, 11, NULL) == LLM_OK && llm_model_get_logits(m, l1) == LLM_OK,
          "forward: %s", llm_last_error());
    CHECK(llm_model_save(m, path, 0, NULL) == LLM_OK, "save: %s", llm_last_error());
    s = llm_model_load(&m2, path, NULL);
    remove(path);
    CHECK(s == LLM_OK && m2, "load: %s", llm_last_error());
    if (m2) {
        llm_config a = llm_model_config(m), b = llm_model_config(m2);
        CHECK(memcmp(&a, &b, sizeof a) == 0 && b.rope_theta == 500000.0f && b.norm_eps == 1e-6f && b.untied_head == 1 &&
              b.n_kv_head == 2, "checkpoint config: theta %g eps %g untied %d NKV %d", b.rope_theta, b.norm_eps,
              b.untied_head, b.n_kv_head);
        CHECK(llm_model_forward(m2, tok, NULL, 2, 11, NULL) == LLM_OK && llm_model_get_logits(m2, l2) == LLM_OK &&
              memcmp(l1, l2, 22 * 37 * sizeof(float)) == 0, "checkpoint: logits not bit-identical after save -> load");
    }
    free(l1); free(l2);
    llm_model_free(m); llm_model_free(m2);
}

int main(void) {
    test_ckpt_config();
    const char *dirs[] = {"llama_untied", "llama_tied"};
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        if (!test_has_fixture(dirs[d])) {
            CHECK(0, "%s: no PyTorch fixture in %s (committed in tests/fixtures)", dirs[d], test_fixtures_dir());
            continue;
        }
        fixture fx;
        if (fixture_open(&fx, dirs[d])) {
            /* Every kernel level this CPU has, from scalar up; then back to the best. */
            llm_simd levels[] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512, LLM_SIMD_NEON};
            for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
                if (!llm_simd_supported(levels[i])) continue;
                CHECK(llm_simd_force(levels[i]) == LLM_OK, "simd_force(%s): %s", llm_simd_name(levels[i]),
                      llm_last_error());
                printf("-- %s, kernels: %s\n", dirs[d], llm_simd_name(llm_simd_active()));
                test_model(&fx);
                /* The 8 steps are the slow part: under the sanitizers, on one level only. */
                if (!TEST_SAN || levels[i] == LLM_SIMD_SCALAR) test_adamw(&fx);
            }
            llm_simd_force(LLM_SIMD_AUTO);
        }
        fixture_close(&fx);
    }
    return TEST_END("test_llama_torch");
}
