/* The Llama ops of the CPU backend, and bad llama2.c files.
 *
 * Each op (rmsnorm, rope with and without a position array, swiglu, attention against
 * a KV cache) runs through llm_cpu_backend() with 3 threads (uneven splits) and must
 * match its scalar reference; the references are checked against the formula written
 * out in double, and every backward against central finite differences of the
 * reference forward (the loss L = Σ g·forward(x) summed in double). Shapes are odd on
 * purpose. attention_kv is checked against llm__attention_fwd_ref over the same
 * sequences: a prefill in one call, then token by token, several sequences interleaved
 * in one call, with the unused cache filled with NaN so that any read past a row's
 * position shows.
 *
 * Then llama2.c checkpoints that lie: truncated at many cut points, with trailing
 * bytes, headers whose sizes do not divide, are zero, negative or huge, and a
 * vocab_size of INT32_MIN. Each must give an error with a message; none may crash
 * (this also runs under ASan/UBSan as build/san/test_llama_kernels). */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

/* Random buffers from tests/test.h's generator (short names: they fill the lines below). */
static float *rnd(size_t n, float scale) { return test_rand_floats(n, scale); }
static float *fdup(const float *x, size_t n) { return test_dup_floats(x, n); }

/* |a - ref| / max(|ref|, 5% of max|ref|): relative, with an absolute floor scaled to
 * the tensor, because a SIMD kernel sums in another order (and with FMA), so a value
 * that cancels (a gradient summed over rows) differs by ~n·eps of its terms, not of
 * itself. */
static double close_err(const float *a, const float *ref, size_t n) { return test_close_err(a, ref, n, 0.05); }
static const char *lvl = "";   /* the SIMD level under test, for messages */


static void *cpu_st;
static const llm_backend *be;

/* ---- RMSNorm ----------------------------------------------------------------------- */
typedef struct { int N, C; float eps; float *x, *w, *g, *out, *rstd; } rn_ctx;
static double rn_loss(void *p) {
    rn_ctx *c = (rn_ctx *)p;
    llm__rmsnorm_fwd_ref(c->out, c->rstd, c->x, c->w, c->N, c->C, c->eps);
    return test_dot(c->out, c->g, (size_t)c->N * c->C);
}
static void test_rmsnorm(int N, int C, float eps, float xscale) {
    size_t n = (size_t)N * C;
    rn_ctx c = {N, C, eps, rnd(n, xscale), rnd(C, 1), rnd(n, 1), rnd(n, 0), rnd(N, 0)};
    for (int i = 0; i < C; i++) c.w[i] += 1.0f;   /* gains in (0, 2) */
    float *o2 = rnd(n, 0), *r2 = rnd(N, 0);
    rn_loss(&c);
    /* the reference against x / sqrt(mean(x^2) + eps) * w in double */
    double worst = 0;
    for (int r = 0; r < N; r++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)c.x[r * C + i] * c.x[r * C + i];
        double inv = 1.0 / sqrt(ss / C + eps);
        double er = fabs(inv - c.rstd[r]) / inv;
        if (er > worst) worst = er;
        for (int i = 0; i < C; i++) {
            double want = c.x[r * C + i] * inv * c.w[i];
            double e = fabs(want - c.out[r * C + i]) / (fabs(want) > 1e-2 ? fabs(want) : 1e-2);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst < 1e-5, "rmsnorm ref vs double formula N=%d C=%d eps=%g: %g", N, C, eps, worst);
    be->rmsnorm_fwd(cpu_st, o2, r2, c.x, c.w, N, C, eps);
    CHECK(close_err(o2, c.out, n) < 1e-5 && close_err(r2, c.rstd, N) < 1e-5,
          "%s rmsnorm fwd cpu vs ref N=%d C=%d: %g %g", lvl, N, C, close_err(o2, c.out, n), close_err(r2, c.rstd, N));
    /* backward accumulates: start from nonzero gradients */
    float *dx = rnd(n, 1), *dw = rnd(C, 1), *dx0 = fdup(dx, n), *dw0 = fdup(dw, C), *dxr = fdup(dx, n), *dwr = fdup(dw, C);
    llm__rmsnorm_bwd_ref(dxr, dwr, c.g, c.x, c.w, c.rstd, N, C);
    be->rmsnorm_bwd(cpu_st, dx, dw, c.g, c.x, c.w, c.rstd, N, C);
    CHECK(close_err(dx, dxr, n) < 1e-5 && close_err(dw, dwr, C) < 1e-5,
          "%s rmsnorm bwd cpu vs ref N=%d C=%d: dx %g dw %g", lvl, N, C, close_err(dx, dxr, n), close_err(dw, dwr, C));
    for (size_t i = 0; i < n; i++) dxr[i] -= dx0[i];
    for (int i = 0; i < C; i++) dwr[i] -= dw0[i];
    test_fd_check("rmsnorm dx", rn_loss, &c, c.x, n, dxr, 40);
    test_fd_check("rmsnorm dw", rn_loss, &c, c.w, C, dwr, 20);
    free(c.x); free(c.w); free(c.g); free(c.out); free(c.rstd); free(o2); free(r2);
    free(dx); free(dw); free(dx0); free(dw0); free(dxr); free(dwr);
}

/* ---- RoPE ------------------------------------------------------------------------------ */
typedef struct { int B, T, NH, NKV, HS; float theta; const int *pos; float *x, *g, *work; size_t n; } rp_ctx;
static double rp_loss(void *p) {
    rp_ctx *c = (rp_ctx *)p;
    memcpy(c->work, c->x, c->n * sizeof(float));
    llm__rope_fwd_ref(c->work, c->pos, c->B, c->T, c->NH, c->NKV, c->HS, c->theta);
    return test_dot(c->work, c->g, c->n);
}
/* llama2.c's rotation (run.c): freq = 1/powf(theta, i/HS) and the angle pos*freq in
 * float; the rotation itself here in double. */
static void rope_formula(double *out, const float *x, const int *pos, int B, int T, int NH, int NKV, int HS,
                         float theta) {
    size_t W = (size_t)(NH + 2 * NKV) * HS;
    for (int bt = 0; bt < B * T; bt++) {
        int p = pos ? pos[bt] : bt % T;
        for (size_t j = 0; j < W; j++) out[bt * W + j] = x[bt * W + j];
        for (int h = 0; h < NH + NKV; h++)
            for (int i = 0; i < HS; i += 2) {
                float freq = 1.0f / powf(theta, (float)i / (float)HS);
                float val = (float)p * freq;
                size_t k = bt * W + (size_t)h * HS + i;
                double x0 = x[k], x1 = x[k + 1];
                out[k] = x0 * cos((double)val) - x1 * sin((double)val);
                out[k + 1] = x0 * sin((double)val) + x1 * cos((double)val);
            }
    }
}
static void test_rope(int B, int T, int NH, int NKV, int HS, float theta, int with_pos) {
    size_t W = (size_t)(NH + 2 * NKV) * HS, n = (size_t)B * T * W, qk = (size_t)(NH + NKV) * HS;
    int *pos = NULL;
    if (with_pos) {   /* any positions: repeats, gaps, out of order, large */
        pos = (int *)malloc((size_t)B * T * sizeof(int));
        for (int i = 0; i < B * T; i++) pos[i] = (int)(test_rand_u64() % 300);
        pos[0] = 0;
    }
    rp_ctx c = {B, T, NH, NKV, HS, theta, pos, rnd(n, 2), rnd(n, 1), rnd(n, 0), n};
    char what[160];
    snprintf(what, sizeof what, "rope B=%d T=%d NH=%d NKV=%d HS=%d theta=%g %s", B, T, NH, NKV, HS, theta,
             with_pos ? "pos array" : "pos = t");
    rp_loss(&c);   /* c.work = reference forward */
    double *want = (double *)malloc(n * sizeof(double));
    rope_formula(want, c.x, pos, B, T, NH, NKV, HS, theta);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(want[i] - c.work[i]);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "%s: ref vs llama2.c's formula: %g", what, worst);   /* |x| <= 2 */
    /* values are untouched, and the q and k parts are rotated */
    int v_same = 1, qk_moved = 0;
    for (int bt = 0; bt < B * T; bt++) {
        v_same &= memcmp(c.work + bt * W + qk, c.x + bt * W + qk, (W - qk) * sizeof(float)) == 0;
        if (!pos || pos[bt] != 0) qk_moved |= c.work[bt * W + qk - 2] != c.x[bt * W + qk - 2];
    }
    CHECK(v_same, "%s: the v part changed", what);
    CHECK(qk_moved, "%s: the last k head was never rotated", what);
    /* the backend */
    float *y = fdup(c.x, n);
    be->rope_fwd(cpu_st, y, pos, B, T, NH, NKV, HS, theta);
    CHECK(close_err(y, c.work, n) < 1e-6, "%s %s: fwd cpu vs ref: %g", lvl, what, close_err(y, c.work, n));
    if (with_pos) {   /* a pos array equal to t is the same as NULL */
        int *pt = (int *)malloc((size_t)B * T * sizeof(int));
        for (int i = 0; i < B * T; i++) pt[i] = i % T;
        float *y1 = fdup(c.x, n), *y2 = fdup(c.x, n);
        be->rope_fwd(cpu_st, y1, pt, B, T, NH, NKV, HS, theta);
        be->rope_fwd(cpu_st, y2, NULL, B, T, NH, NKV, HS, theta);
        CHECK(memcmp(y1, y2, n * sizeof(float)) == 0, "%s: pos[b,t] = t differs from pos = NULL", what);
        free(pt); free(y1); free(y2);
    }
    /* backward: the rotation back, in place. bwd(fwd(x)) = x; bwd(g) = dL/dx. */
    be->rope_bwd(cpu_st, y, pos, B, T, NH, NKV, HS, theta);
    /* each rotation rounds by ~2 ulp of |x| <= 2: compare absolutely at that scale */
    CHECK(test_max_rel_err(y, c.x, n, 2.0) < 2e-6, "%s %s: bwd(fwd(x)) is not x: %g", lvl, what,
          test_max_rel_err(y, c.x, n, 2.0));
    float *d = fdup(c.g, n), *dr = fdup(c.g, n);
    be->rope_bwd(cpu_st, d, pos, B, T, NH, NKV, HS, theta);
    llm__rope_bwd_ref(dr, pos, B, T, NH, NKV, HS, theta);
    CHECK(close_err(d, dr, n) < 1e-6, "%s %s: bwd cpu vs ref: %g", lvl, what, close_err(d, dr, n));
    snprintf(what + strlen(what), sizeof what - strlen(what), " dx");
    test_fd_check(what, rp_loss, &c, c.x, n, d, 60);
    free(pos); free(c.x); free(c.g); free(c.work); free(want); free(y); free(d); free(dr);
}

/* ---- SwiGLU -------------------------------------------------------------------------- */
typedef struct { int N, H; float *x, *g, *out; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = (sw_ctx *)p;
    llm__swiglu_fwd_ref(c->out, c->x, c->N, c->H);
    return test_dot(c->out, c->g, (size_t)c->N * c->H);
}
static void test_swiglu(int N, int H) {
    size_t ni = (size_t)N * 2 * H, no = (size_t)N * H;
    sw_ctx c = {N, H, rnd(ni, 5), rnd(no, 1), rnd(no, 0)};
    float *o2 = rnd(no, 0);
    sw_loss(&c);
    double worst = 0;   /* silu(gate) * up, in double */
    for (int r = 0; r < N; r++)
        for (int i = 0; i < H; i++) {
            double gt = c.x[(size_t)r * 2 * H + i], up = c.x[(size_t)r * 2 * H + H + i];
            double want = gt / (1.0 + exp(-gt)) * up;
            double e = fabs(want - c.out[(size_t)r * H + i]) / (fabs(want) > 1e-2 ? fabs(want) : 1e-2);
            if (e > worst) worst = e;
        }
    CHECK(worst < 1e-5, "swiglu ref vs double formula N=%d H=%d: %g", N, H, worst);
    be->swiglu_fwd(cpu_st, o2, c.x, N, H);
    CHECK(close_err(o2, c.out, no) < 1e-5, "%s swiglu fwd cpu vs ref N=%d H=%d: %g", lvl, N, H, close_err(o2, c.out, no));
    float *d = rnd(ni, 1), *d0 = fdup(d, ni), *dr = fdup(d, ni);
    llm__swiglu_bwd_ref(dr, c.x, c.g, N, H);
    be->swiglu_bwd(cpu_st, d, c.x, c.g, N, H);
    CHECK(close_err(d, dr, ni) < 1e-5, "%s swiglu bwd cpu vs ref N=%d H=%d: %g", lvl, N, H, close_err(d, dr, ni));
    for (size_t i = 0; i < ni; i++) dr[i] -= d0[i];
    test_fd_check("swiglu dx", sw_loss, &c, c.x, ni, dr, 60);
    free(c.x); free(c.g); free(c.out); free(o2); free(d); free(d0); free(dr);
}

/* ---- attention against a KV cache ------------------------------------------------------- */
/* Sequences s = 0..S-1 of lengths len[s] (qkv rows seqs[s], (len, QKV)). A schedule of
 * calls: seq 0 prefilled in one call; then seq 1's prefill together with seq 0's next
 * token; then every unfinished sequence one token per call, rows in alternating order,
 * seq 2 joining late from position 0. Each row's output must equal the full causal
 * attention over its sequence (llm__attention_fwd_ref). One cache slot (S) is never
 * used, and all of both caches start as NaN. */
typedef void (*kv_fn)(float *out, const float *qkv, float *kc, float *vc, const int *seq, const int *pos, int N,
                      int NH, int NKV, int HS, int maxT);
static void kv_cpu(float *out, const float *qkv, float *kc, float *vc, const int *seq, const int *pos, int N,
                   int NH, int NKV, int HS, int maxT) {
    be->attention_kv(cpu_st, out, qkv, kc, vc, seq, pos, N, NH, NKV, HS, maxT);
}
static void run_kv(const char *name, kv_fn fn, int NH, int NKV, int HS, int maxT) {
    enum { S = 3 };
    int len[S] = {17, 9, maxT};
    size_t W = (size_t)(NH + 2 * NKV) * HS, C = (size_t)NH * HS, kvw = (size_t)NKV * HS;
    float *seqs[S], *ref[S];
    for (int s = 0; s < S; s++) {
        seqs[s] = rnd((size_t)len[s] * W, 1.5f);
        ref[s] = rnd((size_t)len[s] * C, 0);
        float *lse = rnd((size_t)NH * len[s], 0);
        llm__attention_fwd_ref(ref[s], lse, seqs[s], 1, len[s], NH, NKV, HS);
        free(lse);
    }
    size_t cache = (size_t)(S + 1) * maxT * kvw;
    float *kc = (float *)malloc(cache * sizeof(float)), *vc = (float *)malloc(cache * sizeof(float));
    for (size_t i = 0; i < cache; i++) kc[i] = vc[i] = NAN;
    int maxN = S * maxT;
    float *qkv = (float *)malloc((size_t)maxN * W * sizeof(float)), *out = (float *)malloc((size_t)maxN * C * sizeof(float));
    int *seq = (int *)malloc((size_t)maxN * sizeof(int)), *pos = (int *)malloc((size_t)maxN * sizeof(int));
    int done[S] = {0, 0, 0}, calls = 0, rows = 0, max_rows = 0;
    double worst = 0;
    for (int step = 0;; step++) {
        int N = 0;
        /* this call's rows: (sequence, how many tokens) */
        int take[S] = {0, 0, 0};
        if (step == 0) take[0] = 6;                           /* prefill */
        else if (step == 1) { take[1] = 4; take[0] = 1; }     /* a prefill beside a decode */
        else for (int s = 0; s < S; s++) take[s] = (s < 2 || step >= 5) && done[s] < len[s];
        int order[S] = {0, 1, 2};
        if (step % 2) { order[0] = 2; order[2] = 0; }
        if (step == 1) { order[0] = 1; order[1] = 0; }
        for (int k = 0; k < S; k++) {
            int s = order[k];
            for (int j = 0; j < take[s]; j++) {
                int p = done[s] + j;
                memcpy(qkv + (size_t)N * W, seqs[s] + (size_t)p * W, W * sizeof(float));
                seq[N] = s; pos[N] = p; N++;
            }
        }
        if (N == 0) break;
        for (size_t i = 0; i < (size_t)N * C; i++) out[i] = -7.0f;
        fn(out, qkv, kc, vc, seq, pos, N, NH, NKV, HS, maxT);
        for (int i = 0; i < N; i++) {
            /* the SIMD kernel sums in another order than the reference: compare with a
             * floor of 1e-2, the size where fp32 rounding of the softmax sums shows */
            double e = test_max_rel_err(out + (size_t)i * C, ref[seq[i]] + (size_t)pos[i] * C, C, 1e-2);
            if (!(e <= worst)) worst = e;
        }
        for (int s = 0; s < S; s++) done[s] += take[s];
        calls++; rows += N;
        if (N > max_rows) max_rows = N;
    }
    CHECK(worst < 5e-5, "%s %s NH=%d NKV=%d HS=%d: KV-cache attention differs from full attention: %g", lvl, name, NH,
          NKV, HS, worst);
    CHECK(done[0] == len[0] && done[1] == len[1] && done[2] == len[2] && calls > maxT,
          "%s: the schedule did not run through (%d calls)", name, calls);
    /* the caches hold each sequence's k and v rows; the rest is untouched */
    int cache_ok = 1;
    for (int s = 0; s <= S; s++)
        for (int p = 0; p < maxT; p++) {
            const float *k = kc + ((size_t)s * maxT + p) * kvw, *v = vc + ((size_t)s * maxT + p) * kvw;
            if (s < S && p < len[s]) {
                const float *row = seqs[s] + (size_t)p * W + C;
                cache_ok &= memcmp(k, row, kvw * sizeof(float)) == 0 && memcmp(v, row + kvw, kvw * sizeof(float)) == 0;
            } else {
                for (size_t j = 0; j < kvw; j++) cache_ok &= k[j] != k[j] && v[j] != v[j];
            }
        }
    CHECK(cache_ok, "%s: the KV caches hold the wrong rows, or rows beyond the ones written", name);
    printf("%s %s NH=%d NKV=%d HS=%d maxT=%d: %d calls, %d rows (up to %d per call), worst err %.2e\n", lvl, name, NH, NKV,
           HS, maxT, calls, rows, max_rows, worst);
    for (int s = 0; s < S; s++) { free(seqs[s]); free(ref[s]); }
    free(kc); free(vc); free(qkv); free(out); free(seq); free(pos);
}

/* ---- llama2.c files that lie ---------------------------------------------------------- */
/* The file size llama2.c's run.c would read for this header (its own formulas:
 * head_size = dim / n_heads, kv_dim = dim * n_kv_heads / n_heads), or -1. */
static long long l2c_size(const int32_t h[7]) {
    long long C = h[0], H = h[1], L = h[2], NH = h[3], NKV = h[4], V = h[5] < 0 ? -(long long)h[5] : h[5], T = h[6];
    if (NH <= 0) return -1;
    for (int i = 0; i < 7; i++)
        if (h[i] > 65536 || h[i] < -65536) return -1;   /* keep the products below in range */
    long long HS = C / NH, KV = C * NKV / NH;
    long long n = V * C + L * C + L * C * C + 2 * L * KV * C + L * C * C + L * C + 3 * L * H * C + C + T * HS +
                  (h[5] < 0 ? V * C : 0);
    return n < 0 || n > (1 << 22) ? -1 : 28 + 4 * n;
}
static const char *tmpfile_path(void) {
    static char p[256];
    snprintf(p, sizeof p, "/tmp/llm_test_llama_kernels.%ld.bin", (long)getpid());
    return p;
}
static void write_file(const char *path, const unsigned char *d, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    CHECK(fwrite(d, 1, n, f) == n, "short write to %s", path);
    fclose(f);
}
/* A llama2.c file: header h, then `bytes - 28` bytes of small random floats. */
static unsigned char *make_l2c(const int32_t h[7], size_t bytes) {
    unsigned char *d = (unsigned char *)calloc(bytes > 28 ? bytes : 28, 1);
    memcpy(d, h, 28);   /* little-endian host: the format's byte order */
    for (size_t i = 28; i + 4 <= bytes; i += 4) { float v = test_frand() * 0.1f; memcpy(d + i, &v, 4); }
    return d;
}
static int verbose;   /* print each message (for the lies, not the cut points) */
/* Loading must fail with a message and no model. */
static int expect_fail(const char *what) {
    llm_model *m = (llm_model *)(uintptr_t)1;
    llm_set_error(LLM_OK, "%s", "");   /* a stale message must not count */
    llm_status s = llm_model_load(&m, tmpfile_path(), NULL);
    const char *msg = llm_last_error();
    int ok = s != LLM_OK && m == NULL && msg && msg[0];
    CHECK(ok, "%s: load gave %s, model %p, message '%s'", what, llm_status_string(s), (void *)m, msg ? msg : "(null)");
    if (s == LLM_OK) llm_model_free(m);
    if (verbose) printf("  %-60s -> %s\n", what, msg);
    return ok;
}

static void test_bad_files(void) {
    /* a valid file first: dim 16, hidden 24, 2 layers, 4 heads, 2 kv heads, vocab 32
     * untied, seq_len 8 */
    const int32_t good[7] = {16, 24, 2, 4, 2, -32, 8};
    long long n = l2c_size(good);
    unsigned char *d = make_l2c(good, (size_t)n);
    write_file(tmpfile_path(), d, (size_t)n);
    llm_model *m = NULL;
    llm_status s = llm_model_load(&m, tmpfile_path(), NULL);
    CHECK(s == LLM_OK && m, "a valid llama2.c file does not load: %s", llm_last_error());
    if (m) {
        llm_config c = llm_model_config(m);
        CHECK(c.arch == LLM_ARCH_LLAMA && c.n_embd == 16 && c.hidden_dim == 24 && c.n_layer == 2 && c.n_head == 4 &&
              c.n_kv_head == 2 && c.vocab_size == 32 && c.untied_head == 1 && c.max_seq_len == 8,
              "valid llama2.c file: wrong config");
        float *p = (float *)malloc(llm_model_num_params(m) * sizeof(float));
        CHECK(llm_model_get_params(m, p) == LLM_OK && memcmp(p, d + 28, 32 * 16 * sizeof(float)) == 0,
              "valid llama2.c file: the embedding is not the file's first tensor");
        int tok[3] = {0, 31, 5};
        CHECK(llm_model_forward(m, tok, tok, 1, 3, NULL) == LLM_OK, "valid llama2.c file: forward: %s", llm_last_error());
        free(p);
        llm_model_free(m);
    }
    /* truncated at many cut points, and with bytes appended */
    int cuts = 0, failed = 0;
    size_t step = TEST_SAN ? (size_t)n / 23 : (size_t)n / 97;
    for (size_t cut = 0; cut < (size_t)n; cut += (cut < 40 ? 1 : step)) {
        write_file(tmpfile_path(), d, cut);
        char what[64];
        snprintf(what, sizeof what, "llama2.c file cut to %zu of %lld bytes", cut, n);
        failed += !expect_fail(what);
        cuts++;
    }
    write_file(tmpfile_path(), d, (size_t)n - 1);
    failed += !expect_fail("llama2.c file one byte short");
    unsigned char *longer = (unsigned char *)calloc((size_t)n + 4, 1);
    memcpy(longer, d, (size_t)n);
    write_file(tmpfile_path(), longer, (size_t)n + 1);
    failed += !expect_fail("llama2.c file with one byte appended");
    write_file(tmpfile_path(), longer, (size_t)n + 4);
    failed += !expect_fail("llama2.c file with one float appended");
    printf("truncated / extended llama2.c files: %d cut points, %d loaded wrongly\n", cuts + 3, failed);
    free(longer);
    free(d);

    /* headers that lie; each file is as long as run.c would read for that header, where
     * that size is defined and small, so that the size check alone cannot catch it */
    struct { const char *what; int field; int32_t value; } lies[] = {
        {"n_heads 3 does not divide dim 16", 3, 3},
        {"n_heads 5 does not divide dim 16", 3, 5},
        {"n_kv_heads 3 does not divide n_heads 4", 4, 3},
        {"n_kv_heads 8 > n_heads 4", 4, 8},
        {"n_heads 16: head size 1 is odd (RoPE rotates pairs)", 3, 16},
        {"dim 0", 0, 0}, {"hidden_dim 0", 1, 0}, {"n_layers 0", 2, 0}, {"n_heads 0", 3, 0},
        {"n_kv_heads 0", 4, 0}, {"vocab_size 0", 5, 0}, {"seq_len 0", 6, 0},
        {"dim -16", 0, -16}, {"hidden_dim -1", 1, -1}, {"n_layers -2", 2, -2}, {"n_heads -4", 3, -4},
        {"n_kv_heads -2", 4, -2}, {"seq_len -8", 6, -8},
        {"dim INT32_MAX", 0, INT32_MAX}, {"hidden_dim INT32_MAX", 1, INT32_MAX}, {"n_layers INT32_MAX", 2, INT32_MAX},
        {"n_heads INT32_MAX", 3, INT32_MAX}, {"n_kv_heads INT32_MAX", 4, INT32_MAX},
        {"vocab_size INT32_MAX", 5, INT32_MAX}, {"seq_len INT32_MAX", 6, INT32_MAX},
        {"dim 65536 (within limits, file far too short)", 0, 65536}, {"n_layers 4096", 2, 4096},
        {"seq_len 1048576", 6, 1 << 20}, {"vocab_size -16777216", 5, -(1 << 24)},
        {"vocab_size INT32_MIN", 5, INT32_MIN}, {"n_layers INT32_MIN", 2, INT32_MIN},
        {"dim INT32_MIN", 0, INT32_MIN},
    };
    verbose = !TEST_SAN;
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        int32_t h[7];
        memcpy(h, good, sizeof h);
        h[lies[i].field] = lies[i].value;
        long long sz = l2c_size(h);
        if (sz < 28) sz = n;   /* undefined or huge: the good file's length */
        unsigned char *b = make_l2c(h, (size_t)sz);
        write_file(tmpfile_path(), b, (size_t)sz);
        expect_fail(lies[i].what);
        free(b);
    }
    /* n_kv_heads 0 sized as if n_kv_heads = n_heads (the library's default for 0) */
    {
        int32_t h[7];
        memcpy(h, good, sizeof h);
        h[4] = h[3];
        long long sz = l2c_size(h);
        h[4] = 0;
        unsigned char *b = make_l2c(h, (size_t)sz);
        write_file(tmpfile_path(), b, (size_t)sz);
        expect_fail("n_kv_heads 0, file sized for n_kv_heads = n_heads");
        free(b);
    }
    remove(tmpfile_path());
}

int main(void) {
    test_seed(4321);
    be = llm_cpu_backend();
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 3;
    CHECK(be->create(&cpu_st, &opt) == LLM_OK, "cpu backend with 3 threads");
    /* Every kernel level this CPU has, from scalar up; then back to the best. */
    llm_simd levels[] = {LLM_SIMD_SCALAR, LLM_SIMD_AVX2, LLM_SIMD_AVX512, LLM_SIMD_NEON};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (!llm_simd_supported(levels[i])) continue;
        CHECK(llm_simd_force(levels[i]) == LLM_OK, "simd_force(%s): %s", llm_simd_name(levels[i]), llm_last_error());
        lvl = llm_simd_name(llm_simd_active());
        test_rmsnorm(7, 13, 1e-5f, 2.0f);
        test_rmsnorm(33, 67, 1e-5f, 1.0f);
        test_rmsnorm(5, 24, 1e-2f, 0.05f);    /* eps comparable to mean(x^2): eps must be inside the sqrt */
        test_rope(2, 7, 4, 2, 6, 10000.0f, 0);
        test_rope(2, 7, 4, 2, 6, 10000.0f, 1);
        test_rope(1, 13, 3, 1, 10, 10000.0f, 0);
        test_rope(3, 5, 2, 2, 16, 500000.0f, 1);
        test_rope(1, 9, 6, 3, 2, 10000.0f, 1);   /* head size 2: one pair per head */
        test_swiglu(7, 13);
        test_swiglu(33, 67);
        run_kv("attention_kv cpu", kv_cpu, 4, 2, 8, 24);
        run_kv("attention_kv ref", llm__attention_kv_ref, 4, 2, 8, 24);
        run_kv("attention_kv cpu", kv_cpu, 3, 3, 6, 21);   /* NKV = NH (GPT-2) */
        run_kv("attention_kv cpu", kv_cpu, 6, 1, 4, 19);   /* multi-query */
    }
    llm_simd_force(LLM_SIMD_AUTO);
    lvl = llm_simd_name(llm_simd_active());
    test_bad_files();
    be->destroy(cpu_st);
    return TEST_END("test_llama_kernels");
}
