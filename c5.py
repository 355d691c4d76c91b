import socket,sys
def raw(p,data,t=2):
    s=socket.create_connection(("127.0.0.1",p)); s.sendall(data); s.settimeout(t); d=b""
    try:
        while True:
            x=s.recv(65536)
            if not x: break
            d+=x
    except Exception: pass
    return d
L=b"a"*70000
for p in (18480,18481):
    d=raw(p,b"HEAD /"+L+b" HTTP/1.1\r\nHost: t\r\n\r\n")
    h,_,b=d.partition(b"\r\n\r\n"); print(p,h.split(b"\r\n")[0],"date" in h.decode().lower(),"nosniff" in h.decode(),"body",len(b))
d=raw(18481,b"POST /faults HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",1); print(d[:30])
d=raw(18481,b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",1); print(d.split(b"\r\n")[0])
d=raw(18481,b"HEAD http://x/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",1); h,_,b=d.partition(b"\r\n\r\n"); print(h.split(b"\r\n")[0],"body",len(b))
