#!/usr/bin/env bash
# tests/test_install.sh: llm.h used from outside its tree, as a project that installs it would.
#
#   1. `make install PREFIX=...` writes include/llm.h, include/llm_cuda.cu, lib/pkgconfig/llm.pc
#      and lib/cmake/llm/; `cmake --install` writes the same (llm.pc naming its own prefix).
#   2. examples/external, copied out of the tree, is built against the installed header with
#      pkg-config, with CMake's find_package (after either install) and with add_subdirectory
#      of this checkout; each hello_llm must learn to count (its exit status says so).
#   3. examples/cpp_chat.cpp, built as C++11 and C++20 (by make), replies byte for byte what
#      examples/chat.c replies on stories260K with the same seed.
# Run by `make test-install` from the repository root (LLM_BUILD: the build directory).
set -u
B=${LLM_BUILD:-build}
I=$B/install
ROOT=$(pwd)
p=0; f=0; s=0
ok()   { echo "ok   $*"; p=$((p+1)); }
fail() { echo "FAIL $*"; f=$((f+1)); }
skip() { echo "SKIP $*"; s=$((s+1)); }
# run "what" command...: the command's output is shown only when it fails
run() { local what=$1; shift; local out; if out=$("$@" 2>&1); then return 0; fi
        printf '%s\n' "$out" | tail -n 20; fail "$what"; return 1; }

rm -rf "$I" && mkdir -p "$I"

# ---- 1. the installs -------------------------------------------------------------------
if run "make install" make --no-print-directory install PREFIX="$ROOT/$I/make-prefix"; then
  missing=
  for x in include/llm.h include/llm_cuda.cu lib/pkgconfig/llm.pc lib/cmake/llm/llmConfig.cmake \
           lib/cmake/llm/llmConfigVersion.cmake; do
    [ -f "$I/make-prefix/$x" ] || missing="$missing $x"
  done
  if [ -z "$missing" ] && cmp -s llm.h "$I/make-prefix/include/llm.h"; then ok "make install: every file in place"
  else fail "make install: missing$missing"; fi
fi
have_cmake=1
command -v cmake >/dev/null || { have_cmake=0; skip "cmake is not installed (apt-get install cmake)"; }
if [ $have_cmake = 1 ] &&
   run "cmake configure of llm.h" cmake -S . -B "$I/lib-build" -DCMAKE_INSTALL_PREFIX=/nonexistent &&
   run "cmake --install" cmake --install "$I/lib-build" --prefix "$ROOT/$I/cmake-prefix"; then
  if diff -r "$I/make-prefix/include" "$I/cmake-prefix/include" >/dev/null &&
     diff -r "$I/make-prefix/lib/cmake" "$I/cmake-prefix/lib/cmake" >/dev/null &&
     grep -qx "prefix=$ROOT/$I/cmake-prefix" "$I/cmake-prefix/lib/pkgconfig/llm.pc"; then
    ok "cmake --install: the files of make install, llm.pc with its own prefix"
  else fail "cmake --install: the files differ from make install's"; fi
fi

# ---- 2. the external project -------------------------------------------------------------
cp -r examples/external "$I/pc"
hello() {   # hello WHAT BINARY
  local out
  if out=$("$2" 2>&1); then ok "$1: $out"; else fail "$1: exit status $?: $out"; fi
}
if ! command -v pkg-config >/dev/null; then skip "pkg-config is not installed (apt-get install pkg-config)"
elif run "pkg-config build" make --no-print-directory -C "$I/pc" CC="${CC:-cc}" \
         PKG_CONFIG_PATH="$ROOT/$I/make-prefix/lib/pkgconfig"; then
  hello "pkg-config" "$I/pc/hello_llm"
fi
if [ $have_cmake = 1 ]; then
  for how in make-prefix cmake-prefix subdir; do
    if [ $how = subdir ]; then arg=-DLLM_SOURCE_DIR=$ROOT; else arg=-DCMAKE_PREFIX_PATH=$ROOT/$I/$how; fi
    [ -d "$I/$how" ] || [ $how = subdir ] || continue
    if run "cmake ($how) configure" cmake -S "$I/pc" -B "$I/cmake-$how" "$arg" &&
       run "cmake ($how) build" cmake --build "$I/cmake-$how"; then
      hello "cmake ($how)" "$I/cmake-$how/hello_llm"
    fi
  done
fi

# ---- 3. C++ ------------------------------------------------------------------------------
d=${LLM_DATA:-$( [ -d ../shared/data ] && echo ../shared/data || echo data )}/stories260K
if [ ! -f "$d/stories260K.bin" ]; then skip "cpp_chat: $d/stories260K.bin not found (make data)"
elif [ ! -x "$B/chat" ] || [ ! -x "$B/cpp_chat" ] || [ ! -x "$B/cpp_chat20" ]; then
  fail "cpp_chat: build $B/chat, $B/cpp_chat and $B/cpp_chat20 first (make test-install does)"
else
  printf 'Once upon a time\nThe cat\n' > "$I/chat.in"
  args=(-m "$d/stories260K.bin" -n 40 --seed 7 --threads 2)
  if "$B/chat" "${args[@]}" < "$I/chat.in" > "$I/chat.out" 2>/dev/null; then
    for c in cpp_chat cpp_chat20; do
      if "$B/$c" "${args[@]}" < "$I/chat.in" > "$I/$c.out" 2>/dev/null && cmp -s "$I/chat.out" "$I/$c.out"; then
        ok "$c: the same $(wc -c < "$I/chat.out") bytes of replies as chat"
      else fail "$c: replies differ from chat's"; diff "$I/chat.out" "$I/$c.out" | head -n 10; fi
    done
  else fail "chat failed on stories260K"; fi
fi

echo "test_install: $p passed, $f failed, $s skipped"
[ $f -eq 0 ]
