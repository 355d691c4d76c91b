#!/usr/bin/python3
"""h2_frames.py — raw HTTP/2 frames against Portico, for test_http2.c, test_reload.c and
test_faults_fidelity.c (the fidelity mode: h2c or TLS, every frame of an answer).

Writes frames byte by byte (HPACK from python3-hpack, no HTTP/2 state machine that would refuse
to send a malformed request), reads what comes back, and prints one `key=value` line per
finding for the C test to assert on. Loopback only; every wait has a deadline and every loop a
count, so it always ends.

  h2_frames.py PORT MODE [ARG...]

MODES, at the end, names each mode's function and how its arguments are read; the function's
docstring says what the client does and why, its first line in the usage that a call naming no
known mode, or with arguments it cannot take, prints on stderr (exit status 2). For
test_http2.c and test_reload.c (the reload_next mode).
"""
import collections
import inspect
import os
import select
import signal
import socket
import ssl
import struct
import sys
import threading
import time

import hpack

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 2, 3, 4, 6, 7, 8, 9)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_HEADER_LIST_SIZE = 0x6  # a SETTINGS identifier
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
IO_S = 5.0


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid) + payload


def settings(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Conn:
    """One TLS connection (ALPN h2) speaking raw frames; plain: h2c with prior knowledge."""

    def __init__(self, port, pairs=(), ack_settings=True, early=None, source=None, plain=False):
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_S,
                                       source_address=(source, 0) if source else None)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if plain:
            self.s = raw
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.s = ctx.wrap_socket(raw, server_hostname="localhost")
            if self.s.selected_alpn_protocol() != "h2":
                raise SystemExit("alpn=%s" % self.s.selected_alpn_protocol())
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = b""
        self.ack_settings = ack_settings
        self.goaway = None          # (last stream id, error code)
        self.goaways = []           # every GOAWAY, in order
        self.closed = False         # nothing more to read
        self.unwritable = False     # a send failed (reset): what arrived before is still read
        self.streams = {}           # id -> {"status": [...], "rst": code, "data": n, "end": bool}
        self.settings_seen = False
        self.partial = None         # (flags, block) of a HEADERS awaiting its CONTINUATION
        self.peer_settings = {}     # Portico's SETTINGS, by identifier
        self.window_updates = {}    # stream id -> the sum of its WINDOW_UPDATE increments
        self.window_update_frames = {}  # stream id -> how many WINDOW_UPDATEs
        self.paced = False          # DATA is acknowledged by the caller (owed), not at once
        self.owed = 0
        self.ping_acks = 0          # PING ACKs: Portico has read what came before the PING
        self.after_ack = b""        # frames sent with the next PING ACK, in the same write
        # False: Portico's answer PINGs (after an answer whose body is still owed, payload
        # "ans...") go unacknowledged, as from a slow client: the rest is read until DISCARD_MAX,
        # its end or client_body_timeout, where an acknowledgement resets the stream at once
        self.ack_answers = True
        self.keep_body = False      # DATA payloads kept in the stream's "body" (fidelity)
        # early(self): frames sent with the preface, before Portico's SETTINGS are acknowledged
        self.send(PREFACE + settings(pairs) + (early(self) if early else b""))
        if ack_settings:  # acknowledged before anything else: never inside a header block
            self.pump(lambda: self.settings_seen, time.monotonic() + IO_S)

    def send(self, data):
        try:
            self.s.settimeout(IO_S)  # pump() may have left a 10 ms timeout for its reads
            self.s.sendall(data)
            return True
        except OSError:
            self.unwritable = True
            return False

    def block(self, fields):
        return self.enc.encode(fields)

    def request(self, sid, fields, end_stream=True):
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        return frame(HEADERS, flags, sid, self.block(fields))

    def st(self, sid):
        return self.streams.setdefault(sid, {"status": [], "rst": None, "data": 0, "end": False,
                                             "seq": [], "blocks": [], "body": b"",
                                             "head_at": None})

    def seq(self, sid, kind, flags):
        """Notes a frame of the stream: HEADERS, DATA (a run of them as one) or RST, +END with
        END_STREAM."""
        seq = self.st(sid)["seq"]
        token = kind + ("+END" if flags & END_STREAM else "")
        if kind == "DATA" and seq and seq[-1] == "DATA":
            seq[-1] = token
        else:
            seq.append(token)

    def handle(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & ACK:
            self.settings_seen = True
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                self.peer_settings[k] = v
            if self.ack_settings:
                self.send(frame(SETTINGS, ACK, 0))
        elif ftype == HEADERS or ftype == CONTINUATION:
            block = payload
            if ftype == HEADERS and flags & 0x8:  # PADDED
                block = block[1:len(block) - block[0]]
            if ftype == HEADERS and flags & 0x20:  # PRIORITY
                block = block[5:]
            if ftype == CONTINUATION:  # the rest of the block, END_STREAM on its HEADERS
                flags = (self.partial[0] & END_STREAM) | (flags & END_HEADERS)
                block = self.partial[1] + block
            self.partial = None
            if not flags & END_HEADERS:  # a block larger than a frame: its CONTINUATION next
                self.partial = (flags, block)
                return
            fields = self.dec.decode(block)
            final = any(k == ":status" and not v.startswith("1") for k, v in fields)
            if final and self.st(sid)["head_at"] is None:  # a 1xx is not the answer
                self.st(sid)["head_at"] = time.monotonic()
            self.st(sid)["blocks"].append(fields)
            self.seq(sid, "HEADERS", flags)
            for field in fields:
                name, value = field
                if name == ":status":
                    self.st(sid)["status"].append(int(value))
                if not field.indexable:  # sent as never indexed
                    self.st(sid).setdefault("never", []).append(name)
            self.st(sid)["end"] |= bool(flags & END_STREAM)
        elif ftype == DATA:
            self.seq(sid, "DATA", flags)
            self.st(sid)["data"] += len(payload)
            if self.keep_body:
                self.st(sid)["body"] += payload
            self.st(sid)["end"] |= bool(flags & END_STREAM)
            if payload and self.paced:
                self.owed += len(payload)
            elif payload:  # keep the windows open
                inc = struct.pack(">I", len(payload))
                self.send(frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, sid, inc))
        elif ftype == WINDOW_UPDATE and len(payload) == 4:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            self.window_updates[sid] = self.window_updates.get(sid, 0) + inc
            self.window_update_frames[sid] = self.window_update_frames.get(sid, 0) + 1
        elif ftype == RST_STREAM:
            self.seq(sid, "RST", 0)
            self.st(sid)["rst"] = struct.unpack(">I", payload)[0]
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", payload[:8])
            self.goaways.append(self.goaway)
        elif ftype == PING and flags & ACK:
            self.ping_acks += 1
        elif ftype == PING and not flags & ACK:  # as every client does
            if self.ack_answers or not payload.startswith(b"ans"):
                self.send(frame(PING, ACK, 0, payload) + self.after_ack)
                self.after_ack = b""

    def pump(self, until, deadline):
        """Reads frames until until() holds, the connection closes, or the deadline passes."""
        while not until() and not self.closed and time.monotonic() < deadline:
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
                payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                self.handle(ftype, flags, sid & 0x7FFFFFFF, payload)
                if until():
                    return True
            self.s.settimeout(max(0.01, min(IO_S, deadline - time.monotonic())))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self.buf += chunk
        return until()

    def wait(self, st, also=lambda: False, within=IO_S):
        """Reads until the stream whose state is st (st(sid)) ended or was reset, or also()
        holds, for seconds at most: whether it did (as pump)."""
        return self.pump(lambda: st["end"] or st["rst"] is not None or also(),
                         time.monotonic() + within)

    def ask(self, sid, fields, also=lambda: False):
        """Sends a request without a body on stream sid and reads until it ended or was reset,
        or also() holds: its state."""
        st = self.st(sid)
        self.send(self.request(sid, fields))
        self.wait(st, also)
        return st

    def sync(self, before=b"", payload=b"\0" * 8, also=lambda: False):
        """Sends before with a PING behind it and reads until its ACK (or also()): Portico
        answers frames in order, so it has read all that came before."""
        acks = self.ping_acks
        self.send(before + frame(PING, 0, 0, payload))
        return self.pump(lambda: self.ping_acks > acks or also(), time.monotonic() + IO_S)

    def window(self, sid, used):
        """What stream sid's window (0: the connection's) has left once used bytes went, as
        this client counts it: the initial window and every WINDOW_UPDATE since."""
        initial = self.peer_settings.get(4, 65535) if sid else 65535
        return initial + self.window_updates.get(sid, 0) - used

    def send_windowed(self, sid, body, sent, stop, deadline, each=False):
        """Sends body[sent:] on stream sid in DATA of 16 KiB at most, as its window and the
        connection's allow (one stream's bytes on the connection), until stop bytes went, a
        reset, a GOAWAY, the close or the deadline; each: a 1 ms read after every frame, for
        a reset. The bytes sent, sent included."""
        st = self.st(sid)
        room = lambda: min(self.window(sid, sent), self.window(0, sent))
        while st["rst"] is None and sent < stop and time.monotonic() < deadline \
                and self.goaway is None and not self.closed:
            n = min(16384, room(), len(body) - sent)
            if n > 0:
                self.send(frame(DATA, 0, sid, body[sent:sent + n]))
                sent += n
                if each:
                    self.pump(lambda: st["rst"] is not None, time.monotonic() + 0.001)
            else:  # its WINDOW_UPDATE, or the reset
                self.pump(lambda: st["rst"] is not None or room() > 0, deadline)
        return sent

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def cancel_frame(sid):
    """RST_STREAM CANCEL: the client has left the stream, as a browser leaves a page."""
    return frame(RST_STREAM, 0, sid, struct.pack(">I", 8))


def last_field(st, name):
    """The value of the last name field in the stream's header blocks (None: none came)."""
    values = [v for b in st["blocks"] for k, v in b if k == name]
    return values[-1] if values else None


def get(path, method="GET"):
    return [(":method", method), (":scheme", "https"), (":path", path),
            (":authority", "localhost")]


def refused_upload(path):
    """A POST whose body may still come, its head refused at once (431: more fields than an
    HTTP/1.1 head may have): answered, then reset (RST_STREAM NO_ERROR) at the answer's
    END_STREAM, its window left to the client. An upload answered early by an exchange (401,
    413, 502) is read and dropped instead, up to DISCARD_MAX or client_body_timeout."""
    return get(path, "POST") + [("content-length", "100000000000")] + [("x", "1")] * 100


# Each case: the fields of the request, and the DATA it sends (None: END_STREAM on HEADERS).
MALFORMED = [
    ("connection", get("/") + [("connection", "keep-alive")], None),
    ("keep_alive", get("/") + [("keep-alive", "timeout=5")], None),
    ("proxy_connection", get("/") + [("proxy-connection", "keep-alive")], None),
    ("transfer_encoding", get("/", "POST") + [("transfer-encoding", "chunked")], b"0\r\n\r\n"),
    ("upgrade", get("/") + [("upgrade", "websocket")], None),
    ("te_gzip", get("/") + [("te", "gzip")], None),
    ("uppercase_name", get("/") + [("X-Upper", "1")], None),
    ("cr_in_value", get("/") + [("x-a", "a\rb")], None),
    ("lf_in_value", get("/") + [("x-a", "a\nGET /smuggled HTTP/1.1")], None),
    ("nul_in_value", get("/") + [("x-a", "a\0b")], None),
    ("space_around_value", get("/") + [("x-a", " padded")], None),
    ("pseudo_after_regular", [(":method", "GET"), (":scheme", "https"), ("x-a", "1"),
                              (":path", "/"), (":authority", "localhost")], None),
    ("no_path", [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")], None),
    ("repeated_method", get("/") + [(":method", "POST")], None),
    ("unknown_pseudo", get("/") + [(":foo", "bar")], None),
    ("relative_path", get("relative"), None),
    ("space_in_path", get("/a b"), None),
    ("host_differs", get("/") + [("host", "evil.example")], None),
    ("cl_longer_than_data", get("/echo", "POST") + [("content-length", "10")], b"12345"),
    ("cl_shorter_than_data", get("/echo", "POST") + [("content-length", "3")], b"12345"),
    # END_STREAM on the HEADERS of a request whose content-length announces a body: its
    # pseudo-header fields are all there, the log must not blame them
    ("cl_without_data", get("/cl-without-data", "POST") + [("content-length", "10")], None),
]


def malformed(port):
    """Each malformed request (MALFORMED) on a stream of its own: refused, the connection kept."""
    c = Conn(port)
    sid = 1
    for name, fields, body in MALFORMED:
        c.send(c.request(sid, fields, end_stream=body is None))
        if body is not None:
            c.send(frame(DATA, END_STREAM, sid, body))
        st = c.st(sid)
        c.wait(st)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
        sid += 2
    st = c.ask(sid, get("/status/200"))
    print("case=valid_after rst=%s status=%s goaway=%s" % (st["rst"], st["status"][-1:], c.goaway))
    c.close()


def zero_length(port):
    """POSTs of content-length: 0 without END_STREAM, then what ends each: a smuggle is refused.

    content-length: 0 on a HEADERS without END_STREAM, then what ends the stream."""
    c = Conn(port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    # what follows each head, encoded after it (the HPACK encoder's table is in sending order)
    cases = [("data", 1, lambda: frame(DATA, END_STREAM, 1, smuggled)),
             ("empty_end", 3, lambda: frame(DATA, END_STREAM, 3)),
             ("trailers", 5, lambda: frame(HEADERS, END_STREAM | END_HEADERS, 5,
                                           c.block([("x-t", "1")]))),
             # the client leaves it: nothing comes back (the next case's answer follows it)
             ("reset", 7, lambda: cancel_frame(7)),
             ("nothing", 9, lambda: b"")]
    for name, sid, rest in cases:
        st = c.st(sid)
        head = c.request(sid, get("/zero-" + name, "POST") + [("content-length", "0")], False)
        c.send(head + rest())
        if name != "reset":
            c.wait(st)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
    c.close()


HOLD_BIG = 50000  # past the stream's first window (16 KiB): WINDOW_UPDATEs let the rest in


def hold(port, fifo_dir):
    """POSTs whose DATA completes the body before END_STREAM: held for it, then what ends each.

    POSTs (content-length: 10) whose DATA carries the 10 bytes without END_STREAM, then a PING:
    once its ACK came, more DATA (malformed; FIFO_DIR/acked and FIFO_DIR/go, FIFOs, let the C
    test look at the origin first), an empty END_STREAM, trailers, nothing; then HOLD_BIG bytes
    in many DATA within the windows given."""
    # Opened first, never blocking: its poll waits for the C test's writer, not its absence.
    go = os.open(os.path.join(fifo_dir, "go"), os.O_RDONLY | os.O_NONBLOCK)
    c = Conn(port)
    body = b"0123456789"
    cases = [("more", 1, lambda: frame(DATA, END_STREAM, 1, b"x")),
             ("empty_end", 3, lambda: frame(DATA, END_STREAM, 3)),
             ("trailers", 5, lambda: frame(HEADERS, END_STREAM | END_HEADERS, 5,
                                           c.block([("x-t", "1")]))),
             ("nothing", 7, lambda: b"")]
    for name, sid, rest in cases:
        st = c.st(sid)
        fields = get("/hold-" + name, "POST") + [("content-length", str(len(body)))]
        acked = c.sync(c.request(sid, fields, False) + frame(DATA, 0, sid, body), b"holdping")
        # (frames are handled in order: the DATA was, before the ACK went)
        print("case=%s acked=%s early_status=%s" % (name, acked, st["status"]))
        if name == "more":
            with open(os.path.join(fifo_dir, "acked"), "w") as f:
                f.write("acked\n")
            ready, _, _ = select.select([go], [], [], IO_S)
            print("go=%s" % bool(ready))
        c.send(rest())
        c.wait(st)
        print("case=%s rst=%s status=%s data=%d" % (name, st["rst"], st["status"][-1:],
                                                    st["data"]))
    os.close(go)
    c.close()
    # A body of many DATA frames, within the windows Portico gives (its own connection: what
    # went on it is this stream's), then the PING, then an empty END_STREAM.
    c = Conn(port)
    st = c.st(1)
    body = bytes(b"0123456789abcdef"[i % 16] for i in range(HOLD_BIG))
    c.send(c.request(1, get("/hold-big", "POST") + [("content-length", str(HOLD_BIG))], False))
    sent = c.send_windowed(1, body, 0, HOLD_BIG, time.monotonic() + IO_S)
    c.sync(payload=b"holdping")
    early = list(st["status"])
    c.send(frame(DATA, END_STREAM, 1))
    c.wait(st)
    print("case=big sent=%d early_status=%s rst=%s status=%s data=%d" % (
        sent, early, st["rst"], st["status"][-1:], st["data"]))
    c.close()


def hold_expect(port):
    """hold after expect: 100-continue and the origin's 100: the body's end still awaited.

    expect: 100-continue (relayed: the origin's 100 comes as a 1xx HEADERS), then DATA that
    completes the content-length before END_STREAM: more DATA, or an empty END_STREAM."""
    c = Conn(port)
    for name, sid, rest in [("more", 1, b"x"), ("empty_end", 3, b"")]:
        st = c.st(sid)
        fields = get("/expect-" + name, "POST") + [("content-length", "10"),
                                                   ("expect", "100-continue")]
        c.send(c.request(sid, fields, False))
        c.pump(lambda: st["status"] or st["rst"] is not None, time.monotonic() + IO_S)
        interim = list(st["status"])
        c.sync(frame(DATA, 0, sid, b"0123456789"), b"holdping")
        c.send(frame(DATA, END_STREAM, sid, rest))
        c.wait(st)
        print("case=expect_%s interim=%s rst=%s status=%s data=%d" % (
            name, interim, st["rst"], st["status"][-1:], st["data"]))
    c.close()


def hold_early(port):
    """hold to an origin answering before the body: the answer ends without our END_STREAM.

    DATA that completes its content-length before END_STREAM, to an origin that answers
    before the body: the answer ends without the client's END_STREAM."""
    c = Conn(port)
    st = c.st(1)
    fields = get("/hold-early", "POST") + [("content-length", "10")]
    c.send(c.request(1, fields, False) + frame(DATA, 0, 1, b"0123456789"))
    c.wait(st)
    print("case=early rst=%s status=%s end=%s" % (st["rst"], st["status"][-1:], st["end"]))
    c.send(frame(DATA, END_STREAM, 1))
    c.close()


def unread(port):
    """POSTs answered before their bodies were taken: each stream's status, reset and end.

    gated: a body (content-length: 10) whole with its head (expect: 100-continue, to /early/: an
    origin that answers at once, the body still held at the gate); stall: 5 of its 10 bytes,
    then nothing (client_body_timeout: 408); past: no content-length, past max_body_size (1k:
    413 mid-body), its END_STREAM sent after the answer."""
    c = Conn(port)
    length = [("content-length", "10")]
    cases = [("gated", 1, "/early/x", length + [("expect", "100-continue")],
              frame(DATA, END_STREAM, 1, b"0123456789")),
             ("stall", 3, "/stall", length, frame(DATA, 0, 3, b"01234")),
             ("past", 5, "/past", [], frame(DATA, 0, 5, b"p" * 2000))]
    for name, sid, path, extra, data in cases:
        st = c.st(sid)
        c.send(c.request(sid, get(path, "POST") + extra, False) + data)
        c.wait(st)
        if name == "stall":  # the 408's END_STREAM, then the reset of the rest
            c.pump(lambda: st["rst"] is not None, time.monotonic() + IO_S)
        if name == "past":  # the rest, read and dropped; then Portico read all of it
            c.sync(frame(DATA, END_STREAM, sid, b"r" * 10), b"pastping")
        print("case=%s status=%s end=%s rst=%s" % (name, st["status"][-1:], st["end"],
                                                   st["rst"]))
    c.close()


def good_client(port, stop, out):
    """Requests one after the other on its own connection; records the slowest."""
    c = Conn(port)
    sid, worst, count = 1, 0.0, 0
    while not stop.is_set() and count < 2000:
        t = time.monotonic()
        st = c.st(sid)
        c.send(c.request(sid, get("/status/200")))
        if not c.pump(lambda: st["end"] or st["rst"] is not None, t + IO_S):
            worst = max(worst, IO_S)
            break
        worst = max(worst, time.monotonic() - t)
        count += 1
        sid += 2
    out["worst_ms"], out["count"] = worst * 1000, count
    c.close()


def bomb_block(enc, sid, fields, big, flags=0):
    """A header block of 9 frames (nghttp2 allows 8 CONTINUATION) on encoder enc: fields, then
    x-big (big) indexed, then ~147,000 references to it (0xbe: dynamic entry 62, the newest):
    588 MB of decoded fields for a 4,000-byte big."""
    block = enc.encode(fields) + enc.encode([("x-big", big)])
    first = block + b"\xbe" * (16384 - len(block))
    frames = [frame(HEADERS, flags, sid, first)]
    for i in range(8):
        frames.append(frame(CONTINUATION, END_HEADERS if i == 7 else 0, sid, b"\xbe" * 16384))
    return b"".join(frames)


def hpack_bomb(sid):
    """One request, an HPACK bomb on an encoder of its own (x-big inserted last)."""
    return bomb_block(hpack.Encoder(), sid, get("/"), "a" * 4000)


def split_block(sid, block, end_stream=True):
    """A header block as HEADERS and CONTINUATION frames of 16 KiB at most."""
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    return b"".join(frame(HEADERS if k == 0 else CONTINUATION,
                          (END_HEADERS if k == len(parts) - 1 else 0) |
                          (END_STREAM if k == 0 and end_stream else 0), sid, part)
                    for k, part in enumerate(parts))


def big_heads(port):
    """Request heads over max_header_size (a bomb, literals): each refused, the connection kept.

    Request heads over max_header_size, each on its own stream of one connection, with its
    own HPACK encoder (a bomb leaves its entries in Portico's table): an HPACK bomb; four
    literal 20,000-byte fields (over 4 x 16 KiB, no bomb); one of them (under 4 x); then a valid
    request. What each stream got: its statuses, its RST_STREAM code, whether it ended."""
    c = Conn(port)
    head = lambda sid, fields: split_block(sid, hpack.Encoder().encode(fields))
    big = [("x-big-%d" % i, "a" * 20000) for i in range(4)]
    cases = [("bomb", 1, hpack_bomb(1)), ("literal_4x", 3, head(3, get("/literal") + big)),
             ("literal_1x", 5, head(5, get("/literal1") + big[:1])),
             ("valid", 7, head(7, get("/status/200")))]
    for name, sid, data in cases:
        st = c.st(sid)
        c.send(data)
        c.wait(st)
        print("case=%s status=%s rst=%s end=%s" % (name, st["status"], st["rst"], st["end"]))
    print("goaway=%s" % (c.goaway,))
    c.close()


def limited(port, max_list):
    """A connection whose SETTINGS_MAX_HEADER_LIST_SIZE is max_list (None: not sent); field
    sections past it are still read."""
    c = Conn(port, () if max_list is None else ((MAX_HEADER_LIST_SIZE, max_list),))
    c.dec.max_header_list_size = 1 << 20  # a head at nghttp2's bound is over hpack's 64 KiB
    return c


def resp_trailers(port, groups, limits=None):
    """GETs one after the other, a connection a group: each response's frames and trailer fields.

    GROUPS: ;-separated groups of comma-separated paths (HEAD:PATH for a HEAD), each group on a
    connection of its own whose SETTINGS_MAX_HEADER_LIST_SIZE is the group's of the
    comma-separated LIMITS (none: not sent; limited). Its trailer fields: the HEADERS after the
    final head's."""
    groups = groups.split(";")
    limits = [int(m) for m in limits.split(",")] if limits else [None] * len(groups)
    for paths, max_list in zip(groups, limits):
        c = limited(port, max_list)
        sid = 1
        for path in paths.split(","):
            method, _, path = path.rpartition(":")
            st = c.ask(sid, get(path, method or "GET"))
            final = next((i for i, b in enumerate(st["blocks"])
                          if any(n == ":status" and not v.startswith("1") for n, v in b)), None)
            trailers = [] if final is None else [f for b in st["blocks"][final + 1:] for f in b]
            print("path=%s seq=%s trailers=[%s] data=%d rst=%s" % (
                path, ",".join(st["seq"]), ",".join("%s:%s" % f for f in trailers), st["data"],
                st["rst"]))
            sid += 2
        print("goaway=%s" % (c.goaway,))
        c.close()


def heads(port, paths, max_list=None):
    """GETs of each of PATHS at once: each response's statuses, frames and error details.

    GETs of each of the comma-separated PATHS, all at once on one connection (limited: heads
    past MAX_LIST are still read): each response's statuses (1xx included), its frames in
    order, its Portico-Error and Proxy-Status details (what a 502 of Portico's says), and its
    Retry-After when it has one."""
    print_heads(limited(port, max_list), paths)


def heads_from(port, source, paths):
    """GETs of each of PATHS at once over h2c from SOURCE: what heads prints.

    As heads, on an h2c listener (prior knowledge), from the address SOURCE of 127.0.0.0/8 (a
    client of another address, for rules by client: allow and deny)."""
    print_heads(Conn(port, source=source, plain=True), paths)


def print_heads(c, paths):
    """heads' GETs of the comma-separated PATHS on the connection c, and what each got."""
    paths = paths.split(",")
    sts = [c.st(1 + 2 * i) for i in range(len(paths))]
    c.send(b"".join(c.request(1 + 2 * i, get(p)) for i, p in enumerate(paths)))
    c.pump(lambda: all(st["end"] or st["rst"] is not None for st in sts),
           time.monotonic() + IO_S)
    for path, st in zip(paths, sts):
        fields = dict(f for b in st["blocks"] for f in b if not f[0].startswith(":"))
        ps = fields.get("proxy-status", "")
        details = ps.split('details="', 1)[1].split('"', 1)[0] if 'details="' in ps else None
        retry = " retry_after=%s" % fields["retry-after"] if "retry-after" in fields else ""
        print("path=%s status=%s seq=%s rst=%s error=%s details=%s data=%d%s" % (
            path, st["status"], ",".join(st["seq"]), st["rst"], fields.get("portico-error"),
            details, st["data"], retry))
    print("goaway=%s" % (c.goaway,))
    c.close()


def crossing_trailers(port):
    """Trailers crossing the close of a POST refused 431: a GET in flight answered, no GOAWAY.

    A GET of /delay/1500, then a POST refused 431 at once whose trailers come after its stream
    closed (nghttp2 drops the block)."""
    c = Conn(port)
    poll, upload = c.st(1), c.st(3)
    c.send(c.request(1, get("/delay/1500")))
    c.send(c.request(3, refused_upload("/status/200"), False))
    c.pump(lambda: upload["rst"] is not None, time.monotonic() + IO_S)  # 431, then NO_ERROR
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, c.block([("x-checksum", "abc")])))
    c.wait(poll, lambda: c.goaway is not None)
    print("upload=%s rst=%s poll=%s end=%s goaway=%s" % (upload["status"], upload["rst"],
                                                       poll["status"], poll["end"], c.goaway))
    c.close()


DISCARD_MAX = 1024 * 1024  # the rest of a body answered early that Portico reads and drops
DISCARD_BODY = {"small": None, "small_cl": "3000", "big": None, "big_cl": "2000000",
                "silent": None, "silent_cl": "2000000", "trickle": None, "past_limit": None,
                "exact_cl": str(1024 * 1024), "window_cl": "600000"}
TRICKLE_S = 0.3  # between the 1-byte DATA of kind trickle: well within client_body_timeout


def discard(port, kind):
    """A POST answered before its body's end, then the rest as KIND: read and dropped, or reset.

    A POST answered before its body's end (/down/: an origin refused, 502; small_cl: a
    content-length past max_body_size 1k, 413), 100 bytes of it sent with its head; once the
    answer is whole, the rest: small, small_cl (3,000 bytes in all: read and dropped, no
    RST_STREAM), big (frames of 16 KiB as the windows let them go: RST_STREAM after DISCARD_MAX),
    big_cl (the same with a content-length of 2 MB, once reset at the answer), silent (nothing:
    RST_STREAM after client_body_timeout, 1 s), silent_cl (the same with a content-length of 2 MB,
    once reset at the answer), trickle (1 byte every TRICKLE_S for 4 s at most: RST_STREAM
    client_body_timeout after the answer, the whole rest's deadline, as over HTTP/1.1),
    past_limit (as big, to /status/200 whose max_body_size, 512k, answers 413 once the body went
    past it: DISCARD_MAX dropped after that), exact_cl (a content-length of DISCARD_MAX answered
    413 at its head, all of it sent without END_STREAM, then an empty END_STREAM: read whole, no
    RST_STREAM), window_cl (the same with a content-length of 600,000: the stream's
    WINDOW_UPDATEs counted); then a GET on the same connection."""
    c = Conn(port)
    c.ack_answers = False  # what a client that reads the answer late gets
    st, length = c.st(1), DISCARD_BODY[kind]
    fields = get("/status/200" if kind in ("small_cl", "past_limit", "exact_cl", "window_cl")
                 else "/down/x", "POST")
    c.send(c.request(1, fields + ([("content-length", length)] if length else []), False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.wait(st, lambda: c.goaway is not None)
    answered, sent, start = st["end"] and st["rst"] is None, 100, time.monotonic()
    if kind in ("small", "small_cl"):
        c.send(frame(DATA, 0, 1, b"r" * 1000) + frame(DATA, 0, 1, b"r" * 1000) +
               frame(DATA, END_STREAM, 1, b"r" * 900))
        sent = 3000
    elif kind in ("big", "big_cl", "past_limit", "exact_cl", "window_cl"):  # as windows let go
        most = int(length) if length else 4 * DISCARD_MAX  # never past its content-length
        sent = c.send_windowed(1, b"b" * most, sent, most, time.monotonic() + 2 * IO_S, True)
        if kind in ("exact_cl", "window_cl") and sent == most:
            c.send(frame(DATA, END_STREAM, 1))
    elif kind == "trickle":  # each byte well within the timeout: only a whole deadline ends it
        deadline = start + 4.0
        while st["rst"] is None and time.monotonic() < deadline and c.goaway is None \
                and not c.closed:
            c.send(frame(DATA, 0, 1, b"t"))
            sent += 1
            c.pump(lambda: st["rst"] is not None, min(deadline, time.monotonic() + TRICKLE_S))
    # Portico read all of it
    c.sync(payload=struct.pack(">Q", 3), also=lambda: c.goaway is not None)
    if kind in ("silent", "silent_cl"):
        c.pump(lambda: st["rst"] is not None, time.monotonic() + IO_S)
    waited = time.monotonic() - start
    c.ask(3, get("/status/200"), lambda: c.goaway is not None)
    out = "discard kind=%s answered=%s status=%s rst=%s" % (kind, answered, st["status"],
                                                            st["rst"])
    # past DISCARD_MAX, within what the windows had let go then; the first 100 bytes counted
    # when the answer came before them (a 413 at the head), not when they came before it
    if kind in ("big", "big_cl"):
        out += " sent_past_max=%s" % (DISCARD_MAX < sent <= 2 * DISCARD_MAX + 16384 + 100)
    if kind == "window_cl":  # its stream's WINDOW_UPDATEs; its windows' sum, the first included
        granted = c.window(1, 0)
        out += " updates=%d granted=%d" % (c.window_update_frames.get(1, 0), granted)
    if kind == "past_limit":  # the 413 at 512 KiB, then DISCARD_MAX dropped
        out += " past_limit_and_max=%s" % (512 * 1024 + DISCARD_MAX < sent)
    if kind in ("silent", "silent_cl"):
        out += " after_timeout=%s" % (0.8 <= waited < IO_S)
    if kind == "trickle":  # client_body_timeout (1 s) after the answer, not at the trickle's end
        out += " reset_in_time=%s" % (st["rst"] is not None and 0.8 <= waited < 3.0)
    print("%s next=%s next_end=%s goaway=%s sent=%d" % (out, c.st(3)["status"], c.st(3)["end"],
                                                       c.goaway, sent))
    c.close()


def slow_body(port, grace_ms, rate):
    """Two uploads on one connection to /delay/0: stream 1 trickles, stream 3 keeps 1.5 x RATE.

    Two POSTs to /delay/0 (which reads the whole body) on one connection, under
    client_body_min_rate = RATE and client_body_rate_grace = GRACE_MS: stream 1 (content-length
    1000) sends a byte every 100 ms (10 B/s, below RATE): 408 and RST_STREAM once its deadline
    came, GRACE_MS plus a second per RATE bytes (cut_in_time: within 1 s of that, never before
    it); stream 3 (content-length 4 x RATE) sends to a schedule of 1.5 x RATE bytes a second, so
    that it is above the rate whatever the pauses of this process, and ends after stream 1 was
    cut: 200, its END_STREAM, no GOAWAY. Together they stay under RATE for each of the two
    bodies: a connection that kept it for both would have excused stream 1 (a client sends its
    streams in the order it likes)."""
    c = Conn(port)
    s1, s3 = c.st(1), c.st(3)
    len1, len3 = 1000, 4 * rate
    c.send(c.request(1, get("/delay/0", "POST") + [("content-length", str(len1))], False) +
           c.request(3, get("/delay/0", "POST") + [("content-length", str(len3))], False))
    start = time.monotonic()
    sent1 = sent3 = 0
    cut_at = None
    while time.monotonic() < start + 4 * IO_S and not (s3["end"] or s3["rst"] is not None) \
            and c.goaway is None and not c.closed:
        now = time.monotonic() - start
        if s1["rst"] is None and not s1["status"] and sent1 < len1:
            due = min(len1 - 1, int(now / 0.1) + 1) - sent1  # never all: it ends by the cut
            if due > 0:
                c.send(frame(DATA, 0, 1, b"t" * due))
                sent1 += due
        due = min(len3, int(1.5 * rate * now) + 1) - sent3
        if due > 0:
            c.send(frame(DATA, END_STREAM if sent3 + due == len3 else 0, 3, b"f" * due))
            sent3 += due
        c.pump(lambda: cut_at is None and bool(s1["status"]), time.monotonic() + 0.02)
        if cut_at is None and s1["status"]:
            cut_at = time.monotonic() - start
    c.pump(lambda: s1["rst"] is not None, time.monotonic() + IO_S)
    # its deadline: the grace, then a second per RATE bytes of the 10 a second it sent
    due_s = grace_ms / 1000.0
    due_s = due_s + (due_s * 10) / (rate - 10)
    in_time = cut_at is not None and due_s - 0.05 <= cut_at <= due_s + 1.0
    print("slow_body s1=%s s1_end=%s s1_rst=%s cut_in_time=%s s3=%s s3_end=%s s3_rst=%s "
          "s3_sent=%d goaway=%s" % (s1["status"], s1["end"], s1["rst"], in_time, s3["status"],
                                    s3["end"], s3["rst"], sent3, c.goaway))
    if not in_time:
        print("cut_at=%s due=%.3f" % (cut_at, due_s))
    c.close()


def answered_slot(port):
    """A POST answered at its head, its body unsent: reset once the client read the answer.

    Under http2_max_concurrent_streams = 1, a POST of /early/ (a fault rule answers 200 at
    its head) with a content-length of 3,000, 100 bytes sent with its head, the rest never: its
    200 goes whole, and Portico's PING after it is acknowledged (as every client does); Portico
    then resets the stream (RST_STREAM NO_ERROR, RFC 9113 8.1), its slot free, and a GET on
    stream 3 is served. Prints what the POST got and the GET's answer."""
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get("/early/x", "POST") + [("content-length", "3000")], False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.wait(st, lambda: c.goaway is not None)
    answered = st["end"] and st["rst"] is None
    c.pump(lambda: st["rst"] is not None or c.goaway is not None, time.monotonic() + IO_S)
    nxt = c.ask(3, get("/status/200"), lambda: c.goaway is not None)
    print("answered_slot status=%s answered=%s rst=%s next=%s next_end=%s next_rst=%s "
          "goaway=%s" % (st["status"], answered, st["rst"], nxt["status"], nxt["end"],
                         nxt["rst"], c.goaway))
    c.close()


def answered_many(port, n):
    """N POSTs answered at their heads at once, their bodies unsent: each reset once the client
    read its answer, by Portico's PINGs that none but the in-flight one opens.

    Under http2_max_concurrent_streams = N, N POSTs of /early/ (a fault rule answers 200 at
    its head), each with a content-length of 3,000 and 100 bytes sent with its head, in one
    write. The first answer's PING is in flight while the others go: theirs is due, sent at its
    acknowledgement. Held unacknowledged meanwhile; what reads like ours but is not resets
    nothing: our own PING with Portico's prefix, and an ACK of the number after the one in
    flight (sync reads them in). Then the PINGs are acknowledged as they come; every stream must
    be reset (NO_ERROR), and N GETs served in the slots. Prints what was seen."""
    c = Conn(port)
    c.ack_answers = False
    answer_pings = []
    handle = c.handle

    acks = []

    def note(ftype, flags, sid, payload):
        if ftype == PING and not flags & ACK and payload.startswith(b"ans"):
            answer_pings.append(payload)
        if ftype == PING and flags & ACK:
            acks.append(payload)
        handle(ftype, flags, sid, payload)
    c.handle = note
    ids = list(range(1, 2 * n, 2))
    sts = [c.st(sid) for sid in ids]
    c.send(b"".join(c.request(sid, get("/early/x", "POST") + [("content-length", "3000")],
                              False) + frame(DATA, 0, sid, b"h" * 100) for sid in ids))
    c.pump(lambda: all(st["end"] for st in sts) and answer_pings or c.goaway is not None,
           time.monotonic() + IO_S)
    held = list(answer_pings)
    following = struct.pack(">I", struct.unpack(">I", held[0][4:])[0] + 1 if held else 1)
    # Our PING's ACK went ahead of any reset they made (nghttp2 sends PINGs first): the ACK of
    # a PING sent after it tells they were all read and answered.
    for payload, before in ((b"sync-one", frame(PING, 0, 0, b"ans\0" + following) +
                             frame(PING, ACK, 0, b"ans\0" + following)), (b"sync-two", b"")):
        c.send(before + frame(PING, 0, 0, payload))
        c.pump(lambda: payload in acks, time.monotonic() + IO_S)
    early_rst = [st["rst"] for st in sts]
    c.ack_answers = True
    for payload in held:
        c.send(frame(PING, ACK, 0, payload))
    c.pump(lambda: all(st["rst"] is not None for st in sts) or c.goaway is not None,
           time.monotonic() + IO_S)
    nxt = [c.ask(sid, get("/status/200"), lambda: c.goaway is not None)
           for sid in range(2 * n + 1, 4 * n, 2)]
    print("answered_many n=%d status=%s held=%d early_rst=%s answer_pings=%d rst=%s next=%s "
          "goaway=%s" % (n, sorted(set(st["status"][0] if st["status"] else None for st in sts)),
                         len(held), sorted(set(early_rst), key=str), len(answer_pings),
                         sorted(set(st["rst"] for st in sts), key=str),
                         sorted(set(x["status"][0] if x["status"] and x["end"] else None
                                    for x in nxt), key=str), c.goaway))
    c.close()


def discard_short(port, n):
    """N POSTs answered 502 before their bodies' end, each ended short: then a GET answered.

    n POSTs one after the other on one connection, each to /down/ (an origin refused: 502)
    with a content-length of 3,000, 100 bytes of it sent with its head; once its answer is whole,
    its body ended short (10 bytes with END_STREAM), as nghttp and curl 7.88 end an upload
    answered early: nghttp2 resets each (PROTOCOL_ERROR, RFC 9113 8.1.1); then a GET. Portico's
    PINGs after the answers are not acknowledged: each body ends short before any reset."""
    c = Conn(port)
    c.ack_answers = False
    sid, answered = 1, 0
    for _ in range(n):
        c.send(c.request(sid, get("/down/x", "POST") + [("content-length", "3000")], False) +
               frame(DATA, 0, sid, b"h" * 100))
        c.wait(c.st(sid), lambda: c.goaway is not None)
        if c.goaway is not None or not c.st(sid)["end"]:
            break
        answered += 1
        c.send(frame(DATA, END_STREAM, sid, b"s" * 10))
        sid += 2
    c.ask(sid, get("/status/200"), lambda: c.goaway is not None)
    rsts = sorted(set(str(c.st(s)["rst"]) for s in range(1, sid, 2)))
    print("discard_short n=%d answered=%d rst=%s next=%s goaway=%s" % (
        n, answered, ",".join(rsts), c.st(sid)["status"], c.goaway))
    c.close()


def fed_gone(port, kind):
    """A stream fed DATA losing its exchange in that read (KIND): a GET after it answered.

    A stream that took DATA whose exchange is gone before the read is parsed to its end, each
    in one write with a GET on a new stream after it: reset, the client cancels it (HEADERS,
    DATA, RST_STREAM CANCEL); refused, a body of unknown length past max_body_size ends in the
    DATA frame that took it there (END_STREAM), so that its exchange, on an origin connection
    kept from a GET before (taken at its HEADERS), ends (413) at that END_STREAM. Each DATA had
    put its stream on the read's list of streams to tell (tell_fed)."""
    c = Conn(port)
    sid = 1
    if kind == "refused":  # an origin connection for the pool
        c.ask(1, get("/fed-first"), lambda: c.closed)
        sid = 3
    out = c.request(sid, get("/fed-" + kind, "POST"), False)
    if kind == "reset":
        out += frame(DATA, 0, sid, b"d" * 100) + cancel_frame(sid)
    else:
        out += frame(DATA, END_STREAM, sid, b"d" * 2000)
    c.send(out + c.request(sid + 2, get("/fed-next")))
    c.wait(c.st(sid + 2), lambda: c.closed)
    c.wait(c.st(sid), lambda: c.closed)
    print("fed_gone kind=%s first=%s next=%s next_end=%s goaway=%s closed=%s" % (
        kind, c.st(sid)["status"], c.st(sid + 2)["status"], c.st(sid + 2)["end"], c.goaway,
        c.closed))
    c.close()


def short_unsent(port):
    """A POST answered 413 that waits on a window of 0, its body then ended short: reset.

    A POST with a content-length of 3,000 answered 413 at its head (max_body_size 1k) whose
    answer cannot end: the client's SETTINGS give streams a window of 0, so the 413's DATA and its
    END_STREAM wait. The body then ends short (10 bytes with END_STREAM): nghttp2 resets the
    stream (PROTOCOL_ERROR) while its answer was still going."""
    c = Conn(port, pairs=((4, 0),))
    st = c.st(1)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", "3000")], False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.pump(lambda: st["status"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    c.send(frame(DATA, END_STREAM, 1, b"s" * 10))
    c.pump(lambda: st["rst"] is not None or c.goaway is not None, time.monotonic() + IO_S)
    print("short_unsent status=%s end=%s rst=%s goaway=%s" % (st["status"], st["end"], st["rst"],
                                                             c.goaway))
    c.close()

def closing_unsent(port):
    """A 413 still queued when the client's connection error ends the session: never sent.
    A POST with a content-length of 3,000 answered 413 at its head (max_body_size 1k) and, in
    the same write, a WINDOW_UPDATE of 0 on the connection (a connection error, RFC 9113 6.9):
    the 413's HEADERS are still queued when nghttp2's GOAWAY PROTOCOL_ERROR goes, and never go
    (h2fuzz.py's finding, where an origin's head came meanwhile)."""
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", "3000")], False) +
           frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)))
    c.pump(lambda: False, time.monotonic() + IO_S)
    print("closing_unsent status=%s rst=%s goaway=%s closed=%s" % (st["status"], st["rst"],
                                                                  c.goaway, c.closed))
    c.close()


def shut_unsent(port):
    """A POST answered 413 that waits on a window of 0, past DISCARD_MAX of its body: reset.

    A POST with a content-length of 2 MB answered 413 at its head (max_body_size 512k) whose
    answer cannot end (the client's SETTINGS give streams a window of 0): past DISCARD_MAX of its
    body, as the windows let it go, nothing more is read; the client then opens the stream's
    window, and the 413 goes whole, then RST_STREAM NO_ERROR."""
    c = Conn(port, pairs=((4, 0),))
    st = c.st(1)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", "2000000")], False))
    c.pump(lambda: st["status"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    # past DISCARD_MAX by a frame at most, within the content-length
    sent = c.send_windowed(1, b"b" * 2000000, 0, DISCARD_MAX + 1, time.monotonic() + 2 * IO_S)
    # Portico read all of it
    c.sync(payload=struct.pack(">Q", 6), also=lambda: c.goaway is not None)
    rst_then = st["rst"]
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 65535)))
    c.pump(lambda: st["rst"] is not None or c.goaway is not None, time.monotonic() + IO_S)
    print("shut_unsent status=%s past_max=%s rst_before_window=%s end=%s rst=%s goaway=%s" % (
        st["status"], sent > DISCARD_MAX, rst_then, st["end"], st["rst"], c.goaway))
    c.close()

def shut_ended(port):
    """A POST answered 413 that waits on a window of 0, its body past DISCARD_MAX, then ended.

    As shut_unsent, with a content-length a frame past DISCARD_MAX: all of it goes, then an
    empty END_STREAM, before the client opens the stream's window. The body came to its end: the
    413 goes whole, and no RST_STREAM follows it."""
    length = DISCARD_MAX + 16384
    c = Conn(port, pairs=((4, 0),))
    st = c.st(1)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", str(length))], False))
    c.pump(lambda: st["status"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    sent = c.send_windowed(1, b"e" * length, 0, length, time.monotonic() + 2 * IO_S)
    if sent == length:
        c.send(frame(DATA, END_STREAM, 1))
    # Portico read all of it, its END_STREAM too
    c.sync(payload=struct.pack(">Q", 8), also=lambda: c.goaway is not None)
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 65535)))
    c.pump(lambda: st["end"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    # a reset would have come behind the 413's end
    c.sync(payload=struct.pack(">Q", 9), also=lambda: c.goaway is not None)
    print("shut_ended status=%s sent=%d end=%s rst=%s goaway=%s" % (
        st["status"], sent, st["end"], st["rst"], c.goaway))
    c.close()

def discard_unacked(port):
    """A POST answered 413, sent before our SETTINGS were acknowledged: its window below 0.

    A POST with a content-length of 60,000 answered 413 at its head (max_body_size 1k), 40,000
    bytes of it sent before our SETTINGS are acknowledged (the default window, 65,535, then, not
    our 16 KiB; it holds the rest, so no WINDOW_UPDATE comes): once they are, its window is below
    0, and is opened again at once. The rest then, as the windows let it go, and an empty
    END_STREAM. Portico's PING after the 413 is not acknowledged: the rest is read."""
    c = Conn(port, ack_settings=False)
    c.ack_answers = False
    st, sent, length = c.st(1), 40000, 60000
    c.pump(lambda: c.settings_seen, time.monotonic() + IO_S)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", str(length))], False) +
           b"".join(frame(DATA, 0, 1, b"u" * n) for n in (16000, 16000, 8000)))
    c.wait(st, lambda: c.goaway is not None)
    c.send(frame(SETTINGS, ACK, 0))
    sent = c.send_windowed(1, b"u" * length, sent, length, time.monotonic() + 2 * IO_S)
    if sent == length:
        c.send(frame(DATA, END_STREAM, 1))
    # Portico read all of it
    c.sync(payload=struct.pack(">Q", 7), also=lambda: c.goaway is not None)
    print("discard_unacked status=%s end=%s rst=%s sent=%d goaway=%s" % (
        st["status"], st["end"], st["rst"], sent, c.goaway))
    c.close()

def late_data(port, n, size):
    """DATA crossing the answers and resets of N uploads: no flood; past their windows: a flood.

    A GET of /delay/3000, then N POSTs of 100 MB to /early/ (an origin that answers before the
    body: the rest is dropped, the stream reset once Portico's PING after the answer is
    acknowledged, or at client_body_timeout, 1 s, none of it sent)
    whose answers and resets come first; then the DATA in flight (SIZE bytes a frame, each
    stream's window) crosses them: the GET must be answered, no GOAWAY; then 1-byte DATA past
    the window on one of them: a flood (GOAWAY)."""
    c = Conn(port)
    poll = c.st(1)
    c.send(c.request(1, get("/delay/3000")))  # in flight past the resets (1 s)
    uploads = range(3, 3 + 2 * n, 2)
    for sid in uploads:
        c.send(c.request(sid, get("/early/%d" % sid, "POST") +
                         [("content-length", "100000000")], False))
    # each answered (END_STREAM), its rest dropped as it comes (none came), then reset NO_ERROR
    # at client_body_timeout (the test's 1 s): the client had not read them yet
    c.pump(lambda: all(c.st(sid)["rst"] is not None for sid in uploads) or c.goaway is not None,
           time.monotonic() + IO_S)
    answered = sum(1 for sid in uploads if c.st(sid)["end"] and c.st(sid)["rst"] == 0)
    frames = 0
    for sid in uploads:  # what each stream's window let go before the answer was read
        batch = [frame(DATA, 0, sid, b"u" * size) for _ in range(c.window(sid, 0) // size)]
        frames += len(batch)
        c.send(b"".join(batch))
    c.sync(payload=struct.pack(">Q", 1), also=lambda: c.goaway is not None)
    c.wait(poll, lambda: c.goaway is not None or c.closed)
    print("late answered=%d frames=%d poll=%s end=%s goaway=%s" % (
        answered, frames, poll["status"], poll["end"], c.goaway))
    # past the window: no DATA of a well-behaved client, charged as on any closed stream
    sent, deadline = 0, time.monotonic() + 10
    while sent < 20000 and c.goaway is None and not c.closed and not c.unwritable and \
            time.monotonic() < deadline:
        c.send(b"".join(frame(DATA, 0, uploads[0], b"d") for _ in range(100)))
        sent += 100
        c.pump(lambda: c.goaway is not None, time.monotonic() + 0.001)
    c.pump(lambda: c.goaway is not None, deadline)
    print("beyond goaway=%s sent=%d" % (c.goaway[1] if c.goaway else None, sent))
    c.close()


LATE_SENT = 8000  # late_window spent: DATA sent with each head, under half its window
LATE_SMALL = 64  # LATE_FRAME_MIN: what a small frame spends of a late window


def late_window(port, kind):
    """DATA within the windows of uploads refused 431 and reset: charged only past them.

    Uploads answered 431 at once (refused_upload) and reset NO_ERROR while
    their client could still send; then DATA within what each stream's window had left. spent:
    each head came with LATE_SENT bytes, which the window Portico keeps is less by; one frame
    takes the rest exactly, then 128 small frames past it on each of 12 are charged (GOAWAY).
    slots: 8 uploads (ids 1-15), then 8 whose ids fall in other slots of the 100 (9901-9915);
    each of the first 8 then sends its window in small frames, none charged (no GOAWAY)."""
    c = Conn(port)

    def upload(sid, data):
        c.send(c.request(sid, refused_upload("/status/200"), False) +
               (frame(DATA, 0, sid, data) if data else b""))
        c.pump(lambda: c.st(sid)["rst"] is not None or c.goaway is not None,
               time.monotonic() + IO_S)

    if kind == "spent":
        sids = list(range(1, 25, 2))
        for sid in sids:
            upload(sid, b"u" * LATE_SENT)
        for sid in sids:
            rest = c.window(sid, LATE_SENT)
            c.send(frame(DATA, 0, sid, b"r" * rest) +
                   b"".join(frame(DATA, 0, sid, b"d" * LATE_SMALL) for _ in range(128)))
    else:
        sids = list(range(1, 17, 2))
        for sid in sids + [9900 + sid for sid in sids]:
            upload(sid, b"")
        for sid in sids:
            c.send(b"".join(frame(DATA, 0, sid, b"d" * LATE_SMALL)
                            for _ in range(c.window(sid, 0) // LATE_SMALL)))
    c.sync(payload=struct.pack(">Q", 7), also=lambda: c.goaway is not None)
    resets = sorted(set(c.st(sid)["rst"] for sid in sids))
    print("late_window kind=%s window=%d resets=%s goaway=%s" % (
        kind, c.peer_settings.get(4, 65535), resets, c.goaway[1] if c.goaway else None))
    c.close()


def drain(c, pid):
    """A reload (SIGHUP to pid), then c read until the drain's GOAWAY naming the last stream
    (the first names 2^31-1: nghttp2's graceful shutdown)."""
    os.kill(pid, signal.SIGHUP)
    c.pump(lambda: any(g[0] != 0x7FFFFFFF for g in c.goaways), time.monotonic() + IO_S)


def drain_dropped(port, pid):
    """A GET sent after a reload's GOAWAY named the last stream: the first answered, no flood.

    A GET of /delay/1500, then a reload (SIGHUP to PID); a GET sent after the GOAWAY naming the
    last stream (nghttp2 drops its block)."""
    c = Conn(port)
    poll = c.st(1)
    c.send(c.request(1, get("/delay/1500")))
    c.pump(lambda: False, time.monotonic() + 0.2)
    drain(c, pid)
    c.send(c.request(3, get("/status/200")))
    c.wait(poll, lambda: c.closed)
    print("poll=%s end=%s goaways=%s" % (poll["status"], poll["end"], c.goaways))
    c.close()


def drain_dropped_trailed(port, pid):
    """Blocks after a reload's GOAWAY named the last stream: a new stream's head, its trailers,
    and a head on an even stream (none of the client's): one stream not processed.

    A GET of /delay/1500, then a reload (SIGHUP to PID); then empty header blocks (nghttp2
    ignores them past its GOAWAY; no HPACK state is changed), the even stream's last."""
    c = Conn(port)
    poll = c.st(1)
    c.send(c.request(1, get("/delay/1500")))
    c.pump(lambda: False, time.monotonic() + 0.2)
    drain(c, pid)
    c.send(frame(HEADERS, END_HEADERS, 3) + frame(HEADERS, END_HEADERS | END_STREAM, 3) +
           frame(HEADERS, END_HEADERS | END_STREAM, 4))
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    print("closed=%s" % c.closed)
    c.close()


def refused_then_drained(port, pid):
    """Both kinds of stream not processed on one connection: past the limit, then past a drain.

    Three GETs of /delay/1000 with the preface (Portico's limit of 2 still unacknowledged: the
    third refused), then a reload (SIGHUP to PID), and once the GOAWAY named the last stream an
    empty header block on a new stream (7)."""
    sids = (1, 3, 5)
    c = Conn(port, early=lambda conn: b"".join(conn.request(sid, get("/delay/1000"))
                                               for sid in sids))
    c.pump(lambda: c.st(5)["rst"] is not None, time.monotonic() + IO_S)
    drain(c, pid)
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 7))
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    print("refused=%s closed=%s" % (c.st(5)["rst"], c.closed))
    c.close()


def drain_raced(port, pid):
    """A drain's PING acknowledged in one write with a new GET: what the GET got.

    A GET of /delay/1500 taken, then a reload (SIGHUP to PID); the acknowledgement of the
    drain's PING goes in one write with a new stream's GET of /status/200?raced: Portico's
    GOAWAY naming the last stream is made on the ACK, and goes after the GET was read."""
    c = Conn(port)
    c.sync(c.request(1, get("/delay/1500")), b"taken???")
    c.after_ack = c.request(3, get("/status/200?raced"))
    drain(c, pid)
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    raced = c.st(3)
    print("raced_status=%s raced_rst=%s goaways=%s" % (raced["status"], raced["rst"], c.goaways))
    c.close()


def drain_flood(port, pid):
    """Empty header blocks on new streams after a reload's last GOAWAY: a flood, ended.

    A GET of /delay/1500 taken (a PING behind it acknowledged), then a reload (SIGHUP to
    PID); once the GOAWAY naming the last stream came, header blocks on new streams, which
    nghttp2 ignores but decodes, 100 a batch: a flood like those on closed streams."""
    c = Conn(port)
    c.sync(c.request(1, get("/delay/1500")), b"taken???")
    drain(c, pid)
    sid, deadline = 3, time.monotonic() + IO_S
    while sid < 6000 and not c.closed and len(c.goaways) < 3 and time.monotonic() < deadline:
        c.send(b"".join(frame(HEADERS, END_HEADERS | END_STREAM, s)
                        for s in range(sid, sid + 200, 2)))
        sid += 200
        c.pump(lambda: len(c.goaways) > 2, time.monotonic() + 0.001)
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    print("blocks=%d goaways=%s" % ((sid - 3) // 2, c.goaways))
    c.close()


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")


# Each kind: the fields before the big one, the big one's value, and whether the bomb is a
# request's trailers. The big field is valid, or invalid at its end (nghttp2 reads it all).
BOMBS = [("malformed_head", get("/") + [("x-a", " padded")], "a" * 4000, False),
         ("invalid_fields", get("/"), "a" * 3999 + "\x01", False),
         ("trailers", [], "a" * 4000, True)]
BOMB_BLOCKS = 10


def bombs(port, pid):
    """HPACK bombs the 431 abandon does not see (BOMBS): the worker's CPU for each kind.

    A head already malformed, a head of invalid fields, trailers: each kind 10 blocks on its own
    connection, then a GET answered once every block was decoded."""
    for kind, fields, big, trailers in BOMBS:
        c = Conn(port)
        before = cpu_ms(pid)
        for i in range(BOMB_BLOCKS):
            sid = 2 * i + 1
            if trailers:
                c.send(c.request(sid, get("/delay/5000", "POST"), end_stream=False))
            c.send(bomb_block(c.enc, sid, fields, big, END_STREAM))
        # a GET behind them: answered once every block was decoded (a reset may go out as
        # soon as a block's first frame is read)
        after = c.st(2 * BOMB_BLOCKS + 1)
        c.send(c.request(2 * BOMB_BLOCKS + 1, get("/status/200")))
        c.wait(after, within=60)
        codes = sorted(set(c.st(2 * i + 1)["rst"] for i in range(BOMB_BLOCKS)), key=str)
        print("kind=%s rst=%s goaway=%s after=%s cpu_ms=%d" % (
            kind, codes, c.goaway, after["status"], cpu_ms(pid) - before))
        c.close()


# closed_continuation, refused_continuation, malformed_continuation: header blocks of 7 frames
# each in a batch of 100
# (after refused_continuation's first, the 100 streams allowed; nghttp2 takes 8
# CONTINUATION frames, and counts one whose frame header a read split twice).
CLOSED_BLOCKS_PER_BATCH = 14


def block_of_7(sid, first=b""):
    """A header block of 7 frames (an HPACK bomb's shape), first the HEADERS's fragment."""
    return frame(HEADERS, END_STREAM, sid, first) + b"".join(
        frame(CONTINUATION, END_HEADERS if i == 5 else 0, sid) for i in range(6))


# A flood's unit: (c, sid, sent, batch) -> (its frames, the next stream id), sid the next
# stream's, sent the units so far, batch this batch's units (b"": none this time).
def const(data):
    """A unit of the same frames every time, on streams already there."""
    return lambda c, sid, sent, batch: (data, sid)


def capped(most, make):
    """A unit of make(c, sid) on a new stream, most of them a batch."""
    return lambda c, sid, sent, batch: (make(c, sid), sid + 2) if batch < most else (b"", sid)


def refused_continuation_unit(c, sid, sent, batch):
    """The 100 streams allowed (the first batch), then blocks of 7 frames refused past them."""
    if sid <= 199:
        return c.request(sid, get("/delay/5000")), sid + 2
    if batch < CLOSED_BLOCKS_PER_BATCH:
        return block_of_7(sid), sid + 2
    return b"", sid


# A flood's opener, before its batches (c) -> the first stream id of its units (None: 1).
def open_get(path):
    """A GET of path on stream 1, awaiting its answer while the flood goes."""
    def opener(c):
        c.send(c.request(1, get(path)))
    return opener


def open_upload(c):
    """An upload on stream 1 whose origin answers late (its DATA flooded)."""
    c.send(c.request(1, get("/delay/5000", "POST"), end_stream=False))


def open_head(c):
    """A header block on stream 1 never ended (no END_HEADERS)."""
    c.send(frame(HEADERS, 0, 1, c.block(get("/"))))


def open_closed(c):
    """Stream 1 answered and closed: frames on a closed stream."""
    c.send(c.request(1, get("/status/200")))
    c.pump(lambda: c.st(1)["end"], time.monotonic() + IO_S)


def open_reset(last=1, then=lambda c: None):
    """Uploads on streams 1 to last answered early (431 at once: refused_upload), then reset;
    then(c) after. reset_evicted: 100 more (http2_max_concurrent_streams), the last in stream
    1's slot."""
    def opener(c):
        for s_id in range(1, last + 1, 2):
            c.send(c.request(s_id, refused_upload("/status/200"), False))
        c.pump(lambda: all(c.st(s_id)["rst"] is not None for s_id in range(1, last + 1, 2)),
               time.monotonic() + IO_S)
        then(c)
    return opener


def open_ended_reset(c):
    """A request ended, its answer cut short (the test's fault on /bytes/20000): Portico resets
    it, its END_STREAM on a DATA frame, not on its HEADERS (a block's END_STREAM keeps no window
    already: ends_in_block)."""
    c.send(c.request(1, get("/bytes/20000", "POST") + [("content-length", "4")], False) +
           frame(DATA, END_STREAM, 1, b"d" * 4))
    c.pump(lambda: c.st(1)["rst"] is not None, time.monotonic() + IO_S)


def open_refused_upload(c):
    """The 100 allowed open, then an upload (stream 201) refused past them."""
    c.send(b"".join(c.request(s_id, get("/delay/5000")) for s_id in range(1, 201, 2)))
    c.send(c.request(201, get("/status/200", "POST"), False))
    c.pump(lambda: c.st(201)["rst"] is not None, time.monotonic() + IO_S)
    return 201


def open_malformed(c):
    """A head malformed (reset) whose HEADERS ended its stream."""
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                 c.block(get("/status/200", "POST") + [("X-Upper", "1")])))
    c.pump(lambda: c.st(1)["rst"] is not None, time.monotonic() + IO_S)


# Each flood kind: its unit (None: no frames, a timer's flood), its opener, what the client
# awaits after each batch (ping: the ACK of a PING behind it; resets: its streams' resets;
# None: 1 ms of reading), and whether it acknowledges Portico's SETTINGS.
Flood = collections.namedtuple("Flood", "unit open sync acked", defaults=(None, None, True))
DATA_4 = frame(DATA, 0, 1, b"d" * 4)  # 4 bytes each
FLOODS = {
    "rapid_reset": Flood(lambda c, sid, sent, batch: (
        c.request(sid, get("/delay/1000")) + cancel_frame(sid), sid + 2)),
    # no RST_STREAM of ours: a WINDOW_UPDATE that overflows the stream's window makes
    # Portico's nghttp2 reset it (FLOW_CONTROL_ERROR, CVE-2025-8671)
    "window_reset": Flood(lambda c, sid, sent, batch: (
        c.request(sid, get("/delay/1000")) +
        frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7FFFFFFF)), sid + 2), sync="resets"),
    # 1 byte each: 2^31 of them before an overflow, on an open stream awaiting its origin
    "window_update": Flood(const(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1))),
                           open_get("/delay/5000")),
    "conn_window_update": Flood(const(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))),
                                open_get("/delay/5000")),
    "ping": Flood(lambda c, sid, sent, batch: (frame(PING, 0, 0, struct.pack(">Q", sent)), sid)),
    "settings": Flood(const(settings([(3, 100)]))),
    "priority": Flood(const(frame(PRIORITY, 0, 1001, struct.pack(">IB", 0, 15)))),
    "empty_data": Flood(const(frame(DATA, 0, 1, b"")), open_upload),
    # PADDED, pad length 0: no data, length 1
    "padded_empty_data": Flood(const(frame(DATA, 0x8, 1, b"\0")), open_upload),
    # 1 byte each on the open upload; its batches made once (flood(): small_data)
    "small_data": Flood(const(frame(DATA, 0, 1, b"d")), open_upload),
    "closed_reset": Flood(const(cancel_frame(1)), open_closed),
    "closed_window_update": Flood(const(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1))),
                                  open_closed),
    # nghttp2 drops them before any callback
    "closed_empty_data": Flood(const(frame(DATA, 0, 1, b"")), open_closed),
    # 1 byte each: as cheap, and not empty
    "closed_short_data": Flood(const(frame(DATA, 0, 1, b"d")), open_closed),
    # trailers, as if they crossed our END_STREAM
    "closed_headers": Flood(lambda c, sid, sent, batch: (
        frame(HEADERS, END_HEADERS | END_STREAM, 1, c.block([("x-t", "1")])), sid), open_closed),
    # blocks of 7 frames (an HPACK bomb's shape)
    "closed_continuation": Flood(lambda c, sid, sent, batch: (
        block_of_7(1) if batch < CLOSED_BLOCKS_PER_BATCH else b"", sid), open_closed, "ping"),
    "reset_short_data": Flood(const(DATA_4), open_reset(), "ping"),
    "reset_evicted_data": Flood(const(DATA_4), open_reset(201), "ping"),
    # its client ends it late: nothing more is its due
    "reset_ended_data": Flood(const(DATA_4), open_reset(then=lambda c: c.send(
        frame(DATA, END_STREAM, 1, b"d" * 4))), "ping"),
    "reset_malformed_data": Flood(const(DATA_4), open_malformed, "ping"),
    # refused past the limit, SETTINGS unacknowledged
    "refused_data": Flood(const(frame(DATA, 0, 201, b"d" * 4)), open_refused_upload, "ping",
                          False),
    "reset_empty_data": Flood(const(frame(DATA, 0, 1, b"")), open_reset(), "ping"),  # charged
    # the window the stream had left (16 KiB) spent first
    "reset_large_data": Flood(const(DATA_4), open_reset(then=lambda c: c.send(
        b"".join(frame(DATA, 0, 1, b"d" * 1024) for _ in range(16)))), "ping"),
    # what an upload's DATA costs: never charged
    "reset_big_data": Flood(const(frame(DATA, 0, 1, b"d" * 1024)), open_reset(), "ping"),
    "ended_reset_data": Flood(const(DATA_4), open_ended_reset, "ping"),
    # our SETTINGS never acknowledged: the first 100 open, the others are refused
    "refused": Flood(lambda c, sid, sent, batch: (c.request(sid, get("/delay/5000")), sid + 2),
                     acked=False),
    "refused_continuation": Flood(refused_continuation_unit, sync="ping", acked=False),
    # a head malformed at its first field, in a block of 7 frames
    "malformed_continuation": Flood(capped(CLOSED_BLOCKS_PER_BATCH, lambda c, sid: block_of_7(
        sid, c.block(get("/") + [("X-Upper", "1")]))), sync="ping"),
    "continuation": Flood(const(frame(CONTINUATION, 0, 1, b"")), open_head),
    "stall_head": Flood(None, open_head),
    "stall_window": Flood(None, open_get("/bytes/1000000")),  # its window 0: flood()
    "settings_timeout": Flood(None, acked=False),
    "hpack_bomb": Flood(capped(4, lambda c, sid: hpack_bomb(sid))),  # ~600 KB per batch
    "idle": Flood(None),  # no flood: keepalive_timeout
}


def flood(port, kind):
    """A flood of KIND (FLOODS) beside a client timing its requests: GOAWAY, it not slowed.

    A flood of one KIND (FLOODS) on one connection, a second one measuring its own requests
    meanwhile: Portico must end the flood with GOAWAY, the other client not slowed."""
    stop, good = threading.Event(), {}
    helper = threading.Thread(target=good_client, args=(port, stop, good))
    helper.start()
    f = FLOODS[kind]
    pairs = [(4, 0)] if kind == "stall_window" else ()  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    c = Conn(port, pairs, ack_settings=f.acked)
    start = time.monotonic()
    sent, limit = 0, 20000
    # small_data's bucket refills 50,000 a second: frames by the 5,000, as fast as it reads
    per_batch = 5000 if kind == "small_data" else 100
    if kind == "small_data":
        limit, small_batch = 60000, f.unit(c, 1, 0, 0)[0] * per_batch
    # A bomb costs the worker ~30 times a frame's CPU: under ASan on a loaded machine the reset
    # bucket (200, 20 a second) took up to 10.1 s to fill. A slower fill is no less a fill.
    deadline = start + (20 if kind == "hpack_bomb" else 10)
    done = lambda: c.goaway is not None
    sid = (f.open(c) if f.open else None) or 1
    while f.unit and sent < limit and not done() and not c.closed and not c.unwritable and \
            time.monotonic() < deadline:
        batch, first = [], sid
        # small_data: the batch made once; faster than the bucket refills on any host (built
        # frame by frame, a loaded host's Python sent ~60,000 a second, near its refill)
        for _ in range(0 if kind == "small_data" else per_batch):
            data, sid = f.unit(c, sid, sent, len(batch))
            if data:
                batch.append(data)
            sent += 1
        if kind == "small_data":
            batch, sent = [small_batch], sent + per_batch
        c.send(b"".join(batch))
        if f.sync == "resets":
            # Streams Portico resets stay open until their RST_STREAM is written: a batch sent
            # before those of the last one arrived may open more than the 100 streams allowed,
            # which ends the connection with PROTOCOL_ERROR instead (README,
            # http2_max_concurrent_streams). MadeYouReset stays within the limit the same way.
            c.pump(lambda: done() or all(c.st(s)["rst"] is not None for s in range(first, sid, 2)),
                   deadline)
        elif f.sync == "ping":
            # Blocks counted up to the GOAWAY are blocks Portico read: a PING after each batch,
            # its ACK awaited (on a loaded host the old count was of what the socket took
            # before the GOAWAY was read: 140 of a bound of 120 once, 8 runs at once).
            acks = c.ping_acks
            c.send(frame(PING, 0, 0, struct.pack(">Q", sid)))
            c.pump(lambda: done() or c.ping_acks > acks, deadline)
        else:
            c.pump(done, time.monotonic() + 0.001)
    c.pump(done, deadline)
    elapsed = (time.monotonic() - start) * 1000
    stop.set()
    helper.join()
    code = c.goaway[1] if c.goaway else None
    print("kind=%s goaway=%s sent=%d elapsed_ms=%.0f closed=%s good_count=%s good_worst_ms=%.1f" %
          (kind, code, sent, elapsed, c.closed, good.get("count"), good.get("worst_ms", -1)))
    c.close()


def cancel(port, path):
    """A request reset (CANCEL) after 200 ms, before its answer: the connection goes on.

    A second request on the same connection is answered."""
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get(path)))
    c.pump(lambda: st["end"], time.monotonic() + 0.2)
    c.send(cancel_frame(1))
    # the connection goes on: a second request is answered
    st3 = c.ask(3, get("/status/200"))
    print("cancelled_status=%s next_status=%s" % (st["status"][-1:], st3["status"][-1:]))
    c.close()


def cancel_races(port, n, rounds):
    """ROUNDS of N GETs answered, then reset (CANCEL) as a browser's cancels: no flood.

    What a browser's cancels that cross their answers look like, at a high request rate:
    rounds of n GETs answered and closed (each one's last DATA answered with a WINDOW_UPDATE,
    as every DATA is: handle()), each then reset (CANCEL), the first of each round sent
    trailers too; then a GET on the same connection must be answered, with no GOAWAY."""
    c = Conn(port)
    answered, sid = 0, 1
    for _ in range(rounds):
        sids = list(range(sid, sid + 2 * n, 2))
        sid += 2 * n
        c.send(b"".join(c.request(s, get("/status/200")) for s in sids))
        c.pump(lambda: all(c.st(s)["end"] for s in sids) or c.goaway is not None,
               time.monotonic() + IO_S)
        answered += sum(1 for s in sids if c.st(s)["end"])
        out = [frame(HEADERS, END_HEADERS | END_STREAM, sids[0], c.block([("x-t", "1")]))]
        for s in sids:
            out.append(cancel_frame(s))
        c.send(b"".join(out))
    st = c.st(sid)
    c.send(c.request(sid, get("/status/200")))
    c.pump(lambda: st["end"] or c.goaway is not None, time.monotonic() + IO_S)
    print("answered=%d next_status=%s goaway=%s" % (answered, st["status"][-1:], c.goaway))
    c.close()


def reset_before_data(port, path):
    """A GET reset (CANCEL) once its head came, before its body could: none of it sent.

    Stream windows of 0: the head of PATH's answer comes, none of its body may. The client
    resets it (CANCEL), then asks for a 204 (no body: not held back by the window) on the same
    connection: once that is answered, Portico has read the reset."""
    c = Conn(port, pairs=[(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    st = c.st(1)
    c.send(c.request(1, get(path)))
    c.pump(lambda: st["status"] or st["rst"] is not None, time.monotonic() + IO_S)
    c.send(cancel_frame(1))
    st3 = c.ask(3, get("/status/204"))
    print("status=%s data=%d next=%s" % (st["status"][-1:], st["data"], st3["status"][-1:]))
    c.close()


def stall_body(port, path):
    """A POST that sends half its content-length, then nothing: its rest reset at the answer.

    client_body_timeout (500 ms) does not wait: the rest is not wanted once the answer went."""
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get(path, "POST") + [("content-length", "10")], end_stream=False))
    c.send(frame(DATA, 0, 1, b"12345"))
    c.wait(st)
    answered = time.monotonic()
    c.pump(lambda: st["rst"] is not None, answered + 1)  # the rest is not wanted
    # the reset follows the answer at once (client_body_timeout is 500 ms)
    at_answer = st["rst"] is not None and time.monotonic() - answered < 0.25
    print("status=%s rst=%s reset_at_answer=%s" % (st["status"][-1:], st["rst"], at_answer))
    c.close()


def window_back(port, path):
    """A POST sending 1 KiB of its content-length: the WINDOW_UPDATE its stream got back.

    A POST of 1 KiB of its content-length's 100,000, which the origin's socket takes: the
    stream's WINDOW_UPDATE increments that came within IO_S, before the client used up its
    window (none: 0)."""
    c = Conn(port)
    c.send(c.request(1, get(path, "POST") + [("content-length", "100000")], end_stream=False))
    c.send(frame(DATA, 0, 1, b"x" * 1024))
    c.pump(lambda: c.window_updates.get(1, 0) > 0, time.monotonic() + IO_S)
    print("window_update=%d" % c.window_updates.get(1, 0))
    c.close()


def tiny_uploads(port, path, n):
    """Two POSTs of N DATA frames of 1 byte each, in one write: small DATA of a body, no flood.

    Two POSTs of N bytes, each sent as N DATA frames of 1 byte in one write (within the
    windows): stream 1 without content-length (chunked to the origin), stream 3 with it. What
    each got."""
    c = Conn(port)
    out = b""
    for sid, fields in ((1, []), (3, [("content-length", str(n))])):
        out += c.request(sid, get(path, "POST") + fields, end_stream=False)
        out += b"".join(frame(DATA, END_STREAM if i == n - 1 else 0, sid, b"x")
                        for i in range(n))
    c.send(out)
    c.pump(lambda: c.st(1)["end"] and c.st(3)["end"] or c.goaway is not None,
           time.monotonic() + IO_S)
    print("chunked=%s length=%s goaway=%s" % (c.st(1)["status"], c.st(3)["status"], c.goaway))
    c.close()


def small_writes(port, path, n, size, rate=0):
    """A POST of N DATA frames of SIZE bytes, at most RATE a second: a client's pace, no flood.

    A POST of N DATA frames of SIZE bytes (content-length N * SIZE), sent 100 at a time as
    the windows allow, and with RATE no faster than RATE a second (never catching up in a
    burst), the way a client writing a body in small pieces sends it: its status, any GOAWAY,
    the frames sent."""
    c = Conn(port)
    c.send(c.request(1, get(path, "POST") + [("content-length", str(n * size))], False))
    sent, start = 0, time.monotonic()
    deadline = start + 60
    while sent < n and c.goaway is None and not c.closed and time.monotonic() < deadline:
        room = min(c.window(1, sent * size), c.window(0, sent * size))
        due = int((time.monotonic() - start) * rate) - sent if rate else n
        k = min(100, n - sent, room // size, due)
        if k <= 0:
            c.pump(lambda: False, time.monotonic() + 0.01)  # a WINDOW_UPDATE, or the pace
            continue
        c.send(b"".join(frame(DATA, END_STREAM if sent + i == n - 1 else 0, 1, b"s" * size)
                        for i in range(k)))
        sent += k
    c.pump(lambda: c.st(1)["end"] or c.goaway is not None, time.monotonic() + IO_S)
    print("status=%s goaway=%s sent=%d" % (c.st(1)["status"], c.goaway, sent))
    c.close()


def small_bodies(port, path, m):
    """Uploads spending most of the small-DATA allowance, then M small POSTs: none charged.

    Three uploads spend most of the small-DATA allowance (9,897 of 10,000 frames), then M
    POSTs of 10 bytes end their bodies with END_STREAM apart from their data (in an empty DATA
    frame, as Go's transport ends a body of unknown length, or in trailers): all in one write,
    so that no time passes for the bucket to refill. Each POST's small DATA is the last of its
    body: none is charged."""
    c = Conn(port)
    out, sids = b"", []
    for sid in (1, 3, 5):
        out += c.request(sid, get(path, "POST") + [("content-length", "3300")], end_stream=False)
        out += b"".join(frame(DATA, END_STREAM if i == 3299 else 0, sid, b"u")
                        for i in range(3300))
        sids.append(sid)
    for k in range(m):
        sid = 7 + 2 * k
        out += c.request(sid, get(path, "POST"), end_stream=False) + frame(DATA, 0, sid, b"b" * 10)
        if k % 2:
            out += c.request(sid, [("x-trailer", "t")], end_stream=True)
        else:
            out += frame(DATA, END_STREAM, sid, b"")
        sids.append(sid)
    c.send(out)
    c.pump(lambda: all(c.st(s)["end"] for s in sids) or c.goaway is not None,
           time.monotonic() + 4 * IO_S)
    print("answered=%d of %d goaway=%s" % (sum(1 for s in sids if c.st(s)["status"] == [200]),
                                          len(sids), c.goaway))
    c.close()


def real_ip(port, source):
    """From a trusted balancer, requests refused before an exchange: each names its client.

    Streams refused or reset before an exchange existed, from SOURCE (a trusted balancer's
    address), each naming its client in x-forwarded-for (127.9.9.N): what each got. Then a
    stream parked for its END_STREAM and a header block never ended, left by the client."""
    c = Conn(port, source=source)

    def xff(n):
        return [("x-forwarded-for", "127.9.9.%d, 127.0.0.2" % n)]

    def post0(path, n):  # content-length: 0 on a HEADERS without END_STREAM: parked
        return c.request(sid, get(path, "POST") + xff(n) + [("content-length", "0")], False)

    # (name, the frames sent once sid is known, whether an answer or a reset is awaited)
    cases = [
        ("host_differs", lambda: c.request(sid, get("/rip-host") + xff(1) +
                                           [("host", "evil.example")])),
        ("messaging", lambda: c.request(sid, get("/rip-messaging", "POST") + xff(2) +
                                        [("content-length", "10")])),
        ("line_too_long", lambda: c.request(sid, get("/rip-414" + "a" * 2000) + xff(3))),
        ("zero_data", lambda: post0("/rip-zero-data", 4) + frame(DATA, END_STREAM, sid, b"x")),
        ("zero_nothing", lambda: post0("/rip-zero-nothing", 5)),
        ("zero_reset", lambda: post0("/rip-zero-reset", 6) +
         cancel_frame(sid)),  # nothing comes back
        ("field_refused", lambda: c.request(sid, get("/rip-refused") + xff(7) +
                                            [("connection", "close")])),
        ("too_large", lambda: c.request(sid, get("/rip-431") + xff(8) +
                                        [("x-big", "b" * 5000)])),
        # past max_header_size and refused by nghttp2 at the block's end (content-length
        # with END_STREAM): read whole, but what was kept is a prefix
        ("too_large_messaging", lambda: c.request(sid, get("/rip-431-messaging", "POST") +
                                                  xff(14) + [("x-big", "b" * 5000),
                                                             ("content-length", "10")])),
        ("port_too_big", lambda: c.request(sid, get("/rip-port") +
                                           [("x-forwarded-for", "127.9.9.9:70000")] +
                                           [("host", "evil.example")])),
        # more fields than an HTTP/1.1 head may have (431): its client named first, not read
        ("many_fields", lambda: c.request(sid, get("/rip-many") + xff(13) + [("x", "1")] * 100)),
        ("valid", lambda: c.request(sid, get("/rip-ok") + xff(10))),
    ]
    sid = 1
    for name, frames in cases:
        st = c.st(sid)
        c.send(frames())
        if name != "zero_reset":
            c.wait(st)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
        sid += 2
    # a PING's ACK: Portico has read the parked head (it answers frames in order), and what it
    # sent is read, so that the close below is a FIN, not a reset
    c.sync(post0("/rip-parked", 11), b"rip-ping")
    c.send(frame(HEADERS, END_STREAM, sid + 2, c.block(get("/rip-unfinished") + xff(12))))
    c.s.shutdown(socket.SHUT_WR)  # the client leaves mid-block: Portico ends the connection
    c.pump(lambda: False, time.monotonic() + IO_S)
    print("case=left ping_acks=%d closed=%s" % (c.ping_acks, c.closed))
    c.close()


def out_of_memory(port, source):
    """Two GETs from a trusted balancer, the first's exchange finding no memory: each's answer.

    From SOURCE (a trusted balancer), two requests naming their client in x-forwarded-for:
    the test made the first one's exchange find no memory; the second is served."""
    c = Conn(port, source=source)
    for sid, path in ((1, "/oom-refused"), (3, "/oom-served")):
        st = c.st(sid)
        c.send(c.request(sid, get(path) + [("x-forwarded-for", "127.9.9.9, 127.0.0.2"),
                                           ("x-request-id", path[1:])]))
        c.wait(st)
        print("case=%s rst=%s status=%s data=%d id=%s" % (
            path[1:], st["rst"], st["status"][-1:], st["data"], last_field(st, "x-request-id")))
    c.close()


def request_ids(port):
    """Requests refused before an exchange existed, each with an x-request-id: the id answered.

    Streams refused or reset before an exchange existed, each with an x-request-id: the
    answer's x-request-id ("None" without an answer). Then a header block never ended."""
    c = Conn(port)

    def rid(v):
        return [("x-request-id", v)]

    # (name, the fields of the request, its END_STREAM)
    cases = [
        ("too_large", get("/rid-431") + rid("h2-431") + [("x-big", "b" * 5000)], True),
        ("too_large_invalid", get("/rid-431-invalid") + rid("h2/bad") + [("x-big", "b" * 5000)],
         True),
        ("line_too_long", get("/rid-414" + "a" * 2000) + rid("h2-414"), True),
        ("many_fields", get("/rid-many") + rid("h2-431-many") + [("x", "1")] * 100, True),
        ("host_differs", get("/rid-host") + rid("h2-400") + [("host", "evil.example")], True),
        ("zero_nothing", get("/rid-408", "POST") + rid("h2-408") + [("content-length", "0")],
         False),  # parked for its END_STREAM, which never comes: client_body_timeout
        ("valid", get("/rid-ok") + rid("h2-ok"), True),
    ]
    sid = 1
    for name, fields, end_stream in cases:
        st = c.st(sid)
        c.send(c.request(sid, fields, end_stream))
        c.wait(st)
        print("case=%s rst=%s status=%s id=%s" % (name, st["rst"], st["status"][-1:],
                                                  last_field(st, "x-request-id")))
        sid += 2
    c.send(frame(HEADERS, END_STREAM, sid, c.block(get("/rid-unfinished") + rid("h2-499"))))
    c.s.shutdown(socket.SHUT_WR)  # the client leaves mid-block: Portico ends the connection
    c.pump(lambda: False, time.monotonic() + IO_S)
    print("case=left closed=%s" % c.closed)
    c.close()


def unfinished_head(port, path, how):
    """A header block without its end: the client leaves (leave) or waits for the GOAWAY.

    wait: Portico's GOAWAY at client_header_timeout; parked: the same after a whole head waiting
    for its END_STREAM (content-length: 0) on stream 1."""
    c = Conn(port)
    sid = 1
    if how == "parked":  # first a whole head waiting for its END_STREAM (content-length: 0)
        c.send(c.request(1, get(path + "-parked", "POST") + [("content-length", "0")], False))
        sid = 3
    c.send(frame(HEADERS, END_STREAM, sid, c.block(get(path))))  # no END_HEADERS
    if how in ("wait", "parked"):
        c.pump(lambda: c.goaway is not None, time.monotonic() + IO_S)
    print("goaway=%s" % (c.goaway,))
    c.close()


def indexing(port, path):
    """Two GETs of PATH on one connection: which response fields came never indexed (HPACK).

    The second response could reuse what the first one indexed: what Portico marks never indexed
    it must not."""
    c = Conn(port)
    for sid in (1, 3):  # the second response could reuse what the first one indexed
        st = c.ask(sid, get(path))
        print("stream=%d status=%s never=%s" % (sid, st["status"][-1:],
                                                 ",".join(sorted(st.get("never", [])))))
    c.close()


def concurrency(port, path, n, total=None):
    """N+1 GETs (or TOTAL) at once, sent with the preface: those past N must be refused.

    They go while Portico's limit is still unacknowledged, as a browser sends its first
    flight."""
    sids = list(range(1, 2 * (total or n + 1), 2))
    c = Conn(port, early=lambda conn: b"".join(conn.request(sid, get(path)) for sid in sids))
    done = lambda: all(c.st(sid)["end"] or c.st(sid)["rst"] is not None for sid in sids)
    c.pump(done, time.monotonic() + IO_S)
    for sid in sids:
        st = c.st(sid)
        print("stream=%d status=%s rst=%s" % (sid, st["status"][-1:], st["rst"]))
    print("goaway=%s closed=%s" % (c.goaway, c.closed))
    c.close()


def refused_big_heads(port, path, n, size, limit):
    """N GETs with the preface, each a cookie of SIZE bytes: those past LIMIT refused.

    n GETs of path sent with the preface (Portico's limit still unacknowledged, as browsers
    send their first requests), each with a cookie of size bytes: heads of HEADERS and
    CONTINUATION frames of 16 KB. Those past the limit (limit) are refused; then a PING, whose ACK
    follows whatever GOAWAY their blocks brought."""
    sids = list(range(1, 2 * n, 2))

    def requests(conn):
        # One block for all (encoding 20 KB in Python took 1.5 s for 40): the cookie, larger
        # than the dynamic table, empties it (RFC 7541 4.4), so each block starts as the first.
        block = conn.block(get(path) + [("cookie", "c=" + "x" * size)])
        return b"".join(split_block(sid, block) for sid in sids)
    c = Conn(port, early=requests)
    refused = lambda: sum(1 for sid in sids if c.st(sid)["rst"] == 7)  # REFUSED_STREAM
    c.pump(lambda: c.goaway is not None or refused() >= n - limit, time.monotonic() + IO_S)
    c.sync(payload=struct.pack(">Q", 1), also=lambda: c.goaway is not None)
    print("refused=%d goaway=%s" % (refused(), c.goaway))
    c.close()


def windows(port, path):
    """Two GETs with stream windows of 0, only stream 3's opened: 3 must finish, 1 wait.

    SETTINGS_INITIAL_WINDOW_SIZE=0: no stream may send DATA until its window opens; stream 1's
    never does (a shut window holds only its own stream)."""
    c = Conn(port, [(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send DATA yet
    s1, s3 = c.st(1), c.st(3)
    c.send(c.request(1, get(path)) + c.request(3, get(path)))
    # only stream 3's window opens (handle() keeps it open); stream 1's stays shut
    c.send(frame(WINDOW_UPDATE, 0, 3, struct.pack(">I", 1 << 20)))
    c.wait(s3)
    print("stream=3 status=%s data=%d end=%s rst=%s" % (s3["status"][-1:], s3["data"], s3["end"],
                                                       s3["rst"]))
    print("stream=1 status=%s data=%d end=%s rst=%s" % (s1["status"][-1:], s1["data"], s1["end"],
                                                       s1["rst"]))
    c.close()


def trailed_posts(port, path, cases):
    """POSTs of 5 bytes to path on one connection, each ended by the trailer fields of its case
    (name, fields), each frame a write of its own: what each got."""
    c = Conn(port)
    for i, (name, fields) in enumerate(cases):
        sid = 2 * i + 1
        st = c.st(sid)
        c.send(c.request(sid, get(path, "POST") + [("te", "trailers")], end_stream=False))
        c.send(frame(DATA, 0, sid, b"hello"))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, c.block(fields)))
        c.wait(st)
        print("case=%s status=%s rst=%s" % (name, st["status"][-1:], st["rst"]))
    c.close()


# Each case of trailers: a valid trailer section, then one malformed field each (RFC 9113 8.2,
# 8.3): every one refused, the connection still serving the valid one after them.
TRAILERS = [("valid", [("x-checksum", "abc")]), ("pseudo", [(":path", "/other")]),
            ("connection", [("connection", "close")]), ("keep_alive", [("keep-alive", "1")]),
            ("proxy_connection", [("proxy-connection", "close")]),
            ("transfer_encoding", [("transfer-encoding", "chunked")]),
            ("upgrade", [("upgrade", "h2c")]), ("te", [("te", "gzip")]),
            ("uppercase", [("X-Checksum", "abc")]), ("bad_name", [("x checksum", "abc")]),
            ("bad_value", [("x-checksum", "a\r\nhost: evil")]),
            ("space_value", [("x-checksum", " abc")]),
            ("valid_after", [("x-checksum", "abc")])]


def trailers(port, path):
    """POSTs with valid trailers, then one per malformed trailer field (TRAILERS): refused.

    POSTs with valid trailers, then one per malformed trailer field, then valid ones again:
    trailers are checked as heads are."""
    trailed_posts(port, path, TRAILERS)


def trailer_limit(port, path, limit):
    """POSTs whose trailer section is LIMIT bytes, then LIMIT + 1: the second reset.

    POSTs whose trailer section (names and values) is limit bytes, then limit + 1: the
    first answered, the second reset."""
    trailed_posts(port, path, [(name, [("x-t", "v" * (size - 3))])
                               for name, size in (("at_limit", limit), ("over_limit", limit + 1))])


def paced(port, path):
    """A GET read at a steady pace, its windows (64 KiB) reopened every 100 ms: no stall.

    Windows never kept shut are a slow reader's, not a stalled one's: it must finish, no GOAWAY."""
    c = Conn(port)
    c.paced = True
    st = c.st(1)
    c.send(c.request(1, get(path)))
    deadline = time.monotonic() + 30
    while (not st["end"] and st["rst"] is None and c.goaway is None and not c.closed
           and time.monotonic() < deadline):
        c.pump(lambda: False, time.monotonic() + 0.1)
        if c.owed:
            inc = struct.pack(">I", c.owed)
            c.owed = 0
            c.send(frame(WINDOW_UPDATE, 0, 0, inc) + frame(WINDOW_UPDATE, 0, 1, inc))
    print("stream=1 status=%s data=%d end=%s goaway=%s" % (st["status"][-1:], st["data"],
                                                          st["end"], c.goaway))
    c.close()


def trickle(port, path, n):
    """N GETs, the connection's window reopened 1 byte every 100 ms: a window kept shut.

    Their stream windows are open wide; once the connection's (65,535) is used up, 1 byte every
    100 ms for at most 5 s: Portico's GOAWAY, when, and the bytes that came."""
    c = Conn(port, [(4, 0x7FFFFFFF)])  # SETTINGS_INITIAL_WINDOW_SIZE: no stream window shuts
    c.paced = True  # no WINDOW_UPDATE for what comes
    sids = list(range(1, 2 * n, 2))
    c.send(b"".join(c.request(sid, get(path)) for sid in sids))
    start = time.monotonic()
    while c.goaway is None and not c.closed and time.monotonic() < start + 5:
        c.pump(lambda: c.goaway is not None, time.monotonic() + 0.1)
        if c.owed >= 65535:  # the connection's window is used up: 1 byte at a time from now
            c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)))
    print("goaway=%s after_ms=%d data=%d" % (c.goaway, (time.monotonic() - start) * 1000,
                                              sum(c.st(sid)["data"] for sid in sids)))
    c.close()


def reload(c, pid, log):
    """SIGHUP to PID; whether its "is live" came in LOG within IO_S, c's frames read meanwhile."""
    with open(log, "rb") as f:
        before = f.read().count(b"is live")
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + IO_S
    live = False
    while not live and time.monotonic() < deadline:
        with open(log, "rb") as f:
            live = f.read().count(b"is live") > before
        if not live:  # the reload takes a few ms: a bounded wait for its line
            c.pump(lambda: False, time.monotonic() + 0.01)
    return live


def reload_first(port, path, pid, log):
    """A connection made before a reload, its first GET sent after it: it must be answered.

    The handshake and SETTINGS both ways go before the reload (SIGHUP to PID, "is live" awaited
    in LOG)."""
    c = Conn(port)
    live = reload(c, pid, log)
    st = c.ask(1, get(path))
    print("live=%s status=%s end=%s rst=%s goaway=%s" % (live, st["status"][-1:], st["end"],
                                                         st["rst"], c.goaway))
    c.close()


def discard_reload(port, pid, log):
    """A POST answered 502 before its body's end, a reload, then its reset: Portico read it.

    A POST to /down/ (502) with a content-length of 3,000, 100 bytes of it with its head; once
    its answer is whole (its rest being dropped), a reload, then the client resets the stream
    (CANCEL) and waits for the ACK of a PING, or the close that ends the drain once the stream
    is gone: Portico read the reset. Portico's PING after the 502 is not acknowledged: the rest
    is still being read at the reset."""
    c = Conn(port)
    c.ack_answers = False
    st = c.st(1)
    c.send(c.request(1, get("/down/x", "POST") + [("content-length", "3000")], False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.wait(st)
    live = reload(c, pid, log)
    read = c.sync(cancel_frame(1), also=lambda: c.closed)
    print("discard_reload status=%s end=%s rst=%s live=%s read=%s" % (
        st["status"], st["end"], st["rst"], live, read))
    c.close()


def reload_next(port, path, directory):
    """A GET answered, then a second on its connection while test_reload.c holds the worker.

    DIRECTORY/h2_ready once the first is answered; once DIRECTORY/h2_go exists, the second GET,
    then DIRECTORY/h2_sent: it must be answered, the last GOAWAY awaited."""
    c = Conn(port)
    first, nxt = c.ask(1, get(path)), c.st(3)
    with open(os.path.join(directory, "h2_ready"), "w") as f:
        f.write("ready\n")
    deadline = time.monotonic() + 2 * IO_S
    go = False
    while not go and time.monotonic() < deadline:
        go = os.path.exists(os.path.join(directory, "h2_go"))
        if not go:  # the test's steps take a few ms each: a bounded wait for its file
            c.pump(lambda: False, time.monotonic() + 0.01)
    c.send(c.request(3, get(path)))
    with open(os.path.join(directory, "h2_sent"), "w") as f:
        f.write("sent\n")
    c.wait(nxt)
    c.pump(lambda: c.closed, time.monotonic() + IO_S)  # the last GOAWAY may follow the answer
    print("go=%s first=%s next=%s end=%s rst=%s goaway=%s" % (
        go, first["status"][-1:], nxt["status"][-1:], nxt["end"], nxt["rst"], c.goaway))
    c.close()


def drain_crossing(port, path, pid):
    """A GET crossing the drain's GOAWAY after a reload (SIGHUP to PID): it must be answered.

    A GET answered first; the second is sent once the drain's first frame has arrived, before it
    is read, as one on its way when the drain began."""
    c = Conn(port)
    first, nxt = c.ask(1, get(path)), c.st(3)
    os.kill(pid, signal.SIGHUP)
    # the drain's first frame arrives; the next request leaves before it is read, as one does
    # that was on its way when the drain began
    arrived = c.s.pending() > 0 or bool(select.select([c.s], [], [], IO_S)[0])
    c.send(c.request(3, get(path)))
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    print("arrived=%s first=%s next=%s end=%s rst=%s goaways=%s closed=%s" % (
        arrived, first["status"][-1:], nxt["status"][-1:], nxt["end"], nxt["rst"],
        c.goaways, c.closed))
    c.close()


# Each case: the frames after the preface (a request on stream 1 first where it needs one) that
# make a connection error, and the GOAWAY code it must get.
CONN_ERRORS = [
    ("window_update_zero", lambda c: c.request(1, get("/slow"), end_stream=True) +
     frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0)), 1),           # PROTOCOL_ERROR
    ("rst_idle_stream", lambda c: cancel_frame(9), 1),
    ("frame_too_large", lambda c: frame(PING, 0, 0, b"x" * 16385), 6),  # FRAME_SIZE_ERROR
    ("hpack_garbage", lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff" * 8), 9),
    ("window_overflow", lambda c: frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)), 3),
]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def rss_settled(c, pid, deadline, follow=True, push=lambda: None):
    """The worker's (pid) RSS once it grew no more than 256 kB for a second (at deadline at the
    latest), c's frames read meanwhile, push() before each read: sampling a figure, not
    synchronizing on it. Not followed (follow false, where the RSS is not Portico's own: ASan,
    valgrind): read for a second, the first figure kept."""
    last, since = rss_kb(pid), time.monotonic()
    while time.monotonic() - since < 1 and time.monotonic() < deadline and not c.closed:
        push()
        c.pump(lambda: False, time.monotonic() + 0.05)
        now = rss_kb(pid)
        if follow and now > last + 256:
            last, since = now, time.monotonic()
    return last


def pour(c, sids, left, sent):
    """Sends DATA on each of sids in turn (16 KiB a frame at most, END_STREAM with a body's
    last) as far as its window and the connection's allow, as RFC 9113 6.9 lets a client:
    left[sid] bytes of its body still to go, sent[sid] gone (sent[0]: on the connection).
    Streams ended or reset are passed over."""
    out = []
    for sid in sids:
        if c.st(sid)["rst"] is not None or c.st(sid)["end"]:
            continue
        while left[sid] and c.window(sid, sent[sid]) > 0 and c.window(0, sent[0]) > 0:
            n = min(16384, left[sid], c.window(sid, sent[sid]), c.window(0, sent[0]))
            left[sid] -= n
            sent[sid] += n
            sent[0] += n
            out.append(frame(DATA, END_STREAM if not left[sid] else 0, sid, b"u" * n))
    if out:
        c.send(b"".join(out))


UPLOAD_STALLED, UPLOAD_SIZE, UPLOAD_READ = 99, 8000000, 4 << 20


def uploads(port, pid, follow_rss=True, stalled=UPLOAD_STALLED, read_size=UPLOAD_READ):
    """STALLED uploads that nobody reads and one that is read, as the windows allow: RSS bounded.

    STALLED POSTs of 8 MB to /stall/ (an origin that reads nothing) and one of READ_SIZE to
    /read/: the client sends whatever its windows allow (RFC 9113 6.9), on every stream in
    turn, the one whose origin reads first: what Portico holds is what its windows let in. The
    last must finish; then the worker's (PID) RSS once it stops growing (rss_settled)."""
    before = rss_kb(pid)
    c = Conn(port)  # Portico's SETTINGS are in: its streams begin with its initial window
    left = {}                   # stream -> body bytes not sent yet
    read = 1 + 2 * stalled
    sids = [read] + list(range(1, read, 2))
    for sid in sorted(sids):  # stream ids only go up (RFC 9113 5.1.1)
        path = "/read/%d" % sid if sid == read else "/stall/%d" % sid
        size = read_size if sid == read else UPLOAD_SIZE
        c.send(c.request(sid, get(path, "POST") + [("content-length", str(size))], False))
        left[sid] = size
    sent = dict.fromkeys([0] + sids, 0)
    push = lambda: pour(c, sids, left, sent)
    st = c.st(read)
    deadline = time.monotonic() + 20
    while not st["end"] and st["rst"] is None and not c.closed and time.monotonic() < deadline:
        push()
        c.pump(lambda: False, time.monotonic() + 0.01)
    print("stream=%d status=%s end=%s rst=%s sent=%d" % (read, st["status"][-1:], st["end"],
                                                        st["rst"], sent[read]))
    # RSS once it stops growing, the windows still used as they open. Under ASan it grows for
    # as long as the wait's 10 s bound (shadow memory, quarantine) and nobody asserts on it:
    # the windows are used for the wait's shortest, a second.
    last = rss_settled(c, pid, time.monotonic() + 10, follow_rss, push)
    stalled = sum(sent[sid] for sid in sids if sid != read)
    resets = sum(1 for sid in sids if c.st(sid)["rst"] is not None)
    print("stalled_sent=%d resets=%d goaway=%s" % (stalled, resets, c.goaway))
    print("rss_before=%d rss_after=%d" % (before, last))
    c.close()

def shut_downloads(port, pid, follow_rss, n, last=None):
    """N downloads of 8 MB with shut windows, then one open: it finishes, the RSS bounded.

    n GETs of 8 MB from the simulator, SETTINGS_INITIAL_WINDOW_SIZE 0, their windows never
    opened, each sent once the one before had its head (each stream begins with the others'
    reads under way); then a GET of 4 MiB whose window is kept open, which must finish; then a
    GET of `last` (if given), its window open too; then the worker's (PID) RSS once it stops
    growing (as uploads())."""
    before = rss_kb(pid)
    c = Conn(port, [(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send DATA yet
    heads = 0
    for i in range(n):
        sid = 1 + 2 * i
        c.send(c.request(sid, get("/bytes/8000000")))
        st = c.st(sid)
        if c.pump(lambda: st["status"] or st["rst"] is not None, time.monotonic() + IO_S):
            heads += st["status"][-1:] == [200]
    sid = 1 + 2 * n
    st = c.st(sid)
    t0 = time.monotonic()
    c.send(c.request(sid, get("/bytes/%d" % (4 << 20))))
    c.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1 << 20)))  # handle() keeps it open
    c.wait(st, within=10)
    print("heads=%d open=%d data=%d end=%s rst=%s open_ms=%d" % (
        heads, sid, st["data"], st["end"], st["rst"], (time.monotonic() - t0) * 1000))
    if last:
        sid += 2
        st = c.st(sid)
        c.send(c.request(sid, get(last)))
        c.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1 << 20)))
        c.wait(st)
        print("last status=%s data=%d end=%s rst=%s" % (st["status"][-1:], st["data"], st["end"],
                                                       st["rst"]))
    after = rss_settled(c, pid, time.monotonic() + 10) if follow_rss else rss_kb(pid)
    print("rss_before=%d rss_after=%d" % (before, after))
    c.close()


def unacked_uploads(port, pid, follow_rss, n):
    """N uploads with the preface, SETTINGS never acknowledged: what went, and the RSS.

    n POSTs to /stall/ (an origin that never takes them) sent with the preface, Portico's
    SETTINGS never acknowledged: each stream's window stays the default 65,535 (RFC 9113 6.5.3),
    and the client sends what the windows allow (each WINDOW_UPDATE of the connection's counted)
    until nothing more goes for half a second, 3 s at most; then what went and the worker's
    (PID) RSS."""
    before = rss_kb(pid)
    sids = list(range(1, 2 * n, 2))
    c = Conn(port, ack_settings=False, early=lambda c: b"".join(
        c.request(sid, get("/stall/%d" % sid, "POST") + [("content-length", "8000000")], False)
        for sid in sids))
    left = dict.fromkeys(sids, 65535)  # each stream's window: its WINDOW_UPDATEs not counted
    sent, since, deadline = 0, time.monotonic(), time.monotonic() + 3
    while time.monotonic() - since < 0.5 and time.monotonic() < deadline and not c.closed:
        out = []
        for sid in sids:
            while left[sid] and c.window(0, sent) > 0:
                k = min(16384, left[sid], c.window(0, sent))
                left[sid] -= k
                sent += k
                out.append(frame(DATA, 0, sid, b"p" * k))
        if out:
            c.send(b"".join(out))
            since = time.monotonic()
        c.pump(lambda: False, time.monotonic() + 0.05)
    after = rss_settled(c, pid, deadline + 5) if follow_rss else rss_kb(pid)
    print("unacked_sent=%d goaway=%s" % (sent, c.goaway))
    print("rss_before=%d rss_after=%d" % (before, after))
    c.close()


FINISHED_BODY, FINISHED_BIG = 100, 4 << 20


def finished_uploads(port, n):
    """N finished uploads, then a big one: a finished stream's window is nobody's.

    N small POSTs to /early/, whole (END_STREAM), each awaited until its origin, having read
    it, sends a 103: they can receive no more DATA, whatever window they had left is nobody's
    to use. Then one of 4 MiB to /read/ on the connection: the largest window it was given."""
    c = Conn(port)
    big = 2 * n + 1
    for sid in range(1, big, 2):
        fields = get("/early/%d" % sid, "POST") + [("content-length", str(FINISHED_BODY))]
        c.send(c.request(sid, fields, False) +
               frame(DATA, END_STREAM, sid, b"e" * FINISHED_BODY))
    early = range(1, big, 2)
    c.pump(lambda: all(103 in c.st(sid)["status"] for sid in early), time.monotonic() + IO_S)
    print("early_103=%d" % sum(1 for sid in early if 103 in c.st(sid)["status"]))
    largest = c.window(big, 0)
    c.send(c.request(big, get("/read/", "POST") + [("content-length", str(FINISHED_BIG))], False))
    # the connection's window as the client counts it: the early bodies' bytes not spent of it
    left, sent = {big: FINISHED_BIG}, {0: 0, big: 0}
    st = c.st(big)
    deadline = time.monotonic() + 20
    while not st["end"] and st["rst"] is None and not c.closed and time.monotonic() < deadline:
        pour(c, [big], left, sent)
        c.pump(lambda: False, time.monotonic() + 0.01)
        largest = max(largest, c.window(big, sent[big]))  # it only grows while reading
    print("stream=%d status=%s end=%s sent=%d" % (big, st["status"][-1:], st["end"], sent[big]))
    print("max_window=%d" % largest)
    c.close()


def conn_errors(port):
    """Connection errors (RFC 9113 5.4.1, CONN_ERRORS), a connection each: their GOAWAYs."""
    for name, frames, code in CONN_ERRORS:
        c = Conn(port)
        c.send(frames(c))
        c.pump(lambda: c.closed, time.monotonic() + IO_S)
        print("case=%s goaway=%s want=%d closed=%s" % (name, c.goaway, code, c.closed))
        c.close()


FIDELITY_BODY = 64 * 1024 * 1024  # a POST body offered until the answer, as test_faults_fidelity
FIDELITY_LATE, FIDELITY_LATE_S = b"hello", 0.15  # a small POST body, 150 ms after its head


def fidelity_one(port, tls_port, item):
    """fidelity's request PROTO:PATH and the GET after it: the lines printed for it."""
    proto, path = item.split(":", 1)
    c = Conn(port if proto == "h2c" else tls_port, plain=proto == "h2c")
    c.keep_body = True
    post, late, expect = path.startswith("+"), path[0] in "~!", path.startswith("!")
    method = "HEAD" if path.startswith("^") else "POST" if post or late else "GET"
    path = path.lstrip("+~!^")
    scheme = [(":scheme", "http")] if proto == "h2c" else [(":scheme", "https")]
    fields = lambda method, p: [(":method", method)] + scheme + [(":path", p),
                                                                 (":authority", "localhost")]
    head = fields(method, path) + [("accept", "application/json"),
                                                              ("te", "trailers")]
    if post or late:
        head += [("content-length", str(FIDELITY_BODY if post else len(FIDELITY_LATE)))]
    if expect:
        head += [("expect", "100-continue")]
    st = c.st(1)
    t0 = time.monotonic()
    c.send(c.request(1, head, not post and not late))
    answered = lambda: st["head_at"] is not None or st["end"] or st["rst"] is not None
    sent, deadline = 0, t0 + IO_S
    while post and not answered() and sent < FIDELITY_BODY and not c.closed \
            and not c.unwritable and time.monotonic() < deadline:
        room = min(c.window(1, sent), c.window(0, sent), FIDELITY_BODY - sent)
        if room > 0:  # all the windows allow at once, as fast as a client writes
            frames = [frame(DATA, 0, 1, b"b" * min(16384, room - k))
                      for k in range(0, room, 16384)]
            c.send(b"".join(frames))
            sent += room
        c.pump(lambda: answered() or min(c.window(1, sent), c.window(0, sent)) > 0, deadline)
    if late:  # a client that takes its time for the body (150 ms), or awaits its 100
        c.pump(lambda: answered() or (expect and 100 in st["status"]),
               t0 + (IO_S if expect else FIDELITY_LATE_S))
        if not answered():  # the time runs from the request's end, as Portico's timers do
            c.send(frame(DATA, END_STREAM, 1, FIDELITY_LATE))
            t0 = time.monotonic()
    c.wait(st)
    t_end = time.monotonic()
    if not c.closed:
        c.sync(also=lambda: c.closed)
    nxt = c.st(3)
    if not c.closed and c.goaway is None:
        c.ask(3, fields("GET", "/ok/x"))
    c.close()
    if st["rst"] is not None:
        end = "RST %d" % st["rst"]
    elif st["end"]:
        end = "END_STREAM"
    else:
        end = "CLOSED" if c.closed else "NONE"
    finals = [b for b in st["blocks"] if not any(k == ":status" and v.startswith("1")
                                                  for k, v in b)]
    lines = ["== %s" % item,
             "status %d" % next((s for s in st["status"] if s >= 200), 0),
             "interim %s" % ",".join(str(s) for s in st["status"] if s < 200),
             "head_ms %.1f" % (((st["head_at"] or t_end) - t0) * 1000),
             "end_ms %.1f" % ((t_end - t0) * 1000),
             "end %s" % end,
             "seq %s" % ",".join(st["seq"])]
    for i, block in enumerate(finals):
        lines += ["%s %s %s" % ("field" if i == 0 else "trailer", k, v)
                  for k, v in block if not k.startswith(":")]
    lines += ["body %s" % st["body"].hex(),
              "next %d" % next((s for s in nxt["status"] if s >= 200), 0),
              "goaway %s" % ("%d,%d" % c.goaway if c.goaway else "none"),
              "closed %d" % c.closed]
    return lines


def fidelity(port, tls_port, paths):
    """Each path on its own connection, then a GET of /ok/x on it: every frame of the answer.

    PATHS: groups separated by ';', run at once, each a comma-separated list of PROTO:PATH
    run in turn (h2c: prior knowledge on PORT; tls: ALPN h2 on TLS_PORT; a + before the path:
    a POST offering FIDELITY_BODY bytes as the windows allow until the answer; a ~: a POST of
    5 bytes sent 150 ms after its head, unless answered by then; a !: the same with Expect:
    100-continue, its body sent on the 100 unless answered first; a ^: a HEAD), each on a fresh
    connection: the request, its answer read to the stream's end (END_STREAM, a RST_STREAM,
    the close or 5 s), a PING for anything that follows it, then a GET of /ok/x on the same
    connection. Printed per path, in the order given, a line each: "== PROTO:PATH", "status",
    "interim", the milliseconds to the head and to the end (from the late body's send, for ~
    and !), how the stream ended ("end
    END_STREAM", "end RST CODE", "end CLOSED", "end NONE"), its frames, each "field NAME
    VALUE" of the final head and "trailer NAME VALUE" of a trailer block, "body HEX", "next
    STATUS" (0: none), "goaway LAST,CODE" or "goaway none", "closed 0|1"."""
    groups = [g.split(",") for g in paths.split(";")]
    out = [[] for _ in groups]

    def run(i):
        for item in groups[i]:
            out[i] += fidelity_one(port, tls_port, item)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(groups))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n".join(line for lines in out for line in lines))

def rss(arg):
    """rss: follow the worker's RSS; norss: it is not Portico's own (ASan, valgrind)."""
    if arg not in ("rss", "norss"):
        raise ValueError("rss or norss, not %r" % arg)
    return arg == "rss"


def choice(*names):
    """A converter that takes one of names (a kind the mode knows), and refuses others."""
    def kind(arg):
        if arg not in names:
            raise ValueError("one of %s, not %r" % (", ".join(names), arg))
        return arg
    return kind


# Each mode: the function that runs it, called with PORT and the converted arguments after
# MODE, one converter each (the function's defaults stand for arguments not given). The
# arguments' names are the function's parameters; what each mode does, its docstring.
MODES = {
    "malformed": (malformed,),
    "zero_length": (zero_length,),
    "hold": (hold, str),
    "hold_expect": (hold_expect,),
    "hold_early": (hold_early,),
    "unread": (unread,),
    "cancel": (cancel, str),
    "cancel_races": (cancel_races, int, int),
    "reset_before_data": (reset_before_data, str),
    "stall_body": (stall_body, str),
    "tiny_uploads": (tiny_uploads, str, int),
    "small_writes": (small_writes, str, int, int, int),
    "small_bodies": (small_bodies, str, int),
    "window_back": (window_back, str),
    "indexing": (indexing, str),
    "concurrency": (concurrency, str, int, int),
    "refused_big_heads": (refused_big_heads, str, int, int, int),
    "windows": (windows, str),
    "trailer_limit": (trailer_limit, str, int),
    "trailers": (trailers, str),
    "paced": (paced, str),
    "trickle": (trickle, str, int),
    "reload_first": (reload_first, str, int, str),
    "discard_reload": (discard_reload, int, str),
    "reload_next": (reload_next, str, str),
    "drain_crossing": (drain_crossing, str, int),
    "real_ip": (real_ip, str),
    "out_of_memory": (out_of_memory, str),
    "request_ids": (request_ids,),
    "unfinished_head": (unfinished_head, str, choice("leave", "wait", "parked")),
    "uploads": (uploads, int, rss, int, int),
    "shut_downloads": (shut_downloads, int, rss, int, str),
    "unacked_uploads": (unacked_uploads, int, rss, int),
    "finished_uploads": (finished_uploads, int),
    "conn_errors": (conn_errors,),
    "big_heads": (big_heads,),
    "heads": (heads, str, int),
    "heads_from": (heads_from, str, str),
    "resp_trailers": (resp_trailers, str, str),
    "late_data": (late_data, int, int),
    "discard": (discard, choice(*DISCARD_BODY)),
    "answered_slot": (answered_slot,),
    "answered_many": (answered_many, int),
    "discard_short": (discard_short, int),
    "slow_body": (slow_body, int, int),
    "discard_unacked": (discard_unacked,),
    "short_unsent": (short_unsent,),
    "closing_unsent": (closing_unsent,),
    "shut_unsent": (shut_unsent,),
    "shut_ended": (shut_ended,),
    "fed_gone": (fed_gone, choice("reset", "refused")),
    "late_window": (late_window, choice("spent", "slots")),
    "crossing_trailers": (crossing_trailers,),
    "drain_dropped": (drain_dropped, int),
    "drain_dropped_trailed": (drain_dropped_trailed, int),
    "refused_then_drained": (refused_then_drained, int),
    "drain_raced": (drain_raced, int),
    "drain_flood": (drain_flood, int),
    "bombs": (bombs, int),
    "flood": (flood, choice(*FLOODS)),
    "fidelity": (fidelity, int, str),
}


def usage():
    """Every mode, its arguments (the function's parameters) and the first line of its doc."""
    lines = ["usage: h2_frames.py PORT MODE [ARG...], MODE one of:"]
    for name, (run, *_) in MODES.items():
        params = list(inspect.signature(run).parameters.values())[1:]  # after port
        args = [p.name.upper() if p.default is p.empty else "[%s]" % p.name.upper()
                for p in params]
        lines.append("  %s: %s" % (" ".join([name] + args), run.__doc__.split("\n")[0]))
    return "\n".join(lines)


def main():
    """Runs the mode the command line names; anything else (a mode, or an argument, unknown or
    missing) exits 2 with the usage, running nothing."""
    if len(sys.argv) < 3 or sys.argv[2] not in MODES:
        print("h2_frames.py: no mode %s\n%s" % (" ".join(sys.argv[2:3]) or "given", usage()),
              file=sys.stderr)
        sys.exit(2)
    run, *convert = MODES[sys.argv[2]]
    args = sys.argv[3:]
    try:
        if len(args) > len(convert):
            raise ValueError("%d arguments, at most %d" % (len(args), len(convert)))
        values = [conv(arg) for conv, arg in zip(convert, args)]
        inspect.signature(run).bind(0, *values)  # none missing
    except (TypeError, ValueError) as e:
        print("h2_frames.py %s: %s\n%s" % (sys.argv[2], e, usage()), file=sys.stderr)
        sys.exit(2)
    run(int(sys.argv[1]), *values)


if __name__ == "__main__":
    main()
