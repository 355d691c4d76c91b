#!/usr/bin/python3
"""h2_frames.py — raw HTTP/2 frames against Portico, for test_http2.c.

Writes frames byte by byte (HPACK from python3-hpack, no HTTP/2 state machine that would refuse
to send a malformed request), reads what comes back, and prints one `key=value` line per
finding for the C test to assert on. Loopback only; every wait has a deadline and every loop a
count, so it always ends.

  h2_frames.py PORT malformed        each malformed request on its own stream, then a valid one
  h2_frames.py PORT zero_length      POSTs with content-length: 0 on a HEADERS without END_STREAM:
                                     then DATA (a smuggled request: malformed), an empty
                                     END_STREAM, trailers, a reset (CANCEL), or nothing (the
                                     client_body_timeout)
  h2_frames.py PORT hold DIR         POSTs (content-length: 10) whose DATA carries the 10 bytes
                                     without END_STREAM, then a PING: once its ACK came, more DATA
                                     (malformed; DIR/acked and DIR/go, FIFOs, let the C test look
                                     at the origin first), an empty END_STREAM, trailers, nothing;
                                     then 50,000 bytes in many DATA within the windows given
  h2_frames.py PORT hold_expect      the same after expect: 100-continue and the origin's 100:
                                     more DATA, or an empty END_STREAM
  h2_frames.py PORT hold_early       the same to an origin that answers before the body: its
                                     answer ends without the client's END_STREAM
  h2_frames.py PORT unread           POSTs answered before their bodies were taken: one whose
                                     body (content-length: 10) came whole with its head (expect:
                                     100-continue, to /early/: an origin that answers at once,
                                     the body still held at the gate), one that sends 5 of its 10
                                     bytes, then nothing (client_body_timeout: 408), one without
                                     content-length past max_body_size (1k: 413 mid-body), its
                                     END_STREAM sent after the answer
  h2_frames.py PORT cancel PATH      a request reset (CANCEL) after 200 ms, before its answer
  h2_frames.py PORT cancel_races N R  R rounds of N GETs answered (a WINDOW_UPDATE for
                                     each one's last DATA), then each reset (CANCEL), one a round
                                     sent trailers: a next GET must be answered
  h2_frames.py PORT reset_before_data PATH  a GET with stream windows of 0, reset (CANCEL) once
                                     its head came, before any of its body could
  h2_frames.py PORT stall_body PATH  a POST that sends half its content-length, then nothing
  h2_frames.py PORT tiny_uploads PATH N  two POSTs of N DATA frames of 1 byte each, one
                                     without content-length, one with it, all in one write
  h2_frames.py PORT small_writes PATH N SIZE [RATE]  a POST of N DATA frames of SIZE bytes,
                                     100 at a time as the windows allow (and at most RATE a
                                     second): its status, any GOAWAY
  h2_frames.py PORT small_bodies PATH M  in one write: three uploads of 3,300 DATA frames of 1
                                     byte (most of the small-DATA allowance), then M POSTs of 10
                                     bytes each, their END_STREAM after the data: in an empty
                                     DATA frame, or in trailers. What was answered, any GOAWAY
  h2_frames.py PORT window_back PATH  a POST that sends 1 KiB of its content-length: the
                                     WINDOW_UPDATE its stream got back
  h2_frames.py PORT indexing PATH    two GETs: which response fields HPACK may not index
  h2_frames.py PORT concurrency PATH N [M]  N+1 GETs (or M) at once, sent with the preface (a
                                     browser's first flight): those past N must be refused
  h2_frames.py PORT concurrency_acked PATH N  the same after our SETTINGS ACK
  h2_frames.py PORT refused_big_heads PATH N SIZE LIMIT  N GETs with the preface, each with a
                                     cookie of SIZE bytes (HEADERS + CONTINUATION): how many
                                     past LIMIT were refused, and any GOAWAY their blocks brought
  h2_frames.py PORT windows PATH     two GETs with SETTINGS_INITIAL_WINDOW_SIZE=0: stream 1's
                                     window is never opened, stream 3's is; 3 must finish
  h2_frames.py PORT trailer_limit PATH N  POSTs with a trailer section of N bytes (names and
                                     values), then N + 1: the first answered, the second reset
  h2_frames.py PORT trailers PATH    POSTs with valid trailers, then one per malformed trailer
                                     field (RFC 9113 8.2, 8.3), then a valid one again
  h2_frames.py PORT paced PATH       a GET read at a steady pace: its windows (64 KiB) reopen
                                     every 100 ms, never kept shut
  h2_frames.py PORT trickle PATH N   N GETs whose stream windows are open wide, the connection's
                                     window (65,535) used up and then reopened 1 byte every 100 ms
                                     for at most 5 s: a window kept shut all the same
  h2_frames.py PORT reload_first PATH PID LOG  a connection (handshake, SETTINGS both ways) made
                                     before a reload (SIGHUP to PID, "is live" awaited in LOG),
                                     its first GET sent after it: it must be answered
  h2_frames.py PORT discard_reload PID LOG  a POST answered 502 before its body's end, then a
                                     reload (as reload_first), then the client resets it (CANCEL)
  h2_frames.py PORT reload_next PATH DIR  a GET answered, then DIR/h2_ready; once DIR/h2_go
                                     exists, a second GET on the same connection, then DIR/h2_sent
                                     (test_reload.c holds the worker meanwhile)
  h2_frames.py PORT drain_crossing PATH PID  a GET answered, then a reload (SIGHUP to PID); a
                                     second GET sent once the drain's first frame has arrived,
                                     before it is read (it crosses the GOAWAY): it must be answered
  h2_frames.py PORT real_ip FROM    from FROM, requests refused before an exchange existed
                                     (malformed, 414, 431, parked for END_STREAM and then broken
                                     off, timed out, reset or left, a block never ended), each
                                     naming its client in x-forwarded-for: what each got
  h2_frames.py PORT out_of_memory FROM  from FROM, two GETs naming their client in
                                     x-forwarded-for (the test makes the first one's exchange find
                                     no memory): what each got, its x-request-id too
  h2_frames.py PORT request_ids      requests refused before an exchange existed (431, 414,
                                     malformed, timed out, a block never ended), each with an
                                     x-request-id, valid or not: the id each answer carried
  h2_frames.py PORT unfinished_head PATH leave|wait  a header block without its end: the
                                     client leaves at once, or waits for Portico's GOAWAY
  h2_frames.py PORT uploads PID [norss|rss] [N [SIZE]]  N (99) POSTs of 8 MB to /stall/ (an
                                     origin that reads nothing) and one of SIZE (4 MiB) to /read/, sent as fast as the
                                     windows allow: the last must finish; then the worker's (PID)
                                     RSS once it stops growing (norss, where RSS is not Portico's:
                                     the windows used for a second more, the RSS not followed)
  h2_frames.py PORT shut_downloads PID norss|rss N [PATH]  N GETs of 8 MB with shut windows,
                                     each sent once the one before had its head, then one of
                                     4 MiB whose window is open, which must finish, then one of
                                     PATH; then the worker's (PID) RSS, as for uploads
  h2_frames.py PORT unacked_uploads PID norss|rss N  N POSTs to /stall/ with the preface,
                                     Portico's SETTINGS never acknowledged: the bytes their
                                     default windows let go, and the worker's (PID) RSS
  h2_frames.py PORT finished_uploads N  N small POSTs to /early/ (whole, END_STREAM; each awaited
                                     until its origin, having read it, sends a 103), then one
                                     of 4 MiB to /read/: the largest stream window it was given
  h2_frames.py PORT conn_errors      connection errors (RFC 9113 5.4.1), each on its own connection:
                                     the GOAWAY code each gets
  h2_frames.py PORT big_heads         request heads over max_header_size: an HPACK bomb, one
                                     over 4 x of literals, one under, then a valid request
  h2_frames.py PORT heads PATHS [MAX]  GETs of each of the comma-separated PATHS, all at once on
                                     one connection (whose SETTINGS_MAX_HEADER_LIST_SIZE is MAX,
                                     if given: heads past it are still read): each response's
                                     statuses (1xx included), its frames in order, and its
                                     Portico-Error and Proxy-Status details, if any
  h2_frames.py PORT late_data N SIZE  a GET of /delay/3000, then N POSTs of 100 MB to /early/
                                     (an origin that answers before the body: the rest is
                                     dropped, the stream reset at client_body_timeout, 1 s,
                                     none of it sent) whose answers and resets come first;
                                     then the DATA in flight (SIZE bytes a frame, each stream's
                                     window) crosses them: the GET must be answered, no
                                     GOAWAY; then 1-byte DATA past the window on one of them: a
                                     flood (GOAWAY)
  h2_frames.py PORT discard KIND    a POST answered before its body's end (502 or 413), then
                                     the rest: small, small_cl (read and dropped: no
                                     RST_STREAM), big, big_cl (the same with a content-length
                                     of 2 MB: RST_STREAM past 1 MiB), silent, silent_cl
                                     (RST_STREAM at client_body_timeout), trickle (1 byte every
                                     0.3 s: RST_STREAM client_body_timeout after the answer),
                                     past_limit (413 past max_body_size 512k, then DISCARD_MAX),
                                     exact_cl (a rest of exactly DISCARD_MAX: no RST_STREAM),
                                     window_cl (its stream's WINDOW_UPDATEs); then a GET
  h2_frames.py PORT discard_short N  N POSTs answered 502 before their body's end, one after
                                     the other on one connection, each body then ended short
                                     (END_STREAM before its content-length); then a GET
  h2_frames.py PORT discard_unacked  a POST answered 413 at its head, 40,000 of its 60,000
                                     bytes sent before our SETTINGS are acknowledged: the rest
                                     once its window, below 0 then, is opened again
  h2_frames.py PORT short_unsent     a POST answered 413 at its head whose answer waits on the
                                     client's window (0), its body then ended short
  h2_frames.py PORT shut_unsent      a POST answered 413 at its head whose answer waits on the
                                     client's window (0), past DISCARD_MAX of its body; then the
                                     window opened
  h2_frames.py PORT fed_gone KIND    a stream that took DATA losing its exchange in that read:
                                     reset (the client's RST_STREAM), refused (413 at its
                                     END_STREAM); a GET after it in the same write
  h2_frames.py PORT late_window KIND  uploads refused 431 at once and reset, then DATA on them
                                     within what each window had left: spent (8,000 bytes came
                                     with each head; one frame takes the rest exactly, then 128
                                     of 64 bytes each: past it, charged: GOAWAY), slots (8
                                     uploads, then 8 more whose ids fall in other slots of the
                                     100, each first one's window in frames of 64 bytes: no
                                     GOAWAY)
  h2_frames.py PORT crossing_trailers  a GET of /delay/1500, then a POST refused 431 at once
                                     whose trailers come after its stream closed (nghttp2 drops
                                     the block): the GET must be answered, no GOAWAY
  h2_frames.py PORT drain_dropped PID  a GET of /delay/1500, then a reload (SIGHUP to PID); a
                                     GET sent after the GOAWAY naming the last stream (nghttp2
                                     drops its block): the first must be answered, no flood
  h2_frames.py PORT drain_raced PID  a GET of /delay/1500, then a reload (SIGHUP to PID); the
                                     drain's PING acknowledged in one write with a new GET: the
                                     GOAWAY naming the last stream, and what the new GET got
  h2_frames.py PORT drain_flood PID  a GET of /delay/1500, then a reload (SIGHUP to PID); once
                                     the GOAWAY naming the last stream came, empty header blocks
                                     on new streams (nghttp2 ignores them): its GOAWAYs
  h2_frames.py PORT bombs PID         HPACK bombs the 431 abandon does not see: a head already
                                     malformed, a head of invalid fields, trailers; each kind
                                     10 blocks on its own connection, the worker's (PID) CPU
  h2_frames.py PORT resp_trailers PATHS[;PATHS...] [MAX,...]  GETs of each of the
                                     comma-separated PATHS (HEAD:PATH for a HEAD) one after the
                                     other on one connection for each ;-separated group (whose
                                     SETTINGS_MAX_HEADER_LIST_SIZE is the group's MAX, if given,
                                     as for heads): the frames of each response in order, and
                                     the fields of its trailing HEADERS
  h2_frames.py PORT flood KIND       rapid_reset, window_reset, window_update (on an open stream),
                                     conn_window_update, ping, settings, priority, empty_data,
                                     padded_empty_data, small_data (1 byte each on an
                                     open upload), closed_reset, closed_window_update,
                                     closed_headers, closed_continuation, closed_empty_data,
                                     closed_short_data (on a stream answered and closed),
                                     reset_short_data (on an upload refused 431 and
                                     reset: past the window it had left), reset_evicted_data
                                     (the same once 100 more were, the last in its slot),
                                     reset_ended_data (the same after a DATA with
                                     END_STREAM), reset_malformed_data (on a head malformed
                                     whose HEADERS had END_STREAM), refused_data (on
                                     a stream refused past the limit, SETTINGS
                                     unacknowledged),
                                     reset_empty_data (empty frames there: charged),
                                     reset_large_data (16 of 1 KiB spend the window first),
                                     reset_big_data (frames of 1 KiB there: no flood),
                                     ended_reset_data (on a POST ended by its DATA, which
                                     Portico reset mid-answer: /bytes/20000, which the
                                     test's fault cuts short),
                                     refused, refused_continuation (streams past the limit,
                                     SETTINGS unacknowledged), malformed_continuation,
                                     continuation, stall_head, stall_window, settings_timeout,
                                     hpack_bomb, idle (no flood: keepalive_timeout);
                                     a second connection measures its own requests meanwhile
"""
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
    """One TLS connection (ALPN h2) speaking raw frames."""

    def __init__(self, port, pairs=(), ack_settings=True, early=None, source=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_S,
                                       source_address=(source, 0) if source else None)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
                                             "seq": [], "blocks": []})

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

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


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
    c = Conn(port)
    sid = 1
    for name, fields, body in MALFORMED:
        c.send(c.request(sid, fields, end_stream=body is None))
        if body is not None:
            c.send(frame(DATA, END_STREAM, sid, body))
        st = c.st(sid)
        c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
        sid += 2
    st = c.st(sid)
    c.send(c.request(sid, get("/status/200")))
    c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
    print("case=valid_after rst=%s status=%s goaway=%s" % (st["rst"], st["status"][-1:], c.goaway))
    c.close()


def zero_length(port):
    """content-length: 0 on a HEADERS without END_STREAM, then what ends the stream."""
    c = Conn(port)
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    # what follows each head, encoded after it (the HPACK encoder's table is in sending order)
    cases = [("data", 1, lambda: frame(DATA, END_STREAM, 1, smuggled)),
             ("empty_end", 3, lambda: frame(DATA, END_STREAM, 3)),
             ("trailers", 5, lambda: frame(HEADERS, END_STREAM | END_HEADERS, 5,
                                           c.block([("x-t", "1")]))),
             # the client leaves it: nothing comes back (the next case's answer follows it)
             ("reset", 7, lambda: frame(RST_STREAM, 0, 7, struct.pack(">I", 8))),  # CANCEL
             ("nothing", 9, lambda: b"")]
    for name, sid, rest in cases:
        st = c.st(sid)
        head = c.request(sid, get("/zero-" + name, "POST") + [("content-length", "0")], False)
        c.send(head + rest())
        if name != "reset":
            c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
    c.close()


HOLD_BIG = 50000  # past the stream's first window (16 KiB): WINDOW_UPDATEs let the rest in


def hold(port, fifo_dir):
    """DATA that completes its content-length before END_STREAM, then what ends the stream."""
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
        acks = c.ping_acks
        c.send(c.request(sid, fields, False) + frame(DATA, 0, sid, body) +
               frame(PING, 0, 0, b"holdping"))
        c.pump(lambda: c.ping_acks > acks, time.monotonic() + IO_S)
        # (frames are handled in order: the DATA was, before the ACK went)
        print("case=%s acked=%s early_status=%s" % (name, c.ping_acks > acks, st["status"]))
        if name == "more":
            with open(os.path.join(fifo_dir, "acked"), "w") as f:
                f.write("acked\n")
            ready, _, _ = select.select([go], [], [], IO_S)
            print("go=%s" % bool(ready))
        c.send(rest())
        c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
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
    sent, deadline = 0, time.monotonic() + IO_S
    while sent < HOLD_BIG and st["rst"] is None and time.monotonic() < deadline:
        room = min(c.peer_settings.get(4, 65535) + c.window_updates.get(1, 0),
                   65535 + c.window_updates.get(0, 0)) - sent
        n = min(room, 16384, HOLD_BIG - sent)
        if n > 0:
            c.send(frame(DATA, 0, 1, body[sent:sent + n]))
            sent += n
        else:
            updates = dict(c.window_updates)
            c.pump(lambda: c.window_updates != updates or st["rst"] is not None, deadline)
    acks = c.ping_acks
    c.send(frame(PING, 0, 0, b"holdping"))
    c.pump(lambda: c.ping_acks > acks, time.monotonic() + IO_S)
    early = list(st["status"])
    c.send(frame(DATA, END_STREAM, 1))
    c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
    print("case=big sent=%d early_status=%s rst=%s status=%s data=%d" % (
        sent, early, st["rst"], st["status"][-1:], st["data"]))
    c.close()


def hold_expect(port):
    """expect: 100-continue (relayed: the origin's 100 comes as a 1xx HEADERS), then DATA that
    completes the content-length before END_STREAM: more DATA, or an empty END_STREAM."""
    c = Conn(port)
    for name, sid, rest in [("more", 1, b"x"), ("empty_end", 3, b"")]:
        st = c.st(sid)
        fields = get("/expect-" + name, "POST") + [("content-length", "10"),
                                                   ("expect", "100-continue")]
        c.send(c.request(sid, fields, False))
        c.pump(lambda: st["status"] or st["rst"] is not None, time.monotonic() + IO_S)
        interim = list(st["status"])
        acks = c.ping_acks
        c.send(frame(DATA, 0, sid, b"0123456789") + frame(PING, 0, 0, b"holdping"))
        c.pump(lambda: c.ping_acks > acks, time.monotonic() + IO_S)
        c.send(frame(DATA, END_STREAM, sid, rest))
        c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        print("case=expect_%s interim=%s rst=%s status=%s data=%d" % (
            name, interim, st["rst"], st["status"][-1:], st["data"]))
    c.close()


def hold_early(port):
    """DATA that completes its content-length before END_STREAM, to an origin that answers
    before the body: the answer ends without the client's END_STREAM."""
    c = Conn(port)
    st = c.st(1)
    fields = get("/hold-early", "POST") + [("content-length", "10")]
    c.send(c.request(1, fields, False) + frame(DATA, 0, 1, b"0123456789"))
    c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
    print("case=early rst=%s status=%s end=%s" % (st["rst"], st["status"][-1:], st["end"]))
    c.send(frame(DATA, END_STREAM, 1))
    c.close()


def unread(port):
    """Answers before the body was taken: the body all came (END_STREAM with the head), or not
    (408: the rest never came; 413: its END_STREAM after the answer). Each stream's status, its
    reset, its end."""
    c = Conn(port)
    length = [("content-length", "10")]
    cases = [("gated", 1, "/early/x", length + [("expect", "100-continue")],
              frame(DATA, END_STREAM, 1, b"0123456789")),
             ("stall", 3, "/stall", length, frame(DATA, 0, 3, b"01234")),
             ("past", 5, "/past", [], frame(DATA, 0, 5, b"p" * 2000))]
    for name, sid, path, extra, data in cases:
        st = c.st(sid)
        c.send(c.request(sid, get(path, "POST") + extra, False) + data)
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
        if name == "stall":  # the 408's END_STREAM, then the reset of the rest
            c.pump(lambda: st["rst"] is not None, time.monotonic() + IO_S)
        if name == "past":  # the rest, read and dropped; then Portico read all of it
            acks = c.ping_acks
            c.send(frame(DATA, END_STREAM, sid, b"r" * 10) + frame(PING, 0, 0, b"pastping"))
            c.pump(lambda: c.ping_acks > acks, time.monotonic() + IO_S)
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


def hpack_bomb(sid):
    """One request whose header block indexes a 4,000-byte field, then refers to it ~147,000
    times in 9 frames (nghttp2 allows 8 CONTINUATION): 588 MB of decoded fields per block."""
    enc = hpack.Encoder()  # its own: literals with incremental indexing, x-big inserted last
    block = enc.encode(get("/")) + enc.encode([("x-big", "a" * 4000)])
    first = block + b"\xbe" * (16384 - len(block))  # 0xbe: dynamic entry 62, x-big
    frames = [frame(HEADERS, 0, sid, first)]
    for i in range(8):
        frames.append(frame(CONTINUATION, END_HEADERS if i == 7 else 0, sid, b"\xbe" * 16384))
    return b"".join(frames)


def big_heads(port):
    """Request heads over max_header_size, each on its own stream of one connection, with its
    own HPACK encoder (a bomb leaves its entries in Portico's table): an HPACK bomb; four
    literal 20,000-byte fields (over 4 x 16 KiB, no bomb); one of them (under 4 x); then a valid
    request. What each stream got: its statuses, its RST_STREAM code, whether it ended."""
    c = Conn(port)

    def head(sid, fields):
        block = hpack.Encoder().encode(fields)
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = [frame(HEADERS, END_STREAM | (END_HEADERS if len(chunks) == 1 else 0), sid,
                     chunks[0])]
        for i, chunk in enumerate(chunks[1:], 2):
            out.append(frame(CONTINUATION, END_HEADERS if i == len(chunks) else 0, sid, chunk))
        return b"".join(out)

    big = [("x-big-%d" % i, "a" * 20000) for i in range(4)]
    cases = [("bomb", 1, hpack_bomb(1)), ("literal_4x", 3, head(3, get("/literal") + big)),
             ("literal_1x", 5, head(5, get("/literal1") + big[:1])),
             ("valid", 7, head(7, get("/status/200")))]
    for name, sid, data in cases:
        st = c.st(sid)
        c.send(data)
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
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
    """Each response's frames and its trailer fields (the HEADERS after the final head's), a
    connection for each ;-separated group of paths, whose SETTINGS_MAX_HEADER_LIST_SIZE is the
    group's of the comma-separated limits (none: not sent)."""
    groups = groups.split(";")
    limits = [int(m) for m in limits.split(",")] if limits else [None] * len(groups)
    for paths, max_list in zip(groups, limits):
        c = limited(port, max_list)
        sid = 1
        for path in paths.split(","):
            method, _, path = path.rpartition(":")
            st = c.st(sid)
            c.send(c.request(sid, get(path, method or "GET")))
            c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
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
    """Every response's statuses, frames, and what a 502 of Portico's says failed."""
    c = limited(port, max_list)
    paths = paths.split(",")
    sts = [c.st(1 + 2 * i) for i in range(len(paths))]
    c.send(b"".join(c.request(1 + 2 * i, get(p)) for i, p in enumerate(paths)))
    c.pump(lambda: all(st["end"] or st["rst"] is not None for st in sts),
           time.monotonic() + IO_S)
    for path, st in zip(paths, sts):
        fields = dict(f for b in st["blocks"] for f in b if not f[0].startswith(":"))
        ps = fields.get("proxy-status", "")
        details = ps.split('details="', 1)[1].split('"', 1)[0] if 'details="' in ps else None
        print("path=%s status=%s seq=%s rst=%s error=%s details=%s data=%d" % (
            path, st["status"], ",".join(st["seq"]), st["rst"], fields.get("portico-error"),
            details, st["data"]))
    print("goaway=%s" % (c.goaway,))
    c.close()


def crossing_trailers(port):
    c = Conn(port)
    poll, upload = c.st(1), c.st(3)
    c.send(c.request(1, get("/delay/1500")))
    c.send(c.request(3, refused_upload("/status/200"), False))
    c.pump(lambda: upload["rst"] is not None, time.monotonic() + IO_S)  # 431, then NO_ERROR
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, c.block([("x-checksum", "abc")])))
    c.pump(lambda: poll["end"] or poll["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    print("upload=%s rst=%s poll=%s end=%s goaway=%s" % (upload["status"], upload["rst"],
                                                       poll["status"], poll["end"], c.goaway))
    c.close()


DISCARD_MAX = 1024 * 1024  # the rest of a body answered early that Portico reads and drops
DISCARD_BODY = {"small": None, "small_cl": "3000", "big": None, "big_cl": "2000000",
                "silent": None, "silent_cl": "2000000", "trickle": None, "past_limit": None,
                "exact_cl": str(1024 * 1024), "window_cl": "600000"}
TRICKLE_S = 0.3  # between the 1-byte DATA of kind trickle: well within client_body_timeout


def discard(port, kind):
    """A POST answered before its body's end (/down/: an origin refused, 502; small_cl: a
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
    st, length = c.st(1), DISCARD_BODY[kind]
    fields = get("/status/200" if kind in ("small_cl", "past_limit", "exact_cl", "window_cl")
                 else "/down/x", "POST")
    c.send(c.request(1, fields + ([("content-length", length)] if length else []), False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.pump(lambda: st["end"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    answered, sent, start = st["end"] and st["rst"] is None, 100, time.monotonic()
    if kind in ("small", "small_cl"):
        c.send(frame(DATA, 0, 1, b"r" * 1000) + frame(DATA, 0, 1, b"r" * 1000) +
               frame(DATA, END_STREAM, 1, b"r" * 900))
        sent = 3000
    elif kind in ("big", "big_cl", "past_limit", "exact_cl", "window_cl"):  # as windows let go
        window = lambda sid, used: c.peer_settings.get(4, 65535) * (sid != 0) + \
            65535 * (sid == 0) + c.window_updates.get(sid, 0) - used
        deadline = time.monotonic() + 2 * IO_S
        most = int(length) if length else 4 * DISCARD_MAX  # never past its content-length
        while st["rst"] is None and sent < most and time.monotonic() < deadline \
                and c.goaway is None and not c.closed:
            n = min(16384, window(1, sent), window(0, sent), most - sent)
            if n > 0:
                c.send(frame(DATA, 0, 1, b"b" * n))
                sent += n
                c.pump(lambda: st["rst"] is not None, time.monotonic() + 0.001)
            else:  # its WINDOW_UPDATE, or the reset
                c.pump(lambda: st["rst"] is not None or min(window(1, sent), window(0, sent)) > 0,
                       deadline)
        if kind in ("exact_cl", "window_cl") and sent == most:
            c.send(frame(DATA, END_STREAM, 1))
    elif kind == "trickle":  # each byte well within the timeout: only a whole deadline ends it
        deadline = start + 4.0
        while st["rst"] is None and time.monotonic() < deadline and c.goaway is None \
                and not c.closed:
            c.send(frame(DATA, 0, 1, b"t"))
            sent += 1
            c.pump(lambda: st["rst"] is not None, min(deadline, time.monotonic() + TRICKLE_S))
    acks = c.ping_acks  # Portico read all of it
    c.send(frame(PING, 0, 0, struct.pack(">Q", 3)))
    c.pump(lambda: c.ping_acks > acks or c.goaway is not None, time.monotonic() + IO_S)
    if kind in ("silent", "silent_cl"):
        c.pump(lambda: st["rst"] is not None, time.monotonic() + IO_S)
    waited = time.monotonic() - start
    c.send(c.request(3, get("/status/200")))
    c.pump(lambda: c.st(3)["end"] or c.st(3)["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    out = "discard kind=%s answered=%s status=%s rst=%s" % (kind, answered, st["status"],
                                                            st["rst"])
    # past DISCARD_MAX, within what the windows had let go then; the first 100 bytes counted
    # when the answer came before them (a 413 at the head), not when they came before it
    if kind in ("big", "big_cl"):
        out += " sent_past_max=%s" % (DISCARD_MAX < sent <= 2 * DISCARD_MAX + 16384 + 100)
    if kind == "window_cl":  # its stream's WINDOW_UPDATEs; its windows' sum, the first included
        granted = c.peer_settings.get(4, 65535) + c.window_updates.get(1, 0)
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


def discard_short(port, n):
    """n POSTs one after the other on one connection, each to /down/ (an origin refused: 502)
    with a content-length of 3,000, 100 bytes of it sent with its head; once its answer is whole,
    its body ended short (10 bytes with END_STREAM), as nghttp and curl 7.88 end an upload
    answered early: nghttp2 resets each (PROTOCOL_ERROR, RFC 9113 8.1.1); then a GET."""
    c = Conn(port)
    sid, answered = 1, 0
    for _ in range(n):
        c.send(c.request(sid, get("/down/x", "POST") + [("content-length", "3000")], False) +
               frame(DATA, 0, sid, b"h" * 100))
        c.pump(lambda: c.st(sid)["end"] or c.st(sid)["rst"] is not None or c.goaway is not None,
               time.monotonic() + IO_S)
        if c.goaway is not None or not c.st(sid)["end"]:
            break
        answered += 1
        c.send(frame(DATA, END_STREAM, sid, b"s" * 10))
        sid += 2
    c.send(c.request(sid, get("/status/200")))
    c.pump(lambda: c.st(sid)["end"] or c.st(sid)["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    rsts = sorted(set(str(c.st(s)["rst"]) for s in range(1, sid, 2)))
    print("discard_short n=%d answered=%d rst=%s next=%s goaway=%s" % (
        n, answered, ",".join(rsts), c.st(sid)["status"], c.goaway))
    c.close()


def fed_gone(port, kind):
    """A stream that took DATA whose exchange is gone before the read is parsed to its end, each
    in one write with a GET on a new stream after it: reset, the client cancels it (HEADERS,
    DATA, RST_STREAM CANCEL); refused, a body of unknown length past max_body_size ends in the
    DATA frame that took it there (END_STREAM), so that its exchange, on an origin connection
    kept from a GET before (taken at its HEADERS), ends (413) at that END_STREAM. Each DATA had
    put its stream on the read's list of streams to tell (tell_fed)."""
    c = Conn(port)
    sid = 1
    if kind == "refused":  # an origin connection for the pool
        c.send(c.request(1, get("/fed-first")))
        c.pump(lambda: c.st(1)["end"] or c.st(1)["rst"] is not None or c.closed,
               time.monotonic() + IO_S)
        sid = 3
    out = c.request(sid, get("/fed-" + kind, "POST"), False)
    if kind == "reset":
        out += frame(DATA, 0, sid, b"d" * 100) + frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    else:
        out += frame(DATA, END_STREAM, sid, b"d" * 2000)
    c.send(out + c.request(sid + 2, get("/fed-next")))
    c.pump(lambda: c.st(sid + 2)["end"] or c.st(sid + 2)["rst"] is not None or c.closed,
           time.monotonic() + IO_S)
    c.pump(lambda: c.st(sid)["end"] or c.st(sid)["rst"] is not None or c.closed,
           time.monotonic() + IO_S)
    print("fed_gone kind=%s first=%s next=%s next_end=%s goaway=%s closed=%s" % (
        kind, c.st(sid)["status"], c.st(sid + 2)["status"], c.st(sid + 2)["end"], c.goaway,
        c.closed))
    c.close()


def short_unsent(port):
    """A POST with a content-length of 3,000 answered 413 at its head (max_body_size 1k) whose
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
    """A POST with a content-length of 3,000 answered 413 at its head (max_body_size 1k) and, in
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
    """A POST with a content-length of 2 MB answered 413 at its head (max_body_size 512k) whose
    answer cannot end (the client's SETTINGS give streams a window of 0): past DISCARD_MAX of its
    body, as the windows let it go, nothing more is read; the client then opens the stream's
    window, and the 413 goes whole, then RST_STREAM NO_ERROR."""
    c = Conn(port, pairs=((4, 0),))
    st, sent = c.st(1), 0
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", "2000000")], False))
    c.pump(lambda: st["status"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    window = lambda sid, used: c.peer_settings.get(4, 65535) * (sid != 0) + \
        65535 * (sid == 0) + c.window_updates.get(sid, 0) - used
    deadline = time.monotonic() + 2 * IO_S
    while st["rst"] is None and sent <= DISCARD_MAX and time.monotonic() < deadline \
            and c.goaway is None and not c.closed:
        n = min(16384, window(1, sent), window(0, sent))
        if n > 0:
            c.send(frame(DATA, 0, 1, b"b" * n))
            sent += n
        else:
            c.pump(lambda: st["rst"] is not None or min(window(1, sent), window(0, sent)) > 0,
                   deadline)
    acks = c.ping_acks  # Portico read all of it
    c.send(frame(PING, 0, 0, struct.pack(">Q", 6)))
    c.pump(lambda: c.ping_acks > acks or c.goaway is not None, time.monotonic() + IO_S)
    rst_then = st["rst"]
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 65535)))
    c.pump(lambda: st["rst"] is not None or c.goaway is not None, time.monotonic() + IO_S)
    print("shut_unsent status=%s past_max=%s rst_before_window=%s end=%s rst=%s goaway=%s" % (
        st["status"], sent > DISCARD_MAX, rst_then, st["end"], st["rst"], c.goaway))
    c.close()

def discard_unacked(port):
    """A POST with a content-length of 60,000 answered 413 at its head (max_body_size 1k), 40,000
    bytes of it sent before our SETTINGS are acknowledged (the default window, 65,535, then, not
    our 16 KiB; it holds the rest, so no WINDOW_UPDATE comes): once they are, its window is below
    0, and is opened again at once. The rest then, as the windows let it go, and an empty
    END_STREAM."""
    c = Conn(port, ack_settings=False)
    st, sent, length = c.st(1), 40000, 60000
    c.pump(lambda: c.settings_seen, time.monotonic() + IO_S)
    c.send(c.request(1, get("/status/200", "POST") + [("content-length", str(length))], False) +
           b"".join(frame(DATA, 0, 1, b"u" * n) for n in (16000, 16000, 8000)))
    c.pump(lambda: st["end"] or st["rst"] is not None or c.goaway is not None,
           time.monotonic() + IO_S)
    c.send(frame(SETTINGS, ACK, 0))
    window = lambda sid, used: c.peer_settings.get(4, 65535) * (sid != 0) + \
        65535 * (sid == 0) + c.window_updates.get(sid, 0) - used
    deadline = time.monotonic() + 2 * IO_S
    while st["rst"] is None and sent < length and time.monotonic() < deadline \
            and c.goaway is None and not c.closed:
        n = min(16384, window(1, sent), window(0, sent), length - sent)
        if n > 0:
            c.send(frame(DATA, 0, 1, b"u" * n))
            sent += n
        else:
            c.pump(lambda: st["rst"] is not None or min(window(1, sent), window(0, sent)) > 0,
                   deadline)
    if sent == length:
        c.send(frame(DATA, END_STREAM, 1))
    acks = c.ping_acks  # Portico read all of it
    c.send(frame(PING, 0, 0, struct.pack(">Q", 7)))
    c.pump(lambda: c.ping_acks > acks or c.goaway is not None, time.monotonic() + IO_S)
    print("discard_unacked status=%s end=%s rst=%s sent=%d goaway=%s" % (
        st["status"], st["end"], st["rst"], sent, c.goaway))
    c.close()

def late_data(port, n, size):
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
        window = c.peer_settings.get(4, 65535) + c.window_updates.get(sid, 0)
        batch = [frame(DATA, 0, sid, b"u" * size) for _ in range(window // size)]
        frames += len(batch)
        c.send(b"".join(batch))
    acks = c.ping_acks
    c.send(frame(PING, 0, 0, struct.pack(">Q", 1)))
    c.pump(lambda: c.ping_acks > acks or c.goaway is not None, time.monotonic() + IO_S)
    c.pump(lambda: poll["end"] or poll["rst"] is not None or c.goaway is not None or c.closed,
           time.monotonic() + IO_S)
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
    """Uploads answered 431 at once (refused_upload) and reset NO_ERROR while
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

    def window(sid, sent):  # what the stream's window has left, as the client sees it
        return c.peer_settings.get(4, 65535) + c.window_updates.get(sid, 0) - sent

    if kind == "spent":
        sids = list(range(1, 25, 2))
        for sid in sids:
            upload(sid, b"u" * LATE_SENT)
        for sid in sids:
            rest = window(sid, LATE_SENT)
            c.send(frame(DATA, 0, sid, b"r" * rest) +
                   b"".join(frame(DATA, 0, sid, b"d" * LATE_SMALL) for _ in range(128)))
    else:
        sids = list(range(1, 17, 2))
        for sid in sids + [9900 + sid for sid in sids]:
            upload(sid, b"")
        for sid in sids:
            c.send(b"".join(frame(DATA, 0, sid, b"d" * LATE_SMALL)
                            for _ in range(window(sid, 0) // LATE_SMALL)))
    acks = c.ping_acks
    c.send(frame(PING, 0, 0, struct.pack(">Q", 7)))
    c.pump(lambda: c.ping_acks > acks or c.goaway is not None, time.monotonic() + IO_S)
    resets = sorted(set(c.st(sid)["rst"] for sid in sids))
    print("late_window kind=%s window=%d resets=%s goaway=%s" % (
        kind, c.peer_settings.get(4, 65535), resets, c.goaway[1] if c.goaway else None))
    c.close()


def drain_dropped(port, pid):
    c = Conn(port)
    poll = c.st(1)
    c.send(c.request(1, get("/delay/1500")))
    c.pump(lambda: False, time.monotonic() + 0.2)
    os.kill(pid, signal.SIGHUP)
    c.pump(lambda: any(g[0] != 0x7FFFFFFF for g in c.goaways), time.monotonic() + IO_S)
    c.send(c.request(3, get("/status/200")))
    c.pump(lambda: poll["end"] or poll["rst"] is not None or c.closed, time.monotonic() + IO_S)
    print("poll=%s end=%s goaways=%s" % (poll["status"], poll["end"], c.goaways))
    c.close()


def drain_raced(port, pid):
    """A GET of /delay/1500 taken, then a reload (SIGHUP to PID); the acknowledgement of the
    drain's PING goes in one write with a new stream's GET of /status/200?raced: Portico's
    GOAWAY naming the last stream is made on the ACK, and goes after the GET was read."""
    c = Conn(port)
    c.send(c.request(1, get("/delay/1500")) + frame(PING, 0, 0, b"taken???"))
    c.pump(lambda: c.ping_acks > 0, time.monotonic() + IO_S)
    c.after_ack = c.request(3, get("/status/200?raced"))
    os.kill(pid, signal.SIGHUP)
    c.pump(lambda: any(g[0] != 0x7FFFFFFF for g in c.goaways), time.monotonic() + IO_S)
    c.pump(lambda: c.closed, time.monotonic() + IO_S)
    raced = c.st(3)
    print("raced_status=%s raced_rst=%s goaways=%s" % (raced["status"], raced["rst"], c.goaways))
    c.close()


def drain_flood(port, pid):
    """A GET of /delay/1500 taken (a PING behind it acknowledged), then a reload (SIGHUP to
    PID); once the GOAWAY naming the last stream came, header blocks on new streams, which
    nghttp2 ignores but decodes, 100 a batch: a flood like those on closed streams."""
    c = Conn(port)
    c.send(c.request(1, get("/delay/1500")) + frame(PING, 0, 0, b"taken???"))
    c.pump(lambda: c.ping_acks > 0, time.monotonic() + IO_S)
    os.kill(pid, signal.SIGHUP)
    c.pump(lambda: any(g[0] != 0x7FFFFFFF for g in c.goaways), time.monotonic() + IO_S)
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


def bomb_block(c, sid, fields, big, flags):
    """A header block of 9 frames on the connection's own encoder: fields, big indexed, then
    ~147,000 references to it (dynamic entry 62, the newest)."""
    block = c.block(fields) + c.block([("x-big", big)])
    first = block + b"\xbe" * (16384 - len(block))
    frames = [frame(HEADERS, flags, sid, first)]
    for i in range(8):
        frames.append(frame(CONTINUATION, END_HEADERS if i == 7 else 0, sid, b"\xbe" * 16384))
    return b"".join(frames)


def bombs(port, pid):
    for kind, fields, big, trailers in BOMBS:
        c = Conn(port)
        before = cpu_ms(pid)
        for i in range(BOMB_BLOCKS):
            sid = 2 * i + 1
            if trailers:
                c.send(c.request(sid, get("/delay/5000", "POST"), end_stream=False))
            c.send(bomb_block(c, sid, fields, big, END_STREAM))
        # a GET behind them: answered once every block was decoded (a reset may go out as
        # soon as a block's first frame is read)
        after = c.st(2 * BOMB_BLOCKS + 1)
        c.send(c.request(2 * BOMB_BLOCKS + 1, get("/status/200")))
        c.pump(lambda: after["end"] or after["rst"] is not None, time.monotonic() + 60)
        codes = sorted(set(c.st(2 * i + 1)["rst"] for i in range(BOMB_BLOCKS)), key=str)
        print("kind=%s rst=%s goaway=%s after=%s cpu_ms=%d" % (kind, codes, c.goaway,
                                                               after["status"], cpu_ms(pid) - before))
        c.close()


# closed_continuation, refused_continuation, malformed_continuation: header blocks of 7 frames
# each in a batch of 100
# (after refused_continuation's first, the 100 streams allowed; nghttp2 takes 8
# CONTINUATION frames, and counts one whose frame header a read split twice).
CLOSED_BLOCKS_PER_BATCH = 14


def flood(port, kind):
    stop, good = threading.Event(), {}
    helper = threading.Thread(target=good_client, args=(port, stop, good))
    helper.start()
    pairs = [(4, 0)] if kind == "stall_window" else ()  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    # refused: our SETTINGS never acknowledged, streams past the 100 allowed are refused
    c = Conn(port, pairs, ack_settings=kind not in ("settings_timeout", "refused",
                                                    "refused_continuation", "refused_data"))
    start = time.monotonic()
    sent, limit, sid = 0, 20000, 1
    # small_data's bucket refills 50,000 a second: frames by the 5,000, as fast as it reads
    per_batch = 5000 if kind == "small_data" else 100
    if kind == "small_data":
        limit, small_batch = 60000, frame(DATA, 0, 1, b"d") * per_batch
    # A bomb costs the worker ~30 times a frame's CPU: under ASan on a loaded machine the reset
    # bucket (200, 20 a second) took up to 10.1 s to fill. A slower fill is no less a fill.
    deadline = start + (20 if kind == "hpack_bomb" else 10)
    done = lambda: c.goaway is not None
    if kind in ("window_update", "conn_window_update"):  # a stream open, awaiting its origin
        c.send(c.request(sid, get("/delay/5000")))
    if kind in ("empty_data", "padded_empty_data", "small_data"):
        c.send(c.request(sid, get("/delay/5000", "POST"), end_stream=False))
    if kind in ("stall_head", "continuation"):
        c.send(frame(HEADERS, 0, sid, c.block(get("/"))))
    if kind == "stall_window":
        c.send(c.request(sid, get("/bytes/1000000")))
    if kind.startswith("closed_"):  # frames on a stream answered and closed
        c.send(c.request(sid, get("/status/200")))
        c.pump(lambda: c.st(1)["end"], time.monotonic() + IO_S)
    if kind.startswith("reset_") and kind != "reset_malformed_data":
        # on a stream answered early (431 at once: refused_upload), then reset
        # reset_evicted: 100 more (http2_max_concurrent_streams), the last in stream 1's slot
        last = 201 if kind == "reset_evicted_data" else 1
        for s_id in range(1, last + 1, 2):
            c.send(c.request(s_id, refused_upload("/status/200"), False))
        c.pump(lambda: all(c.st(s_id)["rst"] is not None for s_id in range(1, last + 1, 2)),
               time.monotonic() + IO_S)
        if kind == "reset_ended_data":  # its client ends it late: nothing more is its due
            c.send(frame(DATA, END_STREAM, 1, b"d" * 4))
        if kind == "reset_large_data":  # the window the stream had left (16 KiB) spent first
            c.send(b"".join(frame(DATA, 0, 1, b"d" * 1024) for _ in range(16)))
    if kind == "ended_reset_data":  # a request ended, its answer cut short: Portico resets
        # its END_STREAM on a DATA frame, not on its HEADERS (a block's END_STREAM keeps no
        # window already: ends_in_block)
        c.send(c.request(sid, get("/bytes/20000", "POST") + [("content-length", "4")], False) +
               frame(DATA, END_STREAM, sid, b"d" * 4))
        c.pump(lambda: c.st(1)["rst"] is not None, time.monotonic() + IO_S)
    if kind == "refused_data":  # the 100 allowed open, then an upload refused past them
        c.send(b"".join(c.request(s_id, get("/delay/5000")) for s_id in range(1, 201, 2)))
        sid = 201
        c.send(c.request(sid, get("/status/200", "POST"), False))
        c.pump(lambda: c.st(sid)["rst"] is not None, time.monotonic() + IO_S)
    if kind == "reset_malformed_data":  # a head malformed (reset) whose HEADERS ended it
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                     c.block(get("/status/200", "POST") + [("X-Upper", "1")])))
        c.pump(lambda: c.st(1)["rst"] is not None, time.monotonic() + IO_S)
    while kind not in ("stall_head", "stall_window", "settings_timeout", "idle") and sent < limit and \
            not done() and not c.closed and not c.unwritable and time.monotonic() < deadline:
        batch, first = [], sid
        # small_data: the batch made once; faster than the bucket refills on any host (built
        # frame by frame, a loaded host's Python sent ~60,000 a second, near its refill)
        for _ in range(0 if kind == "small_data" else per_batch):
            if kind == "rapid_reset":
                batch.append(c.request(sid, get("/delay/1000")))
                batch.append(frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))  # CANCEL
                sid += 2
            elif kind == "refused":  # the first 100 open, the others are refused
                batch.append(c.request(sid, get("/delay/5000")))
                sid += 2
            elif kind == "refused_continuation":  # the same, refused blocks of 7 frames
                if sid <= 199:  # the 100 allowed, opened in the first batch
                    batch.append(c.request(sid, get("/delay/5000")))
                    sid += 2
                elif len(batch) < CLOSED_BLOCKS_PER_BATCH:
                    batch.append(frame(HEADERS, END_STREAM, sid) + b"".join(
                        frame(CONTINUATION, END_HEADERS if i == 5 else 0, sid) for i in range(6)))
                    sid += 2
            elif kind == "malformed_continuation":  # a head malformed at its first field,
                if len(batch) < CLOSED_BLOCKS_PER_BATCH:  # in a block of 7 frames
                    batch.append(frame(HEADERS, END_STREAM, sid,
                                       c.block(get("/") + [("X-Upper", "1")])) + b"".join(
                        frame(CONTINUATION, END_HEADERS if i == 5 else 0, sid) for i in range(6)))
                    sid += 2
            elif kind == "window_reset":
                # no RST_STREAM of ours: a WINDOW_UPDATE that overflows the stream's window
                # makes Portico's nghttp2 reset it (FLOW_CONTROL_ERROR, CVE-2025-8671)
                batch.append(c.request(sid, get("/delay/1000")))
                batch.append(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0x7FFFFFFF)))
                sid += 2
            elif kind == "window_update":  # 1 byte each: 2^31 of them before an overflow
                batch.append(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))
            elif kind == "conn_window_update":
                batch.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)))
            elif kind == "ping":
                batch.append(frame(PING, 0, 0, struct.pack(">Q", sent)))
            elif kind == "settings":
                batch.append(settings([(3, 100)]))
            elif kind == "priority":
                batch.append(frame(PRIORITY, 0, 1001, struct.pack(">IB", 0, 15)))
            elif kind == "empty_data":
                batch.append(frame(DATA, 0, 1, b""))
            elif kind == "padded_empty_data":  # PADDED, pad length 0: no data, length 1
                batch.append(frame(DATA, 0x8, 1, b"\0"))
            elif kind == "continuation":
                batch.append(frame(CONTINUATION, 0, 1, b""))
            elif kind == "closed_reset":
                batch.append(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))  # CANCEL
            elif kind == "closed_window_update":
                batch.append(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1)))
            elif kind == "closed_empty_data":  # nghttp2 drops them before any callback
                batch.append(frame(DATA, 0, 1, b""))
            elif kind == "closed_short_data":  # 1 byte each: as cheap, and not empty
                batch.append(frame(DATA, 0, 1, b"d"))
            elif kind in ("reset_short_data", "reset_evicted_data", "reset_ended_data",
                          "reset_malformed_data"):  # 4 bytes each
                batch.append(frame(DATA, 0, 1, b"d" * 4))
            elif kind == "refused_data":
                batch.append(frame(DATA, 0, 201, b"d" * 4))
            elif kind == "reset_large_data":  # 4 bytes each
                batch.append(frame(DATA, 0, 1, b"d" * 4))
            elif kind == "ended_reset_data":  # 4 bytes each
                batch.append(frame(DATA, 0, 1, b"d" * 4))
            elif kind == "reset_empty_data":
                batch.append(frame(DATA, 0, 1, b""))
            elif kind == "reset_big_data":  # what an upload's DATA costs: never charged
                batch.append(frame(DATA, 0, 1, b"d" * 1024))
            elif kind == "closed_headers":  # trailers, as if they crossed our END_STREAM
                batch.append(frame(HEADERS, END_HEADERS | END_STREAM, 1, c.block([("x-t", "1")])))
            elif kind == "closed_continuation":  # blocks of 7 frames (an HPACK bomb's shape)
                if len(batch) < CLOSED_BLOCKS_PER_BATCH:
                    batch.append(frame(HEADERS, END_STREAM, 1) + b"".join(
                        frame(CONTINUATION, END_HEADERS if i == 5 else 0, 1) for i in range(6)))
            elif kind == "hpack_bomb":
                if len(batch) < 4:  # ~600 KB per batch
                    batch.append(hpack_bomb(sid))
                    sid += 2
            sent += 1
        if kind == "small_data":  # 1 byte each, on the open upload
            batch, sent = [small_batch], sent + per_batch
        c.send(b"".join(batch))
        if kind == "window_reset":
            # Streams Portico resets stay open until their RST_STREAM is written: a batch sent
            # before those of the last one arrived may open more than the 100 streams allowed,
            # which ends the connection with PROTOCOL_ERROR instead (README,
            # http2_max_concurrent_streams). MadeYouReset stays within the limit the same way.
            c.pump(lambda: done() or all(c.st(s)["rst"] is not None for s in range(first, sid, 2)),
                   deadline)
        elif kind.endswith("_continuation") or kind.startswith("reset_") or \
                kind in ("refused_data", "ended_reset_data"):
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
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get(path)))
    c.pump(lambda: st["end"], time.monotonic() + 0.2)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))
    # the connection goes on: a second request is answered
    st3 = c.st(3)
    c.send(c.request(3, get("/status/200")))
    c.pump(lambda: st3["end"] or st3["rst"] is not None, time.monotonic() + IO_S)
    print("cancelled_status=%s next_status=%s" % (st["status"][-1:], st3["status"][-1:]))
    c.close()


def cancel_races(port, n, rounds):
    """What a browser's cancels that cross their answers look like, at a high request rate:
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
            out.append(frame(RST_STREAM, 0, s, struct.pack(">I", 8)))
        c.send(b"".join(out))
    st = c.st(sid)
    c.send(c.request(sid, get("/status/200")))
    c.pump(lambda: st["end"] or c.goaway is not None, time.monotonic() + IO_S)
    print("answered=%d next_status=%s goaway=%s" % (answered, st["status"][-1:], c.goaway))
    c.close()


def reset_before_data(port, path):
    """Stream windows of 0: the head of PATH's answer comes, none of its body may. The client
    resets it (CANCEL), then asks for a 204 (no body: not held back by the window) on the same
    connection: once that is answered, Portico has read the reset."""
    c = Conn(port, pairs=[(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0
    st = c.st(1)
    c.send(c.request(1, get(path)))
    c.pump(lambda: st["status"] or st["rst"] is not None, time.monotonic() + IO_S)
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))
    st3 = c.st(3)
    c.send(c.request(3, get("/status/204")))
    c.pump(lambda: st3["end"] or st3["rst"] is not None, time.monotonic() + IO_S)
    print("status=%s data=%d next=%s" % (st["status"][-1:], st["data"], st3["status"][-1:]))
    c.close()


def stall_body(port, path):
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get(path, "POST") + [("content-length", "10")], end_stream=False))
    c.send(frame(DATA, 0, 1, b"12345"))
    c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
    answered = time.monotonic()
    c.pump(lambda: st["rst"] is not None, answered + 1)  # the rest is not wanted
    # the reset follows the answer at once (client_body_timeout is 500 ms)
    at_answer = st["rst"] is not None and time.monotonic() - answered < 0.25
    print("status=%s rst=%s reset_at_answer=%s" % (st["status"][-1:], st["rst"], at_answer))
    c.close()


def window_back(port, path):
    """A POST of 1 KiB of its content-length's 100,000, which the origin's socket takes: the
    stream's WINDOW_UPDATE increments that came within IO_S, before the client used up its
    window (none: 0)."""
    c = Conn(port)
    c.send(c.request(1, get(path, "POST") + [("content-length", "100000")], end_stream=False))
    c.send(frame(DATA, 0, 1, b"x" * 1024))
    c.pump(lambda: c.window_updates.get(1, 0) > 0, time.monotonic() + IO_S)
    print("window_update=%d" % c.window_updates.get(1, 0))
    c.close()


def tiny_uploads(port, path, n):
    """Two POSTs of N bytes, each sent as N DATA frames of 1 byte in one write (within the
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
    """A POST of N DATA frames of SIZE bytes (content-length N * SIZE), sent 100 at a time as
    the windows allow, and with RATE no faster than RATE a second (never catching up in a
    burst), the way a client writing a body in small pieces sends it: its status, any GOAWAY,
    the frames sent."""
    c = Conn(port)
    c.send(c.request(1, get(path, "POST") + [("content-length", str(n * size))], False))
    sent, start = 0, time.monotonic()
    deadline = start + 60
    while sent < n and c.goaway is None and not c.closed and time.monotonic() < deadline:
        stream = c.peer_settings.get(4, 65535) + c.window_updates.get(1, 0) - sent * size
        conn = 65535 + c.window_updates.get(0, 0) - sent * size
        due = int((time.monotonic() - start) * rate) - sent if rate else n
        k = min(100, n - sent, min(stream, conn) // size, due)
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
    """Three uploads spend most of the small-DATA allowance (9,897 of 10,000 frames), then M
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
    """Streams refused or reset before an exchange existed, from SOURCE (a trusted balancer's
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
         frame(RST_STREAM, 0, sid, struct.pack(">I", 8))),  # CANCEL: nothing comes back
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
            c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        print("case=%s rst=%s status=%s" % (name, st["rst"], st["status"][-1:]))
        sid += 2
    # a PING's ACK: Portico has read the parked head (it answers frames in order), and what it
    # sent is read, so that the close below is a FIN, not a reset
    c.send(post0("/rip-parked", 11) + frame(PING, 0, 0, b"rip-ping"))
    c.pump(lambda: c.ping_acks > 0, time.monotonic() + IO_S)
    c.send(frame(HEADERS, END_STREAM, sid + 2, c.block(get("/rip-unfinished") + xff(12))))
    c.s.shutdown(socket.SHUT_WR)  # the client leaves mid-block: Portico ends the connection
    c.pump(lambda: False, time.monotonic() + IO_S)
    print("case=left ping_acks=%d closed=%s" % (c.ping_acks, c.closed))
    c.close()


def out_of_memory(port, source):
    """From SOURCE (a trusted balancer), two requests naming their client in x-forwarded-for:
    the test made the first one's exchange find no memory; the second is served."""
    c = Conn(port, source=source)
    for sid, path in ((1, "/oom-refused"), (3, "/oom-served")):
        st = c.st(sid)
        c.send(c.request(sid, get(path) + [("x-forwarded-for", "127.9.9.9, 127.0.0.2"),
                                           ("x-request-id", path[1:])]))
        c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        ids = [v for b in st["blocks"] for k, v in b if k == "x-request-id"]
        print("case=%s rst=%s status=%s data=%d id=%s" % (path[1:], st["rst"], st["status"][-1:],
                                                          st["data"], ids[-1] if ids else None))
    c.close()


def request_ids(port):
    """Streams refused or reset before an exchange existed, each with an x-request-id: the
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
        c.pump(lambda: st["rst"] is not None or st["end"], time.monotonic() + IO_S)
        ids = [v for b in st["blocks"] for k, v in b if k == "x-request-id"]
        print("case=%s rst=%s status=%s id=%s" % (name, st["rst"], st["status"][-1:],
                                                  ids[-1] if ids else None))
        sid += 2
    c.send(frame(HEADERS, END_STREAM, sid, c.block(get("/rid-unfinished") + rid("h2-499"))))
    c.s.shutdown(socket.SHUT_WR)  # the client leaves mid-block: Portico ends the connection
    c.pump(lambda: False, time.monotonic() + IO_S)
    print("case=left closed=%s" % c.closed)
    c.close()


def unfinished_head(port, path, how):
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
    c = Conn(port)
    for sid in (1, 3):  # the second response could reuse what the first one indexed
        st = c.st(sid)
        c.send(c.request(sid, get(path)))
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
        print("stream=%d status=%s never=%s" % (sid, st["status"][-1:],
                                                 ",".join(sorted(st.get("never", [])))))
    c.close()


def concurrency(port, path, n, acked, total=None):
    """acked: the requests follow our SETTINGS ACK; otherwise they go with the preface, while
    Portico's limit is still unacknowledged (as browsers send their first requests). total:
    how many GETs (n + 1 if None)."""
    sids = list(range(1, 2 * (total or n + 1), 2))
    requests = lambda conn: b"".join(conn.request(sid, get(path)) for sid in sids)
    c = Conn(port, early=None if acked else requests)
    if acked:
        c.send(requests(c))
    done = lambda: all(c.st(sid)["end"] or c.st(sid)["rst"] is not None for sid in sids)
    c.pump(done, time.monotonic() + IO_S)
    for sid in sids:
        st = c.st(sid)
        print("stream=%d status=%s rst=%s" % (sid, st["status"][-1:], st["rst"]))
    print("goaway=%s closed=%s" % (c.goaway, c.closed))
    c.close()


def refused_big_heads(port, path, n, size, limit):
    """n GETs of path sent with the preface (Portico's limit still unacknowledged, as browsers
    send their first requests), each with a cookie of size bytes: heads of HEADERS and
    CONTINUATION frames of 16 KB. Those past the limit (limit) are refused; then a PING, whose ACK
    follows whatever GOAWAY their blocks brought."""
    sids = list(range(1, 2 * n, 2))

    def requests(conn):
        # One block for all (encoding 20 KB in Python took 1.5 s for 40): the cookie, larger
        # than the dynamic table, empties it (RFC 7541 4.4), so each block starts as the first.
        block = conn.block(get(path) + [("cookie", "c=" + "x" * size)])
        parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = b""
        for sid in sids:
            for k, part in enumerate(parts):
                flags = (END_HEADERS if k == len(parts) - 1 else 0) | (END_STREAM if k == 0 else 0)
                out += frame(HEADERS if k == 0 else CONTINUATION, flags, sid, part)
        return out
    c = Conn(port, early=requests)
    refused = lambda: sum(1 for sid in sids if c.st(sid)["rst"] == 7)  # REFUSED_STREAM
    c.pump(lambda: c.goaway is not None or refused() >= n - limit, time.monotonic() + IO_S)
    c.send(frame(PING, 0, 0, struct.pack(">Q", 1)))
    c.pump(lambda: c.goaway is not None or c.ping_acks > 0, time.monotonic() + IO_S)
    print("refused=%d goaway=%s" % (refused(), c.goaway))
    c.close()


def windows(port, path):
    c = Conn(port, [(4, 0)])  # SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send DATA yet
    s1, s3 = c.st(1), c.st(3)
    c.send(c.request(1, get(path)) + c.request(3, get(path)))
    # only stream 3's window opens (handle() keeps it open); stream 1's stays shut
    c.send(frame(WINDOW_UPDATE, 0, 3, struct.pack(">I", 1 << 20)))
    c.pump(lambda: s3["end"] or s3["rst"] is not None, time.monotonic() + IO_S)
    print("stream=3 status=%s data=%d end=%s rst=%s" % (s3["status"][-1:], s3["data"], s3["end"],
                                                       s3["rst"]))
    print("stream=1 status=%s data=%d end=%s rst=%s" % (s1["status"][-1:], s1["data"], s1["end"],
                                                       s1["rst"]))
    c.close()


def trailers(port, path):
    c = Conn(port)
    cases = [("valid", [("x-checksum", "abc")]), ("pseudo", [(":path", "/other")]),
             ("connection", [("connection", "close")]), ("keep_alive", [("keep-alive", "1")]),
             ("proxy_connection", [("proxy-connection", "close")]),
             ("transfer_encoding", [("transfer-encoding", "chunked")]),
             ("upgrade", [("upgrade", "h2c")]), ("te", [("te", "gzip")]),
             ("uppercase", [("X-Checksum", "abc")]), ("bad_name", [("x checksum", "abc")]),
             ("bad_value", [("x-checksum", "a\r\nhost: evil")]),
             ("space_value", [("x-checksum", " abc")]),
             ("valid_after", [("x-checksum", "abc")])]
    for i, (name, fields) in enumerate(cases):
        sid = 2 * i + 1
        st = c.st(sid)
        c.send(c.request(sid, get(path, "POST") + [("te", "trailers")], end_stream=False))
        c.send(frame(DATA, 0, sid, b"hello"))
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, c.block(fields)))
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
        print("case=%s status=%s rst=%s" % (name, st["status"][-1:], st["rst"]))
    c.close()


def trailer_limit(port, path, limit):
    """POSTs whose trailer section (names and values) is limit bytes, then limit + 1."""
    c = Conn(port)
    for i, (name, size) in enumerate([("at_limit", limit), ("over_limit", limit + 1)]):
        sid = 2 * i + 1
        st = c.st(sid)
        c.send(c.request(sid, get(path, "POST") + [("te", "trailers")], end_stream=False))
        c.send(frame(DATA, 0, sid, b"hello"))
        fields = [("x-t", "v" * (size - 3))]
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, c.block(fields)))
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
        print("case=%s status=%s rst=%s" % (name, st["status"][-1:], st["rst"]))
    c.close()


def paced(port, path):
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
    c = Conn(port)
    live = reload(c, pid, log)
    st = c.st(1)
    c.send(c.request(1, get(path)))
    c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
    print("live=%s status=%s end=%s rst=%s goaway=%s" % (live, st["status"][-1:], st["end"],
                                                         st["rst"], c.goaway))
    c.close()


def discard_reload(port, pid, log):
    """A POST to /down/ (502) with a content-length of 3,000, 100 bytes of it with its head; once
    its answer is whole (its rest being dropped), a reload, then the client resets the stream
    (CANCEL) and waits for the ACK of a PING, or the close that ends the drain once the stream
    is gone: Portico read the reset."""
    c = Conn(port)
    st = c.st(1)
    c.send(c.request(1, get("/down/x", "POST") + [("content-length", "3000")], False) +
           frame(DATA, 0, 1, b"h" * 100))
    c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
    live = reload(c, pid, log)
    acks = c.ping_acks
    c.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 8)) + frame(PING, 0, 0, b"\0" * 8))
    c.pump(lambda: c.ping_acks > acks or c.closed, time.monotonic() + IO_S)
    print("discard_reload status=%s end=%s rst=%s live=%s read=%s" % (
        st["status"], st["end"], st["rst"], live, c.ping_acks > acks or c.closed))
    c.close()


def reload_next(port, path, d):
    c = Conn(port)
    first, nxt = c.st(1), c.st(3)
    c.send(c.request(1, get(path)))
    c.pump(lambda: first["end"] or first["rst"] is not None, time.monotonic() + IO_S)
    with open(os.path.join(d, "h2_ready"), "w") as f:
        f.write("ready\n")
    deadline = time.monotonic() + 2 * IO_S
    go = False
    while not go and time.monotonic() < deadline:
        go = os.path.exists(os.path.join(d, "h2_go"))
        if not go:  # the test's steps take a few ms each: a bounded wait for its file
            c.pump(lambda: False, time.monotonic() + 0.01)
    c.send(c.request(3, get(path)))
    with open(os.path.join(d, "h2_sent"), "w") as f:
        f.write("sent\n")
    c.pump(lambda: nxt["end"] or nxt["rst"] is not None, time.monotonic() + IO_S)
    c.pump(lambda: c.closed, time.monotonic() + IO_S)  # the last GOAWAY may follow the answer
    print("go=%s first=%s next=%s end=%s rst=%s goaway=%s" % (
        go, first["status"][-1:], nxt["status"][-1:], nxt["end"], nxt["rst"], c.goaway))
    c.close()


def drain_crossing(port, path, pid):
    c = Conn(port)
    first, nxt = c.st(1), c.st(3)
    c.send(c.request(1, get(path)))
    c.pump(lambda: first["end"] or first["rst"] is not None, time.monotonic() + IO_S)
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
    ("rst_idle_stream", lambda c: frame(RST_STREAM, 0, 9, struct.pack(">I", 8)), 1),
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


UPLOAD_STALLED, UPLOAD_SIZE, UPLOAD_READ = 99, 8000000, 4 << 20


def uploads(port, pid, follow_rss=True, stalled=UPLOAD_STALLED, read_size=UPLOAD_READ):
    """The client sends whatever its windows allow (RFC 9113 6.9), on every stream in turn, the
    one whose origin reads first: what Portico holds is what its windows let in."""
    before = rss_kb(pid)
    c = Conn(port)  # Portico's SETTINGS are in: its streams begin with its initial window
    window = {"conn": 65535, "initial": c.peer_settings.get(4, 65535)}
    credit = {}                 # stream -> window; the connection's is window["conn"]
    left = {}                   # stream -> body bytes not sent yet
    orig_handle = c.handle

    def handle(ftype, flags, sid, payload):
        if ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                window["conn"] += inc
            elif sid in credit:
                credit[sid] += inc
        orig_handle(ftype, flags, sid, payload)
    c.handle = handle
    read = 1 + 2 * stalled
    sids = [read] + list(range(1, read, 2))
    for sid in sorted(sids):  # stream ids only go up (RFC 9113 5.1.1)
        path = "/read/%d" % sid if sid == read else "/stall/%d" % sid
        size = read_size if sid == read else UPLOAD_SIZE
        c.send(c.request(sid, get(path, "POST") + [("content-length", str(size))], False))
        credit[sid] = window["initial"]
        left[sid] = size
    chunk = b"u" * 16384
    sent = dict.fromkeys(sids, 0)

    def push():
        out = []
        for sid in sids:
            if c.st(sid)["rst"] is not None or c.st(sid)["end"]:
                continue
            while left[sid] and credit[sid] > 0 and window["conn"] > 0:
                n = min(len(chunk), left[sid], credit[sid], window["conn"])
                left[sid] -= n
                credit[sid] -= n
                window["conn"] -= n
                sent[sid] += n
                out.append(frame(DATA, END_STREAM if not left[sid] else 0, sid, chunk[:n]))
        if out:
            c.send(b"".join(out))

    st = c.st(read)
    deadline = time.monotonic() + 20
    while not st["end"] and st["rst"] is None and not c.closed and time.monotonic() < deadline:
        push()
        c.pump(lambda: False, time.monotonic() + 0.01)
    print("stream=%d status=%s end=%s rst=%s sent=%d" % (read, st["status"][-1:], st["end"],
                                                        st["rst"], sent[read]))
    # RSS once it stops growing (no growth past 256 kB for a second), the windows still used
    # as they open: sampling a figure, not synchronizing on it. Under ASan it grows for as long
    # as the wait's 10 s bound (shadow memory, quarantine) and nobody asserts on it: the
    # windows are used for the wait's shortest, a second.
    last, since, deadline = rss_kb(pid), time.monotonic(), time.monotonic() + 10
    while time.monotonic() - since < 1 and time.monotonic() < deadline and not c.closed:
        push()
        c.pump(lambda: False, time.monotonic() + 0.05)
        now = rss_kb(pid)
        if now > last + 256 and follow_rss:
            last, since = now, time.monotonic()
    stalled = sum(sent[sid] for sid in sids if sid != read)
    resets = sum(1 for sid in sids if c.st(sid)["rst"] is not None)
    print("stalled_sent=%d resets=%d goaway=%s" % (stalled, resets, c.goaway))
    print("rss_before=%d rss_after=%d" % (before, last))
    c.close()

def shut_downloads(port, pid, n, follow_rss=True, last=None):
    """n GETs of 8 MB from the simulator, SETTINGS_INITIAL_WINDOW_SIZE 0, their windows never
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
    c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + 10)
    print("heads=%d open=%d data=%d end=%s rst=%s open_ms=%d" % (
        heads, sid, st["data"], st["end"], st["rst"], (time.monotonic() - t0) * 1000))
    if last:
        sid += 2
        st = c.st(sid)
        c.send(c.request(sid, get(last)))
        c.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1 << 20)))
        c.pump(lambda: st["end"] or st["rst"] is not None, time.monotonic() + IO_S)
        print("last status=%s data=%d end=%s rst=%s" % (st["status"][-1:], st["data"], st["end"],
                                                       st["rst"]))
    last, since, deadline = rss_kb(pid), time.monotonic(), time.monotonic() + 10
    while follow_rss and time.monotonic() - since < 1 and time.monotonic() < deadline:
        c.pump(lambda: False, time.monotonic() + 0.05)
        now = rss_kb(pid)
        if now > last + 256:
            last, since = now, time.monotonic()
    print("rss_before=%d rss_after=%d" % (before, last))
    c.close()


def unacked_uploads(port, pid, n, follow_rss=True):
    """n POSTs to /stall/ (an origin that never takes them) sent with the preface, Portico's
    SETTINGS never acknowledged: each stream's window stays the default 65,535 (RFC 9113 6.5.3),
    and the client sends what the windows allow (each WINDOW_UPDATE of the connection's counted)
    until nothing more goes for half a second, 3 s at most; then what went and the worker's
    (PID) RSS."""
    before = rss_kb(pid)
    sids = list(range(1, 2 * n, 2))
    c = Conn(port, ack_settings=False, early=lambda c: b"".join(
        c.request(sid, get("/stall/%d" % sid, "POST") + [("content-length", "8000000")], False)
        for sid in sids))
    window = {"conn": 65535}
    orig_handle = c.handle

    def handle(ftype, flags, sid, payload):
        if ftype == WINDOW_UPDATE and sid == 0:
            window["conn"] += struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        orig_handle(ftype, flags, sid, payload)
    c.handle = handle
    left, chunk = dict.fromkeys(sids, 65535), b"p" * 16384
    sent, since, deadline = 0, time.monotonic(), time.monotonic() + 3
    while time.monotonic() - since < 0.5 and time.monotonic() < deadline and not c.closed:
        out = []
        for sid in sids:
            while left[sid] and window["conn"] > 0:
                k = min(len(chunk), left[sid], window["conn"])
                left[sid] -= k
                window["conn"] -= k
                sent += k
                out.append(frame(DATA, 0, sid, chunk[:k]))
        if out:
            c.send(b"".join(out))
            since = time.monotonic()
        c.pump(lambda: False, time.monotonic() + 0.05)
    last, since = rss_kb(pid), time.monotonic()
    while follow_rss and time.monotonic() - since < 1 and time.monotonic() < deadline + 5:
        c.pump(lambda: False, time.monotonic() + 0.05)
        now = rss_kb(pid)
        if now > last + 256:
            last, since = now, time.monotonic()
    print("unacked_sent=%d goaway=%s" % (sent, c.goaway))
    print("rss_before=%d rss_after=%d" % (before, last))
    c.close()


FINISHED_BODY, FINISHED_BIG = 100, 4 << 20


def finished_uploads(port, n):
    """Uploads whose bodies are whole and written to their origins (its 103 says it read them)
    can receive no more DATA: whatever window they had left is nobody's to use. A next upload
    on the connection reports the largest window it was given."""
    c = Conn(port)
    credit = {"conn": 65535}
    big = 2 * n + 1
    orig_handle = c.handle

    def handle(ftype, flags, sid, payload):
        if ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            credit["conn" if sid == 0 else sid] = credit.get("conn" if sid == 0 else sid, 0) + inc
            if sid == big:
                credit["max"] = max(credit["max"], credit[big])
        orig_handle(ftype, flags, sid, payload)
    c.handle = handle
    for sid in range(1, big, 2):
        fields = get("/early/%d" % sid, "POST") + [("content-length", str(FINISHED_BODY))]
        c.send(c.request(sid, fields, False) +
               frame(DATA, END_STREAM, sid, b"e" * FINISHED_BODY))
    early = range(1, big, 2)
    c.pump(lambda: all(103 in c.st(sid)["status"] for sid in early), time.monotonic() + IO_S)
    print("early_103=%d" % sum(1 for sid in early if 103 in c.st(sid)["status"]))
    credit[big] = credit["max"] = c.peer_settings.get(4, 65535)
    c.send(c.request(big, get("/read/", "POST") + [("content-length", str(FINISHED_BIG))], False))
    left, chunk = FINISHED_BIG, b"u" * 16384
    st = c.st(big)
    deadline = time.monotonic() + 20
    while not st["end"] and st["rst"] is None and not c.closed and time.monotonic() < deadline:
        out = []
        while left and credit[big] > 0 and credit["conn"] > 0:
            k = min(len(chunk), left, credit[big], credit["conn"])
            left -= k
            credit[big] -= k
            credit["conn"] -= k
            out.append(frame(DATA, END_STREAM if not left else 0, big, chunk[:k]))
        if out:
            c.send(b"".join(out))
        c.pump(lambda: False, time.monotonic() + 0.01)
    print("stream=%d status=%s end=%s sent=%d" % (big, st["status"][-1:], st["end"],
                                               FINISHED_BIG - left))
    print("max_window=%d" % credit["max"])
    c.close()


def conn_errors(port):
    for name, frames, code in CONN_ERRORS:
        c = Conn(port)
        c.send(frames(c))
        c.pump(lambda: c.closed, time.monotonic() + IO_S)
        print("case=%s goaway=%s want=%d closed=%s" % (name, c.goaway, code, c.closed))
        c.close()


def main():
    port = int(sys.argv[1])
    if sys.argv[2] == "malformed":
        malformed(port)
    elif sys.argv[2] == "zero_length":
        zero_length(port)
    elif sys.argv[2] == "hold":
        hold(port, sys.argv[3])
    elif sys.argv[2] == "hold_expect":
        hold_expect(port)
    elif sys.argv[2] == "hold_early":
        hold_early(port)
    elif sys.argv[2] == "unread":
        unread(port)
    elif sys.argv[2] == "discard":
        discard(port, sys.argv[3])
    elif sys.argv[2] == "fed_gone":
        fed_gone(port, sys.argv[3])
    elif sys.argv[2] == "discard_unacked":
        discard_unacked(port)
    elif sys.argv[2] == "closing_unsent":
        closing_unsent(port)
    elif sys.argv[2] == "shut_unsent":
        shut_unsent(port)
    elif sys.argv[2] == "short_unsent":
        short_unsent(port)
    elif sys.argv[2] == "discard_short":
        discard_short(port, int(sys.argv[3]))
    elif sys.argv[2] == "cancel":
        cancel(port, sys.argv[3])
    elif sys.argv[2] == "cancel_races":
        cancel_races(port, int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[2] == "reset_before_data":
        reset_before_data(port, sys.argv[3])
    elif sys.argv[2] == "stall_body":
        stall_body(port, sys.argv[3])
    elif sys.argv[2] == "window_back":
        window_back(port, sys.argv[3])
    elif sys.argv[2] == "tiny_uploads":
        tiny_uploads(port, sys.argv[3], int(sys.argv[4]))
    elif sys.argv[2] == "small_writes":
        small_writes(port, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                     int(sys.argv[6]) if len(sys.argv) > 6 else 0)
    elif sys.argv[2] == "small_bodies":
        small_bodies(port, sys.argv[3], int(sys.argv[4]))
    elif sys.argv[2] == "real_ip":
        real_ip(port, sys.argv[3])
    elif sys.argv[2] == "out_of_memory":
        out_of_memory(port, sys.argv[3])
    elif sys.argv[2] == "request_ids":
        request_ids(port)
    elif sys.argv[2] == "unfinished_head":
        unfinished_head(port, sys.argv[3], sys.argv[4])
    elif sys.argv[2] == "indexing":
        indexing(port, sys.argv[3])
    elif sys.argv[2] == "concurrency":
        concurrency(port, sys.argv[3], int(sys.argv[4]), False,
                    int(sys.argv[5]) if len(sys.argv) > 5 else None)
    elif sys.argv[2] == "concurrency_acked":
        concurrency(port, sys.argv[3], int(sys.argv[4]), True)
    elif sys.argv[2] == "refused_big_heads":
        refused_big_heads(port, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[2] == "windows":
        windows(port, sys.argv[3])
    elif sys.argv[2] == "trailer_limit":
        trailer_limit(port, sys.argv[3], int(sys.argv[4]))
    elif sys.argv[2] == "trailers":
        trailers(port, sys.argv[3])
    elif sys.argv[2] == "paced":
        paced(port, sys.argv[3])
    elif sys.argv[2] == "trickle":
        trickle(port, sys.argv[3], int(sys.argv[4]))
    elif sys.argv[2] == "reload_next":
        reload_next(port, sys.argv[3], sys.argv[4])
    elif sys.argv[2] == "conn_errors":
        conn_errors(port)
    elif sys.argv[2] == "drain_crossing":
        drain_crossing(port, sys.argv[3], int(sys.argv[4]))
    elif sys.argv[2] == "finished_uploads":
        finished_uploads(port, int(sys.argv[3]))
    elif sys.argv[2] == "big_heads":
        big_heads(port)
    elif sys.argv[2] == "resp_trailers":
        resp_trailers(port, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif sys.argv[2] == "heads":
        heads(port, sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
    elif sys.argv[2] == "crossing_trailers":
        crossing_trailers(port)
    elif sys.argv[2] == "late_data":
        late_data(port, int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[2] == "late_window":
        late_window(port, sys.argv[3])
    elif sys.argv[2] == "drain_dropped":
        drain_dropped(port, int(sys.argv[3]))
    elif sys.argv[2] == "drain_raced":
        drain_raced(port, int(sys.argv[3]))
    elif sys.argv[2] == "drain_flood":
        drain_flood(port, int(sys.argv[3]))
    elif sys.argv[2] == "bombs":
        bombs(port, int(sys.argv[3]))
    elif sys.argv[2] == "shut_downloads":
        shut_downloads(port, int(sys.argv[3]), int(sys.argv[5]), sys.argv[4] != "norss",
                       sys.argv[6] if len(sys.argv) > 6 else None)
    elif sys.argv[2] == "unacked_uploads":
        unacked_uploads(port, int(sys.argv[3]), int(sys.argv[5]), sys.argv[4] != "norss")
    elif sys.argv[2] == "uploads":
        uploads(port, int(sys.argv[3]), sys.argv[4:5] != ["norss"],
                int(sys.argv[5]) if len(sys.argv) > 5 else UPLOAD_STALLED,
                int(sys.argv[6]) if len(sys.argv) > 6 else UPLOAD_READ)
    elif sys.argv[2] == "discard_reload":
        discard_reload(port, int(sys.argv[3]), sys.argv[4])
    elif sys.argv[2] == "reload_first":
        reload_first(port, sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        flood(port, sys.argv[3])


if __name__ == "__main__":
    main()
