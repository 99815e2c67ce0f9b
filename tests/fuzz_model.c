/* fuzz_model: the model loaders on untrusted bytes (see tests/fuzz.h for how it is built).
 *
 * Modes (FUZZ_MODE; one libFuzzer binary each: `make fuzz`), all through
 * llm_model_load_memory (the same loaders llm_model_load runs on a mapped file):
 *   0 fuzz_safetensors  HF safetensors: the input is "config.json NUL safetensors"; the
 *                       config goes through the loader's config.json parser, then the
 *                       safetensors loader as llm_model_load calls it with a config.json
 *                       beside the file (no NUL: llm_model_load_memory, which takes the
 *                       shape from the tensors)
 *   1 fuzz_llmc         llm.c's .bin (versions 3 and 5): the first 4 bytes are set to its
 *                       magic, so that every input reaches that loader
 *   2 fuzz_llama2c      llama2.c's .bin (no magic: a plausible header is one)
 *   3 fuzz_ckpt         our checkpoint (the magic set as for 1), then its optimizer and
 *                       training state, as train_gpt2 --resume restores them
 *   4 (replay only)     every corpus as it is, through the format detection
 * Invariants: a load that fails says so with
 * LLM_ERR_FORMAT or LLM_ERR_UNSUPPORTED, a message and no model, and never allocates
 * for a shape the bytes do not hold (LLM_ERR_NOMEM, or libFuzzer's malloc limit, would
 * be a finding); a model that loads runs a forward, a backward and an AdamW step (which
 * refuses a non-finite gradient, as weights from the file may be inf or NaN); a
 * checkpoint's training state is refused or accepted by the loader cleanly. */
#include "fuzz.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static const fuzz_corpus fuzz_corpora[] = {
    {"safetensors", 0}, {"llmc", 1}, {"llama2c", 2}, {"ckpt", 3},
    {"safetensors", 4}, {"llmc", 4}, {"llama2c", 4}, {"ckpt", 4}, {NULL, 0}};

static void failed_cleanly(llm_status s, const llm_model *m) {
    fuzz_check(m == NULL);
    fuzz_check(s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED);
    fuzz_check(llm_last_error()[0] != 0);
}

/* A model that loaded: one training step on a tiny batch, when the model is small. */
static void exercise(llm_model *m) {
    llm_config c = llm_model_config(m);
    if (llm_model_num_params(m) > (1u << 20) || c.vocab_size > 4096) return;
    int T = c.max_seq_len < 3 ? c.max_seq_len : 3, tok[3], tgt[3];
    for (int t = 0; t < T; t++) { tok[t] = (t * 7 + 1) % c.vocab_size; tgt[t] = (t * 5 + 2) % c.vocab_size; }
    float loss = 0, norm = 0;
    llm_adamw_config oc = llm_adamw_config_default();
    fuzz_check(llm_model_forward(m, tok, tgt, 1, T, &loss) == LLM_OK);
    fuzz_check(llm_model_zero_grad(m) == LLM_OK);
    fuzz_check(llm_model_backward(m, 1.0f) == LLM_OK);
    llm_status s = llm_model_step(m, &oc, 1e-3f, &norm);
    fuzz_check(s == LLM_OK || (s == LLM_ERR_ARG && !isfinite(norm)));   /* weights from the file may be inf/NaN */
}

/* A checkpoint's training state: restored into the model, then handed to a data loader
 * as train_gpt2 --resume does (a position past the data is refused, not followed). */
static void resume(llm_model *m, const llm__map *mp) {
    llm_train_state ts;
    memset(&ts, 0, sizeof ts);
    llm_status s = llm__load_train_state(m, mp, "(memory)", &ts);
    if (s != LLM_OK) { fuzz_check(s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED); return; }
    static uint16_t file[512 + 64];   /* a token file: header, then 64 tokens */
    static llm_dataset *d;
    if (!d) {
        memset(file, 0, sizeof file);
        uint32_t hdr[3] = {20240520u, 1u, 64u};
        memcpy(file, hdr, sizeof hdr);
        for (int i = 0; i < 64; i++) file[512 + i] = (uint16_t)(i % 3);
        fuzz_check(llm_dataset_open_memory(&d, file, sizeof file) == LLM_OK);
    }
    llm_loader l;
    fuzz_check(llm_loader_init(&l, d, 0, 0, 2, 4, 1, 7) == LLM_OK);
    s = llm_loader_set_state(&l, &ts);
    fuzz_check(s == LLM_OK || s == LLM_ERR_ARG);
    int in[8], tg[8];
    if (s == LLM_OK)
        for (int i = 0; i < 3; i++) {
            fuzz_check(llm_loader_next(&l, in, tg) == LLM_OK);
            for (int j = 0; j < 8; j++) fuzz_check(in[j] >= 0 && in[j] < 3 && tg[j] >= 0 && tg[j] < 3);
        }
    llm_loader_free(&l);
}

static int fuzz_one(int mode, const uint8_t *data, size_t size) {
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;
    llm_model *m = NULL;
    llm__map mp;
    llm_status s;
    llm__map_memory(&mp, data, size);
    uint8_t *copy = NULL;   /* mode 1, 3: the input with the format's magic */
    const uint8_t *z = mode == 0 ? (const uint8_t *)memchr(data, 0, size) : NULL;
    if (z) {   /* config.json, then the safetensors loader, as llm_model_load with a config.json */
        llm_config c;
        s = llm__hf_config_parse((const char *)data, (size_t)(z - data), "(memory)/config.json", &c);
        if (s != LLM_OK) { fuzz_check(s == LLM_ERR_FORMAT && llm_last_error()[0]); return 0; }
        llm__map_memory(&mp, z + 1, size - (size_t)(z + 1 - data));
        s = llm__load_safetensors(&m, &mp, "(memory)", &c, &opt);
    } else {
        if ((mode == 1 && size >= 4) || (mode == 3 && size >= 8)) {
            copy = (uint8_t *)malloc(size);
            memcpy(copy, data, size);
            if (mode == 1) { const uint8_t magic[4] = {0xc6, 0xd7, 0x34, 0x01}; memcpy(copy, magic, 4); }   /* 20240326 */
            else memcpy(copy, "LLMHCKPT", 8);
            data = copy;
            llm__map_memory(&mp, data, size);
        }
        m = (llm_model *)(void *)&opt;   /* not NULL: a failed load must clear it */
        s = llm_model_load_memory(&m, data, size, &opt);
    }
    if (s != LLM_OK) { failed_cleanly(s, m); free(copy); return 0; }
    fuzz_check(m != NULL);
    if (mode == 3) resume(m, &mp);
    exercise(m);
    llm_model_free(m);
    free(copy);
    return 0;
}

FUZZ_MAIN("fuzz_model")
