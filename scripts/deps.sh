#!/bin/sh
# Installs the Debian packages Portico needs to build and test. Quick when all are present:
# it asks dpkg first and calls apt-get only for what is missing.
set -eu

# systemd (systemd-analyze) and man-db (man, for the unit's Documentation=) verify the unit.
PACKAGES="build-essential pkg-config libevent-dev libssl-dev libinih-dev libcmocka-dev \
libnghttp2-dev curl openssl clang libclang-rt-14-dev valgrind systemd man-db chromium \
nghttp2-client python3-h2"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
