/* tests/test_save_crash.c: a save that dies half-way never costs the previous checkpoint.
 *
 * llm_model_save writes "<path>.tmp" (the magic bytes last), fsyncs it, renames it over
 * the path and fsyncs the directory. Here a checkpoint A (weights, AdamW moments,
 * training state: 12 MB) is saved, then a child process saves a different B over it and
 * dies during the save, at many points:
 *   - killed by SIGXFSZ at a file-size limit (RLIMIT_FSIZE), i.e. exactly when the
 *     temporary file reaches a given byte: inside the header, at each boundary between
 *     parameters and moments, at the last byte, and between;
 *   - killed by SIGKILL after delays spread over a measured save, which also lands in
 *     the fsyncs and the rename.
 * After each death, the path must load, and be A bit for bit (or B, whole, when the
 * rename came first): the file's bytes, the parameters and the training state. A stray
 * "<path>.tmp" must either be refused as not a checkpoint (LLM_ERR_FORMAT: a torn file
 * has no magic) or be B complete, and the next save must leave none behind.
 * A full disk (RLIMIT_FSIZE with SIGXFSZ ignored: the write fails with EFBIG) returns
 * LLM_ERR_IO and leaves the old file as it was, with no temporary file; the same for
 * llm_dataset_write. POSIX only (fork, setrlimit). */
#include "test.h"
#include "llm.h"
#include "ref.h"
#ifdef _WIN32
int main(void) {
    TEST_SKIP("test_save_crash: POSIX only (fork, setrlimit, SIGKILL)");
    return TEST_END("test_save_crash");
}
#else
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t file_hash(const char *path, size_t *len) {
    size_t n = 0;
    char *d = test_read_file(path, &n);
    uint64_t h = d ? ref_fnv1a(d, n) : 0;
    if (len) *len = d ? n : 0;
    free(d);
    return h;
}

typedef struct snapshot { char *bytes; size_t len; uint64_t hash; float *params; llm_train_state ts; } snapshot;
static llm_model *g_model;
static size_t g_np;
static char g_path[1024], g_tmp[1100];

/* Saves the model as it is now (with optimizer and ts) to path and remembers it all. */
static void take(snapshot *s, const char *path, const llm_train_state *ts) {
    s->ts = *ts;
    s->params = (float *)malloc(g_np * sizeof(float));
    CHECK(llm_model_get_params(g_model, s->params) == LLM_OK, "get_params: %s", llm_last_error());
    CHECK(llm_model_save(g_model, path, 1, ts) == LLM_OK, "save: %s", llm_last_error());
    s->bytes = test_read_file(path, &s->len);
    s->hash = s->bytes ? ref_fnv1a(s->bytes, s->len) : 0;
}
/* Puts snapshot s back at the path (a plain write: the test's own, not a save). */
static void restore(const snapshot *s) {
    FILE *f = fopen(g_path, "wb");
    CHECK(f && fwrite(s->bytes, 1, s->len, f) == s->len && fclose(f) == 0, "restore %s", g_path);
}

/* One training step: the parameters and moments change. */
static void step(void) {
    int tok[8], tgt[8];
    for (int i = 0; i < 8; i++) { tok[i] = (i * 5 + 1) % 97; tgt[i] = (i * 3 + 2) % 97; }
    llm_adamw_config oc = llm_adamw_config_default();
    CHECK(llm_model_forward(g_model, tok, tgt, 1, 8, NULL) == LLM_OK && llm_model_zero_grad(g_model) == LLM_OK &&
          llm_model_backward(g_model, 1.0f) == LLM_OK && llm_model_step(g_model, &oc, 1e-2f, NULL) == LLM_OK,
          "train step: %s", llm_last_error());
}

/* What is on disk now: A or B whole, both for the file and for what loads from it. */
static int which(const snapshot *a, const snapshot *b, const char *what) {
    uint64_t h = file_hash(g_path, NULL);
    int w = h == a->hash ? 0 : h == b->hash ? 1 : -1;
    CHECK(w >= 0, "%s: %s is neither the old nor the new checkpoint", what, g_path);
    if (w < 0) return w;
    llm_model *m = NULL;
    llm_train_state ts;
    memset(&ts, 0, sizeof ts);
    llm_status s = llm_model_load(&m, g_path, NULL);
    CHECK(s == LLM_OK, "%s: load: %s", what, llm_last_error());
    if (s == LLM_OK) {
        float *p = (float *)malloc(g_np * sizeof(float));
        const snapshot *x = w ? b : a;
        CHECK(llm_model_load_train_state(m, g_path, &ts) == LLM_OK && memcmp(&ts, &x->ts, sizeof ts) == 0,
              "%s: training state: %s", what, llm_last_error());
        CHECK(llm_model_get_params(m, p) == LLM_OK && memcmp(p, x->params, g_np * sizeof(float)) == 0,
              "%s: parameters are not bit-identical", what);
        free(p);
    }
    llm_model_free(m);
    /* a stray temporary file: refused, or the new checkpoint whole */
    if (test_file_exists(g_tmp)) {
        llm_model *t = NULL;
        s = llm_model_load(&t, g_tmp, NULL);
        CHECK((s == LLM_ERR_FORMAT && t == NULL) || (s == LLM_OK && file_hash(g_tmp, NULL) == b->hash),
              "%s: the torn %s loads (status %d: %s)", what, g_tmp, (int)s, s ? llm_last_error() : "ok");
        llm_model_free(t);
    }
    return w;
}

/* A child saves the model (B) and dies: by SIGXFSZ when the file reaches limit bytes
 * (limit > 0), or by our SIGKILL after delay seconds. Returns how it ended. */
static int save_and_die(const llm_train_state *ts, long long limit, double delay) {
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit r = {0, 0};
        setrlimit(RLIMIT_CORE, &r);
        if (limit > 0) { r.rlim_cur = r.rlim_max = (rlim_t)limit; setrlimit(RLIMIT_FSIZE, &r); }
        _exit(llm_model_save(g_model, g_path, 1, ts) == LLM_OK ? 0 : 3);
    }
    if (pid < 0) { CHECK(0, "fork failed"); return -1; }
    if (limit <= 0) {
        struct timespec t = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
        nanosleep(&t, NULL);
        kill(pid, SIGKILL);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 100 + WEXITSTATUS(st);
}

int main(void) {
    /* a GPT-2 of 1M parameters: 256 + 3 x 4 MB on disk */
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 32; c.vocab_size = 97; c.n_layer = 4; c.n_head = 4; c.n_embd = 144;
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = 1;   /* no pool threads: the forked child saves alone */
    CHECK(llm_model_create(&g_model, &c, &opt, 11) == LLM_OK, "create: %s", llm_last_error());
    if (!g_model) return TEST_END("test_save_crash");
    g_np = llm_model_num_params(g_model);
    snprintf(g_path, sizeof g_path, "%s/run.ckpt", ref_tmp_dir("crash"));
    snprintf(g_tmp, sizeof g_tmp, "%s.tmp", g_path);
    ref_tmp_path("crash/run.ckpt");
    ref_tmp_path("crash/run.ckpt.tmp");

    step();
    snapshot A, B;
    llm_train_state ta = {1, {11, 12}, 3, 0}, tb = {2, {21, 22}, 4, 1};
    take(&A, g_path, &ta);
    step();
    /* B: the model now; saved once elsewhere to know its bytes and how long a save takes */
    char bpath[1100];
    snprintf(bpath, sizeof bpath, "%s/b.ckpt", ref_tmp_dir("crash"));
    ref_tmp_path("crash/b.ckpt");
    double t0 = now_s();
    take(&B, bpath, &tb);
    double t_save = now_s() - t0;
    remove(bpath);
    size_t size = A.len;
    CHECK(A.hash != B.hash && A.len == 256 + 3 * 4 * g_np && B.len == A.len, "two different checkpoints of %zu bytes",
          size);
    printf("checkpoint: %zu bytes, a save takes %.0f ms here\n", size, 1e3 * t_save);

    /* killed at a file size: SIGXFSZ */
    long long P = (long long)(4 * g_np);
    long long cuts[] = {1, 8, 100, 255, 256, 257, 4096, 65536, 256 + P - 1, 256 + P, 256 + P + 1, 256 + 2 * P,
                        256 + 2 * P + 4097, (long long)size - 4096, (long long)size - 1};
    int n_cuts = (int)(sizeof cuts / sizeof cuts[0]), counts[2] = {0, 0};
    for (int i = 0; i < n_cuts; i++) {
        char what[64];
        snprintf(what, sizeof what, "killed at byte %lld", cuts[i]);
        int how = save_and_die(&tb, cuts[i], 0);
        CHECK(how == SIGXFSZ, "%s: the child ended with %d, not SIGXFSZ", what, how);
        int w = which(&A, &B, what);
        CHECK(w == 0, "%s: the old checkpoint is gone", what);
        if (w >= 0) counts[w]++;
        if (w != 0) restore(&A);
    }
    /* killed at a time: SIGKILL, over the whole save and a little past it */
    int killed = 0, n_kill = 24;
    for (int i = 0; i < n_kill; i++) {
        char what[64];
        double delay = 1.3 * t_save * i / (n_kill - 1);
        snprintf(what, sizeof what, "SIGKILL after %.1f ms", 1e3 * delay);
        int how = save_and_die(&tb, 0, delay);
        if (how == SIGKILL) killed++;
        CHECK(how == SIGKILL || how == 100, "%s: the child ended with %d", what, how);
        int w = which(&A, &B, what);
        if (w >= 0) counts[w]++;
        if (w != 0) restore(&A);
    }
    printf("%d deaths at a file size, %d by SIGKILL (of %d): the old checkpoint was there %d times, the new one "
           "complete %d times\n", n_cuts, killed, n_kill, counts[0], counts[1]);
    CHECK(counts[0] > n_cuts, "no SIGKILL landed before the rename");

    /* the next save clears a stray temporary file */
    CHECK(llm_model_save(g_model, g_path, 1, &tb) == LLM_OK && !test_file_exists(g_tmp),
          "a successful save leaves %s behind", g_tmp);
    restore(&A);

    /* a full disk: EFBIG from a file-size limit, SIGXFSZ ignored */
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, r;
    getrlimit(RLIMIT_FSIZE, &saved);
    r = saved;
    r.rlim_cur = (rlim_t)(size / 2);
    CHECK(setrlimit(RLIMIT_FSIZE, &r) == 0, "setrlimit");
    llm_status s = llm_model_save(g_model, g_path, 1, &tb);
    const char *e = llm_last_error();
    CHECK(s == LLM_ERR_IO && strstr(e, "write failed"), "a save to a full disk: status %d (%s)", (int)s, e);
    int tok[300];
    for (int i = 0; i < 300; i++) tok[i] = i;
    char dpath[1100];
    snprintf(dpath, sizeof dpath, "%s.tokens", g_path);
    ref_tmp_path("crash/run.ckpt.tokens");
    ref_tmp_path("crash/run.ckpt.tokens.tmp");
    r.rlim_cur = 300;   /* less than the 1024-byte header */
    setrlimit(RLIMIT_FSIZE, &r);
    s = llm_dataset_write(dpath, tok, 300);
    CHECK(s == LLM_ERR_IO && !test_file_exists(dpath), "a token file to a full disk: status %d (%s)", (int)s,
          llm_last_error());
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0, "setrlimit back");
    signal(SIGXFSZ, old);
    CHECK(file_hash(g_path, NULL) == A.hash && !test_file_exists(g_tmp),
          "after the failed save: the old checkpoint changed, or %s is left", g_tmp);
    int w = which(&A, &B, "after a full disk");
    CHECK(w == 0, "after a full disk, the old checkpoint does not load as it was");

    free(A.params); free(B.params); free(A.bytes); free(B.bytes);
    llm_model_free(g_model);
    return TEST_END("test_save_crash");
}
#endif
