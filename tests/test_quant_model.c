/* test_quant_model: models with Q8_0 and bf16 weights (llm_model_quantize).
 *
 * Quality, on trained models and text they did not see:
 *   - llama2.c's stories260K (trained on TinyStories) on a short story written for this
 *     test: perplexity within 1% of fp32 for Q8_0 and 0.5% for bf16, and greedy text
 *     identical to fp32's for at least the first 64 tokens, with no prompt and with
 *     llama2.c's "Once upon a time" prompt;
 *   - a GPT-2 trained on Tiny Shakespeare (a small one trained here for a few seconds, or
 *     the checkpoint $LLM_DEMO_CKPT names, e.g. make demo-gpt2's build/demo-gpt2/
 *     shakespeare.ckpt), on the held-out last 10% of Tiny Shakespeare: the same bounds.
 * Behaviour: the dequantized parameters are each row's Q8_0 / bf16 rounding (every
 * tensor, rows not a multiple of 32 included); the KV cache gives the full forward's
 * logits; quantized checkpoints save and load back to the same bits and refuse damage;
 * backward, step, zero_grad and set_params are refused; quantizing twice, a non-finite
 * weight, and a backend other than the CPU's are refused with the model unchanged. */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "tests/test.h"

/* checkpoints written by the tests, in a temporary directory of their own (main) */
static char g_tmp[512], g_ckpt[600], g_ckpt_gpt2[600];

static const char *story =
    "Once upon a time, in a small house near the woods, there lived a girl named Mia. Mia had a red hat "
    "that she loved very much. Every morning she put on her hat and went outside to play with her dog, Max.\n"
    "One day, the wind was very strong. It took Mia's hat and carried it up into a tall tree. Mia was sad. "
    "\"My hat!\" she cried. Max barked at the tree, but the hat did not come down.\n"
    "Mia's friend Tom came by. He saw that Mia was sad and asked, \"Why are you sad?\" Mia pointed at the tree. "
    "Tom smiled and said, \"I can help you. Let's get a long stick.\"\n"
    "They looked for a stick in the garden. They found one next to the fence. Tom held the stick up high and "
    "pushed the hat. The hat fell down, and Max caught it in his mouth. Mia laughed and hugged Max and Tom.\n"
    "\"Thank you for helping me,\" Mia said. From that day on, Mia and Tom played together every day, and Mia "
    "always held her hat when the wind was strong. The end.";

/* Mean cross-entropy of tokens[1..n) given the ones before, in windows of T. */
static double mean_loss(llm_model *m, const int *tok, int n, int T) {
    double sum = 0;
    int cnt = 0;
    for (int s = 0; s + 1 < n; s += T) {
        int t = n - 1 - s < T ? n - 1 - s : T;
        float loss = 0;
        CHECK(llm_model_forward(m, tok + s, tok + s + 1, 1, t, &loss) == LLM_OK, "forward: %s", llm_last_error());
        sum += (double)loss * t;
        cnt += t;
    }
    return sum / cnt;
}

/* Greedy continuation: n_out ids after the prompt. */
static void greedy(llm_model *m, const int *prompt, int np, int n_out, int *out, int stop) {
    llm_kv *kv = NULL;
    CHECK(llm_kv_create(&kv, m, 1, np + n_out + 1, 0) == LLM_OK, "kv: %s", llm_last_error());
    llm_generate_config g = llm_generate_config_default();
    g.max_new_tokens = n_out;
    g.stop_token = stop;
    int got = 0;
    memset(out, 0, (size_t)n_out * sizeof(int));
    CHECK(llm_generate(kv, 0, prompt, np, &g, out, n_out, &got, NULL, NULL) == LLM_OK, "generate: %s", llm_last_error());
    llm_kv_free(kv);
}
static int same_prefix(const int *a, const int *b, int n) {
    int k = 0;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* fp32 vs each dtype on one model: perplexity and greedy text. */
static void quality(const char *name, llm_model *const ms[3], const int *tok, int n, int T, const int *const prompts[2],
                    const int np[2], int n_gen, int stop) {
    const char *dt[3] = {"fp32", "bf16", "q8_0"};
    const double bound[3] = {0, 0.005, 0.01};
    double ppl[3];
    for (int i = 0; i < 3; i++) ppl[i] = exp(mean_loss(ms[i], tok, n, T));
    printf("%s perplexity on %d held-out tokens: fp32 %.4f  bf16 %.4f (%+.3f%%)  q8_0 %.4f (%+.3f%%)\n", name, n - 1, ppl[0],
           ppl[1], 100 * (ppl[1] / ppl[0] - 1), ppl[2], 100 * (ppl[2] / ppl[0] - 1));
    for (int i = 1; i < 3; i++)
        CHECK(fabs(ppl[i] / ppl[0] - 1) <= bound[i], "%s %s perplexity %.4f is more than %.1f%% from fp32's %.4f", name, dt[i],
              ppl[i], 100 * bound[i], ppl[0]);
    for (int p = 0; p < 2; p++) {
        int *ref = (int *)malloc((size_t)n_gen * sizeof(int)), *q = (int *)malloc((size_t)n_gen * sizeof(int));
        greedy(ms[0], prompts[p], np[p], n_gen, ref, stop);
        for (int i = 1; i < 3; i++) {
            greedy(ms[i], prompts[p], np[p], n_gen, q, stop);
            int k = same_prefix(ref, q, n_gen);
            printf("%s greedy, prompt %d: %s equals fp32 for %d of %d tokens\n", name, p, dt[i], k, n_gen);
            CHECK(k >= 64, "%s %s greedy text (prompt %d) differs from fp32 after %d tokens (64 required)", name, dt[i], p, k);
        }
        free(ref); free(q);
    }
}

/* ---- stories260K ------------------------------------------------------------------------- */
static void test_stories(void) {
    char model[512], tokp[512];
    snprintf(model, sizeof model, "%s/stories260K/stories260K.bin", test_data_dir());
    snprintf(tokp, sizeof tokp, "%s/stories260K/tok512.bin", test_data_dir());
    if (!test_file_exists(model)) { TEST_SKIP("stories260K: %s not found", model); return; }
    llm_llama_tokenizer *lt = NULL;
    CHECK(llm_llama_tokenizer_load(&lt, tokp, 512) == LLM_OK, "tok512: %s", llm_last_error());
    if (!lt) return;
    llm_model *ms[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) CHECK(llm_model_load(&ms[i], model, NULL) == LLM_OK, "load: %s", llm_last_error());
    if (!ms[0] || !ms[1] || !ms[2]) return;
    CHECK(llm_model_quantize(ms[1], LLM_DTYPE_BF16) == LLM_OK && llm_model_quantize(ms[2], LLM_DTYPE_Q8_0) == LLM_OK,
          "quantize: %s", llm_last_error());
    int tok[1024], n = 0;
    llm_llama_tokenizer_encode(lt, story, strlen(story), 1, 0, tok, 1024, &n);
    int once[16], n_once = 0;
    llm_llama_tokenizer_encode(lt, "Once upon a time", 16, 1, 0, once, 16, &n_once);
    const int bos[1] = {LLM_LLAMA_BOS};
    const int *prompts[2] = {bos, once};
    const int np[2] = {1, n_once};
    quality("stories260K", ms, tok, n, 256, prompts, np, TEST_SAN ? 80 : 199, LLM_LLAMA_BOS);
    /* the KV cache on quantized weights gives the full forward's logits, nearly: the
     * matmuls give a row the same bits whatever the batch, but the two attentions add in
     * different orders, and a difference of an ulp can move an activation across a
     * rounding boundary of its 8-bit (or bf16) step, which moves that row's outputs by up
     * to a step times the weights. So most positions agree to float rounding, a few by
     * about 1e-2 of the logits' range, none by more than 5e-2. */
    for (int i = 1; i < 3; i++) {
        const int T = 48;
        llm_config c = llm_model_config(ms[i]);
        size_t V = (size_t)c.vocab_size;
        float *full = (float *)malloc((size_t)T * V * sizeof(float)), *kvl = (float *)malloc((size_t)T * V * sizeof(float));
        llm_model_forward(ms[i], tok, NULL, 1, T, NULL);
        llm_model_get_logits(ms[i], full);
        llm_kv *kv = NULL;
        llm_kv_create(&kv, ms[i], 1, T, 0);
        for (int t = 0; t < T; t++) llm_kv_forward(kv, NULL, tok + t, 1, NULL, kvl + (size_t)t * V);
        double e[64], worst = 0;
        for (int t = 0; t < T; t++) {
            double d = 0, mx = 0;
            for (size_t v = 0; v < V; v++) {
                double x = fabs((double)kvl[t * V + v] - full[t * V + v]), y = fabs((double)full[t * V + v]);
                d = x > d ? x : d;
                mx = y > mx ? y : mx;
            }
            e[t] = d / mx;
            worst = e[t] > worst ? e[t] : worst;
        }
        double med = e[0];
        { double tmp[64]; memcpy(tmp, e, sizeof(double) * T);
          for (int a = 0; a < T; a++) for (int b = a + 1; b < T; b++) if (tmp[b] < tmp[a]) { double x = tmp[a]; tmp[a] = tmp[b]; tmp[b] = x; }
          med = tmp[T / 2]; }
        printf("%s: KV-cache logits vs the full forward over %d positions: median %.2g, worst %.2g of max|logit|\n",
               llm_dtype_name(llm_model_dtype(ms[i])), T, med, worst);
        CHECK(med < 1e-4 && worst < 5e-2, "%s: KV-cache logits off the full forward's: median %.3g, worst %.3g",
              llm_dtype_name(llm_model_dtype(ms[i])), med, worst);
        llm_kv_free(kv);
        free(full); free(kvl);
    }
    for (int i = 0; i < 3; i++) llm_model_free(ms[i]);
    llm_llama_tokenizer_free(lt);
}

/* ---- a GPT-2 trained on Tiny Shakespeare ----------------------------------------------------- */
static int *shakespeare(int *n) {
    size_t len = 0;
    char *text = test_read_data("tinyshakespeare/input.gpt2.tokens.txt", &len);
    if (!text) return NULL;
    int *t = (int *)malloc((len / 2 + 1) * sizeof(int)), k = 0;
    for (char *p = text; *p;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) break;
        t[k++] = (int)v;
        p = e;
    }
    free(text);
    *n = k;
    return t;
}

static void test_gpt2(void) {
    if (TEST_SAN) { TEST_SKIP("GPT-2 quality: training and a 50257-token classifier are too slow under the sanitizers (the plain build runs it)"); return; }
    int n = 0;
    int *tok = shakespeare(&n);
    if (!tok) { TEST_SKIP("GPT-2: tinyshakespeare/input.gpt2.tokens.txt not found"); return; }
    const int split = n - n / 10;   /* the last 10% is held out, as the demo's validation split */
    /* a checkpoint with GPT-2's vocabulary trained on these tokens, when named (e.g. make
     * demo-gpt2's; not looked for by default: a demo run with few steps is no fair test) */
    const char *demo = getenv("LLM_DEMO_CKPT") ? getenv("LLM_DEMO_CKPT") : "";
    llm_model *ms[3] = {NULL, NULL, NULL};
    const char *what;
    if (*demo && test_file_exists(demo)) {
        what = "GPT-2 (the demo's checkpoint)";
        for (int i = 0; i < 3; i++) CHECK(llm_model_load(&ms[i], demo, NULL) == LLM_OK, "load %s: %s", demo, llm_last_error());
    } else {
        /* a small GPT-2 trained here: 2 layers, C 64, T 64, B 4 (a few seconds) */
        what = "GPT-2 (trained here; LLM_DEMO_CKPT names another)";
        llm_config c = llm_config_gpt2();
        c.n_layer = 2; c.n_head = 4; c.n_embd = 64; c.max_seq_len = 64;
        CHECK(llm_model_create(&ms[0], &c, NULL, 1) == LLM_OK, "create: %s", llm_last_error());
        if (!ms[0]) { free(tok); return; }
        llm_adamw_config ac = llm_adamw_config_default();
        ac.weight_decay = 0.0f;
        const int B = 4, T = 64, steps = 200;
        float loss = 0, first = 0;
        /* (B, T) windows in order through the training split */
        for (int s = 0; s < steps; s++) {
            int in[8 * 64], tg[8 * 64];
            for (int b = 0; b < B; b++) {
                int off = (int)(((size_t)s * B + b) * T % (size_t)(split - T - 1));
                memcpy(in + b * T, tok + off, T * sizeof(int));
                memcpy(tg + b * T, tok + off + 1, T * sizeof(int));
            }
            llm_model_forward(ms[0], in, tg, B, T, &loss);
            if (s == 0) first = loss;
            llm_model_zero_grad(ms[0]);
            llm_model_backward(ms[0], 1.0f);
            llm_model_step(ms[0], &ac, 3e-3f, NULL);
        }
        printf("GPT-2 trained here: loss %.3f -> %.3f in %d steps\n", first, loss, steps);
        CHECK(llm_model_save(ms[0], g_ckpt_gpt2, 0, NULL) == LLM_OK, "save: %s", llm_last_error());
        for (int i = 1; i < 3; i++) CHECK(llm_model_load(&ms[i], g_ckpt_gpt2, NULL) == LLM_OK, "load: %s", llm_last_error());
        remove(g_ckpt_gpt2);
    }
    if (!ms[0] || !ms[1] || !ms[2]) { for (int i = 0; i < 3; i++) llm_model_free(ms[i]); free(tok); return; }
    CHECK(llm_model_quantize(ms[1], LLM_DTYPE_BF16) == LLM_OK && llm_model_quantize(ms[2], LLM_DTYPE_Q8_0) == LLM_OK,
          "quantize: %s", llm_last_error());
    llm_config c = llm_model_config(ms[0]);
    int held = 8192;
    if (held > n - split) held = n - split;
    const int *prompts[2] = {tok + split, tok + split + 1000};
    const int np[2] = {16, 16};
    quality(what, ms, tok + split, held, c.max_seq_len, prompts, np, 100, 50256);
    for (int i = 0; i < 3; i++) llm_model_free(ms[i]);
    free(tok);
}

/* ---- what the quantized parameters are, and the checkpoints ------------------------------------ */
static void test_params_and_files(void) {
    /* a Llama with hidden 100 (rows of fcproj not a multiple of 32), GQA, untied head */
    llm_config c = llm_config_llama(77, 2, 4, 2, 64, 100);
    c.max_seq_len = 32; c.untied_head = 1;
    for (int q = 0; q < 2; q++) {
        llm_dtype dt = q ? LLM_DTYPE_Q8_0 : LLM_DTYPE_BF16;
        llm_model *m = NULL, *back = NULL;
        CHECK(llm_model_create(&m, &c, NULL, 3) == LLM_OK, "create: %s", llm_last_error());
        size_t np = llm_model_num_params(m), off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_tensor_layout(&c, off, size);
        float *orig = (float *)malloc(np * sizeof(float)), *deq = (float *)malloc(np * sizeof(float));
        float *want = (float *)malloc(np * sizeof(float));
        llm_model_get_params(m, orig);
        size_t fp32_bytes = llm_model_weight_bytes(m);
        CHECK(llm_model_quantize(m, dt) == LLM_OK && llm_model_dtype(m) == dt, "quantize: %s", llm_last_error());
        CHECK(llm_model_num_params(m) == np, "quantize changed the parameter count");
        llm_model_get_params(m, deq);
        /* each matrix row rounded alone: Q8_0 blocks from the row's start, or bf16 */
        memcpy(want, orig, np * sizeof(float));
        const int mats[6] = {0, 4, 6, 10, 12, 16};
        for (int k = 0; k < 6; k++) {
            int i = mats[k], K = i == 12 ? 100 : 64;
            for (size_t r = 0; r < size[i] / (size_t)K; r++) {
                float *x = want + off[i] + r * (size_t)K;
                if (q) { llm__q8_0 b[4]; llm__q8_0_quantize(b, x, (size_t)K); llm__q8_0_dequantize(x, b, (size_t)K); }
                else for (int j = 0; j < K; j++) x[j] = llm__bf16_value(x[j]);
            }
        }
        CHECK(memcmp(deq, want, np * sizeof(float)) == 0, "%s: get_params is not each row's rounding", llm_dtype_name(dt));
        size_t qb = llm_model_weight_bytes(m);
        printf("Llama 64/100: fp32 %zu bytes, %s %zu bytes (%.2fx)\n", fp32_bytes, llm_dtype_name(dt), qb, (double)fp32_bytes / qb);
        CHECK(qb < fp32_bytes * (q ? 0.4 : 0.6), "%s model is not smaller: %zu vs %zu bytes", llm_dtype_name(dt), qb, fp32_bytes);
        /* refusals */
        CHECK(llm_model_zero_grad(m) == LLM_ERR_UNSUPPORTED, "zero_grad on a quantized model");
        int tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        float loss;
        CHECK(llm_model_forward(m, tok, tok + 1, 1, 7, &loss) == LLM_OK && loss > 0, "forward with targets: %s", llm_last_error());
        CHECK(llm_model_backward(m, 1.0f) == LLM_ERR_UNSUPPORTED && strstr(llm_last_error(), "inference"), "backward: %s", llm_last_error());
        CHECK(llm_model_step(m, NULL, 1e-3f, NULL) == LLM_ERR_UNSUPPORTED, "step on a quantized model");
        CHECK(llm_model_set_params(m, orig) == LLM_ERR_UNSUPPORTED, "set_params on a quantized model");
        CHECK(llm_model_quantize(m, q ? LLM_DTYPE_BF16 : LLM_DTYPE_Q8_0) == LLM_ERR_STATE, "requantizing to the other type");
        CHECK(llm_model_quantize(m, dt) == LLM_OK, "quantizing to the same type is a no-op");
        CHECK(llm_model_quantize(m, LLM_DTYPE_F32) == LLM_ERR_ARG, "quantize to f32");
        /* save, load: the same parameters and logits, bit for bit */
        float *l1 = (float *)malloc(8 * 77 * sizeof(float)), *l2 = (float *)malloc(8 * 77 * sizeof(float));
        llm_model_forward(m, tok, NULL, 1, 8, NULL);
        llm_model_get_logits(m, l1);
        const char *path = g_ckpt;
        CHECK(llm_model_save(m, path, 1, NULL) == LLM_OK, "save: %s", llm_last_error());
        CHECK(llm_model_load(&back, path, NULL) == LLM_OK, "load: %s", llm_last_error());
        if (back) {
            CHECK(llm_model_dtype(back) == dt, "loaded as %s", llm_dtype_name(llm_model_dtype(back)));
            llm_model_get_params(back, want);
            CHECK(memcmp(deq, want, np * sizeof(float)) == 0, "%s checkpoint: parameters differ after loading", llm_dtype_name(dt));
            llm_model_forward(back, tok, NULL, 1, 8, NULL);
            llm_model_get_logits(back, l2);
            CHECK(memcmp(l1, l2, 8 * 77 * sizeof(float)) == 0, "%s checkpoint: logits differ after loading", llm_dtype_name(dt));
        }
        llm_model_free(back);
        /* damage: every cut, and lying header fields */
        size_t len = 0;
        char *bytes = test_read_file(path, &len);
        int bad = 0;
        for (size_t cut = 0; bytes && cut < len; cut += cut < 300 ? 1 : 101) {
            FILE *f = fopen(path, "wb");
            fwrite(bytes, 1, cut, f);
            fclose(f);
            llm_model *x = NULL;
            llm_status s = llm_model_load(&x, path, NULL);
            if (s == LLM_OK || x || !llm_last_error()[0]) bad++;
            llm_model_free(x);
        }
        CHECK(bad == 0, "%s checkpoint: %d truncations loaded or failed silently", llm_dtype_name(dt), bad);
        const size_t fields[5] = {12, 60, 60, 20, 64};
        const uint32_t vals[5] = {1, 7, q ? 1u : 2u, 0x7fffffffu, 5};
        for (int f = 0; bytes && f < 5; f++) {
            char *b = (char *)malloc(len);
            memcpy(b, bytes, len);
            memcpy(b + fields[f], &vals[f], 4);
            FILE *fp = fopen(path, "wb");
            fwrite(b, 1, len, fp);
            fclose(fp);
            llm_model *x = NULL;
            llm_status s = llm_model_load(&x, path, NULL);
            CHECK(s == LLM_ERR_FORMAT && !x, "%s checkpoint with field %zu = %u: status %d (%s)", llm_dtype_name(dt), fields[f],
                  vals[f], (int)s, llm_last_error());
            llm_model_free(x);
            free(b);
        }
        free(bytes);
        remove(path);
        free(orig); free(deq); free(want); free(l1); free(l2);
        llm_model_free(m);
    }
    /* a non-finite weight: refused, and the model is unchanged and still fp32 */
    {
        llm_model *m = NULL;
        llm_model_create(&m, &c, NULL, 3);
        size_t np = llm_model_num_params(m);
        float *p = (float *)malloc(np * sizeof(float));
        llm_model_get_params(m, p);
        size_t off[LLM_NTENSORS], size[LLM_NTENSORS];
        llm_tensor_layout(&c, off, size);
        p[off[6] + 5] = NAN;
        llm_model_set_params(m, p);
        CHECK(llm_model_quantize(m, LLM_DTYPE_Q8_0) == LLM_ERR_ARG && strstr(llm_last_error(), "attprojw"), "NaN weight: %s", llm_last_error());
        CHECK(llm_model_dtype(m) == LLM_DTYPE_F32, "a refused quantize changed the model");
        p[off[6] + 5] = 1e10f;
        llm_model_set_params(m, p);
        CHECK(llm_model_quantize(m, LLM_DTYPE_Q8_0) == LLM_ERR_ARG, "a weight beyond Q8_0's range: %s", llm_last_error());
        CHECK(llm_model_quantize(m, LLM_DTYPE_BF16) == LLM_OK, "1e10 fits bf16: %s", llm_last_error());
        free(p);
        llm_model_free(m);
    }
    /* a backend other than the CPU's (here the CPU's table under another name, as a GPU
     * backend would be) refuses quantized weights, at quantize and at load */
    {
        llm_backend other = *llm_cpu_backend();
        other.name = "other";
        llm_options opt;
        memset(&opt, 0, sizeof opt);
        opt.backend = &other;
        llm_model *m = NULL;
        CHECK(llm_model_create(&m, &c, &opt, 3) == LLM_OK, "create on another backend: %s", llm_last_error());
        CHECK(llm_model_quantize(m, LLM_DTYPE_Q8_0) == LLM_ERR_UNSUPPORTED && strstr(llm_last_error(), "CPU backend"),
              "quantize on another backend: %s", llm_last_error());
        llm_model *q = NULL;
        llm_model_create(&q, &c, NULL, 3);
        llm_model_quantize(q, LLM_DTYPE_Q8_0);
        llm_model_save(q, g_ckpt, 0, NULL);
        llm_model *x = NULL;
        CHECK(llm_model_load(&x, g_ckpt, &opt) == LLM_ERR_UNSUPPORTED && !x,
              "a quantized checkpoint on another backend: %s", llm_last_error());
        remove(g_ckpt);
        llm_model_free(q);
        llm_model_free(m);
    }
}

int main(void) {
    if (!test_make_tmpdir(g_tmp, sizeof g_tmp, "llm_test_quant_model")) { printf("cannot make a temporary directory\n"); return 1; }
    snprintf(g_ckpt, sizeof g_ckpt, "%s/q.ckpt", g_tmp);
    snprintf(g_ckpt_gpt2, sizeof g_ckpt_gpt2, "%s/gpt2.ckpt", g_tmp);
    test_params_and_files();
    test_stories();
    test_gpt2();
    test_rmdir(g_tmp);
    return TEST_END("test_quant_model");
}
