#!/usr/bin/env python3
"""desync.py: HTTP/1.1 desync differential of Portico chained with real nginx and HAProxy.

Usage (by hand, not part of `make test`; loopback only, ports 18100-18199):

    TMPDIR=/tmp/smuggle python3 scripts/desync.py [--portico build/portico]
        [--only GLOB] [--chains P,A,B,C,D,N,H,T,S] [--pipeline] [--out DIR] [--list]

It starts, under $TMPDIR/desync (or --out), one worker each of:
  - five Portico instances (build/portico), nginx and HAProxy from /usr/sbin, with configs of
    its own on fixed ports 18101-18144;
  - raw-socket echo origins (one per chain) that parse every request strictly (RFC 9112),
    record its exact bytes and where each request ends, and answer with X-Echo: <target>;
  - recording taps (TCP relays) on the links between two proxies.

Chains (the client is this script, on raw sockets):
  P  client -> Portico -> origin                      (Portico alone: its own verdict)
  A  client -> nginx -> tap -> Portico -> origin
  B  client -> HAProxy -> tap -> Portico -> origin
  C  client -> Portico -> tap -> nginx -> origin
  D  client -> Portico -> tap -> HAProxy -> origin
and over TLS (not by default: --chains T,S; a certificate of its own made with openssl):
  T  TLS client -> Portico (tls listener) -> TLS origin   (Portico's upstream TLS)
  S  TLS client -> nginx (ssl) -> Portico (tls listener) -> origin
     (the TLS link between nginx and Portico has no tap: only the origin records)
The response cases (E, hostile origin answers /e/NAME) run on P, A, B, T and S, and on
  N  client -> nginx -> origin      H  client -> HAProxy -> origin
(the back proxies of C and D), which give nginx's and HAProxy's own verdicts on a response.

Each case sends an ambiguous request 1 (a smuggled request, target /SMUGGLED-<case>, hides in
its body where RFC 9112 frames it), then a benign GET /second-<case> on the same connection
(after request 1's answer, or in the same write with --pipeline; "dribble/" cases send request
1 a byte at a time), then a victim GET /victim-<case> on a new connection. Every link (tap or
origin) runs the strict reference parser over what it receives. Outcomes:
  ok / ok,closed request 1 answered by the origin (then the hop closed the connection)
  refused:HOP:N  HOP answered request 1 itself with status N; nothing past HOP saw it
  timeout        no answer to request 1 within the wait (a hop waits for more body)
  closed-silent  the connection closed with no complete answer
and flags:
  SPLIT@HOP      the first hop read the hidden request as a request (its own reading of the
                 client's bytes, where RFC 9112's strict reading keeps it in the body)
  DESYNC:X->Y    hop Y read a request in what hop X sent as a body: two hops disagree
  RESP-DESYNC    the client's Nth answer is not its Nth request's (X-Echo differs)
  VICTIM         the victim got an answer that is not its own
  MISFRAMED@LINK a link's bytes are not strict HTTP/1.1 (the hop before it emitted them)
  EVIL           (E) the origin's stray bytes reached the client as an answer to a later request
The summary also lists each case's first-hop verdicts (Portico from P, nginx from A, HAProxy
from B) and the cases Portico forwards while nginx and HAProxy both refuse them.
Results: a table on stdout and DIR/results.json with every link's bytes per case.
"""
import argparse
import fnmatch
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
ORIGIN_PORT = {"P": 18101, "A": 18102, "B": 18103, "C": 18104, "D": 18105, "T": 18106,
               "S": 18107}
PORTICO_PORT = {"P": 18110, "A": 18111, "B": 18112, "C": 18113, "D": 18114, "T": 18115,
                "S": 18116}
NGINX_FRONT, NGINX_BACK, NGINX_TLS = 18120, 18121, 18122
HAPROXY_FRONT, HAPROXY_BACK = 18130, 18131
TAP = {"A": (18141, PORTICO_PORT["A"]), "B": (18142, PORTICO_PORT["B"]),
       "C": (18143, NGINX_BACK), "D": (18144, HAPROXY_BACK)}
CHAINS = {
    # name: (client port, hops, links) ; link i holds what hop i emitted
    "P": (PORTICO_PORT["P"], ["portico"], ["origin-P"]),
    "A": (NGINX_FRONT, ["nginx", "portico"], ["tap-A", "origin-A"]),
    "B": (HAPROXY_FRONT, ["haproxy", "portico"], ["tap-B", "origin-B"]),
    "C": (PORTICO_PORT["C"], ["portico", "nginx"], ["tap-C", "origin-C"]),
    "D": (PORTICO_PORT["D"], ["portico", "haproxy"], ["tap-D", "origin-D"]),
    # the back proxies of C and D straight to the hostile origin: their own response verdicts
    "N": (NGINX_BACK, ["nginx"], ["origin-C"]),
    "H": (HAPROXY_BACK, ["haproxy"], ["origin-D"]),
    "T": (PORTICO_PORT["T"], ["portico"], ["origin-T"]),
    "S": (NGINX_TLS, ["nginx", "portico"], ["origin-S"]),
}
TLS_PORTS = {PORTICO_PORT["T"], NGINX_TLS}  # the client speaks TLS to these
TLS = {}  # "client": the client's SSLContext, "origin": origin T's (set up by main)

# ---------------------------------------------------------------------------------------------
# Strict reference parser (RFC 9112): where a message ends, or why it is not HTTP/1.1.

TCHAR = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
HEX = set(b"0123456789abcdefABCDEF")


class Need(Exception):
    pass


class Bad(Exception):
    pass


def field_ok(value):
    return all(c == 9 or 32 <= c <= 126 or c >= 128 for c in value)


def parse_head(buf, pos):
    """-> (start-line, [(lname, value)], end) of the head at pos; raises Need or Bad."""
    while buf.startswith(b"\r\n", pos):
        pos += 2
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        lf = buf.find(b"\n", pos)
        if lf >= 0 and (lf == pos or buf[lf - 1] != 13):
            raise Bad("bare LF at %d" % lf)
        if len(buf) - pos > 65536:
            raise Bad("head too large")
        raise Need()
    lines = buf[pos:end].split(b"\r\n")
    for ln in lines:
        if b"\r" in ln or b"\n" in ln:
            raise Bad("bare CR or LF in %r" % ln[:60])
    fields = []
    for ln in lines[1:]:
        colon = ln.find(b":")
        name = ln[:colon]
        if colon <= 0 or not all(c in TCHAR for c in name):
            raise Bad("bad field line %r" % ln[:60])
        value = ln[colon + 1:].strip(b" \t")
        if not field_ok(value):
            raise Bad("control in value %r" % ln[:60])
        fields.append((name.lower(), value))
    return lines[0], fields, end + 4


def body_framing(fields, minor, request):
    cls = [v for n, v in fields if n == b"content-length"]
    tes = [v for n, v in fields if n == b"transfer-encoding"]
    if tes:
        if cls:
            raise Bad("CL and TE")
        # empty list elements are ignored (RFC 9110 5.6.1)
        codings = [c.strip(b" \t").lower() for v in tes for c in v.split(b",")
                   if c.strip(b" \t")]
        if not codings:
            raise Bad("empty TE")
        if minor == 0 or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            if request or codings.count(b"chunked") > 1:
                raise Bad("TE %r" % tes)
            return ("close", 0)
        if len(codings) > 1:
            raise Bad("TE %r" % tes)
        return ("chunked", 0)
    if cls:
        vals = set()
        for v in cls:
            for e in v.split(b","):
                e = e.strip(b" \t")
                if not e.isdigit() or not e.isascii():
                    raise Bad("CL %r" % v)
                vals.add(int(e))
        if len(vals) != 1:
            raise Bad("CL %r" % cls)
        return ("length", vals.pop())
    return ("none", 0) if request else ("close", 0)


def parse_chunked(buf, pos):
    """-> (data, end) of a chunked body at pos."""
    data = b""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if b"\n" in buf[pos:] or len(buf) - pos > 4096:
                raise Bad("chunk line")
            raise Need()
        line = buf[pos:eol]
        size, _, ext = line.partition(b";")
        if not size or not all(c in HEX for c in size) or len(size) > 15:
            raise Bad("chunk size %r" % line[:40])
        if b"\r" in line or b"\n" in line or (ext and not field_ok(ext)):
            raise Bad("chunk ext %r" % line[:40])
        n = int(size, 16)
        pos = eol + 2
        if n == 0:
            while True:  # trailer section
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    raise Need()
                if eol == pos:
                    return data, eol + 2
                ln = buf[pos:eol]
                colon = ln.find(b":")
                if colon <= 0 or not all(c in TCHAR for c in ln[:colon]) or \
                        b"\n" in ln or b"\r" in ln or not field_ok(ln[colon + 1:]):
                    raise Bad("trailer %r" % ln[:40])
                pos = eol + 2
        if len(buf) < pos + n + 2:
            raise Need()
        if buf[pos + n:pos + n + 2] != b"\r\n":
            raise Bad("no CRLF after chunk data")
        data += buf[pos:pos + n]
        pos += n + 2


REQ_LINE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)$")


def parse_request(buf, pos):
    """-> dict(method, target, minor, fields, body, start, head_end, end); Need or Bad."""
    line, fields, head_end = parse_head(buf, pos)
    m = REQ_LINE.match(line)
    if not m:
        raise Bad("request line %r" % line[:80])
    minor = int(m.group(4))
    if m.group(3) != b"1" or minor > 1:
        raise Bad("version %r" % line[:80])
    hosts = [v for n, v in fields if n == b"host"]
    if (minor == 1 and len(hosts) != 1) or len(hosts) > 1:
        raise Bad("Host fields %r" % hosts)
    kind, n = body_framing(fields, minor, True)
    if kind == "length":
        if len(buf) < head_end + n:
            raise Need()
        body, end = buf[head_end:head_end + n], head_end + n
    elif kind == "chunked":
        body, end = parse_chunked(buf, head_end)
    else:
        body, end = b"", head_end
    return {"method": m.group(1).decode(), "target": m.group(2).decode("latin-1"),
            "minor": minor, "fields": fields, "body": body, "start": pos,
            "head_end": head_end, "end": end}


def parse_responses(buf, methods, closed):
    """Client side: the responses in buf, in order; methods[i] is the ith request's method.
    -> (list of dict(status, echo, interim, body), error or None)."""
    out, pos, err = [], 0, None
    while pos < len(buf):
        method = methods[len(out)] if len(out) < len(methods) else "GET"
        try:
            line, fields, head_end = parse_head(buf, pos)
        except Need:
            break
        except Bad as e:
            err = "unparsable response: %s" % e
            break
        m = re.match(rb"^HTTP/1\.([01]) (\d\d\d)(?: .*)?$", line)
        if not m:
            err = "bad status line %r" % line[:60]
            break
        status = int(m.group(2))
        hdr = dict(fields)
        if status < 200:
            pos = head_end
            continue
        try:
            if method == "HEAD" or status in (204, 304):
                kind, n = "none", 0
            else:
                kind, n = body_framing(fields, int(m.group(1)), False)
            if kind == "length":
                if len(buf) < head_end + n:
                    raise Need()
                body, end = buf[head_end:head_end + n], head_end + n
            elif kind == "chunked":
                body, end = parse_chunked(buf, head_end)
            elif kind == "close":
                if not closed:
                    raise Need()
                body, end = buf[head_end:], len(buf)
            else:
                body, end = b"", head_end
        except Need:
            break
        except Bad as e:
            err = "bad response body: %s" % e
            break
        out.append({"status": status, "echo": hdr.get(b"x-echo", b"").decode("latin-1"),
                    "server": hdr.get(b"server", b"").decode("latin-1"),
                    "close": b"close" in hdr.get(b"connection", b"").lower(),
                    "body": body[:120].decode("latin-1")})
        pos = end
    return out, err

# ---------------------------------------------------------------------------------------------
# Recording: every link parses what it receives; events are tagged with the case running.


class Log:
    def __init__(self):
        self.lock = threading.Lock()
        self.case = None
        self.events = []  # (case, link, conn, kind, info)
        self.raw = {}     # (case, link) -> bytes in
        self.next_conn = 0

    def conn_id(self):
        with self.lock:
            self.next_conn += 1
            return self.next_conn

    def add(self, link, conn, kind, info):
        with self.lock:
            self.events.append((self.case, link, conn, kind, info))

    def bytes_in(self, link, conn, data):
        with self.lock:
            key = (self.case, link)
            self.raw[key] = self.raw.get(key, b"") + (b"<conn %d>" % conn) + data


LOG = Log()


class LinkParser:
    """Incremental strict parse of one connection's stream on a link."""

    def __init__(self, link, conn):
        self.link, self.conn, self.buf, self.pos, self.dead = link, conn, b"", 0, False

    def feed(self, data):
        """-> list of parsed requests now complete; on a bad stream records it once."""
        LOG.bytes_in(self.link, self.conn, data)
        self.buf += data
        done = []
        while not self.dead and self.pos < len(self.buf):
            try:
                r = parse_request(self.buf, self.pos)
            except Need:
                break
            except Bad as e:
                self.dead = True
                LOG.add(self.link, self.conn, "bad",
                        "%s; at: %r" % (e, self.buf[self.pos:self.pos + 80]))
                break
            self.pos = r["end"]
            LOG.add(self.link, self.conn, "req",
                    {"method": r["method"], "target": r["target"], "body": len(r["body"]),
                     "head": self.buf[r["start"]:r["head_end"]].decode("latin-1")})
            done.append(r)
        return done

    def close(self):
        if not self.dead and self.pos < len(self.buf):
            LOG.add(self.link, self.conn, "leftover", repr(self.buf[self.pos:self.pos + 80]))


def serve(port, handler):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))
    ls.listen(64)

    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def evil(case_id):
    body = b"EVIL-" + case_id.encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Echo: EVIL-%s\r\n\r\n%s"
            % (len(body), case_id.encode(), body))


def e_script(name, cid):
    """Response bytes (list of (delay_s, bytes)) and close-after flag for /e/NAME/cid."""
    E = evil(cid)
    ok = b"HTTP/1.1 200 OK\r\nX-Echo: /e/%s/%s\r\n" % (name.encode(), cid.encode())
    scripts = {
        "cl_te": [ok + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                  % (5 + len(E)) + E],
        "te_cl": [ok + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + E],
        "two_cl": [ok + b"Content-Length: 4\r\nContent-Length: %d\r\n\r\nabcd" % (4 + len(E))
                   + E],
        "cl_list": [ok + b"Content-Length: 4, %d\r\n\r\nabcd" % (4 + len(E)) + E],
        "cl_plus": [ok + b"Content-Length: +4\r\n\r\nabcd" + E],
        "te_obf": [ok + b"Transfer-Encoding: chunked \x0b\r\nContent-Length: %d\r\n\r\n0\r\n\r\n"
                   % (5 + len(E)) + E],
        "te_http10": [b"HTTP/1.0 200 OK\r\nX-Echo: /e/te_http10\r\nTransfer-Encoding: chunked"
                      b"\r\n\r\n0\r\n\r\n" + E],
        "interim_body": [b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(E) + E + ok
                         + b"Content-Length: 2\r\n\r\nok"],
        "interim_bytes": [b"HTTP/1.1 100 Continue\r\n\r\nGARBAGE\r\n" + ok
                          + b"Content-Length: 2\r\n\r\nok"],
        "s204_body": [b"HTTP/1.1 204 No Content\r\nX-Echo: /e/s204\r\nContent-Length: %d\r\n\r\n"
                      % len(E) + E],
        "s204_body_late": [b"HTTP/1.1 204 No Content\r\nX-Echo: /e/s204\r\n\r\n", (0.03, E)],
        "s304_body": [b"HTTP/1.1 304 Not Modified\r\nX-Echo: /e/s304\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(E) + E],
        "head_body": [ok + b"Content-Length: %d\r\n\r\n" % len(E) + E],
        "trailer_fold": [ok + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                         b"X-T: a\r\n folded: x\r\n\r\n" + E],
        "longer_than_cl": [ok + b"Content-Length: 5\r\n\r\nhello" + E],
        "longer_than_cl_late": [ok + b"Content-Length: 5\r\n\r\nhello", (0.03, E)],
        "bare_lf_head": [ok.replace(b"\r\n", b"\n") + b"Content-Length: 5\n\nhello" + E],
        "fold_head": [ok + b"X-F: a\r\n Content-Length: 99\r\nContent-Length: 5\r\n\r\nhello"
                      + E],
        "chunk_overflow": [ok + b"Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello"
                           b"\r\n0\r\n\r\n" + E],
        "bad_chunk_crlf": [ok + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + E],
        "trailers": [ok + b"Transfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\n"
                     b"Set-Cookie: a=1\r\nX-A-Trailer-Name-Longer-Than-32-Bytes-Kept: v\r\n"
                     b"Content-Length: 5\r\nServer-Timing: x\r\n"
                     b"Transfer-Encoding-But-Longer-Than-32-Bytes-X: v\r\n\r\n"],
        "chunked_many": [ok + b"Transfer-Encoding: chunked\r\n\r\n"
                         + b"".join(b"%x\r\n%s\r\n" % (n, b"x" * n) for n in range(1, 20))
                         + b"0\r\n\r\n"],
        "unsolicited_101": [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n\r\n" + E],
        "head_chunked": [ok + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + E],
        "s304_chunked": [b"HTTP/1.1 304 Not Modified\r\nX-Echo: /e/s304\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                         % (len(E), E)],
        "http10_keepalive": [b"HTTP/1.0 200 OK\r\nX-Echo: /e/http10_keepalive\r\n"
                             b"Connection: keep-alive\r\n\r\n" + E],
        "short_body": [ok + b"Content-Length: 100\r\n\r\nonly ten b"],
        "interim_then_ok": [b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                            b"HTTP/1.1 100 Continue\r\n\r\n" + ok + b"Content-Length: 2\r\n\r\nok"],
    }
    if name.endswith("_dribble"):  # the same bytes one at a time
        steps, close = e_script(name[:-len("_dribble")], cid)
        data = b"".join(x[1] if isinstance(x, tuple) else x for x in steps)
        return [(0.001, data[i:i + 1]) for i in range(len(data))], close
    return scripts[name], True


class Origin:
    """Echo origin: parses strictly, answers X-Echo: <target>; /e/NAME/ID runs e_script."""

    def __init__(self, chain):
        self.link = "origin-" + chain
        serve(ORIGIN_PORT[chain], self.handle_tls if chain == "T" else self.handle)

    def handle_tls(self, c):
        try:
            c.settimeout(5)
            c = TLS["origin"].wrap_socket(c, server_side=True)
            c.settimeout(None)
        except OSError:
            c.close()
            return
        self.handle(c)

    def handle(self, c):
        conn = LOG.conn_id()
        p = LinkParser(self.link, conn)
        continued = set()
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                for r in p.feed(data):
                    if not self.answer(c, r):
                        return
                if p.dead:
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nX-Echo: ORIGIN-400\r\n"
                              b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                # 100 Continue for a head whose body has not all come
                try:
                    parse_request(p.buf, p.pos)
                except Need:
                    try:
                        _, f, _ = parse_head(p.buf, p.pos)
                        if (b"expect", b"100-continue") in f and p.pos not in continued:
                            continued.add(p.pos)
                            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    except (Need, Bad):
                        pass
                except Bad:
                    pass
        except OSError:
            pass
        finally:
            p.close()
            c.close()

    def answer(self, c, r):
        t = r["target"]
        m = re.match(r"^/e/([a-z0-9_]+)/([A-Za-z0-9_.-]+)", t)
        if m:
            steps, close = e_script(m.group(1), m.group(2))
            for s in steps:
                if isinstance(s, tuple):
                    time.sleep(s[0])
                    s = s[1]
                c.sendall(s)
            return not close
        body = ("echo %s %s body=%d\n" % (r["method"], t, len(r["body"]))).encode()
        close = any(n == b"connection" and b"close" in v.lower() for n, v in r["fields"])
        head = ("HTTP/1.1 200 OK\r\nX-Echo: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (t, len(body), "Connection: close\r\n" if close else "")).encode()
        c.sendall(head + (b"" if r["method"] == "HEAD" else body))
        return not close


class Tap:
    """TCP relay that records (and strictly parses) what the hop before it sends."""

    def __init__(self, chain):
        self.link = "tap-" + chain
        self.port, self.to = TAP[chain]
        serve(self.port, self.handle)

    def handle(self, c):
        conn = LOG.conn_id()
        p = LinkParser(self.link, conn)
        try:
            u = socket.create_connection((HOST, self.to))
        except OSError:
            c.close()
            return

        def down():
            try:
                while True:
                    d = u.recv(65536)
                    if not d:
                        break
                    LOG.bytes_in(self.link + "<", conn, d)
                    c.sendall(d)
            except OSError:
                pass
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        threading.Thread(target=down, daemon=True).start()
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                p.feed(d)
                u.sendall(d)
        except OSError:
            pass
        finally:
            p.close()
            try:
                u.shutdown(socket.SHUT_WR)
            except OSError:
                pass

# ---------------------------------------------------------------------------------------------
# The corpus. {S} is a complete smuggled request; {id} the case id.


def smug(cid):
    return b"GET /SMUGGLED-%s HTTP/1.1\r\nHost: t\r\n\r\n" % cid.encode()


def piped(cid, k=0, body=None, chunked=False):
    """A request the client does send as one, pipelined after request 1 (the kth)."""
    if body is None:
        return b"GET /pipelined-%s/%d HTTP/1.1\r\nHost: t\r\n\r\n" % (cid.encode(), k)
    if chunked:
        return (b"POST /pipelined-%s/%d HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (cid.encode(), k, len(body), body))
    return (b"POST /pipelined-%s/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
            % (cid.encode(), k, len(body), body))


def req(cid, head_lines, body=b"", method=b"POST", version=b"HTTP/1.1", eol=b"\r\n",
        target=None):
    t = target if target is not None else b"/first-" + cid.encode()
    line = method + b" " + t + b" " + version if version else method + b" " + t
    return line + eol + b"".join(h + eol for h in head_lines) + eol + body


def te_cl_body(cid):
    """Body for TE.CL: chunked reading ends after the smuggled request; CL=4 reading ends
    after the chunk-size line, the rest being the smuggled request."""
    s = smug(cid)
    chunk = b"%x\r\n" % len(s)
    return chunk, chunk + s + b"\r\n0\r\n\r\n"


def cases():
    out = []

    def add(name, build, note="", method="POST"):
        out.append((name, build, note, method))

    def add_piped(name, build, method="GET", n=1):
        """Request 1 is followed by n real pipelined requests (/pipelined-ID/K) in its write."""
        out.append((name, build, "piped:%d" % n, method))

    def cl_te(te_lines):
        def b(cid):
            body = b"0\r\n\r\n" + smug(cid)
            return req(cid, [b"Host: t", b"Content-Length: %d" % len(body)] + te_lines, body)
        return b

    def te_cl(te_lines):
        def b(cid):
            chunk, body = te_cl_body(cid)
            return req(cid, [b"Host: t", b"Content-Length: %d" % len(chunk)] + te_lines, body)
        return b

    def te_only(te_lines):
        def b(cid):
            s = smug(cid)  # inside the chunk: a hop that ignores the TE forwards it raw
            return req(cid, [b"Host: t"] + te_lines, b"%x\r\n%s\r\n0\r\n\r\n" % (len(s), s))
        return b

    te_variants = {
        "plain": [b"Transfer-Encoding: chunked"],
        "case": [b"Transfer-Encoding: ChUnKeD"],
        "space": [b"Transfer-Encoding:   chunked  "],
        "tab": [b"Transfer-Encoding:\tchunked"],
        "vtab": [b"Transfer-Encoding: \x0bchunked"],
        "vtab_after": [b"Transfer-Encoding: chunked\x0b"],
        "comma_lead": [b"Transfer-Encoding: ,chunked"],
        "comma_trail": [b"Transfer-Encoding: chunked,"],
        "quoted": [b'Transfer-Encoding: "chunked"'],
        "identity_chunked": [b"Transfer-Encoding: identity, chunked"],
        "chunked_identity": [b"Transfer-Encoding: chunked, identity"],
        "two_fields": [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"],
        "two_fields_rev": [b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"],
        "chunked_twice": [b"Transfer-Encoding: chunked, chunked"],
        "xchunked": [b"Transfer-Encoding: xchunked"],
        "underscore": [b"Transfer_Encoding: chunked"],
        "space_colon": [b"Transfer-Encoding : chunked"],
        "fold": [b"X-A: a", b" Transfer-Encoding: chunked"],
        "fold_value": [b"Transfer-Encoding:", b" chunked"],
        "lf_inside": [b"X-A: a\nTransfer-Encoding: chunked"],
        "cr_inside": [b"X-A: a\rTransfer-Encoding: chunked"],
        "nul_value": [b"Transfer-Encoding: chunked\x00"],
    }
    for v, lines in te_variants.items():
        add("cl.te/" + v, cl_te(lines))
        add("te.cl/" + v, te_cl(lines))
        if v != "plain":
            add("te-only/" + v, te_only(lines))
    add("te-only/plain", te_only([b"Transfer-Encoding: chunked"]))

    def te10(cid):
        body = b"0\r\n\r\n" + smug(cid)
        return req(cid, [b"Host: t", b"Content-Length: %d" % len(body),
                         b"Transfer-Encoding: chunked"], body, version=b"HTTP/1.0")
    add("te/http1.0+cl", te10)
    add("te/http1.0", lambda cid: req(cid, [b"Host: t", b"Transfer-Encoding: chunked"],
                                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(smug(cid)), smug(cid)),
                                      version=b"HTTP/1.0"))

    # Content-Length: the body is the smuggled request; a hop that reads no body sends it on.
    def cl(values):
        def b(cid):
            s = smug(cid)
            lines = [b"Content-Length: " + v.replace(b"%d", b"%d" % len(s))
                     .replace(b"%x", b"%x" % len(s)) for v in values]
            return req(cid, [b"Host: t"] + lines, s)
        return b
    cl_variants = {
        "plain": [b"%d"], "plus": [b"+%d"], "zeros": [b"000%d"], "spaces": [b"  %d  "],
        "list_same": [b"%d, %d"], "list_diff": [b"0, %d"], "two_same": [b"%d", b"%d"],
        "two_diff": [b"0", b"%d"], "two_diff_rev": [b"%d", b"0"],
        "huge": [b"99999999999999999999999"], "wrap64": [b"18446744073709551616"],
        "wrap64_plus": [b"18446744073709551653"], "negative": [b"-%d"], "hex": [b"0x%x"],
        "trailing_junk": [b"%da"], "empty": [b""], "decimal": [b"%d.0"],
    }
    for v, vals in cl_variants.items():
        add("cl/" + v, cl(vals))
    add("cl/space_colon", lambda cid: req(cid, [b"Host: t", b"Content-Length : %d"
                                                % len(smug(cid))], smug(cid)))
    add("cl/fold", lambda cid: req(cid, [b"Host: t", b"X-A: a", b" Content-Length: %d"
                                         % len(smug(cid))], smug(cid)))

    # chunk sizes and extensions
    def chunked(body_of):
        return lambda cid: req(cid, [b"Host: t", b"Transfer-Encoding: chunked"], body_of(cid))
    chunk_variants = {
        "zeros": lambda cid: b"0000000005\r\nhello\r\n0\r\n\r\n",
        "0x": lambda cid: b"0x5\r\nhello\r\n0\r\n\r\n",
        "overflow": lambda cid: b"10000000000000005\r\nhello\r\n0\r\n\r\n" + smug(cid),
        "overflow_zero": lambda cid: b"10000000000000000\r\n\r\n" + smug(cid),
        "negative": lambda cid: b"-5\r\nhello\r\n0\r\n\r\n",
        "space_size": lambda cid: b"5 \r\nhello\r\n0\r\n\r\n",
        "ext_plain": lambda cid: b"5;a=b\r\nhello\r\n0\r\n\r\n",
        "ext_bare_lf": lambda cid: (b"5;a\nXX\r\nhello\r\n0\r\n\r\n"),
        "ext_bare_lf_smug": lambda cid: (b"2;\nxx\r\n%x\r\n0\r\n\r\n%s\r\n0\r\n\r\n"
                                         % (len(smug(cid)) + 7, smug(cid))),
        "ext_quote": lambda cid: b'5;a="x;y"\r\nhello\r\n0\r\n\r\n',
        "ext_quote_crlf": lambda cid: (b'5;a="x\r\n0\r\n\r\n' + smug(cid)
                                       + b'"\r\nhello\r\n0\r\n\r\n'),
        "ext_bare_cr": lambda cid: b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        "size_bare_lf": lambda cid: b"5\nhello\r\n0\r\n\r\n",
        "data_bare_lf": lambda cid: b"5\r\nhello\n0\r\n\r\n",
        "no_crlf_after": lambda cid: b"5\r\nhelloXX0\r\n\r\n",
        "last_bare_lf": lambda cid: b"5\r\nhello\r\n0\n\n" + smug(cid),
        "trailer_fold": lambda cid: b"5\r\nhello\r\n0\r\nX-T: a\r\n folded\r\n\r\n",
        "trailer_te": lambda cid: b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "trailer_bare_lf": lambda cid: b"5\r\nhello\r\n0\r\nX-T: a\n\r\n" + smug(cid),
        "upper_hex": lambda cid: b"A\r\n0123456789\r\n0\r\n\r\n",
    }
    for v, f in chunk_variants.items():
        add("chunk/" + v, chunked(f))

    # line endings, folding, whitespace, controls
    add("eol/bare_lf_all", lambda cid: req(cid, [b"Host: t"], method=b"GET", eol=b"\n"),
        method="GET")
    add("eol/bare_lf_reqline", lambda cid: b"GET /first-%s HTTP/1.1\nHost: t\r\n\r\n"
        % cid.encode(), method="GET")
    add("eol/bare_lf_field", lambda cid: b"GET /first-%s HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n"
        % cid.encode(), method="GET")
    add("eol/bare_lf_end", lambda cid: b"GET /first-%s HTTP/1.1\r\nHost: t\r\n\n"
        % cid.encode(), method="GET")
    add("eol/bare_cr_field", lambda cid: b"GET /first-%s HTTP/1.1\r\nHost: t\rX-A: b\r\n\r\n"
        % cid.encode(), method="GET")
    add("eol/bare_cr_value", lambda cid: b"GET /first-%s HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"
        % cid.encode(), method="GET")
    add("eol/bare_cr_end", lambda cid: b"GET /first-%s HTTP/1.1\r\nHost: t\r\n\r" % cid.encode(),
        method="GET")
    add("eol/lf_cl_smug", lambda cid: b"POST /first-%s HTTP/1.1\r\nHost: t\r\nX-A: a\n"
        b"Content-Length: %d\r\n\r\n%s" % (cid.encode(), len(smug(cid)), smug(cid)))
    add("fold/plain", lambda cid: req(cid, [b"Host: t", b"X-A: a", b" b"], method=b"GET"),
        method="GET")
    add("fold/tab", lambda cid: req(cid, [b"Host: t", b"X-A: a", b"\tb"], method=b"GET"),
        method="GET")
    add("fold/first_line", lambda cid: req(cid, [b" X-A: a", b"Host: t"], method=b"GET"),
        method="GET")
    add("ws/before_colon", lambda cid: req(cid, [b"Host: t", b"X-A : a"], method=b"GET"),
        method="GET")
    add("ws/tab_before_colon", lambda cid: req(cid, [b"Host: t", b"X-A\t: a"], method=b"GET"),
        method="GET")
    add("ws/host_before_colon", lambda cid: req(cid, [b"Host : t"], method=b"GET"),
        method="GET")
    for nm, byte in (("nul", b"\x00"), ("soh", b"\x01"), ("vt", b"\x0b"), ("ff", b"\x0c"),
                     ("del", b"\x7f"), ("esc", b"\x1b")):
        add("ctl/value_" + nm, (lambda bb: lambda cid: req(
            cid, [b"Host: t", b"X-A: a" + bb + b"b"], method=b"GET"))(byte), method="GET")
        add("ctl/name_" + nm, (lambda bb: lambda cid: req(
            cid, [b"Host: t", b"X-A" + bb + b"B: b"], method=b"GET"))(byte), method="GET")
    add("ctl/name_space", lambda cid: req(cid, [b"Host: t", b"X A: b"], method=b"GET"),
        method="GET")
    add("ctl/value_hi8", lambda cid: req(cid, [b"Host: t", b"X-A: caf\xe9"], method=b"GET"),
        method="GET")
    add("ctl/empty_name", lambda cid: req(cid, [b"Host: t", b": b"], method=b"GET"),
        method="GET")

    # request lines
    def raw_line(line):
        return lambda cid: line.replace(b"{T}", b"/first-" + cid.encode()) + \
            b"\r\nHost: t\r\n\r\n"
    for nm, line in (("two_spaces", b"GET  {T} HTTP/1.1"), ("two_spaces_2", b"GET {T}  HTTP/1.1"),
                     ("tab", b"GET\t{T} HTTP/1.1"), ("trailing_space", b"GET {T} HTTP/1.1 "),
                     ("lower_method", b"get {T} HTTP/1.1"), ("http09", b"GET {T}"),
                     ("http2_version", b"GET {T} HTTP/2.0"), ("http12", b"GET {T} HTTP/1.2"),
                     ("lower_version", b"GET {T} http/1.1"),
                     ("leading_space", b" GET {T} HTTP/1.1"),
                     ("abs_mismatch", b"GET http://other{T} HTTP/1.1"),
                     ("abs_https", b"GET https://t{T} HTTP/1.1"),
                     ("asterisk_get", b"GET * HTTP/1.1"),
                     ("nul_target", b"GET {T}\x00x HTTP/1.1"),
                     ("space_in_target", b"GET {T} x HTTP/1.1"),
                     ("fragment", b"GET {T}#x HTTP/1.1"),
                     ("method_slash", b"G/T {T} HTTP/1.1")):
        add("line/" + nm, raw_line(line), method="GET")
    add("line/leading_crlf", lambda cid: b"\r\n\r\nGET /first-%s HTTP/1.1\r\nHost: t\r\n\r\n"
        % cid.encode(), method="GET")
    add("host/two", lambda cid: req(cid, [b"Host: t", b"Host: u"], method=b"GET"), method="GET")
    add("host/two_same", lambda cid: req(cid, [b"Host: t", b"host: t"], method=b"GET"),
        method="GET")
    add("host/none_11", lambda cid: req(cid, [b"X-A: b"], method=b"GET"), method="GET")
    add("host/none_10", lambda cid: req(cid, [b"X-A: b"], method=b"GET", version=b"HTTP/1.0"),
        method="GET")
    add("host/list", lambda cid: req(cid, [b"Host: t, u"], method=b"GET"), method="GET")
    add("host/userinfo", lambda cid: req(cid, [b"Host: a@t"], method=b"GET"), method="GET")
    add("host/abs_userinfo", raw_line(b"GET http://a@t{T} HTTP/1.1"), method="GET")

    # Expect, pipelining, Connection: close, Upgrade
    add("expect/early_data", lambda cid: req(
        cid, [b"Host: t", b"Expect: 100-continue", b"Content-Length: 5"], b"hello"))
    add("expect/early_smug", lambda cid: req(
        cid, [b"Host: t", b"Expect: 100-continue", b"Content-Length: %d" % len(smug(cid))],
        smug(cid)))
    add_piped("expect/cl0_piped", lambda cid: req(
        cid, [b"Host: t", b"Expect: 100-continue", b"Content-Length: 0"], b"") + piped(cid),
        method="POST")
    add("expect/other", lambda cid: req(cid, [b"Host: t", b"Expect: 100-continuex",
                                              b"Content-Length: 5"], b"hello"))
    add("get_body/cl", lambda cid: req(cid, [b"Host: t", b"Content-Length: %d"
                                             % len(smug(cid))], smug(cid), method=b"GET"),
        method="GET")
    add_piped("get_body/pipelined", lambda cid: req(cid, [b"Host: t", b"Content-Length: 5"],
                                                    b"hello", method=b"GET") + piped(cid))
    add("get_body/chunked", lambda cid: req(cid, [b"Host: t", b"Transfer-Encoding: chunked"],
                                            b"5\r\nhello\r\n0\r\n\r\n", method=b"GET"),
        method="GET")
    add("head_body/cl", lambda cid: req(cid, [b"Host: t", b"Content-Length: %d"
                                              % len(smug(cid))], smug(cid), method=b"HEAD"),
        method="HEAD")
    add("close/trailing", lambda cid: req(cid, [b"Host: t", b"Connection: close"],
                                          method=b"GET") + smug(cid), method="GET")
    add("close/http10_trailing", lambda cid: req(cid, [b"Host: t"], method=b"GET",
                                                 version=b"HTTP/1.0") + smug(cid), method="GET")
    add_piped("upgrade/h2c", lambda cid: req(
        cid, [b"Host: t", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
              b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"], method=b"GET") + piped(cid))
    add_piped("upgrade/websocket_no_key", lambda cid: req(
        cid, [b"Host: t", b"Connection: Upgrade", b"Upgrade: websocket"], method=b"GET")
        + piped(cid))
    add("upgrade/h2_preface", lambda cid: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", method="GET")
    add("conn/te_hop", lambda cid: req(cid, [b"Host: t", b"Connection: Content-Length",
                                             b"Content-Length: %d" % len(smug(cid))], smug(cid)))
    add("conn/host_hop", lambda cid: req(cid, [b"Host: t", b"Connection: Host"], method=b"GET"),
        method="GET")
    # Answers Portico gives itself while a body is still coming: the body must be read and
    # dropped (or the connection closed), never parsed as the next request.
    def self_answer(target, head, chunked=False, method=b"POST"):
        def b(cid):
            s = smug(cid)
            t = target.replace(b"{T}", b"/first-" + cid.encode())
            if chunked:
                return req(cid, [b"Host: t"] + head + [b"Transfer-Encoding: chunked"],
                           b"%x\r\n%s\r\n0\r\n\r\n" % (len(s), s), method=method, target=t)
            return req(cid, [b"Host: t"] + head + [b"Content-Length: %d" % len(s)], s,
                       method=method, target=t)
        return b
    mf0 = [b"Max-Forwards: 0"]
    exp = [b"Expect: 100-continue"]
    for nm, args in (
            ("options_mf0_cl", (b"{T}", mf0, False, b"OPTIONS")),
            ("options_mf0_chunked", (b"{T}", mf0, True, b"OPTIONS")),
            ("options_mf0_expect", (b"{T}", mf0 + exp, False, b"OPTIONS")),
            ("options_mf0_expect_chunked", (b"{T}", mf0 + exp, True, b"OPTIONS")),
            ("trace_mf0_cl", (b"{T}", mf0, False, b"TRACE")),
            ("trace_mf00_chunked", (b"{T}", [b"Max-Forwards: 00"], True, b"TRACE")),
            ("noroute_cl", (b"/nr{T}", [], False, b"POST")),
            ("noroute_chunked", (b"/nr{T}", [], True, b"POST")),
            ("noroute_expect", (b"/nr{T}", exp, False, b"POST")),
            ("noroute_expect_chunked", (b"/nr{T}", exp, True, b"POST")),
            ("fault_cl", (b"/fault{T}", [], False, b"POST")),
            ("fault_chunked", (b"/fault{T}", [], True, b"POST")),
            ("fault_expect", (b"/fault{T}", exp, False, b"POST")),
            ("expect_other_cl", (b"{T}", [b"Expect: magic"], False, b"POST")),
            ("expect_other_chunked", (b"{T}", [b"Expect: magic"], True, b"POST")),
            ("via_loop_cl", (b"{T}", [b"Via: " + b", ".join([b"1.1 portico"] * 8)], False,
                             b"POST")),
            ("dotseg_cl", (b"/a/..{T}", [], False, b"POST")),
            ("fragment_chunked", (b"{T}#x", [], True, b"POST"))):
        add("self/" + nm, self_answer(*args), method=args[3].decode())
    # trailers Portico filters, and bodies that come a byte at a time (every state of the
    # chunked decoder meets the end of its input)
    long_name = b"X-A-Trailer-Name-Longer-Than-32-Bytes-Kept"
    trailer_sets = {
        "dropped": [b"Host: evil", b"Content-Length: 99", b"Transfer-Encoding: chunked",
                    b"X-Forwarded-For: 127.1.2.4"],
        "kept": [b"X-Digest: abc", b"Server-Timing: x"],
        "long_names": [long_name + b": v", b"X-Forwarded-For-Is-A-Very-Long-Name-Too-Here: v",
                       b"Transfer-Encoding-But-Longer-Than-32-Bytes-X: v"],
        "mixed": [b"X-Digest: abc", b"Cookie: c=1", long_name + b": v", b"Host: evil",
                  b"X-Last: z"],
    }
    for nm, tl in trailer_sets.items():
        add("trailer/" + nm, (lambda tl: lambda cid: req(
            cid, [b"Host: t", b"Transfer-Encoding: chunked"],
            b"5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\n" + b"".join(t + b"\r\n" for t in tl)
            + b"\r\n"))(tl))
        out.append(("dribble/trailer/" + nm, out[-1][1], "dribble", "POST"))
    for nm in ("zeros", "ext_plain", "ext_quote", "upper_hex", "trailer_te"):
        base = next(c for c in out if c[0] == "chunk/" + nm)
        out.append(("dribble/chunk/" + nm, base[1], "dribble", "POST"))
    for nm in ("plain", "list_same", "spaces"):
        base = next(c for c in out if c[0] == "cl/" + nm)
        out.append(("dribble/cl/" + nm, base[1], "dribble", "POST"))
    # many requests in one write, bodies of both framings; and bodies large enough for
    # splice(2) (64 KiB and more), with the next request right behind them
    def mixed(n, size):
        def b(cid):
            first = req(cid, [b"Host: t", b"Content-Length: %d" % size], b"a" * size)
            return first + b"".join(piped(cid, k, b"b" * (size + k), chunked=k % 2 == 1)
                                    if k % 3 else piped(cid, k) for k in range(n))
        return b
    add_piped("pipeline/mixed20", mixed(20, 10), method="POST", n=20)
    add_piped("pipeline/big_cl", mixed(2, 200000), method="POST", n=2)
    add_piped("pipeline/big_mixed", mixed(5, 100000), method="POST", n=5)
    add("big/cl_smug_inside", lambda cid: req(cid, [b"Host: t", b"Content-Length: %d"
                                                    % (150000 + len(smug(cid)))],
                                              b"c" * 150000 + smug(cid)))
    add("ctl/name_hi8", lambda cid: req(cid, [b"Host: t", b"X-\xe9: b"], method=b"GET"),
        method="GET")
    return out


def e_cases():
    names = ["cl_te", "te_cl", "two_cl", "cl_list", "cl_plus", "te_obf", "te_http10",
             "interim_body", "interim_bytes", "s204_body", "s204_body_late", "s304_body",
             "head_body", "trailer_fold", "longer_than_cl", "longer_than_cl_late",
             "bare_lf_head", "fold_head", "chunk_overflow", "bad_chunk_crlf", "trailers",
             "chunked_many", "interim_then_ok", "unsolicited_101", "head_chunked",
             "s304_chunked", "http10_keepalive", "short_body", "trailers_dribble", "chunked_many_dribble",
             "interim_then_ok_dribble", "longer_than_cl_dribble", "s204_body_dribble",
             "cl_te_dribble", "head_body_dribble"]
    out = []
    for n in names:
        m = "HEAD" if n.startswith("head_") else "GET"
        out.append(("E/" + n, (lambda nn, mm: lambda cid: b"%s /e/%s/%s HTTP/1.1\r\nHost: t\r\n"
                               b"\r\n" % (mm.encode(), nn.encode(), cid.encode()))(n, m), "", m))
    return out

# ---------------------------------------------------------------------------------------------
# Client


def read_until(s, buf, methods, want, idle, limit):
    """Reads until `want` final responses parse, the peer closes, or `idle` s of silence."""
    deadline = time.time() + limit
    closed = False
    while time.time() < deadline:
        resps, _ = parse_responses(buf, methods, False)
        if len(resps) >= want or (resps and resps[-1]["close"]):
            break
        s.settimeout(max(0.01, min(idle, deadline - time.time())))
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not d:
            closed = True
            break
        buf += d
    return buf, closed


def client_exchange(port, r1, r2, methods, pipeline, dribble=False):
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if port in TLS_PORTS:
        s = TLS["client"].wrap_socket(s, server_hostname="localhost")
    buf, closed, sent2 = b"", False, False
    try:
        if dribble:
            for i in range(len(r1)):
                s.send(r1[i:i + 1])
                time.sleep(0.001)
            r1 = b""
        if pipeline:
            s.sendall(r1 + r2)
            sent2 = True
            buf, closed = read_until(s, buf, methods, 2, 1.0, 3.0)
        else:
            s.sendall(r1)
            buf, closed = read_until(s, buf, methods, 1, 1.0, 3.0)
            if not closed and r2:
                try:
                    s.sendall(r2)
                    sent2 = True
                except OSError:
                    closed = True
                got = len(parse_responses(buf, methods, False)[0])
                buf, closed = read_until(s, buf, methods, got + 1, 1.0, 3.0)
        if not closed and r2:  # stray answers
            buf, closed = read_until(s, buf, methods, 99, 0.3, 0.6)
    except OSError as e:
        closed = "error: %s" % e
    finally:
        s.close()
    resps, err = parse_responses(buf, methods, bool(closed))
    return {"resps": resps, "err": err, "closed": bool(closed), "sent2": sent2,
            "raw": buf[:2000].decode("latin-1")}


def rfc_targets(data):
    """The requests the strict reference parser finds in the client's bytes, up to an error."""
    out, pos = [], 0
    while pos < len(data):
        try:
            r = parse_request(data, pos)
        except (Need, Bad):
            break
        out.append(r["target"])
        pos = r["end"]
    return out


def run_case(chain, case, pipeline):
    name, build, _, method = case
    cid = re.sub(r"[^A-Za-z0-9_.-]", "_", name) + "." + chain
    port, hops, links = CHAINS[chain]
    with LOG.lock:
        LOG.case = (name, chain)
    r1 = build(cid)
    r2 = b"GET /second-%s HTTP/1.1\r\nHost: t\r\n\r\n" % cid.encode()
    res = client_exchange(port, r1, r2, [method] + ["GET"] * 40, pipeline, case[2] == "dribble")
    v = client_exchange(port, b"GET /victim-%s HTTP/1.1\r\nHost: t\r\n\r\n" % cid.encode(),
                        b"", ["GET"], False)
    time.sleep(0.15)  # bytes still in flight on the links
    with LOG.lock:
        LOG.case = None
        evs = [e for e in LOG.events if e[0] == (name, chain)]
        raw = {ln: LOG.raw.get(((name, chain), ln), b"").decode("latin-1")
               for ln in links + [ln + "<" for ln in links if ln.startswith("tap")]}
    rfc = rfc_targets(r1 + r2)
    piped_n = int(case[2].split(":")[1]) if case[2].startswith("piped:") else 0
    return (judge(name, chain, cid, hops, links, res, v, evs, piped_n, rfc, raw),
            res, v, evs, raw)


def judge(name, chain, cid, hops, links, res, v, evs, piped_n, rfc, raw):
    flags, notes = [], []
    first, second = "/first-" + cid, "/second-" + cid
    if name.startswith("E/"):
        first = "/e/" + name[2:] + "/" + cid
    seen = {ln: [] for ln in links}
    for _, ln, conn, kind, info in evs:
        if ln not in seen:
            continue
        if kind == "req":
            seen[ln].append(info["target"])
            tgt = info["target"]
            if "SMUGGLED" in tgt:
                pass
            elif cid not in tgt:
                flags.append("FOREIGN@%s(%s)" % (ln, tgt[:40]))
        elif kind == "bad":
            flags.append("MISFRAMED@%s(from %s)" % (ln, hops[links.index(ln)]))
            notes.append("%s: %s" % (ln, info[:100]))
    # A request the client hid in a body: which hop first read it as a request?
    rfc_split = any("SMUGGLED" in t for t in rfc)
    smug_at = [any("SMUGGLED" in t for t in seen[ln]) for ln in links]
    if smug_at[0]:
        if rfc_split:
            notes.append("split by %s as RFC 9112 frames it" % hops[0])
        else:
            flags.append("SPLIT@" + hops[0])
    for i in range(1, len(links)):
        if smug_at[i] and not smug_at[i - 1]:
            flags.append("DESYNC:%s->%s" % (hops[i - 1], hops[i]))
    # who answered request 1
    resps = res["resps"]
    outcome = None
    # a link "reached" when the target went over it at all, framed well or not
    reached = [(first + " ").encode("latin-1") in raw[ln].encode("latin-1") for ln in links]
    if not resps:
        outcome = "timeout" if not res["closed"] else "closed-silent"
        for i, ok in enumerate(reached):
            if not ok:
                outcome += ":" + hops[i]
                break
    else:
        r0 = resps[0]
        if r0["echo"] in (first, ) or r0["echo"].endswith(first) or \
                (r0["echo"].startswith("/e/") or r0["echo"].startswith("EVIL")):
            outcome = "ok"
        elif name.startswith("E/"):  # a proxy answered instead of the hostile origin
            outcome = "proxy-answered:%d" % r0["status"]
        else:
            hop = next((hops[i] for i, ok in enumerate(reached) if not ok), "origin")
            outcome = "refused:%s:%d" % (hop, r0["status"])
        if r0["echo"].startswith("EVIL"):
            notes.append("answer 1 is the origin's stray response")
    expect = [first] + ["/pipelined-%s/%d" % (cid, k) for k in range(piped_n)] + [second]
    if rfc_split:
        expect = [first, "/SMUGGLED-" + cid, second]
    for i, r in enumerate(resps):
        if not r["echo"]:
            continue
        if "SMUGGLED" in r["echo"]:
            if not rfc_split:
                flags.append("RESP-DESYNC(answer %d is the smuggled request's)" % (i + 1))
        elif i >= 1 and r["echo"].startswith("EVIL"):
            flags.append("EVIL(answer %d)" % (i + 1))
        elif i < len(expect) and r["echo"] != expect[i] and \
                not r["echo"].endswith(expect[i]) and not (i == 0 and name.startswith("E/")):
            flags.append("RESP-DESYNC(answer %d echoes %s)" % (i + 1, r["echo"][:40]))
        elif i >= len(expect):
            flags.append("EXTRA-ANSWER(%s)" % r["echo"][:40])
    if res["err"]:
        notes.append("client: " + res["err"])
    if len(resps) >= len(expect) and outcome == "ok":
        pass
    elif outcome == "ok" and res["sent2"]:
        outcome = "ok,closed" if res["closed"] or resps[-1]["close"] else "ok,2nd-unanswered"
    vr = v["resps"]
    if not vr or vr[0]["echo"] != "/victim-" + cid:
        flags.append("VICTIM(%s)" % (vr[0]["echo"][:40] if vr else "no answer"))
    got = [resps[i]["echo"] or "hop-%d" % resps[i]["status"] for i in range(len(resps))]
    return {"case": name, "chain": chain, "outcome": outcome, "flags": sorted(set(flags)),
            "answers": got, "seen": seen, "notes": notes}

# ---------------------------------------------------------------------------------------------
# Processes


PROCS = []


def start(argv, log, ready_port):
    f = open(log, "ab")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    PROCS.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection((HOST, ready_port), timeout=0.2).close()
            return p
        except OSError:
            if p.poll() is not None:
                sys.exit("%s exited: see %s" % (argv[0], log))
            time.sleep(0.05)
    sys.exit("%s did not listen on %d: see %s" % (argv[0], ready_port, log))


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in PROCS:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


# The parts of the peers' and Portico's configurations every chain shares (h2desync.py too).
NGINX_HEAD = """worker_processes 1;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.error info;
events { worker_connections 256; }
http {
  access_log %(d)s/nginx.access;
  client_body_temp_path %(d)s/ngx_body; proxy_temp_path %(d)s/ngx_proxy;
  fastcgi_temp_path %(d)s/ngx_fcgi; uwsgi_temp_path %(d)s/ngx_uwsgi;
  scgi_temp_path %(d)s/ngx_scgi;
"""

HAPROXY_HEAD = """global
  log stdout format raw local0
  maxconn 256
  nbthread 1
defaults
  mode http
  log global
  option httplog
  option http-keep-alive
  http-reuse always
  timeout connect 2s
  timeout client 5s
  timeout server 5s
  timeout http-request 3s
"""


def portico_proxy(d, c, port, listen_flags=""):
    """Portico's [proxy] section for chain c: one worker, its logs in d, 3 s client timeouts."""
    return ("[proxy]\nlisten = %s:%d%s\nworkers = 1\naccess_log = %s/portico-%s.access\n"
            "error_log = %s/portico-%s.error\nclient_header_timeout = 3s\n"
            "client_body_timeout = 3s\n" % (HOST, port, listen_flags, d, c, d, c))


def write_configs(d, chains):
    upstream = {"P": ORIGIN_PORT["P"], "A": ORIGIN_PORT["A"], "B": ORIGIN_PORT["B"],
                "C": TAP["C"][0], "D": TAP["D"][0], "T": ORIGIN_PORT["T"],
                "S": ORIGIN_PORT["S"]}
    for c in chains:
        if c not in PORTICO_PORT:
            continue
        with open(os.path.join(d, "portico-%s.ini" % c), "w") as f:
            tls = c in ("T", "S")
            f.write(portico_proxy(d, c, PORTICO_PORT[c], " tls" if tls else ""))
            f.write("%s\n[upstream o]\norigin = %s:%d\nfirst_byte_timeout = 3s\n%s"
                    % ("tls_cert = %s/cert.pem\ntls_key = %s/key.pem\n" % (d, d) if tls else "",
                       HOST, upstream[c],
                       "tls = on\nca_file = %s/cert.pem\nsni = localhost\n" % d
                       if c == "T" else ""))
            # /nr/... matches no route (404); /fault/... is answered 503 by a fault rule
            for i, prefix in enumerate(("/first-", "/second-", "/victim-", "/SMUGGLED-",
                                        "/pipelined-", "/e/", "/fault/", "/", "*")):
                if prefix in ("/", "*"):
                    continue
                f.write("\n[route r%d]\nprefix = %s\nupstream = o\n" % (i, prefix))
            f.write("\n[faults]\n\n[fault f]\nprefix = /fault/\nstatus = 503\n")
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_HEAD % {"d": d})
        f.write("""  upstream portico { server %(h)s:%(tapA)d; keepalive 8; }
  upstream origin { server %(h)s:%(oC)d; keepalive 8; }
  server {
    listen %(h)s:%(nf)d;
    location / { proxy_pass http://portico; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
  server {
    listen %(h)s:%(nb)d;
    location / { proxy_pass http://origin; proxy_http_version 1.1;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
  upstream porticoS { server %(h)s:%(pS)d; keepalive 8; }
  server {
    listen %(h)s:%(nt)d ssl;
    ssl_certificate %(d)s/cert.pem; ssl_certificate_key %(d)s/key.pem;
    location / { proxy_pass https://porticoS; proxy_http_version 1.1;
                 proxy_ssl_server_name on; proxy_ssl_name localhost;
                 proxy_ssl_session_reuse on;
                 proxy_set_header Connection ""; proxy_set_header Host $host; }
  }
}
""" % {"d": d, "h": HOST, "tapA": TAP["A"][0], "oC": ORIGIN_PORT["C"], "nf": NGINX_FRONT,
       "nb": NGINX_BACK, "pS": PORTICO_PORT["S"], "nt": NGINX_TLS})
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(HAPROXY_HEAD)
        f.write("""frontend fB
  bind %(h)s:%(hf)d
  default_backend bB
backend bB
  server p %(h)s:%(tapB)d
frontend fD
  bind %(h)s:%(hb)d
  default_backend bD
backend bD
  server o %(h)s:%(oD)d
""" % {"h": HOST, "hf": HAPROXY_FRONT, "tapB": TAP["B"][0], "hb": HAPROXY_BACK,
       "oD": ORIGIN_PORT["D"]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--portico", default="build/portico")
    ap.add_argument("--only", default="*", help="comma-separated globs of case names")
    ap.add_argument("--chains", default="P,A,B,C,D,N,H")
    ap.add_argument("--pipeline", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "desync"))
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    signal.signal(signal.SIGINT, lambda *_: sys.exit("interrupted"))
    corpus = [c for c in cases() + e_cases()
              if any(fnmatch.fnmatch(c[0], g) for g in a.only.split(","))]
    if a.list:
        print("\n".join(c[0] for c in corpus))
        return
    chains = a.chains.split(",")
    if not set(chains) <= set(CHAINS):
        sys.exit("--chains: from " + ",".join(CHAINS))
    d = os.path.abspath(a.out)
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(d + "/cert.pem"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        d + "/key.pem", "-out", d + "/cert.pem", "-days", "30", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
    TLS["client"] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    TLS["client"].check_hostname = False
    TLS["client"].verify_mode = ssl.CERT_NONE
    TLS["client"].set_alpn_protocols(["http/1.1"])
    TLS["origin"] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    TLS["origin"].load_cert_chain(d + "/cert.pem", d + "/key.pem")
    write_configs(d, chains)
    for c in chains:
        if c in ("N", "H"):
            continue
        Origin(c)
        if c in TAP:
            Tap(c)
    for c, back in (("N", "C"), ("H", "D")):
        if c in chains and back not in chains:
            Origin(back)
    try:
        for c in [c for c in chains if c in PORTICO_PORT]:
            start([a.portico, "-c", "%s/portico-%s.ini" % (d, c)], "%s/portico-%s.out" % (d, c),
                  PORTICO_PORT[c])
        if set(chains) & {"A", "C", "N", "S"}:
            start(["/usr/sbin/nginx", "-c", d + "/nginx.conf", "-p", d], d + "/nginx.out",
                  NGINX_FRONT)
        if set(chains) & {"B", "D", "H"}:
            start(["/usr/sbin/haproxy", "-db", "-f", d + "/haproxy.cfg"], d + "/haproxy.out",
                  HAPROXY_FRONT)
        results = []
        for case in corpus:
            for c in chains:
                if c in (("C", "D") if case[0].startswith("E/") else ("N", "H")):
                    continue
                j, res, v, evs, raw = run_case(c, case, a.pipeline)
                results.append({"judge": j, "client": res, "victim": v["resps"],
                                "links": raw, "events": [list(e[1:]) for e in evs]})
                mark = " ".join(j["flags"])
                print("%-28s %s  %-28s %s %s" % (case[0], c, j["outcome"], mark,
                                                 "; ".join(j["notes"])[:160]), flush=True)
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        summarize(results, chains)
    finally:
        stop_all()


def verdicts(results):
    """Per case: what each proxy did with the client's own bytes (it was the first hop)."""
    first_hop = {"P": "portico", "A": "nginx", "B": "haproxy"}
    e_hop = {"P": "portico", "N": "nginx", "H": "haproxy"}
    out = {}
    for r in results:
        j = r["judge"]
        hop = (e_hop if j["case"].startswith("E/") else first_hop).get(j["chain"])
        if hop is None:
            continue
        o = j["outcome"]
        if j["case"].startswith("E/"):  # what the client got of the hostile answer
            v = o if not j["flags"] else o + "+" + ",".join(j["flags"])
            v = "fwd" if v.startswith("ok") else v
        elif o.startswith("refused:") and o.split(":")[1] == hop:
            v = o.split(":")[2]
        elif o.startswith("timeout") or o.startswith("closed-silent:" + hop):
            v = "timeout"
        else:
            v = "fwd"
        out.setdefault(j["case"], {})[hop] = v
    return out


def summarize(results, chains):
    print("\n== outcome counts per chain ==")
    table = {}
    for r in results:
        j = r["judge"]
        key = j["outcome"].split(":")[0] + (":" + j["outcome"].split(":")[1]
                                            if j["outcome"].startswith("refused") else "")
        table.setdefault(key, {}).setdefault(j["chain"], 0)
        table[key][j["chain"]] += 1
    print("%-26s " % "outcome" + " ".join("%5s" % c for c in chains))
    for k in sorted(table):
        print("%-26s " % k + " ".join("%5d" % table[k].get(c, 0) for c in chains))
    lenient = [(c, v) for c, v in verdicts(results).items()
               if v.get("portico") == "fwd" and v.get("nginx", "fwd") != "fwd"
               and v.get("haproxy", "fwd") != "fwd"]
    print("\n== Portico forwards, nginx and HAProxy both refuse: %d ==" % len(lenient))
    for c, v in lenient:
        print("%-28s %s" % (c, v))
    differ = [(c, v) for c, v in verdicts(results).items() if len(set(v.values())) > 1]
    print("\n== first-hop verdicts that differ: %d ==" % len(differ))
    for c, v in differ:
        print("%-28s %s" % (c, " ".join("%s=%s" % kv for kv in sorted(v.items()))))
    flagged = [r["judge"] for r in results if r["judge"]["flags"]]
    print("\n== flagged: %d ==" % len(flagged))
    for j in flagged:
        print("%-28s %s %s" % (j["case"], j["chain"], " ".join(j["flags"])))


if __name__ == "__main__":
    main()
