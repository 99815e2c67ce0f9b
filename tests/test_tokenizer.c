/* test_tokenizer: the GPT-2 tokenizer against reference ids.
 *   - ../shared/data/tokenizer/sample*.tokens.txt and tinyshakespeare/input.gpt2.tokens.txt,
 *     from all three vocabulary formats (tokenizer.json is written here, merges both as
 *     "a b" strings and as ["a","b"] pairs);
 *   - tests/data/tokenizer_cases.txt: edge cases from js-tiktoken / gpt-3-encoder, plus
 *     hand-checked ones where JavaScript's \s differs from Unicode White_Space;
 *   - round trip of random bytes (invalid UTF-8 included), heap BPE == reference BPE,
 *     streaming decoder, special tokens, pool encode == single-thread, two tokenizers
 *     in two threads, malformed vocabularies give errors. */
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"
#include <pthread.h>

/* "id\nid\n..." -> ints, from file `rel` under the test data directory */
static int *read_ids(const char *rel, size_t *n) {
    size_t len;
    char *t = test_read_data(rel, &len);
    if (!t) return NULL;
    int *ids = (int *)malloc((len / 2 + 1) * sizeof(int));
    size_t k = 0;
    char *p = t;
    while (*p) {
        char *q;
        long v = strtol(p, &q, 10);
        if (q == p) break;
        ids[k++] = (int)v;
        p = q;
    }
    free(t);
    *n = k;
    return ids;
}

static int same_ids(const int *a, size_t na, const int *b, size_t nb, const char *what) {
    if (na != nb) { fprintf(stderr, "%s: %lu ids, expected %lu\n", what, (unsigned long)na, (unsigned long)nb); }
    size_t m = na < nb ? na : nb;
    for (size_t i = 0; i < m; i++)
        if (a[i] != b[i]) { fprintf(stderr, "%s: first difference at id %lu: %d, expected %d\n", what, (unsigned long)i, a[i], b[i]); return 0; }
    return na == nb;
}

/* Encode text and compare with expected ids. */
static int encode_matches(const llm_tokenizer *tok, const char *text, size_t len, int flags,
                          const int *want, size_t nwant, const char *what) {
    int *ids = (int *)malloc((len + 1) * sizeof(int));
    size_t n = 0;
    llm_status s = llm_tokenizer_encode(tok, text, len, flags, ids, len, &n);
    int ok = s == LLM_OK && same_ids(ids, n, want, nwant, what);
    if (s != LLM_OK) fprintf(stderr, "%s: %s\n", what, llm_last_error());
    free(ids);
    return ok;
}

/* ---- writing a tokenizer.json from encoder.json + vocab.bpe ------------------------------ */
static void put_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}
/* dir/encoder.json and dir/vocab.bpe into *vocab and *merges (NULL where unreadable). */
static void read_gpt2_files(const char *dir, char **vocab, size_t *vl, char **merges, size_t *ml) {
    char p[1024];
    snprintf(p, sizeof p, "%s/encoder.json", dir);
    *vocab = test_read_file(p, vl);
    snprintf(p, sizeof p, "%s/vocab.bpe", dir);
    *merges = test_read_file(p, ml);
}
static int write_tokenizer_json(const char *out, const char *dir, int pairs) {
    size_t vl, ml;
    char *vocab, *merges;
    read_gpt2_files(dir, &vocab, &vl, &merges, &ml);
    FILE *f = fopen(out, "wb");
    if (!vocab || !merges || !f) { free(vocab); free(merges); if (f) fclose(f); return 0; }
    fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 50256, \"content\": \"<|endoftext|>\", "
               "\"single_word\": false, \"special\": true}],\n \"model\": {\"type\": \"BPE\", \"dropout\": null,\n \"vocab\": ");
    fwrite(vocab, 1, vl, f);
    fprintf(f, ",\n \"merges\": [");
    int first = 1;
    char *line = merges, *end = merges + ml;
    while (line < end) {
        char *nl = (char *)memchr(line, '\n', (size_t)(end - line));
        if (!nl) nl = end;
        if (line[0] != '#' || strncmp(line, "#version", 8) != 0) {
            char *sp = (char *)memchr(line, ' ', (size_t)(nl - line));
            if (sp) {
                fputs(first ? "\n  " : ",\n  ", f);
                first = 0;
                if (pairs) {
                    fputc('[', f); put_json_string(f, line, (size_t)(sp - line)); fputc(',', f);
                    put_json_string(f, sp + 1, (size_t)(nl - sp - 1)); fputc(']', f);
                } else {
                    put_json_string(f, line, (size_t)(nl - line));
                }
            }
        }
        line = nl + 1;
    }
    fprintf(f, "]}}\n");
    free(vocab); free(merges);
    return fclose(f) == 0;
}

/* ---- reference data ---------------------------------------------------------------------- */
static void test_reference_files(const llm_tokenizer *tok, const char *name, int full) {
    const char *dd = test_data_dir();
    size_t tl, n1, n2, ns;
    char *text = test_read_data("tokenizer/sample.txt", &tl);
    int *plain = read_ids("tokenizer/sample.tokens.txt", &n1);
    int *special = read_ids("tokenizer/sample.special.tokens.txt", &n2);
    if (!text || !plain || !special) { TEST_SKIP("%s: tokenizer/sample files not found under %s", name, dd); }
    else {
        char what[256];
        snprintf(what, sizeof what, "%s: sample.txt plain", name);
        CHECK(n1 == 1649 && encode_matches(tok, text, tl, 0, plain, n1, what), "%s", what);
        snprintf(what, sizeof what, "%s: sample.txt special", name);
        CHECK(n2 == 1623 && encode_matches(tok, text, tl, LLM_TOKENIZE_SPECIAL, special, n2, what), "%s", what);
        char *back = (char *)malloc(tl + 1);
        size_t bl;
        CHECK(llm_tokenizer_decode(tok, plain, n1, back, tl, &bl) == LLM_OK && bl == tl && memcmp(back, text, tl) == 0,
              "%s: decode(sample.tokens) == sample.txt", name);
        CHECK(llm_tokenizer_decode(tok, special, n2, back, tl, &bl) == LLM_OK && bl == tl && memcmp(back, text, tl) == 0,
              "%s: decode(sample.special.tokens) == sample.txt", name);
        free(back);
    }
    free(text); free(plain); free(special);

    text = test_read_data("tinyshakespeare/input.txt", &tl);
    int *ref = read_ids("tinyshakespeare/input.gpt2.tokens.txt", &ns);
    if (!text || !ref) { TEST_SKIP("%s: tinyshakespeare files not found under %s", name, dd); }
    else if (full) {
        char what[256];
        snprintf(what, sizeof what, "%s: tinyshakespeare (whole file)", name);
        CHECK(ns == 338025 && encode_matches(tok, text, tl, 0, ref, ns, what), "%s", what);
    } else {
        /* A prefix ending at a cut point (ASCII non-space then ' ') encodes to a prefix of
         * the reference ids: compare the first ~100 KB. */
        size_t cut = 100000;
        while (cut < tl && !(text[cut] == ' ' && text[cut - 1] != ' ' && text[cut - 1] != '\n')) cut++;
        int *ids = (int *)malloc(cut * sizeof(int));
        size_t n = 0;
        llm_status s = llm_tokenizer_encode(tok, text, cut, 0, ids, cut, &n);
        CHECK(s == LLM_OK && n <= ns && same_ids(ids, n, ref, n, "shakespeare prefix") && n > 20000,
              "%s: tinyshakespeare first %lu bytes", name, (unsigned long)cut);
        free(ids);
    }
    free(text); free(ref);
}

/* ---- edge cases -------------------------------------------------------------------------- */
static int hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_cases_file(const llm_tokenizer *tok) {
    size_t len;
    char *t = test_read_file("tests/data/tokenizer_cases.txt", &len);
    if (!t) { TEST_SKIP("tests/data/tokenizer_cases.txt not found (run from the repository root)"); return; }
    int ncases = 0, bad = 0;
    char *line = t;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (line[0] != '#' && line[0] != 0) {
            char *tab = strchr(line, '\t');
            if (!tab) { bad++; break; }
            size_t hl = (size_t)(tab - line);
            char *text = (char *)malloc(hl / 2 + 1);
            for (size_t i = 0; i + 1 < hl; i += 2) text[i / 2] = (char)(hexval(line[i]) * 16 + hexval(line[i + 1]));
            int *want = (int *)malloc((strlen(tab) / 2 + 1) * sizeof(int));
            size_t nw = 0;
            char *p = tab + 1;
            while (*p && *p != '\t') {
                char *q;
                long v = strtol(p, &q, 10);
                if (q == p) break;
                want[nw++] = (int)v;
                p = q;
                while (*p == ' ') p++;
            }
            char what[128];
            snprintf(what, sizeof what, "case %d (%.30s...)", ncases, line);
            if (!encode_matches(tok, text, hl / 2, 0, want, nw, what)) bad++;
            free(text); free(want);
            ncases++;
        }
        if (!nl) break;
        line = nl + 1;
    }
    CHECK(bad == 0 && ncases > 150, "edge cases: %d of %d differ", bad, ncases);
    free(t);
}

/* ---- invariants ---------------------------------------------------------------------------- */
static uint32_t rnd(void) { return (uint32_t)(test_rand_u64() >> 11); }   /* tests/test.h's xorshift */

/* Random byte strings: mostly bytes that make UTF-8 (valid or broken) and spaces. */
static void random_text(char *buf, size_t n) {
    static const char *const bits[] = {" ", "  ", "\n", "\t", "'s", "'", "a", "Z", "7", "\xC3\xA9", "\xE2\x82\xAC",
        "\xF0\x9F\x98\x80", "\xC2\x85", "\xE3\x80\x80", "\xC2\xA0", "<|endoftext|>", "\xC3", "\xE2\x82", "\x80", "\xFF",
        "\xED\xA0\x80", "\xC0\xAF", "\xF4\x90\x80\x80", ".", "!?"};
    size_t i = 0;
    while (i < n) {
        if (rnd() % 4 == 0) { buf[i++] = (char)(rnd() & 0xFF); continue; }
        const char *b = bits[rnd() % (sizeof bits / sizeof bits[0])];
        size_t l = strlen(b);
        if (i + l > n) l = n - i;
        memcpy(buf + i, b, l);
        i += l;
    }
}

static void test_round_trip(const llm_tokenizer *tok, int rounds) {
    char buf[600], back[600];
    int ids[600];
    int fails = 0, bpe_fails = 0;
    llm__enc e;
    llm__enc_init(&e, tok, 0, NULL, 0);
    for (int r = 0; r < rounds; r++) {
        size_t n = rnd() % 512, k = 0, bl = 0;
        random_text(buf, n);
        int flags = r & 1 ? LLM_TOKENIZE_SPECIAL : 0;
        if (llm_tokenizer_encode(tok, buf, n, flags, ids, n, &k) != LLM_OK ||
            llm_tokenizer_decode(tok, ids, k, back, sizeof back, &bl) != LLM_OK || bl != n || memcmp(back, buf, n) != 0)
            fails++;
        /* the heap BPE and the reference BPE agree on the raw bytes as one piece */
        size_t m = n < 200 ? n : 200;
        if (m > 0 && llm__enc_reserve(&e, m) == LLM_OK) {
            size_t a = llm__bpe_heap(&e, (const unsigned char *)buf, m);
            int h[200];
            memcpy(h, e.sym, a * sizeof(int));
            size_t b = llm__bpe_ref(&e, (const unsigned char *)buf, m);
            if (a != b || memcmp(h, e.sym, a * sizeof(int)) != 0) bpe_fails++;
        }
    }
    llm__enc_free(&e);
    CHECK(fails == 0, "random bytes: decode(encode(x)) != x in %d of %d", fails, rounds);
    CHECK(bpe_fails == 0, "heap BPE differs from reference BPE in %d of %d", bpe_fails, rounds);
}

/* A 10,000-letter word: heap BPE equals the reference, and the whole text round-trips. */
static void test_long_word(const llm_tokenizer *tok) {
    size_t n = 10000;
    char *w = (char *)malloc(n);
    for (size_t i = 0; i < n; i++) w[i] = (char)('a' + rnd() % 26);
    int *ids = (int *)malloc(n * sizeof(int));
    size_t k = 0, bl = 0;
    CHECK(llm_tokenizer_encode(tok, w, n, 0, ids, n, &k) == LLM_OK && k > 1000, "long word encodes");
    char *back = (char *)malloc(n);
    CHECK(llm_tokenizer_decode(tok, ids, k, back, n, &bl) == LLM_OK && bl == n && memcmp(back, w, n) == 0, "long word round trip");
    CHECK(tok->monotone == 1, "GPT-2's merges are monotone, so the heap BPE is used");
#ifndef LLM_TEST_SAN
    llm__enc e;
    llm__enc_init(&e, tok, 0, NULL, 0);
    if (llm__enc_reserve(&e, n) == LLM_OK) {
        size_t a = llm__bpe_heap(&e, (const unsigned char *)w, 2000);
        int *h = (int *)malloc(a * sizeof(int));
        memcpy(h, e.sym, a * sizeof(int));
        size_t b = llm__bpe_ref(&e, (const unsigned char *)w, 2000);
        CHECK(a == b && memcmp(h, e.sym, a * sizeof(int)) == 0, "heap == reference on a 2000-letter word");
        free(h);
    }
    llm__enc_free(&e);
#endif
    free(w); free(ids); free(back);
}

static void test_special(const llm_tokenizer *tok) {
    const char *t = "a<|endoftext|>b <|endoftext|><|endoftext|";
    int ids[64];
    size_t n = 0;
    CHECK(llm_tokenizer_eot(tok) == 50256, "eot is 50256");
    CHECK(llm_tokenizer_vocab_size(tok) == 50257, "V = 50257");
    CHECK(llm_tokenizer_encode(tok, t, strlen(t), LLM_TOKENIZE_SPECIAL, ids, 64, &n) == LLM_OK, "encode special");
    int n_eot = 0;
    for (size_t i = 0; i < n; i++) n_eot += ids[i] == 50256;
    CHECK(n_eot == 2, "two <|endoftext|> when allowed (got %d)", n_eot);
    CHECK(llm_tokenizer_encode(tok, t, strlen(t), 0, ids, 64, &n) == LLM_OK, "encode plain");
    n_eot = 0;
    for (size_t i = 0; i < n; i++) n_eot += ids[i] == 50256;
    CHECK(n_eot == 0, "no 50256 when not allowed");
    CHECK(llm_tokenizer_encode(tok, t, strlen(t), 0, ids, 3, &n) == LLM_ERR_ARG && n > 3, "too small cap: LLM_ERR_ARG and the full count");
    size_t len;
    const char *s = llm_tokenizer_token(tok, 50256, &len);
    CHECK(s && len == 13 && memcmp(s, "<|endoftext|>", 13) == 0, "token(50256)");
    CHECK(llm_tokenizer_token(tok, 50257, &len) == NULL && llm_tokenizer_token(tok, -1, &len) == NULL, "token(out of range) is NULL");
    CHECK(llm_tokenizer_find(tok, " the", 4) == 262, "find(\" the\") == 262");
    int bad[2] = {15496, 50257};
    char out[64];
    CHECK(llm_tokenizer_decode(tok, bad, 2, out, sizeof out, &len) == LLM_ERR_ARG, "decode rejects id 50257");
    size_t empty = 1;
    CHECK(llm_tokenizer_encode(tok, "", 0, 0, ids, 0, &empty) == LLM_OK && empty == 0, "empty text, no ids");
}

/* Streaming: the pieces concatenate to decode(), and each piece is whole UTF-8 when the
 * text is valid UTF-8. */
static void test_stream(const llm_tokenizer *tok) {
    size_t n, tl;
    int *ids = read_ids("tokenizer/sample.tokens.txt", &n);
    char *text = test_read_data("tokenizer/sample.txt", &tl);
    if (!ids || !text) { TEST_SKIP("stream: sample files not found"); free(ids); free(text); return; }
    llm_tokenizer_stream st;
    llm_tokenizer_stream_init(&st, tok);
    size_t cap = llm_tokenizer_max_token_len(tok) + 3;
    char *buf = (char *)malloc(cap), *all = (char *)malloc(tl + 8);
    size_t o = 0;
    int broken = 0, fails = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        if (llm_tokenizer_stream_put(&st, ids[i], buf, cap, &k) != LLM_OK) { fails++; break; }
        uint32_t cp;
        for (size_t j = 0; j < k;) {   /* every emitted piece is valid UTF-8 */
            int l = llm__utf8_get((const unsigned char *)buf, j, k, &cp);
            if (cp == 0xFFFFFFFFu) broken++;
            j += (size_t)l;
        }
        if (o + k <= tl) memcpy(all + o, buf, k);
        o += k;
    }
    char tail[4];
    size_t k = llm_tokenizer_stream_flush(&st, tail);
    CHECK(k == 0, "nothing held back at the end of valid text");
    CHECK(fails == 0 && o == tl && memcmp(all, text, tl) == 0, "stream output == sample.txt");
    CHECK(broken == 0, "stream emitted %d broken characters", broken);
    /* random ids (arbitrary bytes): concatenation equals decode */
    int rid[300];
    for (int i = 0; i < 300; i++) rid[i] = (int)(rnd() % 50257);
    size_t dl;
    char *dec = (char *)malloc(300 * cap), *cat = (char *)malloc(300 * cap + 4);
    llm_tokenizer_decode(tok, rid, 300, dec, 300 * cap, &dl);
    o = 0;
    for (int i = 0; i < 300; i++) {
        llm_tokenizer_stream_put(&st, rid[i], cat + o, cap, &k);
        o += k;
    }
    o += llm_tokenizer_stream_flush(&st, cat + o);
    CHECK(o == dl && memcmp(dec, cat, dl) == 0, "stream of random ids == decode");
    /* a 4-byte emoji split over single-byte tokens */
    const char *emoji = "\xF0\x9F\x98\x80";
    size_t got[4];
    for (int i = 0; i < 4; i++) llm_tokenizer_stream_put(&st, tok->byte_id[(unsigned char)emoji[i]], buf, cap, &got[i]);
    CHECK(got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 4 && memcmp(buf, emoji, 4) == 0, "emoji held until complete");
    CHECK(llm_tokenizer_stream_put(&st, 60000, buf, cap, &k) == LLM_ERR_ARG, "stream rejects a bad id");
    free(buf); free(all); free(dec); free(cat); free(ids); free(text);
}

/* ---- threads ------------------------------------------------------------------------------ */
static void test_pool(const llm_tokenizer *tok) {
    size_t tl;
    char *text = test_read_data("tinyshakespeare/input.txt", &tl);
    if (!text) { TEST_SKIP("pool: tinyshakespeare not found"); return; }
#ifdef LLM_TEST_SAN
    tl = 200000;
#endif
    /* add some multilingual text, specials and broken bytes in the middle */
    memcpy(text + tl / 3, " <|endoftext|> \xE2\x82 caf\xC3\xA9  \n\n x", 28);
    int *a = (int *)malloc(tl * sizeof(int)), *b = (int *)malloc(tl * sizeof(int));
    for (int threads = 2; threads <= 4; threads++) {
        llm_pool *pool = llm_pool_create(threads);
        for (int flags = 0; flags <= LLM_TOKENIZE_SPECIAL; flags++) {
            size_t na = 0, nb = 0;
            llm_status s1 = llm_tokenizer_encode(tok, text, tl, flags, a, tl, &na);
            llm_status s2 = llm_tokenizer_encode_pool(tok, pool, text, tl, flags, b, tl, &nb);
            CHECK(s1 == LLM_OK && s2 == LLM_OK && same_ids(a, na, b, nb, "pool"), "pool(%d threads, flags %d) == single thread", threads, flags);
            size_t nc = 0;   /* capacity smaller than len: the temporary buffer path */
            s2 = llm_tokenizer_encode_pool(tok, pool, text, tl, flags, b, na, &nc);
            CHECK(s2 == LLM_OK && same_ids(a, na, b, nc, "pool small cap"), "pool with cap == count");
        }
        llm_pool_free(pool);
    }
    free(a); free(b); free(text);
}

typedef struct { const char *dir; const char *text; size_t len; const int *want; size_t nwant; int ok; } thread_job;
static void *thread_main(void *arg) {
    thread_job *j = (thread_job *)arg;
    llm_tokenizer *tok = NULL;
    j->ok = 0;
    if (llm_tokenizer_load(&tok, j->dir) != LLM_OK) return NULL;
    int *ids = (int *)malloc(j->len * sizeof(int));
    j->ok = 1;
    for (int r = 0; r < 3; r++) {
        size_t n = 0;
        if (llm_tokenizer_encode(tok, j->text, j->len, 0, ids, j->len, &n) != LLM_OK || n != j->nwant ||
            memcmp(ids, j->want, n * sizeof(int)) != 0) j->ok = 0;
    }
    free(ids);
    llm_tokenizer_free(tok);
    return NULL;
}
static void test_two_threads(const char *dir) {
    size_t tl, n;
    char *text = test_read_data("tokenizer/sample.txt", &tl);
    int *want = read_ids("tokenizer/sample.tokens.txt", &n);
    if (!text || !want) { TEST_SKIP("two threads: sample not found"); free(text); free(want); return; }
    thread_job j[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        j[i].dir = dir; j[i].text = text; j[i].len = tl; j[i].want = want; j[i].nwant = n; j[i].ok = 0;
        pthread_create(&th[i], NULL, thread_main, &j[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECK(j[0].ok && j[1].ok, "two tokenizers in two threads");
    free(text); free(want);
}

/* ---- malformed vocabularies ------------------------------------------------------------- */
static void expect_error(const char *vocab, const char *merges, llm_status want, const char *what) {
    llm_tokenizer *tok = (llm_tokenizer *)1;
    llm_status s = llm_tokenizer_load_memory(&tok, vocab, strlen(vocab), merges, merges ? strlen(merges) : 0);
    CHECK(s == want && tok == NULL && llm_last_error()[0], "%s: got %d (%s)", what, (int)s, llm_last_error());
}

/* A tiny valid vocabulary: 256 bytes + "ab" + "abc" (as encoder.json text). */
static char *tiny_vocab(const char *extra) {
    signed short u2b[324];
    llm__u2b_init(u2b);
    char *v = (char *)malloc(8192);
    size_t o = 0;
    v[o++] = '{';
    for (unsigned cp = 0; cp < 324; cp++) {
        if (u2b[cp] < 0) continue;
        char u[4];
        int l = llm__utf8_put(cp, u);
        o += (size_t)sprintf(v + o, "\"");
        if (cp == '"' || cp == '\\') v[o++] = '\\';
        memcpy(v + o, u, (size_t)l); o += (size_t)l;
        o += (size_t)sprintf(v + o, "\": %d, ", u2b[cp]);
    }
    o += (size_t)sprintf(v + o, "\"ab\": 256, \"abc\": 257%s}", extra);
    return v;
}

static void test_malformed(const char *dir) {
    char *v = tiny_vocab("");
    llm_tokenizer *tok = NULL;
    CHECK(llm_tokenizer_load_memory(&tok, v, strlen(v), "#version: 0.2\na b\nab c\n", 23) == LLM_OK, "tiny vocab loads: %s", llm_last_error());
    if (tok) {
        int ids[8];
        size_t n = 0;
        CHECK(llm_tokenizer_encode(tok, "abc ab", 6, 0, ids, 8, &n) == LLM_OK && n == 3 && ids[0] == 257 && ids[1] == 32 && ids[2] == 256,
              "tiny vocab encodes abc ab");
        CHECK(llm_tokenizer_eot(tok) == -1, "tiny vocab has no eot");
        llm_tokenizer_free(tok);
    }
    expect_error("", "", LLM_ERR_FORMAT, "empty JSON");
    expect_error("[1,2]", "", LLM_ERR_FORMAT, "vocab not an object");
    expect_error("{\"a\": 1.5}", "", LLM_ERR_FORMAT, "non-integer id");
    expect_error("{\"a\": -1}", "", LLM_ERR_FORMAT, "negative id");
    expect_error("{\"a\": 99999999999}", "", LLM_ERR_FORMAT, "huge id");
    expect_error("{\"a\": \"x\"}", "", LLM_ERR_FORMAT, "string id");
    expect_error("{\"\": 0}", "", LLM_ERR_FORMAT, "empty token");
    expect_error("{\"a\": 0, \"b\": 0}", "", LLM_ERR_FORMAT, "duplicate id");
    expect_error("{\"a\": 0, \"a\": 1}", "", LLM_ERR_FORMAT, "duplicate token");
    expect_error("{\"a\": 0}", "", LLM_ERR_FORMAT, "missing byte tokens");
    expect_error("{\"\\u00e9\\u4e00\": 0}", "", LLM_ERR_FORMAT, "character outside the byte alphabet");
    expect_error("{\"a\": 0", "", LLM_ERR_FORMAT, "truncated JSON");
    expect_error(v, "a\n", LLM_ERR_FORMAT, "merge line without a space");
    expect_error(v, "a  b\n", LLM_ERR_FORMAT, "merge line with two spaces");
    expect_error(v, " a\n", LLM_ERR_FORMAT, "merge line with an empty part");
    expect_error(v, "a x\n", LLM_ERR_FORMAT, "merge result not in vocabulary");
    expect_error(v, "a \xe4\xb8\x80\n", LLM_ERR_FORMAT, "merge part outside the alphabet");
    expect_error("{\"model\": 1}", NULL, LLM_ERR_FORMAT, "tokenizer.json: model not an object");
    expect_error("{\"x\": {}}", NULL, LLM_ERR_FORMAT, "tokenizer.json without model");
    expect_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", NULL, LLM_ERR_UNSUPPORTED, "tokenizer.json not BPE");
    {
        char *tj = (char *)malloc(strlen(v) + 200);
        sprintf(tj, "{\"model\": {\"vocab\": %s, \"merges\": 5}}", v);
        expect_error(tj, NULL, LLM_ERR_FORMAT, "merges not an array");
        sprintf(tj, "{\"model\": {\"vocab\": %s, \"merges\": [[\"a\"]]}}", v);
        expect_error(tj, NULL, LLM_ERR_FORMAT, "merge pair of one");
        sprintf(tj, "{\"model\": {\"vocab\": %s, \"merges\": [\"a b\", [\"ab\", \"c\"]]}}", v);
        tok = NULL;
        CHECK(llm_tokenizer_load_memory(&tok, tj, strlen(tj), NULL, 0) == LLM_OK, "mixed merge forms load");
        llm_tokenizer_free(tok);
        sprintf(tj, "{\"model\": {\"vocab\": %s, \"merges\": []}, \"added_tokens\": [{\"id\": 0, \"content\": \"zz\"}]}", v);
        expect_error(tj, NULL, LLM_ERR_FORMAT, "added token conflicting with an id");
        free(tj);
    }
    /* truncations of the real encoder.json are all errors, never crashes */
    size_t vl, ml;
    char *ej, *mt;
    read_gpt2_files(dir, &ej, &vl, &mt, &ml);
    if (ej && mt) {
        int wrong = 0;
#ifdef LLM_TEST_SAN
        const int cuts = 3;
#else
        const int cuts = 12;
#endif
        for (int k = 0; k < cuts; k++) {
            size_t at = 1 + rnd() % (vl - 2);
            tok = NULL;
            if (llm_tokenizer_load_memory(&tok, ej, at, mt, ml) == LLM_OK) wrong++;
            llm_tokenizer_free(tok);
        }
        CHECK(wrong == 0, "truncated encoder.json loaded %d times", wrong);
        /* truncated merges: loads (fewer merges) or fails cleanly at a cut inside a line */
        tok = NULL;
        llm_status s = llm_tokenizer_load_memory(&tok, ej, vl, mt, ml / 2);
        CHECK(s == LLM_OK || s == LLM_ERR_FORMAT, "half of vocab.bpe: ok or format error");
        llm_tokenizer_free(tok);
    } else TEST_SKIP("truncation test: %s not readable", dir);
    free(ej); free(mt);
    llm_status s = llm_tokenizer_load(&tok, "/nonexistent/dir");
    CHECK(s == LLM_ERR_IO && tok == NULL, "missing path: LLM_ERR_IO (%s)", llm_last_error());
    free(v);
}

int main(void) {
    const char *dd = test_data_dir();
    char dir[900], p[1024];
    snprintf(dir, sizeof dir, "%s/gpt2", dd);
    llm_tokenizer *tok = NULL;
    if (llm_tokenizer_load(&tok, dir) != LLM_OK) {
        TEST_SKIP("GPT-2 vocabulary not loadable from %s: %s", dir, llm_last_error());
        return TEST_END("test_tokenizer");
    }
#ifdef LLM_TEST_SAN
    const int full = 0;
#else
    const int full = 1;
#endif
    test_reference_files(tok, "encoder.json+vocab.bpe", full);
    test_cases_file(tok);
    test_special(tok);
    test_round_trip(tok, full ? 2000 : 300);
    test_long_word(tok);
    test_stream(tok);
    test_pool(tok);
    test_two_threads(dir);
    test_malformed(dir);
    llm_tokenizer_free(tok);

    /* the other formats: vocab.json (merges.txt found beside it), tokenizer.json x2 */
    snprintf(p, sizeof p, "%s/vocab.json", dir);
    tok = NULL;
    CHECK(llm_tokenizer_load(&tok, p) == LLM_OK, "load vocab.json: %s", llm_last_error());
    if (tok) test_reference_files(tok, "vocab.json+merges.txt", 0);
    llm_tokenizer_free(tok);
    for (int pairs = 0; pairs <= 1; pairs++) {
        const char *tj = pairs ? "build/test_tokenizer.pairs.json" : "build/test_tokenizer.strings.json";
        if (!write_tokenizer_json(tj, dir, pairs)) { TEST_SKIP("cannot write %s", tj); continue; }
        tok = NULL;
        CHECK(llm_tokenizer_load(&tok, tj) == LLM_OK, "load %s: %s", tj, llm_last_error());
        if (tok) {
            CHECK(llm_tokenizer_eot(tok) == 50256 && tok->n_merges == 50000, "tokenizer.json: eot and 50000 merges");
            test_reference_files(tok, pairs ? "tokenizer.json (pairs)" : "tokenizer.json (strings)", full);
        }
        llm_tokenizer_free(tok);
        remove(tj);
    }
    return TEST_END("test_tokenizer");
}
