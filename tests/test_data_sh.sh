#!/usr/bin/env bash
# tests/test_data_sh.sh: scripts/data.sh (make data, make gpt2) without the network.
# No pretrained weights can be downloaded here, so the files are ones this test makes:
# each is served through a file:// URL (curl reads those like any other), or left in a
# mirror folder, and listed with its SHA-256 in an LLM_DATA_LIST file. Checked:
#   - a download with the right hash is placed; a rerun keeps it ("ok");
#   - a download with the wrong hash is refused and the copy in $LLM_DATA is used;
#   - a file that can be found nowhere: exit 1, the message names the path, the URL and
#     the expected SHA-256, and neither the file nor its .tmp is left behind;
#   - `scripts/data.sh gpt2` (and gpt2-medium) offline, with no copy anywhere, names
#     HuggingFace's pinned URLs and the published hashes of model.safetensors, and still
#     places the tokenizer (vocab.json, merges.txt) from the shared data;
#   - an unknown model name: exit 2, the known names listed.
# Prints "test_data_sh: N passed, N failed, N skipped" last, as the C tests do.
set -u
cd "$(dirname "$0")/.."
p=0 f=0 s=0
pass() { p=$((p + 1)); echo "  ok: $*"; }
fail() { f=$((f + 1)); echo "FAIL: $*"; }
skip() { s=$((s + 1)); echo "SKIP: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
finish() { echo "test_data_sh: $p passed, $f failed, $s skipped"; exit 0; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if ! command -v curl >/dev/null 2>&1 || ! command -v sha256sum >/dev/null 2>&1; then
  skip "needs curl and sha256sum"; finish
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm_test_data_sh_XXXXXX") || { fail "mktemp"; finish; }
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/srv" "$TMP/mirror/m" "$TMP/empty"

# the "published" files: bytes this test makes (a fake weights file and a config)
head -c 300000 /dev/urandom > "$TMP/srv/model.safetensors"
printf '{"n_layer": 2}\n' > "$TMP/srv/config.json"
MS=$(sha "$TMP/srv/model.safetensors") CS=$(sha "$TMP/srv/config.json")
cat > "$TMP/list" <<EOF
m/model.safetensors|file://$TMP/srv/model.safetensors|$MS|300000
m/config.json|file://$TMP/srv/config.json|$CS|
EOF
run() { LLM_DATA_LIST="$TMP/list" LLM_DATA_DEST="$TMP/d" LLM_DATA="$TMP/empty" scripts/data.sh "$@" > "$TMP/out" 2>&1; }

run; rc=$?
check "downloads with the right hash are placed (rc $rc)" [ "$rc" -eq 0 ]
check "model.safetensors placed byte for byte" cmp -s "$TMP/d/m/model.safetensors" "$TMP/srv/model.safetensors"
check "config.json placed" cmp -s "$TMP/d/m/config.json" "$TMP/srv/config.json"
check "it says where each came from" grep -q "downloaded file://$TMP/srv/model.safetensors" "$TMP/out"
run; rc=$?
check "a rerun keeps the files (rc $rc)" sh -c "[ $rc -eq 0 ] && grep -q '^ok .*m/model.safetensors' '$TMP/out'"

# the server now serves other bytes: refused; the mirror's copy (right hash) is used
rm -rf "$TMP/d"
cp "$TMP/srv/model.safetensors" "$TMP/mirror/m/model.safetensors"
head -c 300000 /dev/urandom > "$TMP/srv/model.safetensors"
LLM_DATA_LIST="$TMP/list" LLM_DATA_DEST="$TMP/d" LLM_DATA="$TMP/mirror" scripts/data.sh > "$TMP/out" 2>&1; rc=$?
check "a download with the wrong hash falls back to \$LLM_DATA (rc $rc)" [ "$rc" -eq 0 ]
check "  the warning names the URL" grep -q "file://$TMP/srv/model.safetensors does not have the expected SHA-256" "$TMP/out"
check "  the mirror's copy is placed" cmp -s "$TMP/d/m/model.safetensors" "$TMP/mirror/m/model.safetensors"

# nowhere to be found: named, nothing half-written
rm -rf "$TMP/d"
rm -f "$TMP/mirror/m/model.safetensors"
run; rc=$?
check "a file found nowhere fails (rc $rc)" [ "$rc" -eq 1 ]
check "  the message names the missing file and its hash" grep -q "MISSING $TMP/d/m/model.safetensors (300000 bytes), sha256 $MS" "$TMP/out"
check "  and the URL it tried" grep -q "not downloaded from file://$TMP/srv/model.safetensors" "$TMP/out"
check "  no file and no .tmp left" sh -c "[ ! -e '$TMP/d/m/model.safetensors' ] && [ ! -e '$TMP/d/m/model.safetensors.tmp' ]"
check "  the other file is still placed" cmp -s "$TMP/d/m/config.json" "$TMP/srv/config.json"

# the real list: offline, nothing to copy the weights from -> the published URL and hash
for spec in "gpt2 gpt2-124M openai-community/gpt2/resolve/607a30d783dfa663caf39e06633721c8d4cfcd7e 248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707 0daed7749b4f02b8f76240d5444551d7b08712dab4d0adb8239c56ba823bb7b4" \
            "gpt2-medium gpt2-355M openai-community/gpt2-medium/resolve/6dcaa7a952f72f9298047fd5137cd6e4f05f41da fc5a354a19255ad494f3d71549390baca1ccf61d1d822b9408971705c687c9cd ef1a44d889ad1a0acc7731c78134f1b87d2d222f110e97dd10fd4117331caf22"; do
  read -r name dir url msha csha <<<"$spec"
  rm -rf "$TMP/d"
  LLM_OFFLINE=1 LLM_DATA_DEST="$TMP/d" LLM_DATA="$TMP/empty" HF_HUB_CACHE="$TMP/empty" scripts/data.sh gpt2 "$name" > "$TMP/out" 2>&1; rc=$?
  check "make gpt2 MODEL=$name offline without a copy fails (rc $rc)" [ "$rc" -eq 1 ]
  check "  names $dir/model.safetensors and its published SHA-256" grep -q "MISSING $TMP/d/$dir/model.safetensors ([0-9]* bytes), sha256 $msha" "$TMP/out"
  check "  names the pinned HuggingFace URL" grep -q "https://huggingface.co/$url/model.safetensors" "$TMP/out"
  check "  names config.json's SHA-256" grep -q "sha256 $csha" "$TMP/out"
  if [ -f ../shared/data/gpt2/vocab.json ] || [ -n "${LLM_DATA:-}" ]; then
    check "  places the tokenizer beside it from the shared data" \
      sh -c "[ \"\$(sha256sum < '$TMP/d/$dir/vocab.json' | cut -d' ' -f1)\" = 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783 ] && [ -f '$TMP/d/$dir/merges.txt' ]"
  else
    skip "no ../shared/data/gpt2 to copy the tokenizer from"
  fi
done

scripts/data.sh gpt2 gpt2-enormous > "$TMP/out" 2>&1; rc=$?
check "an unknown model name is refused (rc $rc)" [ "$rc" -eq 2 ]
check "  and the known names are listed" grep -q "choose one of: gpt2 gpt2-medium" "$TMP/out"
finish
