#!/usr/bin/env bash
# Runs every test program given on the command line, prints their output, and ends
# with the total line "N passed, N failed, N skipped" that CI reads.
set -u
p=0; f=0; s=0; crashed=0
for t in "$@"; do
  echo "== $t"
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | grep -E '^[A-Za-z0-9_./-]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
  if [ -z "$line" ]; then
    echo "CRASH $t exited $rc without a summary line"; f=$((f+1)); crashed=1; continue
  fi
  read -r a b c <<<"$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/')"
  p=$((p+a)); f=$((f+b)); s=$((s+c))
  if [ "$rc" -ne 0 ] && [ "$b" -eq 0 ]; then echo "CRASH $t exited $rc"; f=$((f+1)); fi
done
echo "$p passed, $f failed, $s skipped"
[ "$f" -eq 0 ]
