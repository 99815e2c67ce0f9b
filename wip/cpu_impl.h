//==== CPU ==============================================================================
/* The CPU backend: each op splits its work over the pool's threads so that no two
 * threads write the same float (rows for row-wise ops, columns for the parameter
 * gradients that sum over rows). The split depends only on the thread count, so the
 * results are bit-identical run to run. */
typedef struct llm__cpu { llm_pool *pool; int bf16; } llm__cpu;
#define LLM__POOL(st) (LLM__CAST(llm__cpu *, st)->pool)

/* One argument block serves every op: the task functions read the fields they need. */
typedef struct llm__op {
    float *out, *out2, *out3;
    const float *in, *in2, *in3, *in4, *in5;
    const int *idx, *idx2;
    int B, T, C, OC, NH, N;
    size_t n;
    float f[8];
    int t;
    double partial[256];
} llm__op;

static llm_status llm__cpu_create(void **st, const llm_options *opt) {
    int n_threads = opt ? opt->n_threads : 0;
    llm__cpu *c = LLM__CAST(llm__cpu *, llm__calloc(1, sizeof *c));
    if (!c) return llm__err(LLM_ERR_NOMEM, "cpu backend: out of memory");
    c->pool = llm_pool_create(n_threads);
    c->bf16 = opt ? opt->bf16 : 0;
    if (!c->pool) { LLM_FREE(c); return LLM_ERR_NOMEM; }
    *st = c;
    return LLM_OK;
}
static void llm__cpu_destroy(void *st) {
    if (!st) return;
    llm_pool_free(LLM__POOL(st));
    LLM_FREE(st);
}
static void *llm__cpu_alloc(void *st, size_t bytes) {
    (void)st;
    void *p = llm__alloc_aligned(bytes);
    if (!p) llm__err(LLM_ERR_NOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}
static void llm__cpu_release(void *st, void *p) { (void)st; llm__free_aligned(p); }
static llm_status llm__cpu_copy(void *st, void *dst, const void *src, size_t bytes) {
    (void)st;
    if (bytes) memcpy(dst, src, bytes);
    return LLM_OK;
}
static void llm__cpu_zero(void *st, void *p, size_t bytes) { (void)st; if (bytes) memset(p, 0, bytes); }

/* encoder: forward by rows; backward by channel slices (a token may repeat, so rows
 * would collide in dwte, but channels never do). */
static void llm__t_encoder_fwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, o->B) * o->T, ith, nth, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        int t = LLM__CAST(int, r % LLM__CAST(size_t, o->T));
        llm__encoder_fwd_ref(o->out + r * o->C, o->idx + r, o->in, o->in2 ? o->in2 + LLM__CAST(size_t, t) * o->C : NULL, 1, 1, o->C);
    }
}
static void llm__cpu_encoder_fwd(void *st, float *out, const int *tok, const float *wte,
                                 const float *wpe, int B, int T, int C) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.idx = tok; o.in = wte; o.in2 = wpe; o.B = B; o.T = T; o.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_encoder_fwd, &o);
}
static void llm__t_encoder_bwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, o->C), ith, nth, &lo, &hi);
    for (int b = 0; b < o->B; b++)
        for (int t = 0; t < o->T; t++) {
            const float *d = o->in + (LLM__CAST(size_t, b) * o->T + t) * o->C;
            float *dwe = o->out + LLM__CAST(size_t, o->idx[b * o->T + t]) * o->C;
            for (size_t c = lo; c < hi; c++) dwe[c] += d[c];
            if (o->out2) for (size_t c = lo; c < hi; c++) o->out2[LLM__CAST(size_t, t) * o->C + c] += d[c];
        }
}
static void llm__cpu_encoder_bwd(void *st, float *dwte, float *dwpe, const float *dout,
                                 const int *tok, int B, int T, int C) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = dwte; o.out2 = dwpe; o.in = dout; o.idx = tok; o.B = B; o.T = T; o.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_encoder_bwd, &o);
}

/* layernorm: forward by rows. Backward: dinp by rows, then dw/db by channel slices.
 * Each task runs the fastest kernel the CPU has (SIMD KERNELS), which is tested
 * against the reference in KERNELS. */
static void llm__t_layernorm_fwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, C = LLM__CAST(size_t, o->C);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__layernorm_fwd_fast(o->out + lo * C, o->out2 + lo, o->out3 + lo, o->in + lo * C, o->in2, o->in3,
                           LLM__CAST(int, hi - lo), o->C);
}
static void llm__cpu_layernorm_fwd(void *st, float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.out2 = mean; o.out3 = rstd; o.in = inp; o.in2 = w; o.in3 = b; o.N = N; o.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_layernorm_fwd, &o);
}
static void llm__t_layernorm_bwd_dx(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, C = LLM__CAST(size_t, o->C);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__layernorm_bwd_dx_fast(o->out + lo * C, o->in + lo * C, o->in2 + lo * C, o->in3, o->in4 + lo, o->in5 + lo,
                               LLM__CAST(int, hi - lo), o->C);
}
static void llm__t_layernorm_bwd_dw(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, o->C), ith, nth, &lo, &hi);
    llm__layernorm_bwd_dwdb_fast(o->out2, o->out3, o->in, o->in2, o->in4, o->in5, o->N, o->C, LLM__CAST(int, lo), LLM__CAST(int, hi));
}
static void llm__cpu_layernorm_bwd(void *st, float *dinp, float *dw, float *db, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int N, int C) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = dinp; o.out2 = dw; o.out3 = db; o.in = dout; o.in2 = inp; o.in3 = w; o.in4 = mean;
    o.in5 = rstd; o.N = N; o.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_layernorm_bwd_dx, &o);
    llm_pool_run(LLM__POOL(st), llm__t_layernorm_bwd_dw, &o);
}

/* matmul: all three products go through the GEMM. out = bias, then out += inp·w^T. */
static void llm__t_bias_bcast(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, OC = LLM__CAST(size_t, o->OC);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    for (size_t n = lo; n < hi; n++) memcpy(o->out + n * OC, o->in, OC * sizeof(float));
}
static void llm__t_bias_grad(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, OC = LLM__CAST(size_t, o->OC);
    llm__split(OC, ith, nth, &lo, &hi);
    for (size_t n = 0; n < LLM__CAST(size_t, o->N); n++)
        for (size_t j = lo; j < hi; j++) o->out[j] += o->in[n * OC + j];
}
/* The GEMM of the backend's precision: fp32, or bf16 operands with fp32 accumulation
 * (llm_options.bf16, on CPUs with AVX512-BF16; otherwise it falls back to fp32). */
typedef void (*llm__gemm_fn)(llm_pool *, int, int, int, int, int, const float *, int, const float *, int,
                             float, float *, int);
static llm__gemm_fn llm__cpu_gemm(void *st) { return LLM__CAST(llm__cpu *, st)->bf16 ? llm__sgemm_bf16 : llm__sgemm; }

static void llm__cpu_matmul_fwd(void *st, float *out, const float *inp, const float *w,
                                const float *bias, int N, int C, int OC) {
    llm_pool *pool = LLM__POOL(st);
    llm__gemm_fn gemm = llm__cpu_gemm(st);
    if (bias) {
        llm__op o; memset(&o, 0, sizeof o);
        o.out = out; o.in = bias; o.N = N; o.OC = OC;
        llm_pool_run(pool, llm__t_bias_bcast, &o);
    }
    gemm(pool, 0, 1, N, OC, C, inp, C, w, C, bias ? 1.0f : 0.0f, out, OC);
}
static void llm__cpu_matmul_bwd(void *st, float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    llm_pool *pool = LLM__POOL(st);
    llm__gemm_fn gemm = llm__cpu_gemm(st);
    gemm(pool, 0, 0, N, C, OC, dout, OC, w, C, 1.0f, dinp, C);   /* dinp += dout·w */
    gemm(pool, 1, 0, OC, C, N, dout, OC, inp, C, 1.0f, dw, C);   /* dw += doutᵀ·inp */
    if (dbias) {
        llm__op o; memset(&o, 0, sizeof o);
        o.out = dbias; o.in = dout; o.N = N; o.OC = OC;
        llm_pool_run(pool, llm__t_bias_grad, &o);
    }
}

/* attention: forward by (b, h); backward by (b, key/value head), since the query heads
 * of a group all add into that group's dk, dv. */
static void llm__t_attention_fwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, NH = LLM__CAST(size_t, o->NH);
    llm__split(LLM__CAST(size_t, o->B) * NH, ith, nth, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        llm__attention_fwd_fast(o->out, o->out2, o->in, LLM__CAST(int, i / NH), LLM__CAST(int, i % NH), o->T, o->NH, o->OC, o->C);
}
static void llm__cpu_attention_fwd(void *st, float *out, float *lse, const float *qkv, int B, int T,
                                   int NH, int NKV, int HS) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.out2 = lse; o.in = qkv; o.B = B; o.T = T; o.NH = NH; o.OC = NKV; o.C = HS;
    llm_pool_run(LLM__POOL(st), llm__t_attention_fwd, &o);
}
static void llm__t_attention_bwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, NKV = LLM__CAST(size_t, o->OC);
    llm__split(LLM__CAST(size_t, o->B) * NKV, ith, nth, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        llm__attention_bwd_group_fast(o->out, o->in, o->in2, o->in3, o->in4, LLM__CAST(int, i / NKV), LLM__CAST(int, i % NKV),
                                      o->T, o->NH, o->OC, o->C);
}
static void llm__cpu_attention_bwd(void *st, float *dqkv, const float *dout, const float *qkv,
                                   const float *out, const float *lse, int B, int T, int NH, int NKV, int HS) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = dqkv; o.in = dout; o.in2 = qkv; o.in3 = out; o.in4 = lse; o.B = B; o.T = T; o.NH = NH; o.OC = NKV; o.C = HS;
    llm_pool_run(LLM__POOL(st), llm__t_attention_bwd, &o);
}

/* element-wise ops: contiguous slices. */
enum { LLM__EW_GELU_FWD, LLM__EW_GELU_BWD, LLM__EW_RES_FWD, LLM__EW_RES_BWD };
static void llm__t_elementwise(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(o->n, ith, nth, &lo, &hi);
    switch (o->t) {
    case LLM__EW_GELU_FWD: llm__gelu_fwd_fast(o->out + lo, o->in + lo, hi - lo); break;
    case LLM__EW_GELU_BWD: llm__gelu_bwd_fast(o->out + lo, o->in + lo, o->in2 + lo, hi - lo); break;
    case LLM__EW_RES_FWD: llm__residual_fwd_fast(o->out + lo, o->in + lo, o->in2 + lo, hi - lo); break;
    case LLM__EW_RES_BWD: llm__residual_bwd_fast(o->out + lo, o->out2 + lo, o->in + lo, hi - lo); break;
    }
}
static void llm__cpu_ew(void *st, int kind, float *out, float *out2, const float *in, const float *in2, size_t n) {
    llm__op o; memset(&o, 0, sizeof o);
    o.t = kind; o.out = out; o.out2 = out2; o.in = in; o.in2 = in2; o.n = n;
    llm_pool_run(LLM__POOL(st), llm__t_elementwise, &o);
}
static void llm__cpu_gelu_fwd(void *st, float *out, const float *inp, size_t n) { llm__cpu_ew(st, LLM__EW_GELU_FWD, out, NULL, inp, NULL, n); }
static void llm__cpu_gelu_bwd(void *st, float *dinp, const float *inp, const float *dout, size_t n) { llm__cpu_ew(st, LLM__EW_GELU_BWD, dinp, NULL, inp, dout, n); }
static void llm__cpu_residual_fwd(void *st, float *out, const float *a, const float *b, size_t n) { llm__cpu_ew(st, LLM__EW_RES_FWD, out, NULL, a, b, n); }
static void llm__cpu_residual_bwd(void *st, float *da, float *db, const float *dout, size_t n) { llm__cpu_ew(st, LLM__EW_RES_BWD, da, db, dout, NULL, n); }

/* cross-entropy: rows are independent. */
static void llm__t_ce_fwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, V = LLM__CAST(size_t, o->OC);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__crossentropy_fwd_fast(o->out + lo, o->out2 + lo, o->in + lo * V, o->idx + lo, LLM__CAST(int, hi - lo), o->OC);
}
static void llm__cpu_crossentropy_fwd(void *st, float *losses, float *lse, const float *logits,
                                      const int *targets, int N, int V) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = losses; o.out2 = lse; o.in = logits; o.idx = targets; o.N = N; o.OC = V;
    llm_pool_run(LLM__POOL(st), llm__t_ce_fwd, &o);
}
static void llm__t_ce_bwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, V = LLM__CAST(size_t, o->OC);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__crossentropy_bwd_fast(o->out + lo * V, o->in + lo, o->idx + lo, o->f[0], LLM__CAST(int, hi - lo), o->OC);
}
static void llm__cpu_crossentropy_bwd(void *st, float *logits, const float *lse, const int *targets,
                                      float dloss, int N, int V) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = logits; o.in = lse; o.idx = targets; o.f[0] = dloss; o.N = N; o.OC = V;
    llm_pool_run(LLM__POOL(st), llm__t_ce_bwd, &o);
}

/* sum of squares: one partial per thread, added in thread order (deterministic). */
static void llm__t_sumsq(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(o->n, ith, nth, &lo, &hi);
    o->partial[ith] = llm__sumsq_fast(o->in + lo, hi - lo);
}
static double llm__cpu_sumsq(void *st, const float *x, size_t n) {
    llm__op o; memset(&o, 0, sizeof o);
    o.in = x; o.n = n;
    llm_pool *pool = LLM__POOL(st);
    int nth = llm_pool_size(pool);
    if (nth > 256) { return llm__sumsq_ref(x, n); }
    llm_pool_run(pool, llm__t_sumsq, &o);
    double s = 0;
    for (int i = 0; i < nth; i++) s += o.partial[i];
    return s;
}

static void llm__t_adamw(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(o->n, ith, nth, &lo, &hi);
    llm__adamw_fast(o->out + lo, o->in + lo, o->out2 + lo, o->out3 + lo, hi - lo, o->f[0], o->f[1], o->f[2],
                   o->f[3], o->f[4], o->f[5], o->t);
}
static void llm__cpu_adamw(void *st, float *param, const float *grad, float *m, float *v, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           float grad_scale, int t) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = param; o.in = grad; o.out2 = m; o.out3 = v; o.n = n; o.t = t;
    o.f[0] = lr; o.f[1] = beta1; o.f[2] = beta2; o.f[3] = eps; o.f[4] = weight_decay; o.f[5] = grad_scale;
    llm_pool_run(LLM__POOL(st), llm__t_adamw, &o);
}

/* rmsnorm: like layernorm, dinp by rows and dw by channel slices. */
static void llm__t_rmsnorm_fwd(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, C = LLM__CAST(size_t, o->C);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__rmsnorm_fwd_fast(o->out + lo * C, o->out2 + lo, o->in + lo * C, o->in2, LLM__CAST(int, hi - lo), o->C, o->f[0]);
}
static void llm__cpu_rmsnorm_fwd(void *st, float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.out2 = rstd; o.in = inp; o.in2 = w; o.N = N; o.C = C; o.f[0] = eps;
    llm_pool_run(LLM__POOL(st), llm__t_rmsnorm_fwd, &o);
}
static void llm__t_rmsnorm_bwd_dx(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, C = LLM__CAST(size_t, o->C);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    llm__rmsnorm_bwd_dx_fast(o->out + lo * C, o->in + lo * C, o->in2 + lo * C, o->in3, o->in4 + lo, LLM__CAST(int, hi - lo), o->C);
}
static void llm__t_rmsnorm_bwd_dw(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, o->C), ith, nth, &lo, &hi);
    llm__rmsnorm_bwd_dw_fast(o->out2, o->in, o->in2, o->in4, o->N, o->C, LLM__CAST(int, lo), LLM__CAST(int, hi));
}
static void llm__cpu_rmsnorm_bwd(void *st, float *dinp, float *dw, const float *dout, const float *inp,
                                 const float *w, const float *rstd, int N, int C) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = dinp; o.out2 = dw; o.in = dout; o.in2 = inp; o.in3 = w; o.in4 = rstd; o.N = N; o.C = C;
    llm_pool_run(LLM__POOL(st), llm__t_rmsnorm_bwd_dx, &o);
    llm_pool_run(LLM__POOL(st), llm__t_rmsnorm_bwd_dw, &o);
}

/* rope: rows are independent. The frequencies are computed once per call (not per row),
 * the cos/sin once per row and position, the rotation vectorised (llm__rope_row_fast:
 * bit-identical to llm__rope_rotate). Odd head sizes, or past LLM__ROPE_HSMAX, use the
 * reference. */
static void llm__t_rope(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, row = LLM__CAST(size_t, o->NH + 2 * o->OC) * o->C;
    float cs[2 * LLM__ROPE_HSMAX];
    llm__split(LLM__CAST(size_t, o->B) * o->T, ith, nth, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        int p = o->idx ? o->idx[r] : LLM__CAST(int, r % LLM__CAST(size_t, o->T));
        if (o->in) llm__rope_row_fast(o->out + r * row, p, o->NH, o->OC, o->C, o->in, o->f[1], cs);
        else llm__rope_rotate(o->out + r * row, &p, 1, 1, o->NH, o->OC, o->C, o->f[0], o->f[1]);
    }
}
static void llm__cpu_rope(void *st, float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta, float sign) {
    llm__op o; memset(&o, 0, sizeof o);
    float freq[LLM__ROPE_HSMAX / 2];
    o.out = qkv; o.idx = pos; o.B = B; o.T = T; o.NH = NH; o.OC = NKV; o.C = HS; o.f[0] = theta; o.f[1] = sign;
    if (HS >= 2 && HS <= LLM__ROPE_HSMAX && HS % 2 == 0) { llm__rope_freqs(freq, HS, theta); o.in = freq; }
    llm_pool_run(LLM__POOL(st), llm__t_rope, &o);
}
static void llm__cpu_rope_fwd(void *st, float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__cpu_rope(st, qkv, pos, B, T, NH, NKV, HS, theta, 1.0f);
}
static void llm__cpu_rope_bwd(void *st, float *dqkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__cpu_rope(st, dqkv, pos, B, T, NH, NKV, HS, theta, -1.0f);
}

/* swiglu: rows are independent. */
static void llm__t_swiglu(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi, H = LLM__CAST(size_t, o->C);
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    if (o->t == 0) llm__swiglu_fwd_fast(o->out + lo * H, o->in + lo * 2 * H, LLM__CAST(int, hi - lo), o->C);
    else llm__swiglu_bwd_fast(o->out + lo * 2 * H, o->in + lo * 2 * H, o->in2 + lo * H, LLM__CAST(int, hi - lo), o->C);
}
static void llm__cpu_swiglu_fwd(void *st, float *out, const float *inp, int N, int H) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.in = inp; o.N = N; o.C = H; o.t = 0;
    llm_pool_run(LLM__POOL(st), llm__t_swiglu, &o);
}
static void llm__cpu_swiglu_bwd(void *st, float *dinp, const float *inp, const float *dout, int N, int H) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = dinp; o.in = inp; o.in2 = dout; o.N = N; o.C = H; o.t = 1;
    llm_pool_run(LLM__POOL(st), llm__t_swiglu, &o);
}

/* KV-cache attention: every row's k, v is stored first (by the caller for a few rows: a
 * copy of 2·NKV·HS floats each is cheaper than a round trip through the pool), then the
 * (head, row) attentions run in parallel. The cost of one is about pos + 1 keys (plus a fixed overhead), so in a
 * prefill the late rows weigh far more than the early ones: the items, in the order
 * (head, row), are cut into nth runs of equal total cost (each item goes to the run its
 * start falls in). A decode row splits over heads. Every (row, head) is computed alone,
 * so the result does not depend on the thread count. */
#define LLM__KV_ITEM_COST 16
static void llm__t_kv_store(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    size_t lo, hi;
    llm__split(LLM__CAST(size_t, o->N), ith, nth, &lo, &hi);
    for (size_t i = lo; i < hi; i++)
        llm__kv_store(o->out2, o->out3, o->in, o->idx, o->idx2, LLM__CAST(int, i), o->NH, o->OC, o->C, o->T);
}
static void llm__t_attention_kv(void *a, int ith, int nth) {
    llm__op *o = LLM__CAST(llm__op *, a);
    const int N = o->N, NH = o->NH;
    const int *pos = o->idx2;
    size_t total = 0, at = 0;
    for (int i = 0; i < N; i++) total += LLM__CAST(size_t, pos[i]) + 1 + LLM__KV_ITEM_COST;
    total *= LLM__CAST(size_t, NH);
    const size_t lo = total * LLM__CAST(size_t, ith) / LLM__CAST(size_t, nth);
    const size_t hi = total * LLM__CAST(size_t, ith + 1) / LLM__CAST(size_t, nth);
    for (int h = 0; h < NH && at < hi; h++)
        for (int i = 0; i < N && at < hi; i++) {
            if (at >= lo) llm__attention_kv_head_fast(o->out, o->in, o->out2, o->out3, o->idx, pos, i, h, NH, o->OC, o->C, o->T);
            at += LLM__CAST(size_t, pos[i]) + 1 + LLM__KV_ITEM_COST;
        }
}
static void llm__cpu_attention_kv(void *st, float *out, const float *qkv, float *kcache, float *vcache, const int *seq,
                                  const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    llm__op o; memset(&o, 0, sizeof o);
    o.out = out; o.in = qkv; o.out2 = kcache; o.out3 = vcache; o.idx = seq; o.idx2 = pos;
    o.N = N; o.NH = NH; o.OC = NKV; o.C = HS; o.T = maxT;
    if (N <= 64) llm__t_kv_store(&o, 0, 1);
    else llm_pool_run(LLM__POOL(st), llm__t_kv_store, &o);
    llm_pool_run(LLM__POOL(st), llm__t_attention_kv, &o);
}

static void llm__cpu_copy_dev(void *st, void *dst, const void *src, size_t bytes) { (void)st; if (bytes) memmove(dst, src, bytes); }
static llm_status llm__cpu_sync(void *st) { (void)st; return LLM_OK; }

static const llm_backend llm__cpu_backend_table = {
    "cpu", llm__cpu_create, llm__cpu_destroy, llm__cpu_alloc, llm__cpu_release, llm__cpu_copy,
    llm__cpu_copy, llm__cpu_zero, llm__cpu_copy_dev, llm__cpu_sync,
    llm__cpu_encoder_fwd, llm__cpu_encoder_bwd,
    llm__cpu_layernorm_fwd, llm__cpu_layernorm_bwd, llm__cpu_rmsnorm_fwd, llm__cpu_rmsnorm_bwd,
    llm__cpu_matmul_fwd, llm__cpu_matmul_bwd,
    llm__cpu_rope_fwd, llm__cpu_rope_bwd, llm__cpu_attention_fwd, llm__cpu_attention_bwd, llm__cpu_attention_kv,
    llm__cpu_gelu_fwd, llm__cpu_gelu_bwd, llm__cpu_swiglu_fwd, llm__cpu_swiglu_bwd,
    llm__cpu_residual_fwd, llm__cpu_residual_bwd,
    llm__cpu_crossentropy_fwd, llm__cpu_crossentropy_bwd, llm__cpu_sumsq, llm__cpu_adamw
};
LLMDEF const llm_backend *llm_cpu_backend(void) { return &llm__cpu_backend_table; }

