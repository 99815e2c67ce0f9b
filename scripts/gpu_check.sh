#!/usr/bin/env bash
# scripts/gpu_check.sh: the one-shot check of llm_cuda.cu for a session that has a GPU for
# a few minutes. Run from anywhere; it works in the repository root:
#
#   scripts/gpu_check.sh          logs in $OUT when set (the device machine's output
#                                 folder), else build/gpu_check/
#
# Data the tests read: data/ (stories260K: `make data`; on a machine that gets a copy of
# the working tree, bring it along: the device tool's `carry`: "data"; without it those
# cases print SKIP). test_cuda's 10 steps against PyTorch read tests/fixtures/gpt2_small,
# which is committed.
#
# Steps, each under its own timeout, none stopping the ones after it:
#   env         nvidia-smi, nvcc, compilers, git revision (information only)
#   build       the CUDA objects this script runs (make, -j all cores), for the GPU's own
#               architecture only when nvidia-smi reports it and CUDA_ARCH is not set
#               (one sm_90 cubin instead of four targets: about half the nvcc time)
#   probe       bench_cuda --probe: devices, name, peak FLOP/s. 0 devices: the GPU steps
#               below run what they can without one and report SKIP, never PASS
#   test_sync   LLM_CUDA_SYNC=1 tests/test_cuda: every kernel synchronised, so a fault
#               names its kernel (fp32, and the bf16 and fp16 modes the GPU has)
#   test_async  tests/test_cuda as users run it (one stream, no syncs between kernels)
#   test_attn16 tests/test_cuda_attn16: the bf16 and fp16 tensor-core (WMMA) attention
#               against the CPU
#   test_scaler tests/test_cuda_scaler: fp16 loss scaling (overflow, skip, backoff, growth)
#   test_dist   tests/test_dist (NCCL data parallel: one rank; two ranks as two threads on 2+ GPUs)
#   generate    greedy stories260K (llama2.c's 260K model), 200 positions, on the CPU and
#               on the GPU: the texts must be equal, and equal run.c's greedy200.txt;
#               the GPU's ids must equal greedy200.ids.txt
#   bench_short bench_cuda --B 16 (--B 8 below sm_80: a T4 has 15 GiB): training step in
#               fp32, bf16 (sm_80+) and fp16 (sm_70+), inference (decode, prefill)
#   profile     bench_cuda at that B in the GPU's fast mode (bf16 on sm_80+, fp16 below)
#               with LLM_CUDA_PROFILE=1: GPU time by kind of work
#   bench_long  bench_cuda --B 32,64 --no-decode, if the time budget has room left
# Then summary.txt: one line per step, PASS / FAIL / SKIP with the reason, also printed
# last, after the benchmark tables and the first failing test lines.
#
# Time: GPU_CHECK_BUDGET seconds in all (default 540: 9 minutes); a step's timeout is cut
# to what is left, and a step that cannot get its minimum is skipped. Knobs: LLM_DATA
# (where stories260K/ lives; else ../shared/data, data), CUDA_ARCH (nvcc -gencode flags),
# GPU_CHECK_B (build folder, default build), GPU_CHECK_JOBS (make -j, default all cores).
# Exit status: 0 when no step failed.
set -u
cd "$(dirname "$0")/.." || exit 2
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-540}
DEADLINE=$((START + BUDGET))
LOG=${OUT:-build/gpu_check}
BDIR=${GPU_CHECK_B:-build}
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}
mkdir -p "$LOG" || exit 2
SUMMARY=$LOG/summary.txt
: > "$SUMMARY"
NFAIL=0

say() { printf '\n== %s\n' "$*"; }
# record STEP STATUS NOTE: one line of the summary
record() {
  printf '%-12s %-4s %s\n' "$1" "$2" "$3" >> "$SUMMARY"
  printf -- '-> %s: %s %s\n' "$1" "$2" "$3"
  [ "$2" = FAIL ] && NFAIL=$((NFAIL + 1))
  return 0
}
# run NAME TIMEOUT CMD...: CMD with stdout and stderr in $LOG/NAME.log, under
# min(TIMEOUT, time left); RC is its exit status (124 or 137: timed out), SECS its time.
run() {
  local name=$1 t=$2 left
  shift 2
  left=$((DEADLINE - $(date +%s) - 5))
  [ "$t" -gt "$left" ] && t=$left
  [ "$t" -lt 1 ] && t=1
  local t0
  t0=$(date +%s)
  echo "\$ $* (timeout ${t}s)" > "$LOG/$name.log"
  timeout -k 10 "$t" "$@" >> "$LOG/$name.log" 2>&1
  RC=$?
  SECS=$(($(date +%s) - t0))
  echo "[exit $RC after ${SECS}s]" >> "$LOG/$name.log"
}
# room SECONDS: whether that much of the budget is left
room() { [ $((DEADLINE - $(date +%s))) -ge "$1" ]; }
timed_out() { [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; }
# the "N passed, N failed, N skipped" line of a test log, as "P F S" (empty when none)
counts() {
  grep -E '[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$1" | tail -n 1 |
    sed -E 's/^(.*[^0-9])?([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\2 \3 \4/'
}

# ---- env ----------------------------------------------------------------------------
say "env"
NVCC_BIN=$(command -v nvcc)
for f in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do
  [ -z "$NVCC_BIN" ] && [ -x "$f" ] && NVCC_BIN=$f
done
{
  echo "date: $(date -u)"; echo "host: $(uname -a)"
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo none) $(git status --short 2>/dev/null | wc -l) changed files"
  echo "cc: $(cc --version 2>/dev/null | head -n 1)"
  echo "nvcc: ${NVCC_BIN:-none} $(${NVCC_BIN:-false} --version 2>/dev/null | tail -n 2 | tr '\n' ' ')"
  timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi: not available"
} > "$LOG/env.log" 2>&1
cat "$LOG/env.log"
CC_CAP=$(timeout 30 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
record env PASS "nvcc ${NVCC_BIN:-missing}; GPU ${CC_CAP:+sm_}${CC_CAP:-unknown}"

# ---- build --------------------------------------------------------------------------
say "build"
MAKEVARS=(B="$BDIR")
[ -n "$NVCC_BIN" ] && MAKEVARS+=(NVCC="$NVCC_BIN")
if [ -z "${CUDA_ARCH:-}" ] && [[ "$CC_CAP" =~ ^[0-9]+$ ]]; then
  MAKEVARS+=(CUDA_ARCH="-gencode arch=compute_${CC_CAP},code=sm_${CC_CAP}")
fi
TEST=$BDIR/cuda/tests/test_cuda GEN=$BDIR/cuda/generate BENCH=$BDIR/cuda/bench_cuda
DIST=""; [ -f tests/test_dist.c ] && DIST=$BDIR/cuda/tests/test_dist
ATT16=""; [ -f tests/test_cuda_attn16.c ] && ATT16=$BDIR/cuda/tests/test_cuda_attn16
SCALER=""; [ -f tests/test_cuda_scaler.c ] && SCALER=$BDIR/cuda/tests/test_cuda_scaler
if [ -z "$NVCC_BIN" ]; then
  record build FAIL "nvcc not found (PATH, /usr/local/cuda*/bin)"
else
  run build 300 make -j"$JOBS" "${MAKEVARS[@]}" "$BDIR/cuda/llm_cuda.o" "$TEST" "$GEN" "$BENCH" ${DIST:+"$DIST"} \
    ${ATT16:+"$ATT16"} ${SCALER:+"$SCALER"}
  WARN=$(grep -ci 'warning' "$LOG/build.log")
  if [ "$RC" -eq 0 ]; then record build PASS "${SECS}s, $WARN warning lines (${MAKEVARS[*]:1})"
  elif timed_out; then record build FAIL "timed out after ${SECS}s"
  else record build FAIL "make exit $RC (see build.log)"; fi
fi

# ---- probe --------------------------------------------------------------------------
say "probe"
NDEV=0
if [ -x "$BENCH" ]; then
  run probe 60 "$BENCH" --probe
  cat "$LOG/probe.log"
  NDEV=$(sed -n 's/^devices: \([0-9]*\).*/\1/p' "$LOG/probe.log" | head -n 1)
  NDEV=${NDEV:-0}
  if [ "$RC" -ne 0 ]; then record probe FAIL "exit $RC"
  elif [ "$NDEV" -eq 0 ]; then record probe SKIP "no CUDA device"
  else record probe PASS "$NDEV CUDA device(s); $(grep -m1 '^device 0' "$LOG/probe.log")"; fi
else
  NDEV=$(timeout 30 nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  record probe FAIL "no $BENCH (build failed); nvidia-smi lists ${NDEV:-0} GPU(s)"
fi
# for a GPU step that ran fine: PASS with a GPU, SKIP (with why) without one
ok_status() { if [ "$NDEV" -gt 0 ]; then echo PASS; else echo SKIP; fi; }
NOGPU=""; [ "$NDEV" -gt 0 ] || NOGPU="no CUDA device; "

# ---- test_cuda, synchronised then not; test_attn16; test_scaler; test_dist -------------
for name in test_sync test_async ${ATT16:+test_attn16} ${SCALER:+test_scaler} ${DIST:+test_dist}; do
  say "$name"
  bin=$TEST; [ "$name" = test_dist ] && bin=$DIST; [ "$name" = test_attn16 ] && bin=$ATT16
  [ "$name" = test_scaler ] && bin=$SCALER
  if [ ! -x "$bin" ]; then record "$name" FAIL "no $bin (build failed)"; continue; fi
  if ! room 30; then record "$name" SKIP "no time left"; continue; fi
  case $name in
    test_sync) run "$name" 150 env LLM_CUDA_SYNC=1 "$bin" ;;
    test_async) run "$name" 120 env -u LLM_CUDA_SYNC "$bin" ;;
    *) run "$name" 90 "$bin" ;;
  esac
  tail -n 3 "$LOG/$name.log"
  read -r P F S <<< "$(counts "$LOG/$name.log")"
  if timed_out; then record "$name" FAIL "timed out after ${SECS}s"
  elif [ -z "${P:-}" ]; then record "$name" FAIL "exit $RC without a summary line (crash?)"
  elif [ "$RC" -ne 0 ] || [ "$F" -ne 0 ]; then record "$name" FAIL "$P passed, $F failed, $S skipped, exit $RC"
  else record "$name" "$(ok_status)" "${NOGPU}$P passed, $F failed, $S skipped, ${SECS}s"; fi
done

# ---- generate: greedy text, CPU against GPU against run.c --------------------------
say "generate"
DATA=""
for d in "${LLM_DATA:-}" ../shared/data shared/data data; do
  if [ -n "$d" ] && [ -f "$d/stories260K/stories260K.bin" ] && [ -f "$d/stories260K/tok512.bin" ]; then DATA=$d/stories260K; break; fi
done
if [ ! -x "$GEN" ]; then record generate FAIL "no $GEN (build failed)"
elif [ -z "$DATA" ]; then record generate FAIL "stories260K.bin + tok512.bin not found (\$LLM_DATA, ../shared/data, data)"
elif ! room 20; then record generate SKIP "no time left"
else
  G=("$GEN" -m "$DATA/stories260K.bin" -z "$DATA/tok512.bin" --temp 0 -n 200)
  # the text (stdout) to NAME.txt; messages and speeds (stderr) to NAME.log
  # shellcheck disable=SC2016  # $1 and $@ belong to the inner bash
  TO_FILE=(bash -c '"${@:2}" 2>&1 > "$1"' to_file)
  run generate_cpu 60 "${TO_FILE[@]}" "$LOG/generate_cpu.txt" "${G[@]}" --device cpu; RC_CPU=$RC
  run generate_cuda 60 "${TO_FILE[@]}" "$LOG/generate_cuda.txt" "${G[@]}" --device cuda; RC_GPU=$RC
  run generate_cuda_ids 60 "${TO_FILE[@]}" "$LOG/generate_cuda.ids.txt" "${G[@]}" --device cuda --ids
  tail -n 1 "$LOG/generate_cuda.log"
  notes=""
  if [ "$RC_CPU" -ne 0 ]; then notes="cpu exit $RC_CPU; "; fi
  if [ -f "$DATA/greedy200.txt" ] && ! cmp -s "$LOG/generate_cpu.txt" "$DATA/greedy200.txt"; then
    notes="${notes}cpu text differs from greedy200.txt; "
  fi
  if [ "$NDEV" -eq 0 ]; then
    if [ -z "$notes" ]; then record generate SKIP "no CUDA device (the CPU text equals run.c's)"
    else record generate FAIL "no CUDA device, and: $notes"; fi
  else
    if [ "$RC_GPU" -ne 0 ]; then notes="${notes}cuda exit $RC_GPU (see generate_cuda.log); "
    elif ! cmp "$LOG/generate_cpu.txt" "$LOG/generate_cuda.txt" >> "$LOG/generate_cuda.log" 2>&1; then
      notes="${notes}cuda text differs from cpu ($(cmp "$LOG/generate_cpu.txt" "$LOG/generate_cuda.txt" 2>&1 | head -n 1)); "
    fi
    if [ -f "$DATA/greedy200.ids.txt" ] && ! cmp -s "$LOG/generate_cuda.ids.txt" "$DATA/greedy200.ids.txt"; then
      notes="${notes}cuda ids differ from greedy200.ids.txt (first at line $(diff <(cat "$LOG/generate_cuda.ids.txt") "$DATA/greedy200.ids.txt" | sed -n 's/^\([0-9]*\).*/\1/p' | head -n 1)); "
    fi
    if [ -z "$notes" ]; then record generate PASS "cpu == cuda == run.c text, cuda ids == run.c ids"
    else record generate FAIL "$notes"; fi
  fi
fi

# ---- benchmarks ---------------------------------------------------------------------
# bench STEP TIMEOUT MIN ARGS...: one bench_cuda run; results appended to $LOG/bench_results.jsonl
bench() {
  local name=$1 t=$2 min=$3
  shift 3
  say "$name"
  if [ ! -x "$BENCH" ]; then record "$name" FAIL "no $BENCH (build failed)"; return; fi
  if ! room "$min"; then record "$name" SKIP "no time left (needs ~${min}s)"; return; fi
  run "$name" "$t" "$BENCH" "$LOG/bench_results.jsonl" "$@"
  grep -E '^(bench_cuda|train|infer)' "$LOG/$name.log"
  local oom
  oom=$(grep -c 'out of memory, skipped' "$LOG/$name.log")
  if timed_out; then record "$name" FAIL "timed out after ${SECS}s (figures so far in $name.log)"
  elif [ "$RC" -ne 0 ]; then record "$name" FAIL "exit $RC: $(grep -m1 'FAILED' "$LOG/$name.log")"
  elif grep -q "^SKIP" "$LOG/$name.log"; then record "$name" SKIP "$(grep -m1 "^SKIP" "$LOG/$name.log" | sed "s/^SKIP: //")"
  else record "$name" PASS "${SECS}s, $(grep -cE '^(train|infer).*tok/s' "$LOG/$name.log") figures, $oom out of memory"; fi
}
# a T4-shaped run below sm_80 (15 GiB, no bf16): B 8, and fp16 as the fast mode
BSHORT=16 FAST=bf16
if [[ "$CC_CAP" =~ ^[0-9]+$ ]] && [ "$CC_CAP" -lt 80 ]; then BSHORT=8 FAST=fp16; fi
bench bench_short 210 45 --B "$BSHORT"
# where the time goes: GPU time per kind of work (LLM_CUDA_PROFILE=1), the fast mode
export LLM_CUDA_PROFILE=1
bench profile 90 30 --B "$BSHORT" --mode "$FAST" --steps 2 --warmup 1 --no-decode
unset LLM_CUDA_PROFILE
grep -A40 '^GPU time by kind' "$LOG/profile.log" | head -n 40
bench bench_long 240 75 --B 32,64 --no-decode

# ---- summary ------------------------------------------------------------------------
say "first failing test lines"
grep -h -m 15 '^FAIL' "$LOG"/test_*.log 2>/dev/null || echo "(none)"
echo "total $(($(date +%s) - START))s of a ${BUDGET}s budget; logs in $LOG" >> "$SUMMARY"
say "summary ($SUMMARY)"
cat "$SUMMARY"
[ "$NFAIL" -eq 0 ]
