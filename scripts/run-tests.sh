#!/bin/sh
# Runs every unit test, then every integration test, of one build directory.
#   scripts/run-tests.sh BUILD_DIR
# Integration tests start BUILD_DIR/portico (PORTICO_BIN). Each binary has a time limit, so a
# hang fails the run instead of stalling it. Output of failing binaries is shown in full.
set -u
build=${1:-build}
export PORTICO_BIN="$PWD/$build/portico"
export CMOCKA_MESSAGE_OUTPUT=stdout
log_dir="$build/test-logs"
mkdir -p "$log_dir"
failed=""
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

run() { # run KIND LIMIT BINARY
    kind=$1 limit=$2 bin=$3
    name=$(basename "$bin")
    count=$((count + 1))
    start=$(date +%s)
    if timeout -k 5 "$limit" "$bin" >"$log_dir/$kind-$name.log" 2>&1; then
        printf '  ok    %-12s %-36s %4ss\n' "$kind" "$name" "$(( $(date +%s) - start ))"
    else
        rc=$?
        printf '  FAIL  %-12s %-36s (exit %s)\n' "$kind" "$name" "$rc"
        show_failure "$log_dir/$kind-$name.log"
        failed="$failed $name"
    fi
}

echo "== $build: unit tests"
for t in "$build"/tests/unit/test_*; do
    case "$t" in *.o|*.d) continue ;; esac
    [ -x "$t" ] && run unit 120 "$t"
done
echo "== $build: integration tests"
for t in "$build"/tests/integration/test_*; do
    case "$t" in *.o|*.d) continue ;; esac
    [ -x "$t" ] && run integration 300 "$t"
done

if [ -n "$failed" ]; then
    echo "== $build: FAILED:$failed"
    exit 1
fi
echo "== $build: $count test binaries passed"
