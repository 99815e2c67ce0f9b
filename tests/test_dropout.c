/* tests/test_dropout.c: dropout with counter-based masks.
 *
 *   - the masks are the ones tests/ref_lora.py computes in numpy from the documented
 *     hash (fixture dropout_gpt2/masks.f32), bit for bit: one definition, two programs;
 *   - the CPU op equals the reference kernel for 1, 2 and 3 threads, bit for bit (each
 *     element's mask depends on its index alone), in place too;
 *   - statistics: the dropped fraction is p within 5 standard deviations for p = 0.1,
 *     0.5, 0.9; kept values are x / (1-p) exactly; masks of different steps, micro-batches,
 *     layers, places and seeds are uncorrelated (|r| < 5/sqrt(n));
 *   - backward is the same op: d(sum g*drop(x))/dx = drop(g);
 *   - llm_options.dropout outside [0, 1) (and NaN) is refused with a named error;
 *   - a GPT-2 with dropout p = 0.1 against PyTorch given the same masks (fixture
 *     dropout_gpt2, committed; the weights drawn again from its recipe by tests/ref.h and
 *     checked bit for bit): logits, loss and every gradient within 1e-4 relative;
 *   - p = 0 trains bit for bit as the model without dropout;
 *   - dropout acts only in training: evaluation mode, forwards without targets and
 *     llm_model_eval give exactly the logits and loss of the same model without dropout
 *     (so p = 0 and "off" are bit-identical); two micro-batches of one step draw
 *     different masks, and so do two steps;
 *   - resume: 8 training steps with dropout straight, or 4, save, load, 4 more: the
 *     losses and the weights are bit-identical (the masks follow the optimizer step).
 */
#define _POSIX_C_SOURCE 200809L  /* getpid */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "ref.h"
#include <unistd.h>

static float *drop_ones(uint64_t key, size_t n, float p) {
    float *x = test_rand_floats(n, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    llm__dropout_ref(x, x, n, p, key, 0);
    return x;
}

static void test_fixture_masks(void) {
    const char *dir = "dropout_gpt2";
    if (!test_has_fixture(dir)) { TEST_SKIP("no fixture %s in %s", dir, test_fixtures_dir()); return; }
    int L = (int)test_meta_num(dir, "n_layer", 0), B = (int)test_meta_num(dir, "B", 0), T = (int)test_meta_num(dir, "T", 0);
    int C = (int)test_meta_num(dir, "n_embd", 0);
    float p = (float)test_meta_num(dir, "p", 0);
    uint64_t seed = (uint64_t)test_meta_num(dir, "seed", 0);
    size_t n = (size_t)B * T * C, nm = (size_t)(1 + 2 * L);
    float *ref = (float *)test_fixture_array(dir, "masks.f32", nm * n);
    if (!ref) return;
    for (size_t k = 0; k < nm; k++) {
        int layer = k == 0 ? 0 : (int)(k - 1) / 2, place = k == 0 ? 0 : 1 + (int)(k - 1) % 2;
        float *mine = drop_ones(llm__dropout_key(seed, 0, 0, layer, place), n, p);
        CHECK(memcmp(mine, ref + k * n, n * sizeof(float)) == 0, "mask %zu (layer %d, place %d) differs from ref_lora.py's", k, layer, place);
        free(mine);
    }
    free(ref);
}

static void test_threads(void) {
    size_t n = 100003;
    float *x = test_rand_floats(n, 2.0f), *ref = test_rand_floats(n, 1.0f);
    llm__dropout_ref(ref, x, n, 0.3f, 12345, 0);
    for (int th = 1; th <= 3; th++) {
        llm_options o;
        memset(&o, 0, sizeof o);
        o.n_threads = th;
        void *st = NULL;
        const llm_backend *be = llm_cpu_backend();
        CHECK(be->dropout != NULL, "the CPU backend has a dropout op");
        if (!be->dropout || be->create(&st, &o) != LLM_OK) continue;
        float *y = test_rand_floats(n, 1.0f), *z = test_dup_floats(x, n);
        be->dropout(st, y, x, n, 0.3f, 12345);
        CHECK(memcmp(y, ref, n * sizeof(float)) == 0, "%d threads: the op differs from the reference", th);
        be->dropout(st, z, z, n, 0.3f, 12345);
        CHECK(memcmp(z, ref, n * sizeof(float)) == 0, "%d threads: in place differs", th);
        /* backward: the same op on the gradient is the derivative of sum(g * drop(x)) */
        float *g = test_rand_floats(n, 1.0f), *dg = test_rand_floats(n, 1.0f);
        be->dropout(st, dg, g, n, 0.3f, 12345);
        int ok = 1;
        for (size_t i = 0; i < n; i++) {
            float kept = ref[i] != 0.0f || x[i] == 0.0f ? 1.0f : 0.0f;   /* x == 0 can't tell */
            if (x[i] != 0.0f && dg[i] != kept * g[i] * (1.0f / 0.7f)) ok = 0;
        }
        CHECK(ok, "%d threads: backward is not drop(g)", th);
        free(y); free(z); free(g); free(dg);
        be->destroy(st);
    }
    free(x); free(ref);
}

static void test_statistics(void) {
    const size_t n = 1000000;
    const float ps[3] = {0.1f, 0.5f, 0.9f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k];
        float *m = drop_ones(llm__dropout_key(7, 3, 1, 2, 1), n, p);
        size_t dropped = 0, wrong = 0;
        float scale = 1.0f / (1.0f - p);
        for (size_t i = 0; i < n; i++) {
            if (m[i] == 0.0f) dropped++;
            else if (m[i] != scale) wrong++;
        }
        double frac = (double)dropped / n, sd = sqrt(p * (1 - p) / n);
        CHECK(fabs(frac - p) < 5 * sd, "p %.1f: dropped fraction %.5f (sd %.5f)", p, frac, sd);
        CHECK(wrong == 0, "p %.1f: %zu kept values are not 1/(1-p)", p, wrong);
        free(m);
    }
    /* streams of different counters are uncorrelated: Pearson r of the keep indicators */
    const float p = 0.5f;
    uint64_t keys[6] = {llm__dropout_key(7, 3, 1, 2, 1), llm__dropout_key(7, 4, 1, 2, 1), llm__dropout_key(7, 3, 2, 2, 1),
                        llm__dropout_key(7, 3, 1, 3, 1), llm__dropout_key(7, 3, 1, 2, 2), llm__dropout_key(8, 3, 1, 2, 1)};
    float *base = drop_ones(keys[0], n, p);
    for (int k = 1; k < 6; k++) {
        CHECK(keys[k] != keys[0], "key %d equals key 0", k);
        float *o = drop_ones(keys[k], n, p);
        double sa = 0, sb = 0, sab = 0;
        for (size_t i = 0; i < n; i++) {
            double a = base[i] != 0, b = o[i] != 0;
            sa += a; sb += b; sab += a * b;
        }
        double ma = sa / n, mb = sb / n, cov = sab / n - ma * mb;
        double r = cov / sqrt(ma * (1 - ma) * mb * (1 - mb));
        CHECK(fabs(r) < 5.0 / sqrt((double)n), "stream %d vs 0: correlation %.5f", k, r);
        free(o);
    }
    /* neighbouring elements too (a bad mixer shows there first) */
    double s1 = 0, s2 = 0, s12 = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        double a = base[i] != 0, b = base[i + 1] != 0;
        s1 += a; s2 += b; s12 += a * b;
    }
    double m1 = s1 / (n - 1), m2 = s2 / (n - 1);
    double r = (s12 / (n - 1) - m1 * m2) / sqrt(m1 * (1 - m1) * m2 * (1 - m2));
    CHECK(fabs(r) < 5.0 / sqrt((double)n), "neighbouring elements: correlation %.5f", r);
    free(base);
}

static void test_bad_p(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 16; c.vocab_size = 31; c.n_layer = 1; c.n_head = 2; c.n_embd = 8;
    const float bad[4] = {1.0f, -0.1f, 1.5f, NAN};
    for (int i = 0; i < 4; i++) {
        llm_options o;
        memset(&o, 0, sizeof o);
        o.n_threads = 1;
        o.dropout = bad[i];
        llm_model *m = (llm_model *)1;
        llm_status s = llm_model_create(&m, &c, &o, 1);
        CHECK(s == LLM_ERR_ARG && m == NULL, "dropout %g accepted (%d)", bad[i], (int)s);
        CHECK(strstr(llm_last_error(), "dropout") != NULL, "dropout %g: the message does not name dropout: %s", bad[i], llm_last_error());
    }
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 1;
    o.dropout = 0.999f;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, &o, 1) == LLM_OK, "dropout 0.999 refused: %s", llm_last_error());
    llm_model_free(m);
}

/* ---- in the model ---------------------------------------------------------------------- */
#define REL_TOL 1e-4
static llm_model *load_gpt2(const char *dir, float p, uint64_t seed) {
    const char *path = ref_model_file(dir, 0);   /* tests/ref.h: the weights from the recipe */
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2; o.dropout = p; o.dropout_seed = seed;
    llm_model *m = NULL;
    if (!path) return NULL;
    CHECK(llm_model_load(&m, path, &o) == LLM_OK, "%s: %s", path, llm_last_error());
    if (m) ref_check_params(m, dir, dir);
    return m;
}

static void test_torch(void) {
    const char *dir = "dropout_gpt2";
    if (!test_has_fixture(dir)) { TEST_SKIP("no fixture %s in %s", dir, test_fixtures_dir()); return; }
    int B = (int)test_meta_num(dir, "B", 0), T = (int)test_meta_num(dir, "T", 0);
    float p = (float)test_meta_num(dir, "p", 0);
    llm_model *m = load_gpt2(dir, p, (uint64_t)test_meta_num(dir, "seed", 0)), *m0 = load_gpt2(dir, 0, 0);
    int *tok = (int *)test_fixture_array(dir, "tokens.i32", (size_t)B * T);
    int *tgt = (int *)test_fixture_array(dir, "targets.i32", (size_t)B * T);
    float *ref_loss = (float *)test_fixture_array(dir, "loss.f32", 1);
    if (!m || !m0 || !tok || !tgt || !ref_loss) goto done;
    {
        llm_config c = llm_model_config(m);
        size_t nl = (size_t)B * T * c.vocab_size, np = llm_model_num_params(m);
        float *ref_l = (float *)test_fixture_array(dir, "logits.f32", nl), *ref_g = (float *)test_fixture_array(dir, "grads.f32", np);
        float *lg = (float *)malloc(nl * 4), *lg0 = (float *)malloc(nl * 4), *g = (float *)malloc(np * 4);
        float loss = 0, loss0 = 0, loss_eval = 0;
        if (ref_l && ref_g && lg && lg0 && g) {
            CHECK(llm_model_forward(m, tok, tgt, B, T, &loss) == LLM_OK && llm_model_get_logits(m, lg) == LLM_OK, "forward: %s", llm_last_error());
            double e = test_close_err(lg, ref_l, nl, 0.05);
            CHECK(e <= REL_TOL, "logits with dropout differ from PyTorch's by %.3g", e);
            CHECK(fabs(loss - ref_loss[0]) <= REL_TOL * ref_loss[0], "loss %.7f, PyTorch %.7f", loss, ref_loss[0]);
            CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK && llm_model_get_grads(m, g) == LLM_OK,
                  "backward: %s", llm_last_error());
            size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
            llm_tensor_layout(&c, off, size);
            double worst = 0;
            int wt = 0;
            for (int t = 0; t < LLM_NTENSORS; t++) {
                if (!size[t]) continue;
                double et = test_close_err(g + off[t], ref_g + off[t], size[t], 0.05);
                if (et > worst) { worst = et; wt = t; }
            }
            CHECK(worst <= REL_TOL, "gradients with dropout differ from PyTorch's by %.3g (%s)", worst, llm_tensor_name(wt));
            printf("dropout p %.2f vs PyTorch: logits %.2e, loss %.7f (%.7f), gradients %.2e (worst %s)\n", p, e, loss,
                   ref_loss[0], worst, llm_tensor_name(wt));
            /* off: evaluation mode, no targets, llm_model_eval = the model without dropout */
            CHECK(llm_model_forward(m0, tok, tgt, B, T, &loss0) == LLM_OK && llm_model_get_logits(m0, lg0) == LLM_OK, "forward: %s", llm_last_error());
            llm_model_set_training(m, 0);
            CHECK(llm_model_forward(m, tok, tgt, B, T, &loss_eval) == LLM_OK && llm_model_get_logits(m, lg) == LLM_OK, "forward: %s", llm_last_error());
            CHECK(loss_eval == loss0 && memcmp(lg, lg0, nl * 4) == 0, "evaluation mode is not the model without dropout");
            llm_model_set_training(m, 1);
            CHECK(llm_model_forward(m, tok, NULL, B, T, NULL) == LLM_OK && llm_model_get_logits(m, lg) == LLM_OK, "forward: %s", llm_last_error());
            CHECK(memcmp(lg, lg0, nl * 4) == 0, "a forward without targets dropped out");
            /* two micro-batches of one step, and the next step, draw other masks */
            float l1 = 0, l2 = 0, l3 = 0;
            llm_adamw_config ac = llm_adamw_config_default();
            CHECK(llm_model_forward(m, tok, tgt, B, T, &l1) == LLM_OK && llm_model_forward(m, tok, tgt, B, T, &l2) == LLM_OK,
                  "forward: %s", llm_last_error());
            CHECK(l1 != l2, "two micro-batches drew the same masks (%.7f)", l1);
            CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, 0.0f, NULL) == LLM_OK &&
                  llm_model_forward(m, tok, tgt, B, T, &l3) == LLM_OK, "step: %s", llm_last_error());
            CHECK(l3 != l1 && l3 != l2 && l3 != loss, "a new step drew old masks");
        }
        free(ref_l); free(ref_g); free(lg); free(lg0); free(g);
    }
done:
    free(tok); free(tgt); free(ref_loss);
    llm_model_free(m); llm_model_free(m0);
}

/* p = 0: training with llm_options.dropout = 0 is the model without dropout, bit for bit
 * (loss, logits, every gradient), against a model whose options are all zero. */
static void test_p0(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 16; c.vocab_size = 41; c.n_layer = 2; c.n_head = 2; c.n_embd = 16;
    llm_options o0, o1;
    memset(&o0, 0, sizeof o0);
    o0.n_threads = 2;
    o1 = o0;
    o1.dropout = 0.0f; o1.dropout_seed = 99;
    llm_model *a = NULL, *b = NULL;
    CHECK(llm_model_create(&a, &c, &o0, 4) == LLM_OK && llm_model_create(&b, &c, &o1, 4) == LLM_OK, "create: %s", llm_last_error());
    if (a && b) {
        int tok[33];
        for (int i = 0; i < 33; i++) tok[i] = (i * 7 + 2) % 41;
        size_t np = llm_model_num_params(a);
        float la = 0, lb = 0, *ga = (float *)malloc(np * 4), *gb = (float *)malloc(np * 4);
        CHECK(llm_model_forward(a, tok, tok + 1, 2, 16, &la) == LLM_OK && llm_model_zero_grad(a) == LLM_OK &&
              llm_model_backward(a, 1.0f) == LLM_OK && llm_model_get_grads(a, ga) == LLM_OK, "a: %s", llm_last_error());
        CHECK(llm_model_forward(b, tok, tok + 1, 2, 16, &lb) == LLM_OK && llm_model_zero_grad(b) == LLM_OK &&
              llm_model_backward(b, 1.0f) == LLM_OK && llm_model_get_grads(b, gb) == LLM_OK, "b: %s", llm_last_error());
        CHECK(la == lb && memcmp(ga, gb, np * 4) == 0, "dropout 0 is not the model without dropout");
        free(ga); free(gb);
    }
    llm_model_free(a); llm_model_free(b);
}

/* 8 steps straight against 4 + save + load + 4. */
static void train_steps(llm_model *m, const int *tok, int from, int to, float *losses) {
    llm_adamw_config ac = llm_adamw_config_default();
    for (int s = from; s < to; s++) {
        float l = 0;
        for (int k = 0; k < 2; k++) {   /* two micro-batches a step */
            float lk = 0;
            CHECK(llm_model_forward(m, tok + k * 16 + s, tok + k * 16 + s + 1, 2, 8, &lk) == LLM_OK, "forward: %s", llm_last_error());
            if (k == 0) CHECK(llm_model_zero_grad(m) == LLM_OK, "zero_grad");
            CHECK(llm_model_backward(m, 0.5f) == LLM_OK, "backward: %s", llm_last_error());
            l += 0.5f * lk;
        }
        CHECK(llm_model_step(m, &ac, 1e-2f, NULL) == LLM_OK, "step: %s", llm_last_error());
        losses[s] = l;
    }
}
static void test_resume(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 16; c.vocab_size = 41; c.n_layer = 2; c.n_head = 2; c.n_embd = 16;
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2; o.dropout = 0.2f; o.dropout_seed = 5;
    int tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (i * 17 + 3) % 41;
    float la[8], lb[8];
    llm_model *a = NULL, *b = NULL, *b2 = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/llm_test_dropout_%d.ckpt", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    CHECK(llm_model_create(&a, &c, &o, 9) == LLM_OK && llm_model_create(&b, &c, &o, 9) == LLM_OK, "create: %s", llm_last_error());
    if (a && b) {
        train_steps(a, tok, 0, 8, la);
        train_steps(b, tok, 0, 4, lb);
        CHECK(llm_model_save(b, path, 1, NULL) == LLM_OK, "save: %s", llm_last_error());
        CHECK(llm_model_load(&b2, path, &o) == LLM_OK && llm_model_load_train_state(b2, path, NULL) == LLM_OK, "load: %s", llm_last_error());
        if (b2) {
            train_steps(b2, tok, 4, 8, lb);
            CHECK(memcmp(la, lb, sizeof la) == 0, "resumed losses differ (step 8: %.7f vs %.7f)", la[7], lb[7]);
            size_t np = llm_model_num_params(a);
            float *pa = (float *)malloc(np * 4), *pb = (float *)malloc(np * 4);
            CHECK(pa && pb && llm_model_get_params(a, pa) == LLM_OK && llm_model_get_params(b2, pb) == LLM_OK &&
                  memcmp(pa, pb, np * 4) == 0, "resumed weights differ");
            free(pa); free(pb);
        }
        remove(path);
    }
    llm_model_free(a); llm_model_free(b); llm_model_free(b2);
}

int main(void) {
    test_seed(20240605);
    test_fixture_masks();
    test_threads();
    test_statistics();
    test_bad_p();
    test_torch();
    test_p0();
    test_resume();
    return TEST_END("test_dropout");
}
