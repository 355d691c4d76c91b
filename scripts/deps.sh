#!/bin/sh
# Installs the Debian packages Portico needs to build and test; `scripts/deps.sh bench` also
# those `make bench` needs (make test does not: CI need not install the peers and perf).
# Quick when all are present: it asks dpkg first and calls apt-get only for what is missing.
set -eu

# systemd (systemd-analyze) and man-db (man, for the unit's Documentation=) verify the unit;
# python3 runs make check-layers and the tests' scripts (python3-h2 would bring it anyway).
PACKAGES="build-essential pkg-config libevent-dev libssl-dev libinih-dev libcmocka-dev \
libnghttp2-dev curl openssl clang libclang-rt-14-dev valgrind systemd man-db chromium \
nghttp2-client python3 python3-h2"
# make bench (scripts/bench.sh): the peers and the origin (nginx, haproxy), the load generators
# (wrk; h2load is in nghttp2-client), system call counting (linux-perf, strace as the fallback),
# CPU pinning (taskset, in util-linux).
BENCH_PACKAGES="nginx haproxy wrk linux-perf strace python3 util-linux"

missing=""
[ "${1:-}" = bench ] || BENCH_PACKAGES=""
for p in $PACKAGES $BENCH_PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# nginx and haproxy start their system services on install unless policy-rc.d says no (exit
# 101): say no for the length of the install when no policy is in place. The bench never uses
# those services; it runs its own instances on loopback.
POLICY=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    POLICY=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update -qq >/dev/null || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
