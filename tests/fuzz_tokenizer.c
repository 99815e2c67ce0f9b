/* fuzz_tokenizer: the GPT-2 vocabulary loaders and the encoder on untrusted bytes (see
 * tests/fuzz.h for how it is built: `make fuzz`, and the replay of tests/fuzz/tokenizer
 * in `make test`).
 *
 * The first input byte picks the mode:
 *   0: the rest is a tokenizer.json;
 *   1: the rest is "vocab.json \0 merges.txt";
 *   2: the rest is text for the GPT-2 tokenizer (gpt2/ under test_data_dir(): $LLM_DATA,
 *      ../shared/data or data; without it the input is ignored), loaded once: encode (plain and special, single and 2-thread pool), decode must
 *      give the bytes back, the streaming decoder must agree, and heap BPE == reference;
 *   3: a small fixed vocabulary, with the rest as merges then text, so merge orders that
 *      no trained BPE has (not monotone) and odd byte tokens reach the encoder. */
#include "fuzz.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static const fuzz_corpus fuzz_corpora[] = {{"tokenizer", 0}, {NULL, 0}};
static llm_tokenizer *gpt2;
static llm_pool *pool;

/* Encode/decode invariants on any tokenizer. */
static void exercise(const llm_tokenizer *tok, const char *text, size_t n, int pooled) {
    int *ids = (int *)malloc((n + 1) * sizeof(int)), *ids2 = (int *)malloc((n + 1) * sizeof(int));
    char *back = (char *)malloc(n + 1);
    for (int flags = 0; flags <= LLM_TOKENIZE_SPECIAL; flags++) {
        size_t k = 0, k2 = 0, bl = 0;
        fuzz_check(llm_tokenizer_encode(tok, text, n, flags, ids, n, &k) == LLM_OK);
        fuzz_check(k <= n);
        fuzz_check(llm_tokenizer_decode(tok, ids, k, back, n, &bl) == LLM_OK);
        fuzz_check(bl == n && (n == 0 || memcmp(back, text, n) == 0));
        if (pooled) {
            fuzz_check(llm_tokenizer_encode_pool(tok, pool, text, n, flags, ids2, n, &k2) == LLM_OK);
            fuzz_check(k2 == k && (k == 0 || memcmp(ids, ids2, k * sizeof(int)) == 0));
        }
        /* streaming decoder: same bytes */
        llm_tokenizer_stream st;
        llm_tokenizer_stream_init(&st, tok);
        size_t cap = llm_tokenizer_max_token_len(tok) + 3, o = 0, m;
        char *buf = (char *)malloc(cap);
        for (size_t i = 0; i < k; i++) {
            fuzz_check(llm_tokenizer_stream_put(&st, ids[i], buf, cap, &m) == LLM_OK);
            fuzz_check(o + m <= n && memcmp(buf, text + o, m) == 0);
            o += m;
        }
        m = llm_tokenizer_stream_flush(&st, buf);
        fuzz_check(o + m == n && (m == 0 || memcmp(buf, text + o, m) == 0));
        free(buf);
    }
    if (n > 0 && n <= 512) {   /* the whole input as one piece: heap BPE == reference */
        llm__enc e;
        llm__enc_init(&e, tok, 0, NULL, 0);
        if (llm__enc_reserve(&e, n) == LLM_OK) {
            size_t a = tok->monotone ? llm__bpe_heap(&e, (const unsigned char *)text, n) : 0;
            memcpy(ids2, e.sym, a * sizeof(int));
            size_t b = llm__bpe_ref(&e, (const unsigned char *)text, n);
            if (tok->monotone) fuzz_check(a == b && memcmp(ids2, e.sym, a * sizeof(int)) == 0);
        }
        llm__enc_free(&e);
    }
    free(ids); free(ids2); free(back);
}

static int fuzz_one(int mode, const uint8_t *data, size_t size) {
    (void)mode;
    if (size < 1) return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    llm_tokenizer *tok = NULL;
    switch (data[0] & 3) {
    case 0:
        if (llm_tokenizer_load_memory(&tok, p, n, NULL, 0) == LLM_OK) exercise(tok, p, n < 256 ? n : 256, 0);
        else fuzz_check(tok == NULL && llm_last_error()[0]);
        break;
    case 1: {
        const char *z = (const char *)memchr(p, 0, n);
        size_t vl = z ? (size_t)(z - p) : n;
        const char *m = z ? z + 1 : p + n;
        if (llm_tokenizer_load_memory(&tok, p, vl, m, (size_t)(p + n - m)) == LLM_OK) exercise(tok, p, n < 256 ? n : 256, 0);
        else fuzz_check(tok == NULL && llm_last_error()[0]);
        break;
    }
    case 2:
        if (!gpt2) {
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/gpt2", test_data_dir());
            if (llm_tokenizer_load(&gpt2, dir) != LLM_OK) return 0;
            pool = llm_pool_create(2);
        }
        exercise(gpt2, p, n, 1);
        break;
    case 3: {
        /* vocabulary: the 256 bytes (id = byte) plus every concatenation the merges name */
        const char *z = (const char *)memchr(p, 0, n);
        size_t ml = z ? (size_t)(z - p) : n;
        const char *text = z ? z + 1 : p + n;
        size_t tl = (size_t)(p + n - text);
        /* build vocab.json: bytes + up to 64 merge results, escaped */
        signed short u2b[324];
        llm__u2b_init(u2b);
        size_t cap = 64 * 1024, o = 0;
        char *v = (char *)malloc(cap);
        v[o++] = '{';
        for (unsigned cp = 0; cp < 324; cp++) {
            if (u2b[cp] < 0) continue;
            char u[4];
            int l = llm__utf8_put(cp, u);
            v[o++] = '"';
            if (cp == '"' || cp == '\\') v[o++] = '\\';
            memcpy(v + o, u, (size_t)l); o += (size_t)l;
            o += (size_t)snprintf(v + o, cap - o, "\":%d,", u2b[cp]);
        }
        int id = 256, lines = 0;
        for (size_t i = 0; i < ml && lines < 64 && o + 256 < cap; lines++) {
            const char *nl = (const char *)memchr(p + i, '\n', ml - i);
            size_t ln = nl ? (size_t)(nl - (p + i)) : ml - i;
            const char *sp = (const char *)memchr(p + i, ' ', ln);
            if (sp && ln < 100) {   /* result token = line without the space */
                v[o++] = '"';
                for (const char *c = p + i; c < p + i + ln; c++) {
                    if (c == sp) continue;
                    if (*c == '"' || *c == '\\') v[o++] = '\\';
                    v[o++] = (unsigned char)*c < 0x20 ? '?' : *c;
                }
                o += (size_t)snprintf(v + o, cap - o, "\":%d,", id++);
            }
            i += ln + 1;
        }
        o--;   /* last comma */
        v[o++] = '}';
        if (llm_tokenizer_load_memory(&tok, v, o, p, ml) == LLM_OK) exercise(tok, text, tl, 0);
        free(v);
        break;
    }
    }
    llm_tokenizer_free(tok);
    return 0;
}

FUZZ_MAIN("fuzz_tokenizer")
