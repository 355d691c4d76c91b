#!/bin/sh
# tsan.sh — `make tsan`: ThreadSanitizer over Portico's threads. The unit and integration tests
# that run threads together (TSAN_UNIT, TSAN_TESTS), one binary at a time, then
# scripts/tsan-stress.sh. Not part of `make test`: TSan runs 5-15x slower.
#   scripts/tsan.sh BUILD_DIR   (build/tsan, built with SAN=thread)
# TSan's reports, Portico's and the test binaries', go to BUILD_DIR/tsan-logs/NAME.PID
# (log_path), with tests/tsan.supp; a report makes its process exit 66, so the test fails. Each
# test's line says how many reports it left; their summaries follow. Exit 1 on any failure.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build/tsan}
# Either may be set empty (TSAN_UNIT= runs no unit test).
: "${TSAN_UNIT=test_climit test_evmem test_hints test_log test_metrics test_recent test_sim test_ticket
test_wakebox}"
: "${TSAN_TESTS=test_reload test_lifecycle test_admin test_faults_admin test_diag test_balance
test_status_page test_limits test_http2 test_queue test_mirror test_backup test_syslog}"
logs=$dir/tsan-logs
rm -rf "$logs"
mkdir -p "$logs"
export CMOCKA_MESSAGE_OUTPUT=stdout PORTICO_BIN="$PWD/$dir/portico"
failed=""

run() { # run KIND NAME
    bin=$dir/tests/$1/$2
    start=$(date +%s)
    TSAN_OPTIONS="log_path=$PWD/$logs/$2 suppressions=$ROOT/tests/tsan.supp history_size=4 ${TSAN_OPTIONS:-}" \
        timeout -k 5 600 "$bin" >"$logs/$2.log" 2>&1
    rc=$?
    n=$(cat "$logs/$2".[0-9]* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer')
    if [ "$rc" -eq 0 ] && [ "$n" -eq 0 ]; then
        printf '  ok    %-12s %-24s %4ss\n' "$1" "$2" "$(( $(date +%s) - start ))"
        return
    fi
    printf '  FAIL  %-12s %-24s (exit %s, %s TSan reports)\n' "$1" "$2" "$rc" "$n"
    grep -a -E '^\[  FAILED  \] [a-z_0-9]+$|\[  ERROR   \] --- ' "$logs/$2.log" | head -8 |
        sed 's/^/        /'
    cat "$logs/$2".[0-9]* 2>/dev/null | grep '^SUMMARY' | sort | uniq -c | sed 's/^/        /'
    failed="$failed $2"
}

for t in $TSAN_UNIT; do run unit "$t"; done
for t in $TSAN_TESTS; do run integration "$t"; done
echo "== tsan-stress"
TMPDIR=${TMPDIR:-/tmp} "$ROOT/scripts/tsan-stress.sh" "$dir/portico" || failed="$failed tsan-stress"
if [ -n "$failed" ]; then
    echo "== $dir: ThreadSanitizer: FAILED:$failed (reports in $logs)"
    exit 1
fi
echo "== $dir: ThreadSanitizer: no report"
