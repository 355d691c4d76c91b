#!/bin/sh
# Runs the unit tests, then the integration tests, of one or more build directories.
#   scripts/run-tests.sh [--only unit|integration] [--beside COMMAND] BUILD_DIR...
# Integration tests start BUILD_DIR/portico (PORTICO_BIN). Each binary has a time limit, so a
# hang fails the run instead of stalling it. Output of failing binaries is shown in full.
# Unit tests run a few at a time (nproc; they time nothing against the clock), build after build.
# --beside COMMAND (make test: the next build) runs COMMAND, niced, during the unit tests, which
# mostly wait (test_sim: 15 s wall, 4 s of CPU) and leave cores idle; the integration tests start
# once it has ended, and do not start when it failed.
# Integration tests run one binary at a time per build, and the builds side by side: they mostly
# wait on their own timers (plain and ASan side by side took 303 s, 4 min 20 s of CPU, against
# 222 s + 302 s one after the other). Each build's tests take their ports from their own range
# below the kernel's ephemeral ports (PORTICO_TEST_PORTS, see tu_free_port), so neither can be
# handed a port the other, or any outgoing connection, holds.
set -u
one="" # scripts/run-tests.sh --one BUILD_DIR KIND LIMIT BINARY: one binary (run_one), for xargs
if [ "${1:-}" = --one ]; then
    one=1
    shift
fi
only=""
if [ "${1:-}" = --only ]; then
    only=$2
    shift 2
fi
beside=""
if [ "${1:-}" = --beside ]; then
    beside=$2
    shift 2
fi
[ $# -gt 0 ] || set -- build
export CMOCKA_MESSAGE_OUTPUT=stdout
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

run_one() { # run_one BUILD KIND LIMIT BINARY: its output into BUILD/test-logs/KIND-NAME.log,
    #                                       its line into .result
    dir=$1 kind=$2 limit=$3 bin=$4
    name=$(basename "$bin")
    start=$(date +%s)
    if PORTICO_BIN="$PWD/$dir/portico" timeout -k 5 "$limit" "$bin" \
        >"$dir/test-logs/$kind-$name.log" 2>&1; then
        printf '  ok    %-11s %-12s %-36s %4ss\n' "$dir" "$kind" "$name" "$(( $(date +%s) - start ))"
    else
        rc=$?
        printf '  FAIL  %-11s %-12s %-36s (exit %s)\n' "$dir" "$kind" "$name" "$rc"
    fi >"$dir/test-logs/$kind-$name.result"
}

report() { # report BUILD KIND BINARY [shown]: the line run_one left (unless already shown);
    #                                  a failure's output, and its name kept
    name=$(basename "$3")
    result="$1/test-logs/$2-$name.result"
    count=$((count + 1))
    if [ ! -f "$result" ]; then
        printf '  FAIL  %-11s %-12s %-36s (not run)\n' "$1" "$2" "$name"
    else
        [ -n "${4:-}" ] || cat "$result"
        grep -q '^  ok ' "$result" && return
        [ -z "${4:-}" ] || cat "$result"
    fi
    show_failure "$1/test-logs/$2-$name.log"
    failed="$failed $1:$name"
    # what failed, again at the very end: a reader shown only the run's last lines sees it
    why="$why$(grep -a -o -E '^\[  FAILED  \] [a-z_0-9]+$|\[  ERROR   \] --- .*|^\[   LINE   \] --- .*|^ERROR: .*' \
        "$1/test-logs/$2-$name.log" | awk '!seen[$0]++' | head -8 | sed "s|^|    $1:$name: |")
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
    run_one "$@"
    exit 0
fi
for build in "$@"; do
    mkdir -p "$build/test-logs"
    rm -f "$build/test-logs"/*.result
done

units() { # units BUILD: its unit tests, nproc at a time, beside $beside; 1 if that failed
    echo "== $1: unit tests${beside:+, beside: $beside}"
    if [ -n "$beside" ]; then
        # niced: the unit tests keep the CPU they ask for, the command takes what they leave
        nice -n 10 sh -c "$beside" &
        beside_pid=$!
    fi
    unit_binaries "$1/tests/unit" |
        xargs -r -P "$(nproc 2>/dev/null || echo 2)" -I{} "$0" --one "$1" unit 120 {}
    beside_rc=0
    if [ -n "$beside" ]; then
        wait "$beside_pid" || beside_rc=$?
        beside=""
    fi
    for t in $(binaries "$1/tests/unit"); do
        report "$1" unit "$t"
    done
    if [ "$beside_rc" -ne 0 ]; then
        echo "== $1: FAILED: the command run beside the unit tests (exit $beside_rc)"
        return 1
    fi
}

lane() { # lane BUILD PORTS: BUILD's integration binaries one after another, each line as it ends
    [ -z "$2" ] || export PORTICO_TEST_PORTS="$2"
    for t in $(binaries "$1/tests/integration"); do
        run_one "$1" integration 300 "$t"
        cat "$1/test-logs/integration-$(basename "$t").result"
    done
}

# Ports for side-by-side lanes: 6,000 each, below the kernel's ephemeral range. A kernel whose
# ephemeral range starts too low leaves no room: the builds then run one after the other.
port_ranges() { # port_ranges N: N ranges "LOW-HIGH", one a line, or nothing
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
    [ "$1" -gt 1 ] && [ "$low" -gt $((1024 + 6000 * $1)) ] || return 0
    i=0
    while [ "$i" -lt "$1" ]; do
        echo "$((low - 6000 * (i + 1)))-$((low - 6000 * i - 1))"
        i=$((i + 1))
    done
}

integration() { # integration BUILD...: their integration tests, side by side when ports allow
    ranges=$(port_ranges $#)
    if [ -z "$ranges" ]; then
        for build in "$@"; do
            echo "== $build: integration tests"
            lane "$build" ""
        done
    else
        echo "== $*: integration tests, side by side"
        i=1
        for build in "$@"; do
            lane "$build" "$(echo "$ranges" | sed -n "${i}p")" &
            i=$((i + 1))
        done
        wait
    fi
    for build in "$@"; do
        for t in $(binaries "$build/tests/integration"); do
            report "$build" integration "$t" shown
        done
    done
}

stopped=""
if [ "$only" != integration ]; then
    for build in "$@"; do
        units "$build" || { stopped=1; break; }
    done
fi
if [ -z "$stopped" ] && [ "$only" != unit ]; then
    integration "$@"
fi

if [ -n "$failed" ] || [ -n "$stopped" ]; then
    echo "== $*: FAILED:$failed"
    printf '%s' "$why"
    exit 1
fi
echo "== $*: $count test binaries passed"
