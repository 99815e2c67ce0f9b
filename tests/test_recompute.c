/* tests/test_recompute.c: activation recomputation (llm_options.recompute) changes the
 * memory, never the numbers.
 *
 * Whole training runs, with and without recompute, from the same weights on the same
 * batches: every loss, every gradient norm, every gradient (after each backward) and
 * the weights at the end are bit-identical (memcmp). Covered: GPT-2 full training with
 * gradient accumulation; a Llama (GQA, RoPE, SwiGLU); GPT-2 with LoRA adapters and
 * dropout (the adapters' kept products and the masks are made again too); and the KV
 * cache of a recomputing model generating what the other generates, and the logits
 * llm_model_get_logits gives (recompute keeps one chunk of them and makes them again).
 * The classifier's chunk is made small here (LLM__CLS_FLOATS) so that these small
 * models run it in several chunks, as GPT-2 124M does at B=4 T=1024. The activations
 * llm_model_memory accounts shrink by the (L-1) layers and the logit chunks not kept.
 */
#include "test.h"
#define LLM__CLS_FLOATS 1600u   /* 30 rows of 53 logits, 16 of 97 or 61 */
#define LLM_IMPLEMENTATION
#include "llm.h"

typedef struct { const char *name; llm_config cfg; float dropout; int lora, accum; } rcase;

static llm_model *make(const rcase *c, int recompute) {
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2; o.recompute = recompute; o.dropout = c->dropout; o.dropout_seed = 77;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c->cfg, &o, 3) == LLM_OK, "%s: create: %s", c->name, llm_last_error());
    if (m && c->lora) {
        llm_lora_config lc;
        memset(&lc, 0, sizeof lc);
        lc.rank = c->lora; lc.seed = 4;
        CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "%s: lora: %s", c->name, llm_last_error());
    }
    return m;
}

static void run_case(const rcase *c) {
    const int B = 4, T = 12, STEPS = 5;
    llm_model *m[2] = {make(c, 0), make(c, 1)};
    if (!m[0] || !m[1]) { llm_model_free(m[0]); llm_model_free(m[1]); return; }
    int V = c->cfg.vocab_size, tok[4 * 12 + 1];
    size_t ng = c->lora ? llm_model_lora_num_params(m[0]) : llm_model_num_params(m[0]), np = llm_model_num_params(m[0]);
    float *g[2] = {(float *)malloc(ng * 4), (float *)malloc(ng * 4)}, *w[2] = {(float *)malloc(np * 4), (float *)malloc(np * 4)};
    llm_adamw_config ac = llm_adamw_config_default();
    int same_loss = 1, same_grads = 1, same_norm = 1;
    for (int s = 0; s < STEPS; s++) {
        float loss[2] = {0, 0}, norm[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            CHECK(llm_model_zero_grad(m[k]) == LLM_OK, "zero_grad");
            for (int a = 0; a < c->accum; a++) {
                for (int i = 0; i < B * T + 1; i++) tok[i] = (i * 7 + s * 13 + a * 5) % V;
                float l = 0;
                CHECK(llm_model_forward(m[k], tok, tok + 1, B, T, &l) == LLM_OK && llm_model_backward(m[k], 1.0f / c->accum) == LLM_OK,
                      "%s: %s", c->name, llm_last_error());
                loss[k] += l;
            }
            CHECK((c->lora ? llm_model_lora_get_grads(m[k], g[k]) : llm_model_get_grads(m[k], g[k])) == LLM_OK, "grads: %s", llm_last_error());
            CHECK(llm_model_step(m[k], &ac, 3e-3f, &norm[k]) == LLM_OK, "step: %s", llm_last_error());
        }
        if (loss[0] != loss[1]) same_loss = 0;
        if (norm[0] != norm[1]) same_norm = 0;
        if (memcmp(g[0], g[1], ng * 4) != 0) same_grads = 0;
    }
    CHECK(same_loss, "%s: losses differ with recompute", c->name);
    CHECK(same_norm, "%s: gradient norms differ with recompute", c->name);
    CHECK(same_grads, "%s: gradients differ with recompute", c->name);
    CHECK(llm_model_get_params(m[0], w[0]) == LLM_OK && llm_model_get_params(m[1], w[1]) == LLM_OK &&
          memcmp(w[0], w[1], np * 4) == 0, "%s: weights after %d steps differ with recompute", c->name, STEPS);
    if (c->lora) {
        CHECK(llm_model_lora_get(m[0], g[0]) == LLM_OK && llm_model_lora_get(m[1], g[1]) == LLM_OK &&
              memcmp(g[0], g[1], ng * 4) == 0, "%s: adapters after %d steps differ with recompute", c->name, STEPS);
    }
    /* the logits, kept or made again */
    {
        size_t nl = (size_t)B * T * (size_t)V;
        float *lg[2] = {(float *)malloc(nl * 4), (float *)malloc(nl * 4)};
        for (int i = 0; i < B * T + 1; i++) tok[i] = (i * 5 + 1) % V;
        for (int k = 0; k < 2; k++)
            CHECK(llm_model_forward(m[k], tok, tok + 1, B, T, NULL) == LLM_OK && llm_model_get_logits(m[k], lg[k]) == LLM_OK,
                  "%s: logits: %s", c->name, llm_last_error());
        CHECK(memcmp(lg[0], lg[1], nl * 4) == 0, "%s: the logits differ with recompute", c->name);
        for (int k = 0; k < 2; k++)
            CHECK(llm_model_forward(m[k], tok, NULL, B, T, NULL) == LLM_OK && llm_model_get_logits(m[k], lg[k]) == LLM_OK,
                  "%s: logits without targets: %s", c->name, llm_last_error());
        CHECK(memcmp(lg[0], lg[1], nl * 4) == 0, "%s: the logits without targets differ with recompute", c->name);
        free(lg[0]); free(lg[1]);
    }
    /* the memory: the (L-1) layers and the logit chunks not kept */
    llm_memory u0, u1;
    CHECK(llm_model_memory(m[0], B, T, &u0) == LLM_OK && llm_model_memory(m[1], B, T, &u1) == LLM_OK, "memory");
    CHECK(u1.activations < u0.activations, "%s: recompute does not need fewer activations (%zu vs %zu)", c->name,
          u1.activations, u0.activations);
    printf("%s: %d steps bit-identical with recompute; activations %zu -> %zu bytes\n", c->name, STEPS, u0.activations, u1.activations);
    /* generation through the KV cache is the same */
    int prompt[3] = {1, 2, 3}, out[2][12], n[2] = {0, 0};   /* 3 + 12 positions: inside the context of 16 */
    memset(out, 0, sizeof out);
    for (int k = 0; k < 2; k++) {
        llm_kv *kv = NULL;
        llm_generate_config gc = llm_generate_config_default();
        gc.max_new_tokens = 12;
        CHECK(llm_kv_create(&kv, m[k], 1, 0, 0) == LLM_OK && llm_generate(kv, 0, prompt, 3, &gc, out[k], 12, &n[k], NULL, NULL) == LLM_OK,
              "generate: %s", llm_last_error());
        llm_kv_free(kv);
    }
    CHECK(n[0] == 12 && n[1] == 12 && memcmp(out[0], out[1], sizeof out[0]) == 0, "%s: generation differs with recompute (%d, %d tokens)",
          c->name, n[0], n[1]);
    free(g[0]); free(g[1]); free(w[0]); free(w[1]);
    llm_model_free(m[0]); llm_model_free(m[1]);
}

int main(void) {
    llm_config g = llm_config_gpt2();
    g.max_seq_len = 16; g.vocab_size = 97; g.n_layer = 3; g.n_head = 2; g.n_embd = 16;
    llm_config l = llm_config_llama(61, 3, 4, 2, 16, 40);
    l.max_seq_len = 16;
    rcase cases[4] = {
        {"gpt2 full, accum 2", g, 0.0f, 0, 2},
        {"llama full", l, 0.0f, 0, 1},
        {"gpt2 LoRA r=4 + dropout 0.2", g, 0.2f, 4, 1},
        {"llama LoRA r=2 + dropout 0.1, accum 2", l, 0.1f, 2, 2},
    };
    for (int i = 0; i < 4; i++) run_case(&cases[i]);
    return TEST_END("test_recompute");
}
