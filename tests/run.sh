#!/usr/bin/env bash
# tests/run.sh [-j N] TEST...: runs the test programs (and *.sh test scripts), prints the
# output of each one whole, in the order given, and ends with the total line
# "N passed, N failed, N skipped" that CI reads. With -j N, up to N run at once.
#
#   LLM_TEST_WRAPPER   a command put before every program (not before scripts), e.g.
#                      "qemu-aarch64 -L /usr/aarch64-linux-gnu" or "wine"
#   LLM_TEST_TIMEOUT   seconds a test may run before it is killed and counted as failed
#                      (default 1200)
# A program that exits without its summary line, or with a non-zero status while
# reporting no failure, counts as one failure (CRASH).
set -u
jobs=1
if [ "${1:-}" = "-j" ]; then jobs=$2; shift 2; fi
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/llm_run_XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
timeout_cmd=()
if command -v timeout >/dev/null 2>&1; then timeout_cmd=(timeout -k 10 "${LLM_TEST_TIMEOUT:-1200}"); fi
read -r -a wrapper <<<"${LLM_TEST_WRAPPER:-}"

tests=("$@")
n=${#tests[@]}
start() {   # test number i, in the background; its output and status land in $tmp/i.*
  local i=$1 t=${tests[$1]}
  (
    s=$(date +%s)
    if [[ $t == *.sh ]]; then ${timeout_cmd[@]+"${timeout_cmd[@]}"} bash "$t" > "$tmp/$i.out" 2>&1
    else ${timeout_cmd[@]+"${timeout_cmd[@]}"} ${wrapper[@]+"${wrapper[@]}"} "$t" > "$tmp/$i.out" 2>&1; fi
    rc=$?
    echo "$rc $(( $(date +%s) - s ))" > "$tmp/$i.rc.tmp" && mv "$tmp/$i.rc.tmp" "$tmp/$i.rc"
  ) &
}

p=0; f=0; s=0; next=0; shown=0; running=0
report() {   # test number i has finished: print it and add its counts
  local i=$1 t=${tests[$1]} rc secs line a b c
  read -r rc secs < "$tmp/$i.rc"
  echo "== $t (${secs}s)"
  cat "$tmp/$i.out"
  line=$(grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$tmp/$i.out" | tail -n 1)
  if [ -z "$line" ]; then
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "CRASH $t: killed after ${LLM_TEST_TIMEOUT:-1200} s"
    else echo "CRASH $t exited $rc without a summary line"; fi
    f=$((f + 1)); return
  fi
  read -r a b c <<<"$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/')"
  p=$((p + a)); f=$((f + b)); s=$((s + c))
  if [ "$rc" -ne 0 ] && [ "$b" -eq 0 ]; then echo "CRASH $t exited $rc"; f=$((f + 1)); fi
}
while [ "$shown" -lt "$n" ]; do
  while [ "$running" -lt "$jobs" ] && [ "$next" -lt "$n" ]; do start "$next"; next=$((next + 1)); running=$((running + 1)); done
  wait -n 2>/dev/null || sleep 0.2
  running=0
  for ((i = shown; i < next; i++)); do [ -f "$tmp/$i.rc" ] || running=$((running + 1)); done
  while [ "$shown" -lt "$next" ] && [ -f "$tmp/$shown.rc" ]; do report "$shown"; shown=$((shown + 1)); done
done
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
