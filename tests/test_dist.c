/* tests/test_dist.c: data parallel through NCCL (llm_options.dist_*, the CUDA backend's
 * allreduce_mean, llm_model_allreduce_mean).
 *
 * What one process can check:
 *   - everywhere (the plain `make test` build too): llm_model_allreduce_mean on a backend
 *     without allreduce_mean (the CPU) leaves the values as they are, and refuses bad
 *     arguments;
 *   - built with CUDA, no GPU needed: the dist options are validated before any CUDA call
 *     (rank outside [0, world), negative world, world > 1 without an id file), and a build
 *     without NCCL refuses dist_world >= 1 with LLM_ERR_UNSUPPORTED;
 *   - with a GPU and NCCL: a world of one rank. The mean over one rank is the value
 *     itself, so 3 training steps with dist_world = 1 must give the parameters of 3 steps
 *     without it, bit for bit (NCCL in the step changes nothing, the order of the other
 *     ops stays the same); llm_model_allreduce_mean returns its input; a rank > 0 whose id
 *     file never comes gives up after LLM_DIST_TIMEOUT seconds with a message, and one
 *     whose id file is the wrong size fails at once.
 *   - with two devices: two ranks as two threads of this process (device = rank, as one
 *     process drives two GPUs with ncclCommInitRank per thread), the id through a file.
 *     Each trains on its half of a batch; the replicas must stay bit-identical and match
 *     one process on the whole batch (t_two_ranks says within what, and why).
 * The GPU part also runs under tests/cuda_emu.h, whose NCCL runs ranks as host threads
 * (main asks it for two devices with LLM_CUDA_EMU_DEVICES=2). Two processes, one GPU each,
 * is examples/train_gpt2's --dist-world, run by hand. */
#define _POSIX_C_SOURCE 200809L   /* setenv, getpid, clock_gettime */
#include "tests/test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <pthread.h>
#include <time.h>
#include <unistd.h>

/* A small GPT-2: V 64, L 2, NH 2, C 32, maxT 16. */
static llm_config small_gpt2(void) {
    llm_config c = llm_config_gpt2();
    c.vocab_size = 64; c.n_layer = 2; c.n_head = 2; c.n_embd = 32; c.max_seq_len = 16;
    return c;
}

/* Backends without allreduce_mean (the CPU): the values stay as they are. */
static void t_no_op(void) {
    llm_config c = small_gpt2();
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, NULL, 1) == LLM_OK, "cpu model: %s", llm_last_error());
    if (!m) return;
    float v[3] = {1.5f, -2.25f, 3e-8f}, w[3];
    memcpy(w, v, sizeof v);
    CHECK(llm_cpu_backend()->allreduce_mean == NULL, "the CPU backend has no allreduce_mean");
    CHECK(llm_model_allreduce_mean(m, v, 3) == LLM_OK, "cpu allreduce_mean: %s", llm_last_error());
    CHECK(memcmp(v, w, sizeof v) == 0, "cpu allreduce_mean changed the values");
    CHECK(llm_model_allreduce_mean(m, v, 0) == LLM_OK, "n = 0 is fine");
    CHECK(llm_model_allreduce_mean(m, NULL, 2) == LLM_ERR_ARG, "NULL values refused");
    CHECK(llm_model_allreduce_mean(m, v, -1) == LLM_ERR_ARG, "n < 0 refused");
    CHECK(llm_model_allreduce_mean(NULL, v, 1) == LLM_ERR_ARG, "NULL model refused");
    llm_model_free(m);
}

#ifdef LLM_CUDA
/* create with these dist options: the status, and whether the message names `word` */
static llm_status try_create(int rank, int world, const char *id_file, const char *word, int *named) {
    llm_options o;
    memset(&o, 0, sizeof o);
    o.backend = llm_cuda_backend();
    o.dist_rank = rank; o.dist_world = world; o.dist_id_file = id_file;
    void *st = NULL;
    llm_status s = o.backend->create(&st, &o);
    if (named) *named = strstr(llm_last_error(), word) != NULL;
    if (st) o.backend->destroy(st);
    return s;
}

/* Checked before any CUDA call, so these hold with or without a GPU. */
static void t_arguments(void) {
    int named = 0;
    CHECK(try_create(2, 2, "x", "dist_rank", &named) == LLM_ERR_ARG && named,
          "rank == world refused: %s", llm_last_error());
    CHECK(try_create(-1, 2, "x", "dist_rank", &named) == LLM_ERR_ARG && named,
          "rank < 0 refused: %s", llm_last_error());
    CHECK(try_create(0, -3, "x", "dist_world", &named) == LLM_ERR_ARG && named,
          "world < 0 refused: %s", llm_last_error());
    CHECK(try_create(1, 2, NULL, "dist_id_file", &named) == LLM_ERR_ARG && named,
          "world 2 without an id file refused: %s", llm_last_error());
    CHECK(try_create(0, 2, "", "dist_id_file", &named) == LLM_ERR_ARG && named,
          "world 2 with an empty id file name refused: %s", llm_last_error());
    /* llm_cuda.cu has allreduce_mean in its table exactly when it was built with NCCL */
    if (!llm_cuda_backend()->allreduce_mean)
        CHECK(try_create(0, 1, NULL, "NCCL", &named) == LLM_ERR_UNSUPPORTED && named,
              "a build without NCCL refuses dist_world 1: %s", llm_last_error());
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 3 AdamW steps on fixed random tokens; the parameters after them into out. */
static llm_status train3(int world, float *out, size_t n) {
    llm_config c = small_gpt2();
    llm_options o;
    memset(&o, 0, sizeof o);
    o.backend = llm_cuda_backend();
    o.dist_world = world;
    llm_model *m = NULL;
    llm_status s = llm_model_create(&m, &c, &o, 7);
    if (s != LLM_OK) return s;
    enum { B = 2, T = 12 };
    int tok[B * T], tgt[B * T];
    test_seed(99);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int)(test_rand_u64() % 64);
        tgt[i] = (int)(test_rand_u64() % 64);
    }
    for (int step = 0; step < 3 && s == LLM_OK; step++) {
        float loss = 0;
        if ((s = llm_model_zero_grad(m)) == LLM_OK && (s = llm_model_forward(m, tok, tgt, B, T, &loss)) == LLM_OK &&
            (s = llm_model_backward(m, 1.0f)) == LLM_OK)
            s = llm_model_step(m, NULL, 1e-3f, NULL);
    }
    if (s == LLM_OK && llm_model_num_params(m) != n) s = llm_set_error(LLM_ERR_STATE, "parameter count");
    if (s == LLM_OK) s = llm_model_get_params(m, out);
    llm_model_free(m);
    return s;
}

static void t_world_of_one(void) {
    llm_config c = small_gpt2();
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS], n = 0;
    llm_tensor_layout(&c, off, size);
    for (int i = 0; i < LLM_NTENSORS; i++) n += size[i];
    float *a = (float *)calloc(n, sizeof(float)), *a2 = (float *)calloc(n, sizeof(float));
    float *d = (float *)calloc(n, sizeof(float));
    if (!a || !a2 || !d) { CHECK(0, "out of host memory"); free(a); free(a2); free(d); return; }
    CHECK(train3(0, a, n) == LLM_OK, "train without dist: %s", llm_last_error());
    CHECK(train3(0, a2, n) == LLM_OK, "train without dist, again: %s", llm_last_error());
    CHECK(train3(1, d, n) == LLM_OK, "train with dist_world 1: %s", llm_last_error());
    if (memcmp(a, a2, n * sizeof(float)) != 0) {
        /* the backend itself differs run to run: bits cannot be asked of NCCL then */
        TEST_SKIP("test_dist: the CUDA backend is not bit-reproducible run to run here; "
                  "dist_world 1 compared within 1e-5 instead");
        double e = test_close_err(d, a, n, 1e-3);
        CHECK(e < 1e-5, "dist_world 1 vs none: max rel err %g", e);
    } else {
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&a[i], &d[i], sizeof(float)) != 0;
        CHECK(diff == 0, "dist_world 1 vs none after 3 steps: %zu of %zu parameters differ", diff, n);
    }
    free(a); free(a2); free(d);

    /* host values through the backend: the mean over one rank is the value */
    llm_options o;
    memset(&o, 0, sizeof o);
    o.backend = llm_cuda_backend();
    o.dist_world = 1;
    llm_model *m = NULL;
    CHECK(llm_model_create(&m, &c, &o, 1) == LLM_OK, "dist model: %s", llm_last_error());
    if (m) {
        float v[5] = {3.25f, -1e-30f, 6.0e4f, 0.1f, -7.5f}, w[5];
        memcpy(w, v, sizeof v);
        CHECK(llm_model_allreduce_mean(m, v, 5) == LLM_OK, "allreduce_mean: %s", llm_last_error());
        CHECK(memcmp(v, w, sizeof v) == 0, "world 1: allreduce_mean changed the values (%g %g %g %g %g)",
              v[0], v[1], v[2], v[3], v[4]);
        CHECK(llm_model_allreduce_mean(m, v, 0) == LLM_OK, "n = 0");
        llm_model_free(m);
    }
}

/* A rank > 0 never sees rank 0's id: it gives up after LLM_DIST_TIMEOUT, not hangs. */
static void t_id_file(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/llm_test_dist_%ld.id", (long)getpid());
    remove(path);
    setenv("LLM_DIST_TIMEOUT", "1", 1);
    int named = 0;
    double t0 = seconds();
    llm_status s = try_create(1, 2, path, "LLM_DIST_TIMEOUT", &named);
    double dt = seconds() - t0;
    CHECK(s == LLM_ERR_IO && named, "missing id file: status %d, %s", (int)s, llm_last_error());
    CHECK(dt >= 0.9 && dt < 30.0, "missing id file: gave up after %.2f s (LLM_DIST_TIMEOUT=1)", dt);

    /* not an id: the wrong size is refused at once */
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs("not an id", f);
        fclose(f);
        t0 = seconds();
        s = try_create(1, 2, path, "not an NCCL id", &named);
        CHECK(s == LLM_ERR_FORMAT && named, "short id file: status %d, %s", (int)s, llm_last_error());
        CHECK(seconds() - t0 < 10.0, "short id file: refused without waiting");
    }
    remove(path);
}

/* ---- two ranks ----------------------------------------------------------------------
 * A small GPT-2 (V 101, L 2, NH 3, C 48, T 16) trained 3 AdamW steps three ways from the
 * same seed: rank 0 and rank 1 (threads, devices 0 and 1, dist_world 2) on their halves of
 * a batch of 4 rows, and one process (no dist) on all 4. The threads report into their
 * struct; the CHECKs run on the main thread (test.h's counters are not atomic). */
enum { DP_B = 2, DP_T = 16, DP_V = 101, DP_STEPS = 3, DP_NV = 4 };
static llm_config dp_gpt2(void) {
    llm_config c = llm_config_gpt2();
    c.vocab_size = DP_V; c.n_layer = 2; c.n_head = 3; c.n_embd = 48; c.max_seq_len = DP_T;
    return c;
}
typedef struct {
    int rank, world, B;              /* world 0: one process, no NCCL */
    const char *id_file;
    const int *tok, *tgt;            /* (B, T): this rank's rows */
    float *params;                   /* (n) after the steps */
    float *init;                     /* (n) before them, if not NULL */
    size_t n;
    float vals[DP_NV];               /* host values for llm_model_allreduce_mean, in and out */
    float loss[DP_STEPS], gnorm[DP_STEPS];   /* gnorm: of the gradient the step used */
    llm_status status;
    char msg[512];                   /* llm_last_error() is per thread: copied here */
} dp_rank;

static void *dp_train(void *arg) {
    dp_rank *r = (dp_rank *)arg;
    llm_config c = dp_gpt2();
    llm_options o;
    memset(&o, 0, sizeof o);
    o.backend = llm_cuda_backend();
    o.device = r->rank;
    o.dist_rank = r->rank; o.dist_world = r->world; o.dist_id_file = r->id_file;
    llm_model *m = NULL;
    llm_status s = llm_model_create(&m, &c, &o, 7);   /* joins the other rank, if any */
    if (s == LLM_OK && r->init) s = llm_model_get_params(m, r->init);
    for (int step = 0; step < DP_STEPS && s == LLM_OK; step++) {
        if ((s = llm_model_zero_grad(m)) == LLM_OK &&
            (s = llm_model_forward(m, r->tok, r->tgt, r->B, DP_T, &r->loss[step])) == LLM_OK &&
            (s = llm_model_backward(m, 1.0f)) == LLM_OK)
            s = llm_model_step(m, NULL, 1e-3f, &r->gnorm[step]);
    }
    if (s == LLM_OK && llm_model_num_params(m) != r->n) s = llm_set_error(LLM_ERR_STATE, "parameter count");
    if (s == LLM_OK) s = llm_model_get_params(m, r->params);
    if (s == LLM_OK && r->world) s = llm_model_allreduce_mean(m, r->vals, DP_NV);
    r->status = s;
    snprintf(r->msg, sizeof r->msg, "%s", s == LLM_OK ? "" : llm_last_error());
    llm_model_free(m);
    return NULL;
}

static void t_two_ranks(void) {
    llm_config c = dp_gpt2();
    size_t off[LLM_NTENSORS], size[LLM_NTENSORS], n = 0;
    llm_tensor_layout(&c, off, size);
    for (int i = 0; i < LLM_NTENSORS; i++) n += size[i];
    /* 4 rows of random tokens; every target a real token (no -1), so each half has B*T
     * counted tokens and the mean of the two half-batch losses is the whole batch's */
    int tok[2 * DP_B * DP_T], tgt[2 * DP_B * DP_T];
    test_seed(2024);
    for (int i = 0; i < 2 * DP_B * DP_T; i++) {
        tok[i] = (int)(test_rand_u64() % DP_V);
        tgt[i] = (int)(test_rand_u64() % DP_V);
    }
    char id_file[256];
    snprintf(id_file, sizeof id_file, "/tmp/llm_test_dist2_%ld.id", (long)getpid());
    remove(id_file);
    setenv("LLM_DIST_TIMEOUT", "60", 1);   /* t_id_file left 1 s; no thread runs yet */

    dp_rank rk[2], one;
    const float in[2][DP_NV] = {{1.0f, -3.0f, 0.1f, 6.0e4f}, {2.0f, 5.0f, 0.2f, -2.5e4f}};
    memset(rk, 0, sizeof rk);
    memset(&one, 0, sizeof one);
    for (int r = 0; r < 2; r++) {
        rk[r].rank = r; rk[r].world = 2; rk[r].B = DP_B; rk[r].id_file = id_file;
        rk[r].tok = tok + r * DP_B * DP_T; rk[r].tgt = tgt + r * DP_B * DP_T;
        rk[r].n = n;
        rk[r].params = (float *)calloc(n, sizeof(float));
        memcpy(rk[r].vals, in[r], sizeof in[r]);
    }
    one.B = 2 * DP_B; one.tok = tok; one.tgt = tgt; one.n = n;
    one.params = (float *)calloc(n, sizeof(float));
    one.init = (float *)calloc(n, sizeof(float));
    if (!rk[0].params || !rk[1].params || !one.params || !one.init) {
        CHECK(0, "out of host memory");
        free(rk[0].params); free(rk[1].params); free(one.params); free(one.init);
        return;
    }
    pthread_t th[2];
    int started[2] = {0, 0};
    for (int r = 0; r < 2; r++) started[r] = pthread_create(&th[r], NULL, dp_train, &rk[r]) == 0;
    for (int r = 0; r < 2; r++)
        if (started[r]) pthread_join(th[r], NULL);
    CHECK(started[0] && started[1], "cannot start two threads");
    dp_train(&one);
    remove(id_file);   /* rank 0 removes it once both joined; not if a rank failed first */

    int ok = started[0] && started[1] && rk[0].status == LLM_OK && rk[1].status == LLM_OK && one.status == LLM_OK;
    for (int r = 0; r < 2; r++)
        CHECK(rk[r].status == LLM_OK, "rank %d of 2: %s", r, rk[r].msg);
    CHECK(one.status == LLM_OK, "one process, B = 4: %s", one.msg);
    if (ok) {
        /* the replicas: the same init, the same averaged gradients, the same AdamW: the same bits */
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += memcmp(&rk[0].params[i], &rk[1].params[i], sizeof(float)) != 0;
        CHECK(diff == 0, "two ranks after %d steps: %zu of %zu parameters differ between the replicas",
              DP_STEPS, diff, n);
        /* the losses: the same model on each half, so the mean of the two half losses is
         * the whole batch's loss, up to the order of the float sums (and, after step 0, the
         * tiny parameter differences bounded below). The gradient norms: each rank steps
         * with the mean gradient, so its norm is the whole batch's; a sum over the ranks
         * would double it. (AdamW is nearly blind to the scale of g, so the parameters
         * alone could not tell a sum from a mean.) */
        for (int k = 0; k < DP_STEPS; k++) {
            double mean = 0.5 * ((double)rk[0].loss[k] + (double)rk[1].loss[k]);
            CHECK(fabs(mean - one.loss[k]) <= 1e-5 * fabs(one.loss[k]),
                  "step %d: mean of the half-batch losses %.7g vs the whole batch's %.7g", k, mean, one.loss[k]);
            CHECK(rk[0].gnorm[k] == rk[1].gnorm[k] && fabs(rk[0].gnorm[k] - one.gnorm[k]) <= 1e-5 * one.gnorm[k],
                  "step %d: gradient norms %.7g and %.7g on the ranks, %.7g for the whole batch", k,
                  rk[0].gnorm[k], rk[1].gnorm[k], one.gnorm[k]);
        }
        /* against one process on the whole batch. Each loss is a mean over its own B*T
         * tokens, so with equal halves mean(g_0, g_1) = g in real arithmetic, and each token's
         * terms differ only by exact powers of two (1/32, then the mean's 1/2, against 1/64).
         * What differs is the order of the sums over rows in the weight gradients (two sums
         * of 32 rows, halved and added, against one of 64; on a GPU also whatever cuBLAS picks
         * for each shape): a few ulp of the terms (under the emulator |dg| <= 3e-8 for |g| up
         * to 0.2). AdamW's first step, lr g/(|g| + eps),
         * moves by lr |dg| eps/(|g| + eps)^2 for such a dg: nothing where |g| >> eps = 1e-8,
         * at most about lr |dg|/eps where g is itself rounding noise near eps. Measured
         * under the emulator: 4e-3 lr at worst after 3 steps. Bound: 0.05 lr (5e-5, against
         * steps of up to lr each); and the steps must have moved the parameters. */
        double lr = 1e-3, worst = 0;
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)rk[0].params[i] - (double)one.params[i]);
            if (!(d <= worst)) worst = d;   /* NaN-safe */
            moved += fabs((double)one.params[i] - (double)one.init[i]) > 0.5 * lr;
        }
        CHECK(worst <= 0.05 * lr, "two ranks vs one process after %d steps: a parameter differs by %g (> %g)",
              DP_STEPS, worst, 0.05 * lr);
        CHECK(moved >= n / 2, "training moved only %zu of %zu parameters by over lr/2", moved, n);
        printf("test_dist: two ranks vs one process after %d steps: max |diff| %.3g = %.3g lr\n", DP_STEPS,
               worst, worst / lr);
        /* host values: the mean on both ranks. With 2 ranks NCCL's mean is 0.5 a + 0.5 b,
         * the same bits as (a + b) / 2 (halving is exact) */
        for (int r = 0; r < 2; r++) {
            int bad = 0;
            for (int i = 0; i < DP_NV; i++) {
                float want = (in[0][i] + in[1][i]) * 0.5f;
                bad += memcmp(&rk[r].vals[i], &want, sizeof want) != 0;
            }
            CHECK(bad == 0, "rank %d: allreduce_mean gave %g %g %g %g, want the mean of the two ranks' values",
                  r, rk[r].vals[0], rk[r].vals[1], rk[r].vals[2], rk[r].vals[3]);
        }
    }
    free(rk[0].params); free(rk[1].params); free(one.params); free(one.init);
}
#endif /* LLM_CUDA */

int main(void) {
    t_no_op();
#ifndef LLM_CUDA
    TEST_SKIP("test_dist: built without CUDA (`make cuda` builds build/cuda/tests/test_dist)");
#else
    t_arguments();
    if (!llm_cuda_backend()->allreduce_mean) {
        TEST_SKIP("test_dist: llm_cuda.cu built without NCCL (make cuda finds nccl.h; NCCL= turns it off)");
    } else if (llm_cuda_device_count() < 1) {
        TEST_SKIP("test_dist: no CUDA device; world-of-one and two-rank training, allreduce and id-file "
                  "waits not run");
    } else {
        const char *name = llm_cuda_device_name(0);
        int emulated = strstr(name, "emulator") != NULL;
        printf("test_dist: device 0: %s%s\n", name,
               emulated ? " (EMULATED: no GPU ran; NCCL is emulated, ranks as threads)" : "");
        t_world_of_one();
        t_id_file();
        /* the emulator has one device unless asked (it reads this at each call; no other
         * thread runs yet); a real machine has the devices it has */
        if (emulated) setenv("LLM_CUDA_EMU_DEVICES", "2", 0);
        int ndev = llm_cuda_device_count();
        if (ndev < 2)
            TEST_SKIP("test_dist: two ranks need two devices, %d found: two-rank training not run", ndev);
        else
            t_two_ranks();
    }
#endif
    return TEST_END("test_dist");
}
