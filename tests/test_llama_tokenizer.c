/* tests/test_llama_tokenizer.c: llama2.c's tokenizer.bin (tok512.bin of stories260K).
 * Encoding against ids from llama2.c's run.c encode(), decoding against run.c's greedy
 * output, the heap-based merge against a plain O(n^2) run.c-style reference on random
 * text, and truncated / corrupted / mismatched files. */
#include <time.h>
#include "test.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static char g_tok[1024];      /* path of tok512.bin */
static char g_tmp[1024];      /* scratch file for the bad-file cases */

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n;
}

/* ---- the reference: run.c's encode(), restated plainly (linear lookups, full rescans) */
static int ref_lookup(const llm_llama_tokenizer *t, const char *s, size_t n) {
    for (int i = 0; i < llm_llama_tokenizer_vocab_size(t); i++) {
        size_t len;
        const char *p = llm_llama_tokenizer_piece(t, i, &len);
        if (len == n && memcmp(p, s, n) == 0) return i;
    }
    return -1;
}
static int ref_encode(const llm_llama_tokenizer *t, const char *text, int bos, int eos, int *tok) {
    int n = 0;
    size_t len = strlen(text);
    char buf[64];
    if (bos) tok[n++] = 1;
    if (len) tok[n++] = ref_lookup(t, " ", 1);
    size_t sl = 0;
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) sl = 0;
        buf[sl++] = *c;
        if ((c[1] & 0xC0) == 0x80 && sl < 4) continue;
        int id = ref_lookup(t, buf, sl);
        if (id != -1) tok[n++] = id;
        else for (size_t i = 0; i < sl; i++) tok[n++] = (unsigned char)buf[i] + 3;
        sl = 0;
    }
    for (;;) {
        float best_score = -1e10f;
        int best_id = -1, best_idx = -1;
        for (int i = 0; i < n - 1; i++) {
            size_t la, lb;
            const char *a = llm_llama_tokenizer_piece(t, tok[i], &la);
            const char *b = llm_llama_tokenizer_piece(t, tok[i + 1], &lb);
            memcpy(buf, a, la); memcpy(buf + la, b, lb);
            int id = ref_lookup(t, buf, la + lb);
            if (id != -1 && llm_llama_tokenizer_score(t, id) > best_score) {
                best_score = llm_llama_tokenizer_score(t, id); best_id = id; best_idx = i;
            }
        }
        if (best_idx == -1) break;
        tok[best_idx] = best_id;
        for (int i = best_idx + 1; i < n - 1; i++) tok[i] = tok[i + 1];
        n--;
    }
    if (eos) tok[n++] = 2;
    return n;
}

/* run.c's generate loop prints decode(prev, next) through safe_printf, which drops
 * one-byte pieces that are neither printable nor whitespace. */
static size_t print_like_runc(const llm_llama_tokenizer *t, int prev, int id, char *out) {
    size_t n;
    const char *p = llm_llama_tokenizer_decode(t, prev, id, &n);
    if (!p || n == 0) return 0;
    if (n == 1) {
        unsigned char b = (unsigned char)p[0];
        if (!((b >= 0x20 && b < 0x7F) || (b >= 9 && b <= 13))) return 0;
    }
    memcpy(out, p, n);
    return n;
}

static void test_encode_golden(const llm_llama_tokenizer *t, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/stories260K/tok512_encode.jsonl", dir);
    char *data; size_t n;
    if (llm__read_file(path, &data, &n) != LLM_OK) { TEST_SKIP("%s: %s", path, llm_last_error()); return; }
    int lines = 0;
    for (char *line = data; line < data + n;) {
        char *end = memchr(line, '\n', (size_t)(data + n - line));
        if (!end) end = data + n;
        if (end > line) {
            llm__json doc;
            CHECK(llm__json_parse(&doc, line, (size_t)(end - line)) == LLM_OK, "line %d: %s", lines, llm_last_error());
            int jt = llm__json_get(&doc, 0, "text"), jb = llm__json_get(&doc, 0, "bos");
            int je = llm__json_get(&doc, 0, "eos"), ji = llm__json_get(&doc, 0, "ids");
            CHECK(jt >= 0 && jb >= 0 && je >= 0 && ji >= 0, "line %d: missing member", lines);
            if (jt >= 0 && jb >= 0 && je >= 0 && ji >= 0) {
                const char *text = llm__jstr(&doc, doc.nodes[jt].str);
                size_t tl = doc.nodes[jt].str_len;
                int bos = doc.nodes[jb].type == LLM__J_TRUE, eos = doc.nodes[je].type == LLM__J_TRUE;
                int want[256], nw = 0, got[256], ng = -1;
                for (int c = doc.nodes[ji].child; c >= 0 && nw < 256; c = doc.nodes[c].next) {
                    int64_t v = -1;
                    llm__json_int(&doc, c, &v);
                    want[nw++] = (int)v;
                }
                llm_status s = llm_llama_tokenizer_encode(t, text, tl, bos, eos, got, 256, &ng);
                int same = s == LLM_OK && ng == nw && memcmp(got, want, (size_t)nw * sizeof(int)) == 0;
                CHECK(same, "encode \"%s\": status %d, %d ids, want %d", text, s, ng, nw);
                /* the reference restatement agrees too */
                int ref[256];
                int nr = ref_encode(t, text, bos, eos, ref);
                CHECK(nr == nw && memcmp(ref, want, (size_t)nw * sizeof(int)) == 0, "reference encode \"%s\"", text);
                /* and decoding after BOS gives the text back (bytes pieces included) */
                char back[1024]; size_t bl = 0;
                for (int i = 1; i < ng; i++) {
                    size_t pl;
                    const char *p = llm_llama_tokenizer_decode(t, got[i - 1], got[i], &pl);
                    if (p && bl + pl < sizeof back) { memcpy(back + bl, p, pl); bl += pl; }
                }
                CHECK(bl == tl && memcmp(back, text, tl) == 0, "round trip \"%s\"", text);
            }
            llm__json_free(&doc);
            lines++;
        }
        line = end + 1;
    }
    CHECK(lines == 8, "tok512_encode.jsonl: %d lines, expected 8", lines);
    LLM_FREE(data);
}

static void test_decode_golden(const llm_llama_tokenizer *t, const char *dir) {
    char path[1024];
    char *ids_txt, *want, *out;
    size_t n_ids_txt, n_want;
    snprintf(path, sizeof path, "%s/stories260K/greedy200.ids.txt", dir);
    if (llm__read_file(path, &ids_txt, &n_ids_txt) != LLM_OK) { TEST_SKIP("%s", llm_last_error()); return; }
    snprintf(path, sizeof path, "%s/stories260K/greedy200.txt", dir);
    if (llm__read_file(path, &want, &n_want) != LLM_OK) { TEST_SKIP("%s", llm_last_error()); LLM_FREE(ids_txt); return; }
    out = (char *)malloc(200 * 16 + 2);
    size_t no = 0;
    int prev = 1, count = 0;
    char *p = ids_txt;
    for (;;) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) break;
        p = e;
        if (v == 1) break;                        /* run.c stops at BOS */
        no += print_like_runc(t, prev, (int)v, out + no);
        prev = (int)v;
        count++;
    }
    out[no++] = '\n';                             /* run.c's final printf("\n") */
    CHECK(count == 200, "greedy200.ids.txt: %d ids", count);
    CHECK(no == n_want && memcmp(out, want, n_want) == 0, "decode of greedy200 ids differs from greedy200.txt "
          "(%lu vs %lu bytes)", (unsigned long)no, (unsigned long)n_want);
    free(out); LLM_FREE(ids_txt); LLM_FREE(want);

    /* the prompt run: run.c echoes the prompt by decoding its ids after BOS */
    snprintf(path, sizeof path, "%s/stories260K/prompt_once_upon_a_time.greedy64.txt", dir);
    if (llm__read_file(path, &want, &n_want) == LLM_OK) {
        int ids[32], n = 0;
        char buf[256]; size_t nb = 0;
        CHECK(llm_llama_tokenizer_encode(t, "Once upon a time", 16, 1, 0, ids, 32, &n) == LLM_OK, "encode prompt");
        for (int i = 1; i < n; i++) nb += print_like_runc(t, ids[i - 1], ids[i], buf + nb);
        CHECK(nb == 16 && n_want >= 16 && memcmp(buf, want, 16) == 0, "prompt echo");
        LLM_FREE(want);
    }
}

static void test_decode_rules(const llm_llama_tokenizer *t) {
    size_t n;
    const char *p = llm_llama_tokenizer_decode(t, 5, 13, &n);          /* <0x0A> */
    CHECK(p && n == 1 && p[0] == '\n', "<0x0A> decodes to a newline");
    p = llm_llama_tokenizer_decode(t, 5, 3, &n);                       /* <0x00> */
    CHECK(p && n == 1 && p[0] == 0, "<0x00> decodes to a NUL byte");
    p = llm_llama_tokenizer_decode(t, 5, 258, &n);                     /* <0xFF> */
    CHECK(p && n == 1 && (unsigned char)p[0] == 0xFF, "<0xFF> decodes to 0xFF");
    p = llm_llama_tokenizer_decode(t, 1, 410, &n);                     /* " " after BOS */
    CHECK(p && n == 0, "the dummy space after BOS is dropped");
    p = llm_llama_tokenizer_decode(t, 7, 410, &n);
    CHECK(p && n == 1 && p[0] == ' ', "a space elsewhere stays");
    p = llm_llama_tokenizer_decode(t, 7, 1, &n);
    CHECK(p && n == 5 && memcmp(p, "\n<s>\n", 5) == 0, "BOS piece");
    CHECK(llm_llama_tokenizer_decode(t, 1, 512, &n) == NULL && n == 0, "id V is refused");
    CHECK(llm_llama_tokenizer_decode(t, 1, -1, &n) == NULL, "id -1 is refused");
    CHECK(llm_llama_tokenizer_piece(t, 600, &n) == NULL && n == 0, "piece of a bad id");
}

static void test_encode_api(const llm_llama_tokenizer *t) {
    int ids[8], n = -1;
    /* "Once upon a time" is 1 403 407 261 378: 5 ids; max_ids 4 is too small */
    CHECK(llm_llama_tokenizer_encode(t, "Once upon a time", 16, 1, 0, ids, 4, &n) == LLM_ERR_ARG && n == 5,
          "too small an output reports the size needed (%d)", n);
    CHECK(llm_llama_tokenizer_encode(t, "Once upon a time", 16, 1, 1, ids, 8, &n) == LLM_OK && n == 6 &&
          ids[5] == 2, "EOS appended");
    CHECK(llm_llama_tokenizer_encode(t, "", 0, 0, 0, NULL, 0, &n) == LLM_OK && n == 0, "empty, no BOS: no ids");
    CHECK(llm_llama_tokenizer_encode(t, NULL, 0, 1, 1, ids, 8, &n) == LLM_OK && n == 2 && ids[0] == 1 &&
          ids[1] == 2, "NULL text of length 0");
    CHECK(llm_llama_tokenizer_encode(NULL, "a", 1, 1, 0, ids, 8, &n) == LLM_ERR_ARG, "NULL tokenizer");
    /* a NUL inside the text is a byte like any other (byte fallback 0 + 3) */
    CHECK(llm_llama_tokenizer_encode(t, "a\0b", 3, 0, 0, ids, 8, &n) == LLM_OK && n >= 3, "embedded NUL");
    int has3 = 0;
    for (int i = 0; i < n; i++) has3 |= ids[i] == 3;
    CHECK(has3, "embedded NUL becomes <0x00>");
}

/* Random strings from a mix of letters, spaces, punctuation and multi-byte characters:
 * the heap merge must pick exactly the pairs run.c's rescans pick. */
static void test_against_reference(const llm_llama_tokenizer *t) {
    static const char *atoms[] = {"a", "e", "t", "h", "o", "n", "s", "i", "r", "l", "d", " ", " ", " ",
                                  "Th", "the", "ing", ".", ",", "!", "'", "\n", "L", "T", "\xc3\xa9",
                                  "\xe6\x97\xa5", "\xf0\x9f\x99\x82", "\x80", "\xff", "\xe2\x84", "x", "q"};
    const int natoms = (int)(sizeof atoms / sizeof atoms[0]);
#if LLM_TEST_SAN
    const int cases = 60;
#else
    const int cases = 400;
#endif
    llm_rng rng;
    llm_rng_seed(&rng, 42);
    int bad = 0;
    char text[512];
    int got[600], want[600];
    for (int c = 0; c < cases; c++) {
        size_t len = 0;
        int natom = (int)(llm_rng_u64(&rng) % 80);
        for (int k = 0; k < natom; k++) {
            const char *a = atoms[llm_rng_u64(&rng) % (uint64_t)natoms];
            size_t al = strlen(a);
            memcpy(text + len, a, al); len += al;
        }
        text[len] = 0;
        int bos = (int)(llm_rng_u64(&rng) & 1), eos = (int)(llm_rng_u64(&rng) & 1), n = -1;
        int nw = ref_encode(t, text, bos, eos, want);
        llm_status s = llm_llama_tokenizer_encode(t, text, len, bos, eos, got, 600, &n);
        if (s != LLM_OK || n != nw || memcmp(got, want, (size_t)n * sizeof(int)) != 0) {
            if (bad++ < 3) fprintf(stderr, "mismatch on \"%s\" (%d vs %d ids)\n", text, n, nw);
        }
    }
    CHECK(bad == 0, "%d of %d random texts encode differently from the run.c reference", bad, cases);
}

/* A long input must not take quadratic time: encode ~100 KB (Tiny Shakespeare if
 * present), and report the speed. */
static void test_long_input(const llm_llama_tokenizer *t, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tinyshakespeare/input.txt", dir);
    char *data; size_t n;
    if (llm__read_file(path, &data, &n) != LLM_OK) { TEST_SKIP("long input: %s", llm_last_error()); return; }
#if LLM_TEST_SAN
    size_t len = n < 20000 ? n : 20000;
#else
    size_t len = n < 200000 ? n : 200000;
#endif
    int *ids = (int *)malloc((len + 3) * sizeof(int)), nids = 0;
    clock_t t0 = clock();
    llm_status s = llm_llama_tokenizer_encode(t, data, len, 1, 0, ids, (int)len + 3, &nids);
    double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(s == LLM_OK && nids > 1 && nids < (int)len, "long input: status %d, %d ids", s, nids);
    CHECK(sec < 5.0, "long input: %.2f s for %lu bytes", sec, (unsigned long)len);
    printf("encode: %lu bytes -> %d ids in %.3f s (%.1f MB/s)\n", (unsigned long)len, nids, sec,
           sec > 0 ? len / sec / 1e6 : 0.0);
    /* decoding gives the text back (the text has no byte-fallback-dropped characters) */
    size_t pos = 0; int ok = 1;
    for (int i = 1; i < nids && ok; i++) {
        size_t pl;
        const char *p = llm_llama_tokenizer_decode(t, ids[i - 1], ids[i], &pl);
        if (!p || pos + pl > len || memcmp(data + pos, p, pl) != 0) ok = 0;
        pos += pl;
    }
    CHECK(ok && pos == len, "long input round trip");
    free(ids); LLM_FREE(data);
}

static llm_status load_bytes(const void *p, size_t n, int vocab, llm_llama_tokenizer **t) {
    if (!write_file(g_tmp, p, n)) { fprintf(stderr, "cannot write %s\n", g_tmp); return LLM_ERR_IO; }
    return llm_llama_tokenizer_load(t, g_tmp, vocab);
}

static void test_bad_files(void) {
    llm_llama_tokenizer *t = (llm_llama_tokenizer *)1;
    char *data; size_t n;
    CHECK(llm_llama_tokenizer_load(&t, "/nonexistent/tok.bin", 0) == LLM_ERR_IO && t == NULL, "missing file");
    CHECK(llm_llama_tokenizer_load(NULL, g_tok, 0) == LLM_ERR_ARG, "NULL out");
    CHECK(llm_llama_tokenizer_load(&t, g_tok, -1) == LLM_ERR_ARG, "negative vocab_size");
    CHECK(llm_llama_tokenizer_load(&t, g_tok, 32000) == LLM_ERR_FORMAT && t == NULL, "vocab 32000 on a 512 file");
    CHECK(strstr(llm_last_error(), "512") != NULL, "message names the count: %s", llm_last_error());
    CHECK(llm_llama_tokenizer_load(&t, g_tok, 256) == LLM_ERR_FORMAT && t == NULL, "vocab 256 on a 512 file");
    if (llm__read_file(g_tok, &data, &n) != LLM_OK) { TEST_SKIP("bad files: %s", llm_last_error()); return; }
    unsigned char *d = (unsigned char *)data;
    /* record boundaries: a cut exactly there is a valid shorter vocabulary (vocab 0) */
    static unsigned char boundary[8192];
    memset(boundary, 0, sizeof boundary);
    size_t pos = 4;
    int count = 0;
    while (pos + 8 <= n) {
        int32_t len;
        memcpy(&len, d + pos + 4, 4);
        pos += 8 + (size_t)len;
        if (pos < sizeof boundary) boundary[pos] = 1;
        count++;
    }
    CHECK(pos == n && count == 512, "walk of tok512.bin");
    int bad = 0;
    /* every cut in the first records, then a sample (writing files is slow here) */
    for (size_t cut = 0; cut < n; cut += (cut < 48 ? 1 : 53)) {
        llm_llama_tokenizer *u = NULL;
        llm_status s = load_bytes(d, cut, 512, &u);
        if (s != LLM_ERR_FORMAT || u) bad++;
        llm_llama_tokenizer_free(u);
        u = NULL;
        s = llm_llama_tokenizer_load(&u, g_tmp, 0);   /* the same file, read to its end */
        int tokens = 0;
        for (size_t i = 0; i <= cut && i < sizeof boundary; i++) tokens += boundary[i];
        int want_ok = cut >= 4 && boundary[cut] && tokens >= 3;
        if (want_ok ? (s != LLM_OK || llm_llama_tokenizer_vocab_size(u) != tokens) : (s != LLM_ERR_FORMAT || u)) bad++;
        llm_llama_tokenizer_free(u);
    }
    CHECK(bad == 0, "%d truncated files handled wrongly", bad);
    /* lies in the header fields */
    unsigned char *c = (unsigned char *)malloc(n);
    int32_t v;
    llm_llama_tokenizer *u = NULL;
    memcpy(c, d, n); v = 0; memcpy(c, &v, 4);
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "max_token_length 0");
    memcpy(c, d, n); v = -5; memcpy(c, &v, 4);
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "negative max_token_length");
    memcpy(c, d, n); v = 3; memcpy(c, &v, 4);
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "a piece longer than max_token_length");
    CHECK(strstr(llm_last_error(), "token 0 has length 5") != NULL, "message: %s", llm_last_error());
    memcpy(c, d, n); v = -1; memcpy(c + 4 + 4, &v, 4);      /* token 0's length */
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "negative piece length");
    memcpy(c, d, n); v = 0x7fffffff; memcpy(c + 4 + 4, &v, 4);
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "huge piece length");
    memcpy(c, d, n); v = 0x7fffffff; memcpy(c, &v, 4); memcpy(c + 4 + 4, &v, 4);
    CHECK(load_bytes(c, n, 0, &u) == LLM_ERR_FORMAT && !u, "huge piece length under a huge max");
    CHECK(strstr(llm_last_error(), "truncated") != NULL, "message: %s", llm_last_error());
    /* random corruption: never a crash; loaded or not, encode and decode stay in bounds */
    llm_rng rng;
    llm_rng_seed(&rng, 7);
#if LLM_TEST_SAN
    int rounds = 50;
#else
    int rounds = 150;
#endif
    int loaded = 0, refused = 0;
    for (int r = 0; r < rounds; r++) {
        memcpy(c, d, n);
        int flips = 1 + (int)(llm_rng_u64(&rng) % 4);
        for (int k = 0; k < flips; k++) c[llm_rng_u64(&rng) % n] = (unsigned char)llm_rng_u64(&rng);
        llm_status s = load_bytes(c, n, 0, &u);
        if (s == LLM_OK) {
            int ids[64], ni;
            loaded++;
            if (llm_llama_tokenizer_encode(u, "Once upon a time \xe6\x97\xa5", 20, 1, 1, ids, 64, &ni) == LLM_OK)
                for (int i = 0; i < ni; i++) { size_t pl; llm_llama_tokenizer_decode(u, i ? ids[i - 1] : 1, ids[i], &pl); }
            llm_llama_tokenizer_free(u);
            u = NULL;
        } else {
            refused++;
            if (s != LLM_ERR_FORMAT || u) bad++;
        }
    }
    CHECK(bad == 0 && loaded + refused == rounds, "corrupted files: %d loaded, %d refused", loaded, refused);
    /* a small vocabulary without byte tokens: byte fallback is an error, not a bad id */
    {
        unsigned char small[64];
        size_t m = 0;
        v = 5; memcpy(small, &v, 4); m = 4;
        const char *pieces[3] = {"<unk>", "<s>", "</s>"};
        for (int i = 0; i < 3; i++) {
            float sc = 0; int32_t l = (int32_t)strlen(pieces[i]);
            memcpy(small + m, &sc, 4); memcpy(small + m + 4, &l, 4); memcpy(small + m + 8, pieces[i], (size_t)l);
            m += 8 + (size_t)l;
        }
        CHECK(load_bytes(small, m, 3, &u) == LLM_OK && u, "3-token vocabulary loads");
        int ids[8], ni;
        CHECK(u && llm_llama_tokenizer_encode(u, "a", 1, 1, 0, ids, 8, &ni) == LLM_ERR_ARG, "no byte tokens: error");
        llm_llama_tokenizer_free(u);
        CHECK(load_bytes(small, m - 12, 0, &u) == LLM_ERR_FORMAT && !u, "2 tokens refused");
    }
    free(c);
    LLM_FREE(data);
    remove(g_tmp);
}

int main(int argc, char **argv) {
    const char *dir = test_data_dir();
    snprintf(g_tok, sizeof g_tok, "%s/stories260K/tok512.bin", dir);
    snprintf(g_tmp, sizeof g_tmp, "%s.tmp.bin", argc > 0 ? argv[0] : "test_llama_tokenizer");
    llm_llama_tokenizer *t = NULL;
    llm_status s = llm_llama_tokenizer_load(&t, g_tok, 512);
    if (s != LLM_OK) {
        TEST_SKIP("%s", llm_last_error());
        return TEST_END("test_llama_tokenizer");
    }
    CHECK(llm_llama_tokenizer_vocab_size(t) == 512, "vocab size %d", llm_llama_tokenizer_vocab_size(t));
    llm_llama_tokenizer *t0 = NULL;
    CHECK(llm_llama_tokenizer_load(&t0, g_tok, 0) == LLM_OK && llm_llama_tokenizer_vocab_size(t0) == 512,
          "vocab_size 0 reads to the end");
    llm_llama_tokenizer_free(t0);
    size_t n;
    const char *p = llm_llama_tokenizer_piece(t, 259, &n);
    CHECK(p && n == 2 && memcmp(p, " t", 2) == 0 && llm_llama_tokenizer_score(t, 260) == -1.0f, "pieces and scores");
    test_decode_rules(t);
    test_encode_api(t);
    test_encode_golden(t, dir);
    test_decode_golden(t, dir);
    test_against_reference(t);
    test_long_input(t, dir);
    test_bad_files();
    llm_llama_tokenizer_free(t);
    llm_llama_tokenizer_free(NULL);
    return TEST_END("test_llama_tokenizer");
}
