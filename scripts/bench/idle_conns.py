#!/usr/bin/env python3
"""Open N keep-alive client connections to HOST:PORT, make one GET PATH on each (so every
connection has served a request and sits idle in keep-alive), print "ready OK/N", hold them
for HOLD seconds, then report how many the server still had open and close them all.

Used by scripts/bench.sh (scenario 5) to measure a proxy's RSS with N idle connections.
usage: idle_conns.py HOST PORT N PATH HOLD_SECONDS
"""
import errno
import socket
import sys
import time


def read_response(s):
    """Read one response with a Content-Length body; return its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the response body")
        body += chunk
    return status


def main():
    host, port, n, path, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], \
        float(sys.argv[5])
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()
    socks, ok, failures = [], 0, []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect((host, port))
            s.sendall(request)
            status = read_response(s)
            if 200 <= status < 300:
                ok += 1
            else:
                failures.append("status %d" % status)
        except (OSError, ValueError, IndexError) as exc:
            failures.append(repr(exc))
        socks.append(s)
    print("ready %d/%d" % (ok, n), flush=True)
    if failures:
        print("failures: %d, first: %s" % (len(failures), failures[0]), flush=True)
    time.sleep(hold)
    still_open = 0
    for s in socks:
        s.setblocking(False)
        try:
            still_open += 1 if s.recv(1) else 0  # data on an idle connection: count it open
        except BlockingIOError:
            still_open += 1
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EBADF, errno.ENOTCONN):
                raise
    for s in socks:
        s.close()
    print("open_at_end %d/%d" % (still_open, n), flush=True)
    return 0 if ok == n and still_open == n else 1


if __name__ == "__main__":
    sys.exit(main())
