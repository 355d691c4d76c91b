"""load.py — the soak's load generator: raw-socket HTTP/1.1 clients in threads, bounded in
connections (one socket per thread at a time) and in rate (one shared token bucket), each loop
ending by itself at the deadline.

Every request carries X-Request-Id: soak-N, and its Record the protocol and the fault rule (or
none) its access line must name. What the client saw is kept as a Record, so that
soak.py can account for every request in Portico's access log. Outcomes:

  answered   a complete response arrived; the log must show the same status
  vanished   the client left on purpose before the response ended; the log must say "client ..."
             (status 499, or the status whose head had already been sent)
  cut        Portico cut the body short after the head (read_timeout after head); the log must
             show the same status and aborted=true
  stalled    the client stopped reading until Portico dropped it (client_send_timeout); one
             that Portico's socket still took bytes for late in the pause (its send buffer
             filling: the timeout counts from there) and that read the rest is answered
  dropped    a fault rule (or the Portico-Fault header) dropped or reset the connection, over
             HTTP/2 the stream (RST_STREAM INTERNAL_ERROR), before any byte; the log says 444
  tunneled   a 101 and the bytes of a tunnel both ways (tunnel.py); the log says 101, how the
             tunnel ended and the bytes it carried each way
  discarded  never answered because an earlier response closed the connection; never logged
  raced      sent on a reused, idle connection that Portico closed meanwhile (a reload's
             drain), no byte back: the keep-alive race; over HTTP/2 a stream above the last
             stream id of Portico's GOAWAY; never logged
  failed     anything else: a wrong status, a wrong body, a timeout, an unexpected close. A soak
             with any failed record fails.
"""
import fcntl
import itertools
import random
import select
import socket
import ssl
import struct
import termios
import threading
import time

ANSWERED, VANISHED, CUT, STALLED, DROPPED, TUNNELED, DISCARDED, RACED, FAILED = (
    "answered", "vanished", "cut", "stalled", "dropped", "tunneled", "discarded", "raced",
    "failed")

MAX_INTERIM = 32        # Portico relays at most this many 1xx per exchange
IO_TIMEOUT = 8.0        # longest wait for any byte; above every Portico timeout of soak.py
MAX_HEAD = 65536        # longest response head we accept
TLS_NAME = "soak.test"  # the name in the certificate soak.py makes for the TLS listener
PAUSE = 4.5             # a stalled reader's pause: past client_send_timeout
SEND_TIMEOUT = 3.0      # client_send_timeout in soak.py's configurations
SEND_SLACK = 0.5        # Portico's drop may come this late (ASan, a loaded machine)


class Proto(Exception):
    """The peer broke HTTP, or said something we did not expect."""


class Closed(Exception):
    """The connection ended before the response did."""


class Record:
    __slots__ = ("rid", "role", "method", "path", "port", "outcome", "status", "note",
                 "interim", "time", "proto", "fault", "tunnel", "left")

    def __init__(self, rid, role, method, path, port, proto="HTTP/1.1"):
        self.rid, self.role, self.method, self.path, self.port = rid, role, method, path, port
        self.outcome, self.status, self.note, self.interim = None, None, "", 0
        self.time = time.time()
        self.proto = proto  # the access line's proto
        self.fault = None   # the access line's fault: a name, or {status: name or None}
        self.tunnel = None  # (end words, bytes from the client, bytes from the origin)
        self.left = "client"  # how the detail of a vanished or stalled request begins

    def fault_for(self, status):
        """The fault the access line must name for this status."""
        if isinstance(self.fault, dict):
            return self.fault.get(status)
        return self.fault


def peer_send_queue(s):
    """Bytes in the send queue of the loopback peer's socket of TCP socket s (Portico's side:
    written, not yet acknowledged), from /proc/net/tcp; -1 if it is not listed."""
    mine, peer = s.getsockname(), s.getpeername()
    want = ("%08X:%04X" % (struct.unpack("<I", socket.inet_aton(peer[0]))[0], peer[1]),
            "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(mine[0]))[0], mine[1]))
    with open("/proc/net/tcp") as f:
        for line in f:
            c = line.split()
            if (c[1], c[2]) == want:
                return int(c[4].split(":")[0], 16)
    return -1


class Response:
    __slots__ = ("status", "interim", "fields", "body", "length", "close")


class Conn:
    """One client connection with its own read buffer. pace: seconds slept after each read (a
    slow reader); rcvbuf: a small receive buffer, so that a slow reader pushes back at once."""

    def __init__(self, addr, pace=0.0, rcvbuf=None, chunk=65536, tls=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(IO_TIMEOUT)
        try:
            s.connect(addr)
            if tls:     # an ssl.SSLContext: the handshake, its certificate checked
                s = tls.wrap_socket(s, server_hostname=TLS_NAME)
        except (OSError, ssl.SSLError):
            s.close()
            raise
        self.tls = bool(tls)
        self.s, self.buf, self.pace, self.chunk = s, bytearray(), pace, chunk
        self.port = s.getsockname()[1]
        self.rx = 0         # bytes received so far
        self.uses = 0       # answers read so far
        self.status = None  # of the last final response head read

    def peer_open(self):
        """False once Portico closed (or wrote unasked on) this idle connection."""
        if self.buf:
            return False
        if self.tls:
            # No MSG_PEEK through TLS: a record that is there is read; one that holds only
            # handshake messages (a TLS 1.3 session ticket) leaves the connection open.
            if not self.s.pending() and not select.select([self.s], [], [], 0)[0]:
                return True
            self.s.settimeout(0)
            try:
                data = self.s.recv(1)
                self.buf += data
                return False    # EOF (b""), or bytes nobody asked for
            except ssl.SSLWantReadError:
                return True
            except OSError:
                return False
            finally:
                self.s.settimeout(IO_TIMEOUT)
        self.s.settimeout(0)    # with a timeout, recv would wait for a byte first
        try:
            self.s.recv(1, socket.MSG_PEEK)
            return False        # EOF, or bytes nobody asked for
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.s.settimeout(IO_TIMEOUT)

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        try:
            data = self.s.recv(self.chunk)
        except ConnectionResetError as e:
            raise Closed("reset") from e
        except ssl.SSLEOFError as e:    # a FIN without close_notify
            raise Closed("EOF") from e
        except ssl.SSLError as e:
            raise Closed("TLS: %s" % e) from e
        except socket.timeout as e:
            raise Closed("no byte for %.0f s" % IO_TIMEOUT) from e
        if not data:
            raise Closed("EOF")
        self.rx += len(data)
        self.buf += data
        if self.pace:
            time.sleep(self.pace)

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > MAX_HEAD:
                raise Proto("line longer than %d bytes" % MAX_HEAD)
            self._fill()

    def _exact(self, n, keep):
        out = bytearray()
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            if keep:
                out += self.buf[:take]
            del self.buf[:take]
            n -= take
        return out

    def _until_eof(self, keep):
        out, n = bytearray(), 0
        while True:
            try:
                self._fill()
            except Closed as e:
                if str(e) == "EOF":
                    break
                raise
            n += len(self.buf)
            if keep:
                out += self.buf
            self.buf.clear()
        return out, n

    def head(self):
        """One response head: (status, {lowercase name: value}, version)."""
        line = self._line()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise Proto("bad status line %r" % line[:80])
        status, fields, size = int(parts[1]), {}, len(line)
        while True:
            line = self._line()
            size += len(line)
            if size > MAX_HEAD:
                raise Proto("head longer than %d bytes" % MAX_HEAD)
            if not line:
                return status, fields, parts[0]
            name, sep, value = line.partition(b":")
            if not sep:
                raise Proto("field without a colon %r" % line[:80])
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")

    def response(self, method, keep=False):
        """Reads 1xx heads and then one final response. keep: return the body bytes (else only
        its length is counted)."""
        r = Response()
        r.interim = []
        while True:
            status, fields, version = self.head()
            if 100 <= status < 200:
                r.interim.append(status)
                if status == 101 or len(r.interim) > 10 * MAX_INTERIM:
                    raise Proto("1xx %d (%d so far)" % (status, len(r.interim)))
                continue
            break
        r.status, r.fields = status, fields
        self.status = status    # known to the caller even if the body breaks off
        conn = fields.get("connection", "").lower()
        r.close = "close" in conn or (version == b"HTTP/1.0" and "keep-alive" not in conn)
        r.body, r.length = b"", 0
        if method == "HEAD" or status in (204, 304):
            return r
        te = fields.get("transfer-encoding")
        if te is not None:
            if te.lower() != "chunked":
                raise Proto("transfer-encoding %r" % te)
            body = bytearray()
            while True:
                size_line = self._line().split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError as e:
                    raise Proto("chunk size %r" % size_line[:40]) from e
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size, keep)
                r.length += size
                if self._line():
                    raise Proto("no CRLF after a chunk")
            r.body = bytes(body)
        elif "content-length" in fields:
            n = int(fields["content-length"])
            r.body, r.length = bytes(self._exact(n, keep)), n
        else:
            r.close = True
            body, r.length = self._until_eof(keep)
            r.body = bytes(body)
        return r


class Bucket:
    """Shared token bucket: at most `rate` requests a second over all threads."""

    def __init__(self, rate, deadline):
        self.rate, self.deadline = float(rate), deadline
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def take(self, n=1):
        """Waits for n tokens; False once the deadline has passed."""
        with self.lock:
            now = time.monotonic()
            at = max(self.next, now)
            self.next = at + n / self.rate
        if at >= self.deadline:
            return False
        if at > now:
            time.sleep(at - now)
        return True


def tls_context(cafile, alpn):
    """A client context that checks Portico's certificate (made by soak.py) and offers alpn."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(alpn)
    return ctx


def request_bytes(method, path, rid, extra=(), body=b"", length=None, close=False,
                  host="soak.test"):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + host, "X-Request-Id: " + rid,
             "User-Agent: portico-soak"]
    lines += list(extra)
    if body or length is not None:
        lines.append("Content-Length: %d" % (len(body) if length is None else length))
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# Statuses a path may get: the origin's own answer, or each failure's status under the two
# profiles the soak alternates between (standard, cloudflare); refused also 503 while its origin
# is marked down.
HEALTHY = {200}
STATUS = lambda code: {code}  # noqa: E731
CLOSE = {502, 520}            # empty_response
RESET = {502, 520}            # connection_reset (or empty_response)
GARBAGE = {502, 520}          # invalid_response
PARTIAL = {504, 524}          # read_timeout
HANG = {504, 524}             # first_byte_timeout
REFUSED = {502, 521, 503}     # connect_refused, no_healthy_origin

# (method, path, expected statuses, body length or None) of healthy, pipelinable requests.
GOOD = [
    ("GET", "/status/200", HEALTHY, None),
    ("GET", "/status/404", STATUS(404), None),
    ("GET", "/status/503", STATUS(503), None),
    ("GET", "/status/204", STATUS(204), 0),
    ("GET", "/status/304", STATUS(304), 0),
    ("GET", "/bytes/0", HEALTHY, 0),
    ("GET", "/bytes/1000", HEALTHY, 1000),
    ("GET", "/bytes/70000", HEALTHY, 70000),
    ("HEAD", "/bytes/70000", HEALTHY, 0),
    ("HEAD", "/status/200", HEALTHY, 0),
    ("HEAD", "/status/204", STATUS(204), 0),
    ("GET", "/delay/20", HEALTHY, None),
    ("GET", "/interim/103,102?delay_ms=2", HEALTHY, None),
    ("GET", "/drip?bytes=3000&duration_ms=100", HEALTHY, 3000),
]

# Its one byte comes 3 s after its head, past read_timeout (1 s): cut off after the head.
STALLING = "/drip?bytes=1&duration_ms=3000"

# Requests to misbehaving origins: (path, expected statuses).
BROKEN = [
    ("/close", CLOSE),
    ("/reset", RESET),
    ("/garbage", GARBAGE),
    ("/partial", PARTIAL),
    ("/hang", HANG),
    ("/refused/x", REFUSED),
    ("/status/502", STATUS(502)),
]

# Requests Portico must refuse itself, each on its own connection: (bytes with {rid}, statuses,
# whether the connection must close: always when the framing of what follows is in doubt).
HOSTILE = [
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", {400}, True),                 # CL.TE
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 4\r\n\r\n0\r\n\r\n", {400}, True),                 # TE.CL
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nContent-Length: 3\r\n"
     b"Content-Length: 4\r\n\r\nabcd", {400}, True),                      # differing lengths
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n"
     b"Transfer-Encoding: gzip, chunked\r\n\r\n", {501}, True),           # another coding first
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n"
     b"Transfer-Encoding: xchunked\r\n\r\n", {501}, True),                # obfuscated coding
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", {400}, True),  # bad chunk size
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nFoo: a\r\n b\r\n\r\n", {400},
     True),                                                              # obs-fold
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nFoo : b\r\n\r\n", {400}, True),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nFoo: a\x00b\r\n\r\n", {400}, True),
    (b"GET /x HTTP/1.1\r\nX-Request-Id: {rid}\r\n\r\n", {400}, False),     # no Host
    (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Request-Id: {rid}\r\n\r\n", {400}, False),
    (b"GET /a/../status/200 HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n\r\n", {400},
     False),                                                             # dot segments
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nExpect: teapot\r\n\r\n", {417},
     False),
    (b"GET /x HTTP/2.0\r\nHost: a\r\nX-Request-Id: {rid}\r\n\r\n", {505}, True),
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nX-Request-Id: {rid}\r\n\r\n", {501}, False),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nContent-Length: 2000000\r\n"
     b"\r\n", {413}, True),                                               # > max_body_size 1m
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n\r\n", {414},
     True),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n" + b"X-Big: " + b"b" * 17000 +
     b"\r\n\r\n", {431}, True),
    (b"GET http://user@evil.example/x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\n\r\n",
     {400}, False),                                                      # userinfo authority
]

# The host of soak.py's [route faults]: the simulator without early hints or 102 heartbeats, so
# that a fault's interim responses are the only ones.
FAULT_HOST = "faults.soak.test"

# Fault rules (soak.py's [fault soak-*] sections, each matching X-Soak-Fault: its word) and the
# Portico-Fault header: (request field, method, path, statuses, the access line's fault (a dict
# when it depends on the status), what the client sees, body length, interim codes or None).
# What the client sees: "answer", "cut" (the head, then the body broken off: logged with its
# status and aborted), "drop" (nothing: logged 444).
FAULTS = [
    ("X-Soak-Fault: status", "GET", "/status/200", {503}, "soak-status", "answer", None, None),
    ("X-Soak-Fault: failure", "GET", "/status/200", RESET, "soak-failure", "answer", None,
     None),
    ("X-Soak-Fault: timeout", "GET", "/status/200", HANG, "soak-timeout", "answer", None, None),
    ("X-Soak-Fault: delay", "GET", "/bytes/1000", HEALTHY, "soak-delay", "answer", 1000,
     [102, 103]),
    ("X-Soak-Fault: slow", "GET", "/status/200", HEALTHY, "soak-slow", "answer", None, None),
    ("X-Soak-Fault: throttle", "GET", "/bytes/70000", HEALTHY, "soak-throttle", "answer", 70000,
     None),
    ("X-Soak-Fault: truncate", "GET", "/bytes/70000", HEALTHY, "soak-truncate", "cut", None,
     None),
    ("X-Soak-Fault: drop", "GET", "/status/200", {444}, "soak-drop", "drop", None, None),
    ("X-Soak-Fault: reset", "GET", "/delay/10", {444}, "soak-reset", "drop", None, None),
    ("X-Soak-Fault: weighted", "GET", "/status/200", {200, 503},
     {200: None, 503: "soak-weighted"}, "answer", None, None),
    ("X-Soak-Fault: never", "GET", "/bytes/1000", HEALTHY, None, "answer", 1000, None),
    ("Portico-Fault: status=429; headers=Retry-After: 5", "GET", "/status/200", {429}, "header",
     "answer", None, None),
    ("Portico-Fault: delay=20ms; status=503", "HEAD", "/status/200", {503}, "header", "answer",
     0, None),
    ("Portico-Fault: failure=empty_response", "GET", "/status/200", CLOSE, "header", "answer",
     None, None),
    ("Portico-Fault: interim=103", "GET", "/status/204", STATUS(204), "header", "answer", 0,
     [103]),
    ("Portico-Fault: truncate=100", "GET", "/bytes/1000", HEALTHY, "header", "cut", None, None),
    ("Portico-Fault: drop=on", "GET", "/status/200", {444}, "header", "drop", None, None),
    ("Portico-Fault: status=4o4", "GET", "/status/200", {400}, None, "answer", None, None),
]


class Load:
    """The generator: run() starts the threads of every role and returns once all ended."""

    def __init__(self, addr, admin, rate, deadline, seed, tls_addr=None, h2c_addr=None,
                 cafile=None, ws_port=None):
        self.addr, self.admin, self.deadline = addr, admin, deadline
        self.tls_addr, self.h2c_addr, self.ws_port = tls_addr, h2c_addr, ws_port
        self.tls_h1 = tls_context(cafile, ["http/1.1"]) if cafile else None
        self.tls_h2 = tls_context(cafile, ["h2"]) if cafile else None
        self.bucket = Bucket(rate, deadline)
        self.records = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.seed = seed
        self.admin_requests = 0
        self.problems = []
        self.idle_closes = 0
        self.server_closes = 0

    # ---- bookkeeping ----

    def new(self, role, method, path, port, proto="HTTP/1.1"):
        rec = Record("soak-%d" % next(self.ids), role, method, path, port, proto)
        with self.lock:
            self.records.append(rec)
        return rec

    def running(self):
        return time.monotonic() < self.deadline

    @staticmethod
    def check(rec, r, expect, length=None, keep_id=True):
        """Settles rec from response r: answered when r matches, failed otherwise."""
        rec.status, rec.interim = r.status, len(r.interim)
        problems = []
        if r.status not in expect:
            problems.append("status %d, expected %s" % (r.status, sorted(expect)))
        if length is not None and r.length != length:
            problems.append("body %d bytes, expected %d" % (r.length, length))
        if keep_id and r.fields.get("x-request-id") != rec.rid:
            problems.append("X-Request-Id %r" % r.fields.get("x-request-id"))
        if len(r.interim) > MAX_INTERIM or any(c < 100 or c > 199 for c in r.interim):
            problems.append("%d interim responses %s" % (len(r.interim), r.interim[:40]))
        if problems:
            rec.outcome, rec.note = FAILED, "; ".join(problems)
        else:
            rec.outcome = ANSWERED

    @staticmethod
    def failed(rec, err):
        rec.outcome, rec.note = FAILED, "%s: %s" % (type(err).__name__, err)

    # ---- roles ----

    def connect(self, tls=False, **kw):
        """A connection to the plain listener, or through TLS (ALPN http/1.1) to the TLS one."""
        if tls:
            return Conn(self.tls_addr, tls=self.tls_h1, **kw)
        return Conn(self.addr, **kw)

    def keepalive_role(self, rng, role, pick, size, tls=False):
        """The keep-alive roles: batches of size(rng) requests from pick(rng) written at once,
        answers read in order, on a connection kept as long as Portico keeps it."""
        conn = None
        while self.running():
            conn = self.reusable(conn, tls)
            if conn is None:
                time.sleep(0.1)
                continue
            if role == "keepalive" and conn.uses and rng.random() < 0.002:
                # Idle after an answer (keepalive_timeout): a connection that has carried no
                # request yet gets 408 after client_header_timeout instead.
                conn = self.idle_past_timeout(conn)
                continue
            n = size(rng)
            if not self.bucket.take(n):
                break
            batch, data = [], b""
            for _ in range(n):
                method, path, expect, extra, body = pick(rng)
                rec = self.new(role, method, path, conn.port)
                if body is not None:
                    extra = body = (rec.rid + ":").encode() + body
                data += request_bytes(method, path, rec.rid, body=body or b"")
                batch.append((rec, method, expect, extra))
            conn = self.run_batch(conn, data, batch)
        if conn:
            conn.close()

    def reusable(self, conn, tls=False):
        """The connection for the next request: conn while Portico keeps it open (a client
        looks before reusing one), else a new one; None when none can be made."""
        if conn is not None:
            if conn.peer_open():
                return conn
            conn.close()
            with self.lock:
                self.server_closes += 1
        try:
            return self.connect(tls)
        except OSError:
            return None

    def run_batch(self, conn, data, batch):
        """Sends data, reads one answer per record; an answer with Connection: close or a
        failure leaves the rest unanswered. Returns conn, or None once it is closed."""
        why = None
        for i, (rec, method, expect, extra) in enumerate(batch):
            if why:
                rec.outcome, rec.note = DISCARDED, why
                continue
            rx0 = conn.rx
            try:
                if i == 0:
                    conn.send(data)
                r = conn.response(method, keep=isinstance(extra, bytes))
                if isinstance(extra, bytes):
                    self.check(rec, r, expect)
                    if rec.outcome == ANSWERED and not r.body.endswith(b"\r\n\r\n" + extra):
                        rec.outcome, rec.note = FAILED, "echo does not end with our body"
                else:
                    self.check(rec, r, expect, extra)
                conn.uses += 1
                if r.close:
                    why = "after the answer to %s (Connection: close)" % rec.rid
            except (OSError, Proto, Closed) as e:
                self.lost(rec, e, conn, rx0, i)
                why = "after %s: %s" % (rec.rid, rec.note)
        if why:
            conn.close()
            return None
        return conn

    def lost(self, rec, err, conn, rx0, index):
        """Portico may close an idle connection (keepalive_timeout, a reload's drain) just as
        our next request goes out on it: RFC 9112 9.3.1 lets it, the client retries. Such a
        request, first of its batch on a reused connection with no byte back, is "raced" and
        must be in no log line (soak.py also wants it near a reload). A pipelined request left
        unanswered after an answer that did not say Connection: close failed: Portico had
        received it and let the connection go."""
        if isinstance(err, (Closed, ConnectionError)) and conn.uses > 0 and conn.rx == rx0:
            if index == 0:
                rec.outcome, rec.note = RACED, "%s (sent on an idle connection)" % err
                return
            rec.outcome, rec.note = FAILED, ("%s: pipelined behind %d answers, the last without "
                                             "Connection: close" % (err, index))
            return
        self.failed(rec, err)

    @staticmethod
    def pick_keepalive(rng):
        if rng.random() < 0.85:
            return rng.choice(GOOD) + (None,)
        path, expect = rng.choice(BROKEN)
        return "GET", path, expect, None, None

    @staticmethod
    def pick_pipeline(rng):
        if rng.random() < 0.1:
            return "POST", "/echo", HEALTHY, None, b"p" * rng.randint(0, 3000)
        return rng.choice(GOOD) + (None,)

    @staticmethod
    def pick_interim(rng):
        if rng.random() < 0.5:
            codes = ",".join(rng.choice(("100", "102", "103", "150"))
                             for _ in range(rng.randint(1, 32)))
            path = "/interim/%s?delay_ms=%d" % (codes, rng.randint(0, 5))
        else:
            path = "/slow/%d?interval_ms=10" % rng.randint(100, 600)
        return "GET", path, HEALTHY, None, None

    def keepalive(self, rng):
        """Sequential requests, good and broken; sometimes idles past keepalive_timeout."""
        self.keepalive_role(rng, "keepalive", self.pick_keepalive, lambda r: 1)

    def pipeline(self, rng):
        """Batches of 2-10 requests written at once; every answer must carry its own id."""
        self.keepalive_role(rng, "pipeline", self.pick_pipeline, lambda r: r.randint(2, 10))

    def interim(self, rng):
        """1xx-heavy answers: lists of 1xx, and 102 every 10 ms for longer than 32 of them."""
        self.keepalive_role(rng, "interim", self.pick_interim, lambda r: 1)

    def tls_keepalive(self, rng):
        """HTTP/1.1 over TLS (ALPN http/1.1): keep-alive requests, pipelined batches now and
        then, good and broken."""
        self.keepalive_role(rng, "tls_keepalive", self.pick_keepalive,
                            lambda r: 1 if r.random() < 0.8 else r.randint(2, 5), tls=True)

    def fault(self, rng):
        """Requests a fault rule or the Portico-Fault header shapes, on keep-alive connections,
        plain and TLS: the answer, a body broken off, a dropped connection; the access line
        must name the rule."""
        conn, tls = None, False
        while self.running():
            if conn is None:
                tls = rng.random() < 0.3
            conn = self.reusable(conn, tls)
            if conn is None:
                time.sleep(0.1)
                continue
            if not self.bucket.take():
                break
            field, method, path, expect, fault, sees, length, interim = rng.choice(FAULTS)
            if sees == "drop" and conn.uses:
                # A fresh connection: on a reused one, a drop looks like the keep-alive race.
                conn.close()
                conn = self.reusable(None, tls)
                if conn is None:
                    continue
            rec = self.new("fault", method, path, conn.port)
            rec.fault = fault
            rx0, conn.status = conn.rx, None
            try:
                conn.send(request_bytes(method, path, rec.rid, extra=[field], host=FAULT_HOST))
                r = conn.response(method)
                self.check(rec, r, expect, length)
                conn.uses += 1
                if sees != "answer" and rec.outcome == ANSWERED:
                    rec.outcome, rec.note = FAILED, "answered whole, expected %s" % sees
                elif interim is not None and rec.outcome == ANSWERED and r.interim != interim:
                    rec.outcome, rec.note = FAILED, "interim %s, expected %s" % (r.interim,
                                                                               interim)
                if r.close or rec.outcome != ANSWERED:
                    conn.close()
                    conn = None
            except (OSError, Proto, Closed) as e:
                if sees == "cut" and isinstance(e, Closed) and conn.status in expect and \
                        conn.rx > rx0:
                    rec.outcome, rec.status = CUT, conn.status
                elif sees == "drop" and isinstance(e, (Closed, ConnectionError)) and \
                        conn.rx == rx0:
                    rec.outcome, rec.status = DROPPED, 444
                else:
                    self.lost(rec, e, conn, rx0, 0)
                conn.close()
                conn = None
        if conn:
            conn.close()

    def idle_past_timeout(self, conn):
        """keepalive_timeout (3 s in both configurations) closes an idle client connection."""
        time.sleep(3.5)
        try:
            conn.s.settimeout(3.0)
            conn._fill()
            with self.lock:
                self.problems.append("idle connection: bytes after keepalive_timeout")
        except Closed as e:
            if str(e) not in ("EOF", "reset"):
                with self.lock:
                    self.problems.append("idle connection still open after 6.5 s")
            else:
                with self.lock:
                    self.idle_closes += 1
        except OSError:
            pass
        conn.close()
        return None

    def per_request(self, rng):
        """A new connection per request (Connection: close), good and broken, and a body that
        stalls longer than read_timeout after its head (cut off by Portico)."""
        while self.running() and self.bucket.take():
            x = rng.random()
            if x < 0.6:
                method, path, expect, length = rng.choice(GOOD)
            elif x < 0.97:
                method, (path, expect), length = "GET", rng.choice(BROKEN), None
            else:
                method, path, expect, length = "GET", STALLING, HEALTHY, None
            try:
                conn = self.connect(tls=rng.random() < 0.25)
            except OSError as e:
                rec = self.new("per_request", method, path, 0)
                self.failed(rec, e)
                continue
            rec = self.new("per_request", method, path, conn.port)
            try:
                conn.send(request_bytes(method, path, rec.rid, close=True))
                r = conn.response(method)
                self.check(rec, r, expect, length)
                if path == STALLING:
                    rec.outcome, rec.note = FAILED, "a stalled body was not cut off"
                elif not r.close:
                    rec.outcome, rec.note = FAILED, "no Connection: close in the answer"
            except Closed as e:
                if path == STALLING and conn.status in expect:
                    rec.outcome, rec.status = CUT, conn.status
                else:
                    self.failed(rec, e)
            except (OSError, Proto) as e:
                self.failed(rec, e)
            conn.close()

    def slow(self, rng):
        """Slow clients: a head or a body trickled in pieces (within client_header_timeout and
        client_body_timeout), a slow reader of a large body, a reader that pauses."""
        while self.running() and self.bucket.take():
            kind = rng.choice(("head", "body", "reader", "pause"))
            pace, rcvbuf, chunk = 0.0, None, 65536
            if kind == "reader":
                pace, rcvbuf, chunk = 0.004, 8192, 16384
            try:
                conn = Conn(self.addr, pace=pace, rcvbuf=rcvbuf, chunk=chunk)
            except OSError as e:
                self.failed(self.new("slow", "GET", kind, 0), e)
                continue
            try:
                if kind == "head":
                    rec = self.new("slow", "GET", "/status/200", conn.port)
                    data = request_bytes("GET", "/status/200", rec.rid, close=True)
                    step = len(data) // 6 + 1
                    for i in range(0, len(data), step):
                        conn.send(data[i:i + step])
                        time.sleep(0.15)
                    self.check(rec, conn.response("GET"), HEALTHY)
                elif kind == "body":
                    rec = self.new("slow", "POST", "/echo", conn.port)
                    body = (rec.rid + ":" + "s" * 8000).encode()
                    conn.send(request_bytes("POST", "/echo", rec.rid, length=len(body),
                                            close=True))
                    for i in range(0, len(body), 1000):
                        time.sleep(0.1)
                        conn.send(body[i:i + 1000])
                    r = conn.response("POST", keep=True)
                    self.check(rec, r, HEALTHY)
                    if rec.outcome == ANSWERED and not r.body.endswith(b"\r\n\r\n" + body):
                        rec.outcome, rec.note = FAILED, "echo does not end with our body"
                elif kind == "reader":
                    n = rng.choice((1 << 20, 3 << 20))
                    rec = self.new("slow", "GET", "/bytes/%d" % n, conn.port)
                    conn.send(request_bytes("GET", rec.path, rec.rid, close=True))
                    self.check(rec, conn.response("GET"), HEALTHY, n)
                else:
                    n = 4 << 20
                    rec = self.new("slow", "GET", "/bytes/%d" % n, conn.port)
                    conn.send(request_bytes("GET", rec.path, rec.rid, close=True))
                    time.sleep(1.5)  # below client_send_timeout (3 s): Portico must wait
                    self.check(rec, conn.response("GET"), HEALTHY, n)
            except (OSError, Proto, Closed) as e:
                self.failed(rec, e)
            conn.close()

    def vanish(self, rng):
        """Clients that leave: mid-upload, while the origin is still thinking, mid-download,
        and one that stops reading until client_send_timeout drops it."""
        while self.running() and self.bucket.take():
            kind = rng.choice(("upload", "upload", "waiting", "download", "stall"))
            rcvbuf = 8192 if kind == "stall" else None
            try:
                conn = Conn(self.addr, rcvbuf=rcvbuf)
            except OSError as e:
                self.failed(self.new("vanish", "GET", kind, 0), e)
                continue
            try:
                if kind == "upload":
                    path = rng.choice(("/echo", "/delay/300", "/status/200?delay_ms=300"))
                    rec = self.new("vanish", "POST", path, conn.port)
                    conn.send(request_bytes("POST", path, rec.rid, length=100000) +
                              b"u" * rng.randint(0, 5000))
                    time.sleep(rng.uniform(0.01, 0.2))
                    rec.outcome = VANISHED
                elif kind == "waiting":
                    rec = self.new("vanish", "GET", "/delay/500", conn.port)
                    conn.send(request_bytes("GET", rec.path, rec.rid))
                    time.sleep(rng.uniform(0.05, 0.3))
                    rec.outcome = VANISHED
                elif kind == "download":
                    rec = self.new("vanish", "GET", "/bytes/20000000", conn.port)
                    conn.send(request_bytes("GET", rec.path, rec.rid))
                    conn.head()
                    conn._exact(100000, False)
                    rec.outcome, rec.status = VANISHED, 200
                else:
                    rec = self.new("vanish", "GET", "/bytes/50000000", conn.port)
                    conn.send(request_bytes("GET", rec.path, rec.rid))
                    status, _, _ = conn.head()
                    while 100 <= status < 200:  # B's early hint
                        status, _, _ = conn.head()
                    rec.status = status
                    queued = self.pause(conn, PAUSE)
                    conn.chunk = 1 << 20
                    try:
                        while conn.rx < 50000000:
                            conn._fill()
                            conn.buf.clear()
                        rec.outcome, rec.note = self.not_dropped(queued)
                    except Closed:
                        rec.outcome = STALLED
            except (OSError, Proto, Closed) as e:
                self.failed(rec, e)
            conn.close()

    @staticmethod
    def pause(conn, seconds):
        """Reads nothing for seconds; returns, at each change, how many bytes waited in the
        socket's receive queue (FIONREAD) and in Portico's socket's send queue (/proc/net/tcp):
        (s, ours, Portico's). Portico's queue grows at every write its socket takes, and each
        restarts client_send_timeout: while Portico fills that buffer (megabytes on loopback),
        late when it was slow to relay (ASan on a loaded machine), ours does not move."""
        queued, last, t0 = [], None, time.monotonic()
        while True:
            t = time.monotonic() - t0
            n = struct.unpack("i", fcntl.ioctl(conn.s.fileno(), termios.FIONREAD,
                                               b"\0\0\0\0"))[0]
            now = (n, peer_send_queue(conn.s))
            if now != last:
                queued.append((t,) + now)
                last = now
            if t >= seconds:
                return queued
            time.sleep(min(0.25, seconds - t))

    @staticmethod
    def not_dropped(queued):
        """The outcome of a stalled reader that read the whole body after its pause: answered
        if Portico's socket took bytes too late in the pause for client_send_timeout (counted
        from its last write) to end within it, else failed: a timer that did not run."""
        grew = [t for (t, _, q), (_, _, was) in zip(queued[1:], queued) if q > was >= 0]
        timeline = ", ".join("%.2f: %d/%d" % q for q in queued)
        if grew and grew[-1] + SEND_TIMEOUT + SEND_SLACK > PAUSE:
            return ANSWERED, ("not dropped: Portico's socket took bytes until %.2f s into the "
                              "pause (s: ours/Portico's queued bytes: %s)" % (grew[-1], timeline))
        return FAILED, ("not dropped after client_send_timeout; s: bytes queued in our socket/"
                        "in Portico's (-1: not found): %s" % timeline)

    def hostile(self, rng):
        """Requests Portico refuses, each on its own connection, plus a head never finished
        (408 after client_header_timeout)."""
        while self.running() and self.bucket.take():
            try:
                conn = Conn(self.addr)
            except OSError as e:
                self.failed(self.new("hostile", "GET", "?", 0), e)
                continue
            try:
                if rng.random() < 0.05:
                    rec = self.new("hostile", "GET", "(unfinished head)", conn.port)
                    conn.send(b"GET /status/200 HTTP/1.1\r\nHost: a\r\nX-Request-Id: %s\r\n"
                              % rec.rid.encode())
                    self.check(rec, conn.response("GET"), {408}, keep_id=False)
                else:
                    raw, expect, must_close = rng.choice(HOSTILE)
                    rec = self.new("hostile", raw.split(b" ")[0].decode(), "(hostile)",
                                   conn.port)
                    rec.path = raw.split(b"\r\n")[0][:60].decode("latin-1")
                    conn.send(raw.replace(b"{rid}", rec.rid.encode()))
                    r = conn.response("GET")
                    # Refused before the id was read: the answer carries a generated one.
                    self.check(rec, r, expect, keep_id=False)
                    if rec.outcome == ANSWERED and must_close and not r.close:
                        rec.outcome, rec.note = FAILED, "connection kept after a refusal"
            except (OSError, Proto, Closed) as e:
                self.failed(rec, e)
            conn.close()

    def admin_role(self, rng):
        """The admin listener: /metrics, /healthz and /faults, sometimes 20 pipelined, and now and
        then a rule enabled for a second through the fault API (one no request matches). Not
        in the access log: failures go to self.problems."""
        while self.running():
            time.sleep(rng.uniform(0.5, 2.0))
            n = 20 if rng.random() < 0.2 else 1
            answered = 0
            try:
                conn = Conn(self.admin)
            except OSError as e:
                self.problems.append("admin: %s: %s" % (type(e).__name__, e))
                continue
            try:
                paths = [rng.choice(("/metrics", "/healthz", "/faults")) for _ in range(n)]
                data = b"".join(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % p).encode()
                                for p in paths)
                if rng.random() < 0.2:
                    # The fault API: a rule no request matches, enabled for a second.
                    paths.append("POST /faults/soak-idle")
                    data += (b"POST /faults/soak-idle HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/x-www-form-urlencoded\r\n"
                             b"Content-Length: 16\r\n\r\nenabled=1&for=1s")
                conn.send(data)
                for p in paths:
                    r = conn.response("GET")
                    answered += 1
                    if r.status != 200:
                        self.problems.append("%s: status %d" % (p, r.status))
                    if r.close:
                        break   # the rest is unanswered, as the answer said
            except Closed as e:
                self.problems.append("admin: %s after %d answers, none with Connection: close"
                                     % (e, answered))
            except (OSError, Proto) as e:
                self.problems.append("admin: %s: %s" % (type(e).__name__, e))
            self.admin_requests += answered
            conn.close()

    def h2(self, rng):
        """HTTP/2 streams, h2c and TLS (h2roles.py)."""
        import h2roles
        h2roles.streams(self, rng)

    def h2_misbehave(self, rng):
        """HTTP/2 clients that reset, shut windows, say GOAWAY, vanish (h2roles.py)."""
        import h2roles
        h2roles.h2_misbehave(self, rng)

    def tunnel(self, rng):
        """WebSocket upgrades and their tunnels (tunnel.py)."""
        import tunnel
        tunnel.tunnel(self, rng)

    ROLES = {"keepalive": 4, "per_request": 3, "pipeline": 2, "interim": 2, "slow": 2,
             "vanish": 2, "hostile": 1, "admin_role": 1, "tls_keepalive": 2, "fault": 2,
             "h2": 4, "h2_misbehave": 2, "tunnel": 2}

    def run(self):
        threads = []
        for i, (role, count) in enumerate(sorted(self.ROLES.items())):
            for k in range(count):
                rng = random.Random("%d-%d-%d" % (self.seed, i, k))
                t = threading.Thread(target=getattr(self, role), args=(rng,),
                                     name="%s-%d" % (role, k), daemon=True)
                t.start()
                threads.append(t)
        stuck = []
        for t in threads:
            t.join(timeout=max(0.0, self.deadline - time.monotonic()) + 30)
            if t.is_alive():
                stuck.append(t.name)
        return stuck
