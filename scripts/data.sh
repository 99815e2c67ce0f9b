#!/usr/bin/env bash
# Fetch the data files llm.h's tests, examples and demo use into data/ (`make data`).
#
# Each file is downloaded from its public home with curl (or wget) and checked against
# the SHA-256 listed in ../shared/data/README.md. When a download fails (offline) or
# does not match, the file is copied from $LLM_DATA or ../shared/data instead (and
# checked the same way). Files already in data/ with the right hash are kept.
#   LLM_OFFLINE=1 scripts/data.sh     never touch the network
# Exit status: 0 when every file is in place, 1 otherwise (the missing ones are named).
set -u
cd "$(dirname "$0")/.."

DEST=data
GPT2=https://openaipublic.blob.core.windows.net/gpt-2/models/124M
HF=https://huggingface.co/gpt2/resolve/main
SHAKES=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare
LLAMAS=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K

# path under data/ | URL | sha256
FILES="
gpt2/encoder.json|$GPT2/encoder.json|196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
gpt2/vocab.bpe|$GPT2/vocab.bpe|1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
gpt2/vocab.json|$HF/vocab.json|196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
gpt2/merges.txt|$HF/merges.txt|1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
tinyshakespeare/input.txt|$SHAKES/input.txt|86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed
stories260K/stories260K.bin|$LLAMAS/stories260K.bin|b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
stories260K/tok512.bin|$LLAMAS/tok512.bin|037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
"

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

download() {  # url out
  if [ "${LLM_OFFLINE:-0}" = 1 ]; then return 1; fi
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 2 --connect-timeout 15 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=2 --timeout=15 -O "$2" "$1"
  else
    return 1
  fi
}

# Places to copy from when offline: $LLM_DATA first, then the shared test data.
MIRRORS=""
[ -n "${LLM_DATA:-}" ] && MIRRORS="$LLM_DATA"
MIRRORS="$MIRRORS ../shared/data"

failed=0
PLACED=""
for entry in $FILES; do
  rel=${entry%%|*}; rest=${entry#*|}; url=${rest%|*}; want=${rest##*|}
  out="$DEST/$rel"
  mkdir -p "$(dirname "$out")"
  if [ -f "$out" ] && [ "$(sha256 "$out")" = "$want" ]; then
    echo "ok      $out"; PLACED="$PLACED $out|$want"; continue
  fi
  tmp="$out.tmp"
  how=""
  if download "$url" "$tmp" 2>/dev/null; then
    if [ "$(sha256 "$tmp")" = "$want" ]; then how="downloaded $url"
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
      # the same path in the mirror, else the same file name anywhere under it
      src="$dir/$rel"
      [ -f "$src" ] || src=$(find "$dir" -name "$(basename "$rel")" -type f 2>/dev/null | head -1)
      if [ -n "$src" ] && [ -f "$src" ] && [ "$(sha256 "$src")" = "$want" ]; then
        cp "$src" "$tmp" && chmod u+w "$tmp" && how="copied from $src" && break
      fi
    done
  fi
  if [ -n "$how" ]; then
    mv "$tmp" "$out"; echo "$how -> $out"
    PLACED="$PLACED $out|$want"
  else
    rm -f "$tmp"; echo "MISSING $out (no network and no copy in \$LLM_DATA or ../shared/data)" >&2
    failed=1
  fi
done
exit $failed
