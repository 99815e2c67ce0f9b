#!/usr/bin/python3
"""tests/test_colab.py: examples/colab.ipynb is a notebook a person can run top to bottom.

  1. It is valid nbformat 4 JSON (read with the standard json module only): cells with a
     type, a source and unique ids, code cells without outputs or execution counts (a clean
     notebook), Colab metadata asking for a GPU; it does what it says, in this order: clone,
     make cuda, make data, train on the GPU, generate, plot the loss.
  2. Its cells run in order, as Colab runs them, in a scratch copy of the repository (the
     tracked and untracked-but-not-ignored files, no build/ or data/), with no GPU: an
     `nvidia-smi` that fails first on PATH, as on a machine without the driver. Shell cells
     (%%bash) run with bash, Python cells with this Python. Every cell must exit 0; every
     cell that needs a GPU must say "SKIP: no NVIDIA GPU" (and the plot cell, which has no
     log then, "SKIP"); the CPU cells must leave their results: data/ filled by `make data`
     (offline, from $LLM_DATA, ../shared/data or data/) and the GPT-2 token file of Tiny
     Shakespeare in llm.c's layout (magic 20240520).
Without a data folder the cells are not run (SKIP). Prints
"test_colab: N passed, N failed, N skipped" last, as the C tests do; exit 1 on a failure.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB = os.path.join(ROOT, "examples", "colab.ipynb")
passed = failed = skipped = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("  ok: " + what)
    else:
        failed += 1
        print("FAIL: " + what)
    return ok


def skip(why):
    global skipped
    skipped += 1
    print("SKIP: " + why)


def finish():
    print("test_colab: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)


def text(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


# ---- 1. the file --------------------------------------------------------------------------
try:
    with open(NB, encoding="utf-8") as f:
        nb = json.load(f)
except (OSError, ValueError) as e:
    check(False, "examples/colab.ipynb parses as JSON: %s" % e)
    finish()
check(nb.get("nbformat") == 4 and isinstance(nb.get("nbformat_minor"), int) and nb["nbformat_minor"] >= 5,
      "nbformat 4.5+ (%s.%s)" % (nb.get("nbformat"), nb.get("nbformat_minor")))
meta = nb.get("metadata", {})
check(meta.get("accelerator") == "GPU" and meta.get("kernelspec", {}).get("name") == "python3",
      "metadata: a Python 3 kernel, and Colab asked for a GPU runtime")
cells = nb.get("cells", [])
check(isinstance(cells, list) and len(cells) > 0, "%d cells" % len(cells))
ids = [c.get("id") for c in cells]
check(all(isinstance(i, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids) and len(set(ids)) == len(ids),
      "every cell has a unique, valid id")
kinds_ok = True
for c in cells:
    t = c.get("cell_type")
    src = c.get("source")
    if t not in ("markdown", "code") or not isinstance(c.get("metadata"), dict) or not text(c).strip() or \
            not (isinstance(src, str) or (isinstance(src, list) and all(isinstance(s, str) for s in src))):
        kinds_ok = False
    if t == "code" and (c.get("outputs") != [] or c.get("execution_count") is not None):
        kinds_ok = False
check(kinds_ok, "cells are markdown or code with a source; code cells are clean (no outputs, no counts)")
code = [text(c) for c in cells if c.get("cell_type") == "code"]
joined = "\n".join(code)
steps = [("clone", r"git clone"), ("make cuda", r"make\b.*\bcuda\b"), ("make data", r"make\b.*\bdata\b"),
         ("train on the GPU", r"build/cuda/train_gpt2\b.*\n?.*"), ("generate on the GPU", r"build/cuda/generate\b"),
         ("plot the loss", r"matplotlib")]
pos, order_ok = 0, True
for name, rx in steps:
    m = re.compile(rx).search(joined, pos)
    if not m:
        order_ok = False
        print("  (missing or out of order: %s)" % name)
    else:
        pos = m.end()
check(order_ok, "the steps, in order: " + ", ".join(n for n, _ in steps))
check(all("--device cuda" in c for c in code if re.search(r"build/cuda/(train_gpt2|generate)", c)),
      "the trainer and the generator run with --device cuda")
for i, c in enumerate(code):
    if not c.lstrip().startswith("%%bash"):
        bad = [l for l in c.splitlines() if l.lstrip().startswith(("!", "%"))]
        check(not bad, "code cell %d is plain Python (no shell escapes or magics: %s)" % (i, bad[:1]))

# ---- 2. the cells, in order, in a scratch copy without a GPU ---------------------------------
data = None
for d in (os.environ.get("LLM_DATA"), os.path.join(ROOT, "..", "shared", "data"), os.path.join(ROOT, "data")):
    if d and os.path.isfile(os.path.join(d, "tinyshakespeare", "input.txt")) and \
            os.path.isfile(os.path.join(d, "gpt2", "encoder.json")):
        data = os.path.abspath(d)
        break
if data is None:
    skip("no data folder with tinyshakespeare/ and gpt2/ ($LLM_DATA, ../shared/data, data): cells not run")
    finish()

tmp = tempfile.mkdtemp(prefix="llm_test_colab_")
try:
    repo = os.path.join(tmp, "repo")
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             check=True, capture_output=True).stdout.decode()
        files = [f for f in out.split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]
        for f in files:
            os.makedirs(os.path.dirname(os.path.join(repo, f)) or repo, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), os.path.join(repo, f))
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", "build", "data"))
    check(os.path.isfile(os.path.join(repo, "llm.h")) and not os.path.exists(os.path.join(repo, "build")),
          "scratch copy of the repository in %s (no build/)" % repo)
    # no GPU, whatever this machine has: nvidia-smi fails as it does without the driver
    fakebin = os.path.join(tmp, "bin")
    os.makedirs(fakebin)
    with open(os.path.join(fakebin, "nvidia-smi"), "w") as f:
        f.write("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n")
    os.chmod(os.path.join(fakebin, "nvidia-smi"), 0o755)
    env = dict(os.environ, PATH=fakebin + os.pathsep + os.environ.get("PATH", ""), LLM_DATA=data, LLM_OFFLINE="1",
               MPLBACKEND="Agg")
    env.pop("LLM_H_REPO", None)
    for i, c in enumerate(code):
        shell = c.lstrip().startswith("%%bash")
        body = c.lstrip()[len("%%bash"):] if shell else c
        cmd = ["bash"] if shell else [sys.executable, "-"]
        try:
            r = subprocess.run(cmd, input=body.encode(), cwd=repo, env=env, capture_output=True, timeout=900)
            log = (r.stdout + r.stderr).decode(errors="replace")
            rc = r.returncode
        except subprocess.TimeoutExpired:
            log, rc = "(timed out after 900 s)", 124
        first = body.strip().splitlines()[0] if body.strip() else ""
        print("== cell %d (%s): %s" % (i, "bash" if shell else "python", first[:70]))
        print("\n".join("   | " + l for l in log.rstrip().splitlines()[-8:]))
        check(rc == 0, "cell %d exits 0 (rc %d)" % (i, rc))
        if 'SKIP: no NVIDIA GPU' in body:
            check("SKIP: no NVIDIA GPU" in log, "cell %d needs a GPU and says SKIP without one" % i)
        elif not shell and "SKIP" in body:
            check("SKIP" in log, "cell %d (the plot) has no log without a GPU and says SKIP" % i)
    tokens = os.path.join(repo, "data", "tinyshakespeare.bin")
    check(os.path.isfile(os.path.join(repo, "data", "gpt2", "encoder.json")), "make data filled data/")
    ok = False
    if os.path.isfile(tokens):
        with open(tokens, "rb") as f:
            head = f.read(1024)
        n = os.path.getsize(tokens)
        magic, version, count = struct.unpack("<3i", head[:12])
        ok = magic == 20240520 and version == 1 and n == 1024 + 2 * count and count > 300000
        print("  token file: magic %d version %d, %d tokens" % (magic, version, count))
    check(ok, "the data cell wrote Tiny Shakespeare's GPT-2 tokens in llm.c's layout (%s)" % tokens)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
finish()
