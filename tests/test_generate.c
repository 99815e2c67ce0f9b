/* tests/test_generate.c: KV-cache inference and generation.
 *
 *   - stories260K (llama2.c's run.c outputs in ../shared/data/stories260K): greedy 200,
 *     the "Once upon a time" prompt, the seeded top-p sample, and the first logits,
 *     through the library API; and build/generate's stdout byte for byte when built
 *   - KV-cache logits == a full llm_model_forward at every position (GPT-2 and Llama
 *     with grouped-query heads and a separate classifier), with chunked prefill, decode
 *     one row at a time, and two sequences interleaved in one call
 *   - batched generation == one-by-one; continuing a sequence == generating in one go
 *   - stop token, stop strings, callback stop, seeded reproducibility
 *   - errors: a prompt longer than the context, a full sequence, a tokenizer whose
 *     vocabulary does not match, an unknown model file
 *   - PyTorch greedy loops (tests/ref_generate.py, committed in tests/fixtures; the
 *     models written by tests/ref.h): same ids, same logits at every position */
#include "test.h"
#include "llm.h"
#include "ref.h"
#include <ctype.h>

/* build/generate runs through a POSIX shell; the Windows build of this test leaves it out
 * (tests/test_windows_bits.sh compares the Windows example's text with the Linux one's). */
static int example_built(void) {
#ifdef _WIN32
    return 0;
#else
    return test_file_exists("build/generate");
#endif
}

/* The whole output of a shell command, or NULL if it fails (exit status not 0). */
static char *popen_slurp(const char *cmd) {
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    char *b = test_read_stream(f, NULL);
    if (pclose(f) != 0) { free(b); return NULL; }
    return b;
}
/* Runs cmd: up to cap-1 bytes of its output into msg (NUL-terminated); its exit status
 * (0 if it could not be started, which the callers' checks then fail on). */
static int run_capture(const char *cmd, char *msg, size_t cap) {
    FILE *pf = popen(cmd, "r");
    size_t k = pf ? fread(msg, 1, cap - 1, pf) : 0;
    msg[k] = 0;
    return pf ? pclose(pf) : 0;
}

/* ---- text collected from the token callback, printed as run.c's safe_printf ------------ */
typedef struct { char buf[1 << 15]; size_t n; int stop_after; int calls; int safe; } sink;
static void sink_put(sink *s, const char *p, size_t n, int safe) {
    if (safe) {
        if (n == 0) return;
        if (n == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return;
        size_t k = 0;
        while (k < n && p[k]) k++;
        n = k;
    }
    if (s->n + n < sizeof s->buf) { memcpy(s->buf + s->n, p, n); s->n += n; s->buf[s->n] = 0; }
}
static int on_tok(void *ud, int item, int id, const char *text, size_t len, float lp) {
    sink *s = (sink *)ud;
    (void)item; (void)lp;
    if (id >= 0) s->calls++;
    sink_put(s, text, len, s->safe);
    return s->stop_after > 0 && s->calls >= s->stop_after;
}

/* run.c's generate(): prompt encoded with BOS, echoed, `steps` positions, stop at BOS. */
static llm_status story(llm_model *m, const llm_llama_tokenizer *tok, const char *prompt, int steps, float temp,
                        float topp, uint64_t seed, sink *text, int *ids, int *n_ids) {
    int ptoks[256], np = 0;
    memset(text, 0, sizeof *text);
    text->safe = 1;
    llm_status s = llm_llama_tokenizer_encode(tok, prompt, strlen(prompt), 1, 0, ptoks, 256, &np);
    if (s != LLM_OK) return s;
    for (int j = 1; j < np; j++) {
        size_t n;
        const char *p = llm_llama_tokenizer_decode(tok, ptoks[j - 1], ptoks[j], &n);
        sink_put(text, p, n, 1);
    }
    llm_kv *kv = NULL;
    if ((s = llm_kv_create(&kv, m, 1, steps, 0)) != LLM_OK) return s;
    llm_generate_config gc = llm_generate_config_default();
    gc.sampler.temperature = temp; gc.sampler.top_p = topp; gc.sampler.seed = seed;
    gc.stop_token = LLM_LLAMA_BOS;
    gc.max_new_tokens = steps - np + 1;
    gc.piece = llm_piece_llama; gc.piece_ud = (void *)tok;
    gc.on_token = on_tok; gc.on_token_ud = text;
    s = llm_generate(kv, 0, ptoks, np, &gc, ids, steps + 1, n_ids, NULL, NULL);
    sink_put(text, "\n", 1, 0);
    llm_kv_free(kv);
    return s;
}

static void test_stories(void) {
    char path[1024], path2[1024];
    const char *dir = test_data_dir();
    snprintf(path, sizeof path, "%s/stories260K/stories260K.bin", dir);
    snprintf(path2, sizeof path2, "%s/stories260K/tok512.bin", dir);
    if (!test_file_exists(path) || !test_file_exists(path2)) { TEST_SKIP("stories260K: no %s", path); return; }
    llm_options opt; memset(&opt, 0, sizeof opt); opt.n_threads = 2;
    llm_model *m = NULL;
    llm_llama_tokenizer *tok = NULL;
    CHECK(llm_model_load(&m, path, &opt) == LLM_OK, "load stories260K: %s", llm_last_error());
    CHECK(llm_llama_tokenizer_load(&tok, path2, 512) == LLM_OK, "load tok512: %s", llm_last_error());
    if (!m || !tok) { llm_model_free(m); llm_llama_tokenizer_free(tok); return; }
    static sink text;
    int ids[300], n = 0;
    char f[1024];

    /* greedy, 200 steps: ids and text */
    CHECK(story(m, tok, "", 200, 0.0f, 0.9f, 1, &text, ids, &n) == LLM_OK, "greedy200: %s", llm_last_error());
    snprintf(f, sizeof f, "%s/stories260K/greedy200.ids.txt", dir);
    char *want = test_read_file(f, NULL);
    if (want) {
        int k = 0, same = 1;
        for (char *p = want; *p; k++) {
            long v = strtol(p, &p, 10);
            while (*p == '\n' || *p == ' ') p++;
            if (k >= n || ids[k] != v) same = 0;
        }
        CHECK(same && k == n && n == 200, "greedy200 ids: %d ids, expected %d, same=%d", n, k, same);
        free(want);
    }
    snprintf(f, sizeof f, "%s/stories260K/greedy200.txt", dir);
    want = test_read_file(f, NULL);
    CHECK(want && strcmp(want, text.buf) == 0, "greedy200 text:\n%s\nexpected:\n%s", text.buf, want ? want : "(missing)");
    free(want);

    /* the prompt "Once upon a time", 64 steps (the prompt is echoed) */
    CHECK(story(m, tok, "Once upon a time", 64, 0.0f, 0.9f, 1, &text, ids, &n) == LLM_OK, "prompt: %s", llm_last_error());
    snprintf(f, sizeof f, "%s/stories260K/prompt_once_upon_a_time.greedy64.txt", dir);
    want = test_read_file(f, NULL);
    CHECK(want && strcmp(want, text.buf) == 0, "prompt64 text:\n%s\nexpected:\n%s", text.buf, want ? want : "(missing)");
    free(want);

    /* run.c's seeded sample: temperature 1, top-p 0.9, seed 133742, 256 steps */
    CHECK(story(m, tok, "", 256, 1.0f, 0.9f, 133742, &text, ids, &n) == LLM_OK, "sample: %s", llm_last_error());
    snprintf(f, sizeof f, "%s/stories260K/sample_t1.0_p0.9_s133742.txt", dir);
    want = test_read_file(f, NULL);
    CHECK(want && strcmp(want, text.buf) == 0, "sample text:\n%s\nexpected:\n%s", text.buf, want ? want : "(missing)");
    free(want);

    /* run.c's logits at positions 0..3 (inputs 1 403 407 261), from one prefill call */
    snprintf(f, sizeof f, "%s/stories260K/greedy200.logits_pos0-3.txt", dir);
    want = test_read_file(f, NULL);
    if (want) {
        static float ref[4 * 512], got[4 * 512];
        int cnt = 0;
        for (char *p = want; *p;) {
            long pos = strtol(p, &p, 10), id = strtol(p, &p, 10);
            float v = strtof(p, &p);
            while (*p == '\n' || *p == ' ') p++;
            if (pos >= 0 && pos < 4 && id >= 0 && id < 512) { ref[pos * 512 + id] = v; cnt++; }
        }
        llm_kv *kv = NULL;
        int in[4] = {1, 403, 407, 261};
        CHECK(llm_kv_create(&kv, m, 1, 0, 0) == LLM_OK, "kv: %s", llm_last_error());
        CHECK(kv && llm_kv_forward(kv, NULL, in, 4, NULL, got) == LLM_OK, "forward: %s", llm_last_error());
        double e = test_max_rel_err(got, ref, 4 * 512, 1.0);
        CHECK(cnt == 2048 && e < 1e-4, "run.c logits pos 0-3: %d values, max rel err %g", cnt, e);
        llm_kv_free(kv);
        free(want);
    }

    /* stop string: the greedy text cut before the first "Lily"; the callback's text is
     * exactly the kept part */
    {
        static sink full, cut;
        int ptok = LLM_LLAMA_BOS, o1[300], o2[300], n1 = 0, n2 = 0;
        llm_finish why = LLM_FINISH_NONE;
        llm_kv *kv = NULL;
        llm_kv_create(&kv, m, 1, 0, 0);
        llm_generate_config gc = llm_generate_config_default();
        gc.max_new_tokens = 120;
        gc.piece = llm_piece_llama; gc.piece_ud = tok;
        memset(&full, 0, sizeof full); memset(&cut, 0, sizeof cut);
        gc.on_token = on_tok; gc.on_token_ud = &full;
        CHECK(llm_generate(kv, 0, &ptok, 1, &gc, o1, 300, &n1, &why, NULL) == LLM_OK && why == LLM_FINISH_LENGTH && n1 == 120,
              "no stop: n=%d why=%d", n1, why);
        const char *stops[2] = {"zzz never", "Lily"};
        gc.stops = stops; gc.n_stops = 2; gc.on_token_ud = &cut;
        llm_kv_clear(kv, 0);
        CHECK(llm_generate(kv, 0, &ptok, 1, &gc, o2, 300, &n2, &why, NULL) == LLM_OK, "stop: %s", llm_last_error());
        const char *hit = strstr(full.buf, "Lily");
        CHECK(hit && why == LLM_FINISH_STOP && cut.n == (size_t)(hit - full.buf) && memcmp(cut.buf, full.buf, cut.n) == 0 &&
              n2 < n1 && memcmp(o1, o2, (size_t)n2 * sizeof(int)) == 0,
              "stop string: why=%d kept %zu bytes, expected %ld", why, cut.n, hit ? (long)(hit - full.buf) : -1L);
        /* a stop token: the id at index 7 ends generation before it is output */
        gc.stops = NULL; gc.n_stops = 0; gc.stop_token = o1[7];
        int first = 0;
        while (o1[first] != o1[7]) first++;
        llm_kv_clear(kv, 0);
        CHECK(llm_generate(kv, 0, &ptok, 1, &gc, o2, 300, &n2, &why, NULL) == LLM_OK && why == LLM_FINISH_TOKEN && n2 == first,
              "stop token: n=%d (expected %d) why=%d", n2, first, why);
        /* the callback stops after 5 tokens */
        gc.stop_token = -1;
        memset(&cut, 0, sizeof cut);
        cut.stop_after = 5;
        llm_kv_clear(kv, 0);
        CHECK(llm_generate(kv, 0, &ptok, 1, &gc, o2, 300, &n2, &why, NULL) == LLM_OK && why == LLM_FINISH_CALLBACK && n2 == 5,
              "callback stop: n=%d why=%d", n2, why);
        llm_kv_free(kv);
    }

    /* the tokenizer must match the model: tok512 read as a 300-token vocabulary fails */
    llm_llama_tokenizer *bad = NULL;
    CHECK(llm_llama_tokenizer_load(&bad, path2, 300) != LLM_OK && bad == NULL, "vocab mismatch accepted");

    /* the example, byte for byte */
    if (example_built()) {
        const char *runs[3][2] = {
            {"--temp 0 -n 200", "greedy200.txt"},
            {"--temp 0 -n 64 -p 'Once upon a time'", "prompt_once_upon_a_time.greedy64.txt"},
            {"--temp 1.0 --top-p 0.9 --seed 133742", "sample_t1.0_p0.9_s133742.txt"}};
        for (int r = 0; r < 3; r++) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd, "build/generate -m %s -z %s %s --threads 2 2>/dev/null", path, path2, runs[r][0]);
            char *got = popen_slurp(cmd);
            snprintf(f, sizeof f, "%s/stories260K/%s", dir, runs[r][1]);
            want = test_read_file(f, NULL);
            CHECK(got && want && strcmp(got, want) == 0, "build/generate %s differs from %s:\n%s", runs[r][0], runs[r][1],
                  got ? got : "(failed)");
            free(got); free(want);
        }
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "build/generate -m %s -z %s --temp 0 -n 200 --ids 2>/dev/null", path, path2);
        char *got = popen_slurp(cmd);
        snprintf(f, sizeof f, "%s/stories260K/greedy200.ids.txt", dir);
        want = test_read_file(f, NULL);
        CHECK(got && want && strcmp(got, want) == 0, "build/generate --ids differs from greedy200.ids.txt");
        free(got); free(want);
        /* an unknown model file: a clear error, not a crash */
        snprintf(cmd, sizeof cmd, "build/generate -m %s/stories260K/tok512.bin 2>&1", dir);
        char msg[512];
        int rc = run_capture(cmd, msg, sizeof msg);
        CHECK(rc != 0 && strstr(msg, "tok512.bin"), "generate on a non-model: rc %d, '%s'", rc, msg);
    } else {
        TEST_SKIP("build/generate not built (or Windows): the example's output is not compared");
    }
    llm_llama_tokenizer_free(tok);
    llm_model_free(m);
}

/* ---- random models --------------------------------------------------------------------- */
/* Scale every parameter by f: sharper next-token distributions, so that float rounding
 * (batched vs single-row matmuls) cannot flip a greedy choice. */
static void sharpen(llm_model *m, float f) {
    size_t n = llm_model_num_params(m);
    float *p = (float *)malloc(n * sizeof(float));
    llm_model_get_params(m, p);
    for (size_t i = 0; i < n; i++) p[i] *= f;
    llm_model_set_params(m, p);
    free(p);
}
static llm_model *tiny(int llama, int threads) {
    llm_config c;
    if (llama) { c = llm_config_llama(97, 2, 4, 2, 32, 48); c.untied_head = 1; }
    else { c = llm_config_gpt2(); c.vocab_size = 97; c.n_layer = 2; c.n_head = 4; c.n_embd = 32; }
    c.max_seq_len = 40;
    llm_options opt; memset(&opt, 0, sizeof opt); opt.n_threads = threads;
    llm_model *m = NULL;
    if (llm_model_create(&m, &c, &opt, llama ? 7 : 8) != LLM_OK) return NULL;
    sharpen(m, 4.0f);
    return m;
}

/* KV-cache logits == full forward at every position: sequence 0 prefilled in chunks of 5
 * rows, then decoded row by row; sequence 1 interleaved with it in the same calls. */
static void test_kv_vs_full(int llama) {
    const char *name = llama ? "llama" : "gpt2";
    llm_model *m = tiny(llama, 2);
    CHECK(m != NULL, "%s: create: %s", name, llm_last_error());
    if (!m) return;
    enum { T = 23, V = 97 };
    int tok[2][T];
    for (int t = 0; t < T; t++) { tok[0][t] = (t * 31 + 5) % V; tok[1][t] = (t * 17 + 60) % V; }
    static float full[2 * T * V], got[2][T * V];
    CHECK(llm_model_forward(m, &tok[0][0], NULL, 2, T, NULL) == LLM_OK, "%s: full forward: %s", name, llm_last_error());
    llm_model_get_logits(m, full);
    llm_kv *kv = NULL;
    CHECK(llm_kv_create(&kv, m, 2, 0, 5) == LLM_OK, "%s: kv: %s", name, llm_last_error());
    if (!kv) { llm_model_free(m); return; }
    /* call 1: 12 rows of seq 0 and 9 of seq 1 interleaved; every row wanted */
    int seq[32], in[32], nr = 0, p0 = 0, p1 = 0;
    for (int i = 0; i < 21; i++) {
        if ((i % 7 < 4 && p0 < 12) || p1 >= 9) { seq[nr] = 0; in[nr++] = tok[0][p0++]; }
        else { seq[nr] = 1; in[nr++] = tok[1][p1++]; }
    }
    static float lg[32 * V];
    CHECK(llm_kv_forward(kv, seq, in, nr, NULL, lg) == LLM_OK, "%s: prefill: %s", name, llm_last_error());
    p0 = p1 = 0;
    for (int i = 0; i < nr; i++) {
        if (seq[i] == 0) memcpy(got[0] + (p0++) * V, lg + i * V, V * sizeof(float));
        else memcpy(got[1] + (p1++) * V, lg + i * V, V * sizeof(float));
    }
    /* then one row per sequence per call; only seq 0's logits wanted on odd steps */
    while (p0 < T || p1 < T) {
        nr = 0;
        unsigned char want[2];
        if (p0 < T) { seq[nr] = 0; in[nr] = tok[0][p0]; want[nr++] = 1; }
        if (p1 < T) { seq[nr] = 1; in[nr] = tok[1][p1]; want[nr++] = (unsigned char)(p1 % 2 == 0); }
        CHECK(llm_kv_forward(kv, seq, in, nr, want, lg) == LLM_OK, "%s: decode: %s", name, llm_last_error());
        int k = 0;
        for (int i = 0; i < nr; i++) {
            int s = seq[i], *pp = s == 0 ? &p0 : &p1;
            if (want[i]) memcpy(got[s] + *pp * V, lg + (k++) * V, V * sizeof(float));
            else memcpy(got[s] + *pp * V, full + (s * T + *pp) * V, V * sizeof(float));   /* not compared */
            (*pp)++;
        }
    }
    double e0 = test_max_rel_err(got[0], full, T * V, 1.0), e1 = test_max_rel_err(got[1], full + T * V, T * V, 1.0);
    CHECK(e0 < 1e-4 && e1 < 1e-4, "%s: KV-cache vs full forward logits: max rel err %g, %g", name, e0, e1);
    CHECK(llm_kv_len(kv, 0) == T && llm_kv_len(kv, 1) == T && llm_kv_tokens(kv, 1)[5] == tok[1][5], "%s: lengths", name);
    /* full: a sequence that would pass max_len is refused and nothing changes */
    llm_kv *small = NULL;
    CHECK(llm_kv_create(&small, m, 1, 8, 0) == LLM_OK, "kv small");
    CHECK(small && llm_kv_forward(small, NULL, tok[0], 6, NULL, lg) == LLM_OK, "%s: 6 of 8", name);
    CHECK(small && llm_kv_forward(small, NULL, tok[0], 3, NULL, lg) == LLM_ERR_ARG && llm_kv_len(small, 0) == 6 &&
          strstr(llm_last_error(), "context full"), "%s: overflow: '%s'", name, llm_last_error());
    int badseq = 3;
    CHECK(small && llm_kv_forward(small, &badseq, tok[0], 1, NULL, lg) == LLM_ERR_ARG, "%s: bad sequence accepted", name);
    int badtok = V;
    CHECK(small && llm_kv_forward(small, NULL, &badtok, 1, NULL, lg) == LLM_ERR_ARG, "%s: bad token accepted", name);
    llm_kv_free(small);
    llm_kv_free(kv);
    llm_model_free(m);
}

/* Batched generation == one-by-one; seeds; continuation; context errors and sliding. */
static void test_generation(int llama) {
    const char *name = llama ? "llama" : "gpt2";
    llm_model *m = tiny(llama, 2);
    if (!m) { CHECK(0, "create"); return; }
    llm_kv *kv = NULL;
    CHECK(llm_kv_create(&kv, m, 3, 0, 0) == LLM_OK, "kv: %s", llm_last_error());
    if (!kv) { llm_model_free(m); return; }
    int pa[3] = {5, 9, 13}, pb[7] = {1, 2, 3, 4, 5, 6, 7}, pc[1] = {42};
    const int *prompts[3] = {pa, pb, pc};
    int np[3] = {3, 7, 1}, caps[3] = {12, 20, 16};
    for (int sampled = 0; sampled < 2; sampled++) {
        llm_generate_config gc = llm_generate_config_default();
        gc.max_new_tokens = 18;
        if (sampled) { gc.sampler.temperature = 0.9f; gc.sampler.top_k = 20; gc.sampler.top_p = 0.95f; gc.sampler.seed = 99; }
        int ob[3][32], oo[3][32], nb[3], no[3];
        int *outs[3] = {ob[0], ob[1], ob[2]};
        llm_finish why[3];
        llm_generate_stats st;
        llm_kv_clear(kv, -1);
        CHECK(llm_generate_batch(kv, 3, NULL, prompts, np, &gc, outs, caps, nb, why, &st) == LLM_OK,
              "%s: batch: %s", name, llm_last_error());
        CHECK(nb[0] == 12 && nb[1] == 18 && nb[2] == 16 && st.generated == 46 && st.prefill_tokens == 11,
              "%s: batch lengths %d %d %d, generated %d, prefill %d", name, nb[0], nb[1], nb[2], st.generated, st.prefill_tokens);
        int same = 1;
        for (int i = 0; i < 3; i++) {
            llm_generate_config g1 = gc;
            g1.sampler.seed = gc.sampler.seed + (uint64_t)i;   /* item i's seed */
            llm_kv_clear(kv, 0);
            CHECK(llm_generate(kv, 0, prompts[i], np[i], &g1, oo[i], caps[i], &no[i], NULL, NULL) == LLM_OK, "single");
            if (no[i] != nb[i] || memcmp(oo[i], ob[i], (size_t)no[i] * sizeof(int)) != 0) same = 0;
        }
        CHECK(same, "%s: batched %s generation differs from one-by-one", name, sampled ? "sampled" : "greedy");
        if (sampled) {   /* the same seed reproduces; another seed differs */
            int o2[32], o3[32], n2, n3;
            llm_generate_config g2 = gc;
            g2.sampler.seed = gc.sampler.seed + 1;   /* as item 1 of the batch */
            llm_kv_clear(kv, 0);
            llm_generate(kv, 0, pb, 7, &g2, o2, 32, &n2, NULL, NULL);
            llm_generate_config g3 = gc;
            g3.sampler.seed = 12345;
            llm_kv_clear(kv, 0);
            llm_generate(kv, 0, pb, 7, &g3, o3, 32, &n3, NULL, NULL);
            CHECK(n2 == 18 && memcmp(o2, ob[1], 18 * sizeof(int)) == 0, "%s: seed does not reproduce", name);
            CHECK(n3 == 18 && memcmp(o3, o2, 18 * sizeof(int)) != 0, "%s: another seed gives the same sample", name);
        }
    }
    /* continuing: 8 tokens, then the last one fed back + 8 more == 16 in one go */
    {
        llm_generate_config gc = llm_generate_config_default();
        int all[16], a[8], b[8], n1, n2, n3;
        llm_kv_clear(kv, -1);
        gc.max_new_tokens = 16;
        llm_generate(kv, 0, pb, 7, &gc, all, 16, &n1, NULL, NULL);
        gc.max_new_tokens = 8;
        llm_generate(kv, 1, pb, 7, &gc, a, 8, &n2, NULL, NULL);
        CHECK(llm_kv_len(kv, 1) == 7 + 7, "%s: cache holds the prompt and all but the last id: %d", name, llm_kv_len(kv, 1));
        llm_generate(kv, 1, &a[7], 1, &gc, b, 8, &n3, NULL, NULL);
        CHECK(n1 == 16 && n2 == 8 && n3 == 8 && memcmp(all, a, 8 * sizeof(int)) == 0 && memcmp(all + 8, b, 8 * sizeof(int)) == 0,
              "%s: continuation differs from one go", name);
    }
    /* the context (40): a longer prompt is an error; generation stops at the end; sliding */
    {
        int longp[41], o[64], n = -1;
        for (int i = 0; i < 41; i++) longp[i] = (i * 7) % 97;
        llm_generate_config gc = llm_generate_config_default();
        llm_finish why;
        llm_kv_clear(kv, -1);
        CHECK(llm_generate(kv, 0, longp, 41, &gc, o, 64, &n, &why, NULL) == LLM_ERR_ARG && llm_kv_len(kv, 0) == 0 &&
              strstr(llm_last_error(), "does not fit"), "%s: a prompt longer than the context: '%s'", name, llm_last_error());
        gc.max_new_tokens = 0;   /* until something stops it */
        CHECK(llm_generate(kv, 0, longp, 30, &gc, o, 64, &n, &why, NULL) == LLM_OK && why == LLM_FINISH_CONTEXT && n == 11 &&
              llm_kv_len(kv, 0) == 40, "%s: context end: n=%d why=%d len=%d", name, n, why, llm_kv_len(kv, 0));
        gc.slide_window = 1;
        llm_kv_clear(kv, 0);
        CHECK(llm_generate(kv, 0, longp, 30, &gc, o, 64, &n, &why, NULL) == LLM_OK && why == LLM_FINISH_LENGTH && n == 64 &&
              llm_kv_len(kv, 0) <= 40, "%s: sliding window: n=%d why=%d %s", name, n, why, llm_last_error());
        llm_kv_clear(kv, 0);
        CHECK(llm_generate(kv, 0, longp, 41, &gc, o, 4, &n, &why, NULL) == LLM_OK && n == 4,
              "%s: a long prompt with sliding: %s", name, llm_last_error());
    }
    llm_kv_free(kv);
    llm_model_free(m);
}

/* ---- PyTorch greedy loops ---------------------------------------------------------------- */
static int read_i32(const char *path, int *dst, int cap) {
    size_t n = 0;
    char *b = test_read_file(path, &n);
    if (!b) return -1;
    int k = (int)(n / 4) < cap ? (int)(n / 4) : cap;
    memcpy(dst, b, (size_t)k * 4);
    free(b);
    return k;
}
static void test_torch(const char *dir) {
    char path[1024];
    if (!test_has_fixture(dir)) {
        CHECK(0, "%s: no PyTorch fixture in %s (committed in tests/fixtures)", dir, test_fixtures_dir());
        return;
    }
    int prompt[64], ref[64];
    int np = read_i32(test_fixture_path(path, sizeof path, dir, "prompt.i32"), prompt, 64);
    int nr = read_i32(test_fixture_path(path, sizeof path, dir, "greedy.i32"), ref, 64);
    const char *model = ref_model_file(dir, 0);
    llm_options opt; memset(&opt, 0, sizeof opt); opt.n_threads = 2;
    llm_model *m = NULL;
    CHECK(np > 0 && nr > 0 && model && llm_model_load(&m, model, &opt) == LLM_OK, "%s: load: %s", dir, llm_last_error());
    if (!m) return;
    ref_check_params(m, dir, dir);
    int V = llm_model_config(m).vocab_size;
    llm_kv *kv = NULL;
    llm_kv_create(&kv, m, 1, 0, 0);
    int out[64], n = 0;
    llm_generate_config gc = llm_generate_config_default();
    gc.max_new_tokens = nr;
    CHECK(kv && llm_generate(kv, 0, prompt, np, &gc, out, 64, &n, NULL, NULL) == LLM_OK, "%s: generate: %s", dir, llm_last_error());
    CHECK(n == nr && memcmp(out, ref, (size_t)nr * sizeof(int)) == 0, "%s: greedy ids differ from PyTorch's", dir);
    /* logits of prompt + continuation[:-1], KV cache: prompt in one call, then row by row */
    int T = np + nr - 1, seqt[128];
    memcpy(seqt, prompt, (size_t)np * sizeof(int));
    memcpy(seqt + np, ref, (size_t)(nr - 1) * sizeof(int));
    float *got = (float *)malloc((size_t)T * V * sizeof(float));
    size_t len = 0;
    float *want = (float *)test_read_fixture(dir, "logits.f32", &len);
    llm_kv_clear(kv, 0);
    llm_status s = llm_kv_forward(kv, NULL, seqt, np, NULL, got);
    for (int t = np; t < T && s == LLM_OK; t++) s = llm_kv_forward(kv, NULL, seqt + t, 1, NULL, got + (size_t)t * V);
    CHECK(s == LLM_OK && want && len == (size_t)T * V * 4, "%s: logits (%zu bytes)", dir, len);
    if (s == LLM_OK && want && len == (size_t)T * V * 4) {
        double e = test_max_rel_err(got, want, (size_t)T * V, 1.0);
        CHECK(e < 1e-4, "%s: KV-cache logits vs PyTorch: max rel err %g", dir, e);
    }
    free(got); free(want);
    llm_kv_free(kv);
    llm_model_free(m);
}

static void test_bad_files(void) {
    llm_model *m = NULL;
    const char *p = ref_tmp_path("not_a_model.txt");
    FILE *f = fopen(p, "wb");
    if (f) { fputs("this is not a model file, just some text of no particular length\n", f); fclose(f); }
    CHECK(llm_model_load(&m, p, NULL) == LLM_ERR_FORMAT && m == NULL && strstr(llm_last_error(), p),
          "unknown model file: '%s'", llm_last_error());
    remove(p);
    CHECK(llm_model_load(&m, "build/does/not/exist.bin", NULL) == LLM_ERR_IO, "missing model file");
    /* GPT-2: a model whose vocabulary is not the tokenizer's is refused by the example */
    char model[1024], cmd[2048];
    const char *mf = ref_model_file("gen_gpt2", 0);
    snprintf(model, sizeof model, "%s", mf ? mf : "");
    if (example_built() && test_file_exists(model)) {
        snprintf(cmd, sizeof cmd, "build/generate -m %s -n 4 2>&1", model);
        char msg[1024];
        int rc = run_capture(cmd, msg, sizeof msg);
        CHECK(rc != 0 && strstr(msg, "503"), "GPT-2 tokenizer (50257) with a 503-token model: rc %d, '%s'", rc, msg);
    }
}

int main(void) {
    test_stories();
    test_kv_vs_full(0);
    test_kv_vs_full(1);
    test_generation(0);
    test_generation(1);
    test_torch("gen_gpt2");
    test_torch("gen_llama");
    test_bad_files();
    return TEST_END("test_generate");
}
