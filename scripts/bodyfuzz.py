#!/usr/bin/python3
"""bodyfuzz.py — a seeded, bounded, differential fuzzer of Portico's body relay.

Runs the real binary (twice: `splice = on` and `off`) in front of its own raw-socket origin on
loopback and drives random client connections through it: HTTP/1.1 plain or over TLS, HTTP/2
(h2c or TLS, python3-h2), with random sizes (0, 1, around 16/32/64 KiB, 128 KiB, the splice
pipe's 1 MiB, 2 MiB, 4 MiB + 1, random up to 8 MiB), framings (Content-Length, chunked with
extensions and trailers, close-delimited, HEAD, 204, 304), uploads (Content-Length or chunked,
sometimes with `Expect: 100-continue`), origin writes and client reads in random segments at
random pace, keep-alive and pipelining, bytes past Content-Length. Every body is checked byte
for byte (length and SHA-256) and for framing: responses at the client, requests at the origin.

Usage:
  /usr/bin/python3 scripts/bodyfuzz.py [--bin build/portico] [--seed S] [--cases N]
        [--time SECONDS] [--only K | --first K] [--port-base P] [--workdir DIR] [--tiny]
        [--table] [-v]

A failing case is printed with its seed and number; `--seed S --only K` runs it alone (with the
same binaries and settings). `--tiny` also writes and reads bodies of 64 KiB to 1 MiB in steps
as small as 1 byte (slow); `--table` prints the cases and bytes checked by kind. Loopback only,
ports P..P+29 (default 18400); every wait has a deadline, the run stops after N cases or
SECONDS, whichever comes first. Exit 0: no defect. By hand, not part of `make test` (README,
*Tests*).

Not a defect: bytes past a Content-Length that come after the client's next request went out
answer that request (README, *What a hostile origin cannot do*); the origin here sends them in
the same write as the response's end, so they are always seen first.
"""

import argparse
import collections
import hashlib
import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KIB = 1024
MIB = 1024 * KIB
CASE_DEADLINE = 60.0     # seconds one case (one client connection) may take
IO_TIMEOUT = 20.0        # longest silence on any socket before the case fails
TINY = False             # --tiny: tiny steps for bodies up to 1 MiB too (slow)
ORIGIN_IDLE = 300.0      # the origin keeps a connection (pooled by Portico) this long

# Size classes: boundaries of the relay (16/32 KiB buffers, the 64 KiB splice threshold, the
# pipe size, 1 MiB pipes) and beyond; weights keep the big ones rarer.
SIZE_CLASSES = [
    ("0", lambda r: 0, 6),
    ("1", lambda r: 1, 6),
    ("small", lambda r: r.randint(2, 16 * KIB - 2), 6),
    ("16k", lambda r: 16 * KIB + r.randint(-1, 1), 6),
    ("32k", lambda r: 32 * KIB + r.randint(-1, 1), 6),
    ("64k", lambda r: 64 * KIB + r.randint(-1, 1), 10),
    ("128k", lambda r: 128 * KIB + r.randint(-1, 1), 4),
    ("mid", lambda r: r.randint(64 * KIB + 2, 1 * MIB - 2), 6),
    ("1m", lambda r: 1 * MIB + r.randint(-1, 1), 4),       # the splice pipe's size
    ("2m", lambda r: 2 * MIB + r.randint(-1, 1), 1),
    ("4m+1", lambda r: 4 * MIB + 1, 1),
    ("rand8m", lambda r: r.randint(0, 8 * MIB), 1),
]

RESP_FRAMINGS = [("cl", 10), ("chunked", 6), ("close", 3), ("head", 2), ("204", 1), ("304", 1)]
REQ_FRAMINGS = [("none", 5), ("cl", 5), ("chunked", 3)]


def pick(rng, table):
    total = sum(w for *_, w in table)
    x = rng.uniform(0, total)
    for row in table:
        x -= row[-1]
        if x <= 0:
            return row
    return table[-1]


def logsize(rng, lo, hi):
    """A segment size, log-uniform in lo..hi."""
    import math
    return max(lo, min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))


def seg_size(rng, total, maxseg, tiny_max=1 * MIB):
    """A write or read size up to maxseg; at least up to 4 KiB for totals over 64 KiB, whose
    bytes one at a time would take this Python minutes (tiny steps are tried on small ones),
    unless --tiny and total <= tiny_max."""
    tiny = total <= 64 * KIB or (TINY and total <= tiny_max)
    return logsize(rng, 1, maxseg if tiny else max(maxseg, 4 * KIB))


def pick_size(rng):
    name, f, _ = pick(rng, SIZE_CLASSES)
    return name, f(rng)


def body_bytes(seed, n):
    return random.Random(seed).randbytes(n)


class Defect(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Case generation

class Exchange:
    """One request and its response, as the case's seed makes them."""

    def __init__(self, rng, proto, idx, last, allow_close):
        self.idx = idx
        self.method = rng.choice(["GET", "GET", "POST", "PUT", "HEAD"])
        self.resp = pick(rng, RESP_FRAMINGS)[0]
        if self.resp == "head":
            self.method = "HEAD"
        elif self.method == "HEAD":
            self.resp = "head"
        if self.resp == "close" and not (last and allow_close) and proto.startswith("h1"):
            self.resp = "cl"
        if self.resp == "304" and self.method != "GET":
            self.resp = "204"
        self.resp_class, self.resp_size = pick_size(rng)
        if self.resp in ("204", "304"):
            self.resp_class, self.resp_size = "0", 0
        self.resp_seed = rng.getrandbits(64)
        self.req_framing = "none"
        self.req_class, self.req_size = "0", 0
        if self.method in ("POST", "PUT"):
            self.req_framing = pick(rng, REQ_FRAMINGS)[0]
            if self.req_framing == "none":
                self.req_framing = "cl"
            self.req_class, self.req_size = pick_size(rng)
        self.req_seed = rng.getrandbits(64)
        self.expect = self.req_size > 0 and rng.random() < 0.25
        self.origin_100 = rng.random() < 0.7        # the origin answers 100 itself
        self.extra = self.resp == "cl" and rng.random() < 0.1      # bytes past Content-Length
        self.chunk_max = rng.choice([1, 16, 4096, 100000, 100000])
        self.chunk_ext = rng.random() < 0.3
        self.trailers = self.resp == "chunked" and rng.random() < 0.3
        self.req_chunk_max = rng.choice([1, 100, 4096, 100000])
        self.req_trailers = self.req_framing == "chunked" and rng.random() < 0.3
        self.head_with_body = rng.random() < 0.5   # head and first body bytes in one write
        self.seg_max = rng.choice([1, 64, 1500, 16 * KIB, 64 * KIB, 256 * KIB])
        self.pauses = rng.choice([0, 0, 3, 10])    # how many pauses (0..20 ms) the origin makes
        self.wseed = rng.getrandbits(64)
        self.path = None                           # set by the case


class Case:
    def __init__(self, seed, k):
        self.seed, self.k = seed, k
        rng = random.Random(f"{seed}:{k}")
        self.rng = rng
        self.proto = rng.choice(["h1", "h1", "h1", "h1tls", "h2c", "h2tls"])
        self.splice = rng.random() < 0.6
        n = rng.randint(1, 4)
        allow_close = rng.random() < 0.5
        self.exchanges = [Exchange(rng, self.proto, i, i == n - 1, allow_close) for i in range(n)]
        self.pipeline = self.proto.startswith("h1") and rng.random() < 0.25
        self.rcvbuf = rng.choice([0, 0, 0, 4096, 16384])
        self.read_max = rng.choice([1, 100, 4096, 64 * KIB, 256 * KIB])
        total = sum(e.resp_size for e in self.exchanges)
        if total > 256 * KIB:
            self.read_max = max(self.read_max, 4096)
        self.read_pauses = rng.choice([0, 0, 5, 20])
        self.send_max = rng.choice([1, 1000, 16 * KIB, 256 * KIB])
        self.h2_concurrent = rng.random() < 0.5
        for ex in self.exchanges:
            ex.path = f"/bf/{seed}/{k}/{ex.idx}"

    def describe(self):
        xs = ", ".join(f"{e.method} req={e.req_framing}:{e.req_size}{'+expect' if e.expect else ''}"
                       f" resp={e.resp}:{e.resp_size}{'+extra' if e.extra else ''}"
                       for e in self.exchanges)
        return (f"proto={self.proto} splice={'on' if self.splice else 'off'} "
                f"pipeline={self.pipeline} rcvbuf={self.rcvbuf} read_max={self.read_max} "
                f"[{xs}]")


# ----------------------------------------------------------------------------------------------
# The origin: raw sockets, one thread per connection, checks each request body it receives.

class Origin:
    def __init__(self, port):
        self.registry = {}           # path -> Exchange
        self.results = {}            # path -> list of error strings ([] = checked fine)
        self.lock = threading.Lock()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(128)
        self.stop = False
        self.tainted_requests = []
        self.errors = []             # how origin connections ended other than by a close
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stop:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def record(self, path, err):
        with self.lock:
            self.results.setdefault(path, [])
            if err:
                self.results[path].append(err)

    def serve(self, s):
        s.settimeout(ORIGIN_IDLE)
        buf = bytearray()
        tainted = None
        try:
            while True:
                head = read_head(s, buf)
                if head is None:
                    return
                line, fields = parse_head(head)
                method, path, _ = line.split(" ", 2)
                ex = self.registry.get(path)
                if tainted is not None:
                    self.tainted_requests.append(f"{path} on a connection that sent bytes "
                                                 f"past Content-Length ({tainted})")
                if ex is None:
                    s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                err = self.check_request(s, buf, ex, method, fields)
                self.record(path, err)
                if err:
                    return
                more = self.respond(s, ex)
                if not more:
                    return
                if ex.extra:
                    tainted = path
        except (OSError, ValueError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            s.close()

    def check_request(self, s, buf, ex, method, fields):
        if method != ex.method:
            return f"origin got method {method}, sent {ex.method}"
        te = fields.get("transfer-encoding")
        cl = fields.get("content-length")
        if te is not None and cl is not None:
            return "origin got both Transfer-Encoding and Content-Length"
        if fields.get("expect", "").lower() == "100-continue":
            if ex.origin_100:
                s.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if te is not None:
            if te.lower() != "chunked":
                return f"origin got Transfer-Encoding {te}"
            body, _ = read_chunked(s, buf)
        elif cl is not None:
            body = read_exact(s, buf, int(cl))
        else:
            body = b""
        want = body_bytes(ex.req_seed, ex.req_size) if ex.req_framing != "none" else b""
        if len(body) != len(want) or hashlib.sha256(body).digest() != hashlib.sha256(want).digest():
            return (f"origin: request body {len(body)} bytes sha {sha(body)}, sent {len(want)} "
                    f"sha {sha(want)}; first difference at {first_diff(body, want)}")
        return None

    def respond(self, s, ex):
        """Writes the response in random segments; False when the connection is to close."""
        wr = random.Random(ex.wseed)
        body = body_bytes(ex.resp_seed, ex.resp_size)
        status = {"204": "204 No Content", "304": "304 Not Modified"}.get(ex.resp, "200 OK")
        h = [f"HTTP/1.1 {status}", "X-Case: bf"]
        payload = b""
        if ex.resp == "cl":
            h.append(f"Content-Length: {len(body)}")
            payload = body + (b"GARBAGE-PAST-CONTENT-LENGTH\r\n" if ex.extra else b"")
        elif ex.resp == "chunked":
            h.append("Transfer-Encoding: chunked")
            if ex.trailers:
                h.append("Trailer: X-Digest")
            payload = chunk_encode(wr, body, ex.chunk_max, ex.chunk_ext,
                                   [("X-Digest", sha(body))] if ex.trailers else [])
        elif ex.resp == "close":
            h.append("Connection: close")
            payload = body
        elif ex.resp == "head":
            if wr.random() < 0.8:
                h.append(f"Content-Length: {len(body)}")
            else:
                h.append("Transfer-Encoding: chunked")
        head = ("\r\n".join(h) + "\r\n\r\n").encode()
        if ex.head_with_body or (ex.extra and not body):
            # (bytes past Content-Length go in the same write as the response's end: README,
            # those coming after the client's next request went out answer that request)
            wire = [head + payload]
        else:
            wire = [head, payload]
        pauses = ex.pauses
        for part in wire:
            off = 0
            while off < len(part):
                n = seg_size(wr, len(part), ex.seg_max)
                # bytes past Content-Length go with the last body bytes, in one write
                if ex.extra and off + n >= len(part) - 40:
                    n = len(part) - off
                s.sendall(part[off:off + n])
                off += n
                if pauses and wr.random() < 0.1:
                    pauses -= 1
                    time.sleep(wr.uniform(0, 0.020))
        if ex.resp == "close":
            s.shutdown(socket.SHUT_WR)
            s.close()
            return False
        return True


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else None


def chunk_encode(rng, body, chunk_max, ext, trailers):
    out = bytearray()
    off = 0
    while off < len(body):
        n = min(seg_size(rng, len(body), chunk_max), len(body) - off)
        out += f"{n:x}".encode()
        if ext and rng.random() < 0.5:
            out += b';ext=1;q="a b"'
        out += b"\r\n" + body[off:off + n] + b"\r\n"
        off += n
    out += b"0"
    if ext:
        out += b";last"
    out += b"\r\n"
    for k, v in trailers:
        out += f"{k}: {v}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# HTTP/1.1 parsing over a buffered socket

def recv_more(s, buf, n=256 * KIB):
    d = s.recv(n)
    if not d:
        return False
    buf += d
    return True


def read_head(s, buf):
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = bytes(buf[:i])
            del buf[:i + 4]
            return head
        if len(buf) > 65536:
            raise ValueError("head too large")
        if not recv_more(s, buf):
            if buf:
                raise ValueError(f"EOF inside a head: {bytes(buf[:80])!r}")
            return None


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        k = k.strip().lower()
        v = v.strip()
        fields[k] = fields[k] + ", " + v if k in fields else v
    return lines[0], fields


def read_exact(s, buf, n, recv=None):
    recv = recv or recv_more
    while len(buf) < n:
        if not recv(s, buf):
            raise ValueError(f"EOF after {len(buf)} of {n} body bytes")
    out = bytes(buf[:n])
    del buf[:n]
    return out


def read_line(s, buf, recv=None):
    recv = recv or recv_more
    while True:
        i = buf.find(b"\r\n")
        if i >= 0:
            ln = bytes(buf[:i])
            del buf[:i + 2]
            return ln
        if len(buf) > 8192:
            raise ValueError("chunk line too long")
        if not recv(s, buf):
            raise ValueError("EOF in a chunk line")


def read_chunked(s, buf, recv=None):
    body = bytearray()
    while True:
        ln = read_line(s, buf, recv)
        size_s = ln.split(b";", 1)[0].strip()
        if not size_s or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
            raise ValueError(f"bad chunk size line {ln[:40]!r}")
        n = int(size_s, 16)
        if n == 0:
            break
        body += read_exact(s, buf, n, recv)
        if read_exact(s, buf, 2, recv) != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
    trailers = {}
    while True:
        ln = read_line(s, buf, recv)
        if not ln:
            break
        k, _, v = ln.decode("latin-1").partition(":")
        trailers[k.strip().lower()] = v.strip()
    return bytes(body), trailers


# ----------------------------------------------------------------------------------------------
# Clients

class Pace:
    """Random read sizes and pauses on the client side."""

    def __init__(self, case):
        self.rng = random.Random(f"{case.seed}:{case.k}:pace")
        self.read_max = case.read_max
        self.pauses = case.read_pauses
        self.send_max = case.send_max

    def recv(self, s, buf):
        if self.pauses and self.rng.random() < 0.05:
            self.pauses -= 1
            time.sleep(self.rng.uniform(0, 0.020))
        try:
            d = s.recv(logsize(self.rng, 1, self.read_max))
        except ssl.SSLZeroReturnError:
            return False
        if not d:
            return False
        buf += d
        return True

    def send(self, s, data):
        off = 0
        pauses = 3
        while off < len(data):
            n = seg_size(self.rng, len(data), self.send_max)
            s.sendall(data[off:off + n])
            off += n
            if pauses and self.rng.random() < 0.05:
                pauses -= 1
                time.sleep(self.rng.uniform(0, 0.020))


def h1_request(ex, rng):
    """(head bytes, body bytes on the wire) of an exchange's HTTP/1.1 request."""
    h = [f"{ex.method} {ex.path} HTTP/1.1", "Host: bodyfuzz.test"]
    body = body_bytes(ex.req_seed, ex.req_size) if ex.req_framing != "none" else b""
    wire = b""
    if ex.req_framing == "cl":
        h.append(f"Content-Length: {len(body)}")
        wire = body
    elif ex.req_framing == "chunked":
        h.append("Transfer-Encoding: chunked")
        wire = chunk_encode(rng, body, ex.req_chunk_max, ex.chunk_ext,
                            [("X-Req-Digest", sha(body))] if ex.req_trailers else [])
    if ex.expect:
        h.append("Expect: 100-continue")
    return ("\r\n".join(h) + "\r\n\r\n").encode(), wire


def check_response(ex, status, body, framing):
    want_status = {"204": 204, "304": 304}.get(ex.resp, 200)
    if status != want_status:
        raise Defect(f"{ex.path}: status {status}, origin sent {want_status}")
    want = b"" if ex.resp in ("head", "204", "304") else body_bytes(ex.resp_seed, ex.resp_size)
    if len(body) != len(want) or sha(body) != sha(want):
        raise Defect(f"{ex.path}: client got {len(body)} bytes sha {sha(body)} ({framing}), "
                     f"origin sent {len(want)} sha {sha(want)}; first difference at "
                     f"{first_diff(body, want)}")
    return len(body)


def h1_read_response(s, buf, ex, pace):
    """Reads one final response; returns (body length, whether the connection closes)."""
    while True:
        head = read_head_paced(s, buf, pace)
        if head is None:
            raise Defect(f"{ex.path}: connection closed before the response")
        line, fields = parse_head(head)
        parts = line.split(" ")
        status = int(parts[1])
        if 100 <= status < 200:
            continue
        break
    te = fields.get("transfer-encoding")
    cl = fields.get("content-length")
    closes = "close" in fields.get("connection", "").lower() or parts[0] == "HTTP/1.0"
    if te is not None and cl is not None:
        raise Defect(f"{ex.path}: response with both Transfer-Encoding and Content-Length")
    if ex.method == "HEAD" or status in (204, 304):
        if status in (204, 304) and (te is not None or (cl is not None and cl != "0")):
            raise Defect(f"{ex.path}: {status} with framing fields {te} {cl}")
        body, framing = b"", "none"
    elif te is not None:
        if te.lower() != "chunked":
            raise Defect(f"{ex.path}: Transfer-Encoding {te}")
        try:
            body, trailers = read_chunked(s, buf, pace.recv)
        except ValueError as e:
            raise Defect(f"{ex.path}: chunked response: {e}")
        framing = "chunked"
        if ex.trailers and trailers.get("x-digest") not in (None, sha(body)):
            raise Defect(f"{ex.path}: trailer X-Digest {trailers.get('x-digest')} "
                         f"for body sha {sha(body)}")
    elif cl is not None:
        try:
            body = read_exact(s, buf, int(cl), pace.recv)
        except ValueError as e:
            raise Defect(f"{ex.path}: Content-Length {cl} response: {e}")
        framing = "cl"
    else:
        if not closes:
            raise Defect(f"{ex.path}: close-delimited response without Connection: close")
        while pace.recv(s, buf):
            pass
        body = bytes(buf)
        buf.clear()
        framing = "close"
    n = check_response(ex, status, body, framing)
    return n, closes


def read_head_paced(s, buf, pace):
    while True:
        i = buf.find(b"\r\n\r\n")
        if i >= 0:
            head = bytes(buf[:i])
            del buf[:i + 4]
            return head
        if not pace.recv(s, buf):
            if buf:
                raise Defect(f"EOF inside a response head: {bytes(buf[:80])!r}")
            return None


def connect(port, case, alpn=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if case.rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, case.rcvbuf)
    s.settimeout(IO_TIMEOUT)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if alpn:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols([alpn])
        s = ctx.wrap_socket(s, server_hostname="localhost")
        if s.selected_alpn_protocol() != alpn:
            raise Defect(f"ALPN {s.selected_alpn_protocol()}, asked {alpn}")
    return s


def run_h1(case, port, stats):
    pace = Pace(case)
    rng = random.Random(f"{case.seed}:{case.k}:client")
    s = connect(port, case, "http/1.1" if case.proto == "h1tls" else None)
    buf = bytearray()
    try:
        exs = list(case.exchanges)
        i = 0
        while i < len(exs):
            # a pipelined batch: requests without Expect sent back to back, then read in order
            batch = [exs[i]]
            if case.pipeline and not exs[i].expect:
                while (i + len(batch) < len(exs) and not exs[i + len(batch)].expect
                       and rng.random() < 0.7):
                    batch.append(exs[i + len(batch)])
            if len(batch) > 1:
                wire = b"".join(b"".join(h1_request(ex, rng)) for ex in batch)
                pace.send(s, wire)
            else:
                ex = batch[0]
                head, wire = h1_request(ex, rng)
                if ex.expect:
                    pace.send(s, head)
                    # wait for the 100 (the origin's or Portico's after continue_timeout)
                    h = read_head_paced(s, buf, pace)
                    if h is None or parse_head(h)[0].split(" ")[1] != "100":
                        raise Defect(f"{ex.path}: expected 100 Continue, got {h[:60]!r}")
                    pace.send(s, wire)
                else:
                    pace.send(s, head + wire)
            for ex in batch:
                n, closes = h1_read_response(s, buf, ex, pace)
                stats.add(case, ex, n)
                if closes and ex.resp != "close":
                    raise Defect(f"{ex.path}: Portico closed the client connection after a "
                                 f"{ex.resp} response")
                if closes:
                    if ex is not exs[-1]:
                        raise Defect(f"{ex.path}: connection closed with exchanges left")
                    return
            i += len(batch)
        # nothing may follow the last response (a body after HEAD, 204 or 304, bytes past a
        # Content-Length): give late bytes 50 ms to show
        if not buf:
            s.settimeout(0.05)   # (TLS: a readable socket may hold only a session ticket)
            try:
                pace.recv(s, buf)
            except OSError:
                pass
        if buf:
            raise Defect(f"extra {len(buf)} bytes after the last response: {bytes(buf[:60])!r}")
    finally:
        s.close()


def run_h2(case, port, stats):
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    pace = Pace(case)
    s = connect(port, case, "h2" if case.proto == "h2tls" else None)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:
                          random.Random(case.k).choice([65535, 16384, 1 << 20])})
    s.sendall(conn.data_to_send())
    # Portico's SETTINGS first: a client busy sending a big upload in tiny frames would not
    # acknowledge them within client_header_timeout (README: the connection is closed)
    settled = False
    while not settled:
        d = s.recv(65536)
        if not d:
            raise Defect("h2: connection closed before SETTINGS")
        settled = any(isinstance(ev, h2.events.RemoteSettingsChanged)
                      for ev in conn.receive_data(d))
    s.sendall(conn.data_to_send())
    streams = {}         # stream id -> dict
    waiting = list(case.exchanges)
    deadline = time.monotonic() + CASE_DEADLINE
    rng = random.Random(f"{case.seed}:{case.k}:h2")

    def open_stream(ex):
        sid = conn.get_next_available_stream_id()
        hdrs = [(":method", ex.method), (":path", ex.path), (":scheme", "https"
                if case.proto == "h2tls" else "http"), (":authority", "bodyfuzz.test")]
        body = body_bytes(ex.req_seed, ex.req_size) if ex.req_framing != "none" else b""
        if ex.req_framing == "cl":
            hdrs.append(("content-length", str(len(body))))
        if ex.expect:
            hdrs.append(("expect", "100-continue"))
        conn.send_headers(sid, hdrs, end_stream=ex.req_framing == "none")
        streams[sid] = dict(ex=ex, body=body, off=0, ready=not ex.expect,
                            sent_end=ex.req_framing == "none", data=bytearray(), status=None,
                            done=False)

    def pump_sends():
        for sid, st in streams.items():
            if st["sent_end"] or not st["ready"]:
                continue
            while st["off"] < len(st["body"]):
                win = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if win <= 0:
                    break
                # (one h2 DATA frame a byte: ~30 s a MiB in python3-h2; 1-byte writes ~10 s)
                n = min(win, seg_size(rng, len(st["body"]), case.send_max, 256 * KIB),
                        len(st["body"]) - st["off"])
                conn.send_data(sid, st["body"][st["off"]:st["off"] + n])
                st["off"] += n
            if st["off"] == len(st["body"]):
                if st["ex"].req_trailers and rng.random() < 0.5:
                    conn.send_headers(sid, [("x-req-digest", sha(st["body"]))], end_stream=True)
                else:
                    conn.end_stream(sid)
                st["sent_end"] = True

    def h2_state():
        return "; ".join(f"stream {sid}: sent {st['off']}/{len(st['body'])} "
                         f"end={st['sent_end']} ready={st['ready']} status={st['status']} "
                         f"got={len(st['data'])}" for sid, st in streams.items()) + \
            f"; connection window {conn.outbound_flow_control_window}"

    try:
        while waiting or any(not st["done"] for st in streams.values()):
            if time.monotonic() > deadline:
                raise Defect(f"h2 case deadline passed: {h2_state()}")
            if waiting and (case.h2_concurrent or all(st["done"] for st in streams.values())):
                open_stream(waiting.pop(0))
                continue
            pump_sends()
            out = conn.data_to_send()
            if out:
                pace.send(s, out)
            if isinstance(s, ssl.SSLSocket) and s.pending():
                pass
            else:
                r, _, _ = select.select([s], [], [], IO_TIMEOUT)
                if not r:
                    raise Defect(f"h2: no frame within the I/O timeout: {h2_state()}")
            buf = bytearray()
            if not pace.recv(s, buf):
                raise Defect("h2: connection closed by Portico")
            for ev in conn.receive_data(bytes(buf)):
                sid = getattr(ev, "stream_id", None)
                st = streams.get(sid)
                if isinstance(ev, h2.events.InformationalResponseReceived):
                    st["ready"] = True
                elif isinstance(ev, h2.events.ResponseReceived):
                    st["status"] = int(dict(ev.headers)[":status"])
                    st["ready"] = True
                    st["rcl"] = dict(ev.headers).get("content-length")
                elif isinstance(ev, h2.events.DataReceived):
                    st["data"] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamEnded):
                    st["done"] = True
                    ex = st["ex"]
                    n = check_response(ex, st["status"], bytes(st["data"]), "h2")
                    if (ex.resp not in ("head", "204", "304") and st["rcl"] is not None
                            and int(st["rcl"]) != n):
                        raise Defect(f"{ex.path}: h2 content-length {st['rcl']}, body {n}")
                    if not st["sent_end"]:
                        raise Defect(f"{ex.path}: response ended before the upload")
                    stats.add(case, ex, n)
                elif isinstance(ev, h2.events.StreamReset):
                    raise Defect(f"{st['ex'].path}: stream reset, code {ev.error_code}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    raise Defect(f"h2: GOAWAY {ev.error_code} {ev.additional_data!r}")
    finally:
        s.close()


# ----------------------------------------------------------------------------------------------
# Portico instances

def make_cert(workdir):
    crt, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "60", "-keyout", key, "-out", crt],
                       check=True, capture_output=True)
    return crt, key


class Portico:
    def __init__(self, binary, workdir, name, base, origin_port, splice, crt, key):
        self.ports = dict(h1=base, h1tls=base + 1, h2c=base + 2, h2tls=base + 1, admin=base + 3)
        self.cfg = os.path.join(workdir, f"{name}.ini")
        self.log = os.path.join(workdir, f"{name}.log")
        with open(self.cfg, "w") as f:
            f.write(f"""[proxy]
listen = 127.0.0.1:{base}
listen = 127.0.0.1:{base + 1} tls
listen = 127.0.0.1:{base + 2} h2c
admin_listen = 127.0.0.1:{base + 3}
tls_cert = {crt}
tls_key = {key}
workers = 2
splice = {'on' if splice else 'off'}
access_log = {os.path.join(workdir, name + '.access')}
error_log = stderr
log_level = info

[upstream o]
origin = 127.0.0.1:{origin_port}

[route all]
prefix = /
upstream = o
continue_timeout = 300ms
""")
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen([binary, "-c", self.cfg], stdout=self.errf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"portico exited {self.proc.returncode}: see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", base + 2), timeout=1).close()
                socket.create_connection(("127.0.0.1", base + 3), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"portico did not listen within 30 s: see {self.log}")

    def metric(self, name):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics",
                                        timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        total = 0
        for ln in text.splitlines():
            if ln.startswith(name):
                total += float(ln.rsplit(" ", 1)[1])
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()
        return self.proc.returncode


class Stats:
    def __init__(self):
        self.cases = collections.Counter()
        self.bytes = collections.Counter()
        self.kinds = collections.Counter()
        self.kind_bytes = collections.Counter()
        self.req_bytes = 0
        self.exchanges = 0

    def add(self, case, ex, n):
        self.exchanges += 1
        self.bytes["response"] += n
        self.bytes["request"] += ex.req_size
        k = (ex.resp, ex.resp_class, "splice=on" if case.splice else "splice=off", case.proto)
        self.kinds[k] += 1
        self.kind_bytes[k] += n
        if ex.req_framing != "none":
            k2 = ("upload-" + ex.req_framing + ("+expect" if ex.expect else ""), ex.req_class,
                  "splice=on" if case.splice else "splice=off", case.proto)
            self.kinds[k2] += 1
            self.kind_bytes[k2] += ex.req_size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/portico")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--time", type=float, default=600)
    ap.add_argument("--only", type=int, default=None)
    ap.add_argument("--first", type=int, default=0, help="number of the first case")
    ap.add_argument("--port-base", type=int, default=18400)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--table", action="store_true", help="print the counts by kind")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="tiny segments for big bodies too")
    a = ap.parse_args()
    global TINY
    TINY = a.tiny
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = a.workdir or tempfile.mkdtemp(prefix="bodyfuzz.")
    os.makedirs(workdir, exist_ok=True)
    print(f"bodyfuzz: seed {seed}, bin {a.bin}, workdir {workdir}", flush=True)
    crt, key = make_cert(workdir)
    base = a.port_base
    origin = Origin(base + 20)
    instances = {True: Portico(a.bin, workdir, "splice-on", base, base + 20, True, crt, key),
                 False: Portico(a.bin, workdir, "splice-off", base + 10, base + 20, False, crt,
                                key)}
    stats = Stats()
    failures = []
    t0 = time.monotonic()
    ks = [a.only] if a.only is not None else range(a.first, a.first + a.cases)
    done = 0
    try:
        for k in ks:
            if time.monotonic() - t0 > a.time:
                break
            case = Case(seed, k)
            for ex in case.exchanges:
                origin.registry[ex.path] = ex
            inst = instances[case.splice]
            port = inst.ports[case.proto]
            err = None
            ct = time.monotonic()
            try:
                if case.proto.startswith("h1"):
                    run_h1(case, port, stats)
                else:
                    run_h2(case, port, stats)
            except Defect as e:
                err = str(e)
            except (OSError, ValueError, ssl.SSLError) as e:
                err = f"{type(e).__name__}: {e}"
            # the origin's verdicts of the request bodies of this case (given before it answered)
            for ex in case.exchanges:
                for oe in origin.results.get(ex.path, []):
                    err = (err + "; " if err else "") + oe
            if origin.tainted_requests:
                err = (err + "; " if err else "") + "; ".join(origin.tainted_requests)
                origin.tainted_requests.clear()
            for name, inst2 in (("splice-on", instances[True]), ("splice-off", instances[False])):
                if inst2.proc.poll() is not None:
                    err = (err + "; " if err else "") + f"{name} portico exited " \
                        f"{inst2.proc.returncode}"
            done += 1
            if origin.errors and (a.v or err):
                print("  origin connections: " + "; ".join(origin.errors))
            origin.errors.clear()
            if a.v or err:
                print(f"case {k} ({time.monotonic() - ct:.2f}s) {case.describe()}"
                      + (f"\n  FAIL: {err}\n  reproduce: --seed {seed} --only {k}" if err else
                         " ok"), flush=True)
            if err:
                failures.append((k, err))
                if any("exited" in f for _, f in failures):
                    break
    finally:
        spliced = instances[True].metric("portico_spliced_bytes_total")
        aborted = sum(filter(None, (i.metric("portico_responses_aborted_total")
                                    for i in instances.values())))
        rcs = {n: i.stop() for n, i in (("splice-on", instances[True]),
                                       ("splice-off", instances[False]))}
        origin.stop = True
    print(f"bodyfuzz: seed {seed}: {done} cases, {stats.exchanges} exchanges, "
          f"{stats.bytes['response']} response and {stats.bytes['request']} request body bytes "
          f"checked, {spliced:.0f} bytes spliced, {aborted:.0f} responses aborted, "
          f"{len(failures)} failing case(s), {time.monotonic() - t0:.0f} s; exit codes {rcs}")
    if a.table:
        for k in sorted(stats.kinds):
            print("  " + " ".join(f"{x:<16}" for x in k) + f" {stats.kinds[k]:6d} "
                  f"{stats.kind_bytes[k]:12d}")
    for k, e in failures:
        print(f"FAILED case {k}: {e}\n  reproduce: {sys.argv[0]} --bin {a.bin} --seed {seed} "
              f"--only {k}")
    bad_rc = any(rc not in (0, None) for rc in rcs.values())
    if bad_rc:
        print(f"portico exit codes {rcs}: see {workdir}/*.log")
    return 1 if failures or bad_rc else 0


if __name__ == "__main__":
    sys.exit(main())
