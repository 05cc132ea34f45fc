"""The streams bench's two ends, run with the host's Python inside a network namespace.

`echo.py serve PORT`: a TCP echo server (a thread per connection).
`echo.py measure HOST PORT SECONDS`: one JSON line: round-trip latencies of 64-byte messages on
one connection, connection set-up times (connect + first echo), and throughput (bytes sent
and echoed back on one connection, both ways at once, for SECONDS).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

SIZE = 64
ROUND_TRIPS = 1000
SETUPS = 50
CHUNK = 64 * 1024


def serve(port: int) -> None:
    s = socket.create_server(("0.0.0.0", port), backlog=128, reuse_port=True)

    def echo(c: socket.socket) -> None:
        with c:
            while data := c.recv(CHUNK):
                c.sendall(data)

    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def exactly(c: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        got = c.recv(n - len(buf))
        if not got:
            raise ConnectionError("closed")
        buf += got
    return buf


def connect(host: str, port: int) -> socket.socket:
    c = socket.create_connection((host, port), timeout=10)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def measure(host: str, port: int, seconds: float) -> dict[str, object]:
    msg = b"x" * SIZE
    setups = []
    for _ in range(SETUPS):
        t0 = time.perf_counter()
        with connect(host, port) as c:
            c.sendall(msg)
            exactly(c, SIZE)
            setups.append(time.perf_counter() - t0)
    rtts = []
    with connect(host, port) as c:
        for _ in range(ROUND_TRIPS):
            t0 = time.perf_counter()
            c.sendall(msg)
            exactly(c, SIZE)
            rtts.append(time.perf_counter() - t0)
    received = 0
    with connect(host, port) as c:
        stop = time.monotonic() + seconds
        block = b"y" * CHUNK

        def send() -> None:
            while time.monotonic() < stop:
                c.sendall(block)
            c.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        t0 = time.perf_counter()
        sender.start()
        while data := c.recv(CHUNK):
            received += len(data)
        took = time.perf_counter() - t0
        sender.join()
    return {"rtt_s": rtts, "setup_s": setups, "echoed_bytes": received, "seconds": took}


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))),
              flush=True)
