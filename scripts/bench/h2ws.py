#!/usr/bin/python3
"""h2ws.py — WebSockets over HTTP/2 streams (RFC 8441) beside the same over HTTP/1.1 tunnels:
Portico's RSS and CPU for N WebSockets moving 1 KB messages, on loopback.

  scripts/bench/h2ws.py [--portico build/portico] [--sockets 500] [--per-conn 50]
                        [--rounds 40] [--port 18680]

Starts an origin (a thread per connection: the HTTP/1.1 upgrade answered, then every byte echoed
back as it came; frames are not parsed, Portico does not look at them either) and Portico with
one worker and a TLS listener (a self-signed certificate made with openssl). Then, for each
protocol in turn, opens the sockets (HTTP/2: --per-conn streams on each TLS connection, as a
browser puts a page's WebSockets on one connection; HTTP/1.1: one TLS connection each), sends
--rounds messages of 1 KB on every one of them (each round: one message on each, then every echo
awaited), closes them, and reports Portico's RSS once all were open and the CPU time (user +
system, /proc/PID/stat) it spent over the message rounds; a fresh Portico for each run, two runs
of each protocol, alternating. Loopback only; every wait has a
deadline.
"""
import argparse
import base64
import hashlib
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

import h2.config
import h2.connection
import h2.events

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
IO_S = 30.0


# ---- the origin ----

def origin_conn(s):
    s.settimeout(IO_S * 4)
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(4096)
        if not b:
            return
        head += b
    key = b""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    rest = head.split(b"\r\n\r\n", 1)[1]
    if rest:
        s.sendall(rest)
    while True:
        try:
            b = s.recv(65536)
        except OSError:
            return
        if not b:
            return
        s.sendall(b)


def origin(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1024)

    def accept():
        while True:
            s, _ = ls.accept()
            threading.Thread(target=origin_conn, args=(s,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()


# ---- WebSocket frames ----

def frame(payload):
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else
                            bytes([0x80 | 126]) + struct.pack(">H", n))
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


MSG = frame(bytes(range(256)) * 4)  # 1 KB, masked; the echo comes back as it went


def tls_socket(port, alpn):
    raw = socket.create_connection(("127.0.0.1", port), timeout=IO_S)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx.wrap_socket(raw, server_hostname="localhost")


# ---- HTTP/2: per_conn streams on one connection ----

class H2Group:
    def __init__(self, port, n):
        self.s = tls_socket(port, "h2")
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.c.initiate_connection()
        self.s.sendall(self.c.data_to_send())
        self.got = {}
        self.ok = set()
        self.sids = []
        for _ in range(n):
            sid = self.c.get_next_available_stream_id()
            self.c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                      (":scheme", "https"), (":path", "/ws"),
                                      (":authority", "localhost"),
                                      ("sec-websocket-version", "13")])
            self.sids.append(sid)
            self.got[sid] = 0
        self.s.sendall(self.c.data_to_send())
        self.until(lambda: len(self.ok) == n)

    def pump(self):
        b = self.s.recv(262144)
        if not b:
            raise SystemExit("h2: connection closed")
        for ev in self.c.receive_data(b):
            if isinstance(ev, h2.events.ResponseReceived):
                if dict(ev.headers).get(b":status") == b"200":
                    self.ok.add(ev.stream_id)
            elif isinstance(ev, h2.events.DataReceived):
                self.got[ev.stream_id] += len(ev.data)
                self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                raise SystemExit("h2: %r" % ev)
        out = self.c.data_to_send()
        if out:
            self.s.sendall(out)

    def until(self, cond):
        deadline = time.monotonic() + IO_S
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit("h2: timed out")
            self.pump()

    def round(self, r):
        for sid in self.sids:
            self.c.send_data(sid, MSG)
        self.s.sendall(self.c.data_to_send())
        want = (r + 1) * len(MSG)
        self.until(lambda: all(self.got[sid] >= want for sid in self.sids))

    def close(self):
        self.c.close_connection()
        self.s.sendall(self.c.data_to_send())
        self.s.close()


# ---- HTTP/1.1: one connection each ----

class H1Group:
    def __init__(self, port, n):
        self.socks = []
        for _ in range(n):
            s = tls_socket(port, "http/1.1")
            key = base64.b64encode(os.urandom(16))
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
            self.socks.append(s)
        for s in self.socks:
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            if not head.startswith(b"HTTP/1.1 101"):
                raise SystemExit("h1: %r" % head[:60])

    def round(self, r):
        for s in self.socks:
            s.sendall(MSG)
        for s in self.socks:
            left = len(MSG)
            while left:
                left -= len(s.recv(left))

    def close(self):
        for s in self.socks:
            s.close()


# ---- Portico ----

def proc(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / tick


def run(kind, pid, port, sockets, per_conn, rounds):
    rss0, _ = proc(pid)
    groups = []
    t0 = time.monotonic()
    for _ in range(sockets // per_conn):
        groups.append(H2Group(port, per_conn) if kind == "h2" else H1Group(port, per_conn))
    opened = time.monotonic() - t0
    rss1, cpu0 = proc(pid)
    t1 = time.monotonic()
    errors = []

    def drive(g):
        try:
            for r in range(rounds):
                g.round(r)
        except BaseException as e:  # said below
            errors.append(e)
    threads = [threading.Thread(target=drive, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t1
    rss2, cpu1 = proc(pid)
    for g in groups:
        g.close()
    if errors:
        raise SystemExit("%s: %r" % (kind, errors[0]))
    msgs = sockets * rounds
    print("%-8s %4d sockets on %3d TLS connections: opened in %.2f s; RSS %6d kB -> %6d kB "
          "(+%5d kB, %.1f kB a socket) -> %6d kB after %d messages of 1 KB each way; CPU %.2f s "
          "(%.1f us a message echoed) in %.2f s" %
          (kind, sockets, len(groups) if kind == "h2" else sockets, opened, rss0, rss1,
           rss1 - rss0, (rss1 - rss0) / sockets, rss2, msgs, cpu1 - cpu0,
           (cpu1 - cpu0) * 1e6 / msgs, wall))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--portico", default="build/portico")
    ap.add_argument("--sockets", type=int, default=500)
    ap.add_argument("--per-conn", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--port", type=int, default=18680)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="h2ws-bench-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    d + "/k.pem", "-out", d + "/c.pem", "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    origin(a.port + 1)
    with open(d + "/portico.ini", "w") as f:
        f.write("[proxy]\nlisten = 127.0.0.1:%d tls\nworkers = 1\ntls_cert = %s/c.pem\n"
                "tls_key = %s/k.pem\naccess_log = off\nmax_connections = 4096\n"
                "[upstream u]\norigin = 127.0.0.1:%d\n" % (a.port, d, d, a.port + 1))
    # a fresh Portico for each run: a run's RSS is not the one before's memory reused
    for kind in ("h2", "h1", "h2", "h1"):
        err = open(d + "/stderr.log", "a")
        p = subprocess.Popen([a.portico, "-c", d + "/portico.ini"], stderr=err)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)  # Portico starting: its port is the only sign
            run(kind, p.pid, a.port, a.sockets, a.per_conn, a.rounds)
        finally:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            err.close()


if __name__ == "__main__":
    main()
