/* tests/ref.h: the models of the PyTorch references, rebuilt in C.
 *
 * tests/ref_*.py commit PyTorch's answers under tests/fixtures/<name>/ (logits, losses,
 * gradients, AdamW steps, greedy ids: see each script's docstring) but not the weights:
 * those come from a generator that both sides implement, and a fixture stores only the
 * recipe (model.txt: name, seed, scale, shift and shape of each tensor). Here the same
 * float32 weights are drawn again, bit for bit, and written in the file format under test
 * (HF safetensors F32/F16/BF16 with config.json, or llama2.c's .bin), so every model
 * still reaches the library through its loader. meta.json's params_fnv (FNV-1a of the
 * float32 parameters in the library's layout, computed by PyTorch's side) proves that
 * the generator, the writer here and the loader agree with PyTorch exactly.
 *
 *   u(seed, i) = (top 24 bits of splitmix64's output for the state seed*2^32 + i) * 2^-23 - 1
 *   value[i]   = float32(float32(u(seed, i) * scale) + shift)       (each op rounded)
 *
 * Include after llm.h. The files go to a temporary directory that is removed at exit
 * (test_make_tmpdir: POSIX and Windows). */
#ifndef LLM_TEST_REF_H
#define LLM_TEST_REF_H
#include "test.h"
#include <stdint.h>

/* ---- the generator ------------------------------------------------------------------ */
static inline float ref_u(uint64_t seed, uint64_t i) {
    uint64_t z = (seed << 32) + i + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)((double)(z >> 40) * (1.0 / 8388608.0) - 1.0);   /* exact: a multiple of 2^-23 */
}
static inline void ref_fill(float *dst, size_t n, uint64_t seed, float scale, float shift) {
    for (size_t i = 0; i < n; i++) {
        volatile float v = ref_u(seed, i) * scale;   /* rounded here: no fused multiply-add */
        dst[i] = v + shift;
    }
}

/* FNV-1a (64-bit) of n bytes, as tests/ref_common.py's fnv1a64. */
static inline uint64_t ref_fnv1a(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ULL; }
    return h;
}

/* ---- a model's recipe ------------------------------------------------------------------ */
typedef struct ref_tensor {
    char name[96];
    int ndim;
    long long shape[4];
    size_t n;
    float *data;
} ref_tensor;
typedef struct ref_model { int n; ref_tensor *t; } ref_model;

static inline void ref_model_free(ref_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) free(m->t[i].data);
    free(m->t);
    free(m);
}

/* The weights of fixture dir, drawn from its model.txt; NULL (with a failed check) if
 * the file is missing or malformed. */
static inline ref_model *ref_model_read(const char *dir) {
    size_t len = 0;
    char *text = test_read_fixture(dir, "model.txt", &len);
    CHECK(text != NULL, "%s/%s/model.txt: cannot read", test_fixtures_dir(), dir);
    if (!text) return NULL;
    ref_model *m = (ref_model *)calloc(1, sizeof *m);
    int cap = 0, ok = 1;
    for (char *line = strtok(text, "\n"); line && ok; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == 0) continue;
        if (m->n == cap) {
            cap = cap ? 2 * cap : 64;
            m->t = (ref_tensor *)realloc(m->t, (size_t)cap * sizeof *m->t);
        }
        ref_tensor *t = &m->t[m->n];
        memset(t, 0, sizeof *t);
        unsigned long long seed = 0;
        float scale = 0, shift = 0;
        int used = 0;
        ok = sscanf(line, "%95s %llu %f %f%n", t->name, &seed, &scale, &shift, &used) == 4;
        const char *p = line + used;
        t->n = 1;
        for (char *end; ok && t->ndim < 4; p = end) {
            long long d = strtoll(p, &end, 10);
            if (end == p) break;
            t->shape[t->ndim++] = d;
            t->n *= (size_t)d;
        }
        ok = ok && t->ndim > 0 && (t->data = (float *)malloc(t->n * sizeof(float))) != NULL;
        if (ok) { ref_fill(t->data, t->n, seed, scale, shift); m->n++; }
    }
    CHECK(ok && m->n > 0, "%s/model.txt: malformed recipe", dir);
    free(text);
    if (!ok || m->n == 0) { ref_model_free(m); return NULL; }
    return m;
}
static inline const ref_tensor *ref_find(const ref_model *m, const char *name) {
    for (int i = 0; i < m->n; i++) if (strcmp(m->t[i].name, name) == 0) return &m->t[i];
    return NULL;
}

/* ---- meta.json ---------------------------------------------------------------------- */
/* The string value of "key" in fixture dir's meta.json into buf ("" if absent). */
static inline const char *ref_meta_str(const char *dir, const char *key, char *buf, size_t cap) {
    char *text = test_read_fixture(dir, "meta.json", NULL), pat[64];
    buf[0] = 0;
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = text ? strstr(text, pat) : NULL;
    if (p) {
        p += strlen(pat);
        size_t n = 0;
        while (p[n] && p[n] != '"' && n + 1 < cap) { buf[n] = p[n]; n++; }
        buf[n] = 0;
    }
    free(text);
    return buf;
}
/* Up to cap integers of the array "key" in meta.json; returns how many. */
static inline int ref_meta_ints(const char *dir, const char *key, int *out, int cap) {
    char *text = test_read_fixture(dir, "meta.json", NULL), pat[64];
    snprintf(pat, sizeof pat, "\"%s\": [", key);
    const char *p = text ? strstr(text, pat) : NULL;
    int n = 0;
    if (p) {
        p += strlen(pat);
        for (char *end; n < cap; p = end) {
            while (*p == ' ' || *p == '\n' || *p == ',') p++;
            long v = strtol(p, &end, 10);
            if (end == p) break;
            out[n++] = (int)v;
        }
    }
    free(text);
    return n;
}

/* The parameters of m against meta.json's params_fnv: the loader's layout, checked
 * exactly. */
static inline void ref_check_params(llm_model *m, const char *dir, const char *what) {
    char want[32], got[32];
    ref_meta_str(dir, "params_fnv", want, sizeof want);
    size_t np = llm_model_num_params(m);
    float *p = (float *)malloc(np * sizeof(float));
    CHECK(p && llm_model_get_params(m, p) == LLM_OK, "%s: get_params: %s", what, llm_last_error());
    snprintf(got, sizeof got, "%016llx", p ? (unsigned long long)ref_fnv1a(p, np * sizeof(float)) : 0ULL);
    CHECK(want[0] && strcmp(want, got) == 0, "%s: parameters (FNV-1a %s) differ from PyTorch's (%s)", what, got,
          want[0] ? want : "absent from meta.json");
    free(p);
}

/* ---- temporary files ------------------------------------------------------------------ */
static char ref__tmpdir[512];
static char *ref__made[256];
static int ref__n_made;

static inline void ref__cleanup(void) {
    for (int i = ref__n_made - 1; i >= 0; i--) { remove(ref__made[i]); free(ref__made[i]); }
    ref__n_made = 0;
    if (ref__tmpdir[0]) test_rmdir(ref__tmpdir);
}
/* A path named rel in this process's temporary directory, removed at exit (as are the
 * directories made by ref_tmp_dir). */
static inline const char *ref_tmp_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    if (!ref__tmpdir[0]) {
        if (!test_make_tmpdir(ref__tmpdir, sizeof ref__tmpdir, "llm_ref")) { fprintf(stderr, "ref.h: no temporary directory\n"); exit(1); }
        atexit(ref__cleanup);
    }
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", ref__tmpdir, rel);
    int seen = 0;
    for (int i = 0; i < ref__n_made; i++) if (strcmp(ref__made[i], p) == 0) seen = 1;
    if (!seen && ref__n_made < 256) {
        ref__made[ref__n_made] = (char *)malloc(strlen(p) + 1);
        strcpy(ref__made[ref__n_made++], p);
    }
    return p;
}
static inline const char *ref_tmp_dir(const char *rel) {
    const char *p = ref_tmp_path(rel);
    test_mkdir(p);
    return p;
}

/* ---- writers ---------------------------------------------------------------------------- */
/* float -> IEEE half and bfloat16, rounding to nearest even (as numpy's astype("<f2")
 * and torch's .to(torch.bfloat16)). */
static inline uint16_t ref_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000, full = (u & 0x7fffff) | 0x800000;
    int e = (int)((u >> 23) & 0xff);
    if (e == 0xff) return (uint16_t)(sign | 0x7c00 | ((u & 0x7fffff) ? 0x200 : 0));
    int he = e - 127 + 15;                        /* the half's biased exponent */
    if (he >= 31) return (uint16_t)(sign | 0x7c00);
    if (e == 0 || he < -10) return (uint16_t)sign; /* below half the smallest subnormal */
    int shift = he > 0 ? 13 : 14 - he;            /* subnormal: value = m * 2^-24 */
    uint32_t m = full >> shift, rem = full & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (he > 0) m &= 0x3ff;
    if (rem > half || (rem == half && (m & 1))) m++;   /* a carry moves into the exponent */
    return (uint16_t)(sign | (he > 0 ? ((uint32_t)he << 10) + m : m));
}
static inline uint16_t ref_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);   /* NaN stays NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

enum { REF_F32 = 0, REF_F16 = 1, REF_BF16 = 2 };
static inline int ref__cmp_name(const void *a, const void *b) {
    return strcmp((*(const ref_tensor *const *)a)->name, (*(const ref_tensor *const *)b)->name);
}
static inline int ref__put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n; }

/* A safetensors file of the n tensors ts, in that order, stored as dtype (REF_F32/F16/
 * BF16), with {"format": "pt"} metadata. 0 on failure. */
static inline int ref_write_safetensors(const char *path, const ref_tensor *const *ts, int n, int dtype) {
    const char *dn = dtype == REF_F32 ? "F32" : dtype == REF_F16 ? "F16" : "BF16";
    size_t esz = dtype == REF_F32 ? 4 : 2, cap = 256 + (size_t)n * 200, h = 0, off = 0;
    char *hdr = (char *)malloc(cap);
    h += (size_t)snprintf(hdr + h, cap - h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        h += (size_t)snprintf(hdr + h, cap - h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", ts[i]->name, dn);
        for (int d = 0; d < ts[i]->ndim; d++) h += (size_t)snprintf(hdr + h, cap - h, "%s%lld", d ? "," : "", ts[i]->shape[d]);
        h += (size_t)snprintf(hdr + h, cap - h, "],\"data_offsets\":[%zu,%zu]}", off, off + ts[i]->n * esz);
        off += ts[i]->n * esz;
    }
    h += (size_t)snprintf(hdr + h, cap - h, "}");
    while (h % 8) hdr[h++] = ' ';   /* the data starts 8-aligned, as the safetensors library writes */
    FILE *f = fopen(path, "wb");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((unsigned long long)h >> (8 * i));
    int ok = f && ref__put(f, len8, 8) && ref__put(f, hdr, h);
    for (int i = 0; ok && i < n; i++) {
        const ref_tensor *t = ts[i];
        unsigned char *b = (unsigned char *)malloc(t->n * esz);
        for (size_t j = 0; b && j < t->n; j++) {
            uint32_t u;
            if (dtype == REF_F32) memcpy(&u, &t->data[j], 4);
            else u = dtype == REF_F16 ? ref_f16(t->data[j]) : ref_bf16(t->data[j]);
            for (size_t k = 0; k < esz; k++) b[j * esz + k] = (unsigned char)(u >> (8 * k));
        }
        ok = b && ref__put(f, b, t->n * esz);
        free(b);
    }
    if (f && fclose(f) != 0) ok = 0;
    free(hdr);
    CHECK(ok, "ref.h: cannot write %s", path);
    return ok;
}

/* llama2.c's .bin: the 7-int header, the recipe's tensors in order with the two RoPE
 * tables (zeros: the library ignores them, as run.c does) before wcls if present. */
static inline int ref_write_llama2c(const char *path, const ref_model *m, const int hdr[7]) {
    FILE *f = fopen(path, "wb");
    unsigned char h[28];
    for (int i = 0; i < 28; i++) h[i] = (unsigned char)((uint32_t)hdr[i / 4] >> (8 * (i % 4)));
    int ok = f && ref__put(f, h, 28);
    size_t rope = (size_t)hdr[6] * (size_t)(hdr[0] / hdr[3]);   /* two tables of maxT * HS/2 */
    for (int i = 0, roped = 0; ok && i <= m->n; i++) {
        if (!roped && (i == m->n || strcmp(m->t[i].name, "wcls") == 0)) {
            roped = 1;
            float *z = (float *)calloc(rope ? rope : 1, sizeof(float));
            ok = z && ref__put(f, z, rope * sizeof(float));
            free(z);
        }
        if (ok && i < m->n) ok = ref__put(f, m->t[i].data, m->t[i].n * sizeof(float));
    }
    if (f && fclose(f) != 0) ok = 0;
    CHECK(ok, "ref.h: cannot write %s", path);
    return ok;
}

/* ---- a fixture's model as a file ------------------------------------------------------ */
/* GPT-2 variants (flags): the dtype (REF_F16 or REF_BF16, else F32), and */
#define REF_PREFIX   4   /* "transformer." names, lm_head.weight (= wte), attn.masked_bias
                            scalars, tensors in reverse order */
#define REF_NOCONFIG 8   /* no config.json beside the file: the loader infers the shape */
#define REF_MASKS    16  /* the causal-mask buffers h.<l>.attn.bias (1,1,maxT,maxT) */

/* Writes the model of fixture dir in its format (meta.json "format": gpt2-safetensors or
 * llama2c) into a fresh temporary directory and returns the path to load (valid until
 * the next call), or NULL with a failed check. */
static inline const char *ref_model_file(const char *dir, int variant) {
    static char path[1024];
    static int serial;
    char fmt[64], sub[64], rel[128], wdir[64];
    ref_meta_str(dir, "format", fmt, sizeof fmt);
    ref_meta_str(dir, "weights", wdir, sizeof wdir);   /* a variant of another fixture's weights */
    ref_model *m = ref_model_read(wdir[0] ? wdir : dir);
    if (!m) return NULL;
    snprintf(sub, sizeof sub, "%s.%d", dir, serial++);
    ref_tmp_dir(sub);
    int ok = 0;
    if (strcmp(fmt, "llama2c") == 0) {
        int hdr[7];
        ok = ref_meta_ints(dir, "llama2c_header", hdr, 7) == 7;
        CHECK(ok, "%s/meta.json: no llama2c_header", dir);
        snprintf(rel, sizeof rel, "%s/model.bin", sub);
        snprintf(path, sizeof path, "%s", ref_tmp_path(rel));
        ok = ok && ref_write_llama2c(path, m, hdr);
    } else if (strcmp(fmt, "gpt2-safetensors") == 0) {
        int L = (int)test_meta_num(dir, "n_layer", 0), P = (int)test_meta_num(dir, "n_positions", 0);
        int extra = (variant & REF_MASKS ? L : 0) + (variant & REF_PREFIX ? L + 1 : 0), n = 0;
        const ref_tensor **ts = (const ref_tensor **)malloc((size_t)(m->n + extra) * sizeof *ts);
        ref_tensor *x = (ref_tensor *)calloc((size_t)extra + 1, sizeof *x);
        for (int i = 0; i < m->n; i++) ts[n++] = &m->t[i];
        for (int l = 0; variant & REF_MASKS && l < L; l++) {   /* tril(ones(P, P)) */
            ref_tensor *t = &x[l];
            snprintf(t->name, sizeof t->name, "h.%d.attn.bias", l);
            t->ndim = 4; t->shape[0] = t->shape[1] = 1; t->shape[2] = t->shape[3] = P;
            t->n = (size_t)P * P;
            t->data = (float *)calloc(t->n, sizeof(float));
            for (int r = 0; r < P; r++) for (int c = 0; c <= r; c++) t->data[(size_t)r * P + c] = 1.0f;
            ts[n++] = t;
        }
        for (int l = 0; variant & REF_PREFIX && l <= L; l++) {   /* masked_bias scalars, then lm_head */
            ref_tensor *t = &x[(variant & REF_MASKS ? L : 0) + l];
            if (l < L) {
                snprintf(t->name, sizeof t->name, "h.%d.attn.masked_bias", l);
                t->ndim = 0; t->n = 1;
                t->data = (float *)malloc(sizeof(float));
                t->data[0] = -1e4f;
            } else {
                const ref_tensor *wte = ref_find(m, "wte.weight");
                *t = *wte;
                snprintf(t->name, sizeof t->name, "lm_head.weight");
                t->data = (float *)malloc(t->n * sizeof(float));
                memcpy(t->data, wte->data, t->n * sizeof(float));
            }
            ts[n++] = t;
        }
        qsort(ts, (size_t)n, sizeof *ts, ref__cmp_name);   /* the alphabetical order of HF's files */
        if (variant & REF_PREFIX) {
            for (int i = 0; i < n; i++) {
                ref_tensor *t = (ref_tensor *)(void *)ts[i];   /* ours: the recipe is re-read for each file */
                char nm[96];
                if (strcmp(t->name, "lm_head.weight") == 0) continue;
                snprintf(nm, sizeof nm, "transformer.%.80s", t->name);   /* recipe names are short */
                strcpy(t->name, nm);
            }
            for (int i = 0; i < n / 2; i++) { const ref_tensor *t = ts[i]; ts[i] = ts[n - 1 - i]; ts[n - 1 - i] = t; }
        }
        snprintf(rel, sizeof rel, "%s/model.safetensors", sub);
        snprintf(path, sizeof path, "%s", ref_tmp_path(rel));
        ok = ref_write_safetensors(path, ts, n, variant & 3);
        if (ok && !(variant & REF_NOCONFIG)) {
            snprintf(rel, sizeof rel, "%s/config.json", sub);
            FILE *f = fopen(ref_tmp_path(rel), "wb");
            ok = f != NULL;
            if (f) {
                fprintf(f, "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, "
                           "\"vocab_size\": %d, \"n_positions\": %d, \"n_ctx\": %d, \"layer_norm_epsilon\": 1e-05, "
                           "\"activation_function\": \"gelu_new\"}\n", L, (int)test_meta_num(dir, "n_head", 0),
                        (int)test_meta_num(dir, "n_embd", 0), (int)test_meta_num(dir, "vocab_size", 0), P, P);
                ok = fclose(f) == 0;
            }
        }
        for (int i = 0; i < extra; i++) free(x[i].data);
        free(x); free(ts);
    } else {
        CHECK(0, "%s/meta.json: unknown format '%s'", dir, fmt);
    }
    ref_model_free(m);
    return ok ? path : NULL;
}
#endif
