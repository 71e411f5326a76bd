#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz/, clang) and runs each for SECONDS (default 10) on a
# copy of its seed corpus, so that runs never write into the repository. Fails if any target
# crashes, leaks, trips a sanitizer or a harness check, or hangs, leaving the log and the reproducer
# in a directory it names. docs/fuzzing.md has longer runs and how to reproduce a crash.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-10}
shift || true
all=(fuzz_fleet_json fuzz_fleet_cbor fuzz_template fuzz_policy fuzz_csr fuzz_http)
targets=("${@:-${all[@]}}")
build=${IOTMOCK_FUZZ_BUILD:-build-fuzz}

# libFuzzer comes with clang's runtime (Debian: clang + libclang-rt-14-dev, scripts/setup.sh).
probe=$(mktemp -d)
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz: clang cannot build a libFuzzer target (install clang and libclang-rt-14-dev):" >&2
  cat "$probe/err" >&2
  rm -rf "$probe"
  exit 1
fi
rm -rf "$probe"

work=$(mktemp -d "${TMPDIR:-/tmp}/iotmock-fuzz-run-XXXXXX")
# clang warns about code gcc (the normal build) accepts; the log is shown only if the build fails.
if ! { cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DIOTMOCK_FUZZ=ON -DBUILD_TESTING=OFF \
         -DCMAKE_BUILD_TYPE=Debug &&
       cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"; } >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  echo "fuzz: the build failed (log above, also in $work/build.log)" >&2
  exit 1
fi
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp -r "tests/fuzz/corpus/$t/." "$work/$t/corpus/"
  dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=("-dict=tests/fuzz/dict/$t.dict")
  # -timeout: an input running longer than this is a hang; -rss_limit_mb: a leak or a bomb.
  if TMPDIR="$work" "$build/tests/fuzz/$t" "${dict[@]}" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t/log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log")
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t/log")
    printf 'fuzz: %-16s ok  %9s runs  %6s/s\n' "$t" "${runs:-?}" "${speed:-?}"
  else
    status=1
    echo "fuzz: $t FAILED; log and reproducer in $work/$t:" >&2
    grep -v -E "^#[0-9]+|^Error processing request" "$work/$t/log" | tail -40 >&2
  fi
done
[ "$status" = 0 ] && rm -rf "$work"
exit "$status"
