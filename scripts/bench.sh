#!/usr/bin/env bash
# bench.sh — `make bench`: a reproducible loopback benchmark of Portico against nginx and HAProxy,
# the one harness that checks every target of issue 12 in one interleaved run.
#
#   origin   one nginx worker serving /small (13 B), /100k, /1m, /err/ and /fault/ (static 502
#            and 503); the upload sink (scripts/bench/sink.c) for /upload; both on CPU 1
#   proxies  Portico, nginx (proxy_buffering and proxy_request_buffering on, its defaults), nginx
#            with both off, HAProxy: each ONE worker/thread, no logging, keep-alive pool of 64 to
#            the origin; all pinned to CPU 0, each the only one loaded while it is measured
#   client   wrk -t1 (and pace, scripts/bench/pace.c, in 4c), pinned to CPU 1 with the origin
#
# Scenarios (docs/BENCHMARKS.md says what each measures and how):
#   rounds   BENCH_ROUNDS interleaved rounds (default 3) of: 1 small responses / 64 conns,
#            1b small / 256 conns, 2 GET 1 MiB / 16 conns, 2c POST 1 MiB / 16 conns, 3
#            Connection: close / 50 conns, 4 refused origin / 50 conns, 4b injected 503 fault
#            (nginx, HAProxy: a static 503) / 50 conns, 4c small / 64 conns with and without
#            10,000 errors/s beside, 8 workers = 2 / 256 conns, 1c CPU time and system calls per
#            request for a fixed request count (h2load --h1 under `perf stat`, strace without
#            perf), 7 HTTP/2 over TLS (h2load). The order of the proxies rotates from round to
#            round; the origin alone is measured in the first round only (every round for the
#            uploads: their target is a ratio to it). Results: median and min-max over rounds.
#   once     5 RSS with 1000 idle keep-alive clients (first, on fresh processes), 2b 100 KiB /
#            50 conns, 6 the cost of the JSON access log (BENCH_LOG_ROUNDS, default 9).
#
# Environment: BENCH_SECONDS (per load run, default 4), BENCH_ROUNDS (default 3), BENCH_WARMUP
# (default 2), BENCH_SYSCALL_REQUESTS (1c, default 100000), BENCH_ERROR_RATE (4c, default 10000),
# PORTICO (binary, default build/portico), BENCH_KEEP=1 (keep the run directory), BENCH_RETRIES
# (default 6: how many runs disturbed by other processes may be repeated once), BENCH_ONLY (a
# list of scenario ids, e.g. "s1 s4c"; "log" is s6).
# Output: tables on stdout and in build/bench/results.md (+ a timestamped copy).
#
# Everything runs on 127.0.0.1; every server is a foreground child of this script with its own
# config and pid file under build/bench/run.*; the trap stops all of them on any exit.
set -euo pipefail
# The whole script is one { } block, read by bash before it runs: an edit or a `git pull` during a
# run cannot change what the running bench does.
{

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/scripts/bench
OUT=$ROOT/build/bench
BIN=$OUT/bin
SECONDS_PER_RUN=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
SYSCALL_REQUESTS=${BENCH_SYSCALL_REQUESTS:-100000}
ERROR_RATE=${BENCH_ERROR_RATE:-10000}
ONLY=" ${BENCH_ONLY:-} "
PORTICO=${PORTICO:-$ROOT/build/portico}
IDLE_CONNS=1000
UPLOAD_BYTES=1048576
PROXY_CPU=0
LOAD_CPU=1
BOTH_CPUS=0,1

# Messages go to fd 3, the script's stderr, even from a trap run inside a redirection.
exec 3>&2
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }
die() { log "error: $*"; exit 1; }

for v in SECONDS_PER_RUN ROUNDS WARMUP SYSCALL_REQUESTS ERROR_RATE; do
    case ${!v} in '' | *[!0-9]*) die "$v must be a whole number" ;; esac
done
[ "$SECONDS_PER_RUN" -ge 1 ] || die "BENCH_SECONDS must be at least 1"
[ "$ROUNDS" -ge 1 ] || die "BENCH_ROUNDS must be at least 1"
[ -x "$PORTICO" ] || die "$PORTICO not built (run: make bench)"
[ "$ONLY" = " log " ] && ONLY=" s6 "
want() { [ "$ONLY" = "  " ] || [[ $ONLY == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# The packages this needs are in scripts/deps.sh (`make bench` runs it first). The system
# services nginx and haproxy bring are never used: every server here is our own child.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
for b in "$NGINX" "$HAPROXY" wrk python3 curl taskset h2load openssl strace cc; do
    command -v "$b" >/dev/null || die "$b not found (run: make deps)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (proxies on CPU 0, origin and wrk on CPU 1)"
# Scenario 1c counts system calls with perf's tracepoints where it may (root, or a low
# perf_event_paranoid), with strace otherwise.
SYSCALL_METHOD=strace
perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 && SYSCALL_METHOD=perf

# The two load tools of our own: the upload sink (2c) and the fixed-rate error load (4c).
mkdir -p "$BIN"
for t in sink pace; do
    cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wpointer-arith -Wcast-qual -Wformat=2 -D_GNU_SOURCE -o "$BIN/$t" "$HERE/$t.c" ||
        die "cannot build scripts/bench/$t.c"
done

# ---------------------------------------------------------------------------------------------
# Run directory, processes and the trap.
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

# Free loopback ports, chosen once: origin, sink, the proxies, Portico's admin, one left
# closed, the logging Portico of scenario 6, the TLS (HTTP/2) listeners of scenario 7 and the
# two-worker Portico and HAProxy of scenario 8.
read -r P_ORIGIN P_SINK P_PORTICO P_NGINX P_NGINXNB P_HAPROXY P_ADMIN P_REFUSED P_PORTICO_LOG \
    P_PORTICO_H2 P_NGINX_H2 P_HAPROXY_H2 P_PORTICO_W2 P_HAPROXY_W2 < <(python3 - <<'EOF'
import socket
socks = []
for _ in range(14):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
PORT[origin]=$P_ORIGIN PORT[sink]=$P_SINK PORT[portico]=$P_PORTICO PORT[nginx]=$P_NGINX
PORT[nginx-nobuf]=$P_NGINXNB PORT[haproxy]=$P_HAPROXY PORT[portico-log]=$P_PORTICO_LOG
PORT[portico-w2]=$P_PORTICO_W2 PORT[haproxy-w2]=$P_HAPROXY_W2
declare -A H2PORT=([portico]=$P_PORTICO_H2 [nginx]=$P_NGINX_H2 [haproxy]=$P_HAPROXY_H2)

# Config files from the templates in scripts/bench/.
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"   # workers must read $RUN and write temp files
render() { # template out name port [buffering]
    local h2listen=""
    [ "$3" = nginx ] && h2listen="listen 127.0.0.1:${H2PORT[nginx]} ssl http2; ssl_certificate $RUN/bench.crt; ssl_certificate_key $RUN/bench.key;"
    sed -e "s|@DIR@|$RUN|g" -e "s|@USER@|$USER_LINE|g" -e "s|@NAME@|$3|g" -e "s|@PORT@|$4|g" \
        -e "s|@ORIGIN_PORT@|$P_ORIGIN|g" -e "s|@REFUSED_PORT@|$P_REFUSED|g" \
        -e "s|@SINK_PORT@|$P_SINK|g" -e "s|@ADMIN_PORT@|$P_ADMIN|g" \
        -e "s|@BUFFERING@|${5:-on}|g" -e "s|@H2_PORT@|${H2PORT[$3]:-0}|g" \
        -e "s|@H2_LISTEN@|$h2listen|g" "$HERE/$1" >"$RUN/$2"
}
# The certificate the TLS listeners of scenario 7 present (HAProxy wants it with its key).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$RUN/bench.key" \
    -out "$RUN/bench.crt" 2>/dev/null || die "openssl cannot make the bench certificate"
cat "$RUN/bench.crt" "$RUN/bench.key" >"$RUN/bench.pem"
mkdir -p "$RUN/www" "$RUN/tmp"
head -c 1048576 /dev/urandom >"$RUN/www/1m"
head -c 102400 /dev/urandom >"$RUN/www/100k"
# The upload body wrk sends (report.lua) and the sink checks: "0123456789abcdef" repeated.
python3 -c "import sys; sys.stdout.write('0123456789abcdef' * ($UPLOAD_BYTES // 16))" \
    >"$RUN/upload.body"
chmod -R a+rX "$RUN"
render origin-nginx.conf origin.conf origin "$P_ORIGIN"
render nginx.conf nginx.conf nginx "$P_NGINX" on
render nginx.conf nginx-nobuf.conf nginx-nobuf "$P_NGINXNB" off
render haproxy.cfg haproxy.cfg haproxy "$P_HAPROXY"
render portico.ini portico.ini portico "$P_PORTICO"
# The derived instances carry no admin and no TLS listener: those ports are the first one's.
# Scenario 6's Portico writes the JSON access log to a file.
render portico.ini portico-log.ini portico-log "$P_PORTICO_LOG"
sed -i -e "s|^access_log = off|access_log = $RUN/access.log\naccess_log_format = json|" \
    -e '/^admin_listen/d' -e '/^listen = .* tls/d' -e '/^tls_/d' "$RUN/portico-log.ini"
# Scenario 8: Portico with workers = 2 and HAProxy with nbthread 2, on both CPUs.
render portico.ini portico-w2.ini portico-w2 "$P_PORTICO_W2"
sed -i -e 's|^workers = 1|workers = 2|' -e '/^admin_listen/d' -e '/^listen = .* tls/d' \
    -e '/^tls_/d' "$RUN/portico-w2.ini"
render haproxy.cfg haproxy-w2.cfg haproxy-w2 "$P_HAPROXY_W2"
sed -i -e 's|^    nbthread 1|    nbthread 2|' -e '/^frontend bench_h2/,/^$/d' "$RUN/haproxy-w2.cfg"
grep -q '^workers = 2' "$RUN/portico-w2.ini" && grep -q 'nbthread 2' "$RUN/haproxy-w2.cfg" ||
    die "cannot derive the two-worker configurations"

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
    case $name in
        origin | sink) cpu=$LOAD_CPU ;;
        *-w2) cpu=$BOTH_CPUS ;;
    esac
    case $name in
        origin | nginx | nginx-nobuf)
            taskset -c "$cpu" "$NGINX" -p "$RUN" -e "$RUN/$name-error.log" -c "$RUN/$name.conf" \
                >"$RUN/$name.out" 2>&1 &
            ;;
        haproxy | haproxy-w2)
            taskset -c "$cpu" "$HAPROXY" -db -f "$RUN/$name.cfg" -p "$RUN/$name.pid" \
                >"$RUN/$name.out" 2>&1 &
            ;;
        portico | portico-log | portico-w2)
            taskset -c "$cpu" "$PORTICO" -c "$RUN/$name.ini" >"$RUN/$name.out" 2>&1 &
            ;;
        sink)
            taskset -c "$cpu" "$BIN/sink" "$P_SINK" >"$RUN/$name.out" 2>&1 &
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

# A server that died is a finding (a Portico) or a bench bug (the others); a Portico is
# restarted so that the remaining scenarios still run.
check_alive() { # scenario
    local name rc
    for name in "${!PID[@]}"; do
        if ! kill -0 "${PID[$name]}" 2>/dev/null || ! kill -0 "${MPID[$name]}" 2>/dev/null; then
            rc=0
            wait "${PID[$name]}" 2>/dev/null || rc=$?
            cp "$RUN/$name.out" "$OUT/$name-died-$1.log" 2>/dev/null || true
            problem "$name died during scenario $1 (exit status $rc$([ "$rc" -gt 128 ] && echo ", signal $((rc - 128))")); its output: build/bench/$name-died-$1.log"
            case $name in
                portico*) start "$name" ;;
                *)
                    cp "$RUN/$name-error.log" "$OUT/$name-died-$1.error.log" 2>/dev/null || true
                    die "$name died: killed from outside (its error log names the sender of a SIGTERM) or the set-up is broken"
                    ;;
            esac
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
# user+nice+system ticks of the whole machine; less our processes, it is what others ran
# during a load run (softirq/irq time, not charged to any process here, is left out).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4; exit}' /proc/stat; }
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------------------------------------
# Start everything, then record what this run is.
log "run directory $RUN; ports: origin $P_ORIGIN, sink $P_SINK, portico $P_PORTICO," \
    "nginx $P_NGINX, nginx-nobuf $P_NGINXNB, haproxy $P_HAPROXY, refused $P_REFUSED"
for s in portico portico-log portico-w2; do
    "$PORTICO" -t -c "$RUN/$s.ini" >/dev/null || die "Portico rejects $RUN/$s.ini"
done
"$NGINX" -t -q -p "$RUN" -e "$RUN/nginx-t.log" -c "$RUN/nginx.conf" || die "nginx config"
for s in haproxy haproxy-w2; do "$HAPROXY" -c -q -f "$RUN/$s.cfg" || die "$s config"; done
for s in origin sink portico portico-log portico-w2 nginx nginx-nobuf haproxy haproxy-w2; do
    start "$s"
done

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
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'error_rate\t%s\n' "$ERROR_RATE"
    printf 'upload_bytes\t%s\n' "$UPLOAD_BYTES"
    printf 'idle_conns\t%s\n' "$IDLE_CONNS"
    printf 'syscall_requests\t%s\n' "$SYSCALL_REQUESTS"
    printf 'syscall_method\t%s\n' "$SYSCALL_METHOD"
    printf 'h2load\t%s\n' "$(h2load --version 2>/dev/null | awk '{print $2; exit}')"
    printf 'load_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RUN/meta.tsv"
BENCH_T0=$(date +%s)

# ---------------------------------------------------------------------------------------------
# Checks: every server answers each path as expected before any load.
printf 'target\tpath\tstatus\tsize\tnote\n' >"$RUN/checks.tsv"
check() { # name path want_status [want_size]
    local name=$1 path=$2 want=$3 size=${4:-} url out code got note=""
    url="http://127.0.0.1:${PORT[$name]}$path"
    out=$(curl -s -o /dev/null -D "$RUN/check.h" -w '%{http_code} %{size_download}' \
        --max-time 5 "$url" || true)
    code=${out% *} got=${out#* }
    case $path in
        /err/x | /fault/x)
            # Does the server keep the client connection after the error? (it matters to 4, 4b)
            local conns
            conns=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' --max-time 5 "$url" "$url" || true)
            case $conns in
                "1 0 ") note="keeps the connection after it" ;;
                *) note="closes the connection after it" ;;
            esac
            # (|| true: a head without the field is no failure under set -e and pipefail)
            note="$note; $(grep -i '^content-type:' "$RUN/check.h" | tr -d '\r' | head -n 1 || true)"
            [ "$name" = portico ] && note="$note; $(grep -i '^portico-\(error\|fault\):' "$RUN/check.h" | tr -d '\r' | tr '\n' ' ' || true)"
            ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$path" "$code" "$got" "$note" >>"$RUN/checks.tsv"
    if [ "$code" != "$want" ] || { [ -n "$size" ] && [ "$got" != "$size" ]; }; then
        problem "$name: GET $path answered $code with $got body bytes, expected $want${size:+ with $size} (reproduce: curl -v $url)"
        case $name in portico*) ;; *) die "$name misconfigured" ;; esac
    fi
}
# The sink's counters: "requests=N bodies_ok=N bodies_bad=N body_bytes=N bad_heads=N conns=N".
sink_stat() { # key -> value
    curl -s --max-time 5 "http://127.0.0.1:$P_SINK/stats" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'
}
check_upload() { # name: one POST of the upload body must reach the sink whole
    local name=$1 url out ok0 ok1
    url="http://127.0.0.1:${PORT[$name]}/upload"
    ok0=$(sink_stat bodies_ok)
    out=$(curl -s -o /dev/null -w '%{http_code} %{size_upload}' --max-time 10 -H 'Expect:' \
        -H 'Content-Type: application/octet-stream' --data-binary @"$RUN/upload.body" "$url" || true)
    ok1=$(sink_stat bodies_ok)
    printf '%s\tPOST /upload\t%s\t%s sent\tbodies the sink received whole and equal: %s\n' \
        "$name" "${out% *}" "${out#* }" "$((ok1 - ok0))" >>"$RUN/checks.tsv"
    if [ "${out% *}" != 200 ] || [ "$((ok1 - ok0))" != 1 ]; then
        problem "$name: POST /upload of $UPLOAD_BYTES bytes answered ${out% *}, the sink received $((ok1 - ok0)) whole bodies (reproduce: curl -v -H 'Expect:' --data-binary @$RUN/upload.body $url)"
        case $name in portico*) ;; *) die "$name misconfigured" ;; esac
    fi
}
for s in origin portico nginx nginx-nobuf haproxy; do
    check "$s" /small 200 13
    check "$s" /100k 200 102400
    check "$s" /1m 200 1048576
    case $s in
        haproxy) check "$s" /err/x 503 ;;
        nginx-nobuf) ;;
        *) check "$s" /err/x 502 ;;
    esac
    [ "$s" = nginx-nobuf ] || check "$s" /fault/x 503
done
for s in portico-log portico-w2 haproxy-w2; do check "$s" /small 200 13; done
for s in sink portico nginx nginx-nobuf haproxy; do check_upload "$s"; done

# Body integrity: wrk counts bytes but never looks at them. 20 concurrent transfers per proxy
# (10 of /1m, 10 of /100k, 4 at once) must each equal the origin's file. Before the load and
# again after the rounds.
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
        curl -s --parallel --parallel-max 4 --max-time 20 "${args[@]}" 2>/dev/null || true
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
portico_client_aborts_total portico_spliced_bytes_total"
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
printf 'scenario\tround\ttarget\trequests\tduration_us\tbytes\terr_connect\terr_read\terr_write\terr_status\terr_timeout\tp50_us\tp99_us\tmax_us\tproxy_cpu\torigin_cpu\twrk_cpu\tother_cpu\n' \
    >"$RUN/runs.tsv"
ROUND=0
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
    # (timeout: a wrk that does not stop by itself is killed; the run then counts as failed)
    timeout -k 5 $((d + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${d}s" --timeout 5s --latency \
        -s "$HERE/report.lua" "$@" "$url" >"$RUN/wrk.out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    children_secs >"$RUN/t1"
    awk 'NR == FNR {a = $1; next} {printf "%.3f 0\n", $1 - a}' "$RUN/t0" "$RUN/t1" >"$RUN/wrk.time"
    return "$rc"
}
# The statuses a scenario expects: every response an error (4, 4b) or every one a 2xx.
errors_expected() { case $1 in s4 | s4b) return 0 ;; *) return 1 ;; esac; }
# BEFORE_LOAD and AFTER_LOAD, when set, name functions called (scenario, target) around the
# load; AFTER_LOAD may write the CPU seconds of its own helper to $RUN/extra.cpu (counted with
# wrk's, as load-side CPU).
measure_once() { # scenario name path conns [wrk args...] -> one row in $RUN/row.tsv
    local scen=$1 name=$2 path=$3 conns=$4
    shift 4
    local url="http://127.0.0.1:${PORT[$name]}$path" p0 o0 p1 o1 m0 m1 line org=origin extra=0
    [ "$scen" = s2c ] && org=sink
    echo 0 >"$RUN/extra.cpu"
    [ -n "${BEFORE_LOAD:-}" ] && "$BEFORE_LOAD" "$scen" "$name"
    p0=$(cpu_ticks "${MPID[$name]}") o0=$(cpu_ticks "${MPID[$org]}") m0=$(machine_ticks)
    if ! wrk_run "$SECONDS_PER_RUN" "$conns" "$url" "$@"; then
        problem "$scen $name: wrk failed: $(tail -n 3 "$RUN/wrk.out" | tr '\n' ' ')"
    fi
    p1=$(cpu_ticks "${MPID[$name]}") o1=$(cpu_ticks "${MPID[$org]}") m1=$(machine_ticks)
    [ -n "${AFTER_LOAD:-}" ] && "$AFTER_LOAD" "$scen" "$name"
    extra=$(cat "$RUN/extra.cpu")
    [ "$name" = "$org" ] && p1=$p0   # the origin is counted once, as the origin
    cp "$RUN/wrk.out" "$RUN/wrk.$scen.$ROUND.$name.out"
    line=$(grep '^BENCH ' "$RUN/wrk.out" || true)
    : >"$RUN/row.tsv"
    if [ -z "$line" ]; then
        problem "$scen $name: no result from wrk (see $RUN/wrk.$scen.$ROUND.$name.out)"
        check_alive "$scen"
        return 0
    fi
    local kv requests duration_us bytes err_connect err_read err_write err_status err_timeout \
        p50_us p99_us max_us wu ws
    for kv in ${line#BENCH }; do
        case $kv in [a-z]*=[0-9]*) local "$kv" ;; esac
    done
    read -r wu ws <"$RUN/wrk.time"
    wu=$(awk -v a="$wu" -v b="$extra" 'BEGIN {printf "%.3f", a + b}')
    # wrk hands Lua a byte count clipped at 2^31-1: past that, take its text ("21.87GB read",
    # binary units, 4 significant digits).
    if [ "$bytes" -ge 2147483647 ]; then
        bytes=$(awk '/ read$/ {
            v = $(NF - 1); u = v; sub(/[0-9.]+/, "", u); sub(/[KMGT]?B$/, "", v); m = 1
            if (u == "KB") m = 1024; else if (u == "MB") m = 1048576
            else if (u == "GB") m = 1073741824; else if (u == "TB") m = 1099511627776
            printf "%.0f", v * m }' "$RUN/wrk.out")
    fi
    awk -v s="$scen" -v rd="$ROUND" -v t="$name" -v r="$requests" -v d="$duration_us" -v b="$bytes" \
        -v ec="$err_connect" -v er="$err_read" -v ew="$err_write" -v es="$err_status" \
        -v et="$err_timeout" -v p50="$p50_us" -v p99="$p99_us" -v mx="$max_us" \
        -v pc=$((p1 - p0)) -v oc=$((o1 - o0)) -v mc=$((m1 - m0)) -v wu="$wu" -v ws="$ws" \
        -v hz="$HZ" 'BEGIN {
        secs = d / 1e6
        other = (mc - pc - oc) / hz - (wu + ws)
        if (other < 0) other = 0
        printf "%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\n",
            s, rd, t, r, d, b, ec, er, ew, es, et, p50, p99, mx, pc / hz / secs * 100,
            oc / hz / secs * 100, (wu + ws) / secs * 100, other / secs * 100 }' >"$RUN/row.tsv"
    log "$(printf '%-4s r%s %-12s %8.0f req/s %8.1f MB/s  p99 %7.2f ms  proxy CPU %s%%  errors c%s r%s w%s t%s status%s  others %s%%' \
        "$scen" "$ROUND" "$name" "$(echo "$requests $duration_us" | awk '{print $1 / ($2 / 1e6)}')" \
        "$(echo "$bytes $duration_us $requests ${BENCH_POST_BYTES:-0}" | awk '   # uploads: sent
            {print ($4 > 0 ? $3 * $4 : $1) / ($2 / 1e6) / 1e6}')" \
        "$(echo "$p99_us" | awk '{print $1 / 1000}')" "$(cut -f 15 "$RUN/row.tsv")" \
        "$err_connect" "$err_read" "$err_write" "$err_timeout" "$err_status" \
        "$(cut -f 18 "$RUN/row.tsv")")"
    local sock=$((err_connect + err_read + err_write + err_timeout))
    case $name in
        portico*)
            local repro
            repro="${BENCH_POST_BYTES:+BENCH_POST_BYTES=$BENCH_POST_BYTES }taskset -c $LOAD_CPU wrk -t1 -c$conns -d${SECONDS_PER_RUN}s -s scripts/bench/report.lua $(printf '%q ' "$@")$url"
            [ "$sock" -eq 0 ] || problem "$scen $name: wrk socket errors: connect $err_connect, read $err_read, write $err_write, timeout $err_timeout of $requests requests (reproduce: $repro)"
            if errors_expected "$scen"; then
                [ "$err_status" -eq "$requests" ] || problem "$scen $name: $((requests - err_status)) of $requests responses were not errors"
            else
                [ "$err_status" -eq 0 ] || problem "$scen $name: $err_status non-2xx responses of $requests (reproduce: $repro)"
            fi
            ;;
        *)
            if [ "$sock" -ne 0 ] || { ! errors_expected "$scen" && [ "$err_status" -ne 0 ]; }; then
                problem "$scen $name (reference): socket errors $sock, non-2xx $err_status of $requests"
            fi
            ;;
    esac
    check_alive "$scen"
}

# A run during which other processes used more than DISTURBED% of a CPU is repeated once, while
# the budget of BENCH_RETRIES repeats lasts; the less disturbed of the two is kept.
RETRIES=${BENCH_RETRIES:-6}
DISTURBED=10
others_of() { cut -f 18 "$1" 2>/dev/null || echo 0; }
is_disturbed() { awk -v o="$(others_of "$1")" -v d="$DISTURBED" 'BEGIN {exit !(o > d)}'; }
measure() { # scenario name path conns [wrk args...]
    measure_once "$@"
    if [ -s "$RUN/row.tsv" ] && is_disturbed "$RUN/row.tsv" && [ "$RETRIES" -gt 0 ]; then
        RETRIES=$((RETRIES - 1))
        log "$1 $2: disturbed by other processes ($(others_of "$RUN/row.tsv")% of a CPU): once more"
        mv "$RUN/row.tsv" "$RUN/row.first.tsv"
        cp "$RUN/side.tsv" "$RUN/side.first.tsv" 2>/dev/null || true
        sleep 2
        measure_once "$@"
        if [ ! -s "$RUN/row.tsv" ] || awk -v a="$(others_of "$RUN/row.first.tsv")" \
            -v b="$(others_of "$RUN/row.tsv")" 'BEGIN {exit !(a < b)}'; then
            mv "$RUN/row.first.tsv" "$RUN/row.tsv"
            mv "$RUN/side.first.tsv" "$RUN/side.tsv" 2>/dev/null || true
        fi
    fi
    if [ -s "$RUN/row.tsv" ]; then
        cat "$RUN/row.tsv" >>"$RUN/runs.tsv"
        is_disturbed "$RUN/row.tsv" &&
            warn "$1 round $ROUND $2: other processes used $(others_of "$RUN/row.tsv")% of a CPU during the run: its numbers are disturbed (run on a quiet machine)"
    fi
    # What the hooks measured beside the run (peak RSS, sink counts, the error load) goes with
    # the row that was kept.
    if [ -s "$RUN/side.tsv" ]; then
        cat "$RUN/side.tsv" >>"$RUN/side.$1.tsv"
    fi
    rm -f "$RUN/side.tsv" "$RUN/side.first.tsv"
    return 0
}

# The proxies in an order that moves by one each round, so that none is always measured first.
rotated() { # names... -> the same names rotated left by ROUND - 1
    local -a a=("$@")
    local n=${#a[@]} k i
    k=$(((ROUND - 1) % n))
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(((i + k) % n))]}"; done
}

# ---------------------------------------------------------------------------------------------
# Hooks run around single load runs; each writes one line to $RUN/side.tsv.
HWM_RSS0=0
peak_reset() { # scenario name: RSS now, and VmHWM restarted from it
    HWM_RSS0=0
    case $2 in origin | sink) return 0 ;; esac
    HWM_RSS0=$(rss_kib "${MPID[$2]}" VmRSS)
    echo 5 >"/proc/${MPID[$2]}/clear_refs" 2>/dev/null || problem "cannot reset VmHWM of $2"
}
peak_read() { # scenario name -> "round target rss_before_kib peak_kib"
    local hwm=0
    case $2 in origin | sink) ;; *) hwm=$(rss_kib "${MPID[$2]}" VmHWM) ;; esac
    printf '%s\t%s\t%s\t%s\n' "$ROUND" "$2" "$HWM_RSS0" "$hwm" >"$RUN/side.tsv"
}
SINK0=""
RETRANS0=0
# TCP segments the whole machine retransmitted so far (/proc/net/snmp): on loopback a
# retransmission during a run means reordered segments, not lost ones (docs/BENCHMARKS.md).
tcp_retrans() {
    awk '$1 == "Tcp:" { if (!c) { for (i = 2; i <= NF; i++) if ($i == "RetransSegs") c = i }
                        else print $c }' /proc/net/snmp
}
upload_before() { # scenario name
    peak_reset "$@"
    SINK0=$(curl -s --max-time 5 "http://127.0.0.1:$P_SINK/stats")
    RETRANS0=$(tcp_retrans)
}
# Every body wrk counts as answered must have reached the sink whole and equal to what wrk sent.
upload_after() { # scenario name -> "round target rss_before peak requests bodies_ok bodies_bad bytes retrans=N"
    local sink1 requests err_status row retrans
    retrans=$(($(tcp_retrans) - RETRANS0))
    sink1=$(curl -s --max-time 5 "http://127.0.0.1:$P_SINK/stats")
    requests=$(grep -o 'requests=[0-9]*' "$RUN/wrk.out" | head -n 1 | cut -d= -f2)
    err_status=$(grep -o 'err_status=[0-9]*' "$RUN/wrk.out" | head -n 1 | cut -d= -f2)
    peak_read "$@"
    row=$(printf '%s\n%s\n' "$SINK0" "$sink1" | tr ' ' '\n' | awk -F= -v r="${requests:-0}" '
        $1 == "bodies_ok" {ok[n_ok++] = $2} $1 == "bodies_bad" {bad[n_bad++] = $2}
        $1 == "body_bytes" {b[n_b++] = $2}
        END {printf "%s\t%.0f\t%.0f\t%.0f", r, ok[1] - ok[0], bad[1] - bad[0], b[1] - b[0]}')
    printf '%s\t%s\tretrans=%s\n' "$(cat "$RUN/side.tsv")" "$row" "$retrans" >"$RUN/side.tsv"
    local ok bad bytes
    IFS=$'\t' read -r _ ok bad bytes <<<"$row"
    if [ "$bad" -ne 0 ] || [ "$ok" -lt "$((${requests:-0} - ${err_status:-0}))" ] ||
        [ "$bytes" -lt "$(( (${requests:-0} - ${err_status:-0}) * UPLOAD_BYTES))" ]; then
        local what="2c $2: wrk counted ${requests:-?} answered uploads, the sink received $ok bodies whole and equal, $bad different, $bytes body bytes"
        case $2 in
            portico*) problem "$what (reproduce: BENCH_POST_BYTES=$UPLOAD_BYTES taskset -c $LOAD_CPU wrk -t1 -c16 -d${SECONDS_PER_RUN}s -s scripts/bench/report.lua http://127.0.0.1:${PORT[$2]}/upload, then curl http://127.0.0.1:$P_SINK/stats)" ;;
            *) problem "$what (reference)" ;;
        esac
    fi
}
# 4c: the fixed-rate error load beside wrk's healthy one, on its own 32 connections.
pace_start() { # scenario name
    taskset -c "$LOAD_CPU" "$BIN/pace" 127.0.0.1 "${PORT[$2]}" /err/x "$ERROR_RATE" \
        $((SECONDS_PER_RUN + 10)) 32 >"$RUN/pace.out" 2>&1 &
    HELPER_PID=$!
    for _ in $(seq 60); do
        grep -q '^ready' "$RUN/pace.out" && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || break
        sleep 0.05
    done
    problem "4c $2: the error load did not start: $(tr '\n' ' ' <"$RUN/pace.out")"
}
pace_stop() { # scenario name -> "round target" and pace's key=value line as columns
    stop_pid "$HELPER_PID"
    wait "$HELPER_PID" 2>/dev/null || true
    HELPER_PID=""
    local line
    line=$(grep '^PACE ' "$RUN/pace.out" || true)
    if [ -z "$line" ]; then
        problem "4c $2: no result from the error load: $(tr '\n' ' ' <"$RUN/pace.out")"
        return 0
    fi
    printf '%s\t%s\t%s\n' "$ROUND" "$2" "$(echo "${line#PACE }" | tr ' ' '\t')" >"$RUN/side.tsv"
    echo "$line" | tr ' ' '\n' | awk -F= '$1 == "cpu_s" {print $2}' >"$RUN/extra.cpu"
    log "4c   r$ROUND $2 error load: $(echo "$line" | tr ' ' '\n' | awk -F= '
        $1 == "rate" || $1 == "s5xx" || $1 == "other" || $1 == "conn_errors" || $1 == "skipped" ||
        $1 == "reconnects" {printf "%s %s  ", $1, $2}')"
}

# ---------------------------------------------------------------------------------------------
# 1c: CPU time and system calls per keep-alive request of each proxy, for a fixed request count:
# h2load --h1 sends SYSCALL_REQUESTS GETs of /small on 64 keep-alive connections (one request in
# flight on each, as wrk), and `perf stat -p` counts the proxy's task-clock and its system calls
# (tracepoints raw_syscalls:sys_enter and syscalls:sys_enter_NAME) for exactly the length of that
# run. Without perf, `strace -c -f` counts the calls (and slows the proxy: its CPU is then not
# recorded). Counting slows a process a little, so the CPU of scenario 1 (no counting) is the one
# the targets use; this run's task-clock is a cross-check.
SYSCALLS="read readv recvfrom recvmsg write writev sendto sendmsg epoll_wait epoll_pwait
epoll_ctl ioctl getsockopt setsockopt accept4 close timerfd_settime futex"
printf 'round\ttarget\tmethod\trequests\tcounter\tcount\n' >"$RUN/syscalls.tsv"
syscall_counts() {
    local s events="task-clock,raw_syscalls:sys_enter" sc n rc out txt
    for sc in $SYSCALLS; do events="$events,syscalls:sys_enter_$sc"; done
    for s in $(rotated portico nginx haproxy); do
        out=$RUN/h2load.s1c.$ROUND.$s.out txt=$RUN/syscalls.$ROUND.$s.txt rc=0
        if [ "$SYSCALL_METHOD" = perf ]; then
            # perf counts the proxy for as long as the command it runs: h2load, bounded in time.
            perf stat -x, -o "$txt" -e "$events" -p "${MPID[$s]}" -- \
                timeout 120 taskset -c "$LOAD_CPU" h2load --h1 -n "$SYSCALL_REQUESTS" -c 64 -t 1 \
                "http://127.0.0.1:${PORT[$s]}/small" >"$out" 2>&1 || rc=$?
        else
            strace -c -f -q -p "${MPID[$s]}" -o "$txt" >/dev/null 2>&1 &
            HELPER_PID=$!
            sleep 1   # strace has no "attached" signal; an idle proxy makes next to no calls
            timeout 300 taskset -c "$LOAD_CPU" h2load --h1 -n "$SYSCALL_REQUESTS" -c 64 -t 1 \
                "http://127.0.0.1:${PORT[$s]}/small" >"$out" 2>&1 || rc=$?
            kill -INT "$HELPER_PID" 2>/dev/null || true
            wait "$HELPER_PID" 2>/dev/null || true
            HELPER_PID=""
        fi
        n=$(awk '/^requests:/ {print $8}' "$out")
        if [ "$rc" -ne 0 ] || [ "${n:-0}" != "$SYSCALL_REQUESTS" ]; then
            problem "s1c $s: h2load --h1 completed ${n:-0} of $SYSCALL_REQUESTS requests (exit $rc; see $out)"
            check_alive s1c
            continue
        fi
        # perf -x,: "count,unit,event,..." (task-clock in ms); strace -c: "% time seconds
        # usecs/call calls [errors] name", then a "total" line.
        awk -v r="$ROUND" -v t="$s" -v m="$SYSCALL_METHOD" -v n="$n" '
            function row(c, v) { printf "%s\t%s\t%s\t%s\t%s\t%s\n", r, t, m, n, c, v }
            m == "perf" {
                split($0, f, ","); if (f[1] !~ /^[0-9.]+$/) next
                if (f[3] == "task-clock") row("cpu_ms", f[1])
                else if (f[3] == "raw_syscalls:sys_enter") row("total", f[1])
                else if (f[3] ~ /^syscalls:sys_enter_/ && f[1] > 0) {
                    c = f[3]; sub(/^syscalls:sys_enter_/, "", c); row(c, f[1]) } }
            m == "strace" && $1 ~ /^[0-9.]+$/ && $NF != "total" { row($NF, $4) }
            m == "strace" && $NF == "total" { row("total", $4) }' "$txt" >>"$RUN/syscalls.tsv"
        log "$(awk -F'\t' -v r="$ROUND" -v t="$s" '$1 == r && $2 == t {v[$5] = $6; n = $4}
            END {printf "s1c  r%s %-12s %6.2f system calls per request", r, t, v["total"] / n
                 if ("cpu_ms" in v) printf ", %5.1f us CPU per request (under perf)", v["cpu_ms"] * 1000 / n
                 printf " (%d requests)", n}' "$RUN/syscalls.tsv")"
        check_alive s1c
    done
}

# ---------------------------------------------------------------------------------------------
# 6: what the JSON access log costs. Portico without a log and Portico writing every exchange
# as a JSON line to a file take turns, so that a change in the machine's load hits both; the
# log file is emptied after each run (O_APPEND: truncating it under the writer is safe).
log_cost() {
    local rounds=${BENCH_LOG_ROUNDS:-9} i
    log "scenario 6: JSON access log against none, /small, 50 connections, $rounds rounds"
    for s in portico portico-log; do wrk_run "$WARMUP" 50 "http://127.0.0.1:${PORT[$s]}/small" || true; done
    for i in $(seq "$rounds"); do
        ROUND=$i
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
    awk -F'\t' '$1 == "s6" { rps = $4 / ($5 / 1e6); eff = $15 > 0 ? rps / ($15 / 100) : 0
            r[$3] = r[$3] " " sprintf("%.0f", rps); e[$3] = e[$3] " " sprintf("%.0f", eff)
            o[$3] = o[$3] " " $18; n[$3]++; pr[$3, $2] = rps; pe[$3, $2] = eff; if ($2 > maxr) maxr = $2 }
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
            # The same cost within each round (its two runs back to back), then the median of
            # those: a drift of the machine between rounds, which moves both, cancels out.
            for (k = 1; k <= maxr; k++) if (pr["portico", k] > 0 && pr["portico-log", k] > 0) {
                cr = cr " " sprintf("%.4f", 1 - pr["portico-log", k] / pr["portico", k])
                if (pe["portico", k] > 0 && pe["portico-log", k] > 0)
                    ce = ce " " sprintf("%.4f", 1 - pe["portico-log", k] / pe["portico", k]) }
            printf "\nCost of the JSON log: %.1f%% of requests/s, %.1f%% of requests per CPU-second of Portico (medians; the issue allows 5%%).\n", off ? (1 - on / off) * 100 : 0, eoff ? (1 - eon / eoff) * 100 : 0
            printf "Round by round (the two runs of a round back to back): median cost %.1f%% of requests/s, %.1f%% per CPU-second; per round:%s.\n", median(cr) * 100, median(ce) * 100, cr }' \
        "$RUN/runs.tsv" >"$RUN/log-cost.md"
    cat "$RUN/log-cost.md" >&3
}

# 7: HTTP/2 over TLS to the proxy, HTTP/1.1 to the origin. h2load on CPU 1: 10 connections of
# 10 streams each; CPU time of the proxy as in the other scenarios.
printf 'round\ttarget\treq_s\tsucceeded\tfailed\tprotocol\tmean_ms\tproxy_cpu\n' >"$RUN/h2.tsv"
h2_scenario() {
    local s p0 p1 row
    for s in $(rotated portico nginx haproxy); do
        p0=$(cpu_ticks "${MPID[$s]}")
        timeout $((SECONDS_PER_RUN + 30)) taskset -c "$LOAD_CPU" h2load -D "$SECONDS_PER_RUN" \
            --warm-up-time=1 -c 10 -m 10 -t 1 "https://127.0.0.1:${H2PORT[$s]}/small" \
            >"$RUN/h2load.$ROUND.$s.out" 2>&1 ||
            problem "s7 $s: h2load failed: $(tail -n 3 "$RUN/h2load.$ROUND.$s.out" | tr '\n' ' ')"
        p1=$(cpu_ticks "${MPID[$s]}")
        awk -v r="$ROUND" -v t="$s" -v pc=$((p1 - p0)) -v hz="$HZ" -v secs="$SECONDS_PER_RUN" '
            /^finished in/ {gsub(/,/, ""); rps = $4}
            /^requests:/ {ok = $8; bad = $10 + $12 + $14}
            /^Application protocol:/ {proto = $3}
            /^time for request:/ {mean = $6; if (mean ~ /us$/) {sub(/us$/, "", mean); mean /= 1000}
                                  else if (mean ~ /ms$/) sub(/ms$/, "", mean)
                                  else if (mean ~ /s$/) {sub(/s$/, "", mean); mean *= 1000}}
            END {printf "%s\t%s\t%.0f\t%d\t%d\t%s\t%.2f\t%.1f\n", r, t, rps, ok, bad, proto, mean,
                        pc / hz / (secs + 1) * 100}' "$RUN/h2load.$ROUND.$s.out" >>"$RUN/h2.tsv"
        row=$(tail -n 1 "$RUN/h2.tsv")
        log "s7   r$ROUND $(echo "$row" | awk -F'\t' '{printf "%-12s %8.0f req/s  %s ok, %s failed, %s, mean %s ms, proxy CPU %s%%", $2, $3, $4, $5, $6, $7, $8}')"
        echo "$row" | awk -F'\t' '$5 != 0 || $6 != "h2" {exit 1}' ||
            problem "s7 $s: failed requests or not HTTP/2 (see $RUN/h2load.$ROUND.$s.out)"
        check_alive s7
    done
}

# 5 (first, on fresh processes): RSS with 1000 idle keep-alive clients.
idle_rss() {
    log "scenario 5: $IDLE_CONNS idle keep-alive connections per proxy"
    printf 'target\trss_start_kib\trss_idle_kib\topen_at_end\n' >"$RUN/mem.tsv"
    local s before with rc ready open
    for s in portico nginx nginx-nobuf haproxy; do
        before=$(rss_kib "${MPID[$s]}" VmRSS)
        timeout -k 5 120 taskset -c "$LOAD_CPU" python3 "$HERE/idle_conns.py" 127.0.0.1 "${PORT[$s]}" "$IDLE_CONNS" \
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
        printf '%s\t%s\t%s\t%s\n' "$s" "$before" "$with" "${open:-?}" >>"$RUN/mem.tsv"
        log "5    $(printf '%-12s RSS %6d KiB -> %6d KiB with %s idle clients (served %s)' "$s" "$before" "$with" "${open:-?}" "${ready:-?}")"
        check_alive s5
    done
    counters_delta s5
}

# ---------------------------------------------------------------------------------------------
# The run. Scenario 5 first, on fresh processes; then the warm-up (fills every upstream pool
# and wakes the caches; not recorded); then the rounds; then what runs once.
want s5 && idle_rss
if [ "$WARMUP" -gt 0 ] && [ "$ONLY" != " s6 " ]; then
    log "warm-up: ${WARMUP}s per server"
    for s in portico nginx nginx-nobuf haproxy portico-w2 haproxy-w2; do
        wrk_run "$WARMUP" 64 "http://127.0.0.1:${PORT[$s]}/small" || true
    done
    check_alive warmup
    scrape prev
fi

for ROUND in $(seq "$ROUNDS"); do
    [ "$ONLY" = " s6 " ] && break
    first=""
    [ "$ROUND" -eq 1 ] && first=origin
    log "round $ROUND of $ROUNDS"
    if want s1; then
        for s in $first $(rotated portico nginx haproxy); do measure s1 "$s" /small 64; done
        counters_delta s1
    fi
    if want s1b; then
        for s in $first $(rotated portico nginx haproxy); do measure s1b "$s" /small 256; done
        counters_delta s1b
    fi
    if want s2; then
        for s in $first $(rotated portico nginx nginx-nobuf haproxy); do
            BEFORE_LOAD=peak_reset AFTER_LOAD=peak_read measure s2 "$s" /1m 16
        done
        counters_delta s2
    fi
    if want s2c; then
        export BENCH_POST_BYTES=$UPLOAD_BYTES
        for s in sink $(rotated portico nginx nginx-nobuf haproxy); do
            BEFORE_LOAD=upload_before AFTER_LOAD=upload_after measure s2c "$s" /upload 16
        done
        unset BENCH_POST_BYTES
        counters_delta s2c
    fi
    if want s3; then
        for s in $first $(rotated portico nginx haproxy); do
            measure s3 "$s" /small 50 -H 'Connection: close'
        done
        counters_delta s3
    fi
    if want s4; then
        for s in $first $(rotated portico nginx haproxy); do measure s4 "$s" /err/x 50; done
        counters_delta s4
    fi
    if want s4b; then
        for s in $first $(rotated portico nginx haproxy); do measure s4b "$s" /fault/x 50; done
        counters_delta s4b
    fi
    if want s4c; then
        # The healthy load alone, then the same with the error load beside, back to back.
        for s in $(rotated portico haproxy); do
            measure s4c0 "$s" /small 64
            BEFORE_LOAD=pace_start AFTER_LOAD=pace_stop measure s4c1 "$s" /small 64
        done
        counters_delta s4c
    fi
    if want s8; then
        for s in $(rotated portico-w2 haproxy-w2); do measure s8 "$s" /small 256; done
    fi
    if want s1c; then
        syscall_counts
        counters_delta s1c
    fi
    if want s7; then
        h2_scenario
        counters_delta s7
    fi
done

ROUND=1
if want s2b; then
    log "scenario 2b: /100k, 50 connections"
    for s in origin portico nginx nginx-nobuf haproxy; do measure s2b "$s" /100k 50; done
    counters_delta s2b
fi
[ "$ONLY" = " s6 " ] || integrity "after the load"
scrape prev
want s6 && log_cost
printf 'load_end\t%s\nminutes\t%.1f\n' "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(awk -v a="$BENCH_T0" -v b="$(date +%s)" 'BEGIN {print (b - a) / 60}')" >>"$RUN/meta.tsv"

# ---------------------------------------------------------------------------------------------
stamp=$(date -u +%Y%m%d-%H%M%S)
python3 "$HERE/report.py" "$RUN" "$OUT/results.md"
# The history keeps each report and the raw files it was made from (report.py can remake it).
mkdir -p "$OUT/history/raw-$stamp"
cp "$OUT/results.md" "$OUT/history/results-$stamp.md"
cp "$RUN"/*.tsv "$RUN"/*.txt "$OUT/history/raw-$stamp/"
[ -f "$RUN/log-cost.md" ] && cp "$RUN/log-cost.md" "$OUT/history/raw-$stamp/"
echo
cat "$OUT/results.md"
echo
log "written build/bench/results.md (and build/bench/history/results-$stamp.md, raw-$stamp/)"
OK=1
exit 0
}
