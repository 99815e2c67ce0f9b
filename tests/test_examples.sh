#!/usr/bin/env bash
# tests/test_examples.sh: the examples as users run them (build/tokenize, train_gpt2,
# generate, chat), on a few KB of Tiny Shakespeare with the GPT-2 vocabulary:
#   - tokenize: text -> ids -> text gives the bytes back; --bin writes a token file;
#   - train_gpt2 from scratch (a tiny GPT-2): the run header prints the AdamW settings;
#     --beta1 0.9 --beta2 0.95 --eps 1e-8 given explicitly is the default, bit for bit;
#     changing any one of them changes the losses; out-of-range values are refused (exit
#     2); a run saved after 2 steps and resumed to 4 repeats the uninterrupted losses;
#   - generate and chat on the checkpoint: they run, print text, exit 0; on llama2.c's
#     stories260K, generate --temp 0 prints run.c's text byte for byte.
# LLM_EXAMPLE_WRAPPER runs every example under a command (`make valgrind`: memcheck, where
# any error or leak makes the example exit 99); LLM_EXAMPLE_SMALL=1 trims the runs.
# Prints "test_examples: N passed, N failed, N skipped" last, as the C tests do.
set -u
B=${LLM_BUILD:-build}
read -r -a W <<<"${LLM_EXAMPLE_WRAPPER:-}"
p=0 f=0 s=0
pass() { p=$((p + 1)); echo "  ok: $*"; }
fail() { f=$((f + 1)); echo "FAIL: $*"; }
skip() { s=$((s + 1)); echo "SKIP: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
finish() { echo "test_examples: $p passed, $f failed, $s skipped"; exit 0; }
run() { ${W[@]+"${W[@]}"} "$@"; }   # an example, under the wrapper

DATA=""
for d in "${LLM_DATA:-}" ../shared/data data; do
  if [ -n "$d" ] && [ -f "$d/gpt2/encoder.json" ] && [ -f "$d/tinyshakespeare/input.txt" ]; then DATA=$d; break; fi
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm_test_examples_XXXXXX") || { fail "mktemp"; finish; }
trap 'rm -rf "$TMP"' EXIT
for x in tokenize train_gpt2 generate chat; do
  [ -x "$B/$x" ] || { fail "$B/$x is not built (make)"; finish; }
done
if [ -z "$DATA" ]; then skip "no GPT-2 vocabulary + Tiny Shakespeare (\$LLM_DATA, ../shared/data, data: make data)"; finish; fi

# ---- tokenize ------------------------------------------------------------------------
head -c "${LLM_EXAMPLE_SMALL:+2000}${LLM_EXAMPLE_SMALL:-6000}" "$DATA/tinyshakespeare/input.txt" > "$TMP/text.txt"
run "$B/tokenize" --vocab "$DATA/gpt2" < "$TMP/text.txt" > "$TMP/ids.txt"; rc=$?
check "tokenize exits 0 (rc $rc)" [ "$rc" -eq 0 ]
check "tokenize prints one id a line" grep -qE '^[0-9]+$' "$TMP/ids.txt"
run "$B/tokenize" --vocab "$DATA/gpt2" --decode < "$TMP/ids.txt" > "$TMP/back.txt"; rc=$?
check "tokenize --decode gives the text back (rc $rc)" cmp -s "$TMP/text.txt" "$TMP/back.txt"
run "$B/tokenize" --vocab "$DATA/gpt2" --bin "$TMP/tok.bin" < "$TMP/text.txt"; rc=$?
check "tokenize --bin writes a token file (rc $rc)" [ "$rc" -eq 0 -a -s "$TMP/tok.bin" ]

# ---- train_gpt2 ------------------------------------------------------------------------
# A tiny GPT-2 with GPT-2's vocabulary: 4 steps of B=2 T=16 (3 under LLM_EXAMPLE_SMALL: a
# change of beta1 or beta2 first shows in the loss of step 3, as Adam's first update is
# the same for any betas).
S=${LLM_EXAMPLE_SMALL:+3}; S=${S:-4}
COMMON=(-d "$TMP/tok.bin" -b 2 -t 16 --threads 2 --eval-batches 2)
TRAIN=("$B/train_gpt2" "${COMMON[@]}" --layers 1 --heads 2 --embd 16 --vocab 50257 --ctx 32)
losses() { grep -E '^step ' "$1" | sed -E 's/.*\| loss ([0-9.]+) .*/\1/' | tr '\n' ' '; }
run "${TRAIN[@]}" -s "$S" > "$TMP/default.txt" 2>&1; rc=$?
check "train_gpt2 exits 0 (rc $rc)" [ "$rc" -eq 0 ]
check "train_gpt2 prints $S step lines" [ "$(grep -cE '^step [0-9]+/' "$TMP/default.txt")" -eq "$S" ]
check "the run header prints AdamW's defaults (betas 0.9 0.95, eps 1e-08)" \
  grep -q 'AdamW betas 0.9 0.95 eps 1e-08' "$TMP/default.txt"
run "${TRAIN[@]}" -s "$S" --beta1 0.9 --beta2 0.95 --eps 1e-8 > "$TMP/explicit.txt" 2>&1
check "--beta1 0.9 --beta2 0.95 --eps 1e-8 is the default, loss for loss" \
  [ -n "$(losses "$TMP/default.txt")" -a "$(losses "$TMP/default.txt")" = "$(losses "$TMP/explicit.txt")" ]
for flag in "--beta1 0.5" "--beta2 0.5" "--eps 0.01"; do
  # shellcheck disable=SC2086
  run "${TRAIN[@]}" -s "$S" $flag > "$TMP/flag.txt" 2>&1; rc=$?
  check "$flag: in the header, and the losses change (rc $rc)" \
    [ "$rc" -eq 0 -a "$(losses "$TMP/flag.txt")" != "$(losses "$TMP/default.txt")" ]
done
check "the header shows them" grep -q 'AdamW betas 0.9 0.95 eps 0.01' "$TMP/flag.txt"
for bad in "--beta1 1" "--beta2 -0.1" "--eps 0" "--beta1 x"; do
  # shellcheck disable=SC2086
  run "${TRAIN[@]}" -s 1 $bad > "$TMP/bad.txt" 2>&1; rc=$?
  check "$bad is refused with exit 2 and a message (rc $rc)" [ "$rc" -eq 2 -a -s "$TMP/bad.txt" ]
done
# save after half the steps, resume to the end: the same losses as one run (a constant
# learning rate, so that both runs have the same schedule)
H=$((S / 2))
run "${TRAIN[@]}" -s "$S" --schedule const > "$TMP/full.txt" 2>&1
run "${TRAIN[@]}" -s "$H" --schedule const -o "$TMP/half.ckpt" > "$TMP/half.txt" 2>&1
run "$B/train_gpt2" "${COMMON[@]}" -s "$S" --schedule const --resume "$TMP/half.ckpt" -o "$TMP/run.ckpt" \
  > "$TMP/rest.txt" 2>&1; rc=$?
check "a run saved at step $H and resumed to $S repeats the losses (rc $rc)" \
  [ "$rc" -eq 0 -a -n "$(losses "$TMP/rest.txt")" -a "$(losses "$TMP/half.txt")$(losses "$TMP/rest.txt")" = "$(losses "$TMP/full.txt")" ]
check "no temporary file is left beside the checkpoints" [ -z "$(ls "$TMP" | grep -F .tmp)" ]

# ---- generate, chat --------------------------------------------------------------------
run "$B/generate" -m "$TMP/run.ckpt" -z "$DATA/gpt2" -p "ROMEO:" -n 12 --seed 3 --threads 2 > "$TMP/gen.txt" 2> "$TMP/gen.log"; rc=$?
check "generate on the trained checkpoint exits 0 and writes text (rc $rc)" [ "$rc" -eq 0 -a -s "$TMP/gen.txt" ]
printf 'ROMEO:\nJULIET:\n' | run "$B/chat" -m "$TMP/run.ckpt" -z "$DATA/gpt2" -n 8 --threads 2 > "$TMP/chat.txt" 2> "$TMP/chat.log"; rc=$?
check "chat answers two lines and exits 0 at the end of input (rc $rc)" [ "$rc" -eq 0 -a -s "$TMP/chat.txt" ]
ST=$DATA/stories260K
if [ -f "$ST/stories260K.bin" ] && [ -f "$ST/tok512.bin" ] && [ -f "$ST/greedy200.txt" ]; then
  run "$B/generate" -m "$ST/stories260K.bin" -z "$ST/tok512.bin" --temp 0 -n 200 --threads 2 > "$TMP/story.txt" 2>/dev/null; rc=$?
  check "generate --temp 0 on stories260K prints llama2.c's run.c text byte for byte (rc $rc)" \
    cmp -s "$TMP/story.txt" "$ST/greedy200.txt"
else
  skip "no stories260K (\$LLM_DATA, ../shared/data, data: make data)"
fi
finish
