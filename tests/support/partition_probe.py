"""Two connected hosts, then every packet between them dropped: how long until each lets go?

Run inside a private network namespace, as root (it adds iptables rules):
`unshare -n sh -c 'ip link set lo up && exec python partition_probe.py SECONDS'`.
Prints one JSON line: seconds after the partition at which each host dropped its connection
(absent if it still held it after SECONDS).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import trio
from libp2p.abc import INetStream

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

PROTO = "/beemesh/test/sink/1"


def make_host() -> MeshHost:
    return MeshHost(HostSettings(KeyPair.generate(), "ab" * 32, ["/ip4/127.0.0.1/tcp/0"],
                                 "/beemesh/test", {}))


async def sink(stream: INetStream) -> None:
    while await stream.read(65536):
        pass


async def main(limit_s: float) -> None:
    a, b = make_host(), make_host()
    b.handle(PROTO, sink)
    async with a.running(), b.running(), trio.open_nursery() as nursery:
        await a.connect(b.addrs()[0])
        stream = await a.open_stream(b.peer_id.to_base58(), PROTO)
        port = b.addrs()[0].split("/tcp/")[1].split("/")[0]
        for direction in ("--dport", "--sport"):
            subprocess.run(["iptables", "-A", "INPUT", "-p", "tcp", direction, port, "-j", "DROP"],
                           check=True)
        start = trio.current_time()

        async def write_until_it_fails() -> None:
            """Unacknowledged data is what fills the buffers and blocks writers."""
            with contextlib.suppress(Exception):  # the kernel gave up on the connection
                while True:
                    await stream.write(b"x" * 16384)

        nursery.start_soon(write_until_it_fails)
        dropped: dict[str, float] = {}
        with trio.move_on_after(limit_s):
            while len(dropped) < 2:
                for name, host, other in (("a", a, b), ("b", b, a)):
                    if name not in dropped and other.peer_id not in host.connected():
                        dropped[name] = round(trio.current_time() - start, 1)
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    print(json.dumps(dropped), flush=True)


if __name__ == "__main__":
    trio.run(main, float(sys.argv[1]))
