//==== MODEL ============================================================================
/* Activations of one forward pass, all views into one buffer sized for (B, T). Only
 * what backward reads is kept per layer; the projections before each residual add go
 * through one scratch tensor. QKV = (NH+2NKV)*HS, F = fc width (4C or 2H), H = MLP
 * hidden (4C or H). */
typedef struct llm__acts {
    float *encoded;    /* (B, T, C) */
    float *ln1;        /* (L, B, T, C) */
    float *ln1_mean;   /* (L, B, T)   (LayerNorm only) */
    float *ln1_rstd;   /* (L, B, T) */
    float *qkv;        /* (L, B, T, QKV)  after RoPE for Llama */
    float *atty;       /* (L, B, T, C) */
    float *att_lse;    /* (L, B, NH, T)   log-sum-exp of each attention row */
    float *residual2;  /* (L, B, T, C) */
    float *ln2;        /* (L, B, T, C) */
    float *ln2_mean;   /* (L, B, T) */
    float *ln2_rstd;   /* (L, B, T) */
    float *fch;        /* (L, B, T, F) */
    float *fch_act;    /* (L, B, T, H)    gelu(fch) or swiglu(fch) */
    float *residual3;  /* (L, B, T, C) */
    float *lnf;        /* (B, T, C) */
    float *lnf_mean;   /* (B, T) */
    float *lnf_rstd;   /* (B, T) */
    float *logits;     /* (B, T, V); holds dlogits after backward */
    float *lse;        /* (B, T) */
    float *losses;     /* (B, T) */
    float *proj;       /* (B, T, C) scratch: attention / MLP output before the residual add */
    /* gradient scratch for one layer at a time (backward) */
    float *dres;       /* (B, T, C) gradient of the residual stream */
    float *dC;         /* (B, T, C) */
    float *dqkv;       /* (B, T, QKV) */
    float *dH;         /* (B, T, H) */
    float *dF;         /* (B, T, F) */
} llm__acts;
#define LLM__NACTS 26

struct llm_model {
    llm_config cfg;                    /* defaults filled in */
    int QKV, F, H;                     /* widths derived from cfg (see llm__acts) */
    const llm_backend *be;
    void *st;                          /* backend state */
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS], n_params;
    float *params_mem, *grads_mem;     /* (n_params) device */
    float *m_mem, *v_mem;              /* (n_params) AdamW moments, on first step */
    llm_params p, g;                   /* views into params_mem / grads_mem */
    int t;                             /* optimizer steps taken */
    /* activations */
    size_t cap_BT;                     /* reserved B*T */
    int cap_T;
    float *acts_mem;
    llm__acts a;
    int *tokens, *targets;             /* (B, T) device */
    float *host_losses;                /* (B, T) host */
    int B, T;                          /* of the last forward */
    int have_targets, n_valid, logits_state;   /* logits_state: 0 none, 1 logits, 2 dlogits */
};

static const char *const llm__tensor_names[LLM_NTENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "wcls"};
LLMDEF const char *llm_tensor_name(int i) { return i >= 0 && i < LLM_NTENSORS ? llm__tensor_names[i] : "?"; }

LLMDEF llm_config llm_config_gpt2(void) {
    llm_config c;
    memset(&c, 0, sizeof c);
    c.arch = LLM_ARCH_GPT2;
    c.max_seq_len = 1024; c.vocab_size = 50257; c.n_layer = 12; c.n_head = 12; c.n_embd = 768;
    return c;
}
LLMDEF llm_config llm_config_llama(int vocab_size, int n_layer, int n_head, int n_kv_head, int n_embd, int hidden_dim) {
    llm_config c;
    memset(&c, 0, sizeof c);
    c.arch = LLM_ARCH_LLAMA;
    c.max_seq_len = 1024; c.vocab_size = vocab_size; c.n_layer = n_layer; c.n_head = n_head;
    c.n_kv_head = n_kv_head; c.n_embd = n_embd; c.hidden_dim = hidden_dim;
    return c;
}

/* Fill the defaults in and check that the shape is possible. */
static llm_status llm__config_resolve(llm_config *c) {
    if (c->arch != LLM_ARCH_GPT2 && c->arch != LLM_ARCH_LLAMA) return llm__err(LLM_ERR_ARG, "config: unknown arch %d", LLM__CAST(int, c->arch));
    int gpt2 = c->arch == LLM_ARCH_GPT2;
    if (c->n_kv_head == 0 || gpt2) c->n_kv_head = c->n_head;
    if (c->hidden_dim == 0 && gpt2) c->hidden_dim = c->n_embd > 0 && c->n_embd <= (1 << 20) ? 4 * c->n_embd : -1;
    if (c->norm_eps == 0.0f) c->norm_eps = 1e-5f;
    if (c->rope_theta == 0.0f) c->rope_theta = 10000.0f;
    if (gpt2) c->untied_head = 0;
    c->untied_head = c->untied_head != 0;
    if (c->n_layer <= 0 || c->n_head <= 0 || c->n_embd <= 0 || c->vocab_size <= 0 || c->max_seq_len <= 0 ||
        c->hidden_dim <= 0 || c->n_kv_head <= 0)
        return llm__err(LLM_ERR_ARG, "config: every size must be positive (L=%d NH=%d NKV=%d C=%d H=%d V=%d maxT=%d)",
                        c->n_layer, c->n_head, c->n_kv_head, c->n_embd, c->hidden_dim, c->vocab_size, c->max_seq_len);
    if (c->n_embd % c->n_head != 0)
        return llm__err(LLM_ERR_ARG, "config: n_head %d does not divide n_embd %d", c->n_head, c->n_embd);
    if (c->n_head % c->n_kv_head != 0)
        return llm__err(LLM_ERR_ARG, "config: n_kv_head %d does not divide n_head %d", c->n_kv_head, c->n_head);
    if (!gpt2 && (c->n_embd / c->n_head) % 2)
        return llm__err(LLM_ERR_ARG, "config: RoPE needs an even head size, got %d", c->n_embd / c->n_head);
    /* keep every index computation well inside size_t and int */
    if (c->n_layer > 4096 || c->n_embd > 65536 || c->hidden_dim > (1 << 20) || c->vocab_size > (1 << 24) || c->max_seq_len > (1 << 20))
        return llm__err(LLM_ERR_ARG, "config: sizes out of range (L=%d C=%d H=%d V=%d maxT=%d)",
                        c->n_layer, c->n_embd, c->hidden_dim, c->vocab_size, c->max_seq_len);
    if (!(c->norm_eps > 0.0f) || !(c->rope_theta > 0.0f)) return llm__err(LLM_ERR_ARG, "config: norm_eps and rope_theta must be positive");
    return LLM_OK;
}

LLMDEF void llm_tensor_layout(const llm_config *cfg, size_t off[LLM_NTENSORS], size_t size[LLM_NTENSORS]) {
    llm_config c = *cfg;
    llm__config_resolve(&c);
    size_t C = LLM__CAST(size_t, c.n_embd), L = LLM__CAST(size_t, c.n_layer), V = LLM__CAST(size_t, c.vocab_size);
    size_t T = LLM__CAST(size_t, c.max_seq_len), HS = C / LLM__CAST(size_t, c.n_head);
    size_t QKV = LLM__CAST(size_t, c.n_head + 2 * c.n_kv_head) * HS, H = LLM__CAST(size_t, c.hidden_dim);
    int gpt2 = c.arch == LLM_ARCH_GPT2;
    size_t F = gpt2 ? H : 2 * H, bias = gpt2 ? 1 : 0;   /* GPT-2 has biases, Llama none */
    size_t s[LLM_NTENSORS];
    s[0] = V * C; s[1] = gpt2 ? T * C : 0; s[2] = L * C; s[3] = bias * L * C;
    s[4] = L * QKV * C; s[5] = bias * L * QKV; s[6] = L * C * C; s[7] = bias * L * C;
    s[8] = L * C; s[9] = bias * L * C; s[10] = L * F * C; s[11] = bias * L * F;
    s[12] = L * C * H; s[13] = bias * L * C; s[14] = C; s[15] = bias * C;
    s[16] = c.untied_head ? V * C : 0;
    size_t o = 0;
    for (int i = 0; i < LLM_NTENSORS; i++) { off[i] = o; size[i] = s[i]; o += s[i]; }
}

static void llm__param_views(llm_params *v, float *mem, const size_t off[LLM_NTENSORS], const size_t size[LLM_NTENSORS]) {
    float **f[LLM_NTENSORS] = {&v->wte, &v->wpe, &v->ln1w, &v->ln1b, &v->qkvw, &v->qkvb,
        &v->attprojw, &v->attprojb, &v->ln2w, &v->ln2b, &v->fcw, &v->fcb, &v->fcprojw, &v->fcprojb,
        &v->lnfw, &v->lnfb, &v->wcls};
    for (int i = 0; i < LLM_NTENSORS; i++) *f[i] = mem && size[i] ? mem + off[i] : NULL;
}

/* A model with zeroed parameters and no activations: the common part of create/load. */
static llm_status llm__model_new(llm_model **out, const llm_config *cfg, const llm_options *opt) {
    *out = NULL;
    llm_config c = *cfg;
    llm_status s = llm__config_resolve(&c);
    if (s != LLM_OK) return s;
    llm_model *m = LLM__CAST(llm_model *, llm__calloc(1, sizeof *m));
    if (!m) return llm__err(LLM_ERR_NOMEM, "model: out of memory");
    m->cfg = c;
    int HS = c.n_embd / c.n_head;
    m->QKV = (c.n_head + 2 * c.n_kv_head) * HS;
    m->H = c.hidden_dim;
    m->F = c.arch == LLM_ARCH_GPT2 ? m->H : 2 * m->H;
    m->be = opt && opt->backend ? opt->backend : llm_cpu_backend();
    if ((s = m->be->create(&m->st, opt)) != LLM_OK) { LLM_FREE(m); return s; }
    llm_tensor_layout(&c, m->off, m->size);
    m->n_params = m->off[LLM_NTENSORS - 1] + m->size[LLM_NTENSORS - 1];
    m->params_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
    if (!m->params_mem) { llm_model_free(m); return LLM_ERR_NOMEM; }
    m->be->zero(m->st, m->params_mem, m->n_params * sizeof(float));
    llm__param_views(&m->p, m->params_mem, m->off, m->size);
    *out = m;
    return LLM_OK;
}

/* Which tensors are matmul weights or embeddings (initialised N(0, 0.02), decayed by
 * AdamW as nanoGPT does), which are norm gains (1), and which project into the
 * residual stream (scaled by 1/sqrt(2L)). */
static int llm__is_2d(int i) { return i == 0 || i == 1 || i == 4 || i == 6 || i == 10 || i == 12 || i == 16; }
static int llm__is_gain(int i) { return i == 2 || i == 8 || i == 14; }

LLMDEF llm_status llm_model_create(llm_model **out, const llm_config *cfg, const llm_options *opt, uint64_t seed) {
    if (!out || !cfg) return llm__err(LLM_ERR_ARG, "llm_model_create: NULL argument");
    llm_model *m;
    llm_status s = llm__model_new(&m, cfg, opt);
    if (s != LLM_OK) { *out = NULL; return s; }
    float *h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { llm_model_free(m); *out = NULL; return llm__err(LLM_ERR_NOMEM, "model: out of memory for init"); }
    /* GPT-2's init: N(0, 0.02) for weights, the two projections that write into the
     * residual stream scaled by 1/sqrt(2L) so that its variance does not grow with
     * depth; biases 0; norm gains 1. */
    llm_rng r;
    llm_rng_seed(&r, seed);
    float proj_std = 0.02f / sqrtf(2.0f * LLM__CAST(float, m->cfg.n_layer));
    for (int i = 0; i < LLM_NTENSORS; i++) {
        float *t = h + m->off[i];
        float std = (i == 6 || i == 12) ? proj_std : 0.02f;
        for (size_t j = 0; j < m->size[i]; j++)
            t[j] = llm__is_2d(i) ? std * llm_rng_normal(&r) : llm__is_gain(i) ? 1.0f : 0.0f;
    }
    s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
    LLM_FREE(h);
    if (s != LLM_OK) { llm_model_free(m); *out = NULL; return s; }
    *out = m;
    return LLM_OK;
}

LLMDEF void llm_model_free(llm_model *m) {
    if (!m) return;
    if (m->st) {
        void *bufs[7] = {m->params_mem, m->grads_mem, m->m_mem, m->v_mem, m->acts_mem, m->tokens, m->targets};
        for (int i = 0; i < 7; i++) if (bufs[i]) m->be->release(m->st, bufs[i]);
        m->be->destroy(m->st);
    }
    LLM_FREE(m->host_losses);
    LLM_FREE(m);
}

LLMDEF llm_config llm_model_config(const llm_model *m) { return m->cfg; }
LLMDEF size_t llm_model_num_params(const llm_model *m) { return m->n_params; }
LLMDEF int llm_model_step_count(const llm_model *m) { return m->t; }

LLMDEF llm_status llm_model_get_params(const llm_model *m, float *dst) {
    return m->be->download(m->st, dst, m->params_mem, m->n_params * sizeof(float));
}
LLMDEF llm_status llm_model_set_params(llm_model *m, const float *src) {
    return m->be->upload(m->st, m->params_mem, src, m->n_params * sizeof(float));
}
LLMDEF llm_status llm_model_get_grads(const llm_model *m, float *dst) {
    if (!m->grads_mem) return llm__err(LLM_ERR_STATE, "get_grads: no gradients yet (run backward)");
    return m->be->download(m->st, dst, m->grads_mem, m->n_params * sizeof(float));
}

/* Lay the activation views out for (B, T) inside acts_mem; returns the floats needed
 * (mem may be NULL to only count). Each tensor starts on a 16-float boundary. */
static size_t llm__act_views(llm__acts *a, float *mem, const llm_model *m, size_t B, size_t T) {
    const llm_config *c = &m->cfg;
    size_t L = LLM__CAST(size_t, c->n_layer), C = LLM__CAST(size_t, c->n_embd), NH = LLM__CAST(size_t, c->n_head);
    size_t V = LLM__CAST(size_t, c->vocab_size), BT = B * T;
    size_t QKV = LLM__CAST(size_t, m->QKV), F = LLM__CAST(size_t, m->F), H = LLM__CAST(size_t, m->H);
    size_t n[LLM__NACTS] = {
        BT * C, L * BT * C, L * BT, L * BT, L * BT * QKV, L * BT * C, L * B * NH * T, L * BT * C,
        L * BT * C, L * BT, L * BT, L * BT * F, L * BT * H, L * BT * C, BT * C, BT, BT,
        BT * V, BT, BT, BT * C, BT * C, BT * C, BT * QKV, BT * H, BT * F};
    float **views[LLM__NACTS] = {&a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv,
        &a->atty, &a->att_lse, &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch,
        &a->fch_act, &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits, &a->lse,
        &a->losses, &a->proj, &a->dres, &a->dC, &a->dqkv, &a->dH, &a->dF};
    size_t o = 0;
    for (int i = 0; i < LLM__NACTS; i++) {
        *views[i] = mem ? mem + o : NULL;
        o += (n[i] + 15) & ~LLM__CAST(size_t, 15);
    }
    return o;
}

LLMDEF llm_status llm_model_reserve(llm_model *m, int B, int T) {
    if (B <= 0 || T <= 0) return llm__err(LLM_ERR_ARG, "reserve: B=%d and T=%d must be positive", B, T);
    if (T > m->cfg.max_seq_len)
        return llm__err(LLM_ERR_ARG, "reserve: T=%d exceeds the model's context of %d", T, m->cfg.max_seq_len);
    size_t BT = LLM__CAST(size_t, B) * LLM__CAST(size_t, T);
    if (BT <= m->cap_BT && T <= m->cap_T) return LLM_OK;
    size_t per_token = LLM__CAST(size_t, m->cfg.vocab_size) + LLM__CAST(size_t, m->cfg.n_layer) * 
                       (8 * LLM__CAST(size_t, m->cfg.n_embd) + LLM__CAST(size_t, m->QKV + m->F + m->H)) + 64;
    if (BT > (SIZE_MAX / 64) / per_token) return llm__err(LLM_ERR_NOMEM, "reserve: B=%d T=%d is too large", B, T);
    llm__acts a;
    size_t need = llm__act_views(&a, NULL, m, LLM__CAST(size_t, B), LLM__CAST(size_t, T));
    if (m->acts_mem) m->be->release(m->st, m->acts_mem);
    if (m->tokens) m->be->release(m->st, m->tokens);
    if (m->targets) m->be->release(m->st, m->targets);
    LLM_FREE(m->host_losses);
    m->acts_mem = NULL; m->tokens = m->targets = NULL; m->host_losses = NULL;
    m->cap_BT = 0; m->cap_T = 0; m->logits_state = 0; m->have_targets = 0;
    m->acts_mem = LLM__CAST(float *, m->be->alloc(m->st, need * sizeof(float)));
    m->tokens = LLM__CAST(int *, m->be->alloc(m->st, BT * sizeof(int)));
    m->targets = LLM__CAST(int *, m->be->alloc(m->st, BT * sizeof(int)));
    m->host_losses = LLM__CAST(float *, LLM_MALLOC(BT * sizeof(float)));
    if (!m->acts_mem || !m->tokens || !m->targets || !m->host_losses)
        return llm__err(LLM_ERR_NOMEM, "reserve: out of memory for activations of B=%d T=%d (%zu MB)",
                        B, T, need * sizeof(float) >> 20);
    m->cap_BT = BT; m->cap_T = T;
    return LLM_OK;
}

static llm_status llm__check_tokens(const int *tok, size_t n, int V, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= V)
            return llm__err(LLM_ERR_ARG, "%s[%zu] = %d is out of range [0, %d)", what, i, tok[i], V);
    return LLM_OK;
}

/* One norm, whichever the family uses: LayerNorm (with mean) or RMSNorm. */
static void llm__norm_fwd(const llm_model *m, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int N) {
    if (m->cfg.arch == LLM_ARCH_GPT2) m->be->layernorm_fwd(m->st, out, mean, rstd, inp, w, b, N, m->cfg.n_embd);
    else m->be->rmsnorm_fwd(m->st, out, rstd, inp, w, N, m->cfg.n_embd, m->cfg.norm_eps);
}
static void llm__norm_bwd(const llm_model *m, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, const float *mean, const float *rstd, int N) {
    if (m->cfg.arch == LLM_ARCH_GPT2) m->be->layernorm_bwd(m->st, dinp, dw, db, dout, inp, w, mean, rstd, N, m->cfg.n_embd);
    else m->be->rmsnorm_bwd(m->st, dinp, dw, dout, inp, w, rstd, N, m->cfg.n_embd);
}
/* A view of layer l inside a stacked (L, ...) tensor; NULL stays NULL (absent biases). */
static float *llm__at(float *base, int l, size_t per_layer) { return base ? base + LLM__CAST(size_t, l) * per_layer : NULL; }

LLMDEF llm_status llm_model_forward(llm_model *m, const int *tokens, const int *targets, int B, int T, float *loss) {
    if (!m || !tokens) return llm__err(LLM_ERR_ARG, "forward: NULL argument");
    llm_status s = llm_model_reserve(m, B, T);
    if (s != LLM_OK) return s;
    const llm_config *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = C / NH, V = c->vocab_size, BT = B * T;
    int llama = c->arch == LLM_ARCH_LLAMA;
    size_t QKV = LLM__CAST(size_t, m->QKV), F = LLM__CAST(size_t, m->F), H = LLM__CAST(size_t, m->H), uC = LLM__CAST(size_t, C);
    if ((s = llm__check_tokens(tokens, LLM__CAST(size_t, BT), V, "tokens")) != LLM_OK) return s;
    if (targets)
        for (int i = 0; i < BT; i++)
            if (targets[i] >= V) return llm__err(LLM_ERR_ARG, "targets[%d] = %d is out of range [0, %d)", i, targets[i], V);
    const llm_backend *be = m->be;
    void *st = m->st;
    llm__acts *a = &m->a;
    llm_params *p = &m->p;
    llm__act_views(a, m->acts_mem, m, LLM__CAST(size_t, B), LLM__CAST(size_t, T));
    if ((s = be->upload(st, m->tokens, tokens, LLM__CAST(size_t, BT) * sizeof(int))) != LLM_OK) return s;
    m->B = B; m->T = T; m->have_targets = 0; m->logits_state = 0;

    be->encoder_fwd(st, a->encoded, m->tokens, p->wte, p->wpe, B, T, C);
    size_t btc = LLM__CAST(size_t, BT) * uC, bt = LLM__CAST(size_t, BT);
    for (int l = 0; l < L; l++) {
        const float *res = l == 0 ? a->encoded : a->residual3 + (l - 1) * btc;
        float *ln1 = a->ln1 + l * btc, *qkv = a->qkv + l * bt * QKV, *atty = a->atty + l * btc;
        float *res2 = a->residual2 + l * btc, *ln2 = a->ln2 + l * btc, *res3 = a->residual3 + l * btc;
        float *fch = a->fch + l * bt * F, *fcha = a->fch_act + l * bt * H;
        float *lse = a->att_lse + LLM__CAST(size_t, l) * B * NH * T;
        /* attention block: res2 = res + attproj(attention(rope(qkv(norm1(res))))) */
        llm__norm_fwd(m, ln1, a->ln1_mean + l * bt, a->ln1_rstd + l * bt, res, llm__at(p->ln1w, l, uC), llm__at(p->ln1b, l, uC), BT);
        be->matmul_fwd(st, qkv, ln1, llm__at(p->qkvw, l, QKV * uC), llm__at(p->qkvb, l, QKV), BT, C, m->QKV);
        if (llama) be->rope_fwd(st, qkv, NULL, B, T, NH, NKV, HS, c->rope_theta);
        be->attention_fwd(st, atty, lse, qkv, B, T, NH, NKV, HS);
        be->matmul_fwd(st, a->proj, atty, llm__at(p->attprojw, l, uC * uC), llm__at(p->attprojb, l, uC), BT, C, C);
        be->residual_fwd(st, res2, res, a->proj, btc);
        /* MLP block: res3 = res2 + fcproj(act(fc(norm2(res2)))) */
        llm__norm_fwd(m, ln2, a->ln2_mean + l * bt, a->ln2_rstd + l * bt, res2, llm__at(p->ln2w, l, uC), llm__at(p->ln2b, l, uC), BT);
        be->matmul_fwd(st, fch, ln2, llm__at(p->fcw, l, F * uC), llm__at(p->fcb, l, F), BT, C, m->F);
        if (llama) be->swiglu_fwd(st, fcha, fch, BT, m->H);
        else be->gelu_fwd(st, fcha, fch, bt * H);
        be->matmul_fwd(st, a->proj, fcha, llm__at(p->fcprojw, l, uC * H), llm__at(p->fcprojb, l, uC), BT, m->H, C);
        be->residual_fwd(st, res3, res2, a->proj, btc);
    }
    llm__norm_fwd(m, a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (L - 1) * btc, p->lnfw, p->lnfb, BT);
    be->matmul_fwd(st, a->logits, a->lnf, p->wcls ? p->wcls : p->wte, NULL, BT, C, V);
    m->logits_state = 1;

    if (targets) {
        if ((s = be->upload(st, m->targets, targets, bt * sizeof(int))) != LLM_OK) return s;
        be->crossentropy_fwd(st, a->losses, a->lse, a->logits, m->targets, BT, V);
        if ((s = be->download(st, m->host_losses, a->losses, bt * sizeof(float))) != LLM_OK) return s;
        double sum = 0;
        int n = 0;
        for (int i = 0; i < BT; i++) if (targets[i] >= 0) { sum += m->host_losses[i]; n++; }
        m->have_targets = 1;
        m->n_valid = n;
        if (loss) *loss = n ? LLM__CAST(float, sum / n) : 0.0f;
    } else if (loss) {
        *loss = 0.0f;
    }
    return be->sync(st);
}

LLMDEF llm_status llm_model_get_logits(llm_model *m, float *dst) {
    if (m->logits_state != 1) return llm__err(LLM_ERR_STATE, "get_logits: no logits (run forward; backward overwrites them)");
    return m->be->download(m->st, dst, m->a.logits, LLM__CAST(size_t, m->B) * m->T * m->cfg.vocab_size * sizeof(float));
}
LLMDEF llm_status llm_model_get_losses(llm_model *m, float *dst) {
    if (!m->have_targets) return llm__err(LLM_ERR_STATE, "get_losses: the last forward had no targets");
    memcpy(dst, m->host_losses, LLM__CAST(size_t, m->B) * m->T * sizeof(float));
    return LLM_OK;
}

static llm_status llm__alloc_grads(llm_model *m) {
    if (m->grads_mem) return LLM_OK;
    m->grads_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
    if (!m->grads_mem) return LLM_ERR_NOMEM;
    m->be->zero(m->st, m->grads_mem, m->n_params * sizeof(float));
    llm__param_views(&m->g, m->grads_mem, m->off, m->size);
    return LLM_OK;
}

LLMDEF llm_status llm_model_zero_grad(llm_model *m) {
    llm_status s = llm__alloc_grads(m);
    if (s != LLM_OK) return s;
    m->be->zero(m->st, m->grads_mem, m->n_params * sizeof(float));
    return LLM_OK;
}

/* Backward, the forward in reverse. `dres` carries the gradient of the residual
 * stream: a residual add passes its gradient to both inputs unchanged, so instead of
 * copying it (residual_bwd) each block's branch simply adds into dres in place. */
LLMDEF llm_status llm_model_backward(llm_model *m, float loss_scale) {
    if (!m->have_targets || m->logits_state != 1)
        return llm__err(LLM_ERR_STATE, "backward: needs a forward with targets first (and one backward per forward)");
    llm_status s = llm__alloc_grads(m);
    if (s != LLM_OK) return s;
    const llm_config *c = &m->cfg;
    int B = m->B, T = m->T, L = c->n_layer, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = C / NH;
    int V = c->vocab_size, BT = B * T, llama = c->arch == LLM_ARCH_LLAMA;
    size_t QKV = LLM__CAST(size_t, m->QKV), F = LLM__CAST(size_t, m->F), H = LLM__CAST(size_t, m->H), uC = LLM__CAST(size_t, C);
    const llm_backend *be = m->be;
    void *st = m->st;
    llm__acts *a = &m->a;
    llm_params *p = &m->p, *g = &m->g;
    size_t btc = LLM__CAST(size_t, BT) * uC, bt = LLM__CAST(size_t, BT);
    float dloss = m->n_valid ? loss_scale / LLM__CAST(float, m->n_valid) : 0.0f;

    be->crossentropy_bwd(st, a->logits, a->lse, m->targets, dloss, BT, V);
    m->logits_state = 2;
    be->zero(st, a->dC, btc * sizeof(float));
    be->zero(st, a->dres, btc * sizeof(float));
    be->matmul_bwd(st, a->dC, g->wcls ? g->wcls : g->wte, NULL, a->logits, a->lnf, p->wcls ? p->wcls : p->wte, BT, C, V);
    llm__norm_bwd(m, a->dres, g->lnfw, g->lnfb, a->dC, a->residual3 + (L - 1) * btc, p->lnfw, a->lnf_mean, a->lnf_rstd, BT);
    for (int l = L - 1; l >= 0; l--) {
        const float *res = l == 0 ? a->encoded : a->residual3 + (l - 1) * btc;
        const float *ln1 = a->ln1 + l * btc, *qkv = a->qkv + l * bt * QKV, *atty = a->atty + l * btc;
        const float *res2 = a->residual2 + l * btc, *ln2 = a->ln2 + l * btc;
        const float *fch = a->fch + l * bt * F, *fcha = a->fch_act + l * bt * H;
        const float *lse = a->att_lse + LLM__CAST(size_t, l) * B * NH * T;
        /* MLP block */
        be->zero(st, a->dH, bt * H * sizeof(float));
        be->zero(st, a->dF, bt * F * sizeof(float));
        be->zero(st, a->dC, btc * sizeof(float));
        be->matmul_bwd(st, a->dH, llm__at(g->fcprojw, l, uC * H), llm__at(g->fcprojb, l, uC), a->dres, fcha,
                       llm__at(p->fcprojw, l, uC * H), BT, m->H, C);
        if (llama) be->swiglu_bwd(st, a->dF, fch, a->dH, BT, m->H);
        else be->gelu_bwd(st, a->dF, fch, a->dH, bt * H);
        be->matmul_bwd(st, a->dC, llm__at(g->fcw, l, F * uC), llm__at(g->fcb, l, F), a->dF, ln2, llm__at(p->fcw, l, F * uC), BT, C, m->F);
        llm__norm_bwd(m, a->dres, llm__at(g->ln2w, l, uC), llm__at(g->ln2b, l, uC), a->dC, res2, llm__at(p->ln2w, l, uC),
                      a->ln2_mean + l * bt, a->ln2_rstd + l * bt, BT);
        /* attention block */
        be->zero(st, a->dC, btc * sizeof(float));
        be->zero(st, a->dqkv, bt * QKV * sizeof(float));
        be->matmul_bwd(st, a->dC, llm__at(g->attprojw, l, uC * uC), llm__at(g->attprojb, l, uC), a->dres, atty,
                       llm__at(p->attprojw, l, uC * uC), BT, C, C);
        be->attention_bwd(st, a->dqkv, a->dC, qkv, atty, lse, B, T, NH, NKV, HS);
        if (llama) be->rope_bwd(st, a->dqkv, NULL, B, T, NH, NKV, HS, c->rope_theta);
        be->zero(st, a->dC, btc * sizeof(float));
        be->matmul_bwd(st, a->dC, llm__at(g->qkvw, l, QKV * uC), llm__at(g->qkvb, l, QKV), a->dqkv, ln1,
                       llm__at(p->qkvw, l, QKV * uC), BT, C, m->QKV);
        llm__norm_bwd(m, a->dres, llm__at(g->ln1w, l, uC), llm__at(g->ln1b, l, uC), a->dC, res, llm__at(p->ln1w, l, uC),
                      a->ln1_mean + l * bt, a->ln1_rstd + l * bt, BT);
    }
    be->encoder_bwd(st, g->wte, g->wpe, a->dres, m->tokens, B, T, C);
    return be->sync(st);
}

//==== ADAMW ============================================================================
LLMDEF llm_adamw_config llm_adamw_config_default(void) {
    llm_adamw_config c;
    c.beta1 = 0.9f; c.beta2 = 0.95f; c.eps = 1e-8f; c.weight_decay = 0.1f; c.decay_all = 0; c.grad_clip = 1.0f;
    return c;
}


LLMDEF llm_status llm_model_step(llm_model *m, const llm_adamw_config *cfg, float lr, float *grad_norm) {
    if (!m->grads_mem) return llm__err(LLM_ERR_STATE, "step: no gradients (run backward first)");
    llm_adamw_config def = llm_adamw_config_default();
    if (!cfg) cfg = &def;
    if (!m->m_mem) {
        m->m_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
        m->v_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
        if (!m->m_mem || !m->v_mem) return LLM_ERR_NOMEM;
        m->be->zero(m->st, m->m_mem, m->n_params * sizeof(float));
        m->be->zero(m->st, m->v_mem, m->n_params * sizeof(float));
    }
    /* global L2 norm, then the clip factor as torch.nn.utils.clip_grad_norm_ */
    double norm = sqrt(m->be->sumsq(m->st, m->grads_mem, m->n_params));
    float scale = 1.0f;
    if (cfg->grad_clip > 0.0f) {
        double coef = cfg->grad_clip / (norm + 1e-6);
        if (coef < 1.0) scale = LLM__CAST(float, coef);
    }
    if (grad_norm) *grad_norm = LLM__CAST(float, norm);
    if (!(norm == norm) || norm > DBL_MAX)
        return llm__err(LLM_ERR_ARG, "step: the gradient norm is not finite (%g); parameters unchanged", norm);
    m->t++;
    for (int i = 0; i < LLM_NTENSORS; i++) {
        if (!m->size[i]) continue;
        float wd = (cfg->decay_all || llm__is_2d(i)) ? cfg->weight_decay : 0.0f;
        m->be->adamw(m->st, m->params_mem + m->off[i], m->grads_mem + m->off[i], m->m_mem + m->off[i],
                     m->v_mem + m->off[i], m->size[i], lr, cfg->beta1, cfg->beta2, cfg->eps, wd, scale, m->t);
    }
    return LLM_OK;
}

LLMDEF float llm_lr_at(const llm_lr_schedule *s, int step) {
    if (step < s->warmup) return s->lr * LLM__CAST(float, step + 1) / LLM__CAST(float, s->warmup);
    if (s->kind == LLM_LR_CONST) return s->lr;
    if (step >= s->total) return s->min_lr;
    double ratio = LLM__CAST(double, step - s->warmup) / LLM__CAST(double, s->total - s->warmup);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));   /* 1 -> 0 */
    return LLM__CAST(float, s->min_lr + coeff * (s->lr - s->min_lr));
}

/* xorshift128+ (Vigna): two 64-bit words of state, seeded through splitmix64 so that
 * any seed, 0 included, gives a well-mixed state. */
static uint64_t llm__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
LLMDEF void llm_rng_seed(llm_rng *r, uint64_t seed) {
    r->s[0] = llm__splitmix64(&seed);
    r->s[1] = llm__splitmix64(&seed);
}
LLMDEF uint64_t llm_rng_u64(llm_rng *r) {
    uint64_t a = r->s[0], b = r->s[1];
    r->s[0] = b;
    a ^= a << 23;
    r->s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return r->s[1] + b;
}
/* Box-Muller: two uniforms in (0,1] give one normal (the second is discarded to keep
 * the stream position simple). */
LLMDEF float llm_rng_normal(llm_rng *r) {
    double u1 = (LLM__CAST(double, llm_rng_u64(r) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = LLM__CAST(double, llm_rng_u64(r) >> 11) / 9007199254740992.0;
    return LLM__CAST(float, sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

//==== FORMATS ==========================================================================
/* A read-only view of a whole file: memory-mapped where the platform has mmap (weights
 * and token files are then paged in on demand and shared), else read into memory. */
typedef struct llm__map { const unsigned char *data; size_t len; void *heap; } llm__map;

static llm_status llm__map_open(llm__map *mp, const char *path) {
    memset(mp, 0, sizeof *mp);
#ifdef LLM__HAVE_MMAP
    int fd = open(path, O_RDONLY);
    if (fd < 0) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); return llm__err(LLM_ERR_IO, "%s: not a regular file", path); }
    mp->len = LLM__CAST(size_t, sb.st_size);
    if (mp->len == 0) { close(fd); mp->data = LLM__CAST(const unsigned char *, ""); return LLM_OK; }
    void *p = mmap(NULL, mp->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return llm__err(LLM_ERR_IO, "%s: mmap failed", path);
    mp->data = LLM__CAST(const unsigned char *, p);
    return LLM_OK;
#else
    char *buf; size_t n;
    llm_status s = llm__read_file(path, &buf, &n);
    if (s != LLM_OK) return s;
    mp->heap = buf; mp->data = LLM__CAST(const unsigned char *, buf); mp->len = n;
    return LLM_OK;
#endif
}
static void llm__map_close(llm__map *mp) {
    if (mp->heap) LLM_FREE(mp->heap);
#ifdef LLM__HAVE_MMAP
    else if (mp->data && mp->len) munmap(LLM__CAST(void *, LLM__CAST(uintptr_t, mp->data)), mp->len);
#endif
    memset(mp, 0, sizeof *mp);
}

static uint32_t llm__rd32(const unsigned char *p) {
    return LLM__CAST(uint32_t, p[0]) | LLM__CAST(uint32_t, p[1]) << 8 | LLM__CAST(uint32_t, p[2]) << 16 | LLM__CAST(uint32_t, p[3]) << 24;
}
static uint64_t llm__rd64(const unsigned char *p) { return llm__rd32(p) | LLM__CAST(uint64_t, llm__rd32(p + 4)) << 32; }
static float llm__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* IEEE half -> float: rebias the exponent (15 -> 127); subnormal halves are
 * normalised by shifting the mantissa up; inf/NaN keep their payload. */
static float llm__f16_to_f32(uint16_t h) {
    uint32_t sign = LLM__CAST(uint32_t, h & 0x8000) << 16, e = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (e == 0) {
        if (man == 0) return llm__bits_f32(sign);
        e = 127 - 14;
        while (!(man & 0x400)) { man <<= 1; e--; }
        return llm__bits_f32(sign | e << 23 | (man & 0x3ff) << 13);
    }
    if (e == 31) return llm__bits_f32(sign | 0x7f800000u | man << 13);
    return llm__bits_f32(sign | (e + 127 - 15) << 23 | man << 13);
}
/* bfloat16 is the top half of a float32. */
static float llm__bf16_to_f32(uint16_t h) { return llm__bits_f32(LLM__CAST(uint32_t, h) << 16); }

enum { LLM__DT_F32, LLM__DT_F16, LLM__DT_BF16 };
static float llm__load_elem(const unsigned char *p, int dtype, size_t i) {
    if (dtype == LLM__DT_F32) return llm__bits_f32(llm__rd32(p + 4 * i));
    uint16_t h = LLM__CAST(uint16_t, p[2 * i] | p[2 * i + 1] << 8);
    return dtype == LLM__DT_F16 ? llm__f16_to_f32(h) : llm__bf16_to_f32(h);
}
/* Convert a (rows, cols) tensor into floats; with transpose, dst is (cols, rows):
 * HF's Conv1D stores weights (in, out), the transpose of our (out, in). */
static void llm__convert(float *dst, const unsigned char *src, int dtype, size_t rows, size_t cols, int transpose) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            float v = llm__load_elem(src, dtype, r * cols + c);
            if (transpose) dst[c * rows + r] = v; else dst[r * cols + c] = v;
        }
}

/* A shape read from a file: an impossible one means the file is malformed. */
static llm_status llm__file_config(const char *path, const llm_config *cfg) {
    llm_config c = *cfg;
    if (llm__config_resolve(&c) == LLM_OK) return LLM_OK;
    char msg[sizeof llm__errmsg];
    memcpy(msg, llm__errmsg, sizeof msg);
    msg[sizeof msg - 1 - 128] = 0;   /* leave room for the path */
    return llm__err(LLM_ERR_FORMAT, "%.120s: %s", path, msg);
}

/* ---- safetensors: u64 header length N, N bytes of JSON, then the data ---------------- */
typedef struct llm__st { llm__map map; llm__json j; const unsigned char *data; size_t data_len; } llm__st;
typedef struct llm__st_tensor { int dtype, ndim; int64_t shape[8]; const unsigned char *data; } llm__st_tensor;

typedef struct { size_t b, e; } llm__range;
static int llm__range_cmp(const void *x, const void *y) {
    const llm__range *a = LLM__CAST(const llm__range *, x), *b = LLM__CAST(const llm__range *, y);
    return a->b < b->b ? -1 : a->b > b->b ? 1 : 0;
}

/* Open and validate the whole header: every tensor's dtype, shape and offsets must be
 * consistent with each other and with the file, and no two tensors may overlap. */
static llm_status llm__st_open(llm__st *f, const char *path) {
    memset(f, 0, sizeof *f);
    llm_status s = llm__map_open(&f->map, path);
    if (s != LLM_OK) return s;
    const unsigned char *d = f->map.data;
    size_t len = f->map.len;
    if (len < 8) { llm__map_close(&f->map); return llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for safetensors", path, len); }
    uint64_t n = llm__rd64(d);
    if (n < 2 || n > len - 8 || n > (100u << 20)) {
        llm__map_close(&f->map);
        return llm__err(LLM_ERR_FORMAT, "%s: safetensors header length %llu does not fit the file (%zu bytes)", path,
                        LLM__CAST(unsigned long long, n), len);
    }
    if ((s = llm__json_parse(&f->j, LLM__CAST(const char *, d + 8), LLM__CAST(size_t, n))) != LLM_OK) {
        char msg[sizeof llm__errmsg];
        snprintf(msg, sizeof msg, "%s", llm_last_error());
        llm__map_close(&f->map);
        return llm__err(s, "%s: safetensors header: %s", path, msg);
    }
    f->data = d + 8 + n;
    f->data_len = len - 8 - LLM__CAST(size_t, n);
    const llm__json *j = &f->j;
    if (j->nodes[0].type != LLM__J_OBJ) { s = llm__err(LLM_ERR_FORMAT, "%s: safetensors header is not a JSON object", path); goto fail; }
    {
        llm__range *rg = LLM__CAST(llm__range *, llm__calloc(LLM__CAST(size_t, j->nodes[0].count) + 1, sizeof *rg));
        int nr = 0;
        if (!rg) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto fail; }
        for (int c = j->nodes[0].child; c >= 0; c = j->nodes[c].next) {
            const char *name = llm__jstr(j, j->nodes[c].key);
            if (strcmp(name, "__metadata__") == 0) continue;
            int dt = llm__json_get(j, c, "dtype"), sh = llm__json_get(j, c, "shape"), of = llm__json_get(j, c, "data_offsets");
            int64_t b, e, numel = 1, esz;
            if (dt < 0 || sh < 0 || of < 0 || j->nodes[dt].type != LLM__J_STR || j->nodes[sh].type != LLM__J_ARR ||
                j->nodes[of].type != LLM__J_ARR || j->nodes[of].count != 2 ||
                !llm__json_int(j, j->nodes[of].child, &b) || !llm__json_int(j, j->nodes[j->nodes[of].child].next, &e)) {
                LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, name); goto fail;
            }
            const char *dts = llm__jstr(j, j->nodes[dt].str);
            esz = !strcmp(dts, "F64") || !strcmp(dts, "I64") || !strcmp(dts, "U64") ? 8 :
                  !strcmp(dts, "F32") || !strcmp(dts, "I32") || !strcmp(dts, "U32") ? 4 :
                  !strcmp(dts, "F16") || !strcmp(dts, "BF16") || !strcmp(dts, "I16") || !strcmp(dts, "U16") ? 2 :
                  !strcmp(dts, "I8") || !strcmp(dts, "U8") || !strcmp(dts, "BOOL") || !strcmp(dts, "F8_E4M3") ||
                  !strcmp(dts, "F8_E5M2") ? 1 : 0;
            if (!esz) { LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has unknown dtype '%s'", path, name, dts); goto fail; }
            for (int k = j->nodes[sh].child; k >= 0; k = j->nodes[k].next) {
                int64_t dim;
                if (!llm__json_int(j, k, &dim) || dim < 0 || (dim && numel > (INT64_C(1) << 50) / dim)) {
                    LLM_FREE(rg); s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has a bad shape", path, name); goto fail;
                }
                numel *= dim;
            }
            if (b < 0 || e < b || LLM__CAST(uint64_t, e) > f->data_len || e - b != numel * esz) {
                LLM_FREE(rg);
                s = llm__err(LLM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] disagree with its shape/dtype (%lld bytes) or the data size (%zu)",
                             path, name, LLM__CAST(long long, b), LLM__CAST(long long, e), LLM__CAST(long long, numel * esz), f->data_len);
                goto fail;
            }
            rg[nr].b = LLM__CAST(size_t, b); rg[nr].e = LLM__CAST(size_t, e); nr++;
        }
        qsort(rg, LLM__CAST(size_t, nr), sizeof *rg, llm__range_cmp);
        for (int i = 1; i < nr; i++)
            if (rg[i].b < rg[i - 1].e) {
                s = llm__err(LLM_ERR_FORMAT, "%s: two tensors overlap at data offset %zu", path, rg[i].b);
                LLM_FREE(rg); goto fail;
            }
        LLM_FREE(rg);
    }
    return LLM_OK;
fail:
    llm__json_free(&f->j);
    llm__map_close(&f->map);
    return s;
}
static void llm__st_close(llm__st *f) { llm__json_free(&f->j); llm__map_close(&f->map); }

/* Find tensor `name` (already validated by llm__st_open); 0 if absent. */
static int llm__st_get(const llm__st *f, const char *name, llm__st_tensor *t) {
    int c = llm__json_get(&f->j, 0, name);
    if (c < 0) return 0;
    const llm__json *j = &f->j;
    const char *dts = llm__jstr(j, j->nodes[llm__json_get(j, c, "dtype")].str);
    int sh = llm__json_get(j, c, "shape"), of = llm__json_get(j, c, "data_offsets");
    int64_t b = 0;
    llm__json_int(j, j->nodes[of].child, &b);
    t->dtype = !strcmp(dts, "F32") ? LLM__DT_F32 : !strcmp(dts, "F16") ? LLM__DT_F16 : !strcmp(dts, "BF16") ? LLM__DT_BF16 : -1;
    t->ndim = 0;
    for (int k = j->nodes[sh].child; k >= 0 && t->ndim < 8; k = j->nodes[k].next) llm__json_int(j, k, &t->shape[t->ndim++]);
    t->data = f->data + b;
    return 1;
}

/* Fetch a float tensor of the expected shape (d0[, d1]) or fail with a message. */
static llm_status llm__st_need(const llm__st *f, const char *path, const char *name, int64_t d0, int64_t d1,
                               llm__st_tensor *t) {
    if (!llm__st_get(f, name, t)) return llm__err(LLM_ERR_FORMAT, "%s: missing tensor '%s'", path, name);
    if (t->dtype < 0) return llm__err(LLM_ERR_UNSUPPORTED, "%s: tensor '%s' must be F32, F16 or BF16", path, name);
    int want = d1 ? 2 : 1;
    if (t->ndim != want || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[160] = "", tmp[32];
        for (int i = 0; i < t->ndim; i++) {
            snprintf(tmp, sizeof tmp, "%s%lld", i ? ", " : "", LLM__CAST(long long, t->shape[i]));
            strncat(got, tmp, sizeof got - strlen(got) - 1);
        }
        if (d1) snprintf(tmp, sizeof tmp, "%lld, %lld", LLM__CAST(long long, d0), LLM__CAST(long long, d1));
        else snprintf(tmp, sizeof tmp, "%lld", LLM__CAST(long long, d0));
        return llm__err(LLM_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", path, name, got, tmp);
    }
    return LLM_OK;
}

/* config.json next to the weights: n_layer, n_head, n_embd, vocab_size, n_positions. */
static llm_status llm__hf_config(const char *path, llm_config *c, int *found) {
    char cfgpath[1024];
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? LLM__CAST(size_t, slash - path + 1) : 0;
    *found = 0;
    if (dirlen + 12 >= sizeof cfgpath) return LLM_OK;
    memcpy(cfgpath, path, dirlen);
    strcpy(cfgpath + dirlen, "config.json");
    char *text; size_t len;
    memset(c, 0, sizeof *c);
    c->arch = LLM_ARCH_GPT2;
    FILE *probe = fopen(cfgpath, "rb");
    if (!probe) return LLM_OK;
    fclose(probe);
    llm_status s = llm__read_file(cfgpath, &text, &len);
    if (s != LLM_OK) return s;
    llm__json j;
    s = llm__json_parse(&j, text, len);
    LLM_FREE(text);
    if (s != LLM_OK) { char msg[sizeof llm__errmsg]; snprintf(msg, sizeof msg, "%s", llm_last_error()); return llm__err(s, "%s: %s", cfgpath, msg); }
    const char *keys[5] = {"n_layer", "n_head", "n_embd", "vocab_size", "n_positions"};
    int *dst[5] = {&c->n_layer, &c->n_head, &c->n_embd, &c->vocab_size, &c->max_seq_len};
    for (int i = 0; i < 5; i++) {
        int64_t v;
        int node = llm__json_get(&j, 0, keys[i]);
        if (node < 0 && i == 4) node = llm__json_get(&j, 0, "n_ctx");
        if (!llm__json_int(&j, node, &v) || v <= 0 || v > INT_MAX) {
            llm__json_free(&j);
            return llm__err(LLM_ERR_FORMAT, "%s: missing or bad '%s'", cfgpath, keys[i]);
        }
        *dst[i] = LLM__CAST(int, v);
    }
    llm__json_free(&j);
    *found = 1;
    return LLM_OK;
}

static llm_status llm__load_safetensors(llm_model **out, const char *path, const llm_options *opt) {
    llm__st f;
    llm_status s = llm__st_open(&f, path);
    if (s != LLM_OK) return s;
    llm__st_tensor t;
    const char *pre = llm__st_get(&f, "wte.weight", &t) ? "" : llm__st_get(&f, "transformer.wte.weight", &t) ? "transformer." : NULL;
    char name[256];
    llm_config c;
    int found;
    float *h = NULL;
    llm_model *m = NULL;
    if (!pre) { s = llm__err(LLM_ERR_FORMAT, "%s: no 'wte.weight' tensor: not a GPT-2 checkpoint", path); goto done; }
    if ((s = llm__hf_config(path, &c, &found)) != LLM_OK) goto done;
    if (!found) {   /* infer the shape from the tensors */
        memset(&c, 0, sizeof c);
        c.arch = LLM_ARCH_GPT2;
        llm__st_tensor wpe;
        snprintf(name, sizeof name, "%swpe.weight", pre);
        if (t.ndim != 2 || !llm__st_get(&f, name, &wpe) || wpe.ndim != 2) {
            s = llm__err(LLM_ERR_FORMAT, "%s: cannot infer the shape: wte/wpe must be 2-D", path); goto done;
        }
        c.vocab_size = LLM__CAST(int, t.shape[0]); c.n_embd = LLM__CAST(int, t.shape[1]);
        c.max_seq_len = LLM__CAST(int, wpe.shape[0]);
        c.n_layer = 0;
        for (;;) {
            snprintf(name, sizeof name, "%sh.%d.ln_1.weight", pre, c.n_layer);
            if (c.n_layer >= 4096 || !llm__st_get(&f, name, &wpe)) break;
            c.n_layer++;
        }
        /* The head count is not visible in the tensors; every GPT-2 uses head size 64. */
        if (c.n_embd % 64) { s = llm__err(LLM_ERR_FORMAT, "%s: no config.json and n_embd %d is not a multiple of 64: cannot infer n_head", path, c.n_embd); goto done; }
        c.n_head = c.n_embd / 64;
    }
    if ((s = llm__file_config(path, &c)) != LLM_OK || (s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
    h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
    {
        int64_t C = c.n_embd, V = c.vocab_size, T = c.max_seq_len;
        llm_params v;
        llm__param_views(&v, h, m->off, m->size);
        struct { const char *suffix; float *dst; int64_t rows, cols; int transpose; size_t stride; } per[12] = {
            {"ln_1.weight", v.ln1w, C, 0, 0, LLM__CAST(size_t, C)}, {"ln_1.bias", v.ln1b, C, 0, 0, LLM__CAST(size_t, C)},
            {"attn.c_attn.weight", v.qkvw, C, 3 * C, 1, LLM__CAST(size_t, 3 * C * C)},
            {"attn.c_attn.bias", v.qkvb, 3 * C, 0, 0, LLM__CAST(size_t, 3 * C)},
            {"attn.c_proj.weight", v.attprojw, C, C, 1, LLM__CAST(size_t, C * C)},
            {"attn.c_proj.bias", v.attprojb, C, 0, 0, LLM__CAST(size_t, C)},
            {"ln_2.weight", v.ln2w, C, 0, 0, LLM__CAST(size_t, C)}, {"ln_2.bias", v.ln2b, C, 0, 0, LLM__CAST(size_t, C)},
            {"mlp.c_fc.weight", v.fcw, C, 4 * C, 1, LLM__CAST(size_t, 4 * C * C)},
            {"mlp.c_fc.bias", v.fcb, 4 * C, 0, 0, LLM__CAST(size_t, 4 * C)},
            {"mlp.c_proj.weight", v.fcprojw, 4 * C, C, 1, LLM__CAST(size_t, 4 * C * C)},
            {"mlp.c_proj.bias", v.fcprojb, C, 0, 0, LLM__CAST(size_t, C)}};
        snprintf(name, sizeof name, "%swte.weight", pre);
        if ((s = llm__st_need(&f, path, name, V, C, &t)) != LLM_OK) goto done;
        llm__convert(v.wte, t.data, t.dtype, LLM__CAST(size_t, V), LLM__CAST(size_t, C), 0);
        snprintf(name, sizeof name, "%swpe.weight", pre);
        if ((s = llm__st_need(&f, path, name, T, C, &t)) != LLM_OK) goto done;
        llm__convert(v.wpe, t.data, t.dtype, LLM__CAST(size_t, T), LLM__CAST(size_t, C), 0);
        for (int l = 0; l < c.n_layer; l++)
            for (int i = 0; i < 12; i++) {
                snprintf(name, sizeof name, "%sh.%d.%s", pre, l, per[i].suffix);
                if ((s = llm__st_need(&f, path, name, per[i].rows, per[i].cols, &t)) != LLM_OK) goto done;
                llm__convert(per[i].dst + LLM__CAST(size_t, l) * per[i].stride, t.data, t.dtype, LLM__CAST(size_t, per[i].rows),
                             per[i].cols ? LLM__CAST(size_t, per[i].cols) : 1, per[i].transpose);
            }
        snprintf(name, sizeof name, "%sln_f.weight", pre);
        if ((s = llm__st_need(&f, path, name, C, 0, &t)) != LLM_OK) goto done;
        llm__convert(v.lnfw, t.data, t.dtype, LLM__CAST(size_t, C), 1, 0);
        snprintf(name, sizeof name, "%sln_f.bias", pre);
        if ((s = llm__st_need(&f, path, name, C, 0, &t)) != LLM_OK) goto done;
        llm__convert(v.lnfb, t.data, t.dtype, LLM__CAST(size_t, C), 1, 0);
        /* The LM head is tied to wte; a file may repeat it, but it must be the same. */
        if (llm__st_get(&f, "lm_head.weight", &t)) {
            if ((s = llm__st_need(&f, path, "lm_head.weight", V, C, &t)) != LLM_OK) goto done;
            for (size_t i = 0; i < LLM__CAST(size_t, V * C); i++)
                if (llm__load_elem(t.data, t.dtype, i) != v.wte[i]) {
                    s = llm__err(LLM_ERR_UNSUPPORTED, "%s: lm_head.weight differs from wte.weight; untied heads are not supported", path);
                    goto done;
                }
        }
    }
    s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
done:
    LLM_FREE(h);
    llm__st_close(&f);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- llm.c's gpt2_124M.bin: 256 int32 header, then every tensor in our order, wte
 * padded to Vp rows (fp32 for version 3, bf16 for version 5) ------------------------- */
#define LLM__LLMC_MAGIC 20240326
static llm_status llm__load_llmc(llm_model **out, const char *path, const llm_options *opt) {
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    llm_model *m = NULL;
    float *h = NULL;
    int32_t hd[8];
    if (mp.len < 1024) { s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for an llm.c checkpoint header", path, mp.len); goto done; }
    for (int i = 0; i < 8; i++) hd[i] = LLM__CAST(int32_t, llm__rd32(mp.data + 4 * i));
    if (hd[0] != LLM__LLMC_MAGIC) { s = llm__err(LLM_ERR_FORMAT, "%s: bad magic %d (llm.c checkpoints have %d)", path, hd[0], LLM__LLMC_MAGIC); goto done; }
    if (hd[1] != 3 && hd[1] != 5) { s = llm__err(LLM_ERR_UNSUPPORTED, "%s: llm.c checkpoint version %d (3 = fp32 and 5 = bf16 are supported)", path, hd[1]); goto done; }
    {
        llm_config c;
        memset(&c, 0, sizeof c);
        c.arch = LLM_ARCH_GPT2;
        c.max_seq_len = hd[2]; c.vocab_size = hd[3]; c.n_layer = hd[4]; c.n_head = hd[5]; c.n_embd = hd[6];
        int Vp = hd[7];
        if ((s = llm__file_config(path, &c)) != LLM_OK) goto done;
        if (Vp < c.vocab_size) { s = llm__err(LLM_ERR_FORMAT, "%s: padded vocab %d < vocab %d", path, Vp, c.vocab_size); goto done; }
        if ((s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
        int dtype = hd[1] == 3 ? LLM__DT_F32 : LLM__DT_BF16;
        size_t esz = dtype == LLM__DT_F32 ? 4 : 2, C = LLM__CAST(size_t, c.n_embd);
        size_t pad = (LLM__CAST(size_t, Vp) - LLM__CAST(size_t, c.vocab_size)) * C;
        size_t want = 1024 + (m->n_params + pad) * esz;
        if (mp.len != want) { s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %zu for this shape (truncated?)", path, mp.len, want); goto done; }
        h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
        if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
        size_t vc = LLM__CAST(size_t, c.vocab_size) * C;
        llm__convert(h, mp.data + 1024, dtype, 1, vc, 0);                    /* wte, real rows */
        llm__convert(h + vc, mp.data + 1024 + (vc + pad) * esz, dtype, 1, m->n_params - vc, 0);
        s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
    }
done:
    LLM_FREE(h);
    llm__map_close(&mp);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- llama2.c's model .bin (the original, "version 0" export): seven int32
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: a separate
 *   classifier follows), seq_len
 * then fp32 tensors: token embedding (V,C), rms_att (L,C), wq (L,C,C), wk (L,KV,C),
 * wv (L,KV,C), wo (L,C,C), rms_ffn (L,C), w1 (L,H,C), w2 (L,C,H), w3 (L,H,C),
 * rms_final (C), two unused RoPE tables (maxT*HS/2 each), [wcls (V,C)]. Weights are
 * (out, in) like ours; q, k, v are stacked into qkvw and w1, w3 into fcw. There is no
 * magic number: a header of seven positive sizes is taken as one (1: a valid shape, whose
 * file must then be `want` bytes; -1: an impossible shape; 0: not a llama2.c header). */
static int llm__llama2c_config(const unsigned char *d, size_t len, llm_config *c, size_t *want) {
    if (len < 28) return 0;
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = LLM__CAST(int32_t, llm__rd32(d + 4 * i));
    for (int i = 0; i < 7; i++)   /* every size positive; vocab_size's sign is a flag */
        if (i == 5 ? (h[i] == 0 || h[i] == INT32_MIN) : h[i] <= 0) return 0;
    memset(c, 0, sizeof *c);
    c->arch = LLM_ARCH_LLAMA;
    c->n_embd = h[0]; c->hidden_dim = h[1]; c->n_layer = h[2]; c->n_head = h[3]; c->n_kv_head = h[4];
    c->vocab_size = h[5] < 0 ? -h[5] : h[5]; c->untied_head = h[5] < 0; c->max_seq_len = h[6];
    llm_config r = *c;
    if (llm__config_resolve(&r) != LLM_OK) return -1;   /* plausible, but an impossible shape */
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(&r, off, size);
    size_t np = off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1];
    size_t rope = LLM__CAST(size_t, r.max_seq_len) * LLM__CAST(size_t, r.n_embd / r.n_head);   /* two tables of maxT*HS/2 */
    *want = 28 + 4 * (np + rope);
    return 1;
}

static llm_status llm__load_llama2c(llm_model **out, const char *path, const llm_options *opt) {
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    llm_config c;
    size_t want = 0;
    llm_model *m = NULL;
    float *h = NULL;
    int kind = llm__llama2c_config(mp.data, mp.len, &c, &want);
    if (kind <= 0) {
        char msg[sizeof llm__errmsg];
        memcpy(msg, llm__errmsg, sizeof msg);
        msg[sizeof msg - 1 - 128] = 0;
        s = kind == 0 ? llm__err(LLM_ERR_FORMAT, "%.120s: not a llama2.c checkpoint", path)
                      : llm__err(LLM_ERR_FORMAT, "%.120s: impossible llama2.c header: %s", path, msg);
        goto done;
    }
    if (mp.len != want) { s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, but its llama2.c header implies %zu (truncated?)", path, mp.len, want); goto done; }
    if ((s = llm__model_new(&m, &c, opt)) != LLM_OK) goto done;
    h = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!h) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", path); goto done; }
    {
        const llm_config *r = &m->cfg;
        size_t C = LLM__CAST(size_t, r->n_embd), L = LLM__CAST(size_t, r->n_layer), H = LLM__CAST(size_t, r->hidden_dim);
        size_t V = LLM__CAST(size_t, r->vocab_size), KV = LLM__CAST(size_t, r->n_kv_head) * (C / LLM__CAST(size_t, r->n_head));
        size_t QKV = C + 2 * KV;
        const unsigned char *src = mp.data + 28;
        llm_params v;
        llm__param_views(&v, h, m->off, m->size);
        /* read `rows` rows of C' floats of every layer into rows [row0, row0+rows) of a
         * stacked (L, per, cols) tensor */
#define LLM__L2C_READ(dst, per, row0, rows, cols) \
        for (size_t l = 0; l < L; l++) { \
            llm__convert((dst) + (l * (per) + (row0)) * (cols), src, LLM__DT_F32, 1, (rows) * (cols), 0); \
            src += 4 * (rows) * (cols); }
        llm__convert(v.wte, src, LLM__DT_F32, 1, V * C, 0); src += 4 * V * C;
        LLM__L2C_READ(v.ln1w, 1, 0, 1, C);
        LLM__L2C_READ(v.qkvw, QKV, 0, C, C);          /* wq */
        LLM__L2C_READ(v.qkvw, QKV, C, KV, C);         /* wk */
        LLM__L2C_READ(v.qkvw, QKV, C + KV, KV, C);    /* wv */
        LLM__L2C_READ(v.attprojw, C, 0, C, C);        /* wo */
        LLM__L2C_READ(v.ln2w, 1, 0, 1, C);
        LLM__L2C_READ(v.fcw, 2 * H, 0, H, C);         /* w1: the gate */
        LLM__L2C_READ(v.fcprojw, C, 0, C, H);         /* w2 */
        LLM__L2C_READ(v.fcw, 2 * H, H, H, C);         /* w3: the up projection */
#undef LLM__L2C_READ
        llm__convert(v.lnfw, src, LLM__DT_F32, 1, C, 0); src += 4 * C;
        src += 4 * LLM__CAST(size_t, r->max_seq_len) * (C / LLM__CAST(size_t, r->n_head));   /* RoPE tables */
        if (v.wcls) llm__convert(v.wcls, src, LLM__DT_F32, 1, V * C, 0);
    }
    s = m->be->upload(m->st, m->params_mem, h, m->n_params * sizeof(float));
done:
    LLM_FREE(h);
    llm__map_close(&mp);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

/* ---- our checkpoint: a 256-byte header, the parameters, optionally m and v ----------
 *   0 "LLMHCKPT" | 8 u32 version 1 | 12 u32 flags (1: optimizer state follows)
 *   16 i32 arch, maxT, V, L, NH, C, NKV, hidden, untied | 52 f32 norm_eps, rope_theta
 *   60 u32 0 | 64 u64 n_params | 72 u64 adam step
 *   80 u64 train step, rng[0], rng[1], cursor, epoch | 120..255 zero
 *   256: f32 params[n_params] (+ f32 m[n_params], f32 v[n_params])        little-endian */
#define LLM__CKPT_MAGIC "LLMHCKPT"
#define LLM__CKPT_NCFG 9
static void llm__wr32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = LLM__CAST(unsigned char, v >> (8 * i)); }
static void llm__wr64(unsigned char *p, uint64_t v) { llm__wr32(p, LLM__CAST(uint32_t, v)); llm__wr32(p + 4, LLM__CAST(uint32_t, v >> 32)); }

static llm_status llm__write_dev(llm__wfile *w, const llm_model *m, const float *dev, float *host) {
    llm_status s = m->be->download(m->st, host, dev, m->n_params * sizeof(float));
    if (s == LLM_OK) llm__wbytes(w, host, m->n_params * sizeof(float));
    return s;
}

LLMDEF llm_status llm_model_save(const llm_model *m, const char *path, int with_optimizer, const llm_train_state *ts) {
    if (!m || !path) return llm__err(LLM_ERR_ARG, "save: NULL argument");
    unsigned char hdr[256];
    memset(hdr, 0, sizeof hdr);
    int opt = with_optimizer && m->m_mem;
    memcpy(hdr, LLM__CKPT_MAGIC, 8);
    llm__wr32(hdr + 8, 1);
    llm__wr32(hdr + 12, opt ? 1u : 0u);
    const llm_config *c = &m->cfg;
    const int cf[LLM__CKPT_NCFG] = {LLM__CAST(int, c->arch), c->max_seq_len, c->vocab_size, c->n_layer, c->n_head,
                                    c->n_embd, c->n_kv_head, c->hidden_dim, c->untied_head};
    for (int i = 0; i < LLM__CKPT_NCFG; i++) llm__wr32(hdr + 16 + 4 * i, LLM__CAST(uint32_t, cf[i]));
    memcpy(hdr + 52, &c->norm_eps, 4);
    memcpy(hdr + 56, &c->rope_theta, 4);
    llm__wr64(hdr + 64, m->n_params);
    llm__wr64(hdr + 72, LLM__CAST(uint64_t, m->t));
    if (ts) {
        const uint64_t v[5] = {ts->step, ts->rng[0], ts->rng[1], ts->cursor, ts->epoch};
        for (int i = 0; i < 5; i++) llm__wr64(hdr + 80 + 8 * i, v[i]);
    }
    float *host = LLM__CAST(float *, LLM_MALLOC(m->n_params * sizeof(float)));
    if (!host) return llm__err(LLM_ERR_NOMEM, "save: out of memory");
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) { LLM_FREE(host); return s; }
    llm__wbytes(&w, hdr, sizeof hdr);
    s = llm__write_dev(&w, m, m->params_mem, host);
    if (s == LLM_OK && opt) s = llm__write_dev(&w, m, m->m_mem, host);
    if (s == LLM_OK && opt) s = llm__write_dev(&w, m, m->v_mem, host);
    LLM_FREE(host);
    if (s != LLM_OK) { w.failed = 1; llm__wclose(&w); return s; }
    return llm__wclose(&w);
}

/* Validate our header against the file; fills the config and says whether the
 * optimizer state is present. */
static llm_status llm__ckpt_header(const llm__map *mp, const char *path, llm_config *c, int *has_opt) {
    if (mp->len < 256 || memcmp(mp->data, LLM__CKPT_MAGIC, 8) != 0)
        return llm__err(LLM_ERR_FORMAT, "%s: not an llm.h checkpoint (bad magic or too short)", path);
    if (llm__rd32(mp->data + 8) != 1) return llm__err(LLM_ERR_UNSUPPORTED, "%s: checkpoint version %u", path, llm__rd32(mp->data + 8));
    *has_opt = llm__rd32(mp->data + 12) & 1;
    int arch = LLM__CAST(int32_t, llm__rd32(mp->data + 16));
    int *cf[LLM__CKPT_NCFG] = {&arch, &c->max_seq_len, &c->vocab_size, &c->n_layer, &c->n_head, &c->n_embd,
                               &c->n_kv_head, &c->hidden_dim, &c->untied_head};
    for (int i = 0; i < LLM__CKPT_NCFG; i++) *cf[i] = LLM__CAST(int32_t, llm__rd32(mp->data + 16 + 4 * i));
    c->arch = arch == 1 ? LLM_ARCH_LLAMA : LLM_ARCH_GPT2;
    if (arch != 0 && arch != 1) return llm__err(LLM_ERR_FORMAT, "%s: unknown architecture %d", path, arch);
    memcpy(&c->norm_eps, mp->data + 52, 4);
    memcpy(&c->rope_theta, mp->data + 56, 4);
    llm_status s = llm__file_config(path, c);
    if (s == LLM_OK) s = llm__config_resolve(c);
    if (s != LLM_OK) return s;
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_tensor_layout(c, off, size);
    uint64_t np = off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1];
    if (llm__rd64(mp->data + 64) != np) return llm__err(LLM_ERR_FORMAT, "%s: parameter count disagrees with the shape", path);
    uint64_t want = 256 + np * 4 * (*has_opt ? 3 : 1);
    if (mp->len != want)
        return llm__err(LLM_ERR_FORMAT, "%s: %zu bytes, expected %llu (truncated?)", path, mp->len, LLM__CAST(unsigned long long, want));
    return LLM_OK;
}

static llm_status llm__load_ckpt(llm_model **out, const char *path, const llm_options *opt) {
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    llm_config c;
    int has_opt;
    llm_model *m = NULL;
    if ((s = llm__ckpt_header(&mp, path, &c, &has_opt)) == LLM_OK && (s = llm__model_new(&m, &c, opt)) == LLM_OK)
        s = m->be->upload(m->st, m->params_mem, mp.data + 256, m->n_params * sizeof(float));
    llm__map_close(&mp);
    if (s != LLM_OK) { llm_model_free(m); m = NULL; }
    *out = m;
    return s;
}

LLMDEF llm_status llm_model_load_train_state(llm_model *m, const char *path, llm_train_state *ts) {
    llm__map mp;
    llm_status s = llm__map_open(&mp, path);
    if (s != LLM_OK) return s;
    llm_config c;
    int has_opt;
    if ((s = llm__ckpt_header(&mp, path, &c, &has_opt)) != LLM_OK) goto done;
    if (!has_opt) { s = llm__err(LLM_ERR_FORMAT, "%s: saved without optimizer state", path); goto done; }
    if (memcmp(&c, &m->cfg, sizeof c) != 0) { s = llm__err(LLM_ERR_ARG, "%s: the checkpoint's shape differs from the model's", path); goto done; }
    if (!m->m_mem) {
        m->m_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
        m->v_mem = LLM__CAST(float *, m->be->alloc(m->st, m->n_params * sizeof(float)));
        if (!m->m_mem || !m->v_mem) { s = LLM_ERR_NOMEM; goto done; }
    }
    if ((s = m->be->upload(m->st, m->m_mem, mp.data + 256 + m->n_params * 4, m->n_params * 4)) != LLM_OK) goto done;
    if ((s = m->be->upload(m->st, m->v_mem, mp.data + 256 + m->n_params * 8, m->n_params * 4)) != LLM_OK) goto done;
    m->t = LLM__CAST(int, llm__rd64(mp.data + 72));
    if (ts) {
        uint64_t *v[5] = {&ts->step, &ts->rng[0], &ts->rng[1], &ts->cursor, &ts->epoch};
        for (int i = 0; i < 5; i++) *v[i] = llm__rd64(mp.data + 80 + 8 * i);
    }
done:
    llm__map_close(&mp);
    return s;
}

LLMDEF llm_status llm_model_load(llm_model **out, const char *path, const llm_options *opt) {
    if (!out || !path) return llm__err(LLM_ERR_ARG, "llm_model_load: NULL argument");
    *out = NULL;
    char buf[1024];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {   /* a HF model folder */
        snprintf(buf, sizeof buf, "%s/model.safetensors", path);
        path = buf;
    }
    unsigned char head[9];
    FILE *f = fopen(path, "rb");
    if (!f) return llm__err(LLM_ERR_IO, "%s: cannot open", path);
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 8 && memcmp(head, LLM__CKPT_MAGIC, 8) == 0) return llm__load_ckpt(out, path, opt);
    if (n >= 4 && llm__rd32(head) == LLM__LLMC_MAGIC) return llm__load_llmc(out, path, opt);
    if (n >= 9 && head[8] == '{') return llm__load_safetensors(out, path, opt);
    {   /* llama2.c has no magic: a plausible header is taken as one (and must then
         * predict the file size exactly) */
        llm__map mp;
        llm_config c;
        size_t want = 0;
        int is_l2c = 0;
        if (llm__map_open(&mp, path) == LLM_OK) {
            /* a possible llama2.c header: its loader says what is wrong with the file */
            is_l2c = llm__llama2c_config(mp.data, mp.len, &c, &want) != 0;
            llm__map_close(&mp);
        }
        if (is_l2c) return llm__load_llama2c(out, path, opt);
    }
    return llm__err(LLM_ERR_FORMAT, "%s: unknown model format (expected HF safetensors, llm.c .bin, llama2.c .bin or an llm.h checkpoint)", path);
}

//==== DATA =============================================================================
#define LLM__DATA_MAGIC 20240520
struct llm_dataset { llm__map map; const uint16_t *tokens; size_t n; };

LLMDEF llm_status llm_dataset_open(llm_dataset **out, const char *path) {
    *out = NULL;
    llm_dataset *d = LLM__CAST(llm_dataset *, llm__calloc(1, sizeof *d));
    if (!d) return llm__err(LLM_ERR_NOMEM, "dataset: out of memory");
    llm_status s = llm__map_open(&d->map, path);
    if (s != LLM_OK) { LLM_FREE(d); return s; }
    const unsigned char *p = d->map.data;
    if (d->map.len < 1024) s = llm__err(LLM_ERR_FORMAT, "%s: %zu bytes is too short for a token file header", path, d->map.len);
    else if (llm__rd32(p) != LLM__DATA_MAGIC) s = llm__err(LLM_ERR_FORMAT, "%s: bad magic %u (token files have %d)", path, llm__rd32(p), LLM__DATA_MAGIC);
    else if (llm__rd32(p + 4) != 1) s = llm__err(LLM_ERR_UNSUPPORTED, "%s: token file version %u (1 is supported)", path, llm__rd32(p + 4));
    else {
        uint64_t n = llm__rd32(p + 8);
        if (LLM__CAST(int32_t, llm__rd32(p + 8)) < 0)
            s = llm__err(LLM_ERR_FORMAT, "%s: negative token count %d in the header", path, LLM__CAST(int32_t, llm__rd32(p + 8)));
        else if (n > (d->map.len - 1024) / 2)
            s = llm__err(LLM_ERR_FORMAT, "%s: header says %llu tokens but the file holds %zu (truncated?)", path,
                         LLM__CAST(unsigned long long, n), (d->map.len - 1024) / 2);
        d->n = LLM__CAST(size_t, n);
        d->tokens = LLM__CAST(const uint16_t *, LLM__CAST(const void *, p + 1024));   /* 1024 keeps it aligned */
    }
    if (s != LLM_OK) { llm_dataset_close(d); return s; }
    *out = d;
    return LLM_OK;
}
LLMDEF void llm_dataset_close(llm_dataset *d) {
    if (!d) return;
    llm__map_close(&d->map);
    LLM_FREE(d);
}
LLMDEF size_t llm_dataset_len(const llm_dataset *d) { return d->n; }
LLMDEF const uint16_t *llm_dataset_tokens(const llm_dataset *d) { return d->tokens; }

LLMDEF llm_status llm_dataset_write(const char *path, const int *tokens, size_t n) {
    if (n > 0xFFFFFFFFu) return llm__err(LLM_ERR_ARG, "dataset_write: %zu tokens do not fit the header's 32-bit count", n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] > 65535) return llm__err(LLM_ERR_ARG, "dataset_write: token %zu = %d does not fit uint16", i, tokens[i]);
    unsigned char hdr[1024];
    memset(hdr, 0, sizeof hdr);
    llm__wr32(hdr, LLM__DATA_MAGIC); llm__wr32(hdr + 4, 1); llm__wr32(hdr + 8, LLM__CAST(uint32_t, n));
    llm__wfile w;
    llm_status s = llm__wopen(&w, path);
    if (s != LLM_OK) return s;
    llm__wbytes(&w, hdr, sizeof hdr);
    unsigned char buf[8192];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 2 && i < n; k++, i++) { buf[2 * k] = LLM__CAST(unsigned char, tokens[i]); buf[2 * k + 1] = LLM__CAST(unsigned char, tokens[i] >> 8); }
        llm__wbytes(&w, buf, 2 * k);
    }
    return llm__wclose(&w);
}

/* Fisher-Yates over the windows, from the loader's RNG. */
static void llm__loader_shuffle(llm_loader *l) {
    llm_rng r;
    r.s[0] = l->rng[0]; r.s[1] = l->rng[1];
    for (size_t i = 0; i < l->n_windows; i++) l->perm[i] = LLM__CAST(uint32_t, i);
    if (!l->shuffle) return;
    for (size_t i = l->n_windows; i > 1; i--) {
        size_t j = LLM__CAST(size_t, llm_rng_u64(&r) % i);
        uint32_t tmp = l->perm[i - 1]; l->perm[i - 1] = l->perm[j]; l->perm[j] = tmp;
    }
}

LLMDEF llm_status llm_loader_init(llm_loader *l, const llm_dataset *d, size_t begin, size_t end, int B, int T,
                                  int shuffle, uint64_t seed) {
    memset(l, 0, sizeof *l);
    if (!d || B <= 0 || T <= 0) return llm__err(LLM_ERR_ARG, "loader: needs a dataset and positive B, T");
    if (end == 0) end = d->n;
    if (begin >= end || end > d->n) return llm__err(LLM_ERR_ARG, "loader: range [%zu, %zu) is not inside the %zu tokens", begin, end, d->n);
    l->data = d; l->begin = begin; l->end = end; l->B = B; l->T = T; l->shuffle = shuffle;
    l->n_windows = (end - begin - 1) / LLM__CAST(size_t, T);
    l->n_batches = l->n_windows / LLM__CAST(size_t, B);
    if (l->n_batches == 0)
        return llm__err(LLM_ERR_ARG, "loader: %zu tokens are too few for one batch of B=%d T=%d", end - begin, B, T);
    if (l->n_windows > 0xFFFFFFFFu) return llm__err(LLM_ERR_ARG, "loader: too many windows");
    l->perm = LLM__CAST(uint32_t *, LLM_MALLOC(l->n_windows * sizeof(uint32_t)));
    if (!l->perm) return llm__err(LLM_ERR_NOMEM, "loader: out of memory");
    llm_rng r;
    llm_rng_seed(&r, seed);
    l->rng[0] = r.s[0]; l->rng[1] = r.s[1];
    llm__loader_shuffle(l);
    return LLM_OK;
}
LLMDEF void llm_loader_free(llm_loader *l) { if (l) { LLM_FREE(l->perm); l->perm = NULL; } }
LLMDEF void llm_loader_reset(llm_loader *l) { l->cursor = 0; }

LLMDEF llm_status llm_loader_next(llm_loader *l, int *inputs, int *targets) {
    if (!l->perm) return llm__err(LLM_ERR_STATE, "loader: not initialised");
    if (l->cursor >= l->n_batches) {   /* new epoch: the next permutation continues the stream */
        llm_rng r;
        r.s[0] = l->rng[0]; r.s[1] = l->rng[1];
        for (size_t i = l->n_windows; i > 1; i--) (void)llm_rng_u64(&r);
        l->rng[0] = r.s[0]; l->rng[1] = r.s[1];
        l->epoch++;
        l->cursor = 0;
        llm__loader_shuffle(l);
    }
    const uint16_t *tok = l->data->tokens + l->begin;
    size_t T = LLM__CAST(size_t, l->T);
    for (int b = 0; b < l->B; b++) {
        const uint16_t *w = tok + LLM__CAST(size_t, l->perm[l->cursor * LLM__CAST(size_t, l->B) + b]) * T;
        for (size_t t = 0; t < T; t++) {
            inputs[b * T + t] = w[t];
            if (targets) targets[b * T + t] = w[t + 1];
        }
    }
    l->cursor++;
    return LLM_OK;
}
LLMDEF void llm_loader_get_state(const llm_loader *l, llm_train_state *ts) {
    ts->rng[0] = l->rng[0]; ts->rng[1] = l->rng[1];
    ts->cursor = l->cursor; ts->epoch = l->epoch;
}
LLMDEF llm_status llm_loader_set_state(llm_loader *l, const llm_train_state *ts) {
    if (!l->perm) return llm__err(LLM_ERR_STATE, "loader: not initialised");
    if (ts->cursor > l->n_batches) return llm__err(LLM_ERR_ARG, "loader: saved position %llu is past the %zu batches of an epoch",
                                                   LLM__CAST(unsigned long long, ts->cursor), l->n_batches);
    l->rng[0] = ts->rng[0]; l->rng[1] = ts->rng[1];
    l->cursor = LLM__CAST(size_t, ts->cursor); l->epoch = ts->epoch;
    llm__loader_shuffle(l);
    return LLM_OK;
}

LLMDEF llm_status llm_model_eval(llm_model *m, llm_loader *l, int n_batches, float *loss) {
    size_t BT = LLM__CAST(size_t, l->B) * LLM__CAST(size_t, l->T);
    int *buf = LLM__CAST(int *, LLM_MALLOC(2 * BT * sizeof(int)));
    if (!buf) return llm__err(LLM_ERR_NOMEM, "eval: out of memory");
    double sum = 0;
    llm_status s = LLM_OK;
    for (int i = 0; i < n_batches && s == LLM_OK; i++) {
        float li = 0;
        if ((s = llm_loader_next(l, buf, buf + BT)) == LLM_OK && (s = llm_model_forward(m, buf, buf + BT, l->B, l->T, &li)) == LLM_OK)
            sum += li;
    }
    LLM_FREE(buf);
    if (loss) *loss = n_batches > 0 ? LLM__CAST(float, sum / n_batches) : 0.0f;
    return s;
}
