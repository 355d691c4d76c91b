#!/bin/sh
# Usage: scripts/fuzz.sh SECONDS [TARGET...]
# Runs each libFuzzer target (default: every build/fuzz/fuzz_*) for SECONDS each, one at a
# time. Each target starts from a scratch corpus under build/fuzz/ holding a copy of its seeds
# (tests/fuzz/corpus/<name>/ for fuzz_<name>), so the committed corpus only changes by hand, and
# uses the dictionary tests/fuzz/<name>.dict when there is one;
# crash inputs land in build/fuzz/artifacts-<name>/. Prints executions and seconds per target.
# Exits non-zero when any target crashes, leaks, times out, has no seeds or none is built.
set -eu

cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
FUZZ_DIR=build/fuzz
WORK=${FUZZ_WORK:-$FUZZ_DIR} # corpus copies, artifacts and logs: a long run can use its own
EXTRA_ARGS=${FUZZ_ARGS:-}    # more libFuzzer flags, e.g. FUZZ_ARGS=-runs=10000000

case "$SECONDS_EACH" in
'' | *[!0-9]*)
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
    ;;
esac

found=0
failed=""
[ $# -gt 0 ] || set -- "$FUZZ_DIR"/fuzz_*
for bin in "$@"; do
    case "$bin" in *.log) continue ;; esac
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        echo "fuzz: $bin is not built (make fuzz-build)" >&2
        failed="$failed ${bin##*/}"
        continue
    fi
    found=1
    name=${bin##*/fuzz_}
    corpus="$WORK/corpus-$name"
    artifacts="$WORK/artifacts-$name/"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    if [ ! -d "tests/fuzz/corpus/$name" ]; then
        echo "fuzz: $name has no seeds in tests/fuzz/corpus/$name/" >&2
        failed="$failed $name"
        continue
    fi
    cp -R "tests/fuzz/corpus/$name/." "$corpus/"
    log="$WORK/fuzz_$name.log"
    echo "fuzz: $name for ${SECONDS_EACH}s (log $log)"
    dict=""
    if [ -f "tests/fuzz/$name.dict" ]; then
        dict="-dict=tests/fuzz/$name.dict"
    fi
    start=$(date +%s)
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 $dict \
        -print_final_stats=1 -artifact_prefix="$artifacts" $EXTRA_ARGS "$corpus" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        echo "fuzz: $name ok: ${runs:-?} runs in $(($(date +%s) - start)) s, ${rate:-?} exec/s"
    else
        echo "fuzz: $name FAILED, see $log and $artifacts" >&2
        tail -n 30 "$log" >&2
        failed="$failed $name"
    fi
done

if [ "$found" -eq 0 ]; then
    echo "fuzz: no target in $FUZZ_DIR (build them with make fuzz)" >&2
    exit 1
fi
if [ -n "$failed" ]; then
    echo "fuzz: failures:$failed" >&2
    exit 1
fi
echo "fuzz: all targets passed"
