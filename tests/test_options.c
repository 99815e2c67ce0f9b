/* The configuration macros: a user allocator (every byte llm.h allocates goes through
 * it and is given back), LLM_STATIC linkage, and a user assert. Built as C99 by the
 * Makefile and again as C11 with clang (test_options_c11). */
#include "test.h"
#include <stddef.h>

static long live_blocks, total_allocs;
static void *my_malloc(size_t n) { live_blocks++; total_allocs++; return malloc(n); }
static void *my_realloc(void *p, size_t n) { if (!p) { live_blocks++; total_allocs++; } return realloc(p, n); }
static void my_free(void *p) { if (p) live_blocks--; free(p); }

#define LLM_MALLOC(sz) my_malloc(sz)
#define LLM_REALLOC(p, sz) my_realloc(p, sz)
#define LLM_FREE(p) my_free(p)
#define LLM_ASSERT(x) CHECK((x), "LLM_ASSERT(%s)", #x)
#define LLM_STATIC
#define LLM_IMPLEMENTATION
#include "llm.h"

int main(void) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 8; c.vocab_size = 11; c.n_layer = 1; c.n_head = 2; c.n_embd = 4;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 2;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, &opt, 7) == LLM_OK, "create: %s", llm_last_error());
    int x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    float loss = 0;
    CHECK(llm_model_forward(m, x, y, 2, 4, &loss) == LLM_OK && loss > 0, "forward");
    CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK, "backward");
    CHECK(llm_model_step(m, NULL, 1e-3f, NULL) == LLM_OK, "step");
    llm_model_free(m);
    CHECK(total_allocs > 5, "the user allocator was used (%ld allocations)", total_allocs);
    CHECK(live_blocks == 0, "every block given back (%ld live)", live_blocks);
    /* a failing constructor also leaves nothing behind */
    c.n_head = 3;
    CHECK(llm_model_create(&m, &c, &opt, 7) == LLM_ERR_ARG && m == NULL, "bad shape refused");
    CHECK(live_blocks == 0, "no leak after a refused create (%ld live)", live_blocks);
    CHECK(strstr(llm_last_error(), "n_head") != NULL, "message names the problem: %s", llm_last_error());
    CHECK(strcmp(llm_status_string(LLM_ERR_NOMEM), "out of memory") == 0, "status strings");
    return TEST_END("test_options");
}
