#!/bin/sh
# Usage: [FUZZ_JOBS=N] scripts/fuzz.sh SECONDS [TARGET...]
# Runs each libFuzzer target (default: every build/fuzz/fuzz_*) for SECONDS each, FUZZ_JOBS of
# them at a time (default 1, one after the other; each target is one process busy on one core,
# so with a core each they run as they would alone). Each target starts from a scratch corpus
# under build/fuzz/ holding a copy of its seeds (tests/fuzz/corpus/<name>/ for fuzz_<name>), so
# the committed corpus only changes by hand, and uses the dictionary tests/fuzz/<name>.dict when
# there is one; crash inputs land in build/fuzz/artifacts-<name>/. Prints executions and seconds
# per target as each ends, then the failures, in the order of the targets.
# Exits non-zero when any target crashes, leaks, times out, has no seeds or none is built.
set -eu

cd "$(dirname "$0")/.."
one="" # scripts/fuzz.sh --one SECONDS TARGET: one target (run_target), for xargs
if [ "${1:-}" = --one ]; then
    one=1
    shift
fi
SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
FUZZ_DIR=build/fuzz
WORK=${FUZZ_WORK:-$FUZZ_DIR} # corpus copies, artifacts and logs: a long run can use its own
EXTRA_ARGS=${FUZZ_ARGS:-}    # more libFuzzer flags, e.g. FUZZ_ARGS=-runs=10000000
JOBS=${FUZZ_JOBS:-1}

case "$SECONDS_EACH" in
'' | *[!0-9]*)
    echo "usage: [FUZZ_JOBS=N] $0 SECONDS [TARGET...]" >&2
    exit 2
    ;;
esac
case "$JOBS" in
'' | 0 | *[!0-9]*)
    echo "fuzz: FUZZ_JOBS must be a number of processes, not '$JOBS'" >&2
    exit 2
    ;;
esac

# run_target BIN: one target. Its lines go to stdout as it starts and when it passes; its
# outcome to WORK/fuzz_NAME.result ("ok", or what went wrong), which the run reads once every
# target has ended: the failures of targets run side by side are shown whole, one after another.
run_target() {
    bin=$1
    name=${bin##*/fuzz_}
    result="$WORK/fuzz_$name.result"
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        echo "fuzz: $bin is not built (make fuzz-build)" >"$result"
        return
    fi
    corpus="$WORK/corpus-$name"
    artifacts="$WORK/artifacts-$name/"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    if [ ! -d "tests/fuzz/corpus/$name" ]; then
        echo "fuzz: $name has no seeds in tests/fuzz/corpus/$name/" >"$result"
        return
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
        echo ok >"$result"
    else
        {
            echo "fuzz: $name FAILED, see $log and $artifacts"
            tail -n 30 "$log"
        } >"$result"
    fi
}

if [ -n "$one" ]; then
    run_target "$1"
    exit 0
fi

[ $# -gt 0 ] || set -- "$FUZZ_DIR"/fuzz_*
for bin in "$@"; do # drops what is not a target (the list is read once, before the first set)
    shift
    case "$bin" in *.log | *.result) continue ;; esac
    [ -e "$bin" ] || [ "$bin" != "$FUZZ_DIR/fuzz_*" ] || continue # the glob matched nothing
    set -- "$@" "$bin"
done
if [ $# -eq 0 ]; then
    echo "fuzz: no target in $FUZZ_DIR (build them with make fuzz)" >&2
    exit 1
fi
mkdir -p "$WORK"
for bin in "$@"; do
    rm -f "$WORK/fuzz_${bin##*/fuzz_}.result"
done
printf '%s\n' "$@" | xargs -P "$JOBS" -I{} "$0" --one "$SECONDS_EACH" {} || true

failed=""
for bin in "$@"; do
    name=${bin##*/fuzz_}
    result="$WORK/fuzz_$name.result"
    [ "$(cat "$result" 2>/dev/null)" = ok ] && continue
    if [ -f "$result" ]; then
        cat "$result" >&2
    else
        echo "fuzz: $name did not run" >&2
    fi
    failed="$failed $name"
done
if [ -n "$failed" ]; then
    echo "fuzz: failures:$failed" >&2
    exit 1
fi
echo "fuzz: all targets passed"
