/* fuzz_json: llm.h's JSON reader on untrusted bytes (see tests/fuzz.h for how it is
 * built). It reads safetensors headers, config.json and the GPT-2 vocabularies.
 *
 * A parse either fails (LLM_ERR_FORMAT, or LLM_ERR_NOMEM, with a message) or gives a tree
 * whose every link stays inside the node array, whose child counts match the links,
 * whose strings and member names lie NUL-terminated inside the arena, and whose lookups
 * (llm__json_get, llm__json_int) answer without reading out of bounds. */
#include "fuzz.h"
#define LLM_IMPLEMENTATION
#include "llm.h"

static const fuzz_corpus fuzz_corpora[] = {{"json", 0}, {NULL, 0}};

static void walk(const llm__json *j, int node, int depth) {
    fuzz_check(node >= 0 && node < j->n && depth <= LLM__JSON_MAX_DEPTH + 1);
    const llm__jnode *x = &j->nodes[node];
    if (x->type == LLM__J_STR) fuzz_check(x->str + x->str_len < j->alen && j->arena[x->str + x->str_len] == 0);
    if (x->type == LLM__J_NUM) { int64_t v; (void)llm__json_int(j, node, &v); }
    int count = 0;
    for (int c = x->child; c >= 0; c = j->nodes[c].next) {
        fuzz_check(c > node && c < j->n);
        if (x->type == LLM__J_OBJ) {
            const llm__jnode *k = &j->nodes[c];
            fuzz_check(k->key + k->key_len < j->alen && j->arena[k->key + k->key_len] == 0);
            /* the lookup by that name finds a member of that name (the first of them); a
             * name with a NUL in it ("\u0000") cannot be asked for as a C string: its
             * lookup only has to stay in bounds */
            const char *name = llm__jstr(j, k->key);
            int f = llm__json_get(j, node, name);
            if (strlen(name) == k->key_len) fuzz_check(f >= 0 && f <= c && j->nodes[f].key_len == k->key_len);
        }
        walk(j, c, depth + 1);
        count++;
    }
    fuzz_check(count == x->count);
    if (x->type != LLM__J_OBJ && x->type != LLM__J_ARR) fuzz_check(x->child < 0);
}

static int fuzz_one(int mode, const uint8_t *data, size_t size) {
    (void)mode;
    llm__json j;
    llm_status s = llm__json_parse(&j, (const char *)data, size);
    if (s != LLM_OK) {
        fuzz_check((s == LLM_ERR_FORMAT || s == LLM_ERR_NOMEM) && llm_last_error()[0] && j.nodes == NULL);
        return 0;
    }
    fuzz_check(j.n >= 1);
    walk(&j, 0, 0);
    (void)llm__json_get(&j, 0, "dtype");
    llm__json_free(&j);
    return 0;
}

FUZZ_MAIN("fuzz_json")
