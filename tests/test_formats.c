/* tests/test_formats.c: every file loader against valid, truncated and lying files.
 *
 * Bad input must give an error status (LLM_ERR_FORMAT or LLM_ERR_UNSUPPORTED for a
 * malformed file) with a non-empty llm_last_error(), and *out == NULL: never a crash,
 * which the ASan+UBSan build of this test (build/san/test_formats) checks. Covered:
 *   - safetensors (written here by a tiny writer): cut at many points, header length
 *     past the end of the file or absurd (2^60), invalid JSON, shapes that disagree with
 *     the config or with the byte count, shape products that overflow, offsets past
 *     the end / overlapping / negative / reversed, unknown dtypes, missing tensors,
 *     config.json with n_head not dividing n_embd;
 *   - llm.c .bin (versions 3 fp32 and 5 bf16): valid (and giving bit-identical logits
 *     to the same weights from safetensors), wrong magic, wrong version, truncated,
 *     header fields that are impossible;
 *   - our checkpoint (llm_model_save): round trip, truncated, corrupted header bytes;
 *   - token files (llm_dataset_open): valid, truncated, wrong magic/version, a count
 *     larger than the file;
 *   - llm_model_forward: token ids >= V or < 0, targets >= V, T > maxT, B or T <= 0. */
#include "test.h"
#include "llm.h"
#include <sys/stat.h>
#include <unistd.h>

/* The tiny model every file here holds. C is not a multiple of 8, V not of Vp. */
#define TL 1
#define TNH 2
#define TC 6
#define TV 11
#define TMAXT 8
#define TVP 16

static char tmpdir[256];
static char made[64][320];  /* files created, removed at the end */
static int n_made;

static const char *tpath(const char *name) {
    static char buf[4][320];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 320, "%s/%s", tmpdir, name);
    int seen = 0;
    for (int i = 0; i < n_made; i++) if (strcmp(made[i], p) == 0) seen = 1;
    if (!seen && n_made < 64) strcpy(made[n_made++], p);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n, "cannot write %s", path);
    fclose(f);
}

static unsigned char *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = (unsigned char *)malloc(len > 0 ? (size_t)len : 1);
    if (p && fread(p, 1, (size_t)len, f) != (size_t)len) { free(p); p = NULL; }
    fclose(f);
    if (p) *n = (size_t)len;
    return p;
}

/* A failed load: an error status of the allowed kind, a message, and no model. */
static void expect_load_fails(const char *what, const char *path, int want_format) {
    llm_model *m = (llm_model *)(void *)&m;  /* not NULL: the loader must set it */
    llm_status s = llm_model_load(&m, path, NULL);
    const char *e = llm_last_error();
    if (want_format)
        CHECK(s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED,
              "%s: status %d (%s), want a format error; message '%s'", what, (int)s, llm_status_string(s), e);
    else
        CHECK(s != LLM_OK, "%s: loaded, want an error", what);
    CHECK(e && e[0], "%s: no error message", what);
    if (s != LLM_OK) {
        CHECK(m == NULL, "%s: *out not NULL after a failure", what);
        printf("  %-44s -> %s\n", what, e);
    } else if (m != (llm_model *)(void *)&m) {
        llm_model_free(m);
    }
}

static llm_config tiny_cfg(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = TMAXT; c.vocab_size = TV; c.n_layer = TL; c.n_head = TNH; c.n_embd = TC;
    return c;
}

/* ---- a tiny safetensors writer ----------------------------------------------------------- */
/* Entries keep their JSON fields as text, so a test can make any of them lie. */
typedef struct { char name[64], dtype[16], shape[64], offsets[64]; } st_entry;
typedef struct {
    st_entry e[32]; int n;
    unsigned char data[65536]; size_t len;
    int bf16;
} st_file;

static uint16_t f32_to_bf16(float x) {  /* round to nearest even, as torch does */
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Adds tensor `name` from src, a (d0, d1) row-major block in the library's layout
 * (d1 == 0: a vector). transpose stores it as (d1, d0), HF Conv1D's (in, out). */
static void st_add(st_file *f, const char *name, const float *src, int d0, int d1, int transpose) {
    st_entry *e = &f->e[f->n++];
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1), es = f->bf16 ? 2 : 4, begin = f->len;
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->dtype, sizeof e->dtype, "%s", f->bf16 ? "BF16" : "F32");
    if (d1 == 0) snprintf(e->shape, sizeof e->shape, "[%d]", d0);
    else if (transpose) snprintf(e->shape, sizeof e->shape, "[%d,%d]", d1, d0);
    else snprintf(e->shape, sizeof e->shape, "[%d,%d]", d0, d1);
    for (size_t k = 0; k < n; k++) {
        size_t i = k;
        if (d1 && transpose) {  /* stored element (r, c) of (d1, d0) is src[c][r] */
            size_t r = k / (size_t)d0, c = k % (size_t)d0;
            i = c * (size_t)d1 + r;
        }
        if (f->bf16) {
            uint16_t h = f32_to_bf16(src[i]);
            memcpy(f->data + f->len, &h, 2);
        } else {
            memcpy(f->data + f->len, &src[i], 4);
        }
        f->len += es;
    }
    snprintf(e->offsets, sizeof e->offsets, "[%zu,%zu]", begin, begin + n * es);
}

/* The HF tensors of the tiny model whose library-layout parameters are p. */
static void st_build(st_file *f, const float *p, int bf16) {
    llm_config c = tiny_cfg();
    size_t off[LLM_NTENSORS], sz[LLM_NTENSORS];
    llm_tensor_layout(&c, off, sz);
    memset(f, 0, sizeof *f);
    f->bf16 = bf16;
    int C = TC;
    st_add(f, "wte.weight", p + off[0], TV, C, 0);
    st_add(f, "wpe.weight", p + off[1], TMAXT, C, 0);
    for (int l = 0; l < TL; l++) {
        char nm[64];
#define NM(s) (snprintf(nm, sizeof nm, "h.%d.%s", l, s), nm)
        st_add(f, NM("ln_1.weight"), p + off[2] + (size_t)l * C, C, 0, 0);
        st_add(f, NM("ln_1.bias"), p + off[3] + (size_t)l * C, C, 0, 0);
        st_add(f, NM("attn.c_attn.weight"), p + off[4] + (size_t)l * 3 * C * C, 3 * C, C, 1);
        st_add(f, NM("attn.c_attn.bias"), p + off[5] + (size_t)l * 3 * C, 3 * C, 0, 0);
        st_add(f, NM("attn.c_proj.weight"), p + off[6] + (size_t)l * C * C, C, C, 1);
        st_add(f, NM("attn.c_proj.bias"), p + off[7] + (size_t)l * C, C, 0, 0);
        st_add(f, NM("ln_2.weight"), p + off[8] + (size_t)l * C, C, 0, 0);
        st_add(f, NM("ln_2.bias"), p + off[9] + (size_t)l * C, C, 0, 0);
        st_add(f, NM("mlp.c_fc.weight"), p + off[10] + (size_t)l * 4 * C * C, 4 * C, C, 1);
        st_add(f, NM("mlp.c_fc.bias"), p + off[11] + (size_t)l * 4 * C, 4 * C, 0, 0);
        st_add(f, NM("mlp.c_proj.weight"), p + off[12] + (size_t)l * 4 * C * C, C, 4 * C, 1);
        st_add(f, NM("mlp.c_proj.bias"), p + off[13] + (size_t)l * C, C, 0, 0);
#undef NM
    }
    st_add(f, "ln_f.weight", p + off[14], C, 0, 0);
    st_add(f, "ln_f.bias", p + off[15], C, 0, 0);
}

static st_entry *st_find(st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++) if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
    return NULL;
}

/* The file's bytes: 8-byte header length, the JSON header, the data. `header` replaces
 * the generated JSON when not NULL; hlen_override replaces the length field when nonzero. */
static unsigned char *st_bytes(const st_file *f, const char *header, uint64_t hlen_override, size_t *n) {
    static char json[16384];
    if (!header) {
        size_t k = 0;
        k += (size_t)snprintf(json + k, sizeof json - k, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (int i = 0; i < f->n; i++)
            k += (size_t)snprintf(json + k, sizeof json - k, ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":%s}",
                                  f->e[i].name, f->e[i].dtype, f->e[i].shape, f->e[i].offsets);
        snprintf(json + k, sizeof json - k, "}");
        header = json;
    }
    size_t hl = strlen(header);
    unsigned char *b = (unsigned char *)malloc(8 + hl + f->len);
    uint64_t h = hlen_override ? hlen_override : (uint64_t)hl;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    memcpy(b + 8, header, hl);
    memcpy(b + 8 + hl, f->data, f->len);
    *n = 8 + hl + f->len;
    return b;
}

static void st_write(const st_file *f, const char *path, const char *header, uint64_t hlen_override) {
    size_t n;
    unsigned char *b = st_bytes(f, header, hlen_override, &n);
    write_file(path, b, n);
    free(b);
}

static void write_config(const char *dir_file, int n_head) {
    char json[256];
    snprintf(json, sizeof json, "{\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"vocab_size\": %d,"
             " \"n_positions\": %d, \"model_type\": \"gpt2\"}\n", TL, n_head, TC, TV, TMAXT);
    write_file(dir_file, json, strlen(json));
}

/* ---- llm.c's .bin ------------------------------------------------------------------------- */
/* 256 int32 header [magic 20240326, version, maxT, V, L, NH, C, Vp], then the parameters in
 * the library's (= llm.c's) order with wte padded to Vp rows; fp32 (3) or bf16 (5). */
static unsigned char *llmc_bytes(const float *p, size_t np, int version, size_t *n) {
    size_t es = version == 5 ? 2 : 4, pad = (size_t)(TVP - TV) * TC;
    unsigned char *b = (unsigned char *)calloc(1, 1024 + (np + pad) * es);
    int32_t h[256];
    memset(h, 0, sizeof h);
    h[0] = 20240326; h[1] = version; h[2] = TMAXT; h[3] = TV; h[4] = TL; h[5] = TNH; h[6] = TC; h[7] = TVP;
    memcpy(b, h, sizeof h);
    size_t k = 1024, nwte = (size_t)TV * TC;
    for (size_t i = 0; i < np + pad; i++) {
        /* padding rows hold junk (llm.c writes zeros) that must never be read as weights */
        float x = i < nwte ? p[i] : i < nwte + pad ? 7.0f : p[i - pad];
        if (es == 2) { uint16_t u = f32_to_bf16(x); memcpy(b + k, &u, 2); }
        else memcpy(b + k, &x, 4);
        k += es;
    }
    *n = k;
    return b;
}

/* ---- helpers to run the models ------------------------------------------------------------- */
static void tiny_batch(int *tok, int *tgt, int B, int T) {
    for (int i = 0; i < B * T; i++) { tok[i] = (i * 7 + 3) % TV; tgt[i] = (i * 5 + 1) % TV; }
    tok[1] = TV - 1;
    tgt[2] = -1;  /* ignored */
}

/* Logits (B,T,V) of model m on the tiny batch; returns 0 on failure. */
static int logits_of(llm_model *m, float *out, float *loss) {
    int tok[2 * 5], tgt[2 * 5];
    tiny_batch(tok, tgt, 2, 5);
    llm_status s = llm_model_forward(m, tok, tgt, 2, 5, loss);
    CHECK(s == LLM_OK, "forward: %s", llm_last_error());
    if (s != LLM_OK) return 0;
    CHECK(llm_model_get_logits(m, out) == LLM_OK, "get_logits: %s", llm_last_error());
    return 1;
}

/* Loads path; its logits must equal ref bit for bit (same float weights, same kernels). */
static void expect_same_logits(const char *what, const char *path, const float *ref, float ref_loss) {
    llm_model *m = NULL;
    llm_status s = llm_model_load(&m, path, NULL);
    CHECK(s == LLM_OK, "%s: load failed: %s", what, llm_last_error());
    if (s != LLM_OK) return;
    llm_config c = llm_model_config(m);
    CHECK(c.n_layer == TL && c.n_head == TNH && c.n_embd == TC && c.vocab_size == TV && c.max_seq_len == TMAXT,
          "%s: config L%d NH%d C%d V%d maxT%d", what, c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.max_seq_len);
    float lg[2 * 5 * TV], loss = -1;
    if (logits_of(m, lg, &loss)) {
        CHECK(memcmp(lg, ref, sizeof lg) == 0, "%s: logits differ from the in-memory model's (max rel %.3g)",
              what, test_max_rel_err(lg, ref, 2 * 5 * TV, 1e-3));
        CHECK(loss == ref_loss, "%s: loss %.9g, in-memory %.9g", what, loss, ref_loss);
    }
    llm_model_free(m);
}

/* ---- the cases ------------------------------------------------------------------------------- */
static float P[100000];        /* parameters of the tiny model, library layout */
static float PB[100000];       /* the same rounded to bf16 */
static size_t NP;

static void make_params(void) {
    llm_config c = tiny_cfg();
    size_t off[LLM_NTENSORS], sz[LLM_NTENSORS];
    llm_tensor_layout(&c, off, sz);
    NP = off[15] + sz[15];
    llm_rng r;
    llm_rng_seed(&r, 99);
    for (size_t i = 0; i < NP; i++) P[i] = 0.3f * llm_rng_normal(&r);
    for (size_t i = off[2]; i < off[2] + sz[2]; i++) P[i] += 1.0f;   /* ln1w near 1 */
    for (size_t i = off[8]; i < off[8] + sz[8]; i++) P[i] += 1.0f;   /* ln2w */
    for (size_t i = off[14]; i < off[14] + sz[14]; i++) P[i] += 1.0f; /* lnfw */
    for (size_t i = 0; i < NP; i++) PB[i] = bf16_to_f32(f32_to_bf16(P[i]));
}

/* Reference logits from a model built in memory with llm_model_set_params. */
static int ref_logits(const float *params, float *lg, float *loss) {
    llm_config c = tiny_cfg();
    llm_model *m = NULL;
    llm_status s = llm_model_create(&m, &c, NULL, 1);
    CHECK(s == LLM_OK, "create: %s", llm_last_error());
    if (s != LLM_OK) return 0;
    CHECK(llm_model_num_params(m) == NP, "num_params %zu, layout says %zu", llm_model_num_params(m), NP);
    CHECK(llm_model_set_params(m, params) == LLM_OK, "set_params: %s", llm_last_error());
    int ok = logits_of(m, lg, loss);
    llm_model_free(m);
    return ok;
}

static void test_safetensors(void) {
    static st_file f, g;
    float ref[2 * 5 * TV], refb[2 * 5 * TV], loss, lossb;
    if (!ref_logits(P, ref, &loss) || !ref_logits(PB, refb, &lossb)) return;
    write_config(tpath("config.json"), TNH);
    const char *good = tpath("good.safetensors");

    st_build(&f, P, 0);
    st_write(&f, good, NULL, 0);
    expect_same_logits("safetensors F32", good, ref, loss);
    st_build(&g, P, 1);
    st_write(&g, tpath("good_bf16.safetensors"), NULL, 0);
    expect_same_logits("safetensors BF16", tpath("good_bf16.safetensors"), refb, lossb);

    /* Truncated anywhere: in the length, in the JSON, at the data start, in the data. */
    size_t n;
    unsigned char *b = st_bytes(&f, NULL, 0, &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    size_t cuts[] = {0, 1, 4, 7, 8, 9, 20, (size_t)hl / 2, (size_t)hl + 7, (size_t)hl + 8, (size_t)hl + 9,
                     (size_t)hl + 8 + 100, n / 2, n - 4, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "safetensors cut at %zu of %zu", cuts[i], n);
        write_file(tpath("cut.safetensors"), b, cuts[i]);
        expect_load_fails(what, tpath("cut.safetensors"), 1);
    }
    /* The header length field lies. */
    b[0] = (unsigned char)(n & 255); b[1] = (unsigned char)((n >> 8) & 255); b[2] = (unsigned char)(n >> 16);
    write_file(tpath("bad.safetensors"), b, n);
    expect_load_fails("safetensors header length = file size", tpath("bad.safetensors"), 1);
    free(b);
    st_write(&f, tpath("bad.safetensors"), NULL, (uint64_t)1 << 60);
    expect_load_fails("safetensors header length 2^60", tpath("bad.safetensors"), 1);
    st_write(&f, tpath("bad.safetensors"), NULL, ~(uint64_t)0);
    expect_load_fails("safetensors header length 2^64-1", tpath("bad.safetensors"), 1);

    /* Not JSON, or not the JSON expected. */
    const char *bad_json[] = {
        "{\"wte.weight\": {", "[1,2,3]", "{}", "not json at all", "{\"wte.weight\": 5}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [11, 6]}}",
        "{\"wte.weight\": {\"dtype\": 7, \"shape\": [11, 6], \"data_offsets\": [0, 264]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": \"11x6\", \"data_offsets\": [0, 264]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [11, 6], \"data_offsets\": [0]}}",
    };
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "safetensors bad JSON #%zu", i);
        st_write(&f, tpath("bad.safetensors"), bad_json[i], 0);
        expect_load_fails(what, tpath("bad.safetensors"), 1);
    }

    /* JSON that lies. Each case edits one field of a fresh copy. */
    struct { const char *what, *tensor; int field; const char *text; } lies[] = {
        {"wte shape [12,6] (config says V=11)", "wte.weight", 0, "[12,6]"},
        {"wte shape [11,7] (config says C=6)", "wte.weight", 0, "[11,7]"},
        {"wte shape [66] (1-D)", "wte.weight", 0, "[66]"},
        {"wte shape [11,6,1] (3-D)", "wte.weight", 0, "[11,6,1]"},
        {"c_fc shape transposed [24,6]", "h.0.mlp.c_fc.weight", 0, "[24,6]"},
        {"ln_f shape [5] (bytes for 6)", "ln_f.weight", 0, "[5]"},
        {"wte shape [2^40,2^40] (product overflows)", "wte.weight", 0, "[1099511627776,1099511627776]"},
        {"wte shape [-11,-6]", "wte.weight", 0, "[-11,-6]"},
        {"wte shape [11.5,6]", "wte.weight", 0, "[11.5,6]"},
        {"ln_f offsets past the end", "ln_f.bias", 1, NULL},
        {"offsets overlapping", "wpe.weight", 1, "[0,192]"},
        {"offsets negative", "wte.weight", 1, "[-264,0]"},
        {"offsets reversed", "wte.weight", 1, "[264,0]"},
        {"offsets huge", "wte.weight", 1, "[18446744073709551000,18446744073709551264]"},
        {"dtype unknown", "wte.weight", 2, "X17"},
        {"dtype I32 (not a float)", "h.0.ln_1.weight", 2, "I32"},
        {"dtype F64 for a 4-byte tensor", "ln_f.bias", 2, "F64"},
        {"dtype empty", "wpe.weight", 2, ""},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        g = f;
        st_entry *e = st_find(&g, lies[i].tensor);
        if (!e) { CHECK(0, "no tensor %s", lies[i].tensor); continue; }
        if (lies[i].field == 0) snprintf(e->shape, sizeof e->shape, "%s", lies[i].text);
        else if (lies[i].field == 2) snprintf(e->dtype, sizeof e->dtype, "%s", lies[i].text);
        else if (lies[i].text) snprintf(e->offsets, sizeof e->offsets, "%s", lies[i].text);
        else snprintf(e->offsets, sizeof e->offsets, "[%zu,%zu]", g.len - 4 * TC + 8, g.len + 8);
        char what[96];
        snprintf(what, sizeof what, "safetensors %s", lies[i].what);
        st_write(&g, tpath("bad.safetensors"), NULL, 0);
        expect_load_fails(what, tpath("bad.safetensors"), 1);
    }

    /* Missing tensors: each one in turn. The message should name it. */
    for (int i = 0; i < f.n; i++) {
        g = f;
        char name[64];
        strcpy(name, g.e[i].name);
        g.e[i] = g.e[--g.n];
        st_write(&g, tpath("bad.safetensors"), NULL, 0);
        char what[96];
        snprintf(what, sizeof what, "safetensors without %s", name);
        expect_load_fails(what, tpath("bad.safetensors"), 1);
        CHECK(strstr(llm_last_error(), name) != NULL || strstr(llm_last_error(), strchr(name, '.') + 1) != NULL,
              "missing %s: the message '%s' does not name it", name, llm_last_error());
    }
    /* A tensor given twice (JSON duplicate key). */
    g = f;
    g.e[g.n] = g.e[0];
    g.n++;
    st_write(&g, tpath("bad.safetensors"), NULL, 0);
    {
        llm_model *m = NULL;
        llm_status s = llm_model_load(&m, tpath("bad.safetensors"), NULL);
        CHECK(s == LLM_OK || llm_last_error()[0], "duplicate tensor: failed without a message");
        printf("  %-44s -> %s\n", "safetensors wte.weight twice", s == LLM_OK ? "accepted" : llm_last_error());
        llm_model_free(m);
    }

    /* config.json that cannot be: n_head does not divide n_embd, or is not JSON. */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/cfg", tmpdir);
    CHECK(test_mkdir(sub) == 0, "mkdir %s", sub);
    write_config(tpath("cfg/config.json"), 4);  /* 6 % 4 != 0 */
    st_write(&f, tpath("cfg/model.safetensors"), NULL, 0);
    expect_load_fails("config.json n_head 4, n_embd 6", tpath("cfg/model.safetensors"), 0);
    write_file(tpath("cfg/config.json"), "{\"n_layer\": 1, \"n_head\": ", 24);
    expect_load_fails("config.json not JSON", tpath("cfg/model.safetensors"), 0);
    /* config.json disagreeing with tensors that are consistent among themselves. */
    const char *disagree[] = {
        "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 6, \"vocab_size\": 10, \"n_positions\": 8}",
        "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 6, \"vocab_size\": 11, \"n_positions\": 9}",
        "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 8, \"vocab_size\": 11, \"n_positions\": 8}",
        "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": -6, \"vocab_size\": 11, \"n_positions\": 8}",
        "{\"n_layer\": 1, \"n_head\": 2.5, \"n_embd\": 6, \"vocab_size\": 11, \"n_positions\": 8}",
        "{\"n_layer\": 1, \"n_head\": 2, \"n_embd\": 6, \"vocab_size\": 1e300, \"n_positions\": 8}",
    };
    for (size_t i = 0; i < sizeof disagree / sizeof disagree[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "config.json disagreeing #%zu", i);
        write_file(tpath("cfg/config.json"), disagree[i], strlen(disagree[i]));
        expect_load_fails(what, tpath("cfg/model.safetensors"), 0);
    }
    const char *two = "{\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 6, \"vocab_size\": 11, \"n_positions\": 8}";
    write_file(tpath("cfg/config.json"), two, strlen(two));
    expect_load_fails("config.json n_layer 2, file has 1", tpath("cfg/model.safetensors"), 0);
}

static void test_llmc(void) {
    float ref[2 * 5 * TV], refb[2 * 5 * TV], loss, lossb;
    if (!ref_logits(P, ref, &loss) || !ref_logits(PB, refb, &lossb)) return;
    size_t n;
    unsigned char *b = llmc_bytes(P, NP, 3, &n);
    write_file(tpath("gpt2.bin"), b, n);
    expect_same_logits("llm.c .bin v3 (fp32)", tpath("gpt2.bin"), ref, loss);
    /* Same weights from .bin and safetensors give the same logits, bit for bit. */
    expect_same_logits("safetensors F32 vs .bin", tpath("good.safetensors"), ref, loss);

    for (size_t cut = 0; cut < n; cut += cut < 1100 ? 37 : 997) {
        char what[64];
        snprintf(what, sizeof what, "llm.c .bin cut at %zu of %zu", cut, n);
        write_file(tpath("cut.bin"), b, cut);
        expect_load_fails(what, tpath("cut.bin"), 1);
    }
    write_file(tpath("cut.bin"), b, n - 1);
    expect_load_fails("llm.c .bin one byte short", tpath("cut.bin"), 1);

    struct { const char *what; int idx; int32_t v; } bad[] = {
        {"llm.c .bin wrong magic", 0, 20240327}, {"llm.c .bin version 4", 1, 4},
        {"llm.c .bin version 2", 1, 2}, {"llm.c .bin maxT 0", 2, 0},
        {"llm.c .bin V -1", 3, -1}, {"llm.c .bin L 0", 4, 0}, {"llm.c .bin NH 4 (C=6)", 5, 4},
        {"llm.c .bin NH 0", 5, 0}, {"llm.c .bin C 2^30", 6, 1 << 30}, {"llm.c .bin Vp < V", 7, 10},
        {"llm.c .bin L 2^30", 4, 1 << 30}, {"llm.c .bin V 2^31-1", 3, 2147483647},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *c = (unsigned char *)malloc(n);
        memcpy(c, b, n);
        memcpy(c + 4 * bad[i].idx, &bad[i].v, 4);
        write_file(tpath("bad.bin"), c, n);
        expect_load_fails(bad[i].what, tpath("bad.bin"), 1);
        free(c);
    }
    free(b);

    b = llmc_bytes(P, NP, 5, &n);
    write_file(tpath("gpt2_bf16.bin"), b, n);
    expect_same_logits("llm.c .bin v5 (bf16)", tpath("gpt2_bf16.bin"), refb, lossb);
    write_file(tpath("cut.bin"), b, n - 2);
    expect_load_fails("llm.c .bin v5 one value short", tpath("cut.bin"), 1);
    write_file(tpath("cut.bin"), b, 1024);
    expect_load_fails("llm.c .bin v5 header only", tpath("cut.bin"), 1);
    free(b);
}

static void test_checkpoint(void) {
    float ref[2 * 5 * TV], loss;
    if (!ref_logits(P, ref, &loss)) return;
    llm_config c = tiny_cfg();
    llm_model *m = NULL;
    if (llm_model_create(&m, &c, NULL, 5) != LLM_OK) { CHECK(0, "create: %s", llm_last_error()); return; }
    llm_model_set_params(m, P);
    const char *plain = tpath("plain.ckpt"), *full = tpath("full.ckpt");
    CHECK(llm_model_save(m, plain, 0, NULL) == LLM_OK, "save: %s", llm_last_error());
    expect_same_logits("checkpoint, weights only", plain, ref, loss);
    {   /* no optimizer state in it */
        llm_model *m2 = NULL;
        if (llm_model_load(&m2, plain, NULL) == LLM_OK) {
            llm_train_state ts;
            llm_status s = llm_model_load_train_state(m2, plain, &ts);
            CHECK(s == LLM_ERR_FORMAT && llm_last_error()[0],
                  "load_train_state on a weights-only checkpoint: %d, want LLM_ERR_FORMAT", (int)s);
        }
        llm_model_free(m2);
    }
    /* One step so that there are AdamW moments, then a full checkpoint. */
    int tok[10], tgt[10];
    tiny_batch(tok, tgt, 2, 5);
    llm_adamw_config oc = llm_adamw_config_default();
    CHECK(llm_model_forward(m, tok, tgt, 2, 5, NULL) == LLM_OK, "forward: %s", llm_last_error());
    CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s",
          llm_last_error());
    CHECK(llm_model_step(m, &oc, 1e-2f, NULL) == LLM_OK, "step: %s", llm_last_error());
    llm_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.step = 1; ts.rng[0] = 0x1234; ts.rng[1] = 0x5678; ts.cursor = 3; ts.epoch = 2;
    CHECK(llm_model_save(m, full, 1, &ts) == LLM_OK, "save with optimizer: %s", llm_last_error());
    float after[2 * 5 * TV], loss_after;
    logits_of(m, after, &loss_after);
    llm_model_free(m);
    expect_same_logits("checkpoint with optimizer", full, after, loss_after);
    {
        llm_model *m2 = NULL;
        llm_train_state ts2;
        memset(&ts2, 0xAB, sizeof ts2);
        CHECK(llm_model_load(&m2, full, NULL) == LLM_OK, "load: %s", llm_last_error());
        if (m2) {
            CHECK(llm_model_load_train_state(m2, full, &ts2) == LLM_OK, "load_train_state: %s", llm_last_error());
            CHECK(memcmp(&ts, &ts2, sizeof ts) == 0, "train state differs after the round trip");
            CHECK(llm_model_step_count(m2) == 1, "step count %d after load, want 1", llm_model_step_count(m2));
        }
        llm_model_free(m2);
    }

    /* Truncated: every cut must fail to load, or (a cut in the optimizer part) load the
     * weights and then refuse the train state. Never crash. */
    size_t n;
    unsigned char *b = read_whole(full, &n);
    CHECK(b != NULL && n > 0, "cannot read back %s", full);
    if (!b) return;
    size_t cuts[] = {0, 1, 4, 8, 16, 64, 100, 256, 1000, 1023, 1024, 1025, n / 3, n / 2, 2 * n / 3, n - 8, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] >= n) continue;
        char what[64];
        snprintf(what, sizeof what, "checkpoint cut at %zu of %zu", cuts[i], n);
        write_file(tpath("cut.ckpt"), b, cuts[i]);
        llm_model *m2 = NULL;
        llm_status s = llm_model_load(&m2, tpath("cut.ckpt"), NULL);
        if (s == LLM_OK) {
            llm_train_state t2;
            s = llm_model_load_train_state(m2, tpath("cut.ckpt"), &t2);
            CHECK(s != LLM_OK, "%s: loaded the weights and the train state", what);
            llm_model_free(m2);
        } else {
            CHECK(m2 == NULL, "%s: *out not NULL after a failure", what);
        }
        CHECK(s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED, "%s: status %d, want a format error", what, (int)s);
        CHECK(llm_last_error()[0], "%s: no message", what);
        printf("  %-44s -> %s\n", what, llm_last_error());
    }
    /* Corrupted magic; then every byte of the first 64 flipped in turn: an error or a
     * successful load, never a crash (ASan/UBSan watch). */
    unsigned char *cb = (unsigned char *)malloc(n);
    memcpy(cb, b, n);
    cb[0] ^= 0xFF; cb[1] ^= 0x55;
    write_file(tpath("bad.ckpt"), cb, n);
    expect_load_fails("checkpoint with a corrupted magic", tpath("bad.ckpt"), 1);
    int loaded = 0, refused = 0;
    for (size_t i = 0; i < 64 && i < n; i++) {
        memcpy(cb, b, n);
        cb[i] ^= 0x80;
        write_file(tpath("bad.ckpt"), cb, n);
        llm_model *m2 = NULL;
        llm_status s = llm_model_load(&m2, tpath("bad.ckpt"), NULL);
        if (s == LLM_OK) {
            llm_train_state t2;
            float lg[2 * 5 * TV];
            loaded++;
            (void)llm_model_load_train_state(m2, tpath("bad.ckpt"), &t2);
            llm_config lc = llm_model_config(m2);
            if (memcmp(&lc, &c, sizeof c) == 0) (void)logits_of(m2, lg, NULL);  /* lg fits */
        } else {
            refused++;
            CHECK(m2 == NULL && llm_last_error()[0], "flipped byte %zu: no message or *out set", i);
        }
        llm_model_free(m2);
    }
    CHECK(refused > 0, "no flipped header byte was detected");
    printf("  checkpoint, one header byte flipped: %d refused, %d loaded (64 tries)\n", refused, loaded);
    free(cb);
    free(b);
}

static void write_tokens_raw(const char *path, int32_t magic, int32_t version, int32_t count, int ntok) {
    size_t n = 1024 + (size_t)ntok * 2;
    unsigned char *b = (unsigned char *)calloc(1, n);
    int32_t h[3] = {magic, version, count};
    memcpy(b, h, sizeof h);
    for (int i = 0; i < ntok; i++) { uint16_t t = (uint16_t)(i * 31 % 50257); memcpy(b + 1024 + 2 * i, &t, 2); }
    write_file(path, b, n);
    free(b);
}

static void expect_dataset_fails(const char *what, const char *path) {
    llm_dataset *d = (llm_dataset *)(void *)&d;
    llm_status s = llm_dataset_open(&d, path);
    CHECK(s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED, "%s: status %d, want a format error", what, (int)s);
    CHECK(llm_last_error()[0], "%s: no message", what);
    if (s != LLM_OK) {
        CHECK(d == NULL, "%s: *out not NULL after a failure", what);
        printf("  %-44s -> %s\n", what, llm_last_error());
    } else {
        llm_dataset_close(d);
    }
}

static void test_dataset(void) {
    int toks[100];
    for (int i = 0; i < 100; i++) toks[i] = (i * 977) % 65536;
    const char *p = tpath("tokens.bin");
    CHECK(llm_dataset_write(p, toks, 100) == LLM_OK, "dataset_write: %s", llm_last_error());
    llm_dataset *d = NULL;
    CHECK(llm_dataset_open(&d, p) == LLM_OK, "dataset_open: %s", llm_last_error());
    if (d) {
        CHECK(llm_dataset_len(d) == 100, "dataset length %zu, want 100", llm_dataset_len(d));
        const uint16_t *t = llm_dataset_tokens(d);
        int same = 1;
        for (int i = 0; i < 100 && t; i++) if (t[i] != toks[i]) same = 0;
        CHECK(t && same, "dataset tokens differ from what was written");
        /* A loader needs at least one (B, T+1) window per batch. */
        llm_loader l;
        memset(&l, 0, sizeof l);
        llm_status s = llm_loader_init(&l, d, 0, 0, 4, 64, 0, 1);
        CHECK(s != LLM_OK && llm_last_error()[0], "loader over 100 tokens with B=4, T=64 accepted");
        if (s == LLM_OK) llm_loader_free(&l);
        memset(&l, 0, sizeof l);
        s = llm_loader_init(&l, d, 50, 20, 1, 4, 0, 1);
        CHECK(s != LLM_OK, "loader with begin > end accepted");
        if (s == LLM_OK) llm_loader_free(&l);
        memset(&l, 0, sizeof l);
        s = llm_loader_init(&l, d, 0, 1000, 1, 4, 0, 1);
        CHECK(s != LLM_OK, "loader with end past the dataset accepted");
        if (s == LLM_OK) llm_loader_free(&l);
    }
    llm_dataset_close(d);
    int big[2] = {5, 65536};
    CHECK(llm_dataset_write(tpath("big.bin"), big, 2) != LLM_OK, "dataset_write accepted token 65536");
    big[1] = -1;
    CHECK(llm_dataset_write(tpath("big.bin"), big, 2) != LLM_OK, "dataset_write accepted token -1");

    size_t n;
    unsigned char *b = read_whole(p, &n);
    CHECK(b && n == 1024 + 200, "token file is %zu bytes, want 1224", n);
    if (b) {
        size_t cuts[] = {0, 3, 12, 500, 1023, 1024 + 199};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char what[64];
            snprintf(what, sizeof what, "token file cut at %zu of %zu", cuts[i], n);
            write_file(tpath("cut.bin"), b, cuts[i]);
            expect_dataset_fails(what, tpath("cut.bin"));
        }
        free(b);
    }
    write_tokens_raw(tpath("bad.bin"), 20240326, 1, 100, 100);
    expect_dataset_fails("token file with a model's magic", tpath("bad.bin"));
    write_tokens_raw(tpath("bad.bin"), 20240520, 2, 100, 100);
    expect_dataset_fails("token file version 2", tpath("bad.bin"));
    write_tokens_raw(tpath("bad.bin"), 20240520, 1, 101, 100);
    expect_dataset_fails("token file count 101, 100 tokens", tpath("bad.bin"));
    write_tokens_raw(tpath("bad.bin"), 20240520, 1, 2147483647, 100);
    expect_dataset_fails("token file count 2^31-1", tpath("bad.bin"));
    write_tokens_raw(tpath("bad.bin"), 20240520, 1, -5, 100);
    expect_dataset_fails("token file count -5", tpath("bad.bin"));
    llm_dataset *d2 = NULL;
    CHECK(llm_dataset_open(&d2, tpath("does_not_exist.bin")) == LLM_ERR_IO && d2 == NULL,
          "a missing token file: want LLM_ERR_IO");
    llm_dataset_close(d2);
}

static void expect_forward_fails(llm_model *m, const char *what, const int *tok, const int *tgt, int B, int T) {
    float loss = 0;
    llm_status s = llm_model_forward(m, tok, tgt, B, T, &loss);
    CHECK(s == LLM_ERR_ARG, "%s: status %d (%s), want LLM_ERR_ARG", what, (int)s, llm_status_string(s));
    CHECK(llm_last_error()[0], "%s: no message", what);
    printf("  %-44s -> %s\n", what, llm_last_error());
}

static void test_forward_args(void) {
    llm_config c = tiny_cfg();
    llm_model *m = NULL;
    if (llm_model_create(&m, &c, NULL, 3) != LLM_OK) { CHECK(0, "create: %s", llm_last_error()); return; }
    int tok[2 * (TMAXT + 1)], tgt[2 * (TMAXT + 1)];
    for (int i = 0; i < 2 * (TMAXT + 1); i++) { tok[i] = i % TV; tgt[i] = (i + 1) % TV; }
    float loss;
    CHECK(llm_model_forward(m, tok, tgt, 2, TMAXT, &loss) == LLM_OK, "forward at T = maxT: %s", llm_last_error());
    int tok5 = tok[5], tgt3 = tgt[3];
    tok[5] = TV;
    expect_forward_fails(m, "forward with token id = V", tok, tgt, 2, 4);
    expect_forward_fails(m, "forward with token id = V, no targets", tok, NULL, 2, 4);
    tok[5] = -1;
    expect_forward_fails(m, "forward with token id -1", tok, tgt, 2, 4);
    tok[5] = 2147483647;
    expect_forward_fails(m, "forward with token id 2^31-1", tok, tgt, 2, 4);
    tok[5] = tok5;
    tgt[3] = TV;
    expect_forward_fails(m, "forward with target = V", tok, tgt, 2, 4);
    tgt[3] = tgt3;
    expect_forward_fails(m, "forward with T = maxT + 1", tok, tgt, 2, TMAXT + 1);
    expect_forward_fails(m, "forward with T = 0", tok, tgt, 2, 0);
    expect_forward_fails(m, "forward with B = 0", tok, tgt, 0, 4);
    expect_forward_fails(m, "forward with B = -1", tok, tgt, -1, 4);
    expect_forward_fails(m, "forward with T = -3", tok, tgt, 2, -3);
    expect_forward_fails(m, "forward with NULL tokens", NULL, tgt, 2, 4);
    /* After the refusals the model still works and gives the same loss. */
    float loss2 = -1;
    CHECK(llm_model_forward(m, tok, tgt, 2, TMAXT, &loss2) == LLM_OK && loss2 == loss,
          "forward after refused calls: loss %.9g, before %.9g", loss2, loss);
    /* Backward with no forward of a fresh model: a state error, not a crash. */
    llm_model *m2 = NULL;
    if (llm_model_create(&m2, &c, NULL, 3) == LLM_OK) {
        llm_status s = llm_model_backward(m2, 1.0f);
        CHECK(s == LLM_ERR_STATE, "backward before forward: status %d, want LLM_ERR_STATE", (int)s);
        CHECK(llm_model_forward(m2, tok, NULL, 2, 4, NULL) == LLM_OK, "forward without targets: %s",
              llm_last_error());
        s = llm_model_backward(m2, 1.0f);
        CHECK(s != LLM_OK && llm_last_error()[0], "backward after a forward without targets: accepted");
    }
    llm_model_free(m2);
    llm_model_free(m);
    /* Impossible shapes for create. */
    int bad[][5] = {{TMAXT, TV, TL, 4, TC}, {TMAXT, TV, 0, TNH, TC}, {0, TV, TL, TNH, TC},
                    {TMAXT, 0, TL, TNH, TC}, {TMAXT, TV, TL, 0, TC}, {TMAXT, TV, TL, TNH, -6}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        llm_config b = llm_config_gpt2();
        b.max_seq_len = bad[i][0]; b.vocab_size = bad[i][1]; b.n_layer = bad[i][2];
        b.n_head = bad[i][3]; b.n_embd = bad[i][4];
        llm_model *mb = (llm_model *)(void *)&mb;
        llm_status s = llm_model_create(&mb, &b, NULL, 1);
        CHECK(s == LLM_ERR_ARG && mb == NULL && llm_last_error()[0],
              "create with maxT %d V %d L %d NH %d C %d: status %d, want LLM_ERR_ARG", b.max_seq_len,
              b.vocab_size, b.n_layer, b.n_head, b.n_embd, (int)s);
        if (s == LLM_OK) llm_model_free(mb);
    }
}

int main(void) {
    if (!test_make_tmpdir(tmpdir, sizeof tmpdir, "llm_test_formats")) {
        CHECK(0, "cannot make a temporary directory");
        return TEST_END("test_formats");
    }
    (void)test_data_dir;
    make_params();
    {
        llm_model *m = (llm_model *)(void *)&m;
        llm_status s = llm_model_load(&m, tpath("does_not_exist.safetensors"), NULL);
        CHECK(s == LLM_ERR_IO && m == NULL && llm_last_error()[0], "missing file: status %d, want LLM_ERR_IO",
              (int)s);
        write_file(tpath("empty.safetensors"), "", 0);
        expect_load_fails("empty file", tpath("empty.safetensors"), 1);
        write_file(tpath("text.safetensors"), "hello, world, this is not a model\n", 34);
        expect_load_fails("a text file", tpath("text.safetensors"), 1);
    }
    test_safetensors();
    test_llmc();
    test_checkpoint();
    test_dataset();
    test_forward_args();
    for (int i = n_made - 1; i >= 0; i--) {
        remove(made[i]);
        char tmp[330];
        snprintf(tmp, sizeof tmp, "%s.tmp", made[i]);
        remove(tmp);
    }
    char sub[300];
    snprintf(sub, sizeof sub, "%s/cfg", tmpdir);
    test_rmdir(sub);
    CHECK(test_rmdir(tmpdir) == 0, "temp dir %s not empty at the end", tmpdir);
    return TEST_END("test_formats");
}
