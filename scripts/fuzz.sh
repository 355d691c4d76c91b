#!/bin/sh
# Runs every built libFuzzer target build/fuzz/fuzz_* for SECONDS each (default 60).
# Each target starts from a scratch corpus under build/fuzz/ holding a copy of its seeds
# (tests/fuzz/seeds/<name>/ for fuzz_<name>); crash inputs land in build/fuzz/artifacts-<name>/.
# Exits non-zero when any target crashes, leaks, times out or is missing.
set -eu

cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
FUZZ_DIR=build/fuzz
EXTRA_ARGS=${FUZZ_ARGS:-} # more libFuzzer flags, e.g. FUZZ_ARGS=-jobs=4

case "$SECONDS_EACH" in
'' | *[!0-9]*)
    echo "usage: $0 SECONDS" >&2
    exit 2
    ;;
esac

found=0
failed=""
for bin in "$FUZZ_DIR"/fuzz_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    found=1
    name=${bin##*/fuzz_}
    corpus="$FUZZ_DIR/corpus-$name"
    artifacts="$FUZZ_DIR/artifacts-$name/"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "tests/fuzz/seeds/$name" ]; then
        cp -R "tests/fuzz/seeds/$name/." "$corpus/"
    fi
    log="$FUZZ_DIR/fuzz_$name.log"
    echo "fuzz: $name for ${SECONDS_EACH}s (log $log)"
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts" $EXTRA_ARGS "$corpus" >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        echo "fuzz: $name ok: ${runs:-?} runs, ${rate:-?} exec/s"
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
