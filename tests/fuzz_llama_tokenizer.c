/* fuzz_llama_tokenizer: llama2.c's tokenizer.bin on untrusted bytes (see tests/fuzz.h for
 * how it is built).
 *
 * The first byte picks vocab_size (below 128: 0, read every token; else 259 + (byte - 128),
 * which the file must match exactly); the rest is the file, loaded with
 * llm_llama_tokenizer_load_memory (the same parser as llm_llama_tokenizer_load). A
 * failure is LLM_ERR_FORMAT with a message and no tokenizer. A tokenizer that loads
 * encodes text (the input's own bytes, with and without BOS/EOS; a vocabulary without the
 * byte tokens may refuse a byte with LLM_ERR_ARG): every id in [0, V),
 * never more than len + 3 of them, LLM_ERR_ARG with the needed count when the output is
 * too small; and every id decodes after every other. */
#include "fuzz.h"
#include "llm.h"

static const fuzz_corpus fuzz_corpora[] = {{"llama_tokenizer", 0}, {NULL, 0}};

static int fuzz_one(int mode, const uint8_t *data, size_t size) {
    (void)mode;
    if (size < 1) return 0;
    int vocab = data[0] < 128 ? 0 : 259 + (data[0] - 128);
    llm_llama_tokenizer *t = (llm_llama_tokenizer *)(void *)&vocab;
    llm_status s = llm_llama_tokenizer_load_memory(&t, data + 1, size - 1, vocab);
    if (s != LLM_OK) {
        fuzz_check(t == NULL && s == LLM_ERR_FORMAT && llm_last_error()[0]);
        return 0;
    }
    int V = llm_llama_tokenizer_vocab_size(t);
    fuzz_check(V >= 3 && (vocab == 0 || V == vocab));
    size_t len = size - 1 < 300 ? size - 1 : 300;
    const char *text = (const char *)data + 1;
    int cap = (int)len + 3, n = 0;
    int *ids = (int *)malloc((size_t)cap * sizeof(int));
    for (int be = 0; be < 4; be++) {
        llm_status e = llm_llama_tokenizer_encode(t, text, len, be & 1, be >> 1, ids, cap, &n);
        if (e == LLM_ERR_ARG && V < 259) continue;   /* no byte token for a byte: refused, with a message */
        fuzz_check(e == LLM_OK);
        fuzz_check(n >= 0 && n <= cap);
        for (int i = 0; i < n; i++) fuzz_check(ids[i] >= 0 && ids[i] < V);
        if (n > 1) {
            int need = 0;
            fuzz_check(llm_llama_tokenizer_encode(t, text, len, be & 1, be >> 1, ids, n - 1, &need) == LLM_ERR_ARG);
            fuzz_check(need == n);
        }
    }
    for (int i = 0; i < V && i < 600; i++) {
        size_t l = 0;
        fuzz_check(llm_llama_tokenizer_decode(t, i % 3 == 1 ? LLM_LLAMA_BOS : i - 1, i, &l) != NULL);
        fuzz_check(llm_llama_tokenizer_piece(t, i, &l) != NULL);
    }
    fuzz_check(llm_llama_tokenizer_decode(t, 0, V, NULL) == NULL && llm_llama_tokenizer_piece(t, -1, NULL) == NULL);
    free(ids);
    llm_llama_tokenizer_free(t);
    return 0;
}

FUZZ_MAIN("fuzz_llama_tokenizer")
