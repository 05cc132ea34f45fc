"""The ceiling under a workload stream: one py-libp2p stream (PSK + Noise + yamux, as the work
planes use) between two hosts in two processes, bytes one way, nothing else on it.

`libp2p_tput.py serve PORT` prints its address; `libp2p_tput.py send ADDR SECONDS` prints one
JSON line {"mb_s": ...}."""

from __future__ import annotations

import contextlib
import json
import sys
import time

import trio
from libp2p.network.stream.exceptions import StreamEOF

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

PSK = "11" * 32
PROTOCOL = "/beemesh-bench/tput/1.0.0"
BLOCK = 64 * 1024


def host(listen: str) -> MeshHost:
    return MeshHost(HostSettings(KeyPair.generate(), PSK, [listen], "/bench", {}))


async def serve(port: int) -> None:
    h = host(f"/ip4/0.0.0.0/tcp/{port}")

    async def sink(stream):  # type: ignore[no-untyped-def]
        with contextlib.suppress(StreamEOF):  # the sender's end
            while await stream.read(BLOCK):
                pass

    async with h.running():
        h.handle(PROTOCOL, sink)
        print(h.addrs()[0], flush=True)
        await trio.sleep_forever()


async def send(addr: str, seconds: float) -> None:
    h = host("/ip4/0.0.0.0/tcp/0")
    async with h.running():
        peer = await h.connect(addr)
        stream = await h.open_stream(peer.to_base58(), PROTOCOL)
        block, sent = b"x" * BLOCK, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await stream.write(block)
            sent += BLOCK
        took = time.perf_counter() - t0
        await stream.reset()
    print(json.dumps({"mb_s": round(sent / took / 2**20, 2)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        trio.run(serve, int(sys.argv[2]))
    else:
        trio.run(send, sys.argv[2], float(sys.argv[3]))
