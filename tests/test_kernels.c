/* Every op of the CPU backend: forward against its scalar reference, and backward
 * against central finite differences of the reference forward (the loss summed in
 * double), on odd shapes: T not a multiple of any SIMD width, C not a multiple of 8.
 * The threaded backend runs with 3 threads so that uneven splits are exercised. */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

/* Random buffers from tests/test.h's generator (short names: they fill the lines below). */
static float *rnd(size_t n, float scale) { return test_rand_floats(n, scale); }
static float *fdup(const float *x, size_t n) { return test_dup_floats(x, n); }
/* The CPU backend runs the SIMD kernels (tested in depth against double-precision math
 * in test_simd_kernels.c); they sum in another order than the references, so the two
 * agree to float rounding of sums of O(100) terms, not bit for bit. */
#define FAST_TOL 5e-5

static void *cpu_st;
static const llm_backend *be;

/* ---- layernorm ------------------------------------------------------------------- */
typedef struct { int N, C; float *x, *w, *b, *g, *out, *mean, *rstd; } ln_ctx;
static double ln_loss(void *p) {
    ln_ctx *c = (ln_ctx *)p;
    llm__layernorm_fwd_ref(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C);
    return test_dot(c->out, c->g, (size_t)c->N * c->C);
}
static void test_layernorm(int N, int C) {
    size_t n = (size_t)N * C;
    ln_ctx c = {N, C, rnd(n, 2), rnd(C, 1), rnd(C, 1), rnd(n, 1), rnd(n, 0), rnd(N, 0), rnd(N, 0)};
    float *o2 = rnd(n, 0), *m2 = rnd(N, 0), *r2 = rnd(N, 0);
    ln_loss(&c);
    be->layernorm_fwd(cpu_st, o2, m2, r2, c.x, c.w, c.b, N, C);
    CHECK(test_max_rel_err(o2, c.out, n, 1e-2) < FAST_TOL, "layernorm fwd N=%d C=%d: %g", N, C, test_max_rel_err(o2, c.out, n, 1e-2));
    /* backward: start from nonzero gradients to check accumulation */
    float *dx = rnd(n, 1), *dw = rnd(C, 1), *db = rnd(C, 1);
    float *dx0 = fdup(dx, n), *dw0 = fdup(dw, C), *db0 = fdup(db, C);
    float *dxr = fdup(dx, n), *dwr = fdup(dw, C), *dbr = fdup(db, C);
    llm__layernorm_bwd_ref(dxr, dwr, dbr, c.g, c.x, c.w, c.mean, c.rstd, N, C);
    be->layernorm_bwd(cpu_st, dx, dw, db, c.g, c.x, c.w, c.mean, c.rstd, N, C);
    CHECK(test_max_rel_err(dx, dxr, n, 1e-3) < 1e-4 && test_max_rel_err(dw, dwr, C, 1e-3) < 1e-4 &&
          test_max_rel_err(db, dbr, C, 1e-3) < 1e-4, "layernorm bwd cpu vs ref N=%d C=%d", N, C);
    for (size_t i = 0; i < n; i++) dxr[i] -= dx0[i];
    for (int i = 0; i < C; i++) { dwr[i] -= dw0[i]; dbr[i] -= db0[i]; }
    test_fd_check("layernorm dx", ln_loss, &c, c.x, n, dxr, 40);
    test_fd_check("layernorm dw", ln_loss, &c, c.w, C, dwr, 20);
    test_fd_check("layernorm db", ln_loss, &c, c.b, C, dbr, 20);
    free(c.x); free(c.w); free(c.b); free(c.g); free(c.out); free(c.mean); free(c.rstd);
    free(o2); free(m2); free(r2); free(dx); free(dw); free(db); free(dx0); free(dw0); free(db0);
    free(dxr); free(dwr); free(dbr);
}

/* ---- matmul ---------------------------------------------------------------------- */
typedef struct { int N, C, OC; float *x, *w, *b, *g, *out; } mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = (mm_ctx *)p;
    llm__matmul_fwd_ref(c->out, c->x, c->w, c->b, c->N, c->C, c->OC);
    return test_dot(c->out, c->g, (size_t)c->N * c->OC);
}
static void test_matmul(int N, int C, int OC, int with_bias) {
    size_t nx = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    mm_ctx c = {N, C, OC, rnd(nx, 1), rnd(nw, 1), with_bias ? rnd(OC, 1) : NULL, rnd(no, 1), rnd(no, 0)};
    float *o2 = rnd(no, 0);
    mm_loss(&c);
    be->matmul_fwd(cpu_st, o2, c.x, c.w, c.b, N, C, OC);
    CHECK(test_max_rel_err(o2, c.out, no, 1e-2) < 1e-4, "matmul fwd N=%d C=%d OC=%d bias=%d", N, C, OC, with_bias);
    float *dx = rnd(nx, 1), *dw = rnd(nw, 1), *db = rnd(OC, 1);
    float *dxr = fdup(dx, nx), *dwr = fdup(dw, nw), *dbr = fdup(db, OC);
    float *dx0 = fdup(dx, nx), *dw0 = fdup(dw, nw), *db0 = fdup(db, OC);
    llm__matmul_bwd_ref(dxr, dwr, with_bias ? dbr : NULL, c.g, c.x, c.w, N, C, OC);
    be->matmul_bwd(cpu_st, dx, dw, with_bias ? db : NULL, c.g, c.x, c.w, N, C, OC);
    CHECK(test_max_rel_err(dx, dxr, nx, 1e-2) < 1e-4 && test_max_rel_err(dw, dwr, nw, 1e-2) < 1e-4 &&
          test_max_rel_err(db, dbr, OC, 1e-2) < 1e-4, "matmul bwd cpu vs ref N=%d C=%d OC=%d", N, C, OC);
    for (size_t i = 0; i < nx; i++) dxr[i] -= dx0[i];
    for (size_t i = 0; i < nw; i++) dwr[i] -= dw0[i];
    for (int i = 0; i < OC; i++) dbr[i] -= db0[i];
    test_fd_check("matmul dx", mm_loss, &c, c.x, nx, dxr, 30);
    test_fd_check("matmul dw", mm_loss, &c, c.w, nw, dwr, 30);
    if (with_bias) test_fd_check("matmul db", mm_loss, &c, c.b, OC, dbr, 10);
    free(c.x); free(c.w); free(c.b); free(c.g); free(c.out); free(o2);
    free(dx); free(dw); free(db); free(dxr); free(dwr); free(dbr); free(dx0); free(dw0); free(db0);
}

/* ---- attention ------------------------------------------------------------------- */
typedef struct { int B, T, C, NH, NKV; float *qkv, *g, *out, *lse; } at_ctx;
static double at_loss(void *p) {
    at_ctx *c = (at_ctx *)p;
    llm__attention_fwd_ref(c->out, c->lse, c->qkv, c->B, c->T, c->NH, c->NKV, c->C / c->NH);
    return test_dot(c->out, c->g, (size_t)c->B * c->T * c->C);
}
/* Attention written out the naive way, in double, with the full softmax. */
static void naive_attention(float *out, const float *qkv, int B, int T, int C, int NH, int NKV) {
    int HS = C / NH, W = (NH + 2 * NKV) * HS;
    double *s = (double *)malloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t = 0; t < T; t++) {
        int kv = h / (NH / NKV);
        const float *q = qkv + ((size_t)b * T + t) * W + h * HS;
        double mx = -1e30, sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
            const float *k = qkv + ((size_t)b * T + t2) * W + C + kv * HS;
            double d = 0;
            for (int i = 0; i < HS; i++) d += (double)q[i] * k[i];
            s[t2] = d / sqrt((double)HS);
            if (s[t2] > mx) mx = s[t2];
        }
        for (int t2 = 0; t2 <= t; t2++) sum += exp(s[t2] - mx);
        for (int i = 0; i < HS; i++) {
            double acc = 0;
            for (int t2 = 0; t2 <= t; t2++) acc += exp(s[t2] - mx) / sum * qkv[((size_t)b * T + t2) * W + C + NKV * HS + kv * HS + i];
            out[((size_t)b * T + t) * C + h * HS + i] = (float)acc;
        }
    }
    free(s);
}
static void test_attention(int B, int T, int C, int NH, int NKV) {
    int HS = C / NH;
    size_t nq = (size_t)B * T * (NH + 2 * NKV) * HS, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    at_ctx c = {B, T, C, NH, NKV, rnd(nq, 1.5f), rnd(no, 1), rnd(no, 0), rnd(nl, 0)};
    float *o2 = rnd(no, 0), *l2 = rnd(nl, 0), *on = rnd(no, 0);
    at_loss(&c);
    naive_attention(on, c.qkv, B, T, C, NH, NKV);
    CHECK(test_max_rel_err(c.out, on, no, 1e-3) < 1e-4, "attention ref vs naive softmax B=%d T=%d C=%d NH=%d NKV=%d", B, T, C, NH, NKV);
    be->attention_fwd(cpu_st, o2, l2, c.qkv, B, T, NH, NKV, HS);
    CHECK(test_max_rel_err(o2, c.out, no, 1e-2) < FAST_TOL && test_max_rel_err(l2, c.lse, nl, 1e-2) < FAST_TOL,
          "attention fwd cpu vs ref B=%d T=%d C=%d NH=%d NKV=%d", B, T, C, NH, NKV);
    float *d = rnd(nq, 1), *d0 = fdup(d, nq), *dr = fdup(d, nq);
    llm__attention_bwd_ref(dr, c.g, c.qkv, c.out, c.lse, B, T, NH, NKV, HS);
    be->attention_bwd(cpu_st, d, c.g, c.qkv, c.out, c.lse, B, T, NH, NKV, HS);
    CHECK(test_max_rel_err(d, dr, nq, 1e-3) < 1e-4, "attention bwd cpu vs ref NKV=%d", NKV);
    for (size_t i = 0; i < nq; i++) dr[i] -= d0[i];
    test_fd_check("attention dqkv", at_loss, &c, c.qkv, nq, dr, 60);
    free(c.qkv); free(c.g); free(c.out); free(c.lse); free(o2); free(l2); free(on); free(d); free(d0); free(dr);
}

/* ---- gelu, residual, encoder ------------------------------------------------------- */
typedef struct { size_t n; float *x, *g, *out; } ew_ctx;
static double gelu_loss(void *p) { ew_ctx *c = (ew_ctx *)p; llm__gelu_fwd_ref(c->out, c->x, c->n); return test_dot(c->out, c->g, c->n); }
static void test_gelu(size_t n) {
    ew_ctx c = {n, rnd(n, 4), rnd(n, 1), rnd(n, 0)};
    float *o2 = rnd(n, 0);
    gelu_loss(&c);
    be->gelu_fwd(cpu_st, o2, c.x, n);
    CHECK(test_max_rel_err(o2, c.out, n, 1e-1) < 1e-5, "gelu fwd: %g", test_max_rel_err(o2, c.out, n, 1e-1));
    /* against the formula in double: 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) */
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double x = c.x[i], y = 0.5 * x * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
        double e = fabs(y - c.out[i]) / (fabs(y) > 1e-1 ? fabs(y) : 1e-1);  /* 1+tanh cancels for x << 0 */
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "gelu fwd vs double formula: %g", worst);
    float *d = rnd(n, 1), *d0 = fdup(d, n), *dr = fdup(d, n);
    llm__gelu_bwd_ref(dr, c.x, c.g, n);
    be->gelu_bwd(cpu_st, d, c.x, c.g, n);
    CHECK(test_max_rel_err(d, dr, n, 1e-1) < 1e-5, "gelu bwd cpu vs ref: %g", test_max_rel_err(d, dr, n, 1e-1));
    for (size_t i = 0; i < n; i++) dr[i] -= d0[i];
    test_fd_check("gelu dx", gelu_loss, &c, c.x, n, dr, 50);
    free(c.x); free(c.g); free(c.out); free(o2); free(d); free(d0); free(dr);
}
static void test_residual(size_t n) {
    float *a = rnd(n, 1), *b = rnd(n, 1), *o = rnd(n, 0), *g = rnd(n, 1);
    float *da = rnd(n, 1), *db = rnd(n, 1), *da0 = fdup(da, n), *db0 = fdup(db, n);
    be->residual_fwd(cpu_st, o, a, b, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= o[i] == a[i] + b[i];
    CHECK(ok, "residual fwd");
    be->residual_bwd(cpu_st, da, db, g, n);
    ok = 1;
    for (size_t i = 0; i < n; i++) ok &= da[i] == da0[i] + g[i] && db[i] == db0[i] + g[i];
    CHECK(ok, "residual bwd accumulates dout into both inputs");
    free(a); free(b); free(o); free(g); free(da); free(db); free(da0); free(db0);
}
typedef struct { int B, T, C, V; int *tok; float *wte, *wpe, *g, *out; } en_ctx;
static double en_loss(void *p) {
    en_ctx *c = (en_ctx *)p;
    llm__encoder_fwd_ref(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C);
    return test_dot(c->out, c->g, (size_t)c->B * c->T * c->C);
}
static void test_encoder(int B, int T, int C, int V) {
    size_t n = (size_t)B * T * C;
    en_ctx c = {B, T, C, V, (int *)malloc((size_t)B * T * sizeof(int)), rnd((size_t)V * C, 1), rnd((size_t)T * C, 1), rnd(n, 1), rnd(n, 0)};
    for (int i = 0; i < B * T; i++) c.tok[i] = (int)(test_rand_u64() % (uint64_t)(V / 2));  /* repeats on purpose */
    float *o2 = rnd(n, 0);
    en_loss(&c);
    be->encoder_fwd(cpu_st, o2, c.tok, c.wte, c.wpe, B, T, C);
    CHECK(test_max_rel_err(o2, c.out, n, 1e-3) == 0, "encoder fwd");
    float *dwte = rnd((size_t)V * C, 1), *dwpe = rnd((size_t)T * C, 1);
    float *dwter = fdup(dwte, (size_t)V * C), *dwper = fdup(dwpe, (size_t)T * C), *w0 = fdup(dwte, (size_t)V * C), *p0 = fdup(dwpe, (size_t)T * C);
    llm__encoder_bwd_ref(dwter, dwper, c.g, c.tok, B, T, C);
    be->encoder_bwd(cpu_st, dwte, dwpe, c.g, c.tok, B, T, C);
    CHECK(test_max_rel_err(dwte, dwter, (size_t)V * C, 1e-3) < 1e-6 && test_max_rel_err(dwpe, dwper, (size_t)T * C, 1e-3) < 1e-6, "encoder bwd cpu vs ref");
    for (size_t i = 0; i < (size_t)V * C; i++) dwter[i] -= w0[i];
    for (size_t i = 0; i < (size_t)T * C; i++) dwper[i] -= p0[i];
    test_fd_check("encoder dwte", en_loss, &c, c.wte, (size_t)V * C, dwter, 40);
    test_fd_check("encoder dwpe", en_loss, &c, c.wpe, (size_t)T * C, dwper, 40);
    free(c.tok); free(c.wte); free(c.wpe); free(c.g); free(c.out); free(o2); free(dwte); free(dwpe); free(dwter); free(dwper); free(w0); free(p0);
}

/* ---- cross-entropy ----------------------------------------------------------------- */
typedef struct { int N, V; float *x, *loss, *lse; int *y; } ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = (ce_ctx *)p;
    llm__crossentropy_fwd_ref(c->loss, c->lse, c->x, c->y, c->N, c->V);
    double s = 0;
    for (int i = 0; i < c->N; i++) s += c->loss[i];
    return s * 0.37;
}
static void test_crossentropy(int N, int V) {
    ce_ctx c = {N, V, rnd((size_t)N * V, 5), rnd(N, 0), rnd(N, 0), (int *)malloc((size_t)N * sizeof(int))};
    for (int i = 0; i < N; i++) c.y[i] = i % 5 == 3 ? -100 : (int)(test_rand_u64() % (uint64_t)V);
    float *l2 = rnd(N, 0), *s2 = rnd(N, 0);
    ce_loss(&c);
    be->crossentropy_fwd(cpu_st, l2, s2, c.x, c.y, N, V);
    CHECK(test_max_rel_err(l2, c.loss, N, 1e-3) < 1e-5, "crossentropy fwd cpu vs ref");
    double worst = 0;   /* against -log softmax in double */
    for (int n = 0; n < N; n++) {
        double mx = -1e30, s = 0;
        for (int i = 0; i < V; i++) if (c.x[n * V + i] > mx) mx = c.x[n * V + i];
        for (int i = 0; i < V; i++) s += exp(c.x[n * V + i] - mx);
        double want = c.y[n] < 0 ? 0 : -(c.x[n * V + c.y[n]] - mx - log(s));
        double e = fabs(want - c.loss[n]) / (want > 1 ? want : 1);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "crossentropy vs double: %g", worst);
    float *dl = fdup(c.x, (size_t)N * V), *dl2 = fdup(c.x, (size_t)N * V);
    llm__crossentropy_bwd_ref(dl, c.lse, c.y, 0.37f, N, V);
    be->crossentropy_bwd(cpu_st, dl2, c.lse, c.y, 0.37f, N, V);
    CHECK(test_max_rel_err(dl2, dl, (size_t)N * V, 1e-4) < 1e-6, "crossentropy bwd cpu vs ref");
    test_fd_check("crossentropy dlogits", ce_loss, &c, c.x, (size_t)N * V, dl, 60);
    free(c.x); free(c.loss); free(c.lse); free(c.y); free(l2); free(s2); free(dl); free(dl2);
}

/* ---- optimizer pieces ---------------------------------------------------------------- */
static void test_adamw(size_t n) {
    float *p = rnd(n, 1), *g = rnd(n, 1), *m = rnd(n, 0.1f), *v = rnd(n, 0);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]) + 0.01f * (float)(i % 3);
    float *p2 = fdup(p, n), *m2 = fdup(m, n), *v2 = fdup(v, n), *pd = fdup(p, n);
    be->adamw(cpu_st, p2, g, m2, v2, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3);
    double worst = 0;   /* the update in double, straight from the paper */
    for (size_t i = 0; i < n; i++) {
        double gg = g[i] * 0.5, mm = 0.9 * m[i] + 0.1 * gg, vv = 0.95 * v[i] + 0.05 * gg * gg;
        double want = pd[i] - 1e-2 * 0.1 * pd[i] - 1e-2 * (mm / (1 - pow(0.9, 3))) / (sqrt(vv / (1 - pow(0.95, 3))) + 1e-8);
        double e = fabs(want - p2[i]) / (fabs(want) > 1e-2 ? fabs(want) : 1e-2);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "adamw vs double formula: %g", worst);
    float *g2 = rnd(n, 3);
    double s = be->sumsq(cpu_st, g2, n), want = 0;
    for (size_t i = 0; i < n; i++) want += (double)g2[i] * g2[i];
    CHECK(fabs(s - want) <= 1e-9 * want, "sumsq %g vs %g", s, want);
    free(p); free(g); free(m); free(v); free(p2); free(m2); free(v2); free(pd); free(g2);
}

static void test_lr_schedule(void) {
    llm_lr_schedule s = {LLM_LR_COSINE, 1e-3f, 1e-4f, 10, 110};
    CHECK(fabsf(llm_lr_at(&s, 0) - 1e-4f) < 1e-9f, "warmup step 0 = lr/warmup");
    CHECK(fabsf(llm_lr_at(&s, 9) - 1e-3f) < 1e-9f, "warmup reaches lr");
    CHECK(fabsf(llm_lr_at(&s, 60) - 5.5e-4f) < 1e-8f, "cosine midpoint is (lr+min)/2: %g", llm_lr_at(&s, 60));
    CHECK(fabsf(llm_lr_at(&s, 110) - 1e-4f) < 1e-9f && fabsf(llm_lr_at(&s, 500) - 1e-4f) < 1e-9f, "floor after total");
    s.kind = LLM_LR_CONST;
    CHECK(llm_lr_at(&s, 60) == 1e-3f, "const schedule");
}

static void pool_hit(void *a, int ith, int nth) { (void)nth; ((int *)a)[ith]++; }
static void test_pool(void) {
    /* every slice runs exactly once per llm_pool_run, for any thread count */
    for (int n = 1; n <= 5; n++) {
        int hits[8] = {0};
        llm_pool *p = llm_pool_create(n);
        CHECK(p && llm_pool_size(p) == n, "pool of %d", n);
        if (!p) continue;
        for (int rep = 0; rep < 200; rep++) llm_pool_run(p, pool_hit, hits);
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= hits[i] == (i < n ? 200 : 0);
        CHECK(ok, "pool of %d ran every slice 200 times", n);
        llm_pool_free(p);
    }
}

int main(void) {
    test_seed(1234);
    be = llm_cpu_backend();
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 3;
    CHECK(be->create(&cpu_st, &opt) == LLM_OK, "cpu backend with 3 threads");
    test_layernorm(7, 13);
    test_layernorm(33, 67);
    test_matmul(5, 7, 11, 1);
    test_matmul(37, 19, 23, 0);
    test_matmul(17, 67, 45, 1);
    test_attention(2, 7, 12, 3, 3);
    test_attention(1, 19, 20, 4, 4);
    test_attention(3, 33, 24, 2, 2);
    test_attention(2, 13, 40, 4, 2);   /* grouped-query: 2 query heads per kv head */
    test_attention(1, 17, 24, 6, 1);   /* multi-query */
    test_gelu(1001);
    test_residual(1003);
    test_encoder(2, 9, 13, 31);
    test_crossentropy(11, 37);
    test_crossentropy(9, 503);
    test_adamw(1027);
    test_lr_schedule();
    test_pool();
    be->destroy(cpu_st);
    return TEST_END("test_kernels");
}
