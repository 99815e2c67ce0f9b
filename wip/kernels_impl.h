//==== KERNELS ==========================================================================
/* Reference kernels: plain loops, one op each, forward beside backward, in the order
 * the model calls them. They are the executable definition of each op; the CPU
 * backend runs them (or a SIMD version tested against them) on slices in parallel.
 * Backward kernels ADD into every gradient output (+=), as autograd accumulates. */

/* Token + position embedding. out[b,t,:] = wte[tok[b,t],:] + wpe[t,:] (wpe NULL: the
 * token embedding alone, as Llama, whose positions come from RoPE).
 * PyTorch: wte(tok) + wpe(arange(T)). */
static LLM__UNUSED void llm__encoder_fwd_ref(float *out, const int *tok, const float *wte, const float *wpe,
                                 int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + (LLM__CAST(size_t, b) * T + t) * C;
            const float *we = wte + LLM__CAST(size_t, tok[b * T + t]) * C;
            if (wpe) for (int c = 0; c < C; c++) o[c] = we[c] + wpe[LLM__CAST(size_t, t) * C + c];
            else memcpy(o, we, LLM__CAST(size_t, C) * sizeof(float));
        }
}
/* dwte[tok[b,t],:] += dout[b,t,:], dwpe[t,:] += dout[b,t,:]. */
static LLM__UNUSED void llm__encoder_bwd_ref(float *dwte, float *dwpe, const float *dout, const int *tok,
                                 int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + (LLM__CAST(size_t, b) * T + t) * C;
            float *dwe = dwte + LLM__CAST(size_t, tok[b * T + t]) * C;
            for (int c = 0; c < C; c++) dwe[c] += d[c];
            if (dwpe) for (int c = 0; c < C; c++) dwpe[LLM__CAST(size_t, t) * C + c] += d[c];
        }
}

/* LayerNorm over the last dimension, eps 1e-5 (GPT-2), biased variance:
 *   mean = Σx/C, var = Σ(x-mean)²/C, rstd = 1/sqrt(var+eps),
 *   out = (x - mean) * rstd * w + b.   PyTorch: F.layer_norm(x, (C,), w, b, 1e-5). */
#define LLM__LN_EPS 1e-5f
static LLM__UNUSED void llm__layernorm_fwd_ref(float *out, float *mean, float *rstd, const float *inp,
                                   const float *w, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C;
        float m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        float s = 1.0f / sqrtf(v + LLM__LN_EPS);
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[n] = m; rstd[n] = s;
    }
}
/* With xhat = (x-mean)*rstd and g = dout*w (the gradient at xhat):
 *   db += dout, dw += dout*xhat,
 *   dx += rstd * (g - mean(g) - xhat * mean(g*xhat))
 * (the two means remove the parts of g that the normalisation cancels). */
static LLM__UNUSED void llm__layernorm_bwd_ref(float *dinp, float *dw, float *db, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        float m = mean[n], s = rstd[n], gmean = 0, gxmean = 0;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, g = d[c] * w[c];
            gmean += g; gxmean += g * xhat;
        }
        gmean /= C; gxmean /= C;
        for (int c = 0; c < C; c++) {
            float xhat = (x[c] - m) * s, g = d[c] * w[c];
            db[c] += d[c];
            dw[c] += d[c] * xhat;
            dx[c] += s * (g - gmean - xhat * gxmean);
        }
    }
}

/* RMSNorm (Llama): r = 1/sqrt(mean(x²) + eps), out = x · r · w.  rstd (N) saved.
 * PyTorch: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w. */
static LLM__UNUSED void llm__rmsnorm_fwd_ref(float *out, float *rstd, const float *inp, const float *w,
                                             int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C;
        float *o = out + LLM__CAST(size_t, n) * C, ss = 0;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / C + eps);
        for (int c = 0; c < C; c++) o[c] = w[c] * (r * x[c]);
        rstd[n] = r;
    }
}
/* With g = dout·w:  dw += dout · x · r,  dx += r · (g - x · r² · mean(g·x)). */
static LLM__UNUSED void llm__rmsnorm_bwd_ref(float *dinp, float *dw, const float *dout, const float *inp,
                                             const float *w, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + LLM__CAST(size_t, n) * C, *d = dout + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C, r = rstd[n], gx = 0;
        for (int c = 0; c < C; c++) gx += d[c] * w[c] * x[c];
        gx /= C;
        for (int c = 0; c < C; c++) {
            dw[c] += d[c] * x[c] * r;
            dx[c] += r * (d[c] * w[c] - x[c] * r * r * gx);
        }
    }
}

/* Rotary position embedding (RoPE), in place on the q and k parts of qkv rows laid out
 * as for attention. Within each head, the pair (x[i], x[i+1]) for even i is rotated by
 * the angle pos · theta^(-i/HS):  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).
 * This is llama2.c's (and Meta's) interleaved convention; HF's rotate_half layout is
 * the same after a permutation of the q/k weight rows. pos (B,T) or NULL for pos = t.
 * The angle is computed in float exactly as llama2.c does, so logits match it. */
static void llm__rope_rotate(float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS,
                             float theta, float sign) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS;
    for (int bt = 0; bt < B * T; bt++) {
        float *x = qkv + LLM__CAST(size_t, bt) * row;
        int p = pos ? pos[bt] : bt % T;
        for (int i = 0; i < HS; i += 2) {
            float freq = 1.0f / powf(theta, LLM__CAST(float, i) / LLM__CAST(float, HS));
            float val = LLM__CAST(float, p) * freq, c = cosf(val), s = sign * sinf(val);
            for (int h = 0; h < NH + NKV; h++) {   /* the NH query heads, then the NKV key heads */
                float *v = x + LLM__CAST(size_t, h) * HS + i, x0 = v[0], x1 = v[1];
                v[0] = x0 * c - x1 * s;
                v[1] = x0 * s + x1 * c;
            }
        }
    }
}
static LLM__UNUSED void llm__rope_fwd_ref(float *qkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__rope_rotate(qkv, pos, B, T, NH, NKV, HS, theta, 1.0f);
}
/* A rotation is orthogonal: its backward is the rotation by -angle, applied to the
 * gradient in place (this op transforms dqkv rather than accumulating into it). */
static LLM__UNUSED void llm__rope_bwd_ref(float *dqkv, const int *pos, int B, int T, int NH, int NKV, int HS, float theta) {
    llm__rope_rotate(dqkv, pos, B, T, NH, NKV, HS, theta, -1.0f);
}

/* SwiGLU (Llama's MLP nonlinearity): inp rows (2H) hold [gate | up], the outputs of
 * w1 and w3 fused into one matmul; out (H) = silu(gate) · up, silu(g) = g·σ(g).
 *   d up = dout · silu(g),  d gate = dout · up · σ(g) (1 + g (1 - σ(g))).
 * PyTorch: F.silu(x @ w1.T) * (x @ w3.T). */
static LLM__UNUSED void llm__swiglu_fwd_ref(float *out, const float *inp, int N, int H) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H;
        float *o = out + LLM__CAST(size_t, n) * H;
        for (int i = 0; i < H; i++) o[i] = g[i] * (1.0f / (1.0f + expf(-g[i]))) * u[i];
    }
}
static LLM__UNUSED void llm__swiglu_bwd_ref(float *dinp, const float *inp, const float *dout, int N, int H) {
    for (int n = 0; n < N; n++) {
        const float *g = inp + LLM__CAST(size_t, n) * 2 * H, *u = g + H, *d = dout + LLM__CAST(size_t, n) * H;
        float *dg = dinp + LLM__CAST(size_t, n) * 2 * H, *du = dg + H;
        for (int i = 0; i < H; i++) {
            float sg = 1.0f / (1.0f + expf(-g[i]));
            du[i] += d[i] * g[i] * sg;
            dg[i] += d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        }
    }
}

/* Fully connected layer: out (N,OC) = inp (N,C) @ w(OC,C)^T + bias(OC).
 * PyTorch: F.linear(inp, w, bias). */
static LLM__UNUSED void llm__matmul_fwd_ref(float *out, const float *inp, const float *w, const float *bias,
                                int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            const float *x = inp + LLM__CAST(size_t, n) * C, *wr = w + LLM__CAST(size_t, o) * C;
            float acc = bias ? bias[o] : 0.0f;
            for (int c = 0; c < C; c++) acc += x[c] * wr[c];
            out[LLM__CAST(size_t, n) * OC + o] = acc;
        }
}
/* dinp += dout @ w, dw += dout^T @ inp, dbias += Σ_n dout. */
static LLM__UNUSED void llm__matmul_bwd_ref(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    for (int n = 0; n < N; n++) {
        const float *d = dout + LLM__CAST(size_t, n) * OC, *x = inp + LLM__CAST(size_t, n) * C;
        float *dx = dinp + LLM__CAST(size_t, n) * C;
        for (int o = 0; o < OC; o++) {
            const float *wr = w + LLM__CAST(size_t, o) * C;
            float *dwr = dw + LLM__CAST(size_t, o) * C;
            for (int c = 0; c < C; c++) { dx[c] += d[o] * wr[c]; dwr[c] += d[o] * x[c]; }
            if (dbias) dbias[o] += d[o];
        }
    }
}

/* Causal self-attention for one (batch b, query head h), with grouped-query
 * attention: qkv rows hold [q (NH*HS) | k (NKV*HS) | v (NKV*HS)] and query head h
 * reads key/value head h / (NH/NKV) (GPT-2: NKV = NH). For query t over keys t2 <= t:
 *   s(t2) = q_t·k_t2 / sqrt(HS),  p = softmax(s) (max subtracted), out_t = Σ p(t2) v_t2,
 * and lse_t = log Σ exp(s) is saved so that backward can recompute p without ever
 * storing the (T,T) matrix. PyTorch: F.scaled_dot_product_attention(q,k,v,is_causal=True). */
static void llm__attention_fwd_head(float *out, float *lse, const float *qkv, int b, int h,
                                    int T, int NH, int NKV, int HS) {
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    const float *base = qkv + LLM__CAST(size_t, b) * T * row;
    for (int t = 0; t < T; t++) {
        const float *q = base + t * row + LLM__CAST(size_t, h) * HS;
        float *o = out + (LLM__CAST(size_t, b) * T + t) * C + LLM__CAST(size_t, h) * HS;
        float mx = -FLT_MAX, sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {            /* pass 1: the max, for stability */
            const float *k = base + t2 * row + koff;
            float s = 0;
            for (int i = 0; i < HS; i++) s += q[i] * k[i];
            s *= scale;
            if (s > mx) mx = s;
        }
        for (int i = 0; i < HS; i++) o[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {            /* pass 2: weights and values */
            const float *k = base + t2 * row + koff, *v = base + t2 * row + voff;
            float s = 0;
            for (int i = 0; i < HS; i++) s += q[i] * k[i];
            float e = expf(s * scale - mx);
            sum += e;
            for (int i = 0; i < HS; i++) o[i] += e * v[i];
        }
        for (int i = 0; i < HS; i++) o[i] /= sum;
        lse[(LLM__CAST(size_t, b) * NH + h) * T + t] = mx + logf(sum);
    }
}
/* Backward for one (b, h), recomputing p = exp(s - lse). With D_t = dout_t·out_t:
 *   dv_t2 += p dout_t,  dp = dout_t·v_t2,  ds = p (dp - D_t)   (softmax backward),
 *   dq_t += ds k_t2 / sqrt(HS),  dk_t2 += ds q_t / sqrt(HS).
 * Query heads that share a key/value head all add into its dk, dv. */
static void llm__attention_bwd_head(float *dqkv, const float *dout, const float *qkv,
                                    const float *out, const float *lse, int b, int h,
                                    int T, int NH, int NKV, int HS) {
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS));
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, C = LLM__CAST(size_t, NH) * HS;
    size_t koff = C + LLM__CAST(size_t, h / (NH / NKV)) * HS, voff = koff + LLM__CAST(size_t, NKV) * HS;
    size_t off = LLM__CAST(size_t, b) * T * row;
    const float *base = qkv + off;
    float *dbase = dqkv + off;
    for (int t = 0; t < T; t++) {
        size_t ot = (LLM__CAST(size_t, b) * T + t) * C + LLM__CAST(size_t, h) * HS;
        const float *q = base + t * row + LLM__CAST(size_t, h) * HS, *d = dout + ot, *o = out + ot;
        float *dq = dbase + t * row + LLM__CAST(size_t, h) * HS;
        float L = lse[(LLM__CAST(size_t, b) * NH + h) * T + t], D = 0;
        for (int i = 0; i < HS; i++) D += d[i] * o[i];
        for (int t2 = 0; t2 <= t; t2++) {
            const float *k = base + t2 * row + koff, *v = base + t2 * row + voff;
            float *dk = dbase + t2 * row + koff, *dv = dbase + t2 * row + voff;
            float s = 0, dp = 0;
            for (int i = 0; i < HS; i++) { s += q[i] * k[i]; dp += d[i] * v[i]; }
            float p = expf(s * scale - L), ds = p * (dp - D) * scale;
            for (int i = 0; i < HS; i++) {
                dv[i] += p * d[i];
                dq[i] += ds * k[i];
                dk[i] += ds * q[i];
            }
        }
    }
}
static LLM__UNUSED void llm__attention_fwd_ref(float *out, float *lse, const float *qkv, int B, int T,
                                               int NH, int NKV, int HS) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) llm__attention_fwd_head(out, lse, qkv, b, h, T, NH, NKV, HS);
}
static LLM__UNUSED void llm__attention_bwd_ref(float *dqkv, const float *dout, const float *qkv, const float *out,
                                               const float *lse, int B, int T, int NH, int NKV, int HS) {
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) llm__attention_bwd_head(dqkv, dout, qkv, out, lse, b, h, T, NH, NKV, HS);
}

/* Attention against a KV cache, for generation. Row i (of N) is the token at position
 * pos[i] of sequence seq[i]. Its key and value (from qkv, laid out as above) are first
 * stored in kcache/vcache (S, maxT, NKV*HS) at [seq[i], pos[i]]; then its query attends
 * over positions 0..pos[i] of its own sequence. Storing every row before attending lets
 * one call prefill a whole prompt (row t sees the rows before it) or advance many
 * sequences by one token each. out (N, NH*HS). */
static void llm__kv_store(float *kcache, float *vcache, const float *qkv, const int *seq, const int *pos,
                          int i, int NH, int NKV, int HS, int maxT) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    size_t dst = (LLM__CAST(size_t, seq[i]) * maxT + LLM__CAST(size_t, pos[i])) * kvw;
    const float *src = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, NH) * HS;
    memcpy(kcache + dst, src, kvw * sizeof(float));
    memcpy(vcache + dst, src + kvw, kvw * sizeof(float));
}
static void llm__attention_kv_row(float *out, const float *qkv, const float *kcache, const float *vcache,
                                  const int *seq, const int *pos, int i, int h, int NH, int NKV, int HS, int maxT) {
    size_t row = LLM__CAST(size_t, NH + 2 * NKV) * HS, kvw = LLM__CAST(size_t, NKV) * HS;
    const float *q = qkv + LLM__CAST(size_t, i) * row + LLM__CAST(size_t, h) * HS;
    size_t base = LLM__CAST(size_t, seq[i]) * maxT * kvw + LLM__CAST(size_t, h / (NH / NKV)) * HS;
    float *o = out + LLM__CAST(size_t, i) * NH * HS + LLM__CAST(size_t, h) * HS;
    float scale = 1.0f / sqrtf(LLM__CAST(float, HS)), mx = -FLT_MAX, sum = 0;
    for (int t2 = 0; t2 <= pos[i]; t2++) {
        const float *k = kcache + base + LLM__CAST(size_t, t2) * kvw;
        float s = 0;
        for (int j = 0; j < HS; j++) s += q[j] * k[j];
        if (s * scale > mx) mx = s * scale;
    }
    for (int j = 0; j < HS; j++) o[j] = 0;
    for (int t2 = 0; t2 <= pos[i]; t2++) {
        const float *k = kcache + base + LLM__CAST(size_t, t2) * kvw, *v = vcache + base + LLM__CAST(size_t, t2) * kvw;
        float s = 0;
        for (int j = 0; j < HS; j++) s += q[j] * k[j];
        float e = expf(s * scale - mx);
        sum += e;
        for (int j = 0; j < HS; j++) o[j] += e * v[j];
    }
    for (int j = 0; j < HS; j++) o[j] /= sum;
}
static LLM__UNUSED void llm__attention_kv_ref(float *out, const float *qkv, float *kcache, float *vcache,
                                              const int *seq, const int *pos, int N, int NH, int NKV, int HS, int maxT) {
    for (int i = 0; i < N; i++) llm__kv_store(kcache, vcache, qkv, seq, pos, i, NH, NKV, HS, maxT);
    for (int i = 0; i < N; i++)
        for (int h = 0; h < NH; h++) llm__attention_kv_row(out, qkv, kcache, vcache, seq, pos, i, h, NH, NKV, HS, maxT);
}

/* GELU, tanh approximation (GPT-2; PyTorch F.gelu(x, approximate="tanh")):
 *   y = x/2 · (1 + tanh(u)),  u = sqrt(2/π) (x + 0.044715 x³)
 *   dy/dx = (1 + tanh u)/2 + x/2 · (1 - tanh² u) · sqrt(2/π) (1 + 3·0.044715 x²) */
#define LLM__GELU_K 0.7978845608028654f /* sqrt(2/pi) */
static LLM__UNUSED void llm__gelu_fwd_ref(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(LLM__GELU_K * (x + 0.044715f * x * x * x)));
    }
}
static LLM__UNUSED void llm__gelu_bwd_ref(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], th = tanhf(LLM__GELU_K * (x + 0.044715f * x * x * x));
        float du = LLM__GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du);
    }
}

/* Residual connection: out = a + b; both inputs receive the gradient unchanged. */
static LLM__UNUSED void llm__residual_fwd_ref(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
static LLM__UNUSED void llm__residual_bwd_ref(float *da, float *db, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) { da[i] += dout[i]; db[i] += dout[i]; }
}

/* Fused softmax + cross-entropy over V logits per row, without materialising the
 * probabilities: lse = m + log Σ exp(x - m) (m = max x), loss = lse - x[target].
 * Rows whose target is negative (PyTorch's ignore_index) get loss 0.
 * PyTorch: F.cross_entropy(logits, targets, reduction="none"). */
static LLM__UNUSED void llm__crossentropy_fwd_ref(float *losses, float *lse, const float *logits,
                                      const int *targets, int N, int V) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + LLM__CAST(size_t, n) * V;
        float m = -FLT_MAX, s = 0;
        for (int i = 0; i < V; i++) if (x[i] > m) m = x[i];
        for (int i = 0; i < V; i++) s += expf(x[i] - m);
        lse[n] = m + logf(s);
        losses[n] = targets[n] < 0 ? 0.0f : lse[n] - x[targets[n]];
    }
}
/* dlogits = (softmax(x) - onehot(target)) · dloss, written over the logits. */
static LLM__UNUSED void llm__crossentropy_bwd_ref(float *logits, const float *lse, const int *targets,
                                      float dloss, int N, int V) {
    for (int n = 0; n < N; n++) {
        float *x = logits + LLM__CAST(size_t, n) * V;
        int y = targets[n];
        for (int i = 0; i < V; i++)
            x[i] = y < 0 ? 0.0f : (expf(x[i] - lse[n]) - (i == y ? 1.0f : 0.0f)) * dloss;
    }
}

/* Σ x², accumulated in double: the squared global gradient norm. */
static LLM__UNUSED double llm__sumsq_ref(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += LLM__CAST(double, x[i]) * x[i];
    return s;
}

/* AdamW (Loshchilov & Hutter), in torch.optim.AdamW's order: decay, then Adam.
 *   g = grad·grad_scale;  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
 *   p -= lr·wd·p;  p -= lr · (m/(1-β1^t)) / (sqrt(v/(1-β2^t)) + eps) */
static LLM__UNUSED void llm__adamw_ref(float *p, const float *grad, float *m, float *v, size_t n, float lr,
                           float beta1, float beta2, float eps, float wd, float grad_scale, int t) {
    float bc1 = 1.0f - powf(beta1, LLM__CAST(float, t)), bc2 = 1.0f - powf(beta2, LLM__CAST(float, t));
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        p[i] -= lr * wd * p[i];
        p[i] -= lr * (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
    }
}

