/* wip/generate_api.h: work in progress, inlined into llm.h when done. */

/* ---- Llama tokenizer (llama2.c's tokenizer.bin) ------------------------------------- */
/* SentencePiece-style vocabulary in llama2.c's layout: int32 max_token_length, then per
 * token: float32 score, int32 length, `length` bytes (the piece, no NUL). Id 0 is <unk>,
 * 1 BOS, 2 EOS, 3..258 the byte pieces "<0x00>".."<0xFF>", then the merges.
 * Encoding and decoding follow llama2.c's run.c exactly (see llm_llama_tokenizer_encode).
 * Read-only after loading: one tokenizer may be used by several threads at once. */
typedef struct llm_llama_tokenizer llm_llama_tokenizer;
#define LLM_LLAMA_BOS 1
#define LLM_LLAMA_EOS 2

/* Load path. The file does not store the vocabulary size: vocab_size > 0 requires the
 * file to hold exactly that many tokens (a tokenizer that does not match the model is
 * an error); vocab_size == 0 reads tokens until the end of the file. Truncated or
 * inconsistent files give LLM_ERR_FORMAT naming the token. *out is NULL on failure. */
LLMDEF llm_status llm_llama_tokenizer_load(llm_llama_tokenizer **out, const char *path,
                                           int vocab_size);
LLMDEF void llm_llama_tokenizer_free(llm_llama_tokenizer *t);       /* accepts NULL */
LLMDEF int llm_llama_tokenizer_vocab_size(const llm_llama_tokenizer *t);
/* The raw piece of token id (NUL-terminated; *len its length, may be NULL) and its
 * merge score. NULL / 0 for an id outside [0, V). */
LLMDEF const char *llm_llama_tokenizer_piece(const llm_llama_tokenizer *t, int id, size_t *len);
LLMDEF float llm_llama_tokenizer_score(const llm_llama_tokenizer *t, int id);
/* Encode text[0, len) as run.c's encode(): optional BOS, the dummy-prefix piece " "
 * when the text is not empty, one piece per UTF-8 code point (bytes that are not in
 * the vocabulary fall back to the byte tokens, id = byte + 3), then repeated merges of
 * the adjacent pair whose concatenation is in the vocabulary with the highest score
 * (the leftmost on ties), optional EOS. At most len + 3 ids result; ids must have
 * room for max_ids of them (LLM_ERR_ARG if the result does not fit; *n_ids then holds
 * the number needed). Runs in O(n log n) for n code points. */
LLMDEF llm_status llm_llama_tokenizer_encode(const llm_llama_tokenizer *t, const char *text,
                                             size_t len, int bos, int eos, int *ids,
                                             int max_ids, int *n_ids);
/* The bytes token id stands for when it follows prev_id, as run.c's decode(): after
 * BOS a leading space is dropped (the dummy prefix); a "<0xXX>" piece is the raw byte.
 * Returns a pointer into the tokenizer (valid until it is freed), *len its length
 * (len may be NULL); NULL for an id outside [0, V). Note that run.c's safe_printf()
 * additionally skips one-byte results that are neither printable nor whitespace;
 * this function returns them (a UTF-8 character split into byte tokens needs them). */
LLMDEF const char *llm_llama_tokenizer_decode(const llm_llama_tokenizer *t, int prev_id, int id,
                                              size_t *len);

/* ---- sampling ------------------------------------------------------------------------ */
/* How the next token is chosen from the logits. Zero-initialised (or
 * llm_sampler_config_default()) means greedy: argmax, the first maximum on ties, no
 * randomness. Order of operations, on a private copy of the V logits:
 *   1. repetition penalty: for each distinct id in the previous ids,
 *      x = x > 0 ? x / penalty : x * penalty              (CTRL paper; HF transformers)
 *   2. temperature: temperature == 0 -> argmax, done; else x = x / temperature and
 *      p = softmax(x)
 *   3. top-k: keep the k largest p (ties: lower id first), p /= sum of those
 *   4. top-p: keep the shortest prefix of the candidates sorted by p (descending, ties:
 *      lower id first) whose cumulative p exceeds top_p, p /= that sum
 *   5. draw r = one uniform float from the sampler's RNG; return the first candidate
 *      whose cumulative p exceeds r.
 * With top_k off this is llama2.c's run.c sample() exactly (same float operations, the
 * same xorshift RNG, the same (1 - top_p)/(V - 1) pre-filter of the nucleus), so a seed
 * reproduces run.c's text; candidates are sorted with an explicit tie-break on the id
 * (run.c's qsort leaves ties to the C library), which makes results platform-independent.
 * (It departs from run.c only where run.c fails: see the SAMPLE section.) */
typedef struct llm_sampler_config {
    float temperature;         /* 0: greedy. Must be >= 0 */
    int top_k;                 /* <= 0 or >= V: off */
    float top_p;               /* <= 0 or >= 1: off (run.c's convention) */
    float repetition_penalty;  /* 0 or 1: off; > 1 discourages repeats (1.1..1.3 typical) */
    uint64_t seed;             /* initial xorshift state; 0 is replaced by a fixed non-zero
                                  constant (an all-zero xorshift state never changes) */
} llm_sampler_config;
LLMDEF llm_sampler_config llm_sampler_config_default(void);  /* all zero: greedy */

/* One sampler per generated sequence: it owns the RNG state and V-sized scratch, so
 * sampling never allocates. Not to be used by two threads at once; separate samplers
 * are independent. */
typedef struct llm_sampler llm_sampler;
/* cfg NULL means greedy. LLM_ERR_ARG for V < 1 or an invalid config (negative or NaN
 * temperature, negative penalty, NaN top_p). *out is NULL on failure. */
LLMDEF llm_status llm_sampler_create(llm_sampler **out, int vocab_size,
                                     const llm_sampler_config *cfg);
LLMDEF void llm_sampler_free(llm_sampler *s);                          /* accepts NULL */
/* Restart the RNG stream from seed (0: the same fixed constant as in the config). */
LLMDEF void llm_sampler_reseed(llm_sampler *s, uint64_t seed);
/* Choose the next token from logits (V), which are only read (the sampler works on its
 * own copy). prev (n_prev ids, may be NULL) are the ids the repetition penalty applies
 * to (e.g. the prompt and what was generated, or a window of the last ones); ignored
 * when the penalty is off. *out_id receives the id; out_logprob (may be NULL) receives
 * log p of that id under the final distribution of step 5 (after penalty, temperature,
 * top-k, top-p and renormalisation). For greedy, where that distribution is a point
 * mass, it is instead log softmax(x)[id] of the penalised logits at temperature 1, the
 * model's own probability of its choice. One RNG draw per call when temperature > 0,
 * none when greedy. Errors: LLM_ERR_ARG for a NaN or +inf logit, logits that are all
 * -inf, or a prev id outside [0, V). */
LLMDEF llm_status llm_sampler_sample(llm_sampler *s, const float *logits, const int *prev,
                                     int n_prev, int *out_id, float *out_logprob);

/* ---- stop strings -------------------------------------------------------------------- */
/* For streaming generation that must stop at user strings. Keep the text generated so
 * far in one buffer; after appending a token's bytes, call
 *   llm_stop_find(text, len, len_before_append, stops, n, &pos)
 * which looks for an occurrence of any stop string that ends after byte `from` (so
 * each byte is searched once, stop strings spanning tokens included). It returns the
 * index in stops of the earliest occurrence (the first listed on a tie), with *pos
 * (may be NULL) where it starts, so the text to keep is text[0, pos); -1 if none.
 * Empty and NULL stop strings never match. */
LLMDEF int llm_stop_find(const char *text, size_t len, size_t from, const char *const *stops,
                         int n_stops, size_t *pos);
/* The number of trailing bytes of text that begin some stop string without completing
 * one: a streaming caller prints text only up to len minus this, and holds the rest
 * back until the next token shows whether the stop string follows. */
LLMDEF size_t llm_stop_partial(const char *text, size_t len, const char *const *stops,
                               int n_stops);
