"""tests/ref_common.py: what the PyTorch reference scripts (tests/ref_*.py) share.

  - files: raw little-endian arrays (.f32 float32, .i32 int32), JSON, safetensors
    (8-byte little-endian header length N, N bytes of JSON, then the raw data), each
    written to a temporary name and renamed, so that a killed run leaves no half file;
  - stamps: a fixture directory is regenerated only when the scripts that wrote it
    (and this file) changed: its .stamp holds their hash and is written last;
  - the references: float64 logits, loss and gradients from float32 weights with
    torch's own float32 errors beside them, AdamW steps with clipping, a greedy loop,
    and the C tests' error measure.

Imported by the scripts from their own directory (they run as
`/usr/bin/python3 tests/ref_X.py OUT_DIR` from the repository root).
"""
import hashlib
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


def tensor_bytes(t, dtype):
    """Raw little-endian bytes of float tensor t stored as dtype F32, F16 or BF16."""
    t = t.detach().to(torch.float32).contiguous()
    if dtype == "F32":
        return t.numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        # torch rounds to nearest even; the bf16 value is the top half of its float32.
        bits = t.to(torch.bfloat16).to(torch.float32).numpy().view(np.uint32)
        return (bits >> 16).astype("<u2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, torch tensor, dtype); data in list order."""
    header, chunks, off = {}, [], 0
    for name, t, dtype in tensors:
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # pad so the data starts 8-aligned, as the safetensors library does
    write_bytes(path, len(h).to_bytes(8, "little") + h + b"".join(chunks))


def read_safetensors(path):
    """Read back (a check of the writer): name -> float32 numpy array."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b, e = d["data_offsets"]
        buf = data[b:e]
        if d["dtype"] == "F32":
            a = np.frombuffer(buf, "<f4")
        elif d["dtype"] == "F16":
            a = np.frombuffer(buf, "<f2").astype(np.float32)
        else:
            a = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        out[name] = a.reshape(d["shape"])
    return out


# ---- stamps -----------------------------------------------------------------------------
class Stamp:
    """The .stamp of the fixture directories a script writes: the SHA-256 of the given
    source files (the script and every script it takes code from) and of this file."""

    def __init__(self, *sources):
        h = hashlib.sha256()
        for path in list(sources) + [__file__]:
            with open(path, "rb") as f:
                h.update(f.read())
        self.hash = h.hexdigest()

    def fresh(self, d):
        """True when directory d must be (re)generated; creates it."""
        os.makedirs(d, exist_ok=True)
        st = os.path.join(d, ".stamp")
        if os.path.exists(st) and open(st).read().strip() == self.hash:
            print("  %s: up to date" % d)
            return False
        if os.path.exists(st):
            os.remove(st)
        return True

    def stamp(self, d):
        """Marks d complete: call after its last file is written."""
        write_bytes(os.path.join(d, ".stamp"), (self.hash + "\n").encode())


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
