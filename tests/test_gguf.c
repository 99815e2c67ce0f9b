/* test_gguf: llama.cpp's GGUF files.
 *
 * Truth from outside: tests/gguf_write.py (numpy only, written from the format's
 * description) writes GGUF files of models whose weights we also have in another
 * format: llama2.c's stories260K with its tokenizer, and random GPT-2 / Llama models
 * saved with llm_model_save. Loaded from GGUF they must give the same logits as the
 * original, bit for bit: F32 as it is, F16 with its weights rounded to fp16; BF16 and
 * Q8_0 files load as bf16 / Q8_0 models (the matrices copied as they are) and must equal
 * the original quantized by llm_model_quantize, which also shows that the script's Q8_0
 * quantizer and llm.h's agree bit for bit. The tokenizers read from the metadata must
 * encode and decode as tok512.bin / GPT-2's encoder.json + vocab.bpe do.
 *
 * Then hostile files, built here byte by byte: every field that a count, length, offset
 * or type comes from is made to lie, and the file is cut at every length; each must fail
 * with a named error (LLM_ERR_FORMAT or LLM_ERR_UNSUPPORTED and a message), never crash
 * (the ASan+UBSan copy of this test runs the same). */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "tests/test.h"
#include <unistd.h>

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static int have_numpy(void) {
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}
static int py(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/gguf_write.py %s", args);
    int rc = system(cmd);
    CHECK(rc == 0, "gguf_write.py %s failed (%d)", args, rc);
    return rc == 0;
}

/* Logits (T, V) of tokens under model m (B = 1). */
static float *logits_of(llm_model *m, const int *tok, int T) {
    llm_config c = llm_model_config(m);
    float *lg = (float *)calloc((size_t)T * c.vocab_size, sizeof(float));
    CHECK(llm_model_forward(m, tok, NULL, 1, T, NULL) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(llm_model_get_logits(m, lg) == LLM_OK, "logits: %s", llm_last_error());
    return lg;
}

/* The model's 2-D weights (embeddings and matmuls), rounded as a GGUF of that type
 * stores them (rows of K; Q8_0 only where K is a multiple of 32, as gguf_write.py). */
static void round_like(llm_model *m, const char *type) {
    size_t n = llm_model_num_params(m), off[LLM_NTENSORS], size[LLM_NTENSORS];
    llm_config c = llm_model_config(m);
    float *p = (float *)malloc(n * sizeof(float));
    llm_model_get_params(m, p);
    llm_tensor_layout(&c, off, size);
    int HS = c.n_embd / c.n_head;
    for (int i = 0; i < LLM_NTENSORS; i++) {
        int K = i == 12 ? c.hidden_dim : c.n_embd;   /* fcprojw's rows are H long */
        if (!llm__is_2d(i) || size[i] == 0) continue;
        (void)HS;
        float *t = p + off[i];
        for (size_t r = 0; r < size[i] / (size_t)K; r++) {
            float *x = t + r * (size_t)K;
            if (!strcmp(type, "f16")) for (int k = 0; k < K; k++) x[k] = llm__f16_to_f32(llm__f32_to_f16(x[k]));
            else if (!strcmp(type, "bf16")) for (int k = 0; k < K; k++) x[k] = llm__bf16_value(x[k]);
            else if (!strcmp(type, "q8_0") && K % 32 == 0) {
                llm__q8_0 b[64];
                llm__q8_0_quantize(b, x, (size_t)K);
                llm__q8_0_dequantize(x, b, (size_t)K);
            }
        }
    }
    llm_model_set_params(m, p);
    free(p);
}

static int max_logit_diff_is_zero(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* ---- stories260K ------------------------------------------------------------------------ */
static void test_stories(void) {
    char model[512], tokp[512];
    snprintf(model, sizeof model, "%s/stories260K/stories260K.bin", test_data_dir());
    snprintf(tokp, sizeof tokp, "%s/stories260K/tok512.bin", test_data_dir());
    if (!test_file_exists(model)) { TEST_SKIP("stories260K: %s not found", model); return; }
    const char *types[4] = {"f32", "f16", "bf16", "q8_0"};
    const int tok[12] = {1, 403, 407, 261, 378, 9, 60, 400, 290, 506, 12, 31};
    llm_model *orig = NULL;
    CHECK(llm_model_load(&orig, model, NULL) == LLM_OK, "load %s: %s", model, llm_last_error());
    if (!orig) return;
    float *base = logits_of(orig, tok, 12);
    for (int ti = 0; ti < 4; ti++) {
        char args[2400], out[300];
        snprintf(out, sizeof out, "%s", tmp(types[ti]));
        strcat(out, ".gguf");
        snprintf(args, sizeof args, "llama2c %s %s %s --type %s", model, tokp, out, types[ti]);
        if (!py(args)) continue;
        llm_model *g = NULL;
        CHECK(llm_model_load(&g, out, NULL) == LLM_OK, "load GGUF %s: %s", types[ti], llm_last_error());
        if (!g) continue;
        llm_config a = llm_model_config(orig), b = llm_model_config(g);
        CHECK(a.n_layer == b.n_layer && a.n_embd == b.n_embd && a.n_head == b.n_head && a.n_kv_head == b.n_kv_head &&
              a.hidden_dim == b.hidden_dim && a.vocab_size == b.vocab_size && a.max_seq_len == b.max_seq_len &&
              a.untied_head == b.untied_head && a.arch == b.arch, "stories260K GGUF %s: config differs", types[ti]);
        float *lg = logits_of(g, tok, 12);
        llm_model *ref = NULL;
        llm_model_load(&ref, model, NULL);
        llm_dtype want_dt = ti == 2 ? LLM_DTYPE_BF16 : ti == 3 ? LLM_DTYPE_Q8_0 : LLM_DTYPE_F32;
        CHECK(llm_model_dtype(g) == want_dt, "stories260K GGUF %s loads as %s", types[ti], llm_dtype_name(llm_model_dtype(g)));
        if (want_dt != LLM_DTYPE_F32) CHECK(llm_model_quantize(ref, want_dt) == LLM_OK, "quantize: %s", llm_last_error());
        else round_like(ref, types[ti]);
        float *want = logits_of(ref, tok, 12);
        CHECK(max_logit_diff_is_zero(lg, want, (size_t)12 * a.vocab_size),
              "stories260K GGUF %s: logits differ from the original with %s-rounded weights (max rel %.3g)", types[ti],
              types[ti], test_max_rel_err(lg, want, (size_t)12 * a.vocab_size, 1e-3));
        if (ti == 0) CHECK(max_logit_diff_is_zero(lg, base, (size_t)12 * a.vocab_size), "stories260K GGUF f32: logits differ");
        else printf("stories260K GGUF %s vs fp32: max relative logit difference %.3g\n", types[ti],
                    test_max_rel_err(lg, base, (size_t)12 * a.vocab_size, 1.0));
        free(lg); free(want);
        llm_model_free(g); llm_model_free(ref);
    }
    free(base);
    llm_model_free(orig);

    /* the tokenizer from the metadata = tok512.bin */
    llm_tokenizer *gt = NULL;
    llm_llama_tokenizer *lt = NULL, *ref = NULL;
    CHECK(llm_gguf_load_tokenizer(tmp("f32.gguf"), &gt, &lt) == LLM_OK && lt && !gt, "GGUF llama tokenizer: %s", llm_last_error());
    CHECK(llm_llama_tokenizer_load(&ref, tokp, 512) == LLM_OK, "tok512: %s", llm_last_error());
    if (!lt || !ref) { llm_llama_tokenizer_free(lt); llm_llama_tokenizer_free(ref); return; }
    CHECK(llm_llama_tokenizer_vocab_size(lt) == 512, "GGUF tokenizer: %d tokens", llm_llama_tokenizer_vocab_size(lt));
    int same = 1;
    for (int i = 3; i < 512; i++) {
        size_t la, lb;
        const char *a = llm_llama_tokenizer_piece(lt, i, &la), *b = llm_llama_tokenizer_piece(ref, i, &lb);
        same &= la == lb && memcmp(a, b, la) == 0 && llm_llama_tokenizer_score(lt, i) == llm_llama_tokenizer_score(ref, i);
    }
    CHECK(same, "GGUF tokenizer: pieces or scores differ from tok512.bin");
    const char *texts[] = {"Once upon a time, there was a little girl named Lily.", "", "  leading spaces", "a\nb",
                           "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82", "The end. She said \"hi!\" 123"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int a[256], b[256], na = 0, nb = 0;
        size_t n = strlen(texts[i]);
        llm_llama_tokenizer_encode(lt, texts[i], n, 1, 0, a, 256, &na);
        llm_llama_tokenizer_encode(ref, texts[i], n, 1, 0, b, 256, &nb);
        CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof(int)) == 0, "GGUF tokenizer encodes \"%s\" differently", texts[i]);
    }
    llm_llama_tokenizer_free(lt);
    llm_llama_tokenizer_free(ref);
}

/* ---- random GPT-2 and Llama models through our checkpoint ---------------------------------- */
static void test_ckpt_model(int gpt2, const char *type, const char *extra) {
    llm_config c;
    if (gpt2) {
        c = llm_config_gpt2();
        c.n_layer = 2; c.n_head = 4; c.n_embd = 64; c.max_seq_len = 32;
        if (strstr(extra, "--vocab") == NULL) c.vocab_size = 300;
    } else {
        c = llm_config_llama(300, 2, 4, 2, 64, 96);
        c.max_seq_len = 32; c.untied_head = 1; c.rope_theta = 500000.0f; c.norm_eps = 1e-6f;
    }
    llm_model *m = NULL, *g = NULL;
    CHECK(llm_model_create(&m, &c, NULL, 42) == LLM_OK, "create: %s", llm_last_error());
    if (!m) return;
    char args[1200], out[300];
    snprintf(out, sizeof out, "%s-%s-%s.gguf", tmp(gpt2 ? "gpt2" : "llama"), type, extra[0] ? "x" : "");
    CHECK(llm_model_save(m, tmp("m.ckpt"), 0, NULL) == LLM_OK, "save: %s", llm_last_error());
    snprintf(args, sizeof args, "ckpt %s %s --type %s %s", tmp("m.ckpt"), out, type, extra);
    if (py(args)) {
        CHECK(llm_model_load(&g, out, NULL) == LLM_OK, "load %s: %s", out, llm_last_error());
        if (g) {
            llm_config a = llm_model_config(m), b = llm_model_config(g);
            CHECK(memcmp(&a, &b, sizeof a) == 0, "%s GGUF: config differs (theta %g/%g eps %g/%g)", gpt2 ? "GPT-2" : "Llama",
                  a.rope_theta, b.rope_theta, a.norm_eps, b.norm_eps);
            int tok[10] = {0, 5, 299, 17, 3, 100, 250, 7, 8, 9};
            llm_dtype want_dt = !strcmp(type, "bf16") ? LLM_DTYPE_BF16 : !strcmp(type, "q8_0") ? LLM_DTYPE_Q8_0 : LLM_DTYPE_F32;
            CHECK(llm_model_dtype(g) == want_dt, "%s GGUF loads as %s", type, llm_dtype_name(llm_model_dtype(g)));
            /* (a bf16 file also holds GPT-2's position embedding in bf16: round it too) */
            if (want_dt != LLM_DTYPE_Q8_0) round_like(m, type);
            if (want_dt != LLM_DTYPE_F32) CHECK(llm_model_quantize(m, want_dt) == LLM_OK, "quantize: %s", llm_last_error());
            float *x = logits_of(m, tok, 10), *y = logits_of(g, tok, 10);
            CHECK(max_logit_diff_is_zero(x, y, (size_t)10 * c.vocab_size), "%s GGUF %s %s: logits differ from the checkpoint's",
                  gpt2 ? "GPT-2" : "Llama", type, extra);
            free(x); free(y);
        }
    }
    if (g && gpt2 && strstr(extra, "--vocab")) {   /* the GPT-2 tokenizer from the metadata */
        llm_tokenizer *gt = NULL, *ref = NULL;
        llm_llama_tokenizer *lt = NULL;
        char dir[512];
        snprintf(dir, sizeof dir, "%s/gpt2", test_data_dir());
        CHECK(llm_gguf_load_tokenizer(out, &gt, &lt) == LLM_OK && gt && !lt, "GGUF GPT-2 tokenizer: %s", llm_last_error());
        CHECK(llm_tokenizer_load(&ref, dir) == LLM_OK, "%s: %s", dir, llm_last_error());
        size_t len = 0;
        char *text = test_read_data("tokenizer/sample.txt", &len);
        if (gt && ref && text) {
            CHECK(llm_tokenizer_vocab_size(gt) == 50257 && llm_tokenizer_eot(gt) == 50256, "GGUF GPT-2 tokenizer: V %d eot %d",
                  llm_tokenizer_vocab_size(gt), llm_tokenizer_eot(gt));
            for (int flags = 0; flags <= LLM_TOKENIZE_SPECIAL; flags++) {
                int *a = (int *)malloc(len * sizeof(int)), *b = (int *)malloc(len * sizeof(int));
                size_t na = 0, nb = 0;
                llm_tokenizer_encode(gt, text, len, flags, a, len, &na);
                llm_tokenizer_encode(ref, text, len, flags, b, len, &nb);
                CHECK(na == nb && na > 1000 && memcmp(a, b, na * sizeof(int)) == 0,
                      "GGUF GPT-2 tokenizer: sample.txt (flags %d) encodes to %zu ids, vocab files to %zu", flags, na, nb);
                free(a); free(b);
            }
        }
        free(text);
        llm_tokenizer_free(gt); llm_tokenizer_free(ref);
    }
    llm_model_free(m);
    llm_model_free(g);
}

/* ---- hostile files, built here -------------------------------------------------------------
 * A small valid llama GGUF: C = 32, L = 1, NH = 2, H = 32, V = 8, maxT = 8, all F32, with
 * the tokenizer-free metadata. Each field is remembered by its offset, so tests can lie. */
typedef struct { unsigned char *b; size_t n, cap; } buf;
static void put(buf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) { o->cap = (o->n + n) * 2 + 1024; o->b = (unsigned char *)realloc(o->b, o->cap); }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put32(buf *o, uint32_t v) { put(o, &v, 4); }
static void put64(buf *o, uint64_t v) { put(o, &v, 8); }
static void putstr(buf *o, const char *s) { put64(o, strlen(s)); put(o, s, strlen(s)); }
static void kv_u32(buf *o, const char *k, uint32_t v) { putstr(o, k); put32(o, 4); put32(o, v); }
static void kv_f32(buf *o, const char *k, float v) { putstr(o, k); put32(o, 6); put(o, &v, 4); }
static void kv_str(buf *o, const char *k, const char *v) { putstr(o, k); put32(o, 8); putstr(o, v); }

typedef struct {
    size_t off_ntensors, off_nkv, off_arch_val, off_ctx_val, off_tinfo0, off_tname_len0, off_ndims0, off_ne0,
        off_type0, off_offset0, off_offset1, off_data, n_tensors;
    uint64_t size0;
} layout;

/* Write it with `ttype` as the type of blk.0.attn_q.weight (only F32's bytes, so other
 * types need their size to be checked before the bytes are read). */
static buf build(layout *L, uint32_t ttype) {
    buf o = {0, 0, 0};
    const int C = 32, H = 32, V = 8;
    const char *names[11] = {"blk.0.attn_q.weight", "token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight",
                             "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight",
                             "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};
    const uint64_t ne[11][2] = {{32, 32}, {32, 8}, {32, 1}, {32, 1}, {32, 32}, {32, 32}, {32, 32}, {32, 1}, {32, 32}, {32, 32}, {32, 32}};
    const int nd[11] = {2, 2, 1, 1, 2, 2, 2, 1, 2, 2, 2};
    (void)C; (void)H; (void)V;
    put(&o, "GGUF", 4); put32(&o, 3);
    L->off_ntensors = o.n; put64(&o, 11);
    L->off_nkv = o.n; put64(&o, 8);
    putstr(&o, "general.architecture"); put32(&o, 8); L->off_arch_val = o.n; putstr(&o, "llama");
    L->off_ctx_val = o.n + 8 + strlen("llama.context_length") + 4;
    kv_u32(&o, "llama.context_length", 8);
    kv_u32(&o, "llama.embedding_length", 32);
    kv_u32(&o, "llama.block_count", 1);
    kv_u32(&o, "llama.feed_forward_length", 32);
    kv_u32(&o, "llama.attention.head_count", 2);
    kv_f32(&o, "llama.rope.freq_base", 10000.0f);
    kv_str(&o, "general.name", "hostile");
    uint64_t off = 0;
    for (int i = 0; i < 11; i++) {
        if (i == 0) { L->off_tinfo0 = o.n; L->off_tname_len0 = o.n; }
        putstr(&o, names[i]);
        if (i == 0) L->off_ndims0 = o.n;
        put32(&o, (uint32_t)nd[i]);
        if (i == 0) L->off_ne0 = o.n;
        for (int k = 0; k < nd[i]; k++) put64(&o, ne[i][k]);
        if (i == 0) L->off_type0 = o.n;
        put32(&o, i == 0 ? ttype : 0);
        if (i == 0) L->off_offset0 = o.n;
        if (i == 1) L->off_offset1 = o.n;
        put64(&o, off);
        uint64_t bytes = ne[i][0] * ne[i][1] * 4;
        if (i == 0) L->size0 = bytes;
        off += (bytes + 31) / 32 * 32;
    }
    while (o.n % 32) put(&o, "", 1);
    L->off_data = o.n;
    L->n_tensors = 11;
    test_seed(77);
    for (uint64_t i = 0; i < off / 4; i++) { float f = test_frand() * 0.1f + 0.5f; put(&o, &f, 4); }
    return o;
}

/* Load buffer b as a model; returns the status (the model is freed). */
static llm_status load_buf(const buf *b, const char *name) {
    const char *path = tmp(name);
    FILE *f = fopen(path, "wb");
    fwrite(b->b, 1, b->n, f);
    fclose(f);
    llm_model *m = NULL;
    llm_status s = llm_model_load(&m, path, NULL);
    CHECK((s == LLM_OK) == (m != NULL), "%s: status %d with model %p", name, (int)s, (void *)m);
    CHECK(s == LLM_OK || llm_last_error()[0], "%s: failed without a message", name);
    llm_model_free(m);
    return s;
}
static void set32(buf *b, size_t at, uint32_t v) { memcpy(b->b + at, &v, 4); }
static void set64(buf *b, size_t at, uint64_t v) { memcpy(b->b + at, &v, 8); }

/* Expect status want and, if given, a word in the message. */
static int says(const char *word) { return !word || strstr(llm_last_error(), word) != NULL; }
#define EXPECT(b, name, want, word) do { llm_status s_ = load_buf(b, name); \
    CHECK(s_ == (want) && says(word), "%s: got %d \"%s\", want %d%s%s", name, (int)s_, \
          llm_last_error(), (int)(want), (word) ? " with " : "", (word) ? (word) : ""); } while (0)

static void test_hostile(void) {
    layout L;
    buf good = build(&L, 0);
    EXPECT(&good, "good.gguf", LLM_OK, NULL);
    buf b = {0, 0, 0};
#define FRESH() do { free(b.b); b = build(&L, 0); } while (0)
    FRESH(); set32(&b, 4, 1); EXPECT(&b, "v1.gguf", LLM_ERR_UNSUPPORTED, "version 1");
    FRESH(); set32(&b, 4, 0x03000000u); EXPECT(&b, "be.gguf", LLM_ERR_UNSUPPORTED, "big-endian");
    FRESH(); set64(&b, L.off_ntensors, UINT64_C(1) << 60); EXPECT(&b, "ntensors.gguf", LLM_ERR_FORMAT, "claims");
    FRESH(); set64(&b, L.off_nkv, UINT64_MAX); EXPECT(&b, "nkv.gguf", LLM_ERR_FORMAT, "claims");
    FRESH(); set64(&b, L.off_nkv, 9); EXPECT(&b, "nkv9.gguf", LLM_ERR_FORMAT, NULL);   /* reads a tensor as a key */
    FRESH(); set64(&b, L.off_arch_val, UINT64_C(1) << 62); EXPECT(&b, "strlen.gguf", LLM_ERR_FORMAT, "general.architecture");
    FRESH(); memcpy(b.b + L.off_arch_val + 8, "llamb", 5); EXPECT(&b, "arch.gguf", LLM_ERR_UNSUPPORTED, "llamb");
    FRESH(); set32(&b, L.off_ctx_val - 4, 13); EXPECT(&b, "vtype.gguf", LLM_ERR_FORMAT, "unknown value type");
    FRESH(); set32(&b, L.off_ctx_val - 4, 5); set32(&b, L.off_ctx_val, 0x80000000u);   /* an i32 -2^31 */
    EXPECT(&b, "negctx.gguf", LLM_ERR_FORMAT, "context_length");
    FRESH(); set64(&b, L.off_tname_len0, 1000000); EXPECT(&b, "tname.gguf", LLM_ERR_FORMAT, NULL);
    FRESH(); set32(&b, L.off_ndims0, 0); EXPECT(&b, "ndims0.gguf", LLM_ERR_FORMAT, "dimensions");
    FRESH(); set32(&b, L.off_ndims0, 5); EXPECT(&b, "ndims5.gguf", LLM_ERR_FORMAT, "dimensions");
    FRESH(); set64(&b, L.off_ne0, 0); EXPECT(&b, "ne0.gguf", LLM_ERR_FORMAT, "shape");
    FRESH(); set64(&b, L.off_ne0 + 8, UINT64_C(1) << 40); set64(&b, L.off_ne0, UINT64_C(1) << 20);
    EXPECT(&b, "nebig.gguf", LLM_ERR_FORMAT, "shape");
    FRESH(); set64(&b, L.off_ne0 + 8, 1u << 20); EXPECT(&b, "past.gguf", LLM_ERR_FORMAT, "past the end");
    FRESH(); set64(&b, L.off_offset0, 4); EXPECT(&b, "misaligned.gguf", LLM_ERR_FORMAT, "alignment");
    FRESH(); set64(&b, L.off_offset0, UINT64_MAX - 31); EXPECT(&b, "offmax.gguf", LLM_ERR_FORMAT, "past the end");
    FRESH(); set64(&b, L.off_offset1, 0); EXPECT(&b, "overlap.gguf", LLM_ERR_FORMAT, "overlap");
    FRESH(); memcpy(b.b + L.off_tname_len0 + 8 + 6, "attn_k", 6); EXPECT(&b, "dupname.gguf", LLM_ERR_FORMAT, "twice");
    FRESH(); set32(&b, L.off_type0, 12); EXPECT(&b, "q4k.gguf", LLM_ERR_UNSUPPORTED, "Q4_K");
    FRESH(); set32(&b, L.off_type0, 2); EXPECT(&b, "q4_0.gguf", LLM_ERR_UNSUPPORTED, "Q4_0");
    FRESH(); set32(&b, L.off_type0, 1000); EXPECT(&b, "type1000.gguf", LLM_ERR_UNSUPPORTED, "unknown type");
    FRESH(); set32(&b, L.off_type0, 8); set64(&b, L.off_ne0, 31); EXPECT(&b, "q8rows.gguf", LLM_ERR_FORMAT, "multiple of 32");
    FRESH(); set64(&b, L.off_ne0 + 8, 31); EXPECT(&b, "shape.gguf", LLM_ERR_FORMAT, "expected");
    {   /* a duplicate key, a nested array, an alignment that is not a power of two */
        buf o = {0, 0, 0};
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 2);
        kv_u32(&o, "a.b", 1); kv_u32(&o, "a.b", 2);
        EXPECT(&o, "dupkey.gguf", LLM_ERR_FORMAT, "twice");
        o.n = 0;
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 1);
        putstr(&o, "x"); put32(&o, 9); put32(&o, 9); put64(&o, 1); put32(&o, 4); put64(&o, 0);
        EXPECT(&o, "nested.gguf", LLM_ERR_FORMAT, "of arrays");
        o.n = 0;
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 1);
        putstr(&o, "x"); put32(&o, 9); put32(&o, 8); put64(&o, UINT64_C(1) << 58);
        EXPECT(&o, "strarr.gguf", LLM_ERR_FORMAT, "x");
        o.n = 0;
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 1);
        kv_u32(&o, "general.alignment", 48);
        EXPECT(&o, "align.gguf", LLM_ERR_FORMAT, "alignment");
        o.n = 0;
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 0);   /* empty: no architecture */
        EXPECT(&o, "empty.gguf", LLM_ERR_FORMAT, "architecture");
        free(o.b);
    }
    /* cut at every length: a named error each time (a prefix is never a valid file: the
     * last tensor's bytes end the file) */
    int bad = 0;
    for (size_t n = 0; n < good.n; n += (n < L.off_data + 64 ? 1 : 97)) {
        buf c = {good.b, n, n};
        llm_status s = load_buf(&c, "cut.gguf");
        if (s != LLM_ERR_FORMAT || !llm_last_error()[0]) bad++;
    }
    CHECK(bad == 0, "truncated GGUF: %d cut lengths did not give LLM_ERR_FORMAT", bad);
    /* random bytes over the header: any status, never a crash (ASan/UBSan watch) */
    test_seed(99);
    for (int i = 0; i < (TEST_SAN ? 300 : 2000); i++) {
        FRESH();
        for (int k = 0; k < 1 + (int)(test_rand_u64() % 4); k++) b.b[test_rand_u64() % L.off_data] ^= (unsigned char)(1u << (test_rand_u64() % 8));
        load_buf(&b, "flip.gguf");
        llm_tokenizer *gt; llm_llama_tokenizer *lt;
        llm_gguf_load_tokenizer(tmp("flip.gguf"), &gt, &lt);
        llm_tokenizer_free(gt); llm_llama_tokenizer_free(lt);
    }
    /* the tokenizer: this file has none */
    {
        llm_tokenizer *gt = (llm_tokenizer *)1;
        llm_llama_tokenizer *lt = (llm_llama_tokenizer *)1;
        load_buf(&good, "good.gguf");
        llm_status s = llm_gguf_load_tokenizer(tmp("good.gguf"), &gt, &lt);
        CHECK(s == LLM_ERR_FORMAT && !gt && !lt && strstr(llm_last_error(), "no tokenizer"), "no tokenizer: %d %s", (int)s, llm_last_error());
    }
    free(b.b);
    free(good.b);
}

/* Tokenizer metadata that lies. */
static void test_hostile_tokenizer(void) {
    const char *bad_models[] = {"bert", "rwkv"};
    for (int i = 0; i < 2; i++) {
        buf o = {0, 0, 0};
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, 1);
        kv_str(&o, "tokenizer.ggml.model", bad_models[i]);
        FILE *f = fopen(tmp("tok.gguf"), "wb"); fwrite(o.b, 1, o.n, f); fclose(f);
        llm_tokenizer *gt; llm_llama_tokenizer *lt;
        llm_status s = llm_gguf_load_tokenizer(tmp("tok.gguf"), &gt, &lt);
        CHECK(s == LLM_ERR_UNSUPPORTED && strstr(llm_last_error(), bad_models[i]), "tokenizer %s: %d %s", bad_models[i], (int)s, llm_last_error());
        free(o.b);
    }
    /* llama: scores missing / of the wrong length / a byte piece out of place */
    for (int v = 0; v < 4; v++) {
        buf o = {0, 0, 0};
        put(&o, "GGUF", 4); put32(&o, 3); put64(&o, 0); put64(&o, v == 0 ? 2 : 3);
        kv_str(&o, "tokenizer.ggml.model", "llama");
        putstr(&o, "tokenizer.ggml.tokens"); put32(&o, 9); put32(&o, 8); put64(&o, 260);
        for (int i = 0; i < 260; i++) {
            char p[16];
            if (i < 3) snprintf(p, sizeof p, "<t%d>", i);
            else if (i < 259) snprintf(p, sizeof p, "<0x%02X>", (v == 3 && i == 100) ? 0 : i - 3);
            else snprintf(p, sizeof p, "\xe2\x96\x81" "ab");
            putstr(&o, p);
        }
        if (v >= 1) {
            putstr(&o, "tokenizer.ggml.scores"); put32(&o, 9); put32(&o, 6); put64(&o, v == 1 ? 259 : 260);
            for (int i = 0; i < (v == 1 ? 259 : 260); i++) { float sc = (float)-i; put(&o, &sc, 4); }
        }
        FILE *f = fopen(tmp("tok.gguf"), "wb"); fwrite(o.b, 1, o.n, f); fclose(f);
        llm_tokenizer *gt; llm_llama_tokenizer *lt;
        llm_status s = llm_gguf_load_tokenizer(tmp("tok.gguf"), &gt, &lt);
        llm_status want = v == 2 ? LLM_OK : v == 3 ? LLM_ERR_UNSUPPORTED : LLM_ERR_FORMAT;
        CHECK(s == want, "llama tokenizer variant %d: %d %s", v, (int)s, llm_last_error());
        if (s == LLM_OK) {
            size_t l;
            const char *p = llm_llama_tokenizer_piece(lt, 259, &l);
            CHECK(l == 3 && memcmp(p, " ab", 3) == 0, "U+2581 not turned into a space");
        }
        llm_llama_tokenizer_free(lt);
        free(o.b);
    }
}

int main(void) {
    if (!test_make_tmpdir(tmpdir, sizeof tmpdir, "llm_test_gguf")) { printf("cannot make a temporary directory\n"); return 1; }
    test_hostile();
    test_hostile_tokenizer();
    if (!have_numpy()) {
        TEST_SKIP("GGUF files from tests/gguf_write.py: /usr/bin/python3 with numpy not found");
    } else {
        test_stories();
        const char *types[4] = {"f32", "f16", "bf16", "q8_0"};
        for (int t = 0; t < 4; t++) {
            test_ckpt_model(0, types[t], "");
            test_ckpt_model(1, types[t], "");
        }
        test_ckpt_model(0, "f32", "--align 64");
        char extra[600];
        snprintf(extra, sizeof extra, "--vocab %s/gpt2", test_data_dir());
        test_ckpt_model(1, "q8_0", extra);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) printf("could not remove %s\n", tmpdir);
    return TEST_END("test_gguf");
}
