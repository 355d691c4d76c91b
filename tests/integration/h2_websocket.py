#!/usr/bin/python3
"""h2_websocket.py — WebSockets over HTTP/2 (RFC 8441 extended CONNECT) against Portico, for
test_http2_websocket.c.

A client on python3-h2's state machine over TLS (ALPN h2): it opens streams with :method
CONNECT and :protocol websocket, speaks RFC 6455 frames on them (masked, as a client must), and
prints one `key=value` line per finding for the C test to assert on. Loopback only; every wait
has a deadline and every loop a count, so it always ends.

  h2_websocket.py PORT MODE [ARG...]

MODES:
  settings              what the server's SETTINGS said (enable_connect_protocol=N)
  echo PATH N           N messages of growing size both ways, a ping, the close handshake
  multi PATH            two WebSockets and a GET on one connection, interleaved
  status PATH           the answer to an extended CONNECT: status, end, body
  plain_connect         a CONNECT without :protocol
  protocol NAME         an extended CONNECT for another protocol
  length PATH N         an extended CONNECT with content-length N, then N bytes of DATA
  reset PATH            one echo, then RST_STREAM (CANCEL) from the client
  origin_close PATH     reads until the stream ends (the origin closed)
  idle PATH             waits, sending nothing, until the stream is reset
  halfclose PATH        END_STREAM first, then what the origin still sends
  noread PATH MB DIR    sends MB MiB of messages, gives back no window, waits on DIR/go
  flood PATH MB         sends up to MB MiB of messages until the stream is reset
  bulk PATH MB [S]      sends MB MiB of messages to the echo, then reads every echo (S s, 10)
  upload PATH MB        sends MB MiB, END_STREAM with the last; waits for the stream's end
  slowread PATH KIB     reads KIB KiB of the origin's a window's worth every 30 ms, then
                        END_STREAM; waits for the stream's end
  headers_end PATH [data]  END_STREAM on the extended CONNECT's HEADERS (data: on an empty
                        DATA right behind it); reads until the end
  late_ack PATH N       holds back its SETTINGS acknowledgement while it opens N WebSockets
                        and sends the last a message as large as its window (echoed); then
                        acknowledges and sends another
  remains_go PATH DIR   gives back no window until a line comes in DIR/go; then sends a
                        message, gives back every window and reads until the stream ends or
                        is reset
  remains PATH WINDOW [noack]  with a stream window of WINDOW bytes (0: the default), reads
                        what the origin sends until the stream ends or is reset (noack: giving
                        back no window)
"""
import os
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

IO_S = 10.0


class KeepOpen(h2.connection.H2ConnectionStateMachine):
    """python-h2 closes its side at any GOAWAY, where RFC 9113 6.8 lets the streams it names
    go on (browsers do): a GOAWAY leaves the connection open here, for the streams in flight."""

    def process_input(self, input_):
        if input_ == h2.connection.ConnectionInputs.RECV_GOAWAY:
            return []
        return super().process_input(input_)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Client:
    def __init__(self, port, hold_ack=False):
        self.hold_ack = hold_ack  # keep our SETTINGS acknowledgements back (acks_held)
        self.acks_held = []
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_S)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.alpn = self.s.selected_alpn_protocol()
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.state_machine = KeepOpen()
        self.events = []
        self.data = {}          # stream id -> bytes received, not yet taken
        self.ended = set()      # streams whose END_STREAM came
        self.reset = {}         # stream id -> error code of its RST_STREAM
        self.heads = {}         # stream id -> response headers (dict)
        self.settings = None
        self.goaway = False     # a GOAWAY came
        self.auto_ack = True    # give back the windows as DATA comes
        if self.alpn != "h2":
            return
        self.conn.initiate_connection()
        self.flush()
        deadline = time.monotonic() + IO_S
        while self.settings is None and time.monotonic() < deadline:
            self.pump(deadline - time.monotonic())

    def flush(self):
        out = self.conn.data_to_send()
        if out and self.hold_ack:
            out = self.strip_acks(out)
        if out:
            self.s.sendall(out)

    def strip_acks(self, out):
        """out without its SETTINGS frames with ACK, which go to acks_held."""
        keep, i = [], 0
        if out.startswith(PREFACE):
            keep.append(PREFACE)
            i = len(PREFACE)
        while i + 9 <= len(out):
            end = i + 9 + int.from_bytes(out[i:i + 3], "big")
            frame = out[i:end]
            if frame[3] == 0x4 and frame[4] & 0x1:
                self.acks_held.append(frame)
            else:
                keep.append(frame)
            i = end
        return b"".join(keep)

    def release_acks(self):
        self.hold_ack = False
        self.s.sendall(b"".join(self.acks_held))
        self.acks_held = []

    def pump(self, timeout):
        self.s.settimeout(max(timeout, 0.01))
        try:
            b = self.s.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionError, ssl.SSLError):
            return False
        if not b:
            return False
        for ev in self.conn.receive_data(b):
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings = dict((int(k), v.new_value) for k, v in ev.changed_settings.items())
            elif isinstance(ev, h2.events.ResponseReceived):
                self.heads[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                if self.auto_ack:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = True
            elif isinstance(ev, h2.events.StreamReset):
                self.reset[ev.stream_id] = int(ev.error_code)
        self.flush()
        return True

    def wait(self, cond, timeout=IO_S):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0 or not self.pump(left):
                return cond()
        return True

    def open_ws(self, path, extra=(), end=False):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                     (":scheme", "https"), (":path", path),
                                     (":authority", "localhost"),
                                     ("sec-websocket-version", "13")] + list(extra),
                               end_stream=end)
        self.flush()
        self.wait(lambda: sid in self.heads or sid in self.reset or sid in self.ended)
        return sid

    def send(self, sid, payload, end=False):
        # within the stream's and the connection's windows, as they open
        view = memoryview(payload)
        while True:
            if not self.wait(lambda: sid in self.reset or (
                    self.conn.local_flow_control_window(sid) > 0 or not len(view))):
                return False
            if sid in self.reset:
                return False
            n = min(len(view), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            last = n == len(view)
            self.conn.send_data(sid, bytes(view[:n]), end_stream=end and last)
            self.flush()
            view = view[n:]
            if last:
                return True

    def take_frame(self, sid, timeout=IO_S):
        """One WebSocket frame of the server's (unmasked): (opcode, payload, masked) or None."""
        got = []

        def have():
            f = parse_frame(self.data.get(sid, b""))
            if f:
                got.append(f)
            return bool(f) or sid in self.ended or sid in self.reset
        self.wait(have, timeout)
        if not got:
            return None
        op, payload, masked, used = got[0]
        self.data[sid] = self.data[sid][used:]
        return op, payload, masked


def ws_frame(op, payload):
    """A client's frame: FIN, masked with a fresh key (RFC 6455 5.3)."""
    key = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | op])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def parse_frame(b):
    if len(b) < 2:
        return None
    op, n, masked, at = b[0] & 0x0f, b[1] & 0x7f, bool(b[1] & 0x80), 2
    if n == 126:
        if len(b) < 4:
            return None
        n, at = struct.unpack(">H", b[2:4])[0], 4
    elif n == 127:
        if len(b) < 10:
            return None
        n, at = struct.unpack(">Q", b[2:10])[0], 10
    key = b""
    if masked:
        key, at = b[at:at + 4], at + 4
    if len(b) < at + n:
        return None
    payload = b[at:at + n]
    if masked:
        payload = bytes(x ^ key[i % 4] for i, x in enumerate(payload))
    return op, payload, masked, at + n


def say(**kv):
    for k, v in kv.items():
        print("%s=%s" % (k, v))
    sys.stdout.flush()


def message(i):
    size = [5, 200, 3000, 70 * 1024][i % 4]
    return bytes((k * 7 + i) % 251 for k in range(size))


def echo_some(c, sid, n, tag=0):
    """n messages out and back; the count of those that came back unmasked and whole."""
    ok = 0
    for i in range(n):
        m = message(i + tag)
        if not c.send(sid, ws_frame(0x2, m)):
            break
        f = c.take_frame(sid)
        if f and f[0] == 0x2 and f[1] == m and not f[2]:
            ok += 1
    return ok


def head_line(c, sid):
    h = c.heads.get(sid, {})
    if h.get(":status") not in ("200", None):  # an answer: said whole, for the test's message
        c.wait(lambda: sid in c.ended or sid in c.reset)
        say(answer=c.data.get(sid, b"").decode("latin-1").replace("\n", " ")[:300],
            portico_error=h.get("portico-error", "none"))
    say(status=h.get(":status", "none"),
        subprotocol=h.get("sec-websocket-protocol", "none"),
        accept_header="sec-websocket-accept" in h,
        upgrade_header="upgrade" in h or "connection" in h)


def mode_settings(c):
    say(alpn=c.alpn)
    if c.alpn == "h2":
        say(enable_connect_protocol=(c.settings or {}).get(0x8, 0))


def mode_echo(c, path, n):
    sid = c.open_ws(path, [("sec-websocket-protocol", "chat, superchat")])
    head_line(c, sid)
    say(echoed=echo_some(c, sid, int(n)))
    c.send(sid, ws_frame(0x9, b"p"))
    f = c.take_frame(sid)
    say(pong=bool(f and f[0] == 0xa and f[1] == b"p"))
    c.send(sid, ws_frame(0x8, b"\x03\xe8bye"))
    f = c.take_frame(sid)
    say(close_echoed=bool(f and f[0] == 0x8 and f[1] == b"\x03\xe8bye"))
    # the origin closes after the close handshake: END_STREAM; then ours ends the stream
    say(stream_ended=c.wait(lambda: sid in c.ended))
    c.conn.end_stream(sid)
    c.flush()
    say(reset=c.reset.get(sid, "none"))


def mode_multi(c, path):
    a = c.open_ws(path)
    b = c.open_ws(path)
    g = c.conn.get_next_available_stream_id()
    c.conn.send_headers(g, [(":method", "GET"), (":scheme", "https"), (":path", "/plain"),
                            (":authority", "localhost")], end_stream=True)
    c.flush()
    say(status_a=c.heads.get(a, {}).get(":status"), status_b=c.heads.get(b, {}).get(":status"))
    ok = 0
    for i in range(6):  # interleaved: a, b, a, b ...
        ok += echo_some(c, a if i % 2 == 0 else b, 1, tag=i)
    say(echoed=ok)
    c.wait(lambda: g in c.ended)
    say(get_status=c.heads.get(g, {}).get(":status"), get_ended=g in c.ended)
    for sid in (a, b):
        c.conn.end_stream(sid)
    c.flush()
    say(both_ended=c.wait(lambda: a in c.ended and b in c.ended))


def mode_status(c, path):
    sid = c.open_ws(path)
    c.wait(lambda: sid in c.ended or sid in c.reset)
    head_line(c, sid)
    say(ended=sid in c.ended, reset=c.reset.get(sid, "none"))
    body = c.data.get(sid, b"").decode("latin-1")
    say(body=body.replace("\n", " ")[:300])


def mode_plain_connect(c):
    c.conn.config.validate_outbound_headers = False  # python-h2 wants a :path even here
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "localhost:443")])
    c.flush()
    c.wait(lambda: sid in c.ended or sid in c.reset)
    say(status=c.heads.get(sid, {}).get(":status", "none"), reset=c.reset.get(sid, "none"))


def mode_protocol(c, name):
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", name), (":scheme", "https"),
                              (":path", "/x"), (":authority", "localhost")])
    c.flush()
    c.wait(lambda: sid in c.ended or sid in c.reset)
    say(status=c.heads.get(sid, {}).get(":status", "none"), reset=c.reset.get(sid, "none"))


def mode_length(c, path, n):
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                              (":scheme", "https"), (":path", path), (":authority", "localhost"),
                              ("sec-websocket-version", "13"), ("content-length", n)])
    c.send(sid, b"x" * int(n))
    c.wait(lambda: sid in c.ended or sid in c.reset)
    say(status=c.heads.get(sid, {}).get(":status", "none"), reset=c.reset.get(sid, "none"))


def mode_reset(c, path):
    sid = c.open_ws(path)
    head_line(c, sid)
    say(echoed=echo_some(c, sid, 1))
    c.conn.reset_stream(sid, 8)  # CANCEL
    c.flush()
    # a request on the same connection after it: the connection goes on
    g = c.conn.get_next_available_stream_id()
    c.conn.send_headers(g, [(":method", "GET"), (":scheme", "https"), (":path", "/after"),
                            (":authority", "localhost")], end_stream=True)
    c.flush()
    c.wait(lambda: g in c.ended)
    say(after_status=c.heads.get(g, {}).get(":status"))


def mode_origin_close(c, path):
    sid = c.open_ws(path)
    head_line(c, sid)
    c.wait(lambda: sid in c.ended or sid in c.reset)
    f = c.take_frame(sid, 0.1)
    say(frame=f[1].decode("latin-1") if f else "none", ended=sid in c.ended,
        reset=c.reset.get(sid, "none"))
    if sid not in c.reset:
        c.conn.end_stream(sid)
        c.flush()


def mode_idle(c, path):
    sid = c.open_ws(path)
    head_line(c, sid)
    t0 = time.monotonic()
    c.wait(lambda: sid in c.reset or sid in c.ended, 20)
    say(reset=c.reset.get(sid, "none"), after_ms=int((time.monotonic() - t0) * 1000))


def mode_halfclose(c, path):
    sid = c.open_ws(path)
    head_line(c, sid)
    # a message and the close frame, then END_STREAM: the origin still answers both
    c.send(sid, ws_frame(0x1, b"last words"))
    c.send(sid, ws_frame(0x8, b"\x03\xe8"), end=True)
    f1 = c.take_frame(sid)
    f2 = c.take_frame(sid)
    say(after_end=("%s,%s" % (f1[1].decode() if f1 else "none", f2[0] if f2 else "none")))
    say(stream_ended=c.wait(lambda: sid in c.ended), reset=c.reset.get(sid, "none"))


def mode_noread(c, path, mb, fifo_dir):
    """Sends up to mb MiB of 256 KiB messages and gives back no window for the echoes: once
    the stream's window stayed shut for 2 s, says so in fifo_dir/stalled and waits for a line
    in fifo_dir/go (the test measures meanwhile)."""
    c.auto_ack = False
    sid = c.open_ws(path)
    head_line(c, sid)
    chunk = ws_frame(0x2, b"x" * (256 * 1024))
    sent, at = 0, 0
    shut_since = None
    deadline = time.monotonic() + 30
    while sent < int(mb) * 1024 * 1024 and time.monotonic() < deadline:
        n = min(len(chunk) - at, c.conn.local_flow_control_window(sid),
                c.conn.max_outbound_frame_size)
        if n <= 0:
            shut_since = shut_since or time.monotonic()
            if time.monotonic() - shut_since >= 2:
                break
            c.pump(0.1)
            continue
        shut_since = None
        c.conn.send_data(sid, chunk[at:at + n])
        c.flush()
        sent += n
        at = (at + n) % len(chunk)
    received = len(c.data.get(sid, b""))
    say(sent_kib=sent // 1024, received_kib=received // 1024)
    go = os.open(os.path.join(fifo_dir, "go"), os.O_RDONLY | os.O_NONBLOCK)
    with open(os.path.join(fifo_dir, "stalled"), "w") as f:
        f.write("stalled %d\n" % sent)
    deadline = time.monotonic() + 20
    line = b""
    while b"\n" not in line and time.monotonic() < deadline:
        c.pump(0.1)  # frames keep being read (a PING is answered), no window given back
        try:
            line += os.read(go, 16)
        except BlockingIOError:
            pass
    os.close(go)
    say(go=b"\n" in line)


def mode_drain(c, path, fifo_dir):
    """Opens a WebSocket, says so in fifo_dir/open, waits for a line in fifo_dir/go (the test
    reloads meanwhile), echoes once more, then waits for the connection's end."""
    sid = c.open_ws(path)
    head_line(c, sid)
    say(echoed_before=echo_some(c, sid, 1))
    go = os.open(os.path.join(fifo_dir, "go"), os.O_RDONLY | os.O_NONBLOCK)
    with open(os.path.join(fifo_dir, "open"), "w") as f:
        f.write("open\n")
    deadline = time.monotonic() + 20
    line = b""
    while b"\n" not in line and time.monotonic() < deadline:
        c.pump(0.05)
        try:
            line += os.read(go, 16)
        except BlockingIOError:
            pass
    os.close(go)
    say(echoed_draining=echo_some(c, sid, 1, tag=1))
    deadline = time.monotonic() + 15
    closed = False
    while not closed and time.monotonic() < deadline:
        closed = not c.pump(deadline - time.monotonic())
    say(closed=closed, goaway=c.goaway)


def mode_flood(c, path, mb):
    """Sends up to mb MiB of 64 KiB messages to an origin that reads none, until the stream is
    reset (or the window stays shut for IO_S)."""
    sid = c.open_ws(path)
    head_line(c, sid)
    sent, frame = 0, ws_frame(0x2, b"x" * 65536)
    while sent < int(mb) << 20 and c.send(sid, frame):
        sent += len(frame)
    c.wait(lambda: sid in c.reset or sid in c.ended)
    say(reset=c.reset.get(sid, "none"))


def mode_bulk(c, path, mb, wait_s=IO_S):
    """Sends mb MiB of 64 KiB messages to the echo origin, reading only while the window is
    shut, then waits for every echo (each 65536 bytes with a 10-byte header) wait_s seconds."""
    sid = c.open_ws(path)
    head_line(c, sid)
    n, frame = int(mb) * 16, ws_frame(0x2, b"y" * 65536)
    sent, start = 0, time.monotonic()
    while sent < n and c.send(sid, frame):
        sent += 1
    want = n * (65536 + 10)
    c.wait(lambda: len(c.data.get(sid, b"")) >= want or sid in c.reset or sid in c.ended,
           float(wait_s))
    got = len(c.data.get(sid, b""))
    say(sent=sent, complete=got >= want, reset=c.reset.get(sid, "none"), received=got,
        ms=int((time.monotonic() - start) * 1000))


def mode_remains(c, path, window, ack="ack"):
    c.auto_ack = ack == "ack"
    if int(window):
        c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: int(window)})
        c.flush()
    sid = c.open_ws(path)
    head_line(c, sid)
    c.wait(lambda: sid in c.reset or sid in c.ended, 20)
    say(received=len(c.data.get(sid, b"")), ended=sid in c.ended,
        reset=c.reset.get(sid, "none"))


def mode_upload(c, path, mb):
    sid = c.open_ws(path)
    head_line(c, sid)
    sent = c.send(sid, b"u" * (int(mb) << 20), end=True)
    c.wait(lambda: sid in c.reset or sid in c.ended, 30)
    say(sent=sent, ended=sid in c.ended, reset=c.reset.get(sid, "none"))


def mode_slowread(c, path, kib):
    sid = c.open_ws(path)
    head_line(c, sid)
    want = int(kib) * 1024
    deadline = time.monotonic() + 20
    while (len(c.data.get(sid, b"")) < want and sid not in c.reset and sid not in c.ended and
           time.monotonic() < deadline):
        time.sleep(0.03)  # a slow reader: one read (a window's worth at most) per 30 ms
        c.pump(0.01)
    say(received=len(c.data.get(sid, b"")), reset_before_end=c.reset.get(sid, "none"))
    if sid not in c.reset:
        c.conn.end_stream(sid)
        c.flush()
    c.wait(lambda: sid in c.reset or sid in c.ended)
    say(ended=sid in c.ended, reset=c.reset.get(sid, "none"))


def mode_headers_end(c, path, where="headers"):
    if where == "headers":
        sid = c.open_ws(path, end=True)
    else:  # an empty DATA with END_STREAM in the same write as the HEADERS: before the 101
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":scheme", "https"), (":path", path),
                                  (":authority", "localhost"), ("sec-websocket-version", "13")])
        c.conn.end_stream(sid)
        c.flush()
        c.wait(lambda: sid in c.heads or sid in c.reset or sid in c.ended)
    head_line(c, sid)
    c.wait(lambda: sid in c.reset or sid in c.ended)
    f = c.take_frame(sid, 0.1)
    say(frame=f[1].decode("latin-1") if f else "none", ended=sid in c.ended,
        reset=c.reset.get(sid, "none"))


def mode_late_ack(c, path, n):
    """Our SETTINGS' INITIAL_WINDOW_SIZE (the floor) takes effect at Portico only at our
    acknowledgement: until then its streams' windows are 65,535 where ours (python-h2 applies
    them at once) are the floor. The last stream's window, all spent and taken by the origin,
    must be given back once the acknowledgement went, or the client waits for ever."""
    sids = [c.open_ws(path) for _ in range(int(n))]
    sid = sids[-1]
    head_line(c, sid)
    room = c.conn.local_flow_control_window(sid)
    m = bytes(i % 251 for i in range(room - 8))  # with its 8-byte head, the whole window
    c.send(sid, ws_frame(0x2, m))
    f = c.take_frame(sid)
    say(window=room, acks_held=len(c.acks_held), echoed_before=bool(f and f[1] == m))
    c.release_acks()
    ok = c.send(sid, ws_frame(0x2, m))
    f = c.take_frame(sid) if ok else None
    say(echoed_after=bool(f and f[1] == m))


def mode_remains_go(c, path, fifo_dir):
    c.auto_ack = False
    go = os.open(os.path.join(fifo_dir, "go"), os.O_RDONLY | os.O_NONBLOCK)
    sid = c.open_ws(path)
    head_line(c, sid)
    deadline = time.monotonic() + 20
    line = b""
    while b"\n" not in line and time.monotonic() < deadline:
        c.pump(0.05)  # frames are read, no window given back
        try:
            line += os.read(go, 16)
        except BlockingIOError:
            pass
    os.close(go)
    c.send(sid, ws_frame(0x2, b"after"))  # a write to the origin that meets its reset
    c.auto_ack = True
    held = len(c.data.get(sid, b""))
    if held:
        c.conn.acknowledge_received_data(held, sid)
        c.flush()
    c.wait(lambda: sid in c.reset or sid in c.ended, 20)
    say(go=b"\n" in line, received=len(c.data.get(sid, b"")), ended=sid in c.ended,
        reset=c.reset.get(sid, "none"))


MODES = {
    "remains_go": mode_remains_go,
    "late_ack": mode_late_ack,
    "upload": mode_upload, "slowread": mode_slowread, "headers_end": mode_headers_end,
    "remains": mode_remains,
    "drain": mode_drain, "flood": mode_flood, "bulk": mode_bulk,
    "settings": mode_settings, "echo": mode_echo, "multi": mode_multi, "status": mode_status,
    "plain_connect": mode_plain_connect, "protocol": mode_protocol, "reset": mode_reset,
    "origin_close": mode_origin_close, "idle": mode_idle, "halfclose": mode_halfclose,
    "noread": mode_noread, "length": mode_length,
}


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in MODES:
        sys.stderr.write(__doc__)
        sys.exit(2)
    c = Client(int(sys.argv[1]), hold_ack=sys.argv[2] == "late_ack")
    MODES[sys.argv[2]](c, *sys.argv[3:])
    try:
        c.conn.close_connection()
        c.flush()
        c.s.close()
    except OSError:
        pass


if __name__ == "__main__":
    main()
