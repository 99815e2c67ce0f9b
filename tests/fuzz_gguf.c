/* fuzz_gguf: libFuzzer target for the GGUF reader (header, metadata, tensor placement),
 * the model it builds and the tokenizers in its metadata (tests/fuzz.h: `make fuzz`
 * runs it from the seeds in tests/fuzz/gguf/, `make test` replays them).
 *
 * The first input byte picks the mode:
 *   0: the rest is a GGUF file as it is;
 *   1, 2: a small valid GGUF built here (1: a Llama with a SentencePiece tokenizer and
 *      F32/F16/BF16/Q8_0 tensors; 2: a GPT-2 with a byte-level BPE tokenizer), with the
 *      rest applied as patches: each 3 bytes (u16 offset, scaled to the file, and a byte
 *      XORed in there); the last patch byte also cuts the file when odd. So the fuzzer
 *      starts deep inside valid files instead of at the magic number.
 * Whatever parses goes on: the model is loaded when its parameters are few (a lying shape
 * has to fit its tensors in the file first, which the reader checks before allocating)
 * and runs one forward of 3 tokens; the tokenizer is loaded and encodes and decodes a
 * short text. Any failure must be a named error; crashes, leaks and undefined behaviour
 * are the sanitizers' to find. */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "fuzz.h"

typedef struct { unsigned char *b; size_t n, cap; } fbuf;
static void put(fbuf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 4096;
        o->b = (unsigned char *)realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put32(fbuf *o, uint32_t v) { put(o, &v, 4); }
static void put64(fbuf *o, uint64_t v) { put(o, &v, 8); }
static void putstr(fbuf *o, const char *s, size_t n) { put64(o, n); put(o, s, n); }
static void kv_u32(fbuf *o, const char *k, uint32_t v) { putstr(o, k, strlen(k)); put32(o, 4); put32(o, v); }
static void kv_f32(fbuf *o, const char *k, float v) { putstr(o, k, strlen(k)); put32(o, 6); put(o, &v, 4); }
static void kv_str(fbuf *o, const char *k, const char *v) { putstr(o, k, strlen(k)); put32(o, 8); putstr(o, v, strlen(v)); }

/* The template files, built once. */
static fbuf tmpl[2];

typedef struct { const char *name; uint32_t type; uint64_t ne0, ne1; } tinfo;

static void tensors(fbuf *o, const tinfo *t, int n) {
    uint64_t off = 0;
    size_t bytes[32];
    for (int i = 0; i < n; i++) {
        size_t vals = (size_t)(t[i].ne0 * t[i].ne1);
        bytes[i] = t[i].type == 0 ? 4 * vals : t[i].type == 8 ? vals / 32 * 34 : 2 * vals;
        putstr(o, t[i].name, strlen(t[i].name));
        put32(o, t[i].ne1 > 1 ? 2 : 1);
        put64(o, t[i].ne0);
        if (t[i].ne1 > 1) put64(o, t[i].ne1);
        put32(o, t[i].type);
        put64(o, off);
        off += (bytes[i] + 31) / 32 * 32;
    }
    while (o->n % 32) put(o, "", 1);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < bytes[i]; k++) {
            /* small values of every type: f32 0.01 * k-ish, halves, int8 with scale bytes */
            /* (tensors of one shape and type get the same bytes: GPT-2's output.weight
             * must equal token_embd.weight) */
            unsigned char c = (unsigned char)(k * 37 + t[i].ne1 * 3 + t[i].type);
            if (t[i].type == 0 && k % 4 == 3) c = 0x3c;   /* f32 exponent byte: ~0.01 */
            if ((t[i].type == 1 || t[i].type == 30) && k % 2 == 1) c = t[i].type == 1 ? 0x24 : 0x3c;
            put(o, &c, 1);
        }
        while (o->n % 32) put(o, "", 1);
    }
}

static void build_llama(fbuf *o) {
    const int V = 260;
    put(o, "GGUF", 4); put32(o, 3); put64(o, 11); put64(o, 15);
    kv_str(o, "general.architecture", "llama");
    kv_u32(o, "llama.context_length", 16);
    kv_u32(o, "llama.embedding_length", 32);
    kv_u32(o, "llama.block_count", 1);
    kv_u32(o, "llama.feed_forward_length", 32);
    kv_u32(o, "llama.attention.head_count", 2);
    kv_u32(o, "llama.attention.head_count_kv", 1);
    kv_f32(o, "llama.rope.freq_base", 10000.0f);
    kv_f32(o, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(o, "tokenizer.ggml.model", "llama");
    putstr(o, "tokenizer.ggml.tokens", 21); put32(o, 9); put32(o, 8); put64(o, (uint64_t)V);
    for (int i = 0; i < V; i++) {
        char p[16];
        if (i < 3) snprintf(p, sizeof p, "<t%d>", i);
        else if (i < 259) snprintf(p, sizeof p, "<0x%02X>", i - 3);
        else snprintf(p, sizeof p, "\xe2\x96\x81" "ab");
        putstr(o, p, strlen(p));
    }
    putstr(o, "tokenizer.ggml.scores", 21); put32(o, 9); put32(o, 6); put64(o, (uint64_t)V);
    for (int i = 0; i < V; i++) { float s = (float)-i; put(o, &s, 4); }
    putstr(o, "tokenizer.ggml.token_type", 25); put32(o, 9); put32(o, 5); put64(o, (uint64_t)V);
    for (int i = 0; i < V; i++) put32(o, i < 3 ? 3 : i < 259 ? 6 : 1);
    kv_u32(o, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(o, "tokenizer.ggml.eos_token_id", 2);
    const tinfo t[11] = {{"token_embd.weight", 1, 32, (uint64_t)V}, {"output_norm.weight", 0, 32, 1},
                         {"blk.0.attn_norm.weight", 0, 32, 1}, {"blk.0.attn_q.weight", 8, 32, 32},
                         {"blk.0.attn_k.weight", 30, 32, 16}, {"blk.0.attn_v.weight", 0, 32, 16},
                         {"blk.0.attn_output.weight", 8, 32, 32}, {"blk.0.ffn_norm.weight", 0, 32, 1},
                         {"blk.0.ffn_gate.weight", 1, 32, 32}, {"blk.0.ffn_up.weight", 30, 32, 32},
                         {"blk.0.ffn_down.weight", 8, 32, 32}};
    tensors(o, t, 11);
}

static void build_gpt2(fbuf *o) {
    /* GPT-2's byte alphabet: printable bytes stand for themselves, the others are
     * U+0100 + n in order (llm.h's tables would say the same; spelled out here) */
    char tok[300][8];
    int V = 0, n = 0;
    for (int b = 0; b < 256; b++) {
        int self = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = self ? (unsigned)b : 256u + (unsigned)n++;
        int l = llm__utf8_put(cp, tok[V]);
        tok[V++][l] = 0;
    }
    const char *merges[4] = {"\xc4\xa0 t", "h e", "\xc4\xa0t h", "i n"};   /* "Ġ t", "h e", "Ġt h", "i n" */
    const char *results[4] = {"\xc4\xa0t", "he", "\xc4\xa0th", "in"};
    for (int i = 0; i < 4; i++) snprintf(tok[V++], 8, "%s", results[i]);
    snprintf(tok[V++], 8, "%s", "<|eot|>");
    put(o, "GGUF", 4); put32(o, 3); put64(o, 20); put64(o, 11);
    kv_str(o, "general.architecture", "gpt2");
    kv_u32(o, "gpt2.context_length", 8);
    kv_u32(o, "gpt2.embedding_length", 32);
    kv_u32(o, "gpt2.block_count", 1);
    kv_u32(o, "gpt2.feed_forward_length", 64);
    kv_u32(o, "gpt2.attention.head_count", 2);
    kv_str(o, "tokenizer.ggml.model", "gpt2");
    kv_str(o, "tokenizer.ggml.pre", "gpt-2");
    putstr(o, "tokenizer.ggml.tokens", 21); put32(o, 9); put32(o, 8); put64(o, (uint64_t)V);
    for (int i = 0; i < V; i++) putstr(o, tok[i], strlen(tok[i]));
    putstr(o, "tokenizer.ggml.token_type", 25); put32(o, 9); put32(o, 5); put64(o, (uint64_t)V);
    for (int i = 0; i < V; i++) put32(o, i == V - 1 ? 3 : 1);
    putstr(o, "tokenizer.ggml.merges", 21); put32(o, 9); put32(o, 8); put64(o, 4);
    for (int i = 0; i < 4; i++) putstr(o, merges[i], strlen(merges[i]));
    const uint64_t Vu = (uint64_t)V;
    const tinfo t[20] = {{"token_embd.weight", 1, 32, Vu}, {"position_embd.weight", 1, 32, 8},
                         {"output_norm.weight", 0, 32, 1}, {"output_norm.bias", 0, 32, 1},
                         {"output.weight", 1, 32, Vu},
                         {"blk.0.attn_norm.weight", 0, 32, 1}, {"blk.0.attn_norm.bias", 0, 32, 1},
                         {"blk.0.attn_qkv.weight", 8, 32, 96}, {"blk.0.attn_qkv.bias", 0, 96, 1},
                         {"blk.0.attn_output.weight", 30, 32, 32}, {"blk.0.attn_output.bias", 0, 32, 1},
                         {"blk.0.ffn_norm.weight", 0, 32, 1}, {"blk.0.ffn_norm.bias", 0, 32, 1},
                         {"blk.0.ffn_up.weight", 8, 32, 64}, {"blk.0.ffn_up.bias", 0, 64, 1},
                         {"blk.0.ffn_down.weight", 1, 64, 32}, {"blk.0.ffn_down.bias", 0, 32, 1},
                         {"unused.q4k", 12, 256, 1}, {"unused.f64", 28, 4, 1}, {"unused.i8", 24, 64, 1}};
    tensors(o, t, 20);
}

/* Everything that can be done with a file image. */
static void exercise(const unsigned char *data, size_t n) {
    llm__gguf g;
    memset(&g, 0, sizeof g);
    unsigned char *copy = (unsigned char *)malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    g.map.data = copy; g.map.len = n; g.map.heap = copy;   /* llm__gguf_close frees it */
    if (llm__gguf_parse(&g, "fuzz.gguf") != LLM_OK) { fuzz_check(llm_last_error()[0] != 0); return; }
    llm_config c;
    if (llm__gguf_config(&g, &c) == LLM_OK && llm__config_resolve(&c) == LLM_OK) {
        size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_tensor_layout(&c, off, size);
        /* a shape that passed the checks has its tensors in the file; bound the model
         * anyway (a tied head counts once), and the context for the forward */
        if (off[LLM_NTENSORS - 1] + size[LLM_NTENSORS - 1] <= (4u << 20) && c.max_seq_len <= 4096) {
            llm_options opt;
            memset(&opt, 0, sizeof opt);
            opt.n_threads = 1;
            llm_model *m = NULL;
            llm_status s = llm__gguf_model(&g, &m, &opt);
            fuzz_check((s == LLM_OK) == (m != NULL) && (s == LLM_OK || llm_last_error()[0]));
            if (m) {
                int tok[3] = {0, c.vocab_size - 1, c.vocab_size / 2};
                fuzz_check(llm_model_forward(m, tok, NULL, 1, c.max_seq_len < 3 ? c.max_seq_len : 3, NULL) == LLM_OK);
                llm_model_free(m);
            }
        }
    } else {
        fuzz_check(llm_last_error()[0] != 0);
    }
    llm_tokenizer *gt = NULL;
    llm_llama_tokenizer *lt = NULL;
    if (llm__gguf_tokenizer(&g, &gt, &lt) == LLM_OK) {
        const char *text = "the cat in the hat\n\xc3\xa9\xff";
        size_t tl = strlen(text);
        fuzz_check((gt != NULL) != (lt != NULL));
        if (gt) {
            int ids[64];
            size_t k = 0, bl = 0;
            char back[64];
            fuzz_check(llm_tokenizer_encode(gt, text, tl, 0, ids, 64, &k) == LLM_OK);
            fuzz_check(llm_tokenizer_decode(gt, ids, k, back, sizeof back, &bl) == LLM_OK && bl == tl && memcmp(back, text, tl) == 0);
        }
        if (lt) {
            int ids[64], k = 0;
            fuzz_check(llm_llama_tokenizer_encode(lt, text, tl, 1, 1, ids, 64, &k) == LLM_OK);
            for (int i = 0; i < k; i++) {
                size_t l;
                fuzz_check(ids[i] >= 0 && ids[i] < llm_llama_tokenizer_vocab_size(lt));
                fuzz_check(llm_llama_tokenizer_decode(lt, i ? ids[i - 1] : 1, ids[i], &l) != NULL);
            }
        }
        llm_tokenizer_free(gt);
        llm_llama_tokenizer_free(lt);
    } else {
        fuzz_check(!gt && !lt && llm_last_error()[0]);
    }
    llm__gguf_close(&g);
}

static int fuzz_one(int unused, const uint8_t *data, size_t size) {
    (void)unused;   /* the mode is the first byte */
    if (size < 1) return 0;
    if (!tmpl[0].b) { build_llama(&tmpl[0]); build_gpt2(&tmpl[1]); }
    int mode = data[0] % 3;
    if (mode == 0) { exercise(data + 1, size - 1); return 0; }
    const fbuf *t = &tmpl[mode - 1];
    unsigned char *f = (unsigned char *)malloc(t->n);
    memcpy(f, t->b, t->n);
    size_t n = t->n;
    for (size_t i = 1; i + 3 <= size; i += 3) {
        size_t at = (size_t)(data[i] | data[i + 1] << 8) * t->n >> 16;
        f[at] ^= data[i + 2];
        if (i + 6 > size && (data[i + 2] & 1)) n = at;   /* the last patch may cut the file */
    }
    exercise(f, n);
    free(f);
    return 0;
}

static const fuzz_corpus fuzz_corpora[] = {{"gguf", 0}, {NULL, 0}};
FUZZ_MAIN("fuzz_gguf")
