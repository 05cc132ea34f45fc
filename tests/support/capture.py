"""Capture every frame on one interface for a while (run inside a machine's namespace, as
root): `python capture.py IFACE SECONDS OUT`. Writes the raw frames, concatenated, to OUT."""

import contextlib
import socket
import sys
import time

iface, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((iface, 0))
s.settimeout(0.2)
data = bytearray()
end = time.monotonic() + seconds
while time.monotonic() < end:
    with contextlib.suppress(TimeoutError):
        data += s.recv(65535)
with open(out, "wb") as f:
    f.write(data)
