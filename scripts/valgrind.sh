#!/bin/sh
# Usage: scripts/valgrind.sh BUILD_DIR TEST_BINARY
# Runs one integration test binary with every Portico it starts under valgrind (memcheck). The
# harness execs $PORTICO_BIN, so PORTICO_BIN is a wrapper that execs valgrind on
# BUILD_DIR/portico (same pid: the harness's SIGTERM and PR_SET_PDEATHSIG reach it). A definite
# leak or an invalid access makes that Portico exit 99, which fails the test's clean-stop check;
# the logs are read too, so nothing is missed where a test does not check the exit code.
# PORTICO_VALGRIND_RUNS names the binary the wrapper runs: a test that upgrades into a copy of
# it (test_upgrade) runs the wrapper on its copy, so that what it does to the copy is what runs.
# A child forked to exec (SIGUSR2's upgrade) is not checked (--child-silent-after-fork): one
# whose exec failed ends with _exit, and memcheck would call "definitely lost" whatever only the
# parent's other threads pointed to. The new process an upgrade execs runs without valgrind.
# Prints one line per Portico process and a total; exits non-zero on any error, any definite
# leak, a failed test, or when no process was checked at all. Logs in BUILD_DIR/valgrind/.
set -eu

cd "$(dirname "$0")/.."
if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR TEST_BINARY" >&2
    exit 2
fi
build=$1
test_bin=$2
command -v valgrind >/dev/null || { echo "valgrind: not installed (scripts/deps.sh)" >&2; exit 1; }
[ -x "$build/portico" ] || { echo "valgrind: no $build/portico" >&2; exit 1; }
[ -x "$test_bin" ] || { echo "valgrind: no $test_bin" >&2; exit 1; }

dir="$PWD/$build/valgrind"
rm -rf "$dir"
mkdir -p "$dir"
cat >"$dir/portico" <<EOF
#!/bin/sh
exec valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \\
    --child-silent-after-fork=yes \\
    --log-file="$dir/vg.%p.log" "\${PORTICO_VALGRIND_RUNS:-$PWD/$build/portico}" "\$@"
EOF
chmod +x "$dir/portico"

name=$(basename "$test_bin")
echo "valgrind: $name with $build/portico under memcheck (log $dir/test.log)"
start=$(date +%s)
status=0
PORTICO_BIN="$dir/portico" PORTICO_VALGRIND_RUNS="$PWD/$build/portico" PORTICO_TEST_START_MS=30000 \
    CMOCKA_MESSAGE_OUTPUT=stdout timeout -k 10 1800 "$test_bin" \
    >"$dir/test.log" 2>&1 || status=$?
echo "valgrind: $name exit $status after $(($(date +%s) - start)) s"

checked=0 unchecked=0 errors=0 lost=0
for log in "$dir"/vg.*.log; do
    [ -f "$log" ] || continue
    pid=${log##*/vg.}
    pid=${pid%.log}
    args=$(sed -n 's/^==[0-9]*== Command: //p' "$log" | head -n 1)
    summary=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr -d ,)
    if [ -z "$summary" ]; then
        # Killed before exit (SIGKILL): valgrind never got to the leak check.
        unchecked=$((unchecked + 1))
        echo "  pid $pid: no summary (killed before exit): ${args#* }"
        continue
    fi
    definite=$(sed -n 's/^==[0-9]*== *definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tr -d ,)
    definite=${definite:-0}
    checked=$((checked + 1))
    errors=$((errors + summary))
    lost=$((lost + definite))
    if [ "$summary" -ne 0 ] || [ "$definite" -ne 0 ]; then
        echo "  pid $pid: $summary errors, $definite bytes definitely lost: ${args#* }"
        sed '1,/Parent PID/d' "$log" | head -n 80 | sed 's/^/    /'
    fi
done
echo "valgrind: $checked processes checked ($unchecked killed before the check):" \
    "$errors errors, $lost bytes definitely lost"

if [ "$status" -ne 0 ]; then
    echo "valgrind: $name failed; its output:" >&2
    tail -n 60 "$dir/test.log" >&2
    exit 1
fi
[ "$checked" -gt 0 ] && [ "$errors" -eq 0 ] && [ "$lost" -eq 0 ]
