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

Each case is drawn from one area (--areas): 0 the mix above; 1 a client that leaves mid-body
(an upload cut by FIN or reset at a random byte, a download abandoned; over HTTP/2 a RST_STREAM
CANCEL, then another stream, or the connection dropped); 2 an origin that answers 413/401/200
after the head (with or without Connection: close, then resets, closes, drains or keeps the
connection), reads part of the body and resets, or closes after the head; 3 the mix to a TLS
origin (`tls = on`, the run's own CA); 4 HTTP/1.0 clients, with and without keep-alive; 5 the
mix over [::1] (listeners and an origin; a share of areas 1, 2 and 4 goes there too, and of
1 and 2 to the TLS origin). After each --batch of cases: each exchange a client left has its
access-log line (499, or the status sent and the reason in detail), the origin never got a cut
upload whole and saw its connection end, portico_client_aborts_total grew by those lines, and
Portico holds no descriptor beyond its start's and its origin connections; an origin connection
that answered early may carry no other request.

Usage:
  /usr/bin/python3 scripts/bodyfuzz.py [--bin build/portico] [--seed S] [--cases N]
        [--time SECONDS] [--only K | --first K] [--port-base P] [--workdir DIR] [--tiny]
        [--table] [--areas 0,1,2,3,4,5] [--batch 40] [-v]

A failing case is printed with its seed and number; `--seed S --only K` runs it alone (with the
same binaries and settings). `--tiny` also writes and reads bodies of 64 KiB to 1 MiB in steps
as small as 1 byte (slow); `--table` prints the cases and bytes checked by kind. Loopback only,
ports P..P+22 (default 18400); every wait has a deadline, the run stops after N cases or
SECONDS, whichever comes first. Exit 0: no defect. By hand, not part of `make test` (README,
*Tests*).

Not a defect: bytes past a Content-Length that come after the client's next request went out
answer that request (README, *What a hostile origin cannot do*); the origin here sends them in
the same write as the response's end, so they are always seen first. Nor is a GOAWAY
ENHANCE_YOUR_CALM to a client that sent more than 1,000 frames Portico's closed-stream guard
charges (counted apart, see H2Client.event), nor one to a client that sent more than 10,000
DATA frames of under 16 bytes faster than Portico's small-DATA bucket refills (50,000 a second,
proxy/h2.c: SMALL_DATA; counted apart too). `send_max` 1 writes a body of up to 64 KiB a byte a
frame, all at once: an HTTP/2 connection's frames past its first 9,000 small ones carry 16 bytes
at least (h2_segment), so that the bucket lets the case run.
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
import struct
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


def small_data_frames(out):
    """DATA frames in out (whole frames written by python3-h2, the preface aside) that Portico
    charges to its small-DATA bucket (proxy/h2.c: under 16 bytes, not ending the stream)."""
    n, i = 0, 24 if out.startswith(b"PRI * HTTP/2.0") else 0
    while i + 9 <= len(out):
        size = int.from_bytes(out[i:i + 3], "big")
        n += out[i + 3] == 0 and size < 16 and not out[i + 4] & 1
        i += 9 + size
    return n


SMALL_DATA_BURST = 10000   # proxy/h2_int.h: FLOOD_SMALL_DATA's burst
SMALL_DATA_KEPT = 9000     # small DATA frames an HTTP/2 connection of ours sends, at most


def h2_segment(n, left, small):
    """A DATA payload of n bytes (seg_size's, within the window), of a body with `left` bytes
    still to send, on a connection that sent `small` small DATA frames: 16 bytes at least once
    they are SMALL_DATA_KEPT, as many bytes as the body has left if fewer, so that a body sent
    a byte a frame, all at once, stays within the bucket's burst. seg_size is drawn all the same:
    the case's later draws do not move."""
    return min(max(n, 16), left) if small >= SMALL_DATA_KEPT else n


def small_data_noise(error_code, small):
    """A GOAWAY ENHANCE_YOUR_CALM after more small DATA frames than the bucket's burst: the
    bucket's verdict on this fuzzer's own client (a flood by design), not a relay defect."""
    if error_code == 11 and small > SMALL_DATA_BURST:
        raise ClientNoise(f"GOAWAY ENHANCE_YOUR_CALM after {small} DATA frames under 16 bytes "
                          f"from this client")


def body_bytes(seed, n):
    return random.Random(seed).randbytes(n)


class Defect(Exception):
    pass


class ClientNoise(Exception):
    """What the fuzzer's own client did made the case end early: counted, not a defect."""


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
        self.abort = None          # area 1: "upload" or "download": the client leaves mid-body
        self.origin_act = None     # area 2: "early", "partial_rst" or "close_head"
        self.gateway = False       # area 2: the client is to get Portico's 502, not the origin's


# The areas: 0 the first run's mix; 1 clients that leave mid-body; 2 origins that answer early or
# reset during an upload; 3 the mix to a TLS origin; 4 HTTP/1.0 clients; 5 the mix over [::1].
AREAS = {0: "mix", 1: "client-abort", 2: "origin-early", 3: "tls-origin", 4: "http/1.0",
         5: "ipv6"}
AREA_WEIGHTS = [(0, 2), (1, 3), (2, 3), (3, 2), (4, 2), (5, 1)]


def nonzero_size(rng):
    name, n = pick_size(rng)
    return (name, n) if n else ("1", 1)


class Case:
    def __init__(self, seed, k, areas):
        self.seed, self.k = seed, k
        rng = random.Random(f"{seed}:{k}")
        self.rng = rng
        self.area = pick(rng, [(a, w) for a, w in AREA_WEIGHTS if a in areas])[0]
        self.proto = rng.choice(["h1", "h1", "h1", "h1tls", "h2c", "h2tls"])
        if self.area == 4:
            self.proto = rng.choice(["h1", "h1", "h1tls"])
        self.splice = rng.random() < 0.6
        # where the client connects and which origin the path routes to (/t: the TLS origin,
        # /6: the origin on [::1]); a share of the other areas' cases goes over IPv6 too
        v6 = rng.random()
        self.host = "127.0.0.1"
        self.prefix = "/bf"
        if self.area == 3:
            self.prefix = "/t"
        elif self.area == 5:
            self.host = "::1" if v6 < 0.8 else "127.0.0.1"
            self.prefix = "/6" if v6 > 0.2 else "/bf"
        elif self.area in (1, 2, 4) and v6 < 0.15:
            self.host, self.prefix = "::1", rng.choice(["/6", "/bf"])
        elif self.area in (1, 2) and v6 < 0.35:
            self.prefix = "/t"      # a client that leaves, an origin that answers early, over TLS
        n = rng.randint(1, 4)
        allow_close = rng.random() < 0.5
        self.exchanges = [Exchange(rng, self.proto, i, i == n - 1, allow_close) for i in range(n)]
        self.pipeline = self.proto.startswith("h1") and rng.random() < 0.25
        self.rcvbuf = rng.choice([0, 0, 0, 4096, 16384])
        self.read_max = rng.choice([1, 100, 4096, 64 * KIB, 256 * KIB])
        self.read_pauses = rng.choice([0, 0, 5, 20])
        self.send_max = rng.choice([1, 1000, 16 * KIB, 256 * KIB])
        self.h2_concurrent = rng.random() < 0.5
        self.special = None        # the aborted (area 1) or early-answered (area 2) exchange
        self.keepalive10 = False   # area 4: the client asks Connection: keep-alive
        self.note = None           # something seen that is not a defect, for the summary
        if self.area == 1:
            self.make_abort(rng)
        elif self.area == 2:
            self.make_early(rng)
        elif self.area == 4:
            self.keepalive10 = rng.random() < 0.5
            self.pipeline = False
            for ex in self.exchanges:   # no chunked request in HTTP/1.0, no 100-continue
                if ex.req_framing == "chunked":
                    ex.req_framing = "cl"
                ex.expect = ex.req_trailers = False
        total = sum(e.resp_size for e in self.exchanges)
        if total > 256 * KIB:
            self.read_max = max(self.read_max, 4096)
        for i, ex in enumerate(self.exchanges):
            ex.idx = i
            ex.path = f"{self.prefix}/{seed}/{k}/{i}"

    def plain_exchanges(self, rng, n):
        """n ordinary exchanges that keep the connection (before or after the special one)."""
        out = []
        for _ in range(n):
            ex = Exchange(rng, self.proto, 0, False, False)
            ex.expect = False
            out.append(ex)
        return out

    def make_abort(self, rng):
        h2 = self.proto.startswith("h2")
        self.pipeline = False
        self.abort_how = rng.choice(["fin", "rst"] + (["cancel", "cancel"] if h2 else []))
        self.cut_frac = rng.random()
        ex = Exchange(rng, self.proto, 0, False, False)
        ex.abort = rng.choice(["upload", "download"])
        ex.expect = False
        if ex.abort == "upload":
            ex.method = "POST"
            ex.req_framing = rng.choice(["cl", "chunked"])
            ex.req_class, ex.req_size = nonzero_size(rng)
            ex.resp, ex.resp_class, ex.resp_size = "cl", "small", rng.randint(0, 2000)
            ex.expect = rng.random() < 0.25   # the client may leave before or after the 100
        else:
            ex.method = "GET"
            ex.req_framing, ex.req_class, ex.req_size = "none", "0", 0
            ex.resp = rng.choice(["cl", "cl", "chunked", "close"])
            ex.resp_class, ex.resp_size = nonzero_size(rng)
            ex.extra = ex.trailers = False
        pre = self.plain_exchanges(rng, rng.randint(0, 1))
        post = self.plain_exchanges(rng, 1) if self.abort_how == "cancel" else []
        self.special = ex
        self.exchanges = pre + [ex] + post

    def make_early(self, rng):
        self.pipeline = False
        ex = Exchange(rng, self.proto, 0, False, False)
        ex.method, ex.expect = "POST", False
        ex.req_framing = rng.choice(["cl", "cl", "chunked"])
        ex.req_class, ex.req_size = nonzero_size(rng)
        ex.origin_act = pick(rng, [("early", 6), ("partial_rst", 2), ("close_head", 2)])[0]
        ex.early_status = rng.choice([413, 401, 200])
        ex.early_close = rng.random() < 0.5          # the answer says Connection: close
        # after answering: reset, close (FIN, a reset if body bytes are unread), shut the write
        # side and read to the end, or keep the connection and read the body (keep-alive)
        ex.early_after = rng.choice(["rst", "fin", "drain", "keep"])
        ex.early_size = rng.choice([0, 1, rng.randint(2, 3000)])
        ex.early_seed = rng.getrandbits(64)
        ex.early_frac = rng.random()   # share of the body sent before the answer is awaited
        ex.partial_frac = rng.random()  # partial_rst: share of the body the origin reads first
        ex.gateway = ex.origin_act != "early"
        ex.expect = rng.random() < 0.3    # the answer (or 502) may come instead of the 100
        ex.resp = "cl"
        pre = self.plain_exchanges(rng, rng.randint(0, 1))
        post = self.plain_exchanges(rng, 1)
        self.special = ex
        self.exchanges = pre + [ex] + post

    def describe(self):
        xs = ", ".join(f"{e.method} req={e.req_framing}:{e.req_size}{'+expect' if e.expect else ''}"
                       f" resp={e.resp}:{e.resp_size}{'+extra' if e.extra else ''}"
                       + (f" abort={e.abort}" if e.abort else "")
                       + (f" origin={e.origin_act}:{e.early_status}:"
                          f"{'close' if e.early_close else 'keep'}:{e.early_after}"
                          if e.origin_act else "")
                       for e in self.exchanges)
        extra = ""
        if self.area == 1:
            extra = f" how={self.abort_how} cut={self.cut_frac:.3f}"
        if self.area == 4:
            extra = f" keepalive={self.keepalive10}"
        return (f"area={self.area}:{AREAS[self.area]} proto={self.proto} "
                f"splice={'on' if self.splice else 'off'} host={self.host} origin={self.prefix}"
                f"{extra} pipeline={self.pipeline} rcvbuf={self.rcvbuf} "
                f"read_max={self.read_max} [{xs}]")


# ----------------------------------------------------------------------------------------------
# The origin: raw sockets, one thread per connection, checks each request body it receives.

class Origin:
    """Listens on 127.0.0.1:port (plain), port + 1 (TLS, certificate of the run's CA) and
    [::1]:port + 2 (plain)."""

    def __init__(self, port, tls_ctx):
        self.registry = {}           # path -> Exchange
        self.results = {}            # path -> list of error strings ([] = checked fine)
        self.state = {}              # path -> where the origin is with it (areas 1 and 2)
        self.lock = threading.Lock()
        self.tls_ctx = tls_ctx
        self.live = 0                # connections open now (descriptors Portico holds too)
        self.stop = False
        self.tainted_requests = []
        self.errors = []             # how origin connections ended other than by a close
        self.socks = []
        for fam, addr, p, tls in ((socket.AF_INET, "127.0.0.1", port, False),
                                  (socket.AF_INET, "127.0.0.1", port + 1, True),
                                  (socket.AF_INET6, "::1", port + 2, False)):
            ls = socket.socket(fam, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((addr, p))
            ls.listen(128)
            self.socks.append(ls)
            threading.Thread(target=self.accept_loop, args=(ls, tls), daemon=True).start()

    def accept_loop(self, ls, tls):
        while not self.stop:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            with self.lock:
                self.live += 1
            # (no Nagle: an answer held behind an unacknowledged segment, a TLS session ticket,
            # would be thrown away by the reset that follows it, never reaching Portico)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(s, tls), daemon=True).start()

    def record(self, path, err):
        with self.lock:
            self.results.setdefault(path, [])
            if err:
                self.results[path].append(err)

    def serve(self, s, tls):
        try:
            s.settimeout(ORIGIN_IDLE)
            if tls:
                try:
                    s = self.tls_ctx.wrap_socket(s, server_side=True)
                except (OSError, ssl.SSLError) as e:
                    self.errors.append(f"origin TLS handshake: {e}")
                    return
            self.serve_conn(s)
        finally:
            s.close()
            with self.lock:
                self.live -= 1

    def serve_conn(self, s):
        buf = bytearray()
        tainted = None
        poisoned = None      # an early answer came on this connection: it may not be reused
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
                if poisoned is not None:
                    self.tainted_requests.append(f"{path} on an origin connection reused after "
                                                 f"an early answer to {poisoned}")
                if ex is None:
                    s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                if ex.origin_act:
                    if not self.act(s, buf, ex, fields):
                        return
                    poisoned = path
                    continue
                self.state[path] = "body"
                try:
                    err = self.check_request(s, buf, ex, method, fields)
                except (OSError, ValueError):
                    if ex.abort == "upload":       # the cut the client made: what is to come
                        self.state[path] = "cut"
                        return
                    raise
                if ex.abort == "upload" and not err:
                    err = ("origin got the whole body of an upload the client cut "
                           f"({ex.req_framing}, {ex.req_size} bytes)")
                self.record(path, err)
                if err:
                    self.state[path] = "bad"
                    return
                self.state[path] = "responding"
                try:
                    more = self.respond(s, ex)
                except OSError:
                    if ex.abort:
                        self.state[path] = "send_failed"
                        return
                    raise
                self.state[path] = "responded"
                if not more:
                    return
                if ex.extra:
                    tainted = path
        except (OSError, ValueError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")

    def act(self, s, buf, ex, fields):
        """Area 2: answers before reading the body, or resets or closes during it; True when
        the connection goes on (the body read, kept alive)."""
        path = ex.path
        if ex.origin_act == "close_head":
            self.state[path] = "closed"
            s.close()
            return False
        if ex.origin_act == "partial_rst":
            want = int(ex.partial_frac * ex.req_size)
            while len(buf) < want:
                if not recv_more(s, buf, want - len(buf)):
                    break
            self.state[path] = "reset"
            reset(s)
            return False
        body = body_bytes(ex.early_seed, ex.early_size)
        h = [f"HTTP/1.1 {ex.early_status} Early", f"Content-Length: {len(body)}", "X-Case: early"]
        if ex.early_close:
            h.append("Connection: close")
        s.sendall(("\r\n".join(h) + "\r\n\r\n").encode() + body)
        self.state[path] = "answered"
        if ex.early_after == "rst":
            reset(s)
            return False
        if ex.early_after == "fin":
            s.close()
            return False
        if ex.early_after == "drain":
            s.shutdown(socket.SHUT_WR)
            s.settimeout(IO_TIMEOUT)
            try:
                while s.recv(256 * KIB):
                    pass
            except OSError:
                pass
            self.state[path] = "drained"
            return False
        # keep: read the rest of the body as a keep-alive server does
        try:
            if "transfer-encoding" in fields:
                read_chunked(s, buf)
            elif "content-length" in fields:
                read_exact(s, buf, int(fields["content-length"]))
        except (OSError, ValueError):
            self.state[path] = "kept_cut"
            return False
        self.state[path] = "kept"
        return True

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
            if isinstance(s, ssl.SSLSocket):
                s.settimeout(5)
                try:
                    s.unwrap()        # close_notify (and Portico's, if it comes)
                except (OSError, ssl.SSLError):
                    pass
            else:
                s.shutdown(socket.SHUT_WR)
            s.close()
            return False
        return True


def reset(s):
    """Closes s with a TCP reset (SO_LINGER 0)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


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
    try:
        d = s.recv(n)
    except ssl.SSLZeroReturnError:
        return False
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


def h1_request(ex, rng, version="HTTP/1.1", extra=()):
    """(head bytes, body bytes on the wire) of an exchange's HTTP/1.1 (or 1.0) request."""
    h = [f"{ex.method} {ex.path} {version}", "Host: bodyfuzz.test", *extra]
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


def check_response(ex, status, body, framing, fields=None):
    if ex.gateway:      # area 2: the origin reset or closed before answering
        err = (fields or {}).get("portico-error")
        if status != 502 or (fields is not None and err not in GATEWAY_ERRORS):
            raise Defect(f"{ex.path}: {status} {err}, origin {ex.origin_act}: want 502 "
                         f"{'/'.join(GATEWAY_ERRORS)}")
        return len(body)
    want_status = {"204": 204, "304": 304}.get(ex.resp, 200)
    if ex.origin_act == "early":
        want_status = ex.early_status
    if status != want_status:
        raise Defect(f"{ex.path}: status {status}, origin sent {want_status}")
    want = b"" if ex.resp in ("head", "204", "304") else body_bytes(ex.resp_seed, ex.resp_size)
    if ex.origin_act == "early":
        want = body_bytes(ex.early_seed, ex.early_size)
    if len(body) != len(want) or sha(body) != sha(want):
        raise Defect(f"{ex.path}: client got {len(body)} bytes sha {sha(body)} ({framing}), "
                     f"origin sent {len(want)} sha {sha(want)}; first difference at "
                     f"{first_diff(body, want)}")
    return len(body)


GATEWAY_ERRORS = ("send_error", "connection_reset", "empty_response")


def h1_read_response(s, buf, ex, pace, v10=False):
    """Reads one final response; returns (body length, whether the connection closes). v10: as
    an HTTP/1.0 client, for which a connection closes unless the response says keep-alive."""
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
    if v10:
        closes = "keep-alive" not in fields.get("connection", "").lower()
        if te is not None:
            raise Defect(f"{ex.path}: Transfer-Encoding {te} to an HTTP/1.0 client")
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
    n = check_response(ex, status, body, framing, fields)
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
    s = socket.socket(socket.AF_INET6 if ":" in case.host else socket.AF_INET, socket.SOCK_STREAM)
    if case.rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, case.rcvbuf)
    s.settimeout(IO_TIMEOUT)
    s.connect((case.host, port))
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
    small = [0]          # DATA frames Portico charges as small (h2_segment)
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
                n = min(win, h2_segment(n, len(st["body"]) - st["off"], small[0]))
                small[0] += n < 16
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
                    small_data_noise(ev.error_code, small[0])
                    raise Defect(f"h2: GOAWAY {ev.error_code} {ev.additional_data!r}")
    finally:
        s.close()


# ----------------------------------------------------------------------------------------------
# Areas 1, 2 and 4: clients that leave mid-body, uploads to origins that answer early or reset,
# HTTP/1.0 clients

def log_addr(s):
    """The client's address as the access log writes it."""
    host, port = s.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def leave(s, how):
    """The client goes: a FIN (shutdown, close) or a reset (SO_LINGER 0)."""
    if how == "rst":
        reset(s)
        return
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    s.close()


def expect_eof(s, buf, ex, pace, why):
    """The connection is to close now, with nothing more on it."""
    s.settimeout(5)
    try:
        while pace.recv(s, buf):
            if buf:
                raise Defect(f"{ex.path}: {len(buf)} bytes after a response that {why}: "
                             f"{bytes(buf[:60])!r}")
    except socket.timeout:
        raise Defect(f"{ex.path}: connection still open 5 s after a response that {why}")
    except (ConnectionResetError, ssl.SSLError):
        pass


def h1_plain(s, buf, ex, pace, rng, stats, case):
    """One ordinary exchange on s; True when the connection closes after it."""
    head, wire = h1_request(ex, rng)
    pace.send(s, head + wire)
    n, closes = h1_read_response(s, buf, ex, pace)
    stats.add(case, ex, n)
    return closes


def run_h10(case, port, stats):
    pace = Pace(case)
    rng = random.Random(f"{case.seed}:{case.k}:client")
    s, buf = None, bytearray()
    extra = ["Connection: keep-alive"] if case.keepalive10 else []
    try:
        for ex in case.exchanges:
            if s is None:
                s, buf = connect(port, case, "http/1.1" if case.proto == "h1tls" else None), \
                    bytearray()
            head, wire = h1_request(ex, rng, "HTTP/1.0", extra)
            pace.send(s, head + wire)
            n, closes = h1_read_response(s, buf, ex, pace, v10=True)
            stats.add(case, ex, n)
            if not closes and not case.keepalive10:
                raise Defect(f"{ex.path}: keep-alive offered to an HTTP/1.0 client that did not "
                             f"ask for it")
            if not closes:
                continue
            expect_eof(s, buf, ex, pace, "did not say keep-alive to an HTTP/1.0 client")
            s.close()
            s = None
    finally:
        if s is not None:
            s.close()


def run_abort_h1(case, port, stats):
    pace = Pace(case)
    rng = random.Random(f"{case.seed}:{case.k}:client")
    s = connect(port, case, "http/1.1" if case.proto == "h1tls" else None)
    buf = bytearray()
    ex = case.special
    ex.client = log_addr(s)
    try:
        for pre in case.exchanges[:case.exchanges.index(ex)]:
            h1_plain(s, buf, pre, pace, rng, stats, case)
        head, wire = h1_request(ex, rng)
        if ex.abort == "upload":
            cut = int(case.cut_frac * len(wire))
            ex.cut_at = cut
            if ex.expect:
                pace.send(s, head)
                head = b""
                if cut:     # (else it leaves while waiting for the 100)
                    h = read_head_paced(s, buf, pace)
                    if h is None or parse_head(h)[0].split(" ")[1] != "100":
                        raise Defect(f"{ex.path}: expected 100 Continue, got {h!r}")
            pace.send(s, head + wire[:cut])
        else:
            pace.send(s, head)
            if read_head_paced(s, buf, pace) is None:
                raise Defect(f"{ex.path}: connection closed before the response")
            want = int(case.cut_frac * ex.resp_size)      # body bytes (with chunk framing)
            while len(buf) < want and pace.recv(s, buf):
                pass
            ex.cut_at = len(buf)
        stats.add_abort(case, ex)
    except Exception:
        s.close()
        raise
    leave(s, case.abort_how)


def run_early_h1(case, port, stats):
    pace = Pace(case)
    rng = random.Random(f"{case.seed}:{case.k}:client")
    s = connect(port, case, "http/1.1" if case.proto == "h1tls" else None)
    buf = bytearray()
    ex = case.special
    i = case.exchanges.index(ex)
    try:
        for pre in case.exchanges[:i]:
            h1_plain(s, buf, pre, pace, rng, stats, case)
        head, wire = h1_request(ex, rng)
        # an early answer is awaited after a share of the body (at most 64 KiB: more might not
        # all be taken before the answer, and this client writes and reads in turn)
        k = min(int(ex.early_frac * len(wire)), 64 * KIB) if ex.origin_act == "early" \
            else len(wire)
        sent_all = True
        if ex.expect:
            # the final answer may come instead of the 100: then no body byte goes before it,
            # and all of it after it if the connection stays open (RFC 9110 10.1.1: the server
            # that keeps it reads the body)
            pace.send(s, head)
            first = read_head_paced(s, buf, pace)
            if first is None:
                raise Defect(f"{ex.path}: connection closed before any answer to the head")
            if parse_head(first)[0].split(" ")[1] == "100":
                head = b""
            else:
                buf[:0] = first + b"\r\n\r\n"
                head, k = b"", 0
                stats.notes["h1 expect: final answer instead of 100"] += 1
        try:
            if head or k:
                pace.send(s, head + wire[:k])
        except OSError:
            sent_all = False
        n, closes = h1_read_response(s, buf, ex, pace)
        stats.add(case, ex, n)
        what = "gateway" if ex.gateway else f"close={ex.early_close}"
        stats.notes[f"h1 {ex.origin_act} ({what}"
                    f"): client connection {'closed' if closes else 'kept'}"] += 1
        if sent_all and k < len(wire):
            try:
                s.sendall(wire[k:])
            except OSError:
                sent_all = False
        if closes:
            expect_eof(s, buf, ex, pace, "said Connection: close")
            return
        if not sent_all:
            raise Defect(f"{ex.path}: the client's body was refused on a connection kept open")
        for post in case.exchanges[i + 1:]:
            if h1_plain(s, buf, post, pace, rng, stats, case):
                break
    finally:
        s.close()


class H2Client:
    """A python3-h2 client connection for areas 1 and 2: streams opened and driven one step at
    a time."""

    def __init__(self, case, port):
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
        import h2.settings
        self.ev, self.exc = h2.events, h2.exceptions
        self.case = case
        self.s = connect(port, case, "h2" if case.proto == "h2tls" else None)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        # DATA for streams this client reset is not acknowledged by python3-h2: a large
        # connection window keeps it from starving the streams after them
        self.conn.increment_flow_control_window(1 << 30)
        self.s.sendall(self.conn.data_to_send())
        self.streams = {}
        self.pump(lambda: self.settled, "SETTINGS")

    settled = False
    cheap = 0      # frames Portico charges when they meet a closed stream: RST_STREAM, DATA < 1 KiB
    small = 0      # DATA frames it charges as small on open streams (small_data_frames)

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            i = 24 if out.startswith(b"PRI * HTTP/2.0") else 0
            while i + 9 <= len(out):
                n = int.from_bytes(out[i:i + 3], "big")
                self.cheap += out[i + 3] == 3 or (out[i + 3] == 0 and n < 1024)
                i += 9 + n
            self.small += small_data_frames(out)
            self.s.sendall(out)

    def open(self, ex, end):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", ex.method), (":path", ex.path),
                (":scheme", "https" if self.case.proto == "h2tls" else "http"),
                (":authority", "bodyfuzz.test")]
        if ex.req_framing == "cl":
            hdrs.append(("content-length", str(ex.req_size)))
        if ex.expect and (ex.origin_act or ex.abort):
            hdrs.append(("expect", "100-continue"))
        self.conn.send_headers(sid, hdrs, end_stream=end)
        self.streams[sid] = dict(ex=ex, status=None, headers={}, data=bytearray(), ended=False,
                                 reset=None)
        self.flush()
        return sid

    def window(self, sid):
        try:
            return min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
        except (self.exc.StreamClosedError, self.exc.ProtocolError, KeyError):
            return -1

    def send_body(self, sid, data, end):
        """False when the stream closed before all of data went."""
        st = self.streams[sid]
        off = 0
        rng = random.Random(f"{self.case.seed}:{self.case.k}:{sid}")
        while off < len(data):
            if st["reset"] is not None or st["ended"]:
                return False
            win = self.window(sid)
            if win < 0:
                return False
            if win == 0:
                self.pump(lambda: self.window(sid) != 0 or st["reset"] is not None
                          or st["ended"], "window")
                continue
            n = min(win, seg_size(rng, len(data), self.case.send_max, 256 * KIB), len(data) - off)
            n = min(win, h2_segment(n, len(data) - off, self.small))
            self.poll()       # as a client does: a reset or an answer stops the body
            if st["reset"] is not None or st["ended"]:
                return False
            try:
                self.conn.send_data(sid, data[off:off + n])
            except (self.exc.StreamClosedError, self.exc.ProtocolError):
                return False
            off += n
            self.flush()
        if end:
            try:
                self.conn.end_stream(sid)
            except (self.exc.StreamClosedError, self.exc.ProtocolError):
                return False
            self.flush()
        return True

    def poll(self):
        """Takes in what has come, without waiting."""
        while (isinstance(self.s, ssl.SSLSocket) and self.s.pending()) or \
                select.select([self.s], [], [], 0)[0]:
            try:
                d = self.s.recv(256 * KIB)
            except ssl.SSLZeroReturnError:
                d = b""
            except ssl.SSLWantReadError:
                return
            if not d:
                raise Defect("h2: connection closed by Portico during a request body")
            for ev in self.conn.receive_data(d):
                self.event(ev)

    def pump(self, done, what, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not done():
            self.flush()
            if not (isinstance(self.s, ssl.SSLSocket) and self.s.pending()):
                left = deadline - time.monotonic()
                r, _, _ = select.select([self.s], [], [], max(0, left))
                if not r:
                    raise socket.timeout(f"h2: waiting for {what}")
            try:
                d = self.s.recv(256 * KIB)
            except ssl.SSLZeroReturnError:
                d = b""
            if not d:
                raise Defect(f"h2: connection closed by Portico while waiting for {what}")
            for ev in self.conn.receive_data(d):
                self.event(ev)
        self.flush()

    def event(self, ev):
        E = self.ev
        if isinstance(ev, E.RemoteSettingsChanged):
            self.settled = True
            return
        if isinstance(ev, E.ConnectionTerminated):
            if ev.error_code == 11 and self.cheap > 1000:
                # The closed-stream flood guard (1,000 such frames at once, proxy/h2.c): an
                # upload in tiny DATA frames all in flight when its stream closed (an early
                # answer, a 502), or python3-h2 answering each DATA of a stream it reset with
                # another RST_STREAM (RFC 9113 5.1 says ignore them). Not a relay defect.
                raise ClientNoise(f"GOAWAY ENHANCE_YOUR_CALM after {self.cheap} RST_STREAM "
                                  f"and DATA frames under 1 KiB from this client")
            small_data_noise(ev.error_code, self.small)
            raise Defect(f"h2: GOAWAY {ev.error_code} {ev.additional_data!r}")
        st = self.streams.get(getattr(ev, "stream_id", None))
        if st is None:
            return
        if isinstance(ev, E.ResponseReceived):
            st["headers"] = dict(ev.headers)
            st["status"] = int(st["headers"][":status"])
        elif isinstance(ev, E.DataReceived):
            st["data"] += ev.data
            try:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            except (self.exc.StreamClosedError, self.exc.ProtocolError):
                pass
        elif isinstance(ev, E.StreamEnded):
            st["ended"] = True
        elif isinstance(ev, E.StreamReset):
            st["reset"] = ev.error_code

    def exchange(self, ex, stats):
        """One ordinary exchange, checked."""
        body = body_bytes(ex.req_seed, ex.req_size) if ex.req_framing != "none" else b""
        sid = self.open(ex, ex.req_framing == "none")
        st = self.streams[sid]
        if ex.req_framing != "none":
            self.send_body(sid, body, True)
        self.pump(lambda: st["ended"] or st["reset"] is not None, f"{ex.path}'s response")
        self.check(sid)
        stats.add(self.case, ex, len(st["data"]))

    def check(self, sid):
        st = self.streams[sid]
        ex = st["ex"]
        if not st["ended"]:
            raise Defect(f"{ex.path}: stream reset ({st['reset']}) before its response ended "
                         f"(status {st['status']}, {len(st['data'])} bytes)")
        check_response(ex, st["status"], bytes(st["data"]), "h2", st["headers"])

    def close(self, how="fin"):
        leave(self.s, how)


def run_abort_h2(case, port, stats):
    c = H2Client(case, port)
    ex = case.special
    ex.client = log_addr(c.s)
    i = case.exchanges.index(ex)
    try:
        for pre in case.exchanges[:i]:
            c.exchange(pre, stats)
        if ex.abort == "upload":
            body = body_bytes(ex.req_seed, ex.req_size)
            cut = int(case.cut_frac * len(body))
            sid = c.open(ex, False)
            c.send_body(sid, body[:cut], False)
            ex.cut_at = cut
        else:
            sid = c.open(ex, True)
            st = c.streams[sid]
            want = int(case.cut_frac * ex.resp_size)
            c.pump(lambda: len(st["data"]) >= want or st["ended"] or st["reset"] is not None,
                   f"{ex.path}'s first {want} bytes")
            ex.cut_at = len(st["data"])
        stats.add_abort(case, ex)
        if case.abort_how != "cancel":
            c.close(case.abort_how)
            return
        if not c.streams[sid]["ended"]:
            c.conn.reset_stream(sid, 8)           # CANCEL
            c.flush()
        for post in case.exchanges[i + 1:]:
            c.exchange(post, stats)
    finally:
        c.s.close()


def run_early_h2(case, port, stats):
    c = H2Client(case, port)
    ex = case.special
    i = case.exchanges.index(ex)
    try:
        for pre in case.exchanges[:i]:
            c.exchange(pre, stats)
        body = body_bytes(ex.req_seed, ex.req_size)
        sid = c.open(ex, False)
        st = c.streams[sid]
        done = lambda: st["ended"] or st["reset"] is not None   # noqa: E731
        if ex.origin_act == "early":
            k = int(ex.early_frac * len(body))
            c.send_body(sid, body[:k], False)
            try:
                c.pump(lambda: st["status"] is not None or done(), f"{ex.path}'s early answer",
                       timeout=5)
            except socket.timeout:
                case.note = "early answer held until the body was in"
            c.send_body(sid, body[k:], True)
        else:
            c.send_body(sid, body, True)
        c.pump(done, f"{ex.path}'s response")
        c.check(sid)
        stats.add(case, ex, len(st["data"]))
        how = "not reset" if st["reset"] is None else f"reset {st['reset']}"
        stats.notes[f"h2 {ex.origin_act}: stream {how}"
                    f" by Portico"] += 1
        for post in case.exchanges[i + 1:]:
            c.exchange(post, stats)
    finally:
        c.s.close()


# ----------------------------------------------------------------------------------------------
# Portico instances

def make_cert(workdir):
    """A CA and a certificate it signed for localhost, 127.0.0.1 and ::1 (the listeners' and the
    TLS origin's): (ca, cert, key)."""
    ca, cakey = os.path.join(workdir, "ca.pem"), os.path.join(workdir, "ca.key")
    crt, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    if not os.path.exists(crt) or not os.path.exists(ca):
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
            "/CN=bodyfuzz CA", "-days", "60", "-keyout", cakey, "-out", ca,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(workdir, "cert.csr")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", key, "-out", csr)
        ext = os.path.join(workdir, "cert.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                    "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", cakey,
            "-CAcreateserial", "-days", "60", "-extfile", ext, "-out", crt)
    return ca, crt, key


class Portico:
    def __init__(self, binary, workdir, name, base, origin_port, splice, ca, crt, key):
        self.ports = dict(h1=base, h1tls=base + 1, h2c=base + 2, h2tls=base + 1, admin=base + 3)
        self.ports6 = dict(h1=base + 4, h1tls=base + 5, h2c=base + 6, h2tls=base + 5)
        self.cfg = os.path.join(workdir, f"{name}.ini")
        self.log = os.path.join(workdir, f"{name}.log")
        self.access = os.path.join(workdir, name + ".access")
        if os.path.exists(self.access):     # (a workdir used again: its lines are not this run's)
            os.unlink(self.access)
        self.access_off = 0
        self.entries = collections.defaultdict(list)    # path -> access-log lines (dicts)
        self.lines = []                                  # every access-log line read, in order
        with open(self.cfg, "w") as f:
            f.write(f"""[proxy]
listen = 127.0.0.1:{base}
listen = 127.0.0.1:{base + 1} tls
listen = 127.0.0.1:{base + 2} h2c
listen = [::1]:{base + 4}
listen = [::1]:{base + 5} tls
listen = [::1]:{base + 6} h2c
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

[upstream ot]
origin = 127.0.0.1:{origin_port + 1}
tls = on
ca_file = {ca}
sni = localhost

[upstream o6]
origin = [::1]:{origin_port + 2}

[route all]
prefix = /
upstream = o
continue_timeout = 300ms

[route tls]
prefix = /t/
upstream = ot
continue_timeout = 300ms

[route v6]
prefix = /6/
upstream = o6
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

    def port(self, case):
        return (self.ports6 if ":" in case.host else self.ports)[case.proto]

    def read_access(self):
        """Reads the access-log lines written since the last call."""
        import json
        try:
            with open(self.access, "rb") as f:
                f.seek(self.access_off)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.access_off += end
        for ln in data[:end].splitlines():
            try:
                e = json.loads(ln)
            except ValueError:
                continue
            self.entries[e.get("path")].append(e)
            if e.get("path") is None:
                self.entries[("client", e.get("client"))].append(e)
            self.lines.append(e)

    def fds(self):
        """Descriptors open in the process (its workers are threads)."""
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

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
        self.area_cases = collections.Counter()   # (area, proto, splice) -> cases
        self.area_bytes = collections.Counter()   # -> body bytes checked (both ways)
        self.abort_bytes = collections.Counter()  # -> body bytes moved before a client left
        self.notes = collections.Counter()

    def key(self, case):
        return (f"{case.area}:{AREAS[case.area]}", case.proto + ("/v6" if ":" in case.host
                                                                 else ""),
                "splice=on" if case.splice else "splice=off")

    def case(self, case):
        self.area_cases[self.key(case)] += 1
        if case.note:
            self.notes[case.note] += 1

    def add_abort(self, case, ex):
        self.abort_bytes[self.key(case)] += ex.cut_at

    def add(self, case, ex, n):
        self.area_bytes[self.key(case)] += n + ex.req_size
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


def client_left(e):
    """Whether an access-log line says the client left (README, Failures: 499, or the status
    sent and the reason in detail, phase read, when it left during the body)."""
    return e.get("status") == 499 or (e.get("failure") is None and bool(e.get("detail"))
                                      and e.get("phase") == "read")


class BatchCheck:
    """After each batch of cases: every exchange a client left has its access-log line (499, or
    the status sent and a detail saying the client left, bytes no more than moved), its origin
    connection ended (a cut upload's closed, never a whole body), portico_client_aborts_total
    grew by the lines that say the client left, and Portico holds no descriptor more than at its
    start beyond its connections to the origin."""

    def __init__(self, instances, origin):
        self.instances, self.origin = instances, origin
        self.cases = []
        self.mark = {n: 0 for n in instances}                    # first line of the batch
        self.aborts = {n: 0.0 for n in instances}
        # (the connections that found the listeners up may still be open: the fewest of 1 s)
        self.base_fds = 1 << 30
        for _ in range(10):
            self.base_fds = min(self.base_fds,
                                sum(i.fds() for i in instances.values()) - origin.live)
            time.sleep(0.1)

    def read(self):
        for i in self.instances.values():
            i.read_access()

    def pending(self, c):
        ex = c.special
        where = self.origin.state.get(ex.path)
        if where in ("body", "responding"):
            return f"the origin is still {'reading the body' if where == 'body' else 'writing'}"
        inst = self.instances[c.splice]
        if not inst.entries.get(ex.path) and c.abort_how != "rst":
            # A TLS client that sent its whole first request and left at once (python's close,
            # with a session ticket unread, is a reset): the handshake's ticket write can meet
            # the reset before the request is read, and the line is the connection's (499,
            # client_header, no request), as for a client that leaves mid-head.
            if any(e.get("status") == 499 and e.get("phase") == "client_header"
                   for e in inst.entries.get(("client", getattr(ex, "client", None)), [])):
                return None
            return "no access-log line"
        return None

    def wait(self, cond, seconds):
        deadline = time.monotonic() + seconds
        while True:
            self.read()
            if cond() or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def check(self):
        errs = []
        aborted = [c for c in self.cases if c.area == 1]
        # (a client connection lingers up to 2 s after Portico's answer; log lines are written
        # at least every second)
        self.wait(lambda: all(self.pending(c) is None for c in aborted), 8)
        for c in aborted:
            ex = c.special
            why = self.pending(c)
            if why:
                errs.append((c.k, f"{ex.path}: {why} 8 s after the client left "
                                  f"({c.abort_how}, {ex.abort}, at {ex.cut_at})"))
            for e in self.instances[c.splice].entries.get(ex.path, []):
                st, bi, bo = e.get("status"), e.get("bytes_in") or 0, e.get("bytes_out") or 0
                det = e.get("detail") or ""
                bad = None
                if ex.abort == "upload":
                    if st != 499:
                        bad = f"status {st} for an upload the client cut"
                    elif bi > ex.cut_at or bi > ex.req_size or (ex.req_framing == "cl"
                                                                and bi == ex.req_size):
                        bad = f"bytes_in {bi}, client sent {ex.cut_at} of {ex.req_size}"
                else:
                    if st not in (200, 499):
                        bad = f"status {st}"
                    elif bo > ex.resp_size or (st == 499 and bo):
                        bad = f"status {st} bytes_out {bo} of {ex.resp_size}"
                    elif st == 200 and bo < ex.resp_size and not client_left(e):
                        bad = f"bytes_out {bo} of {ex.resp_size} with detail {det!r}"
                if bad:
                    errs.append((c.k, f"{ex.path}: access log: {bad}: {e}"))
        # portico_client_aborts_total against the lines saying the client left
        for name, inst in self.instances.items():
            def left_lines():
                return sum(1 for e in inst.lines[self.mark[name]:] if client_left(e))
            got = [0.0, 0]

            def agree():
                m = inst.metric("portico_client_aborts_total")
                got[0], got[1] = (m or 0) - self.aborts[name], left_lines()
                return got[0] == got[1]
            self.wait(agree, 3)
            if got[0] != got[1]:
                seen = collections.Counter((e.get("status"), e.get("phase"), e.get("detail"))
                                           for e in inst.lines[self.mark[name]:]
                                           if e.get("detail") or e.get("status") != 200)
                errs.append((self.cases[-1].k if self.cases else -1,
                             f"{'splice-on' if name else 'splice-off'}: "
                             f"portico_client_aborts_total grew by {got[0]:.0f}, {got[1]} "
                             f"access-log lines say the client left (cases "
                             f"{self.cases[0].k if self.cases else '-'}.."
                             f"{self.cases[-1].k if self.cases else '-'}; details: "
                             f"{dict(seen)})"))
            self.aborts[name] += got[0]
            self.mark[name] = len(inst.lines)
        # descriptors: back to the start, but for the origin connections open (pooled)
        held = [0]

        def fds_back():
            held[0] = sum(i.fds() for i in self.instances.values()) - self.origin.live
            return held[0] <= self.base_fds
        self.wait(fds_back, 8)
        if held[0] > self.base_fds:
            errs.append((self.cases[-1].k if self.cases else -1,
                         f"Portico holds {held[0] - self.base_fds} descriptor(s) more than at "
                         f"its start beyond its origin connections, 8 s after the batch"))
        self.cases = []
        return errs


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
    ap.add_argument("--areas", default="0,1,2,3,4,5", help="areas to draw cases from (0-5)")
    ap.add_argument("--batch", type=int, default=40,
                    help="cases between checks of access log, metrics and descriptors")
    a = ap.parse_args()
    areas = {int(x) for x in a.areas.split(",")}
    global TINY
    TINY = a.tiny
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = a.workdir or tempfile.mkdtemp(prefix="bodyfuzz.")
    os.makedirs(workdir, exist_ok=True)
    print(f"bodyfuzz: seed {seed}, bin {a.bin}, workdir {workdir}", flush=True)
    ca, crt, key = make_cert(workdir)
    base = a.port_base
    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ctx.load_cert_chain(crt, key)
    origin = Origin(base + 20, tls_ctx)
    instances = {True: Portico(a.bin, workdir, "splice-on", base, base + 20, True, ca, crt, key),
                 False: Portico(a.bin, workdir, "splice-off", base + 10, base + 20, False, ca,
                                crt, key)}
    batch = BatchCheck(instances, origin)
    stats = Stats()
    failures = []
    t0 = time.monotonic()
    ks = [a.only] if a.only is not None else range(a.first, a.first + a.cases)
    done = 0
    try:
        for k in ks:
            if time.monotonic() - t0 > a.time:
                break
            case = Case(seed, k, areas)
            for ex in case.exchanges:
                origin.registry[ex.path] = ex
            inst = instances[case.splice]
            port = inst.port(case)
            err = None
            ct = time.monotonic()
            h1 = case.proto.startswith("h1")
            try:
                if case.area == 1:
                    (run_abort_h1 if h1 else run_abort_h2)(case, port, stats)
                elif case.area == 2:
                    (run_early_h1 if h1 else run_early_h2)(case, port, stats)
                elif case.area == 4:
                    run_h10(case, port, stats)
                elif h1:
                    run_h1(case, port, stats)
                else:
                    run_h2(case, port, stats)
            except ClientNoise as e:
                stats.notes[f"{AREAS[case.area]} {case.proto}: ended by the client: "
                            f"{str(e).split(' after ')[0]}"] += 1
                if a.v:
                    print(f"case {k}: client noise: {e}")
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
            stats.case(case)
            batch.cases.append(case)
            if len(batch.cases) >= a.batch or k == ks[-1]:
                for bk, be in batch.check():
                    print(f"case {bk}: FAIL (batch check): {be}\n  reproduce: --seed {seed} "
                          f"--only {bk}", flush=True)
                    failures.append((bk, be))
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
        for bk, be in batch.check():
            print(f"case {bk}: FAIL (batch check): {be}", flush=True)
            failures.append((bk, be))
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
    print("  by area, protocol and splice: cases, body bytes checked, bytes before the client "
          "left")
    for k in sorted(stats.area_cases):
        print("  " + " ".join(f"{x:<18}" for x in k) + f" {stats.area_cases[k]:6d} "
              f"{stats.area_bytes[k]:12d} {stats.abort_bytes[k]:12d}")
    for n, c in sorted(stats.notes.items()):
        print(f"  note: {n}: {c} case(s)")
    ends = collections.Counter(
        (ex.abort or ex.origin_act, origin.state.get(ex.path, "never reached"))
        for ex in origin.registry.values() if ex.abort or ex.origin_act)
    for (kind, where), c in sorted(ends.items()):
        print(f"  origin's end of {kind}: {where}: {c}")
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
