/* hello_llm: a program outside the llm.h source tree, built against the installed header
 * (see "Install" in the README). A small GPT-2 learns to count modulo 16 in 80 AdamW steps
 * on two threads, then continues a count with greedy generation. Needs no data files.
 * Exit status 0 when it learned (the loss fell tenfold and the count continues). */
#define LLM_IMPLEMENTATION
#include <llm.h>
#include <stdio.h>

#define V 16
#define B 4
#define T 32

int main(void) {
    llm_config cfg = llm_config_gpt2();
    cfg.max_seq_len = T; cfg.vocab_size = V; cfg.n_layer = 2; cfg.n_head = 2; cfg.n_embd = 32;
    llm_options opt = { 0 };
    opt.n_threads = 2;
    llm_model *m = NULL;
    llm_kv *kv = NULL;
    if (llm_model_create(&m, &cfg, &opt, 42) != LLM_OK) { fprintf(stderr, "hello_llm: %s\n", llm_last_error()); return 1; }

    /* B rows counting from different starts, so that the next token follows from the last
     * one and not from the position: inputs (B, T), targets the same shifted by one */
    int in[B * T], tg[B * T];
    llm_adamw_config adam = llm_adamw_config_default();
    float first = 0, loss = 0, norm;
    for (int step = 0; step < 80; step++) {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                in[b * T + t] = (step * 5 + b * 3 + t) % V;
                tg[b * T + t] = (step * 5 + b * 3 + t + 1) % V;
            }
        if (llm_model_forward(m, in, tg, B, T, &loss) || llm_model_zero_grad(m) ||
            llm_model_backward(m, 1.0f) || llm_model_step(m, &adam, 1e-2f, &norm)) {
            fprintf(stderr, "hello_llm: %s\n", llm_last_error()); llm_model_free(m); return 1;
        }
        if (step == 0) first = loss;
    }

    int prompt[3] = { 5, 6, 7 }, out[8], n_out = 0, ok = 1;
    llm_generate_config g = llm_generate_config_default();   /* greedy */
    g.max_new_tokens = 8;
    if (llm_kv_create(&kv, m, 1, 0, 0) || llm_generate(kv, 0, prompt, 3, &g, out, 8, &n_out, NULL, NULL)) {
        fprintf(stderr, "hello_llm: %s\n", llm_last_error()); llm_kv_free(kv); llm_model_free(m); return 1;
    }
    printf("hello_llm (llm.h %s): loss %.3f -> %.4f; 5 6 7 continues:", LLM_VERSION, first, loss);
    for (int i = 0; i < n_out; i++) { printf(" %d", out[i]); ok &= out[i] == (8 + i) % V; }
    printf("\n");
    llm_kv_free(kv);
    llm_model_free(m);
    return ok && loss < first / 10 ? 0 : 1;
}
