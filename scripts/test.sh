#!/usr/bin/env bash
# Builds librepq and runs every test: the unit suites and the accuracy suite in the
# normal build, the unit suites again and the allocation-failure injection under
# AddressSanitizer + UndefinedBehaviorSanitizer,
# the image API of a build without image support, and every libFuzzer target for a short,
# reproducible run.
# Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
skipped=0
count() { # meson test log dir -> adds its results
    local log=$1/meson-logs/testlog.json
    [ -f "$log" ] || { failed=$((failed + 1)); return; }
    local ok bad
    ok=$(grep -c '"result": "OK"' "$log" || true)
    bad=$(grep -c '"result": "\(FAIL\|TIMEOUT\|ERROR\|UNEXPECTEDPASS\)"' "$log" || true)
    skip=$(grep -c '"result": "SKIP"' "$log" || true)
    passed=$((passed + ok))
    failed=$((failed + bad))
    skipped=$((skipped + skip))
}

# meson runs the tests side by side on every core; OpenBLAS's own threads would only
# oversubscribe them (and spin while they wait).
export OPENBLAS_NUM_THREADS=1

echo "== [${SECONDS} s] unit and accuracy suites"
meson test -C build --print-errorlogs --suite unit --suite accuracy --suite install
count build

echo "== [${SECONDS} s] unit suites and allocation-failure injection under AddressSanitizer and UndefinedBehaviorSanitizer"
if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbenchmarks=false >/dev/null
fi
if ninja -C build-asan >/dev/null; then
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        meson test -C build-asan --print-errorlogs --suite unit --suite injection
    count build-asan
else
    echo "sanitizer build failed"
    failed=$((failed + 1))
fi

echo "== [${SECONDS} s] build without image support (-Dimages=disabled): the image API answers REPQ_ERR_UNSUPPORTED"
if [ ! -f build-noimg/build.ninja ]; then
    meson setup build-noimg -Dimages=disabled -Dbenchmarks=false >/dev/null
fi
if ninja -C build-noimg tests/test_api_misuse >/dev/null; then
    meson test -C build-noimg --no-rebuild --print-errorlogs api_misuse
    count build-noimg
else
    echo "build without image support failed"
    failed=$((failed + 1))
fi

# A fixed number of inputs from a fixed seed: a reproducible regression run, not a search
# (that is scripts/fuzz.sh SECONDS, for people).
fuzz_runs=${FUZZ_RUNS:-100000}
echo "== [${SECONDS} s] libFuzzer targets, $fuzz_runs inputs each from a fixed seed"
fuzz_out=$(FUZZ_RUNS=$fuzz_runs sh scripts/fuzz.sh 0 2>&1)
fuzz_status=$?
echo "$fuzz_out"
fuzz_ok=$(printf '%s\n' "$fuzz_out" | grep -cE '^[a-z]+ +[0-9?]+ +[0-9]+ +[0-9?]+ +[0-9?]+ +ok$' || true)
fuzz_bad=$(printf '%s\n' "$fuzz_out" | grep -c 'CRASH' || true)
passed=$((passed + fuzz_ok))
failed=$((failed + fuzz_bad))
if [ "$fuzz_status" -ne 0 ] && [ "$fuzz_bad" -eq 0 ]; then
    failed=$((failed + 1)) # the fuzz build itself failed
fi

# A skipped test (a missing toolchain, a kernel level the CPU lacks) is neither passed
# nor failed: it is named here, with the last line it printed (the reason).
if [ "$skipped" -gt 0 ]; then
    echo "$skipped skipped (not counted as passed):"
    # meson is Python, so python3 is there to read its JSON log.
    python3 -c 'import json, sys
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        t = json.loads(line)
        if t["result"] == "SKIP":
            out = (t.get("stdout") or "").strip().splitlines()
            print("  %s: %s" % (t["name"], out[-1] if out else "skipped"))
' build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
fi
echo "(all stages: ${SECONDS} s)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
