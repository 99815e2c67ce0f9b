/* test_bpe_train: byte-level BPE training (llm_tokenizer_train) and saving.
 *   - merges equal those of tests/bpe_train_ref.py, a plain-Python implementation of the
 *     same rule (every merge a full recount), on Tiny Shakespeare's first 20 KB, in both
 *     pre-tokenizer modes, and on small corpora full of ties, repeats ("aaaa"), invalid
 *     UTF-8, non-ASCII letters and digits, whitespace runs and special tokens;
 *   - cases checked by hand: "aaa" holds (a, a) twice, ties go to the smallest (left,
 *     right), words never span two texts, special tokens are not learned;
 *   - round trip of random bytes; saved files load back (tokenizer.json, vocab.json +
 *     merges.txt) and encode identically, with their mode and special tokens;
 *   - the same merges with 1, 2, 3 and 4 threads;
 *   - bad input gives named errors. */
#define _POSIX_C_SOURCE 200809L  /* mkdtemp, popen */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <unistd.h>

static char tmpdir[256];

static llm_tokenizer *train1(const char *text, size_t len, int vocab, int mode, const char *const *sp, int nsp,
                             llm_pool *pool) {
    llm_tokenizer_train_config c = llm_tokenizer_train_config_default();
    c.pretokenize = mode; c.special = sp; c.n_special = nsp; c.pool = pool;
    llm_tokenizer *t = NULL;
    if (llm_tokenizer_train(&t, &text, &len, 1, vocab, &c) != LLM_OK) fprintf(stderr, "train: %s\n", llm_last_error());
    return t;
}

/* ---- against the Python reference ---------------------------------------------------- */
static int have_python(void) {
    return test_file_exists("/usr/bin/python3") && test_file_exists("tests/bpe_train_ref.py");
}

/* Train both ways and compare the merge lists; returns the number of merges compared. */
static void compare_with_reference(const char *what, const char *text, size_t len, int vocab, int mode,
                                   const char *const *sp, int nsp) {
    char path[320], cmd[2048];
    snprintf(path, sizeof path, "%s/corpus.txt", tmpdir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len) { CHECK(0, "%s: cannot write %s", what, path); if (f) fclose(f); return; }
    fclose(f);
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/bpe_train_ref.py %s %d%s", path, vocab,
                     mode == LLM_PRETOK_LINES ? " --lines" : "");
    for (int k = 0; k < nsp; k++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --special '%s'", sp[k]);
    FILE *p = popen(cmd, "r");
    if (!p) { CHECK(0, "%s: cannot run %s", what, cmd); return; }
    llm_tokenizer *t = train1(text, len, vocab, mode, sp, nsp, NULL);
    CHECK(t != NULL, "%s: training failed", what);
    int r = 0, a, b, bad = 0, nm = t ? llm_tokenizer_n_merges(t) : 0;
    while (fscanf(p, "%d %d", &a, &b) == 2) {
        int ca = -1, cb = -1;
        if (t) llm_tokenizer_merge(t, r, &ca, &cb);
        if (!bad && (ca != a || cb != b)) {
            fprintf(stderr, "%s: merge %d is (%d, %d), the reference's (%d, %d)\n", what, r, ca, cb, a, b);
            bad = 1;
        }
        r++;
    }
    int rc = pclose(p);
    CHECK(rc == 0, "%s: the reference failed (%s)", what, cmd);
    CHECK(!bad && r == nm && r > 0, "%s: %d merges here, %d in the reference, equal: %s", what, nm, r, bad ? "no" : "yes");
    if (t && nsp) {
        int first = llm_tokenizer_find(t, sp[0], strlen(sp[0]));
        CHECK(first == 256 + nm, "%s: special token id %d, want 256 + %d merges", what, first, nm);
    }
    printf("%s: %d merges equal the reference's\n", what, r);
    llm_tokenizer_free(t);
}

/* A corpus with many ties and the awkward cases of the pre-tokenizer. */
static char *tricky_corpus(size_t *len) {
    static const char *const parts[] = {
        "aaaa aaa aa a ", "abab ab ba baba ", "I'll you're we've he'd it's 'tis ", "  \t\n\n  \r\n",
        "caf\xc3\xa9 na\xc3\xafve \xce\xb1\xce\xb2\xce\xb3 \xce\xb1\xce\xb2 ", "123 4567 89 \xd9\xa3\xd9\xa4 ",
        "\xff\xfe\xff\xfe \xc3\x28 \xe2\x82 \xed\xa0\x80 \xf0\x9f\x98\x80\xf0\x9f\x98\x80 ", "x<|endoftext|>y ",
        "...!!?? ", "zzzz<sep>zz\n", "the then they them\n",
    };
    size_t cap = 1 << 14, n = 0;
    char *s = (char *)malloc(cap);
    test_seed(7);
    for (int rep = 0; rep < 60; rep++) {
        const char *p = parts[test_rand_u64() % (sizeof parts / sizeof *parts)];
        size_t l = strlen(p);
        if (n + l > cap) break;
        memcpy(s + n, p, l);
        n += l;
    }
    *len = n;
    return s;
}

/* Random bytes from a small alphabet (lots of ties and overlapping pairs). */
static char *random_corpus(size_t n, unsigned long long seed) {
    static const char alpha[] = "aab  \n\xff\xc3\xa9";
    char *s = (char *)malloc(n);
    test_seed(seed);
    for (size_t i = 0; i < n; i++) s[i] = alpha[test_rand_u64() % (sizeof alpha - 1)];
    return s;
}

static char *shakespeare(size_t *len) {
    char *t = test_read_data("tinyshakespeare/input.txt", len);
    if (t) return t;
    /* without the data: a generated text of English-like words, so nothing is skipped */
    static const char *const w[] = {"the", "king", "ROMEO", "of", "and", "thou", "art", "my", "lord", "love", "night", "sweet"};
    size_t n = 0, cap = 400000;
    t = (char *)malloc(cap);
    test_seed(3);
    while (n + 16 < cap) {
        const char *x = w[test_rand_u64() % 12];
        n += (size_t)sprintf(t + n, "%s%s", x, test_rand_u64() % 9 ? " " : ":\n");
    }
    *len = n;
    return t;
}

static void test_reference(void) {
    if (!have_python()) { TEST_SKIP("reference comparison: no /usr/bin/python3 or tests/bpe_train_ref.py (run from the repo root)"); return; }
    size_t len;
    char *text = shakespeare(&len);
    size_t n = len < 20000 ? len : 20000;
    compare_with_reference("shakespeare 20 KB, GPT-2 words, V=756", text, n, 756, LLM_PRETOK_GPT2, NULL, 0);
    compare_with_reference("shakespeare 20 KB, lines, V=656", text, n, 656, LLM_PRETOK_LINES, NULL, 0);
    free(text);

    static const char *const sp[2] = {"<|endoftext|>", "<sep>"};
    char *tr = tricky_corpus(&len);
    compare_with_reference("tricky corpus, GPT-2 words, to the end", tr, len, 100000, LLM_PRETOK_GPT2, NULL, 0);
    compare_with_reference("tricky corpus, lines, to the end", tr, len, 100000, LLM_PRETOK_LINES, NULL, 0);
    compare_with_reference("tricky corpus, 2 special tokens", tr, len, 100000, LLM_PRETOK_GPT2, sp, 2);
    compare_with_reference("tricky corpus, lines, 2 special tokens", tr, len, 100000, LLM_PRETOK_LINES, sp, 2);
    free(tr);
    char *rnd = random_corpus(3000, 11);
    compare_with_reference("random bytes, GPT-2 words, to the end", rnd, 3000, 100000, LLM_PRETOK_GPT2, NULL, 0);
    compare_with_reference("random bytes, lines, V=400", rnd, 3000, 400, LLM_PRETOK_LINES, NULL, 0);
    free(rnd);
}

/* ---- by hand ------------------------------------------------------------------------------ */
static void expect_merges(const char *what, llm_tokenizer *t, int n, const int *pairs) {
    CHECK(t && llm_tokenizer_n_merges(t) == n, "%s: %d merges, want %d", what, t ? llm_tokenizer_n_merges(t) : -1, n);
    for (int r = 0; t && r < n && r < llm_tokenizer_n_merges(t); r++) {
        int a, b, z = llm_tokenizer_merge(t, r, &a, &b);
        CHECK(a == pairs[2 * r] && b == pairs[2 * r + 1] && z == 256 + r, "%s: merge %d is (%d, %d) -> %d, want (%d, %d) -> %d",
              what, r, a, b, z, pairs[2 * r], pairs[2 * r + 1], 256 + r);
    }
    llm_tokenizer_free(t);
}

static void test_by_hand(void) {
    /* one word "aaa": (a, a) twice, so it merges; then [aa, a] holds (aa, a) once: stop */
    static const int aaa[] = {'a', 'a'};
    expect_merges("\"aaa\" counts (a,a) twice", train1("aaa", 3, 1000, LLM_PRETOK_LINES, NULL, 0, NULL), 1, aaa);
    /* "ab\n" x2, "ba\n" x2: (a,b) (b,\n) (b,a) (a,\n) all count 2: the smallest is (a, \n) */
    static const int tie[] = {'a', '\n'};
    const char *tt = "ab\nba\nab\nba\n";
    llm_tokenizer *t = train1(tt, strlen(tt), 257, LLM_PRETOK_LINES, NULL, 0, NULL);
    expect_merges("ties go to the smallest (left, right)", t, 1, tie);
    /* GPT-2 words "aaaa" x1, " aaaa" x2: (a,a) 3 + 6 -> 256; (256,256) 1 + 2 -> 257;
     * (' ', 257) 2 -> 258 */
    const char *t4 = "aaaa aaaa aaaa";
    static const int a4b[] = {'a', 'a', 256, 256, ' ', 257};
    expect_merges("\"aaaa aaaa aaaa\"", train1(t4, strlen(t4), 1000, LLM_PRETOK_GPT2, NULL, 0, NULL), 3, a4b);

    /* words never span two texts: "a", "b", "a", "b" hold no pair; "ab", "ab" one, twice */
    const char *texts[4] = {"a", "b", "a", "b"};
    size_t lens[4] = {1, 1, 1, 1};
    llm_tokenizer_train_config c = llm_tokenizer_train_config_default();
    t = NULL;
    CHECK(llm_tokenizer_train(&t, texts, lens, 4, 1000, &c) == LLM_OK && t && llm_tokenizer_n_merges(t) == 0,
          "texts a, b, a, b: no merge across texts");
    llm_tokenizer_free(t);
    const char *t2[2] = {"ab", "ab"};
    size_t l2[2] = {2, 2};
    static const int ab[] = {'a', 'b'};
    t = NULL;
    CHECK(llm_tokenizer_train(&t, t2, l2, 2, 1000, &c) == LLM_OK, "texts ab, ab");
    expect_merges("texts ab, ab", t, 1, ab);

    /* special tokens are cut out, not learned: a corpus of nothing else learns nothing */
    static const char *const eot[1] = {"<|endoftext|>"};
    char buf[13 * 50];
    for (int i = 0; i < 50; i++) memcpy(buf + 13 * i, "<|endoftext|>", 13);
    t = train1(buf, sizeof buf, 1000, LLM_PRETOK_GPT2, eot, 1, NULL);
    CHECK(t && llm_tokenizer_n_merges(t) == 0 && llm_tokenizer_vocab_size(t) == 257 && llm_tokenizer_eot(t) == 256,
          "a corpus of special tokens: 0 merges, V 257, <|endoftext|> = 256");
    if (t) {
        int ids[8];
        size_t n = 0;
        CHECK(llm_tokenizer_encode(t, "x<|endoftext|>", 14, LLM_TOKENIZE_SPECIAL, ids, 8, &n) == LLM_OK && n == 2 &&
              ids[0] == 'x' && ids[1] == 256, "the special token encodes to its id");
    }
    llm_tokenizer_free(t);
    /* vocab_size 256: no merges, the bytes alone */
    t = train1("hello hello", 11, 256, LLM_PRETOK_GPT2, NULL, 0, NULL);
    CHECK(t && llm_tokenizer_n_merges(t) == 0 && llm_tokenizer_vocab_size(t) == 256, "vocab_size 256: bytes only");
    llm_tokenizer_free(t);
    /* invalid UTF-8 is learned like any bytes */
    t = train1("\xff\xfe\xff\xfe\xff\xfe", 6, 300, LLM_PRETOK_GPT2, NULL, 0, NULL);
    int a = -1, b = -1;
    CHECK(t && llm_tokenizer_merge(t, 0, &a, &b) == 256 && a == 0xff && b == 0xfe, "invalid UTF-8: (0xff, 0xfe) learned");
    llm_tokenizer_free(t);
}

/* ---- round trips, saving and loading ------------------------------------------------------- */
static int same_encoding(const llm_tokenizer *x, const llm_tokenizer *y, const char *text, size_t len, int flags) {
    int *a = (int *)malloc((len + 1) * sizeof(int)), *b = (int *)malloc((len + 1) * sizeof(int));
    size_t na = 0, nb = 0;
    int ok = llm_tokenizer_encode(x, text, len, flags, a, len + 1, &na) == LLM_OK &&
             llm_tokenizer_encode(y, text, len, flags, b, len + 1, &nb) == LLM_OK && na == nb &&
             memcmp(a, b, na * sizeof(int)) == 0;
    free(a); free(b);
    return ok;
}

static void test_round_trip_and_save(void) {
    size_t len;
    char *text = shakespeare(&len);
    static const char *const sp[2] = {"<|endoftext|>", "<|im sep|>"};
    char *rnd = random_corpus(5000, 5);
    for (size_t i = 0; i < 5000; i += 7) rnd[i] = (char)(test_rand_u64() & 0xFF);   /* any byte */
    for (int mode = 0; mode < 2; mode++) {
        const char *mname = mode ? "lines" : "GPT-2 words";
        llm_tokenizer *t = train1(text, len < 300000 ? len : 300000, 2048 + 2, mode, sp, 2, NULL);
        CHECK(t != NULL, "%s: train", mname);
        if (!t) continue;
        CHECK(llm_tokenizer_pretokenize(t) == mode, "%s: mode recorded", mname);
        /* round trip of arbitrary bytes */
        int *ids = (int *)malloc(5000 * sizeof(int));
        char *back = (char *)malloc(5000);
        size_t n = 0, m = 0;
        CHECK(llm_tokenizer_encode(t, rnd, 5000, 0, ids, 5000, &n) == LLM_OK &&
              llm_tokenizer_decode(t, ids, n, back, 5000, &m) == LLM_OK && m == 5000 && memcmp(back, rnd, 5000) == 0,
              "%s: decode(encode(random bytes)) is the bytes", mname);
        free(ids); free(back);
        /* save, load three ways, encode the same */
        CHECK(llm_tokenizer_save(t, tmpdir) == LLM_OK, "%s: save: %s", mname, llm_last_error());
        char p1[320], p2[320];
        llm_tokenizer *dir = NULL, *vj = NULL;
        CHECK(llm_tokenizer_load(&dir, tmpdir) == LLM_OK, "%s: load the directory: %s", mname, llm_last_error());
        snprintf(p1, sizeof p1, "%s/vocab.json", tmpdir);
        snprintf(p2, sizeof p2, "%s/merges.txt", tmpdir);
        CHECK(llm_tokenizer_load(&vj, p1) == LLM_OK, "%s: load vocab.json + merges.txt: %s", mname, llm_last_error());
        if (dir) {
            const char *sample = "ROMEO:\nBut soft, what light<|endoftext|> through <|im sep|>yonder window breaks?\n";
            CHECK(llm_tokenizer_pretokenize(dir) == mode, "%s: tokenizer.json keeps the mode", mname);
            CHECK(llm_tokenizer_vocab_size(dir) == llm_tokenizer_vocab_size(t) &&
                  llm_tokenizer_n_merges(dir) == llm_tokenizer_n_merges(t), "%s: same size loaded", mname);
            CHECK(same_encoding(t, dir, text, len < 100000 ? len : 100000, 0) && same_encoding(t, dir, rnd, 5000, 0) &&
                  same_encoding(t, dir, sample, strlen(sample), LLM_TOKENIZE_SPECIAL),
                  "%s: the loaded tokenizer.json encodes as the trained one", mname);
            int id = llm_tokenizer_find(dir, sp[1], strlen(sp[1]));
            CHECK(id == 256 + llm_tokenizer_n_merges(t) + 1, "%s: special token 2 has id %d", mname, id);
        }
        if (vj && mode == LLM_PRETOK_GPT2)   /* vocab.json + merges.txt know GPT-2 words only */
            CHECK(same_encoding(t, vj, text, len < 100000 ? len : 100000, 0), "%s: vocab.json + merges.txt encode the same", mname);
        for (int r = 0; vj && r < llm_tokenizer_n_merges(t); r++) {
            int a1, b1, a2, b2;
            if (llm_tokenizer_merge(t, r, &a1, &b1) != llm_tokenizer_merge(vj, r, &a2, &b2) || a1 != a2 || b1 != b2) {
                CHECK(0, "%s: merge %d differs after vocab.json + merges.txt", mname, r);
                break;
            }
        }
        llm_tokenizer_free(dir); llm_tokenizer_free(vj); llm_tokenizer_free(t);
        remove(p1); remove(p2);
        snprintf(p1, sizeof p1, "%s/tokenizer.json", tmpdir);
        remove(p1);
    }
    /* saving a loaded GPT-2 vocabulary gives the same tokenizer back */
    char vdir[1024];
    snprintf(vdir, sizeof vdir, "%s/gpt2", test_data_dir());
    llm_tokenizer *g = NULL, *g2 = NULL;
    if (llm_tokenizer_load(&g, vdir) == LLM_OK) {
        CHECK(llm_tokenizer_save(g, tmpdir) == LLM_OK && llm_tokenizer_load(&g2, tmpdir) == LLM_OK, "GPT-2 saved and loaded: %s", llm_last_error());
        if (g2) CHECK(llm_tokenizer_n_merges(g2) == 50000 && llm_tokenizer_eot(g2) == 50256 &&
                      same_encoding(g, g2, text, len < 200000 ? len : 200000, 0), "GPT-2 saved and loaded encodes the same");
        const char *names[3] = {"vocab.json", "merges.txt", "tokenizer.json"};
        for (int k = 0; k < 3; k++) { char p[320]; snprintf(p, sizeof p, "%s/%s", tmpdir, names[k]); remove(p); }
    } else {
        TEST_SKIP("GPT-2 save/load: no vocabulary at %s", vdir);
    }
    llm_tokenizer_free(g); llm_tokenizer_free(g2);
    CHECK(llm_tokenizer_save(NULL, tmpdir) == LLM_ERR_ARG, "save NULL");
    {
        llm_tokenizer *t = train1("hello hello", 11, 300, 0, NULL, 0, NULL);
        char p[320];
        snprintf(p, sizeof p, "%s/no/such/dir", tmpdir);
        CHECK(t && llm_tokenizer_save(t, p) == LLM_ERR_IO, "save into a missing directory: LLM_ERR_IO");
        llm_tokenizer_free(t);
    }
    free(rnd); free(text);
}

/* ---- threads ------------------------------------------------------------------------------ */
static void test_threads(void) {
    size_t len;
    char *text = shakespeare(&len);
    if (TEST_SAN && len > 200000) len = 200000;   /* still 3 shares of 64 KB or more */
    static const char *const sp[1] = {"<|endoftext|>"};
    for (int mode = 0; mode < 2; mode++) {
        llm_tokenizer *ref = train1(text, len, 4096, mode, sp, 1, NULL);
        CHECK(ref != NULL, "threads: train");
        for (int nth = 1; ref && nth <= 4; nth++) {
            llm_pool *pool = llm_pool_create(nth);
            llm_tokenizer *t = train1(text, len, 4096, mode, sp, 1, pool);
            int same = t && llm_tokenizer_n_merges(t) == llm_tokenizer_n_merges(ref);
            for (int r = 0; same && r < llm_tokenizer_n_merges(ref); r++) {
                int a1, b1, a2, b2;
                llm_tokenizer_merge(ref, r, &a1, &b1); llm_tokenizer_merge(t, r, &a2, &b2);
                same = a1 == a2 && b1 == b2;
            }
            CHECK(same, "%s: %d threads give the same %d merges", mode ? "lines" : "GPT-2 words", nth, llm_tokenizer_n_merges(ref));
            llm_tokenizer_free(t);
            llm_pool_free(pool);
        }
        llm_tokenizer_free(ref);
    }
    free(text);
}

/* ---- bad input ------------------------------------------------------------------------------ */
static void expect_err(llm_status want, const char *what, const char *const *texts, const size_t *lens, int n, int vocab,
                       const char *const *sp, int nsp, int mode) {
    llm_tokenizer_train_config c = llm_tokenizer_train_config_default();
    c.special = sp; c.n_special = nsp; c.pretokenize = mode;
    llm_tokenizer *t = (llm_tokenizer *)&c;   /* must come back NULL */
    llm_status s = llm_tokenizer_train(&t, texts, lens, n, vocab, &c);
    CHECK(s == want && t == NULL && strlen(llm_last_error()) > 10, "%s: status %d (%s), want %d", what, s, llm_last_error(), want);
}

static void test_errors(void) {
    const char *one[1] = {"some text"};
    size_t l1[1] = {9}, l0[1] = {0};
    static const char *const empty[1] = {""}, *const byte1[1] = {"x"}, *const dup[2] = {"<a>", "<a>"},
                             *const bad[1] = {"<\xff>"}, *const nul[1] = {NULL};
    expect_err(LLM_ERR_ARG, "no texts", NULL, NULL, 0, 300, NULL, 0, 0);
    expect_err(LLM_ERR_ARG, "an empty text", one, l0, 1, 300, NULL, 0, 0);
    expect_err(LLM_ERR_ARG, "vocab_size 255", one, l1, 1, 255, NULL, 0, 0);
    expect_err(LLM_ERR_ARG, "vocab_size 256 with a special token", one, l1, 1, 256, dup, 1, 0);
    expect_err(LLM_ERR_ARG, "vocab_size above 2^24", one, l1, 1, (1 << 24) + 1, NULL, 0, 0);
    expect_err(LLM_ERR_ARG, "an empty special token", one, l1, 1, 300, empty, 1, 0);
    expect_err(LLM_ERR_ARG, "a one-byte special token", one, l1, 1, 300, byte1, 1, 0);
    expect_err(LLM_ERR_ARG, "a special token twice", one, l1, 1, 300, dup, 2, 0);
    expect_err(LLM_ERR_ARG, "a special token not UTF-8", one, l1, 1, 300, bad, 1, 0);
    expect_err(LLM_ERR_ARG, "a NULL special token", one, l1, 1, 300, nul, 1, 0);
    expect_err(LLM_ERR_ARG, "n_special -1", one, l1, 1, 300, NULL, -1, 0);
    expect_err(LLM_ERR_ARG, "pretokenize 7", one, l1, 1, 300, NULL, 0, 7);
    CHECK(llm_tokenizer_train(NULL, one, l1, 1, 300, NULL) == LLM_ERR_ARG, "out NULL");
    const char *nt[1] = {NULL};
    expect_err(LLM_ERR_ARG, "a NULL text", nt, l1, 1, 300, NULL, 0, 0);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/llm_test_bpe_XXXXXX");
    if (!mkdtemp(tmpdir)) { CHECK(0, "mkdtemp failed"); return TEST_END("test_bpe_train"); }
    test_by_hand();
    test_errors();
#if !TEST_SAN   /* the Python reference is slow beside the sanitizers: the plain build runs it */
    test_reference();
#else
    (void)test_reference;
#endif
    test_round_trip_and_save();
    test_threads();
    char p[320];
    snprintf(p, sizeof p, "%s/corpus.txt", tmpdir);
    remove(p);
    CHECK(rmdir(tmpdir) == 0, "temp dir %s not empty at the end", tmpdir);
    return TEST_END("test_bpe_train");
}
