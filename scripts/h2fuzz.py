#!/usr/bin/python3
"""h2fuzz.py — a seeded, bounded fuzzer of HTTP/2 frame sequences against a running Portico.

Starts the binary (build/asan/portico by default: ASan+UBSan, halt_on_error) before its own
HTTP/1.1 origin on loopback and throws seeded, stateful frame sequences at it over h2c (prior
knowledge) and TLS (ALPN h2), one client connection per case: SETTINGS (odd values, unknown ids,
repeated, ACK games, bad lengths), HEADERS with and without CONTINUATION (split, interleaved,
on the wrong stream, floods), padding (good and past the payload), PRIORITY (self-dependent,
bad length), DATA (sizes around the windows and the frame limit, on stream 0, idle or closed
streams, after END_STREAM), RST_STREAM, WINDOW_UPDATE (0, overflow), PING, GOAWAY, unknown frame
types, even and backward stream ids, bad lengths, truncated frames, pauses, half-closes and
abrupt closes, mixed with valid requests (GET, POST with bodies, trailers, bodies echoed, fixed
and slowly streamed answers); a share of the cases are mutations of valid sequences (bit flips,
a cut point, two writes swapped, one dropped or repeated). A share are valid only ("clean"):
every request must get its own answer, byte for byte.

After each case: the case's connection must have ended (Portico's timeouts are short here:
2-3 s) within --conn-bound seconds; a canary GET on a new connection (h2c or TLS, as the case)
must be answered 200, its body whole, within --canary-bound; Portico must still run, its error
log hold no sanitizer report (AddressSanitizer, LeakSanitizer, UBSan's runtime error), and its
RSS stay under --rss-max MiB. At the end Portico is stopped (SIGTERM) and must exit 0 with no
leak report. Any failure writes the case (seed, number, every write and pause as sent) to
WORKDIR/fail-SEED-K.json, which `--replay FILE` sends again to a new Portico. Portico's [warn]
and [error] lines are listed at the end by kind, with a case that made each (what a client does
wrong is an info line; `--strict-log` fails the case that makes a kind first).

Usage:
  /usr/bin/python3 scripts/h2fuzz.py [--bin build/asan/portico] [--seed S] [--cases N]
        [--time SECONDS] [--only K | --first K] [--port-base P] [--workdir DIR]
        [--replay FILE] [--keep-going] [--strict-log] [--conn-bound S] [--canary-bound S]
        [--rss-max MIB] [-v]

Loopback only, ports P..P+3 (default 18100); every wait has a deadline, the run stops after N
cases or SECONDS, whichever comes first. Exit 0: no defect. By hand, not part of `make test`
(README, *Tests*).
"""

import argparse
import collections
import json
import os
import random
import re
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

import hpack

CONN_BOUND = 20.0        # seconds a case's connection may stay open after its last write
CANARY_BOUND = 10.0      # seconds the canary has for its answer
RSS_MAX_MIB = 1500       # Portico's resident set must stay below (ASan's shadow and quarantine)

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
FNAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
          "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]
END_STREAM, ACK, END_HEADERS, PADDED, PRIO_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_WIN = (1 << 31) - 1


def frame(ftype, flags, sid, payload=b"", length=None):
    n = len(payload) if length is None else length
    return struct.pack(">I", n & 0xFFFFFF)[1:] + struct.pack(">BBI", ftype, flags,
                                                            sid & 0xFFFFFFFF) + payload


def body_of(n, salt=0):
    """The origin's fixed body of n bytes (and the client's upload): a pattern, checked whole."""
    unit = b"h2fuzz-%d-0123456789abcdef\n" % salt
    return (unit * (n // len(unit) + 1))[:n]


def pick(rng, table):
    total = sum(w for *_, w in table)
    x = rng.uniform(0, total)
    for row in table:
        x -= row[-1]
        if x <= 0:
            return row
    return table[-1]


class Defect(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Case generation: a list of actions (writes, pauses, an end), all drawn from the case's seed, so
# that a case is the same sequence whatever Portico answers.

class Gen:
    """The client's view of its connection while a case is drawn: stream ids, HPACK encoder,
    streams open, and the requests whose answers a clean case checks."""

    def __init__(self, rng, clean):
        self.rng = rng
        self.clean = clean
        self.enc = hpack.Encoder()
        self.next_sid = 1
        self.open = []          # streams whose request side is still open (no END_STREAM)
        self.closed = []        # streams the client ended
        self.writes = []        # (bytes, label)
        self.frames = 0
        self.expect = {}        # sid -> (status, body) a clean case checks
        self.kinds = collections.Counter()
        # Half the cases encode every field as a literal (no index, no table): their header
        # blocks mean the same wherever they go, so a case can be reordered (Case: fatal last).
        self.literal = rng.random() < 0.5

    def w(self, data, label, nframes=1, flow=None):
        self.writes.append(["send", data.hex(), label] + ([flow] if flow else []))
        self.frames += nframes
        self.kinds[label] += 1

    def pause(self, s):
        self.writes.append(["pause", s])

    def sid(self):
        s = self.next_sid
        self.next_sid += 2
        return s

    def block(self, fields):
        if self.literal:
            return literal_block(fields)
        return self.enc.encode(fields)

    def headers(self, sid, block, end_stream, label, split=None, pad=None, prio=False):
        """HEADERS (+ CONTINUATION when split) carrying block."""
        rng = self.rng
        parts = [block]
        if split is None:
            split = rng.random() < 0.25
        if split and len(block) > 1:
            cuts = sorted(rng.sample(range(1, len(block)), min(len(block) - 1,
                                                               rng.randint(1, 4))))
            parts = [block[a:b] for a, b in zip([0] + cuts, cuts + [len(block)])]
        flags = END_STREAM if end_stream else 0
        first = parts[0]
        if prio or rng.random() < 0.1:
            flags |= PRIO_FLAG
            dep = sid - 2 if sid > 2 else 0
            first = struct.pack(">IB", rng.choice([0, 0, dep, 0x80000000 | dep]),
                                rng.randrange(256)) + first
        if pad is None and rng.random() < 0.15:
            pad = rng.choice([0, 1, 7, 255])
        if pad is not None:
            flags |= PADDED
            first = bytes([pad]) + first + b"\0" * pad
        if len(parts) == 1:
            flags |= END_HEADERS
        out = frame(HEADERS, flags, sid, first)
        for i, p in enumerate(parts[1:]):
            out += frame(CONTINUATION, END_HEADERS if i == len(parts) - 2 else 0, sid, p)
        self.w(out, label, len(parts))

    def data(self, sid, payload, end, label, pad=None):
        flags = END_STREAM if end else 0
        if pad is not None:
            flags |= PADDED
            payload = bytes([pad]) + payload + b"\0" * pad
        # (a valid body waits for the windows before it is sent: see run_case)
        self.w(frame(DATA, flags, sid, payload), label, flow=[sid, len(payload)])


def hp_int(n, prefix, first=0):
    limit = (1 << prefix) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    return bytes(out + [n])


def literal_block(fields):
    """HPACK literal field lines without indexing, new name, no Huffman (as h2desync.py's)."""
    out = b""
    for n, v in fields:
        n, v = n.encode("latin-1"), v.encode("latin-1")
        out += b"\x00" + hp_int(len(n), 7) + n + hp_int(len(v), 7) + v
    return out


# Writes that end the connection (a connection error, RFC 9113 5.4.1) in most cases: a case may
# put them after the others, so that what comes before them reaches Portico.
FATAL = {"settings-ack-payload", "settings-bad-len", "settings-stream", "hdr-even", "hdr-reuse",
         "hdr-garbage", "cont-lone", "cont-other", "cont-inter", "cont-flood", "hdr-bad-pad",
         "hdr-stream0", "hdr-dyn-table", "data-stream0", "data-idle", "data-bad-pad",
         "data-too-big", "ping-bad-len", "ping-stream", "prio-stream0", "goaway",
         "goaway-stream", "goaway-short", "goaway-debug", "wu-bad-len", "rst-bad-len",
         "bad-length", "wu-overflow", "data-closed", "settings-odd", "unknown-push"}


def req_fields(rng, method, path, extra=(), cl=None):
    f = [(":method", method), (":scheme", "http"), (":path", path),
         (":authority", rng.choice(["localhost", "127.0.0.1", "h2fuzz.test"]))]
    if rng.random() < 0.3:
        f.append(("user-agent", "h2fuzz"))
    if cl is not None:
        f.append(("content-length", str(cl)))
    return f + list(extra)


GET_PATHS = [("fixed", 6), ("slow", 2), ("status", 1), ("close", 1)]
SIZES = [0, 1, 100, 16383, 16384, 16385, 65535, 65536, 70000, 200000]


def get_path(rng):
    kind = pick(rng, GET_PATHS)[0]
    if kind == "fixed":
        n = rng.choice(SIZES)
        return f"/fixed/{n}", (200, body_of(n))
    if kind == "slow":
        n = rng.choice([10, 1000, 40000])
        return f"/slow/{n}", (200, body_of(n))
    if kind == "status":
        c = rng.choice([204, 304, 404, 500])
        return f"/status/{c}", (c, b"")
    return "/close", (502, None)    # the origin closes without an answer: Portico's 502


def op_get(g):
    rng = g.rng
    sid = g.sid()
    path, exp = get_path(rng)
    g.headers(sid, g.block(req_fields(rng, rng.choice(["GET", "GET", "HEAD"]) if not g.clean
                                      else "GET", path)), True, "get")
    g.closed.append(sid)
    g.expect[sid] = exp


def op_post(g):
    """A POST whose body is echoed: DATA sizes around the frame limit and the windows, maybe a
    content-length, maybe trailers, maybe left open for another op to end (or never)."""
    rng = g.rng
    sid = g.sid()
    n = rng.choice(SIZES[:8])
    body = body_of(n, sid)
    cl = n if rng.random() < 0.5 else None
    if not g.clean and cl is not None and rng.random() < 0.2:
        cl = n + rng.choice([-1, 1, 1000])
    trailers = rng.random() < 0.3
    g.headers(sid, g.block(req_fields(rng, "POST", "/echo", cl=cl)), n == 0 and not trailers,
              "post")
    if n == 0 and not trailers:
        g.closed.append(sid)
        g.expect[sid] = (200, b"")
        return
    off = 0
    leave_open = not g.clean and rng.random() < 0.15
    maxf = 16384
    while off < n:
        k = min(n - off, rng.choice([1, 100, 4096, maxf, maxf]))
        last = off + k >= n
        pad = rng.choice([None, None, None, 0, 9]) if k + 10 < maxf else None
        g.data(sid, body[off:off + k], last and not trailers and not leave_open, "post-data",
               pad)
        off += k
        if not g.clean and rng.random() < 0.05:
            g.pause(rng.uniform(0, 0.2))
    if leave_open:
        g.open.append(sid)
        return
    if trailers:
        g.headers(sid, g.block([("x-trailer", "t%d" % sid)]), True, "trailers")
    g.closed.append(sid)
    g.expect[sid] = (200, body) if cl in (None, n) else (None, None)


def settings_payload(rng):
    ids = [1, 2, 3, 4, 5, 6, 8, 9, rng.randrange(1 << 16)]
    vals = [0, 1, 2, 100, 16383, 16384, 65535, 65536, MAX_WIN, MAX_WIN + 1, (1 << 24) - 1,
            1 << 24, 0xFFFFFFFF]
    return b"".join(struct.pack(">HI", rng.choice(ids), rng.choice(vals))
                    for _ in range(rng.randint(0, 6)))


def op_settings(g):
    rng = g.rng
    how = rng.choice(["odd", "odd", "odd", "ack", "ack-payload", "bad-len", "stream", "repeat"])
    if how == "odd":
        g.w(frame(SETTINGS, 0, 0, settings_payload(rng)), "settings-odd")
    elif how == "ack":
        g.w(frame(SETTINGS, ACK, 0), "settings-ack")
    elif how == "ack-payload":
        g.w(frame(SETTINGS, ACK, 0, b"\0\4\0\0\0\1"), "settings-ack-payload")
    elif how == "bad-len":
        g.w(frame(SETTINGS, 0, 0, b"\0\4\0\0\1"), "settings-bad-len")
    elif how == "stream":
        g.w(frame(SETTINGS, 0, rng.choice([1, 3]), b"\0\3\0\0\0\1"), "settings-stream")
    else:
        p = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, rng.choice([0, 1, 65535, MAX_WIN])))
        n = rng.choice([2, 10, 50])
        g.w(p * n, "settings-repeat", n)


def op_headers_bad(g):
    rng = g.rng
    how = rng.choice(["even", "reuse", "garbage-hpack", "lone-cont", "cont-other-stream",
                      "interleave", "bad-pad", "huge-block", "cont-flood", "bad-fields",
                      "stream0", "prio-self", "dyn-table", "trailers-no-end", "idle-high"])
    f = req_fields(rng, "GET", "/fixed/10")
    if how == "even":
        g.w(frame(HEADERS, END_HEADERS | END_STREAM, 2, g.block(f)), "hdr-even")
    elif how == "reuse":
        sid = rng.choice(g.closed) if g.closed else 1
        g.w(frame(HEADERS, END_HEADERS | END_STREAM, sid, g.block(f)), "hdr-reuse")
    elif how == "garbage-hpack":
        g.w(frame(HEADERS, END_HEADERS | END_STREAM, g.sid(),
                  rng.randbytes(rng.randint(1, 64))), "hdr-garbage")
    elif how == "lone-cont":
        g.w(frame(CONTINUATION, END_HEADERS, g.next_sid, g.block(f)), "cont-lone")
    elif how == "cont-other-stream":
        sid = g.sid()
        blk = g.block(f)
        g.w(frame(HEADERS, END_STREAM, sid, blk[:3]) + frame(CONTINUATION, END_HEADERS,
                                                               sid + 2, blk[3:]), "cont-other", 2)
    elif how == "interleave":
        sid = g.sid()
        blk = g.block(f)
        mid = frame(rng.choice([PING, DATA, SETTINGS, PRIORITY, 0x42]), 0,
                    rng.choice([0, sid]), b"\0" * 8)
        g.w(frame(HEADERS, END_STREAM, sid, blk[:2]) + mid + frame(CONTINUATION, END_HEADERS,
                                                                     sid, blk[2:]), "cont-inter",
            3)
    elif how == "bad-pad":
        blk = g.block(f)
        g.w(frame(HEADERS, END_HEADERS | END_STREAM | PADDED, g.sid(),
                  bytes([min(255, len(blk) + rng.randint(1, 200))]) + blk), "hdr-bad-pad")
    elif how == "huge-block":
        big = [("x-big-%d" % i, "v" * rng.choice([100, 4000, 8000])) for i in range(40)]
        g.headers(g.sid(), g.block(f + big), True, "hdr-huge", split=True)
    elif how == "cont-flood":
        sid = g.sid()
        n = rng.choice([50, 500, 3000])
        out = frame(HEADERS, END_STREAM, sid, g.block(f))
        out += frame(CONTINUATION, 0, sid, b"") * n
        if rng.random() < 0.5:
            out += frame(CONTINUATION, END_HEADERS, sid, b"")
        g.w(out, "cont-flood", n + 2)
    elif how == "bad-fields":
        bad = rng.choice([[("Upper", "x")], [("connection", "close")], [(":path", "")],
                          [(":method", "GET")], [("te", "gzip")], [(":status", "200")],
                          [("x", "a\r\nb")], [("", "x")], [("host", "other")],
                          [(":protocol", "websocket")], [("transfer-encoding", "chunked")]])
        g.headers(g.sid(), g.block(f + bad), True, "hdr-bad-fields")
    elif how == "stream0":
        g.w(frame(HEADERS, END_HEADERS | END_STREAM, 0, g.block(f)), "hdr-stream0")
    elif how == "prio-self":
        sid = g.sid()
        g.w(frame(HEADERS, END_HEADERS | END_STREAM | PRIO_FLAG, sid,
                  struct.pack(">IB", sid, 16) + g.block(f)), "hdr-prio-self")
    elif how == "dyn-table":
        g.w(frame(HEADERS, END_HEADERS | END_STREAM, g.sid(),
                  b"\x3f\xe1\xff\xff\x0f" + g.block(f)), "hdr-dyn-table")
    elif how == "trailers-no-end":
        sid = g.sid()
        g.headers(sid, g.block(req_fields(rng, "POST", "/echo")), False, "post")
        g.data(sid, b"abc", False, "post-data")
        g.w(frame(HEADERS, END_HEADERS, sid, g.block([("x-t", "1")])), "trailers-no-end")
    else:
        g.next_sid += 2 * rng.choice([1, 100, 1 << 20])
        op_get(g)


def op_data_bad(g):
    rng = g.rng
    how = rng.choice(["stream0", "idle", "closed", "bad-pad", "over-window", "too-big",
                      "after-end", "small-many", "empty-many"])
    if how == "stream0":
        g.w(frame(DATA, 0, 0, b"x" * 10), "data-stream0")
    elif how == "idle":
        g.w(frame(DATA, END_STREAM, g.next_sid + 2 * rng.randint(0, 3), b"x" * 10), "data-idle")
    elif how in ("closed", "after-end"):
        sid = rng.choice(g.closed) if g.closed else 1
        g.w(frame(DATA, rng.choice([0, END_STREAM]), sid, b"y" * rng.choice([0, 1, 100])),
            "data-closed")
    elif how == "bad-pad":
        sid = g.open[0] if g.open else g.next_sid
        g.w(frame(DATA, PADDED, sid, bytes([rng.choice([5, 200, 255])]) + b"z" * 4),
            "data-bad-pad")
    elif how == "over-window":
        sid = g.sid()
        g.headers(sid, g.block(req_fields(rng, "POST", "/echo")), False, "post")
        n = 0
        out = b""
        while n < 65535 + rng.choice([1, 20000, 100000]):
            out += frame(DATA, 0, sid, b"w" * 16384)
            n += 16384
        g.w(out, "data-over-window", n // 16384)
        g.open.append(sid)
    elif how == "too-big":
        sid = g.open[0] if g.open else g.next_sid
        g.w(frame(DATA, 0, sid, b"b" * 16385), "data-too-big")
    elif how == "small-many":
        sid = g.sid()
        g.headers(sid, g.block(req_fields(rng, "POST", "/echo")), False, "post")
        n = rng.choice([100, 2000, 12000])
        g.w(frame(DATA, 0, sid, b"s") * n, "data-small-many", n)
        g.open.append(sid)
    else:
        sid = g.open[0] if g.open else g.next_sid
        n = rng.choice([100, 2000])
        g.w(frame(DATA, 0, sid, b"") * n, "data-empty-many", n)


def op_rst(g):
    rng = g.rng
    sid = rng.choice(g.open + g.closed + [0, g.next_sid, g.next_sid + 1, 0x7FFFFFFF])
    code = rng.choice([0, 1, 2, 5, 8, 11, 0xFFFFFFFF])
    if rng.random() < 0.15:
        g.w(frame(RST_STREAM, 0, sid, struct.pack(">I", code)[:rng.choice([0, 2, 3])]),
            "rst-bad-len")
    else:
        g.w(frame(RST_STREAM, 0, sid, struct.pack(">I", code)), "rst")
    if sid in g.open:
        g.open.remove(sid)


def op_rapid_reset(g):
    rng = g.rng
    n = rng.choice([5, 50, 400])
    out = b""
    for _ in range(n):
        sid = g.sid()
        out += frame(HEADERS, END_HEADERS | END_STREAM, sid,
                     g.block(req_fields(rng, "GET", "/slow/1000")))
        out += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    g.w(out, "rapid-reset", 2 * n)


def op_window(g):
    rng = g.rng
    how = rng.choice(["open", "open", "zero", "overflow", "idle", "bad-len", "flood"])
    sid = rng.choice([0] + g.open + g.closed)
    if how == "open":
        g.w(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WIN - 65535)), "wu-open")
    elif how == "zero":
        g.w(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0)), "wu-zero")
    elif how == "overflow":
        p = frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", MAX_WIN))
        g.w(p * 2, "wu-overflow", 2)
    elif how == "idle":
        g.w(frame(WINDOW_UPDATE, 0, g.next_sid + 2, struct.pack(">I", 100)), "wu-idle")
    elif how == "bad-len":
        g.w(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 100)[:rng.choice([0, 3])]),
            "wu-bad-len")
    else:
        n = rng.choice([100, 2000])
        g.w(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)) * n, "wu-flood", n)


def op_ping(g):
    rng = g.rng
    how = rng.choice(["ping", "ping", "ack", "bad-len", "stream", "flood"])
    if how == "ping":
        g.w(frame(PING, 0, 0, rng.randbytes(8)), "ping")
    elif how == "ack":
        g.w(frame(PING, ACK, 0, rng.randbytes(8)), "ping-ack")
    elif how == "bad-len":
        g.w(frame(PING, 0, 0, rng.randbytes(rng.choice([0, 7, 9]))), "ping-bad-len")
    elif how == "stream":
        g.w(frame(PING, 0, 1, rng.randbytes(8)), "ping-stream")
    else:
        n = rng.choice([100, 1500])
        g.w(frame(PING, 0, 0, b"floodflo") * n, "ping-flood", n)


def op_priority(g):
    rng = g.rng
    how = rng.choice(["ok", "self", "bad-len", "stream0", "many"])
    sid = rng.choice(g.open + g.closed + [g.next_sid, g.next_sid + 20])
    if how == "ok":
        g.w(frame(PRIORITY, 0, sid, struct.pack(">IB", rng.choice([0, 1, 3]), 200)), "prio")
    elif how == "self":
        g.w(frame(PRIORITY, 0, sid, struct.pack(">IB", sid, 0)), "prio-self")
    elif how == "bad-len":
        g.w(frame(PRIORITY, 0, sid, b"\0\0\0\1"), "prio-bad-len")
    elif how == "stream0":
        g.w(frame(PRIORITY, 0, 0, struct.pack(">IB", 1, 0)), "prio-stream0")
    else:
        n = rng.choice([50, 500])
        g.w(b"".join(frame(PRIORITY, 0, g.next_sid + 2 * i, struct.pack(">IB", 0, 1))
                     for i in range(n)), "prio-many", n)


def op_goaway(g):
    rng = g.rng
    how = rng.choice(["ok", "ok", "stream", "short", "debug"])
    last = rng.choice([0, 1, g.next_sid, 0x7FFFFFFF])
    code = rng.choice([0, 1, 2, 11, 0xFFFF])
    if how == "ok":
        g.w(frame(GOAWAY, 0, 0, struct.pack(">II", last, code)), "goaway")
    elif how == "stream":
        g.w(frame(GOAWAY, 0, 1, struct.pack(">II", last, code)), "goaway-stream")
    elif how == "short":
        g.w(frame(GOAWAY, 0, 0, b"\0\0\0"), "goaway-short")
    else:
        g.w(frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + rng.randbytes(500)),
            "goaway-debug")


def op_unknown(g):
    rng = g.rng
    t = rng.choice([PUSH_PROMISE, 10, 11, 12, 0x42, 0xFF, rng.randrange(10, 256)])
    g.w(frame(t, rng.randrange(256), rng.choice([0, 1, g.next_sid, 0x80000001]),
              rng.randbytes(rng.choice([0, 4, 100, 16384]))), "unknown-%s" %
        ("push" if t == PUSH_PROMISE else "type"))


def op_bad_length(g):
    """A frame header claiming more than the frame limit (16,384 until the client changes it)."""
    rng = g.rng
    t = rng.choice([DATA, HEADERS, SETTINGS, PING, 0x42])
    n = rng.choice([16385, 1 << 20, (1 << 24) - 1])
    g.w(frame(t, 0, rng.choice([0, 1, g.next_sid]), rng.randbytes(64), length=n),
        "bad-length")


def op_pause(g):
    g.pause(g.rng.choice([0.01, 0.05, 0.2, 0.5]))


OPS = [(op_get, 10), (op_post, 8), (op_settings, 5), (op_headers_bad, 8), (op_data_bad, 5),
       (op_rst, 5), (op_rapid_reset, 1), (op_window, 5), (op_ping, 4), (op_priority, 3),
       (op_goaway, 2), (op_unknown, 3), (op_pause, 3)]
ENDS = [("linger", 6), ("shut", 2), ("close", 2), ("reset", 2), ("truncate", 2),
        ("goaway", 1), ("bad-length", 1)]


class Case:
    """One client connection: its protocol, writes and pauses, its end; drawn from (seed, k)."""

    def __init__(self, seed, k):
        self.seed, self.k = seed, k
        rng = random.Random(f"h2fuzz:{seed}:{k}")
        self.tls = rng.random() < 0.35
        self.table, self.max_frame = 4096, 16384
        self.area = pick(rng, [("clean", 2), ("hostile", 6), ("mutant", 2)])[0]
        g = Gen(rng, self.area == "clean")
        g.w(PREFACE, "preface", 0)
        if g.clean or rng.random() < 0.7:
            s = b""
            if g.clean or rng.random() < 0.6:
                s = struct.pack(">HI", 4, MAX_WIN)    # open our window: answers flow whole
            if not g.clean and rng.random() < 0.3:
                s += settings_payload(rng)
            if g.clean and rng.random() < 0.5:
                # limits of ours Portico's answers must keep: its HPACK table, its frame size
                self.table = rng.choice([0, 64, 4096, 65536])
                self.max_frame = rng.choice([16384, 16385, 65536, (1 << 24) - 1])
                s += struct.pack(">HIHI", 1, self.table, 5, self.max_frame)
            g.w(frame(SETTINGS, 0, 0, s), "settings")
            if g.clean or rng.random() < 0.6:
                g.w(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WIN - 65535)), "wu-open")
        if g.clean or rng.random() < 0.7:
            g.w(frame(SETTINGS, ACK, 0), "settings-ack")
        n = rng.randint(1, 12)
        blocks = []
        for _ in range(n):
            at = len(g.writes)
            if g.clean:
                (op_get if rng.random() < 0.5 else op_post)(g)
                if rng.random() < 0.2:
                    op_pause(g)
            else:
                pick(rng, OPS)[0](g)
            blocks.append(g.writes[at:])
        self.fatal_last = g.literal and not g.clean and rng.random() < 0.7
        if self.fatal_last:
            head = g.writes[:len(g.writes) - sum(len(b) for b in blocks)]
            fatal = [b for b in blocks if any(w[0] == "send" and w[2] in FATAL for w in b)]
            g.writes = head + [w for b in blocks if b not in fatal for w in b] \
                + [w for b in fatal for w in b]
        self.end = "linger" if g.clean else pick(rng, ENDS)[0]
        if self.end == "truncate":
            fr = frame(HEADERS, END_HEADERS, g.next_sid, g.block(req_fields(rng, "GET", "/")))
            g.w(fr[:rng.randint(1, len(fr) - 1)], "truncated")
        elif self.end == "goaway":
            op_goaway(g)
        elif self.end == "bad-length":
            op_bad_length(g)
        self.mutation = None
        if self.area == "mutant":
            self.mutate(rng, g)
        # writes cut in pieces at random points: Portico's reads see frames split anywhere
        if rng.random() < 0.3:
            split = []
            for w in g.writes:
                if w[0] == "send" and len(w[1]) > 2 and rng.random() < 0.5:
                    b = bytes.fromhex(w[1])
                    cut = rng.randint(1, len(b) - 1)
                    split += [["send", b[:cut].hex()] + w[2:], ["pause", 0.01],
                              ["send", b[cut:].hex(), w[2] + "(cont)"]]
                else:
                    split.append(w)
            g.writes = split
        self.actions = g.writes
        self.frames = g.frames
        self.kinds = g.kinds
        self.expect = g.expect if g.clean else {}

    def mutate(self, rng, g):
        sends = [i for i, w in enumerate(g.writes) if w[0] == "send" and i > 0]
        if not sends:
            return
        how = rng.choice(["flip", "flip", "cut", "swap", "drop", "repeat"])
        i = rng.choice(sends)
        b = bytearray(bytes.fromhex(g.writes[i][1]))
        if how == "flip":
            for _ in range(rng.randint(1, 4)):
                j = rng.randrange(len(b))
                # frame headers are where the interesting bits are: favour the first nine bytes
                if rng.random() < 0.5:
                    j = rng.randrange(min(9, len(b)))
                b[j] ^= 1 << rng.randrange(8)
            g.writes[i][1] = bytes(b).hex()
        elif how == "cut":
            g.writes[i][1] = bytes(b[:rng.randrange(len(b))]).hex()
            del g.writes[i + 1:]
        elif how == "swap" and i + 1 < len(g.writes):
            g.writes[i], g.writes[i + 1] = g.writes[i + 1], g.writes[i]
        elif how == "drop":
            del g.writes[i]
        else:
            g.writes.insert(i, list(g.writes[i]))
        self.mutation = f"{how}@{i}"

    def describe(self):
        sends = [w[2] for w in self.actions if w[0] == "send"]
        return (f"{'tls' if self.tls else 'h2c'} {self.area} end={self.end}"
                + (" fatal-last" if getattr(self, "fatal_last", False) else "")
                + (f" mut={self.mutation}" if self.mutation else "")
                + f" frames={self.frames}: " + ",".join(sends[:40])
                + ("..." if len(sends) > 40 else ""))


def case_from_file(path):
    with open(path) as f:
        d = json.load(f)
    c = Case.__new__(Case)
    c.seed, c.k, c.tls, c.area, c.end = d["seed"], d["k"], d["tls"], d["area"], d["end"]
    c.mutation, c.actions = d.get("mutation"), d["actions"]
    c.expect = {int(s): (st, bytes.fromhex(b) if b is not None else None)
                for s, (st, b) in d.get("expect", {}).items()}
    c.frames = d.get("frames", 0)
    c.table, c.max_frame = d.get("table", 4096), d.get("max_frame", 16384)
    c.kinds = collections.Counter()
    return c


def save_case(case, path, why):
    with open(path, "w") as f:
        json.dump({"seed": case.seed, "k": case.k, "tls": case.tls, "area": case.area,
                   "end": case.end, "mutation": case.mutation, "frames": case.frames,
                   "table": case.table, "max_frame": case.max_frame,
                   "why": why, "actions": case.actions,
                   "expect": {s: (st, b.hex() if b is not None else None)
                              for s, (st, b) in case.expect.items()}}, f, indent=0)


# ----------------------------------------------------------------------------------------------
# The client side of a case: writes as drawn, a reader that takes every byte until the end.

def connect(port, tls, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        s = ctx.wrap_socket(s, server_hostname="localhost")
        if s.selected_alpn_protocol() != "h2":
            raise Defect(f"ALPN gave {s.selected_alpn_protocol()!r}, not h2")
    return s


def send_all(r, data, bound=10.0):
    """Writes data through the reader's socket, a piece at a time under its lock; raises
    TimeoutError when Portico has taken none of it for bound seconds (it stopped reading)."""
    off, last = 0, time.monotonic()
    while off < len(data):
        try:
            with r.lock:
                n = r.s.send(data[off:off + 65536])
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            n = 0
        if n:
            off += n
            last = time.monotonic()
            continue
        if time.monotonic() - last > bound:
            raise TimeoutError(f"Portico read none of {len(data) - off} bytes for {bound} s")
        select.select([], [r.s], [], 0.01)


class Reader(threading.Thread):
    """Reads the connection to its end, parsing frames: answers per stream (status, body),
    resets, GOAWAY; HPACK errors stop the decoding (a hostile case may break the table)."""

    def __init__(self, s, max_frame=16384, table=4096):
        super().__init__(daemon=True)
        self.s = s
        self.max_frame = max_frame
        self.violations = []       # frames of Portico's past our SETTINGS_MAX_FRAME_SIZE
        # One OpenSSL connection must not be read and written by two threads at once: both
        # sides take this lock and never block under it (the socket is non-blocking).
        self.lock = threading.Lock()
        s.settimeout(0)
        self.buf = b""
        self.dec = hpack.Decoder()
        # (before Portico acknowledged our SETTINGS its encoder may use the default 4,096)
        self.dec.max_allowed_table_size = max(4096, table)
        self.decoding = True
        self.block = None          # (sid, bytes) of a header block waiting for CONTINUATION
        self.status = {}
        self.bodies = collections.defaultdict(bytearray)
        self.ended = set()
        self.resets = {}
        self.goaway = None
        self.frames = collections.Counter()
        self.eof = None            # how it ended: "eof", "reset", ...
        self.eof_at = None
        self.init_win = None       # Portico's SETTINGS_INITIAL_WINDOW_SIZE, once they came
        self.credit = collections.Counter()   # WINDOW_UPDATE increments by stream (0: conn)

    def run(self):
        try:
            while True:
                if not (self.s.pending() if isinstance(self.s, ssl.SSLSocket) else 0):
                    select.select([self.s], [], [], 0.05)
                try:
                    with self.lock:
                        d = self.s.recv(1 << 16)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue
                if not d:
                    self.eof = "eof"
                    break
                self.buf += d
                self.parse()
        except ssl.SSLError as e:
            self.eof = f"tls: {e.reason}"
        except OSError as e:
            self.eof = type(e).__name__
        except ValueError:         # the case closed the socket (select on descriptor -1)
            self.eof = "closed"
        self.eof_at = time.monotonic()

    def parse(self):
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                return
            t, fl, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") \
                & 0x7FFFFFFF
            p = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            if n > self.max_frame:
                self.violations.append(f"a frame of type {t} and {n} bytes, past our "
                                       f"SETTINGS_MAX_FRAME_SIZE {self.max_frame}")
            self.frames[FNAMES[t] if t < 10 else "type%d" % t] += 1
            if t == DATA:
                if fl & PADDED and p:
                    p = p[1:len(p) - p[0]]
                self.bodies[sid] += p
                if fl & END_STREAM:
                    self.ended.add(sid)
            elif t in (HEADERS, CONTINUATION):
                if t == HEADERS:
                    q = p
                    if fl & PADDED and q:
                        q = q[1:len(q) - q[0]]
                    if fl & PRIO_FLAG:
                        q = q[5:]
                    self.block = (sid, q, fl & END_STREAM)
                elif self.block:
                    self.block = (self.block[0], self.block[1] + p, self.block[2])
                if fl & END_HEADERS and self.block:
                    bsid, blk, end = self.block
                    self.block = None
                    if self.decoding:
                        try:
                            fields = self.dec.decode(blk, raw=True)
                            for k, v in fields:
                                if k == b":status" and int(v) >= 200:
                                    self.status.setdefault(bsid, int(v))
                        except Exception:
                            self.decoding = False
                    if end:
                        self.ended.add(bsid)
            elif t == SETTINGS and not fl & ACK:
                self.init_win = self.init_win or 65535
                for i in range(0, len(p) - 5, 6):
                    if int.from_bytes(p[i:i + 2], "big") == 4:
                        self.init_win = int.from_bytes(p[i + 2:i + 6], "big")
            elif t == WINDOW_UPDATE and len(p) == 4:
                self.credit[sid] += int.from_bytes(p, "big") & 0x7FFFFFFF
            elif t == RST_STREAM and len(p) == 4:
                self.resets[sid] = int.from_bytes(p, "big")
            elif t == GOAWAY and len(p) >= 8:
                self.goaway = (int.from_bytes(p[:4], "big") & 0x7FFFFFFF,
                               int.from_bytes(p[4:8], "big"), p[8:200])


def run_case(case, port, tls_port, stats, conn_bound):
    """Sends the case; returns None or what went wrong."""
    try:
        s = connect(tls_port if case.tls else port, case.tls)
    except (OSError, ssl.SSLError) as e:
        return f"connect: {type(e).__name__}: {e}"
    r = Reader(s, case.max_frame, case.table)
    r.start()
    broke = None
    sent = collections.Counter()    # DATA payload sent by stream (0: the connection)
    for a in case.actions:
        if r.eof:
            break
        if a[0] == "pause":
            time.sleep(a[1])
            continue
        if len(a) > 3:
            # DATA of a request body: sent once Portico's windows let it (its SETTINGS and
            # WINDOW_UPDATEs, read by the reader), or after 5 s anyway (a hostile case may have
            # made Portico stop granting); the bytes sent are the case's whatever the wait
            sid, n = a[3]
            wait_until = time.monotonic() + 5
            while time.monotonic() < wait_until and not r.eof and (
                    r.init_win is None or sent[sid] + n > r.init_win + r.credit[sid]
                    or sent[0] + n > 65535 + r.credit[0]):
                time.sleep(0.002)
            sent[sid] += n
            sent[0] += n
        try:
            send_all(r, bytes.fromhex(a[1]))
            stats.bytes += len(a[1]) // 2
        except (OSError, ssl.SSLError) as e:
            broke = type(e).__name__
            break
    end = case.end
    t0 = time.monotonic()
    try:
        if end == "shut" and not broke:
            s.shutdown(socket.SHUT_WR)     # (over TLS too: no close_notify, a bare FIN)
        elif end == "close":
            s.shutdown(socket.SHUT_RDWR)
        elif end == "reset":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    except (OSError, ValueError, ssl.SSLError):
        pass
    r.join(conn_bound)
    err = None
    if end not in ("close", "reset") and r.is_alive():
        err = (f"connection still open {conn_bound:g} s after the case's last write "
               f"(frames in: {dict(r.frames)})")
    if r.eof_at and end not in ("close", "reset"):
        stats.linger_max = max(stats.linger_max, r.eof_at - t0)
    try:
        s.close()
    except OSError:
        pass
    r.join(2)
    stats.frames_in.update(r.frames)
    stats.ends[(r.goaway[1] if r.goaway else None, r.eof if not err else "open")] += 1
    if err is None and r.violations and case.area == "clean":
        err = "; ".join(r.violations[:3])
    if err is None and case.expect:
        for sid, (st, body) in sorted(case.expect.items()):
            if st is None:
                continue
            got = r.status.get(sid)
            if got != st:
                err = (f"stream {sid}: status {got}, expected {st} (reset "
                       f"{r.resets.get(sid)}, goaway {r.goaway})")
                break
            if body is not None and bytes(r.bodies.get(sid, b"")) != body:
                err = (f"stream {sid}: body of {len(r.bodies.get(sid, b''))} bytes, expected "
                       f"{len(body)}")
                break
            stats.checked += 1
    stats.answered += len(r.status)
    return err


def canary(port, tls_port, tls, bound, n=1000):
    """GET /fixed/N on a new connection: 200 and the body whole within bound seconds."""
    t0 = time.monotonic()
    try:
        s = connect(tls_port if tls else port, tls, timeout=bound)
    except (OSError, ssl.SSLError, Defect) as e:
        return f"canary: connect: {e}"
    r = Reader(s)
    enc = hpack.Encoder()
    blk = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", f"/fixed/{n}"),
                      (":authority", "localhost")])
    try:
        send_all(r, PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0)
                  + frame(HEADERS, END_HEADERS | END_STREAM, 1, blk))
    except (OSError, ssl.SSLError) as e:
        return f"canary: send: {type(e).__name__}: {e}"
    r.start()
    while time.monotonic() - t0 < bound and r.is_alive():
        if 1 in r.ended:
            break
        time.sleep(0.005)
    try:
        s.close()
    except OSError:
        pass
    if r.status.get(1) != 200 or 1 not in r.ended or bytes(r.bodies[1]) != body_of(n):
        return (f"canary: status {r.status.get(1)}, {len(r.bodies[1])} body bytes, ended "
                f"{1 in r.ended}, after {time.monotonic() - t0:.1f} s (goaway {r.goaway}, "
                f"reader end {r.eof})")
    return None


# ----------------------------------------------------------------------------------------------
# The origin: HTTP/1.1 keep-alive, fixed bodies, echoes, slow streams, statuses, a close.

class Origin:
    def __init__(self, port):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(256)
        self.requests = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def read_body(c, buf, fields):
        def need(n):
            nonlocal buf
            while len(buf) < n:
                d = c.recv(65536)
                if not d:
                    raise EOFError
                buf += d

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    raise EOFError
                buf += d
            ln, buf = buf.split(b"\r\n", 1)
            return ln
        if "chunked" in fields.get("transfer-encoding", ""):
            body = b""
            while True:
                size = int(line().split(b";")[0], 16)
                if size == 0:
                    while line():
                        pass
                    return body, buf
                need(size + 2)
                body += buf[:size]
                buf = buf[size + 2:]
        n = int(fields.get("content-length", "0"))
        need(n)
        return buf[:n], buf[n:]

    def serve(self, c):
        c.settimeout(60)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                fields = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    fields[k.strip().lower()] = v.strip()
                body, buf = self.read_body(c, buf, fields)
                self.requests += 1
                parts = path.split("/")
                head_only = method == "HEAD"
                if parts[1] == "fixed":
                    b = body_of(int(parts[2]))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b)
                              + (b"" if head_only else b))
                elif parts[1] == "echo":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
                              + body)
                elif parts[1] == "slow":
                    b = body_of(int(parts[2]))
                    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    if not head_only:
                        step = max(1, len(b) // 5)
                        for i in range(0, len(b), step):
                            c.sendall(b"%x\r\n%s\r\n" % (len(b[i:i + step]), b[i:i + step]))
                            time.sleep(0.05)
                        c.sendall(b"0\r\nx-slow: done\r\n\r\n")
                elif parts[1] == "status":
                    code = int(parts[2])
                    c.sendall(b"HTTP/1.1 %d X\r\n%s\r\n" % (
                        code, b"" if code in (204, 304) else b"Content-Length: 0\r\n"))
                else:
                    return      # /close and anything else: closed unanswered
        except (OSError, EOFError, ValueError, IndexError):
            return
        finally:
            c.close()


# ----------------------------------------------------------------------------------------------
# Portico under test

def make_cert(workdir):
    crt, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    if not os.path.exists(crt):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=localhost", "-days", "30", "-keyout", key, "-out", crt,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
    return crt, key


SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
             "AddressSanitizer:DEADLYSIGNAL", "SUMMARY: UndefinedBehaviorSanitizer")


class Portico:
    def __init__(self, binary, workdir, base, crt, key):
        self.h2c, self.tls, self.admin, self.origin = base, base + 1, base + 2, base + 3
        self.cfg = os.path.join(workdir, "portico.ini")
        self.log = os.path.join(workdir, "portico.log")
        self.log_off = 0
        with open(self.cfg, "w") as f:
            f.write(f"""[proxy]
listen = 127.0.0.1:{self.h2c} h2c
listen = 127.0.0.1:{self.tls} tls
admin_listen = 127.0.0.1:{self.admin}
tls_cert = {crt}
tls_key = {key}
workers = 2
access_log = {os.path.join(workdir, 'access.log')}
error_log = stderr
log_level = info
client_header_timeout = 2s
client_body_timeout = 3s
client_send_timeout = 3s
keepalive_timeout = 2s
read_timeout = 5s
http2_max_concurrent_streams = 16

[upstream o]
origin = 127.0.0.1:{self.origin}

[route all]
prefix = /
upstream = o
""")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "halt_on_error=1:abort_on_error=0:detect_leaks=1:"
                       "quarantine_size_mb=64")
        env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen([binary, "-c", self.cfg], stdout=self.errf,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"portico exited {self.proc.returncode}: see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.h2c), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.tls), timeout=1).close()
                self.rss0 = self.rss()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"portico did not listen within 30 s: see {self.log}")

    def rss(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for ln in f:
                    if ln.startswith("VmRSS:"):
                        return int(ln.split()[1]) // 1024
        except OSError:
            pass
        return 0

    def new_log(self):
        """The error log's lines since the last call."""
        with open(self.log, "rb") as f:
            f.seek(self.log_off)
            d = f.read()
        self.log_off += len(d)
        return d.decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()
        return self.proc.returncode


class Stats:
    def __init__(self):
        self.cases = 0
        self.frames = 0
        self.bytes = 0
        self.checked = 0
        self.answered = 0
        self.areas = collections.Counter()
        self.kinds = collections.Counter()
        self.frames_in = collections.Counter()
        self.ends = collections.Counter()
        self.rss_max = 0
        self.linger_max = 0.0      # the longest a case's connection stayed after its last write
        self.harness = 0           # cases this script itself failed to run (a traceback)
        self.warns = collections.Counter()    # [warn] and [error] lines, by kind
        self.warn_case = {}                   # kind -> (seed, k) of its first case


def check_after(case, p, a, stats, err):
    """The checks after a case: Portico alive, no sanitizer line, RSS, the canary."""
    errs = [err] if err else []
    if p.proc.poll() is None:
        c = canary(p.h2c, p.tls, case.tls, a.canary_bound)
        if c:
            errs.append(c)
    log = p.new_log()
    bad = [ln for ln in log.splitlines() if any(m in ln for m in SANITIZER)]
    if bad:
        errs.append("sanitizer: " + " | ".join(bad[:3]))
    # warnings and errors are Portico's word that something not the client's went wrong: each
    # kind is listed at the end with a case that made it (what a client does wrong is info)
    for ln in log.splitlines():
        if "[warn]" in ln or "[error]" in ln:
            kind = re.sub(r"[0-9]+", "N", ln.split("] ", 1)[-1])[:160]
            if kind not in stats.warns:
                stats.warn_case[kind] = (case.seed, case.k)
                if a.strict_log:
                    errs.append("error log: " + ln)
            stats.warns[kind] += 1
    if p.proc.poll() is not None:
        errs.append(f"portico exited {p.proc.returncode}")
    rss = p.rss()
    stats.rss_max = max(stats.rss_max, rss)
    if rss > a.rss_max:
        errs.append(f"portico's RSS is {rss} MiB (limit {a.rss_max})")
    return "; ".join(errs) or None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/asan/portico")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cases", type=int, default=100000)
    ap.add_argument("--time", type=float, default=900)
    ap.add_argument("--only", type=int, default=None)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--port-base", type=int, default=18100)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--replay", default=None, help="a fail-SEED-K.json to send again")
    ap.add_argument("--conn-bound", type=float, default=CONN_BOUND)
    ap.add_argument("--canary-bound", type=float, default=CANARY_BOUND)
    ap.add_argument("--rss-max", type=int, default=RSS_MAX_MIB)
    ap.add_argument("--keep-going", action="store_true", help="go on after a failing case")
    ap.add_argument("--strict-log", action="store_true",
                    help="a [warn] or [error] line of a kind not seen before fails its case")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = a.workdir or tempfile.mkdtemp(prefix="h2fuzz.")
    os.makedirs(workdir, exist_ok=True)
    crt, key = make_cert(workdir)
    p = Portico(a.bin, workdir, a.port_base, crt, key)
    Origin(p.origin)
    print(f"h2fuzz: seed {seed}, bin {a.bin}, workdir {workdir}, portico pid {p.proc.pid}, "
          f"rss {p.rss0} MiB", flush=True)
    stats = Stats()
    failures = []
    t0 = time.monotonic()
    if a.replay:
        ks = [case_from_file(a.replay)]
        seed = ks[0].seed
    elif a.only is not None:
        ks = [a.only]
    else:
        ks = range(a.first, a.first + a.cases)
    try:
        for k in ks:
            if time.monotonic() - t0 > a.time:
                break
            case = k if isinstance(k, Case) else Case(seed, k)
            ct = time.monotonic()
            try:
                err = run_case(case, p.h2c, p.tls, stats, a.conn_bound)
            except Exception:      # this script's own fault: said, counted, not Portico's
                import traceback
                traceback.print_exc()
                stats.harness += 1
                err = None
            err = check_after(case, p, a, stats, err)
            stats.cases += 1
            stats.frames += case.frames
            stats.areas[(case.area, "tls" if case.tls else "h2c")] += 1
            stats.kinds.update(case.kinds)
            if a.v or err:
                print(f"case {case.k} ({time.monotonic() - ct:.2f}s) {case.describe()}"
                      + (f"\n  FAIL: {err}" if err else " ok"), flush=True)
            if err:
                path = os.path.join(workdir, f"fail-{case.seed}-{case.k}.json")
                save_case(case, path, err)
                print(f"  replay: {sys.argv[0]} --bin {a.bin} --replay {path}\n"
                      f"  or: --seed {case.seed} --only {case.k}", flush=True)
                failures.append((case.k, err, path))
                if p.proc.poll() is not None or not a.keep_going:
                    break
    finally:
        rc = p.stop()
        tail = p.new_log()
        bad = [ln for ln in tail.splitlines() if any(m in ln for m in SANITIZER)]
    if bad:
        failures.append((-1, "at exit: " + " | ".join(bad[:3]), p.log))
    if rc != 0:
        failures.append((-1, f"portico exited {rc} after SIGTERM (see {p.log})", p.log))
    print(f"h2fuzz: seed {seed}: {stats.cases} cases, {stats.frames} frames and {stats.bytes} "
          f"bytes sent, {stats.answered} streams answered, {stats.checked} answers of clean "
          f"cases checked byte for byte, connections ended at most {stats.linger_max:.1f} s after "
          f"their last write, peak RSS {stats.rss_max} MiB (start {p.rss0}), "
          f"{len(failures)} failure(s), {stats.harness} harness error(s), "
          f"{time.monotonic() - t0:.0f} s; exit {rc}")
    print("  cases by area: " + ", ".join(f"{k[0]}/{k[1]} {v}"
                                           for k, v in sorted(stats.areas.items())))
    print("  connection ends (GOAWAY code, how): " + ", ".join(
        f"{k} {v}" for k, v in sorted(stats.ends.items(), key=lambda x: -x[1])))
    print("  frames received: " + ", ".join(f"{k} {v}" for k, v in
                                           sorted(stats.frames_in.items())))
    print("  writes by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items())))
    for kind, n in sorted(stats.warns.items(), key=lambda x: -x[1]):
        print(f"  error log: {n} x {kind} (first: --seed {stats.warn_case[kind][0]} "
              f"--only {stats.warn_case[kind][1]})")
    for k, e, path in failures:
        print(f"FAILED case {k}: {e}\n  replay: --replay {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
