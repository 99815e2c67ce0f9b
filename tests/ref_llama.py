#!/usr/bin/python3
"""tests/ref_llama.py OUT_DIR: PyTorch reference files for tests/test_llama_torch.c.

A Llama written here directly in plain torch (no `transformers`), with llama2.c's
choices of parts:
  - RMSNorm, eps 1e-5:        x * rsqrt(mean(x^2) + eps) * w
  - RoPE, theta 10000, llama2.c's interleaved pairs: within each head, the pair
    (x[i], x[i+1]) for even i is rotated by angle = pos * freq, freq = 1/theta^(i/HS).
    llama2.c computes freq and the angle in float32 (powf, then pos * freq); so does
    this script (numpy float32), and only cos/sin are taken in float64. The angle is
    thus the same float llama2.c feeds to cosf/sinf, and the reference differs from
    llama2.c's rotation by the float32 rounding of cos/sin alone.
  - grouped-query attention: n_kv_head < n_head, query head h reads kv head
    h // (n_head/n_kv_head) (consecutive query heads share a kv head, as run.c's
    `h / kv_mul`);
  - SwiGLU MLP: w2(silu(w1 x) * w3 x); no biases anywhere;
  - final RMSNorm, then the classifier: wcls (untied) or the token embedding (tied).

The weights come from the generator in tests/ref_common.py: only their recipe
(model.txt) is stored, and the C test draws them again (tests/ref.h) and writes each
model as a llama2.c "version 0" .bin, the format of run.c:
  7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative when
  a separate classifier follows), seq_len (meta.json: llama2c_header); then float32:
  token_embedding (V,C), rms_att (L,C), wq (L,C,C), wk (L,KV,C), wv (L,KV,C), wo (L,C,C),
  rms_ffn (L,C), w1 (L,H,C), w2 (L,C,H), w3 (L,H,C), rms_final (C), freq_cis_real
  (maxT,HS/2), freq_cis_imag (maxT,HS/2), [wcls (V,C)]. (KV = n_kv_heads * HS; weights
  (out, in); the recipe lists the tensors in this order, without the RoPE tables, which
  run.c and the library ignore: ref.h writes zeros there.)

The references are computed in float64 from the float32 weights (the "truth"); torch's
own float32 result is computed too and its error against float64 is stored in
meta.json, to compare the C test's tolerance with torch's own float32 noise.

Files (raw little-endian, .f32 = float32, .i32 = int32, row-major), per fixture:

  llama_untied/   V=257 L=2 NH=4 NKV=2 C=64 H=172 maxT=64, separate classifier
  llama_tied/     V=131 L=3 NH=6 NKV=3 C=48 H=128 maxT=32, classifier = embedding
    model.txt            the recipe of the weights (llama2.c names and shapes)
    tokens.i32           (B,T) = (3,29)
    targets.i32          (B,T) next tokens; a few are -100 (ignored)
    logits.f32           (B,T,V)
    loss.f32             (1) mean cross-entropy over the non-ignored targets
    grads.f32            d loss / d params, in the library's layout (below)
    adamw_losses.f32     (8) loss before each of 8 AdamW steps on the same batch
    adamw_norms.f32      (8) global gradient L2 norm before clipping, each step
    params_after.f32     the parameters after the 8 steps, library layout
    greedy.i32           (G) a greedy continuation of tokens[0, :P] (P, G in meta.json):
                         argmax of a full forward over the sequence so far, each step
    meta.json            shapes, optimizer settings, params_fnv (FNV-1a of the float32
                         parameters in the library layout: the loader's layout check),
                         torch float32-vs-float64 errors

The library layout (llm_params / llm_tensor_layout in llm.h) keeps, for a Llama, the
non-empty tensors in this order, each stacked over layers, weights (out, in):
  wte (V,C)  ln1w (L,C) = rms_att  qkvw (L,C+2KV,C) = rows [wq; wk; wv]
  attprojw (L,C,C) = wo  ln2w (L,C) = rms_ffn  fcw (L,2H,C) = rows [w1; w3]
  fcprojw (L,C,H) = w2  lnfw (C) = rms_final  [wcls (V,C) when untied]
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import (Recipe, adamw_steps, fixture_dir, greedy as common_greedy, make_batch,  # noqa: E402
                        mean_loss, params_hash, reference as common_reference, write_f32, write_i32, write_json)

torch.set_num_threads(2)

EPS = 1e-5
THETA = 10000.0
B, T = 3, 29
# The 8-step AdamW reference (llm_adamw_config {0.9, 0.95, 1e-8, 0.1, decay_all 0, clip}).
# grad_clip is chosen per fixture (see CONFIGS): the global norm starts above it and
# falls below it within the 8 steps, so both the clipped and the unclipped paths run.
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=8)

CONFIGS = [
    dict(name="llama_untied", V=257, L=2, NH=4, NKV=2, C=64, H=172, maxT=64, tied=False, seed=4242),
    dict(name="llama_tied", V=131, L=3, NH=6, NKV=3, C=48, H=128, maxT=32, tied=True, seed=777),
]
PROMPT, GREEDY = 5, 16   # greedy.i32: 16 tokens after the first 5 of tokens[0]


# ---- the model ----------------------------------------------------------------------------
def init_params(cfg, rec):
    """llama2.c-layout float32 parameters from recipe rec (in the file's order), scaled
    so that every part of the model does something the test can see: attention logits
    of order 1-2 (a sharp but not one-hot softmax, so the scale and RoPE matter), SwiGLU
    gates of order 1 (where silu is far from linear), norm gains drawn from [0.6, 1.4]
    (a dropped or misplaced gain shows), and logits of order 1-2. (Uniform draws: a
    scale s spans [-s, s), a standard deviation of s/sqrt(3).)"""
    V, L, C, H, NH, NKV = cfg["V"], cfg["L"], cfg["C"], cfg["H"], cfg["NH"], cfg["NKV"]
    KV = NKV * (C // NH)
    s = 1.0 / math.sqrt(C)
    r3 = math.sqrt(3.0)
    p = {}
    for name, shape, scale, shift in [
            ("tok_embeddings", [V, C], 0.15 * r3, 0.0), ("rms_att", [L, C], 0.4, 1.0),
            ("wq", [L, C, C], 1.1 * s * r3, 0.0), ("wk", [L, KV, C], 1.1 * s * r3, 0.0),
            ("wv", [L, KV, C], s * r3, 0.0), ("wo", [L, C, C], 0.7 * s * r3, 0.0),
            ("rms_ffn", [L, C], 0.4, 1.0), ("w1", [L, H, C], s * r3, 0.0),
            ("w2", [L, C, H], 0.7 / math.sqrt(H) * r3, 0.0), ("w3", [L, H, C], s * r3, 0.0),
            ("rms_final", [C], 0.4, 1.0)] + ([] if cfg["tied"] else [("wcls", [V, C], 0.15 * r3, 0.0)]):
        p[name] = rec.tensor(name, shape, scale, shift)
    return p


def rope_tables(HS, maxT):
    """cos, sin (maxT, HS/2) in float64 of llama2.c's float32 angles."""
    i = np.arange(0, HS, 2, dtype=np.float32)
    freq = np.float32(1.0) / np.power(np.float32(THETA), i / np.float32(HS))      # float32, as powf
    pos = np.arange(maxT, dtype=np.float32)
    val = (pos[:, None] * freq[None, :]).astype(np.float32)                         # float32 product
    v64 = val.astype(np.float64)
    return np.cos(v64), np.sin(v64)


def rope(x, cos, sin):
    """x (B,T,nh,HS): rotate each (x[2j], x[2j+1]) by the angle of (t, j)."""
    Bx, Tx, nh, HS = x.shape
    xp = x.reshape(Bx, Tx, nh, HS // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    c = cos[:Tx].view(1, Tx, 1, HS // 2)
    s = sin[:Tx].view(1, Tx, 1, HS // 2)
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(Bx, Tx, nh, HS)


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def forward(p, cfg, tokens):
    """logits (B,T,V) of the Llama with llama2.c-layout parameters p (any float dtype)."""
    L, C, NH, NKV = cfg["L"], cfg["C"], cfg["NH"], cfg["NKV"]
    HS = C // NH
    Bx, Tx = tokens.shape
    dt = p["wq"].dtype
    cos_np, sin_np = rope_tables(HS, cfg["maxT"])
    cos = torch.tensor(cos_np, dtype=dt)
    sin = torch.tensor(sin_np, dtype=dt)
    mask = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    x = p["tok_embeddings"][tokens]
    for l in range(L):
        a = rmsnorm(x, p["rms_att"][l])
        q = (a @ p["wq"][l].t()).view(Bx, Tx, NH, HS)
        k = (a @ p["wk"][l].t()).view(Bx, Tx, NKV, HS)
        v = (a @ p["wv"][l].t()).view(Bx, Tx, NKV, HS)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = NH // NKV   # kv head j serves query heads j*rep .. j*rep+rep-1
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = [t.transpose(1, 2) for t in (q, k, v)]   # (B,NH,T,HS)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(Bx, Tx, C)
        x = x + y @ p["wo"][l].t()
        a = rmsnorm(x, p["rms_ffn"][l])
        h = F.silu(a @ p["w1"][l].t()) * (a @ p["w3"][l].t())
        x = x + h @ p["w2"][l].t()
    x = rmsnorm(x, p["rms_final"])
    return x @ (p["tok_embeddings"] if cfg["tied"] else p["wcls"]).t()


# ---- layouts ------------------------------------------------------------------------------
LIB_NAMES = ["wte", "ln1w", "qkvw", "attprojw", "ln2w", "fcw", "fcprojw", "lnfw", "wcls"]


def library_tensors(d, cfg):
    """The library's non-empty tensors, in llm_params order, from llama2.c-layout d."""
    t = {n: x.detach() for n, x in d.items()}
    out = [("wte", t["tok_embeddings"]), ("ln1w", t["rms_att"]),
           ("qkvw", torch.cat([t["wq"], t["wk"], t["wv"]], dim=1)),      # (L, C+2KV, C)
           ("attprojw", t["wo"]), ("ln2w", t["rms_ffn"]),
           ("fcw", torch.cat([t["w1"], t["w3"]], dim=1)),                 # (L, 2H, C)
           ("fcprojw", t["w2"]), ("lnfw", t["rms_final"])]
    if not cfg["tied"]:
        out.append(("wcls", t["wcls"]))
    return out


def to_library_layout(d, cfg):
    return torch.cat([x.contiguous().reshape(-1) for _, x in library_tensors(d, cfg)]).to(torch.float32).numpy()


def library_sizes(cfg):
    return [(n, x.numel()) for n, x in library_tensors(init_params(cfg, Recipe(0)), cfg)]


def llama2c_header(cfg):
    """The .bin's 7 int32: vocab_size is negative when a separate classifier follows."""
    return [cfg["C"], cfg["H"], cfg["L"], cfg["NH"], cfg["NKV"], cfg["V"] if cfg["tied"] else -cfg["V"], cfg["maxT"]]


def is_decayed(name):
    # nanoGPT's rule, as the library's decay_all = 0: 2-D weights decay, norm gains do not.
    return not name.startswith("rms_")


# ---- references ---------------------------------------------------------------------------
def reference(p32, cfg, tokens, targets):
    """float64 logits, loss, grads from float32 weights; plus torch float32's errors."""
    return common_reference(p32, lambda p: forward(p, cfg, tokens), targets,
                            lambda d: to_library_layout(d, cfg), library_sizes(cfg))


def adamw_reference(p32, cfg, tokens, targets, clip, dtype):
    """8 steps of torch.optim.AdamW with clip_grad_norm_, on one batch."""
    pt = {n: t.detach().clone().to(dtype).requires_grad_(True) for n, t in p32.items()}  # never p32 itself
    losses, norms = adamw_steps(pt, is_decayed, lambda p: mean_loss(forward(p, cfg, tokens), targets), ADAM, clip)
    return losses, norms, to_library_layout(pt, cfg)


def pick_clip(p32, cfg, tokens, targets):
    """A clip value that the norm exceeds in some of the 8 steps and not in others:
    the geometric mean of the first and the smallest unclipped norm, confirmed by
    a clipped run."""
    _, norms, _ = adamw_reference(p32, cfg, tokens, targets, float("inf"), torch.float64)
    clip = float(np.float32(math.sqrt(norms[0] * min(norms))))
    _, n2, _ = adamw_reference(p32, cfg, tokens, targets, clip, torch.float64)
    k = sum(1 for n in n2 if n > clip)
    assert 0 < k < ADAM["steps"], "grad_clip %.4f clips %d of %d steps: %s" % (clip, k, ADAM["steps"], n2)
    return clip


def greedy(p32, cfg, prompt, n):
    """A greedy continuation: argmax of a full float64 forward each step. Every step's
    best logit leads the runner-up by more than float32 noise, so a float32
    implementation must pick the same tokens."""
    p64 = {k: v.double() for k, v in p32.items()}
    cont, gap = common_greedy(lambda t: forward(p64, cfg, t), prompt, n)
    assert gap > 1e-4, "greedy: a near tie; pick another seed"
    return cont


def gen(out, cfg):
    d = fixture_dir(out, cfg["name"])
    rec = Recipe(cfg["seed"])
    p = init_params(cfg, rec)
    rec.write(d, "tests/ref_llama.py " + cfg["name"])
    g = torch.Generator().manual_seed(cfg["seed"])
    tokens, targets = make_batch(g, cfg["V"], B, T, n_ignored=6, zero_at=(1, 7))
    write_i32(os.path.join(d, "tokens.i32"), tokens)
    write_i32(os.path.join(d, "targets.i32"), targets)
    ref = reference(p, cfg, tokens, targets)
    write_f32(os.path.join(d, "logits.f32"), ref["logits"])
    write_f32(os.path.join(d, "loss.f32"), [ref["loss"]])
    write_f32(os.path.join(d, "grads.f32"), ref["grads"])
    clip = pick_clip(p, cfg, tokens, targets)
    losses, norms, after = adamw_reference(p, cfg, tokens, targets, clip, torch.float64)
    _, _, after32 = adamw_reference(p, cfg, tokens, targets, clip, torch.float32)
    write_f32(os.path.join(d, "adamw_losses.f32"), losses)
    write_f32(os.path.join(d, "adamw_norms.f32"), norms)
    write_f32(os.path.join(d, "params_after.f32"), after)
    gr = greedy(p, cfg, tokens[0, :PROMPT].tolist(), GREEDY)
    write_i32(os.path.join(d, "greedy.i32"), gr)
    n_params = int(sum(n for _, n in library_sizes(cfg)))
    meta = dict(format="llama2c", llama2c_header=llama2c_header(cfg), params_fnv=params_hash(to_library_layout(p, cfg)),
                V=cfg["V"], L=cfg["L"], NH=cfg["NH"], NKV=cfg["NKV"], C=cfg["C"], H=cfg["H"],
                maxT=cfg["maxT"], untied=0 if cfg["tied"] else 1, B=B, T=T, norm_eps=EPS, rope_theta=THETA,
                loss=ref["loss"], n_params=n_params, n_ignored=int((targets < 0).sum()),
                tensors=[[n, k] for n, k in library_sizes(cfg)],
                lr=ADAM["lr"], beta1=ADAM["beta1"], beta2=ADAM["beta2"], eps=ADAM["eps"],
                weight_decay=ADAM["weight_decay"], steps=ADAM["steps"], grad_clip=clip,
                adamw_losses=losses, adamw_norms=norms, prompt_len=PROMPT, greedy_len=GREEDY,
                torch_f32_logits_err=ref["torch_f32_logits_err"], torch_f32_loss_err=ref["torch_f32_loss_err"],
                torch_f32_grads_err=ref["torch_f32_grads_err"],
                torch_f32_params_after_err=float(np.abs(after32.astype(np.float64) - after).max()))
    write_json(os.path.join(d, "meta.json"), meta)
    print("  %s: %d params, loss %.6f; AdamW losses %s" % (cfg["name"], n_params, ref["loss"],
                                                            " ".join("%.4f" % x for x in losses)))
    print("  grad norms (clip %.4f): %s" % (clip, " ".join("%.4f" % x for x in norms)))
    print("  torch float32 vs float64: logits %.2e, loss %.2e, grads (worst tensor) %.2e, params after %.2e" % (
        ref["torch_f32_logits_err"], ref["torch_f32_loss_err"], max(ref["torch_f32_grads_err"].values()),
        meta["torch_f32_params_after_err"]))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT_DIR" % sys.argv[0])
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for cfg in CONFIGS:
        gen(out, cfg)


if __name__ == "__main__":
    main()
