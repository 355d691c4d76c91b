#!/usr/bin/python3
"""healthy.py PORT SECONDS [PATH]: small GETs one at a time on a keep-alive connection, reopened
when closed (a close before any byte of an answer, as nginx's keepalive_requests makes, is no
error); prints count, req/s, p50/p99/max ms, errors, reconnects and the first ten requests that
took over 50 ms (ms@seconds into the run), for walk.py. Bounded in time."""
import socket, sys, time

port, secs = int(sys.argv[1]), float(sys.argv[2])
path = sys.argv[3] if len(sys.argv) > 3 else "/status/200"
req = ("GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path).encode()
lat, errors, reconnects, s = [], 0, 0, None
START = time.monotonic()
slow = []
end = time.monotonic() + secs


class Idle(OSError):
    """The server closed the connection before any byte of the answer."""


def one(s):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise Idle("closed") if not buf else OSError("closed")
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    cl, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            cl = int(v)
        if k.strip().lower() == b"connection" and v.strip().lower() == b"close":
            close = True
    while len(body) < cl:
        d = s.recv(65536)
        if not d:
            raise OSError("closed")
        body += d
    return head.split(b" ")[1], close


while time.monotonic() < end:
    t0 = time.monotonic()
    try:
        if s is None:
            s = socket.create_connection(("127.0.0.1", port), timeout=max(0.1, end - t0 + 5))
            reconnects += 1
        st, close = one(s)
        if st != b"200":
            errors += 1
        if close:  # the server said so (nginx's keepalive_requests): no error
            s.close()
            s = None
        lat.append(time.monotonic() - t0)
        if lat[-1] > 0.05:
            slow.append("%.2f@%.2f" % (lat[-1] * 1000, t0 - START))
    except Idle:
        s.close()
        s = None
        continue
    except (OSError, ValueError):
        errors += 1
        if s:
            s.close()
        s = None
        lat.append(time.monotonic() - t0)
lat.sort()
n = len(lat)
pct = lambda p: lat[min(n - 1, int(n * p))] * 1000 if n else -1
print("count=%d rps=%.0f p50=%.2f p99=%.2f max=%.1f errors=%d reconnects=%d slow=%s" %
      (n, n / secs, pct(0.5), pct(0.99), (lat[-1] * 1000 if n else -1), errors, reconnects - 1,
       ",".join(slow[:10])))
