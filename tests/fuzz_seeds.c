/* tests/fuzz_seeds.c: writes the seed corpora of the fuzz targets into tests/fuzz/<corpus>/
 * (`make fuzz-seeds`; the files are committed). Small valid inputs of every kind each
 * target reads, from which libFuzzer grows its mutations; tests/fuzz.h's replay runs
 * them in `make test`. The models are tiny (a few KB) with weights from tests/ref.h's
 * generator; checkpoints and token files are written by the library itself.
 * Inputs that once crashed a target are added by hand as regress-<what>. */
#include "test.h"
#include "llm.h"
#include "ref.h"

static const char *g_out = "tests/fuzz";

static void put(const char *corpus, const char *name, const void *a, size_t na, const void *b, size_t nb) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_out, corpus);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g_out, corpus, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(a, 1, na, f) == na && (!nb || fwrite(b, 1, nb, f) == nb) && fclose(f) == 0, "write %s", path);
}
static void put_file(const char *corpus, const char *name, const char *src, const void *prefix, size_t np) {
    size_t n = 0;
    char *d = test_read_file(src, &n);
    CHECK(d != NULL, "read %s", src);
    if (d) put(corpus, name, prefix, np, d, n);
    free(d);
}

/* A tensor of the recipe kind, drawn with seed. */
static ref_tensor *tensor(ref_tensor *t, const char *name, int ndim, long long d0, long long d1, uint64_t seed,
                          float scale, float shift) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim; t->shape[0] = d0; t->shape[1] = d1;
    t->n = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
    t->data = (float *)malloc(t->n * sizeof(float));
    ref_fill(t->data, t->n, seed, scale, shift);
    return t;
}

/* A GPT-2 of L=1 NH=2 C=8 V=11 maxT=4 as HF tensors (Conv1D weights (in, out)). */
enum { GL = 1, GNH = 2, GC = 8, GV = 11, GT = 4 };
static int gpt2_tensors(ref_tensor *t, int masks) {
    int n = 0;
    tensor(&t[n++], "wte.weight", 2, GV, GC, 1, 0.2f, 0);
    tensor(&t[n++], "wpe.weight", 2, GT, GC, 2, 0.2f, 0);
    const struct { const char *name; int ndim; int d0, d1; float shift; } per[12] = {
        {"ln_1.weight", 1, GC, 0, 1}, {"ln_1.bias", 1, GC, 0, 0}, {"attn.c_attn.weight", 2, GC, 3 * GC, 0},
        {"attn.c_attn.bias", 1, 3 * GC, 0, 0}, {"attn.c_proj.weight", 2, GC, GC, 0}, {"attn.c_proj.bias", 1, GC, 0, 0},
        {"ln_2.weight", 1, GC, 0, 1}, {"ln_2.bias", 1, GC, 0, 0}, {"mlp.c_fc.weight", 2, GC, 4 * GC, 0},
        {"mlp.c_fc.bias", 1, 4 * GC, 0, 0}, {"mlp.c_proj.weight", 2, 4 * GC, GC, 0}, {"mlp.c_proj.bias", 1, GC, 0, 0}};
    char name[96];
    for (int l = 0; l < GL; l++)
        for (int i = 0; i < 12; i++) {
            snprintf(name, sizeof name, "h.%d.%s", l, per[i].name);
            tensor(&t[n++], name, per[i].ndim, per[i].d0, per[i].d1, (uint64_t)(10 + i), 0.2f, per[i].shift);
        }
    tensor(&t[n++], "ln_f.weight", 1, GC, 0, 30, 0.1f, 1);
    tensor(&t[n++], "ln_f.bias", 1, GC, 0, 31, 0.1f, 0);
    if (masks) {
        ref_tensor *m = tensor(&t[n++], "h.0.attn.bias", 2, GT, GT, 0, 0, 0);
        m->ndim = 4; m->shape[0] = m->shape[1] = 1; m->shape[2] = m->shape[3] = GT;
        for (int r = 0; r < GT; r++) for (int c = 0; c <= r; c++) m->data[r * GT + c] = 1;
    }
    return n;
}

static void seeds_safetensors(void) {
    static const char config[] = "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 8, \"vocab_size\": 11, \"n_positions\": 4}";
    ref_tensor t[32];
    const ref_tensor *ts[34];
    int n = gpt2_tensors(t, 1);
    for (int dt = 0; dt < 3; dt++) {
        const char *tmp = ref_tmp_path("seed.safetensors");
        for (int i = 0; i < n; i++) ts[i] = &t[i];
        if (dt == 2) {   /* "transformer." names, lm_head.weight, reverse order */
            ref_tensor *lm = &t[n];
            *lm = t[0];
            snprintf(lm->name, sizeof lm->name, "lm_head.weight");
            ts[n] = lm;
            for (int i = 0; i < n; i++) {
                char nm[96];
                snprintf(nm, sizeof nm, "transformer.%.80s", t[i].name);
                strcpy(t[i].name, nm);
            }
            for (int i = 0; i <= n / 2; i++) { const ref_tensor *x = ts[i]; ts[i] = ts[n - i]; ts[n - i] = x; }
        }
        ref_write_safetensors(tmp, ts, dt == 2 ? n + 1 : n, dt);
        const char *names[3] = {"seed-f32-config", "seed-f16-config", "seed-bf16-prefix-config"};
        put_file("safetensors", names[dt], tmp, config, sizeof config);   /* the NUL ends the config */
    }
    for (int i = 0; i < n; i++) free(t[i].data);
}

static void seeds_llmc(llm_model *m) {
    size_t np = llm_model_num_params(m), V = GV, Vp = 16, C = GC;
    float *p = (float *)malloc(np * sizeof(float));
    llm_model_get_params(m, p);
    for (int version = 3; version <= 5; version += 2) {
        int32_t hdr[256];
        memset(hdr, 0, sizeof hdr);
        hdr[0] = 20240326; hdr[1] = version; hdr[2] = GT; hdr[3] = GV; hdr[4] = GL; hdr[5] = GNH; hdr[6] = GC; hdr[7] = (int)Vp;
        size_t esz = version == 3 ? 4 : 2, total = (np + (Vp - V) * C) * esz;
        unsigned char *b = (unsigned char *)calloc(total, 1);
        for (size_t i = 0, o = 0; i < np; i++, o++) {
            if (i == V * C) o += (Vp - V) * C;   /* wte's padding rows */
            if (esz == 4) memcpy(b + 4 * o, &p[i], 4);
            else { uint16_t h = ref_bf16(p[i]); memcpy(b + 2 * o, &h, 2); }
        }
        put("llmc", version == 3 ? "seed-v3-fp32" : "seed-v5-bf16", hdr, sizeof hdr, b, total);
        free(b);
    }
    free(p);
}

static void seeds_llama2c(void) {
    for (int tied = 0; tied < 2; tied++) {
        /* C=8 H=12 L=1 NH=2 NKV=1 V=7 maxT=4 */
        int C = 8, H = 12, L = 1, NH = 2, NKV = 1, V = 7, maxT = 4, KV = NKV * (C / NH);
        ref_model m;
        ref_tensor t[12];
        m.n = 0; m.t = t;
        tensor(&t[m.n++], "tok_embeddings", 2, V, C, 40, 0.5f, 0);
        tensor(&t[m.n++], "rms_att", 2, L, C, 41, 0.2f, 1);
        tensor(&t[m.n++], "wq", 2, L * C, C, 42, 0.3f, 0);
        tensor(&t[m.n++], "wk", 2, L * KV, C, 43, 0.3f, 0);
        tensor(&t[m.n++], "wv", 2, L * KV, C, 44, 0.3f, 0);
        tensor(&t[m.n++], "wo", 2, L * C, C, 45, 0.3f, 0);
        tensor(&t[m.n++], "rms_ffn", 2, L, C, 46, 0.2f, 1);
        tensor(&t[m.n++], "w1", 2, L * H, C, 47, 0.3f, 0);
        tensor(&t[m.n++], "w2", 2, L * C, H, 48, 0.3f, 0);
        tensor(&t[m.n++], "w3", 2, L * H, C, 49, 0.3f, 0);
        tensor(&t[m.n++], "rms_final", 1, C, 0, 50, 0.2f, 1);
        if (!tied) tensor(&t[m.n++], "wcls", 2, V, C, 51, 0.5f, 0);
        int hdr[7] = {C, H, L, NH, NKV, tied ? V : -V, maxT};
        const char *tmp = ref_tmp_path("seed.bin");
        ref_write_llama2c(tmp, &m, hdr);
        put_file("llama2c", tied ? "seed-tied" : "seed-untied-gqa", tmp, "", 0);
        for (int i = 0; i < m.n; i++) free(t[i].data);
    }
}

static void seeds_ckpt(llm_model *gpt2) {
    const char *tmp = ref_tmp_path("seed.ckpt");
    int tok[4] = {1, 2, 3, 4}, tgt[4] = {2, 3, 4, 5};
    llm_adamw_config oc = llm_adamw_config_default();
    CHECK(llm_model_forward(gpt2, tok, tgt, 1, 4, NULL) == LLM_OK && llm_model_zero_grad(gpt2) == LLM_OK &&
          llm_model_backward(gpt2, 1.0f) == LLM_OK && llm_model_step(gpt2, &oc, 1e-3f, NULL) == LLM_OK,
          "train step: %s", llm_last_error());
    llm_train_state ts = {1, {0x1234, 0x5678}, 2, 0};
    CHECK(llm_model_save(gpt2, tmp, 1, &ts) == LLM_OK, "save: %s", llm_last_error());
    put_file("ckpt", "seed-gpt2-optimizer", tmp, "", 0);
    CHECK(llm_model_save(gpt2, tmp, 0, NULL) == LLM_OK, "save: %s", llm_last_error());
    put_file("ckpt", "seed-gpt2-weights", tmp, "", 0);
    llm_config c = llm_config_llama(9, 1, 2, 1, 8, 12);
    c.max_seq_len = 4; c.untied_head = 1; c.rope_theta = 500000.0f;
    llm_model *m = NULL;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;
    CHECK(llm_model_create(&m, &c, &opt, 3) == LLM_OK, "create: %s", llm_last_error());
    if (m) {
        CHECK(llm_model_forward(m, tok, tgt, 1, 4, NULL) == LLM_OK && llm_model_zero_grad(m) == LLM_OK &&
              llm_model_backward(m, 1.0f) == LLM_OK && llm_model_step(m, &oc, 1e-3f, NULL) == LLM_OK,
              "llama train step: %s", llm_last_error());
        CHECK(llm_model_save(m, tmp, 1, &ts) == LLM_OK, "save: %s", llm_last_error());
        put_file("ckpt", "seed-llama-optimizer", tmp, "", 0);
    }
    llm_model_free(m);
}

/* llama2.c's tokenizer.bin: max_token_length, then (score, length, bytes) per token. */
static void ltok_add(unsigned char *b, size_t *o, float score, const char *piece, size_t len) {
    int32_t l = (int32_t)len;
    memcpy(b + *o, &score, 4); memcpy(b + *o + 4, &l, 4); memcpy(b + *o + 8, piece, len);
    *o += 8 + len;
}
static void seeds_llama_tokenizer(void) {
    static unsigned char b[16384];
    size_t o = 4;
    int32_t mtl = 8;
    memcpy(b, &mtl, 4);
    ltok_add(b, &o, 0, "<unk>", 5); ltok_add(b, &o, 0, "\n<s>\n", 5); ltok_add(b, &o, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) { char p[8]; snprintf(p, sizeof p, "<0x%02X>", i); ltok_add(b, &o, 0, p, 6); }
    const char *merges[] = {" ", "a", "b", "c", "t", "h", "e", " t", "th", "he", " th", "the", " the", "ab", "abc",
                            "\xc3\xa9", " \xc3\xa9t\xc3\xa9"};
    int nm = (int)(sizeof merges / sizeof merges[0]);
    for (int i = 0; i < nm; i++) ltok_add(b, &o, -(float)i, merges[i], strlen(merges[i]));
    unsigned char all = 0, exact = (unsigned char)(128 + nm);   /* fuzz_llama_tokenizer: vocab = 259 + (byte - 128) */
    put("llama_tokenizer", "seed-read-all", &all, 1, b, o);
    put("llama_tokenizer", "seed-exact-size", &exact, 1, b, o);
    /* a five-token vocabulary: no byte tokens, so every fallback is <unk>-free bytes */
    o = 4;
    ltok_add(b, &o, 0, "<unk>", 5); ltok_add(b, &o, 0, "<s>", 3); ltok_add(b, &o, 0, "</s>", 4);
    ltok_add(b, &o, -1, " ", 1); ltok_add(b, &o, -2, "x", 1);
    put("llama_tokenizer", "seed-tiny", &all, 1, b, o);
}

static void seeds_dataset(void) {
    const char *tmp = ref_tmp_path("seed.tokens");
    int tok[200];
    for (int i = 0; i < 200; i++) tok[i] = (i * 37 + 11) % 50257;
    size_t n = 0;
    CHECK(llm_dataset_write(tmp, tok, 200) == LLM_OK, "dataset_write: %s", llm_last_error());
    unsigned char *d = (unsigned char *)test_read_file(tmp, &n);
    if (d) {
        put("dataset", "seed-200", d, n, "", 0);
        /* header bytes 12..63 (unused by the format) pick fuzz_dataset's loader: B 3, T 8,
         * shuffled, a token range and a saved state */
        d[12] = 2; d[13] = 7; d[14] = 1; d[16] = 5; d[24] = 150; d[32] = 42; d[40] = 9; d[56] = 2;
        put("dataset", "seed-200-loader", d, n, "", 0);
        free(d);
    }
    CHECK(llm_dataset_write(tmp, tok, 2) == LLM_OK, "dataset_write: %s", llm_last_error());
    d = (unsigned char *)test_read_file(tmp, &n);
    if (d) put("dataset", "seed-2", d, n, "", 0);
    free(d);
}

static void seeds_json(void) {
    static const char *docs[] = {
        "{\"n_layer\": 12, \"n_head\": 12, \"n_embd\": 768, \"vocab_size\": 50257, \"n_positions\": 1024, "
        "\"layer_norm_epsilon\": 1e-05, \"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"]}",
        "{\"__metadata__\":{\"format\":\"pt\"},\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[11,8],\"data_offsets\":[0,352]}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"!\": 0, \"\\u0120t\": 1, \"\\\"\": 2}, \"merges\": [\"\\u0120 t\", [\"a\", \"b\"]]}, "
        "\"added_tokens\": [{\"id\": 3, \"content\": \"<|endoftext|>\", \"special\": true}]}",
        "[1, -0, 0.5, -1.25e+3, 1E-7, 9007199254740993, true, false, null, \"\\ud83d\\ude00\\n\\t\\/\\\\\", {}, [], [[[]]]]",
        "\"\\u00e9\\u4e2d\"",
        "  {\"a\" : {\"b\" : [ {\"c\" : 1 } , 2 ] } , \"a\" : 3 }  ",
    };
    char name[32];
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        snprintf(name, sizeof name, "seed-%zu.json", i);
        put("json", name, docs[i], strlen(docs[i]), "", 0);
    }
}

static void seeds_tokenizer(void) {
    /* mode byte (fuzz_tokenizer: data[0] & 3), then the mode's input */
    static const char tj[] = "\0{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4, "
                             "\"<|endoftext|>\": 5}, \"merges\": [\"a b\", \"\\u0120 ab\"]}, \"added_tokens\": "
                             "[{\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true}]}";
    put("tokenizer", "seed-0-tokenizer.json", tj, sizeof tj - 1, "", 0);
    static const char vm[] = "\1{\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120ab\": 4}\0#version: 0.2\na b\n\xc4\xa0 ab\n";
    put("tokenizer", "seed-1-vocab-merges", vm, sizeof vm - 1, "", 0);
    static const char tx[] = "\2Hello world! It's 2024, caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 <|endoftext|>  \n\n\xff\xfe ok";
    put("tokenizer", "seed-2-text", tx, sizeof tx - 1, "", 0);
    static const char mt[] = "\3a b\nab c\n  x\n\0abc ab  abcx";
    put("tokenizer", "seed-3-merges-text", mt, sizeof mt - 1, "", 0);
}

int main(int argc, char **argv) {
    if (argc > 1) g_out = argv[1];
    mkdir(g_out, 0755);
    seeds_safetensors();
    llm_config c = llm_config_gpt2();
    c.max_seq_len = GT; c.vocab_size = GV; c.n_layer = GL; c.n_head = GNH; c.n_embd = GC;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, &opt, 5) == LLM_OK, "create: %s", llm_last_error());
    if (m) { seeds_llmc(m); seeds_ckpt(m); }
    llm_model_free(m);
    seeds_llama2c();
    seeds_llama_tokenizer();
    seeds_dataset();
    seeds_json();
    seeds_tokenizer();
    printf("seeds written to %s\n", g_out);
    return TEST_END("fuzz_seeds");
}
