/* tests/test_sampler.c: the token sampler on synthetic logits, and the stop-string
 * helpers. (The golden run.c sample, stories260K at -t 1.0 -p 0.9 -s 133742, needs the
 * Llama model and is checked with it.) */
#include "test.h"
#include "llm.h"

/* ---- run.c's sampler, restated from its description: the library must agree id for id */
typedef struct { uint64_t state; } ref_rng;
static uint32_t ref_u32(ref_rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1DULL) >> 32);
}
static float ref_f32(ref_rng *r) { return (ref_u32(r) >> 8) / 16777216.0f; }

typedef struct { float prob; int index; } ref_pi;
static int ref_cmp(const void *a, const void *b) {   /* descending prob, then ascending index */
    const ref_pi *x = (const ref_pi *)a, *y = (const ref_pi *)b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return x->index < y->index ? -1 : x->index > y->index;
}
static int ref_sample(ref_rng *r, const float *logits_in, int n, float temperature, float topp) {
    float *x = (float *)malloc((size_t)n * sizeof(float));
    ref_pi *pi = (ref_pi *)malloc((size_t)n * sizeof(ref_pi));
    memcpy(x, logits_in, (size_t)n * sizeof(float));
    int next = 0;
    if (temperature == 0.0f) {
        for (int i = 1; i < n; i++) if (x[i] > x[next]) next = i;
    } else {
        for (int q = 0; q < n; q++) x[q] /= temperature;
        float mx = x[0], sum = 0.0f;
        for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
        for (int i = 0; i < n; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
        for (int i = 0; i < n; i++) x[i] /= sum;
        float coin = ref_f32(r);
        if (topp <= 0 || topp >= 1) {
            float cdf = 0.0f;
            next = n - 1;
            for (int i = 0; i < n; i++) { cdf += x[i]; if (coin < cdf) { next = i; break; } }
        } else {
            int n0 = 0;
            const float cutoff = (1.0f - topp) / (n - 1);
            for (int i = 0; i < n; i++)
                if (x[i] >= cutoff) { pi[n0].index = i; pi[n0].prob = x[i]; n0++; }
            qsort(pi, (size_t)n0, sizeof(ref_pi), ref_cmp);
            float cum = 0.0f;
            int last = n0 - 1;
            for (int i = 0; i < n0; i++) { cum += pi[i].prob; if (cum > topp) { last = i; break; } }
            float rr = coin * cum, cdf = 0.0f;
            next = pi[last].index;
            for (int i = 0; i <= last; i++) { cdf += pi[i].prob; if (rr < cdf) { next = pi[i].index; break; } }
        }
    }
    free(x); free(pi);
    return next;
}

static llm_sampler *make(int V, float temp, int top_k, float top_p, float pen, uint64_t seed) {
    llm_sampler_config c = llm_sampler_config_default();
    c.temperature = temp; c.top_k = top_k; c.top_p = top_p; c.repetition_penalty = pen; c.seed = seed;
    llm_sampler *s = NULL;
    if (llm_sampler_create(&s, V, &c) != LLM_OK) fprintf(stderr, "create: %s\n", llm_last_error());
    return s;
}

static void random_logits(llm_rng *r, float *x, int V, float scale) {
    for (int i = 0; i < V; i++) x[i] = scale * llm_rng_normal(r);
}

/* softmax(x / T) in double */
static void softmax_d(const float *x, int V, double T, double *p) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) if (x[i] > mx) mx = x[i];
    for (int i = 0; i < V; i++) { p[i] = exp((x[i] - mx) / T); sum += p[i]; }
    for (int i = 0; i < V; i++) p[i] /= sum;
}

static void test_matches_runc(void) {
    const int V = 512;
    float *x = (float *)malloc(V * sizeof(float));
    llm_rng g;
    llm_rng_seed(&g, 1);
    const float temps[3] = {1.0f, 0.7f, 1.3f}, topps[4] = {0.0f, 0.9f, 0.5f, 1.0f};
    int bad = 0, total = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++) {
            uint64_t seed = 133742 + (uint64_t)(a * 4 + b);
            llm_sampler *s = make(V, temps[a], 0, topps[b], 0, seed);
            ref_rng r = {seed};
            for (int step = 0; step < 300; step++) {
                random_logits(&g, x, V, 3.0f);
                int id = -1;
                llm_sampler_sample(s, x, NULL, 0, &id, NULL);
                bad += id != ref_sample(&r, x, V, temps[a], topps[b]);
                total++;
            }
            llm_sampler_free(s);
        }
    CHECK(bad == 0, "%d of %d draws differ from run.c's sampler", bad, total);
    free(x);
}

static void test_greedy(void) {
    float x[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, -INFINITY};
    llm_sampler *s = NULL;
    CHECK(llm_sampler_create(&s, 6, NULL) == LLM_OK, "create greedy");
    int id = -1;
    float lp = 1;
    CHECK(llm_sampler_sample(s, x, NULL, 0, &id, &lp) == LLM_OK && id == 1, "argmax, first max wins (%d)", id);
    double p[6];
    softmax_d(x, 6, 1.0, p);
    CHECK(fabs(lp - log(p[1])) < 1e-5, "greedy logprob %g vs log softmax %g", lp, log(p[1]));
    CHECK(x[1] == 2.0f && x[5] == -INFINITY, "logits are not modified");
    llm_sampler_free(s);
    /* temperature -> 0: tiny temperatures give the greedy choice, with and without top-k/p */
    llm_rng g;
    llm_rng_seed(&g, 3);
    float y[100];
    int bad = 0;
    const float temps[3] = {1e-3f, 1e-6f, 1e-30f};
    for (int k = 0; k < 3; k++) {
        llm_sampler *a = make(100, temps[k], 0, 0, 0, 9), *b = make(100, temps[k], 5, 0.9f, 0, 9);
        for (int step = 0; step < 200; step++) {
            random_logits(&g, y, 100, 2.0f);
            int want = 0, i1 = -1, i2 = -1;
            for (int i = 1; i < 100; i++) if (y[i] > y[want]) want = i;
            /* keep the runner-up 0.05 behind so exp(-0.05/T) underflows for T <= 1e-3 */
            for (int i = 0; i < 100; i++) if (i != want && y[i] > y[want] - 0.05f) y[i] = y[want] - 0.05f;
            llm_sampler_sample(a, y, NULL, 0, &i1, NULL);
            llm_sampler_sample(b, y, NULL, 0, &i2, NULL);
            bad += i1 != want || i2 != want;
        }
        llm_sampler_free(a); llm_sampler_free(b);
    }
    CHECK(bad == 0, "temperature -> 0 differs from greedy %d times", bad);
}

static void test_reproducible(void) {
    const int V = 50;
    float x[50];
    llm_rng g;
    llm_rng_seed(&g, 5);
    random_logits(&g, x, V, 1.0f);
    int a[200], b[200], c[200], d[200];
    llm_sampler *s1 = make(V, 1.0f, 10, 0.95f, 0, 77), *s2 = make(V, 1.0f, 10, 0.95f, 0, 77);
    llm_sampler *s3 = make(V, 1.0f, 10, 0.95f, 0, 78);
    for (int i = 0; i < 200; i++) {
        llm_sampler_sample(s1, x, NULL, 0, &a[i], NULL);
        llm_sampler_sample(s2, x, NULL, 0, &b[i], NULL);
        llm_sampler_sample(s3, x, NULL, 0, &c[i], NULL);
    }
    llm_sampler_reseed(s1, 77);
    for (int i = 0; i < 200; i++) llm_sampler_sample(s1, x, NULL, 0, &d[i], NULL);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same sequence");
    CHECK(memcmp(a, d, sizeof a) == 0, "reseed restarts the sequence");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed, another sequence");
    llm_sampler_free(s1); llm_sampler_free(s2); llm_sampler_free(s3);
    /* seed 0 is usable (an all-zero xorshift state would emit token 0 forever) */
    llm_sampler *z = make(V, 1.0f, 0, 0, 0, 0);
    int distinct = 0, seen[50] = {0};
    for (int i = 0; i < 200; i++) { int id; llm_sampler_sample(z, x, NULL, 0, &id, NULL); distinct += !seen[id]; seen[id] = 1; }
    CHECK(distinct > 5, "seed 0 samples %d distinct ids", distinct);
    llm_sampler_free(z);
}

/* Over many draws: top-k stays in the top k, top-p in the nucleus, masked tokens never
 * appear, and logprob is the log of the pick's probability under the final distribution. */
static void test_support_and_logprob(void) {
    const int V = 200;
    float x[200];
    double p[200], q[200];
    int order[200];
    llm_rng g;
    llm_rng_seed(&g, 11);
#if LLM_TEST_SAN
    const int draws = 1000;
#else
    const int draws = 5000;
#endif
    const int ks[4] = {0, 1, 7, 40};
    const float ps[3] = {0.0f, 0.5f, 0.9f}, temps[2] = {1.0f, 0.8f};
    for (int ik = 0; ik < 4; ik++)
        for (int ip = 0; ip < 3; ip++)
            for (int it = 0; it < 2; it++) {
                int k = ks[ik];
                float tp = ps[ip], T = temps[it];
                random_logits(&g, x, V, 2.0f);
                x[17] = -INFINITY; x[18] = -INFINITY;   /* masked */
                /* the expected final distribution, in double */
                softmax_d(x, V, T, p);
                for (int i = 0; i < V; i++) order[i] = i;
                for (int i = 1; i < V; i++)            /* insertion sort: descending p, then id */
                    for (int j = i; j > 0 && (p[order[j]] > p[order[j - 1]] ||
                         (p[order[j]] == p[order[j - 1]] && order[j] < order[j - 1])); j--) {
                        int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                    }
                int n = k > 0 ? k : V;
                double mass = 0;
                for (int i = 0; i < n; i++) mass += p[order[i]];
                int last = n - 1;
                if (tp > 0) {
                    double cum = 0;
                    for (int i = 0; i < n; i++) { cum += p[order[i]] / mass; if (cum > tp) { last = i; break; } }
                }
                double nmass = 0;
                for (int i = 0; i < V; i++) q[i] = 0;
                for (int i = 0; i <= last; i++) nmass += p[order[i]];
                for (int i = 0; i <= last; i++) q[order[i]] = p[order[i]] / nmass;
                llm_sampler *s = make(V, T, k, tp, 0, 1000 + (uint64_t)(ik * 16 + ip * 4 + it));
                int outside = 0, lp_bad = 0;
                double worst = 0;
                for (int d = 0; d < draws; d++) {
                    int id = -1;
                    float lp = 0;
                    llm_sampler_sample(s, x, NULL, 0, &id, &lp);
                    if (id < 0 || id >= V || q[id] == 0) { outside++; continue; }
                    double e = fabs(lp - log(q[id]));
                    if (e > worst) worst = e;
                    if (e > 1e-4) lp_bad++;
                }
                CHECK(outside == 0, "k=%d p=%g T=%g: %d draws outside the %d allowed ids", k, tp, T, outside, last + 1);
                CHECK(lp_bad == 0, "k=%d p=%g T=%g: logprob off by up to %g", k, tp, T, worst);
                llm_sampler_free(s);
            }
}

/* Pearson's chi-square of the counts against the expected distribution. */
static double chi2(const int *count, const double *q, int V, int n, int *dof) {
    double c2 = 0;
    *dof = -1;
    for (int i = 0; i < V; i++) {
        if (q[i] <= 0) continue;
        double e = q[i] * n;
        c2 += (count[i] - e) * (count[i] - e) / e;
        (*dof)++;
    }
    return c2;
}

static void test_frequencies(void) {
    /* 8 tokens with probabilities from 0.3 down to 0.02: 40000 draws */
    const int V = 8, N = 40000;
    const double prob[8] = {0.30, 0.22, 0.16, 0.12, 0.09, 0.06, 0.03, 0.02};
    float x[8];
    for (int i = 0; i < V; i++) x[i] = (float)log(prob[i]) + 1.5f;
    int count[8];
    double q[8];
    int dof;
    /* 99.9% quantiles of chi-square: dof 7 -> 24.32, dof 2 -> 13.82, dof 3 -> 16.27 */
    struct { int k; float p; float T; double crit; } cases[4] = {
        {0, 0, 1.0f, 24.32}, {3, 0, 1.0f, 13.82}, {0, 0.5f, 1.0f, 13.82}, {0, 0, 2.0f, 24.32}};
    for (int c = 0; c < 4; c++) {
        llm_sampler *s = make(V, cases[c].T, cases[c].k, cases[c].p, 0, 4242);
        memset(count, 0, sizeof count);
        for (int d = 0; d < N; d++) { int id; llm_sampler_sample(s, x, NULL, 0, &id, NULL); count[id]++; }
        /* expected: softmax(x/T), restricted and renormalised (top-3 = top-p 0.5 here:
         * 0.30 + 0.22 = 0.52 > 0.5 cuts after two, so p=0.5 keeps {0,1}) */
        double sum = 0;
        int keep = cases[c].k ? cases[c].k : (cases[c].p > 0 ? 2 : V);
        for (int i = 0; i < V; i++) { q[i] = i < keep ? pow(prob[i], 1.0 / cases[c].T) : 0; sum += q[i]; }
        for (int i = 0; i < V; i++) q[i] /= sum;
        double c2 = chi2(count, q, V, N, &dof);
        double crit = cases[c].p > 0 ? 10.83 : cases[c].crit;    /* dof 1 -> 10.83 */
        CHECK(c2 < crit, "case %d: chi-square %.2f (dof %d) above %.2f", c, c2, dof, crit);
        llm_sampler_free(s);
    }
}

static void test_repetition_penalty(void) {
    float x[4] = {2.0f, 1.9f, -1.0f, 0.5f};
    int id, prev1[1] = {0}, prev3[3] = {0, 0, 0}, prevn[1] = {2};
    float lp_plain, lp_pen, lp_pen3;
    llm_sampler *g = make(4, 0, 0, 0, 1.2f, 1);
    llm_sampler_sample(g, x, NULL, 0, &id, NULL);
    CHECK(id == 0, "no previous ids: no penalty");
    llm_sampler_sample(g, x, prev1, 1, &id, NULL);
    CHECK(id == 1, "2.0 / 1.2 < 1.9: the repeated token loses the argmax (%d)", id);
    llm_sampler_free(g);
    /* the probability of the repeated token falls; a repeated id counts once */
    llm_sampler *a = make(4, 1.0f, 0, 0, 0, 5), *b = make(4, 1.0f, 0, 0, 1.5f, 5), *c = make(4, 1.0f, 0, 0, 1.5f, 5);
    /* find draws of token 0 to read its logprob: sample until it appears */
    lp_plain = lp_pen = lp_pen3 = 0;
    for (int i = 0; i < 200; i++) { float lp; llm_sampler_sample(a, x, NULL, 0, &id, &lp); if (id == 0) { lp_plain = lp; break; } }
    for (int i = 0; i < 200; i++) { float lp; llm_sampler_sample(b, x, prev1, 1, &id, &lp); if (id == 0) { lp_pen = lp; break; } }
    for (int i = 0; i < 200; i++) { float lp; llm_sampler_sample(c, x, prev3, 3, &id, &lp); if (id == 0) { lp_pen3 = lp; break; } }
    double p[4];
    float y[4] = {2.0f / 1.5f, 1.9f, -1.0f, 0.5f};
    softmax_d(y, 4, 1.0, p);
    CHECK(lp_plain < 0 && lp_pen < lp_plain, "penalised logprob %g < plain %g", lp_pen, lp_plain);
    CHECK(fabs(lp_pen - log(p[0])) < 1e-5, "penalised logprob %g, expected %g", lp_pen, log(p[0]));
    CHECK(lp_pen3 == lp_pen, "a repeated id is penalised once (%g vs %g)", lp_pen3, lp_pen);
    llm_sampler_free(a); llm_sampler_free(b); llm_sampler_free(c);
    /* a negative logit is multiplied: -1.0 -> -1.5 */
    llm_sampler *n = make(4, 1.0f, 0, 0, 1.5f, 8);
    float lp2 = 0;
    int hits = 0;
    for (int i = 0; i < 5000 && !hits; i++) { llm_sampler_sample(n, x, prevn, 1, &id, &lp2); hits = id == 2; }
    float z[4] = {2.0f, 1.9f, -1.5f, 0.5f};
    softmax_d(z, 4, 1.0, p);
    CHECK(hits && fabs(lp2 - log(p[2])) < 1e-5, "negative logit times the penalty: %g vs %g", lp2, log(p[2]));
    llm_sampler_free(n);
}

static void test_errors(void) {
    llm_sampler *s = (llm_sampler *)1;
    llm_sampler_config c = llm_sampler_config_default();
    CHECK(c.temperature == 0 && c.top_k == 0 && c.top_p == 0 && c.repetition_penalty == 0 && c.seed == 0,
          "default config is all zero");
    CHECK(llm_sampler_create(&s, 0, NULL) == LLM_ERR_ARG && s == NULL, "V = 0");
    c.temperature = -1;
    CHECK(llm_sampler_create(&s, 10, &c) == LLM_ERR_ARG, "negative temperature");
    c.temperature = NAN;
    CHECK(llm_sampler_create(&s, 10, &c) == LLM_ERR_ARG, "NaN temperature");
    c.temperature = 1; c.repetition_penalty = -2;
    CHECK(llm_sampler_create(&s, 10, &c) == LLM_ERR_ARG, "negative penalty");
    c.repetition_penalty = 1.1f; c.top_p = NAN;
    CHECK(llm_sampler_create(&s, 10, &c) == LLM_ERR_ARG, "NaN top_p");
    c.top_p = 0.9f;
    CHECK(llm_sampler_create(&s, 4, &c) == LLM_OK && s, "valid config");
    float x[4] = {1, 2, 3, 4};
    int id, bad_prev[2] = {1, 4};
    x[2] = NAN;
    CHECK(llm_sampler_sample(s, x, NULL, 0, &id, NULL) == LLM_ERR_ARG, "NaN logit");
    CHECK(strstr(llm_last_error(), "logit 2") != NULL, "message names the logit: %s", llm_last_error());
    x[2] = INFINITY;
    CHECK(llm_sampler_sample(s, x, NULL, 0, &id, NULL) == LLM_ERR_ARG, "+inf logit");
    for (int i = 0; i < 4; i++) x[i] = -INFINITY;
    CHECK(llm_sampler_sample(s, x, NULL, 0, &id, NULL) == LLM_ERR_ARG, "all -inf");
    x[3] = 0;
    CHECK(llm_sampler_sample(s, x, NULL, 0, &id, NULL) == LLM_OK && id == 3, "one finite logit");
    CHECK(llm_sampler_sample(s, x, bad_prev, 2, &id, NULL) == LLM_ERR_ARG, "previous id out of range");
    CHECK(llm_sampler_sample(s, x, NULL, 3, &id, NULL) == LLM_ERR_ARG, "n_prev without prev");
    CHECK(llm_sampler_sample(s, NULL, NULL, 0, &id, NULL) == LLM_ERR_ARG, "NULL logits");
    llm_sampler_free(s);
    llm_sampler_free(NULL);
    /* V = 1: every path returns 0 */
    llm_sampler *one = make(1, 1.0f, 0, 0.5f, 0, 3);
    float y = 0.3f;
    CHECK(one && llm_sampler_sample(one, &y, NULL, 0, &id, NULL) == LLM_OK && id == 0, "V = 1");
    llm_sampler_free(one);
    /* a nearly uniform distribution with a tiny top_p: run.c's pre-filter keeps nothing */
    float u[64];
    for (int i = 0; i < 64; i++) u[i] = 0;
    llm_sampler *tiny = make(64, 1.0f, 0, 0.001f, 0, 3);
    CHECK(tiny && llm_sampler_sample(tiny, u, NULL, 0, &id, NULL) == LLM_OK && id >= 0 && id < 64, "tiny top_p");
    llm_sampler_free(tiny);
}

static void test_stop(void) {
    const char *stops[3] = {"\n\n", "The End", ""};
    const char *text = "Once upon a time.\n\nThe End";
    size_t len = strlen(text), pos = 0;
    /* streaming by single bytes: the first stop is found when its last byte arrives */
    int found = -1;
    size_t at = 0;
    for (size_t n = 1; n <= len && found < 0; n++) { found = llm_stop_find(text, n, n - 1, stops, 3, &pos); at = n; }
    CHECK(found == 0 && pos == 17 && at == 19, "\\n\\n found at %lu when %lu bytes are in (%d)",
          (unsigned long)pos, (unsigned long)at, found);
    /* a stop string spanning the previous text and the new bytes */
    CHECK(llm_stop_find(text, len, len - 3, stops, 3, &pos) == 1 && pos == len - 7, "spanning stop");
    /* bytes before `from - len(stop) + 1` are not searched again */
    CHECK(llm_stop_find(text, len, len, stops, 3, &pos) == -1 && pos == len, "nothing new");
    /* the earliest occurrence wins, then the first listed */
    const char *s2[2] = {"b", "ab"};
    CHECK(llm_stop_find("xab", 3, 0, s2, 2, &pos) == 1 && pos == 1, "earliest occurrence");
    const char *s3[2] = {"ab", "a"};
    CHECK(llm_stop_find("xab", 3, 0, s3, 2, &pos) == 0 && pos == 1, "tie: first listed");
    CHECK(llm_stop_find("abc", 3, 0, NULL, 0, &pos) == -1, "no stops");
    /* partial: hold back what may begin a stop string */
    CHECK(llm_stop_partial("Hello\n", 6, stops, 3) == 1, "'\\n' may begin \\n\\n");
    CHECK(llm_stop_partial("so The E", 8, stops, 3) == 5, "'The E' may begin 'The End'");
    CHECK(llm_stop_partial("so The X", 8, stops, 3) == 0, "no partial stop");
    CHECK(llm_stop_partial("Th", 2, stops, 3) == 2, "the whole text is a prefix");
}

int main(void) {
    test_matches_runc();
    test_greedy();
    test_reproducible();
    test_support_and_logprob();
    test_frequencies();
    test_repetition_penalty();
    test_errors();
    test_stop();
    return TEST_END("test_sampler");
}
