#!/usr/bin/python3
"""tests/ref_lora.py OUT_DIR: PyTorch references for LoRA and dropout (tests/test_lora.c,
tests/test_dropout.c).

The models are the plain-torch GPT-2 of tests/ref_gpt2.py and Llama of tests/ref_llama.py,
written again here with two hooks, each added by hand as llm.h defines it:

  LoRA (Hu et al. 2021; HuggingFace PEFT's Linear): each adapted matrix W (out, in) of a
  layer gains A (r, in) and B (out, r), and its output becomes
      y = x W^T + b + (alpha / r) * (x A^T) B^T
  on GPT-2's c_attn (qkv), attn.c_proj (proj), mlp.c_fc (up), mlp.c_proj (down); on a
  Llama the fused matrices of the library take one adapter each: qkv = [wq; wk; wv] (the
  update is split into its q, k, v parts), up = [w1; w3] (gate and up), proj = wo,
  down = w2. The base weights are constants (frozen); only A and B are leaves.

  Dropout at GPT-2's places: the embedding output (wte + wpe), the attention output
  projection and the MLP output, each just before its residual add:
      x = x * mask,  mask[i] = kept(i) / (1 - p)
  The masks are not drawn by torch: they are computed here, in numpy, from llm.h's
  counter-based hash, written out (masks.f32), and consumed by the reference. The C test
  checks that its own masks are these, bit for bit, and that its forward and backward
  with them match the reference's. The hash (llm.h, llm__dropout_key / llm__dropout_ref):
      mix(z): z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
              z ^ z>>31                                  (splitmix64's output function)
      absorb(h, v) = mix((h ^ v) + PHI),  PHI = 0x9E3779B97F4A7C15
      key = absorb(absorb(absorb(absorb(mix(seed + PHI), step), micro), layer), place)
      element i of a (B,T,C) tensor (row-major index) is kept when
          (mix(key + (i+1)*PHI) >> 40) >= floor(float32(p) * 2^24)
      and a kept element is multiplied by float32(1) / (float32(1) - float32(p)).
  step = optimizer steps taken, micro = forwards since the last step, place 0 the
  embedding (layer 0), 1 the attention projection, 2 the MLP output (layer l).

References in float64 from float32 values, as the other scripts (tests/ref_common.py).
The base weights come from the generator of tests/ref_common.py: only their recipe
(model.txt) is stored, and the C tests draw them again (tests/ref.h) and write the model
file themselves; meta.json's params_fnv proves both sides hold the same floats. The
adapters and the masks are stored (small).
Files (raw little-endian .f32 / .i32, row-major):

  lora_gpt2/    GPT-2 L=2 NH=4 C=64 V=503 maxT=64 (random affine parts, as ref_gpt2.py),
                LoRA r=4 alpha=8 on qkv, proj, up, down
    model.txt                          the base's recipe (HF names and shapes)
    tokens.i32, targets.i32            (B,T) = (4,32); a few targets -100
    adapters.f32                       A random, B random (a trained state): for each
                                       target in the order qkv, proj, up, down:
                                       A (L,r,in) then B^T (L,r,out) (llm.h keeps B
                                       transposed)
    logits.f32 (B,T,V), loss.f32 (1), lora_grads.f32 (d loss / d adapters, same layout)
    adamw_init.f32                     adapters at the start of training: A random, B = 0
    adamw_losses.f32, adamw_norms.f32  (10) 10 AdamW steps of the adapters alone (base
                                       frozen), loss and gradient norm before each step
    adapters_after.f32                 the adapters after the 10 steps
    meta.json                          shapes, rank, alpha, targets, AdamW settings
  lora_llama/   Llama V=257 L=2 NH=4 NKV=2 C=64 H=172 maxT=64, untied, LoRA r=3 alpha=5 on
                qkv and down only (ref_llama.py's llama_untied shape, its own weights);
                model.txt (llama2.c names), the same files as lora_gpt2
  dropout_gpt2/ GPT-2 as lora_gpt2 (no adapters), dropout p=0.1, seed 1234, step 0,
                micro 0:
    model.txt, tokens.i32, targets.i32
    masks.f32       (1+2L, B,T,C): the embedding's, then per layer attention's and MLP's,
                    as multipliers (0 or 1/(1-p))
    logits.f32, loss.f32, grads.f32 (every parameter, library layout), meta.json
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_gpt2  # noqa: E402
import ref_llama  # noqa: E402
from ref_common import (Recipe, adamw_steps, fixture_dir, make_batch, mean_loss, params_hash, rel_err,  # noqa: E402
                        write_f32, write_i32, write_json)

torch.set_num_threads(2)

ADAM = dict(lr=5e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, steps=10)
TARGETS = ["qkv", "proj", "up", "down"]   # llm.h's LLM_LORA_QKV, _PROJ, _UP, _DOWN: bits 1, 2, 4, 8
GPT2_CFG = {"n_layer": 2, "n_head": 4, "n_embd": 64, "vocab_size": 503, "n_positions": 64}
B, T = 4, 32


# ---- the counter-based dropout masks ---------------------------------------------------------
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
PHI = np.uint64(0x9E3779B97F4A7C15)


def mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def absorb(h, v):
    with np.errstate(over="ignore"):
        return mix((np.uint64(h) ^ np.uint64(v)) + PHI)


def dropout_key(seed, step, micro, layer, place):
    with np.errstate(over="ignore"):
        h = mix(np.uint64(seed) + PHI)
    for v in (step, micro, layer, place):
        h = absorb(h, v)
    return np.uint64(h)


def dropout_mask(key, n, p):
    """(n) float64 multipliers: 0 or float32(1)/(float32(1)-float32(p))."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = mix(np.uint64(key) + i * PHI)
    thr = int(np.float32(p) * np.float32(16777216.0))
    keep = (u >> np.uint64(40)).astype(np.int64) >= thr
    scale = float(np.float32(1.0) / (np.float32(1.0) - np.float32(p)))
    return np.where(keep, scale, 0.0)


# ---- LoRA ----------------------------------------------------------------------------------
def lora_dims(kind, cfg):
    """(in, out) of each target of a model."""
    if kind == "gpt2":
        C = cfg["n_embd"]
        return {"qkv": (C, 3 * C), "proj": (C, C), "up": (C, 4 * C), "down": (4 * C, C)}
    C, H, KV = cfg["C"], cfg["H"], cfg["NKV"] * (cfg["C"] // cfg["NH"])
    return {"qkv": (C, C + 2 * KV), "proj": (C, C), "up": (C, 2 * H), "down": (H, C)}


def lora_init(dims, targets, r, L, gen, b_std):
    """A ~ U(-1/sqrt(in), 1/sqrt(in)); B ~ N(0, b_std) (0: B = 0, the start of training)."""
    ad = {}
    for t in targets:
        i, o = dims[t]
        ad["A." + t] = (torch.rand(L, r, i, generator=gen, dtype=torch.float32) * 2 - 1) / math.sqrt(i)
        ad["B." + t] = torch.randn(L, o, r, generator=gen, dtype=torch.float32) * b_std
    return ad


def lora_layout(ad, targets):
    """The library's adapter buffer: per target, A (L,r,in) then B^T (L,r,out)."""
    parts = []
    for t in targets:
        parts += [ad["A." + t].detach().reshape(-1), ad["B." + t].detach().transpose(1, 2).reshape(-1)]
    return torch.cat(parts).to(torch.float32).numpy()


def lora_delta(ad, t, l, x, scale):
    """(alpha/r) (x A^T) B^T of target t at layer l, or 0 when t is not adapted."""
    if ad is None or "A." + t not in ad:
        return 0.0
    return scale * ((x @ ad["A." + t][l].t()) @ ad["B." + t][l].t())


# ---- the models with the hooks ---------------------------------------------------------------
def gpt2_forward(p, cfg, tokens, ad=None, scale=0.0, masks=None):
    """ref_gpt2.forward, with LoRA deltas on the four linear layers and the dropout
    multipliers masks (list of (B,T,C) tensors, 1+2L of them) at GPT-2's places."""
    L, C, NH = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    Bx, Tx = tokens.shape
    HS = C // NH
    x = p["wte.weight"][tokens] + p["wpe.weight"][:Tx]
    if masks is not None:
        x = x * masks[0]
    mask = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    for i in range(L):
        h = "h.%d." % i
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps=1e-5)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"] + lora_delta(ad, "qkv", i, a, scale)
        q, k, v = qkv.split(C, dim=2)
        q, k, v = [t.view(Bx, Tx, NH, HS).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(Bx, Tx, C)
        y = y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"] + lora_delta(ad, "proj", i, y, scale)
        if masks is not None:
            y = y * masks[1 + 2 * i]
        x = x + y
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps=1e-5)
        a = ref_gpt2.gelu_tanh(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"] + lora_delta(ad, "up", i, a, scale))
        y = a @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"] + lora_delta(ad, "down", i, a, scale)
        if masks is not None:
            y = y * masks[2 + 2 * i]
        x = x + y
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    return x @ p["wte.weight"].t()


def llama_forward(p, cfg, tokens, ad=None, scale=0.0):
    """ref_llama.forward, with the LoRA deltas on the fused qkv, wo, the fused [w1; w3]
    and w2."""
    L, C, NH, NKV, H = cfg["L"], cfg["C"], cfg["NH"], cfg["NKV"], cfg["H"]
    HS, KV = C // NH, NKV * (C // NH)
    Bx, Tx = tokens.shape
    dt = p["wq"].dtype
    cos_np, sin_np = ref_llama.rope_tables(HS, cfg["maxT"])
    cos, sin = torch.tensor(cos_np, dtype=dt), torch.tensor(sin_np, dtype=dt)
    mask = torch.ones(Tx, Tx, dtype=torch.bool).tril()
    x = p["tok_embeddings"][tokens]
    for l in range(L):
        a = ref_llama.rmsnorm(x, p["rms_att"][l])
        qkv = torch.cat([a @ p["wq"][l].t(), a @ p["wk"][l].t(), a @ p["wv"][l].t()], dim=-1)
        qkv = qkv + lora_delta(ad, "qkv", l, a, scale)
        q = qkv[..., :C].reshape(Bx, Tx, NH, HS)
        k = qkv[..., C:C + KV].reshape(Bx, Tx, NKV, HS)
        v = qkv[..., C + KV:].reshape(Bx, Tx, NKV, HS)
        q, k = ref_llama.rope(q, cos, sin), ref_llama.rope(k, cos, sin)
        rep = NH // NKV
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        q, k, v = [t.transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(Bx, Tx, C)
        x = x + y @ p["wo"][l].t() + lora_delta(ad, "proj", l, y, scale)
        a = ref_llama.rmsnorm(x, p["rms_ffn"][l])
        gu = torch.cat([a @ p["w1"][l].t(), a @ p["w3"][l].t()], dim=-1) + lora_delta(ad, "up", l, a, scale)
        h = F.silu(gu[..., :H]) * gu[..., H:]
        x = x + h @ p["w2"][l].t() + lora_delta(ad, "down", l, h, scale)
    x = ref_llama.rmsnorm(x, p["rms_final"])
    return x @ (p["tok_embeddings"] if cfg["tied"] else p["wcls"]).t()


# ---- references ------------------------------------------------------------------------------
def lora_reference(fwd, p32, ad32, targets_list, tokens, targets):
    """float64 logits, loss and adapter gradients (the base a constant), and torch
    float32's own error on the gradients."""
    p64 = {n: t.double() for n, t in p32.items()}
    a64 = {n: t.double().requires_grad_(True) for n, t in ad32.items()}
    logits = fwd(p64, a64)
    loss = mean_loss(logits, targets)
    loss.backward()
    grads = lora_layout({n: t.grad for n, t in a64.items()}, targets_list)
    a32 = {n: t.clone().requires_grad_(True) for n, t in ad32.items()}
    l32 = mean_loss(fwd(p32, a32), targets)
    l32.backward()
    g32 = lora_layout({n: t.grad for n, t in a32.items()}, targets_list)
    return logits.detach().float().numpy(), float(loss), grads, rel_err(g32, grads, 0.05)


def lora_adamw(fwd, p32, ad32, targets_list, tokens, targets, clip):
    """AdamW on the adapters alone (every one decayed: 2-D weights), base frozen."""
    p64 = {n: t.double() for n, t in p32.items()}
    pt = {n: t.detach().clone().double().requires_grad_(True) for n, t in ad32.items()}
    losses, norms = adamw_steps(pt, lambda n: True, lambda a: mean_loss(fwd(p64, a), targets), ADAM, clip)
    return losses, norms, lora_layout(pt, targets_list)


def pick_clip(run):
    """A clip value the norm exceeds in some of the steps and not in others (both paths
    of clip_grad_norm_ run), confirmed by a clipped run; else no clipping (0)."""
    _, norms, _ = run(float("inf"))
    clip = float(np.float32(math.sqrt(max(norms) * min(norms))))
    _, n2, _ = run(clip)
    k = sum(1 for n in n2 if n > clip)
    return clip if 0 < k < ADAM["steps"] else 0.0


def gen_lora(out, name, kind, r, alpha, targets_list, seed):
    d = fixture_dir(out, name)
    rec = Recipe(seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "gpt2":
        cfg = GPT2_CFG
        p = ref_gpt2.init_params(cfg, rec, random_affine=True)
        base = dict(ref_gpt2.base_meta(cfg, B, T), params_fnv=params_hash(ref_gpt2.to_library_layout(p, cfg)))
        L, V = cfg["n_layer"], cfg["vocab_size"]
        fwd = lambda pp, aa: gpt2_forward(pp, cfg, tokens, aa, alpha / r)  # noqa: E731
    else:
        cfg = ref_llama.CONFIGS[0]
        p = ref_llama.init_params(cfg, rec)
        base = dict(format="llama2c", llama2c_header=ref_llama.llama2c_header(cfg),
                    params_fnv=params_hash(ref_llama.to_library_layout(p, cfg)))
        L, V = cfg["L"], cfg["V"]
        fwd = lambda pp, aa: llama_forward(pp, cfg, tokens, aa, alpha / r)  # noqa: E731
    rec.write(d, "tests/ref_lora.py " + name)
    tokens, targets = make_batch(g, V, B, T, n_ignored=5, zero_at=(0, 5))
    write_i32(os.path.join(d, "tokens.i32"), tokens)
    write_i32(os.path.join(d, "targets.i32"), targets)
    dims = lora_dims(kind, cfg)
    ad = lora_init(dims, targets_list, r, L, g, b_std=0.3)
    write_f32(os.path.join(d, "adapters.f32"), lora_layout(ad, targets_list))
    logits, loss, grads, g32err = lora_reference(fwd, p, ad, targets_list, tokens, targets)
    write_f32(os.path.join(d, "logits.f32"), logits)
    write_f32(os.path.join(d, "loss.f32"), [loss])
    write_f32(os.path.join(d, "lora_grads.f32"), grads)
    ad0 = {n: (t if n.startswith("A.") else torch.zeros_like(t)) for n, t in ad.items()}   # the start: B = 0
    write_f32(os.path.join(d, "adamw_init.f32"), lora_layout(ad0, targets_list))
    run = lambda clip: lora_adamw(fwd, p, ad0, targets_list, tokens, targets, clip)  # noqa: E731
    clip = pick_clip(run)
    losses, norms, after = run(clip if clip > 0 else float("inf"))
    write_f32(os.path.join(d, "adamw_losses.f32"), losses)
    write_f32(os.path.join(d, "adamw_norms.f32"), norms)
    write_f32(os.path.join(d, "adapters_after.f32"), after)
    bits = sum(1 << TARGETS.index(t) for t in targets_list)
    meta = dict(base, kind=kind, B=B, T=T, rank=r, alpha=alpha, targets=bits, n_adapters=int(after.size), lr=ADAM["lr"],
                loss=loss, grad_clip=clip, adamw=ADAM, adamw_losses=losses, adamw_norms=norms,
                torch_f32_lora_grads_err=g32err)
    write_json(os.path.join(d, "meta.json"), meta)
    print("  %s: %d adapter floats, loss %.6f; AdamW (clip %g) losses %s" % (
        name, after.size, loss, clip, " ".join("%.4f" % x for x in losses)))


def gen_dropout(out, p_drop=0.1, seed=1234):
    d = fixture_dir(out, "dropout_gpt2")
    cfg = GPT2_CFG
    rec = Recipe(9900)
    g = torch.Generator().manual_seed(99)
    p = ref_gpt2.init_params(cfg, rec, random_affine=True)
    rec.write(d, "tests/ref_lora.py dropout_gpt2")
    tokens, targets = make_batch(g, cfg["vocab_size"], B, T, n_ignored=5, zero_at=(0, 5))
    write_i32(os.path.join(d, "tokens.i32"), tokens)
    write_i32(os.path.join(d, "targets.i32"), targets)
    L, C = cfg["n_layer"], cfg["n_embd"]
    n = B * T * C
    places = [(0, 0)] + [(l, k) for l in range(L) for k in (1, 2)]
    masks = np.stack([dropout_mask(dropout_key(seed, 0, 0, l, k), n, p_drop) for l, k in places])
    write_f32(os.path.join(d, "masks.f32"), masks)
    mt = [torch.tensor(m.reshape(B, T, C), dtype=torch.float64) for m in masks]
    p64 = {k: t.double().requires_grad_(True) for k, t in p.items()}
    logits = gpt2_forward(p64, cfg, tokens, masks=mt)
    loss = mean_loss(logits, targets)
    loss.backward()
    write_f32(os.path.join(d, "logits.f32"), logits.detach().float().numpy())
    write_f32(os.path.join(d, "loss.f32"), [float(loss)])
    write_f32(os.path.join(d, "grads.f32"), ref_gpt2.to_library_layout({k: t.grad for k, t in p64.items()}, cfg))
    kept = float((masks > 0).mean())
    write_json(os.path.join(d, "meta.json"), dict(ref_gpt2.base_meta(cfg, B, T), p=p_drop, seed=seed, step=0, micro=0,
                                                  loss=float(loss), kept=kept,
                                                  params_fnv=params_hash(ref_gpt2.to_library_layout(p, cfg))))
    print("  dropout_gpt2: p %.2f, kept %.4f, loss %.6f" % (p_drop, kept, float(loss)))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT_DIR" % sys.argv[0])
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    gen_lora(out, "lora_gpt2", "gpt2", 4, 8.0, TARGETS, 2024)
    gen_lora(out, "lora_llama", "llama", 3, 5.0, ["qkv", "down"], 3033)
    gen_dropout(out)


if __name__ == "__main__":
    main()
