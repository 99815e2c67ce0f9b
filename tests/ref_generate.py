#!/usr/bin/python3
"""tests/ref_generate.py OUT_DIR: PyTorch greedy continuations for tests/test_generate.c.

Two small models with random weights and for each a fixed prompt continued greedily by
a plain PyTorch loop: at every step the whole sequence is run through the model again
(no cache) and the argmax of the last row is appended. Computed in float64 from the
float32 weights. The C side writes each model in a format the library loads (from the
recipe, tests/ref.h), generates with its KV cache and must produce the same ids, and
the same logits at every position.

  gen_gpt2/    GPT-2, L=2 NH=4 C=64 V=503 maxT=64, HF layout (Conv1D weights (in, out)),
               written as model.safetensors + config.json; tests/ref_gpt2.py's forward
  gen_llama/   Llama, L=2 C=64 NH=4 NKV=2 (grouped-query) H=96 V=300 maxT=48, untied
               classifier, written as llama2.c's .bin; tests/ref_llama.py's forward
  each with:
    model.txt    the recipe of the weights (tests/ref_common.py)
    prompt.i32   the prompt ids
    greedy.i32   the greedy continuation (N_NEW ids)
    logits.f32   (T, V) logits of prompt + continuation[:-1] at every position
    meta.json    sizes, params_fnv, and the smallest top-1/top-2 logit gap over the
                 greedy steps (how far the argmax is from a tie: float32 noise is ~1e-5)
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_gpt2  # noqa: E402  (its GPT-2 forward and layout)
import ref_llama  # noqa: E402  (its Llama forward and layout)
from ref_common import (Recipe, fixture_dir, greedy, params_hash, std_scale, write_f32, write_i32,  # noqa: E402
                        write_json)

torch.set_num_threads(2)
N_NEW = 24
DT = torch.float64


def finish(d, forward, prompt, meta):
    cont, gap = greedy(forward, prompt, N_NEW)
    full = prompt + cont[:-1]
    logits = forward(torch.tensor([full]))[0]
    write_i32(os.path.join(d, "prompt.i32"), prompt)
    write_i32(os.path.join(d, "greedy.i32"), cont)
    write_f32(os.path.join(d, "logits.f32"), logits.to(torch.float32).numpy())
    write_json(os.path.join(d, "meta.json"), dict(meta, n_prompt=len(prompt), n_new=N_NEW, min_top2_gap=gap))
    print("  %s: %d + %d ids, smallest top-2 gap %.3g" % (d, len(prompt), N_NEW, gap))
    assert gap > 1e-3, "a near tie: float32 rounding could flip the argmax; pick another seed"


def gen_gpt2(out):
    d = fixture_dir(out, "gen_gpt2")
    cfg = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=503, n_positions=64)
    L, C, V, P = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    rec = Recipe(2000)

    def t(name, shape, std, shift=0.0):
        return rec.tensor(name, shape, std_scale(std), shift)

    # larger weights than GPT-2's init, so that the next-token distribution is peaked and
    # the greedy choice is far from a tie
    p = {"wte.weight": t("wte.weight", [V, C], 0.3), "wpe.weight": t("wpe.weight", [P, C], 0.3)}
    for i in range(L):
        h = "h.%d." % i
        for name, shape, std, shift in [
                ("ln_1.weight", [C], 0.1, 1.0), ("ln_1.bias", [C], 0.1, 0.0),
                ("attn.c_attn.weight", [C, 3 * C], 0.15, 0.0), ("attn.c_attn.bias", [3 * C], 0.2, 0.0),
                ("attn.c_proj.weight", [C, C], 0.1, 0.0), ("attn.c_proj.bias", [C], 0.05, 0.0),
                ("ln_2.weight", [C], 0.1, 1.0), ("ln_2.bias", [C], 0.1, 0.0),
                ("mlp.c_fc.weight", [C, 4 * C], 0.1, 0.0), ("mlp.c_fc.bias", [4 * C], 0.5, 0.0),
                ("mlp.c_proj.weight", [4 * C, C], 0.05, 0.0), ("mlp.c_proj.bias", [C], 0.05, 0.0)]:
            p[h + name] = t(h + name, shape, std, shift)
    p["ln_f.weight"] = t("ln_f.weight", [C], 0.1, 1.0)
    p["ln_f.bias"] = t("ln_f.bias", [C], 0.1)
    rec.write(d, "tests/ref_generate.py gen_gpt2")
    p64 = {k: v.to(DT) for k, v in p.items()}
    meta = dict(cfg, format="gpt2-safetensors", params_fnv=params_hash(ref_gpt2.to_library_layout(p, cfg)))
    prompt = [17, 402, 5, 5, 88, 250, 1, 499]
    finish(d, lambda toks: ref_gpt2.forward(p64, cfg, cfg["n_head"], toks), prompt, meta)


def gen_llama(out):
    d = fixture_dir(out, "gen_llama")
    cfg = dict(V=300, L=2, NH=4, NKV=2, C=64, H=96, maxT=48, tied=False)
    V, L, C, H = cfg["V"], cfg["L"], cfg["C"], cfg["H"]
    KV = cfg["NKV"] * (C // cfg["NH"])
    rec = Recipe(3000)
    p = {}
    for name, shape, std, shift in [
            ("tok_embeddings", [V, C], 1.0, 0.0), ("rms_att", [L, C], 0.1, 1.0),
            ("wq", [L, C, C], 0.2, 0.0), ("wk", [L, KV, C], 0.2, 0.0), ("wv", [L, KV, C], 0.2, 0.0),
            ("wo", [L, C, C], 0.1, 0.0), ("rms_ffn", [L, C], 0.1, 1.0),
            ("w1", [L, H, C], 0.15, 0.0), ("w2", [L, C, H], 0.1, 0.0), ("w3", [L, H, C], 0.15, 0.0),
            ("rms_final", [C], 0.1, 1.0), ("wcls", [V, C], 0.3, 0.0)]:
        p[name] = rec.tensor(name, shape, std_scale(std), shift)
    rec.write(d, "tests/ref_generate.py gen_llama")
    p64 = {k: v.to(DT) for k, v in p.items()}
    meta = dict(cfg, format="llama2c", llama2c_header=ref_llama.llama2c_header(cfg),
                params_fnv=params_hash(ref_llama.to_library_layout(p, cfg)))
    prompt = [1, 45, 7, 299, 120, 3, 3, 64, 200, 11]
    finish(d, lambda toks: ref_llama.forward(p64, cfg, toks), prompt, meta)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT_DIR" % sys.argv[0])
    os.makedirs(sys.argv[1], exist_ok=True)
    gen_gpt2(sys.argv[1])
    gen_llama(sys.argv[1])


if __name__ == "__main__":
    main()
