"""tunnel.py — the soak's WebSocket origin (threads of this process, on loopback) and the client
role that upgrades through Portico, plain and over TLS.

  origin   GET /ws/echo with Upgrade: websocket gets 101 (Sec-WebSocket-Accept) and then every
           byte echoed; a chunk ending in BYE\\n is echoed and the origin closes; the client's
           FIN is answered with the origin's. Any other request: an ordinary answer (200 "no
           tunnel", 403 for /ws/deny) with Connection: close.
  tunnel   one upgrade per connection, ended by the client (FIN), by the origin (BYE), or by
           tunnel_timeout (the client goes quiet); an upgrade the origin refuses (403) and one
           with a body (Portico forwards it without its Upgrade: 200). The access line must say
           101, how the tunnel ended and exactly the bytes it carried each way.
"""
import base64
import hashlib
import socket
import socketserver
import threading
import time

import load as L

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
IDLE = 2.2      # seconds a client stays quiet: past tunnel_timeout (1s, 1500ms) in both configs


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(15.0)
        head = bytearray()
        try:
            while b"\r\n\r\n" not in head:
                data = s.recv(4096)
                if not data or len(head) > 65536:
                    return
                head += data
            text, _, rest = bytes(head).partition(b"\r\n\r\n")
            lines = text.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            want = int(fields.get("content-length", "0"))
            while len(rest) < want:
                data = s.recv(4096)
                if not data:
                    return
                rest += data
            if fields.get("upgrade", "").lower() == "websocket" and path == "/ws/echo":
                key = fields.get("sec-websocket-key", "").encode()
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
                s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                           % accept).encode())
                if rest:
                    s.sendall(rest)
                self.echo(s)
            else:
                status = "403 Forbidden" if path == "/ws/deny" else "200 OK"
                s.sendall(("HTTP/1.1 %s\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
                           "no tunnel" % status).encode())
        except OSError:
            pass

    @staticmethod
    def echo(s):
        s.settimeout(30.0)     # above tunnel_timeout: Portico ends an idle tunnel, not we
        while True:
            data = s.recv(65536)
            if not data:
                s.shutdown(socket.SHUT_WR)
                return
            s.sendall(data)
            if data.endswith(b"BYE\n"):
                return


class Origin(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="ws-origin", daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


def upgrade_bytes(rid, path="/ws/echo", body=b""):
    key = base64.b64encode(rid.encode().ljust(16, b"."))[:24].decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: soak.test", "X-Request-Id: " + rid,
             "User-Agent: portico-soak", "Connection: Upgrade", "Upgrade: websocket",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " + key]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def echo_round(conn, data):
    """Sends data, reads its echo back whole."""
    conn.send(data)
    back = conn._exact(len(data), True)
    if bytes(back) != data:
        raise L.Proto("echo differs")


def tunnel(ld, rng):
    while ld.running() and ld.bucket.take():
        kind = rng.choice(("client", "client", "origin", "origin", "idle", "deny", "body"))
        tls = rng.random() < 0.3
        try:
            conn = ld.connect(tls)
        except OSError as e:
            ld.failed(ld.new("tunnel", "GET", kind, 0), e)
            continue
        rec = ld.new("tunnel", "GET", "/ws/%s" % kind, conn.port)
        try:
            if kind in ("deny", "body"):
                path = "/ws/deny" if kind == "deny" else "/ws/echo"
                conn.send(upgrade_bytes(rec.rid, path, b"hello" if kind == "body" else b""))
                ld.check(rec, conn.response("GET"), {403} if kind == "deny" else {200}, 9)
                conn.close()
                continue
            conn.send(upgrade_bytes(rec.rid))
            status, fields, _ = conn.head()
            rec.status = status
            if status != 101 or fields.get("upgrade", "").lower() != "websocket":
                rec.outcome, rec.note = L.FAILED, "status %d, upgrade %r" % (
                    status, fields.get("upgrade"))
                conn.close()
                continue
            sent = 0
            for _ in range(rng.randint(1, 8)):
                data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000)))
                data = data.replace(b"BYE\n", b"bye\n")
                echo_round(conn, data)
                sent += len(data)
            if kind == "client" and conn.tls:
                # close_notify, then Portico's once the origin answered our end with its FIN
                conn.s = conn.s.unwrap()
                words = "client closed"
            elif kind == "client":
                conn.s.shutdown(socket.SHUT_WR)
                words = "client closed"
            elif kind == "origin":
                echo_round(conn, b"BYE\n")
                sent += 4
                words = "origin closed"
            else:
                time.sleep(IDLE)
                words = "idle for tunnel_timeout"
            rest, n = conn._until_eof(False)
            if n:
                raise L.Proto("%d bytes after the last echo" % n)
            rec.outcome, rec.tunnel = L.TUNNELED, (words, sent, sent)
        except (OSError, L.Proto, L.Closed) as e:
            ld.failed(rec, e)
        conn.close()
