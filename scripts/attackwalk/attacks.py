#!/usr/bin/python3
"""attacks.py KIND PORT [N] [SECONDS]: one bounded attack (KINDS, at the end) on 127.0.0.1:PORT,
for walk.py. Every loop has a count and a deadline; prints one key=value line of what the
defence did (statuses, when the server closed, GOAWAY codes). Run with /usr/bin/python3 (hpack)."""
import os, select, socket, ssl, struct, sys, time, threading, collections

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "integration"))
kind, port = sys.argv[1], int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 0
SECS = float(sys.argv[4]) if len(sys.argv) > 4 else 12.0
T0 = time.monotonic()


def nb_connect(n, rcvbuf=0, deadline=None, on_connect=None):
    """n non-blocking connects; returns the sockets (those that failed are dropped)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        socks.append(s)
    # wait for the connects (a paused listener leaves them in SYN-SENT / backlog)
    end = deadline or time.monotonic() + 5
    pending = set(socks)
    ep = select.epoll()
    byfd = {s.fileno(): s for s in socks}
    for fd in byfd:
        ep.register(fd, select.EPOLLOUT)
    while pending and time.monotonic() < end:
        for fd, _ in ep.poll(0.2):
            ep.unregister(fd)
            pending.discard(byfd[fd])
            if on_connect:
                try:
                    byfd[fd].send(on_connect)
                except OSError:
                    pass
    ep.close()
    return socks, pending


class Watch:
    """Reads every socket (unless told not to), recording first status and close time."""

    def __init__(self, socks):
        self.socks = {s.fileno(): s for s in socks}
        self.status = {}
        self.closed = {}
        self.poll = select.epoll()
        for fd in self.socks:
            self.poll.register(fd, select.EPOLLIN | select.EPOLLRDHUP)

    def pump(self, t):
        for fd, ev in self.poll.poll(t):
            s = self.socks[fd]
            try:
                d = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if d and fd not in self.status and d.startswith(b"HTTP/"):
                self.status[fd] = d[9:12].decode()
            if not d:
                self.closed[fd] = time.monotonic() - T0
                self.poll.unregister(fd)

    def summary(self):
        c = collections.Counter(self.status.values())
        ts = sorted(self.closed.values())
        med = ts[len(ts) // 2] if ts else -1
        return "open=%d closed=%d statuses=%s close_first_s=%.1f close_median_s=%.1f close_last_s=%.1f" % (
            len(self.socks) - len(self.closed), len(self.closed), dict(c),
            ts[0] if ts else -1, med, ts[-1] if ts else -1)


def trickle(head_bytes, n, secs, step=1, then=None):
    socks, pending = nb_connect(n)
    w = Watch(socks)
    i, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        tick = time.monotonic()
        for fd, s in list(w.socks.items()):
            if fd in w.closed:
                continue
            chunk = head_bytes[i:i + step] if i < len(head_bytes) else (then or b"")[:step]
            if chunk:
                try:
                    s.send(chunk)
                except OSError:
                    pass
        i += step
        while time.monotonic() < tick + 1.0:
            w.pump(0.1)
    print("kind=%s n=%d connect_pending=%d %s" % (kind, n, len(pending), w.summary()))


def slowloris():
    trickle(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: " + b"a" * 1000, N or 1000, SECS)


def slowbody():
    head = b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n"
    socks, pending = nb_connect(N or 300)
    for s in socks:
        try:
            s.send(head)
        except OSError:
            pass
    trickle_socks(socks, b"b", SECS)


def trickle_socks(socks, byte, secs):
    w = Watch(socks)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        tick = time.monotonic()
        for fd, s in w.socks.items():
            if fd not in w.closed:
                try:
                    s.send(byte)
                except OSError:
                    pass
        while time.monotonic() < tick + 1.0:
            w.pump(0.1)
    print("kind=%s n=%d %s" % (kind, len(socks), w.summary()))


def slowread():
    socks, pending = nb_connect(N or 200, rcvbuf=4096)
    for s in socks:
        try:
            s.send(b"GET /bytes/50000000 HTTP/1.1\r\nHost: h\r\n\r\n")
        except OSError:
            pass
    time.sleep(SECS)  # never read: the window stays shut
    closed = 0
    for s in socks:
        try:
            s.getpeername()
            buf = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            closed += buf != 0
        except OSError:
            closed += 1
    print("kind=%s n=%d closed_or_err=%d" % (kind, len(socks), closed))


def header_flood(make):
    count, statuses, end = 0, collections.Counter(), time.monotonic() + SECS
    req = make()
    while count < (N or 2000) and time.monotonic() < end:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(req)
        except OSError:
            pass
        try:
            d = s.recv(200)
            statuses[d[9:12].decode() if d.startswith(b"HTTP/") else "none"] += 1
        except OSError as e:
            statuses[type(e).__name__] += 1
        s.close()
        count += 1
    print("kind=%s sent=%d elapsed_s=%.1f statuses=%s" % (kind, count, time.monotonic() - T0,
                                                           dict(statuses)))


def manyfields():
    header_flood(lambda: b"GET / HTTP/1.1\r\nHost: h\r\n" +
                 b"".join(b"X-F%d: v\r\n" % i for i in range(150)) + b"\r\n")


def hugefield():
    header_flood(lambda: b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 1000000 + b"\r\n\r\n")


def pipeline():
    """N connections each send 100,000 pipelined GETs and never read, held SECS."""
    req = b"GET /status/200 HTTP/1.1\r\nHost: h\r\n\r\n" * 1000
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(N or 4)]
    sent = [0] * len(socks)
    for s in socks:
        s.setblocking(False)
    end = time.monotonic() + SECS
    while time.monotonic() < end:
        progress = False
        for i, s in enumerate(socks):
            if sent[i] >= 100:
                continue
            try:
                s.send(req)
                sent[i] += 1
                progress = True
            except (BlockingIOError, OSError):
                pass
        if not progress:
            time.sleep(0.05)
    print("kind=%s conns=%d requests_sent=%s (x1000, the rest held by back-pressure)" %
          (kind, len(socks), sent))


def idle(send_req):
    n = N or 10000
    t = time.monotonic()
    socks, pending = nb_connect(n, deadline=time.monotonic() + 8, on_connect=(
        b"GET /status/200 HTTP/1.1\r\nHost: h\r\n\r\n" if send_req else None))
    tc = time.monotonic() - t
    w = Watch(socks)
    end = time.monotonic() + SECS
    while time.monotonic() < end:
        w.pump(0.2)
    print("kind=%s n=%d connect_s=%.1f connect_pending=%d %s" % (kind, len(socks), tc, len(pending),
                                                                  w.summary()))


def churn():
    count, errs, end = 0, 0, time.monotonic() + SECS
    while count < (N or 20000) and time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if count % 2:
                s.sendall(b"GET /status/200 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                while s.recv(4096):
                    pass
            s.close()
        except OSError:
            errs += 1
        count += 1
    print("kind=%s conns=%d errors=%d per_s=%.0f" % (kind, count, errs, count / (time.monotonic() - T0)))


# ---- HTTP/2 (TLS, ALPN h2) on the raw-frame client of the tests
def h2conns(n, pairs=()):
    import h2_frames as hf
    out = []
    for _ in range(n):
        try:
            out.append(hf.Conn(port, pairs))
        except (OSError, SystemExit):
            pass
    return hf, out


def h2_slow_uploads():
    """N connections x 100 streams, each a POST of 1 MB sent 1 byte per stream per second."""
    hf, cs = h2conns(N or 10)
    for c in cs:
        c.send(b"".join(c.request(sid, hf.get("/echo", "POST") + [("content-length", "1000000")],
                                  False) for sid in range(1, 201, 2)))
    end = time.monotonic() + SECS
    while time.monotonic() < end:
        tick = time.monotonic()
        for c in cs:
            if not c.closed and c.goaway is None:
                try:
                    c.send(b"".join(hf.frame(hf.DATA, 0, sid, b"x") for sid in range(1, 201, 2)))
                except OSError:
                    pass
        while time.monotonic() < tick + 1:
            for c in cs:
                c.pump(lambda: False, time.monotonic() + 0.01)
    rst = sum(1 for c in cs for s in c.streams.values() if s["rst"] is not None)
    ga = collections.Counter(c.goaway[1] if c.goaway else None for c in cs)
    print("kind=%s conns=%d streams_reset=%d goaways=%s" % (kind, len(cs), rst, dict(ga)))


def h2_zero_window():
    """N connections, SETTINGS_INITIAL_WINDOW_SIZE 0, 100 downloads of 10 MB each, held SECS."""
    hf, cs = h2conns(N or 20, pairs=[(4, 0)])
    for c in cs:
        c.send(b"".join(c.request(sid, hf.get(os.environ.get("ZW_PATH", "/bytes/10000000"))) for sid in range(1, 201, 2)))
    end = time.monotonic() + SECS
    while time.monotonic() < end:
        for c in cs:
            c.pump(lambda: False, time.monotonic() + 0.02)
    ga = collections.Counter(c.goaway[1] if c.goaway else None for c in cs)
    heads = sum(1 for c in cs for s in c.streams.values() if s["status"])
    print("kind=%s conns=%d heads=%d goaways=%s closed=%d" % (kind, len(cs), heads, dict(ga),
                                                             sum(c.closed for c in cs)))


# ---- TLS
def tls_flood():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    count, errs, end = 0, 0, time.monotonic() + SECS
    while count < (N or 20000) and time.monotonic() < end:
        try:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                server_hostname="localhost")
            s.close()
        except OSError:
            errs += 1
        count += 1
    print("kind=%s handshakes=%d errors=%d per_s=%.0f" % (kind, count, errs,
                                                          count / (time.monotonic() - T0)))


def tls_half():
    """N connections each send a ClientHello and nothing more."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outb, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outb.read()
    socks, pending = nb_connect(N or 1000)
    for s in socks:
        try:
            s.send(hello)
        except OSError:
            pass
    w = Watch(socks)
    end = time.monotonic() + SECS
    while time.monotonic() < end:
        w.pump(0.2)
    print("kind=%s n=%d hello=%dB connect_pending=%d %s" % (kind, len(socks), len(hello),
                                                            len(pending), w.summary()))


KINDS = {"slowloris": slowloris, "slowbody": slowbody, "slowread": slowread,
         "manyfields": manyfields, "hugefield": hugefield, "pipeline": pipeline,
         "idle": lambda: idle(False), "idle_ka": lambda: idle(True), "churn": churn,
         "h2_slow_uploads": h2_slow_uploads, "h2_zero_window": h2_zero_window,
         "tls_flood": tls_flood, "tls_half": tls_half}
KINDS[kind]()
