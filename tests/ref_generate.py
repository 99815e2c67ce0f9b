#!/usr/bin/python3
"""tests/ref_generate.py OUT_DIR: PyTorch greedy continuations for tests/test_generate.c.

Two small models with random weights, each written in a format the library loads, and
for each a fixed prompt continued greedily by a plain PyTorch loop: at every step the
whole sequence is run through the model again (no cache) and the argmax of the last
row is appended. Computed in float64 from the float32 weights. The C side generates
with its KV cache and must produce the same ids, and the same logits at every position.

  gen_gpt2/    GPT-2, L=2 NH=4 C=64 V=503 maxT=64, HF layout (Conv1D weights (in, out))
    model.safetensors, config.json
  gen_llama/   Llama, L=2 C=64 NH=4 NKV=2 (grouped-query) H=96 V=300 maxT=48, untied
               classifier; llama2.c's .bin (7 x int32 header, vocab_size negative for
               the separate classifier, then wte, rms_att, wq, wk, wv, wo, rms_ffn, w1,
               w2, w3, rms_final, the two RoPE tables, wcls)
    model.bin
  each with:
    prompt.i32   the prompt ids
    greedy.i32   the greedy continuation (N_NEW ids)
    logits.f32   (T, V) logits of prompt + continuation[:-1] at every position
    meta.json    sizes and the smallest top-1/top-2 logit gap over the greedy steps
                 (how far the argmax is from a tie: float32 noise is ~1e-5)

A directory whose .stamp holds the hash of this script, tests/ref_gpt2.py (whose GPT-2
forward it uses) and tests/ref_common.py is not regenerated.
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_gpt2  # noqa: E402  (its GPT-2: forward, tensor list, config.json)
from ref_common import Stamp, greedy, write_bytes, write_f32, write_i32, write_json, write_safetensors  # noqa: E402

torch.set_num_threads(2)
STAMP = Stamp(__file__, ref_gpt2.__file__)   # ref_gpt2's forward makes the GPT-2 references
N_NEW = 24
DT = torch.float64


def finish(d, forward, prompt, cfg_meta):
    cont, gap = greedy(forward, prompt, N_NEW)
    full = prompt + cont[:-1]
    logits = forward(torch.tensor([full]))[0]
    write_i32(os.path.join(d, "prompt.i32"), prompt)
    write_i32(os.path.join(d, "greedy.i32"), cont)
    write_f32(os.path.join(d, "logits.f32"), logits.to(torch.float32).numpy())
    meta = dict(cfg_meta, n_prompt=len(prompt), n_new=N_NEW, min_top2_gap=gap)
    write_json(os.path.join(d, "meta.json"), meta)
    print("  %s: %d + %d ids, smallest top-2 gap %.3g" % (d, len(prompt), N_NEW, gap))
    if gap < 1e-3:
        print("  WARNING: a near tie; float32 rounding could flip the argmax")
    STAMP.stamp(d)


# ---- GPT-2 ------------------------------------------------------------------------------
def gen_gpt2(out):
    d = os.path.join(out, "gen_gpt2")
    if not STAMP.fresh(d):
        return
    cfg = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=503, n_positions=64)
    gen = torch.Generator().manual_seed(1234)
    L, C, V, P = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    # larger weights than GPT-2's init, so that the next-token distribution is peaked and
    # the greedy choice is far from a tie
    p = {"wte.weight": normal(V, C, std=0.3), "wpe.weight": normal(P, C, std=0.3)}
    for i in range(L):
        h = "h.%d." % i
        p[h + "ln_1.weight"] = 1.0 + normal(C, std=0.1)
        p[h + "ln_1.bias"] = normal(C, std=0.1)
        p[h + "attn.c_attn.weight"] = normal(C, 3 * C, std=0.15)
        p[h + "attn.c_attn.bias"] = normal(3 * C, std=0.2)
        p[h + "attn.c_proj.weight"] = normal(C, C, std=0.1)
        p[h + "attn.c_proj.bias"] = normal(C, std=0.05)
        p[h + "ln_2.weight"] = 1.0 + normal(C, std=0.1)
        p[h + "ln_2.bias"] = normal(C, std=0.1)
        p[h + "mlp.c_fc.weight"] = normal(C, 4 * C, std=0.1)
        p[h + "mlp.c_fc.bias"] = normal(4 * C, std=0.5)
        p[h + "mlp.c_proj.weight"] = normal(4 * C, C, std=0.05)
        p[h + "mlp.c_proj.bias"] = normal(C, std=0.05)
    p["ln_f.weight"] = 1.0 + normal(C, std=0.1)
    p["ln_f.bias"] = normal(C, std=0.1)
    write_safetensors(os.path.join(d, "model.safetensors"), ref_gpt2.hf_tensor_list(p, cfg, "F32"))
    write_json(os.path.join(d, "config.json"), ref_gpt2.config_json(cfg))
    p64 = {k: v.to(DT) for k, v in p.items()}
    prompt = [17, 402, 5, 5, 88, 250, 1, 499]
    finish(d, lambda toks: ref_gpt2.forward(p64, cfg, cfg["n_head"], toks), prompt, cfg)


# ---- Llama ------------------------------------------------------------------------------
def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    """x (T, nh, HS): rotate each pair (x[2i], x[2i+1]) by pos * theta^(-2i/HS)
    (llama2.c's interleaved convention)."""
    HS = x.shape[-1]
    i = torch.arange(0, HS, 2, dtype=DT)
    freq = 1.0 / theta ** (i / HS)                         # (HS/2)
    ang = pos.to(DT)[:, None] * freq[None, :]              # (T, HS/2)
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def llama_forward(w, cfg, tokens):
    """logits (B, T, V); tokens (B, T); weights as llama2.c stores them ((out, in))."""
    C, L, NH, NKV = cfg["dim"], cfg["n_layers"], cfg["n_heads"], cfg["n_kv_heads"]
    HS = C // NH
    B, T = tokens.shape
    outs = []
    for b in range(B):
        x = w["wte"][tokens[b]]
        pos = torch.arange(T)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for l in range(L):
            a = rmsnorm(x, w["rms_att"][l])
            q = (a @ w["wq"][l].t()).view(T, NH, HS)
            k = (a @ w["wk"][l].t()).view(T, NKV, HS)
            v = (a @ w["wv"][l].t()).view(T, NKV, HS)
            q, k = rope(q, pos, 10000.0), rope(k, pos, 10000.0)
            rep = NH // NKV                                 # query head h reads kv head h // rep
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(HS)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = torch.einsum("hts,shd->thd", att, v).reshape(T, C)
            x = x + y @ w["wo"][l].t()
            a = rmsnorm(x, w["rms_ffn"][l])
            x = x + (F.silu(a @ w["w1"][l].t()) * (a @ w["w3"][l].t())) @ w["w2"][l].t()
        x = rmsnorm(x, w["rms_final"])
        outs.append(x @ w["wcls"].t())
    return torch.stack(outs)


def gen_llama(out):
    d = os.path.join(out, "gen_llama")
    if not STAMP.fresh(d):
        return
    cfg = dict(dim=64, hidden_dim=96, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=300, seq_len=48)
    C, H, L, NH, NKV, V, T = (cfg[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                                "vocab_size", "seq_len"))
    KV = NKV * (C // NH)
    gen = torch.Generator().manual_seed(4321)

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=torch.float32) * std

    w = {"wte": normal(V, C, std=1.0),
         "rms_att": 1.0 + normal(L, C, std=0.1),
         "wq": normal(L, C, C, std=0.2), "wk": normal(L, KV, C, std=0.2), "wv": normal(L, KV, C, std=0.2),
         "wo": normal(L, C, C, std=0.1),
         "rms_ffn": 1.0 + normal(L, C, std=0.1),
         "w1": normal(L, H, C, std=0.15), "w2": normal(L, C, H, std=0.1), "w3": normal(L, H, C, std=0.15),
         "rms_final": 1.0 + normal(C, std=0.1),
         "wcls": normal(V, C, std=0.3)}
    order = ["wte", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]
    hdr = struct.pack("<7i", C, H, L, NH, NKV, -V, T)      # -V: a separate classifier follows
    body = b"".join(w[k].numpy().astype("<f4").tobytes() for k in order)
    rope_tables = np.zeros(T * (C // NH), dtype="<f4").tobytes()   # unused by both sides
    write_bytes(os.path.join(d, "model.bin"), hdr + body + rope_tables + w["wcls"].numpy().astype("<f4").tobytes())
    w64 = {k: v.to(DT) for k, v in w.items()}
    prompt = [1, 45, 7, 299, 120, 3, 3, 64, 200, 11]
    finish(d, lambda toks: llama_forward(w64, cfg, toks), prompt, cfg)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT_DIR" % sys.argv[0])
    os.makedirs(sys.argv[1], exist_ok=True)
    gen_gpt2(sys.argv[1])
    gen_llama(sys.argv[1])


if __name__ == "__main__":
    main()
