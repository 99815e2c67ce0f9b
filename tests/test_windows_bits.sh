#!/usr/bin/env bash
# tests/test_windows_bits.sh: the Windows build computes the bits the Linux build computes.
#   - test_platform --losses: short training runs with 1 to 4 threads, losses printed with
#     %a, on every SIMD level this CPU has;
#   - examples/generate on stories260K, greedy and sampled (2 threads).
# The Linux programs against the MinGW-w64 ones under wine (build/win/, made by `make
# test-windows`, which runs this; LLM_BUILD: the build directory).
set -u
B=${LLM_BUILD:-build}
W="${WINE:-wine}"
p=0; f=0; s=0
same() {   # same WHAT LINUX_OUTPUT WINDOWS_OUTPUT
  if [ -n "$2" ] && [ "$2" = "$3" ]; then echo "ok   $1: the same bits on Windows and Linux"; p=$((p+1))
  else echo "FAIL $1: Linux and Windows differ"; diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | head -n 10; f=$((f+1)); fi
}

for level in scalar avx2 avx512; do
  lin=$(LLM_SIMD=$level "$B/tests/test_platform" --losses) || { echo "FAIL $level: the Linux run failed"; f=$((f+1)); continue; }
  case $lin in *"simd=$level "*) ;; *) echo "SKIP $level: this CPU lacks it"; s=$((s+1)); continue ;; esac
  win=$(LLM_SIMD=$level "$B/win/tests/test_platform" --losses) || { echo "FAIL $level: the Windows run failed"; f=$((f+1)); continue; }
  same "training losses, $level, $(printf '%s\n' "$lin" | wc -l) runs (1-4 threads)" "$lin" "$win"
done

d=${LLM_DATA:-$( [ -d ../shared/data ] && echo ../shared/data || echo data )}/stories260K
if [ ! -f "$d/stories260K.bin" ]; then echo "SKIP generate: $d/stories260K.bin not found (make data)"; s=$((s+1))
else
  for args in "--temp 0 -n 200" "--temp 1.0 --top-p 0.9 --seed 133742 -n 200"; do
    lin=$("$B/generate" -m "$d/stories260K.bin" -z "$d/tok512.bin" $args --threads 2 2>/dev/null)
    win=$("$W" "$B/win/generate.exe" -m "$d/stories260K.bin" -z "$d/tok512.bin" $args --threads 2 2>/dev/null | tr -d '\r')
    same "generate $args" "$lin" "$win"
  done
fi
echo "test_windows_bits: $p passed, $f failed, $s skipped"
[ $f -eq 0 ]
