#!/usr/bin/env bash
# Executed-instruction counts of each kernel under qemu-aarch64, LLM_SIMD=scalar against
# NEON (tools/icount.c). Method: qemu's own log. `-d in_asm` prints every translation
# block (TB) once, with its guest instructions; `-d exec,nochain` prints a line each time
# a TB starts (nochain: also when one TB jumps straight into the next). The count is,
# over the TB starts between the first entry to icount_begin and the next to icount_end,
# the sum of each TB's instruction count: every guest instruction executed there, the
# kernel's and the libm/libc calls it makes (a TB left early by an exception would be
# overcounted; user code raises none). Single-threaded (pool of 1).
#   tools/icount.sh [kernel ...]        (needs aarch64-linux-gnu-gcc and qemu-user)
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/arm/icount; mkdir -p "$out"
aarch64-linux-gnu-gcc -O2 -std=c99 -pthread -I. tools/icount.c -o "$out/icount" -lm
kernels=${*:-layernorm_fwd layernorm_bwd_dx layernorm_bwd_dwdb rmsnorm_fwd rmsnorm_bwd gelu_fwd gelu_bwd swiglu_fwd \
swiglu_bwd residual_fwd residual_bwd crossentropy_fwd crossentropy_bwd sumsq adamw attention_fwd attention_bwd \
attention_kv rope gemv gemm decode}
count() {   # $1 simd level, $2 kernel -> instructions between the markers
  LLM_SIMD=$1 qemu-aarch64 -L /usr/aarch64-linux-gnu -d in_asm,exec,nochain -D "$out/log" "$out/icount" "$2" >/dev/null
  awk '
    function norm(a) { sub(/^0x/, "", a); sub(/:$/, "", a); sub(/^0+/, "", a); return a }
    /^IN:/ { intb = 1; start = ""; n = 0; next }
    intb && /^0x[0-9a-f]+:/ { if (start == "") start = norm($1); n++; next }
    intb { if (start != "") size[start] = n; intb = 0 }
    /^Trace / { split($0, f, "/"); pc = norm(f[2])
                if (!on && $NF == "icount_begin") on = 1
                else if (on && $NF == "icount_end") { print total + 0; exit }
                if (on) total += size[pc] }
  ' "$out/log"
  rm -f "$out/log"
}
printf '%-20s %14s %14s %8s\n' kernel scalar neon ratio
for k in $kernels; do
  s=$(count scalar "$k"); n=$(count neon "$k")
  printf '%-20s %14d %14d %8.2f\n' "$k" "$s" "$n" "$(echo "$s / $n" | bc -l)"
done
