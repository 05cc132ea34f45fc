"""Length-prefixed messages on a libp2p stream: one request, capped in size; or fixed-size reads."""

from __future__ import annotations

import struct

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from beemesh.errors import UserError

MAX_REQUEST_BYTES = 16 * 1024


async def send_request(stream: INetStream, blob: bytes) -> None:
    await stream.write(struct.pack(">I", len(blob)) + blob)


async def read_request(stream: INetStream, max_bytes: int = MAX_REQUEST_BYTES) -> bytes:
    """One length-prefixed message (`send_request`), refused over `max_bytes`."""
    head = await read_exactly(stream, 4)
    (size,) = struct.unpack(">I", head)
    if size > max_bytes:
        raise UserError(f"message of {size} bytes on a stream is over the {max_bytes} cap")
    return await read_exactly(stream, size)


async def read_exactly(stream: INetStream, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except StreamError:
            chunk = b""
        if not chunk:
            raise UserError("stream closed before the request was complete")
        buf += chunk
    return buf
