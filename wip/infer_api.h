/* ---- inference: KV cache ---------------------------------------------------------------
 * An inference session over a model: a key/value cache for S independent sequences of up
 * to maxT positions each, separate from the training activations (a model can train and
 * serve at once). Each forward call takes n rows, row i being the next token of sequence
 * seq[i]; its keys and values are stored in the cache and it attends to everything its
 * sequence holds. One call prefills a whole prompt (its rows in order), or advances
 * several sequences by one token each (batched decoding), or any mix.
 * Memory: 2 * L * S * maxT * NKV*HS floats of cache, plus scratch for max_rows rows.
 * Not thread-safe: one session is used by one thread at a time (it shares the model's
 * backend state, so neither may run another call meanwhile). */
typedef struct llm_kv llm_kv;

/* n_seq >= 1 sequences; max_len positions per sequence (0 or > the model's context: the
 * model's max_seq_len); max_rows rows per internal forward chunk (0: 256; longer inputs
 * are split into chunks). The model must outlive the session. *out is NULL on failure. */
LLMDEF llm_status llm_kv_create(llm_kv **out, llm_model *m, int n_seq, int max_len, int max_rows);
LLMDEF void llm_kv_free(llm_kv *kv);                    /* accepts NULL */
LLMDEF int llm_kv_max_len(const llm_kv *kv);            /* maxT */
LLMDEF int llm_kv_n_seq(const llm_kv *kv);              /* S */
/* Tokens held by sequence seq (0 for a bad seq), and those tokens (host memory owned by
 * the session, valid until the next call that changes it). */
LLMDEF int llm_kv_len(const llm_kv *kv, int seq);
LLMDEF const int *llm_kv_tokens(const llm_kv *kv, int seq);
/* Forget sequence seq (seq < 0: all). Nothing is freed; the positions are reused. */
LLMDEF void llm_kv_clear(llm_kv *kv, int seq);
/* Drop the last n tokens of sequence seq (n > its length: all). Rewinding is free: the
 * cached keys beyond the new length are simply overwritten later. */
LLMDEF void llm_kv_truncate(llm_kv *kv, int seq, int n);
/* Forward n rows: row i is token tokens[i] appended to sequence seq[i] (seq may be NULL:
 * all rows go to sequence 0). Rows of one sequence must come in order; rows of different
 * sequences may interleave. want (n flags) selects the rows whose logits are returned:
 * logits (count of wanted rows, V), in row order. want NULL: every row, or none when
 * logits is NULL too (a prefill that only fills the cache). Everything is validated before anything changes: a bad seq or
 * token, or a sequence that would exceed max_len ("context full"), gives LLM_ERR_ARG and
 * leaves the session as it was. */
LLMDEF llm_status llm_kv_forward(llm_kv *kv, const int *seq, const int *tokens, int n,
                                 const unsigned char *want, float *logits);

/* ---- inference: generation ----------------------------------------------------------- */
/* The bytes of token id when it follows prev_id (prev_id -1 at the start of a text),
 * written to buf[0, cap); returns the full length (which may exceed cap; then the piece
 * is truncated). Ready-made ones for both tokenizers follow. */
typedef size_t (*llm_piece_fn)(void *ud, int prev_id, int id, char *buf, size_t cap);
/* ud: a const llm_tokenizer * (GPT-2: the token's bytes, which may be part of a UTF-8
 * character) / a const llm_llama_tokenizer * (llm_llama_tokenizer_decode: after BOS the
 * leading space is dropped; <0xXX> is the raw byte). Unknown ids give 0 bytes. */
LLMDEF size_t llm_piece_gpt2(void *ud, int prev_id, int id, char *buf, size_t cap);
LLMDEF size_t llm_piece_llama(void *ud, int prev_id, int id, char *buf, size_t cap);

/* Called once per generated token. item: the index in the batch (0 for llm_generate);
 * id the token; text[0, len) the bytes that became final with it (its piece when there
 * are no stop strings; with stop strings, bytes that might begin a stop string are held
 * back and come with a later token, and the stop string itself never comes); NULL/0
 * without a piece function. logprob: see llm_sampler_sample. A final call with id -1
 * delivers held-back bytes when generation ends for another reason than a stop string.
 * Return non-zero to stop this item. */
typedef int (*llm_token_fn)(void *ud, int item, int id, const char *text, size_t len,
                            float logprob);

/* Why an item stopped. */
typedef enum llm_finish {
    LLM_FINISH_NONE = 0,     /* still running (never returned) */
    LLM_FINISH_LENGTH = 1,   /* max_new_tokens generated, or the output array is full */
    LLM_FINISH_TOKEN = 2,    /* the stop token was sampled (it is not part of the output) */
    LLM_FINISH_STOP = 3,     /* a stop string appeared (the token completing it is output) */
    LLM_FINISH_CALLBACK = 4, /* the token callback returned non-zero */
    LLM_FINISH_CONTEXT = 5   /* the sequence reached max_len and slide_window is off */
} llm_finish;

/* Start from llm_generate_config_default() (a zeroed struct would stop at id 0). */
typedef struct llm_generate_config {
    int max_new_tokens;          /* <= 0: until another condition stops it (or the output
                                    array is full) */
    llm_sampler_config sampler;  /* zero: greedy. Item i of a batch uses seed + i */
    int stop_token;              /* an id that ends generation (GPT-2: <|endoftext|>; run.c
                                    stops at BOS = 1); < 0: none. NOTE: 0 is a valid id, so
                                    use llm_generate_config_default() (-1) */
    const char *const *stops;    /* n_stops stop strings (need `piece`) */
    int n_stops;
    llm_piece_fn piece;          /* decodes ids for stop strings and the callback; may be NULL */
    void *piece_ud;
    llm_token_fn on_token;       /* may be NULL */
    void *on_token_ud;
    int slide_window;            /* 1: when a sequence is full keep its last max_len/2
                                    tokens and re-prefill them (positions restart), instead
                                    of stopping with LLM_FINISH_CONTEXT */
} llm_generate_config;
/* max_new_tokens 256, greedy, stop_token -1, no stop strings, no callbacks, no sliding. */
LLMDEF llm_generate_config llm_generate_config_default(void);

/* Timing of a generation call (added up over the batch). */
typedef struct llm_generate_stats {
    int prefill_tokens;       /* prompt rows forwarded (re-prefills of a slide included) */
    double prefill_seconds;
    int decode_tokens;        /* rows forwarded one token per sequence per step */
    double decode_seconds;    /* everything after the prefill: sampling, callbacks, decode */
    int generated;            /* tokens output */
} llm_generate_stats;

/* Continue sequence seq of the session: append prompt[0, n_prompt) (n_prompt >= 1; the
 * sequence may already hold tokens, e.g. an earlier turn), then sample up to
 * max_new_tokens ids into out[0, cap), *n_out of them. The cache then holds the prompt
 * and every output id except the last (sampled from the final logits and never fed
 * back): to continue the sequence, pass that id first in the next prompt.
 * finish (may be NULL) receives why it stopped, stats (may be NULL) the timing.
 * Errors: bad arguments, a prompt that does not fit in max_len (unless slide_window,
 * which then keeps the prompt's last max_len/2 tokens), sampler errors. */
LLMDEF llm_status llm_generate(llm_kv *kv, int seq, const int *prompt, int n_prompt,
                               const llm_generate_config *cfg, int *out, int cap, int *n_out,
                               llm_finish *finish, llm_generate_stats *stats);
/* The same for n items at once, sharing every forward: item i continues sequence seqs[i]
 * (distinct; NULL: item i uses sequence i) with prompts[i][0, n_prompts[i]) and writes
 * outs[i][0, caps[i]), n_outs[i]. All prompts are prefilled in one forward; then each step
 * forwards one row per item still running; an item that stops drops out (continuous
 * batching in small). Item i samples with seed cfg->sampler.seed + i, and gives what
 * llm_generate gives with that seed (up to the float rounding of a batched matmul, which
 * adds in another order than a single row's). finish (n, may be NULL). */
LLMDEF llm_status llm_generate_batch(llm_kv *kv, int n, const int *seqs,
                                     const int *const *prompts, const int *n_prompts,
                                     const llm_generate_config *cfg, int *const *outs,
                                     const int *caps, int *n_outs, llm_finish *finish,
                                     llm_generate_stats *stats);
