#!/usr/bin/env bash
# tests/test_fuzz.sh: every libFuzzer target of `make fuzz` for FUZZ_SECONDS (default 60)
# each, from its seed corpus in tests/fuzz/<corpus>/ plus what earlier runs added in
# $LLM_BUILD/fuzz/corpus/<name>/. A target passes when libFuzzer ends without a crash,
# a leak, a timeout or an out-of-memory (its reproducer is then $LLM_BUILD/fuzz/fuzz_<name>-*,
# to be kept as tests/fuzz/<corpus>/regress-<what> once fixed). Prints the executions of
# each target and their total. Needs the binaries `make fuzz-build` makes (clang with
# libFuzzer); without them it prints SKIP. FUZZERS lists name:source:mode:corpus:max_len
# (from the Makefile). FUZZ_SEED (default 1) fixes libFuzzer's random choices, so that a
# run is repeatable: the same binary and corpus make the same inputs in the same order.
set -u
B=${LLM_BUILD:-build}
SECS=${FUZZ_SECONDS:-60}
SEED=${FUZZ_SEED:-1}
p=0 f=0 s=0 total=0
for spec in ${FUZZERS:?FUZZERS is set by the Makefile}; do
  IFS=: read -r name src mode corpus maxlen <<<"$spec"
  bin=$B/fuzz/fuzz_$name
  if [ ! -x "$bin" ]; then echo "SKIP: $bin not built (make fuzz-build needs clang with libFuzzer)"; s=$((s + 1)); continue; fi
  mkdir -p "$B/fuzz/corpus/$name"
  rm -f "$B/fuzz/fuzz_$name"-*
  "$bin" -seed="$SEED" -max_total_time="$SECS" -max_len="$maxlen" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$B/fuzz/fuzz_$name-" "$B/fuzz/corpus/$name" "tests/fuzz/$corpus" \
    > "$B/fuzz/fuzz_$name.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/fuzz/fuzz_$name.log" | tail -n 1)
  artifacts=$(ls "$B/fuzz/fuzz_$name"-* 2>/dev/null | grep -v '\.log$')
  if [ "$rc" -eq 0 ] && [ -z "$artifacts" ] && [ -n "$execs" ]; then
    p=$((p + 1)); total=$((total + execs))
    printf '  ok: fuzz_%-16s %10d executions in %s s, no crash\n' "$name" "$execs" "$SECS"
  else
    f=$((f + 1))
    echo "FAIL: fuzz_$name (exit $rc): ${artifacts:-no statistics}; log $B/fuzz/fuzz_$name.log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: invariant)' "$B/fuzz/fuzz_$name.log" | head -n 5
  fi
done
echo "fuzz: $total executions in all"
echo "test_fuzz: $p passed, $f failed, $s skipped"
