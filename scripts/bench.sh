#!/usr/bin/env bash
# bench.sh — `make bench`: a reproducible loopback benchmark of Portico against nginx and HAProxy.
#
#   origin   one nginx worker serving /small (13 B), /100k, /1m and /err/ (static 502); CPU 1
#   proxies  Portico, nginx (proxy_buffering on, its default), nginx with proxy_buffering off,
#            HAProxy: each ONE worker/thread, no logging, keep-alive pool of 64 to the origin;
#            all pinned to CPU 0, each the only one loaded while it is measured
#   client   wrk -t1, pinned to CPU 1 with the origin
#
# Scenarios: 1 small responses / 50 conns, 2 1 MiB / 10 conns, 2b 100 KiB / 50 conns,
# 3 Connection: close / 50 conns, 4 refused origin (502) / 50 conns, 5 RSS with 1000 idle
# keep-alive clients and peak RSS during scenario 2, 6 the cost of the JSON access log (Portico
# with access_log = off against a second Portico writing the JSON log to a file, interleaved
# BENCH_LOG_ROUNDS times, default 3), 7 HTTP/2: h2load against Portico and HAProxy terminating
# TLS (ALPN h2), HTTP/1.1 to the same origin. See docs/BENCHMARKS.md.
#
# Environment: BENCH_SECONDS (per load run, default 10), BENCH_WARMUP (default 2),
# PORTICO (binary, default build/portico), BENCH_KEEP=1 (keep the run directory),
# BENCH_RETRIES (default 3: how many runs disturbed by other processes may be repeated once),
# BENCH_ONLY=log (scenario 6 alone).
# Output: tables on stdout and in build/bench/results.md (+ a timestamped copy).
#
# Everything runs on 127.0.0.1; every server is a foreground child of this script with its own
# config and pid file under build/bench/run.*; the trap stops all of them on any exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/scripts/bench
OUT=$ROOT/build/bench
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-2}
PORTICO=${PORTICO:-$ROOT/build/portico}
IDLE_CONNS=1000
PROXY_CPU=0
LOAD_CPU=1

# Messages go to fd 3, the script's stderr, even from a trap run inside a redirection.
exec 3>&2
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "error: $*"; exit 1; }

case $SECONDS_PER_RUN in '' | *[!0-9]*) die "BENCH_SECONDS must be a whole number" ;; esac
case $WARMUP in '' | *[!0-9]*) die "BENCH_WARMUP must be a whole number" ;; esac
[ "$SECONDS_PER_RUN" -ge 1 ] || die "BENCH_SECONDS must be at least 1"
[ -x "$PORTICO" ] || die "$PORTICO not built (run: make bench)"

# ---------------------------------------------------------------------------------------------
# Benchmark-only packages: asked of dpkg first, apt-get only for what is missing. The services
# these packages bring are never started by this script (and are not needed).
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
nginx_ok=""
for p in nginx-light nginx nginx-core nginx-full nginx-extras; do
    installed "$p" && nginx_ok=1
done
[ -n "$nginx_ok" ] || missing="$missing nginx-light"
for p in haproxy wrk python3 curl util-linux nghttp2-client openssl; do
    installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    log "installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # nginx and haproxy start their system services on install unless policy-rc.d says no
    # (exit 101): say no for the length of the install, if no policy is in place already.
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
    if [ -n "$POLICY" ]; then
        $SUDO rm -f "$POLICY"
        trap - EXIT
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
for b in "$NGINX" "$HAPROXY" wrk python3 curl taskset h2load openssl; do
    command -v "$b" >/dev/null || die "$b not found"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (proxies on CPU 0, origin and wrk on CPU 1)"

# ---------------------------------------------------------------------------------------------
# Run directory, processes and the trap.
mkdir -p "$OUT"
rm -rf "$OUT"/run.* "$OUT"/*-died-*.log 2>/dev/null || true
RUN=$(mktemp -d "$OUT/run.XXXXXX")
declare -A PID=()      # server name -> pid we started (nginx: its master)
declare -A MPID=()     # server name -> pid of the process serving traffic (nginx: its worker)
declare -A PORT=()
HELPER_PID=""
WRK_PID=""
OK=""

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$HELPER_PID" ] && stop_pid "$HELPER_PID"
    [ -n "$WRK_PID" ] && stop_pid "$WRK_PID"
    local name
    for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
    for name in "${!MPID[@]}"; do stop_pid "${MPID[$name]}"; done   # nginx workers, if orphaned
    wait 2>/dev/null || true
    if [ -z "$OK" ] || [ -n "${BENCH_KEEP:-}" ] || [ -s "${PROBLEMS:-/dev/null}" ]; then
        log "run directory kept: $RUN"
    else
        rm -rf "$RUN"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# Free loopback ports, chosen once: origin, 4 proxies, Portico's admin, one left closed, the
# logging Portico of scenario 6, and the TLS (HTTP/2) listeners of Portico and HAProxy (7).
read -r P_ORIGIN P_PORTICO P_NGINX P_NGINXNB P_HAPROXY P_ADMIN P_REFUSED P_PORTICO_LOG \
    P_PORTICO_H2 P_HAPROXY_H2 < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(10):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
PORT[origin]=$P_ORIGIN PORT[portico]=$P_PORTICO PORT[nginx]=$P_NGINX
PORT[nginx-nobuf]=$P_NGINXNB PORT[haproxy]=$P_HAPROXY PORT[portico-log]=$P_PORTICO_LOG
declare -A H2PORT=([portico]=$P_PORTICO_H2 [haproxy]=$P_HAPROXY_H2)

# Config files from the templates in scripts/bench/.
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"   # workers must read $RUN and write temp files
render() { # template out name port [buffering]
    sed -e "s|@DIR@|$RUN|g" -e "s|@USER@|$USER_LINE|g" -e "s|@NAME@|$3|g" -e "s|@PORT@|$4|g" \
        -e "s|@ORIGIN_PORT@|$P_ORIGIN|g" -e "s|@REFUSED_PORT@|$P_REFUSED|g" \
        -e "s|@ADMIN_PORT@|$P_ADMIN|g" -e "s|@BUFFERING@|${5:-on}|g" \
        -e "s|@H2_PORT@|${H2PORT[$3]:-0}|g" "$HERE/$1" >"$RUN/$2"
}
# The certificate both TLS listeners of scenario 6 present (HAProxy wants it with its key).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$RUN/bench.key" \
    -out "$RUN/bench.crt" 2>/dev/null || die "openssl cannot make the bench certificate"
cat "$RUN/bench.crt" "$RUN/bench.key" >"$RUN/bench.pem"
mkdir -p "$RUN/www" "$RUN/tmp"
head -c 1048576 /dev/urandom >"$RUN/www/1m"
head -c 102400 /dev/urandom >"$RUN/www/100k"
chmod -R a+rX "$RUN"
render origin-nginx.conf origin.conf origin "$P_ORIGIN"
render nginx.conf nginx.conf nginx "$P_NGINX" on
render nginx.conf nginx-nobuf.conf nginx-nobuf "$P_NGINXNB" off
render haproxy.cfg haproxy.cfg haproxy "$P_HAPROXY"
render portico.ini portico.ini portico "$P_PORTICO"
# Scenario 6's Portico: the same, writing the JSON access log to a file (no admin listener).
render portico.ini portico-log.ini portico-log "$P_PORTICO_LOG"
sed -i -e "s|^access_log = off|access_log = $RUN/access.log\naccess_log_format = json|" \
    -e '/^admin_listen/d' -e '/^listen = .* tls/d' -e '/^tls_/d' "$RUN/portico-log.ini"

# 1000 idle clients need fds in every server (and in the helper).
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

children_of() { # pid -> the pids whose parent it is
    local parent=$1 f line rest
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        rest=${line##*) }
        # shellcheck disable=SC2086
        set -- $rest
        [ "$2" = "$parent" ] && echo "${f//[!0-9]/}"
    done
    return 0
}

wait_listening() { # name port
    for _ in $(seq 100); do
        kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$RUN/$1.out" >&2; die "$1 exited at start"; }
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$2),0.2).close()" \
            2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    die "$1 does not listen on 127.0.0.1:$2"
}

start() { # name
    local name=$1 cpu=$PROXY_CPU
    [ "$name" = origin ] && cpu=$LOAD_CPU
    case $name in
        origin | nginx | nginx-nobuf)
            taskset -c "$cpu" "$NGINX" -p "$RUN" -e "$RUN/$name-error.log" -c "$RUN/$name.conf" \
                >"$RUN/$name.out" 2>&1 &
            ;;
        haproxy)
            taskset -c "$cpu" "$HAPROXY" -db -f "$RUN/haproxy.cfg" -p "$RUN/haproxy.pid" \
                >"$RUN/$name.out" 2>&1 &
            ;;
        portico | portico-log)
            taskset -c "$cpu" "$PORTICO" -c "$RUN/$name.ini" >"$RUN/$name.out" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    wait_listening "$name" "${PORT[$name]}"
    MPID[$name]=${PID[$name]}
    case $name in
        origin | nginx | nginx-nobuf)
            local w=""
            for _ in $(seq 50); do
                w=$(children_of "${PID[$name]}" | head -n 1)
                [ -n "$w" ] && break
                sleep 0.05
            done
            [ -n "$w" ] || die "$name: no worker process"
            MPID[$name]=$w
            ;;
    esac
}

PROBLEMS=$RUN/problems.txt
: >"$PROBLEMS"
problem() { log "PROBLEM: $*"; printf '%s\n' "$*" >>"$PROBLEMS"; }
: >"$RUN/warnings.txt"
warn() { log "warning: $*"; printf '%s\n' "$*" >>"$RUN/warnings.txt"; }

# A server that died is a finding (Portico) or a bench bug (the others); Portico is restarted
# so that the remaining scenarios still run.
check_alive() { # scenario
    local name rc
    for name in "${!PID[@]}"; do
        if ! kill -0 "${PID[$name]}" 2>/dev/null || ! kill -0 "${MPID[$name]}" 2>/dev/null; then
            rc=0
            wait "${PID[$name]}" 2>/dev/null || rc=$?
            cp "$RUN/$name.out" "$OUT/$name-died-$1.log" 2>/dev/null || true
            problem "$name died during scenario $1 (exit status $rc$([ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")); its output: build/bench/$name-died-$1.log"
            if [ "$name" != portico ]; then
                cp "$RUN/$name-error.log" "$OUT/$name-died-$1.error.log" 2>/dev/null || true
                die "$name died: killed from outside (its error log names the sender of a SIGTERM) or the set-up is broken"
            fi
            start portico
        fi
    done
}

cpu_ticks() { # pid -> utime+stime of the whole process (all threads), in clock ticks
    local line rest
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
    rest=${line##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $((${12} + ${13}))
}
# user+nice+system ticks of the whole machine; less our three processes, it is what others
# ran during a load run (softirq/irq time, not charged to any process here, is left out).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4; exit}' /proc/stat; }
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Start everything, then record what this run is.
log "run directory $RUN; ports: origin $P_ORIGIN, portico $P_PORTICO, nginx $P_NGINX," \
    "nginx-nobuf $P_NGINXNB, haproxy $P_HAPROXY, refused $P_REFUSED"
"$PORTICO" -t -c "$RUN/portico.ini" >/dev/null || die "Portico rejects $RUN/portico.ini"
"$NGINX" -t -q -p "$RUN" -e "$RUN/nginx-t.log" -c "$RUN/nginx.conf" || die "nginx config"
"$HAPROXY" -c -q -f "$RUN/haproxy.cfg" || die "haproxy config"
for s in origin portico portico-log nginx nginx-nobuf haproxy; do start "$s"; done

git_desc=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no -- proxy include 2>/dev/null)" ]; then
    git_desc="$git_desc + uncommitted changes in proxy/ or include/"
fi
{
    printf 'key\tvalue\n'
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'host\t%s\n' "$(hostname)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'cpu\t%s\n' "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
    printf 'ncpu\t%s\n' "$(nproc)"
    printf 'portico\t%s\n' "$("$PORTICO" --version | awk '{print $2}')"
    printf 'git\t%s\n' "$git_desc"
    printf 'nginx\tnginx %s\n' "$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')"
    printf 'haproxy\tHAProxy %s\n' "$("$HAPROXY" -v | awk 'NR==1 {print $3}')"
    printf 'wrk\twrk %s\n' "$(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?')"
    printf 'seconds\t%s\n' "$SECONDS_PER_RUN"
} >"$RUN/meta.tsv"

# ---------------------------------------------------------------------------------------------
# Checks: every server answers each path as expected before any load.
printf 'target\tpath\tstatus\tsize\tnote\n' >"$RUN/checks.tsv"
check() { # name path want_status [want_size]
    local name=$1 path=$2 want=$3 size=${4:-} url out code got note=""
    url="http://127.0.0.1:${PORT[$name]}$path"
    out=$(curl -s -o /dev/null -D "$RUN/check.h" -w '%{http_code} %{size_download}' \
        --max-time 5 "$url" || true)
    code=${out% *} got=${out#* }
    if [ "$path" = /err/x ]; then
        # Does the server keep the client connection after the error? (it matters to scenario 4)
        local conns
        conns=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' --max-time 5 "$url" "$url" || true)
        case $conns in
            "1 0 ") note="keeps the connection after it" ;;
            *) note="closes the connection after it" ;;
        esac
        note="$note; $(grep -i '^content-type:' "$RUN/check.h" | tr -d '\r' | head -n 1)"
        [ "$name" = portico ] && note="$note; $(grep -i '^portico-error:' "$RUN/check.h" | tr -d '\r')"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$code" "$got" "$note" >>"$RUN/checks.tsv"
    if [ "$code" != "$want" ] || { [ -n "$size" ] && [ "$got" != "$size" ]; }; then
        problem "$name: GET $path answered $code with $got body bytes, expected $want${size:+ with $size} (reproduce: curl -v $url)"
        [ "$name" = portico ] || die "$name misconfigured"
    fi
}
for s in origin portico nginx nginx-nobuf haproxy; do
    check "$s" /small 200 13
    [ "$s" = portico ] && check portico-log /small 200 13
    check "$s" /100k 200 102400
    check "$s" /1m 200 1048576
    case $s in
        haproxy) check "$s" /err/x 503 ;;
        nginx-nobuf) ;;
        *) check "$s" /err/x 502 ;;
    esac
done

# Body integrity: wrk counts bytes but never looks at them. 20 concurrent transfers per proxy
# (10 of /1m, 10 of /100k, 4 at once) must each equal the origin's file. Before the load and
# again after scenario 2b.
sum_1m=$(sha256sum <"$RUN/www/1m" | cut -d' ' -f1)
sum_100k=$(sha256sum <"$RUN/www/100k" | cut -d' ' -f1)
integrity() { # when
    local s i bad args
    for s in portico nginx nginx-nobuf haproxy; do
        mkdir -p "$RUN/integrity/$s"
        args=()
        for i in $(seq 10); do
            args+=(-o "$RUN/integrity/$s/1m.$i" "http://127.0.0.1:${PORT[$s]}/1m")
            args+=(-o "$RUN/integrity/$s/100k.$i" "http://127.0.0.1:${PORT[$s]}/100k")
        done
        rm -f "$RUN/integrity/$s"/*
        curl -s --parallel --parallel-max 4 --max-time 20 "${args[@]}" || true
        bad=0
        for i in $(seq 10); do
            [ "$(sha256sum <"$RUN/integrity/$s/1m.$i" 2>/dev/null | cut -d' ' -f1)" = "$sum_1m" ] ||
                bad=$((bad + 1))
            [ "$(sha256sum <"$RUN/integrity/$s/100k.$i" 2>/dev/null | cut -d' ' -f1)" = "$sum_100k" ] ||
                bad=$((bad + 1))
        done
        printf '%s\t%s\t%s\t%s\t%s\n' "$s" "/1m and /100k, 10 each, 4 at once ($1)" "-" "-" \
            "bodies identical to the origin's files: $((20 - bad))/20" >>"$RUN/checks.tsv"
        if [ "$bad" -eq 0 ]; then
            rm -rf "$RUN/integrity/$s"
        else
            problem "$s ($1): $bad of 20 concurrent bodies differ from the origin's files (kept in $RUN/integrity/$s; reproduce: curl -s http://127.0.0.1:${PORT[$s]}/1m | sha256sum)"
            [ "$s" = portico ] || die "$s returns corrupt bodies: set-up broken"
        fi
    done
}
integrity "before the load"

# ---------------------------------------------------------------------------------------------
# Portico's counters, scraped between scenarios (its admin listener is idle during load).
printf 'scenario\tcounter\tdelta\n' >"$RUN/counters.tsv"
COUNTERS="portico_requests_total portico_client_connections_total portico_upstream_connects_total
portico_upstream_reused_total portico_upstream_retries_total portico_responses_aborted_total
portico_client_aborts_total"
scrape() { curl -s --max-time 5 "http://127.0.0.1:$P_ADMIN/metrics" >"$RUN/metrics.$1" || true; }
counter() { # file name -> value (sum over labels)
    awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f", s}' "$1" 2>/dev/null
}
counters_delta() { # scenario
    scrape now
    local c
    for c in $COUNTERS; do
        printf '%s\t%s\t%s\n' "$1" "$c" \
            $(($(counter "$RUN/metrics.now" "$c") - $(counter "$RUN/metrics.prev" "$c"))) \
            >>"$RUN/counters.tsv"
    done
    # Failures by type and responses by status class, only those that moved.
    awk '/^portico_(upstream_failures_total|responses_total)\{/ {print $1, $2}' "$RUN/metrics.prev" \
        >"$RUN/m.prev" 2>/dev/null || true
    awk '/^portico_(upstream_failures_total|responses_total)\{/ {print $1, $2}' "$RUN/metrics.now" \
        >"$RUN/m.now" 2>/dev/null || true
    awk -v s="$1" 'NR == FNR {p[$1] = $2; next} $2 - p[$1] > 0 {
        n = $1; gsub(/"/, "", n); printf "%s\t%s\t%.0f\n", s, n, $2 - p[$1] }' \
        "$RUN/m.prev" "$RUN/m.now" >>"$RUN/counters.tsv"
    mv "$RUN/metrics.now" "$RUN/metrics.prev"
}
scrape prev

# ---------------------------------------------------------------------------------------------
# One load run: wrk on CPU 1; CPU time of the proxy, of the origin and of wrk over the run.
printf 'scenario\ttarget\trequests\tduration_us\tbytes\terr_connect\terr_read\terr_write\terr_status\terr_timeout\tp50_us\tp99_us\tmax_us\tproxy_cpu\torigin_cpu\twrk_cpu\tother_cpu\n' \
    >"$RUN/runs.tsv"
# wrk runs in the background and the script waits for it: a trap interrupts `wait` at once,
# while a foreground wrk would swallow Ctrl-C (it stops cleanly on SIGINT, so bash ignores it).
# Its CPU time is the change in this shell's reaped-children times (`times`, second line).
children_secs() { # run in this shell, not in $(...): a subshell has no reaped children yet
    times >"$RUN/times"
    awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$RUN/times"
}
wrk_run() { # duration conns url [wrk args...] -> wrk output in $RUN/wrk.out, CPU s in $RUN/wrk.time
    local d=$1 c=$2 url=$3 rc=0
    shift 3
    children_secs >"$RUN/t0"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${d}s" --timeout 5s --latency \
        -s "$HERE/report.lua" "$@" "$url" >"$RUN/wrk.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    children_secs >"$RUN/t1"
    awk 'NR == FNR {a = $1; next} {printf "%.3f 0\n", $1 - a}' "$RUN/t0" "$RUN/t1" >"$RUN/wrk.time"
    return "$rc"
}
measure_once() { # scenario name path conns [wrk args...] -> one row in $RUN/row.tsv
    local scen=$1 name=$2 path=$3 conns=$4
    shift 4
    local url="http://127.0.0.1:${PORT[$name]}$path" p0 o0 p1 o1 m0 m1 line
    p0=$(cpu_ticks "${MPID[$name]}") o0=$(cpu_ticks "${MPID[origin]}") m0=$(machine_ticks)
    if ! wrk_run "$SECONDS_PER_RUN" "$conns" "$url" "$@"; then
        problem "$scen $name: wrk failed: $(tail -n 3 "$RUN/wrk.out" | tr '\n' ' ')"
    fi
    p1=$(cpu_ticks "${MPID[$name]}") o1=$(cpu_ticks "${MPID[origin]}") m1=$(machine_ticks)
    [ "$name" = origin ] && p1=$p0   # the origin is counted once, as the origin
    cp "$RUN/wrk.out" "$RUN/wrk.$scen.$name.out"
    line=$(grep '^BENCH ' "$RUN/wrk.out" || true)
    : >"$RUN/row.tsv"
    if [ -z "$line" ]; then
        problem "$scen $name: no result from wrk (see $RUN/wrk.$scen.$name.out)"
        check_alive "$scen"
        return 0
    fi
    local kv requests duration_us bytes err_connect err_read err_write err_status err_timeout \
        p50_us p99_us max_us wu ws
    for kv in ${line#BENCH }; do
        case $kv in [a-z]*=[0-9]*) local "$kv" ;; esac
    done
    read -r wu ws <"$RUN/wrk.time"
    # wrk hands Lua a byte count clipped at 2^31-1: past that, take its text ("21.87GB read",
    # binary units, 4 significant digits).
    if [ "$bytes" -ge 2147483647 ]; then
        bytes=$(awk '/ read$/ {
            v = $(NF - 1); u = v; sub(/[0-9.]+/, "", u); sub(/[KMGT]?B$/, "", v); m = 1
            if (u == "KB") m = 1024; else if (u == "MB") m = 1048576
            else if (u == "GB") m = 1073741824; else if (u == "TB") m = 1099511627776
            printf "%.0f", v * m }' "$RUN/wrk.out")
    fi
    awk -v s="$scen" -v t="$name" -v r="$requests" -v d="$duration_us" -v b="$bytes" \
        -v ec="$err_connect" -v er="$err_read" -v ew="$err_write" -v es="$err_status" \
        -v et="$err_timeout" -v p50="$p50_us" -v p99="$p99_us" -v mx="$max_us" \
        -v pc=$((p1 - p0)) -v oc=$((o1 - o0)) -v mc=$((m1 - m0)) -v wu="$wu" -v ws="$ws" \
        -v hz="$HZ" 'BEGIN {
        secs = d / 1e6
        other = (mc - pc - oc) / hz - (wu + ws)
        if (other < 0) other = 0
        printf "%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\n",
            s, t, r, d, b, ec, er, ew, es, et, p50, p99, mx, pc / hz / secs * 100,
            oc / hz / secs * 100, (wu + ws) / secs * 100, other / secs * 100 }' >"$RUN/row.tsv"
    log "$(printf '%-4s %-12s %8.0f req/s %8.1f MB/s  p50 %6.2f ms  p99 %7.2f ms  errors c%s r%s w%s t%s status%s  others %s%%' \
        "$scen" "$name" "$(echo "$requests $duration_us" | awk '{print $1 / ($2 / 1e6)}')" \
        "$(echo "$bytes $duration_us" | awk '{print $1 / ($2 / 1e6) / 1e6}')" \
        "$(echo "$p50_us" | awk '{print $1 / 1000}')" "$(echo "$p99_us" | awk '{print $1 / 1000}')" \
        "$err_connect" "$err_read" "$err_write" "$err_timeout" "$err_status" \
        "$(cut -f 17 "$RUN/row.tsv")")"
    local sock=$((err_connect + err_read + err_write + err_timeout))
    if [ "$name" = portico ]; then
        local repro
        repro="taskset -c $LOAD_CPU wrk -t1 -c$conns -d${SECONDS_PER_RUN}s $(printf '%q ' "$@")$url"
        [ "$sock" -eq 0 ] || problem "$scen portico: wrk socket errors: connect $err_connect, read $err_read, write $err_write, timeout $err_timeout of $requests requests (reproduce: $repro)"
        if [ "$scen" = s4 ]; then
            [ "$err_status" -eq "$requests" ] || problem "$scen portico: $((requests - err_status)) of $requests responses were not errors"
        else
            [ "$err_status" -eq 0 ] || problem "$scen portico: $err_status non-2xx responses of $requests (reproduce: $repro)"
        fi
    elif [ "$sock" -ne 0 ] || { [ "$scen" != s4 ] && [ "$err_status" -ne 0 ]; }; then
        problem "$scen $name (reference): socket errors $sock, non-2xx $err_status of $requests"
    fi
    check_alive "$scen"
}

# A run during which other processes used more than DISTURBED% of a CPU is repeated once, while
# the budget of BENCH_RETRIES repeats lasts; the less disturbed of the two is kept.
RETRIES=${BENCH_RETRIES:-3}
DISTURBED=10
others_of() { cut -f 17 "$1" 2>/dev/null || echo 0; }
is_disturbed() { awk -v o="$(others_of "$1")" -v d="$DISTURBED" 'BEGIN {exit !(o > d)}'; }
measure() { # scenario name path conns [wrk args...]
    measure_once "$@"
    if [ -s "$RUN/row.tsv" ] && is_disturbed "$RUN/row.tsv" && [ "$RETRIES" -gt 0 ]; then
        RETRIES=$((RETRIES - 1))
        log "$1 $2: disturbed by other processes ($(others_of "$RUN/row.tsv")% of a CPU): once more"
        mv "$RUN/row.tsv" "$RUN/row.first.tsv"
        sleep 2
        measure_once "$@"
        if [ ! -s "$RUN/row.tsv" ] || awk -v a="$(others_of "$RUN/row.first.tsv")" \
            -v b="$(others_of "$RUN/row.tsv")" 'BEGIN {exit !(a < b)}'; then
            mv "$RUN/row.first.tsv" "$RUN/row.tsv"
        fi
    fi
    if [ -s "$RUN/row.tsv" ]; then
        cat "$RUN/row.tsv" >>"$RUN/runs.tsv"
        is_disturbed "$RUN/row.tsv" &&
            warn "$1 $2: other processes used $(others_of "$RUN/row.tsv")% of a CPU during the run: its numbers are disturbed (run on a quiet machine)"
    fi
    return 0
}

# ---------------------------------------------------------------------------------------------
# 6: what the JSON access log costs. Portico without a log and Portico writing every exchange
# as a JSON line to a file take turns, so that a change in the machine's load hits both; the
# log file is emptied after each run (O_APPEND: truncating it under the writer is safe).
log_cost() {
    local rounds=${BENCH_LOG_ROUNDS:-3} i
    log "scenario 6: JSON access log against none, /small, 50 connections, $rounds rounds"
    for s in portico portico-log; do wrk_run "$WARMUP" 50 "http://127.0.0.1:${PORT[$s]}/small" || true; done
    for i in $(seq "$rounds"); do
        measure s6 portico /small 50
        measure s6 portico-log /small 50
        [ "$i" -eq 1 ] && { grep -c '"status":200' "$RUN/access.log" >"$RUN/log-lines" || true; }
        : >"$RUN/access.log"
    done
    [ "$(cat "$RUN/log-lines" 2>/dev/null || echo 0)" -gt 0 ] ||
        problem "6 portico-log: no JSON access-log line was written"
    # Medians of req/s and of req per CPU-second of the proxy (its capacity: on a shared
    # machine, other processes take wall-clock time from both, CPU time much less), and the
    # cost of the log in each.
    awk -F'\t' '$1 == "s6" { rps = $3 / ($4 / 1e6); eff = $14 > 0 ? rps / ($14 / 100) : 0
            r[$2] = r[$2] " " sprintf("%.0f", rps); e[$2] = e[$2] " " sprintf("%.0f", eff)
            o[$2] = o[$2] " " $17; n[$2]++ }
        function median(s,   a, k, i, j, t) { k = split(s, a, " ")
            for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
        function row(name, t) { printf "| %s | %d | %s | %s | %.0f | %.0f |\n", name, n[t], r[t], o[t], median(r[t]), median(e[t]) }
        END { printf "## 6. JSON access log against none: /small, 50 keep-alive connections\n\n"
            printf "| Portico | runs | req/s of each run | others %% of a CPU | median req/s | median req per CPU-second |\n"
            printf "|---|---:|---|---|---:|---:|\n"
            row("access_log = off", "portico"); row("JSON access log to a file", "portico-log")
            off = median(r["portico"]); on = median(r["portico-log"])
            eoff = median(e["portico"]); eon = median(e["portico-log"])
            printf "\nCost of the JSON log: %.1f%% of requests/s, %.1f%% of requests per CPU-second of Portico (medians; the issue allows 5%%).\n", off ? (1 - on / off) * 100 : 0, eoff ? (1 - eon / eoff) * 100 : 0 }' \
        "$RUN/runs.tsv" >"$RUN/log-cost.md"
    cat "$RUN/log-cost.md" >&3
}

printf 'target\trss_start_kib\trss_idle_kib\topen_at_end\thwm_s2_kib\n' >"$RUN/mem.tsv.part"
declare -A HWM=()
if [ "${BENCH_ONLY:-}" = log ]; then
    log_cost
else
# 5 (first, on fresh processes): RSS with 1000 idle keep-alive clients.
log "scenario 5: $IDLE_CONNS idle keep-alive connections per proxy"
for s in portico nginx nginx-nobuf haproxy; do
    before=$(rss_kib "${MPID[$s]}" VmRSS)
    taskset -c "$LOAD_CPU" python3 "$HERE/idle_conns.py" 127.0.0.1 "${PORT[$s]}" "$IDLE_CONNS" \
        /small 3 >"$RUN/idle.$s.out" 2>&1 &
    HELPER_PID=$!
    for _ in $(seq 300); do
        grep -q '^ready' "$RUN/idle.$s.out" && break
        kill -0 "$HELPER_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    with=$(rss_kib "${MPID[$s]}" VmRSS)
    rc=0
    wait "$HELPER_PID" || rc=$?
    HELPER_PID=""
    ready=$(awk '/^ready/ {print $2}' "$RUN/idle.$s.out")
    open=$(awk '/^open_at_end/ {print $2}' "$RUN/idle.$s.out")
    [ "$rc" -eq 0 ] || problem "5 $s: idle connections: served ${ready:-?}, still open ${open:-?}: $(grep -v '^ready\|^open' "$RUN/idle.$s.out" | head -n 2 | tr '\n' ' ') (reproduce: python3 scripts/bench/idle_conns.py 127.0.0.1 PORT $IDLE_CONNS /small 3)"
    printf '%s\t%s\t%s\t%s\n' "$s" "$before" "$with" "${open:-?}" >>"$RUN/mem.tsv.part"
    log "5    $(printf '%-12s RSS %6d KiB -> %6d KiB with %s idle clients (served %s)' "$s" "$before" "$with" "${open:-?}" "${ready:-?}")"
    check_alive s5
done
counters_delta s5

# Warm-up: fills every upstream pool and wakes the caches; not recorded.
if [ "$WARMUP" -gt 0 ]; then
    log "warm-up: ${WARMUP}s per server"
    for s in origin portico nginx nginx-nobuf haproxy; do
        wrk_run "$WARMUP" 50 "http://127.0.0.1:${PORT[$s]}/small" || true
    done
    check_alive warmup
    scrape prev
fi

log "scenario 1: /small, 50 connections, ${SECONDS_PER_RUN}s each"
for s in origin portico nginx haproxy; do measure s1 "$s" /small 50; done
counters_delta s1

log "scenario 2: /1m, 10 connections"
for s in portico nginx nginx-nobuf haproxy; do   # peak RSS from here on
    echo 5 >"/proc/${MPID[$s]}/clear_refs" 2>/dev/null || problem "cannot reset VmHWM of $s"
done
for s in origin portico nginx nginx-nobuf haproxy; do measure s2 "$s" /1m 10; done
for s in portico nginx nginx-nobuf haproxy; do HWM[$s]=$(rss_kib "${MPID[$s]}" VmHWM); done
counters_delta s2

log "scenario 2b: /100k, 50 connections"
for s in origin portico nginx nginx-nobuf haproxy; do measure s2b "$s" /100k 50; done
counters_delta s2b
integrity "after scenario 2b"
scrape prev   # the integrity requests are not part of scenario 3

log "scenario 3: /small, Connection: close, 50 connections"
for s in origin portico nginx haproxy; do measure s3 "$s" /small 50 -H 'Connection: close'; done
counters_delta s3

log "scenario 4: /err/x to a refused origin port, 50 connections"
for s in origin portico nginx haproxy; do measure s4 "$s" /err/x 50; done
counters_delta s4

# 7: HTTP/2 over TLS to the proxy, HTTP/1.1 to the origin. h2load on CPU 1: 10 connections of
# 10 streams each; CPU time of the proxy as in the other scenarios.
log "scenario 7: HTTP/2 (h2load, TLS, ALPN h2), /small, 10 connections x 10 streams"
printf 'target\treq_s\tsucceeded\tfailed\tprotocol\tmean_ms\tproxy_cpu\n' >"$RUN/h2.tsv"
for s in portico haproxy; do
    p0=$(cpu_ticks "${MPID[$s]}")
    taskset -c "$LOAD_CPU" h2load -D "$SECONDS_PER_RUN" --warm-up-time=1 -c 10 -m 10 -t 1 \
        "https://127.0.0.1:${H2PORT[$s]}/small" >"$RUN/h2load.$s.out" 2>&1 ||
        problem "7 $s: h2load failed: $(tail -n 3 "$RUN/h2load.$s.out" | tr '\n' ' ')"
    p1=$(cpu_ticks "${MPID[$s]}")
    awk -v t="$s" -v pc=$((p1 - p0)) -v hz="$HZ" -v secs="$SECONDS_PER_RUN" '
        /^finished in/ {gsub(/,/, ""); rps = $4}
        /^requests:/ {ok = $8; bad = $10 + $12 + $14}
        /^Application protocol:/ {proto = $3}
        /^time for request:/ {mean = $6; if (mean ~ /us$/) {sub(/us$/, "", mean); mean /= 1000}
                              else if (mean ~ /ms$/) sub(/ms$/, "", mean)
                              else if (mean ~ /s$/) {sub(/s$/, "", mean); mean *= 1000}}
        END {printf "%s\t%.0f\t%d\t%d\t%s\t%.2f\t%.1f\n", t, rps, ok, bad, proto, mean,
                    pc / hz / (secs + 1) * 100}' "$RUN/h2load.$s.out" >>"$RUN/h2.tsv"
    row=$(tail -n 1 "$RUN/h2.tsv")
    log "7    $(echo "$row" | awk -F'\t' '{printf "%-12s %8.0f req/s  %s ok, %s failed, %s, mean %s ms, proxy CPU %s%%", $1, $2, $3, $4, $5, $6, $7}')"
    echo "$row" | awk -F'\t' '$4 != 0 || $5 != "h2" {exit 1}' ||
        problem "7 $s: failed requests or not HTTP/2 (see $RUN/h2load.$s.out)"
    check_alive s7
done
counters_delta s7

log_cost
fi

awk -F'\t' -v OFS='\t' 'NR == FNR {h[$1] = $2; next}
    FNR == 1 {print; next} {print $0, ($1 in h) ? h[$1] : "-"}' \
    <(for s in "${!HWM[@]}"; do printf '%s\t%s\n' "$s" "${HWM[$s]}"; done) \
    "$RUN/mem.tsv.part" >"$RUN/mem.tsv"

# ---------------------------------------------------------------------------------------------
stamp=$(date -u +%Y%m%d-%H%M%S)
python3 "$HERE/report.py" "$RUN" "$OUT/results.md"
[ -s "$RUN/h2.tsv" ] && awk -F'\t' 'NR == 1 {next} {rps[$1] = $2; row[NR] = $0}
    END {
        print ""
        print "## 7. HTTP/2 (h2load over TLS, ALPN h2; HTTP/1.1 to the origin)"
        print ""
        print "| proxy | req/s | succeeded | failed | protocol | mean latency ms | proxy CPU % |"
        print "|---|---:|---:|---:|---|---:|---:|"
        for (i = 2; i <= NR; i++) { split(row[i], f, "\t")
            printf "| %s | %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7] }
        if (rps["haproxy"] > 0)
            printf "\nPortico / HAProxy: %.2f\n", rps["portico"] / rps["haproxy"]
    }' "$RUN/h2.tsv" >>"$OUT/results.md"
{ echo; cat "$RUN/log-cost.md"; } >>"$OUT/results.md"
mkdir -p "$OUT/history"
cp "$OUT/results.md" "$OUT/history/results-$stamp.md"
cp "$RUN/runs.tsv" "$OUT/history/runs-$stamp.tsv"
cp "$RUN/mem.tsv" "$OUT/history/mem-$stamp.tsv"
echo
cat "$OUT/results.md"
echo
log "written build/bench/results.md (and build/bench/history/results-$stamp.md)"
OK=1
