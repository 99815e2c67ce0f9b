#!/usr/bin/env bash
# tests/test_cuda_examples.sh BUILD: the CUDA examples end to end, linked with llm_cuda.cu
# compiled against tests/cuda_emu.h (BUILD/emu/generate, BUILD/emu/train_gpt2, made by
# `make test`), so that the `--device cuda` paths of the programs users run are exercised
# where CI has no GPU. The kernels run on the CPU (EMULATED: no GPU runs here).
#   - generate --device cuda --temp 0 on llama2.c's stories260K prints run.c's greedy
#     text byte for byte (the same as --device cpu), in fp32; in bf16 and fp16 it runs and
#     prints a story; chat --device cuda, two greedy turns, equals the CPU's; the CPU build
#     refuses --precision fp16 (a GPU mode) with a message and exit status 2;
#   - train_gpt2 --device cuda (tiny GPT-2 on Tiny Shakespeare tokens): 6 steps; a 3-step
#     run saved and resumed to 6 gives steps 4-6 with the same losses, bit for bit
#     (weights, AdamW state, data order and the GPU's fixed reduction orders); the
#     loss falls; the bf16 mode, the fp16 mode (loss scaling: it reports its skipped steps)
#     and a data-parallel world of one rank (NCCL emulated) run.
#   - bench_cuda --tiny (LLM_CUDA_PROFILE=1) runs every figure (fp32, bf16, fp16) and
#     prints the profile.
# Prints "test_cuda_examples: N passed, N failed, N skipped" last, as the C tests do.
set -u
B=${1:-${LLM_BUILD:-build}}
GEN=$B/emu/generate TRAIN=$B/emu/train_gpt2 TOKENIZE=$B/tokenize
p=0 f=0 s=0
pass() { p=$((p + 1)); echo "  ok: $*"; }
fail() { f=$((f + 1)); echo "FAIL: $*"; }
skip() { s=$((s + 1)); echo "SKIP: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
finish() { echo "test_cuda_examples: $p passed, $f failed, $s skipped"; exit 0; }

DATA=""
for d in "${LLM_DATA:-}" ../shared/data data; do
  if [ -n "$d" ] && [ -d "$d" ]; then DATA=$d; break; fi
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm_test_cuda_examples_XXXXXX") || { fail "mktemp"; finish; }
trap 'rm -rf "$TMP"' EXIT

# ---- generate ----------------------------------------------------------------------
ST=$DATA/stories260K
if [ -z "$DATA" ] || [ ! -f "$ST/stories260K.bin" ] || [ ! -f "$ST/tok512.bin" ]; then
  skip "generate: no stories260K.bin + tok512.bin (\$LLM_DATA, ../shared/data, data)"
else
  G=("$GEN" -m "$ST/stories260K.bin" -z "$ST/tok512.bin" --temp 0 -n 200)
  "${G[@]}" --device cuda > "$TMP/gen_cuda.txt" 2> "$TMP/gen_cuda.log"; rc=$?
  check "generate --device cuda exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "generate --device cuda says it used the CUDA backend" grep -q cuda "$TMP/gen_cuda.log"
  if [ -f "$ST/greedy200.txt" ]; then
    check "generate --device cuda --temp 0 prints run.c's greedy200.txt" cmp -s "$TMP/gen_cuda.txt" "$ST/greedy200.txt"
  else
    skip "no greedy200.txt to compare with"
  fi
  CH=(-m "$ST/stories260K.bin" -z "$ST/tok512.bin" --temp 0 -n 40)
  printf 'Once upon a time\nThe end\n' | "$B/emu/chat" "${CH[@]}" --device cuda > "$TMP/chat_cuda.txt" 2>&1; rc=$?
  check "chat --device cuda exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  check "chat --device cuda replies twice" [ "$(grep -c '40 tokens' "$TMP/chat_cuda.txt")" -eq 2 ]
  if [ -x "$B/chat" ]; then
    printf 'Once upon a time\nThe end\n' | "$B/chat" "${CH[@]}" > "$TMP/chat_cpu.txt" 2>&1
    # the two transcripts differ only in the speed figures
    sed -i 's/tokens, [0-9.]* tok\/s/tokens/' "$TMP/chat_cuda.txt" "$TMP/chat_cpu.txt"
    check "chat --device cuda, two greedy turns, says what the CPU says" cmp -s "$TMP/chat_cuda.txt" "$TMP/chat_cpu.txt"
  else
    skip "no $B/chat to compare the CUDA chat with"
  fi
  for prec in bf16 fp16; do
    "${G[@]}" --device cuda --precision $prec > "$TMP/gen_$prec.txt" 2> "$TMP/gen_$prec.log"; rc=$?
    check "generate --device cuda --precision $prec exits 0 (rc $rc)" [ "$rc" -eq 0 ]
    check "$prec generation prints a story" [ "$(wc -c < "$TMP/gen_$prec.txt")" -gt 200 ]
    check "$prec generation says its precision" grep -q "$prec matmuls" "$TMP/gen_$prec.log"
  done
  if [ -x "$B/generate" ]; then
    "$B/generate" -m "$ST/stories260K.bin" -z "$ST/tok512.bin" -n 20 --precision fp16 > "$TMP/gen_cpu16.txt" 2>&1; rc=$?
    check "the CPU generate refuses --precision fp16 (rc $rc)" [ "$rc" -eq 2 ]
    check "... saying it is a GPU mode" grep -q 'fp16 runs on a GPU' "$TMP/gen_cpu16.txt"
  else
    skip "no $B/generate to check its fp16 refusal"
  fi
fi

# ---- bench_cuda --tiny (the benchmark's code paths on the CUDA backend) -----------------
BENCH=$B/emu/bench_cuda
LLM_CUDA_PROFILE=1 "$BENCH" --tiny --steps 1 --warmup 1 > "$TMP/bench.log" 2>&1; rc=$?
check "bench_cuda --tiny exits 0 (rc $rc)" [ "$rc" -eq 0 ]
check "bench_cuda names the device" grep -q '^bench_cuda: device 0: ' "$TMP/bench.log"
check "bench_cuda: fp32, bf16 and fp16 training figures" \
  [ "$(grep -cE '^train gpt2-tiny B=2 T=64 (fp32|bf16|fp16) .* tok/s' "$TMP/bench.log")" -eq 3 ]
check "bench_cuda: 6 inference figures" [ "$(grep -cE '^infer .* decode: .* tok/s' "$TMP/bench.log")" -eq 6 ]
check "bench_cuda: the LLM_CUDA_PROFILE tables, attention and matmuls in them" \
  [ "$(grep -c '^GPU time by kind of work' "$TMP/bench.log")" -eq 3 ] && grep -q '^attention_fwd (bf16) ' "$TMP/bench.log" \
  && grep -q '^attention_fwd (fp16) ' "$TMP/bench.log" && grep -q '^matmul: cublasLt +bias +gelu ' "$TMP/bench.log"

# ---- train_gpt2 --------------------------------------------------------------------
TEXT=$DATA/tinyshakespeare/input.txt VOCAB=$DATA/gpt2
if [ -z "$DATA" ] || [ ! -f "$TEXT" ] || [ ! -f "$VOCAB/encoder.json" ] || [ ! -x "$TOKENIZE" ]; then
  skip "train_gpt2: no tinyshakespeare/input.txt, gpt2/ vocabulary or $TOKENIZE"
  finish
fi
head -c 60000 "$TEXT" | "$TOKENIZE" --vocab "$VOCAB" --bin "$TMP/tok.bin" > /dev/null 2>&1
check "tokenize a slice of Tiny Shakespeare" [ -s "$TMP/tok.bin" ]
RUN=(-b 4 -t 32 --lr 1e-3 --schedule const --eval-every 0 --eval-batches 2 --seed 7 -d "$TMP/tok.bin"
     --device cuda)
SHAPE=(--layers 2 --heads 4 --embd 64 --ctx 64 "${RUN[@]}")
# the step lines: "step N ... loss X ..." -> "N X"
losses() { sed -n 's/^step \{1,\}\([0-9]\{1,\}\)[^0-9].*loss \([0-9.]\{1,\}\).*/\1 \2/p' "$1"; }

"$TRAIN" "${SHAPE[@]}" -s 6 > "$TMP/full.log" 2>&1; rc=$?
check "train_gpt2 --device cuda, 6 steps, exits 0 (rc $rc)" [ "$rc" -eq 0 ]
losses "$TMP/full.log" > "$TMP/full.loss"
check "6 step lines with a loss" [ "$(wc -l < "$TMP/full.loss")" -eq 6 ]
first=$(head -n 1 "$TMP/full.loss" | cut -d' ' -f2) last=$(tail -n 1 "$TMP/full.loss" | cut -d' ' -f2)
check "the loss falls ($first -> $last)" awk -v a="${first:-0}" -v b="${last:-0}" 'BEGIN { exit !(b < a) }'

# a 3-step run (constant learning rate: the same schedule), then resumed to 6
"$TRAIN" "${SHAPE[@]}" -s 3 -o "$TMP/three.ckpt" > "$TMP/three.log" 2>&1; rc=$?
check "train_gpt2 --device cuda, 3 steps with -o, exits 0 (rc $rc)" [ "$rc" -eq 0 ]
"$TRAIN" "${RUN[@]}" -s 6 --resume "$TMP/three.ckpt" > "$TMP/resumed.log" 2>&1; rc=$?
check "train_gpt2 --device cuda --resume exits 0 (rc $rc)" [ "$rc" -eq 0 ]
losses "$TMP/resumed.log" > "$TMP/resumed.loss"
tail -n 3 "$TMP/full.loss" > "$TMP/full.tail"
check "the resumed run prints steps 4-6" [ "$(cut -d' ' -f1 "$TMP/resumed.loss" | tr '\n' ' ')" = "4 5 6 " ]
check "resumed steps 4-6 repeat the uninterrupted run's losses" cmp -s "$TMP/resumed.loss" "$TMP/full.tail"

"$TRAIN" "${SHAPE[@]}" -s 3 --precision bf16 > "$TMP/bf16.log" 2>&1; rc=$?
check "train_gpt2 --device cuda --precision bf16 exits 0 (rc $rc)" [ "$rc" -eq 0 ]
check "bf16 run prints 3 step lines" [ "$(losses "$TMP/bf16.log" | wc -l)" -eq 3 ]

"$TRAIN" "${SHAPE[@]}" -s 6 --precision fp16 > "$TMP/fp16.log" 2>&1; rc=$?
check "train_gpt2 --device cuda --precision fp16 exits 0 (rc $rc)" [ "$rc" -eq 0 ]
losses "$TMP/fp16.log" > "$TMP/fp16.loss"
check "fp16 run prints 6 step lines" [ "$(wc -l < "$TMP/fp16.loss")" -eq 6 ]
check "fp16 run says how it scales the loss" grep -q '^precision: fp16 .*loss scaling from 65536' "$TMP/fp16.log"
check "fp16 run reports its skipped steps" grep -qE '^fp16 loss scaling: [0-9]+ of 6 steps skipped' "$TMP/fp16.log"
first=$(head -n 1 "$TMP/fp16.loss" | cut -d' ' -f2) last=$(tail -n 1 "$TMP/fp16.loss" | cut -d' ' -f2)
check "fp16: the loss falls ($first -> $last)" awk -v a="${first:-0}" -v b="${last:-0}" 'BEGIN { exit !(b < a) }'
if [ -x "$B/train_gpt2" ]; then
  "$B/train_gpt2" --layers 2 --heads 4 --embd 64 --ctx 64 -s 1 -d "$TMP/tok.bin" --precision fp16 > "$TMP/cpu16.log" 2>&1; rc=$?
  check "the CPU train_gpt2 refuses --precision fp16 (rc $rc)" [ "$rc" -eq 2 ] && grep -q 'fp16 runs on a GPU' "$TMP/cpu16.log"
else
  skip "no $B/train_gpt2 to check its fp16 refusal"
fi

"$TRAIN" "${SHAPE[@]}" -s 3 --dist-rank 0 --dist-world 1 > "$TMP/dist.log" 2>&1; rc=$?
if grep -q 'built without NCCL' "$TMP/dist.log"; then
  skip "data parallel: llm_cuda.cu built without NCCL"
else
  check "train_gpt2 --dist-world 1 exits 0 (rc $rc)" [ "$rc" -eq 0 ]
  losses "$TMP/dist.log" > "$TMP/dist.loss"
  head -n 3 "$TMP/full.loss" > "$TMP/full.head"
  check "a world of one rank prints 3 steps" [ "$(wc -l < "$TMP/dist.loss")" -eq 3 ]
  check "a world of one rank trains exactly as one process" cmp -s "$TMP/dist.loss" "$TMP/full.head"
fi
finish
