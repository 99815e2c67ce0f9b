/* tests/test_lora.c: LoRA adapters (llm_model_lora_*).
 *
 *   - bad configs get named errors: rank 0 and rank > C (the message names C), unknown
 *     target bits, a negative alpha;
 *   - fresh adapters: the documented layout and count, A inside U(-1/sqrt(in), ...),
 *     B = 0, the same seed gives the same A and another seed another;
 *   - the base is frozen: its gradients and moments are freed and never made again
 *     (llm_model_get_grads refuses), llm_model_memory counts gradients and AdamW moments
 *     of the adapters alone;
 *   - the adapters file: save -> load gives the same floats bit for bit, its size is the
 *     header plus the floats, no .tmp is left; adapters for another model shape, a
 *     truncated file, bad magic, a non-finite value are refused by name and leave the
 *     attached adapters as they were; with_optimizer keeps the moments and the step;
 *   - merge: W += (alpha/r) B A, compared with the product in double;
 *   - against PyTorch (tests/ref_lora.py: the adapters added by hand, the same A, B and
 *     scaling; its answers committed in tests/fixtures, the base weights drawn again from
 *     their recipe and written as model files by tests/ref.h, checked bit for bit against
 *     PyTorch's by their FNV-1a), a GPT-2 with adapters on all four matrices and a Llama with adapters on
 *     qkv and down: logits and every adapter gradient within 1e-4 relative (floor 5% of
 *     each tensor's largest); 10 AdamW steps of the adapters alone from the real start
 *     (B = 0): losses and gradient norms within 1e-4, the adapters after them close;
 *     the frozen weights unchanged bit for bit;
 *   - generation with the adapters attached gives the tokens generation after merging
 *     gives (greedy, 40 tokens), and fresh adapters (B = 0) give the base's logits.
 * Built with -DLLM_CUDA=1 and linked with llm_cuda.cu (make test: under the emulator,
 * tests/cuda_emu.h) it instead runs LoRA on the CUDA backend against the CPU: logits,
 * adapter gradients and 3 AdamW steps of the GPT-2 fixture; and dropout, which the CUDA
 * backend has no op for, is refused by name.
 */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "ref.h"

static char tmpdir[256];
static const char *tpath(const char *name) {
    static char p[4][320];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], 320, "%s/%s", tmpdir, name);
    return p[k];
}
static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static llm_options opts;
static llm_config gpt2_cfg(int C) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 16; c.vocab_size = 37; c.n_layer = 2; c.n_head = 2; c.n_embd = C;
    return c;
}
static llm_model *make(const llm_config *c, uint64_t seed) {
    llm_model *m = NULL;
    llm_status s = llm_model_create(&m, c, &opts, seed);
    CHECK(s == LLM_OK, "create: %s", llm_last_error());
    return m;
}

static void test_bad_config(void) {
    llm_config c = gpt2_cfg(16);
    llm_model *m = make(&c, 1);
    if (!m) return;
    llm_lora_config lc;
    memset(&lc, 0, sizeof lc);
    const int ranks[3] = {0, -1, 17};
    for (int i = 0; i < 3; i++) {
        lc.rank = ranks[i];
        CHECK(llm_model_lora_create(m, &lc) == LLM_ERR_ARG, "rank %d accepted", ranks[i]);
        CHECK(strstr(llm_last_error(), "rank") && strstr(llm_last_error(), "C = 16"), "rank %d: message %s", ranks[i], llm_last_error());
    }
    lc.rank = 16;
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "rank C refused: %s", llm_last_error());
    lc.rank = 2; lc.targets = 16;
    CHECK(llm_model_lora_create(m, &lc) == LLM_ERR_ARG, "target bit 16 accepted");
    lc.targets = 0; lc.alpha = -1;
    CHECK(llm_model_lora_create(m, &lc) == LLM_ERR_ARG, "alpha -1 accepted");
    CHECK(llm_model_lora_config(m).rank == 16, "a refused config replaced the adapters");
    llm_model_free(m);
}

/* in/out of the four targets of a GPT-2 of width C */
static void dims(int C, int in[4], int out[4]) {
    in[0] = C; out[0] = 3 * C; in[1] = C; out[1] = C; in[2] = C; out[2] = 4 * C; in[3] = 4 * C; out[3] = C;
}

static void test_fresh(void) {
    const int C = 12, L = 2, r = 3;
    llm_config c = gpt2_cfg(C);
    llm_model *m = make(&c, 1), *m2 = make(&c, 1);
    if (!m || !m2) { llm_model_free(m); llm_model_free(m2); return; }
    llm_lora_config lc = {r, 0.0f, LLM_LORA_QKV | LLM_LORA_DOWN, 99};
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora_create: %s", llm_last_error());
    llm_lora_config got = llm_model_lora_config(m);
    CHECK(got.rank == r && got.alpha == 2.0f * r && got.targets == (LLM_LORA_QKV | LLM_LORA_DOWN) && got.seed == 99,
          "config %d %g %d", got.rank, got.alpha, got.targets);
    int in[4], out[4];
    dims(C, in, out);
    size_t want = (size_t)L * r * (in[0] + out[0]) + (size_t)L * r * (in[3] + out[3]);
    size_t n = llm_model_lora_num_params(m);
    CHECK(n == want, "%zu adapter floats, expected %zu", n, want);
    float *a = test_rand_floats(n, 1), *b = test_rand_floats(n, 1);
    CHECK(llm_model_lora_get(m, a) == LLM_OK, "lora_get: %s", llm_last_error());
    /* qkv: A (L,r,C) then Bt (L,r,3C); down: A (L,r,4C) then Bt (L,r,C) */
    size_t o = 0;
    int okA = 1, okB = 1, spread = 0;
    for (int k = 0; k < 4; k += 3) {
        float bound = 1.0f / sqrtf((float)in[k]);
        for (size_t i = 0; i < (size_t)L * r * in[k]; i++, o++) {
            if (!(fabsf(a[o]) <= bound)) okA = 0;
            if (fabsf(a[o]) > 0.5f * bound) spread = 1;
        }
        for (size_t i = 0; i < (size_t)L * r * out[k]; i++, o++) if (a[o] != 0.0f) okB = 0;
    }
    CHECK(okA && spread, "A is not drawn from U(-1/sqrt(in), 1/sqrt(in))");
    CHECK(okB, "B is not zero");
    CHECK(llm_model_lora_create(m2, &lc) == LLM_OK && llm_model_lora_get(m2, b) == LLM_OK, "second: %s", llm_last_error());
    CHECK(memcmp(a, b, n * sizeof(float)) == 0, "the same seed gave other adapters");
    lc.seed = 100;
    CHECK(llm_model_lora_create(m2, &lc) == LLM_OK && llm_model_lora_get(m2, b) == LLM_OK, "third: %s", llm_last_error());
    CHECK(memcmp(a, b, n * sizeof(float)) != 0, "another seed gave the same adapters");
    free(a); free(b);
    llm_model_free(m); llm_model_free(m2);
}

static void test_frozen_memory(void) {
    llm_config c = gpt2_cfg(16);
    llm_model *m = make(&c, 3);
    if (!m) return;
    int tok[2 * 8], tg[2 * 8];
    for (int i = 0; i < 16; i++) { tok[i] = (i * 7) % 37; tg[i] = (i * 5 + 1) % 37; }
    llm_adamw_config ac = llm_adamw_config_default();
    /* a full step first: gradients and moments of the base exist */
    CHECK(llm_model_forward(m, tok, tg, 2, 8, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
          llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, 1e-3f, NULL) == LLM_OK, "full step: %s", llm_last_error());
    llm_memory full, lora;
    CHECK(llm_model_memory(m, 2, 8, &full) == LLM_OK, "memory: %s", llm_last_error());
    size_t np = llm_model_num_params(m);
    CHECK(full.params == np * 4 && full.grads == np * 4 && full.optimizer == 8 * np && full.adapters == 0,
          "full: params %zu grads %zu optimizer %zu", full.params, full.grads, full.optimizer);
    CHECK(full.allocated == full.total, "full: allocated %zu != total %zu after a step", full.allocated, full.total);
    llm_lora_config lc = {4, 8.0f, 0, 5};
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora_create: %s", llm_last_error());
    size_t n = llm_model_lora_num_params(m);
    float *g = test_rand_floats(np, 1);
    CHECK(llm_model_get_grads(m, g) == LLM_ERR_STATE, "get_grads gave the frozen base's gradients");
    free(g);
    CHECK(llm_model_memory(m, 2, 8, &lora) == LLM_OK, "memory: %s", llm_last_error());
    CHECK(lora.grads == n * 4 && lora.optimizer == 8 * n && lora.adapters == (n + 16) * 4 && lora.params == np * 4,
          "lora: grads %zu optimizer %zu adapters %zu (n %zu)", lora.grads, lora.optimizer, lora.adapters, n);
    CHECK(lora.allocated == lora.params + lora.adapters,   /* (the activations are laid out anew) */
          "lora: the base's gradients or moments are still held (allocated %zu)", lora.allocated);
    /* a step with the adapters: their gradients and moments appear, the base's do not */
    CHECK(llm_model_forward(m, tok, tg, 2, 8, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
          llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, 1e-3f, NULL) == LLM_OK, "lora step: %s", llm_last_error());
    CHECK(llm_model_memory(m, 2, 8, &lora) == LLM_OK && lora.allocated == lora.total,
          "lora step: allocated %zu, needed %zu", lora.allocated, lora.total);
    CHECK(lora.total < full.total, "LoRA needs more memory than full training");
    llm_model_free(m);
}

static void test_file(void) {
    llm_config c = gpt2_cfg(16);
    llm_model *m = make(&c, 3), *m2 = make(&c, 4);
    llm_config other = gpt2_cfg(24);
    llm_model *mo = make(&other, 3);
    if (!m || !m2 || !mo) goto done;
    llm_lora_config lc = {4, 6.0f, LLM_LORA_PROJ | LLM_LORA_UP, 11};
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora_create: %s", llm_last_error());
    size_t n = llm_model_lora_num_params(m);
    float *a = test_rand_floats(n, 0.5f), *b = test_rand_floats(n, 1);
    CHECK(llm_model_lora_set(m, a) == LLM_OK, "lora_set: %s", llm_last_error());
    const char *path = tpath("a.lora");
    CHECK(llm_model_lora_save(m, path, 0, NULL) == LLM_OK, "lora_save: %s", llm_last_error());
    CHECK(file_size(path) == 128 + (long)n * 4, "file is %ld bytes, expected %zu", file_size(path), 128 + n * 4);
    CHECK(access(tpath("a.lora.tmp"), F_OK) != 0, "a .tmp is left");
    CHECK(llm_model_lora_load(m2, path, NULL) == LLM_OK, "lora_load: %s", llm_last_error());
    CHECK(llm_model_lora_get(m2, b) == LLM_OK && memcmp(a, b, n * sizeof(float)) == 0, "loaded adapters differ");
    llm_lora_config g = llm_model_lora_config(m2);
    CHECK(g.rank == 4 && g.alpha == 6.0f && g.targets == (LLM_LORA_PROJ | LLM_LORA_UP) && g.seed == 11, "loaded config differs");
    /* another shape: named, and the model keeps what it had */
    llm_lora_config lo = {2, 0, 0, 1};
    CHECK(llm_model_lora_create(mo, &lo) == LLM_OK, "lora_create other: %s", llm_last_error());
    CHECK(llm_model_lora_load(mo, path, NULL) == LLM_ERR_ARG, "adapters for another shape accepted");
    CHECK(strstr(llm_last_error(), "another model shape") && strstr(llm_last_error(), "C=16") && strstr(llm_last_error(), "C=24"),
          "the message does not name both shapes: %s", llm_last_error());
    CHECK(llm_model_lora_config(mo).rank == 2, "a failed load changed the attached adapters");
    /* damaged files */
    size_t len = 0;
    char *raw = test_read_file(path, &len);
    if (raw) {
        FILE *f = fopen(tpath("cut.lora"), "wb");
        fwrite(raw, 1, len - 5, f); fclose(f);
        CHECK(llm_model_lora_load(m2, tpath("cut.lora"), NULL) == LLM_ERR_FORMAT, "a truncated file accepted");
        CHECK(strstr(llm_last_error(), "truncated") != NULL, "truncation not named: %s", llm_last_error());
        f = fopen(tpath("short.lora"), "wb");
        fwrite(raw, 1, 40, f); fclose(f);
        CHECK(llm_model_lora_load(m2, tpath("short.lora"), NULL) == LLM_ERR_FORMAT, "a 40-byte file accepted");
        raw[0] = 'X';
        f = fopen(tpath("magic.lora"), "wb");
        fwrite(raw, 1, len, f); fclose(f);
        CHECK(llm_model_lora_load(m2, tpath("magic.lora"), NULL) == LLM_ERR_FORMAT, "bad magic accepted");
        raw[0] = 'L';
        float nan = NAN;
        memcpy(raw + 128 + 4 * 3, &nan, 4);
        f = fopen(tpath("nan.lora"), "wb");
        fwrite(raw, 1, len, f); fclose(f);
        CHECK(llm_model_lora_load(m2, tpath("nan.lora"), NULL) == LLM_ERR_FORMAT, "a NaN adapter accepted");
        CHECK(llm_model_lora_get(m2, b) == LLM_OK && memcmp(a, b, n * sizeof(float)) == 0, "failed loads changed the adapters");
        free(raw);
    }
    CHECK(llm_model_lora_load(m2, tpath("missing.lora"), NULL) == LLM_ERR_IO, "a missing file: not an i/o error");
    /* with the optimizer: moments and step come back */
    int tok[16], tg[16];
    for (int i = 0; i < 16; i++) { tok[i] = (i * 3) % 37; tg[i] = (i * 11 + 2) % 37; }
    llm_adamw_config ac = llm_adamw_config_default();
    for (int s = 0; s < 2; s++)
        CHECK(llm_model_forward(m, tok, tg, 2, 8, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
              llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, 1e-3f, NULL) == LLM_OK, "step: %s", llm_last_error());
    llm_train_state ts = {7, {1, 2}, 3, 4}, ts2;
    memset(&ts2, 0, sizeof ts2);
    CHECK(llm_model_lora_save(m, path, 1, &ts) == LLM_OK, "lora_save with optimizer: %s", llm_last_error());
    CHECK(file_size(path) == 128 + 3 * (long)n * 4, "with optimizer: %ld bytes", file_size(path));
    CHECK(llm_model_lora_load(m2, path, &ts2) == LLM_OK, "lora_load with optimizer: %s", llm_last_error());
    CHECK(llm_model_step_count(m2) == 2 && memcmp(&ts, &ts2, sizeof ts) == 0, "step %d or train state not restored", llm_model_step_count(m2));
    CHECK(m2->lora->m != NULL && m->lora->m != NULL, "moments");
    if (m2->lora->m && m->lora->m)
        CHECK(memcmp(m2->lora->m, m->lora->m, n * 4) == 0 && memcmp(m2->lora->v, m->lora->v, n * 4) == 0, "moments differ");
    free(a); free(b);
done:
    llm_model_free(m); llm_model_free(m2); llm_model_free(mo);
}

static void test_merge(void) {
    const int C = 16, L = 2;
    llm_config c = gpt2_cfg(C);
    llm_model *m = make(&c, 8);
    if (!m) return;
    llm_lora_config lc = {3, 5.0f, 0, 2};
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora_create: %s", llm_last_error());
    size_t n = llm_model_lora_num_params(m), np = llm_model_num_params(m);
    float *a = test_rand_floats(n, 0.3f), *w0 = test_rand_floats(np, 1), *w1 = test_rand_floats(np, 1);
    CHECK(llm_model_lora_set(m, a) == LLM_OK && llm_model_get_params(m, w0) == LLM_OK, "set: %s", llm_last_error());
    CHECK(llm_model_lora_merge(m) == LLM_OK, "merge: %s", llm_last_error());
    CHECK(llm_model_lora_config(m).rank == 0 && llm_model_lora_num_params(m) == 0, "merge left the adapters attached");
    CHECK(llm_model_get_params(m, w1) == LLM_OK, "get_params: %s", llm_last_error());
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(&c, off, size);
    int in[4], out[4], tensor[4] = {4, 6, 10, 12};
    dims(C, in, out);
    double worst = 0;
    size_t o = 0;
    int touched[LLM_NTENSORS] = {0};
    for (int k = 0; k < 4; k++) {
        const float *A = a + o, *Bt = a + o + (size_t)L * 3 * in[k];
        o += (size_t)L * 3 * (in[k] + out[k]);
        touched[tensor[k]] = 1;
        for (int l = 0; l < L; l++)
            for (int r0 = 0; r0 < out[k]; r0++)
                for (int i = 0; i < in[k]; i++) {
                    double d = 0;
                    for (int j = 0; j < 3; j++) d += (double)Bt[((size_t)l * 3 + j) * out[k] + r0] * A[((size_t)l * 3 + j) * in[k] + i];
                    size_t at = off[tensor[k]] + ((size_t)l * out[k] + r0) * in[k] + i;
                    double want = (double)w0[at] + 5.0 / 3.0 * d, err = fabs(w1[at] - want) / (fabs(want) > 1e-3 ? fabs(want) : 1e-3);
                    if (err > worst) worst = err;
                }
    }
    CHECK(worst < 1e-5, "merged weights differ from W + (alpha/r) B A: %g", worst);
    int same = 1;
    for (int t = 0; t < LLM_NTENSORS; t++)
        if (!touched[t] && size[t] && memcmp(w0 + off[t], w1 + off[t], size[t] * 4)) same = 0;
    CHECK(same, "merge changed a tensor without adapters");
    CHECK(llm_model_lora_merge(m) == LLM_ERR_STATE, "merge without adapters");
    free(a); free(w0); free(w1);
    llm_model_free(m);
}

/* ---- against PyTorch ------------------------------------------------------------------ */
#define REL_TOL 1e-4
/* The base of fixture dir (tests/ref.h writes its file from the recipe), loaded with o:
 * its parameters are PyTorch's, bit for bit. */
static llm_model *load_fixture(const char *dir, const llm_options *o) {
    const char *path = ref_model_file(dir, 0);
    llm_model *m = NULL;
    if (!path) return NULL;
    CHECK(llm_model_load(&m, path, o) == LLM_OK, "%s: %s", path, llm_last_error());
    if (m && o->backend == NULL) ref_check_params(m, dir, dir);
    return m;
}
static int attach(llm_model *m, const char *dir, const char *file, size_t n) {
    llm_lora_config lc;
    memset(&lc, 0, sizeof lc);
    lc.rank = (int)test_meta_num(dir, "rank", 0);
    lc.alpha = (float)test_meta_num(dir, "alpha", 0);
    lc.targets = (int)test_meta_num(dir, "targets", 0);
    float *ad = (float *)test_fixture_array(dir, file, n);
    int ok = ad && llm_model_lora_create(m, &lc) == LLM_OK && llm_model_lora_num_params(m) == n &&
             llm_model_lora_set(m, ad) == LLM_OK;
    CHECK(ok, "%s: attach %s: %s", dir, file, llm_last_error());
    free(ad);
    return ok;
}
/* per-target errors of an adapter buffer (A then Bt of each attached target) */
static double lora_err(const llm_model *m, const float *got, const float *ref) {
    llm__lora *a = m->lora;
    double worst = 0;
    size_t L = (size_t)m->cfg.n_layer, r = (size_t)a->cfg.rank;
    for (int k = 0; k < 4; k++) {
        if (!(a->cfg.targets & (1 << k))) continue;
        size_t nA = L * r * (size_t)a->in[k], nB = L * r * (size_t)a->out[k];
        double eA = test_close_err(got + a->offA[k], ref + a->offA[k], nA, 0.05);
        double eB = test_close_err(got + a->offBt[k], ref + a->offBt[k], nB, 0.05);
        if (eA > worst) worst = eA;
        if (eB > worst) worst = eB;
    }
    return worst;
}

static void test_torch(const char *dir) {
    if (!test_has_fixture(dir)) { TEST_SKIP("no fixture %s in %s", dir, test_fixtures_dir()); return; }
    int B = (int)test_meta_num(dir, "B", 0), T = (int)test_meta_num(dir, "T", 0);
    size_t n = (size_t)test_meta_num(dir, "n_adapters", 0);
    int *tok = (int *)test_fixture_array(dir, "tokens.i32", (size_t)B * T);
    int *tgt = (int *)test_fixture_array(dir, "targets.i32", (size_t)B * T);
    float *ref_g = (float *)test_fixture_array(dir, "lora_grads.f32", n);
    float *ref_loss = (float *)test_fixture_array(dir, "loss.f32", 1);
    llm_model *m = load_fixture(dir, &opts);
    float *g = (float *)calloc(n, sizeof(float)), *logits = NULL, *ref_logits = NULL, *w0 = NULL, *w1 = NULL;
    if (!tok || !tgt || !ref_g || !ref_loss || !m || !g || !attach(m, dir, "adapters.f32", n)) goto done;
    llm_config c = llm_model_config(m);
    size_t nl = (size_t)B * T * c.vocab_size, np = llm_model_num_params(m);
    logits = (float *)malloc(nl * sizeof(float));
    ref_logits = (float *)test_fixture_array(dir, "logits.f32", nl);
    float loss = 0;
    CHECK(llm_model_forward(m, tok, tgt, B, T, &loss) == LLM_OK && llm_model_get_logits(m, logits) == LLM_OK, "forward: %s", llm_last_error());
    if (ref_logits) {
        double e = test_close_err(logits, ref_logits, nl, 0.05);
        CHECK(e <= REL_TOL, "%s: logits differ from PyTorch's by %.3g", dir, e);
        printf("%s: logits %.2e, loss %.7f (PyTorch %.7f)", dir, e, loss, ref_loss[0]);
    }
    CHECK(fabs(loss - ref_loss[0]) <= REL_TOL * ref_loss[0], "%s: loss %.7f, PyTorch %.7f", dir, loss, ref_loss[0]);
    CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK && llm_model_lora_get_grads(m, g) == LLM_OK,
          "backward: %s", llm_last_error());
    double eg = lora_err(m, g, ref_g);
    CHECK(eg <= REL_TOL, "%s: adapter gradients differ from PyTorch's by %.3g", dir, eg);
    printf(", adapter gradients %.2e\n", eg);

    /* 10 AdamW steps of the adapters alone, from A random and B = 0 */
    {
        const int S = 10;
        float *ref_l = (float *)test_fixture_array(dir, "adamw_losses.f32", S);
        float *ref_n = (float *)test_fixture_array(dir, "adamw_norms.f32", S);
        float *ref_a = (float *)test_fixture_array(dir, "adapters_after.f32", n);
        float *init = (float *)test_fixture_array(dir, "adamw_init.f32", n);
        w0 = (float *)malloc(np * sizeof(float)); w1 = (float *)malloc(np * sizeof(float));
        if (ref_l && ref_n && ref_a && init && w0 && w1 && attach(m, dir, "adamw_init.f32", n) &&
            llm_model_get_params(m, w0) == LLM_OK) {
            llm_adamw_config ac = llm_adamw_config_default();
            ac.beta1 = 0.9f; ac.beta2 = 0.95f; ac.eps = 1e-8f; ac.weight_decay = 0.1f;
            ac.grad_clip = (float)test_meta_num(dir, "grad_clip", 0);
            float lr = (float)test_meta_num(dir, "lr", 0);
            CHECK(lr > 0, "%s: meta.json has no lr", dir);
            double wl = 0, wn = 0;
            for (int k = 0; k < S; k++) {
                float l = 0, nrm = 0;
                CHECK(llm_model_forward(m, tok, tgt, B, T, &l) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
                      llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, lr, &nrm) == LLM_OK, "step %d: %s", k, llm_last_error());
                double el = fabs(l - ref_l[k]) / ref_l[k], en = fabs(nrm - ref_n[k]) / ref_n[k];
                if (el > wl) wl = el;
                if (en > wn) wn = en;
            }
            CHECK(wl <= REL_TOL, "%s: AdamW losses differ from PyTorch's by %.3g", dir, wl);
            CHECK(wn <= REL_TOL, "%s: AdamW gradient norms differ from PyTorch's by %.3g", dir, wn);
            /* the adapters after 10 steps, absolutely against the largest movement: Adam's
             * m/sqrt(v) turns float32 noise in tiny gradients into steps of up to lr */
            float *got = (float *)malloc(n * sizeof(float));
            double worst = 0, moved = 0;
            if (got && llm_model_lora_get(m, got) == LLM_OK)
                for (size_t i = 0; i < n; i++) {
                    double d = fabs((double)got[i] - ref_a[i]), mv = fabs((double)ref_a[i] - init[i]);
                    if (d > worst) worst = d;
                    if (mv > moved) moved = mv;
                }
            CHECK(worst <= 2e-3 * moved, "%s: adapters after 10 steps differ by %.3g (largest movement %.3g)", dir, worst, moved);
            printf("%s: 10 AdamW steps: losses %.2e, norms %.2e, adapters %.2e of a %.2e movement\n", dir, wl, wn, worst, moved);
            free(got);
            CHECK(llm_model_get_params(m, w1) == LLM_OK && memcmp(w0, w1, np * sizeof(float)) == 0,
                  "%s: the frozen weights changed", dir);
        }
        free(ref_l); free(ref_n); free(ref_a); free(init);
    }
done:
    free(tok); free(tgt); free(ref_g); free(ref_loss); free(g); free(logits); free(ref_logits); free(w0); free(w1);
    llm_model_free(m);
}

/* Greedy generation with adapters attached and after merging them: the same tokens. And
 * fresh adapters (B = 0) leave the base's logits exactly. */
static void test_attached_merged(void) {
    llm_config c = gpt2_cfg(32);
    c.vocab_size = 97; c.max_seq_len = 64;
    llm_model *m = make(&c, 21), *base = make(&c, 21);
    if (!m || !base) { llm_model_free(m); llm_model_free(base); return; }
    int tok[16], tg[16];
    for (int i = 0; i < 16; i++) { tok[i] = (i * 13 + 5) % 97; tg[i] = (i * 7 + 3) % 97; }
    size_t nl = 16 * 97;
    float *l0 = (float *)malloc(nl * 4), *l1 = (float *)malloc(nl * 4);
    llm_lora_config lc = {4, 0, 0, 3};
    CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora_create: %s", llm_last_error());
    CHECK(llm_model_forward(m, tok, NULL, 1, 16, NULL) == LLM_OK && llm_model_get_logits(m, l1) == LLM_OK &&
          llm_model_forward(base, tok, NULL, 1, 16, NULL) == LLM_OK && llm_model_get_logits(base, l0) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(memcmp(l0, l1, nl * 4) == 0, "fresh adapters (B = 0) changed the logits");
    /* a trained state: a few steps at a high learning rate */
    llm_adamw_config ac = llm_adamw_config_default();
    for (int s = 0; s < 20; s++)
        CHECK(llm_model_forward(m, tok, tg, 1, 16, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
              llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &ac, 3e-2f, NULL) == LLM_OK, "step: %s", llm_last_error());
    llm_kv *kv = NULL;
    int out_a[40], out_m[40], na = 0, nm = 0, prompt[3] = {1, 2, 3};
    llm_generate_config g = llm_generate_config_default();
    g.max_new_tokens = 40;
    CHECK(llm_kv_create(&kv, m, 1, 0, 0) == LLM_OK && llm_generate(kv, 0, prompt, 3, &g, out_a, 40, &na, NULL, NULL) == LLM_OK,
          "generate attached: %s", llm_last_error());
    llm_kv_free(kv); kv = NULL;
    CHECK(llm_model_forward(m, tok, NULL, 1, 16, NULL) == LLM_OK && llm_model_get_logits(m, l1) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(memcmp(l0, l1, nl * 4) != 0, "20 steps did not change the adapted model");
    CHECK(llm_model_lora_merge(m) == LLM_OK, "merge: %s", llm_last_error());
    CHECK(llm_model_forward(m, tok, NULL, 1, 16, NULL) == LLM_OK && llm_model_get_logits(m, l0) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(test_close_err(l0, l1, nl, 0.05) < 1e-4, "merged logits differ from attached: %g", test_close_err(l0, l1, nl, 0.05));
    CHECK(llm_kv_create(&kv, m, 1, 0, 0) == LLM_OK && llm_generate(kv, 0, prompt, 3, &g, out_m, 40, &nm, NULL, NULL) == LLM_OK,
          "generate merged: %s", llm_last_error());
    CHECK(na == nm && na == 40 && memcmp(out_a, out_m, sizeof out_a) == 0, "generation attached and merged differ");
    llm_kv_free(kv);
    free(l0); free(l1);
    llm_model_free(m); llm_model_free(base);
}

#ifdef LLM_CUDA
/* LoRA on the CUDA backend, against the CPU backend. */
static void test_cuda(void) {
    const char *dir = "lora_gpt2";
    if (!test_has_fixture(dir)) { TEST_SKIP("no fixture %s in %s", dir, test_fixtures_dir()); return; }
    int B = (int)test_meta_num(dir, "B", 0), T = (int)test_meta_num(dir, "T", 0);
    size_t n = (size_t)test_meta_num(dir, "n_adapters", 0);
    int *tok = (int *)test_fixture_array(dir, "tokens.i32", (size_t)B * T);
    int *tgt = (int *)test_fixture_array(dir, "targets.i32", (size_t)B * T);
    llm_options oc = opts;
    oc.backend = llm_cuda_backend();
    llm_model *m[2] = {load_fixture(dir, &opts), load_fixture(dir, &oc)};
    if (!tok || !tgt || !m[0] || !m[1] || !attach(m[0], dir, "adapters.f32", n) || !attach(m[1], dir, "adapters.f32", n)) goto done;
    {
        size_t nl = (size_t)B * T * llm_model_config(m[0]).vocab_size;
        float *lg[2], *g[2], loss[2] = {0, 0}, norm[2] = {0, 0};
        llm_adamw_config ac = llm_adamw_config_default();
        for (int k = 0; k < 2; k++) {
            lg[k] = (float *)malloc(nl * 4); g[k] = (float *)malloc(n * 4);
            CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss[k]) == LLM_OK && llm_model_get_logits(m[k], lg[k]) == LLM_OK &&
                  llm_model_zero_grad(m[k]) == LLM_OK && llm_model_backward(m[k], 1.0f) == LLM_OK &&
                  llm_model_lora_get_grads(m[k], g[k]) == LLM_OK, "%s: %s", k ? "cuda" : "cpu", llm_last_error());
        }
        double el = test_close_err(lg[1], lg[0], nl, 0.05), eg = lora_err(m[0], g[1], g[0]);
        CHECK(el <= REL_TOL && eg <= REL_TOL, "CUDA LoRA: logits %.3g, adapter gradients %.3g from the CPU's", el, eg);
        for (int s = 0; s < 3; s++)
            for (int k = 0; k < 2; k++)
                CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss[k]) == LLM_OK && llm_model_zero_grad(m[k]) == LLM_OK &&
                      llm_model_backward(m[k], 1.0f) == LLM_OK && llm_model_step(m[k], &ac, 1e-3f, &norm[k]) == LLM_OK,
                      "%s step: %s", k ? "cuda" : "cpu", llm_last_error());
        CHECK(fabs(loss[1] - loss[0]) <= REL_TOL * loss[0] && fabs(norm[1] - norm[0]) <= 1e-3 * norm[0],
              "CUDA LoRA after 3 AdamW steps: loss %.7f (cpu %.7f), norm %.6g (cpu %.6g)", loss[1], loss[0], norm[1], norm[0]);
        printf("CUDA LoRA vs CPU: logits %.2e, adapter gradients %.2e, after 3 steps loss %.7f (cpu %.7f)\n", el, eg, loss[1], loss[0]);
        for (int k = 0; k < 2; k++) { free(lg[k]); free(g[k]); }
    }
    {   /* no dropout op on the CUDA backend: refused by name */
        llm_model *d = NULL;
        oc.dropout = 0.1f;
        const char *path = ref_model_file(dir, 0);
        CHECK(path && llm_model_load(&d, path, &oc) == LLM_ERR_UNSUPPORTED && d == NULL && strstr(llm_last_error(), "dropout"),
              "dropout on the CUDA backend: %s", llm_last_error());
    }
done:
    free(tok); free(tgt);
    llm_model_free(m[0]); llm_model_free(m[1]);
}
#endif

int main(void) {
    test_seed(777);
    memset(&opts, 0, sizeof opts);
    opts.n_threads = 2;
    if (!test_make_tmpdir(tmpdir, sizeof tmpdir, "llm_test_lora")) { printf("cannot make a temporary directory\n"); return 1; }
#ifdef LLM_CUDA
    if (llm_cuda_device_count() > 0) {
        if (strstr(llm_cuda_device_name(0), "emulator")) printf("test_lora: EMULATED: the CUDA backend's kernels ran on the CPU\n");
        test_cuda();
    } else {
        TEST_SKIP("test_lora: no CUDA device");
    }
    test_rmdir(tmpdir);
    return TEST_END("test_lora");
#endif
    test_bad_config();
    test_fresh();
    test_frozen_memory();
    test_file();
    test_merge();
    test_torch("lora_gpt2");
    test_torch("lora_llama");
    test_attached_merged();
    const char *names[] = {"a.lora", "cut.lora", "short.lora", "magic.lora", "nan.lora"};
    for (int i = 0; i < 5; i++) remove(tpath(names[i]));
    test_rmdir(tmpdir);
    return TEST_END("test_lora");
}
