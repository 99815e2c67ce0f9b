#!/usr/bin/python3
"""gguf_write.py: write GGUF files (llama.cpp's model format, version 3) for the tests.

Written from the format's description (ggml's docs/gguf.md), with numpy only: it shares
no code with llm.h, so a file it writes checks llm.h's reader, and its Q8_0 quantizer
checks llm.h's.

    gguf_write.py llama2c MODEL.bin TOK.bin OUT.gguf [--type T] [--align A]
        a llama2.c model (and its tokenizer.bin) as a "llama" GGUF with the tokenizer
    gguf_write.py ckpt CKPT OUT.gguf [--type T] [--align A] [--vocab DIR] [--tok TOK.bin]
        an llm.h checkpoint (fp32, llm_model_save) as a "llama" or "gpt2" GGUF; --vocab
        adds GPT-2's tokenizer (encoder.json + vocab.bpe), --tok a llama2.c tokenizer.bin

--type f32 | f16 | bf16 | q8_0 (default f32) is the type of the matrices (the token
embedding included, as llama.cpp's converter and llama-quantize do; GPT-2's position
embedding is not made Q8_0); norm weights and biases stay F32. A Q8_0 matrix whose rows are not a multiple of 32 is written F32 instead (ggml's
Q8_0 needs whole blocks; llama-quantize also falls back to another type there).
Q8_0 here is llm.h's rule: d = fp16(max|x| / 127), moved one fp16 step up while
d * 127.5 <= max|x| (only subnormal d), q = rint(x / d) (ties to even).
"""
import struct
import sys

import numpy as np

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# ggml tensor types
T_F32, T_F16, T_Q8_0, T_BF16 = 0, 1, 8, 30


def q8_0(w):
    """(rows, K) float32, K % 32 == 0 -> ggml block_q8_0 bytes."""
    b = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127)).astype(np.float32).astype(np.float16)
    while True:
        bad = (amax > 0) & (d.astype(np.float32) * np.float32(127.5) <= amax)
        if not bad.any():
            break
        d[bad] = np.nextafter(d[bad], np.float16(np.inf))
    df = d.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(df > 0, b / np.where(df > 0, df, np.float32(1)), np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(v), -127, 127).astype(np.int8)
    out = np.zeros(len(b), dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    out["d"] = d
    out["qs"] = q
    return out.tobytes()


def bf16(w):
    """float32 -> bfloat16 bits, round to nearest even (no NaNs here)."""
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def tensor_bytes(w, kind):
    """(bytes, ggml type) of array w stored as kind ('f32' for vectors)."""
    w = np.asarray(w, dtype=np.float32)
    if kind == "q8_0" and w.ndim == 2 and w.shape[1] % 32 == 0:
        return q8_0(w), T_Q8_0
    if kind == "f16" and w.ndim == 2:
        return w.astype("<f2").tobytes(), T_F16
    if kind == "bf16" and w.ndim == 2:
        return bf16(w), T_BF16
    return w.astype("<f4").tobytes(), T_F32


class Writer:
    def __init__(self, align=32):
        self.kv = []       # (key, type, value, array element type)
        self.tensors = []  # (name, ne, type, bytes)
        self.align = align
        if align != 32:
            self.add("general.alignment", U32, align)

    def add(self, key, vtype, value, atype=None):
        self.kv.append((key, vtype, value, atype))

    def tensor(self, name, w, kind):
        data, t = tensor_bytes(w, kind)
        ne = list(reversed(np.asarray(w).shape))  # ne[0] varies fastest
        self.tensors.append((name, ne, t, data))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        return struct.pack("<Q", len(b)) + b

    def _value(self, vtype, v, atype=None):
        fmt = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
               BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
        if vtype == STR:
            return self._str(v)
        if vtype == ARR:
            return struct.pack("<IQ", atype, len(v)) + b"".join(self._value(atype, x) for x in v)
        return struct.pack(fmt[vtype], v)

    def write(self, path):
        head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
        for key, vtype, v, atype in self.kv:
            head += self._str(key) + struct.pack("<I", vtype) + self._value(vtype, v, atype)
        offset = 0
        offsets = []
        for name, ne, t, data in self.tensors:
            offsets.append(offset)
            head += self._str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
            head += struct.pack("<IQ", t, offset)
            offset += (len(data) + self.align - 1) // self.align * self.align
        head += b"\0" * ((-len(head)) % self.align)
        with open(path, "wb") as f:
            f.write(head)
            for (name, ne, t, data), off in zip(self.tensors, offsets):
                f.write(data)
                f.write(b"\0" * ((-len(data)) % self.align))


def llama_meta(w, C, L, NH, NKV, H, maxT, eps=1e-5, theta=10000.0):
    w.add("general.architecture", STR, "llama")
    w.add("general.name", STR, "llm.h test model")
    for key, v in (("context_length", maxT), ("embedding_length", C), ("block_count", L),
                   ("feed_forward_length", H), ("attention.head_count", NH),
                   ("attention.head_count_kv", NKV), ("rope.dimension_count", C // NH)):
        w.add("llama." + key, U32, v)
    w.add("llama.rope.freq_base", F32, theta)
    w.add("llama.attention.layer_norm_rms_epsilon", F32, eps)


def llama_tensors(w, t, L, kind):
    """t: dict of llama2.c-order arrays (wte, rms_att (L,C), wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls?)."""
    w.tensor("token_embd.weight", t["wte"], kind)
    w.tensor("output_norm.weight", t["rms_final"], "f32")
    if t.get("wcls") is not None:
        w.tensor("output.weight", t["wcls"], kind)
    for l in range(L):
        p = "blk.%d." % l
        w.tensor(p + "attn_norm.weight", t["rms_att"][l], "f32")
        w.tensor(p + "attn_q.weight", t["wq"][l], kind)
        w.tensor(p + "attn_k.weight", t["wk"][l], kind)
        w.tensor(p + "attn_v.weight", t["wv"][l], kind)
        w.tensor(p + "attn_output.weight", t["wo"][l], kind)
        w.tensor(p + "ffn_norm.weight", t["rms_ffn"][l], "f32")
        w.tensor(p + "ffn_gate.weight", t["w1"][l], kind)
        w.tensor(p + "ffn_down.weight", t["w2"][l], kind)
        w.tensor(p + "ffn_up.weight", t["w3"][l], kind)


def llama_tokenizer(w, tokpath, V):
    """llama2.c tokenizer.bin -> tokenizer.ggml.* (spaces back to U+2581)."""
    data = open(tokpath, "rb").read()
    pos = 4
    tokens, scores, types = [], [], []
    for i in range(V):
        score, n = struct.unpack_from("<fi", data, pos)
        piece = data[pos + 8:pos + 8 + n]
        pos += 8 + n
        if i == 1:
            piece, typ = b"<s>", 3
        elif i == 2:
            piece, typ = b"</s>", 3
        elif i == 0:
            typ = 2
        elif 3 <= i < 259:
            typ = 6
        else:
            piece, typ = piece.replace(b" ", "\u2581".encode()), 1
        tokens.append(piece)
        scores.append(score)
        types.append(typ)
    w.add("tokenizer.ggml.model", STR, "llama")
    w.add("tokenizer.ggml.tokens", ARR, tokens, STR)
    w.add("tokenizer.ggml.scores", ARR, scores, F32)
    w.add("tokenizer.ggml.token_type", ARR, types, I32)
    w.add("tokenizer.ggml.bos_token_id", U32, 1)
    w.add("tokenizer.ggml.eos_token_id", U32, 2)
    w.add("tokenizer.ggml.unknown_token_id", U32, 0)


def gpt2_tokenizer(w, vocab_dir):
    import json
    enc = json.load(open(vocab_dir + "/encoder.json", encoding="utf-8"))
    inv = sorted(enc.items(), key=lambda kv: kv[1])
    tokens = [k for k, _ in inv]
    assert [i for _, i in inv] == list(range(len(inv)))
    merges = [ln for ln in open(vocab_dir + "/vocab.bpe", encoding="utf-8").read().split("\n")[1:] if ln]
    w.add("tokenizer.ggml.model", STR, "gpt2")
    w.add("tokenizer.ggml.pre", STR, "gpt-2")
    w.add("tokenizer.ggml.tokens", ARR, tokens, STR)
    w.add("tokenizer.ggml.token_type", ARR, [3 if t == "<|endoftext|>" else 1 for t in tokens], I32)
    w.add("tokenizer.ggml.merges", ARR, merges, STR)
    w.add("tokenizer.ggml.bos_token_id", U32, enc["<|endoftext|>"])
    w.add("tokenizer.ggml.eos_token_id", U32, enc["<|endoftext|>"])


def read_llama2c(path):
    data = open(path, "rb").read()
    C, H, L, NH, NKV, V, maxT = struct.unpack_from("<7i", data, 0)
    untied = V < 0
    V = abs(V)
    HS = C // NH
    f = np.frombuffer(data, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = f[pos:pos + n].reshape(shape)
        pos += n
        return a
    t = {"wte": take(V, C), "rms_att": take(L, C), "wq": take(L, C, C), "wk": take(L, NKV * HS, C),
         "wv": take(L, NKV * HS, C), "wo": take(L, C, C), "rms_ffn": take(L, C), "w1": take(L, H, C),
         "w2": take(L, C, H), "w3": take(L, H, C), "rms_final": take(C)}
    take(maxT * HS)  # the two unused RoPE tables
    t["wcls"] = take(V, C) if untied else None
    return t, dict(C=C, H=H, L=L, NH=NH, NKV=NKV, V=V, maxT=maxT)


def read_ckpt(path):
    """llm.h's checkpoint (version 1, fp32): the config and the 17 tensors."""
    data = open(path, "rb").read()
    assert data[:8] == b"LLMHCKPT", "not an llm.h checkpoint"
    arch, maxT, V, L, NH, C, NKV, H, untied = struct.unpack_from("<9i", data, 16)
    eps, theta = struct.unpack_from("<2f", data, 52)
    gpt2 = arch == 0
    if gpt2:
        NKV, untied = NH, 0
        H = H or 4 * C
    NKV = NKV or NH
    eps = eps or 1e-5
    theta = theta or 10000.0
    HS = C // NH
    QKV = (NH + 2 * NKV) * HS
    F = H if gpt2 else 2 * H
    b = 1 if gpt2 else 0
    sizes = [V * C, maxT * C if gpt2 else 0, L * C, b * L * C, L * QKV * C, b * L * QKV, L * C * C, b * L * C,
             L * C, b * L * C, L * F * C, b * L * F, L * C * H, b * L * C, C, b * C, V * C if untied else 0]
    f = np.frombuffer(data, dtype="<f4", offset=256)
    names = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb",
             "fcprojw", "fcprojb", "lnfw", "lnfb", "wcls"]
    p, pos = {}, 0
    for n, s in zip(names, sizes):
        p[n] = f[pos:pos + s]
        pos += s
    cfg = dict(gpt2=gpt2, C=C, H=H, L=L, NH=NH, NKV=NKV, V=V, maxT=maxT, eps=eps, theta=theta, QKV=QKV, F=F,
               untied=untied)
    return p, cfg


def main(argv):
    args, opts = [], {}
    i = 1
    while i < len(argv):
        if argv[i].startswith("--"):
            opts[argv[i][2:]] = argv[i + 1]
            i += 2
        else:
            args.append(argv[i])
            i += 1
    kind = opts.get("type", "f32")
    w = Writer(int(opts.get("align", "32")))
    if args[0] == "llama2c":
        t, c = read_llama2c(args[1])
        llama_meta(w, c["C"], c["L"], c["NH"], c["NKV"], c["H"], c["maxT"])
        llama_tokenizer(w, args[2], c["V"])
        llama_tensors(w, t, c["L"], kind)
        w.write(args[3])
    elif args[0] == "ckpt":
        p, c = read_ckpt(args[1])
        C, L, H, V, QKV, F = c["C"], c["L"], c["H"], c["V"], c["QKV"], c["F"]
        if c["gpt2"]:
            w.add("general.architecture", STR, "gpt2")
            for key, v in (("context_length", c["maxT"]), ("embedding_length", C), ("block_count", L),
                           ("feed_forward_length", H), ("attention.head_count", c["NH"])):
                w.add("gpt2." + key, U32, v)
            w.add("gpt2.attention.layer_norm_epsilon", F32, 1e-5)
            if "vocab" in opts:
                gpt2_tokenizer(w, opts["vocab"])
            w.tensor("token_embd.weight", p["wte"].reshape(V, C), kind)
            # llama.cpp's quantizer leaves position embeddings alone; f16 / bf16 files
            # still store them in that type
            w.tensor("position_embd.weight", p["wpe"].reshape(c["maxT"], C), "f32" if kind == "q8_0" else kind)
            w.tensor("output_norm.weight", p["lnfw"], "f32")
            w.tensor("output_norm.bias", p["lnfb"], "f32")
            w.tensor("output.weight", p["wte"].reshape(V, C), kind)  # as llama.cpp's converter
            for l in range(L):
                q = "blk.%d." % l
                w.tensor(q + "attn_norm.weight", p["ln1w"].reshape(L, C)[l], "f32")
                w.tensor(q + "attn_norm.bias", p["ln1b"].reshape(L, C)[l], "f32")
                w.tensor(q + "attn_qkv.weight", p["qkvw"].reshape(L, QKV, C)[l], kind)
                w.tensor(q + "attn_qkv.bias", p["qkvb"].reshape(L, QKV)[l], "f32")
                w.tensor(q + "attn_output.weight", p["attprojw"].reshape(L, C, C)[l], kind)
                w.tensor(q + "attn_output.bias", p["attprojb"].reshape(L, C)[l], "f32")
                w.tensor(q + "ffn_norm.weight", p["ln2w"].reshape(L, C)[l], "f32")
                w.tensor(q + "ffn_norm.bias", p["ln2b"].reshape(L, C)[l], "f32")
                w.tensor(q + "ffn_up.weight", p["fcw"].reshape(L, F, C)[l], kind)
                w.tensor(q + "ffn_up.bias", p["fcb"].reshape(L, F)[l], "f32")
                w.tensor(q + "ffn_down.weight", p["fcprojw"].reshape(L, C, H)[l], kind)
                w.tensor(q + "ffn_down.bias", p["fcprojb"].reshape(L, C)[l], "f32")
        else:
            NH, NKV = c["NH"], c["NKV"]
            KV = NKV * (C // NH)
            llama_meta(w, C, L, NH, NKV, H, c["maxT"], c["eps"], c["theta"])
            if "tok" in opts:
                llama_tokenizer(w, opts["tok"], V)
            qkv = p["qkvw"].reshape(L, QKV, C)
            fc = p["fcw"].reshape(L, 2 * H, C)
            t = {"wte": p["wte"].reshape(V, C), "rms_att": p["ln1w"].reshape(L, C), "wq": qkv[:, :C],
                 "wk": qkv[:, C:C + KV], "wv": qkv[:, C + KV:], "wo": p["attprojw"].reshape(L, C, C),
                 "rms_ffn": p["ln2w"].reshape(L, C), "w1": fc[:, :H], "w2": p["fcprojw"].reshape(L, C, H),
                 "w3": fc[:, H:], "rms_final": p["lnfw"],
                 "wcls": p["wcls"].reshape(V, C) if c["untied"] else None}
            llama_tensors(w, t, L, kind)
        w.write(args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
