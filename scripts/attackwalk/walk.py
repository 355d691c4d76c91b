#!/usr/bin/python3
"""walk.py BINARY SPEC... : an attacker's walk against one server, measured (README, Tests).

For each SPEC a fresh server (Portico: one worker, origin = sim, plain 18700, TLS 18701, admin
18702; SERVER=nginx or SERVER=haproxy: Debian's, one worker, in front of an nginx origin on 18711,
ports 18710/18712 and 18720/18721), a healthy client (healthy.py: small GETs one at a time on a
keep-alive connection) for 3 s before, during and 2 s after the attack, and the server's RSS,
descriptors and CPU sampled every 100 ms. SPEC is name[:N[:SECS[:ini line;ini line...]]], name
one of attacks.py's KINDS, h2flood_KIND (tests/integration/h2_frames.py's flood KIND) or
h2scale_KIND (N of those at once). Loopback only; every attack is bounded in count and time.
Files go to $TMPDIR/attackwalk (a self-signed certificate made there with openssl)."""
import os, re, subprocess, sys, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
H2F = os.path.join(HERE, "..", "..", "tests", "integration", "h2_frames.py")
D = os.path.join(os.environ.get("TMPDIR", "/tmp"), "attackwalk")
os.makedirs(D, exist_ok=True)
if not os.path.exists(D + "/cert.pem"):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    D + "/key.pem", "-out", D + "/cert.pem", "-days", "30", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    with open(D + "/both.pem", "w") as f:
        f.write(open(D + "/cert.pem").read() + open(D + "/key.pem").read())
binary = sys.argv[1]
SERVER = os.environ.get("SERVER", "portico")
PLAIN, TLS, ADMIN = {"portico": (18700, 18701, 18702), "nginx": (18710, 18712, 0),
                     "haproxy": (18720, 18721, 0)}[SERVER]


def ini(extra):
    return """[proxy]
listen = 127.0.0.1:%d
listen = 127.0.0.1:%d tls
tls_cert = %s/cert.pem
tls_key = %s/key.pem
workers = 1
admin_listen = 127.0.0.1:%d
access_log = off
error_log = %s/error.log
%s
[upstream sim]
origin = sim
[route sim]
prefix = /
upstream = sim
""" % (PLAIN, TLS, D, D, ADMIN, D, "\n".join(extra))


NGINX = """worker_processes 1;
pid %(d)s/%(name)s.pid;
error_log %(d)s/%(name)s.error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_header_timeout 10s;
  client_body_temp_path %(d)s/%(name)s.tmp; proxy_temp_path %(d)s/%(name)s.tmp;
  fastcgi_temp_path %(d)s/%(name)s.tmp; uwsgi_temp_path %(d)s/%(name)s.tmp;
  scgi_temp_path %(d)s/%(name)s.tmp;
  %(server)s
}
"""
PEERS = {
    "origin": NGINX.replace("%(server)s",
                            'server { listen 127.0.0.1:18711; location / { return 200 "ok\\n"; } }'),
    "nginx": NGINX.replace("%(server)s", """upstream o { server 127.0.0.1:18711; keepalive 32; }
  server { listen 127.0.0.1:18710; listen 127.0.0.1:18712 ssl http2;
    ssl_certificate %(d)s/cert.pem; ssl_certificate_key %(d)s/key.pem;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } }"""),
    # timeout http-request as Portico's client_header_timeout; maxconn within ulimit -n 20000
    "haproxy": """global
  maxconn 9000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 75s
frontend f
  bind 127.0.0.1:18720
  bind 127.0.0.1:18721 ssl crt %(d)s/both.pem alpn h2,http/1.1
  default_backend b
backend b
  server o 127.0.0.1:18711
"""}


def peer_conf(name):
    path = "%s/%s.conf" % (D, name)
    with open(path, "w") as f:
        f.write(PEERS[name] % {"d": D, "name": name})
    return path


def wait_port(p, t=10):
    import socket
    end = time.monotonic() + t
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", p), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def sample(pid, out, stop):
    while not stop.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            fds = len(os.listdir("/proc/%d/fd" % pid))
            with open("/proc/%d/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()
            cpu = (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
            out.append((time.monotonic(), rss, fds, cpu))
        except (OSError, AttributeError):
            break
        stop.wait(0.1)


def healthy(secs):
    return subprocess.Popen(["/usr/bin/python3", HERE + "/healthy.py", str(PLAIN), str(secs)],
                            stdout=subprocess.PIPE, text=True)


def metrics(names):
    try:
        txt = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN, timeout=5).read().decode()
    except OSError as e:
        return "metrics=%s" % e
    keep = []
    for line in txt.splitlines():
        if line.startswith(names) and not line.endswith(" 0"):
            keep.append(line.replace(" ", "="))
    return " ".join(keep)


def attack_cmd(name, n, secs):
    if name.startswith("h2flood_"):  # the tests' raw-frame flood (own good client on TLS)
        return ["/usr/bin/python3", H2F, str(TLS), "flood", name[8:]]
    if name.startswith("h2scale_"):  # N processes of a flood at once
        return ["sh", "-c", " & ".join(["%s %s %d flood %s" % ("/usr/bin/python3", H2F, TLS, name[8:])]
                                       * int(n or 8)) + "; wait"]
    port = TLS if name.startswith(("h2_", "tls_")) else PLAIN
    return ["/usr/bin/python3", HERE + "/attacks.py", name, str(port), str(n or 0), str(secs)]


def run(spec):
    parts = spec.split(":")
    name = parts[0]
    n = parts[1] if len(parts) > 1 and parts[1] else "0"
    secs = float(parts[2]) if len(parts) > 2 and parts[2] else 12.0
    extra = parts[3].split(";") if len(parts) > 3 else []
    with open(D + "/walk.ini", "w") as f:
        f.write(ini(extra))
    cmd = {"portico": [binary, "-c", D + "/walk.ini"],
           "nginx": ["/usr/sbin/nginx", "-c", peer_conf("nginx"), "-g", "daemon off;"],
           "haproxy": ["/usr/sbin/haproxy", "-db", "-f", peer_conf("haproxy")]}[SERVER]
    origin = None
    if SERVER != "portico":  # the peers' origin: an nginx answering 200 "ok"
        origin = subprocess.Popen(["/usr/sbin/nginx", "-c", peer_conf("origin"), "-g",
                                   "daemon off;"], stderr=subprocess.DEVNULL)
        wait_port(18711)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(D + "/server.stderr", "a"))
    try:
        if not wait_port(PLAIN) or not wait_port(TLS):
            print("%s: portico did not start" % spec)
            return
        samples, stop = [], threading.Event()
        pid = p.pid
        if SERVER == "nginx":  # its one worker
            pid = int(open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()[0])
        th = threading.Thread(target=sample, args=(pid, samples, stop))
        th.start()
        base = healthy(3).communicate()[0].strip()
        rss0 = samples[-1][1]
        cpu0 = samples[-1][3]
        t_att = time.monotonic()
        a = subprocess.Popen(attack_cmd(name, n, secs), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        time.sleep(1)
        during = healthy(min(secs, 8) if secs > 2 else 2).communicate()[0].strip()
        try:
            out = a.communicate(timeout=secs + 60)[0].strip()
        except subprocess.TimeoutExpired:
            a.kill()
            out = "ATTACK TIMEOUT " + a.communicate()[0]
        t_end = time.monotonic()
        after = healthy(2).communicate()[0].strip()
        m = "" if SERVER != "portico" else metrics(("portico_accept_pauses_total", "portico_client_idle_reclaimed_total",
                     "portico_http2_goaway", "portico_http2_flood", "portico_accept_errors",
                     "portico_client_timeouts", "portico_requests_total"))
        stop.set()
        th.join()
        win = [s for s in samples if s[0] >= t_att]
        peak_rss = max(s[1] for s in win)
        peak_fds = max(s[2] for s in win)
        cpu = samples[-1][3] - cpu0
        alive = p.poll() is None
        print("== %s\n  attack: %s\n  healthy before: %s\n  healthy during: %s\n  healthy after:  %s"
              "\n  rss_start_kB=%d peak_rss_kB=%d rss_end_kB=%d peak_fds=%d cpu_s=%.2f"
              " over %.1f s alive=%s\n  %s" % (spec, out.replace("\n", " | ")[-1500:], base, during,
                                             after, rss0, peak_rss, samples[-1][1], peak_fds, cpu,
                                             t_end - t_att, alive, m), flush=True)
    finally:
        if origin:
            origin.terminate()
            origin.wait()
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


for spec in sys.argv[2:]:
    run(spec)
