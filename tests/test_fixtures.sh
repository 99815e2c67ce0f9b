#!/usr/bin/env bash
# tests/test_fixtures.sh: the committed PyTorch references are what PyTorch computes now.
# Runs tests/ref_gpt2.py, ref_llama.py, ref_generate.py and ref_lora.py with $PY (default
# /usr/bin/python3, which must have torch: Debian's python3-torch) into
# $LLM_BUILD/fixtures, then tests/check_fixtures.py compares every file with
# tests/fixtures: recipes, token ids and params_fnv exactly, float arrays and meta.json
# numbers within 1e-6 (see there). Without torch it prints SKIP. `make fixtures` runs
# it; `make fixtures-update` replaces the committed files after a deliberate change.
set -u
PY=${PY:-/usr/bin/python3}
OUT=${LLM_BUILD:-build}/fixtures
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP: $PY has no torch: the committed fixtures are not regenerated (apt-get install python3-torch)"
  echo "test_fixtures: 0 passed, 0 failed, 1 skipped"
  exit 0
fi
rm -rf "$OUT" && mkdir -p "$OUT" || { echo "test_fixtures: 0 passed, 1 failed, 0 skipped"; exit 1; }
for s in tests/ref_gpt2.py tests/ref_llama.py tests/ref_generate.py tests/ref_lora.py; do
  echo "-- $PY $s $OUT"
  if ! "$PY" "$s" "$OUT"; then echo "FAIL: $s"; echo "test_fixtures: 0 passed, 1 failed, 0 skipped"; exit 1; fi
done
exec "$PY" tests/check_fixtures.py "$OUT" tests/fixtures
