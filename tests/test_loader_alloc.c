/* tests/test_loader_alloc.c: a file that lies about its size costs nothing.
 *
 * Every loader must compare the sizes a header claims with the bytes the file holds
 * before it allocates anything for them. Through a counting allocator (LLM_MALLOC), small
 * files whose headers claim huge shapes must fail with LLM_ERR_FORMAT (a named format
 * error, not "out of memory") while the largest single allocation stays under 1 MB:
 *   - the fuzzer's first finding: a 1.3 KB file with llm.c's magic that claimed a 51 GB
 *     model, which llm_model_load used to allocate before it compared the file's size;
 *   - the same kind of lie in each model format (safetensors with a config.json or an
 *     inferred shape, llama2.c, our checkpoint, its optimizer state), in a token file,
 *     and in llama2.c's tokenizer; through llm_model_load (a mapped file) and the
 *     *_memory loaders.
 * The honest small files next to them load, so the limit does not simply refuse all. */
#include "test.h"
#include <stddef.h>

static size_t largest, total;
static void *count_malloc(size_t n) { if (n > largest) largest = n; total += n; return malloc(n); }
static void *count_realloc(void *p, size_t n) { if (n > largest) largest = n; total += n; return realloc(p, n); }
#define LLM_MALLOC(sz) count_malloc(sz)
#define LLM_REALLOC(p, sz) count_realloc(p, sz)
#define LLM_FREE(p) free(p)
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "ref.h"

#define LIMIT (1u << 20)

static void reset(void) { largest = 0; total = 0; }

/* A load that must fail as a format error without a large allocation. */
static void lie(const char *what, llm_status s, const void *obj) {
    CHECK(s == LLM_ERR_FORMAT && obj == NULL, "%s: status %d (%s), want LLM_ERR_FORMAT", what, (int)s, llm_last_error());
    CHECK(largest < LIMIT, "%s: allocated %zu bytes at once before refusing the file", what, largest);
    printf("%-58s refused, largest allocation %zu bytes: %s\n", what, largest, llm_last_error());
}

static void write_file(const char *path, const void *a, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(a, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }

static void test_llmc(void) {
    /* the fuzzer's finding: 1.3 KB, magic 20240326 version 3, and a 12.9G-parameter shape */
    unsigned char b[1300];
    memset(b, 0, sizeof b);
    const uint32_t h[8] = {20240326, 3, 1024, 50304, 64, 64, 4096, 50304};
    for (int i = 0; i < 8; i++) put32(b + 4 * i, h[i]);
    const char *path = ref_tmp_path("lie.llmc.bin");
    write_file(path, b, sizeof b);
    llm_model *m = NULL;
    reset();
    lie("llm.c .bin, 1.3 KB claiming 12.9G parameters (file)", llm_model_load(&m, path, NULL), m);
    reset();
    lie("llm.c .bin, the same bytes (memory)", llm_model_load_memory(&m, b, sizeof b, NULL), m);
    CHECK(strstr(llm_last_error(), "expected") != NULL, "the message says what size was expected: %s", llm_last_error());
    put32(b + 4, 5);   /* bf16 */
    reset();
    lie("llm.c .bin v5 (bf16), 1.3 KB claiming 12.9G parameters", llm_model_load_memory(&m, b, sizeof b, NULL), m);
}

/* A safetensors file of tiny tensors (L=1 C=64 V=3 maxT=2, F32) behind a config.json
 * that claims GPT-2 XL, and the same file read without one: both shapes are checked
 * against the tensors before the model is allocated. */
static void test_safetensors(void) {
    ref_model *rm = (ref_model *)calloc(1, sizeof *rm);
    ref_tensor t[16];
    const ref_tensor *ts[16];
    const struct { const char *name; long long d0, d1; } sh[16] = {
        {"wte.weight", 3, 64}, {"wpe.weight", 2, 64}, {"h.0.ln_1.weight", 64, 0}, {"h.0.ln_1.bias", 64, 0},
        {"h.0.attn.c_attn.weight", 64, 192}, {"h.0.attn.c_attn.bias", 192, 0}, {"h.0.attn.c_proj.weight", 64, 64},
        {"h.0.attn.c_proj.bias", 64, 0}, {"h.0.ln_2.weight", 64, 0}, {"h.0.ln_2.bias", 64, 0},
        {"h.0.mlp.c_fc.weight", 64, 256}, {"h.0.mlp.c_fc.bias", 256, 0}, {"h.0.mlp.c_proj.weight", 256, 64},
        {"h.0.mlp.c_proj.bias", 64, 0}, {"ln_f.weight", 64, 0}, {"ln_f.bias", 64, 0}};
    for (int i = 0; i < 16; i++) {
        memset(&t[i], 0, sizeof t[i]);
        snprintf(t[i].name, sizeof t[i].name, "%s", sh[i].name);
        t[i].ndim = sh[i].d1 ? 2 : 1; t[i].shape[0] = sh[i].d0; t[i].shape[1] = sh[i].d1;
        t[i].n = (size_t)sh[i].d0 * (size_t)(sh[i].d1 ? sh[i].d1 : 1);
        t[i].data = (float *)malloc(t[i].n * sizeof(float));
        ref_fill(t[i].data, t[i].n, (uint64_t)(i + 1), 0.1f, 0);
        ts[i] = &t[i];
    }
    ref_tmp_dir("st");
    const char *path = ref_tmp_path("st/model.safetensors");
    char file[1024];
    snprintf(file, sizeof file, "%s", path);
    ref_write_safetensors(file, ts, 16, REF_F32);
    llm_model *m = NULL;
    /* no config.json: the tensors' own shape loads */
    reset();
    CHECK(llm_model_load(&m, file, NULL) == LLM_OK, "the honest file: %s", llm_last_error());
    llm_model_free(m); m = NULL;
    const char *cfg = ref_tmp_path("st/config.json");
    static const char xl[] = "{\"n_layer\": 48, \"n_head\": 25, \"n_embd\": 1600, \"vocab_size\": 50257, \"n_positions\": 1024}";
    write_file(cfg, xl, sizeof xl - 1);
    reset();
    lie("safetensors, 0.3 MB behind a config.json of GPT-2 XL", llm_model_load(&m, file, NULL), m);
    remove(cfg);
    /* a header whose one tensor claims 2^40 floats: offsets past the file */
    static const char hdr[] = "{\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,4398046511104]}}";
    unsigned char b[8 + sizeof hdr + 64];
    memset(b, 0, sizeof b);
    b[0] = (unsigned char)(sizeof hdr - 1);
    memcpy(b + 8, hdr, sizeof hdr - 1);
    reset();
    lie("safetensors, one tensor claiming 4 TB (memory)", llm_model_load_memory(&m, b, sizeof b, NULL), m);
    for (int i = 0; i < 16; i++) free(t[i].data);
    free(rm);
}

static void test_llama2c(void) {
    /* dim 8192, hidden 28672, 80 layers, 64 heads, 8 kv heads, V -32000, seq 4096: Llama 70B */
    unsigned char b[28 + 4096];
    memset(b, 0, sizeof b);
    const int32_t h[7] = {8192, 28672, 80, 64, 8, -32000, 4096};
    for (int i = 0; i < 7; i++) put32(b + 4 * i, (uint32_t)h[i]);
    llm_model *m = NULL;
    reset();
    lie("llama2.c .bin, 4 KB claiming Llama 70B", llm_model_load_memory(&m, b, sizeof b, NULL), m);
}

static void test_ckpt(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 4; c.vocab_size = 7; c.n_layer = 1; c.n_head = 1; c.n_embd = 4;
    llm_model *m = NULL;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;
    CHECK(llm_model_create(&m, &c, &opt, 1) == LLM_OK, "create: %s", llm_last_error());
    const char *path = ref_tmp_path("small.ckpt");
    ref_tmp_path("small.ckpt.tmp");
    CHECK(llm_model_save(m, path, 0, NULL) == LLM_OK, "save: %s", llm_last_error());
    llm_model_free(m); m = NULL;
    size_t n = 0;
    unsigned char *b = (unsigned char *)test_read_file(path, &n);
    if (!b) return;
    reset();
    CHECK(llm_model_load_memory(&m, b, n, NULL) == LLM_OK, "the honest checkpoint: %s", llm_last_error());
    llm_model_free(m); m = NULL;
    /* the header now claims L=96, C=12288 (GPT-3's shape); the count of parameters and the
     * file's length then disagree */
    put32(b + 16 + 4 * 3, 96); put32(b + 16 + 4 * 4, 96); put32(b + 16 + 4 * 5, 12288);
    reset();
    lie("our checkpoint, 0.7 KB claiming GPT-3's shape", llm_model_load_memory(&m, b, n, NULL), m);
    free(b);
}

static void test_dataset(void) {
    static uint16_t b[512 + 8];   /* the 1024-byte header and 8 tokens, aligned */
    memset(b, 0, sizeof b);
    unsigned char *p = (unsigned char *)b;
    put32(p, 20240520); put32(p + 4, 1); put32(p + 8, 0x7fffffffu);
    llm_dataset *d = NULL;
    reset();
    lie("token file, 1 KB claiming 2^31 tokens", llm_dataset_open_memory(&d, b, sizeof b), d);
    put32(p + 8, 8);
    CHECK(llm_dataset_open_memory(&d, b, sizeof b) == LLM_OK && llm_dataset_len(d) == 8, "the honest token file: %s",
          llm_last_error());
    llm_dataset_close(d);
    CHECK(llm_dataset_open_memory(&d, p + 1, sizeof b - 1) == LLM_ERR_ARG && d == NULL,
          "an unaligned buffer is refused: %s", llm_last_error());
}

static void test_llama_tokenizer(void) {
    unsigned char b[64];
    memset(b, 0, sizeof b);
    put32(b, 0x7fffffff);   /* max_token_length */
    put32(b + 8, 0x7ffffff0);   /* the first token's length: 2 GB */
    llm_llama_tokenizer *t = NULL;
    reset();
    lie("llama2.c tokenizer, 64 bytes claiming a 2 GB token", llm_llama_tokenizer_load_memory(&t, b, sizeof b, 0), t);
}

int main(void) {
    test_llmc();
    test_safetensors();
    test_llama2c();
    test_ckpt();
    test_dataset();
    test_llama_tokenizer();
    return TEST_END("test_loader_alloc");
}
