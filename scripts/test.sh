#!/usr/bin/env bash
# Runs every test: warnings-as-errors builds with gcc and clang, the cmocka
# unit tests and the pytest end-to-end suite under AddressSanitizer and
# UndefinedBehaviorSanitizer, and each libFuzzer target for a short while.
# SLUICE_TEST_TIMEOUT_SCALE scales every timeout of the e2e suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

fail=0
passed=0
failed=0
step() { echo; echo "== $*"; }
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

step "source checks (banned functions)"
if grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol)\s*\(' src fuzz tests/unit \
     --include='*.c' --include='*.h'; then
  echo "banned function used (see docs/architecture.md)"; fail=1; count 0 1
else
  echo "ok"; count 1 0
fi

export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1

step "clang build (-Werror)"
if [ ! -d build-clang ]; then
  CC=clang meson setup build-clang -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || fail=1
fi
ninja -C build-clang >/dev/null || { echo "clang build failed"; fail=1; }

step "gcc build with ASan + UBSan (-Werror)"
if [ ! -d build-asan ]; then
  CC=gcc meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug >/dev/null || fail=1
fi
ninja -C build-asan >/dev/null || { echo "gcc build failed"; exit 1; }

step "unit tests (cmocka)"
meson test -C build-asan --suite unit --print-errorlogs | tee build-asan/unit.out
[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
ok=$(awk '/^Ok:/{print $2}' build-asan/unit.out); ko=$(awk '/^Fail:/{print $2}' build-asan/unit.out)
count "${ok:-0}" "${ko:-0}"

step "fuzz targets (libFuzzer, ${SLUICE_FUZZ_SECONDS:-20}s each)"
for f in build-clang/fuzz/fuzz_*; do
  [ -f "$f" ] && [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus="fuzz/corpus/${name#fuzz_}"
  mkdir -p "build-clang/$name.corpus"
  if "$f" -max_total_time="${SLUICE_FUZZ_SECONDS:-20}" -max_len=4096 \
       "build-clang/$name.corpus" $( [ -d "$corpus" ] && echo "$corpus" ) \
       >"build-clang/$name.log" 2>&1; then
    echo "$name: ok ($(grep -o 'Done [0-9]* runs' "build-clang/$name.log" || tail -1 "build-clang/$name.log"))"
    count 1 0
  else
    echo "$name: FAILED"; tail -40 "build-clang/$name.log"; fail=1; count 0 1
  fi
done

step "end-to-end tests (pytest)"
export SLUICE_BIN="$PWD/build-asan/sluice"
/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs tests/e2e | tee build-asan/e2e.out
rc=${PIPESTATUS[0]}
# pytest's 5 means it collected nothing: that is a failure here.
[ "$rc" -eq 0 ] || fail=1
last=$(grep -E '[0-9]+ (passed|failed)' build-asan/e2e.out | tail -1)
ok=$(echo "$last" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
ko=$(echo "$last" | grep -oE '[0-9]+ (failed|errors?)' | awk '{s+=$1} END{print s+0}')
count "${ok:-0}" "${ko:-0}"
[ "$rc" -eq 0 ] || [ "${ko:-0}" -gt 0 ] || count 0 1

echo
[ $fail -eq 0 ] || [ $failed -gt 0 ] || failed=1
echo "total: $passed passed, $failed failed"
exit $fail
