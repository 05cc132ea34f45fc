"""Yamux credits a sender in steps of an eighth of the window, not after every read
(mesh/yamux_window.py), and
gossipsub runs v1.1 (no IDONTWANT per message): two real hosts, frames counted."""

from __future__ import annotations

import collections

import pytest
import trio
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11
from libp2p.stream_muxer.yamux import yamux

from beemesh.identity import KeyPair
from beemesh.mesh.host import HostSettings, MeshHost

PROTOCOL = "/yamux-window-test/1"
WINDOW_UPDATE = 1  # yamux frame type


def host() -> MeshHost:
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="cd" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/window-test",
                                 dht_validators={}))


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[int]:
    sent: collections.Counter[int] = collections.Counter()
    write = yamux.Yamux._write_frame

    async def counting(self: yamux.Yamux, data: bytes, *args: object, **kwargs: object) -> None:
        sent[data[1] if len(data) >= 12 else -1] += 1
        await write(self, data, *args, **kwargs)
    monkeypatch.setattr(yamux.Yamux, "_write_frame", counting)
    return sent


@pytest.mark.parametrize("messages, size", [(400, 1000), (24, 128 * 1024)])
def test_a_reader_sends_few_window_updates_and_the_sender_never_stalls(
        frames: collections.Counter[int], messages: int, size: int) -> None:
    a, b = host(), host()
    total = messages * size  # 400 KB in small writes; 3 MiB in large ones (12 windows)

    async def main() -> int:
        received = trio.Event()
        got = bytearray()

        async def sink(stream: object) -> None:
            while len(got) < total:
                got.extend(await stream.read(65536))  # type: ignore[attr-defined]
            received.set()

        async with a.running(), b.running():
            b.handle(PROTOCOL, sink)
            await a.connect(b.addrs()[0])
            frames.clear()
            stream = await a.open_stream(b.peer_id.to_base58(), PROTOCOL)
            with trio.fail_after(30):
                for i in range(messages):
                    await stream.write(bytes([i % 256]) * size)
                await received.wait()
            assert bytes(got[:size]) == bytes(size) and len(got) == total
            return frames[WINDOW_UPDATE]

    updates = trio.run(main)
    # py-libp2p's rule sent one per read (410 for the small writes); a step is 32 KiB read
    assert 1 <= updates <= total // (32 * 1024) + 4, updates


def test_gossipsub_runs_v1_1_between_beemesh_hosts() -> None:
    a, b = host(), host()

    async def main() -> object:
        async with a.running(), b.running():
            await a.subscribe("window-test", lambda *_: True)
            await b.subscribe("window-test", lambda *_: True)
            await a.connect(b.addrs()[0])
            with trio.fail_after(10):
                while b.peer_id not in a.gossipsub.peer_protocol:
                    await trio.sleep(0.05)
            return a.gossipsub.peer_protocol[b.peer_id]

    assert trio.run(main) == PROTOCOL_ID_V11
