// llm.h compiled as C++: the whole implementation, then a tiny model trained for a few
// steps through the public API, so that C++ callers see the same behaviour as C.
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <vector>

int main() {
    llm_config cfg = llm_config_gpt2();
    cfg.max_seq_len = 16; cfg.vocab_size = 37; cfg.n_layer = 2; cfg.n_head = 2; cfg.n_embd = 8;
    llm_model *m = nullptr;
    llm_options opt = {};
    opt.n_threads = 2;
    CHECK(llm_model_create(&m, &cfg, &opt, 42) == LLM_OK, "create: %s", llm_last_error());
    if (!m) return TEST_END("test_cpp");
    const int B = 2, T = 8;
    std::vector<int> x(B * T), y(B * T);
    for (int i = 0; i < B * T; i++) { x[i] = (i * 7) % 37; y[i] = (i * 7 + 3) % 37; }
    llm_adamw_config ac = llm_adamw_config_default();
    float first = 0, loss = 0;
    for (int step = 0; step < 20; step++) {
        CHECK(llm_model_forward(m, x.data(), y.data(), B, T, &loss) == LLM_OK, "forward");
        if (step == 0) first = loss;
        llm_model_zero_grad(m);
        llm_model_backward(m, 1.0f);
        CHECK(llm_model_step(m, &ac, 1e-2f, nullptr) == LLM_OK, "step");
    }
    CHECK(loss < first - 0.5f, "loss falls from %g to %g", first, loss);
    CHECK(fabsf(first - logf(37.0f)) < 0.2f, "initial loss %g near log V = %g", first, logf(37.0f));
    x[3] = 37;
    CHECK(llm_model_forward(m, x.data(), nullptr, B, T, nullptr) == LLM_ERR_ARG &&
          strstr(llm_last_error(), "out of range"), "bad token rejected: %s", llm_last_error());
    llm_model_free(m);
    return TEST_END("test_cpp");
}
