/* tests/test_memory.c: llm_model_memory against the bytes really allocated, and the
 * out-of-memory message.
 *
 * Every block llm.h takes goes through a counting allocator (LLM_MALLOC & co.), so the
 * test knows the bytes the model holds. After each stage of training (load, forward,
 * backward, step) for full training, LoRA, recompute and dropout, and with a KV session,
 * llm_model_memory's `allocated` must be those bytes less the model's small fixed part
 * (the model struct, the thread pool, the host copy of the losses: under 64 KB here),
 * and its `total` what the bytes become once the step has run. Recompute must need
 * fewer activation bytes, LoRA fewer gradient and optimizer bytes (only the adapters').
 * Then an allocator that refuses large blocks: the activations' failure names what did
 * not fit, its size and the levers (a smaller batch with accumulation, recompute, LoRA).
 */
#include "test.h"
#include <stddef.h>

static size_t live_bytes, limit = (size_t)-1;
/* a size header in front of every block (16 bytes keep malloc's alignment) */
static void *my_malloc(size_t n) {
    if (n > limit) return NULL;
    size_t *p = (size_t *)malloc(n + 16);
    if (!p) return NULL;
    p[0] = n; live_bytes += n;
    return (char *)p + 16;
}
static void my_free(void *q) {
    if (!q) return;
    size_t *p = (size_t *)((char *)q - 16);
    live_bytes -= p[0];
    free(p);
}
static void *my_realloc(void *q, size_t n) {
    if (!q) return my_malloc(n);
    size_t *p = (size_t *)((char *)q - 16), old = p[0];
    if (n > limit) return NULL;
    size_t *r = (size_t *)realloc(p, n + 16);
    if (!r) return NULL;
    live_bytes = live_bytes - old + n;
    r[0] = n;
    return (char *)r + 16;
}
#define LLM_MALLOC(sz) my_malloc(sz)
#define LLM_REALLOC(p, sz) my_realloc(p, sz)
#define LLM_FREE(p) my_free(p)
#define LLM_IMPLEMENTATION
#include "llm.h"

#define FIXED (64 * 1024)   /* the model struct, the pool, the losses' host copy, ... */

typedef struct { const char *name; int lora, recompute; float dropout; } mcase;

/* held now, as the allocator counts it, against the accounting */
static void check_held(const char *name, const char *stage, llm_model *m, size_t base, int B, int T) {
    llm_memory u;
    CHECK(llm_model_memory(m, B, T, &u) == LLM_OK, "memory: %s", llm_last_error());
    size_t held = live_bytes - base;
    /* each aligned block costs up to 64 bytes more than asked (llm__alloc_aligned) */
    CHECK(held >= u.allocated && held - u.allocated < FIXED, "%s, %s: %zu bytes held, llm_model_memory says %zu allocated",
          name, stage, held, u.allocated);
}

static void run(const mcase *c, llm_memory *after) {
    const int B = 2, T = 16;
    llm_config cfg = llm_config_gpt2();
    cfg.max_seq_len = 32; cfg.vocab_size = 97; cfg.n_layer = 3; cfg.n_head = 2; cfg.n_embd = 32;
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 2; o.recompute = c->recompute; o.dropout = c->dropout;
    size_t base = live_bytes;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &cfg, &o, 1) == LLM_OK, "create: %s", llm_last_error());
    if (!m) return;
    if (c->lora) {
        llm_lora_config lc = {c->lora, 0, 0, 1};
        CHECK(llm_model_lora_create(m, &lc) == LLM_OK, "lora: %s", llm_last_error());
    }
    llm_memory plan;
    CHECK(llm_model_memory(m, B, T, &plan) == LLM_OK, "memory: %s", llm_last_error());
    check_held(c->name, "created", m, base, B, T);
    int tok[2 * 16 + 1];
    for (int i = 0; i < B * T + 1; i++) tok[i] = (i * 11 + 3) % 97;
    llm_adamw_config ac = llm_adamw_config_default();
    CHECK(llm_model_forward(m, tok, tok + 1, B, T, NULL) == LLM_OK, "forward: %s", llm_last_error());
    check_held(c->name, "after forward", m, base, B, T);
    CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK, "backward: %s", llm_last_error());
    check_held(c->name, "after backward", m, base, B, T);
    CHECK(llm_model_step(m, &ac, 1e-3f, NULL) == LLM_OK, "step: %s", llm_last_error());
    check_held(c->name, "after the step", m, base, B, T);
    CHECK(llm_model_memory(m, B, T, after) == LLM_OK && after->allocated == after->total && after->total == plan.total,
          "%s: after a step %zu bytes are allocated, %zu needed, %zu planned before", c->name, after->allocated, after->total, plan.total);
    llm_kv *kv = NULL;
    CHECK(llm_kv_create(&kv, m, 2, 0, 0) == LLM_OK, "kv: %s", llm_last_error());
    llm_memory k;
    CHECK(llm_model_memory(m, B, T, &k) == LLM_OK && k.kv_cache > 0 && k.allocated == after->allocated + k.kv_cache,
          "%s: the KV session's %zu bytes are not counted", c->name, k.kv_cache);
    check_held(c->name, "with a KV session", m, base, B, T);
    llm_kv_free(kv);
    CHECK(llm_model_memory(m, B, T, &k) == LLM_OK && k.kv_cache == 0, "%s: a freed KV session still counted", c->name);
    llm_model_free(m);
    CHECK(live_bytes == base, "%s: %zu bytes not given back", c->name, live_bytes - base);
}

int main(void) {
    static const mcase cases[4] = {{"full", 0, 0, 0.0f}, {"full + recompute + dropout", 0, 1, 0.1f},
                                   {"LoRA r=4", 4, 0, 0.0f}, {"LoRA r=4 + recompute", 4, 1, 0.0f}};
    llm_memory u[4];
    memset(u, 0, sizeof u);
    for (int i = 0; i < 4; i++) run(&cases[i], &u[i]);
    CHECK(u[1].activations < u[0].activations && u[3].activations < u[2].activations, "recompute does not need fewer activations");
    CHECK(u[2].grads < u[0].grads / 4 && u[2].optimizer == 2 * u[2].grads && u[2].params == u[0].params,
          "LoRA: gradients %zu and AdamW %zu against full's %zu and %zu", u[2].grads, u[2].optimizer, u[0].grads, u[0].optimizer);
    printf("accounted after one step (bytes): full %zu, full+recompute+dropout %zu, LoRA %zu, LoRA+recompute %zu\n",
           u[0].total, u[1].total, u[2].total, u[3].total);

    /* out of memory: the activations (the one big block) do not fit */
    llm_config cfg = llm_config_gpt2();
    cfg.max_seq_len = 256; cfg.vocab_size = 97; cfg.n_layer = 4; cfg.n_head = 2; cfg.n_embd = 32;
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = 1;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &cfg, &o, 1) == LLM_OK, "create: %s", llm_last_error());
    if (m) {
        limit = 1 << 20;
        llm_status s = llm_model_reserve(m, 8, 256);
        const char *e = llm_last_error();
        CHECK(s == LLM_ERR_NOMEM, "reserve over the limit: %d", (int)s);
        CHECK(strstr(e, "out of memory for the activations") && strstr(e, "B=8 T=256") && strstr(e, "MB"),
              "the message names what did not fit and its size: %s", e);
        CHECK(strstr(e, "gradient accumulation") && strstr(e, "recompute") && strstr(e, "LoRA"), "the message names the levers: %s", e);
        printf("out of memory: %s\n", e);
        limit = (size_t)-1;
        CHECK(llm_model_reserve(m, 2, 16) == LLM_OK, "a smaller reserve after the failure: %s", llm_last_error());
        llm_model_free(m);
    }
    CHECK(live_bytes == 0, "%zu bytes not given back", live_bytes);
    return TEST_END("test_memory");
}
