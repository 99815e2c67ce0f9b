/* tests/test_platform.c: what differs between Linux, macOS and Windows works the same.
 *
 *   - The thread pool (pthreads, or the Win32 layer on Windows): every slice of every
 *     task runs exactly once, for thousands of tasks back to back; pools come and go.
 *   - The error message is thread-local: threads of a pool that fail at once each read
 *     back their own message.
 *   - Training is bit-identical run to run for the same thread count. `--losses` prints
 *     the losses of short runs (1 to 4 threads) with %a; `make test-windows` compares
 *     the Windows build's lines with the Linux build's, bit for bit.
 *   - Paths with non-ASCII characters (UTF-8; widened for the W functions on Windows):
 *     a checkpoint saved twice to the same name (the second replaces the first, which
 *     Windows' rename refuses to do), a token file, llama2.c's model and tokenizer, and
 *     a folder given to llm_model_load. The directory and the copied files are made by
 *     the test itself (with a wide-character literal on Windows), so a wrong conversion
 *     in the library could not go unnoticed. */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <wchar.h>

/* ---- pool ------------------------------------------------------------------------------ */
#define NSLOT 8
typedef struct { int hits[NSLOT]; int bad_nth; int nth_want; } pool_job;

static void count_slice(void *arg, int ith, int nth) {
    pool_job *j = (pool_job *)arg;
    if (nth != j->nth_want || ith < 0 || ith >= nth) { j->bad_nth = 1; return; }
    j->hits[ith]++;   /* each ith is one thread: no race */
}

static void test_pool(void) {
    CHECK(llm_cpu_count() >= 1, "llm_cpu_count() = %d", llm_cpu_count());
    for (int n = 1; n <= 5; n++) {
        llm_pool *p = llm_pool_create(n);
        CHECK(p != NULL, "pool of %d: %s", n, llm_last_error());
        if (!p) continue;
        CHECK(llm_pool_size(p) == n, "pool of %d has size %d", n, llm_pool_size(p));
        pool_job j;
        memset(&j, 0, sizeof j);
        j.nth_want = n;
        const int tasks = 3000;
        for (int t = 0; t < tasks; t++) llm_pool_run(p, count_slice, &j);
        int ok = !j.bad_nth;
        for (int i = 0; i < n; i++) ok &= j.hits[i] == tasks;
        CHECK(ok, "pool of %d: slices ran %d %d %d %d %d times (want %d each), bad nth %d", n,
              j.hits[0], j.hits[1], j.hits[2], j.hits[3], j.hits[4], tasks, j.bad_nth);
        llm_pool_free(p);
    }
    /* pools made and freed quickly, with nothing run or one task run */
    int made = 0;
    for (int k = 0; k < 50; k++) {
        llm_pool *p = llm_pool_create(3);
        if (!p) break;
        pool_job j;
        memset(&j, 0, sizeof j);
        j.nth_want = 3;
        if (k & 1) llm_pool_run(p, count_slice, &j);
        llm_pool_free(p);
        made++;
    }
    CHECK(made == 50, "only %d of 50 pools could be made: %s", made, llm_last_error());
}

/* Each thread records a failure naming itself, waits until every thread has, then reads
 * the message back: with one shared buffer, all but the last writer would read another's. */
typedef struct { volatile int arrived; int wrong; } tls_job;

static void tls_slice(void *arg, int ith, int nth) {
    tls_job *j = (tls_job *)arg;
    char want[64];
    snprintf(want, sizeof want, "thread %d of %d", ith, nth);
    llm_set_error(LLM_ERR_ARG, "thread %d of %d", ith, nth);
#if defined(__GNUC__) || defined(__clang__)
    __atomic_add_fetch(&j->arrived, 1, __ATOMIC_SEQ_CST);
    for (long spin = 0; __atomic_load_n(&j->arrived, __ATOMIC_SEQ_CST) < nth && spin < 200000000L; spin++) {}
#endif
    if (strcmp(llm_last_error(), want) != 0) j->wrong = 1;   /* each slice writes 0 or 1 only */
}

static void test_thread_local_error(void) {
    llm_pool *p = llm_pool_create(4);
    CHECK(p != NULL, "pool: %s", llm_last_error());
    if (!p) return;
    for (int round = 0; round < 20; round++) {
        tls_job j;
        memset(&j, 0, sizeof j);
        llm_pool_run(p, tls_slice, &j);
        CHECK(!j.wrong, "round %d: a thread read another thread's error message", round);
        if (j.wrong) break;
    }
    llm_pool_free(p);
}

/* ---- training, bit for bit ------------------------------------------------------------ */
#define DB 4
#define DT 32
#define DSTEPS 6

/* Losses of DSTEPS AdamW steps of a small random GPT-2 on fixed random tokens. */
static int train_losses(int threads, float *losses) {
    llm_config c = llm_config_gpt2();
    c.max_seq_len = DT; c.vocab_size = 97; c.n_layer = 2; c.n_head = 4; c.n_embd = 64;
    llm_options o;
    memset(&o, 0, sizeof o);
    o.n_threads = threads;
    llm_model *m = NULL;
    if (llm_model_create(&m, &c, &o, 1234) != LLM_OK) { CHECK(0, "create: %s", llm_last_error()); return 0; }
    int tok[DB * DT + 1];
    test_seed(99);
    for (int i = 0; i < DB * DT + 1; i++) tok[i] = (int)(test_rand_u64() % 97);
    llm_adamw_config a = llm_adamw_config_default();
    a.grad_clip = 1.0f;
    int ok = 1;
    for (int s = 0; s < DSTEPS && ok; s++) {
        float norm;
        ok = llm_model_forward(m, tok, tok + 1, DB, DT, &losses[s]) == LLM_OK &&
             llm_model_zero_grad(m) == LLM_OK && llm_model_backward(m, 1.0f) == LLM_OK &&
             llm_model_step(m, &a, 3e-3f, &norm) == LLM_OK;
    }
    CHECK(ok, "training with %d threads: %s", threads, llm_last_error());
    llm_model_free(m);
    return ok;
}

static void print_losses(void) {
    for (int th = 1; th <= 4; th++) {
        float l[DSTEPS];
        if (!train_losses(th, l)) continue;
        printf("losses simd=%s threads=%d:", llm_simd_name(llm_simd_active()), th);
        for (int s = 0; s < DSTEPS; s++) printf(" %a", (double)l[s]);
        printf("\n");
    }
}

static void test_training_repeats(void) {
    for (int th = 1; th <= 3; th++) {
        float a[DSTEPS], b[DSTEPS];
        if (!train_losses(th, a) || !train_losses(th, b)) continue;
        CHECK(memcmp(a, b, sizeof a) == 0, "%d threads: two runs differ (%a vs %a at the end)", th,
              (double)a[DSTEPS - 1], (double)b[DSTEPS - 1]);
        CHECK(a[DSTEPS - 1] < a[0], "%d threads: the loss did not fall (%g -> %g)", th, a[0], a[DSTEPS - 1]);
    }
}

/* ---- non-ASCII paths -------------------------------------------------------------------- */
/* Each name in UTF-8 (what the library is given) and as a wide literal (what the test
 * itself uses on Windows). The directory, "llm-ü-日本-😀", has two-, three- and four-byte
 * UTF-8 (the last a surrogate pair in UTF-16). */
typedef struct { const char *u8; const wchar_t *w; } name;
static const name DIR_NAME = { "llm-\xc3\xbc-\xe6\x97\xa5\xe6\x9c\xac-\xf0\x9f\x98\x80", L"llm-\u00fc-\u65e5\u672c-\U0001F600" };
static const name CKPT = { "m\xc3\xb6" "del.ckpt", L"m\u00f6del.ckpt" };
static const name CKPT_TMP = { "m\xc3\xb6" "del.ckpt.tmp", L"m\u00f6del.ckpt.tmp" };
static const name TOKS = { "t\xc3\xa5ken.bin", L"t\u00e5ken.bin" };
static const name L2C = { "st\xc3\xb6ries.bin", L"st\u00f6ries.bin" };
static const name L2T = { "t\xc3\xb6k.bin", L"t\u00f6k.bin" };

static char base[512];      /* the temporary directory (ASCII: from the environment) */
static char dir[600];       /* base/DIR_NAME */

/* The test's own file access, independent of the library's. */
#ifdef _WIN32
static const wchar_t *own_path(const name *file) {   /* base/DIR_NAME[/file] */
    static wchar_t buf[1024];
    size_t n = 0;
    for (; base[n] && n < 500; n++) buf[n] = (wchar_t)(unsigned char)base[n];
    buf[n] = 0;
    wcscat(buf, L"/");
    wcscat(buf, DIR_NAME.w);
    if (file) { wcscat(buf, L"/"); wcscat(buf, file->w); }
    return buf;
}
#else
static const char *own_path(const name *file) {
    static char buf[1024];
    if (file) snprintf(buf, sizeof buf, "%s/%s", dir, file->u8);
    else snprintf(buf, sizeof buf, "%s", dir);
    return buf;
}
#endif
static FILE *own_open(const name *file, int write) {
#ifdef _WIN32
    return _wfopen(own_path(file), write ? L"wb" : L"rb");
#else
    return fopen(own_path(file), write ? "wb" : "rb");
#endif
}
static int own_remove(const name *file) {
#ifdef _WIN32
    return _wremove(own_path(file));
#else
    return remove(own_path(file));
#endif
}
static int own_dir(int make) {
#ifdef _WIN32
    return make ? _wmkdir(own_path(NULL)) : _wrmdir(own_path(NULL));
#else
    return make ? test_mkdir(own_path(NULL)) : test_rmdir(own_path(NULL));
#endif
}
static int own_exists(const name *file) {
    FILE *f = own_open(file, 0);
    if (f) fclose(f);
    return f != NULL;
}
static int copy_in(const char *from, const name *file) {
    size_t n = 0;
    char *data = test_read_file(from, &n);
    FILE *f = data ? own_open(file, 1) : NULL;
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f) ok &= fclose(f) == 0;
    free(data);
    return ok;
}
/* The UTF-8 path the library is given. */
static const char *lib_path(const name *file) {
    static char p[4][1024];
    static int k;
    char *s = p[k++ & 3];
    snprintf(s, 1024, "%s/%s", dir, file->u8);
    return s;
}

static void test_paths(void) {
    if (!test_make_tmpdir(base, sizeof base, "llm_test_platform")) { CHECK(0, "cannot make a temporary directory"); return; }
    snprintf(dir, sizeof dir, "%s/%s", base, DIR_NAME.u8);
    CHECK(own_dir(1) == 0, "cannot make %s", dir);

    /* a checkpoint, saved twice under one name: the second must replace the first */
    llm_config c = llm_config_gpt2();
    c.max_seq_len = 8; c.vocab_size = 13; c.n_layer = 1; c.n_head = 2; c.n_embd = 8;
    llm_model *m1 = NULL, *m2 = NULL, *back = NULL;
    if (llm_model_create(&m1, &c, NULL, 1) == LLM_OK && llm_model_create(&m2, &c, NULL, 2) == LLM_OK) {
        CHECK(llm_model_save(m1, lib_path(&CKPT), 0, NULL) == LLM_OK, "save: %s", llm_last_error());
        CHECK(llm_model_save(m2, lib_path(&CKPT), 0, NULL) == LLM_OK, "save over the first: %s", llm_last_error());
        CHECK(llm_model_load(&back, lib_path(&CKPT), NULL) == LLM_OK, "load: %s", llm_last_error());
        size_t np = llm_model_num_params(m2);
        float *p2 = (float *)malloc(np * sizeof(float)), *pb = (float *)malloc(np * sizeof(float));
        if (back && p2 && pb && llm_model_get_params(m2, p2) == LLM_OK && llm_model_get_params(back, pb) == LLM_OK)
            CHECK(memcmp(p2, pb, np * sizeof(float)) == 0, "the checkpoint read back is not the second one saved");
        free(p2); free(pb);
        CHECK(own_exists(&CKPT), "the checkpoint is not under the name meant (path conversion)");
        CHECK(!own_exists(&CKPT_TMP), "the temporary file was left behind");
        /* a folder: llm_model_load looks for model.safetensors in it */
        llm_model *none = NULL;
        llm_status s = llm_model_load(&none, dir, NULL);
        CHECK(s == LLM_ERR_IO && strstr(llm_last_error(), "model.safetensors") != NULL,
              "load of a folder: status %d, '%s' (want it taken as a folder)", (int)s, llm_last_error());
        llm_model_free(none);
    } else CHECK(0, "create: %s", llm_last_error());
    llm_model_free(m1); llm_model_free(m2); llm_model_free(back);

    /* a token file: written, then memory-mapped */
    {
        int tok[100];
        for (int i = 0; i < 100; i++) tok[i] = (i * 37) % 1000;
        llm_dataset *d = NULL;
        CHECK(llm_dataset_write(lib_path(&TOKS), tok, 100) == LLM_OK, "dataset_write: %s", llm_last_error());
        CHECK(own_exists(&TOKS), "the token file is not under the name meant (path conversion)");
        CHECK(llm_dataset_open(&d, lib_path(&TOKS)) == LLM_OK, "dataset_open: %s", llm_last_error());
        if (d) {
            int same = llm_dataset_len(d) == 100;
            for (int i = 0; same && i < 100; i++) same = llm_dataset_tokens(d)[i] == tok[i];
            CHECK(same, "the token file read back differs");
        }
        llm_dataset_close(d);
    }

    /* llama2.c's model and tokenizer, copied in by the test (mapped and read by the library) */
    char src_m[600], src_t[600];
    snprintf(src_m, sizeof src_m, "%s/stories260K/stories260K.bin", test_data_dir());
    snprintf(src_t, sizeof src_t, "%s/stories260K/tok512.bin", test_data_dir());
    if (!test_file_exists(src_m) || !test_file_exists(src_t)) {
        TEST_SKIP("stories260K not found under %s (make data)", test_data_dir());
    } else if (!copy_in(src_m, &L2C) || !copy_in(src_t, &L2T)) {
        CHECK(0, "cannot copy the stories260K files into %s", dir);
    } else {
        llm_model *a = NULL, *b = NULL;
        CHECK(llm_model_load(&a, src_m, NULL) == LLM_OK, "load %s: %s", src_m, llm_last_error());
        CHECK(llm_model_load(&b, lib_path(&L2C), NULL) == LLM_OK, "load from the non-ASCII path: %s", llm_last_error());
        if (a && b) {
            size_t np = llm_model_num_params(a);
            float *pa = (float *)malloc(np * sizeof(float)), *pb = (float *)malloc(np * sizeof(float));
            CHECK(pa && pb && llm_model_num_params(b) == np && llm_model_get_params(a, pa) == LLM_OK &&
                  llm_model_get_params(b, pb) == LLM_OK && memcmp(pa, pb, np * sizeof(float)) == 0,
                  "stories260K from the non-ASCII path differs");
            free(pa); free(pb);
        }
        llm_model_free(a); llm_model_free(b);
        llm_llama_tokenizer *t = NULL;
        CHECK(llm_llama_tokenizer_load(&t, lib_path(&L2T), 512) == LLM_OK, "tokenizer from the non-ASCII path: %s", llm_last_error());
        if (t) {
            int ids[64], n = 0;
            CHECK(llm_llama_tokenizer_encode(t, "Once upon a time", 16, 1, 0, ids, 64, &n) == LLM_OK && n > 2,
                  "encode: %s", llm_last_error());
        }
        llm_llama_tokenizer_free(t);
    }

    const name *files[] = { &CKPT, &TOKS, &L2C, &L2T };
    for (int i = 0; i < 4; i++) own_remove(files[i]);
    CHECK(own_dir(0) == 0, "%s not empty at the end", dir);
    test_rmdir(base);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--losses") == 0) { print_losses(); return test__failed ? 1 : 0; }
    test_pool();
    test_thread_local_error();
    test_training_repeats();
    test_paths();
    return TEST_END("test_platform");
}
