#!/usr/bin/python3
"""Reference byte-level BPE training, in plain Python (standard library only).

The rule of llm_tokenizer_train (llm.h), written as directly as possible: no
incremental counts, no heap -- every merge recounts every pair of every word. Slow
(merges x corpus), so the tests run it on small corpora; it is the truth the C
implementation is compared with, merge by merge.

    bpe_train_ref.py CORPUS VOCAB_SIZE [--lines] [--special TEXT]...

prints one merge a line, "LEFT RIGHT" (token ids; merge k makes id 256 + k).

  1. words: the corpus (bytes) is cut at the special tokens (leftmost match, the
     longest at the same position; they are not learned), then by GPT-2's pattern
         's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
     (\\s: Unicode White_Space; a byte that is not valid UTF-8 is one "other"
     character) -- or, with --lines, after every newline;
  2. ids 0..255 are the bytes; each word starts as its bytes;
  3. merge k: count adjacent pairs over all words, each weighted by the word's count;
     take the highest count, ties to the smallest (left, right); replace it left to
     right in every word with id 256 + k;
  4. stop after VOCAB_SIZE - 256 - (number of special tokens) merges, or when the best
     count is below 2.
"""
import sys
import unicodedata
from collections import Counter

# White_Space (PropList.txt); the same list as tools/gen_unicode.py.
WHITE_SPACE = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(range(0x09, 0x0E)) | {0x20} | set(range(0x2000, 0x200B))
LETTER, NUMBER, SPACE, OTHER = "L", "N", "S", "O"


def char_class(ch):
    cp = ord(ch)
    if cp in WHITE_SPACE:
        return SPACE
    if 0xDC80 <= cp <= 0xDCFF:          # an invalid byte, escaped by surrogateescape
        return OTHER
    cat = unicodedata.category(ch)
    return LETTER if cat[0] == "L" else NUMBER if cat[0] == "N" else OTHER


def gpt2_pieces(text):
    """GPT-2's pattern as a backtracking regex engine applies it (leftmost-first)."""
    n, i, out = len(text), 0, []
    while i < n:
        j = match_at(text, i, n)
        out.append(text[i:j])
        i = j
    return out


def match_at(text, i, n):
    for c in ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d"):
        if text.startswith(c, i):
            return i + len(c)
    for cls in (LETTER, NUMBER, OTHER):     # ' ?X+' for the three classes, in order
        k = i + 1 if text[i] == " " and i + 1 < n and char_class(text[i + 1]) == cls else i
        if char_class(text[k]) == cls:
            while k < n and char_class(text[k]) == cls:
                k += 1
            return k
    j = i                                    # text[i] is whitespace
    while j < n and char_class(text[j]) == SPACE:
        j += 1
    if j == n:
        return j                             # \s+(?!\S) at the end of the text
    if j - 1 > i:
        return j - 1                         # \s+(?!\S): give back the last one
    return j                                 # \s+


def words_of(segment, lines):
    if lines:
        parts = segment.split(b"\n")
        return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    text = segment.decode("utf-8", "surrogateescape")
    return [p.encode("utf-8", "surrogateescape") for p in gpt2_pieces(text)]


def split_special(data, specials):
    """The stretches of data between special tokens."""
    out, i = [], 0
    while True:
        best = None
        for s in specials:
            j = data.find(s, i)
            if j >= 0 and (best is None or j < best[0] or (j == best[0] and len(s) > len(best[1]))):
                best = (j, s)
        if best is None:
            out.append(data[i:])
            return out
        out.append(data[i:best[0]])
        i = best[0] + len(best[1])


def train(data, vocab_size, lines=False, specials=()):
    counts = Counter()
    for seg in split_special(data, [s.encode() for s in specials]):
        counts.update(words_of(seg, lines))
    words = [[list(w), c] for w, c in counts.items()]
    merges = []
    for k in range(vocab_size - 256 - len(specials)):
        pairs = Counter()
        for syms, c in words:
            for p in zip(syms, syms[1:]):
                pairs[p] += c
        best = min(pairs.items(), key=lambda pc: (-pc[1], pc[0]), default=None)
        if best is None or best[1] < 2:
            break
        (a, b), z = best[0], 256 + k
        for w in words:
            s, out, i = w[0], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(z)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            w[0] = out
        merges.append((a, b))
    return merges


def main():
    args = sys.argv[1:]
    lines = "--lines" in args
    specials = [args[i + 1] for i, a in enumerate(args) if a == "--special"]
    rest = [a for i, a in enumerate(args) if a != "--lines" and a != "--special" and (i == 0 or args[i - 1] != "--special")]
    if len(rest) != 2:
        sys.exit(__doc__)
    with open(rest[0], "rb") as f:
        data = f.read()
    for a, b in train(data, int(rest[1]), lines, specials):
        print(a, b)


if __name__ == "__main__":
    main()
