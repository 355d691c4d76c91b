#!/usr/bin/env bash
# tsan-stress.sh — the ThreadSanitizer build's threads all busy at once, for a bounded time:
# load through the workers (wrk, or a curl loop), /metrics and /status scraped, fault rules
# added, changed and deleted through the admin API, TLS connections resuming sessions
# (tickets), SIGHUP reloads and SIGUSR1 log reopens, and systemd's watchdog on (a notify socket
# of the script's), all together. Not part of `make test`; see README's Tests (`make tsan`).
#
#   make -j2 BUILD=build/tsan SAN=thread build/tsan/portico
#   scripts/tsan-stress.sh [build/tsan/portico]
#
# Environment: STRESS_SECONDS (default 20), STRESS_WORKERS (default 3), STRESS_PORT (the proxy's
# port; the admin's is the next, TLS's the one after; default 18700), TMPDIR. The origin is the
# built-in simulator (its own thread, on a port of the kernel's on 127.0.0.1). TSan's reports go
# to $DIR/tsan.PID (TSAN_OPTIONS log_path, with tests/tsan.supp); the script prints their
# summaries and exits 1 when there is one.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORTICO=${1:-$ROOT/build/tsan/portico}
SECS=${STRESS_SECONDS:-20}
WORKERS=${STRESS_WORKERS:-3}
PORT=${STRESS_PORT:-18700}
ADMIN=$((PORT + 1))
TLS=$((PORT + 2))
[ -x "$PORTICO" ] || { echo "tsan-stress: $PORTICO not built" >&2; exit 2; }
DIR=$(mktemp -d "${TMPDIR:-/tmp}/tsan-stress.XXXXXX")
URL=http://127.0.0.1:$PORT
AURL=http://127.0.0.1:$ADMIN

# A self-signed certificate for the TLS listener: its session tickets (one key ring for every
# generation and worker) are made and read by the workers at once, across the reloads.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -keyout "$DIR/key.pem" \
    -out "$DIR/cert.pem" >/dev/null 2>&1 || { echo "tsan-stress: openssl req failed" >&2; exit 2; }

# Two configurations a reload alternates between: worker count and a rule differ.
write_conf() { # write_conf FILE WORKERS PROBABILITY
    cat >"$1" <<EOF
[proxy]
listen = 127.0.0.1:$PORT
listen = 127.0.0.1:$TLS tls
tls_cert = $DIR/cert.pem
tls_key = $DIR/key.pem
workers = $2
admin_listen = 127.0.0.1:$ADMIN
access_log = $DIR/access.log
error_log = $DIR/error.log
shutdown_timeout = 2s
[upstream sim]
origin = sim
[route sim]
prefix = /
upstream = sim
[faults]
header_control = on
[fault ini-flaky]
prefix = /status/200
probability = $3
status = 503
EOF
}
write_conf "$DIR/a.ini" "$WORKERS" 0.1
write_conf "$DIR/b.ini" $((WORKERS > 2 ? WORKERS - 1 : WORKERS + 1)) 0.3
cp "$DIR/a.ini" "$DIR/portico.ini"

# systemd's watchdog, so that the workers stamp their beats and the main thread reads them
# (watchdog.h): a notify socket that counts the WATCHDOG=1 it gets, for a bounded time.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(0.5)
end, n = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    try:
        n += s.recv(4096).count(b"WATCHDOG=1")
    except socket.timeout:
        pass
    open(sys.argv[3], "w").write(str(n))
' "$DIR/notify" $((SECS + 30)) "$DIR/n.watchdog" &
NOTIFY=$!
for _ in $(seq 50); do [ -S "$DIR/notify" ] && break; sleep 0.1; done

supp=$ROOT/tests/tsan.supp
export TSAN_OPTIONS="log_path=$DIR/tsan suppressions=$supp history_size=4 ${TSAN_OPTIONS:-}"
NOTIFY_SOCKET=$DIR/notify WATCHDOG_USEC=1000000 \
    "$PORTICO" -c "$DIR/portico.ini" >"$DIR/stdout.log" 2>"$DIR/stderr.log" &
PID=$!
PIDS=($NOTIFY)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    kill "$PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do # up to 10 s: TSan's start is slow
    kill -0 "$PID" 2>/dev/null || break
    curl -s -o /dev/null -m 1 "$AURL/healthz" && break
    sleep 0.1
done
# Ours, not another process on a busy port (STRESS_PORT): then ours has exited.
kill -0 "$PID" 2>/dev/null && curl -sf -o /dev/null -m 2 "$AURL/healthz" ||
    { echo "tsan-stress: Portico did not start (ports $PORT-$TLS: STRESS_PORT moves them)" >&2;
      tail -n 5 "$DIR/error.log" "$DIR/stderr.log" >&2; exit 2; }
END=$(($(date +%s) + SECS))
alive() { [ "$(date +%s)" -lt "$END" ]; }

# Load: wrk when installed, else curl; bounded by the clock and a count.
if command -v wrk >/dev/null; then
    wrk -t2 -c16 -d"${SECS}s" "$URL/status/200" >"$DIR/wrk.log" 2>&1 &
    PIDS+=($!)
fi
# Each loop's stdout is dropped (curl's -o names the first URL's output only) and its count of
# rounds is left in a file, for the summary.
(n=0; while alive && [ $n -lt 5000 ]; do
     curl -s -m 5 "$URL/status/200" "$URL/bytes/20000" "$URL/reset" "$URL/close" \
          -H 'Portico-Fault: probability=0.5; status=429' || true
     n=$((n + 4)); echo $n >"$DIR/n.curl"; done) >/dev/null &
PIDS+=($!)
# TLS: four connections an invocation (HTTP/1.1, each closed: over h2 curl would multiplex them
# on one), the last three resuming the session before them by its ticket (curl -v: "SSL
# re-using session ID"), whichever worker and generation made it; TLS 1.2 and 1.3 in turn.
(n=0; while alive && [ $n -lt 2000 ]; do
     curl -sk -m 5 --http1.1 --tls-max 1.$((2 + n / 4 % 2)) -H 'Connection: close' \
          "https://127.0.0.1:$TLS/status/200" "https://127.0.0.1:$TLS/bytes/100" \
          "https://127.0.0.1:$TLS/status/204" "https://127.0.0.1:$TLS/status/200" || true
     n=$((n + 4)); echo $n >"$DIR/n.tls"; done) >/dev/null &
PIDS+=($!)
# And HTTP/2 over TLS: the streams of one connection.
(n=0; while alive && [ $n -lt 2000 ]; do
     curl -sk -m 5 "https://127.0.0.1:$TLS/status/200" "https://127.0.0.1:$TLS/bytes/30000" \
          "https://127.0.0.1:$TLS/reset" || true
     n=$((n + 3)); done) >/dev/null &
PIDS+=($!)
# Scrapes of /metrics and /status.
(n=0; while alive && [ $n -lt 2000 ]; do
     curl -s -m 5 "$AURL/metrics" "$AURL/status" "$AURL/faults" || true
     n=$((n + 1)); echo $n >"$DIR/n.scrapes"; done) >/dev/null &
PIDS+=($!)
# Fault rules: added, changed, deleted.
(n=0; while alive && [ $n -lt 2000 ]; do
     curl -s -o /dev/null -m 5 -d name=rt$((n % 3)) -d prefix=/bytes -d status=502 \
          -d probability=0.5 "$AURL/faults" || true
     curl -s -o /dev/null -m 5 -d enabled=$((n % 2)) -d probability=0.$((n % 10)) \
          "$AURL/faults/ini-flaky" || true
     curl -s -o /dev/null -m 5 -d enabled=1 -d for=1s "$AURL/faults/rt$((n % 3))" || true
     curl -s -o /dev/null -m 5 -X DELETE "$AURL/faults/rt$(((n + 1) % 3))" || true
     n=$((n + 1)); echo $n >"$DIR/n.faults"; done) >/dev/null &
PIDS+=($!)
# Reloads: a SIGHUP every 1.5 s, alternating the two files, a SIGUSR1 (logs reopened) between.
reloads=0
while alive; do
    sleep 0.75
    kill -USR1 "$PID"
    sleep 0.75
    if [ $((reloads % 2)) -eq 0 ]; then cp "$DIR/b.ini" "$DIR/portico.ini"
    else cp "$DIR/a.ini" "$DIR/portico.ini"; fi
    kill -HUP "$PID"
    reloads=$((reloads + 1))
done
for p in "${PIDS[@]:1}"; do wait "$p" 2>/dev/null || true; done
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
kill "$NOTIFY" 2>/dev/null || true
PIDS=()
trap - EXIT

requests=$(wc -l <"$DIR/access.log")
count() { cat "$DIR/n.$1" 2>/dev/null || echo 0; }
echo "tsan-stress: $reloads reloads, $requests requests logged, $(count scrapes) scrapes of" \
     "/metrics+/status+/faults, $(count tls) TLS requests, $(count faults) rounds of 4" \
     "fault-rule changes," \
     "$(count watchdog) WATCHDOG=1, exit $rc; run in $DIR"
[ -f "$DIR/wrk.log" ] && grep -E 'requests in|Non-2xx' "$DIR/wrk.log" | sed 's/^/  wrk: /'
if ls "$DIR"/tsan.* >/dev/null 2>&1; then
    grep -h '^SUMMARY' "$DIR"/tsan.* | sort | uniq -c | sort -rn
    echo "tsan-stress: ThreadSanitizer reports in $DIR/tsan.*"
    exit 1
fi
echo "tsan-stress: no ThreadSanitizer report"
