#!/usr/bin/python3
"""tests/ref_gpt2.py OUT_DIR: PyTorch reference files for tests/test_gpt2_torch.c (and
tests/big_gpt2.c, test_cuda.c).

GPT-2 is written here directly in torch (no `transformers`), in HuggingFace's layout:
Conv1D weights stored (in, out), GELU with the tanh approximation, layernorm eps 1e-5,
causal attention, LM head tied to wte. The weights come from the generator in
tests/ref_common.py, so only their recipe (model.txt) is stored; the C test draws them
again (tests/ref.h) and writes the model.safetensors files itself.

The references are computed in float64 from the float32 weights (the "truth"); the
float32 torch result is also computed, and its error against float64 is stored in
meta.json so that the C test's tolerance can be compared with torch's own noise.

Files (all arrays raw little-endian, .f32 = float32, .i32 = int32, row-major):

  gpt2_small/              L=2 NH=4 C=64 V=503 maxT=64, random weights and biases
    model.txt              the recipe: HF names (wte.weight, h.{i}.attn.c_attn.weight
                           [C,3C], ...), seeds, scales, shapes
    tokens.i32             (B,T) = (4,32)
    targets.i32            (B,T) next tokens; a few are -100 (ignored)
    logits.f32             (B,T,V)
    loss.f32               (1) mean cross-entropy over the non-ignored targets
    grads.f32              d loss / d params, in the library's layout (see below)
    adamw_losses.f32       (10) loss before each of 10 AdamW steps on the same batch
    adamw_norms.f32        (10) global gradient L2 norm before clipping, each step
    params_after.f32       parameters after the 10 steps, library layout
    meta.json              shapes, optimizer settings, params_fnv (FNV-1a of the float32
                           parameters in the library layout: the loaders' layout check),
                           torch float32-vs-float64 errors
  gpt2_small_f16/          the same weights rounded to F16 (the file's dtype): logits.f32,
                           loss.f32, meta.json (params_fnv of the rounded weights)
  gpt2_small_bf16/         the same for BF16
  gpt2_small_noconfig/     the file without config.json: the loader must infer the
                           shape; n_head cannot be seen in the tensors, and every GPT-2
                           size has head size 64, so the reference uses n_head = C/64 = 1:
                           logits.f32, loss.f32, meta.json
  (the "transformer."-prefixed file with lm_head.weight and masked_bias buffers has the
   references of gpt2_small; tests/ref.h writes it from the same recipe)
  gpt2_124m/               L=12 NH=12 C=768 V=50257 maxT=1024, GPT-2 init (`make test-big`)
    model.txt, tokens.i32, targets.i32 (B,T) = (1,64), loss.f32, losses.f32 (B*T, per
    token), logits_rows.f32 (the logits at positions 0 and T-1: 2 x V), meta.json

The library layout (llm_gpt2_params in llm.h) is 16 tensors, concatenated in this order,
each stacked over layers, matmul weights as (out, in) = the transpose of HF Conv1D:
  wte (V,C) wpe (maxT,C) ln1w (L,C) ln1b (L,C) qkvw (L,3C,C) qkvb (L,3C)
  attprojw (L,C,C) attprojb (L,C) ln2w (L,C) ln2b (L,C) fcw (L,4C,C) fcb (L,4C)
  fcprojw (L,C,4C) fcprojb (L,C) lnfw (C) lnfb (C)
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_common import (Recipe, adamw_steps, fixture_dir, make_batch, mean_loss, params_hash,  # noqa: E402
                        reference as common_reference, rounded, std_scale, write_f32, write_i32, write_json)

torch.set_num_threads(2)

# The 10-step AdamW reference (llm_adamw_config with decay_all = 0).
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.7, steps=10)
# grad_clip 0.7: the global norm starts above it and falls below it within the 10 steps,
# so both the clipped and the unclipped paths are compared (the script checks).


# ---- the model ----------------------------------------------------------------------------
def init_params(cfg, rec, random_affine):
    """HF-layout parameters from recipe rec. GPT-2 init's spread: std 0.02, residual
    projections 0.02/sqrt(2L) (uniform draws of that standard deviation). With
    random_affine, biases and layernorm weights/biases are random too, so that a
    loader that drops or transposes any tensor changes the result; the c_fc and c_attn
    biases are large enough that an erf GELU (instead of tanh) or a wrong attention scale
    moves the logits by 20x the test's tolerance."""
    L, C, V, P = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]

    def bias(name, n, std):
        return rec.tensor(name, [n], std_scale(std) if random_affine else 0.0)

    def lnw(name, n):
        return rec.tensor(name, [n], std_scale(0.1) if random_affine else 0.0, 1.0)

    proj_std = 0.02 / math.sqrt(2 * L)
    p = {"wte.weight": rec.tensor("wte.weight", [V, C], std_scale(0.02)),
         "wpe.weight": rec.tensor("wpe.weight", [P, C], std_scale(0.02))}
    for i in range(L):
        h = "h.%d." % i
        p[h + "ln_1.weight"] = lnw(h + "ln_1.weight", C)
        p[h + "ln_1.bias"] = bias(h + "ln_1.bias", C, 0.1)
        p[h + "attn.c_attn.weight"] = rec.tensor(h + "attn.c_attn.weight", [C, 3 * C], std_scale(0.02))
        p[h + "attn.c_attn.bias"] = bias(h + "attn.c_attn.bias", 3 * C, 0.5)   # sharper attention than uniform
        p[h + "attn.c_proj.weight"] = rec.tensor(h + "attn.c_proj.weight", [C, C], std_scale(proj_std))
        p[h + "attn.c_proj.bias"] = bias(h + "attn.c_proj.bias", C, 0.05)
        p[h + "ln_2.weight"] = lnw(h + "ln_2.weight", C)
        p[h + "ln_2.bias"] = bias(h + "ln_2.bias", C, 0.1)
        p[h + "mlp.c_fc.weight"] = rec.tensor(h + "mlp.c_fc.weight", [C, 4 * C], std_scale(0.02))
        p[h + "mlp.c_fc.bias"] = bias(h + "mlp.c_fc.bias", 4 * C, 1.0)   # GELU inputs of size 1: tanh != erf GELU
        p[h + "mlp.c_proj.weight"] = rec.tensor(h + "mlp.c_proj.weight", [4 * C, C], std_scale(proj_std))
        p[h + "mlp.c_proj.bias"] = bias(h + "mlp.c_proj.bias", C, 0.05)
    p["ln_f.weight"] = lnw("ln_f.weight", C)
    p["ln_f.bias"] = bias("ln_f.bias", C, 0.1)
    return p


def gelu_tanh(x):
    # GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(p, cfg, n_head, tokens):
    """logits (B,T,V) of GPT-2 with HF-layout parameters p (any float dtype)."""
    L, C = cfg["n_layer"], cfg["n_embd"]
    B, T = tokens.shape
    HS = C // n_head
    x = p["wte.weight"][tokens] + p["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(L):
        h = "h.%d." % i
        a = F.layer_norm(x, (C,), p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps=1e-5)
        qkv = a @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"]   # Conv1D: x W + b
        q, k, v = qkv.split(C, dim=2)
        q, k, v = [t.view(B, T, n_head, HS).transpose(1, 2) for t in (q, k, v)]  # (B,NH,T,HS)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        a = F.layer_norm(x, (C,), p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps=1e-5)
        a = gelu_tanh(a @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        x = x + a @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    return x @ p["wte.weight"].t()   # tied LM head


# HF name pattern -> library tensor, in llm_gpt2_params order. Conv1D weights are (in, out);
# the library keeps (out, in), so those are transposed.
LIB_TENSORS = [
    ("wte", "wte.weight", False), ("wpe", "wpe.weight", False),
    ("ln1w", "h.%d.ln_1.weight", False), ("ln1b", "h.%d.ln_1.bias", False),
    ("qkvw", "h.%d.attn.c_attn.weight", True), ("qkvb", "h.%d.attn.c_attn.bias", False),
    ("attprojw", "h.%d.attn.c_proj.weight", True), ("attprojb", "h.%d.attn.c_proj.bias", False),
    ("ln2w", "h.%d.ln_2.weight", False), ("ln2b", "h.%d.ln_2.bias", False),
    ("fcw", "h.%d.mlp.c_fc.weight", True), ("fcb", "h.%d.mlp.c_fc.bias", False),
    ("fcprojw", "h.%d.mlp.c_proj.weight", True), ("fcprojb", "h.%d.mlp.c_proj.bias", False),
    ("lnfw", "ln_f.weight", False), ("lnfb", "ln_f.bias", False),
]


def to_library_layout(d, cfg):
    """Flatten a dict of HF-layout tensors (params or grads) into the library's buffer."""
    parts = []
    for _, pattern, transpose in LIB_TENSORS:
        names = [pattern % i for i in range(cfg["n_layer"])] if "%d" in pattern else [pattern]
        for n in names:
            t = d[n].detach()
            parts.append((t.t() if transpose else t).contiguous().reshape(-1))
    return torch.cat(parts).to(torch.float32).numpy()


def is_decayed(name):
    # nanoGPT's rule: 2-D tensors (embeddings and matmul weights) decay, the rest do not.
    return name.endswith(".weight") and ("wte" in name or "wpe" in name or "attn.c_" in name or "mlp.c_" in name)


# ---- references ---------------------------------------------------------------------------
def reference(p32, cfg, n_head, tokens, targets, with_grads):
    """float64 logits, loss (and grads) from float32 weights; plus the float32 errors."""
    return common_reference(p32, lambda p: forward(p, cfg, n_head, tokens), targets,
                            lambda d: to_library_layout(d, cfg), tensor_sizes(cfg), with_grads)


def tensor_sizes(cfg):
    """(name, element count) of each library tensor, in order."""
    L, C, V, P = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    counts = [V * C, P * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
              L * C, L * C, L * 4 * C * C, L * 4 * C, L * 4 * C * C, L * C, C, C]
    return [(name, n) for (name, _, _), n in zip(LIB_TENSORS, counts)]


def adamw_reference(p32, cfg, tokens, targets):
    """10 steps of torch.optim.AdamW (float64) with clipping, on one batch."""
    p64 = {n: t.double().requires_grad_(True) for n, t in p32.items()}
    losses, norms = adamw_steps(p64, is_decayed, lambda p: mean_loss(forward(p, cfg, cfg["n_head"], tokens), targets),
                                ADAM, ADAM["grad_clip"])
    return losses, norms, to_library_layout(p64, cfg)


# ---- fixtures -----------------------------------------------------------------------------
def base_meta(cfg, B, T, fmt="gpt2-safetensors"):
    """What the C side needs to rebuild and check the model (tests/ref.h reads it)."""
    return dict(cfg, format=fmt, B=B, T=T, n_params=int(sum(n for _, n in tensor_sizes(cfg))))


def gen_small(out):
    cfg = {"n_layer": 2, "n_head": 4, "n_embd": 64, "vocab_size": 503, "n_positions": 64}
    B, T = 4, 32
    rec = Recipe(1000)
    p = init_params(cfg, rec, random_affine=True)
    gen = torch.Generator().manual_seed(1234)
    tokens, targets = make_batch(gen, cfg["vocab_size"], B, T, n_ignored=5, zero_at=(0, 5))

    # gpt2_small: the full reference.
    d = fixture_dir(out, "gpt2_small")
    rec.write(d, "tests/ref_gpt2.py gpt2_small")
    write_i32(os.path.join(d, "tokens.i32"), tokens)
    write_i32(os.path.join(d, "targets.i32"), targets)
    ref = reference(p, cfg, cfg["n_head"], tokens, targets, with_grads=True)
    write_f32(os.path.join(d, "logits.f32"), ref["logits"])
    write_f32(os.path.join(d, "loss.f32"), [ref["loss"]])
    write_f32(os.path.join(d, "grads.f32"), ref["grads"])
    losses, norms, after = adamw_reference(p, cfg, tokens, targets)
    k = sum(1 for n in norms if n > ADAM["grad_clip"])
    assert 0 < k < ADAM["steps"], "grad_clip %.2f clips %d of %d steps: %s" % (ADAM["grad_clip"], k, ADAM["steps"], norms)
    write_f32(os.path.join(d, "adamw_losses.f32"), losses)
    write_f32(os.path.join(d, "adamw_norms.f32"), norms)
    write_f32(os.path.join(d, "params_after.f32"), after)
    meta = dict(base_meta(cfg, B, T), loss=ref["loss"], params_fnv=params_hash(to_library_layout(p, cfg)),
                n_ignored=int((targets < 0).sum()), adamw=ADAM, adamw_losses=losses, adamw_norms=norms,
                torch_f32_logits_err=ref["torch_f32_logits_err"], torch_f32_loss_err=ref["torch_f32_loss_err"],
                torch_f32_grads_err=ref["torch_f32_grads_err"])
    write_json(os.path.join(d, "meta.json"), meta)
    print("  gpt2_small: loss %.6f; AdamW losses %s" % (ref["loss"], " ".join("%.4f" % x for x in losses)))
    print("  grad norms (clip %.2f): %s" % (ADAM["grad_clip"], " ".join("%.3f" % x for x in norms)))
    print("  torch float32 vs float64: logits %.2e, loss %.2e, grads (worst tensor) %.2e" % (
        ref["torch_f32_logits_err"], ref["torch_f32_loss_err"], max(ref["torch_f32_grads_err"].values())))

    # gpt2_small_f16 / _bf16: references from the rounded weights.
    for key, dtype in (("_f16", "F16"), ("_bf16", "BF16")):
        d = fixture_dir(out, "gpt2_small" + key)
        pr = {n: rounded(t, dtype) for n, t in p.items()}
        r = reference(pr, cfg, cfg["n_head"], tokens, targets, with_grads=False)
        write_f32(os.path.join(d, "logits.f32"), r["logits"])
        write_f32(os.path.join(d, "loss.f32"), [r["loss"]])
        write_json(os.path.join(d, "meta.json"), dict(base_meta(cfg, B, T), weights="gpt2_small", dtype=dtype,
                   loss=r["loss"], params_fnv=params_hash(to_library_layout(pr, cfg))))
        print("  gpt2_small%s: loss %.6f" % (key, r["loss"]))

    # gpt2_small_noconfig: no config.json; n_head = C/64 (GPT-2's head size).
    d = fixture_dir(out, "gpt2_small_noconfig")
    r = reference(p, cfg, cfg["n_embd"] // 64, tokens, targets, with_grads=False)
    write_f32(os.path.join(d, "logits.f32"), r["logits"])
    write_f32(os.path.join(d, "loss.f32"), [r["loss"]])
    write_json(os.path.join(d, "meta.json"), dict(base_meta(dict(cfg, n_head=cfg["n_embd"] // 64), B, T),
               weights="gpt2_small", loss=r["loss"]))
    print("  gpt2_small_noconfig (n_head %d): loss %.6f" % (cfg["n_embd"] // 64, r["loss"]))


def gen_124m(out):
    cfg = {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024}
    B, T = 1, 64  # one row: the 124M forward is the slow part of the C test
    rec = Recipe(124000)
    p = init_params(cfg, rec, random_affine=False)
    gen = torch.Generator().manual_seed(124)
    tokens, targets = make_batch(gen, cfg["vocab_size"], B, T, n_ignored=3, zero_at=(0, 5))
    d = fixture_dir(out, "gpt2_124m")
    rec.write(d, "tests/ref_gpt2.py gpt2_124m")
    write_i32(os.path.join(d, "tokens.i32"), tokens)
    write_i32(os.path.join(d, "targets.i32"), targets)
    with torch.no_grad():
        r = reference(p, cfg, cfg["n_head"], tokens, targets, with_grads=False)
        p64 = {n: t.double() for n, t in p.items()}
        per_token = F.cross_entropy(forward(p64, cfg, cfg["n_head"], tokens).reshape(-1, cfg["vocab_size"]),
                                    targets.reshape(-1), ignore_index=-100, reduction="none")
    write_f32(os.path.join(d, "loss.f32"), [r["loss"]])
    write_f32(os.path.join(d, "losses.f32"), per_token.float().numpy())
    write_f32(os.path.join(d, "logits_rows.f32"), np.stack([r["logits"][0, 0], r["logits"][0, T - 1]]))
    write_json(os.path.join(d, "meta.json"), dict(base_meta(cfg, B, T), loss=r["loss"], logits_rows=[0, T - 1],
               torch_f32_logits_err=r["torch_f32_logits_err"], torch_f32_loss_err=r["torch_f32_loss_err"]))
    print("  gpt2_124m: loss %.6f; torch float32 vs float64: logits %.2e" % (r["loss"], r["torch_f32_logits_err"]))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUT_DIR" % sys.argv[0])
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    gen_small(out)
    gen_124m(out)


if __name__ == "__main__":
    main()
