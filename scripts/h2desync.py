#!/usr/bin/python3
"""h2desync.py: HTTP/2 -> HTTP/1.1 downgrade desync of Portico, alone and chained with real
HAProxy and nginx; raw HTTP/2 frames (python3-hpack's decoder, a literal-only encoder of its own
so that any bytes go in a name or value).

Usage (by hand, not part of `make test`; loopback only, ports 18150-18199):

    TMPDIR=/tmp/h2smuggle /usr/bin/python3 scripts/h2desync.py [--portico build/portico]
        [--only GLOB,...] [--chains P2,PT,H2,HA,N2,CN,CH,P1] [--out DIR] [--list]

It starts, under $TMPDIR/h2desync (or --out), Portico (one instance per chain, one worker),
HAProxy and nginx from /usr/sbin with configs of its own, desync.py's strict RFC 9112 recording
origins (one per chain) and taps (TCP relays that parse what the hop before them sends).

Chains (the client is this script, speaking raw HTTP/2 frames):
  P2  h2c client -> Portico (h2c listener) -> origin
  PT  TLS client (ALPN h2) -> Portico (tls listener) -> TLS origin (Portico's upstream TLS)
  H2  h2c client -> HAProxy (bind ... proto h2) -> tap -> Portico (HTTP/1.1) -> origin
  HA  TLS client (ALPN h2) -> HAProxy (ssl alpn h2) -> origin   (HAProxy's own verdict)
  N2  h2c client -> nginx (listen ... http2) -> origin             (nginx's own verdict)
  CN  h2c client -> Portico -> tap -> nginx (HTTP/1.1) -> origin
  CH  h2c client -> Portico -> tap -> HAProxy (HTTP/1.1) -> origin
  P1  HTTP/1.1 client -> Portico (plain listener) -> origin   (only the h1/ cases: h2c upgrade)

Each case sends stream 1 (a request built to be malformed, ambiguous, or to hide a request
/SMUGGLED-<id> where a hop that frames it wrongly would see one), waits for its end (response,
RST_STREAM, GOAWAY, 2 s), then a benign GET /second-<id> on stream 3 of the same connection,
then a victim GET /victim-<id> on a new connection. Outcome of stream 1:
  fwd:N          the origin answered it (status N, X-Echo its own target)
  hop:N          a proxy answered it itself with status N
  rst:CODE       RST_STREAM with CODE (PROTOCOL_ERROR, ...) before any answer
  goaway:CODE    the connection ended with GOAWAY CODE before any answer
  timeout, closed
and flags:
  SMUGGLED@LINK  a link parsed a request /SMUGGLED-... (a hop framed it as one)
  MISFRAMED@LINK a link's bytes are not strict HTTP/1.1
  FOREIGN@LINK   a link carried a request of no case of this run's
  BODY@LINK      the origin's request 1 body length differs from the DATA the client sent
  2ND            the benign stream 3 got no answer of its own
  VICTIM         the victim on a new connection got no answer of its own
Results: a line per case and chain, a table (case group x chain -> outcome counts), the
first-hop verdicts of Portico (P2), HAProxy (HA) and nginx (N2) where they differ, the cases
Portico forwards while both refuse, the cases whose request 1 reached Portico's origin but
neither HAProxy's nor nginx's, and DIR/results.json with every link's bytes.
"""
import argparse
import fnmatch
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import desync as D  # noqa: E402  (strict parser, recording origin, taps, process helpers)
import hpack  # noqa: E402

HOST = "127.0.0.1"
ORIGIN = {"P2": 18150, "PT": 18151, "H2": 18152, "HA": 18153, "N2": 18154, "CN": 18155,
          "CH": 18156, "P1": 18157}
PORTICO = {"P2": 18160, "PT": 18161, "H2": 18162, "CN": 18163, "CH": 18164, "P1": 18165}
TAPS = {"H2": (18172, PORTICO["H2"]), "CN": (18173, 18180), "CH": (18174, 18185)}
NGINX_BACK, NGINX_H2 = 18180, 18181
HAPROXY_BACK, HAPROXY_H2C, HAPROXY_TLS = 18185, 18186, 18187
CHAINS = {
    # name: (client port, tls, first hop, hops, links)
    "P2": (PORTICO["P2"], False, ["portico"], ["origin-P2"]),
    "PT": (PORTICO["PT"], True, ["portico"], ["origin-PT"]),
    "H2": (HAPROXY_H2C, False, ["haproxy", "portico"], ["tap-H2", "origin-H2"]),
    "HA": (HAPROXY_TLS, True, ["haproxy"], ["origin-HA"]),
    "N2": (NGINX_H2, False, ["nginx"], ["origin-N2"]),
    "CN": (PORTICO["CN"], False, ["portico", "nginx"], ["tap-CN", "origin-CN"]),
    "CH": (PORTICO["CH"], False, ["portico", "haproxy"], ["tap-CH", "origin-CH"]),
    "P1": (PORTICO["P1"], False, ["portico"], ["origin-P1"]),
}
D.ORIGIN_PORT.update(ORIGIN)
D.TAP.update(TAPS)

# ---------------------------------------------------------------------------------------------
# Origins: desync.py's, TLS for PT, and /early-... answered as soon as its head came.


class Origin(D.Origin):
    def __init__(self, chain, tls_ctx=None):
        self.link = "origin-" + chain
        self.tls_ctx = tls_ctx
        D.serve(ORIGIN[chain], self.handle_maybe_tls)

    def handle_maybe_tls(self, c):
        if self.tls_ctx:
            try:
                c.settimeout(5)
                c = self.tls_ctx.wrap_socket(c, server_side=True)
                c.settimeout(None)
            except (OSError, ssl.SSLError):
                c.close()
                return
        self.handle(c)

    def handle(self, c):
        conn = D.LOG.conn_id()
        p = D.LinkParser(self.link, conn)
        early = set()
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                for r in p.feed(data):
                    if r["start"] in early:
                        continue
                    if r["target"].startswith("/h2c-101"):
                        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                                  b"Connection: Upgrade\r\n\r\n")
                        continue
                    if not self.answer(c, r):
                        return
                if p.dead:
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nX-Echo: ORIGIN-400\r\n"
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                try:  # a head whose body has not all come: /early-... answers it now
                    D.parse_request(p.buf, p.pos)
                except D.Need:
                    try:
                        line, _, _ = D.parse_head(p.buf, p.pos)
                        if b" /early-" in line and p.pos not in early:
                            early.add(p.pos)
                            t = line.split(b" ")[1]
                            c.sendall(b"HTTP/1.1 200 OK\r\nX-Echo: %s\r\nContent-Length: 5"
                                      b"\r\n\r\nearly" % t)
                    except (D.Need, D.Bad):
                        pass
                except D.Bad:
                    pass
        except OSError:
            pass
        finally:
            p.close()
            c.close()

# ---------------------------------------------------------------------------------------------
# HTTP/2 client: raw frames, literal field lines (never indexed), any bytes in names/values.


DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 3, 4, 6, 7, 8, 9)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERR = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
       5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
       9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM", 13: "HTTP_1_1_REQUIRED"}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid) + payload


def hp_int(n, prefix, first=0):
    limit = (1 << prefix) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(fields):
    """HPACK literal field lines without indexing, new name, no Huffman: the bytes as given."""
    out = b""
    for n, v in fields:
        n = n if isinstance(n, bytes) else n.encode("latin-1")
        v = v if isinstance(v, bytes) else v.encode("latin-1")
        out += b"\x10" + hp_int(len(n), 7) + n + hp_int(len(v), 7) + v
    return out


class H2:
    def __init__(self, port, tls):
        raw = socket.create_connection((HOST, port), timeout=3)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            raw = ctx.wrap_socket(raw, server_hostname="localhost")
            if raw.selected_alpn_protocol() != "h2":
                raise OSError("alpn %s" % raw.selected_alpn_protocol())
        self.s = raw
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf, self.partial = b"", None
        self.goaway, self.closed = None, False
        self.streams = {}
        self.send(PREFACE + frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 1 << 20))
                  + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24)))

    def st(self, sid):
        return self.streams.setdefault(sid, {"status": [], "fields": [], "body": b"",
                                             "rst": None, "end": False})

    def send(self, data):
        try:
            self.s.settimeout(3)
            self.s.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def handle(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & ACK:
            self.send(frame(SETTINGS, ACK, 0))
        elif ftype in (HEADERS, CONTINUATION):
            block = payload
            if ftype == HEADERS and flags & 0x8:
                block = block[1:len(block) - block[0]]
            if ftype == HEADERS and flags & 0x20:
                block = block[5:]
            if ftype == CONTINUATION and self.partial:
                flags = (self.partial[0] & END_STREAM) | (flags & END_HEADERS)
                block = self.partial[1] + block
            self.partial = None
            if not flags & END_HEADERS:
                self.partial = (flags, block)
                return
            try:
                fields = self.dec.decode(block, raw=True)
            except Exception as e:  # noqa: BLE001 (a hop's bad HPACK is a finding)
                fields = [(b"x-client-error", str(e).encode())]
            st = self.st(sid)
            for n, v in fields:
                if n == b":status":
                    st["status"].append(int(v))
            st["fields"].append([(n.decode("latin-1"), v.decode("latin-1")) for n, v in fields])
            st["end"] |= bool(flags & END_STREAM)
        elif ftype == DATA:
            st = self.st(sid)
            if flags & 0x8 and payload:
                payload = payload[1:len(payload) - payload[0]]
            st["body"] += payload
            st["end"] |= bool(flags & END_STREAM)
            if payload:
                self.send(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", len(payload))))
        elif ftype == RST_STREAM:
            self.st(sid)["rst"] = struct.unpack(">I", payload[:4])[0]
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", payload[:8])
        elif ftype == PING and not flags & ACK:
            self.send(frame(PING, ACK, 0, payload))

    def pump(self, until, limit):
        deadline = time.monotonic() + limit
        while not until() and not self.closed and time.monotonic() < deadline:
            while len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) < 9 + n:
                    break
                ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
                payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
                self.handle(ftype, flags, sid & 0x7FFFFFFF, payload)
            if until():
                break
            self.s.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
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

    def done(self, sid):
        st = self.st(sid)
        return (st["end"] or st["rst"] is not None or st.get("rst_sent") or self.goaway is not None
                or (st["status"] and st["status"][-1] >= 200 and st["end"]))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

# ---------------------------------------------------------------------------------------------
# The corpus. A case is (name, build): build(cid) -> list of actions on stream 1:
#   ("H", fields, end_stream)       HEADERS (END_HEADERS) with these fields
#   ("HC", [fields...], end_stream) HEADERS then CONTINUATION frames, a block each
#   ("D", bytes, end_stream)        DATA
#   ("T", fields)                   trailers: HEADERS with END_STREAM
#   ("RAW", bytes)                  bytes as they are (frames of their own)
#   ("WAIT", seconds)               read meanwhile
# and the DATA bytes the client meant as the body (for BODY@origin), or None.
# The P1 chain takes ("H1", bytes) cases: a raw HTTP/1.1 exchange.


def smug(cid):
    return b"GET /SMUGGLED-%s HTTP/1.1\r\nHost: t\r\n\r\n" % cid.encode()


def base(cid, method="GET", path=None, authority="t", scheme="http"):
    f = [(":method", method), (":scheme", scheme)]
    if authority is not None:
        f.append((":authority", authority))
    f.append((":path", path if path is not None else "/first-" + cid))
    return f


def cases():
    out = []

    def add(name, build, body=None):
        out.append((name, build, body))

    def get(extra, method="GET", **kw):
        return lambda cid: [("H", base(cid, method, **kw) + extra(cid), True)]

    def post(extra, data, end_in_data=True, method="POST", **kw):
        return lambda cid: [("H", base(cid, method, **kw) + extra(cid), False),
                            ("D", data(cid), end_in_data)]

    S = smug
    # content-length against the DATA
    add("cl/more", post(lambda c: [("content-length", "%d" % (len(S(c)) + 10))], S))
    add("cl/less", post(lambda c: [("content-length", "5")], S))
    add("cl/zero_with_data", post(lambda c: [("content-length", "0")], S))
    add("cl/two_same", post(lambda c: [("content-length", "%d" % len(S(c)))] * 2, S),
        body="smug")
    add("cl/two_diff", post(lambda c: [("content-length", "0"),
                                       ("content-length", "%d" % len(S(c)))], S))
    add("cl/list", post(lambda c: [("content-length", "%d, %d" % (len(S(c)), len(S(c))))], S))
    add("cl/plus", post(lambda c: [("content-length", "+%d" % len(S(c)))], S))
    add("cl/get_end_stream", get(lambda c: [("content-length", "40")]))
    add("cl/head_end_stream", get(lambda c: [("content-length", "40")], method="HEAD"))
    add("cl/get_with_data", post(lambda c: [("content-length", "%d" % len(S(c)))], S,
                                 method="GET"), body="smug")
    add("cl/exact", post(lambda c: [("content-length", "%d" % len(S(c)))], S), body="smug")
    add("cl/none_data", post(lambda c: [], S), body="smug")
    add("cl/zero_end_stream", get(lambda c: [("content-length", "0")], method="POST"),
        body="")
    add("cl/more_multi_data", lambda c: [
        ("H", base(c, "POST") + [("content-length", "5")], False),
        ("D", b"hello", False), ("D", S(c), True)])
    # transfer-encoding and connection-specific fields
    chunk_smug = lambda c: b"0\r\n\r\n" + S(c)  # noqa: E731
    add("te/chunked", post(lambda c: [("transfer-encoding", "chunked")], chunk_smug))
    add("te/chunked_cl", post(lambda c: [("transfer-encoding", "chunked"),
                                         ("content-length", "%d" % len(chunk_smug(c)))],
                              chunk_smug))
    add("te/chunked_data_plain", post(lambda c: [], chunk_smug), body="chunk_smug")
    add("te/chunked_data_cl", post(lambda c: [("content-length", "%d" % len(chunk_smug(c)))],
                                   chunk_smug), body="chunk_smug")
    add("te/identity", post(lambda c: [("transfer-encoding", "identity")], S))
    add("te/te_gzip", get(lambda c: [("te", "gzip")]))
    add("te/te_trailers", get(lambda c: [("te", "trailers")]))
    add("te/te_trailers_case", get(lambda c: [("te", "Trailers")]))
    add("te/te_trailers_list", get(lambda c: [("te", "trailers, deflate")]))
    add("conn/connection", get(lambda c: [("connection", "close")]))
    add("conn/connection_ka", get(lambda c: [("connection", "keep-alive")]))
    add("conn/keep_alive", get(lambda c: [("keep-alive", "timeout=5")]))
    add("conn/proxy_connection", get(lambda c: [("proxy-connection", "keep-alive")]))
    add("conn/upgrade", get(lambda c: [("upgrade", "websocket")]))
    add("conn/upgrade_h2c", get(lambda c: [("upgrade", "h2c"),
                                           ("http2-settings", "AAMAAABkAAQAAP__")]))
    add("conn/http2_settings", get(lambda c: [("http2-settings", "AAMAAABkAAQAAP__")]))
    # names
    add("name/uppercase", get(lambda c: [("X-Upper", "1")]))
    add("name/uppercase_cl", post(lambda c: [("Content-Length", "5")], S))
    add("name/uppercase_te", post(lambda c: [("Transfer-Encoding", "chunked")], chunk_smug))
    add("name/crlf", get(lambda c: [("x-a\r\nx-b", "1")]))
    add("name/crlf_smug", get(lambda c: [("x-a: 1\r\n\r\n" + S(c).decode() + "x-b", "1")]))
    add("name/lf", get(lambda c: [("x-a\nx-b", "1")]))
    add("name/cr", get(lambda c: [("x-a\rx-b", "1")]))
    add("name/nul", get(lambda c: [("x-a\0", "1")]))
    add("name/ctl", get(lambda c: [("x-a\x01", "1")]))
    add("name/space", get(lambda c: [("x a", "1")]))
    add("name/lead_space", get(lambda c: [(" x-a", "1")]))
    add("name/trail_space", get(lambda c: [("x-a ", "1")]))
    add("name/tab", get(lambda c: [("x-a\t", "1")]))
    add("name/colon", get(lambda c: [("x-a:b", "1")]))
    add("name/empty", get(lambda c: [("", "1")]))
    add("name/high", get(lambda c: [("x-\xe9", "1")]))
    add("name/te_colon_space", post(lambda c: [("transfer-encoding : chunked\r\nx", "y")],
                                    chunk_smug))
    # values
    add("value/crlf", get(lambda c: [("x-a", "1\r\nx-b: 2")]))
    add("value/crlf_smug", get(lambda c: [("x-a", "1\r\n\r\n" + S(c).decode()[:-4])]))
    add("value/lf", get(lambda c: [("x-a", "1\nx-b: 2")]))
    add("value/cr", get(lambda c: [("x-a", "1\rx-b: 2")]))
    add("value/nul", get(lambda c: [("x-a", "1\0")]))
    add("value/ctl_01", get(lambda c: [("x-a", "a\x01b")]))
    add("value/ctl_7f", get(lambda c: [("x-a", "a\x7fb")]))
    add("value/vtab", get(lambda c: [("x-a", "a\x0bb")]))
    add("value/lead_space", get(lambda c: [("x-a", " a")]))
    add("value/trail_space", get(lambda c: [("x-a", "a ")]))
    add("value/lead_tab", get(lambda c: [("x-a", "\ta")]))
    add("value/trail_tab", get(lambda c: [("x-a", "a\t")]))
    add("value/inner_tab", get(lambda c: [("x-a", "a\tb")]))
    add("value/high", get(lambda c: [("x-a", "caf\xe9")]))
    add("value/empty", get(lambda c: [("x-a", "")]))
    add("value/cl_crlf", post(lambda c: [("content-length", "%d\r\nx: y" % len(S(c)))], S))
    # pseudo-header fields
    add("pseudo/dup_path", lambda c: [("H", base(c) + [(":path", "/other-" + c)], True)])
    add("pseudo/dup_method", lambda c: [("H", base(c) + [(":method", "POST")], True)])
    add("pseudo/dup_authority", lambda c: [("H", base(c) + [(":authority", "u")], True)])
    add("pseudo/dup_scheme", lambda c: [("H", base(c) + [(":scheme", "https")], True)])
    add("pseudo/after_regular", lambda c: [("H", base(c)[:3] + [("x-a", "1"), base(c)[3]],
                                            True)])
    add("pseudo/unknown", get(lambda c: [(":foo", "bar")]))
    add("pseudo/unknown_first", lambda c: [("H", [(":foo", "bar")] + base(c), True)])
    add("pseudo/status_in_request", lambda c: [("H", base(c) + [(":status", "200")], True)])
    add("pseudo/in_trailers", lambda c: [("H", base(c, "POST"), False), ("D", b"abc", False),
                                         ("T", [(":path", "/SMUGGLED-" + c)])])
    add("pseudo/path_empty", lambda c: [("H", base(c, path=""), True)])
    add("pseudo/path_no_slash", lambda c: [("H", base(c, path="first-" + c), True)])
    add("pseudo/path_space", lambda c: [("H", base(c, path="/first-%s HTTP/1.1" % c), True)])
    add("pseudo/path_space_smug", lambda c: [("H", base(c, path="/first-%s HTTP/1.1\r\nHost: t"
                                                        "\r\n\r\n%sX" % (c, S(c).decode()[:-4])),
                                              True)])
    add("pseudo/path_crlf", lambda c: [("H", base(c, path="/first-%s\r\nx: y" % c), True)])
    add("pseudo/path_lf", lambda c: [("H", base(c, path="/first-%s\nx: y" % c), True)])
    add("pseudo/path_tab", lambda c: [("H", base(c, path="/first-%s\tx" % c), True)])
    add("pseudo/path_fragment", lambda c: [("H", base(c, path="/first-%s#frag" % c), True)])
    add("pseudo/path_absolute", lambda c: [("H", base(c, path="http://t/first-" + c), True)])
    add("pseudo/path_absolute_other", lambda c: [("H", base(c, path="http://evil/first-" + c),
                                                  True)])
    add("pseudo/path_star_get", lambda c: [("H", base(c, path="*"), True)])
    add("pseudo/path_star_options", lambda c: [("H", base(c, "OPTIONS", path="*"), True)])
    add("pseudo/path_double_slash", lambda c: [("H", base(c, path="//first-" + c), True)])
    add("pseudo/path_dotdot", lambda c: [("H", base(c, path="/first-%s/../x" % c), True)])
    add("pseudo/path_high", lambda c: [("H", base(c, path="/first-%s\xe9" % c), True)])
    add("pseudo/method_space", lambda c: [("H", base(c, "GET /x HTTP/1.1\r\nX:"), True)])
    add("pseudo/method_sp", lambda c: [("H", base(c, "GE T"), True)])
    add("pseudo/method_crlf", lambda c: [("H", base(c, "GET\r\n"), True)])
    add("pseudo/method_lower", lambda c: [("H", base(c, "get"), True)])
    add("pseudo/method_empty", lambda c: [("H", base(c, ""), True)])
    add("pseudo/method_unknown", lambda c: [("H", base(c, "FOO"), True)])
    add("pseudo/connect_authority", lambda c: [("H", [(":method", "CONNECT"),
                                                      (":authority", "t:80")], True)])
    add("pseudo/connect_no_authority", lambda c: [("H", [(":method", "CONNECT")], True)])
    add("pseudo/connect_with_path", lambda c: [("H", base(c, "CONNECT"), True)])
    add("pseudo/connect_extended", lambda c: [("H", base(c, "CONNECT") + [(":protocol",
                                                                          "websocket")], True)])
    add("pseudo/protocol_on_get", lambda c: [("H", base(c) + [(":protocol", "websocket")],
                                              True)])
    add("pseudo/no_method", lambda c: [("H", base(c)[1:], True)])
    add("pseudo/no_scheme", lambda c: [("H", [base(c)[0]] + base(c)[2:], True)])
    add("pseudo/scheme_ftp", lambda c: [("H", base(c, scheme="ftp"), True)])
    add("pseudo/scheme_empty", lambda c: [("H", base(c, scheme=""), True)])
    add("pseudo/scheme_crlf", lambda c: [("H", base(c, scheme="http\r\nx: y"), True)])
    add("pseudo/scheme_upper", lambda c: [("H", base(c, scheme="HTTP"), True)])
    # :authority and host
    add("auth/host_differs", get(lambda c: [("host", "evil")]))
    add("auth/host_same", get(lambda c: [("host", "t")]))
    add("auth/host_only", lambda c: [("H", base(c, authority=None) + [("host", "t")], True)])
    add("auth/host_crlf", lambda c: [("H", base(c, authority=None)
                                      + [("host", "t\r\nx-injected: 1")], True)])
    add("auth/two_hosts", lambda c: [("H", base(c, authority=None)
                                      + [("host", "t"), ("host", "evil")], True)])
    add("auth/two_hosts_same", lambda c: [("H", base(c, authority=None)
                                           + [("host", "t"), ("host", "t")], True)])
    add("auth/missing_both", lambda c: [("H", base(c, authority=None), True)])
    add("auth/empty", lambda c: [("H", base(c, authority=""), True)])
    add("auth/crlf", lambda c: [("H", base(c, authority="t\r\nx-injected: 1"), True)])
    add("auth/space", lambda c: [("H", base(c, authority="t x"), True)])
    add("auth/slash", lambda c: [("H", base(c, authority="t/evil"), True)])
    add("auth/userinfo", lambda c: [("H", base(c, authority="u@t"), True)])
    add("auth/port", lambda c: [("H", base(c, authority="t:8080"), True)])
    add("auth/bad_port", lambda c: [("H", base(c, authority="t:80x"), True)])
    add("auth/host_empty", lambda c: [("H", base(c, authority=None) + [("host", "")], True)])
    # cookie crumbs (RFC 9113 8.2.3: joined with "; ")
    add("cookie/split", get(lambda c: [("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]))
    add("cookie/split_apart", get(lambda c: [("cookie", "a=1"), ("x-a", "1"), ("cookie", "b=2")]))
    # trailers
    add("trailer/plain", lambda c: [("H", base(c, "POST"), False), ("D", b"abc", False),
                                    ("T", [("x-t", "1")])], "abc")
    add("trailer/content_length", lambda c: [("H", base(c, "POST"), False),
                                             ("D", b"abc", False),
                                             ("T", [("content-length", "50")])])
    add("trailer/transfer_encoding", lambda c: [("H", base(c, "POST"), False),
                                                ("D", b"abc", False),
                                                ("T", [("transfer-encoding", "chunked")])])
    add("trailer/crlf", lambda c: [("H", base(c, "POST"), False), ("D", b"abc", False),
                                   ("T", [("x-t", "1\r\n\r\n" + S(c).decode()[:-4])])])
    add("trailer/uppercase", lambda c: [("H", base(c, "POST"), False), ("D", b"abc", False),
                                        ("T", [("X-T", "1")])])
    add("trailer/no_end_stream", lambda c: [("H", base(c, "POST"), False), ("D", b"abc", False),
                                            ("RAW", frame(HEADERS, END_HEADERS, 1,
                                                          encode([("x-t", "1")]))),
                                            ("D", b"more", True)])
    add("trailer/cl_body", lambda c: [("H", base(c, "POST") + [("content-length", "3")],
                                       False), ("D", b"abc", False), ("T", [("x-t", "1")])],
        "abc")
    # request bodies the origin answers early; the origin connection then reused
    add("early/body_cl", lambda c: [("H", base(c, "POST", path="/early-" + c)
                                     + [("content-length", "%d" % (len(S(c)) + 20))], False),
                                    ("D", b"x" * 20, False), ("WAIT", 0.4),
                                    ("D", S(c), True)])
    add("early/body_nocl", lambda c: [("H", base(c, "POST", path="/early-" + c), False),
                                      ("D", b"x" * 20, False), ("WAIT", 0.4), ("D", S(c), True)])
    add("early/body_cl_short", lambda c: [("H", base(c, "POST", path="/early-" + c)
                                           + [("content-length", "200")], False),
                                          ("D", b"x" * 20, False), ("WAIT", 0.4),
                                          ("D", S(c), True)])
    add("early/body_reset", lambda c: [("H", base(c, "POST", path="/early-" + c)
                                        + [("content-length", "200")], False),
                                       ("D", b"x" * 20, False), ("WAIT", 0.4),
                                       ("RAW", frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))])
    add("early/reset_midbody", lambda c: [("H", base(c, "POST") + [("content-length", "200")],
                                           False), ("D", b"x" * 20, False), ("WAIT", 0.2),
                                          ("RAW", frame(RST_STREAM, 0, 1, struct.pack(">I", 8)))])
    add("early/short_then_end", lambda c: [("H", base(c, "POST") + [("content-length", "200")],
                                            False), ("D", b"x" * 20, False), ("WAIT", 0.2),
                                           ("D", b"", True)])
    # CONTINUATION floods and huge header lists (bounded)
    add("flood/continuation_1000", lambda c: [
        ("RAW", frame(HEADERS, END_STREAM, 1, encode(base(c)))
         + b"".join(frame(CONTINUATION, 0, 1, encode([("x-c", "a" * 10)])) for _ in range(1000))
         + frame(CONTINUATION, END_HEADERS, 1, b""))])
    add("flood/continuation_empty_5000", lambda c: [
        ("RAW", frame(HEADERS, END_STREAM, 1, encode(base(c)))
         + frame(CONTINUATION, 0, 1, b"") * 5000 + frame(CONTINUATION, END_HEADERS, 1, b""))])
    add("flood/continuation_unended", lambda c: [
        ("RAW", frame(HEADERS, END_STREAM, 1, encode(base(c)))
         + frame(CONTINUATION, 0, 1, encode([("x-c", "a" * 100)])) * 200)])
    add("flood/fields_2000", lambda c: [("HC", [base(c) + [("x-f%d" % i, "v")
                                                          for i in range(2000)]], True)])
    add("flood/field_100k", lambda c: [("HC", [base(c) + [("x-big", "a" * 100000)]], True)])
    add("flood/cookie_200k", lambda c: [("HC", [base(c) + [("cookie", "a%d=%s" % (i, "b" * 1000))
                                                           for i in range(200)]], True)])
    # a HEADERS within another stream's block
    add("frame/interleaved", lambda c: [("RAW", frame(HEADERS, 0, 1, encode(base(c)))
                                         + frame(HEADERS, END_HEADERS | END_STREAM, 3,
                                                 encode(base(c, path="/SMUGGLED-" + c))))])
    # h2c upgrade from HTTP/1.1 (P1 only)
    up = (b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
          b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n")

    def h1(target, extra=b"", after=b""):
        return lambda c: [("H1", b"GET %s-%s HTTP/1.1\r\nHost: t\r\n%s\r\n%s"
                           % (target.encode(), c.encode(), extra, after))]
    h2_after = lambda c: PREFACE + frame(SETTINGS, 0, 0) + frame(  # noqa: E731
        HEADERS, END_HEADERS | END_STREAM, 1, encode(base(c, path="/SMUGGLED-" + c)))
    add("h1/upgrade_h2c", h1("/first", up))
    add("h1/upgrade_h2c_then_preface", lambda c: h1("/first", up, h2_after(c))(c))
    add("h1/upgrade_h2c_origin_101", h1("/h2c-101", up))
    add("h1/upgrade_h2c_101_preface", lambda c: h1("/h2c-101", up, h2_after(c))(c))
    add("h1/upgrade_h2c_post", lambda c: [("H1", b"POST /first-%s HTTP/1.1\r\nHost: t\r\n%s"
                                           b"Content-Length: %d\r\n\r\n%s"
                                           % (c.encode(), up, len(S(c)), S(c)))])
    add("h1/preface_direct", lambda c: [("H1", h2_after(c))])
    add("h1/upgrade_h2", h1("/first", up.replace(b"h2c", b"h2")))
    return out


BODIES = {"smug": smug, "chunk_smug": lambda c: b"0\r\n\r\n" + smug(c),
          "abc": lambda c: b"abc", "": lambda c: b""}

# ---------------------------------------------------------------------------------------------
# Running a case


def run_h2(port, tls, actions, cid):
    c = H2(port, tls)
    c.pump(lambda: False, 0.05)  # the server's SETTINGS
    for a in actions:
        kind = a[0]
        if kind == "H":
            flags = END_HEADERS | (END_STREAM if a[2] else 0)
            c.send(frame(HEADERS, flags, 1, encode(a[1])))
        elif kind == "HC":
            block = b"".join(encode(f) for f in a[1])
            parts = [block[i:i + 16384] for i in range(0, len(block), 16384)] or [b""]
            out = frame(HEADERS, (END_STREAM if a[2] else 0)
                        | (END_HEADERS if len(parts) == 1 else 0), 1, parts[0])
            for i, p in enumerate(parts[1:], 2):
                out += frame(CONTINUATION, END_HEADERS if i == len(parts) else 0, 1, p)
            c.send(out)
        elif kind == "D":
            c.send(frame(DATA, END_STREAM if a[2] else 0, 1, a[1]))
        elif kind == "T":
            c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, encode(a[1])))
        elif kind == "RAW":
            c.send(a[1])
            if a[1][3] == RST_STREAM:  # our own reset ends stream 1: no answer is awaited
                c.st(1)["rst_sent"] = True
        elif kind == "WAIT":
            c.pump(lambda: False, a[1])
    t0 = time.monotonic()
    c.pump(lambda: c.done(1), 2.5)
    took = time.monotonic() - t0
    st1 = c.st(1)
    second = None
    if c.goaway is None and not c.closed:
        ok = c.send(frame(HEADERS, END_HEADERS | END_STREAM, 3,
                          encode(base(cid, path="/second-" + cid))))
        if ok:
            c.pump(lambda: c.done(3), 2.0)
        second = c.st(3)
    res = {"s1": st1, "s2": second, "goaway": c.goaway, "closed": c.closed,
           "took": round(took, 3)}
    c.close()
    return res


def run_h1(port, data, cid):
    res = D.client_exchange(port, data, b"GET /second-%s HTTP/1.1\r\nHost: t\r\n\r\n"
                            % cid.encode(), ["GET"] * 40, False)
    return res


def echo_of(st):
    for block in st["fields"]:
        for n, v in block:
            if n == "x-echo":
                return v
    return ""


def outcome(st, goaway, closed):
    finals = [s for s in st["status"] if s >= 200]
    if finals:
        return ("fwd:%d" if echo_of(st) else "hop:%d") % finals[0]
    if st["rst"] is not None:
        return "rst:" + ERR.get(st["rst"], str(st["rst"]))
    if st.get("rst_sent"):
        return "client-reset"
    if goaway:
        return "goaway:" + ERR.get(goaway[1], str(goaway[1]))
    return "closed" if closed else "timeout"


def run_case(chain, case):
    name, build, body = case
    cid = re.sub(r"[^A-Za-z0-9_.-]", "_", name) + "." + chain
    port, tls, hops, links = CHAINS[chain]
    with D.LOG.lock:
        D.LOG.case = (name, chain)
    actions = build(cid)
    flags, notes = [], []
    if actions[0][0] == "H1":
        res = run_h1(port, actions[0][1], cid)
        r = res["resps"]
        out = ("fwd:%d" if r and r[0]["echo"] else "hop:%d") % r[0]["status"] if r else \
            ("closed" if res["closed"] else "timeout")
        got2 = [x["echo"] for x in r]
        if "/second-" + cid not in got2 and not res["closed"]:
            flags.append("2ND")
        for x in r:
            if "SMUGGLED" in x["echo"]:
                flags.append("SMUGGLED-ANSWER")
        client = {"answers": got2, "raw": res["raw"][:600]}
    else:
        try:
            res = run_h2(port, tls, actions, cid)
        except OSError as e:
            res = {"s1": {"status": [], "fields": [], "body": b"", "rst": None, "end": False},
                   "s2": None, "goaway": None, "closed": True, "took": 0}
            notes.append("client: %s" % e)
        out = outcome(res["s1"], res["goaway"], res["closed"])
        s2 = res["s2"]
        if s2 is not None and echo_of(s2) != "/second-" + cid:
            flags.append("2ND")
        if out.startswith("fwd") and echo_of(res["s1"]) not in ("/first-" + cid,
                                                                 "/early-" + cid):
            notes.append("echo %s" % echo_of(res["s1"])[:60])
        client = {"s1": {k: (v.decode("latin-1")[:200] if isinstance(v, bytes) else v)
                         for k, v in res["s1"].items()},
                  "s2": s2 and {"status": s2["status"], "rst": s2["rst"], "echo": echo_of(s2)},
                  "goaway": res["goaway"], "took": res["took"]}
        if res["took"] > 2.0:
            notes.append("stream 1 took %.1fs" % res["took"])
    vic = victim(port, tls, cid, actions[0][0] == "H1")
    if vic != "/victim-" + cid:
        flags.append("VICTIM(%s)" % vic[:30])
    time.sleep(0.1)  # bytes still in flight on the links
    with D.LOG.lock:
        D.LOG.case = None
        evs = [e for e in D.LOG.events if e[0] == (name, chain)]
        raw = {ln: D.LOG.raw.get(((name, chain), ln), b"").decode("latin-1") for ln in links}
    seen = {ln: [] for ln in links}
    for _, ln, conn, kind, info in evs:
        if ln not in seen:
            continue
        if kind == "req":
            seen[ln].append({"target": info["target"], "method": info["method"],
                             "body": info["body"], "head": info["head"]})
            if "SMUGGLED" in info["target"]:
                flags.append("SMUGGLED@" + ln)
            elif cid not in info["target"] and info["target"] not in ("*", ):
                flags.append("FOREIGN@%s(%s)" % (ln, info["target"][:30]))
            if body is not None and info["target"].startswith("/first-") and \
                    ln.startswith("origin") and info["body"] != len(BODIES[body](cid)):
                flags.append("BODY@%s(%d)" % (ln, info["body"]))
        elif kind == "bad":
            flags.append("MISFRAMED@" + ln)
            notes.append("%s: %s" % (ln, info[:90]))
        elif kind == "leftover":  # a connection closed inside a request (often one before)
            notes.append("%s closed inside %s" % (ln, info[:50]))
    for ln in links:  # fields of request 1 a hop let through that it should have refused
        for r in seen[ln]:
            if r["target"].startswith("/first-") or r["target"].startswith("/early-"):
                notes.append("%s got %s" % (ln, r["head"].split("\r\n")[0][:70]))
    return {"case": name, "chain": chain, "outcome": out, "flags": sorted(set(flags)),
            "notes": notes, "client": client, "seen": seen, "links": raw}


def victim(port, tls, cid, h1):
    try:
        if h1:
            r = D.client_exchange(port, b"GET /victim-%s HTTP/1.1\r\nHost: t\r\n\r\n"
                                  % cid.encode(), b"", ["GET"], False)["resps"]
            return r[0]["echo"] if r else "no answer"
        c = H2(port, tls)
        c.send(frame(HEADERS, END_HEADERS | END_STREAM, 1,
                     encode(base(cid, path="/victim-" + cid))))
        c.pump(lambda: c.done(1), 2.0)
        e = echo_of(c.st(1))
        c.close()
        return e or "no answer"
    except OSError as e:
        return "error %s" % e

# ---------------------------------------------------------------------------------------------
# Processes and configs


def make_certs(d):
    key, crt, pem = d + "/server.key", d + "/server.crt", d + "/server.pem"
    if not os.path.exists(pem):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", crt, "-days", "30", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        with open(pem, "w") as f:
            f.write(open(crt).read() + open(key).read())
    return key, crt, pem


def write_configs(d, crt, key, pem):
    upstream = {"P2": ORIGIN["P2"], "PT": ORIGIN["PT"], "H2": ORIGIN["H2"],
                "CN": TAPS["CN"][0], "CH": TAPS["CH"][0], "P1": ORIGIN["P1"]}
    for c, port in PORTICO.items():
        mode = {"P2": " h2c", "PT": " tls", "CN": " h2c", "CH": " h2c"}.get(c, "")
        with open(os.path.join(d, "portico-%s.ini" % c), "w") as f:
            f.write(D.portico_proxy(d, c, port, mode))
            if c == "PT":
                f.write("tls_cert = %s\ntls_key = %s\n" % (crt, key))
            f.write("\n[upstream o]\norigin = %s:%d\nfirst_byte_timeout = 3s\n"
                    % (HOST, upstream[c]))
            if c == "PT":
                f.write("tls = on\nca_file = %s\nsni = localhost\n" % crt)
            f.write("\n[route r]\nprefix = /\nupstream = o\n")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(D.NGINX_HEAD % {"d": d})
        f.write("""  upstream oCN { server %(h)s:%(oCN)d; keepalive 8; }
  upstream oN2 { server %(h)s:%(oN2)d; keepalive 8; }
  server {
    listen %(h)s:%(nb)d;
    location / { proxy_pass http://oCN; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
  server {
    listen %(h)s:%(n2)d http2;
    location / { proxy_pass http://oN2; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
}
""" % {"d": d, "h": HOST, "oCN": ORIGIN["CN"], "oN2": ORIGIN["N2"], "nb": NGINX_BACK,
       "n2": NGINX_H2})
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(D.HAPROXY_HEAD)
        f.write("""frontend fH2
  bind %(h)s:%(h2c)d proto h2
  default_backend bH2
backend bH2
  server p %(h)s:%(tH2)d
frontend fHA
  bind %(h)s:%(tls)d ssl crt %(pem)s alpn h2
  default_backend bHA
backend bHA
  server o %(h)s:%(oHA)d
frontend fCH
  bind %(h)s:%(hb)d
  default_backend bCH
backend bCH
  server o %(h)s:%(oCH)d
""" % {"h": HOST, "h2c": HAPROXY_H2C, "tH2": TAPS["H2"][0], "tls": HAPROXY_TLS, "pem": pem,
       "oHA": ORIGIN["HA"], "hb": HAPROXY_BACK, "oCH": ORIGIN["CH"]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--portico", default="build/portico")
    ap.add_argument("--only", default="*", help="comma-separated globs of case names")
    ap.add_argument("--chains", default="P2,PT,H2,HA,N2,CN,CH,P1")
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "h2desync"))
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    corpus = [c for c in cases() if any(fnmatch.fnmatch(c[0], g) for g in a.only.split(","))]
    if a.list:
        print("\n".join(c[0] for c in corpus))
        return
    chains = a.chains.split(",")
    if not set(chains) <= set(CHAINS):
        sys.exit("--chains: from " + ",".join(CHAINS))
    d = os.path.abspath(a.out)
    os.makedirs(d, exist_ok=True)
    key, crt, pem = make_certs(d)
    write_configs(d, crt, key, pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    for c in chains:
        Origin(c, sctx if c == "PT" else None)
        if c in TAPS:
            D.Tap(c)
    try:
        for c in [c for c in chains if c in PORTICO]:
            D.start([a.portico, "-c", "%s/portico-%s.ini" % (d, c)],
                    "%s/portico-%s.out" % (d, c), PORTICO[c])
        if set(chains) & {"N2", "CN"}:
            D.start(["/usr/sbin/nginx", "-c", d + "/nginx.conf", "-p", d], d + "/nginx.out",
                    NGINX_H2)
        if set(chains) & {"H2", "HA", "CH"}:
            D.start(["/usr/sbin/haproxy", "-db", "-f", d + "/haproxy.cfg"], d + "/haproxy.out",
                    HAPROXY_TLS)
        results = []
        for case in corpus:
            for c in chains:
                if (c == "P1") != case[0].startswith("h1/"):
                    continue
                j = run_case(c, case)
                results.append(j)
                print("%-34s %s  %-24s %s %s" % (case[0], c, j["outcome"], " ".join(j["flags"]),
                                                 "; ".join(j["notes"])[:200]), flush=True)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        summarize(results, chains)
    finally:
        D.stop_all()


def verdict(o):
    return "fwd" if o.startswith("fwd") else o


def summarize(results, chains):
    print("\n== case group x chain: outcome counts ==")
    groups = {}
    for j in results:
        g = j["case"].split("/")[0]
        k = j["outcome"].split(":")[0] + ("+flag" if j["flags"] else "")
        groups.setdefault(g, {}).setdefault(j["chain"], {}).setdefault(k, 0)
        groups[g][j["chain"]][k] += 1
    for g in groups:
        print("%-8s " % g + "  ".join(
            "%s[%s]" % (c, ",".join("%s=%d" % kv for kv in sorted(groups[g][c].items())))
            for c in chains if c in groups[g]))
    by = {}
    for j in results:
        by.setdefault(j["case"], {})[j["chain"]] = j["outcome"]
    print("\n== first-hop verdicts (P2 Portico, HA HAProxy, N2 nginx) that differ ==")
    for case, v in by.items():
        trio = [v.get("P2"), v.get("HA"), v.get("N2")]
        if None not in trio and len(set(verdict(x).split(":")[0] for x in trio)) > 1:
            print("%-34s P2=%s HA=%s N2=%s" % (case, *trio))
    print("\n== Portico (P2) forwards, HAProxy (HA) and nginx (N2) both refuse ==")
    for case, v in by.items():
        if str(v.get("P2", "")).startswith("fwd") and v.get("HA") and v.get("N2") and \
                not v["HA"].startswith("fwd") and not v["N2"].startswith("fwd"):
            print("%-34s HA=%s N2=%s" % (case, v["HA"], v["N2"]))
    print("\n== request 1 reached Portico's origin (P2), not HAProxy's (HA) nor nginx's (N2) ==")
    reached = {}
    for j in results:
        ln = "origin-" + j["chain"]
        reached.setdefault(j["case"], {})[j["chain"]] = any(
            r["target"].startswith(("/first-", "/early-")) for r in j["seen"].get(ln, []))
    for case, v in reached.items():
        if v.get("P2") and v.get("HA") is False and v.get("N2") is False:
            print("%-34s P2=%s HA=%s N2=%s" % (case, by[case].get("P2"), by[case].get("HA"),
                                               by[case].get("N2")))
    flagged = [j for j in results if j["flags"]]
    print("\n== flagged: %d ==" % len(flagged))
    for j in flagged:
        print("%-34s %s %s" % (j["case"], j["chain"], " ".join(j["flags"])))


if __name__ == "__main__":
    main()
