#!/usr/bin/env bash
# soak.sh — `make soak`: Portico under ten minutes of mixed, misbehaving traffic on loopback,
# then a check that it ends as it began. Not part of `make test`.
#
#   portico   listening in cleartext HTTP/1.1, with TLS (ALPN h2 and http/1.1; a self-signed
#             certificate made with openssl at run time) and h2c; fault rules [fault soak-*]
#   origins   the built-in simulator (healthy, slow, 1xx-heavy, closing, resetting, garbage,
#             half-answering, silent), a loopback port nothing listens on (refused) and a
#             WebSocket echo origin in the soak's process (scripts/soak/tunnel.py)
#   clients   scripts/soak/load.py: keep-alive, connection-per-request, pipelining, 1xx-heavy,
#             slow, vanishing and hostile clients, HEAD, HTTP/1.1 over TLS, fault-shaped
#             requests (rules and the Portico-Fault header), WebSocket tunnels, the admin
#             listener and its fault API; HTTP/2 streams and misbehaving HTTP/2 clients
#             (scripts/soak/h2roles.py, python3-h2); at most SOAK_RATE requests a second from
#             29 threads
#   reloads   a SIGHUP every SOAK_RELOAD seconds, alternating two valid configurations
#   checks    every request answered or accounted for in the access log, nothing unexpected in
#             the error log, RSS at the end at most 10% above RSS after the first minute, the
#             descriptors of the start plus the idle pool and the sockets kept from failed
#             connects, a clean exit (scripts/soak/soak.py)
#
# Environment: SOAK_SECONDS (default 600), SOAK_RATE (requests/s, default 200), SOAK_RELOAD
# (seconds between reloads, default 30), SOAK_SEED (default 1), PORTICO (default
# build/portico), SOAK_KEEP=1 (keep the run directory even when the soak passes),
# SOAK_PORT_BASE (take the loopback ports from there up, not the kernel's choice).
# Output: the summary on stdout and in build/soak/summary.txt (+ a timestamped copy); the run
# directory build/soak/run.* (configurations, logs, records.tsv) is kept when the soak fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/build/soak
SECONDS_TOTAL=${SOAK_SECONDS:-600}
RATE=${SOAK_RATE:-200}
RELOAD=${SOAK_RELOAD:-30}
SEED=${SOAK_SEED:-1}
PORTICO=${PORTICO:-$ROOT/build/portico}

die() { printf 'soak: %s\n' "$*" >&2; exit 2; }

for v in SECONDS_TOTAL RATE RELOAD SEED; do
    case ${!v} in '' | *[!0-9]*) die "$v must be a whole number (got '${!v}')" ;; esac
done
[ "$SECONDS_TOTAL" -ge 10 ] || die "SOAK_SECONDS must be at least 10"
[ -x "$PORTICO" ] || die "$PORTICO not built (run: make soak)"
# The HTTP/2 clients need python3-h2: Debian's python3 has it where another python3 (a venv,
# pyenv) may come first in PATH.
PYTHON=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import h2' 2>/dev/null; then PYTHON=$p; break; fi
done
[ -n "$PYTHON" ] || die "python3 with the h2 module is missing (Debian: apt-get install python3-h2)"
command -v openssl >/dev/null || die "openssl is missing (Debian: apt-get install openssl)"

mkdir -p "$OUT/history"
RUN=$(mktemp -d "$OUT/run.XXXXXX")
status=0
"$PYTHON" -B "$ROOT/scripts/soak/soak.py" --portico "$PORTICO" --dir "$RUN" \
    --seconds "$SECONDS_TOTAL" --rate "$RATE" --reload "$RELOAD" --seed "$SEED" || status=$?

if [ -f "$RUN/summary.txt" ]; then
    cp "$RUN/summary.txt" "$OUT/summary.txt"
    cp "$RUN/summary.txt" "$OUT/history/summary-$(date +%Y%m%d-%H%M%S).txt"
fi
if [ "$status" -eq 0 ] && [ "${SOAK_KEEP:-}" != 1 ]; then
    rm -rf "$RUN" # the access log of a full soak is some 80 MB
else
    printf 'soak: run directory kept: %s\n' "$RUN"
fi
exit "$status"
