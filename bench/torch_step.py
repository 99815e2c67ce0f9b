"""bench/torch_step.py: the PyTorch side of bench/bench_train.c.

Times the same GPT-2 work as llm.h's benchmark, in plain PyTorch (no torch.compile):
  train: forward + cross-entropy + backward + AdamW step (zero_grad included)
  infer: forward only, under torch.no_grad(), logits for every position
and prints ONE JSON line: {"impl": "pytorch-<version>", "ms": median, "runs": [...]}.

  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/torch_step.py --mode train \
      --B 4 --T 64 --threads 2 --steps 5

bench_train.c sets OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin
between ops and compete with OpenBLAS's own threads (3.3 s against 2.05 s per step
measured on a 2-core machine). The model is written here, not imported, so the
benchmark needs nothing beyond torch. Shapes default to GPT-2 124M."""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        HS = C // self.NH
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        # (B, NH, T, HS)
        q, k, v = (t.view(B, T, self.NH, HS).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(HS))
        att = att.masked_fill(mask[:T, :T] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, V, maxT, L, NH, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        self.register_buffer("mask", torch.tril(torch.ones(maxT, maxT)))

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.h:
            x = b(x, self.mask)
        logits = self.ln_f(x) @ self.wte.weight.t()   # tied LM head
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--V", type=int, default=50257)
    ap.add_argument("--L", type=int, default=12)
    ap.add_argument("--NH", type=int, default=12)
    ap.add_argument("--C", type=int, default=768)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = GPT(a.V, 1024, a.L, a.NH, a.C)
    x = torch.randint(0, a.V, (a.B, a.T))
    y = torch.randint(0, a.V, (a.B, a.T))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        if a.mode == "train":
            opt.zero_grad(set_to_none=True)
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"impl": "pytorch-" + torch.__version__, "mode": a.mode, "B": a.B, "T": a.T,
                      "threads": a.threads, "ms": statistics.median(times),
                      "runs": [round(t, 1) for t in times]}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
