# Shared by the demo scripts (sourced): messages, the build, and finding data files.
say() { printf '\n== %s\n' "$*"; }

build_examples() {  # the programs a demo runs, built with every core
  say "building"
  make -s -j"$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)" "$@"
}

find_file() {  # first existing $1 under the data places ($LLM_DATA, data/, ../shared/data)
  for d in "${LLM_DATA:-}" data ../shared/data; do
    [ -n "$d" ] || continue
    for f in "$d/$1" "$d/$(basename "$1")"; do
      if [ -f "$f" ]; then echo "$f"; return 0; fi
    done
  done
  return 1
}

find_data() {  # find_file, fetching the data once (scripts/data.sh) when it is missing
  find_file "$1" && return 0
  if [ -z "${FETCHED_DATA:-}" ]; then
    FETCHED_DATA=1
    say "fetching data (scripts/data.sh)" >&2
    scripts/data.sh >&2 || true
  fi
  find_file "$1"
}
