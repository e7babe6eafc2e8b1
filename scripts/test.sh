#!/usr/bin/env bash
# Installs what is missing, builds, and runs every spec under LuaJIT.
# The last line is "N passed, N failed, N skipped".
#
#   BALANCING_REQUIRE_E2E=1   a skipped kernel or end-to-end spec counts as failed
#   BALANCING_SANITIZE=1      build with ASan+UBSan (build-sanitize/) and run the specs on it
#   BALANCING_BUILD_DIR=DIR   build directory (default build/, or build-sanitize/)
#   BUSTED_ARGS="..."         extra arguments for busted (e.g. a spec file or --filter)
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

cmake_args=()
if [[ ${BALANCING_SANITIZE:-0} == 1 ]]; then
  build_dir=${BALANCING_BUILD_DIR:-build-sanitize}
  cmake_args+=(-DBALANCING_SANITIZE=ON)
else
  build_dir=${BALANCING_BUILD_DIR:-build}
fi
export BALANCING_BUILD_DIR=$build_dir

if ! cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null ||
  ! cmake --build "$build_dir" -j "$(nproc)" >"$build_dir/build.log" 2>&1; then
  cat "$build_dir/build.log" 2>/dev/null | tail -40
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

if [[ ${BALANCING_SANITIZE:-0} == 1 ]]; then
  # LuaJIT itself is not instrumented: the sanitizer runtime must come first.
  LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export LD_PRELOAD
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "test: not root, so the kernel and end-to-end specs are skipped (shown as pending)"
fi

output=$(mktemp)
trap 'rm -f "$output"' EXIT
# shellcheck disable=SC2086
luajit /usr/bin/busted --output=utfTerminal ${BUSTED_ARGS:-} 2>&1 | tee "$output"
busted_status=${PIPESTATUS[0]}
unset LD_PRELOAD

summary=$(grep -aE '[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$output" | tail -1)
if [[ -z $summary ]]; then
  echo "busted did not finish (exit $busted_status)"
  echo "0 passed, 1 failed"
  exit 1
fi
read -r passed failures errors pending < <(echo "$summary" |
  sed -E 's/.*\b([0-9]+) success(es)? \/ ([0-9]+) failures? \/ ([0-9]+) errors? \/ ([0-9]+) pending.*/\1 \3 \4 \5/')
failed=$((failures + errors))
if [[ ${BALANCING_REQUIRE_E2E:-0} == 1 && $pending -gt 0 ]]; then
  echo "BALANCING_REQUIRE_E2E=1: $pending skipped spec(s) count as failed"
  failed=$((failed + pending))
  pending=0
fi
echo "$passed passed, $failed failed, $pending skipped"
[[ $failed -eq 0 ]]
