#!/usr/bin/env bash
# tests/test_valgrind.sh: tests/test_examples.sh (the examples' typical runs, trimmed by
# LLM_EXAMPLE_SMALL) with every example under valgrind's memcheck: any invalid access,
# use of uninitialised memory, or leak makes the example exit 99, which fails its
# check. Without valgrind it prints SKIP. `make valgrind` runs it.
set -u
if ! command -v valgrind >/dev/null 2>&1; then
  echo "SKIP: no valgrind (apt-get install valgrind)"
  echo "test_valgrind: 0 passed, 0 failed, 1 skipped"
  exit 0
fi
export LLM_EXAMPLE_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
export LLM_EXAMPLE_SMALL=1
bash "$(dirname "$0")/test_examples.sh" | sed 's/^test_examples: /test_valgrind: /'
