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
 *   - llm_options.dropout outside [0, 1) (and NaN) is refused with a named error.
 */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static float *drop_ones(uint64_t key, size_t n, float p) {
    float *x = test_rand_floats(n, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    llm__dropout_ref(x, x, n, p, key, 0);
    return x;
}

static void test_fixture_masks(void) {
    const char *dir = "dropout_gpt2";
    if (!test_has_fixture(dir)) { TEST_SKIP("no fixture %s (make fixtures needs /usr/bin/python3 with torch)", dir); return; }
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

int main(void) {
    test_seed(20240605);
    test_fixture_masks();
    test_threads();
    test_statistics();
    test_bad_p();
    return TEST_END("test_dropout");
}
