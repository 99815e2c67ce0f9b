/* tests/big_gpt2.c: GPT-2 124M's full shape against PyTorch (`make test-big`; too slow and
 * too large for `make test`).
 *
 * tests/ref_gpt2.py's gpt2_124m fixture: L=12 NH=12 C=768 V=50257 maxT=1024 with GPT-2's
 * initial spread, one row of T=64 tokens. tests/ref.h draws the 124,439,808 weights from
 * the committed recipe and writes a 498 MB model.safetensors + config.json, which goes
 * through llm_model_load. Checked, with the tolerances of tests/test_gpt2_torch.c (whose
 * small models also check the loaded parameters bit for bit):
 *   - the loss and every position's loss (the target's log-probability: every row of the
 *     logits through its log-sum-exp), within 1e-4;
 *   - the logits at the first and the last position (2 x 50257 values), within 1e-4
 *     relative with the 5% floor;
 *   - a backward pass and one AdamW step run and give a finite norm and a lower loss. */
#include "test.h"
#include "llm.h"
#include "ref.h"

int main(void) {
    const char *dir = "gpt2_124m";
    if (!test_has_fixture(dir)) {
        CHECK(0, "no fixture %s in %s (committed in tests/fixtures)", dir, test_fixtures_dir());
        return TEST_END("big_gpt2");
    }
    int B = (int)test_meta_num(dir, "B", 0), T = (int)test_meta_num(dir, "T", 0);
    int *tok = (int *)test_fixture_array(dir, "tokens.i32", (size_t)B * T);
    int *tgt = (int *)test_fixture_array(dir, "targets.i32", (size_t)B * T);
    float *ref_loss = (float *)test_fixture_array(dir, "loss.f32", 1);
    float *ref_losses = (float *)test_fixture_array(dir, "losses.f32", (size_t)B * T);
    const char *path = ref_model_file(dir, REF_F32);
    llm_model *m = NULL;
    llm_status s = path ? llm_model_load(&m, path, NULL) : LLM_ERR_IO;
    CHECK(s == LLM_OK && m, "load %s: %s", path ? path : "(not written)", llm_last_error());
    if (m && tok && tgt && ref_loss && ref_losses) {
        llm_config c = llm_model_config(m);
        int V = c.vocab_size;
        CHECK(c.n_layer == 12 && c.n_head == 12 && c.n_embd == 768 && V == 50257 && c.max_seq_len == 1024,
              "gpt2_124m: config L%d NH%d C%d V%d maxT%d", c.n_layer, c.n_head, c.n_embd, V, c.max_seq_len);
        CHECK(llm_model_num_params(m) == 124439808, "gpt2_124m: %zu parameters, want 124439808",
              llm_model_num_params(m));
        float loss = -1, *losses = (float *)malloc((size_t)B * T * sizeof(float));
        float *logits = (float *)malloc((size_t)B * T * V * sizeof(float));
        float *rows = (float *)test_fixture_array(dir, "logits_rows.f32", 2 * (size_t)V);
        CHECK(llm_model_forward(m, tok, tgt, B, T, &loss) == LLM_OK, "forward: %s", llm_last_error());
        CHECK(fabs(loss - ref_loss[0]) <= 1e-4, "gpt2_124m: loss %.7f, PyTorch %.7f", loss, ref_loss[0]);
        if (losses && logits && rows && llm_model_get_losses(m, losses) == LLM_OK &&
            llm_model_get_logits(m, logits) == LLM_OK) {
            double worst = 0;
            for (int i = 0; i < B * T; i++)
                if (!(fabs(losses[i] - ref_losses[i]) <= worst)) worst = fabs(losses[i] - ref_losses[i]);
            CHECK(worst <= 1e-4, "gpt2_124m: per-position losses differ from PyTorch by up to %.3g", worst);
            double e0 = test_close_err(logits, rows, (size_t)V, 0.05);
            double e1 = test_close_err(logits + (size_t)(B * T - 1) * V, rows + V, (size_t)V, 0.05);
            CHECK(e0 <= 1e-4 && e1 <= 1e-4, "gpt2_124m: logits at positions 0 / %d differ: %.3g / %.3g", T - 1, e0, e1);
            printf("gpt2_124m: loss %.6f (PyTorch %.6f), per-position losses within %.2e, logits rows %.2e %.2e\n",
                   loss, ref_loss[0], worst, e0, e1);
        } else {
            CHECK(0, "gpt2_124m: logits or losses: %s", llm_last_error());
        }
        /* one training step at full size: a finite norm, and the same batch's loss falls */
        llm_adamw_config oc = llm_adamw_config_default();
        float norm = -1, loss2 = -1;
        CHECK(llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK &&
              llm_model_step(m, &oc, 1e-3f, &norm) == LLM_OK, "train step: %s", llm_last_error());
        CHECK(llm_model_forward(m, tok, tgt, B, T, &loss2) == LLM_OK, "forward: %s", llm_last_error());
        CHECK(isfinite(norm) && norm > 0 && loss2 < loss, "gpt2_124m: step: norm %g, loss %.5f -> %.5f", norm, loss,
              loss2);
        printf("gpt2_124m: one AdamW step, grad norm %.4f, loss %.5f -> %.5f\n", norm, loss, loss2);
        free(losses); free(logits); free(rows);
    }
    llm_model_free(m);
    free(tok); free(tgt); free(ref_loss); free(ref_losses);
    return TEST_END("big_gpt2");
}
