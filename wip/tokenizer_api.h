/* ---- GPT-2 tokenizer ------------------------------------------------------------------- */
/* Byte-level BPE, byte-exact with OpenAI's GPT-2 encoder (encoder.py / tiktoken "gpt2"):
 * text is split by GPT-2's pre-tokenizer pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (\s = Unicode White_Space), each piece is merged by rank, and ids come from the
 * vocabulary. Any bytes can be encoded: a byte that is not part of valid UTF-8 counts
 * as one "other" character, so decode(encode(x)) == x for every byte string x.
 *
 * A loaded tokenizer is immutable: every function below that takes a const
 * llm_tokenizer * may be called from any number of threads at once. Encoding keeps
 * its pre-token cache per call, so there is no shared mutable state. */
typedef struct llm_tokenizer llm_tokenizer;

/* Load a vocabulary. path is a file or a directory:
 *   directory: tokenizer.json, else encoder.json + vocab.bpe, else vocab.json + merges.txt;
 *   tokenizer.json (HF single file: model.vocab, model.merges as "a b" or ["a","b"],
 *     added_tokens);
 *   encoder.json or vocab.json (any *.json that is not a tokenizer.json): the merges
 *     are read from vocab.bpe or merges.txt in the same directory.
 * `<|endoftext|>` (and added_tokens marked special) become special tokens.
 * On success *out owns the tokenizer (free with llm_tokenizer_free); on failure *out is
 * NULL and llm_last_error() names the file and the problem (LLM_ERR_IO, LLM_ERR_FORMAT,
 * LLM_ERR_NOMEM). */
LLMDEF llm_status llm_tokenizer_load(llm_tokenizer **out, const char *path);
/* The same from memory. With merges != NULL, vocab is an encoder.json/vocab.json
 * object and merges a vocab.bpe/merges.txt text; with merges == NULL, vocab is a
 * tokenizer.json. The buffers are only read during the call (need not be NUL-ended). */
LLMDEF llm_status llm_tokenizer_load_memory(llm_tokenizer **out, const char *vocab,
                                            size_t vocab_len, const char *merges,
                                            size_t merges_len);
LLMDEF void llm_tokenizer_free(llm_tokenizer *tok);            /* accepts NULL */

/* V: one more than the largest id (50257 for GPT-2). */
LLMDEF int llm_tokenizer_vocab_size(const llm_tokenizer *tok);
/* The id of <|endoftext|>, or -1 when the vocabulary has none. */
LLMDEF int llm_tokenizer_eot(const llm_tokenizer *tok);
/* The bytes of token id (not NUL-terminated; *len receives the count), owned by the
 * tokenizer. NULL when id is out of range or unused. */
LLMDEF const char *llm_tokenizer_token(const llm_tokenizer *tok, int id, size_t *len);
/* The id of the token whose bytes are s[0..len), or -1. */
LLMDEF int llm_tokenizer_find(const llm_tokenizer *tok, const char *s, size_t len);

/* Encoding flags. */
#define LLM_TOKENIZE_SPECIAL 1  /* recognise special tokens (<|endoftext|>) in the text;
                                   without it they are ordinary text */

/* Encode text[0..len) (any bytes) into ids[0..cap). *n_ids receives the number of ids.
 * A token never covers less than one byte, so cap >= len always suffices. If cap is too
 * small, ids holds the first cap ids, *n_ids the full count, and LLM_ERR_ARG is
 * returned. Allocates scratch memory (LLM_ERR_NOMEM possible); thread-safe. */
LLMDEF llm_status llm_tokenizer_encode(const llm_tokenizer *tok, const char *text, size_t len,
                                       int flags, int *ids, size_t cap, size_t *n_ids);
/* The same, spreading a long text over the threads of pool (NULL: single thread). The
 * text is cut only between an ASCII non-space byte and a space, where the pre-tokenizer
 * provably starts a new piece, so the ids equal llm_tokenizer_encode's exactly. The
 * pool must not be in use by another thread during the call. */
LLMDEF llm_status llm_tokenizer_encode_pool(const llm_tokenizer *tok, llm_pool *pool,
                                            const char *text, size_t len, int flags, int *ids,
                                            size_t cap, size_t *n_ids);

/* Decode ids[0..n) into out[0..cap) (the raw bytes, no NUL). *n_out receives the
 * byte count; with out == NULL and cap == 0 only the count is computed. LLM_ERR_ARG on
 * an unknown id or when cap is too small (out then holds what fit). Thread-safe. */
LLMDEF llm_status llm_tokenizer_decode(const llm_tokenizer *tok, const int *ids, size_t n,
                                       char *out, size_t cap, size_t *n_out);

/* Streaming decoder for printing tokens as they are generated: it emits only whole
 * UTF-8 characters and holds back the first bytes of a character that a later token
 * completes. Bytes that can never become valid UTF-8 are passed through unchanged, so
 * the concatenated output (with the final flush) equals llm_tokenizer_decode's.
 * One stream per output; plain struct, no allocation. */
typedef struct llm_tokenizer_stream {
    const llm_tokenizer *tok;
    unsigned char pending[4];  /* start of an incomplete UTF-8 character */
    int n_pending;             /* 0..3 */
} llm_tokenizer_stream;
LLMDEF void llm_tokenizer_stream_init(llm_tokenizer_stream *s, const llm_tokenizer *tok);
/* Append token id; writes the complete characters to out[0..cap) and their count to
 * *n_out. cap >= llm_tokenizer_max_token_len(tok) + 3 always suffices. LLM_ERR_ARG on an
 * unknown id or too small cap (the stream is then unchanged). */
LLMDEF llm_status llm_tokenizer_stream_put(llm_tokenizer_stream *s, int id, char *out,
                                           size_t cap, size_t *n_out);
/* End of stream: writes the held-back bytes (at most 3) to out and returns their count. */
LLMDEF size_t llm_tokenizer_stream_flush(llm_tokenizer_stream *s, char out[4]);
/* The length in bytes of the longest token. */
LLMDEF size_t llm_tokenizer_max_token_len(const llm_tokenizer *tok);
