/* wip/generate_impl.h: work in progress, inlined into llm.h when done. */

//==== LLAMATOK =========================================================================
/* llama2.c's SentencePiece-style tokenizer. The file is a list of (score, piece); the
 * pieces are looked up through an open-addressing hash table built at load time, so
 * encoding needs no sorted copy and the tokenizer stays read-only (thread-safe).
 *
 * Encoding is run.c's encode(): code points first, then BPE-like merges where the pair
 * to merge next is the adjacent pair whose concatenation is a piece with the highest
 * score, the leftmost on ties. run.c rescans all pairs after each merge (O(n^2)); here
 * every candidate pair sits in a binary heap ordered by (score desc, position asc) and
 * stale entries are skipped when popped, which picks exactly the same pair each step
 * in O(n log n). Known differences from run.c, all where run.c misbehaves: pieces are
 * compared as byte strings with lengths (run.c's strcmp stops at a NUL inside a piece),
 * text may contain NUL bytes (run.c stops at the first), duplicate pieces resolve to the
 * lowest id (run.c's bsearch picks any), and a vocabulary without " " falls back to the
 * byte token for the dummy prefix (run.c emits id -1). */
struct llm_llama_tokenizer {
    int V;                  /* tokens */
    int max_token_length;   /* from the header; every piece is at most this long */
    float *scores;          /* (V) merge scores: the higher, the earlier the merge */
    size_t *off;            /* (V+1) piece i is text[off[i] .. off[i+1]-1), then a NUL */
    char *text;             /* all pieces, each followed by a NUL */
    int *slots;             /* (nslots) hash table: a token id, or -1 for empty */
    size_t nslots;          /* a power of two >= 2V */
    char bytes[512];        /* "<0xXX>" decoded: byte b at bytes[2b], a NUL at bytes[2b+1] */
};

/* The merge threshold of run.c: its best score starts at -1e10, so a pair whose score
 * is not above that never merges. */
#define LLM__LTOK_MIN_SCORE (-1e10f)

static int32_t llm__ltok_i32(const unsigned char *p) {
    uint32_t u = LLM__CAST(uint32_t, p[0]) | LLM__CAST(uint32_t, p[1]) << 8 |
                 LLM__CAST(uint32_t, p[2]) << 16 | LLM__CAST(uint32_t, p[3]) << 24;
    int32_t v;
    memcpy(&v, &u, 4);  /* the file is little-endian, as the machines llama2.c runs on */
    return v;
}
static float llm__ltok_f32(const unsigned char *p) {
    int32_t i = llm__ltok_i32(p);
    float f;
    memcpy(&f, &i, 4);
    return f;
}

/* FNV-1a, fed in pieces so that a pair can be hashed without concatenating it. */
#define LLM__LTOK_FNV0 0xcbf29ce484222325ULL
static uint64_t llm__ltok_fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= LLM__CAST(unsigned char, s[i]); h *= 0x100000001b3ULL; }
    return h;
}

/* The id of the piece a||b (b may be empty), or -1. */
static int llm__ltok_find(const llm_llama_tokenizer *t, const char *a, size_t na, const char *b,
                          size_t nb) {
    size_t mask = t->nslots - 1;
    size_t i = LLM__CAST(size_t, llm__ltok_fnv(llm__ltok_fnv(LLM__LTOK_FNV0, a, na), b, nb)) & mask;
    for (;; i = (i + 1) & mask) {
        int id = t->slots[i];
        if (id < 0) return -1;
        const char *p = t->text + t->off[id];
        size_t n = t->off[id + 1] - t->off[id] - 1;
        if (n == na + nb && memcmp(p, a, na) == 0 && (nb == 0 || memcmp(p + na, b, nb) == 0))
            return id;
    }
}

LLMDEF void llm_llama_tokenizer_free(llm_llama_tokenizer *t) {
    if (!t) return;
    LLM_FREE(t->scores); LLM_FREE(t->off); LLM_FREE(t->text); LLM_FREE(t->slots);
    LLM_FREE(t);
}

/* Walk the records once to count tokens and bytes, checking every length against
 * what is left of the file; then copy them out and build the hash table. */
LLMDEF llm_status llm_llama_tokenizer_load(llm_llama_tokenizer **out, const char *path,
                                           int vocab_size) {
    if (!out) return llm__err(LLM_ERR_ARG, "llama tokenizer: out is NULL");
    *out = NULL;
    if (!path) return llm__err(LLM_ERR_ARG, "llama tokenizer: path is NULL");
    if (vocab_size < 0) return llm__err(LLM_ERR_ARG, "%s: vocab_size %d < 0", path, vocab_size);
    char *data;
    size_t n;
    llm_status s = llm__read_file(path, &data, &n);
    if (s != LLM_OK) return s;
    const unsigned char *d = LLM__CAST(const unsigned char *, LLM__CAST(const void *, data));
    if (n < 4) {
        LLM_FREE(data);
        return llm__err(LLM_ERR_FORMAT, "%s: %lu bytes, too short for the int32 max_token_length",
                        path, LLM__CAST(unsigned long, n));
    }
    int32_t mtl = llm__ltok_i32(d);
    if (mtl < 1) {
        LLM_FREE(data);
        return llm__err(LLM_ERR_FORMAT, "%s: max_token_length %d < 1 (not a llama2.c tokenizer.bin?)",
                        path, mtl);
    }
    /* pass 1: count and validate */
    size_t pos = 4, text_bytes = 0;
    int count = 0;
    while (pos < n && (vocab_size == 0 || count < vocab_size)) {
        if (n - pos < 8) {
            LLM_FREE(data);
            return llm__err(LLM_ERR_FORMAT, "%s: truncated: token %d has %lu of its 8 header bytes",
                            path, count, LLM__CAST(unsigned long, n - pos));
        }
        int32_t len = llm__ltok_i32(d + pos + 4);
        if (len < 0 || len > mtl) {
            LLM_FREE(data);
            return llm__err(LLM_ERR_FORMAT, "%s: token %d has length %d, outside [0, max_token_length %d]",
                            path, count, len, mtl);
        }
        if (LLM__CAST(size_t, len) > n - pos - 8) {
            LLM_FREE(data);
            return llm__err(LLM_ERR_FORMAT, "%s: truncated: token %d needs %d bytes, %lu left",
                            path, count, len, LLM__CAST(unsigned long, n - pos - 8));
        }
        pos += 8 + LLM__CAST(size_t, len);
        text_bytes += LLM__CAST(size_t, len) + 1;
        if (count == INT_MAX / 4) {
            LLM_FREE(data);
            return llm__err(LLM_ERR_FORMAT, "%s: too many tokens", path);
        }
        count++;
    }
    if (vocab_size > 0 && count < vocab_size) {
        LLM_FREE(data);
        return llm__err(LLM_ERR_FORMAT, "%s: holds %d tokens, expected vocab_size %d (truncated, or "
                        "a tokenizer for another model)", path, count, vocab_size);
    }
    if (pos < n) {
        LLM_FREE(data);
        return llm__err(LLM_ERR_FORMAT, "%s: %lu bytes follow token %d: more tokens than vocab_size "
                        "%d (a tokenizer for another model?)", path, LLM__CAST(unsigned long, n - pos),
                        count - 1, vocab_size);
    }
    if (count < 3) {
        LLM_FREE(data);
        return llm__err(LLM_ERR_FORMAT, "%s: %d tokens; a Llama vocabulary has at least <unk>, BOS, EOS",
                        path, count);
    }
    /* pass 2: copy */
    llm_llama_tokenizer *t = LLM__CAST(llm_llama_tokenizer *, llm__calloc(1, sizeof *t));
    size_t nslots = 16;
    while (nslots < 2 * LLM__CAST(size_t, count)) nslots *= 2;
    if (t) {
        t->V = count;
        t->max_token_length = mtl;
        t->nslots = nslots;
        t->scores = LLM__CAST(float *, llm__calloc(LLM__CAST(size_t, count), sizeof(float)));
        t->off = LLM__CAST(size_t *, llm__calloc(LLM__CAST(size_t, count) + 1, sizeof(size_t)));
        t->text = LLM__CAST(char *, llm__calloc(text_bytes, 1));
        t->slots = LLM__CAST(int *, llm__calloc(nslots, sizeof(int)));
    }
    if (!t || !t->scores || !t->off || !t->text || !t->slots) {
        llm_llama_tokenizer_free(t);
        LLM_FREE(data);
        return llm__err(LLM_ERR_NOMEM, "%s: out of memory for %d tokens", path, count);
    }
    pos = 4;
    size_t w = 0;
    for (int i = 0; i < count; i++) {
        size_t len = LLM__CAST(size_t, llm__ltok_i32(d + pos + 4));
        t->scores[i] = llm__ltok_f32(d + pos);
        t->off[i] = w;
        memcpy(t->text + w, d + pos + 8, len);
        t->text[w + len] = 0;
        w += len + 1;
        pos += 8 + len;
    }
    t->off[count] = w;
    LLM_FREE(data);
    for (size_t i = 0; i < nslots; i++) t->slots[i] = -1;
    for (int i = 0; i < count; i++) {
        const char *p = t->text + t->off[i];
        size_t len = t->off[i + 1] - t->off[i] - 1;
        if (llm__ltok_find(t, p, len, "", 0) >= 0) continue;  /* duplicate: the first id wins */
        size_t j = LLM__CAST(size_t, llm__ltok_fnv(LLM__LTOK_FNV0, p, len)) & (nslots - 1);
        while (t->slots[j] >= 0) j = (j + 1) & (nslots - 1);
        t->slots[j] = i;
    }
    for (int b = 0; b < 256; b++) { t->bytes[2 * b] = LLM__CAST(char, b); t->bytes[2 * b + 1] = 0; }
    *out = t;
    return LLM_OK;
}

LLMDEF int llm_llama_tokenizer_vocab_size(const llm_llama_tokenizer *t) { return t ? t->V : 0; }

LLMDEF const char *llm_llama_tokenizer_piece(const llm_llama_tokenizer *t, int id, size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V) return NULL;
    if (len) *len = t->off[id + 1] - t->off[id] - 1;
    return t->text + t->off[id];
}

LLMDEF float llm_llama_tokenizer_score(const llm_llama_tokenizer *t, int id) {
    return (!t || id < 0 || id >= t->V) ? 0.0f : t->scores[id];
}

/* A candidate merge of the adjacent symbols at positions left and right (indices into
 * the initial token list; a merged symbol keeps its left position, so positions keep
 * the text order). ver_* are the positions' versions when it was pushed: a change at
 * either position makes the entry stale. */
typedef struct llm__ltok_pair {
    float score;
    int left, right, id;
    unsigned ver_left, ver_right;
} llm__ltok_pair;

/* Heap order: higher score first; on equal scores the leftmost pair (run.c's strict
 * `>` keeps the first best it scans). */
static int llm__ltok_before(const llm__ltok_pair *a, const llm__ltok_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct llm__ltok_work {
    int *tok;               /* (n) token at each position */
    int *next, *prev;       /* (n) linked list of live positions; -1 at the ends */
    unsigned *ver;          /* (n) bumped whenever tok[i] changes or position i dies */
    llm__ltok_pair *heap;   /* binary max-heap in llm__ltok_before order */
    size_t nheap, capheap;
} llm__ltok_work;

/* Push the pair (left, right) if its concatenation is a piece that may merge. */
static int llm__ltok_push(const llm_llama_tokenizer *t, llm__ltok_work *w, int left, int right) {
    int a = w->tok[left], b = w->tok[right];
    int id = llm__ltok_find(t, t->text + t->off[a], t->off[a + 1] - t->off[a] - 1,
                            t->text + t->off[b], t->off[b + 1] - t->off[b] - 1);
    if (id < 0 || !(t->scores[id] > LLM__LTOK_MIN_SCORE)) return 1;  /* NaN never merges */
    if (w->nheap == w->capheap) {
        size_t cap = w->capheap * 2 + 16;
        llm__ltok_pair *h = LLM__CAST(llm__ltok_pair *, LLM_REALLOC(w->heap, cap * sizeof *h));
        if (!h) return 0;
        w->heap = h; w->capheap = cap;
    }
    llm__ltok_pair e;
    e.score = t->scores[id]; e.left = left; e.right = right; e.id = id;
    e.ver_left = w->ver[left]; e.ver_right = w->ver[right];
    size_t i = w->nheap++;
    while (i > 0 && llm__ltok_before(&e, &w->heap[(i - 1) / 2])) {   /* sift up */
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = e;
    return 1;
}

static llm__ltok_pair llm__ltok_pop(llm__ltok_work *w) {
    llm__ltok_pair top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {                                                        /* sift down */
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && llm__ltok_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!llm__ltok_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0) w->heap[i] = last;
    return top;
}

static const unsigned char llm__ltok_space[1] = {' '};

/* The byte-fallback ids of buf[0, n): byte + 3 (ids 3..258 are <0x00>..<0xFF>). */
static llm_status llm__ltok_bytes(const llm_llama_tokenizer *t, const unsigned char *buf, size_t n,
                                  int *tok, int *m) {
    for (size_t i = 0; i < n; i++) {
        int id = buf[i] + 3;
        if (id >= t->V)
            return llm__err(LLM_ERR_ARG, "llama tokenizer: byte 0x%02X is not in the vocabulary and "
                            "byte fallback needs id %d, but the vocabulary has %d tokens", buf[i], id, t->V);
        tok[(*m)++] = id;
    }
    return LLM_OK;
}

LLMDEF llm_status llm_llama_tokenizer_encode(const llm_llama_tokenizer *t, const char *text,
                                             size_t len, int bos, int eos, int *ids,
                                             int max_ids, int *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || !n_ids || (!text && len > 0) || (!ids && max_ids > 0) || max_ids < 0)
        return llm__err(LLM_ERR_ARG, "llama tokenizer encode: NULL argument or max_ids < 0");
    if (len > LLM__CAST(size_t, INT_MAX / 4) - 3)
        return llm__err(LLM_ERR_ARG, "llama tokenizer encode: text of %lu bytes is too long",
                        LLM__CAST(unsigned long, len));
    int cap = LLM__CAST(int, len) + 3, m = 0;   /* BOS + dummy prefix + one per byte + EOS */
    llm__ltok_work w;
    memset(&w, 0, sizeof w);
    w.tok = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.next = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.prev = LLM__CAST(int *, llm__calloc(LLM__CAST(size_t, cap), sizeof(int)));
    w.ver = LLM__CAST(unsigned *, llm__calloc(LLM__CAST(size_t, cap), sizeof(unsigned)));
    llm_status s = LLM_OK;
    if (!w.tok || !w.next || !w.prev || !w.ver) {
        s = llm__err(LLM_ERR_NOMEM, "llama tokenizer encode: out of memory for %d tokens", cap);
        goto done;
    }
    /* 1. BOS, the dummy prefix " " (SentencePiece's add_dummy_prefix), then one token per
     *    code point. As run.c: a lead byte starts a new code point, continuation bytes
     *    (10xxxxxx) join it up to 4 bytes in all; no other UTF-8 validation. */
    if (bos) w.tok[m++] = LLM_LLAMA_BOS;
    if (len > 0) {
        int sp = llm__ltok_find(t, " ", 1, "", 0);
        if (sp >= 0) w.tok[m++] = sp;
        else if ((s = llm__ltok_bytes(t, llm__ltok_space, 1, w.tok, &m)) != LLM_OK) goto done;
    }
    {
        const unsigned char *u = LLM__CAST(const unsigned char *, LLM__CAST(const void *, text));
        unsigned char buf[4];
        size_t nb = 0;
        for (size_t i = 0; i < len; i++) {
            if ((u[i] & 0xC0) != 0x80) nb = 0;
            buf[nb++] = u[i];
            if (i + 1 < len && (u[i + 1] & 0xC0) == 0x80 && nb < 4) continue;
            int id = llm__ltok_find(t, LLM__CAST(const char *, LLM__CAST(const void *, buf)), nb, "", 0);
            if (id >= 0) w.tok[m++] = id;
            else if ((s = llm__ltok_bytes(t, buf, nb, w.tok, &m)) != LLM_OK) goto done;
            nb = 0;
        }
    }
    /* 2. Merges. Reference (run.c): repeat { scan all adjacent pairs, take the best by
     *    (score, leftmost); replace it by the merged piece } until no pair is a piece.
     *    Here: the same choice from a heap of candidates; after merging (l, r) into l,
     *    only the pairs (prev(l), l) and (l, next(l)) are new. */
    for (int i = 0; i < m; i++) { w.next[i] = i + 1 < m ? i + 1 : -1; w.prev[i] = i - 1; }
    for (int i = 0; i + 1 < m; i++)
        if (!llm__ltok_push(t, &w, i, i + 1)) goto nomem;
    while (w.nheap > 0) {
        llm__ltok_pair e = llm__ltok_pop(&w);
        if (w.ver[e.left] != e.ver_left || w.ver[e.right] != e.ver_right) continue;  /* stale */
        int l = e.left, r = e.right;
        w.tok[l] = e.id; w.ver[l]++;
        w.ver[r]++;                                /* r dies: unlink it */
        w.next[l] = w.next[r];
        if (w.next[r] >= 0) w.prev[w.next[r]] = l;
        if (w.prev[l] >= 0 && !llm__ltok_push(t, &w, w.prev[l], l)) goto nomem;
        if (w.next[l] >= 0 && !llm__ltok_push(t, &w, l, w.next[l])) goto nomem;
    }
    /* 3. Collect the live positions, then EOS. */
    {
        int n = 0;
        for (int i = m > 0 ? 0 : -1; i >= 0; i = w.next[i]) n++;
        if (eos) n++;
        *n_ids = n;
        if (n > max_ids) {
            s = llm__err(LLM_ERR_ARG, "llama tokenizer encode: %d ids do not fit in max_ids %d", n, max_ids);
            goto done;
        }
        n = 0;
        for (int i = m > 0 ? 0 : -1; i >= 0; i = w.next[i]) ids[n++] = w.tok[i];
        if (eos) ids[n++] = LLM_LLAMA_EOS;
    }
    goto done;
nomem:
    s = llm__err(LLM_ERR_NOMEM, "llama tokenizer encode: out of memory");
done:
    LLM_FREE(w.tok); LLM_FREE(w.next); LLM_FREE(w.prev); LLM_FREE(w.ver); LLM_FREE(w.heap);
    return s;
}

static int llm__ltok_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

LLMDEF const char *llm_llama_tokenizer_decode(const llm_llama_tokenizer *t, int prev_id, int id,
                                              size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V) {
        llm__err(LLM_ERR_ARG, "llama tokenizer decode: id %d outside [0, %d)", id, t ? t->V : 0);
        return NULL;
    }
    const char *p = t->text + t->off[id];
    size_t n = t->off[id + 1] - t->off[id] - 1;
    /* after BOS the dummy-prefix space that encode added is not part of the text */
    if (prev_id == LLM_LLAMA_BOS && n > 0 && p[0] == ' ') { p++; n--; }
    /* "<0xXX>" is the raw byte XX (run.c: sscanf "<0x%02hhX>"; here exactly 2 hex digits) */
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' &&
        llm__ltok_hex(p[3]) >= 0 && llm__ltok_hex(p[4]) >= 0) {
        int b = llm__ltok_hex(p[3]) * 16 + llm__ltok_hex(p[4]);
        p = t->bytes + 2 * b;
        n = 1;
    }
    if (len) *len = n;
    return p;
}

//==== SAMPLE ===========================================================================
/* Choosing the next token: repetition penalty, temperature, top-k, top-p, one draw.
 * The temperature + top-p path is llama2.c's run.c sample(), float for float, so that
 * its seeded outputs are reproduced exactly (checked: stories260K at -t 1.0 -p 0.9
 * -s 133742 gives run.c's text). It departs from run.c only where run.c fails: when
 * rounding leaves the draw above the total cdf run.c returns id V-1 even if its p is 0
 * (here: the last id with p > 0); when run.c's nucleus pre-filter keeps no token it
 * reads out of bounds (here: every token is a candidate); seed 0, which run.c replaces
 * by the time, is a fixed constant here. */
typedef struct llm__cand { float p; int id; } llm__cand;   /* run.c's ProbIndex */

struct llm_sampler {
    llm_sampler_config cfg;
    int V;
    uint64_t rng;           /* xorshift64* state */
    float *x;               /* (V) working copy: logits, then probabilities */
    llm__cand *cand;        /* (V) candidates for top-k / top-p */
    llm__cand *sorted;      /* (V) the nucleus, sorted */
    unsigned char *seen;    /* (V) marks, so a repeated id is penalised once */
};

/* run.c's RNG: xorshift64* (Marsaglia's shifts 12, 25, 27; Vigna's multiplier), the
 * high 32 bits; a float in [0, 1) from its top 24 bits. */
static uint32_t llm__xorshift_u32(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return LLM__CAST(uint32_t, (*s * 0x2545F4914F6CDD1DULL) >> 32);
}
static float llm__xorshift_f32(uint64_t *s) {
    return LLM__CAST(float, llm__xorshift_u32(s) >> 8) / 16777216.0f;
}

LLMDEF llm_sampler_config llm_sampler_config_default(void) {
    llm_sampler_config c;
    memset(&c, 0, sizeof c);
    return c;
}

LLMDEF void llm_sampler_reseed(llm_sampler *s, uint64_t seed) {
    if (s) s->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;  /* 2^64 / golden ratio */
}

LLMDEF void llm_sampler_free(llm_sampler *s) {
    if (!s) return;
    LLM_FREE(s->x); LLM_FREE(s->cand); LLM_FREE(s->sorted); LLM_FREE(s->seen);
    LLM_FREE(s);
}

LLMDEF llm_status llm_sampler_create(llm_sampler **out, int vocab_size,
                                     const llm_sampler_config *cfg) {
    if (!out) return llm__err(LLM_ERR_ARG, "sampler: out is NULL");
    *out = NULL;
    llm_sampler_config c = cfg ? *cfg : llm_sampler_config_default();
    if (vocab_size < 1) return llm__err(LLM_ERR_ARG, "sampler: vocab_size %d < 1", vocab_size);
    if (!(c.temperature >= 0) || c.temperature == INFINITY)
        return llm__err(LLM_ERR_ARG, "sampler: temperature %g must be finite and >= 0", c.temperature);
    if (!(c.repetition_penalty >= 0) || c.repetition_penalty == INFINITY)
        return llm__err(LLM_ERR_ARG, "sampler: repetition_penalty %g must be finite and >= 0 "
                        "(0 or 1: off)", c.repetition_penalty);
    if (c.top_p != c.top_p) return llm__err(LLM_ERR_ARG, "sampler: top_p is NaN");
    llm_sampler *s = LLM__CAST(llm_sampler *, llm__calloc(1, sizeof *s));
    if (s) {
        s->x = LLM__CAST(float *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(float)));
        s->cand = LLM__CAST(llm__cand *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(llm__cand)));
        s->sorted = LLM__CAST(llm__cand *, llm__calloc(LLM__CAST(size_t, vocab_size), sizeof(llm__cand)));
        s->seen = LLM__CAST(unsigned char *, llm__calloc(LLM__CAST(size_t, vocab_size), 1));
    }
    if (!s || !s->x || !s->cand || !s->sorted || !s->seen) {
        llm_sampler_free(s);
        return llm__err(LLM_ERR_NOMEM, "sampler: out of memory for vocab_size %d", vocab_size);
    }
    s->cfg = c;
    s->V = vocab_size;
    llm_sampler_reseed(s, c.seed);
    *out = s;
    return LLM_OK;
}

/* Candidate order: descending p, then ascending id. A total order, so any sort gives
 * the same result on every platform. */
static int llm__cand_before(const llm__cand *a, const llm__cand *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}
static int llm__cand_cmp(const void *a, const void *b) {
    const llm__cand *x = LLM__CAST(const llm__cand *, a), *y = LLM__CAST(const llm__cand *, b);
    return llm__cand_before(x, y) ? -1 : llm__cand_before(y, x) ? 1 : 0;
}

/* The first maximum (torch.argmax's choice). */
static int llm__sample_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* Top-k selection in O(V log k): a min-heap of the k best so far (root = the worst of
 * them), then sorted. Reference: sort all V candidates and keep the first k. */
static void llm__topk(const float *p, int V, int k, llm__cand *h) {
    int n = 0;
    for (int i = 0; i < V; i++) {
        llm__cand c;
        c.p = p[i]; c.id = i;
        int j;
        if (n < k) {                        /* sift up: parents must not come before children */
            j = n++;
            while (j > 0 && llm__cand_before(&h[(j - 1) / 2], &c)) { h[j] = h[(j - 1) / 2]; j = (j - 1) / 2; }
        } else if (llm__cand_before(&c, &h[0])) {
            j = 0;                          /* replace the worst, sift down */
            for (;;) {
                int ch = 2 * j + 1;
                if (ch >= k) break;
                if (ch + 1 < k && llm__cand_before(&h[ch], &h[ch + 1])) ch++;  /* the worse child */
                if (!llm__cand_before(&c, &h[ch])) break;
                h[j] = h[ch];
                j = ch;
            }
        } else {
            continue;
        }
        h[j] = c;
    }
    qsort(h, LLM__CAST(size_t, k), sizeof *h, llm__cand_cmp);
}

/* Max-heap of candidates in llm__cand_before order: restore it below position i. */
static void llm__cand_sift(llm__cand *h, int n, int i) {
    llm__cand e = h[i];
    for (;;) {
        int ch = 2 * i + 1;
        if (ch >= n) break;
        if (ch + 1 < n && llm__cand_before(&h[ch + 1], &h[ch])) ch++;
        if (!llm__cand_before(&h[ch], &e)) break;
        h[i] = h[ch];
        i = ch;
    }
    h[i] = e;
}

/* The sorted prefix of c[0, n) that the nucleus needs: out[0, m) holds the candidates in
 * descending order up to and including the first whose cumulative p exceeds top_p (all
 * n if none does); returns m. Reference: qsort all n, as run.c does; popping a heap
 * (O(n + m log n)) yields the same prefix, since the order is total, and is several
 * times faster for a 32000-50000 token vocabulary where the nucleus is small. c is
 * destroyed. */
static int llm__nucleus(llm__cand *c, int n, float top_p, llm__cand *out) {
    for (int i = n / 2 - 1; i >= 0; i--) llm__cand_sift(c, n, i);
    float cum = 0.0f;
    int m = 0;
    while (n > 0) {
        out[m] = c[0];
        cum += out[m++].p;
        if (cum > top_p) break;
        c[0] = c[--n];
        if (n > 0) llm__cand_sift(c, n, 0);
    }
    return m;
}

/* The end of run.c's sample_topp(): c[0, n) sorted by descending p; the nucleus is the
 * shortest prefix whose cumulative p exceeds top_p (top_p >= 1: all of it); draw
 * r = coin * (nucleus mass) and return the first candidate whose running cdf exceeds
 * r. *logprob = log of the pick's probability renormalised over the nucleus. */
static int llm__draw_sorted(const llm__cand *c, int n, float top_p, float coin, double *logprob) {
    float cum = 0.0f;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (top_p < 1.0f && cum > top_p) { last = i; break; }
    }
    float r = coin * cum, cdf = 0.0f;
    int pick = last;                        /* if rounding leaves r >= cdf */
    for (int i = 0; i <= last; i++) {
        cdf += c[i].p;
        if (r < cdf) { pick = i; break; }
    }
    *logprob = log(LLM__CAST(double, c[pick].p)) - log(LLM__CAST(double, cum));
    return c[pick].id;
}

/* CTRL's repetition penalty (Keskar et al. 2019, as HF's RepetitionPenaltyLogitsProcessor):
 * x = x > 0 ? x / penalty : x * penalty, once for each distinct id in prev. */
static llm_status llm__sample_penalty(llm_sampler *s, const int *prev, int n_prev, float pen) {
    for (int i = 0; i < n_prev; i++)
        if (prev[i] < 0 || prev[i] >= s->V)
            return llm__err(LLM_ERR_ARG, "sampler: previous id %d (at %d) outside [0, %d)", prev[i], i, s->V);
    for (int i = 0; i < n_prev; i++) {
        int t = prev[i];
        if (s->seen[t]) continue;
        s->seen[t] = 1;
        s->x[t] = s->x[t] > 0 ? s->x[t] / pen : s->x[t] * pen;
    }
    for (int i = 0; i < n_prev; i++) s->seen[prev[i]] = 0;
    return LLM_OK;
}

/* softmax in place, as run.c: p = exp(x - max) / sum, in float, summed in index order
 * (these exact operations make seeded samples match run.c's). Returns 0, leaving x
 * unchanged, when the maximum is infinite (x / temperature overflowed). */
static int llm__sample_softmax(float *x, int V) {
    float mx = x[0], sum = 0.0f;
    for (int i = 1; i < V; i++) if (x[i] > mx) mx = x[i];
    if (mx == INFINITY || mx == -INFINITY) return 0;
    for (int i = 0; i < V; i++) { x[i] = expf(x[i] - mx); sum += x[i]; }
    for (int i = 0; i < V; i++) x[i] /= sum;
    return 1;
}

LLMDEF llm_status llm_sampler_sample(llm_sampler *s, const float *logits, const int *prev,
                                     int n_prev, int *out_id, float *out_logprob) {
    if (!s || !logits || !out_id || n_prev < 0 || (n_prev > 0 && !prev))
        return llm__err(LLM_ERR_ARG, "sampler: NULL argument or n_prev < 0");
    const int V = s->V;
    const llm_sampler_config *c = &s->cfg;
    float *x = s->x;
    int all_neg_inf = 1;
    for (int i = 0; i < V; i++) {
        float v = logits[i];
        if (v != v || v == INFINITY)
            return llm__err(LLM_ERR_ARG, "sampler: logit %d is %s", i, v != v ? "NaN" : "+inf");
        if (v != -INFINITY) all_neg_inf = 0;
        x[i] = v;
    }
    if (all_neg_inf) return llm__err(LLM_ERR_ARG, "sampler: every logit is -inf");
    double logprob = 0;
    int id;
    /* 1. repetition penalty */
    float pen = c->repetition_penalty;
    if (pen != 0.0f && pen != 1.0f && n_prev > 0) {
        llm_status st = llm__sample_penalty(s, prev, n_prev, pen);
        if (st != LLM_OK) return st;
    }
    /* 2. temperature */
    int greedy = llm__sample_argmax(x, V);
    if (c->temperature == 0.0f) {
        /* logprob: log softmax at temperature 1 = x[id] - max - log sum exp(x - max) */
        *out_id = greedy;
        if (out_logprob) {
            double sum = 0;
            for (int i = 0; i < V; i++) sum += exp(LLM__CAST(double, x[i]) - x[greedy]);
            *out_logprob = LLM__CAST(float, -log(sum));
        }
        return LLM_OK;
    }
    float coin = llm__xorshift_f32(&s->rng);
    for (int i = 0; i < V; i++) x[i] /= c->temperature;
    if (!llm__sample_softmax(x, V)) {          /* x / temperature overflowed: the T -> 0 limit */
        *out_id = greedy;
        if (out_logprob) *out_logprob = 0.0f;
        return LLM_OK;
    }
    int top_k = c->top_k > 0 && c->top_k < V ? c->top_k : 0;
    int top_p = c->top_p > 0.0f && c->top_p < 1.0f;
    if (top_k) {
        /* 3. top-k: the k most likely, renormalised; then 4-5 over them */
        llm__topk(x, V, top_k, s->cand);
        float ksum = 0.0f;
        for (int i = 0; i < top_k; i++) ksum += s->cand[i].p;
        for (int i = 0; i < top_k; i++) s->cand[i].p /= ksum;
        id = llm__draw_sorted(s->cand, top_k, top_p ? c->top_p : 1.0f, coin, &logprob);
    } else if (top_p) {
        /* 4. top-p, as run.c: tokens with p < (1 - top_p)/(V - 1) cannot be in the nucleus
         *    (even all V - 1 others together would stay under 1 - top_p), so only the rest
         *    are sorted. If none passes (possible only for a near-uniform p and a tiny
         *    top_p; run.c would read out of bounds) every token is a candidate. */
        const float cutoff = (1.0f - c->top_p) / LLM__CAST(float, V - 1);
        int n0 = 0;
        for (int i = 0; i < V; i++)
            if (x[i] >= cutoff) { s->cand[n0].p = x[i]; s->cand[n0].id = i; n0++; }
        if (n0 == 0)
            for (int i = 0; i < V; i++) { s->cand[n0].p = x[i]; s->cand[n0].id = i; n0++; }
        int m = llm__nucleus(s->cand, n0, c->top_p, s->sorted);
        id = llm__draw_sorted(s->sorted, m, c->top_p, coin, &logprob);
    } else {
        /* 5. plain multinomial over the cdf in id order (run.c's sample_mult). Where
         *    rounding leaves coin >= the total, run.c returns V - 1; here the last id
         *    with p > 0, so a masked (-inf) token is never emitted. */
        float cdf = 0.0f;
        id = -1;
        for (int i = 0; i < V; i++) {
            cdf += x[i];
            if (coin < cdf) { id = i; break; }
        }
        if (id < 0) { id = V - 1; while (id > 0 && x[id] == 0.0f) id--; }
        logprob = log(LLM__CAST(double, x[id]));
    }
    *out_id = id;
    if (out_logprob) *out_logprob = LLM__CAST(float, logprob);
    return LLM_OK;
}

//==== STOP =============================================================================
/* Stop strings over streamed text; see llm_stop_find in the API. Naive matching: stop
 * strings are short and only the bytes new since the last call are searched. */
LLMDEF int llm_stop_find(const char *text, size_t len, size_t from, const char *const *stops,
                         int n_stops, size_t *pos) {
    int best = -1;
    size_t best_pos = 0;
    if (!text || !stops) return -1;
    if (from > len) from = len;
    for (int k = 0; k < n_stops; k++) {
        const char *st = stops[k];
        size_t m = st ? strlen(st) : 0;
        if (m == 0 || m > len) continue;
        /* occurrences [q, q+m) that end after `from`: q > from - m */
        size_t q = from >= m ? from - m + 1 : 0;
        size_t hi = best >= 0 && best_pos < len - m ? best_pos : len - m;  /* earliest wins */
        for (; q <= hi; q++) {
            if (text[q] == st[0] && memcmp(text + q, st, m) == 0) {
                if (best < 0 || q < best_pos) { best = k; best_pos = q; }
                break;
            }
        }
    }
    if (pos) *pos = best >= 0 ? best_pos : len;
    return best;
}

LLMDEF size_t llm_stop_partial(const char *text, size_t len, const char *const *stops,
                               int n_stops) {
    size_t best = 0;
    if (!text || !stops) return 0;
    for (int k = 0; k < n_stops; k++) {
        const char *st = stops[k];
        size_t m = st ? strlen(st) : 0;
        /* the longest proper prefix st[0, j) that text ends with */
        for (size_t j = (m > 0 ? m - 1 : 0); j > best; j--)
            if (j <= len && memcmp(text + len - j, st, j) == 0) { best = j; break; }
    }
    return best;
}
