#!/usr/bin/env bash
# Runs every libFuzzer binary of a fuzz build for a while: `run.sh BUILD_DIR SECONDS` (the
# build from `cmake --preset fuzz`). Each target starts from a temp copy of its checked-in
# corpus, which is only read: new inputs go to the copy, crash/timeout/leak reproducers to
# BUILD_DIR/tests/fuzz/artifacts/<name>/ (add one to <name>/corpus/ to keep it as a regression
# test). Prints one line per target, the log tail of a failing one, then "N passed, M failed";
# exits non-zero when any target fails.
set -uo pipefail

if [[ $# -ne 2 || ! "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build_dir=$1
seconds=$2
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=$build_dir/tests/fuzz

shopt -s nullglob
targets=()
for bin in "$bin_dir"/fuzz_*; do
  [[ -f $bin && -x $bin && $bin != *_replay ]] && targets+=("$bin")
done
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "run.sh: no fuzz_* binaries in $bin_dir (build with: cmake --preset fuzz && cmake --build --preset fuzz)" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rsgate-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A UBSan report must end the run even in a build without -fno-sanitize-recover.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

passed=0
failed=0
for bin in "${targets[@]}"; do
  exe=$(basename "$bin")
  name=${exe#fuzz_}
  corpus=$src_dir/$name/corpus
  if [[ ! -d $corpus ]]; then
    echo "$exe: FAILED: no checked-in corpus at $corpus"
    failed=$((failed + 1))
    continue
  fi
  scratch=$work/$name
  artifacts=$(cd "$bin_dir" && pwd)/artifacts/$name
  mkdir -p "$scratch" "$artifacts"
  cp -R "$corpus"/. "$scratch"/
  log=$work/$name.log
  touch "$work/$name.start"
  # libFuzzer writes new inputs into the first directory only: the scratch copy.
  timeout --kill-after=10 $((seconds + 60)) "$bin" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$scratch" "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n1)
  speed=$(grep -o 'exec/s: [0-9]*' "$log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
  if [[ $rc -eq 0 ]]; then
    passed=$((passed + 1))
    echo "$exe: ok (${runs:-? runs}, ${speed:-exec/s: ?}, ${cov:-cov: ?}, corpus $(find "$scratch" -type f | wc -l) files)"
  else
    failed=$((failed + 1))
    found=$(find "$artifacts" -type f -newer "$work/$name.start" | head -n1)
    echo "$exe: FAILED (exit $rc${found:+, reproducer $found})"
    tail -n 40 "$log" | sed 's/^/    /'
  fi
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
