"""tests/ref_common.py: what the PyTorch reference scripts (tests/ref_*.py) share.

  - the weights: every model's tensors come from a counter-based generator that
    tests/ref.h implements too, so that the repository stores only a recipe
    (model.txt: name, seed, scale, shift and shape of each tensor) and PyTorch's answers,
    never the weights; the C tests rebuild the same float32 weights bit for bit and
    write them in the format under test (safetensors F32/F16/BF16, llama2.c .bin);
  - files: raw little-endian arrays (.f32 float32, .i32 int32) and JSON, each written
    to a temporary name and renamed, so that a killed run leaves no half file;
  - the references: float64 logits, loss and gradients from float32 weights with
    torch's own float32 errors beside them, AdamW steps with clipping, a greedy loop,
    and the C tests' error measure.

Imported by the scripts from their own directory (they run as
`/usr/bin/python3 tests/ref_X.py OUT_DIR` from the repository root; `make fixtures`).
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F


# ---- files ------------------------------------------------------------------------------
def write_bytes(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_f32(path, x):
    write_bytes(path, np.ascontiguousarray(np.asarray(x, dtype="<f4")).tobytes())


def write_i32(path, x):
    write_bytes(path, np.ascontiguousarray(np.asarray(x, dtype="<i4")).tobytes())


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def fixture_dir(out, name):
    """out/name, created, emptied of the files an earlier run wrote."""
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    return d


# ---- the weights: a generator both sides implement -------------------------------------
# u(seed, i) = (splitmix64 output for the state seed * 2^32 + i, top 24 bits) * 2^-23 - 1:
# a float32 in [-1, 1) that is exact (a multiple of 2^-23). A tensor is
# value[i] = float32(float32(u(seed, i) * scale) + shift), rounded after each operation,
# as tests/ref.h computes it. Row-major, in the shape the file format stores.
_GAMMA, _M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def uniform(seed, n):
    out = np.empty(n, dtype=np.float32)
    for b in range(0, n, 1 << 22):   # in chunks: GPT-2 124M's wte has 38.6M values
        z = (np.uint64(seed) << np.uint64(32)) + np.arange(b, min(n, b + (1 << 22)), dtype=np.uint64) + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
        out[b:b + len(z)] = ((z >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0).astype(np.float32)
    return out


class Recipe:
    """The tensors of one model, drawn from the generator (seeds base, base+1, ...), and
    the model.txt that lets tests/ref.h draw them again."""

    def __init__(self, base_seed):
        self.seed = base_seed
        self.lines = []

    def tensor(self, name, shape, scale, shift=0.0):
        """A float32 torch tensor: shift + scale * u over [-1, 1), i.e. uniform with
        standard deviation scale / sqrt(3) around shift."""
        scale, shift = np.float32(scale), np.float32(shift)
        n = int(np.prod(shape))
        u = uniform(self.seed, n)
        v = (u * scale).astype(np.float32) + shift
        self.lines.append("%s %d %.9g %.9g %s" % (name, self.seed, scale, shift, " ".join(str(d) for d in shape)))
        self.seed += 1
        return torch.from_numpy(v.astype(np.float32).reshape(shape))

    def write(self, d, what):
        text = ("# %s: the weights, drawn again by tests/ref.h (ref_model_read). One tensor a line:\n"
                "#   name seed scale shift shape...   value[i] = shift + scale * u(seed, i)\n" % what)
        write_bytes(os.path.join(d, "model.txt"), (text + "\n".join(self.lines) + "\n").encode())


def std_scale(std):
    """The scale that gives a uniform draw standard deviation std."""
    return std * 3.0 ** 0.5


def fnv1a64(data):
    """FNV-1a (64-bit) of bytes, as tests/ref.h's ref_fnv1a: the parameters' fingerprint."""
    h = 0xcbf29ce484222325
    for b in np.frombuffer(data, dtype=np.uint8):   # small models only (a few MB)
        h = ((h ^ int(b)) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def params_hash(x):
    return fnv1a64(np.ascontiguousarray(np.asarray(x, dtype="<f4")).tobytes())


def rounded(t, dtype):
    """t as a file of dtype F16 or BF16 holds it (round to nearest even), back in float32."""
    if dtype == "F16":
        return torch.from_numpy(t.numpy().astype("<f2").astype(np.float32))
    return t.to(torch.bfloat16).to(torch.float32)


# ---- references -------------------------------------------------------------------------
def mean_loss(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)


def rel_err(a, ref, floor_frac):
    """max |a-ref| / max(|ref|, floor_frac * max|ref|), the C tests' measure."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    fl = floor_frac * np.abs(ref).max()
    return float((np.abs(a - ref) / np.maximum(np.abs(ref), fl)).max())


def tensor_errs(g, ref, sizes):
    """Per-tensor rel_err (floor 5% of each tensor's max) of flat buffers laid out as
    sizes, a list of (tensor name, element count), as the C tests measure."""
    errs, off = {}, 0
    for name, n in sizes:
        errs[name] = rel_err(g[off:off + n], ref[off:off + n], 0.05)
        off += n
    return errs


def make_batch(gen, V, B, T, n_ignored, zero_at):
    """Random tokens (B,T) and their next tokens as targets, n_ignored of them -100.
    The largest id stands at [0, 3] and id 0 at zero_at, so both ends of the vocabulary
    appear."""
    seq = torch.randint(0, V, (B, T + 1), generator=gen)
    seq[0, 3] = V - 1
    seq[zero_at] = 0
    tokens, targets = seq[:, :T].clone(), seq[:, 1:].clone()
    flat = targets.view(-1)
    idx = torch.randperm(B * T, generator=gen)[:n_ignored]
    flat[idx] = -100
    return tokens, targets


def reference(p32, forward, targets, to_layout, sizes, with_grads=True):
    """float64 logits, loss (and grads) from float32 weights p32 (name -> tensor), and
    torch's own float32 errors against them, to show how much float32 noise there is.
    forward(p) -> logits (B,T,V); to_layout(name -> tensor) -> the library's flat
    float32 buffer, laid out as sizes (see tensor_errs)."""
    p64 = {n: t.double().requires_grad_(with_grads) for n, t in p32.items()}
    logits = forward(p64)
    loss = mean_loss(logits, targets)
    out = {"logits": logits.detach().float().numpy(), "loss": float(loss)}
    if with_grads:
        loss.backward()
        out["grads"] = to_layout({n: t.grad for n, t in p64.items()})
    q = {n: t.clone().requires_grad_(with_grads) for n, t in p32.items()}
    with torch.set_grad_enabled(with_grads):
        l32 = forward(q)
        ls32 = mean_loss(l32, targets)
    out["torch_f32_logits_err"] = rel_err(l32.detach().numpy(), out["logits"], 0.05)
    out["torch_f32_loss_err"] = abs(float(ls32) - out["loss"])
    if with_grads:
        ls32.backward()
        g32 = to_layout({n: t.grad for n, t in q.items()})
        out["torch_f32_grads_err"] = tensor_errs(g32, out["grads"], sizes)
    return out


def adamw_steps(pt, is_decayed, loss_of, adam, clip):
    """adam["steps"] steps of torch.optim.AdamW on the leaf tensors pt (name -> tensor,
    updated in place) with clip_grad_norm_(clip); weight decay on the tensors whose
    name is_decayed picks. loss_of(pt) -> the loss. Returns the loss and the gradient
    norm before clipping of every step."""
    groups = [{"params": [t for n, t in pt.items() if is_decayed(n)], "weight_decay": adam["weight_decay"]},
              {"params": [t for n, t in pt.items() if not is_decayed(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=adam["lr"], betas=(adam["beta1"], adam["beta2"]), eps=adam["eps"])
    losses, norms = [], []
    for _ in range(adam["steps"]):
        opt.zero_grad()
        loss = loss_of(pt)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(pt.values()), clip)
        losses.append(float(loss))
        norms.append(float(norm))
        opt.step()
    return losses, norms


def greedy(forward, prompt, n_new):
    """The plain greedy loop: a full forward of the sequence so far each step (no
    cache), the argmax of the last row appended. Returns the n_new ids and the smallest
    lead of the best logit over the runner-up (how far the choice was from a tie)."""
    seq = list(prompt)
    gaps = []
    with torch.no_grad():
        for _ in range(n_new):
            last = forward(torch.tensor([seq]))[0, -1]
            top = torch.topk(last, 2).values
            gaps.append(float(top[0] - top[1]))
            seq.append(int(torch.argmax(last)))
    return seq[len(prompt):], min(gaps)


if __name__ == "__main__":
    pass  # `make fixtures` runs every tests/ref_*.py: this one writes nothing itself
