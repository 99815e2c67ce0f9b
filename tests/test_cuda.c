/* tests/test_cuda.c: the CUDA backend (llm_cuda.cu) against the CPU backend, op by op,
 * forward and backward, on the same random inputs and odd shapes (not multiples of 32,
 * tiles that end mid-warp), then a whole GPT-2 forward / backward / AdamW step.
 *
 * Built by `make cuda` with -DLLM_CUDA=1 and linked with llm_cuda.o; the plain build
 * (`make test`, no CUDA) only prints SKIP. Without a GPU it checks what the host side
 * can: the table is complete, create fails cleanly with a message, and so does
 * llm_model_create with the CUDA backend; the GPU comparisons print SKIP.
 *
 * Tolerances. fp32 everywhere, relative error 1e-4 with an absolute floor of 0.1 x the
 * tensor's RMS (test_max_rel_err): the two backends add the same terms in different
 * orders (cuBLAS tiles, warp trees, online softmax), which moves results by a few ulp x
 * sqrt(terms), ~1e-6 relative, except where a value is a near-cancellation of much
 * larger terms, hence the floor. Looser, and why:
 *   - sumsq: 1e-10 (both sum squares in double, only the order differs);
 *   - the whole-model gradients: 1e-3, the rounding of ~10 ops per layer compounds
 *     through the backward chain;
 *   - parameters after AdamW steps: at step 1 Adam moves each weight by ~lr*sign(g),
 *     whatever |g| is, so a gradient that is rounding noise around 0 may move the
 *     weight either way: compared absolutely, within 2*lr per step. */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

#ifdef LLM_CUDA
int llm_cuda_device_count(void);  /* llm_cuda.cu */

/* ---- host helpers ------------------------------------------------------------------ */
static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

#define MAX_HOST 256
static void *host_ptrs[MAX_HOST];
static int n_host;
static float *hnew(size_t n) {   /* zeroed host floats, freed by host_free_all */
    float *p = (float *)calloc(n ? n : 1, sizeof(float));
    if (!p) { fprintf(stderr, "test_cuda: out of host memory\n"); exit(1); }
    if (n_host < MAX_HOST) host_ptrs[n_host++] = p;
    return p;
}
static float *hrand(size_t n, float scale) {
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
    return p;
}
static void host_free_all(void) {
    for (int i = 0; i < n_host; i++) free(host_ptrs[i]);
    n_host = 0;
}

/* A backend with its state and the device buffers of the current case. */
typedef struct {
    const llm_backend *be;
    void *st;
    void *bufs[64];
    int nbufs;
} bk;

/* Device copy of n floats of h (h NULL: zeroed). */
static float *put(bk *k, const float *h, size_t n) {
    float *d = (float *)k->be->alloc(k->st, n * sizeof(float) + 4);
    CHECK(d != NULL, "%s alloc %zu floats: %s", k->be->name, n, llm_last_error());
    if (!d) { fprintf(stderr, "test_cuda: cannot continue\n"); exit(1); }
    if (k->nbufs < 64) k->bufs[k->nbufs++] = d;
    if (h) CHECK(k->be->upload(k->st, d, h, n * sizeof(float)) == LLM_OK, "%s upload: %s", k->be->name, llm_last_error());
    else k->be->zero(k->st, d, n * sizeof(float));
    return d;
}
static int *put_int(bk *k, const int *h, size_t n) {
    int *d = (int *)k->be->alloc(k->st, n * sizeof(int) + 4);
    CHECK(d != NULL, "%s alloc %zu ints: %s", k->be->name, n, llm_last_error());
    if (!d) { fprintf(stderr, "test_cuda: cannot continue\n"); exit(1); }
    if (k->nbufs < 64) k->bufs[k->nbufs++] = d;
    CHECK(k->be->upload(k->st, d, h, n * sizeof(int)) == LLM_OK, "%s upload: %s", k->be->name, llm_last_error());
    return d;
}
/* Host copy of n floats of device buffer d. */
static float *get(bk *k, const float *d, size_t n) {
    float *h = hnew(n);
    llm_status s = k->be->download(k->st, h, d, n * sizeof(float));
    CHECK(s == LLM_OK, "%s download: %s", k->be->name, llm_last_error());
    return h;
}
static void release_all(bk *k) {
    for (int i = 0; i < k->nbufs; i++) k->be->release(k->st, k->bufs[i]);
    k->nbufs = 0;
}

/* got vs want: relative error with a floor of 0.1 x RMS(want); prints the number. */
static void cmp(const char *what, const float *got, const float *want, size_t n, double tol) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double floor_ = n ? 0.1 * sqrt(ss / (double)n) : 0.0;
    if (floor_ < 1e-30) floor_ = 1e-30;
    double e = test_max_rel_err(got, want, n, floor_);
    CHECK(e <= tol, "%s: max rel err %.3g > %.3g (n=%zu)", what, e, tol, n);
    printf("  %-44s n=%-8zu max rel err %.2e\n", what, n, e);
}
static void cmp_bits(const char *what, const float *a, const float *b, size_t n) {
    CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s: two runs differ", what);
}

/* ---- op by op ------------------------------------------------------------------------ */
#define TOL 1e-4

static void t_encoder(bk *ks, int B, int T, int C, int V) {
    size_t BT = (size_t)B * T, n = BT * C;
    int *tok = (int *)hnew(BT);
    for (size_t i = 0; i < BT; i++) tok[i] = (int)(rng_state % (unsigned)V), frand();
    tok[0] = tok[BT - 1] = tok[BT / 2];  /* make sure some token repeats */
    float *wte = hrand((size_t)V * C, 1), *wpe = hrand((size_t)T * C, 1), *dout = hrand(n, 1);
    float *dwte0 = hrand((size_t)V * C, 1), *dwpe0 = hrand((size_t)T * C, 1);
    float *out[2], *dwte[2], *dwpe[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        int *dtok = put_int(K, tok, BT);
        float *o = put(K, NULL, n), *we = put(K, wte, (size_t)V * C), *pe = put(K, wpe, (size_t)T * C);
        float *d = put(K, dout, n), *gwe = put(K, dwte0, (size_t)V * C), *gpe = put(K, dwpe0, (size_t)T * C);
        K->be->encoder_fwd(K->st, o, dtok, we, pe, B, T, C);
        K->be->encoder_bwd(K->st, gwe, gpe, d, dtok, B, T, C);
        out[k] = get(K, o, n); dwte[k] = get(K, gwe, (size_t)V * C); dwpe[k] = get(K, gpe, (size_t)T * C);
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "encoder B=%d T=%d C=%d V=%d: out", B, T, C, V);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  dwte (atomics)", dwte[1], dwte[0], (size_t)V * C, TOL);
    cmp("  dwpe", dwpe[1], dwpe[0], (size_t)T * C, TOL);
}

static void t_layernorm(bk *ks, int N, int C) {
    size_t n = (size_t)N * C;
    float *x = hrand(n, 2), *w = hrand(C, 1), *b = hrand(C, 1), *dout = hrand(n, 1);
    float *dx0 = hrand(n, 1), *dw0 = hrand(C, 1), *db0 = hrand(C, 1);
    for (size_t i = 0; i < n; i++) x[i] += 0.5f;  /* a non-zero mean */
    float *out[2], *mean[2], *rstd[2], *dx[2], *dw[2], *db[2], *dw_again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *W = put(K, w, C), *Bi = put(K, b, C), *O = put(K, NULL, n);
        float *M = put(K, NULL, N), *R = put(K, NULL, N), *D = put(K, dout, n);
        float *DX = put(K, dx0, n), *DW = put(K, dw0, C), *DB = put(K, db0, C);
        K->be->layernorm_fwd(K->st, O, M, R, X, W, Bi, N, C);
        K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
        out[k] = get(K, O, n); mean[k] = get(K, M, N); rstd[k] = get(K, R, N);
        dx[k] = get(K, DX, n); dw[k] = get(K, DW, C); db[k] = get(K, DB, C);
        if (k == 1) {  /* determinism: the column sums again from the same start */
            K->be->upload(K->st, DW, dw0, C * sizeof(float));
            K->be->layernorm_bwd(K->st, DX, DW, DB, D, X, W, M, R, N, C);
            dw_again = get(K, DW, C);
        }
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "layernorm N=%d C=%d: out", N, C);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  mean", mean[1], mean[0], N, TOL);
    cmp("  rstd", rstd[1], rstd[0], N, TOL);
    cmp("  dinp", dx[1], dx[0], n, TOL);
    cmp("  dw", dw[1], dw[0], C, TOL);
    cmp("  db", db[1], db[0], C, TOL);
    cmp_bits("layernorm dw", dw_again, dw[1], C);
}

static void t_matmul(bk *ks, int N, int C, int OC, int with_bias) {
    size_t ni = (size_t)N * C, no = (size_t)N * OC, nw = (size_t)OC * C;
    float *x = hrand(ni, 1), *w = hrand(nw, 1), *bias = hrand(OC, 1), *dout = hrand(no, 1);
    float *dx0 = hrand(ni, 1), *dw0 = hrand(nw, 1), *db0 = hrand(OC, 1);
    float *out[2], *dx[2], *dw[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, ni), *W = put(K, w, nw), *Bi = put(K, bias, OC), *O = put(K, NULL, no);
        float *D = put(K, dout, no), *DX = put(K, dx0, ni), *DW = put(K, dw0, nw), *DB = put(K, db0, OC);
        K->be->matmul_fwd(K->st, O, X, W, with_bias ? Bi : NULL, N, C, OC);
        K->be->matmul_bwd(K->st, DX, DW, with_bias ? DB : NULL, D, X, W, N, C, OC);
        out[k] = get(K, O, no); dx[k] = get(K, DX, ni); dw[k] = get(K, DW, nw); db[k] = get(K, DB, OC);
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "matmul N=%d C=%d OC=%d%s: out", N, C, OC, with_bias ? " +bias" : "");
    cmp(name, out[1], out[0], no, TOL);
    cmp("  dinp", dx[1], dx[0], ni, TOL);
    cmp("  dw", dw[1], dw[0], nw, TOL);
    cmp("  dbias", db[1], db[0], OC, TOL);  /* without bias: both must leave it as it was */
}

static void t_attention(bk *ks, int B, int T, int C, int NH) {
    size_t n3 = (size_t)B * T * 3 * C, n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = hrand(n3, 1), *dout = hrand(n, 1), *dqkv0 = hrand(n3, 1);
    float *out[2], *lse[2], *dqkv[2], *again = NULL;
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *Q = put(K, qkv, n3), *O = put(K, NULL, n), *L = put(K, NULL, nl);
        float *D = put(K, dout, n), *DQ = put(K, dqkv0, n3);
        K->be->attention_fwd(K->st, O, L, Q, B, T, C, NH);
        K->be->attention_bwd(K->st, DQ, D, Q, O, L, B, T, C, NH);
        out[k] = get(K, O, n); lse[k] = get(K, L, nl); dqkv[k] = get(K, DQ, n3);
        if (k == 1) {
            K->be->upload(K->st, DQ, dqkv0, n3 * sizeof(float));
            K->be->attention_bwd(K->st, DQ, D, Q, O, L, B, T, C, NH);
            again = get(K, DQ, n3);
        }
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "attention B=%d T=%d C=%d NH=%d (HS %d): out", B, T, C, NH, C / NH);
    cmp(name, out[1], out[0], n, TOL);
    cmp("  lse", lse[1], lse[0], nl, TOL);
    cmp("  dqkv", dqkv[1], dqkv[0], n3, TOL);
    cmp_bits("attention dqkv", again, dqkv[1], n3);
}

static void t_elementwise(bk *ks, size_t n) {
    float *x = hrand(n, 4), *a = hrand(n, 1), *b = hrand(n, 1), *dout = hrand(n, 1);
    float *dx0 = hrand(n, 1), *da0 = hrand(n, 1), *db0 = hrand(n, 1);
    float *g[2], *dg[2], *r[2], *da[2], *db[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *G = put(K, NULL, n), *D = put(K, dout, n), *DX = put(K, dx0, n);
        float *A = put(K, a, n), *Bb = put(K, b, n), *R = put(K, NULL, n);
        float *DA = put(K, da0, n), *DB = put(K, db0, n);
        K->be->gelu_fwd(K->st, G, X, n);
        K->be->gelu_bwd(K->st, DX, X, D, n);
        K->be->residual_fwd(K->st, R, A, Bb, n);
        K->be->residual_bwd(K->st, DA, DB, D, n);
        g[k] = get(K, G, n); dg[k] = get(K, DX, n); r[k] = get(K, R, n);
        da[k] = get(K, DA, n); db[k] = get(K, DB, n);
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "gelu n=%zu: out", n);
    cmp(name, g[1], g[0], n, TOL);
    cmp("  dinp", dg[1], dg[0], n, TOL);
    cmp("residual: out", r[1], r[0], n, TOL);
    cmp("  da", da[1], da[0], n, TOL);
    cmp("  db", db[1], db[0], n, TOL);
}

static void t_crossentropy(bk *ks, int N, int V) {
    size_t n = (size_t)N * V;
    float *logits = hrand(n, 5);
    int *tgt = (int *)hnew(N);
    for (int i = 0; i < N; i++) tgt[i] = (i % 5 == 3) ? -1 : (int)((unsigned)(i * 7919) % (unsigned)V);
    float *loss[2], *lse[2], *dl[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, logits, n), *Lo = put(K, NULL, N), *Ls = put(K, NULL, N);
        int *Tg = put_int(K, tgt, N);
        K->be->crossentropy_fwd(K->st, Lo, Ls, X, Tg, N, V);
        loss[k] = get(K, Lo, N); lse[k] = get(K, Ls, N);
        K->be->crossentropy_bwd(K->st, X, Ls, Tg, 0.37f, N, V);
        dl[k] = get(K, X, n);
        release_all(K);
    }
    char name[96];
    snprintf(name, sizeof name, "crossentropy N=%d V=%d: losses", N, V);
    cmp(name, loss[1], loss[0], N, TOL);
    cmp("  lse", lse[1], lse[0], N, TOL);
    cmp("  dlogits", dl[1], dl[0], n, TOL);
    CHECK(loss[1][3] == 0.0f && dl[1][3 * (size_t)V] == 0.0f, "ignored row 3: loss and dlogits 0");
}

static void t_sumsq_adamw(bk *ks, size_t n) {
    float *x = hrand(n, 1), *p0 = hrand(n, 1), *g = hrand(n, 1);
    double s[2];
    float *p[2], *m[2], *v[2];
    for (int k = 0; k < 2; k++) {
        bk *K = &ks[k];
        float *X = put(K, x, n), *P = put(K, p0, n), *G = put(K, g, n), *M = put(K, NULL, n), *Vv = put(K, NULL, n);
        s[k] = K->be->sumsq(K->st, X, n);
        for (int t = 1; t <= 3; t++)   /* the same gradient three times: m, v build up */
            K->be->adamw(K->st, P, G, M, Vv, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        p[k] = get(K, P, n); m[k] = get(K, M, n); v[k] = get(K, Vv, n);
        release_all(K);
    }
    double rel = fabs(s[1] - s[0]) / s[0];
    CHECK(rel <= 1e-10, "sumsq n=%zu: %.17g vs %.17g (rel %.3g)", n, s[1], s[0], rel);
    printf("  %-44s n=%-8zu rel err %.2e\n", "sumsq", n, rel);
    CHECK(ks[1].be->sumsq(ks[1].st, NULL, 0) == 0.0, "sumsq of nothing is 0");
    cmp("adamw (3 steps): param", p[1], p[0], n, TOL);
    cmp("  m", m[1], m[0], n, TOL);
    cmp("  v", v[1], v[0], n, TOL);
}

/* Failures are reported, not crashed on: an impossible allocation, an op the kernels
 * do not support (sticky until the next status-returning call), in a separate state. */
static void t_errors(const llm_backend *cu) {
    void *st = NULL;
    CHECK(cu->create(&st, 0) == LLM_OK, "create: %s", llm_last_error());
    if (!st) return;
    void *p = cu->alloc(st, (size_t)1 << 50);
    CHECK(p == NULL, "a 1 PiB allocation fails");
    CHECK(strstr(llm_last_error(), "cudaMalloc") && strstr(llm_last_error(), "MiB"),
          "the message names the call and the sizes: %s", llm_last_error());
    float one = 1.0f, back = 0.0f;
    float *d = (float *)cu->alloc(st, sizeof(float));
    CHECK(d != NULL, "after an out-of-memory the backend still works: %s", llm_last_error());
    if (d) {
        CHECK(cu->upload(st, d, &one, sizeof one) == LLM_OK && cu->download(st, &back, d, sizeof back) == LLM_OK &&
              back == 1.0f, "round trip");
        /* head size 160 > 128: recorded, and reported by the next download */
        cu->attention_fwd(st, d, d, d, 1, 1, 320, 2);
        llm_status s = cu->download(st, &back, d, sizeof back);
        CHECK(s == LLM_ERR_UNSUPPORTED, "unsupported head size reported (%d)", (int)s);
        CHECK(strstr(llm_last_error(), "head size") != NULL, "message: %s", llm_last_error());
        cu->release(st, d);
    }
    cu->destroy(st);
}

/* ---- the whole model --------------------------------------------------------------- */
static void t_gpt2(const llm_backend *cu) {
    llm_config cfg = llm_config_gpt2();
    cfg.max_seq_len = 48; cfg.vocab_size = 101; cfg.n_layer = 2; cfg.n_head = 3; cfg.n_embd = 48;
    enum { B = 3, T = 37 };
    int tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int)((unsigned)(i * 31 + 7) % (unsigned)cfg.vocab_size);
        tgt[i] = (i % 11 == 5) ? -1 : (int)((unsigned)(i * 17 + 3) % (unsigned)cfg.vocab_size);
    }
    llm_model *m[2] = {NULL, NULL};
    llm_options opt[2];
    memset(opt, 0, sizeof opt);
    opt[0].backend = llm_cpu_backend(); opt[0].n_threads = 2;
    opt[1].backend = cu;
    for (int k = 0; k < 2; k++)
        CHECK(llm_model_create(&m[k], &cfg, &opt[k], 1234) == LLM_OK, "gpt2 create (%s): %s",
              opt[k].backend->name, llm_last_error());
    if (!m[0] || !m[1]) { llm_model_free(m[0]); llm_model_free(m[1]); return; }
    size_t np = llm_model_num_params(m[0]), nl = (size_t)B * T * cfg.vocab_size;
    float *par[2], *grad[2], *logit[2], loss[2], norm[2], loss3[2];
    const float lr = 1e-3f;
    llm_adamw_config ac = llm_adamw_config_default();
    for (int k = 0; k < 2; k++) {
        par[k] = hnew(np); grad[k] = hnew(np); logit[k] = hnew(nl);
        CHECK(llm_model_get_params(m[k], par[k]) == LLM_OK, "get_params");
        CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss[k]) == LLM_OK, "forward: %s", llm_last_error());
        CHECK(llm_model_get_logits(m[k], logit[k]) == LLM_OK, "get_logits: %s", llm_last_error());
        CHECK(llm_model_zero_grad(m[k]) == LLM_OK, "zero_grad");
        CHECK(llm_model_backward(m[k], 1.0f) == LLM_OK, "backward: %s", llm_last_error());
        CHECK(llm_model_get_grads(m[k], grad[k]) == LLM_OK, "get_grads: %s", llm_last_error());
        for (int s = 0; s < 3; s++) {
            if (s > 0) {
                llm_model_forward(m[k], tok, tgt, B, T, NULL);
                llm_model_zero_grad(m[k]);
                llm_model_backward(m[k], 1.0f);
            }
            CHECK(llm_model_step(m[k], &ac, lr, &norm[k]) == LLM_OK, "step: %s", llm_last_error());
        }
        CHECK(llm_model_forward(m[k], tok, tgt, B, T, &loss3[k]) == LLM_OK, "forward after steps");
    }
    cmp("gpt2 initial params (same seed)", par[1], par[0], np, 0.0);
    printf("  gpt2 loss cpu %.7f cuda %.7f; after 3 steps %.7f %.7f\n", loss[0], loss[1], loss3[0], loss3[1]);
    CHECK(fabsf(loss[1] - loss[0]) <= 1e-5f * fabsf(loss[0]), "loss %.8f vs %.8f", loss[1], loss[0]);
    cmp("gpt2 logits", logit[1], logit[0], nl, TOL);
    cmp("gpt2 grads (see tolerances)", grad[1], grad[0], np, 1e-3);
    CHECK(fabsf(norm[1] - norm[0]) <= 1e-4f * norm[0], "last grad norm %.7g vs %.7g", norm[1], norm[0]);
    CHECK(fabsf(loss3[1] - loss3[0]) <= 1e-4f * fabsf(loss3[0]), "loss after 3 steps %.8f vs %.8f", loss3[1], loss3[0]);
    llm_model_get_params(m[0], par[0]);
    llm_model_get_params(m[1], par[1]);
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        double d = fabs((double)par[1][i] - par[0][i]);
        if (!(d <= worst)) worst = d;
    }
    CHECK(worst <= 3 * 2 * lr, "params after 3 steps: max |diff| %.3g > 2 lr per step", worst);
    printf("  %-44s n=%-8zu max abs diff %.2e (bound %.1e)\n", "gpt2 params after 3 steps", np, worst, 6.0 * lr);
    llm_model_free(m[0]);
    llm_model_free(m[1]);
}

/* What can be checked without a GPU. */
static void t_host_side(const llm_backend *cu) {
    int missing = !cu->create + !cu->destroy + !cu->alloc + !cu->release + !cu->upload +
        !cu->download + !cu->zero + !cu->encoder_fwd + !cu->encoder_bwd + !cu->layernorm_fwd +
        !cu->layernorm_bwd + !cu->matmul_fwd + !cu->matmul_bwd + !cu->attention_fwd +
        !cu->attention_bwd + !cu->gelu_fwd + !cu->gelu_bwd + !cu->residual_fwd +
        !cu->residual_bwd + !cu->crossentropy_fwd + !cu->crossentropy_bwd + !cu->sumsq + !cu->adamw;
    CHECK(missing == 0, "%d backend slots are NULL", missing);
    CHECK(cu->name && strcmp(cu->name, "cuda") == 0, "name");
    CHECK(llm_cuda_backend() == cu, "one table");
}
static void t_no_device(const llm_backend *cu) {
    void *st = (void *)1;
    CHECK(cu->create(&st, 0) == LLM_ERR_UNSUPPORTED && st == NULL, "create without a GPU fails cleanly");
    CHECK(strstr(llm_last_error(), "GPU") != NULL, "message: %s", llm_last_error());
    llm_model *m = (llm_model *)1;
    llm_config cfg = llm_config_gpt2();
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.backend = cu;
    CHECK(llm_model_create(&m, &cfg, &opt, 1) == LLM_ERR_UNSUPPORTED && m == NULL,
          "llm_model_create on the CUDA backend without a GPU: %s", llm_last_error());
}
#endif /* LLM_CUDA */

int main(void) {
#ifndef LLM_CUDA
    TEST_SKIP("test_cuda: built without CUDA (`make cuda` builds build/cuda/tests/test_cuda)");
#else
    const llm_backend *cu = llm_cuda_backend();
    t_host_side(cu);
    int ndev = llm_cuda_device_count();
    if (ndev == 0) {
        t_no_device(cu);
        TEST_SKIP("test_cuda: no CUDA device; GPU-vs-CPU comparisons not run");
        return TEST_END("test_cuda");
    }
    bk ks[2];
    memset(ks, 0, sizeof ks);
    ks[0].be = llm_cpu_backend();
    ks[1].be = cu;
    CHECK(ks[0].be->create(&ks[0].st, 2) == LLM_OK, "cpu create: %s", llm_last_error());
    CHECK(ks[1].be->create(&ks[1].st, 0) == LLM_OK, "cuda create: %s", llm_last_error());
    if (!ks[0].st || !ks[1].st) return TEST_END("test_cuda");
    printf("test_cuda: %d device(s); CUDA vs CPU, fp32\n", ndev);

    t_encoder(ks, 3, 7, 40, 23);
    t_encoder(ks, 2, 33, 77, 5);           /* few tokens: many atomic collisions */
    t_layernorm(ks, 37, 77);
    t_layernorm(ks, 1000, 65);             /* several row splits in the column sums */
    t_matmul(ks, 37, 72, 101, 1);
    t_matmul(ks, 29, 33, 17, 0);
    t_matmul(ks, 700, 48, 144, 1);
    t_attention(ks, 2, 45, 48, 3);         /* HS 16, two key tiles, the last partial */
    t_attention(ks, 1, 70, 128, 2);        /* HS 64 */
    t_attention(ks, 2, 33, 120, 3);        /* HS 40: lanes past HS idle */
    t_attention(ks, 1, 65, 256, 2);        /* HS 128, the largest */
    t_attention(ks, 3, 1, 24, 2);          /* T = 1 */
    t_elementwise(ks, 1031);
    t_crossentropy(ks, 13, 1001);
    t_crossentropy(ks, 4, 50257);          /* GPT-2's vocabulary */
    t_sumsq_adamw(ks, (size_t)1000003);
    t_errors(cu);
    host_free_all();
    t_gpt2(cu);
    host_free_all();
    ks[0].be->destroy(ks[0].st);
    ks[1].be->destroy(ks[1].st);
#endif
    return TEST_END("test_cuda");
}
