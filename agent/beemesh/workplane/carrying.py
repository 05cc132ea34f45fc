"""Carrying a workload stream's bytes once it is open: a pod's connection on one side, on the
other a channel (`channel`), a libp2p stream, or another pod's connection on this machine.
Both directions are copied until both have ended (half-closes pass through); a break on
either side ends both. Bytes are counted per Service (`stream_counters`).
"""

from __future__ import annotations

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from beemesh.workplane.channel import Channel
from beemesh.workplane.stream_counters import Counters

CHUNK = 64 * 1024  # per copy on a libp2p stream or between two pods of this machine


class Libp2pStream(trio.abc.HalfCloseableStream):
    """A libp2p stream as a trio stream, so one copy loop serves both kinds."""

    def __init__(self, stream: INetStream) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.write(bytes(data))
        except StreamError as e:
            raise trio.BrokenResourceError(str(e)) from None

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self.stream.read(max_bytes or CHUNK)
        except StreamError:
            return b""  # closed or reset by the other end: the copy ends

    async def send_eof(self) -> None:
        await self.stream.close()  # yamux FIN: half-close, reads go on

    async def aclose(self) -> None:
        try:
            await self.stream.close()
        except Exception:  # the connection may be gone already
            await self.stream.reset()


async def splice(counters: Counters, service: str, pod: trio.abc.HalfCloseableStream,
                 other: trio.abc.HalfCloseableStream | Channel) -> None:
    """Copy both ways until both have ended; `pod` is this machine's pod's side."""
    if isinstance(other, Channel):
        assert isinstance(pod, trio.SocketStream)
        await other.carry(pod, lambda counter, n: counters.add(service, counter, n))
        return

    async def copy(src: trio.abc.HalfCloseableStream, dst: trio.abc.HalfCloseableStream,
                   counter: str) -> None:
        try:
            while data := await src.receive_some(CHUNK):
                await dst.send_all(data)
                counters.add(service, counter, len(data))
            await dst.send_eof()
        except Exception:  # one side broke (reset, closed, gone): end both
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(copy, pod, other, "bytes_out")
        nursery.start_soon(copy, other, pod, "bytes_in")
