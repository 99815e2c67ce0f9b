#!/usr/bin/env bash
# make demo-gpt2: train a small GPT-2 from scratch on Tiny Shakespeare with GPT-2's own
# 50,257-token vocabulary, on the CPU, then let it write. A few minutes on a 2-core
# laptop. (make demo learns a vocabulary sized for the corpus instead: scripts/demo.sh.)
#
#   1. build the examples
#   2. find Tiny Shakespeare ($LLM_DATA, data/, ../shared/data) or download it
#   3. tokenize it with llm.h's GPT-2 tokenizer (build/tokenize --bin)
#   4. train a 4-layer, 128-channel GPT-2 from scratch (7.2M parameters, 6.4M of them the
#      50257-token embedding, whose classifier is most of the work) with a live step line
#      and the validation loss every 100 steps
#   5. generate text from the trained model (build/generate)
#
# Knobs (environment): DEMO_STEPS (700), DEMO_THREADS (all cores), DEMO_TOKENS (128:
# positions, the prompt included; 128 is the model's context and its training length T).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=build/demo-gpt2
STEPS=${DEMO_STEPS:-700}
THREADS=${DEMO_THREADS:-0}
NGEN=${DEMO_TOKENS:-128}
mkdir -p "$OUT"

. scripts/common.sh
build_examples build/tokenize build/train_gpt2 build/generate

# ---- data ---------------------------------------------------------------------------
TEXT=$(find_data tinyshakespeare/input.txt || true)
VOCAB=$(find_data gpt2/encoder.json || true)
if [ -z "$TEXT" ] || [ -z "$VOCAB" ]; then
  echo "demo: need tinyshakespeare/input.txt and gpt2/encoder.json + vocab.bpe:" >&2
  echo "      run 'make data' while online, or set LLM_DATA to a folder holding them" >&2
  exit 1
fi
say "Tiny Shakespeare: $TEXT ($(wc -c < "$TEXT") bytes)"
TOKENS=$OUT/tinyshakespeare.bin
if [ ! -s "$TOKENS" ] || [ "$TEXT" -nt "$TOKENS" ]; then
  build/tokenize --vocab "$(dirname "$VOCAB")" --bin "$TOKENS" < "$TEXT"
fi
NTOK=$(( ($(wc -c < "$TOKENS") - 1024) / 2 ))
echo "tokenized with the GPT-2 tokenizer: $NTOK tokens -> $TOKENS (the last 10% is held out)"

# ---- train --------------------------------------------------------------------------
say "training a small GPT-2 from scratch ($STEPS steps of 8 x 128 tokens)"
CKPT=$OUT/shakespeare.ckpt
build/train_gpt2 -d "$TOKENS" --val-frac 0.1 \
  --layers 4 --heads 4 --embd 128 --ctx 128 \
  -b 8 -t 128 -s "$STEPS" --lr 2e-3 --min-lr 2e-4 --warmup 30 --wd 0.1 --clip 1 \
  --eval-every 100 --eval-batches 10 --print-every 25 --threads "$THREADS" --seed 1337 \
  -o "$CKPT" --log "$OUT/loss.jsonl" --plot "$OUT/loss.svg"

# ---- generate -----------------------------------------------------------------------
say "generating $NGEN tokens (temperature 0.8, top-k 40)"
if [ -x build/generate ]; then
  build/generate -m "$CKPT" -z "$(dirname "$VOCAB")" -p $'\n' -n "$NGEN" --temp 0.8 --top-k 40 --seed 42 \
    --threads 1   # a 7M model decodes fastest on one thread
else
  # no build/generate in this checkout: sample with the trainer (a full forward per token)
  build/train_gpt2 -d "$TOKENS" --resume "$CKPT" -s "$STEPS" -b 8 -t 128 --val-frac 0.1 --eval-batches 1 \
    --sample "$NGEN" --temp 0.8 --top-k 40 --seed 42 --vocab "$(dirname "$VOCAB")" --threads "$THREADS" |
    sed -n '/^---- sample/,$p'
fi
echo
say "done in $(( $(date +%s) - START )) s. Model: $CKPT (build/generate -m $CKPT -p 'ROMEO:')"
