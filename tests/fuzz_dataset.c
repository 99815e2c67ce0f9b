/* fuzz_dataset: llm.c token files and the batch loader on untrusted bytes (see
 * tests/fuzz.h for how it is built).
 *
 * The input is a token file, opened with llm_dataset_open_memory (the same header
 * checks as llm_dataset_open on a mapped file). When it opens, header bytes the format
 * leaves unused pick a loader (B, T, shuffle, seed, token range) and a saved loader
 * state (as a checkpoint would restore it); the loader must refuse what does not fit
 * (LLM_ERR_ARG) and otherwise serve batches whose targets are the inputs shifted by one,
 * every token read from inside the file, across epoch boundaries. */
#include "fuzz.h"
#include "llm.h"

static const fuzz_corpus fuzz_corpora[] = {{"dataset", 0}, {NULL, 0}};

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int fuzz_one(int mode, const uint8_t *data, size_t size) {
    (void)mode;
    /* an aligned copy: the caller's buffer may start anywhere */
    uint16_t *buf = (uint16_t *)malloc(size / 2 * 2 + 2);
    uint8_t *p = (uint8_t *)buf;
    memcpy(p, data, size);
    llm_dataset *d = (llm_dataset *)(void *)buf;
    llm_status s = llm_dataset_open_memory(&d, p, size);
    if (s != LLM_OK) {
        fuzz_check(d == NULL && (s == LLM_ERR_FORMAT || s == LLM_ERR_UNSUPPORTED) && llm_last_error()[0]);
        free(buf);
        return 0;
    }
    size_t n = llm_dataset_len(d);
    fuzz_check(n <= (size - 1024) / 2);
    const uint16_t *tok = llm_dataset_tokens(d);
    fuzz_check((const uint8_t *)tok == p + 1024);
    /* the loader's parameters from header bytes 12..63, which the format does not use */
    int B = 1 + p[12] % 5, T = 1 + p[13] % 17, shuffle = p[14] & 1;
    size_t begin = (size_t)(rd64(p + 16) % (n + 2)), end = (size_t)(rd64(p + 24) % (n + 2));
    llm_loader l;
    s = llm_loader_init(&l, d, begin, end, B, T, shuffle, rd64(p + 32));
    if (s == LLM_OK) {
        size_t bt = (size_t)B * (size_t)T, e = end ? end : n;
        int *in = (int *)malloc(bt * sizeof(int)), *tg = (int *)malloc(bt * sizeof(int));
        fuzz_check(l.n_batches >= 1 && begin < e && e <= n);
        for (size_t k = 0; k < 2 * l.n_batches + 1 && k < 40; k++) {
            fuzz_check(llm_loader_next(&l, in, tg) == LLM_OK);
            for (size_t i = 0; i < bt; i++) if (i % (size_t)T + 1 < (size_t)T) fuzz_check(tg[i] == in[i + 1]);
        }
        llm_train_state ts;
        llm_loader_get_state(&l, &ts);
        fuzz_check(llm_loader_set_state(&l, &ts) == LLM_OK);
        ts.rng[0] = rd64(p + 40); ts.rng[1] = rd64(p + 48); ts.cursor = rd64(p + 56); ts.epoch = p[60];
        s = llm_loader_set_state(&l, &ts);   /* a hostile saved state */
        fuzz_check(s == LLM_OK || s == LLM_ERR_ARG);
        if (s == LLM_OK)
            for (int k = 0; k < 3; k++) fuzz_check(llm_loader_next(&l, in, NULL) == LLM_OK);
        free(in); free(tg);
        llm_loader_free(&l);
    } else {
        fuzz_check(s == LLM_ERR_ARG && llm_last_error()[0]);
    }
    llm_dataset_close(d);
    free(buf);
    return 0;
}

FUZZ_MAIN("fuzz_dataset")
