"""A Yamux message leaves whole or its stream is reset (mesh/yamux_writes.py): py-libp2p held
the stream's write lock per frame, so two tasks writing one stream interleaved the frames of
messages longer than the send window, and a write that timed out left its message cut. Two
real hosts."""

from __future__ import annotations

import pytest
import trio
from libp2p.network.stream.exceptions import StreamReset
from libp2p.stream_muxer.yamux.yamux import YamuxStream

from beemesh.identity import KeyPair
from beemesh.mesh import yamux_writes
from beemesh.mesh.host import HostSettings, MeshHost

PROTOCOL = "/yamux-writes-test/1"
SIZE = 400 * 1024  # over the 256 KiB window: each message takes several frames


def host() -> MeshHost:
    return MeshHost(HostSettings(key=KeyPair.generate(), psk_hex="cd" * 32,
                                 listen=["/ip4/127.0.0.1/tcp/0"], dht_prefix="/writes-test",
                                 dht_validators={}))


def test_two_tasks_writing_one_stream_send_whole_messages() -> None:
    a, b = host(), host()

    async def main() -> bytes:
        got = bytearray()
        done = trio.Event()

        async def sink(stream: object) -> None:
            while len(got) < 4 * SIZE:
                got.extend(await stream.read(65536))  # type: ignore[attr-defined]
                await trio.sleep(0.001)  # a reader a little slower than the writers
            done.set()

        async with a.running(), b.running():
            b.handle(PROTOCOL, sink)
            await a.connect(b.addrs()[0])
            stream = await a.open_stream(b.peer_id.to_base58(), PROTOCOL)
            with trio.fail_after(30):
                async with trio.open_nursery() as nursery:
                    for fill in (1, 2, 3, 4):
                        nursery.start_soon(stream.write, bytes([fill]) * SIZE)
                await done.wait()
        return bytes(got)

    got = trio.run(main)
    messages = [got[i:i + SIZE] for i in range(0, len(got), SIZE)]
    assert len(messages) == 4
    assert sorted(m[0] for m in messages) == [1, 2, 3, 4]
    assert all(m == bytes([m[0]]) * SIZE for m in messages), "frames of two messages interleaved"


def test_a_write_that_fails_part_way_resets_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """py-libp2p gives up after 5 s without window; the peer must see a reset, not the part
    that left followed by the next message."""
    a, b = host(), host()

    async def main() -> tuple[int, str]:
        got = bytearray()
        ended = trio.Event()
        outcome = ""

        async def stalled(stream: object) -> None:  # reads nothing until told to
            nonlocal outcome
            await ended.wait()
            try:
                while True:
                    data = await stream.read(65536)  # type: ignore[attr-defined]
                    if not data:
                        outcome = "eof"
                        return
                    got.extend(data)
            except Exception as e:  # the reset, whatever py-libp2p calls it
                outcome = type(e).__name__

        async with a.running(), b.running():
            b.handle(PROTOCOL, stalled)
            await a.connect(b.addrs()[0])
            stream = await a.open_stream(b.peer_id.to_base58(), PROTOCOL)
            with trio.fail_after(30):
                with pytest.raises(StreamReset):  # py-libp2p's NetStream's word for it
                    await stream.write(bytes(SIZE))  # 256 KiB leave, then no window for 5 s
                with pytest.raises(Exception):  # noqa: B017 - closed or reset, either way refused
                    await stream.write(b"next message")
                ended.set()
                while not outcome:
                    await trio.sleep(0.05)
        return len(got), outcome

    received, outcome = trio.run(main)
    assert outcome not in ("", "eof"), "the reader saw the cut message end as if it were whole"
    assert received < SIZE


def test_install_wraps_once() -> None:
    yamux_writes.install()
    first = YamuxStream.write
    yamux_writes.install()
    assert YamuxStream.write is first and getattr(first, "whole", False)
