"""`beemesh logs POD`: log lines from whichever machine runs the pod.

The operator signs a LogsRequest; the local agent serves it from its own Podman or forwards
the same signed bytes over a libp2p stream (`/beemesh/logs/1.0.0`) to the machine that runs
the pod, which checks the operator signature itself before reading anything. Lines travel
back as JSON lines: {"line": ...} or a final {"error": ...}.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Callable, Iterator

import trio
from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from beemesh.errors import UserError

LOGS_PROTOCOL = "/beemesh/logs/1.0.0"
MAX_REQUEST_BYTES = 16 * 1024


async def lines_from_thread(open_iter: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """Drive a blocking line iterator (podman-py logs) from a worker thread."""
    it = await trio.to_thread.run_sync(open_iter)
    done = object()
    while True:
        line = await trio.to_thread.run_sync(next, it, done, abandon_on_cancel=True)
        if line is done:
            return
        yield str(line)


def encode_line(line: str) -> bytes:
    return json.dumps({"line": line}).encode() + b"\n"


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode() + b"\n"


async def send_request(stream: INetStream, blob: bytes) -> None:
    await stream.write(struct.pack(">I", len(blob)) + blob)


async def read_request(stream: INetStream, max_bytes: int = MAX_REQUEST_BYTES) -> bytes:
    """One length-prefixed message (`send_request`), refused over `max_bytes`."""
    head = await _read_exactly(stream, 4)
    (size,) = struct.unpack(">I", head)
    if size > max_bytes:
        raise UserError(f"message of {size} bytes on a stream is over the {max_bytes} cap")
    return await _read_exactly(stream, size)


async def _read_exactly(stream: INetStream, n: int) -> bytes:
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


async def relay_remote(stream: INetStream) -> AsyncIterator[bytes]:
    """JSON lines from a remote agent, passed on unchanged (one per chunk)."""
    buf = b""
    while True:
        try:
            chunk = await stream.read(65536)
        except StreamError:  # py-libp2p signals the end of a stream by raising StreamEOF
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line + b"\n"
    if buf:
        yield buf + b"\n"
