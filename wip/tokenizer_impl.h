//==== TOKENIZER ========================================================================
/* GPT-2 byte-level BPE, in three steps:
 *   1. pre-tokenize: cut the text into pieces with GPT-2's pattern (hand-written below;
 *      no regex engine), Unicode classes from the generated table at the end of this
 *      section;
 *   2. BPE each piece: start from one symbol per byte and repeatedly merge the adjacent
 *      pair with the lowest merge rank (vocab.bpe line number) until none is left;
 *   3. the final symbols are the ids.
 * Token strings in encoder.json/vocab.json are written in GPT-2's byte-to-unicode
 * alphabet (so they are printable); we decode them to raw bytes once at load time and
 * work on bytes and ids from then on. */

/* ---- byte-to-unicode alphabet ----------------------------------------------------- */
/* GPT-2 maps each byte b to a printable code point: the "nice" bytes 33..126, 161..172
 * and 174..255 map to themselves, the other 68 bytes (controls, space, 127..160, 173)
 * in increasing order to 256, 257, ... (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ'). */
static int llm__byte_is_nice(int b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}
/* The byte that code point cp stands for, or -1. */
static int llm__unicode_to_byte(unsigned cp) {
    if (cp < 256) return llm__byte_is_nice(LLM__CAST(int, cp)) ? LLM__CAST(int, cp) : -1;
    if (cp >= 256 + 68) return -1;
    int k = LLM__CAST(int, cp) - 256;      /* the k-th byte that is not nice */
    for (int b = 0; b < 256; b++)
        if (!llm__byte_is_nice(b) && k-- == 0) return b;
    return -1;
}

/* ---- UTF-8 and character classes ---------------------------------------------------- */
enum { LLM__U_OTHER = 0, LLM__U_LETTER = 1, LLM__U_NUMBER = 2, LLM__U_SPACE = 3 };

/* Classes of the ASCII characters: \s is 9..13 and 32 (Unicode White_Space). */
static const unsigned char llm__ascii_class[128] = {
    0,0,0,0,0,0,0,0,0,3,3,3,3,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,2,2,2,2,2,2,2,2,0,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
};

static int llm__uclass_lookup(uint32_t cp);  /* after the generated table, at the end */

/* Strict UTF-8 decode of s[i..n): returns the byte length (1..4) and the code point.
 * Overlong forms, surrogates, values above U+10FFFF and truncated sequences are
 * invalid: then the result is length 1 and *cp = 0xFFFFFFFF, i.e. the single byte is a
 * character of class "other". Re-synchronising after one byte means an ASCII byte is
 * never swallowed by a broken sequence. */
static int llm__utf8_get(const unsigned char *s, size_t i, size_t n, uint32_t *cp) {
    unsigned c = s[i];
    size_t left = n - i;
    *cp = 0xFFFFFFFFu;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (left >= 2 && (s[i + 1] & 0xC0) == 0x80) { *cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); return 2; }
        return 1;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3) return 1;
        unsigned c1 = s[i + 1], c2 = s[i + 2];
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;  /* no overlong, no surrogate */
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80) return 1;
        *cp = ((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (c2 & 0x3Fu);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4) return 1;
        unsigned c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;  /* <= U+10FFFF */
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80 || (c3 & 0xC0) != 0x80) return 1;
        *cp = ((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((c2 & 0x3Fu) << 6) | (c3 & 0x3Fu);
        return 4;
    }
    return 1;  /* continuation byte or C0, C1, F5..FF: never a valid start */
}

/* Class of the character at s[i] (an invalid byte is OTHER); *clen gets its length. */
static int llm__class_at(const unsigned char *s, size_t i, size_t n, int *clen) {
    if (s[i] < 0x80) { *clen = 1; return llm__ascii_class[s[i]]; }
    uint32_t cp;
    *clen = llm__utf8_get(s, i, n, &cp);
    return cp == 0xFFFFFFFFu ? LLM__U_OTHER : llm__uclass_lookup(cp);
}

/* ---- pre-tokenizer ------------------------------------------------------------------- */
/* The end of the piece that starts at s[i] (i < n). The alternatives of
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * are tried in order, as a backtracking regex engine does (leftmost-first):
 *   - contractions: ASCII, case-sensitive, only where a piece starts;
 *   - an optional ' ' (U+0020 only) then a maximal run of letters, numbers, or "other"
 *     (neither space, letter nor number; an invalid UTF-8 byte counts as other);
 *   - whitespace: \s+(?!\S) takes the whole run at the end of the text, otherwise the
 *     run minus its last character (which then prefixes the next word, or stands
 *     alone via \s+ if it is not ' ' or if the run was one character long). */
static size_t llm__pretok_next(const unsigned char *s, size_t i, size_t n) {
    int clen, cls;
    unsigned c0 = s[i];
    if (c0 == '\'' && i + 1 < n) {
        unsigned c1 = s[i + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned c2 = s[i + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return i + 3;
        }
    }
    size_t j = i;
    cls = llm__class_at(s, i, n, &clen);
    if (c0 == ' ' && i + 1 < n) {               /* " ?X+": the space joins a following run */
        int len2, c2 = llm__class_at(s, i + 1, n, &len2);
        if (c2 != LLM__U_SPACE) { cls = c2; j = i + 1; clen = len2; }
    }
    if (cls != LLM__U_SPACE) {                  /* maximal run of one class */
        j += LLM__CAST(size_t, clen);
        while (j < n) {
            if (s[j] < 0x80) {                  /* ASCII fast path */
                if (llm__ascii_class[s[j]] != cls) break;
                j++;
            } else {
                if (llm__class_at(s, j, n, &clen) != cls) break;
                j += LLM__CAST(size_t, clen);
            }
        }
        return j;
    }
    size_t last = i;                            /* start of the run's last character */
    j = i + LLM__CAST(size_t, clen);
    while (j < n && llm__class_at(s, j, n, &clen) == LLM__U_SPACE) { last = j; j += LLM__CAST(size_t, clen); }
    if (j == n || last == i) return j;          /* \s+(?!\S) at the end, or \s+ of one char */
    return last;                                /* \s+(?!\S): leave the last one */
}

/* ---- the tokenizer object --------------------------------------------------------------- */
#define LLM__TOK_MAX_ID (1 << 24)
#define LLM__TOK_MAX_SPECIAL 64

struct llm_tokenizer {
    int V;                   /* one more than the largest id */
    uint32_t *tok_off;       /* (V) offset of token id's bytes in `bytes` */
    int32_t *tok_len;        /* (V) its length, -1 for an unused id */
    char *bytes;             /* all token bytes, back to back */
    size_t max_len;          /* longest token, in bytes */
    int32_t *vhash;          /* (vmask+1) bytes -> id table, open addressing, -1 empty */
    uint32_t vmask;
    /* merges: pair (a,b) -> rank (line number); the result of rank r is merge_res[r] */
    uint64_t *mkey;          /* (mmask+1) a<<32|b, UINT64_MAX empty */
    int32_t *mrank;          /* (mmask+1) */
    uint32_t mmask;
    int32_t *merge_res;      /* (n_merges) */
    int n_merges;
    int byte_id[256];        /* id of each single-byte token */
    int monotone;            /* every merge ranks after the merges that make its parts */
    int eot;                 /* <|endoftext|> or -1 */
    int n_special;
    int special[LLM__TOK_MAX_SPECIAL];
    int special_has_space;   /* a special token contains ' ': no parallel cuts */
};

static uint64_t llm__hash_bytes(const unsigned char *p, size_t n) {
    /* FNV-1a over 8-byte words, then a final mix: fast for short keys, good spread */
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w; memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull; h ^= h >> 29;
        p += 8; n -= 8;
    }
    uint64_t w = 0;
    if (n) memcpy(&w, p, n);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}
static uint32_t llm__hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return LLM__CAST(uint32_t, key >> 32);
}

LLMDEF int llm_tokenizer_find(const llm_tokenizer *t, const char *s, size_t len) {
    if (!t || (!s && len)) return -1;
    uint32_t h = LLM__CAST(uint32_t, llm__hash_bytes(LLM__CAST(const unsigned char *, s), len));
    for (uint32_t i = h & t->vmask;; i = (i + 1) & t->vmask) {
        int id = t->vhash[i];
        if (id < 0) return -1;
        if (LLM__CAST(size_t, t->tok_len[id]) == len && memcmp(t->bytes + t->tok_off[id], s, len) == 0) return id;
    }
}

/* Rank of merging ids (a, b), or -1 when no merge applies. */
static int llm__merge_rank(const llm_tokenizer *t, int a, int b) {
    uint64_t key = (LLM__CAST(uint64_t, LLM__CAST(uint32_t, a)) << 32) | LLM__CAST(uint32_t, b);
    for (uint32_t i = llm__hash_pair(key) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mkey[i] == key) return t->mrank[i];
        if (t->mkey[i] == UINT64_MAX) return -1;
    }
}

LLMDEF void llm_tokenizer_free(llm_tokenizer *t) {
    if (!t) return;
    LLM_FREE(t->tok_off); LLM_FREE(t->tok_len); LLM_FREE(t->bytes); LLM_FREE(t->vhash);
    LLM_FREE(t->mkey); LLM_FREE(t->mrank); LLM_FREE(t->merge_res);
    LLM_FREE(t);
}
LLMDEF int llm_tokenizer_vocab_size(const llm_tokenizer *t) { return t ? t->V : 0; }
LLMDEF int llm_tokenizer_eot(const llm_tokenizer *t) { return t ? t->eot : -1; }
LLMDEF size_t llm_tokenizer_max_token_len(const llm_tokenizer *t) { return t ? t->max_len : 0; }
LLMDEF const char *llm_tokenizer_token(const llm_tokenizer *t, int id, size_t *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->V || t->tok_len[id] < 0) return NULL;
    if (len) *len = LLM__CAST(size_t, t->tok_len[id]);
    return t->bytes + t->tok_off[id];
}

/* ---- loading ------------------------------------------------------------------------ */
/* Loading collects (token bytes, id) entries and merge lines from whichever format,
 * then builds the tables in one place (llm__tok_build), which checks everything. */
typedef struct {
    char *bytes; size_t blen, bcap;        /* token bytes, back to back */
    uint32_t *off, *len; int32_t *id;      /* (n) entries */
    unsigned char *special;                /* (n) marked special (tokenizer.json) */
    size_t n, cap;
    const char *what;                      /* file name for messages */
} llm__vbuild;

static void llm__vbuild_free(llm__vbuild *b) {
    LLM_FREE(b->bytes); LLM_FREE(b->off); LLM_FREE(b->len); LLM_FREE(b->id); LLM_FREE(b->special);
}

/* Append raw bytes to the builder's arena. */
static int llm__vb_put(llm__vbuild *b, const char *s, size_t n) {
    if (b->blen + n > b->bcap) {
        size_t cap = b->bcap ? b->bcap : 1 << 16;
        while (cap < b->blen + n) cap *= 2;
        char *p = LLM__CAST(char *, LLM_REALLOC(b->bytes, cap));
        if (!p) return 0;
        b->bytes = p; b->bcap = cap;
    }
    memcpy(b->bytes + b->blen, s, n);
    b->blen += n;
    return 1;
}

/* Decode a byte-alphabet string (UTF-8) to raw bytes into out (n bytes at most: each
 * alphabet character is at least one UTF-8 byte). Returns the length, or -1 if a
 * character is not in the alphabet. */
static long llm__unalpha(const char *s, size_t n, const signed short *u2b, char *out) {
    const unsigned char *p = LLM__CAST(const unsigned char *, s);
    size_t i = 0, o = 0;
    while (i < n) {
        uint32_t cp;
        int l = llm__utf8_get(p, i, n, &cp);
        if (cp >= 324 || u2b[cp] < 0) return -1;
        out[o++] = LLM__CAST(char, u2b[cp]);
        i += LLM__CAST(size_t, l);
    }
    return LLM__CAST(long, o);
}

static void llm__u2b_init(signed short u2b[324]) {
    for (unsigned cp = 0; cp < 324; cp++) u2b[cp] = LLM__CAST(signed short, llm__unicode_to_byte(cp));
}

static llm_status llm__vb_add(llm__vbuild *b, const char *raw, size_t n, int64_t id, int special) {
    if (id < 0 || id >= LLM__TOK_MAX_ID)
        return llm__err(LLM_ERR_FORMAT, "%s: token id %lld out of range [0, %d)", b->what, LLM__CAST(long long, id), LLM__TOK_MAX_ID);
    if (n == 0) return llm__err(LLM_ERR_FORMAT, "%s: empty token (id %lld)", b->what, LLM__CAST(long long, id));
    if (n > 0xFFFFFF || b->blen > 0xFFFFFFFFu - n) return llm__err(LLM_ERR_FORMAT, "%s: vocabulary too large", b->what);
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        uint32_t *o = LLM__CAST(uint32_t *, LLM_REALLOC(b->off, cap * sizeof *o));
        if (o) b->off = o;
        uint32_t *l = LLM__CAST(uint32_t *, LLM_REALLOC(b->len, cap * sizeof *l));
        if (l) b->len = l;
        int32_t *d = LLM__CAST(int32_t *, LLM_REALLOC(b->id, cap * sizeof *d));
        if (d) b->id = d;
        unsigned char *sp = LLM__CAST(unsigned char *, LLM_REALLOC(b->special, cap));
        if (sp) b->special = sp;
        if (!o || !l || !d || !sp) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", b->what);
        b->cap = cap;
    }
    b->off[b->n] = LLM__CAST(uint32_t, b->blen);
    b->len[b->n] = LLM__CAST(uint32_t, n);
    b->id[b->n] = LLM__CAST(int32_t, id);
    b->special[b->n] = LLM__CAST(unsigned char, special);
    if (!llm__vb_put(b, raw, n)) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", b->what);
    b->n++;
    return LLM_OK;
}

/* Entries of a JSON object {"token": id, ...} (encoder.json, vocab.json, model.vocab). */
static llm_status llm__vb_from_json(llm__vbuild *b, const llm__json *d, int obj, const signed short *u2b) {
    if (obj < 0 || d->nodes[obj].type != LLM__J_OBJ)
        return llm__err(LLM_ERR_FORMAT, "%s: the vocabulary is not a JSON object", b->what);
    char tmp[1024];
    for (int c = d->nodes[obj].child; c >= 0; c = d->nodes[c].next) {
        const llm__jnode *x = &d->nodes[c];
        int64_t id;
        if (!llm__json_int(d, c, &id))
            return llm__err(LLM_ERR_FORMAT, "%s: token \"%.40s\": id is not an integer", b->what, llm__jstr(d, x->key));
        if (x->key_len > sizeof tmp)
            return llm__err(LLM_ERR_FORMAT, "%s: token of %lu bytes is too long", b->what, LLM__CAST(unsigned long, x->key_len));
        long n = llm__unalpha(llm__jstr(d, x->key), x->key_len, u2b, tmp);
        if (n < 0)
            return llm__err(LLM_ERR_FORMAT, "%s: token \"%.40s\" (id %lld) has a character outside GPT-2's byte alphabet",
                            b->what, llm__jstr(d, x->key), LLM__CAST(long long, id));
        llm_status s = llm__vb_add(b, tmp, LLM__CAST(size_t, n), id, 0);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* Merge lines are collected as pairs of (byte-alphabet) strings in a flat list; the
 * pointers stay valid while the source text / JSON document lives. */
typedef struct { const char *a, *b; uint32_t alen, blen; } llm__mline;
typedef struct { llm__mline *m; size_t n, cap; } llm__mlist;

static llm_status llm__ml_add(llm__mlist *ml, const char *a, size_t alen, const char *b, size_t blen, const char *what) {
    if (alen > 0xFFFFFF || blen > 0xFFFFFF) return llm__err(LLM_ERR_FORMAT, "%s: merge too long", what);
    if (ml->n == ml->cap) {
        size_t cap = ml->cap ? ml->cap * 2 : 1024;
        llm__mline *m = LLM__CAST(llm__mline *, LLM_REALLOC(ml->m, cap * sizeof *m));
        if (!m) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", what);
        ml->m = m; ml->cap = cap;
    }
    llm__mline *x = &ml->m[ml->n++];
    x->a = a; x->alen = LLM__CAST(uint32_t, alen); x->b = b; x->blen = LLM__CAST(uint32_t, blen);
    return LLM_OK;
}

/* vocab.bpe / merges.txt: an optional "#version" first line, then "a b" per line. */
static llm_status llm__ml_from_text(llm__mlist *ml, const char *text, size_t len, const char *what) {
    size_t i = 0, line = 0;
    while (i < len) {
        const char *p = text + i;
        const char *nl = LLM__CAST(const char *, memchr(p, '\n', len - i));
        size_t n = nl ? LLM__CAST(size_t, nl - p) : len - i;
        i += n + (nl ? 1 : 0);
        line++;
        if (n && p[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (line == 1 && n >= 8 && memcmp(p, "#version", 8) == 0) continue;
        const char *sp = LLM__CAST(const char *, memchr(p, ' ', n));
        if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', LLM__CAST(size_t, p + n - sp - 1)))
            return llm__err(LLM_ERR_FORMAT, "%s: line %lu: expected two tokens separated by one space",
                            what, LLM__CAST(unsigned long, line));
        llm_status s = llm__ml_add(ml, p, LLM__CAST(size_t, sp - p), sp + 1, LLM__CAST(size_t, p + n - sp - 1), what);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* model.merges of tokenizer.json: ["a b", ...] or [["a", "b"], ...]. */
static llm_status llm__ml_from_json(llm__mlist *ml, const llm__json *d, int arr, const char *what) {
    if (arr < 0 || d->nodes[arr].type != LLM__J_ARR)
        return llm__err(LLM_ERR_FORMAT, "%s: model.merges is missing or not an array", what);
    size_t k = 0;
    for (int c = d->nodes[arr].child; c >= 0; c = d->nodes[c].next, k++) {
        const llm__jnode *x = &d->nodes[c];
        llm_status s;
        if (x->type == LLM__J_STR) {
            const char *p = llm__jstr(d, x->str);
            const char *sp = LLM__CAST(const char *, memchr(p, ' ', x->str_len));
            size_t n = x->str_len;
            if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', LLM__CAST(size_t, p + n - sp - 1)))
                return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: expected \"a b\"", what, LLM__CAST(unsigned long, k));
            s = llm__ml_add(ml, p, LLM__CAST(size_t, sp - p), sp + 1, LLM__CAST(size_t, p + n - sp - 1), what);
        } else if (x->type == LLM__J_ARR && x->count == 2 && d->nodes[x->child].type == LLM__J_STR &&
                   d->nodes[d->nodes[x->child].next].type == LLM__J_STR) {
            const llm__jnode *a = &d->nodes[x->child], *b = &d->nodes[a->next];
            if (a->str_len == 0 || b->str_len == 0)
                return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: empty token", what, LLM__CAST(unsigned long, k));
            s = llm__ml_add(ml, llm__jstr(d, a->str), a->str_len, llm__jstr(d, b->str), b->str_len, what);
        } else {
            return llm__err(LLM_ERR_FORMAT, "%s: merge %lu: expected \"a b\" or [\"a\", \"b\"]", what, LLM__CAST(unsigned long, k));
        }
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

static uint32_t llm__pow2_at_least(size_t n) {
    uint32_t p = 16;
    while (p < n && p < (1u << 30)) p <<= 1;
    return p;
}

/* Build the tokenizer from the collected entries and merges; checks ids unique, token
 * strings unique, every byte present, every merge's parts and result in the vocabulary. */
static llm_status llm__tok_build(llm_tokenizer **out, llm__vbuild *vb, const llm__mlist *ml, const signed short *u2b) {
    const char *what = vb->what;
    llm_tokenizer *t = LLM__CAST(llm_tokenizer *, llm__calloc(1, sizeof *t));
    if (!t) return llm__err(LLM_ERR_NOMEM, "%s: out of memory", what);
    t->eot = -1;
    llm_status s = LLM_OK;
    int32_t maxid = -1;
    for (size_t i = 0; i < vb->n; i++) if (vb->id[i] > maxid) maxid = vb->id[i];
    if (maxid < 0) { s = llm__err(LLM_ERR_FORMAT, "%s: empty vocabulary", what); goto fail; }
    t->V = maxid + 1;
    t->tok_off = LLM__CAST(uint32_t *, llm__calloc(LLM__CAST(size_t, t->V), sizeof *t->tok_off));
    t->tok_len = LLM__CAST(int32_t *, LLM_MALLOC(LLM__CAST(size_t, t->V) * sizeof *t->tok_len));
    t->vmask = llm__pow2_at_least(vb->n * 2) - 1;
    t->vhash = LLM__CAST(int32_t *, LLM_MALLOC((LLM__CAST(size_t, t->vmask) + 1) * sizeof *t->vhash));
    if (!t->tok_off || !t->tok_len || !t->vhash) { s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", what); goto fail; }
    memset(t->tok_len, 0xFF, LLM__CAST(size_t, t->V) * sizeof *t->tok_len);      /* all -1 */
    memset(t->vhash, 0xFF, (LLM__CAST(size_t, t->vmask) + 1) * sizeof *t->vhash);
    t->bytes = vb->bytes; vb->bytes = NULL;  /* take over the arena */
    for (size_t i = 0; i < vb->n; i++) {
        int32_t id = vb->id[i];
        if (t->tok_len[id] >= 0) {  /* an added token repeating a vocabulary entry is fine */
            if (LLM__CAST(uint32_t, t->tok_len[id]) == vb->len[i] &&
                memcmp(t->bytes + t->tok_off[id], t->bytes + vb->off[i], vb->len[i]) == 0) {
                if (vb->special[i] && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = id;
                continue;
            }
            s = llm__err(LLM_ERR_FORMAT, "%s: id %d is used by two different tokens", what, id);
            goto fail;
        }
        t->tok_off[id] = vb->off[i];
        t->tok_len[id] = LLM__CAST(int32_t, vb->len[i]);
        if (vb->len[i] > t->max_len) t->max_len = vb->len[i];
        const char *p = t->bytes + vb->off[i];
        uint32_t h = LLM__CAST(uint32_t, llm__hash_bytes(LLM__CAST(const unsigned char *, p), vb->len[i]));
        for (uint32_t k = h & t->vmask;; k = (k + 1) & t->vmask) {
            int o = t->vhash[k];
            if (o < 0) { t->vhash[k] = id; break; }
            if (LLM__CAST(uint32_t, t->tok_len[o]) == vb->len[i] && memcmp(t->bytes + t->tok_off[o], p, vb->len[i]) == 0) {
                s = llm__err(LLM_ERR_FORMAT, "%s: ids %d and %d have the same token \"%.40s\"", what, o, id, p);
                goto fail;
            }
        }
        if (vb->special[i] && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = id;
    }
    for (int b = 0; b < 256; b++) {
        char c = LLM__CAST(char, b);
        t->byte_id[b] = llm_tokenizer_find(t, &c, 1);
        if (t->byte_id[b] < 0) { s = llm__err(LLM_ERR_FORMAT, "%s: no token for byte 0x%02X (byte-level BPE needs all 256)", what, b); goto fail; }
    }
    t->eot = llm_tokenizer_find(t, "<|endoftext|>", 13);
    if (t->eot >= 0) {
        int seen = 0;
        for (int k = 0; k < t->n_special; k++) seen |= t->special[k] == t->eot;
        if (!seen && t->n_special < LLM__TOK_MAX_SPECIAL) t->special[t->n_special++] = t->eot;
    }
    for (int k = 0; k < t->n_special; k++)
        if (memchr(t->bytes + t->tok_off[t->special[k]], ' ', LLM__CAST(size_t, t->tok_len[t->special[k]]))) t->special_has_space = 1;

    /* merges */
    if (ml->n > LLM__TOK_MAX_ID) { s = llm__err(LLM_ERR_FORMAT, "%s: too many merges", what); goto fail; }
    t->n_merges = LLM__CAST(int, ml->n);
    t->mmask = llm__pow2_at_least(ml->n * 2) - 1;
    t->mkey = LLM__CAST(uint64_t *, LLM_MALLOC((LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mkey));
    t->mrank = LLM__CAST(int32_t *, LLM_MALLOC((LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mrank));
    t->merge_res = LLM__CAST(int32_t *, LLM_MALLOC((ml->n ? ml->n : 1) * sizeof *t->merge_res));
    {
        /* made_by[id]: the highest rank of a merge that produces id (-1: none), to check
         * that the heap BPE's order equals encoder.py's (see llm__bpe_heap) */
        int32_t *made_by = LLM__CAST(int32_t *, LLM_MALLOC(LLM__CAST(size_t, t->V) * sizeof(int32_t)));
        char *buf = LLM__CAST(char *, LLM_MALLOC(t->max_len * 2 + 2));
        if (!t->mkey || !t->mrank || !t->merge_res || !made_by || !buf) {
            LLM_FREE(made_by); LLM_FREE(buf);
            s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", what); goto fail;
        }
        memset(t->mkey, 0xFF, (LLM__CAST(size_t, t->mmask) + 1) * sizeof *t->mkey);
        memset(made_by, 0xFF, LLM__CAST(size_t, t->V) * sizeof(int32_t));
        t->monotone = 1;
        for (size_t r = 0; r < ml->n && s == LLM_OK; r++) {
            const llm__mline *m = &ml->m[r];
            long na = -1, nb = -1;
            if (m->alen <= t->max_len && m->blen <= t->max_len) {
                na = llm__unalpha(m->a, m->alen, u2b, buf);
                if (na >= 0) nb = llm__unalpha(m->b, m->blen, u2b, buf + na);
            }
            int a = na < 0 ? -1 : llm_tokenizer_find(t, buf, LLM__CAST(size_t, na));
            int b = nb < 0 ? -1 : llm_tokenizer_find(t, buf + na, LLM__CAST(size_t, nb));
            int c = (a < 0 || b < 0) ? -1 : llm_tokenizer_find(t, buf, LLM__CAST(size_t, na + nb));
            if (a < 0 || b < 0 || c < 0) {
                s = llm__err(LLM_ERR_FORMAT, "%s: merge %lu (\"%.*s\" \"%.*s\"): %s is not in the vocabulary", what,
                             LLM__CAST(unsigned long, r), LLM__CAST(int, m->alen < 40 ? m->alen : 40), m->a,
                             LLM__CAST(int, m->blen < 40 ? m->blen : 40), m->b,
                             a < 0 ? "the first part" : b < 0 ? "the second part" : "the result");
                break;
            }
            t->merge_res[r] = c;
            if (made_by[c] < LLM__CAST(int32_t, r)) made_by[c] = LLM__CAST(int32_t, r);
            uint64_t key = (LLM__CAST(uint64_t, LLM__CAST(uint32_t, a)) << 32) | LLM__CAST(uint32_t, b);
            for (uint32_t k = llm__hash_pair(key) & t->mmask;; k = (k + 1) & t->mmask) {
                if (t->mkey[k] == key) break;  /* a repeated merge keeps its first rank */
                if (t->mkey[k] == UINT64_MAX) { t->mkey[k] = key; t->mrank[k] = LLM__CAST(int32_t, r); break; }
            }
        }
        /* monotone: each merge (a,b) of rank r ranks after every merge that makes a or b */
        for (uint32_t k = 0; k <= t->mmask && s == LLM_OK; k++) {
            if (t->mkey[k] == UINT64_MAX) continue;
            int32_t a = LLM__CAST(int32_t, t->mkey[k] >> 32), b = LLM__CAST(int32_t, t->mkey[k] & 0xFFFFFFFFu);
            if (made_by[a] >= t->mrank[k] || made_by[b] >= t->mrank[k]) t->monotone = 0;
        }
        LLM_FREE(made_by); LLM_FREE(buf);
        if (s != LLM_OK) goto fail;
    }
    *out = t;
    return LLM_OK;
fail:
    llm_tokenizer_free(t);
    return s;
}

/* added_tokens of tokenizer.json: [{"id": 50256, "content": "<|endoftext|>", "special": true}, ...].
 * Their content is raw text, not the byte alphabet. */
static llm_status llm__vb_added(llm__vbuild *b, const llm__json *d, int arr) {
    if (arr < 0) return LLM_OK;
    if (d->nodes[arr].type != LLM__J_ARR) return llm__err(LLM_ERR_FORMAT, "%s: added_tokens is not an array", b->what);
    for (int c = d->nodes[arr].child; c >= 0; c = d->nodes[c].next) {
        int idn = llm__json_get(d, c, "id"), cn = llm__json_get(d, c, "content"), sn = llm__json_get(d, c, "special");
        int64_t id;
        if (!llm__json_int(d, idn, &id) || cn < 0 || d->nodes[cn].type != LLM__J_STR)
            return llm__err(LLM_ERR_FORMAT, "%s: added_tokens entry without an integer id and a string content", b->what);
        int special = sn >= 0 && d->nodes[sn].type == LLM__J_TRUE;
        llm_status s = llm__vb_add(b, llm__jstr(d, d->nodes[cn].str), d->nodes[cn].str_len, id, special);
        if (s != LLM_OK) return s;
    }
    return LLM_OK;
}

/* From a parsed vocabulary document: with merges, d is encoder.json/vocab.json;
 * without, d is a tokenizer.json. */
static llm_status llm__tok_from_doc(llm_tokenizer **out, const llm__json *d, const char *merges, size_t mlen,
                                    const char *vname, const char *mname) {
    llm__vbuild vb;
    llm__mlist ml;
    signed short u2b[324];
    llm_status s;
    memset(&vb, 0, sizeof vb); memset(&ml, 0, sizeof ml);
    vb.what = vname;
    llm__u2b_init(u2b);
    if (merges) {
        s = llm__vb_from_json(&vb, d, 0, u2b);
        if (s == LLM_OK) s = llm__ml_from_text(&ml, merges, mlen, mname);
    } else {
        int model = llm__json_get(d, 0, "model"), type = llm__json_get(d, model, "type");
        if (model < 0 || d->nodes[model].type != LLM__J_OBJ)
            s = llm__err(LLM_ERR_FORMAT, "%s: no \"model\" object (not a tokenizer.json?)", vname);
        else if (type >= 0 && (d->nodes[type].type != LLM__J_STR || strcmp(llm__jstr(d, d->nodes[type].str), "BPE") != 0))
            s = llm__err(LLM_ERR_UNSUPPORTED, "%s: model.type is not \"BPE\"", vname);
        else s = llm__vb_from_json(&vb, d, llm__json_get(d, model, "vocab"), u2b);
        if (s == LLM_OK) s = llm__vb_added(&vb, d, llm__json_get(d, 0, "added_tokens"));
        if (s == LLM_OK) s = llm__ml_from_json(&ml, d, llm__json_get(d, model, "merges"), vname);
    }
    if (s == LLM_OK) s = llm__tok_build(out, &vb, &ml, u2b);
    llm__vbuild_free(&vb);
    LLM_FREE(ml.m);
    return s;
}

/* Parse JSON, prefixing an error with the file name. */
static llm_status llm__tok_parse(llm__json *d, const char *text, size_t len, const char *what) {
    llm_status s = llm__json_parse(d, text, len);
    if (s != LLM_OK) {
        char msg[512];
        memcpy(msg, llm_last_error(), sizeof msg);   /* the message is at most 511 chars + NUL */
        msg[sizeof msg - 1] = 0;
        return llm__err(s, "%s: %s", what, msg);
    }
    return LLM_OK;
}

LLMDEF llm_status llm_tokenizer_load_memory(llm_tokenizer **out, const char *vocab, size_t vocab_len,
                                            const char *merges, size_t merges_len) {
    if (!out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load_memory: out is NULL");
    *out = NULL;
    if (!vocab) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load_memory: vocab is NULL");
    llm__json d;
    llm_status s = llm__tok_parse(&d, vocab, vocab_len, merges ? "vocab.json" : "tokenizer.json");
    if (s != LLM_OK) return s;
    s = llm__tok_from_doc(out, &d, merges, merges_len, merges ? "vocab.json" : "tokenizer.json", "merges.txt");
    llm__json_free(&d);
    return s;
}

static char *llm__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = LLM__CAST(char *, LLM_MALLOC(a + b + 2));
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}
static int llm__file_exists(const char *path) {
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (f) fclose(f);
    return f != NULL;
}

/* Load vocabulary file vpath, and merges file mpath (NULL: vpath is a tokenizer.json,
 * or a vocab.json whose merges sit beside it). */
static llm_status llm__tok_load_files(llm_tokenizer **out, const char *vpath, const char *mpath) {
    char *vt = NULL, *mt = NULL, *dir = NULL, *m1 = NULL, *m2 = NULL;
    size_t vl = 0, ml = 0;
    llm__json d;
    llm_status s = llm__read_file(vpath, &vt, &vl);
    if (s != LLM_OK) return s;
    s = llm__tok_parse(&d, vt, vl, vpath);
    LLM_FREE(vt);
    if (s != LLM_OK) return s;
    int model = llm__json_get(&d, 0, "model");  /* (GPT-2's vocabulary has a token "model") */
    if (!mpath && (model < 0 || d.nodes[model].type != LLM__J_OBJ)) {   /* a bare vocabulary: find its merges */
        const char *slash = strrchr(vpath, '/');
        size_t n = slash ? LLM__CAST(size_t, slash - vpath) : 1;
        dir = LLM__CAST(char *, LLM_MALLOC(n + 1));
        if (dir) { memcpy(dir, slash ? vpath : ".", n); dir[n] = 0; }
        m1 = dir ? llm__path_join(dir, "vocab.bpe") : NULL;
        m2 = dir ? llm__path_join(dir, "merges.txt") : NULL;
        if (!m1 || !m2) s = llm__err(LLM_ERR_NOMEM, "%s: out of memory", vpath);
        else if (llm__file_exists(m1)) mpath = m1;
        else if (llm__file_exists(m2)) mpath = m2;
        else s = llm__err(LLM_ERR_IO, "%s: no vocab.bpe or merges.txt beside it (and no \"model\": not a tokenizer.json)", vpath);
    }
    if (s == LLM_OK && mpath) s = llm__read_file(mpath, &mt, &ml);
    if (s == LLM_OK) s = llm__tok_from_doc(out, &d, mt, ml, vpath, mpath);
    llm__json_free(&d);
    LLM_FREE(mt); LLM_FREE(dir); LLM_FREE(m1); LLM_FREE(m2);
    return s;
}

LLMDEF llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path) {
    static const char *const pairs[3][2] = {
        {"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}, {"tokenizer.json", NULL}};
    if (!out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return llm__err(LLM_ERR_ARG, "llm_tokenizer_load: path is NULL");
    for (int k = 0; k < 3; k++) {        /* a directory holding one of the three layouts */
        char *v = llm__path_join(path, pairs[k][0]);
        char *m = pairs[k][1] ? llm__path_join(path, pairs[k][1]) : NULL;
        if (!v || (pairs[k][1] && !m)) { LLM_FREE(v); LLM_FREE(m); return llm__err(LLM_ERR_NOMEM, "out of memory"); }
        if (llm__file_exists(v) && (!pairs[k][1] || llm__file_exists(m))) {
            llm_status s = llm__tok_load_files(out, v, m);
            LLM_FREE(v); LLM_FREE(m);
            return s;
        }
        LLM_FREE(v); LLM_FREE(m);
    }
    if (!llm__file_exists(path))
        return llm__err(LLM_ERR_IO, "%s: cannot open (expected a tokenizer.json, an encoder.json/vocab.json, or a directory with them)", path);
    return llm__tok_load_files(out, path, NULL);
}

/* ---- BPE ----------------------------------------------------------------------------- */
/* Per-call scratch: the BPE work arrays and the pre-token cache. Encoding owns one of
 * these for the duration of a call (one per thread in llm_tokenizer_encode_pool), so
 * the tokenizer itself is never written. */
#define LLM__CKEY 22   /* cache pieces of up to 22 bytes ... */
#define LLM__CIDS 8    /* ... that give up to 8 ids */
typedef struct {
    uint32_t h;                       /* hash, 0 when the slot is empty */
    unsigned char klen, nid;
    unsigned char key[LLM__CKEY];
    int32_t id[LLM__CIDS];
} llm__centry;

typedef struct {
    const llm_tokenizer *tok;
    int *ids; size_t cap, n;          /* output: ids[0..cap), n counted even past cap */
    int32_t *sym, *nxt, *prv, *rnk;   /* (scap) BPE symbols and links */
    uint64_t *heap; size_t scap, hn;  /* (3*scap) */
    llm__centry *cache; uint32_t cmask, cused;
} llm__enc;

static void llm__enc_free(llm__enc *e) {
    LLM_FREE(e->sym); LLM_FREE(e->nxt); LLM_FREE(e->prv); LLM_FREE(e->rnk); LLM_FREE(e->heap);
    LLM_FREE(e->cache);
}
static llm_status llm__enc_reserve(llm__enc *e, size_t n) {
    if (n <= e->scap) return LLM_OK;
    if (n > 0x7FFFFFFFu / 3) return llm__err(LLM_ERR_ARG, "tokenizer: a piece of %lu bytes is too long", LLM__CAST(unsigned long, n));
    size_t cap = e->scap ? e->scap : 64;
    while (cap < n) cap *= 2;
    LLM_FREE(e->sym); LLM_FREE(e->nxt); LLM_FREE(e->prv); LLM_FREE(e->rnk); LLM_FREE(e->heap);
    e->sym = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->nxt = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->prv = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->rnk = LLM__CAST(int32_t *, LLM_MALLOC(cap * sizeof(int32_t)));
    e->heap = LLM__CAST(uint64_t *, LLM_MALLOC(3 * cap * sizeof(uint64_t)));
    e->scap = cap;
    if (!e->sym || !e->nxt || !e->prv || !e->rnk || !e->heap) {
        e->scap = 0;
        return llm__err(LLM_ERR_NOMEM, "tokenizer: out of memory for a piece of %lu bytes", LLM__CAST(unsigned long, n));
    }
    return LLM_OK;
}

/* Reference BPE, as OpenAI's encoder.py: find the lowest-ranked adjacent pair, merge
 * every non-overlapping occurrence of it left to right, repeat. O(n) per merge and up
 * to n merges: O(n^2) for a piece of n bytes, fine for words, slow for a 10k-byte run.
 * Symbols in e->sym[0..n); returns the final count. */
static size_t llm__bpe_ref(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    int32_t *sym = e->sym;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[p[i]];
    while (n > 1) {
        int best = -1;
        for (size_t i = 0; i + 1 < n; i++) {
            int r = llm__merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        int a = -1, b = -1;
        for (size_t i = 0; i + 1 < n; i++)
            if (llm__merge_rank(t, sym[i], sym[i + 1]) == best) { a = sym[i]; b = sym[i + 1]; break; }
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && sym[i] == a && sym[i + 1] == b) { sym[j++] = t->merge_res[best]; i += 2; }
            else sym[j++] = sym[i++];
        }
        n = j;
    }
    return n;
}

/* Min-heap of keys rank<<32 | position: pops the lowest rank, leftmost first. */
static void llm__heap_push(uint64_t *h, size_t *n, uint64_t key) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up] <= key) break;
        h[i] = h[up]; i = up;
    }
    h[i] = key;
}
static uint64_t llm__heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (last <= h[c]) break;
        h[i] = h[c]; i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* The same result in O(n log n): symbols form a linked list, every adjacent pair that
 * can merge sits in a heap keyed (rank, position), and each merge re-ranks only its two
 * new neighbour pairs. Stale heap entries are skipped: rnk[i] holds the live rank of
 * the pair starting at symbol i (-1: none). Popping (rank, position) in order merges
 * all occurrences of the lowest rank left to right before any higher rank, exactly as
 * encoder.py does, provided a merge's result never forms a pair ranked below the
 * merge itself: tok->monotone, checked at load (true for every trained BPE; otherwise
 * the reference is used). Symbols in e->sym[0..count), returns count. */
static size_t llm__bpe_heap(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    int32_t *sym = e->sym, *nxt = e->nxt, *prv = e->prv, *rnk = e->rnk;
    uint64_t *heap = e->heap;
    size_t hn = 0;
    int32_t nn = LLM__CAST(int32_t, n);
    for (int32_t i = 0; i < nn; i++) { sym[i] = t->byte_id[p[i]]; nxt[i] = i + 1; prv[i] = i - 1; }
    for (int32_t i = 0; i < nn; i++) {
        rnk[i] = i + 1 < nn ? llm__merge_rank(t, sym[i], sym[i + 1]) : -1;
        if (rnk[i] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[i]) << 32) | LLM__CAST(uint32_t, i));
    }
    while (hn) {
        uint64_t key = llm__heap_pop(heap, &hn);
        int32_t r = LLM__CAST(int32_t, key >> 32), i = LLM__CAST(int32_t, key & 0xFFFFFFFFu);
        if (rnk[i] != r) continue;                 /* stale */
        int32_t j = nxt[i], k = nxt[j];            /* merge i and j; j disappears */
        sym[i] = t->merge_res[r];
        rnk[j] = -1;
        nxt[i] = k;
        if (k < nn) prv[k] = i;
        rnk[i] = k < nn ? llm__merge_rank(t, sym[i], sym[k]) : -1;
        if (rnk[i] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[i]) << 32) | LLM__CAST(uint32_t, i));
        int32_t h = prv[i];
        if (h >= 0) {
            rnk[h] = llm__merge_rank(t, sym[h], sym[i]);
            if (rnk[h] >= 0) llm__heap_push(heap, &hn, (LLM__CAST(uint64_t, rnk[h]) << 32) | LLM__CAST(uint32_t, h));
        }
    }
    size_t m = 0;
    for (int32_t i = 0; i < nn; i = nxt[i]) sym[m++] = sym[i];   /* compact: m <= i */
    return m;
}

static void llm__emit(llm__enc *e, int id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

/* Encode one pre-token piece: one byte directly, else through the cache or BPE. */
static llm_status llm__encode_piece(llm__enc *e, const unsigned char *p, size_t n) {
    const llm_tokenizer *t = e->tok;
    if (n == 1) { llm__emit(e, t->byte_id[p[0]]); return LLM_OK; }
    llm__centry *slot = NULL;
    uint32_t h = 0;
    if (n <= LLM__CKEY && e->cache) {
        h = LLM__CAST(uint32_t, llm__hash_bytes(p, n)) | 1u;
        for (uint32_t k = h & e->cmask;; k = (k + 1) & e->cmask) {
            llm__centry *c = &e->cache[k];
            if (c->h == 0) { slot = c; break; }
            if (c->h == h && c->klen == n && memcmp(c->key, p, n) == 0) {
                for (int q = 0; q < c->nid; q++) llm__emit(e, c->id[q]);
                return LLM_OK;
            }
        }
    }
    llm_status s = llm__enc_reserve(e, n);
    if (s != LLM_OK) return s;
    size_t m = t->monotone ? llm__bpe_heap(e, p, n) : llm__bpe_ref(e, p, n);
    for (size_t q = 0; q < m; q++) llm__emit(e, e->sym[q]);
    if (slot && m <= LLM__CIDS && e->cused < e->cmask / 4 * 3) {   /* keep the table <= 3/4 full */
        slot->h = h; slot->klen = LLM__CAST(unsigned char, n); slot->nid = LLM__CAST(unsigned char, m);
        memcpy(slot->key, p, n);
        for (size_t q = 0; q < m; q++) slot->id[q] = e->sym[q];
        e->cused++;
    }
    return LLM_OK;
}

/* Ordinary text (no special tokens): pre-tokenize and encode each piece. */
static llm_status llm__encode_ordinary(llm__enc *e, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = llm__pretok_next(s, i, n);
        llm_status st = llm__encode_piece(e, s + i, j - i);
        if (st != LLM_OK) return st;
        i = j;
    }
    return LLM_OK;
}

/* Where the next allowed special token starts in s[i..n), and which one (leftmost
 * match; the longest one when several start at the same byte). */
static size_t llm__next_special(const llm_tokenizer *t, const unsigned char *s, size_t i, size_t n, int *which) {
    size_t best = n;
    *which = -1;
    for (int k = 0; k < t->n_special; k++) {
        int id = t->special[k];
        const unsigned char *sp = LLM__CAST(const unsigned char *, t->bytes + t->tok_off[id]);
        size_t len = LLM__CAST(size_t, t->tok_len[id]);
        for (size_t j = i; j + len <= n && j <= best; j++) {
            const unsigned char *q = LLM__CAST(const unsigned char *, memchr(s + j, sp[0], n - j));
            if (!q) break;
            j = LLM__CAST(size_t, q - s);
            if (j + len > n || j > best) break;
            if (memcmp(q, sp, len) == 0) {
                if (j < best || (j == best && len > LLM__CAST(size_t, t->tok_len[*which]))) { best = j; *which = id; }
                break;
            }
        }
    }
    return best;
}

static llm_status llm__encode_text(llm__enc *e, const unsigned char *s, size_t n, int flags) {
    if (!(flags & LLM_TOKENIZE_SPECIAL) || e->tok->n_special == 0) return llm__encode_ordinary(e, s, n);
    size_t i = 0;
    while (i < n) {
        int id;
        size_t j = llm__next_special(e->tok, s, i, n, &id);
        llm_status st = llm__encode_ordinary(e, s + i, j - i);
        if (st != LLM_OK) return st;
        if (id < 0) break;
        llm__emit(e, id);
        i = j + LLM__CAST(size_t, e->tok->tok_len[id]);
    }
    return LLM_OK;
}

/* The cache: about one slot per 8 bytes of text, between 64 and 32768 slots. */
static void llm__enc_init(llm__enc *e, const llm_tokenizer *t, size_t text_len, int *ids, size_t cap) {
    memset(e, 0, sizeof *e);
    e->tok = t; e->ids = ids; e->cap = cap;
    uint32_t slots = llm__pow2_at_least(text_len / 8);
    if (slots < 64) slots = 64;
    if (slots > 32768) slots = 32768;
    if (text_len > 16) {   /* below that a cache cannot pay off */
        e->cache = LLM__CAST(llm__centry *, llm__calloc(slots, sizeof(llm__centry)));
        if (e->cache) e->cmask = slots - 1;   /* no memory for a cache: go without */
    }
}

LLMDEF llm_status llm_tokenizer_encode(const llm_tokenizer *t, const char *text, size_t len, int flags,
                                       int *ids, size_t cap, size_t *n_ids) {
    if (n_ids) *n_ids = 0;
    if (!t || (!text && len) || (!ids && cap) || !n_ids) return llm__err(LLM_ERR_ARG, "llm_tokenizer_encode: NULL argument");
    llm__enc e;
    llm__enc_init(&e, t, len, ids, cap);
    llm_status s = llm__encode_text(&e, LLM__CAST(const unsigned char *, text), len, flags);
    llm__enc_free(&e);
    *n_ids = e.n;
    if (s == LLM_OK && e.n > cap)
        s = llm__err(LLM_ERR_ARG, "llm_tokenizer_encode: %lu ids do not fit in %lu", LLM__CAST(unsigned long, e.n), LLM__CAST(unsigned long, cap));
    return s;
}

/* ---- parallel encoding ----------------------------------------------------------------- */
/* Cut points: byte p is a cut when s[p] == ' ' and s[p-1] is an ASCII byte that is not
 * whitespace. Then the piece holding s[p-1] ends at p-1 (runs of letters, numbers or
 * other stop before whitespace; contractions are at most "'re" and cannot reach over
 * the space; a whitespace run cannot end at p-1), no rule looks behind, and the only
 * lookahead, (?!\S), belongs to whitespace runs, none of which crosses p. So encoding
 * [0,p) and [p,n) separately gives the same pieces. ASCII bytes never sit inside a
 * multi-byte character, and special tokens without a space cannot straddle p. */
typedef struct {
    const llm_tokenizer *tok;
    const unsigned char *s;
    const size_t *cut;       /* (nth+1) */
    int flags;
    int *tmp;                /* (n) thread k writes at tmp + cut[k] */
    size_t *count;           /* (nth) */
    llm_status *status;      /* (nth) */
} llm__par;

static void llm__encode_task(void *arg, int ith, int nth) {
    llm__par *P = LLM__CAST(llm__par *, arg);
    size_t lo = P->cut[ith], hi = P->cut[ith + 1];
    llm__enc e;
    (void)nth;
    llm__enc_init(&e, P->tok, hi - lo, P->tmp + lo, hi - lo);
    P->status[ith] = llm__encode_text(&e, P->s + lo, hi - lo, P->flags);
    P->count[ith] = e.n;
    llm__enc_free(&e);
}

LLMDEF llm_status llm_tokenizer_encode_pool(const llm_tokenizer *t, llm_pool *pool, const char *text, size_t len,
                                            int flags, int *ids, size_t cap, size_t *n_ids) {
    int nth = llm_pool_size(pool);
    if (!pool || nth <= 1 || len < (1u << 16) || (t && (flags & LLM_TOKENIZE_SPECIAL) && t->special_has_space))
        return llm_tokenizer_encode(t, text, len, flags, ids, cap, n_ids);
    if (n_ids) *n_ids = 0;
    if (!t || !text || (!ids && cap) || !n_ids) return llm__err(LLM_ERR_ARG, "llm_tokenizer_encode_pool: NULL argument");
    const unsigned char *s = LLM__CAST(const unsigned char *, text);
    size_t *cut = LLM__CAST(size_t *, llm__calloc(LLM__CAST(size_t, nth) * 2 + 1, sizeof(size_t)));
    llm_status *status = LLM__CAST(llm_status *, llm__calloc(LLM__CAST(size_t, nth), sizeof(llm_status)));
    int *tmp = cap >= len ? ids : LLM__CAST(int *, LLM_MALLOC(len * sizeof(int)));  /* ids fit in len */
    if (!cut || !status || !tmp) {
        LLM_FREE(cut); LLM_FREE(status); if (tmp != ids) LLM_FREE(tmp);
        return llm__err(LLM_ERR_NOMEM, "llm_tokenizer_encode_pool: out of memory");
    }
    size_t *count = cut + nth + 1;
    cut[0] = 0;
    for (int k = 1; k < nth; k++) {   /* search forward from an even share for a cut */
        size_t p = len / LLM__CAST(size_t, nth) * LLM__CAST(size_t, k);
        if (p < cut[k - 1] + 1) p = cut[k - 1] + 1;
        while (p < len && !(s[p] == ' ' && s[p - 1] < 0x80 && llm__ascii_class[s[p - 1]] != LLM__U_SPACE)) p++;
        cut[k] = p < len ? p : len;
    }
    cut[nth] = len;
    llm__par P;
    P.tok = t; P.s = s; P.cut = cut; P.flags = flags; P.tmp = tmp; P.count = count; P.status = status;
    llm_pool_run(pool, llm__encode_task, &P);
    llm_status st = LLM_OK;
    size_t n = 0;
    for (int k = 0; k < nth; k++) {   /* gather in order (memmove: the runs only move left) */
        if (status[k] != LLM_OK && st == LLM_OK)
            st = llm__err(status[k], "llm_tokenizer_encode_pool: thread %d failed (%s)", k, llm_status_string(status[k]));
        size_t c = count[k];
        if (n < cap) memmove(ids + n, tmp + cut[k], (c < cap - n ? c : cap - n) * sizeof(int));
        n += c;
    }
    LLM_FREE(cut); LLM_FREE(status); if (tmp != ids) LLM_FREE(tmp);
    *n_ids = n;
    if (st == LLM_OK && n > cap)
        st = llm__err(LLM_ERR_ARG, "llm_tokenizer_encode_pool: %lu ids do not fit in %lu", LLM__CAST(unsigned long, n), LLM__CAST(unsigned long, cap));
    return st;
}

/* ---- decoding -------------------------------------------------------------------------- */
LLMDEF llm_status llm_tokenizer_decode(const llm_tokenizer *t, const int *ids, size_t n, char *out, size_t cap,
                                       size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!t || (!ids && n) || (!out && cap) || !n_out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: NULL argument");
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= t->V || t->tok_len[id] < 0)
            return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: id %d at position %lu is not in the vocabulary", id, LLM__CAST(unsigned long, i));
        size_t l = LLM__CAST(size_t, t->tok_len[id]);
        if (o + l <= cap) memcpy(out + o, t->bytes + t->tok_off[id], l);
        else if (o < cap) memcpy(out + o, t->bytes + t->tok_off[id], cap - o);
        o += l;
    }
    *n_out = o;
    if (o > cap && out)
        return llm__err(LLM_ERR_ARG, "llm_tokenizer_decode: %lu bytes do not fit in %lu", LLM__CAST(unsigned long, o), LLM__CAST(unsigned long, cap));
    return LLM_OK;
}

LLMDEF void llm_tokenizer_stream_init(llm_tokenizer_stream *s, const llm_tokenizer *t) {
    memset(s, 0, sizeof *s);
    s->tok = t;
}

/* Length of the incomplete UTF-8 character at the end of b[0..n): the last lead byte
 * in the last 3 bytes, if the bytes after it are a valid start of its sequence that is
 * still too short. (A lead byte is never inside an earlier valid character.) */
static size_t llm__utf8_incomplete_tail(const unsigned char *b, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = b[n - back];
        if ((c & 0xC0) == 0x80) continue;        /* continuation: look further back */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need <= back) return 0;              /* ASCII, invalid, or complete */
        if (back >= 2) {                         /* the second byte's narrower range */
            unsigned c1 = b[n - back + 1];
            unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
            if (c1 < lo || c1 > hi) return 0;
        }
        return back;                             /* later bytes are continuations */
    }
    return 0;
}

LLMDEF llm_status llm_tokenizer_stream_put(llm_tokenizer_stream *s, int id, char *out, size_t cap, size_t *n_out) {
    if (n_out) *n_out = 0;
    if (!s || !s->tok || !out || !n_out) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: NULL argument");
    size_t len;
    const char *p = llm_tokenizer_token(s->tok, id, &len);
    if (!p) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: id %d is not in the vocabulary", id);
    size_t total = LLM__CAST(size_t, s->n_pending) + len;
    if (total > cap) return llm__err(LLM_ERR_ARG, "llm_tokenizer_stream_put: %lu bytes do not fit in %lu", LLM__CAST(unsigned long, total), LLM__CAST(unsigned long, cap));
    memcpy(out, s->pending, LLM__CAST(size_t, s->n_pending));
    memcpy(out + s->n_pending, p, len);
    size_t keep = llm__utf8_incomplete_tail(LLM__CAST(const unsigned char *, out), total);
    memcpy(s->pending, out + total - keep, keep);
    s->n_pending = LLM__CAST(int, keep);
    *n_out = total - keep;
    return LLM_OK;
}

LLMDEF size_t llm_tokenizer_stream_flush(llm_tokenizer_stream *s, char out[4]) {
    if (!s) return 0;
    size_t n = LLM__CAST(size_t, s->n_pending);
    memcpy(out, s->pending, n);
    s->n_pending = 0;
    return n;
}

/* ---- Unicode classes ------------------------------------------------------------------- */
/* Binary search in the generated table below (reached only for non-ASCII). */
static int llm__uclass_lookup(uint32_t cp);

/* ---- BEGIN generated by tools/gen_unicode.py -- do not edit ---- */
/* Code point classes of the GPT-2 pre-tokenizer: sorted, disjoint ranges
 * [lo, hi] of letters (1), numbers (2) and White_Space (3); the rest is other (0).
 * Source: UnicodeData.txt (Unicode 15.0) and PropList.txt White_Space.
 * Regenerate: /usr/bin/python3 tools/gen_unicode.py */
typedef struct { uint32_t lo, hi; unsigned char cls; } llm__urange;
#define LLM__UCLASS_N 806
static const llm__urange llm__uclass_table[LLM__UCLASS_N] = {
    {0x9,0xD,3},{0x20,0x20,3},{0x30,0x39,2},{0x41,0x5A,1},{0x61,0x7A,1},{0x85,0x85,3},
    {0xA0,0xA0,3},{0xAA,0xAA,1},{0xB2,0xB3,2},{0xB5,0xB5,1},{0xB9,0xB9,2},{0xBA,0xBA,1},
    {0xBC,0xBE,2},{0xC0,0xD6,1},{0xD8,0xF6,1},{0xF8,0x2C1,1},{0x2C6,0x2D1,1},{0x2E0,0x2E4,1},
    {0x2EC,0x2EC,1},{0x2EE,0x2EE,1},{0x370,0x374,1},{0x376,0x377,1},{0x37A,0x37D,1},{0x37F,0x37F,1},
    {0x386,0x386,1},{0x388,0x38A,1},{0x38C,0x38C,1},{0x38E,0x3A1,1},{0x3A3,0x3F5,1},{0x3F7,0x481,1},
    {0x48A,0x52F,1},{0x531,0x556,1},{0x559,0x559,1},{0x560,0x588,1},{0x5D0,0x5EA,1},{0x5EF,0x5F2,1},
    {0x620,0x64A,1},{0x660,0x669,2},{0x66E,0x66F,1},{0x671,0x6D3,1},{0x6D5,0x6D5,1},{0x6E5,0x6E6,1},
    {0x6EE,0x6EF,1},{0x6F0,0x6F9,2},{0x6FA,0x6FC,1},{0x6FF,0x6FF,1},{0x710,0x710,1},{0x712,0x72F,1},
    {0x74D,0x7A5,1},{0x7B1,0x7B1,1},{0x7C0,0x7C9,2},{0x7CA,0x7EA,1},{0x7F4,0x7F5,1},{0x7FA,0x7FA,1},
    {0x800,0x815,1},{0x81A,0x81A,1},{0x824,0x824,1},{0x828,0x828,1},{0x840,0x858,1},{0x860,0x86A,1},
    {0x870,0x887,1},{0x889,0x88E,1},{0x8A0,0x8C9,1},{0x904,0x939,1},{0x93D,0x93D,1},{0x950,0x950,1},
    {0x958,0x961,1},{0x966,0x96F,2},{0x971,0x980,1},{0x985,0x98C,1},{0x98F,0x990,1},{0x993,0x9A8,1},
    {0x9AA,0x9B0,1},{0x9B2,0x9B2,1},{0x9B6,0x9B9,1},{0x9BD,0x9BD,1},{0x9CE,0x9CE,1},{0x9DC,0x9DD,1},
    {0x9DF,0x9E1,1},{0x9E6,0x9EF,2},{0x9F0,0x9F1,1},{0x9F4,0x9F9,2},{0x9FC,0x9FC,1},{0xA05,0xA0A,1},
    {0xA0F,0xA10,1},{0xA13,0xA28,1},{0xA2A,0xA30,1},{0xA32,0xA33,1},{0xA35,0xA36,1},{0xA38,0xA39,1},
    {0xA59,0xA5C,1},{0xA5E,0xA5E,1},{0xA66,0xA6F,2},{0xA72,0xA74,1},{0xA85,0xA8D,1},{0xA8F,0xA91,1},
    {0xA93,0xAA8,1},{0xAAA,0xAB0,1},{0xAB2,0xAB3,1},{0xAB5,0xAB9,1},{0xABD,0xABD,1},{0xAD0,0xAD0,1},
    {0xAE0,0xAE1,1},{0xAE6,0xAEF,2},{0xAF9,0xAF9,1},{0xB05,0xB0C,1},{0xB0F,0xB10,1},{0xB13,0xB28,1},
    {0xB2A,0xB30,1},{0xB32,0xB33,1},{0xB35,0xB39,1},{0xB3D,0xB3D,1},{0xB5C,0xB5D,1},{0xB5F,0xB61,1},
    {0xB66,0xB6F,2},{0xB71,0xB71,1},{0xB72,0xB77,2},{0xB83,0xB83,1},{0xB85,0xB8A,1},{0xB8E,0xB90,1},
    {0xB92,0xB95,1},{0xB99,0xB9A,1},{0xB9C,0xB9C,1},{0xB9E,0xB9F,1},{0xBA3,0xBA4,1},{0xBA8,0xBAA,1},
    {0xBAE,0xBB9,1},{0xBD0,0xBD0,1},{0xBE6,0xBF2,2},{0xC05,0xC0C,1},{0xC0E,0xC10,1},{0xC12,0xC28,1},
    {0xC2A,0xC39,1},{0xC3D,0xC3D,1},{0xC58,0xC5A,1},{0xC5D,0xC5D,1},{0xC60,0xC61,1},{0xC66,0xC6F,2},
    {0xC78,0xC7E,2},{0xC80,0xC80,1},{0xC85,0xC8C,1},{0xC8E,0xC90,1},{0xC92,0xCA8,1},{0xCAA,0xCB3,1},
    {0xCB5,0xCB9,1},{0xCBD,0xCBD,1},{0xCDD,0xCDE,1},{0xCE0,0xCE1,1},{0xCE6,0xCEF,2},{0xCF1,0xCF2,1},
    {0xD04,0xD0C,1},{0xD0E,0xD10,1},{0xD12,0xD3A,1},{0xD3D,0xD3D,1},{0xD4E,0xD4E,1},{0xD54,0xD56,1},
    {0xD58,0xD5E,2},{0xD5F,0xD61,1},{0xD66,0xD78,2},{0xD7A,0xD7F,1},{0xD85,0xD96,1},{0xD9A,0xDB1,1},
    {0xDB3,0xDBB,1},{0xDBD,0xDBD,1},{0xDC0,0xDC6,1},{0xDE6,0xDEF,2},{0xE01,0xE30,1},{0xE32,0xE33,1},
    {0xE40,0xE46,1},{0xE50,0xE59,2},{0xE81,0xE82,1},{0xE84,0xE84,1},{0xE86,0xE8A,1},{0xE8C,0xEA3,1},
    {0xEA5,0xEA5,1},{0xEA7,0xEB0,1},{0xEB2,0xEB3,1},{0xEBD,0xEBD,1},{0xEC0,0xEC4,1},{0xEC6,0xEC6,1},
    {0xED0,0xED9,2},{0xEDC,0xEDF,1},{0xF00,0xF00,1},{0xF20,0xF33,2},{0xF40,0xF47,1},{0xF49,0xF6C,1},
    {0xF88,0xF8C,1},{0x1000,0x102A,1},{0x103F,0x103F,1},{0x1040,0x1049,2},{0x1050,0x1055,1},{0x105A,0x105D,1},
    {0x1061,0x1061,1},{0x1065,0x1066,1},{0x106E,0x1070,1},{0x1075,0x1081,1},{0x108E,0x108E,1},{0x1090,0x1099,2},
    {0x10A0,0x10C5,1},{0x10C7,0x10C7,1},{0x10CD,0x10CD,1},{0x10D0,0x10FA,1},{0x10FC,0x1248,1},{0x124A,0x124D,1},
    {0x1250,0x1256,1},{0x1258,0x1258,1},{0x125A,0x125D,1},{0x1260,0x1288,1},{0x128A,0x128D,1},{0x1290,0x12B0,1},
    {0x12B2,0x12B5,1},{0x12B8,0x12BE,1},{0x12C0,0x12C0,1},{0x12C2,0x12C5,1},{0x12C8,0x12D6,1},{0x12D8,0x1310,1},
    {0x1312,0x1315,1},{0x1318,0x135A,1},{0x1369,0x137C,2},{0x1380,0x138F,1},{0x13A0,0x13F5,1},{0x13F8,0x13FD,1},
    {0x1401,0x166C,1},{0x166F,0x167F,1},{0x1680,0x1680,3},{0x1681,0x169A,1},{0x16A0,0x16EA,1},{0x16EE,0x16F0,2},
    {0x16F1,0x16F8,1},{0x1700,0x1711,1},{0x171F,0x1731,1},{0x1740,0x1751,1},{0x1760,0x176C,1},{0x176E,0x1770,1},
    {0x1780,0x17B3,1},{0x17D7,0x17D7,1},{0x17DC,0x17DC,1},{0x17E0,0x17E9,2},{0x17F0,0x17F9,2},{0x1810,0x1819,2},
    {0x1820,0x1878,1},{0x1880,0x1884,1},{0x1887,0x18A8,1},{0x18AA,0x18AA,1},{0x18B0,0x18F5,1},{0x1900,0x191E,1},
    {0x1946,0x194F,2},{0x1950,0x196D,1},{0x1970,0x1974,1},{0x1980,0x19AB,1},{0x19B0,0x19C9,1},{0x19D0,0x19DA,2},
    {0x1A00,0x1A16,1},{0x1A20,0x1A54,1},{0x1A80,0x1A89,2},{0x1A90,0x1A99,2},{0x1AA7,0x1AA7,1},{0x1B05,0x1B33,1},
    {0x1B45,0x1B4C,1},{0x1B50,0x1B59,2},{0x1B83,0x1BA0,1},{0x1BAE,0x1BAF,1},{0x1BB0,0x1BB9,2},{0x1BBA,0x1BE5,1},
    {0x1C00,0x1C23,1},{0x1C40,0x1C49,2},{0x1C4D,0x1C4F,1},{0x1C50,0x1C59,2},{0x1C5A,0x1C7D,1},{0x1C80,0x1C88,1},
    {0x1C90,0x1CBA,1},{0x1CBD,0x1CBF,1},{0x1CE9,0x1CEC,1},{0x1CEE,0x1CF3,1},{0x1CF5,0x1CF6,1},{0x1CFA,0x1CFA,1},
    {0x1D00,0x1DBF,1},{0x1E00,0x1F15,1},{0x1F18,0x1F1D,1},{0x1F20,0x1F45,1},{0x1F48,0x1F4D,1},{0x1F50,0x1F57,1},
    {0x1F59,0x1F59,1},{0x1F5B,0x1F5B,1},{0x1F5D,0x1F5D,1},{0x1F5F,0x1F7D,1},{0x1F80,0x1FB4,1},{0x1FB6,0x1FBC,1},
    {0x1FBE,0x1FBE,1},{0x1FC2,0x1FC4,1},{0x1FC6,0x1FCC,1},{0x1FD0,0x1FD3,1},{0x1FD6,0x1FDB,1},{0x1FE0,0x1FEC,1},
    {0x1FF2,0x1FF4,1},{0x1FF6,0x1FFC,1},{0x2000,0x200A,3},{0x2028,0x2029,3},{0x202F,0x202F,3},{0x205F,0x205F,3},
    {0x2070,0x2070,2},{0x2071,0x2071,1},{0x2074,0x2079,2},{0x207F,0x207F,1},{0x2080,0x2089,2},{0x2090,0x209C,1},
    {0x2102,0x2102,1},{0x2107,0x2107,1},{0x210A,0x2113,1},{0x2115,0x2115,1},{0x2119,0x211D,1},{0x2124,0x2124,1},
    {0x2126,0x2126,1},{0x2128,0x2128,1},{0x212A,0x212D,1},{0x212F,0x2139,1},{0x213C,0x213F,1},{0x2145,0x2149,1},
    {0x214E,0x214E,1},{0x2150,0x2182,2},{0x2183,0x2184,1},{0x2185,0x2189,2},{0x2460,0x249B,2},{0x24EA,0x24FF,2},
    {0x2776,0x2793,2},{0x2C00,0x2CE4,1},{0x2CEB,0x2CEE,1},{0x2CF2,0x2CF3,1},{0x2CFD,0x2CFD,2},{0x2D00,0x2D25,1},
    {0x2D27,0x2D27,1},{0x2D2D,0x2D2D,1},{0x2D30,0x2D67,1},{0x2D6F,0x2D6F,1},{0x2D80,0x2D96,1},{0x2DA0,0x2DA6,1},
    {0x2DA8,0x2DAE,1},{0x2DB0,0x2DB6,1},{0x2DB8,0x2DBE,1},{0x2DC0,0x2DC6,1},{0x2DC8,0x2DCE,1},{0x2DD0,0x2DD6,1},
    {0x2DD8,0x2DDE,1},{0x2E2F,0x2E2F,1},{0x3000,0x3000,3},{0x3005,0x3006,1},{0x3007,0x3007,2},{0x3021,0x3029,2},
    {0x3031,0x3035,1},{0x3038,0x303A,2},{0x303B,0x303C,1},{0x3041,0x3096,1},{0x309D,0x309F,1},{0x30A1,0x30FA,1},
    {0x30FC,0x30FF,1},{0x3105,0x312F,1},{0x3131,0x318E,1},{0x3192,0x3195,2},{0x31A0,0x31BF,1},{0x31F0,0x31FF,1},
    {0x3220,0x3229,2},{0x3248,0x324F,2},{0x3251,0x325F,2},{0x3280,0x3289,2},{0x32B1,0x32BF,2},{0x3400,0x4DBF,1},
    {0x4E00,0xA48C,1},{0xA4D0,0xA4FD,1},{0xA500,0xA60C,1},{0xA610,0xA61F,1},{0xA620,0xA629,2},{0xA62A,0xA62B,1},
    {0xA640,0xA66E,1},{0xA67F,0xA69D,1},{0xA6A0,0xA6E5,1},{0xA6E6,0xA6EF,2},{0xA717,0xA71F,1},{0xA722,0xA788,1},
    {0xA78B,0xA7CA,1},{0xA7D0,0xA7D1,1},{0xA7D3,0xA7D3,1},{0xA7D5,0xA7D9,1},{0xA7F2,0xA801,1},{0xA803,0xA805,1},
    {0xA807,0xA80A,1},{0xA80C,0xA822,1},{0xA830,0xA835,2},{0xA840,0xA873,1},{0xA882,0xA8B3,1},{0xA8D0,0xA8D9,2},
    {0xA8F2,0xA8F7,1},{0xA8FB,0xA8FB,1},{0xA8FD,0xA8FE,1},{0xA900,0xA909,2},{0xA90A,0xA925,1},{0xA930,0xA946,1},
    {0xA960,0xA97C,1},{0xA984,0xA9B2,1},{0xA9CF,0xA9CF,1},{0xA9D0,0xA9D9,2},{0xA9E0,0xA9E4,1},{0xA9E6,0xA9EF,1},
    {0xA9F0,0xA9F9,2},{0xA9FA,0xA9FE,1},{0xAA00,0xAA28,1},{0xAA40,0xAA42,1},{0xAA44,0xAA4B,1},{0xAA50,0xAA59,2},
    {0xAA60,0xAA76,1},{0xAA7A,0xAA7A,1},{0xAA7E,0xAAAF,1},{0xAAB1,0xAAB1,1},{0xAAB5,0xAAB6,1},{0xAAB9,0xAABD,1},
    {0xAAC0,0xAAC0,1},{0xAAC2,0xAAC2,1},{0xAADB,0xAADD,1},{0xAAE0,0xAAEA,1},{0xAAF2,0xAAF4,1},{0xAB01,0xAB06,1},
    {0xAB09,0xAB0E,1},{0xAB11,0xAB16,1},{0xAB20,0xAB26,1},{0xAB28,0xAB2E,1},{0xAB30,0xAB5A,1},{0xAB5C,0xAB69,1},
    {0xAB70,0xABE2,1},{0xABF0,0xABF9,2},{0xAC00,0xD7A3,1},{0xD7B0,0xD7C6,1},{0xD7CB,0xD7FB,1},{0xF900,0xFA6D,1},
    {0xFA70,0xFAD9,1},{0xFB00,0xFB06,1},{0xFB13,0xFB17,1},{0xFB1D,0xFB1D,1},{0xFB1F,0xFB28,1},{0xFB2A,0xFB36,1},
    {0xFB38,0xFB3C,1},{0xFB3E,0xFB3E,1},{0xFB40,0xFB41,1},{0xFB43,0xFB44,1},{0xFB46,0xFBB1,1},{0xFBD3,0xFD3D,1},
    {0xFD50,0xFD8F,1},{0xFD92,0xFDC7,1},{0xFDF0,0xFDFB,1},{0xFE70,0xFE74,1},{0xFE76,0xFEFC,1},{0xFF10,0xFF19,2},
    {0xFF21,0xFF3A,1},{0xFF41,0xFF5A,1},{0xFF66,0xFFBE,1},{0xFFC2,0xFFC7,1},{0xFFCA,0xFFCF,1},{0xFFD2,0xFFD7,1},
    {0xFFDA,0xFFDC,1},{0x10000,0x1000B,1},{0x1000D,0x10026,1},{0x10028,0x1003A,1},{0x1003C,0x1003D,1},{0x1003F,0x1004D,1},
    {0x10050,0x1005D,1},{0x10080,0x100FA,1},{0x10107,0x10133,2},{0x10140,0x10178,2},{0x1018A,0x1018B,2},{0x10280,0x1029C,1},
    {0x102A0,0x102D0,1},{0x102E1,0x102FB,2},{0x10300,0x1031F,1},{0x10320,0x10323,2},{0x1032D,0x10340,1},{0x10341,0x10341,2},
    {0x10342,0x10349,1},{0x1034A,0x1034A,2},{0x10350,0x10375,1},{0x10380,0x1039D,1},{0x103A0,0x103C3,1},{0x103C8,0x103CF,1},
    {0x103D1,0x103D5,2},{0x10400,0x1049D,1},{0x104A0,0x104A9,2},{0x104B0,0x104D3,1},{0x104D8,0x104FB,1},{0x10500,0x10527,1},
    {0x10530,0x10563,1},{0x10570,0x1057A,1},{0x1057C,0x1058A,1},{0x1058C,0x10592,1},{0x10594,0x10595,1},{0x10597,0x105A1,1},
    {0x105A3,0x105B1,1},{0x105B3,0x105B9,1},{0x105BB,0x105BC,1},{0x10600,0x10736,1},{0x10740,0x10755,1},{0x10760,0x10767,1},
    {0x10780,0x10785,1},{0x10787,0x107B0,1},{0x107B2,0x107BA,1},{0x10800,0x10805,1},{0x10808,0x10808,1},{0x1080A,0x10835,1},
    {0x10837,0x10838,1},{0x1083C,0x1083C,1},{0x1083F,0x10855,1},{0x10858,0x1085F,2},{0x10860,0x10876,1},{0x10879,0x1087F,2},
    {0x10880,0x1089E,1},{0x108A7,0x108AF,2},{0x108E0,0x108F2,1},{0x108F4,0x108F5,1},{0x108FB,0x108FF,2},{0x10900,0x10915,1},
    {0x10916,0x1091B,2},{0x10920,0x10939,1},{0x10980,0x109B7,1},{0x109BC,0x109BD,2},{0x109BE,0x109BF,1},{0x109C0,0x109CF,2},
    {0x109D2,0x109FF,2},{0x10A00,0x10A00,1},{0x10A10,0x10A13,1},{0x10A15,0x10A17,1},{0x10A19,0x10A35,1},{0x10A40,0x10A48,2},
    {0x10A60,0x10A7C,1},{0x10A7D,0x10A7E,2},{0x10A80,0x10A9C,1},{0x10A9D,0x10A9F,2},{0x10AC0,0x10AC7,1},{0x10AC9,0x10AE4,1},
    {0x10AEB,0x10AEF,2},{0x10B00,0x10B35,1},{0x10B40,0x10B55,1},{0x10B58,0x10B5F,2},{0x10B60,0x10B72,1},{0x10B78,0x10B7F,2},
    {0x10B80,0x10B91,1},{0x10BA9,0x10BAF,2},{0x10C00,0x10C48,1},{0x10C80,0x10CB2,1},{0x10CC0,0x10CF2,1},{0x10CFA,0x10CFF,2},
    {0x10D00,0x10D23,1},{0x10D30,0x10D39,2},{0x10E60,0x10E7E,2},{0x10E80,0x10EA9,1},{0x10EB0,0x10EB1,1},{0x10F00,0x10F1C,1},
    {0x10F1D,0x10F26,2},{0x10F27,0x10F27,1},{0x10F30,0x10F45,1},{0x10F51,0x10F54,2},{0x10F70,0x10F81,1},{0x10FB0,0x10FC4,1},
    {0x10FC5,0x10FCB,2},{0x10FE0,0x10FF6,1},{0x11003,0x11037,1},{0x11052,0x1106F,2},{0x11071,0x11072,1},{0x11075,0x11075,1},
    {0x11083,0x110AF,1},{0x110D0,0x110E8,1},{0x110F0,0x110F9,2},{0x11103,0x11126,1},{0x11136,0x1113F,2},{0x11144,0x11144,1},
    {0x11147,0x11147,1},{0x11150,0x11172,1},{0x11176,0x11176,1},{0x11183,0x111B2,1},{0x111C1,0x111C4,1},{0x111D0,0x111D9,2},
    {0x111DA,0x111DA,1},{0x111DC,0x111DC,1},{0x111E1,0x111F4,2},{0x11200,0x11211,1},{0x11213,0x1122B,1},{0x1123F,0x11240,1},
    {0x11280,0x11286,1},{0x11288,0x11288,1},{0x1128A,0x1128D,1},{0x1128F,0x1129D,1},{0x1129F,0x112A8,1},{0x112B0,0x112DE,1},
    {0x112F0,0x112F9,2},{0x11305,0x1130C,1},{0x1130F,0x11310,1},{0x11313,0x11328,1},{0x1132A,0x11330,1},{0x11332,0x11333,1},
    {0x11335,0x11339,1},{0x1133D,0x1133D,1},{0x11350,0x11350,1},{0x1135D,0x11361,1},{0x11400,0x11434,1},{0x11447,0x1144A,1},
    {0x11450,0x11459,2},{0x1145F,0x11461,1},{0x11480,0x114AF,1},{0x114C4,0x114C5,1},{0x114C7,0x114C7,1},{0x114D0,0x114D9,2},
    {0x11580,0x115AE,1},{0x115D8,0x115DB,1},{0x11600,0x1162F,1},{0x11644,0x11644,1},{0x11650,0x11659,2},{0x11680,0x116AA,1},
    {0x116B8,0x116B8,1},{0x116C0,0x116C9,2},{0x11700,0x1171A,1},{0x11730,0x1173B,2},{0x11740,0x11746,1},{0x11800,0x1182B,1},
    {0x118A0,0x118DF,1},{0x118E0,0x118F2,2},{0x118FF,0x11906,1},{0x11909,0x11909,1},{0x1190C,0x11913,1},{0x11915,0x11916,1},
    {0x11918,0x1192F,1},{0x1193F,0x1193F,1},{0x11941,0x11941,1},{0x11950,0x11959,2},{0x119A0,0x119A7,1},{0x119AA,0x119D0,1},
    {0x119E1,0x119E1,1},{0x119E3,0x119E3,1},{0x11A00,0x11A00,1},{0x11A0B,0x11A32,1},{0x11A3A,0x11A3A,1},{0x11A50,0x11A50,1},
    {0x11A5C,0x11A89,1},{0x11A9D,0x11A9D,1},{0x11AB0,0x11AF8,1},{0x11C00,0x11C08,1},{0x11C0A,0x11C2E,1},{0x11C40,0x11C40,1},
    {0x11C50,0x11C6C,2},{0x11C72,0x11C8F,1},{0x11D00,0x11D06,1},{0x11D08,0x11D09,1},{0x11D0B,0x11D30,1},{0x11D46,0x11D46,1},
    {0x11D50,0x11D59,2},{0x11D60,0x11D65,1},{0x11D67,0x11D68,1},{0x11D6A,0x11D89,1},{0x11D98,0x11D98,1},{0x11DA0,0x11DA9,2},
    {0x11EE0,0x11EF2,1},{0x11F02,0x11F02,1},{0x11F04,0x11F10,1},{0x11F12,0x11F33,1},{0x11F50,0x11F59,2},{0x11FB0,0x11FB0,1},
    {0x11FC0,0x11FD4,2},{0x12000,0x12399,1},{0x12400,0x1246E,2},{0x12480,0x12543,1},{0x12F90,0x12FF0,1},{0x13000,0x1342F,1},
    {0x13441,0x13446,1},{0x14400,0x14646,1},{0x16800,0x16A38,1},{0x16A40,0x16A5E,1},{0x16A60,0x16A69,2},{0x16A70,0x16ABE,1},
    {0x16AC0,0x16AC9,2},{0x16AD0,0x16AED,1},{0x16B00,0x16B2F,1},{0x16B40,0x16B43,1},{0x16B50,0x16B59,2},{0x16B5B,0x16B61,2},
    {0x16B63,0x16B77,1},{0x16B7D,0x16B8F,1},{0x16E40,0x16E7F,1},{0x16E80,0x16E96,2},{0x16F00,0x16F4A,1},{0x16F50,0x16F50,1},
    {0x16F93,0x16F9F,1},{0x16FE0,0x16FE1,1},{0x16FE3,0x16FE3,1},{0x17000,0x187F7,1},{0x18800,0x18CD5,1},{0x18D00,0x18D08,1},
    {0x1AFF0,0x1AFF3,1},{0x1AFF5,0x1AFFB,1},{0x1AFFD,0x1AFFE,1},{0x1B000,0x1B122,1},{0x1B132,0x1B132,1},{0x1B150,0x1B152,1},
    {0x1B155,0x1B155,1},{0x1B164,0x1B167,1},{0x1B170,0x1B2FB,1},{0x1BC00,0x1BC6A,1},{0x1BC70,0x1BC7C,1},{0x1BC80,0x1BC88,1},
    {0x1BC90,0x1BC99,1},{0x1D2C0,0x1D2D3,2},{0x1D2E0,0x1D2F3,2},{0x1D360,0x1D378,2},{0x1D400,0x1D454,1},{0x1D456,0x1D49C,1},
    {0x1D49E,0x1D49F,1},{0x1D4A2,0x1D4A2,1},{0x1D4A5,0x1D4A6,1},{0x1D4A9,0x1D4AC,1},{0x1D4AE,0x1D4B9,1},{0x1D4BB,0x1D4BB,1},
    {0x1D4BD,0x1D4C3,1},{0x1D4C5,0x1D505,1},{0x1D507,0x1D50A,1},{0x1D50D,0x1D514,1},{0x1D516,0x1D51C,1},{0x1D51E,0x1D539,1},
    {0x1D53B,0x1D53E,1},{0x1D540,0x1D544,1},{0x1D546,0x1D546,1},{0x1D54A,0x1D550,1},{0x1D552,0x1D6A5,1},{0x1D6A8,0x1D6C0,1},
    {0x1D6C2,0x1D6DA,1},{0x1D6DC,0x1D6FA,1},{0x1D6FC,0x1D714,1},{0x1D716,0x1D734,1},{0x1D736,0x1D74E,1},{0x1D750,0x1D76E,1},
    {0x1D770,0x1D788,1},{0x1D78A,0x1D7A8,1},{0x1D7AA,0x1D7C2,1},{0x1D7C4,0x1D7CB,1},{0x1D7CE,0x1D7FF,2},{0x1DF00,0x1DF1E,1},
    {0x1DF25,0x1DF2A,1},{0x1E030,0x1E06D,1},{0x1E100,0x1E12C,1},{0x1E137,0x1E13D,1},{0x1E140,0x1E149,2},{0x1E14E,0x1E14E,1},
    {0x1E290,0x1E2AD,1},{0x1E2C0,0x1E2EB,1},{0x1E2F0,0x1E2F9,2},{0x1E4D0,0x1E4EB,1},{0x1E4F0,0x1E4F9,2},{0x1E7E0,0x1E7E6,1},
    {0x1E7E8,0x1E7EB,1},{0x1E7ED,0x1E7EE,1},{0x1E7F0,0x1E7FE,1},{0x1E800,0x1E8C4,1},{0x1E8C7,0x1E8CF,2},{0x1E900,0x1E943,1},
    {0x1E94B,0x1E94B,1},{0x1E950,0x1E959,2},{0x1EC71,0x1ECAB,2},{0x1ECAD,0x1ECAF,2},{0x1ECB1,0x1ECB4,2},{0x1ED01,0x1ED2D,2},
    {0x1ED2F,0x1ED3D,2},{0x1EE00,0x1EE03,1},{0x1EE05,0x1EE1F,1},{0x1EE21,0x1EE22,1},{0x1EE24,0x1EE24,1},{0x1EE27,0x1EE27,1},
    {0x1EE29,0x1EE32,1},{0x1EE34,0x1EE37,1},{0x1EE39,0x1EE39,1},{0x1EE3B,0x1EE3B,1},{0x1EE42,0x1EE42,1},{0x1EE47,0x1EE47,1},
    {0x1EE49,0x1EE49,1},{0x1EE4B,0x1EE4B,1},{0x1EE4D,0x1EE4F,1},{0x1EE51,0x1EE52,1},{0x1EE54,0x1EE54,1},{0x1EE57,0x1EE57,1},
    {0x1EE59,0x1EE59,1},{0x1EE5B,0x1EE5B,1},{0x1EE5D,0x1EE5D,1},{0x1EE5F,0x1EE5F,1},{0x1EE61,0x1EE62,1},{0x1EE64,0x1EE64,1},
    {0x1EE67,0x1EE6A,1},{0x1EE6C,0x1EE72,1},{0x1EE74,0x1EE77,1},{0x1EE79,0x1EE7C,1},{0x1EE7E,0x1EE7E,1},{0x1EE80,0x1EE89,1},
    {0x1EE8B,0x1EE9B,1},{0x1EEA1,0x1EEA3,1},{0x1EEA5,0x1EEA9,1},{0x1EEAB,0x1EEBB,1},{0x1F100,0x1F10C,2},{0x1FBF0,0x1FBF9,2},
    {0x20000,0x2A6DF,1},{0x2A700,0x2B739,1},{0x2B740,0x2B81D,1},{0x2B820,0x2CEA1,1},{0x2CEB0,0x2EBE0,1},{0x2F800,0x2FA1D,1},
    {0x30000,0x3134A,1},{0x31350,0x323AF,1},
};
/* ---- END generated by tools/gen_unicode.py ---- */

static int llm__uclass_lookup(uint32_t cp) {
    int lo = 0, hi = LLM__UCLASS_N - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < llm__uclass_table[mid].lo) hi = mid - 1;
        else if (cp > llm__uclass_table[mid].hi) lo = mid + 1;
        else return llm__uclass_table[mid].cls;
    }
    return LLM__U_OTHER;
}
