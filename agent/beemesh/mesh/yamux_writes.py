"""A Yamux message leaves whole, or its stream is reset.

py-libp2p's `YamuxStream.write` (0.8.1) cuts a message into frames as the send window allows
and holds the stream's write lock for one frame at a time, not for the message. Pub/sub writes
one stream per peer from several tasks (publishing, forwarding, the heartbeat's control
messages), so whenever a message needs more than one frame (the window ran short under a
burst, or it is larger than a frame) another task's frames can land between its frames, and
the peer reads the tail of one message as the length of the next: the unparsable RPC that
ended an agent in a soak (issue 20; `MeshHost._read_rpcs_or_close` closes such a connection
now). And when no window comes for 5 s, `write` raises with the message part sent, and the next
write on the stream goes on from the middle.

`install()` wraps the method (once per process): one message at a time per stream, and a write
that fails resets its stream, so the peer sees a reset, never a cut message. A caller cannot
retry a failed write on a byte stream anyway: it does not know how much of it left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.stream_muxer.yamux.yamux import YamuxStream

RESET_TIMEOUT_S = 1.0
Write = Callable[[Any, bytes], Awaitable[None]]


def whole(write: Write) -> Write:
    async def write_whole(self: Any, data: bytes) -> None:
        lock = self.__dict__.get("_whole_write_lock")
        if lock is None:
            lock = self._whole_write_lock = trio.Lock()
        async with lock:
            try:
                await write(self, data)
            except BaseException:
                # shielded: a cancelled write must still not leave a cut message behind; an
                # error here means the connection is gone, and with it what was cut
                with (trio.CancelScope(shield=True), trio.move_on_after(RESET_TIMEOUT_S),
                      contextlib.suppress(Exception)):
                    await self.reset()
                raise

    write_whole.whole = True  # type: ignore[attr-defined]
    return write_whole


def install() -> None:
    """Wrap py-libp2p's YamuxStream.write (idempotent)."""
    if not getattr(YamuxStream.write, "whole", False):
        YamuxStream.write = whole(YamuxStream.write)  # type: ignore[method-assign]
