#!/usr/bin/env python3
"""soak.py — runs Portico under mixed traffic for a while and checks that it ends as it began.

  portico   build/portico (--portico) on 127.0.0.1 (plain HTTP/1.1, TLS with a certificate
            made for the run, h2c), a configuration with the simulator origin (healthy,
            closing, resetting, garbage, half-answering, silent: sim's endpoints), an origin on
            a loopback port nothing listens on (refused, then marked down), a WebSocket origin
            (tunnel.py) and fault rules [fault soak-*] (header_control on)
  load      load.py: keep-alive, connection-per-request, pipelining, 1xx-heavy, slow, vanishing
            and hostile clients, HTTP/1.1 over TLS, fault-shaped requests, WebSocket tunnels,
            the admin listener; h2roles.py: HTTP/2 streams and misbehaving HTTP/2 clients;
            bounded in threads and in rate
  reloads   every --reload seconds a SIGHUP, alternating between two valid configurations
            (profile, pool size, Server-Timing, 102 heartbeats, early hints); each one is
            checked: "is live" in the error log, then a new connection sees the new settings

Checks at the end (any failure: exit 1):
  - no failed request (wrong status or body, timeout, unexpected close, wrong X-Request-Id)
  - every request accounted for in the access log: by its X-Request-Id, or for requests refused
    before their id was read, by client port and status; no line the load did not cause; each
    line with the protocol the request used and the fault rule that shaped it (or none); a
    tunnel's with how it ended and the bytes it carried each way
  - the error log holds only the kinds of line the traffic causes (EXPECTED_ERRORS)
  - VmRSS at the end of the load at most 10% above VmRSS after the first minute (not checked
    for an ASan build, nor for a run shorter than RSS_MIN_SECONDS)
  - once quiet: the descriptors of the start plus two per idle pooled connection (the simulator
    is in the process: both ends are ours) plus the sockets kept from failed connects (at most
    one per worker and address family), as many threads as at the start
  - every reload live and seen; a clean exit (status 0) on SIGTERM, nothing on stderr
"""
import argparse
import collections
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402
import tunnel  # noqa: E402

SAMPLE_EVERY = 5.0      # seconds between RSS/descriptor samples
RSS_TOLERANCE = 0.10    # end of load vs after the first minute
RSS_MIN_SECONDS = 120   # shorter runs compare VmRSS at a third of the run: not checked
QUIET_WAIT = 30.0       # longest wait for descriptors to settle once the load stopped
LIVE_WAIT = 15.0        # longest wait for "is live" after a SIGHUP
RACE_BEFORE = 0.5       # a request sent on an idle connection as Portico closed it (load.RACED)
RACE_AFTER = 5.0        # is only expected from a reload's drain: from this long before a
                        # SIGHUP (sent, not yet read when the drain began) to this long after

LEFT_OUT = r"( \(\d+ more such lines left out before this one\))?"

# Error-log lines the traffic causes; anything else is reported. (name, level, message regex)
EXPECTED_ERRORS = [
    ("start", "info", r"portico \S+ listening on .*"),
    ("start", "info", r"simulator origin on 127\.0\.0\.1:\d+ \(origin = sim\)"),
    ("start", "info", r"admin endpoint on .*"),
    ("SIGHUP", "info", r"SIGHUP: reloading .*"),
    ("live", "info", r"reload: .* is live \(generation \d+, .*\)"),
    ("drained", "info", r"reload: the previous workers have finished their exchanges"),
    ("stop", "info", r"SIGTERM: stopping: listeners closed, .*"),
    ("stop", "info", r"stopped"),
    # the refusing origin, max_fails = 3: down, probed again after down_time, down again
    ("origin down", "warn", r"upstream refused: origin 127\.0\.0\.1:\d+ marked down for \d+ ms "
                            r"after \d+ failures within \d+ ms"),
    ("probe failed", "warn", r"upstream refused: origin 127\.0\.0\.1:\d+ failed its probe after "
                             r"down_time; down for another \d+ ms"),
    # ... which the load (start, each reload) warns of: max_fails on a lone origin, on purpose here
    ("lone origin", "warn", r"\S+portico\.ini:\d+: warning: max_fails = 3 with one origin: .*"),
    # tunnel.py's quiet clients (tunnel_timeout) and h2roles.py's shut windows; lines about one
    # client are rate-limited (the next one says how many were left out)
    ("tunnel idle", "info", r"request soak-\d+: tunnel to 127\.0\.0\.1:\d+ ended after [\d.]+ s: "
                            r"idle for tunnel_timeout \(\d+ bytes from the client, \d+ from the "
                            r"origin\)" + LEFT_OUT),
    ("h2 window shut", "info", r"client 127\.0\.0\.1:\d+: HTTP/2 flow-control window kept shut: "
                               r"GOAWAY" + LEFT_OUT),
    # h2roles.py's requests that crossed a reload's GOAWAY (load.RACED): their connection's count
    ("h2 past GOAWAY", "info", r"client 127\.0\.0\.1:\d+: HTTP/2: \d+ streams? past a drain's "
                               r"GOAWAY \(not processed: the client may retry them\)" + LEFT_OUT),
]

CONFIG = """\
; soak configuration {name} (written by scripts/soak/soak.py)
[proxy]
listen = 127.0.0.1:{port}
listen = 127.0.0.1:{tls} tls
listen = 127.0.0.1:{h2c} h2c
tls_cert = {dir}/cert.pem
tls_key = {dir}/key.pem
workers = 2
admin_listen = 127.0.0.1:{admin}
access_log = {dir}/access.log
error_log = {dir}/error.log
log_level = info
error_profile = {profile}
proxy_status = {proxy_status}
client_header_timeout = 2s
client_body_timeout = 2s
client_send_timeout = 3s
keepalive_timeout = 3s
max_body_size = 1m
connect_timeout = 500ms
first_byte_timeout = {first_byte}
read_timeout = 1s
send_timeout = 2s

[upstream sim]
origin = sim
keepalive = {pool}
keepalive_timeout = {pool_timeout}

[upstream refused]
origin = 127.0.0.1:{refused}
max_fails = 3
fail_window = 2s
down_time = 2s

[route refused]
prefix = /refused/
upstream = refused

[upstream ws]
origin = 127.0.0.1:{ws}
keepalive = 0
tunnel_timeout = {tunnel_timeout}

[route ws]
prefix = /ws/
upstream = ws

[route faults]
host = faults.soak.test
prefix = /
upstream = sim

[route sim]
prefix = /
upstream = sim
server_timing = {server_timing}
processing_interval = {processing}
{hints}
[faults]
header_control = on
seed = {seed}

[fault soak-status]
route = faults
header = X-Soak-Fault=status
status = 503
body = soak: fault rule soak-status
headers = Retry-After: 1

[fault soak-failure]
route = faults
header = X-Soak-Fault=failure
failure = connection_reset

[fault soak-timeout]
route = faults
header = X-Soak-Fault=timeout
failure = first_byte_timeout

[fault soak-delay]
route = faults
header = X-Soak-Fault=delay
delay = uniform(5ms,100ms)
interim = 102,103
interim_interval = 5ms

[fault soak-slow]
route = faults
header = X-Soak-Fault=slow
response_delay = uniform(10ms,300ms)

[fault soak-throttle]
route = faults
header = X-Soak-Fault=throttle
throttle = 256k

[fault soak-truncate]
route = faults
header = X-Soak-Fault=truncate
truncate = 5000

[fault soak-drop]
route = faults
header = X-Soak-Fault=drop
drop = on

[fault soak-reset]
route = faults
header = X-Soak-Fault=reset
reset = on

[fault soak-weighted]
route = faults
header = X-Soak-Fault=weighted
status = 200:0.5, 503:0.5

[fault soak-never]
route = faults
header = X-Soak-Fault=never
enabled = off
status = 500

[fault soak-idle]
header = X-Soak-Fault=idle
enabled = off
status = 500
"""

VARIANTS = [
    dict(name="A", profile="standard", proxy_status="off", first_byte="1s", pool=16,
         pool_timeout="5s", server_timing="off", processing="0", hints="",
         tunnel_timeout="1s"),
    dict(name="B", profile="cloudflare", proxy_status="on", first_byte="1500ms", pool=4,
         pool_timeout="2s", server_timing="on", processing="300ms",
         hints="early_hints = </soak.css>; rel=preload; as=style\n", tunnel_timeout="1500ms"),
]


_next_port = [int(os.environ.get("SOAK_PORT_BASE", "0") or 0)]


def free_port():
    """A free loopback port: the kernel's choice, or with SOAK_PORT_BASE the next free one from
    there (for a machine where the ports a run may take are assigned)."""
    while True:
        with socket.socket() as s:
            port = _next_port[0]
            if port:
                _next_port[0] += 1
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]


def status_of(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fds_of(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_addr(hexaddr):
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        ip = ".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return "%s:%d" % (ip, int(port, 16))


def fd_table(pid):
    """What each descriptor is: a path, or for a TCP socket its addresses and state."""
    sockets = {}
    for name in ("tcp", "tcp6"):
        with open("/proc/%d/net/%s" % (pid, name)) as f:
            for line in f.readlines()[1:]:
                c = line.split()
                sockets[c[9]] = "tcp %s -> %s %s" % (tcp_addr(c[1]), tcp_addr(c[2]),
                                                     TCP_STATES.get(c[3], c[3]))
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        out[int(fd)] = sockets.get(m.group(1), target) if m else target
    return out


# Sockets a worker keeps from a failed connect for its next one (upstream.c): one per address
# family, and the soak runs 2 workers.
SPARES_MAX = 2 * 2


def unlisted_sockets(pid):
    """Descriptors that are sockets in no /proc/net table: TCP sockets neither bound nor
    connected, i.e. the ones kept from failed connects."""
    listed = set()
    for name, inode_col in (("tcp", 9), ("tcp6", 9), ("udp", 9), ("udp6", 9), ("raw", 9),
                            ("raw6", 9), ("unix", 6), ("netlink", 9), ("packet", 8)):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                listed.update(c[inode_col] for c in (line.split() for line in f.readlines()[1:])
                              if len(c) > inode_col)
        except OSError:
            pass
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        n += bool(m and m.group(1) not in listed)
    return n


def metrics(admin):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class Soak:
    def __init__(self, args):
        self.args = args
        self.dir = os.path.abspath(args.dir)
        self.ports = dict(port=free_port(), admin=free_port(), refused=free_port(),
                          tls=free_port(), h2c=free_port(), ws=free_port())
        self.ini = os.path.join(self.dir, "portico.ini")
        self.proc = None
        self.problems = []
        self.samples = []           # (seconds since start, rss kB, fds, threads)
        self.reloads = 0
        self.sighups = []           # wall-clock times of the SIGHUPs
        self.stop = threading.Event()
        self.t0 = 0.0
        with open(args.portico, "rb") as f:
            self.sanitized = b"__asan_init" in f.read()

    def problem(self, text):
        self.problems.append(text)

    def config(self, variant):
        return CONFIG.format(dir=self.dir, seed=self.args.seed, **self.ports, **variant)

    def make_cert(self):
        """A self-signed certificate for the TLS listener, made for this run."""
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj",
                            "/CN=" + load.TLS_NAME, "-addext",
                            "subjectAltName=DNS:%s,IP:127.0.0.1" % load.TLS_NAME,
                            "-keyout", os.path.join(self.dir, "key.pem"),
                            "-out", os.path.join(self.dir, "cert.pem")],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("soak: openssl could not make the certificate:\n%s" % r.stderr)

    def write_config(self, variant):
        tmp = self.ini + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.config(variant))
        os.rename(tmp, self.ini)    # a reload reads one whole file or the other

    def check_configs(self):
        for v in VARIANTS:
            path = os.path.join(self.dir, "variant-%s.ini" % v["name"])
            with open(path, "w") as f:
                f.write(self.config(v))
            r = subprocess.run([self.args.portico, "-t", "-c", path], capture_output=True,
                               text=True)
            if r.returncode != 0:
                sys.exit("soak: configuration %s does not load:\n%s" % (v["name"], r.stderr))

    def live_lines(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return sum(1 for line in f if "] reload: " in line and " is live " in line)
        except FileNotFoundError:
            return 0

    def start(self):
        self.write_config(VARIANTS[0])
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "w")
        self.proc = subprocess.Popen([self.args.portico, "-c", self.ini],
                                     stdout=self.stderr, stderr=self.stderr)
        for _ in range(100):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.ports["admin"],
                                            timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        sys.exit("soak: portico did not come up (see %s)" % self.dir)

    def sample(self):
        pid = self.proc.pid
        return (time.monotonic() - self.t0, status_of(pid, "VmRSS"), fds_of(pid),
                status_of(pid, "Threads"))

    def monitor(self):
        next_print = 60.0
        while not self.stop.wait(SAMPLE_EVERY):
            if self.proc.poll() is not None:
                self.problem("portico exited during the load (status %s)" % self.proc.returncode)
                return
            s = self.sample()
            self.samples.append(s)
            if s[0] >= next_print:
                next_print += 60.0
                print("[soak %4.0f s] RSS %d kB, %d descriptors, %d threads, %d requests, "
                      "%d reloads" % (s[0], s[1], s[2], s[3], len(self.load.records),
                                      self.reloads), flush=True)

    def reloader(self):
        n = 0
        while not self.stop.wait(self.args.reload):
            if self.proc.poll() is not None:
                return
            n += 1
            variant = VARIANTS[n % 2]
            before = self.live_lines()
            self.write_config(variant)
            self.sighups.append(time.time())
            os.kill(self.proc.pid, signal.SIGHUP)
            end = time.monotonic() + LIVE_WAIT
            while self.live_lines() == before and time.monotonic() < end:
                time.sleep(0.05)
            if self.live_lines() == before:
                self.problem("reload %d (%s): no 'is live' line within %.0f s"
                             % (n, variant["name"], LIVE_WAIT))
                continue
            self.reloads += 1
            self.check_variant(n, variant)

    def check_variant(self, n, variant):
        """A connection made after "is live" gets the new configuration: Proxy-Status and
        Server-Timing on a proxied answer only in B."""
        rec = self.load.new("reload", "GET", "/status/200", 0)
        try:
            conn = load.Conn(self.load.addr)
            rec.port = conn.port
            conn.send(load.request_bytes("GET", "/status/200", rec.rid, close=True))
            r = conn.response("GET")
            conn.close()
            self.load.check(rec, r, load.HEALTHY)
        except (OSError, load.Proto, load.Closed) as e:
            self.load.failed(rec, e)
            return
        for field, key in (("proxy-status", "proxy_status"), ("server-timing", "server_timing")):
            want = variant[key] == "on"
            if (field in r.fields) != want:
                self.problem("reload %d (%s): %s %s on a new connection"
                             % (n, variant["name"], field, "missing" if want else "present"))

    def quiesce(self, fd0, spare0, threads0):
        """Waits until the descriptors are those of the start plus the idle pool (two each) and
        the kept sockets, and the old workers are gone; returns the last (fds, idle, spare,
        threads, metrics) seen."""
        end = time.monotonic() + QUIET_WAIT
        while True:
            m = metrics(self.ports["admin"])
            idle = int(m.get('portico_connections{side="upstream",state="idle"}', 0))
            time.sleep(0.3)     # the admin connection closes on its side too
            fds, threads = fds_of(self.proc.pid), status_of(self.proc.pid, "Threads")
            spare = unlisted_sockets(self.proc.pid) - spare0
            if (fds == fd0 + 2 * idle + spare and 0 <= spare <= SPARES_MAX
                    and threads == threads0) or time.monotonic() > end:
                return fds, idle, spare, threads, m
            time.sleep(0.5)

    def run(self):
        a = self.args
        os.makedirs(self.dir, exist_ok=True)
        self.make_cert()
        self.check_configs()
        self.ws = tunnel.Origin(self.ports["ws"])
        self.start()
        time.sleep(0.5)
        pid = self.proc.pid
        fd0, threads0, rss0 = fds_of(pid), status_of(pid, "Threads"), status_of(pid, "VmRSS")
        spare0 = unlisted_sockets(pid)
        table0 = fd_table(pid)
        print("[soak] portico pid %d on 127.0.0.1:%d (TLS %d, h2c %d, admin %d, refused origin "
              "%d, WebSocket origin %d), %d s at %d req/s, reload every %d s; run directory %s"
              % (pid, self.ports["port"], self.ports["tls"], self.ports["h2c"],
                 self.ports["admin"], self.ports["refused"], self.ports["ws"], a.seconds,
                 a.rate, a.reload, self.dir), flush=True)
        self.t0 = time.monotonic()
        self.load = load.Load(("127.0.0.1", self.ports["port"]), ("127.0.0.1", self.ports["admin"]),
                              a.rate, self.t0 + a.seconds, a.seed,
                              tls_addr=("127.0.0.1", self.ports["tls"]),
                              h2c_addr=("127.0.0.1", self.ports["h2c"]),
                              cafile=os.path.join(self.dir, "cert.pem"), ws_port=self.ports["ws"])
        helpers = [threading.Thread(target=self.monitor, daemon=True),
                   threading.Thread(target=self.reloader, daemon=True)]
        for t in helpers:
            t.start()
        stuck = self.load.run()
        end_sample = self.sample() if self.proc.poll() is None else None
        self.stop.set()
        for t in helpers:
            t.join(timeout=LIVE_WAIT + 10)
        if stuck:
            self.problem("load threads still running 30 s after the deadline: %s" % stuck)
        if self.proc.poll() is not None:
            self.problem("portico died (status %s)" % self.proc.returncode)
            return self.report(None)
        fds, idle, spare, threads, m = self.quiesce(fd0, spare0, threads0)
        if fds != fd0 + 2 * idle + spare:
            self.describe_fds(table0, fd_table(pid))
        idle_rss = status_of(pid, "VmRSS")
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "killed after 15 s"
        self.stderr.close()
        if code != 0:
            self.problem("exit status on SIGTERM: %s" % code)
        base_at = min(60.0, a.seconds / 3)
        base = min(self.samples, key=lambda s: abs(s[0] - base_at)) if self.samples else None
        figures = dict(fd0=fd0, fds=fds, idle=idle, spare=spare, threads0=threads0, threads=threads,
                       rss0=rss0, base=base, end=end_sample, idle_rss=idle_rss, metrics=m,
                       peak=max((s[1] for s in self.samples), default=0))
        if fds != fd0 + 2 * idle + spare:
            self.problem("descriptors: %d at the end, %d at the start + 2 x %d idle pooled + %d "
                         "kept from failed connects" % (fds, fd0, idle, spare))
        if not 0 <= spare <= SPARES_MAX:
            self.problem("sockets kept from failed connects: %d, at most %d" % (spare, SPARES_MAX))
        if threads != threads0:
            self.problem("threads: %d at the end, %d at the start" % (threads, threads0))
        if self.rss_unchecked():
            pass
        elif base and end_sample and end_sample[1] > base[1] * (1 + RSS_TOLERANCE):
            self.problem("RSS grew: %d kB at the end, %d kB at %.0f s (+%.1f%%)"
                         % (end_sample[1], base[1], base[0], 100.0 * (end_sample[1] / base[1] - 1)))
        return self.report(figures)

    def describe_fds(self, before, after):
        """Says which kinds of descriptor there are more (or fewer) of than at the start, and
        lists the TCP sockets that were not there."""
        def kind(what):
            return re.sub(r"\[\d+\]|:\d+ ->.*| -> .*", "", what)
        k0 = collections.Counter(kind(v) for v in before.values())
        k1 = collections.Counter(kind(v) for v in after.values())
        diff = {k: k1[k] - k0[k] for k in set(k0) | set(k1) if k1[k] != k0[k]}
        self.problem("descriptors by kind, end minus start: %s"
                     % ", ".join("%s %+d" % kv for kv in sorted(diff.items())))
        new_tcp = sorted(set(after.values()) - set(before.values()))
        for what in [w for w in new_tcp if w.startswith("tcp ")][:20]:
            self.problem("descriptor at the end: %s" % what)

    # ---- logs ----

    def check_error_log(self):
        kinds = collections.Counter()
        pats = [(name, lvl, re.compile(rx)) for name, lvl, rx in EXPECTED_ERRORS]
        unexpected = []
        with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
            for line in f:
                m = re.match(r"\S+ \[(\w+)\] (.*)$", line.rstrip("\n"))
                if not m:
                    unexpected.append(line.rstrip())
                    continue
                for name, lvl, rx in pats:
                    if m.group(1) == lvl and rx.fullmatch(m.group(2)):
                        kinds[name] += 1
                        break
                else:
                    unexpected.append(line.rstrip())
        for line in unexpected[:20]:
            self.problem("error log: unexpected line: %s" % line)
        if len(unexpected) > 20:
            self.problem("error log: %d more unexpected lines" % (len(unexpected) - 20))
        with open(os.path.join(self.dir, "stderr.log"), errors="replace") as f:
            err = f.read()
        if err:
            self.problem("portico wrote to stderr:\n%s" % err[:3000])
        return kinds, len(unexpected)

    def check_access_log(self, records):
        """Matches every record to its access line. Returns the log's status counts."""
        lines = []
        with open(os.path.join(self.dir, "access.log"), errors="replace") as f:
            for n, text in enumerate(f, 1):
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    self.problem("access log line %d is not JSON: %.200s" % (n, text))
        by_id = collections.defaultdict(list)
        for e in lines:
            by_id[e.get("request_id")].append(e)
        sent = {r.rid for r in records}
        anon = collections.defaultdict(list)   # (port, status) -> lines without a sent id
        for e in lines:
            if e.get("request_id") not in sent:
                port = int(str(e.get("client", ":0")).rpartition(":")[2] or 0)
                anon[(port, e.get("status"))].append(e)
        missing = []
        for r in records:
            found = by_id.get(r.rid, [])
            if len(found) > 1:
                missing.append("%s %s %s: %d log lines" % (r.rid, r.method, r.path, len(found)))
            if r.outcome in (load.DISCARDED, load.RACED):
                if found:
                    missing.append("%s (%s: %s) was logged" % (r.rid, r.outcome, r.note))
                continue
            if not found and r.status is not None and anon.get((r.port, r.status)):
                found = [self.claim(anon[(r.port, r.status)], r)]
            if not found:
                if r.outcome != load.FAILED:
                    missing.append("%s %s %s (%s %s): no log line"
                                   % (r.rid, r.method, r.path, r.outcome, r.status))
                continue
            e = found[0]
            detail = e.get("detail") or ""
            if r.outcome == load.FAILED:
                r.note += " [log: %s %s]" % (e.get("status"), detail)
                continue
            # Every line names the protocol the request came in (none for a head that did not
            # parse: only hostile requests) and the fault rule that shaped it, or none.
            if e.get("proto") != r.proto and not (e.get("proto") is None and r.role == "hostile"):
                missing.append("%s %s %s: sent as %s, logged as %s"
                               % (r.rid, r.role, r.path, r.proto, e.get("proto")))
            if e.get("fault") != r.fault_for(e.get("status")):
                missing.append("%s %s %s: logged status %s with fault %s, expected %s"
                               % (r.rid, r.role, r.path, e.get("status"), e.get("fault"),
                                  r.fault_for(e.get("status"))))
            elif r.outcome == load.ANSWERED and e.get("status") != r.status:
                missing.append("%s %s: answered %s, logged %s" % (r.rid, r.path, r.status,
                                                                  e.get("status")))
            elif r.outcome == load.CUT and (e.get("status") != r.status or not e.get("aborted")):
                missing.append("%s %s: cut off after the head, logged %s aborted=%s"
                               % (r.rid, r.path, e.get("status"), e.get("aborted")))
            elif r.outcome in (load.VANISHED, load.STALLED) and not detail.startswith(r.left):
                missing.append("%s %s: %s, logged %s %r" % (r.rid, r.path, r.outcome,
                                                            e.get("status"), detail))
            elif r.outcome == load.DROPPED and e.get("status") != 444:
                missing.append("%s %s: dropped by its fault, logged %s %r"
                               % (r.rid, r.path, e.get("status"), detail))
            elif r.outcome == load.TUNNELED:
                words, sent, got = r.tunnel
                if (e.get("status") != 101 or "tunnel: " + words not in detail
                        or e.get("bytes_in") != sent or e.get("bytes_out") != got):
                    missing.append("%s %s: tunnel ended by %s, %d bytes each way; logged %s "
                                   "%r, bytes_in %s, bytes_out %s"
                                   % (r.rid, r.path, words, sent, e.get("status"), detail,
                                      e.get("bytes_in"), e.get("bytes_out")))
        leftover = [e for group in anon.values() for e in group]
        for e in leftover[:10]:
            missing.append("log line the load did not cause: %s %s %s %s" % (
                e.get("request_id"), e.get("client"), e.get("status"), e.get("path")))
        for text in missing[:30]:
            self.problem("access log: %s" % text)
        if len(missing) > 30:
            self.problem("access log: %d more" % (len(missing) - 30))
        return collections.Counter(e.get("status") for e in lines), len(lines)

    @staticmethod
    def claim(group, r):
        """Takes r's line out of the lines of its client port and status that carry no id the
        load sent: over a long soak a port comes back many times (a hostile HTTP/1.1 request
        and a malformed HTTP/2 stream, both 400), so the line of r's protocol (none for a head
        that did not parse) written nearest to r's time."""
        def distance(e):
            proto_ok = e.get("proto") == r.proto or (e.get("proto") is None and
                                                     r.role == "hostile")
            try:
                t = datetime.datetime.strptime(e.get("time", ""), "%Y-%m-%dT%H:%M:%S.%fZ")
                t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                t = 0.0
            return (not proto_ok, abs(t - r.time))
        best = min(group, key=distance)
        group.remove(best)
        return best

    def rss_unchecked(self):
        """Why VmRSS is not checked, or None when it is."""
        if self.sanitized:
            return "ASan's quarantine and shadow memory grow for their own reasons"
        if self.args.seconds < RSS_MIN_SECONDS:
            return "shorter than %d s, the allocator is still warming up" % RSS_MIN_SECONDS
        return None

    def near_reload(self, t):
        """Whether wall-clock time t is within a reload's drain window (RACE_BEFORE/AFTER)."""
        return any(-RACE_BEFORE <= t - h <= RACE_AFTER for h in self.sighups)

    def report(self, fig):
        records = self.load.records
        with open(os.path.join(self.dir, "records.tsv"), "w") as f:
            f.write("time\tid\trole\tmethod\tpath\tport\toutcome\tstatus\tinterim\tnote\n")
            for r in records:
                f.write("%.3f\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n" % (
                    r.time, r.rid, r.role, r.method, r.path, r.port, r.outcome, r.status,
                    r.interim, r.note))
        for r in records:
            if r.outcome is None:
                r.outcome, r.note = load.FAILED, "never settled (the client's own error)"
            if r.outcome == load.RACED and not self.near_reload(r.time):
                r.outcome, r.note = load.FAILED, "unanswered far from a reload (%s)" % r.note
        failed = [r for r in records if r.outcome == load.FAILED]
        statuses, nlines = self.check_access_log(records)
        kinds, unexpected = self.check_error_log()
        for r in failed[:30]:
            self.problem("request %s (%s) %s %s: %s" % (r.rid, r.role, r.method, r.path, r.note))
        if len(failed) > 30:
            self.problem("%d more failed requests" % (len(failed) - 30))
        for text in self.load.problems[:10]:
            self.problem(text)
        outcomes = collections.Counter(r.outcome for r in records)
        roles = collections.Counter(r.role for r in records)
        out = []
        out.append("== soak summary (%d s, %d req/s at most, seed %d) =="
                   % (self.args.seconds, self.args.rate, self.args.seed))
        def counts(counter, sep=" "):
            return ", ".join("%s%s%d" % (k, sep, v)
                             for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))
        out.append("requests     %d sent, %d access-log lines; %s"
                   % (len(records), nlines, counts(outcomes)))
        out.append("by role      %s" % counts(roles))
        out.append("by protocol  %s" % counts(collections.Counter(r.proto for r in records)))
        out.append("faults       %s" % counts(collections.Counter(
            r.fault_for(r.status) for r in records if r.fault_for(r.status))))
        out.append("statuses     %s" % counts(statuses, ": "))
        out.append("connections  closed by Portico between requests: %d (%d of them idle past "
                   "keepalive_timeout); admin requests: %d"
                   % (self.load.server_closes + self.load.idle_closes, self.load.idle_closes,
                      self.load.admin_requests))
        out.append("reloads      %d live (every %d s)" % (self.reloads, self.args.reload))
        out.append("error log    %s; unexpected: %d"
                   % (", ".join("%s %d" % kv for kv in kinds.items()),
                      unexpected))
        if fig:
            m = fig["metrics"]
            base, end = fig["base"], fig["end"]
            out.append("RSS          start %d kB, at %.0f s %d kB, end of load %d kB (%+.1f%%), "
                       "peak %d kB, quiet %d kB%s"
                       % (fig["rss0"], base[0] if base else 0, base[1] if base else 0,
                          end[1] if end else 0,
                          100.0 * (end[1] / base[1] - 1) if base and end else 0.0,
                          fig["peak"], fig["idle_rss"],
                          " (not checked: %s)" % self.rss_unchecked() if self.rss_unchecked()
                          else ""))
            out.append("descriptors  start %d, end %d, idle pool %d, kept from failed connects %d "
                       "(expected %d)" % (fig["fd0"], fig["fds"], fig["idle"], fig["spare"],
                                          fig["fd0"] + 2 * fig["idle"] + fig["spare"]))
            out.append("threads      start %d, end %d" % (fig["threads0"], fig["threads"]))
            out.append("metrics      interim relayed %d, dropped %d; client aborts %d; upstream "
                       "connects %d, reused %d, retries %d, unsolicited %d"
                       % tuple(int(m.get(k, 0)) for k in (
                           "portico_interim_relayed_total", "portico_interim_dropped_total",
                           "portico_client_aborts_total", "portico_upstream_connects_total",
                           "portico_upstream_reused_total", "portico_upstream_retries_total",
                           "portico_upstream_unsolicited_total")))
        out.append("result       %s" % ("PASS" if not self.problems else
                                        "FAIL (%d problems)" % len(self.problems)))
        for p in self.problems:
            out.append("  - " + p)
        text = "\n".join(out)
        print(text, flush=True)
        with open(os.path.join(self.dir, "summary.txt"), "w") as f:
            f.write(text + "\n")
        return 0 if not self.problems else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--portico", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--rate", type=int, default=200)
    p.add_argument("--reload", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.seconds < 10 or args.rate < 1 or args.reload < 1:
        sys.exit("soak: --seconds at least 10, --rate and --reload at least 1")
    soak = Soak(args)
    try:
        code = soak.run()
    finally:
        if soak.proc and soak.proc.poll() is None:
            soak.proc.kill()
            soak.proc.wait()
    sys.exit(code)


if __name__ == "__main__":
    main()
