#!/usr/bin/env bash
# tests/test_finetune.sh [BUILD]: build/finetune end to end, on models small enough for
# seconds: llama2.c's pretrained stories260K (a Llama, with its tok512 tokenizer) and a
# tiny GPT-2 made here by build/train_gpt2 (with GPT-2's real BPE vocabulary).
#   - LoRA fine-tuning: every step prints train_gpt2's line, every evaluation
#     "val step N/T | val loss X | ppl X | X ms" with ppl = exp(val loss); the validation
#     loss falls; -o writes the adapters alone (header + floats, far smaller than the
#     model); --merge writes a plain checkpoint; greedy generation with the adapters
#     attached (build/generate --adapters) gives the ids the merged checkpoint gives;
#   - --eval-only prints "val loss X | ppl X", and the merged model evaluates as the base
#     with the adapters attached does;
#   - full fine-tuning (--lora 0) of the GPT-2 with --dropout and --recompute, and
#     train_gpt2 with --dropout and --recompute, run and learn;
#   - bad input is refused by name and leaves no output file: an empty text, a text that
#     is not UTF-8, adapters for another model shape, a rank above C, dropout outside
#     [0, 1), a --plot file that cannot be written (before training).
# Prints "test_finetune: N passed, N failed, N skipped" last, as the C tests do.
set -u
B=${1:-${LLM_BUILD:-build}}
FT=$B/finetune GEN=$B/generate TRAIN=$B/train_gpt2 TOKENIZE=$B/tokenize
p=0 f=0 s=0
pass() { p=$((p + 1)); echo "  ok: $*"; }
fail() { f=$((f + 1)); echo "FAIL: $*"; }
skip() { s=$((s + 1)); echo "SKIP: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
finish() { echo "test_finetune: $p passed, $f failed, $s skipped"; exit 0; }

DATA=""
for d in "${LLM_DATA:-}" ../shared/data data; do
  if [ -n "$d" ] && [ -f "$d/stories260K/stories260K.bin" ]; then DATA=$d; break; fi
done
[ -x "$FT" ] || { skip "no $FT (make)"; finish; }
[ -n "$DATA" ] || { skip "no stories260K (\$LLM_DATA, ../shared/data, data: make data)"; finish; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm_test_finetune_XXXXXX") || { fail "mktemp"; finish; }
trap 'rm -rf "$TMP"' EXIT
ST=$DATA/stories260K
M=$ST/stories260K.bin Z=$ST/tok512.bin
TEXT=$DATA/tinyshakespeare/input.txt
head -c 60000 "$TEXT" > "$TMP/notes.txt"
# first value after "$1 " on a line
field() { sed -n "s/.*$1 \([0-9.e+-]*\).*/\1/p"; }

# ---- LoRA on the Llama ----------------------------------------------------------------
"$FT" -m "$M" -z "$Z" --text "$TMP/notes.txt" --lora 4 -s 40 -b 4 -t 64 --lr 3e-3 --eval-every 20 \
  --eval-batches 8 --threads 2 --log "$TMP/run.jsonl" --plot "$TMP/run.svg" -o "$TMP/a.lora" > "$TMP/ft.txt" 2>&1; rc=$?
check "finetune --lora 4 on stories260K exits 0 (rc $rc)" [ "$rc" -eq 0 ]
check "  a memory line" grep -q '^memory: parameters .* | adapters .* | total .* MB$' "$TMP/ft.txt"
check "  40 step lines in train_gpt2's format" \
  [ "$(grep -cE '^step [0-9]+/40 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| norm [0-9.]+ \| [0-9.]+ ms \| [0-9]+ tok/s \| eta [0-9]+s$' "$TMP/ft.txt")" -eq 40 ]
check "  validations at steps 0, 20, 40" [ "$(grep -cE '^val step (0|20|40)/40 \| val loss [0-9.]+ \| ppl [0-9.]+ \| [0-9.]+ ms$' "$TMP/ft.txt")" -eq 3 ]
v0=$(grep '^val step 0/40' "$TMP/ft.txt" | field 'val loss') v1=$(grep '^val step 40/40' "$TMP/ft.txt" | field 'val loss')
ppl1=$(grep '^val step 40/40' "$TMP/ft.txt" | field 'ppl')
check "  the validation loss falls ($v0 -> $v1)" awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a - 0.1) }'
check "  ppl = exp(val loss) ($ppl1)" awk -v l="$v1" -v q="$ppl1" 'BEGIN { exit !(q > 0 && (q - exp(l)) / exp(l) < 1e-3 && (exp(l) - q) / exp(l) < 1e-3) }'
check "  the peak memory is printed" grep -q '^peak memory (resident): [0-9.]* MB$' "$TMP/ft.txt"
check "  --log: a JSON line per step and validation" [ "$(grep -c '"loss":' "$TMP/run.jsonl")" -eq 40 ] && [ "$(grep -c '"val_loss":' "$TMP/run.jsonl")" -eq 3 ]
check "  --plot: an SVG with the train and val curves" sh -c "grep -q '^<svg' '$TMP/run.svg' && grep -q '</svg>' '$TMP/run.svg' \
  && [ \$(grep -c '<polyline' '$TMP/run.svg') -eq 2 ] && grep -q '>train<' '$TMP/run.svg' && grep -q '>val<' '$TMP/run.svg'"
if [ -f "$TMP/a.lora" ]; then
  na=$(wc -c < "$TMP/a.lora") nm=$(wc -c < "$M")
  check "  the adapters file is small ($na bytes against the model's $nm)" [ "$na" -lt $((nm / 10)) ]
  check "  and is the adapters alone" [ "$(head -c 8 "$TMP/a.lora")" = LLMHLORA ]
else
  fail "  -o wrote no adapters file"
fi

# merged == attached
"$FT" -m "$M" --adapters "$TMP/a.lora" --merge "$TMP/merged.ckpt" > "$TMP/merge.txt" 2>&1; rc=$?
check "finetune --merge exits 0 (rc $rc)" [ "$rc" -eq 0 ]
"$GEN" -m "$M" -z "$Z" --adapters "$TMP/a.lora" --temp 0 -n 60 --ids --threads 2 > "$TMP/att.ids" 2>/dev/null
"$GEN" -m "$TMP/merged.ckpt" -z "$Z" --temp 0 -n 60 --ids --threads 2 > "$TMP/mer.ids" 2>/dev/null
"$GEN" -m "$M" -z "$Z" --temp 0 -n 60 --ids --threads 2 > "$TMP/base.ids" 2>/dev/null
check "generate --adapters (attached) gives the merged checkpoint's greedy ids" \
  sh -c "[ -s '$TMP/att.ids' ] && cmp -s '$TMP/att.ids' '$TMP/mer.ids'"
check "  which are not the base's" sh -c "! cmp -s '$TMP/att.ids' '$TMP/base.ids'"
# --eval-only, attached and merged
"$FT" -m "$M" -z "$Z" --adapters "$TMP/a.lora" --text "$TMP/notes.txt" -t 64 --eval-only > "$TMP/ev1.txt" 2>/dev/null
"$FT" -m "$TMP/merged.ckpt" -z "$Z" --lora 0 --text "$TMP/notes.txt" -t 64 --eval-only > "$TMP/ev2.txt" 2>/dev/null
check "--eval-only prints 'val loss X | ppl X'" grep -qE '^val loss [0-9.]+ \| ppl [0-9.]+$' "$TMP/ev1.txt"
e1=$(field 'val loss' < "$TMP/ev1.txt") e2=$(field 'val loss' < "$TMP/ev2.txt")
check "  merged ($e2) = attached ($e1) to 1e-4" awk -v a="$e1" -v b="$e2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d < 1e-4 * a) }'

# ---- a tiny GPT-2 with the real BPE: full fine-tuning with dropout and recompute ------
VOCAB=$DATA/gpt2
if [ -f "$VOCAB/encoder.json" ] && [ -x "$TRAIN" ] && [ -x "$TOKENIZE" ]; then
  "$TOKENIZE" --vocab "$VOCAB" --bin "$TMP/notes.bin" < "$TMP/notes.txt" > /dev/null 2>&1
  "$TRAIN" -d "$TMP/notes.bin" --layers 2 --heads 2 --embd 32 --ctx 64 -b 4 -t 32 -s 3 --threads 2 \
    --dropout 0.1 --recompute -o "$TMP/tiny.ckpt" > "$TMP/tr.txt" 2>&1; rc=$?
  check "train_gpt2 --dropout 0.1 --recompute exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "  says so, with the memory line" sh -c "grep -q '^dropout 0.1, recompute' '$TMP/tr.txt' && grep -q '^memory: ' '$TMP/tr.txt'"
  "$FT" -m "$TMP/tiny.ckpt" -z "$VOCAB" --text "$TMP/notes.txt" --lora 0 --dropout 0.1 --recompute -s 30 -b 4 -t 32 \
    --lr 3e-3 --eval-every 30 --threads 2 -o "$TMP/tiny_ft.ckpt" > "$TMP/ft2.txt" 2>&1; rc=$?
  check "finetune --lora 0 --dropout 0.1 --recompute (GPT-2 BPE) exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  v0=$(grep '^val step 0/30' "$TMP/ft2.txt" | field 'val loss') v1=$(grep '^val step 30/30' "$TMP/ft2.txt" | field 'val loss')
  check "  the validation loss falls ($v0 -> $v1)" awk -v a="$v0" -v b="$v1" 'BEGIN { exit !(b < a - 0.1) }'
  check "  -o writes a checkpoint" [ "$(head -c 8 "$TMP/tiny_ft.ckpt" 2>/dev/null)" = LLMHCKPT ]
  # a folder laid out as `make gpt2` lays data/gpt2-124M out: the model and its tokenizer
  mkdir -p "$TMP/gpt2dir"
  cp "$TMP/tiny_ft.ckpt" "$TMP/gpt2dir/model.safetensors"   # (the format is read from the content)
  cp "$VOCAB/encoder.json" "$TMP/gpt2dir/vocab.json"; cp "$VOCAB/vocab.bpe" "$TMP/gpt2dir/merges.txt"
  # (run from $TMP, where no data/ or ../shared/data holds another vocabulary)
  ROOT=$(pwd)
  (cd "$TMP" && LLM_DATA=/nonexistent "$ROOT/$FT" -m gpt2dir --text notes.txt -t 32 --eval-only > ev3.txt 2>/dev/null); rc=$?
  check "a model folder with its tokenizer beside it: --eval-only without -z (rc $rc)" grep -qE '^val loss [0-9.]+ \| ppl [0-9.]+$' "$TMP/ev3.txt"
  (cd "$TMP" && LLM_DATA=/nonexistent "$ROOT/$GEN" -m gpt2dir -p 'ROMEO:' -n 20 --temp 0 --threads 2 > g3.txt 2>/dev/null); rc=$?
  check "  and generate -m FOLDER finds it too (rc $rc)" sh -c "[ $rc -eq 0 ] && grep -q 'ROMEO:' '$TMP/g3.txt'"
  # the Llama's adapters do not fit the GPT-2
  "$FT" -m "$TMP/tiny.ckpt" -z "$VOCAB" --adapters "$TMP/a.lora" --text "$TMP/notes.txt" -t 32 -o "$TMP/bad1" > "$TMP/e.txt" 2>&1; rc=$?
  check "adapters for another model shape: refused by name (rc $rc)" sh -c "[ $rc -ne 0 ] && grep -q 'adapters for another model shape' '$TMP/e.txt' && [ ! -e '$TMP/bad1' ]"
  "$FT" -m "$TMP/tiny.ckpt" -z "$VOCAB" --text "$TMP/notes.txt" --lora 33 -t 32 -o "$TMP/bad2" > "$TMP/e.txt" 2>&1; rc=$?
  check "rank 33 > C = 32: refused by name (rc $rc)" sh -c "[ $rc -ne 0 ] && grep -q 'rank 33 must be in \[1, C = 32\]' '$TMP/e.txt' && [ ! -e '$TMP/bad2' ]"
else
  skip "no GPT-2 vocabulary in $DATA/gpt2 (or no train_gpt2/tokenize): the GPT-2 part"
fi

# ---- bad input ---------------------------------------------------------------------------
: > "$TMP/empty.txt"
printf 'caf\xe9 au lait\n' > "$TMP/latin1.txt"
"$FT" -m "$M" -z "$Z" --text "$TMP/notes.txt" --text "$TMP/empty.txt" -o "$TMP/bad3" > "$TMP/e.txt" 2>&1; rc=$?
check "an empty text: refused by name (rc $rc)" sh -c "[ $rc -ne 0 ] && grep -q 'empty.txt: the file is empty' '$TMP/e.txt' && [ ! -e '$TMP/bad3' ]"
"$FT" -m "$M" -z "$Z" --text "$TMP/latin1.txt" -o "$TMP/bad4" > "$TMP/e.txt" 2>&1; rc=$?
check "a text that is not UTF-8: refused by name and place (rc $rc)" \
  sh -c "[ $rc -ne 0 ] && grep -q 'latin1.txt: not UTF-8 text: byte 0xe9 at offset 3 (line 1)' '$TMP/e.txt' && [ ! -e '$TMP/bad4' ]"
"$FT" -m "$M" -z "$Z" --text "$TMP/notes.txt" -s 2 -b 2 -t 32 --plot "$TMP/nodir/x.svg" -o "$TMP/bad0" > "$TMP/e.txt" 2>&1; rc=$?
check "--plot into a folder that does not exist: refused by name before training (rc $rc)" \
  sh -c "[ $rc -eq 1 ] && grep -q 'cannot write .*nodir/x.svg' '$TMP/e.txt' && ! grep -q '^step ' '$TMP/e.txt' && [ ! -e '$TMP/bad0' ]"
for pdrop in 1 -0.5 1.5; do
  "$FT" -m "$M" -z "$Z" --text "$TMP/notes.txt" --dropout "$pdrop" -o "$TMP/bad5" > "$TMP/e.txt" 2>&1; rc=$?
  check "--dropout $pdrop: refused (rc $rc)" sh -c "[ $rc -eq 2 ] && grep -q 'dropout' '$TMP/e.txt' && [ ! -e '$TMP/bad5' ]"
done
finish
