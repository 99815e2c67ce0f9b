/* tests/test_threads.c: llm.h used from several threads at once (and, built with
 * -fsanitize=thread as build/tsan/test_threads by `make check` / `make tsan`, checked by
 * ThreadSanitizer for data races):
 *   - the thread pool: every slice of every task runs exactly once, task after task,
 *     with sizes 1..4, and two pools driven from two threads at the same time;
 *   - two models (a GPT-2 and a Llama, each with its own 2-thread pool) created, trained
 *     and saved in two threads at once: each gives the same bits as the same steps
 *     run alone, so the models share no state;
 *   - errors are per thread: a failure in one thread leaves the other's message alone;
 *   - one tokenizer (read-only) encoding in two threads gives the ids of one thread. */
#include "test.h"
#include "llm.h"
#include "ref.h"
#include <pthread.h>

#if defined(LLM_TEST_TSAN) && LLM_TEST_TSAN
#define STEPS 3   /* ThreadSanitizer runs ~10x slower */
#else
#define STEPS 8
#endif

/* ---- the pool ------------------------------------------------------------------------ */
typedef struct { int hits[8], nth[8]; } pool_task;
static void pool_fn(void *arg, int ith, int nth) {
    pool_task *t = (pool_task *)arg;
    t->hits[ith]++;   /* each slice writes only its own slots */
    t->nth[ith] = nth;
}
typedef struct { int size; long bad; } pool_job;
static void *pool_thread(void *arg) {
    pool_job *j = (pool_job *)arg;
    llm_pool *p = llm_pool_create(j->size);
    if (!p) { j->bad = -1; return NULL; }
    for (long r = 1; r <= 300; r++) {
        pool_task t;
        memset(&t, 0, sizeof t);
        llm_pool_run(p, pool_fn, &t);
        for (int i = 0; i < j->size; i++) if (t.hits[i] != 1 || t.nth[i] != j->size) j->bad++;
    }
    llm_pool_free(p);
    return NULL;
}
static void test_pool(void) {
    for (int size = 1; size <= 4; size++) {
        pool_job j = {size, 0};
        pool_thread(&j);
        CHECK(j.bad == 0, "pool of %d: %ld slices ran other than once", size, j.bad);
    }
    pthread_t th[2];
    pool_job jobs[2] = {{3, 0}, {2, 0}};
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, pool_thread, &jobs[i]) == 0, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(jobs[0].bad == 0 && jobs[1].bad == 0, "two pools in two threads: %ld and %ld bad slices", jobs[0].bad,
          jobs[1].bad);
}

/* ---- two models in two threads --------------------------------------------------------- */
typedef struct {
    llm_config cfg;
    uint64_t seed;
    const char *save;          /* a checkpoint path, or NULL */
    float losses[STEPS], norms[STEPS];
    float *params;
    int failed;
    char error[256];
} train_job;

static void *train(void *arg) {
    train_job *j = (train_job *)arg;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 2;
    llm_model *m = NULL;
    if (llm_model_create(&m, &j->cfg, &opt, j->seed) != LLM_OK) { j->failed = 1; return NULL; }
    int B = 2, T = 12, V = j->cfg.vocab_size, tok[24], tgt[24];
    llm_adamw_config oc = llm_adamw_config_default();
    for (int k = 0; k < STEPS; k++) {
        for (int i = 0; i < B * T; i++) { tok[i] = (int)((i * 7 + k * 3 + j->seed) % (uint64_t)V); tgt[i] = (tok[i] + 1) % V; }
        if (llm_model_forward(m, tok, tgt, B, T, &j->losses[k]) != LLM_OK || llm_model_zero_grad(m) != LLM_OK ||
            llm_model_backward(m, 1.0f) != LLM_OK || llm_model_step(m, &oc, 1e-3f, &j->norms[k]) != LLM_OK)
            j->failed = 1;
    }
    j->params = (float *)malloc(llm_model_num_params(m) * sizeof(float));
    if (llm_model_get_params(m, j->params) != LLM_OK) j->failed = 1;
    if (j->save && llm_model_save(m, j->save, 1, NULL) != LLM_OK) j->failed = 1;
    /* an error of this thread's own: its message is this thread's */
    llm_model *bad = NULL;
    llm_status s = llm_model_load(&bad, j->seed & 1 ? "/nonexistent/odd.bin" : "/nonexistent/even.bin", NULL);
    snprintf(j->error, sizeof j->error, "%s", s == LLM_ERR_IO ? llm_last_error() : "");
    llm_model_free(m);
    return NULL;
}

static void test_models(void) {
    train_job solo[2], dual[2];
    memset(solo, 0, sizeof solo);
    solo[0].cfg = llm_config_gpt2();
    solo[0].cfg.max_seq_len = 16; solo[0].cfg.vocab_size = 61; solo[0].cfg.n_layer = 2; solo[0].cfg.n_head = 2;
    solo[0].cfg.n_embd = 32;
    solo[0].seed = 2;
    solo[1].cfg = llm_config_llama(53, 2, 4, 2, 32, 48);
    solo[1].cfg.max_seq_len = 16;
    solo[1].seed = 3;
    memcpy(dual, solo, sizeof solo);
    dual[0].save = ref_tmp_path("gpt2.ckpt");
    dual[1].save = ref_tmp_path("llama.ckpt");
    ref_tmp_path("gpt2.ckpt.tmp");
    ref_tmp_path("llama.ckpt.tmp");
    for (int i = 0; i < 2; i++) train(&solo[i]);   /* alone, one after the other */
    pthread_t th[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, train, &dual[i]) == 0, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "llama" : "gpt2";
        CHECK(!solo[i].failed && !dual[i].failed, "%s: a call failed", name);
        CHECK(memcmp(solo[i].losses, dual[i].losses, sizeof solo[i].losses) == 0 &&
              memcmp(solo[i].norms, dual[i].norms, sizeof solo[i].norms) == 0,
              "%s: losses or norms differ when the other model trains at the same time", name);
        size_t np = 0;
        llm_model *m = NULL;
        if (llm_model_load(&m, dual[i].save, NULL) == LLM_OK) np = llm_model_num_params(m);
        float *p = (float *)malloc((np ? np : 1) * sizeof(float));
        CHECK(np && solo[i].params && dual[i].params && memcmp(solo[i].params, dual[i].params, np * sizeof(float)) == 0,
              "%s: parameters after %d steps differ", name, STEPS);
        CHECK(np && llm_model_get_params(m, p) == LLM_OK && memcmp(p, dual[i].params, np * sizeof(float)) == 0,
              "%s: the checkpoint saved in the thread does not hold its parameters", name);
        CHECK(strstr(dual[i].error, i ? "odd.bin" : "even.bin") != NULL,
              "%s: the thread's error message is not its own: '%s'", name, dual[i].error);
        printf("%s: %d steps in a thread beside the other model, loss %.4f -> %.4f, bit-identical to alone\n", name,
               STEPS, dual[i].losses[0], dual[i].losses[STEPS - 1]);
        free(p);
        llm_model_free(m);
        free(solo[i].params); free(dual[i].params);
    }
}

/* ---- one tokenizer, two threads ----------------------------------------------------------- */
typedef struct { const llm_tokenizer *tok; const char *text; size_t len; int *ids; size_t n; int failed; } enc_job;
static void *encode(void *arg) {
    enc_job *j = (enc_job *)arg;
    j->failed = llm_tokenizer_encode(j->tok, j->text, j->len, 0, j->ids, j->len, &j->n) != LLM_OK;
    return NULL;
}
static void test_tokenizer(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpt2", test_data_dir());
    llm_tokenizer *tok = NULL;
    size_t len = 0;
    char *text = test_read_data("tinyshakespeare/input.txt", &len);
    if (llm_tokenizer_load(&tok, dir) != LLM_OK || !text) {
        TEST_SKIP("no GPT-2 vocabulary or Tiny Shakespeare under %s (make data)", test_data_dir());
        llm_tokenizer_free(tok); free(text);
        return;
    }
    if (len > 20000) len = 20000;
    enc_job j[3];
    for (int i = 0; i < 3; i++) {
        j[i].tok = tok; j[i].text = text; j[i].len = len; j[i].n = 0; j[i].failed = 0;
        j[i].ids = (int *)malloc(len * sizeof(int));
    }
    encode(&j[0]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&th[i], NULL, encode, &j[1 + i]) == 0, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 1; i < 3; i++)
        CHECK(!j[i].failed && j[i].n == j[0].n && memcmp(j[i].ids, j[0].ids, j[0].n * sizeof(int)) == 0,
              "tokenizer: thread %d's ids differ from one thread's", i);
    for (int i = 0; i < 3; i++) free(j[i].ids);
    llm_tokenizer_free(tok);
    free(text);
}

int main(void) {
    test_pool();
    test_models();
    test_tokenizer();
    return TEST_END("test_threads");
}
