#!/bin/sh
# Run every libFuzzer target for N seconds each (default 60) and print how many inputs
# each executed and in how many seconds. Each target starts from its committed seed
# corpus, copied to a temporary folder so that the corpus in the tree stays small;
# crashing inputs are kept in that folder and named in the output. Exits non-zero if any
# target crashed.
#
#   scripts/fuzz.sh [seconds] [target...]     targets: safetensors qmodel cifar arch jpeg png
#   FUZZ_RUNS=N: instead of a time limit, exactly N inputs per target from a fixed seed,
#   so that a regression run (CI) is reproducible: it passes or fails the same way on
#   every machine, where a timed run explores a different path each time.
#   FUZZ_JOBS=N: targets run N at a time (default: the number of cores).
#   FUZZ_BUILD_DIR=build-fuzz (default)       configured here if it does not exist:
#     CC=clang meson setup $FUZZ_BUILD_DIR -Dfuzzing=true -Dtests=false -Dbenchmarks=false \
#       -Db_sanitize=address,undefined -Db_lundef=false \
#       "-Dc_args=['-fsanitize=fuzzer-no-link','-fno-sanitize-recover=all']"
#   (fuzzer-no-link instruments the library for coverage, no-recover turns UBSan
#   reports into crashes; only the fuzz executables link libFuzzer itself).
set -eu

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-safetensors qmodel cifar arch jpeg png}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-build-fuzz}
case $build in /*) ;; *) build=$src/$build ;; esac

if [ ! -f "$build/build.ninja" ]; then
    CC=clang meson setup "$build" "$src" -Dfuzzing=true -Dtests=false -Dbenchmarks=false \
        -Db_sanitize=address,undefined -Db_lundef=false \
        "-Dc_args=['-fsanitize=fuzzer-no-link','-fno-sanitize-recover=all']"
fi
ninja -C "$build" $(for t in $targets; do printf 'tests/fuzz/fuzz_%s ' "$t"; done) >/dev/null

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
work=$(mktemp -d /tmp/repq_fuzz.XXXXXX)
# Targets run side by side, FUZZ_JOBS at a time (default: one per core), each on one
# thread (OpenBLAS too, for the qmodel target's forward). Results print in the targets'
# order.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]* | 0) echo "FUZZ_JOBS must be a positive number, not '$jobs'" >&2; exit 2 ;; esac
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

# One target: its result line in $work/$t.line, "1" in $work/$t.crashed if it crashed.
run_target() {
    t=$1
    corpus=$work/$t
    mkdir -p "$corpus" "$work/$t-artifacts"
    cp "$src/tests/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    log=$work/$t.log
    if [ -n "${FUZZ_RUNS:-}" ]; then
        limit="-runs=$FUZZ_RUNS -seed=1"
    else
        limit="-max_total_time=$seconds"
    fi
    start=$(date +%s)
    # $limit holds two words when FUZZ_RUNS is set: left unquoted on purpose.
    if "$build/tests/fuzz/fuzz_$t" $limit -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$work/$t-artifacts/" "$corpus" >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log, inputs in $work/$t-artifacts/)"
        echo 1 >"$work/$t.crashed"
    fi
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # Edge coverage and features of the last status line libFuzzer printed.
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    printf '%-12s %10s %8s %6s %6s  %s\n' "$t" "${execs:-?}" "$took" "${cov:-?}" "${ft:-?}" "$result" >"$work/$t.line"
}

# Lane l runs targets l, l + jobs, l + 2 jobs, ... one after another, so that a long
# target (qmodel, jpeg) holds up only its own lane.
lane=0
while [ "$lane" -lt "$jobs" ]; do
    (
        i=0
        for t in $targets; do
            if [ $((i % jobs)) -eq "$lane" ]; then
                run_target "$t"
            fi
            i=$((i + 1))
        done
    ) &
    lane=$((lane + 1))
done
wait

status=0
printf '%-12s %10s %8s %6s %6s  %s\n' target execs seconds cov ft result
for t in $targets; do
    if [ -f "$work/$t.line" ]; then
        cat "$work/$t.line"
    else # the job died before it could report
        printf '%-12s %10s %8s %6s %6s  %s\n' "$t" '?' '?' '?' '?' "CRASH (no result; see $work/$t.log)"
        status=1
    fi
    if [ -f "$work/$t.crashed" ]; then
        status=1
    fi
done
if [ $status -eq 0 ]; then
    rm -rf "$work"
fi
exit $status
