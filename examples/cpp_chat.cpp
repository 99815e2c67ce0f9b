// cpp_chat: examples/chat.c as a C++ programmer would write it over the C API. Each
// object the library creates is held by a std::unique_ptr whose deleter is the library's
// free function, so every exit path (return or exception) frees it; a failed call throws
// llm::error carrying llm_last_error(). C++11 or later; the same replies as build/chat.
//
//   build/cpp_chat -m MODEL [-z TOKENIZER] [-n N] [--temp T] [--top-k K] [--top-p P]
//                  [--seed S] [--threads N] [--stop STR]
//
// Each line read from stdin is appended to the text so far and the model continues it,
// streaming the reply; the KV cache is kept across turns. Ends at EOF.
#define LLM_IMPLEMENTATION
#include "llm.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace llm {

// ---- RAII: unique_ptr with the library's free functions ----------------------------------
// A deleter per type: a function object calling the C function (the free functions all
// accept NULL, as unique_ptr never passes it anyway).
template <class T, void (*Free)(T *)>
struct deleter {
    void operator()(T *p) const { Free(p); }
};
typedef std::unique_ptr<llm_model, deleter<llm_model, llm_model_free> > model;
typedef std::unique_ptr<llm_tokenizer, deleter<llm_tokenizer, llm_tokenizer_free> > tokenizer;
typedef std::unique_ptr<llm_llama_tokenizer, deleter<llm_llama_tokenizer, llm_llama_tokenizer_free> > llama_tokenizer;
typedef std::unique_ptr<llm_kv, deleter<llm_kv, llm_kv_free> > kv_cache;

// ---- errors: a status that is not LLM_OK becomes an exception ----------------------------
struct error : std::runtime_error {
    llm_status status;
    error(llm_status s, const std::string &what) : std::runtime_error(what), status(s) {}
};
inline void check(llm_status s) {
    if (s != LLM_OK) throw error(s, llm_last_error());   // the message names file and cause
}

// ---- constructors: the C out-parameter style, wrapped once ---------------------------------
inline model load_model(const std::string &path, const llm_options &opt) {
    llm_model *m = NULL;
    check(llm_model_load(&m, path.c_str(), &opt));
    return model(m);
}
inline tokenizer load_tokenizer(const std::string &path) {
    llm_tokenizer *t = NULL;
    check(llm_tokenizer_load(&t, path.c_str()));
    return tokenizer(t);
}
inline llama_tokenizer load_llama_tokenizer(const std::string &path, int vocab_size) {
    llm_llama_tokenizer *t = NULL;
    check(llm_llama_tokenizer_load(&t, path.c_str(), vocab_size));
    return llama_tokenizer(t);
}
inline kv_cache make_kv(llm_model *m, int n_seq) {
    llm_kv *kv = NULL;
    check(llm_kv_create(&kv, m, n_seq, 0, 0));
    return kv_cache(kv);
}

}  // namespace llm

// The streaming callback is a plain function: the library calls it through a C function
// pointer, with the user pointer it was given (here the stream to write to).
static int on_token(void *ud, int, int, const char *text, size_t len, float) {
    std::FILE *out = static_cast<std::FILE *>(ud);
    std::fwrite(text, 1, len, out);
    std::fflush(out);
    return 0;
}

static bool file_exists(const std::string &p) {
    std::FILE *f = std::fopen(p.c_str(), "rb");
    if (f) std::fclose(f);
    return f != NULL;
}

struct args {
    std::string model_path, tok_path;
    std::vector<std::string> stops;
    int n_new, top_k, threads;
    float temp, top_p;
    unsigned long long seed;
    args() : n_new(128), top_k(0), threads(0), temp(0.8f), top_p(0.9f),
             seed(static_cast<unsigned long long>(std::time(NULL))) {}
};

static bool parse(int argc, char **argv, args &a) {
    if (argc % 2 == 0) return false;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "-m") a.model_path = v;
        else if (k == "-z") a.tok_path = v;
        else if (k == "-n") a.n_new = std::atoi(v.c_str());
        else if (k == "--temp") a.temp = static_cast<float>(std::atof(v.c_str()));
        else if (k == "--top-k") a.top_k = std::atoi(v.c_str());
        else if (k == "--top-p") a.top_p = static_cast<float>(std::atof(v.c_str()));
        else if (k == "--seed") a.seed = std::strtoull(v.c_str(), NULL, 10);
        else if (k == "--threads") a.threads = std::atoi(v.c_str());
        else if (k == "--stop") a.stops.push_back(v);
        else return false;
    }
    return !a.model_path.empty();
}

static int chat(const args &a) {
    llm_options opt;
    std::memset(&opt, 0, sizeof opt);
    opt.n_threads = a.threads;
    llm::model m = llm::load_model(a.model_path, opt);
    llm_config cfg = llm_model_config(m.get());
    const bool llama = cfg.arch == LLM_ARCH_LLAMA;

    // The stop strings as the C array the config points to (valid while `stops` lives).
    std::vector<std::string> stops = a.stops;
    if (stops.empty()) stops.push_back("\n\n");
    std::vector<const char *> stop_ptrs;
    for (size_t i = 0; i < stops.size(); i++) stop_ptrs.push_back(stops[i].c_str());

    llm_generate_config gc = llm_generate_config_default();
    gc.max_new_tokens = a.n_new;
    gc.sampler.temperature = a.temp; gc.sampler.top_k = a.top_k; gc.sampler.top_p = a.top_p;
    gc.sampler.seed = a.seed;
    gc.stops = &stop_ptrs[0]; gc.n_stops = static_cast<int>(stop_ptrs.size());
    gc.on_token = on_token; gc.on_token_ud = stdout;
    gc.slide_window = 1;

    llm::llama_tokenizer ltok;   // one of the two is loaded; the other stays empty
    llm::tokenizer gtok;
    if (llama) {
        std::string p = a.tok_path;
        if (p.empty()) {   // beside the model: tok<V>.bin, else tokenizer.bin
            std::string::size_type slash = a.model_path.rfind('/');
            std::string dir = slash == std::string::npos ? "" : a.model_path.substr(0, slash + 1);
            p = dir + "tok" + std::to_string(cfg.vocab_size) + ".bin";
            if (!file_exists(p)) p = dir + "tokenizer.bin";
        }
        ltok = llm::load_llama_tokenizer(p, cfg.vocab_size);
        gc.piece = llm_piece_llama; gc.piece_ud = ltok.get(); gc.stop_token = LLM_LLAMA_BOS;
    } else {
        std::string p = a.tok_path;
        if (p.empty()) {
            const char *env = std::getenv("LLM_DATA");
            const std::string tries[3] = { env && *env ? std::string(env) + "/gpt2" : "", "data/gpt2", "../shared/data/gpt2" };
            for (int i = 0; i < 3 && !gtok; i++) {
                llm_tokenizer *t = NULL;
                if (!tries[i].empty() && llm_tokenizer_load(&t, tries[i].c_str()) == LLM_OK) gtok.reset(t);
            }
            if (!gtok) throw llm::error(LLM_ERR_IO, "no GPT-2 vocabulary in $LLM_DATA/gpt2, data/gpt2 or ../shared/data/gpt2 (-z PATH)");
        } else {
            gtok = llm::load_tokenizer(p);
        }
        if (llm_tokenizer_vocab_size(gtok.get()) != cfg.vocab_size)
            throw llm::error(LLM_ERR_FORMAT, "the tokenizer does not match the model's vocabulary");
        gc.piece = llm_piece_gpt2; gc.piece_ud = gtok.get(); gc.stop_token = llm_tokenizer_eot(gtok.get());
    }

    llm::kv_cache kv = llm::make_kv(m.get(), 1);
    std::vector<int> out(static_cast<size_t>(a.n_new) + 1);
    int pending = -1;   // the last id of the previous reply: sampled, not yet in the cache
    std::cerr << "cpp_chat: " << (llama ? "Llama" : "GPT-2") << " model, " << llm_kv_max_len(kv.get())
              << " tokens of context; type a line, Ctrl-D to end\n";
    std::string line;
    while (std::cerr << "> ", std::getline(std::cin, line)) {
        line += '\n';   // as fgets keeps it
        std::vector<int> ids;
        if (pending >= 0) ids.push_back(pending);
        const bool start = llm_kv_len(kv.get(), 0) == 0 && pending < 0;
        if (llama) {
            std::vector<int> buf(line.size() + 3);
            int k = 0;   // the first turn starts with BOS and the dummy-prefix space, as run.c
            llm::check(llm_llama_tokenizer_encode(ltok.get(), line.data(), line.size(), start, 0,
                                                  &buf[0], static_cast<int>(buf.size()), &k));
            ids.insert(ids.end(), buf.begin(), buf.begin() + k);
        } else {
            if (start) ids.push_back(llm_tokenizer_eot(gtok.get()));   // the start of a text
            std::vector<int> buf(line.size() + 1);
            size_t k = 0;
            llm::check(llm_tokenizer_encode(gtok.get(), line.data(), line.size(), 0, &buf[0], buf.size(), &k));
            ids.insert(ids.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k));
        }
        if (ids.empty()) continue;
        int n_out = 0;
        llm_finish why;
        llm_generate_stats st;
        llm::check(llm_generate(kv.get(), 0, &ids[0], static_cast<int>(ids.size()), &gc, &out[0],
                                static_cast<int>(out.size()), &n_out, &why, &st));
        // the reply's last id opens the next turn, unless a stop token or string ended it
        pending = why == LLM_FINISH_TOKEN || why == LLM_FINISH_STOP || n_out == 0 ? -1 : out[static_cast<size_t>(n_out) - 1];
        std::printf("\n");
        std::fflush(stdout);
        std::cerr << "[" << n_out << " tokens; context " << llm_kv_len(kv.get(), 0) << "/" << llm_kv_max_len(kv.get()) << "]\n";
    }
    return 0;   // m, the tokenizers and kv are freed here, in reverse order of creation
}

int main(int argc, char **argv) {
    args a;
    if (!parse(argc, argv, a)) {
        std::cerr << "usage: " << argv[0] << " -m MODEL [-z TOKENIZER] [-n N] [--temp T] [--top-k K] "
                     "[--top-p P] [--seed S] [--threads N] [--stop STR]\n";
        return 2;
    }
    try {
        return chat(a);
    } catch (const llm::error &e) {
        std::cerr << "cpp_chat: " << e.what() << " (" << llm_status_string(e.status) << ")\n";
        return 1;
    }
}
