#!/bin/sh
# Runs every unit test, then every integration test, of one build directory.
#   scripts/run-tests.sh [--beside COMMAND] BUILD_DIR
# Integration tests start BUILD_DIR/portico (PORTICO_BIN). Each binary has a time limit, so a
# hang fails the run instead of stalling it. Output of failing binaries is shown in full.
# Unit tests run a few at a time (nproc; they time nothing against the clock), integration tests
# one after the other (their timers and bounds assume the machine is theirs).
# --beside COMMAND (make test: the next build) runs COMMAND, niced, during the unit tests, which
# mostly wait (test_sim: 15 s, 4 s of CPU) and leave cores idle; the integration tests start
# once it has ended, and do not start when it failed.
set -u
one="" # scripts/run-tests.sh --one BUILD_DIR KIND LIMIT BINARY: one binary (run_one), for xargs
if [ "${1:-}" = --one ]; then
    one=1
    shift
fi
beside=""
if [ "${1:-}" = --beside ]; then
    beside=$2
    shift 2
fi
build=${1:-build}
export PORTICO_BIN="$PWD/$build/portico"
export CMOCKA_MESSAGE_OUTPUT=stdout
log_dir="$build/test-logs"
mkdir -p "$log_dir"
failed=""
why=""
count=0

# The end of a failing binary's output. A sanitizer report at exit (LeakSanitizer lists what a
# failed test left allocated) can be longer than the lines shown, and once hid the assertion
# that had failed: the test's own output comes first, then the report's first lines and summary.
show_failure() { # show_failure LOG
    report=$(grep -n -m1 '^==[0-9]*==ERROR: ' "$1" | cut -d: -f1)
    if [ -z "$report" ]; then
        tail -60 "$1" | sed 's/^/        /'
        return
    fi
    head -n $((report - 2)) "$1" | tail -60 | sed 's/^/        /'
    tail -n +"$report" "$1" | head -24 | sed 's/^/        /'
    echo "        ..."
    grep '^SUMMARY: ' "$1" | sed 's/^/        /'
}

run_one() { # run_one KIND LIMIT BINARY: its output into KIND-NAME.log, its line into .result
    kind=$1 limit=$2 bin=$3
    name=$(basename "$bin")
    start=$(date +%s)
    if timeout -k 5 "$limit" "$bin" >"$log_dir/$kind-$name.log" 2>&1; then
        printf '  ok    %-12s %-36s %4ss\n' "$kind" "$name" "$(( $(date +%s) - start ))"
    else
        rc=$?
        printf '  FAIL  %-12s %-36s (exit %s)\n' "$kind" "$name" "$rc"
    fi >"$log_dir/$kind-$name.result"
}

report() { # report KIND BINARY: the line run_one left; a failure's output, and its name kept
    name=$(basename "$2")
    result="$log_dir/$1-$name.result"
    count=$((count + 1))
    if [ ! -f "$result" ]; then
        printf '  FAIL  %-12s %-36s (not run)\n' "$1" "$name"
    else
        cat "$result"
        grep -q '^  ok ' "$result" && return
    fi
    show_failure "$log_dir/$1-$name.log"
    failed="$failed $name"
    # what failed, again at the very end: a reader shown only the run's last lines sees it
    why="$why$(grep -a -o -E '^\[  FAILED  \] [a-z_0-9]+$|\[  ERROR   \] --- .*|^\[   LINE   \] --- .*|^ERROR: .*' \
        "$log_dir/$1-$name.log" | awk '!seen[$0]++' | head -8 | sed "s/^/    $name: /")
"
}

binaries() { # binaries DIR: the test binaries in it, one a line
    for t in "$1"/test_*; do
        case "$t" in *.o | *.d) continue ;; esac
        [ -x "$t" ] && echo "$t"
    done
}

# The unit tests that take seconds (timed plain and under ASan: test_sim 14 s / 17 s, test_recent
# 0.8 / 10, test_log 1.9 / 2.6, test_sock 1.5 / 1.7, test_http1 0.4 / 2.0), longest first: the
# short ones then fill the other core beside them. In name order test_sim started last, alone
# on one core for most of its 14 s while the other had nothing left.
LONG_UNITS="test_sim test_recent test_log test_http1 test_sock"

unit_binaries() { # unit_binaries DIR: binaries DIR, LONG_UNITS first
    all=$(binaries "$1")
    [ -n "$all" ] || return 0
    long=$(for t in $LONG_UNITS; do echo "$1/$t"; done)
    for t in $long; do
        printf '%s\n' "$all" | grep -x -F "$t"
    done
    printf '%s\n' "$all" | grep -v -x -F "$long"
}

if [ -n "$one" ]; then
    run_one "$2" "$3" "$4"
    exit 0
fi

echo "== $build: unit tests${beside:+, beside: $beside}"
rm -f "$log_dir"/*.result
if [ -n "$beside" ]; then
    # niced: the unit tests keep the CPU they ask for, the command takes what they leave
    nice -n 10 sh -c "$beside" &
    beside_pid=$!
fi
unit_binaries "$build/tests/unit" |
    xargs -r -P "$(nproc 2>/dev/null || echo 2)" -I{} "$0" --one "$build" unit 120 {}
beside_rc=0
if [ -n "$beside" ]; then
    wait "$beside_pid" || beside_rc=$?
fi
for t in $(binaries "$build/tests/unit"); do
    report unit "$t"
done
if [ "$beside_rc" -ne 0 ]; then
    echo "== $build: FAILED: $beside (exit $beside_rc), run beside the unit tests"
    [ -z "$failed" ] || printf '%s' "$why"
    exit 1
fi
echo "== $build: integration tests"
for t in $(binaries "$build/tests/integration"); do
    run_one integration 300 "$t"
    report integration "$t"
done

if [ -n "$failed" ]; then
    echo "== $build: FAILED:$failed"
    printf '%s' "$why"
    exit 1
fi
echo "== $build: $count test binaries passed"
