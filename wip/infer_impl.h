//==== INFER ============================================================================
/* Inference with a key/value cache. Training runs the whole (B,T) block at once and keeps
 * every activation for backward; generation instead appends one token at a time, and a
 * token's keys and values never change once computed (causal attention: position t sees
 * only positions <= t, and RoPE/learned positions depend only on t). So each layer's k, v
 * rows are kept in a cache (S, maxT, NKV*HS) and a new row costs one pass through the
 * weights instead of a pass over the whole sequence.
 *
 * The forward here is llm_model_forward's, row by row: the same backend ops in the same
 * order, with positions taken from a device array instead of t. Only ops of the backend
 * table are used, so a GPU backend runs it unchanged:
 *   x   = wte[tok] (+ wpe[pos] for GPT-2: a second gather with the positions as ids)
 *   per layer: x += attproj(attention_kv(rope(qkv(norm1(x)))))     (k, v stored first)
 *              x += fcproj(act(fc(norm2(x))))
 *   logits = normf(x)[wanted rows] @ wcls^T
 * Scratch is sized for R rows per chunk; longer inputs are split into chunks of R rows
 * (a later chunk attends to what the earlier ones stored). The classifier runs only on
 * the wanted rows (a prompt needs the logits of its last row only), W rows at a time. */
#include <time.h>

#define LLM__KV_DEFAULT_ROWS 256
/* classifier rows per matmul: about 32 MB of logits scratch, at least 1 row */
#define LLM__KV_LOGIT_FLOATS (8u << 20)

struct llm_kv {
    llm_model *m;
    int S, maxT, R, W;         /* sequences, positions each, rows per chunk, logits rows */
    size_t KVW;                /* NKV*HS: one cached k (or v) row */
    int *len;                  /* (S) host: tokens held */
    int *toks;                 /* (S, maxT) host: the tokens held */
    int *cnt;                  /* (S) host scratch: rows per sequence in a call */
    int *h_tok, *h_seq, *h_pos;   /* (R) host: one chunk's rows */
    float *kcache, *vcache;    /* (L, S, maxT, KVW) device */
    float *mem;                /* device scratch, the views below */
    float *res, *res2;         /* (R, C) the residual stream, before/after attention */
    float *ln;                 /* (R, C) a block's normalised input */
    float *qkv;                /* (R, QKV) */
    float *att;                /* (R, C) attention output */
    float *fch;                /* (R, F) */
    float *fcha;               /* (R, H) */
    float *proj;               /* (R, C) a block's output before the residual add */
    float *mean, *rstd;        /* (R) norm statistics (unused by inference, the ops write them) */
    float *lrows;              /* (W, C) gathered final-norm rows */
    float *logits;             /* (W, V) */
    int *d_tok, *d_seq, *d_pos;   /* (R) device */
};

LLMDEF void llm_kv_free(llm_kv *kv) {
    if (!kv) return;
    if (kv->m) {
        const llm_backend *be = kv->m->be;
        void *bufs[6] = {kv->kcache, kv->vcache, kv->mem, kv->d_tok, kv->d_seq, kv->d_pos};
        for (int i = 0; i < 6; i++) if (bufs[i]) be->release(kv->m->st, bufs[i]);
    }
    LLM_FREE(kv->len); LLM_FREE(kv->toks); LLM_FREE(kv->cnt);
    LLM_FREE(kv->h_tok); LLM_FREE(kv->h_seq); LLM_FREE(kv->h_pos);
    LLM_FREE(kv);
}

LLMDEF llm_status llm_kv_create(llm_kv **out, llm_model *m, int n_seq, int max_len, int max_rows) {
    if (!out) return llm__err(LLM_ERR_ARG, "kv_create: out is NULL");
    *out = NULL;
    if (!m) return llm__err(LLM_ERR_ARG, "kv_create: model is NULL");
    if (n_seq < 1 || max_len < 0 || max_rows < 0)
        return llm__err(LLM_ERR_ARG, "kv_create: n_seq %d must be >= 1, max_len %d and max_rows %d >= 0",
                        n_seq, max_len, max_rows);
    const llm_config *c = &m->cfg;
    llm_kv *kv = LLM__CAST(llm_kv *, llm__calloc(1, sizeof *kv));
    if (!kv) return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory");
    kv->m = m;
    kv->S = n_seq;
    kv->maxT = max_len == 0 || max_len > c->max_seq_len ? c->max_seq_len : max_len;
    kv->R = max_rows == 0 ? LLM__KV_DEFAULT_ROWS : max_rows;
    if (kv->R > 65536) kv->R = 65536;
    size_t V = LLM__CAST(size_t, c->vocab_size), C = LLM__CAST(size_t, c->n_embd), R = LLM__CAST(size_t, kv->R);
    size_t W = LLM__KV_LOGIT_FLOATS / V;
    kv->W = LLM__CAST(int, W < 1 ? 1 : W > R ? R : W);
    kv->KVW = LLM__CAST(size_t, c->n_kv_head) * (C / LLM__CAST(size_t, c->n_head));
    size_t S = LLM__CAST(size_t, n_seq), T = LLM__CAST(size_t, kv->maxT), L = LLM__CAST(size_t, c->n_layer);
    if (S > (SIZE_MAX / 8) / T / L / kv->KVW) { llm_kv_free(kv); return llm__err(LLM_ERR_NOMEM, "kv_create: cache too large"); }
    size_t cache = L * S * T * kv->KVW;
    kv->len = LLM__CAST(int *, llm__calloc(S, sizeof(int)));
    kv->cnt = LLM__CAST(int *, llm__calloc(S, sizeof(int)));
    kv->toks = LLM__CAST(int *, llm__calloc(S * T, sizeof(int)));
    kv->h_tok = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    kv->h_seq = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    kv->h_pos = LLM__CAST(int *, llm__calloc(R, sizeof(int)));
    if (!kv->len || !kv->cnt || !kv->toks || !kv->h_tok || !kv->h_seq || !kv->h_pos) {
        llm_kv_free(kv);
        return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory");
    }
    /* device scratch: each view rounded up to 16 floats (64 bytes) */
    size_t Wn = LLM__CAST(size_t, kv->W);
    size_t n[12] = {R * C, R * C, R * C, R * LLM__CAST(size_t, m->QKV), R * C, R * LLM__CAST(size_t, m->F),
                    R * LLM__CAST(size_t, m->H), R * C, R, R, Wn * C, Wn * V};
    float **views[12] = {&kv->res, &kv->res2, &kv->ln, &kv->qkv, &kv->att, &kv->fch, &kv->fcha, &kv->proj,
                         &kv->mean, &kv->rstd, &kv->lrows, &kv->logits};
    size_t total = 0;
    for (int i = 0; i < 12; i++) total += (n[i] + 15) & ~LLM__CAST(size_t, 15);
    const llm_backend *be = m->be;
    kv->kcache = LLM__CAST(float *, be->alloc(m->st, cache * sizeof(float)));
    kv->vcache = LLM__CAST(float *, be->alloc(m->st, cache * sizeof(float)));
    kv->mem = LLM__CAST(float *, be->alloc(m->st, total * sizeof(float)));
    kv->d_tok = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    kv->d_seq = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    kv->d_pos = LLM__CAST(int *, be->alloc(m->st, R * sizeof(int)));
    if (!kv->kcache || !kv->vcache || !kv->mem || !kv->d_tok || !kv->d_seq || !kv->d_pos) {
        llm_kv_free(kv);
        return llm__err(LLM_ERR_NOMEM, "kv_create: out of memory for a cache of %d x %d positions (%zu MB)",
                        n_seq, kv->maxT, 2 * cache * sizeof(float) >> 20);
    }
    size_t o = 0;
    for (int i = 0; i < 12; i++) { *views[i] = kv->mem + o; o += (n[i] + 15) & ~LLM__CAST(size_t, 15); }
    *out = kv;
    return LLM_OK;
}

LLMDEF int llm_kv_max_len(const llm_kv *kv) { return kv ? kv->maxT : 0; }
LLMDEF int llm_kv_n_seq(const llm_kv *kv) { return kv ? kv->S : 0; }
LLMDEF int llm_kv_len(const llm_kv *kv, int seq) { return kv && seq >= 0 && seq < kv->S ? kv->len[seq] : 0; }
LLMDEF const int *llm_kv_tokens(const llm_kv *kv, int seq) {
    return kv && seq >= 0 && seq < kv->S ? kv->toks + LLM__CAST(size_t, seq) * kv->maxT : NULL;
}
LLMDEF void llm_kv_clear(llm_kv *kv, int seq) {
    if (!kv) return;
    for (int s = 0; s < kv->S; s++) if (seq < 0 || s == seq) kv->len[s] = 0;
}
LLMDEF void llm_kv_truncate(llm_kv *kv, int seq, int n) {
    if (!kv || seq < 0 || seq >= kv->S || n <= 0) return;
    kv->len[seq] = n >= kv->len[seq] ? 0 : kv->len[seq] - n;
}

/* One chunk of n <= R rows whose h_tok/h_seq/h_pos are filled: the layers, leaving the
 * final-norm output of every row in kv->ln. */
static llm_status llm__kv_chunk(llm_kv *kv, int n) {
    llm_model *m = kv->m;
    const llm_backend *be = m->be;
    void *st = m->st;
    const llm_config *c = &m->cfg;
    const llm_params *p = &m->p;
    int C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, HS = C / NH;
    size_t uC = LLM__CAST(size_t, C), QKV = LLM__CAST(size_t, m->QKV), F = LLM__CAST(size_t, m->F);
    size_t H = LLM__CAST(size_t, m->H), nC = LLM__CAST(size_t, n) * uC;
    size_t layer_cache = LLM__CAST(size_t, kv->S) * kv->maxT * kv->KVW;
    llm_status s;
    if ((s = be->upload(st, kv->d_tok, kv->h_tok, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    if ((s = be->upload(st, kv->d_seq, kv->h_seq, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    if ((s = be->upload(st, kv->d_pos, kv->h_pos, LLM__CAST(size_t, n) * sizeof(int))) != LLM_OK) return s;
    /* embedding: the rows as a (1, n) batch; GPT-2's position rows are gathered with
     * the positions as token ids into the wpe table, then added */
    if (p->wpe) {
        be->encoder_fwd(st, kv->ln, kv->d_tok, p->wte, NULL, 1, n, C);
        be->encoder_fwd(st, kv->proj, kv->d_pos, p->wpe, NULL, 1, n, C);
        be->residual_fwd(st, kv->res, kv->ln, kv->proj, nC);
    } else {
        be->encoder_fwd(st, kv->res, kv->d_tok, p->wte, NULL, 1, n, C);
    }
    for (int l = 0; l < c->n_layer; l++) {
        float *kc = kv->kcache + LLM__CAST(size_t, l) * layer_cache, *vc = kv->vcache + LLM__CAST(size_t, l) * layer_cache;
        llm__norm_fwd(m, kv->ln, kv->mean, kv->rstd, kv->res, llm__at(p->ln1w, l, uC), llm__at(p->ln1b, l, uC), n);
        be->matmul_fwd(st, kv->qkv, kv->ln, llm__at(p->qkvw, l, QKV * uC), llm__at(p->qkvb, l, QKV), n, C, m->QKV);
        if (c->arch == LLM_ARCH_LLAMA) be->rope_fwd(st, kv->qkv, kv->d_pos, 1, n, NH, NKV, HS, c->rope_theta);
        be->attention_kv(st, kv->att, kv->qkv, kc, vc, kv->d_seq, kv->d_pos, n, NH, NKV, HS, kv->maxT);
        be->matmul_fwd(st, kv->proj, kv->att, llm__at(p->attprojw, l, uC * uC), llm__at(p->attprojb, l, uC), n, C, C);
        be->residual_fwd(st, kv->res2, kv->res, kv->proj, nC);
        llm__norm_fwd(m, kv->ln, kv->mean, kv->rstd, kv->res2, llm__at(p->ln2w, l, uC), llm__at(p->ln2b, l, uC), n);
        be->matmul_fwd(st, kv->fch, kv->ln, llm__at(p->fcw, l, F * uC), llm__at(p->fcb, l, F), n, C, m->F);
        if (c->arch == LLM_ARCH_LLAMA) be->swiglu_fwd(st, kv->fcha, kv->fch, n, m->H);
        else be->gelu_fwd(st, kv->fcha, kv->fch, LLM__CAST(size_t, n) * H);
        be->matmul_fwd(st, kv->proj, kv->fcha, llm__at(p->fcprojw, l, uC * H), llm__at(p->fcprojb, l, uC), n, m->H, C);
        be->residual_fwd(st, kv->res, kv->res2, kv->proj, nC);
    }
    llm__norm_fwd(m, kv->ln, kv->mean, kv->rstd, kv->res, p->lnfw, p->lnfb, n);
    return LLM_OK;
}

/* The classifier on rows[0, k) of the chunk (k <= W): gathered into lrows unless they are
 * consecutive, then (k, V) logits downloaded to dst. */
static llm_status llm__kv_logits(llm_kv *kv, const int *rows, int k, float *dst) {
    llm_model *m = kv->m;
    size_t C = LLM__CAST(size_t, m->cfg.n_embd), V = LLM__CAST(size_t, m->cfg.vocab_size);
    int consecutive = 1;
    for (int j = 1; j < k; j++) if (rows[j] != rows[0] + j) consecutive = 0;
    const float *x = kv->ln + LLM__CAST(size_t, rows[0]) * C;
    if (!consecutive) {
        for (int j = 0; j < k; j++)
            m->be->copy(m->st, kv->lrows + LLM__CAST(size_t, j) * C, kv->ln + LLM__CAST(size_t, rows[j]) * C, C * sizeof(float));
        x = kv->lrows;
    }
    m->be->matmul_fwd(m->st, kv->logits, x, m->p.wcls ? m->p.wcls : m->p.wte, NULL, k, m->cfg.n_embd, m->cfg.vocab_size);
    return m->be->download(m->st, dst, kv->logits, LLM__CAST(size_t, k) * V * sizeof(float));
}

LLMDEF llm_status llm_kv_forward(llm_kv *kv, const int *seq, const int *tokens, int n,
                                 const unsigned char *want, float *logits) {
    if (!kv || (!tokens && n > 0) || n < 0) return llm__err(LLM_ERR_ARG, "kv_forward: NULL argument or n < 0");
    int V = kv->m->cfg.vocab_size;
    unsigned char none = 0;
    if (!want && !logits) { want = &none; }   /* no logits at all: no row wanted */
    /* validate everything first, so that an error leaves the session unchanged */
    memset(kv->cnt, 0, LLM__CAST(size_t, kv->S) * sizeof(int));
    int n_want = 0;
    for (int i = 0; i < n; i++) {
        int s = seq ? seq[i] : 0;
        if (s < 0 || s >= kv->S) return llm__err(LLM_ERR_ARG, "kv_forward: row %d: sequence %d outside [0, %d)", i, s, kv->S);
        if (tokens[i] < 0 || tokens[i] >= V)
            return llm__err(LLM_ERR_ARG, "kv_forward: row %d: token %d outside [0, %d)", i, tokens[i], V);
        kv->cnt[s]++;
        if (!want || (want != &none && want[i])) n_want++;
    }
    for (int s = 0; s < kv->S; s++)
        if (kv->cnt[s] > kv->maxT - kv->len[s])
            return llm__err(LLM_ERR_ARG, "kv_forward: context full: sequence %d holds %d tokens, %d more exceed "
                            "max_len %d (clear it, or slide the window)", s, kv->len[s], kv->cnt[s], kv->maxT);
    if (n_want > 0 && !logits) return llm__err(LLM_ERR_ARG, "kv_forward: logits is NULL but %d rows are wanted", n_want);
    llm_status st = LLM_OK;
    int rows[1024];   /* wanted rows of a chunk, up to W at a time */
    int wcap = kv->W < 1024 ? kv->W : 1024;
    size_t out_row = 0, Vz = LLM__CAST(size_t, V);
    for (int c0 = 0; c0 < n && st == LLM_OK; c0 += kv->R) {
        int cn = n - c0 < kv->R ? n - c0 : kv->R;
        for (int i = 0; i < cn; i++) {
            int s = seq ? seq[c0 + i] : 0;
            kv->h_tok[i] = tokens[c0 + i];
            kv->h_seq[i] = s;
            kv->h_pos[i] = kv->len[s];
            kv->toks[LLM__CAST(size_t, s) * kv->maxT + kv->len[s]] = tokens[c0 + i];
            kv->len[s]++;
        }
        if ((st = llm__kv_chunk(kv, cn)) != LLM_OK) break;
        int k = 0;
        for (int i = 0; i <= cn && st == LLM_OK; i++) {
            if (i < cn && (!want || (want != &none && want[c0 + i]))) rows[k++] = i;
            if (k > 0 && (k == wcap || i == cn)) {
                st = llm__kv_logits(kv, rows, k, logits + out_row * Vz);
                out_row += LLM__CAST(size_t, k);
                k = 0;
            }
        }
    }
    if (st == LLM_OK) st = kv->m->be->sync(kv->m->st);
    return st;
}

//==== GENERATE =========================================================================
/* Generation on top of the session: prefill every prompt in one forward (only the last
 * row's logits), then loop { sample each running item; stream and check stops; forward
 * one row per item still running }. The last sampled id of an item is not fed back
 * (nothing would read its logits), which is also run.c's behaviour: -n steps is the
 * number of forwards. */

static double llm__now(void) {
#if defined(CLOCK_MONOTONIC) && !defined(_WIN32)
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return LLM__CAST(double, ts.tv_sec) + 1e-9 * LLM__CAST(double, ts.tv_nsec);
#else
    return LLM__CAST(double, clock()) / CLOCKS_PER_SEC;
#endif
}

LLMDEF size_t llm_piece_gpt2(void *ud, int prev_id, int id, char *buf, size_t cap) {
    size_t n = 0;
    const char *p = llm_tokenizer_token(LLM__CAST(const llm_tokenizer *, ud), id, &n);
    (void)prev_id;
    if (!p) return 0;
    memcpy(buf, p, n < cap ? n : cap);
    return n;
}
LLMDEF size_t llm_piece_llama(void *ud, int prev_id, int id, char *buf, size_t cap) {
    size_t n = 0;
    const char *p = llm_llama_tokenizer_decode(LLM__CAST(const llm_llama_tokenizer *, ud), prev_id, id, &n);
    if (!p) return 0;
    memcpy(buf, p, n < cap ? n : cap);
    return n;
}

LLMDEF llm_generate_config llm_generate_config_default(void) {
    llm_generate_config c;
    memset(&c, 0, sizeof c);
    c.max_new_tokens = 256;
    c.stop_token = -1;
    return c;
}

#define LLM__PIECE_CAP 1024
typedef struct llm__gen_item {
    int seq, active, n_out, cap, pending, prev_id, lrow;
    const int *pre;            /* tokens to prefill (the prompt, or a slid context) */
    int n_pre;
    int *slid;                 /* owned copy when the prompt was slid */
    llm_sampler *smp;
    char *hold;                /* bytes held back (a stop string may begin there) */
    size_t n_hold;
    llm_finish why;
} llm__gen_item;

/* End an item: a final callback releases held-back bytes unless a stop string ended it. */
static void llm__gen_finish(const llm_generate_config *cfg, llm__gen_item *it, int i, llm_finish why) {
    it->active = 0;
    it->why = why;
    if (why != LLM_FINISH_STOP && it->n_hold && cfg->on_token)
        cfg->on_token(cfg->on_token_ud, i, -1, it->hold, it->n_hold, 0.0f);
    it->n_hold = 0;
}

/* Keep the last `keep` tokens of what sequence it->seq holds (+ extra[0, n_extra)): clear
 * the sequence and forward them again (their positions start from 0). */
static llm_status llm__gen_slide(llm_kv *kv, int seq, const int *extra, int n_extra, int keep,
                                 int **buf_out, llm_generate_stats *stats) {
    int have = kv->len[seq], total = have + n_extra;
    if (keep > total) keep = total;
    int *buf = LLM__CAST(int *, LLM_MALLOC((LLM__CAST(size_t, total) + 1) * sizeof(int)));
    if (!buf) return llm__err(LLM_ERR_NOMEM, "generate: out of memory");
    memcpy(buf, kv->toks + LLM__CAST(size_t, seq) * kv->maxT, LLM__CAST(size_t, have) * sizeof(int));
    if (n_extra) memcpy(buf + have, extra, LLM__CAST(size_t, n_extra) * sizeof(int));
    memmove(buf, buf + total - keep, LLM__CAST(size_t, keep) * sizeof(int));
    kv->len[seq] = 0;
    if (buf_out) { *buf_out = buf; return LLM_OK; }   /* the caller prefills them */
    double t0 = llm__now();
    llm_status s = LLM_OK;
    if (keep > 0) {
        int *seqs = LLM__CAST(int *, LLM_MALLOC(LLM__CAST(size_t, keep) * sizeof(int)));
        if (!seqs) { LLM_FREE(buf); return llm__err(LLM_ERR_NOMEM, "generate: out of memory"); }
        for (int i = 0; i < keep; i++) seqs[i] = seq;
        s = llm_kv_forward(kv, seqs, buf, keep, NULL, NULL);
        LLM_FREE(seqs);
        if (stats) { stats->prefill_tokens += keep; stats->prefill_seconds += llm__now() - t0; }
    }
    LLM_FREE(buf);
    return s;
}

static llm_status llm__generate(llm_kv *kv, int n, const int *seqs, const int *const *prompts,
                                const int *n_prompts, const llm_generate_config *cfg_in,
                                int *const *outs, const int *caps, int *n_outs, llm_finish *finish,
                                llm_generate_stats *stats) {
    llm_generate_stats dummy;
    if (!stats) stats = &dummy;
    memset(stats, 0, sizeof *stats);
    if (!kv || n < 1 || !prompts || !n_prompts || !outs || !caps || !n_outs)
        return llm__err(LLM_ERR_ARG, "generate: NULL argument or no items");
    llm_generate_config cfg = cfg_in ? *cfg_in : llm_generate_config_default();
    if (cfg.n_stops > 0 && (!cfg.stops || !cfg.piece))
        return llm__err(LLM_ERR_ARG, "generate: stop strings need the stops array and a piece function");
    if (cfg.n_stops < 0) cfg.n_stops = 0;
    const int V = kv->m->cfg.vocab_size, maxT = kv->maxT;
    size_t max_stop = 0;
    for (int k = 0; k < cfg.n_stops; k++) if (cfg.stops[k] && strlen(cfg.stops[k]) > max_stop) max_stop = strlen(cfg.stops[k]);
    for (int i = 0; i < n; i++) {
        int s = seqs ? seqs[i] : i;
        if (s < 0 || s >= kv->S) return llm__err(LLM_ERR_ARG, "generate: item %d: sequence %d outside [0, %d)", i, s, kv->S);
        for (int j = 0; j < i; j++)
            if ((seqs ? seqs[j] : j) == s) return llm__err(LLM_ERR_ARG, "generate: items %d and %d share sequence %d", j, i, s);
        if (n_prompts[i] < 1 || !prompts[i]) return llm__err(LLM_ERR_ARG, "generate: item %d: the prompt needs at least one token", i);
        if (!outs[i] && caps[i] > 0) return llm__err(LLM_ERR_ARG, "generate: item %d: out is NULL", i);
        for (int j = 0; j < n_prompts[i]; j++)
            if (prompts[i][j] < 0 || prompts[i][j] >= V)
                return llm__err(LLM_ERR_ARG, "generate: item %d: prompt token %d is %d, outside [0, %d)", i, j, prompts[i][j], V);
        if (!cfg.slide_window && kv->len[s] + n_prompts[i] > maxT)
            return llm__err(LLM_ERR_ARG, "generate: item %d: a prompt of %d tokens does not fit: sequence %d holds %d "
                            "of max_len %d (shorten it, or set slide_window)", i, n_prompts[i], s, kv->len[s], maxT);
    }
    llm__gen_item *it = LLM__CAST(llm__gen_item *, llm__calloc(LLM__CAST(size_t, n), sizeof *it));
    float *lg = LLM__CAST(float *, LLM_MALLOC(LLM__CAST(size_t, n) * LLM__CAST(size_t, V) * sizeof(float)));
    char *piece = LLM__CAST(char *, LLM_MALLOC(LLM__PIECE_CAP));
    size_t total_pre = 0;
    for (int i = 0; i < n; i++) total_pre += LLM__CAST(size_t, n_prompts[i]);
    if (total_pre < LLM__CAST(size_t, n)) total_pre = LLM__CAST(size_t, n);   /* rows: the prefill, then one per item */
    int *rseq = LLM__CAST(int *, LLM_MALLOC(total_pre * sizeof(int)));
    int *rtok = LLM__CAST(int *, LLM_MALLOC(total_pre * sizeof(int)));
    unsigned char *rwant = LLM__CAST(unsigned char *, LLM_MALLOC(total_pre));
    llm_status s = LLM_OK;
    if (!it || !lg || !piece || !rseq || !rtok || !rwant) { s = llm__err(LLM_ERR_NOMEM, "generate: out of memory"); goto done; }
    for (int i = 0; i < n && s == LLM_OK; i++) {
        llm_sampler_config sc = cfg.sampler;
        sc.seed = cfg.sampler.seed + LLM__CAST(uint64_t, i);
        it[i].seq = seqs ? seqs[i] : i;
        it[i].cap = caps[i] > 0 ? caps[i] : 0;
        if (cfg.max_new_tokens > 0 && it[i].cap > cfg.max_new_tokens) it[i].cap = cfg.max_new_tokens;
        it[i].active = 1;
        it[i].pre = prompts[i];
        it[i].n_pre = n_prompts[i];
        n_outs[i] = 0;
        if (finish) finish[i] = LLM_FINISH_NONE;
        if ((s = llm_sampler_create(&it[i].smp, V, &sc)) != LLM_OK) goto done;
        if (max_stop && !(it[i].hold = LLM__CAST(char *, LLM_MALLOC(max_stop + LLM__PIECE_CAP)))) {
            s = llm__err(LLM_ERR_NOMEM, "generate: out of memory"); goto done;
        }
        if (kv->len[it[i].seq] + n_prompts[i] > maxT) {   /* slide_window: keep the last half */
            int keep = maxT / 2 > 0 ? maxT / 2 : 1;
            if ((s = llm__gen_slide(kv, it[i].seq, prompts[i], n_prompts[i], keep, &it[i].slid, stats)) != LLM_OK) goto done;
            it[i].pre = it[i].slid;
            it[i].n_pre = keep;
        }
    }
    /* prefill: all prompts in one forward, the last row of each wanted */
    {
        int r = 0;
        for (int i = 0; i < n; i++) {
            const llm__gen_item *t = &it[i];
            for (int j = 0; j < t->n_pre; j++, r++) { rseq[r] = t->seq; rtok[r] = t->pre[j]; rwant[r] = j == t->n_pre - 1; }
            it[i].prev_id = t->pre[t->n_pre - 1];
            it[i].lrow = i;
        }
        double t0 = llm__now();
        if ((s = llm_kv_forward(kv, rseq, rtok, r, rwant, lg)) != LLM_OK) goto done;
        stats->prefill_tokens += r;
        stats->prefill_seconds += llm__now() - t0;
    }
    {
        double t_dec = llm__now(), t_pre0 = stats->prefill_seconds;
        for (int i = 0; i < n; i++) if (it[i].cap == 0) llm__gen_finish(&cfg, &it[i], i, LLM_FINISH_LENGTH);
        for (;;) {
            /* sample, stream, check the stop conditions */
            for (int i = 0; i < n && s == LLM_OK; i++) {
                llm__gen_item *t = &it[i];
                if (!t->active) continue;
                int id;
                float lp;
                const int *ctx = kv->toks + LLM__CAST(size_t, t->seq) * maxT;
                if ((s = llm_sampler_sample(t->smp, lg + LLM__CAST(size_t, t->lrow) * V, ctx, kv->len[t->seq], &id, &lp)) != LLM_OK) break;
                if (id == cfg.stop_token) { llm__gen_finish(&cfg, t, i, LLM_FINISH_TOKEN); continue; }
                outs[i][t->n_out++] = id;
                stats->generated++;
                const char *text = NULL;
                size_t tlen = 0;
                int stopped = 0;
                if (cfg.piece) {
                    size_t pl = cfg.piece(cfg.piece_ud, t->prev_id, id, piece, LLM__PIECE_CAP);
                    if (pl > LLM__PIECE_CAP) pl = LLM__PIECE_CAP;
                    text = piece; tlen = pl;
                    if (max_stop) {
                        size_t from = t->n_hold, at;
                        memcpy(t->hold + t->n_hold, piece, pl);
                        t->n_hold += pl;
                        if (llm_stop_find(t->hold, t->n_hold, from, cfg.stops, cfg.n_stops, &at) >= 0) {
                            stopped = 1;
                            tlen = at;
                        } else {
                            tlen = t->n_hold - llm_stop_partial(t->hold, t->n_hold, cfg.stops, cfg.n_stops);
                        }
                        text = t->hold;
                    }
                }
                t->prev_id = id;
                int cb = cfg.on_token ? cfg.on_token(cfg.on_token_ud, i, id, text, tlen, lp) : 0;
                if (max_stop) {   /* drop what was released */
                    memmove(t->hold, t->hold + tlen, t->n_hold - tlen);
                    t->n_hold -= tlen;
                }
                if (stopped) llm__gen_finish(&cfg, t, i, LLM_FINISH_STOP);
                else if (cb) llm__gen_finish(&cfg, t, i, LLM_FINISH_CALLBACK);
                else if (t->n_out >= t->cap) llm__gen_finish(&cfg, t, i, LLM_FINISH_LENGTH);
                else t->pending = id;
            }
            if (s != LLM_OK) break;
            /* one row per running item; make room first */
            int r = 0;
            for (int i = 0; i < n && s == LLM_OK; i++) {
                llm__gen_item *t = &it[i];
                if (!t->active) continue;
                if (kv->len[t->seq] >= maxT) {
                    if (!cfg.slide_window) { llm__gen_finish(&cfg, t, i, LLM_FINISH_CONTEXT); continue; }
                    s = llm__gen_slide(kv, t->seq, NULL, 0, maxT / 2, NULL, stats);
                    if (s != LLM_OK) break;
                }
                rseq[r] = t->seq; rtok[r] = t->pending;
                t->lrow = r++;
            }
            if (s != LLM_OK || r == 0) break;
            if ((s = llm_kv_forward(kv, rseq, rtok, r, NULL, lg)) != LLM_OK) break;
            stats->decode_tokens += r;
        }
        /* decode time: the loop, less the re-prefills it did */
        stats->decode_seconds = llm__now() - t_dec - (stats->prefill_seconds - t_pre0);
    }
done:
    for (int i = 0; it && i < n; i++) {
        if (s == LLM_OK) {
            n_outs[i] = it[i].n_out;
            if (finish) finish[i] = it[i].why;
        }
        llm_sampler_free(it[i].smp);
        LLM_FREE(it[i].hold);
        LLM_FREE(it[i].slid);
    }
    LLM_FREE(it); LLM_FREE(lg); LLM_FREE(piece); LLM_FREE(rseq); LLM_FREE(rtok); LLM_FREE(rwant);
    return s;
}

LLMDEF llm_status llm_generate(llm_kv *kv, int seq, const int *prompt, int n_prompt,
                               const llm_generate_config *cfg, int *out, int cap, int *n_out,
                               llm_finish *finish, llm_generate_stats *stats) {
    int *outs[1];
    outs[0] = out;
    if (!n_out) return llm__err(LLM_ERR_ARG, "generate: n_out is NULL");
    return llm__generate(kv, 1, &seq, &prompt, &n_prompt, cfg, outs, &cap, n_out, finish, stats);
}

LLMDEF llm_status llm_generate_batch(llm_kv *kv, int n, const int *seqs, const int *const *prompts,
                                     const int *n_prompts, const llm_generate_config *cfg,
                                     int *const *outs, const int *caps, int *n_outs, llm_finish *finish,
                                     llm_generate_stats *stats) {
    return llm__generate(kv, n, seqs, prompts, n_prompts, cfg, outs, caps, n_outs, finish, stats);
}
