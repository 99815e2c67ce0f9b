#!/usr/bin/env python3
"""Fold the work files under wip/ into llm.h (run once, when the wip/ files are done).

Each line `#include "wip/NAME.h"  /* @@WIP ... */` in llm.h is replaced by the file's
text. The generated Unicode table (tools/gen_unicode.py's block, with its lookup
function) moves to the very end of the implementation, so the file reads top-down
and the data does not interrupt the code."""
import re, sys, pathlib

root = pathlib.Path(__file__).resolve().parent.parent
src = (root / "llm.h").read_text()
tail = []

def body(name):
    text = (root / "wip" / name).read_text()
    # placeholder headers start with "/* wip/NAME: ... */"
    text = re.sub(r"\A/\* wip/[^*]*\*/\n", "", text)
    if name == "tokenizer_impl.h":
        i = text.find("/* ---- Unicode classes")
        if i >= 0:
            tail.append("//==== UNICODE ========================================================================\n"
                        + text[i:].rstrip() + "\n")
            text = text[:i]
    return text.rstrip() + "\n"

out = re.sub(r'^#include "wip/([a-z_]+\.h)"[^\n]*\n', lambda m: body(m.group(1)), src, flags=re.M)
if tail:
    marker = "#endif /* LLM_IMPLEMENTATION_DONE */"
    out = out.replace(marker, "\n".join(tail) + "\n" + marker)
if "wip/" in out and "--check" not in sys.argv:
    print("warning: wip/ still mentioned in llm.h", file=sys.stderr)
(root / "llm.h").write_text(out)
