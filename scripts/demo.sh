#!/usr/bin/env bash
# make demo: learn a tokenizer and a small language model from Tiny Shakespeare, on the
# CPU, then let it write. About 4 minutes on a 2-core machine, the build included.
#
#   1. build the three programs it uses
#   2. find Tiny Shakespeare ($LLM_DATA, data/, ../shared/data) or download it
#   3. learn a byte-level BPE vocabulary of 4,096 tokens from it (build/tokenize --train)
#      and tokenize it with that (1.1 MB -> 344k tokens: 3.2 bytes a token)
#   4. train a model sized for that corpus from scratch (MODEL below) with a live step
#      line and the validation loss every 100 steps; the loss curves go to
#      build/demo/loss.svg (and every step to build/demo/loss.jsonl)
#   5. generate text from the trained model (build/generate)
#
# Knobs (environment): DEMO_STEPS, DEMO_THREADS (all cores), DEMO_TOKENS (128:
# positions, the prompt included), DEMO_VOCAB (4096). `make demo-gpt2` is the same with
# GPT-2's own 50,257-token vocabulary (scripts/demo_gpt2.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=build/demo
STEPS=${DEMO_STEPS:-800}
THREADS=${DEMO_THREADS:-0}
NGEN=${DEMO_TOKENS:-128}
VOCAB=${DEMO_VOCAB:-4096}
# A Llama (RoPE, RMSNorm, SwiGLU) of 4 layers, 6 heads, 192 channels, context 128: 2.6M
# parameters, 0.8M of them the token embedding. Measured against a GPT-2 of the same
# shape, a wider, deeper Llama and a 2,048-token vocabulary at the same time budget, it
# reached the lowest validation loss per byte (see the README).
MODEL=(--arch llama --layers 4 --heads 6 --embd 192 --vocab "$VOCAB" --ctx 128)
mkdir -p "$OUT"

. scripts/common.sh
build_examples build/tokenize build/train_gpt2 build/generate

# ---- data ---------------------------------------------------------------------------
TEXT=$(find_data tinyshakespeare/input.txt || true)
if [ -z "$TEXT" ]; then
  echo "demo: need tinyshakespeare/input.txt: run 'make data' while online, or set LLM_DATA to a folder holding it" >&2
  exit 1
fi
say "Tiny Shakespeare: $TEXT ($(wc -c < "$TEXT") bytes)"

# ---- tokenizer ----------------------------------------------------------------------
TOK=$OUT/tokenizer
TOKENS=$OUT/tinyshakespeare.bin
say "learning a $VOCAB-token byte-level BPE vocabulary from it"
build/tokenize --train "$VOCAB" --out "$TOK" < "$TEXT"
build/tokenize --vocab "$TOK" --bin "$TOKENS" < "$TEXT"
NTOK=$(( ($(wc -c < "$TOKENS") - 1024) / 2 ))
echo "tokenized: $NTOK tokens -> $TOKENS (the last 10% is held out for validation)"
echo "the first merges (Ġ is a space): $(sed -n '2,13p' "$TOK/merges.txt" | tr '\n' ',' | sed 's/,/, /g')"

# ---- train --------------------------------------------------------------------------
say "training a small model from scratch ($STEPS steps of 16 x 128 tokens)"
CKPT=$OUT/shakespeare.ckpt
build/train_gpt2 -d "$TOKENS" --val-frac 0.1 "${MODEL[@]}" \
  -b 16 -t 128 -s "$STEPS" --lr 2e-3 --min-lr 2e-4 --warmup 30 --wd 0.1 --clip 1 \
  --eval-every 100 --eval-batches 20 --print-every 25 --threads "$THREADS" --seed 1337 \
  -o "$CKPT" --log "$OUT/loss.jsonl" --plot "$OUT/loss.svg"

# ---- generate -----------------------------------------------------------------------
say "generating $NGEN tokens (temperature 0.8, top-k 40)"
build/generate -m "$CKPT" -z "$TOK" -p $'\n' -n "$NGEN" --temp 0.8 --top-k 40 --seed 42 \
  --threads 1   # a model this small decodes fastest on one thread
echo
say "done in $(( $(date +%s) - START )) s. Model: $CKPT, tokenizer: $TOK, loss curves: $OUT/loss.svg"
echo "   more text: build/generate -m $CKPT -z $TOK -p 'ROMEO:' --temp 0.8 --top-k 40"
