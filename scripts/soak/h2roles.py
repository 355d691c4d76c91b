"""h2roles.py — the soak's HTTP/2 clients (python3-h2), cleartext (h2c, prior knowledge) and over
TLS (ALPN h2), for load.py's Load: each role a loop of one thread, bounded by Load's token
bucket and deadline, every wait by IO_TIMEOUT.

  h2            streams 1-6 at a time on a connection kept for 5-60 batches: good, broken,
                fault-shaped (load.FAULTS), small uploads; answers checked as over HTTP/1.1
  h2_misbehave  one misbehaviour per connection: RST_STREAM mid-response (then a request on the
                same connection), RST_STREAM before the answer, stream windows kept shut until
                Portico gives up (client_send_timeout), the client's GOAWAY with streams in
                flight, an abrupt close with streams in flight, a malformed request (reset as
                PROTOCOL_ERROR, then a request on the same connection)

Portico's GOAWAY frames are taken out of the byte stream before python-h2 sees them: h2 closes
its state machine at the first GOAWAY and refuses the frames that follow, while RFC 9113 6.8 (and
Portico's two-step drain) goes on answering the streams up to the last stream id. A stream above
that id with no byte back is "raced" (never logged); the others must be answered.
"""
import select
import socket
import struct
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

import load as L

PROTO = "HTTP/2.0"
GOAWAY, RST_STREAM = 0x7, 0x3
CANCEL, INTERNAL_ERROR, PROTOCOL_ERROR = 0x8, 0x2, 0x1
HEAD_WAIT = 3.0     # a misbehaving client's wait for a head it needs before acting
WAIT_MAX = 30.0     # longest wait for a batch of streams, frames coming or not


class Stream:
    __slots__ = ("rec", "sid", "method", "status", "interim", "fields", "length", "ended",
                 "reset", "ack", "body", "unacked")

    def __init__(self, rec, sid, method, ack):
        self.rec, self.sid, self.method, self.ack = rec, sid, method, ack
        self.status, self.interim, self.fields, self.length = None, [], {}, 0
        self.ended, self.reset, self.body = False, None, bytearray()
        self.unacked = 0    # flow-controlled bytes not given back (ack False)

    def done(self):
        return self.ended or self.reset is not None


class H2Conn:
    """One client connection: python-h2 for HPACK, flow control and the stream states, our own
    framing of the bytes in (GOAWAY taken out, see above)."""

    def __init__(self, ld, tls, settings=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(L.IO_TIMEOUT)
        try:
            s.connect(ld.tls_addr if tls else ld.h2c_addr)
            if tls:
                s = ld.tls_h2.wrap_socket(s, server_hostname=L.TLS_NAME)
                if s.selected_alpn_protocol() != "h2":
                    raise L.Proto("ALPN chose %r" % s.selected_alpn_protocol())
        except BaseException:
            s.close()
            raise
        self.s, self.tls, self.port = s, tls, s.getsockname()[1]
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="latin-1", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.c.initiate_connection()
        if settings:
            self.c.update_settings(settings)
        self.streams = {}
        self.inbuf = bytearray()
        self.goaway = None      # (last stream id, error code) of Portico's last GOAWAY
        self.closed = None      # why the connection ended, once it did
        self.frames = 0         # frames received
        self.uses = 0           # batches answered
        self.flush()

    def flush(self):
        data = self.c.data_to_send()
        if data and not self.closed:
            try:
                self.s.sendall(data)
            except OSError as e:
                self.closed = "send: %s" % e

    def send_raw(self, data):
        try:
            self.s.sendall(data)
        except OSError as e:
            self.closed = "send: %s" % e

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass
        self.closed = self.closed or "closed by us"

    def request(self, rec, method, path, extra=(), body=None, ack=True, host="soak.test"):
        sid = self.c.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "https" if self.tls else "http"),
                  (":authority", host), (":path", path), ("x-request-id", rec.rid),
                  ("user-agent", "portico-soak")] + list(extra)
        if body is not None:
            fields.append(("content-length", str(len(body))))
        st = Stream(rec, sid, method, ack)
        self.streams[sid] = st
        self.c.send_headers(sid, fields, end_stream=body is None)
        if body is not None:    # at most a few KiB: within the first window
            self.c.send_data(sid, body, end_stream=True)
        self.flush()
        return st

    def reset(self, st, code=CANCEL):
        """RST_STREAM; the connection window its DATA took is given back (the stream's is gone),
        or the connection's other streams would find it shut."""
        self.c.reset_stream(st.sid, error_code=code)
        if st.unacked:
            self.c.acknowledge_received_data(st.unacked, st.sid)
            st.unacked = 0
        self.flush()

    def linger(self, seconds):
        """Pumps for that long, whatever comes."""
        end = time.monotonic() + seconds
        while not self.closed and time.monotonic() < end:
            self.pump(min(0.05, max(0.0, end - time.monotonic())))

    def _frames(self, data):
        """Takes whole frames out of what came: GOAWAY kept here, the rest for h2."""
        self.inbuf += data
        out = bytearray()
        while len(self.inbuf) >= 9:
            n = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + n:
                break
            frame = bytes(self.inbuf[:9 + n])
            del self.inbuf[:9 + n]
            self.frames += 1
            if frame[3] == GOAWAY and n >= 8:
                last, code = struct.unpack(">II", frame[9:17])
                self.goaway = (last & 0x7FFFFFFF, code)
            else:
                out += frame
        return bytes(out)

    def pump(self, timeout):
        """Reads what comes within timeout (0: only what is there) and hands it to h2."""
        if self.closed:
            return
        try:
            ready = (self.tls and self.s.pending()) or select.select([self.s], [], [],
                                                                     timeout)[0]
            if not ready:
                return
            self.s.settimeout(L.IO_TIMEOUT)
            data = self.s.recv(65536)
        except (OSError, ValueError) as e:
            self.closed = "recv: %s" % e
            return
        if not data:
            self.closed = "EOF"
            return
        try:
            events = self.c.receive_data(self._frames(data))
        except h2.exceptions.ProtocolError as e:
            self.closed = "h2: %s" % e
            return
        for ev in events:
            st = self.streams.get(getattr(ev, "stream_id", 0))
            if isinstance(ev, h2.events.InformationalResponseReceived) and st:
                st.interim.append(int(dict(ev.headers)[":status"]))
            elif isinstance(ev, h2.events.ResponseReceived) and st:
                st.fields = {k.lower(): v for k, v in ev.headers}
                st.status = int(st.fields[":status"])
            elif isinstance(ev, h2.events.DataReceived) and st:
                st.length += len(ev.data)
                if st.rec.method == "POST":
                    st.body += ev.data
                if st.ack:
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                else:
                    st.unacked += ev.flow_controlled_length
            elif isinstance(ev, h2.events.StreamEnded) and st:
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset) and st:
                st.reset = ev.error_code
        self.flush()

    def wait(self, until, seconds=L.IO_TIMEOUT):
        """Pumps until until() holds, the connection ends, no frame came for seconds, or
        WAIT_MAX passed (frames that keep coming and never end a stream)."""
        start = last = time.monotonic()
        frames = self.frames
        while not until() and not self.closed:
            self.pump(0.2)
            now = time.monotonic()
            if self.frames != frames:
                last, frames = now, self.frames
            elif now - last > seconds:
                return False
            if now - start > WAIT_MAX:
                return False
        return until()

    def reusable(self):
        """False once Portico said GOAWAY or closed (what is there is read first)."""
        self.pump(0)
        return not self.closed and self.goaway is None


def response_of(st):
    r = L.Response()
    r.status, r.interim, r.length, r.close = st.status, st.interim, st.length, False
    r.fields = {k: v for k, v in st.fields.items() if not k.startswith(":")}
    r.body = bytes(st.body)
    return r


def settle(ld, conn, st, expect, length=None, sees="answer", interim=None, frames0=0, echo=None,
           keep_id=True):
    """The outcome of st's record from what its stream saw."""
    rec = st.rec
    unsent = conn.goaway is not None and st.sid > conn.goaway[0]
    if st.ended and st.status is not None and st.reset is None:
        ld.check(rec, response_of(st), expect, length, keep_id=keep_id)
        if rec.outcome != L.ANSWERED:
            return
        if sees != "answer":
            rec.outcome, rec.note = L.FAILED, "answered whole, expected %s" % sees
        elif interim is not None and st.interim != interim:
            rec.outcome, rec.note = L.FAILED, "interim %s, expected %s" % (st.interim, interim)
        elif echo is not None and not rec.note and not st.body.endswith(echo):
            rec.outcome, rec.note = L.FAILED, "echo does not end with our body"
        return
    if st.reset is not None:
        if sees == "cut" and st.status in expect and st.reset == INTERNAL_ERROR:
            rec.outcome, rec.status = L.CUT, st.status
        elif sees == "drop" and st.status is None and st.reset == INTERNAL_ERROR:
            rec.outcome, rec.status = L.DROPPED, 444
        elif unsent and st.status is None:
            rec.outcome, rec.note = L.RACED, "RST_STREAM %d above GOAWAY's last stream %d" % (
                st.reset, conn.goaway[0])
        else:
            rec.status = st.status
            rec.outcome, rec.note = L.FAILED, "RST_STREAM %d after %s" % (
                st.reset, "status %s, %d bytes" % (st.status, st.length) if st.status else
                "no head")
        return
    if st.status is None and (unsent or (conn.uses and conn.frames == frames0 and conn.closed)):
        rec.outcome, rec.note = L.RACED, "%s, no frame back (stream %d, GOAWAY %s)" % (
            conn.closed, st.sid, conn.goaway)
        return
    rec.status = st.status
    rec.outcome, rec.note = L.FAILED, "stream %d unfinished (status %s, %d bytes): %s" % (
        st.sid, st.status, st.length, conn.closed or "no frame for %.0f s" % L.IO_TIMEOUT)


def pick(rng):
    """(method, path, extra fields, body, statuses, fault, sees, length, interim, host)."""
    x = rng.random()
    if x < 0.65:
        method, path, expect, length = rng.choice(L.GOOD)
        return method, path, (), None, expect, None, "answer", length, None, "soak.test"
    if x < 0.8:
        path, expect = rng.choice(L.BROKEN)
        return "GET", path, (), None, expect, None, "answer", None, None, "soak.test"
    if x < 0.93:
        field, method, path, expect, fault, sees, length, interim = rng.choice(L.FAULTS)
        name, _, value = field.partition(": ")
        return (method, path, ((name.lower(), value),), None, expect, fault, sees, length,
                interim, L.FAULT_HOST)
    if x < 0.98:
        body = b"q" * rng.randint(0, 3000)
        return "POST", "/echo", (), body, L.HEALTHY, None, "answer", None, None, "soak.test"
    return "GET", L.STALLING, (), None, L.HEALTHY, None, "cut", None, None, "soak.test"


def connect(ld, rng, role, settings=None):
    tls = rng.random() < 0.5
    try:
        return H2Conn(ld, tls, settings)
    except (OSError, L.Proto) as e:
        rec = ld.new(role, "GET", "(connect %s)" % ("tls" if tls else "h2c"), 0, PROTO)
        ld.failed(rec, e)
        return None


def streams(ld, rng):
    conn, budget = None, 0
    while ld.running():
        if conn is not None and (budget <= 0 or not conn.reusable()):
            if rng.random() < 0.5 and not conn.closed:   # a polite end: our GOAWAY first
                conn.send_raw(struct.pack(">I", 8)[1:] + bytes([GOAWAY, 0]) +
                              struct.pack(">III", 0, conn.c.highest_inbound_stream_id, 0))
            conn.close()
            conn = None
        if conn is None:
            conn = connect(ld, rng, "h2")
            if conn is None:
                time.sleep(0.1)
                continue
            budget = rng.randint(5, 60)
        n = rng.randint(1, 6) if rng.random() < 0.3 else 1
        if not ld.bucket.take(n):
            break
        frames0, batch = conn.frames, []
        for _ in range(n):
            method, path, extra, body, expect, fault, sees, length, interim, host = pick(rng)
            rec = ld.new("h2", method, path, conn.port, PROTO)
            rec.fault = fault
            if body is not None:
                body = (rec.rid + ":").encode() + body
            try:
                st = conn.request(rec, method, path, extra, body, host=host)
            except (h2.exceptions.H2Error, OSError) as e:
                ld.failed(rec, e)
                continue
            batch.append((st, expect, length, sees, interim, body))
        conn.wait(lambda: all(b[0].done() for b in batch))
        for st, expect, length, sees, interim, body in batch:
            settle(ld, conn, st, expect, length, sees, interim, frames0, echo=body)
        conn.uses += 1
        budget -= 1
    if conn:
        conn.close()


# ---- misbehaving clients ----

def rst_mid(ld, rng, conn):
    """RST_STREAM (CANCEL) once the head and some DATA of a large body came (its window never
    given back, so that the body cannot be all out), then a request on the same connection."""
    rec = ld.new("h2_misbehave", "GET", "/bytes/2000000", conn.port, PROTO)
    st = conn.request(rec, "GET", rec.path, ack=False)
    if conn.wait(lambda: st.length > 0 or st.done(), HEAD_WAIT) and not st.done():
        conn.reset(st, CANCEL)
        rec.outcome, rec.status, rec.left = L.VANISHED, st.status, "reset the stream (CANCEL)"
    else:
        settle(ld, conn, st, L.HEALTHY, sees="vanish")
    follow_up(ld, conn)


def rst_early(ld, rng, conn):
    """RST_STREAM (CANCEL) while the origin is still thinking: nothing of the answer sent."""
    rec = ld.new("h2_misbehave", "GET", "/delay/500", conn.port, PROTO)
    st = conn.request(rec, "GET", rec.path)
    conn.linger(rng.uniform(0.05, 0.3))
    if st.done():
        settle(ld, conn, st, L.HEALTHY, sees="vanish")
    else:
        conn.reset(st, CANCEL)
        rec.outcome, rec.left = L.VANISHED, "reset the stream (CANCEL)"
    follow_up(ld, conn)


def follow_up(ld, conn):
    """A request after a misbehaviour that must leave the connection serving."""
    rec = ld.new("h2_misbehave", "GET", "/status/200", conn.port, PROTO)
    frames0 = conn.frames
    try:
        st = conn.request(rec, "GET", rec.path)
    except (h2.exceptions.H2Error, OSError) as e:
        ld.failed(rec, e)
        return
    conn.wait(st.done)
    settle(ld, conn, st, L.HEALTHY, frames0=frames0)


def shut(ld, rng, conn):
    """Stream windows of 0 (SETTINGS_INITIAL_WINDOW_SIZE), never opened: the head comes, no
    DATA; Portico ends the connection after client_send_timeout (GOAWAY ENHANCE_YOUR_CALM)."""
    rec = ld.new("h2_misbehave", "GET", "/bytes/100000", conn.port, PROTO)
    st = conn.request(rec, "GET", rec.path)
    conn.wait(lambda: conn.closed is not None and conn.goaway is not None, L.IO_TIMEOUT)
    if st.done():
        settle(ld, conn, st, L.HEALTHY, sees="stall")
    elif conn.closed and conn.goaway and conn.goaway[1] == 0xb and st.status is not None:
        rec.outcome, rec.status, rec.left = L.STALLED, st.status, "flow-control window kept shut"
    else:
        rec.status = st.status
        rec.outcome, rec.note = L.FAILED, "shut windows: %s, GOAWAY %s, status %s" % (
            conn.closed, conn.goaway, st.status)


def client_goaway(ld, rng, conn):
    """Our GOAWAY (NO_ERROR, last stream 0: we take no push) with streams in flight: they are
    still answered."""
    frames0, batch = conn.frames, []
    for _ in range(rng.randint(1, 3)):
        method, path, expect, length = rng.choice(L.GOOD)
        rec = ld.new("h2_misbehave", method, path, conn.port, PROTO)
        batch.append((conn.request(rec, method, path), expect, length))
    conn.send_raw(struct.pack(">I", 8)[1:] + bytes([GOAWAY, 0]) + struct.pack(">III", 0, 0, 0))
    conn.wait(lambda: all(b[0].done() for b in batch))
    for st, expect, length in batch:
        settle(ld, conn, st, expect, length, frames0=frames0)


def abrupt(ld, rng, conn):
    """The connection closed with streams in flight, none of which can have ended."""
    sts = []
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(("/delay/400", "/bytes/20000000", "/slow/600?interval_ms=50",
                           "/drip?bytes=3000&duration_ms=1000"))
        rec = ld.new("h2_misbehave", "GET", path, conn.port, PROTO)
        sts.append(conn.request(rec, "GET", path, ack=False))
    conn.linger(rng.uniform(0.05, 0.25))
    conn.close()
    for st in sts:
        if st.done():
            settle(ld, conn, st, L.HEALTHY, sees="vanish")
        else:
            st.rec.outcome, st.rec.status = L.VANISHED, st.status


def malformed(ld, rng, conn):
    """A request with a connection-specific field (RFC 9113 8.2.2): reset as PROTOCOL_ERROR and
    logged as 400; then a request on the same connection."""
    field = rng.choice((("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                        ("upgrade", "websocket"), ("te", "gzip")))
    rec = ld.new("h2_misbehave", "GET", "(malformed: %s)" % field[0], conn.port, PROTO)
    st = conn.request(rec, "GET", "/status/200", (field,))
    conn.wait(st.done)
    if st.reset == PROTOCOL_ERROR and st.status is None:
        rec.outcome, rec.status = L.ANSWERED, 400
    else:
        settle(ld, conn, st, {400}, sees="reset")
    follow_up(ld, conn)


MISBEHAVIOURS = [rst_mid, rst_early, shut, client_goaway, abrupt, malformed]


def h2_misbehave(ld, rng):
    while ld.running():
        what = rng.choice(MISBEHAVIOURS)
        need = 2 if what in (rst_mid, rst_early, malformed) else 4 if what is abrupt else 3
        if not ld.bucket.take(need):
            break
        settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0} if what is shut else None
        conn = connect(ld, rng, "h2_misbehave", settings)
        if conn is None:
            time.sleep(0.1)
            continue
        try:
            what(ld, rng, conn)
        except (h2.exceptions.H2Error, OSError) as e:
            with ld.lock:
                ld.problems.append("h2_misbehave %s: %s: %s" % (what.__name__,
                                                                type(e).__name__, e))
        conn.close()
