#!/usr/bin/env bash
# Runs every test: warnings-as-errors builds with gcc and clang, the cmocka
# unit tests and the pytest end-to-end suite under AddressSanitizer and
# UndefinedBehaviorSanitizer, and each libFuzzer target for a short while.
#
# Each part proves it ran: the builds are (re)configured with the options
# the run needs, every unit program registered in tests/unit ran its cases,
# every fuzz target registered in fuzz/meson.build was built and ran. The
# last line is always "total: N passed, N failed, N skipped" (cmocka cases,
# fuzz targets, pytest tests, the Debian package's checks, plus one failure
# for each part that could not run), after the reasons of the skipped
# tests, grouped; the exit code is 0 only when nothing failed.
#
# SLUICE_TEST_TIMEOUT_SCALE scales every timeout (default 1);
# SLUICE_FUZZ_SECONDS is each fuzz target's run (default 20);
# SLUICE_TEST_RUN_MINUTES bounds the whole run (default 80);
# CI=true makes a skipped e2e test a failure unless the machine cannot
# provide what it needs (tests/e2e/conftest.py).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
SCALE=${SLUICE_TEST_TIMEOUT_SCALE:-1}
FUZZ_SECONDS=${SLUICE_FUZZ_SECONDS:-20}
deadline=$((SECONDS + ${SLUICE_TEST_RUN_MINUTES:-80} * 60))

passed=0
failed=0
skipped=0
skips=$(mktemp)  # "reason<TAB>test" per skipped test (results.py skips)
trap 'rm -f "$skips"' EXIT
step() { echo; echo "== $*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + ${3:-0})); }
broken() { echo "FAILED: $*"; count 0 1; }
scaled() { awk -v s="$1" -v k="$SCALE" 'BEGIN { printf "%d", s * k + 0.5 }'; }
# Seconds left for the whole run, for a step that may take up to $1.
budget() {
  local left=$((deadline - SECONDS))
  [ "$left" -gt "$1" ] && left=$1
  [ "$left" -gt 0 ] && echo "$left" || echo 1
}
finish() {
  echo
  $PY scripts/results.py skip-summary "$skips"
  echo "total: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
  exit
}

step "set-up (Debian packages)"
if ! bash scripts/setup.sh; then
  broken "scripts/setup.sh"
  finish
fi
echo ok

step "source checks (banned functions)"
if grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol)\s*\(' src fuzz tests/unit \
     --include='*.c' --include='*.h'; then
  broken "banned function used (see docs/architecture.md)"
else
  echo "ok"; count 1 0
fi

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1

# build DIR CC OPTION=VALUE...: a build folder made by that compiler with
# those options, whatever state an earlier run left it in; the compiler's
# errors are shown when it fails. Returns non-zero if the build failed.
build() {
  local dir=$1 cc=$2; shift 2
  local opts=() kv
  for kv in "$@"; do opts+=("-D$kv"); done
  if [ -d "$dir" ] && { [ ! -f "$dir/build.ninja" ] ||
       [ "$($PY scripts/results.py compiler "$dir")" != "$cc" ]; }; then
    echo "$dir: made by another compiler or half set up; starting again"
    rm -rf "$dir"
  fi
  if [ -d "$dir" ]; then
    meson configure "$dir" "${opts[@]}" >"$dir/setup.log" 2>&1
  else
    mkdir -p "$dir"
    CC=$cc meson setup "$dir" "${opts[@]}" >"$dir/setup.log" 2>&1
  fi || { cat "$dir/setup.log"; return 1; }
  $PY scripts/results.py options "$dir" "$@" || return 1
  if ! timeout "$(budget 1800)" ninja -C "$dir" >"$dir/ninja.log" 2>&1; then
    grep -E 'error|warning|FAILED' "$dir/ninja.log" | head -60
    echo "-- last lines of the build log:"; tail -30 "$dir/ninja.log"
    return 1
  fi
  echo "$dir: built with $cc ($*)"
}

common=(b_sanitize=address,undefined b_lundef=false tests=enabled werror=true)

step "clang build (-Werror, fuzz targets)"
clang_ok=1
build build-clang clang "${common[@]}" fuzz=true || { broken "clang build"; clang_ok=0; }

step "gcc build with ASan + UBSan (-Werror)"
gcc_ok=1
build build-asan gcc "${common[@]}" buildtype=debug fuzz=false || { broken "gcc build"; gcc_ok=0; }

step "unit tests (cmocka)"
if [ "$gcc_ok" -eq 1 ]; then
  expected=$($PY scripts/results.py unit-expected tests/unit)
  rm -f build-asan/meson-logs/testlog.json
  timeout "$(budget 900)" meson test -C build-asan --suite unit --print-errorlogs \
    --timeout-multiplier "$(scaled 1)" >build-asan/unit.out 2>&1
  rc=$?
  grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Timeout|Unexpected Pass|Skipped):' build-asan/unit.out
  [ "$rc" -eq 0 ] || tail -60 build-asan/unit.out
  read -r p f s < <($PY scripts/results.py unit build-asan/meson-logs/testlog.json "$expected")
  $PY scripts/results.py skips unit build-asan/meson-logs/testlog.json >>"$skips"
  echo "unit: $p cases passed, $f failed, $s skipped ($expected programs registered)"
  [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || f=1
  count "$p" "$f" "$s"
else
  broken "unit tests not run (no gcc build)"
fi

step "fuzz targets (libFuzzer, ${FUZZ_SECONDS}s each)"
if [ "$clang_ok" -eq 1 ]; then
  mkdir -p build-clang/fuzz-artifacts
  for name in $($PY scripts/results.py fuzz-expected fuzz/meson.build); do
    f="build-clang/fuzz/fuzz_$name"
    if [ ! -x "$f" ]; then broken "fuzz_$name was not built"; continue; fi
    corpus="fuzz/corpus/$name"
    mkdir -p "build-clang/fuzz_$name.corpus"
    # Crash inputs go to the build folder, never the tree.
    timeout "$(budget $((FUZZ_SECONDS + 120)))" "$f" -max_total_time="$FUZZ_SECONDS" \
      -max_len=4096 -timeout=20 -artifact_prefix="build-clang/fuzz-artifacts/${name}-" \
      "build-clang/fuzz_$name.corpus" $( [ -d "$corpus" ] && echo "$corpus" ) \
      >"build-clang/fuzz_$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && runs=$(grep -o 'Done [0-9]* runs' "build-clang/fuzz_$name.log"); then
      echo "fuzz_$name: ok ($runs)"; count 1 0
    else
      echo "fuzz_$name: FAILED (exit $rc)"; tail -40 "build-clang/fuzz_$name.log"; count 0 1
    fi
  done
else
  broken "fuzz targets not run (no clang build)"
fi

step "end-to-end tests (pytest)"
if [ "$gcc_ok" -eq 1 ]; then
  export SLUICE_BIN="$PWD/build-asan/sluice"
  rm -f build-asan/e2e.xml
  timeout --kill-after=30 "$(budget 3600)" $PY -m pytest -q -p no:cacheprovider -rfEsxX \
    --timeout="$(scaled 300)" --junitxml=build-asan/e2e.xml tests/e2e </dev/null
  rc=$?
  read -r p f s < <($PY scripts/results.py pytest build-asan/e2e.xml "$rc")
  $PY scripts/results.py skips pytest build-asan/e2e.xml >>"$skips"
  count "$p" "$f" "$s"
else
  broken "end-to-end tests not run (no gcc build)"
fi

step "Debian package (scripts/package.sh: build, lintian, units, install)"
rm -rf build-package
timeout --kill-after=30 "$(budget 900)" bash scripts/package.sh build-package \
  </dev/null >build-package.log 2>&1
rc=$?
mkdir -p build-package && mv build-package.log build-package/package.log
grep -E '^(not )?ok - ' build-package/package.log
p=$(grep -c '^ok - ' build-package/package.log)
f=$(grep -c '^not ok - ' build-package/package.log)
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
  echo "package.sh exited $rc:"; tail -30 build-package/package.log; f=1
fi
[ "$f" -eq 0 ] || tail -60 build-package/package.log | grep -v '^ok - '
count "$p" "$f"

finish
