/* quantize: store a model's weights in fewer bytes, for inference.
 *
 *   build/quantize IN OUT --type q8_0|bf16 [--threads N]
 *
 *   IN       any model llm_model_load reads (HF safetensors, llm.c or llama2.c .bin,
 *            GGUF, an llm.h checkpoint)
 *   OUT      an llm.h checkpoint with the weight matrices (and the token embedding /
 *            classifier) in Q8_0 (8.5 bits a weight, llama.cpp's format) or bf16; norms
 *            and biases stay fp32. build/generate -m OUT runs it as it is.
 *   --type   q8_0 or bf16
 *   --threads N  CPU threads for the conversion (default: all cores)
 *
 * Prints the sizes before and after. A model that is already quantized to the type is
 * saved as it is; one quantized to the other type is refused (quantize the fp32 model). */
#define LLM_IMPLEMENTATION
#include "llm.h"
#include "common.h"

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s IN OUT --type q8_0|bf16 [--threads N]\n", argv0);
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(argv[0]); return 0; }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) { usage(argv[0]); return 2; }
            if (!strcmp(a, "--type")) type = argv[++i];
            else if (!strcmp(a, "--threads")) { if (!ex_int(a, argv[++i], &threads)) return 2; }
            else { usage(argv[0]); return 2; }
        } else if (!in) in = a;
        else if (!out) out = a;
        else { usage(argv[0]); return 2; }
    }
    if (!in || !out || !type) { usage(argv[0]); return 2; }
    llm_dtype t;
    if (!strcmp(type, "q8_0")) t = LLM_DTYPE_Q8_0;
    else if (!strcmp(type, "bf16")) t = LLM_DTYPE_BF16;
    else { fprintf(stderr, "quantize: unknown --type '%s' (q8_0 or bf16)\n", type); return 2; }
    llm_options opt;
    memset(&opt, 0, sizeof opt);
    opt.n_threads = threads;
    llm_model *m = NULL;
    if (llm_model_load(&m, in, &opt) != LLM_OK) { fprintf(stderr, "quantize: %s\n", llm_last_error()); return 1; }
    size_t before = llm_model_weight_bytes(m);
    const char *was = llm_dtype_name(llm_model_dtype(m));
    if (llm_model_quantize(m, t) != LLM_OK || llm_model_save(m, out, 0, NULL) != LLM_OK) {
        fprintf(stderr, "quantize: %s\n", llm_last_error());
        llm_model_free(m);
        return 1;
    }
    printf("%s (%s weights, %.1f MB) -> %s (%s weights, %.1f MB), %zu parameters\n", in, was, before / 1e6, out,
           llm_dtype_name(t), llm_model_weight_bytes(m) / 1e6, llm_model_num_params(m));
    llm_model_free(m);
    return 0;
}
