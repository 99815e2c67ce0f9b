#!/usr/bin/env bash
# Fetch the data files llm.h's tests, examples and demo use into data/.
#
#   scripts/data.sh               the vocabulary, Tiny Shakespeare, stories260K (`make data`)
#   scripts/data.sh gpt2 [NAME]   a pretrained GPT-2 from HuggingFace (`make gpt2 [MODEL=NAME]`):
#                                   gpt2         124M -> data/gpt2-124M/  (548 MB)
#                                   gpt2-medium  355M -> data/gpt2-355M/  (1.5 GB)
#                                 model.safetensors and config.json of a pinned revision,
#                                 with the GPT-2 tokenizer (vocab.json, merges.txt) beside them,
#                                 so that the folder is a complete model: `-m data/gpt2-124M`.
#
# Each file is downloaded from its public home with curl (or wget) and checked against
# its published SHA-256 (the data files': ../shared/data/README.md; the HuggingFace
# weights': the SHA-256 of the pinned revision's Git LFS object). When a download fails
# (offline) or does not match, the file is copied from $LLM_DATA, ../shared/data or the
# HuggingFace cache instead (and checked the same way). Files already in data/ with the
# right hash are kept. A download goes to FILE.tmp and is renamed only once its hash is
# right, so an interrupted run never leaves a half file under the real name.
#   LLM_OFFLINE=1 scripts/data.sh ...   never touch the network
#   LLM_DATA_DEST=DIR                    put the files under DIR instead of data/
#   LLM_DATA_LIST=FILE                   use the entries of FILE (lines "path|url|sha256|bytes")
#                                        instead of the built-in list (tests/test_data_sh.sh)
# Exit status: 0 when every file is in place, 1 otherwise (the missing ones are named,
# with the URL tried and the hash expected), 2 for a bad command line.
set -u
cd "$(dirname "$0")/.."

DEST=${LLM_DATA_DEST:-data}
GPT2=https://openaipublic.blob.core.windows.net/gpt-2/models/124M
HF=https://huggingface.co/gpt2/resolve/main
SHAKES=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare
LLAMAS=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
VOCAB_SHA=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
MERGES_SHA=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

# path under data/ | URL | sha256 | bytes (may be empty)
DATA_FILES="
gpt2/encoder.json|$GPT2/encoder.json|$VOCAB_SHA|1042301
gpt2/vocab.bpe|$GPT2/vocab.bpe|$MERGES_SHA|456318
gpt2/vocab.json|$HF/vocab.json|$VOCAB_SHA|1042301
gpt2/merges.txt|$HF/merges.txt|$MERGES_SHA|456318
tinyshakespeare/input.txt|$SHAKES/input.txt|86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed|1115394
stories260K/stories260K.bin|$LLAMAS/stories260K.bin|b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696|1056540
stories260K/tok512.bin|$LLAMAS/tok512.bin|037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312|6227
"

# Pretrained GPT-2 checkpoints, each at a pinned revision of its HuggingFace repository
# (a commit never changes, so neither do the hashes). The weights' SHA-256 is the one
# HuggingFace publishes for the file (its Git LFS object id); config.json is the
# revision's own file.
#   name | folder under data/ | repository | revision | model sha256 | model bytes | config sha256 | config bytes
GPT2_MODELS="
gpt2|gpt2-124M|openai-community/gpt2|607a30d783dfa663caf39e06633721c8d4cfcd7e|248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707|548105171|0daed7749b4f02b8f76240d5444551d7b08712dab4d0adb8239c56ba823bb7b4|665
gpt2-medium|gpt2-355M|openai-community/gpt2-medium|6dcaa7a952f72f9298047fd5137cd6e4f05f41da|fc5a354a19255ad494f3d71549390baca1ccf61d1d822b9408971705c687c9cd|1519984962|ef1a44d889ad1a0acc7731c78134f1b87d2d222f110e97dd10fd4117331caf22|718
"

# Where copies may be found offline: $LLM_DATA, the shared test data, data/ itself (a
# file `make data` placed elsewhere in it), the HuggingFace cache (gpt2 only).
MIRRORS=""
[ -n "${LLM_DATA:-}" ] && MIRRORS="$LLM_DATA"
MIRRORS="$MIRRORS ../shared/data $DEST"

FILES=$DATA_FILES
what=${1:-data}
case "$what" in
  data) ;;
  gpt2)
    name=${2:-gpt2}
    row=""
    for r in $GPT2_MODELS; do [ "${r%%|*}" = "$name" ] && row=$r; done
    if [ -z "$row" ]; then
      echo "data.sh: unknown GPT-2 model '$name'; choose one of:$(for r in $GPT2_MODELS; do printf ' %s' "${r%%|*}"; done)" >&2
      exit 2
    fi
    IFS='|' read -r _ dir repo rev msha mbytes csha cbytes <<<"$row"
    base=https://huggingface.co/$repo/resolve/$rev
    FILES="
$dir/model.safetensors|$base/model.safetensors|$msha|$mbytes
$dir/config.json|$base/config.json|$csha|$cbytes
$dir/vocab.json|$base/vocab.json|$VOCAB_SHA|1042301
$dir/merges.txt|$base/merges.txt|$MERGES_SHA|456318
"
    hub=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
    cache="$hub/models--${repo%%/*}--${repo#*/}"
    [ -d "$cache" ] && MIRRORS="$MIRRORS $cache"
    ;;
  *)
    echo "usage: scripts/data.sh [data | gpt2 [gpt2|gpt2-medium]]" >&2
    exit 2 ;;
esac
if [ -n "${LLM_DATA_LIST:-}" ]; then
  FILES=$(cat "$LLM_DATA_LIST") || { echo "data.sh: cannot read LLM_DATA_LIST=$LLM_DATA_LIST" >&2; exit 2; }
fi

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
size_of() { wc -c < "$1" | tr -d ' '; }

# download URL OUT BYTES: a progress bar for big files when a person is watching
download() {
  if [ "${LLM_OFFLINE:-0}" = 1 ]; then return 1; fi
  if command -v curl >/dev/null 2>&1; then
    if [ -t 2 ] && [ -n "$3" ] && [ "$3" -gt 10000000 ]; then
      echo "downloading $1 ($(( $3 / 1000000 )) MB)" >&2
      curl -fL --progress-bar --retry 2 --connect-timeout 15 -o "$2" "$1"
    else
      curl -fsSL --retry 2 --connect-timeout 15 -o "$2" "$1" 2>/dev/null
    fi
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=2 --timeout=15 -O "$2" "$1"
  else
    return 1
  fi
}

# A file has the wanted content: its size (when known; cheap) and then its SHA-256.
matches() {  # file sha bytes
  [ -f "$1" ] || return 1
  if [ -n "$3" ] && [ "$(size_of "$1")" != "$3" ]; then return 1; fi
  [ "$(sha256 "$1")" = "$2" ]
}

tmp=""
trap '[ -n "$tmp" ] && rm -f "$tmp"' EXIT
trap 'exit 130' INT TERM

failed=0
PLACED=""
for entry in $FILES; do
  IFS='|' read -r rel url want bytes <<<"$entry"
  out="$DEST/$rel"
  mkdir -p "$(dirname "$out")"
  if matches "$out" "$want" "$bytes"; then
    echo "ok      $out"; PLACED="$PLACED $out|$want"; continue
  fi
  tmp="$out.tmp"
  how=""
  if download "$url" "$tmp" "$bytes"; then
    if matches "$tmp" "$want" "$bytes"; then how="downloaded $url"
    else echo "warning: $url does not have the expected SHA-256; trying a local copy" >&2; fi
  elif [ "${LLM_OFFLINE:-0}" != 1 ]; then
    # one failed download: assume we are offline and stop waiting on the network
    echo "cannot download $url: using local copies from here on" >&2
    LLM_OFFLINE=1
  fi
  if [ -z "$how" ]; then
    # a file already placed with the same content (vocab.json is encoder.json)
    for have in $PLACED; do
      if [ "${have##*|}" = "$want" ]; then cp "${have%|*}" "$tmp" && how="copied from ${have%|*}" && break; fi
    done
  fi
  if [ -z "$how" ]; then
    for dir in $MIRRORS; do
      [ -d "$dir" ] || continue
      # the same path in the mirror, else any file of the same name under it (the
      # HuggingFace cache keeps symlinks into its blobs)
      for src in "$dir/$rel" $(find -L "$dir" -name "$(basename "$rel")" -type f 2>/dev/null); do
        if matches "$src" "$want" "$bytes"; then
          cp -L "$src" "$tmp" && chmod u+w "$tmp" && how="copied from $src" && break 2
        fi
      done
    done
  fi
  if [ -n "$how" ]; then
    mv "$tmp" "$out"; tmp=""; echo "$how -> $out"
    PLACED="$PLACED $out|$want"
  else
    rm -f "$tmp"; tmp=""
    {
      echo "MISSING $out${bytes:+ ($bytes bytes)}, sha256 $want"
      echo "  not downloaded from $url"
      echo "  and no copy with that hash in \$LLM_DATA${LLM_DATA:+ ($LLM_DATA)}, ../shared/data$( [ "$what" = gpt2 ] && echo " or the HuggingFace cache")."
      echo "  Fetch it by hand (curl -L -o $out '$url') or put a copy at \$LLM_DATA/$rel."
    } >&2
    failed=1
  fi
done
exit $failed
